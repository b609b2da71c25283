/* Key -> server mapping: the hash functions and rings of python-memcached,
 * libmemcached (pylibmc), twemproxy and pymemcache.  Pure functions: no
 * allocation (callers pass the arrays), no I/O. */
#ifndef CMEMCACHE_HASH_H
#define CMEMCACHE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The CRC-32 of zlib and binascii.crc32. */
uint32_t mc_crc32(const char *data, size_t len);

/* python-memcached's server hash: (crc32 >> 16) & 0x7fff, with 0 read as 1,
 * so the result is 1..32767 (python-memcached up to 1.59). */
uint32_t mc_hash_pm(const char *key, size_t len);

/* python-memcached >= 1.60 and libmemcached's "crc": the same without the
 * 0 -> 1 rule (0..32767). */
uint32_t mc_hash_pm160(const char *key, size_t len);

/* Bob Jenkins' one-at-a-time as libmemcached computes it on x86-64, where
 * each byte is read as a signed char (bytes >= 0x80 add a negative
 * number). */
uint32_t mc_one_at_a_time(const char *key, size_t len);

/* The MD5 digest of data. */
void mc_md5(const void *data, size_t len, unsigned char digest[16]);

/* Word `word` (0..3) of an MD5 digest, little-endian: libmemcached's md5
 * key hash is word 0. */
static inline uint32_t
mc_md5_word(const unsigned char d[16], int word)
{
    const unsigned char *p = d + 4 * word;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16
           | (uint32_t)p[3] << 24;
}

uint32_t mc_md5_32(const char *key, size_t len);

/* MurmurHash3 x86 32-bit. */
uint32_t mc_murmur3_32(const unsigned char *data, size_t len, uint32_t seed);

/* One point of a consistent-hashing ring. */
struct mc_point {
    uint32_t value;
    uint32_t server;
};

/* Points that libketama's weighted ring gives a server of this weight:
 * floor(w / total * 160 / 4 * nservers + 1e-10) * 4, in single precision
 * as libmemcached and twemproxy compute it. */
uint32_t mc_ketama_weighted_points(uint32_t weight, uint64_t total,
                                   uint32_t nservers);

/* Writes the weighted ring's points of one server (npoints, a multiple of
 * 4): for i in 0 .. npoints/4-1 the four words of MD5("<name>-<i>").
 * name is at most 300 bytes. */
void mc_ketama_weighted_fill(const char *name, size_t name_len,
                             uint32_t npoints, uint32_t server,
                             struct mc_point *out);

/* Writes libmemcached's 100 unweighted points of one server: hash of
 * "<name>-<i>" for i in 0..99, with one-at-a-time, or MD5 word 0. */
#define MC_KETAMA_PLAIN_POINTS 100
void mc_ketama_plain_fill(const char *name, size_t name_len, bool md5,
                          uint32_t server, struct mc_point *out);

/* Sorts a ring by value, ties by server index. */
void mc_ring_sort(struct mc_point *ring, size_t n);

/* The index of the first point whose value is >= h, wrapping to 0. */
size_t mc_ring_find(const struct mc_point *ring, size_t n, uint32_t h);

#endif
