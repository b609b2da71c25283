/* Authenticating a new connection: the request out, the one-line answer
 * in, bounded by the connect deadline (see auth.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "auth.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

static int
refused(const char *text, size_t n, char *why, size_t why_size)
{
    if (why_size > 0) {
        if (n > why_size - 1) {
            n = why_size - 1;
        }
        memmove(why, text, n);
        why[n] = '\0';
    }
    return MC_EAUTH;
}

int
mc_auth_run(int fd, const char *req, size_t len, struct mc_auth_io *io,
            int64_t deadline, char *why, size_t why_size)
{
    while (io->sent < len) {
        ssize_t n = send(fd, req + io->sent, len - io->sent, MC_SEND_FLAGS);
        if (n > 0) {
            io->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            return errno == EINTR ? -EINTR : -errno;
        }
        int rc = mc_conn_wait(fd, POLLOUT, deadline);
        if (rc < 0) {
            return rc;
        }
    }
    for (;;) {
        const char *text;
        size_t text_len;
        int verdict = mc_auth_reply(io->reply, io->got, &text, &text_len);
        if (verdict > 0) {
            return 0;
        }
        if (verdict < 0) {
            return refused(text, text_len, why, why_size);
        }
        ssize_t n = recv(fd, io->reply + io->got,
                         sizeof(io->reply) - io->got, MSG_DONTWAIT);
        if (n > 0) {
            io->got += (size_t)n;
            continue;
        }
        if (n == 0) {
            return MC_EEOF;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return -errno;
        }
        int rc = mc_conn_wait(fd, POLLIN, deadline);
        if (rc < 0) {
            return rc;
        }
    }
}
