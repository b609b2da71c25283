/* The reusable read buffer of one connection.
 *
 * Bytes live in data[start, end); recv() writes straight into the free tail
 * data[end, cap).  Consuming a frame advances start; the buffer compacts only
 * when room is needed and shrinks back to its resting size when it is idle.
 * Allocation uses aligned_alloc/realloc/free only, so it is safe without the
 * GIL.
 */
#ifndef CMEMCACHE_BUF_H
#define CMEMCACHE_BUF_H

#include <stddef.h>

#define MC_BUF_RESTING 16384

/* The storage (below MC_BUF_MOVE) is aligned to a cache line: the parser's
 * memchr/memcmp then start on the same alignment every time (cheaper, and
 * repeatable). */
#define MC_BUF_ALIGN 64

/* From this capacity on the buffer grows with realloc (which may give only
 * malloc's alignment): large storage is moved by the allocator, not copied. */
#define MC_BUF_MOVE (1u << 20)

struct mc_buf {
    char *data;
    size_t start;
    size_t end;
    size_t cap;
};

/* Sets up an empty buffer; allocates nothing until the first reserve. */
void mc_buf_init(struct mc_buf *b);

/* Frees the storage; the buffer is empty and usable again afterwards. */
void mc_buf_free(struct mc_buf *b);

int mc_buf_reserve_slow(struct mc_buf *b, size_t room);

/* Makes at least `room` bytes free after `end`, compacting first and growing
 * only if compaction is not enough.  Returns 0, or -ENOMEM (buffer unchanged). */
static inline int
mc_buf_reserve(struct mc_buf *b, size_t room)
{
    return b->cap - b->end >= room ? 0 : mc_buf_reserve_slow(b, room);
}

/* Drops `n` bytes from the front; an emptied buffer resets its cursors. */
static inline void
mc_buf_consume(struct mc_buf *b, size_t n)
{
    b->start += n;
    if (b->start == b->end) {
        b->start = b->end = 0;
    }
}

/* Returns storage beyond MC_BUF_RESTING to the allocator when the buffer holds
 * no unread bytes. */
void mc_buf_shrink(struct mc_buf *b);

/* Growth beyond what has arrived, at most, per receive (see mc_buf_room). */
#define MC_BUF_STEP (4u << 20)

/* The room to reserve before the next receive of a frame of need bytes (0
 * while unknown) of which have are in: what is missing, but no more than
 * MC_BUF_STEP or have (whichever is larger) at a time, and at least 4 KiB.
 * So memory follows the bytes that really arrive, not the length a reply
 * announces. */
static inline size_t
mc_buf_room(size_t need, size_t have)
{
    size_t room = need > have ? need - have : 0;
    size_t step = have > MC_BUF_STEP ? have : MC_BUF_STEP;
    if (room > step) {
        room = step;
    }
    return room < 4096 ? 4096 : room;
}

static inline size_t
mc_buf_len(const struct mc_buf *b)
{
    return b->end - b->start;
}

static inline const char *
mc_buf_head(const struct mc_buf *b)
{
    return b->data + b->start;
}

#endif
