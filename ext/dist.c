#include "dist.h"

#include <stdlib.h>
#include <string.h>

void
mc_dist_free(struct mc_dist *d)
{
    free(d->buckets);
    free(d->ring);
    free(d->names);
    free(d->name_off);
    d->buckets = NULL;
    d->ring = NULL;
    d->names = NULL;
    d->name_off = NULL;
    d->nbuckets = d->nring = 0;
}

static int
build_ring(struct mc_dist *d, const struct mc_dist_server *servers, size_t n)
{
    uint64_t total = 0;
    bool weighted = d->kind == MC_DIST_KETAMA;
    for (size_t i = 0; i < n; i++) {
        total += servers[i].weight;
        weighted |= servers[i].weight != 1;  /* libmemcached switches too */
    }
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        count += weighted ? mc_ketama_weighted_points(servers[i].weight,
                                                      total, (uint32_t)n)
                          : MC_KETAMA_PLAIN_POINTS;
    }
    d->ring = malloc(sizeof(struct mc_point) * (count ? count : 1));
    if (d->ring == NULL) {
        return -1;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (weighted) {
            uint32_t pts = mc_ketama_weighted_points(servers[i].weight, total,
                                                     (uint32_t)n);
            mc_ketama_weighted_fill(servers[i].name, servers[i].name_len, pts,
                                    (uint32_t)i, d->ring + at);
            at += pts;
        }
        else {
            mc_ketama_plain_fill(servers[i].name, servers[i].name_len,
                                 d->hash == MC_HASH_MD5, (uint32_t)i,
                                 d->ring + at);
            at += MC_KETAMA_PLAIN_POINTS;
        }
    }
    d->nring = at;
    mc_ring_sort(d->ring, d->nring);
    return 0;
}

int
mc_dist_build(struct mc_dist *d, enum mc_distribution kind,
              enum mc_hash_fn hash, const struct mc_dist_server *servers,
              size_t n)
{
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    d->hash = hash;
    d->nservers = n;
    if (kind == MC_DIST_PYTHON_MEMCACHED) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            total += servers[i].weight;
        }
        d->buckets = malloc(sizeof(uint32_t) * (total ? total : 1));
        if (d->buckets == NULL) {
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            for (uint32_t w = 0; w < servers[i].weight; w++) {
                d->buckets[d->nbuckets++] = (uint32_t)i;
            }
        }
        return 0;
    }
    if (kind == MC_DIST_KETAMA || kind == MC_DIST_LIBMEMCACHED_KETAMA) {
        return build_ring(d, servers, n);
    }
    if (kind == MC_DIST_RENDEZVOUS) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            total += servers[i].name_len;
        }
        d->names = malloc(total ? total : 1);
        d->name_off = malloc(sizeof(size_t) * (n + 1));
        if (d->names == NULL || d->name_off == NULL) {
            mc_dist_free(d);
            return -1;
        }
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            d->name_off[i] = at;
            memcpy(d->names + at, servers[i].name, servers[i].name_len);
            at += servers[i].name_len;
        }
        d->name_off[n] = at;
    }
    return 0;
}

uint32_t
mc_dist_hash(const struct mc_dist *d, const char *key, size_t len)
{
    switch (d->hash) {
    case MC_HASH_PM:
        return mc_hash_pm(key, len);
    case MC_HASH_PM160:
        return mc_hash_pm160(key, len);
    case MC_HASH_CRC32:
        return mc_crc32(key, len);
    case MC_HASH_OAAT:
        return mc_one_at_a_time(key, len);
    case MC_HASH_MD5:
        return mc_md5_32(key, len);
    case MC_HASH_MURMUR3:
        return mc_murmur3_32((const unsigned char *)key, len, 0);
    }
    return 0;
}

ssize_t
mc_dist_pick(const struct mc_dist *d, uint32_t h, const bool *dead)
{
    if (d->nservers == 1) {
        return dead && dead[0] ? -1 : 0;
    }
    switch (d->kind) {
    case MC_DIST_PYTHON_MEMCACHED:
        return d->buckets[h % d->nbuckets];
    case MC_DIST_KETAMA:
    case MC_DIST_LIBMEMCACHED_KETAMA: {
        size_t at = mc_ring_find(d->ring, d->nring, h);
        for (size_t step = 0; step < d->nring; step++) {
            uint32_t s = d->ring[(at + step) % d->nring].server;
            if (dead == NULL || !dead[s]) {
                return s;
            }
        }
        return -1;
    }
    case MC_DIST_MODULA: {
        if (dead == NULL) {
            return (ssize_t)(h % d->nservers);
        }
        size_t live = 0;
        for (size_t i = 0; i < d->nservers; i++) {
            live += !dead[i];
        }
        if (live == 0) {
            return -1;
        }
        size_t want = h % live;
        for (size_t i = 0; i < d->nservers; i++) {
            if (!dead[i] && want-- == 0) {
                return (ssize_t)i;
            }
        }
        return -1;
    }
    case MC_DIST_RENDEZVOUS:
        break;
    }
    return -1;
}

ssize_t
mc_dist_pick_rendezvous(const struct mc_dist *d, const char *text,
                        size_t len, const bool *dead)
{
    unsigned char buf[2048];
    ssize_t best = -1;
    uint32_t best_score = 0;
    for (size_t i = 0; i < d->nservers; i++) {
        if (dead != NULL && dead[i]) {
            continue;
        }
        const char *name = d->names + d->name_off[i];
        size_t name_len = d->name_off[i + 1] - d->name_off[i];
        if (name_len + 1 + len > sizeof(buf)) {
            len = sizeof(buf) - name_len - 1;   /* keys are far shorter */
        }
        memcpy(buf, name, name_len);
        buf[name_len] = '-';
        memcpy(buf + name_len + 1, text, len);
        uint32_t score = mc_murmur3_32(buf, name_len + 1 + len, 0);
        if (best < 0 || score > best_score) {
            best = (ssize_t)i;
            best_score = score;
        }
        else if (score == best_score) {
            const char *bn = d->names + d->name_off[best];
            size_t bl = d->name_off[best + 1] - d->name_off[best];
            size_t m = bl < name_len ? bl : name_len;
            int c = memcmp(name, bn, m);
            if (c > 0 || (c == 0 && name_len > bl)) {
                best = (ssize_t)i;
            }
        }
    }
    return best;
}
