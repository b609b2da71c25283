/* The commands of a Python client, prepared for the engine and turned back
 * into Python: a call's request line and iovecs and the reply it expects,
 * built from a method's arguments; the Python result built from the reply
 * items; the exception a failure becomes.  Shared by the blocking binding
 * (sclient.c) and any other that drives the same engine. */
#ifndef CMEMCACHE_PYCALL_H
#define CMEMCACHE_PYCALL_H

#include "module.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "pipe.h"
#include "pyargs.h"

/* Calls counted per command, for python-memcached's Client.stats. */
enum mc_call_kind {
    MC_CALL_GET, MC_CALL_GETS, MC_CALL_GAT, MC_CALL_GATS, MC_CALL_GET_MULTI,
    MC_CALL_GETS_MULTI, MC_CALL_SET, MC_CALL_ADD, MC_CALL_REPLACE,
    MC_CALL_APPEND, MC_CALL_PREPEND, MC_CALL_CAS, MC_CALL_SET_MULTI,
    MC_CALL_DELETE, MC_CALL_DELETE_MULTI, MC_CALL_INCR, MC_CALL_DECR,
    MC_CALL_TOUCH, MC_CALL_META_GET, MC_CALL_META_SET, MC_CALL_META_DELETE,
    MC_CALL_META_ARITH, MC_CALL_COUNT
};

extern const char *const mc_call_names[MC_CALL_COUNT];

/* What every client object holds, whatever drives it. */
struct mc_core {
    mc_state *state;
    struct mc_engine eng;
    PyObject *names;           /* tuple of the server strings */
    bool opaque;               /* meta requests carry O<n> (pipelined: the
                                * asyncio client), checked in the reply */
    uint32_t next_opaque;      /* the last n sent (under the GIL) */
    _Atomic uint64_t calls[MC_CALL_COUNT];
};

static inline void
mc_count(struct mc_core *core, enum mc_call_kind k)
{
    atomic_fetch_add_explicit(&core->calls[k], 1, memory_order_relaxed);
}

/* What a reply's items become. */
enum mc_result {
    MC_R_GET,        /* bytes, or a tuple with flags and/or cas; a miss: NULL */
    MC_R_DECODED,    /* python-memcached's plain flags decoded; others raw */
    MC_R_STORE,      /* True, False (NOT_STORED, EXISTS), None (NOT_FOUND) */
    MC_R_FOUND,      /* delete, touch: True, or False (NOT_FOUND) */
    MC_R_NUMBER,     /* incr, decr: the int, or None (NOT_FOUND) */
    MC_R_OK,         /* True */
    MC_R_VERSION,    /* the version text */
    MC_R_STATS,      /* {stat: value} */
    MC_R_META,       /* a meta command's result, built by pymeta.c from
                      * its reply (None when it built nothing) */
};

/* One command on one server (picked for a key, or given). */
struct mc_call {
    struct mc_req req;
    struct mc_wkey wk;
    struct mc_place place;
    struct mc_pyhold hold;     /* what the key was read from */
    bool keyed;                /* the server is picked for wk */
    size_t server;             /* otherwise this one */
    char hdr[MC_MAX_HEADER];
    struct iovec iov[3];
    int iovcnt;
    size_t len;                /* the bytes in iov */
    Py_buffer view;            /* a store's value, when has_view */
    bool has_view;
    bool noreply;
    bool retry_safe;           /* may be sent again on a fresh connection */
    enum mc_result rkind;
    enum mc_store store;       /* MC_R_STORE: which command */
    bool with_flags;
    bool with_cas;
    bool pending;              /* MC_R_DECODED: result is raw bytes */
    uint32_t rflags;           /* flags of a pending result */
    PyObject *result;          /* owned; NULL until set */
    PyObject *dflt;            /* get_decoded: the default, decoder, */
    PyObject *decoder;         /* unpickle (borrowed from the caller) */
    PyObject *unpickle;
    mc_state *mstate;          /* MC_R_META: the module's (MetaResult) */
    int mcmd;                  /* MC_R_META: enum mc_meta_cmd */
    uint32_t mflags;           /* MC_R_META: the MC_MF_* flags sent */
    struct mc_fail fail;       /* why it failed (MC_EOWNER: a Python
                                * exception is set) */
};

/* A meta request's key and token: base64 (b) for a key the text rules
 * refuse, when the client takes binary keys; O<n>, checked in the reply,
 * from a pipelining client. */
static inline void
mc_meta_key_token(struct mc_core *core, struct mc_call *c,
                  struct mc_meta_request *mr, bool token)
{
    if (core->eng.cfg.binary_keys
        && mc_key_check(mr->key, mr->key_len) != MC_KEY_OK) {
        mr->flags |= MC_MF_BASE64;
    }
    if (token && core->opaque) {
        mr->flags |= MC_MF_OPAQUE;
        mr->opaque = ++core->next_opaque;
        c->req.check_opaque = true;
        c->req.opaque = mr->opaque;
    }
}

/* Sets up a call expecting x, its result built as rk. */
void mc_call_init(struct mc_call *c, enum mc_expect x, enum mc_result rk);

/* Releases what a call holds (result, value view, key texts). */
static inline void
mc_call_release(struct mc_call *c)
{
    Py_CLEAR(c->result);
    if (c->has_view) {
        PyBuffer_Release(&c->view);
        c->has_view = false;
    }
    mc_pyhold_release(&c->hold);
}

PyObject *mc_call_result_slow(struct mc_core *core, struct mc_call *c);

/* The result of a call of kind rk that succeeded (a new reference), or
 * NULL with an exception set: NOT_FOUND answering a store other than cas
 * is a ProtocolError; get_decoded's raw values go to the decoder.  rk is
 * c->rkind, given as a constant where the caller knows it. */
static inline PyObject *
mc_call_result(struct mc_core *core, struct mc_call *c, enum mc_result rk)
{
    PyObject *res = c->result;
    switch (rk) {
    case MC_R_GET:
        c->result = NULL;
        return res != NULL ? res : Py_NewRef(Py_None);
    case MC_R_STORE:
        if (c->noreply) {
            break;
        }
        if (res == Py_None && c->store != MC_CAS) {
            return mc_call_result_slow(core, c);
        }
        c->result = NULL;
        return res;
    case MC_R_FOUND:
    case MC_R_OK:
        if (c->noreply || res == NULL) {
            break;
        }
        c->result = NULL;
        return res;
    case MC_R_NUMBER:
        /* noreply: the new value is unknown */
        c->result = NULL;
        return res != NULL ? res : Py_NewRef(Py_None);
    default:
        return mc_call_result_slow(core, c);
    }
    Py_CLEAR(c->result);
    return Py_NewRef(rk == MC_R_NUMBER ? Py_None : Py_True);
}

/* Each of these fills a call from a method's arguments (fast-call
 * convention).  Returns 0, or -1 with an exception set (release the call
 * either way). */
int mc_prep_retrieve(struct mc_core *core, struct mc_call *c,
                     PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames, const char *cmd, bool with_cas,
                     bool touch);
int mc_prep_get_decoded(struct mc_core *core, struct mc_call *c,
                        PyObject *const *args, Py_ssize_t nargs);
int mc_prep_store(struct mc_core *core, struct mc_call *c,
                  PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  enum mc_store cmd, const char *fname);
/* A set from values a serializing layer already has: the key object,
 * the value's bytes (the caller keeps them valid until the call is done),
 * flags, exptime (an int object, or NULL for 0). */
int mc_prep_store_raw(struct mc_core *core, struct mc_call *c, PyObject *key,
                      const char *val, size_t val_len, uint32_t flags,
                      PyObject *exptime, bool noreply);
int mc_prep_delete(struct mc_core *core, struct mc_call *c,
                   PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames);
int mc_prep_arith(struct mc_core *core, struct mc_call *c,
                  PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  bool decr);
int mc_prep_touch(struct mc_core *core, struct mc_call *c,
                  PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames);

/* The commands sent to every server: one call per server from a template
 * line (the call is set up for server i). */
struct mc_all {
    char line[MC_MAX_HEADER];  /* the longest: "config get" and a 250-byte key */
    size_t len;
    bool noreply;
    enum mc_expect expect;
    enum mc_result rkind;
    bool as_list;              /* [(name, result)] instead of {name: result} */
};

int mc_prep_flush_all(struct mc_core *core, struct mc_all *a,
                      PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames);
int mc_prep_stats(struct mc_core *core, struct mc_all *a,
                  PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames);
void mc_prep_version(struct mc_all *a);
/* "config get <key>" (ElastiCache's configuration endpoint): each server's
 * CONFIG value as bytes, or None. */
int mc_prep_config_get(struct mc_core *core, struct mc_all *a,
                       PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames);

/* Sets up c as server i's share of a. */
void mc_all_call(const struct mc_all *a, struct mc_call *c, size_t i);

/* Adds server i's result (stolen) to acc, a dict or list.  Returns 0 or -1
 * with an exception set. */
int mc_all_add(struct mc_core *core, const struct mc_all *a, PyObject *acc,
               size_t i, PyObject *result);

/* Raises the exception for a failure on srv (NULL: none in particular);
 * MC_EOWNER: the exception is already set. */
void mc_raise_fail(struct mc_core *core, const struct mc_server *srv,
                   const struct mc_fail *f);

/* Sets .partial on the exception being raised. */
void mc_attach_partial(PyObject *partial);

/* Refuses a command a proxy in front would answer by closing the
 * connection.  Returns -1 with ClientError set, 0 when allowed. */
int mc_proxy_refuses(struct mc_core *core, const char *cmd);

/* Reply item helpers shared with the multi-key calls. */
PyObject *mc_make_value(const struct mc_reply *r, bool with_flags,
                        bool with_cas);
PyObject *mc_decode_plain(const struct mc_reply *r, bool *pending);
PyObject *mc_fast_unpickle(PyObject *unpickle, PyObject *data,
                           uint32_t flags);
PyObject *mc_call_decoder(PyObject *decoder, PyObject *key, PyObject *data,
                          uint32_t flags, PyObject *dflt);

#endif
