/* cmemcache.aio's client type (AsyncStringClient): StringClient's methods,
 * each preparing its request at once and returning a call (acall.c), and
 * what the connector and the loop call back (_attach, _connect_failed,
 * _flush, ...; the TLS ones are atls.c's). */
#include "aclient.h"

#include <unistd.h>

#include "pyargs.h"
#include "tls.h"
#include "pycore.h"
#include "pymeta.h"

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

void
mc_aclient_unbind(mc_aclient *cl, bool loop_gone)
{
    bool closed = cl->closed;
    cl->closed = true;          /* nothing failed here reconnects */
    mc_adrive_close_all(cl);
    if (loop_gone) {
        mc_adrive_forget_connects(cl);
    }
    cl->closed = closed;
    Py_CLEAR(cl->loop);
    Py_CLEAR(cl->loop_holder);
    cl->flush_scheduled = false;
}

#define ACALL(kind, rk, prep)                                              \
    do {                                                                   \
        mc_acall *call = mc_acall_new(self, kind, rk);                     \
        if (call == NULL) {                                                \
            return NULL;                                                   \
        }                                                                  \
        call->prepared = true;                                             \
        if ((prep) < 0                                                     \
            || mc_acall_hold_args(call, args, nargs, kwnames) < 0) {       \
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

#define AMETA_METHOD(fn, kind, prep)                                       \
    static PyObject *                                                      \
    fn(AClient *self, PyObject *const *args, Py_ssize_t nargs,             \
       PyObject *kwnames)                                                  \
    {                                                                      \
        mc_count(&self->core, kind);                                       \
        ACALL(MC_A_ONE, MC_R_META,                                         \
              prep(&self->core, &call->one, args, nargs, kwnames));        \
    }

AMETA_METHOD(AClient_meta_get, MC_CALL_META_GET, mc_prep_meta_get)
AMETA_METHOD(AClient_meta_set, MC_CALL_META_SET, mc_prep_meta_set)
AMETA_METHOD(AClient_meta_delete, MC_CALL_META_DELETE, mc_prep_meta_delete)
AMETA_METHOD(AClient_meta_arithmetic, MC_CALL_META_ARITH, mc_prep_meta_arith)

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
AClient_config_get(AClient *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    ACALL(MC_A_ALL, MC_R_GET,
          all_alloc(call) < 0
              ? -1
              : all_prep(call, mc_prep_config_get(&self->core, call->all,
                                                  args, nargs, kwnames)));
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

/* _attach(server, fd, tls=None): the connector opened a connection (and
 * completed its TLS handshake: the driver takes the TLS connection). */
int
mc_aclient_server_fd(mc_aclient *self, PyObject *const *args,
                     Py_ssize_t *server, int *fd)
{
    Py_ssize_t s = PyLong_AsSsize_t(args[0]);
    long f = PyLong_AsLong(args[1]);
    if ((s == -1 || f == -1) && PyErr_Occurred()) {
        return -1;
    }
    if (s < 0 || (size_t)s >= self->core.eng.nservers || f < 0
        || f > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "no such server, or a bad fd");
        return -1;
    }
    *server = s;
    *fd = (int)f;
    return 0;
}

static PyObject *
AClient_attach(AClient *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_attach(server, fd, tls=None)");
        return NULL;
    }
    Py_ssize_t s;
    int fd;
    if (mc_aclient_server_fd(self, args, &s, &fd) < 0) {
        return NULL;
    }
    struct mc_tls *t = NULL;
    if (nargs == 3 && args[2] != Py_None) {
        t = mc_atls_capsule(args[2]);
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
        close(fd);
        Py_RETURN_NONE;
    }
    if (mc_adrive_attach(self, (size_t)s, fd, t) < 0) {
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
    mc_aclient_unbind(self, false);
    self->closed = false;
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
    PyObject *made;
    int handed = mc_discovery_handoff(type, args, kwargs,
                                      "new_aio_string_client", &made);
    if (handed != 0) {
        return handed < 0 ? NULL : made;
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
    self->core.opaque = true;   /* pipelined: every meta reply is checked */
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
    Py_VISIT(self->loop_holder);
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
    Py_CLEAR(self->loop_holder);
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
    FASTKW("meta_get", AClient_meta_get,
           "await meta_get(key, *, value=True, cas=False, flags=False, ttl=False, "
           "size=False, last_access=False, hit=False, no_bump=False, "
           "touch=None, vivify=None, recache=None, binary_key=False) -> "
           "MetaResult | None\n\n"
           "mg: None on a miss; attributes not asked for are None."),
    FASTKW("meta_set", AClient_meta_set,
           "await meta_set(key, value, *, ttl=0, flags=0, cas=None, mode='set', "
           "invalidate=False, return_cas=False, binary_key=False) -> "
           "bool | int\n\n"
           "ms: True when stored (the new cas with return_cas=True), False "
           "when not (NS), or the cas did not match (EX) or found no item "
           "(NF)."),
    FASTKW("meta_delete", AClient_meta_delete,
           "await meta_delete(key, *, cas=None, invalidate=False, ttl=None, "
           "binary_key=False) -> bool\n\n"
           "md: True when deleted (or marked stale with invalidate=True), "
           "False for no item or a cas that did not match."),
    FASTKW("meta_arithmetic", AClient_meta_arithmetic,
           "await meta_arithmetic(key, *, delta=1, mode='incr', initial=None, "
           "vivify=None, ttl=None, cas=False, binary_key=False) -> "
           "int | (int, int) | None\n\n"
           "ma: the new value ((value, cas) with cas=True), None on a miss."),
    FASTKW("delete_multi", AClient_delete_multi,
           "await delete_multi(keys, noreply=False, key_prefix=b'')"),
    FASTKW("incr", AClient_incr, "await incr(key, delta=1, noreply=False)"),
    FASTKW("decr", AClient_decr, "await decr(key, delta=1, noreply=False)"),
    FASTKW("touch", AClient_touch, "await touch(key, exptime, noreply=False)"),
    FASTKW("flush_all", AClient_flush_all,
           "await flush_all(delay=0, noreply=False)"),
    FASTKW("get_stats", AClient_get_stats, "await get_stats(args=None)"),
    FASTKW("config_get", AClient_config_get, "await config_get(key)"),
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
    {"_tls_new", (PyCFunction)(void (*)(void))mc_atls_new, METH_FASTCALL,
     NULL},
    {"_tls_handshake", (PyCFunction)mc_atls_handshake, METH_O, NULL},
    {"_tls_send", (PyCFunction)(void (*)(void))mc_atls_send,
     METH_FASTCALL, NULL},
    {"_tls_recv", (PyCFunction)(void (*)(void))mc_atls_recv,
     METH_FASTCALL, NULL},
    {"_tls_why", (PyCFunction)mc_atls_why, METH_O, NULL},
    {"_tls_resume_refused", (PyCFunction)mc_atls_resume_refused, METH_O, NULL},
    {"_tls_code", (PyCFunction)(void (*)(void))mc_atls_code,
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
