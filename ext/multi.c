/* Multi-key calls over the servers: grouping, each server's request, and
 * what each server ended with (see multi.h). */
#include "multi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MC_GET_CHUNK 16384     /* bytes of keys per get/gets line */
#define MC_GAT_CHUNK 1900      /* gat lines must stay under 2048 bytes */

static const char crlf[] = "\r\n";

/* One block for the call's arrays: items, parts, and the index arrays. */
int
mc_multi_init(struct mc_multi *m, struct mc_engine *e,
              enum mc_multi_kind kind, size_t n)
{
    memset(m, 0, sizeof(*m));
    m->e = e;
    m->kind = kind;
    m->cmd = kind == MC_MULTI_SET ? "set" : "get";
    size_t ns = e->nservers;
    size_t size = sizeof(struct mc_item) * (n ? n : 1)
                  + sizeof(struct mc_part) * ns
                  + sizeof(size_t) * (n + 1 + 2 * ns);
    char *block = malloc(size);
    if (block == NULL) {
        return -ENOMEM;
    }
    m->items = (struct mc_item *)(void *)block;
    m->parts = (struct mc_part *)(void *)(block + sizeof(struct mc_item)
                                                      * (n ? n : 1));
    m->order = (size_t *)(void *)(m->parts + ns);
    m->count = m->order + n + 1;
    m->slot = m->count + ns;
    return 0;
}

void
mc_multi_free(struct mc_multi *m)
{
    for (size_t i = 0; m->parts != NULL && i < m->nparts; i++) {
        struct mc_part *p = &m->parts[i];
        if (p->conn != NULL) {
            mc_conn_close(p->conn);
            p->conn = NULL;
        }
        mc_buf_free(&p->text);
        free(p->iov);
    }
    free(m->items);
    m->items = NULL;
    m->order = NULL;
    m->parts = NULL;
    m->count = m->slot = NULL;
    m->nparts = 0;
}

int
mc_multi_place(struct mc_multi *m)
{
    struct mc_engine *e = m->e;
    size_t ns = e->nservers;
    memset(m->count, 0, sizeof(size_t) * ns);
    m->nparts = 0;
    for (size_t i = 0; i < m->nitems; i++) {
        struct mc_item *it = &m->items[i];
        it->place.wk = &it->wk;
        it->server = mc_engine_pick(e, &it->place);
        if (it->server >= 0) {
            m->count[it->server]++;
        }
    }
    size_t off = 0;
    for (size_t s = 0; s < ns; s++) {
        if (m->count[s] == 0) {
            continue;
        }
        struct mc_part *p = &m->parts[m->nparts];
        m->slot[s] = m->nparts++;
        p->srv = &e->servers[s];
        p->conn = NULL;
        p->items = m->order + off;
        p->nitems = 0;
        off += m->count[s];
        mc_buf_init(&p->text);
        p->iov = NULL;
        p->niov = 0;
        p->fenced = m->noreply && e->cfg.fence;
        p->done = false;
        p->need = 0;
        p->fail.code = 0;
        p->req.cursor = 0;      /* answered nothing until it is sent */
        p->req.state = MC_REQ_FLIGHT;
        p->req.fail.code = 0;
    }
    for (size_t i = 0; i < m->nitems; i++) {
        if (m->items[i].server >= 0) {
            struct mc_part *p = &m->parts[m->slot[m->items[i].server]];
            p->items[p->nitems++] = i;
        }
    }
    return 0;
}

void
mc_multi_part_failed(struct mc_multi *m, struct mc_part *p)
{
    p->done = true;
    if (p->fail.code != MC_EDEAD && m->connect_srv == NULL) {
        m->connect_fail = p->fail;
        m->connect_srv = p->srv;
    }
}

bool
mc_multi_replace(const struct mc_multi *m, bool last)
{
    if (last || m->e->cfg.failover == MC_FAILOVER_NONE) {
        return false;
    }
    for (size_t i = 0; i < m->nparts; i++) {
        const struct mc_part *p = &m->parts[i];
        if (p->conn == NULL && mc_server_dead(p->srv)) {
            return true;
        }
    }
    return false;
}

static inline int
text_put(struct mc_buf *b, const char *p, size_t n)
{
    if (b->cap - b->end < n && mc_buf_reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->end, p, n);
    b->end += n;
    return 0;
}

static inline int
text_key(struct mc_buf *b, const struct mc_wkey *wk)
{
    return (wk->pre_len > 0 ? text_put(b, wk->pre, wk->pre_len) : 0)
           | text_put(b, wk->key, wk->key_len);
}

/* Retrieval lines ("get k1 k2 ...", split to stay within the servers' line
 * limits) or one delete line per key. */
static int
build_lines(struct mc_multi *m, struct mc_part *p)
{
    struct mc_buf *b = &p->text;
    if (m->kind == MC_MULTI_DELETE) {
        for (size_t i = 0; i < p->nitems; i++) {
            struct mc_item *it = &m->items[p->items[i]];
            if (text_put(b, "delete ", 7) < 0 || text_key(b, &it->wk) < 0
                || (m->noreply && text_put(b, " noreply", 8) < 0)
                || text_put(b, crlf, 2) < 0) {
                return -1;
            }
        }
        return 0;
    }
    size_t limit = m->touch ? MC_GAT_CHUNK : MC_GET_CHUNK;
    size_t line = 0;
    p->req.ends = 0;
    for (size_t i = 0; i < p->nitems; i++) {
        struct mc_item *it = &m->items[p->items[i]];
        size_t klen = it->wk.pre_len + it->wk.key_len;
        if (line > 0 && line + klen + 1 > limit) {
            if (text_put(b, crlf, 2) < 0) {
                return -1;
            }
            line = 0;
        }
        if (line == 0) {
            char hdr[64];
            size_t n = (size_t)snprintf(hdr, sizeof(hdr), "%s", m->cmd);
            if (m->touch) {
                hdr[n++] = ' ';
                n += mc_fmt_i64(hdr + n, m->exptime);
            }
            if (text_put(b, hdr, n) < 0) {
                return -1;
            }
            line = n;
            p->req.ends++;
        }
        if (text_put(b, " ", 1) < 0 || text_key(b, &it->wk) < 0) {
            return -1;
        }
        line += klen + 1;
    }
    return text_put(b, crlf, 2);
}

/* set: header, value, CRLF + next header, value, ..., CRLF.  The header
 * lines are written in place ("set <key> <flags> <exptime> <bytes>
 * [noreply]\r\n", as mc_fmt_store writes them) in room reserved first; the
 * exptime is the same for every key.  On a TLS connection a zero-length
 * iovec after each CRLF ending a value marks the end of that command (see
 * mc_conn_queue). */
static int
build_sets(struct mc_multi *m, struct mc_part *p)
{
    struct mc_buf *b = &p->text;
    size_t *offs = malloc(sizeof(size_t) * (p->nitems + 1));
    bool marks = p->conn != NULL && p->conn->tls != NULL;
    p->iov = malloc(sizeof(struct iovec) * ((marks ? 4 : 2) * p->nitems + 1));
    if (offs == NULL || p->iov == NULL) {
        free(offs);
        return -1;
    }
    char exp_text[24];
    size_t exp_len = mc_fmt_i64(exp_text, m->exptime);
    for (size_t i = 0; i < p->nitems; i++) {
        struct mc_item *it = &m->items[p->items[i]];
        offs[i] = b->end;
        char *w = b->data + b->end;
        if (i > 0) {
            *w++ = '\r';
            *w++ = '\n';
        }
        memcpy(w, "set ", 4);
        w += 4;
        memcpy(w, it->wk.pre, it->wk.pre_len);
        w += it->wk.pre_len;
        memcpy(w, it->wk.key, it->wk.key_len);
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
    if (text_put(b, crlf, 2) < 0) {
        free(offs);
        return -1;
    }
    int k = 0;
    for (size_t i = 0; i < p->nitems; i++) {
        struct mc_item *it = &m->items[p->items[i]];
        size_t at = offs[i];
        if (marks && i > 0) {
            p->iov[k].iov_base = b->data + at;  /* the CRLF ending a value */
            p->iov[k].iov_len = 2;
            p->iov[k + 1].iov_base = NULL;
            p->iov[k + 1].iov_len = 0;
            k += 2;
            at += 2;
        }
        p->iov[k].iov_base = b->data + at;
        p->iov[k].iov_len = offs[i + 1] - at;
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
    free(offs);
    return 0;
}

/* protocol="meta": one mg (with q, then an mn ending the request), ms or
 * md line per key, each with O<opaque + its place in the part>; a set's
 * lines each followed by its value and CRLF (and on a TLS connection a
 * zero-length iovec, as build_sets).  noreply: q on every line (the
 * fence's MN follows). */
static int
build_meta(struct mc_multi *m, struct mc_part *p)
{
    static const enum mc_meta_cmd cmds[] = {
        [MC_MULTI_GET] = MC_META_GET, [MC_MULTI_SET] = MC_META_SET,
        [MC_MULTI_DELETE] = MC_META_DELETE};
    struct mc_buf *b = &p->text;
    bool set = m->kind == MC_MULTI_SET;
    bool marks = set && p->conn != NULL && p->conn->tls != NULL;
    size_t *offs = malloc(sizeof(size_t) * (p->nitems + 1));
    p->iov = malloc(sizeof(struct iovec)
                    * (set ? (marks ? 4 : 3) * p->nitems : 1));
    if (offs == NULL || p->iov == NULL) {
        free(offs);
        return -1;
    }
    for (size_t i = 0; i < p->nitems; i++) {
        const struct mc_item *it = &m->items[p->items[i]];
        struct mc_meta_request mr = {.cmd = cmds[m->kind]};
        char key[MC_MAX_KEY];
        mr.key = it->wk.key;
        mr.key_len = it->wk.pre_len + it->wk.key_len;
        if (it->wk.pre_len > 0) {
            memcpy(key, it->wk.pre, it->wk.pre_len);
            memcpy(key + it->wk.pre_len, it->wk.key, it->wk.key_len);
            mr.key = key;
        }
        mr.flags = m->noreply ? MC_MF_QUIET : MC_MF_OPAQUE;
        if (m->e->cfg.binary_keys
            && mc_key_check(mr.key, mr.key_len) != MC_KEY_OK) {
            mr.flags |= MC_MF_BASE64;
        }
        mr.opaque = m->opaque + (uint32_t)i;
        mr.ttl = (int32_t)m->exptime;
        if (m->kind == MC_MULTI_GET) {
            mr.flags = (mr.flags & MC_MF_BASE64) | MC_MF_QUIET | MC_MF_OPAQUE
                       | MC_MF_VALUE
                       | MC_MF_RET_FLAGS | (m->with_cas ? MC_MF_RET_CAS : 0)
                       | (m->touch ? MC_MF_TTL : 0);
        }
        else if (set) {
            mr.value_len = it->val_len;
            mr.client_flags = it->flags;
            mr.flags |= (it->flags ? MC_MF_CLIENT_FLAGS : 0)
                        | (m->exptime ? MC_MF_TTL : 0);
        }
        if (mc_buf_reserve(b, MC_META_MAX_REQUEST) < 0) {
            free(offs);
            return -1;
        }
        offs[i] = b->end;
        ssize_t n = mc_meta_fmt(b->data + b->end, &mr);
        if (n < 0) {            /* keys and values were checked: unreachable */
            free(offs);
            return -1;
        }
        b->end += (size_t)n;
    }
    offs[p->nitems] = b->end;
    if ((m->kind == MC_MULTI_GET && text_put(b, "mn\r\n", 4) < 0)
        || (set && text_put(b, crlf, 2) < 0)) {
        free(offs);
        return -1;
    }
    if (!set) {
        p->iov[0].iov_base = b->data;
        p->iov[0].iov_len = b->end;
        p->niov = 1;
        free(offs);
        return 0;
    }
    int k = 0;
    for (size_t i = 0; i < p->nitems; i++) {
        const struct mc_item *it = &m->items[p->items[i]];
        p->iov[k].iov_base = b->data + offs[i];
        p->iov[k++].iov_len = offs[i + 1] - offs[i];
        if (it->val_len > 0) {
            p->iov[k].iov_base = (void *)it->val;
            p->iov[k++].iov_len = it->val_len;
        }
        p->iov[k].iov_base = b->data + offs[p->nitems];
        p->iov[k++].iov_len = 2;
        if (marks && i + 1 < p->nitems) {
            p->iov[k].iov_base = NULL;
            p->iov[k++].iov_len = 0;
        }
    }
    p->niov = k;
    free(offs);
    return 0;
}

/* Writes one server's request text and its iovecs. */
static int
build_part(struct mc_multi *m, struct mc_part *p)
{
    size_t room = 64;
    for (size_t i = 0; i < p->nitems; i++) {
        const struct mc_item *it = &m->items[p->items[i]];
        room += it->wk.pre_len + it->wk.key_len + 80;
    }
    if (mc_buf_reserve(&p->text, room) < 0) {  /* usually the only one */
        return -1;
    }
    if (m->e->cfg.meta) {
        return build_meta(m, p);
    }
    if (m->kind == MC_MULTI_SET) {
        return build_sets(m, p);
    }
    if (build_lines(m, p) < 0) {
        return -1;
    }
    p->iov = malloc(sizeof(struct iovec));
    if (p->iov == NULL) {
        return -1;
    }
    p->iov[0].iov_base = p->text.data + p->text.start;
    p->iov[0].iov_len = mc_buf_len(&p->text);
    p->niov = 1;
    return 0;
}

/* Sets up part p's request and builds its bytes. */
static int
build_req(struct mc_multi *m, struct mc_part *p)
{
    struct mc_req *r = &p->req;
    if (m->e->cfg.meta) {
        static const enum mc_meta_as as[] = {[MC_MULTI_GET] = MC_AS_GET,
                                             [MC_MULTI_SET] = MC_AS_STORE,
                                             [MC_MULTI_DELETE] = MC_AS_DELETE};
        mc_req_init(r, MC_X_META);
        r->as = as[m->kind];
        r->quiet = m->kind == MC_MULTI_GET;
        r->with_cas = m->with_cas;
        r->soft_errors = m->kind == MC_MULTI_SET;
        r->check_opaque = true;
        r->opaque = m->opaque;
    }
    else if (m->kind == MC_MULTI_GET) {
        mc_req_init(r, MC_X_VALUES);
        r->with_cas = m->with_cas;
        r->keys = (const char *)&m->items[0].wk;
        r->key_stride = sizeof(struct mc_item);
    }
    else {
        mc_req_init(r, MC_X_STATUS);
        if (m->kind == MC_MULTI_SET) {
            r->accept = 1u << MC_STORED | 1u << MC_NOT_STORED
                        | 1u << MC_EXISTS | 1u << MC_NOT_FOUND;
            r->soft_errors = true;
        }
        else {
            r->accept = 1u << MC_DELETED | 1u << MC_NOT_FOUND;
        }
    }
    r->index = p->items;
    r->nitems = p->nitems;
    r->on_item = m->on_item;
    r->owner = m->owner;
    return build_part(m, p) < 0 ? -ENOMEM : 0;
}

int
mc_multi_build(struct mc_multi *m)
{
    for (size_t i = 0; i < m->nparts; i++) {
        if (build_req(m, &m->parts[i]) < 0) {
            return -ENOMEM;
        }
    }
    return 0;
}

int
mc_multi_queue(struct mc_multi *m)
{
    for (size_t i = 0; i < m->nparts; i++) {
        struct mc_part *p = &m->parts[i];
        if (p->conn == NULL) {
            continue;
        }
        if (build_req(m, p) < 0
            || mc_conn_queue(p->conn, m->noreply ? NULL : &p->req, p->iov,
                             p->niov, p->fenced)
                   < 0) {
            return -ENOMEM;
        }
    }
    return 0;
}

bool
mc_multi_part_check(struct mc_part *p)
{
    if (p->done || p->req.state == MC_REQ_FLIGHT) {
        return false;
    }
    p->done = true;
    if (p->req.state == MC_REQ_FAILED) {
        p->fail = p->req.fail;
    }
    return true;
}
