/* Authenticating a new connection: the request out, the one-line answer
 * in, bounded by the connect deadline (see auth.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "auth.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef MC_HAVE_TLS
#include "tls.h"
#endif

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

/* One attempt to send p[0, n): the bytes taken (> 0), -EAGAIN with *wait
 * the event to wait for, or a failure code. */
static ssize_t
send_some(int fd, struct mc_tls *tls, const char *p, size_t n, short *wait)
{
#ifdef MC_HAVE_TLS
    if (tls != NULL) {
        struct iovec v = {(void *)(uintptr_t)p, n};
        ssize_t r = mc_tls_send(tls, &v, 1);
        if (r == MC_TLS_WANT_WRITE || r == MC_TLS_WANT_READ) {
            *wait = r == MC_TLS_WANT_WRITE ? POLLOUT : POLLIN;
            return -EAGAIN;
        }
        return r == 0 ? -EAGAIN : r;
    }
#else
    (void)tls;
#endif
    *wait = POLLOUT;
    ssize_t r = send(fd, p, n, MC_SEND_FLAGS);
    if (r > 0) {
        return r;
    }
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        return -errno;
    }
    return -EAGAIN;
}

/* One attempt to receive into p[0, n): the bytes (> 0), -EAGAIN with *wait
 * the event to wait for, MC_EEOF or a failure code. */
static ssize_t
recv_some(int fd, struct mc_tls *tls, char *p, size_t n, short *wait)
{
#ifdef MC_HAVE_TLS
    if (tls != NULL) {
        ssize_t r = mc_tls_recv(tls, p, n);
        if (r == MC_TLS_WANT_WRITE || r == MC_TLS_WANT_READ) {
            *wait = r == MC_TLS_WANT_WRITE ? POLLOUT : POLLIN;
            return -EAGAIN;
        }
        return r;
    }
#else
    (void)tls;
#endif
    *wait = POLLIN;
    ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
    if (r > 0) {
        return r;
    }
    if (r == 0) {
        return MC_EEOF;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

int
mc_auth_run(int fd, struct mc_tls *tls, const char *req, size_t len,
            struct mc_auth_io *io, int64_t deadline, char *why,
            size_t why_size)
{
    short wait;
    while (io->sent < len) {
        ssize_t n = send_some(fd, tls, req + io->sent, len - io->sent, &wait);
        if (n > 0) {
            io->sent += (size_t)n;
            continue;
        }
        if (n != -EAGAIN) {
            return (int)n;
        }
        int rc = mc_conn_wait(fd, wait, deadline);
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
        ssize_t n = recv_some(fd, tls, io->reply + io->got,
                              sizeof(io->reply) - io->got, &wait);
        if (n > 0) {
            io->got += (size_t)n;
            continue;
        }
        if (n != -EAGAIN) {
            return (int)n;
        }
        if (mc_now() >= deadline) {
            return -ETIMEDOUT;
        }
        int rc = mc_conn_wait(fd, wait, deadline);
        if (rc < 0) {
            return rc;
        }
    }
}
