/* TLS on one connected socket (OpenSSL 3): a per-client context
 * (certificates, verification, protocol versions), per-server session slots
 * for resumption, a non-blocking handshake/send/recv, and blocking helpers
 * bounded by monotonic deadlines.
 *
 * The contract is conn.c's: every call returns >= 0 or a negative code
 * (-errno, MC_EEOF, or the MC_ETLS / MC_TLS_WANT_* codes below); no function
 * loops on EINTR (the caller checks for signals and calls again against the
 * same deadline); no Python.h here, so the caller may release the GIL around
 * every call.  All socket I/O passes MSG_DONTWAIT (and MSG_NOSIGNAL), so a
 * socket in blocking mode never blocks a call, except the one receive that
 * mc_tls_step's block argument asks for.  The fd stays the caller's: close
 * it after mc_tls_free.
 *
 * Thread safety: a context and a session slot may be shared by connections
 * used from different threads at once; one connection is used by one thread
 * at a time. */
#ifndef CMEMCACHE_TLS_H
#define CMEMCACHE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "buf.h"
#include "conn.h"

/* Codes beyond -errno and MC_EEOF (conn.h, which also defines MC_ETLS,
 * a TLS failure: see mc_tls_strerror), negative like -errno and distinct
 * from every other MC_E* code. */
#define MC_TLS_WANT_READ (-10101)  /* call again once fd is readable */
#define MC_TLS_WANT_WRITE (-10102) /* call again once fd is writable */

/* Protocol versions for mc_tls_config.min_version / max_version. */
#define MC_TLS_V1_2 0x0303
#define MC_TLS_V1_3 0x0304

/* The most plaintext in one TLS record; mc_tls_send coalesces small iovecs
 * up to this size. */
#define MC_TLS_RECORD 16384

/* The settings of a client, in ssl.SSLContext's terms.  Start from
 * mc_tls_config_init (verify on); the strings are read by mc_tls_ctx_new
 * only, never kept. */
struct mc_tls_config {
    const char *ca_file;         /* PEM CA certificates to trust; NULL: the
                                    system's default CA store */
    const char *cert_file;       /* PEM client certificate chain, for mutual
                                    TLS; NULL: none */
    const char *key_file;        /* PEM private key of cert_file; NULL: the
                                    key is in cert_file */
    const char *password;        /* decrypts an encrypted key; NULL: none
                                    (nothing ever prompts on a terminal) */
    const char *server_hostname; /* the name for SNI and verification of every
                                    connection; NULL: each connection's host
                                    (an IP literal is checked against IP SANs
                                    and not sent as SNI) */
    bool verify;                 /* verify the chain and the name (default) */
    int min_version;             /* 0 (TLS 1.2) or MC_TLS_V1_2/3 */
    int max_version;             /* 0 (the highest) or MC_TLS_V1_2/3 */
};

struct mc_tls_ctx;     /* one client's SSL_CTX */
struct mc_tls_session; /* one server's saved session */
struct mc_tls;         /* one connection */

/* Fills cfg with the defaults: no files, verify on, TLS 1.2 and newer. */
void mc_tls_config_init(struct mc_tls_config *cfg);

/* Builds a context from cfg.  Returns NULL with a message in err (naming the
 * file and the reason: not found, not PEM, wrong password, key does not match
 * the certificate, ...; never a file's contents or the password). */
struct mc_tls_ctx *mc_tls_ctx_new(const struct mc_tls_config *cfg, char *err,
                                  size_t errlen);

/* Frees ctx.  Connections made from it may outlive it. */
void mc_tls_ctx_free(struct mc_tls_ctx *ctx);

/* A session slot for one server of one context: a successful handshake
 * (with TLS 1.3: the session tickets the server sends after it, read by
 * mc_tls_recv or mc_tls_step) saves the session into it, and the next
 * mc_tls_new with the same slot offers it for resumption.  Returns NULL
 * when out of memory. */
struct mc_tls_session *mc_tls_session_new(void);

/* Drops the owner's reference; connections still holding the slot keep it
 * alive until they are freed. */
void mc_tls_session_free(struct mc_tls_session *slot);

/* Forgets the saved session, and that the server refused one. */
void mc_tls_session_clear(struct mc_tls_session *slot);

/* True when slot holds a session the next connection will offer. */
bool mc_tls_session_saved(struct mc_tls_session *slot);

/* A TLS client on fd (connected, TCP) to host[0, host_len) (the server
 * string's host: name or IP literal, no brackets), resuming from slot when
 * it holds a session (slot may be NULL: no resumption).  Nothing is sent
 * yet.  Returns NULL with errno ENOMEM, or EINVAL for a host OpenSSL cannot
 * check (or none while verifying). */
struct mc_tls *mc_tls_new(struct mc_tls_ctx *ctx, int fd, const char *host,
                          size_t host_len, struct mc_tls_session *slot);

/* One non-blocking step of the handshake.  Returns 0 once it is complete
 * (at once on later calls), MC_TLS_WANT_READ or MC_TLS_WANT_WRITE, MC_ETLS
 * (verification failed, an alert from the server, ...), MC_EEOF (closed by
 * the server) or -errno.  With TLS 1.3 a server that rejects the client
 * certificate says so after this has returned 0: the first mc_tls_recv
 * fails with MC_ETLS ("tlsv13 alert certificate required"). */
int mc_tls_handshake(struct mc_tls *t);

/* Encrypts and writes one record from iov[0, iovcnt).  Small iovecs are
 * coalesced into one record of up to MC_TLS_RECORD bytes; an iovec of at
 * least that size starting a record is written from where it is.  A
 * zero-length iovec marks the end of a request (so does the end of iov):
 * a request that does not fit in the rest of a record starts the next one,
 * and a request spanning records ends its last one, so no record holds the
 * end of a request begun in an earlier record and bytes of the next
 * (memcached before 1.6.39 stalls on such a record: it reads a value's tail
 * straight from OpenSSL and leaves what follows unseen until more bytes
 * arrive).  Returns the bytes consumed (the caller advances past them, e.g.
 * with mc_tls_out_advance), 0 when iov holds no bytes, MC_TLS_WANT_WRITE /
 * MC_TLS_WANT_READ (nothing consumed: call again with iov starting at the
 * same byte, which may have grown at its end), MC_ETLS, MC_EEOF or -errno
 * (-EPIPE, -ECONNRESET, ...).  Completes the handshake first if it is
 * not. */
ssize_t mc_tls_send(struct mc_tls *t, const struct iovec *iov, int iovcnt);

/* Advances out past n bytes sent (what mc_conn_send does to its mc_out). */
void mc_tls_out_advance(struct mc_out *out, size_t n);

/* Decrypts into buf[0, cap) (cap > 0) the data of at most one record.
 * Returns the bytes (> 0), MC_TLS_WANT_READ (also when only records without
 * data, such as session tickets, were read) or MC_TLS_WANT_WRITE, MC_EEOF
 * (closed: mc_tls_clean_eof tells whether with a close_notify), MC_ETLS or
 * -errno. */
ssize_t mc_tls_recv(struct mc_tls *t, char *buf, size_t cap);

/* mc_tls_recv into b's free tail (which must have room), b's end advanced
 * past what came. */
ssize_t mc_tls_recv_into(struct mc_tls *t, struct mc_buf *b);

/* > 0 when mc_tls_recv can return data without the socket becoming
 * readable (which poll() cannot see): the decrypted bytes buffered, or 1 for
 * records read from the socket but not decrypted yet.  Check it before
 * waiting for input. */
size_t mc_tls_pending(const struct mc_tls *t);

/* After MC_EEOF: true when the server closed with a close_notify, false for
 * a TCP close without one (which could be a truncation). */
bool mc_tls_clean_eof(const struct mc_tls *t);

/* True when the handshake resumed a saved session. */
bool mc_tls_resumed(const struct mc_tls *t);

/* True when the handshake failed while offering a saved session.  The slot
 * then offers none any more (until mc_tls_session_clear), so a new
 * connection does a full handshake: memcached 1.6.18 with ssl_verify_mode >=
 * 1 and without ssl_session_cache fails every resumption this way. */
bool mc_tls_resume_failed(const struct mc_tls *t);

/* The negotiated protocol, e.g. "TLSv1.3". */
const char *mc_tls_version(const struct mc_tls *t);

/* The reason of the last failure (MC_ETLS, MC_EEOF or -errno) as text,
 * e.g. "certificate verify failed: unable to get local issuer certificate",
 * with a hint where one helps (a reset after the server asked for a client
 * certificate says so); "" when there was none.  Returns buf. */
char *mc_tls_strerror(const struct mc_tls *t, char *buf, size_t len);

/* True when t failed after the server asked for a client certificate and
 * before any data came: a reset or close then most likely is the server
 * refusing the certificate (or its absence), whose alert the reset
 * discarded; mc_tls_strerror says so. */
bool mc_tls_cert_refused(const struct mc_tls *t);

/* True when an idle connection cannot take a new request: data, a close or
 * an error is waiting.  Records without data (TLS 1.3 session tickets not
 * read yet) are consumed and do not count. */
bool mc_tls_stale(struct mc_tls *t);

/* Frees t without blocking: a close_notify is attempted once (without
 * waiting) after a completed handshake and no failure.  Leaves fd open. */
void mc_tls_free(struct mc_tls *t);

/* Frees t sending nothing at all (no close_notify): for a connection whose
 * socket another process shares (a child after fork() dropping its
 * parent's connections), or whose fd is already closed.  Leaves fd open. */
void mc_tls_drop(struct mc_tls *t);

/* Completes the handshake before deadline (mc_now's clock).  Returns 0, a
 * failure as mc_tls_handshake, -ETIMEDOUT (also when the server keeps
 * sending bytes that never complete it) or -EINTR (call again with the same
 * deadline). */
int mc_tls_handshake_by(struct mc_tls *t, int64_t deadline);

/* One step of a request, as mc_conn_step: writes what is left of out
 * (record by record as mc_tls_send, zero-length iovecs marking request
 * ends, while the socket takes them); then, with want_reply,
 * returns buffered data at once (mc_tls_pending), or waits until input
 * arrives (or, with some of out left, until the socket takes more) and
 * decrypts once into b's free tail (which must have room).  With block and
 * all of out written, the wait is one blocking receive bounded by the
 * socket's SO_RCVTIMEO (mc_conn_set_blocking; the first wait of a request).
 * Without want_reply it never reads: it returns 0 once out is written and
 * otherwise waits until the socket can take more.  Returns the bytes
 * received (> 0), 0 when it only wrote or waited (never once deadline has
 * passed: then -ETIMEDOUT, so a caller looping on 0 is bounded by deadline
 * whatever the server sends), MC_EEOF, MC_ETLS or -errno (-ETIMEDOUT,
 * -EINTR, ...). */
ssize_t mc_tls_step(struct mc_tls *t, struct mc_out *out, struct mc_buf *b,
                    bool want_reply, bool block, int64_t deadline);

#endif
