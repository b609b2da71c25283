# cmemcache: every set-up step a fresh Debian/Ubuntu machine needs is here.
#   make demo        build, start a throwaway memcached on loopback, show it working
#   make test        install what is missing, build, run the C tests, a short
#                    fuzz run, pytest on CPython 3.11, 3.12 and 3.13, the
#                    ASan/UBSan selection and the wheel check
#   make test-matrix pytest on every supported Python (part of make test)
#   make pytest      pytest on .venv's Python (3.11) alone, in one process
#   make wheel       a manylinux wheel, installed where no compiler is, tested
#   make bench       the full side-by-side benchmark (table + plots in bench/results)
#   make callgrind   instructions per operation for every client
#   make bench-tls   TLS beside plain TCP: ops/s and instructions (part of make bench)
#   make sanitize    the extension under ASan/UBSan, with the pytest suite
#   make valgrind    a reduced pytest selection under valgrind memcheck
#   make fuzz        libFuzzer on the reply parsers and the requests in flight
#                    on a connection (FUZZ_SECONDS, default 60)
#
# Everything Python goes into virtual environments, so the system's packages
# are left alone: .venv (override with VENV=...) for python3, which is
# CPython 3.11, and .venv-3.12, .venv-3.13 for the pyenv installs of those
# (override with PYTHON_3.12=/path/to/python3.12 and so on).

PYTHON_SYS ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
PIP = $(PY) -m pip --disable-pip-version-check -q
FUZZ_SECONDS ?= 60
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# libmemcached-dev and zlib1g-dev: pylibmc (a peer in the tests) builds from
# source on the Pythons it has no wheel for; libssl-dev and pkg-config: TLS
APT_PACKAGES = memcached nutcracker libmemcached-tools clang valgrind libclang-rt-14-dev \
	libmemcached-dev zlib1g-dev libssl-dev pkg-config
STAMP = $(VENV)/.deps-installed

# -- the supported Pythons -----------------------------------------------------------------
MATRIX = 3.11 3.12 3.13
ifndef PYENV_ROOT
PYENV_ROOT := $(shell pyenv root 2>/dev/null || echo "$$HOME/.pyenv")
endif
# the newest pyenv install of a version, else one on PATH
pyenv_python = $(firstword $(shell ls -d $(PYENV_ROOT)/versions/$(1).*/bin/python$(1) 2>/dev/null \
	| sort -V | tail -n 1) $(shell command -v python$(1)))
PYTHON_3.11 ?= $(PYTHON_SYS)
PYTHON_3.12 ?= $(call pyenv_python,3.12)
PYTHON_3.13 ?= $(call pyenv_python,3.13)
VENV_3.11 = $(VENV)
VENV_3.12 = .venv-3.12
VENV_3.13 = .venv-3.13
MATRIX_VENVS = $(foreach v,$(MATRIX),$(VENV_$(v)))
$(foreach v,$(MATRIX),$(eval VERSION_OF_$(VENV_$(v)) := $(v)))

# pytest everywhere; the serial tests (timing-sensitive, see tests/conftest.py)
# never run beside pytest-xdist workers.  MATRIX_JOBS: how many Pythons'
# runs go at once (1: one after the other).
PYTEST = -m pytest -q -p no:cacheprovider
MATRIX_JOBS ?= 3
XDIST_WORKERS ?= $(if $(filter 1,$(MATRIX_JOBS)),2,1)

.SECONDEXPANSION:
.PHONY: all deps system-deps venv venvs build build-matrix ctest pytest test test-matrix \
	demo bench bench-aio bench-tls bench-deps callgrind sanitize valgrind fuzz fuzz-ci sanitize-ci wheel \
	clean $(addprefix build-,$(MATRIX)) $(addprefix pytest-parallel-,$(MATRIX)) \
	$(addprefix pytest-serial-,$(MATRIX))

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

# A virtual environment per Python, made by that Python (remade when it is
# another version), with requirements-dev.txt.
$(addsuffix /.deps-installed,$(MATRIX_VENVS)): %/.deps-installed: requirements-dev.txt | system-deps
	@v=$(VERSION_OF_$*); py='$(PYTHON_$(VERSION_OF_$*))'; \
	check="import sys; sys.exit(sys.version_info[:2] != ($${v%%.*}, $${v#*.}))"; \
	if [ -z "$$py" ] || ! "$$py" -c "$$check" 2>/dev/null; then \
	  echo "make: CPython $$v not found (looked in $(PYENV_ROOT)/versions/$$v.* and PATH;" \
	    "set PYTHON_$$v=/path/to/python$$v)" >&2; exit 2; fi; \
	if [ -x $*/bin/python ] && ! $*/bin/python -c "$$check" 2>/dev/null; then rm -rf $*; fi; \
	[ -x $*/bin/python ] || { echo "$* <- CPython $$v ($$py)"; "$$py" -m venv $*; }
	@echo '*' >$*/.gitignore  # git leaves the environment alone (as venv does from 3.13 on)
	$*/bin/python -m pip --disable-pip-version-check -q install -r requirements-dev.txt
	@touch $@

bench-deps: venv
	$(PIP) install -r bench/requirements.txt -r bench/requirements-aio.txt

venv: $(STAMP)

venvs: $(addsuffix /.deps-installed,$(MATRIX_VENVS))

deps: system-deps venv

# The editable install of each Python, built in build/venv, build/venv-3.12,
# ...  It is made again when the build files or the environment changed;
# a changed C file is rebuilt when cmemcache is imported (as here, once, so
# that pytest processes started together find the build done).
editable_dir = build/$(patsubst .%,%,$(notdir $(VENV_$(1))))
$(addprefix build-,$(MATRIX)): build-%: $$(VENV_$$*)/.deps-installed
	@stamp=$(VENV_$*)/.editable-installed; \
	if [ -f $(call editable_dir,$*)/build.ninja ] && [ -f $$stamp ] && \
	   [ $$stamp -nt meson.build ] && [ $$stamp -nt pyproject.toml ] && \
	   [ $$stamp -nt $(VENV_$*)/.deps-installed ]; then :; else \
	  echo "$(VENV_$*): pip install -e . (build in $(call editable_dir,$*))"; \
	  $(VENV_$*)/bin/python -m pip --disable-pip-version-check -q install --no-build-isolation \
	    -Cbuild-dir=$(call editable_dir,$*) -e . && touch $$stamp; fi
	@$(VENV_$*)/bin/python -c "import cmemcache, sys; print(f'$(VENV_$*): cmemcache {cmemcache.__version__} on Python {sys.version.split()[0]}')"

build: build-3.11

build-matrix: $(addprefix build-,$(MATRIX))

ctest: system-deps
	sh tests/c/build.sh build/ctest asan

pytest: deps build
	$(PY) $(PYTEST) tests

# Per Python: the tests not marked serial (with XDIST_WORKERS pytest-xdist
# workers when more than 1), and the serial ones, timing-sensitive (see
# tests/conftest.py): never under xdist, and never beside anything busy
# but each other.
$(addprefix pytest-parallel-,$(MATRIX)): pytest-parallel-%: build-%
	@echo "== CPython $*: the tests not marked serial"
	$(VENV_$*)/bin/python $(PYTEST) $(if $(filter-out 0 1,$(XDIST_WORKERS)),-n $(XDIST_WORKERS),-p no:xdist) \
	  -m "not serial" tests

$(addprefix pytest-serial-,$(MATRIX)): pytest-serial-%: build-%
	@echo "== CPython $*: the tests marked serial"
	$(VENV_$*)/bin/python $(PYTEST) -p no:xdist -m serial tests

# `timed LABEL COMMAND...`: runs it, then prints how long it took
TIMED = timed() { label=$$1; shift; t=$$(date +%s); "$$@"; rc=$$?; \
	echo "== $$label: $$(( $$(date +%s) - t )) s$$([ $$rc = 0 ] || echo ", FAILED")"; return $$rc; }
# make -jN -O: N targets at once, each one's output in one piece when it ends
SUBMAKE = $(MAKE) --no-print-directory -k -O

test-matrix: build-matrix
	@echo "== pytest on CPython $(MATRIX), $(MATRIX_JOBS) at a time (each run's output when it ends)"
	@$(TIMED); \
	timed "pytest, tests not marked serial" \
	  $(SUBMAKE) -j$(MATRIX_JOBS) $(addprefix pytest-parallel-,$(MATRIX)) && \
	timed "pytest, tests marked serial" $(SUBMAKE) -j$(MATRIX_JOBS) $(addprefix pytest-serial-,$(MATRIX))

# The bounded parts of the long checks run with every test: a short fuzz
# run of the reply parsers (45 s) and of the pipe (20 s), and the core suites on the ASan/UBSan build, then
# a part of them with LeakSanitizer as well.  Its full allocation stacks
# make a Hypothesis test or an interpreter start take some 20 times longer
# (a minute for one test), and slow an in-process fake server past the
# deadlines test_deadlines.py measures: those have LeakSanitizer in make
# sanitize only.
SANITIZE_CI = tests/test_protocol.py tests/test_errors.py tests/test_keys.py \
	tests/test_noreply.py tests/test_midcall.py tests/test_midcall_fuzz.py \
	tests/test_deadlines.py
SANITIZE_CI_LEAKS = tests/test_errors.py tests/test_keys.py tests/test_noreply.py \
	tests/test_midcall.py --deselect tests/test_keys.py::test_malformed_server_in_a_subprocess
FUZZ_CI_SECONDS ?= 65
FUZZ_CI_PIPE_SECONDS ?= 20
SANITIZE = PYTHON=$(PY) sh tests/sanitize.sh

fuzz-ci: system-deps
	FUZZ_PIPE_SECONDS=$(FUZZ_CI_PIPE_SECONDS) sh tests/fuzz/run.sh $(FUZZ_CI_SECONDS)

sanitize-ci: deps build
	SANITIZE_LEAKS=0 $(SANITIZE) $(SANITIZE_CI)
	$(SANITIZE) $(SANITIZE_CI_LEAKS)

# A fresh machine: the C tests, the fuzz runs and the Python environments at
# once (the fuzzer computes while pip mostly waits).  Then what is not
# timing-sensitive at once: the tests not marked serial on every Python and
# the wheel.  Then the serial tests of every Python, together (each mostly
# waits), and last the sanitizer selection alone (it has serial tests too).
# MATRIX_JOBS=1: one Python at a time.
BUSY_JOBS = $(if $(filter 1,$(MATRIX_JOBS)),1,$(words $(MATRIX) 1))

test: system-deps
	@$(TIMED); start=$$(date +%s); \
	timed "C tests, fuzz runs, environments and builds" $(SUBMAKE) -j3 ctest fuzz-ci build-matrix && \
	timed "pytest of the tests not marked serial on CPython $(MATRIX), and the wheel" \
	  $(SUBMAKE) -j$(BUSY_JOBS) $(addprefix pytest-parallel-,$(MATRIX)) wheel && \
	timed "pytest of the serial tests on CPython $(MATRIX)" \
	  $(SUBMAKE) -j$(MATRIX_JOBS) $(addprefix pytest-serial-,$(MATRIX)) && \
	timed "ASan/UBSan selection" $(SUBMAKE) sanitize-ci && \
	echo "== make test passed in $$(( $$(date +%s) - start )) s"

# -- the wheel -----------------------------------------------------------------------------
# A wheel for WHEEL_PYTHON, repaired by auditwheel to a manylinux tag (in
# dist/), installed into a fresh virtual environment whose PATH has no C
# compiler (CC=/bin/false too), and tested there by tests/wheel_smoke.py:
# round trips with StringClient and Client against a memcached it starts.
WHEEL_PYTHON ?= 3.11
WHEEL_TOOLS = $(VENV_$(WHEEL_PYTHON))
WHEEL_DIR = build/wheel
WHEEL_STAMP = $(WHEEL_TOOLS)/.wheel-deps-installed

$(WHEEL_STAMP): requirements-wheel.txt $(WHEEL_TOOLS)/.deps-installed
	$(WHEEL_TOOLS)/bin/python -m pip --disable-pip-version-check -q install -r requirements-wheel.txt
	@touch $@

wheel: system-deps $(WHEEL_STAMP)
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)/raw $(WHEEL_DIR)/bin dist
	$(WHEEL_TOOLS)/bin/python -m build --wheel --outdir $(WHEEL_DIR)/raw . >$(WHEEL_DIR)/build.log 2>&1 \
	  || { tail -n 40 $(WHEEL_DIR)/build.log; exit 1; }
	PATH="$(CURDIR)/$(WHEEL_TOOLS)/bin:$$PATH" $(WHEEL_TOOLS)/bin/python -m auditwheel repair \
	  --wheel-dir $(WHEEL_DIR)/repaired $(WHEEL_DIR)/raw/cmemcache-*.whl
	@whl=$$(ls $(WHEEL_DIR)/repaired/cmemcache-*.whl); \
	case $$whl in *manylinux*) ;; *) echo "not a manylinux wheel: $$whl" >&2; exit 1;; esac; \
	cp $$whl dist/ && echo "dist/$$(basename $$whl)"
	$(PYTHON_$(WHEEL_PYTHON)) -m venv $(WHEEL_DIR)/venv
	ln -s "$$(command -v memcached || echo /usr/bin/memcached)" $(WHEEL_DIR)/bin/memcached
	@# from here on: PATH is the new environment and memcached, nothing else
	env PATH="$(CURDIR)/$(WHEEL_DIR)/venv/bin:$(CURDIR)/$(WHEEL_DIR)/bin" CC=/bin/false CXX=/bin/false \
	  /bin/sh -c 'for c in cc gcc clang c99 cpp ld; do \
	    if command -v $$c; then echo "a compiler or linker is on PATH: $$c" >&2; exit 1; fi; done; \
	    echo "no compiler on PATH ($$PATH), CC=$$CC"; \
	    cd $(WHEEL_DIR) && \
	    python -m pip --disable-pip-version-check -q install --no-index --only-binary=:all: \
	      repaired/cmemcache-*.whl && \
	    python "$(CURDIR)/tests/wheel_smoke.py"'

demo: deps build bench-deps
	$(PY) bench/demo.py

bench: deps build bench-deps
	$(PY) bench/bench.py --scaling
	$(PY) bench/aio_bench.py
	$(PY) bench/callgrind.py
	$(PY) bench/aio_callgrind.py
	$(PY) bench/tls_bench.py

# TLS beside plain TCP (ops/s and instructions), cmemcache, pymemcache, emcache
bench-tls: deps build bench-deps
	$(PY) bench/tls_bench.py

# the asyncio clients alone; AIO_ARGS=--quick for the half-minute version
bench-aio: deps build bench-deps
	$(PY) bench/aio_bench.py $(AIO_ARGS)

callgrind: deps build bench-deps
	$(PY) bench/callgrind.py
	$(PY) bench/aio_callgrind.py

sanitize: deps build
	PYTHON=$(PY) sh tests/sanitize.sh

valgrind: deps build
	PYTHON=$(PY) sh tests/valgrind.sh

fuzz: system-deps
	sh tests/fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf build dist $(MATRIX_VENVS)
