# hearth — the two commands a newcomer needs are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
BIN := target/release/hearth-supervisor

.PHONY: run test lint bench build clean help

help:
	@echo "make run    - build and start the supervisor (simulated INA219), status on http://127.0.0.1:8080"
	@echo "make test   - the whole fast suite"
	@echo "make lint   - cargo fmt --check and clippy -D warnings"
	@echo "make bench  - print 'name value unit' benchmark figures"

build:
	$(CARGO) build --release --locked -p hearth-supervisor

# The supervisor on its developer default: simulated INA219 fed by a Pi 4 power model that
# follows this machine's CPU load; data under ./var.
run: build
	mkdir -p var
	$(BIN) run --config supervisor/config/dev.toml

test:
	$(CARGO) test --workspace --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

bench: build
	$(CARGO) build --release --locked -p hearth-supervisor --bin hearth-bench
	target/release/hearth-bench

clean:
	$(CARGO) clean
	rm -rf var build
