/*
 * pages.h - big working buffers faulted in at once.
 *
 * A page fault costs several microseconds on the VMs this project runs on
 * (docs/PERFORMANCE.md, Machine), and the upscaler's buffers are written whole
 * by the first frame: a block of 256 KiB or more (x4fast's Winograd weights
 * take 576 KiB per layer) is therefore mapped and its first `need` bytes
 * faulted in by one call (MADV_POPULATE_WRITE; a kernel
 * before 5.14 faults them in as they are written). A block of 2 MiB or more is
 * mapped a whole number of huge pages long and advised to take them
 * (MADV_HUGEPAGE: used where the system's policy is madvise or always, not
 * under CLIPREEL_THP=off): the network's activations stream through tens of
 * MB per layer, and with 4 KiB pages the TLB misses cost x4fast ~10 % in fp32
 * (docs/internals/upscale.md); a huge page is faulted in whole, so up to 2 MiB
 * past `need` may be resident too. Every mapped block is followed by 256 KiB
 * of address space nothing uses, so that two blocks never lie end to end
 * (pages.c, guard). Smaller blocks, and every
 * block in an ASan build (which checks only what malloc hands out), come from
 * aligned_alloc. Either way the block is 64-byte aligned and freed by
 * reel_pages_free with the same capacity.
 */
#ifndef REEL_CORE_PAGES_H
#define REEL_CORE_PAGES_H

#include <stddef.h>

/**
 * A block of cap bytes (the caller makes cap >= need), its first need bytes
 * faulted in when it is mapped. NULL when out of memory.
 */
void *reel_pages_new(size_t need, size_t cap);

/** A zeroed block of cap bytes, all of it faulted in; free it as above. */
void *reel_pages_zeroed(size_t cap);

/** Free a block from reel_pages_new(_, cap); NULL is fine. */
void reel_pages_free(void *p, size_t cap);

#endif
