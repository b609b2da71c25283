/* The deterministic random numbers of the plain C tests and the fuzzers
 * (chunk sizes, property-test inputs): xorshift64*, a state of their own
 * or rng()'s, one sequence for the whole run.
 */
#ifndef CMEMCACHE_TEST_RAND_H
#define CMEMCACHE_TEST_RAND_H

#include <stdint.h>

static inline uint64_t
next_rand(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545f4914f6cdd1dULL;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static inline uint64_t
rng(void)
{
    return next_rand(&rng_state);
}

#endif
