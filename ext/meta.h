/* The memcached meta protocol (mg, ms, md, ma, mn, me) as pure functions:
 * format one request line, parse one reply frame, and the strict base64 of
 * binary keys.
 *
 * Like proto.h, nothing here allocates, performs I/O or touches errno; the
 * file links into plain C tests and a libFuzzer target.  Replies follow
 * mc_parse()'s contract (proto.h): a frame length, MC_NEED_MORE or
 * MC_EPROTO, pointers into the caller's buffer, numbers parsed within the
 * line.
 */
#ifndef CMEMCACHE_META_H
#define CMEMCACHE_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

/* ------------------------------------------------------------------------ */
/* Base64 (RFC 4648 alphabet, '=' padding), for binary keys                 */

/* Characters written for n bytes. */
#define MC_B64_LEN(n) (((n) + 2) / 3 * 4)

/* Writes MC_B64_LEN(len) characters (no terminator) and returns that. */
size_t mc_b64_encode(char *out, const void *in, size_t len);

/* Decodes in[0, len) into out (room for len / 4 * 3 bytes) and returns the
 * byte count, or -1 unless the text is canonical base64: a multiple of 4
 * characters, all from the alphabet, '=' only as the last one or two, and
 * zero bits where the padding cuts the last character short.  out may be
 * NULL to only check and count. */
ssize_t mc_b64_decode(void *out, const char *in, size_t len);

/* memcached checks a key's length (MC_MAX_KEY) before decoding it, so a
 * binary key sent with 'b' has at most 186 bytes (248 characters). */
#define MC_META_MAX_B64_KEY 186

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */

enum mc_meta_cmd {
    MC_META_GET,    /* mg */
    MC_META_SET,    /* ms; the data block (value_len bytes + CRLF) follows */
    MC_META_DELETE, /* md */
    MC_META_ARITH,  /* ma */
    MC_META_NOOP,   /* mn: no key, no flags */
    MC_META_DEBUG,  /* me: key, optionally MC_MF_BASE64 */
};

/* Request flags, struct mc_meta_request.flags; the letter sent and the
 * commands taking it.  A flag with a token takes it from the field named. */
#define MC_MF_BASE64       (1u << 0)  /* b   all but mn: key sent base64 */
#define MC_MF_VALUE        (1u << 1)  /* v   mg ma */
#define MC_MF_RET_FLAGS    (1u << 2)  /* f   mg */
#define MC_MF_RET_CAS      (1u << 3)  /* c   mg ms ma */
#define MC_MF_RET_TTL      (1u << 4)  /* t   mg ma */
#define MC_MF_RET_SIZE     (1u << 5)  /* s   mg */
#define MC_MF_RET_KEY      (1u << 6)  /* k   mg ms md ma (mg: not with b) */
#define MC_MF_RET_ACCESS   (1u << 7)  /* l   mg */
#define MC_MF_RET_HIT      (1u << 8)  /* h   mg */
#define MC_MF_OPAQUE       (1u << 9)  /* O   mg ms md ma: opaque */
#define MC_MF_QUIET        (1u << 10) /* q   mg ms md ma */
#define MC_MF_NO_BUMP      (1u << 11) /* u   mg */
#define MC_MF_VIVIFY       (1u << 12) /* N   mg ma: vivify_ttl */
#define MC_MF_RECACHE      (1u << 13) /* R   mg: recache_ttl */
#define MC_MF_TTL          (1u << 14) /* T   mg ms ma, md with I: ttl */
#define MC_MF_COMPARE_CAS  (1u << 15) /* C   ms md ma: cas */
#define MC_MF_CLIENT_FLAGS (1u << 16) /* F   ms: client_flags */
#define MC_MF_INVALIDATE   (1u << 17) /* I   md, ms with C */
#define MC_MF_MODE         (1u << 18) /* M   ms ma: mode */
#define MC_MF_INITIAL      (1u << 19) /* J   ma with N: initial */
#define MC_MF_DELTA        (1u << 20) /* D   ma: delta */

/* The M token: E A P R S for ms, I D for ma. */
enum mc_meta_mode {
    MC_MODE_ADD = 'E',
    MC_MODE_APPEND = 'A',
    MC_MODE_PREPEND = 'P',
    MC_MODE_REPLACE = 'R',
    MC_MODE_SET = 'S',
    MC_MODE_INCR = 'I',
    MC_MODE_DECR = 'D',
};

/* One request.  Fields whose flag is not set are ignored.  TTLs are seconds
 * (over 30 days: a Unix time; negative: already expired). */
struct mc_meta_request {
    enum mc_meta_cmd cmd;
    uint32_t flags;         /* MC_MF_* */
    const char *key;        /* raw bytes; with MC_MF_BASE64 any bytes */
    size_t key_len;
    size_t value_len;       /* ms only: the data block's length */
    uint32_t opaque;        /* O */
    int32_t ttl;            /* T */
    int32_t vivify_ttl;     /* N */
    int32_t recache_ttl;    /* R */
    uint64_t cas;           /* C */
    uint32_t client_flags;  /* F */
    uint64_t initial;       /* J */
    uint64_t delta;         /* D */
    enum mc_meta_mode mode; /* M */
};

/* Room for the longest line mc_meta_fmt() writes (ma with every flag and
 * a 250-byte key is 372 bytes). */
#define MC_META_MAX_REQUEST 400

/* The largest ms data block memcached 1.6.18 parses (INT_MAX - 2). */
#define MC_META_MAX_VALUE 2147483645u

/* mc_meta_fmt() errors; nothing is written when one is returned. */
enum mc_meta_fmt_error {
    MC_META_ECMD = -1,          /* not an enum mc_meta_cmd */
    MC_META_EKEY_EMPTY = -2,
    MC_META_EKEY_TOO_LONG = -3, /* over MC_MAX_KEY, or MC_META_MAX_B64_KEY */
    MC_META_EKEY_BAD_CHAR = -4, /* a byte <= 0x20 or 0x7f without base64 */
    MC_META_EKEY_GIVEN = -5,    /* mn takes no key */
    MC_META_EFLAG = -6,         /* a flag the command does not take */
    MC_META_EDEPENDS = -7,      /* ms I without C, md T without I,
                                 * ma J without N */
    MC_META_ECONFLICT = -8,     /* mg k with b: see mc_meta_fmt() */
    MC_META_EMODE = -9,         /* M with a mode not for this command */
    MC_META_EVALUE_LEN = -10,   /* ms over MC_META_MAX_VALUE; a length on
                                 * another command */
};

/* Writes req's whole request line, CRLF included, into out (at least
 * MC_META_MAX_REQUEST bytes) and returns its length, or returns a negative
 * enum mc_meta_fmt_error without writing anything.
 *
 * Flags go out in one fixed order: b, then R T N (so that t reports the TTL
 * after the update and N, not T, sets a vivified item's TTL), then C F I M
 * J D, then v f c t s k l h, O, q, u.  mg refuses k together with b:
 * memcached 1.6.18 sends back the raw bytes of a binary key created by
 * vivifying (mg/ma N), which can hold spaces and CRLF. */
ssize_t mc_meta_fmt(char *out, const struct mc_meta_request *req);

/* A static description of an mc_meta_fmt() error ("unknown error" for
 * anything else). */
const char *mc_meta_fmt_strerror(ssize_t err);

/* ------------------------------------------------------------------------ */
/* Replies                                                                   */

enum mc_meta_kind {
    MC_META_VA,           /* value, flags */
    MC_META_HD,           /* flags */
    MC_META_NF,           /* flags */
    MC_META_NS,           /* flags */
    MC_META_EX,           /* flags */
    MC_META_EN,           /* flags (1.6.18 sends O and k with a miss) */
    MC_META_MN,
    MC_META_ME,           /* key, text = the "k=v ..." debug text */
    MC_META_ERROR,        /* text, as mc_parse() */
    MC_META_CLIENT_ERROR, /* text */
    MC_META_SERVER_ERROR, /* text */
};

/* Return flags of a reply, struct mc_meta_reply.has. */
#define MC_RF_FLAGS      (1u << 0)  /* f: client_flags */
#define MC_RF_CAS        (1u << 1)  /* c: cas */
#define MC_RF_TTL        (1u << 2)  /* t: ttl */
#define MC_RF_SIZE       (1u << 3)  /* s: size */
#define MC_RF_KEY        (1u << 4)  /* k: key */
#define MC_RF_ACCESS     (1u << 5)  /* l: last_access */
#define MC_RF_HIT        (1u << 6)  /* h: hit */
#define MC_RF_OPAQUE     (1u << 7)  /* O: opaque (may be empty) */
#define MC_RF_OPAQUE_NUM (1u << 8)  /* the opaque is a decimal: opaque_num */
#define MC_RF_BASE64     (1u << 9)  /* b: key is base64 (mc_b64_decode) */
#define MC_RF_WIN        (1u << 10) /* W: this client won the recache */
#define MC_RF_STALE      (1u << 11) /* X: the item is stale */
#define MC_RF_WON        (1u << 12) /* Z: a win was already sent */

/* The longest opaque token text (32 bytes with its 'O'). */
#define MC_META_MAX_OPAQUE 31

struct mc_meta_reply {
    enum mc_meta_kind kind;
    uint32_t has;          /* MC_RF_* */
    uint32_t client_flags; /* f */
    uint32_t size;         /* s */
    uint32_t last_access;  /* l: seconds */
    bool hit;              /* h */
    int64_t ttl;           /* t: seconds left, -1 for no expiry */
    uint64_t cas;          /* c */
    uint64_t opaque_num;   /* O, when MC_RF_OPAQUE_NUM */
    const char *opaque;    /* O */
    size_t opaque_len;
    const char *key;       /* k (base64 text with MC_RF_BASE64), ME key */
    size_t key_len;
    const char *value;     /* VA */
    size_t value_len;
    const char *text;      /* ME, errors */
    size_t text_len;
    /* Set with MC_NEED_MORE: the whole frame's length once a VA line is
     * in; 0 while unknown. */
    size_t need;
};

/* Reads at most one reply frame from buf[0, len), as mc_parse(): returns the
 * frame length (the status line, plus for VA the value block and its CRLF)
 * when the whole frame is there, MC_NEED_MORE when it is not, and MC_EPROTO
 * for anything outside the grammar, including a VA announcing more than
 * max_value bytes.
 *
 * The grammar: a two-letter code, flags each after exactly one space, CRLF.
 * A flag is a letter and its token: f s l (u32), c (u64), t (-1 or u32),
 * h (0 or 1), O (0..31 bytes > 0x20, not 0x7f), k (a key: mc_key_check(), or
 * with b canonical base64 of at most MC_MAX_KEY characters), b W X Z (no
 * token; b only with k).  No flag twice, no other letter.  MN has no flags;
 * ME is "ME <key> <text>". */
ssize_t mc_meta_parse(const char *buf, size_t len, size_t max_value,
                      struct mc_meta_reply *r);

static inline bool
mc_meta_is_error(enum mc_meta_kind kind)
{
    return kind == MC_META_ERROR || kind == MC_META_CLIENT_ERROR
           || kind == MC_META_SERVER_ERROR;
}

/* ------------------------------------------------------------------------ */
/* Text commands spoken as meta (protocol="meta")                            */

/* The text command a meta request stands for, and so the text reply its
 * meta reply reads as. */
enum mc_meta_as {
    MC_AS_NONE,    /* a meta command of its own (on_meta takes the reply) */
    MC_AS_GET,     /* get/gets/gat/gats as "mg <key> v f [c] [T]" */
    MC_AS_TOUCH,   /* touch as "mg <key> T<ttl>" */
    MC_AS_STORE,   /* set/add/replace/append/prepend/cas as ms */
    MC_AS_DELETE,  /* delete as md */
    MC_AS_ARITH,   /* incr/decr as "ma <key> [MD] D<delta> v" */
};

/* Reads meta reply m (not an error line, not MN) as the text reply of the
 * command as stands for, into *out (pointers into m's buffer): VA as VALUE
 * (f as flags, c as cas) or a number, HD as STORED/DELETED/TOUCHED, NS as
 * NOT_STORED, EX as EXISTS, NF as NOT_FOUND, EN as NOT_FOUND for a touch.
 * Returns 1, 0 when the reply carries no item (EN answering a get: a
 * miss), or -1 when it does not answer such a command (a number that is
 * not one included). */
int mc_meta_as_text(enum mc_meta_as as, const struct mc_meta_reply *m,
                    struct mc_reply *out);

#endif
