/* Bytes placed exactly, for the tests that read replies (test_proto.c,
 * test_meta.c, test_pipe.c and tests/fuzz/fuzz_pipe.c): malloc'd copies of
 * exactly their length, blocks flush against a PROT_NONE guard page and an
 * mc_buf that holds exactly its unread bytes, so that a read past the bytes
 * given is an AddressSanitizer error (or, at a guard page, a fault even
 * without ASan).  The including file defines _DEFAULT_SOURCE (or
 * _GNU_SOURCE) before its first #include, for MAP_ANONYMOUS.
 */
#ifndef CMEMCACHE_TEST_GUARD_H
#define CMEMCACHE_TEST_GUARD_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buf.h"

/* A string literal's bytes and length, as two arguments. */
#define L(lit) (lit), (sizeof(lit) - 1)

static inline void *
guard_alloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        perror("malloc");
        exit(2);
    }
    return p;
}

/* A malloc'd copy of exactly n bytes: reading p[n] is an ASan error. */
static inline char *
exact_copy(const char *p, size_t n)
{
    /* malloc(0) gives a unique pointer with no readable bytes (glibc, ASan) */
    char *c = guard_alloc(n);
    if (n) {
        memcpy(c, p, n);
    }
    return c;
}

/* A malloc'd copy of n bytes and a NUL after them. */
static inline char *
dup_bytes(const char *p, size_t n)
{
    char *c = guard_alloc(n + 1);
    memcpy(c, p, n);
    c[n] = '\0';
    return c;
}

/* b becomes an exact-size block: its unread bytes, then p[0, n). */
static inline void
exact_append(struct mc_buf *b, const char *p, size_t n)
{
    size_t have = mc_buf_len(b);
    char *block = guard_alloc(have + n ? have + n : 1);
    if (have) {
        memcpy(block, mc_buf_head(b), have);
    }
    if (n) {
        memcpy(block + have, p, n);
    }
    free(b->data);
    b->data = block;
    b->start = 0;
    b->end = b->cap = have + n;
}

static char *guard_base;
static size_t guard_size; /* readable bytes before the guard page */
static size_t page_size;

/* Returns a pointer to n bytes ending exactly at a PROT_NONE page. */
static inline char *
guard_place(const char *p, size_t n)
{
    if (page_size == 0) {
        page_size = (size_t)sysconf(_SC_PAGESIZE);
    }
    if (guard_base == NULL || n > guard_size) {
        if (guard_base != NULL) {
            munmap(guard_base, guard_size + page_size);
        }
        size_t pages = n ? (n + page_size - 1) / page_size : 1;
        guard_size = pages * page_size;
        guard_base = mmap(NULL, guard_size + page_size,
                          PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                          -1, 0);
        if (guard_base == MAP_FAILED) {
            perror("mmap");
            exit(2);
        }
        if (mprotect(guard_base + guard_size, page_size, PROT_NONE) != 0) {
            perror("mprotect");
            exit(2);
        }
    }
    char *dst = guard_base + guard_size - n;
    if (n) {
        memcpy(dst, p, n);
    }
    return dst;
}

/* Writable: out[0, n) is usable and filled with 0x5a, out[n] faults. */
static inline char *
guard_out(size_t n)
{
    if (guard_base == NULL || n > guard_size) {
        char *tmp = calloc(n, 1);
        guard_place(tmp, n);
        free(tmp);
    }
    char *dst = guard_base + guard_size - n;
    memset(dst, 0x5a, n);
    return dst;
}

/* True when p[0, n) still holds guard_out's filling. */
static inline bool
untouched(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)p[i] != 0x5a) {
            return false;
        }
    }
    return true;
}

/* Unmaps the guard page's block (at the end of a run). */
static inline void
guard_release(void)
{
    if (guard_base != NULL) {
        munmap(guard_base, guard_size + page_size);
        guard_base = NULL;
    }
}

#endif
