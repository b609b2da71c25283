# cmemcache: every set-up step a fresh Debian/Ubuntu machine needs is here.
#   make demo      build, start a throwaway memcached on loopback, show it working
#   make test      install what is missing, build, run the C tests and pytest
#   make bench     the full side-by-side benchmark (table + plots in bench/results)
#   make sanitize  the extension under ASan/UBSan, with the pytest suite
#   make fuzz      libFuzzer on the reply parser (FUZZ_SECONDS, default 60)

PYTHON ?= python3
PIP = $(PYTHON) -m pip
FUZZ_SECONDS ?= 60
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES = memcached nutcracker libmemcached-tools clang valgrind
PY_BUILD = meson-python meson ninja
PY_TEST = pytest hypothesis python-memcached pymemcache pylibmc

.PHONY: all deps system-deps python-deps build ctest pytest test demo bench \
	callgrind sanitize fuzz valgrind clean

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

python-deps:
	@$(PYTHON) -c "import mesonpy, pytest, hypothesis, memcache, pymemcache, pylibmc" 2>/dev/null \
	  || $(PIP) install -q --disable-pip-version-check $(PY_BUILD) $(PY_TEST)

deps: system-deps python-deps

build: python-deps
	$(PIP) install -q --disable-pip-version-check --no-build-isolation -e .

ctest: system-deps
	sh tests/c/build.sh build/ctest asan

pytest: deps build
	$(PYTHON) -m pytest -q tests

test: deps build ctest pytest

demo: deps build
	@$(PIP) install -q --disable-pip-version-check -r bench/requirements.txt
	$(PYTHON) bench/demo.py

bench: deps build
	@$(PIP) install -q --disable-pip-version-check -r bench/requirements.txt
	$(PYTHON) bench/bench.py --scaling
	$(PYTHON) bench/callgrind.py

callgrind: deps build
	$(PYTHON) bench/callgrind.py

fuzz: system-deps
	sh tests/fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf build dist
