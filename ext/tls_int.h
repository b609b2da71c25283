/* What the two halves of the TLS transport share and nobody else sees:
 * the layouts of a context, a session slot and a connection, and the few
 * functions one half calls in the other (tls_ctx.c: contexts and session
 * slots; tls.c: the socket BIO and connections). */
#ifndef CMEMCACHE_TLS_INT_H
#define CMEMCACHE_TLS_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "tls.h"

#define ERR_LEN 320
#define NAME_LEN 256

struct mc_tls_ctx {
    SSL_CTX *ssl_ctx;
    char *server_hostname; /* NULL: each connection's host */
    bool verify;
    bool has_cert;
};

struct mc_tls_session {
    pthread_mutex_t lock;
    SSL_SESSION *sess; /* the session the next connection offers */
    unsigned refs;     /* the owner's, plus one per connection */
    bool refused;      /* a handshake offering a session failed */
};

struct mc_tls {
    SSL *ssl;
    int fd;
    struct mc_tls_session *slot;
    SSL_SESSION *offered;  /* our reference to the session offered */
    bool verify;
    bool has_cert;         /* the context has a client certificate */
    bool cert_requested;   /* the server asked for a client certificate */
    bool got_data;         /* mc_tls_recv returned data */
    bool handshake_done;
    bool resumed;
    bool resume_failed;
    bool failed;           /* fatal: later calls return fail_code */
    int fail_code;
    bool eof;              /* the socket returned end of file */
    bool clean_eof;        /* ... after the server's close_notify */
    bool read_wants_write; /* the last mc_tls_recv returned WANT_WRITE */
    bool mid_request;      /* the last record ended inside a request */
    bool wpend_mid;        /* ... and so does the one OpenSSL holds */
    size_t wpend;          /* bytes of the record OpenSSL holds after WANT */
    bool block_once;       /* the next socket read may block */
    bool intr;             /* a blocking read was interrupted */
    int io_errno;          /* the socket's last errno besides EAGAIN */
    char name[NAME_LEN];   /* the name verified, for messages */
    char err[ERR_LEN];
    char wbuf[MC_TLS_RECORD];
};

/* The BIO method of our socket BIO, made once (NULL when OpenSSL could not
 * make it). */
BIO_METHOD *mc_tls_bio_method(void);

/* The reason of OpenSSL's last queued error (a fixed string: never data
 * read from a file), then the queue emptied. */
const char *mc_tls_take_reason(unsigned long *code_out);

/* Drops one reference to a session slot (freed with the last). */
void mc_tls_slot_unref(struct mc_tls_session *s);

#endif
