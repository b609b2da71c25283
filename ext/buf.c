#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void
mc_buf_init(struct mc_buf *b)
{
    b->data = NULL;
    b->start = b->end = b->cap = 0;
}

void
mc_buf_free(struct mc_buf *b)
{
    free(b->data);
    mc_buf_init(b);
}

int
mc_buf_reserve_slow(struct mc_buf *b, size_t room)
{
    size_t used = b->end - b->start;
    if (b->start > 0) {
        if (used > 0) {
            memmove(b->data, b->data + b->start, used);
        }
        b->start = 0;
        b->end = used;
        if (b->cap - b->end >= room) {
            return 0;
        }
    }
    if (room > SIZE_MAX / 2 - used) {
        return -ENOMEM;
    }
    size_t want = used + room;
    size_t cap = b->cap ? b->cap : MC_BUF_RESTING;
    while (cap < want) {
        cap *= 2;
    }
    char *data;
    if (b->cap >= MC_BUF_MOVE) {
        /* A large value still arriving: realloc moves the pages (mremap)
         * rather than copying the bytes in, so no single growth step of a
         * reply hundreds of MiB long takes long enough to overrun the
         * call's deadline, and the old and new storage never coexist. */
        data = realloc(b->data, cap);
        if (data == NULL) {
            return -ENOMEM;
        }
    }
    else {
        data = aligned_alloc(MC_BUF_ALIGN, cap);
        if (data == NULL) {
            return -ENOMEM;
        }
        if (used > 0) {
            memcpy(data, b->data, used);  /* start is 0 here */
        }
        free(b->data);
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

void
mc_buf_shrink(struct mc_buf *b)
{
    if (b->cap <= MC_BUF_RESTING || b->start != b->end) {
        return;
    }
    char *data = aligned_alloc(MC_BUF_ALIGN, MC_BUF_RESTING);
    if (data != NULL) {
        free(b->data);
        b->data = data;
        b->cap = MC_BUF_RESTING;
    }
    b->start = b->end = 0;
}
