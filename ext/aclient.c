/* cmemcache.aio's C types: the client (AsyncStringClient), whose methods
 * are StringClient's, each returning a call; the call, a coroutine whose
 * first step sends the request (adrive.c) and waits on an asyncio Future;
 * and a connection as the loop sees it (its callbacks). */
#include "aclient.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "pyargs.h"
#include "tls.h"
#include "pycore.h"

PyObject *mc_aconn_on_read(mc_aconn *ac);
PyObject *mc_aconn_on_write(mc_aconn *ac);
PyObject *mc_aconn_on_timer(mc_aconn *ac);

/* ---- the call ----------------------------------------------------------- */

static mc_acall *
call_new(mc_aclient *cl, enum mc_acall_kind kind, enum mc_result rk)
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
static int
hold_args(mc_acall *c, PyObject *const *args, Py_ssize_t nargs,
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
    PyObject *loop = PyObject_CallNoArgs(cl->core.state->get_running_loop);
    if (loop == NULL) {
        return -1;
    }
    if (cl->loop == NULL) {
        int rc = mc_aclient_bind(cl, loop);
        if (rc < 0) {
            Py_DECREF(loop);
            return -1;
        }
    }
    else if (loop != cl->loop) {
        Py_DECREF(loop);
        PyErr_SetString(PyExc_RuntimeError,
                        "this cmemcache.aio client runs on another event "
                        "loop");
        return -1;
    }
    Py_DECREF(loop);
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

/* ---- the client --------------------------------------------------------- */

typedef mc_aclient AClient;

int
mc_aclient_bind(mc_aclient *cl, PyObject *loop)
{
    static const char *const names[] = {
        "call_soon", "call_at", "time", "add_reader", "remove_reader",
        "add_writer", "remove_writer", "create_future",
    };
    PyObject **slots[] = {
        &cl->call_soon, &cl->call_at, &cl->loop_time, &cl->add_reader,
        &cl->remove_reader, &cl->add_writer, &cl->remove_writer,
        &cl->create_future,
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        PyObject *m = PyObject_GetAttrString(loop, names[i]);
        if (m == NULL) {
            return -1;
        }
        Py_XSETREF(*slots[i], m);
    }
    Py_XSETREF(cl->flush_cb, PyObject_GetAttrString((PyObject *)cl, "_flush"));
    Py_XSETREF(cl->connector,
               PyObject_GetAttrString((PyObject *)cl, "_connect"));
    if (cl->flush_cb == NULL || cl->connector == NULL) {
        return -1;
    }
    cl->loop = Py_NewRef(loop);
    return 0;
}

#define ACALL(kind, rk, prep)                                              \
    do {                                                                   \
        mc_acall *call = call_new(self, kind, rk);                         \
        if (call == NULL) {                                                \
            return NULL;                                                   \
        }                                                                  \
        call->prepared = true;                                             \
        if ((prep) < 0 || hold_args(call, args, nargs, kwnames) < 0) {     \
            call->state = MC_A_DONE;                                       \
            Py_DECREF(call);                                               \
            return NULL;                                                   \
        }                                                                  \
        return (PyObject *)call;                                           \
    } while (0)

static PyObject *
AClient_get(AClient *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GET);
    ACALL(MC_A_ONE, MC_R_GET,
          mc_prep_retrieve(&self->core, &call->one, args, nargs, kwnames,
                           "get", false, false));
}

static PyObject *
AClient_gets(AClient *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GETS);
    ACALL(MC_A_ONE, MC_R_GET,
          mc_prep_retrieve(&self->core, &call->one, args, nargs, kwnames,
                           "gets", true, false));
}

static PyObject *
AClient_gat(AClient *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GAT);
    ACALL(MC_A_ONE, MC_R_GET,
          mc_prep_retrieve(&self->core, &call->one, args, nargs, kwnames,
                           "gat", false, true));
}

static PyObject *
AClient_gats(AClient *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GATS);
    ACALL(MC_A_ONE, MC_R_GET,
          mc_prep_retrieve(&self->core, &call->one, args, nargs, kwnames,
                           "gats", true, true));
}

static PyObject *
AClient_get_decoded(AClient *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *kwnames = NULL;
    mc_count(&self->core, MC_CALL_GET);
    ACALL(MC_A_ONE, MC_R_DECODED,
          mc_prep_get_decoded(&self->core, &call->one, args, nargs));
}

#define ASTORE_METHOD(fn, cmd, name)                                       \
    static PyObject *                                                      \
    fn(AClient *self, PyObject *const *args, Py_ssize_t nargs,             \
       PyObject *kwnames)                                                  \
    {                                                                      \
        mc_count(&self->core, MC_CALL_SET + (int)(cmd));                   \
        ACALL(MC_A_ONE, MC_R_STORE,                                        \
              mc_prep_store(&self->core, &call->one, args, nargs, kwnames, \
                            cmd, name));                                   \
    }

ASTORE_METHOD(AClient_set, MC_SET, "set")
ASTORE_METHOD(AClient_add, MC_ADD, "add")
ASTORE_METHOD(AClient_replace, MC_REPLACE, "replace")
ASTORE_METHOD(AClient_append, MC_APPEND, "append")
ASTORE_METHOD(AClient_prepend, MC_PREPEND, "prepend")
ASTORE_METHOD(AClient_cas, MC_CAS, "cas")

static PyObject *
AClient_delete(AClient *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_DELETE);
    ACALL(MC_A_ONE, MC_R_FOUND,
          mc_prep_delete(&self->core, &call->one, args, nargs, kwnames));
}

static PyObject *
AClient_incr(AClient *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_INCR);
    ACALL(MC_A_ONE, MC_R_NUMBER,
          mc_prep_arith(&self->core, &call->one, args, nargs, kwnames,
                        false));
}

static PyObject *
AClient_decr(AClient *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_DECR);
    ACALL(MC_A_ONE, MC_R_NUMBER,
          mc_prep_arith(&self->core, &call->one, args, nargs, kwnames, true));
}

static PyObject *
AClient_touch(AClient *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_TOUCH);
    ACALL(MC_A_ONE, MC_R_FOUND,
          mc_prep_touch(&self->core, &call->one, args, nargs, kwnames));
}

/* A multi-key call: its prep fills call->multi. */
static int
multi_prep(mc_acall *call, int rc)
{
    (void)call;
    return rc;
}

static int
multi_alloc(mc_acall *call)
{
    call->multi = PyMem_Calloc(1, sizeof(struct mc_pymulti));
    if (call->multi == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *
AClient_get_multi(AClient *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GET_MULTI);
    ACALL(MC_A_MULTI, MC_R_GET,
          multi_alloc(call) < 0
              ? -1
              : multi_prep(call, mc_prep_get_multi(&self->core, call->multi,
                                                   args, nargs, kwnames,
                                                   "get_multi", false)));
}

static PyObject *
AClient_gets_multi(AClient *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GETS_MULTI);
    ACALL(MC_A_MULTI, MC_R_GET,
          multi_alloc(call) < 0
              ? -1
              : multi_prep(call, mc_prep_get_multi(&self->core, call->multi,
                                                   args, nargs, kwnames,
                                                   "gets_multi", true)));
}

static PyObject *
AClient_get_multi_decoded(AClient *self, PyObject *const *args,
                          Py_ssize_t nargs)
{
    PyObject *kwnames = NULL;
    mc_count(&self->core, MC_CALL_GET_MULTI);
    ACALL(MC_A_MULTI, MC_R_GET,
          multi_alloc(call) < 0
              ? -1
              : multi_prep(call, mc_prep_get_multi_decoded(
                                     &self->core, call->multi, args, nargs)));
}

static PyObject *
AClient_set_multi(AClient *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_SET_MULTI);
    ACALL(MC_A_MULTI, MC_R_GET,
          multi_alloc(call) < 0
              ? -1
              : multi_prep(call, mc_prep_set_multi(&self->core, call->multi,
                                                   args, nargs, kwnames)));
}

static PyObject *
AClient_delete_multi(AClient *self, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_DELETE_MULTI);
    ACALL(MC_A_MULTI, MC_R_GET,
          multi_alloc(call) < 0
              ? -1
              : multi_prep(call, mc_prep_delete_multi(&self->core,
                                                      call->multi, args,
                                                      nargs, kwnames)));
}

/* A call to every server from a template. */
static int
all_prep(mc_acall *call, int rc)
{
    if (rc < 0) {
        return -1;
    }
    size_t n = call->client->core.eng.nservers;
    call->alls = PyMem_Calloc(n, sizeof(struct mc_call));
    if (call->alls == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        mc_all_call(call->all, &call->alls[i], i);
    }
    call->rkind = call->all->rkind;
    return 0;
}

static int
all_alloc(mc_acall *call)
{
    call->all = PyMem_Calloc(1, sizeof(struct mc_all));
    if (call->all == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *
AClient_flush_all(AClient *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    ACALL(MC_A_ALL, MC_R_OK,
          all_alloc(call) < 0
              ? -1
              : all_prep(call, mc_prep_flush_all(&self->core, call->all, args,
                                                 nargs, kwnames)));
}

static PyObject *
AClient_get_stats(AClient *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    ACALL(MC_A_ALL, MC_R_STATS,
          all_alloc(call) < 0
              ? -1
              : all_prep(call, mc_prep_stats(&self->core, call->all, args,
                                             nargs, kwnames)));
}

static PyObject *
AClient_version(AClient *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *const *args = NULL;
    Py_ssize_t nargs = 0;
    PyObject *kwnames = NULL;
    ACALL(MC_A_ALL, MC_R_VERSION,
          all_alloc(call) < 0 ? -1
                              : (mc_prep_version(call->all),
                                 all_prep(call, 0)));
}

static PyObject *
AClient_server_index(AClient *self, PyObject *key)
{
    return mc_core_server_index(&self->core, key);
}

static PyObject *
AClient_flush(AClient *self, PyObject *Py_UNUSED(ignored))
{
    return mc_adrive_flush(self);
}

/* _on_wait_timer(server): the deadline check of the calls waiting for
 * room on a connection of the server. */
static PyObject *
AClient_on_wait_timer(AClient *self, PyObject *arg)
{
    Py_ssize_t s = PyLong_AsSsize_t(arg);
    if (s == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (s < 0) {
        PyErr_SetString(PyExc_ValueError, "no such server");
        return NULL;
    }
    return mc_adrive_on_wait_timer(self, (size_t)s);
}

#define TLS_CAPSULE "cmemcache.aio TLS connection"

/* A capsule's TLS connection, or NULL with an exception set (also once
 * _attach took it). */
static struct mc_tls *
capsule_tls(PyObject *cap)
{
    if (!PyCapsule_IsValid(cap, TLS_CAPSULE)) {
        PyErr_SetString(PyExc_TypeError, "not a TLS connection of _tls_new");
        return NULL;
    }
    if (PyCapsule_GetContext(cap) != NULL) {
        PyErr_SetString(PyExc_ValueError, "TLS connection already attached");
        return NULL;
    }
    return PyCapsule_GetPointer(cap, TLS_CAPSULE);
}

#ifdef MC_HAVE_TLS
static void
tls_capsule_free(PyObject *cap)
{
    if (PyCapsule_GetContext(cap) == NULL) {
        /* never attached: its socket is the connector's, and may be
         * closed already, so nothing is sent */
        mc_tls_drop(PyCapsule_GetPointer(cap, TLS_CAPSULE));
    }
}
#endif

/* _tls_new(server, fd) -> capsule | None: a TLS client on the connector's
 * new socket fd (None when the client has no TLS). */
static PyObject *
AClient_tls_new(AClient *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_tls_new(server, fd)");
        return NULL;
    }
    Py_ssize_t s = PyLong_AsSsize_t(args[0]);
    long fd = PyLong_AsLong(args[1]);
    if ((s == -1 || fd == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (s < 0 || (size_t)s >= self->core.eng.nservers || fd < 0) {
        PyErr_SetString(PyExc_ValueError, "no such server, or a bad fd");
        return NULL;
    }
#ifdef MC_HAVE_TLS
    struct mc_engine *e = &self->core.eng;
    if (e->cfg.tls == NULL) {
        Py_RETURN_NONE;
    }
    struct mc_server *srv = &e->servers[s];
    struct mc_tls *t = mc_tls_new(e->cfg.tls, (int)fd, srv->spec.host,
                                  srv->spec.host_len, srv->tls_slot);
    if (t == NULL) {
        if (errno == ENOMEM) {
            return PyErr_NoMemory();
        }
        PyErr_Format(PyExc_ValueError, "cannot verify the host name '%s'",
                     srv->name);
        return NULL;
    }
    PyObject *cap = PyCapsule_New(t, TLS_CAPSULE, tls_capsule_free);
    if (cap == NULL) {
        mc_tls_drop(t);
    }
    return cap;
#else
    Py_RETURN_NONE;
#endif
}

/* _tls_handshake(tls) -> int: one non-blocking step of the handshake: 0
 * (done), _TLS_WANT_READ / _TLS_WANT_WRITE, or a failure code (_ETLS:
 * _tls_why says why; -errno; _EEOF). */
static PyObject *
AClient_tls_handshake(AClient *Py_UNUSED(self), PyObject *cap)
{
    struct mc_tls *t = capsule_tls(cap);
    if (t == NULL) {
        return NULL;
    }
#ifdef MC_HAVE_TLS
    return PyLong_FromLong(mc_tls_handshake(t));
#else
    return PyLong_FromLong(-ENOSYS);
#endif
}

/* _tls_send(tls, data) -> int: encrypts and writes from data: the bytes
 * taken (> 0), or _TLS_WANT_*, or a failure code. */
static PyObject *
AClient_tls_send(AClient *Py_UNUSED(self), PyObject *const *args,
                 Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_tls_send(tls, bytes)");
        return NULL;
    }
    struct mc_tls *t = capsule_tls(args[0]);
    if (t == NULL) {
        return NULL;
    }
#ifdef MC_HAVE_TLS
    struct iovec v = {PyBytes_AS_STRING(args[1]),
                      (size_t)PyBytes_GET_SIZE(args[1])};
    ssize_t n = mc_tls_send(t, &v, 1);
    if (n == 0 && v.iov_len > 0) {
        n = MC_TLS_WANT_WRITE;
    }
    return PyLong_FromSsize_t(n);
#else
    return PyLong_FromLong(-ENOSYS);
#endif
}

/* _tls_recv(tls, n) -> bytes | int: at most n decrypted bytes (not
 * empty), or _TLS_WANT_*, or a failure code (_EEOF: closed). */
static PyObject *
AClient_tls_recv(AClient *Py_UNUSED(self), PyObject *const *args,
                 Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_tls_recv(tls, n)");
        return NULL;
    }
    struct mc_tls *t = capsule_tls(args[0]);
    Py_ssize_t cap = PyLong_AsSsize_t(args[1]);
    if (t == NULL || (cap == -1 && PyErr_Occurred())) {
        return NULL;
    }
    if (cap < 1 || cap > MC_TLS_RECORD) {
        PyErr_SetString(PyExc_ValueError, "_tls_recv: n must be 1 ... 16384");
        return NULL;
    }
#ifdef MC_HAVE_TLS
    char buf[MC_TLS_RECORD];
    ssize_t n = mc_tls_recv(t, buf, (size_t)cap);
    if (n > 0) {
        return PyBytes_FromStringAndSize(buf, n);
    }
    return PyLong_FromSsize_t(n);
#else
    return PyLong_FromLong(-ENOSYS);
#endif
}

/* _tls_why(tls) -> str: the reason of its last failure; the connector's
 * _connect_failed(server, _ETLS, why). */
static PyObject *
AClient_tls_why(AClient *Py_UNUSED(self), PyObject *cap)
{
    struct mc_tls *t = capsule_tls(cap);
    if (t == NULL) {
        return NULL;
    }
#ifdef MC_HAVE_TLS
    char why[256];
    mc_tls_strerror(t, why, sizeof(why));
    if (mc_tls_cert_refused(t) || why[0] != '\0') {
        return PyUnicode_DecodeUTF8(why, (Py_ssize_t)strlen(why), "replace");
    }
#endif
    return PyUnicode_FromString("TLS failed");
}

/* _tls_code(tls, code) -> int: code as the driver reports it (_ETLS also
 * for a reset the TLS layer explains: a refused client certificate). */
static PyObject *
AClient_tls_code(AClient *Py_UNUSED(self), PyObject *const *args,
                 Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_tls_code(tls, code)");
        return NULL;
    }
    struct mc_tls *t = capsule_tls(args[0]);
    long code = PyLong_AsLong(args[1]);
    if (t == NULL || (code == -1 && PyErr_Occurred())) {
        return NULL;
    }
#ifdef MC_HAVE_TLS
    if (code != MC_ETLS && code != -ETIMEDOUT && mc_tls_cert_refused(t)) {
        code = MC_ETLS;
    }
#endif
    return PyLong_FromLong(code);
}

/* _attach(server, fd, tls=None): the connector opened a connection (and
 * completed its TLS handshake: the driver takes the TLS connection). */
static PyObject *
AClient_attach(AClient *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_attach(server, fd, tls=None)");
        return NULL;
    }
    Py_ssize_t s = PyLong_AsSsize_t(args[0]);
    long fd = PyLong_AsLong(args[1]);
    if ((s == -1 || fd == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (s < 0 || (size_t)s >= self->core.eng.nservers || fd < 0) {
        PyErr_SetString(PyExc_ValueError, "no such server, or a bad fd");
        return NULL;
    }
    struct mc_tls *t = NULL;
    if (nargs == 3 && args[2] != Py_None) {
        t = capsule_tls(args[2]);
        if (t == NULL) {
            return NULL;
        }
        /* taken: the capsule no longer frees it */
        if (PyCapsule_SetContext(args[2], (void *)args[2]) < 0) {
            return NULL;
        }
    }
    else if (self->core.eng.cfg.tls != NULL) {
        PyErr_SetString(PyExc_ValueError, "_attach: a TLS client needs tls");
        return NULL;
    }
    if (self->closed) {
#ifdef MC_HAVE_TLS
        mc_tls_free(t);
#endif
        close((int)fd);
        Py_RETURN_NONE;
    }
    if (mc_adrive_attach(self, (size_t)s, (int)fd, t) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _connect_failed(server, errno, text): the connector could not (errno
 * 0: the name did not resolve, text says why; _EAUTH: the server refused
 * the credentials, text is its answer; _ETLS: the TLS handshake failed,
 * text says why; other < 0: the connect was given
 * up; neither of the last two is a failure of the server). */
static PyObject *
AClient_connect_failed(AClient *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "_connect_failed(server, errno, text)");
        return NULL;
    }
    Py_ssize_t s = PyLong_AsSsize_t(args[0]);
    long err = PyLong_AsLong(args[1]);
    const char *text = PyUnicode_AsUTF8(args[2]);
    if (((s == -1 || err == -1) && PyErr_Occurred()) || text == NULL) {
        return NULL;
    }
    if (s < 0 || (size_t)s >= self->core.eng.nservers) {
        PyErr_SetString(PyExc_ValueError, "no such server");
        return NULL;
    }
    int code = err == MC_EAUTH   ? MC_EAUTH
               : err == MC_ETLS ? MC_ETLS
               : err > 0        ? (int)-err
               : err < 0        ? MC_EOWNER
                                : MC_ERESOLVE;
    mc_adrive_connect_failed(self, (size_t)s, code,
                             code == MC_ERESOLVE || code == MC_EAUTH
                                     || code == MC_ETLS
                                 ? text
                                 : "");
    Py_RETURN_NONE;
}

/* _server(i) -> ("unix", path) | ("tcp", host, port) | ("tcp6", host,
 * port): for the connector. */
static PyObject *
AClient_server(AClient *self, PyObject *arg)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (i < 0 || (size_t)i >= self->core.eng.nservers) {
        PyErr_SetString(PyExc_IndexError, "no such server");
        return NULL;
    }
    const struct mc_server_spec *sp = &self->core.eng.servers[i].spec;
    if (sp->family == MC_UNIX) {
        return Py_BuildValue("(ss#)", "unix", sp->host,
                             (Py_ssize_t)sp->host_len);
    }
    return Py_BuildValue("(ss#i)", sp->family == MC_TCP6 ? "tcp6" : "tcp",
                         sp->host, (Py_ssize_t)sp->host_len, (int)sp->port);
}

/* _auth_request() -> bytes | None: what the connector sends first on a
 * new connection (mc_fmt_auth's request), None without credentials. */
static PyObject *
AClient_auth_request(AClient *self, PyObject *Py_UNUSED(ignored))
{
    const struct mc_config *cfg = &self->core.eng.cfg;
    if (cfg->auth == NULL) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize(cfg->auth, (Py_ssize_t)cfg->auth_len);
}

/* _auth_reply(data) -> None | True | str: the answer read so far to the
 * authentication request: None while incomplete, True for STORED, else
 * why it failed (mc_auth_reply: at most MC_AUTH_REPLY_MAX bytes are
 * read). */
static PyObject *
AClient_auth_reply(AClient *Py_UNUSED(self), PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "_auth_reply(bytes)");
        return NULL;
    }
    const char *why;
    size_t why_len;
    int rc = mc_auth_reply(PyBytes_AS_STRING(arg),
                           (size_t)PyBytes_GET_SIZE(arg), &why, &why_len);
    if (rc == 0) {
        Py_RETURN_NONE;
    }
    if (rc > 0) {
        Py_RETURN_TRUE;
    }
    return PyUnicode_DecodeUTF8(why, (Py_ssize_t)why_len, "replace");
}

/* _close(): every connection closed, what is in flight fails. */
static PyObject *
AClient_close_now(AClient *self, PyObject *Py_UNUSED(ignored))
{
    self->closed = true;
    mc_adrive_close_all(self);
    Py_RETURN_NONE;
}

/* _reopen(): usable again after _close (a new loop may be bound). */
static PyObject *
AClient_reopen(AClient *self, PyObject *Py_UNUSED(ignored))
{
    mc_adrive_close_all(self);
    self->closed = false;
    Py_CLEAR(self->loop);
    self->flush_scheduled = false;
    Py_RETURN_NONE;
}

static PyObject *
AClient_forget_dead(AClient *self, PyObject *Py_UNUSED(ignored))
{
    return mc_core_forget_dead(&self->core);
}

static PyObject *
AClient_mark_dead(AClient *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    return mc_core_mark_dead(&self->core, args, nargs, kwnames);
}

static PyObject *
AClient_hold_downs(AClient *self, PyObject *Py_UNUSED(ignored))
{
    return mc_core_hold_downs(&self->core);
}

static PyObject *
AClient_dead_servers(AClient *self, PyObject *Py_UNUSED(ignored))
{
    return mc_core_dead_servers(&self->core);
}

static PyObject *
AClient_call_counts(AClient *self, PyObject *Py_UNUSED(ignored))
{
    return mc_core_call_counts(&self->core);
}

static PyObject *
AClient_reset_call_counts(AClient *self, PyObject *Py_UNUSED(ignored))
{
    return mc_core_reset_call_counts(&self->core);
}

/* connections() -> (open connections per server), for tests and stats */
static PyObject *
AClient_connections(AClient *self, PyObject *Py_UNUSED(ignored))
{
    struct mc_engine *e = &self->core.eng;
    PyObject *t = PyTuple_New((Py_ssize_t)e->nservers);
    for (size_t i = 0; t != NULL && i < e->nservers; i++) {
        PyObject *v = PyLong_FromLong(self->servers[i].nconns);
        if (v == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, v);
    }
    return t;
}

static PyObject *
AClient_get_servers(AClient *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->core.names);
}

static PyObject *
AClient_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *module = PyType_GetModuleByDef(type, &mc_module_def);
    if (module == NULL) {
        return NULL;
    }
    mc_state *st = mc_get_state(module);
    /* the options of the asyncio client, beside StringClient's */
    int max_connections = 2, max_inflight = 64;
    PyObject *rest = kwargs != NULL ? PyDict_Copy(kwargs) : NULL;
    if (kwargs != NULL && rest == NULL) {
        return NULL;
    }
    static const char *const own[] = {"max_connections", "max_inflight"};
    int *slots[] = {&max_connections, &max_inflight};
    for (int i = 0; rest != NULL && i < 2; i++) {
        PyObject *v = PyDict_GetItemString(rest, own[i]);
        if (v == NULL) {
            continue;
        }
        long n = PyLong_AsLong(v);
        if (n == -1 && PyErr_Occurred()) {
            Py_DECREF(rest);
            return NULL;
        }
        if (n < 1 || n > 4096) {
            Py_DECREF(rest);
            PyErr_Format(PyExc_ValueError, "%s must be 1 ... 4096", own[i]);
            return NULL;
        }
        *slots[i] = (int)n;
        if (PyDict_DelItemString(rest, own[i]) < 0) {
            Py_DECREF(rest);
            return NULL;
        }
    }
    struct mc_client_args a;
    int prc = mc_parse_client_args(st, args, rest, "StringClient", &a);
    Py_XDECREF(rest);
    if (prc < 0) {
        return NULL;
    }
    AClient *self = (AClient *)type->tp_alloc(type, 0);
    if (self == NULL) {
        mc_client_args_release(&a);
        return NULL;
    }
    self->module = Py_NewRef(module);
    self->core.state = st;
    self->ready = true;
    self->max_connections = max_connections;
    self->max_inflight = max_inflight;
    int rc = mc_engine_from_args(st, &self->core.eng, &a, &self->core.names);
    Py_DECREF(a.servers);
    if (rc < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->servers = PyMem_Calloc(self->core.eng.nservers,
                                 sizeof(struct mc_aserver));
    if (self->servers == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static int
AClient_traverse(AClient *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->module);
    Py_VISIT(self->loop);
    Py_VISIT(self->connector);
    Py_VISIT(self->flush_cb);
    Py_VISIT(self->call_soon);
    Py_VISIT(self->call_at);
    Py_VISIT(self->loop_time);
    Py_VISIT(self->add_reader);
    Py_VISIT(self->remove_reader);
    Py_VISIT(self->add_writer);
    Py_VISIT(self->remove_writer);
    Py_VISIT(self->create_future);
    return mc_aserver_traverse(self, visit, arg);
}

static int
AClient_clear(AClient *self)
{
    self->closed = true;
    if (self->servers != NULL) {
        mc_adrive_close_all(self);
    }
    Py_CLEAR(self->loop);
    Py_CLEAR(self->connector);
    Py_CLEAR(self->flush_cb);
    Py_CLEAR(self->call_soon);
    Py_CLEAR(self->call_at);
    Py_CLEAR(self->loop_time);
    Py_CLEAR(self->add_reader);
    Py_CLEAR(self->remove_reader);
    Py_CLEAR(self->add_writer);
    Py_CLEAR(self->remove_writer);
    Py_CLEAR(self->create_future);
    Py_CLEAR(self->module);
    return 0;
}

static void
AClient_dealloc(AClient *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    (void)AClient_clear(self);
    if (self->servers != NULL) {
        for (size_t i = 0; i < self->core.eng.nservers; i++) {
            PyMem_Free(self->servers[i].conns);
        }
        PyMem_Free(self->servers);
    }
    if (self->ready) {
        mc_engine_free(&self->core.eng);
    }
    Py_CLEAR(self->core.names);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

#define FASTKW(name, fn, doc) \
    {name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL | METH_KEYWORDS, \
     PyDoc_STR(doc)}

static PyMethodDef AClient_methods[] = {
    FASTKW("get", AClient_get, "await get(key, *, with_flags=False)"),
    FASTKW("gets", AClient_gets, "await gets(key, *, with_flags=False)"),
    FASTKW("gat", AClient_gat, "await gat(key, exptime, *, with_flags=False)"),
    FASTKW("gats", AClient_gats,
           "await gats(key, exptime, *, with_flags=False)"),
    FASTKW("get_multi", AClient_get_multi,
           "await get_multi(keys, key_prefix=b'', *, with_flags=False)"),
    FASTKW("gets_multi", AClient_gets_multi,
           "await gets_multi(keys, key_prefix=b'', *, with_flags=False)"),
    {"get_decoded", (PyCFunction)(void (*)(void))AClient_get_decoded,
     METH_FASTCALL,
     PyDoc_STR("await get_decoded(key, default, decoder, unpickle=None)")},
    {"get_multi_decoded",
     (PyCFunction)(void (*)(void))AClient_get_multi_decoded, METH_FASTCALL,
     PyDoc_STR("await get_multi_decoded(keys, key_prefix, decoder, omit, "
               "unpickle=None)")},
    FASTKW("set", AClient_set,
           "await set(key, value, exptime=0, flags=0, noreply=False)"),
    FASTKW("add", AClient_add,
           "await add(key, value, exptime=0, flags=0, noreply=False)"),
    FASTKW("replace", AClient_replace,
           "await replace(key, value, exptime=0, flags=0, noreply=False)"),
    FASTKW("append", AClient_append,
           "await append(key, value, exptime=0, flags=0, noreply=False)"),
    FASTKW("prepend", AClient_prepend,
           "await prepend(key, value, exptime=0, flags=0, noreply=False)"),
    FASTKW("cas", AClient_cas,
           "await cas(key, value, cas, exptime=0, flags=0, noreply=False)"),
    FASTKW("set_multi", AClient_set_multi,
           "await set_multi(mapping, exptime=0, flags=0, noreply=False, "
           "key_prefix=b'')"),
    FASTKW("delete", AClient_delete, "await delete(key, noreply=False)"),
    FASTKW("delete_multi", AClient_delete_multi,
           "await delete_multi(keys, noreply=False, key_prefix=b'')"),
    FASTKW("incr", AClient_incr, "await incr(key, delta=1, noreply=False)"),
    FASTKW("decr", AClient_decr, "await decr(key, delta=1, noreply=False)"),
    FASTKW("touch", AClient_touch, "await touch(key, exptime, noreply=False)"),
    FASTKW("flush_all", AClient_flush_all,
           "await flush_all(delay=0, noreply=False)"),
    FASTKW("get_stats", AClient_get_stats, "await get_stats(args=None)"),
    {"version", (PyCFunction)AClient_version, METH_NOARGS,
     PyDoc_STR("await version()")},
    {"server_index", (PyCFunction)AClient_server_index, METH_O,
     PyDoc_STR("server_index(key) -> index of the server holding key")},
    {"call_counts", (PyCFunction)AClient_call_counts, METH_NOARGS, NULL},
    {"reset_call_counts", (PyCFunction)AClient_reset_call_counts,
     METH_NOARGS, NULL},
    {"forget_dead", (PyCFunction)AClient_forget_dead, METH_NOARGS, NULL},
    FASTKW("mark_dead", AClient_mark_dead,
           "mark_dead(index, seconds=None)"),
    {"hold_downs", (PyCFunction)AClient_hold_downs, METH_NOARGS, NULL},
    {"dead_servers", (PyCFunction)AClient_dead_servers, METH_NOARGS, NULL},
    {"connections", (PyCFunction)AClient_connections, METH_NOARGS,
     PyDoc_STR("connections() -> open connections per server")},
    {"_flush", (PyCFunction)AClient_flush, METH_NOARGS, NULL},
    {"_on_wait_timer", (PyCFunction)AClient_on_wait_timer, METH_O, NULL},
    {"_tls_new", (PyCFunction)(void (*)(void))AClient_tls_new, METH_FASTCALL,
     NULL},
    {"_tls_handshake", (PyCFunction)AClient_tls_handshake, METH_O, NULL},
    {"_tls_send", (PyCFunction)(void (*)(void))AClient_tls_send,
     METH_FASTCALL, NULL},
    {"_tls_recv", (PyCFunction)(void (*)(void))AClient_tls_recv,
     METH_FASTCALL, NULL},
    {"_tls_why", (PyCFunction)AClient_tls_why, METH_O, NULL},
    {"_tls_code", (PyCFunction)(void (*)(void))AClient_tls_code,
     METH_FASTCALL, NULL},
    {"_attach", (PyCFunction)(void (*)(void))AClient_attach, METH_FASTCALL,
     NULL},
    {"_connect_failed", (PyCFunction)(void (*)(void))AClient_connect_failed,
     METH_FASTCALL, NULL},
    {"_server", (PyCFunction)AClient_server, METH_O, NULL},
    {"_auth_request", (PyCFunction)AClient_auth_request, METH_NOARGS, NULL},
    {"_auth_reply", (PyCFunction)AClient_auth_reply, METH_O, NULL},
    {"_close_now", (PyCFunction)AClient_close_now, METH_NOARGS, NULL},
    {"_reopen", (PyCFunction)AClient_reopen, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef AClient_getset[] = {
    {"servers", (getter)AClient_get_servers, NULL,
     PyDoc_STR("The server strings, in order."), NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot AClient_slots[] = {
    {Py_tp_doc, (void *)PyDoc_STR(
         "The asyncio StringClient's engine (use cmemcache.aio.StringClient).")},
    {Py_tp_new, MC_SLOT(AClient_new)},
    {Py_tp_dealloc, MC_SLOT(AClient_dealloc)},
    {Py_tp_traverse, MC_SLOT(AClient_traverse)},
    {Py_tp_clear, MC_SLOT(AClient_clear)},
    {Py_tp_methods, AClient_methods},
    {Py_tp_getset, AClient_getset},
    {0, NULL},
};

PyType_Spec mc_aclient_spec = {
    .name = "cmemcache._cmemcache.AsyncStringClient",
    .basicsize = sizeof(AClient),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = AClient_slots,
};
