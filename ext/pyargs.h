/* Python arguments to engine input, for every binding: keys and their
 * server placement, values, numbers, flags, timeouts, server lists, the
 * constructor's arguments (its TLS ones in pytlsargs.c), and a minimal
 * fast-call argument parser.  Every function sets a Python exception when
 * it fails, and nothing is sent before all checks passed. */
#ifndef CMEMCACHE_PYARGS_H
#define CMEMCACHE_PYARGS_H

#include "module.h"

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

#define EXPTIME_MIN (-2147483647LL - 1)
#define EXPTIME_MAX 2147483647LL

/* What a key read from Python holds while its call runs, so that its
 * bytes stay valid whatever the caller does with the objects meanwhile. */
struct mc_pyhold {
    PyObject *obj;             /* the key as given (borrowed: the caller
                                * holds it for as long as the call runs) */
    PyObject *text_obj;        /* str(hash) of a tuple key, or NULL */
    char *rtext;               /* the rendezvous text (PyMem), or NULL */
};

/* Checks a key (bytes, str, or python-memcached's (hash, key) tuple) with
 * a prefix (from mc_check_prefix) for the wire, filling wk, and what picks
 * its server under e's distribution, filling place (place->wk = wk).
 * Returns 0, or -1 with an exception set (hold then holds nothing).
 * Release hold with mc_pyhold_release. */
int mc_pykey(mc_state *st, struct mc_engine *e, PyObject *obj,
             const char *pre, size_t pre_len, struct mc_wkey *wk,
             struct mc_place *place, struct mc_pyhold *hold);

/* mc_pykey for a binary key, sent base64 by the meta commands: any 1..186
 * bytes (MC_META_MAX_B64_KEY), no prefix; placed by its raw bytes, as the
 * server stores it. */
int mc_pykey_binary(mc_state *st, struct mc_engine *e, PyObject *obj,
                    struct mc_wkey *wk, struct mc_place *pl,
                    struct mc_pyhold *h);

void mc_pyhold_free(struct mc_pyhold *h);

static inline void
mc_pyhold_release(struct mc_pyhold *h)
{
    if (h->text_obj != NULL || h->rtext != NULL) {
        mc_pyhold_free(h);
    }
}

/* The bytes of a bytes or str key (ASCII str read in place).  Sets
 * TypeError for other types. */
int mc_key_bytes(PyObject *key, const char **p, Py_ssize_t *n);

/* Checks a key prefix (None or empty allowed; with binary_keys spaces and
 * control characters too, the length checked with each key). */
int mc_check_prefix(mc_state *st, bool binary_keys, PyObject *obj,
                    const char **p, Py_ssize_t *n);

/* Raises InvalidKeyError for a key that failed mc_key_check. */
int mc_raise_key(mc_state *st, enum mc_key_status s, const char *p,
                 Py_ssize_t n);

int mc_to_int64(PyObject *obj, const char *what, int64_t lo, int64_t hi,
                int64_t *out);
int mc_to_uint64(PyObject *obj, const char *what, uint64_t *out);
int mc_to_exptime(PyObject *obj, int64_t *out);
int mc_to_flags(PyObject *obj, uint32_t *out);
int mc_to_bool(PyObject *obj, bool *out);

/* Seconds (a float or int) to ns, default dflt when obj is NULL; must be
 * > 0 (or 0 with zero_ok) and at most 1e9. */
int mc_to_ns(PyObject *obj, const char *what, double dflt, bool zero_ok,
             int64_t *out);

/* A value: any bytes-like object except str, at most max_value bytes.
 * Fills view (release it with PyBuffer_Release). */
int mc_get_value(mc_state *st, size_t max_value, PyObject *obj,
                 Py_buffer *view);

/* Minimal fast-call argument parser.  names: every parameter name, NULL
 * terminated; the first npos may be given by position, the first nreq
 * must be given.  out[i] is NULL for an omitted one. */
int mc_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames, const char *const *names, int nreq,
                  int npos, PyObject **out);

/* The constructor arguments every client type takes. */
struct mc_client_args {
    struct mc_config cfg;
    enum mc_distribution dist;
    enum mc_hash_fn hash;
    PyObject *servers;         /* a tuple of the server arguments */
};

/* Parses StringClient(servers, *, timeout=..., ..., username=None,
 * password=None, tls=False, tls_*=None) into a (a->cfg.auth: the
 * authentication request, or NULL; a->cfg.tls: the TLS context, built
 * here so that bad files fail before anything connects, or NULL).
 * mc_engine_from_args takes a->cfg.auth and a->cfg.tls over; before that,
 * mc_client_args_release frees what a holds. */
int mc_parse_client_args(mc_state *st, PyObject *args, PyObject *kwargs,
                         const char *type_name, struct mc_client_args *a);

void mc_client_args_release(struct mc_client_args *a);

/* A client constructor called with discovery= or discovery_interval= is
 * handed to cmemcache._dstring's factory(type, args, kwargs), which makes
 * the client (ElastiCache discovery is policy in Python): *made is what
 * it returned.  Returns 1 when handed over, 0 when kwargs name neither
 * (or is NULL), -1 with an exception set. */
int mc_discovery_handoff(PyTypeObject *type, PyObject *args,
                         PyObject *kwargs, const char *factory,
                         PyObject **made);

/* The TLS arguments of the constructor, as given (NULL when omitted). */
struct mc_tls_args {
    PyObject *tls, *ca_file, *certfile, *keyfile, *password, *hostname;
    PyObject *verify, *min_version, *max_version;
};

/* The TLS arguments into cfg->tls (pytlsargs.c): the context, or NULL
 * without tls=True.  Returns 0, or -1 with an exception set
 * (NotImplementedError for tls=True when built without OpenSSL). */
int mc_parse_tls(const struct mc_tls_args *t, struct mc_config *cfg);

/* Sets up e from parsed arguments (e owns a->cfg.auth and a->cfg.tls
 * from then on, and makes each server's TLS session slot;
 * whatever happens); fills *names with a tuple of the server strings.  On
 * failure e can be freed. */
int mc_engine_from_args(mc_state *st, struct mc_engine *e,
                        const struct mc_client_args *a, PyObject **names);

#endif
