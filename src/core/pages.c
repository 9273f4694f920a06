/*
 * pages.c - big working buffers faulted in at once (see pages.h).
 */
#include "core/pages.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ASan checks what malloc hands out: there every block is malloc'd */
#if defined(__SANITIZE_ADDRESS__)
static const size_t map_min = SIZE_MAX;
#else
static const size_t map_min = (size_t)256 << 10;
#endif
static const size_t huge = (size_t)2 << 20; /* x86-64's huge page */
/*
 * Every mapping ends with this much room that nothing uses. Two threads whose
 * hot data lay within ~128 KiB of each other's ran up to ~30 % slower (the
 * Winograd scratch's shares: SCRATCH_GAP in src/upscale/wino.c, measured
 * there). The kernel places mappings end to end, so blocks of different
 * threads could meet the same way: one lane's scratch right below another
 * lane's buffers, say (not measured on its own). The room is only address
 * space: it is not faulted in.
 */
static const size_t guard = (size_t)256 << 10;

/* A mapping of 2 MiB or more is made a whole number of huge pages long: the
 * kernel then places it on a huge page boundary, so that all of it can take
 * huge pages. */
static size_t map_len(size_t cap)
{
    return cap >= huge ? (cap + guard + huge - 1) / huge * huge : cap + guard;
}

void *reel_pages_new(size_t need, size_t cap)
{
    void *p;

    if (cap < map_min) /* aligned_alloc wants a multiple of the alignment */
        return aligned_alloc(64, cap ? (cap + 63) & ~(size_t)63 : 64);
    p = mmap(NULL, map_len(cap), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (cap >= huge)
        (void)madvise(p, map_len(cap), MADV_HUGEPAGE);
    (void)madvise(p, need, MADV_POPULATE_WRITE);
    return p;
}

void *reel_pages_zeroed(size_t cap)
{
    void *p = reel_pages_new(cap, cap);
    if (p && cap < map_min) /* fresh mappings are zeroed already */
        memset(p, 0, cap);
    return p;
}

void reel_pages_free(void *p, size_t cap)
{
    if (p && cap >= map_min)
        munmap(p, map_len(cap));
    else
        free(p);
}
