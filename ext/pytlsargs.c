/* A client constructor's TLS arguments (tls=True and the tls_* ones) to
 * the client's TLS context (an mc_tls_ctx, built at once, so that a bad
 * file or password fails in the constructor); built without OpenSSL,
 * tls=True raises NotImplementedError (see pyargs.h). */
#include "pyargs.h"

#include <string.h>

#include "tls.h"

#ifdef MC_HAVE_TLS
/* ssl.TLSVersion.TLSv1_2/TLSv1_3 (or MINIMUM_SUPPORTED/MAXIMUM_SUPPORTED:
 * no bound), "1.2" or "1.3", or None into *out (0: no bound). */
static int
tls_version(PyObject *obj, const char *what, int *out)
{
    *out = 0;
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    if (PyUnicode_Check(obj)) {
        const char *v = PyUnicode_AsUTF8(obj);
        if (v == NULL) {
            return -1;
        }
        if (strcmp(v, "1.2") == 0) {
            *out = MC_TLS_V1_2;
            return 0;
        }
        if (strcmp(v, "1.3") == 0) {
            *out = MC_TLS_V1_3;
            return 0;
        }
    }
    else if (PyLong_Check(obj) && !PyBool_Check(obj)) {
        /* ssl.TLSVersion is an IntEnum of the protocol's numbers */
        int overflow;
        long v = PyLong_AsLongAndOverflow(obj, &overflow);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (overflow == 0 && (v == MC_TLS_V1_2 || v == MC_TLS_V1_3)) {
            *out = (int)v;
            return 0;
        }
        if (overflow == 0 && (v == -2 || v == -1)) {
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "%s must be ssl.TLSVersion.TLSv1_2 or "
                 "TLSv1_3, \"1.2\" or \"1.3\", not %R", what, obj);
    return -1;
}

/* A file name (str, bytes or os.PathLike) or None into *out (a new bytes
 * object, or NULL). */
static int
tls_path(PyObject *obj, PyObject **out)
{
    *out = NULL;
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    return PyUnicode_FSConverter(obj, out) ? 0 : -1;
}

/* The text of a str or bytes argument without NUL, or None, into *out (a
 * new bytes object, or NULL). */
static int
tls_text(PyObject *obj, const char *what, PyObject **out)
{
    *out = NULL;
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    if (PyUnicode_Check(obj)) {
        *out = PyUnicode_AsUTF8String(obj);
    }
    else if (PyBytes_Check(obj)) {
        *out = Py_NewRef(obj);
    }
    else {
        PyErr_Format(PyExc_TypeError, "%s must be a str or bytes, not "
                     "%.200s", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (*out == NULL) {
        return -1;
    }
    if (strlen(PyBytes_AS_STRING(*out)) != (size_t)PyBytes_GET_SIZE(*out)) {
        Py_CLEAR(*out);
        PyErr_Format(PyExc_ValueError, "%s must not hold a NUL", what);
        return -1;
    }
    return 0;
}

static const char *
bytes_or_null(PyObject *b)
{
    return b == NULL ? NULL : PyBytes_AS_STRING(b);
}
#endif

/* The TLS arguments into cfg->tls (a context built now, so that a bad
 * file or password fails here, before anything connects; NULL without
 * tls=True).  Any tls_* argument other than None needs tls=True. */
int
mc_parse_tls(const struct mc_tls_args *t, struct mc_config *cfg)
{
    cfg->tls = NULL;
    bool on;
    if (t->tls != NULL && t->tls != Py_None) {
        if (mc_to_bool(t->tls, &on) < 0) {
            return -1;
        }
    }
    else {
        on = false;
    }
    static const char *const names[] = {
        "tls_ca_file", "tls_certfile", "tls_keyfile", "tls_keyfile_password",
        "tls_server_hostname", "tls_verify", "tls_min_version",
        "tls_max_version"};
    PyObject *const given[] = {t->ca_file, t->certfile, t->keyfile,
                               t->password, t->hostname, t->verify,
                               t->min_version, t->max_version};
    if (!on) {
        for (size_t i = 0; i < sizeof(given) / sizeof(given[0]); i++) {
            if (given[i] != NULL && given[i] != Py_None) {
                PyErr_Format(PyExc_ValueError, "%s needs tls=True",
                             names[i]);
                return -1;
            }
        }
        return 0;
    }
#ifndef MC_HAVE_TLS
    PyErr_SetString(PyExc_NotImplementedError,
                    "tls=True: this cmemcache was built without OpenSSL "
                    "(install OpenSSL 3's headers, e.g. libssl-dev, and "
                    "build again)");
    return -1;
#else
    struct mc_tls_config tc;
    mc_tls_config_init(&tc);
    bool verify = true;
    if (t->verify != NULL && t->verify != Py_None
        && mc_to_bool(t->verify, &verify) < 0) {
        return -1;
    }
    tc.verify = verify;
    if (tls_version(t->min_version, "tls_min_version", &tc.min_version) < 0
        || tls_version(t->max_version, "tls_max_version", &tc.max_version)
               < 0) {
        return -1;
    }
    if (tc.min_version != 0 && tc.max_version != 0
        && tc.min_version > tc.max_version) {
        PyErr_SetString(PyExc_ValueError,
                        "tls_min_version is above tls_max_version");
        return -1;
    }
    PyObject *ca = NULL, *cert = NULL, *key = NULL, *pw = NULL, *host = NULL;
    int rc = -1;
    if (tls_path(t->ca_file, &ca) < 0 || tls_path(t->certfile, &cert) < 0
        || tls_path(t->keyfile, &key) < 0
        || tls_text(t->password, "tls_keyfile_password", &pw) < 0
        || tls_text(t->hostname, "tls_server_hostname", &host) < 0) {
        goto done;
    }
    if (key != NULL && cert == NULL) {
        PyErr_SetString(PyExc_ValueError, "tls_keyfile needs tls_certfile");
        goto done;
    }
    if (pw != NULL && cert == NULL) {
        PyErr_SetString(PyExc_ValueError,
                        "tls_keyfile_password needs tls_certfile");
        goto done;
    }
    if (host != NULL && PyBytes_GET_SIZE(host) == 0) {
        PyErr_SetString(PyExc_ValueError,
                        "tls_server_hostname must not be empty");
        goto done;
    }
    tc.ca_file = bytes_or_null(ca);
    tc.cert_file = bytes_or_null(cert);
    tc.key_file = bytes_or_null(key);
    tc.password = bytes_or_null(pw);
    tc.server_hostname = bytes_or_null(host);
    char err[512];
    struct mc_tls_ctx *ctx;
    Py_BEGIN_ALLOW_THREADS
    ctx = mc_tls_ctx_new(&tc, err, sizeof(err));
    Py_END_ALLOW_THREADS
    if (ctx == NULL) {
        PyErr_Format(PyExc_ValueError, "TLS: %s", err);
        goto done;
    }
    cfg->tls = ctx;
    rc = 0;
done:
    if (pw != NULL && pw != t->password) {
        /* our own copy of a str password: wiped before it is freed */
        mc_wipe(PyBytes_AS_STRING(pw), (size_t)PyBytes_GET_SIZE(pw));
    }
    Py_XDECREF(ca);
    Py_XDECREF(cert);
    Py_XDECREF(key);
    Py_XDECREF(pw);
    Py_XDECREF(host);
    return rc;
#endif
}
