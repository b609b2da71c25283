#!/bin/sh
# Builds the mc_parse libFuzzer target and runs it for SECONDS (default 60).
#
# Usage (from anywhere; paths are resolved against the repository root):
#   tests/fuzz/run.sh [SECONDS] [extra libFuzzer flags...]
#
# The binary, a working copy of the corpus (the repository's corpus is never
# modified), the log and any crash artifacts go to build/fuzz/.  Prints the
# number of executions; exits non-zero when the target crashed or an
# invariant failed.  Replay one input:  build/fuzz/fuzz_parse FILE
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

secs=${1:-60}
[ $# -gt 0 ] && shift
out=build/fuzz
cc=${CLANG:-clang}

mkdir -p "$out/artifacts"
echo "== building $out/fuzz_parse"
$cc -std=c11 -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I ext ext/proto.c tests/fuzz/fuzz_parse.c -o "$out/fuzz_parse"

rm -rf "$out/corpus"
cp -R tests/fuzz/corpus "$out/corpus"

echo "== fuzzing for $secs s (log: $out/fuzz.log)"
status=0
"$out/fuzz_parse" -max_total_time="$secs" -max_len=4096 \
    -dict=tests/fuzz/dict -artifact_prefix="$out/artifacts/" \
    -print_final_stats=1 "$@" "$out/corpus" >"$out/fuzz.log" 2>&1 \
    || status=$?

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/fuzz.log" \
       | tail -n 1)
if [ -z "$runs" ]; then
    # no final stats after a crash: take the last progress line
    runs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$out/fuzz.log" | tail -n 1)
fi
echo "executions: ${runs:-unknown}"

if [ "$status" -ne 0 ]; then
    echo "FAILED (exit $status); the report:" >&2
    grep -E 'invariant failed|ERROR: |SUMMARY|runtime error|Test unit written' \
        "$out/fuzz.log" >&2 || tail -n 40 "$out/fuzz.log" >&2
    exit 1
fi
echo "no crash"
