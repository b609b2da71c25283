/* cmemcache.StringClient: the type, its methods and constructor.  Each
 * method prepares its call (pycall.c, pymulti.c) and runs it with the
 * blocking driver (sdrive.c). */
#include "sclient.h"

#include <stdbool.h>
#include <string.h>

#include "conn.h"
#include "engine.h"
#include "pyargs.h"
#include "pycall.h"
#include "pycore.h"
#include "pymeta.h"
#include "pymulti.h"

typedef mc_sclient Client;

/* Runs a call of result kind rk and returns its result, or raises. */
static Py_ALWAYS_INLINE inline PyObject *
finish_call(Client *self, struct mc_call *c, enum mc_result rk)
{
    PyObject *res;
    if (mc_sync_run_call(self, c) < 0) {
        mc_raise_fail(&self->core, &self->core.eng.servers[c->server],
                      &c->fail);
        res = NULL;
    }
    else {
        res = mc_call_result(&self->core, c, rk);
    }
    mc_call_release(c);
    return res;
}

static PyObject *
finish_multi(Client *self, struct mc_pymulti *pm, int prep_rc)
{
    PyObject *res = prep_rc < 0 ? NULL : mc_sync_run_multi(self, pm);
    mc_pymulti_release(pm);
    return res;
}

/* ---- methods ------------------------------------------------------------ */

/* Prepares a call (prep uses c), runs it, returns its result of kind rk. */
#define RUN(self, prep, rk)                                                \
    do {                                                                   \
        struct mc_call c_;                                                 \
        struct mc_call *c = &c_;                                           \
        if ((prep) < 0) {                                                  \
            mc_call_release(c);                                            \
            return NULL;                                                   \
        }                                                                  \
        return finish_call(self, c, rk);                                   \
    } while (0)

static PyObject *
Client_get(Client *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GET);
    RUN(self, mc_prep_retrieve(&self->core, c, args, nargs, kwnames, "get",
                               false, false), MC_R_GET);
}

static PyObject *
Client_gets(Client *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GETS);
    RUN(self, mc_prep_retrieve(&self->core, c, args, nargs, kwnames, "gets",
                               true, false), MC_R_GET);
}

static PyObject *
Client_gat(Client *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GAT);
    RUN(self, mc_prep_retrieve(&self->core, c, args, nargs, kwnames, "gat",
                               false, true), MC_R_GET);
}

static PyObject *
Client_gats(Client *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GATS);
    RUN(self, mc_prep_retrieve(&self->core, c, args, nargs, kwnames, "gats",
                               true, true), MC_R_GET);
}

static PyObject *
Client_get_decoded(Client *self, PyObject *const *args, Py_ssize_t nargs)
{
    mc_count(&self->core, MC_CALL_GET);
    RUN(self, mc_prep_get_decoded(&self->core, c, args, nargs),
        MC_R_DECODED);
}

#define STORE_METHOD(fn, cmd, name)                                        \
    static PyObject *                                                      \
    fn(Client *self, PyObject *const *args, Py_ssize_t nargs,              \
       PyObject *kwnames)                                                  \
    {                                                                      \
        mc_count(&self->core, MC_CALL_SET + (int)(cmd));                   \
        RUN(self, mc_prep_store(&self->core, c, args, nargs, kwnames, cmd, \
                                name), MC_R_STORE);                        \
    }

STORE_METHOD(Client_set, MC_SET, "set")
STORE_METHOD(Client_add, MC_ADD, "add")
STORE_METHOD(Client_replace, MC_REPLACE, "replace")
STORE_METHOD(Client_append, MC_APPEND, "append")
STORE_METHOD(Client_prepend, MC_PREPEND, "prepend")
STORE_METHOD(Client_cas, MC_CAS, "cas")

static PyObject *
Client_delete(Client *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_DELETE);
    RUN(self, mc_prep_delete(&self->core, c, args, nargs, kwnames),
        MC_R_FOUND);
}

static PyObject *
Client_incr(Client *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_INCR);
    RUN(self, mc_prep_arith(&self->core, c, args, nargs, kwnames, false),
        MC_R_NUMBER);
}

static PyObject *
Client_decr(Client *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_DECR);
    RUN(self, mc_prep_arith(&self->core, c, args, nargs, kwnames, true),
        MC_R_NUMBER);
}

static PyObject *
Client_touch(Client *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_TOUCH);
    RUN(self, mc_prep_touch(&self->core, c, args, nargs, kwnames),
        MC_R_FOUND);
}

#define META_METHOD(fn, kind, prep)                                        \
    static PyObject *                                                      \
    fn(Client *self, PyObject *const *args, Py_ssize_t nargs,              \
       PyObject *kwnames)                                                  \
    {                                                                      \
        mc_count(&self->core, kind);                                       \
        RUN(self, prep(&self->core, c, args, nargs, kwnames), MC_R_META);  \
    }

META_METHOD(Client_meta_get, MC_CALL_META_GET, mc_prep_meta_get)
META_METHOD(Client_meta_set, MC_CALL_META_SET, mc_prep_meta_set)
META_METHOD(Client_meta_delete, MC_CALL_META_DELETE, mc_prep_meta_delete)
META_METHOD(Client_meta_arithmetic, MC_CALL_META_ARITH, mc_prep_meta_arith)

static PyObject *
Client_get_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GET_MULTI);
    struct mc_pymulti pm;
    return finish_multi(self, &pm,
                        mc_prep_get_multi(&self->core, &pm, args, nargs,
                                          kwnames, "get_multi", false));
}

static PyObject *
Client_gets_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_GETS_MULTI);
    struct mc_pymulti pm;
    return finish_multi(self, &pm,
                        mc_prep_get_multi(&self->core, &pm, args, nargs,
                                          kwnames, "gets_multi", true));
}

static PyObject *
Client_get_multi_decoded(Client *self, PyObject *const *args,
                         Py_ssize_t nargs)
{
    mc_count(&self->core, MC_CALL_GET_MULTI);
    struct mc_pymulti pm;
    return finish_multi(self, &pm,
                        mc_prep_get_multi_decoded(&self->core, &pm, args,
                                                  nargs));
}

static PyObject *
Client_set_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_SET_MULTI);
    struct mc_pymulti pm;
    return finish_multi(self, &pm,
                        mc_prep_set_multi(&self->core, &pm, args, nargs,
                                          kwnames));
}

static PyObject *
Client_delete_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    mc_count(&self->core, MC_CALL_DELETE_MULTI);
    struct mc_pymulti pm;
    return finish_multi(self, &pm,
                        mc_prep_delete_multi(&self->core, &pm, args, nargs,
                                             kwnames));
}

static PyObject *
Client_flush_all(Client *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    struct mc_all a;
    if (mc_prep_flush_all(&self->core, &a, args, nargs, kwnames) < 0) {
        return NULL;
    }
    PyObject *res = mc_sync_run_all(self, &a);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_TRUE;
}

static PyObject *
Client_version(Client *self, PyObject *Py_UNUSED(ignored))
{
    struct mc_all a;
    mc_prep_version(&a);
    return mc_sync_run_all(self, &a);
}

static PyObject *
Client_config_get(Client *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    struct mc_all a;
    if (mc_prep_config_get(&self->core, &a, args, nargs, kwnames) < 0) {
        return NULL;
    }
    return mc_sync_run_all(self, &a);
}

static PyObject *
Client_get_stats(Client *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    struct mc_all a;
    if (mc_prep_stats(&self->core, &a, args, nargs, kwnames) < 0) {
        return NULL;
    }
    return mc_sync_run_all(self, &a);
}

static PyObject *
Client_server_index(Client *self, PyObject *key)
{
    return mc_core_server_index(&self->core, key);
}

static PyObject *
Client_disconnect_all(Client *self, PyObject *Py_UNUSED(ignored))
{
    /* Take every idle connection off its pool, let the ones owed replies
     * to noreply commands read them (at most 100 ms in all), close them. */
    struct mc_conn *all = mc_engine_take_all_idle(&self->core.eng);
    int64_t deadline = mc_now() + 100000000;
    Py_BEGIN_ALLOW_THREADS
    for (struct mc_conn *c = all; c != NULL; c = c->next) {
        mc_sync_drain_owed(c, deadline);
    }
    Py_END_ALLOW_THREADS
    while (all != NULL) {
        struct mc_conn *c = all;
        all = c->next;
        mc_conn_close(c);
    }
    Py_RETURN_NONE;
}

static PyObject *
Client_call_counts(Client *self, PyObject *Py_UNUSED(ignored))
{
    return mc_core_call_counts(&self->core);
}

static PyObject *
Client_reset_call_counts(Client *self, PyObject *Py_UNUSED(ignored))
{
    return mc_core_reset_call_counts(&self->core);
}

static PyObject *
Client_forget_dead(Client *self, PyObject *Py_UNUSED(ignored))
{
    return mc_core_forget_dead(&self->core);
}

static PyObject *
Client_mark_dead(Client *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    return mc_core_mark_dead(&self->core, args, nargs, kwnames);
}

static PyObject *
Client_hold_downs(Client *self, PyObject *Py_UNUSED(ignored))
{
    return mc_core_hold_downs(&self->core);
}

static PyObject *
Client_dead_servers(Client *self, PyObject *Py_UNUSED(ignored))
{
    return mc_core_dead_servers(&self->core);
}

static PyObject *
Client_enter(Client *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self);
}

static PyObject *
Client_exit(Client *self, PyObject *const *Py_UNUSED(args),
            Py_ssize_t Py_UNUSED(nargs))
{
    return Client_disconnect_all(self, NULL);
}

static PyObject *
Client_get_servers(Client *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->core.names);
}

/* discovery, discovered_version, discovery_interval: None (a client made
 * with discovery= is a cmemcache._dstring.DiscoveringStringClient). */
static PyObject *
Client_get_none(Client *Py_UNUSED(self), void *Py_UNUSED(closure))
{
    Py_RETURN_NONE;
}

static PyObject *
Client_discover(Client *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    PyErr_SetString(PyExc_ValueError,
                    "this client was made without discovery=");
    return NULL;
}

/* ---- the type ----------------------------------------------------------- */

static PyObject *
Client_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *module = PyType_GetModuleByDef(type, &mc_module_def);
    if (module == NULL) {
        return NULL;
    }
    PyObject *made;
    int handed = mc_discovery_handoff(type, args, kwargs, "new_string_client",
                                      &made);
    if (handed != 0) {
        return handed < 0 ? NULL : made;
    }
    mc_state *st = mc_get_state(module);
    struct mc_client_args a;
    if (mc_parse_client_args(st, args, kwargs, "StringClient", &a) < 0) {
        return NULL;
    }
    Client *self = (Client *)type->tp_alloc(type, 0);
    if (self == NULL) {
        mc_client_args_release(&a);
        return NULL;
    }
    self->module = Py_NewRef(module);
    self->core.state = st;
    self->ready = true;
    int rc = mc_engine_from_args(st, &self->core.eng, &a, &self->core.names);
    Py_DECREF(a.servers);
    if (rc < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
Client_traverse(Client *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->module);
    return 0;
}

static int
Client_clear(Client *self)
{
    Py_CLEAR(self->module);
    return 0;
}

static void
Client_dealloc(Client *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->ready) {
        mc_engine_free(&self->core.eng);
    }
    Py_CLEAR(self->core.names);
    (void)Client_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

#define FASTKW(name, fn, doc) \
    {name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL | METH_KEYWORDS, \
     PyDoc_STR(doc)}

static PyMethodDef Client_methods[] = {
    FASTKW("get", Client_get,
           "get(key, *, with_flags=False) -> bytes | None"),
    FASTKW("gets", Client_gets,
           "gets(key, *, with_flags=False) -> (bytes, cas) | None"),
    FASTKW("gat", Client_gat,
           "gat(key, exptime, *, with_flags=False) -> bytes | None"),
    FASTKW("gats", Client_gats,
           "gats(key, exptime, *, with_flags=False) -> (bytes, cas) | None"),
    FASTKW("get_multi", Client_get_multi,
           "get_multi(keys, key_prefix=b'', *, with_flags=False) -> dict"),
    FASTKW("gets_multi", Client_gets_multi,
           "gets_multi(keys, key_prefix=b'', *, with_flags=False) -> dict"),
    {"get_decoded", (PyCFunction)(void (*)(void))Client_get_decoded,
     METH_FASTCALL,
     PyDoc_STR("get_decoded(key, default, decoder, unpickle=None) -> "
               "value\n\n"
               "default on a miss; bytes, str or int for flags 0, 16, 2 and "
               "4; unpickle(data) for flags 1 when given; otherwise (or when "
               "unpickle raises) decoder(key, data, flags, default).")},
    {"get_multi_decoded",
     (PyCFunction)(void (*)(void))Client_get_multi_decoded, METH_FASTCALL,
     PyDoc_STR("get_multi_decoded(keys, key_prefix, decoder, omit, "
               "unpickle=None) -> dict"
               "\n\nLike get_decoded for many keys; a key whose decoder "
               "returns omit is left out.")},
    FASTKW("set", Client_set,
           "set(key, value, exptime=0, flags=0, noreply=False) -> bool"),
    FASTKW("add", Client_add,
           "add(key, value, exptime=0, flags=0, noreply=False) -> bool"),
    FASTKW("replace", Client_replace,
           "replace(key, value, exptime=0, flags=0, noreply=False) -> bool"),
    FASTKW("append", Client_append,
           "append(key, value, exptime=0, flags=0, noreply=False) -> bool"),
    FASTKW("prepend", Client_prepend,
           "prepend(key, value, exptime=0, flags=0, noreply=False) -> bool"),
    FASTKW("cas", Client_cas,
           "cas(key, value, cas, exptime=0, flags=0, noreply=False) -> "
           "True | False | None"),
    FASTKW("set_multi", Client_set_multi,
           "set_multi(mapping, exptime=0, flags=0, noreply=False, "
           "key_prefix=b'') -> list of keys not stored"),
    FASTKW("delete", Client_delete, "delete(key, noreply=False) -> bool"),
    FASTKW("meta_get", Client_meta_get,
           "meta_get(key, *, value=True, cas=False, flags=False, ttl=False, "
           "size=False, last_access=False, hit=False, no_bump=False, "
           "touch=None, vivify=None, recache=None, binary_key=False) -> "
           "MetaResult | None\n\n"
           "mg: None on a miss; attributes not asked for are None."),
    FASTKW("meta_set", Client_meta_set,
           "meta_set(key, value, *, ttl=0, flags=0, cas=None, mode='set', "
           "invalidate=False, return_cas=False, binary_key=False) -> "
           "bool | int\n\n"
           "ms: True when stored (the new cas with return_cas=True), False "
           "when not (NS), or the cas did not match (EX) or found no item "
           "(NF)."),
    FASTKW("meta_delete", Client_meta_delete,
           "meta_delete(key, *, cas=None, invalidate=False, ttl=None, "
           "binary_key=False) -> bool\n\n"
           "md: True when deleted (or marked stale with invalidate=True), "
           "False for no item or a cas that did not match."),
    FASTKW("meta_arithmetic", Client_meta_arithmetic,
           "meta_arithmetic(key, *, delta=1, mode='incr', initial=None, "
           "vivify=None, ttl=None, cas=False, binary_key=False) -> "
           "int | (int, int) | None\n\n"
           "ma: the new value ((value, cas) with cas=True), None on a miss."),
    FASTKW("delete_multi", Client_delete_multi,
           "delete_multi(keys, noreply=False, key_prefix=b'') -> bool"),
    FASTKW("incr", Client_incr,
           "incr(key, delta=1, noreply=False) -> int | None"),
    FASTKW("decr", Client_decr,
           "decr(key, delta=1, noreply=False) -> int | None"),
    FASTKW("touch", Client_touch,
           "touch(key, exptime, noreply=False) -> bool"),
    FASTKW("flush_all", Client_flush_all,
           "flush_all(delay=0, noreply=False) -> True"),
    FASTKW("get_stats", Client_get_stats,
           "get_stats(args=None) -> [(server, {stat: value})]"),
    {"version", (PyCFunction)Client_version, METH_NOARGS,
     PyDoc_STR("version() -> {server: version}")},
    FASTKW("config_get", Client_config_get,
           "config_get(key) -> {server: bytes | None} (ElastiCache's "
           "\"config get\")"),
    {"discover", (PyCFunction)Client_discover, METH_NOARGS,
     PyDoc_STR("discover() -> [server] (with discovery=: reads the node "
               "list from the configuration endpoint now; ValueError "
               "otherwise)")},
    {"server_index", (PyCFunction)Client_server_index, METH_O,
     PyDoc_STR("server_index(key) -> index of the server holding key")},
    {"disconnect_all", (PyCFunction)Client_disconnect_all, METH_NOARGS,
     PyDoc_STR("Closes every idle connection.")},
    {"close", (PyCFunction)Client_disconnect_all, METH_NOARGS,
     PyDoc_STR("Closes every idle connection; the client stays usable.")},
    {"call_counts", (PyCFunction)Client_call_counts, METH_NOARGS,
     PyDoc_STR("call_counts() -> {command: calls made}")},
    {"reset_call_counts", (PyCFunction)Client_reset_call_counts, METH_NOARGS,
     PyDoc_STR("Sets every call count back to 0.")},
    {"forget_dead", (PyCFunction)Client_forget_dead, METH_NOARGS,
     PyDoc_STR("Clears every server's dead mark.")},
    FASTKW("mark_dead", Client_mark_dead,
           "mark_dead(index, seconds=None): hold a server down for seconds "
           "(dead_retry when None), as a failure would"),
    {"hold_downs", (PyCFunction)Client_hold_downs, METH_NOARGS,
     PyDoc_STR("hold_downs() -> (seconds each server stays held down, 0.0 "
               "when live)")},
    {"dead_servers", (PyCFunction)Client_dead_servers, METH_NOARGS,
     PyDoc_STR("dead_servers() -> indexes of the servers marked dead")},
    {"__enter__", (PyCFunction)Client_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Client_exit, METH_FASTCALL,
     NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Client_getset[] = {
    {"servers", (getter)Client_get_servers, NULL,
     PyDoc_STR("The server strings, in order."), NULL},
    {"discovery", (getter)Client_get_none, NULL,
     PyDoc_STR("The discovery= kind (None: the servers are fixed)."), NULL},
    {"discovered_version", (getter)Client_get_none, NULL,
     PyDoc_STR("With discovery=: the cluster configuration's version read "
               "last (None before the first discovery)."), NULL},
    {"discovery_interval", (getter)Client_get_none, NULL,
     PyDoc_STR("With discovery=: the seconds between two discoveries."),
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Client_doc,
"StringClient(servers, *, timeout=1.0, connect_timeout=1.0, dead_retry=30.0,\n"
"             max_value_size=1048576, pool_size=8, noreply_fence=True)\n"
"\n"
"A memcached client speaking the text protocol on its own sockets: keys are\n"
"bytes or str, values bytes-like in and bytes out, with 32-bit flags.");

static PyType_Slot Client_slots[] = {
    {Py_tp_doc, (void *)Client_doc},
    {Py_tp_new, MC_SLOT(Client_new)},
    {Py_tp_dealloc, MC_SLOT(Client_dealloc)},
    {Py_tp_traverse, MC_SLOT(Client_traverse)},
    {Py_tp_clear, MC_SLOT(Client_clear)},
    {Py_tp_methods, Client_methods},
    {Py_tp_getset, Client_getset},
    {0, NULL},
};

PyType_Spec mc_client_spec = {
    .name = "cmemcache.StringClient",
    .basicsize = sizeof(Client),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Client_slots,
};
