#include "proto.h"

#include <string.h>

/* Parses an unsigned decimal of 1..20 digits, no sign, no spaces, that is at
 * most max.  Returns 0 or -1. */
static int
parse_u64(const char *p, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 20) {
        return -1;
    }
    uint64_t v = 0;
    size_t i = 0;
    /* 19 digits cannot overflow 64 bits; only a 20th needs the check. */
    for (size_t safe = len < 19 ? len : 19; i < safe; i++) {
        unsigned d = (unsigned char)p[i] - '0';
        if (d > 9) {
            return -1;
        }
        v = v * 10 + d;
    }
    if (i < len) {
        unsigned d = (unsigned char)p[i] - '0';
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

/* Splits off the next space-separated token of line[*pos, len).  Tokens are
 * separated by exactly one space and hold no byte <= 0x20.  Returns 0, or -1
 * when there is no token left, it is empty or it holds a control byte. */
static int
next_token(const char *line, size_t len, size_t *pos, const char **tok,
           size_t *tok_len)
{
    size_t i = *pos;
    if (i >= len) {
        return -1;
    }
    size_t start = i;
    while (i < len && (unsigned char)line[i] > 0x20) {
        i++;
    }
    if (i == start || (i < len && line[i] != ' ')) {
        return -1;              /* empty, or a control byte (CR, TAB, ...) */
    }
    *tok = line + start;
    *tok_len = i - start;
    if (i < len) {
        i++;                    /* the separator */
        if (i == len) {
            return -1;          /* trailing space */
        }
    }
    *pos = i;
    return 0;
}

static bool
word_is(const char *line, size_t len, const char *word, size_t word_len)
{
    return len == word_len && memcmp(line, word, word_len) == 0;
}

#define WORD_IS(line, len, lit) word_is((line), (len), (lit), sizeof(lit) - 1)

static bool
starts_with(const char *line, size_t len, const char *word, size_t word_len)
{
    return len >= word_len && memcmp(line, word, word_len) == 0;
}

#define STARTS_WITH(line, len, lit) \
    starts_with((line), (len), (lit), sizeof(lit) - 1)

/* Reads decimal digits at line[*pos], in one pass: 1..20 digits, at most
 * max, followed by the line's end or one space and more.  Returns 0 (pos
 * moved past the space) or -1. */
static inline int
scan_u64(const char *line, size_t line_len, size_t *pos, uint64_t max,
         uint64_t *out)
{
    size_t start = *pos, i = start;
    uint64_t v = 0;
    for (; i < line_len; i++) {
        unsigned d = (unsigned char)line[i] - '0';
        if (d > 9) {
            break;
        }
        if (i - start >= 19) {
            /* 19 digits cannot overflow; a 20th may, a 21st always does */
            if (i - start > 19 || v > (UINT64_MAX - d) / 10) {
                return -1;
            }
        }
        v = v * 10 + d;
    }
    if (i == start || v > max) {
        return -1;
    }
    if (i < line_len) {
        if (line[i] != ' ' || i + 1 == line_len) {
            return -1;          /* not a digit, or a trailing space */
        }
        i++;
    }
    *pos = i;
    *out = v;
    return 0;
}

/* Inlined into both its callers (VALUE, CONFIG): as a call it costs every
 * VALUE frame some 30 instructions. */
static MC_ALWAYS_INLINE ssize_t
parse_value(const char *buf, size_t len, const char *line, size_t line_len,
            size_t frame_head, size_t max_value, struct mc_reply *r)
{
    /* "VALUE " key SP flags SP bytes [SP cas], in one pass. */
    size_t i = 6, start = 6;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The key's end eight bytes at a time: the lowest byte <= 0x20 of a
     * word has the lowest bit of (w - 0x21..) & ~w & 0x80.. (no borrow
     * reaches it from the bytes below, all > 0x20). */
    while (i + 8 <= line_len) {
        uint64_t w = mc_load64((const unsigned char *)line + i);
        uint64_t low = (w - 0x2121212121212121ULL) & ~w
                       & 0x8080808080808080ULL;
        if (low != 0) {
            i += (size_t)__builtin_ctzll(low) / 8;
            break;
        }
        i += 8;
    }
#endif
    while (i < line_len && (unsigned char)line[i] > 0x20) {
        i++;
    }
    if (i == start || i - start > MC_MAX_KEY || i >= line_len
        || line[i] != ' ') {
        return MC_EPROTO;
    }
    r->key = line + start;
    r->key_len = i - start;
    size_t pos = i + 1;
    uint64_t n;
    if (pos >= line_len || scan_u64(line, line_len, &pos, UINT32_MAX, &n) < 0
        || pos >= line_len) {
        return MC_EPROTO;
    }
    r->flags = (uint32_t)n;
    uint64_t limit = max_value < UINT32_MAX ? max_value : UINT32_MAX;
    if (scan_u64(line, line_len, &pos, limit, &n) < 0) {
        return MC_EPROTO;
    }
    r->value_len = (size_t)n;
    r->has_cas = false;
    r->cas = 0;
    if (pos < line_len) {
        if (scan_u64(line, line_len, &pos, UINT64_MAX, &r->cas) < 0
            || pos < line_len) {
            return MC_EPROTO;
        }
        r->has_cas = true;
    }
    size_t frame = frame_head + r->value_len + 2;
    if (len < frame) {
        r->need = frame;
        return MC_NEED_MORE;
    }
    r->value = buf + frame_head;
    if (buf[frame - 2] != '\r' || buf[frame - 1] != '\n') {
        return MC_EPROTO;
    }
    r->kind = MC_VALUE;
    return (ssize_t)frame;
}

/* True when a line's free text holds no CR (a CR belongs only at the end). */
static bool
free_text(const char *text, size_t len)
{
    return memchr(text, '\r', len) == NULL;
}

/* The text after a keyword: empty, or one space and a non-empty rest. */
static int
rest_text(const char *line, size_t line_len, size_t word_len,
          struct mc_reply *r)
{
    if (line_len == word_len) {
        r->text = line + word_len;
        r->text_len = 0;
        return 0;
    }
    if (line[word_len] != ' ') {
        return -1;
    }
    r->text = line + word_len + 1;
    r->text_len = line_len - word_len - 1;
    return free_text(r->text, r->text_len) ? 0 : -1;
}

ssize_t
mc_parse(const char *buf, size_t len, size_t max_value, struct mc_reply *r)
{
    r->need = 0;
    if (len == 0) {
        return MC_NEED_MORE;
    }
    /* The two most frequent frames, without scanning for the line end. */
    if (len >= 5 && memcmp(buf, "END\r\n", 5) == 0) {
        r->kind = MC_END;
        return 5;
    }
    if (len >= 8 && memcmp(buf, "STORED\r\n", 8) == 0) {
        r->kind = MC_STORED;
        return 8;
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
    if (line_len == 0 || buf[line_len - 1] != '\r') {
        return MC_EPROTO;
    }
    line_len--;                 /* drop the CR */
    const char *line = buf;
    size_t head = line_len + 2;
    /* A CR inside the line: the fixed words and numbers below reject it by
     * their exact match; lines carrying free text check it (free_text). */

    switch (line[0]) {
    case 'V':
        if (STARTS_WITH(line, line_len, "VALUE ")) {
            return parse_value(buf, len, line, line_len, head, max_value, r);
        }
        if (STARTS_WITH(line, line_len, "VERSION ")
            && free_text(line, line_len)) {
            r->kind = MC_VERSION;
            r->text = line + 8;
            r->text_len = line_len - 8;
            return (ssize_t)head;
        }
        return MC_EPROTO;
    case 'E':
        if (WORD_IS(line, line_len, "END")) {
            r->kind = MC_END;
            return (ssize_t)head;
        }
        if (WORD_IS(line, line_len, "EXISTS")) {
            r->kind = MC_EXISTS;
            return (ssize_t)head;
        }
        if (STARTS_WITH(line, line_len, "ERROR")) {
            /* "ERROR: shutdown not enabled" has a colon, like SERVER_ERROR */
            size_t word = line_len > 5 && line[5] == ':' ? 6 : 5;
            if (rest_text(line, line_len, word, r) < 0) {
                return MC_EPROTO;
            }
            r->kind = MC_ERROR;
            return (ssize_t)head;
        }
        return MC_EPROTO;
    case 'S':
        if (WORD_IS(line, line_len, "STORED")) {
            r->kind = MC_STORED;
            return (ssize_t)head;
        }
        if (STARTS_WITH(line, line_len, "STAT ") && free_text(line, line_len)) {
            size_t pos = 5;
            const char *tok;
            size_t tok_len;
            if (next_token(line, line_len, &pos, &tok, &tok_len) < 0) {
                return MC_EPROTO;
            }
            r->kind = MC_STAT;
            r->key = tok;
            r->key_len = tok_len;
            r->text = line + pos;
            r->text_len = line_len - pos;
            return (ssize_t)head;
        }
        if (STARTS_WITH(line, line_len, "SERVER_ERROR")) {
            size_t word = 12;
            if (line_len > word && line[word] == ':') {
                word++;
            }
            if (rest_text(line, line_len, word, r) < 0) {
                return MC_EPROTO;
            }
            r->kind = MC_SERVER_ERROR;
            return (ssize_t)head;
        }
        return MC_EPROTO;
    case 'N':
        if (WORD_IS(line, line_len, "NOT_FOUND")) {
            r->kind = MC_NOT_FOUND;
            return (ssize_t)head;
        }
        if (WORD_IS(line, line_len, "NOT_STORED")) {
            r->kind = MC_NOT_STORED;
            return (ssize_t)head;
        }
        return MC_EPROTO;
    case 'D':
        if (WORD_IS(line, line_len, "DELETED")) {
            r->kind = MC_DELETED;
            return (ssize_t)head;
        }
        return MC_EPROTO;
    case 'T':
        if (WORD_IS(line, line_len, "TOUCHED")) {
            r->kind = MC_TOUCHED;
            return (ssize_t)head;
        }
        return MC_EPROTO;
    case 'O':
        if (WORD_IS(line, line_len, "OK")) {
            r->kind = MC_OK;
            return (ssize_t)head;
        }
        return MC_EPROTO;
    case 'R':
        if (WORD_IS(line, line_len, "RESET")) {
            r->kind = MC_RESET;
            return (ssize_t)head;
        }
        return MC_EPROTO;
    case 'M':
        if (WORD_IS(line, line_len, "MN")) {
            r->kind = MC_MN;
            return (ssize_t)head;
        }
        return MC_EPROTO;
    case 'C':
        if (STARTS_WITH(line, line_len, "CONFIG ")) {
            /* "CONFIG " key SP flags SP bytes: a VALUE line one byte longer
             * in its first word, so parsed from the second byte on
             * (parse_value skips its first six bytes unread); no cas. */
            ssize_t n = parse_value(buf + 1, len - 1, line + 1, line_len - 1,
                                    head - 1, max_value, r);
            if (n == MC_EPROTO || r->has_cas) {
                return MC_EPROTO;  /* has_cas is set before the frame waits */
            }
            if (n == MC_NEED_MORE) {
                r->need++;
                return n;
            }
            r->kind = MC_CONFIG;
            return n + 1;
        }
        if (STARTS_WITH(line, line_len, "CLIENT_ERROR")) {
            if (rest_text(line, line_len, 12, r) < 0) {
                return MC_EPROTO;
            }
            r->kind = MC_CLIENT_ERROR;
            return (ssize_t)head;
        }
        return MC_EPROTO;
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        if (parse_u64(line, line_len, UINT64_MAX, &r->number) < 0) {
            return MC_EPROTO;
        }
        r->kind = MC_NUMBER;
        return (ssize_t)head;
    default:
        return MC_EPROTO;
    }
}

size_t
mc_fmt_u64(char *out, uint64_t v)
{
    if (v < 10) {
        out[0] = (char)('0' + v);  /* flags, exptime 0: the common case */
        return 1;
    }
    /* The digits counted first (p is 10^n while it fits), then written
     * from the last: no reversal. */
    size_t n = 2;
    for (uint64_t p = 100; v >= p && n < 20; n++) {
        if (n < 19) {
            p *= 10;
        }
    }
    for (size_t i = n; i-- > 0;) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return n;
}

size_t
mc_fmt_i64(char *out, int64_t v)
{
    if (v < 0) {
        out[0] = '-';
        return 1 + mc_fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
    }
    return mc_fmt_u64(out, (uint64_t)v);
}

static size_t
put(char *out, const char *s, size_t n)
{
    memcpy(out, s, n);
    return n;
}

#define PUT(out, lit) put((out), (lit), sizeof(lit) - 1)

static size_t
put_end(char *out, bool noreply)
{
    size_t n = 0;
    if (noreply) {
        n += PUT(out, " noreply");
    }
    n += PUT(out + n, "\r\n");
    return n;
}

size_t
mc_fmt_store(char *out, enum mc_store cmd, const char *key, size_t key_len,
             uint32_t flags, int64_t exptime, size_t value_len, uint64_t cas,
             bool noreply)
{
    static const char *const names[] = {
        [MC_SET] = "set ", [MC_ADD] = "add ", [MC_REPLACE] = "replace ",
        [MC_APPEND] = "append ", [MC_PREPEND] = "prepend ", [MC_CAS] = "cas ",
    };
    size_t n = put(out, names[cmd], strlen(names[cmd]));
    n += put(out + n, key, key_len);
    out[n++] = ' ';
    n += mc_fmt_u64(out + n, flags);
    out[n++] = ' ';
    n += mc_fmt_i64(out + n, exptime);
    out[n++] = ' ';
    n += mc_fmt_u64(out + n, value_len);
    if (cmd == MC_CAS) {
        out[n++] = ' ';
        n += mc_fmt_u64(out + n, cas);
    }
    return n + put_end(out + n, noreply);
}

size_t
mc_fmt_get_n(char *out, const char *cmd, size_t cmd_len, bool has_exptime,
             int64_t exptime, const char *key, size_t key_len)
{
    size_t n = put(out, cmd, cmd_len);
    out[n++] = ' ';
    if (has_exptime) {
        n += mc_fmt_i64(out + n, exptime);
        out[n++] = ' ';
    }
    n += put(out + n, key, key_len);
    return n + PUT(out + n, "\r\n");
}

size_t
mc_fmt_delete(char *out, const char *key, size_t key_len, bool noreply)
{
    size_t n = PUT(out, "delete ");
    n += put(out + n, key, key_len);
    return n + put_end(out + n, noreply);
}

size_t
mc_fmt_arith(char *out, bool decr, const char *key, size_t key_len,
             uint64_t delta, bool noreply)
{
    size_t n = decr ? PUT(out, "decr ") : PUT(out, "incr ");
    n += put(out + n, key, key_len);
    out[n++] = ' ';
    n += mc_fmt_u64(out + n, delta);
    return n + put_end(out + n, noreply);
}

enum mc_auth_status
mc_auth_check(const char *user, size_t user_len, const char *pass,
              size_t pass_len)
{
    switch (mc_key_check(user, user_len)) {
    case MC_KEY_OK:
        break;
    case MC_KEY_EMPTY:
        return MC_AUTH_USER_EMPTY;
    case MC_KEY_TOO_LONG:
        return MC_AUTH_USER_TOO_LONG;
    case MC_KEY_BAD_CHAR:
        return MC_AUTH_USER_BAD_CHAR;
    }
    if (pass_len == 0) {
        return MC_AUTH_PASS_EMPTY;
    }
    if (pass_len > MC_MAX_PASSWORD) {
        return MC_AUTH_PASS_TOO_LONG;
    }
    for (size_t i = 0; i < pass_len; i++) {
        if (pass[i] == '\r' || pass[i] == '\n' || pass[i] == '\0') {
            return MC_AUTH_PASS_BAD_CHAR;
        }
    }
    return MC_AUTH_OK;
}

size_t
mc_fmt_auth(char *out, const char *user, size_t user_len, const char *pass,
            size_t pass_len)
{
    size_t n = PUT(out, "set ");
    n += put(out + n, user, user_len);
    n += PUT(out + n, " 0 0 ");
    n += mc_fmt_u64(out + n, user_len + 1 + pass_len);
    n += PUT(out + n, "\r\n");
    n += put(out + n, user, user_len);
    out[n++] = ' ';
    n += put(out + n, pass, pass_len);
    return n + PUT(out + n, "\r\n");
}

int
mc_auth_reply(const char *buf, size_t len, const char **why, size_t *why_len)
{
    static const char stored[] = "STORED\r\n";
    const char *nl = memchr(buf, '\n', len);
    if (nl == NULL) {
        if (len < MC_AUTH_REPLY_MAX) {
            return 0;
        }
        *why = "no reply line in the first 1024 bytes";
        *why_len = strlen(*why);
        return -1;
    }
    size_t line = (size_t)(nl - buf) + 1;
    if (line == sizeof(stored) - 1 && memcmp(buf, stored, line) == 0) {
        if (line == len) {
            return 1;
        }
        *why = "bytes after STORED";
        *why_len = strlen(*why);
        return -1;
    }
    /* the server's line, without its line end, for the message */
    size_t n = line - 1;
    if (n > 0 && buf[n - 1] == '\r') {
        n--;
    }
    *why = buf;
    *why_len = n;
    return -1;
}

size_t
mc_fmt_touch(char *out, const char *key, size_t key_len, int64_t exptime,
             bool noreply)
{
    size_t n = PUT(out, "touch ");
    n += put(out + n, key, key_len);
    out[n++] = ' ';
    n += mc_fmt_i64(out + n, exptime);
    return n + put_end(out + n, noreply);
}

static int
parse_port(const char *p, size_t len, uint16_t *port)
{
    uint64_t v;
    if (parse_u64(p, len, 65535, &v) < 0 || v == 0) {
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

static bool
has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

int
mc_server_parse(const char *s, size_t len, struct mc_server_spec *out)
{
    if (has_control(s, len)) {
        return -1;
    }
    if (STARTS_WITH(s, len, "unix:") || (len > 0 && s[0] == '/')) {
        size_t skip = s[0] == '/' ? 0 : 5;
        if (len - skip == 0 || len - skip > 107) {
            return -1;
        }
        out->family = MC_UNIX;
        out->host = s + skip;
        out->host_len = len - skip;
        out->port = 0;
        return 0;
    }
    bool inet6 = STARTS_WITH(s, len, "inet6:");
    if (inet6) {
        s += 6;
        len -= 6;
    }
    out->port = 11211;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || close == s + 1
            || memchr(s + 1, '[', (size_t)(close - s - 1)) != NULL) {
            return -1;
        }
        out->family = MC_TCP6;
        out->host = s + 1;
        out->host_len = (size_t)(close - s - 1);
        size_t rest = len - (size_t)(close - s) - 1;
        if (rest > 0) {
            if (close[1] != ':' || parse_port(close + 2, rest - 1,
                                              &out->port) < 0) {
                return -1;
            }
        }
        return out->host_len > 255 ? -1 : 0;
    }
    if (inet6) {
        return -1;              /* inet6: wants a bracketed address */
    }
    if (memchr(s, '[', len) != NULL || memchr(s, ']', len) != NULL) {
        return -1;              /* brackets belong around an IPv6 address */
    }
    const char *colon = memchr(s, ':', len);
    if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon - s) - 1)
                         != NULL) {
        return -1;              /* a bare IPv6 literal is ambiguous */
    }
    size_t host_len = colon ? (size_t)(colon - s) : len;
    if (host_len == 0 || host_len > 255) {
        return -1;
    }
    if (colon != NULL && parse_port(colon + 1, len - host_len - 1,
                                    &out->port) < 0) {
        return -1;
    }
    out->family = MC_TCP;
    out->host = s;
    out->host_len = host_len;
    return 0;
}
