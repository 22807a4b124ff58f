# hearth — the two commands a newcomer needs are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
BIN := target/release/hearth-supervisor

.PHONY: run test lint bench build clean help test-deps lint-deps synapse fuzz

include tests/system/system.mk
include image/image.mk
include tests/matrix/matrix.mk
include cooperative/cooperative.mk

help:
	@echo "make run    - build and start the supervisor (simulated INA219), status on http://127.0.0.1:8080"
	@echo "make test   - the whole fast suite"
	@echo "make lint   - cargo fmt --check and clippy -D warnings"
	@echo "make bench  - print 'name value unit' benchmark figures"
	@echo "make fuzz   - fuzz the access-log and report parsers, FUZZ_SECONDS each (default 60; not part of make test)"
	@echo "make system-test - boot the appliance's root fs in systemd-nspawn and run the fault scenarios (root)"
	@echo "make system-up / system-down - start / stop that container in the background"
	@echo "make image  - build the flashable Raspberry Pi image under build/image (root)"
	@echo "make image-test - check that image and boot it in QEMU until Synapse is healthy over HTTPS (root)"
	@echo "make matrix-client - the venv of tests/matrix/journey (matrix-nio: a phone's journey)"
	@echo "make matrix-selftest - that journey against a throwaway Synapse on loopback"
	@echo "make cooperative-run - the cooperative's relay (edge, enrolment) on loopback"
	@echo "make cooperative-test - the relay's tests, with a real box behind NAT in network namespaces (root)"

build:
	$(CARGO) build --release --locked -p hearth-supervisor

# Synapse in a local venv (var/synapse), SQLite, loopback: what `make run` supervises.
synapse:
	scripts/dev-synapse

# The supervisor on its developer default: simulated INA219 fed by a Pi 4 power model that
# follows this machine's CPU load; Synapse started and watched by the process backend; data
# under ./var.
# The demo accounts (scripts/dev-demo) are registered in the background once Synapse, which
# the supervisor starts, answers.
run: build synapse
	mkdir -p var
	scripts/dev-demo &
	$(BIN) run --config supervisor/config/dev.toml

# What the fast suite needs besides Rust: a dbus-daemon for the private-bus D-Bus tests and
# Debian's headless Chromium for the status page's browser test (tests/it/browser.rs).
test-deps:
	@command -v dbus-daemon >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dbus-daemon; }
	@dpkg -s chromium >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
	@# ssh-keygen: the access inventory's fingerprints are checked against it.
	@command -v ssh-keygen >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-client; }
	@# The name step's tests: certificates made with openssl, the polkit rule run in node, the
	@# unit-name escape checked against systemd-escape.
	@command -v openssl >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl; }
	@command -v node >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs; }
	@command -v systemd-escape >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd; }
	@# Backups: sqlite3 dumps the databases; restic and its REST server as the appliance's
	@# Debian has them (the host's may be too old), under var/tools.
	@command -v sqlite3 >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends sqlite3; }
	@scripts/backup-tools
	@# Updates: a release's payloads are zstd; the slots' file systems are made and read with
	@# e2fsprogs, dosfstools and mtools, as on the box; image/bundle signs with minisign.
	@for t in zstd:zstd mcopy:mtools mkfs.vfat:dosfstools e2label:e2fsprogs minisign:minisign sfdisk:fdisk; do \
		command -v "$${t%%:*}" >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$${t#*:}"; }; \
	done
	@# hearth-coop's name table on PostgreSQL: its tests start a server of their own (initdb, pg_ctl).
	@# No "main" cluster of the host's: it would take port 5432 from the system-test container's.
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		mkdir -p /etc/postgresql-common/createcluster.d && \
		echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/hearth-no-main-cluster.conf && \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }

# The integration tests start a real Synapse from the venv `synapse` installs (about 50 s the
# first time, a tenth of a second when it is there); without it they fail and say so. Then the
# Matrix client scripts the system and image tests drive (tests/matrix: journey, keepsake)
# against a throwaway Synapse (about 10 s).
test: test-deps synapse matrix-client
	$(CARGO) test --workspace --locked
	tests/matrix/selftest

# The shell scripts (image build, first boot, tests) are checked too: every tracked file (not
# the unit links) whose first line names sh or bash.
lint-deps:
	@command -v shellcheck >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends shellcheck; }

lint: lint-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@# -z: names as they are (systemd's unit names hold backslashes, which git would quote).
	@# -x: files a script sources (tests/image/updates) are checked with it.
	git ls-files -s -z | tr '\0' '\n' | awk -F '\t' 'substr($$1, 1, 6) != "120000" { print $$2 }' | \
		xargs -d '\n' awk 'FNR == 1 && /^#!.*[\/ ](ba)?sh( |$$)/ { print FILENAME } { nextfile }' | \
		xargs -d '\n' -r shellcheck -x -S warning

# The supervisor's figures, then the cooperative collector's (collector_reports_per_s:
# cooperative/src/bin/hearth-coop-bench.rs says how each is measured).
bench: build
	$(CARGO) build --release --locked -p hearth-supervisor --bin hearth-bench
	target/release/hearth-bench
	$(CARGO) build --release --locked -p hearth-cooperative --bin hearth-coop-bench
	target/release/hearth-coop-bench

# cargo-fuzz on the stable toolchain: RUSTC_BOOTSTRAP=1 lets it use the sanitizer flags.
# Each target in FUZZ_TARGETS runs for FUZZ_SECONDS in turn: `accesslog` (the Synapse access-log
# parser) and `report` (report_wire::parse, the collector's parser of every report body). New
# findings land in supervisor/fuzz/artifacts/<target>/; the corpus grows in
# supervisor/fuzz/corpus/<target>/ (both ignored by git), seeded from fuzz/seeds/<target>/ with
# the dictionary fuzz/<target>.dict.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= accesslog report
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	for t in $(FUZZ_TARGETS); do \
		mkdir -p supervisor/fuzz/corpus/$$t && \
		(cd supervisor && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t \
			fuzz/corpus/$$t fuzz/seeds/$$t -- \
			-dict=fuzz/$$t.dict -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done

# Stops the system-test container first if it is up (its overlay lives under build/).
clean:
	[ ! -s build/system/run/nspawn.pid ] || tests/system/down
	$(CARGO) clean
	rm -rf var build
