/* Plain C tests of ext/engine.c and ext/multi.c: engines built from server
 * strings, the pools (take, give, their limits and what is never pooled),
 * connects reported back, hold-downs and recovery probes, the server for a
 * key under every distribution and failover policy, multi-key calls
 * (grouping, each server's request byte for byte, as text or, with
 * protocol="meta", as mg/ms/md lines, completion), fork()
 * handling, and several threads taking and giving on one engine.
 *
 * The engine reads the time through mc_now(), which conn.c defines; this
 * file is linked without conn.c and defines mc_now() itself, so the clock
 * is the test's to move.  Connections are socketpair() ends: no network.
 *
 * Usage: test_engine [threads]   (threads: only the threaded tests)
 * The last line printed is "N passed, N failed"; the exit status is non-zero
 * when a check failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "conn.h"
#include "dist.h"
#include "engine.h"
#include "engine_test.h"
#include "hash.h"
#include "multi.h"
#include "pipe.h"
#include "proto.h"

#define MS 1000000LL

/* ------------------------------------------------------------------------ */
/* The clock                                                                 */

static _Atomic int64_t fake_now = 1000 * SEC;

int64_t
mc_now(void)
{
    return atomic_load(&fake_now);
}

static void
advance(int64_t ns)
{
    atomic_fetch_add(&fake_now, ns);
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

static struct mc_config
config(void)
{
    return engine_config(2);
}

/* An engine over the servers named, every weight 1 unless weights. */
static void
make_engine(struct mc_engine *e, const struct mc_config *cfg,
            const char *const *specs, size_t n, enum mc_distribution kind,
            enum mc_hash_fn hash, const uint32_t *weights)
{
    uint32_t ones[256];
    if (n > 256 || mc_engine_init(e, cfg, n) != 0) {
        fprintf(stderr, "engine set-up failed\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) {
        ones[i] = weights ? weights[i] : 1;
        if (mc_engine_set_server(e, i, specs[i], strlen(specs[i])) != 0) {
            fprintf(stderr, "bad server string %s\n", specs[i]);
            exit(2);
        }
    }
    if (mc_engine_build(e, kind, hash, ones) != 0) {
        fprintf(stderr, "engine build failed\n");
        exit(2);
    }
}

/* What the other end of a connection sees: 1 when it was closed, 0 when it
 * is open with nothing sent, -1 when bytes were sent. */
static int
peer_state(int peer)
{
    char b;
    ssize_t n = recv(peer, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    if (n == 0) {
        return 1;
    }
    if (n > 0) {
        return -1;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -2;
}

static bool
fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

/* Bytes arrive on c (as mc_conn_recv would put them in its buffer). */
static void
arrive(struct mc_conn *c, const char *p, size_t n)
{
    if (mc_buf_reserve(&c->rbuf, n) != 0) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memcpy(c->rbuf.data + c->rbuf.end, p, n);
    c->rbuf.end += n;
}

static void
arrive_str(struct mc_conn *c, const char *s)
{
    arrive(c, s, strlen(s));
}

static size_t
pool_length(const struct mc_server *s)
{
    size_t n = 0;
    for (const struct mc_conn *c = s->idle; c != NULL && n < 100000;
         c = c->next) {
        n++;
    }
    return n;
}

/* A key as it is placed: prefix + key. */
struct key {
    struct mc_wkey wk;
    struct mc_place place;
};

static void
key_set(struct key *k, const char *pre, const char *key)
{
    memset(k, 0, sizeof *k);
    k->wk.pre = pre ? pre : "";
    k->wk.pre_len = pre ? strlen(pre) : 0;
    k->wk.key = key;
    k->wk.key_len = strlen(key);
    k->place.wk = &k->wk;
}

static ssize_t
pick(struct mc_engine *e, const char *pre, const char *key)
{
    struct key k;
    key_set(&k, pre, key);
    return mc_engine_pick(e, &k.place);
}

/* ------------------------------------------------------------------------ */
/* Engines from server strings                                               */

static void
test_specs(void)
{
    struct mc_config cfg = config();
    struct mc_engine e;
    set_ctx("server strings");
    CHECK_EQ(mc_engine_init(&e, &cfg, 5), 0);
    CHECK_EQ(e.nservers, 5);
    CHECK_EQ(e.cfg.pool_size, 2);
    CHECK_EQ(e.cfg.dead_retry, 8 * SEC);
    CHECK_EQ(mc_engine_set_server(&e, 0, "127.0.0.1:11212", 15), 0);
    CHECK_EQ(mc_engine_set_server(&e, 1, "[::1]:11213", 11), 0);
    CHECK_EQ(mc_engine_set_server(&e, 2, "unix:/tmp/mc.sock", 17), 0);
    CHECK_EQ(mc_engine_set_server(&e, 3, "cache-host", 10), 0);
    /* only the first len bytes are the server's */
    CHECK_EQ(mc_engine_set_server(&e, 4, "localhost:11214XYZ", 15), 0);

    struct mc_server *s = e.servers;
    CHECK(strcmp(s[0].name, "127.0.0.1:11212") == 0);
    CHECK_EQ(s[0].spec.family, MC_TCP);
    CHECK_BYTES(s[0].spec.host, s[0].spec.host_len, "127.0.0.1");
    CHECK_EQ(s[0].spec.port, 11212);
    /* the spec points into the engine's own copy */
    CHECK(s[0].spec.host == s[0].name);
    CHECK_EQ(s[1].spec.family, MC_TCP6);
    CHECK_BYTES(s[1].spec.host, s[1].spec.host_len, "::1");
    CHECK_EQ(s[1].spec.port, 11213);
    CHECK_EQ(s[2].spec.family, MC_UNIX);
    CHECK_BYTES(s[2].spec.host, s[2].spec.host_len, "/tmp/mc.sock");
    CHECK_EQ(s[3].spec.family, MC_TCP);
    CHECK_BYTES(s[3].spec.host, s[3].spec.host_len, "cache-host");
    CHECK_EQ(s[3].spec.port, 11211);
    CHECK(strcmp(s[4].name, "localhost:11214") == 0);
    CHECK_EQ(s[4].spec.port, 11214);
    for (size_t i = 0; i < 5; i++) {
        CHECK(s[i].idle == NULL);
        CHECK_EQ(s[i].nidle, 0);
        CHECK_EQ(atomic_load(&s[i].dead_until), 0);
        CHECK(!mc_server_dead(&s[i]));
        CHECK_EQ(s[i].generation, atomic_load(&mc_fork_generation));
    }
    mc_engine_free(&e);
    CHECK(e.servers == NULL);
    CHECK_EQ(e.nservers, 0);

    set_ctx("malformed server strings");
    const char *bad[] = {"", "host:", "host:99999", "host:0x10", "[::1",
                         "host:12ab", ":11211"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(mc_engine_init(&e, &cfg, 1), 0);
        set_ctx("malformed server string \"%s\"", bad[i]);
        CHECK_EQ(mc_engine_set_server(&e, 0, bad[i], strlen(bad[i])), -1);
        mc_engine_free(&e);
    }

    /* The distribution's tables, with the weights. */
    set_ctx("python-memcached buckets");
    const char *three[] = {"127.0.0.1:11211", "127.0.0.1:11212",
                           "127.0.0.1:11213"};
    uint32_t w[] = {2, 1, 3};
    make_engine(&e, &cfg, three, 3, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                w);
    CHECK_EQ(e.dist.kind, MC_DIST_PYTHON_MEMCACHED);
    CHECK_EQ(e.dist.nservers, 3);
    CHECK_EQ(e.dist.nbuckets, 6);
    static const uint32_t want_buckets[] = {0, 0, 1, 2, 2, 2};
    for (size_t i = 0; i < 6 && e.dist.nbuckets == 6; i++) {
        CHECK_EQ(e.dist.buckets[i], want_buckets[i]);
    }
    mc_engine_free(&e);

    /* Names on a ring: the host alone for port 11211 (libmemcached,
     * twemproxy), "host:port" otherwise, a unix socket's path; the same
     * ring built from those names picks the same server for every key,
     * and one built from other names does not. */
    set_ctx("ring names");
    const char *ring[] = {"127.0.0.1:11211", "127.0.0.1:11212",
                          "unix:/tmp/mc.sock"};
    struct mc_dist_server want[3] = {
        {"127.0.0.1", 9, 1}, {"127.0.0.1:11212", 15, 1},
        {"/tmp/mc.sock", 12, 1}};
    struct mc_dist_server other[3] = {
        {"127.0.0.1:11211", 15, 1}, {"127.0.0.1:11212", 15, 1},
        {"/tmp/mc.sock", 12, 1}};
    enum mc_distribution kinds[] = {MC_DIST_KETAMA,
                                    MC_DIST_LIBMEMCACHED_KETAMA};
    enum mc_hash_fn hashes[] = {MC_HASH_MD5, MC_HASH_OAAT};
    for (int k = 0; k < 2; k++) {
        make_engine(&e, &cfg, ring, 3, kinds[k], hashes[k], NULL);
        struct mc_dist d1, d2;
        CHECK_EQ(mc_dist_build(&d1, kinds[k], hashes[k], want, 3), 0);
        CHECK_EQ(mc_dist_build(&d2, kinds[k], hashes[k], other, 3), 0);
        CHECK_EQ(e.dist.nring, d1.nring);
        int same = 0, differ = 0;
        for (int i = 0; i < 500; i++) {
            char key[32];
            snprintf(key, sizeof key, "key-%d", i);
            ssize_t got = pick(&e, NULL, key);
            uint32_t h = mc_dist_hash(&d1, key, strlen(key));
            same += got == mc_dist_pick(&d1, h, NULL);
            differ += got != mc_dist_pick(&d2, h, NULL);
        }
        CHECK_EQ(same, 500);
        CHECK(differ > 0);
        mc_dist_free(&d1);
        mc_dist_free(&d2);
        mc_engine_free(&e);
    }

    set_ctx("rendezvous names");
    make_engine(&e, &cfg, ring, 3, MC_DIST_RENDEZVOUS, MC_HASH_MURMUR3,
                NULL);
    const char *rn[] = {"127.0.0.1:11211", "127.0.0.1:11212",
                        "/tmp/mc.sock"};
    for (size_t i = 0; i < 3; i++) {
        CHECK_BYTES(e.dist.names + e.dist.name_off[i],
                    e.dist.name_off[i + 1] - e.dist.name_off[i], rn[i]);
    }
    mc_engine_free(&e);
}

/* ------------------------------------------------------------------------ */
/* Pools                                                                     */

static void
test_pool(void)
{
    struct mc_config cfg = config();
    struct mc_engine e;
    const char *one[] = {"127.0.0.1:11211"};
    make_engine(&e, &cfg, one, 1, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                NULL);
    struct mc_server *s = &e.servers[0];
    static struct mc_conn sentinel;
    struct mc_conn *c = &sentinel;  /* take sets it */

    set_ctx("an empty pool says connect");
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    CHECK(c == NULL);
    CHECK(!s->probing);

    set_ctx("connected");
    int pa, pb, pd;
    struct mc_conn *a = connect_pair(&e, s, &pa);
    struct mc_conn *b = connect_pair(&e, s, &pb);
    struct mc_conn *d = connect_pair(&e, s, &pd);
    CHECK(a->srv == s);
    CHECK(a->fd >= 0 && fd_open(a->fd));
    CHECK(!a->reused);
    CHECK(a->head == NULL && a->tail == NULL);
    CHECK_EQ(a->fences, 0);
    CHECK_EQ(a->flush_oks, 0);
    CHECK(mc_conn_written(a));
    CHECK_EQ(mc_buf_len(&a->rbuf), 0);
    CHECK_EQ(a->generation, atomic_load(&mc_fork_generation));

    set_ctx("give: at most pool_size idle");
    mc_engine_give(&e, a);
    CHECK_EQ(s->nidle, 1);
    mc_engine_give(&e, b);
    CHECK_EQ(s->nidle, 2);
    mc_engine_give(&e, d);       /* one too many: closed */
    CHECK_EQ(s->nidle, 2);
    CHECK_EQ(pool_length(s), 2);
    CHECK_EQ(peer_state(pd), 1);
    CHECK_EQ(peer_state(pa), 0);
    CHECK_EQ(peer_state(pb), 0);
    close(pd);

    set_ctx("take: the last given first");
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_IDLE);
    CHECK(c == b);
    CHECK(c->reused);
    CHECK(c->next == NULL);
    CHECK_EQ(s->nidle, 1);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_IDLE);
    CHECK(c == a);
    CHECK_EQ(s->nidle, 0);
    CHECK(s->idle == NULL);
    struct mc_conn *x = NULL;
    CHECK_EQ(mc_engine_take(&e, s, &x), MC_TAKE_CONNECT);
    CHECK(x == NULL);

    set_ctx("give: unread bytes are never pooled");
    arrive_str(b, "END\r\n");
    mc_engine_give(&e, b);
    CHECK_EQ(s->nidle, 0);
    CHECK_EQ(peer_state(pb), 1);
    close(pb);

    set_ctx("give: unwritten bytes are never pooled");
    struct iovec iov = {(void *)"version\r\n", 9};
    CHECK_EQ(mc_conn_queue_bytes(a, &iov, 1), 0);
    CHECK(!mc_conn_written(a));
    mc_engine_give(&e, a);
    CHECK_EQ(s->nidle, 0);
    CHECK_EQ(peer_state(pa), 1);
    close(pa);

    set_ctx("give: a request in flight is never pooled");
    int pr;
    struct mc_conn *r = connect_pair(&e, s, &pr);
    struct mc_req req;
    mc_req_init(&req, MC_X_VERSION);
    mc_conn_push(r, &req, false);
    mc_engine_give(&e, r);
    CHECK_EQ(s->nidle, 0);
    CHECK_EQ(peer_state(pr), 1);
    close(pr);

    set_ctx("give: a grown buffer is shrunk, the connection pooled");
    int pg;
    struct mc_conn *g = connect_pair(&e, s, &pg);
    CHECK_EQ(mc_buf_reserve(&g->rbuf, 100000), 0);
    CHECK(g->rbuf.cap > MC_BUF_RESTING);
    mc_engine_give(&e, g);
    CHECK_EQ(s->nidle, 1);
    CHECK(s->idle == g);
    CHECK_EQ(g->rbuf.cap, MC_BUF_RESTING);
    CHECK_EQ(peer_state(pg), 0);

    set_ctx("give: owed fences keep a connection over pool_size");
    int p1, p2, pf;
    struct mc_conn *c1 = connect_pair(&e, s, &p1);
    struct mc_conn *c2 = connect_pair(&e, s, &p2);
    struct mc_conn *f = connect_pair(&e, s, &pf);
    mc_engine_give(&e, c1);
    CHECK_EQ(s->nidle, 2);
    mc_engine_give(&e, c2);      /* over the limit: closed */
    CHECK_EQ(s->nidle, 2);
    CHECK_EQ(peer_state(p2), 1);
    close(p2);
    CHECK_EQ(mc_conn_queue(f, NULL, &iov, 1, true), 0);
    CHECK_EQ(f->fences, 1);
    all_written(f);
    mc_engine_give(&e, f);
    CHECK_EQ(s->nidle, 3);
    CHECK(s->idle == f);
    CHECK_EQ(peer_state(pf), 0);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_IDLE);
    CHECK(c == f);
    CHECK_EQ(c->fences, 1);
    arrive_str(c, "MN\r\n");
    CHECK_EQ(mc_conn_drain_owed(c), 1);
    CHECK_EQ(c->fences, 0);
    mc_engine_give(&e, c);       /* nothing owed now, the pool is full */
    CHECK_EQ(s->nidle, 2);
    CHECK_EQ(peer_state(pf), 1);
    close(pf);

    set_ctx("take_all_idle");
    struct mc_conn *all = mc_engine_take_all_idle(&e);
    size_t n = 0;
    bool have_g = false, have_c1 = false;
    for (struct mc_conn *i = all; i != NULL && n < 10; i = i->next) {
        n++;
        have_g |= i == g;
        have_c1 |= i == c1;
    }
    CHECK_EQ(n, 2);
    CHECK(have_g && have_c1);
    CHECK_EQ(s->nidle, 0);
    CHECK(s->idle == NULL);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    while (all != NULL) {
        struct mc_conn *next = all->next;
        mc_conn_close(all);
        all = next;
    }
    CHECK_EQ(peer_state(pg), 1);
    CHECK_EQ(peer_state(p1), 1);
    close(pg);
    close(p1);

    set_ctx("mc_engine_free closes the pools");
    int q1, q2;
    mc_engine_give(&e, connect_pair(&e, s, &q1));
    mc_engine_give(&e, connect_pair(&e, s, &q2));
    CHECK_EQ(s->nidle, 2);
    mc_engine_free(&e);
    CHECK_EQ(peer_state(q1), 1);
    CHECK_EQ(peer_state(q2), 1);
    close(q1);
    close(q2);

    set_ctx("pool_size 0 keeps nothing");
    cfg.pool_size = 0;
    make_engine(&e, &cfg, one, 1, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                NULL);
    int q0;
    mc_engine_give(&e, connect_pair(&e, &e.servers[0], &q0));
    CHECK_EQ(e.servers[0].nidle, 0);
    CHECK_EQ(peer_state(q0), 1);
    close(q0);
    mc_engine_free(&e);
}

/* ------------------------------------------------------------------------ */
/* Connects reported back, hold-downs, probes                                */

static struct mc_fail
fail_connect(struct mc_engine *e, struct mc_server *s, int code)
{
    struct mc_fail f;
    memset(&f, 0, sizeof f);
    struct mc_conn *c = mc_engine_connected(e, s, code, 0, &f);
    CHECK(c == NULL);
    return f;
}

static void
test_holddown(void)
{
    struct mc_config cfg = config();
    struct mc_engine e;
    const char *two[] = {"127.0.0.1:11211", "127.0.0.1:11212"};
    make_engine(&e, &cfg, two, 2, MC_DIST_KETAMA, MC_HASH_MD5, NULL);
    struct mc_server *s = &e.servers[0];
    struct mc_server *s1 = &e.servers[1];
    struct mc_conn *c;

    set_ctx("a failed connect");
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    struct mc_fail f = fail_connect(&e, s, -ECONNREFUSED);
    CHECK_EQ(f.code, -ECONNREFUSED);
    CHECK_EQ(f.gai, 0);
    CHECK(mc_server_dead(s));
    CHECK(!mc_server_dead(s1));
    CHECK_EQ(s->hold, SEC);
    CHECK_EQ(mc_engine_hold_left(&e, 0), SEC);
    CHECK_EQ(mc_engine_hold_left(&e, 1), 0);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_DEAD);
    CHECK(c == NULL);
    CHECK_EQ(mc_engine_take(&e, s1, &c), MC_TAKE_CONNECT);
    (void)fail_connect(&e, s1, MC_EOWNER);  /* gave up: nothing held */
    CHECK(!mc_server_dead(s1));

    set_ctx("hold-downs double up to dead_retry");
    advance(SEC - 1);
    CHECK_EQ(mc_engine_hold_left(&e, 0), 1);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_DEAD);
    advance(1);
    CHECK_EQ(mc_engine_hold_left(&e, 0), 0);
    CHECK(!mc_server_dead(s));
    static const int64_t holds[] = {2 * SEC, 4 * SEC, 8 * SEC, 8 * SEC,
                                    8 * SEC};
    for (size_t i = 0; i < sizeof holds / sizeof holds[0]; i++) {
        set_ctx("probe %zu", i);
        /* one probe at a time: the others fail fast meanwhile */
        CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
        CHECK(s->probing);
        CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_DEAD);
        CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_DEAD);
        CHECK_EQ(mc_engine_take(&e, s1, &c), MC_TAKE_CONNECT);
        (void)fail_connect(&e, s1, MC_EOWNER);
        f = fail_connect(&e, s, i % 2 ? -ETIMEDOUT : MC_EEOF);
        CHECK_EQ(f.code, i % 2 ? -ETIMEDOUT : MC_EEOF);
        CHECK(!s->probing);
        CHECK_EQ(s->hold, holds[i]);
        CHECK_EQ(mc_engine_hold_left(&e, 0), holds[i]);
        CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_DEAD);
        advance(holds[i] - 1);
        CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_DEAD);
        advance(1);
    }

    set_ctx("a probe whose caller gave up");
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    CHECK(s->probing);
    (void)fail_connect(&e, s, MC_EOWNER);
    CHECK(!s->probing);
    CHECK_EQ(s->hold, 8 * SEC);
    CHECK_EQ(mc_engine_hold_left(&e, 0), 0);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);  /* probe again */
    (void)fail_connect(&e, s, -ENOMEM);
    CHECK_EQ(mc_engine_hold_left(&e, 0), 0);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);

    set_ctx("a probe that connects");
    int p;
    c = connect_pair(&e, s, &p);
    CHECK(!s->probing);
    CHECK_EQ(atomic_load(&s->dead_until), 0);
    CHECK_EQ(s->hold, 0);
    CHECK(!mc_server_dead(s));
    CHECK_EQ(c->flush_oks, 0);   /* flush_on_reconnect is off */
    CHECK(mc_conn_written(c));
    struct mc_conn *x;
    CHECK_EQ(mc_engine_take(&e, s, &x), MC_TAKE_CONNECT);  /* live: no probe */
    CHECK(!s->probing);
    CHECK_EQ(mc_engine_take(&e, s, &x), MC_TAKE_CONNECT);
    (void)fail_connect(&e, s, MC_EOWNER);
    (void)fail_connect(&e, s, MC_EOWNER);
    CHECK(!mc_server_dead(s));
    mc_engine_give(&e, c);
    CHECK_EQ(mc_engine_take(&e, s, &x), MC_TAKE_IDLE);
    CHECK(x == c);
    mc_engine_give(&e, x);

    set_ctx("after a recovery the next failure holds 1 s");
    CHECK_EQ(mc_engine_take(&e, s, &x), MC_TAKE_IDLE);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    struct mc_fail g;
    memset(&g, 0, sizeof g);
    CHECK(mc_engine_connected(&e, s, MC_ERESOLVE, -2, &g) == NULL);
    CHECK_EQ(g.code, MC_ERESOLVE);
    CHECK_EQ(g.gai, -2);
    CHECK_EQ(s->hold, SEC);
    CHECK_EQ(mc_engine_hold_left(&e, 0), SEC);
    /* a connection taken before keeps working and goes back to its pool */
    mc_engine_give(&e, x);
    CHECK_EQ(s->nidle, 1);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_IDLE);
    CHECK(c == x);
    mc_conn_close(c);
    close(p);

    /* Connects begun while the server was live and failing after it was
     * held down are the same failure: they do not double the hold-down. */
    set_ctx("concurrent failed connects");
    mc_engine_forget_dead(&e);
    CHECK(!mc_server_dead(s));
    CHECK_EQ(s->hold, 0);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    (void)fail_connect(&e, s, -ECONNREFUSED);
    advance(10 * MS);
    (void)fail_connect(&e, s, -ECONNREFUSED);
    (void)fail_connect(&e, s, -ETIMEDOUT);
    CHECK_EQ(s->hold, SEC);
    CHECK_EQ(mc_engine_hold_left(&e, 0), SEC - 10 * MS);
    advance(SEC);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    (void)fail_connect(&e, s, -ECONNREFUSED);
    CHECK_EQ(s->hold, 2 * SEC);  /* the probe's failure doubles it */

    set_ctx("mark_dead and forget_dead");
    int q;
    mc_engine_forget_dead(&e);
    mc_engine_give(&e, connect_pair(&e, s, &q));
    CHECK_EQ(s->nidle, 1);
    mc_engine_mark_dead(&e, 0, 5 * SEC);
    CHECK_EQ(mc_engine_hold_left(&e, 0), 5 * SEC);
    CHECK_EQ(s->hold, 5 * SEC);
    CHECK_EQ(s->nidle, 0);       /* its idle connections are dropped */
    CHECK_EQ(peer_state(q), 1);
    close(q);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_DEAD);
    mc_engine_mark_dead(&e, 1, 0);  /* 0: dead_retry */
    CHECK_EQ(mc_engine_hold_left(&e, 1), 8 * SEC);
    mc_engine_forget_dead(&e);
    CHECK_EQ(mc_engine_hold_left(&e, 0), 0);
    CHECK_EQ(mc_engine_hold_left(&e, 1), 0);
    CHECK(!mc_server_dead(s) && !mc_server_dead(s1));
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    CHECK(!s->probing);
    (void)fail_connect(&e, s, MC_EOWNER);
    mc_engine_mark_dead(&e, 0, -1);  /* a negative hold changes nothing */
    CHECK(!mc_server_dead(s));

    set_ctx("timeouts in a row");
    int t1, t2;
    mc_engine_give(&e, connect_pair(&e, s, &t1));
    mc_engine_timed_out(&e, s);
    mc_engine_timed_out(&e, s);
    CHECK_EQ(s->timeouts, 2);
    CHECK(!mc_server_dead(s));
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_IDLE);
    mc_engine_give(&e, c);       /* a complete reply: the count restarts */
    CHECK_EQ(s->timeouts, 0);
    mc_engine_give(&e, connect_pair(&e, s, &t2));
    mc_engine_timed_out(&e, s);
    mc_engine_timed_out(&e, s);
    CHECK(!mc_server_dead(s));
    mc_engine_timed_out(&e, s);
    CHECK(mc_server_dead(s));
    CHECK_EQ(s->hold, SEC);
    CHECK_EQ(s->timeouts, 0);
    CHECK_EQ(s->nidle, 0);
    CHECK_EQ(peer_state(t1), 1);
    CHECK_EQ(peer_state(t2), 1);
    close(t1);
    close(t2);
    mc_engine_free(&e);

    set_ctx("timeout_limit 0 never holds down");
    cfg.timeout_limit = 0;
    make_engine(&e, &cfg, two, 2, MC_DIST_KETAMA, MC_HASH_MD5, NULL);
    for (int i = 0; i < 10; i++) {
        mc_engine_timed_out(&e, &e.servers[0]);
    }
    CHECK(!mc_server_dead(&e.servers[0]));
    mc_engine_free(&e);

    set_ctx("dead_retry under a second");
    cfg = config();
    cfg.dead_retry = 300 * MS;
    make_engine(&e, &cfg, two, 2, MC_DIST_KETAMA, MC_HASH_MD5, NULL);
    s = &e.servers[0];
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    (void)fail_connect(&e, s, -ECONNREFUSED);
    CHECK_EQ(mc_engine_hold_left(&e, 0), 300 * MS);
    advance(300 * MS);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    (void)fail_connect(&e, s, -ECONNREFUSED);
    CHECK_EQ(mc_engine_hold_left(&e, 0), 300 * MS);
    mc_engine_free(&e);

    set_ctx("dead_retry 0: never held down");
    cfg.dead_retry = 0;
    cfg.flush_on_reconnect = true;
    make_engine(&e, &cfg, two, 2, MC_DIST_KETAMA, MC_HASH_MD5, NULL);
    s = &e.servers[0];
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
        (void)fail_connect(&e, s, -ECONNREFUSED);
        CHECK(!mc_server_dead(s));
    }
    mc_engine_mark_dead(&e, 0, 0);
    CHECK(!mc_server_dead(s));
    for (int i = 0; i < 4; i++) {
        mc_engine_timed_out(&e, s);
    }
    CHECK(!mc_server_dead(s));
    /* the failures still ask for a flush when it is reached again */
    c = connect_pair(&e, s, &p);
    CHECK_EQ(c->flush_oks, 1);
    mc_conn_close(c);
    close(p);
    mc_engine_free(&e);

    set_ctx("flush_on_reconnect");
    cfg = config();
    cfg.flush_on_reconnect = true;
    make_engine(&e, &cfg, two, 2, MC_DIST_KETAMA, MC_HASH_MD5, NULL);
    s = &e.servers[0];
    char out[64];
    c = connect_pair(&e, s, &p);  /* never failed: nothing to flush */
    CHECK_EQ(c->flush_oks, 0);
    CHECK(mc_conn_written(c));
    mc_conn_close(c);
    close(p);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    (void)fail_connect(&e, s, -ECONNREFUSED);
    advance(SEC);
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_CONNECT);
    c = connect_pair(&e, s, &p);
    CHECK_EQ(c->flush_oks, 1);
    size_t n = queued(c, out, sizeof out);
    CHECK_BYTES(out, n, "flush_all\r\n");
    /* its OK is read ahead of the first request's reply */
    struct mc_req req;
    mc_req_init(&req, MC_X_VERSION);
    struct iovec v = {(void *)"version\r\n", 9};
    CHECK_EQ(mc_conn_queue(c, &req, &v, 1, false), 0);
    n = queued(c, out, sizeof out);
    CHECK_BYTES(out, n, "flush_all\r\nversion\r\n");
    all_written(c);
    arrive_str(c, "OK\r\nVERSION 1.6\r\n");
    size_t need;
    CHECK_EQ(mc_conn_feed(c, cfg.max_value, &need, &f), 0);
    CHECK_EQ(req.state, MC_REQ_DONE);
    CHECK_EQ(c->flush_oks, 0);
    mc_engine_give(&e, c);
    CHECK_EQ(s->nidle, 1);
    int p2;
    struct mc_conn *c2 = connect_pair(&e, s, &p2);  /* flushed once only */
    CHECK_EQ(c2->flush_oks, 0);
    mc_conn_close(c2);
    close(p2);
    mc_engine_mark_dead(&e, 0, SEC);  /* marked dead: flush when back */
    CHECK_EQ(peer_state(p), 1);
    close(p);
    advance(SEC);
    c2 = connect_pair(&e, s, &p2);
    CHECK_EQ(c2->flush_oks, 1);
    mc_conn_close(c2);
    close(p2);
    mc_engine_free(&e);
}

/* ------------------------------------------------------------------------ */
/* The server for a key                                                      */

/* python-memcached's walk for a key whose server is down, written out. */
static ssize_t
pm_walk(const struct mc_engine *e, uint32_t h, const bool *dead)
{
    size_t nb = e->dist.nbuckets;
    size_t idx = e->dist.buckets[h % nb];
    for (int i = 0; i < 10; i++) {
        if (!dead[idx]) {
            return (ssize_t)idx;
        }
        if (i == 9) {
            break;
        }
        char text[48];
        int n = snprintf(text, sizeof text, "%u%d", (unsigned)h, i);
        h = mc_hash_pm160(text, (size_t)n);
        idx = e->dist.buckets[h % nb];
    }
    return -1;
}

static void
test_pick(void)
{
    struct mc_config cfg = config();
    struct mc_engine e;
    const char *three[] = {"127.0.0.1:11211", "127.0.0.1:11212",
                           "127.0.0.1:11213"};
    const char *one[] = {"127.0.0.1:11211"};

    set_ctx("one server");
    make_engine(&e, &cfg, one, 1, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                NULL);
    CHECK_EQ(pick(&e, NULL, "foo"), 0);
    struct key k;
    key_set(&k, NULL, "foo");
    k.place.nowhere = true;
    CHECK_EQ(mc_engine_pick(&e, &k.place), -1);
    mc_engine_mark_dead(&e, 0, SEC);
    CHECK_EQ(pick(&e, NULL, "foo"), 0);  /* no failover: its only server */
    mc_engine_free(&e);
    cfg.failover = MC_FAILOVER_REHASH;
    make_engine(&e, &cfg, one, 1, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                NULL);
    mc_engine_mark_dead(&e, 0, SEC);
    CHECK_EQ(pick(&e, NULL, "foo"), -1);
    advance(SEC);
    CHECK_EQ(pick(&e, NULL, "foo"), 0);  /* due for a probe */
    mc_engine_free(&e);
    cfg.failover = MC_FAILOVER_NEXT;
    make_engine(&e, &cfg, one, 1, MC_DIST_KETAMA, MC_HASH_MD5, NULL);
    mc_engine_mark_dead(&e, 0, SEC);
    CHECK_EQ(pick(&e, NULL, "foo"), 0);
    mc_engine_free(&e);

    /* python-memcached: buckets[crc32 >> 16 & 0x7fff % len(buckets)]; the
     * numbers from zlib.crc32: foo 0x8c736521, bar 0x76ff8caa, p:foo
     * 0xd354b324, alpha 0xd0e0396a, key-2 0x97e5eec0, key-4 0x7e864bf5,
     * key-1 0x0eecbf7a, key-3 0xe0e2de56. */
    set_ctx("python-memcached");
    cfg = config();
    make_engine(&e, &cfg, three, 3, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                NULL);
    CHECK_EQ(pick(&e, NULL, "foo"), (0x8c73 & 0x7fff) % 3);
    CHECK_EQ(pick(&e, NULL, "bar"), 0x76ff % 3);
    CHECK_EQ(pick(&e, NULL, "alpha"), (0xd0e0 & 0x7fff) % 3);
    CHECK_EQ(pick(&e, NULL, "key-2"), (0x97e5 & 0x7fff) % 3);
    CHECK_EQ(pick(&e, NULL, "key-4"), (0x7e86 & 0x7fff) % 3);
    CHECK_EQ(pick(&e, "p:", "foo"), (0xd354 & 0x7fff) % 3);
    CHECK_EQ(pick(&e, NULL, "p:foo"), (0xd354 & 0x7fff) % 3);
    /* the placement text is hashed instead of the key */
    key_set(&k, NULL, "bar");
    k.place.text = "foo";
    k.place.text_len = 3;
    CHECK_EQ(mc_engine_pick(&e, &k.place), (0x8c73 & 0x7fff) % 3);
    /* (hash, key): the bucket given */
    for (size_t b = 0; b < 3; b++) {
        key_set(&k, NULL, "foo");
        k.place.has_bucket = true;
        k.place.bucket = b;
        CHECK_EQ(mc_engine_pick(&e, &k.place), (ssize_t)b);
    }
    k.place.bucket = 99;         /* out of range: the first bucket */
    CHECK_EQ(mc_engine_pick(&e, &k.place), 0);
    mc_engine_free(&e);

    uint32_t w[] = {1, 2, 1};
    make_engine(&e, &cfg, three, 3, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                w);
    /* buckets 0 1 1 2; foo: 0x0c73 % 4 = 3 */
    CHECK_EQ(pick(&e, NULL, "foo"), 2);
    CHECK_EQ(pick(&e, NULL, "key-1"), 0);  /* 0x0eec % 4 = 0 */
    CHECK_EQ(pick(&e, NULL, "key-2"), 1);  /* 0x17e5 % 4 = 1 */
    CHECK_EQ(pick(&e, NULL, "key-3"), 1);  /* 0x60e2 % 4 = 2 */
    mc_engine_free(&e);

    set_ctx("python-memcached, no failover");
    cfg = config();
    make_engine(&e, &cfg, three, 3, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                NULL);
    mc_engine_mark_dead(&e, 0, SEC);
    /* the key stays on its server, dead or not */
    CHECK_EQ(pick(&e, NULL, "foo"), (0x8c73 & 0x7fff) % 3);
    mc_engine_free(&e);

    set_ctx("python-memcached, rehash");
    cfg.failover = MC_FAILOVER_REHASH;
    make_engine(&e, &cfg, three, 3, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                NULL);
    bool dead[3] = {false, true, false};
    mc_engine_mark_dead(&e, 1, SEC);
    int moved = 0;
    for (int i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof key, "key-%d", i);
        uint32_t h = mc_hash_pm160(key, strlen(key));
        ssize_t got = pick(&e, NULL, key);
        CHECK_EQ(got, pm_walk(&e, h, dead));
        CHECK(got != 1);
        moved += h % 3 == 1;
    }
    CHECK(moved > 50);
    /* (hash, key): the walk starts from str(hash) */
    key_set(&k, NULL, "foo");
    k.place.has_bucket = true;
    k.place.bucket = 1;
    k.place.hash_text = "12345";
    k.place.hash_text_len = 5;
    uint32_t hw = mc_hash_pm160("123450", 6);
    ssize_t want = -1;
    for (int i = 1; i <= 9; i++) {
        if (!dead[hw % 3]) {
            want = (ssize_t)(hw % 3);
            break;
        }
        char t[32];
        int tn = snprintf(t, sizeof t, "%u%d", (unsigned)hw, i);
        hw = mc_hash_pm160(t, (size_t)tn);
    }
    CHECK(want >= 0);
    CHECK_EQ(mc_engine_pick(&e, &k.place), want);
    k.place.hash_text = NULL;    /* an absurd hash goes nowhere */
    k.place.hash_text_len = 0;
    CHECK_EQ(mc_engine_pick(&e, &k.place), -1);
    k.place.bucket = 0;          /* a live bucket needs no walk */
    CHECK_EQ(mc_engine_pick(&e, &k.place), 0);
    mc_engine_mark_dead(&e, 0, SEC);
    mc_engine_mark_dead(&e, 2, SEC);
    CHECK_EQ(pick(&e, NULL, "foo"), -1);  /* all down */
    advance(SEC);
    CHECK_EQ(pick(&e, NULL, "foo"), (0x8c73 & 0x7fff) % 3);
    mc_engine_free(&e);

    /* The rings, modula and rendezvous: failover "next" skips a dead
     * server (modula takes the hash modulo the live servers, so other keys
     * move too; the others move only the dead server's keys); without
     * failover the key stays on it. */
    enum mc_distribution kinds[] = {MC_DIST_KETAMA,
                                    MC_DIST_LIBMEMCACHED_KETAMA,
                                    MC_DIST_MODULA, MC_DIST_RENDEZVOUS};
    enum mc_hash_fn hashes[] = {MC_HASH_MD5, MC_HASH_OAAT, MC_HASH_CRC32,
                                MC_HASH_MURMUR3};
    for (int kd = 0; kd < 4; kd++) {
        for (int fo = 0; fo < 2; fo++) {
            set_ctx("distribution %d, failover %s", kd, fo ? "next" : "none");
            cfg = config();
            cfg.failover = fo ? MC_FAILOVER_NEXT : MC_FAILOVER_NONE;
            make_engine(&e, &cfg, three, 3, kinds[kd], hashes[kd], NULL);
            ssize_t live[300];
            int count[3] = {0, 0, 0};
            for (int i = 0; i < 300; i++) {
                char key[32];
                snprintf(key, sizeof key, "key-%d", i);
                live[i] = pick(&e, NULL, key);
                uint32_t h = mc_dist_hash(&e.dist, key, strlen(key));
                ssize_t ref = kinds[kd] == MC_DIST_RENDEZVOUS
                                  ? mc_dist_pick_rendezvous(&e.dist, key,
                                                            strlen(key), NULL)
                                  : mc_dist_pick(&e.dist, h, NULL);
                CHECK_EQ(live[i], ref);
                if (live[i] >= 0 && live[i] < 3) {
                    count[live[i]]++;
                }
                /* the prefix is part of what is hashed */
                char full[40];
                snprintf(full, sizeof full, "ns:%s", key);
                CHECK_EQ(pick(&e, "ns:", key), pick(&e, NULL, full));
            }
            CHECK(count[0] > 30 && count[1] > 30 && count[2] > 30);
            mc_engine_mark_dead(&e, 1, SEC);
            bool dmask[3] = {false, true, false};
            for (int i = 0; i < 300; i++) {
                char key[32];
                snprintf(key, sizeof key, "key-%d", i);
                ssize_t got = pick(&e, NULL, key);
                if (!fo || (live[i] != 1 && kinds[kd] != MC_DIST_MODULA)) {
                    CHECK_EQ(got, live[i]);
                    continue;
                }
                uint32_t h = mc_dist_hash(&e.dist, key, strlen(key));
                ssize_t ref = kinds[kd] == MC_DIST_RENDEZVOUS
                                  ? mc_dist_pick_rendezvous(&e.dist, key,
                                                            strlen(key),
                                                            dmask)
                                  : mc_dist_pick(&e.dist, h, dmask);
                CHECK_EQ(got, ref);
                CHECK(got == 0 || got == 2);
            }
            mc_engine_mark_dead(&e, 0, SEC);
            mc_engine_mark_dead(&e, 2, SEC);
            CHECK_EQ(pick(&e, NULL, "key-1"), fo ? -1 : live[1]);
            advance(SEC);        /* the hold-downs pass */
            for (int i = 0; i < 300; i++) {
                char key[32];
                snprintf(key, sizeof key, "key-%d", i);
                CHECK_EQ(pick(&e, NULL, key), live[i]);
            }
            mc_engine_free(&e);
        }
    }

    /* More servers than fit on the stack's dead list. */
    set_ctx("failover next over 130 servers");
    static char names[130][32];
    const char *many[130];
    for (int i = 0; i < 130; i++) {
        snprintf(names[i], sizeof names[i], "127.0.0.1:%d", 20000 + i);
        many[i] = names[i];
    }
    cfg = config();
    cfg.failover = MC_FAILOVER_NEXT;
    make_engine(&e, &cfg, many, 130, MC_DIST_KETAMA, MC_HASH_MD5, NULL);
    ssize_t before[200];
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof key, "key-%d", i);
        before[i] = pick(&e, NULL, key);
    }
    for (size_t i = 0; i < 130; i += 2) {
        mc_engine_mark_dead(&e, i, SEC);
    }
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof key, "key-%d", i);
        ssize_t got = pick(&e, NULL, key);
        CHECK(got >= 0 && got % 2 == 1);
        if (before[i] % 2 == 1) {
            CHECK_EQ(got, before[i]);
        }
    }
    mc_engine_free(&e);
}

/* ------------------------------------------------------------------------ */
/* Multi-key calls                                                           */

struct item_rec {
    size_t item;
    enum mc_kind kind;
    char value[64];
    size_t value_len;
    uint32_t flags;
    bool has_cas;
    uint64_t cas;
};

struct recorder {
    struct item_rec recs[64];
    size_t n;
    int fail_at;               /* the call that returns -1, or -1 */
};

static int
record_item(void *owner, struct mc_req *r, size_t item,
            const struct mc_reply *rep)
{
    (void)r;
    struct recorder *rc = owner;
    if ((int)rc->n == rc->fail_at) {
        rc->n++;
        return -1;
    }
    if (rc->n < 64) {
        struct item_rec *x = &rc->recs[rc->n];
        memset(x, 0, sizeof *x);
        x->item = item;
        x->kind = rep->kind;
        /* a reply's fields beyond its kind's are not set (pipe.h) */
        if (rep->kind == MC_VALUE) {
            x->value_len = rep->value_len < 64 ? rep->value_len : 64;
            memcpy(x->value, rep->value, x->value_len);
            x->flags = rep->flags;
            x->has_cas = rep->has_cas;
            x->cas = rep->cas;
        }
    }
    rc->n++;
    return 0;
}

static void
multi_keys(struct mc_multi *m, const char *const *keys, size_t n,
           const char *pre)
{
    for (size_t i = 0; i < n; i++) {
        struct mc_item *it = &m->items[i];
        memset(it, 0, sizeof *it);
        it->wk.pre = pre ? pre : "";
        it->wk.pre_len = pre ? strlen(pre) : 0;
        it->wk.key = keys[i];
        it->wk.key_len = strlen(keys[i]);
    }
    m->nitems = n;
}

/* Takes a connection for every part, as a driver does; failures are
 * recorded in the parts. */
static void
multi_connect(struct mc_engine *e, struct mc_multi *m, int *peers)
{
    for (size_t i = 0; i < m->nparts; i++) {
        struct mc_part *p = &m->parts[i];
        peers[i] = -1;
        enum mc_take t = mc_engine_take(e, p->srv, &p->conn);
        if (t == MC_TAKE_DEAD) {
            mc_fail_set(&p->fail, MC_EDEAD);
            mc_multi_part_failed(m, p);
        }
        else if (t == MC_TAKE_CONNECT) {
            p->conn = connect_pair(e, p->srv, &peers[i]);
        }
    }
}

static void
close_peers(int *peers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (peers[i] >= 0) {
            close(peers[i]);
        }
    }
}

static void
test_multi(void)
{
    struct mc_config cfg = config();
    struct mc_engine e;
    const char *three[] = {"127.0.0.1:11211", "127.0.0.1:11212",
                           "127.0.0.1:11213"};
    make_engine(&e, &cfg, three, 3, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                NULL);
    /* servers by python-memcached's hash (see test_pick): key-2 0, foo 1,
     * key-4 2 */
    CHECK_EQ(pick(&e, NULL, "key-2"), 0);
    CHECK_EQ(pick(&e, NULL, "foo"), 1);
    CHECK_EQ(pick(&e, NULL, "key-4"), 2);

    const char *keys[] = {"foo", "key-2", "key-4", "key-2", "foo"};
    struct mc_multi m;
    struct recorder rec;
    char out[70000];
    size_t n;
    int peers[8];

    set_ctx("place: keys grouped by server, in order");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 5), 0);
    multi_keys(&m, keys, 5, NULL);
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(m.nparts, 3);
    CHECK(m.parts[0].srv == &e.servers[0]);
    CHECK(m.parts[1].srv == &e.servers[1]);
    CHECK(m.parts[2].srv == &e.servers[2]);
    CHECK_EQ(m.parts[0].nitems, 2);
    CHECK_EQ(m.parts[0].items[0], 1);
    CHECK_EQ(m.parts[0].items[1], 3);
    CHECK_EQ(m.parts[1].nitems, 2);
    CHECK_EQ(m.parts[1].items[0], 0);
    CHECK_EQ(m.parts[1].items[1], 4);
    CHECK_EQ(m.parts[2].nitems, 1);
    CHECK_EQ(m.parts[2].items[0], 2);
    CHECK_EQ(m.items[2].server, 2);
    for (size_t i = 0; i < 3; i++) {
        CHECK(m.parts[i].conn == NULL);
        CHECK(!m.parts[i].done);
    }

    set_ctx("get: each server's request");
    memset(&rec, 0, sizeof rec);
    rec.fail_at = -1;
    m.on_item = record_item;
    m.owner = &rec;
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    CHECK_BYTES(out, n, "get key-2 key-2\r\n");
    n = queued(m.parts[1].conn, out, sizeof out);
    CHECK_BYTES(out, n, "get foo foo\r\n");
    n = queued(m.parts[2].conn, out, sizeof out);
    CHECK_BYTES(out, n, "get key-4\r\n");
    for (size_t i = 0; i < 3; i++) {
        CHECK(m.parts[i].conn->head == &m.parts[i].req);
        CHECK_EQ(m.parts[i].req.expect, MC_X_VALUES);
        CHECK_EQ(m.parts[i].req.ends, 1);
        all_written(m.parts[i].conn);
    }

    set_ctx("get: completion");
    struct mc_fail f;
    size_t need;
    arrive_str(m.parts[0].conn, "VALUE key-2 7 2\r\nhi\r\nEND\r\n");
    arrive_str(m.parts[1].conn, "VALUE foo 0 1\r\nx\r\nVALUE foo 0 1\r\n"
                                "x\r\nEND\r\n");
    arrive_str(m.parts[2].conn, "END\r");
    CHECK_EQ(mc_conn_feed(m.parts[0].conn, cfg.max_value, &need, &f), 0);
    CHECK(mc_multi_part_check(&m.parts[0]));
    CHECK(m.parts[0].done);
    CHECK_EQ(m.parts[0].fail.code, 0);
    CHECK(!mc_multi_part_check(&m.parts[0]));  /* once */
    CHECK_EQ(rec.n, 1);
    CHECK_EQ(rec.recs[0].item, 1);           /* the first key-2 asked */
    CHECK_EQ(rec.recs[0].flags, 7);
    CHECK_BYTES(rec.recs[0].value, rec.recs[0].value_len, "hi");
    CHECK_EQ(mc_conn_feed(m.parts[1].conn, cfg.max_value, &need, &f), 0);
    CHECK(mc_multi_part_check(&m.parts[1]));
    CHECK_EQ(rec.n, 3);
    CHECK_EQ(rec.recs[1].item, 0);
    CHECK_EQ(rec.recs[2].item, 4);
    CHECK_EQ(mc_conn_feed(m.parts[2].conn, cfg.max_value, &need, &f), 0);
    CHECK(!mc_multi_part_check(&m.parts[2]));  /* "END\r" is not all */
    arrive_str(m.parts[2].conn, "\n");
    CHECK_EQ(mc_conn_feed(m.parts[2].conn, cfg.max_value, &need, &f), 0);
    CHECK(mc_multi_part_check(&m.parts[2]));
    CHECK_EQ(m.parts[2].fail.code, 0);
    CHECK_EQ(rec.n, 3);
    for (size_t i = 0; i < 3; i++) {
        mc_engine_give(&e, m.parts[i].conn);
        m.parts[i].conn = NULL;
    }
    CHECK_EQ(e.servers[0].nidle, 1);
    mc_multi_free(&m);
    close_peers(peers, 3);
    /* the pools are dropped with the peers gone */
    struct mc_conn *idle = mc_engine_take_all_idle(&e);
    while (idle != NULL) {
        struct mc_conn *next = idle->next;
        mc_conn_close(idle);
        idle = next;
    }

    set_ctx("gets with a prefix, a failed part");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 5), 0);
    const char *pk[] = {"a", "b", "c", "d", "e"};
    multi_keys(&m, pk, 5, "ns:");
    m.cmd = "gets";
    m.with_cas = true;
    memset(&rec, 0, sizeof rec);
    rec.fail_at = -1;
    m.on_item = record_item;
    m.owner = &rec;
    CHECK_EQ(mc_multi_place(&m), 0);
    size_t total = 0;
    for (size_t i = 0; i < m.nparts; i++) {
        total += m.parts[i].nitems;
        for (size_t j = 0; j < m.parts[i].nitems; j++) {
            size_t it = m.parts[i].items[j];
            char full[8];
            snprintf(full, sizeof full, "ns:%s", pk[it]);
            CHECK_EQ(pick(&e, NULL, full),
                     m.parts[i].srv - e.servers);
        }
    }
    CHECK_EQ(total, 5);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    struct mc_part *p0 = &m.parts[0];
    n = queued(p0->conn, out, sizeof out);
    char want[128];
    size_t wn = (size_t)snprintf(want, sizeof want, "gets");
    for (size_t j = 0; j < p0->nitems; j++) {
        wn += (size_t)snprintf(want + wn, sizeof want - wn, " ns:%s",
                               pk[p0->items[j]]);
    }
    wn += (size_t)snprintf(want + wn, sizeof want - wn, "\r\n");
    CHECK_BYTES(out, n, want);
    CHECK(p0->req.with_cas);
    /* a VALUE without its cas: out of sync */
    char reply[128];
    snprintf(reply, sizeof reply, "VALUE ns:%s 0 1\r\nz\r\nEND\r\n",
             pk[p0->items[0]]);
    arrive_str(p0->conn, reply);
    all_written(p0->conn);
    CHECK_EQ(mc_conn_feed(p0->conn, cfg.max_value, &need, &f),
             MC_FEED_BROKEN);
    CHECK_EQ(f.code, MC_EBADREPLY);
    CHECK(strcmp(f.text, "VALUE without cas") == 0);
    CHECK(!mc_multi_part_check(p0));
    mc_conn_fail_all(p0->conn, &f);
    CHECK(mc_multi_part_check(p0));
    CHECK_EQ(p0->fail.code, MC_EBADREPLY);
    CHECK_EQ(rec.n, 0);
    if (m.nparts > 1) {
        struct mc_part *p1 = &m.parts[1];
        snprintf(reply, sizeof reply, "VALUE ns:%s 3 1 99\r\nz\r\nEND\r\n",
                 pk[p1->items[p1->nitems - 1]]);
        arrive_str(p1->conn, reply);
        all_written(p1->conn);
        CHECK_EQ(mc_conn_feed(p1->conn, cfg.max_value, &need, &f), 0);
        CHECK(mc_multi_part_check(p1));
        CHECK_EQ(p1->fail.code, 0);
        CHECK_EQ(rec.n, 1);
        CHECK_EQ(rec.recs[0].item, p1->items[p1->nitems - 1]);
        CHECK(rec.recs[0].has_cas);
        CHECK_EQ(rec.recs[0].cas, 99);
    }
    mc_multi_free(&m);           /* closes the connections still held */
    for (size_t i = 0; i < 3; i++) {
        if (peers[i] >= 0) {
            CHECK_EQ(peer_state(peers[i]), 1);
        }
    }
    close_peers(peers, 3);

    set_ctx("gat: exptime, lines split under 2048 bytes");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 40), 0);
    static char longk[40][64];
    const char *lk[40];
    int got_keys = 0;           /* 40 keys of server 0 */
    for (int i = 0; got_keys < 40 && i < 100000; i++) {
        char k[64];
        snprintf(k, sizeof k, "%049d", i);  /* 49 bytes */
        if (pick(&e, NULL, k) == 0) {
            memcpy(longk[got_keys], k, 50);
            lk[got_keys] = longk[got_keys];
            got_keys++;
        }
    }
    CHECK_EQ(got_keys, 40);
    multi_keys(&m, lk, 40, NULL);
    m.cmd = "gat";
    m.touch = true;
    m.exptime = -1;
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(m.nparts, 1);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    /* "gat -1" + 37 keys of 50 = 1856 bytes; the next would pass 1900 */
    size_t lines = 0, at = 0, keys_seen = 0;
    while (at < n) {
        const char *nl = memchr(out + at, '\n', n - at);
        CHECK(nl != NULL);
        if (nl == NULL) {
            break;
        }
        size_t len = (size_t)(nl - (out + at)) + 1;
        CHECK(len <= 1902);
        CHECK(memcmp(out + at, "gat -1 ", 7) == 0);
        for (size_t j = at + 6; j < at + len - 2; j += 50) {
            CHECK(out[j] == ' ');
            CHECK(memcmp(out + j + 1, lk[keys_seen], 49) == 0);
            keys_seen++;
        }
        at += len;
        lines++;
    }
    CHECK_EQ(keys_seen, 40);
    CHECK_EQ(lines, 2);
    CHECK_EQ(m.parts[0].req.ends, 2);
    /* one END per line */
    all_written(m.parts[0].conn);
    char vbuf[200];
    snprintf(vbuf, sizeof vbuf, "VALUE %s 0 1\r\nq\r\nEND\r\nVALUE %s 0 1\r\n"
             "r\r\nEND\r\n", lk[0], lk[39]);
    memset(&rec, 0, sizeof rec);
    rec.fail_at = -1;
    m.parts[0].req.on_item = record_item;
    m.parts[0].req.owner = &rec;
    arrive_str(m.parts[0].conn, vbuf);
    CHECK_EQ(mc_conn_feed(m.parts[0].conn, cfg.max_value, &need, &f), 0);
    CHECK(mc_multi_part_check(&m.parts[0]));
    CHECK_EQ(rec.n, 2);
    CHECK_EQ(rec.recs[0].item, 0);
    CHECK_EQ(rec.recs[1].item, 39);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("get: lines split at 16384 bytes");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 400), 0);
    static char bigk[400][64];
    const char *bk[400];
    got_keys = 0;
    for (int i = 0; got_keys < 400 && i < 1000000; i++) {
        char k[64];
        snprintf(k, sizeof k, "k%048d", i);  /* 49 bytes */
        if (pick(&e, NULL, k) == 1) {
            memcpy(bigk[got_keys], k, 50);
            bk[got_keys] = bigk[got_keys];
            got_keys++;
        }
    }
    multi_keys(&m, bk, 400, NULL);
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(m.nparts, 1);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    /* "get" + 327 keys of 50 = 16353; the 328th would pass 16384 */
    CHECK_EQ(n, 3 + 327 * 50 + 2 + 3 + 73 * 50 + 2);
    CHECK(n > 16360 && memcmp(out + 16353, "\r\nget ", 6) == 0);
    CHECK_EQ(m.parts[0].req.ends, 2);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("set: headers and values");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_SET, 5), 0);
    const char *sk[] = {"foo", "key-2", "foo", "key-4", "key-2"};
    const char *sv[] = {"abc", "", "0123456789", "v", "\r\n"};
    const uint32_t sf[] = {5, 0, 4294967295u, 16, 2};
    multi_keys(&m, sk, 5, NULL);
    for (size_t i = 0; i < 5; i++) {
        m.items[i].val = sv[i];
        m.items[i].val_len = strlen(sv[i]);
        m.items[i].flags = sf[i];
    }
    m.exptime = 300;
    memset(&rec, 0, sizeof rec);
    rec.fail_at = -1;
    m.on_item = record_item;
    m.owner = &rec;
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(m.nparts, 3);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    size_t nparts = m.nparts;
    static const char *const replies[] = {
        "STORED\r\n", "NOT_STORED\r\n", "SERVER_ERROR out of memory\r\n",
        "EXISTS\r\n", "NOT_FOUND\r\n"};
    static const enum mc_kind rkinds[] = {MC_STORED, MC_NOT_STORED,
                                          MC_SERVER_ERROR, MC_EXISTS,
                                          MC_NOT_FOUND};
    size_t r_at = 0;
    for (size_t i = 0; i < nparts; i++) {
        struct mc_part *p = &m.parts[i];
        char w2[512];
        size_t k = 0;
        for (size_t j = 0; j < p->nitems; j++) {
            const struct mc_item *it = &m.items[p->items[j]];
            k += (size_t)snprintf(w2 + k, sizeof w2 - k,
                                  "set %s %u 300 %zu\r\n", it->wk.key,
                                  (unsigned)it->flags, it->val_len);
            memcpy(w2 + k, it->val, it->val_len);
            k += it->val_len;
            memcpy(w2 + k, "\r\n", 3);
            k += 2;
        }
        n = queued(p->conn, out, sizeof out);
        CHECK_BYTES(out, n, w2);
        /* the values are not copied: iovecs point into the caller's */
        struct mc_out o = mc_conn_out(p->conn);
        size_t pointing = 0, nonempty = 0;
        for (size_t j = 0; j < p->nitems; j++) {
            const struct mc_item *it = &m.items[p->items[j]];
            nonempty += it->val_len > 0;
            for (int q = 0; q < o.iovcnt; q++) {
                pointing += o.iov[q].iov_base == (const void *)it->val
                            && o.iov[q].iov_len == it->val_len
                            && it->val_len > 0;
            }
        }
        CHECK_EQ(pointing, nonempty);
        CHECK_EQ(p->req.expect, MC_X_STATUS);
        CHECK_EQ(p->req.nitems, p->nitems);
        CHECK(p->req.soft_errors);
        all_written(p->conn);
        size_t first = rec.n;
        for (size_t j = 0; j < p->nitems; j++) {
            arrive_str(p->conn, replies[(r_at + j) % 5]);
        }
        CHECK_EQ(mc_conn_feed(p->conn, cfg.max_value, &need, &f), 0);
        CHECK(mc_multi_part_check(p));
        CHECK_EQ(p->fail.code, 0);
        CHECK_EQ(rec.n, first + p->nitems);
        for (size_t j = 0; j < p->nitems && first + j < 64; j++) {
            CHECK_EQ(rec.recs[first + j].item, p->items[j]);
            CHECK_EQ(rec.recs[first + j].kind, rkinds[(r_at + j) % 5]);
        }
        r_at += p->nitems;
    }
    CHECK_EQ(rec.n, 5);
    mc_multi_free(&m);
    close_peers(peers, nparts);

    set_ctx("set: a reply outside what a set may answer");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_SET, 2), 0);
    multi_keys(&m, sk, 1, "p-");
    m.items[0].val = "v";
    m.items[0].val_len = 1;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    CHECK_BYTES(out, n, "set p-foo 0 0 1\r\nv\r\n");
    all_written(m.parts[0].conn);
    arrive_str(m.parts[0].conn, "DELETED\r\n");
    CHECK_EQ(mc_conn_feed(m.parts[0].conn, cfg.max_value, &need, &f),
             MC_FEED_BROKEN);
    CHECK_EQ(f.code, MC_EBADREPLY);
    CHECK(strcmp(f.text, "reply does not fit the command") == 0);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("set noreply, fenced");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_SET, 1), 0);
    multi_keys(&m, sk, 1, NULL);
    m.items[0].val = "xy";
    m.items[0].val_len = 2;
    m.noreply = true;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK(m.parts[0].fenced);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    CHECK_BYTES(out, n, "set foo 0 0 2 noreply\r\nxy\r\nmn\r\n");
    CHECK(m.parts[0].conn->head == NULL);
    CHECK_EQ(m.parts[0].conn->fences, 1);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("delete");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_DELETE, 2), 0);
    const char *dk[] = {"foo", "foo"};
    multi_keys(&m, dk, 2, NULL);
    memset(&rec, 0, sizeof rec);
    rec.fail_at = -1;
    m.on_item = record_item;
    m.owner = &rec;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    CHECK_BYTES(out, n, "delete foo\r\ndelete foo\r\n");
    all_written(m.parts[0].conn);
    arrive_str(m.parts[0].conn, "DELETED\r\nNOT_FOUND\r\n");
    CHECK_EQ(mc_conn_feed(m.parts[0].conn, cfg.max_value, &need, &f), 0);
    CHECK(mc_multi_part_check(&m.parts[0]));
    CHECK_EQ(rec.n, 2);
    CHECK_EQ(rec.recs[0].kind, MC_DELETED);
    CHECK_EQ(rec.recs[1].kind, MC_NOT_FOUND);
    CHECK_EQ(rec.recs[1].item, 1);
    mc_multi_free(&m);
    close_peers(peers, 1);
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_DELETE, 1), 0);
    multi_keys(&m, dk, 1, "x");
    m.noreply = true;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    CHECK_BYTES(out, n, "delete xfoo noreply\r\nmn\r\n");
    CHECK(m.parts[0].conn->head == NULL);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("a key with no server");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 2), 0);
    multi_keys(&m, keys, 2, NULL);
    m.items[1].place.nowhere = true;
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(m.items[1].server, -1);
    CHECK_EQ(m.nparts, 1);
    CHECK_EQ(m.parts[0].nitems, 1);
    CHECK_EQ(m.parts[0].items[0], 0);
    mc_multi_free(&m);
    mc_engine_free(&e);

    /* Failover while taking the connections: a server whose connect fails
     * is held down and its keys are placed again. */
    set_ctx("place again after a failed connect");
    cfg = config();
    cfg.failover = MC_FAILOVER_NEXT;
    make_engine(&e, &cfg, three, 3, MC_DIST_KETAMA, MC_HASH_MD5, NULL);
    static char ck[30][16];
    const char *ckp[30];
    ssize_t home[30];
    for (int i = 0; i < 30; i++) {
        snprintf(ck[i], sizeof ck[i], "key-%d", i);
        ckp[i] = ck[i];
        home[i] = pick(&e, NULL, ck[i]);
    }
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 30), 0);
    multi_keys(&m, ckp, 30, NULL);
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(m.nparts, 3);
    for (size_t i = 0; i < m.nparts; i++) {
        struct mc_part *p = &m.parts[i];
        peers[i] = -1;
        CHECK_EQ(mc_engine_take(&e, p->srv, &p->conn), MC_TAKE_CONNECT);
        if (p->srv == &e.servers[1]) {
            p->conn = mc_engine_connected(&e, p->srv, -ECONNREFUSED, 0,
                                          &p->fail);
            CHECK(p->conn == NULL);
            mc_multi_part_failed(&m, p);
        }
        else {
            p->conn = connect_pair(&e, p->srv, &peers[i]);
        }
    }
    CHECK(m.connect_srv == &e.servers[1]);
    CHECK_EQ(m.connect_fail.code, -ECONNREFUSED);
    CHECK(mc_multi_replace(&m, false));
    CHECK(!mc_multi_replace(&m, true));  /* the last attempt */
    for (size_t i = 0; i < m.nparts; i++) {
        if (m.parts[i].conn != NULL) {
            mc_engine_give(&e, m.parts[i].conn);
            m.parts[i].conn = NULL;
        }
    }
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(m.nparts, 2);
    for (int i = 0; i < 30; i++) {
        CHECK(m.items[i].server == 0 || m.items[i].server == 2);
        if (home[i] != 1) {
            CHECK_EQ(m.items[i].server, home[i]);
        }
    }
    multi_connect(&e, &m, peers + 3);
    for (size_t i = 0; i < m.nparts; i++) {
        CHECK(m.parts[i].conn != NULL);
        CHECK(m.parts[i].conn->reused);  /* from the pools */
        CHECK(!m.parts[i].done);
    }
    CHECK(!mc_multi_replace(&m, false));
    mc_multi_free(&m);
    close_peers(peers, 3);
    mc_engine_free(&e);

    set_ctx("no failover: the part fails, its keys stay");
    cfg.failover = MC_FAILOVER_NONE;
    make_engine(&e, &cfg, three, 3, MC_DIST_KETAMA, MC_HASH_MD5, NULL);
    mc_engine_mark_dead(&e, 1, SEC);
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 30), 0);
    multi_keys(&m, ckp, 30, NULL);
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(m.nparts, 3);
    multi_connect(&e, &m, peers);
    CHECK(m.parts[1].conn == NULL);
    CHECK(m.parts[1].done);
    CHECK_EQ(m.parts[1].fail.code, MC_EDEAD);
    CHECK(m.connect_srv == NULL);  /* held down is no connect failure */
    CHECK(!mc_multi_replace(&m, false));
    CHECK_EQ(mc_multi_queue(&m), 0);
    CHECK(m.parts[0].conn->head == &m.parts[0].req);
    mc_multi_free(&m);
    close_peers(peers, 3);
    mc_engine_free(&e);
}

/* protocol="meta": each server's request as mg/ms/md lines, each with its
 * opaque token (item i of a part O<opaque + i>), and the replies read as
 * the text ones. */
static void
test_multi_meta(void)
{
    struct mc_config cfg = config();
    cfg.meta = true;
    struct mc_engine e;
    const char *one[] = {"127.0.0.1:11211"};
    make_engine(&e, &cfg, one, 1, MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160,
                NULL);
    struct mc_multi m;
    struct recorder rec;
    char out[4096];
    size_t n, need;
    struct mc_fail f;
    int peers[2];
    const char *keys[] = {"a", "bb", "c"};

    set_ctx("meta get: quiet mg lines, then mn");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 3), 0);
    multi_keys(&m, keys, 3, NULL);
    m.opaque = 7;
    memset(&rec, 0, sizeof rec);
    rec.fail_at = -1;
    m.on_item = record_item;
    m.owner = &rec;
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(m.nparts, 1);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    struct mc_part *p = &m.parts[0];
    n = queued(p->conn, out, sizeof out);
    CHECK_BYTES(out, n, "mg a v f O7 q\r\nmg bb v f O8 q\r\nmg c v f O9 q\r\n"
                        "mn\r\n");
    CHECK(p->conn->head == &p->req);
    CHECK_EQ(p->req.expect, MC_X_META);
    CHECK_EQ(p->req.as, MC_AS_GET);
    CHECK(p->req.quiet);
    CHECK(p->req.check_opaque);
    CHECK_EQ(p->req.opaque, 7);
    CHECK_EQ(p->req.nitems, 3);
    CHECK(p->req.index == p->items);
    CHECK(!p->req.with_cas);
    all_written(p->conn);
    arrive_str(p->conn, "VA 2 f3 O8\r\nhi\r\nMN\r\n");
    CHECK_EQ(mc_conn_feed(p->conn, cfg.max_value, &need, &f), 0);
    CHECK(mc_multi_part_check(p));
    CHECK_EQ(p->fail.code, 0);
    CHECK_EQ(rec.n, 1);
    CHECK_EQ(rec.recs[0].item, 1);
    CHECK_EQ(rec.recs[0].kind, MC_VALUE);
    CHECK_EQ(rec.recs[0].flags, 3);
    CHECK_BYTES(rec.recs[0].value, rec.recs[0].value_len, "hi");
    CHECK(!rec.recs[0].has_cas);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("meta gets: c, a key prefix joined into the key");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 2), 0);
    multi_keys(&m, keys, 2, "ns:");
    m.cmd = "gets";
    m.with_cas = true;
    m.opaque = 4294967295u;
    memset(&rec, 0, sizeof rec);
    rec.fail_at = -1;
    m.on_item = record_item;
    m.owner = &rec;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    p = &m.parts[0];
    n = queued(p->conn, out, sizeof out);
    CHECK_BYTES(out, n, "mg ns:a v f c O4294967295 q\r\n"
                        "mg ns:bb v f c O0 q\r\nmn\r\n");
    CHECK(p->req.with_cas);
    all_written(p->conn);
    arrive_str(p->conn, "VA 1 f0 c42 O0\r\nz\r\nMN\r\n");
    CHECK_EQ(mc_conn_feed(p->conn, cfg.max_value, &need, &f), 0);
    CHECK(mc_multi_part_check(p));
    CHECK_EQ(p->fail.code, 0);
    CHECK_EQ(rec.n, 1);
    CHECK_EQ(rec.recs[0].item, 1);
    CHECK(rec.recs[0].has_cas);
    CHECK_EQ(rec.recs[0].cas, 42);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("meta gat: T before the return flags");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 1), 0);
    multi_keys(&m, keys, 1, NULL);
    m.cmd = "gat";
    m.touch = true;
    m.exptime = 30;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    CHECK_BYTES(out, n, "mg a T30 v f O0 q\r\nmn\r\n");
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("meta gats");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 1), 0);
    multi_keys(&m, keys, 1, NULL);
    m.cmd = "gats";
    m.touch = true;
    m.with_cas = true;
    m.exptime = -1;
    m.opaque = 12;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    CHECK_BYTES(out, n, "mg a T-1 v f c O12 q\r\nmn\r\n");
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("meta set: ms lines with F and T, the values, CRLF");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_SET, 3), 0);
    const char *sv[] = {"abc", "", "\r\n"};
    const uint32_t sf[] = {5, 0, 4294967295u};
    multi_keys(&m, keys, 3, NULL);
    for (size_t i = 0; i < 3; i++) {
        m.items[i].val = sv[i];
        m.items[i].val_len = strlen(sv[i]);
        m.items[i].flags = sf[i];
    }
    m.exptime = 300;
    m.opaque = 20;
    memset(&rec, 0, sizeof rec);
    rec.fail_at = -1;
    m.on_item = record_item;
    m.owner = &rec;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    p = &m.parts[0];
    n = queued(p->conn, out, sizeof out);
    CHECK_BYTES(out, n, "ms a 3 T300 F5 O20\r\nabc\r\n"
                        "ms bb 0 T300 O21\r\n\r\n"
                        "ms c 2 T300 F4294967295 O22\r\n\r\n\r\n");
    /* the values are not copied: iovecs point into the caller's */
    struct mc_out o = mc_conn_out(p->conn);
    size_t pointing = 0;
    for (int q = 0; q < o.iovcnt; q++) {
        for (size_t j = 0; j < 3; j++) {
            pointing += o.iov[q].iov_base == (const void *)sv[j]
                        && o.iov[q].iov_len == strlen(sv[j])
                        && sv[j][0] != '\0';
        }
    }
    CHECK_EQ(pointing, 2);
    CHECK_EQ(p->req.expect, MC_X_META);
    CHECK_EQ(p->req.as, MC_AS_STORE);
    CHECK(!p->req.quiet);
    CHECK(p->req.soft_errors);
    CHECK(p->req.check_opaque);
    CHECK_EQ(p->req.opaque, 20);
    CHECK_EQ(p->req.nitems, 3);
    all_written(p->conn);
    arrive_str(p->conn, "HD O20\r\nSERVER_ERROR object too large for cache"
                        "\r\nNS O22\r\n");
    CHECK_EQ(mc_conn_feed(p->conn, cfg.max_value, &need, &f), 0);
    CHECK(mc_multi_part_check(p));
    CHECK_EQ(p->fail.code, 0);
    CHECK_EQ(rec.n, 3);
    CHECK_EQ(rec.recs[0].kind, MC_STORED);
    CHECK_EQ(rec.recs[1].kind, MC_SERVER_ERROR);
    CHECK_EQ(rec.recs[1].item, 1);
    CHECK_EQ(rec.recs[2].kind, MC_NOT_STORED);
    CHECK_EQ(rec.recs[2].item, 2);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("meta set: no exptime, no flags");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_SET, 1), 0);
    multi_keys(&m, keys, 1, "p-");
    m.items[0].val = "v";
    m.items[0].val_len = 1;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    CHECK_BYTES(out, n, "ms p-a 1 O0\r\nv\r\n");
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("meta set noreply: q, no O, the fence");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_SET, 2), 0);
    multi_keys(&m, keys, 2, NULL);
    m.items[0].val = "xy";
    m.items[0].val_len = 2;
    m.items[0].flags = 1;
    m.items[1].val = "z";
    m.items[1].val_len = 1;
    m.exptime = 5;
    m.noreply = true;
    m.opaque = 3;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK(m.parts[0].fenced);
    CHECK_EQ(mc_multi_queue(&m), 0);
    p = &m.parts[0];
    n = queued(p->conn, out, sizeof out);
    CHECK_BYTES(out, n, "ms a 2 T5 F1 q\r\nxy\r\nms bb 1 T5 q\r\nz\r\n"
                        "mn\r\n");
    CHECK(p->conn->head == NULL);
    CHECK_EQ(p->conn->fences, 1);
    all_written(p->conn);
    arrive_str(p->conn, "NS\r\nMN\r\n");
    CHECK_EQ(mc_conn_drain_owed(p->conn), 1);
    CHECK_EQ(p->conn->fences, 0);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("meta delete: md lines with O");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_DELETE, 2), 0);
    multi_keys(&m, keys, 2, "x:");
    m.opaque = 100;
    memset(&rec, 0, sizeof rec);
    rec.fail_at = -1;
    m.on_item = record_item;
    m.owner = &rec;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    p = &m.parts[0];
    n = queued(p->conn, out, sizeof out);
    CHECK_BYTES(out, n, "md x:a O100\r\nmd x:bb O101\r\n");
    CHECK_EQ(p->req.as, MC_AS_DELETE);
    CHECK(!p->req.quiet);
    CHECK(!p->req.soft_errors);
    all_written(p->conn);
    arrive_str(p->conn, "NF O100\r\nHD O101\r\n");
    CHECK_EQ(mc_conn_feed(p->conn, cfg.max_value, &need, &f), 0);
    CHECK(mc_multi_part_check(p));
    CHECK_EQ(rec.n, 2);
    CHECK_EQ(rec.recs[0].kind, MC_NOT_FOUND);
    CHECK_EQ(rec.recs[1].kind, MC_DELETED);
    CHECK_EQ(rec.recs[1].item, 1);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("meta delete noreply");
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_DELETE, 1), 0);
    multi_keys(&m, keys, 1, NULL);
    m.noreply = true;
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    CHECK_BYTES(out, n, "md a q\r\nmn\r\n");
    CHECK(m.parts[0].conn->head == NULL);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("meta get: a 250-byte key with its prefix");
    static char longk[248];
    memset(longk, 'k', sizeof longk - 1);
    longk[sizeof longk - 1] = '\0';
    const char *lk[] = {longk};
    CHECK_EQ(mc_multi_init(&m, &e, MC_MULTI_GET, 1), 0);
    multi_keys(&m, lk, 1, "ns:");
    CHECK_EQ(m.items[0].wk.pre_len + m.items[0].wk.key_len, 250);
    CHECK_EQ(mc_multi_place(&m), 0);
    multi_connect(&e, &m, peers);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    char want[400];
    snprintf(want, sizeof want, "mg ns:%s v f O0 q\r\nmn\r\n", longk);
    CHECK_BYTES(out, n, want);
    mc_multi_free(&m);
    close_peers(peers, 1);

    set_ctx("meta: several servers, tokens counted per part");
    const char *three[] = {"127.0.0.1:11211", "127.0.0.1:11212",
                           "127.0.0.1:11213"};
    struct mc_engine e3;
    make_engine(&e3, &cfg, three, 3, MC_DIST_PYTHON_MEMCACHED,
                MC_HASH_PM160, NULL);
    /* key-2 on server 0, foo on 1, key-4 on 2 (see test_multi) */
    const char *mk[] = {"foo", "key-2", "key-4", "key-2", "foo"};
    CHECK_EQ(mc_multi_init(&m, &e3, MC_MULTI_DELETE, 5), 0);
    multi_keys(&m, mk, 5, NULL);
    m.opaque = 50;
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(m.nparts, 3);
    int peers3[3];
    multi_connect(&e3, &m, peers3);
    CHECK_EQ(mc_multi_queue(&m), 0);
    n = queued(m.parts[0].conn, out, sizeof out);
    CHECK_BYTES(out, n, "md key-2 O50\r\nmd key-2 O51\r\n");
    n = queued(m.parts[1].conn, out, sizeof out);
    CHECK_BYTES(out, n, "md foo O50\r\nmd foo O51\r\n");
    n = queued(m.parts[2].conn, out, sizeof out);
    CHECK_BYTES(out, n, "md key-4 O50\r\n");
    mc_multi_free(&m);
    close_peers(peers3, 3);

    set_ctx("meta get: mc_multi_build without a connection");
    CHECK_EQ(mc_multi_init(&m, &e3, MC_MULTI_GET, 2), 0);
    multi_keys(&m, mk, 2, NULL);
    m.opaque = 1;
    CHECK_EQ(mc_multi_place(&m), 0);
    CHECK_EQ(mc_multi_build(&m), 0);
    for (size_t i = 0; i < m.nparts; i++) {
        p = &m.parts[i];
        CHECK(p->conn == NULL);
        CHECK_EQ(p->niov, 1);
        CHECK_EQ(p->req.expect, MC_X_META);
        CHECK(p->req.quiet);
        char w[64];
        snprintf(w, sizeof w, "mg %s v f O1 q\r\nmn\r\n", mk[p->items[0]]);
        CHECK_BYTES(p->iov[0].iov_base, p->iov[0].iov_len, w);
    }
    mc_multi_free(&m);
    mc_engine_free(&e3);
    mc_engine_free(&e);
}

/* ------------------------------------------------------------------------ */
/* fork()                                                                    */

/* Waits for pid at most 10 s; returns its exit status, or -1. */
static int
wait_child(pid_t pid)
{
    for (int i = 0; i < 10000; i++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (r < 0 && errno != EINTR) {
            return -1;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    (void)waitpid(pid, NULL, 0);
    return -1;
}

static void
test_fork(void)
{
    struct mc_config cfg = config();
    struct mc_engine e;
    const char *two[] = {"127.0.0.1:11211", "127.0.0.1:11212"};
    make_engine(&e, &cfg, two, 2, MC_DIST_KETAMA, MC_HASH_MD5, NULL);
    struct mc_server *s = &e.servers[0];
    int pa, pb, pc;
    struct mc_conn *a = connect_pair(&e, s, &pa);
    struct mc_conn *b = connect_pair(&e, s, &pb);
    struct mc_conn *c1 = connect_pair(&e, &e.servers[1], &pc);
    mc_engine_give(&e, a);
    mc_engine_give(&e, c1);
    int afd = a->fd, c1fd = c1->fd;
    unsigned long gen = atomic_load(&mc_fork_generation);

    set_ctx("fork");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        int bad = 0;
        struct mc_conn *c = NULL;
        if (atomic_load(&mc_fork_generation) != gen + 1) {
            bad |= 1;
        }
        /* the parent's pooled connection is not the child's */
        if (mc_engine_take(&e, s, &c) != MC_TAKE_CONNECT || c != NULL) {
            bad |= 2;
        }
        if (s->nidle != 0 || s->idle != NULL || fd_open(afd)) {
            bad |= 4;            /* dropped, and its socket closed here */
        }
        /* a connection the parent had taken is closed, not pooled */
        int bfd = b->fd;
        mc_engine_give(&e, b);
        if (s->nidle != 0 || fd_open(bfd)) {
            bad |= 8;
        }
        /* the child's own connections are pooled as usual */
        int p;
        struct mc_conn *own = connect_pair(&e, s, &p);
        mc_engine_give(&e, own);
        if (mc_engine_take(&e, s, &c) != MC_TAKE_IDLE || c != own) {
            bad |= 16;
        }
        else {
            mc_engine_give(&e, c);
        }
        /* the other server's pool, dropped by take_all_idle */
        struct mc_conn *all = mc_engine_take_all_idle(&e);
        if (all != own || all->next != NULL || fd_open(c1fd)) {
            bad |= 32;
        }
        _exit(bad);
    }
    CHECK_EQ(wait_child(pid), 0);
    /* nothing was sent on the parent's connections, and they work here */
    CHECK_EQ(peer_state(pa), 0);
    CHECK_EQ(peer_state(pb), 0);
    CHECK_EQ(peer_state(pc), 0);
    CHECK_EQ(atomic_load(&mc_fork_generation), gen);
    struct mc_conn *c;
    CHECK_EQ(mc_engine_take(&e, s, &c), MC_TAKE_IDLE);
    CHECK(c == a);
    CHECK(fd_open(a->fd));
    mc_engine_give(&e, b);
    CHECK_EQ(s->nidle, 1);
    mc_engine_give(&e, a);
    CHECK_EQ(s->nidle, 2);
    mc_engine_free(&e);
    CHECK_EQ(peer_state(pa), 1);
    CHECK_EQ(peer_state(pb), 1);
    CHECK_EQ(peer_state(pc), 1);
    close(pa);
    close(pb);
    close(pc);
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */

#define T_THREADS 4
#define T_ITERS 20000
#define T_PEERS 64
#define T_MAXFD 65536

static atomic_int owner_of[T_MAXFD];   /* fd -> the thread holding it */
static atomic_ulong t_collisions;
static atomic_ulong t_forks_bad;

struct tstate {
    struct mc_engine *e;
    int id;
    uint64_t rng;
    int peers[T_PEERS];
    int npeers;
    unsigned long made, reaped, idle_taken, failed, dead, overflow;
};

static uint64_t
rnd(struct tstate *t)
{
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    return t->rng * 0x2545f4914f6cdd1dULL;
}

/* Closes this thread's peers whose connection the engine closed. */
static void
reap(struct tstate *t)
{
    for (int i = 0; i < t->npeers;) {
        if (peer_state(t->peers[i]) == 1) {
            close(t->peers[i]);
            t->peers[i] = t->peers[--t->npeers];
            t->reaped++;
        }
        else {
            i++;
        }
    }
}

static int
version_item(void *owner, struct mc_req *r, size_t item,
             const struct mc_reply *rep)
{
    (void)r;
    (void)item;
    *(int *)owner += rep->kind == MC_VERSION;
    return 0;
}

/* One request on a connection this thread holds. */
static void
use_conn(struct tstate *t, struct mc_conn *c)
{
    struct mc_req req;
    int got = 0;
    mc_req_init(&req, MC_X_VERSION);
    req.on_item = version_item;
    req.owner = &got;
    struct iovec v = {(void *)"version\r\n", 9};
    CHECK_EQ(mc_conn_queue(c, &req, &v, 1, false), 0);
    all_written(c);
    arrive_str(c, "VERSION 1.6.21\r\n");
    struct mc_fail f;
    size_t need;
    CHECK_EQ(mc_conn_feed(c, t->e->cfg.max_value, &need, &f), 0);
    CHECK_EQ(req.state, MC_REQ_DONE);
    CHECK_EQ(got, 1);
}

static void
own(struct tstate *t, struct mc_conn *c)
{
    if (c->fd < 0 || c->fd >= T_MAXFD
        || atomic_exchange(&owner_of[c->fd], t->id + 1) != 0) {
        atomic_fetch_add(&t_collisions, 1);
    }
}

static void
disown(struct mc_conn *c)
{
    if (c->fd >= 0 && c->fd < T_MAXFD) {
        atomic_store(&owner_of[c->fd], 0);
    }
}

/* Forks while the other threads work; the child takes from every pool.
 * It answers through a pipe: its exit status is not its own under
 * valgrind, which counts the memory of the threads that were not copied as
 * lost. */
static void
fork_child_check(struct mc_engine *e)
{
    int p[2];
    if (pipe(p) != 0) {
        atomic_fetch_add(&t_forks_bad, 1);
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        atomic_fetch_add(&t_forks_bad, 1);
        close(p[0]);
        close(p[1]);
        return;
    }
    if (pid == 0) {
        /* the engine's lock is free here and no pooled connection of the
         * parent comes back */
        char bad = 'K';
        for (size_t i = 0; i < e->nservers; i++) {
            struct mc_conn *c = NULL;
            enum mc_take tk = mc_engine_take(e, &e->servers[i], &c);
            if (tk == MC_TAKE_IDLE || c != NULL
                || e->servers[i].nidle != 0) {
                bad = 'B';
            }
        }
        ssize_t w = write(p[1], &bad, 1);
        _exit(w == 1 ? 0 : 1);
    }
    close(p[1]);
    int st = wait_child(pid);
    char got = 0;
    ssize_t r = read(p[0], &got, 1);
    close(p[0]);
    if (st < 0 || st >= 128 || r != 1 || got != 'K') {
        fprintf(stderr, "fork check: status %d, answer %c\n", st,
                r == 1 ? got : '-');
        atomic_fetch_add(&t_forks_bad, 1);
    }
}

static void *
worker(void *arg)
{
    struct tstate *t = arg;
    struct mc_engine *e = t->e;
    for (int it = 0; it < T_ITERS; it++) {
        advance(MS);             /* time passes with every thread's work */
        char key[24];
        snprintf(key, sizeof key, "key-%u", (unsigned)(rnd(t) % 1000));
        ssize_t idx = pick(e, NULL, key);
        if (idx < 0) {
            t->dead++;
            continue;
        }
        struct mc_server *srv = &e->servers[idx];
        struct mc_conn *c = NULL;
        switch (mc_engine_take(e, srv, &c)) {
        case MC_TAKE_IDLE:
            t->idle_taken++;
            own(t, c);
            CHECK(c->srv == srv);
            CHECK(c->head == NULL && c->reused);
            break;
        case MC_TAKE_DEAD:
            t->dead++;
            continue;
        case MC_TAKE_CONNECT:
            if (rnd(t) % 64 == 0) {
                struct mc_fail f;
                CHECK(mc_engine_connected(e, srv, -ECONNREFUSED, 0, &f)
                      == NULL);
                t->failed++;
                continue;
            }
            if (t->npeers == T_PEERS) {
                reap(t);
            }
            if (t->npeers == T_PEERS) {
                t->overflow++;   /* more connections open than allowed */
                struct mc_fail f;
                (void)mc_engine_connected(e, srv, MC_EOWNER, 0, &f);
                continue;
            }
            c = connect_pair(e, srv, &t->peers[t->npeers++]);
            t->made++;
            own(t, c);
            break;
        }
        use_conn(t, c);
        disown(c);
        if (rnd(t) % 32 == 0) {
            mc_conn_close(c);    /* as after an error */
        }
        else {
            mc_engine_give(e, c);
        }
        if (it % 64 == 0) {
            reap(t);
        }
        if (t->id == 0) {
            if (it % 1500 == 0) {
                mc_engine_timed_out(e, &e->servers[rnd(t) % e->nservers]);
            }
            if (it % 3000 == 0) {
                mc_engine_mark_dead(e, rnd(t) % e->nservers, 500 * MS);
            }
            if (it % 4000 == 0) {
                struct mc_conn *all = mc_engine_take_all_idle(e);
                while (all != NULL) {
                    struct mc_conn *next = all->next;
                    mc_conn_close(all);
                    all = next;
                }
            }
            if (it % 5000 == 2500) {
                fork_child_check(e);
            }
            if (it % 7000 == 0) {
                mc_engine_forget_dead(e);
            }
        }
    }
    reap(t);
    return NULL;
}

static void
test_threads(void)
{
    struct mc_config cfg = config();
    cfg.failover = MC_FAILOVER_NEXT;
    cfg.dead_retry = 2 * SEC;
    struct mc_engine e;
    const char *three[] = {"127.0.0.1:11211", "127.0.0.1:11212",
                           "127.0.0.1:11213"};
    make_engine(&e, &cfg, three, 3, MC_DIST_KETAMA, MC_HASH_MD5, NULL);

    set_ctx("threads taking and giving");
    pthread_t th[T_THREADS];
    static struct tstate ts[T_THREADS];
    for (int i = 0; i < T_THREADS; i++) {
        memset(&ts[i], 0, sizeof ts[i]);
        ts[i].e = &e;
        ts[i].id = i;
        ts[i].rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
        if (pthread_create(&th[i], NULL, worker, &ts[i]) != 0) {
            perror("pthread_create");
            exit(2);
        }
    }
    for (int i = 0; i < T_THREADS; i++) {
        pthread_join(th[i], NULL);
    }

    for (int i = 0; i < T_THREADS; i++) {
        reap(&ts[i]);            /* closed by another thread after its end */
    }
    unsigned long made = 0, reaped = 0, idle = 0, failed = 0, overflow = 0;
    int open_peers = 0;
    for (int i = 0; i < T_THREADS; i++) {
        made += ts[i].made;
        reaped += ts[i].reaped;
        idle += ts[i].idle_taken;
        failed += ts[i].failed;
        overflow += ts[i].overflow;
        open_peers += ts[i].npeers;
    }
    unsigned long dead = 0;
    for (int i = 0; i < T_THREADS; i++) {
        dead += ts[i].dead;
    }
    printf("threads: %lu connects, %lu idle takes, %lu failed connects, "
           "%lu held down\n", made, idle, failed, dead);
    CHECK_EQ(atomic_load(&t_collisions), 0);
    CHECK_EQ(atomic_load(&t_forks_bad), 0);
    CHECK_EQ(overflow, 0);
    CHECK(idle > made);          /* the pools were used */
    CHECK(failed > 0);
    /* the pools: within their limit, each list as long as its count, and
     * every connection still open is in one */
    size_t pooled = 0;
    for (size_t i = 0; i < e.nservers; i++) {
        struct mc_server *s = &e.servers[i];
        CHECK(s->nidle >= 0 && s->nidle <= cfg.pool_size);
        CHECK_EQ(pool_length(s), (size_t)s->nidle);
        CHECK(!s->probing);
        for (struct mc_conn *c = s->idle; c != NULL; c = c->next) {
            CHECK(c->srv == s);
            CHECK(c->head == NULL && mc_conn_written(c));
            CHECK_EQ(atomic_load(&owner_of[c->fd]), 0);
        }
        pooled += (size_t)s->nidle;
    }
    CHECK_EQ((size_t)open_peers, pooled);
    CHECK_EQ(made, reaped + pooled);
    mc_engine_free(&e);
    for (int i = 0; i < T_THREADS; i++) {
        reap(&ts[i]);
        CHECK_EQ(ts[i].npeers, 0);
    }
    unsigned long after = 0;
    for (int i = 0; i < T_THREADS; i++) {
        after += ts[i].reaped;
    }
    CHECK_EQ(after, made);
}

int
main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && strcmp(argv[1], "threads") == 0) {
        test_threads();
        return check_summary();
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s [threads]\n", argv[0]);
        return 2;
    }
    test_specs();
    test_pool();
    test_holddown();
    test_pick();
    test_multi();
    test_multi_meta();
    test_fork();
    test_threads();
    return check_summary();
}
