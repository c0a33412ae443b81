# Developer entry points. Needs only python3 (>= 3.11) and make; everything else goes into
# .venv. Stamp files make re-runs instant until pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
PYTEST_ARGS ?=

# System programs the test suite needs, as command:apt-package pairs.
# Checked with `command -v`; installed with apt-get only when missing and running as root.
# nft + unshare + ip: the SFU loss test drops packets in a private network namespace;
# tc + nsenter: the bandwidth test limits one receiver with tbf on a veth between two.
# chromium: the browser end-to-end test (driven by Playwright, in a network namespace too).
SYSTEM_DEPS ?= nft:nftables unshare:util-linux nsenter:util-linux ip:iproute2 tc:iproute2 chromium:chromium
# Headers the optional C extensions compile against, as file:apt-package pairs (checked
# before pip builds them; without them the extension is skipped, see setup.py).
BUILD_DEPS ?= /usr/include/openssl/evp.h:libssl-dev

# $(call apt_install,<packages>): install with apt-get when root, else say what is missing.
define apt_install
if [ -z "$(1)" ]; then exit 0; fi; \
if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
  echo "installing system packages:$(1)"; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends $(1) \
    || echo "warning: could not install:$(1)" >&2; \
else \
  echo "warning: missing system packages:$(1) (run: sudo make system-deps)" >&2; \
fi
endef

.DEFAULT_GOAL := help
.PHONY: help run test test-fast lint system-deps build-deps clean

help:
	@echo "make run          serve the demo shop on http://127.0.0.1:8080 (data in ./var/)"
	@echo "make test         run the test suite (PYTEST_ARGS='-k config' to filter)"
	@echo "make test-fast    run the unit tests only (in-process, about a minute)"
	@echo "make lint         ruff check"
	@echo "make system-deps  install system packages the tests need (as root, apt-get)"
	@echo "make clean        remove the virtualenv and caches (keeps ./var/)"

run: $(VENV)/.installed
	$(BIN)/shopcall serve --demo

test: $(VENV)/.installed-test system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The unit set: in-process tests only (no server, browser or namespace), a minute or so.
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m unit -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

$(VENV)/.installed: pyproject.toml setup.py mediaserver/_fanout.c mediaserver/_srtp_gcm.c | $(BIN)/python build-deps
	$(PIP) install --quiet -e .
	@touch $@

# The test extra includes the runtime dependencies, so it satisfies `run` as well.
$(VENV)/.installed-test: pyproject.toml setup.py mediaserver/_fanout.c mediaserver/_srtp_gcm.c | $(BIN)/python build-deps
	$(PIP) install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

# Debian/Ubuntu ship the venv module separately; add it when we are allowed to.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "shopcall needs Python >= 3.11; $(PYTHON) is $$($(PYTHON) -V 2>&1)" >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  pkg="python$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $$pkg"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$$pkg" \
	      && $(PYTHON) -m venv $(VENV); \
	  else \
	    echo "cannot create $(VENV): install the venv module (Debian/Ubuntu: apt-get install $$pkg)" >&2; \
	    exit 1; \
	  fi; }

system-deps:
	@missing=""; \
	for dep in $(SYSTEM_DEPS); do \
	  command -v "$${dep%%:*}" >/dev/null 2>&1 || missing="$$missing $${dep#*:}"; \
	done; \
	$(call apt_install,$$missing)

build-deps:
	@missing=""; \
	for dep in $(BUILD_DEPS); do \
	  test -e "$${dep%%:*}" || missing="$$missing $${dep#*:}"; \
	done; \
	$(call apt_install,$$missing)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
