/* One multi-key call spread over the servers: the keys grouped by server,
 * each server's request built (header lines in a buffer of the call's,
 * values as iovecs into the caller's memory), the replies matched to the
 * keys, and what every server ended with.
 *
 * No Python and no I/O: the caller takes a connection for each part (the
 * engine's pools, connecting where it must), queues the built requests,
 * drives the sockets and feeds the replies (pipe.h).
 */
#ifndef CMEMCACHE_MULTI_H
#define CMEMCACHE_MULTI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "buf.h"
#include "engine.h"
#include "pipe.h"

enum mc_multi_kind { MC_MULTI_GET, MC_MULTI_SET, MC_MULTI_DELETE };

/* One key of the call.  Its bytes, its value's and its placement text
 * belong to the caller and must stay valid until the call is freed. */
struct mc_item {
    struct mc_wkey wk;
    struct mc_place place;     /* place.wk is set by mc_multi_place */
    const char *val;           /* MC_MULTI_SET */
    size_t val_len;
    uint32_t flags;
    ssize_t server;            /* the server picked; -1 when none is live */
};

/* One server's share. */
struct mc_part {
    struct mc_server *srv;
    struct mc_conn *conn;      /* the caller's to take, give and close */
    size_t *items;             /* indexes into the items, in order */
    size_t nitems;
    struct mc_req req;         /* in flight on conn (not with noreply) */
    struct mc_buf text;        /* the request's header lines */
    struct iovec *iov;
    int niov;
    bool fenced;
    bool done;                 /* finished: complete, or failed (fail) */
    size_t need;               /* the length of the frame being received */
    struct mc_fail fail;
};

struct mc_multi {
    struct mc_engine *e;
    enum mc_multi_kind kind;
    const char *cmd;           /* "get", "gets", "gat", "gats", "set" */
    int64_t exptime;           /* gat, gats, set */
    bool touch;                /* gat, gats */
    bool with_cas;             /* gets, gats */
    bool noreply;
    uint32_t opaque;           /* protocol="meta": item i of a part sends
                                * O<opaque + i> */
    struct mc_item *items;
    size_t nitems;             /* filled by the caller, up to the capacity */
    struct mc_part *parts;
    size_t nparts;
    size_t *order;
    size_t *count;
    size_t *slot;
    mc_item_fn on_item;        /* each reply item: item index, reply */
    void *owner;
    struct mc_fail connect_fail; /* a connect that failed while placing */
    struct mc_server *connect_srv;
};

/* Sets up a call of kind for up to n items.  Returns 0 or -ENOMEM (the
 * call can be freed either way). */
int mc_multi_init(struct mc_multi *m, struct mc_engine *e,
                  enum mc_multi_kind kind, size_t n);

/* Frees what the call holds; connections still held are closed. */
void mc_multi_free(struct mc_multi *m);

/* Picks each item's server and groups the items into parts (no
 * connection is taken).  Returns 0 or -ENOMEM. */
int mc_multi_place(struct mc_multi *m);

/* After the caller tried to take a connection for every part (a part
 * without one has done and fail set): true when a server that failed is
 * now held down and failover may place its keys elsewhere — the caller
 * then gives the connections back and places again (last: this was the
 * last attempt, so keys stay where they are). */
bool mc_multi_replace(const struct mc_multi *m, bool last);

/* Records a part whose connection could not be taken. */
void mc_multi_part_failed(struct mc_multi *m, struct mc_part *p);

/* Builds every connected part's request and queues it on its connection.
 * Returns 0 or -ENOMEM. */
int mc_multi_queue(struct mc_multi *m);

/* Builds every part's request (a driver then queues each part's req, iov
 * and niov itself, with its fence).  Returns 0 or -ENOMEM. */
int mc_multi_build(struct mc_multi *m);

/* Updates part p after its connection was fed: done when its request is.
 * Returns true when p finished now. */
bool mc_multi_part_check(struct mc_part *p);

#endif
