/* A client's servers and call counts as Python reads and sets them
 * (server_index, hold_downs, dead_servers, mark_dead, forget_dead,
 * call_counts): the same whatever binding drives the engine, so each
 * binding's methods of these names call these functions on its core. */
#include "pycore.h"

#include <stdatomic.h>

#define MC_NS 1000000000.0

PyObject *
mc_core_forget_dead(struct mc_core *core)
{
    mc_engine_forget_dead(&core->eng);
    Py_RETURN_NONE;
}

PyObject *
mc_core_mark_dead(struct mc_core *core, PyObject *const *args,
                  Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"index", "seconds", NULL};
    PyObject *a[2];
    int64_t index;
    struct mc_engine *e = &core->eng;
    if (mc_parse_args("mark_dead", args, nargs, kwnames, names, 1, 2, a) < 0
        || mc_to_int64(a[0], "index", 0, (int64_t)e->nservers - 1, &index)
               < 0) {
        return NULL;
    }
    int64_t hold = 0;
    if (a[1] != NULL && a[1] != Py_None) {
        if (mc_to_ns(a[1], "seconds", 0, true, &hold) < 0) {
            return NULL;
        }
        if (hold == 0) {
            Py_RETURN_NONE;     /* held down for no time: nothing to do */
        }
    }
    mc_engine_mark_dead(e, (size_t)index, hold);
    Py_RETURN_NONE;
}

PyObject *
mc_core_hold_downs(struct mc_core *core)
{
    struct mc_engine *e = &core->eng;
    PyObject *t = PyTuple_New((Py_ssize_t)e->nservers);
    for (size_t i = 0; t != NULL && i < e->nservers; i++) {
        PyObject *v = PyFloat_FromDouble(
            (double)mc_engine_hold_left(e, i) / MC_NS);
        if (v == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, v);
    }
    return t;
}

PyObject *
mc_core_dead_servers(struct mc_core *core)
{
    struct mc_engine *e = &core->eng;
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < e->nservers; i++) {
        if (mc_server_dead(&e->servers[i])) {
            PyObject *n = PyLong_FromSize_t(i);
            if (n == NULL || PyList_Append(list, n) < 0) {
                Py_XDECREF(n);
                Py_CLEAR(list);
                break;
            }
            Py_DECREF(n);
        }
    }
    return list;
}

PyObject *
mc_core_call_counts(struct mc_core *core)
{
    PyObject *d = PyDict_New();
    for (int i = 0; d != NULL && i < MC_CALL_COUNT; i++) {
        uint64_t n = atomic_load_explicit(&core->calls[i],
                                          memory_order_relaxed);
        if (n == 0) {
            continue;
        }
        PyObject *v = PyLong_FromUnsignedLongLong(n);
        if (v == NULL || PyDict_SetItemString(d, mc_call_names[i], v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(d);
            break;
        }
        Py_DECREF(v);
    }
    return d;
}

PyObject *
mc_core_reset_call_counts(struct mc_core *core)
{
    for (int i = 0; i < MC_CALL_COUNT; i++) {
        atomic_store_explicit(&core->calls[i], 0, memory_order_relaxed);
    }
    Py_RETURN_NONE;
}

PyObject *
mc_core_server_index(struct mc_core *core, PyObject *key)
{
    struct mc_wkey wk;
    struct mc_place place;
    struct mc_pyhold hold;
    if (mc_pykey(core->state, &core->eng, key, "", 0, &wk, &place,
                 &hold) < 0) {
        return NULL;
    }
    ssize_t idx = mc_engine_pick(&core->eng, &place);
    mc_pyhold_release(&hold);
    if (idx < 0) {
        PyErr_SetString(core->state->ConnectionError,
                        "no live server for this key");
        return NULL;
    }
    return PyLong_FromSsize_t(idx);
}
