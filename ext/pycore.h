/* A client's servers and call counts as Python reads and sets them, for
 * every binding (see pycore.c). */
#ifndef CMEMCACHE_PYCORE_H
#define CMEMCACHE_PYCORE_H

#include "module.h"

#include "pycall.h"

/* server_index(key): the index of the server key goes to now. */
PyObject *mc_core_server_index(struct mc_core *core, PyObject *key);
/* hold_downs(): per server, the seconds it is still held down. */
PyObject *mc_core_hold_downs(struct mc_core *core);
/* dead_servers(): the indexes of the servers held down. */
PyObject *mc_core_dead_servers(struct mc_core *core);
/* mark_dead(index, seconds=None): holds a server down. */
PyObject *mc_core_mark_dead(struct mc_core *core, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames);
/* forget_dead(): every hold-down ends. */
PyObject *mc_core_forget_dead(struct mc_core *core);
/* call_counts(): calls made per command (those made at least once). */
PyObject *mc_core_call_counts(struct mc_core *core);
/* reset_call_counts(): the counts start again from zero. */
PyObject *mc_core_reset_call_counts(struct mc_core *core);

#endif
