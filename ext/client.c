/* cmemcache.StringClient: the memcached text protocol on our own sockets.
 *
 * One request: check the arguments and format the header (nothing is sent
 * before every check passed) -> take an idle connection of the server, or
 * open one -> loop {release the GIL, one conn.c step, take the GIL back,
 * parse what arrived} -> give the connection back only after its reply was
 * read completely; after any error, timeout or signal it is closed instead,
 * so a reply is never read by a request that did not send it.
 *
 * The idle pools are touched only while holding the GIL, which is what keeps
 * two threads from sharing a socket; the GIL is released only around conn.c
 * calls, which use no Python API.
 */
#include "module.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "dist.h"
#include "hash.h"
#include "proto.h"

/* Failure codes beyond -errno, MC_EEOF and MC_ERESOLVE (conn.h). */
#define MC_EDEAD (-10003)      /* server held down after a failure */
#define MC_EBADREPLY (-10004)  /* reply outside the grammar */
#define MC_EREPLY (-10005)     /* an error line: kind and text kept */
#define MC_EPYTHON (-10006)    /* a Python exception is already set */
#define MC_EVALUE (-10007)     /* reply value larger than max_value_size */
#define MC_ENOSERVER (-10008)  /* every server the key may use is down */

#define MC_NS 1000000000.0
#define MC_FIRST_PROBE 1000000000LL /* ns from a failure to the first probe */
#define MC_GET_CHUNK 16384     /* bytes of keys per get/gets line */
#define MC_MAX_STATS_REPLY (8u << 20) /* stats reply memory per server */
#define MC_GAT_CHUNK 1900      /* gat lines must stay under 2048 bytes */

struct mc_fail {
    int code;
    int gai;
    enum mc_kind kind;
    char text[256];
};

struct mc_conn {
    int fd;
    unsigned fences;           /* "mn" sent whose "MN" is still unread */
    unsigned flush_oks;        /* flush_all sent on connect, "OK" unread */
    bool reused;
    unsigned long generation;
    struct mc_buf rbuf;
    struct mc_conn *next;
};

struct mc_server {
    char *name;                /* owned; spec.host points into it */
    struct mc_server_spec spec;
    struct mc_conn *idle;
    int nidle;
    unsigned long generation;
    int64_t dead_until;        /* held down until then; 0 when live */
    int64_t hold;              /* the last hold-down: doubles up to dead_retry */
    bool probing;              /* a call is connecting to test it is back */
    bool flush_pending;        /* flush_on_reconnect: flush once reachable */
    int timeouts;              /* request timeouts in a row */
};

enum mc_failover { MC_FAILOVER_NONE, MC_FAILOVER_REHASH, MC_FAILOVER_NEXT };

/* Calls counted per command, for python-memcached's Client.stats. */
enum mc_call {
    CALL_GET, CALL_GETS, CALL_GAT, CALL_GATS, CALL_GET_MULTI,
    CALL_GETS_MULTI, CALL_SET, CALL_ADD, CALL_REPLACE, CALL_APPEND,
    CALL_PREPEND, CALL_CAS, CALL_SET_MULTI, CALL_DELETE, CALL_DELETE_MULTI,
    CALL_INCR, CALL_DECR, CALL_TOUCH, CALL_COUNT
};

static const char *const call_names[CALL_COUNT] = {
    "get", "gets", "gat", "gats", "get_multi", "gets_multi", "set", "add",
    "replace", "append", "prepend", "cas", "set_multi", "delete",
    "delete_multi", "incr", "decr", "touch",
};

typedef struct {
    PyObject_HEAD
    PyObject *module;
    mc_state *state;
    struct mc_server *servers;
    Py_ssize_t nservers;
    struct mc_dist dist;
    bool *dead;                /* scratch: dead flag per server */
    PyObject *names;
    int64_t timeout;
    int64_t connect_timeout;
    int64_t dead_retry;
    size_t max_value;
    int pool_size;
    bool fence;
    bool flush_on_reconnect;
    bool proxy;                /* twemproxy in front: no meta, no gat */
    int timeout_limit;         /* timeouts in a row that hold a server down */
    enum mc_failover failover;
    uint64_t calls[CALL_COUNT];
} Client;

static const char fence_line[] = "mn\r\n";
static const char crlf[] = "\r\n";

/* ---- connections -------------------------------------------------------- */

static void
conn_close(struct mc_conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    mc_buf_free(&c->rbuf);
    free(c);
}

/* Reads the replies still owed to noreply commands (their "MN" fences) and
 * to a flush on connect, until deadline, so that closing the connection
 * afterwards does not reset it while the server may still be reading those
 * commands.  No Python API: called without the GIL. */
static void
conn_drain(struct mc_conn *c, int64_t deadline)
{
    struct mc_reply r;
    while (c->fences > 0 || c->flush_oks > 0) {
        while (mc_buf_len(&c->rbuf) > 0
               && (c->fences > 0 || c->flush_oks > 0)) {
            ssize_t n = mc_parse(mc_buf_head(&c->rbuf), mc_buf_len(&c->rbuf),
                                 0, &r);
            if (n == MC_NEED_MORE) {
                break;
            }
            if (n < 0) {
                return;
            }
            mc_buf_consume(&c->rbuf, (size_t)n);
            if (r.kind == MC_MN && c->fences > 0) {
                c->fences--;
            }
            else if (r.kind == MC_OK && c->flush_oks > 0) {
                c->flush_oks--;
            }
        }
        if (c->fences == 0 && c->flush_oks == 0) {
            return;
        }
        if (mc_now() >= deadline || mc_buf_reserve(&c->rbuf, 4096) < 0
            || mc_conn_wait(c->fd, POLLIN, deadline) < 0) {
            return;
        }
        ssize_t n = mc_conn_recv(c->fd, &c->rbuf);
        if (n <= 0 && n != -EAGAIN) {
            return;
        }
    }
}

static void
server_drop_idle(struct mc_server *srv)
{
    while (srv->idle != NULL) {
        struct mc_conn *c = srv->idle;
        srv->idle = c->next;
        conn_close(c);
    }
    srv->nidle = 0;
}

static void
fail_set(struct mc_fail *f, int code)
{
    f->code = code;
    f->text[0] = '\0';
}

/* Holds srv down after a failure: refused at once until the hold-down
 * passes, then one call probes it with a connect.  The first hold-down is
 * MC_FIRST_PROBE (a restarted server serves again about a second later);
 * each failed probe doubles it, up to dead_retry (a dead server costs one
 * connect attempt per hold-down).  dead_retry 0 never holds down. */
static void
server_hold_down(Client *self, struct mc_server *srv)
{
    srv->flush_pending = self->flush_on_reconnect;
    if (self->dead_retry <= 0) {
        return;
    }
    int64_t hold = srv->hold == 0 ? MC_FIRST_PROBE : 2 * srv->hold;
    if (hold > self->dead_retry) {
        hold = self->dead_retry;
    }
    srv->hold = hold;
    srv->dead_until = mc_now() + hold;
}

/* Takes an idle connection of srv or opens a new one.  Returns NULL with f
 * filled (or a Python exception set and f->code MC_EPYTHON). */
static struct mc_conn *
conn_take(Client *self, struct mc_server *srv, struct mc_fail *f)
{
    if (srv->generation != mc_fork_generation) {
        /* The parent's sockets: close our copies, send nothing.  A probe
         * another thread of the parent had under way is not ours. */
        server_drop_idle(srv);
        srv->generation = mc_fork_generation;
        srv->probing = false;
    }
    struct mc_conn *c = srv->idle;
    if (c != NULL) {
        srv->idle = c->next;
        srv->nidle--;
        c->reused = true;
        return c;
    }
    int64_t now = mc_now();
    bool probe = srv->dead_until != 0;
    if (probe) {
        if (now < srv->dead_until || srv->probing) {
            /* Held down, or another call is testing it right now: fail
             * fast instead of each call waiting for its own connect. */
            fail_set(f, MC_EDEAD);
            return NULL;
        }
        srv->probing = true;
    }
    int64_t deadline = now + self->connect_timeout;
    int fd, gai = 0;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        fd = mc_conn_open(&srv->spec, deadline, &gai);
        Py_END_ALLOW_THREADS
        if (fd != -EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            srv->probing = false;
            fail_set(f, MC_EPYTHON);
            return NULL;
        }
    }
    srv->probing = false;
    if (fd < 0) {
        fail_set(f, fd);
        f->gai = gai;
        server_hold_down(self, srv);
        return NULL;
    }
    srv->dead_until = 0;
    srv->hold = 0;
    int brc = mc_conn_set_blocking(fd, self->timeout);
    c = brc < 0 ? NULL : malloc(sizeof(*c));
    if (c == NULL) {
        close(fd);
        fail_set(f, brc < 0 ? brc : -ENOMEM);
        return NULL;
    }
    c->fd = fd;
    c->fences = 0;
    c->flush_oks = 0;
    if (srv->flush_pending) {
        /* Back after a failure: drop what it may hold from before, ahead
         * of the request.  Its "OK" is read before the request's reply. */
        static const char flush_line[] = "flush_all\r\n";
        if (send(fd, flush_line, sizeof(flush_line) - 1,
                 MC_SEND_FLAGS)
            == (ssize_t)(sizeof(flush_line) - 1)) {
            c->flush_oks = 1;
            srv->flush_pending = false;
        }
    }
    c->reused = false;
    c->generation = mc_fork_generation;
    c->next = NULL;
    mc_buf_init(&c->rbuf);
    return c;
}

/* Counts a request that timed out on srv: timeout_limit of them in a row
 * hold the server down as a refused connect does (a stalled server then
 * costs one check instead of a timeout per call). */
static void
server_timed_out(Client *self, struct mc_server *srv)
{
    if (self->timeout_limit > 0 && ++srv->timeouts >= self->timeout_limit
        && self->dead_retry > 0) {
        server_hold_down(self, srv);
        srv->timeouts = 0;
        server_drop_idle(srv);
    }
}

/* Returns a connection whose reply was read completely to the idle pool. */
static void
conn_give(Client *self, struct mc_server *srv, struct mc_conn *c)
{
    srv->timeouts = 0;
    bool owed = c->fences > 0 || c->flush_oks > 0;
    if (mc_buf_len(&c->rbuf) != 0 || c->generation != mc_fork_generation
        || (srv->nidle >= self->pool_size && !owed)) {
        /* Unrequested bytes after a complete reply: out of sync.  A
         * connection still owed replies to noreply commands is kept even
         * over pool_size: closing it with unread input would reset it, and
         * the server could drop writes it has not read yet. */
        conn_close(c);
        return;
    }
    if (c->rbuf.cap > MC_BUF_RESTING) {
        mc_buf_shrink(&c->rbuf);
    }
    c->next = srv->idle;
    srv->idle = c;
    srv->nidle++;
}

/* ---- raising ------------------------------------------------------------ */

static void
raise_fail(Client *self, struct mc_server *srv, const struct mc_fail *f)
{
    mc_state *st = self->state;
    const char *name = srv ? srv->name : "memcached";
    switch (f->code) {
    case MC_EPYTHON:
        return;
    case MC_EDEAD: {
        char left[32];
        int64_t ns = srv->dead_until - mc_now();
        PyOS_snprintf(left, sizeof(left), "%.1f",
                      ns > 0 ? (double)ns / MC_NS : 0.0);
        PyErr_Format(st->ConnectionError, "%s: server marked dead after a "
                     "failure, retried in %s s", name, left);
        return;
    }
    case MC_EEOF:
        PyErr_Format(st->ConnectionError, "%s: connection closed by the "
                     "server", name);
        return;
    case MC_ENOSERVER:
        PyErr_SetString(st->ConnectionError,
                        "no live server for this key: every server it may "
                        "use is marked dead");
        return;
    case MC_ERESOLVE:
        PyErr_Format(st->ConnectionError, "%s: %s", name,
                     gai_strerror(f->gai));
        return;
    case MC_EBADREPLY:
        PyErr_Format(st->ProtocolError, "%s: malformed reply%s%s", name,
                     f->text[0] ? ": " : "", f->text);
        return;
    case MC_EVALUE:
        PyErr_Format(st->ProtocolError, "%s: reply value larger than "
                     "max_value_size (%zu)", name, self->max_value);
        return;
    case MC_EREPLY:
        if (f->kind == MC_SERVER_ERROR) {
            PyErr_Format(st->ServerError, "%s", f->text);
        }
        else if (f->kind == MC_CLIENT_ERROR) {
            PyErr_Format(st->ClientError, "%s", f->text);
        }
        else {
            PyErr_Format(st->ClientError, "ERROR%s%s",
                         f->text[0] ? " " : "", f->text);
        }
        return;
    case -ENOMEM:
        PyErr_NoMemory();
        return;
    case -ETIMEDOUT: {
        PyObject *exc = PyObject_CallFunction(
            st->TimeoutError, "is", ETIMEDOUT, "timed out");
        if (exc != NULL) {
            PyObject *msg = PyUnicode_FromFormat("%s: timed out", name);
            if (msg != NULL) {
                PyObject_SetAttrString(exc, "strerror", msg);
                Py_DECREF(msg);
            }
            PyErr_SetObject(st->TimeoutError, exc);
            Py_DECREF(exc);
        }
        return;
    }
    default: {
        int err = -f->code;
        PyObject *msg = PyUnicode_FromFormat("%s: %s", name, strerror(err));
        if (msg == NULL) {
            return;
        }
        PyObject *exc = PyObject_CallFunction(st->ConnectionError, "iO",
                                              err, msg);
        Py_DECREF(msg);
        if (exc != NULL) {
            PyErr_SetObject(st->ConnectionError, exc);
            Py_DECREF(exc);
        }
        return;
    }
    }
}

/* Sets .partial on the exception being raised: what a multi-server call
 * got from the servers that answered. */
static void
attach_partial(PyObject *partial)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL
        && PyObject_SetAttrString(value, "partial", partial) < 0) {
        PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
}

/* Records an error line of the server in f. */
static void
fail_reply(struct mc_fail *f, const struct mc_reply *r)
{
    f->code = MC_EREPLY;
    f->kind = r->kind;
    size_t n = r->text_len < sizeof(f->text) - 1 ? r->text_len
                                                 : sizeof(f->text) - 1;
    memcpy(f->text, r->text, n);
    f->text[n] = '\0';
}

static void
fail_proto(struct mc_fail *f, const char *why)
{
    f->code = MC_EBADREPLY;
    snprintf(f->text, sizeof(f->text), "%s", why);
}

/* ---- argument checks ---------------------------------------------------- */

static int to_ns(PyObject *obj, const char *what, double dflt, bool zero_ok,
                 int64_t *out);

/* Points p and n at the bytes of a bytes or str key.  Sets TypeError. */
static int
key_bytes(PyObject *key, const char **p, Py_ssize_t *n)
{
    if (PyBytes_CheckExact(key) || PyBytes_Check(key)) {
        *p = PyBytes_AS_STRING(key);
        *n = PyBytes_GET_SIZE(key);
        return 0;
    }
    if (PyUnicode_Check(key)) {
        if (PyUnicode_IS_COMPACT_ASCII(key)) {
            /* ASCII text is its own UTF-8: no conversion, no cache */
            *p = (const char *)PyUnicode_DATA(key);
            *n = PyUnicode_GET_LENGTH(key);
            return 0;
        }
        *p = PyUnicode_AsUTF8AndSize(key, n);
        if (*p == NULL) {
            /* lone surrogates cannot be sent */
            return -1;
        }
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "key must be bytes or str, not %.200s",
                 Py_TYPE(key)->tp_name);
    return -1;
}

static int
raise_key(Client *self, enum mc_key_status s, const char *p, Py_ssize_t n)
{
    static const char *const why[] = {
        [MC_KEY_EMPTY] = "key is empty",
        [MC_KEY_TOO_LONG] = "key is longer than 250 bytes",
        [MC_KEY_BAD_CHAR] = "key contains a space or control character",
    };
    PyObject *k = PyBytes_FromStringAndSize(p, n < 300 ? n : 300);
    if (k != NULL) {
        PyErr_Format(self->state->InvalidKeyError, "%s: %R", why[s], k);
        Py_DECREF(k);
    }
    return -1;
}

/* A key as sent: prefix + key, both checked.  The bytes stay owned by the
 * objects given. */
struct wire_key {
    const char *pre;
    Py_ssize_t pre_len;
    const char *key;
    Py_ssize_t key_len;
    PyObject *hash;            /* borrowed: the int of a (hash, key) tuple */
    PyObject *obj;             /* borrowed: the key as given (no tuple) */
};

static int
check_key(Client *self, PyObject *obj, const char *pre, Py_ssize_t pre_len,
          struct wire_key *wk)
{
    wk->hash = NULL;
    if (PyTuple_Check(obj)) {
        /* python-memcached's (hash_value, key): the int picks the server. */
        if (PyTuple_GET_SIZE(obj) != 2
            || !PyLong_Check(PyTuple_GET_ITEM(obj, 0))) {
            PyErr_SetString(PyExc_TypeError,
                            "a tuple key is (hash_value: int, key)");
            return -1;
        }
        wk->hash = PyTuple_GET_ITEM(obj, 0);
        obj = PyTuple_GET_ITEM(obj, 1);
    }
    wk->obj = obj;
    if (key_bytes(obj, &wk->key, &wk->key_len) < 0) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeError)) {
            PyErr_Clear();
            PyErr_Format(self->state->InvalidKeyError,
                         "key cannot be encoded as UTF-8: %R", obj);
        }
        return -1;
    }
    wk->pre = pre;
    wk->pre_len = pre_len;
    enum mc_key_status s = mc_key_check(wk->key, (size_t)wk->key_len);
    if (s == MC_KEY_OK && pre_len + wk->key_len > MC_MAX_KEY) {
        s = MC_KEY_TOO_LONG;
    }
    if (s != MC_KEY_OK && !(s == MC_KEY_EMPTY && pre_len > 0)) {
        return raise_key(self, s, wk->key, wk->key_len);
    }
    return 0;
}

/* Checks a key prefix (empty allowed). */
static int
check_prefix(Client *self, PyObject *obj, const char **p, Py_ssize_t *n)
{
    if (obj == NULL || obj == Py_None) {
        *p = "";
        *n = 0;
        return 0;
    }
    if (key_bytes(obj, p, n) < 0) {
        return -1;
    }
    if (*n == 0) {
        return 0;
    }
    enum mc_key_status s = mc_key_check(*p, (size_t)*n);
    if (s != MC_KEY_OK) {
        return raise_key(self, s, *p, *n);
    }
    return 0;
}

static uint32_t
key_hash(Client *self, const char *p, size_t n)
{
    return mc_dist_hash(&self->dist, p, n);
}

static bool
server_dead(const struct mc_server *srv)
{
    return srv->dead_until != 0 && mc_now() < srv->dead_until;
}

/* The dead flag of every server, or NULL when none is held down. */
static const bool *
dead_flags(Client *self)
{
    bool any = false;
    int64_t now = 0;
    for (Py_ssize_t i = 0; i < self->nservers; i++) {
        int64_t until = self->servers[i].dead_until;
        bool dead = false;
        if (until != 0) {
            if (now == 0) {
                now = mc_now();
            }
            dead = now < until;
        }
        self->dead[i] = dead;
        any |= dead;
    }
    return any ? self->dead : NULL;
}

/* The first bucket of a (hash, key) tuple: Python's hash % nbuckets, for
 * ints of any size and sign.  Returns -1 with an exception set. */
static Py_ssize_t
tuple_bucket(Client *self, PyObject *hash)
{
    Py_ssize_t nb = (Py_ssize_t)self->dist.nbuckets;
    int overflow;
    long long h = PyLong_AsLongLongAndOverflow(hash, &overflow);
    if (!overflow) {
        if (h == -1 && PyErr_Occurred()) {
            return -1;
        }
        long long m = h % nb;
        return (Py_ssize_t)(m < 0 ? m + nb : m);
    }
    /* On exact ints: an int subclass's __mod__ could return any bucket. */
    PyObject *h_exact = PyNumber_Index(hash);
    PyObject *n = h_exact ? PyLong_FromSsize_t(nb) : NULL;
    PyObject *m = n ? PyNumber_Remainder(h_exact, n) : NULL;
    Py_XDECREF(h_exact);
    Py_XDECREF(n);
    if (m == NULL) {
        return -1;
    }
    Py_ssize_t r = PyLong_AsSsize_t(m);
    Py_DECREF(m);
    if (r == -1 && PyErr_Occurred()) {
        return -1;
    }
    return r >= 0 && r < nb ? r : 0;
}

/* Writes the decimal text of a Python int (at most 40 characters) into
 * text.  Returns its length, -1 when longer, -2 with an exception set. */
static Py_ssize_t
int_text(PyObject *v, char *text)
{
    PyObject *str = PyObject_Str(v);
    if (str == NULL) {
        return -2;
    }
    Py_ssize_t len;
    const char *p = PyUnicode_AsUTF8AndSize(str, &len);
    if (p == NULL) {
        Py_DECREF(str);
        return -2;
    }
    if (len > 40) {
        Py_DECREF(str);
        return -1;
    }
    memcpy(text, p, (size_t)len);
    Py_DECREF(str);
    return len;
}

/* python-memcached: buckets[hash % len(buckets)]; with failover "rehash" a
 * server held down sends the key on python-memcached's walk,
 * hash = H(str(hash) + str(attempt)), at most 10 tries in all. */
static Py_ssize_t
pick_python_memcached(Client *self, const struct wire_key *wk, uint32_t h)
{
    Py_ssize_t bucket;
    if (wk->hash != NULL) {
        bucket = tuple_bucket(self, wk->hash);
        if (bucket < 0) {
            return -2;
        }
    }
    else {
        bucket = (Py_ssize_t)(h % (uint32_t)self->dist.nbuckets);
    }
    Py_ssize_t idx = self->dist.buckets[bucket];
    if (self->failover != MC_FAILOVER_REHASH
        || !server_dead(&self->servers[idx])) {
        return idx;
    }
    for (int attempt = 0; attempt < 9; attempt++) {
        char text[64];
        Py_ssize_t n;
        if (attempt == 0 && wk->hash != NULL) {
            n = int_text(wk->hash, text);
            if (n < 0) {
                return n;       /* -1: an absurd hash finds no server */
            }
        }
        else {
            n = (Py_ssize_t)mc_fmt_u64(text, h);
        }
        n += (Py_ssize_t)mc_fmt_u64(text + n, (uint64_t)attempt);
        h = key_hash(self, text, (size_t)n);
        idx = self->dist.buckets[h % (uint32_t)self->dist.nbuckets];
        if (!server_dead(&self->servers[idx])) {
            return idx;
        }
    }
    return -1;
}

/* The key as pymemcache's HashClient formats it with %s: a str as its
 * characters (each cut to 8 bits), bytes as their repr "b'...'". */
static Py_ssize_t
rendezvous_text(PyObject *obj, char *out, size_t cap)
{
    PyObject *s = PyUnicode_Check(obj) ? Py_NewRef(obj) : PyObject_Str(obj);
    if (s == NULL) {
        return -2;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if ((size_t)n > cap) {
        n = (Py_ssize_t)cap;
    }
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = (char)(PyUnicode_READ(kind, data, i) & 0xff);
    }
    Py_DECREF(s);
    return n;
}

/* The server for a key under the client's distribution and failover.
 * Returns the index, -1 when no live server would take it, or -2 with an
 * exception set. */
static Py_ssize_t
pick_server(Client *self, const struct wire_key *wk)
{
    enum mc_distribution kind = self->dist.kind;
    if (self->nservers == 1
        && (kind != MC_DIST_PYTHON_MEMCACHED
            || (wk->hash == NULL && self->servers[0].dead_until == 0))) {
        return 0;               /* the common case: nothing to hash */
    }
    char text[1100];
    const char *p = wk->key;
    size_t n = (size_t)wk->key_len;
    if (wk->hash != NULL && kind != MC_DIST_PYTHON_MEMCACHED) {
        /* (hash, key): the server of str(hash), as if it were the key. */
        Py_ssize_t t = int_text(wk->hash, text);
        if (t < 0) {
            return t;
        }
        p = text;
        n = (size_t)t;
    }
    else if (kind == MC_DIST_RENDEZVOUS) {
        Py_ssize_t t = rendezvous_text(wk->obj, text, sizeof(text));
        if (t < 0) {
            return t;
        }
        p = text;
        n = (size_t)t;
    }
    else if (wk->pre_len > 0) {
        memcpy(text, wk->pre, (size_t)wk->pre_len);
        memcpy(text + wk->pre_len, wk->key, (size_t)wk->key_len);
        n = (size_t)(wk->pre_len + wk->key_len);
        p = text;
    }
    if (kind == MC_DIST_PYTHON_MEMCACHED) {
        uint32_t h = wk->hash == NULL ? key_hash(self, p, n) : 0;
        return pick_python_memcached(self, wk, h);
    }
    const bool *dead = self->failover == MC_FAILOVER_NEXT ? dead_flags(self)
                                                          : NULL;
    if (kind == MC_DIST_RENDEZVOUS) {
        return mc_dist_pick_rendezvous(&self->dist, p, n, dead);
    }
    return mc_dist_pick(&self->dist, key_hash(self, p, n), dead);
}

static int
to_int64(PyObject *obj, const char *what, int64_t lo, int64_t hi,
         int64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s out of range: %R", what, obj);
        return -1;
    }
    *out = v;
    return 0;
}

static int
to_uint64(PyObject *obj, const char *what, uint64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s out of range: %R", what, obj);
        }
        return -1;
    }
    *out = v;
    return 0;
}

#define EXPTIME_MIN (-2147483647LL - 1)
#define EXPTIME_MAX 2147483647LL

static int
to_exptime(PyObject *obj, int64_t *out)
{
    if (obj == NULL) {
        *out = 0;
        return 0;
    }
    return to_int64(obj, "exptime", EXPTIME_MIN, EXPTIME_MAX, out);
}

static int
to_flags(PyObject *obj, uint32_t *out)
{
    int64_t v = 0;
    if (obj != NULL && to_int64(obj, "flags", 0, 0xffffffffLL, &v) < 0) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int
to_bool(PyObject *obj, bool *out)
{
    if (obj == NULL) {
        *out = false;
        return 0;
    }
    int t = PyObject_IsTrue(obj);
    if (t < 0) {
        return -1;
    }
    *out = t != 0;
    return 0;
}

/* A value: any bytes-like object except str.  Fills view (release it with
 * PyBuffer_Release) and checks the size. */
static int
get_value(Client *self, PyObject *obj, Py_buffer *view)
{
    if (PyUnicode_Check(obj)) {
        PyErr_SetString(PyExc_TypeError,
                        "value must be bytes-like, not str (encode it)");
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if ((size_t)view->len > self->max_value) {
        PyErr_Format(self->state->ValueTooLargeError,
                     "value of %zd bytes is larger than max_value_size "
                     "(%zu)", view->len, self->max_value);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Minimal fast-call argument parser.  names: every parameter name, NULL
 * terminated; the first npos may be given by position, the first nreq must
 * be given.  out[i] is NULL for an omitted one. */
static int
parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames, const char *const *names, int nreq, int npos,
           PyObject **out)
{
    int total = 0;
    while (names[total] != NULL) {
        total++;
    }
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d positional arguments (%zd "
                     "given)", fname, npos, nargs);
        return -1;
    }
    for (int i = 0; i < total; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
            int i = 0;
            for (; i < total; i++) {
                if (PyUnicode_CompareWithASCIIString(kw, names[i]) == 0) {
                    break;
                }
            }
            if (i == total) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got an unexpected keyword argument '%U'",
                             fname, kw);
                return -1;
            }
            if (out[i] != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got multiple values for argument '%s'",
                             fname, names[i]);
                return -1;
            }
            out[i] = args[nargs + k];
        }
    }
    for (int i = 0; i < nreq; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

/* ---- one request on one server ------------------------------------------ */

struct one;

/* Takes one reply frame: returns 1 when the reply is complete, 0 for more,
 * -1 with o->fail set (or a Python exception and MC_EPYTHON). */
typedef int (*frame_fn)(struct one *o, const struct mc_reply *r);

struct one {
    Client *self;
    struct mc_server *srv;
    const struct wire_key *wk; /* picks srv (again after a failover) */
    struct iovec iov[5];
    int iovcnt;
    bool noreply;
    bool retry_safe;           /* may be sent again on a fresh connection */
    frame_fn on_frame;
    const char *key;           /* the key a VALUE must carry */
    size_t key_len;
    bool with_flags;
    bool with_cas;
    bool decoding;             /* get_decoded: plain flags decoded here */
    bool pending;              /* result is raw bytes for the decoder */
    uint32_t rflags;           /* flags of a pending result */
    PyObject *result;          /* owned; NULL until set */
    size_t taken;              /* stats: bytes charged against the limit */
    struct mc_fail fail;
};

typedef int (*reply_fn)(void *ctx, const struct mc_reply *r);

/* Feeds the frames in c's buffer to fn.  Returns 1 when fn says the reply
 * is complete, 0 when more is needed (*need set when known), -1 on failure
 * (fail set).  Error lines left by earlier noreply commands, up to their
 * "MN" fence, are skipped. */
static int
parse_frames(Client *self, struct mc_conn *c, reply_fn fn, void *ctx,
             struct mc_fail *fail, size_t *need)
{
    struct mc_reply r;
    *need = 0;
    while (mc_buf_len(&c->rbuf) > 0) {
        ssize_t n = mc_parse(mc_buf_head(&c->rbuf), mc_buf_len(&c->rbuf),
                             self->max_value, &r);
        if (n == MC_NEED_MORE) {
            *need = r.need;
            return 0;
        }
        if (n == MC_EPROTO) {
            if (mc_parse(mc_buf_head(&c->rbuf), mc_buf_len(&c->rbuf),
                         SIZE_MAX, &r) != MC_EPROTO) {
                fail_set(fail, MC_EVALUE);  /* well formed, but too large */
            }
            else {
                fail_proto(fail, "unexpected bytes");
            }
            return -1;
        }
        if (c->flush_oks > 0) {
            mc_buf_consume(&c->rbuf, (size_t)n);
            if (r.kind != MC_OK) {
                fail_proto(fail, "unexpected reply to flush_all");
                return -1;
            }
            c->flush_oks--;
            continue;
        }
        if (c->fences > 0) {
            mc_buf_consume(&c->rbuf, (size_t)n);
            if (r.kind == MC_MN) {
                c->fences--;
                continue;
            }
            if (mc_is_error(r.kind)) {
                continue;
            }
            fail_proto(fail, "unexpected reply after noreply");
            return -1;
        }
        int rc = fn(ctx, &r);
        mc_buf_consume(&c->rbuf, (size_t)n);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int
one_frame(void *ctx, const struct mc_reply *r)
{
    struct one *o = ctx;
    return o->on_frame(o, r);
}

static bool
is_reset(ssize_t n)
{
    return n == MC_EEOF || n == -ECONNRESET || n == -EPIPE;
}

/* Sends o's request to o->srv and reads the reply through o->on_frame.
 * Returns 0, or -1 with o->fail set (a Python exception too when
 * MC_EPYTHON). */
static int
run_one(struct one *o)
{
    Client *self = o->self;
    struct mc_server *srv = o->srv;
    struct iovec iov[6];
    bool retried = false;
    int64_t deadline = mc_now() + self->timeout;
    int picks = 0;
    struct mc_fail connect_fail = {0};

pick:
    if (o->wk != NULL) {
        /* one live server and a plain key: nothing to pick */
        Py_ssize_t idx = (self->nservers == 1 && o->wk->hash == NULL
                          && self->servers[0].dead_until == 0)
                             ? 0
                             : pick_server(self, o->wk);
        if (idx < 0) {
            if (idx == -1 && connect_fail.code != 0) {
                /* The servers died in this call: say why, not just that
                 * none is left. */
                srv = o->srv;
                o->fail = connect_fail;
                return -1;
            }
            fail_set(&o->fail, idx == -2 ? MC_EPYTHON : MC_ENOSERVER);
            return -1;
        }
        o->srv = srv = &self->servers[idx];
        picks++;
    }
again:;
    struct mc_conn *c = conn_take(self, srv, &o->fail);
    if (c == NULL) {
        if (o->wk != NULL && self->failover != MC_FAILOVER_NONE
            && o->fail.code != MC_EPYTHON && o->fail.code != -ENOMEM
            && server_dead(srv) && picks <= self->nservers) {
            if (o->fail.code != MC_EDEAD) {
                connect_fail = o->fail;
            }
            goto pick;          /* the walk now skips the dead server */
        }
        return -1;
    }
    if (c->reused && c->fences == 0 && c->flush_oks == 0
        && mc_conn_stale(c->fd)) {
        /* Input on an idle connection: closed by the server (a restart) or
         * bytes nobody asked for (out of sync).  Nothing was sent on it yet,
         * so another connection, or a new one, takes the request. */
        conn_close(c);
        goto again;
    }
    int iovcnt = o->iovcnt;
    for (int i = 0; i < iovcnt; i++) {
        iov[i] = o->iov[i];
    }
    bool fenced = o->noreply && self->fence;
    if (fenced) {
        iov[iovcnt].iov_base = (void *)fence_line;
        iov[iovcnt].iov_len = sizeof(fence_line) - 1;
        iovcnt++;
    }
    if (fenced) {
        c->fences++;            /* its MN is read before the next reply */
    }
    struct mc_out out = {iov, iovcnt};
    bool got_bytes = false;
    bool first_wait = true;
    size_t need = 0;
    for (;;) {
        if (out.iovcnt == 0 && o->noreply) {
            Py_XSETREF(o->result, Py_NewRef(Py_True));
            conn_give(self, srv, c);
            return 0;
        }
        size_t room = mc_buf_room(need, mc_buf_len(&c->rbuf));
        if (mc_buf_reserve(&c->rbuf, room) < 0) {
            fail_set(&o->fail, -ENOMEM);
            goto error;
        }
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        n = mc_conn_step(c->fd, &out, &c->rbuf, !o->noreply, first_wait,
                         deadline);
        first_wait = false;
        Py_END_ALLOW_THREADS
        if (n > 0) {
            got_bytes = true;
            int rc = parse_frames(self, c, one_frame, o, &o->fail, &need);
            if (rc < 0) {
                goto error;
            }
            if (rc == 1) {
                if (out.iovcnt != 0) {
                    /* Answered before the request was all out. */
                    conn_close(c);
                }
                else {
                    conn_give(self, srv, c);
                }
                return 0;
            }
            if (mc_now() >= deadline) {
                /* Bytes keep coming but the reply is not complete: the
                 * deadline holds whatever the server sends. */
                fail_set(&o->fail, -ETIMEDOUT);
                goto error;
            }
            continue;
        }
        if (n == 0) {
            continue;
        }
        if (n == -EINTR) {
            if (PyErr_CheckSignals() < 0) {
                fail_set(&o->fail, MC_EPYTHON);
                goto error;
            }
            if (mc_now() >= deadline) {
                fail_set(&o->fail, -ETIMEDOUT);
                goto error;
            }
            continue;
        }
        if (is_reset(n) && c->reused && !got_bytes && o->retry_safe
            && !retried) {
            /* A connection the server closed while it sat idle (a restart):
             * nothing of ours was processed; go again on a fresh one. */
            conn_close(c);
            retried = true;
            goto again;
        }
        fail_set(&o->fail, (int)n);
        goto error;
    }

error:
    conn_close(c);
    Py_CLEAR(o->result);
    if (o->fail.code == -ETIMEDOUT) {
        server_timed_out(self, srv);
    }
    return -1;
}

/* Runs o and returns its result, or raises. */
static PyObject *
finish_one(struct one *o)
{
    if (run_one(o) < 0) {
        raise_fail(o->self, o->srv, &o->fail);
        return NULL;
    }
    if (o->result == NULL) {
        Py_RETURN_NONE;
    }
    return o->result;
}

static void
one_init(struct one *o, Client *self, Py_ssize_t server)
{
    o->self = self;
    o->srv = &self->servers[server];
    o->wk = NULL;
    o->iovcnt = 0;
    o->noreply = false;
    o->retry_safe = true;
    o->on_frame = NULL;
    o->key = NULL;
    o->key_len = 0;
    o->with_flags = false;
    o->with_cas = false;
    o->decoding = false;
    o->pending = false;
    o->result = NULL;
    o->taken = 0;
    o->fail.code = 0;
}

/* A request for one key: the server is picked when it runs. */
static void
one_init_key(struct one *o, Client *self, const struct wire_key *wk)
{
    one_init(o, self, 0);
    o->srv = NULL;
    o->wk = wk;
}

static void
one_add(struct one *o, const void *p, size_t n)
{
    o->iov[o->iovcnt].iov_base = (void *)p;
    o->iov[o->iovcnt].iov_len = n;
    o->iovcnt++;
}

/* ---- reply handlers ----------------------------------------------------- */

/* Builds the value object of a VALUE frame: bytes, or a tuple with flags
 * and/or cas. */
static PyObject *
make_value(const struct mc_reply *r, bool with_flags, bool with_cas)
{
    PyObject *v = PyBytes_FromStringAndSize(r->value, (Py_ssize_t)r->value_len);
    if (v == NULL || (!with_flags && !with_cas)) {
        return v;
    }
    PyObject *t;
    if (with_flags && with_cas) {
        t = Py_BuildValue("(NkK)", v, (unsigned long)r->flags,
                          (unsigned long long)r->cas);
    }
    else if (with_flags) {
        t = Py_BuildValue("(Nk)", v, (unsigned long)r->flags);
    }
    else {
        t = Py_BuildValue("(NK)", v, (unsigned long long)r->cas);
    }
    return t;
}

/* python-memcached's simple flags, decoded without calling back into
 * Python: 0 bytes, 16 UTF-8 text, 2 and 4 decimal ints.  Returns a new
 * reference, or NULL with *pending set when the decoder must take it (other
 * flags, or bytes that do not decode), or NULL with an exception set. */
#define FLAG_INTEGER 2
#define FLAG_LONG 4
#define FLAG_TEXT 16

static PyObject *
decode_plain(const struct mc_reply *r, bool *pending)
{
    *pending = false;
    const char *p = r->value;
    Py_ssize_t n = (Py_ssize_t)r->value_len;
    if (r->flags == 0) {
        return PyBytes_FromStringAndSize(p, n);
    }
    if (r->flags == FLAG_TEXT) {
        PyObject *v = PyUnicode_DecodeUTF8(p, n, NULL);
        if (v != NULL || !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            return v;
        }
        PyErr_Clear();
    }
    else if ((r->flags == FLAG_INTEGER || r->flags == FLAG_LONG) && n > 0
             && n <= 18) {
        long long v = 0;
        Py_ssize_t i = p[0] == '-';
        bool ok = i < n;
        for (; i < n && ok; i++) {
            unsigned d = (unsigned char)p[i] - '0';
            ok = d <= 9;
            v = v * 10 + d;
        }
        if (ok) {
            return PyLong_FromLongLong(p[0] == '-' ? -v : v);
        }
    }
    *pending = true;
    return NULL;
}

#define FLAG_PICKLE 1

/* unpickle(data) for a plain pickle (flags 1), the common case of a
 * serializing layer.  Returns NULL without an exception set when it failed,
 * so that the decoder gets the value (and reports the failure). */
static PyObject *
fast_unpickle(PyObject *unpickle, PyObject *data, uint32_t flags)
{
    if (unpickle == NULL || unpickle == Py_None || flags != FLAG_PICKLE) {
        return NULL;
    }
    PyObject *v = PyObject_CallOneArg(unpickle, data);
    if (v == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_Clear();
    }
    return v;
}

/* Runs the Python decoder on raw bytes: decoder(key, data, flags,
 * default). */
static PyObject *
call_decoder(PyObject *decoder, PyObject *key, PyObject *data,
             uint32_t flags, PyObject *dflt)
{
    PyObject *f = PyLong_FromUnsignedLong(flags);
    if (f == NULL) {
        return NULL;
    }
    PyObject *args[4] = {key, data, f, dflt};
    PyObject *v = PyObject_Vectorcall(decoder, args, 4, NULL);
    Py_DECREF(f);
    return v;
}

static int
unexpected(struct one *o, const struct mc_reply *r)
{
    if (mc_is_error(r->kind)) {
        fail_reply(&o->fail, r);
    }
    else {
        fail_proto(&o->fail, "reply does not fit the command");
    }
    return -1;
}

static int
on_get(struct one *o, const struct mc_reply *r)
{
    if (r->kind == MC_END) {
        return 1;
    }
    if (r->kind != MC_VALUE) {
        return unexpected(o, r);
    }
    if (o->result != NULL || r->key_len != o->key_len
        || memcmp(r->key, o->key, o->key_len) != 0) {
        fail_proto(&o->fail, "VALUE for a key that was not requested");
        return -1;
    }
    if (o->with_cas && !r->has_cas) {
        fail_proto(&o->fail, "VALUE without cas");
        return -1;
    }
    if (o->decoding) {
        o->result = decode_plain(r, &o->pending);
        if (o->pending) {
            o->rflags = r->flags;
            o->result = PyBytes_FromStringAndSize(r->value,
                                                  (Py_ssize_t)r->value_len);
        }
    }
    else {
        o->result = make_value(r, o->with_flags, o->with_cas);
    }
    if (o->result == NULL) {
        fail_set(&o->fail, MC_EPYTHON);
        return -1;
    }
    return 0;
}

static int
set_result(struct one *o, PyObject *v)
{
    Py_XSETREF(o->result, Py_NewRef(v));
    return 1;
}

static int
on_store(struct one *o, const struct mc_reply *r)
{
    switch (r->kind) {
    case MC_STORED:
        return set_result(o, Py_True);
    case MC_NOT_STORED:
    case MC_EXISTS:
        return set_result(o, Py_False);
    case MC_NOT_FOUND:
        return set_result(o, Py_None);
    default:
        return unexpected(o, r);
    }
}

static int
on_delete(struct one *o, const struct mc_reply *r)
{
    if (r->kind == MC_DELETED) {
        return set_result(o, Py_True);
    }
    if (r->kind == MC_NOT_FOUND) {
        return set_result(o, Py_False);
    }
    return unexpected(o, r);
}

static int
on_touch(struct one *o, const struct mc_reply *r)
{
    if (r->kind == MC_TOUCHED) {
        return set_result(o, Py_True);
    }
    if (r->kind == MC_NOT_FOUND) {
        return set_result(o, Py_False);
    }
    return unexpected(o, r);
}

static int
on_arith(struct one *o, const struct mc_reply *r)
{
    if (r->kind == MC_NOT_FOUND) {
        return set_result(o, Py_None);
    }
    if (r->kind != MC_NUMBER) {
        return unexpected(o, r);
    }
    o->result = PyLong_FromUnsignedLongLong(r->number);
    if (o->result == NULL) {
        fail_set(&o->fail, MC_EPYTHON);
        return -1;
    }
    return 1;
}

static int
on_ok(struct one *o, const struct mc_reply *r)
{
    if (r->kind == MC_OK) {
        return set_result(o, Py_True);
    }
    return unexpected(o, r);
}

static int
on_version(struct one *o, const struct mc_reply *r)
{
    if (r->kind != MC_VERSION) {
        return unexpected(o, r);
    }
    o->result = PyUnicode_DecodeUTF8(r->text, (Py_ssize_t)r->text_len,
                                     "replace");
    if (o->result == NULL) {
        fail_set(&o->fail, MC_EPYTHON);
        return -1;
    }
    return 1;
}

static int
on_stats(struct one *o, const struct mc_reply *r)
{
    if (o->result == NULL) {
        o->result = PyDict_New();
        if (o->result == NULL) {
            fail_set(&o->fail, MC_EPYTHON);
            return -1;
        }
    }
    if (r->kind == MC_END || r->kind == MC_RESET || r->kind == MC_OK) {
        return 1;
    }
    if (r->kind != MC_STAT) {
        return unexpected(o, r);
    }
    /* A reply's memory is bounded: each line is charged its text and the
     * cost of a dict entry. */
    o->taken += 64 + r->key_len + r->text_len;
    if (o->taken > MC_MAX_STATS_REPLY) {
        fail_proto(&o->fail, "stats reply over the 8 MiB limit");
        return -1;
    }
    PyObject *k = PyUnicode_DecodeUTF8(r->key, (Py_ssize_t)r->key_len,
                                       "replace");
    PyObject *v = PyUnicode_DecodeUTF8(r->text, (Py_ssize_t)r->text_len,
                                       "replace");
    int rc = (k && v) ? PyDict_SetItem(o->result, k, v) : -1;
    Py_XDECREF(k);
    Py_XDECREF(v);
    if (rc < 0) {
        fail_set(&o->fail, MC_EPYTHON);
        return -1;
    }
    return 0;
}

/* Refuses a command a proxy in front would answer by closing the
 * connection.  Returns -1 with ClientError set, 0 when allowed. */
static int
proxy_refuses(Client *self, const char *cmd)
{
    if (!self->proxy) {
        return 0;
    }
    PyErr_Format(self->state->ClientError, "%s is not supported through "
                 "twemproxy (it closes the connection on it)", cmd);
    return -1;
}

/* ---- single-key methods ------------------------------------------------- */

static bool
parse_with_flags(PyObject *obj, bool *out)
{
    return to_bool(obj, out) == 0;
}

/* get, gets, gat, gats. */
static PyObject *
retrieve(Client *self, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames, const char *cmd, bool with_cas, bool touch)
{
    static const char *const names_get[] = {"key", "with_flags", NULL};
    static const char *const names_gat[] = {"key", "exptime", "with_flags",
                                            NULL};
    PyObject *a[3];
    PyObject *key_obj, *flags_obj;
    int64_t exptime = 0;
    if (touch && proxy_refuses(self, cmd) < 0) {
        return NULL;
    }
    if (kwnames == NULL && nargs == 1 + touch) {
        key_obj = args[0];
        flags_obj = NULL;
        if (touch && to_exptime(args[1], &exptime) < 0) {
            return NULL;
        }
    }
    else {
        if (parse_args(cmd, args, nargs, kwnames,
                       touch ? names_gat : names_get, 1 + touch, 1 + touch,
                       a) < 0) {
            return NULL;
        }
        key_obj = a[0];
        flags_obj = a[1 + touch];
        if (touch && to_exptime(a[1], &exptime) < 0) {
            return NULL;
        }
    }
    struct wire_key wk;
    if (check_key(self, key_obj, "", 0, &wk) < 0) {
        return NULL;
    }
    struct one o;
    one_init_key(&o, self, &wk);
    if (!parse_with_flags(flags_obj, &o.with_flags)) {
        return NULL;
    }
    char hdr[MC_MAX_HEADER];
    size_t n = mc_fmt_get(hdr, cmd, touch, exptime, wk.key,
                          (size_t)wk.key_len);
    one_add(&o, hdr, n);
    o.on_frame = on_get;
    o.key = wk.key;
    o.key_len = (size_t)wk.key_len;
    o.with_cas = with_cas;
    return finish_one(&o);
}

static PyObject *
Client_get(Client *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    self->calls[CALL_GET]++;
    return retrieve(self, args, nargs, kwnames, "get", false, false);
}

static PyObject *
Client_gets(Client *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    self->calls[CALL_GETS]++;
    return retrieve(self, args, nargs, kwnames, "gets", true, false);
}

static PyObject *
Client_gat(Client *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    self->calls[CALL_GAT]++;
    return retrieve(self, args, nargs, kwnames, "gat", false, true);
}

static PyObject *
Client_gats(Client *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    self->calls[CALL_GATS]++;
    return retrieve(self, args, nargs, kwnames, "gats", true, true);
}

/* get_decoded(key, default, decoder[, unpickle]): the hook of
 * serializing layers. */
static PyObject *
Client_get_decoded(Client *self, PyObject *const *args, Py_ssize_t nargs)
{
    self->calls[CALL_GET]++;
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "get_decoded(key, default, decoder, unpickle=None) "
                        "takes 3 or 4 arguments");
        return NULL;
    }
    struct wire_key wk;
    if (check_key(self, args[0], "", 0, &wk) < 0) {
        return NULL;
    }
    struct one o;
    one_init_key(&o, self, &wk);
    char hdr[MC_MAX_HEADER];
    one_add(&o, hdr, mc_fmt_get(hdr, "get", false, 0, wk.key,
                                (size_t)wk.key_len));
    o.on_frame = on_get;
    o.key = wk.key;
    o.key_len = (size_t)wk.key_len;
    o.decoding = true;
    if (run_one(&o) < 0) {
        raise_fail(self, o.srv, &o.fail);
        return NULL;
    }
    if (o.result == NULL) {
        return Py_NewRef(args[1]);
    }
    if (!o.pending) {
        return o.result;
    }
    PyObject *v = fast_unpickle(nargs == 4 ? args[3] : NULL, o.result,
                                o.rflags);
    if (v == NULL && !PyErr_Occurred()) {
        v = call_decoder(args[2], args[0], o.result, o.rflags, args[1]);
    }
    Py_DECREF(o.result);
    return v;
}

static PyObject *
store(Client *self, PyObject *const *args, Py_ssize_t nargs,
      PyObject *kwnames, enum mc_store cmd, const char *fname)
{
    self->calls[CALL_SET + (int)cmd]++;
    static const char *const names[] = {"key", "value", "exptime", "flags",
                                        "noreply", NULL};
    static const char *const names_cas[] = {"key", "value", "cas", "exptime",
                                            "flags", "noreply", NULL};
    PyObject *a[6] = {NULL};
    bool is_cas = cmd == MC_CAS;
    PyObject **rest = a + 2 + is_cas;
    if (kwnames == NULL && nargs == 2 && !is_cas) {
        a[0] = args[0];
        a[1] = args[1];
    }
    else if (parse_args(fname, args, nargs, kwnames,
                        is_cas ? names_cas : names, 2 + is_cas, 5 + is_cas,
                        a) < 0) {
        return NULL;
    }
    int64_t exptime;
    uint32_t flags;
    uint64_t cas = 0;
    bool noreply;
    struct wire_key wk;
    if (check_key(self, a[0], "", 0, &wk) < 0
        || (is_cas && to_uint64(a[2], "cas", &cas) < 0)
        || to_exptime(rest[0], &exptime) < 0 || to_flags(rest[1], &flags) < 0
        || to_bool(rest[2], &noreply) < 0) {
        return NULL;
    }
    Py_buffer view;
    if (get_value(self, a[1], &view) < 0) {
        return NULL;
    }
    struct one o;
    one_init_key(&o, self, &wk);
    char hdr[MC_MAX_HEADER];
    size_t n = mc_fmt_store(hdr, cmd, wk.key, (size_t)wk.key_len, flags,
                            exptime, (size_t)view.len, cas, noreply);
    one_add(&o, hdr, n);
    if (view.len > 0) {
        one_add(&o, view.buf, (size_t)view.len);
    }
    one_add(&o, crlf, 2);
    o.noreply = noreply;
    o.retry_safe = cmd == MC_SET || cmd == MC_REPLACE;
    o.on_frame = on_store;
    PyObject *res = finish_one(&o);
    PyBuffer_Release(&view);
    if (res == Py_None && !is_cas) {
        /* NOT_FOUND answers only cas. */
        Py_DECREF(res);
        PyErr_Format(self->state->ProtocolError,
                     "%s: NOT_FOUND in reply to %s", o.srv->name, fname);
        return NULL;
    }
    return res;
}

#define STORE_METHOD(fn, cmd, name)                                        \
    static PyObject *                                                      \
    fn(Client *self, PyObject *const *args, Py_ssize_t nargs,              \
       PyObject *kwnames)                                                  \
    {                                                                      \
        return store(self, args, nargs, kwnames, cmd, name);               \
    }

STORE_METHOD(Client_set, MC_SET, "set")
STORE_METHOD(Client_add, MC_ADD, "add")
STORE_METHOD(Client_replace, MC_REPLACE, "replace")
STORE_METHOD(Client_append, MC_APPEND, "append")
STORE_METHOD(Client_prepend, MC_PREPEND, "prepend")
STORE_METHOD(Client_cas, MC_CAS, "cas")

static PyObject *
Client_delete(Client *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    self->calls[CALL_DELETE]++;
    static const char *const names[] = {"key", "noreply", NULL};
    PyObject *a[2];
    bool noreply;
    struct wire_key wk;
    if (parse_args("delete", args, nargs, kwnames, names, 1, 2, a) < 0
        || check_key(self, a[0], "", 0, &wk) < 0
        || to_bool(a[1], &noreply) < 0) {
        return NULL;
    }
    struct one o;
    one_init_key(&o, self, &wk);
    char hdr[MC_MAX_HEADER];
    one_add(&o, hdr, mc_fmt_delete(hdr, wk.key, (size_t)wk.key_len, noreply));
    o.noreply = noreply;
    o.on_frame = on_delete;
    return finish_one(&o);
}

static PyObject *
arith(Client *self, PyObject *const *args, Py_ssize_t nargs,
      PyObject *kwnames, bool decr)
{
    self->calls[decr ? CALL_DECR : CALL_INCR]++;
    static const char *const names[] = {"key", "delta", "noreply", NULL};
    PyObject *a[3];
    bool noreply;
    uint64_t delta = 1;
    struct wire_key wk;
    if (parse_args(decr ? "decr" : "incr", args, nargs, kwnames, names, 1, 3,
                   a) < 0
        || check_key(self, a[0], "", 0, &wk) < 0
        || (a[1] != NULL && to_uint64(a[1], "delta", &delta) < 0)
        || to_bool(a[2], &noreply) < 0) {
        return NULL;
    }
    struct one o;
    one_init_key(&o, self, &wk);
    char hdr[MC_MAX_HEADER];
    one_add(&o, hdr, mc_fmt_arith(hdr, decr, wk.key, (size_t)wk.key_len,
                                  delta, noreply));
    o.noreply = noreply;
    o.retry_safe = false;
    o.on_frame = on_arith;
    PyObject *res = finish_one(&o);
    if (res == Py_True) {
        /* noreply: the new value is unknown. */
        Py_DECREF(res);
        Py_RETURN_NONE;
    }
    return res;
}

static PyObject *
Client_incr(Client *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    return arith(self, args, nargs, kwnames, false);
}

static PyObject *
Client_decr(Client *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    return arith(self, args, nargs, kwnames, true);
}

static PyObject *
Client_touch(Client *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    self->calls[CALL_TOUCH]++;
    static const char *const names[] = {"key", "exptime", "noreply", NULL};
    PyObject *a[3];
    bool noreply;
    int64_t exptime;
    struct wire_key wk;
    if (parse_args("touch", args, nargs, kwnames, names, 2, 3, a) < 0
        || check_key(self, a[0], "", 0, &wk) < 0
        || to_exptime(a[1], &exptime) < 0 || to_bool(a[2], &noreply) < 0) {
        return NULL;
    }
    struct one o;
    one_init_key(&o, self, &wk);
    char hdr[MC_MAX_HEADER];
    one_add(&o, hdr, mc_fmt_touch(hdr, wk.key, (size_t)wk.key_len, exptime,
                                  noreply));
    o.noreply = noreply;
    o.on_frame = on_touch;
    return finish_one(&o);
}

static PyObject *
Client_server_index(Client *self, PyObject *key)
{
    struct wire_key wk;
    if (check_key(self, key, "", 0, &wk) < 0) {
        return NULL;
    }
    Py_ssize_t idx = pick_server(self, &wk);
    if (idx == -2) {
        return NULL;
    }
    if (idx == -1) {
        PyErr_SetString(self->state->ConnectionError,
                        "no live server for this key");
        return NULL;
    }
    return PyLong_FromSsize_t(idx);
}

/* ---- commands sent to every server -------------------------------------- */

/* Runs the same request on every server, collecting each result in a dict
 * keyed by server name (or a list of (name, result) pairs when as_list).
 * Raises the first failure after trying all, with .partial set. */
static PyObject *
run_all(Client *self, struct iovec *iov, int iovcnt, bool noreply,
        frame_fn on_frame, bool as_list)
{
    PyObject *acc = as_list ? PyList_New(0) : PyDict_New();
    if (acc == NULL) {
        return NULL;
    }
    struct mc_fail first = {0};
    Py_ssize_t first_srv = -1;
    for (Py_ssize_t i = 0; i < self->nservers; i++) {
        struct one o;
        one_init(&o, self, i);
        memcpy(o.iov, iov, sizeof(*iov) * (size_t)iovcnt);
        o.iovcnt = iovcnt;
        o.noreply = noreply;
        o.on_frame = on_frame;
        if (run_one(&o) < 0) {
            if (o.fail.code == MC_EPYTHON) {
                Py_DECREF(acc);
                return NULL;
            }
            if (first_srv < 0) {
                first = o.fail;
                first_srv = i;
            }
            continue;
        }
        PyObject *name = PyTuple_GET_ITEM(self->names, i);
        PyObject *res = o.result ? o.result : Py_NewRef(Py_None);
        int rc;
        if (as_list) {
            PyObject *pair = PyTuple_Pack(2, name, res);
            rc = pair ? PyList_Append(acc, pair) : -1;
            Py_XDECREF(pair);
        }
        else {
            rc = PyDict_SetItem(acc, name, res);
        }
        Py_DECREF(res);
        if (rc < 0) {
            Py_DECREF(acc);
            return NULL;
        }
    }
    if (first_srv >= 0) {
        raise_fail(self, &self->servers[first_srv], &first);
        attach_partial(acc);
        Py_DECREF(acc);
        return NULL;
    }
    return acc;
}

static PyObject *
Client_flush_all(Client *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    static const char *const names[] = {"delay", "noreply", NULL};
    PyObject *a[2];
    int64_t delay = 0;
    bool noreply;
    if (proxy_refuses(self, "flush_all") < 0) {
        return NULL;
    }
    if (parse_args("flush_all", args, nargs, kwnames, names, 0, 2, a) < 0
        || (a[0] != NULL
            && to_int64(a[0], "delay", 0, EXPTIME_MAX, &delay) < 0)
        || to_bool(a[1], &noreply) < 0) {
        return NULL;
    }
    char hdr[64];
    size_t n = (size_t)snprintf(hdr, sizeof(hdr), "flush_all");
    if (delay > 0) {
        hdr[n++] = ' ';
        n += mc_fmt_i64(hdr + n, delay);
    }
    n += (size_t)snprintf(hdr + n, sizeof(hdr) - n, "%s\r\n",
                          noreply ? " noreply" : "");
    struct iovec iov = {hdr, n};
    PyObject *res = run_all(self, &iov, 1, noreply, on_ok, false);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_TRUE;
}

static PyObject *
Client_version(Client *self, PyObject *Py_UNUSED(ignored))
{
    static char line[] = "version\r\n";
    struct iovec iov = {line, sizeof(line) - 1};
    return run_all(self, &iov, 1, false, on_version, false);
}

static PyObject *
Client_get_stats(Client *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    static const char *const names[] = {"args", NULL};
    PyObject *a[1];
    if (proxy_refuses(self, "stats") < 0) {
        return NULL;
    }
    if (parse_args("get_stats", args, nargs, kwnames, names, 0, 1, a) < 0) {
        return NULL;
    }
    const char *extra = "";
    Py_ssize_t extra_len = 0;
    if (a[0] != NULL && a[0] != Py_None) {
        if (key_bytes(a[0], &extra, &extra_len) < 0) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < extra_len; i++) {
            unsigned char ch = (unsigned char)extra[i];
            if (ch < 0x20 || ch == 0x7f) {
                PyErr_SetString(PyExc_ValueError,
                                "stats arguments contain a control "
                                "character");
                return NULL;
            }
        }
        if (extra_len > 200) {
            PyErr_SetString(PyExc_ValueError, "stats arguments too long");
            return NULL;
        }
    }
    char line[256];
    size_t n = (size_t)snprintf(line, sizeof(line), "stats%s%.*s\r\n",
                                extra_len ? " " : "", (int)extra_len, extra);
    struct iovec iov = {line, n};
    return run_all(self, &iov, 1, false, on_stats, true);
}

/* ---- multi-key calls ---------------------------------------------------- */

enum multi_kind { MULTI_GET, MULTI_SET, MULTI_DELETE };

struct item {
    PyObject *orig;            /* borrowed: the key as given */
    struct wire_key wk;
    const char *val;           /* MULTI_SET: the value's bytes */
    size_t val_len;
    Py_ssize_t view;           /* index in multi.views, or -1 */
    uint32_t flags;
    Py_ssize_t server;
};

/* One server's share of a multi-key call. */
struct part {
    struct mc_server *srv;
    struct mc_conn *conn;
    Py_ssize_t *items;         /* indexes into the items array, in order */
    Py_ssize_t nitems;
    Py_ssize_t cursor;         /* next item a reply should match */
    int ends_left;             /* MULTI_GET: END lines still to come */
    struct mc_buf req;         /* request text */
    struct iovec *iov;
    int niov;
    struct mc_out out;
    bool fenced;
    bool done;
    size_t need;
    struct mc_fail fail;
};

struct multi {
    Client *self;
    enum multi_kind kind;
    struct item *items;
    Py_ssize_t nitems;
    struct part *parts;
    Py_ssize_t nparts;
    Py_ssize_t *order;
    bool noreply;
    bool with_flags;
    bool with_cas;
    bool decoding;             /* get_multi_decoded */
    PyObject *pending;         /* keys whose values wait for the decoder */
    Py_buffer *views;          /* MULTI_SET values that are not bytes */
    Py_ssize_t nviews;
    struct mc_fail connect_fail; /* a connect that failed while placing */
    struct mc_server *connect_srv;
    PyObject *result;          /* dict (get), list (set), bool (delete) */
};

static inline int
req_put(struct mc_buf *b, const char *p, size_t n)
{
    if (b->cap - b->end < n && mc_buf_reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->end, p, n);
    b->end += n;
    return 0;
}

static inline int
req_key(struct mc_buf *b, const struct wire_key *wk)
{
    return req_put(b, wk->pre, (size_t)wk->pre_len)
           | req_put(b, wk->key, (size_t)wk->key_len);
}

/* Writes one server's request text and its iovecs. */
static int
build_part(struct multi *m, struct part *p, const char *cmd,
           int64_t exptime, bool touch)
{
    struct mc_buf *b = &p->req;
    size_t room = 64;
    for (Py_ssize_t i = 0; i < p->nitems; i++) {
        const struct item *it = &m->items[p->items[i]];
        room += (size_t)(it->wk.pre_len + it->wk.key_len) + 80;
    }
    if (mc_buf_reserve(b, room) < 0) {      /* usually the only allocation */
        return -1;
    }
    if (m->kind == MULTI_GET) {
        size_t limit = touch ? MC_GAT_CHUNK : MC_GET_CHUNK;
        size_t line = 0;
        for (Py_ssize_t i = 0; i < p->nitems; i++) {
            struct item *it = &m->items[p->items[i]];
            size_t klen = (size_t)(it->wk.pre_len + it->wk.key_len);
            if (line > 0 && line + klen + 1 > limit) {
                if (req_put(b, crlf, 2) < 0) {
                    return -1;
                }
                line = 0;
            }
            if (line == 0) {
                char hdr[64];
                size_t n = (size_t)snprintf(hdr, sizeof(hdr), "%s", cmd);
                if (touch) {
                    hdr[n++] = ' ';
                    n += mc_fmt_i64(hdr + n, exptime);
                }
                if (req_put(b, hdr, n) < 0) {
                    return -1;
                }
                line = n;
                p->ends_left++;
            }
            if (req_put(b, " ", 1) < 0 || req_key(b, &it->wk) < 0) {
                return -1;
            }
            line += klen + 1;
        }
        if (req_put(b, crlf, 2) < 0) {
            return -1;
        }
    }
    else if (m->kind == MULTI_DELETE) {
        for (Py_ssize_t i = 0; i < p->nitems; i++) {
            struct item *it = &m->items[p->items[i]];
            if (req_put(b, "delete ", 7) < 0 || req_key(b, &it->wk) < 0
                || (m->noreply && req_put(b, " noreply", 8) < 0)
                || req_put(b, crlf, 2) < 0) {
                return -1;
            }
        }
    }
    if (m->kind != MULTI_SET) {
        if (p->fenced && req_put(b, fence_line, 4) < 0) {
            return -1;
        }
        p->iov = PyMem_Malloc(sizeof(struct iovec));
        if (p->iov == NULL) {
            return -1;
        }
        p->iov[0].iov_base = b->data + b->start;
        p->iov[0].iov_len = mc_buf_len(b);
        p->niov = 1;
        return 0;
    }
    /* MULTI_SET: header, value, CRLF + next header, value, ..., CRLF. */
    size_t *offs = PyMem_Malloc(sizeof(size_t) * (size_t)(p->nitems + 1));
    p->iov = PyMem_Malloc(sizeof(struct iovec) * (size_t)(2 * p->nitems + 1));
    if (offs == NULL || p->iov == NULL) {
        PyMem_Free(offs);
        return -1;
    }
    /* The header lines are written in place ("set <key> <flags> <exptime>
     * <bytes>[ noreply]\r\n", as mc_fmt_store writes them): the room was
     * reserved above; the exptime is the same for every key. */
    char exp_text[24];
    size_t exp_len = mc_fmt_i64(exp_text, exptime);
    for (Py_ssize_t i = 0; i < p->nitems; i++) {
        struct item *it = &m->items[p->items[i]];
        offs[i] = b->end;
        char *w = b->data + b->end;
        if (i > 0) {
            *w++ = '\r';
            *w++ = '\n';
        }
        memcpy(w, "set ", 4);
        w += 4;
        memcpy(w, it->wk.pre, (size_t)it->wk.pre_len);
        w += it->wk.pre_len;
        memcpy(w, it->wk.key, (size_t)it->wk.key_len);
        w += it->wk.key_len;
        *w++ = ' ';
        w += mc_fmt_u64(w, it->flags);
        *w++ = ' ';
        memcpy(w, exp_text, exp_len);
        w += exp_len;
        *w++ = ' ';
        w += mc_fmt_u64(w, it->val_len);
        if (m->noreply) {
            memcpy(w, " noreply", 8);
            w += 8;
        }
        *w++ = '\r';
        *w++ = '\n';
        b->end = (size_t)(w - b->data);
    }
    offs[p->nitems] = b->end;
    if (req_put(b, crlf, 2) < 0
        || (p->fenced && req_put(b, fence_line, 4) < 0)) {
        PyMem_Free(offs);
        return -1;
    }
    int k = 0;
    for (Py_ssize_t i = 0; i < p->nitems; i++) {
        struct item *it = &m->items[p->items[i]];
        p->iov[k].iov_base = b->data + offs[i];
        p->iov[k].iov_len = offs[i + 1] - offs[i];
        k++;
        if (it->val_len > 0) {
            p->iov[k].iov_base = (void *)it->val;
            p->iov[k].iov_len = it->val_len;
            k++;
        }
    }
    p->iov[k].iov_base = b->data + offs[p->nitems];
    p->iov[k].iov_len = b->end - offs[p->nitems];
    k++;
    p->niov = k;
    PyMem_Free(offs);
    return 0;
}

struct part_ctx {
    struct multi *m;
    struct part *p;
};

static bool
key_matches(const struct item *it, const struct mc_reply *r)
{
    size_t pre = (size_t)it->wk.pre_len;
    return r->key_len == pre + (size_t)it->wk.key_len
           && memcmp(r->key, it->wk.pre, pre) == 0
           && memcmp(r->key + pre, it->wk.key, (size_t)it->wk.key_len) == 0;
}

static int
part_frame(void *ctx, const struct mc_reply *r)
{
    struct multi *m = ((struct part_ctx *)ctx)->m;
    struct part *p = ((struct part_ctx *)ctx)->p;
    if (mc_is_error(r->kind)
        && !(m->kind == MULTI_SET && r->kind == MC_SERVER_ERROR)) {
        fail_reply(&p->fail, r);
        return -1;
    }
    if (m->kind == MULTI_GET) {
        if (r->kind == MC_END) {
            return --p->ends_left == 0;
        }
        if (r->kind != MC_VALUE) {
            fail_proto(&p->fail, "reply does not fit the command");
            return -1;
        }
        while (p->cursor < p->nitems
               && !key_matches(&m->items[p->items[p->cursor]], r)) {
            p->cursor++;
        }
        if (p->cursor == p->nitems) {
            fail_proto(&p->fail, "VALUE for a key that was not requested");
            return -1;
        }
        if (m->with_cas && !r->has_cas) {
            fail_proto(&p->fail, "VALUE without cas");
            return -1;
        }
        struct item *it = &m->items[p->items[p->cursor++]];
        PyObject *v;
        if (m->decoding) {
            bool pending;
            v = decode_plain(r, &pending);
            if (pending) {
                /* For the decoder, after the call: (key, data, flags) in
                 * a list of our own, and a placeholder in the result that
                 * keeps the key's place.  Nothing in the result is ever
                 * taken for raw data: a stored tuple stays a value. */
                PyObject *entry = Py_BuildValue(
                    "(Oy#k)", it->orig, r->value, (Py_ssize_t)r->value_len,
                    (unsigned long)r->flags);
                int rc = entry ? PyList_Append(m->pending, entry) : -1;
                Py_XDECREF(entry);
                v = rc < 0 ? NULL : Py_NewRef(Py_None);
            }
        }
        else {
            v = make_value(r, m->with_flags, m->with_cas);
        }
        if (v == NULL || PyDict_SetItem(m->result, it->orig, v) < 0) {
            Py_XDECREF(v);
            fail_set(&p->fail, MC_EPYTHON);
            return -1;
        }
        Py_DECREF(v);
        return 0;
    }
    struct item *it = &m->items[p->items[p->cursor++]];
    bool ok;
    if (m->kind == MULTI_SET) {
        if (r->kind != MC_STORED && r->kind != MC_NOT_STORED
            && r->kind != MC_EXISTS && r->kind != MC_NOT_FOUND
            && r->kind != MC_SERVER_ERROR) {
            fail_proto(&p->fail, "reply does not fit the command");
            return -1;
        }
        ok = r->kind == MC_STORED;
        if (!ok && PyList_Append(m->result, it->orig) < 0) {
            fail_set(&p->fail, MC_EPYTHON);
            return -1;
        }
    }
    else {
        if (r->kind != MC_DELETED && r->kind != MC_NOT_FOUND) {
            fail_proto(&p->fail, "reply does not fit the command");
            return -1;
        }
        if (r->kind == MC_NOT_FOUND) {
            Py_SETREF(m->result, Py_NewRef(Py_False));
        }
    }
    return p->cursor == p->nitems;
}

static void
part_fail(struct part *p, int code)
{
    if (code != 0) {
        fail_set(&p->fail, code);
    }
    if (p->conn != NULL) {
        conn_close(p->conn);
        p->conn = NULL;
    }
    p->done = true;
}

static void
part_finish(Client *self, struct part *p)
{
    if (p->out.iovcnt != 0) {
        conn_close(p->conn);
    }
    else {
        conn_give(self, p->srv, p->conn);
    }
    p->conn = NULL;
    p->done = true;
}

/* Writes every server's request, then reads all the replies as they come,
 * polling all the sockets at once, until each part is complete or failed or
 * the deadline passes.  Returns 0, or -1 with a Python exception set
 * (signals, memory); per-server failures are left in the parts. */
static int
multi_run(struct multi *m)
{
    Client *self = m->self;
    int64_t deadline = mc_now() + self->timeout;
    struct pollfd *pfd = PyMem_Malloc(sizeof(*pfd) * (size_t)m->nparts);
    Py_ssize_t *map = PyMem_Malloc(sizeof(*map) * (size_t)m->nparts);
    ssize_t *io = PyMem_Malloc(sizeof(*io) * (size_t)m->nparts);
    if (pfd == NULL || map == NULL || io == NULL) {
        PyMem_Free(pfd);
        PyMem_Free(map);
        PyMem_Free(io);
        PyErr_NoMemory();
        return -1;
    }
    int rc = 0;
    for (;;) {
        nfds_t np = 0;
        for (Py_ssize_t i = 0; i < m->nparts; i++) {
            struct part *p = &m->parts[i];
            if (p->done) {
                continue;
            }
            if (m->noreply && p->out.iovcnt == 0) {
                part_finish(self, p);
                continue;
            }
            size_t room = mc_buf_room(p->need, mc_buf_len(&p->conn->rbuf));
            if (mc_buf_reserve(&p->conn->rbuf, room) < 0) {
                part_fail(p, -ENOMEM);
                continue;
            }
            pfd[np].fd = p->conn->fd;
            pfd[np].events = m->noreply ? POLLOUT
                             : POLLIN | (p->out.iovcnt ? POLLOUT : 0);
            pfd[np].revents = 0;
            map[np] = i;
            np++;
        }
        if (np == 0) {
            break;
        }
        int prc, perr = 0;
        Py_BEGIN_ALLOW_THREADS
        for (nfds_t k = 0; k < np; k++) {
            struct part *p = &m->parts[map[k]];
            io[k] = 0;
            if (p->out.iovcnt > 0) {
                ssize_t n = mc_conn_send(p->conn->fd, &p->out);
                if (n < 0 && n != -EAGAIN) {
                    io[k] = n;
                    pfd[k].fd = -1;  /* poll ignores it */
                }
                else if (p->out.iovcnt == 0 && m->noreply) {
                    pfd[k].fd = -1;
                }
            }
        }
        nfds_t active = 0;
        for (nfds_t k = 0; k < np; k++) {
            active += pfd[k].fd >= 0;
        }
        prc = active ? poll(pfd, np, mc_poll_timeout(deadline)) : 0;
        if (prc < 0) {
            perr = -errno;
        }
        for (nfds_t k = 0; prc > 0 && k < np; k++) {
            if (pfd[k].fd >= 0
                && (pfd[k].revents & (POLLIN | POLLERR | POLLHUP))) {
                struct part *p = &m->parts[map[k]];
                ssize_t n = mc_conn_recv(p->conn->fd, &p->conn->rbuf);
                io[k] = n == -EAGAIN ? 0 : n;
            }
        }
        Py_END_ALLOW_THREADS
        if (perr == -EINTR) {
            if (PyErr_CheckSignals() < 0) {
                rc = -1;
                break;
            }
            perr = 0;           /* io[] holds the sends' results only */
        }
        for (nfds_t k = 0; k < np; k++) {
            struct part *p = &m->parts[map[k]];
            if (io[k] < 0) {
                part_fail(p, (int)io[k]);
                continue;
            }
            if (perr < 0) {
                part_fail(p, perr);
                continue;
            }
            if (io[k] == 0) {
                continue;
            }
            struct part_ctx ctx = {m, p};
            int r = parse_frames(self, p->conn, part_frame, &ctx, &p->fail,
                                 &p->need);
            if (r < 0) {
                if (p->fail.code == MC_EPYTHON) {
                    rc = -1;
                    goto done;
                }
                part_fail(p, 0);
            }
            else if (r == 1) {
                part_finish(self, p);
            }
        }
        if (mc_now() >= deadline) {
            /* Whatever is still arriving, the call ends at its deadline. */
            for (Py_ssize_t i = 0; i < m->nparts; i++) {
                if (!m->parts[i].done) {
                    part_fail(&m->parts[i], -ETIMEDOUT);
                }
            }
        }
    }
done:
    PyMem_Free(pfd);
    PyMem_Free(map);
    PyMem_Free(io);
    return rc;
}

static void
multi_clear(struct multi *m)
{
    for (Py_ssize_t i = 0; i < m->nparts; i++) {
        struct part *p = &m->parts[i];
        if (p->conn != NULL) {
            conn_close(p->conn);
        }
        mc_buf_free(&p->req);
        PyMem_Free(p->iov);
    }
    for (Py_ssize_t i = 0; i < m->nitems; i++) {
        if (m->items[i].view >= 0) {
            PyBuffer_Release(&m->views[m->items[i].view]);
        }
    }
    PyMem_Free(m->parts);
    PyMem_Free(m->items);
    PyMem_Free(m->views);
    PyMem_Free(m->order);
    Py_CLEAR(m->result);
    Py_CLEAR(m->pending);
}

/* Runs the decoder on the values left pending in m->result: each becomes
 * decoder(key, data, flags, omit), and a key whose value comes back as omit is
 * dropped.  Keeps an exception being raised aside meanwhile. */
static int
multi_decode(struct multi *m, PyObject *decoder, PyObject *omit,
             PyObject *unpickle)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int rc = 0;
    /* The list is ours alone, and each entry is held while the decoder (any
     * Python code) runs. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(m->pending); i++) {
        PyObject *entry = Py_NewRef(PyList_GET_ITEM(m->pending, i));
        PyObject *key = PyTuple_GET_ITEM(entry, 0);
        PyObject *data = PyTuple_GET_ITEM(entry, 1);
        uint32_t flags =
            (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(entry, 2));
        PyObject *v = fast_unpickle(unpickle, data, flags);
        if (v == NULL && !PyErr_Occurred()) {
            v = call_decoder(decoder, key, data, flags, omit);
        }
        int r = -1;
        if (v == omit) {
            /* a key listed twice may have been dropped already */
            r = PyDict_DelItem(m->result, key);
            if (r < 0 && PyErr_ExceptionMatches(PyExc_KeyError)) {
                PyErr_Clear();
                r = 0;
            }
        }
        else if (v != NULL) {
            r = PyDict_SetItem(m->result, key, v);
        }
        Py_XDECREF(v);
        Py_DECREF(entry);
        if (r < 0) {
            rc = -1;
            break;
        }
    }
    if (rc < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
    else {
        PyErr_Restore(type, value, tb);
    }
    return rc;
}

/* Records an item that no live server would take. */
static int
multi_unplaced(struct multi *m, struct item *it)
{
    if (m->kind == MULTI_SET) {
        return PyList_Append(m->result, it->orig);
    }
    if (m->kind == MULTI_DELETE) {
        Py_SETREF(m->result, Py_NewRef(Py_False));
    }
    return 0;
}

/* Picks each item's server, groups the items into parts and takes a
 * connection for each part.  Returns 1 when a connect failed and failover
 * "rehash" may place those keys elsewhere (the caller goes again), 0 when
 * done, -1 with an exception set. */
static int
multi_place(struct multi *m, Py_ssize_t *count, Py_ssize_t *slot, bool last)
{
    Client *self = m->self;
    memset(count, 0, sizeof(Py_ssize_t) * (size_t)self->nservers);
    memset(m->parts, 0, sizeof(struct part) * (size_t)self->nservers);
    m->nparts = 0;
    for (Py_ssize_t i = 0; i < m->nitems; i++) {
        struct item *it = &m->items[i];
        it->server = pick_server(self, &it->wk);
        if (it->server == -2) {
            return -1;
        }
        if (it->server >= 0) {
            count[it->server]++;
        }
    }
    Py_ssize_t off = 0;
    for (Py_ssize_t s = 0; s < self->nservers; s++) {
        slot[s] = -1;
        if (count[s] == 0) {
            continue;
        }
        struct part *p = &m->parts[m->nparts];
        slot[s] = m->nparts++;
        p->srv = &self->servers[s];
        p->items = m->order + off;
        off += count[s];
        mc_buf_init(&p->req);
        p->fenced = m->noreply && self->fence;
    }
    for (Py_ssize_t i = 0; i < m->nitems; i++) {
        if (m->items[i].server >= 0) {
            struct part *p = &m->parts[slot[m->items[i].server]];
            p->items[p->nitems++] = i;
        }
    }
    bool moved = false;
    for (Py_ssize_t i = 0; i < m->nparts; i++) {
        struct part *p = &m->parts[i];
        p->conn = conn_take(self, p->srv, &p->fail);
        while (p->conn != NULL && p->conn->reused && p->conn->fences == 0
               && p->conn->flush_oks == 0 && mc_conn_stale(p->conn->fd)) {
            /* Closed by the server while idle (a restart): every pooled
             * connection may be; each is dropped, at worst a new one is
             * opened.  Nothing was sent on them. */
            conn_close(p->conn);
            p->conn = conn_take(self, p->srv, &p->fail);
        }
        if (p->conn == NULL) {
            if (p->fail.code == MC_EPYTHON) {
                return -1;
            }
            p->done = true;
            if (p->fail.code != MC_EDEAD && m->connect_srv == NULL) {
                m->connect_fail = p->fail;
                m->connect_srv = p->srv;
            }
            if (!last && self->failover != MC_FAILOVER_NONE
                && server_dead(p->srv)) {
                moved = true;
            }
        }
    }
    if (moved) {
        for (Py_ssize_t i = 0; i < m->nparts; i++) {
            if (m->parts[i].conn != NULL) {
                conn_give(self, m->parts[i].srv, m->parts[i].conn);
                m->parts[i].conn = NULL;
            }
        }
        return 1;
    }
    for (Py_ssize_t i = 0; i < m->nitems; i++) {
        if (m->items[i].server < 0 && multi_unplaced(m, &m->items[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Places the checked items on their servers, builds the requests, runs
 * them, and returns the result (raising the first server's failure, with
 * .partial, if any failed). */
static PyObject *
multi_execute(struct multi *m, const char *cmd, int64_t exptime, bool touch)
{
    Client *self = m->self;
    Py_ssize_t *count = PyMem_Calloc((size_t)self->nservers,
                                     sizeof(Py_ssize_t));
    Py_ssize_t *slot = PyMem_Calloc((size_t)self->nservers,
                                    sizeof(Py_ssize_t));
    m->order = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(m->nitems + 1));
    m->parts = PyMem_Calloc((size_t)self->nservers, sizeof(struct part));
    if (count == NULL || slot == NULL || m->order == NULL
        || m->parts == NULL) {
        PyMem_Free(count);
        PyMem_Free(slot);
        PyErr_NoMemory();
        return NULL;
    }
    int rc;
    for (Py_ssize_t attempt = 0;; attempt++) {
        rc = multi_place(m, count, slot, attempt >= self->nservers);
        if (rc != 1) {
            break;
        }
    }
    PyMem_Free(count);
    PyMem_Free(slot);
    if (rc < 0) {
        return NULL;
    }
    bool unplaced = false;
    for (Py_ssize_t i = 0; i < m->nitems; i++) {
        unplaced |= m->items[i].server < 0;
    }
    for (Py_ssize_t i = 0; i < m->nparts; i++) {
        struct part *p = &m->parts[i];
        if (p->conn == NULL) {
            continue;
        }
        if (build_part(m, p, cmd, exptime, touch) < 0) {
            PyErr_NoMemory();
            return NULL;
        }
        p->out.iov = p->iov;
        p->out.iovcnt = p->niov;
        if (p->fenced) {
            p->conn->fences++;
        }
    }
    if (multi_run(m) < 0) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < m->nparts; i++) {
        /* Keys of a failed server were not (or not surely) stored. */
        struct part *p = &m->parts[i];
        if (p->fail.code == -ETIMEDOUT) {
            server_timed_out(self, p->srv);
        }
        for (Py_ssize_t k = p->cursor; p->fail.code != 0 && k < p->nitems
                                       && m->kind != MULTI_GET; k++) {
            if (multi_unplaced(m, &m->items[p->items[k]]) < 0) {
                return NULL;
            }
        }
    }
    for (Py_ssize_t i = 0; i < m->nparts; i++) {
        struct part *p = &m->parts[i];
        if (p->fail.code != 0) {
            raise_fail(self, p->srv, &p->fail);
            attach_partial(m->result);
            return NULL;
        }
    }
    if (unplaced) {
        struct mc_fail f = {.code = MC_ENOSERVER};
        if (m->connect_srv != NULL) {
            raise_fail(self, m->connect_srv, &m->connect_fail);
        }
        else {
            raise_fail(self, NULL, &f);
        }
        attach_partial(m->result);
        return NULL;
    }
    return Py_NewRef(m->result);
}

static int
multi_init(struct multi *m, Client *self, enum multi_kind kind,
           Py_ssize_t n)
{
    memset(m, 0, sizeof(*m));
    m->self = self;
    m->kind = kind;
    m->items = PyMem_Malloc(sizeof(struct item) * (size_t)(n ? n : 1));
    if (m->items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Fills item i from a key object. */
static int
multi_key(struct multi *m, PyObject *key, const char *pre,
          Py_ssize_t pre_len)
{
    struct item *it = &m->items[m->nitems];
    if (check_key(m->self, key, pre, pre_len, &it->wk) < 0) {
        return -1;
    }
    it->orig = key;
    it->view = -1;
    it->val = NULL;
    it->val_len = 0;
    m->nitems++;
    return 0;
}

/* Sets m up for a multi-key call on the keys of an iterable, each checked
 * with the prefix.  *seq is a tuple of the keys, owned by the call: the
 * items point into the keys, and the caller's list may change while the
 * call runs Python code (a key's __hash__, a signal handler) or waits with
 * the GIL released.  Returns 0, or -1 with an exception set; m can be
 * cleared either way. */
static int
multi_from_keys(struct multi *m, Client *self, enum multi_kind kind,
                PyObject *keys, const char *pre, Py_ssize_t pre_len,
                PyObject **seq)
{
    memset(m, 0, sizeof(*m));
    if (Py_TYPE(keys)->tp_iter == NULL && !PySequence_Check(keys)) {
        *seq = NULL;
        PyErr_SetString(PyExc_TypeError, "keys must be iterable");
        return -1;
    }
    *seq = PyTuple_CheckExact(keys) ? Py_NewRef(keys)
                                    : PySequence_Tuple(keys);
    if (*seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(*seq);
    PyObject **items = &PyTuple_GET_ITEM(*seq, 0);
    if (multi_init(m, self, kind, n) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (multi_key(m, items[i], pre, pre_len) < 0) {
            return -1;
        }
    }
    return 0;
}

static PyObject *
get_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames, const char *fname, bool with_cas)
{
    static const char *const names[] = {"keys", "key_prefix", "with_flags",
                                        NULL};
    PyObject *a[3];
    const char *pre;
    Py_ssize_t pre_len;
    bool with_flags;
    if (parse_args(fname, args, nargs, kwnames, names, 1, 2, a) < 0
        || check_prefix(self, a[1], &pre, &pre_len) < 0
        || to_bool(a[2], &with_flags) < 0) {
        return NULL;
    }
    struct multi m;
    PyObject *seq, *res = NULL;
    if (multi_from_keys(&m, self, MULTI_GET, a[0], pre, pre_len, &seq) < 0) {
        goto done;
    }
    m.with_flags = with_flags;
    m.with_cas = with_cas;
    m.result = _PyDict_NewPresized(m.nitems);
    if (m.result == NULL) {
        goto done;
    }
    res = multi_execute(&m, with_cas ? "gets" : "get", 0, false);
done:
    multi_clear(&m);
    Py_XDECREF(seq);
    return res;
}

/* get_multi_decoded(keys, key_prefix, decoder, omit). */
static PyObject *
Client_get_multi_decoded(Client *self, PyObject *const *args,
                         Py_ssize_t nargs)
{
    self->calls[CALL_GET_MULTI]++;
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "get_multi_decoded(keys, key_prefix, decoder, omit, "
                        "unpickle=None) takes 4 or 5 arguments");
        return NULL;
    }
    const char *pre;
    Py_ssize_t pre_len;
    if (check_prefix(self, args[1], &pre, &pre_len) < 0) {
        return NULL;
    }
    struct multi m;
    PyObject *seq, *res = NULL;
    if (multi_from_keys(&m, self, MULTI_GET, args[0], pre, pre_len, &seq)
        < 0) {
        goto done;
    }
    m.decoding = true;
    m.result = _PyDict_NewPresized(m.nitems);
    m.pending = PyList_New(0);
    if (m.result == NULL || m.pending == NULL) {
        goto done;
    }
    res = multi_execute(&m, "get", 0, false);
    if (PyList_GET_SIZE(m.pending) > 0
        && multi_decode(&m, args[2], args[3], nargs == 5 ? args[4] : NULL)
           < 0) {
        Py_CLEAR(res);
    }
done:
    multi_clear(&m);
    Py_XDECREF(seq);
    return res;
}

static PyObject *
Client_get_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    self->calls[CALL_GET_MULTI]++;
    return get_multi(self, args, nargs, kwnames, "get_multi", false);
}

static PyObject *
Client_gets_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    self->calls[CALL_GETS_MULTI]++;
    return get_multi(self, args, nargs, kwnames, "gets_multi", true);
}

static PyObject *
Client_set_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    self->calls[CALL_SET_MULTI]++;
    static const char *const names[] = {"mapping", "exptime", "flags",
                                        "noreply", "key_prefix", NULL};
    PyObject *a[5];
    const char *pre;
    Py_ssize_t pre_len;
    int64_t exptime;
    uint32_t flags;
    bool noreply;
    if (parse_args("set_multi", args, nargs, kwnames, names, 1, 5, a) < 0
        || to_exptime(a[1], &exptime) < 0 || to_flags(a[2], &flags) < 0
        || to_bool(a[3], &noreply) < 0
        || check_prefix(self, a[4], &pre, &pre_len) < 0) {
        return NULL;
    }
    if (!PyDict_Check(a[0])
        && (!PyMapping_Check(a[0]) || PySequence_Check(a[0]))) {
        PyErr_SetString(PyExc_TypeError, "set_multi() needs a mapping");
        return NULL;
    }
    /* The pairs, held by strong references for the call (values are read
     * in place, and Python code may run meanwhile): a dict is read directly
     * (no tuple per pair), any other mapping through a tuple of its
     * items() (which may return a list its owner keeps and changes). */
    PyObject *pairs = NULL;
    PyObject **held = NULL;
    Py_ssize_t n;
    if (PyDict_CheckExact(a[0])) {
        n = PyDict_GET_SIZE(a[0]);
        held = PyMem_Malloc(sizeof(PyObject *) * (size_t)(2 * n + 1));
        if (held == NULL) {
            return PyErr_NoMemory();
        }
        Py_ssize_t pos = 0, i = 0;
        PyObject *k, *v;
        while (i < n && PyDict_Next(a[0], &pos, &k, &v)) {
            held[2 * i] = Py_NewRef(k);
            held[2 * i + 1] = Py_NewRef(v);
            i++;
        }
        n = i;
    }
    else {
        PyObject *items = PyMapping_Items(a[0]);
        if (items == NULL) {
            return NULL;
        }
        pairs = PySequence_Tuple(items);
        Py_DECREF(items);
        if (pairs == NULL) {
            return NULL;
        }
        n = PyTuple_GET_SIZE(pairs);
    }
    struct multi m;
    PyObject *res = NULL;
    if (multi_init(&m, self, MULTI_SET, n) < 0) {
        goto done;
    }
    m.noreply = noreply;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key_obj, *val;
        if (held != NULL) {
            key_obj = held[2 * i];
            val = held[2 * i + 1];
        }
        else {
            PyObject *pair = PyTuple_GET_ITEM(pairs, i);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
                PyErr_SetString(PyExc_TypeError,
                                "set_multi() needs (key, value) items");
                goto done;
            }
            key_obj = PyTuple_GET_ITEM(pair, 0);
            val = PyTuple_GET_ITEM(pair, 1);
        }
        struct item *it = &m.items[m.nitems];
        it->flags = flags;
        if (PyTuple_Check(val)) {
            if (PyTuple_GET_SIZE(val) != 2) {
                PyErr_SetString(PyExc_TypeError,
                                "set_multi() values are bytes-like or "
                                "(value, flags) pairs");
                goto done;
            }
            if (to_flags(PyTuple_GET_ITEM(val, 1), &it->flags) < 0) {
                goto done;
            }
            val = PyTuple_GET_ITEM(val, 0);
        }
        if (multi_key(&m, key_obj, pre, pre_len) < 0) {
            goto done;
        }
        if (PyBytes_CheckExact(val)) {
            if ((size_t)PyBytes_GET_SIZE(val) > self->max_value) {
                PyErr_Format(self->state->ValueTooLargeError,
                             "value of %zd bytes is larger than "
                             "max_value_size (%zu)", PyBytes_GET_SIZE(val),
                             self->max_value);
                goto done;
            }
            it->val = PyBytes_AS_STRING(val);
            it->val_len = (size_t)PyBytes_GET_SIZE(val);
            continue;
        }
        if (m.views == NULL) {
            m.views = PyMem_Malloc(sizeof(Py_buffer) * (size_t)n);
            if (m.views == NULL) {
                PyErr_NoMemory();
                goto done;
            }
        }
        if (get_value(self, val, &m.views[m.nviews]) < 0) {
            goto done;
        }
        it->view = m.nviews++;
        it->val = m.views[it->view].buf;
        it->val_len = (size_t)m.views[it->view].len;
    }
    m.result = PyList_New(0);
    if (m.result == NULL) {
        goto done;
    }
    res = multi_execute(&m, "set", exptime, false);
done:
    multi_clear(&m);
    Py_XDECREF(pairs);
    if (held != NULL) {
        for (Py_ssize_t i = 0; i < 2 * n; i++) {
            Py_DECREF(held[i]);
        }
        PyMem_Free(held);
    }
    return res;
}

static PyObject *
Client_delete_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    self->calls[CALL_DELETE_MULTI]++;
    static const char *const names[] = {"keys", "noreply", "key_prefix",
                                        NULL};
    PyObject *a[3];
    const char *pre;
    Py_ssize_t pre_len;
    bool noreply;
    if (parse_args("delete_multi", args, nargs, kwnames, names, 1, 3, a) < 0
        || to_bool(a[1], &noreply) < 0
        || check_prefix(self, a[2], &pre, &pre_len) < 0) {
        return NULL;
    }
    struct multi m;
    PyObject *seq, *res = NULL;
    if (multi_from_keys(&m, self, MULTI_DELETE, a[0], pre, pre_len, &seq)
        < 0) {
        goto done;
    }
    m.noreply = noreply;
    m.result = Py_NewRef(Py_True);
    res = multi_execute(&m, "delete", 0, false);
done:
    multi_clear(&m);
    Py_XDECREF(seq);
    return res;
}

/* ---- the type ----------------------------------------------------------- */

static PyObject *
Client_disconnect_all(Client *self, PyObject *Py_UNUSED(ignored))
{
    /* Take every idle connection off its pool, let the ones owed replies
     * to noreply commands read them (at most 100 ms in all), close them. */
    struct mc_conn *all = NULL;
    for (Py_ssize_t i = 0; i < self->nservers; i++) {
        struct mc_server *srv = &self->servers[i];
        if (srv->generation != mc_fork_generation) {
            server_drop_idle(srv);  /* the parent's: close, nothing more */
            srv->generation = mc_fork_generation;
            continue;
        }
        while (srv->idle != NULL) {
            struct mc_conn *c = srv->idle;
            srv->idle = c->next;
            c->next = all;
            all = c;
        }
        srv->nidle = 0;
    }
    int64_t deadline = mc_now() + 100000000;
    Py_BEGIN_ALLOW_THREADS
    for (struct mc_conn *c = all; c != NULL; c = c->next) {
        conn_drain(c, deadline);
    }
    Py_END_ALLOW_THREADS
    while (all != NULL) {
        struct mc_conn *c = all;
        all = c->next;
        conn_close(c);
    }
    Py_RETURN_NONE;
}

static PyObject *
Client_call_counts(Client *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *d = PyDict_New();
    for (int i = 0; d != NULL && i < CALL_COUNT; i++) {
        if (self->calls[i] == 0) {
            continue;
        }
        PyObject *v = PyLong_FromUnsignedLongLong(self->calls[i]);
        if (v == NULL || PyDict_SetItemString(d, call_names[i], v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(d);
            break;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *
Client_reset_call_counts(Client *self, PyObject *Py_UNUSED(ignored))
{
    memset(self->calls, 0, sizeof(self->calls));
    Py_RETURN_NONE;
}

static PyObject *
Client_forget_dead(Client *self, PyObject *Py_UNUSED(ignored))
{
    for (Py_ssize_t i = 0; i < self->nservers; i++) {
        self->servers[i].dead_until = 0;
        self->servers[i].hold = 0;
    }
    Py_RETURN_NONE;
}

/* mark_dead(index, seconds=None): holds a server down as a failure would,
 * for seconds (dead_retry when None); later failures double from there. */
static PyObject *
Client_mark_dead(Client *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    static const char *const names[] = {"index", "seconds", NULL};
    PyObject *a[2];
    int64_t index;
    if (parse_args("mark_dead", args, nargs, kwnames, names, 1, 2, a) < 0
        || to_int64(a[0], "index", 0, (int64_t)self->nservers - 1, &index)
           < 0) {
        return NULL;
    }
    int64_t hold = self->dead_retry;
    if (a[1] != NULL && a[1] != Py_None
        && to_ns(a[1], "seconds", 0, true, &hold) < 0) {
        return NULL;
    }
    struct mc_server *srv = &self->servers[index];
    srv->flush_pending = self->flush_on_reconnect;
    if (hold > 0) {
        srv->hold = hold;
        srv->dead_until = mc_now() + hold;
        server_drop_idle(srv);
    }
    Py_RETURN_NONE;
}

/* hold_downs() -> the seconds each server stays held down (0.0: live). */
static PyObject *
Client_hold_downs(Client *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *t = PyTuple_New(self->nservers);
    int64_t now = mc_now();
    for (Py_ssize_t i = 0; t != NULL && i < self->nservers; i++) {
        int64_t until = self->servers[i].dead_until;
        double left = until != 0 && until > now ? (double)(until - now) / MC_NS
                                                : 0.0;
        PyObject *v = PyFloat_FromDouble(left);
        if (v == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyObject *
Client_dead_servers(Client *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(0);
    for (Py_ssize_t i = 0; list != NULL && i < self->nservers; i++) {
        if (server_dead(&self->servers[i])) {
            PyObject *n = PyLong_FromSsize_t(i);
            if (n == NULL || PyList_Append(list, n) < 0) {
                Py_XDECREF(n);
                Py_CLEAR(list);
                break;
            }
            Py_DECREF(n);
        }
    }
    return list;
}

static PyObject *
Client_enter(Client *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self);
}

static PyObject *
Client_exit(Client *self, PyObject *const *Py_UNUSED(args),
            Py_ssize_t Py_UNUSED(nargs))
{
    return Client_disconnect_all(self, NULL);
}

static PyObject *
Client_get_servers(Client *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->names);
}

static void
client_free_servers(Client *self)
{
    for (Py_ssize_t i = 0; i < self->nservers; i++) {
        server_drop_idle(&self->servers[i]);
        PyMem_Free(self->servers[i].name);
    }
    PyMem_Free(self->servers);
    self->servers = NULL;
    self->nservers = 0;
    mc_dist_free(&self->dist);
    PyMem_Free(self->dead);
    self->dead = NULL;
}

struct named {
    const char *label;
    enum mc_distribution kind;
    enum mc_hash_fn hash;      /* the default key hash of a distribution */
};

static const struct named distributions[] = {
    {"python-memcached", MC_DIST_PYTHON_MEMCACHED, MC_HASH_PM160},
    {"ketama", MC_DIST_KETAMA, MC_HASH_MD5},
    {"libmemcached-ketama", MC_DIST_LIBMEMCACHED_KETAMA, MC_HASH_OAAT},
    {"modula", MC_DIST_MODULA, MC_HASH_OAAT},
    {"rendezvous", MC_DIST_RENDEZVOUS, MC_HASH_MURMUR3},
    {NULL, 0, 0},
};

static const struct named hashes[] = {
    {"python-memcached", 0, MC_HASH_PM160},
    {"python-memcached-1.59", 0, MC_HASH_PM},
    {"crc", 0, MC_HASH_PM160},
    {"crc32", 0, MC_HASH_CRC32},
    {"one_at_a_time", 0, MC_HASH_OAAT},
    {"md5", 0, MC_HASH_MD5},
    {"murmur3", 0, MC_HASH_MURMUR3},
    {NULL, 0, 0},
};

static const struct named *
find_named(const struct named *table, const char *label)
{
    for (; table->label != NULL; table++) {
        if (strcmp(table->label, label) == 0) {
            return table;
        }
    }
    return NULL;
}

/* Which key hashes each distribution takes (a mask of 1 << mc_hash_fn). */
static unsigned
hashes_allowed(enum mc_distribution kind)
{
    switch (kind) {
    case MC_DIST_PYTHON_MEMCACHED:
        return 1u << MC_HASH_PM | 1u << MC_HASH_PM160 | 1u << MC_HASH_CRC32;
    case MC_DIST_KETAMA:
        return 1u << MC_HASH_MD5;
    case MC_DIST_LIBMEMCACHED_KETAMA:
        return 1u << MC_HASH_OAAT | 1u << MC_HASH_MD5;
    case MC_DIST_MODULA:
        return 1u << MC_HASH_OAAT | 1u << MC_HASH_PM160 | 1u << MC_HASH_MD5;
    case MC_DIST_RENDEZVOUS:
        return 1u << MC_HASH_MURMUR3;
    }
    return 0;
}

/* The name a server has on a ring: its host text, plus ":port" unless the
 * port is 11211 (libmemcached, twemproxy); for rendezvous always
 * "host:port" (pymemcache).  A unix socket is its path. */
static size_t
ring_name(const struct mc_server *srv, bool always_port, char *out)
{
    memcpy(out, srv->spec.host, srv->spec.host_len);
    size_t n = srv->spec.host_len;
    if (srv->spec.family != MC_UNIX
        && (always_port || srv->spec.port != 11211)) {
        out[n++] = ':';
        n += mc_fmt_u64(out + n, srv->spec.port);
    }
    return n;
}

static int
build_distribution(Client *self, enum mc_distribution kind,
                   enum mc_hash_fn hash, const long *weights)
{
    Py_ssize_t n = self->nservers;
    struct mc_dist_server *ds = PyMem_Calloc((size_t)n, sizeof(*ds));
    char *names = PyMem_Malloc((size_t)n * 272);
    self->dead = PyMem_Calloc((size_t)n, sizeof(bool));
    if (ds == NULL || names == NULL || self->dead == NULL) {
        PyMem_Free(ds);
        PyMem_Free(names);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        ds[i].name = names + 272 * i;
        ds[i].name_len = ring_name(&self->servers[i],
                                   kind == MC_DIST_RENDEZVOUS,
                                   names + 272 * i);
        ds[i].weight = (uint32_t)weights[i];
    }
    int rc = mc_dist_build(&self->dist, kind, hash, ds, (size_t)n);
    PyMem_Free(ds);
    PyMem_Free(names);
    if (rc < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Parses one server argument (str, or (str, weight)) into srv. */
static int
parse_server(Client *self, PyObject *obj, struct mc_server *srv,
             long *weight)
{
    PyObject *spec = obj;
    *weight = 1;
    if (PyTuple_Check(obj)) {
        if (PyTuple_GET_SIZE(obj) != 2) {
            PyErr_Format(PyExc_TypeError,
                         "a server is \"host:port\" or (\"host:port\", "
                         "weight), not %R", obj);
            return -1;
        }
        spec = PyTuple_GET_ITEM(obj, 0);
        PyObject *w = PyTuple_GET_ITEM(obj, 1);
        if (!PyLong_Check(w)) {
            PyErr_Format(PyExc_TypeError, "server weight must be an int, "
                         "not %.200s", Py_TYPE(w)->tp_name);
            return -1;
        }
        *weight = PyLong_AsLong(w);
        if (*weight == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (*weight < 1 || *weight > 1000) {
            PyErr_Format(self->state->InvalidServerError,
                         "server weight must be 1..1000: %R", obj);
            return -1;
        }
    }
    if (!PyUnicode_Check(spec)) {
        PyErr_Format(PyExc_TypeError, "a server is a str, not %.200s",
                     Py_TYPE(spec)->tp_name);
        return -1;
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(spec, &len);
    if (s == NULL) {
        return -1;
    }
    srv->name = PyMem_Malloc((size_t)len + 1);
    if (srv->name == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(srv->name, s, (size_t)len + 1);
    if (mc_server_parse(srv->name, (size_t)len, &srv->spec) < 0) {
        PyErr_Format(self->state->InvalidServerError,
                     "malformed server: %R", spec);
        return -1;
    }
    return 0;
}

static int
to_ns(PyObject *obj, const char *what, double dflt, bool zero_ok,
      int64_t *out)
{
    double v = dflt;
    if (obj != NULL) {
        v = PyFloat_AsDouble(obj);
        if (v == -1.0 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (!(v > 0 || (zero_ok && v == 0)) || v > 1e9) {
        PyErr_Format(PyExc_ValueError, "%s must be %s 1e9 seconds", what,
                     zero_ok ? "0 ..." : "> 0 and <=");
        return -1;
    }
    *out = (int64_t)(v * MC_NS);
    return 0;
}

static PyObject *
Client_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"servers", "timeout", "connect_timeout",
                             "dead_retry", "max_value_size", "pool_size",
                             "noreply_fence", "distribution", "key_hash",
                             "failover", "flush_on_reconnect", "proxy",
                             "timeout_limit", NULL};
    PyObject *servers, *timeout = NULL, *connect_timeout = NULL;
    PyObject *dead_retry = NULL;
    Py_ssize_t max_value = 1024 * 1024;
    int pool_size = 8, fence = 1, flush_on_reconnect = 0, timeout_limit = 3;
    const char *failover = "none", *hash = NULL, *proxy = NULL;
    const char *distribution = "python-memcached";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs,
                                     "O|$OOOnipszspzi:StringClient", kwlist,
                                     &servers, &timeout, &connect_timeout,
                                     &dead_retry, &max_value, &pool_size,
                                     &fence, &distribution, &hash,
                                     &failover, &flush_on_reconnect,
                                     &proxy, &timeout_limit)) {
        return NULL;
    }
    PyObject *module = PyType_GetModuleByDef(type, &mc_module_def);
    if (module == NULL) {
        return NULL;
    }
    Client *self = (Client *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->module = Py_NewRef(module);
    self->state = mc_get_state(module);
    self->fence = fence != 0;
    self->flush_on_reconnect = flush_on_reconnect != 0;
    if (timeout_limit < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout_limit must be >= 0");
        goto error;
    }
    self->timeout_limit = timeout_limit;
    if (proxy != NULL) {
        if (strcmp(proxy, "twemproxy") != 0) {
            PyErr_Format(PyExc_ValueError, "proxy must be None or "
                         "'twemproxy', not '%s'", proxy);
            goto error;
        }
        /* twemproxy closes the connection on "mn", gat, flush_all and
         * stats: no fence, and those calls refused before sending. */
        self->proxy = true;
        self->fence = false;
    }
    const struct named *dist = find_named(distributions, distribution);
    if (dist == NULL) {
        PyErr_Format(PyExc_ValueError, "distribution must be "
                     "'python-memcached', 'ketama', 'libmemcached-ketama', "
                     "'modula' or 'rendezvous', not '%s'", distribution);
        goto error;
    }
    enum mc_hash_fn hash_fn = dist->hash;
    if (hash != NULL) {
        const struct named *h = find_named(hashes, hash);
        if (h == NULL || !(hashes_allowed(dist->kind) & (1u << h->hash))) {
            PyErr_Format(PyExc_ValueError, "key_hash '%s' does not go with "
                         "distribution '%s'", hash, distribution);
            goto error;
        }
        hash_fn = h->hash;
    }
    if (strcmp(failover, "none") == 0) {
        self->failover = MC_FAILOVER_NONE;
    }
    else if (strcmp(failover, "rehash") == 0
             && dist->kind == MC_DIST_PYTHON_MEMCACHED) {
        self->failover = MC_FAILOVER_REHASH;
    }
    else if (strcmp(failover, "next") == 0
             && dist->kind != MC_DIST_PYTHON_MEMCACHED) {
        self->failover = MC_FAILOVER_NEXT;
    }
    else {
        PyErr_Format(PyExc_ValueError, "failover must be 'none', 'rehash' "
                     "(distribution 'python-memcached') or 'next' (the "
                     "others), not '%s'", failover);
        goto error;
    }
    if (to_ns(timeout, "timeout", 1.0, false, &self->timeout) < 0
        || to_ns(connect_timeout, "connect_timeout", 1.0, false,
                 &self->connect_timeout) < 0
        || to_ns(dead_retry, "dead_retry", 30.0, true, &self->dead_retry)
           < 0) {
        goto error;
    }
    if (max_value < 1 || max_value > (1 << 30)) {
        PyErr_SetString(PyExc_ValueError,
                        "max_value_size must be 1 ... 2**30");
        goto error;
    }
    self->max_value = (size_t)max_value;
    if (pool_size < 0 || pool_size > 1024) {
        PyErr_SetString(PyExc_ValueError, "pool_size must be 0 ... 1024");
        goto error;
    }
    self->pool_size = pool_size;

    PyObject *list;
    if (PyUnicode_Check(servers) || PyTuple_Check(servers)) {
        list = PyTuple_Pack(1, servers);
    }
    else if (PyList_Check(servers)) {
        list = PySequence_Tuple(servers);
    }
    else {
        PyErr_Format(PyExc_TypeError, "servers must be a str or a list, not "
                     "%.200s", Py_TYPE(servers)->tp_name);
        goto error;
    }
    if (list == NULL) {
        goto error;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(list);
    if (n == 0) {
        Py_DECREF(list);
        PyErr_SetString(self->state->InvalidServerError, "no servers given");
        goto error;
    }
    self->servers = PyMem_Calloc((size_t)n, sizeof(struct mc_server));
    self->names = PyTuple_New(n);
    long *weights = PyMem_Calloc((size_t)n, sizeof(long));
    if (self->servers == NULL || self->names == NULL || weights == NULL) {
        PyMem_Free(weights);
        Py_DECREF(list);
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        self->nservers = i + 1;
        self->servers[i].generation = mc_fork_generation;
        if (parse_server(self, PyTuple_GET_ITEM(list, i), &self->servers[i],
                         &weights[i]) < 0) {
            PyMem_Free(weights);
            Py_DECREF(list);
            goto error;
        }
        PyObject *name = PyUnicode_FromString(self->servers[i].name);
        if (name == NULL) {
            PyMem_Free(weights);
            Py_DECREF(list);
            goto error;
        }
        PyTuple_SET_ITEM(self->names, i, name);
    }
    Py_DECREF(list);
    int rc = build_distribution(self, dist->kind, hash_fn, weights);
    PyMem_Free(weights);
    if (rc < 0) {
        goto error;
    }
    return (PyObject *)self;

error:
    Py_DECREF(self);
    return NULL;
}

static int
Client_traverse(Client *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->module);
    return 0;
}

static int
Client_clear(Client *self)
{
    Py_CLEAR(self->module);
    return 0;
}

static void
Client_dealloc(Client *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    client_free_servers(self);
    Py_CLEAR(self->names);
    (void)Client_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

#define FASTKW(name, fn, doc) \
    {name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL | METH_KEYWORDS, \
     PyDoc_STR(doc)}

static PyMethodDef Client_methods[] = {
    FASTKW("get", Client_get,
           "get(key, *, with_flags=False) -> bytes | None"),
    FASTKW("gets", Client_gets,
           "gets(key, *, with_flags=False) -> (bytes, cas) | None"),
    FASTKW("gat", Client_gat,
           "gat(key, exptime, *, with_flags=False) -> bytes | None"),
    FASTKW("gats", Client_gats,
           "gats(key, exptime, *, with_flags=False) -> (bytes, cas) | None"),
    FASTKW("get_multi", Client_get_multi,
           "get_multi(keys, key_prefix=b'', *, with_flags=False) -> dict"),
    FASTKW("gets_multi", Client_gets_multi,
           "gets_multi(keys, key_prefix=b'', *, with_flags=False) -> dict"),
    {"get_decoded", (PyCFunction)(void (*)(void))Client_get_decoded,
     METH_FASTCALL,
     PyDoc_STR("get_decoded(key, default, decoder, unpickle=None) -> "
               "value\n\n"
               "default on a miss; bytes, str or int for flags 0, 16, 2 and "
               "4; unpickle(data) for flags 1 when given; otherwise (or when "
               "unpickle raises) decoder(key, data, flags, default).")},
    {"get_multi_decoded",
     (PyCFunction)(void (*)(void))Client_get_multi_decoded, METH_FASTCALL,
     PyDoc_STR("get_multi_decoded(keys, key_prefix, decoder, omit, "
               "unpickle=None) -> dict"
               "\n\nLike get_decoded for many keys; a key whose decoder "
               "returns omit is left out.")},
    FASTKW("set", Client_set,
           "set(key, value, exptime=0, flags=0, noreply=False) -> bool"),
    FASTKW("add", Client_add,
           "add(key, value, exptime=0, flags=0, noreply=False) -> bool"),
    FASTKW("replace", Client_replace,
           "replace(key, value, exptime=0, flags=0, noreply=False) -> bool"),
    FASTKW("append", Client_append,
           "append(key, value, exptime=0, flags=0, noreply=False) -> bool"),
    FASTKW("prepend", Client_prepend,
           "prepend(key, value, exptime=0, flags=0, noreply=False) -> bool"),
    FASTKW("cas", Client_cas,
           "cas(key, value, cas, exptime=0, flags=0, noreply=False) -> "
           "True | False | None"),
    FASTKW("set_multi", Client_set_multi,
           "set_multi(mapping, exptime=0, flags=0, noreply=False, "
           "key_prefix=b'') -> list of keys not stored"),
    FASTKW("delete", Client_delete, "delete(key, noreply=False) -> bool"),
    FASTKW("delete_multi", Client_delete_multi,
           "delete_multi(keys, noreply=False, key_prefix=b'') -> bool"),
    FASTKW("incr", Client_incr,
           "incr(key, delta=1, noreply=False) -> int | None"),
    FASTKW("decr", Client_decr,
           "decr(key, delta=1, noreply=False) -> int | None"),
    FASTKW("touch", Client_touch,
           "touch(key, exptime, noreply=False) -> bool"),
    FASTKW("flush_all", Client_flush_all,
           "flush_all(delay=0, noreply=False) -> True"),
    FASTKW("get_stats", Client_get_stats,
           "get_stats(args=None) -> [(server, {stat: value})]"),
    {"version", (PyCFunction)Client_version, METH_NOARGS,
     PyDoc_STR("version() -> {server: version}")},
    {"server_index", (PyCFunction)Client_server_index, METH_O,
     PyDoc_STR("server_index(key) -> index of the server holding key")},
    {"disconnect_all", (PyCFunction)Client_disconnect_all, METH_NOARGS,
     PyDoc_STR("Closes every idle connection.")},
    {"close", (PyCFunction)Client_disconnect_all, METH_NOARGS,
     PyDoc_STR("Closes every idle connection; the client stays usable.")},
    {"call_counts", (PyCFunction)Client_call_counts, METH_NOARGS,
     PyDoc_STR("call_counts() -> {command: calls made}")},
    {"reset_call_counts", (PyCFunction)Client_reset_call_counts, METH_NOARGS,
     PyDoc_STR("Sets every call count back to 0.")},
    {"forget_dead", (PyCFunction)Client_forget_dead, METH_NOARGS,
     PyDoc_STR("Clears every server's dead mark.")},
    FASTKW("mark_dead", Client_mark_dead,
           "mark_dead(index, seconds=None): hold a server down for seconds "
           "(dead_retry when None), as a failure would"),
    {"hold_downs", (PyCFunction)Client_hold_downs, METH_NOARGS,
     PyDoc_STR("hold_downs() -> (seconds each server stays held down, 0.0 "
               "when live)")},
    {"dead_servers", (PyCFunction)Client_dead_servers, METH_NOARGS,
     PyDoc_STR("dead_servers() -> indexes of the servers marked dead")},
    {"__enter__", (PyCFunction)Client_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Client_exit, METH_FASTCALL,
     NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Client_getset[] = {
    {"servers", (getter)Client_get_servers, NULL,
     PyDoc_STR("The server strings, in order."), NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Client_doc,
"StringClient(servers, *, timeout=1.0, connect_timeout=1.0, dead_retry=30.0,\n"
"             max_value_size=1048576, pool_size=8, noreply_fence=True)\n"
"\n"
"A memcached client speaking the text protocol on its own sockets: keys are\n"
"bytes or str, values bytes-like in and bytes out, with 32-bit flags.");

static PyType_Slot Client_slots[] = {
    {Py_tp_doc, (void *)Client_doc},
    {Py_tp_new, MC_SLOT(Client_new)},
    {Py_tp_dealloc, MC_SLOT(Client_dealloc)},
    {Py_tp_traverse, MC_SLOT(Client_traverse)},
    {Py_tp_clear, MC_SLOT(Client_clear)},
    {Py_tp_methods, Client_methods},
    {Py_tp_getset, Client_getset},
    {0, NULL},
};

PyType_Spec mc_client_spec = {
    .name = "cmemcache.StringClient",
    .basicsize = sizeof(Client),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Client_slots,
};
