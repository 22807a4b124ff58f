# System tests: the appliance's root file system (x86_64 build of the same overlays) booted in a
# systemd-nspawn container with real systemd, D-Bus, PostgreSQL and Synapse
# (tests/system/README.md). Included from the top Makefile; works alone too:
#   make -f tests/system/system.mk system-test
# Every target runs as root (mmdebstrap, systemd-nspawn, overlayfs).

SYSTEM_TESTS := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
# matrix-client (the phone's part in the scenarios); included once however this file is used.
include $(SYSTEM_TESTS)/../matrix/matrix.mk

# Debian packages the system tests need on the build host. A fresh Debian 12 lacks the first
# two (and pebble, the test ACME CA: tests/system/acme-ca); the others are listed because the scripts call them (curl, ss, nsenter, pgrep, python3)
# or because mmdebstrap needs them for trixie (the archive keys).
SYSTEM_APT_PACKAGES := mmdebstrap systemd-container debian-archive-keyring ca-certificates \
	curl iproute2 util-linux procps python3 pebble openssl nftables conntrack

.PHONY: system-deps system-rootfs system-up system-down system-test system-federation system-backup

# Installs what is missing, and nothing when all is there (no apt-get update either).
system-deps:
	@missing=""; \
	for pkg in $(SYSTEM_APT_PACKAGES); do \
		dpkg-query -W -f='$${db:Status-Status}\n' "$$pkg" 2>/dev/null | grep -qx installed || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "system-deps: installing$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@# restic and its REST server (the cooperative's store in tests/system/backup), from trixie.
	@$(SYSTEM_TESTS)/../../scripts/backup-tools

# Cached: the slow bootstrap only when its inputs change, then overlays + binary (seconds).
system-rootfs: system-deps
	$(SYSTEM_TESTS)/build-rootfs

# Boots the container in the background: status page on http://127.0.0.1:8080, Synapse on
# http://127.0.0.1:8008, tests/system/exec CMD... runs a command inside.
system-up: system-rootfs
	$(SYSTEM_TESTS)/up

system-down:
	$(SYSTEM_TESTS)/down

# matrix-client: the venv of tests/matrix/journey (matrix-nio), a phone's part in the scenarios.
system-test: system-rootfs matrix-client
	$(SYSTEM_TESTS)/run-tests

# Only the federation scenario (also a step of system-test): two boxes in the lab's network
# namespaces (tests/system/lab), a room across both.
system-federation: system-rootfs matrix-client
	$(SYSTEM_TESTS)/federation

# Backups end to end (issue 16): a run of hearth-backup.service to a USB stand-in and to an
# append-only REST server on loopback, the store full, a run killed halfway, the card lost, the
# restore on a fresh card without a name as the setup page starts it (hearth-restore.service: a
# wrong key, then the right one), the member's phone (matrix-nio) finding everything again
# (tests/system/backup).
system-backup: system-rootfs matrix-client
	$(SYSTEM_TESTS)/backup
