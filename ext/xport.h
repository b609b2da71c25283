/* A connection's transport, plain socket (conn.c) or TLS (tls.c), for the
 * drivers: one non-blocking attempt to write what is queued, to receive
 * into the read buffer, and whether decrypted input is waiting that no
 * poll() or loop event will announce.  Engine layer (no Python, no
 * blocking call); TLS only in builds with OpenSSL (MC_HAVE_TLS), where a
 * connection's tls is set. */
#ifndef CMEMCACHE_XPORT_H
#define CMEMCACHE_XPORT_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "conn.h"
#include "engine.h"
#include "pipe.h"
#include "tls.h"

/* One step of a request on c, as mc_conn_step (mc_tls_step on TLS). */
static MC_ALWAYS_INLINE ssize_t
mc_xport_step(struct mc_conn *c, struct mc_out *out, bool want_reply,
              bool block, int64_t deadline)
{
#ifdef MC_HAVE_TLS
    if (c->tls != NULL) {
        return mc_tls_step(c->tls, out, &c->rbuf, want_reply, block,
                           deadline);
    }
#endif
    return mc_conn_step(c->fd, out, &c->rbuf, want_reply, block, deadline);
}

/* True when an idle connection cannot take a new request, as
 * mc_conn_stale (mc_tls_stale on TLS: session tickets do not count). */
static MC_ALWAYS_INLINE bool
mc_xport_stale(struct mc_conn *c)
{
#ifdef MC_HAVE_TLS
    if (c->tls != NULL) {
        return mc_tls_stale(c->tls);
    }
#endif
    return mc_conn_stale(c->fd);
}

/* Writes what c has queued, as far as the transport takes it now (one
 * sendmsg, or one TLS record).  Returns the bytes taken (>= 0), -EAGAIN
 * (wait until writable), MC_TLS_WANT_READ (TLS: wait until readable), or
 * a failure code. */
static inline ssize_t
mc_xport_send(struct mc_conn *c)
{
    struct mc_out out = mc_conn_out(c);
    ssize_t n;
#ifdef MC_HAVE_TLS
    if (c->tls != NULL) {
        n = mc_tls_send(c->tls, out.iov, out.iovcnt);
        if (n >= 0) {
            mc_tls_out_advance(&out, (size_t)n);
        }
        else if (n == MC_TLS_WANT_WRITE) {
            n = -EAGAIN;
        }
        mc_conn_wrote(c, &out);
        return n;
    }
#endif
    n = mc_conn_send(c->fd, &out);
    mc_conn_wrote(c, &out);
    return n;
}

/* Receives once into c's read buffer (which must have room).  Returns the
 * bytes, -EAGAIN (nothing yet: wait until readable), MC_TLS_WANT_WRITE
 * (TLS: wait until writable), MC_EEOF, or a failure code. */
static inline ssize_t
mc_xport_recv(struct mc_conn *c)
{
#ifdef MC_HAVE_TLS
    if (c->tls != NULL) {
        ssize_t n = mc_tls_recv_into(c->tls, &c->rbuf);
        return n == MC_TLS_WANT_READ ? -EAGAIN : n;
    }
#endif
    return mc_conn_recv(c->fd, &c->rbuf);
}

/* True when c holds decrypted input (TLS records read and not handed out
 * yet) that poll() cannot see. */
static inline bool
mc_xport_pending(const struct mc_conn *c)
{
#ifdef MC_HAVE_TLS
    return c->tls != NULL && mc_tls_pending(c->tls) > 0;
#else
    (void)c;
    return false;
#endif
}

#endif
