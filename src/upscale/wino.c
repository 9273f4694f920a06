/*
 * wino.c - Winograd 3x3 convolutions: bf16 F(4x4) / F(4x2) / F(2x2) and f32
 * F(4x4), bias and activation fused (see wino.h).
 *
 * DESIGN
 *
 * Winograd's minimal filtering computes an m x n block of a 3x3 correlation
 * from an (m + 2) x (n + 2) input tile d as
 *     Y = A_v' [ (G_v g G_h') .* (B_v' d B_h) ] A_h
 * with the matrices of F(4, 3) (points 0, +-1, +-2) or F(2, 3) (points 0,
 * +-1) in each direction. Over channels the element-wise product becomes one
 * small matrix product per tile position xi: M[xi] = U[xi] (out_c x in_c)
 * times V[xi] (in_c x tiles), (m + 2)(n + 2) of them for m * n outputs where
 * the direct algorithm multiplies 9 * m * n times per channel pair.
 *
 *   kind  tile         positions  fewer multiplications  products in
 *   bf16  F(4x4, 3x3)  6 x 6      4x                     bf16 (vdpbf16ps)
 *   bf16  F(4x2, 3x3)  6 x 4      3x                     bf16
 *   bf16  F(2x2, 3x3)  4 x 4      2.25x                  bf16
 *   f32   F(4x4, 3x3)  6 x 6      4x                     f32 (FMA)
 *
 * vdpbf16ps multiplies pairs of bf16 and accumulates in f32, 32 products per
 * instruction against 16 for an f32 FMA. Transforms, bias and activation stay
 * f32 in both kinds. Accuracy: rounding U and V to bf16 costs what rounding
 * weights and inputs costs a direct bf16 convolution, amplified by the output
 * transform (F(4, 3)'s rows have coefficients up to 8). On one random layer
 * against a double-precision reference: direct bf16 52.7 dB, F(2x2) 49.8,
 * F(4x2) 42.4, F(4x4) 34.4; on the shipped networks, whose activations are
 * smooth images, far less: F(4x4) 45.5-47.6 dB from fp32 over the fixtures,
 * F(4x2) 49.6-51.7, F(2x2) 51.5-53.4, direct 53-55. bf16 is a speed mode, so
 * F(4x4) is its default and the others are there for the more exact result.
 * In f32 F(4x4) is about as exact as oneDNN's fp32 Winograd (88-93 dB from
 * the golden references against 92).
 *
 * Work is a grid of jobs: one row of tiles, in blocks of nb tiles (a multiple
 * of the products' 6-tile register block); a job computes only the register
 * blocks that reach into the map (rounding to 6 made a row of 73 tiles five
 * jobs of 18, the last holding one). A job runs in one thread with its own
 * scratch, in three passes that stay in L1/L2:
 *   1. input transform: each input column of the block is transformed
 *      vertically once (B_v' on m + 2 rows) into a ring of eight columns (a
 *      tile reads n + 2, its neighbour shares two), then each tile
 *      horizontally (B_h) into V[xi][tile][in_c] (bf16 or f32; bf16 channels
 *      32 at a time where in_c allows, see PAIRS);
 *   2. the products (wino_gemm.c): per xi, 6 tiles x 64 output channels of
 *      f32 accumulators (24 zmm) over the input channels (pairs, in bf16):
 *      four weight loads and six broadcasts per 24 vdpbf16ps / FMAs, into M
 *      laid out [tile][out_c / 16][xi][16] so that step 3 reads a tile's 16
 *      channels at fixed offsets; behind them, spread one line per input
 *      channel (pair) over the register blocks, the input rows of the job
 *      this thread will likely take next are prefetched (AHEAD below);
 *   3. output transform: A_v' per column, A_h per row (the bias is already
 *      in: the products start M at position (1, 1) from it, and column 1 of
 *      A' is all ones in both tiles, so it reaches every output once), then the
 *      activation (x < 0 -> x * slope), stored as bf16 or f32 with
 *      non-temporal (streaming) stores of whole 64-byte lines: a pixel's 16
 *      channels in f32, two groups of 16 in bf16 (see STREAM below); tiles
 *      past the edges are computed on zeros and dropped.
 * The input may be several NHWC tensors read in place (run_io: a Concat's
 * inputs, each a whole number of 16-channel groups); the input pass finds
 * each group in its own tensor, so nothing else changes. The output pass can
 * add residuals after the activation (y = a * y + b * r, up to two in turn:
 * x4plus's dense-block and RRDB sums), in f32 before the one rounding.
 * Threads take jobs dynamically (OpenMP, the runtime oneDNN uses). Each
 * output is computed by one job whatever the thread count, so the bits do not
 * depend on it.
 */
#include "upscale/wino.h"
#include "upscale/wino_internal.h"

#include <errno.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/error.h"
#include "core/pages.h"

#define RING 8 /* columns in the input pass's ring (a power of two >= MAX_T) */
/*
 * The input pass prefetches the rows it reads this many columns ahead (two
 * tiles): its loads from the input map, written by the previous layer and
 * mostly out of cache, were ~28 % of the bf16 job's samples, stalled. 4-5 %
 * off the bf16 network, ~2 % off fp32 (x4fast on a 480-wide, 270-high frame,
 * alternating runs); 4 and 8 measured alike, 16 no better than none (and,
 * once the outputs were streamed, 15 % slower in bf16). On the bare layer run again and again on
 * one input that stays in cache
 * (`conv_peak`) it costs ~1 %.
 */
#define PF_COLS 8

/*
 * STREAM: the output pass writes the layer's output with non-temporal stores
 * (whole 64-byte lines, so nothing is read for ownership first), then fences
 * at the job's end. A layer's output is 18.5-33 MB on a 480x270 frame, far
 * past L2, and was written with ordinary stores: every line read from memory
 * first (prefetched for writing two tiles ahead), then written back. Streamed,
 * x4fast on that frame takes 5-8 % less in fp32 and 2-3 % less in bf16 (half
 * the bytes); on a 68x120 crop, in 128 tiles and on x4plus the two measure
 * alike (docs/internals/upscale.md, Streaming stores). The bits are the same.
 * bf16 pairs two groups of 16 channels into one line, so it needs out_c a
 * multiple of 32; other layers, outputs not 64-byte aligned, and layers made
 * with spec.plain_stores (CLIPREEL_STREAM_STORES=off, backend_cpu.c) store as
 * before.
 */

/*
 * SCRATCH_GAP: the threads' shares of the scratch lie this far apart. Packed
 * end to end, two threads working on one layer ran at ~70 % of two processes
 * each working alone on it, in the machine's slow state (bf16 64->64 layer on
 * 240x140: 1340-1640 GFLOP/s against 2220-2300 for the pair; x4fast on a
 * 480x270 frame: 0.24 s against 0.16-0.17). By the gap between the shares:
 * none 1610, 4 KiB 1670, 32 KiB 1895, 64 KiB 2160-2200, 128 KiB 2180-2230,
 * 256 KiB and more 2260-2420. In the quick state it is worth ~5 % (2150-2180
 * against 2260-2300). Why is not known for sure; the likely reading is that
 * the hardware prefetchers run on past the end of one share into the other's
 * lines, which then travel between the two cores. Nothing is read or written
 * in the gap (docs/internals/upscale.md, Scratch gap).
 */
#define SCRATCH_GAP ((size_t)256 << 10)

/*
 * PAIRS: in bf16, when in_c is a multiple of 32, the input pass takes the
 * channels 32 at a time: one vector of 32 bf16 (two 256-bit loads, the groups
 * may lie in different tensors) splits into its even channels (shifted into
 * f32's high half) and its odd ones (masked), two f32 groups transformed as
 * before, and V stores both with one conversion (vcvtne2ps2bf16) and one
 * 64-byte store: V's block holds the 16 even channels, then the 16 odd ones.
 * The weights are laid out in the same order (transform_weights), so the
 * products pair channels c and c + 2 instead of c and c + 1: the same sum in
 * another order, not the same bits as one group at a time. The bf16 input
 * pass took ~18 % fewer samples (x4fast, 480x270).
 */

static ReelWinoJob pick_job(const ReelWinoConv *c);
static ReelWinoJob pick_body_job(const ReelWinoConv *c);

/* f32 -> bf16, rounding to nearest even (finite values: weights) */
static uint16_t to_bf16(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* G of F(2, 3) and F(4, 3): the weight transform, one row per tile position */
static const double g2[4][3] = {{-1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double g4[6][3] = {{1.0 / 4, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};

/*
 * U[xi] = G_v g G_h' for every (out, in) channel pair, in double, rounded once.
 * Output channels innermost, 64 at a time (U is [xi][in][out]): the compiler
 * vectorises across them, and each store continues the line the one before
 * wrote. x4fast in fp32: 40 ms of arithmetic before, 1.6 ms after (on pages
 * already faulted in).
 */
static void transform_weights(ReelWinoConv *c, const float *weight)
{
    enum { KB = 64 };
    const double(*gv)[3] = c->my == 4 ? g4 : g2;
    const double(*gh)[3] = c->mx == 4 ? g4 : g2;
    uint16_t *ub = c->u;
    float *uf = c->u;

    for (int ci = 0; ci < c->in_c; ci++) {
        /* bf16: its place in V, in pairs (PAIRS): a block's even channels, then its odd */
        size_t q = c->pair ? (size_t)(ci & ~31) + (ci & 1) * 16 + (ci & 31) / 2 : (size_t)ci;

        for (int k0 = 0; k0 < c->out_c; k0 += KB) {
            int nk = c->out_c - k0 < KB ? c->out_c - k0 : KB;
            double g[9][KB], t[MAX_T][3][KB];

            for (int k = 0; k < nk; k++)
                for (int e = 0; e < 9; e++)
                    g[e][k] = weight[((size_t)(k0 + k) * c->in_c + ci) * 9 + e];
            for (int i = 0; i < c->ty; i++)
                for (int x = 0; x < 3; x++)
                    for (int k = 0; k < nk; k++)
                        t[i][x][k] =
                            gv[i][0] * g[x][k] + gv[i][1] * g[3 + x][k] + gv[i][2] * g[6 + x][k];
            for (int i = 0; i < c->ty; i++) {
                for (int j = 0; j < c->tx; j++) {
                    size_t xi = (size_t)i * c->tx + j;
                    const double h0 = gh[j][0], h1 = gh[j][1], h2 = gh[j][2];

                    if (c->bf16) {
                        uint16_t *d =
                            ub + ((xi * (c->in_c / 2) + q / 2) * c->out_c + k0) * 2 + (q & 1);
                        for (int k = 0; k < nk; k++)
                            d[2 * k] = to_bf16(
                                (float)(t[i][0][k] * h0 + t[i][1][k] * h1 + t[i][2][k] * h2));
                    } else {
                        float *d = uf + (xi * c->in_c + ci) * c->out_c + k0;
                        for (int k = 0; k < nk; k++)
                            d[k] = (float)(t[i][0][k] * h0 + t[i][1][k] * h1 + t[i][2][k] * h2);
                    }
                }
            }
        }
    }
}

/*
 * The transformed weights depend on the weights, the kind and the tile only,
 * not on the map's size: every layer object made from the same weights (each
 * lane of a model makes its own, and a new frame size makes new ones) shares
 * one copy, counted by reference. The copy is made outside the lock, so that
 * lanes with copies of their own make them at once (under the lock, two lanes
 * of x4fast took 0.34-0.37 s to their first frame against 0.14-0.15 s for
 * one); a layer that wants a copy being made waits for it (`ready`) instead
 * of making it again. Its pages are faulted in at once (core/pages.h; x4fast's
 * copies, 576 KiB per layer in fp32, only since blocks from 256 KiB are
 * mapped: page faults of two lanes' first 120x68 frame 11.7k -> 2.1k).
 * x4plus in fp32: ~265 MB per copy. Entries are keyed by the weights'
 * address: a model's weights outlive the layers made from them, so an entry
 * is gone before its address can be reused. And by
 * spec.share_group: the CPU backend gives each lane of a small model its own
 * copy (x4fast: 19.5 MB in fp32, 9.7 in bf16), because lanes run different
 * layers at once and a copy read by both cores cost them dearly on the VMs
 * this project runs on now, in the spells when the two are not close
 * (docs/PERFORMANCE.md, Machine): x4fast on 2 lanes at 480x270,
 * `upscale_bench --lanes 2`, alternating: fp32 0.33-0.42 s per frame shared
 * against 0.31-0.32 own, bf16 0.20-0.21 against 0.16-0.17.
 */
typedef struct WinoShared {
    const float *weight;
    int bf16, my, mx, in_c, out_c, group;
    void *u;
    size_t bytes;
    int refs;
    int ready; /* u holds the transformed weights (under shared_lock) */
    struct WinoShared *next;
} WinoShared;

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t shared_made = PTHREAD_COND_INITIALIZER;
static WinoShared *shared_list;

static WinoShared *shared_find(const ReelWinoConv *c, const float *weight, int group)
{
    WinoShared *e;

    for (e = shared_list; e; e = e->next)
        if (e->weight == weight && e->bf16 == c->bf16 && e->my == c->my && e->mx == c->mx &&
            e->in_c == c->in_c && e->out_c == c->out_c && e->group == group)
            break;
    return e;
}

/* one more reference to an entry, once it is ready (under shared_lock) */
static void shared_ref(WinoShared *e)
{
    e->refs++;
    while (!e->ready)
        pthread_cond_wait(&shared_made, &shared_lock);
}

static int shared_get(ReelWinoConv *c, const float *weight, int group, size_t bytes)
{
    WinoShared *e, *other;
    void *u;

    pthread_mutex_lock(&shared_lock);
    if ((e = shared_find(c, weight, group)))
        shared_ref(e);
    pthread_mutex_unlock(&shared_lock);
    if (e)
        goto done;
    if (!(e = calloc(1, sizeof(*e))) || !(u = reel_pages_new(bytes, bytes))) {
        free(e);
        return -1;
    }
    pthread_mutex_lock(&shared_lock);
    if ((other = shared_find(c, weight, group))) { /* made meanwhile: take that one */
        shared_ref(other);
        pthread_mutex_unlock(&shared_lock);
        reel_pages_free(u, bytes);
        free(e);
        e = other;
        goto done;
    }
    *e = (WinoShared){.weight = weight,
                      .bf16 = c->bf16,
                      .my = c->my,
                      .mx = c->mx,
                      .in_c = c->in_c,
                      .out_c = c->out_c,
                      .group = group,
                      .u = u,
                      .bytes = bytes,
                      .refs = 1,
                      .next = shared_list};
    shared_list = e;
    pthread_mutex_unlock(&shared_lock);
    c->u = u;
    transform_weights(c, weight);
    pthread_mutex_lock(&shared_lock);
    e->ready = 1;
    pthread_cond_broadcast(&shared_made);
    pthread_mutex_unlock(&shared_lock);
done:
    c->shared = e;
    c->u = e->u;
    return 0;
}

static void shared_put(WinoShared *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&shared_lock);
    if (--e->refs == 0) {
        for (WinoShared **p = &shared_list; *p; p = &(*p)->next)
            if (*p == e) {
                *p = e->next;
                break;
            }
        reel_pages_free(e->u, e->bytes);
        free(e);
    }
    pthread_mutex_unlock(&shared_lock);
}

size_t reel_wino_weights_bytes(void)
{
    size_t n = 0;

    pthread_mutex_lock(&shared_lock);
    for (WinoShared *e = shared_list; e; e = e->next)
        n += e->bytes;
    pthread_mutex_unlock(&shared_lock);
    return n;
}

int reel_wino_create(ReelWinoConv **out, const ReelWinoSpec *sp, char *errmsg)
{
    ReelWinoConv *c;
    int bf16 = sp->kind == REEL_WINO_BF16;
    size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    int rows = sp->tile_rows ? sp->tile_rows : 4, cols = sp->tile_cols ? sp->tile_cols : 4;
    int tile_ok = (rows == 4 && (cols == 4 || cols == 2)) || (rows == 2 && cols == 2);

    *out = NULL;
    if (!reel_wino_fits(sp->in_c, sp->out_c) || (bf16 && !tile_ok) || sp->h < 1 || sp->w < 1 ||
        sp->threads < 1 || (sp->slope && sp->nslope != 1 && sp->nslope != sp->out_c) ||
        sp->nres < 0 || sp->nres > REEL_WINO_MAX_RES ||
        (sp->shuffle_out && ((bf16 && !sp->out_f32) || sp->nres > 1)))
        return reel_fail(errmsg, REEL_ERROR_INTERNAL,
                         "Winograd: unsupported layer (%d -> %d channels, %dx%d)", sp->in_c,
                         sp->out_c, sp->w, sp->h);
    if (!(c = calloc(1, sizeof(*c))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "Winograd: out of memory");
    c->bf16 = bf16;
    c->in_c = sp->in_c;
    c->out_c = sp->out_c;
    c->out_f32 = !bf16 || sp->out_f32;
    c->stream = !sp->plain_stores && (c->out_f32 || sp->out_c % 32 == 0);
    c->pair = bf16 && sp->in_c % 32 == 0;
    c->shuffle = sp->shuffle_out;
    c->my = bf16 ? rows : 4;
    c->mx = bf16 ? cols : 4;
    c->ty = c->my + 2;
    c->tx = c->mx + 2;
    c->nxi = c->ty * c->tx;
    c->h = sp->h;
    c->w = sp->w;
    c->threads = sp->threads;
    c->nres = sp->nres;
    for (int r = 0; r < sp->nres; r++) {
        c->res_self[r] = sp->res_self[r];
        c->res_coef[r] = sp->res_coef[r];
    }
    c->th = (sp->h + c->my - 1) / c->my;
    {
        /*
         * at most 18 tiles per job (of 6, 12, 18, 24, 36 the fastest for both kinds on
         * the 64 -> 64 layer), a tile row split into equal jobs: a narrow map does not
         * compute a mostly empty last block (22 tiles: 2 x 12, not 18 + 4 padded to 18);
         * what rounding to whole register blocks leaves past the edge, the job skips
         */
        int tw = (sp->w + c->mx - 1) / c->mx;

        c->nblk = (tw + 17) / 18;
        c->nb = ((tw + c->nblk - 1) / c->nblk + JB - 1) / JB * JB;
    }
    c->bias = calloc((size_t)c->out_c, sizeof(float));
    if (sp->slope)
        c->slope = malloc((size_t)c->out_c * sizeof(float));
    if (!c->bias || (sp->slope && !c->slope) ||
        shared_get(c, sp->weight, sp->share_group,
                   ((size_t)c->nxi * c->in_c * c->out_c * elem + 63) & ~(size_t)63) < 0) {
        reel_wino_free(&c);
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "Winograd: out of memory");
    }
    for (int k = 0; k < c->out_c; k++) {
        c->bias[k] = sp->bias ? sp->bias[k] : 0.f;
        if (c->slope)
            c->slope[k] = sp->slope[sp->nslope == 1 ? 0 : k];
    }
    /* each a multiple of 64 bytes: channels come in 16s */
    c->v_bytes = (size_t)c->nxi * c->nb * c->in_c * elem;
    c->m_bytes = (size_t)c->nxi * c->nb * c->out_c * sizeof(float);
    c->per_thread =
        c->v_bytes + c->m_bytes + (size_t)RING * (c->in_c / 16) * c->ty * sizeof(__m512);
    c->stride = (c->per_thread + 4095) / 4096 * 4096 + SCRATCH_GAP;
    c->job = pick_job(c);
    c->body_job = pick_body_job(c);
    *out = c;
    return 0;
}

size_t reel_wino_scratch(const ReelWinoConv *c)
{
    return c->stride * (size_t)(c->threads - 1) + c->per_thread;
}

void reel_wino_free(ReelWinoConv **pc)
{
    ReelWinoConv *c = *pc;

    if (!c)
        return;
    shared_put(c->shared);
    free(c->bias);
    free(c->slope);
    free(c);
    *pc = NULL;
}

/* ------------------------------------------------------------------------ */
/* transforms: the matrices' rows with their common terms shared */

/* B' of F(2, 3): 4 inputs -> 4 */
static inline void bt4(const __m512 *d, __m512 *o)
{
    o[0] = _mm512_sub_ps(d[2], d[0]);
    o[1] = _mm512_add_ps(d[1], d[2]);
    o[2] = _mm512_sub_ps(d[2], d[1]);
    o[3] = _mm512_sub_ps(d[3], d[1]);
}

/* B' of F(4, 3): 6 inputs -> 6 */
static inline void bt6(const __m512 *d, __m512 *o)
{
    const __m512 two = _mm512_set1_ps(2.f), four = _mm512_set1_ps(4.f);
    const __m512 five = _mm512_set1_ps(5.f);
    __m512 s = _mm512_add_ps(d[1], d[2]), u = _mm512_add_ps(d[3], d[4]);
    __m512 dd = _mm512_sub_ps(d[1], d[2]), v = _mm512_sub_ps(d[4], d[3]);
    __m512 t1 = _mm512_sub_ps(d[4], d[2]), t2 = _mm512_sub_ps(d[3], d[1]);

    o[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    o[1] = _mm512_fnmadd_ps(four, s, u);
    o[2] = _mm512_fmadd_ps(four, dd, v);
    o[3] = _mm512_fmadd_ps(two, t2, t1);
    o[4] = _mm512_fnmadd_ps(two, t2, t1);
    o[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

/* A' of F(2, 3): 4 products -> 2 outputs */
static inline void at4(const __m512 *m, __m512 *o)
{
    o[0] = _mm512_add_ps(m[0], _mm512_add_ps(m[1], m[2]));
    o[1] = _mm512_add_ps(_mm512_sub_ps(m[1], m[2]), m[3]);
}

/* A' of F(4, 3): 6 products -> 4 outputs */
static inline void at6(const __m512 *m, __m512 *o)
{
    __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
    __m512 c = _mm512_add_ps(m[3], m[4]), d = _mm512_sub_ps(m[3], m[4]);

    o[0] = _mm512_add_ps(m[0], _mm512_add_ps(a, c));
    o[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.f), d, b);
    o[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.f), c, a);
    o[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.f), d, b), m[5]);
}

static inline __m512 load_bf16(const uint16_t *p)
{
    __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));

    return _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
}

static inline void store_bf16(uint16_t *p, __m512 v)
{
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh(v));
}

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/*
 * SHUFFLE: one row of a tile's finished outputs y[0 .. n), pixels (oy, ox +
 * b), of channel group g, stored as PixelShuffle(4) puts them: lane dy * 4 +
 * dx of pixel (y, x) to plane g of the planar f32 output, pixel (4 y + dy,
 * 4 x + dx). (Its residual, a planar map the size of the input, is added by
 * the output pass: each pixel to the 16 outputs it becomes, nearest
 * upsampling.) Four pixels whole: a 4x4 transpose of 128-bit lanes, one
 * 64-byte line per output row; otherwise (the right edge, 2-column tiles) 16
 * bytes per pixel and row.
 */
ALWAYS_INLINE void store_shuffled(const ReelWinoConv *c, void *dst, const __m512 *y, int n, int oy,
                                  int ox, int g, int stream, const int mx)
{
    const size_t ow = (size_t)c->w * 4;
    float *plane = (float *)dst + (size_t)g * 16 * c->h * c->w;

    if (mx == 4 && n == 4) {
        __m512 t0 = _mm512_shuffle_f32x4(y[0], y[1], 0x44),
               t1 = _mm512_shuffle_f32x4(y[0], y[1], 0xee);
        __m512 t2 = _mm512_shuffle_f32x4(y[2], y[3], 0x44),
               t3 = _mm512_shuffle_f32x4(y[2], y[3], 0xee);
        __m512 rows[4] = {_mm512_shuffle_f32x4(t0, t2, 0x88), _mm512_shuffle_f32x4(t0, t2, 0xdd),
                          _mm512_shuffle_f32x4(t1, t3, 0x88), _mm512_shuffle_f32x4(t1, t3, 0xdd)};

        for (int dy = 0; dy < 4; dy++) {
            float *p = plane + (size_t)(4 * oy + dy) * ow + (size_t)ox * 4;

            if (stream)
                _mm512_stream_ps(p, rows[dy]);
            else
                _mm512_storeu_ps(p, rows[dy]);
        }
        return;
    }
    for (int b = 0; b < n; b++)
        for (int dy = 0; dy < 4; dy++) {
            __m512i lanes =
                _mm512_add_epi32(_mm512_set1_epi32(dy * 4),
                                 _mm512_set_epi32(3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0));

            _mm_storeu_ps(plane + (size_t)(4 * oy + dy) * ow + (size_t)(ox + b) * 4,
                          _mm512_castps512_ps128(_mm512_permutexvar_ps(lanes, y[b])));
        }
}

/*
 * BODY: the passes of a 64 -> 64 layer with one input tensor and a streamed
 * output without residual (x4fast's body: all its layers but the first and
 * the last) compiled with all that known: out is OUT_BF16_STREAM or
 * OUT_F32_STREAM instead of OUT_ANY, which reads the output's type, the
 * residuals and whether to stream from the layer for every output vector; the
 * input pass's `one` drops the walk over the input tensors (PAIRS' groups are
 * then always one 64-byte load); both know the channel count, so their loops
 * over the groups unroll. Without those tests and counts in their loops the
 * passes keep more in registers. x4fast on a 480x270 frame, one thread each
 * side by side (geometric mean of 6-8 rounds): the output pass ~2.5 % off bf16
 * and ~2 % off fp32, the input pass ~3 % more off bf16 (fp32 alike), the
 * channel count ~2.5 % more off bf16 and ~1 % off fp32; the same bits. (The
 * products specialised for 64 channels measured alike, so they are not.)
 * run_io picks the kernel when the layer has one (c->body_job), its input is
 * one tensor and its output 64-byte aligned.
 */
enum { OUT_ANY, OUT_BF16_STREAM, OUT_F32_STREAM };
#define BODY_C 64 /* BODY's channels, in and out */

/* ------------------------------------------------------------------------ */
/* one job: tile row `row`, tiles [tx0, tx0 + nb); my, mx, bf16, one, out are constants */

ALWAYS_INLINE void input_pass(const ReelWinoConv *c, const ReelWinoIo *io, int row, int tx0, int nt,
                              void *v, __m512 *ring, const int my, const int mx, const int bf16,
                              const int one)
{
    /* locals, not c->: the vector stores may alias anything, so fields would be reloaded */
    const int ty = my + 2, tx = mx + 2, in_c = one ? BODY_C : c->in_c, ng = in_c / 16, w = c->w,
              nb = c->nb;
    const int nsrc = one ? 1 : io->nsrc;
    const size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    const int pair = bf16 && c->pair;
    ptrdiff_t rows[MAX_T]; /* the tile row's input rows (first pixel), -1 outside the map */
    int y0 = row * my - 1, x0 = tx0 * mx - 1;

    for (int i = 0; i < ty; i++)
        rows[i] = y0 + i >= 0 && y0 + i < c->h ? (ptrdiff_t)(y0 + i) * w : -1;
    for (int t = 0; t < nt; t++) {
        /* the columns this tile adds to the ring: all for the first, then mx */
        for (int cx = t ? t * mx + tx - mx : 0; cx < t * mx + tx; cx++) {
            int ix = x0 + cx, in = ix >= 0 && ix < w, px = ix + PF_COLS;
            __m512 *col = ring + (size_t)(cx & (RING - 1)) * ng * ty;

            /* the same rows PF_COLS columns on: their loads would stall otherwise */
            if (px < w)
                for (int k = 0; k < nsrc; k++) {
                    const size_t px_bytes = (size_t)io->chans[k] * elem;

                    for (int i = 0; i < ty; i++) {
                        if (rows[i] < 0)
                            continue;
                        const char *p =
                            (const char *)io->src[k] + (size_t)(rows[i] + px) * px_bytes;

                        for (size_t off = 0; off < px_bytes; off += 64)
                            __builtin_prefetch(p + off, 0, 3);
                    }
                }

            /* PAIRS: groups g and g + 1 (sources k0 and k1) in one vector, split */
            for (int g = 0, k = 0, gk = 0; pair && g < ng; g += 2) {
                const char *b0 = io->src[k], *b1;
                int s0 = io->chans[k], o0 = gk, s1, o1;
                __m512 even[MAX_T], odd[MAX_T];

                if (one) {
                    b1 = b0, s0 = s1 = in_c, o0 = g, o1 = g + 1;
                } else {
                    if (++gk == s0 / 16)
                        k++, gk = 0;
                    b1 = io->src[k], s1 = io->chans[k], o1 = gk;
                    if (++gk == s1 / 16)
                        k++, gk = 0;
                }
                const int whole = one || (b0 == b1 && o1 == o0 + 1); /* one tensor: one load */

                for (int i = 0; i < ty; i++) {
                    __m512i x = _mm512_setzero_si512();

                    if (in && rows[i] >= 0) {
                        const size_t p = (size_t)(rows[i] + ix);
                        const char *lo = b0 + (p * s0 + (size_t)o0 * 16) * elem;

                        if (whole) {
                            x = _mm512_loadu_si512(lo);
                        } else {
                            __m256i hi = _mm256_loadu_si256(
                                (const __m256i *)(b1 + (p * s1 + (size_t)o1 * 16) * elem));

                            x = _mm512_inserti64x4(
                                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)), hi,
                                1);
                        }
                    }
                    even[i] = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
                    odd[i] = _mm512_castsi512_ps(
                        _mm512_and_si512(x, _mm512_set1_epi32((int)0xffff0000u)));
                }
                if (my == 4) {
                    bt6(even, col + g * ty);
                    bt6(odd, col + (g + 1) * ty);
                } else {
                    bt4(even, col + g * ty);
                    bt4(odd, col + (g + 1) * ty);
                }
            }
            /* group g of the input channels: group gk of source k */
            for (int k = 0, g = 0; !pair && k < nsrc; k++) {
                const int sc = one ? in_c : io->chans[k];
                const char *base = io->src[k];

                for (int gk = 0; gk < sc / 16; gk++, g++) {
                    __m512 d[MAX_T];

                    for (int i = 0; i < ty; i++) {
                        size_t at = ((size_t)(rows[i] + ix) * sc + (size_t)gk * 16) * elem;

                        if (!in || rows[i] < 0)
                            d[i] = _mm512_setzero_ps();
                        else if (bf16)
                            d[i] = load_bf16((const uint16_t *)(base + at));
                        else
                            d[i] = _mm512_loadu_ps((const float *)(base + at));
                    }
                    if (my == 4)
                        bt6(d, col + g * ty);
                    else
                        bt4(d, col + g * ty);
                }
            }
        }
        for (int g = 0; g < ng; g += 1 + pair) {
            for (int i = 0; i < ty; i++) {
                __m512 d[MAX_T], o[MAX_T];

                for (int x = 0; x < tx; x++)
                    d[x] = ring[((size_t)((t * mx + x) & (RING - 1)) * ng + g) * ty + i];
                if (mx == 4)
                    bt6(d, o);
                else
                    bt4(d, o);
                if (pair) {
                    __m512 o2[MAX_T];

                    for (int x = 0; x < tx; x++)
                        d[x] = ring[((size_t)((t * mx + x) & (RING - 1)) * ng + g + 1) * ty + i];
                    if (mx == 4)
                        bt6(d, o2);
                    else
                        bt4(d, o2);
                    for (int j = 0; j < tx; j++) {
                        size_t at = ((size_t)(i * tx + j) * nb + t) * in_c + g * 16;

                        _mm512_storeu_si512((uint16_t *)v + at,
                                            (__m512i)_mm512_cvtne2ps_pbh(o2[j], o[j]));
                    }
                    continue;
                }
                for (int j = 0; j < tx; j++) {
                    size_t at = ((size_t)(i * tx + j) * nb + t) * in_c + g * 16;

                    if (bf16)
                        store_bf16((uint16_t *)v + at, o[j]);
                    else
                        _mm512_storeu_ps((float *)v + at, o[j]);
                }
            }
        }
    }
}

ALWAYS_INLINE void output_pass(const ReelWinoConv *c, const float *m, int row, int tx0,
                               const ReelWinoIo *io, const int my, const int mx, const int shuffle,
                               const int out)
{
    const int tx = mx + 2, nxi = (my + 2) * tx, oc = out != OUT_ANY ? BODY_C : c->out_c, h = c->h,
              w = c->w, nb = c->nb;
    const int out_f32 = out == OUT_ANY ? c->out_f32 : out == OUT_F32_STREAM;
    const int nres = out == OUT_ANY ? c->nres : 0;
    void *dst = io->dst;
    /* SHUFFLE: its planar rows, 16 w bytes apart, start on 64-byte lines when w % 4 == 0 */
    const int stream =
        out != OUT_ANY || (c->stream && !((uintptr_t)dst & 63) && (!shuffle || w % 4 == 0));
    __m512 res_self[REEL_WINO_MAX_RES], res_coef[REEL_WINO_MAX_RES];
    __m512 held[4][4] = {{_mm512_setzero_ps()}}; /* bf16 streamed: a line's first 16 channels */

    for (int q = 0; q < nres; q++) {
        res_self[q] = _mm512_set1_ps(c->res_self[q]);
        res_coef[q] = _mm512_set1_ps(c->res_coef[q]);
    }
    const float *slope_c = c->slope;
    const size_t px_bytes = (size_t)oc * (out_f32 ? sizeof(float) : sizeof(uint16_t));

    for (int t = 0; t < nb; t++) {
        int ox = (tx0 + t) * mx;

        if (ox >= w)
            break;
        /* stored in place: the output lines of the tile after next, for writing */
        if (!stream && !shuffle && ox + 2 * mx < w) {
            for (int a = 0; a < my && row * my + a < h; a++) {
                const char *p =
                    (const char *)dst + ((size_t)(row * my + a) * w + ox + 2 * mx) * px_bytes;

                for (size_t off = 0; off < mx * px_bytes; off += 64)
                    __builtin_prefetch(p + off, 1, 3);
            }
        }
        for (int k = 0; k < oc; k += 16) {
            const float *mk = m + ((size_t)t * oc + k) * nxi;
            __m512 slope = slope_c ? _mm512_loadu_ps(slope_c + k) : _mm512_setzero_ps();
            __m512 cols[MAX_T][4];

            for (int x = 0; x < tx; x++) {
                __m512 mm[MAX_T];

                for (int i = 0; i < my + 2; i++)
                    mm[i] = _mm512_loadu_ps(mk + (i * tx + x) * 16);
                if (my == 4)
                    at6(mm, cols[x]);
                else
                    at4(mm, cols[x]);
            }
            for (int a = 0; a < my; a++) {
                int oy = row * my + a;
                __m512 r[MAX_T], o[4];

                if (oy >= h)
                    break;
                for (int x = 0; x < tx; x++)
                    r[x] = cols[x][a];
                if (mx == 4)
                    at6(r, o);
                else
                    at4(r, o);
                __m512 ys[4]; /* SHUFFLE: the row's outputs, stored together */
                int b = 0;

                for (; b < mx && ox + b < w; b++) {
                    size_t at = ((size_t)oy * w + ox + b) * oc + k;
                    __m512 y = o[b];

                    if (slope_c) {
                        __mmask16 neg = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ);

                        y = _mm512_mask_mul_ps(y, neg, y, slope);
                    }
                    for (int q = 0; q < nres; q++) {
                        /* SHUFFLE: the planar residual's pixel, for all 16 of its outputs */
                        __m512 rv =
                            shuffle ? _mm512_set1_ps(
                                          ((const float *)
                                               io->res[q])[((size_t)k / 16 * h + oy) * w + ox + b])
                            : out_f32 ? _mm512_loadu_ps((const float *)io->res[q] + at)
                                      : load_bf16((const uint16_t *)io->res[q] + at);

                        y = _mm512_fmadd_ps(res_self[q], y, _mm512_mul_ps(res_coef[q], rv));
                    }
                    if (shuffle)
                        ys[b] = y;
                    else if (out_f32 && stream)
                        _mm512_stream_ps((float *)dst + at, y);
                    else if (out_f32)
                        _mm512_storeu_ps((float *)dst + at, y);
                    else if (!stream)
                        store_bf16((uint16_t *)dst + at, y);
                    else if (!(k & 16))
                        held[a][b] = y; /* stored with the next 16 channels, one line */
                    else
                        _mm512_stream_si512((__m512i *)((uint16_t *)dst + at - 16),
                                            (__m512i)_mm512_cvtne2ps_pbh(y, held[a][b]));
                }
                if (shuffle)
                    store_shuffled(c, dst, ys, b, oy, ox, k / 16, stream, mx);
            }
        }
    }
}

/*
 * AHEAD: the products with the next job's input fetched behind them. The
 * input pass reads the previous layer's output, streamed to memory, and its
 * loads stalled on it although the row prefetch (PF_COLS) runs two tiles
 * ahead: the pass is short and reads 6 rows at once. The job this thread most
 * likely takes next is this one plus the thread count (jobs are handed out one
 * at a time, in order, and take alike), so while the products run, bound by
 * arithmetic, its input rows are prefetched into L2, a few lines per register
 * block (ReelWinoAhead). A wrong guess costs only bandwidth. x4fast on a
 * 480x270 frame: ~3 % off bf16, ~1 % off fp32 (docs/internals/upscale.md).
 */
ALWAYS_INLINE void products_ahead(const ReelWinoConv *c, const ReelWinoIo *io, int row, int tx0,
                                  const void *v, float *m, int nt, const int my, const int mx,
                                  const int bf16)
{
    const int ty = my + 2, next = row * c->nblk + tx0 / c->nb + c->threads;
    const size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    ReelWinoAhead ah = {.nr = 0};
    size_t lines = 0;

    if (next < c->th * c->nblk) {
        int y0 = next / c->nblk * my - 1, x0 = next % c->nblk * c->nb * mx - 1;
        int x1 = x0 + c->nb * mx + 2;

        x0 = x0 < 0 ? 0 : x0;
        x1 = x1 > c->w ? c->w : x1;
        for (int k = 0; k < io->nsrc && x0 < x1; k++) {
            const size_t px_bytes = (size_t)io->chans[k] * elem;

            for (int i = 0; i < ty; i++) {
                if (y0 + i < 0 || y0 + i >= c->h)
                    continue;
                const char *a =
                    (const char *)io->src[k] + ((size_t)(y0 + i) * c->w + x0) * px_bytes;
                const char *start = (const char *)((uintptr_t)a & ~(uintptr_t)63);
                size_t bytes = (size_t)(a + (size_t)(x1 - x0) * px_bytes - start);

                ah.from[ah.nr] = start;
                ah.len[ah.nr] = (bytes + 63) & ~(size_t)63;
                lines += ah.len[ah.nr] / 64;
                ah.nr++;
            }
        }
    }
    {
        /* +1: a range ends mid-block; at most one per input channel (pair) of the block */
        size_t calls = (size_t)c->nxi * (size_t)(nt / JB) * (size_t)((c->out_c + 63) / 64);
        size_t per = (lines + calls - 1) / calls + 1,
               iters = (size_t)(bf16 ? c->in_c / 2 : c->in_c);

        ah.per = (int)(per < iters ? per : iters);
    }
    if (bf16)
        reel_wino_products_bf16(c, v, m, nt, &ah);
    else
        reel_wino_products_f32(c, v, m, nt, &ah);
}

/* The kernels: the passes specialised for their tile, type and output. */
#define DEFINE_JOB(name, my, mx, bf16, shuffle, out)                                               \
    static void name(const ReelWinoConv *c, const ReelWinoIo *io, int row, int tx0, char *scratch) \
    {                                                                                              \
        void *v = scratch;                                                                         \
        float *m = (float *)(scratch + c->v_bytes);                                                \
        __m512 *ring = (__m512 *)(scratch + c->v_bytes + c->m_bytes);                              \
                                                                                                   \
        /* the job's tiles that touch the map, in whole register blocks (the row's last job */     \
        /* may hold few: 73 tiles in jobs of 18 leave 1) */                                        \
        int left = (c->w + mx - 1) / mx - tx0;                                                     \
        int nt = (left < c->nb ? left : c->nb) + JB - 1;                                           \
                                                                                                   \
        nt -= nt % JB;                                                                             \
        input_pass(c, io, row, tx0, nt, v, ring, my, mx, bf16, out != OUT_ANY);                    \
        products_ahead(c, io, row, tx0, v, m, nt, my, mx, bf16);                                   \
        output_pass(c, m, row, tx0, io, my, mx, shuffle, out);                                     \
        if (c->stream)                                                                             \
            _mm_sfence(); /* the streamed lines reach memory before the threads' barrier */        \
    }
DEFINE_JOB(job_bf16_4x4, 4, 4, 1, 0, OUT_ANY)
DEFINE_JOB(job_bf16_4x2, 4, 2, 1, 0, OUT_ANY)
DEFINE_JOB(job_bf16_2x2, 2, 2, 1, 0, OUT_ANY)
DEFINE_JOB(job_f32_4x4, 4, 4, 0, 0, OUT_ANY)
/* SHUFFLE's own: its test in the output pass cost the other layers ~4 % in bf16 */
DEFINE_JOB(job_bf16_4x4_shuffle, 4, 4, 1, 1, OUT_ANY)
DEFINE_JOB(job_bf16_4x2_shuffle, 4, 2, 1, 1, OUT_ANY)
DEFINE_JOB(job_bf16_2x2_shuffle, 2, 2, 1, 1, OUT_ANY)
DEFINE_JOB(job_f32_4x4_shuffle, 4, 4, 0, 1, OUT_ANY)
/* BODY's: streamed, no residual */
DEFINE_JOB(job_bf16_4x4_body, 4, 4, 1, 0, OUT_BF16_STREAM)
DEFINE_JOB(job_bf16_4x2_body, 4, 2, 1, 0, OUT_BF16_STREAM)
DEFINE_JOB(job_bf16_2x2_body, 2, 2, 1, 0, OUT_BF16_STREAM)
DEFINE_JOB(job_f32_4x4_body, 4, 4, 0, 0, OUT_F32_STREAM)

static ReelWinoJob pick_job(const ReelWinoConv *c)
{
    if (!c->bf16)
        return c->shuffle ? job_f32_4x4_shuffle : job_f32_4x4;
    if (c->my == 2)
        return c->shuffle ? job_bf16_2x2_shuffle : job_bf16_2x2;
    if (c->mx == 4)
        return c->shuffle ? job_bf16_4x4_shuffle : job_bf16_4x4;
    return c->shuffle ? job_bf16_4x2_shuffle : job_bf16_4x2;
}

/* BODY: the layer's kernel for a 64-byte aligned output, when it has one */
static ReelWinoJob pick_body_job(const ReelWinoConv *c)
{
    if (c->shuffle || c->nres || !c->stream || c->in_c != BODY_C || c->out_c != BODY_C)
        return NULL;
    if (!c->bf16)
        return job_f32_4x4_body;
    if (c->out_f32)
        return NULL;
    if (c->my == 2)
        return job_bf16_2x2_body;
    return c->mx == 4 ? job_bf16_4x4_body : job_bf16_4x2_body;
}

void reel_wino_run_io(const ReelWinoConv *c, const ReelWinoIo *io, void *scratch)
{
    int njobs = c->th * c->nblk;
    ReelWinoJob job =
        c->body_job && io->nsrc == 1 && !((uintptr_t)io->dst & 63) ? c->body_job : c->job;

#pragma omp parallel num_threads(c->threads)
    {
        char *mine = (char *)scratch + c->stride * (size_t)omp_get_thread_num();

#pragma omp for schedule(dynamic, 1)
        for (int j = 0; j < njobs; j++)
            job(c, io, j / c->nblk, j % c->nblk * c->nb, mine);
    }
}

void reel_wino_run(const ReelWinoConv *c, const void *src, void *dst, void *scratch)
{
    ReelWinoIo io = {.nsrc = 1, .src = {src}, .chans = {c->in_c}, .dst = dst};

    reel_wino_run_io(c, &io, scratch);
}
