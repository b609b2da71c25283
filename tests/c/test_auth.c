/* Plain C tests of memcached's ASCII authentication: the checks and the
 * request of proto.c (mc_auth_check, mc_fmt_auth, mc_auth_reply), the
 * exchange of auth.c (mc_auth_run) over socketpairs whose other end this
 * file writes and reads itself (a refusal, a reply cut in two across a
 * timeout, a peer that closes, says nothing or never ends its line), and
 * the engine's rule that a refusal does not hold the server down.
 *
 * Usage: test_auth
 * The last line printed is "N passed, N failed"; the exit status is non-zero
 * when a check failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "check.h"
#include "conn.h"
#include "engine.h"
#include "proto.h"

#define MS 1000000LL

static void
test_check(void)
{
    char user[300], pass[300];
    memset(user, 'u', sizeof user);
    memset(pass, 'p', sizeof pass);
    set_ctx("mc_auth_check");
    CHECK_EQ(mc_auth_check("alice", 5, "s3cret", 6), MC_AUTH_OK);
    CHECK_EQ(mc_auth_check(user, 250, pass, 250), MC_AUTH_OK);
    CHECK_EQ(mc_auth_check("", 0, "x", 1), MC_AUTH_USER_EMPTY);
    CHECK_EQ(mc_auth_check(user, 251, "x", 1), MC_AUTH_USER_TOO_LONG);
    CHECK_EQ(mc_auth_check("a b", 3, "x", 1), MC_AUTH_USER_BAD_CHAR);
    CHECK_EQ(mc_auth_check("a\tb", 3, "x", 1), MC_AUTH_USER_BAD_CHAR);
    CHECK_EQ(mc_auth_check("a\x7f", 2, "x", 1), MC_AUTH_USER_BAD_CHAR);
    CHECK_EQ(mc_auth_check("a", 1, "", 0), MC_AUTH_PASS_EMPTY);
    CHECK_EQ(mc_auth_check("a", 1, pass, 251), MC_AUTH_PASS_TOO_LONG);
    CHECK_EQ(mc_auth_check("a", 1, "x\ry", 3), MC_AUTH_PASS_BAD_CHAR);
    CHECK_EQ(mc_auth_check("a", 1, "x\n", 2), MC_AUTH_PASS_BAD_CHAR);
    CHECK_EQ(mc_auth_check("a", 1, "x\0y", 3), MC_AUTH_PASS_BAD_CHAR);
    /* a blank or a tab is the password's own business */
    CHECK_EQ(mc_auth_check("a", 1, "x y\t", 4), MC_AUTH_OK);
}

static void
test_fmt(void)
{
    char out[MC_AUTH_REQ_MAX];
    set_ctx("mc_fmt_auth");
    size_t n = mc_fmt_auth(out, "alice", 5, "s3cret", 6);
    CHECK_BYTES(out, n, "set alice 0 0 12\r\nalice s3cret\r\n");
    char user[MC_MAX_KEY], pass[MC_MAX_PASSWORD];
    memset(user, 'u', sizeof user);
    memset(pass, 'p', sizeof pass);
    n = mc_fmt_auth(out, user, sizeof user, pass, sizeof pass);
    /* "set " user " 0 0 501\r\n" user " " pass "\r\n" */
    CHECK_EQ(n, 4 + 250 + 5 + 3 + 2 + 250 + 1 + 250 + 2);
    CHECK(n <= MC_AUTH_REQ_MAX);
    CHECK(memcmp(out + 4 + 250, " 0 0 501\r\n", 10) == 0);
}

static void
test_reply(void)
{
    const char *why = NULL;
    size_t wn = 0;
    set_ctx("mc_auth_reply");
    CHECK_EQ(mc_auth_reply("", 0, &why, &wn), 0);
    CHECK_EQ(mc_auth_reply("STORED\r", 7, &why, &wn), 0);
    CHECK_EQ(mc_auth_reply("STORED\r\n", 8, &why, &wn), 1);
    CHECK_EQ(mc_auth_reply("CLIENT_ERROR unauthenticated\r\n", 30, &why, &wn),
             -1);
    CHECK_BYTES(why, wn, "CLIENT_ERROR unauthenticated");
    CHECK_EQ(mc_auth_reply("STORED\n", 7, &why, &wn), -1);
    CHECK_EQ(mc_auth_reply("STORED\r\nEND\r\n", 13, &why, &wn), -1);
    CHECK_BYTES(why, wn, "bytes after STORED");
    char junk[MC_AUTH_REPLY_MAX];
    memset(junk, 'x', sizeof junk);
    CHECK_EQ(mc_auth_reply(junk, sizeof junk - 1, &why, &wn), 0);
    CHECK_EQ(mc_auth_reply(junk, sizeof junk, &why, &wn), -1);
    CHECK(wn > 0 && why != junk);
}

/* A non-blocking socketpair: sv[0] is the client's, sv[1] the server's. */
static void
pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   sv)
        != 0) {
        perror("socketpair");
        exit(2);
    }
}

static void
put(int fd, const char *s, size_t n)
{
    if (write(fd, s, n) != (ssize_t)n) {
        perror("write");
        exit(2);
    }
}

/* What the client sent, as the server end reads it. */
static size_t
take(int fd, char *out, size_t cap)
{
    ssize_t n = read(fd, out, cap);
    return n > 0 ? (size_t)n : 0;
}

static const char req[] = "set alice 0 0 12\r\nalice s3cret\r\n";
#define REQ_LEN (sizeof req - 1)

/* One exchange: a fresh pair whose server end already sent reply. */
struct exchange {
    int sv[2];
    struct mc_auth_io io;
    char why[256];
};

static void
ex_open(struct exchange *x, const char *reply, size_t n)
{
    pair(x->sv);
    if (n > 0) {
        put(x->sv[1], reply, n);
    }
    memset(&x->io, 0, sizeof x->io);
    x->why[0] = '\0';
}

/* mc_auth_run with a deadline ms from now and why_size bytes of why. */
static int
ex_run(struct exchange *x, int64_t ms, size_t why_size)
{
    return mc_auth_run(x->sv[0], NULL, req, REQ_LEN, &x->io,
                       mc_now() + ms * MS, x->why, why_size);
}

/* The request arrived whole, once. */
static void
ex_check_sent(struct exchange *x)
{
    char got[256];
    size_t n = take(x->sv[1], got, sizeof got);
    CHECK_BYTES(got, n, req);
}

static void
ex_close(struct exchange *x)
{
    for (int i = 0; i < 2; i++) {
        if (x->sv[i] >= 0) {
            close(x->sv[i]);
        }
    }
}

#define REFUSAL "CLIENT_ERROR unauthenticated\r\n"

static void
test_run(void)
{
    struct exchange x;

    set_ctx("mc_auth_run: STORED");
    ex_open(&x, "STORED\r\n", 8);
    CHECK_EQ(ex_run(&x, 1000, sizeof x.why), 0);
    ex_check_sent(&x);
    ex_close(&x);

    set_ctx("mc_auth_run: refused");
    ex_open(&x, REFUSAL, strlen(REFUSAL));
    CHECK_EQ(ex_run(&x, 1000, sizeof x.why), MC_EAUTH);
    CHECK_BYTES(x.why, strlen(x.why), "CLIENT_ERROR unauthenticated");
    ex_close(&x);

    set_ctx("mc_auth_run: a short why buffer is cut, still terminated");
    ex_open(&x, REFUSAL, strlen(REFUSAL));
    CHECK_EQ(ex_run(&x, 1000, 7), MC_EAUTH);
    CHECK_BYTES(x.why, strlen(x.why), "CLIENT");
    ex_close(&x);

    set_ctx("mc_auth_run: the reply in two parts, a timeout between");
    ex_open(&x, "STO", 3);
    CHECK_EQ(ex_run(&x, 30, sizeof x.why), -ETIMEDOUT);
    CHECK_EQ(x.io.sent, REQ_LEN);
    CHECK_EQ(x.io.got, 3);
    put(x.sv[1], "RED\r\n", 5);
    CHECK_EQ(ex_run(&x, 1000, sizeof x.why), 0);
    ex_check_sent(&x);          /* not sent again on resuming */
    ex_close(&x);

    set_ctx("mc_auth_run: the server says nothing");
    ex_open(&x, NULL, 0);
    int64_t t0 = mc_now();
    CHECK_EQ(ex_run(&x, 50, sizeof x.why), -ETIMEDOUT);
    CHECK(mc_now() - t0 >= 40 * MS);
    ex_close(&x);

    set_ctx("mc_auth_run: the server closes");
    ex_open(&x, NULL, 0);
    close(x.sv[1]);
    x.sv[1] = -1;
    int rc = ex_run(&x, 1000, sizeof x.why);
    CHECK(rc == MC_EEOF || rc == -EPIPE || rc == -ECONNRESET);
    ex_close(&x);

    set_ctx("mc_auth_run: a line that never ends is read 1 KiB at most");
    char junk[3000];
    memset(junk, 'x', sizeof junk);
    ex_open(&x, junk, sizeof junk);
    CHECK_EQ(ex_run(&x, 1000, sizeof x.why), MC_EAUTH);
    CHECK_EQ(x.io.got, MC_AUTH_REPLY_MAX);
    int left = 0;
    CHECK(ioctl(x.sv[0], FIONREAD, &left) == 0);
    CHECK_EQ(left, (int)sizeof junk - MC_AUTH_REPLY_MAX);
    ex_close(&x);
}

/* A refusal is no failure of the server; a refused connect is. */
static void
test_engine_hold(void)
{
    struct mc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.timeout = 1000 * MS;
    cfg.connect_timeout = 1000 * MS;
    cfg.dead_retry = 8000 * MS;
    cfg.max_value = 1 << 20;
    cfg.pool_size = 4;
    cfg.auth = malloc(MC_AUTH_REQ_MAX);
    if (cfg.auth == NULL) {
        exit(2);
    }
    cfg.auth_len = mc_fmt_auth(cfg.auth, "alice", 5, "s3cret", 6);
    struct mc_engine e;
    uint32_t one = 1;
    if (mc_engine_init(&e, &cfg, 1) != 0
        || mc_engine_set_server(&e, 0, "127.0.0.1:1", 11) != 0
        || mc_engine_build(&e, MC_DIST_KETAMA, MC_HASH_MD5, &one) != 0) {
        fprintf(stderr, "engine set-up failed\n");
        exit(2);
    }
    struct mc_server *srv = &e.servers[0];
    struct mc_conn *c;
    struct mc_fail f;

    set_ctx("engine: MC_EAUTH holds nothing down");
    CHECK_EQ(mc_engine_take(&e, srv, &c), MC_TAKE_CONNECT);
    CHECK(mc_engine_connected(&e, srv, MC_EAUTH, 0, &f) == NULL);
    CHECK_EQ(f.code, MC_EAUTH);
    CHECK(!mc_server_dead(srv));
    CHECK_EQ(mc_engine_take(&e, srv, &c), MC_TAKE_CONNECT);

    set_ctx("engine: a refused connect does");
    CHECK(mc_engine_connected(&e, srv, -ECONNREFUSED, 0, &f) == NULL);
    CHECK(mc_server_dead(srv));
    CHECK_EQ(mc_engine_take(&e, srv, &c), MC_TAKE_DEAD);
    mc_engine_free(&e);         /* wipes and frees cfg.auth */
    CHECK(e.cfg.auth == NULL);
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_check();
    test_fmt();
    test_reply();
    test_run();
    test_engine_hold();
    return check_summary();
}
