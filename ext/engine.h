/* The engine: the servers of one client, their pools of idle connections,
 * the hold-down and recovery policy, and the choice of a server for a key.
 *
 * No Python and no blocking call: when a connection must be opened the
 * engine says so and its caller connects (blocking, or driven by an event
 * loop) and reports back.  Pools and server state are guarded by the
 * engine's own lock, so the same code is correct whether or not a global
 * interpreter lock serialises its callers; a connection taken off a pool
 * belongs to its taker alone until it is given back or closed.
 */
#ifndef CMEMCACHE_ENGINE_H
#define CMEMCACHE_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "buf.h"
#include "dist.h"
#include "proto.h"

/* Failure codes beyond -errno, MC_EEOF and MC_ERESOLVE (conn.h). */
#define MC_EDEAD (-10003)      /* server held down after a failure */
#define MC_EBADREPLY (-10004)  /* reply outside the grammar (text kept) */
#define MC_EREPLY (-10005)     /* an error line: kind and text kept */
#define MC_EOWNER (-10006)     /* the request's owner failed taking a reply */
#define MC_EVALUE (-10007)     /* reply value larger than max_value */
#define MC_ENOSERVER (-10008)  /* every server the key may use is down */

/* Why a request or a connection failed. */
struct mc_fail {
    int code;
    int gai;                   /* MC_ERESOLVE: the getaddrinfo error */
    enum mc_kind kind;         /* MC_EREPLY: which error line */
    char text[256];            /* MC_EREPLY, MC_EBADREPLY: the detail */
};

static inline void
mc_fail_set(struct mc_fail *f, int code)
{
    f->code = code;
    f->text[0] = '\0';
}

/* Records an error line of the server (MC_EREPLY). */
void mc_fail_reply(struct mc_fail *f, const struct mc_reply *r);

/* Records a reply outside the grammar (MC_EBADREPLY) and why. */
void mc_fail_proto(struct mc_fail *f, const char *why);

/* A lock for a few loads and stores at a time: never held across a call
 * that may block, so a spin with a yield is enough. */
typedef struct {
    atomic_flag held;
} mc_lock;

void mc_lock_acquire_slow(mc_lock *l);

static inline void
mc_lock_acquire(mc_lock *l)
{
    if (atomic_flag_test_and_set_explicit(&l->held, memory_order_acquire)) {
        mc_lock_acquire_slow(l);
    }
}

static inline void
mc_lock_release(mc_lock *l)
{
    atomic_flag_clear_explicit(&l->held, memory_order_release);
}

/* Bumped in the child after fork(): connections opened under an older
 * value belong to the parent and are dropped unused. */
extern atomic_ulong mc_fork_generation;

/* Registers the fork handler (once per process; safe to call again). */
void mc_engine_global_init(void);

struct mc_req;
struct mc_server;
struct mc_tls;          /* tls.h: a TLS connection */
struct mc_tls_ctx;      /* tls.h: a client's TLS context */
struct mc_tls_session;  /* tls.h: a server's saved TLS session */

/* One connection to a server: its socket, its read buffer, the bytes
 * queued to write and the requests in flight, whose replies arrive in the
 * order they were sent. */
struct mc_conn {
    int fd;
    struct mc_tls *tls;        /* its TLS layer (freed with it); NULL: plain */
    struct mc_server *srv;
    unsigned long generation;  /* mc_fork_generation when opened */
    bool reused;               /* taken from a pool (may be stale) */
    unsigned fences;           /* "MN" owed ahead of the first request */
    unsigned flush_oks;        /* flush_all on connect: "OK" owed first */
    struct mc_buf rbuf;        /* bytes received, not yet parsed */
    struct iovec *wiov;        /* bytes queued to write, in order */
    int wcnt;                  /* iovecs queued */
    int wcap;
    int whead;                 /* the first iovec not written completely */
    size_t wlen;               /* the bytes queued, not yet written */
    struct mc_req *head;       /* requests in flight, oldest first */
    struct mc_req *tail;
    struct mc_req *join_req;   /* the tail, when its line may take the next
                                * one-key get's key (pipe.h mc_conn_join) */
    int join_at;               /* wcnt then */
    unsigned join_n;           /* the keys on that line */
    size_t join_len;           /* its length */
    const char *join_cmd;      /* where it starts: its command, which a get
                                * joining it must have */
    struct mc_conn *next;      /* idle pool link */
};

enum mc_failover { MC_FAILOVER_NONE, MC_FAILOVER_REHASH, MC_FAILOVER_NEXT };

struct mc_server {
    char *name;                /* owned; spec.host points into it */
    struct mc_server_spec spec;
    struct mc_conn *idle;      /* pool of idle connections */
    int nidle;
    unsigned long generation;  /* the pool's fork generation */
    _Atomic int64_t dead_until; /* held down until then (ns); 0 when live */
    int64_t hold;              /* the last hold-down: doubles up to dead_retry */
    bool probing;              /* a connect is testing it is back */
    bool flush_pending;        /* flush_on_reconnect: flush once reachable */
    int timeouts;              /* request timeouts in a row */
    struct mc_tls_session *tls_slot; /* with cfg.tls: the session its next
                                      * connection offers (owned) */
};

struct mc_config {
    int64_t timeout;           /* ns from sending to the last reply byte */
    int64_t connect_timeout;   /* ns */
    int64_t dead_retry;        /* ns: the longest hold-down; 0: none */
    size_t max_value;          /* largest value sent or accepted */
    int pool_size;             /* idle connections kept per server */
    int timeout_limit;         /* timeouts in a row that hold a server down */
    bool fence;                /* "mn" after noreply commands */
    bool flush_on_reconnect;
    bool proxy;                /* twemproxy in front: no meta, no gat */
    bool meta;                 /* protocol="meta": the key commands go as
                                * mg/ms/md/ma (pycall.c, multi.c) */
    bool binary_keys;          /* with meta: a key with spaces or control
                                * characters (at most 186 bytes) is taken
                                * and sent base64-encoded */
    enum mc_failover failover;
    char *auth;                /* the authentication request sent first on
                                * every new connection (mc_fmt_auth), owned
                                * by the engine once set up; NULL: none */
    size_t auth_len;
    struct mc_tls_ctx *tls;    /* TLS on every connection (tls.h), owned by
                                * the engine once set up; NULL: plain */
};

struct mc_engine {
    struct mc_config cfg;
    struct mc_server *servers;
    size_t nservers;
    struct mc_dist dist;
    mc_lock lock;              /* held by the forking thread across fork() */
    struct mc_engine *prev;    /* every engine of the process, for fork() */
    struct mc_engine *next;
};

/* Sets up an engine for n servers (their specs filled by
 * mc_engine_set_server).  Returns 0 or -ENOMEM. */
int mc_engine_init(struct mc_engine *e, const struct mc_config *cfg,
                   size_t n);

/* Parses server i's string (a copy is kept).  Returns 0, -1 for a
 * malformed string, or -ENOMEM. */
int mc_engine_set_server(struct mc_engine *e, size_t i, const char *spec,
                         size_t len);

/* Builds the key distribution over the servers, with their weights.
 * Returns 0 or -ENOMEM. */
int mc_engine_build(struct mc_engine *e, enum mc_distribution kind,
                    enum mc_hash_fn hash, const uint32_t *weights);

/* Closes every connection and frees everything, the authentication
 * request wiped first, then the TLS context and session slots (no request
 * may run). */
void mc_engine_free(struct mc_engine *e);

/* Frees what a configuration owns: the authentication request (wiped
 * first) and the TLS context.  For one never given to mc_engine_init;
 * mc_engine_free releases the engine's own. */
void mc_config_release(struct mc_config *cfg);

/* ---- choosing a server -------------------------------------------------- */

/* A key as it is sent: prefix + key.  The bytes belong to the caller. */
struct mc_wkey {
    const char *pre;
    size_t pre_len;
    const char *key;
    size_t key_len;
};

/* How a key picks its server, beyond its wire bytes. */
struct mc_place {
    const struct mc_wkey *wk;
    const char *text;          /* hashed instead of the wire key when set:
                                * str(hash) of a (hash, key) tuple, or the
                                * rendezvous text of the key */
    size_t text_len;
    bool has_bucket;           /* python-memcached (hash, key): its bucket */
    size_t bucket;
    const char *hash_text;     /* str(hash), for python-memcached's rehash */
    size_t hash_text_len;
    bool nowhere;              /* no server takes it (an absurd hash) */
};

ssize_t mc_engine_pick_slow(struct mc_engine *e, const struct mc_place *p);

/* The server for a key under the distribution and the failover policy.
 * Returns its index, or -1 when no live server would take it. */
static inline ssize_t
mc_engine_pick(struct mc_engine *e, const struct mc_place *p)
{
    if (e->nservers == 1 && !p->nowhere
        && (e->dist.kind != MC_DIST_PYTHON_MEMCACHED
            || (!p->has_bucket
                && atomic_load_explicit(&e->servers[0].dead_until,
                                        memory_order_relaxed)
                       == 0))) {
        return 0;               /* the common case: nothing to hash */
    }
    return mc_engine_pick_slow(e, p);
}

/* True while srv is held down. */
bool mc_server_dead(const struct mc_server *srv);

/* ---- connections -------------------------------------------------------- */

enum mc_take {
    MC_TAKE_IDLE,              /* *out is a pooled connection */
    MC_TAKE_CONNECT,           /* connect one, then mc_engine_connected */
    MC_TAKE_DEAD,              /* held down, or being probed by another */
};

enum mc_take mc_engine_take_slow(struct mc_engine *e, struct mc_server *srv,
                                 struct mc_conn **out);

/* Takes an idle connection of srv, or says that the caller must connect a
 * new one (then it must report with mc_engine_connected, whatever
 * happens), or that the server is held down. */
static MC_ALWAYS_INLINE enum mc_take
mc_engine_take(struct mc_engine *e, struct mc_server *srv,
               struct mc_conn **out)
{
    unsigned long gen = atomic_load_explicit(&mc_fork_generation,
                                             memory_order_relaxed);
    mc_lock_acquire(&e->lock);
    struct mc_conn *c = srv->idle;
    if (c != NULL && srv->generation == gen) {
        srv->idle = c->next;
        srv->nidle--;
        mc_lock_release(&e->lock);
        c->next = NULL;
        c->reused = true;
        *out = c;
        return MC_TAKE_IDLE;
    }
    mc_lock_release(&e->lock);
    return mc_engine_take_slow(e, srv, out);
}

/* Reports the connect MC_TAKE_CONNECT asked for: fd >= 0 becomes a
 * connection (a flush_all is queued ahead of its first request when the
 * server comes back with flush_on_reconnect); a failure (-errno, MC_EEOF,
 * MC_ERESOLVE) holds the server down.  With MC_EOWNER (the caller gave up,
 * e.g. on a signal), MC_EAUTH (the server refused the credentials: it is
 * alive, the configuration is wrong) or MC_ETLS (the TLS handshake failed:
 * verification, an alert; the configuration again) nothing is held against
 * the server.  A driver reports fd only once the authentication request
 * (cfg.auth), if any, was answered STORED on it (over TLS: after the
 * handshake; the caller sets the new connection's tls).  Returns the
 * connection, or NULL with f set (the fd is closed). */
struct mc_conn *mc_engine_connected(struct mc_engine *e,
                                    struct mc_server *srv, int fd,
                                    int gai, struct mc_fail *f);

void mc_engine_give_slow(struct mc_engine *e, struct mc_conn *c);

/* Gives a connection whose requests are all complete back to its pool; one
 * with unread bytes, unwritten bytes or from before a fork is closed. */
static MC_ALWAYS_INLINE void
mc_engine_give(struct mc_engine *e, struct mc_conn *c)
{
    struct mc_server *srv = c->srv;
    if (c->rbuf.end == c->rbuf.start && c->whead == c->wcnt
        && c->head == NULL && (c->fences | c->flush_oks) == 0
        && c->rbuf.cap <= MC_BUF_RESTING
        && c->generation == atomic_load_explicit(&mc_fork_generation,
                                                 memory_order_relaxed)) {
        mc_lock_acquire(&e->lock);
        if (srv->nidle < e->cfg.pool_size) {
            srv->timeouts = 0;
            c->next = srv->idle;
            srv->idle = c;
            srv->nidle++;
            mc_lock_release(&e->lock);
            return;
        }
        mc_lock_release(&e->lock);
    }
    mc_engine_give_slow(e, c);
}

/* Closes a connection (its requests must be complete or failed); a TLS
 * one of the parent after a fork is dropped without a close_notify (the
 * parent still uses the session on the shared socket). */
void mc_conn_close(struct mc_conn *c);

/* A request on srv timed out: timeout_limit in a row hold it down. */
void mc_engine_timed_out(struct mc_engine *e, struct mc_server *srv);

/* Holds server i down for hold ns (0: dead_retry), as a failure would. */
void mc_engine_mark_dead(struct mc_engine *e, size_t i, int64_t hold);

/* Ends every hold-down. */
void mc_engine_forget_dead(struct mc_engine *e);

/* The ns server i stays held down (0 when live or due for a probe). */
int64_t mc_engine_hold_left(struct mc_engine *e, size_t i);

/* Takes every idle connection off every pool (dropping those from before a
 * fork), for the caller to drain and close: a list linked by next. */
struct mc_conn *mc_engine_take_all_idle(struct mc_engine *e);

#endif
