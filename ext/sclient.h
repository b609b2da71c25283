/* The StringClient object and the blocking driver it runs its calls with
 * (sdrive.c), shared by the type (sclient.c) and the Client fast paths
 * (pyclient.c). */
#ifndef CMEMCACHE_SCLIENT_H
#define CMEMCACHE_SCLIENT_H

#include "module.h"

#include <stdint.h>

#include "pycall.h"
#include "pymulti.h"

typedef struct {
    PyObject_HEAD
    PyObject *module;
    struct mc_core core;
    bool ready;                /* the engine is set up (dealloc frees it) */
} mc_sclient;

/* Runs a call: picks its server, sends its request, reads its reply.
 * Returns 0, or -1 with c->fail set (a Python exception too when
 * MC_EOWNER). */
int mc_sync_run_call(mc_sclient *self, struct mc_call *c);

/* Places the keys on their servers, takes the connections, sends, reads,
 * and returns the result (raising the first server's failure, with
 * .partial, if any failed). */
PyObject *mc_sync_run_multi(mc_sclient *self, struct mc_pymulti *pm);

/* Runs the same request on every server, collecting each result; raises
 * the first failure after trying all, with .partial set. */
PyObject *mc_sync_run_all(mc_sclient *self, const struct mc_all *a);

/* Reads what c is owed for noreply fences and a flush, until deadline (no
 * Python: called without the GIL). */
void mc_sync_drain_owed(struct mc_conn *c, int64_t deadline);

#endif
