# cmemcache: every set-up step a fresh Debian/Ubuntu machine needs is here.
#   make demo      build, start a throwaway memcached on loopback, show it working
#   make test      install what is missing, build, run the C tests and pytest
#   make bench     the full side-by-side benchmark (table + plots in bench/results)
#   make callgrind instructions per operation for every client
#   make sanitize  the extension under ASan/UBSan, with the pytest suite
#   make valgrind  a reduced pytest selection under valgrind memcheck
#   make fuzz      libFuzzer on the reply parser (FUZZ_SECONDS, default 60)
#
# Everything Python goes into a virtual environment in .venv (override with
# VENV=...), so the system's packages are left alone.

PYTHON_SYS ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
PIP = $(PY) -m pip --disable-pip-version-check -q
FUZZ_SECONDS ?= 60
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES = memcached nutcracker libmemcached-tools clang valgrind libclang-rt-14-dev
STAMP = $(VENV)/.deps-installed

.PHONY: all deps system-deps venv build ctest pytest test demo bench \
	bench-deps callgrind sanitize valgrind fuzz fuzz-ci sanitize-ci clean

all: build

# Debian packages: installed only when one is missing.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): requirements-dev.txt
	@[ -x $(PY) ] || $(PYTHON_SYS) -m venv $(VENV)
	$(PIP) install -r requirements-dev.txt
	@touch $(STAMP)

bench-deps: venv
	$(PIP) install -r bench/requirements.txt

venv: $(STAMP)

deps: system-deps venv

build: venv
	$(PIP) install --no-build-isolation -Cbuild-dir=build/venv -e .

ctest: system-deps
	sh tests/c/build.sh build/ctest asan

pytest: deps build
	$(PY) -m pytest -q -p no:cacheprovider tests

# The bounded parts of the long checks run with every test: a short fuzz
# run of the reply parser and the core suites on the ASan/UBSan build.
SANITIZE_CI = tests/test_protocol.py tests/test_errors.py tests/test_keys.py \
	tests/test_noreply.py tests/test_midcall.py tests/test_midcall_fuzz.py \
	tests/test_deadlines.py
FUZZ_CI_SECONDS ?= 45

test: deps build ctest fuzz-ci pytest sanitize-ci

fuzz-ci: system-deps
	sh tests/fuzz/run.sh $(FUZZ_CI_SECONDS)

sanitize-ci: deps build
	PYTHON=$(PY) sh tests/sanitize.sh $(SANITIZE_CI)

demo: deps build bench-deps
	$(PY) bench/demo.py

bench: deps build bench-deps
	$(PY) bench/bench.py --scaling
	$(PY) bench/callgrind.py

callgrind: deps build bench-deps
	$(PY) bench/callgrind.py

sanitize: deps build
	PYTHON=$(PY) sh tests/sanitize.sh

valgrind: deps build
	PYTHON=$(PY) sh tests/valgrind.sh

fuzz: system-deps
	sh tests/fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf build dist $(VENV)
