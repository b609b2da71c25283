#!/bin/sh
# Builds the libFuzzer targets and runs them for SECONDS in all (default 60):
# fuzz_pipe (mc_conn_feed and the requests in flight on a connection) for
# FUZZ_PIPE_SECONDS of it (default a third), then fuzz_parse (mc_parse, the
# text protocol) for half of the rest, fuzz_meta (mc_meta_parse and the
# base64 coder, the meta protocol) for the other half.
#
# Usage (from anywhere; paths are resolved against the repository root):
#   tests/fuzz/run.sh [SECONDS] [extra libFuzzer flags...]
#
# The binaries, working copies of the corpora (the repository's corpora are
# never modified), the logs and any crash artifacts go to build/fuzz/.
# Prints the number of executions of each target; exits non-zero when a
# target crashed or an invariant failed.  Replay one input:
#   build/fuzz/fuzz_parse FILE   (or fuzz_meta, fuzz_pipe)
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

secs=${1:-60}
[ $# -gt 0 ] && shift
out=build/fuzz
cc=${CLANG:-clang}
pipe=${FUZZ_PIPE_SECONDS:-$((secs / 3))}
[ "$pipe" -lt "$secs" ] || pipe=$((secs / 3))
first=$(((secs - pipe) / 2))
second=$((secs - pipe - first))

mkdir -p "$out/artifacts"

# run NAME SECONDS CORPUS DICT SOURCES... -- extra flags
run() {
    name=$1 t=$2 corpus=$3 dict=$4
    shift 4
    srcs=""
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        srcs="$srcs $1"
        shift
    done
    [ $# -gt 0 ] && shift
    echo "== building $out/$name"
    # shellcheck disable=SC2086
    $cc -std=c11 -g -O1 -fno-omit-frame-pointer \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -I ext $srcs -o "$out/$name"

    rm -rf "$out/$name-corpus"
    cp -R "$corpus" "$out/$name-corpus"

    echo "== fuzzing $name for $t s (log: $out/$name.log)"
    rc=0
    "$out/$name" -max_total_time="$t" -max_len=4096 \
        -dict="$dict" -artifact_prefix="$out/artifacts/$name-" \
        -print_final_stats=1 "$@" "$out/$name-corpus" >"$out/$name.log" 2>&1 \
        || rc=$?

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name.log" \
           | tail -n 1)
    if [ -z "$runs" ]; then
        # no final stats after a crash: take the last progress line
        runs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$out/$name.log" \
               | tail -n 1)
    fi
    echo "$name executions: ${runs:-unknown}"

    if [ "$rc" -ne 0 ]; then
        echo "$name FAILED (exit $rc); the report:" >&2
        grep -E 'invariant failed|ERROR: |SUMMARY|runtime error|Test unit written' \
            "$out/$name.log" >&2 || tail -n 40 "$out/$name.log" >&2
        status=1
    fi
}

status=0
run fuzz_pipe "$pipe" tests/fuzz/corpus-pipe tests/fuzz/dict \
    ext/pipe.c ext/engine.c ext/proto.c ext/meta.c ext/buf.c ext/dist.c ext/hash.c \
    ext/conn.c -pthread tests/fuzz/fuzz_pipe.c -- "$@"
run fuzz_parse "$first" tests/fuzz/corpus tests/fuzz/dict \
    ext/proto.c tests/fuzz/fuzz_parse.c -- "$@"
run fuzz_meta "$second" tests/fuzz/corpus-meta tests/fuzz/dict-meta \
    ext/proto.c ext/meta.c tests/fuzz/fuzz_meta.c -- "$@"
[ "$status" -eq 0 ] || exit 1
echo "no crash"
