/* One socket: connect, write iovecs, receive into an mc_buf, wait with
 * deadlines.  Every call makes one attempt and returns >= 0 or -errno; no
 * function loops on EINTR (the caller checks for signals and calls again
 * against the same monotonic deadline).  No Python.h here: the caller
 * releases the GIL around these calls. */
#ifndef CMEMCACHE_CONN_H
#define CMEMCACHE_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "buf.h"
#include "proto.h"

/* Flags for every send: never block, never raise SIGPIPE (where the
 * platform has MSG_NOSIGNAL; elsewhere the socket has SO_NOSIGPIPE). */
#ifdef MSG_NOSIGNAL
#define MC_SEND_FLAGS (MSG_NOSIGNAL | MSG_DONTWAIT)
#else
#define MC_SEND_FLAGS MSG_DONTWAIT
#endif

/* Error codes beyond errno, negative like -errno. */
#define MC_EEOF (-10001)       /* the peer closed the connection */
#define MC_ERESOLVE (-10002)   /* name resolution failed: see gai_err */
#define MC_EAUTH (-10009)      /* the server refused the credentials (auth.h) */
#define MC_ETLS (-10100)       /* TLS failure: see mc_tls_strerror (tls.h) */

/* Monotonic time in nanoseconds. */
int64_t mc_now(void);

/* The remaining part of a request being written.  mc_conn_send advances
 * iov/iovcnt/len past what was sent; iovcnt 0 means all of it is out. */
struct mc_out {
    struct iovec *iov;
    int iovcnt;
    size_t len;                /* the bytes left in them */
};

/* Opens a non-blocking, close-on-exec socket to spec with TCP_NODELAY and
 * connects it before deadline, trying every resolved address in turn.
 * Returns the fd, or -errno of the last failure (-ETIMEDOUT, -EINTR,
 * -ECONNREFUSED, ...), or MC_ERESOLVE with *gai_err set.  Nothing is left
 * open on failure. */
int mc_conn_open(const struct mc_server_spec *spec, int64_t deadline,
                 int *gai_err);

/* Writes as much of out as the socket takes now (MSG_NOSIGNAL).  Returns the
 * bytes written, -EAGAIN when none fit, or -errno. */
ssize_t mc_conn_send(int fd, struct mc_out *out);

/* Receives once into the free tail of b (which must have room).  Returns the
 * bytes received, -EAGAIN, MC_EEOF, or -errno. */
ssize_t mc_conn_recv(int fd, struct mc_buf *b);

/* Waits once for events on fd until deadline.  Returns the revents,
 * -ETIMEDOUT, or -EINTR. */
int mc_conn_wait(int fd, short events, int64_t deadline);

/* Milliseconds for poll() until deadline, rounded up; 0 when past. */
int mc_poll_timeout(int64_t deadline);

/* Puts a connected socket in blocking mode with SO_RCVTIMEO = timeout_ns,
 * for mc_conn_step's blocking wait; every other call here passes
 * MSG_DONTWAIT and stays non-blocking.  Returns 0 or -errno. */
int mc_conn_set_blocking(int fd, int64_t timeout_ns);

/* One step of a request: writes what is left of out; then, with all of it
 * written, waits for input and receives once into b (which must have room),
 * or with some left, waits until the socket can take more or input
 * arrives.  With block (a socket set up by mc_conn_set_blocking, and the
 * first wait of a request, so SO_RCVTIMEO is within the deadline) the wait
 * is the recv itself.  Without want_reply it never reads: it returns 0 once
 * all is written, and otherwise waits only until the socket can take more.
 * Returns the bytes received (> 0), 0 when it only wrote or waited,
 * MC_EEOF, or -errno (-ETIMEDOUT, -EINTR, ...). */
ssize_t mc_conn_step(int fd, struct mc_out *out, struct mc_buf *b,
                     bool want_reply, bool block, int64_t deadline);

/* True when an idle connection has input or a hang-up waiting, so it cannot
 * be used for a new request (stale after a server restart, or out of sync). */
bool mc_conn_stale(int fd);

#endif
