/* Calling the asyncio event loop from C, for the loop driver (adrive.c):
 * a vectorcall of one of the loop's bound methods, its failures reported
 * as unraisable, the flush scheduled once per iteration (call_soon), a
 * connection's socket watched for reading and writing, and its deadline
 * check armed as a loop timer (call_at). */
#include "aloop.h"

PyObject *
mc_aloop_call(PyObject *fn, PyObject *a, PyObject *b)
{
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(fn, args, b != NULL ? 2 : 1, NULL);
}

void
mc_aloop_unraisable(const char *what)
{
    if (PyErr_Occurred()) {
        PyObject *s = PyUnicode_FromString(what);
        PyErr_WriteUnraisable(s);
        Py_XDECREF(s);
    }
}

void
mc_aloop_schedule_flush(mc_aclient *cl)
{
    if (cl->flush_scheduled || cl->closed) {
        return;
    }
    PyObject *h = mc_aloop_call(cl->call_soon, cl->flush_cb, NULL);
    if (h == NULL) {
        mc_aloop_unraisable("cmemcache.aio: scheduling a flush");
        return;
    }
    Py_DECREF(h);
    cl->flush_scheduled = true;
}

int
mc_aloop_watch_read(mc_aconn *ac)
{
    if (ac->reading) {
        return 0;
    }
    PyObject *fd = PyLong_FromLong(ac->conn->fd);
    PyObject *r = fd ? mc_aloop_call(ac->client->add_reader, fd, ac->on_read) : NULL;
    Py_XDECREF(fd);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    ac->reading = true;
    return 0;
}

void
mc_aloop_unwatch(mc_aconn *ac)
{
    mc_aclient *cl = ac->client;
    if (ac->conn == NULL) {
        return;
    }
    PyObject *fd = PyLong_FromLong(ac->conn->fd);
    if (fd == NULL) {
        PyErr_Clear();
        return;
    }
    if (ac->reading) {
        PyObject *r = mc_aloop_call(cl->remove_reader, fd, NULL);
        Py_XDECREF(r);
        PyErr_Clear();          /* a loop already closed */
        ac->reading = false;
    }
    if (ac->writing) {
        PyObject *r = mc_aloop_call(cl->remove_writer, fd, NULL);
        Py_XDECREF(r);
        PyErr_Clear();
        ac->writing = false;
    }
    Py_DECREF(fd);
}

double
mc_aloop_time(int64_t ns_from_now, mc_aclient *cl)
{
    PyObject *t = PyObject_CallNoArgs(cl->loop_time);
    double now = t ? PyFloat_AsDouble(t) : 0.0;
    Py_XDECREF(t);
    return now + (double)ns_from_now / MC_NS;
}

/* Arms the connection's deadline check for its oldest request, unless it
 * is armed: it is then due no later than that request's deadline (the
 * calls of one client share one timeout, so a later request's deadline is
 * never earlier). */
void
mc_aloop_arm_timer(mc_aconn *ac)
{
    if (ac->timer != NULL || ac->conn == NULL || ac->conn->head == NULL) {
        return;
    }
    struct mc_aunit *u = ac->conn->head->driver;
    int64_t left = u->call->deadline - mc_now();
    if (left < 0) {
        left = 0;
    }
    PyObject *when = PyFloat_FromDouble(mc_aloop_time(left, ac->client));
    PyObject *cb = when ? PyObject_GetAttrString((PyObject *)ac, "_on_timer")
                        : NULL;
    ac->timer = cb ? mc_aloop_call(ac->client->call_at, when, cb) : NULL;
    Py_XDECREF(when);
    Py_XDECREF(cb);
    if (ac->timer == NULL) {
        mc_aloop_unraisable("cmemcache.aio: arming a deadline");
    }
}

void
mc_aloop_cancel_timer(mc_aconn *ac)
{
    if (ac->timer != NULL) {
        PyObject *r = PyObject_CallMethod(ac->timer, "cancel", NULL);
        Py_XDECREF(r);
        PyErr_Clear();
        Py_CLEAR(ac->timer);
    }
}

/* Has the loop call ac's on_write once its socket is writable. */
void
mc_aloop_add_writer(mc_aconn *ac)
{
    if (ac->writing) {
        return;
    }
    PyObject *fd = PyLong_FromLong(ac->conn->fd);
    PyObject *r = fd ? mc_aloop_call(ac->client->add_writer, fd, ac->on_write) : NULL;
    Py_XDECREF(fd);
    if (r == NULL) {
        mc_aloop_unraisable("cmemcache.aio: add_writer");
        return;
    }
    Py_DECREF(r);
    ac->writing = true;
}
