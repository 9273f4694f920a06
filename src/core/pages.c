/*
 * pages.c - big working buffers faulted in at once (see pages.h).
 */
#include "core/pages.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

/* ASan checks what malloc hands out: there every block is malloc'd */
#if defined(__SANITIZE_ADDRESS__)
static const size_t map_min = SIZE_MAX;
#else
static const size_t map_min = (size_t)256 << 10;
#endif

void *reel_pages_new(size_t need, size_t cap)
{
    void *p;

    if (cap < map_min) /* aligned_alloc wants a multiple of the alignment */
        return aligned_alloc(64, cap ? (cap + 63) & ~(size_t)63 : 64);
    p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, need, MADV_POPULATE_WRITE);
    return p;
}

void reel_pages_free(void *p, size_t cap)
{
    if (p && cap >= map_min)
        munmap(p, cap);
    else
        free(p);
}
