/* The _cmemcache module: state, exceptions, multi-phase initialisation. */
#include "module.h"

#include "conn.h"
#include "engine.h"
#include "pymeta.h"
#include "tls.h"

/* Creates cmemcache.<name> with the given bases and adds it to the module. */
static PyObject *
add_exception(PyObject *module, const char *name, PyObject *bases,
              const char *doc)
{
    char qualname[64];
    PyOS_snprintf(qualname, sizeof(qualname), "cmemcache.%s", name);
    PyObject *exc = PyErr_NewExceptionWithDoc(qualname, doc, bases, NULL);
    if (exc == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, name, exc) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

/* An exception deriving from Error and one builtin. */
static PyObject *
add_exception2(PyObject *module, const char *name, PyObject *error,
               PyObject *builtin, const char *doc)
{
    PyObject *bases = PyTuple_Pack(2, error, builtin);
    if (bases == NULL) {
        return NULL;
    }
    PyObject *exc = add_exception(module, name, bases, doc);
    Py_DECREF(bases);
    return exc;
}

static int
mc_exec(PyObject *module)
{
    mc_state *st = mc_get_state(module);
    mc_engine_global_init();

    st->Error = add_exception(module, "Error", PyExc_Exception,
                              "Base class of every cmemcache error.");
    if (st->Error == NULL) {
        return -1;
    }
    st->ConnectionError = add_exception2(
        module, "ConnectionError", st->Error, PyExc_ConnectionError,
        "The server could not be reached, or the connection broke.");
    st->TimeoutError = add_exception2(
        module, "TimeoutError", st->Error, PyExc_TimeoutError,
        "A connect or request deadline passed.");
    st->ProtocolError = add_exception2(
        module, "ProtocolError", st->Error, PyExc_Exception,
        "The server sent a reply outside the protocol; the connection was "
        "closed.");
    st->ServerError = add_exception2(
        module, "ServerError", st->Error, PyExc_Exception,
        "The server answered SERVER_ERROR.");
    st->ClientError = add_exception2(
        module, "ClientError", st->Error, PyExc_Exception,
        "The server answered CLIENT_ERROR or ERROR.");
    st->InvalidKeyError = add_exception2(
        module, "InvalidKeyError", st->Error, PyExc_ValueError,
        "A key is empty, too long or holds a space or control byte.");
    st->ValueTooLargeError = add_exception2(
        module, "ValueTooLargeError", st->Error, PyExc_ValueError,
        "A value is larger than max_value_size.");
    st->InvalidServerError = add_exception2(
        module, "InvalidServerError", st->Error, PyExc_ValueError,
        "A server string is malformed.");
    st->AuthenticationError = add_exception2(
        module, "AuthenticationError", st->Error, PyExc_Exception,
        "The server refused the username and password (memcached -Y); it "
        "is not held down as a dead server.");
    if (!st->ConnectionError || !st->TimeoutError || !st->ProtocolError
        || !st->ServerError || !st->ClientError || !st->InvalidKeyError
        || !st->ValueTooLargeError || !st->InvalidServerError
        || !st->AuthenticationError) {
        return -1;
    }

    st->client_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &mc_client_spec, NULL);
    if (st->client_type == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, st->client_type) < 0) {
        return -1;
    }
    st->client_base_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &mc_client_base_spec, NULL);
    if (st->client_base_type == NULL
        || PyModule_AddType(module, st->client_base_type) < 0) {
        return -1;
    }
    st->aclient_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &mc_aclient_spec, NULL);
    st->aconn_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &mc_aconn_spec, NULL);
    st->acall_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &mc_acall_spec, NULL);
    if (st->aclient_type == NULL || st->aconn_type == NULL
        || st->acall_type == NULL
        || PyModule_AddType(module, st->aclient_type) < 0
        || PyModule_AddType(module, st->acall_type) < 0) {
        return -1;
    }
    st->meta_result_type = mc_meta_result_type_new();
    if (st->meta_result_type == NULL
        || PyModule_AddType(module, st->meta_result_type) < 0) {
        return -1;
    }
    mc_meta_freelist_claim(st->meta_result_type);
    PyObject *events = PyImport_ImportModule("asyncio.events");
    if (events == NULL) {
        return -1;
    }
    st->get_running_loop = PyObject_GetAttrString(events, "get_running_loop");
    Py_DECREF(events);
    st->str_set_result = PyUnicode_InternFromString("set_result");
    st->str_running_loop =
        PyUnicode_InternFromString("__asyncio_running_event_loop__");
    if (st->get_running_loop == NULL || st->str_set_result == NULL
        || st->str_running_loop == NULL) {
        return -1;
    }
    if (PyModule_AddIntConstant(module, "MAX_KEY_LENGTH", 250) < 0
        || PyModule_AddIntConstant(module, "_EAUTH", MC_EAUTH) < 0
        || PyModule_AddIntConstant(module, "_ETLS", MC_ETLS) < 0
        || PyModule_AddIntConstant(module, "_EEOF", MC_EEOF) < 0
        || PyModule_AddIntConstant(module, "_TLS_WANT_READ",
                                   MC_TLS_WANT_READ) < 0
        || PyModule_AddIntConstant(module, "_TLS_WANT_WRITE",
                                   MC_TLS_WANT_WRITE) < 0) {
        return -1;
    }
    return 0;
}

static int
mc_traverse(PyObject *module, visitproc visit, void *arg)
{
    mc_state *st = mc_get_state(module);
    Py_VISIT(st->client_type);
    Py_VISIT(st->client_base_type);
    Py_VISIT(st->aclient_type);
    Py_VISIT(st->aconn_type);
    Py_VISIT(st->acall_type);
    Py_VISIT(st->meta_result_type);
    Py_VISIT(st->get_running_loop);
    Py_VISIT(st->str_set_result);
    Py_VISIT(st->str_running_loop);
    Py_VISIT(st->Error);
    Py_VISIT(st->ConnectionError);
    Py_VISIT(st->TimeoutError);
    Py_VISIT(st->ProtocolError);
    Py_VISIT(st->ServerError);
    Py_VISIT(st->ClientError);
    Py_VISIT(st->InvalidKeyError);
    Py_VISIT(st->ValueTooLargeError);
    Py_VISIT(st->InvalidServerError);
    Py_VISIT(st->AuthenticationError);
    return 0;
}

static int
mc_clear(PyObject *module)
{
    mc_state *st = mc_get_state(module);
    Py_CLEAR(st->client_type);
    Py_CLEAR(st->client_base_type);
    Py_CLEAR(st->aclient_type);
    Py_CLEAR(st->aconn_type);
    Py_CLEAR(st->acall_type);
    mc_meta_freelist_release(st->meta_result_type);
    Py_CLEAR(st->meta_result_type);
    Py_CLEAR(st->get_running_loop);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_running_loop);
    Py_CLEAR(st->Error);
    Py_CLEAR(st->ConnectionError);
    Py_CLEAR(st->TimeoutError);
    Py_CLEAR(st->ProtocolError);
    Py_CLEAR(st->ServerError);
    Py_CLEAR(st->ClientError);
    Py_CLEAR(st->InvalidKeyError);
    Py_CLEAR(st->ValueTooLargeError);
    Py_CLEAR(st->InvalidServerError);
    Py_CLEAR(st->AuthenticationError);
    return 0;
}

static void
mc_free(void *module)
{
    (void)mc_clear((PyObject *)module);
}

static PyModuleDef_Slot mc_slots[] = {
    {Py_mod_exec, MC_SLOT(mc_exec)},
    {0, NULL},
};

struct PyModuleDef mc_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cmemcache._cmemcache",
    .m_doc = "The C engine of cmemcache: the memcached text protocol on raw "
             "sockets.",
    .m_size = sizeof(mc_state),
    .m_slots = mc_slots,
    .m_traverse = mc_traverse,
    .m_clear = mc_clear,
    .m_free = mc_free,
};

PyMODINIT_FUNC
PyInit__cmemcache(void)
{
    return PyModuleDef_Init(&mc_module_def);
}
