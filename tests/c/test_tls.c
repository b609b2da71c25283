/* C tests of ext/tls.c against real `memcached -Z` servers on free loopback
 * ports, with certificates generated here at start-up (a CA, a server
 * certificate for localhost/127.0.0.1/::1, one for another name, a client
 * certificate, its key encrypted, a second CA and a client certificate it
 * signed), plus a few forked servers for what memcached never does (a
 * handshake or a reply trickled one byte at a time, a close without
 * close_notify, echoing the SNI received).
 *
 * Usage: test_tls (MEMCACHED names the binary; default memcached on PATH).
 * The last line printed is "N passed, N failed"; the exit status is non-zero
 * when a check failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "check.h"
#include "conn.h"
#include "proto.h"
#include "tls.h"

#define SEC 1000000000LL
#define MS 1000000LL

/* ------------------------------------------------------------------------ */
/* Certificates                                                              */

static char dir[64];
static char created[40][128];
static int n_created;

/* A path in the test directory, remembered for removal at the end. */
static const char *
path(const char *name)
{
    for (int i = 0; i < n_created; i++) {
        const char *base = strrchr(created[i], '/') + 1;
        if (strcmp(base, name) == 0) {
            return created[i];
        }
    }
    if (n_created == (int)(sizeof created / sizeof created[0])) {
        fprintf(stderr, "too many files\n");
        exit(2);
    }
    snprintf(created[n_created], sizeof created[0], "%s/%s", dir, name);
    return created[n_created++];
}

static void
die(const char *what)
{
    fprintf(stderr, "test set-up failed: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(2);
}

static void
add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    if (e == NULL || !X509_add_ext(x, e, -1)) {
        die(value);
    }
    X509_EXTENSION_free(e);
}

/* A certificate for key named cn, signed by issuer (self-signed when NULL). */
static X509 *
make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
          bool ca, const char *san, const char *eku)
{
    static long serial = 1000;
    X509 *x = X509_new();
    if (x == NULL) {
        die("X509_new");
    }
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 2 * 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               (const unsigned char *)"cmemcache tests", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    add_ext(x, &v3, NID_basic_constraints,
            ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(x, &v3, NID_key_usage,
            ca ? "critical,keyCertSign,cRLSign"
               : "critical,digitalSignature,keyEncipherment");
    add_ext(x, &v3, NID_subject_key_identifier, "hash");
    if (issuer != NULL) {
        add_ext(x, &v3, NID_authority_key_identifier, "keyid:always");
    }
    if (san != NULL) {
        add_ext(x, &v3, NID_subject_alt_name, san);
    }
    if (eku != NULL) {
        add_ext(x, &v3, NID_ext_key_usage, eku);
    }
    if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256())) {
        die("X509_sign");
    }
    return x;
}

static EVP_PKEY *
make_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (k == NULL) {
        die("EVP_EC_gen");
    }
    return k;
}

static void
write_file(const char *name, const char *text)
{
    FILE *f = fopen(path(name), "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        die(name);
    }
}

/* Writes certificate(s) and/or a key (encrypted with password when given)
 * to one PEM file. */
static void
write_pem(const char *name, X509 *cert, X509 *chain, EVP_PKEY *key,
          const char *password)
{
    FILE *f = fopen(path(name), "w");
    if (f == NULL) {
        die(name);
    }
    bool ok = true;
    if (cert != NULL) {
        ok = ok && PEM_write_X509(f, cert);
    }
    if (chain != NULL) {
        ok = ok && PEM_write_X509(f, chain);
    }
    if (key != NULL) {
        ok = ok
             && PEM_write_PrivateKey(f, key,
                                     password ? EVP_aes_256_cbc() : NULL,
                                     (const unsigned char *)password,
                                     password ? (int)strlen(password) : 0,
                                     NULL, NULL);
    }
    if (fclose(f) != 0 || !ok) {
        die(name);
    }
}

#define KEY_PASSWORD "correct horse battery 7"
#define SECRET_MARKER "SECRETKEYMATERIALdonotprint"

static void
make_certificates(void)
{
    snprintf(dir, sizeof dir, "/tmp/cmemcache-tls-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        die("mkdtemp");
    }
    EVP_PKEY *ca_key = make_key(), *srv_key = make_key(),
             *other_key = make_key(), *cli_key = make_key(),
             *wca_key = make_key(), *wcli_key = make_key();
    X509 *ca = make_cert("cmemcache test CA", ca_key, NULL, NULL, true, NULL,
                         NULL);
    X509 *srv = make_cert("localhost", srv_key, ca, ca_key, false,
                          "DNS:localhost,IP:127.0.0.1,IP:::1", "serverAuth");
    X509 *other = make_cert("other.example", other_key, ca, ca_key, false,
                            "DNS:other.example", "serverAuth");
    X509 *cli = make_cert("client", cli_key, ca, ca_key, false, NULL,
                          "clientAuth");
    X509 *wca = make_cert("another CA", wca_key, NULL, NULL, true, NULL,
                          NULL);
    X509 *wcli = make_cert("client of another CA", wcli_key, wca, wca_key,
                           false, NULL, "clientAuth");

    write_pem("ca.pem", ca, NULL, NULL, NULL);
    write_pem("server.pem", srv, NULL, NULL, NULL);
    write_pem("server.key", NULL, NULL, srv_key, NULL);
    write_pem("other.pem", other, ca, NULL, NULL);
    write_pem("other.key", NULL, NULL, other_key, NULL);
    write_pem("client.pem", cli, NULL, NULL, NULL);
    write_pem("client.key", NULL, NULL, cli_key, NULL);
    write_pem("client-enc.key", NULL, NULL, cli_key, KEY_PASSWORD);
    write_pem("client-combined.pem", cli, NULL, cli_key, NULL);
    write_pem("wrongca.pem", wca, NULL, NULL, NULL);
    write_pem("wrongclient.pem", wcli, NULL, NULL, NULL);
    write_pem("wrongclient.key", NULL, NULL, wcli_key, NULL);
    write_file("garbage.key", "-----BEGIN PRIVATE KEY-----\n" SECRET_MARKER
                              "\n-----END PRIVATE KEY-----\n");
    write_file("notpem.pem", "this is not a certificate\n");

    X509 *xs[] = {ca, srv, other, cli, wca, wcli};
    EVP_PKEY *ks[] = {ca_key, srv_key, other_key, cli_key, wca_key, wcli_key};
    for (size_t i = 0; i < 6; i++) {
        X509_free(xs[i]);
        EVP_PKEY_free(ks[i]);
    }
}

static void
remove_files(void)
{
    for (int i = 0; i < n_created; i++) {
        unlink(created[i]);
    }
    rmdir(dir);
}

/* ------------------------------------------------------------------------ */
/* memcached servers                                                         */

struct server {
    pid_t pid;
    int port;
    char log[160];
};

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0
        || getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        die("free_port");
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int
tcp_connect(int port)
{
    struct mc_server_spec spec = {.family = MC_TCP, .host = "127.0.0.1",
                                  .host_len = 9, .port = (uint16_t)port};
    int gai = 0;
    return mc_conn_open(&spec, mc_now() + 2 * SEC, &gai);
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * MS};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Starts memcached -Z with the server certificate cert/key and the -o
 * options extra ("" or ",ssl_ca_cert=...,..."). */
static void
server_start(struct server *s, const char *cert, const char *key,
             const char *extra)
{
    const char *bin = getenv("MEMCACHED");
    if (bin == NULL || *bin == '\0') {
        bin = "memcached";
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = free_port();
        snprintf(s->log, sizeof s->log, "%s/memcached-%d.log", dir, s->port);
        char port[16], opts[1024];
        snprintf(port, sizeof port, "%d", s->port);
        snprintf(opts, sizeof opts, "ssl_chain_cert=%s,ssl_key=%s%s",
                 path(cert), path(key), extra);
        const char *argv[20] = {bin,  "-U",        "0",    "-t", "1",
                                "-m", "64",        "-I",   "2m", "-l",
                                "127.0.0.1", "-p", port,   "-Z", "-o",
                                opts};
        int argc = 16;
        if (geteuid() == 0) {
            argv[argc++] = "-u";
            argv[argc++] = "root";
        }
        argv[argc] = NULL;
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            die("fork");
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            int lfd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            int nul = open("/dev/null", O_RDWR);
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(lfd, 2);
            execvp(bin, (char *const *)argv);
            _exit(127);
        }
        s->pid = pid;
        for (int i = 0; i < 500; i++) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                s->pid = 0;
                break;
            }
            int fd = tcp_connect(s->port);
            if (fd >= 0) {
                close(fd);
                unlink(s->log);
                return;
            }
            sleep_ms(10);
        }
        if (s->pid != 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        char text[512] = "";
        FILE *f = fopen(s->log, "r");
        if (f != NULL) {
            size_t n = fread(text, 1, sizeof text - 1, f);
            text[n] = '\0';
            fclose(f);
        }
        unlink(s->log);
        fprintf(stderr, "memcached did not start (%s -o %s): %s\n", bin, opts,
                text);
    }
    die("memcached -Z does not start");
}

static void
server_stop(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static void
server_pause(struct server *s)
{
    int st;
    kill(s->pid, SIGSTOP);
    if (waitpid(s->pid, &st, WUNTRACED) != s->pid || !WIFSTOPPED(st)) {
        die("SIGSTOP");
    }
}

static void
server_resume(struct server *s)
{
    int st;
    kill(s->pid, SIGCONT);
    waitpid(s->pid, &st, WCONTINUED);
}

/* ------------------------------------------------------------------------ */
/* Client helpers                                                            */

struct client {
    int fd;
    struct mc_tls *t;
    struct mc_buf b;
    char err[320];
};

static struct mc_tls_ctx *
make_ctx(const char *ca, const char *cert, const char *key, bool verify,
         const char *server_hostname, int max_version)
{
    struct mc_tls_config cfg;
    mc_tls_config_init(&cfg);
    cfg.ca_file = ca ? path(ca) : NULL;
    cfg.cert_file = cert ? path(cert) : NULL;
    cfg.key_file = key ? path(key) : NULL;
    cfg.verify = verify;
    cfg.server_hostname = server_hostname;
    cfg.max_version = max_version;
    char err[320];
    struct mc_tls_ctx *c = mc_tls_ctx_new(&cfg, err, sizeof err);
    if (c == NULL) {
        fprintf(stderr, "mc_tls_ctx_new: %s\n", err);
        die("context");
    }
    return c;
}

/* Connects and sets up TLS (no handshake yet). */
static bool
client_open(struct client *c, struct mc_tls_ctx *ctx, int port,
            const char *host, struct mc_tls_session *slot)
{
    memset(c, 0, sizeof *c);
    mc_buf_init(&c->b);
    c->fd = tcp_connect(port);
    if (!CHECK_MSG(c->fd >= 0, "connect: %d", c->fd)) {
        return false;
    }
    c->t = mc_tls_new(ctx, c->fd, host, strlen(host), slot);
    if (!CHECK_MSG(c->t != NULL, "mc_tls_new: %s", strerror(errno))) {
        close(c->fd);
        c->fd = -1;
        return false;
    }
    return true;
}

static void
client_close(struct client *c)
{
    if (c->t != NULL) {
        mc_tls_free(c->t);
        c->t = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    mc_buf_free(&c->b);
}

static int
client_handshake(struct client *c)
{
    int rc = mc_tls_handshake_by(c->t, mc_now() + 5 * SEC);
    mc_tls_strerror(c->t, c->err, sizeof c->err);
    return rc;
}

/* Sends iov and reads one reply frame through mc_tls_step.  Returns the
 * frame's length (consumed from c->b by the next call) or a failure. */
static ssize_t
client_frame(struct client *c, struct mc_out *out, struct mc_reply *r,
             int64_t deadline)
{
    mc_tls_out_advance(out, 0); /* no empty iovecs left to send */
    for (int i = 0; i < 200000; i++) {
        if (mc_buf_reserve(&c->b, mc_buf_room(r->need, mc_buf_len(&c->b)))
            < 0) {
            return -ENOMEM;
        }
        ssize_t f = mc_parse(mc_buf_head(&c->b), mc_buf_len(&c->b),
                             4u << 20, r);
        if (f > 0 && out->iovcnt == 0) {
            return f;
        }
        if (f == MC_EPROTO) {
            return -EPROTO;
        }
        ssize_t n = mc_tls_step(c->t, out, &c->b, true, false, deadline);
        if (n < 0) {
            mc_tls_strerror(c->t, c->err, sizeof c->err);
            return n;
        }
    }
    return -ELOOP;
}

/* One request (a text line or more) and its first reply frame, which is
 * copied into text (NUL-terminated, truncated to cap). */
static ssize_t
client_request(struct client *c, const char *req, char *text, size_t cap)
{
    struct iovec iov = {.iov_base = (void *)req, .iov_len = strlen(req)};
    struct mc_out out = {.iov = &iov, .iovcnt = 1};
    struct mc_reply r;
    memset(&r, 0, sizeof r);
    ssize_t f = client_frame(c, &out, &r, mc_now() + 5 * SEC);
    if (f > 0) {
        size_t n = (size_t)f < cap - 1 ? (size_t)f : cap - 1;
        memcpy(text, mc_buf_head(&c->b), n);
        text[n] = '\0';
        mc_buf_consume(&c->b, (size_t)f);
    }
    else {
        text[0] = '\0';
    }
    return f;
}

/* A handshake and "version" gives "VERSION 1.6..." */
static bool
client_version_ok(struct client *c)
{
    char text[128];
    ssize_t f = client_request(c, "version\r\n", text, sizeof text);
    return CHECK_MSG(f > 0 && strncmp(text, "VERSION ", 8) == 0,
                     "version: %zd %s (%s)", f, text, c->err);
}

/* Reads raw bytes until a CRLF arrives (for the forked servers' lines). */
static ssize_t
client_line(struct client *c, char *text, size_t cap, int64_t deadline)
{
    struct mc_out out = {.iov = NULL, .iovcnt = 0};
    for (int i = 0; i < 10000; i++) {
        const char *crlf = NULL;
        if (mc_buf_len(&c->b) > 0) {
            crlf = memmem(mc_buf_head(&c->b), mc_buf_len(&c->b), "\r\n", 2);
        }
        if (crlf != NULL) {
            size_t n = (size_t)(crlf - mc_buf_head(&c->b));
            n = n < cap - 1 ? n : cap - 1;
            memcpy(text, mc_buf_head(&c->b), n);
            text[n] = '\0';
            mc_buf_consume(&c->b, (size_t)(crlf + 2 - mc_buf_head(&c->b)));
            return (ssize_t)n;
        }
        if (mc_buf_reserve(&c->b, 4096) < 0) {
            return -ENOMEM;
        }
        ssize_t n = mc_tls_step(c->t, &out, &c->b, true, false, deadline);
        if (n < 0) {
            mc_tls_strerror(c->t, c->err, sizeof c->err);
            return n;
        }
    }
    return -ELOOP;
}

static bool
contains(const char *s, const char *part)
{
    return strstr(s, part) != NULL;
}

/* ------------------------------------------------------------------------ */
/* Forked servers for what memcached never does                              */

enum fake_mode {
    FAKE_TRICKLE_HELLO, /* a handshake record, one byte every 10 ms */
    FAKE_TRICKLE_REPLY, /* handshake, then a reply one byte every 10 ms */
    FAKE_SNI_ECHO,      /* "SNI <name>\r\n" (or "SNI -"), close_notify */
    FAKE_NO_CLOSE_NOTIFY, /* "BYE\r\n", then a TCP close */
    FAKE_RECORDS,       /* until "quit\r\n": "R <plaintext per record>..." */
    FAKE_CLOSE_NOTIFY,  /* "HI\r\n"; exits 0 once a close_notify comes */
};

struct fake {
    pid_t pid;
    int port;
};

static SSL_CTX *
fake_ssl_ctx(void)
{
    SSL_CTX *sc = SSL_CTX_new(TLS_server_method());
    if (sc == NULL
        || SSL_CTX_use_certificate_chain_file(sc, path("server.pem")) != 1
        || SSL_CTX_use_PrivateKey_file(sc, path("server.key"),
                                       SSL_FILETYPE_PEM) != 1) {
        die("fake server context");
    }
    return sc;
}

static void
fake_serve(int lfd, enum fake_mode mode, int conns)
{
    SSL_CTX *sc = mode == FAKE_TRICKLE_HELLO ? NULL : fake_ssl_ctx();
    for (int i = 0; i < conns; i++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            _exit(3);
        }
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (mode == FAKE_TRICKLE_HELLO) {
            char hello[4096];
            (void)!recv(fd, hello, sizeof hello, 0);
            /* a ServerHello record announcing 16 KiB that never completes */
            (void)!send(fd, "\x16\x03\x03\x40\x00", 5, MSG_NOSIGNAL);
            for (int k = 0; k < 1000; k++) {
                if (send(fd, "\x02", 1, MSG_NOSIGNAL) != 1) {
                    break;
                }
                sleep_ms(10);
            }
            close(fd);
            continue;
        }
        SSL *ssl = SSL_new(sc);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {
            SSL_free(ssl);
            close(fd);
            continue;
        }
        if (mode == FAKE_SNI_ECHO) {
            const char *name = SSL_get_servername(ssl,
                                                  TLSEXT_NAMETYPE_host_name);
            char line[300];
            snprintf(line, sizeof line, "SNI %s\r\n", name ? name : "-");
            SSL_write(ssl, line, (int)strlen(line));
            SSL_shutdown(ssl);
        }
        else if (mode == FAKE_RECORDS) {
            /* Without read-ahead every SSL_read returns one record at most. */
            static char buf[1 << 16];
            char line[4096] = "R";
            size_t used = 1;
            char tail[6] = {0};
            for (int k = 0; k < 10000; k++) {
                int n = SSL_read(ssl, buf, (int)sizeof buf);
                if (n <= 0) {
                    break;
                }
                used += (size_t)snprintf(line + used, sizeof line - used,
                                         " %d", n);
                if (n >= 6) {
                    memcpy(tail, buf + n - 6, 6);
                }
                else {
                    memmove(tail, tail + n, (size_t)(6 - n));
                    memcpy(tail + 6 - n, buf, (size_t)n);
                }
                if (memcmp(tail, "quit\r\n", 6) == 0
                    || used + 16 > sizeof line) {
                    break;
                }
            }
            snprintf(line + used, sizeof line - used, "\r\n");
            SSL_write(ssl, line, (int)strlen(line));
            SSL_shutdown(ssl);
        }
        else if (mode == FAKE_CLOSE_NOTIFY) {
            SSL_write(ssl, "HI\r\n", 4);
            char tmp[64];
            int n = SSL_read(ssl, tmp, sizeof tmp);
            int seen = n <= 0
                       && SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN;
            SSL_free(ssl);
            SSL_CTX_free(sc);
            close(fd);
            _exit(seen ? 0 : 1);
        }
        else if (mode == FAKE_NO_CLOSE_NOTIFY) {
            SSL_write(ssl, "BYE\r\n", 5);
            shutdown(fd, SHUT_WR);
            char tmp[256];
            while (recv(fd, tmp, sizeof tmp, 0) > 0) {
            }
        }
        else {
            /* Encrypt the reply into memory, then send it byte by byte. */
            BIO *mem = BIO_new(BIO_s_mem());
            SSL_set0_wbio(ssl, mem);
            SSL_write(ssl, "VERSION 1.6.18\r\n", 16);
            char enc[4096];
            int m = BIO_read(mem, enc, sizeof enc);
            for (int k = 0; k < m; k++) {
                if (send(fd, enc + k, 1, MSG_NOSIGNAL) != 1) {
                    break;
                }
                sleep_ms(10);
            }
        }
        SSL_free(ssl);
        close(fd);
    }
    SSL_CTX_free(sc);
}

static void
fake_start(struct fake *f, enum fake_mode mode, int conns)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0
        || listen(lfd, 8) < 0
        || getsockname(lfd, (struct sockaddr *)&a, &len) < 0) {
        die("fake server socket");
    }
    f->port = ntohs(a.sin_port);
    fflush(NULL);
    f->pid = fork();
    if (f->pid < 0) {
        die("fork");
    }
    if (f->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(30);
        fake_serve(lfd, mode, conns);
        _exit(0);
    }
    close(lfd);
}

static void
fake_stop(struct fake *f)
{
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* Contexts and their errors                                                 */

static struct mc_tls_ctx *
try_ctx(const char *ca, const char *cert, const char *key,
        const char *password, char *err, size_t errlen)
{
    struct mc_tls_config cfg;
    mc_tls_config_init(&cfg);
    cfg.ca_file = ca;
    cfg.cert_file = cert;
    cfg.key_file = key;
    cfg.password = password;
    return mc_tls_ctx_new(&cfg, err, errlen);
}

static void
test_ctx_errors(void)
{
    char err[320];
    struct mc_tls_ctx *c;
    struct mc_tls_config cfg;

    set_ctx("defaults");
    mc_tls_config_init(&cfg);
    CHECK(cfg.verify && cfg.ca_file == NULL && cfg.min_version == 0);
    c = mc_tls_ctx_new(&cfg, err, sizeof err);
    CHECK_MSG(c != NULL && err[0] == '\0', "system store: %s", err);
    mc_tls_ctx_free(c);

    set_ctx("ca_file missing");
    c = try_ctx("/nonexistent/ca.pem", NULL, NULL, NULL, err, sizeof err);
    CHECK_MSG(c == NULL
                  && contains(err, "ca_file '/nonexistent/ca.pem'")
                  && contains(err, "No such file or directory"),
              "%s", err);

    set_ctx("ca_file not PEM");
    c = try_ctx(path("notpem.pem"), NULL, NULL, NULL, err, sizeof err);
    CHECK_MSG(c == NULL && contains(err, "ca_file")
                  && contains(err, "no usable PEM certificate"),
              "%s", err);

    set_ctx("cert_file missing");
    c = try_ctx(path("ca.pem"), "/nonexistent/c.pem", path("client.key"),
                NULL, err, sizeof err);
    CHECK_MSG(c == NULL && contains(err, "cert_file '/nonexistent/c.pem'")
                  && contains(err, "No such file or directory"),
              "%s", err);

    set_ctx("key_file missing");
    c = try_ctx(path("ca.pem"), path("client.pem"), "/nonexistent/k.pem",
                NULL, err, sizeof err);
    CHECK_MSG(c == NULL && contains(err, "key_file '/nonexistent/k.pem'")
                  && contains(err, "No such file or directory"),
              "%s", err);

    set_ctx("cert_file not PEM");
    c = try_ctx(path("ca.pem"), path("notpem.pem"), path("client.key"), NULL,
                err, sizeof err);
    CHECK_MSG(c == NULL && contains(err, "cert_file")
                  && contains(err, "no usable PEM certificate"),
              "%s", err);

    set_ctx("bad key");
    c = try_ctx(path("ca.pem"), path("client.pem"), path("garbage.key"), NULL,
                err, sizeof err);
    CHECK_MSG(c == NULL && contains(err, "key_file")
                  && contains(err, "garbage.key")
                  && contains(err, "no usable PEM private key")
                  && !contains(err, SECRET_MARKER),
              "%s", err);

    set_ctx("key/cert mismatch");
    c = try_ctx(path("ca.pem"), path("client.pem"), path("server.key"), NULL,
                err, sizeof err);
    CHECK_MSG(c == NULL && contains(err, "does not match cert_file")
                  && contains(err, "key values mismatch"),
              "%s", err);

    set_ctx("encrypted key without a password");
    c = try_ctx(path("ca.pem"), path("client.pem"), path("client-enc.key"),
                NULL, err, sizeof err);
    CHECK_MSG(c == NULL
                  && contains(err, "is encrypted and no password was given"),
              "%s", err);

    set_ctx("encrypted key, wrong password");
    c = try_ctx(path("ca.pem"), path("client.pem"), path("client-enc.key"),
                "hunter2-wrong", err, sizeof err);
    CHECK_MSG(c == NULL && contains(err, "cannot decrypt the private key")
                  && !contains(err, "hunter2") && !contains(err, "horse"),
              "%s", err);

    set_ctx("encrypted key, right password");
    c = try_ctx(path("ca.pem"), path("client.pem"), path("client-enc.key"),
                KEY_PASSWORD, err, sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    mc_tls_ctx_free(c);

    set_ctx("certificate and key in one file");
    c = try_ctx(path("ca.pem"), path("client-combined.pem"), NULL, NULL, err,
                sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    mc_tls_ctx_free(c);

    set_ctx("key_file without cert_file");
    c = try_ctx(path("ca.pem"), NULL, path("client.key"), NULL, err,
                sizeof err);
    CHECK_MSG(c == NULL && contains(err, "without cert_file"), "%s", err);

    set_ctx("versions");
    mc_tls_config_init(&cfg);
    cfg.min_version = 0x0301; /* TLS 1.0 */
    c = mc_tls_ctx_new(&cfg, err, sizeof err);
    CHECK_MSG(c == NULL && contains(err, "only TLS 1.2 and TLS 1.3"), "%s",
              err);
    cfg.min_version = MC_TLS_V1_3;
    cfg.max_version = MC_TLS_V1_2;
    c = mc_tls_ctx_new(&cfg, err, sizeof err);
    CHECK_MSG(c == NULL && contains(err, "below min_version"), "%s", err);

    set_ctx("server_hostname too long");
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    mc_tls_config_init(&cfg);
    cfg.server_hostname = longname;
    c = mc_tls_ctx_new(&cfg, err, sizeof err);
    CHECK_MSG(c == NULL && contains(err, "server_hostname"), "%s", err);

    set_ctx("mc_tls_new without a name while verifying");
    c = try_ctx(path("ca.pem"), NULL, NULL, NULL, err, sizeof err);
    errno = 0;
    CHECK(c != NULL && mc_tls_new(c, -1, "", 0, NULL) == NULL
          && errno == EINVAL);
    mc_tls_ctx_free(c);
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                               */

/* "version" through the non-blocking calls alone, polling as an event loop
 * would, reading 5 bytes at a time to show what mc_tls_pending is for. */
static void
test_raw_api(int port, struct mc_tls_ctx *ctx)
{
    set_ctx("raw API");
    struct client c;
    if (!client_open(&c, ctx, port, "127.0.0.1", NULL)) {
        return;
    }
    int rc, rounds = 0;
    while ((rc = mc_tls_handshake(c.t)) == MC_TLS_WANT_READ
           || rc == MC_TLS_WANT_WRITE) {
        short ev = rc == MC_TLS_WANT_READ ? POLLIN : POLLOUT;
        if (mc_conn_wait(c.fd, ev, mc_now() + 5 * SEC) < 0 || ++rounds > 100) {
            break;
        }
    }
    CHECK_MSG(rc == 0, "handshake %d", rc);
    CHECK(!mc_tls_resumed(c.t));
    CHECK_MSG(strcmp(mc_tls_version(c.t), "TLSv1.3") == 0, "%s",
              mc_tls_version(c.t));
    CHECK(mc_tls_handshake(c.t) == 0); /* done: at once */

    const struct iovec iov[2] = {{.iov_base = "vers", .iov_len = 4},
                                 {.iov_base = "ion\r\n", .iov_len = 5}};
    ssize_t n;
    for (int i = 0; i < 100; i++) {
        n = mc_tls_send(c.t, iov, 2);
        if (n != MC_TLS_WANT_WRITE) {
            break;
        }
        mc_conn_wait(c.fd, POLLOUT, mc_now() + 5 * SEC);
    }
    CHECK_MSG(n == 9, "send %zd", n);

    char reply[64];
    size_t got = 0;
    bool saw_pending = false, poll_blind = false;
    for (int i = 0; i < 200 && (got < 2 || memcmp(reply + got - 2, "\r\n", 2));
         i++) {
        if (mc_tls_pending(c.t) == 0) {
            mc_conn_wait(c.fd, POLLIN, mc_now() + 5 * SEC);
        }
        else {
            saw_pending = true;
            struct pollfd p = {.fd = c.fd, .events = POLLIN};
            if (poll(&p, 1, 0) == 0) {
                poll_blind = true; /* data is there, poll() does not see it */
            }
        }
        n = mc_tls_recv(c.t, reply + got, 5 < sizeof reply - got
                                              ? 5 : sizeof reply - got);
        if (n > 0) {
            CHECK(n <= 5);
            got += (size_t)n;
        }
        else if (n != MC_TLS_WANT_READ) {
            break;
        }
    }
    reply[got < sizeof reply ? got : sizeof reply - 1] = '\0';
    CHECK_MSG(strncmp(reply, "VERSION 1.6", 11) == 0
                  && got >= 2 && memcmp(reply + got - 2, "\r\n", 2) == 0,
              "%s", reply);
    CHECK(saw_pending && poll_blind);
    CHECK(mc_tls_pending(c.t) == 0);

    set_ctx("stale");
    CHECK(!mc_tls_stale(c.t));
    client_close(&c);

    /* A fresh connection after the handshake, with the session tickets
     * still unread in the socket: not stale (the tickets are consumed). */
    if (client_open(&c, ctx, port, "127.0.0.1", NULL)) {
        CHECK(client_handshake(&c) == 0);
        sleep_ms(50); /* let the tickets arrive */
        struct pollfd p = {.fd = c.fd, .events = POLLIN};
        CHECK(poll(&p, 1, 0) == 1); /* something is waiting ... */
        CHECK(!mc_tls_stale(c.t));  /* ... and it is only tickets */
        p.revents = 0;
        CHECK(poll(&p, 1, 0) == 0);
        client_version_ok(&c);
        CHECK(!mc_tls_stale(c.t));
        /* Bytes nobody asked for make it stale. */
        const struct iovec v = {.iov_base = "version\r\n", .iov_len = 9};
        CHECK(mc_tls_send(c.t, &v, 1) == 9);
        sleep_ms(50);
        CHECK(mc_tls_stale(c.t));
        client_close(&c);
    }
}

static void
test_set_get(int port, struct mc_tls_ctx *ctx)
{
    set_ctx("set/get");
    struct client c;
    if (!client_open(&c, ctx, port, "localhost", NULL)) {
        return;
    }
    CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
    char text[256];
    ssize_t f = client_request(&c, "set tls:k 5 0 5\r\nhello\r\n", text,
                               sizeof text);
    CHECK_MSG(f == 8 && strcmp(text, "STORED\r\n") == 0, "%s", text);
    f = client_request(&c, "get tls:k\r\n", text, sizeof text);
    CHECK_MSG(strcmp(text, "VALUE tls:k 5 5\r\nhello\r\n") == 0, "%s", text);
    f = client_request(&c, "", text, sizeof text);
    CHECK_MSG(strcmp(text, "END\r\n") == 0, "%s", text);

    /* 200 small iovecs are one record, consumed by one mc_tls_send. */
    set_ctx("coalescing");
    static char pieces[200][16];
    struct iovec iov[203];
    const char *head = "set tls:c 0 0 1000\r\n";
    iov[0].iov_base = (void *)head;
    iov[0].iov_len = strlen(head);
    for (int i = 0; i < 200; i++) {
        snprintf(pieces[i], sizeof pieces[i], "%05d", i);
        iov[1 + i].iov_base = pieces[i];
        iov[1 + i].iov_len = 5;
    }
    iov[201].iov_base = "\r\n";
    iov[201].iov_len = 2;
    iov[202].iov_base = "get tls:c\r\n";
    iov[202].iov_len = 11;
    size_t total = strlen(head) + 1000 + 2 + 11;
    ssize_t n = MC_TLS_WANT_WRITE;
    for (int i = 0; i < 100 && n == MC_TLS_WANT_WRITE; i++) {
        n = mc_tls_send(c.t, iov, 203);
        if (n == MC_TLS_WANT_WRITE) {
            mc_conn_wait(c.fd, POLLOUT, mc_now() + 5 * SEC);
        }
    }
    CHECK_MSG(n == (ssize_t)total, "consumed %zd of %zu", n, total);
    struct mc_out none = {.iov = NULL, .iovcnt = 0};
    struct mc_reply r;
    memset(&r, 0, sizeof r);
    f = client_frame(&c, &none, &r, mc_now() + 5 * SEC);
    CHECK_MSG(f == 8 && r.kind == MC_STORED, "%zd", f);
    mc_buf_consume(&c.b, (size_t)f);
    memset(&r, 0, sizeof r);
    f = client_frame(&c, &none, &r, mc_now() + 5 * SEC);
    bool same = f > 0 && r.kind == MC_VALUE && r.value_len == 1000;
    for (int i = 0; same && i < 200; i++) {
        same = memcmp(r.value + 5 * i, pieces[i], 5) == 0;
    }
    CHECK(same);
    client_close(&c);
}

/* 1 MiB each way: the set goes out record by record (at least 64 sends),
 * the reply comes back in at least 64 records. */
static void
test_large_value(int port, struct mc_tls_ctx *ctx)
{
    set_ctx("1 MiB value");
    struct client c;
    if (!client_open(&c, ctx, port, "127.0.0.1", NULL)) {
        return;
    }
    CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
    size_t vlen = 1u << 20;
    char *value = malloc(vlen);
    for (size_t i = 0; i < vlen; i++) {
        value[i] = (char)('a' + (i * 7 + i / 4096) % 26);
    }
    char head[64];
    snprintf(head, sizeof head, "set tls:big 0 0 %zu\r\n", vlen);
    struct iovec iov[3] = {{.iov_base = head, .iov_len = strlen(head)},
                           {.iov_base = value, .iov_len = vlen},
                           {.iov_base = "\r\n", .iov_len = 2}};
    struct mc_out out = {.iov = iov, .iovcnt = 3};
    int sends = 0;
    size_t sent = 0, largest = 0;
    int64_t deadline = mc_now() + 20 * SEC;
    while (out.iovcnt > 0 && mc_now() < deadline) {
        ssize_t n = mc_tls_send(c.t, out.iov, out.iovcnt);
        if (n > 0) {
            sends++;
            sent += (size_t)n;
            largest = (size_t)n > largest ? (size_t)n : largest;
            mc_tls_out_advance(&out, (size_t)n);
        }
        else if (n == MC_TLS_WANT_WRITE || n == MC_TLS_WANT_READ) {
            mc_conn_wait(c.fd, n == MC_TLS_WANT_WRITE ? POLLOUT : POLLIN,
                         deadline);
        }
        else {
            CHECK_MSG(false, "send %zd", n);
            break;
        }
    }
    CHECK_MSG(sent == strlen(head) + vlen + 2 && sends >= 64
                  && largest <= MC_TLS_RECORD,
              "sent %zu in %d sends, largest %zu", sent, sends, largest);
    struct mc_reply r;
    memset(&r, 0, sizeof r);
    ssize_t f = client_frame(&c, &out, &r, deadline);
    CHECK_MSG(f == 8 && r.kind == MC_STORED, "%zd %s", f, c.err);
    mc_buf_consume(&c.b, (size_t)f > 0 ? (size_t)f : 0);

    /* The get through mc_tls_step, counting its receives. */
    struct iovec g = {.iov_base = "get tls:big\r\n", .iov_len = 13};
    out.iov = &g;
    out.iovcnt = 1;
    memset(&r, 0, sizeof r);
    int reads = 0;
    f = 0;
    for (int i = 0; i < 100000 && mc_now() < deadline; i++) {
        mc_buf_reserve(&c.b, mc_buf_room(r.need, mc_buf_len(&c.b)));
        f = mc_parse(mc_buf_head(&c.b), mc_buf_len(&c.b), 4u << 20, &r);
        if (f != MC_NEED_MORE) {
            break;
        }
        ssize_t n = mc_tls_step(c.t, &out, &c.b, true, false, deadline);
        if (n > 0) {
            CHECK(n <= MC_TLS_RECORD);
            reads++;
        }
        else if (n < 0) {
            f = n;
            break;
        }
    }
    CHECK_MSG(f > 0 && r.kind == MC_VALUE && r.value_len == vlen
                  && memcmp(r.value, value, vlen) == 0,
              "%zd kind %d len %zu", f, (int)r.kind, r.value_len);
    CHECK_MSG(reads >= 64, "%d receives", reads);
    client_close(&c);
    free(value);
}

/* Record boundaries as a TLS server sees them. */
static void
check_records(struct mc_tls_ctx *ctx, int port, const char *what,
              struct iovec *iov, int iovcnt, const char *want)
{
    set_ctx("records: %s", what);
    struct client c;
    if (!client_open(&c, ctx, port, "localhost", NULL)) {
        return;
    }
    CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
    struct mc_out out = {.iov = iov, .iovcnt = iovcnt};
    int64_t deadline = mc_now() + 5 * SEC;
    ssize_t n = 0;
    for (int i = 0; i < 1000 && out.iovcnt > 0 && n == 0; i++) {
        n = mc_tls_step(c.t, &out, &c.b, false, false, deadline);
    }
    CHECK_MSG(n == 0 && out.iovcnt == 0, "%zd", n);
    char line[512];
    n = client_line(&c, line, sizeof line, deadline);
    CHECK_MSG(n > 0 && strcmp(line, want) == 0, "%zd '%s', want '%s'", n,
              line, want);
    client_close(&c);
}

static void
test_records(struct mc_tls_ctx *ctx)
{
    struct fake f;
    fake_start(&f, FAKE_RECORDS, 5);
    static char a[100], bh[30], bv[20000], cc[50], big[40000];
    memset(a, 'a', sizeof a);
    memset(bh, 'h', sizeof bh);
    memset(bv, 'v', sizeof bv);
    memset(cc, 'c', sizeof cc);
    memset(big, 'g', sizeof big);
#define IOV(p, n) {.iov_base = (void *)(p), .iov_len = (n)}
#define MARK {.iov_base = NULL, .iov_len = 0}
    struct iovec small[] = {IOV(a, 40), MARK, IOV(a, 30), MARK, IOV(cc, 20),
                            MARK, IOV("quit\r\n", 6)};
    check_records(ctx, f.port, "small requests share a record", small, 7,
                  "R 96");
    /* A (100) | B = 30 + 20000 + 2 bytes | C (50) + quit */
    struct iovec marked[] = {IOV(a, 100), MARK, IOV(bh, 30), IOV(bv, 20000),
                             IOV("\r\n", 2), MARK, IOV(cc, 50), MARK,
                             IOV("quit\r\n", 6)};
    check_records(ctx, f.port, "requests marked", marked, 9,
                  "R 100 16384 3648 56");
    struct iovec unmarked[] = {IOV(a, 100), IOV(bh, 30), IOV(bv, 20000),
                               IOV("\r\n", 2), IOV(cc, 50),
                               IOV("quit\r\n", 6)};
    check_records(ctx, f.port, "no marks: records filled", unmarked, 6,
                  "R 16384 3804");
    struct iovec direct[] = {IOV(big, 40000), MARK, IOV("quit\r\n", 6)};
    check_records(ctx, f.port, "a large iovec", direct, 3,
                  "R 16384 16384 7232 6");
    struct iovec exact[] = {IOV(big, 16384), MARK, IOV(big, 16384),
                            IOV("quit\r\n", 6)};
    check_records(ctx, f.port, "a request of exactly one record", exact, 4,
                  "R 16384 16384 6");
#undef IOV
#undef MARK
    fake_stop(&f);
}

/* memcached 1.6.18 reads a value's tail straight from OpenSSL: what shares
 * that record (here a get) waits unseen, until more bytes arrive.  With the
 * request marked, the get goes in a record of its own. */
static void
test_pipelined_value(int port, struct mc_tls_ctx *ctx, bool server_stalls)
{
    size_t vlen = 300000;
    char *value = malloc(vlen);
    memset(value, 'p', vlen);
    char head[64];
    snprintf(head, sizeof head, "set tls:pipe 0 0 %zu\r\n", vlen);
    for (int marked = 0; marked < 2; marked++) {
        set_ctx("a set and a get pipelined, %s",
                marked ? "marked" : "not marked");
        struct client c;
        if (!client_open(&c, ctx, port, "localhost", NULL)) {
            break;
        }
        CHECK(client_handshake(&c) == 0);
        struct iovec iov[5] = {
            {.iov_base = head, .iov_len = strlen(head)},
            {.iov_base = value, .iov_len = vlen},
            {.iov_base = "\r\n", .iov_len = 2},
            {.iov_base = NULL, .iov_len = 0},
            {.iov_base = "get tls:nothing\r\n", .iov_len = 17},
        };
        if (!marked) {
            iov[3] = iov[4];
        }
        struct mc_out out = {.iov = iov, .iovcnt = marked ? 5 : 4};
        struct mc_reply r;
        memset(&r, 0, sizeof r);
        ssize_t f = client_frame(&c, &out, &r, mc_now() + 5 * SEC);
        CHECK_MSG(f == 8 && r.kind == MC_STORED, "%zd %s", f, c.err);
        mc_buf_consume(&c.b, f > 0 ? (size_t)f : 0);
        memset(&r, 0, sizeof r);
        int64_t deadline = mc_now() + (marked ? 5 * SEC : 500 * MS);
        f = client_frame(&c, &out, &r, deadline);
        if (marked || !server_stalls) {
            CHECK_MSG(f == 5 && r.kind == MC_END, "%zd %s", f, c.err);
        }
        else {
            CHECK_MSG(f == -ETIMEDOUT, "%zd: memcached 1.6.18 answered", f);
        }
        client_close(&c);
    }
    free(value);
}

/* Pipelined small sets, each request marked: all answered, still several
 * per record (far fewer sends than requests). */
static void
test_pipelined_sets(int port, struct mc_tls_ctx *ctx)
{
    set_ctx("500 pipelined sets, marked");
    struct client c;
    if (!client_open(&c, ctx, port, "localhost", NULL)) {
        return;
    }
    CHECK(client_handshake(&c) == 0);
    static char heads[500][40];
    static char value[100];
    static struct iovec iov[2000];
    memset(value, 's', sizeof value);
    for (int i = 0; i < 500; i++) {
        snprintf(heads[i], sizeof heads[i], "set tls:s%d 0 0 100\r\n", i);
        iov[4 * i] = (struct iovec){.iov_base = heads[i],
                                    .iov_len = strlen(heads[i])};
        iov[4 * i + 1] = (struct iovec){.iov_base = value, .iov_len = 100};
        iov[4 * i + 2] = (struct iovec){.iov_base = "\r\n", .iov_len = 2};
        iov[4 * i + 3] = (struct iovec){.iov_base = NULL, .iov_len = 0};
    }
    struct mc_out out = {.iov = iov, .iovcnt = 2000};
    int64_t deadline = mc_now() + 5 * SEC;
    int sends = 0;
    while (out.iovcnt > 0 && mc_now() < deadline) {
        ssize_t n = mc_tls_send(c.t, out.iov, out.iovcnt);
        if (n > 0) {
            sends++;
            mc_tls_out_advance(&out, (size_t)n);
        }
        else if (n == 0) {
            mc_tls_out_advance(&out, 0);
        }
        else if (n == MC_TLS_WANT_WRITE || n == MC_TLS_WANT_READ) {
            mc_conn_wait(c.fd, POLLOUT | POLLIN, deadline);
        }
        else {
            break;
        }
    }
    CHECK_MSG(out.iovcnt == 0 && sends > 1 && sends < 20, "%d sends", sends);
    int stored = 0;
    for (int i = 0; i < 500; i++) {
        struct mc_reply r;
        memset(&r, 0, sizeof r);
        ssize_t f = client_frame(&c, &out, &r, deadline);
        if (f != 8 || r.kind != MC_STORED) {
            CHECK_MSG(false, "reply %d: %zd %s", i, f, c.err);
            break;
        }
        stored++;
        mc_buf_consume(&c.b, (size_t)f);
    }
    CHECK_MSG(stored == 500, "%d", stored);
    client_close(&c);
}

/* ------------------------------------------------------------------------ */
/* Verification                                                              */

/* Connects with ctx to port as host; returns the handshake's result and
 * the message in err (also checks that a failure leaves the call's later
 * calls failing the same way). */
static int
handshake_with(struct mc_tls_ctx *ctx, int port, const char *host, char *err,
               size_t errlen, bool version_too)
{
    struct client c;
    if (!client_open(&c, ctx, port, host, NULL)) {
        snprintf(err, errlen, "no connection");
        return -999;
    }
    int rc = client_handshake(&c);
    snprintf(err, errlen, "%s", c.err);
    if (rc == 0 && version_too) {
        client_version_ok(&c);
    }
    if (rc != 0) {
        CHECK(mc_tls_handshake(c.t) == rc);
    }
    client_close(&c);
    return rc;
}

static void
test_verify(int port, int other_port)
{
    char err[320];
    struct mc_tls_ctx *good = make_ctx("ca.pem", NULL, NULL, true, NULL, 0);
    struct mc_tls_ctx *wrong = make_ctx("wrongca.pem", NULL, NULL, true, NULL,
                                        0);
    struct mc_tls_ctx *system = make_ctx(NULL, NULL, NULL, true, NULL, 0);

    set_ctx("right CA, IP and names");
    CHECK_MSG(handshake_with(good, port, "127.0.0.1", err, sizeof err, true)
                  == 0, "%s", err);
    CHECK_MSG(handshake_with(good, port, "localhost", err, sizeof err, true)
                  == 0, "%s", err);

    set_ctx("wrong CA");
    int rc = handshake_with(wrong, port, "127.0.0.1", err, sizeof err, false);
    CHECK_MSG(rc == MC_ETLS
                  && strcmp(err, "certificate verify failed: unable to get "
                                 "local issuer certificate") == 0,
              "%d %s", rc, err);
    set_ctx("the system store does not know the test CA");
    rc = handshake_with(system, port, "localhost", err, sizeof err, false);
    CHECK_MSG(rc == MC_ETLS && contains(err, "certificate verify failed: "
                                             "unable to get local issuer"),
              "%d %s", rc, err);

    set_ctx("wrong CA, the server's chain includes its root");
    rc = handshake_with(wrong, other_port, "other.example", err, sizeof err,
                        false);
    CHECK_MSG(rc == MC_ETLS
                  && strcmp(err, "certificate verify failed: self-signed "
                                 "certificate in certificate chain") == 0,
              "%d %s", rc, err);

    set_ctx("certificate for another name, IP literal");
    rc = handshake_with(good, other_port, "127.0.0.1", err, sizeof err, false);
    CHECK_MSG(rc == MC_ETLS
                  && contains(err, "certificate verify failed: IP address "
                                   "mismatch")
                  && contains(err, "not valid for '127.0.0.1'"),
              "%d %s", rc, err);
    set_ctx("certificate for another name, host name");
    rc = handshake_with(good, other_port, "localhost", err, sizeof err, false);
    CHECK_MSG(rc == MC_ETLS
                  && contains(err, "certificate verify failed: hostname "
                                   "mismatch")
                  && contains(err, "not valid for 'localhost'"),
              "%d %s", rc, err);

    set_ctx("server_hostname overrides the host");
    struct mc_tls_ctx *named = make_ctx("ca.pem", NULL, NULL, true,
                                        "other.example", 0);
    CHECK_MSG(handshake_with(named, other_port, "127.0.0.1", err, sizeof err,
                             true) == 0, "%s", err);
    rc = handshake_with(named, port, "localhost", err, sizeof err, false);
    CHECK_MSG(rc == MC_ETLS && contains(err, "hostname mismatch")
                  && contains(err, "'other.example'"),
              "%d %s", rc, err);
    mc_tls_ctx_free(named);

    set_ctx("TLS 1.2 verifies the same way");
    struct mc_tls_ctx *good12 = make_ctx("ca.pem", NULL, NULL, true, NULL,
                                         MC_TLS_V1_2);
    struct mc_tls_ctx *wrong12 = make_ctx("wrongca.pem", NULL, NULL, true,
                                          NULL, MC_TLS_V1_2);
    CHECK_MSG(handshake_with(good12, port, "localhost", err, sizeof err, true)
                  == 0, "%s", err);
    rc = handshake_with(wrong12, port, "localhost", err, sizeof err, false);
    CHECK_MSG(rc == MC_ETLS && contains(err, "unable to get local issuer"),
              "%d %s", rc, err);
    rc = handshake_with(good12, other_port, "localhost", err, sizeof err,
                        false);
    CHECK_MSG(rc == MC_ETLS && contains(err, "hostname mismatch"), "%d %s", rc,
              err);
    mc_tls_ctx_free(good12);
    mc_tls_ctx_free(wrong12);

    set_ctx("verify off");
    struct mc_tls_ctx *off = make_ctx("wrongca.pem", NULL, NULL, false, NULL,
                                      0);
    CHECK_MSG(handshake_with(off, other_port, "127.0.0.1", err, sizeof err,
                             true) == 0, "%s", err);
    mc_tls_ctx_free(off);
    off = make_ctx(NULL, NULL, NULL, false, NULL, 0);
    CHECK_MSG(handshake_with(off, port, "localhost", err, sizeof err, true)
                  == 0, "%s", err);
    mc_tls_ctx_free(off);

    mc_tls_ctx_free(good);
    mc_tls_ctx_free(wrong);
    mc_tls_ctx_free(system);
}

/* What SNI the server receives, from a forked server that echoes it. */
static void
test_sni(void)
{
    struct fake f;
    fake_start(&f, FAKE_SNI_ECHO, 4);
    struct {
        const char *host, *server_hostname, *want;
    } cases[] = {
        {"127.0.0.1", NULL, "SNI -"},
        {"localhost", NULL, "SNI localhost"},
        {"127.0.0.1", "localhost", "SNI localhost"},
        {"localhost", "127.0.0.1", "SNI -"},
    };
    for (size_t i = 0; i < 4; i++) {
        set_ctx("SNI host %s server_hostname %s", cases[i].host,
                cases[i].server_hostname ? cases[i].server_hostname : "-");
        struct mc_tls_ctx *ctx = make_ctx("ca.pem", NULL, NULL, true,
                                          cases[i].server_hostname, 0);
        struct client c;
        if (client_open(&c, ctx, f.port, cases[i].host, NULL)) {
            CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
            char line[300];
            ssize_t n = client_line(&c, line, sizeof line,
                                    mc_now() + 5 * SEC);
            CHECK_MSG(n > 0 && strcmp(line, cases[i].want) == 0, "%zd '%s'",
                      n, line);
            /* then the close_notify */
            char tmp[16];
            ssize_t e = MC_TLS_WANT_READ;
            for (int k = 0; k < 100 && e == MC_TLS_WANT_READ; k++) {
                mc_conn_wait(c.fd, POLLIN, mc_now() + 5 * SEC);
                e = mc_tls_recv(c.t, tmp, sizeof tmp);
            }
            mc_tls_strerror(c.t, c.err, sizeof c.err);
            CHECK_MSG(e == MC_EEOF && mc_tls_clean_eof(c.t)
                          && contains(c.err, "close_notify"),
                      "%zd %s", e, c.err);
            client_close(&c);
        }
        mc_tls_ctx_free(ctx);
    }
    fake_stop(&f);
}

/* ------------------------------------------------------------------------ */
/* Mutual TLS                                                                */

/* A connection without a client certificate (or with one the server does
 * not trust) to a server that requires one: TLS 1.2 fails in the
 * handshake, TLS 1.3 with the alert the first read gets.  When the request
 * went out first, the server's close may reset the connection and discard
 * its alert: then -ECONNRESET (or -EPIPE), whose text still names the
 * missing certificate (request_hint). */
static void
check_refused(struct mc_tls_ctx *ctx, int port, const char *what,
              const char *alert, const char *hint, const char *request_hint)
{
    for (int send_first = 0; send_first < 2; send_first++) {
        set_ctx("%s, %s", what, send_first ? "request at once" : "read");
        struct client c;
        if (!client_open(&c, ctx, port, "localhost", NULL)) {
            return;
        }
        int rc = client_handshake(&c);
        ssize_t f = rc;
        if (rc == 0 && send_first) {
            char text[128];
            f = client_request(&c, "version\r\n", text, sizeof text);
        }
        else if (rc == 0) {
            char tmp[64];
            f = MC_TLS_WANT_READ;
            for (int k = 0; k < 100 && f == MC_TLS_WANT_READ; k++) {
                mc_conn_wait(c.fd, POLLIN, mc_now() + 5 * SEC);
                f = mc_tls_recv(c.t, tmp, sizeof tmp);
            }
            mc_tls_strerror(c.t, c.err, sizeof c.err);
        }
        if (f == MC_ETLS || !send_first) {
            CHECK_MSG(f == MC_ETLS && contains(c.err, alert)
                          && (hint == NULL || contains(c.err, hint)),
                      "%zd %s", f, c.err);
        }
        else {
            CHECK_MSG((f == -ECONNRESET || f == -EPIPE)
                          && request_hint != NULL
                          && contains(c.err, request_hint),
                      "%zd %s", f, c.err);
        }
        client_close(&c);
    }
}

static void
test_mtls(int port)
{
    char err[320];
    struct mc_tls_ctx *ctx;

    set_ctx("mutual TLS with a client certificate");
    ctx = make_ctx("ca.pem", "client.pem", "client.key", true, NULL, 0);
    CHECK_MSG(handshake_with(ctx, port, "localhost", err, sizeof err, true)
                  == 0, "%s", err);
    mc_tls_ctx_free(ctx);
    ctx = make_ctx("ca.pem", "client.pem", "client.key", true, NULL,
                   MC_TLS_V1_2);
    CHECK_MSG(handshake_with(ctx, port, "localhost", err, sizeof err, true)
                  == 0, "%s", err);
    mc_tls_ctx_free(ctx);

    set_ctx("mutual TLS with an encrypted key");
    struct mc_tls_config cfg;
    mc_tls_config_init(&cfg);
    cfg.ca_file = path("ca.pem");
    cfg.cert_file = path("client.pem");
    cfg.key_file = path("client-enc.key");
    cfg.password = KEY_PASSWORD;
    ctx = mc_tls_ctx_new(&cfg, err, sizeof err);
    if (CHECK_MSG(ctx != NULL, "%s", err)) {
        CHECK_MSG(handshake_with(ctx, port, "127.0.0.1", err, sizeof err,
                                 true) == 0, "%s", err);
        mc_tls_ctx_free(ctx);
    }

    const char *hint = "the server requires a client certificate and none "
                       "is configured";
    ctx = make_ctx("ca.pem", NULL, NULL, true, NULL, 0);
    check_refused(ctx, port, "no client certificate, TLS 1.3",
                  "tlsv13 alert certificate required", hint,
                  "the server asked for a client certificate and none is "
                  "configured");
    mc_tls_ctx_free(ctx);
    ctx = make_ctx("ca.pem", NULL, NULL, true, NULL, MC_TLS_V1_2);
    check_refused(ctx, port, "no client certificate, TLS 1.2",
                  "sslv3 alert handshake failure", hint, NULL);
    mc_tls_ctx_free(ctx);

    ctx = make_ctx("ca.pem", "wrongclient.pem", "wrongclient.key", true, NULL,
                   0);
    check_refused(ctx, port, "a client certificate of another CA",
                  "tlsv1 alert unknown ca",
                  "the server does not trust the issuer",
                  "the server asked for a client certificate and may have "
                  "refused cert_file's");
    mc_tls_ctx_free(ctx);
}

/* ssl_verify_mode=1 asks for a certificate but accepts none. */
static void
test_mtls_optional(int port)
{
    char err[320];
    set_ctx("ssl_verify_mode=1 without a client certificate");
    struct mc_tls_ctx *ctx = make_ctx("ca.pem", NULL, NULL, true, NULL, 0);
    CHECK_MSG(handshake_with(ctx, port, "localhost", err, sizeof err, true)
                  == 0, "%s", err);
    mc_tls_ctx_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* Session resumption                                                        */

/* Two connections sharing a slot: the second resumes. */
static void
check_resumes(struct mc_tls_ctx *ctx, int port, const char *what)
{
    set_ctx("%s", what);
    struct mc_tls_session *slot = mc_tls_session_new();
    struct client c;
    CHECK(!mc_tls_session_saved(slot));
    if (client_open(&c, ctx, port, "localhost", slot)) {
        CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
        CHECK(!mc_tls_resumed(c.t));
        client_version_ok(&c); /* reads the TLS 1.3 tickets too */
        client_close(&c);
    }
    CHECK(mc_tls_session_saved(slot));
    for (int round = 0; round < 2; round++) {
        if (client_open(&c, ctx, port, "localhost", slot)) {
            CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
            CHECK_MSG(mc_tls_resumed(c.t), "round %d: %s", round,
                      mc_tls_version(c.t));
            client_version_ok(&c);
            client_close(&c);
        }
    }
    mc_tls_session_clear(slot);
    CHECK(!mc_tls_session_saved(slot));
    if (client_open(&c, ctx, port, "localhost", slot)) {
        CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
        CHECK(!mc_tls_resumed(c.t));
        /* The slot outlives its owner's reference while c holds it. */
        mc_tls_session_free(slot);
        client_version_ok(&c);
        client_close(&c);
    }
    else {
        mc_tls_session_free(slot);
    }
}

static void
test_resumption(int port)
{
    struct mc_tls_ctx *ctx = make_ctx("ca.pem", NULL, NULL, true, NULL, 0);
    check_resumes(ctx, port, "resumption, TLS 1.3");

    /* TLS 1.3: the session arrives after the handshake, with the first
     * reply; a connection that never reads saves none. */
    set_ctx("TLS 1.3 tickets come after the handshake");
    struct mc_tls_session *slot = mc_tls_session_new();
    struct client c;
    if (client_open(&c, ctx, port, "localhost", slot)) {
        CHECK(client_handshake(&c) == 0);
        CHECK(!mc_tls_session_saved(slot));
        client_close(&c);
    }
    mc_tls_session_free(slot);
    mc_tls_ctx_free(ctx);

    ctx = make_ctx("ca.pem", NULL, NULL, true, NULL, MC_TLS_V1_2);
    check_resumes(ctx, port, "resumption, TLS 1.2");
    mc_tls_ctx_free(ctx);

    ctx = make_ctx(NULL, NULL, NULL, false, NULL, 0);
    check_resumes(ctx, port, "resumption, verify off");
    mc_tls_ctx_free(ctx);
}

/* memcached with ssl_verify_mode >= 1 and no ssl_session_cache fails any
 * handshake that offers a session: the slot then stops offering. */
static void
test_resume_refused(int port)
{
    set_ctx("resumption refused");
    struct mc_tls_ctx *ctx = make_ctx("ca.pem", "client.pem", "client.key",
                                      true, NULL, 0);
    struct mc_tls_session *slot = mc_tls_session_new();
    struct client c;
    if (client_open(&c, ctx, port, "localhost", slot)) {
        CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
        client_version_ok(&c);
        client_close(&c);
    }
    CHECK(mc_tls_session_saved(slot));
    if (client_open(&c, ctx, port, "localhost", slot)) {
        int rc = client_handshake(&c);
        CHECK_MSG(rc == MC_ETLS && mc_tls_resume_failed(c.t)
                      && contains(c.err, "tlsv1 alert internal error")
                      && contains(c.err, "while resuming a saved session"),
                  "%d %s", rc, c.err);
        client_close(&c);
    }
    CHECK(!mc_tls_session_saved(slot));
    for (int round = 0; round < 2; round++) {
        if (client_open(&c, ctx, port, "localhost", slot)) {
            CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
            CHECK(!mc_tls_resumed(c.t) && !mc_tls_resume_failed(c.t));
            client_version_ok(&c);
            client_close(&c);
        }
        CHECK(!mc_tls_session_saved(slot)); /* no longer saved */
    }
    mc_tls_session_free(slot);
    mc_tls_ctx_free(ctx);
}

/* Threads sharing one slot (the engine's pool, its GIL released): every
 * connection works, and later ones resume. */
struct slot_job {
    struct mc_tls_ctx *ctx;
    struct mc_tls_session *slot;
    int port;
    int ok, resumed;
};

static void *
slot_worker(void *arg)
{
    struct slot_job *j = arg;
    for (int i = 0; i < 5; i++) {
        int fd = tcp_connect(j->port);
        if (fd < 0) {
            continue;
        }
        struct mc_tls *t = mc_tls_new(j->ctx, fd, "localhost", 9, j->slot);
        struct mc_buf b;
        mc_buf_init(&b);
        if (t != NULL && mc_tls_handshake_by(t, mc_now() + 5 * SEC) == 0) {
            struct iovec iov = {.iov_base = "version\r\n", .iov_len = 9};
            struct mc_out out = {.iov = &iov, .iovcnt = 1};
            int64_t deadline = mc_now() + 5 * SEC;
            ssize_t n = 0;
            for (int k = 0; k < 1000 && n >= 0; k++) {
                if (mc_buf_reserve(&b, 4096) < 0) {
                    break;
                }
                n = mc_tls_step(t, &out, &b, true, false, deadline);
                if (mc_buf_len(&b) >= 2
                    && memcmp(b.data + b.end - 2, "\r\n", 2) == 0) {
                    break;
                }
            }
            if (mc_buf_len(&b) > 8 && memcmp(b.data, "VERSION ", 8) == 0) {
                __atomic_add_fetch(&j->ok, 1, __ATOMIC_RELAXED);
            }
            if (mc_tls_resumed(t)) {
                __atomic_add_fetch(&j->resumed, 1, __ATOMIC_RELAXED);
            }
        }
        mc_tls_free(t);
        close(fd);
        mc_buf_free(&b);
    }
    return NULL;
}

static void
test_slot_threads(int port, struct mc_tls_ctx *ctx)
{
    set_ctx("4 threads, one slot");
    struct slot_job j = {.ctx = ctx, .slot = mc_tls_session_new(),
                         .port = port};
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        pthread_create(&th[i], NULL, slot_worker, &j);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK_MSG(j.ok == 20 && j.resumed >= 1 && j.resumed < 20,
              "%d ok, %d resumed", j.ok, j.resumed);
    mc_tls_session_free(j.slot);
}

/* Without mc_tls_handshake, the first send makes the handshake; its
 * failure comes from there. */
static void
test_implicit_handshake(int port, int other_port, struct mc_tls_ctx *ctx)
{
    set_ctx("handshake inside the first step");
    struct client c;
    if (client_open(&c, ctx, port, "localhost", NULL)) {
        client_version_ok(&c);
        CHECK(mc_tls_handshake(c.t) == 0 && !mc_tls_resumed(c.t));
        client_close(&c);
    }
    set_ctx("a verification failure from the first step");
    if (client_open(&c, ctx, other_port, "localhost", NULL)) {
        char text[64];
        ssize_t f = client_request(&c, "version\r\n", text, sizeof text);
        CHECK_MSG(f == MC_ETLS && contains(c.err, "hostname mismatch"),
                  "%zd %s", f, c.err);
        client_close(&c);
    }
}

/* ------------------------------------------------------------------------ */
/* Closes                                                                    */

static void
test_eof(int port, struct mc_tls_ctx *ctx)
{
    set_ctx("quit: memcached closes with close_notify");
    struct client c;
    struct fake fk;
    if (client_open(&c, ctx, port, "localhost", NULL)) {
        CHECK(client_handshake(&c) == 0);
        char text[64];
        ssize_t f = client_request(&c, "quit\r\n", text, sizeof text);
        CHECK_MSG(f == MC_EEOF && mc_tls_clean_eof(c.t)
                      && strcmp(c.err, "connection closed by the server "
                                       "(close_notify)") == 0,
                  "%zd %s", f, c.err);
        CHECK(mc_tls_recv(c.t, text, sizeof text) == MC_EEOF);
        CHECK(mc_tls_stale(c.t));
        client_close(&c);
    }

    set_ctx("mc_tls_free sends a close_notify");
    fake_start(&fk, FAKE_CLOSE_NOTIFY, 1);
    if (client_open(&c, ctx, fk.port, "localhost", NULL)) {
        CHECK(client_handshake(&c) == 0);
        char line[64];
        CHECK(client_line(&c, line, sizeof line, mc_now() + 5 * SEC) == 2
              && strcmp(line, "HI") == 0);
        client_close(&c);
        int st = 0;
        pid_t w = waitpid(fk.pid, &st, 0);
        CHECK_MSG(w == fk.pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "pid %d status %#x", (int)w, st);
    }
    else {
        fake_stop(&fk);
    }

    set_ctx("a TCP close without close_notify");
    fake_start(&fk, FAKE_NO_CLOSE_NOTIFY, 1);
    if (client_open(&c, ctx, fk.port, "localhost", NULL)) {
        CHECK(client_handshake(&c) == 0);
        char line[64];
        CHECK(client_line(&c, line, sizeof line, mc_now() + 5 * SEC) == 3
              && strcmp(line, "BYE") == 0);
        ssize_t e = client_line(&c, line, sizeof line, mc_now() + 5 * SEC);
        CHECK_MSG(e == MC_EEOF && !mc_tls_clean_eof(c.t)
                      && contains(c.err, "without a close_notify"),
                  "%zd %s", e, c.err);
        client_close(&c);
    }
    fake_stop(&fk);

    set_ctx("plain TCP server closes during the handshake");
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof a) == 0
        && listen(lfd, 1) == 0
        && getsockname(lfd, (struct sockaddr *)&a, &len) == 0
        && client_open(&c, ctx, ntohs(a.sin_port), "localhost", NULL)) {
        int sfd = accept(lfd, NULL, NULL);
        shutdown(sfd, SHUT_WR);
        int rc = client_handshake(&c);
        CHECK_MSG(rc == MC_EEOF && contains(c.err, "during the TLS "
                                                   "handshake"),
                  "%d %s", rc, c.err);
        client_close(&c);
        close(sfd);
    }
    close(lfd);
}

/* ------------------------------------------------------------------------ */
/* Deadlines                                                                 */

/* True once deadline (mc_now's coarse clock) has passed on the precise
 * clock, which is never behind the coarse one: a call that returns
 * -ETIMEDOUT waited at least until its deadline. */
static bool
waited_until(int64_t deadline)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec >= deadline;
}

static void
on_signal(int sig)
{
    (void)sig;
}

struct kicker {
    pthread_t target;
    long after_ms;
};

static void *
kick(void *arg)
{
    struct kicker *k = arg;
    sleep_ms(k->after_ms);
    pthread_kill(k->target, SIGUSR1);
    return NULL;
}

static void
test_deadlines(struct server *s, struct mc_tls_ctx *ctx)
{
    struct client c;
    int64_t deadline;
    int rc;

    set_ctx("SIGSTOPped server before the server's hello");
    server_pause(s);
    if (client_open(&c, ctx, s->port, "localhost", NULL)) {
        deadline = mc_now() + 300 * MS;
        rc = mc_tls_handshake_by(c.t, deadline);
        CHECK_MSG(rc == -ETIMEDOUT && waited_until(deadline), "%d", rc);

        /* A signal ends the wait with -EINTR; the same deadline again. */
        set_ctx("EINTR");
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal; /* no SA_RESTART */
        sigaction(SIGUSR1, &sa, NULL);
        struct kicker k = {.target = pthread_self(), .after_ms = 100};
        pthread_t th;
        pthread_create(&th, NULL, kick, &k);
        deadline = mc_now() + 10 * SEC;
        rc = mc_tls_handshake_by(c.t, deadline);
        pthread_join(th, NULL);
        CHECK_MSG(rc == -EINTR && mc_now() < deadline, "%d", rc);
        deadline = mc_now() + 200 * MS;
        rc = mc_tls_handshake_by(c.t, deadline);
        CHECK_MSG(rc == -ETIMEDOUT && waited_until(deadline), "%d", rc);
        signal(SIGUSR1, SIG_DFL);
        client_close(&c);
    }
    server_resume(s);

    /* TLS 1.2: the server is stopped once its first flight has arrived
     * and before the client answered it, so the client sends its Finished
     * and then waits for the server's.  (The ClientHello goes out while the
     * server is stopped, so the first call cannot have read the flight.) */
    set_ctx("SIGSTOPped server mid-handshake (TLS 1.2)");
    struct mc_tls_ctx *ctx12 = make_ctx("ca.pem", NULL, NULL, true, NULL,
                                        MC_TLS_V1_2);
    server_pause(s);
    if (client_open(&c, ctx12, s->port, "localhost", NULL)) {
        rc = mc_tls_handshake(c.t);
        CHECK_MSG(rc == MC_TLS_WANT_READ, "%d", rc);
        server_resume(s);
        CHECK(mc_conn_wait(c.fd, POLLIN, mc_now() + 5 * SEC) > 0);
        server_pause(s);
        deadline = mc_now() + 300 * MS;
        rc = mc_tls_handshake_by(c.t, deadline);
        CHECK_MSG(rc == -ETIMEDOUT && waited_until(deadline), "%d", rc);
        server_resume(s);
        /* resumed, the server finishes the handshake */
        rc = mc_tls_handshake_by(c.t, mc_now() + 5 * SEC);
        CHECK_MSG(rc == 0, "%d", rc);
        client_version_ok(&c);
        client_close(&c);
    }
    else {
        server_resume(s);
    }
    mc_tls_ctx_free(ctx12);

    set_ctx("SIGSTOPped server mid-request");
    if (client_open(&c, ctx, s->port, "localhost", NULL)) {
        CHECK(client_handshake(&c) == 0);
        client_version_ok(&c);
        server_pause(s);
        char text[64];
        struct iovec iov = {.iov_base = "version\r\n", .iov_len = 9};
        struct mc_out out = {.iov = &iov, .iovcnt = 1};
        struct mc_reply r;
        memset(&r, 0, sizeof r);
        deadline = mc_now() + 300 * MS;
        ssize_t f = client_frame(&c, &out, &r, deadline);
        CHECK_MSG(f == -ETIMEDOUT && waited_until(deadline) && out.iovcnt == 0,
                  "%zd", f);

        /* The blocking receive, bounded by SO_RCVTIMEO, then the deadline. */
        set_ctx("block: one receive bounded by SO_RCVTIMEO");
        CHECK(mc_conn_set_blocking(c.fd, 200 * MS) == 0);
        iov.iov_base = "version\r\n";
        iov.iov_len = 9;
        out.iov = &iov;
        out.iovcnt = 1;
        deadline = mc_now() + 500 * MS;
        int zeros = 0;
        ssize_t n = 0;
        for (int i = 0; i < 1000; i++) {
            mc_buf_reserve(&c.b, 4096);
            n = mc_tls_step(c.t, &out, &c.b, true, i == 0, deadline);
            if (n != 0) {
                break;
            }
            zeros++;
        }
        CHECK_MSG(n == -ETIMEDOUT && zeros >= 1 && waited_until(deadline),
                  "%zd after %d zeros", n, zeros);

        /* A blocked write: fill the socket, then free without waiting. */
        set_ctx("writes to a stopped server");
        static char chunk[1 << 16];
        memset(chunk, 'x', sizeof chunk);
        static struct iovec big[256];
        for (int i = 0; i < 256; i++) {
            big[i].iov_base = chunk;
            big[i].iov_len = sizeof chunk;
        }
        out.iov = big;
        out.iovcnt = 256;
        deadline = mc_now() + 300 * MS;
        n = 0;
        for (int i = 0; i < 100000 && n == 0; i++) {
            n = mc_tls_step(c.t, &out, &c.b, false, false, deadline);
        }
        CHECK_MSG(n == -ETIMEDOUT && out.iovcnt > 0 && waited_until(deadline),
                  "%zd, %d iovecs left", n, out.iovcnt);
        (void)text;
        client_close(&c); /* must return at once */
        server_resume(s);
    }

    set_ctx("a handshake trickled one byte at a time");
    struct fake f;
    fake_start(&f, FAKE_TRICKLE_HELLO, 1);
    if (client_open(&c, ctx, f.port, "localhost", NULL)) {
        deadline = mc_now() + 300 * MS;
        rc = mc_tls_handshake_by(c.t, deadline);
        CHECK_MSG(rc == -ETIMEDOUT && waited_until(deadline), "%d", rc);
        client_close(&c);
    }
    fake_stop(&f);

    set_ctx("a reply trickled one byte at a time");
    fake_start(&f, FAKE_TRICKLE_REPLY, 2);
    if (client_open(&c, ctx, f.port, "localhost", NULL)) {
        CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
        char line[64];
        deadline = mc_now() + 300 * MS;
        ssize_t n = client_line(&c, line, sizeof line, deadline);
        CHECK_MSG(n == -ETIMEDOUT && waited_until(deadline), "%zd", n);
        client_close(&c);
    }
    /* the same reply with time enough arrives whole */
    set_ctx("a trickled reply with time enough");
    if (client_open(&c, ctx, f.port, "localhost", NULL)) {
        CHECK_MSG(client_handshake(&c) == 0, "%s", c.err);
        char line[64];
        ssize_t n = client_line(&c, line, sizeof line, mc_now() + 20 * SEC);
        CHECK_MSG(n > 0 && strcmp(line, "VERSION 1.6.18") == 0, "%zd %s", n,
                  line);
        client_close(&c);
    }
    fake_stop(&f);
}

/* ------------------------------------------------------------------------ */

int
main(void)
{
    make_certificates();
    test_ctx_errors();

    struct server plain, other, mtls, mtls_nocache, mtls_optional;
    char opts[512];
    server_start(&plain, "server.pem", "server.key", "");
    server_start(&other, "other.pem", "other.key", "");
    struct mc_tls_ctx *ctx = make_ctx("ca.pem", NULL, NULL, true, NULL, 0);

    test_raw_api(plain.port, ctx);
    test_set_get(plain.port, ctx);
    test_large_value(plain.port, ctx);
    test_records(ctx);
    {
        char ver[64] = "";
        struct client c;
        if (client_open(&c, ctx, plain.port, "localhost", NULL)) {
            client_request(&c, "version\r\n", ver, sizeof ver);
            client_close(&c);
        }
        unsigned major = 0, minor = 0, patch = 0;
        CHECK(sscanf(ver, "VERSION %u.%u.%u", &major, &minor, &patch) == 3);
        bool stalls = major == 1 && (minor < 6 || (minor == 6 && patch < 39));
        test_pipelined_value(plain.port, ctx, stalls);
    }
    test_pipelined_sets(plain.port, ctx);
    test_verify(plain.port, other.port);
    test_sni();
    test_resumption(plain.port);
    test_slot_threads(plain.port, ctx);
    test_implicit_handshake(plain.port, other.port, ctx);
    test_eof(plain.port, ctx);
    test_deadlines(&plain, ctx);
    server_stop(&other);

    snprintf(opts, sizeof opts,
             ",ssl_ca_cert=%s,ssl_verify_mode=2,ssl_session_cache",
             path("ca.pem"));
    server_start(&mtls, "server.pem", "server.key", opts);
    test_mtls(mtls.port);
    {
        struct mc_tls_ctx *m = make_ctx("ca.pem", "client.pem", "client.key",
                                        true, NULL, 0);
        check_resumes(m, mtls.port, "resumption with mutual TLS");
        mc_tls_ctx_free(m);
    }
    server_stop(&mtls);

    snprintf(opts, sizeof opts, ",ssl_ca_cert=%s,ssl_verify_mode=3",
             path("ca.pem"));
    server_start(&mtls_nocache, "server.pem", "server.key", opts);
    test_resume_refused(mtls_nocache.port);
    server_stop(&mtls_nocache);

    snprintf(opts, sizeof opts, ",ssl_ca_cert=%s,ssl_verify_mode=1",
             path("ca.pem"));
    server_start(&mtls_optional, "server.pem", "server.key", opts);
    test_mtls_optional(mtls_optional.port);
    server_stop(&mtls_optional);

    server_stop(&plain);
    mc_tls_ctx_free(ctx);
    remove_files();
    return check_summary();
}
