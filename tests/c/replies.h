/* The catalogue of replies and how each is run, for the tests of the two
 * reply parsers: test_proto.c (mc_parse, the text protocol) and test_meta.c
 * (mc_meta_parse, the meta protocol).
 *
 * A valid reply is parsed at every prefix (from an exact-size copy and
 * flush against a guard page), with trailing bytes, with a max_value of
 * SIZE_MAX, one byte short of its value and exactly its value, and twice
 * for the same answer; a malformed one is an error at its full length and
 * never a wait after an error at a shorter prefix, with trailing bytes too.
 * A stream of frames is parsed frame after frame, and the catalogue can be
 * written out as a fuzzer's seed corpus.
 *
 * The including file defines, before #include "replies.h":
 *   struct expect      what a valid reply parses to (.kind, .value_len and
 *                      its own fields); check_fields() compares a reply
 *                      with one and is defined after the #include
 *   REPLY_T            the parser's reply struct (.kind, .need)
 *   REPLY_PARSE        the parser: ssize_t (const char *, size_t,
 *                      size_t max_value, REPLY_T *)
 *   REPLY_HAS_VALUE(k) true for the kinds of frame with a value after the line
 *   REPLY_NEXT_FRAME   a whole frame, and REPLY_VALUE_LINE the line of a
 *                      value, that follow a reply as trailing bytes
 */
#ifndef CMEMCACHE_TEST_REPLIES_H
#define CMEMCACHE_TEST_REPLIES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "guard.h"
#include "proto.h"

/* A reply of the catalogue: valid (exactly one frame, parsed to e) or
 * malformed (e unused). */
struct reply_case {
    const char *name;
    char *bytes;
    size_t len;
    size_t max_value; /* of a malformed one, BOTH_MAX: 1 MiB and SIZE_MAX */
    struct expect e;
};

#define MAX_CASES 256
static struct reply_case valid[MAX_CASES];
static size_t n_valid;
static struct reply_case bad[MAX_CASES];
static size_t n_bad;

#define DEFAULT_MAX ((size_t)1 << 20)
#define BOTH_MAX SIZE_MAX

static struct reply_case *
add_case(struct reply_case *table, size_t *n, const char *name,
         const char *bytes, size_t len, size_t max_value)
{
    if (*n == MAX_CASES) {
        fprintf(stderr, "too many cases\n");
        exit(2);
    }
    struct reply_case *c = &table[(*n)++];
    memset(c, 0, sizeof *c);
    c->name = name;
    c->bytes = dup_bytes(bytes, len);
    c->len = len;
    c->max_value = max_value;
    return c;
}

/* Adds a valid reply; its expect is zeroed for the caller to fill in. */
static struct expect *
add_valid_case(const char *name, const char *bytes, size_t len,
               size_t max_value)
{
    return &add_case(valid, &n_valid, name, bytes, len, max_value)->e;
}

static void
add_bad_max(const char *name, const char *bytes, size_t len, size_t max_value)
{
    add_case(bad, &n_bad, name, bytes, len, max_value);
}

static void
add_bad(const char *name, const char *bytes, size_t len)
{
    add_bad_max(name, bytes, len, BOTH_MAX);
}

static void
free_cases(void)
{
    for (size_t i = 0; i < n_valid; i++) {
        free(valid[i].bytes);
    }
    for (size_t i = 0; i < n_bad; i++) {
        free(bad[i].bytes);
    }
}

/* ------------------------------------------------------------------------ */
/* Parsing utilities                                                         */

static void
poison(REPLY_T *r)
{
    memset(r, 0xa5, sizeof *r);
}

static size_t
line_length(const char *p, size_t n)
{
    const char *lf = memchr(p, '\n', n);
    return lf ? (size_t)(lf - p) + 1 : 0;
}

/* p[0, n) lies within base[0, len). */
static bool
inside(const char *p, size_t n, const char *base, size_t len)
{
    if (n == 0) {
        return true;
    }
    return p != NULL && p >= base && p + n <= base + len && p + n >= p;
}

/* Checks the fields of r (parsed from base, frame_len bytes) against e. */
static void check_fields(const REPLY_T *r, const char *base,
                         size_t frame_len, const struct expect *e);

static const struct {
    const char *bytes;
    size_t len;
} trailers[] = {
    {L(REPLY_NEXT_FRAME)},
    {L("X")},
    {L("\0")},
    {L("\r\n")},
    {L("\n")},
    {L(REPLY_VALUE_LINE)},
    {L("garbage without a line end")},
};

#define N_TRAILERS (sizeof trailers / sizeof trailers[0])

/* A malloc'd copy of p[0, n) followed by trailer t; its length in *len. */
static char *
with_trailer(const char *p, size_t n, size_t t, size_t *len)
{
    *len = n + trailers[t].len;
    char *b = guard_alloc(*len);
    memcpy(b, p, n);
    memcpy(b + n, trailers[t].bytes, trailers[t].len);
    return b;
}

/* ------------------------------------------------------------------------ */
/* Valid replies                                                             */

static void
run_valid_prefixes(const struct reply_case *c, bool guard)
{
    size_t frame = c->len;
    size_t line = line_length(c->bytes, c->len);
    REPLY_T r;

    for (size_t k = 0; k <= frame; k++) {
        set_ctx("%s: prefix %zu of %zu%s", c->name, k, frame,
                guard ? " (guard page)" : "");
        char *b = guard ? guard_place(c->bytes, k) : exact_copy(c->bytes, k);
        poison(&r);
        ssize_t rc = REPLY_PARSE(b, k, c->max_value, &r);
        if (k < frame) {
            CHECK_MSG(rc == MC_NEED_MORE, "expected MC_NEED_MORE, got %zd",
                      rc);
            if (rc == MC_NEED_MORE) {
                size_t want = (REPLY_HAS_VALUE(c->e.kind) && k >= line)
                                  ? frame
                                  : 0;
                CHECK_MSG(r.need == want, "need: expected %zu, got %zu", want,
                          r.need);
            }
        }
        else {
            CHECK_MSG(rc == (ssize_t)frame, "expected %zu, got %zd", frame,
                      rc);
            if (rc == (ssize_t)frame) {
                check_fields(&r, b, frame, &c->e);
            }
        }
        if (!guard) {
            free(b);
        }
    }
}

static void
run_valid_trailing(const struct reply_case *c)
{
    REPLY_T r;
    for (size_t t = 0; t < N_TRAILERS; t++) {
        size_t n;
        char *b = with_trailer(c->bytes, c->len, t, &n);
        set_ctx("%s: trailing '%s'", c->name,
                show(trailers[t].bytes, trailers[t].len));
        poison(&r);
        ssize_t rc = REPLY_PARSE(b, n, c->max_value, &r);
        CHECK_MSG(rc == (ssize_t)c->len, "expected %zu, got %zd", c->len, rc);
        if (rc == (ssize_t)c->len) {
            check_fields(&r, b, c->len, &c->e);
        }
        free(b);
    }
}

/* Every run of a valid reply but the file's own. */
static void
run_valid(const struct reply_case *c)
{
    run_valid_prefixes(c, false);
    run_valid_prefixes(c, true);
    run_valid_trailing(c);

    /* a larger max_value changes nothing */
    REPLY_T r1, r2;
    set_ctx("%s: max_value SIZE_MAX", c->name);
    poison(&r1);
    ssize_t a = REPLY_PARSE(c->bytes, c->len, SIZE_MAX, &r1);
    CHECK_MSG(a == (ssize_t)c->len, "expected %zu, got %zd", c->len, a);
    if (a == (ssize_t)c->len) {
        check_fields(&r1, c->bytes, c->len, &c->e);
    }

    /* a value of value_len bytes is a protocol error with a max_value one
     * below, as soon as its line is in, and parses with exactly value_len */
    if (REPLY_HAS_VALUE(c->e.kind) && c->e.value_len > 0) {
        size_t line = line_length(c->bytes, c->len);
        set_ctx("%s: max_value one below", c->name);
        char *h = exact_copy(c->bytes, line);
        poison(&r1);
        a = REPLY_PARSE(h, line, c->e.value_len - 1, &r1);
        CHECK_MSG(a == MC_EPROTO, "expected MC_EPROTO, got %zd", a);
        free(h);
        poison(&r1);
        a = REPLY_PARSE(c->bytes, c->len, c->e.value_len - 1, &r1);
        CHECK_MSG(a == MC_EPROTO, "expected MC_EPROTO, got %zd", a);
        set_ctx("%s: max_value exact", c->name);
        poison(&r1);
        a = REPLY_PARSE(c->bytes, c->len, c->e.value_len, &r1);
        CHECK_MSG(a == (ssize_t)c->len, "expected %zu, got %zd", c->len, a);
    }

    /* the parser is pure: the same bytes give the same answer */
    set_ctx("%s: repeat", c->name);
    poison(&r1);
    poison(&r2);
    CHECK(REPLY_PARSE(c->bytes, c->len, c->max_value, &r1)
          == REPLY_PARSE(c->bytes, c->len, c->max_value, &r2));
}

static void
test_valid(void)
{
    for (size_t i = 0; i < n_valid; i++) {
        run_valid(&valid[i]);
    }
}

/* A frame of a stream and the kind it parses to. */
struct stream_frame {
    const char *frame;
    int kind;
};

/* The frames concatenated and parsed one after the other. */
static void
run_stream(const struct stream_frame *want, size_t nw)
{
    char s[512] = {0};
    size_t n = 0;
    for (size_t i = 0; i < nw; i++) {
        size_t l = strlen(want[i].frame);
        memcpy(s + n, want[i].frame, l);
        n += l;
    }
    char *b = exact_copy(s, n);
    size_t pos = 0;
    REPLY_T r;
    for (size_t i = 0; i < nw; i++) {
        size_t l = strlen(want[i].frame);
        set_ctx("stream frame %zu", i);
        poison(&r);
        ssize_t rc = REPLY_PARSE(b + pos, n - pos, DEFAULT_MAX, &r);
        CHECK_MSG(rc == (ssize_t)l, "expected %zu, got %zd", l, rc);
        if (rc != (ssize_t)l) {
            break;
        }
        CHECK((int)r.kind == want[i].kind);
        pos += (size_t)rc;
    }
    set_ctx("stream end");
    CHECK(pos == n);
    poison(&r);
    CHECK(REPLY_PARSE(b + pos, 0, DEFAULT_MAX, &r) == MC_NEED_MORE);
    CHECK(r.need == 0);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* Malformed replies                                                         */

static void
run_bad_one(const struct reply_case *c, size_t max_value, bool guard)
{
    REPLY_T r;
    bool seen_error = false;
    size_t step = c->len <= 20000 ? 1 : c->len / 500;
    for (size_t k = 0;; k = k + step < c->len ? k + step : c->len) {
        set_ctx("%s (max_value %zu): prefix %zu of %zu%s: '%s'", c->name,
                max_value, k, c->len, guard ? " (guard page)" : "",
                show(c->bytes, c->len));
        char *b = guard ? guard_place(c->bytes, k) : exact_copy(c->bytes, k);
        poison(&r);
        ssize_t rc = REPLY_PARSE(b, k, max_value, &r);
        if (!guard) {
            free(b);
        }
        if (k == c->len) {
            CHECK_MSG(rc == MC_EPROTO, "expected MC_EPROTO, got %zd", rc);
            break;
        }
        CHECK_MSG(rc == MC_NEED_MORE || rc == MC_EPROTO,
                  "prefix: expected MC_NEED_MORE or MC_EPROTO, got %zd", rc);
        if (rc == MC_NEED_MORE) {
            CHECK_MSG(!seen_error,
                      "MC_NEED_MORE after a shorter prefix gave MC_EPROTO");
            CHECK_MSG(r.need == 0 || r.need > k, "need %zu <= available %zu",
                      r.need, k);
        }
        else if (rc == MC_EPROTO) {
            seen_error = true;
        }
    }

    /* the same with trailing bytes: still an error */
    for (size_t t = 0; t < N_TRAILERS; t++) {
        size_t n;
        char *b = with_trailer(c->bytes, c->len, t, &n);
        set_ctx("%s (max_value %zu) + trailing '%s'", c->name, max_value,
                show(trailers[t].bytes, trailers[t].len));
        poison(&r);
        ssize_t rc = REPLY_PARSE(b, n, max_value, &r);
        CHECK_MSG(rc == MC_EPROTO, "expected MC_EPROTO, got %zd", rc);
        free(b);
    }
}

static void
test_bad(void)
{
    for (size_t i = 0; i < n_bad; i++) {
        const struct reply_case *c = &bad[i];
        if (c->max_value == BOTH_MAX) {
            run_bad_one(c, DEFAULT_MAX, false);
            run_bad_one(c, DEFAULT_MAX, true);
            run_bad_one(c, SIZE_MAX, false);
            run_bad_one(c, SIZE_MAX, true);
        }
        else {
            run_bad_one(c, c->max_value, false);
            run_bad_one(c, c->max_value, true);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Seed corpus for the fuzzers                                               */

/* How a fuzzer reads a seed: its first byte is the control byte, low 3
 * bits the max_value index (6 = 1 MiB, 7 = SIZE_MAX), the bits of
 * ctl_mask above them from the case number (chunking); then the reply, and
 * after a valid one stream_end, so that the fuzzer sees a stream. */
struct corpus_form {
    unsigned ctl_mask;
    int digits;              /* of the number in a file's name */
    const char *stream_end;
    bool own_max_value;      /* a malformed reply with a max_value of its
                                own (not 0) is seeded with 1 MiB */
};

static int
dump_corpus(const char *dir, const struct corpus_form *form)
{
    char path[4096];
    int files = 0;
    for (size_t i = 0; i < n_valid + n_bad; i++) {
        const char *bytes;
        size_t len;
        unsigned ctl = (unsigned)(i * 8u) & form->ctl_mask;
        if (i < n_valid) {
            bytes = valid[i].bytes;
            len = valid[i].len;
            ctl |= 6;
            snprintf(path, sizeof path, "%s/valid-%0*zu", dir, form->digits,
                     i);
        }
        else {
            const struct reply_case *c = &bad[i - n_valid];
            bytes = c->bytes;
            len = c->len;
            bool own = form->own_max_value && c->max_value != BOTH_MAX
                       && c->max_value != 0;
            ctl |= own ? 6 : 7;
            snprintf(path, sizeof path, "%s/bad-%0*zu", dir, form->digits,
                     i - n_valid);
        }
        if (len + 6 > 4096) {
            continue; /* longer than the fuzzer's -max_len */
        }
        FILE *f = fopen(path, "wb");
        if (f == NULL) {
            perror(path);
            return 1;
        }
        fputc((int)ctl, f);
        fwrite(bytes, 1, len, f);
        if (i < n_valid) {
            fwrite(form->stream_end, 1, strlen(form->stream_end), f);
        }
        fclose(f);
        files++;
    }
    printf("%d seed files written to %s\n", files, dir);
    return 0;
}

#endif
