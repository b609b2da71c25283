/* Plain C tests of ext/proto.c (reply parser, request formatting, key and
 * server-string checks) and ext/buf.c (the read buffer).
 *
 * Every valid reply is parsed whole, at every split point, with trailing
 * bytes, through an mc_buf fed in two and three pieces, from a malloc'd block
 * of exactly its length (so AddressSanitizer sees any over-read) and flush
 * against a PROT_NONE guard page (so an over-read faults without ASan too).
 * The runs but the mc_buf ones are those of replies.h, which test_meta.c
 * shares.
 *
 * Usage: test_proto [--dump-corpus DIR]
 * The last line printed is "N passed, N failed"; the exit status is non-zero
 * when a check failed.  --dump-corpus writes every reply used here as a seed
 * file for tests/fuzz (first byte = fuzzer control byte).
 */
#define _DEFAULT_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "guard.h"
#include "proto.h"
#include "rand.h"

/* ------------------------------------------------------------------------ */
/* The reply catalogue                                                       */

struct expect {
    enum mc_kind kind;
    const char *key;
    size_t key_len;
    uint32_t flags;
    const char *value;
    size_t value_len;
    bool has_cas;
    uint64_t cas;
    uint64_t number;
    const char *text;
    size_t text_len;
};

#define REPLY_T struct mc_reply
#define REPLY_PARSE mc_parse
#define REPLY_HAS_VALUE(k) ((k) == MC_VALUE || (k) == MC_CONFIG)
#define REPLY_NEXT_FRAME "END\r\n"
#define REPLY_VALUE_LINE "VALUE k 0 1\r\n"
#include "replies.h"

static struct expect *
add_valid(const char *name, const char *bytes, size_t len, size_t max_value,
          enum mc_kind kind)
{
    struct expect *e = add_valid_case(name, bytes, len, max_value);
    e->kind = kind;
    return e;
}

/* A simple reply line: kind only. */
static void
simple(const char *bytes, size_t len, enum mc_kind kind)
{
    add_valid(bytes, bytes, len, DEFAULT_MAX, kind);
}

static void
with_text(const char *name, const char *bytes, size_t len, enum mc_kind kind,
          const char *text)
{
    struct expect *e = add_valid(name, bytes, len, DEFAULT_MAX, kind);
    e->text = text;
    e->text_len = strlen(text);
}

static void
stat_case(const char *name, const char *bytes, size_t len, const char *key,
          const char *text)
{
    struct expect *e = add_valid(name, bytes, len, DEFAULT_MAX, MC_STAT);
    e->key = key;
    e->key_len = strlen(key);
    e->text = text;
    e->text_len = strlen(text);
}

static struct expect *
value_case(const char *name, const char *bytes, size_t len, size_t max_value,
           const char *key, size_t key_len, uint32_t flags, const char *value,
           size_t value_len, bool has_cas, uint64_t cas)
{
    struct expect *e = add_valid(name, bytes, len, max_value, MC_VALUE);
    e->key = key;
    e->key_len = key_len;
    e->flags = flags;
    e->value = value;
    e->value_len = value_len;
    e->has_cas = has_cas;
    e->cas = cas;
    return e;
}

/* ElastiCache's "CONFIG key flags bytes" frame: a VALUE without cas. */
static void
config_case(const char *name, const char *bytes, size_t len,
            size_t max_value, const char *key, size_t key_len,
            uint32_t flags, const char *value, size_t value_len)
{
    value_case(name, bytes, len, max_value, key, key_len, flags, value,
               value_len, false, 0)->kind = MC_CONFIG;
}

static char key250[MC_MAX_KEY + 1];
static char key251[MC_MAX_KEY + 2];

static void
build_catalogue(void)
{
    memset(key250, 'k', MC_MAX_KEY);
    memset(key251, 'k', MC_MAX_KEY + 1);

    /* VALUE items */
    value_case("VALUE plain", L("VALUE k 0 3\r\nabc\r\n"), DEFAULT_MAX,
               L("k"), 0, L("abc"), false, 0);
    value_case("VALUE with cas", L("VALUE foo 5 3 77\r\nbar\r\n"), DEFAULT_MAX,
               L("foo"), 5, L("bar"), true, 77);
    value_case("VALUE empty", L("VALUE k 0 0\r\n\r\n"), DEFAULT_MAX,
               L("k"), 0, L(""), false, 0);
    value_case("VALUE empty with cas", L("VALUE k 0 0 1\r\n\r\n"),
               DEFAULT_MAX, L("k"), 0, L(""), true, 1);
    value_case("VALUE containing END and NUL",
               L("VALUE k 1 12\r\n\r\nEND\r\n\0a\0\0\0\r\n"), DEFAULT_MAX,
               L("k"), 1, L("\r\nEND\r\n\0a\0\0\0"), false, 0);
    value_case("VALUE containing a VALUE line",
               L("VALUE k 0 21\r\nVALUE k 0 1\r\nx\r\nEND\r\n\r\n"),
               DEFAULT_MAX, L("k"), 0, L("VALUE k 0 1\r\nx\r\nEND\r\n"),
               false, 0);
    value_case("VALUE max flags and cas",
               L("VALUE k 4294967295 1 18446744073709551615\r\nx\r\n"),
               DEFAULT_MAX, L("k"), UINT32_MAX, L("x"), true, UINT64_MAX);
    value_case("VALUE cas 0", L("VALUE k 0 1 0\r\nx\r\n"), DEFAULT_MAX,
               L("k"), 0, L("x"), true, 0);
    value_case("VALUE space-padded counter", L("VALUE n 2 2\r\n9 \r\n"),
               DEFAULT_MAX, L("n"), 2, L("9 "), false, 0);
    value_case("VALUE utf-8 key", L("VALUE caf\xc3\xa9 0 1\r\nx\r\n"),
               DEFAULT_MAX, L("caf\xc3\xa9"), 0, L("x"), false, 0);
    value_case("VALUE size == max_value", L("VALUE k 0 5\r\nabcde\r\n"), 5,
               L("k"), 0, L("abcde"), false, 0);
    value_case("VALUE empty with max_value 0", L("VALUE k 0 0\r\n\r\n"), 0,
               L("k"), 0, L(""), false, 0);
    value_case("VALUE with CR/LF/NUL only",
               L("VALUE k 0 4\r\n\r\n\r\n\r\n"), DEFAULT_MAX, L("k"), 0,
               L("\r\n\r\n"), false, 0);

    {
        /* 250-byte key */
        static char b[400];
        int n = snprintf(b, sizeof b, "VALUE %s 7 2 9\r\nhi\r\n", key250);
        value_case("VALUE 250-byte key", b, (size_t)n, DEFAULT_MAX, key250,
                   MC_MAX_KEY, 7, L("hi"), true, 9);
    }
    {
        /* every byte value as data */
        static char data[256];
        static char b[300];
        for (int i = 0; i < 256; i++) {
            data[i] = (char)i;
        }
        int n = snprintf(b, sizeof b, "VALUE bin 0 256\r\n");
        memcpy(b + n, data, 256);
        memcpy(b + n + 256, "\r\n", 2);
        value_case("VALUE all byte values", b, (size_t)n + 258, DEFAULT_MAX,
                   L("bin"), 0, data, 256, false, 0);
    }
    {
        /* data larger than MC_MAX_LINE: the line limit is for lines only */
        static char data[20000];
        static char b[20100];
        for (size_t i = 0; i < sizeof data; i++) {
            data[i] = (char)("ab\r\n\0"[i % 5]);
        }
        int n = snprintf(b, sizeof b, "VALUE big 3 20000 5\r\n");
        memcpy(b + n, data, sizeof data);
        memcpy(b + n + sizeof data, "\r\n", 2);
        value_case("VALUE 20000 bytes", b, (size_t)n + sizeof data + 2,
                   DEFAULT_MAX, L("big"), 3, data, sizeof data, true, 5);
    }

    /* CONFIG (ElastiCache's "config get cluster") */
    config_case("CONFIG cluster",
                L("CONFIG cluster 0 37\r\n12\nnode1|10.0.0.1|11211 "
                  "node2||11212\n\r\n"),
                DEFAULT_MAX, L("cluster"), 0,
                L("12\nnode1|10.0.0.1|11211 node2||11212\n"));
    config_case("CONFIG empty", L("CONFIG c 7 0\r\n\r\n"), DEFAULT_MAX,
                L("c"), 7, L(""));
    config_case("CONFIG with CRLF inside", L("CONFIG k 0 4\r\na\r\nb\r\n"),
                DEFAULT_MAX, L("k"), 0, L("a\r\nb"));
    config_case("CONFIG size == max_value", L("CONFIG k 0 3\r\nabc\r\n"), 3,
                L("k"), 0, L("abc"));

    /* Status lines */
    simple(L("END\r\n"), MC_END);
    simple(L("STORED\r\n"), MC_STORED);
    simple(L("NOT_STORED\r\n"), MC_NOT_STORED);
    simple(L("EXISTS\r\n"), MC_EXISTS);
    simple(L("NOT_FOUND\r\n"), MC_NOT_FOUND);
    simple(L("DELETED\r\n"), MC_DELETED);
    simple(L("TOUCHED\r\n"), MC_TOUCHED);
    simple(L("OK\r\n"), MC_OK);
    simple(L("RESET\r\n"), MC_RESET);
    simple(L("MN\r\n"), MC_MN);

    /* Numbers */
    add_valid("number 0", L("0\r\n"), DEFAULT_MAX, MC_NUMBER)->number = 0;
    add_valid("number 42", L("42\r\n"), DEFAULT_MAX, MC_NUMBER)->number = 42;
    add_valid("number u64 max", L("18446744073709551615\r\n"), DEFAULT_MAX,
              MC_NUMBER)->number = UINT64_MAX;
    add_valid("number 2^32", L("4294967296\r\n"), DEFAULT_MAX,
              MC_NUMBER)->number = UINT64_C(4294967296);

    /* VERSION, STAT */
    with_text("VERSION", L("VERSION 1.6.18\r\n"), MC_VERSION, "1.6.18");
    stat_case("STAT pid", L("STAT pid 1234\r\n"), "pid", "1234");
    stat_case("STAT version", L("STAT version 1.6.18\r\n"), "version",
              "1.6.18");
    stat_case("STAT without value", L("STAT x\r\n"), "x", "");

    /* Error lines */
    with_text("ERROR", L("ERROR\r\n"), MC_ERROR, "");
    with_text("ERROR Too many", L("ERROR Too many open connections\r\n"),
              MC_ERROR, "Too many open connections");
    with_text("CLIENT_ERROR",
              L("CLIENT_ERROR bad command line format\r\n"),
              MC_CLIENT_ERROR, "bad command line format");
    with_text("CLIENT_ERROR bad data chunk",
              L("CLIENT_ERROR bad data chunk\r\n"), MC_CLIENT_ERROR,
              "bad data chunk");
    with_text("SERVER_ERROR",
              L("SERVER_ERROR out of memory storing object\r\n"),
              MC_SERVER_ERROR, "out of memory storing object");
    with_text("SERVER_ERROR:", L("SERVER_ERROR: shutdown not enabled\r\n"),
              MC_SERVER_ERROR, "shutdown not enabled");

    /* Malformed replies */
    add_bad("HELLO", L("HELLO\r\n"));
    add_bad("empty line", L("\r\n"));
    add_bad("bare LF line", L("\n"));
    add_bad("VALUE without fields", L("VALUE\r\n"));
    add_bad("CONFIG without fields", L("CONFIG\r\n"));
    add_bad("CONFIG with cas", L("CONFIG k 0 1 5\r\nx\r\n"));
    add_bad("CONFIG with cas, value still to come", L("CONFIG k 0 5 1\r\nab"));
    add_bad("CONFIG without bytes", L("CONFIG k 0\r\n"));
    add_bad("CONFIG two spaces", L("CONFIG  k 0 1\r\nx\r\n"));
    add_bad("CONFIG bad data end", L("CONFIG k 0 1\r\nxy\r\n"));
    add_bad("CONFIGX", L("CONFIGX k 0 1\r\nx\r\n"));
    add_bad("config lower case", L("config k 0 1\r\nx\r\n"));
    add_bad("END with trailing space", L("END \r\n"));
    add_bad("END leading space", L(" END\r\n"));
    add_bad("EnD", L("EnD\r\n"));
    add_bad("end lower case", L("end\r\n"));
    add_bad("ENDX", L("ENDX\r\n"));
    add_bad("END with NUL", L("END\0\r\n"));
    add_bad("VALUEk", L("VALUEk 0 1\r\n"));
    add_bad("END bare LF", L("END\n"));
    add_bad("END CR CR LF", L("END\r\r\n"));
    add_bad("CR then data", L("VALUE k 0 1\ra\r\nEND\r\n"));
    add_bad("STORED trailing space", L("STORED \r\n"));
    add_bad("STORED bare LF", L("STORED\n"));
    add_bad("STAT without name", L("STAT\r\n"));

    add_bad("bytes -1", L("VALUE k 0 -1\r\n"));
    add_bad("bytes 1a", L("VALUE k 0 1a\r\na\r\n"));
    add_bad("bytes +5", L("VALUE k 0 +5\r\nabcde\r\n"));
    add_bad("bytes double space", L("VALUE k 0  5\r\nabcde\r\n"));
    add_bad("bytes 0x10", L("VALUE k 0 0x10\r\n"));
    add_bad("bytes 4294967296", L("VALUE k 0 4294967296\r\n"));
    add_bad("bytes 2^64", L("VALUE k 0 18446744073709551616\r\n"));
    add_bad("bytes 2^64+1", L("VALUE k 0 18446744073709551617\r\n"));
    add_bad("bytes 23 digits", L("VALUE k 0 99999999999999999999999\r\n"));
    add_bad("bytes empty", L("VALUE k 0 \r\n"));
    add_bad("bytes missing", L("VALUE k 0\r\n"));
    add_bad("flags and bytes missing", L("VALUE k\r\n"));
    add_bad("trailing space after bytes", L("VALUE k 0 1 \r\na\r\n"));
    add_bad("double space before key", L("VALUE  k 0 1\r\na\r\n"));
    add_bad("bytes with NUL", L("VALUE k 0 1\0\r\na\r\n"));
    add_bad_max("bytes > max_value (header only)", L("VALUE k 0 1048577\r\n"),
                DEFAULT_MAX);
    add_bad_max("bytes 2000000000 > max_value", L("VALUE k 0 2000000000\r\n"),
                DEFAULT_MAX);
    add_bad_max("bytes 5 > max_value 4", L("VALUE k 0 5\r\nabcde\r\n"), 4);
    add_bad_max("bytes 1 > max_value 0", L("VALUE k 0 1\r\na\r\n"), 0);
    add_bad_max("CONFIG bytes 5 > max_value 4", L("CONFIG k 0 5\r\nabcde\r\n"),
                4);

    add_bad("flags -1", L("VALUE k -1 1\r\na\r\n"));
    add_bad("flags 4294967296", L("VALUE k 4294967296 1\r\na\r\n"));
    add_bad("flags abc", L("VALUE k abc 1\r\na\r\n"));
    add_bad("flags +1", L("VALUE k +1 1\r\na\r\n"));
    add_bad("flags 2^64", L("VALUE k 18446744073709551616 1\r\na\r\n"));
    add_bad("cas -1", L("VALUE k 0 1 -1\r\na\r\n"));
    add_bad("cas 2^64", L("VALUE k 0 1 18446744073709551616\r\na\r\n"));
    add_bad("cas 20 nines", L("VALUE k 0 1 99999999999999999999\r\na\r\n"));
    add_bad("cas abc", L("VALUE k 0 1 abc\r\na\r\n"));
    add_bad("extra field after cas", L("VALUE k 0 1 1 2\r\na\r\n"));

    add_bad("terminator XX", L("VALUE k 0 5\r\nabcdeXX"));
    add_bad("data longer than bytes", L("VALUE k 0 5\r\nabcdef\r\nEND\r\n"));
    add_bad("data one longer", L("VALUE k 0 1\r\nab\r\n"));
    add_bad("terminator LF CR", L("VALUE k 0 1\r\na\n\r\n"));
    add_bad("terminator bare LF", L("VALUE k 0 1\r\na\nEND\r\n"));
    add_bad("empty value, data present", L("VALUE k 0 0\r\nX\r\n"));

    {
        static char b[400];
        int n = snprintf(b, sizeof b, "VALUE %s 0 1\r\na\r\n", key251);
        add_bad("key of 251 bytes", b, (size_t)n);
    }

    add_bad("number -1", L("-1\r\n"));
    add_bad("number +1", L("+1\r\n"));
    add_bad("number 1a", L("1a\r\n"));
    add_bad("number 0x10", L("0x10\r\n"));
    add_bad("number 1.5", L("1.5\r\n"));
    add_bad("number trailing space", L("1 \r\n"));
    add_bad("number leading space", L(" 1\r\n"));
    add_bad("number 2^64", L("18446744073709551616\r\n"));
    add_bad("number 23 digits", L("99999999999999999999999\r\n"));
    add_bad("number bare LF", L("5\n"));
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */

static void
check_fields(const struct mc_reply *r, const char *base, size_t frame_len,
             const struct expect *e)
{
    CHECK_MSG(r->kind == e->kind, "kind: expected %d, got %d", (int)e->kind,
              (int)r->kind);
    if (r->kind != e->kind) {
        return;
    }
    switch (e->kind) {
    case MC_VALUE:
    case MC_CONFIG:
        CHECK_MSG(r->key_len == e->key_len, "key_len: expected %zu, got %zu",
                  e->key_len, r->key_len);
        CHECK(inside(r->key, r->key_len, base, frame_len));
        if (r->key_len == e->key_len && inside(r->key, r->key_len, base,
                                               frame_len)) {
            CHECK(memcmp(r->key, e->key, e->key_len) == 0);
        }
        CHECK_MSG(r->flags == e->flags, "flags: expected %" PRIu32
                  ", got %" PRIu32, e->flags, r->flags);
        CHECK_MSG(r->value_len == e->value_len,
                  "value_len: expected %zu, got %zu", e->value_len,
                  r->value_len);
        CHECK(inside(r->value, r->value_len, base, frame_len));
        if (r->value_len == e->value_len
            && inside(r->value, r->value_len, base, frame_len)) {
            CHECK(e->value_len == 0
                  || memcmp(r->value, e->value, e->value_len) == 0);
            /* the value block is the frame minus its line and CRLF */
            if (e->value_len > 0) {
                CHECK(r->value == base + line_length(base, frame_len));
                CHECK(r->value + r->value_len + 2 == base + frame_len);
            }
        }
        CHECK_MSG(r->has_cas == e->has_cas, "has_cas: expected %d, got %d",
                  e->has_cas, r->has_cas);
        if (e->has_cas && r->has_cas) {
            CHECK_MSG(r->cas == e->cas, "cas: expected %" PRIu64
                      ", got %" PRIu64, e->cas, r->cas);
        }
        break;
    case MC_NUMBER:
        CHECK_MSG(r->number == e->number, "number: expected %" PRIu64
                  ", got %" PRIu64, e->number, r->number);
        break;
    case MC_STAT:
        CHECK_MSG(r->key_len == e->key_len, "key_len: expected %zu, got %zu",
                  e->key_len, r->key_len);
        CHECK(inside(r->key, r->key_len, base, frame_len));
        if (r->key_len == e->key_len
            && inside(r->key, r->key_len, base, frame_len)) {
            CHECK(memcmp(r->key, e->key, e->key_len) == 0);
        }
        /* fall through */
    case MC_VERSION:
    case MC_ERROR:
    case MC_CLIENT_ERROR:
    case MC_SERVER_ERROR:
        CHECK_MSG(r->text_len == e->text_len,
                  "text_len: expected %zu, got %zu (text '%s')", e->text_len,
                  r->text_len,
                  inside(r->text, r->text_len, base, frame_len)
                      ? show(r->text, r->text_len) : "<outside>");
        CHECK(inside(r->text, r->text_len, base, frame_len));
        if (r->text_len == e->text_len
            && inside(r->text, r->text_len, base, frame_len)) {
            CHECK_MSG(e->text_len == 0
                      || memcmp(r->text, e->text, e->text_len) == 0,
                      "text: expected '%s', got '%s'",
                      show(e->text, e->text_len), show(r->text, r->text_len));
        }
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* Valid replies                                                             */

/* Feeds the frame (plus "END\r\n") through an mc_buf in the given pieces, as
 * a connection would, using `need` to reserve once. */
static void
feed_pieces(const struct reply_case *c, const size_t *cuts, size_t n_cuts)
{
    static const char tail[] = "END\r\n";
    size_t total = c->len + 5;
    char *stream = malloc(total);
    memcpy(stream, c->bytes, c->len);
    memcpy(stream + c->len, tail, 5);

    struct mc_buf b;
    mc_buf_init(&b);
    size_t from = 0;
    int frames = 0;
    bool broken = false;
    for (size_t i = 0; i <= n_cuts && !broken; i++) {
        size_t to = i < n_cuts ? cuts[i] : total;
        size_t piece = to - from;
        if (mc_buf_reserve(&b, piece) != 0) {
            CHECK(!"mc_buf_reserve failed");
            break;
        }
        memcpy(b.data + b.end, stream + from, piece);
        b.end += piece;
        from = to;
        for (;;) {
            struct mc_reply r;
            poison(&r);
            ssize_t rc = mc_parse(mc_buf_head(&b), mc_buf_len(&b),
                                  c->max_value, &r);
            if (rc == MC_NEED_MORE) {
                if (r.need > 0) {
                    if (!CHECK(r.need > mc_buf_len(&b))) {
                        broken = true;
                        break;
                    }
                    CHECK(mc_buf_reserve(&b, r.need - mc_buf_len(&b)) == 0);
                    CHECK(b.cap - b.start >= r.need);
                }
                break;
            }
            if (frames == 0) {
                if (!CHECK_MSG(rc == (ssize_t)c->len, "expected %zu, got %zd",
                               c->len, rc)) {
                    broken = true;
                    break;
                }
                check_fields(&r, mc_buf_head(&b), c->len, &c->e);
            }
            else {
                if (!CHECK_MSG(rc == 5 && r.kind == MC_END,
                               "END frame: got %zd kind %d", rc,
                               (int)r.kind)) {
                    broken = true;
                    break;
                }
            }
            frames++;
            mc_buf_consume(&b, (size_t)rc);
        }
    }
    if (!broken) {
        CHECK_MSG(frames == 2, "frames: expected 2, got %d", frames);
        CHECK(mc_buf_len(&b) == 0);
        CHECK(b.start == 0 && b.end == 0);
    }
    mc_buf_free(&b);
    free(stream);
}

static void
run_valid_pieces(const struct reply_case *c)
{
    size_t total = c->len + 5;
    /* two pieces: every cut */
    for (size_t i = 1; i < total; i++) {
        set_ctx("%s: mc_buf, cut at %zu", c->name, i);
        feed_pieces(c, &i, 1);
    }
    /* three pieces: every pair of cuts for short frames, a grid otherwise */
    size_t step = total <= 64 ? 1 : total / 40 + 1;
    for (size_t i = 1; i < total; i += step) {
        for (size_t j = i + 1; j < total; j += step) {
            size_t cuts[2] = {i, j};
            set_ctx("%s: mc_buf, cuts at %zu and %zu", c->name, i, j);
            feed_pieces(c, cuts, 2);
        }
    }
    /* one byte at a time */
    if (total <= 2048) {
        size_t *cuts = malloc(total * sizeof *cuts);
        for (size_t i = 0; i + 1 < total; i++) {
            cuts[i] = i + 1;
        }
        set_ctx("%s: mc_buf, byte by byte", c->name);
        feed_pieces(c, cuts, total - 1);
        free(cuts);
    }
}

static void
test_valid_pieces(void)
{
    for (size_t i = 0; i < n_valid; i++) {
        run_valid_pieces(&valid[i]);
    }
}

/* A reply stream of several frames parsed frame after frame. */
static void
test_stream(void)
{
    static const struct stream_frame want[] = {
        {"VALUE a 0 1\r\n1\r\n", MC_VALUE},
        {"VALUE b 3 2 9\r\n22\r\n", MC_VALUE},
        {"SERVER_ERROR out of memory writing get response\r\n",
         MC_SERVER_ERROR},
        {"STAT pid 1\r\n", MC_STAT},
        {"STAT x\r\n", MC_STAT},
        {"END\r\n", MC_END},
        {"5\r\n", MC_NUMBER},
        {"NOT_FOUND\r\n", MC_NOT_FOUND},
    };
    run_stream(want, sizeof want / sizeof want[0]);
}

/* <bytes> values near 2^64 with a max_value that does not reject them: the
 * frame length (line + bytes + 2) must not wrap around.  Each parse runs in a
 * child process so that an out-of-bounds read is reported as a failure
 * instead of ending the run. */
static void
test_huge_counts(void)
{
    static const char *const counts[] = {
        "18446744073709551615", /* 2^64 - 1 */
        "18446744073709551614", /* 2^64 - 2: frame wraps to the line length */
        "18446744073709551613",
        "18446744073709551583",
        "18446744073709551582", /* 2^64 - 34: frame wraps to 0 */
        "18446744073709551581",
        "18446744073709551516",
        "9223372036854775808",  /* 2^63 */
        "9223372036854775807",
        "4294967296",
    };
    static const char *const tails[] = {"", "X", "\r\n", "abcdefgh\r\nEND\r\n"};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
            char s[128];
            int n = snprintf(s, sizeof s, "VALUE k 0 %s\r\n%s", counts[i],
                             tails[t]);
            size_t maxes[2] = {SIZE_MAX, 0};
            sscanf(counts[i], "%zu", &maxes[1]); /* max_value == bytes */
            for (int m = 0; m < 2; m++) {
                set_ctx("'%s' with max_value %zu (child process)",
                        show(s, (size_t)n), maxes[m]);
                fflush(stdout);
                fflush(stderr);
                pid_t pid = fork();
                if (pid < 0) {
                    perror("fork");
                    exit(2);
                }
                if (pid == 0) {
                    int fd = open("/dev/null", O_WRONLY);
                    if (fd >= 0) {
                        dup2(fd, 2);
                    }
                    char *b = exact_copy(s, (size_t)n);
                    struct mc_reply r;
                    poison(&r);
                    ssize_t rc = mc_parse(b, (size_t)n, maxes[m], &r);
                    _exit(rc == MC_EPROTO ? 0 : rc == MC_NEED_MORE ? 3 : 4);
                }
                int st;
                waitpid(pid, &st, 0);
                CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                          "expected MC_EPROTO, got %s",
                          WIFSIGNALED(st) ? "a crash (signal)"
                          : !WIFEXITED(st) ? "?"
                          : WEXITSTATUS(st) == 3 ? "MC_NEED_MORE"
                          : WEXITSTATUS(st) == 4 ? "a frame length"
                          : "a memory error (sanitizer or valgrind exit)");
            }
        }
    }
}

/* Where check_parse parses the bytes from. */
enum where { IN_PLACE, EXACT, GUARD };

/* Parses p[0, n) into *r (poisoned first) from where, and checks that the
 * outcome is want. */
static bool
check_parse(enum where w, const char *p, size_t n, size_t max_value,
            ssize_t want, struct mc_reply *r, const char *file, int line)
{
    char *copy = w == EXACT ? exact_copy(p, n) : NULL;
    const char *b = w == EXACT ? copy : w == GUARD ? guard_place(p, n) : p;
    poison(r);
    ssize_t rc = mc_parse(b, n, max_value, r);
    free(copy);
    return check_msg(rc == want, "mc_parse() == want", file, line,
                     "expected %zd, got %zd (MC_NEED_MORE %d, MC_EPROTO %d)",
                     want, rc, MC_NEED_MORE, MC_EPROTO);
}

#define CHECK_PARSE(w, p, n, max_value, want, r)                            \
    check_parse((w), (p), (n), (max_value), (want), (r), __FILE__, __LINE__)

/* Line length limit: a line of MC_MAX_LINE bytes (CRLF included) is the
 * longest accepted; MC_MAX_LINE bytes without LF is an error, not a wait. */
static void
test_line_limit(void)
{
    struct mc_reply r;
    size_t n = MC_MAX_LINE;
    char *s = malloc(n + 16);

    /* STAT line of exactly MC_MAX_LINE bytes */
    memcpy(s, "STAT n ", 7);
    memset(s + 7, 'v', n - 9);
    memcpy(s + n - 2, "\r\n", 2);
    set_ctx("STAT line of MC_MAX_LINE bytes");
    if (CHECK_PARSE(EXACT, s, n, DEFAULT_MAX, (ssize_t)n, &r)) {
        CHECK(r.kind == MC_STAT && r.text_len == n - 9);
    }

    /* its prefix ending in CR: still waiting for the LF */
    set_ctx("STAT line of MC_MAX_LINE - 1 bytes ending in CR");
    CHECK_PARSE(EXACT, s, n - 1, DEFAULT_MAX, MC_NEED_MORE, &r);

    /* one byte longer: error */
    memcpy(s, "STAT n ", 7);
    memset(s + 7, 'v', n - 8);
    memcpy(s + n - 1, "\r\n", 2);
    set_ctx("STAT line of MC_MAX_LINE + 1 bytes");
    CHECK_PARSE(EXACT, s, n + 1, DEFAULT_MAX, MC_EPROTO, &r);
    set_ctx("STAT line of MC_MAX_LINE + 1 bytes, first MC_MAX_LINE");
    CHECK_PARSE(EXACT, s, n, DEFAULT_MAX, MC_EPROTO, &r);
    free(s);

    /* MC_MAX_LINE bytes without LF, various contents */
    static const char *fills[] = {"x", "STAT a", "VALUE k 0 1", "1", "ERROR "};
    for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
        s = malloc(n);
        size_t fl = strlen(fills[f]);
        memset(s, 'a', n);
        memcpy(s, fills[f], fl);
        set_ctx("MC_MAX_LINE bytes without LF starting '%s'", fills[f]);
        CHECK_PARSE(GUARD, s, n, SIZE_MAX, MC_EPROTO, &r);
        /* and ending in CR */
        s[n - 1] = '\r';
        set_ctx("MC_MAX_LINE bytes without LF starting '%s', ending in CR",
                fills[f]);
        CHECK_PARSE(GUARD, s, n, SIZE_MAX, MC_EPROTO, &r);
        /* a short prefix of it is only incomplete */
        char *b = guard_place(s, 100);
        poison(&r);
        ssize_t rc = mc_parse(b, 100, SIZE_MAX, &r);
        CHECK_MSG(rc == MC_NEED_MORE || rc == MC_EPROTO,
                  "(100 bytes) got %zd", rc);
        free(s);
    }

    /* 10 MiB without LF */
    n = (size_t)10 << 20;
    s = malloc(n);
    memset(s, 'x', n);
    set_ctx("10 MiB without LF");
    CHECK_PARSE(IN_PLACE, s, n, SIZE_MAX, MC_EPROTO, &r);
    memcpy(s, "STAT ", 5);
    set_ctx("10 MiB without LF, starting STAT");
    CHECK_PARSE(IN_PLACE, s, n, SIZE_MAX, MC_EPROTO, &r);
    free(s);
}

/* `need` for large announced values and the u32 bound of <bytes>. */
static void
test_need(void)
{
    struct mc_reply r;
    static const struct {
        const char *what;
        const char *head;
        size_t max_value;
        size_t need;
    } needs[] = {
        {"VALUE 4294967295 with max_value SIZE_MAX",
         "VALUE k 0 4294967295\r\n", SIZE_MAX, 22 + (size_t)4294967295u + 2},
        {"VALUE 1 MiB, partial data", "VALUE k 0 1048576 3\r\nabc",
         DEFAULT_MAX, 21 + 1048576 + 2},
    };
    for (size_t i = 0; i < sizeof needs / sizeof needs[0]; i++) {
        set_ctx("%s", needs[i].what);
        if (CHECK_PARSE(EXACT, needs[i].head, strlen(needs[i].head),
                        needs[i].max_value, MC_NEED_MORE, &r)) {
            CHECK_MSG(r.need == needs[i].need, "need: expected %zu, got %zu",
                      needs[i].need, r.need);
        }
    }

    set_ctx("VALUE 1 MiB, data in, terminator missing");
    size_t n = 21 + 1048576 + 2;
    char *s = malloc(n);
    memcpy(s, "VALUE k 0 1048576 3\r\n", 21);
    memset(s + 21, 'v', 1048576);
    memcpy(s + n - 2, "\r\n", 2);
    for (size_t cut = n - 2; cut <= n; cut++) {
        poison(&r);
        ssize_t rc = mc_parse(s, cut, DEFAULT_MAX, &r);
        if (cut < n) {
            CHECK_MSG(rc == MC_NEED_MORE && r.need == n,
                      "cut %zu: got %zd need %zu", cut, rc, r.need);
        }
        else {
            CHECK_MSG(rc == (ssize_t)n, "got %zd", rc);
            CHECK(rc == (ssize_t)n && r.value == s + 21
                  && r.value_len == 1048576 && r.has_cas && r.cas == 3);
        }
    }
    /* bad terminator on a large value */
    s[n - 2] = 'X';
    set_ctx("VALUE 1 MiB, bad terminator");
    CHECK_PARSE(IN_PLACE, s, n, DEFAULT_MAX, MC_EPROTO, &r);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* mc_key_check                                                              */

static void
test_key_check(void)
{
    char k[MC_MAX_KEY + 2];
    memset(k, 'a', sizeof k);

    set_ctx("mc_key_check");
    CHECK(mc_key_check(k, 0) == MC_KEY_EMPTY);
    CHECK(mc_key_check("", 0) == MC_KEY_EMPTY);
    CHECK(mc_key_check(k, 1) == MC_KEY_OK);
    CHECK(mc_key_check(k, MC_MAX_KEY) == MC_KEY_OK);
    CHECK(mc_key_check(k, MC_MAX_KEY + 1) == MC_KEY_TOO_LONG);

    /* exact-size blocks so the check reads only len bytes */
    char *e = exact_copy(k, MC_MAX_KEY);
    CHECK(mc_key_check(e, MC_MAX_KEY) == MC_KEY_OK);
    free(e);
    e = guard_place(k, MC_MAX_KEY);
    CHECK(mc_key_check(e, MC_MAX_KEY) == MC_KEY_OK);
    e = guard_place(k, 0);
    CHECK(mc_key_check(e, 0) == MC_KEY_EMPTY);

    for (int c = 0; c < 256; c++) {
        bool ok = c > 0x20 && c != 0x7f;
        char one = (char)c;
        set_ctx("mc_key_check byte 0x%02x", c);
        char *p = guard_place(&one, 1);
        enum mc_key_status got = mc_key_check(p, 1);
        CHECK_MSG(got == (ok ? MC_KEY_OK : MC_KEY_BAD_CHAR),
                  "expected %d, got %d", ok ? MC_KEY_OK : MC_KEY_BAD_CHAR,
                  (int)got);
        /* at the start, middle and end of a 250-byte key */
        size_t pos[3] = {0, MC_MAX_KEY / 2, MC_MAX_KEY - 1};
        for (int i = 0; i < 3; i++) {
            memset(k, 'a', MC_MAX_KEY);
            k[pos[i]] = (char)c;
            p = guard_place(k, MC_MAX_KEY);
            got = mc_key_check(p, MC_MAX_KEY);
            CHECK_MSG(got == (ok ? MC_KEY_OK : MC_KEY_BAD_CHAR),
                      "at %zu: expected %d, got %d", pos[i],
                      ok ? MC_KEY_OK : MC_KEY_BAD_CHAR, (int)got);
        }
    }
    set_ctx("mc_key_check utf-8 key");
    CHECK(mc_key_check(L("caf\xc3\xa9")) == MC_KEY_OK);
    set_ctx("mc_key_check embedded NUL");
    CHECK(mc_key_check(L("ab\0cd")) == MC_KEY_BAD_CHAR);
    set_ctx("mc_key_check injection");
    CHECK(mc_key_check(L("a\r\nflush_all")) == MC_KEY_BAD_CHAR);
    CHECK(mc_key_check(L("a b")) == MC_KEY_BAD_CHAR);
    CHECK(mc_key_check(L("a\tb")) == MC_KEY_BAD_CHAR);
}

/* ------------------------------------------------------------------------ */
/* mc_fmt_*                                                                  */

static char *
fmt_out(void)
{
    /* exactly MC_MAX_HEADER writable bytes before the guard page */
    return guard_out(MC_MAX_HEADER);
}

/* out has `cap` writable bytes (then the guard page) */
#define CHECK_LINE_CAP(got_len, out, expected, cap)                         \
    do {                                                                    \
        size_t n_ = (got_len);                                              \
        const char *x_ = (expected);                                        \
        size_t xl_ = strlen(x_);                                            \
        CHECK_MSG(n_ == xl_ && memcmp((out), x_, xl_) == 0,                 \
                  "expected '%s' (%zu), got '%s' (%zu)", show(x_, xl_),     \
                  xl_, show((out), n_ <= (cap) ? n_ : (cap)), n_);          \
    } while (0)
#define CHECK_LINE(got_len, out, expected)                                  \
    CHECK_LINE_CAP(got_len, out, expected, (size_t)MC_MAX_HEADER)

/* mc_fmt_i64(s) (is_signed) or mc_fmt_u64(u) into exactly 20 bytes. */
static void
check_fmt_int(bool is_signed, int64_t s, uint64_t u)
{
    char expect[32];
    char *o = guard_out(20);
    size_t n;
    if (is_signed) {
        snprintf(expect, sizeof expect, "%" PRId64, s);
        n = mc_fmt_i64(o, s);
    }
    else {
        snprintf(expect, sizeof expect, "%" PRIu64, u);
        n = mc_fmt_u64(o, u);
    }
    set_ctx("mc_fmt_%s(%s)", is_signed ? "i64" : "u64", expect);
    CHECK_LINE_CAP(n, o, expect, (size_t)20);
}

static void
test_fmt(void)
{
    char *o;

    static const struct {
        enum mc_store cmd;
        const char *key;
        uint32_t flags;
        int64_t exptime;
        size_t value_len;
        uint64_t cas;
        bool noreply;
        const char *want;
    } stores[] = {
        {MC_SET, "k", 5, 0, 3, 0, false, "set k 5 0 3\r\n"},
        {MC_CAS, "k", 0, -1, 3, 77, true, "cas k 0 -1 3 77 noreply\r\n"},
        {MC_ADD, "key", 1, 60, 0, 0, false, "add key 1 60 0\r\n"},
        {MC_REPLACE, "k", 0, 0, 1, 0, true, "replace k 0 0 1 noreply\r\n"},
        {MC_APPEND, "k", 0, 0, 10, 0, false, "append k 0 0 10\r\n"},
        {MC_PREPEND, "k", 0, 0, 10, 0, false, "prepend k 0 0 10\r\n"},
        {MC_CAS, "k", 0, 0, 0, 0, false, "cas k 0 0 0 0\r\n"},
        {MC_SET, "k", UINT32_MAX, 2592000, 1048576, 0, false,
         "set k 4294967295 2592000 1048576\r\n"},
        /* the cas argument belongs to cas only */
        {MC_SET, "k", 0, 0, 3, 77, false, "set k 0 0 3\r\n"},
    };
    set_ctx("mc_fmt_store");
    for (size_t i = 0; i < sizeof stores / sizeof stores[0]; i++) {
        o = fmt_out();
        CHECK_LINE(mc_fmt_store(o, stores[i].cmd, stores[i].key,
                                strlen(stores[i].key), stores[i].flags,
                                stores[i].exptime, stores[i].value_len,
                                stores[i].cas, stores[i].noreply),
                   o, stores[i].want);
    }

    /* the longest lines fit in MC_MAX_HEADER */
    static const struct {
        enum mc_store cmd;
        const char *name;
        const char *cas;
    } longest[] = {
        {MC_PREPEND, "prepend", ""},
        {MC_CAS, "cas", " 18446744073709551615"},
    };
    for (size_t i = 0; i < sizeof longest / sizeof longest[0]; i++) {
        char expect[MC_MAX_HEADER + 100];
        snprintf(expect, sizeof expect,
                 "%s %s 4294967295 -9223372036854775808 %zu%s noreply\r\n",
                 longest[i].name, key250, (size_t)SIZE_MAX, longest[i].cas);
        o = fmt_out();
        set_ctx("mc_fmt_store longest %s", longest[i].name);
        CHECK_LINE(mc_fmt_store(o, longest[i].cmd, key250, MC_MAX_KEY,
                                UINT32_MAX, INT64_MIN, SIZE_MAX, UINT64_MAX,
                                true),
                   o, expect);
        CHECK(strlen(expect) <= MC_MAX_HEADER);
    }

    static const struct {
        const char *cmd;
        bool has_exptime;
        int64_t exptime;
        const char *want;
    } gets[] = {
        {"get", false, 0, "get k\r\n"},
        {"gets", false, 0, "gets k\r\n"},
        {"gat", true, 100, "gat 100 k\r\n"},
        {"gats", true, -1, "gats -1 k\r\n"},
        {"gat", true, 0, "gat 0 k\r\n"},
    };
    set_ctx("mc_fmt_get");
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        o = fmt_out();
        CHECK_LINE(mc_fmt_get(o, gets[i].cmd, gets[i].has_exptime,
                              gets[i].exptime, L("k")),
                   o, gets[i].want);
    }
    {
        char expect[MC_MAX_HEADER];
        snprintf(expect, sizeof expect, "gats -9223372036854775808 %s\r\n",
                 key250);
        o = fmt_out();
        CHECK_LINE(mc_fmt_get(o, "gats", true, INT64_MIN, key250, MC_MAX_KEY),
                   o, expect);
    }

    /* delete, incr and decr (delta), touch (exptime), with and without
     * noreply */
    enum { FMT_DELETE, FMT_INCR, FMT_DECR, FMT_TOUCH };
    static const char *const fmt_names[] = {
        "mc_fmt_delete", "mc_fmt_arith", "mc_fmt_arith", "mc_fmt_touch"};
    static const struct {
        int fn;
        uint64_t delta;
        int64_t exptime;
        bool noreply;
        const char *want;
    } others[] = {
        {FMT_DELETE, 0, 0, false, "delete k\r\n"},
        {FMT_DELETE, 0, 0, true, "delete k noreply\r\n"},
        {FMT_INCR, UINT64_MAX, 0, false, "incr k 18446744073709551615\r\n"},
        {FMT_DECR, 1, 0, true, "decr k 1 noreply\r\n"},
        {FMT_INCR, 0, 0, false, "incr k 0\r\n"},
        {FMT_TOUCH, 0, -1, false, "touch k -1\r\n"},
        {FMT_TOUCH, 0, 0, true, "touch k 0 noreply\r\n"},
        {FMT_TOUCH, 0, INT64_MAX, false, "touch k 9223372036854775807\r\n"},
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        int fn = others[i].fn;
        bool nr = others[i].noreply;
        set_ctx("%s", fmt_names[fn]);
        o = fmt_out();
        size_t n = fn == FMT_DELETE ? mc_fmt_delete(o, L("k"), nr)
                   : fn == FMT_TOUCH
                       ? mc_fmt_touch(o, L("k"), others[i].exptime, nr)
                       : mc_fmt_arith(o, fn == FMT_DECR, L("k"),
                                      others[i].delta, nr);
        CHECK_LINE(n, o, others[i].want);
    }

    /* mc_fmt_i64 / mc_fmt_u64 into exactly 20 bytes */
    static const int64_t i64s[] = {
        INT64_MIN, INT64_MIN + 1, -1000000000000000000, -10, -9, -1, 0, 1, 9,
        10, 99, 100, 4294967295, 4294967296, 999999999999999999,
        1000000000000000000, INT64_MAX,
    };
    for (size_t i = 0; i < sizeof i64s / sizeof i64s[0]; i++) {
        check_fmt_int(true, i64s[i], 0);
    }
    static const uint64_t u64s[] = {
        0, 1, 9, 10, 99, 100, 4294967295u, 9999999999999999999u,
        10000000000000000000u, UINT64_MAX - 1, UINT64_MAX,
    };
    for (size_t i = 0; i < sizeof u64s / sizeof u64s[0]; i++) {
        check_fmt_int(false, 0, u64s[i]);
    }
    /* every power of ten and its neighbours */
    uint64_t p = 1;
    for (int i = 0; i < 20; i++, p *= 10) {
        uint64_t vs[3] = {p - 1, p, p + 1};
        for (int j = 0; j < 3; j++) {
            check_fmt_int(false, 0, vs[j]);
            if (vs[j] <= (uint64_t)INT64_MAX) {
                check_fmt_int(true, -(int64_t)vs[j], 0);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* mc_server_parse                                                           */

static void
server_ok(const char *s, size_t len, enum mc_family family, const char *host,
          int port)
{
    struct mc_server_spec spec;
    set_ctx("mc_server_parse('%s')", show(s, len));
    char *b = guard_place(s, len);
    memset(&spec, 0xa5, sizeof spec);
    int rc = mc_server_parse(b, len, &spec);
    CHECK_MSG(rc == 0, "expected 0, got %d", rc);
    if (rc != 0) {
        return;
    }
    CHECK_MSG(spec.family == family, "family: expected %d, got %d",
              (int)family, (int)spec.family);
    size_t hl = strlen(host);
    CHECK(inside(spec.host, spec.host_len, b, len));
    CHECK_MSG(spec.host_len == hl
              && inside(spec.host, spec.host_len, b, len)
              && memcmp(spec.host, host, hl) == 0,
              "host: expected '%s', got '%s'", host,
              inside(spec.host, spec.host_len, b, len)
                  ? show(spec.host, spec.host_len) : "<outside>");
    if (port >= 0) {
        CHECK_MSG(spec.port == port, "port: expected %d, got %u", port,
                  (unsigned)spec.port);
    }
}

static void
server_bad(const char *s, size_t len)
{
    struct mc_server_spec spec;
    set_ctx("mc_server_parse('%s') must fail", show(s, len));
    char *b = guard_place(s, len);
    int rc = mc_server_parse(b, len, &spec);
    CHECK_MSG(rc == -1, "expected -1, got %d", rc);
}

static void
test_server_parse(void)
{
    server_ok(L("127.0.0.1:11211"), MC_TCP, "127.0.0.1", 11211);
    server_ok(L("localhost"), MC_TCP, "localhost", 11211);
    server_ok(L("localhost:1"), MC_TCP, "localhost", 1);
    server_ok(L("localhost:65535"), MC_TCP, "localhost", 65535);
    server_ok(L("mc.example.com:22122"), MC_TCP, "mc.example.com", 22122);
    server_ok(L("[::1]:22122"), MC_TCP6, "::1", 22122);
    server_ok(L("inet6:[::1]:22122"), MC_TCP6, "::1", 22122);
    server_ok(L("[fe80::1:2:3:4]:11211"), MC_TCP6, "fe80::1:2:3:4", 11211);
    server_ok(L("unix:/tmp/x.sock"), MC_UNIX, "/tmp/x.sock", -1);
    server_ok(L("/tmp/x.sock"), MC_UNIX, "/tmp/x.sock", -1);

    /* length limits: host 255 ok, 256 not; path 107 ok, 108 not */
    {
        char s[400];
        memset(s, 'h', 255);
        char host[256];
        memcpy(host, s, 255);
        host[255] = '\0';
        memcpy(s + 255, ":1", 2);
        server_ok(s, 257, MC_TCP, host, 1);
        server_ok(s, 255, MC_TCP, host, 11211);
        memset(s, 'h', 256);
        memcpy(s + 256, ":1", 2);
        server_bad(s, 258);
        server_bad(s, 256);
        memset(s, 'h', 300);
        memcpy(s + 300, ":11211", 6);
        server_bad(s, 306);

        char path[200];
        path[0] = '/';
        memset(path + 1, 'p', 106);
        path[107] = '\0';
        server_ok(path, 107, MC_UNIX, path, -1);
        snprintf(s, sizeof s, "unix:%s", path);
        server_ok(s, 5 + 107, MC_UNIX, path, -1);
        path[107] = 'p';
        path[108] = '\0';
        server_bad(path, 108);
        snprintf(s, sizeof s, "unix:%s", path);
        server_bad(s, 5 + 108);
    }

    server_bad(L("127.0.0.1:99999"));
    server_bad(L("127.0.0.1:65536"));
    server_bad(L("127.0.0.1:-1"));
    server_bad(L("127.0.0.1:+1"));
    server_bad(L("127.0.0.1:abc"));
    server_bad(L("127.0.0.1:1a"));
    server_bad(L("127.0.0.1: 1"));
    server_bad(L("127.0.0.1:"));
    server_bad(L("127.0.0.1:18446744073709551617"));
    server_bad(L("127.0.0.1:4294978507")); /* 11211 + 2^32 */
    server_bad(L("127.0.0.1:0"));          /* port 0 cannot be connected */
    server_bad(L("host:0"));
    server_bad(L(":11211"));
    server_bad(L(""));
    server_bad(L("[::1"));
    server_bad(L("[::1]]:1"));
    server_bad(L("::1]:1"));
    server_bad(L("[]:11211"));
    server_bad(L("[[::1]:1"));
    server_bad(L("host]:11211"));
    server_bad(L("ho[st:11211"));
    server_bad(L("[::1]]"));
    server_bad(L("[::1]:"));
    server_bad(L("[::1]:99999"));
    server_bad(L("unix:"));
    server_bad(L("inet6:[::1]x"));
    server_bad(L("inet6:[::1]:"));
    server_bad(L("inet6:"));
    server_bad(L("local\0host"));
    server_bad(L("localhost\0:11211"));
    server_bad(L("/tmp/x\0.sock"));
    server_bad(L("unix:/tmp/x\0.sock"));
    server_bad(L("local\thost"));
    server_bad(L("local\nhost:11211"));
    server_bad(L("localhost:11211\r\n"));
    server_bad(L("/tmp/x\n.sock"));
}

/* ------------------------------------------------------------------------ */
/* mc_buf                                                                    */

static void
fill(struct mc_buf *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        b->data[b->end + i] = (char)(seed + i * 31);
    }
    b->end += n;
}

static bool
holds(const struct mc_buf *b, const char *model, size_t n)
{
    return mc_buf_len(b) == n && (n == 0 || memcmp(mc_buf_head(b), model,
                                                   n) == 0);
}

static bool
sane(const struct mc_buf *b)
{
    return b->start <= b->end && b->end <= b->cap
           && (b->cap == 0 || b->data != NULL);
}

static void
test_buf(void)
{
    struct mc_buf b;

    set_ctx("mc_buf init");
    mc_buf_init(&b);
    CHECK(b.data == NULL && b.cap == 0 && b.start == 0 && b.end == 0);
    CHECK(mc_buf_len(&b) == 0);
    mc_buf_consume(&b, 0);
    CHECK(sane(&b) && mc_buf_len(&b) == 0);
    mc_buf_shrink(&b);
    CHECK(b.data == NULL && b.cap == 0);

    set_ctx("mc_buf reserve");
    CHECK(mc_buf_reserve(&b, 100) == 0);
    CHECK(sane(&b) && b.cap - b.end >= 100 && b.data != NULL);
    CHECK(b.cap >= MC_BUF_RESTING); /* first allocation is the resting size */
    fill(&b, 100, 1);
    CHECK(mc_buf_len(&b) == 100);

    set_ctx("mc_buf consume");
    char model[100];
    memcpy(model, mc_buf_head(&b), 100);
    mc_buf_consume(&b, 30);
    CHECK(b.start == 30 && b.end == 100);
    CHECK(holds(&b, model + 30, 70));

    set_ctx("mc_buf reserve with room: no move");
    char *before = b.data;
    size_t cap = b.cap;
    CHECK(mc_buf_reserve(&b, cap - 100) == 0);
    CHECK(b.data == before && b.cap == cap && b.start == 30);
    CHECK(holds(&b, model + 30, 70));

    set_ctx("mc_buf compaction instead of growth");
    CHECK(mc_buf_reserve(&b, cap - 80) == 0);
    CHECK(b.cap == cap && b.start == 0 && b.end == 70);
    CHECK(b.cap - b.end >= cap - 80);
    CHECK(holds(&b, model + 30, 70));

    set_ctx("mc_buf growth keeps bytes");
    CHECK(mc_buf_reserve(&b, cap) == 0);
    CHECK(sane(&b) && b.cap - b.end >= cap && b.cap > cap);
    CHECK(holds(&b, model + 30, 70));
    /* every reserved byte is writable (ASan checks the block size) */
    memset(b.data + b.end, 'w', b.cap - b.end);
    size_t grown = b.cap;

    set_ctx("mc_buf shrink keeps unread bytes");
    mc_buf_shrink(&b);
    CHECK(b.cap == grown && holds(&b, model + 30, 70));

    set_ctx("mc_buf consume all resets cursors");
    mc_buf_consume(&b, 70);
    CHECK(b.start == 0 && b.end == 0 && mc_buf_len(&b) == 0);

    set_ctx("mc_buf shrink when idle");
    mc_buf_shrink(&b);
    CHECK(sane(&b) && b.cap <= MC_BUF_RESTING && mc_buf_len(&b) == 0);
    CHECK(b.cap == 0 || b.data != NULL);
    CHECK(mc_buf_reserve(&b, 10) == 0);
    fill(&b, 10, 7);
    CHECK(mc_buf_len(&b) == 10);
    cap = b.cap;
    mc_buf_shrink(&b);
    CHECK(b.cap == cap && mc_buf_len(&b) == 10);

    set_ctx("mc_buf reserve impossible sizes");
    memcpy(model, mc_buf_head(&b), 10);
    mc_buf_consume(&b, 3);
    cap = b.cap;
    CHECK(mc_buf_reserve(&b, SIZE_MAX) == -ENOMEM);
    CHECK(sane(&b) && b.cap == cap && holds(&b, model + 3, 7));
    CHECK(mc_buf_reserve(&b, SIZE_MAX / 2) == -ENOMEM);
    CHECK(sane(&b) && b.cap == cap && holds(&b, model + 3, 7));
    CHECK(mc_buf_reserve(&b, SIZE_MAX - b.end + 1) == -ENOMEM);
    CHECK(sane(&b) && b.cap == cap && holds(&b, model + 3, 7));
    /* allocation failure from realloc itself (32 TiB) */
    CHECK(mc_buf_reserve(&b, (size_t)1 << 45) == -ENOMEM);
    CHECK(sane(&b) && b.cap == cap && holds(&b, model + 3, 7));
    CHECK(mc_buf_reserve(&b, 5) == 0);
    CHECK(holds(&b, model + 3, 7));

    set_ctx("mc_buf growth past MC_BUF_MOVE (realloc) keeps bytes");
    mc_buf_free(&b);
    CHECK(mc_buf_reserve(&b, MC_BUF_MOVE) == 0);
    CHECK(b.cap >= MC_BUF_MOVE);
    size_t big = b.cap;
    char *bigmodel = malloc(big);
    fill(&b, big, 11);
    memcpy(bigmodel, mc_buf_head(&b), big);
    mc_buf_consume(&b, 5);  /* compacted, then grown by realloc */
    CHECK(mc_buf_reserve(&b, big) == 0);
    CHECK(sane(&b) && b.start == 0 && b.cap >= 2 * big - 5);
    CHECK(holds(&b, bigmodel + 5, big - 5));
    memset(b.data + b.end, 'w', b.cap - b.end);
    cap = b.cap;
    CHECK(mc_buf_reserve(&b, b.cap - b.end + 1) == 0);
    CHECK(sane(&b) && b.cap == 2 * cap && holds(&b, bigmodel + 5, big - 5));
    cap = b.cap;
    /* realloc failing (32 TiB) leaves the buffer as it was */
    CHECK(mc_buf_reserve(&b, (size_t)1 << 45) == -ENOMEM);
    CHECK(sane(&b) && b.cap == cap && holds(&b, bigmodel + 5, big - 5));
    free(bigmodel);

    set_ctx("mc_buf free and reuse");
    mc_buf_free(&b);
    CHECK(b.data == NULL && b.cap == 0 && mc_buf_len(&b) == 0);
    CHECK(mc_buf_reserve(&b, 1) == 0);
    fill(&b, 1, 3);
    CHECK(mc_buf_len(&b) == 1);
    mc_buf_free(&b);
    mc_buf_free(&b);
    CHECK(b.data == NULL);

    /* reserve(0) on an empty buffer */
    set_ctx("mc_buf reserve 0");
    CHECK(mc_buf_reserve(&b, 0) == 0);
    CHECK(sane(&b));
    mc_buf_free(&b);

    /* random operations against a model: the unread bytes are
     * m[mstart, mstart + mlen) */
    set_ctx("mc_buf random model");
    size_t model_cap = (size_t)1 << 22;
    char *m = malloc(model_cap);
    size_t mstart = 0, mlen = 0;
    bool ok = true;
    unsigned counter = 0;
    for (int round = 0; round < 20000 && ok; round++) {
        uint64_t x = rng();
        switch (x % 6) {
        case 0:
        case 1: { /* reserve and write */
            size_t room =
                (size_t)(rng() % ((x >> 8) % 7 == 0 ? 200000 : 3000));
            if (mlen + room > model_cap) {
                break;
            }
            if (mstart + mlen + room > model_cap) {
                memmove(m, m + mstart, mlen);
                mstart = 0;
            }
            size_t start = b.start, end = b.end, oldcap = b.cap;
            int rc = mc_buf_reserve(&b, room);
            ok &= CHECK(rc == 0);
            if (rc != 0) {
                break;
            }
            ok &= CHECK(sane(&b) && b.cap - b.end >= room);
            ok &= CHECK(holds(&b, m + mstart, mlen));
            if (oldcap - end >= room) {
                /* there was room: nothing moves */
                ok &= CHECK(b.start == start && b.end == end
                            && b.cap == oldcap);
            }
            else if (oldcap - (end - start) >= room) {
                /* compaction was enough: no growth */
                ok &= CHECK(b.cap == oldcap && b.start == 0);
            }
            if (room) {
                /* the whole reserved room is writable */
                memset(b.data + b.end, 0, room);
            }
            size_t w = room ? (size_t)(rng() % room) + 1 : 0;
            for (size_t i = 0; i < w; i++) {
                char c = (char)(counter++ * 7 + 3);
                b.data[b.end + i] = c;
                m[mstart + mlen + i] = c;
            }
            b.end += w;
            mlen += w;
            break;
        }
        case 2:
        case 3: { /* consume */
            size_t n = mlen ? (size_t)(rng() % (mlen + 1)) : 0;
            if (x & 0x100) {
                n = mlen;
            }
            mc_buf_consume(&b, n);
            mstart += n;
            mlen -= n;
            if (mlen == 0) {
                mstart = 0;
            }
            ok &= CHECK(sane(&b) && holds(&b, m + mstart, mlen));
            if (mlen == 0) {
                ok &= CHECK(b.start == 0 && b.end == 0);
            }
            break;
        }
        case 4: { /* shrink */
            size_t oldcap = b.cap;
            mc_buf_shrink(&b);
            ok &= CHECK(sane(&b) && holds(&b, m + mstart, mlen));
            if (mlen > 0) {
                ok &= CHECK(b.cap == oldcap);
            }
            else {
                ok &= CHECK(b.cap <= oldcap);
                ok &= CHECK(oldcap <= MC_BUF_RESTING
                            || b.cap <= MC_BUF_RESTING);
            }
            break;
        }
        default: /* occasionally free */
            if ((x >> 16) % 50 == 0) {
                mc_buf_free(&b);
                mstart = mlen = 0;
                ok &= CHECK(b.data == NULL && mc_buf_len(&b) == 0);
            }
            break;
        }
    }
    free(m);
    mc_buf_free(&b);
}

/* ------------------------------------------------------------------------ */

static void
test_misc(void)
{
    set_ctx("mc_is_error");
    CHECK(mc_is_error(MC_ERROR));
    CHECK(mc_is_error(MC_CLIENT_ERROR));
    CHECK(mc_is_error(MC_SERVER_ERROR));
    for (int k = MC_VALUE; k <= MC_STAT; k++) {
        CHECK(!mc_is_error((enum mc_kind)k));
    }
    set_ctx("constants");
    CHECK(MC_NEED_MORE < 0 && MC_EPROTO < 0 && MC_NEED_MORE != MC_EPROTO);
    CHECK(MC_MAX_LINE >= 1024);
    CHECK(MC_MAX_HEADER >= 8 + MC_MAX_KEY + 1 + 10 + 1 + 20 + 1 + 20 + 1 + 20
                               + 8 + 2);
}

/* VALUE lines whose key (found eight bytes at a time) has every length
 * from 1 to 64 and bytes from either side of 0x20 and 0x80; a byte <= 0x20
 * inside a key, anywhere, is refused.  Each frame is parsed from a buffer
 * of its exact size (ASan: no read past it). */
static void
test_value_keys(void)
{
    static const unsigned char fill[] = {0x21, 0x41, 0x7e, 0x7f,
                                         0x80, 0xa0, 0xa1, 0xff};
    static const unsigned char bad[] = {0x00, 0x01, 0x09, 0x1f, 0x20};
    char key[64];
    char frame[128];
    for (size_t len = 1; len <= sizeof key; len++) {
        for (size_t f = 0; f < sizeof fill; f++) {
            for (size_t i = 0; i < len; i++) {
                key[i] = (char)fill[(f + i * (i % 3 == 0)) % sizeof fill];
            }
            memcpy(frame, "VALUE ", 6);
            memcpy(frame + 6, key, len);
            memcpy(frame + 6 + len, " 7 1\r\nx\r\n", 9);
            size_t n = 6 + len + 9;
            char *b = malloc(n);
            CHECK(b != NULL);
            memcpy(b, frame, n);
            struct mc_reply r;
            set_ctx("VALUE key of %zu bytes, fill %zu", len, f);
            CHECK(mc_parse(b, n, DEFAULT_MAX, &r) == (ssize_t)n);
            CHECK(r.kind == MC_VALUE && r.key_len == len && r.flags == 7
                  && r.value_len == 1);
            CHECK(r.key == b + 6 && memcmp(r.key, key, len) == 0);
            for (size_t at = 0; at < len; at++) {
                for (size_t k = 0; k < sizeof bad; k++) {
                    b[6 + at] = (char)bad[k];
                    set_ctx("VALUE key of %zu bytes, 0x%02x at %zu", len,
                            bad[k], at);
                    ssize_t rc = mc_parse(b, n, DEFAULT_MAX, &r);
                    /* at the first byte a space makes an empty key; later
                     * ones a key and then what cannot be the flags */
                    CHECK(rc == MC_EPROTO);
                }
                b[6 + at] = key[at];
            }
            free(b);
        }
    }
}

/* The seeds of tests/fuzz/fuzz_parse.c: its control byte's high bits are
 * the chunking seed. */
static const struct corpus_form corpus = {
    .ctl_mask = 0xf8,
    .digits = 2,
    .stream_end = "END\r\n",
    .own_max_value = true,
};

/* Lets mc_buf's allocation-failure path be tested under ASan: a huge realloc
 * returns NULL instead of aborting the run. */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

int
main(int argc, char **argv)
{
    build_catalogue();

    if (argc == 3 && strcmp(argv[1], "--dump-corpus") == 0) {
        return dump_corpus(argv[2], &corpus);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--dump-corpus DIR]\n", argv[0]);
        return 2;
    }

    test_misc();
    test_valid();
    test_valid_pieces();
    test_value_keys();
    test_stream();
    test_bad();
    test_huge_counts();
    test_line_limit();
    test_need();
    test_key_check();
    test_fmt();
    test_server_parse();
    test_buf();

    free_cases();
    guard_release();
    return check_summary();
}
