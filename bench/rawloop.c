/*
 * rawloop: the raw limit for one blocking client connection to memcached.
 *
 * One blocking TCP socket with TCP_NODELAY, the request bytes built once, then
 * N iterations of "write the whole request, read until the whole reply is in".
 * The reply is parsed only as far as needed to know it is complete: a get ends
 * with "END\r\n", a set with "STORED\r\n", a get_multi with its final "END\r\n".
 * The first reply of each kind is compared byte for byte with the expected
 * reply so a broken setup cannot produce a number.
 *
 * usage: rawloop HOST PORT OP SIZE NKEYS N [WARMUP]
 *   OP     get | set | get_multi
 *   SIZE   value size in bytes (get / set / each key of get_multi)
 *   NKEYS  keys per get_multi (ignored otherwise, pass 1)
 *   N      timed iterations
 *   WARMUP untimed iterations before them (default: N/10)
 *
 * Prints one JSON object: {"op":..., "size":..., "nkeys":..., "ops":N,
 *   "seconds":..., "ops_per_sec":..., "ns_per_op":...}
 * Exit status 0 on success, 1 on usage error, 2 on I/O or reply mismatch.
 *
 * The get cases store their keys first (untimed). Keys are "rawloop:<op>:<size>"
 * and "rawloop:m:<size>:<i>", so they do not collide with the Python clients.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE (8u << 20)
#define MAX_KEYS 10000

struct buf {
    char *p;
    size_t len, cap;
};

static void die(const char *what)
{
    fprintf(stderr, "rawloop: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(2);
}

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        die("realloc");
    b->p = p;
    b->cap = cap;
}

static void buf_add(struct buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        errno = 0;
        die("format");
    }
    buf_add(b, tmp, (size_t)n);
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints, *res, *it;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "rawloop: getaddrinfo: %s\n", gai_strerror(rc));
        exit(2);
    }
    int fd = -1;
    for (it = res; it; it = it->ai_next) {
        fd = socket(it->ai_family, it->ai_socktype, it->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, it->ai_addr, it->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        die("connect");
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        die("setsockopt TCP_NODELAY");
    return fd;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("write");
        }
        p += w;
        n -= (size_t)w;
    }
}

static int ends_with(const char *p, size_t len, const char *tail, size_t tlen)
{
    return len >= tlen && memcmp(p + len - tlen, tail, tlen) == 0;
}

/*
 * Read one reply into rbuf (capacity rcap) until it ends with tail.
 * Returns the reply length. A reply that fills the buffer without ending is
 * an error (the buffer is sized for the expected reply plus slack).
 */
static size_t read_reply(int fd, char *rbuf, size_t rcap, const char *tail, size_t tlen)
{
    size_t len = 0;
    for (;;) {
        if (len == rcap) {
            errno = 0;
            die("reply larger than expected");
        }
        ssize_t r = read(fd, rbuf + len, rcap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("read");
        }
        if (r == 0) {
            errno = 0;
            die("server closed the connection");
        }
        len += (size_t)r;
        if (ends_with(rbuf, len, tail, tlen))
            return len;
    }
}

static void roundtrip_check(int fd, const struct buf *req, const struct buf *expect,
                            char *rbuf, size_t rcap, const char *tail, const char *what)
{
    write_all(fd, req->p, req->len);
    size_t n = read_reply(fd, rbuf, rcap, tail, strlen(tail));
    if (n != expect->len || memcmp(rbuf, expect->p, n) != 0) {
        fprintf(stderr, "rawloop: unexpected reply to %s (%zu bytes, expected %zu): %.80s\n",
                what, n, expect->len, rbuf);
        exit(2);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static unsigned long parse_ul(const char *s, const char *name, unsigned long lo, unsigned long hi)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "rawloop: bad %s: %s\n", name, s);
        exit(1);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: rawloop HOST PORT get|set|get_multi SIZE NKEYS N [WARMUP]\n");
        return 1;
    }
    const char *host = argv[1], *port = argv[2], *op = argv[3];
    size_t size = parse_ul(argv[4], "SIZE", 0, MAX_SIZE);
    size_t nkeys = parse_ul(argv[5], "NKEYS", 1, MAX_KEYS);
    unsigned long n = parse_ul(argv[6], "N", 1, 1000000000UL);

    int is_get = strcmp(op, "get") == 0;
    int is_set = strcmp(op, "set") == 0;
    int is_multi = strcmp(op, "get_multi") == 0;
    if (!is_get && !is_set && !is_multi) {
        fprintf(stderr, "rawloop: unknown op %s\n", op);
        return 1;
    }
    if (!is_multi)
        nkeys = 1;

    char *value = malloc(size ? size : 1);
    if (!value)
        die("malloc");
    for (size_t i = 0; i < size; i++)
        value[i] = (char)('a' + i % 26);

    int fd = connect_to(host, port);

    struct buf req = {0}, expect = {0}, setup = {0}, setup_expect = {0};
    const char *tail;
    char key[128];

    if (is_set) {
        snprintf(key, sizeof key, "rawloop:set:%zu", size);
        buf_printf(&req, "set %s 0 0 %zu\r\n", key, size);
        buf_add(&req, value, size);
        buf_add(&req, "\r\n", 2);
        buf_add(&expect, "STORED\r\n", 8);
        tail = "STORED\r\n";
    } else {
        buf_printf(&req, "get");
        for (size_t i = 0; i < nkeys; i++) {
            if (is_multi)
                snprintf(key, sizeof key, "rawloop:m:%zu:%zu", size, i);
            else
                snprintf(key, sizeof key, "rawloop:get:%zu", size);
            buf_printf(&req, " %s", key);
            buf_printf(&setup, "set %s 0 0 %zu\r\n", key, size);
            buf_add(&setup, value, size);
            buf_add(&setup, "\r\n", 2);
            buf_add(&setup_expect, "STORED\r\n", 8);
            buf_printf(&expect, "VALUE %s 0 %zu\r\n", key, size);
            buf_add(&expect, value, size);
            buf_add(&expect, "\r\n", 2);
        }
        buf_add(&req, "\r\n", 2);
        buf_add(&expect, "END\r\n", 5);
        tail = "END\r\n";
    }

    size_t rcap = expect.len + 4096;
    char *rbuf = malloc(rcap);
    if (!rbuf)
        die("malloc");

    /* Untimed: store the keys the gets read (one STORED per key). */
    if (setup.len) {
        write_all(fd, setup.p, setup.len);
        size_t got = 0;
        while (got < setup_expect.len) {
            ssize_t r = read(fd, rbuf + got, setup_expect.len - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                die("read (setup)");
            got += (size_t)r;
        }
        if (memcmp(rbuf, setup_expect.p, got) != 0) {
            fprintf(stderr, "rawloop: setup store failed: %.80s\n", rbuf);
            return 2;
        }
    }

    /* Untimed: check one reply in full, then warm up. */
    roundtrip_check(fd, &req, &expect, rbuf, rcap, tail, op);
    unsigned long warm = n / 10;
    if (argc == 8)
        warm = parse_ul(argv[7], "WARMUP", 0, 1000000000UL);
    size_t tlen = strlen(tail);
    for (unsigned long i = 0; i < warm; i++) {
        write_all(fd, req.p, req.len);
        read_reply(fd, rbuf, rcap, tail, tlen);
    }

    double t0 = now();
    for (unsigned long i = 0; i < n; i++) {
        write_all(fd, req.p, req.len);
        read_reply(fd, rbuf, rcap, tail, tlen);
    }
    double dt = now() - t0;

    /* Untimed: the last reply must still be the expected one. */
    roundtrip_check(fd, &req, &expect, rbuf, rcap, tail, op);
    close(fd);

    if (dt <= 0)
        dt = 1e-9;
    printf("{\"op\": \"%s\", \"size\": %zu, \"nkeys\": %zu, \"ops\": %lu, "
           "\"seconds\": %.9f, \"ops_per_sec\": %.1f, \"ns_per_op\": %.1f}\n",
           op, size, nkeys, n, dt, (double)n / dt, dt * 1e9 / (double)n);
    free(rbuf);
    free(value);
    free(req.p);
    free(expect.p);
    free(setup.p);
    free(setup_expect.p);
    return 0;
}
