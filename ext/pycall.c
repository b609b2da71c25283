/* Single-key and every-server commands: prepared from a method's
 * arguments, their reply items turned into Python results, failures into
 * exceptions (see pycall.h). */
#include "pycall.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "conn.h"

#define MC_NS 1000000000.0

const char *const mc_call_names[MC_CALL_COUNT] = {
    "get", "gets", "gat", "gats", "get_multi", "gets_multi", "set", "add",
    "replace", "append", "prepend", "cas", "set_multi", "delete",
    "delete_multi", "incr", "decr", "touch", "meta_get", "meta_set",
    "meta_delete", "meta_arithmetic",
};

static const char crlf[] = "\r\n";

static int call_item(void *owner, struct mc_req *r, size_t item,
                     const struct mc_reply *rep);

/* Only what every call reads is set here; each prep sets the rest it
 * uses (store, with_flags, with_cas, the decoder's arguments). */
void
mc_call_init(struct mc_call *c, enum mc_expect x, enum mc_result rk)
{
    mc_req_init(&c->req, x);
    c->req.on_item = call_item;
    c->req.owner = c;
    c->hold.text_obj = NULL;
    c->hold.rtext = NULL;
    c->keyed = false;
    c->server = 0;
    c->iovcnt = 0;
    c->len = 0;
    c->has_view = false;
    c->noreply = false;
    c->retry_safe = true;
    c->rkind = rk;
    c->pending = false;
    c->result = NULL;
}

static void
call_add(struct mc_call *c, const void *p, size_t n)
{
    c->iov[c->iovcnt].iov_base = (void *)p;
    c->iov[c->iovcnt].iov_len = n;
    c->iovcnt++;
    c->len += n;
}

static int
call_key(struct mc_core *core, struct mc_call *c, PyObject *key)
{
    c->keyed = true;
    return mc_pykey(core->state, &core->eng, key, "", 0, &c->wk, &c->place,
                    &c->hold);
}

/* protocol="meta": c's command as the meta request mr (its key is c's),
 * its reply read as the text one (mc_meta_as_text).  noreply is q: the
 * fence's MN follows (a quiet command's failure is skipped as a text
 * noreply's error is); otherwise a pipelining client sends an opaque
 * token, checked in the reply. */
static int
call_meta(struct mc_core *core, struct mc_call *c,
          struct mc_meta_request *mr, enum mc_meta_as as)
{
    mr->key = c->wk.key;
    mr->key_len = c->wk.key_len;
    if (c->noreply) {
        mr->flags |= MC_MF_QUIET;
    }
    mc_meta_key_token(core, c, mr, !c->noreply);
    ssize_t n = mc_meta_fmt(c->hdr, mr);
    if (n < 0) {
        /* the arguments were checked for the text command: unreachable */
        PyErr_SetString(PyExc_SystemError, mc_meta_fmt_strerror(n));
        return -1;
    }
    c->req.expect = MC_X_META;
    c->req.as = as;
    call_add(c, c->hdr, (size_t)n);
    return 0;
}

static int
meta_retrieve(struct mc_core *core, struct mc_call *c, bool with_cas,
              bool touch, int64_t exptime)
{
    struct mc_meta_request mr = {.cmd = MC_META_GET};
    mr.flags = MC_MF_VALUE | MC_MF_RET_FLAGS | (with_cas ? MC_MF_RET_CAS : 0)
               | (touch ? MC_MF_TTL : 0);
    mr.ttl = (int32_t)exptime;
    c->req.with_cas = with_cas;
    return call_meta(core, c, &mr, MC_AS_GET);
}

/* ---- reply items to Python ---------------------------------------------- */

PyObject *
mc_make_value(const struct mc_reply *r, bool with_flags, bool with_cas)
{
    PyObject *v = PyBytes_FromStringAndSize(r->value,
                                            (Py_ssize_t)r->value_len);
    if (v == NULL || (!with_flags && !with_cas)) {
        return v;
    }
    if (with_flags && with_cas) {
        return Py_BuildValue("(NkK)", v, (unsigned long)r->flags,
                             (unsigned long long)r->cas);
    }
    if (with_flags) {
        return Py_BuildValue("(Nk)", v, (unsigned long)r->flags);
    }
    return Py_BuildValue("(NK)", v, (unsigned long long)r->cas);
}

/* python-memcached's simple flags, decoded without calling back into
 * Python: 0 bytes, 16 UTF-8 text, 2 and 4 decimal ints. */
#define FLAG_PICKLE 1
#define FLAG_INTEGER 2
#define FLAG_LONG 4
#define FLAG_TEXT 16

PyObject *
mc_decode_plain(const struct mc_reply *r, bool *pending)
{
    *pending = false;
    const char *p = r->value;
    Py_ssize_t n = (Py_ssize_t)r->value_len;
    if (r->flags == 0) {
        return PyBytes_FromStringAndSize(p, n);
    }
    if (r->flags == FLAG_TEXT) {
        PyObject *v = PyUnicode_DecodeUTF8(p, n, NULL);
        if (v != NULL || !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            return v;
        }
        PyErr_Clear();
    }
    else if ((r->flags == FLAG_INTEGER || r->flags == FLAG_LONG) && n > 0
             && n <= 18) {
        long long v = 0;
        Py_ssize_t i = p[0] == '-';
        bool ok = i < n;
        for (; i < n && ok; i++) {
            unsigned d = (unsigned char)p[i] - '0';
            ok = d <= 9;
            v = v * 10 + d;
        }
        if (ok) {
            return PyLong_FromLongLong(p[0] == '-' ? -v : v);
        }
    }
    *pending = true;
    return NULL;
}

PyObject *
mc_fast_unpickle(PyObject *unpickle, PyObject *data, uint32_t flags)
{
    if (unpickle == NULL || unpickle == Py_None || flags != FLAG_PICKLE) {
        return NULL;
    }
    PyObject *v = PyObject_CallOneArg(unpickle, data);
    if (v == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_Clear();          /* the decoder gets it, and reports it */
    }
    return v;
}

PyObject *
mc_call_decoder(PyObject *decoder, PyObject *key, PyObject *data,
                uint32_t flags, PyObject *dflt)
{
    PyObject *f = PyLong_FromUnsignedLong(flags);
    if (f == NULL) {
        return NULL;
    }
    PyObject *args[4] = {key, data, f, dflt};
    PyObject *v = PyObject_Vectorcall(decoder, args, 4, NULL);
    Py_DECREF(f);
    return v;
}

static int
set_result(struct mc_call *c, PyObject *v)
{
    Py_XSETREF(c->result, v);
    return v == NULL ? -1 : 0;
}

/* Takes one item of a call's reply (see mc_item_fn). */
static int
call_item(void *owner, struct mc_req *r, size_t item,
          const struct mc_reply *rep)
{
    struct mc_call *c = owner;
    (void)r;
    (void)item;
    switch (c->rkind) {
    case MC_R_GET:
        return set_result(c, mc_make_value(rep, c->with_flags, c->with_cas));
    case MC_R_DECODED: {
        PyObject *v = mc_decode_plain(rep, &c->pending);
        if (c->pending) {
            c->rflags = rep->flags;
            v = PyBytes_FromStringAndSize(rep->value,
                                          (Py_ssize_t)rep->value_len);
        }
        return set_result(c, v);
    }
    case MC_R_STORE:
        return set_result(c, Py_NewRef(rep->kind == MC_STORED ? Py_True
                                       : rep->kind == MC_NOT_FOUND
                                           ? Py_None
                                           : Py_False));
    case MC_R_FOUND:
        return set_result(c, Py_NewRef(rep->kind == MC_NOT_FOUND ? Py_False
                                                                 : Py_True));
    case MC_R_NUMBER:
        if (rep->kind == MC_NOT_FOUND) {
            return set_result(c, Py_NewRef(Py_None));
        }
        return set_result(c, PyLong_FromUnsignedLongLong(rep->number));
    case MC_R_OK:
        return set_result(c, Py_NewRef(Py_True));
    case MC_R_VERSION:
        return set_result(c, PyUnicode_DecodeUTF8(
                                 rep->text, (Py_ssize_t)rep->text_len,
                                 "replace"));
    case MC_R_STATS: {
        if (c->result == NULL && set_result(c, PyDict_New()) < 0) {
            return -1;
        }
        PyObject *k = PyUnicode_DecodeUTF8(rep->key, (Py_ssize_t)rep->key_len,
                                           "replace");
        PyObject *v = PyUnicode_DecodeUTF8(rep->text,
                                           (Py_ssize_t)rep->text_len,
                                           "replace");
        int rc = (k && v) ? PyDict_SetItem(c->result, k, v) : -1;
        Py_XDECREF(k);
        Py_XDECREF(v);
        return rc;
    }
    case MC_R_META:
        break;                  /* pymeta.c's meta_item takes its reply */
    }
    return 0;
}

PyObject *
mc_call_result_slow(struct mc_core *core, struct mc_call *c)
{
    PyObject *res = c->result;
    c->result = NULL;
    switch (c->rkind) {
    case MC_R_DECODED:
        if (res == NULL) {
            return Py_NewRef(c->dflt);
        }
        if (c->pending) {
            PyObject *v = mc_fast_unpickle(c->unpickle, res, c->rflags);
            if (v == NULL && !PyErr_Occurred()) {
                v = mc_call_decoder(c->decoder, c->hold.obj, res, c->rflags,
                                    c->dflt);
            }
            Py_DECREF(res);
            return v;
        }
        return res;
    case MC_R_STORE: {
        /* NOT_FOUND answers only cas. */
        static const char *const store_names[] = {
            "set", "add", "replace", "append", "prepend", "cas"};
        Py_XDECREF(res);
        PyErr_Format(core->state->ProtocolError,
                     "%s: NOT_FOUND in reply to %s",
                     core->eng.servers[c->server].name,
                     store_names[c->store]);
        return NULL;
    }
    case MC_R_STATS:
        return res != NULL ? res : PyDict_New();
    default:
        return res != NULL ? res : Py_NewRef(Py_None);
    }
}

/* ---- preparing single-key commands -------------------------------------- */

int
mc_prep_retrieve(struct mc_core *core, struct mc_call *c,
                 PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                 const char *cmd, bool with_cas, bool touch)
{
    static const char *const names_get[] = {"key", "with_flags", NULL};
    static const char *const names_gat[] = {"key", "exptime", "with_flags",
                                            NULL};
    PyObject *a[3] = {NULL, NULL, NULL};
    int64_t exptime = 0;
    mc_call_init(c, MC_X_VALUES, MC_R_GET);
    if (touch && mc_proxy_refuses(core, cmd) < 0) {
        return -1;
    }
    if (kwnames == NULL && nargs == 1 + touch) {
        a[0] = args[0];
        a[1] = touch ? args[1] : NULL;
    }
    else if (mc_parse_args(cmd, args, nargs, kwnames,
                           touch ? names_gat : names_get, 1 + touch,
                           1 + touch, a) < 0) {
        return -1;
    }
    if ((touch && mc_to_exptime(a[1], &exptime) < 0)
        || mc_to_bool(a[1 + touch], &c->with_flags) < 0
        || call_key(core, c, a[0]) < 0) {
        return -1;
    }
    c->with_cas = with_cas;
    if (core->eng.cfg.meta) {
        return meta_retrieve(core, c, with_cas, touch, exptime);
    }
    call_add(c, c->hdr, mc_fmt_get(c->hdr, cmd, touch, exptime, c->wk.key,
                                   c->wk.key_len));
    c->req.with_cas = with_cas;
    c->req.keys = (const char *)&c->wk;
    c->req.join = touch ? 0 : with_cas ? 4 : 3;  /* "gets", "get" */
    return 0;
}

int
mc_prep_get_decoded(struct mc_core *core, struct mc_call *c,
                    PyObject *const *args, Py_ssize_t nargs)
{
    mc_call_init(c, MC_X_VALUES, MC_R_DECODED);
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "get_decoded(key, default, decoder, unpickle=None) "
                        "takes 3 or 4 arguments");
        return -1;
    }
    if (call_key(core, c, args[0]) < 0) {
        return -1;
    }
    c->dflt = args[1];
    c->decoder = args[2];
    c->unpickle = nargs == 4 ? args[3] : NULL;
    c->with_flags = c->with_cas = false;
    if (core->eng.cfg.meta) {
        return meta_retrieve(core, c, false, false, 0);
    }
    call_add(c, c->hdr, mc_fmt_get(c->hdr, "get", false, 0, c->wk.key,
                                   c->wk.key_len));
    c->req.keys = (const char *)&c->wk;
    c->req.join = 3;
    return 0;
}

/* The request of a store whose key is in c: its header line, the value's
 * iovec (the bytes stay the caller's until the call is done), CRLF. */
static int
store_line(struct mc_core *core, struct mc_call *c, enum mc_store cmd,
           const char *val, size_t val_len, uint32_t flags, int64_t exptime,
           uint64_t cas)
{
    if (val_len > core->eng.cfg.max_value) {
        PyErr_Format(core->state->ValueTooLargeError,
                     "value of %zu bytes is larger than max_value_size "
                     "(%zu)", val_len, core->eng.cfg.max_value);
        return -1;
    }
    if (core->eng.cfg.meta) {
        static const enum mc_meta_mode modes[] = {
            [MC_ADD] = MC_MODE_ADD, [MC_REPLACE] = MC_MODE_REPLACE,
            [MC_APPEND] = MC_MODE_APPEND, [MC_PREPEND] = MC_MODE_PREPEND};
        struct mc_meta_request mr = {.cmd = MC_META_SET};
        mr.value_len = val_len;
        mr.flags = (flags ? MC_MF_CLIENT_FLAGS : 0)
                   | (exptime ? MC_MF_TTL : 0);
        mr.client_flags = flags;
        mr.ttl = (int32_t)exptime;
        if (cmd == MC_CAS) {
            mr.flags |= MC_MF_COMPARE_CAS;
            mr.cas = cas;
        }
        else if (cmd != MC_SET) {
            mr.flags |= MC_MF_MODE;
            mr.mode = modes[cmd];
        }
        if (call_meta(core, c, &mr, MC_AS_STORE) < 0) {
            return -1;
        }
    }
    else {
        call_add(c, c->hdr, mc_fmt_store(c->hdr, cmd, c->wk.key,
                                         c->wk.key_len, flags, exptime,
                                         val_len, cas, c->noreply));
    }
    if (val_len > 0) {
        call_add(c, val, val_len);
    }
    call_add(c, crlf, 2);
    c->retry_safe = cmd == MC_SET || cmd == MC_REPLACE;
    c->req.accept = 1u << MC_STORED | 1u << MC_NOT_STORED | 1u << MC_EXISTS
                    | 1u << MC_NOT_FOUND;
    return 0;
}

int
mc_prep_store(struct mc_core *core, struct mc_call *c, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames, enum mc_store cmd,
              const char *fname)
{
    static const char *const names[] = {"key", "value", "exptime", "flags",
                                        "noreply", NULL};
    static const char *const names_cas[] = {"key", "value", "cas", "exptime",
                                            "flags", "noreply", NULL};
    PyObject *a[6] = {NULL};
    bool is_cas = cmd == MC_CAS;
    PyObject **rest = a + 2 + is_cas;
    mc_call_init(c, MC_X_STATUS, MC_R_STORE);
    c->store = cmd;
    c->with_flags = c->with_cas = false;
    if (kwnames == NULL && nargs == 2 && !is_cas) {
        a[0] = args[0];
        a[1] = args[1];
    }
    else if (mc_parse_args(fname, args, nargs, kwnames,
                           is_cas ? names_cas : names, 2 + is_cas,
                           5 + is_cas, a) < 0) {
        return -1;
    }
    int64_t exptime;
    uint32_t flags;
    uint64_t cas = 0;
    if ((is_cas && mc_to_uint64(a[2], "cas", &cas) < 0)
        || mc_to_exptime(rest[0], &exptime) < 0
        || mc_to_flags(rest[1], &flags) < 0
        || mc_to_bool(rest[2], &c->noreply) < 0
        || call_key(core, c, a[0]) < 0) {
        return -1;
    }
    if (PyBytes_CheckExact(a[1])) {
        /* bytes (the common case) are read in place: immutable, and held
         * by the caller for the call */
        return store_line(core, c, cmd, PyBytes_AS_STRING(a[1]),
                          (size_t)PyBytes_GET_SIZE(a[1]), flags, exptime, cas);
    }
    if (mc_get_value(core->state, core->eng.cfg.max_value, a[1], &c->view)
        < 0) {
        return -1;
    }
    c->has_view = true;
    return store_line(core, c, cmd, c->view.buf, (size_t)c->view.len, flags,
                      exptime, cas);
}

int
mc_prep_store_raw(struct mc_core *core, struct mc_call *c, PyObject *key,
                  const char *val, size_t val_len, uint32_t flags,
                  PyObject *exptime, bool noreply)
{
    int64_t t;
    mc_call_init(c, MC_X_STATUS, MC_R_STORE);
    c->store = MC_SET;
    c->with_flags = c->with_cas = false;
    c->noreply = noreply;
    if (mc_to_exptime(exptime, &t) < 0 || call_key(core, c, key) < 0) {
        return -1;
    }
    return store_line(core, c, MC_SET, val, val_len, flags, t, 0);
}

int
mc_prep_delete(struct mc_core *core, struct mc_call *c,
               PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "noreply", NULL};
    PyObject *a[2];
    mc_call_init(c, MC_X_STATUS, MC_R_FOUND);
    if (mc_parse_args("delete", args, nargs, kwnames, names, 1, 2, a) < 0
        || mc_to_bool(a[1], &c->noreply) < 0 || call_key(core, c, a[0]) < 0) {
        return -1;
    }
    if (core->eng.cfg.meta) {
        struct mc_meta_request mr = {.cmd = MC_META_DELETE};
        return call_meta(core, c, &mr, MC_AS_DELETE);
    }
    call_add(c, c->hdr, mc_fmt_delete(c->hdr, c->wk.key, c->wk.key_len,
                                      c->noreply));
    c->req.accept = 1u << MC_DELETED | 1u << MC_NOT_FOUND;
    return 0;
}

int
mc_prep_arith(struct mc_core *core, struct mc_call *c, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames, bool decr)
{
    static const char *const names[] = {"key", "delta", "noreply", NULL};
    PyObject *a[3];
    uint64_t delta = 1;
    mc_call_init(c, MC_X_NUMBER, MC_R_NUMBER);
    if (mc_parse_args(decr ? "decr" : "incr", args, nargs, kwnames, names, 1,
                      3, a) < 0
        || (a[1] != NULL && mc_to_uint64(a[1], "delta", &delta) < 0)
        || mc_to_bool(a[2], &c->noreply) < 0 || call_key(core, c, a[0]) < 0) {
        return -1;
    }
    c->retry_safe = false;
    if (core->eng.cfg.meta) {
        /* noreply: no v (a quiet ma asks for no value) */
        struct mc_meta_request mr = {.cmd = MC_META_ARITH};
        mr.flags = MC_MF_DELTA | (c->noreply ? 0 : MC_MF_VALUE)
                   | (decr ? MC_MF_MODE : 0);
        mr.delta = delta;
        mr.mode = MC_MODE_DECR;
        return call_meta(core, c, &mr, MC_AS_ARITH);
    }
    call_add(c, c->hdr, mc_fmt_arith(c->hdr, decr, c->wk.key, c->wk.key_len,
                                     delta, c->noreply));
    return 0;
}

int
mc_prep_touch(struct mc_core *core, struct mc_call *c, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "exptime", "noreply", NULL};
    PyObject *a[3];
    int64_t exptime;
    mc_call_init(c, MC_X_STATUS, MC_R_FOUND);
    if (mc_parse_args("touch", args, nargs, kwnames, names, 2, 3, a) < 0
        || mc_to_exptime(a[1], &exptime) < 0
        || mc_to_bool(a[2], &c->noreply) < 0 || call_key(core, c, a[0]) < 0) {
        return -1;
    }
    if (core->eng.cfg.meta) {
        struct mc_meta_request mr = {.cmd = MC_META_GET};
        mr.flags = MC_MF_TTL;
        mr.ttl = (int32_t)exptime;
        return call_meta(core, c, &mr, MC_AS_TOUCH);
    }
    call_add(c, c->hdr, mc_fmt_touch(c->hdr, c->wk.key, c->wk.key_len,
                                     exptime, c->noreply));
    c->req.accept = 1u << MC_TOUCHED | 1u << MC_NOT_FOUND;
    return 0;
}

/* ---- commands sent to every server -------------------------------------- */

int
mc_prep_flush_all(struct mc_core *core, struct mc_all *a,
                  PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"delay", "noreply", NULL};
    PyObject *v[2];
    int64_t delay = 0;
    if (mc_proxy_refuses(core, "flush_all") < 0) {
        return -1;
    }
    if (mc_parse_args("flush_all", args, nargs, kwnames, names, 0, 2, v) < 0
        || (v[0] != NULL
            && mc_to_int64(v[0], "delay", 0, EXPTIME_MAX, &delay) < 0)
        || mc_to_bool(v[1], &a->noreply) < 0) {
        return -1;
    }
    size_t n = (size_t)snprintf(a->line, sizeof(a->line), "flush_all");
    if (delay > 0) {
        a->line[n++] = ' ';
        n += mc_fmt_i64(a->line + n, delay);
    }
    n += (size_t)snprintf(a->line + n, sizeof(a->line) - n, "%s\r\n",
                          a->noreply ? " noreply" : "");
    a->len = n;
    a->expect = MC_X_OK;
    a->rkind = MC_R_OK;
    a->as_list = false;
    return 0;
}

int
mc_prep_stats(struct mc_core *core, struct mc_all *a, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"args", NULL};
    PyObject *v[1];
    if (mc_proxy_refuses(core, "stats") < 0
        || mc_parse_args("get_stats", args, nargs, kwnames, names, 0, 1, v)
               < 0) {
        return -1;
    }
    const char *extra = "";
    Py_ssize_t extra_len = 0;
    if (v[0] != NULL && v[0] != Py_None) {
        if (mc_key_bytes(v[0], &extra, &extra_len) < 0) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < extra_len; i++) {
            unsigned char ch = (unsigned char)extra[i];
            if (ch < 0x20 || ch == 0x7f) {
                PyErr_SetString(PyExc_ValueError,
                                "stats arguments contain a control "
                                "character");
                return -1;
            }
        }
        if (extra_len > 200) {
            PyErr_SetString(PyExc_ValueError, "stats arguments too long");
            return -1;
        }
    }
    a->len = (size_t)snprintf(a->line, sizeof(a->line), "stats%s%.*s\r\n",
                              extra_len ? " " : "", (int)extra_len, extra);
    a->noreply = false;
    a->expect = MC_X_STATS;
    a->rkind = MC_R_STATS;
    a->as_list = true;
    return 0;
}

void
mc_prep_version(struct mc_all *a)
{
    a->len = (size_t)snprintf(a->line, sizeof(a->line), "version\r\n");
    a->noreply = false;
    a->expect = MC_X_VERSION;
    a->rkind = MC_R_VERSION;
    a->as_list = false;
}

int
mc_prep_config_get(struct mc_core *core, struct mc_all *a,
                   PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", NULL};
    PyObject *v[1] = {NULL};
    if (mc_proxy_refuses(core, "config get") < 0
        || mc_parse_args("config_get", args, nargs, kwnames, names, 1, 1, v)
               < 0) {
        return -1;
    }
    const char *key;
    Py_ssize_t key_len;
    if (mc_key_bytes(v[0], &key, &key_len) < 0) {
        return -1;
    }
    if (mc_key_check(key, (size_t)key_len) != MC_KEY_OK) {
        PyErr_SetString(PyExc_ValueError, "config_get: the key must be 1 to "
                        "250 bytes, none a space or a control character");
        return -1;
    }
    a->len = (size_t)snprintf(a->line, sizeof(a->line), "config get %.*s\r\n",
                              (int)key_len, key);
    a->noreply = false;
    a->expect = MC_X_CONFIG;
    a->rkind = MC_R_GET;
    a->as_list = false;
    return 0;
}

void
mc_all_call(const struct mc_all *a, struct mc_call *c, size_t i)
{
    mc_call_init(c, a->expect, a->rkind);
    c->with_flags = false;     /* config_get's MC_R_GET: the value alone */
    c->with_cas = false;
    c->server = i;
    c->noreply = a->noreply;
    call_add(c, a->line, a->len);
}

int
mc_all_add(struct mc_core *core, const struct mc_all *a, PyObject *acc,
           size_t i, PyObject *result)
{
    PyObject *name = PyTuple_GET_ITEM(core->names, (Py_ssize_t)i);
    int rc;
    if (a->as_list) {
        PyObject *pair = PyTuple_Pack(2, name, result);
        rc = pair ? PyList_Append(acc, pair) : -1;
        Py_XDECREF(pair);
    }
    else {
        rc = PyDict_SetItem(acc, name, result);
    }
    Py_DECREF(result);
    return rc;
}

/* ---- failures ----------------------------------------------------------- */

int
mc_proxy_refuses(struct mc_core *core, const char *cmd)
{
    if (!core->eng.cfg.proxy) {
        return 0;
    }
    PyErr_Format(core->state->ClientError, "%s is not supported through "
                 "twemproxy (it closes the connection on it)", cmd);
    return -1;
}

void
mc_attach_partial(PyObject *partial)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL
        && PyObject_SetAttrString(value, "partial", partial) < 0) {
        PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
}

static void
raise_errno(PyObject *type, int err, const char *name, const char *text)
{
    PyObject *msg = PyUnicode_FromFormat("%s: %s", name, text);
    if (msg == NULL) {
        return;
    }
    PyObject *exc = PyObject_CallFunction(type, "iO", err, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject(type, exc);
        Py_DECREF(exc);
    }
}

void
mc_raise_fail(struct mc_core *core, const struct mc_server *srv,
              const struct mc_fail *f)
{
    mc_state *st = core->state;
    const char *name = srv ? srv->name : "memcached";
    switch (f->code) {
    case MC_EOWNER:
        return;
    case MC_EDEAD: {
        char left[32];
        int64_t ns = srv ? mc_engine_hold_left(&core->eng,
                                               (size_t)(srv - core->eng.servers))
                         : 0;
        PyOS_snprintf(left, sizeof(left), "%.1f", (double)ns / MC_NS);
        PyErr_Format(st->ConnectionError, "%s: server marked dead after a "
                     "failure, retried in %s s", name, left);
        return;
    }
    case MC_EEOF:
        PyErr_Format(st->ConnectionError, "%s: connection closed by the "
                     "server", name);
        return;
    case MC_EAUTH:
        /* the server's answer only: the request is never shown */
        PyErr_Format(st->AuthenticationError, "%s: authentication failed%s%s",
                     name, f->text[0] ? ": " : "", f->text);
        return;
    case MC_ETLS:
        PyErr_Format(st->ConnectionError, "%s: TLS failed: %s", name,
                     f->text[0] ? f->text : "unknown reason");
        return;
    case MC_ENOSERVER:
        PyErr_SetString(st->ConnectionError,
                        "no live server for this key: every server it may "
                        "use is marked dead");
        return;
    case MC_ERESOLVE:
        PyErr_Format(st->ConnectionError, "%s: %s", name,
                     gai_strerror(f->gai));
        return;
    case MC_EBADREPLY:
        PyErr_Format(st->ProtocolError, "%s: malformed reply%s%s", name,
                     f->text[0] ? ": " : "", f->text);
        return;
    case MC_EVALUE:
        PyErr_Format(st->ProtocolError, "%s: reply value larger than "
                     "max_value_size (%zu)", name, core->eng.cfg.max_value);
        return;
    case MC_EREPLY:
        if (f->kind == MC_SERVER_ERROR) {
            PyErr_Format(st->ServerError, "%s", f->text);
        }
        else if (f->kind == MC_CLIENT_ERROR) {
            PyErr_Format(st->ClientError, "%s", f->text);
        }
        else {
            PyErr_Format(st->ClientError, "ERROR%s%s",
                         f->text[0] ? " " : "", f->text);
        }
        return;
    case -ENOMEM:
        PyErr_NoMemory();
        return;
    case -ETIMEDOUT: {
        PyObject *exc = PyObject_CallFunction(st->TimeoutError, "is",
                                              ETIMEDOUT, "timed out");
        if (exc != NULL) {
            PyObject *msg = PyUnicode_FromFormat("%s: timed out", name);
            if (msg != NULL) {
                PyObject_SetAttrString(exc, "strerror", msg);
                Py_DECREF(msg);
            }
            PyErr_SetObject(st->TimeoutError, exc);
            Py_DECREF(exc);
        }
        return;
    }
    default:
        raise_errno(st->ConnectionError, -f->code, name, strerror(-f->code));
        return;
    }
}
