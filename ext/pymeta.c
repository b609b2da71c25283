/* Meta commands prepared from a method's arguments and their reply turned
 * into the method's result: mc_meta_fmt writes the request line, the
 * engine reads the one reply frame (MC_X_META), meta_item builds the
 * result (see pymeta.h). */
#include "pymeta.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "meta.h"
#include "pyargs.h"

static const char crlf[] = "\r\n";

/* ---- cmemcache.MetaResult ------------------------------------------------ */

enum {
    R_VALUE, R_FLAGS, R_CAS, R_TTL, R_SIZE, R_ACCESS, R_HIT, R_WIN, R_STALE,
    R_WON, R_NFIELDS
};

static PyStructSequence_Field result_fields[] = {
    {"value", "the value (bytes), or None when not asked (value=False)"},
    {"flags", "the client flags (int), or None when not asked"},
    {"cas", "the cas (int), or None when not asked"},
    {"ttl", "seconds left (int, -1: no expiry), or None when not asked"},
    {"size", "the value's size in bytes (int), or None when not asked"},
    {"last_access", "seconds since the last access (int), or None"},
    {"hit", "whether the item was read before (bool), or None"},
    {"win", "this client should recache the item (W)"},
    {"stale", "the item was marked stale by an invalidation (X)"},
    {"won", "another client already got the win (Z)"},
    {NULL, NULL},
};

static PyStructSequence_Desc result_desc = {
    "cmemcache.MetaResult",
    "What meta_get read: each attribute that was not asked is None.",
    result_fields,
    R_NFIELDS,
};

/* Results freed keep their memory here, for the next ones (as CPython's
 * tuples keep a free list): a result's allocation and release, and its
 * GC bookkeeping, cost as much as the rest of building it.  The list holds
 * objects of one MetaResult type, the first module's (free_type, borrowed:
 * mc_meta_freelist_release empties the list before that module lets its
 * type go); another interpreter's results are freed as usual.  Under the
 * GIL, as every use of a result is. */
#define FREE_MAX 16
static PyTypeObject *free_type;
static PyObject *free_list[FREE_MAX];
static int free_n;

void
mc_meta_freelist_claim(PyTypeObject *type)
{
    if (free_type == NULL) {
        free_type = type;
    }
}

void
mc_meta_freelist_release(PyTypeObject *type)
{
    if (type == NULL || type != free_type) {
        return;
    }
    while (free_n > 0) {
        PyObject_GC_Del(free_list[--free_n]);
    }
    free_type = NULL;
}

/* structseq_dealloc without its lookup of n_fields in the type's dict:
 * every MetaResult, made here or by the type's own constructor, holds
 * R_NFIELDS items. */
static void
result_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    for (int i = 0; i < R_NFIELDS; i++) {
        Py_XDECREF(((PyTupleObject *)op)->ob_item[i]);
    }
    if (tp == free_type && free_n < FREE_MAX) {
        /* untracked; its items are stale until new_result's caller sets
         * every one */
        free_list[free_n++] = op;
    }
    else {
        PyObject_GC_Del(op);
    }
    Py_DECREF(tp);              /* a heap type: each instance holds it */
}

PyTypeObject *
mc_meta_result_type_new(void)
{
    PyTypeObject *t = PyStructSequence_NewType(&result_desc);
    if (t != NULL) {
        t->tp_dealloc = result_dealloc;
        PyType_Modified(t);
    }
    return t;
}

/* ---- reply to result ----------------------------------------------------- */

static PyObject *
opt_uint(bool asked, uint64_t v)
{
    return asked ? PyLong_FromUnsignedLongLong(v) : Py_NewRef(Py_None);
}

/* What PyStructSequence_New does for a type whose fields are all visible,
 * as MetaResult's are, without its two lookups in the type's dict
 * (n_fields, n_sequence_fields: some 370 instructions a result). */
static PyObject *
new_result(PyTypeObject *type)
{
    if (type == free_type && free_n > 0) {
        /* what PyObject_GC_NewVar would have done but allocate: the type
         * reference and a fresh reference count (get_result sets every
         * item before anything can read one) */
        PyObject *op = free_list[--free_n];
        Py_INCREF(type);
        _Py_NewReference(op);
        return op;
    }
    PyTupleObject *t = PyObject_GC_NewVar(PyTupleObject, type, R_NFIELDS);
    if (t == NULL) {
        return NULL;
    }
    for (int i = 0; i < R_NFIELDS; i++) {
        t->ob_item[i] = NULL;
    }
    return (PyObject *)t;
}

static inline PyObject *
bool_ref(bool b)
{
    return Py_NewRef(b ? Py_True : Py_False);
}

static PyObject *
get_result(struct mc_call *c, const struct mc_meta_reply *rep)
{
    uint32_t asked = c->mflags;
    /* what was asked, whatever else a server sends */
    uint32_t has = rep->has & (MC_RF_WIN | MC_RF_STALE | MC_RF_WON
                               | (asked & MC_MF_RET_FLAGS ? MC_RF_FLAGS : 0)
                               | (asked & MC_MF_RET_CAS ? MC_RF_CAS : 0)
                               | (asked & MC_MF_RET_TTL ? MC_RF_TTL : 0)
                               | (asked & MC_MF_RET_SIZE ? MC_RF_SIZE : 0)
                               | (asked & MC_MF_RET_ACCESS ? MC_RF_ACCESS : 0)
                               | (asked & MC_MF_RET_HIT ? MC_RF_HIT : 0));
    PyObject *value = NULL;
    if ((asked & MC_MF_VALUE) && rep->kind == MC_META_VA) {
        value = PyBytes_FromStringAndSize(rep->value,
                                          (Py_ssize_t)rep->value_len);
        if (value == NULL) {
            return NULL;
        }
    }
    PyObject *t = new_result(c->mstate->meta_result_type);
    if (t == NULL) {
        Py_XDECREF(value);
        return NULL;
    }
    PyObject **item = ((PyTupleObject *)t)->ob_item;
    item[R_VALUE] = value != NULL ? value : Py_NewRef(Py_None);
    item[R_WIN] = bool_ref(has & MC_RF_WIN);
    item[R_STALE] = bool_ref(has & MC_RF_STALE);
    item[R_WON] = bool_ref(has & MC_RF_WON);
    if (!(has & ~(uint32_t)(MC_RF_WIN | MC_RF_STALE | MC_RF_WON))) {
        /* the value alone (meta_get(key)): every other field None */
        for (int i = R_FLAGS; i <= R_HIT; i++) {
            item[i] = Py_NewRef(Py_None);
        }
        return t;
    }
    item[R_FLAGS] = opt_uint(has & MC_RF_FLAGS, rep->client_flags);
    item[R_CAS] = opt_uint(has & MC_RF_CAS, rep->cas);
    item[R_TTL] = (has & MC_RF_TTL) ? PyLong_FromLongLong(rep->ttl)
                                    : Py_NewRef(Py_None);
    item[R_SIZE] = opt_uint(has & MC_RF_SIZE, rep->size);
    item[R_ACCESS] = opt_uint(has & MC_RF_ACCESS, rep->last_access);
    item[R_HIT] = (has & MC_RF_HIT) ? bool_ref(rep->hit)
                                    : Py_NewRef(Py_None);
    for (int i = R_FLAGS; i <= R_HIT; i++) {
        if (item[i] == NULL) {
            Py_DECREF(t);       /* result_dealloc skips the NULL items */
            return NULL;
        }
    }
    return t;
}

/* ma's value: the decimal number memcached sends. */
static PyObject *
arith_result(struct mc_call *c, const struct mc_meta_reply *rep)
{
    uint64_t n = 0;
    bool ok = rep->value_len > 0 && rep->value_len <= 20;
    for (size_t i = 0; ok && i < rep->value_len; i++) {
        unsigned d = (unsigned char)rep->value[i] - '0';
        ok = d <= 9 && n <= (UINT64_MAX - d) / 10;
        n = n * 10 + d;
    }
    if (!ok) {
        PyErr_Format(c->mstate->ProtocolError,
                     "ma: the reply's value is not a number: %.*s",
                     (int)(rep->value_len < 40 ? rep->value_len : 40),
                     rep->value);
        return NULL;
    }
    if (c->mflags & MC_MF_RET_CAS) {
        if (!(rep->has & MC_RF_CAS)) {
            PyErr_SetString(c->mstate->ProtocolError,
                            "ma: the reply has no cas");
            return NULL;
        }
        return Py_BuildValue("(KK)", (unsigned long long)n,
                             (unsigned long long)rep->cas);
    }
    return PyLong_FromUnsignedLongLong(n);
}

/* Takes the reply of a meta call (see mc_meta_fn); the kinds reaching it
 * are those its prep accepted. */
static int
meta_item(void *owner, struct mc_req *r, const struct mc_meta_reply *rep)
{
    struct mc_call *c = owner;
    PyObject *v = NULL;
    (void)r;
    switch ((enum mc_meta_cmd)c->mcmd) {
    case MC_META_GET:
        if (rep->kind == MC_META_EN) {
            return 0;           /* a miss: None */
        }
        v = get_result(c, rep);
        break;
    case MC_META_SET:
        if (rep->kind != MC_META_HD) {
            v = Py_NewRef(Py_False);
        }
        else if ((c->mflags & MC_MF_RET_CAS) && (rep->has & MC_RF_CAS)) {
            v = PyLong_FromUnsignedLongLong(rep->cas);
        }
        else if (c->mflags & MC_MF_RET_CAS) {
            PyErr_SetString(c->mstate->ProtocolError,
                            "ms: the reply has no cas");
        }
        else {
            v = Py_NewRef(Py_True);
        }
        break;
    case MC_META_DELETE:
        v = Py_NewRef(rep->kind == MC_META_HD ? Py_True : Py_False);
        break;
    case MC_META_ARITH:
        if (rep->kind == MC_META_NF) {
            return 0;           /* a miss: None */
        }
        v = arith_result(c, rep);
        break;
    default:
        return 0;
    }
    Py_XSETREF(c->result, v);
    return v == NULL ? -1 : 0;
}

/* ---- preparing ----------------------------------------------------------- */

/* Sets up c for a meta command (nothing formatted yet). */
static void
meta_init(struct mc_core *core, struct mc_call *c, enum mc_meta_cmd cmd,
          uint32_t accept)
{
    mc_call_init(c, MC_X_META, MC_R_META);
    c->req.on_item = NULL;
    c->req.on_meta = meta_item;
    c->req.accept = accept;
    c->mstate = core->state;
    c->mcmd = (int)cmd;
    c->mflags = 0;
    c->with_flags = c->with_cas = false;
}

/* A flag for a bool argument. */
static int
flag_arg(PyObject *obj, uint32_t bit, uint32_t *flags)
{
    bool on;
    if (mc_to_bool(obj, &on) < 0) {
        return -1;
    }
    if (on) {
        *flags |= bit;
    }
    return 0;
}

/* A TTL argument (None or absent: the flag is not sent). */
static int
ttl_arg(PyObject *obj, const char *what, uint32_t bit, uint32_t *flags,
        int32_t *out)
{
    int64_t v;
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    if (mc_to_int64(obj, what, INT32_MIN, INT32_MAX, &v) < 0) {
        return -1;
    }
    *out = (int32_t)v;
    *flags |= bit;
    return 0;
}

/* A cas to compare (None or absent: not sent). */
static int
cas_arg(PyObject *obj, uint32_t *flags, uint64_t *out)
{
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    if (mc_to_uint64(obj, "cas", out) < 0) {
        return -1;
    }
    *flags |= MC_MF_COMPARE_CAS;
    return 0;
}

/* A mode name among names (its letter the same index of letters). */
static int
mode_arg(PyObject *obj, const char *fname, const char *const *names,
         const char *letters, char *out)
{
    if (obj == NULL) {
        *out = letters[0];
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: mode must be a str, not %.200s",
                     fname, Py_TYPE(obj)->tp_name);
        return -1;
    }
    const char *s = PyUnicode_AsUTF8(obj);
    if (s == NULL) {
        return -1;
    }
    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = letters[i];
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "%s: unknown mode %R", fname, obj);
    return -1;
}

/* The key (last: every other argument is checked first), then the request
 * line into c->hdr.  What mc_meta_fmt refuses is a ValueError naming the
 * arguments, not the protocol's letters. */
static int
meta_line(struct mc_core *core, struct mc_call *c, const char *fname,
          PyObject *key, PyObject *binary, struct mc_meta_request *mr)
{
    bool bin;
    if (mc_to_bool(binary, &bin) < 0) {
        return -1;
    }
    c->keyed = true;
    int rc = bin ? mc_pykey_binary(core->state, &core->eng, key, &c->wk,
                                   &c->place, &c->hold)
                 : mc_pykey(core->state, &core->eng, key, "", 0, &c->wk,
                            &c->place, &c->hold);
    if (rc < 0) {
        return -1;
    }
    mr->key = c->wk.key;
    mr->key_len = c->wk.key_len;
    if (bin) {
        mr->flags |= MC_MF_BASE64;
    }
    mc_meta_key_token(core, c, mr, true);
    ssize_t n = mc_meta_fmt(c->hdr, mr);
    if (n < 0) {
        const char *why;
        switch (n) {
        case MC_META_EDEPENDS:
            why = mr->cmd == MC_META_SET      ? "invalidate=True needs cas="
                  : mr->cmd == MC_META_DELETE ? "ttl= needs invalidate=True"
                                              : "initial= needs vivify=";
            break;
        case MC_META_EVALUE_LEN:
            why = "the value is too long for the meta protocol";
            break;
        default:
            why = mc_meta_fmt_strerror(n);
            break;
        }
        if (n == MC_META_EKEY_EMPTY || n == MC_META_EKEY_TOO_LONG
            || n == MC_META_EKEY_BAD_CHAR) {
            PyErr_Format(core->state->InvalidKeyError, "%s: %s", fname, why);
        }
        else {
            PyErr_Format(PyExc_ValueError, "%s: %s", fname, why);
        }
        return -1;
    }
    c->iov[0].iov_base = c->hdr;
    c->iov[0].iov_len = (size_t)n;
    c->iovcnt = 1;
    c->len = (size_t)n;
    c->mflags = mr->flags;
    return 0;
}

static void
meta_request(struct mc_meta_request *mr, enum mc_meta_cmd cmd)
{
    memset(mr, 0, sizeof *mr);
    mr->cmd = cmd;
}

int
mc_prep_meta_get(struct mc_core *core, struct mc_call *c,
                 PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {
        "key", "value", "cas", "flags", "ttl", "size", "last_access", "hit",
        "no_bump", "touch", "vivify", "recache", "binary_key", NULL};
    static const uint32_t bits[] = {
        MC_MF_VALUE, MC_MF_RET_CAS, MC_MF_RET_FLAGS, MC_MF_RET_TTL,
        MC_MF_RET_SIZE, MC_MF_RET_ACCESS, MC_MF_RET_HIT, MC_MF_NO_BUMP};
    PyObject *a[13] = {NULL};
    struct mc_meta_request mr;
    meta_init(core, c, MC_META_GET, 1u << MC_META_VA | 1u << MC_META_HD
                                        | 1u << MC_META_EN);
    if (kwnames == NULL && nargs == 1) {
        /* meta_get(key): the value alone, every default.  Without an
         * opaque token or a base64 key mc_meta_fmt reads no more of the
         * request than its command, flags and key: the rest is left
         * unset. */
        if (core->opaque || core->eng.cfg.binary_keys) {
            meta_request(&mr, MC_META_GET);
        }
        mr.cmd = MC_META_GET;
        mr.flags = MC_MF_VALUE;
        return meta_line(core, c, "meta_get", args[0], NULL, &mr);
    }
    meta_request(&mr, MC_META_GET);
    if (mc_parse_args("meta_get", args, nargs, kwnames, names, 1, 1, a) < 0) {
        return -1;
    }
    mr.flags = a[1] == NULL ? MC_MF_VALUE : 0;  /* value=True */
    for (int i = 0; i < 8; i++) {
        if (flag_arg(a[1 + i], bits[i], &mr.flags) < 0) {
            return -1;
        }
    }
    if (ttl_arg(a[9], "touch", MC_MF_TTL, &mr.flags, &mr.ttl) < 0
        || ttl_arg(a[10], "vivify", MC_MF_VIVIFY, &mr.flags, &mr.vivify_ttl)
               < 0
        || ttl_arg(a[11], "recache", MC_MF_RECACHE, &mr.flags,
                   &mr.recache_ttl) < 0) {
        return -1;
    }
    /* a vivified item was never there: sending it again could lose the win */
    c->retry_safe = !(mr.flags & MC_MF_VIVIFY);
    return meta_line(core, c, "meta_get", a[0], a[12], &mr);
}

int
mc_prep_meta_set(struct mc_core *core, struct mc_call *c,
                 PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {
        "key", "value", "ttl", "flags", "cas", "mode", "invalidate",
        "return_cas", "binary_key", NULL};
    static const char *const modes[] = {"set", "add", "replace", "append",
                                        "prepend", NULL};
    PyObject *a[9] = {NULL};
    struct mc_meta_request mr;
    char mode;
    meta_init(core, c, MC_META_SET, 1u << MC_META_HD | 1u << MC_META_NS
                                        | 1u << MC_META_EX
                                        | 1u << MC_META_NF);
    meta_request(&mr, MC_META_SET);
    if (mc_parse_args("meta_set", args, nargs, kwnames, names, 2, 2, a) < 0) {
        return -1;
    }
    int32_t ttl = 0;
    if (ttl_arg(a[2], "ttl", MC_MF_TTL, &mr.flags, &ttl) < 0
        || mc_to_flags(a[3], &mr.client_flags) < 0
        || cas_arg(a[4], &mr.flags, &mr.cas) < 0
        || mode_arg(a[5], "meta_set", modes, "SERAP", &mode) < 0
        || flag_arg(a[6], MC_MF_INVALIDATE, &mr.flags) < 0
        || flag_arg(a[7], MC_MF_RET_CAS, &mr.flags) < 0) {
        return -1;
    }
    mr.ttl = ttl;
    if (ttl == 0) {
        mr.flags &= ~MC_MF_TTL;  /* 0 is memcached's default */
    }
    if (mr.client_flags != 0) {
        mr.flags |= MC_MF_CLIENT_FLAGS;
    }
    if (mode != 'S') {
        mr.flags |= MC_MF_MODE;
        mr.mode = (enum mc_meta_mode)mode;
    }
    const char *val;
    size_t val_len;
    if (PyBytes_CheckExact(a[1])) {
        /* read in place: immutable, held by the caller for the call */
        val = PyBytes_AS_STRING(a[1]);
        val_len = (size_t)PyBytes_GET_SIZE(a[1]);
        if (val_len > core->eng.cfg.max_value) {
            PyErr_Format(core->state->ValueTooLargeError,
                         "value of %zu bytes is larger than max_value_size "
                         "(%zu)", val_len, core->eng.cfg.max_value);
            return -1;
        }
    }
    else {
        if (mc_get_value(core->state, core->eng.cfg.max_value, a[1],
                         &c->view) < 0) {
            return -1;
        }
        c->has_view = true;
        val = c->view.buf;
        val_len = (size_t)c->view.len;
    }
    mr.value_len = val_len;
    c->retry_safe = (mode == 'S' || mode == 'R')
                    && !(mr.flags & MC_MF_COMPARE_CAS);
    if (meta_line(core, c, "meta_set", a[0], a[8], &mr) < 0) {
        return -1;
    }
    if (val_len > 0) {
        c->iov[c->iovcnt].iov_base = (void *)val;
        c->iov[c->iovcnt].iov_len = val_len;
        c->iovcnt++;
        c->len += val_len;
    }
    c->iov[c->iovcnt].iov_base = (void *)crlf;
    c->iov[c->iovcnt].iov_len = 2;
    c->iovcnt++;
    c->len += 2;
    return 0;
}

int
mc_prep_meta_delete(struct mc_core *core, struct mc_call *c,
                    PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    static const char *const names[] = {"key", "cas", "invalidate", "ttl",
                                        "binary_key", NULL};
    PyObject *a[5] = {NULL};
    struct mc_meta_request mr;
    meta_init(core, c, MC_META_DELETE, 1u << MC_META_HD | 1u << MC_META_NF
                                           | 1u << MC_META_EX);
    meta_request(&mr, MC_META_DELETE);
    if (mc_parse_args("meta_delete", args, nargs, kwnames, names, 1, 1, a)
            < 0
        || cas_arg(a[1], &mr.flags, &mr.cas) < 0
        || flag_arg(a[2], MC_MF_INVALIDATE, &mr.flags) < 0
        || ttl_arg(a[3], "ttl", MC_MF_TTL, &mr.flags, &mr.ttl) < 0) {
        return -1;
    }
    c->retry_safe = !(mr.flags & MC_MF_COMPARE_CAS);
    return meta_line(core, c, "meta_delete", a[0], a[4], &mr);
}

int
mc_prep_meta_arith(struct mc_core *core, struct mc_call *c,
                   PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "delta", "mode", "initial",
                                        "vivify", "ttl", "cas",
                                        "binary_key", NULL};
    static const char *const modes[] = {"incr", "decr", NULL};
    PyObject *a[8] = {NULL};
    struct mc_meta_request mr;
    char mode;
    meta_init(core, c, MC_META_ARITH, 1u << MC_META_VA | 1u << MC_META_NF);
    meta_request(&mr, MC_META_ARITH);
    mr.flags = MC_MF_VALUE;
    if (mc_parse_args("meta_arithmetic", args, nargs, kwnames, names, 1, 1,
                      a) < 0
        || (a[1] != NULL && mc_to_uint64(a[1], "delta", &mr.delta) < 0)
        || mode_arg(a[2], "meta_arithmetic", modes, "ID", &mode) < 0
        || (a[3] != NULL && a[3] != Py_None
            && mc_to_uint64(a[3], "initial", &mr.initial) < 0)
        || ttl_arg(a[4], "vivify", MC_MF_VIVIFY, &mr.flags, &mr.vivify_ttl)
               < 0
        || ttl_arg(a[5], "ttl", MC_MF_TTL, &mr.flags, &mr.ttl) < 0
        || flag_arg(a[6], MC_MF_RET_CAS, &mr.flags) < 0) {
        return -1;
    }
    if (a[1] != NULL && mr.delta != 1) {
        mr.flags |= MC_MF_DELTA;
    }
    if (a[3] != NULL && a[3] != Py_None) {
        mr.flags |= MC_MF_INITIAL;
    }
    if (mode == 'D') {
        mr.flags |= MC_MF_MODE;
        mr.mode = MC_MODE_DECR;
    }
    c->retry_safe = false;
    return meta_line(core, c, "meta_arithmetic", a[0], a[7], &mr);
}
