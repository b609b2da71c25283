/* cmemcache.Client's fast paths, in C: the base type ClientBase, whose
 * get() and set() read and write python-memcached's plain value encodings
 * (bytes, str, int, a plain pickle) straight through the StringClient's
 * engine, as get_decoded does for reading.  Whatever they do not cover (a
 * key_encoder or a custom server hash, compression, other value types, a
 * failure) goes to the Python methods of cmemcache.Client, which own the
 * policy: _get_slow, _set_slow, _keyed_failure, _store_failure,
 * _not_stored. */
#include "module.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pyargs.h"
#include "pycall.h"
#include "sclient.h"

#define FLAG_PICKLE 1
#define FLAG_INTEGER 2
#define FLAG_TEXT 16

typedef struct {
    PyObject_HEAD
    mc_sclient *sc;            /* the StringClient calls go to */
    PyObject *decoder;         /* Client._decoder, for get_decoded */
    PyObject *unpickle;        /* pickle.loads, or None */
    PyObject *dumps;           /* pickle.dumps for plain pickles, or NULL */
    PyObject *protocol;        /* the pickle protocol (an int) */
    Py_ssize_t max_len;        /* server_max_value_length (0: none) */
    bool fast;                 /* keys go to the engine as given */
} ClientBase;

/* Calls the Python method name of self with args. */
static PyObject *
call_method(ClientBase *self, const char *name, PyObject *const *args,
            size_t nargs)
{
    PyObject *meth = PyObject_GetAttrString((PyObject *)self, name);
    if (meth == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_Vectorcall(meth, args, nargs, NULL);
    Py_DECREF(meth);
    return res;
}

/* A call that raised a cmemcache.Error or TypeError goes to the Python
 * failure handler handler(op, key, exc[, extra]); any other exception
 * propagates. */
static PyObject *
failed(ClientBase *self, const char *handler, const char *op, PyObject *key,
       PyObject *extra)
{
    mc_state *st = self->sc->core.state;
    if (!PyErr_ExceptionMatches(st->Error)
        && !PyErr_ExceptionMatches(PyExc_TypeError)) {
        return NULL;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    PyObject *opname = PyUnicode_FromString(op);
    PyObject *res = NULL;
    if (opname != NULL && value != NULL) {
        PyObject *args[4] = {opname, key, value, extra};
        res = call_method(self, handler, args, extra != NULL ? 4 : 3);
    }
    Py_XDECREF(opname);
    Py_XDECREF(value);
    return res;
}

static PyObject *
ClientBase_get(ClientBase *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    static const char *const names[] = {"key", "default", NULL};
    PyObject *a[2] = {NULL, NULL};
    if (kwnames == NULL && (nargs == 1 || nargs == 2)) {
        a[0] = args[0];
        a[1] = nargs == 2 ? args[1] : NULL;
    }
    else if (mc_parse_args("get", args, nargs, kwnames, names, 1, 2, a) < 0) {
        return NULL;
    }
    PyObject *dflt = a[1] != NULL ? a[1] : Py_None;
    if (self->sc == NULL || !self->fast) {
        PyObject *sargs[2] = {a[0], dflt};
        return call_method(self, "_get_slow", sargs, 2);
    }
    /* Owned for the call: another thread may _configure() this object
     * (set_servers, discovery) while the GIL is released. */
    mc_sclient *sc = (mc_sclient *)Py_NewRef(self->sc);
    PyObject *decoder = Py_NewRef(self->decoder);
    PyObject *unpickle = Py_NewRef(self->unpickle);
    mc_count(&sc->core, MC_CALL_GET);
    PyObject *dargs[4] = {a[0], dflt, decoder, unpickle};
    struct mc_call c;
    PyObject *res = NULL;
    if (mc_prep_get_decoded(&sc->core, &c, dargs, 4) == 0) {
        if (mc_sync_run_call(sc, &c) < 0) {
            mc_raise_fail(&sc->core, &sc->core.eng.servers[c.server],
                          &c.fail);
        }
        else {
            res = mc_call_result(&sc->core, &c, MC_R_DECODED);
        }
    }
    mc_call_release(&c);
    Py_DECREF(unpickle);
    Py_DECREF(decoder);
    Py_DECREF(sc);
    if (res == NULL) {
        return failed(self, "_keyed_failure", "get", a[0], Py_None);
    }
    return res;
}

/* The decimal text of an int for flag 2, in buf; NULL when it is too large
 * for a long long (the slow path takes it). */
static const char *
int_text(PyObject *v, char *buf, size_t *len)
{
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (n == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return NULL;
    }
    *len = (size_t)snprintf(buf, 32, "%lld", n);
    return buf;
}

static PyObject *
ClientBase_set(ClientBase *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    static const char *const names[] = {"key", "val", "time",
                                        "min_compress_len", "noreply", NULL};
    PyObject *a[5] = {NULL, NULL, NULL, NULL, NULL};
    if (kwnames == NULL && nargs >= 2 && nargs <= 5) {
        for (Py_ssize_t i = 0; i < nargs; i++) {
            a[i] = args[i];
        }
    }
    else if (mc_parse_args("set", args, nargs, kwnames, names, 2, 5, a) < 0) {
        return NULL;
    }
    PyObject *key = a[0], *val = a[1], *time = a[2];
    int compress = a[3] != NULL ? PyObject_IsTrue(a[3]) : 0;
    if (compress < 0) {
        return NULL;
    }
    bool noreply = false;
    if (mc_to_bool(a[4], &noreply) < 0) {
        return NULL;
    }
    const char *data = NULL;
    size_t len = 0;
    uint32_t flags = 0;
    PyObject *owned = NULL;
    char digits[32];
    bool fast = self->sc != NULL && self->fast && !compress
                && (time == NULL || PyLong_CheckExact(time));
    if (fast) {
        PyTypeObject *t = Py_TYPE(val);
        if (t == &PyBytes_Type) {
            data = PyBytes_AS_STRING(val);
            len = (size_t)PyBytes_GET_SIZE(val);
        }
        else if (t == &PyUnicode_Type) {
            Py_ssize_t n;
            data = PyUnicode_AsUTF8AndSize(val, &n);
            if (data == NULL) {
                PyErr_Clear();  /* unencodable: the slow path reports it */
                fast = false;
            }
            len = (size_t)n;
            flags = FLAG_TEXT;
        }
        else if (t == &PyLong_Type) {
            data = int_text(val, digits, &len);
            fast = data != NULL;
            flags = FLAG_INTEGER;
        }
        else if (self->dumps != NULL) {
            /* pickling runs user code, which may _configure() this object */
            PyObject *dumps = Py_NewRef(self->dumps);
            PyObject *pargs[2] = {val, Py_NewRef(self->protocol)};
            owned = PyObject_Vectorcall(dumps, pargs, 2, NULL);
            Py_DECREF(pargs[1]);
            Py_DECREF(dumps);
            if (owned == NULL) {
                return NULL;    /* as pickle.dumps raised it */
            }
            if (!PyBytes_Check(owned)) {
                Py_CLEAR(owned);
                fast = false;
            }
            else {
                data = PyBytes_AS_STRING(owned);
                len = (size_t)PyBytes_GET_SIZE(owned);
                flags = FLAG_PICKLE;
            }
        }
        else {
            fast = false;
        }
    }
    if (!fast) {
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL) {
            return NULL;
        }
        PyObject *sargs[5] = {key, val, time ? time : zero, a[3] ? a[3] : zero,
                              noreply ? Py_True : Py_False};
        PyObject *res = call_method(self, "_set_slow", sargs, 5);
        Py_DECREF(zero);
        return res;
    }
    if (self->max_len > 0 && len > (size_t)self->max_len) {
        Py_XDECREF(owned);
        return PyLong_FromLong(0);  /* too large: not sent */
    }
    /* owned as in get (never NULL again once configured) */
    mc_sclient *sc = (mc_sclient *)Py_NewRef(self->sc);
    mc_count(&sc->core, MC_CALL_SET);
    struct mc_call c;
    PyObject *res = NULL;
    if (mc_prep_store_raw(&sc->core, &c, key, data, len, flags, time,
                          noreply)
        == 0) {
        if (mc_sync_run_call(sc, &c) < 0) {
            mc_raise_fail(&sc->core, &sc->core.eng.servers[c.server],
                          &c.fail);
        }
        else {
            res = mc_call_result(&sc->core, &c, MC_R_STORE);
        }
    }
    mc_call_release(&c);
    Py_DECREF(sc);
    Py_XDECREF(owned);
    if (res == NULL) {
        return failed(self, "_store_failure", "set", key, NULL);
    }
    if (res == Py_True) {
        return res;
    }
    Py_DECREF(res);
    PyObject *op = PyUnicode_FromString("set");
    if (op == NULL) {
        return NULL;
    }
    res = call_method(self, "_not_stored", &op, 1);
    Py_DECREF(op);
    return res;
}

/* _configure(sc, decoder, unpickle, dumps, protocol, max_len, fast). */
static PyObject *
ClientBase_configure(ClientBase *self, PyObject *const *args,
                     Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "_configure takes 7 arguments");
        return NULL;
    }
    PyObject *module = PyType_GetModuleByDef(Py_TYPE(self), &mc_module_def);
    if (module == NULL) {
        return NULL;
    }
    mc_state *st = mc_get_state(module);
    if (!PyObject_TypeCheck(args[0], st->client_type)) {
        PyErr_SetString(PyExc_TypeError, "sc must be a StringClient");
        return NULL;
    }
    Py_ssize_t max_len = PyLong_AsSsize_t(args[5]);
    int fast = PyObject_IsTrue(args[6]);
    if ((max_len == -1 && PyErr_Occurred()) || fast < 0) {
        return NULL;
    }
    Py_XSETREF(self->sc, (mc_sclient *)Py_NewRef(args[0]));
    Py_XSETREF(self->decoder, Py_NewRef(args[1]));
    Py_XSETREF(self->unpickle, Py_NewRef(args[2]));
    Py_XSETREF(self->dumps, args[3] == Py_None ? NULL : Py_NewRef(args[3]));
    Py_XSETREF(self->protocol, Py_NewRef(args[4]));
    self->max_len = max_len;
    self->fast = fast != 0;
    Py_RETURN_NONE;
}

static int
ClientBase_traverse(ClientBase *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->sc);
    Py_VISIT(self->decoder);
    Py_VISIT(self->unpickle);
    Py_VISIT(self->dumps);
    Py_VISIT(self->protocol);
    return 0;
}

static int
ClientBase_clear(ClientBase *self)
{
    Py_CLEAR(self->sc);
    Py_CLEAR(self->decoder);
    Py_CLEAR(self->unpickle);
    Py_CLEAR(self->dumps);
    Py_CLEAR(self->protocol);
    return 0;
}

static void
ClientBase_dealloc(ClientBase *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    (void)ClientBase_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef ClientBase_methods[] = {
    {"get", (PyCFunction)(void (*)(void))ClientBase_get,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("get(key, default=None)\n\nThe value of key; default on a "
               "miss, None when the server cannot be reached.")},
    {"set", (PyCFunction)(void (*)(void))ClientBase_set,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("set(key, val, time=0, min_compress_len=0, noreply=False)\n\n"
               "Store val under key.  True when stored, False when the "
               "server did not store it, 0 when it was not sent (too large, "
               "server down).")},
    {"_configure", (PyCFunction)(void (*)(void))ClientBase_configure,
     METH_FASTCALL,
     PyDoc_STR("_configure(sc, decoder, unpickle, dumps, protocol, max_len, "
               "fast): what the fast paths use")},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot ClientBase_slots[] = {
    {Py_tp_doc, (void *)PyDoc_STR("The C fast paths of cmemcache.Client.")},
    {Py_tp_dealloc, MC_SLOT(ClientBase_dealloc)},
    {Py_tp_traverse, MC_SLOT(ClientBase_traverse)},
    {Py_tp_clear, MC_SLOT(ClientBase_clear)},
    {Py_tp_methods, ClientBase_methods},
    {0, NULL},
};

PyType_Spec mc_client_base_spec = {
    .name = "cmemcache.ClientBase",
    .basicsize = sizeof(ClientBase),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = ClientBase_slots,
};
