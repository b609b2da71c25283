/* What the engine tests (test_engine.c, test_pipe.c) share: the
 * configuration they start from, connections over socketpairs, and the
 * bytes a connection has queued to write, read and marked written as a
 * driver would.
 */
#ifndef CMEMCACHE_TEST_ENGINE_TEST_H
#define CMEMCACHE_TEST_ENGINE_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"
#include "engine.h"
#include "pipe.h"

#define SEC 1000000000LL

/* 1 s timeouts, 8 s dead_retry, 1 MiB values, fences, no failover. */
static inline struct mc_config
engine_config(int pool_size)
{
    struct mc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.timeout = SEC;
    cfg.connect_timeout = SEC;
    cfg.dead_retry = 8 * SEC;
    cfg.max_value = 1 << 20;
    cfg.pool_size = pool_size;
    cfg.timeout_limit = 3;
    cfg.fence = true;
    cfg.failover = MC_FAILOVER_NONE;
    return cfg;
}

/* Reports a connect as a driver does after MC_TAKE_CONNECT: one end of a
 * socketpair stands for the socket; *peer is the other end. */
static inline struct mc_conn *
connect_pair(struct mc_engine *e, struct mc_server *srv, int *peer)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("socketpair");
        exit(2);
    }
    struct mc_fail f;
    f.code = 12345;
    struct mc_conn *c = mc_engine_connected(e, srv, sv[0], 0, &f);
    if (c == NULL) {
        fprintf(stderr, "mc_engine_connected failed\n");
        exit(2);
    }
    *peer = sv[1];
    return c;
}

/* The bytes c has queued to write, concatenated into out. */
static inline size_t
queued(struct mc_conn *c, char *out, size_t cap)
{
    struct mc_out o = mc_conn_out(c);
    size_t n = 0;
    for (int i = 0; i < o.iovcnt; i++) {
        size_t k = o.iov[i].iov_len;
        if (n + k > cap) {
            fprintf(stderr, "queued: too many bytes\n");
            exit(2);
        }
        memcpy(out + n, o.iov[i].iov_base, k);
        n += k;
    }
    CHECK_EQ(n, o.len);
    return n;
}

/* Marks everything queued on c as written. */
static inline void
all_written(struct mc_conn *c)
{
    struct mc_out o = mc_conn_out(c);
    o.iov += o.iovcnt;
    o.iovcnt = 0;
    o.len = 0;
    mc_conn_wrote(c, &o);
}

#endif
