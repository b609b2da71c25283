/* libFuzzer target for mc_parse().
 *
 * Input: one control byte, then a reply stream.  The low 3 bits of the
 * control byte pick max_value; bits 3-5 the largest chunk size (chunk sizes
 * come from a generator seeded with the control byte and a hash of the
 * stream); bit 6 stretches the stream by repeating its last byte 8192 times,
 * so that lines longer than MC_MAX_LINE are reachable within -max_len=4096.
 *
 * The stream is parsed whole (frame after frame, in libFuzzer's exact-size
 * buffer) and again as a connection would see it: chunks arrive one by one,
 * the unread bytes are copied into an exact-size block and parsed, complete
 * frames are consumed.  The target aborts when
 *   - chunked and whole parsing differ in any frame (offset, length, kind,
 *     fields) or in how the stream ends (MC_NEED_MORE with the same need, or
 *     MC_EPROTO at the same frame);
 *   - a frame is longer than the bytes given, does not end in CRLF, or has a
 *     pointer outside it;
 *   - `need` is set but not larger than the bytes given, changes while the
 *     same frame is awaited, or differs from the frame length that follows;
 *   - MC_NEED_MORE comes without `need` although a whole VALUE line is in;
 *   - a VALUE (or CONFIG) frame's parts do not add up or its line does not match the
 *     grammar (single spaces, u32 flags and bytes, u64 cas), or a NUMBER does
 *     not match its digits;
 *   - a VALUE frame parses differently with max_value = its value length, or
 *     succeeds with max_value one less.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "../c/rand.h"

#define REQUIRE(cond)                                                       \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond,        \
                    __FILE__, __LINE__);                                    \
            abort();                                                        \
        }                                                                   \
    } while (0)

static const size_t max_values[8] = {
    0, 1, 5, 16, 300, 4096, (size_t)1 << 20, SIZE_MAX,
};

static const size_t max_chunks[8] = {1, 2, 3, 7, 16, 64, 512, 4096};

/* A frame with its pointers turned into offsets from the stream start. */
struct frame {
    size_t off;
    size_t len;
    enum mc_kind kind;
    size_t key_off, key_len;
    size_t value_off, value_len;
    size_t text_off, text_len;
    uint32_t flags;
    bool has_cas;
    uint64_t cas;
    uint64_t number;
};

static bool
ptr_inside(const char *p, size_t n, const char *base, size_t len)
{
    if (n == 0) {
        return true;
    }
    return p != NULL && p >= base && (size_t)(p - base) <= len
           && n <= len - (size_t)(p - base);
}

static size_t
off_of(const char *p, size_t n, const char *base, size_t stream_off)
{
    return n == 0 ? 0 : stream_off + (size_t)(p - base);
}

static bool
is_word(const char *line, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(line, word, n) == 0;
}

static bool
has_prefix(const char *line, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n >= w && memcmp(line, word, w) == 0;
}

/* Parses digits p[0, n) as a u64 no greater than max; false otherwise. */
static bool
digits(const char *p, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0 || n > 20) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (v > max) {
        return false;
    }
    *out = v;
    return true;
}

struct value_line {
    const char *key;
    size_t key_len;
    uint64_t flags;
    uint64_t bytes;
    bool has_cas;
    uint64_t cas;
};

/* Re-reads a VALUE line without its CRLF: "VALUE key flags bytes [cas]",
 * single spaces, u32 flags and bytes, u64 cas; or a CONFIG line, the same
 * without cas. */
static struct value_line
read_value_line(const char *line, size_t n)
{
    const char *tok[6];
    size_t tok_len[6];
    size_t nt = 0;
    size_t i = 0;
    while (i <= n) {
        size_t start = i;
        while (i < n && line[i] != ' ') {
            i++;
        }
        REQUIRE(nt < 6);
        tok[nt] = line + start;
        tok_len[nt] = i - start;
        REQUIRE(tok_len[nt] > 0); /* no double, leading or trailing space */
        nt++;
        i++;
    }
    REQUIRE(nt == 4 || nt == 5);
    bool config = tok_len[0] == 6 && memcmp(tok[0], "CONFIG", 6) == 0;
    REQUIRE(config || (tok_len[0] == 5 && memcmp(tok[0], "VALUE", 5) == 0));
    REQUIRE(!config || nt == 4);
    struct value_line v;
    memset(&v, 0, sizeof v);
    v.key = tok[1];
    v.key_len = tok_len[1];
    REQUIRE(v.key_len <= MC_MAX_KEY);
    REQUIRE(digits(tok[2], tok_len[2], UINT32_MAX, &v.flags));
    REQUIRE(digits(tok[3], tok_len[3], UINT32_MAX, &v.bytes));
    v.has_cas = nt == 5;
    if (v.has_cas) {
        REQUIRE(digits(tok[4], tok_len[4], UINT64_MAX, &v.cas));
    }
    return v;
}

static void
check_value_line(const char *line, size_t n, const struct mc_reply *r)
{
    struct value_line v = read_value_line(line, n);
    REQUIRE(r->key == v.key && r->key_len == v.key_len);
    REQUIRE(r->flags == v.flags);
    REQUIRE(r->value_len == v.bytes);
    REQUIRE(r->has_cas == v.has_cas);
    REQUIRE(!v.has_cas || r->cas == v.cas);
}

/* Checks one complete frame buf[0, rc) (avail bytes were given) and returns
 * it with offsets relative to stream_off. */
static struct frame
check_frame(const char *buf, size_t avail, ssize_t rc,
            const struct mc_reply *r, size_t max_value, size_t stream_off)
{
    struct frame f;
    memset(&f, 0, sizeof f);
    REQUIRE(rc > 0);
    size_t len = (size_t)rc;
    REQUIRE(len <= avail);
    REQUIRE(len >= 3);
    REQUIRE(buf[len - 2] == '\r' && buf[len - 1] == '\n');

    const char *lf = memchr(buf, '\n', len);
    REQUIRE(lf != NULL);
    size_t line_len = (size_t)(lf - buf) + 1; /* CRLF included */
    REQUIRE(line_len <= MC_MAX_LINE);
    REQUIRE(buf[line_len - 2] == '\r');
    size_t body = line_len - 2;

    f.off = stream_off;
    f.len = len;
    f.kind = r->kind;
    switch (r->kind) {
    case MC_VALUE:
    case MC_CONFIG:
        REQUIRE(has_prefix(buf, body, r->kind == MC_VALUE ? "VALUE "
                                                          : "CONFIG "));
        REQUIRE(r->key_len >= 1 && r->key_len <= MC_MAX_KEY);
        REQUIRE(ptr_inside(r->key, r->key_len, buf, body));
        REQUIRE(memchr(r->key, ' ', r->key_len) == NULL);
        check_value_line(buf, body, r);
        REQUIRE(r->value_len <= max_value);
        REQUIRE(r->value_len <= len - 2);
        REQUIRE(len - 2 - r->value_len == line_len);
        if (r->value_len > 0) {
            REQUIRE(r->value == buf + line_len);
        }
        REQUIRE(ptr_inside(r->value, r->value_len, buf, len - 2));
        f.key_off = off_of(r->key, r->key_len, buf, stream_off);
        f.key_len = r->key_len;
        f.value_off = off_of(r->value, r->value_len, buf, stream_off);
        f.value_len = r->value_len;
        f.flags = r->flags;
        f.has_cas = r->has_cas;
        f.cas = r->has_cas ? r->cas : 0;
        break;
    case MC_NUMBER: {
        REQUIRE(len == line_len);
        uint64_t v;
        REQUIRE(digits(buf, body, UINT64_MAX, &v) && r->number == v);
        f.number = r->number;
        break;
    }
    case MC_STAT:
        REQUIRE(len == line_len);
        REQUIRE(has_prefix(buf, body, "STAT "));
        REQUIRE(r->key_len >= 1);
        REQUIRE(ptr_inside(r->key, r->key_len, buf, body));
        REQUIRE(memchr(r->key, ' ', r->key_len) == NULL);
        REQUIRE(ptr_inside(r->text, r->text_len, buf, body));
        f.key_off = off_of(r->key, r->key_len, buf, stream_off);
        f.key_len = r->key_len;
        f.text_off = off_of(r->text, r->text_len, buf, stream_off);
        f.text_len = r->text_len;
        break;
    case MC_VERSION:
    case MC_ERROR:
    case MC_CLIENT_ERROR:
    case MC_SERVER_ERROR:
        REQUIRE(len == line_len);
        REQUIRE(r->kind != MC_VERSION || has_prefix(buf, body, "VERSION"));
        REQUIRE(r->kind != MC_ERROR || has_prefix(buf, body, "ERROR"));
        REQUIRE(r->kind != MC_CLIENT_ERROR
                || has_prefix(buf, body, "CLIENT_ERROR"));
        REQUIRE(r->kind != MC_SERVER_ERROR
                || has_prefix(buf, body, "SERVER_ERROR"));
        REQUIRE(ptr_inside(r->text, r->text_len, buf, body));
        if (r->text_len > 0) {
            /* the text is the end of the line */
            REQUIRE(r->text + r->text_len == buf + body);
        }
        f.text_off = off_of(r->text, r->text_len, buf, stream_off);
        f.text_len = r->text_len;
        break;
    case MC_END:
        REQUIRE(is_word(buf, len, "END\r\n"));
        break;
    case MC_STORED:
        REQUIRE(is_word(buf, len, "STORED\r\n"));
        break;
    case MC_NOT_STORED:
        REQUIRE(is_word(buf, len, "NOT_STORED\r\n"));
        break;
    case MC_EXISTS:
        REQUIRE(is_word(buf, len, "EXISTS\r\n"));
        break;
    case MC_NOT_FOUND:
        REQUIRE(is_word(buf, len, "NOT_FOUND\r\n"));
        break;
    case MC_DELETED:
        REQUIRE(is_word(buf, len, "DELETED\r\n"));
        break;
    case MC_TOUCHED:
        REQUIRE(is_word(buf, len, "TOUCHED\r\n"));
        break;
    case MC_OK:
        REQUIRE(is_word(buf, len, "OK\r\n"));
        break;
    case MC_RESET:
        REQUIRE(is_word(buf, len, "RESET\r\n"));
        break;
    case MC_MN:
        REQUIRE(is_word(buf, len, "MN\r\n"));
        break;
    default:
        REQUIRE(!"unknown kind");
    }

    if (r->kind == MC_VALUE || r->kind == MC_CONFIG) {
        /* the size bound is exact: max_value = value_len still parses,
         * one less is a protocol error */
        struct mc_reply r2;
        size_t vlen = r->value_len;
        ssize_t rc2 = mc_parse(buf, len, vlen, &r2);
        REQUIRE(rc2 == rc && r2.kind == r->kind && r2.value_len == vlen);
        if (vlen > 0) {
            REQUIRE(mc_parse(buf, len, vlen - 1, &r2) == MC_EPROTO);
        }
    }
    return f;
}

static bool
same_frame(const struct frame *a, const struct frame *b)
{
    return a->off == b->off && a->len == b->len && a->kind == b->kind
           && a->key_off == b->key_off && a->key_len == b->key_len
           && a->value_off == b->value_off && a->value_len == b->value_len
           && a->text_off == b->text_off && a->text_len == b->text_len
           && a->flags == b->flags && a->has_cas == b->has_cas
           && a->cas == b->cas && a->number == b->number;
}

static void
check_need(const struct mc_reply *r, const char *buf, size_t avail,
           size_t max_value)
{
    if (r->need == 0) {
        /* only a VALUE (or CONFIG) can wait after its line; then the size
         * is known */
        size_t scan = avail < MC_MAX_LINE ? avail : MC_MAX_LINE;
        REQUIRE(memchr(buf, '\n', scan) == NULL);
        /* and waiting is only allowed while the line is within bounds */
        REQUIRE(avail < MC_MAX_LINE);
        return;
    }
    /* need is announced by a complete VALUE (or CONFIG) line: line + bytes
     * + CRLF */
    const char *lf = memchr(buf, '\n', avail < MC_MAX_LINE ? avail
                                                            : MC_MAX_LINE);
    REQUIRE(lf != NULL && lf > buf && lf[-1] == '\r');
    size_t line_len = (size_t)(lf - buf) + 1;
    struct value_line v = read_value_line(buf, line_len - 2);
    REQUIRE(v.bytes <= max_value);
    REQUIRE(r->need == line_len + v.bytes + 2);
    REQUIRE(r->need > avail);
    /* a line of at most MC_MAX_LINE, the value, its CRLF */
    if (max_value <= SIZE_MAX - MC_MAX_LINE - 2) {
        REQUIRE(r->need <= MC_MAX_LINE + max_value + 2);
    }
}

static uint64_t
hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3u;
    }
    return h;
}

/* Parses the first k bytes of stream[pos, n) from an exact-size copy and
 * checks the outcome against the whole parse at pos: the frame itself once
 * k covers it, otherwise MC_NEED_MORE (with the frame length as need when
 * set) or, when the whole is an error, possibly an earlier error. */
static void
probe_prefix(const char *at, size_t k, size_t max_value, ssize_t whole_rc,
             size_t whole_need)
{
    char *w = malloc(k ? k : 1);
    REQUIRE(w != NULL);
    if (k) {
        memcpy(w, at, k);
    }
    struct mc_reply r;
    memset(&r, 0xa5, sizeof r);
    ssize_t rc = mc_parse(w, k, max_value, &r);
    if (rc == MC_NEED_MORE) {
        check_need(&r, w, k, max_value);
    }
    if (whole_rc > 0 && (size_t)whole_rc <= k) {
        REQUIRE(rc == whole_rc);
    }
    else if (whole_rc > 0) {
        REQUIRE(rc == MC_NEED_MORE);
        REQUIRE(r.need == 0 || r.need == (size_t)whole_rc);
    }
    else if (whole_rc == MC_NEED_MORE) {
        REQUIRE(rc == MC_NEED_MORE);
        REQUIRE(r.need == 0 || r.need == whole_need);
    }
    else {
        REQUIRE(rc == MC_NEED_MORE || rc == MC_EPROTO);
    }
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t max_value = max_values[data[0] & 7];
    size_t max_chunk = max_chunks[(data[0] >> 3) & 7];
    const char *stream = (const char *)data + 1;
    size_t n = size - 1;
    char *stretched = NULL;
    if ((data[0] & 0x40) && n > 0) {
        /* exact size, so reads past the end are still caught */
        stretched = malloc(n + 8192);
        REQUIRE(stretched != NULL);
        memcpy(stretched, stream, n);
        memset(stretched + n, stream[n - 1], 8192);
        stream = stretched;
        n += 8192;
    }

    /* Whole: frame after frame over the exact input. */
    size_t cap = n / 3 + 2;
    struct frame *frames = malloc(cap * sizeof *frames);
    REQUIRE(frames != NULL);
    size_t nf = 0;
    size_t pos = 0;
    ssize_t end_rc;
    size_t end_need = 0;
    for (;;) {
        struct mc_reply r;
        memset(&r, 0xa5, sizeof r);
        ssize_t rc = mc_parse(stream + pos, n - pos, max_value, &r);
        if (n - pos > MC_MAX_LINE) {
            /* the line-length bound, exactly at the limit and one below */
            probe_prefix(stream + pos, MC_MAX_LINE, max_value, rc, r.need);
            probe_prefix(stream + pos, MC_MAX_LINE - 1, max_value, rc,
                         r.need);
        }
        if (rc > 0) {
            REQUIRE(nf < cap);
            frames[nf++] = check_frame(stream + pos, n - pos, rc, &r,
                                       max_value, pos);
            pos += (size_t)rc;
            continue;
        }
        REQUIRE(rc == MC_NEED_MORE || rc == MC_EPROTO);
        if (rc == MC_NEED_MORE) {
            check_need(&r, stream + pos, n - pos, max_value);
            end_need = r.need;
        }
        end_rc = rc;
        break;
    }

    /* Chunked: as read from a socket, consuming frames as they complete. */
    uint64_t seed = hash_bytes(data, size) ^ ((uint64_t)data[0] << 56) ^ 1;
    size_t avail = 0;
    size_t fi = 0;
    size_t awaited = 0; /* need reported for the frame at pos, 0 if none */
    pos = 0;
    for (;;) {
        if (avail < n) {
            /* larger chunks for a stretched stream keep runs fast */
            size_t chunk = 1 + (size_t)(next_rand(&seed)
                                        % (stretched ? 64 * max_chunk
                                                     : max_chunk));
            avail = chunk < n - avail ? avail + chunk : n;
        }
        ssize_t rc;
        struct mc_reply r;
        for (;;) {
            size_t have = avail - pos;
            char *w = malloc(have ? have : 1);
            REQUIRE(w != NULL);
            if (have) {
                memcpy(w, stream + pos, have);
            }
            memset(&r, 0xa5, sizeof r);
            rc = mc_parse(w, have, max_value, &r);
            if (rc > 0) {
                struct frame f = check_frame(w, have, rc, &r, max_value, pos);
                REQUIRE(fi < nf);
                REQUIRE(same_frame(&f, &frames[fi]));
                REQUIRE(awaited == 0 || awaited == (size_t)rc);
                fi++;
                pos += (size_t)rc;
                awaited = 0;
                free(w);
                continue;
            }
            REQUIRE(rc == MC_NEED_MORE || rc == MC_EPROTO);
            if (rc == MC_NEED_MORE) {
                check_need(&r, w, have, max_value);
                REQUIRE(awaited == 0 || r.need == awaited);
                awaited = r.need;
            }
            free(w);
            break;
        }
        if (rc == MC_EPROTO) {
            /* an error in a prefix is an error in the whole */
            REQUIRE(fi == nf && end_rc == MC_EPROTO);
            break;
        }
        if (avail == n) {
            REQUIRE(fi == nf && end_rc == MC_NEED_MORE);
            REQUIRE(r.need == end_need);
            break;
        }
    }
    free(frames);
    free(stretched);
    return 0;
}
