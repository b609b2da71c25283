/* Requests in flight on a connection: queueing their bytes, matching each
 * reply frame to the request it answers (see pipe.h). */
#include "pipe.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const struct iovec mc_fence_iov = {(void *)"mn\r\n", 4};

int
mc_conn_wreserve_slow(struct mc_conn *c, int n)
{
    if (c->whead > 0) {
        /* the written ones are gone: move the rest to the front */
        memmove(c->wiov, c->wiov + c->whead,
                sizeof(struct iovec) * (size_t)(c->wcnt - c->whead));
        c->wcnt -= c->whead;
        c->whead = 0;
        if (c->wcap - c->wcnt >= n) {
            return 0;
        }
    }
    int cap = c->wcap ? c->wcap : 8;
    while (cap - c->wcnt < n) {
        if (cap > INT32_MAX / 2) {
            return -ENOMEM;
        }
        cap *= 2;
    }
    struct iovec *w = realloc(c->wiov, sizeof(struct iovec) * (size_t)cap);
    if (w == NULL) {
        return -ENOMEM;
    }
    c->wiov = w;
    c->wcap = cap;
    return 0;
}

int
mc_conn_queue_bytes(struct mc_conn *c, const struct iovec *iov, int iovcnt)
{
    if (mc_conn_wreserve(c, iovcnt) < 0) {
        return -ENOMEM;
    }
    for (int i = 0; i < iovcnt; i++) {
        c->wiov[c->wcnt++] = iov[i];
        c->wlen += iov[i].iov_len;
    }
    return 0;
}

/* ---- the rare paths of mc_conn_feed ------------------------------------ */

enum mc_frame_rc
mc_frame_broken(struct mc_fail *f, const char *why)
{
    mc_fail_proto(f, why);
    return MC_F_BROKEN;
}

void
mc_feed_unparsable(const struct mc_conn *c, struct mc_fail *f)
{
    struct mc_reply rep;
    if (mc_parse(mc_buf_head(&c->rbuf), mc_buf_len(&c->rbuf), SIZE_MAX,
                 &rep) != MC_EPROTO) {
        mc_fail_set(f, MC_EVALUE);  /* well formed, but too large */
    }
    else {
        mc_fail_proto(f, "unexpected bytes");
    }
}

int
mc_owed_frame(struct mc_conn *c, const struct mc_reply *rep, struct mc_fail *f)
{
    if (c->flush_oks > 0) {
        if (rep->kind != MC_OK) {
            mc_fail_proto(f, "unexpected reply to flush_all");
            return -1;
        }
        c->flush_oks--;
        return 1;
    }
    if (c->fences > 0) {
        if (rep->kind == MC_MN) {
            c->fences--;
            return 1;
        }
        if (mc_is_error(rep->kind)) {
            return 1;           /* a noreply command's error: skipped */
        }
        mc_fail_proto(f, "unexpected reply after noreply");
        return -1;
    }
    return 0;
}

/* The frame of an MC_X_META request r, the oldest in flight with nothing
 * owed ahead of it.  Returns MC_FEED_TAKEN when the frame was taken (r
 * finished), 0
 * when more must be received (*need set), MC_FEED_OWNER when r's owner
 * failed on it (the frame is left unread: the next call discards it and
 * finishes r), MC_FEED_BROKEN with f set. */
int
mc_meta_feed(struct mc_conn *c, struct mc_req *r, size_t max_value,
             size_t *need, struct mc_fail *f)
{
    struct mc_meta_reply rep;
    ssize_t n = mc_meta_parse(mc_buf_head(&c->rbuf), mc_buf_len(&c->rbuf),
                              max_value, &rep);
    if (n < 0) {
        if (n == MC_NEED_MORE) {
            *need = rep.need;
            return 0;
        }
        if (mc_meta_parse(mc_buf_head(&c->rbuf), mc_buf_len(&c->rbuf),
                          SIZE_MAX, &rep) != MC_EPROTO) {
            mc_fail_set(f, MC_EVALUE);  /* well formed, but too large */
        }
        else {
            mc_fail_proto(f, "unexpected bytes");
        }
        return MC_FEED_BROKEN;
    }
    if (mc_meta_is_error(rep.kind)) {
        /* the error line is the whole reply: in sync */
        struct mc_reply er;
        er.kind = rep.kind == MC_META_ERROR          ? MC_ERROR
                  : rep.kind == MC_META_CLIENT_ERROR ? MC_CLIENT_ERROR
                                                     : MC_SERVER_ERROR;
        er.text = rep.text;
        er.text_len = rep.text_len;
        mc_fail_reply(&r->fail, &er);
    }
    else if (!(r->accept & (1u << rep.kind))) {
        mc_fail_proto(f, "reply does not fit the command");
        return MC_FEED_BROKEN;
    }
    else if (r->check_opaque && (!(rep.has & MC_RF_OPAQUE_NUM)
                                 || rep.opaque_num != r->opaque)) {
        /* another request's reply (or none of ours): nothing on this
         * connection can be matched any more */
        mc_fail_proto(f, "the reply's opaque token is not the request's");
        return MC_FEED_BROKEN;
    }
    else if (r->on_meta != NULL && r->on_meta(r->owner, r, &rep) < 0) {
        r->on_meta = NULL;      /* read again next time, and discarded */
        mc_fail_set(&r->fail, MC_EOWNER);
        return MC_FEED_OWNER;
    }
    mc_buf_consume(&c->rbuf, (size_t)n);
    mc_finish_head(c, MC_REQ_DONE);
    return MC_FEED_TAKEN;
}

void
mc_finish_head(struct mc_conn *c, enum mc_req_state state)
{
    struct mc_req *r = c->head;
    c->head = r->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    c->fences += r->fences_after;
    r->next = NULL;
    r->state = r->fail.code != 0 ? MC_REQ_FAILED : state;
    if (r->on_done != NULL) {
        r->on_done(r->owner, r);
    }
}

void
mc_conn_fail_all(struct mc_conn *c, const struct mc_fail *f)
{
    while (c->head != NULL) {
        struct mc_req *r = c->head;
        if (r->fail.code == 0) {
            r->fail = *f;
        }
        mc_finish_head(c, MC_REQ_FAILED);
    }
}

int
mc_conn_drain_owed(struct mc_conn *c)
{
    struct mc_reply rep;
    struct mc_fail f;
    while (c->fences > 0 || c->flush_oks > 0) {
        if (mc_buf_len(&c->rbuf) == 0) {
            return 0;
        }
        ssize_t n = mc_parse(mc_buf_head(&c->rbuf), mc_buf_len(&c->rbuf), 0,
                             &rep);
        if (n == MC_NEED_MORE) {
            return 0;
        }
        if (n < 0 || mc_owed_frame(c, &rep, &f) < 0) {
            return -1;
        }
        mc_buf_consume(&c->rbuf, (size_t)n);
    }
    return 1;
}
