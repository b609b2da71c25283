#!/bin/sh
# Builds and runs the plain C tests of ext/proto.c and ext/buf.c
# (test_proto), of ext/meta.c (test_meta), of the engine: ext/engine.c and
# ext/multi.c (test_engine) and ext/pipe.c (test_pipe), of the
# authentication exchange, ext/auth.c (test_auth), and, when OpenSSL's
# headers are there, of ext/tls.c (test_tls, which starts memcached -Z
# servers on loopback; MEMCACHED names the binary).
#
# Usage (from anywhere; paths are resolved against the repository root):
#   tests/c/build.sh [BUILD_DIR] [asan|valgrind|tsan|all]
#
#   BUILD_DIR  where the binaries go (default build/ctest, relative to the root)
#   asan       (default) ASan + UBSan build, every finding fatal
#   valgrind   plain -O1 build run under valgrind memcheck
#   tsan       test_engine's threaded tests built with ThreadSanitizer
#   all        the three
#
# CC selects the compiler (default cc).  Exit status is non-zero when the
# build fails, a check fails or a sanitizer/valgrind reports an error.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

build=${1:-build/ctest}
mode=${2:-asan}
cc=${CC:-cc}

case $mode in
asan|valgrind|tsan|all) ;;
*) echo "unknown mode '$mode' (asan, valgrind, tsan or all)" >&2; exit 2 ;;
esac

mkdir -p "$build"
status=0

warn="-std=c11 -Wall -Wextra -Wpedantic -Werror"
# test name, its sources, then the extra compiler and linker flags
engine_srcs=ext/engine.c,ext/pipe.c,ext/proto.c,ext/meta.c,ext/buf.c,ext/dist.c,ext/hash.c
tests="test_proto:ext/proto.c,ext/buf.c,tests/c/test_proto.c:
test_meta:ext/proto.c,ext/meta.c,tests/c/test_meta.c:
test_engine:$engine_srcs,ext/multi.c,tests/c/test_engine.c:-pthread
test_pipe:$engine_srcs,ext/conn.c,tests/c/test_pipe.c:-pthread
test_auth:$engine_srcs,ext/conn.c,ext/auth.c,tests/c/test_auth.c:-pthread"
if ! ssl_flags=$(pkg-config --cflags --libs openssl 2>/dev/null); then
    ssl_flags=""
    if printf '#include <openssl/ssl.h>\n' | $cc -E - >/dev/null 2>&1; then
        ssl_flags="-lssl -lcrypto"
    fi
fi
if [ -n "$ssl_flags" ]; then
    tests="$tests
test_tls:ext/proto.c,ext/buf.c,ext/conn.c,ext/tls.c,ext/tls_ctx.c,tests/c/test_tls.c:$(echo "$ssl_flags -pthread" | tr ' ' ',')"
else
    echo "== OpenSSL not found (Debian: libssl-dev): test_tls NOT built or run" >&2
fi

for t in $tests; do
    name=${t%%:*}
    rest=${t#*:}
    srcs=$(echo "${rest%%:*}" | tr ',' ' ')
    flags=$(echo "${rest#*:}" | tr ',' ' ')
    if [ "$mode" = asan ] || [ "$mode" = all ]; then
        echo "== $cc, ASan + UBSan: $build/$name"
        # shellcheck disable=SC2086
        $cc $warn -O1 -g -fno-omit-frame-pointer \
            -fsanitize=address,undefined -fno-sanitize-recover=all \
            -I ext $srcs $flags -o "$build/$name" || { status=1; continue; }
        ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
            "$build/$name" || status=1
    fi

    if [ "$mode" = valgrind ] || [ "$mode" = all ]; then
        echo "== $cc, valgrind memcheck: $build/${name}_plain"
        # shellcheck disable=SC2086
        $cc $warn -O1 -g -I ext $srcs $flags -o "$build/${name}_plain" \
            || { status=1; continue; }
        valgrind -q --error-exitcode=99 --leak-check=full \
            --child-silent-after-fork=yes \
            --errors-for-leak-kinds=definite "$build/${name}_plain" \
            || status=1
    fi
done

if [ "$mode" = tsan ] || [ "$mode" = all ]; then
    # test_engine.c defines the clock (no conn.c); "threads" runs only the
    # tests with several threads on one engine (and a fork among them).
    echo "== $cc, ThreadSanitizer: $build/test_engine_tsan threads"
    # shellcheck disable=SC2086
    if $cc $warn -O1 -g -fno-omit-frame-pointer -fsanitize=thread -I ext \
        $(echo "$engine_srcs,ext/multi.c" | tr ',' ' ') tests/c/test_engine.c \
        -pthread -o "$build/test_engine_tsan"; then
        TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:exitcode=66} \
            "$build/test_engine_tsan" threads || status=1
    else
        status=1
    fi
fi
exit $status
