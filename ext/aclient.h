/* cmemcache.aio's C side: the engine driven by an asyncio event loop.
 *
 * The objects shared by the client type and its methods (aclient.c, its
 * TLS methods in atls.c), the call (acall.c: the awaitable each method
 * returns, and a connection's loop callbacks) and the loop driver
 * (adrive.c): the client, one connection registered with the loop, and a
 * call.  Everything here runs in the loop's thread, holding the GIL;
 * nothing blocks.
 */
#ifndef CMEMCACHE_ACLIENT_H
#define CMEMCACHE_ACLIENT_H

#include "module.h"

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "pipe.h"
#include "pycall.h"
#include "pymulti.h"

typedef struct mc_aclient mc_aclient;
typedef struct mc_aconn mc_aconn;
typedef struct mc_acall mc_acall;

/* One request of a call on one server (the one of a one-key call, a part
 * of a multi-key call, a server's share of a call to every server): it
 * waits for room on a connection of its server, is queued there, and
 * completes. */
struct mc_aunit {
    mc_acall *call;
    size_t server;
    struct mc_req *req;
    struct iovec *iov;
    int iovcnt;
    bool noreply;
    bool done;
    struct mc_fail *fail;      /* where its failure is recorded */
    struct mc_aunit *next;     /* in a wait list, or a conn's writes list */
    mc_aconn *on;              /* the connection it is queued on */
};

/* A connection of one server, registered with the loop: the engine's
 * mc_conn, its requests in flight, whether the loop watches it. */
struct mc_aconn {
    PyObject_HEAD
    mc_aclient *client;        /* strong */
    struct mc_conn *conn;      /* NULL once closed */
    size_t server;
    int inflight;              /* requests queued or in flight on it */
    bool reading;              /* add_reader done */
    bool writing;              /* add_writer done (the socket was full) */
    bool dirty;                /* bytes queued, not yet flushed */
    bool closed;
    bool write_wants_read;     /* TLS: the write goes on once readable */
    bool read_wants_write;     /* TLS: the read goes on once writable */
    PyObject *on_read;         /* the bound methods given to the loop */
    PyObject *on_write;
    PyObject *timer;           /* the deadline check, or NULL */
    struct mc_aunit *writes;   /* noreply units done once their bytes are out */
    uint64_t replies_queued;   /* units owing a reply queued on it */
    uint64_t replies_done;     /* of those, answered (in the order queued) */
};

/* Per server: its connections, and the calls waiting for room on one. */
struct mc_aserver {
    mc_aconn **conns;          /* strong references, up to max_connections */
    int nconns;
    int connecting;            /* connects under way */
    struct mc_aunit *wait_head; /* FIFO of units waiting for room */
    struct mc_aunit *wait_tail;
    PyObject *wait_timer;      /* the deadline check of the waiting units
                                * (a loop TimerHandle), or NULL */
    mc_aconn *ordered;         /* where the last noreply unit went, until the
                                * server is known to have read it (borrowed) */
    uint64_t ordered_mark;     /* its replies_queued then */
};

struct mc_aclient {
    PyObject_HEAD
    PyObject *module;
    struct mc_core core;
    bool ready;                /* the engine is set up */
    PyObject *loop;            /* the loop the client runs on (bound at
                                * first use) */
    PyObject *loop_holder;     /* 3.11: the running-loop record of the
                                * thread that last ran a call (acall.c) */
    unsigned long loop_gen;    /* mc_fork_generation then */
    PyObject *connector;       /* connector(client, server, timeout): opens
                                * a connection (Python), then calls back
                                * _attach or _connect_failed */
    struct mc_aserver *servers;
    int max_connections;       /* per server */
    int max_inflight;          /* per connection */
    bool flush_scheduled;
    PyObject *flush_cb;        /* bound _flush, for loop.call_soon */
    PyObject *call_soon;       /* loop.call_soon, loop.call_at, ... bound */
    PyObject *call_at;
    PyObject *loop_time;
    PyObject *add_reader;
    PyObject *remove_reader;
    PyObject *add_writer;
    PyObject *remove_writer;
    PyObject *create_future;
    bool closed;
};

/* What a call is. */
enum mc_acall_kind {
    MC_A_ONE,                  /* one command on one server */
    MC_A_MULTI,                /* a multi-key command over servers */
    MC_A_ALL,                  /* one command on every server */
};

enum mc_acall_state {
    MC_A_NEW,                  /* prepared, not awaited yet */
    MC_A_WAITING,              /* waiting for room on a connection */
    MC_A_FLIGHT,               /* queued on a connection */
    MC_A_DONE,                 /* the future has its result */
};

/* The awaitable a method returns: a coroutine whose first step sends the
 * request and waits on an asyncio Future; the driver sets the future's
 * result when the reply is complete. */
struct mc_acall {
    PyObject_HEAD
    mc_aclient *client;        /* strong */
    enum mc_acall_kind kind;
    enum mc_acall_state state;
    enum mc_result rkind;
    PyObject *fut;             /* the Future, once awaited */
    PyObject *held[16];        /* what the call reads: the arguments (meta_get
                                * takes a key and 13 keywords) */
    int nheld;
    int64_t deadline;          /* monotonic ns */
    size_t picks;              /* servers tried (failover) */
    bool abandoned;            /* cancelled or closed: the result is not
                                * wanted */
    PyObject *exc;             /* the exception it ends with */
    PyObject *result;          /* the result it ends with */
    bool prepared;             /* holds what its method prepared */
    struct mc_aunit *units;    /* its requests (PyMem) */
    int nunits;
    struct mc_call one;        /* MC_A_ONE */
    struct mc_pymulti *multi;  /* MC_A_MULTI (heap) */
    int parts_left;            /* MC_A_MULTI, MC_A_ALL: parts not done */
    struct mc_all *all;        /* MC_A_ALL (heap): the template */
    struct mc_call *alls;      /* MC_A_ALL: one call per server */
    struct mc_fail fail;       /* why it failed (code 0: it did not) */
    size_t fail_server;
};

extern PyType_Spec mc_aclient_spec;
extern PyType_Spec mc_aconn_spec;
extern PyType_Spec mc_acall_spec;

/* Binds a client to the loop it first runs on (aclient.c). */
int mc_aclient_bind(mc_aclient *client, PyObject *loop);

/* Closes every connection of a client (what is in flight fails) and
 * unbinds it from its loop: the next call binds it to the loop running
 * then.  loop_gone: that loop was closed, so the connects it had under way
 * are forgotten too (aclient.c). */
void mc_aclient_unbind(mc_aclient *client, bool loop_gone);

/* The (server index, fd) pair a connector method is given as args[0] and
 * args[1], checked (aclient.c).  Returns 0, or -1 with an exception set. */
int mc_aclient_server_fd(mc_aclient *client, PyObject *const *args,
                         Py_ssize_t *server, int *fd);

/* ---- the call (acall.c) ------------------------------------------------- */

/* A new call of client (not awaited yet, nothing prepared), or NULL with
 * an exception set. */
mc_acall *mc_acall_new(mc_aclient *client, enum mc_acall_kind kind,
                       enum mc_result rkind);

/* Holds the arguments a prepared call reads (its key and value bytes
 * point into them).  Returns 0, or -1 with TypeError set. */
int mc_acall_hold_args(mc_acall *call, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames);

/* ---- the client's TLS methods (atls.c) ---------------------------------- */

struct mc_tls;

/* A capsule's TLS connection (of _tls_new), or NULL with an exception set
 * (also once _attach took it). */
struct mc_tls *mc_atls_capsule(PyObject *cap);

/* The methods _tls_new, _tls_handshake, _tls_send, _tls_recv, _tls_why,
 * _tls_resume_refused and _tls_code (in the client's method table). */
PyObject *mc_atls_new(mc_aclient *self, PyObject *const *args,
                      Py_ssize_t nargs);
PyObject *mc_atls_handshake(mc_aclient *self, PyObject *cap);
PyObject *mc_atls_send(mc_aclient *self, PyObject *const *args,
                       Py_ssize_t nargs);
PyObject *mc_atls_recv(mc_aclient *self, PyObject *const *args,
                       Py_ssize_t nargs);
PyObject *mc_atls_why(mc_aclient *self, PyObject *cap);
PyObject *mc_atls_resume_refused(mc_aclient *self, PyObject *cap);
PyObject *mc_atls_code(mc_aclient *self, PyObject *const *args,
                       Py_ssize_t nargs);

/* ---- the loop driver (adrive.c) ----------------------------------------- */

/* Starts a call: puts its requests on connections (asking for connections
 * where there are none), and arranges the flush.  Returns 0, or -1 with an
 * exception set (the call is then done). */
int mc_adrive_start(mc_acall *call);

/* The call is no longer wanted (its awaiting task was cancelled): its
 * replies will be read and discarded. */
void mc_adrive_abandon(mc_acall *call);

/* Writes what every dirty connection has queued (the loop calls it once
 * per iteration when something was queued). */
PyObject *mc_adrive_flush(mc_aclient *client);

/* A connection the connector opened (fd, with its TLS layer, handshake
 * done, when the client has TLS: both owned by the driver from then on),
 * or its failure (errno or MC_ERESOLVE / MC_EOWNER / MC_EAUTH / MC_ETLS
 * with text). */
struct mc_tls;
int mc_adrive_attach(mc_aclient *client, size_t server, int fd,
                     struct mc_tls *tls);
void mc_adrive_connect_failed(mc_aclient *client, size_t server, int code,
                              const char *text);

/* The deadline check of server s's waiting units: those past their
 * deadline fail with TimeoutError (the loop calls it, through the
 * client's _on_wait_timer). */
PyObject *mc_adrive_on_wait_timer(mc_aclient *client, size_t s);

/* Closes every connection: calls in flight fail with ConnectionError. */
void mc_adrive_close_all(mc_aclient *client);

/* Forgets the connects under way, which will never report (their loop was
 * closed): each as a connector's failure that does not hold its server
 * down. */
void mc_adrive_forget_connects(mc_aclient *client);

/* Finishes a call with its result or its failure (sets the future). */
void mc_acall_finish(mc_acall *call);

/* The GC support of connections (for the client's traverse/clear). */
int mc_aserver_traverse(mc_aclient *client, visitproc visit, void *arg);

#endif
