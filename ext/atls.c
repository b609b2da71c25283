/* The TLS methods of cmemcache.aio's client, for aio.py's connector: a
 * TLS connection on the connector's new socket, held in a capsule until
 * _attach hands it to the driver; its non-blocking handshake, send and
 * receive; why it failed.  Built without OpenSSL, _tls_new gives None. */
#include "aclient.h"

#include <errno.h>
#include <string.h>

#include "tls.h"

#define TLS_CAPSULE "cmemcache.aio TLS connection"

/* A capsule's TLS connection, or NULL with an exception set (also once
 * _attach took it). */
struct mc_tls *
mc_atls_capsule(PyObject *cap)
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
PyObject *
mc_atls_new(mc_aclient *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_tls_new(server, fd)");
        return NULL;
    }
    Py_ssize_t s;
    int fd;
    if (mc_aclient_server_fd(self, args, &s, &fd) < 0) {
        return NULL;
    }
#ifdef MC_HAVE_TLS
    struct mc_engine *e = &self->core.eng;
    if (e->cfg.tls == NULL) {
        Py_RETURN_NONE;
    }
    struct mc_server *srv = &e->servers[s];
    struct mc_tls *t = mc_tls_new(e->cfg.tls, fd, srv->spec.host,
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
PyObject *
mc_atls_handshake(mc_aclient *Py_UNUSED(self), PyObject *cap)
{
    struct mc_tls *t = mc_atls_capsule(cap);
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
PyObject *
mc_atls_send(mc_aclient *Py_UNUSED(self), PyObject *const *args,
             Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_tls_send(tls, bytes)");
        return NULL;
    }
    struct mc_tls *t = mc_atls_capsule(args[0]);
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
PyObject *
mc_atls_recv(mc_aclient *Py_UNUSED(self), PyObject *const *args,
             Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_tls_recv(tls, n)");
        return NULL;
    }
    struct mc_tls *t = mc_atls_capsule(args[0]);
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
PyObject *
mc_atls_why(mc_aclient *Py_UNUSED(self), PyObject *cap)
{
    struct mc_tls *t = mc_atls_capsule(cap);
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

/* _tls_resume_refused(tls) -> bool: its handshake failed because the server
 * refused the saved session it offered (the slot offers none any more). */
PyObject *
mc_atls_resume_refused(mc_aclient *Py_UNUSED(self), PyObject *cap)
{
    struct mc_tls *t = mc_atls_capsule(cap);
    if (t == NULL) {
        return NULL;
    }
#ifdef MC_HAVE_TLS
    return PyBool_FromLong(mc_tls_resume_failed(t));
#else
    Py_RETURN_FALSE;
#endif
}

/* _tls_code(tls, code) -> int: code as the driver reports it (_ETLS also
 * for a reset the TLS layer explains: a refused client certificate). */
PyObject *
mc_atls_code(mc_aclient *Py_UNUSED(self), PyObject *const *args,
             Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_tls_code(tls, code)");
        return NULL;
    }
    struct mc_tls *t = mc_atls_capsule(args[0]);
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
