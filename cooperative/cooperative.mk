# The cooperative's services (cooperative/README.md). Included from the top Makefile.
#   make cooperative-run   the relay's edge, the control listener (API, report collector) and the
#                          transparency site on loopback (embedded default, sample ledger)
#   make cooperative-test  its tests: the crates' own, then the relay in the lab's network
#                          namespaces with a real box behind NAT (root; tests/cooperative/relay-lab)
#   make cooperative-bench the relay's data path against WireGuard + HAProxy, side by side,
#                          medians of 3 (root; cooperative/bench/relay-compare; cooperative-test
#                          prints one run of it)

COOP_DIR := var/cooperative

.PHONY: cooperative-run cooperative-test cooperative-lab cooperative-test-deps cooperative-build cooperative-bench

cooperative-build:
	$(CARGO) build --release --locked -p hearth-cooperative

# A certificate for the control listener's embedded name (relay.coop.hearth.test), made once
# by openssl (self-signed; a real deployment uses its CA's: cooperative/README.md).
$(COOP_DIR)/control-cert.pem:
	mkdir -p $(COOP_DIR)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
		-subj "/CN=relay.coop.hearth.test" -addext "subjectAltName=DNS:relay.coop.hearth.test" \
		-keyout $(COOP_DIR)/control-key.pem -out $@ 2>/dev/null

# The reports' blind-RSA key (the embedded default's `[reports] key`), made once.
$(COOP_DIR)/report-key.pem: | cooperative-build
	target/release/hearth-coop reports keygen

# The site (http://127.0.0.1:9445) shows the sample ledger and pages in cooperative/site/.
cooperative-run: cooperative-build $(COOP_DIR)/control-cert.pem $(COOP_DIR)/report-key.pem
	target/release/hearth-coop serve

# What the relay's tests need beyond the system tests' packages (system-deps): tcpdump records
# what reaches the edge (tests/cooperative/tls-records reads it); the side-by-side figures need
# the alternative's parts (WireGuard, HAProxy) and a web server for the box's side of both.
COOP_TEST_PACKAGES := tcpdump python3 wireguard-go wireguard-tools haproxy nginx-light nftables conntrack curl openssl

cooperative-test-deps:
	@missing=""; \
	for pkg in $(COOP_TEST_PACKAGES); do \
		dpkg-query -W -f='$${db:Status-Status}\n' "$$pkg" 2>/dev/null | grep -qx installed || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "cooperative-test-deps: installing$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The crates' tests, the lab (a real box behind NAT), then the issue's figures: one run of the
# data path side by side with WireGuard + HAProxy (relay_throughput_ratio, added latency
# p50/p99, edge_rss_per_idle_box_kb with 1,000 tunnels, tunnel_recovery_s; about 2 minutes).
cooperative-test: cooperative-build build system-rootfs matrix-client cooperative-test-deps test-deps
	$(CARGO) test --locked -p hearth-tunnel -p hearth-cooperative
	$(MAKE) --no-print-directory cooperative-lab

# The lab and the side-by-side run alone: CI runs them after `make test`, which has run the
# crates' tests already (cargo would otherwise build them again for this -p selection).
cooperative-lab: cooperative-build build system-rootfs matrix-client cooperative-test-deps
	tests/cooperative/relay-lab
	RUNS=1 cooperative/bench/relay-compare

# The same comparison with medians of 3 runs (not part of CI).
cooperative-bench: cooperative-build build cooperative-test-deps
	cooperative/bench/relay-compare
