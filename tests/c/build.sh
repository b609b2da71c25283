#!/bin/sh
# Builds and runs the plain C tests of ext/proto.c and ext/buf.c
# (test_proto), of ext/meta.c (test_meta) and, when OpenSSL's headers are
# there, of ext/tls.c (test_tls, which starts memcached -Z servers on
# loopback; MEMCACHED names the binary).
#
# Usage (from anywhere; paths are resolved against the repository root):
#   tests/c/build.sh [BUILD_DIR] [asan|valgrind|all]
#
#   BUILD_DIR  where the binaries go (default build/ctest, relative to the root)
#   asan       (default) ASan + UBSan build, every finding fatal
#   valgrind   plain -O1 build run under valgrind memcheck
#   all        both
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
asan|valgrind|all) ;;
*) echo "unknown mode '$mode' (asan, valgrind or all)" >&2; exit 2 ;;
esac

mkdir -p "$build"
status=0

warn="-std=c11 -Wall -Wextra -Wpedantic -Werror"
# test name, its sources, then the extra compiler and linker flags
tests="test_proto:ext/proto.c,ext/buf.c,tests/c/test_proto.c:
test_meta:ext/proto.c,ext/meta.c,tests/c/test_meta.c:"
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
exit $status
