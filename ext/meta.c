/* The meta protocol's grammar: format mg/ms/md/ma/mn/me request lines,
 * parse their reply frames, base64 for binary keys.  Pure: see meta.h. */
#include "meta.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Base64                                                                    */

static const char b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of a base64 character, or 64 for any other byte. */
static unsigned
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return 64;
}

size_t
mc_b64_encode(char *out, const void *in, size_t len)
{
    const unsigned char *p = in;
    size_t n = 0, i = 0;
    for (; len - i >= 3; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[n++] = b64_alphabet[v >> 18];
        out[n++] = b64_alphabet[(v >> 12) & 63];
        out[n++] = b64_alphabet[(v >> 6) & 63];
        out[n++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        out[n++] = b64_alphabet[p[i] >> 2];
        out[n++] = b64_alphabet[(p[i] & 3) << 4];
        out[n++] = '=';
        out[n++] = '=';
    }
    else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 8 | p[i + 1];
        out[n++] = b64_alphabet[v >> 10];
        out[n++] = b64_alphabet[(v >> 4) & 63];
        out[n++] = b64_alphabet[(v & 15) << 2];
        out[n++] = '=';
    }
    return n;
}

ssize_t
mc_b64_decode(void *out, const char *in, size_t len)
{
    const unsigned char *s = (const unsigned char *)in;
    unsigned char *o = out;
    if (len % 4 != 0) {
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        unsigned a = b64_value(s[i]), b = b64_value(s[i + 1]);
        unsigned c = b64_value(s[i + 2]), d = b64_value(s[i + 3]);
        if (a > 63 || b > 63) {
            return -1;
        }
        size_t bytes = 3;
        if (i + 4 == len && s[i + 3] == '=') {
            if (s[i + 2] == '=') {
                /* one byte: b's low 4 bits are cut off and must be 0 */
                if (b & 15) {
                    return -1;
                }
                bytes = 1;
                c = d = 0;
            }
            else {
                if (c > 63 || (c & 3)) {
                    return -1;
                }
                bytes = 2;
                d = 0;
            }
        }
        else if (c > 63 || d > 63) {
            return -1;
        }
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        if (o != NULL) {
            o[n] = (unsigned char)(v >> 16);
            if (bytes > 1) {
                o[n + 1] = (unsigned char)(v >> 8);
            }
            if (bytes > 2) {
                o[n + 2] = (unsigned char)v;
            }
        }
        n += bytes;
    }
    return (ssize_t)n;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */

#define MF_ALL_KEYED (MC_MF_BASE64 | MC_MF_RET_KEY | MC_MF_OPAQUE \
                      | MC_MF_QUIET)

static const uint32_t allowed_flags[] = {
    [MC_META_GET] = MF_ALL_KEYED | MC_MF_VALUE | MC_MF_RET_FLAGS
                    | MC_MF_RET_CAS | MC_MF_RET_TTL | MC_MF_RET_SIZE
                    | MC_MF_RET_ACCESS | MC_MF_RET_HIT | MC_MF_NO_BUMP
                    | MC_MF_VIVIFY | MC_MF_RECACHE | MC_MF_TTL,
    [MC_META_SET] = MF_ALL_KEYED | MC_MF_RET_CAS | MC_MF_TTL
                    | MC_MF_COMPARE_CAS | MC_MF_CLIENT_FLAGS
                    | MC_MF_INVALIDATE | MC_MF_MODE,
    [MC_META_DELETE] = MF_ALL_KEYED | MC_MF_TTL | MC_MF_COMPARE_CAS
                       | MC_MF_INVALIDATE,
    [MC_META_ARITH] = MF_ALL_KEYED | MC_MF_VALUE | MC_MF_RET_CAS
                      | MC_MF_RET_TTL | MC_MF_VIVIFY | MC_MF_TTL
                      | MC_MF_COMPARE_CAS | MC_MF_MODE | MC_MF_INITIAL
                      | MC_MF_DELTA,
    [MC_META_NOOP] = 0,
    [MC_META_DEBUG] = MC_MF_BASE64,
};

static const char cmd_names[][3] = {
    [MC_META_GET] = "mg", [MC_META_SET] = "ms", [MC_META_DELETE] = "md",
    [MC_META_ARITH] = "ma", [MC_META_NOOP] = "mn", [MC_META_DEBUG] = "me",
};

static bool
mode_ok(enum mc_meta_cmd cmd, enum mc_meta_mode mode)
{
    if (cmd == MC_META_SET) {
        return mode == MC_MODE_ADD || mode == MC_MODE_APPEND
               || mode == MC_MODE_PREPEND || mode == MC_MODE_REPLACE
               || mode == MC_MODE_SET;
    }
    return mode == MC_MODE_INCR || mode == MC_MODE_DECR;
}

/* 0, or the mc_meta_fmt_error for q's text key. */
static ssize_t
key_error(const struct mc_meta_request *q)
{
    switch (mc_key_check(q->key, q->key_len)) {
    case MC_KEY_OK:
        return 0;
    case MC_KEY_EMPTY:
        return MC_META_EKEY_EMPTY;
    case MC_KEY_TOO_LONG:
        return MC_META_EKEY_TOO_LONG;
    default:
        return MC_META_EKEY_BAD_CHAR;
    }
}

/* Checks everything mc_meta_fmt() needs; 0 or an mc_meta_fmt_error. */
static ssize_t
check_request(const struct mc_meta_request *q)
{
    if ((unsigned)q->cmd > MC_META_DEBUG) {
        return MC_META_ECMD;
    }
    uint32_t f = q->flags;
    if (f & ~allowed_flags[q->cmd]) {
        return MC_META_EFLAG;
    }
    if (q->cmd == MC_META_SET ? q->value_len > MC_META_MAX_VALUE
                              : q->value_len != 0) {
        return MC_META_EVALUE_LEN;
    }
    if (q->cmd == MC_META_NOOP) {
        return q->key_len != 0 ? MC_META_EKEY_GIVEN : 0;
    }
    if (f & MC_MF_BASE64) {
        if (q->key_len == 0) {
            return MC_META_EKEY_EMPTY;
        }
        if (q->key_len > MC_META_MAX_B64_KEY) {
            return MC_META_EKEY_TOO_LONG;
        }
    }
    else {
        ssize_t err = key_error(q);
        if (err != 0) {
            return err;
        }
    }
    if ((q->cmd == MC_META_SET && (f & MC_MF_INVALIDATE)
         && !(f & MC_MF_COMPARE_CAS))
        || (q->cmd == MC_META_DELETE && (f & MC_MF_TTL)
            && !(f & MC_MF_INVALIDATE))
        || ((f & MC_MF_INITIAL) && !(f & MC_MF_VIVIFY))) {
        return MC_META_EDEPENDS;
    }
    if (q->cmd == MC_META_GET && (f & MC_MF_BASE64)
        && (f & MC_MF_RET_KEY)) {
        return MC_META_ECONFLICT;
    }
    if ((f & MC_MF_MODE) && !mode_ok(q->cmd, q->mode)) {
        return MC_META_EMODE;
    }
    return 0;
}

/* " <letter>" */
static size_t
put_flag(char *out, char letter)
{
    out[0] = ' ';
    out[1] = letter;
    return 2;
}

ssize_t
mc_meta_fmt(char *out, const struct mc_meta_request *q)
{
    if (q->cmd == MC_META_GET && q->flags == MC_MF_VALUE) {
        /* the most frequent request, "mg <key> v": its key is all there
         * is to check */
        ssize_t err = key_error(q);
        if (err != 0) {
            return err;
        }
        memcpy(out, "mg ", 3);
        memcpy(out + 3, q->key, q->key_len);
        memcpy(out + 3 + q->key_len, " v\r\n", 4);
        return (ssize_t)(q->key_len + 7);
    }
    ssize_t err = check_request(q);
    if (err != 0) {
        return err;
    }
    uint32_t f = q->flags;
    memcpy(out, cmd_names[q->cmd], 2);
    size_t n = 2;
    if (q->cmd != MC_META_NOOP) {
        out[n++] = ' ';
        if (f & MC_MF_BASE64) {
            n += mc_b64_encode(out + n, q->key, q->key_len);
        }
        else {
            memcpy(out + n, q->key, q->key_len);
            n += q->key_len;
        }
    }
    if (q->cmd == MC_META_SET) {
        out[n++] = ' ';
        n += mc_fmt_u64(out + n, q->value_len);
    }
    if (f & MC_MF_BASE64) {
        n += put_flag(out + n, 'b');
    }
    /* modifiers with tokens, in the order the server applies them */
    if (f & MC_MF_RECACHE) {
        n += put_flag(out + n, 'R');
        n += mc_fmt_i64(out + n, q->recache_ttl);
    }
    if (f & MC_MF_TTL) {
        n += put_flag(out + n, 'T');
        n += mc_fmt_i64(out + n, q->ttl);
    }
    if (f & MC_MF_VIVIFY) {
        n += put_flag(out + n, 'N');
        n += mc_fmt_i64(out + n, q->vivify_ttl);
    }
    if (f & MC_MF_COMPARE_CAS) {
        n += put_flag(out + n, 'C');
        n += mc_fmt_u64(out + n, q->cas);
    }
    if (f & MC_MF_CLIENT_FLAGS) {
        n += put_flag(out + n, 'F');
        n += mc_fmt_u64(out + n, q->client_flags);
    }
    if (f & MC_MF_INVALIDATE) {
        n += put_flag(out + n, 'I');
    }
    if (f & MC_MF_MODE) {
        n += put_flag(out + n, 'M');
        out[n++] = (char)q->mode;
    }
    if (f & MC_MF_INITIAL) {
        n += put_flag(out + n, 'J');
        n += mc_fmt_u64(out + n, q->initial);
    }
    if (f & MC_MF_DELTA) {
        n += put_flag(out + n, 'D');
        n += mc_fmt_u64(out + n, q->delta);
    }
    /* return flags, in the order the reply lists them */
    static const struct {
        uint32_t bit;
        char letter;
    } returns[] = {
        {MC_MF_VALUE, 'v'}, {MC_MF_RET_FLAGS, 'f'}, {MC_MF_RET_CAS, 'c'},
        {MC_MF_RET_TTL, 't'}, {MC_MF_RET_SIZE, 's'}, {MC_MF_RET_KEY, 'k'},
        {MC_MF_RET_ACCESS, 'l'}, {MC_MF_RET_HIT, 'h'},
    };
    for (size_t i = 0; i < sizeof returns / sizeof returns[0]; i++) {
        if (f & returns[i].bit) {
            n += put_flag(out + n, returns[i].letter);
        }
    }
    if (f & MC_MF_OPAQUE) {
        n += put_flag(out + n, 'O');
        n += mc_fmt_u64(out + n, q->opaque);
    }
    if (f & MC_MF_QUIET) {
        n += put_flag(out + n, 'q');
    }
    if (f & MC_MF_NO_BUMP) {
        n += put_flag(out + n, 'u');
    }
    out[n++] = '\r';
    out[n++] = '\n';
    return (ssize_t)n;
}

const char *
mc_meta_fmt_strerror(ssize_t err)
{
    switch (err) {
    case MC_META_ECMD:
        return "unknown meta command";
    case MC_META_EKEY_EMPTY:
        return "empty key";
    case MC_META_EKEY_TOO_LONG:
        return "key too long";
    case MC_META_EKEY_BAD_CHAR:
        return "key contains a control character or space";
    case MC_META_EKEY_GIVEN:
        return "mn takes no key";
    case MC_META_EFLAG:
        return "flag not taken by this command";
    case MC_META_EDEPENDS:
        return "flag needs another one (ms I needs C, md T needs I, "
               "ma J needs N)";
    case MC_META_ECONFLICT:
        return "mg cannot return the key of a base64 key";
    case MC_META_EMODE:
        return "mode not valid for this command";
    case MC_META_EVALUE_LEN:
        return "value length not valid for this command";
    default:
        return "unknown error";
    }
}

/* ------------------------------------------------------------------------ */
/* Replies                                                                   */

/* A decimal of 1..20 digits, no sign, at most max.  0 or -1. */
static int
parse_u64(const char *p, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 20) {
        return -1;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    if (v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Bytes allowed in a key or opaque token: none <= 0x20, no 0x7f. */
static bool
token_chars(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

static int
flag_u32(const char *tok, size_t len, uint32_t *out)
{
    uint64_t v;
    if (parse_u64(tok, len, UINT32_MAX, &v) < 0) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* One flag token (letter and argument).  0 or -1. */
static int
parse_flag(const char *tok, size_t len, struct mc_meta_reply *r)
{
    const char *arg = tok + 1;
    size_t arg_len = len - 1;
    uint32_t bit;
    uint64_t v;
    switch (tok[0]) {
    case 'f':
        bit = MC_RF_FLAGS;
        if (flag_u32(arg, arg_len, &r->client_flags) < 0) {
            return -1;
        }
        break;
    case 'c':
        bit = MC_RF_CAS;
        if (parse_u64(arg, arg_len, UINT64_MAX, &r->cas) < 0) {
            return -1;
        }
        break;
    case 't':
        bit = MC_RF_TTL;
        if (arg_len == 2 && arg[0] == '-' && arg[1] == '1') {
            r->ttl = -1;
        }
        else if (parse_u64(arg, arg_len, UINT32_MAX, &v) == 0) {
            r->ttl = (int64_t)v;
        }
        else {
            return -1;
        }
        break;
    case 's':
        bit = MC_RF_SIZE;
        if (flag_u32(arg, arg_len, &r->size) < 0) {
            return -1;
        }
        break;
    case 'l':
        bit = MC_RF_ACCESS;
        if (flag_u32(arg, arg_len, &r->last_access) < 0) {
            return -1;
        }
        break;
    case 'h':
        bit = MC_RF_HIT;
        if (arg_len != 1 || (arg[0] != '0' && arg[0] != '1')) {
            return -1;
        }
        r->hit = arg[0] == '1';
        break;
    case 'k':
        bit = MC_RF_KEY;
        /* the key's bytes are checked once b is known */
        r->key = arg;
        r->key_len = arg_len;
        break;
    case 'O':
        bit = MC_RF_OPAQUE;
        if (arg_len > MC_META_MAX_OPAQUE || !token_chars(arg, arg_len)) {
            return -1;
        }
        r->opaque = arg;
        r->opaque_len = arg_len;
        /* a number only when written canonically, so text and number
         * say the same */
        if ((arg_len == 1 || (arg_len > 1 && arg[0] != '0'))
            && parse_u64(arg, arg_len, UINT64_MAX, &r->opaque_num) == 0) {
            r->has |= MC_RF_OPAQUE_NUM;
        }
        break;
    case 'b':
    case 'W':
    case 'X':
    case 'Z':
        if (arg_len != 0) {
            return -1;
        }
        bit = tok[0] == 'b'   ? MC_RF_BASE64
              : tok[0] == 'W' ? MC_RF_WIN
              : tok[0] == 'X' ? MC_RF_STALE
                              : MC_RF_WON;
        break;
    default:
        return -1;
    }
    if (r->has & bit) {
        return -1;              /* the same flag twice */
    }
    r->has |= bit;
    return 0;
}

/* The flags of line[pos, len): each after exactly one space.  0 or -1. */
static int
parse_flags(const char *line, size_t len, size_t pos, struct mc_meta_reply *r)
{
    r->has = 0;
    while (pos < len) {
        if (line[pos] != ' ') {
            return -1;
        }
        size_t start = ++pos;
        const char *sp = memchr(line + start, ' ', len - start);
        pos = sp ? (size_t)(sp - line) : len;
        if (pos == start || parse_flag(line + start, pos - start, r) < 0) {
            return -1;          /* empty token: two spaces or a trailing one */
        }
    }
    if (r->has & MC_RF_BASE64) {
        if (!(r->has & MC_RF_KEY) || r->key_len > MC_MAX_KEY
            || r->key_len == 0
            || mc_b64_decode(NULL, r->key, r->key_len) < 0) {
            return -1;
        }
    }
    else if ((r->has & MC_RF_KEY)
             && mc_key_check(r->key, r->key_len) != MC_KEY_OK) {
        return -1;
    }
    return 0;
}

static bool
code_is(const char *line, char a, char b)
{
    return line[0] == a && line[1] == b;
}

static bool
starts_with(const char *line, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && memcmp(line, word, n) == 0;
}

/* The three error lines, read by mc_parse() so both grammars agree. */
static ssize_t
parse_error_line(const char *buf, size_t head, struct mc_meta_reply *r)
{
    struct mc_reply t;
    if (mc_parse(buf, head, 0, &t) != (ssize_t)head || !mc_is_error(t.kind)) {
        return MC_EPROTO;
    }
    r->kind = t.kind == MC_ERROR          ? MC_META_ERROR
              : t.kind == MC_CLIENT_ERROR ? MC_META_CLIENT_ERROR
                                          : MC_META_SERVER_ERROR;
    r->has = 0;
    r->text = t.text;
    r->text_len = t.text_len;
    return (ssize_t)head;
}

static ssize_t
parse_va(const char *buf, size_t len, size_t line_len, size_t head,
         size_t max_value, struct mc_meta_reply *r)
{
    /* "VA " size [flags] */
    if (line_len < 4 || buf[2] != ' ') {
        return MC_EPROTO;
    }
    const char *sp = memchr(buf + 3, ' ', line_len - 3);
    size_t end = sp ? (size_t)(sp - buf) : line_len;
    uint64_t limit = max_value < UINT32_MAX ? max_value : UINT32_MAX;
    uint64_t size;
    if (parse_u64(buf + 3, end - 3, limit, &size) < 0
        || parse_flags(buf, line_len, end, r) < 0) {
        return MC_EPROTO;
    }
    r->value_len = (size_t)size;
    size_t frame = head + r->value_len + 2;
    if (len < frame) {
        r->need = frame;
        return MC_NEED_MORE;
    }
    if (buf[frame - 2] != '\r' || buf[frame - 1] != '\n') {
        return MC_EPROTO;
    }
    r->value = buf + head;
    r->kind = MC_META_VA;
    return (ssize_t)frame;
}

static ssize_t
parse_me(const char *buf, size_t line_len, size_t head,
         struct mc_meta_reply *r)
{
    /* "ME " key " " text */
    if (line_len < 3 || buf[2] != ' ') {
        return MC_EPROTO;
    }
    const char *sp = memchr(buf + 3, ' ', line_len - 3);
    if (sp == NULL) {
        return MC_EPROTO;
    }
    size_t key_len = (size_t)(sp - buf) - 3;
    size_t text = (size_t)(sp - buf) + 1;
    if (mc_key_check(buf + 3, key_len) != MC_KEY_OK || text == line_len
        || memchr(buf + text, '\r', line_len - text) != NULL) {
        return MC_EPROTO;
    }
    r->kind = MC_META_ME;
    r->has = 0;
    r->key = buf + 3;
    r->key_len = key_len;
    r->text = buf + text;
    r->text_len = line_len - text;
    return (ssize_t)head;
}

ssize_t
mc_meta_parse(const char *buf, size_t len, size_t max_value,
              struct mc_meta_reply *r)
{
    r->need = 0;
    if (len == 0) {
        return MC_NEED_MORE;
    }
    size_t scan = len < MC_MAX_LINE ? len : MC_MAX_LINE;
    const char *nl = memchr(buf, '\n', scan);
    if (nl == NULL) {
        if (len >= MC_MAX_LINE) {
            return MC_EPROTO;
        }
        /* A bare CR followed by anything but LF can never become a line. */
        const char *cr = memchr(buf, '\r', len);
        if (cr != NULL && cr + 1 < buf + len) {
            return MC_EPROTO;
        }
        return MC_NEED_MORE;
    }
    size_t line_len = (size_t)(nl - buf);
    if (line_len < 3 || buf[line_len - 1] != '\r') {
        return MC_EPROTO;       /* shorter than a code and CR, or bare LF */
    }
    line_len--;
    size_t head = line_len + 2;

    if (code_is(buf, 'V', 'A')) {
        return parse_va(buf, len, line_len, head, max_value, r);
    }
    enum mc_meta_kind kind;
    if (code_is(buf, 'H', 'D')) {
        kind = MC_META_HD;
    }
    else if (code_is(buf, 'E', 'N')) {
        kind = MC_META_EN;
    }
    else if (code_is(buf, 'N', 'F')) {
        kind = MC_META_NF;
    }
    else if (code_is(buf, 'N', 'S')) {
        kind = MC_META_NS;
    }
    else if (code_is(buf, 'E', 'X')) {
        kind = MC_META_EX;
    }
    else if (code_is(buf, 'M', 'N')) {
        if (line_len != 2) {
            return MC_EPROTO;
        }
        r->kind = MC_META_MN;
        r->has = 0;
        return (ssize_t)head;
    }
    else if (code_is(buf, 'M', 'E')) {
        return parse_me(buf, line_len, head, r);
    }
    else if (starts_with(buf, line_len, "ERROR")
             || starts_with(buf, line_len, "CLIENT_ERROR")
             || starts_with(buf, line_len, "SERVER_ERROR")) {
        return parse_error_line(buf, head, r);
    }
    else {
        return MC_EPROTO;
    }
    if (parse_flags(buf, line_len, 2, r) < 0) {
        return MC_EPROTO;
    }
    r->kind = kind;
    return (ssize_t)head;
}

/* ---- meta replies read as text ones ---------------------------------- */

int
mc_meta_as_text(enum mc_meta_as as, const struct mc_meta_reply *m,
                struct mc_reply *out)
{
    memset(out, 0, sizeof(*out));
    switch (as) {
    case MC_AS_GET:
        if (m->kind == MC_META_EN) {
            return 0;
        }
        if (m->kind != MC_META_VA || !(m->has & MC_RF_FLAGS)) {
            return -1;
        }
        out->kind = MC_VALUE;
        out->value = m->value;
        out->value_len = m->value_len;
        out->flags = m->client_flags;
        out->cas = m->cas;
        out->has_cas = (m->has & MC_RF_CAS) != 0;
        return 1;
    case MC_AS_TOUCH:
        out->kind = m->kind == MC_META_HD   ? MC_TOUCHED
                    : m->kind == MC_META_EN ? MC_NOT_FOUND
                                            : MC_END;
        return out->kind == MC_END ? -1 : 1;
    case MC_AS_STORE:
        out->kind = m->kind == MC_META_HD   ? MC_STORED
                    : m->kind == MC_META_NS ? MC_NOT_STORED
                    : m->kind == MC_META_EX ? MC_EXISTS
                    : m->kind == MC_META_NF ? MC_NOT_FOUND
                                            : MC_END;
        return out->kind == MC_END ? -1 : 1;
    case MC_AS_DELETE:
        out->kind = m->kind == MC_META_HD   ? MC_DELETED
                    : m->kind == MC_META_NF ? MC_NOT_FOUND
                                            : MC_END;
        return out->kind == MC_END ? -1 : 1;
    case MC_AS_ARITH:
        if (m->kind == MC_META_NF) {
            out->kind = MC_NOT_FOUND;
            return 1;
        }
        if (m->kind != MC_META_VA || m->value_len == 0
            || m->value_len > 20) {
            return -1;
        }
        for (size_t i = 0; i < m->value_len; i++) {
            unsigned d = (unsigned char)m->value[i] - '0';
            if (d > 9 || out->number > (UINT64_MAX - d) / 10) {
                return -1;
            }
            out->number = out->number * 10 + d;
        }
        out->kind = MC_NUMBER;
        return 1;
    case MC_AS_NONE:
        break;
    }
    return -1;
}
