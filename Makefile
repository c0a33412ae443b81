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
# turnserver: relayed calls through coturn; nginx: TLS through a reverse proxy;
# promtool, systemd-analyze: the deployment's alert rules and units are checked.
SYSTEM_DEPS ?= nft:nftables unshare:util-linux nsenter:util-linux ip:iproute2 tc:iproute2 chromium:chromium \
  turnserver:coturn nginx:nginx-light promtool:prometheus systemd-analyze:systemd
# Headers the optional C extensions compile against, as file:apt-package pairs (checked
# before pip builds them; without them the extension is skipped, see setup.py).
BUILD_DEPS ?= /usr/include/openssl/evp.h:libssl-dev
# `make fuzz` compiles the C extensions itself with gcc's AddressSanitizer and
# UndefinedBehaviorSanitizer (gcc-12 brings libasan8 and libubsan1 along), as command:apt-package.
FUZZ_DEPS ?= gcc:gcc

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
.PHONY: help run test test-fast lint fuzz fuzz-deps system-deps build-deps clean

help:
	@echo "make run          serve the demo shop on http://127.0.0.1:8080 (data in ./var/)"
	@echo "make test         run the test suite (PYTEST_ARGS='-k config' to filter)"
	@echo "make test-fast    run the unit tests only (in-process, about a minute)"
	@echo "make lint         ruff check"
	@echo "make fuzz         C extensions under ASan+UBSan, fed garbage for FUZZ_SECONDS (60)"
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

# Sanitized builds of both extensions in $(FUZZ_DIR) (the normal build in mediaserver/ is
# untouched), loaded by benchmarks/fuzz_native.py in its own process with the ASan runtime
# preloaded: CPython itself is not built with ASan, and ASan's runtime has to be in the process
# before any instrumented library. Any ASan or UBSan report aborts it (abort_on_error, and
# -fno-sanitize-recover for UBSan, which would otherwise print and go on), so make fails.
# PYTHONMALLOC=malloc: Python objects come from malloc, so ASan watches their bounds too
# (pymalloc's arenas would hide an overrun of a bytes object). detect_leaks=0: CPython does
# not free its interned strings, static types and module state at exit, by design; leak
# reports would be thousands of those, and references the extensions keep or drop are
# checked by the driver with sys.getrefcount instead.
FUZZ_DIR ?= build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_SEED ?= 1
FUZZ_ARGS ?=
FUZZ_CC ?= gcc
FUZZ_CFLAGS ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow \
	-fno-sanitize-recover=all -Wall -fPIC -shared

fuzz: $(FUZZ_DIR)/.built
	@asan=$$($(FUZZ_CC) -print-file-name=libasan.so); \
	case "$$asan" in /*) ;; *) echo "no ASan runtime ($(FUZZ_CC) -print-file-name=libasan.so)" >&2; exit 1;; esac; \
	echo "LD_PRELOAD=$$asan python -m benchmarks.fuzz_native --ext-dir $(FUZZ_DIR) --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED) $(FUZZ_ARGS)"; \
	LD_PRELOAD="$$asan" PYTHONMALLOC=malloc \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1 \
	$(BIN)/python -m benchmarks.fuzz_native --ext-dir $(FUZZ_DIR) --require-sanitizers \
	  --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED) $(FUZZ_ARGS) \
	|| { status=$$?; echo "make fuzz: failed (exit $$status): sanitizer report or finding above" >&2; exit $$status; }

# The venv only has to exist (Python headers, pylibsrtp): an out-of-date normal build is left
# for `make test`/`make run` to redo, as the driver never loads it.
$(FUZZ_DIR)/.built: mediaserver/_fanout.c mediaserver/_srtp_gcm.c Makefile | fuzz-deps build-deps
	@test -e $(VENV)/.installed || $(MAKE) --no-print-directory $(VENV)/.installed
	@mkdir -p $(FUZZ_DIR)
	@inc=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	so=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))'); \
	set -ex; \
	$(FUZZ_CC) $(FUZZ_CFLAGS) -I"$$inc" mediaserver/_fanout.c -o $(FUZZ_DIR)/_fanout$$so; \
	$(FUZZ_CC) $(FUZZ_CFLAGS) -I"$$inc" mediaserver/_srtp_gcm.c -lcrypto -o $(FUZZ_DIR)/_srtp_gcm$$so
	@touch $@

fuzz-deps:
	@missing=""; \
	for dep in $(FUZZ_DEPS); do \
	  command -v "$${dep%%:*}" >/dev/null 2>&1 || missing="$$missing $${dep#*:}"; \
	done; \
	$(call apt_install,$$missing)

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
