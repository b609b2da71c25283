/* The engine driven by an asyncio event loop, for cmemcache.aio.
 *
 * Calls put their requests on pipelined connections (at most
 * max_inflight each, at most max_connections per server; calls beyond wait
 * in line, first come first served).  A request alone on its connection
 * is written as its call starts; bytes queued behind it during one loop
 * iteration are written together at its end (loop.call_soon of _flush);
 * each connection's socket is watched with loop.add_reader, and what
 * arrives is fed to the engine, which hands every reply to the request it
 * answers, in order.  A call whose task is cancelled is abandoned: its
 * replies are read and discarded, so the next request reads its own.  A
 * connection whose oldest request passes its deadline is closed, and
 * everything in flight on it fails.  Connections are opened by a Python
 * connector (name resolution, connect, its timeout) and handed over as
 * connected non-blocking sockets.
 */
#include "aclient.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "aloop.h"
#include "conn.h"
#include "multi.h"
#include "tls.h"
#include "xport.h"

static void unit_done(struct mc_aunit *u);
static void fail_unit(struct mc_aunit *u, int code, const char *text);
static int place_unit(struct mc_aunit *u);

/* ---- connections ------------------------------------------------------------ */

/* Closes a connection: what is in flight on it fails with f, the calls
 * waiting for its server are placed again (elsewhere, or on a new
 * connection). */
static void
conn_fail(mc_aconn *ac, const struct mc_fail *f)
{
    mc_aclient *cl = ac->client;
    if (ac->closed) {
        return;
    }
    ac->closed = true;
    Py_INCREF(ac);
    mc_aloop_cancel_timer(ac);
    mc_aloop_unwatch(ac);
    struct mc_conn *c = ac->conn;
    /* noreply units waiting for their bytes to go out */
    struct mc_aunit *w = ac->writes;
    ac->writes = NULL;
    if (c != NULL) {
        mc_conn_fail_all(c, f);  /* each request's on_done runs */
        ac->conn = NULL;
        mc_conn_close(c);
    }
    while (w != NULL) {         /* noreply units not written yet */
        struct mc_aunit *next = w->next;
        w->next = NULL;
        fail_unit(w, f->code, f->text[0] ? f->text : NULL);
        w = next;
    }
    struct mc_aserver *s = &cl->servers[ac->server];
    if (s->ordered == ac) {
        s->ordered = NULL;
    }
    for (int i = 0; i < s->nconns; i++) {
        if (s->conns[i] == ac) {
            s->conns[i] = s->conns[--s->nconns];
            Py_DECREF(ac);      /* the server's reference */
            break;
        }
    }
    Py_DECREF(ac);
}

static void
fail_code(struct mc_fail *f, int code)
{
    mc_fail_set(f, code);
}

/* A failure of ac's connection: a TLS connection's reason kept (MC_ETLS
 * also for a reset its TLS layer explains, as in the blocking driver). */
static void
conn_fail_code(mc_aconn *ac, struct mc_fail *f, int code)
{
#ifdef MC_HAVE_TLS
    struct mc_tls *t = ac->conn != NULL ? ac->conn->tls : NULL;
    if (t != NULL && code != MC_ETLS && code != -ETIMEDOUT
        && mc_tls_cert_refused(t)) {
        code = MC_ETLS;
    }
    mc_fail_set(f, code);
    if (t != NULL && code == MC_ETLS) {
        mc_tls_strerror(t, f->text, sizeof(f->text));
    }
#else
    (void)ac;
    mc_fail_set(f, code);
#endif
}

/* Asks the connector for a connection to server s (one at a time per
 * server beyond the first, up to max_connections).  Returns 0, or -1 when
 * the server is held down (the engine said so). */
static int
want_conn(mc_aclient *cl, size_t s)
{
    struct mc_aserver *as = &cl->servers[s];
    if (as->nconns + as->connecting >= cl->max_connections
        || (as->connecting > 0 && as->nconns == 0)) {
        return 0;
    }
    struct mc_conn *idle;
    switch (mc_engine_take(&cl->core.eng, &cl->core.eng.servers[s], &idle)) {
    case MC_TAKE_IDLE:
        mc_conn_close(idle);    /* the pools are the blocking driver's */
        return 0;
    case MC_TAKE_DEAD:
        return -1;
    case MC_TAKE_CONNECT:
        break;
    }
    as->connecting++;
    PyObject *idx = PyLong_FromSize_t(s);
    PyObject *t = PyFloat_FromDouble((double)cl->core.eng.cfg.connect_timeout
                                     / MC_NS);
    PyObject *r = idx && t ? mc_aloop_call(cl->connector, idx, t) : NULL;
    Py_XDECREF(idx);
    Py_XDECREF(t);
    if (r == NULL) {
        as->connecting--;
        struct mc_fail f;
        (void)mc_engine_connected(&cl->core.eng, &cl->core.eng.servers[s],
                                  MC_EOWNER, 0, &f);
        mc_aloop_unraisable("cmemcache.aio: the connector");
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* The connection the last noreply unit of a server went on, while the
 * server may not have read it yet: a request sent on another connection
 * could overtake it (a get reading the value from before a set its caller
 * saw return), so every request goes there meanwhile.  It has been read
 * once a request queued after it is answered, or (with fences) once
 * nothing is in flight and no fence's MN is owed. */
static mc_aconn *
ordered_conn(mc_aclient *cl, struct mc_aserver *as)
{
    mc_aconn *ac = as->ordered;
    if (ac == NULL) {
        return NULL;
    }
    struct mc_conn *c = ac->conn;
    if (ac->closed || c == NULL || ac->replies_done > as->ordered_mark
        || (cl->core.eng.cfg.fence && c->head == NULL && c->fences == 0
            && mc_conn_written(c))) {
        as->ordered = NULL;
        return NULL;
    }
    return ac;
}

/* A connection of server s with room for a request: the one noreply
 * writes were ordered on, else the least loaded, or NULL (a new one is
 * asked for when the limit allows). */
static mc_aconn *
conn_with_room(mc_aclient *cl, size_t s, int *dead)
{
    struct mc_aserver *as = &cl->servers[s];
    mc_aconn *best = NULL;
    *dead = 0;
    mc_aconn *ordered = ordered_conn(cl, as);
    if (ordered != NULL) {
        return ordered->inflight < cl->max_inflight ? ordered : NULL;
    }
    for (int i = 0; i < as->nconns; i++) {
        mc_aconn *ac = as->conns[i];
        if (!ac->closed && (best == NULL || ac->inflight < best->inflight)) {
            best = ac;
        }
    }
    if (best != NULL && best->inflight < cl->max_inflight) {
        if (best->inflight > 0 && as->nconns + as->connecting
                                      < cl->max_connections
            && best->inflight >= cl->max_inflight / 2) {
            (void)want_conn(cl, s);  /* busy: open another beside it */
        }
        return best;
    }
    if (want_conn(cl, s) < 0 && as->nconns == 0 && as->connecting == 0) {
        *dead = 1;
    }
    return NULL;
}

/* ---- units ------------------------------------------------------------------ */

static void
on_req_done(void *owner, struct mc_req *r)
{
    (void)owner;
    struct mc_aunit *u = r->driver;
    if (r->state == MC_REQ_DONE) {
        /* A complete reply: the server's timeouts in a row end (as when
         * the blocking driver gives a connection back). */
        struct mc_engine *e = &u->call->client->core.eng;
        struct mc_server *srv = &e->servers[u->server];
        if (srv->timeouts != 0) {
            mc_lock_acquire(&e->lock);
            srv->timeouts = 0;
            mc_lock_release(&e->lock);
        }
    }
    unit_done(u);
}

/* After a write: the loop watches ac's socket while replies are owed on
 * it, and its deadline check is armed. */
static void
await_replies(mc_aconn *ac)
{
    if (ac->inflight > 0 && mc_aloop_watch_read(ac) < 0) {
        mc_aloop_unraisable("cmemcache.aio: add_reader");
    }
    mc_aloop_arm_timer(ac);
}

/* Queues a unit on a connection with room. */
static int
queue_unit(struct mc_aunit *u, mc_aconn *ac)
{
    mc_aclient *cl = ac->client;
    struct mc_req *r = u->noreply ? NULL : u->req;
    if (r != NULL) {
        r->on_done = on_req_done;
        r->driver = u;
    }
    bool fence = u->noreply && cl->core.eng.cfg.fence;
    /* Nothing else on it, queued or in flight: the request is written at
     * once, not at the iteration's end (a call alone saves a loop
     * iteration; with many, the others still go out together). */
    bool alone = r != NULL && ac->inflight == 0 && !ac->dirty
                 && !ac->writing && ac->writes == NULL
                 && ac->conn->tls == NULL && mc_conn_written(ac->conn);
    if (mc_conn_queue(ac->conn, r, u->iov, u->iovcnt, fence) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    u->on = ac;
    ac->inflight++;
    if (u->noreply) {
        u->next = ac->writes;
        ac->writes = u;
        struct mc_aserver *as = &cl->servers[ac->server];
        as->ordered = ac;
        as->ordered_mark = ac->replies_queued;
    }
    else {
        ac->replies_queued++;
    }
    if (alone) {
        /* One sendmsg; anything short of all of it (the socket full, or
         * failed: its error stays for the next send) goes on in the
         * flush, as it would have. */
        (void)mc_xport_send(ac->conn);
        if (mc_conn_written(ac->conn)) {
            await_replies(ac);
            return 0;
        }
    }
    ac->dirty = true;
    mc_aloop_schedule_flush(cl);
    return 0;
}

/* Arms the deadline check of server s's waiting units, for the earliest
 * deadline among them (a unit moved here by failover may be older than
 * the ones before it). */
static void
arm_wait_timer(mc_aclient *cl, size_t s)
{
    struct mc_aserver *as = &cl->servers[s];
    if (as->wait_timer != NULL || as->wait_head == NULL || cl->closed
        || cl->call_at == NULL) {
        return;
    }
    int64_t first = INT64_MAX;
    for (struct mc_aunit *u = as->wait_head; u != NULL; u = u->next) {
        if (u->call->deadline < first) {
            first = u->call->deadline;
        }
    }
    int64_t left = first - mc_now();
    if (left < 0) {
        left = 0;
    }
    PyObject *when = PyFloat_FromDouble(mc_aloop_time(left, cl));
    PyObject *cb = when ? PyObject_GetAttrString((PyObject *)cl,
                                                 "_on_wait_timer")
                        : NULL;
    PyObject *index = cb ? PyLong_FromSize_t(s) : NULL;
    if (index != NULL) {
        PyObject *args[3] = {when, cb, index};
        as->wait_timer = PyObject_Vectorcall(cl->call_at, args, 3, NULL);
    }
    Py_XDECREF(when);
    Py_XDECREF(cb);
    Py_XDECREF(index);
    if (as->wait_timer == NULL) {
        mc_aloop_unraisable("cmemcache.aio: arming a deadline");
    }
}

static void
cancel_wait_timer(struct mc_aserver *as)
{
    if (as->wait_timer != NULL) {
        PyObject *r = PyObject_CallMethod(as->wait_timer, "cancel", NULL);
        Py_XDECREF(r);
        PyErr_Clear();
        Py_CLEAR(as->wait_timer);
    }
}

static void
wait_unit(mc_aclient *cl, struct mc_aunit *u)
{
    struct mc_aserver *as = &cl->servers[u->server];
    u->next = NULL;
    if (as->wait_tail != NULL) {
        as->wait_tail->next = u;
    }
    else {
        as->wait_head = u;
    }
    as->wait_tail = u;
    arm_wait_timer(cl, u->server);
}

/* Places a unit: on a connection with room, or in line for one; a unit
 * whose server is held down fails (or, for a one-key call with failover,
 * goes to the server picked now). */
static int
place_unit(struct mc_aunit *u)
{
    mc_acall *call = u->call;
    mc_aclient *cl = call->client;
    if (call->deadline <= mc_now()) {
        fail_unit(u, -ETIMEDOUT, NULL);
        return 0;
    }
    int dead;
    mc_aconn *ac = conn_with_room(cl, u->server, &dead);
    if (ac != NULL) {
        return queue_unit(u, ac);
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    if (!dead) {
        wait_unit(cl, u);
        return 0;
    }
    struct mc_engine *e = &cl->core.eng;
    if (call->kind == MC_A_ONE && call->one.keyed
        && e->cfg.failover != MC_FAILOVER_NONE
        && call->picks <= e->nservers) {
        ssize_t idx = mc_engine_pick(e, &call->one.place);
        call->picks++;
        if (idx >= 0 && (size_t)idx != u->server) {
            u->server = (size_t)idx;
            call->one.server = (size_t)idx;
            return place_unit(u);
        }
    }
    fail_unit(u, MC_EDEAD, NULL);
    return 0;
}

/* Gives the waiting units of server s the room there is. */
static void
serve_waiters(mc_aclient *cl, size_t s)
{
    struct mc_aserver *as = &cl->servers[s];
    while (as->wait_head != NULL) {
        struct mc_aunit *u = as->wait_head;
        int dead;
        mc_aconn *ac = conn_with_room(cl, s, &dead);
        if (ac == NULL && !dead) {
            PyErr_Clear();
            return;             /* still no room: they keep waiting */
        }
        as->wait_head = u->next;
        if (as->wait_head == NULL) {
            as->wait_tail = NULL;
        }
        u->next = NULL;
        if (u->call->abandoned) {
            fail_unit(u, MC_EOWNER, NULL);  /* nobody waits for it: unsent */
        }
        else if (ac == NULL) {
            fail_unit(u, MC_EDEAD, NULL);
        }
        else if (u->call->deadline <= mc_now()) {
            fail_unit(u, -ETIMEDOUT, NULL);
        }
        else if (queue_unit(u, ac) < 0) {
            mc_aloop_unraisable("cmemcache.aio: queueing a request");
            fail_unit(u, -ENOMEM, NULL);
        }
    }
}

static void
fail_unit(struct mc_aunit *u, int code, const char *text)
{
    if (u->done) {
        return;
    }
    if (u->fail->code == 0) {
        mc_fail_set(u->fail, code);
        if (text != NULL) {
            snprintf(u->fail->text, sizeof(u->fail->text), "%s", text);
        }
    }
    if (u->req != NULL && u->req->fail.code == 0) {
        u->req->fail = *u->fail;
    }
    unit_done(u);
}

/* A unit is complete (or failed): the call finishes with its last one. */
static void
unit_done(struct mc_aunit *u)
{
    if (u->done) {
        return;
    }
    u->done = true;
    mc_acall *call = u->call;
    if (u->on != NULL) {
        u->on->inflight--;
        if (!u->noreply) {
            u->on->replies_done++;
        }
        u->on = NULL;
    }
    if (u->req != NULL && u->req->state == MC_REQ_FAILED
        && u->fail->code == 0) {
        *u->fail = u->req->fail;
    }
    if (--call->parts_left == 0) {
        mc_acall_finish(call);
        Py_DECREF(call);        /* the driver's reference */
    }
}

/* ---- starting a call ---------------------------------------------------------- */

int
mc_adrive_start(mc_acall *call)
{
    mc_aclient *cl = call->client;
    struct mc_engine *e = &cl->core.eng;
    call->deadline = mc_now() + e->cfg.timeout;
    int n = 0;
    struct mc_aunit *units = NULL;
    if (call->kind == MC_A_ONE) {
        n = 1;
        units = PyMem_Calloc(1, sizeof(struct mc_aunit));
        if (units == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        struct mc_call *c = &call->one;
        if (c->keyed) {
            ssize_t idx = mc_engine_pick(e, &c->place);
            call->picks = 1;
            if (idx < 0) {
                PyMem_Free(units);
                mc_fail_set(&call->fail, MC_ENOSERVER);
                call->parts_left = 0;
                mc_acall_finish(call);
                return 0;
            }
            c->server = (size_t)idx;
        }
        units[0].server = c->server;
        units[0].req = &c->req;
        units[0].iov = c->iov;
        units[0].iovcnt = c->iovcnt;
        units[0].noreply = c->noreply;
        units[0].fail = &call->fail;
    }
    else if (call->kind == MC_A_ALL) {
        n = (int)e->nservers;
        units = PyMem_Calloc((size_t)n, sizeof(struct mc_aunit));
        if (units == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (int i = 0; i < n; i++) {
            struct mc_call *c = &call->alls[i];
            units[i].server = (size_t)i;
            units[i].req = &c->req;
            units[i].iov = c->iov;
            units[i].iovcnt = c->iovcnt;
            units[i].noreply = c->noreply;
            units[i].fail = &c->fail;
            c->fail.code = 0;
        }
    }
    else {
        struct mc_multi *m = &call->multi->m;
        if (mc_multi_place(m) < 0 || mc_multi_build(m) < 0) {
            PyErr_NoMemory();
            return -1;
        }
        if (mc_pymulti_unplaced(call->multi) < 0) {
            return -1;
        }
        n = (int)m->nparts;
        units = PyMem_Calloc((size_t)(n ? n : 1), sizeof(struct mc_aunit));
        if (units == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (int i = 0; i < n; i++) {
            struct mc_part *p = &m->parts[i];
            units[i].server = (size_t)(p->srv - e->servers);
            units[i].req = &p->req;
            units[i].iov = p->iov;
            units[i].iovcnt = p->niov;
            units[i].noreply = m->noreply;
            units[i].fail = &p->fail;
        }
    }
    call->units = units;
    call->nunits = n;
    call->parts_left = n;
    if (n == 0) {
        mc_acall_finish(call);
        return 0;
    }
    Py_INCREF(call);            /* the driver's, until its last unit */
    for (int i = 0; i < n; i++) {
        units[i].call = call;
    }
    /* the units may finish the call as they are placed: hold it meanwhile */
    Py_INCREF(call);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = place_unit(&units[i]);
    }
    if (rc < 0) {
        for (int i = 0; i < n; i++) {
            if (!units[i].done && units[i].on == NULL) {
                fail_unit(&units[i], -ENOMEM, NULL);
            }
        }
    }
    Py_DECREF(call);
    return rc;
}

void
mc_adrive_abandon(mc_acall *call)
{
    call->abandoned = true;
    for (int i = 0; call->units != NULL && i < call->nunits; i++) {
        struct mc_aunit *u = &call->units[i];
        if (!u->done && u->req != NULL) {
            mc_req_abandon(u->req);
        }
    }
}

/* ---- writing -------------------------------------------------------------------- */

/* Writes what ac has queued, as far as the socket takes it.  Returns 0, or
 * -1 when the connection failed (it is closed). */
static int
conn_write(mc_aconn *ac)
{
    struct mc_conn *c = ac->conn;
    ac->write_wants_read = false;
    while (!mc_conn_written(c)) {
        ssize_t n = mc_xport_send(c);
        if (n == MC_TLS_WANT_READ) {
            /* TLS: the write goes on once the socket is readable (the
             * reader calls it) */
            ac->write_wants_read = true;
            if (mc_aloop_watch_read(ac) < 0) {
                mc_aloop_unraisable("cmemcache.aio: add_reader");
            }
            return 0;
        }
        if (n == -EAGAIN) {
            mc_aloop_add_writer(ac);
            return 0;
        }
        if (n < 0) {
            struct mc_fail f;
            conn_fail_code(ac, &f, (int)n);
            conn_fail(ac, &f);
            /* the calls waiting for room on it go elsewhere, or fail */
            serve_waiters(ac->client, ac->server);
            return -1;
        }
    }
    if (ac->writing && !ac->read_wants_write) {
        PyObject *fd = PyLong_FromLong(c->fd);
        PyObject *r = fd ? mc_aloop_call(ac->client->remove_writer, fd, NULL) : NULL;
        Py_XDECREF(fd);
        Py_XDECREF(r);
        PyErr_Clear();
        ac->writing = false;
    }
    /* every noreply command on it is out */
    bool room = ac->writes != NULL;
    while (ac->writes != NULL) {
        struct mc_aunit *u = ac->writes;
        ac->writes = u->next;
        u->next = NULL;
        unit_done(u);
    }
    if (room) {
        /* their room goes to the calls waiting (no reply may ever come
         * on a connection that carried only noreply commands) */
        serve_waiters(ac->client, ac->server);
    }
    return 0;
}

PyObject *
mc_adrive_flush(mc_aclient *cl)
{
    cl->flush_scheduled = false;
    struct mc_engine *e = &cl->core.eng;
    for (size_t s = 0; s < e->nservers; s++) {
        struct mc_aserver *as = &cl->servers[s];
        for (int i = 0; i < as->nconns; i++) {
            mc_aconn *ac = as->conns[i];
            if (!ac->dirty || ac->closed) {
                continue;
            }
            ac->dirty = false;
            Py_INCREF(ac);
            if (conn_write(ac) == 0 && !ac->closed) {
                await_replies(ac);
            }
            Py_DECREF(ac);
            if (i >= as->nconns || as->conns[i] != ac) {
                i--;            /* it was removed: the next one moved here */
            }
        }
    }
    Py_RETURN_NONE;
}

/* ---- reading ---------------------------------------------------------------------- */

/* The loop says ac is readable: receive what is there, feed it. */
PyObject *
mc_aconn_on_read(mc_aconn *ac)
{
    if (ac->closed || ac->conn == NULL) {
        Py_RETURN_NONE;
    }
    mc_aclient *cl = ac->client;
    struct mc_conn *c = ac->conn;
    Py_INCREF(ac);
    size_t need = 0;
    if (ac->write_wants_read) {
        /* a TLS write waited for this */
        if (conn_write(ac) < 0 || ac->closed) {
            serve_waiters(cl, ac->server);
            Py_DECREF(ac);
            Py_RETURN_NONE;
        }
    }
    ac->read_wants_write = false;
    /* (a TLS connection reads on while decrypted bytes are pending: no
     * loop event would announce them) */
    for (int rounds = 0; !ac->closed && (rounds < 16 || mc_xport_pending(c));
         rounds++) {
        if (mc_buf_reserve(&c->rbuf, mc_buf_room(need, mc_buf_len(&c->rbuf)))
            < 0) {
            struct mc_fail f;
            fail_code(&f, -ENOMEM);
            conn_fail(ac, &f);
            break;
        }
        ssize_t n = mc_xport_recv(c);
        if (n == -EAGAIN) {
            break;
        }
        if (n == MC_TLS_WANT_WRITE) {
            /* TLS: the read goes on once the socket is writable */
            ac->read_wants_write = true;
            mc_aloop_add_writer(ac);
            break;
        }
        if (n < 0) {
            struct mc_fail f;
            conn_fail_code(ac, &f, (int)n);
            conn_fail(ac, &f);
            break;
        }
        struct mc_fail f;
        int rc;
        while ((rc = mc_conn_feed(c, cl->core.eng.cfg.max_value, &need, &f))
               == MC_FEED_OWNER) {
            /* building a result raised: its call gets the exception, the
             * rest of its reply is discarded */
            struct mc_req *r = c->head;
            if (r != NULL && r->driver != NULL) {
                mc_acall *call = ((struct mc_aunit *)r->driver)->call;
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                PyErr_NormalizeException(&type, &value, &tb);
                Py_XDECREF(type);
                Py_XDECREF(tb);
                if (call->exc == NULL) {
                    call->exc = value;
                }
                else {
                    Py_XDECREF(value);
                }
            }
            else {
                PyErr_Clear();
            }
        }
        if (rc == MC_FEED_BROKEN) {
            conn_fail(ac, &f);
            break;
        }
        if (c->tls == NULL && (size_t)n < c->rbuf.cap - c->rbuf.end) {
            break;              /* the socket had no more */
        }
    }
    /* The deadline check stays armed when nothing is left in flight: when
     * it fires it finds nothing, or a later request to arm it for, so a
     * busy connection pays one loop timer per timeout, not one per call. */
    serve_waiters(cl, ac->server);
    Py_DECREF(ac);
    Py_RETURN_NONE;
}

PyObject *
mc_aconn_on_write(mc_aconn *ac)
{
    if (!ac->closed && ac->conn != NULL) {
        Py_INCREF(ac);
        if (ac->read_wants_write) {
            /* a TLS read waited for this */
            PyObject *r = mc_aconn_on_read(ac);
            Py_XDECREF(r);
        }
        if (!ac->closed && ac->conn != NULL) {
            (void)conn_write(ac);
        }
        Py_DECREF(ac);
    }
    Py_RETURN_NONE;
}

/* The deadline check: the oldest request in flight is past it, so the
 * connection is closed (everything on it fails with TimeoutError), or it
 * is not, and the check is armed again for it. */
PyObject *
mc_aconn_on_timer(mc_aconn *ac)
{
    Py_CLEAR(ac->timer);
    if (ac->closed || ac->conn == NULL || ac->conn->head == NULL) {
        Py_RETURN_NONE;
    }
    struct mc_aunit *u = ac->conn->head->driver;
    if (u->call->deadline <= mc_now() + 1000000) {
        mc_aclient *cl = ac->client;
        size_t s = ac->server;
        struct mc_fail f;
        fail_code(&f, -ETIMEDOUT);  /* counted against the server as the
                                     * calls finish */
        Py_INCREF(cl);
        conn_fail(ac, &f);
        serve_waiters(cl, s);
        Py_DECREF(cl);
        Py_RETURN_NONE;
    }
    mc_aloop_arm_timer(ac);
    Py_RETURN_NONE;
}

/* ---- connections from the connector ------------------------------------------------ */

int
mc_adrive_attach(mc_aclient *cl, size_t server, int fd, struct mc_tls *tls)
{
    struct mc_aserver *as = &cl->servers[server];
    if (as->connecting > 0) {
        as->connecting--;
    }
    struct mc_fail f;
    struct mc_conn *c = mc_engine_connected(&cl->core.eng,
                                            &cl->core.eng.servers[server],
                                            fd, 0, &f);
    if (c == NULL) {
#ifdef MC_HAVE_TLS
        mc_tls_drop(tls);       /* fd is closed: nothing is sent */
#endif
        mc_adrive_connect_failed(cl, server, f.code, NULL);
        return 0;
    }
    c->tls = tls;
    PyTypeObject *tp = cl->core.state->aconn_type;
    mc_aconn *ac = PyObject_GC_New(mc_aconn, tp);
    if (ac == NULL) {
        mc_conn_close(c);
        return -1;
    }
    ac->client = (mc_aclient *)Py_NewRef(cl);
    ac->conn = c;
    ac->server = server;
    ac->inflight = 0;
    ac->reading = ac->writing = ac->dirty = ac->closed = false;
    ac->write_wants_read = ac->read_wants_write = false;
    ac->timer = NULL;
    ac->writes = NULL;
    ac->replies_queued = ac->replies_done = 0;
    ac->on_read = PyObject_GetAttrString((PyObject *)ac, "_on_read");
    ac->on_write = PyObject_GetAttrString((PyObject *)ac, "_on_write");
    PyObject_GC_Track(ac);
    if (ac->on_read == NULL || ac->on_write == NULL) {
        struct mc_fail ff;
        fail_code(&ff, -ENOMEM);
        ac->closed = true;
        Py_DECREF(ac);
        return -1;
    }
    mc_aconn **conns = PyMem_Realloc(as->conns, sizeof(mc_aconn *)
                                                    * (size_t)(as->nconns + 1));
    if (conns == NULL) {
        Py_DECREF(ac);
        PyErr_NoMemory();
        return -1;
    }
    as->conns = conns;
    as->conns[as->nconns++] = ac;   /* the server's reference */
    if (mc_aloop_watch_read(ac) < 0) {
        return -1;
    }
    if (!mc_conn_written(c)) {
        ac->dirty = true;       /* a flush_all queued on reconnect */
        mc_aloop_schedule_flush(cl);
    }
    serve_waiters(cl, server);
    return 0;
}

void
mc_adrive_connect_failed(mc_aclient *cl, size_t server, int code,
                         const char *text)
{
    struct mc_aserver *as = &cl->servers[server];
    if (code != 0 && text == NULL) {
        /* from attach: the engine already knows */
    }
    else {
        if (as->connecting > 0) {
            as->connecting--;
        }
        struct mc_fail f;
        (void)mc_engine_connected(&cl->core.eng,
                                  &cl->core.eng.servers[server], code, 0, &f);
    }
    if (as->nconns > 0 || as->connecting > 0) {
        serve_waiters(cl, server);
        return;
    }
    /* nobody will take the waiting ones: each fails, or moves */
    struct mc_aunit *u = as->wait_head;
    as->wait_head = as->wait_tail = NULL;
    while (u != NULL) {
        struct mc_aunit *next = u->next;
        u->next = NULL;
        mc_acall *call = u->call;
        struct mc_engine *e = &cl->core.eng;
        if (call->kind == MC_A_ONE && call->one.keyed
            && e->cfg.failover != MC_FAILOVER_NONE
            && call->picks <= e->nservers) {
            ssize_t idx = mc_engine_pick(e, &call->one.place);
            call->picks++;
            if (idx >= 0 && (size_t)idx != server) {
                u->server = (size_t)idx;
                call->one.server = (size_t)idx;
                if (place_unit(u) < 0) {
                    mc_aloop_unraisable("cmemcache.aio: placing a request");
                    fail_unit(u, -ENOMEM, NULL);
                }
                u = next;
                continue;
            }
        }
        fail_unit(u, code, text);
        u = next;
    }
}

PyObject *
mc_adrive_on_wait_timer(mc_aclient *cl, size_t s)
{
    if (cl->servers == NULL || s >= cl->core.eng.nservers) {
        Py_RETURN_NONE;
    }
    struct mc_aserver *as = &cl->servers[s];
    Py_CLEAR(as->wait_timer);
    /* the units past their deadline leave the line first: failing one
     * may finish (and free) its call */
    int64_t now = mc_now() + 1000000;
    struct mc_aunit *expired = NULL, **tail = &expired;
    struct mc_aunit *prev = NULL, *u = as->wait_head;
    while (u != NULL) {
        struct mc_aunit *next = u->next;
        if (u->call->deadline <= now) {
            if (prev != NULL) {
                prev->next = next;
            }
            else {
                as->wait_head = next;
            }
            if (as->wait_tail == u) {
                as->wait_tail = prev;
            }
            u->next = NULL;
            *tail = u;
            tail = &u->next;
        }
        else {
            prev = u;
        }
        u = next;
    }
    Py_INCREF(cl);
    while (expired != NULL) {
        struct mc_aunit *next = expired->next;
        expired->next = NULL;
        fail_unit(expired, -ETIMEDOUT, NULL);
        expired = next;
    }
    arm_wait_timer(cl, s);
    Py_DECREF(cl);
    Py_RETURN_NONE;
}

void
mc_adrive_close_all(mc_aclient *cl)
{
    struct mc_engine *e = &cl->core.eng;
    struct mc_fail f;
    mc_fail_set(&f, MC_EEOF);
    snprintf(f.text, sizeof(f.text), "the client was closed");
    for (size_t s = 0; cl->servers != NULL && s < e->nservers; s++) {
        struct mc_aserver *as = &cl->servers[s];
        cancel_wait_timer(as);
        while (as->nconns > 0) {
            conn_fail(as->conns[as->nconns - 1], &f);
        }
        struct mc_aunit *u = as->wait_head;
        as->wait_head = as->wait_tail = NULL;
        while (u != NULL) {
            struct mc_aunit *next = u->next;
            u->next = NULL;
            fail_unit(u, MC_EEOF, "the client was closed");
            u = next;
        }
    }
}

void
mc_adrive_forget_connects(mc_aclient *cl)
{
    for (size_t s = 0; cl->servers != NULL && s < cl->core.eng.nservers; s++) {
        while (cl->servers[s].connecting > 0) {
            /* as a connector that failed: not the server's fault, and a
             * probe it was ends (the next call may probe again) */
            mc_adrive_connect_failed(cl, s, MC_EOWNER, "connect abandoned");
        }
    }
}

int
mc_aserver_traverse(mc_aclient *cl, visitproc visit, void *arg)
{
    struct mc_engine *e = &cl->core.eng;
    for (size_t s = 0; cl->servers != NULL && s < e->nservers; s++) {
        for (int i = 0; i < cl->servers[s].nconns; i++) {
            Py_VISIT(cl->servers[s].conns[i]);
        }
        Py_VISIT(cl->servers[s].wait_timer);
    }
    return 0;
}
