/*
 * wino_internal.h - private to wino.c and wino_gemm.c: the layer object and
 * the products (the matrix multiplications between the transforms).
 */
#ifndef REEL_UPSCALE_WINO_INTERNAL_H
#define REEL_UPSCALE_WINO_INTERNAL_H

#include <stddef.h>

#include "upscale/wino.h"

#define JB 6    /* tiles per register block of the products */
#define MAX_T 6 /* input tile side, at most (F(4, 3)) */

typedef void (*ReelWinoJob)(const ReelWinoConv *c, const ReelWinoIo *io, int row, int tx0,
                            char *scratch);

struct ReelWinoConv {
    int bf16, in_c, out_c, out_f32;
    int stream;                /* streaming stores where the output is 64-byte aligned (wino.c) */
    int pair;                  /* bf16, in_c a multiple of 32: V in pairs of groups (PAIRS) */
    int shuffle;               /* spec.shuffle_out: planar output, PixelShuffle(4) (SHUFFLE) */
    int my, mx, ty, tx, nxi;   /* outputs per tile (rows, columns), inputs per tile, positions */
    int h, w, threads, nb;     /* nb: tiles per job */
    int th, nblk;              /* tile rows; jobs per tile row */
    void *u;                   /* bf16: [xi][in_c / 2][out_c][2]; f32: [xi][in_c][out_c] */
    struct WinoShared *shared; /* u's owner, shared by the layers of every lane (wino.c) */
    float *bias;               /* out_c */
    float *slope;              /* out_c, or NULL */
    int nres;                  /* residual sums (spec) */
    float res_self[REEL_WINO_MAX_RES], res_coef[REEL_WINO_MAX_RES];
    size_t v_bytes, m_bytes, per_thread; /* scratch: V, M, then the input pass's ring */
    size_t stride;                       /* from one thread's share to the next (SCRATCH_GAP) */
    ReelWinoJob job;                     /* the passes specialised for this tile and type */
    ReelWinoJob body_job; /* for one input and an aligned output, or NULL (wino.c, BODY) */
};

/*
 * Lines to prefetch while the products run (wino.c, AHEAD): nr ranges of
 * whole 64-byte lines, from[i] .. from[i] + len[i]; `per` lines in each
 * register block's product, one per input channel (pair) from the first,
 * until all are issued. The products advance r and off.
 */
typedef struct ReelWinoAhead {
    const char *from[MAX_T * REEL_WINO_MAX_SRC];
    size_t len[MAX_T * REEL_WINO_MAX_SRC];
    int nr, r, per;
    size_t off;
} ReelWinoAhead;

/*
 * M[tile][out_c / 16][xi][16] = U[xi] V[xi] for every position xi and the
 * job's first nt tiles (a multiple of JB, at most nb): V is [xi][tile][in_c]
 * (bf16 or f32; nb tiles per position), U c->u; ah's lines prefetched behind.
 */
void reel_wino_products_bf16(const ReelWinoConv *c, const void *v, float *m, int nt,
                             ReelWinoAhead *ah);
void reel_wino_products_f32(const ReelWinoConv *c, const void *v, float *m, int nt,
                            ReelWinoAhead *ah);

#endif
