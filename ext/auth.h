/* Authenticating a new connection (memcached -Y): writes the request
 * mc_fmt_auth made and reads the one-line answer, before anything else is
 * sent on the connection.  Transport layer: syscalls, no Python. */
#ifndef CMEMCACHE_AUTH_H
#define CMEMCACHE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "proto.h"

struct mc_tls;

/* Where an exchange stands, so that it resumes after -EINTR. */
struct mc_auth_io {
    size_t sent;               /* request bytes written */
    size_t got;                /* reply bytes read */
    char reply[MC_AUTH_REPLY_MAX];
};

/* Sends req[0, len) on the connected non-blocking socket fd and reads the
 * reply, waiting until deadline; through tls (tls.h, its handshake
 * complete) when it is not NULL, so the request and its answer are
 * encrypted like everything after them; io starts zeroed and is passed again
 * after -EINTR.  Returns 0 when the server answered STORED, MC_EAUTH when
 * it answered anything else (why holds the reason, NUL-terminated, at most
 * why_size bytes), -ETIMEDOUT, -EINTR, MC_EEOF, MC_ETLS (mc_tls_strerror
 * says why) or -errno.  The reply read
 * is bounded by MC_AUTH_REPLY_MAX, whatever the server sends. */
int mc_auth_run(int fd, struct mc_tls *tls, const char *req, size_t len,
                struct mc_auth_io *io, int64_t deadline, char *why,
                size_t why_size);

#endif
