#!/bin/sh
# The extension built with AddressSanitizer + UndefinedBehaviorSanitizer
# (clang), then a pytest selection run against that build.
#
#   sh tests/sanitize.sh                      # the default selection (below)
#   sh tests/sanitize.sh tests/test_faults.py -k fork
#   PYTHON=.venv/bin/python sh tests/sanitize.sh
#   SANITIZE_LEAKS=0 sh tests/sanitize.sh     # without LeakSanitizer (faster)
#
# Environment:
#   PYTHON            the interpreter (default: python3); the extension is
#                     built for it, and pytest runs under it
#   ASAN_BUILD_DIR    the build directory (default: build/asan)
#   SANITIZE_LEAKS    1 (default): LeakSanitizer on, with tests/lsan.supp
#                     and full allocation stacks; 0: off
#
# The build goes to build/asan (never the editable build): meson with
# CC=clang, -Db_sanitize=address,undefined, -O1 -g -fno-omit-frame-pointer
# -fno-sanitize-recover=undefined.  The Python package and the sanitized
# _cmemcache*.so are copied to build/asan/pkg, which goes first on
# PYTHONPATH, and the editable install's import hook is told to step aside
# (MESONPY_EDITABLE_SKIP).  tests/sanitize_check.py proves, before pytest
# starts, that this build is the one imported and that the ASan runtime is
# loaded.
#
# Verdict: every report of every Python process (pytest and the Python
# children the tests start) is written to build/asan/reports.  The script
# exits non-zero when pytest fails, on any AddressSanitizer or
# UndefinedBehaviorSanitizer report, and on any leak whose allocation stack
# goes through the extension.  Leaks entirely inside CPython (objects held
# by daemon threads at exit, interpreter locks) are listed, not counted; a
# leak never stops a process (LSAN exitcode=0), so it cannot fail a test
# that checks a child's exit status.  memcached and nutcracker are started
# through wrappers without the ASan runtime; reports of other programs that
# inherit it (git, bash) are ignored.

set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PYTHON=${PYTHON:-python3}
# the interpreter itself, not a launcher script (pyenv shims are bash)
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
BUILD=${ASAN_BUILD_DIR:-build/asan}
LEAKS=${SANITIZE_LEAKS:-1}
CC=${CC:-clang}

command -v "$CC" >/dev/null || { echo "sanitize.sh: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
ASAN_RT=$("$CC" -print-file-name=libclang_rt.asan-x86_64.so)
[ -f "$ASAN_RT" ] || { echo "sanitize.sh: no ASan runtime at $ASAN_RT (apt-get install libclang-rt-14-dev)" >&2; exit 2; }

# -- build ----------------------------------------------------------------------------------
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)
NATIVE_NEW=$(mktemp)
printf "[binaries]\npython = '%s'\n" "$PYTHON" >"$NATIVE_NEW"
if [ ! -f "$BUILD/build.ninja" ] || ! cmp -s "$NATIVE_NEW" "$BUILD/native.ini"; then
    # first build, or another interpreter: configure from scratch
    rm -rf "$BUILD"
    mkdir -p "$BUILD"
    mv "$NATIVE_NEW" "$BUILD/native.ini"
    CC="$CC" meson setup "$BUILD" \
        --native-file "$BUILD/native.ini" \
        -Dbuildtype=debug \
        -Db_sanitize=address,undefined \
        -Db_lto=false \
        -Db_lundef=false \
        -Dc_args="-O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
        -Dc_link_args="-fno-sanitize-recover=undefined" \
        >"$BUILD/setup.log" 2>&1 || { cat "$BUILD/setup.log" >&2; exit 2; }
else
    rm -f "$NATIVE_NEW"
fi
ninja -C "$BUILD" >"$BUILD/ninja.log" 2>&1 || { cat "$BUILD/ninja.log" >&2; exit 2; }

# -- the package that pytest imports ----------------------------------------------------------
PKG="$BUILD/pkg"
rm -rf "$PKG"
mkdir -p "$PKG/cmemcache"
cp python/cmemcache/*.py "$PKG/cmemcache/"
for extra in python/cmemcache/*.pyi python/cmemcache/py.typed; do
    [ ! -f "$extra" ] || cp "$extra" "$PKG/cmemcache/"
done
cp "$BUILD"/_cmemcache*.so "$PKG/cmemcache/"
# distribution metadata: importlib.metadata.version("cmemcache") and the
# entry points (console script, dogpile backend) must resolve to this copy
VERSION=$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" meson.build | head -n 1)
DIST="$PKG/cmemcache-${VERSION:-0}.dist-info"
mkdir -p "$DIST"
printf 'Metadata-Version: 2.1\nName: cmemcache\nVersion: %s\n' "${VERSION:-0}" >"$DIST/METADATA"
"$PYTHON" -c 'import importlib.metadata as m
try:
    print(m.distribution("cmemcache").read_text("entry_points.txt") or "", end="")
except m.PackageNotFoundError:
    pass' >"$DIST/entry_points.txt"

# binaries the tests start, without the ASan runtime
BIN="$BUILD/bin"
rm -rf "$BIN"
mkdir -p "$BIN"
for tool in memcached nutcracker; do
    real=$(command -v "$tool" 2>/dev/null || true)
    [ -n "$real" ] || [ ! -x "/usr/sbin/$tool" ] || real="/usr/sbin/$tool"
    [ -n "$real" ] || [ ! -x "/usr/bin/$tool" ] || real="/usr/bin/$tool"
    [ -n "$real" ] || continue
    printf '#!/bin/sh\nunset LD_PRELOAD\nexec %s "$@"\n' "$real" >"$BIN/$tool"
    chmod +x "$BIN/$tool"
done

# -- the environment ------------------------------------------------------------------------
LOGS="$BUILD/reports"
rm -rf "$LOGS"
mkdir -p "$LOGS"

SKIP=$("$PYTHON" -c 'import sys, os
print(os.pathsep.join(getattr(f, "_build_path", "") for f in sys.meta_path
                      if type(f).__name__ == "MesonpyMetaFinder"))')

if [ "$LEAKS" = 1 ]; then
    # full allocation stacks (CPython is built without frame pointers, so the
    # fast unwinder stops inside libpython before reaching the extension)
    LEAK_OPTS="detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=40"
else
    LEAK_OPTS="detect_leaks=0"
fi
export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0:exitcode=0"
COMMON="log_exe_name=1:log_path=$LOGS/report"
ASAN_BASE="abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:detect_stack_use_after_return=0:$COMMON"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:report_error_type=1:$COMMON"
export PYTHONMALLOC=malloc
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"
export MESONPY_EDITABLE_SKIP="$SKIP"
export CMEMCACHE_EXPECT_BUILD="$PKG"
export PYTHONFAULTHANDLER=1
export PATH="$BIN:$PATH"
export MEMCACHED="${MEMCACHED:-$BIN/memcached}"

# -- which build is imported ------------------------------------------------------------------
ASAN_OPTIONS="$ASAN_BASE" LD_PRELOAD="$ASAN_RT" "$PYTHON" "$ROOT/tests/sanitize_check.py" || {
    echo "sanitize.sh: the sanitized build is not the one imported" >&2
    exit 2
}

# -- run ----------------------------------------------------------------------------------------
run_pytest() {  # $1: the leak options; then the pytest arguments
    leak_opts=$1
    shift
    ASAN_OPTIONS="$leak_opts:$ASAN_BASE" LD_PRELOAD="$ASAN_RT" \
        "$PYTHON" -m pytest -p no:cacheprovider -q "$@"
}

status=0
if [ "$#" -eq 0 ]; then
    # Everything but the files that do not exercise the extension under a
    # sanitizer: packaging and typing (they build or type-check, in fresh
    # environments) and the memory soak (its RSS bounds do not hold under
    # ASan's quarantine; tests/valgrind.sh and a debug interpreter run it).
    # The command-line tool's tests start dozens of interpreters, several
    # seconds each with full allocation stacks: they run second, with
    # ASan and UBSan but without LeakSanitizer.
    run_pytest "$LEAK_OPTS" tests \
        --ignore=tests/test_packaging.py \
        --ignore=tests/test_typing.py \
        --ignore=tests/test_memory.py \
        --ignore=tests/test_cli.py || status=$?
    if [ -f tests/test_cli.py ]; then
        run_pytest "detect_leaks=0" tests/test_cli.py || [ "$status" -ne 0 ] || status=1
    fi
else
    run_pytest "$LEAK_OPTS" "$@" || status=$?
fi
pytest_status=$status

# -- the verdict ----------------------------------------------------------------------------------
"$PYTHON" - "$LOGS" "$(basename "$PYTHON")" "$ROOT/ext/" <<'PYEOF' || status=$((status == 0 ? 1 : status))
import glob, os, re, sys

logs, pyname, ext_dir = sys.argv[1], sys.argv[2], sys.argv[3]
FRAME = re.compile(r"^\s+#\d+ ")
counted = leaks_elsewhere = ignored = 0
for path in sorted(glob.glob(os.path.join(logs, "*"))):
    name = os.path.basename(path)
    exe = name.split(".")[1] if name.count(".") >= 2 else "?"
    text = open(path, errors="replace").read()
    if not text.strip():
        continue
    if not (exe == pyname or exe.startswith("python")):
        ignored += 1
        print(f"sanitize.sh: ignored a report of another program ({exe}): {path}")
        continue
    errors = "ERROR: AddressSanitizer" in text or "runtime error:" in text
    leak_blocks = [b for b in re.split(r"\n(?=(?:Direct|Indirect) leak of )", text) if " leak of " in b]
    ours = [b for b in leak_blocks
            if any(FRAME.match(l) and ("_cmemcache" in l or ext_dir in l) for l in b.splitlines())]
    if errors or ours:
        counted += 1
        print(f"\n==== sanitizer report: {path}")
        if errors:
            print(text[:12000])
        for block in ours:
            print(block.strip()[:6000])
            print()
    else:
        leaks_elsewhere += len(leak_blocks)
if leaks_elsewhere:
    print(f"sanitize.sh: {leaks_elsewhere} leak record(s) with no frame in the extension "
          f"(CPython at exit; not counted), in {logs}")
if counted:
    print(f"sanitize.sh: {counted} process(es) with sanitizer reports against the extension or "
          f"memory errors")
sys.exit(1 if counted else 0)
PYEOF

if [ "$status" -eq 0 ]; then
    echo "sanitize.sh: pytest passed; no sanitizer report against the extension"
elif [ "$pytest_status" -ne 0 ]; then
    echo "sanitize.sh: pytest exit status $pytest_status" >&2
fi
exit "$status"
