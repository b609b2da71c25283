/* Python arguments to engine input (see pyargs.h): keys and their
 * placement, values, numbers, timeouts, and a client constructor's
 * arguments but its TLS ones (pytlsargs.c). */
#include "pyargs.h"

#include "meta.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

#define MC_NS 1000000000.0

int
mc_key_bytes(PyObject *key, const char **p, Py_ssize_t *n)
{
    if (PyBytes_Check(key)) {
        *p = PyBytes_AS_STRING(key);
        *n = PyBytes_GET_SIZE(key);
        return 0;
    }
    if (PyUnicode_Check(key)) {
        if (PyUnicode_IS_COMPACT_ASCII(key)) {
            /* ASCII text is its own UTF-8: no conversion, no cache */
            *p = (const char *)PyUnicode_DATA(key);
            *n = PyUnicode_GET_LENGTH(key);
            return 0;
        }
        *p = PyUnicode_AsUTF8AndSize(key, n);
        return *p == NULL ? -1 : 0;  /* lone surrogates cannot be sent */
    }
    PyErr_Format(PyExc_TypeError, "key must be bytes or str, not %.200s",
                 Py_TYPE(key)->tp_name);
    return -1;
}

int
mc_raise_key(mc_state *st, enum mc_key_status s, const char *p, Py_ssize_t n)
{
    static const char *const why[] = {
        [MC_KEY_EMPTY] = "key is empty",
        [MC_KEY_TOO_LONG] = "key is longer than 250 bytes",
        [MC_KEY_BAD_CHAR] = "key contains a space or control character",
    };
    PyObject *k = PyBytes_FromStringAndSize(p, n < 300 ? n : 300);
    if (k != NULL) {
        PyErr_Format(st->InvalidKeyError, "%s: %R", why[s], k);
        Py_DECREF(k);
    }
    return -1;
}

/* The first bucket of a (hash, key) tuple: Python's hash % nbuckets, for
 * ints of any size and sign, on the exact int (an int subclass's __mod__
 * could answer any bucket).  Returns -1 with an exception set. */
static Py_ssize_t
tuple_bucket(PyObject *hash, size_t nbuckets)
{
    Py_ssize_t nb = (Py_ssize_t)nbuckets;
    int overflow;
    long long h = PyLong_AsLongLongAndOverflow(hash, &overflow);
    if (!overflow) {
        if (h == -1 && PyErr_Occurred()) {
            return -1;
        }
        long long m = h % nb;
        return (Py_ssize_t)(m < 0 ? m + nb : m);
    }
    PyObject *h_exact = PyNumber_Index(hash);
    PyObject *n = h_exact ? PyLong_FromSsize_t(nb) : NULL;
    PyObject *m = n ? PyNumber_Remainder(h_exact, n) : NULL;
    Py_XDECREF(h_exact);
    Py_XDECREF(n);
    if (m == NULL) {
        return -1;
    }
    Py_ssize_t r = PyLong_AsSsize_t(m);
    Py_DECREF(m);
    if (r == -1 && PyErr_Occurred()) {
        return -1;
    }
    return r >= 0 && r < nb ? r : 0;
}

/* The whole key of a multi-key call's key with its key_prefix, as the key
 * of the single-key call it stands for, get(prefix + key): the prefix is
 * taken as the key's type (a str key: the prefix's text before it; any
 * other: bytes, prefix then key).  A new reference to its text, or NULL
 * with an exception set.  No Python code runs (plain str and bytes). */
static PyObject *
prefixed_text(PyObject *obj, const struct mc_wkey *wk)
{
    if (PyUnicode_Check(obj)) {
        PyObject *pre = PyUnicode_DecodeUTF8(wk->pre, (Py_ssize_t)wk->pre_len,
                                             "surrogateescape");
        PyObject *s = pre ? PyUnicode_Concat(pre, obj) : NULL;
        Py_XDECREF(pre);
        return s;
    }
    PyObject *b = PyBytes_FromStringAndSize(
        NULL, (Py_ssize_t)(wk->pre_len + wk->key_len));
    if (b == NULL) {
        return NULL;
    }
    memcpy(PyBytes_AS_STRING(b), wk->pre, wk->pre_len);
    memcpy(PyBytes_AS_STRING(b) + wk->pre_len, wk->key, wk->key_len);
    PyObject *s = PyObject_Str(b);
    Py_DECREF(b);
    return s;
}

/* The key as pymemcache's HashClient formats it with %s: a str as its
 * characters (each cut to 8 bits), anything else by str() (bytes: their
 * repr "b'...'"); with a multi-key call's key_prefix, the whole key's
 * (prefixed_text), so the key lands where the single-key call puts it.
 * Fills h->rtext unless the key's own bytes serve.  Returns 0, or -1 with
 * an exception set. */
static int
rendezvous_text(PyObject *obj, const struct mc_wkey *wk, struct mc_place *pl,
                struct mc_pyhold *h)
{
    if (wk->pre_len == 0 && PyUnicode_Check(obj)
        && PyUnicode_IS_COMPACT_ASCII(obj)) {
        pl->text = wk->key;     /* its characters are its bytes */
        pl->text_len = wk->key_len;
        return 0;
    }
    PyObject *s = wk->pre_len > 0 ? prefixed_text(obj, wk)
                  : PyUnicode_Check(obj) ? Py_NewRef(obj) : PyObject_Str(obj);
    if (s == NULL) {
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n > 1100) {
        n = 1100;
    }
    h->rtext = PyMem_Malloc((size_t)n + 1);
    if (h->rtext == NULL) {
        Py_DECREF(s);
        PyErr_NoMemory();
        return -1;
    }
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        h->rtext[i] = (char)(PyUnicode_READ(kind, data, i) & 0xff);
    }
    Py_DECREF(s);
    pl->text = h->rtext;
    pl->text_len = (size_t)n;
    return 0;
}

/* str(hash) of a tuple key, held in h->text_obj (an int subclass's __str__
 * may run any code; the text is checked and kept).  Returns 0, 1 when it
 * is longer than 40 characters (it finds no server), -1 with an exception
 * set. */
static int
hash_text(PyObject *hash, struct mc_pyhold *h, const char **p, size_t *n)
{
    PyObject *str = PyObject_Str(hash);
    if (str == NULL) {
        return -1;
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(str, &len);
    if (s == NULL) {
        Py_DECREF(str);
        return -1;
    }
    h->text_obj = str;
    *p = s;
    *n = (size_t)len;
    return len > 40 ? 1 : 0;
}

void
mc_pyhold_free(struct mc_pyhold *h)
{
    Py_CLEAR(h->text_obj);
    if (h->rtext != NULL) {
        PyMem_Free(h->rtext);
        h->rtext = NULL;
    }
}

/* Inlined into mc_pykey and mc_pykey_binary: a call between them would
 * cost a single-key command a frame of nine arguments. */
static Py_ALWAYS_INLINE inline int
pykey(mc_state *st, struct mc_engine *e, PyObject *obj, const char *pre,
      size_t pre_len, bool binary, struct mc_wkey *wk, struct mc_place *pl,
      struct mc_pyhold *h)
{
    PyObject *hash = NULL;
    h->obj = obj;
    h->text_obj = NULL;
    h->rtext = NULL;
    if (PyTuple_Check(obj)) {
        /* python-memcached's (hash_value, key): the int picks the server. */
        if (PyTuple_GET_SIZE(obj) != 2
            || !PyLong_Check(PyTuple_GET_ITEM(obj, 0))) {
            PyErr_SetString(PyExc_TypeError,
                            "a tuple key is (hash_value: int, key)");
            goto fail;
        }
        hash = PyTuple_GET_ITEM(obj, 0);
        obj = PyTuple_GET_ITEM(obj, 1);
    }
    const char *kp;
    Py_ssize_t kn;
    if (mc_key_bytes(obj, &kp, &kn) < 0) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeError)) {
            PyErr_Clear();
            PyErr_Format(st->InvalidKeyError,
                         "key cannot be encoded as UTF-8: %R", obj);
        }
        goto fail;
    }
    wk->pre = pre;
    wk->pre_len = pre_len;
    wk->key = kp;
    wk->key_len = (size_t)kn;
    if (binary && (kn == 0 || kn > MC_META_MAX_B64_KEY)) {
        PyObject *k = PyBytes_FromStringAndSize(kp, kn < 300 ? kn : 300);
        if (k != NULL) {
            PyErr_Format(st->InvalidKeyError,
                         kn == 0 ? "key is empty: %R"
                                 : "binary key is longer than 186 bytes: %R",
                         k);
            Py_DECREF(k);
        }
        goto fail;
    }
    enum mc_key_status s = binary ? MC_KEY_OK : mc_key_check(kp, (size_t)kn);
    if (s == MC_KEY_OK && pre_len + (size_t)kn > MC_MAX_KEY) {
        s = MC_KEY_TOO_LONG;
    }
    if (s == MC_KEY_OK && pre_len > 0 && e->cfg.binary_keys
        && mc_key_check(pre, pre_len) != MC_KEY_OK) {
        s = MC_KEY_BAD_CHAR;    /* the joined key goes base64-encoded */
    }
    if (s == MC_KEY_BAD_CHAR && e->cfg.binary_keys) {
        if (pre_len + (size_t)kn > MC_META_MAX_B64_KEY) {
            PyObject *k = PyBytes_FromStringAndSize(kp, kn < 300 ? kn : 300);
            if (k != NULL) {
                PyErr_Format(st->InvalidKeyError,
                             "a key with a space or control character is "
                             "sent base64-encoded: at most 186 bytes, "
                             "prefix included: %R", k);
                Py_DECREF(k);
            }
            goto fail;
        }
        s = MC_KEY_OK;
    }
    if (s != MC_KEY_OK && !(s == MC_KEY_EMPTY && pre_len > 0)) {
        mc_raise_key(st, s, kp, kn);
        goto fail;
    }
    /* text and bucket are read only when set; hash_text with a bucket */
    pl->wk = wk;
    pl->text = NULL;
    pl->has_bucket = false;
    pl->nowhere = false;
    enum mc_distribution kind = e->dist.kind;
    if (hash != NULL) {
        pl->hash_text = NULL;
        if (kind == MC_DIST_PYTHON_MEMCACHED) {
            Py_ssize_t b = tuple_bucket(hash, e->dist.nbuckets);
            if (b < 0) {
                goto fail;
            }
            pl->has_bucket = true;
            pl->bucket = (size_t)b;
            if (e->cfg.failover == MC_FAILOVER_REHASH && e->nservers > 1) {
                int rc = hash_text(hash, h, &pl->hash_text,
                                   &pl->hash_text_len);
                if (rc < 0) {
                    goto fail;
                }
            }
        }
        else if (e->nservers > 1) {
            /* (hash, key): the server of str(hash), as if it were the key */
            int rc = hash_text(hash, h, &pl->text, &pl->text_len);
            if (rc < 0) {
                goto fail;
            }
            pl->nowhere = rc > 0;  /* an absurd hash finds no server */
        }
    }
    else if (kind == MC_DIST_RENDEZVOUS && e->nservers > 1
             && rendezvous_text(obj, wk, pl, h) < 0) {
        goto fail;
    }
    return 0;

fail:
    mc_pyhold_release(h);
    return -1;
}

int
mc_pykey(mc_state *st, struct mc_engine *e, PyObject *obj, const char *pre,
         size_t pre_len, struct mc_wkey *wk, struct mc_place *pl,
         struct mc_pyhold *h)
{
    return pykey(st, e, obj, pre, pre_len, false, wk, pl, h);
}

int
mc_pykey_binary(mc_state *st, struct mc_engine *e, PyObject *obj,
                struct mc_wkey *wk, struct mc_place *pl, struct mc_pyhold *h)
{
    return pykey(st, e, obj, "", 0, true, wk, pl, h);
}

int
mc_check_prefix(mc_state *st, bool binary_keys, PyObject *obj,
                const char **p, Py_ssize_t *n)
{
    if (obj == NULL || obj == Py_None) {
        *p = "";
        *n = 0;
        return 0;
    }
    if (mc_key_bytes(obj, p, n) < 0) {
        return -1;
    }
    if (*n == 0) {
        return 0;
    }
    enum mc_key_status s = mc_key_check(*p, (size_t)*n);
    if (s == MC_KEY_BAD_CHAR && binary_keys) {
        return 0;               /* the length is checked with each key */
    }
    if (s != MC_KEY_OK) {
        return mc_raise_key(st, s, *p, *n);
    }
    return 0;
}

int
mc_to_int64(PyObject *obj, const char *what, int64_t lo, int64_t hi,
            int64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s out of range: %R", what, obj);
        return -1;
    }
    *out = v;
    return 0;
}

int
mc_to_uint64(PyObject *obj, const char *what, uint64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s out of range: %R", what, obj);
        }
        return -1;
    }
    *out = v;
    return 0;
}

int
mc_to_exptime(PyObject *obj, int64_t *out)
{
    if (obj == NULL) {
        *out = 0;
        return 0;
    }
    return mc_to_int64(obj, "exptime", EXPTIME_MIN, EXPTIME_MAX, out);
}

int
mc_to_flags(PyObject *obj, uint32_t *out)
{
    int64_t v = 0;
    if (obj != NULL && mc_to_int64(obj, "flags", 0, 0xffffffffLL, &v) < 0) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int
mc_to_bool(PyObject *obj, bool *out)
{
    if (obj == NULL) {
        *out = false;
        return 0;
    }
    int t = PyObject_IsTrue(obj);
    if (t < 0) {
        return -1;
    }
    *out = t != 0;
    return 0;
}

int
mc_to_ns(PyObject *obj, const char *what, double dflt, bool zero_ok,
         int64_t *out)
{
    double v = dflt;
    if (obj != NULL) {
        v = PyFloat_AsDouble(obj);
        if (v == -1.0 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (!(v > 0 || (zero_ok && v == 0)) || v > 1e9) {
        PyErr_Format(PyExc_ValueError, "%s must be %s 1e9 seconds", what,
                     zero_ok ? "0 ..." : "> 0 and <=");
        return -1;
    }
    *out = (int64_t)(v * MC_NS);
    return 0;
}

int
mc_get_value(mc_state *st, size_t max_value, PyObject *obj, Py_buffer *view)
{
    if (PyUnicode_Check(obj)) {
        PyErr_SetString(PyExc_TypeError,
                        "value must be bytes-like, not str (encode it)");
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if ((size_t)view->len > max_value) {
        PyErr_Format(st->ValueTooLargeError,
                     "value of %zd bytes is larger than max_value_size "
                     "(%zu)", view->len, max_value);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

int
mc_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames, const char *const *names, int nreq,
              int npos, PyObject **out)
{
    int total = 0;
    while (names[total] != NULL) {
        total++;
    }
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d positional arguments (%zd "
                     "given)", fname, npos, nargs);
        return -1;
    }
    for (int i = 0; i < total; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
            int i = 0;
            for (; i < total; i++) {
                if (PyUnicode_CompareWithASCIIString(kw, names[i]) == 0) {
                    break;
                }
            }
            if (i == total) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got an unexpected keyword argument '%U'",
                             fname, kw);
                return -1;
            }
            if (out[i] != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got multiple values for argument '%s'",
                             fname, names[i]);
                return -1;
            }
            out[i] = args[nargs + k];
        }
    }
    for (int i = 0; i < nreq; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

/* ---- constructor arguments ---------------------------------------------- */

struct named {
    const char *label;
    enum mc_distribution kind;
    enum mc_hash_fn hash;      /* the default key hash of a distribution */
};

static const struct named distributions[] = {
    {"python-memcached", MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160},
    {"ketama", MC_DIST_KETAMA, MC_HASH_MD5},
    {"libmemcached-ketama", MC_DIST_LIBMEMCACHED_KETAMA, MC_HASH_OAAT},
    {"modula", MC_DIST_MODULA, MC_HASH_OAAT},
    {"rendezvous", MC_DIST_RENDEZVOUS, MC_HASH_MURMUR3},
    {NULL, 0, 0},
};

static const struct named hashes[] = {
    {"python-memcached", 0, MC_HASH_PM160},
    {"python-memcached-1.59", 0, MC_HASH_PM},
    {"crc", 0, MC_HASH_PM160},
    {"crc32", 0, MC_HASH_CRC32},
    {"one_at_a_time", 0, MC_HASH_OAAT},
    {"md5", 0, MC_HASH_MD5},
    {"murmur3", 0, MC_HASH_MURMUR3},
    {NULL, 0, 0},
};

static const struct named *
find_named(const struct named *table, const char *label)
{
    for (; table->label != NULL; table++) {
        if (strcmp(table->label, label) == 0) {
            return table;
        }
    }
    return NULL;
}

/* Which key hashes each distribution takes (a mask of 1 << mc_hash_fn). */
static unsigned
hashes_allowed(enum mc_distribution kind)
{
    switch (kind) {
    case MC_DIST_PYTHON_MEMCACHED:
        return 1u << MC_HASH_PM | 1u << MC_HASH_PM160 | 1u << MC_HASH_CRC32;
    case MC_DIST_KETAMA:
        return 1u << MC_HASH_MD5;
    case MC_DIST_LIBMEMCACHED_KETAMA:
        return 1u << MC_HASH_OAAT | 1u << MC_HASH_MD5;
    case MC_DIST_MODULA:
        return 1u << MC_HASH_OAAT | 1u << MC_HASH_PM160 | 1u << MC_HASH_MD5;
    case MC_DIST_RENDEZVOUS:
        return 1u << MC_HASH_MURMUR3;
    }
    return 0;
}

/* The bytes of a username or password argument (str as UTF-8, or
 * bytes).  No message ever shows the value. */
static int
auth_bytes(PyObject *obj, const char *what, const char **p, Py_ssize_t *n)
{
    if (PyBytes_Check(obj)) {
        *p = PyBytes_AS_STRING(obj);
        *n = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be str or bytes, not %.200s",
                     what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    *p = PyUnicode_AsUTF8AndSize(obj, n);
    if (*p == NULL) {
        /* the UnicodeEncodeError would carry the whole text */
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s is not encodable as UTF-8", what);
        return -1;
    }
    return 0;
}

/* username= and password= (both or neither; None is not given) to the
 * authentication request in cfg, checked before anything connects. */
static int
parse_auth(PyObject *username, PyObject *password, struct mc_config *cfg)
{
    cfg->auth = NULL;
    cfg->auth_len = 0;
    if (username == Py_None) {
        username = NULL;
    }
    if (password == Py_None) {
        password = NULL;
    }
    if (username == NULL && password == NULL) {
        return 0;
    }
    if (username == NULL || password == NULL) {
        PyErr_SetString(PyExc_TypeError, "username and password go "
                        "together: give both or neither");
        return -1;
    }
    const char *u, *pw;
    Py_ssize_t ulen, plen;
    if (auth_bytes(username, "username", &u, &ulen) < 0
        || auth_bytes(password, "password", &pw, &plen) < 0) {
        return -1;
    }
    const char *why = NULL;
    switch (mc_auth_check(u, (size_t)ulen, pw, (size_t)plen)) {
    case MC_AUTH_OK:
        break;
    case MC_AUTH_USER_EMPTY:
        why = "username must not be empty";
        break;
    case MC_AUTH_USER_TOO_LONG:
        why = "username must be at most 250 bytes";
        break;
    case MC_AUTH_USER_BAD_CHAR:
        why = "username must not hold a blank or control byte";
        break;
    case MC_AUTH_PASS_EMPTY:
        why = "password must not be empty";
        break;
    case MC_AUTH_PASS_TOO_LONG:
        why = "password must be at most 250 bytes";
        break;
    case MC_AUTH_PASS_BAD_CHAR:
        why = "password must not hold CR, LF or NUL";
        break;
    }
    if (why != NULL) {
        PyErr_SetString(PyExc_ValueError, why);
        return -1;
    }
    char req[MC_AUTH_REQ_MAX];
    size_t n = mc_fmt_auth(req, u, (size_t)ulen, pw, (size_t)plen);
    cfg->auth = malloc(n);
    if (cfg->auth == NULL) {
        mc_wipe(req, sizeof(req));
        PyErr_NoMemory();
        return -1;
    }
    memcpy(cfg->auth, req, n);
    mc_wipe(req, sizeof(req));
    cfg->auth_len = n;
    return 0;
}

int
mc_parse_client_args(mc_state *st, PyObject *args, PyObject *kwargs,
                     const char *type_name, struct mc_client_args *a)
{
    static char *kwlist[] = {"servers", "timeout", "connect_timeout",
                             "dead_retry", "max_value_size", "pool_size",
                             "noreply_fence", "distribution", "key_hash",
                             "failover", "flush_on_reconnect", "proxy",
                             "timeout_limit", "username", "password", "tls",
                             "tls_ca_file", "tls_certfile", "tls_keyfile",
                             "tls_keyfile_password", "tls_server_hostname",
                             "tls_verify", "tls_min_version",
                             "tls_max_version", "protocol", "binary_keys",
                             NULL};
    PyObject *servers, *timeout = NULL, *connect_timeout = NULL;
    PyObject *dead_retry = NULL, *username = NULL, *password = NULL;
    Py_ssize_t max_value = 1024 * 1024;
    int pool_size = 8, fence = 1, flush_on_reconnect = 0, timeout_limit = 3;
    int binary_keys = 0;
    const char *failover = "none", *hash = NULL, *proxy = NULL;
    const char *protocol = "text";
    const char *distribution = "python-memcached";
    char format[64];
    struct mc_tls_args tls = {0};
    PyOS_snprintf(format, sizeof(format), "O|$OOOnipszspziOOOOOOOOOOOsp:%s",
                  type_name);
    memset(a, 0, sizeof(*a));
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, kwlist, &servers,
                                     &timeout, &connect_timeout, &dead_retry,
                                     &max_value, &pool_size, &fence,
                                     &distribution, &hash, &failover,
                                     &flush_on_reconnect, &proxy,
                                     &timeout_limit, &username, &password,
                                     &tls.tls, &tls.ca_file, &tls.certfile,
                                     &tls.keyfile, &tls.password,
                                     &tls.hostname, &tls.verify,
                                     &tls.min_version, &tls.max_version,
                                     &protocol, &binary_keys)) {
        return -1;
    }
    struct mc_config *cfg = &a->cfg;
    cfg->fence = fence != 0;
    cfg->flush_on_reconnect = flush_on_reconnect != 0;
    if (timeout_limit < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout_limit must be >= 0");
        return -1;
    }
    cfg->timeout_limit = timeout_limit;
    if (proxy != NULL) {
        if (strcmp(proxy, "twemproxy") != 0) {
            PyErr_Format(PyExc_ValueError, "proxy must be None or "
                         "'twemproxy', not '%s'", proxy);
            return -1;
        }
        /* twemproxy closes the connection on "mn", gat, flush_all and
         * stats: no fence, and those calls refused before sending. */
        cfg->proxy = true;
        cfg->fence = false;
    }
    if (strcmp(protocol, "meta") == 0) {
        /* a quiet (noreply) meta command may still answer: only a fence
         * tells where its answer ends */
        if (cfg->proxy || !cfg->fence) {
            PyErr_SetString(PyExc_ValueError,
                            cfg->proxy ? "protocol='meta' does not go "
                                         "through twemproxy (it speaks no "
                                         "meta commands)"
                                       : "protocol='meta' needs "
                                         "noreply_fence=True");
            return -1;
        }
        cfg->meta = true;
    }
    else if (strcmp(protocol, "text") != 0) {
        PyErr_Format(PyExc_ValueError, "protocol must be 'text' or 'meta', "
                     "not '%s'", protocol);
        return -1;
    }
    if (binary_keys && !cfg->meta) {
        PyErr_SetString(PyExc_ValueError, "binary_keys=True needs "
                        "protocol='meta' (the text protocol cannot send "
                        "such keys)");
        return -1;
    }
    cfg->binary_keys = binary_keys != 0;
    const struct named *dist = find_named(distributions, distribution);
    if (dist == NULL) {
        PyErr_Format(PyExc_ValueError, "distribution must be "
                     "'python-memcached', 'ketama', 'libmemcached-ketama', "
                     "'modula' or 'rendezvous', not '%s'", distribution);
        return -1;
    }
    a->dist = dist->kind;
    a->hash = dist->hash;
    if (hash != NULL) {
        const struct named *h = find_named(hashes, hash);
        if (h == NULL || !(hashes_allowed(dist->kind) & (1u << h->hash))) {
            PyErr_Format(PyExc_ValueError, "key_hash '%s' does not go with "
                         "distribution '%s'", hash, distribution);
            return -1;
        }
        a->hash = h->hash;
    }
    if (strcmp(failover, "none") == 0) {
        cfg->failover = MC_FAILOVER_NONE;
    }
    else if (strcmp(failover, "rehash") == 0
             && dist->kind == MC_DIST_PYTHON_MEMCACHED) {
        cfg->failover = MC_FAILOVER_REHASH;
    }
    else if (strcmp(failover, "next") == 0
             && dist->kind != MC_DIST_PYTHON_MEMCACHED) {
        cfg->failover = MC_FAILOVER_NEXT;
    }
    else {
        PyErr_Format(PyExc_ValueError, "failover must be 'none', 'rehash' "
                     "(distribution 'python-memcached') or 'next' (the "
                     "others), not '%s'", failover);
        return -1;
    }
    if (mc_to_ns(timeout, "timeout", 1.0, false, &cfg->timeout) < 0
        || mc_to_ns(connect_timeout, "connect_timeout", 1.0, false,
                    &cfg->connect_timeout) < 0
        || mc_to_ns(dead_retry, "dead_retry", 30.0, true, &cfg->dead_retry)
               < 0) {
        return -1;
    }
    if (max_value < 1 || max_value > (1 << 30)) {
        PyErr_SetString(PyExc_ValueError,
                        "max_value_size must be 1 ... 2**30");
        return -1;
    }
    cfg->max_value = (size_t)max_value;
    if (pool_size < 0 || pool_size > 1024) {
        PyErr_SetString(PyExc_ValueError, "pool_size must be 0 ... 1024");
        return -1;
    }
    cfg->pool_size = pool_size;
    /* The server list is copied only now: the conversions above may have
     * run Python code (__index__, __float__) that changed it. */
    if (PyUnicode_Check(servers) || PyTuple_Check(servers)) {
        a->servers = PyTuple_Pack(1, servers);
    }
    else if (PyList_Check(servers)) {
        a->servers = PySequence_Tuple(servers);
    }
    else {
        PyErr_Format(PyExc_TypeError, "servers must be a str or a list, not "
                     "%.200s", Py_TYPE(servers)->tp_name);
        return -1;
    }
    if (a->servers == NULL) {
        return -1;
    }
    if (PyTuple_GET_SIZE(a->servers) == 0) {
        Py_CLEAR(a->servers);
        PyErr_SetString(st->InvalidServerError, "no servers given");
        return -1;
    }
    if (mc_parse_tls(&tls, &a->cfg) < 0) {
        Py_CLEAR(a->servers);
        return -1;
    }
    /* Last: nothing after it can fail, so the request is either owned by
     * a->cfg or was never made. */
    if (parse_auth(username, password, &a->cfg) < 0) {
        mc_client_args_release(a);
        return -1;
    }
    return 0;
}

void
mc_client_args_release(struct mc_client_args *a)
{
    Py_CLEAR(a->servers);
    mc_config_release(&a->cfg);
}

/* Parses one server argument (str, or (str, weight)) into server i. */
static int
parse_server(mc_state *st, struct mc_engine *e, size_t i, PyObject *obj,
             uint32_t *weight)
{
    PyObject *spec = obj;
    *weight = 1;
    if (PyTuple_Check(obj)) {
        if (PyTuple_GET_SIZE(obj) != 2) {
            PyErr_Format(PyExc_TypeError,
                         "a server is \"host:port\" or (\"host:port\", "
                         "weight), not %R", obj);
            return -1;
        }
        spec = PyTuple_GET_ITEM(obj, 0);
        PyObject *w = PyTuple_GET_ITEM(obj, 1);
        if (!PyLong_Check(w)) {
            PyErr_Format(PyExc_TypeError, "server weight must be an int, "
                         "not %.200s", Py_TYPE(w)->tp_name);
            return -1;
        }
        long wv = PyLong_AsLong(w);
        if (wv == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (wv < 1 || wv > 1000) {
            PyErr_Format(st->InvalidServerError,
                         "server weight must be 1..1000: %R", obj);
            return -1;
        }
        *weight = (uint32_t)wv;
    }
    if (!PyUnicode_Check(spec)) {
        PyErr_Format(PyExc_TypeError, "a server is a str, not %.200s",
                     Py_TYPE(spec)->tp_name);
        return -1;
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(spec, &len);
    if (s == NULL) {
        return -1;
    }
    int rc = mc_engine_set_server(e, i, s, (size_t)len);
    if (rc == -ENOMEM) {
        PyErr_NoMemory();
        return -1;
    }
    if (rc < 0) {
        PyErr_Format(st->InvalidServerError, "malformed server: %R", spec);
        return -1;
    }
    return 0;
}

int
mc_engine_from_args(mc_state *st, struct mc_engine *e,
                    const struct mc_client_args *a, PyObject **names)
{
    Py_ssize_t n = PyTuple_GET_SIZE(a->servers);
    *names = NULL;
    if (mc_engine_init(e, &a->cfg, (size_t)n) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t *weights = PyMem_Calloc((size_t)n, sizeof(uint32_t));
    *names = PyTuple_New(n);
    if (weights == NULL || *names == NULL) {
        PyMem_Free(weights);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (parse_server(st, e, (size_t)i, PyTuple_GET_ITEM(a->servers, i),
                         &weights[i]) < 0) {
            PyMem_Free(weights);
            return -1;
        }
        PyObject *name = PyUnicode_FromString(e->servers[i].name);
        if (name == NULL) {
            PyMem_Free(weights);
            return -1;
        }
        PyTuple_SET_ITEM(*names, i, name);
    }
#ifdef MC_HAVE_TLS
    for (size_t i = 0; a->cfg.tls != NULL && i < e->nservers; i++) {
        if (e->servers[i].spec.family == MC_UNIX) {
            PyMem_Free(weights);
            PyErr_Format(PyExc_ValueError, "tls=True: %s is a unix socket "
                         "(memcached serves TLS on TCP only)",
                         e->servers[i].name);
            return -1;
        }
        e->servers[i].tls_slot = mc_tls_session_new();
        if (e->servers[i].tls_slot == NULL) {
            PyMem_Free(weights);
            PyErr_NoMemory();
            return -1;
        }
    }
#endif
    int rc = mc_engine_build(e, a->dist, a->hash, weights);
    PyMem_Free(weights);
    if (rc < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* ---- discovery= ---------------------------------------------------------- */

int
mc_discovery_handoff(PyTypeObject *type, PyObject *args, PyObject *kwargs,
                     const char *factory, PyObject **made)
{
    static const char *const names[] = {"discovery", "discovery_interval"};
    if (kwargs == NULL) {
        return 0;
    }
    int named = 0;
    for (size_t i = 0; named == 0 && i < sizeof(names) / sizeof(names[0]);
         i++) {
        PyObject *name = PyUnicode_FromString(names[i]);
        if (name == NULL) {
            return -1;
        }
        named = PyDict_Contains(kwargs, name);
        Py_DECREF(name);
    }
    if (named <= 0) {
        return named;
    }
    PyObject *mod = PyImport_ImportModule("cmemcache._dstring");
    if (mod == NULL) {
        return -1;
    }
    *made = PyObject_CallMethod(mod, factory, "OOO", (PyObject *)type, args,
                                kwargs);
    Py_DECREF(mod);
    return *made != NULL ? 1 : -1;
}
