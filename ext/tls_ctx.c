/* TLS contexts and session slots (OpenSSL 3): the configuration checked
 * and loaded (CA, client certificate and key, versions, ciphers), the
 * callbacks OpenSSL calls, and the slot of a server's resumable session.
 * The connections that use them are tls.c's.  See tls.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void
put_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *
mc_tls_take_reason(unsigned long *code_out)
{
    unsigned long code = ERR_peek_last_error();
    ERR_clear_error();
    if (code_out != NULL) {
        *code_out = code;
    }
    if (code == 0) {
        return "unknown error";
    }
    const char *r = ERR_reason_error_string(code);
    return r != NULL ? r : "unknown error";
}

/* ------------------------------------------------------------------------ */
/* Contexts                                                                  */

struct passwd_state {
    const char *password;
    bool asked;
};

static int
passwd_cb(char *buf, int size, int rwflag, void *userdata)
{
    (void)rwflag;
    struct passwd_state *ps = userdata;
    if (ps == NULL) {
        return -1;
    }
    ps->asked = true;
    if (ps->password == NULL || size <= 0) {
        return -1;
    }
    size_t len = strlen(ps->password);
    if (len > (size_t)size) {
        return -1;
    }
    memcpy(buf, ps->password, len);
    return (int)len;
}

/* Notes when the server asks for a client certificate, for the message of
 * a failure that follows. */
static void
info_cb(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if ((where & SSL_CB_LOOP) && SSL_get_state(ssl) == TLS_ST_CR_CERT_REQ) {
        struct mc_tls *t = SSL_get_app_data(ssl);
        if (t != NULL) {
            t->cert_requested = true;
        }
    }
}

static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct mc_tls *t = SSL_get_app_data(ssl);
    if (t == NULL || t->slot == NULL || !SSL_SESSION_is_resumable(sess)) {
        return 0;
    }
    struct mc_tls_session *s = t->slot;
    pthread_mutex_lock(&s->lock);
    if (s->refused) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    SSL_SESSION *old = s->sess;
    s->sess = sess; /* returning 1 hands us the reference */
    pthread_mutex_unlock(&s->lock);
    if (old != NULL) {
        SSL_SESSION_free(old);
    }
    return 1;
}

/* A file OpenSSL is about to read: say plainly when it cannot be opened. */
static bool
readable(const char *what, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        put_err(err, errlen, "%s '%.200s': %s", what, path, strerror(errno));
        return false;
    }
    close(fd);
    return true;
}

static bool
version_ok(int v)
{
    return v == 0 || v == MC_TLS_V1_2 || v == MC_TLS_V1_3;
}

void
mc_tls_config_init(struct mc_tls_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->verify = true;
}

static bool
load_cert_and_key(SSL_CTX *sc, const struct mc_tls_config *cfg, char *err,
                  size_t errlen)
{
    const char *key = cfg->key_file != NULL ? cfg->key_file : cfg->cert_file;
    if (!readable("cert_file", cfg->cert_file, err, errlen)) {
        return false;
    }
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(sc, cfg->cert_file) != 1) {
        put_err(err, errlen,
                "cert_file '%.200s': no usable PEM certificate (%s)",
                cfg->cert_file, mc_tls_take_reason(NULL));
        return false;
    }
    if (!readable("key_file", key, err, errlen)) {
        return false;
    }
    struct passwd_state ps = {.password = cfg->password, .asked = false};
    SSL_CTX_set_default_passwd_cb(sc, passwd_cb);
    SSL_CTX_set_default_passwd_cb_userdata(sc, &ps);
    ERR_clear_error();
    int ok = SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM);
    SSL_CTX_set_default_passwd_cb_userdata(sc, NULL);
    if (ok != 1) {
        unsigned long code;
        const char *reason = mc_tls_take_reason(&code);
        if (ERR_GET_LIB(code) == ERR_LIB_X509
            && (ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH
                || ERR_GET_REASON(code) == X509_R_KEY_TYPE_MISMATCH)) {
            put_err(err, errlen,
                    "key_file '%.200s' does not match cert_file '%.200s' (%s)",
                    key, cfg->cert_file, reason);
        }
        else if (ps.asked && cfg->password == NULL) {
            put_err(err, errlen,
                    "key_file '%.200s' is encrypted and no password was given",
                    key);
        }
        else if (ps.asked) {
            put_err(err, errlen,
                    "key_file '%.200s': cannot decrypt the private key "
                    "(wrong password?)", key);
        }
        else {
            put_err(err, errlen,
                    "key_file '%.200s': no usable PEM private key (%s)", key,
                    reason);
        }
        return false;
    }
    ERR_clear_error();
    if (SSL_CTX_check_private_key(sc) != 1) {
        put_err(err, errlen,
                "key_file '%.200s' does not match cert_file '%.200s' (%s)",
                key, cfg->cert_file, mc_tls_take_reason(NULL));
        return false;
    }
    return true;
}

struct mc_tls_ctx *
mc_tls_ctx_new(const struct mc_tls_config *cfg, char *err, size_t errlen)
{
    put_err(err, errlen, "%s", "");
    if (!version_ok(cfg->min_version) || !version_ok(cfg->max_version)) {
        put_err(err, errlen, "%s",
                "min_version/max_version: only TLS 1.2 and TLS 1.3");
        return NULL;
    }
    int min = cfg->min_version != 0 ? cfg->min_version : TLS1_2_VERSION;
    if (cfg->max_version != 0 && cfg->max_version < min) {
        put_err(err, errlen, "%s", "max_version is below min_version");
        return NULL;
    }
    if (cfg->key_file != NULL && cfg->cert_file == NULL) {
        put_err(err, errlen, "%s", "key_file is given without cert_file");
        return NULL;
    }
    if (mc_tls_bio_method() == NULL) {
        put_err(err, errlen, "%s", "cannot set up the socket BIO");
        return NULL;
    }
    struct mc_tls_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        put_err(err, errlen, "%s", "out of memory");
        return NULL;
    }
    if (cfg->server_hostname != NULL) {
        size_t len = strlen(cfg->server_hostname);
        if (len == 0 || len >= NAME_LEN) {
            put_err(err, errlen, "%s",
                    "server_hostname must be 1 to 255 bytes");
            free(c);
            return NULL;
        }
        c->server_hostname = strdup(cfg->server_hostname);
        if (c->server_hostname == NULL) {
            put_err(err, errlen, "%s", "out of memory");
            free(c);
            return NULL;
        }
    }
    c->verify = cfg->verify;
    c->has_cert = cfg->cert_file != NULL;

    ERR_clear_error();
    SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
    if (sc == NULL) {
        put_err(err, errlen, "SSL_CTX_new: %s", mc_tls_take_reason(NULL));
        goto fail;
    }
    c->ssl_ctx = sc;
    if (SSL_CTX_set_min_proto_version(sc, min) != 1
        || SSL_CTX_set_max_proto_version(sc, cfg->max_version) != 1) {
        put_err(err, errlen, "protocol versions: %s", mc_tls_take_reason(NULL));
        goto fail;
    }
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Partial writes: SSL_write returns once a record is out, so a send
     * reports what it consumed record by record.  A retried write may come
     * from a different buffer holding the same bytes (the coalescing copy). */
    SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE
                             | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read whatever the socket holds, not a record header and then its
     * body: half the receives.  mc_tls_pending covers what is buffered. */
    SSL_CTX_set_read_ahead(sc, 1);
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_CLIENT
                                           | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(sc, new_session_cb);
    SSL_CTX_set_info_callback(sc, info_cb);
    /* Never the default callback, which prompts on the terminal. */
    SSL_CTX_set_default_passwd_cb(sc, passwd_cb);
    SSL_CTX_set_default_passwd_cb_userdata(sc, NULL);
    SSL_CTX_set_verify(sc, cfg->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                       NULL);

    if (cfg->ca_file != NULL) {
        if (!readable("ca_file", cfg->ca_file, err, errlen)) {
            goto fail;
        }
        ERR_clear_error();
        if (SSL_CTX_load_verify_file(sc, cfg->ca_file) != 1) {
            put_err(err, errlen,
                    "ca_file '%.200s': no usable PEM certificate (%s)",
                    cfg->ca_file, mc_tls_take_reason(NULL));
            goto fail;
        }
    }
    else if (cfg->verify) {
        ERR_clear_error();
        if (SSL_CTX_set_default_verify_paths(sc) != 1) {
            put_err(err, errlen, "the system's default CA store: %s",
                    mc_tls_take_reason(NULL));
            goto fail;
        }
    }
    if (cfg->cert_file != NULL && !load_cert_and_key(sc, cfg, err, errlen)) {
        goto fail;
    }
    ERR_clear_error();
    return c;

fail:
    ERR_clear_error();
    mc_tls_ctx_free(c);
    return NULL;
}

void
mc_tls_ctx_free(struct mc_tls_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx->server_hostname);
    free(ctx);
}

/* ------------------------------------------------------------------------ */
/* Session slots                                                             */

struct mc_tls_session *
mc_tls_session_new(void)
{
    struct mc_tls_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    s->refs = 1;
    return s;
}

void
mc_tls_slot_unref(struct mc_tls_session *s)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    unsigned left = --s->refs;
    pthread_mutex_unlock(&s->lock);
    if (left == 0) {
        if (s->sess != NULL) {
            SSL_SESSION_free(s->sess);
        }
        pthread_mutex_destroy(&s->lock);
        free(s);
    }
}

void
mc_tls_session_free(struct mc_tls_session *slot)
{
    mc_tls_slot_unref(slot);
}

void
mc_tls_session_clear(struct mc_tls_session *slot)
{
    pthread_mutex_lock(&slot->lock);
    SSL_SESSION *old = slot->sess;
    slot->sess = NULL;
    slot->refused = false;
    pthread_mutex_unlock(&slot->lock);
    if (old != NULL) {
        SSL_SESSION_free(old);
    }
}

bool
mc_tls_session_saved(struct mc_tls_session *slot)
{
    pthread_mutex_lock(&slot->lock);
    bool saved = slot->sess != NULL && !slot->refused;
    pthread_mutex_unlock(&slot->lock);
    return saved;
}
