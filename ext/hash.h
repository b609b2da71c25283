/* Key -> server mapping.  Pure functions: no allocation, no I/O. */
#ifndef CMEMCACHE_HASH_H
#define CMEMCACHE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32 of zlib and binascii.crc32. */
uint32_t mc_crc32(const char *data, size_t len);

/* python-memcached's server hash: (crc32 >> 16) & 0x7fff, with 0 read as 1,
 * so the result is 1..32767. */
uint32_t mc_hash_pm(const char *key, size_t len);

/* python-memcached >= 1.60: the same without the 0 -> 1 rule (0..32767). */
uint32_t mc_hash_pm160(const char *key, size_t len);

#endif
