/* The awaitable each cmemcache.aio method returns (AsyncCall): a
 * coroutine whose first step sends the request (adrive.c) and waits on an
 * asyncio Future, and whose last step returns the result or raises; and a
 * connection as the loop sees it (AsyncConnection): the callbacks the loop
 * runs for it, which go to adrive.c. */
#include "aclient.h"

#include <errno.h>

PyObject *mc_aconn_on_read(mc_aconn *ac);
PyObject *mc_aconn_on_write(mc_aconn *ac);
PyObject *mc_aconn_on_timer(mc_aconn *ac);

/* ---- the call ----------------------------------------------------------- */

mc_acall *
mc_acall_new(mc_aclient *cl, enum mc_acall_kind kind, enum mc_result rk)
{
    mc_acall *c = PyObject_GC_New(mc_acall, cl->core.state->acall_type);
    if (c == NULL) {
        return NULL;
    }
    c->client = (mc_aclient *)Py_NewRef(cl);
    c->kind = kind;
    c->state = MC_A_NEW;
    c->rkind = rk;
    c->fut = NULL;
    c->nheld = 0;
    c->deadline = 0;
    c->picks = 0;
    c->abandoned = false;
    c->exc = NULL;
    c->result = NULL;
    c->units = NULL;
    c->nunits = 0;
    c->multi = NULL;
    c->parts_left = 0;
    c->all = NULL;
    c->alls = NULL;
    c->fail.code = 0;
    c->fail_server = 0;
    c->prepared = false;
    mc_call_init(&c->one, MC_X_VALUES, rk);
    PyObject_GC_Track(c);
    return c;
}

/* Holds the arguments a prepared call reads (its key and value bytes
 * point into them). */
int
mc_acall_hold_args(mc_acall *c, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    Py_ssize_t n = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    if (n > (Py_ssize_t)(sizeof(c->held) / sizeof(c->held[0]))) {
        PyErr_SetString(PyExc_TypeError, "too many arguments");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        c->held[c->nheld++] = Py_NewRef(args[i]);
    }
    return 0;
}

/* Frees what a finished call prepared (its result stays). */
static void
call_release(mc_acall *c)
{
    if (!c->prepared) {
        return;
    }
    c->prepared = false;
    if (c->kind == MC_A_ONE) {
        mc_call_release(&c->one);
    }
    else if (c->kind == MC_A_MULTI && c->multi != NULL) {
        mc_pymulti_release(c->multi);
        PyMem_Free(c->multi);
        c->multi = NULL;
    }
    else if (c->kind == MC_A_ALL) {
        for (size_t i = 0; c->alls != NULL && i < c->client->core.eng.nservers;
             i++) {
            mc_call_release(&c->alls[i]);
        }
        PyMem_Free(c->alls);
        c->alls = NULL;
        PyMem_Free(c->all);
        c->all = NULL;
    }
    PyMem_Free(c->units);
    c->units = NULL;
    c->nunits = 0;
}

/* The result of a finished call, or NULL with its exception set. */
static PyObject *
call_outcome(mc_acall *c)
{
    struct mc_core *core = &c->client->core;
    struct mc_engine *e = &core->eng;
    if (c->exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(c->exc), c->exc);
        return NULL;
    }
    if (c->kind == MC_A_ONE) {
        if (c->fail.code != 0) {
            if (c->fail.code == -ETIMEDOUT) {
                mc_engine_timed_out(e, &e->servers[c->one.server]);
            }
            mc_raise_fail(core, &e->servers[c->one.server], &c->fail);
            if (!PyErr_Occurred()) {
                PyErr_SetString(core->state->ConnectionError,
                                "the request was not completed");
            }
            return NULL;
        }
        return mc_call_result(core, &c->one, c->rkind);
    }
    if (c->kind == MC_A_MULTI) {
        return mc_pymulti_result(core, c->multi);
    }
    PyObject *acc = c->all->as_list ? PyList_New(0) : PyDict_New();
    if (acc == NULL) {
        return NULL;
    }
    size_t first = e->nservers;
    for (size_t i = 0; i < e->nservers; i++) {
        struct mc_call *one = &c->alls[i];
        if (one->fail.code != 0) {
            if (first == e->nservers) {
                first = i;
            }
            continue;
        }
        PyObject *res = mc_call_result(core, one, one->rkind);
        if (res == NULL || mc_all_add(core, c->all, acc, i, res) < 0) {
            Py_DECREF(acc);
            return NULL;
        }
    }
    if (first < e->nservers) {
        mc_raise_fail(core, &e->servers[first], &c->alls[first].fail);
        mc_attach_partial(acc);
        Py_DECREF(acc);
        return NULL;
    }
    if (c->rkind == MC_R_OK) {
        Py_DECREF(acc);         /* flush_all: True */
        Py_RETURN_TRUE;
    }
    return acc;
}

void
mc_acall_finish(mc_acall *c)
{
    if (c->state == MC_A_DONE) {
        return;
    }
    c->state = MC_A_DONE;
    PyObject *res = call_outcome(c);
    if (res == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL && value != NULL) {
            PyException_SetTraceback(value, tb);
        }
        Py_XDECREF(type);
        Py_XDECREF(tb);
        Py_XSETREF(c->exc, value);
    }
    else {
        Py_XSETREF(c->result, res);
    }
    call_release(c);
    if (c->fut != NULL && !c->abandoned) {
        /* Wake the awaiting task: the future only says the call is done
         * (the task's next step takes the result, or the exception, from
         * the call).  It may have been cancelled meanwhile. */
        PyObject *r = PyObject_CallMethodOneArg(c->fut,
                                                c->client->core.state->str_set_result,
                                                Py_None);
        Py_XDECREF(r);
        PyErr_Clear();
    }
}

/* CPython 3.11's get_running_loop() makes a getpid() system call each
 * time (3.12 no longer does).  There, the running loop of a thread is a
 * record in the thread's dict, replaced whenever a loop starts or stops
 * running in it; while the record is the one seen when the client's loop
 * was last found running in this thread (held, so its address is never
 * reused), that loop is still the one running here.  After a fork it is
 * checked again, as get_running_loop() does. */
static PyObject *
loop_holder(mc_aclient *cl)
{
#if PY_VERSION_HEX < 0x030C0000
    PyObject *d = PyThreadState_GetDict();
    return d != NULL ? PyDict_GetItemWithError(d, cl->core.state->str_running_loop)
                     : NULL;
#else
    (void)cl;
    return NULL;
#endif
}

static bool
loop_unchanged(mc_aclient *cl)
{
    if (cl->loop_holder == NULL
        || cl->loop_gen != atomic_load_explicit(&mc_fork_generation,
                                                memory_order_relaxed)) {
        return false;
    }
    PyObject *h = loop_holder(cl);
    if (h == NULL) {
        PyErr_Clear();
    }
    return h == cl->loop_holder;
}

/* Whether loop is closed: 1, 0, or -1 with an exception set. */
static int
loop_closed(PyObject *loop)
{
    PyObject *r = PyObject_CallMethod(loop, "is_closed", NULL);
    if (r == NULL) {
        return -1;
    }
    int closed = PyObject_IsTrue(r);
    Py_DECREF(r);
    return closed;
}

/* The first step of a call: binds the client to the running loop, makes
 * the future, starts the requests. */
static int
call_start(mc_acall *c)
{
    mc_aclient *cl = c->client;
    if (cl->closed) {
        PyErr_SetString(cl->core.state->ConnectionError,
                        "the client is closed");
        return -1;
    }
    if (loop_unchanged(cl)) {
        goto bound;
    }
    PyObject *loop = PyObject_CallNoArgs(cl->core.state->get_running_loop);
    if (loop == NULL) {
        return -1;
    }
    if (cl->loop != NULL && loop != cl->loop) {
        int gone = loop_closed(cl->loop);
        if (gone <= 0) {
            Py_DECREF(loop);
            if (gone == 0) {
                PyErr_SetString(PyExc_RuntimeError,
                                "this cmemcache.aio client runs on another "
                                "event loop");
            }
            return -1;
        }
        /* its loop was closed (asyncio.run() ended, say): nothing of it can
         * run again, so its connections go and this loop takes the client */
        mc_aclient_unbind(cl, true);
    }
    if (cl->loop == NULL) {
        int rc = mc_aclient_bind(cl, loop);
        if (rc < 0) {
            Py_DECREF(loop);
            return -1;
        }
    }
    Py_DECREF(loop);
    PyObject *h = loop_holder(cl);
    if (h == NULL) {
        PyErr_Clear();
    }
    Py_XSETREF(cl->loop_holder, Py_XNewRef(h));
    cl->loop_gen = atomic_load_explicit(&mc_fork_generation,
                                        memory_order_relaxed);
bound:
    c->fut = PyObject_CallNoArgs(cl->create_future);
    if (c->fut == NULL) {
        return -1;
    }
    c->state = MC_A_FLIGHT;
    if (mc_adrive_start(c) < 0) {
        c->state = MC_A_DONE;
        return -1;
    }
    return 0;
}

static PySendResult
acall_am_send(mc_acall *c, PyObject *arg, PyObject **presult)
{
    (void)arg;
    if (c->state == MC_A_NEW) {
        if (call_start(c) < 0) {
            *presult = NULL;
            return PYGEN_ERROR;
        }
    }
    if (c->state != MC_A_DONE) {
        /* as Future.__await__ does: tell the task it blocks on fut */
        if (PyObject_SetAttrString(c->fut, "_asyncio_future_blocking",
                                   Py_True)
            < 0) {
            *presult = NULL;
            return PYGEN_ERROR;
        }
        *presult = Py_NewRef(c->fut);
        return PYGEN_NEXT;
    }
    if (c->exc != NULL) {
        PyObject *exc = c->exc;
        c->exc = NULL;
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
        *presult = NULL;
        return PYGEN_ERROR;
    }
    *presult = c->result != NULL ? c->result : Py_NewRef(Py_None);
    c->result = NULL;
    return PYGEN_RETURN;
}

/* send(value), __next__: one step. */
static PyObject *
acall_step(mc_acall *c)
{
    PyObject *res;
    PySendResult r = acall_am_send(c, Py_None, &res);
    if (r == PYGEN_RETURN) {
        if (res == Py_None) {
            PyErr_SetNone(PyExc_StopIteration);
        }
        else {
            PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, res);
            if (e != NULL) {
                PyErr_SetObject(PyExc_StopIteration, e);
                Py_DECREF(e);
            }
        }
        Py_DECREF(res);
        return NULL;
    }
    return res;
}

static PyObject *
acall_iternext(mc_acall *c)
{
    return acall_step(c);
}

static PyObject *
acall_send(mc_acall *c, PyObject *Py_UNUSED(value))
{
    return acall_step(c);
}

/* throw(exc): the awaiting task is cancelled (or something else was thrown
 * in): the call is abandoned and the exception goes on. */
static PyObject *
acall_throw(mc_acall *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    if (c->state == MC_A_FLIGHT) {
        mc_adrive_abandon(c);
    }
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : NULL;
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    }
    else if (val != NULL && val != Py_None) {
        PyErr_SetObject(typ, val);
    }
    else {
        PyErr_SetNone(typ);
    }
    if (c->state == MC_A_NEW) {
        c->state = MC_A_DONE;
    }
    return NULL;
}

static PyObject *
acall_close(mc_acall *c, PyObject *Py_UNUSED(ignored))
{
    if (c->state == MC_A_FLIGHT) {
        mc_adrive_abandon(c);
    }
    else if (c->state == MC_A_NEW) {
        c->state = MC_A_DONE;
        call_release(c);
    }
    Py_RETURN_NONE;
}

static PyObject *
acall_await(mc_acall *c)
{
    return Py_NewRef(c);
}

static int
acall_traverse(mc_acall *c, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(c));
    Py_VISIT(c->client);
    Py_VISIT(c->fut);
    Py_VISIT(c->exc);
    Py_VISIT(c->result);
    for (int i = 0; i < c->nheld; i++) {
        Py_VISIT(c->held[i]);
    }
    return 0;
}

static int
acall_clear(mc_acall *c)
{
    Py_CLEAR(c->fut);
    Py_CLEAR(c->exc);
    Py_CLEAR(c->result);
    return 0;
}

static void
acall_dealloc(mc_acall *c)
{
    PyTypeObject *tp = Py_TYPE(c);
    PyObject_GC_UnTrack(c);
    /* never in flight here: the driver holds a reference until then */
    call_release(c);
    (void)acall_clear(c);
    for (int i = 0; i < c->nheld; i++) {
        Py_CLEAR(c->held[i]);
    }
    Py_CLEAR(c->client);
    tp->tp_free((PyObject *)c);
    Py_DECREF(tp);
}

static PyMethodDef acall_methods[] = {
    {"send", (PyCFunction)acall_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))acall_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)acall_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot acall_slots[] = {
    {Py_tp_doc, (void *)PyDoc_STR("A cmemcache.aio call: await it.")},
    {Py_tp_dealloc, MC_SLOT(acall_dealloc)},
    {Py_tp_traverse, MC_SLOT(acall_traverse)},
    {Py_tp_clear, MC_SLOT(acall_clear)},
    {Py_tp_methods, acall_methods},
    {Py_tp_iter, MC_SLOT(acall_await)},
    {Py_tp_iternext, MC_SLOT(acall_iternext)},
    {Py_am_await, MC_SLOT(acall_await)},
    {Py_am_send, MC_SLOT(acall_am_send)},
    {0, NULL},
};

PyType_Spec mc_acall_spec = {
    .name = "cmemcache._cmemcache.AsyncCall",
    .basicsize = sizeof(mc_acall),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = acall_slots,
};

/* ---- a connection, as the loop sees it ---------------------------------- */

static PyObject *
aconn_read(mc_aconn *ac, PyObject *Py_UNUSED(ignored))
{
    return mc_aconn_on_read(ac);
}

static PyObject *
aconn_write(mc_aconn *ac, PyObject *Py_UNUSED(ignored))
{
    return mc_aconn_on_write(ac);
}

static PyObject *
aconn_timer(mc_aconn *ac, PyObject *Py_UNUSED(ignored))
{
    return mc_aconn_on_timer(ac);
}

static int
aconn_traverse(mc_aconn *ac, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(ac));
    Py_VISIT(ac->client);
    Py_VISIT(ac->on_read);
    Py_VISIT(ac->on_write);
    Py_VISIT(ac->timer);
    return 0;
}

static int
aconn_clear(mc_aconn *ac)
{
    Py_CLEAR(ac->on_read);
    Py_CLEAR(ac->on_write);
    Py_CLEAR(ac->timer);
    return 0;
}

static void
aconn_dealloc(mc_aconn *ac)
{
    PyTypeObject *tp = Py_TYPE(ac);
    PyObject_GC_UnTrack(ac);
    if (ac->conn != NULL) {
        /* closed with the client: nothing can be in flight any more */
        mc_conn_close(ac->conn);
        ac->conn = NULL;
    }
    (void)aconn_clear(ac);
    Py_CLEAR(ac->client);
    tp->tp_free((PyObject *)ac);
    Py_DECREF(tp);
}

static PyMethodDef aconn_methods[] = {
    {"_on_read", (PyCFunction)aconn_read, METH_NOARGS, NULL},
    {"_on_write", (PyCFunction)aconn_write, METH_NOARGS, NULL},
    {"_on_timer", (PyCFunction)aconn_timer, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot aconn_slots[] = {
    {Py_tp_doc, (void *)PyDoc_STR("A cmemcache.aio connection.")},
    {Py_tp_dealloc, MC_SLOT(aconn_dealloc)},
    {Py_tp_traverse, MC_SLOT(aconn_traverse)},
    {Py_tp_clear, MC_SLOT(aconn_clear)},
    {Py_tp_methods, aconn_methods},
    {0, NULL},
};

PyType_Spec mc_aconn_spec = {
    .name = "cmemcache._cmemcache.AsyncConnection",
    .basicsize = sizeof(mc_aconn),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = aconn_slots,
};
