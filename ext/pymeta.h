/* Meta commands (mg, ms, md, ma) of a Python client: a call prepared from
 * a method's arguments through meta.c's formatter, and the result built
 * from its one reply frame.  Shared by every driver, as pycall.h is. */
#ifndef CMEMCACHE_PYMETA_H
#define CMEMCACHE_PYMETA_H

#include "module.h"

#include "pycall.h"

/* Each fills c from a method's arguments (fast-call convention), every
 * argument checked and the request line formatted before anything is
 * sent.  Returns 0, or -1 with an exception set (release the call either
 * way).  The call's result kind is MC_R_META. */
int mc_prep_meta_get(struct mc_core *core, struct mc_call *c,
                     PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames);
int mc_prep_meta_set(struct mc_core *core, struct mc_call *c,
                     PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames);
int mc_prep_meta_delete(struct mc_core *core, struct mc_call *c,
                        PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames);
int mc_prep_meta_arith(struct mc_core *core, struct mc_call *c,
                       PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames);

/* The cmemcache.MetaResult type (a struct sequence), for the module. */
PyTypeObject *mc_meta_result_type_new(void);

/* The module that made type keeps freed results for reuse (the first one
 * to claim it: another's are freed as usual) ... */
void mc_meta_freelist_claim(PyTypeObject *type);
/* ... until it lets the type go: the kept results are freed. */
void mc_meta_freelist_release(PyTypeObject *type);

#endif
