/* Key distributions: which server of a list holds a key, the way
 * python-memcached, libmemcached (pylibmc), twemproxy and pymemcache decide.
 * No Python, no I/O; the tables are built once with malloc. */
#ifndef CMEMCACHE_DIST_H
#define CMEMCACHE_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hash.h"

enum mc_distribution {
    MC_DIST_PYTHON_MEMCACHED,   /* crc32 buckets repeated by weight */
    MC_DIST_KETAMA,             /* libketama weighted MD5 ring (pylibmc
                                 * ketama_weighted, twemproxy md5+ketama) */
    MC_DIST_LIBMEMCACHED_KETAMA, /* pylibmc {"ketama": True}: 100 points per
                                  * server hashed with the key hash */
    MC_DIST_MODULA,             /* libmemcached's hash % nservers */
    MC_DIST_RENDEZVOUS,         /* pymemcache HashClient: murmur3 HRW */
};

enum mc_hash_fn {
    MC_HASH_PM,                 /* python-memcached <= 1.59 (0 read as 1) */
    MC_HASH_PM160,              /* python-memcached >= 1.60, libmemcached crc */
    MC_HASH_CRC32,              /* plain crc32 (useOldServerHashFunction) */
    MC_HASH_OAAT,               /* libmemcached "default" one-at-a-time */
    MC_HASH_MD5,                /* MD5 word 0 */
    MC_HASH_MURMUR3,            /* murmur3_32, seed 0 (rendezvous scores) */
};

struct mc_dist_server {
    const char *name;           /* ring / rendezvous node name */
    size_t name_len;
    uint32_t weight;
};

struct mc_dist {
    enum mc_distribution kind;
    enum mc_hash_fn hash;
    size_t nservers;
    uint32_t *buckets;          /* python-memcached */
    size_t nbuckets;
    struct mc_point *ring;      /* the ketama kinds */
    size_t nring;
    char *names;                /* rendezvous: node names, concatenated */
    size_t *name_off;           /* nservers + 1 offsets into names */
};

/* Builds the tables for servers[0..n).  Returns 0, or -1 when out of
 * memory (nothing is left allocated). */
int mc_dist_build(struct mc_dist *d, enum mc_distribution kind,
                  enum mc_hash_fn hash, const struct mc_dist_server *servers,
                  size_t n);

void mc_dist_free(struct mc_dist *d);

/* The key hash of the distribution. */
uint32_t mc_dist_hash(const struct mc_dist *d, const char *key, size_t len);

/* The server for a key hash (every kind but rendezvous).  With dead (one
 * flag per server, or NULL), dead servers are skipped as each kind does:
 * the ring moves on to the next point, modula takes hash % live servers.
 * python-memcached's buckets do not skip (its walk rehashes the key; see
 * client.c).  Returns -1 when every server is dead. */
ssize_t mc_dist_pick(const struct mc_dist *d, uint32_t h,
                     const bool *dead);

/* Rendezvous: the live server with the highest murmur3 of
 * "<node>-<text>" (ties: the larger node name).  text is the key as
 * pymemcache formats it.  Returns -1 when every server is dead. */
ssize_t mc_dist_pick_rendezvous(const struct mc_dist *d, const char *text,
                                size_t len, const bool *dead);

#endif
