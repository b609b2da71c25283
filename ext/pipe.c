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
        c->join_at -= c->whead;
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
    c->join_req = NULL;
    for (int i = 0; i < iovcnt; i++) {
        c->wiov[c->wcnt++] = iov[i];
        c->wlen += iov[i].iov_len;
    }
    return 0;
}

/* Joins r, a one-key get ("<cmd> <key>\r\n" in iov, cmd r->join bytes),
 * to the line of the request queued last, when that is a get of the same
 * command whose line ends the bytes queued and is not written yet: the
 * line loses its CRLF and takes " <key>\r\n", so one multi-key line asks
 * both (memcached answers it in order, with one END).  The request before
 * then owes no END (ends 0): its reply ends at a VALUE for its key or at
 * the first frame that is not (mc_values_frame passes that frame on).  Not
 * on a TLS connection (its layer may hold queued bytes already), nor past
 * MC_JOIN_KEYS keys or MC_JOIN_LINE bytes, nor when the command differs
 * (join is only its length).  Returns 1 when joined (r is in flight), 0
 * when not (nothing done), -ENOMEM. */
int
mc_conn_join(struct mc_conn *c, struct mc_req *r, const struct iovec *iov)
{
    struct mc_req *t = c->join_req;
    size_t add = iov->iov_len - r->join;
    if (t != c->tail || t->join != r->join || c->join_at != c->wcnt
        || c->wcnt <= c->whead || c->wiov[c->wcnt - 1].iov_len <= 2
        || c->join_n >= MC_JOIN_KEYS || c->join_len + add - 2 > MC_JOIN_LINE
        || c->tls != NULL
        || memcmp(c->join_cmd, iov->iov_base, r->join) != 0) {
        return 0;
    }
    if (mc_conn_wreserve(c, 1) < 0) {
        return -ENOMEM;
    }
    c->wiov[c->wcnt - 1].iov_len -= 2;  /* its CRLF */
    c->wiov[c->wcnt].iov_base = (char *)iov->iov_base + r->join;
    c->wiov[c->wcnt].iov_len = add;
    c->wcnt++;
    c->wlen += add - 2;
    t->ends = 0;
    unsigned n = c->join_n;
    size_t len = c->join_len + add - 2;
    mc_conn_push(c, r, false);
    c->join_req = r;
    c->join_at = c->wcnt;
    c->join_n = n + 1;
    c->join_len = len;
    return 1;
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

/* A frame owed to a fence that mc_parse does not read: the status line a
 * quiet (noreply) meta command still sends (NS, EX, NF; HD and EN of an mg
 * or ma), skipped like a noreply command's error.  Returns its length,
 * MC_NEED_MORE, or MC_EPROTO. */
ssize_t
mc_owed_meta(const struct mc_conn *c)
{
    struct mc_meta_reply rep;
    if (c->flush_oks > 0 || c->fences == 0) {
        return MC_EPROTO;
    }
    ssize_t n = mc_meta_parse(mc_buf_head(&c->rbuf), mc_buf_len(&c->rbuf), 0,
                              &rep);
    if (n > 0 && (rep.kind == MC_META_HD || rep.kind == MC_META_NS
                  || rep.kind == MC_META_EX || rep.kind == MC_META_NF
                  || rep.kind == MC_META_EN)) {
        return n;
    }
    return n == MC_NEED_MORE ? MC_NEED_MORE : MC_EPROTO;
}

/* A meta error line as the text one, for mc_fail_reply. */
static void
meta_fail_reply(struct mc_fail *f, const struct mc_meta_reply *rep)
{
    struct mc_reply er;
    er.kind = rep->kind == MC_META_ERROR          ? MC_ERROR
              : rep->kind == MC_META_CLIENT_ERROR ? MC_CLIENT_ERROR
                                                  : MC_SERVER_ERROR;
    er.text = rep->text;
    er.text_len = rep->text_len;
    mc_fail_reply(f, &er);
}

/* Gives item at's frame to r's owner: read as the text reply of the
 * command r stands for (on_item), or as it is (on_meta).  Returns 0, 1
 * when the owner failed, -1 when the frame does not answer r (f set). */
static int
meta_deliver(struct mc_req *r, size_t at, const struct mc_meta_reply *rep,
             struct mc_fail *f)
{
    size_t item = r->index != NULL ? r->index[at] : at;
    if (r->as == MC_AS_NONE) {
        if (!(r->accept & (1u << rep->kind))) {
            mc_fail_proto(f, "reply does not fit the command");
            return -1;
        }
        return r->on_meta != NULL && r->on_meta(r->owner, r, rep) < 0;
    }
    struct mc_reply tr;
    int k = mc_meta_as_text(r->as, rep, &tr);
    if (k < 0 || (k > 0 && tr.kind == MC_VALUE && r->with_cas
                  && !tr.has_cas)) {
        mc_fail_proto(f, "reply does not fit the command");
        return -1;
    }
    return k > 0 && r->on_item != NULL
           && r->on_item(r->owner, r, item, &tr) < 0;
}

/* The frame of an MC_X_META request r, the oldest in flight with nothing
 * owed ahead of it.  Returns MC_FEED_TAKEN when the frame was taken (r
 * finished when it was the last of its reply), 0 when more must be
 * received (*need set), MC_FEED_OWNER when r's owner failed on it (the
 * last frame of a reply is left unread: the next call discards it and
 * finishes r), MC_FEED_BROKEN with f set.
 *
 * Item i's frame carries O<opaque + i> when check_opaque (every frame of
 * a quiet request does: the items without an answer send nothing); an
 * error line carries no token: the whole reply of a one-item request,
 * one item's (the one due) with soft_errors, and in a quiet reply the
 * failure of the request, read on to its MN. */
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
    size_t at = r->cursor;
    bool last = !r->quiet && at + 1 >= r->nitems;
    int rc;
    if (mc_meta_is_error(rep.kind)) {
        if (r->quiet || r->nitems == 1) {
            /* in sync: the request fails (a quiet one reads on to MN) */
            if (r->fail.code == 0) {
                meta_fail_reply(&r->fail, &rep);
            }
            r->on_item = NULL;
            r->on_meta = NULL;
            mc_buf_consume(&c->rbuf, (size_t)n);
            if (!r->quiet) {
                mc_finish_head(c, MC_REQ_DONE);
            }
            return MC_FEED_TAKEN;
        }
        if (!r->soft_errors || rep.kind != MC_META_SERVER_ERROR) {
            meta_fail_reply(f, &rep);  /* where the server stands is unknown */
            return MC_FEED_BROKEN;
        }
        struct mc_reply er;
        er.kind = MC_SERVER_ERROR;
        er.text = rep.text;
        er.text_len = rep.text_len;
        size_t item = r->index != NULL ? r->index[at] : at;
        rc = r->on_item != NULL && r->on_item(r->owner, r, item, &er) < 0;
    }
    else if (r->quiet && rep.kind == MC_META_MN) {
        mc_buf_consume(&c->rbuf, (size_t)n);
        mc_finish_head(c, MC_REQ_DONE);
        return MC_FEED_TAKEN;
    }
    else {
        if (r->check_opaque || r->quiet) {
            uint32_t pos = (uint32_t)rep.opaque_num - r->opaque;
            if (!(rep.has & MC_RF_OPAQUE_NUM) || rep.opaque_num > UINT32_MAX
                || (r->quiet ? pos < at || pos >= r->nitems : pos != at)) {
                /* another request's reply (or none of ours): nothing on
                 * this connection can be matched any more */
                mc_fail_proto(f, "the reply's opaque token is not the "
                              "request's");
                return MC_FEED_BROKEN;
            }
            at = pos;
        }
        rc = meta_deliver(r, at, &rep, f);
        if (rc < 0) {
            return MC_FEED_BROKEN;
        }
    }
    if (rc > 0) {
        r->on_item = NULL;      /* the rest of the reply is discarded */
        r->on_meta = NULL;
        mc_fail_set(&r->fail, MC_EOWNER);
        if (last) {
            return MC_FEED_OWNER;  /* read again next time, discarded */
        }
    }
    mc_buf_consume(&c->rbuf, (size_t)n);
    r->cursor = at + 1;
    if (!r->quiet && r->cursor >= r->nitems) {
        mc_finish_head(c, MC_REQ_DONE);
    }
    return rc > 0 ? MC_FEED_OWNER : MC_FEED_TAKEN;
}

void
mc_finish_head(struct mc_conn *c, enum mc_req_state state)
{
    struct mc_req *r = c->head;
    c->head = r->next;
    if (c->head == NULL) {
        c->tail = NULL;
        c->join_req = NULL;     /* r was it: a reply came before its line
                                 * was written (only a server out of step
                                 * sends one) */
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
        if (n == MC_EPROTO) {
            n = mc_owed_meta(c);
            if (n > 0) {
                mc_buf_consume(&c->rbuf, (size_t)n);
                continue;
            }
        }
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
