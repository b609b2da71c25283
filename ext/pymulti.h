/* The multi-key commands of a Python client: prepared from a method's
 * arguments (the call owns a reference to every key and value it reads),
 * their reply items turned into the result dict or list, and what the
 * servers ended with turned into a result or an exception with .partial.
 * Shared by every binding that drives the engine. */
#ifndef CMEMCACHE_PYMULTI_H
#define CMEMCACHE_PYMULTI_H

#include "module.h"

#include "multi.h"
#include "pycall.h"

struct mc_pymulti {
    struct mc_multi m;
    struct mc_pyhold *holds;   /* the key objects, one per item */
    bool texts;                /* a hold has a placement text to free */
    PyObject *seq;             /* a tuple of the keys (or of the pairs) */
    PyObject **held;           /* set_multi from a dict: keys and values */
    Py_ssize_t nheld;
    Py_buffer *views;          /* set_multi values that are not bytes */
    Py_ssize_t nviews;
    bool with_flags;
    bool decoding;             /* get_multi_decoded */
    PyObject *result;          /* dict (get), list (set), bool (delete) */
    PyObject *pending;         /* decoding: [(key, data, flags)] */
    PyObject *decoder;         /* decoding: borrowed from the caller */
    PyObject *omit;
    PyObject *unpickle;
};

int mc_prep_get_multi(struct mc_core *core, struct mc_pymulti *pm,
                      PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *fname, bool with_cas);
int mc_prep_get_multi_decoded(struct mc_core *core, struct mc_pymulti *pm,
                              PyObject *const *args, Py_ssize_t nargs);
int mc_prep_set_multi(struct mc_core *core, struct mc_pymulti *pm,
                      PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames);
int mc_prep_delete_multi(struct mc_core *core, struct mc_pymulti *pm,
                         PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames);

/* Records the items that no live server takes, after mc_multi_place (a
 * set_multi key as not stored, a delete_multi as failed).  Returns 0 or -1
 * with an exception set. */
int mc_pymulti_unplaced(struct mc_pymulti *pm);

/* The result after the call ran (the parts done): the keys of failed
 * servers recorded, pending values decoded; or NULL with the first
 * failure raised and .partial set. */
PyObject *mc_pymulti_result(struct mc_core *core, struct mc_pymulti *pm);

/* Releases everything (connections still held are closed). */
void mc_pymulti_release(struct mc_pymulti *pm);

#endif
