/* TLS connections (OpenSSL 3) under the same contract as conn.c:
 * non-blocking handshake, send and receive through a socket BIO of our own
 * (MSG_DONTWAIT | MSG_NOSIGNAL, errno kept), session resumption through a
 * server's slot, and deadline-bounded blocking helpers.  The contexts and
 * slots are tls_ctx.c's.  See tls.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tls_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* ------------------------------------------------------------------------ */
/* The socket BIO                                                            */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int
bio_write(BIO *b, const char *buf, int len)
{
    struct mc_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0) {
        return 0;
    }
    ssize_t n = send(t->fd, buf, (size_t)len, MC_SEND_FLAGS);
    if (n >= 0) {
        return (int)n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        t->intr = errno == EINTR;
        BIO_set_retry_write(b);
        return -1;
    }
    t->io_errno = errno;
    return -1;
}

static int
bio_read(BIO *b, char *buf, int len)
{
    struct mc_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0) {
        return 0;
    }
    /* Only the first read of an mc_tls_step with block may wait (bounded
     * by SO_RCVTIMEO); any further read OpenSSL makes for the same record
     * does not, so a server trickling bytes cannot hold the call. */
    int flags = t->block_once ? 0 : MSG_DONTWAIT;
    t->block_once = false;
    ssize_t n = recv(t->fd, buf, (size_t)len, flags);
    if (n > 0) {
        return (int)n;
    }
    if (n == 0) {
        t->eof = true;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        t->intr = errno == EINTR;
        BIO_set_retry_read(b);
        return -1;
    }
    t->io_errno = errno;
    return -1;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct mc_tls *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return t != NULL && t->eof;
    default:
        return 0;
    }
}

static int
bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void
bio_method_init(void)
{
    int index = BIO_get_new_index();
    if (index < 0) {
        return;
    }
    BIO_METHOD *m = BIO_meth_new(index | BIO_TYPE_SOURCE_SINK,
                                 "cmemcache socket");
    if (m == NULL) {
        return;
    }
    if (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read)
        || !BIO_meth_set_ctrl(m, bio_ctrl)
        || !BIO_meth_set_create(m, bio_create)) {
        BIO_meth_free(m);
        return;
    }
    bio_method = m;
}

BIO_METHOD *
mc_tls_bio_method(void)
{
    pthread_once(&bio_once, bio_method_init);
    return bio_method;
}


/* ------------------------------------------------------------------------ */
/* Connections                                                               */

struct mc_tls *
mc_tls_new(struct mc_tls_ctx *ctx, int fd, const char *host, size_t host_len,
           struct mc_tls_session *slot)
{
    const char *name = ctx->server_hostname;
    size_t name_len = name != NULL ? strlen(name) : host_len;
    if (name == NULL) {
        name = host;
    }
    if (name_len >= NAME_LEN || (name_len == 0 && ctx->verify)
        || (name_len > 0 && memchr(name, '\0', name_len) != NULL)) {
        errno = EINVAL;
        return NULL;
    }
    struct mc_tls *t = malloc(sizeof(*t));
    if (t == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    memset(t, 0, offsetof(struct mc_tls, wbuf));
    t->fd = fd;
    t->verify = ctx->verify;
    t->has_cert = ctx->has_cert;
    memcpy(t->name, name, name_len);
    t->name[name_len] = '\0';

    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl_ctx);
    BIO *bio = t->ssl != NULL ? BIO_new(mc_tls_bio_method()) : NULL;
    if (bio == NULL) {
        goto nomem;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio);
    SSL_set_connect_state(t->ssl);
    SSL_set_app_data(t->ssl, t);

    /* An IP literal (an IPv6 one maybe with a %zone, dropped here) is
     * checked against the certificate's IP SANs and never sent as SNI
     * (RFC 6066 allows host names only). */
    char ip[NAME_LEN];
    unsigned char addr[16];
    size_t ip_len = strcspn(t->name, "%");
    memcpy(ip, t->name, ip_len);
    ip[ip_len] = '\0';
    bool is_ip = inet_pton(AF_INET, ip, addr) == 1
                 || inet_pton(AF_INET6, ip, addr) == 1;
    if (t->verify) {
        int ok;
        if (is_ip) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), ip);
        }
        else {
            SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(t->ssl, t->name);
        }
        if (ok != 1) {
            ERR_clear_error();
            SSL_free(t->ssl);
            free(t);
            errno = EINVAL;
            return NULL;
        }
    }
    if (!is_ip && name_len > 0
        && SSL_set_tlsext_host_name(t->ssl, t->name) != 1) {
        ERR_clear_error();
        SSL_free(t->ssl);
        free(t);
        errno = EINVAL;
        return NULL;
    }
    if (slot != NULL) {
        pthread_mutex_lock(&slot->lock);
        slot->refs++;
        if (slot->sess != NULL && !slot->refused
            && SSL_set_session(t->ssl, slot->sess) == 1) {
            t->offered = slot->sess;
            SSL_SESSION_up_ref(t->offered);
        }
        pthread_mutex_unlock(&slot->lock);
        t->slot = slot;
    }
    ERR_clear_error();
    return t;

nomem:
    ERR_clear_error();
    SSL_free(t->ssl);
    free(t);
    errno = ENOMEM;
    return NULL;
}

/* Records that the handshake is complete (explicitly or inside a send or
 * receive). */
static void
note_handshake(struct mc_tls *t)
{
    if (!t->handshake_done && SSL_is_init_finished(t->ssl)) {
        t->handshake_done = true;
        t->resumed = SSL_session_reused(t->ssl) == 1;
    }
}

/* A handshake offering a saved session failed with a TLS error: the server
 * refuses to resume (memcached with ssl_verify_mode and no
 * ssl_session_cache), so the slot offers none any more. */
static void
refuse_session(struct mc_tls *t)
{
    t->resume_failed = true;
    struct mc_tls_session *s = t->slot;
    SSL_SESSION *old = NULL;
    pthread_mutex_lock(&s->lock);
    s->refused = true;
    old = s->sess;
    s->sess = NULL;
    pthread_mutex_unlock(&s->lock);
    if (old != NULL) {
        SSL_SESSION_free(old);
    }
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
add_err(struct mc_tls *t, const char *fmt, ...)
{
    size_t n = strlen(t->err);
    if (n + 1 >= sizeof(t->err)) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err + n, sizeof(t->err) - n, fmt, ap);
    va_end(ap);
}

static void
tls_ssl_error(struct mc_tls *t)
{
    unsigned long code;
    const char *reason = mc_tls_take_reason(&code);
    int lib = ERR_GET_LIB(code), r = ERR_GET_REASON(code);
    snprintf(t->err, sizeof(t->err), "%s", reason);
    if (lib == ERR_LIB_SSL && r == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(t->ssl);
        add_err(t, ": %s", X509_verify_cert_error_string(v));
        if (v == X509_V_ERR_HOSTNAME_MISMATCH
            || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
            add_err(t, " (the certificate is not valid for '%s')", t->name);
        }
    }
    else if (t->cert_requested && !t->has_cert) {
        add_err(t, "%s", ": the server requires a client certificate and "
                         "none is configured (cert_file)");
    }
    else if (lib == ERR_LIB_SSL && r == SSL_R_TLSV1_ALERT_UNKNOWN_CA
             && t->has_cert) {
        add_err(t, "%s", ": the server does not trust the issuer of the "
                         "client certificate");
    }
    if (t->resume_failed) {
        add_err(t, "%s", " (while resuming a saved session; it was dropped "
                         "and the next connection does a full handshake)");
    }
}

/* Turns a failed SSL_* call into a result code, with the reason kept. */
static int
tls_fail(struct mc_tls *t, int rc)
{
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        if (t->intr) {
            t->intr = false;
            return -EINTR;
        }
        return e == SSL_ERROR_WANT_READ ? MC_TLS_WANT_READ : MC_TLS_WANT_WRITE;
    }
    int code;
    unsigned long last = ERR_peek_last_error();
    if (e == SSL_ERROR_ZERO_RETURN) {
        t->clean_eof = true;
        snprintf(t->err, sizeof(t->err), "%s",
                 "connection closed by the server (close_notify)");
        code = MC_EEOF;
    }
    else if (e == SSL_ERROR_SYSCALL && t->io_errno != 0) {
        snprintf(t->err, sizeof(t->err), "%s", strerror(t->io_errno));
        code = -t->io_errno;
    }
    else if (t->eof
             && (e == SSL_ERROR_SYSCALL
                 || (ERR_GET_LIB(last) == ERR_LIB_SSL
                     && ERR_GET_REASON(last)
                            == SSL_R_UNEXPECTED_EOF_WHILE_READING))) {
        snprintf(t->err, sizeof(t->err), "%s",
                 t->handshake_done
                     ? "connection closed by the server without a "
                       "close_notify (unexpected EOF)"
                     : "connection closed by the server during the TLS "
                       "handshake");
        code = MC_EEOF;
    }
    else if (e == SSL_ERROR_SSL) {
        code = MC_ETLS;
        if (t->offered != NULL && !t->handshake_done) {
            refuse_session(t);
        }
        tls_ssl_error(t);
    }
    else {
        snprintf(t->err, sizeof(t->err), "TLS error (SSL_get_error %d)", e);
        code = MC_ETLS;
    }
    if (code != MC_ETLS && t->cert_requested && !t->got_data) {
        /* TLS 1.3: a server rejecting the client's certificate (or its
         * absence) closes right after its alert, and a reset (our request
         * unread) can discard the alert. */
        add_err(t, "%s", t->has_cert
                             ? " (the server asked for a client certificate "
                               "and may have refused cert_file's)"
                             : " (the server asked for a client certificate "
                               "and none is configured: cert_file)");
    }
    ERR_clear_error();
    t->failed = true;
    t->fail_code = code;
    return code;
}

int
mc_tls_handshake(struct mc_tls *t)
{
    if (t->failed) {
        return t->fail_code;
    }
    if (t->handshake_done) {
        return 0;
    }
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        note_handshake(t);
        return 0;
    }
    return tls_fail(t, rc);
}

/* Plans the next record from iov: its bytes (*p, the return value) and
 * whether it ends inside a request (*mid).  A zero-length iovec marks the
 * end of a request, and so does the end of iov.  Rules (memcached before
 * 1.6.39 stalls on a record holding the end of one request and bytes of the
 * next when the first began in an earlier record, or when it does not fit
 * its read buffer whole):
 * - small iovecs are coalesced, up to MC_TLS_RECORD bytes;
 * - a record that continues a request ends where that request ends;
 * - a request that does not fit in what is left of a record starts the
 *   next one, unless it is the record's first: then it spans records;
 * - an iovec of MC_TLS_RECORD bytes or more starting a record is written
 *   from where it is, without a copy. */
static size_t
plan_record(struct mc_tls *t, const struct iovec *iov, int iovcnt,
            const char **p, bool *mid)
{
    bool cont = t->mid_request;
    int i = 0;
    while (i < iovcnt && iov[i].iov_len == 0) {
        cont = false; /* the continued request ended with the last record */
        i++;
    }
    *mid = false;
    if (i == iovcnt) {
        return 0;
    }
    if (iov[i].iov_len >= MC_TLS_RECORD) {
        *p = iov[i].iov_base;
        *mid = !(iov[i].iov_len == MC_TLS_RECORD
                 && (i + 1 == iovcnt || iov[i + 1].iov_len == 0));
        return MC_TLS_RECORD;
    }
    size_t len = 0, committed = 0;
    *p = iov[i].iov_base; /* a record from one iovec needs no copy */
    for (; i < iovcnt; i++) {
        size_t l = iov[i].iov_len;
        if (l == 0) {
            committed = len;
            if (cont) {
                return len; /* the continued request ends here */
            }
            continue;
        }
        size_t take = l < MC_TLS_RECORD - len ? l : MC_TLS_RECORD - len;
        if (len > 0 && *p != t->wbuf) {
            memcpy(t->wbuf, *p, len);
            *p = t->wbuf;
        }
        if (len > 0) {
            memcpy(t->wbuf + len, iov[i].iov_base, take);
        }
        len += take;
        if (len == MC_TLS_RECORD) {
            if (take == l && (i + 1 == iovcnt || iov[i + 1].iov_len == 0)) {
                return len; /* full, exactly at the end of a request */
            }
            if (committed > 0) {
                return committed; /* the unfinished request starts the next */
            }
            *mid = true; /* one request spanning records */
            return len;
        }
    }
    return len;
}

/* The bytes of a record OpenSSL holds after WANT_*, again from iov (which
 * still starts with them). */
static const char *
replan_record(struct mc_tls *t, const struct iovec *iov, int iovcnt,
              size_t len)
{
    int i = 0;
    while (i < iovcnt && iov[i].iov_len == 0) {
        i++;
    }
    if (i < iovcnt && iov[i].iov_len >= len) {
        return iov[i].iov_base;
    }
    size_t have = 0;
    for (; i < iovcnt && have < len; i++) {
        size_t take = iov[i].iov_len < len - have ? iov[i].iov_len
                                                  : len - have;
        if (take > 0) {
            memcpy(t->wbuf + have, iov[i].iov_base, take);
        }
        have += take;
    }
    return have == len ? t->wbuf : NULL;
}

ssize_t
mc_tls_send(struct mc_tls *t, const struct iovec *iov, int iovcnt)
{
    if (t->failed) {
        return t->fail_code;
    }
    if (iovcnt <= 0) {
        return 0;
    }
    const char *p;
    size_t len;
    bool mid;
    if (t->wpend > 0) {
        len = t->wpend;
        mid = t->wpend_mid;
        p = replan_record(t, iov, iovcnt, len);
        if (p == NULL) {
            return -EINVAL; /* iov lost bytes OpenSSL already holds */
        }
    }
    else {
        len = plan_record(t, iov, iovcnt, &p, &mid);
        if (len == 0) {
            return 0;
        }
    }
    ERR_clear_error();
    size_t written = 0;
    int rc = SSL_write_ex(t->ssl, p, len, &written);
    if (rc == 1) {
        t->wpend = 0;
        t->mid_request = written < len || mid;
        note_handshake(t);
        return (ssize_t)written;
    }
    int code = tls_fail(t, rc);
    if (code == MC_TLS_WANT_WRITE || code == MC_TLS_WANT_READ
        || code == -EINTR) {
        t->wpend = len;
        t->wpend_mid = mid;
    }
    return code;
}

void
mc_tls_out_advance(struct mc_out *out, size_t n)
{
    out->len = out->len > n ? out->len - n : 0;
    while (out->iovcnt > 0 && n >= out->iov->iov_len) {
        n -= out->iov->iov_len;
        out->iov++;
        out->iovcnt--;
    }
    if (n > 0) {
        out->iov->iov_base = (char *)out->iov->iov_base + n;
        out->iov->iov_len -= n;
    }
}

ssize_t
mc_tls_recv(struct mc_tls *t, char *buf, size_t cap)
{
    if (t->failed) {
        return t->fail_code;
    }
    if (cap == 0) {
        return -EINVAL;
    }
    ERR_clear_error();
    size_t got = 0;
    int rc = SSL_read_ex(t->ssl, buf, cap, &got);
    if (rc == 1) {
        t->read_wants_write = false;
        t->got_data = true;
        note_handshake(t);
        return (ssize_t)got;
    }
    int code = tls_fail(t, rc);
    t->read_wants_write = code == MC_TLS_WANT_WRITE;
    note_handshake(t);
    return code;
}

size_t
mc_tls_pending(const struct mc_tls *t)
{
    if (t->failed) {
        return 0;
    }
    int n = SSL_pending(t->ssl);
    if (n > 0) {
        return (size_t)n;
    }
    return SSL_has_pending(t->ssl) ? 1 : 0;
}

bool
mc_tls_clean_eof(const struct mc_tls *t)
{
    return t->clean_eof;
}

bool
mc_tls_resumed(const struct mc_tls *t)
{
    return t->resumed;
}

bool
mc_tls_resume_failed(const struct mc_tls *t)
{
    return t->resume_failed;
}

const char *
mc_tls_version(const struct mc_tls *t)
{
    return SSL_get_version(t->ssl);
}

char *
mc_tls_strerror(const struct mc_tls *t, char *buf, size_t len)
{
    if (len > 0) {
        snprintf(buf, len, "%s", t->err);
    }
    return buf;
}

bool
mc_tls_cert_refused(const struct mc_tls *t)
{
    return t->failed && t->cert_requested && !t->got_data;
}

bool
mc_tls_stale(struct mc_tls *t)
{
    if (t->failed || SSL_pending(t->ssl) > 0) {
        return true;
    }
    /* A few rounds at most: each either finds nothing waiting or reads
     * records (session tickets are consumed, anything else is stale). */
    for (int i = 0; i < 4; i++) {
        if (!SSL_has_pending(t->ssl)) {
            struct pollfd p = {.fd = t->fd, .events = POLLIN};
            int rc = poll(&p, 1, 0);
            if (rc == 0) {
                return false;
            }
            if (rc < 0) {
                return errno != EINTR;
            }
        }
        char scratch[64];
        ssize_t n = mc_tls_recv(t, scratch, sizeof(scratch));
        if (n != MC_TLS_WANT_READ) {
            return true;
        }
    }
    return true;
}

void
mc_tls_free(struct mc_tls *t)
{
    if (t == NULL) {
        return;
    }
    t->block_once = false;
    if (t->handshake_done && !t->failed) {
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
    }
    ERR_clear_error();
    SSL_free(t->ssl);
    if (t->offered != NULL) {
        SSL_SESSION_free(t->offered);
    }
    mc_tls_slot_unref(t->slot);
    free(t);
}

void
mc_tls_drop(struct mc_tls *t)
{
    if (t != NULL) {
        t->failed = true;       /* mc_tls_free then sends nothing */
        mc_tls_free(t);
    }
}

/* ------------------------------------------------------------------------ */
/* Blocking helpers                                                          */

int
mc_tls_handshake_by(struct mc_tls *t, int64_t deadline)
{
    for (;;) {
        int rc = mc_tls_handshake(t);
        if (rc != MC_TLS_WANT_READ && rc != MC_TLS_WANT_WRITE) {
            return rc;
        }
        /* Checked on every round, not only by poll's timeout: a server
         * sending one byte at a time keeps poll returning at once. */
        if (mc_now() >= deadline) {
            return -ETIMEDOUT;
        }
        int rev = mc_conn_wait(t->fd,
                               rc == MC_TLS_WANT_READ ? POLLIN : POLLOUT,
                               deadline);
        if (rev < 0) {
            return rev;
        }
    }
}

ssize_t
mc_tls_recv_into(struct mc_tls *t, struct mc_buf *b)
{
    ssize_t n = mc_tls_recv(t, b->data + b->end, b->cap - b->end);
    if (n > 0) {
        b->end += (size_t)n;
    }
    return n;
}

static bool
is_want(ssize_t n)
{
    return n == MC_TLS_WANT_READ || n == MC_TLS_WANT_WRITE;
}

ssize_t
mc_tls_step(struct mc_tls *t, struct mc_out *out, struct mc_buf *b,
            bool want_reply, bool block, int64_t deadline)
{
    short wev = 0; /* what the unfinished write waits for */
    while (out->iovcnt > 0) {
        ssize_t n = mc_tls_send(t, out->iov, out->iovcnt);
        if (n >= 0) {
            /* n == 0: only empty iovecs were left; advancing drops them */
            mc_tls_out_advance(out, (size_t)n);
            continue;
        }
        if (n == MC_TLS_WANT_WRITE) {
            wev = POLLOUT;
            break;
        }
        if (n == MC_TLS_WANT_READ) {
            wev = POLLIN;
            break;
        }
        return n;
    }
    if (!want_reply) {
        if (out->iovcnt == 0) {
            return 0;
        }
        if (mc_now() >= deadline) {
            return -ETIMEDOUT;
        }
        int rev = mc_conn_wait(t->fd, wev, deadline);
        return rev < 0 ? rev : 0;
    }
    if (mc_tls_pending(t) > 0) {
        ssize_t n = mc_tls_recv_into(t, b);
        if (!is_want(n)) {
            return n;
        }
    }
    short rev_want = t->read_wants_write ? POLLOUT : POLLIN;
    if (mc_now() >= deadline) {
        return -ETIMEDOUT;
    }
    if (block && out->iovcnt == 0 && rev_want == POLLIN) {
        t->block_once = true;
        ssize_t n = mc_tls_recv_into(t, b);
        t->block_once = false;
        if (!is_want(n)) {
            return n;
        }
        return mc_now() >= deadline ? -ETIMEDOUT : 0;
    }
    int rev = mc_conn_wait(t->fd, (short)(wev | rev_want), deadline);
    if (rev < 0) {
        return rev;
    }
    if (rev & (POLLERR | POLLHUP | rev_want)) {
        ssize_t n = mc_tls_recv_into(t, b);
        if (!is_want(n)) {
            return n;
        }
    }
    return mc_now() >= deadline ? -ETIMEDOUT : 0;
}

