/* libFuzzer target for the requests in flight on a connection (pipe.h,
 * pipe.c): a few requests are queued, a reply stream is fed through
 * mc_conn_feed in chunks, some requests are abandoned midway and some
 * owners fail while taking an item.
 *
 * Input: a control byte, one byte per request, an abandon byte, a flags
 * byte, then the reply stream.
 *   control  bits 0-2: requests - 1; bit 3: a noreply fence after every
 *            second request; bits 4-6: the largest chunk (1 ... 4096
 *            bytes, sizes drawn from a generator seeded by the input);
 *            bit 7: max_value 16 instead of 1 MiB
 *   request  bits 0-2: what it expects (values, values with cas and a key
 *            prefix, status lines, a number, OK, VERSION, stats, values
 *            over two retrieval lines); bits 3-4: items - 1 (keys asked,
 *            status lines), and for a number 1-3 makes it a meta request
 *            (MC_X_META) taking the kinds of mg, ms and ma (VA HD EN, HD
 *            NS EX NF, VA NF), and for OK 1-3 a "config get" (MC_X_CONFIG); bit 5: its owner fails at item bits 6-7;
 *            bit 6: status lines take SERVER_ERROR as an item.  A values
 *            request of one key (values, or values with cas, items 1)
 *            fails at its item 0 with bit 5 (there is no other); bit 6
 *            queues it as the bindings do a one-key get, "get <key>\r\n"
 *            ("gets p:<key>\r\n" with cas) with join set, so that it
 *            joins the line of such a get of the same command queued
 *            right before it (mc_conn_join); bit 7 makes its key b,
 *            not a
 *   abandon  bit 7 set: request bits 0-2 is abandoned before chunk bits 3-6
 *   flags    bit 0: a flush_all's OK is owed first; bit 1: a fence's MN is
 *            owed ahead of the first request; bits 2-7: the chunk seed
 *   as bytes one per text command spoken as meta (a VERSION request, bits
 *            0-2 = 5, with items bits 3-4 > 0: 1 a quiet multi-key get, 2
 *            a set_multi, 3 one of get, touch, delete, incr by bits 6-7),
 *            in request order: bits 0-1 items - 1; bits 2-3 the opaque
 *            base (0, 7, 2^32 - 2, 2^32 - 1); bit 4 with cas (get) or soft
 *            errors (set_multi); bit 5 the opaque checked (always when
 *            quiet); bits 6-7 the item its owner fails at (request bit 5);
 *            for a get or set_multi, request bit 6 reverses the item order
 *
 * Every chunk is fed from a block holding exactly the unread bytes, so a
 * read past them is an AddressSanitizer error.  The target aborts when
 *   - a request is told it finished twice, or never after mc_conn_fail_all;
 *   - requests finish out of order, or an item reaches a request that is
 *     not the oldest in flight, finished, abandoned, or whose owner failed;
 *   - an item does not fit its request (the index of a key not asked or
 *     out of order, a VALUE for another key or without the cas asked, a
 *     value over max_value or outside the buffer, a reply kind the request
 *     does not take);
 *   - a request completes without every item it owes (not abandoned, its
 *     owner not failed), or fails without a reason, or an owner's failure
 *     is not reported with MC_FEED_OWNER at once (with that request still
 *     the oldest), or reported when none failed, or a request whose owner
 *     failed on the last item of its reply (a number, OK, VERSION, its
 *     last status line) is not finished by the next feed itself;
 *   - MC_FEED_BROKEN comes without f set, or leaves requests queued after
 *     mc_conn_fail_all;
 *   - a meta reply reaches a request that is not MC_X_META, or is not of
 *     a kind it takes, or an MC_X_META request gets a text item (unless it
 *     stands for a text command);
 *   - a text command spoken as meta is given an item that is not what its
 *     meta frame (the one at the buffer's head) reads as, of a kind its
 *     command does not answer, for a position out of order (a quiet
 *     reply's increasing, another's the next), or whose frame does not
 *     carry the opaque token of that position when one is checked; or it
 *     completes before all its lines were answered (not quiet);
 *   - a feed returns 0 with a complete frame left unread (text, meta, or
 *     a meta status line owed to a fence), or with a need not larger than
 *     the bytes there, or the buffer's cursors are wrong;
 *   - the bytes queued are not those of the requests with each one-key
 *     get joined to the line of the get before it when nothing (a fence)
 *     is between them and both are get or both gets, or a request owes
 *     an END although a later one joined its line (or none although none
 *     did);
 *   - a request joined to the next one's line completes without its
 *     VALUE (not abandoned, its owner not failed) but the frame it passes
 *     on is neither END nor a VALUE for a key of a later request on its
 *     line.
 *
 * A text command spoken as meta reads its frames with mc_meta_as_text;
 * its owner is told the text reply (on_item), never the meta one.
 */
#define _DEFAULT_SOURCE

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "meta.h"
#include "pipe.h"
#include "proto.h"
#include "../c/guard.h"
#include "../c/rand.h"

#define REQUIRE(cond)                                                       \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond,        \
                    __FILE__, __LINE__);                                    \
            abort();                                                        \
        }                                                                   \
    } while (0)

static const size_t max_chunks[8] = {1, 2, 3, 7, 16, 64, 512, 4096};
static const char *const key_names[4] = {"a", "b", "c", "d"};

struct freq {
    struct mc_req r;
    int idx;
    int done;                  /* on_done calls */
    int items;                 /* on_item calls */
    int fail_at;               /* the item its owner fails, or -1 */
    bool owner_failed;
    bool abandoned;
    bool reversed;             /* index maps position k to n - 1 - k */
    int fail_pos;              /* the position its owner failed at */
    size_t next_item;          /* the lowest item index still possible */
    struct mc_wkey wk[4];
    size_t index[4];
    char line[16];             /* a joinable get's "get <key>\r\n" */
    size_t line_len;           /* 0: not joinable */
    int line_no;               /* the line it is on (joinable ones) */
    bool joined;               /* a later request joined its line */
};

struct run {
    struct mc_conn *c;
    struct freq reqs[8];
    int nreqs;
    int next_done;             /* requests finish in the order queued */
    size_t max_value;
    struct freq *owner_fired;  /* an owner failed in this feed */
};

static struct run *cur;

static bool
inside_buffer(const char *p, size_t n)
{
    const struct mc_buf *b = &cur->c->rbuf;
    if (n == 0) {
        return true;
    }
    return p >= b->data + b->start && p <= b->data + b->end
           && n <= (size_t)(b->data + b->end - p);
}

/* An item of a text command spoken as meta: the frame at the buffer's
 * head is the one it was read from. */
static void
as_item(struct freq *q, size_t item, const struct mc_reply *rep)
{
    const struct mc_req *r = &q->r;
    const struct mc_buf *b = &cur->c->rbuf;
    REQUIRE(item < r->nitems);
    size_t pos = q->reversed ? r->nitems - 1 - item : item;
    REQUIRE(r->index == NULL || r->index[pos] == item);
    if (r->quiet) {
        REQUIRE(pos >= r->cursor);
    }
    else {
        REQUIRE(pos == r->cursor);
    }
    struct mc_meta_reply m;
    ssize_t n = mc_meta_parse(mc_buf_head(b), mc_buf_len(b), cur->max_value,
                              &m);
    REQUIRE(n > 0);
    if (mc_meta_is_error(m.kind)) {
        /* a soft error: the line due, of a set_multi */
        REQUIRE(m.kind == MC_META_SERVER_ERROR && r->soft_errors);
        REQUIRE(!r->quiet && r->nitems > 1);
        REQUIRE(rep->kind == MC_SERVER_ERROR);
        REQUIRE(rep->text == m.text && rep->text_len == m.text_len);
        return;
    }
    if (r->quiet || r->check_opaque) {
        REQUIRE(m.has & MC_RF_OPAQUE_NUM);
        REQUIRE(m.opaque_num == (uint32_t)(r->opaque + (uint32_t)pos));
    }
    struct mc_reply t;
    REQUIRE(mc_meta_as_text(r->as, &m, &t) == 1);
    REQUIRE(t.kind == rep->kind);
    switch (r->as) {
    case MC_AS_GET:
        REQUIRE(rep->kind == MC_VALUE);
        REQUIRE(rep->value == m.value && rep->value_len == m.value_len);
        REQUIRE(rep->value_len <= cur->max_value);
        REQUIRE(inside_buffer(rep->value, rep->value_len));
        REQUIRE(rep->key == NULL && rep->key_len == 0);
        REQUIRE(rep->flags == m.client_flags);
        REQUIRE(!r->with_cas || rep->has_cas);
        REQUIRE(!rep->has_cas || rep->cas == m.cas);
        break;
    case MC_AS_TOUCH:
        REQUIRE(rep->kind == MC_TOUCHED || rep->kind == MC_NOT_FOUND);
        break;
    case MC_AS_STORE:
        REQUIRE(rep->kind == MC_STORED || rep->kind == MC_NOT_STORED
                || rep->kind == MC_EXISTS || rep->kind == MC_NOT_FOUND);
        break;
    case MC_AS_DELETE:
        REQUIRE(rep->kind == MC_DELETED || rep->kind == MC_NOT_FOUND);
        break;
    case MC_AS_ARITH:
        REQUIRE(rep->kind == MC_NUMBER || rep->kind == MC_NOT_FOUND);
        REQUIRE(rep->kind != MC_NUMBER || rep->number == t.number);
        break;
    case MC_AS_NONE:
        REQUIRE(false);
        break;
    }
}

static int
on_item(void *owner, struct mc_req *r, size_t item,
        const struct mc_reply *rep)
{
    struct freq *q = owner;
    REQUIRE(&q->r == r);
    REQUIRE(cur->c->head == r);
    REQUIRE(q->done == 0 && !q->abandoned && !q->owner_failed);
    REQUIRE(cur->owner_fired == NULL);
    switch (r->expect) {
    case MC_X_VALUES: {
        REQUIRE(rep->kind == MC_VALUE);
        REQUIRE(item < r->nitems && item >= q->next_item);
        q->next_item = item + 1;
        const struct mc_wkey *wk = &q->wk[item];
        REQUIRE(rep->key_len == wk->pre_len + wk->key_len);
        REQUIRE(memcmp(rep->key, wk->pre, wk->pre_len) == 0);
        REQUIRE(memcmp(rep->key + wk->pre_len, wk->key, wk->key_len) == 0);
        REQUIRE(!r->with_cas || rep->has_cas);
        REQUIRE(rep->value_len <= cur->max_value);
        REQUIRE(inside_buffer(rep->value, rep->value_len));
        REQUIRE(inside_buffer(rep->key, rep->key_len));
        break;
    }
    case MC_X_STATUS: {
        size_t k = (size_t)q->items;
        REQUIRE(k < r->nitems);
        REQUIRE(item == (r->index ? r->index[k] : k));
        REQUIRE((r->accept & (1u << rep->kind))
                || (r->soft_errors && rep->kind == MC_SERVER_ERROR));
        break;
    }
    case MC_X_NUMBER:
        REQUIRE(item == 0 && q->items == 0);
        REQUIRE(rep->kind == MC_NUMBER || rep->kind == MC_NOT_FOUND);
        break;
    case MC_X_OK:
        REQUIRE(item == 0 && q->items == 0 && rep->kind == MC_OK);
        break;
    case MC_X_VERSION:
        REQUIRE(item == 0 && q->items == 0 && rep->kind == MC_VERSION);
        REQUIRE(inside_buffer(rep->text, rep->text_len));
        break;
    case MC_X_CONFIG:
        REQUIRE(item == 0 && q->items == 0 && rep->kind == MC_CONFIG);
        REQUIRE(!rep->has_cas && rep->value_len <= cur->max_value);
        REQUIRE(inside_buffer(rep->value, rep->value_len));
        REQUIRE(inside_buffer(rep->key, rep->key_len));
        break;
    case MC_X_STATS:
        REQUIRE(rep->kind == MC_STAT && item == (size_t)q->items);
        REQUIRE(inside_buffer(rep->key, rep->key_len));
        REQUIRE(inside_buffer(rep->text, rep->text_len));
        REQUIRE(r->taken <= MC_MAX_STATS_REPLY);
        break;
    case MC_X_META:
        REQUIRE(r->as != MC_AS_NONE);  /* else its frames go to on_meta */
        as_item(q, item, rep);
        break;
    }
    if (q->items++ == q->fail_at) {
        q->owner_failed = true;
        q->fail_pos = (int)r->cursor;
        if (r->quiet || r->check_opaque) {
            q->fail_pos = (int)(q->reversed ? r->nitems - 1 - item : item);
        }
        cur->owner_fired = q;
        return -1;
    }
    return 0;
}

static int
on_meta(void *owner, struct mc_req *r, const struct mc_meta_reply *rep)
{
    struct freq *q = owner;
    REQUIRE(&q->r == r);
    REQUIRE(cur->c->head == r);
    REQUIRE(r->expect == MC_X_META && r->as == MC_AS_NONE);
    REQUIRE(q->done == 0 && !q->abandoned && !q->owner_failed);
    REQUIRE(cur->owner_fired == NULL);
    REQUIRE(q->items == 0);
    REQUIRE(r->accept & (1u << rep->kind));
    REQUIRE(!mc_meta_is_error(rep->kind));
    if (rep->kind == MC_META_VA) {
        REQUIRE(rep->value_len <= cur->max_value);
        REQUIRE(inside_buffer(rep->value, rep->value_len));
    }
    if (q->items++ == q->fail_at) {
        q->owner_failed = true;
        cur->owner_fired = q;
        return -1;
    }
    return 0;
}

/* q, joined to the next request's line, completes without its VALUE:
 * the frame at the buffer's head, left for the next request, is the
 * line's END or a VALUE for a key a later request on the line asks. */
static void
passed_on(const struct freq *q)
{
    const struct mc_buf *b = &cur->c->rbuf;
    struct mc_reply rep;
    REQUIRE(mc_parse(mc_buf_head(b), mc_buf_len(b), cur->max_value, &rep)
            > 0);
    if (rep.kind == MC_END) {
        return;
    }
    REQUIRE(rep.kind == MC_VALUE);
    for (int j = q->idx + 1; j < cur->nreqs; j++) {
        const struct freq *o = &cur->reqs[j];
        if (o->line_len == 0 || o->line_no != q->line_no) {
            break;
        }
        const struct mc_wkey *wk = &o->wk[0];
        if (rep.key_len == wk->pre_len + wk->key_len
            && memcmp(rep.key, wk->pre, wk->pre_len) == 0
            && memcmp(rep.key + wk->pre_len, wk->key, wk->key_len) == 0) {
            return;
        }
    }
    REQUIRE(false);             /* for no key of a later request there */
}

static void
on_done(void *owner, struct mc_req *r)
{
    struct freq *q = owner;
    REQUIRE(&q->r == r);
    REQUIRE(q->done == 0);
    q->done = 1;
    REQUIRE(q->idx == cur->next_done);
    cur->next_done++;
    REQUIRE(r->next == NULL);
    REQUIRE(r->state == MC_REQ_DONE || r->state == MC_REQ_FAILED);
    REQUIRE((r->state == MC_REQ_FAILED) == (r->fail.code != 0));
    if (q->owner_failed) {
        REQUIRE(r->fail.code == MC_EOWNER);
    }
    if (q->joined && r->state == MC_REQ_DONE && !q->abandoned
        && q->items == 0) {
        passed_on(q);
    }
    if (r->state == MC_REQ_DONE && !q->abandoned) {
        /* complete: every item owed was taken */
        switch (r->expect) {
        case MC_X_STATUS:
            REQUIRE((size_t)q->items == r->nitems);
            break;
        case MC_X_NUMBER:
        case MC_X_OK:
        case MC_X_VERSION:
            REQUIRE(q->items == 1);
            break;
        case MC_X_META:
            if (r->as == MC_AS_NONE) {
                REQUIRE(q->items == 1);
            }
            else {
                /* every line answered, or (quiet) its MN read */
                REQUIRE((size_t)q->items <= r->nitems);
                REQUIRE(r->quiet || r->cursor == r->nitems);
            }
            break;
        case MC_X_VALUES:
            REQUIRE(r->ends == 0);
            break;
        case MC_X_CONFIG:
            REQUIRE(q->items <= 1);
            break;
        case MC_X_STATS:
            break;
        }
    }
}

/* A text command spoken as meta, request spec, as byte asb. */
static void
set_up_as(struct freq *q, uint8_t spec, uint8_t asb)
{
    static const uint32_t bases[4] = {0, 7, UINT32_MAX - 1, UINT32_MAX};
    static const enum mc_meta_as single[4] = {MC_AS_GET, MC_AS_TOUCH,
                                              MC_AS_DELETE, MC_AS_ARITH};
    unsigned sub = (spec >> 3) & 3;
    size_t n = 1 + (asb & 3);
    q->fail_at = (spec & 0x20) ? (asb >> 6) & 3 : -1;
    q->r.nitems = n;
    q->r.opaque = bases[(asb >> 2) & 3];
    q->r.check_opaque = (asb & 0x20) != 0;
    if (sub == 1) {
        q->r.as = MC_AS_GET;
        q->r.quiet = true;
        q->r.check_opaque = true;
        q->r.with_cas = (asb & 0x10) != 0;
    }
    else if (sub == 2) {
        q->r.as = MC_AS_STORE;
        q->r.soft_errors = (asb & 0x10) != 0;
    }
    else {
        q->r.as = single[spec >> 6];
        q->r.with_cas = q->r.as == MC_AS_GET && (asb & 0x10) != 0;
    }
    q->reversed = sub != 3 && (spec & 0x40) != 0;
    for (size_t k = 0; k < n; k++) {
        q->index[k] = q->reversed ? n - 1 - k : k;
    }
    q->r.index = q->index;
}

static bool
is_as(uint8_t spec)
{
    return (spec & 7) == 5 && ((spec >> 3) & 3) != 0;
}

static void
set_up(struct run *run, int i, uint8_t spec, uint8_t asb)
{
    struct freq *q = &run->reqs[i];
    static const enum mc_expect kinds[8] = {
        MC_X_VALUES, MC_X_VALUES, MC_X_STATUS, MC_X_NUMBER,
        MC_X_OK, MC_X_VERSION, MC_X_STATS, MC_X_VALUES};
    size_t n = 1 + ((spec >> 3) & 3);
    memset(q, 0, sizeof *q);
    q->idx = i;
    q->fail_at = (spec & 0x20) ? (spec >> 6) & 3 : -1;
    bool meta = (spec & 7) == 3 && n > 1;
    bool config = (spec & 7) == 4 && n > 1;
    bool as = is_as(spec);
    mc_req_init(&q->r, meta || as ? MC_X_META
                       : config   ? MC_X_CONFIG
                                  : kinds[spec & 7]);
    q->r.on_item = on_item;
    q->r.on_meta = on_meta;
    q->r.on_done = on_done;
    q->r.owner = q;
    q->fail_pos = -1;
    if (as) {
        set_up_as(q, spec, asb);
        return;
    }
    switch (spec & 7) {
    case 0:
    case 1:
    case 7:
        for (size_t k = 0; k < n; k++) {
            q->wk[k].pre = (spec & 7) == 1 ? "p:" : "";
            q->wk[k].pre_len = (spec & 7) == 1 ? 2 : 0;
            q->wk[k].key = key_names[k];
            q->wk[k].key_len = 1;
        }
        q->r.keys = (const char *)q->wk;
        q->r.key_stride = sizeof(struct mc_wkey);
        q->r.nitems = n;
        q->r.with_cas = (spec & 7) == 1;
        q->r.ends = (spec & 7) == 7 ? 2 : 1;
        if (n == 1 && (spec & 7) != 7) {
            q->fail_at = (spec & 0x20) ? 0 : -1;
        }
        if (n == 1 && (spec & 7) != 7 && (spec & 0x40)) {
            /* a one-key get as the bindings queue it */
            q->wk[0].key = key_names[spec >> 7];
            int len = snprintf(q->line, sizeof q->line, "%s %s%s\r\n",
                               q->r.with_cas ? "gets" : "get",
                               q->wk[0].pre, q->wk[0].key);
            REQUIRE(len > 0 && (size_t)len < sizeof q->line);
            q->line_len = (size_t)len;
            q->r.join = q->r.with_cas ? 4 : 3;
        }
        break;
    case 2:
        q->r.accept = 1u << MC_STORED | 1u << MC_NOT_STORED
                      | 1u << MC_EXISTS | 1u << MC_NOT_FOUND
                      | 1u << MC_DELETED | 1u << MC_TOUCHED;
        q->r.soft_errors = (spec & 0x40) != 0;
        q->r.nitems = n;
        if (n > 1) {
            for (size_t k = 0; k < n; k++) {
                q->index[k] = n - 1 - k;   /* the caller's order */
            }
            q->r.index = q->index;
        }
        break;
    case 3:
        if (meta) {
            static const uint32_t accepts[3] = {
                1u << MC_META_VA | 1u << MC_META_HD | 1u << MC_META_EN,
                1u << MC_META_HD | 1u << MC_META_NS | 1u << MC_META_EX
                    | 1u << MC_META_NF,
                1u << MC_META_VA | 1u << MC_META_NF};
            q->r.accept = accepts[n - 2];
        }
        break;
    default:
        break;
    }
}

/* Every request is still waiting or was told it finished, once. */
static void
check_queue(const struct run *run)
{
    const struct mc_conn *c = run->c;
    int in_flight = 0;
    for (const struct mc_req *r = c->head; r != NULL; r = r->next) {
        REQUIRE(in_flight < run->nreqs);
        const struct freq *q = r->owner;
        REQUIRE(q->done == 0 && r->state == MC_REQ_FLIGHT);
        REQUIRE(q->idx == run->next_done + in_flight);
        in_flight++;
        if (r->next == NULL) {
            REQUIRE(c->tail == r);
        }
    }
    REQUIRE((c->head == NULL) == (c->tail == NULL));
    REQUIRE(run->next_done + in_flight == run->nreqs);
    REQUIRE(c->rbuf.start <= c->rbuf.end && c->rbuf.end <= c->rbuf.cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    int nreqs = 1 + (data[0] & 7);
    size_t header = 1 + (size_t)nreqs + 2;
    if (size < header) {
        return 0;
    }
    size_t nas = 0;             /* as bytes after the flags byte */
    for (int i = 0; i < nreqs; i++) {
        nas += is_as(data[1 + i]);
    }
    if (size < header + nas) {
        return 0;
    }
    const uint8_t *as_bytes = data + header;
    header += nas;
    bool fences = (data[0] & 8) != 0;
    size_t max_chunk = max_chunks[(data[0] >> 4) & 7];
    uint8_t ab = data[1 + nreqs];
    uint8_t flags = data[2 + nreqs];
    int abandon_req = (ab & 0x80) ? (ab & 7) : -1;
    size_t abandon_chunk = (ab >> 3) & 15;
    const uint8_t *stream = data + header;
    size_t n = size - header;

    struct run run;
    memset(&run, 0, sizeof run);
    run.nreqs = nreqs;
    run.max_value = (data[0] & 0x80) ? 16 : (size_t)1 << 20;
    struct mc_conn *c = calloc(1, sizeof *c);
    REQUIRE(c != NULL);
    c->fd = -1;
    mc_buf_init(&c->rbuf);
    run.c = c;
    cur = &run;
    if (flags & 1) {
        c->flush_oks = 1;
    }
    static const struct iovec req_bytes = {(void *)"x\r\n", 3};
    if (flags & 2) {
        REQUIRE(mc_conn_queue(c, NULL, &req_bytes, 1, true) == 0);
        REQUIRE(c->fences == 1);
    }
    /* the bytes the requests queue, each joinable get joined to the line
     * of a joinable get of the same command right before it */
    char want[256];
    size_t wn = 0;
    if (flags & 2) {
        memcpy(want, "x\r\nmn\r\n", 7);
        wn = 7;
    }
    for (int i = 0, a = 0, line = 0; i < nreqs; i++) {
        uint8_t spec = data[1 + i];
        struct freq *q = &run.reqs[i];
        set_up(&run, i, spec, is_as(spec) ? as_bytes[a++] : 0);
        struct iovec iov = req_bytes;
        struct freq *p = i > 0 ? &run.reqs[i - 1] : NULL;
        if (q->line_len > 0) {
            iov.iov_base = q->line;
            iov.iov_len = q->line_len;
            bool fence_between = fences && (i - 1) % 2 == 1;
            if (p != NULL && p->line_len > 0 && p->r.join == q->r.join
                && !fence_between) {
                p->joined = true;   /* its CRLF gives way to " <key>\r\n" */
                wn -= 2;
                memcpy(want + wn, q->line + q->r.join,
                       q->line_len - q->r.join);
                wn += q->line_len - q->r.join;
            }
            else {
                line++;
                memcpy(want + wn, q->line, q->line_len);
                wn += q->line_len;
            }
            q->line_no = line;
        }
        else {
            memcpy(want + wn, "x\r\n", 3);
            wn += 3;
        }
        REQUIRE(mc_conn_queue(c, &q->r, &iov, 1, false) == 0);
        if (fences && i % 2 == 1) {
            unsigned before = q->r.fences_after;
            REQUIRE(mc_conn_queue(c, NULL, &req_bytes, 1, true) == 0);
            REQUIRE(q->r.fences_after == before + 1);
            memcpy(want + wn, "x\r\nmn\r\n", 7);
            wn += 7;
        }
    }
    REQUIRE(c->head == &run.reqs[0].r && c->tail == &run.reqs[nreqs - 1].r);
    REQUIRE(!mc_conn_written(c));
    {
        struct mc_out o = mc_conn_out(c);
        size_t k = 0;
        for (int i = 0; i < o.iovcnt; i++) {
            REQUIRE(k + o.iov[i].iov_len <= wn);
            REQUIRE(memcmp(want + k, o.iov[i].iov_base, o.iov[i].iov_len)
                    == 0);
            k += o.iov[i].iov_len;
        }
        REQUIRE(k == wn && o.len == wn);
    }
    for (int i = 0; i < nreqs; i++) {
        const struct freq *q = &run.reqs[i];
        if (q->r.expect == MC_X_VALUES) {
            int ends = q->joined ? 0 : (data[1 + i] & 7) == 7 ? 2 : 1;
            REQUIRE(q->r.ends == ends);
        }
    }
    check_queue(&run);

    uint64_t seed = ((uint64_t)flags << 32) ^ (uint64_t)size ^ 0x9e3779b9u;
    for (size_t i = 0; i < size && i < 64; i++) {
        seed = (seed ^ data[i]) * 0x100000001b3ULL;
    }
    seed |= 1;
    size_t at = 0;
    bool broken = false;
    for (size_t chunk_no = 0; at < n && !broken; chunk_no++) {
        if (chunk_no == abandon_chunk && abandon_req >= 0
            && abandon_req < nreqs && run.reqs[abandon_req].done == 0) {
            mc_req_abandon(&run.reqs[abandon_req].r);
            run.reqs[abandon_req].abandoned = true;
        }
        size_t chunk = 1 + (size_t)(next_rand(&seed) % max_chunk);
        if (chunk > n - at) {
            chunk = n - at;
        }
        exact_append(&c->rbuf, (const char *)stream + at, chunk);
        at += chunk;
        int rc = MC_FEED_OWNER;
        struct freq *last = NULL;  /* its owner failed on its last item */
        for (int round = 0; round <= nreqs + 1 && rc == MC_FEED_OWNER;
             round++) {
            struct mc_fail f;
            memset(&f, 0, sizeof f);
            size_t need = SIZE_MAX;
            rc = mc_conn_feed(c, run.max_value, &need, &f);
            REQUIRE(c->rbuf.start <= c->rbuf.end);
            if (last != NULL) {
                /* its reply was all there: nothing else may read it */
                REQUIRE(last->done == 1);
                last = NULL;
            }
            if (rc == MC_FEED_OWNER) {
                /* at once, with its request still the oldest */
                struct freq *q = run.owner_fired;
                REQUIRE(q != NULL);
                REQUIRE(c->head == &q->r);
                REQUIRE(q->done == 0);
                enum mc_expect x = q->r.expect;
                if (x == MC_X_NUMBER || x == MC_X_OK || x == MC_X_VERSION
                    || (x == MC_X_META && q->r.as == MC_AS_NONE)
                    || (x == MC_X_META && !q->r.quiet
                        && q->fail_pos == (int)q->r.nitems - 1)
                    || (x == MC_X_STATUS && (size_t)q->items == q->r.nitems)) {
                    last = q;
                }
                run.owner_fired = NULL;
                continue;
            }
            REQUIRE(run.owner_fired == NULL);
            if (rc == MC_FEED_BROKEN) {
                REQUIRE(f.code != 0);
                mc_conn_fail_all(c, &f);
                REQUIRE(c->head == NULL && c->tail == NULL);
                broken = true;
                break;
            }
            REQUIRE(rc == 0);
            size_t left = mc_buf_len(&c->rbuf);
            /* every complete frame was taken */
            if (left > 0 && c->head != NULL && c->head->expect == MC_X_META
                && (c->fences | c->flush_oks) == 0) {
                struct mc_meta_reply mrep;
                REQUIRE(mc_meta_parse(mc_buf_head(&c->rbuf), left,
                                      run.max_value, &mrep)
                        == MC_NEED_MORE);
            }
            else if (left > 0) {
                struct mc_reply rep;
                ssize_t k = mc_parse(mc_buf_head(&c->rbuf), left,
                                     run.max_value, &rep);
                if (k != MC_NEED_MORE) {
                    /* not a text frame: a meta one owed to a fence (the
                     * status line of a quiet command, mc_owed_meta), not
                     * all there yet */
                    struct mc_meta_reply mrep;
                    REQUIRE(k == MC_EPROTO && c->fences > 0
                            && c->flush_oks == 0);
                    REQUIRE(mc_meta_parse(mc_buf_head(&c->rbuf), left, 0,
                                          &mrep)
                            == MC_NEED_MORE);
                }
            }
            REQUIRE(need == 0 || need > left);
        }
        REQUIRE(rc != MC_FEED_OWNER);
        check_queue(&run);
    }

    if (!broken && c->head == NULL) {
        int owed = mc_conn_drain_owed(c);
        REQUIRE(owed >= -1 && owed <= 1);
        REQUIRE(owed != 1 || (c->fences == 0 && c->flush_oks == 0));
    }
    /* the connection goes: what is still in flight fails, once */
    struct mc_fail gone;
    mc_fail_set(&gone, MC_EEOF);
    mc_conn_fail_all(c, &gone);
    REQUIRE(c->head == NULL && c->tail == NULL);
    for (int i = 0; i < nreqs; i++) {
        REQUIRE(run.reqs[i].done == 1);
    }
    REQUIRE(run.next_done == nreqs);
    mc_conn_close(c);
    cur = NULL;
    return 0;
}
