/* Plain C tests of ext/pipe.c and pipe.h: requests queued and in flight on
 * a connection, the bytes a driver writes from (mc_conn_out, mc_conn_wrote,
 * partial writes through conn.c's mc_conn_send), and mc_conn_feed matching
 * each reply frame to the oldest request: every kind of reply, error lines,
 * streams out of sync, abandoned requests, owners that fail, noreply
 * fences, the flush owed after a reconnect, the stats and value limits;
 * meta requests (MC_X_META) among text ones on the same connection, and
 * text commands spoken as meta (protocol="meta": single-key commands,
 * quiet multi-key gets ended by MN, set_multi and delete_multi with an
 * opaque token per key, noreply meta commands behind fences); one-key
 * gets joined on one multi-key line (mc_conn_join): the exact bytes
 * queued, when a line is not joined (another command, anything queued
 * between, written, TLS, 64 keys, 2,000 bytes), and the replies of such
 * lines, each request taking its own key's VALUE or passing the frame on.
 *
 * Each reply scenario is fed whole, byte by byte and in chunks of several
 * sizes, every time from a block holding exactly the unread bytes (so
 * AddressSanitizer sees any read past them; the scenarios of text
 * commands spoken as meta and of joined gets also cut in two at every
 * byte offset), and what
 * the requests were told (items, completion, failures) is compared line by
 * line with what the scenario expects.  Sockets are socketpair() ends and loopback
 * sockets this file opens itself.
 *
 * Usage: test_pipe
 * The last line printed is "N passed, N failed"; the exit status is non-zero
 * when a check failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "conn.h"
#include "engine.h"
#include "engine_test.h"
#include "guard.h"
#include "meta.h"
#include "pipe.h"
#include "proto.h"
#include "rand.h"

/* ------------------------------------------------------------------------ */
/* A log of what requests were told                                          */

static const char *const kind_names[] = {
    "VALUE", "END", "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND",
    "DELETED", "TOUCHED", "OK", "RESET", "MN", "NUMBER", "VERSION", "STAT",
    "ERROR", "CLIENT_ERROR", "SERVER_ERROR"};

struct log {
    char *text;
    size_t len, cap;
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
log_add(struct log *l, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    size_t k = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (l->len + k + 2 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        while (cap < l->len + k + 2) {
            cap *= 2;
        }
        char *t = realloc(l->text, cap);
        if (t == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        l->text = t;
        l->cap = cap;
    }
    memcpy(l->text + l->len, line, k);
    l->len += k;
    l->text[l->len++] = '\n';
    l->text[l->len] = '\0';
}

static void
fail_text(const struct mc_fail *f, char *out, size_t cap)
{
    switch (f->code) {
    case 0:
        snprintf(out, cap, "ok");
        break;
    case MC_EREPLY:
        snprintf(out, cap, "EREPLY %s%s%s", kind_names[f->kind],
                 f->text[0] ? " " : "", f->text);
        break;
    case MC_EBADREPLY:
        snprintf(out, cap, "EBADREPLY %s", f->text);
        break;
    case MC_EOWNER:
        snprintf(out, cap, "EOWNER");
        break;
    case MC_EVALUE:
        snprintf(out, cap, "EVALUE");
        break;
    default:
        snprintf(out, cap, "code %d", f->code);
        break;
    }
}

/* One request of a scenario. */
struct treq {
    struct mc_req r;
    int id;
    int fail_at;               /* the item its owner fails, or -1 */
    int items;                 /* items taken */
    int done;                  /* on_done calls */
    struct log *log;
    struct mc_wkey wk[4];      /* a retrieval's keys */
};

static int
t_item(void *owner, struct mc_req *r, size_t item,
       const struct mc_reply *rep)
{
    struct treq *t = owner;
    CHECK(&t->r == r);
    if (t->items++ == t->fail_at) {
        log_add(t->log, "R%d item %zu fails", t->id, item);
        return -1;
    }
    const char *k = kind_names[rep->kind];
    switch (rep->kind) {
    case MC_VALUE:
        if (rep->key == NULL) {
            /* a meta VA read as a VALUE: no key */
            log_add(t->log, "R%d item %zu VALUE f%" PRIu32 " [%.*s]%s",
                    t->id, item, rep->flags,
                    (int)(rep->value_len < 40 ? rep->value_len : 40),
                    rep->value, rep->has_cas ? " cas" : "");
            if (rep->has_cas) {
                log_add(t->log, "R%d cas %" PRIu64, t->id, rep->cas);
            }
            break;
        }
        log_add(t->log, "R%d item %zu VALUE %.*s %" PRIu32 " %.*s%s", t->id,
              item, (int)rep->key_len, rep->key, rep->flags,
              (int)(rep->value_len < 40 ? rep->value_len : 40), rep->value,
              rep->has_cas ? " cas" : "");
        if (rep->has_cas) {
            log_add(t->log, "R%d cas %" PRIu64, t->id, rep->cas);
        }
        break;
    case MC_NUMBER:
        log_add(t->log, "R%d item %zu NUMBER %" PRIu64, t->id, item,
              rep->number);
        break;
    case MC_STAT:
        log_add(t->log, "R%d item %zu STAT %.*s=%.*s", t->id, item,
              (int)rep->key_len, rep->key,
              (int)(rep->text_len < 40 ? rep->text_len : 40), rep->text);
        break;
    case MC_VERSION:
    case MC_ERROR:
    case MC_CLIENT_ERROR:
    case MC_SERVER_ERROR:
        log_add(t->log, "R%d item %zu %s %.*s", t->id, item, k,
              (int)rep->text_len, rep->text);
        break;
    default:
        log_add(t->log, "R%d item %zu %s", t->id, item, k);
        break;
    }
    return 0;
}

static const char *const meta_kind_names[] = {
    "VA", "HD", "NF", "NS", "EX", "EN", "MN", "ME",
    "ERROR", "CLIENT_ERROR", "SERVER_ERROR"};

/* Logs a meta reply: its kind, the return flags it has, the value. */
static int
t_meta(void *owner, struct mc_req *r, const struct mc_meta_reply *rep)
{
    struct treq *t = owner;
    CHECK(&t->r == r);
    if (t->items++ == t->fail_at) {
        log_add(t->log, "R%d meta fails", t->id);
        return -1;
    }
    char fl[200];
    int n = 0;
    fl[0] = '\0';
#define FL(bit, ...)                                                        \
    if ((rep->has & (bit)) && n < (int)sizeof fl - 40) {                  \
        n += snprintf(fl + n, sizeof fl - (size_t)n, __VA_ARGS__);        \
    }
    FL(MC_RF_FLAGS, " f%" PRIu32, rep->client_flags)
    FL(MC_RF_CAS, " c%" PRIu64, rep->cas)
    FL(MC_RF_TTL, " t%" PRId64, rep->ttl)
    FL(MC_RF_SIZE, " s%" PRIu32, rep->size)
    FL(MC_RF_ACCESS, " l%" PRIu32, rep->last_access)
    FL(MC_RF_HIT, " h%d", rep->hit)
    FL(MC_RF_WIN, " W")
    FL(MC_RF_STALE, " X")
    FL(MC_RF_WON, " Z")
#undef FL
    if (rep->kind == MC_META_VA) {
        log_add(t->log, "R%d meta VA%s [%.*s]", t->id, fl,
                (int)(rep->value_len < 40 ? rep->value_len : 40),
                rep->value);
    }
    else {
        log_add(t->log, "R%d meta %s%s", t->id, meta_kind_names[rep->kind],
                fl);
    }
    return 0;
}

static void
t_done(void *owner, struct mc_req *r)
{
    struct treq *t = owner;
    char why[300];
    t->done++;
    CHECK(&t->r == r);
    CHECK(r->next == NULL);
    fail_text(&r->fail, why, sizeof why);
    log_add(t->log, "R%d %s %s", t->id,
          r->state == MC_REQ_DONE     ? "done"
          : r->state == MC_REQ_FAILED ? "failed"
                                      : "in flight?",
          why);
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */

static struct mc_engine eng;

static struct mc_config
config(void)
{
    return engine_config(4);
}

static void
engine_up(const struct mc_config *cfg, const char *spec)
{
    uint32_t one = 1;
    if (mc_engine_init(&eng, cfg, 1) != 0
        || mc_engine_set_server(&eng, 0, spec, strlen(spec)) != 0
        || mc_engine_build(&eng, MC_DIST_KETAMA, MC_HASH_MD5, &one) != 0) {
        fprintf(stderr, "engine set-up failed\n");
        exit(2);
    }
}

/* A connection of eng's server over a socketpair; *peer the other end. */
static struct mc_conn *
new_conn(int *peer)
{
    return connect_pair(&eng, &eng.servers[0], peer);
}

/* True when the peer has bytes to read. */
static bool
peer_bytes_waiting(int peer)
{
    char b;
    return recv(peer, &b, 1, MSG_DONTWAIT | MSG_PEEK) > 0;
}

/* Drops an exact-size block for the pool (its capacity is not a buffer's). */
static void
buf_reset(struct mc_conn *c)
{
    CHECK_EQ(mc_buf_len(&c->rbuf), 0);
    mc_buf_free(&c->rbuf);
}

/* ------------------------------------------------------------------------ */
/* Scenarios                                                                 */

#define MAX_REQS 16

struct scenario {
    struct treq reqs[MAX_REQS];
    int n;
    struct log log;
    struct mc_conn *c;
    int peer;
    size_t max_value;
    int abandon_id;            /* the request abandoned after abandon_at */
    size_t abandon_at;         /* bytes fed; SIZE_MAX for none */
    size_t cut;                /* > 0: fed as two chunks, cut there */
};

static void
sc_begin(struct scenario *s)
{
    memset(s, 0, sizeof *s);
    s->c = new_conn(&s->peer);
    s->max_value = 1 << 20;
    s->abandon_id = -1;
    s->abandon_at = SIZE_MAX;
}

/* Queues a request expecting x, its bytes the string given; join as the
 * request's (a one-key get's command length: mc_conn_join may put it on
 * the line queued last). */
static struct treq *
sc_req_join(struct scenario *s, enum mc_expect x, const char *bytes,
            uint8_t join)
{
    if (s->n == MAX_REQS) {
        fprintf(stderr, "too many requests\n");
        exit(2);
    }
    struct treq *t = &s->reqs[s->n];
    t->id = s->n++;
    t->fail_at = -1;
    t->log = &s->log;
    mc_req_init(&t->r, x);
    t->r.on_item = t_item;
    t->r.on_meta = t_meta;
    t->r.on_done = t_done;
    t->r.owner = t;
    t->r.join = join;
    struct iovec iov = {(void *)bytes, strlen(bytes)};
    CHECK_EQ(mc_conn_queue(s->c, &t->r, &iov, 1, false), 0);
    return t;
}

/* Queues a request expecting x, its bytes the string given. */
static struct treq *
sc_req(struct scenario *s, enum mc_expect x, const char *bytes)
{
    return sc_req_join(s, x, bytes, 0);
}

/* A noreply command: no request, a fence's "MN" owed after the others. */
static void
sc_noreply(struct scenario *s, const char *bytes)
{
    struct iovec iov = {(void *)bytes, strlen(bytes)};
    CHECK_EQ(mc_conn_queue(s->c, NULL, &iov, 1, true), 0);
}

/* The keys of a retrieval: the words of keys, each after pre. */
static void
sc_keys(struct treq *t, const char *keys, const char *pre)
{
    size_t n = 0;
    for (const char *k = keys; *k != '\0'; n++) {
        if (n == sizeof t->wk / sizeof t->wk[0]) {
            fprintf(stderr, "too many keys\n");
            exit(2);
        }
        size_t len = strcspn(k, " ");
        t->wk[n].pre = pre ? pre : "";
        t->wk[n].pre_len = pre ? strlen(pre) : 0;
        t->wk[n].key = k;
        t->wk[n].key_len = len;
        k += len + (k[len] == ' ');
    }
    t->r.keys = (const char *)t->wk;
    t->r.key_stride = sizeof t->wk[0];
    t->r.nitems = n;
}

/* A request of a scenario, as data: what it expects, its bytes, and what
 * differs from mc_req_init's defaults. */
struct rq {
    enum mc_expect x;
    const char *bytes;         /* NULL ends a list */
    const char *keys, *pre;    /* a retrieval's (see sc_keys) */
    uint32_t accept;           /* status lines it takes */
    size_t nitems;             /* status lines, when more than one */
    size_t *index;             /* their order, the caller's */
    int ends;                  /* retrieval lines, when more than one */
    bool with_cas, soft_errors;
    bool owner_fails;          /* its owner fails at its first item */
    long long opaque;          /* MC_X_META: > 0, the O token its reply
                                * must carry */
    bool check_opaque;         /* ... even when opaque is 0 */
    enum mc_meta_as as;        /* MC_X_META: the text command it stands for */
    bool quiet;                /* ... sent with q, then mn */
    int fail_at;               /* > 0: its owner fails at item fail_at - 1 */
    uint8_t join;              /* a one-key get's command length (3 "get",
                                * 4 "gets"): joined to the line before */
};

/* Queues the requests of list (none when NULL). */
static void
sc_queue(struct scenario *s, const struct rq *list)
{
    for (const struct rq *q = list; q != NULL && q->bytes != NULL; q++) {
        struct treq *t = sc_req_join(s, q->x, q->bytes, q->join);
        if (q->keys != NULL) {
            sc_keys(t, q->keys, q->pre);
        }
        if (q->accept) {
            t->r.accept = q->accept;
        }
        if (q->nitems) {
            t->r.nitems = q->nitems;
        }
        if (q->index != NULL) {
            t->r.index = q->index;
        }
        if (q->ends) {
            t->r.ends = q->ends;
        }
        t->r.with_cas = q->with_cas;
        t->r.soft_errors = q->soft_errors;
        if (q->opaque > 0 || q->check_opaque) {
            t->r.check_opaque = true;
            t->r.opaque = (uint32_t)q->opaque;
        }
        t->r.as = q->as;
        t->r.quiet = q->quiet;
        if (q->owner_fails) {
            t->fail_at = 0;
        }
        if (q->fail_at > 0) {
            t->fail_at = q->fail_at - 1;
        }
    }
}

static const char *
head_name(const struct mc_conn *c)
{
    static char b[16];
    if (c->head == NULL) {
        return "-";
    }
    snprintf(b, sizeof b, "R%d", ((struct treq *)c->head->owner)->id);
    return b;
}

/* Feeds stream to the scenario's connection in chunks (mode 0: whole, 1:
 * byte by byte, k > 1: sizes 1..k drawn at random; with s->cut, the two
 * chunks on either side of it), calling mc_conn_feed
 * after each and again after MC_FEED_OWNER, the way the drivers do; after
 * MC_FEED_BROKEN the requests in flight are failed.  Returns the last
 * outcome. */
static int
sc_feed(struct scenario *s, const char *stream, size_t n, size_t mode,
        size_t *need)
{
    uint64_t seed = 0x1234567 + mode;
    size_t at = 0;
    int rc = 0;
    struct mc_fail f;
    while (at < n) {
        size_t chunk = mode == 0 ? n - at
                       : mode == 1
                           ? 1
                           : 1 + (size_t)(next_rand(&seed) % mode);
        if (s->cut > 0) {
            chunk = at < s->cut ? s->cut - at : n - at;
        }
        if (chunk > n - at) {
            chunk = n - at;
        }
        if (at < s->abandon_at && at + chunk > s->abandon_at) {
            chunk = s->abandon_at - at;
        }
        if (at == s->abandon_at && s->abandon_id >= 0) {
            mc_req_abandon(&s->reqs[s->abandon_id].r);
            log_add(&s->log, "abandon R%d", s->abandon_id);
        }
        exact_append(&s->c->rbuf, stream + at, chunk);
        at += chunk;
        for (int rounds = 0; rounds < 100; rounds++) {
            memset(&f, 0xa5, sizeof f);
            rc = mc_conn_feed(s->c, s->max_value, need, &f);
            if (rc != MC_FEED_OWNER) {
                break;
            }
            log_add(&s->log, "owner %s", head_name(s->c));
        }
        if (rc == MC_FEED_BROKEN) {
            char why[300];
            fail_text(&f, why, sizeof why);
            log_add(&s->log, "broken %s", why);
            mc_conn_fail_all(s->c, &f);
            CHECK(s->c->head == NULL && s->c->tail == NULL);
            return rc;
        }
        CHECK_EQ(rc, 0);
    }
    return rc;
}

/* Ends a scenario: each request was told it finished exactly once (or is
 * still in flight, when unfinished says so); a connection in sync goes
 * back to its pool. */
static void
sc_end(struct scenario *s, bool in_sync)
{
    for (int i = 0; i < s->n; i++) {
        CHECK_EQ(s->reqs[i].done, s->reqs[i].r.state != MC_REQ_FLIGHT);
    }
    if (in_sync && s->c->head == NULL) {
        buf_reset(s->c);
        int before = eng.servers[0].nidle;
        mc_engine_give(&eng, s->c);
        CHECK_EQ(eng.servers[0].nidle, before + 1);
        struct mc_conn *c;
        CHECK_EQ(mc_engine_take(&eng, &eng.servers[0], &c), MC_TAKE_IDLE);
        CHECK(c == s->c);
    }
    mc_conn_close(s->c);
    close(s->peer);
    free(s->log.text);
}

typedef void (*setup_fn)(struct scenario *s, const void *arg);

/* A reply scenario: the requests queued (reqs, then setup's with arg), the
 * stream that answers them, the log it leaves (one line per event) and the
 * last mc_conn_feed outcome. */
struct sc_def {
    const char *name;
    const struct rq *reqs;
    setup_fn setup;
    const char *stream;
    const char *want;
    int rc;
};

static const size_t modes[] = {0, 1, 2, 3, 7, 64};

/* Runs a scenario fed in one way (mode as sc_feed's; cut > 0: in two
 * chunks cut there) and compares what happened with what it wants. */
static void
run_once(const struct sc_def *d, const void *arg, size_t mode, size_t cut)
{
    struct scenario s;
    sc_begin(&s);
    sc_queue(&s, d->reqs);
    if (d->setup != NULL) {
        d->setup(&s, arg);
    }
    all_written(s.c);
    s.cut = cut;
    if (cut > 0) {
        set_ctx("%s, cut at %zu", d->name, cut);
    }
    else {
        set_ctx("%s, chunks of %zu", d->name, mode);
    }
    size_t need = 0;
    int rc = sc_feed(&s, d->stream, strlen(d->stream), mode, &need);
    CHECK_EQ(rc, d->rc);
    const char *got = s.log.text ? s.log.text : "";
    if (!CHECK(strcmp(got, d->want) == 0)) {
        fprintf(stderr, "--- got:\n%s--- want:\n%s---\n", got, d->want);
    }
    if (d->rc == 0) {
        CHECK_EQ(mc_buf_len(&s.c->rbuf), 0);
        CHECK_EQ(need, 0);
    }
    sc_end(&s, d->rc == 0);
}

/* Runs a scenario in every feeding mode. */
static void
run(const struct sc_def *d, const void *arg)
{
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        run_once(d, arg, modes[m], 0);
    }
}

/* ... and cut in two at every byte offset of its stream. */
static void
run_cuts(const struct sc_def *d, const void *arg)
{
    run(d, arg);
    for (size_t cut = 1; cut < strlen(d->stream); cut++) {
        run_once(d, arg, 0, cut);
    }
}

#define RUN_ALL(defs)                                                       \
    for (size_t i_ = 0; i_ < sizeof(defs) / sizeof(defs)[0]; i_++) {        \
        run(&(defs)[i_], NULL);                                             \
    }

#define RUN_CUTS(defs)                                                      \
    for (size_t i_ = 0; i_ < sizeof(defs) / sizeof(defs)[0]; i_++) {        \
        run_cuts(&(defs)[i_], NULL);                                        \
    }

/* What requests answered in turn log: each its lines (lines[q][0] up to
 * nitems[q]) and "done ok", except request r from its item at on: when
 * item_no is given its owner fails there (on the item item_no names) and
 * it fails with EOWNER, else it is abandoned there and done. */
static void
want_log(struct log *want, const char *const lines[][3], const int *nitems,
         int nreqs, int r, int at, const size_t item_no[][3])
{
    for (int q = 0; q < nreqs; q++) {
        for (int i = 0; i < (q == r ? at : nitems[q]); i++) {
            log_add(want, "%s", lines[q][i]);
        }
        if (q == r && item_no != NULL) {
            log_add(want, "R%d item %zu fails", q, item_no[q][at]);
            log_add(want, "owner R%d", q);
            log_add(want, "R%d failed EOWNER", q);
            continue;
        }
        if (q == r) {
            log_add(want, "abandon R%d", q);
        }
        log_add(want, "R%d done ok", q);
    }
}

/* ---- the requests of the scenarios -------------------------------------- */

#define ACCEPT(a, b) (1u << (a) | 1u << (b))

static const struct rq kinds[] = {
    {.x = MC_X_NUMBER, .bytes = "incr n 1\r\n"},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.x = MC_X_VALUES, .bytes = "get p:a p:b p:c\r\n", .keys = "a b c",
     .pre = "p:"},
    {.x = MC_X_STATUS, .bytes = "set k 0 0 1\r\nx\r\n",
     .accept = ACCEPT(MC_STORED, MC_NOT_STORED)},
    {.x = MC_X_OK, .bytes = "flush_all\r\n"},
    {.x = MC_X_STATS, .bytes = "stats\r\n"},
    {.x = MC_X_VALUES, .bytes = "gets k\r\n", .keys = "k", .with_cas = true},
    {.x = MC_X_NUMBER, .bytes = "decr n 1\r\n"},
    {.bytes = NULL},
};

/* Status lines of several items, in an order of the caller's (index);
 * RESET and OK end a stats reply; two retrieval lines owe two ENDs. */
static size_t index_42[] = {4, 2};

static const struct rq multi_frame[] = {
    {.x = MC_X_STATUS, .bytes = "delete x\r\ndelete y\r\n",
     .accept = ACCEPT(MC_DELETED, MC_NOT_FOUND), .nitems = 2,
     .index = index_42},
    {.x = MC_X_STATS, .bytes = "stats reset\r\n"},
    {.x = MC_X_STATS, .bytes = "stats detail on\r\n"},
    {.x = MC_X_VALUES, .bytes = "get a\r\nget b\r\n", .keys = "a b",
     .ends = 2},
    {.bytes = NULL},
};

static const struct rq errors_in_sync[] = {
    {.x = MC_X_NUMBER, .bytes = "incr n 1\r\n"},
    {.x = MC_X_STATUS, .bytes = "set k 0 0 1\r\nx\r\n",
     .accept = 1u << MC_STORED},
    {.x = MC_X_OK, .bytes = "flush_all\r\n"},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.x = MC_X_STATUS, .bytes = "set k 0 0 1\r\nx\r\n",
     .accept = 1u << MC_STORED, .soft_errors = true},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq get_then_version[] = {
    {.x = MC_X_VALUES, .bytes = "get a b\r\n", .keys = "a b"},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq stats_then_version[] = {
    {.x = MC_X_STATS, .bytes = "stats\r\n"},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq status2_then_version[] = {
    {.x = MC_X_STATUS, .bytes = "delete a\r\ndelete b\r\n",
     .accept = ACCEPT(MC_DELETED, MC_NOT_FOUND), .nitems = 2},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq three_numbers[] = {
    {.x = MC_X_NUMBER, .bytes = "incr a 1\r\n"},
    {.x = MC_X_NUMBER, .bytes = "incr b 1\r\n"},
    {.x = MC_X_NUMBER, .bytes = "incr c 1\r\n"},
    {.bytes = NULL},
};

static const struct rq get_stats_incr_version[] = {
    {.x = MC_X_VALUES, .bytes = "get a b\r\n", .keys = "a b"},
    {.x = MC_X_STATS, .bytes = "stats\r\n"},
    {.x = MC_X_NUMBER, .bytes = "incr n 1\r\n"},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq seven_kinds[] = {
    {.x = MC_X_VALUES, .bytes = "get a b c\r\n", .keys = "a b c"},
    {.x = MC_X_STATUS, .bytes = "delete a\r\ndelete b\r\n",
     .accept = ACCEPT(MC_DELETED, MC_NOT_FOUND), .nitems = 2},
    {.x = MC_X_NUMBER, .bytes = "incr n 1\r\n"},
    {.x = MC_X_STATS, .bytes = "stats\r\n"},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.x = MC_X_OK, .bytes = "flush_all\r\n"},
    {.x = MC_X_NUMBER, .bytes = "incr n 1\r\n"},
    {.bytes = NULL},
};

static const struct rq number_owner_fails[] = {
    {.x = MC_X_NUMBER, .bytes = "incr n 1\r\n", .owner_fails = true},
    {.bytes = NULL},
};

static const struct rq get_owner_fails[] = {
    {.x = MC_X_VALUES, .bytes = "get a b\r\n", .keys = "a b",
     .owner_fails = true},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq stats_owner_fails[] = {
    {.x = MC_X_STATS, .bytes = "stats\r\n", .owner_fails = true},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

/* Meta requests: the kinds each takes, as a binding asks them. */
#define META_GET_OK (1u << MC_META_VA | 1u << MC_META_EN)
#define META_STORE_OK                                                      \
    (1u << MC_META_HD | 1u << MC_META_NS | 1u << MC_META_EX                \
     | 1u << MC_META_NF)
#define META_DELETE_OK (1u << MC_META_HD | 1u << MC_META_NF | 1u << MC_META_EX)
#define META_ARITH_OK (1u << MC_META_VA | 1u << MC_META_NF)

static const struct rq meta_and_text[] = {
    {.x = MC_X_META, .bytes = "mg a v f c t\r\n", .accept = META_GET_OK},
    {.x = MC_X_VALUES, .bytes = "get a\r\n", .keys = "a"},
    {.x = MC_X_META, .bytes = "ms a 2 T0 F3\r\nhi\r\n",
     .accept = META_STORE_OK},
    {.x = MC_X_NUMBER, .bytes = "incr n 1\r\n"},
    {.x = MC_X_META, .bytes = "md a\r\n", .accept = META_DELETE_OK},
    {.x = MC_X_META, .bytes = "ma n v\r\n", .accept = META_ARITH_OK},
    {.x = MC_X_META, .bytes = "mg b v\r\n", .accept = META_GET_OK},
    {.x = MC_X_META, .bytes = "mg c v N30\r\n", .accept = META_GET_OK},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq meta_then_version[] = {
    {.x = MC_X_META, .bytes = "mg a v\r\n", .accept = META_GET_OK},
    {.x = MC_X_META, .bytes = "ms a 1\r\nx\r\n", .accept = META_STORE_OK},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

/* The asyncio client's: each meta request carries O<n>. */
static const struct rq meta_opaque[] = {
    {.x = MC_X_META, .bytes = "mg a v O1\r\n", .accept = META_GET_OK,
     .opaque = 1},
    {.x = MC_X_META, .bytes = "ms a 1 O2\r\nx\r\n", .accept = META_STORE_OK,
     .opaque = 2},
    {.x = MC_X_META, .bytes = "mg b v O3\r\n", .accept = META_GET_OK,
     .opaque = 3},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq meta_owner_fails[] = {
    {.x = MC_X_META, .bytes = "mg a v\r\n", .accept = META_GET_OK,
     .owner_fails = true},
    {.x = MC_X_META, .bytes = "mg b v\r\n", .accept = META_GET_OK},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static void
setup_meta_fence(struct scenario *s, const void *arg)
{
    (void)arg;
    sc_noreply(s, "set q 0 0 1 noreply\r\nq\r\n");
    struct treq *t = sc_req(s, MC_X_META, "mg q v\r\n");
    t->r.accept = META_GET_OK;
}

static void
setup_max3(struct scenario *s, const void *arg)
{
    (void)arg;
    s->max_value = 3;
}

static void
setup_meta_abandon(struct scenario *s, const void *arg)
{
    (void)arg;
    s->abandon_id = 0;
    s->abandon_at = 6;          /* inside "VA 3 f1\r\nabc\r\n" */
}

static void
test_meta(void)
{
    static const struct sc_def defs[] = {
        {"meta and text requests mixed", meta_and_text, NULL,
         "VA 2 f7 c9 t-1\r\nab\r\n"
         "VALUE a 7 2\r\nab\r\nEND\r\n"
         "HD\r\n"
         "12\r\n"
         "NF\r\n"
         "VA 2\r\n13\r\n"
         "EN\r\n"
         "VA 0 c1 t-1 W\r\n\r\n"
         "VERSION 1.6.18\r\n",
         "R0 meta VA f7 c9 t-1 [ab]\n"
         "R0 done ok\n"
         "R1 item 0 VALUE a 7 ab\n"
         "R1 done ok\n"
         "R2 meta HD\n"
         "R2 done ok\n"
         "R3 item 0 NUMBER 12\n"
         "R3 done ok\n"
         "R4 meta NF\n"
         "R4 done ok\n"
         "R5 meta VA [13]\n"
         "R5 done ok\n"
         "R6 meta EN\n"
         "R6 done ok\n"
         "R7 meta VA c1 t-1 W []\n"
         "R7 done ok\n"
         "R8 item 0 VERSION 1.6.18\n"
         "R8 done ok\n",
         0},
        {"opaque tokens matched", meta_opaque, NULL,
         "VA 1 O1\r\nz\r\nHD O2\r\nEN O3\r\nVERSION 1\r\n",
         "R0 meta VA [z]\n"
         "R0 done ok\n"
         "R1 meta HD\n"
         "R1 done ok\n"
         "R2 meta EN\n"
         "R2 done ok\n"
         "R3 item 0 VERSION 1\n"
         "R3 done ok\n",
         0},
        {"replies whose opaque tokens are swapped", meta_opaque, NULL,
         "EN O3\r\nHD O2\r\nVA 1 O1\r\nz\r\nVERSION 1\r\n",
         "broken EBADREPLY the reply's opaque token is not the request's\n"
         "R0 failed EBADREPLY the reply's opaque token is not the request's\n"
         "R1 failed EBADREPLY the reply's opaque token is not the request's\n"
         "R2 failed EBADREPLY the reply's opaque token is not the request's\n"
         "R3 failed EBADREPLY the reply's opaque token is not the request's\n",
         MC_FEED_BROKEN},
        {"a reply without the opaque token", meta_opaque, NULL,
         "VA 1\r\nz\r\nHD O2\r\n",
         "broken EBADREPLY the reply's opaque token is not the request's\n"
         "R0 failed EBADREPLY the reply's opaque token is not the request's\n"
         "R1 failed EBADREPLY the reply's opaque token is not the request's\n"
         "R2 failed EBADREPLY the reply's opaque token is not the request's\n"
         "R3 failed EBADREPLY the reply's opaque token is not the request's\n",
         MC_FEED_BROKEN},
        {"an error line answers an opaque request", meta_opaque, NULL,
         "SERVER_ERROR out of memory\r\nHD O2\r\nEN O3\r\nVERSION 1\r\n",
         "R0 failed EREPLY SERVER_ERROR out of memory\n"
         "R1 meta HD\n"
         "R1 done ok\n"
         "R2 meta EN\n"
         "R2 done ok\n"
         "R3 item 0 VERSION 1\n"
         "R3 done ok\n",
         0},
        {"meta error lines in sync", meta_then_version, NULL,
         "CLIENT_ERROR bad command line format\r\n"
         "SERVER_ERROR out of memory storing object\r\n"
         "VERSION 1\r\n",
         "R0 failed EREPLY CLIENT_ERROR bad command line format\n"
         "R1 failed EREPLY SERVER_ERROR out of memory storing object\n"
         "R2 item 0 VERSION 1\n"
         "R2 done ok\n",
         0},
        {"a text reply to a meta request", meta_then_version, NULL,
         "END\r\nHD\r\nVERSION 1\r\n",
         "broken EBADREPLY unexpected bytes\n"
         "R0 failed EBADREPLY unexpected bytes\n"
         "R1 failed EBADREPLY unexpected bytes\n"
         "R2 failed EBADREPLY unexpected bytes\n",
         MC_FEED_BROKEN},
        {"a meta reply of the wrong kind", meta_then_version, NULL,
         "HD\r\nHD\r\nVERSION 1\r\n",
         "broken EBADREPLY reply does not fit the command\n"
         "R0 failed EBADREPLY reply does not fit the command\n"
         "R1 failed EBADREPLY reply does not fit the command\n"
         "R2 failed EBADREPLY reply does not fit the command\n",
         MC_FEED_BROKEN},
        {"a meta reply to a text request", meta_then_version, NULL,
         "EN\r\nHD\r\nHD\r\n",
         "R0 meta EN\n"
         "R0 done ok\n"
         "R1 meta HD\n"
         "R1 done ok\n"
         "broken EBADREPLY unexpected bytes\n"
         "R2 failed EBADREPLY unexpected bytes\n",
         MC_FEED_BROKEN},
        {"a meta value over max_value", meta_then_version, setup_max3,
         "VA 4\r\nxx",
         "broken EVALUE\n"
         "R0 failed EVALUE\n"
         "R1 failed EVALUE\n"
         "R2 failed EVALUE\n",
         MC_FEED_BROKEN},
        {"a meta value of max_value", meta_then_version, setup_max3,
         "VA 3\r\nxyz\r\nHD\r\nVERSION 1\r\n",
         "R0 meta VA [xyz]\n"
         "R0 done ok\n"
         "R1 meta HD\n"
         "R1 done ok\n"
         "R2 item 0 VERSION 1\n"
         "R2 done ok\n",
         0},
        {"a bad meta value terminator", meta_then_version, NULL,
         "VA 1\r\nxy\r\nHD\r\nVERSION 1\r\n",
         "broken EBADREPLY unexpected bytes\n"
         "R0 failed EBADREPLY unexpected bytes\n"
         "R1 failed EBADREPLY unexpected bytes\n"
         "R2 failed EBADREPLY unexpected bytes\n",
         MC_FEED_BROKEN},
        {"a meta owner fails", meta_owner_fails, NULL,
         "VA 1\r\nx\r\nVA 1\r\ny\r\nVERSION 1\r\n",
         "R0 meta fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n"
         "R1 meta VA [y]\n"
         "R1 done ok\n"
         "R2 item 0 VERSION 1\n"
         "R2 done ok\n",
         0},
        {"an abandoned meta request", meta_then_version, setup_meta_abandon,
         "VA 3 f1\r\nabc\r\nHD\r\nVERSION 1\r\n",
         "abandon R0\n"
         "R0 done ok\n"
         "R1 meta HD\n"
         "R1 done ok\n"
         "R2 item 0 VERSION 1\n"
         "R2 done ok\n",
         0},
        {"a fence between meta requests", meta_then_version,
         setup_meta_fence,
         "EN\r\nHD\r\nVERSION 1\r\nMN\r\nVA 1\r\nq\r\n",
         "R0 meta EN\n"
         "R0 done ok\n"
         "R1 meta HD\n"
         "R1 done ok\n"
         "R2 item 0 VERSION 1\n"
         "R2 done ok\n"
         "R3 meta VA [q]\n"
         "R3 done ok\n",
         0},
    };
    RUN_ALL(defs);
}

/* ---- text commands spoken as meta (protocol="meta") --------------------- */

/* The replies are memcached 1.6.18's to the requests shown (the engine's
 * own lines: mc_meta_fmt's flag order, O<n> when an opaque is checked, q
 * and mn for a multi-key get); every scenario is also fed cut in two at
 * every byte offset. */

#define BAD_TOKEN "the reply's opaque token is not the request's"
#define NOT_FIT "reply does not fit the command"

static const struct rq as_single[] = {
    {.x = MC_X_META, .bytes = "mg a v f\r\n", .as = MC_AS_GET},
    {.x = MC_X_META, .bytes = "mg nope v f\r\n", .as = MC_AS_GET},
    {.x = MC_X_META, .bytes = "mg a v f c\r\n", .as = MC_AS_GET,
     .with_cas = true},
    {.x = MC_X_META, .bytes = "mg a T30\r\n", .as = MC_AS_TOUCH},
    {.x = MC_X_META, .bytes = "mg nope T30\r\n", .as = MC_AS_TOUCH},
    {.x = MC_X_META, .bytes = "ms c 1\r\nx\r\n", .as = MC_AS_STORE},
    {.x = MC_X_META, .bytes = "ms c 1 ME\r\nx\r\n", .as = MC_AS_STORE},
    {.x = MC_X_META, .bytes = "ms c 1 C1\r\nx\r\n", .as = MC_AS_STORE},
    {.x = MC_X_META, .bytes = "ms nope 1 C1\r\nx\r\n", .as = MC_AS_STORE},
    {.x = MC_X_META, .bytes = "md c\r\n", .as = MC_AS_DELETE},
    {.x = MC_X_META, .bytes = "md c\r\n", .as = MC_AS_DELETE},
    {.x = MC_X_META, .bytes = "ma n D5 v\r\n", .as = MC_AS_ARITH},
    {.x = MC_X_META, .bytes = "ma n MD D100 v\r\n", .as = MC_AS_ARITH},
    {.x = MC_X_META, .bytes = "ma nope D1 v\r\n", .as = MC_AS_ARITH},
    {.x = MC_X_META, .bytes = "ma a D1 v\r\n", .as = MC_AS_ARITH},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq as_errors[] = {
    {.x = MC_X_META, .bytes = "mg a v f\r\n", .as = MC_AS_GET},
    {.x = MC_X_META, .bytes = "mg a T30\r\n", .as = MC_AS_TOUCH},
    {.x = MC_X_META, .bytes = "ms big 2000000\r\n", .as = MC_AS_STORE},
    {.x = MC_X_META, .bytes = "md c\r\n", .as = MC_AS_DELETE},
    {.x = MC_X_META, .bytes = "ma a D1 v\r\n", .as = MC_AS_ARITH},
    {.x = MC_X_META, .bytes = "mg a v f O6\r\n", .as = MC_AS_GET,
     .opaque = 6},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

/* The asyncio client's: each line with the token of its own. */
static const struct rq as_opaque[] = {
    {.x = MC_X_META, .bytes = "mg a v f O1\r\n", .as = MC_AS_GET,
     .opaque = 1},
    {.x = MC_X_META, .bytes = "mg nope v f O2\r\n", .as = MC_AS_GET,
     .opaque = 2},
    {.x = MC_X_META, .bytes = "mg a T30 O3\r\n", .as = MC_AS_TOUCH,
     .opaque = 3},
    {.x = MC_X_META, .bytes = "ms c 1 ME O4\r\nx\r\n", .as = MC_AS_STORE,
     .opaque = 4},
    {.x = MC_X_META, .bytes = "md c O5\r\n", .as = MC_AS_DELETE,
     .opaque = 5},
    {.x = MC_X_META, .bytes = "ma n MD D1 v O6\r\n", .as = MC_AS_ARITH,
     .opaque = 6},
    {.x = MC_X_META, .bytes = "ma a D1 v O7\r\n", .as = MC_AS_ARITH,
     .opaque = 7},
    {.x = MC_X_META, .bytes = "ms big 2000000 O8\r\n", .as = MC_AS_STORE,
     .opaque = 8},
    {.x = MC_X_META, .bytes = "mg a v f O0\r\n", .as = MC_AS_GET,
     .check_opaque = true},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq as_opaque2[] = {
    {.x = MC_X_META, .bytes = "mg a v f O1\r\n", .as = MC_AS_GET,
     .opaque = 1},
    {.x = MC_X_META, .bytes = "mg a T30 O2\r\n", .as = MC_AS_TOUCH,
     .opaque = 2},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

/* One request of each kind, then a VERSION. */
#define AS_ONE(name, line, as_, cas)                                        \
    static const struct rq name[] = {                                       \
        {.x = MC_X_META, .bytes = (line), .as = (as_), .with_cas = (cas)},  \
        {.x = MC_X_VERSION, .bytes = "version\r\n"},                        \
        {.bytes = NULL},                                                    \
    }
AS_ONE(one_get, "mg a v f\r\n", MC_AS_GET, false);
AS_ONE(one_gets, "mg a v f c\r\n", MC_AS_GET, true);
AS_ONE(one_touch, "mg a T30\r\n", MC_AS_TOUCH, false);
AS_ONE(one_store, "ms a 1\r\nx\r\n", MC_AS_STORE, false);
AS_ONE(one_delete, "md a\r\n", MC_AS_DELETE, false);
AS_ONE(one_arith, "ma n D1 v\r\n", MC_AS_ARITH, false);
#undef AS_ONE

#define BROKEN3(why)                                                        \
    "broken EBADREPLY " why "\n"                                            \
    "R0 failed EBADREPLY " why "\n"                                         \
    "R1 failed EBADREPLY " why "\n"

static void
test_meta_as_single(void)
{
    static const struct sc_def defs[] = {
        {"as text: every kind of command and answer", as_single, NULL,
         "VA 1 f0\r\na\r\n"
         "EN\r\n"
         "VA 1 f0 c1\r\na\r\n"
         "HD\r\n"
         "EN\r\n"
         "HD\r\n"
         "NS\r\n"
         "EX\r\n"
         "NF\r\n"
         "HD\r\n"
         "NF\r\n"
         "VA 2\r\n15\r\n"
         "VA 1\r\n0\r\n"
         "NF\r\n"
         "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
         "VERSION 1.6.18\r\n",
         "R0 item 0 VALUE f0 [a]\n"
         "R0 done ok\n"
         "R1 done ok\n"
         "R2 item 0 VALUE f0 [a] cas\n"
         "R2 cas 1\n"
         "R2 done ok\n"
         "R3 item 0 TOUCHED\n"
         "R3 done ok\n"
         "R4 item 0 NOT_FOUND\n"
         "R4 done ok\n"
         "R5 item 0 STORED\n"
         "R5 done ok\n"
         "R6 item 0 NOT_STORED\n"
         "R6 done ok\n"
         "R7 item 0 EXISTS\n"
         "R7 done ok\n"
         "R8 item 0 NOT_FOUND\n"
         "R8 done ok\n"
         "R9 item 0 DELETED\n"
         "R9 done ok\n"
         "R10 item 0 NOT_FOUND\n"
         "R10 done ok\n"
         "R11 item 0 NUMBER 15\n"
         "R11 done ok\n"
         "R12 item 0 NUMBER 0\n"
         "R12 done ok\n"
         "R13 item 0 NOT_FOUND\n"
         "R13 done ok\n"
         "R14 failed EREPLY CLIENT_ERROR cannot increment or decrement "
         "non-numeric value\n"
         "R15 item 0 VERSION 1.6.18\n"
         "R15 done ok\n",
         0},
        {"as text: error lines in sync", as_errors, NULL,
         "CLIENT_ERROR bad command line format\r\n"
         "SERVER_ERROR out of memory\r\n"
         "SERVER_ERROR object too large for cache\r\n"
         "ERROR\r\n"
         "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
         "SERVER_ERROR out of memory\r\n"
         "VERSION 1.6.18\r\n",
         "R0 failed EREPLY CLIENT_ERROR bad command line format\n"
         "R1 failed EREPLY SERVER_ERROR out of memory\n"
         "R2 failed EREPLY SERVER_ERROR object too large for cache\n"
         "R3 failed EREPLY ERROR\n"
         "R4 failed EREPLY CLIENT_ERROR cannot increment or decrement "
         "non-numeric value\n"
         "R5 failed EREPLY SERVER_ERROR out of memory\n"
         "R6 item 0 VERSION 1.6.18\n"
         "R6 done ok\n",
         0},
        {"as text: the largest number", one_arith, NULL,
         "VA 20\r\n18446744073709551615\r\nVERSION 1.6.18\r\n",
         "R0 item 0 NUMBER 18446744073709551615\n"
         "R0 done ok\n"
         "R1 item 0 VERSION 1.6.18\n"
         "R1 done ok\n",
         0},
        {"as text: a token where none is checked", one_touch, NULL,
         "HD O99\r\nVERSION 1.6.18\r\n",
         "R0 item 0 TOUCHED\n"
         "R0 done ok\n"
         "R1 item 0 VERSION 1.6.18\n"
         "R1 done ok\n",
         0},
        /* a frame that is not a reply to the command: out of sync */
        {"as text: a get's VA without f", one_get, NULL,
         "VA 1\r\na\r\nVERSION 1.6.18\r\n", BROKEN3(NOT_FIT),
         MC_FEED_BROKEN},
        {"as text: a gets' VA without c", one_gets, NULL,
         "VA 1 f0\r\na\r\nVERSION 1.6.18\r\n", BROKEN3(NOT_FIT),
         MC_FEED_BROKEN},
        {"as text: HD for a get", one_get, NULL, "HD\r\nVERSION 1.6.18\r\n",
         BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        {"as text: MN for a get", one_get, NULL, "MN\r\nVERSION 1.6.18\r\n",
         BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        {"as text: NF for a touch", one_touch, NULL, "NF\r\n",
         BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        {"as text: VA for a store", one_store, NULL, "VA 1\r\nx\r\n",
         BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        {"as text: EN for a store", one_store, NULL, "EN\r\n",
         BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        {"as text: EX for a delete", one_delete, NULL, "EX\r\n",
         BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        {"as text: HD for an incr", one_arith, NULL, "HD\r\n",
         BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        {"as text: a number with a letter", one_arith, NULL,
         "VA 3\r\n12a\r\nVERSION 1.6.18\r\n", BROKEN3(NOT_FIT),
         MC_FEED_BROKEN},
        {"as text: a number over 64 bits", one_arith, NULL,
         "VA 20\r\n18446744073709551616\r\n", BROKEN3(NOT_FIT),
         MC_FEED_BROKEN},
        {"as text: a number of 21 digits", one_arith, NULL,
         "VA 21\r\n000000000000000000001\r\n", BROKEN3(NOT_FIT),
         MC_FEED_BROKEN},
        {"as text: an empty number", one_arith, NULL, "VA 0\r\n\r\n",
         BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        {"as text: a text reply", one_store, NULL, "STORED\r\n",
         BROKEN3("unexpected bytes"), MC_FEED_BROKEN},
    };
    RUN_CUTS(defs);
}

static void
test_meta_as_opaque(void)
{
    static const struct sc_def defs[] = {
        {"as text: opaque tokens matched", as_opaque, NULL,
         "VA 1 f0 O1\r\na\r\n"
         "EN O2\r\n"
         "HD O3\r\n"
         "NS O4\r\n"
         "NF O5\r\n"
         "VA 1 O6\r\n0\r\n"
         "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
         "SERVER_ERROR object too large for cache\r\n"
         "VA 2 f3 O0\r\nhi\r\n"
         "VERSION 1.6.18\r\n",
         "R0 item 0 VALUE f0 [a]\n"
         "R0 done ok\n"
         "R1 done ok\n"
         "R2 item 0 TOUCHED\n"
         "R2 done ok\n"
         "R3 item 0 NOT_STORED\n"
         "R3 done ok\n"
         "R4 item 0 NOT_FOUND\n"
         "R4 done ok\n"
         "R5 item 0 NUMBER 0\n"
         "R5 done ok\n"
         "R6 failed EREPLY CLIENT_ERROR cannot increment or decrement "
         "non-numeric value\n"
         "R7 failed EREPLY SERVER_ERROR object too large for cache\n"
         "R8 item 0 VALUE f3 [hi]\n"
         "R8 done ok\n"
         "R9 item 0 VERSION 1.6.18\n"
         "R9 done ok\n",
         0},
        {"as text: another request's token", as_opaque2, NULL,
         "VA 1 f0 O1\r\na\r\nHD O3\r\nVERSION 1\r\n",
         "R0 item 0 VALUE f0 [a]\n"
         "R0 done ok\n"
         "broken EBADREPLY " BAD_TOKEN "\n"
         "R1 failed EBADREPLY " BAD_TOKEN "\n"
         "R2 failed EBADREPLY " BAD_TOKEN "\n",
         MC_FEED_BROKEN},
        {"as text: the replies swapped", as_opaque2, NULL,
         "HD O2\r\nVA 1 f0 O1\r\na\r\nVERSION 1\r\n",
         "broken EBADREPLY " BAD_TOKEN "\n"
         "R0 failed EBADREPLY " BAD_TOKEN "\n"
         "R1 failed EBADREPLY " BAD_TOKEN "\n"
         "R2 failed EBADREPLY " BAD_TOKEN "\n",
         MC_FEED_BROKEN},
        {"as text: no token", as_opaque2, NULL,
         "VA 1 f0 O1\r\na\r\nHD\r\nVERSION 1\r\n",
         "R0 item 0 VALUE f0 [a]\n"
         "R0 done ok\n"
         "broken EBADREPLY " BAD_TOKEN "\n"
         "R1 failed EBADREPLY " BAD_TOKEN "\n"
         "R2 failed EBADREPLY " BAD_TOKEN "\n",
         MC_FEED_BROKEN},
        {"as text: a token that is not a number", as_opaque2, NULL,
         "VA 1 f0 O1\r\na\r\nHD Ox2\r\n",
         "R0 item 0 VALUE f0 [a]\n"
         "R0 done ok\n"
         "broken EBADREPLY " BAD_TOKEN "\n"
         "R1 failed EBADREPLY " BAD_TOKEN "\n"
         "R2 failed EBADREPLY " BAD_TOKEN "\n",
         MC_FEED_BROKEN},
        {"as text: an empty token", as_opaque2, NULL, "VA 1 f0 O\r\na\r\n",
         "broken EBADREPLY " BAD_TOKEN "\n"
         "R0 failed EBADREPLY " BAD_TOKEN "\n"
         "R1 failed EBADREPLY " BAD_TOKEN "\n"
         "R2 failed EBADREPLY " BAD_TOKEN "\n",
         MC_FEED_BROKEN},
        {"as text: the token plus 2^32", as_opaque2, NULL,
         "VA 1 f0 O4294967297\r\na\r\n",
         "broken EBADREPLY " BAD_TOKEN "\n"
         "R0 failed EBADREPLY " BAD_TOKEN "\n"
         "R1 failed EBADREPLY " BAD_TOKEN "\n"
         "R2 failed EBADREPLY " BAD_TOKEN "\n",
         MC_FEED_BROKEN},
        {"as text: an error line, then the next token", as_opaque2, NULL,
         "SERVER_ERROR out of memory\r\nHD O2\r\nVERSION 1\r\n",
         "R0 failed EREPLY SERVER_ERROR out of memory\n"
         "R1 item 0 TOUCHED\n"
         "R1 done ok\n"
         "R2 item 0 VERSION 1\n"
         "R2 done ok\n",
         0},
    };
    RUN_CUTS(defs);
}

/* ---- a multi-key get: quiet mg lines, then mn --------------------------- */

/* Positions 0..3 of the part are the call's items 5, 2, 9, 0. */
static size_t qindex[] = {5, 2, 9, 0};

#define QGET_LINES                                                          \
    "mg a v f O7 q\r\nmg b v f O8 q\r\nmg c v f O9 q\r\nmg d v f O10 q\r\n" \
    "mn\r\n"

static const struct rq quiet_get[] = {
    {.x = MC_X_META, .bytes = QGET_LINES, .as = MC_AS_GET, .quiet = true,
     .opaque = 7, .nitems = 4, .index = qindex},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq quiet_get_meta[] = {
    {.x = MC_X_META, .bytes = QGET_LINES, .as = MC_AS_GET, .quiet = true,
     .opaque = 7, .nitems = 4, .index = qindex},
    {.x = MC_X_META, .bytes = "ms a 1 O11\r\nx\r\n", .as = MC_AS_STORE,
     .opaque = 11},
    {.x = MC_X_META, .bytes = "mg zz v f O12 q\r\nmn\r\n", .as = MC_AS_GET,
     .quiet = true, .opaque = 12},
    {.x = MC_X_VALUES, .bytes = "get a\r\n", .keys = "a"},
    {.bytes = NULL},
};

static const struct rq quiet_gets[] = {
    {.x = MC_X_META, .bytes = "mg a v f c O7 q\r\nmg zz v f c O8 q\r\nmn\r\n",
     .as = MC_AS_GET, .quiet = true, .opaque = 7, .nitems = 2,
     .with_cas = true},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

/* Tokens from 4294967294 on: O4294967294 O4294967295 O0 O1. */
static const struct rq quiet_wrap[] = {
    {.x = MC_X_META,
     .bytes = "mg a v f O4294967294 q\r\nmg b v f O4294967295 q\r\n"
              "mg a v f O0 q\r\nmg b v f O1 q\r\nmn\r\n",
     .as = MC_AS_GET, .quiet = true, .opaque = 4294967294LL, .nitems = 4},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq quiet_owner1[] = {
    {.x = MC_X_META, .bytes = QGET_LINES, .as = MC_AS_GET, .quiet = true,
     .opaque = 7, .nitems = 4, .index = qindex, .fail_at = 1},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq quiet_owner2[] = {
    {.x = MC_X_META, .bytes = QGET_LINES, .as = MC_AS_GET, .quiet = true,
     .opaque = 7, .nitems = 4, .index = qindex, .fail_at = 2},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static void
setup_quiet_abandon(struct scenario *s, const void *arg)
{
    (void)arg;
    s->abandon_id = 0;
    s->abandon_at = 20;         /* inside "VA 2 f5 O10\r\nbb\r\n" */
}

#define QTWO "VA 1 f0 O8\r\na\r\nVA 2 f5 O10\r\nbb\r\nMN\r\n"
#define QTWO_LOG "R0 item 2 VALUE f0 [a]\nR0 item 0 VALUE f5 [bb]\n"
#define V1618 "VERSION 1.6.18\r\n"
#define V1618_LOG "R1 item 0 VERSION 1.6.18\nR1 done ok\n"

static void
test_meta_quiet(void)
{
    static const struct sc_def defs[] = {
        {"quiet get: two hits of four", quiet_get, NULL, QTWO V1618,
         QTWO_LOG "R0 done ok\n" V1618_LOG, 0},
        {"quiet get: every key a hit", quiet_get, NULL,
         "VA 1 f1 O7\r\na\r\nVA 1 f2 O8\r\nb\r\nVA 0 f3 O9\r\n\r\n"
         "VA 1 f4 O10\r\nd\r\nMN\r\n" V1618,
         "R0 item 5 VALUE f1 [a]\n"
         "R0 item 2 VALUE f2 [b]\n"
         "R0 item 9 VALUE f3 []\n"
         "R0 item 0 VALUE f4 [d]\n"
         "R0 done ok\n" V1618_LOG,
         0},
        {"quiet get: the last key only", quiet_get, NULL,
         "VA 1 f0 O10\r\nz\r\nMN\r\n" V1618,
         "R0 item 0 VALUE f0 [z]\nR0 done ok\n" V1618_LOG, 0},
        {"quiet get: every key a miss", quiet_get, NULL, "MN\r\n" V1618,
         "R0 done ok\n" V1618_LOG, 0},
        {"quiet get among meta and text requests", quiet_get_meta, NULL,
         QTWO "HD O11\r\nMN\r\nVALUE a 0 1\r\nx\r\nEND\r\n",
         QTWO_LOG
         "R0 done ok\n"
         "R1 item 0 STORED\n"
         "R1 done ok\n"
         "R2 done ok\n"
         "R3 item 0 VALUE a 0 x\n"
         "R3 done ok\n",
         0},
        {"quiet get: a token backwards", quiet_get, NULL,
         "VA 1 f0 O8\r\na\r\nVA 1 f0 O7\r\nb\r\nMN\r\n",
         "R0 item 2 VALUE f0 [a]\n" BROKEN3(BAD_TOKEN), MC_FEED_BROKEN},
        {"quiet get: a token twice", quiet_get, NULL,
         "VA 1 f0 O8\r\na\r\nVA 1 f0 O8\r\nb\r\nMN\r\n",
         "R0 item 2 VALUE f0 [a]\n" BROKEN3(BAD_TOKEN), MC_FEED_BROKEN},
        {"quiet get: a token past the last key", quiet_get, NULL,
         "VA 1 f0 O11\r\na\r\nMN\r\n", BROKEN3(BAD_TOKEN), MC_FEED_BROKEN},
        {"quiet get: a token before the first key", quiet_get, NULL,
         "VA 1 f0 O6\r\na\r\nMN\r\n", BROKEN3(BAD_TOKEN), MC_FEED_BROKEN},
        {"quiet get: a token 2^32 past a key's", quiet_get, NULL,
         "VA 1 f0 O4294967303\r\na\r\nMN\r\n", BROKEN3(BAD_TOKEN),
         MC_FEED_BROKEN},
        {"quiet get: a frame without a token", quiet_get, NULL,
         "VA 1 f0 O7\r\na\r\nVA 1 f0\r\nb\r\nMN\r\n",
         "R0 item 5 VALUE f0 [a]\n" BROKEN3(BAD_TOKEN), MC_FEED_BROKEN},
        {"quiet get: HD is no answer", quiet_get, NULL, "HD O7\r\nMN\r\n",
         BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        {"quiet get: a VA without f", quiet_get, NULL,
         "VA 1 O7\r\na\r\nMN\r\n", BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        {"quiet get: a text reply", quiet_get, NULL,
         "VALUE a 0 1\r\nx\r\nEND\r\n", BROKEN3("unexpected bytes"),
         MC_FEED_BROKEN},
        {"quiet get: the next reply before its MN", quiet_get, NULL,
         "VA 1 f0 O7\r\na\r\n" V1618,
         "R0 item 5 VALUE f0 [a]\n" BROKEN3("unexpected bytes"),
         MC_FEED_BROKEN},
        /* an error line answers one line; the request fails at its MN */
        {"quiet get: SERVER_ERROR between frames", quiet_get, NULL,
         "VA 1 f0 O7\r\na\r\nSERVER_ERROR out of memory\r\n"
         "VA 2 f5 O9\r\nbb\r\nMN\r\n" V1618,
         "R0 item 5 VALUE f0 [a]\n"
         "R0 failed EREPLY SERVER_ERROR out of memory\n" V1618_LOG,
         0},
        {"quiet get: CLIENT_ERROR for a key too long", quiet_get, NULL,
         "VA 1 f0 O7\r\na\r\nCLIENT_ERROR bad command line format\r\n"
         "VA 2 f5 O9\r\nbb\r\nMN\r\n" V1618,
         "R0 item 5 VALUE f0 [a]\n"
         "R0 failed EREPLY CLIENT_ERROR bad command line format\n"
         V1618_LOG,
         0},
        {"quiet get: an error line first, then MN", quiet_get, NULL,
         "ERROR\r\nMN\r\n" V1618, "R0 failed EREPLY ERROR\n" V1618_LOG, 0},
        {"quiet get: two error lines, the first kept", quiet_get, NULL,
         "SERVER_ERROR a\r\nVA 1 f0 O8\r\nx\r\nSERVER_ERROR b\r\nMN\r\n"
         V1618,
         "R0 failed EREPLY SERVER_ERROR a\n" V1618_LOG, 0},
        {"quiet get: an error line, then a bad token", quiet_get, NULL,
         "SERVER_ERROR out of memory\r\nVA 1 f0 O6\r\nx\r\nMN\r\n",
         "broken EBADREPLY " BAD_TOKEN "\n"
         "R0 failed EREPLY SERVER_ERROR out of memory\n"
         "R1 failed EBADREPLY " BAD_TOKEN "\n",
         MC_FEED_BROKEN},
        {"quiet gets", quiet_gets, NULL,
         "VA 1 f0 c1 O7\r\na\r\nMN\r\n" V1618,
         "R0 item 0 VALUE f0 [a] cas\nR0 cas 1\nR0 done ok\n" V1618_LOG, 0},
        {"quiet gets: a VA without c", quiet_gets, NULL,
         "VA 1 f0 c1 O7\r\na\r\nVA 1 f0 O8\r\nb\r\nMN\r\n",
         "R0 item 0 VALUE f0 [a] cas\nR0 cas 1\n" BROKEN3(NOT_FIT),
         MC_FEED_BROKEN},
        {"quiet get: tokens wrap past 2^32", quiet_wrap, NULL,
         "VA 1 f0 O4294967294\r\na\r\nVA 2 f5 O4294967295\r\nbb\r\n"
         "VA 1 f0 O0\r\na\r\nVA 2 f5 O1\r\nbb\r\nMN\r\n" V1618,
         "R0 item 0 VALUE f0 [a]\n"
         "R0 item 1 VALUE f5 [bb]\n"
         "R0 item 2 VALUE f0 [a]\n"
         "R0 item 3 VALUE f5 [bb]\n"
         "R0 done ok\n" V1618_LOG,
         0},
        {"quiet get: a wrapped token only", quiet_wrap, NULL,
         "VA 2 f5 O1\r\nbb\r\nMN\r\n" V1618,
         "R0 item 3 VALUE f5 [bb]\nR0 done ok\n" V1618_LOG, 0},
        {"quiet get: a wrapped token past the last key", quiet_wrap, NULL,
         "VA 1 f0 O2\r\na\r\nMN\r\n", BROKEN3(BAD_TOKEN), MC_FEED_BROKEN},
        {"quiet get: a token before the wrapped first", quiet_wrap, NULL,
         "VA 1 f0 O4294967293\r\na\r\nMN\r\n", BROKEN3(BAD_TOKEN),
         MC_FEED_BROKEN},
        {"quiet get: wrapped tokens backwards", quiet_wrap, NULL,
         "VA 1 f0 O0\r\na\r\nVA 1 f0 O4294967295\r\na\r\nMN\r\n",
         "R0 item 2 VALUE f0 [a]\n" BROKEN3(BAD_TOKEN), MC_FEED_BROKEN},
        /* owners */
        {"quiet get: the owner fails at the first hit", quiet_owner1, NULL,
         QTWO V1618,
         "R0 item 2 fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n" V1618_LOG,
         0},
        {"quiet get: the owner fails at the last hit", quiet_owner2, NULL,
         QTWO V1618,
         "R0 item 2 VALUE f0 [a]\n"
         "R0 item 0 fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n" V1618_LOG,
         0},
        {"quiet get: the owner failed, then an error line", quiet_owner1,
         NULL, "VA 1 f0 O8\r\na\r\nSERVER_ERROR x\r\nMN\r\n" V1618,
         "R0 item 2 fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n" V1618_LOG,
         0},
        {"quiet get: the owner failed, then a bad token", quiet_owner1, NULL,
         "VA 1 f0 O8\r\na\r\nVA 1 f0 O8\r\na\r\nMN\r\n",
         "R0 item 2 fails\n"
         "owner R0\n"
         "broken EBADREPLY " BAD_TOKEN "\n"
         "R0 failed EOWNER\n"
         "R1 failed EBADREPLY " BAD_TOKEN "\n",
         MC_FEED_BROKEN},
        {"quiet get: abandoned mid-reply", quiet_get, setup_quiet_abandon,
         QTWO V1618,
         "R0 item 2 VALUE f0 [a]\n"
         "abandon R0\n"
         "R0 done ok\n" V1618_LOG,
         0},
    };
    RUN_CUTS(defs);
}

/* ---- set_multi and delete_multi: a line per key, each with its token ---- */

static const struct rq store3[] = {
    {.x = MC_X_META,
     .bytes = "ms a 1 O0\r\nx\r\nms b 1 O1\r\ny\r\nms c 1 O2\r\nz\r\n",
     .as = MC_AS_STORE, .soft_errors = true, .nitems = 3,
     .check_opaque = true},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq store3_alone[] = {
    {.x = MC_X_META,
     .bytes = "ms a 1 O0\r\nx\r\nms b 1 O1\r\ny\r\nms c 1 O2\r\nz\r\n",
     .as = MC_AS_STORE, .soft_errors = true, .nitems = 3,
     .check_opaque = true},
    {.bytes = NULL},
};

static const struct rq store3_then_meta[] = {
    {.x = MC_X_META,
     .bytes = "ms a 1 O0\r\nx\r\nms b 1 O1\r\ny\r\nms c 1 O2\r\nz\r\n",
     .as = MC_AS_STORE, .soft_errors = true, .nitems = 3,
     .check_opaque = true},
    {.x = MC_X_META, .bytes = "md a O9\r\n", .as = MC_AS_DELETE,
     .opaque = 9},
    {.bytes = NULL},
};

static const struct rq store3_owner2[] = {
    {.x = MC_X_META,
     .bytes = "ms a 1 O0\r\nx\r\nms b 1 O1\r\ny\r\nms c 1 O2\r\nz\r\n",
     .as = MC_AS_STORE, .soft_errors = true, .nitems = 3,
     .check_opaque = true, .fail_at = 2},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq store3_owner3[] = {
    {.x = MC_X_META,
     .bytes = "ms a 1 O0\r\nx\r\nms b 1 O1\r\ny\r\nms c 1 O2\r\nz\r\n",
     .as = MC_AS_STORE, .soft_errors = true, .nitems = 3,
     .check_opaque = true, .fail_at = 3},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static size_t dindex[] = {4, 2};

static const struct rq delete2[] = {
    {.x = MC_X_META, .bytes = "md a O10\r\nmd b O11\r\n", .as = MC_AS_DELETE,
     .nitems = 2, .index = dindex, .opaque = 10},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq one_store_owner[] = {
    {.x = MC_X_META, .bytes = "ms a 1\r\nx\r\n", .as = MC_AS_STORE,
     .owner_fails = true},
    {.bytes = NULL},
};

static const struct rq one_arith_owner[] = {
    {.x = MC_X_META, .bytes = "ma n D1 v O3\r\n", .as = MC_AS_ARITH,
     .opaque = 3, .owner_fails = true},
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static void
test_meta_multi(void)
{
    static const struct sc_def defs[] = {
        {"set_multi: a soft error among the answers", store3, NULL,
         "HD O0\r\nSERVER_ERROR object too large for cache\r\nNS O2\r\n"
         V1618,
         "R0 item 0 STORED\n"
         "R0 item 1 SERVER_ERROR object too large for cache\n"
         "R0 item 2 NOT_STORED\n"
         "R0 done ok\n" V1618_LOG,
         0},
        {"set_multi: every answer", store3, NULL,
         "EX O0\r\nNF O1\r\nHD O2\r\n" V1618,
         "R0 item 0 EXISTS\n"
         "R0 item 1 NOT_FOUND\n"
         "R0 item 2 STORED\n"
         "R0 done ok\n" V1618_LOG,
         0},
        {"set_multi: soft errors first and last", store3, NULL,
         "SERVER_ERROR out of memory storing object\r\nHD O1\r\n"
         "SERVER_ERROR out of memory storing object\r\n" V1618,
         "R0 item 0 SERVER_ERROR out of memory storing object\n"
         "R0 item 1 STORED\n"
         "R0 item 2 SERVER_ERROR out of memory storing object\n"
         "R0 done ok\n" V1618_LOG,
         0},
        {"set_multi: CLIENT_ERROR in the middle", store3, NULL,
         "HD O0\r\nCLIENT_ERROR bad data chunk\r\nNS O2\r\n" V1618,
         "R0 item 0 STORED\n"
         "broken EREPLY CLIENT_ERROR bad data chunk\n"
         "R0 failed EREPLY CLIENT_ERROR bad data chunk\n"
         "R1 failed EREPLY CLIENT_ERROR bad data chunk\n",
         MC_FEED_BROKEN},
        {"set_multi: ERROR first", store3, NULL, "ERROR\r\n",
         "broken EREPLY ERROR\n"
         "R0 failed EREPLY ERROR\n"
         "R1 failed EREPLY ERROR\n",
         MC_FEED_BROKEN},
        {"set_multi: a token skipped", store3, NULL,
         "HD O0\r\nNS O2\r\nHD O1\r\n",
         "R0 item 0 STORED\n" BROKEN3(BAD_TOKEN), MC_FEED_BROKEN},
        {"set_multi: no token", store3, NULL, "HD\r\nHD\r\nHD\r\n",
         BROKEN3(BAD_TOKEN), MC_FEED_BROKEN},
        {"set_multi: a fourth frame", store3_alone, NULL,
         "HD O0\r\nHD O1\r\nNS O2\r\nHD O3\r\n",
         "R0 item 0 STORED\n"
         "R0 item 1 STORED\n"
         "R0 item 2 NOT_STORED\n"
         "R0 done ok\n"
         "broken EBADREPLY unexpected bytes\n",
         MC_FEED_BROKEN},
        {"set_multi: a fourth frame for the next request", store3_then_meta,
         NULL, "HD O0\r\nHD O1\r\nNS O2\r\nHD O3\r\nHD O9\r\n",
         "R0 item 0 STORED\n"
         "R0 item 1 STORED\n"
         "R0 item 2 NOT_STORED\n"
         "R0 done ok\n"
         "broken EBADREPLY " BAD_TOKEN "\n"
         "R1 failed EBADREPLY " BAD_TOKEN "\n",
         MC_FEED_BROKEN},
        {"set_multi: the owner fails in the middle", store3_owner2, NULL,
         "HD O0\r\nNS O1\r\nEX O2\r\n" V1618,
         "R0 item 0 STORED\n"
         "R0 item 1 fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n" V1618_LOG,
         0},
        {"set_multi: the owner fails at a soft error", store3_owner2, NULL,
         "HD O0\r\nSERVER_ERROR object too large for cache\r\nEX O2\r\n"
         V1618,
         "R0 item 0 STORED\n"
         "R0 item 1 fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n" V1618_LOG,
         0},
        {"set_multi: the owner fails at the last", store3_owner3, NULL,
         "HD O0\r\nNS O1\r\nEX O2\r\n" V1618,
         "R0 item 0 STORED\n"
         "R0 item 1 NOT_STORED\n"
         "R0 item 2 fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n" V1618_LOG,
         0},
        {"set_multi: the owner fails at a last soft error", store3_owner3,
         NULL, "HD O0\r\nNS O1\r\nSERVER_ERROR out of memory\r\n" V1618,
         "R0 item 0 STORED\n"
         "R0 item 1 NOT_STORED\n"
         "R0 item 2 fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n" V1618_LOG,
         0},
        {"set_multi: the owner failed, then a bad token", store3_owner2,
         NULL, "HD O0\r\nNS O1\r\nEX O1\r\n",
         "R0 item 0 STORED\n"
         "R0 item 1 fails\n"
         "owner R0\n"
         "broken EBADREPLY " BAD_TOKEN "\n"
         "R0 failed EOWNER\n"
         "R1 failed EBADREPLY " BAD_TOKEN "\n",
         MC_FEED_BROKEN},
        {"delete_multi", delete2, NULL, "HD O10\r\nNF O11\r\n" V1618,
         "R0 item 4 DELETED\n"
         "R0 item 2 NOT_FOUND\n"
         "R0 done ok\n" V1618_LOG,
         0},
        {"delete_multi: SERVER_ERROR is not an answer", delete2, NULL,
         "HD O10\r\nSERVER_ERROR out of memory\r\n" V1618,
         "R0 item 4 DELETED\n"
         "broken EREPLY SERVER_ERROR out of memory\n"
         "R0 failed EREPLY SERVER_ERROR out of memory\n"
         "R1 failed EREPLY SERVER_ERROR out of memory\n",
         MC_FEED_BROKEN},
        {"delete_multi: EX is not an answer", delete2, NULL,
         "EX O10\r\nNF O11\r\n", BROKEN3(NOT_FIT), MC_FEED_BROKEN},
        /* the last frame of a reply its owner failed on is left unread,
         * then discarded */
        {"one store: the owner fails at its only frame", one_store_owner,
         NULL, "HD\r\n",
         "R0 item 0 fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n",
         0},
        {"one incr: the owner fails, the next request reads its own",
         one_arith_owner, NULL, "VA 2 O3\r\n15\r\n" V1618,
         "R0 item 0 fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n" V1618_LOG,
         0},
    };
    RUN_CUTS(defs);

    /* the frame an owner failed on, last of its reply: left unread by the
     * feed that reports it, discarded by the next */
    static const char *const frames[] = {
        "HD\r\n", "VA 2\r\n15\r\n", "VA 1 f3\r\nx\r\n",
        "SERVER_ERROR object too large for cache\r\n"};
    static const enum mc_meta_as ases[] = {MC_AS_STORE, MC_AS_ARITH,
                                           MC_AS_GET, MC_AS_STORE};
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        set_ctx("owner fails on the last frame %s",
                show(frames[i], strlen(frames[i])));
        struct scenario s;
        sc_begin(&s);
        struct treq *t = sc_req(&s, MC_X_META, "x\r\n");
        t->r.as = ases[i];
        t->fail_at = 0;
        bool soft = i == 3;     /* a soft error: the last of two items */
        if (soft) {
            t->fail_at = 1;
            t->r.nitems = 2;
            t->r.soft_errors = true;
        }
        all_written(s.c);
        size_t need;
        struct mc_fail f;
        if (soft) {
            exact_append(&s.c->rbuf, "NS\r\n", 4);
            CHECK_EQ(mc_conn_feed(s.c, s.max_value, &need, &f), 0);
        }
        size_t len = strlen(frames[i]);
        exact_append(&s.c->rbuf, frames[i], len);
        memset(&f, 0, sizeof f);
        CHECK_EQ(mc_conn_feed(s.c, s.max_value, &need, &f), MC_FEED_OWNER);
        CHECK(s.c->head == &t->r);
        CHECK_EQ(t->r.state, MC_REQ_FLIGHT);
        CHECK_EQ(t->done, 0);
        CHECK_EQ(t->r.fail.code, MC_EOWNER);
        CHECK_EQ(mc_buf_len(&s.c->rbuf), len);  /* unread */
        CHECK_EQ(mc_conn_feed(s.c, s.max_value, &need, &f), 0);
        CHECK(s.c->head == NULL);
        CHECK_EQ(t->r.state, MC_REQ_FAILED);
        CHECK_EQ(t->r.fail.code, MC_EOWNER);
        CHECK_EQ(t->done, 1);
        CHECK_EQ(t->items, soft ? 2 : 1);   /* told once */
        CHECK_EQ(mc_buf_len(&s.c->rbuf), 0);
        sc_end(&s, true);
    }
}

/* ---- noreply meta commands: q, then the fence's mn ---------------------- */

/* "ms k 1 ME q" and "md nope q" under one fence: memcached 1.6.18 sends
 * NS, NF, then MN. */
static void
setup_meta_noreply_first(struct scenario *s, const void *arg)
{
    (void)arg;
    sc_noreply(s, "ms k 1 ME q\r\nb\r\nmd nope q\r\n");
    CHECK_EQ(s->c->fences, 1);
    struct treq *t = sc_req(s, MC_X_META, "mg a v f O3\r\n");
    t->r.as = MC_AS_GET;
    t->r.check_opaque = true;
    t->r.opaque = 3;
}

/* A fence after each of three noreply commands, then a delete. */
static void
setup_meta_noreply_three(struct scenario *s, const void *arg)
{
    (void)arg;
    sc_noreply(s, "ms a 1 MR q\r\nx\r\n");
    sc_noreply(s, "mg a T30 q\r\n");
    sc_noreply(s, "ma nope D1 q\r\n");
    CHECK_EQ(s->c->fences, 3);
    struct treq *t = sc_req(s, MC_X_META, "md a O4\r\n");
    t->r.as = MC_AS_DELETE;
    t->r.check_opaque = true;
    t->r.opaque = 4;
}

/* A fence owed after a store, before a get. */
static void
setup_meta_noreply_between(struct scenario *s, const void *arg)
{
    (void)arg;
    struct treq *t = sc_req(s, MC_X_META, "ms a 1\r\nx\r\n");
    t->r.as = MC_AS_STORE;
    sc_noreply(s, "md a q\r\n");
    CHECK_EQ(s->c->fences, 0);
    CHECK_EQ(t->r.fences_after, 1);
    t = sc_req(s, MC_X_META, "mg a v f\r\n");
    t->r.as = MC_AS_GET;
}

static void
test_meta_fences(void)
{
    static const struct sc_def defs[] = {
        {"meta noreply: NS and NF before the MN", NULL,
         setup_meta_noreply_first,
         "NS\r\nNF\r\nMN\r\nVA 1 f0 O3\r\nx\r\n",
         "R0 item 0 VALUE f0 [x]\n"
         "R0 done ok\n",
         0},
        {"meta noreply: three fences", NULL, setup_meta_noreply_three,
         "NS\r\nMN\r\nHD\r\nMN\r\nNF\r\nMN\r\nHD O4\r\n",
         "R0 item 0 DELETED\n"
         "R0 done ok\n",
         0},
        {"meta noreply: EX, EN and flags skipped too", NULL,
         setup_meta_noreply_three,
         "EX\r\nMN\r\nEN\r\nMN\r\nNF O1 kfoo\r\nMN\r\nNF O4\r\n",
         "R0 item 0 NOT_FOUND\n"
         "R0 done ok\n",
         0},
        {"meta noreply: an error line skipped", NULL,
         setup_meta_noreply_first,
         "CLIENT_ERROR bad command line format\r\nNF\r\nMN\r\n"
         "EN O3\r\n",
         "R0 done ok\n",
         0},
        {"meta noreply: a fence between requests", NULL,
         setup_meta_noreply_between, "HD\r\nNF\r\nMN\r\nEN\r\n",
         "R0 item 0 STORED\n"
         "R0 done ok\n"
         "R1 done ok\n",
         0},
        {"meta noreply: a fence between, the first failed", NULL,
         setup_meta_noreply_between,
         "SERVER_ERROR out of memory\r\nMN\r\nVA 1 f2\r\nx\r\n",
         "R0 failed EREPLY SERVER_ERROR out of memory\n"
         "R1 item 0 VALUE f2 [x]\n"
         "R1 done ok\n",
         0},
        {"meta noreply: a VA where a fence is owed", NULL,
         setup_meta_noreply_first, "VA 1\r\nx\r\nMN\r\n",
         "broken EBADREPLY unexpected bytes\n"
         "R0 failed EBADREPLY unexpected bytes\n",
         MC_FEED_BROKEN},
        {"meta noreply: the next reply before the MN", NULL,
         setup_meta_noreply_first, "NS\r\nVA 1 f0 O3\r\nx\r\nMN\r\n",
         "broken EBADREPLY unexpected bytes\n"
         "R0 failed EBADREPLY unexpected bytes\n",
         MC_FEED_BROKEN},
        {"meta noreply: a text reply where a fence is owed", NULL,
         setup_meta_noreply_between, "HD\r\nSTORED\r\nMN\r\n",
         "R0 item 0 STORED\n"
         "R0 done ok\n"
         "broken EBADREPLY unexpected reply after noreply\n"
         "R1 failed EBADREPLY unexpected reply after noreply\n",
         MC_FEED_BROKEN},
    };
    RUN_CUTS(defs);

    /* the same, read by mc_conn_drain_owed with nothing in flight */
    static const struct {
        const char *stream;
        int fences;
        int rc;                 /* once it is all in */
    } drains[] = {
        {"NS\r\nNF\r\nMN\r\n", 1, 1},
        {"NS\r\nMN\r\nHD\r\nMN\r\nNF\r\nMN\r\n", 3, 1},
        {"EX\r\nEN\r\nCLIENT_ERROR bad command line format\r\nMN\r\n", 1, 1},
        {"VA 1\r\nx\r\nMN\r\n", 1, -1},
        {"NS\r\nVA 0\r\n\r\nMN\r\n", 1, -1},
        {"NS\r\nSTORED\r\nMN\r\n", 1, -1},
        {"NS\r\nMN\r\nNF\r\n", 2, 0},
    };
    for (size_t i = 0; i < sizeof drains / sizeof drains[0]; i++) {
        const char *st = drains[i].stream;
        size_t n = strlen(st);
        for (size_t cut = 0; cut < n; cut++) {
            set_ctx("drain %s, cut at %zu", show(st, n), cut);
            struct scenario s;
            sc_begin(&s);
            for (int k = 0; k < drains[i].fences; k++) {
                sc_noreply(&s, "md a q\r\n");
            }
            all_written(s.c);
            int rc = 0;
            if (cut > 0) {
                exact_append(&s.c->rbuf, st, cut);
                rc = mc_conn_drain_owed(s.c);
                CHECK(rc == 0 || rc == drains[i].rc);
            }
            if (rc == 0) {
                exact_append(&s.c->rbuf, st + cut, n - cut);
                rc = mc_conn_drain_owed(s.c);
            }
            CHECK_EQ(rc, drains[i].rc);
            if (rc == 1) {
                CHECK_EQ(s.c->fences, 0);
                CHECK_EQ(mc_buf_len(&s.c->rbuf), 0);
            }
            else if (rc == 0) {
                CHECK(s.c->fences > 0);
            }
            bool in_sync = rc == 1;
            if (!in_sync) {
                s.c->rbuf.start = s.c->rbuf.end;  /* dropped */
            }
            sc_end(&s, in_sync);
        }
    }
}

/* ---- every kind of reply, each to the oldest request -------------------- */

static void
test_kinds(void)
{
    static const struct sc_def defs[] = {
        {"every kind", kinds, NULL,
         "42\r\n"
         "VERSION 1.6.21\r\n"
         "VALUE p:a 1 2\r\nab\r\nVALUE p:c 3 0\r\n\r\nEND\r\n"
         "NOT_STORED\r\n"
         "OK\r\n"
         "STAT pid 12\r\nSTAT empty\r\nSTAT version 1.6.21\r\nEND\r\n"
         "VALUE k 0 1 77\r\nz\r\nEND\r\n"
         "NOT_FOUND\r\n",
         "R0 item 0 NUMBER 42\n"
         "R0 done ok\n"
         "R1 item 0 VERSION 1.6.21\n"
         "R1 done ok\n"
         "R2 item 0 VALUE p:a 1 ab\n"
         "R2 item 2 VALUE p:c 3 \n"
         "R2 done ok\n"
         "R3 item 0 NOT_STORED\n"
         "R3 done ok\n"
         "R4 item 0 OK\n"
         "R4 done ok\n"
         "R5 item 0 STAT pid=12\n"
         "R5 item 1 STAT empty=\n"
         "R5 item 2 STAT version=1.6.21\n"
         "R5 done ok\n"
         "R6 item 0 VALUE k 0 z cas\n"
         "R6 cas 77\n"
         "R6 done ok\n"
         "R7 item 0 NOT_FOUND\n"
         "R7 done ok\n",
         0},
        {"multi-frame replies", multi_frame, NULL,
         "NOT_FOUND\r\nDELETED\r\n"
         "RESET\r\n"
         "OK\r\n"
         "END\r\nVALUE b 9 1\r\nB\r\nEND\r\n",
         "R0 item 4 NOT_FOUND\n"
         "R0 item 2 DELETED\n"
         "R0 done ok\n"
         "R1 done ok\n"
         "R2 done ok\n"
         "R3 item 1 VALUE b 9 B\n"
         "R3 done ok\n",
         0},
    };
    RUN_ALL(defs);
}

/* ---- error lines -------------------------------------------------------- */

static void
test_errors(void)
{
    /* an error line that is the whole reply fails its request only */
    static const struct sc_def defs[] = {
        {"error lines in sync", errors_in_sync, NULL,
         "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
         "SERVER_ERROR out of memory storing object\r\n"
         "ERROR\r\n"
         "VERSION 1.2\r\n"
         "SERVER_ERROR object too large for cache\r\n"
         "VERSION 1.3\r\n",
         "R0 failed EREPLY CLIENT_ERROR cannot increment or decrement "
         "non-numeric value\n"
         "R1 failed EREPLY SERVER_ERROR out of memory storing object\n"
         "R2 failed EREPLY ERROR\n"
         "R3 item 0 VERSION 1.2\n"
         "R3 done ok\n"
         "R4 item 0 SERVER_ERROR object too large for cache\n"
         "R4 done ok\n"
         "R5 item 0 VERSION 1.3\n"
         "R5 done ok\n",
         0},
    };
    RUN_ALL(defs);
}

static void
test_out_of_sync(void)
{
    static const struct sc_def defs[] = {
        /* an error line inside a reply of several frames: out of sync */
        {"error line after a VALUE", get_then_version, NULL,
         "VALUE a 0 1\r\nx\r\nSERVER_ERROR oops\r\nVERSION 1\r\n",
         "R0 item 0 VALUE a 0 x\n"
         "broken EREPLY SERVER_ERROR oops\n"
         "R0 failed EREPLY SERVER_ERROR oops\n"
         "R1 failed EREPLY SERVER_ERROR oops\n",
         MC_FEED_BROKEN},
        {"error line for a retrieval", get_then_version, NULL,
         "CLIENT_ERROR line too long\r\nVERSION 1\r\n",
         "broken EREPLY CLIENT_ERROR line too long\n"
         "R0 failed EREPLY CLIENT_ERROR line too long\n"
         "R1 failed EREPLY CLIENT_ERROR line too long\n",
         MC_FEED_BROKEN},
        {"error line in stats", stats_then_version, NULL,
         "STAT pid 1\r\nERROR\r\nVERSION 1\r\n",
         "R0 item 0 STAT pid=1\n"
         "broken EREPLY ERROR\n"
         "R0 failed EREPLY ERROR\n"
         "R1 failed EREPLY ERROR\n",
         MC_FEED_BROKEN},
        {"error line for two status items", status2_then_version, NULL,
         "SERVER_ERROR x\r\nNOT_FOUND\r\nVERSION 1\r\n",
         "broken EREPLY SERVER_ERROR x\n"
         "R0 failed EREPLY SERVER_ERROR x\n"
         "R1 failed EREPLY SERVER_ERROR x\n",
         MC_FEED_BROKEN},
        /* bytes outside the grammar fail every request in flight */
        {"garbage", three_numbers, NULL, "1\r\nHELLO\r\n3\r\n",
         "R0 item 0 NUMBER 1\n"
         "R0 done ok\n"
         "broken EBADREPLY unexpected bytes\n"
         "R1 failed EBADREPLY unexpected bytes\n"
         "R2 failed EBADREPLY unexpected bytes\n",
         MC_FEED_BROKEN},
        {"a reply of the wrong kind", three_numbers, NULL,
         "STORED\r\n2\r\n3\r\n",
         "broken EBADREPLY reply does not fit the command\n"
         "R0 failed EBADREPLY reply does not fit the command\n"
         "R1 failed EBADREPLY reply does not fit the command\n"
         "R2 failed EBADREPLY reply does not fit the command\n",
         MC_FEED_BROKEN},
        {"bytes nobody asked for", three_numbers, NULL,
         "1\r\n2\r\n3\r\nEND\r\n",
         "R0 item 0 NUMBER 1\n"
         "R0 done ok\n"
         "R1 item 0 NUMBER 2\n"
         "R1 done ok\n"
         "R2 item 0 NUMBER 3\n"
         "R2 done ok\n"
         "broken EBADREPLY bytes nobody asked for\n",
         MC_FEED_BROKEN},
        {"VALUE for a key not asked", get_then_version, NULL,
         "VALUE b 0 1\r\nx\r\nVALUE a 0 1\r\ny\r\nEND\r\n",
         "R0 item 1 VALUE b 0 x\n"
         "broken EBADREPLY VALUE for a key that was not requested\n"
         "R0 failed EBADREPLY VALUE for a key that was not requested\n"
         "R1 failed EBADREPLY VALUE for a key that was not requested\n",
         MC_FEED_BROKEN},
        {"a bad value terminator", get_then_version, NULL,
         "VALUE a 0 1\r\nxy\r\nEND\r\n",
         "broken EBADREPLY unexpected bytes\n"
         "R0 failed EBADREPLY unexpected bytes\n"
         "R1 failed EBADREPLY unexpected bytes\n",
         MC_FEED_BROKEN},
    };
    RUN_ALL(defs);
}

/* ---- abandoned requests ------------------------------------------------- */

struct abandon_case {
    const char *name;
    size_t at;                 /* bytes fed when it is abandoned */
    int req;                   /* the request abandoned */
    int items;                 /* the items it took before */
};

static void
setup_abandon(struct scenario *s, const void *arg)
{
    const struct abandon_case *ac = arg;
    s->abandon_at = ac->at;
    s->abandon_id = ac->req;
}

static void
test_abandon(void)
{
    static const char stream[] =
        "VALUE a 0 1\r\nx\r\nVALUE b 0 3\r\nyyy\r\nEND\r\n"  /* 0..38 */
        "STAT pid 7\r\nSTAT up 9\r\nEND\r\n"                /* 39..66 */
        "5\r\n"                                             /* 67..69 */
        "VERSION 1.6\r\n";
    static const char *const lines[4][3] = {
        {"R0 item 0 VALUE a 0 x", "R0 item 1 VALUE b 0 yyy", NULL},
        {"R1 item 0 STAT pid=7", "R1 item 1 STAT up=9", NULL},
        {"R2 item 0 NUMBER 5", NULL, NULL},
        {"R3 item 0 VERSION 1.6", NULL, NULL},
    };
    static const int nitems[4] = {2, 2, 1, 1};
    static const struct abandon_case cases[] = {
        /* before anything arrived: the whole reply is discarded */
        {"abandoned before its reply", 0, 0, 0},
        /* in the middle of its second VALUE */
        {"abandoned mid-value", 22, 0, 1},
        /* a stats reply after its first line */
        {"abandoned mid-stats", 52, 1, 1},
        /* a number before its line is complete */
        {"abandoned mid-number", 68, 2, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct abandon_case *ac = &cases[i];
        struct log want;
        memset(&want, 0, sizeof want);
        want_log(&want, lines, nitems, 4, ac->req, ac->items, NULL);
        struct sc_def d = {ac->name, get_stats_incr_version, setup_abandon,
                           stream, want.text, 0};
        run(&d, ac);
        free(want.text);
    }
}

/* ---- owners that fail --------------------------------------------------- */

struct owner_case {
    int fail_req;
    int fail_at;
};

static void
setup_owner(struct scenario *s, const void *arg)
{
    const struct owner_case *oc = arg;
    s->reqs[oc->fail_req].fail_at = oc->fail_at;
}

static void
test_owner(void)
{
    static const char stream[] =
        "VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nVALUE c 0 1\r\nz\r\nEND\r\n"
        "DELETED\r\nNOT_FOUND\r\n"
        "7\r\n"
        "STAT a 1\r\nSTAT b 2\r\nEND\r\n"
        "VERSION 9\r\n"
        "OK\r\n"
        "8\r\n";
    static const char *const lines[7][3] = {
        {"R0 item 0 VALUE a 0 x", "R0 item 1 VALUE b 0 y",
         "R0 item 2 VALUE c 0 z"},
        {"R1 item 0 DELETED", "R1 item 1 NOT_FOUND", NULL},
        {"R2 item 0 NUMBER 7", NULL, NULL},
        {"R3 item 0 STAT a=1", "R3 item 1 STAT b=2", NULL},
        {"R4 item 0 VERSION 9", NULL, NULL},
        {"R5 item 0 OK", NULL, NULL},
        {"R6 item 0 NUMBER 8", NULL, NULL},
    };
    static const int nitems[7] = {3, 2, 1, 2, 1, 1, 1};
    static const size_t item_no[7][3] = {
        {0, 1, 2}, {0, 1, 0}, {0}, {0, 1, 0}, {0}, {0}, {0}};
    /* Every request of every kind failing at every one of its items: its
     * owner is told once, its request fails with MC_EOWNER after the rest
     * of its reply was read and discarded, and every later request reads
     * its own reply. */
    for (int r = 0; r < 7; r++) {
        for (int at = 0; at < nitems[r]; at++) {
            struct owner_case oc = {r, at};
            struct log want;
            memset(&want, 0, sizeof want);
            want_log(&want, lines, nitems, 7, r, at, item_no);
            char name[64];
            snprintf(name, sizeof name, "owner of R%d fails at item %d", r,
                     at);
            struct sc_def d = {name, seven_kinds, setup_owner, stream,
                               want.text, 0};
            run(&d, &oc);
            free(want.text);
        }
    }
}

static void
test_owner_then(void)
{
    static const struct sc_def defs[] = {
        /* The item a failed owner was given ends its reply, and the stream
         * stops right there: the request is finished on the next call all
         * the same. */
        {"owner fails on the last frame", number_owner_fails, NULL,
         "1\r\n",
         "R0 item 0 fails\n"
         "owner R0\n"
         "R0 failed EOWNER\n",
         0},
        /* A request that failed its owner keeps that failure when the
         * stream is then found out of sync. */
        {"owner failed, then an error line in its reply", stats_owner_fails,
         NULL, "STAT a 1\r\nCLIENT_ERROR x\r\nVERSION 1\r\n",
         "R0 item 0 fails\n"
         "owner R0\n"
         "broken EREPLY CLIENT_ERROR x\n"
         "R0 failed EOWNER\n"
         "R1 failed EREPLY CLIENT_ERROR x\n",
         MC_FEED_BROKEN},
        {"owner failed, then an error line after a VALUE", get_owner_fails,
         NULL, "VALUE a 0 1\r\nx\r\nSERVER_ERROR y\r\n",
         "R0 item 0 fails\n"
         "owner R0\n"
         "broken EREPLY SERVER_ERROR y\n"
         "R0 failed EOWNER\n"
         "R1 failed EREPLY SERVER_ERROR y\n",
         MC_FEED_BROKEN},
        {"owner failed, then garbage", get_owner_fails, NULL,
         "VALUE a 0 1\r\nx\r\nHELLO\r\n",
         "R0 item 0 fails\n"
         "owner R0\n"
         "broken EBADREPLY unexpected bytes\n"
         "R0 failed EOWNER\n"
         "R1 failed EBADREPLY unexpected bytes\n",
         MC_FEED_BROKEN},
    };
    RUN_ALL(defs);
}

/* ---- noreply fences and the flush after a reconnect --------------------- */

static void
setup_fence_first(struct scenario *s, const void *arg)
{
    (void)arg;
    sc_noreply(s, "set a 0 0 1 noreply\r\nx\r\n");
    sc_noreply(s, "delete b noreply\r\n");
    CHECK_EQ(s->c->fences, 2);
    CHECK(s->c->head == NULL);
    sc_req(s, MC_X_VERSION, "version\r\n");
    char out[128];
    size_t n = queued(s->c, out, sizeof out);
    CHECK_BYTES(out, n, "set a 0 0 1 noreply\r\nx\r\nmn\r\n"
                        "delete b noreply\r\nmn\r\nversion\r\n");
}

static void
setup_fence_between(struct scenario *s, const void *arg)
{
    (void)arg;
    sc_req(s, MC_X_NUMBER, "incr n 1\r\n");
    sc_noreply(s, "set a 0 0 1 noreply\r\nx\r\n");
    CHECK_EQ(s->c->fences, 0);
    CHECK_EQ(s->reqs[0].r.fences_after, 1);
    sc_req(s, MC_X_OK, "flush_all\r\n");
}

static void
test_fences(void)
{
    static const struct sc_def defs[] = {
        {"fences ahead of a request", NULL, setup_fence_first,
         "MN\r\nMN\r\nVERSION 1\r\n",
         "R0 item 0 VERSION 1\n"
         "R0 done ok\n",
         0},
        {"a noreply command's error before its MN", NULL, setup_fence_first,
         "CLIENT_ERROR bad data chunk\r\nMN\r\nSERVER_ERROR x\r\nMN\r\n"
         "VERSION 1\r\n",
         "R0 item 0 VERSION 1\n"
         "R0 done ok\n",
         0},
        {"a fence after a request", NULL, setup_fence_between,
         "5\r\nMN\r\nOK\r\n",
         "R0 item 0 NUMBER 5\n"
         "R0 done ok\n"
         "R1 item 0 OK\n"
         "R1 done ok\n",
         0},
        {"a fence after a request failed in sync", NULL, setup_fence_between,
         "CLIENT_ERROR bad\r\nMN\r\nOK\r\n",
         "R0 failed EREPLY CLIENT_ERROR bad\n"
         "R1 item 0 OK\n"
         "R1 done ok\n",
         0},
        {"a reply where an MN is owed", NULL, setup_fence_between,
         "5\r\nOK\r\nMN\r\n",
         "R0 item 0 NUMBER 5\n"
         "R0 done ok\n"
         "broken EBADREPLY unexpected reply after noreply\n"
         "R1 failed EBADREPLY unexpected reply after noreply\n",
         MC_FEED_BROKEN},
    };
    RUN_ALL(defs);

    set_ctx("fences owed after the last request");
    struct scenario s;
    sc_begin(&s);
    sc_req(&s, MC_X_NUMBER, "incr n 1\r\n");
    sc_noreply(&s, "delete a noreply\r\n");
    sc_noreply(&s, "delete b noreply\r\n");
    CHECK_EQ(s.reqs[0].r.fences_after, 2);
    all_written(s.c);
    size_t need;
    CHECK_EQ(sc_feed(&s, "9\r\nMN\r\n", 7, 0, &need), 0);
    CHECK_EQ(s.reqs[0].r.state, MC_REQ_DONE);
    CHECK_EQ(s.c->fences, 1);    /* one MN read, one still owed */
    CHECK(s.c->head == NULL);
    CHECK_EQ(mc_conn_drain_owed(s.c), 0);
    exact_append(&s.c->rbuf, "M", 1);
    CHECK_EQ(mc_conn_drain_owed(s.c), 0);
    exact_append(&s.c->rbuf, "N\r\n", 3);
    CHECK_EQ(mc_conn_drain_owed(s.c), 1);
    CHECK_EQ(s.c->fences, 0);
    CHECK_EQ(mc_buf_len(&s.c->rbuf), 0);
    /* a fence owed and bytes of another kind: out of sync */
    sc_noreply(&s, "delete c noreply\r\n");
    all_written(s.c);
    exact_append(&s.c->rbuf, "STORED\r\n", 8);
    CHECK_EQ(mc_conn_drain_owed(s.c), -1);
    s.c->rbuf.start = s.c->rbuf.end;  /* dropped with the connection */
    sc_end(&s, false);
}

static void
test_flush_owed(void)
{
    set_ctx("the flush after a reconnect");
    eng.cfg.flush_on_reconnect = true;
    for (int bad = 0; bad < 2; bad++) {
        mc_engine_mark_dead(&eng, 0, SEC);
        struct scenario s;
        sc_begin(&s);
        CHECK_EQ(s.c->flush_oks, 1);
        sc_req(&s, MC_X_VERSION, "version\r\n");
        char out[64];
        size_t n = queued(s.c, out, sizeof out);
        CHECK_BYTES(out, n, "flush_all\r\nversion\r\n");
        all_written(s.c);
        size_t need;
        if (!bad) {
            CHECK_EQ(sc_feed(&s, "OK\r\nVERSION 2\r\n", 15, 1, &need), 0);
            CHECK_BYTES(s.log.text, s.log.len,
                        "R0 item 0 VERSION 2\nR0 done ok\n");
            CHECK_EQ(s.c->flush_oks, 0);
        }
        else {
            CHECK_EQ(sc_feed(&s, "VERSION 2\r\n", 11, 0, &need),
                     MC_FEED_BROKEN);
            CHECK_BYTES(s.log.text, s.log.len,
                        "broken EBADREPLY unexpected reply to flush_all\n"
                        "R0 failed EBADREPLY unexpected reply to flush_all\n");
        }
        sc_end(&s, !bad);
    }
    eng.cfg.flush_on_reconnect = false;
    mc_engine_forget_dead(&eng);
}

/* ---- limits ------------------------------------------------------------ */

static int
count_item(void *owner, struct mc_req *r, size_t item,
           const struct mc_reply *rep)
{
    (void)r;
    (void)item;
    (void)rep;
    (*(size_t *)owner)++;
    return 0;
}

static void
test_limits(void)
{
    /* Stats: each line is charged its text and 64 bytes; 1024 lines with
     * a 1-byte name and 8127 bytes of text are 8 MiB exactly. */
    set_ctx("the stats limit");
    static char line[8200];
    int ll = snprintf(line, sizeof line, "STAT k ");
    memset(line + ll, 'v', 8127);
    memcpy(line + ll + 8127, "\r\n", 2);
    size_t line_len = (size_t)ll + 8127 + 2;
    CHECK_EQ(64 + 1 + 8127, 8192);
    CHECK_EQ(1024u * 8192u, MC_MAX_STATS_REPLY);
    for (int over = 0; over < 2; over++) {
        int peer;
        struct mc_conn *c = new_conn(&peer);
        struct mc_req r;
        size_t items = 0;
        mc_req_init(&r, MC_X_STATS);
        r.on_item = count_item;
        r.owner = &items;
        mc_conn_push(c, &r, false);
        int rc = 0;
        struct mc_fail f;
        size_t need;
        for (int i = 0; i < 1024 && rc == 0; i++) {
            exact_append(&c->rbuf, line, line_len);
            rc = mc_conn_feed(c, 1 << 20, &need, &f);
        }
        CHECK_EQ(rc, 0);
        CHECK_EQ(items, 1024);
        CHECK_EQ(r.taken, MC_MAX_STATS_REPLY);
        CHECK_EQ(r.state, MC_REQ_FLIGHT);
        exact_append(&c->rbuf, over ? "STAT x\r\n" : "END\r\n", over ? 8 : 5);
        rc = mc_conn_feed(c, 1 << 20, &need, &f);
        if (over) {
            CHECK_EQ(rc, MC_FEED_BROKEN);
            CHECK_EQ(f.code, MC_EBADREPLY);
            CHECK(strcmp(f.text, "stats reply over the 8 MiB limit") == 0);
            CHECK_EQ(items, 1024);
            mc_conn_fail_all(c, &f);
            CHECK_EQ(r.state, MC_REQ_FAILED);
        }
        else {
            CHECK_EQ(rc, 0);
            CHECK_EQ(r.state, MC_REQ_DONE);
        }
        mc_conn_close(c);
        close(peer);
    }

    /* A VALUE larger than max_value fails as soon as its line is in:
     * nothing is allocated for it. */
    for (int mode = 0; mode < 2; mode++) {
        set_ctx("a VALUE over max_value, %s", mode ? "byte by byte" : "whole");
        int peer;
        struct mc_conn *c = new_conn(&peer);
        struct mc_req r;
        struct mc_wkey wk = {"", 0, "k", 1};
        mc_req_init(&r, MC_X_VALUES);
        r.keys = (const char *)&wk;
        mc_conn_push(c, &r, false);
        static const char big[] = "VALUE k 0 101\r\n";
        int rc = 0;
        struct mc_fail f;
        size_t need = 7;
        if (mode) {
            for (size_t i = 0; i < sizeof big - 1 && rc == 0; i++) {
                exact_append(&c->rbuf, big + i, 1);
                rc = mc_conn_feed(c, 100, &need, &f);
                if (rc == 0) {
                    CHECK_EQ(need, 0);  /* no line yet: no length */
                }
            }
        }
        else {
            exact_append(&c->rbuf, big, sizeof big - 1);
            rc = mc_conn_feed(c, 100, &need, &f);
        }
        CHECK_EQ(rc, MC_FEED_BROKEN);
        CHECK_EQ(f.code, MC_EVALUE);
        CHECK_EQ(c->rbuf.cap, sizeof big - 1);  /* nothing reserved */
        mc_conn_fail_all(c, &f);
        CHECK_EQ(r.state, MC_REQ_FAILED);
        CHECK_EQ(r.fail.code, MC_EVALUE);
        mc_conn_close(c);
        close(peer);
    }

    /* At max_value exactly it is accepted, and the frame's length is
     * known once the line is in. */
    set_ctx("a VALUE of max_value");
    int peer;
    struct mc_conn *c = new_conn(&peer);
    struct mc_req r;
    struct mc_wkey wk = {"", 0, "k", 1};
    size_t items = 0;
    mc_req_init(&r, MC_X_VALUES);
    r.keys = (const char *)&wk;
    r.on_item = count_item;
    r.owner = &items;
    mc_conn_push(c, &r, false);
    struct mc_fail f;
    size_t need;
    exact_append(&c->rbuf, "VALUE k 0 100\r", 14);
    CHECK_EQ(mc_conn_feed(c, 100, &need, &f), 0);
    CHECK_EQ(need, 0);
    exact_append(&c->rbuf, "\n", 1);
    CHECK_EQ(mc_conn_feed(c, 100, &need, &f), 0);
    CHECK_EQ(need, 15 + 100 + 2);
    char val[100];
    memset(val, 'w', sizeof val);
    exact_append(&c->rbuf, val, 99);
    CHECK_EQ(mc_conn_feed(c, 100, &need, &f), 0);
    CHECK_EQ(need, 15 + 100 + 2);
    exact_append(&c->rbuf, val, 1);
    exact_append(&c->rbuf, "\r\nEN", 4);
    CHECK_EQ(mc_conn_feed(c, 100, &need, &f), 0);
    CHECK_EQ(items, 1);
    CHECK_EQ(r.state, MC_REQ_FLIGHT);
    CHECK_EQ(need, 0);
    exact_append(&c->rbuf, "D\r\n", 3);
    CHECK_EQ(mc_conn_feed(c, 100, &need, &f), 0);
    CHECK_EQ(r.state, MC_REQ_DONE);
    CHECK_EQ(mc_buf_len(&c->rbuf), 0);
    mc_conn_close(c);
    close(peer);
}

/* ---- queueing and writing ---------------------------------------------- */

static void
test_queue(void)
{
    /* A new connection has nothing queued (and no write queue yet: the
     * drivers ask for mc_conn_out only once something was queued). */
    set_ctx("nothing queued");
    int peer;
    struct mc_conn *c = new_conn(&peer);
    CHECK(mc_conn_written(c));
    CHECK_EQ(c->wcnt, 0);
    CHECK_EQ(c->wlen, 0);
    struct iovec first = {(void *)"version\r\n", 9};
    CHECK_EQ(mc_conn_queue_bytes(c, &first, 1), 0);
    struct mc_out o = mc_conn_out(c);
    CHECK_EQ(o.iovcnt, 1);
    CHECK_EQ(mc_conn_send(c->fd, &o), 9);
    mc_conn_wrote(c, &o);
    char nine[9];
    CHECK_EQ(recv(peer, nine, sizeof nine, MSG_DONTWAIT), 9);
    /* all written: nothing queued */
    o = mc_conn_out(c);
    CHECK_EQ(o.iovcnt, 0);
    CHECK_EQ(o.len, 0);
    CHECK(mc_conn_written(c));
    mc_conn_wrote(c, &o);
    CHECK_EQ(c->whead, 0);
    CHECK_EQ(c->wcnt, 0);
    CHECK_EQ(c->wlen, 0);
    CHECK(mc_conn_written(c));
    CHECK_EQ(mc_conn_send(c->fd, &o), 0);  /* sends nothing */
    CHECK_EQ(peer_bytes_waiting(peer), 0);

    set_ctx("requests queued and in flight");
    struct mc_req r[3];
    struct iovec v0[2] = {{(void *)"set k 0 0 2\r\n", 13},
                          {(void *)"hi\r\n", 4}};
    struct iovec v1 = {(void *)"version\r\n", 9};
    mc_req_init(&r[0], MC_X_STATUS);
    mc_req_init(&r[1], MC_X_VERSION);
    mc_req_init(&r[2], MC_X_OK);
    CHECK_EQ(mc_conn_queue(c, &r[0], v0, 2, false), 0);
    CHECK(c->head == &r[0] && c->tail == &r[0]);
    CHECK_EQ(mc_conn_queue(c, &r[1], &v1, 1, true), 0);
    CHECK_EQ(r[0].fences_after, 0);
    CHECK_EQ(r[1].fences_after, 1);  /* "mn" follows r[1] */
    CHECK_EQ(mc_conn_queue(c, &r[2], &v1, 1, false), 0);
    CHECK(c->head == &r[0] && r[0].next == &r[1] && r[1].next == &r[2]);
    CHECK(c->tail == &r[2] && r[2].next == NULL);
    CHECK_EQ(r[2].state, MC_REQ_FLIGHT);
    o = mc_conn_out(c);
    CHECK_EQ(o.iovcnt, 5);
    CHECK_EQ(o.len, 13 + 4 + 9 + 4 + 9);
    CHECK(!mc_conn_written(c));
    char out[64];
    size_t n = queued(c, out, sizeof out);
    CHECK_BYTES(out, n, "set k 0 0 2\r\nhi\r\nversion\r\nmn\r\nversion\r\n");
    /* nothing was sent by queueing */
    CHECK_EQ(peer_bytes_waiting(peer), 0);
    mc_conn_close(c);
    close(peer);
}

/* Writes what c has queued through mc_conn_send on a socket with a small
 * send buffer, reading from the peer whenever it is full, queueing more
 * requests while the first is half written; the peer must receive exactly
 * the bytes queued, in order. */
static void
test_partial_writes(void)
{
    set_ctx("partial writes");
    int peer;
    struct mc_conn *c = new_conn(&peer);
    int small = 4096;
    (void)setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    (void)setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);

    enum { VLEN = 150000, PARTS = 10 };
    static char value[VLEN];
    for (size_t i = 0; i < VLEN; i++) {
        value[i] = (char)('a' + i % 23);
    }
    static char want[VLEN + 4096];
    size_t wn = 0;
    struct iovec iov[PARTS + 2];
    static const char hdr[] = "set big 0 0 150000\r\n";
    iov[0].iov_base = (void *)hdr;
    iov[0].iov_len = sizeof hdr - 1;
    for (int i = 0; i < PARTS; i++) {
        iov[1 + i].iov_base = value + i * (VLEN / PARTS);
        iov[1 + i].iov_len = VLEN / PARTS;
    }
    iov[PARTS + 1].iov_base = (void *)"\r\n";
    iov[PARTS + 1].iov_len = 2;
    for (int i = 0; i < PARTS + 2; i++) {
        memcpy(want + wn, iov[i].iov_base, iov[i].iov_len);
        wn += iov[i].iov_len;
    }
    struct mc_req r0, r1, r2;
    mc_req_init(&r0, MC_X_STATUS);
    mc_req_init(&r1, MC_X_NUMBER);
    mc_req_init(&r2, MC_X_VERSION);
    CHECK_EQ(mc_conn_queue(c, &r0, iov, PARTS + 2, false), 0);
    CHECK_EQ(c->wcap, 16);

    static char got[VLEN + 4096];
    size_t gn = 0;
    int sends = 0, partial = 0, mid_iov = 0;
    bool more_queued = false;
    struct iovec more[6];
    for (int i = 0; i < 6; i++) {
        more[i].iov_base = (void *)"incr n 1\r\n";
        more[i].iov_len = 10;
    }
    for (int rounds = 0; rounds < 200000 && !mc_conn_written(c); rounds++) {
        struct mc_out o = mc_conn_out(c);
        size_t before = o.len;
        ssize_t k = mc_conn_send(c->fd, &o);
        mc_conn_wrote(c, &o);
        if (k > 0) {
            sends++;
            CHECK_EQ((size_t)k, before - c->wlen);
            if (!mc_conn_written(c)) {
                partial++;
                /* the first iovec left was cut inside */
                const struct iovec *h = &c->wiov[c->whead];
                for (int i = 0; i < PARTS + 2; i++) {
                    mid_iov += (char *)h->iov_base > (char *)iov[i].iov_base
                               && (char *)h->iov_base
                                      < (char *)iov[i].iov_base
                                            + iov[i].iov_len;
                }
            }
        }
        else {
            CHECK_EQ(k, -EAGAIN);
        }
        if (!more_queued && c->whead >= 4) {
            /* 12 - whead left plus 6 more: room is made by moving the
             * unwritten iovecs to the front, not by growing */
            CHECK_EQ(mc_conn_queue(c, &r1, more, 6, true), 0);
            CHECK_EQ(c->whead, 0);
            CHECK_EQ(c->wcap, 16);
            CHECK_EQ(mc_conn_queue(c, &r2, &more[0], 1, false), 0);
            for (int i = 0; i < 6; i++) {
                memcpy(want + wn, "incr n 1\r\n", 10);
                wn += 10;
            }
            memcpy(want + wn, "mn\r\nincr n 1\r\n", 14);
            wn += 14;
            more_queued = true;
        }
        ssize_t m = recv(peer, got + gn, sizeof got - gn, MSG_DONTWAIT);
        if (m > 0) {
            gn += (size_t)m;
        }
    }
    CHECK(mc_conn_written(c));
    CHECK(more_queued);
    CHECK_EQ(c->whead, 0);
    CHECK_EQ(c->wcnt, 0);
    CHECK_EQ(c->wlen, 0);
    CHECK(sends > 3);
    CHECK(partial > 2);
    CHECK(mid_iov > 0);
    for (int rounds = 0; rounds < 10000 && gn < wn; rounds++) {
        struct pollfd p = {peer, POLLIN, 0};
        (void)poll(&p, 1, 100);
        ssize_t m = recv(peer, got + gn, sizeof got - gn, MSG_DONTWAIT);
        if (m > 0) {
            gn += (size_t)m;
        }
    }
    CHECK_EQ(gn, wn);
    CHECK(gn == wn && memcmp(got, want, wn) == 0);
    CHECK(c->head == &r0 && r0.next == &r1 && r1.next == &r2);
    CHECK_EQ(r1.fences_after, 1);
    mc_conn_close(c);
    close(peer);
}

/* ---- one-key gets sharing a line (mc_conn_join): the bytes -------------- */

/* A one-key get as the bindings queue it: one iovec "<cmd> <key>\r\n" in a
 * buffer of its own (a joined line points into it), join the length of
 * cmd. */
struct jget {
    struct mc_req r;
    struct mc_wkey wk;
    char line[300];
};

static struct jget jgets[80];

/* Queues g on c: "<cmd> <key>\r\n", key key_len bytes.  Returns
 * mc_conn_queue's result. */
static int
jq(struct mc_conn *c, struct jget *g, const char *cmd, const char *key,
   size_t key_len)
{
    size_t cl = strlen(cmd);
    size_t len = cl + 1 + key_len + 2;
    if (len > sizeof g->line) {
        fprintf(stderr, "jq: key too long\n");
        exit(2);
    }
    memcpy(g->line, cmd, cl);
    g->line[cl] = ' ';
    memcpy(g->line + cl + 1, key, key_len);
    memcpy(g->line + cl + 1 + key_len, "\r\n", 2);
    mc_req_init(&g->r, MC_X_VALUES);
    g->wk.pre = "";
    g->wk.pre_len = 0;
    g->wk.key = g->line + cl + 1;
    g->wk.key_len = key_len;
    g->r.keys = (const char *)&g->wk;
    g->r.with_cas = cl == 4;
    g->r.join = (uint8_t)cl;
    struct iovec iov = {g->line, len};
    return mc_conn_queue(c, &g->r, &iov, 1, false);
}

#define JQ(c, g, cmd, key) CHECK_EQ(jq((c), (g), (cmd), (key), strlen(key)), 0)

/* The bytes c has still to write, concatenated into out (as queued(),
 * the zero-length marks of a TLS connection too). */
static size_t
wire_bytes(struct mc_conn *c, char *out, size_t cap)
{
    struct mc_out o = mc_conn_out(c);
    size_t n = 0;
    for (int i = 0; i < o.iovcnt; i++) {
        size_t k = o.iov[i].iov_len;
        if (n + k > cap) {
            fprintf(stderr, "wire_bytes: too many bytes\n");
            exit(2);
        }
        if (k > 0) {
            memcpy(out + n, o.iov[i].iov_base, k);
        }
        n += k;
    }
    CHECK_EQ(n, o.len);
    return n;
}

/* The bytes c has still to write are want. */
#define CHECK_WIRE(c, want)                                                 \
    do {                                                                    \
        static char w_[8192];                                               \
        size_t n_ = wire_bytes((c), w_, sizeof w_);                         \
        CHECK_BYTES(w_, n_, (want));                                        \
    } while (0)

/* Records a write of the first n bytes c has queued, as mc_conn_send
 * leaves its mc_out after a write that took n. */
static void
wrote_bytes(struct mc_conn *c, size_t n)
{
    struct mc_out o = mc_conn_out(c);
    if (n > o.len) {
        fprintf(stderr, "wrote_bytes: more than queued\n");
        exit(2);
    }
    o.len -= n;
    while (o.iovcnt > 0 && n >= o.iov->iov_len) {
        n -= o.iov->iov_len;
        o.iov++;
        o.iovcnt--;
    }
    if (n > 0) {
        o.iov->iov_base = (char *)o.iov->iov_base + n;
        o.iov->iov_len -= n;
    }
    mc_conn_wrote(c, &o);
}

static const struct iovec version_iov = {(void *)"version\r\n", 9};

/* Appends printf's output to s[*n, cap). */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static void
sadd(char *s, size_t *n, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(s + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *n) {
        fprintf(stderr, "sadd: too long\n");
        exit(2);
    }
    *n += (size_t)k;
}

static void
test_join_bytes(void)
{
    int peer;
    struct mc_conn *c;

    /* 2, 3 and 64 gets: one line, each request in flight in order; only
     * the last owes the END */
    static const int counts[] = {2, 3, 64};
    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        int n = counts[ci];
        set_ctx("%d gets joined", n);
        c = new_conn(&peer);
        char want[1024];
        size_t wn = 0;
        sadd(want, &wn, sizeof want, "get");
        for (int i = 0; i < n; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", i + 1);
            JQ(c, &jgets[i], "get", key);
            sadd(want, &wn, sizeof want, " %s", key);
        }
        sadd(want, &wn, sizeof want, "\r\n");
        CHECK_WIRE(c, want);
        CHECK_EQ(mc_conn_out(c).iovcnt, n);
        CHECK_EQ(mc_conn_out(c).len, wn);
        CHECK(c->head == &jgets[0].r && c->tail == &jgets[n - 1].r);
        for (int i = 0; i < n; i++) {
            CHECK_EQ(jgets[i].r.ends, i == n - 1);
            CHECK_EQ(jgets[i].r.state, MC_REQ_FLIGHT);
            CHECK(jgets[i].r.next == (i + 1 < n ? &jgets[i + 1].r : NULL));
        }
        if (n == 64) {
            /* the 65th starts a line of its own, which the 66th joins */
            set_ctx("the 65th and 66th gets");
            JQ(c, &jgets[64], "get", "k65");
            wn -= 2;
            sadd(want, &wn, sizeof want, "\r\nget k65\r\n");
            CHECK_WIRE(c, want);
            CHECK_EQ(jgets[63].r.ends, 1);
            CHECK_EQ(jgets[64].r.ends, 1);
            JQ(c, &jgets[65], "get", "k66");
            wn -= 2;
            sadd(want, &wn, sizeof want, " k66\r\n");
            CHECK_WIRE(c, want);
            CHECK_EQ(jgets[63].r.ends, 1);
            CHECK_EQ(jgets[64].r.ends, 0);
            CHECK_EQ(jgets[65].r.ends, 1);
            CHECK(jgets[63].r.next == &jgets[64].r);
            CHECK(c->tail == &jgets[65].r);
        }
        mc_conn_close(c);
        close(peer);
    }

    /* 250-byte keys: 7 make a line of 1,762 bytes, the 8th would take it
     * to 2,013 (over MC_JOIN_LINE) and starts the next line */
    set_ctx("250-byte keys");
    c = new_conn(&peer);
    {
        static char want[4096];
        size_t wn = 0;
        char key[250];
        for (int i = 0; i < 8; i++) {
            memset(key, 'a' + i, sizeof key);
            CHECK_EQ(jq(c, &jgets[i], "get", key, sizeof key), 0);
            sadd(want, &wn, sizeof want, "%s%.250s%s",
                 i == 0 ? "get " : i == 7 ? "\r\nget " : " ", key,
                 i == 7 ? "\r\n" : "");
        }
        CHECK_EQ(wn, 1762 + 256);
        CHECK_WIRE(c, want);
        for (int i = 0; i < 8; i++) {
            CHECK_EQ(jgets[i].r.ends, i >= 6);
        }
    }
    mc_conn_close(c);
    close(peer);

    /* a line of exactly MC_JOIN_LINE bytes is joined, one of a byte more
     * is not: 7 keys of 250 bytes, then one of 237 (238) */
    for (size_t extra = 237; extra <= 238; extra++) {
        set_ctx("a line of %zu bytes", 1762 - 2 + 1 + extra + 2);
        c = new_conn(&peer);
        static char want[4096];
        size_t wn = 0;
        char key[250];
        for (int i = 0; i < 8; i++) {
            size_t kl = i < 7 ? 250 : extra;
            memset(key, 'a' + i, kl);
            CHECK_EQ(jq(c, &jgets[i], "get", key, kl), 0);
            sadd(want, &wn, sizeof want, "%s%.*s",
                 i == 0 ? "get " : i == 7 && extra == 238 ? "\r\nget " : " ",
                 (int)kl, key);
        }
        sadd(want, &wn, sizeof want, "\r\n");
        CHECK_WIRE(c, want);
        CHECK_EQ(jgets[6].r.ends, extra == 238);
        CHECK_EQ(jgets[7].r.ends, 1);
        if (extra == 237) {
            CHECK_EQ(wn, MC_JOIN_LINE);
        }
        mc_conn_close(c);
        close(peer);
    }

    /* get and gets never share a line; two gets do */
    static const struct {
        const char *cmd0, *cmd1, *wire;
        int ends0;
    } cmds[] = {
        {"get", "gets", "get a\r\ngets b\r\n", 1},
        {"gets", "get", "gets a\r\nget b\r\n", 1},
        {"gets", "gets", "gets a b\r\n", 0},
        {"get", "get", "get a b\r\n", 0},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        set_ctx("%s, then %s", cmds[i].cmd0, cmds[i].cmd1);
        c = new_conn(&peer);
        JQ(c, &jgets[0], cmds[i].cmd0, "a");
        JQ(c, &jgets[1], cmds[i].cmd1, "b");
        CHECK_WIRE(c, cmds[i].wire);
        CHECK_EQ(jgets[0].r.ends, cmds[i].ends0);
        CHECK_EQ(jgets[1].r.ends, 1);
        CHECK(c->head == &jgets[0].r && jgets[0].r.next == &jgets[1].r);
        mc_conn_close(c);
        close(peer);
    }

    /* anything queued between two gets keeps them on lines of their own;
     * the get after it starts a line the next one joins */
    static const struct iovec set_nr = {
        (void *)"set n 0 0 1 noreply\r\nx\r\n", 24};
    static const struct iovec delete_nr = {(void *)"delete x noreply\r\n", 18};
    static const struct iovec flush = {(void *)"flush_all\r\n", 11};
    static const struct iovec two_keys = {(void *)"get p q\r\n", 9};
    static const struct iovec get_b = {(void *)"get b\r\n", 7};
    static const struct iovec get_b_parts[2] = {{(void *)"get ", 4},
                                                {(void *)"b\r\n", 3}};
    static const char *const between[] = {
        "a noreply command",
        "a noreply command and its fence",
        "mc_conn_queue_bytes",
        "a request pushed (its bytes written by its caller)",
        "a version request",
        "a get that does not join (join 0)",
        "a get with a fence",
        "a get of two iovecs",
    };
    for (size_t i = 0; i < sizeof between / sizeof between[0]; i++) {
        set_ctx("a get after %s", between[i]);
        c = new_conn(&peer);
        JQ(c, &jgets[0], "get", "a");
        struct mc_req other;
        mc_req_init(&other, MC_X_VERSION);
        const char *wire = NULL;
        switch (i) {
        case 0:
            CHECK_EQ(mc_conn_queue(c, NULL, &set_nr, 1, false), 0);
            wire = "get a\r\nset n 0 0 1 noreply\r\nx\r\nget c d\r\n";
            break;
        case 1:
            CHECK_EQ(mc_conn_queue(c, NULL, &delete_nr, 1, true), 0);
            CHECK_EQ(jgets[0].r.fences_after, 1);
            wire = "get a\r\ndelete x noreply\r\nmn\r\nget c d\r\n";
            break;
        case 2:
            CHECK_EQ(mc_conn_queue_bytes(c, &flush, 1), 0);
            wire = "get a\r\nflush_all\r\nget c d\r\n";
            break;
        case 3:
            mc_conn_push(c, &other, false);
            wire = "get a\r\nget c d\r\n";
            break;
        case 4:
            CHECK_EQ(mc_conn_queue(c, &other, &version_iov, 1, false), 0);
            wire = "get a\r\nversion\r\nget c d\r\n";
            break;
        case 5:
            /* a multi-key get, as the bindings queue it: join 0 */
            other.expect = MC_X_VALUES;
            CHECK_EQ(mc_conn_queue(c, &other, &two_keys, 1, false), 0);
            wire = "get a\r\nget p q\r\nget c d\r\n";
            break;
        case 6:
            /* a one-key get queued with a fence after it (join set) */
            mc_req_init(&other, MC_X_VALUES);
            other.join = 3;
            other.keys = (const char *)&jgets[0].wk;
            CHECK_EQ(mc_conn_queue(c, &other, &get_b, 1, true), 0);
            CHECK_EQ(other.fences_after, 1);
            wire = "get a\r\nget b\r\nmn\r\nget c d\r\n";
            break;
        default:
            mc_req_init(&other, MC_X_VALUES);
            other.join = 3;
            other.keys = (const char *)&jgets[0].wk;
            CHECK_EQ(mc_conn_queue(c, &other, get_b_parts, 2, false), 0);
            wire = "get a\r\nget b\r\nget c d\r\n";
            break;
        }
        CHECK_EQ(jgets[0].r.ends, 1);
        JQ(c, &jgets[2], "get", "c");
        CHECK_EQ(jgets[0].r.ends, 1);
        CHECK_EQ(other.ends, 1);
        JQ(c, &jgets[3], "get", "d");
        CHECK_WIRE(c, wire);
        CHECK_EQ(jgets[2].r.ends, 0);
        CHECK_EQ(jgets[3].r.ends, 1);
        CHECK(c->tail == &jgets[3].r);
        mc_conn_close(c);
        close(peer);
    }

    /* join is only the command's length: a command as long as the line's
     * ("gat" after "get") does not join it, nor does the line's command
     * join the other's */
    set_ctx("gets and a command as long as get, join set");
    c = new_conn(&peer);
    JQ(c, &jgets[0], "get", "a");
    JQ(c, &jgets[1], "gat", "0 b");
    JQ(c, &jgets[2], "get", "c");
    JQ(c, &jgets[3], "get", "d");
    CHECK_WIRE(c, "get a\r\ngat 0 b\r\nget c d\r\n");
    CHECK_EQ(jgets[0].r.ends, 1);
    CHECK_EQ(jgets[1].r.ends, 1);
    CHECK_EQ(jgets[2].r.ends, 0);
    CHECK_EQ(jgets[3].r.ends, 1);
    mc_conn_close(c);
    close(peer);

    /* on TLS: never joined (the marks of mc_conn_queue between them), and
     * mc_conn_join itself refuses, leaving everything as it was */
    static char tls_dummy;
    set_ctx("gets on a TLS connection");
    c = new_conn(&peer);
    c->tls = (struct mc_tls *)(void *)&tls_dummy;
    JQ(c, &jgets[0], "get", "a");
    JQ(c, &jgets[1], "get", "b");
    CHECK_WIRE(c, "get a\r\nget b\r\n");
    CHECK_EQ(mc_conn_out(c).iovcnt, 3);  /* a mark between them */
    CHECK_EQ(c->wiov[1].iov_len, 0);
    CHECK_EQ(jgets[0].r.ends, 1);
    c->tls = NULL;
    mc_conn_close(c);
    close(peer);

    set_ctx("mc_conn_join on a TLS connection");
    c = new_conn(&peer);
    JQ(c, &jgets[0], "get", "a");
    c->tls = (struct mc_tls *)(void *)&tls_dummy;
    {
        mc_req_init(&jgets[1].r, MC_X_VALUES);
        jgets[1].r.join = 3;
        struct iovec b = get_b;
        CHECK_EQ(mc_conn_join(c, &jgets[1].r, &b), 0);
        CHECK_EQ(c->wcnt, 1);
        CHECK_EQ(c->wlen, 7);
        CHECK(c->tail == &jgets[0].r && jgets[0].r.next == NULL);
        CHECK_EQ(jgets[0].r.ends, 1);
        c->tls = NULL;
        /* nothing was changed: the line takes it once TLS is gone */
        CHECK_EQ(mc_conn_join(c, &jgets[1].r, &b), 1);
        CHECK_WIRE(c, "get a b\r\n");
        CHECK(c->tail == &jgets[1].r && jgets[0].r.next == &jgets[1].r);
        CHECK_EQ(jgets[0].r.ends, 0);
    }
    mc_conn_close(c);
    close(peer);

    /* after a write of w bytes: the line takes the next key while more
     * than its CRLF is left to write (the bytes left then are those of
     * the joined line from w on), not once only its CRLF (or less) is */
    for (int two = 0; two < 2; two++) {
        const char *line = two ? "version\r\nget aaa b\r\n"
                               : "version\r\nget aaa\r\n";
        size_t total = strlen(line);
        for (size_t w = 0; w <= total; w++) {
            set_ctx("a get after %zu of \"%s\" was written", w,
                    show(line, total));
            c = new_conn(&peer);
            struct mc_req v;
            mc_req_init(&v, MC_X_VERSION);
            CHECK_EQ(mc_conn_queue(c, &v, &version_iov, 1, false), 0);
            JQ(c, &jgets[0], "get", "aaa");
            if (two) {
                JQ(c, &jgets[1], "get", "b");
            }
            wrote_bytes(c, w);
            CHECK_EQ(mc_conn_written(c), w == total);
            JQ(c, &jgets[2], "get", "c");
            bool joined = total - w > 2;
            char full[64];
            size_t fn = 0;
            if (joined) {
                sadd(full, &fn, sizeof full, "%.*s c\r\n", (int)total - 2,
                     line);
            }
            else {
                sadd(full, &fn, sizeof full, "%sget c\r\n", line);
            }
            const char *left = w == total ? full + fn - 7 : full + w;
            CHECK_WIRE(c, left);
            CHECK_EQ(jgets[two].r.ends, !joined);
            CHECK_EQ(jgets[2].r.ends, 1);
            CHECK(c->tail == &jgets[2].r);
            CHECK(jgets[two].r.next == &jgets[2].r);
            /* and the line goes on taking keys */
            JQ(c, &jgets[3], "get", "d");
            char more[64];
            snprintf(more, sizeof more, "%.*s d\r\n",
                     (int)(strlen(left) - 2), left);
            CHECK_WIRE(c, more);
            CHECK_EQ(jgets[2].r.ends, 0);
            CHECK_EQ(jgets[3].r.ends, 1);
            mc_conn_close(c);
            close(peer);
        }
    }

    /* the write queue full with its first iovecs written: mc_conn_join's
     * room is made by moving the rest to the front (no growth) */
    set_ctx("joined after the written iovecs were moved out");
    c = new_conn(&peer);
    {
        struct mc_req v[6];
        for (int i = 0; i < 6; i++) {
            mc_req_init(&v[i], MC_X_VERSION);
            CHECK_EQ(mc_conn_queue(c, &v[i], &version_iov, 1, false), 0);
        }
        JQ(c, &jgets[0], "get", "a");
        JQ(c, &jgets[1], "get", "b");
        CHECK_EQ(c->wcap, 8);
        CHECK_EQ(c->wcnt, 8);
        wrote_bytes(c, 6 * 9 + 2);
        CHECK_EQ(c->whead, 6);
        JQ(c, &jgets[2], "get", "c");
        CHECK_EQ(c->wcap, 8);
        CHECK_EQ(c->whead, 0);
        CHECK_EQ(c->wcnt, 3);
        CHECK_WIRE(c, "t a b c\r\n");
        JQ(c, &jgets[3], "get", "d");
        CHECK_WIRE(c, "t a b c d\r\n");
        CHECK_EQ(c->wcnt, 4);
        for (int i = 0; i < 4; i++) {
            CHECK_EQ(jgets[i].r.ends, i == 3);
        }
    }
    mc_conn_close(c);
    close(peer);

    /* ... by mc_conn_queue's, for a gets the get line does not take: the
     * gets after it joins it */
    set_ctx("a gets line started after the written iovecs were moved out");
    c = new_conn(&peer);
    {
        struct mc_req v[7];
        for (int i = 0; i < 7; i++) {
            mc_req_init(&v[i], MC_X_VERSION);
            CHECK_EQ(mc_conn_queue(c, &v[i], &version_iov, 1, false), 0);
        }
        JQ(c, &jgets[0], "get", "a");
        CHECK_EQ(c->wcnt, 8);
        wrote_bytes(c, 7 * 9);
        CHECK_EQ(c->whead, 7);
        JQ(c, &jgets[1], "gets", "b");
        CHECK_EQ(c->wcap, 8);
        CHECK_EQ(c->whead, 0);
        CHECK_EQ(c->wcnt, 2);
        JQ(c, &jgets[2], "gets", "c");
        CHECK_WIRE(c, "get a\r\ngets b c\r\n");
        CHECK_EQ(jgets[0].r.ends, 1);
        CHECK_EQ(jgets[1].r.ends, 0);
        CHECK_EQ(jgets[2].r.ends, 1);
    }
    mc_conn_close(c);
    close(peer);

    /* a reply read before the line is written (a server out of step)
     * finishes the get: the line is no longer open to the next one, even
     * one whose request reuses the finished one's memory */
    set_ctx("a joinable get finished before its line was written");
    c = new_conn(&peer);
    {
        JQ(c, &jgets[0], "get", "a");
        CHECK(c->join_req == &jgets[0].r);
        struct mc_fail f;
        size_t need;
        exact_append(&c->rbuf, "END\r\n", 5);
        CHECK_EQ(mc_conn_feed(c, 100, &need, &f), 0);
        CHECK(c->head == NULL && c->tail == NULL);
        CHECK(c->join_req == NULL);
        CHECK_EQ(jgets[0].r.state, MC_REQ_DONE);
        JQ(c, &jgets[0], "get", "a");
        JQ(c, &jgets[1], "get", "b");
        CHECK_WIRE(c, "get a\r\nget a b\r\n");
        CHECK(c->head == &jgets[0].r && c->tail == &jgets[1].r);
        CHECK_EQ(jgets[0].r.ends, 0);
    }
    mc_conn_close(c);
    close(peer);

    /* a queueing that fails for want of memory after the move (nothing
     * queued) leaves the line open: the next get joins it */
    for (int via_queue = 0; via_queue < 2; via_queue++) {
        set_ctx("a get after %s failed with ENOMEM",
                via_queue ? "mc_conn_queue" : "mc_conn_queue_bytes");
        c = new_conn(&peer);
        struct mc_req v;
        mc_req_init(&v, MC_X_VERSION);
        CHECK_EQ(mc_conn_queue(c, &v, &version_iov, 1, false), 0);
        JQ(c, &jgets[0], "get", "a");
        JQ(c, &jgets[1], "get", "b");
        wrote_bytes(c, 9 + 1);
        CHECK_EQ(c->whead, 1);
        /* more iovecs than a write queue may hold: refused before any
         * allocation, after the written one was moved out */
        if (via_queue) {
            CHECK_EQ(mc_conn_queue(c, NULL, &version_iov, INT32_MAX - 2,
                                   false),
                     -ENOMEM);
        }
        else {
            CHECK_EQ(mc_conn_queue_bytes(c, &version_iov, INT32_MAX),
                     -ENOMEM);
        }
        CHECK_EQ(c->whead, 0);
        CHECK_EQ(c->wcnt, 2);
        CHECK_WIRE(c, "et a b\r\n");
        JQ(c, &jgets[2], "get", "c");
        CHECK_WIRE(c, "et a b c\r\n");
        CHECK_EQ(c->wcnt, 3);
        CHECK_EQ(jgets[1].r.ends, 0);
        CHECK_EQ(jgets[2].r.ends, 1);
        mc_conn_close(c);
        close(peer);
    }
}

/* ---- one-key gets sharing a line: the replies --------------------------- */

/* memcached answers "get a b c" with a VALUE for each key it holds, in
 * the line's order, then one END; each request of the line takes its
 * key's VALUE (or none), and passes on the first frame that is not
 * for it. */

#define JGET(k)                                                             \
    {.x = MC_X_VALUES, .bytes = "get " k "\r\n", .keys = k, .join = 3}
#define JGETS(k)                                                            \
    {.x = MC_X_VALUES, .bytes = "gets " k "\r\n", .keys = k, .join = 4,     \
     .with_cas = true}

static const struct rq join_abc[] = {
    JGET("a"), JGET("b"), JGET("c"), {.bytes = NULL},
};

static const struct rq join_kk[] = {
    JGET("k"), JGET("k"), {.bytes = NULL},
};

static const struct rq join_abc_version[] = {
    JGET("a"), JGET("b"), JGET("c"),
    {.x = MC_X_VERSION, .bytes = "version\r\n"},
    {.bytes = NULL},
};

static const struct rq join_set_join[] = {
    JGET("a"),
    JGET("b"),
    {.x = MC_X_STATUS, .bytes = "set k 0 0 1\r\nx\r\n",
     .accept = ACCEPT(MC_STORED, MC_NOT_STORED)},
    JGET("c"),
    JGET("d"),
    {.bytes = NULL},
};

static const struct rq join_gets_ab[] = {
    JGETS("a"), JGETS("b"), {.bytes = NULL},
};

static const struct rq join_get_gets[] = {
    JGET("a"), JGETS("b"), JGETS("c"), JGET("d"), {.bytes = NULL},
};

/* What a joined scenario is queued as, and done to it. */
struct join_arg {
    const char *wire;          /* the bytes its requests queue */
    int fail_req;              /* its owner fails at its first item; -1 */
    int abandon_req;           /* abandoned once abandon_at bytes were fed;
                                * -1 */
    size_t abandon_at;
};

static void
setup_join(struct scenario *s, const void *arg)
{
    const struct join_arg *a = arg;
    char out[512];
    size_t n = queued(s->c, out, sizeof out);
    CHECK_BYTES(out, n, a->wire);
    if (a->fail_req >= 0) {
        s->reqs[a->fail_req].fail_at = 0;
    }
    if (a->abandon_req >= 0) {
        s->abandon_id = a->abandon_req;
        s->abandon_at = a->abandon_at;
    }
}

/* "get a b\r\n" written, then "get c d\r\n": two lines, two ENDs. */
static void
setup_join_two_lines(struct scenario *s, const void *arg)
{
    (void)arg;
    static const char *const keys[4] = {"a", "b", "c", "d"};
    static const char *const lines[4] = {"get a\r\n", "get b\r\n",
                                         "get c\r\n", "get d\r\n"};
    for (int i = 0; i < 4; i++) {
        struct treq *t = sc_req_join(s, MC_X_VALUES, lines[i], 3);
        sc_keys(t, keys[i], NULL);
        if (i == 1) {
            char out[64];
            size_t n = queued(s->c, out, sizeof out);
            CHECK_BYTES(out, n, "get a b\r\n");
            all_written(s->c);
        }
    }
    char out[64];
    size_t n = queued(s->c, out, sizeof out);
    CHECK_BYTES(out, n, "get c d\r\n");
    CHECK_EQ(s->reqs[0].r.ends, 0);
    CHECK_EQ(s->reqs[1].r.ends, 1);
    CHECK_EQ(s->reqs[2].r.ends, 0);
    CHECK_EQ(s->reqs[3].r.ends, 1);
}

#define JVA "VALUE a 0 1\r\nx\r\n"
#define JVB "VALUE b 1 2\r\nyy\r\n"
#define JVC "VALUE c 2 0\r\n\r\n"
#define JVZ "VALUE z 0 1\r\nq\r\n"
#define JVA_LOG "R0 item 0 VALUE a 0 x\n"
#define JVB_LOG "R1 item 0 VALUE b 1 yy\n"
#define JVC_LOG "R2 item 0 VALUE c 2 \n"
#define NOT_ASKED "VALUE for a key that was not requested"
#define BROKEN_ABC(f)                                                       \
    "R0 failed " f "\nR1 failed " f "\nR2 failed " f "\n"

static void
test_join_replies(void)
{
    static const struct join_arg abc = {"get a b c\r\n", -1, -1, 0};
    static const struct join_arg abc_v = {"get a b c\r\nversion\r\n", -1, -1,
                                          0};
    static const struct {
        struct sc_def d;
        const struct join_arg *a;
    } cases[] = {
        {{"joined: every key a hit", join_abc, setup_join,
          JVA JVB JVC "END\r\n",
          JVA_LOG "R0 done ok\n" JVB_LOG "R1 done ok\n" JVC_LOG "R2 done ok\n",
          0},
         &abc},
        {{"joined: every key a miss", join_abc, setup_join, "END\r\n",
          "R0 done ok\nR1 done ok\nR2 done ok\n", 0},
         &abc},
        {{"joined: the first a miss", join_abc, setup_join, JVB JVC "END\r\n",
          "R0 done ok\n" JVB_LOG "R1 done ok\n" JVC_LOG "R2 done ok\n", 0},
         &abc},
        {{"joined: the middle a miss", join_abc, setup_join, JVA JVC "END\r\n",
          JVA_LOG "R0 done ok\nR1 done ok\n" JVC_LOG "R2 done ok\n", 0},
         &abc},
        {{"joined: the last a miss", join_abc, setup_join, JVA JVB "END\r\n",
          JVA_LOG "R0 done ok\n" JVB_LOG "R1 done ok\nR2 done ok\n", 0},
         &abc},
        {{"joined: the middle the only hit", join_abc, setup_join,
          JVB "END\r\n", "R0 done ok\n" JVB_LOG "R1 done ok\nR2 done ok\n", 0},
         &abc},
        {{"joined: the next request reads its own", join_abc_version,
          setup_join, JVA JVC "END\r\nVERSION 1.6.21\r\n",
          JVA_LOG "R0 done ok\nR1 done ok\n" JVC_LOG
                 "R2 done ok\nR3 item 0 VERSION 1.6.21\nR3 done ok\n",
          0},
         &abc_v},
        {{"joined: all misses, then the next request", join_abc_version,
          setup_join, "END\r\nVERSION 1\r\n",
          "R0 done ok\nR1 done ok\nR2 done ok\n"
          "R3 item 0 VERSION 1\nR3 done ok\n",
          0},
         &abc_v},
        /* out of sync */
        {{"joined: a VALUE for a key not on the line", join_abc, setup_join,
          JVZ "END\r\n",
          "broken EBADREPLY " NOT_ASKED "\n"
          BROKEN_ABC("EBADREPLY " NOT_ASKED),
          MC_FEED_BROKEN},
         &abc},
        {{"joined: a VALUE for a key not on the line, after a hit",
          join_abc, setup_join, JVA JVZ "END\r\n",
          JVA_LOG "R0 done ok\n"
                 "broken EBADREPLY " NOT_ASKED "\n"
                 "R1 failed EBADREPLY " NOT_ASKED "\n"
                 "R2 failed EBADREPLY " NOT_ASKED "\n",
          MC_FEED_BROKEN},
         &abc},
        {{"joined: values out of order", join_abc, setup_join,
          JVB JVA "END\r\n",
          "R0 done ok\n" JVB_LOG "R1 done ok\n"
          "broken EBADREPLY " NOT_ASKED "\n"
          "R2 failed EBADREPLY " NOT_ASKED "\n",
          MC_FEED_BROKEN},
         &abc},
        {{"joined: a VALUE twice", join_abc, setup_join, JVA JVA "END\r\n",
          JVA_LOG "R0 done ok\n"
                 "broken EBADREPLY " NOT_ASKED "\n"
                 "R1 failed EBADREPLY " NOT_ASKED "\n"
                 "R2 failed EBADREPLY " NOT_ASKED "\n",
          MC_FEED_BROKEN},
         &abc},
        {{"joined: no END before the next reply", join_abc_version,
          setup_join, JVA JVB JVC "VERSION 1\r\n",
          JVA_LOG "R0 done ok\n" JVB_LOG "R1 done ok\n" JVC_LOG
                 "broken EBADREPLY reply does not fit the command\n"
                 "R2 failed EBADREPLY reply does not fit the command\n"
                 "R3 failed EBADREPLY reply does not fit the command\n",
          MC_FEED_BROKEN},
         &abc_v},
        {{"joined: SERVER_ERROR after a VALUE", join_abc, setup_join,
          JVA "SERVER_ERROR out of memory\r\nEND\r\n",
          JVA_LOG "R0 done ok\n"
                 "broken EREPLY SERVER_ERROR out of memory\n"
                 "R1 failed EREPLY SERVER_ERROR out of memory\n"
                 "R2 failed EREPLY SERVER_ERROR out of memory\n",
          MC_FEED_BROKEN},
         &abc},
        {{"joined: CLIENT_ERROR for the line", join_abc, setup_join,
          "CLIENT_ERROR bad command line format\r\n",
          "broken EREPLY CLIENT_ERROR bad command line format\n" BROKEN_ABC(
              "EREPLY CLIENT_ERROR bad command line format"),
          MC_FEED_BROKEN},
         &abc},
        {{"joined: CLIENT_ERROR after two VALUEs", join_abc, setup_join,
          JVA JVB "CLIENT_ERROR bad command line format\r\n",
          JVA_LOG "R0 done ok\n" JVB_LOG
                 "R1 done ok\n"
                 "broken EREPLY CLIENT_ERROR bad command line format\n"
                 "R2 failed EREPLY CLIENT_ERROR bad command line format\n",
          MC_FEED_BROKEN},
         &abc},
        {{"joined: ERROR for the line", join_abc, setup_join, "ERROR\r\n",
          "broken EREPLY ERROR\n" BROKEN_ABC("EREPLY ERROR"),
          MC_FEED_BROKEN},
         &abc},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_cuts(&cases[i].d, cases[i].a);
    }

    /* the same key twice on a line: a VALUE each, in turn */
    static const struct join_arg kk = {"get k k\r\n", -1, -1, 0};
    static const struct sc_def dup[] = {
        {"joined: a key twice", join_kk, setup_join,
         "VALUE k 0 1\r\nx\r\nVALUE k 5 2\r\nyz\r\nEND\r\n",
         "R0 item 0 VALUE k 0 x\nR0 done ok\n"
         "R1 item 0 VALUE k 5 yz\nR1 done ok\n",
         0},
        {"joined: a key twice, a miss", join_kk, setup_join, "END\r\n",
         "R0 done ok\nR1 done ok\n", 0},
        {"joined: a key twice, a third VALUE", join_kk, setup_join,
         "VALUE k 0 1\r\nx\r\nVALUE k 0 1\r\ny\r\nVALUE k 0 1\r\nz\r\n"
         "END\r\n",
         "R0 item 0 VALUE k 0 x\nR0 done ok\n"
         "R1 item 0 VALUE k 0 y\n"
         "broken EBADREPLY " NOT_ASKED "\n"
         "R1 failed EBADREPLY " NOT_ASKED "\n",
         MC_FEED_BROKEN},
    };
    for (size_t i = 0; i < sizeof dup / sizeof dup[0]; i++) {
        run_cuts(&dup[i], &kk);
    }

    /* An owner fails on its VALUE: the request fails with EOWNER once the
     * next frame comes (the line's), the others take their own. */
    static const char *const lines[3][3] = {
        {"R0 item 0 VALUE a 0 x", NULL, NULL},
        {"R1 item 0 VALUE b 1 yy", NULL, NULL},
        {"R2 item 0 VALUE c 2 ", NULL, NULL},
    };
    static const int nitems[3] = {1, 1, 1};
    static const size_t item_no[3][3] = {{0}, {0}, {0}};
    static struct join_arg owner_args[3];
    for (int r = 0; r < 3; r++) {
        owner_args[r] = (struct join_arg){"get a b c\r\n", r, -1, 0};
        struct log want;
        memset(&want, 0, sizeof want);
        want_log(&want, lines, nitems, 3, r, 0, item_no);
        char name[80];
        snprintf(name, sizeof name, "joined: the owner of R%d fails", r);
        struct sc_def d = {name, join_abc, setup_join, JVA JVB JVC "END\r\n",
                           want.text, 0};
        run_cuts(&d, &owner_args[r]);
        free(want.text);
    }
    static const struct join_arg owner0 = {"get a b c\r\n", 0, -1, 0};
    static const struct join_arg owner0v = {"get a b c\r\nversion\r\n", 0, -1,
                                            0};
    static const struct {
        struct sc_def d;
        const struct join_arg *a;
    } owners[] = {
        {{"joined: the first's owner fails, the others miss", join_abc,
          setup_join, JVA "END\r\n",
          "R0 item 0 fails\nowner R0\nR0 failed EOWNER\n"
          "R1 done ok\nR2 done ok\n",
          0},
         &owner0},
        {{"joined: the first's owner fails, the last hits", join_abc_version,
          setup_join, JVA JVC "END\r\nVERSION 1\r\n",
          "R0 item 0 fails\nowner R0\nR0 failed EOWNER\n"
          "R1 done ok\n" JVC_LOG "R2 done ok\n"
          "R3 item 0 VERSION 1\nR3 done ok\n",
          0},
         &owner0v},
        {{"joined: the first's owner failed, then an error line", join_abc,
          setup_join, JVA "SERVER_ERROR x\r\n",
          "R0 item 0 fails\nowner R0\n"
          "broken EREPLY SERVER_ERROR x\n"
          "R0 failed EOWNER\n"
          "R1 failed EREPLY SERVER_ERROR x\n"
          "R2 failed EREPLY SERVER_ERROR x\n",
          MC_FEED_BROKEN},
         &owner0},
    };
    for (size_t i = 0; i < sizeof owners / sizeof owners[0]; i++) {
        run_cuts(&owners[i].d, owners[i].a);
    }

    /* An abandoned request: its VALUE read and discarded, it completes in
     * its turn; the others take their own.  JVA is bytes 0..15, JVB
     * 16..32, JVC 33..47, END 48..52. */
    static const struct {
        struct join_arg a;
        const char *stream;
        const char *want;
    } abandons[] = {
        {{"get a b c\r\n", -1, 1, 0}, JVA JVB JVC "END\r\n",
         "abandon R1\n" JVA_LOG "R0 done ok\nR1 done ok\n" JVC_LOG
         "R2 done ok\n"},
        {{"get a b c\r\n", -1, 1, 16}, JVA JVB JVC "END\r\n",
         JVA_LOG "R0 done ok\nabandon R1\nR1 done ok\n" JVC_LOG
         "R2 done ok\n"},
        {{"get a b c\r\n", -1, 1, 22}, JVA JVB JVC "END\r\n",
         JVA_LOG "R0 done ok\nabandon R1\nR1 done ok\n" JVC_LOG
         "R2 done ok\n"},
        {{"get a b c\r\n", -1, 1, 31}, JVA JVB JVC "END\r\n",
         JVA_LOG "R0 done ok\nabandon R1\nR1 done ok\n" JVC_LOG
         "R2 done ok\n"},
        /* its key a miss */
        {{"get a b c\r\n", -1, 1, 5}, JVA JVC "END\r\n",
         "abandon R1\n" JVA_LOG "R0 done ok\nR1 done ok\n" JVC_LOG
         "R2 done ok\n"},
        /* the first, mid-value; the last, before its END */
        {{"get a b c\r\n", -1, 0, 14}, JVA JVB JVC "END\r\n",
         "abandon R0\nR0 done ok\n" JVB_LOG "R1 done ok\n" JVC_LOG
         "R2 done ok\n"},
        {{"get a b c\r\n", -1, 2, 50}, JVA JVB JVC "END\r\n",
         JVA_LOG "R0 done ok\n" JVB_LOG "R1 done ok\n" JVC_LOG
         "abandon R2\nR2 done ok\n"},
    };
    for (size_t i = 0; i < sizeof abandons / sizeof abandons[0]; i++) {
        char name[80];
        snprintf(name, sizeof name, "joined: R%d abandoned at %zu",
                 abandons[i].a.abandon_req, abandons[i].a.abandon_at);
        struct sc_def d = {name, join_abc, setup_join, abandons[i].stream,
                           abandons[i].want, 0};
        run_cuts(&d, &abandons[i].a);
    }

    /* lines after the joined one read their own replies */
    static const struct join_arg ab_set_cd = {
        "get a b\r\nset k 0 0 1\r\nx\r\nget c d\r\n", -1, -1, 0};
    static const struct join_arg gets_ab = {"gets a b\r\n", -1, -1, 0};
    static const struct join_arg get_gets = {
        "get a\r\ngets b c\r\nget d\r\n", -1, -1, 0};
    static const struct {
        struct sc_def d;
        const struct join_arg *a;
    } more[] = {
        {{"joined: a set, then another joined line", join_set_join,
          setup_join,
          "VALUE a 0 1\r\nx\r\nEND\r\nSTORED\r\nVALUE d 0 1\r\nw\r\nEND\r\n",
          "R0 item 0 VALUE a 0 x\nR0 done ok\nR1 done ok\n"
          "R2 item 0 STORED\nR2 done ok\n"
          "R3 done ok\nR4 item 0 VALUE d 0 w\nR4 done ok\n",
          0},
         &ab_set_cd},
        {{"joined: a set, then another joined line, all hits",
          join_set_join, setup_join,
          "VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\nNOT_STORED\r\n"
          "VALUE c 0 1\r\nz\r\nVALUE d 0 1\r\nw\r\nEND\r\n",
          "R0 item 0 VALUE a 0 x\nR0 done ok\n"
          "R1 item 0 VALUE b 0 y\nR1 done ok\n"
          "R2 item 0 NOT_STORED\nR2 done ok\n"
          "R3 item 0 VALUE c 0 z\nR3 done ok\n"
          "R4 item 0 VALUE d 0 w\nR4 done ok\n",
          0},
         &ab_set_cd},
        {{"joined: the set's reply where the line's END is owed",
          join_set_join, setup_join, "VALUE a 0 1\r\nx\r\nSTORED\r\n",
          "R0 item 0 VALUE a 0 x\nR0 done ok\n"
          "broken EBADREPLY reply does not fit the command\n"
          "R1 failed EBADREPLY reply does not fit the command\n"
          "R2 failed EBADREPLY reply does not fit the command\n"
          "R3 failed EBADREPLY reply does not fit the command\n"
          "R4 failed EBADREPLY reply does not fit the command\n",
          MC_FEED_BROKEN},
         &ab_set_cd},
        /* gets: the cas of each VALUE delivered */
        {{"joined gets: values with their cas", join_gets_ab, setup_join,
          "VALUE a 0 1 11\r\nx\r\nVALUE b 3 2 18446744073709551615\r\nyy\r\n"
          "END\r\n",
          "R0 item 0 VALUE a 0 x cas\nR0 cas 11\nR0 done ok\n"
          "R1 item 0 VALUE b 3 yy cas\nR1 cas 18446744073709551615\n"
          "R1 done ok\n",
          0},
         &gets_ab},
        {{"joined gets: the first a miss", join_gets_ab, setup_join,
          "VALUE b 0 1 7\r\ny\r\nEND\r\n",
          "R0 done ok\nR1 item 0 VALUE b 0 y cas\nR1 cas 7\nR1 done ok\n", 0},
         &gets_ab},
        {{"joined gets: a VALUE without its cas", join_gets_ab, setup_join,
          "VALUE a 0 1 11\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\n",
          "R0 item 0 VALUE a 0 x cas\nR0 cas 11\nR0 done ok\n"
          "broken EBADREPLY VALUE without cas\n"
          "R1 failed EBADREPLY VALUE without cas\n",
          MC_FEED_BROKEN},
         &gets_ab},
        {{"get, joined gets, get: three lines", join_get_gets, setup_join,
          "VALUE a 0 1\r\nx\r\nEND\r\nVALUE c 0 1 9\r\nz\r\nEND\r\n"
          "VALUE d 0 1\r\nw\r\nEND\r\n",
          "R0 item 0 VALUE a 0 x\nR0 done ok\n"
          "R1 done ok\n"
          "R2 item 0 VALUE c 0 z cas\nR2 cas 9\nR2 done ok\n"
          "R3 item 0 VALUE d 0 w\nR3 done ok\n",
          0},
         &get_gets},
        {{"get, joined gets, get: a cas-less VALUE for the gets line",
          join_get_gets, setup_join,
          "END\r\nVALUE b 0 1\r\ny\r\nEND\r\nEND\r\n",
          "R0 done ok\n"
          "broken EBADREPLY VALUE without cas\n"
          "R1 failed EBADREPLY VALUE without cas\n"
          "R2 failed EBADREPLY VALUE without cas\n"
          "R3 failed EBADREPLY VALUE without cas\n",
          MC_FEED_BROKEN},
         &get_gets},
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        run_cuts(&more[i].d, more[i].a);
    }

    /* A request of the line completes at its VALUE, before the rest of
     * the line's reply is in; one whose key missed, once the frame for a
     * later key is all in. */
    set_ctx("joined: each request completes in its turn");
    struct scenario s;
    size_t need;
    sc_begin(&s);
    sc_queue(&s, join_abc);
    all_written(s.c);
    CHECK_EQ(sc_feed(&s, JVA, strlen(JVA), 0, &need), 0);
    CHECK_EQ(s.reqs[0].r.state, MC_REQ_DONE);
    CHECK_EQ(s.reqs[1].r.state, MC_REQ_FLIGHT);
    CHECK(s.c->head == &s.reqs[1].r);
    CHECK_EQ(sc_feed(&s, JVC, strlen(JVC), 0, &need), 0);
    CHECK_EQ(s.reqs[1].r.state, MC_REQ_DONE);  /* a miss */
    CHECK_EQ(s.reqs[2].r.state, MC_REQ_FLIGHT);  /* its END owed */
    CHECK_EQ(s.reqs[2].items, 1);
    CHECK_EQ(sc_feed(&s, "END\r\n", 5, 0, &need), 0);
    CHECK_EQ(s.reqs[2].r.state, MC_REQ_DONE);
    CHECK_BYTES(s.log.text, s.log.len,
                JVA_LOG "R0 done ok\nR1 done ok\n" JVC_LOG "R2 done ok\n");
    sc_end(&s, true);

    set_ctx("joined: a miss completes once the next VALUE is all in");
    sc_begin(&s);
    sc_queue(&s, join_abc);
    all_written(s.c);
    CHECK_EQ(sc_feed(&s, "VALUE b 1 2\r\ny", 14, 0, &need), 0);
    CHECK_EQ(need, strlen(JVB));
    CHECK_EQ(s.reqs[0].r.state, MC_REQ_FLIGHT);
    CHECK_EQ(sc_feed(&s, "y\r\n", 3, 0, &need), 0);
    CHECK_EQ(s.reqs[0].r.state, MC_REQ_DONE);
    CHECK_EQ(s.reqs[1].r.state, MC_REQ_DONE);
    CHECK_EQ(s.reqs[2].r.state, MC_REQ_FLIGHT);
    CHECK(s.c->head == &s.reqs[2].r);
    CHECK_EQ(sc_feed(&s, "END\r\n", 5, 0, &need), 0);
    CHECK_BYTES(s.log.text, s.log.len,
                "R0 done ok\n" JVB_LOG "R1 done ok\nR2 done ok\n");
    sc_end(&s, true);

    /* two joined lines back to back: each END ends its own line */
    static const struct sc_def two[] = {
        {"two joined lines", NULL, setup_join_two_lines,
         "VALUE b 0 1\r\ny\r\nEND\r\nVALUE c 0 1\r\nz\r\nEND\r\n",
         "R0 done ok\nR1 item 0 VALUE b 0 y\nR1 done ok\n"
         "R2 item 0 VALUE c 0 z\nR2 done ok\nR3 done ok\n",
         0},
        {"two joined lines, all misses", NULL, setup_join_two_lines,
         "END\r\nEND\r\n",
         "R0 done ok\nR1 done ok\nR2 done ok\nR3 done ok\n", 0},
        {"two joined lines: the first line's END missing", NULL,
         setup_join_two_lines,
         "VALUE a 0 1\r\nx\r\nVALUE c 0 1\r\nz\r\nEND\r\n",
         "R0 item 0 VALUE a 0 x\nR0 done ok\n"
         "broken EBADREPLY " NOT_ASKED "\n"
         "R1 failed EBADREPLY " NOT_ASKED "\n"
         "R2 failed EBADREPLY " NOT_ASKED "\n"
         "R3 failed EBADREPLY " NOT_ASKED "\n",
         MC_FEED_BROKEN},
        {"two joined lines: the second line's key first", NULL,
         setup_join_two_lines, "VALUE c 0 1\r\nz\r\nEND\r\nEND\r\n",
         "broken EBADREPLY " NOT_ASKED "\n"
         "R0 failed EBADREPLY " NOT_ASKED "\n"
         "R1 failed EBADREPLY " NOT_ASKED "\n"
         "R2 failed EBADREPLY " NOT_ASKED "\n"
         "R3 failed EBADREPLY " NOT_ASKED "\n",
         MC_FEED_BROKEN},
    };
    for (size_t i = 0; i < sizeof two / sizeof two[0]; i++) {
        run_cuts(&two[i], NULL);
    }
}
#undef JVA
#undef JVB
#undef JVC
#undef JVZ
#undef JVA_LOG
#undef JVB_LOG
#undef JVC_LOG
#undef BROKEN_ABC

/* ---- through a real loopback socket ------------------------------------- */

static int
listen_loopback(bool do_listen, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0
        || (do_listen && listen(fd, 4) != 0)
        || getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        perror("loopback socket");
        exit(2);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void
test_loopback(void)
{
    set_ctx("a request over loopback TCP");
    int port;
    int lfd = listen_loopback(true, &port);
    char spec[64];
    snprintf(spec, sizeof spec, "127.0.0.1:%d", port);
    struct mc_engine e;
    struct mc_config cfg = config();
    uint32_t one = 1;
    CHECK_EQ(mc_engine_init(&e, &cfg, 1), 0);
    CHECK_EQ(mc_engine_set_server(&e, 0, spec, strlen(spec)), 0);
    CHECK_EQ(mc_engine_build(&e, MC_DIST_KETAMA, MC_HASH_MD5, &one), 0);
    struct mc_server *srv = &e.servers[0];
    struct mc_conn *c;
    CHECK_EQ(mc_engine_take(&e, srv, &c), MC_TAKE_CONNECT);
    int gai = 0;
    int fd = mc_conn_open(&srv->spec, mc_now() + 5 * SEC, &gai);
    CHECK(fd >= 0);
    struct mc_fail f;
    c = mc_engine_connected(&e, srv, fd, gai, &f);
    CHECK(c != NULL);
    int sfd = accept(lfd, NULL, NULL);
    CHECK(sfd >= 0);
    if (c == NULL || sfd < 0) {
        close(lfd);
        mc_engine_free(&e);
        return;
    }
    struct log log;
    memset(&log, 0, sizeof log);
    struct treq t[2];
    memset(t, 0, sizeof t);
    struct mc_wkey wk = {"", 0, "k", 1};
    mc_req_init(&t[0].r, MC_X_VERSION);
    mc_req_init(&t[1].r, MC_X_VALUES);
    t[1].r.keys = (const char *)&wk;
    for (int i = 0; i < 2; i++) {
        t[i].id = i;
        t[i].fail_at = -1;
        t[i].log = &log;
        t[i].r.on_item = t_item;
        t[i].r.on_done = t_done;
        t[i].r.owner = &t[i];
    }
    struct iovec v0 = {(void *)"version\r\n", 9};
    struct iovec v1 = {(void *)"get k\r\n", 7};
    CHECK_EQ(mc_conn_queue(c, &t[0].r, &v0, 1, false), 0);
    CHECK_EQ(mc_conn_queue(c, &t[1].r, &v1, 1, false), 0);
    int64_t deadline = mc_now() + 5 * SEC;
    while (!mc_conn_written(c) && mc_now() < deadline) {
        struct mc_out o = mc_conn_out(c);
        ssize_t n = mc_conn_send(c->fd, &o);
        mc_conn_wrote(c, &o);
        CHECK(n > 0 || n == -EAGAIN);
    }
    char req[64];
    size_t rn = 0;
    while (rn < 16 && mc_now() < deadline) {
        struct pollfd p = {sfd, POLLIN, 0};
        (void)poll(&p, 1, 100);
        ssize_t n = recv(sfd, req + rn, sizeof req - rn, MSG_DONTWAIT);
        if (n > 0) {
            rn += (size_t)n;
        }
    }
    CHECK_BYTES(req, rn, "version\r\nget k\r\n");
    static const char reply[] =
        "VERSION 1.6.21\r\nVALUE k 5 2\r\nhi\r\nEND\r\n";
    /* in two pieces, the second inside the value */
    CHECK_EQ(send(sfd, reply, 30, 0), 30);
    size_t need = 0;
    for (int part = 0; part < 2; part++) {
        while (mc_now() < deadline) {
            CHECK_EQ(mc_buf_reserve(&c->rbuf,
                                    mc_buf_room(need, mc_buf_len(&c->rbuf))),
                     0);
            int rev = mc_conn_wait(c->fd, POLLIN, deadline);
            CHECK(rev > 0);
            ssize_t n = mc_conn_recv(c->fd, &c->rbuf);
            if (n == -EAGAIN) {
                continue;
            }
            CHECK(n > 0);
            CHECK_EQ(mc_conn_feed(c, cfg.max_value, &need, &f), 0);
            if (part == 0 && mc_buf_len(&c->rbuf) == 30 - 16) {
                break;
            }
            if (part == 1 && t[1].r.state != MC_REQ_FLIGHT) {
                break;
            }
        }
        if (part == 0) {
            CHECK_EQ(t[0].r.state, MC_REQ_DONE);
            CHECK_EQ(t[1].r.state, MC_REQ_FLIGHT);
            CHECK_EQ(need, 13 + 2 + 2);  /* "VALUE k 5 2\r\n" hi CRLF */
            CHECK_EQ(send(sfd, reply + 30, sizeof reply - 1 - 30, 0),
                     (ssize_t)(sizeof reply - 1 - 30));
        }
    }
    CHECK_BYTES(log.text, log.len,
                "R0 item 0 VERSION 1.6.21\nR0 done ok\n"
                "R1 item 0 VALUE k 5 hi\nR1 done ok\n");
    free(log.text);
    mc_engine_give(&e, c);
    CHECK_EQ(srv->nidle, 1);
    CHECK(!mc_conn_stale(c->fd));
    /* the server closing the pooled connection is seen before reuse */
    close(sfd);
    struct pollfd p = {c->fd, POLLIN, 0};
    CHECK_EQ(poll(&p, 1, 2000), 1);
    CHECK(mc_conn_stale(c->fd));
    mc_engine_free(&e);

    set_ctx("a refused connect over loopback");
    int rfd = listen_loopback(false, &port);  /* bound, not listening */
    snprintf(spec, sizeof spec, "127.0.0.1:%d", port);
    CHECK_EQ(mc_engine_init(&e, &cfg, 1), 0);
    CHECK_EQ(mc_engine_set_server(&e, 0, spec, strlen(spec)), 0);
    CHECK_EQ(mc_engine_build(&e, MC_DIST_KETAMA, MC_HASH_MD5, &one), 0);
    srv = &e.servers[0];
    CHECK_EQ(mc_engine_take(&e, srv, &c), MC_TAKE_CONNECT);
    fd = mc_conn_open(&srv->spec, mc_now() + 5 * SEC, &gai);
    CHECK_EQ(fd, -ECONNREFUSED);
    CHECK(mc_engine_connected(&e, srv, fd, gai, &f) == NULL);
    CHECK_EQ(f.code, -ECONNREFUSED);
    CHECK(mc_server_dead(srv));
    int64_t left = mc_engine_hold_left(&e, 0);
    CHECK(left > 0 && left <= SEC);
    CHECK_EQ(mc_engine_take(&e, srv, &c), MC_TAKE_DEAD);
    mc_engine_free(&e);
    close(rfd);
    close(lfd);
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct mc_config cfg = config();
    engine_up(&cfg, "127.0.0.1:11211");
    test_queue();
    test_partial_writes();
    test_join_bytes();
    test_join_replies();
    test_kinds();
    test_errors();
    test_out_of_sync();
    test_abandon();
    test_owner();
    test_owner_then();
    test_meta();
    test_meta_as_single();
    test_meta_as_opaque();
    test_meta_quiet();
    test_meta_multi();
    test_meta_fences();
    test_fences();
    test_flush_owed();
    test_limits();
    test_loopback();
    mc_engine_free(&eng);
    return check_summary();
}
