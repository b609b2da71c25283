/* Check counting for the plain C tests of the engine (test_engine.c,
 * test_pipe.c): CHECK and CHECK_EQ count passes and failures, print each
 * failure with the context set by set_ctx, and check_summary prints the
 * last line, "N passed, N failed".  Safe to use from several threads.
 */
#ifndef CMEMCACHE_TEST_CHECK_H
#define CMEMCACHE_TEST_CHECK_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_ulong n_passed;
static atomic_ulong n_failed;
static char ctx[256];          /* what is being tested (main thread) */

#define MAX_PRINTED_FAILURES 200

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void
set_ctx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
}

static bool
check(bool ok, const char *expr, const char *file, int line)
{
    if (ok) {
        atomic_fetch_add(&n_passed, 1);
        return true;
    }
    unsigned long n = atomic_fetch_add(&n_failed, 1) + 1;
    if (n <= MAX_PRINTED_FAILURES) {
        fprintf(stderr, "%s:%d: FAIL: %s [%s]\n", file, line, expr, ctx);
    }
    return false;
}

#define CHECK(cond) check((cond), #cond, __FILE__, __LINE__)

static bool
check_eq(long long got, long long want, const char *expr, const char *file,
         int line)
{
    if (check(got == want, expr, file, line)) {
        return true;
    }
    if (atomic_load(&n_failed) <= MAX_PRINTED_FAILURES) {
        fprintf(stderr, "    got %lld, want %lld\n", got, want);
    }
    return false;
}

#define CHECK_EQ(got, want)                                                 \
    check_eq((long long)(got), (long long)(want), #got " == " #want,        \
             __FILE__, __LINE__)

/* Printable rendering of bytes for messages (truncated). */
static const char *
show(const char *p, size_t n)
{
    static _Thread_local char out[4][160];
    static _Thread_local int slot;
    char *o = out[slot++ & 3];
    size_t j = 0;
    for (size_t i = 0; i < n && j + 8 < sizeof out[0]; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r' || c == '\n') {
            o[j++] = '\\';
            o[j++] = c == '\r' ? 'r' : 'n';
        }
        else if (c < 0x20 || c >= 0x7f || c == '\\') {
            j += (size_t)snprintf(o + j, 5, "\\x%02x", c);
        }
        else {
            o[j++] = (char)c;
        }
    }
    o[j] = '\0';
    return o;
}

static bool
check_bytes(const char *got, size_t got_len, const char *want,
            size_t want_len, const char *expr, const char *file, int line)
{
    bool ok = got_len == want_len
              && (want_len == 0 || memcmp(got, want, want_len) == 0);
    if (check(ok, expr, file, line)) {
        return true;
    }
    if (atomic_load(&n_failed) <= MAX_PRINTED_FAILURES) {
        fprintf(stderr, "    got  (%zu) \"%s\"\n    want (%zu) \"%s\"\n",
                got_len, show(got, got_len), want_len, show(want, want_len));
    }
    return false;
}

/* The bytes got[0, got_len) equal the C string want. */
#define CHECK_BYTES(got, got_len, want)                                     \
    check_bytes((got), (got_len), (want), strlen(want), #got " == " #want,  \
                __FILE__, __LINE__)

static int
check_summary(void)
{
    unsigned long failed = atomic_load(&n_failed);
    printf("%lu passed, %lu failed\n", atomic_load(&n_passed), failed);
    return failed ? 1 : 0;
}

#endif
