#!/bin/sh
# A reduced pytest selection under valgrind memcheck, with the regular
# build (the editable install).
#
#   sh tests/valgrind.sh                                   # the default selection
#   sh tests/valgrind.sh tests/test_faults.py -k fork      # any pytest arguments
#   PYTHON=.venv/bin/python sh tests/valgrind.sh
#
# valgrind runs with
#   --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99
#   --suppressions=tests/valgrind-python.supp
# and PYTHONMALLOC=malloc, following the Python children the tests start
# (subprocess tests) and forked children, but not memcached, nutcracker or
# build tools.
#
# Each process writes its log to build/valgrind/ (a forked child writes to
# its parent's log; every line carries its pid).  The script exits non-zero
# when pytest fails or when an error or a definite leak has a frame in the
# extension (_cmemcache*.so, ext/*.c).  Errors entirely inside CPython or
# other libraries are listed but do not fail the run (add them to
# tests/valgrind-python.supp when they are noise).

set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PYTHON=${PYTHON:-python3}
# the interpreter itself, not a launcher script (pyenv shims are bash)
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind not found (apt-get install valgrind)" >&2; exit 2; }

OUT=${VALGRIND_OUT:-build/valgrind}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/vg.*.log "$OUT"/pytest.status

# the extension that will be imported (the editable install rebuilds it on
# import when the sources changed: that happens now, outside valgrind)
"$PYTHON" -c 'import cmemcache._cmemcache as m; print("valgrind.sh: extension", m.__file__)'

if [ "$#" -eq 0 ]; then
    # the reply parser through sockets, error paths and error lines,
    # restarts (subprocess, SIGPIPE at its default), fork, noreply fences,
    # a timeout in the middle of a write, key validation, and the per-call
    # leak checks
    set -- tests/test_protocol.py tests/test_errors.py tests/test_faults.py \
        tests/test_keys.py tests/test_memory.py -k "$(echo \
        split or one_byte or garbage or bad_byte_count or bad_flags or bad_cas \
        or terminator or not_requested or error_line or truncated or reset_mid \
        or restart_between or fork_with or noreply_error_line or mid_write_appends \
        or rejected_before_sending or each_call)"
fi

status=0
PYTHONMALLOC=malloc PYTHONFAULTHANDLER=1 valgrind \
    --tool=memcheck \
    --leak-check=full \
    --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite \
    --error-exitcode=99 \
    --suppressions="$ROOT/tests/valgrind-python.supp" \
    --num-callers=60 \
    --fullpath-after= \
    --trace-children=yes \
    --trace-children-skip='*/memcached,*/nutcracker,*/ninja,*/meson,*/git,*/sh,*/bash,*/dash,*/uname,*/ldconfig*,*/cc,*/gcc*,*/clang*,*/ld' \
    --child-silent-after-fork=no \
    --log-file="$OUT/vg.%p.log" \
    "$PYTHON" -c '
import sys, pytest
rc = pytest.main(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(int(rc)))
sys.exit(rc)
' "$OUT/pytest.status" -p no:cacheprovider -q "$@" || status=$?

pytest_status=$(cat "$OUT/pytest.status" 2>/dev/null || echo missing)

# Which errors are the extension's: regroup each log by pid, then look for
# a frame in the extension in every error and definite leak.
"$PYTHON" - "$OUT" "$ROOT/ext/" <<'PYEOF' || status=98
import collections, glob, os, re, sys

out, ext_dir = sys.argv[1], sys.argv[2]
LINE = re.compile(r"^==(\d+)== ?(.*)$")
ERROR = re.compile(
    r"^(Invalid |Conditional jump|Use of uninitialised|Syscall param|Mismatched free"
    r"|Source and destination|Argument .* of function|Jump to the invalid address"
    r"|[\d,]+ bytes in [\d,]+ blocks are definitely lost"
    r"|Process terminating with default action of signal (6|7|8|11) )"
)


def ours(frame):
    return "_cmemcache" in frame or ext_dir in frame


found = 0
elsewhere = collections.Counter()
for path in sorted(glob.glob(os.path.join(out, "vg.*.log"))):
    blocks = collections.defaultdict(list)  # pid -> lines of its current block
    reports = []
    with open(path, errors="replace") as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            pid, text = m.groups()
            if not text.strip():
                if blocks[pid]:
                    reports.append((pid, blocks.pop(pid)))
                continue
            blocks[pid].append(text)
    reports += [(pid, lines) for pid, lines in blocks.items() if lines]
    for pid, lines in reports:
        if not ERROR.match(lines[0]):
            continue
        frames = [l.strip() for l in lines[1:] if l.strip().startswith(("at 0x", "by 0x"))]
        if any(ours(fr) for fr in frames):
            found += 1
            print(f"\n==== in the extension (pid {pid}, {os.path.basename(path)}): {lines[0]}")
            for l in lines[1:40]:
                print("    " + l.strip())
        else:
            top = frames[0].split(": ", 1)[-1].split(" (")[0] if frames else "?"
            elsewhere[(re.sub(r"[\d,]+", "N", lines[0]), top)] += 1
if elsewhere:
    print("valgrind.sh: errors with no frame in the extension (not counted):")
    for (what, top), n in elsewhere.most_common(15):
        print(f"    {n:5d} x {what}  at {top}")
print(f"valgrind.sh: {found} error(s) in the extension, {sum(elsewhere.values())} elsewhere")
sys.exit(1 if found else 0)
PYEOF

if [ "$pytest_status" != 0 ]; then
    echo "valgrind.sh: pytest exit status $pytest_status" >&2
    if [ "$status" -eq 0 ] || [ "$status" -eq 99 ]; then
        status=1
    fi
elif [ "$status" -eq 99 ]; then
    # valgrind found errors, none of them the extension's (listed above)
    status=0
fi
if [ "$status" -eq 0 ]; then
    echo "valgrind.sh: pytest passed; no error or definite leak in the extension"
fi
exit "$status"
