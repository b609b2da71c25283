/* The module's state and exceptions, shared by the Python bindings
 * (module.c, and the types and helpers that raise its exceptions). */
#ifndef CMEMCACHE_MODULE_H
#define CMEMCACHE_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyTypeObject *client_type;
    PyTypeObject *client_base_type;
    PyTypeObject *aclient_type;
    PyTypeObject *aconn_type;
    PyTypeObject *acall_type;
    PyTypeObject *meta_result_type;  /* cmemcache.MetaResult */
    PyObject *get_running_loop;   /* asyncio's, for cmemcache.aio */
    PyObject *str_set_result;
    PyObject *str_running_loop;   /* 3.11: the thread dict's key of it */
    PyObject *Error;
    PyObject *ConnectionError;
    PyObject *TimeoutError;
    PyObject *ProtocolError;
    PyObject *ServerError;
    PyObject *ClientError;
    PyObject *InvalidKeyError;
    PyObject *ValueTooLargeError;
    PyObject *InvalidServerError;
    PyObject *AuthenticationError;
} mc_state;

/* A function for a PyType_Slot or PyModuleDef_Slot, whose pfunc is a void
 * pointer (the detour through uintptr_t keeps ISO C quiet). */
#define MC_SLOT(fn) ((void *)(uintptr_t)(fn))

extern PyType_Spec mc_client_spec;
extern PyType_Spec mc_client_base_spec;
extern PyType_Spec mc_aclient_spec;
extern PyType_Spec mc_aconn_spec;
extern PyType_Spec mc_acall_spec;
extern struct PyModuleDef mc_module_def;

static inline mc_state *
mc_get_state(PyObject *module)
{
    return (mc_state *)PyModule_GetState(module);
}

#endif
