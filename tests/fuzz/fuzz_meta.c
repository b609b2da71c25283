/* libFuzzer target for mc_meta_parse() and the base64 coder of ext/meta.c.
 *
 * Input: one control byte, then a reply stream.  The low 3 bits of the
 * control byte pick max_value; bits 3-5 the largest chunk size; bit 6
 * stretches the stream by repeating its last byte 8192 times, so that lines
 * longer than MC_MAX_LINE are reachable within -max_len=4096.
 *
 * The stream is parsed whole, frame after frame, and every answer is
 * compared with a second, independent reading of the grammar in this file
 * (ref_parse: tokenise the line, then interpret the tokens): the same
 * outcome, frame length, need, kind, flags and fields.  Then it is parsed
 * again as a connection would see it: chunks arrive one by one, the unread
 * bytes are copied into an exact-size block, complete frames are consumed;
 * every frame and the stream's end must match the whole parse.
 *
 * The same input bytes are also given to mc_b64_decode(), whose verdict and
 * output must match a bit-by-bit reference and re-encode to the input, and
 * to mc_b64_encode(), whose output must decode back to them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"
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

/* ------------------------------------------------------------------------ */
/* Base64 reference                                                          */

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
sextet(unsigned char c)
{
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

/* Decodes bit by bit; -1 unless canonical (see meta.h). */
static ssize_t
ref_b64_decode(unsigned char *out, const unsigned char *s, size_t len)
{
    if (len % 4) {
        return -1;
    }
    size_t pad = 0;
    while (pad < 2 && pad < len && s[len - 1 - pad] == '=') {
        pad++;
    }
    size_t chars = len - pad;
    uint32_t acc = 0;
    unsigned nbits = 0;
    size_t n = 0;
    for (size_t i = 0; i < chars; i++) {
        int v = sextet(s[i]);
        if (v < 0) {
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            out[n++] = (unsigned char)(acc >> nbits);
            acc &= (1u << nbits) - 1;
        }
    }
    /* what is left over must be zero bits */
    if (acc != 0) {
        return -1;
    }
    return (ssize_t)n;
}

static void
fuzz_b64(const unsigned char *data, size_t n)
{
    /* decode the input as text, into an exact-size block */
    size_t cap = n / 4 * 3;
    unsigned char *out = malloc(cap ? cap : 1);
    unsigned char *ref = malloc(cap ? cap : 1);
    REQUIRE(out != NULL && ref != NULL);
    ssize_t got = mc_b64_decode(out, (const char *)data, n);
    ssize_t want = ref_b64_decode(ref, data, n);
    REQUIRE(got == want);
    REQUIRE(mc_b64_decode(NULL, (const char *)data, n) == want);
    if (got >= 0) {
        REQUIRE((size_t)got <= cap);
        REQUIRE(memcmp(out, ref, (size_t)got) == 0);
        /* canonical: re-encoding gives the same text */
        size_t elen = MC_B64_LEN((size_t)got);
        REQUIRE(elen == n);
        char *enc = malloc(elen ? elen : 1);
        REQUIRE(enc != NULL);
        REQUIRE(mc_b64_encode(enc, out, (size_t)got) == elen);
        REQUIRE(memcmp(enc, data, n) == 0);
        free(enc);
    }
    free(out);
    free(ref);

    /* encode the input as bytes: alphabet only, decodes back */
    size_t elen = MC_B64_LEN(n);
    char *enc = malloc(elen ? elen : 1);
    REQUIRE(enc != NULL);
    REQUIRE(mc_b64_encode(enc, data, n) == elen);
    for (size_t i = 0; i < elen; i++) {
        REQUIRE(sextet((unsigned char)enc[i]) >= 0
                || (enc[i] == '=' && i >= elen - 2));
    }
    unsigned char *back = malloc(n ? n : 1);
    REQUIRE(back != NULL);
    REQUIRE(mc_b64_decode(back, enc, elen) == (ssize_t)n);
    REQUIRE(n == 0 || memcmp(back, data, n) == 0);
    free(back);
    free(enc);
}

/* ------------------------------------------------------------------------ */
/* Reply grammar reference                                                   */

static bool
key_ok(const char *p, size_t n)
{
    if (n == 0 || n > MC_MAX_KEY) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* 1..20 decimal digits, value at most max. */
static bool
decimal(const char *p, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0 || n > 20) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
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

static bool
has_prefix(const char *p, size_t n, const char *w)
{
    size_t l = strlen(w);
    return n >= l && memcmp(p, w, l) == 0;
}

#define MAX_TOKENS 64

/* Interprets flag tokens tok[from, nt).  Returns false outside the
 * grammar. */
static bool
ref_flags(const char *const *tok, const size_t *tlen, size_t from, size_t nt,
          struct mc_meta_reply *w)
{
    w->has = 0;
    for (size_t i = from; i < nt; i++) {
        const char *a = tok[i] + 1;
        size_t al = tlen[i] - 1;
        uint32_t bit;
        uint64_t v;
        switch (tok[i][0]) {
        case 'f':
            bit = MC_RF_FLAGS;
            if (!decimal(a, al, UINT32_MAX, &v)) {
                return false;
            }
            w->client_flags = (uint32_t)v;
            break;
        case 's':
            bit = MC_RF_SIZE;
            if (!decimal(a, al, UINT32_MAX, &v)) {
                return false;
            }
            w->size = (uint32_t)v;
            break;
        case 'l':
            bit = MC_RF_ACCESS;
            if (!decimal(a, al, UINT32_MAX, &v)) {
                return false;
            }
            w->last_access = (uint32_t)v;
            break;
        case 'c':
            bit = MC_RF_CAS;
            if (!decimal(a, al, UINT64_MAX, &w->cas)) {
                return false;
            }
            break;
        case 't':
            bit = MC_RF_TTL;
            if (al == 2 && memcmp(a, "-1", 2) == 0) {
                w->ttl = -1;
            }
            else if (decimal(a, al, UINT32_MAX, &v)) {
                w->ttl = (int64_t)v;
            }
            else {
                return false;
            }
            break;
        case 'h':
            bit = MC_RF_HIT;
            if (al != 1 || (a[0] != '0' && a[0] != '1')) {
                return false;
            }
            w->hit = a[0] == '1';
            break;
        case 'k':
            bit = MC_RF_KEY;
            w->key = a;
            w->key_len = al;
            break;
        case 'O':
            bit = MC_RF_OPAQUE;
            if (al > 31 || (al > 0 && !key_ok(a, al))) {
                return false;
            }
            w->opaque = a;
            w->opaque_len = al;
            if (al > 0 && (a[0] != '0' || al == 1)
                && decimal(a, al, UINT64_MAX, &w->opaque_num)) {
                w->has |= MC_RF_OPAQUE_NUM;
            }
            break;
        case 'b':
            bit = MC_RF_BASE64;
            break;
        case 'W':
            bit = MC_RF_WIN;
            break;
        case 'X':
            bit = MC_RF_STALE;
            break;
        case 'Z':
            bit = MC_RF_WON;
            break;
        default:
            return false;
        }
        if ((bit & (MC_RF_BASE64 | MC_RF_WIN | MC_RF_STALE | MC_RF_WON))
            && al != 0) {
            return false;
        }
        if (w->has & bit) {
            return false;
        }
        w->has |= bit;
    }
    if (w->has & MC_RF_BASE64) {
        unsigned char tmp[MC_MAX_KEY];
        return (w->has & MC_RF_KEY) && w->key_len >= 4
               && w->key_len <= MC_MAX_KEY
               && ref_b64_decode(tmp, (const unsigned char *)w->key,
                                 w->key_len) > 0;
    }
    return !(w->has & MC_RF_KEY) || key_ok(w->key, w->key_len);
}

/* The outcome mc_meta_parse() must give, worked out independently. */
static ssize_t
ref_parse(const char *buf, size_t len, size_t max_value,
          struct mc_meta_reply *w)
{
    memset(w, 0, sizeof *w);
    /* (memchr for the long scans: they are not what is being checked,
     * and byte loops here would cost most of the fuzzer's time) */
    const char *nl = memchr(buf, '\n', len < MC_MAX_LINE ? len : MC_MAX_LINE);
    if (nl == NULL) {
        if (len >= MC_MAX_LINE) {
            return MC_EPROTO;
        }
        /* a CR with anything after it can no longer end a line */
        const char *cr = len > 1 ? memchr(buf, '\r', len - 1) : NULL;
        return cr != NULL ? MC_EPROTO : MC_NEED_MORE;
    }
    size_t lf = (size_t)(nl - buf);
    if (lf == 0 || buf[lf - 1] != '\r') {
        return MC_EPROTO;
    }
    const char *line = buf;
    size_t n = lf - 1;
    size_t head = lf + 1;

    if (has_prefix(line, n, "ERROR") || has_prefix(line, n, "CLIENT_ERROR")
        || has_prefix(line, n, "SERVER_ERROR")) {
        struct mc_reply t;
        if (mc_parse(buf, head, 0, &t) != (ssize_t)head
            || !mc_is_error(t.kind)) {
            return MC_EPROTO;
        }
        w->kind = t.kind == MC_ERROR          ? MC_META_ERROR
                  : t.kind == MC_CLIENT_ERROR ? MC_META_CLIENT_ERROR
                                              : MC_META_SERVER_ERROR;
        w->text = t.text;
        w->text_len = t.text_len;
        return (ssize_t)head;
    }
    if (has_prefix(line, n, "ME ")) {
        const char *sp = memchr(line + 3, ' ', n - 3);
        if (sp == NULL) {
            return MC_EPROTO;
        }
        w->kind = MC_META_ME;
        w->key = line + 3;
        w->key_len = (size_t)(sp - w->key);
        w->text = sp + 1;
        w->text_len = n - (size_t)(w->text - line);
        if (!key_ok(w->key, w->key_len) || w->text_len == 0
            || memchr(w->text, '\r', w->text_len) != NULL) {
            return MC_EPROTO;
        }
        return (ssize_t)head;
    }

    /* split on every space: an empty token is a double, leading or
     * trailing space */
    const char *tok[MAX_TOKENS];
    size_t tlen[MAX_TOKENS];
    size_t nt = 0;
    for (size_t i = 0;;) {
        size_t s = i;
        while (i < n && line[i] != ' ') {
            i++;
        }
        if (nt == MAX_TOKENS || i == s) {
            return MC_EPROTO;   /* no flag may repeat: never this many */
        }
        tok[nt] = line + s;
        tlen[nt] = i - s;
        nt++;
        if (i == n) {
            break;
        }
        i++;
    }
    if (tlen[0] != 2) {
        return MC_EPROTO;
    }
    static const struct {
        const char *code;
        enum mc_meta_kind kind;
    } codes[] = {
        {"VA", MC_META_VA}, {"HD", MC_META_HD}, {"NF", MC_META_NF},
        {"NS", MC_META_NS}, {"EX", MC_META_EX}, {"EN", MC_META_EN},
        {"MN", MC_META_MN},
    };
    size_t c = 0;
    while (c < sizeof codes / sizeof codes[0]
           && memcmp(tok[0], codes[c].code, 2) != 0) {
        c++;
    }
    if (c == sizeof codes / sizeof codes[0]) {
        return MC_EPROTO;
    }
    w->kind = codes[c].kind;
    if (w->kind == MC_META_MN) {
        return nt == 1 ? (ssize_t)head : MC_EPROTO;
    }
    size_t from = 1;
    uint64_t size = 0;
    if (w->kind == MC_META_VA) {
        uint64_t limit = max_value < UINT32_MAX ? max_value : UINT32_MAX;
        if (nt < 2 || !decimal(tok[1], tlen[1], limit, &size)) {
            return MC_EPROTO;
        }
        from = 2;
    }
    if (!ref_flags(tok, tlen, from, nt, w)) {
        return MC_EPROTO;
    }
    if (w->kind != MC_META_VA) {
        return (ssize_t)head;
    }
    w->value_len = (size_t)size;
    size_t frame = head + w->value_len + 2;
    if (len < frame) {
        w->need = frame;
        return MC_NEED_MORE;
    }
    if (buf[frame - 2] != '\r' || buf[frame - 1] != '\n') {
        return MC_EPROTO;
    }
    w->value = buf + head;
    return (ssize_t)frame;
}

/* ------------------------------------------------------------------------ */
/* Comparing outcomes                                                        */

/* A frame with its pointers turned into offsets from the stream start. */
struct frame {
    size_t off, len;
    enum mc_meta_kind kind;
    uint32_t has;
    uint32_t client_flags, size, last_access;
    bool hit;
    int64_t ttl;
    uint64_t cas, opaque_num;
    size_t opaque_off, opaque_len, key_off, key_len, value_off, value_len;
    size_t text_off, text_len;
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

/* The frame r describes (rc bytes of buf), checked against the reference
 * reading w, with offsets relative to stream_off. */
static struct frame
to_frame(const char *buf, ssize_t rc, const struct mc_meta_reply *r,
         const struct mc_meta_reply *w, size_t stream_off)
{
    struct frame f;
    memset(&f, 0, sizeof f);
    size_t len = (size_t)rc;
    REQUIRE(len >= 4 && buf[len - 2] == '\r' && buf[len - 1] == '\n');
    REQUIRE(r->kind == w->kind);
    f.off = stream_off;
    f.len = len;
    f.kind = r->kind;
    if (mc_meta_is_error(r->kind) || r->kind == MC_META_ME) {
        REQUIRE(ptr_inside(r->text, r->text_len, buf, len - 2));
        REQUIRE(r->text == w->text && r->text_len == w->text_len);
        f.text_off = off_of(r->text, r->text_len, buf, stream_off);
        f.text_len = r->text_len;
        if (r->kind == MC_META_ME) {
            REQUIRE(ptr_inside(r->key, r->key_len, buf, len - 2));
            REQUIRE(r->key == w->key && r->key_len == w->key_len);
            f.key_off = off_of(r->key, r->key_len, buf, stream_off);
            f.key_len = r->key_len;
            REQUIRE(r->has == 0);
        }
        return f;
    }
    REQUIRE(r->has == w->has);
    f.has = r->has;
    if (r->has & MC_RF_FLAGS) {
        REQUIRE(r->client_flags == w->client_flags);
        f.client_flags = r->client_flags;
    }
    if (r->has & MC_RF_SIZE) {
        REQUIRE(r->size == w->size);
        f.size = r->size;
    }
    if (r->has & MC_RF_ACCESS) {
        REQUIRE(r->last_access == w->last_access);
        f.last_access = r->last_access;
    }
    if (r->has & MC_RF_HIT) {
        REQUIRE(r->hit == w->hit);
        f.hit = r->hit;
    }
    if (r->has & MC_RF_TTL) {
        REQUIRE(r->ttl == w->ttl && r->ttl >= -1);
        f.ttl = r->ttl;
    }
    if (r->has & MC_RF_CAS) {
        REQUIRE(r->cas == w->cas);
        f.cas = r->cas;
    }
    if (r->has & MC_RF_OPAQUE) {
        REQUIRE(r->opaque == w->opaque && r->opaque_len == w->opaque_len);
        REQUIRE(ptr_inside(r->opaque, r->opaque_len, buf, len - 2));
        REQUIRE(r->opaque_len <= MC_META_MAX_OPAQUE);
        f.opaque_off = off_of(r->opaque, r->opaque_len, buf, stream_off);
        f.opaque_len = r->opaque_len;
    }
    if (r->has & MC_RF_OPAQUE_NUM) {
        REQUIRE(r->has & MC_RF_OPAQUE);
        REQUIRE(r->opaque_num == w->opaque_num);
        f.opaque_num = r->opaque_num;
    }
    if (r->has & MC_RF_KEY) {
        REQUIRE(r->key == w->key && r->key_len == w->key_len);
        REQUIRE(ptr_inside(r->key, r->key_len, buf, len - 2));
        if (r->has & MC_RF_BASE64) {
            unsigned char raw[MC_MAX_KEY];
            REQUIRE(mc_b64_decode(raw, r->key, r->key_len) > 0);
        }
        else {
            REQUIRE(mc_key_check(r->key, r->key_len) == MC_KEY_OK);
        }
        f.key_off = off_of(r->key, r->key_len, buf, stream_off);
        f.key_len = r->key_len;
    }
    REQUIRE(!(r->has & MC_RF_BASE64) || (r->has & MC_RF_KEY));
    if (r->kind == MC_META_VA) {
        REQUIRE(r->value_len == w->value_len);
        REQUIRE(r->value_len == 0 || r->value == w->value);
        REQUIRE(ptr_inside(r->value, r->value_len, buf, len - 2));
        const char *lf = memchr(buf, '\n', len);
        REQUIRE(lf != NULL
                && (size_t)(lf - buf) + 1 + r->value_len + 2 == len);
        f.value_off = off_of(r->value, r->value_len, buf, stream_off);
        f.value_len = r->value_len;
    }
    else {
        REQUIRE(memchr(buf, '\n', len) == buf + len - 1);
    }
    return f;
}

static bool
same_frame(const struct frame *a, const struct frame *b)
{
    return a->off == b->off && a->len == b->len && a->kind == b->kind
           && a->has == b->has && a->client_flags == b->client_flags
           && a->size == b->size && a->last_access == b->last_access
           && a->hit == b->hit && a->ttl == b->ttl && a->cas == b->cas
           && a->opaque_num == b->opaque_num
           && a->opaque_off == b->opaque_off
           && a->opaque_len == b->opaque_len && a->key_off == b->key_off
           && a->key_len == b->key_len && a->value_off == b->value_off
           && a->value_len == b->value_len && a->text_off == b->text_off
           && a->text_len == b->text_len;
}

/* Parses buf[0, n) with both readings and requires them to agree. */
static ssize_t
parse_both(const char *buf, size_t n, size_t max_value,
           struct mc_meta_reply *r, struct mc_meta_reply *w)
{
    memset(r, 0xa5, sizeof *r);
    ssize_t rc = mc_meta_parse(buf, n, max_value, r);
    ssize_t want = ref_parse(buf, n, max_value, w);
    REQUIRE(rc == want);
    REQUIRE(rc == MC_NEED_MORE || rc == MC_EPROTO || rc > 0);
    if (rc == MC_NEED_MORE) {
        REQUIRE(r->need == w->need);
        REQUIRE(r->need == 0 || r->need > n);
    }
    if (rc > 0) {
        REQUIRE((size_t)rc <= n);
    }
    return rc;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    fuzz_b64(data + 1, size - 1);

    size_t max_value = max_values[data[0] & 7];
    size_t max_chunk = max_chunks[(data[0] >> 3) & 7];
    const char *stream = (const char *)data + 1;
    size_t n = size - 1;
    char *stretched = NULL;
    if ((data[0] & 0x40) && n > 0) {
        stretched = malloc(n + 8192);
        REQUIRE(stretched != NULL);
        memcpy(stretched, stream, n);
        memset(stretched + n, stream[n - 1], 8192);
        stream = stretched;
        n += 8192;
    }

    /* Whole: frame after frame over the exact input. */
    size_t cap = n / 4 + 2;
    struct frame *frames = malloc(cap * sizeof *frames);
    REQUIRE(frames != NULL);
    size_t nf = 0, pos = 0, end_need = 0;
    ssize_t end_rc;
    for (;;) {
        struct mc_meta_reply r, w;
        ssize_t rc = parse_both(stream + pos, n - pos, max_value, &r, &w);
        if (rc > 0) {
            REQUIRE(nf < cap);
            frames[nf++] = to_frame(stream + pos, rc, &r, &w, pos);
            if (r.kind == MC_META_VA && r.value_len > 0) {
                /* the size bound is exact */
                struct mc_meta_reply r2;
                REQUIRE(mc_meta_parse(stream + pos, n - pos, r.value_len,
                                      &r2) == rc);
                REQUIRE(mc_meta_parse(stream + pos, n - pos,
                                      r.value_len - 1, &r2) == MC_EPROTO);
            }
            pos += (size_t)rc;
            continue;
        }
        end_rc = rc;
        end_need = r.need;
        break;
    }

    /* Chunked: as read from a socket, consuming frames as they complete. */
    uint64_t seed = hash_bytes(data, size) ^ ((uint64_t)data[0] << 56) ^ 1;
    size_t avail = 0, fi = 0, awaited = 0;
    pos = 0;
    for (;;) {
        if (avail < n) {
            size_t chunk = 1 + (size_t)(next_rand(&seed)
                                        % (stretched ? 64 * max_chunk
                                                     : max_chunk));
            avail = chunk < n - avail ? avail + chunk : n;
        }
        ssize_t rc;
        struct mc_meta_reply r, w;
        for (;;) {
            size_t have = avail - pos;
            char *b = malloc(have ? have : 1);
            REQUIRE(b != NULL);
            if (have) {
                memcpy(b, stream + pos, have);
            }
            rc = parse_both(b, have, max_value, &r, &w);
            if (rc > 0) {
                struct frame f = to_frame(b, rc, &r, &w, pos);
                REQUIRE(fi < nf && same_frame(&f, &frames[fi]));
                REQUIRE(awaited == 0 || awaited == (size_t)rc);
                fi++;
                pos += (size_t)rc;
                awaited = 0;
                free(b);
                continue;
            }
            if (rc == MC_NEED_MORE) {
                REQUIRE(awaited == 0 || r.need == awaited);
                awaited = r.need;
            }
            free(b);
            break;
        }
        if (rc == MC_EPROTO) {
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
