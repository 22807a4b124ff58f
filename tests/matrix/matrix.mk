# The family's journey with a real Matrix client library (matrix-nio): tests/matrix/README.md.
# Included from the top Makefile; works alone too:  make -f tests/matrix/matrix.mk matrix-client
#   make matrix-client    venv build/matrix-client/venv with tests/matrix/requirements.txt
#   make matrix-selftest  the journey against a throwaway Synapse on loopback (no TLS)
#   make matrix-selftest-tls  the same over HTTPS through a throwaway nginx and CA (needs nginx)
ifndef HEARTH_MATRIX_MK
HEARTH_MATRIX_MK := 1

MATRIX_TESTS := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
MATRIX_VENV := build/matrix-client/venv
# Debian's interpreter when there is one (a fresh Debian 12), else whatever python3 is.
MATRIX_PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)

.PHONY: matrix-client matrix-selftest matrix-selftest-tls

# Quiet when the venv is up to date with requirements.txt.
matrix-client: $(MATRIX_VENV)/.installed
	@:

# Debian splits venv/ensurepip into python3-venv (python3.11-venv): installed when missing.
# A venv whose interpreter is gone (a Python upgrade) is made anew.
$(MATRIX_VENV)/.installed: $(MATRIX_TESTS)/requirements.txt
	@$(MATRIX_PYTHON) -c 'import ensurepip.__main__, venv' 2>/dev/null || { \
		echo "matrix-client: installing python3-venv"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
	@if [ -x $(MATRIX_VENV)/bin/python ] && ! $(MATRIX_VENV)/bin/python -c '' 2>/dev/null; then rm -rf $(MATRIX_VENV); fi
	@[ -x $(MATRIX_VENV)/bin/python ] || $(MATRIX_PYTHON) -m venv $(MATRIX_VENV)
	@echo "matrix-client: installing $(MATRIX_TESTS)/requirements.txt into $(MATRIX_VENV)"
	@$(MATRIX_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(MATRIX_TESTS)/requirements.txt
	@touch $@

# Uses $(SYNAPSE_VENV) when set, else the developer Synapse's venv that `make synapse` makes.
matrix-selftest: matrix-client $(if $(SYNAPSE_VENV),,synapse)
	$(MATRIX_TESTS)/selftest

# nginx from $(HEARTH_NGINX), PATH or /usr/sbin/nginx; openssl makes the CA.
matrix-selftest-tls: matrix-client $(if $(SYNAPSE_VENV),,synapse)
	$(MATRIX_TESTS)/selftest --tls

endif
