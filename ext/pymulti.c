/* Multi-key commands from Python arguments to the engine and back (see
 * pymulti.h). */
#include "pymulti.h"

#include <errno.h>
#include <string.h>

static int multi_item(void *owner, struct mc_req *r, size_t item,
                      const struct mc_reply *rep);

static int
pymulti_init(struct mc_core *core, struct mc_pymulti *pm,
             enum mc_multi_kind kind, Py_ssize_t n)
{
    memset(pm, 0, sizeof(*pm));
    if (mc_multi_init(&pm->m, &core->eng, kind, (size_t)n) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    pm->holds = PyMem_Malloc(sizeof(struct mc_pyhold) * (size_t)(n ? n : 1));
    if (pm->holds == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    pm->m.on_item = multi_item;
    pm->m.owner = pm;
    if (core->opaque && core->eng.cfg.meta) {
        /* a pipelining client's tokens stay unique across its calls */
        pm->m.opaque = core->next_opaque + 1;
        core->next_opaque += (uint32_t)n;
    }
    return 0;
}

void
mc_pymulti_release(struct mc_pymulti *pm)
{
    for (size_t i = 0; pm->texts && i < pm->m.nitems; i++) {
        mc_pyhold_release(&pm->holds[i]);
    }
    PyMem_Free(pm->holds);
    pm->holds = NULL;
    mc_multi_free(&pm->m);
    for (Py_ssize_t i = 0; i < pm->nviews; i++) {
        PyBuffer_Release(&pm->views[i]);
    }
    PyMem_Free(pm->views);
    pm->views = NULL;
    pm->nviews = 0;
    for (Py_ssize_t i = 0; i < pm->nheld; i++) {
        Py_DECREF(pm->held[i]);
    }
    PyMem_Free(pm->held);
    pm->held = NULL;
    pm->nheld = 0;
    Py_CLEAR(pm->seq);
    Py_CLEAR(pm->result);
    Py_CLEAR(pm->pending);
}

/* Adds an item for a key object, checked with the prefix. */
static int
add_key(struct mc_core *core, struct mc_pymulti *pm, PyObject *key,
        const char *pre, Py_ssize_t pre_len)
{
    size_t i = pm->m.nitems;
    struct mc_item *it = &pm->m.items[i];
    if (mc_pykey(core->state, &core->eng, key, pre, (size_t)pre_len, &it->wk,
                 &it->place, &pm->holds[i]) < 0) {
        return -1;
    }
    pm->texts |= pm->holds[i].text_obj != NULL || pm->holds[i].rtext != NULL;
    it->val = NULL;
    it->val_len = 0;
    it->flags = 0;
    pm->m.nitems++;
    return 0;
}

/* The keys of an iterable, each checked with the prefix.  The call holds
 * them in a tuple of its own: the items point into the keys, and the
 * caller's list may change while the call runs Python code (a key's
 * __hash__, a signal handler) or waits with the GIL released. */
static int
from_keys(struct mc_core *core, struct mc_pymulti *pm, enum mc_multi_kind kind,
          PyObject *keys, const char *pre, Py_ssize_t pre_len)
{
    memset(pm, 0, sizeof(*pm));
    if (Py_TYPE(keys)->tp_iter == NULL && !PySequence_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "keys must be iterable");
        return -1;
    }
    PyObject *seq = PyTuple_CheckExact(keys) ? Py_NewRef(keys)
                                             : PySequence_Tuple(keys);
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    if (pymulti_init(core, pm, kind, n) < 0) {
        Py_DECREF(seq);
        return -1;
    }
    pm->seq = seq;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (add_key(core, pm, PyTuple_GET_ITEM(seq, i), pre, pre_len) < 0) {
            return -1;
        }
    }
    return 0;
}

int
mc_prep_get_multi(struct mc_core *core, struct mc_pymulti *pm,
                  PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  const char *fname, bool with_cas)
{
    static const char *const names[] = {"keys", "key_prefix", "with_flags",
                                        NULL};
    PyObject *a[3];
    const char *pre;
    Py_ssize_t pre_len;
    bool with_flags;
    memset(pm, 0, sizeof(*pm));
    if (mc_parse_args(fname, args, nargs, kwnames, names, 1, 2, a) < 0
        || mc_check_prefix(core->state, core->eng.cfg.binary_keys, a[1], &pre, &pre_len) < 0
        || mc_to_bool(a[2], &with_flags) < 0
        || from_keys(core, pm, MC_MULTI_GET, a[0], pre, pre_len) < 0) {
        return -1;
    }
    pm->with_flags = with_flags;
    pm->m.with_cas = with_cas;
    pm->m.cmd = with_cas ? "gets" : "get";
    pm->result = _PyDict_NewPresized((Py_ssize_t)pm->m.nitems);
    return pm->result == NULL ? -1 : 0;
}

int
mc_prep_get_multi_decoded(struct mc_core *core, struct mc_pymulti *pm,
                          PyObject *const *args, Py_ssize_t nargs)
{
    memset(pm, 0, sizeof(*pm));
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "get_multi_decoded(keys, key_prefix, decoder, omit, "
                        "unpickle=None) takes 4 or 5 arguments");
        return -1;
    }
    const char *pre;
    Py_ssize_t pre_len;
    if (mc_check_prefix(core->state, core->eng.cfg.binary_keys, args[1], &pre, &pre_len) < 0
        || from_keys(core, pm, MC_MULTI_GET, args[0], pre, pre_len) < 0) {
        return -1;
    }
    pm->decoding = true;
    pm->decoder = args[2];
    pm->omit = args[3];
    pm->unpickle = nargs == 5 ? args[4] : NULL;
    pm->result = _PyDict_NewPresized((Py_ssize_t)pm->m.nitems);
    pm->pending = PyList_New(0);
    return pm->result == NULL || pm->pending == NULL ? -1 : 0;
}

/* Reads one set_multi value (bytes-like, or a (value, flags) pair). */
static int
set_value(struct mc_core *core, struct mc_pymulti *pm, struct mc_item *it,
          PyObject *val, uint32_t flags, Py_ssize_t n)
{
    it->flags = flags;
    if (PyTuple_Check(val)) {
        if (PyTuple_GET_SIZE(val) != 2) {
            PyErr_SetString(PyExc_TypeError,
                            "set_multi() values are bytes-like or "
                            "(value, flags) pairs");
            return -1;
        }
        if (mc_to_flags(PyTuple_GET_ITEM(val, 1), &it->flags) < 0) {
            return -1;
        }
        val = PyTuple_GET_ITEM(val, 0);
    }
    size_t max_value = core->eng.cfg.max_value;
    if (PyBytes_CheckExact(val)) {
        if ((size_t)PyBytes_GET_SIZE(val) > max_value) {
            PyErr_Format(core->state->ValueTooLargeError,
                         "value of %zd bytes is larger than max_value_size "
                         "(%zu)", PyBytes_GET_SIZE(val), max_value);
            return -1;
        }
        it->val = PyBytes_AS_STRING(val);
        it->val_len = (size_t)PyBytes_GET_SIZE(val);
        return 0;
    }
    if (pm->views == NULL) {
        pm->views = PyMem_Malloc(sizeof(Py_buffer) * (size_t)(n ? n : 1));
        if (pm->views == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (mc_get_value(core->state, max_value, val, &pm->views[pm->nviews])
        < 0) {
        return -1;
    }
    Py_buffer *v = &pm->views[pm->nviews++];
    it->val = v->buf;
    it->val_len = (size_t)v->len;
    return 0;
}

int
mc_prep_set_multi(struct mc_core *core, struct mc_pymulti *pm,
                  PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"mapping", "exptime", "flags",
                                        "noreply", "key_prefix", NULL};
    PyObject *a[5];
    const char *pre;
    Py_ssize_t pre_len;
    int64_t exptime;
    uint32_t flags;
    bool noreply;
    memset(pm, 0, sizeof(*pm));
    if (mc_parse_args("set_multi", args, nargs, kwnames, names, 1, 5, a) < 0
        || mc_to_exptime(a[1], &exptime) < 0 || mc_to_flags(a[2], &flags) < 0
        || mc_to_bool(a[3], &noreply) < 0
        || mc_check_prefix(core->state, core->eng.cfg.binary_keys, a[4], &pre, &pre_len) < 0) {
        return -1;
    }
    if (!PyDict_Check(a[0])
        && (!PyMapping_Check(a[0]) || PySequence_Check(a[0]))) {
        PyErr_SetString(PyExc_TypeError, "set_multi() needs a mapping");
        return -1;
    }
    /* The pairs, held by strong references for the call (values are read
     * in place, and Python code may run meanwhile): a dict is read directly
     * (no tuple per pair), any other mapping through a tuple of its
     * items() (which may return a list its owner keeps and changes). */
    PyObject **held = NULL;
    PyObject *pairs = NULL;
    Py_ssize_t n;
    if (PyDict_CheckExact(a[0])) {
        n = PyDict_GET_SIZE(a[0]);
        held = PyMem_Malloc(sizeof(PyObject *) * (size_t)(2 * n + 1));
        if (held == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        Py_ssize_t pos = 0, i = 0;
        PyObject *k, *v;
        while (i < n && PyDict_Next(a[0], &pos, &k, &v)) {
            held[2 * i] = Py_NewRef(k);
            held[2 * i + 1] = Py_NewRef(v);
            i++;
        }
        n = i;
    }
    else {
        PyObject *items = PyMapping_Items(a[0]);
        if (items == NULL) {
            return -1;
        }
        pairs = PySequence_Tuple(items);
        Py_DECREF(items);
        if (pairs == NULL) {
            return -1;
        }
        n = PyTuple_GET_SIZE(pairs);
    }
    if (pymulti_init(core, pm, MC_MULTI_SET, n) < 0) {
        if (held != NULL) {
            for (Py_ssize_t i = 0; i < 2 * n; i++) {
                Py_DECREF(held[i]);
            }
            PyMem_Free(held);
        }
        Py_XDECREF(pairs);
        return -1;
    }
    pm->held = held;
    pm->nheld = held != NULL ? 2 * n : 0;
    pm->seq = pairs;
    pm->m.noreply = noreply;
    pm->m.exptime = exptime;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key, *val;
        if (held != NULL) {
            key = held[2 * i];
            val = held[2 * i + 1];
        }
        else {
            PyObject *pair = PyTuple_GET_ITEM(pairs, i);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
                PyErr_SetString(PyExc_TypeError,
                                "set_multi() needs (key, value) items");
                return -1;
            }
            key = PyTuple_GET_ITEM(pair, 0);
            val = PyTuple_GET_ITEM(pair, 1);
        }
        if (add_key(core, pm, key, pre, pre_len) < 0
            || set_value(core, pm, &pm->m.items[pm->m.nitems - 1], val, flags,
                         n) < 0) {
            return -1;
        }
    }
    pm->result = PyList_New(0);
    return pm->result == NULL ? -1 : 0;
}

int
mc_prep_delete_multi(struct mc_core *core, struct mc_pymulti *pm,
                     PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    static const char *const names[] = {"keys", "noreply", "key_prefix",
                                        NULL};
    PyObject *a[3];
    const char *pre;
    Py_ssize_t pre_len;
    bool noreply;
    memset(pm, 0, sizeof(*pm));
    if (mc_parse_args("delete_multi", args, nargs, kwnames, names, 1, 3, a)
            < 0
        || mc_to_bool(a[1], &noreply) < 0
        || mc_check_prefix(core->state, core->eng.cfg.binary_keys, a[2], &pre, &pre_len) < 0
        || from_keys(core, pm, MC_MULTI_DELETE, a[0], pre, pre_len) < 0) {
        return -1;
    }
    pm->m.noreply = noreply;
    pm->result = Py_NewRef(Py_True);
    return 0;
}

/* ---- reply items -------------------------------------------------------- */

/* Records item i as not done: a set_multi key not stored, a delete_multi
 * that failed. */
static int
item_failed(struct mc_pymulti *pm, size_t i)
{
    if (pm->m.kind == MC_MULTI_SET) {
        return PyList_Append(pm->result, pm->holds[i].obj);
    }
    if (pm->m.kind == MC_MULTI_DELETE) {
        Py_SETREF(pm->result, Py_NewRef(Py_False));
    }
    return 0;
}

static int
multi_item(void *owner, struct mc_req *r, size_t item,
           const struct mc_reply *rep)
{
    struct mc_pymulti *pm = owner;
    (void)r;
    if (pm->m.kind != MC_MULTI_GET) {
        return rep->kind == MC_STORED || rep->kind == MC_DELETED
                   ? 0
                   : item_failed(pm, item);
    }
    PyObject *key = pm->holds[item].obj;
    PyObject *v;
    if (pm->decoding) {
        bool pending;
        v = mc_decode_plain(rep, &pending);
        if (pending) {
            /* For the decoder, after the call: (key, data, flags) in a list
             * of the call's own, and a placeholder in the result that keeps
             * the key's place.  Nothing in the result is ever taken for raw
             * data: a stored tuple stays a value. */
            PyObject *entry = Py_BuildValue(
                "(Oy#k)", key, rep->value, (Py_ssize_t)rep->value_len,
                (unsigned long)rep->flags);
            int rc = entry ? PyList_Append(pm->pending, entry) : -1;
            Py_XDECREF(entry);
            v = rc < 0 ? NULL : Py_NewRef(Py_None);
        }
    }
    else {
        v = mc_make_value(rep, pm->with_flags, pm->m.with_cas);
    }
    if (v == NULL || PyDict_SetItem(pm->result, key, v) < 0) {
        Py_XDECREF(v);
        return -1;
    }
    Py_DECREF(v);
    return 0;
}

int
mc_pymulti_unplaced(struct mc_pymulti *pm)
{
    for (size_t i = 0; i < pm->m.nitems; i++) {
        if (pm->m.items[i].server < 0 && item_failed(pm, i) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Runs the decoder on the values left pending: each becomes decoder(key,
 * data, flags, omit), and a key whose value comes back as omit is dropped.
 * Keeps an exception being raised aside meanwhile. */
static int
decode_pending(struct mc_pymulti *pm)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int rc = 0;
    /* The list is the call's alone, and each entry is held while the
     * decoder (any Python code) runs. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pm->pending); i++) {
        PyObject *entry = Py_NewRef(PyList_GET_ITEM(pm->pending, i));
        PyObject *key = PyTuple_GET_ITEM(entry, 0);
        PyObject *data = PyTuple_GET_ITEM(entry, 1);
        uint32_t flags =
            (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(entry, 2));
        PyObject *v = mc_fast_unpickle(pm->unpickle, data, flags);
        if (v == NULL && !PyErr_Occurred()) {
            v = mc_call_decoder(pm->decoder, key, data, flags, pm->omit);
        }
        int r = -1;
        if (v == pm->omit) {
            /* a key listed twice may have been dropped already */
            r = PyDict_DelItem(pm->result, key);
            if (r < 0 && PyErr_ExceptionMatches(PyExc_KeyError)) {
                PyErr_Clear();
                r = 0;
            }
        }
        else if (v != NULL) {
            r = PyDict_SetItem(pm->result, key, v);
        }
        Py_XDECREF(v);
        Py_DECREF(entry);
        if (r < 0) {
            rc = -1;
            break;
        }
    }
    if (rc < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
    else {
        PyErr_Restore(type, value, tb);
    }
    return rc;
}

static PyObject *
outcome(struct mc_core *core, struct mc_pymulti *pm)
{
    struct mc_multi *m = &pm->m;
    for (size_t i = 0; i < m->nparts; i++) {
        /* Keys of a failed server were not (or not surely) stored. */
        struct mc_part *p = &m->parts[i];
        if (p->fail.code == -ETIMEDOUT) {
            mc_engine_timed_out(m->e, p->srv);
        }
        if (p->fail.code == 0 || m->kind == MC_MULTI_GET) {
            continue;
        }
        /* (a part that never sent its request has answered nothing) */
        for (size_t k = p->req.cursor; k < p->nitems; k++) {
            if (item_failed(pm, p->items[k]) < 0) {
                return NULL;
            }
        }
    }
    for (size_t i = 0; i < m->nparts; i++) {
        struct mc_part *p = &m->parts[i];
        if (p->fail.code != 0) {
            mc_raise_fail(core, p->srv, &p->fail);
            mc_attach_partial(pm->result);
            return NULL;
        }
    }
    for (size_t i = 0; i < m->nitems; i++) {
        if (m->items[i].server < 0) {
            struct mc_fail f = {.code = MC_ENOSERVER};
            if (m->connect_srv != NULL) {
                mc_raise_fail(core, m->connect_srv, &m->connect_fail);
            }
            else {
                mc_raise_fail(core, NULL, &f);
            }
            mc_attach_partial(pm->result);
            return NULL;
        }
    }
    return Py_NewRef(pm->result);
}

PyObject *
mc_pymulti_result(struct mc_core *core, struct mc_pymulti *pm)
{
    PyObject *res = outcome(core, pm);
    if (pm->decoding && PyList_GET_SIZE(pm->pending) > 0
        && decode_pending(pm) < 0) {
        Py_CLEAR(res);
    }
    return res;
}
