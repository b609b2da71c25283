/* The engine's servers: pools of idle connections, hold-down and recovery
 * probes, and the choice of a server for a key.  No Python, no blocking
 * call (see engine.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "pipe.h"
#ifdef MC_HAVE_TLS
#include "tls.h"
#endif

/* ns from a failure to the first probe of the server */
#define MC_FIRST_PROBE 1000000000LL

atomic_ulong mc_fork_generation = 0;

/* Every engine of the process: fork() takes all their locks, so that no
 * other thread is halfway through changing a pool when the child's copy is
 * made; the parent and the child then release them. */
static pthread_mutex_t engines_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mc_engine *engines;

static void
before_fork(void)
{
    pthread_mutex_lock(&engines_lock);
    for (struct mc_engine *e = engines; e != NULL; e = e->next) {
        mc_lock_acquire(&e->lock);
    }
}

static void
after_fork_in_parent(void)
{
    for (struct mc_engine *e = engines; e != NULL; e = e->next) {
        mc_lock_release(&e->lock);
    }
    pthread_mutex_unlock(&engines_lock);
}

static void
after_fork_in_child(void)
{
    atomic_fetch_add(&mc_fork_generation, 1);
    after_fork_in_parent();
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void
register_atfork(void)
{
    (void)pthread_atfork(before_fork, after_fork_in_parent,
                         after_fork_in_child);
}

void
mc_engine_global_init(void)
{
    (void)pthread_once(&atfork_once, register_atfork);
}

void
mc_lock_acquire_slow(mc_lock *l)
{
    for (unsigned spins = 0;; spins++) {
        if (!atomic_flag_test_and_set_explicit(&l->held,
                                               memory_order_acquire)) {
            return;
        }
        if (spins >= 64) {
            sched_yield();
        }
    }
}

static inline void
engine_lock(struct mc_engine *e)
{
    mc_lock_acquire(&e->lock);
}

static inline void
engine_unlock(struct mc_engine *e)
{
    mc_lock_release(&e->lock);
}

void
mc_fail_reply(struct mc_fail *f, const struct mc_reply *r)
{
    f->code = MC_EREPLY;
    f->kind = r->kind;
    size_t n = r->text_len < sizeof(f->text) - 1 ? r->text_len
                                                 : sizeof(f->text) - 1;
    memcpy(f->text, r->text, n);
    f->text[n] = '\0';
}

void
mc_fail_proto(struct mc_fail *f, const char *why)
{
    f->code = MC_EBADREPLY;
    size_t n = strlen(why);
    if (n > sizeof(f->text) - 1) {
        n = sizeof(f->text) - 1;
    }
    memcpy(f->text, why, n);
    f->text[n] = '\0';
}

/* ---- set-up ------------------------------------------------------------- */

int
mc_engine_init(struct mc_engine *e, const struct mc_config *cfg, size_t n)
{
    memset(e, 0, sizeof(*e));
    mc_engine_global_init();
    e->cfg = *cfg;
    atomic_flag_clear(&e->lock.held);
    e->servers = calloc(n ? n : 1, sizeof(struct mc_server));
    if (e->servers == NULL) {
        return -ENOMEM;
    }
    e->nservers = n;
    unsigned long gen = atomic_load(&mc_fork_generation);
    for (size_t i = 0; i < n; i++) {
        e->servers[i].generation = gen;
    }
    pthread_mutex_lock(&engines_lock);
    e->next = engines;
    if (engines != NULL) {
        engines->prev = e;
    }
    engines = e;
    pthread_mutex_unlock(&engines_lock);
    return 0;
}

int
mc_engine_set_server(struct mc_engine *e, size_t i, const char *spec,
                     size_t len)
{
    struct mc_server *srv = &e->servers[i];
    srv->name = malloc(len + 1);
    if (srv->name == NULL) {
        return -ENOMEM;
    }
    memcpy(srv->name, spec, len);
    srv->name[len] = '\0';
    return mc_server_parse(srv->name, len, &srv->spec) < 0 ? -1 : 0;
}

/* The name a server has on a ring: its host text, plus ":port" unless the
 * port is 11211 (libmemcached, twemproxy); for rendezvous always
 * "host:port" (pymemcache).  A unix socket is its path. */
static size_t
ring_name(const struct mc_server *srv, bool always_port, char *out)
{
    memcpy(out, srv->spec.host, srv->spec.host_len);
    size_t n = srv->spec.host_len;
    if (srv->spec.family != MC_UNIX
        && (always_port || srv->spec.port != 11211)) {
        out[n++] = ':';
        n += mc_fmt_u64(out + n, srv->spec.port);
    }
    return n;
}

int
mc_engine_build(struct mc_engine *e, enum mc_distribution kind,
                enum mc_hash_fn hash, const uint32_t *weights)
{
    size_t n = e->nservers;
    struct mc_dist_server *ds = calloc(n, sizeof(*ds));
    char *names = malloc(n * 272);
    if (ds == NULL || names == NULL) {
        free(ds);
        free(names);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ds[i].name = names + 272 * i;
        ds[i].name_len = ring_name(&e->servers[i], kind == MC_DIST_RENDEZVOUS,
                                   names + 272 * i);
        ds[i].weight = weights[i];
    }
    int rc = mc_dist_build(&e->dist, kind, hash, ds, n);
    free(ds);
    free(names);
    return rc < 0 ? -ENOMEM : 0;
}

static void
server_drop_idle(struct mc_server *srv)
{
    while (srv->idle != NULL) {
        struct mc_conn *c = srv->idle;
        srv->idle = c->next;
        mc_conn_close(c);
    }
    srv->nidle = 0;
}

void
mc_engine_free(struct mc_engine *e)
{
    if (e->servers != NULL) {
        pthread_mutex_lock(&engines_lock);
        if (e->prev != NULL) {
            e->prev->next = e->next;
        }
        else {
            engines = e->next;
        }
        if (e->next != NULL) {
            e->next->prev = e->prev;
        }
        e->prev = e->next = NULL;
        pthread_mutex_unlock(&engines_lock);
    }
    for (size_t i = 0; i < e->nservers; i++) {
        server_drop_idle(&e->servers[i]);
        free(e->servers[i].name);
#ifdef MC_HAVE_TLS
        if (e->servers[i].tls_slot != NULL) {
            mc_tls_session_free(e->servers[i].tls_slot);
        }
#endif
    }
    free(e->servers);
    e->servers = NULL;
    e->nservers = 0;
    mc_dist_free(&e->dist);
    mc_config_release(&e->cfg);
}

void
mc_config_release(struct mc_config *cfg)
{
    if (cfg->auth != NULL) {
        mc_wipe(cfg->auth, cfg->auth_len);
        free(cfg->auth);
        cfg->auth = NULL;
    }
#ifdef MC_HAVE_TLS
    mc_tls_ctx_free(cfg->tls);
#endif
    cfg->tls = NULL;
}

/* ---- hold-downs --------------------------------------------------------- */

static int64_t
dead_until(const struct mc_server *srv)
{
    return atomic_load_explicit(&srv->dead_until, memory_order_relaxed);
}

bool
mc_server_dead(const struct mc_server *srv)
{
    int64_t until = dead_until(srv);
    return until != 0 && mc_now() < until;
}

/* Holds srv down after a failure (the lock held): refused at once until
 * the hold-down passes, then one call probes it with a connect.  The first
 * hold-down is MC_FIRST_PROBE (a restarted server serves again about a
 * second later); each failed probe doubles it, up to dead_retry (a dead
 * server costs one connect attempt per hold-down).  A failure reported
 * while srv is already held down began before that hold-down (connects or
 * requests under way when the server failed): the same failure, not a
 * failed probe, so it changes nothing. */
static void
hold_down(struct mc_engine *e, struct mc_server *srv)
{
    srv->flush_pending = e->cfg.flush_on_reconnect;
    if (e->cfg.dead_retry <= 0) {
        return;
    }
    int64_t now = mc_now();
    if (now < dead_until(srv)) {
        return;
    }
    int64_t hold = srv->hold == 0 ? MC_FIRST_PROBE : 2 * srv->hold;
    if (hold > e->cfg.dead_retry) {
        hold = e->cfg.dead_retry;
    }
    srv->hold = hold;
    atomic_store_explicit(&srv->dead_until, now + hold,
                          memory_order_relaxed);
}

void
mc_engine_timed_out(struct mc_engine *e, struct mc_server *srv)
{
    engine_lock(e);
    if (e->cfg.timeout_limit > 0 && ++srv->timeouts >= e->cfg.timeout_limit
        && e->cfg.dead_retry > 0) {
        hold_down(e, srv);
        srv->timeouts = 0;
        struct mc_conn *idle = srv->idle;
        srv->idle = NULL;
        srv->nidle = 0;
        engine_unlock(e);
        while (idle != NULL) {
            struct mc_conn *c = idle;
            idle = c->next;
            mc_conn_close(c);
        }
        return;
    }
    engine_unlock(e);
}

void
mc_engine_mark_dead(struct mc_engine *e, size_t i, int64_t hold)
{
    struct mc_server *srv = &e->servers[i];
    if (hold == 0) {
        hold = e->cfg.dead_retry;
    }
    engine_lock(e);
    srv->flush_pending = e->cfg.flush_on_reconnect;
    struct mc_conn *idle = NULL;
    if (hold > 0) {
        srv->hold = hold;
        atomic_store_explicit(&srv->dead_until, mc_now() + hold,
                              memory_order_relaxed);
        idle = srv->idle;
        srv->idle = NULL;
        srv->nidle = 0;
    }
    engine_unlock(e);
    while (idle != NULL) {
        struct mc_conn *c = idle;
        idle = c->next;
        mc_conn_close(c);
    }
}

void
mc_engine_forget_dead(struct mc_engine *e)
{
    engine_lock(e);
    for (size_t i = 0; i < e->nservers; i++) {
        atomic_store_explicit(&e->servers[i].dead_until, 0,
                              memory_order_relaxed);
        e->servers[i].hold = 0;
    }
    engine_unlock(e);
}

int64_t
mc_engine_hold_left(struct mc_engine *e, size_t i)
{
    int64_t until = dead_until(&e->servers[i]);
    int64_t now = mc_now();
    return until != 0 && until > now ? until - now : 0;
}

/* ---- connections -------------------------------------------------------- */

/* Drops the pool of srv when it was filled before a fork (the lock held):
 * the parent's sockets are closed here, nothing is sent on them; a probe a
 * thread of the parent had under way is not ours. */
static struct mc_conn *
unfork(struct mc_server *srv)
{
    unsigned long gen = atomic_load_explicit(&mc_fork_generation,
                                             memory_order_relaxed);
    if (srv->generation == gen) {
        return NULL;
    }
    struct mc_conn *parents = srv->idle;
    srv->idle = NULL;
    srv->nidle = 0;
    srv->generation = gen;
    srv->probing = false;
    return parents;
}

static void
close_list(struct mc_conn *c)
{
    while (c != NULL) {
        struct mc_conn *next = c->next;
        mc_conn_close(c);
        c = next;
    }
}

enum mc_take
mc_engine_take_slow(struct mc_engine *e, struct mc_server *srv,
                    struct mc_conn **out)
{
    engine_lock(e);
    struct mc_conn *parents = unfork(srv);
    struct mc_conn *c = srv->idle;
    if (c != NULL) {
        srv->idle = c->next;
        srv->nidle--;
        engine_unlock(e);
        close_list(parents);
        c->next = NULL;
        c->reused = true;
        *out = c;
        return MC_TAKE_IDLE;
    }
    *out = NULL;
    int64_t until = dead_until(srv);
    if (until != 0) {
        if (srv->probing || mc_now() < until) {
            /* Held down, or another call is testing it right now: fail
             * fast instead of each call waiting for its own connect. */
            engine_unlock(e);
            close_list(parents);
            return MC_TAKE_DEAD;
        }
        srv->probing = true;
    }
    engine_unlock(e);
    close_list(parents);
    return MC_TAKE_CONNECT;
}

struct mc_conn *
mc_engine_connected(struct mc_engine *e, struct mc_server *srv, int fd,
                    int gai, struct mc_fail *f)
{
    struct mc_conn *c = NULL;
    if (fd >= 0) {
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            fd = -ENOMEM;
        }
    }
    engine_lock(e);
    srv->probing = false;
    if (fd < 0) {
        if (fd != MC_EOWNER && fd != MC_EAUTH && fd != MC_ETLS
            && fd != -ENOMEM) {
            hold_down(e, srv);
        }
        engine_unlock(e);
        mc_fail_set(f, fd);
        f->gai = gai;
        return NULL;
    }
    atomic_store_explicit(&srv->dead_until, 0, memory_order_relaxed);
    srv->hold = 0;
    bool flush = srv->flush_pending;
    srv->flush_pending = false;
    engine_unlock(e);
    c->fd = fd;
    c->srv = srv;
    c->generation = atomic_load_explicit(&mc_fork_generation,
                                         memory_order_relaxed);
    mc_buf_init(&c->rbuf);
    if (flush) {
        /* Back after a failure: drop what it may hold from before, ahead
         * of the first request.  Its "OK" is read before any reply. */
        static const char flush_line[] = "flush_all\r\n";
        struct iovec iov = {(void *)flush_line, sizeof(flush_line) - 1};
        if (mc_conn_queue_bytes(c, &iov, 1) == 0) {
            c->flush_oks = 1;
        }
    }
    return c;
}

void
mc_engine_give_slow(struct mc_engine *e, struct mc_conn *c)
{
    struct mc_server *srv = c->srv;
    bool owed = c->fences > 0 || c->flush_oks > 0;
    unsigned long gen = atomic_load_explicit(&mc_fork_generation,
                                             memory_order_relaxed);
    if (mc_buf_len(&c->rbuf) != 0 || c->whead != c->wcnt
        || c->head != NULL || c->generation != gen) {
        /* Unrequested bytes after a complete reply (out of sync), bytes not
         * written, or a connection of the parent: never reused. */
        mc_conn_close(c);
        return;
    }
    if (c->rbuf.cap > MC_BUF_RESTING) {
        mc_buf_shrink(&c->rbuf);
    }
    engine_lock(e);
    srv->timeouts = 0;
    if (srv->nidle >= e->cfg.pool_size && !owed) {
        /* A connection still owed replies to noreply commands is kept even
         * over pool_size: closing it with unread input would reset it, and
         * the server could drop writes it has not read yet. */
        engine_unlock(e);
        mc_conn_close(c);
        return;
    }
    c->next = srv->idle;
    srv->idle = c;
    srv->nidle++;
    engine_unlock(e);
}

void
mc_conn_close(struct mc_conn *c)
{
#ifdef MC_HAVE_TLS
    if (c->tls != NULL) {
        if (c->generation == atomic_load_explicit(&mc_fork_generation,
                                                  memory_order_relaxed)) {
            mc_tls_free(c->tls);
        }
        else {
            mc_tls_drop(c->tls);
        }
    }
#endif
    if (c->fd >= 0) {
        close(c->fd);
    }
    mc_buf_free(&c->rbuf);
    free(c->wiov);
    free(c);
}

struct mc_conn *
mc_engine_take_all_idle(struct mc_engine *e)
{
    struct mc_conn *all = NULL, *parents = NULL;
    engine_lock(e);
    for (size_t i = 0; i < e->nservers; i++) {
        struct mc_server *srv = &e->servers[i];
        struct mc_conn *p = unfork(srv);
        while (p != NULL) {
            struct mc_conn *next = p->next;
            p->next = parents;
            parents = p;
            p = next;
        }
        while (srv->idle != NULL) {
            struct mc_conn *c = srv->idle;
            srv->idle = c->next;
            c->next = all;
            all = c;
        }
        srv->nidle = 0;
    }
    engine_unlock(e);
    close_list(parents);
    return all;
}

/* ---- choosing a server -------------------------------------------------- */

/* python-memcached: buckets[hash % len(buckets)]; with failover "rehash" a
 * server held down sends the key on python-memcached's walk,
 * hash = H(str(hash) + str(attempt)), at most 10 tries in all. */
static ssize_t
pick_python_memcached(struct mc_engine *e, const struct mc_place *p,
                      uint32_t h)
{
    size_t nb = e->dist.nbuckets;
    size_t bucket = p->has_bucket ? p->bucket : h % (uint32_t)nb;
    size_t idx = e->dist.buckets[bucket < nb ? bucket : 0];
    if (e->cfg.failover != MC_FAILOVER_REHASH
        || !mc_server_dead(&e->servers[idx])) {
        return (ssize_t)idx;
    }
    for (int attempt = 0; attempt < 9; attempt++) {
        char text[64];
        size_t n;
        if (attempt == 0 && p->has_bucket) {
            if (p->hash_text == NULL || p->hash_text_len > 40) {
                return -1;      /* an absurd hash finds no server */
            }
            memcpy(text, p->hash_text, p->hash_text_len);
            n = p->hash_text_len;
        }
        else {
            n = mc_fmt_u64(text, h);
        }
        n += mc_fmt_u64(text + n, (uint64_t)attempt);
        h = mc_dist_hash(&e->dist, text, n);
        idx = e->dist.buckets[h % (uint32_t)nb];
        if (!mc_server_dead(&e->servers[idx])) {
            return (ssize_t)idx;
        }
    }
    return -1;
}

ssize_t
mc_engine_pick_slow(struct mc_engine *e, const struct mc_place *p)
{
    enum mc_distribution kind = e->dist.kind;
    if (p->nowhere) {
        return -1;
    }
    if (e->nservers == 1
        && (kind != MC_DIST_PYTHON_MEMCACHED
            || (!p->has_bucket && dead_until(&e->servers[0]) == 0))) {
        return 0;
    }
    char text[MC_MAX_KEY * 2 + 8];
    const char *s = p->text;
    size_t n = p->text_len;
    if (s == NULL) {
        const struct mc_wkey *wk = p->wk;
        s = wk->key;
        n = wk->key_len;
        if (wk->pre_len > 0) {
            memcpy(text, wk->pre, wk->pre_len);
            memcpy(text + wk->pre_len, wk->key, wk->key_len);
            n = wk->pre_len + wk->key_len;
            s = text;
        }
    }
    if (kind == MC_DIST_PYTHON_MEMCACHED) {
        uint32_t h = p->has_bucket ? 0 : mc_dist_hash(&e->dist, s, n);
        return pick_python_memcached(e, p, h);
    }
    bool stack[128];
    bool *dead = NULL;
    if (e->cfg.failover == MC_FAILOVER_NEXT) {
        bool any = false;
        int64_t now = 0;
        dead = e->nservers <= 128 ? stack : malloc(e->nservers);
        for (size_t i = 0; dead != NULL && i < e->nservers; i++) {
            int64_t until = dead_until(&e->servers[i]);
            if (until != 0 && now == 0) {
                now = mc_now();
            }
            dead[i] = until != 0 && now < until;
            any |= dead[i];
        }
        if (!any && dead != NULL && dead != stack) {
            free(dead);
            dead = NULL;
        }
        else if (!any) {
            dead = NULL;
        }
    }
    ssize_t idx = kind == MC_DIST_RENDEZVOUS
                      ? mc_dist_pick_rendezvous(&e->dist, s, n, dead)
                      : mc_dist_pick(&e->dist, mc_dist_hash(&e->dist, s, n),
                                     dead);
    if (dead != NULL && dead != stack) {
        free(dead);
    }
    return idx;
}
