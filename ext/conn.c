/* One socket (see conn.h): a host name resolved by the connect deadline,
 * the connect, sends, receives and waits. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A non-blocking, close-on-exec stream socket that never raises SIGPIPE. */
static int
stream_socket(int family)
{
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
#else
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) {
        return -errno;
    }
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0
        || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
#endif
#ifdef SO_NOSIGPIPE
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
    return fd;
}

int64_t
mc_now(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    /* A few milliseconds of resolution is plenty for deadlines and
     * hold-downs, and it is cheaper to read. */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int
mc_poll_timeout(int64_t deadline)
{
    int64_t left = deadline - mc_now();
    if (left <= 0) {
        return 0;
    }
    int64_t ms = (left + 999999) / 1000000;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

int
mc_conn_wait(int fd, short events, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    int rc = poll(&p, 1, mc_poll_timeout(deadline));
    if (rc < 0) {
        return -errno;
    }
    if (rc == 0) {
        return -ETIMEDOUT;
    }
    return p.revents;
}

/* Connects fd to addr, waiting until deadline.  Returns 0 or -errno. */
static int
connect_wait(int fd, const struct sockaddr *addr, socklen_t addrlen,
             int64_t deadline)
{
    if (connect(fd, addr, addrlen) == 0) {
        return 0;
    }
    if (errno != EINPROGRESS && errno != EAGAIN) {
        return -errno;
    }
    int rc = mc_conn_wait(fd, POLLOUT, deadline);
    if (rc < 0) {
        return rc;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
        return -errno;
    }
    return err ? -err : 0;
}

static int
open_one(int family, const struct sockaddr *addr, socklen_t addrlen,
         int64_t deadline)
{
    int fd = stream_socket(family);
    if (fd < 0) {
        return fd;
    }
    if (family != AF_UNIX) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    int rc = connect_wait(fd, addr, addrlen, deadline);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* ---- name resolution, bounded by the connect deadline ------------------- */

/* getaddrinfo has no timeout of its own (the resolver's are resolv.conf's,
 * seconds each, attempts times): a name is resolved in a thread of its
 * own while the caller waits for it until the deadline.  A lookup the
 * caller gave up on finishes there and frees what it got.  A numeric
 * address needs no lookup and is converted in place. */
struct lookup {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                  /* the caller's and the thread's */
    bool done;
    int rc;
    struct addrinfo *res;
    struct addrinfo hints;
    char host[256];
    char port[8];
};

static void
lookup_unref(struct lookup *l)
{
    pthread_mutex_lock(&l->mu);
    int left = --l->refs;
    pthread_mutex_unlock(&l->mu);
    if (left == 0) {
        if (l->res != NULL) {
            freeaddrinfo(l->res);
        }
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
        free(l);
    }
}

static void *
lookup_run(void *arg)
{
    struct lookup *l = arg;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(l->host, l->port, &l->hints, &res);
    pthread_mutex_lock(&l->mu);
    l->rc = rc;
    l->res = res;
    l->done = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    lookup_unref(l);
    return NULL;
}

static bool
is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1
           || inet_pton(AF_INET6, host, buf) == 1;
}

/* getaddrinfo(host, port, hints) by deadline: 0 with *res, a getaddrinfo
 * error (> 0), or -ETIMEDOUT / -ENOMEM / -EAGAIN (no thread). */
static int
resolve(const char *host, const char *port, const struct addrinfo *hints,
        int64_t deadline, struct addrinfo **res)
{
    *res = NULL;
    if (is_numeric(host)) {
        struct addrinfo h = *hints;
        h.ai_flags |= AI_NUMERICHOST;
        return getaddrinfo(host, port, &h, res);
    }
    struct lookup *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return -ENOMEM;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    l->refs = 2;
    l->hints = *hints;
    snprintf(l->host, sizeof(l->host), "%s", host);
    snprintf(l->port, sizeof(l->port), "%s", port);
    /* the thread takes no signal: the caller's thread handles them */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int err = pthread_create(&t, &attr, lookup_run, l);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        l->refs = 1;
        lookup_unref(l);
        return -EAGAIN;
    }
    int rc = -ETIMEDOUT;
    pthread_mutex_lock(&l->mu);
    while (!l->done) {
        struct timespec ts = {
            .tv_sec = (time_t)(deadline / 1000000000),
            .tv_nsec = (long)(deadline % 1000000000),
        };
        if (pthread_cond_timedwait(&l->cv, &l->mu, &ts) == ETIMEDOUT
            && !l->done) {
            break;
        }
    }
    if (l->done) {
        rc = l->rc;
        *res = l->res;
        l->res = NULL;          /* the caller's now */
    }
    pthread_mutex_unlock(&l->mu);
    lookup_unref(l);
    return rc;
}

int
mc_conn_open(const struct mc_server_spec *spec, int64_t deadline,
             int *gai_err)
{
    char host[256];
    *gai_err = 0;
    if (spec->family == MC_UNIX) {
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        if (spec->host_len >= sizeof(sun.sun_path)) {
            return -ENAMETOOLONG;
        }
        memcpy(sun.sun_path, spec->host, spec->host_len);
        return open_one(AF_UNIX, (const struct sockaddr *)&sun, sizeof(sun),
                        deadline);
    }
    if (spec->host_len >= sizeof(host)) {
        return -ENAMETOOLONG;
    }
    memcpy(host, spec->host, spec->host_len);
    host[spec->host_len] = '\0';
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)spec->port);

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = spec->family == MC_TCP6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = resolve(host, port, &hints, deadline, &res);
    if (rc < 0) {
        return rc;
    }
    if (rc != 0) {
        *gai_err = rc;
        return MC_ERESOLVE;
    }
    int fd = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = open_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline);
        if (fd >= 0 || fd == -ETIMEDOUT || fd == -EINTR) {
            break;
        }
    }
    freeaddrinfo(res);
    return fd;
}

ssize_t
mc_conn_send(int fd, struct mc_out *out)
{
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = out->iov;
    msg.msg_iovlen = (size_t)(out->iovcnt < IOV_MAX ? out->iovcnt : IOV_MAX);
    ssize_t n = sendmsg(fd, &msg, MC_SEND_FLAGS);
    if (n < 0) {
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    if ((size_t)n == out->len) {
        out->iov += out->iovcnt;  /* all of it: the common case */
        out->iovcnt = 0;
        out->len = 0;
        return n;
    }
    out->len -= (size_t)n;
    size_t left = (size_t)n;
    while (out->iovcnt > 0 && left >= out->iov->iov_len) {
        left -= out->iov->iov_len;
        out->iov++;
        out->iovcnt--;
    }
    if (left > 0) {
        out->iov->iov_base = (char *)out->iov->iov_base + left;
        out->iov->iov_len -= left;
    }
    return n;
}

ssize_t
mc_conn_recv(int fd, struct mc_buf *b)
{
    ssize_t n = recv(fd, b->data + b->end, b->cap - b->end, MSG_DONTWAIT);
    if (n > 0) {
        b->end += (size_t)n;
        return n;
    }
    if (n == 0) {
        return MC_EEOF;
    }
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

int
mc_conn_set_blocking(int fd, int64_t timeout_ns)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        return -errno;
    }
    struct timeval tv;
    tv.tv_sec = (time_t)(timeout_ns / 1000000000);
    tv.tv_usec = (suseconds_t)(timeout_ns % 1000000000 / 1000);
    if (tv.tv_sec == 0 && tv.tv_usec == 0) {
        tv.tv_usec = 1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
        return -errno;
    }
    return 0;
}

ssize_t
mc_conn_step(int fd, struct mc_out *out, struct mc_buf *b, bool want_reply,
             bool block, int64_t deadline)
{
    if (out->iovcnt > 0) {
        ssize_t n = mc_conn_send(fd, out);
        if (n < 0 && n != -EAGAIN) {
            return n;
        }
    }
    if (!want_reply && out->iovcnt == 0) {
        return 0;
    }
    if (block && out->iovcnt == 0) {
        /* The request is out: wait for the reply in recv itself (one
         * syscall instead of poll + recv), bounded by SO_RCVTIMEO. */
        ssize_t n = recv(fd, b->data + b->end, b->cap - b->end, 0);
        if (n > 0) {
            b->end += (size_t)n;
            return n;
        }
        if (n == 0) {
            return MC_EEOF;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return mc_now() >= deadline ? -ETIMEDOUT : 0;
        }
        return -errno;
    }
    short events = POLLIN;
    if (out->iovcnt > 0) {
        events = want_reply ? (POLLIN | POLLOUT) : POLLOUT;
    }
    int rev = mc_conn_wait(fd, events, deadline);
    if (rev < 0) {
        return rev;
    }
    if (rev & (POLLERR | POLLHUP) || (want_reply && (rev & POLLIN))) {
        ssize_t n = mc_conn_recv(fd, b);
        return n == -EAGAIN ? 0 : n;
    }
    return 0;
}

bool
mc_conn_stale(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}
