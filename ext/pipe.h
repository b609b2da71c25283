/* The requests in flight on one connection: the bytes each queues to
 * write, the reply each expects, and the matching of replies to requests.
 *
 * Replies arrive in the order requests were sent, so each frame parsed
 * from the connection's buffer belongs to the oldest request in flight.
 * A request's owner (a binding) takes the items of its reply through a
 * callback; an abandoned request's reply is read and discarded, so the
 * next request reads its own.  No Python, no I/O: the caller writes the
 * queued bytes and receives into the buffer (conn.c), then feeds.
 */
#ifndef CMEMCACHE_PIPE_H
#define CMEMCACHE_PIPE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "conn.h"
#include "engine.h"
#include "meta.h"
#include "proto.h"

/* What a reply is made of. */
enum mc_expect {
    MC_X_VALUES,   /* VALUE frames for the keys asked, in order (a miss is
                    * skipped), then one END per request line (none for a
                    * request joined to the next one's line: see
                    * mc_conn_join) */
    MC_X_STATUS,   /* one status line per item, of the kinds in accept */
    MC_X_NUMBER,   /* incr/decr: a number, or NOT_FOUND */
    MC_X_OK,       /* OK */
    MC_X_VERSION,  /* VERSION <text> */
    MC_X_STATS,    /* STAT lines until END (or RESET, or OK) */
    MC_X_CONFIG,   /* "config get": at most one CONFIG frame, then END */
    MC_X_META,     /* meta reply frames (mc_meta_parse): one per item, of
                    * the kinds in accept, given to on_meta (or, for a
                    * text command spoken as meta, read as its text reply
                    * and given to on_item); with quiet, the frames of the
                    * items that answered, then MN.  An error line fails
                    * the request and leaves the stream in sync (one item
                    * of several: see soft_errors) */
};

enum mc_req_state { MC_REQ_FLIGHT, MC_REQ_DONE, MC_REQ_FAILED };

struct mc_req;

/* Takes one item of a reply: a VALUE (item is its key's index), a status
 * line (item is its position), a number, a stat or version line.  Returns
 * 0, or -1 when the owner failed (the request fails with MC_EOWNER and the
 * rest of its reply is discarded). */
typedef int (*mc_item_fn)(void *owner, struct mc_req *r, size_t item,
                          const struct mc_reply *reply);

/* Takes the reply of an MC_X_META request, as mc_item_fn. */
typedef int (*mc_meta_fn)(void *owner, struct mc_req *r,
                          const struct mc_meta_reply *reply);

/* Told when a request is complete or has failed (optional). */
typedef void (*mc_done_fn)(void *owner, struct mc_req *r);

struct mc_req {
    struct mc_req *next;       /* in flight on the same connection */
    enum mc_expect expect;
    enum mc_req_state state;
    uint32_t accept;           /* MC_X_STATUS: 1 << kind of each answer;
                                * MC_X_META: 1 << enum mc_meta_kind */
    bool soft_errors;          /* MC_X_STATUS: SERVER_ERROR answers one
                                * item (set_multi), instead of the request */
    bool with_cas;             /* MC_X_VALUES: each VALUE carries a cas */
    uint8_t join;              /* MC_X_VALUES of one key whose one iovec is
                                * "<cmd> <key>\r\n": the length of cmd, for
                                * mc_conn_join (0: never joined) */
    const char *keys;          /* MC_X_VALUES: the keys asked, an mc_wkey
                                * every key_stride bytes */
    size_t key_stride;
    const size_t *index;       /* item i is key index[i] (NULL: key i) */
    size_t nitems;             /* keys asked, or status lines owed */
    size_t cursor;             /* the next item a frame may answer */
    int ends;                  /* MC_X_VALUES: END lines still owed */
    unsigned fences_after;     /* "MN" owed right after this reply */
    size_t taken;              /* MC_X_STATS: bytes charged to the limit */
    bool check_opaque;         /* MC_X_META: item i's reply must carry
                                * O<opaque + i> (32 bits, wrapping) */
    uint32_t opaque;
    enum mc_meta_as as;        /* MC_X_META: the text command it stands for */
    bool quiet;                /* MC_X_META: sent with q, then "mn": the
                                * frames carry O and end with MN */
    mc_item_fn on_item;        /* NULL: the reply is discarded */
    mc_meta_fn on_meta;        /* MC_X_META's; NULL: discarded */
    mc_done_fn on_done;
    void *owner;
    void *driver;              /* the driver's own (it queued the request) */
    struct mc_fail fail;       /* MC_REQ_FAILED: why */
};

/* A stats reply may take this much memory (each line charged its text and
 * 64 bytes); past it the connection fails with MC_EBADREPLY. */
#define MC_MAX_STATS_REPLY (8u << 20)

/* Sets up a request expecting x, with one item and one END line. */
static inline void
mc_req_init(struct mc_req *r, enum mc_expect x)
{
    r->next = NULL;
    r->expect = x;
    r->state = MC_REQ_FLIGHT;
    r->accept = 0;
    r->soft_errors = false;
    r->check_opaque = false;
    r->as = MC_AS_NONE;
    r->quiet = false;
    r->with_cas = false;
    r->join = 0;
    r->keys = NULL;
    r->key_stride = sizeof(struct mc_wkey);
    r->index = NULL;
    r->nitems = 1;
    r->cursor = 0;
    r->ends = 1;
    r->fences_after = 0;
    r->taken = 0;
    r->on_item = NULL;
    r->on_meta = NULL;
    r->on_done = NULL;
    r->owner = NULL;
    r->driver = NULL;
    r->fail.code = 0;
}

/* Queues bytes to write on c, behind what is queued (nothing is sent
 * here).  The memory the iovecs point to must stay valid until written.
 * Returns 0 or -ENOMEM (nothing queued). */
int mc_conn_queue_bytes(struct mc_conn *c, const struct iovec *iov,
                        int iovcnt);

int mc_conn_wreserve_slow(struct mc_conn *c, int n);

/* Makes room for n more iovecs in c's write queue.  Returns 0 or -ENOMEM. */
static inline int
mc_conn_wreserve(struct mc_conn *c, int n)
{
    return c->wcap - c->wcnt >= n ? 0 : mc_conn_wreserve_slow(c, n);
}

extern const struct iovec mc_fence_iov;  /* "mn\r\n" */

/* Puts r (NULL for noreply, which owes no reply) in flight behind the
 * others, and counts the "MN" of a fence after it, without queueing bytes:
 * for a caller that writes the request itself (then "mn", mc_fence_iov,
 * when fence), with nothing queued ahead of it. */
static MC_ALWAYS_INLINE void
mc_conn_push(struct mc_conn *c, struct mc_req *r, bool fence)
{
    c->join_req = NULL;
    if (r != NULL) {
        r->next = NULL;
        r->state = MC_REQ_FLIGHT;
        if (c->tail != NULL) {
            c->tail->next = r;
        }
        else {
            c->head = r;
        }
        c->tail = r;
    }
    if (fence) {
        if (c->tail != NULL) {
            c->tail->fences_after++;  /* its "MN" follows that reply */
        }
        else {
            c->fences++;
        }
    }
}

/* The most keys, and the longest line, mc_conn_join makes (memcached reads
 * a get line past 2048 bytes into a buffer of its own). */
#define MC_JOIN_KEYS 64
#define MC_JOIN_LINE 2000

int mc_conn_join(struct mc_conn *c, struct mc_req *r,
                 const struct iovec *iov);

/* Queues a request: its bytes, then "mn" when fence, behind what is
 * queued; r as mc_conn_push.  A one-key get (r->join) queued right behind
 * another whose line is not written yet joins that line instead
 * (mc_conn_join).  A fence's "MN" is owed after the reply of
 * the request before it.  On a TLS connection a zero-length iovec marks
 * where the request before it, and the request itself, end (mc_tls_send
 * ends a record there, so no record holds a value's tail and the next
 * command: memcached before 1.6.39 would not see that command).  Returns
 * 0 or -ENOMEM (nothing queued). */
static MC_ALWAYS_INLINE int
mc_conn_queue(struct mc_conn *c, struct mc_req *r, const struct iovec *iov,
              int iovcnt, bool fence)
{
    bool marks = c->tls != NULL;
    bool join = r != NULL && r->join != 0 && iovcnt == 1 && !fence && !marks;
    if (join && c->join_req != NULL) {
        int j = mc_conn_join(c, r, iov);
        if (j != 0) {
            return j < 0 ? j : 0;
        }
    }
    if (mc_conn_wreserve(c, iovcnt + fence + 2 * marks) < 0) {
        return -ENOMEM;
    }
    static const struct iovec mark = {NULL, 0};
    if (marks && c->wcnt > c->whead) {
        c->wiov[c->wcnt++] = mark;
    }
    for (int i = 0; i < iovcnt; i++) {
        c->wiov[c->wcnt++] = iov[i];
        c->wlen += iov[i].iov_len;
    }
    if (fence) {
        if (marks) {
            c->wiov[c->wcnt++] = mark;
        }
        c->wiov[c->wcnt++] = mc_fence_iov;
        c->wlen += mc_fence_iov.iov_len;
    }
    mc_conn_push(c, r, fence);
    if (join) {
        c->join_req = r;
        c->join_at = c->wcnt;
        c->join_n = 1;
        c->join_len = iov[0].iov_len;
        c->join_cmd = iov[0].iov_base;
    }
    return 0;
}

/* The bytes still to write, for mc_conn_send or mc_conn_step; after the
 * write, mc_conn_wrote records what went out. */
static inline struct mc_out
mc_conn_out(struct mc_conn *c)
{
    struct mc_out out = {c->wiov + c->whead, c->wcnt - c->whead, c->wlen};
    return out;
}

static inline bool
mc_conn_written(const struct mc_conn *c)
{
    return c->whead == c->wcnt;
}

/* Records what a write through out (from mc_conn_out) took. */
static inline void
mc_conn_wrote(struct mc_conn *c, const struct mc_out *out)
{
    c->whead = (int)(out->iov - c->wiov);
    c->wlen = out->len;
    if (c->whead == c->wcnt) {
        c->whead = c->wcnt = 0;
        c->join_req = NULL;
    }
}

/* mc_conn_feed's outcomes besides 0 (all frames taken, more needed). */
#define MC_FEED_BROKEN (-1)    /* out of sync: fail what is in flight, close */
#define MC_FEED_OWNER 1        /* a request's owner failed (see mc_item_fn) */
#define MC_FEED_TAKEN 2        /* mc_meta_feed: the frame was taken */

/* What a frame did to the request it answered. */
enum mc_frame_rc {
    MC_F_MORE,                 /* the request wants more frames */
    MC_F_DONE,                 /* its reply is complete */
    MC_F_FAILED,               /* answered by an error line, in sync */
    MC_F_OWNER,                /* its owner failed taking an item */
    MC_F_OWNER_LAST,           /* ... the last of its reply: the frame is
                                * left unread, read again on the next call
                                * (then discarded), which completes it */
    MC_F_BROKEN,               /* out of sync */
    MC_F_PASS,                 /* its reply is complete (a request joined
                                * to the next one's line): the frame is
                                * the next request's */
};

/* The parts of mc_conn_feed off its common path (pipe.c). */
enum mc_frame_rc mc_frame_broken(struct mc_fail *f, const char *why);
void mc_feed_unparsable(const struct mc_conn *c, struct mc_fail *f);
int mc_owed_frame(struct mc_conn *c, const struct mc_reply *rep,
                  struct mc_fail *f);
ssize_t mc_owed_meta(const struct mc_conn *c);
int mc_meta_feed(struct mc_conn *c, struct mc_req *r, size_t max_value,
                 size_t *need, struct mc_fail *f);
void mc_finish_head(struct mc_conn *c, enum mc_req_state state);

static inline bool
mc_key_matches(const struct mc_wkey *wk, const struct mc_reply *rep)
{
    return rep->key_len == wk->pre_len + wk->key_len
           && (wk->pre_len == 0
               || memcmp(rep->key, wk->pre, wk->pre_len) == 0)
           && memcmp(rep->key + wk->pre_len, wk->key, wk->key_len) == 0;
}

static inline enum mc_frame_rc
mc_deliver(struct mc_req *r, size_t item, const struct mc_reply *rep)
{
    if (r->on_item != NULL && r->on_item(r->owner, r, item, rep) < 0) {
        r->on_item = NULL;     /* the rest of the reply is discarded */
        mc_fail_set(&r->fail, MC_EOWNER);
        return MC_F_OWNER;
    }
    return MC_F_MORE;
}

static inline size_t
mc_req_item(const struct mc_req *r)
{
    return r->index != NULL ? r->index[r->cursor] : r->cursor;
}

/* Whether a request after r on its joined line (see mc_conn_join) asks
 * rep's key. */
static inline bool
mc_joined_asked(const struct mc_req *r, const struct mc_reply *rep)
{
    for (const struct mc_req *q = r->next; q != NULL; q = q->next) {
        for (size_t i = q->cursor; i < q->nitems; i++) {
            const struct mc_wkey *wk = (const struct mc_wkey *)(const void *)(
                q->keys + (q->index != NULL ? q->index[i] : i) * q->key_stride);
            if (mc_key_matches(wk, rep)) {
                return true;
            }
        }
        if (q->ends != 0) {
            break;              /* the line's last request */
        }
    }
    return false;
}

static inline enum mc_frame_rc
mc_values_frame(struct mc_req *r, const struct mc_reply *rep,
                struct mc_fail *f)
{
    if (rep->kind == MC_END) {
        if (r->ends == 0) {
            return MC_F_PASS;   /* joined: the line's last request's END */
        }
        return --r->ends == 0 ? MC_F_DONE : MC_F_MORE;
    }
    if (rep->kind != MC_VALUE) {
        return mc_frame_broken(f, "reply does not fit the command");
    }
    while (r->cursor < r->nitems) {
        const struct mc_wkey *wk = (const struct mc_wkey *)(const void *)(
            r->keys + mc_req_item(r) * r->key_stride);
        if (mc_key_matches(wk, rep)) {
            break;
        }
        r->cursor++;            /* a miss */
    }
    if (r->cursor == r->nitems) {
        if (r->ends == 0 && mc_joined_asked(r, rep)) {
            return MC_F_PASS;   /* joined: a key of a request after it */
        }
        return mc_frame_broken(f, "VALUE for a key that was not requested");
    }
    if (r->with_cas && !rep->has_cas) {
        return mc_frame_broken(f, "VALUE without cas");
    }
    size_t item = mc_req_item(r);
    r->cursor++;
    enum mc_frame_rc rc = mc_deliver(r, item, rep);
    return rc == MC_F_MORE && r->ends == 0 && r->cursor == r->nitems
               ? MC_F_DONE
               : rc;
}

/* One frame for the oldest request in flight. */
static MC_ALWAYS_INLINE enum mc_frame_rc
mc_req_frame(struct mc_req *r, const struct mc_reply *rep, struct mc_fail *f)
{
    enum mc_frame_rc rc;
    if (mc_is_error(rep->kind)
        && !(r->expect == MC_X_STATUS && r->soft_errors
             && rep->kind == MC_SERVER_ERROR)) {
        if (r->expect == MC_X_VALUES || r->expect == MC_X_STATS
            || (r->expect == MC_X_CONFIG && r->cursor > 0)
            || (r->expect == MC_X_STATUS && r->nitems > 1)) {
            /* In a reply of several frames: where the server stands is
             * unknown.  A failure r had already (its owner's) stays its
             * own; mc_conn_fail_all gives it f otherwise. */
            mc_fail_reply(f, rep);
            return MC_F_BROKEN;
        }
        mc_fail_reply(&r->fail, rep);
        return MC_F_FAILED;     /* the error line is the whole reply */
    }
    switch (r->expect) {
    case MC_X_VALUES:
        return mc_values_frame(r, rep, f);
    case MC_X_STATUS:
        if (!(r->accept & (1u << rep->kind)) && rep->kind != MC_SERVER_ERROR) {
            return mc_frame_broken(f, "reply does not fit the command");
        }
        rc = mc_deliver(r, mc_req_item(r), rep);
        if (rc != MC_F_MORE && r->cursor + 1 == r->nitems) {
            return MC_F_OWNER_LAST;
        }
        r->cursor++;
        return rc == MC_F_MORE && r->cursor == r->nitems ? MC_F_DONE : rc;
    case MC_X_NUMBER:
        if (rep->kind != MC_NUMBER && rep->kind != MC_NOT_FOUND) {
            return mc_frame_broken(f, "reply does not fit the command");
        }
        rc = mc_deliver(r, 0, rep);
        return rc == MC_F_MORE ? MC_F_DONE : MC_F_OWNER_LAST;
    case MC_X_OK:
        if (rep->kind != MC_OK) {
            return mc_frame_broken(f, "reply does not fit the command");
        }
        rc = mc_deliver(r, 0, rep);
        return rc == MC_F_MORE ? MC_F_DONE : MC_F_OWNER_LAST;
    case MC_X_VERSION:
        if (rep->kind != MC_VERSION) {
            return mc_frame_broken(f, "reply does not fit the command");
        }
        rc = mc_deliver(r, 0, rep);
        return rc == MC_F_MORE ? MC_F_DONE : MC_F_OWNER_LAST;
    case MC_X_STATS:
        if (rep->kind == MC_END || rep->kind == MC_RESET
            || rep->kind == MC_OK) {
            return MC_F_DONE;
        }
        if (rep->kind != MC_STAT) {
            return mc_frame_broken(f, "reply does not fit the command");
        }
        r->taken += 64 + rep->key_len + rep->text_len;
        if (r->taken > MC_MAX_STATS_REPLY) {
            return mc_frame_broken(f, "stats reply over the 8 MiB limit");
        }
        rc = mc_deliver(r, r->cursor, rep);
        r->cursor++;
        return rc;
    case MC_X_CONFIG:
        if (rep->kind == MC_END) {
            return MC_F_DONE;
        }
        if (rep->kind != MC_CONFIG || r->cursor > 0) {
            return mc_frame_broken(f, "reply does not fit the command");
        }
        r->cursor++;
        return mc_deliver(r, 0, rep);
    case MC_X_META:
        break;                  /* read by mc_meta_feed, never here */
    }
    return mc_frame_broken(f, "reply does not fit the command");
}

/* After a VALUE: the END that completes a retrieval, when it is already in
 * the buffer, taken without a parse. */
static inline bool
mc_end_follows(struct mc_conn *c, struct mc_req *r)
{
    if (r->expect != MC_X_VALUES || r->ends != 1 || mc_buf_len(&c->rbuf) < 5
        || memcmp(mc_buf_head(&c->rbuf), "END\r\n", 5) != 0) {
        return false;
    }
    mc_buf_consume(&c->rbuf, 5);
    r->ends = 0;
    return true;
}

/* Parses the frames in c's buffer and gives each to the request it
 * answers: replies owed to a flush and to noreply fences first, then the
 * oldest request in flight (its frame read with mc_meta_parse when that
 * request expects a meta reply, with mc_parse otherwise: text and meta
 * requests share a connection in any order).  A request whose reply is complete (or is an
 * error line) leaves the queue as DONE (or FAILED) and its on_done is
 * called.  Returns 0 when every complete frame was taken (*need: the
 * length of the frame being received, when known), MC_FEED_OWNER right
 * after an owner failed (call again to go on: that request is still the
 * oldest in flight until then), or MC_FEED_BROKEN with f set
 * when the stream is out of sync (bytes nobody asked for, a frame outside
 * the grammar or over max_value, an error line in a multi-frame reply):
 * the connection must then be closed, after mc_conn_fail_all.  Inline: it
 * is the heart of every driver's loop. */
static MC_ALWAYS_INLINE int
mc_conn_feed(struct mc_conn *c, size_t max_value, size_t *need,
             struct mc_fail *f)
{
    struct mc_reply rep;
    *need = 0;
    while (mc_buf_len(&c->rbuf) > 0) {
        /* read once per frame: mc_parse cannot change them */
        bool owed = (c->fences | c->flush_oks) != 0;
        struct mc_req *r = c->head;
        if (!owed && r != NULL && r->expect == MC_X_META) {
            int m = mc_meta_feed(c, r, max_value, need, f);
            if (m != MC_FEED_TAKEN) {
                return m;
            }
            continue;
        }
        ssize_t n = mc_parse(mc_buf_head(&c->rbuf), mc_buf_len(&c->rbuf),
                             max_value, &rep);
        if (n < 0) {
            if (n == MC_NEED_MORE) {
                *need = rep.need;
                return 0;
            }
            if (owed && (n = mc_owed_meta(c)) != MC_EPROTO) {
                if (n == MC_NEED_MORE) {
                    return 0;
                }
                mc_buf_consume(&c->rbuf, (size_t)n);
                continue;
            }
            mc_feed_unparsable(c, f);
            return MC_FEED_BROKEN;
        }
        if (owed) {
            int rc = mc_owed_frame(c, &rep, f);
            mc_buf_consume(&c->rbuf, (size_t)n);
            if (rc < 0) {
                return MC_FEED_BROKEN;
            }
            continue;
        }
        if (r == NULL) {
            mc_fail_proto(f, "bytes nobody asked for");
            return MC_FEED_BROKEN;
        }
        enum mc_frame_rc rc = mc_req_frame(r, &rep, f);
        if (rc == MC_F_OWNER_LAST) {
            return MC_FEED_OWNER;  /* r stays the oldest until then */
        }
        if (rc == MC_F_PASS) {
            mc_finish_head(c, MC_REQ_DONE);  /* the frame is read again */
            continue;
        }
        mc_buf_consume(&c->rbuf, (size_t)n);
        if (rc == MC_F_MORE) {
            if (rep.kind == MC_VALUE && mc_end_follows(c, r)) {
                mc_finish_head(c, MC_REQ_DONE);
            }
            continue;
        }
        if (rc == MC_F_DONE || rc == MC_F_FAILED) {
            mc_finish_head(c, MC_REQ_DONE);
            continue;
        }
        return rc == MC_F_OWNER ? MC_FEED_OWNER : MC_FEED_BROKEN;
    }
    return 0;
}

/* Fails every request in flight on c with f (the connection is going). */
void mc_conn_fail_all(struct mc_conn *c, const struct mc_fail *f);

/* Abandons a request in flight (its owner went away): its reply is read
 * and discarded, it completes as usual (on_done is still called, for the
 * owner to free it). */
static inline void
mc_req_abandon(struct mc_req *r)
{
    r->on_item = NULL;
    r->on_meta = NULL;
}

/* Reads the replies owed to noreply fences and a flush, from what c's
 * buffer holds; returns 1 when nothing more is owed, 0 when more must be
 * received, -1 when the stream is out of sync. */
int mc_conn_drain_owed(struct mc_conn *c);

#endif
