/* Check counting for the plain C tests (test_proto.c, test_meta.c,
 * test_engine.c, test_pipe.c, test_tls.c): CHECK, CHECK_MSG, CHECK_EQ and
 * CHECK_BYTES count passes and failures and print each failure with the
 * context set by set_ctx (the first MAX_PRINTED_FAILURES of them: further
 * failures are counted, not printed), and check_summary prints the last
 * line, "N passed, N failed".  Safe to use from several threads.
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
static char check_ctx[512];    /* what is being tested (main thread) */

#define MAX_PRINTED_FAILURES 300

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static inline void
set_ctx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(check_ctx, sizeof check_ctx, fmt, ap);
    va_end(ap);
}

static inline bool
check(bool ok, const char *expr, const char *file, int line)
{
    if (ok) {
        atomic_fetch_add(&n_passed, 1);
        return true;
    }
    unsigned long n = atomic_fetch_add(&n_failed, 1) + 1;
    if (n <= MAX_PRINTED_FAILURES) {
        fprintf(stderr, "%s:%d: FAIL: %s [%s]\n", file, line, expr,
                check_ctx);
    }
    else if (n == MAX_PRINTED_FAILURES + 1) {
        fprintf(stderr, "(further failures are counted, not printed)\n");
    }
    return false;
}

/* True while failures are still printed (for the detail under one). */
static inline bool
check_printing(void)
{
    return atomic_load(&n_failed) <= MAX_PRINTED_FAILURES;
}

#define CHECK(cond) check((cond), #cond, __FILE__, __LINE__)

/* A failure is followed by a line of detail (expected/got). */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static inline bool
check_msg(bool ok, const char *expr, const char *file, int line,
          const char *fmt, ...)
{
    if (check(ok, expr, file, line)) {
        return true;
    }
    if (check_printing()) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "    ");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    return false;
}

#define CHECK_MSG(cond, ...) \
    check_msg((cond), #cond, __FILE__, __LINE__, __VA_ARGS__)

static inline bool
check_eq(long long got, long long want, const char *expr, const char *file,
         int line)
{
    return check_msg(got == want, expr, file, line, "got %lld, want %lld",
                     got, want);
}

#define CHECK_EQ(got, want)                                                 \
    check_eq((long long)(got), (long long)(want), #got " == " #want,        \
             __FILE__, __LINE__)

/* Printable rendering of bytes for messages (truncated, then "..."). */
static inline const char *
show(const char *p, size_t n)
{
    static _Thread_local char out[4][200];
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
    if (j + 8 >= sizeof out[0]) {
        memcpy(o + j, "...", 3);
        j += 3;
    }
    o[j] = '\0';
    return o;
}

static inline bool
check_bytes(const char *got, size_t got_len, const char *want,
            size_t want_len, const char *expr, const char *file, int line)
{
    bool ok = got_len == want_len
              && (want_len == 0 || memcmp(got, want, want_len) == 0);
    if (check(ok, expr, file, line)) {
        return true;
    }
    if (check_printing()) {
        fprintf(stderr, "    got  (%zu) \"%s\"\n    want (%zu) \"%s\"\n",
                got_len, show(got, got_len), want_len, show(want, want_len));
    }
    return false;
}

/* The bytes got[0, got_len) equal the C string want. */
#define CHECK_BYTES(got, got_len, want)                                     \
    check_bytes((got), (got_len), (want), strlen(want), #got " == " #want,  \
                __FILE__, __LINE__)

/* Prints the last line; the exit status: non-zero when a check failed. */
static inline int
check_summary(void)
{
    unsigned long failed = atomic_load(&n_failed);
    printf("%lu passed, %lu failed\n", atomic_load(&n_passed), failed);
    return failed ? 1 : 0;
}

#endif
