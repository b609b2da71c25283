/* The memcached text protocol as pure functions: parse one reply frame,
 * format request header lines, check keys, parse server strings.
 *
 * Nothing here allocates, performs I/O or touches errno, so the file links
 * into plain C tests and a libFuzzer target.
 */
#ifndef CMEMCACHE_PROTO_H
#define CMEMCACHE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/* mc_parse() outcomes besides a frame length. */
#define MC_NEED_MORE (-1)
#define MC_EPROTO (-2)

/* The longest reply line accepted (a maximal VALUE line is about 320 bytes;
 * stats lines are short).  A longer line is a protocol error. */
#define MC_MAX_LINE 8192

/* For the few small functions of the hot path that must not be calls. */
#if defined(__GNUC__) || defined(__clang__)
#define MC_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define MC_ALWAYS_INLINE inline
#endif

/* Keys: 1..250 bytes, none of them <= 0x20 or 0x7f. */
#define MC_MAX_KEY 250

/* Room for the longest request header line mc_fmt_* can write. */
#define MC_MAX_HEADER 400

enum mc_kind {
    MC_VALUE,        /* key, flags, value, cas when has_cas */
    MC_END,
    MC_STORED,
    MC_NOT_STORED,
    MC_EXISTS,
    MC_NOT_FOUND,
    MC_DELETED,
    MC_TOUCHED,
    MC_OK,
    MC_RESET,
    MC_MN,
    MC_NUMBER,       /* number */
    MC_VERSION,      /* text */
    MC_STAT,         /* key = name, text = value (may be empty) */
    MC_ERROR,        /* text = message after "ERROR", may be empty */
    MC_CLIENT_ERROR, /* text */
    MC_SERVER_ERROR, /* text */
    MC_CONFIG,       /* "config get": key, flags, value, as MC_VALUE (no cas) */
};

struct mc_reply {
    enum mc_kind kind;
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    const char *text;
    size_t text_len;
    uint64_t cas;
    uint64_t number;
    uint32_t flags;
    bool has_cas;
    /* Set with MC_NEED_MORE: the whole frame's length once its header line is
     * in, so the caller can grow its buffer once; 0 while unknown. */
    size_t need;
};

/* Reads at most one reply frame from buf[0, len).  Returns the frame length
 * (status line, plus the value block and its CRLF for VALUE and CONFIG,
 * ElastiCache's reply to "config get", laid out as VALUE) when the whole
 * frame is there, MC_NEED_MORE when it is not, and MC_EPROTO for anything
 * outside the grammar, including a VALUE announcing more than max_value
 * bytes (checked before the caller allocates anything).  Pointers in *r point
 * into buf.  Numbers are parsed within the line; buf needs no terminator. */
ssize_t mc_parse(const char *buf, size_t len, size_t max_value,
                 struct mc_reply *r);

/* True for the three error lines, which end a reply wherever they appear. */
static inline bool
mc_is_error(enum mc_kind kind)
{
    return kind == MC_ERROR || kind == MC_CLIENT_ERROR
           || kind == MC_SERVER_ERROR;
}

enum mc_key_status {
    MC_KEY_OK = 0,
    MC_KEY_EMPTY,
    MC_KEY_TOO_LONG,
    MC_KEY_BAD_CHAR,
};

/* Word-at-a-time key checks: a byte <= 0x20 (below 0x21) or equal to
 * 0x7f, in 8 or 4 bytes read at once (bytes >= 0x80 are allowed). */
static inline uint64_t
mc_load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint32_t
mc_load32(const unsigned char *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

static inline bool
mc_bad_word64(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t high = 0x8080808080808080ULL;
    uint64_t del = w ^ (ones * 0x7f);
    return (((w - ones * 0x21) & ~w) | ((del - ones) & ~del)) & high;
}

static inline bool
mc_bad_word32(uint32_t w)
{
    const uint32_t ones = 0x01010101u;
    const uint32_t high = 0x80808080u;
    uint32_t del = w ^ (ones * 0x7f);
    return (((w - ones * 0x21) & ~w) | ((del - ones) & ~del)) & high;
}

/* Checks one key as sent on the wire (prefix included); in line, as it is
 * on every request's path. */
static inline enum mc_key_status
mc_key_check(const char *key, size_t len)
{
    if (len == 0) {
        return MC_KEY_EMPTY;
    }
    if (len > MC_MAX_KEY) {
        return MC_KEY_TOO_LONG;
    }
    const unsigned char *p = (const unsigned char *)key;
    if (len >= 8) {
        /* eight bytes at a time; the last word may overlap the one before */
        for (size_t i = 0; i + 8 < len; i += 8) {
            if (mc_bad_word64(mc_load64(p + i))) {
                return MC_KEY_BAD_CHAR;
            }
        }
        return mc_bad_word64(mc_load64(p + len - 8)) ? MC_KEY_BAD_CHAR
                                                     : MC_KEY_OK;
    }
    if (len >= 4) {
        return mc_bad_word32(mc_load32(p))
                       || mc_bad_word32(mc_load32(p + len - 4))
                   ? MC_KEY_BAD_CHAR
                   : MC_KEY_OK;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] <= 0x20 || p[i] == 0x7f) {
            return MC_KEY_BAD_CHAR;
        }
    }
    return MC_KEY_OK;
}


enum mc_store {
    MC_SET, MC_ADD, MC_REPLACE, MC_APPEND, MC_PREPEND, MC_CAS,
};

/* The mc_fmt_* functions write one request header line, CRLF included, into
 * out (at least MC_MAX_HEADER bytes) and return its length.  Keys must have
 * passed mc_key_check; values go out separately, never through out. */
size_t mc_fmt_store(char *out, enum mc_store cmd, const char *key,
                    size_t key_len, uint32_t flags, int64_t exptime,
                    size_t value_len, uint64_t cas, bool noreply);

/* "<cmd> <key>\r\n" for get/gets; with has_exptime, "<cmd> <exptime> <key>"
 * for gat/gats.  mc_fmt_get_n takes the command's length. */
size_t mc_fmt_get_n(char *out, const char *cmd, size_t cmd_len,
                    bool has_exptime, int64_t exptime, const char *key,
                    size_t key_len);

static inline size_t
mc_fmt_get(char *out, const char *cmd, bool has_exptime, int64_t exptime,
           const char *key, size_t key_len)
{
    return mc_fmt_get_n(out, cmd, __builtin_strlen(cmd), has_exptime,
                        exptime, key, key_len);
}

size_t mc_fmt_delete(char *out, const char *key, size_t key_len,
                     bool noreply);

/* incr (decr false) or decr. */
size_t mc_fmt_arith(char *out, bool decr, const char *key, size_t key_len,
                    uint64_t delta, bool noreply);

size_t mc_fmt_touch(char *out, const char *key, size_t key_len,
                    int64_t exptime, bool noreply);

/* memcached's ASCII authentication (memcached -Y authfile): the first
 * command on a connection is "set <user> 0 0 <n>\r\n<user> <pass>\r\n",
 * answered STORED when the pair is in the server's authfile.  A user is a
 * key (1..250 bytes, no blank or control byte); a password is 1..250 bytes
 * (memcached 1.6.18 refuses a longer one) without CR, LF or NUL. */
#define MC_MAX_PASSWORD 250

/* Room for the longest authentication request mc_fmt_auth writes. */
#define MC_AUTH_REQ_MAX (MC_MAX_KEY * 2 + MC_MAX_PASSWORD + 32)

/* The longest reply to it read before giving up. */
#define MC_AUTH_REPLY_MAX 1024

enum mc_auth_status {
    MC_AUTH_OK = 0,
    MC_AUTH_USER_EMPTY,
    MC_AUTH_USER_TOO_LONG,
    MC_AUTH_USER_BAD_CHAR,
    MC_AUTH_PASS_EMPTY,
    MC_AUTH_PASS_TOO_LONG,
    MC_AUTH_PASS_BAD_CHAR,
};

/* Zeroes n bytes at p in a way the compiler does not drop (for the copies
 * of a password). */
static inline void
mc_wipe(void *p, size_t n)
{
    volatile unsigned char *v = (volatile unsigned char *)p;
    while (n-- > 0) {
        *v++ = 0;
    }
}

/* Checks a user and password for mc_fmt_auth. */
enum mc_auth_status mc_auth_check(const char *user, size_t user_len,
                                  const char *pass, size_t pass_len);

/* Writes the authentication request of a pair that passed mc_auth_check
 * into out (MC_AUTH_REQ_MAX bytes) and returns its length. */
size_t mc_fmt_auth(char *out, const char *user, size_t user_len,
                   const char *pass, size_t pass_len);

/* Reads the reply to the authentication request in buf[0, len): 1 when it
 * is exactly "STORED\r\n", 0 when no whole line is there yet and len is
 * below MC_AUTH_REPLY_MAX, -1 otherwise (a refusal, any other reply, or
 * bytes after the line); then *why points to a reason in buf, or to a
 * static text, and *why_len is its length. */
int mc_auth_reply(const char *buf, size_t len, const char **why,
                  size_t *why_len);

/* Writes the decimal digits of v (a leading '-' when negative) and returns
 * their count (at most 20). */
size_t mc_fmt_i64(char *out, int64_t v);
size_t mc_fmt_u64(char *out, uint64_t v);

/* A parsed server string.  host points into the string given. */
enum mc_family { MC_TCP, MC_TCP6, MC_UNIX };

struct mc_server_spec {
    enum mc_family family;
    const char *host;     /* host name, IP literal (no brackets) or path */
    size_t host_len;
    uint16_t port;
};

/* Parses "host:port", "host" (port 11211), "[v6]:port", "inet6:[v6]:port",
 * "unix:/path" or "/path".  Returns 0, or -1 for a malformed string (empty
 * host, bad or out-of-range port, NUL or control bytes, unbalanced
 * brackets, host over 255 bytes, path over 107 bytes). */
int mc_server_parse(const char *s, size_t len, struct mc_server_spec *out);

#endif
