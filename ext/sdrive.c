/* The blocking driver of the engine, for StringClient: a call takes a
 * connection from the engine (connecting with the GIL released when there
 * is none idle), queues its request, then loops {release the GIL, one
 * conn.c step, take the GIL back, feed what arrived} until its reply is
 * complete, its deadline passes, or a signal handler raises.  The
 * connection goes back to its pool only after a complete reply; after any
 * error, timeout or signal it is closed, so a reply is never read by a
 * request that did not send it.  Multi-key calls write to every server
 * first, then poll them all together. */
#include "sclient.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "conn.h"
#include "engine.h"
#include "multi.h"
#include "pipe.h"
#include "pycall.h"
#include "pymulti.h"
#include "tls.h"
#include "xport.h"

typedef mc_sclient Client;

/* Why a TLS connection failed (MC_ETLS), into why. */
static void
tls_why_of(struct mc_tls *t, char *why, size_t why_size)
{
#ifdef MC_HAVE_TLS
    if (t != NULL) {
        mc_tls_strerror(t, why, why_size);
    }
#else
    (void)t;
    (void)why;
    (void)why_size;
#endif
}

/* A failure of a TLS connection as reported: MC_ETLS also for a reset or
 * close that the TLS layer explains (a refused client certificate), so
 * that its reason is shown. */
static ssize_t
tls_code(struct mc_tls *t, ssize_t n)
{
#ifdef MC_HAVE_TLS
    if (t != NULL && n != MC_ETLS && n != -ETIMEDOUT && n != -EINTR
        && mc_tls_cert_refused(t)) {
        return MC_ETLS;
    }
#else
    (void)t;
#endif
    return n;
}

static void
tls_free(struct mc_tls *t)
{
#ifdef MC_HAVE_TLS
    mc_tls_free(t);
#else
    (void)t;
#endif
}

/* Frees t sending nothing (its fd is closed already). */
static void
tls_drop(struct mc_tls *t)
{
#ifdef MC_HAVE_TLS
    mc_tls_drop(t);
#else
    (void)t;
#endif
}

/* Sends the authentication request on a new connection and reads the
 * answer with the GIL released, by the connect deadline: 0, MC_EAUTH (why
 * says what the server answered), MC_EOWNER (a signal handler raised), or
 * another failure code. */
static int
authenticate(struct mc_engine *e, int fd, struct mc_tls *tls,
             int64_t deadline, char *why, size_t why_size)
{
    struct mc_auth_io io;
    io.sent = io.got = 0;
    for (;;) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = mc_auth_run(fd, tls, e->cfg.auth, e->cfg.auth_len, &io,
                         deadline, why, why_size);
        Py_END_ALLOW_THREADS
        if (rc != -EINTR) {
            return rc;
        }
        if (PyErr_CheckSignals() < 0) {
            return MC_EOWNER;
        }
    }
}

#ifdef MC_HAVE_TLS
/* Starts TLS on the new socket fd and completes the handshake with the
 * GIL released, by the connect deadline.  Returns the connection's TLS,
 * or NULL with *rc set: MC_ETLS (why names the cause: verification, an
 * alert, ...), -ETIMEDOUT, MC_EOWNER (a signal handler raised), -ENOMEM,
 * or how the socket failed; fd is left open.  *refused: the server refused
 * the saved session offered (the slot offers none any more). */
static struct mc_tls *
start_tls(struct mc_engine *e, struct mc_server *srv, int fd,
          int64_t deadline, char *why, size_t why_size, int *rc,
          bool *refused)
{
    struct mc_tls *t = mc_tls_new(e->cfg.tls, fd, srv->spec.host,
                                  srv->spec.host_len, srv->tls_slot);
    if (t == NULL) {
        *rc = errno == ENOMEM ? -ENOMEM : MC_ETLS;
        snprintf(why, why_size, "cannot verify the host name '%s'",
                 srv->name);
        return NULL;
    }
    for (;;) {
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = mc_tls_handshake_by(t, deadline);
        Py_END_ALLOW_THREADS
        if (r == 0) {
            return t;
        }
        if (r == -EINTR) {
            if (PyErr_CheckSignals() == 0) {
                continue;
            }
            r = MC_EOWNER;
        }
        if (r == MC_ETLS) {
            mc_tls_strerror(t, why, why_size);
            *refused = mc_tls_resume_failed(t);
        }
        mc_tls_free(t);
        *rc = r;
        return NULL;
    }
}
#endif

/* Connects a new connection to srv (the engine asked for one): TLS
 * handshake first when the client has a TLS context, then
 * authentication (over TLS then) when it has credentials. */
static struct mc_conn *
connect_conn(Client *self, struct mc_server *srv, struct mc_fail *f)
{
    struct mc_engine *e = &self->core.eng;
    int64_t deadline = mc_now() + e->cfg.connect_timeout;
    int fd, gai = 0;
    bool retried = false;
again:
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        fd = mc_conn_open(&srv->spec, deadline, &gai);
        Py_END_ALLOW_THREADS
        if (fd != -EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            fd = MC_EOWNER;
            break;
        }
    }
    char why[sizeof(f->text)];
    why[0] = '\0';
    struct mc_tls *tls = NULL;
#ifdef MC_HAVE_TLS
    if (fd >= 0 && e->cfg.tls != NULL) {
        int rc = 0;
        bool refused = false;
        tls = start_tls(e, srv, fd, deadline, why, sizeof(why), &rc,
                        &refused);
        if (tls == NULL) {
            close(fd);
            fd = rc;
            if (refused && !retried) {
                /* memcached with ssl_verify_mode and no ssl_session_cache
                 * refuses every resumption: once more with a full
                 * handshake, by the same deadline. */
                retried = true;
                goto again;
            }
        }
    }
#endif
    if (fd >= 0 && e->cfg.auth != NULL) {
        int rc = (int)tls_code(tls, authenticate(e, fd, tls, deadline, why,
                                                 sizeof(why)));
        if (rc == MC_ETLS) {
            tls_why_of(tls, why, sizeof(why));
        }
        if (rc < 0) {
            tls_free(tls);
            tls = NULL;
            close(fd);
            fd = rc;
        }
    }
    if (fd >= 0) {
        int rc = mc_conn_set_blocking(fd, e->cfg.timeout);
        if (rc < 0) {
            tls_free(tls);
            tls = NULL;
            close(fd);
            fd = rc;
        }
    }
    if (tls != NULL) {
        /* mc_engine_connected closes fd when it fails (no memory): the
         * TLS layer goes first, sending nothing. */
        struct mc_conn *c = mc_engine_connected(e, srv, fd, gai, f);
        if (c == NULL) {
            tls_drop(tls);
        }
        else {
            c->tls = tls;
        }
        return c;
    }
    struct mc_conn *c = mc_engine_connected(e, srv, fd, gai, f);
    if (fd == MC_EAUTH || fd == MC_ETLS) {
        memcpy(f->text, why, sizeof(why));
    }
    return c;
}

/* A connection to srv: an idle one without input waiting, or a new one.
 * Returns NULL with f set (MC_EOWNER: a Python exception is set). */
static Py_ALWAYS_INLINE inline struct mc_conn *
take_conn(Client *self, struct mc_server *srv, struct mc_fail *f)
{
    for (;;) {
        struct mc_conn *c;
        switch (mc_engine_take(&self->core.eng, srv, &c)) {
        case MC_TAKE_IDLE:
            if ((c->fences | c->flush_oks) == 0 && mc_xport_stale(c)) {
                /* Input on an idle connection: closed by the server (a
                 * restart) or bytes nobody asked for (out of sync).
                 * Nothing was sent on it yet, so another connection, or a
                 * new one, takes the request. */
                mc_conn_close(c);
                continue;
            }
            return c;
        case MC_TAKE_DEAD:
            mc_fail_set(f, MC_EDEAD);
            return NULL;
        case MC_TAKE_CONNECT:
            return connect_conn(self, srv, f);
        }
    }
}

static bool
is_reset(ssize_t n)
{
    return n == MC_EEOF || n == -ECONNRESET || n == -EPIPE;
}

/* Runs a call: picks its server, sends its request, reads its reply.
 * Returns 0, or -1 with c->fail set (a Python exception too when
 * MC_EOWNER). */
int
mc_sync_run_call(Client *self, struct mc_call *c)
{
    struct mc_engine *e = &self->core.eng;
    struct mc_server *srv = &e->servers[c->server];
    bool retried = false;
    int64_t deadline = mc_now() + e->cfg.timeout;
    size_t picks = 0;
    struct mc_fail connect_fail;
    struct mc_conn *conn;

    connect_fail.code = 0;

pick:
    if (c->keyed) {
        ssize_t idx = mc_engine_pick(e, &c->place);
        if (idx < 0) {
            if (connect_fail.code != 0) {
                /* The servers died in this call: say why, not just that
                 * none is left. */
                c->fail = connect_fail;
                return -1;
            }
            mc_fail_set(&c->fail, MC_ENOSERVER);
            return -1;
        }
        c->server = (size_t)idx;
        srv = &e->servers[idx];
        picks++;
    }
again:
    conn = take_conn(self, srv, &c->fail);
    if (conn == NULL) {
        if (c->keyed && e->cfg.failover != MC_FAILOVER_NONE
            && c->fail.code != MC_EOWNER && c->fail.code != -ENOMEM
            && mc_server_dead(srv) && picks <= e->nservers) {
            if (c->fail.code != MC_EDEAD) {
                connect_fail = c->fail;
            }
            goto pick;          /* the walk now skips the dead server */
        }
        return -1;
    }
    bool fence = c->noreply && e->cfg.fence;
    bool queued = !mc_conn_written(conn);
    struct iovec iov[5];
    struct mc_out out;
    if (!queued) {
        /* Nothing queued ahead (the usual case): written from a copy of
         * the call's iovecs, which stay as they are for a retry. */
        for (int i = 0; i < c->iovcnt; i++) {
            iov[i] = c->iov[i];
        }
        out.iov = iov;
        out.iovcnt = c->iovcnt;
        out.len = c->len;
        if (fence) {
            if (conn->tls != NULL) {
                /* the request ends its TLS record (see mc_conn_queue) */
                iov[out.iovcnt].iov_base = NULL;
                iov[out.iovcnt++].iov_len = 0;
            }
            iov[out.iovcnt++] = mc_fence_iov;
            out.len += mc_fence_iov.iov_len;
        }
        mc_conn_push(conn, c->noreply ? NULL : &c->req, fence);
    }
    else if (mc_conn_queue(conn, c->noreply ? NULL : &c->req, c->iov,
                           c->iovcnt, fence)
             < 0) {
        mc_fail_set(&c->fail, -ENOMEM);
        goto error;
    }
    bool got_bytes = false;
    bool first_wait = true;
    size_t need = 0;
    for (;;) {
        if (queued) {
            out = mc_conn_out(conn);
        }
        if (out.iovcnt == 0 && c->noreply) {
            mc_engine_give(e, conn);
            return 0;
        }
        if (mc_buf_reserve(&conn->rbuf, mc_buf_room(need,
                                                    mc_buf_len(&conn->rbuf)))
            < 0) {
            mc_fail_set(&c->fail, -ENOMEM);
            goto error;
        }
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        n = mc_xport_step(conn, &out, !c->noreply, first_wait, deadline);
        Py_END_ALLOW_THREADS
        first_wait = false;
        if (queued) {
            mc_conn_wrote(conn, &out);
        }
        if (n > 0) {
            got_bytes = true;
            struct mc_fail f;
            int rc = mc_conn_feed(conn, e->cfg.max_value, &need, &f);
            if (c->req.state == MC_REQ_DONE) {
                if (rc == MC_FEED_BROKEN || out.iovcnt != 0) {
                    /* Bytes nobody asked for after the reply, or answered
                     * before the request was all out: never reused. */
                    mc_conn_close(conn);
                }
                else {
                    mc_engine_give(e, conn);
                }
                return 0;
            }
            if (rc == MC_FEED_OWNER || c->req.state == MC_REQ_FAILED) {
                /* An error line, or the result could not be built: the
                 * connection is closed all the same. */
                c->fail = c->req.fail;
                goto error;
            }
            if (rc == MC_FEED_BROKEN) {
                c->fail = f;
                goto error;
            }
            if (mc_now() >= deadline) {
                /* Bytes keep coming but the reply is not complete: the
                 * deadline holds whatever the server sends. */
                mc_fail_set(&c->fail, -ETIMEDOUT);
                goto error;
            }
            continue;
        }
        if (n == 0) {
            continue;
        }
        if (n == -EINTR) {
            if (PyErr_CheckSignals() < 0) {
                mc_fail_set(&c->fail, MC_EOWNER);
                goto error;
            }
            if (mc_now() >= deadline) {
                mc_fail_set(&c->fail, -ETIMEDOUT);
                goto error;
            }
            continue;
        }
        if (is_reset(n) && conn->reused && !got_bytes && c->retry_safe
            && !retried) {
            /* A connection the server closed while it sat idle (a restart):
             * nothing of ours was processed; go again on a fresh one. */
            mc_conn_close(conn);
            retried = true;
            goto again;
        }
        n = tls_code(conn->tls, n);
        mc_fail_set(&c->fail, (int)n);
        if (n == MC_ETLS) {
            tls_why_of(conn->tls, c->fail.text, sizeof(c->fail.text));
        }
        goto error;
    }

error:
    mc_conn_close(conn);
    Py_CLEAR(c->result);
    if (c->fail.code == -ETIMEDOUT) {
        mc_engine_timed_out(e, srv);
    }
    return -1;
}

static void
part_done(struct mc_engine *e, struct mc_part *p, int code)
{
    if (code != 0) {
        if (p->conn != NULL) {
            code = (int)tls_code(p->conn->tls, code);
        }
        mc_fail_set(&p->fail, code);
        if (code == MC_ETLS && p->conn != NULL) {
            tls_why_of(p->conn->tls, p->fail.text, sizeof(p->fail.text));
        }
    }
    if (p->conn != NULL) {
        if (p->fail.code != 0 || !mc_conn_written(p->conn)) {
            mc_conn_close(p->conn);
        }
        else {
            mc_engine_give(e, p->conn);
        }
        p->conn = NULL;
    }
    p->done = true;
}

/* Writes what c's transport takes now of its queued bytes (no Python: the
 * GIL is released).  Returns 0 (some may be left: then *wev is the event
 * the rest waits for) or a failure code. */
static ssize_t
part_send(struct mc_conn *c, short *wev)
{
    *wev = POLLOUT;
    while (!mc_conn_written(c)) {
        ssize_t n = mc_xport_send(c);
        if (n == MC_TLS_WANT_READ) {
            *wev = POLLIN;
            return 0;
        }
        if (n < 0) {
            return n == -EAGAIN ? 0 : n;
        }
    }
    return 0;
}

/* Receives once into c's buffer: the bytes, 0 when none came (yet), MC_EEOF
 * or a failure code. */
static ssize_t
part_recv(struct mc_conn *c)
{
    ssize_t n = mc_xport_recv(c);
    return n == -EAGAIN || n == MC_TLS_WANT_WRITE ? 0 : n;
}

/* Writes every part's request, then reads all the replies as they come,
 * polling all the sockets at once, until each part is complete or failed
 * or the deadline passes.  Returns 0, or -1 with a Python exception set
 * (signals, memory); per-server failures are left in the parts. */
static int
drive_multi(Client *self, struct mc_multi *m)
{
    struct mc_engine *e = &self->core.eng;
    int64_t deadline = mc_now() + e->cfg.timeout;
    size_t np_max = m->nparts ? m->nparts : 1;
    struct pollfd *pfd = PyMem_Malloc(sizeof(*pfd) * np_max);
    size_t *map = PyMem_Malloc(sizeof(*map) * np_max);
    ssize_t *io = PyMem_Malloc(sizeof(*io) * np_max);
    if (pfd == NULL || map == NULL || io == NULL) {
        PyMem_Free(pfd);
        PyMem_Free(map);
        PyMem_Free(io);
        PyErr_NoMemory();
        return -1;
    }
    int rc = 0;
    for (;;) {
        nfds_t np = 0;
        for (size_t i = 0; i < m->nparts; i++) {
            struct mc_part *p = &m->parts[i];
            if (p->done) {
                continue;
            }
            bool written = mc_conn_written(p->conn);
            if (m->noreply && written) {
                part_done(e, p, 0);
                continue;
            }
            if (mc_buf_reserve(&p->conn->rbuf,
                               mc_buf_room(p->need,
                                           mc_buf_len(&p->conn->rbuf)))
                < 0) {
                part_done(e, p, -ENOMEM);
                continue;
            }
            pfd[np].fd = p->conn->fd;
            pfd[np].events = m->noreply ? POLLOUT
                             : POLLIN | (written ? 0 : POLLOUT);
            pfd[np].revents = 0;
            map[np] = i;
            np++;
        }
        if (np == 0) {
            break;
        }
        int prc, perr = 0;
        Py_BEGIN_ALLOW_THREADS
        bool pending = false;
        for (nfds_t k = 0; k < np; k++) {
            struct mc_conn *c = m->parts[map[k]].conn;
            io[k] = 0;
            if (!mc_conn_written(c)) {
                short wev;
                ssize_t n = part_send(c, &wev);
                bool written = mc_conn_written(c);
                if (n < 0) {
                    io[k] = n;
                    pfd[k].fd = -1;  /* poll ignores it */
                }
                else if (written && m->noreply) {
                    pfd[k].fd = -1;
                }
                else if (m->noreply) {
                    pfd[k].events = wev;
                }
                else {
                    pfd[k].events = (short)(POLLIN | (written ? 0 : wev));
                }
            }
            if (pfd[k].fd >= 0 && !m->noreply && mc_xport_pending(c)) {
                pending = true;
            }
        }
        nfds_t active = 0;
        for (nfds_t k = 0; k < np; k++) {
            active += pfd[k].fd >= 0;
        }
        prc = active ? poll(pfd, np, pending ? 0 : mc_poll_timeout(deadline))
                     : 0;
        if (prc < 0) {
            perr = -errno;
        }
        for (nfds_t k = 0; (prc > 0 || pending) && k < np; k++) {
            struct mc_conn *c = m->parts[map[k]].conn;
            if (pfd[k].fd >= 0
                && ((prc > 0
                     && (pfd[k].revents & (POLLIN | POLLERR | POLLHUP)))
                    || (!m->noreply && mc_xport_pending(c)))) {
                io[k] = part_recv(c);
            }
        }
        Py_END_ALLOW_THREADS
        if (perr == -EINTR) {
            if (PyErr_CheckSignals() < 0) {
                rc = -1;
                break;
            }
            perr = 0;           /* io[] holds the sends' results only */
        }
        for (nfds_t k = 0; k < np; k++) {
            struct mc_part *p = &m->parts[map[k]];
            if (io[k] < 0) {
                part_done(e, p, (int)io[k]);
                continue;
            }
            if (perr < 0) {
                part_done(e, p, perr);
                continue;
            }
            if (io[k] == 0) {
                continue;
            }
            struct mc_fail f;
            int r = mc_conn_feed(p->conn, e->cfg.max_value, &p->need, &f);
            if (r == MC_FEED_OWNER) {
                rc = -1;        /* a Python exception is set */
                goto done;
            }
            if (mc_multi_part_check(p)) {
                if (r == MC_FEED_BROKEN) {
                    /* bytes nobody asked for after the reply */
                    mc_conn_close(p->conn);
                    p->conn = NULL;
                }
                part_done(e, p, 0);
            }
            else if (r == MC_FEED_BROKEN) {
                p->fail = f;
                part_done(e, p, 0);
            }
        }
        if (mc_now() >= deadline) {
            /* Whatever is still arriving, the call ends at its deadline. */
            for (size_t i = 0; i < m->nparts; i++) {
                if (!m->parts[i].done) {
                    part_done(e, &m->parts[i], -ETIMEDOUT);
                }
            }
        }
    }
done:
    PyMem_Free(pfd);
    PyMem_Free(map);
    PyMem_Free(io);
    return rc;
}

/* Places the keys on their servers, takes the connections, sends, reads,
 * and returns the result (raising the first server's failure, with
 * .partial, if any failed). */
PyObject *
mc_sync_run_multi(Client *self, struct mc_pymulti *pm)
{
    struct mc_multi *m = &pm->m;
    struct mc_engine *e = &self->core.eng;
    for (size_t attempt = 0;; attempt++) {
        if (mc_multi_place(m) < 0) {
            return PyErr_NoMemory();
        }
        for (size_t i = 0; i < m->nparts; i++) {
            struct mc_part *p = &m->parts[i];
            p->conn = take_conn(self, p->srv, &p->fail);
            if (p->conn == NULL) {
                if (p->fail.code == MC_EOWNER) {
                    return NULL;
                }
                mc_multi_part_failed(m, p);
            }
        }
        if (!mc_multi_replace(m, attempt >= e->nservers)) {
            break;
        }
        for (size_t i = 0; i < m->nparts; i++) {
            if (m->parts[i].conn != NULL) {
                mc_engine_give(e, m->parts[i].conn);
                m->parts[i].conn = NULL;
            }
        }
    }
    if (mc_pymulti_unplaced(pm) < 0) {
        return NULL;
    }
    if (mc_multi_queue(m) < 0) {
        return PyErr_NoMemory();
    }
    if (drive_multi(self, m) < 0) {
        return NULL;
    }
    return mc_pymulti_result(&self->core, pm);
}

/* Runs the same request on every server, collecting each result; raises
 * the first failure after trying all, with .partial set. */
PyObject *
mc_sync_run_all(Client *self, const struct mc_all *a)
{
    struct mc_engine *e = &self->core.eng;
    PyObject *acc = a->as_list ? PyList_New(0) : PyDict_New();
    if (acc == NULL) {
        return NULL;
    }
    struct mc_fail first = {0};
    size_t first_srv = 0;
    bool failed = false;
    for (size_t i = 0; i < e->nservers; i++) {
        struct mc_call c;
        mc_all_call(a, &c, i);
        if (mc_sync_run_call(self, &c) < 0) {
            mc_call_release(&c);
            if (c.fail.code == MC_EOWNER) {
                Py_DECREF(acc);
                return NULL;
            }
            if (!failed) {
                first = c.fail;
                first_srv = i;
                failed = true;
            }
            continue;
        }
        PyObject *res = mc_call_result(&self->core, &c, c.rkind);
        mc_call_release(&c);
        if (res == NULL || mc_all_add(&self->core, a, acc, i, res) < 0) {
            Py_DECREF(acc);
            return NULL;
        }
    }
    if (failed) {
        mc_raise_fail(&self->core, &e->servers[first_srv], &first);
        mc_attach_partial(acc);
        Py_DECREF(acc);
        return NULL;
    }
    return acc;
}

/* Reads what c is owed for noreply fences and a flush, until deadline, so
 * that closing it afterwards does not reset it while the server may still
 * be reading those commands.  No Python: called without the GIL. */
void
mc_sync_drain_owed(struct mc_conn *c, int64_t deadline)
{
    while (mc_conn_drain_owed(c) == 0) {
        if (mc_now() >= deadline || mc_buf_reserve(&c->rbuf, 4096) < 0
            || (!mc_xport_pending(c)
                && mc_conn_wait(c->fd, POLLIN, deadline) < 0)) {
            return;
        }
        if (part_recv(c) < 0) {
            return;
        }
    }
}

