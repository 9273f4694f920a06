/*
 * upscale.c - the upscaler's public face: options, model files, tiling, and
 * the byte <-> float conversions around a backend.
 *
 * The convention (tests/fixtures/upscale/README.md, what realesrgan-ncnn-
 * vulkan does): a tile of T x T frame pixels is fed to the network with
 * CONTEXT = 10 more pixels on every side, taken from the real neighbours
 * inside the frame and by replicating the edge pixel outside it; the
 * network's output is cropped by CONTEXT * scale on every side and only the
 * tile's own pixels are kept. Bytes enter as v / 255 and leave as
 * (uint8)clamp(v * 255 + 0.5, 0, 255).
 *
 * The tile option is an upper bound: a frame W px wide gets
 * cols = ceil(W / tile) columns of tw = ceil(W / cols) px, and likewise for
 * rows, so 480 px at tile 128 is 4 x 120 rather than 3 x 128 + 96 padded up
 * to 128 (a third less work on a 480x270 frame). Every tile has the same
 * shape, (th + 2 * CONTEXT) x (tw + 2 * CONTEXT), so the backend builds its
 * kernels once: a tile cut short by the right or bottom frame edge (when the
 * division is not exact) is filled up with replicated edge pixels, whose
 * outputs are cropped away. Untiled mode is one tile of the frame's size. The
 * backend state is rebuilt only when the frame size changes that shape (a
 * video has one size, so: once).
 */
#include "upscale/upscale.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "core/log.h"
#include "core/pages.h"
#include "upscale/backend.h"
#include "upscale/ncnn_model.h"

#define CONTEXT 10 /* input pixels of context around each tile */
#define MAX_FRAME_SIDE 16384

/* What one frame in flight needs: used by one thread at a time. */
typedef struct Lane {
    void *state;            /* backend state for tile_h x tile_w */
    int tile_h, tile_w;     /* current tile (frame pixels, without context) */
    float *in, *out;        /* planar network input / output of one tile */
    size_t in_cap, out_cap; /* their capacities, in floats */
    char errmsg[REEL_ERRMSG_SIZE];
} Lane;

struct ReelUpscaler {
    const char *component; /* "upscale" */
    ReelNnGraph *graph;    /* shared by the lanes, read-only */
    const ReelUpscaleBackend *backend;
    int tile;              /* option: > 0 tile side, < 0 untiled */
    ReelBackendConfig cfg; /* threads per lane, effective precision */
    int nlanes;
    Lane lane[REEL_UPSCALE_MAX_LANES];
};

/*
 * default_tile: the tile option when the caller leaves it at 0. Every tile
 * costs its 10 px of context on each side (a 120 px tile computes 140 x 140,
 * +36 %), so bigger tiles are faster; what bounds them is memory. x4fast
 * needs ~1.1 KB per tile pixel (64-channel maps, Winograd scratch): at 512 a
 * process peaks at ~340 MB and most video crops run as one or a few tiles.
 * x4plus's dense blocks need ~15 KB per tile pixel (1.8 GB for 324 x 380),
 * so it stays at 128 (~0.5 GB); docs/internals/upscale.md has the numbers.
 */
static const struct {
    const char *name, *alias, *file;
    int default_tile;
} models[] = {
    {"x4fast", "realesr-general-x4v3", "realesrgan-x4fast", 512},
    {"x4plus", "RealESRGAN_x4plus", "realesrgan-x4plus", 128},
};

/* Lanes and threads per lane for opt (threads 0 = the backend's default, kept
 * as 0 for a single lane so that the backend picks). */
static void share_threads(const ReelUpscaleBackend *b, const ReelUpscaleOptions *opt, int *lanes,
                          int *threads_per_lane)
{
    int threads;

    *lanes = 1;
    *threads_per_lane = opt->threads;
    if (opt->lanes >= 0 && opt->lanes <= 1)
        return;
    threads = opt->threads ? opt->threads : b->default_threads();
    *lanes = opt->lanes > 0                      ? opt->lanes
             : threads < REEL_UPSCALE_AUTO_LANES ? threads
                                                 : REEL_UPSCALE_AUTO_LANES;
    *threads_per_lane = threads / *lanes > 1 ? threads / *lanes : 1;
}

/* What reel_upscale_open(opt) would plan: lanes and threads per lane (0 = the
 * backend's default, then resolved); one lane of one thread for options it
 * would refuse. */
static void planned(const ReelUpscaleOptions *opt, int *lanes, int *threads)
{
    const ReelUpscaleBackend *b = reel_upscale_backend_find(opt ? opt->backend : NULL);

    *lanes = *threads = 1;
    if (!opt || !b || opt->threads < 0 || opt->lanes > REEL_UPSCALE_MAX_LANES)
        return;
    share_threads(b, opt, lanes, threads);
    if (*threads <= 0)
        *threads = b->default_threads();
}

int reel_upscale_planned_lanes(const ReelUpscaleOptions *opt)
{
    int lanes, threads;

    planned(opt, &lanes, &threads);
    return lanes;
}

int reel_upscale_planned_lane_threads(const ReelUpscaleOptions *opt)
{
    int lanes, threads;

    planned(opt, &lanes, &threads);
    return threads;
}

int reel_upscale_open(ReelUpscaler **out, const ReelUpscaleOptions *opt, char *errmsg)
{
    static const ReelUpscaleOptions defaults = {0};
    ReelUpscaler *up = NULL;
    const char *dir, *file = NULL;
    int default_tile = 0;
    char param[PATH_MAX], bin[PATH_MAX];
    int ret;

    *out = NULL;
    if (!opt)
        opt = &defaults;
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
        if (!opt->model || !strcmp(opt->model, models[i].name) ||
            !strcmp(opt->model, models[i].alias)) {
            file = models[i].file;
            default_tile = models[i].default_tile;
            break;
        }
    if (!file)
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "upscale: unknown model '%s' (known: x4fast, x4plus)", opt->model);
    if (!reel_upscale_backend_find(opt->backend))
        return reel_fail(errmsg, REEL_ERR(EINVAL), "upscale: unknown backend '%s' (known: cpu)",
                         opt->backend);
    if (opt->threads < 0)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "upscale: threads=%d must be >= 0",
                         opt->threads);
    if (opt->lanes > REEL_UPSCALE_MAX_LANES)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "upscale: lanes=%d is more than %d", opt->lanes,
                         REEL_UPSCALE_MAX_LANES);
    if (opt->precision != REEL_UPSCALE_FP32 && opt->precision != REEL_UPSCALE_BF16)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "upscale: unknown precision %d",
                         (int)opt->precision);
    if (opt->tile > MAX_FRAME_SIDE)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "upscale: tile=%d is larger than %d", opt->tile,
                         MAX_FRAME_SIDE);
    dir = opt->model_dir;
    if (!dir || !*dir)
        dir = getenv("CLIPREEL_MODELS");
    if (!dir || !*dir)
        dir = "models";
    if (snprintf(param, sizeof(param), "%s/%s.param", dir, file) >= (int)sizeof(param) ||
        snprintf(bin, sizeof(bin), "%s/%s.bin", dir, file) >= (int)sizeof(bin))
        return reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "upscale: model folder path too long");

    if (!(up = calloc(1, sizeof(*up))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "upscale: out of memory");
    up->component = "upscale";
    up->backend = reel_upscale_backend_find(opt->backend);
    up->tile = opt->tile == 0 ? default_tile : opt->tile;
    share_threads(up->backend, opt, &up->nlanes, &up->cfg.threads);
    up->cfg.precision = opt->precision;
    if (!up->backend->supports(up->cfg.precision)) {
        reel_log(REEL_LOG_WARNING, "upscale",
                 "%s precision: the %s backend cannot run it on this machine, using fp32",
                 reel_upscale_precision_name(up->cfg.precision), up->backend->name);
        up->cfg.precision = REEL_UPSCALE_FP32;
    }
    if ((ret = reel_nn_graph_load(&up->graph, param, bin, errmsg)) < 0)
        goto fail;
    reel_log(REEL_LOG_INFO, "upscale",
             "loaded %s: %d layers, %zu weights, x%d, %s backend, %s, %d lane%s", param,
             up->graph->nlayers, up->graph->weight_floats, up->graph->scale, up->backend->name,
             reel_upscale_precision_name(up->cfg.precision), up->nlanes, up->nlanes > 1 ? "s" : "");
    *out = up;
    return 0;

fail:
    reel_upscale_close(&up);
    return ret;
}

int reel_upscale_scale(const ReelUpscaler *up)
{
    return up->graph->scale;
}

ReelUpscalePrecision reel_upscale_precision(const ReelUpscaler *up)
{
    return up->cfg.precision;
}

const char *reel_upscale_precision_name(ReelUpscalePrecision p)
{
    return p == REEL_UPSCALE_BF16 ? "bf16" : "fp32";
}

int reel_upscale_precision_parse(const char *s, ReelUpscalePrecision *p)
{
    if (s && !strcasecmp(s, "fp32"))
        *p = REEL_UPSCALE_FP32;
    else if (s && !strcasecmp(s, "bf16"))
        *p = REEL_UPSCALE_BF16;
    else
        return REEL_ERR(EINVAL);
    return 0;
}

int reel_upscale_lanes(const ReelUpscaler *up)
{
    return up->nlanes;
}

const char *reel_upscale_errmsg(const ReelUpscaler *up)
{
    return up->lane[0].errmsg;
}

const char *reel_upscale_lane_errmsg(const ReelUpscaler *up, int lane)
{
    return lane >= 0 && lane < up->nlanes ? up->lane[lane].errmsg : "";
}

void reel_upscale_close(ReelUpscaler **pup)
{
    ReelUpscaler *up = pup ? *pup : NULL;

    if (!up)
        return;
    for (int i = 0; i < up->nlanes; i++) {
        if (up->backend)
            up->backend->free(&up->lane[i].state);
        reel_pages_free(up->lane[i].in, up->lane[i].in_cap * sizeof(float));
        reel_pages_free(up->lane[i].out, up->lane[i].out_cap * sizeof(float));
    }
    reel_nn_graph_free(&up->graph);
    free(up);
    *pup = NULL;
}

/*
 * *buf holds at least n floats; its capacity is *cap. 64-byte aligned: the
 * backend may write the network's output there with streaming stores, whole
 * lines only (x4fast's last layer, wino.c).
 */
static int grow_floats(float **buf, size_t *cap, size_t n)
{
    size_t ncap = ((n + n / 8) + 15) & ~(size_t)15; /* a whole number of 64-byte lines */
    float *p;

    if (*cap >= n)
        return 0;
    /* faulted in at once: the frame writes all of it (core/pages.h) */
    if (!(p = reel_pages_new(n * sizeof(float), ncap * sizeof(float))))
        return REEL_ERR(ENOMEM);
    reel_pages_free(*buf, *cap * sizeof(float));
    *buf = p;
    *cap = ncap;
    return 0;
}

/* (Re)build a lane's backend state for tiles of th x tw frame pixels. */
static int prepare(const ReelUpscaler *up, Lane *ln, int th, int tw)
{
    int in_h = th + 2 * CONTEXT, in_w = tw + 2 * CONTEXT, s = up->graph->scale, ret;
    size_t nin = (size_t)up->graph->in_channels * in_h * in_w;

    if (ln->state && ln->tile_h == th && ln->tile_w == tw)
        return 0;
    /*
     * a new tile size (a zooming crop: every frame): the buffers grow with an eighth more
     * room and are kept, the backend takes over its previous state's memory, so the pages
     * are not given back and faulted in again each frame
     */
    if ((ret = grow_floats(&ln->in, &ln->in_cap, nin)) < 0 ||
        (ret = grow_floats(&ln->out, &ln->out_cap, nin * s * s)) < 0) {
        up->backend->free(&ln->state);
        return reel_fail(ln->errmsg, ret, "upscale: out of memory for a %dx%d tile", tw, th);
    }
    ReelBackendConfig cfg = up->cfg;

    cfg.lane = (int)(ln - up->lane);
    if ((ret = up->backend->create(&ln->state, up->graph, in_h, in_w, &cfg, ln->errmsg)) < 0)
        return ret;
    ln->tile_h = th;
    ln->tile_w = tw;
    reel_log(REEL_LOG_DEBUG, "upscale", "backend ready for %dx%d tiles (%dx%d with context)", tw,
             th, in_w, in_h);
    return 0;
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Planar float input of the tile at (x0, y0): edge-replicated outside the frame. */
static void load_tile(Lane *ln, const uint8_t *rgb, int w, int h, ptrdiff_t stride, int x0, int y0)
{
    int in_h = ln->tile_h + 2 * CONTEXT, in_w = ln->tile_w + 2 * CONTEXT;
    size_t plane = (size_t)in_h * in_w;
    float *r = ln->in, *g = r + plane, *b = g + plane;

    for (int y = 0; y < in_h; y++) {
        const uint8_t *row = rgb + (ptrdiff_t)clampi(y0 - CONTEXT + y, 0, h - 1) * stride;

        for (int x = 0; x < in_w; x++) {
            const uint8_t *px = row + 3 * clampi(x0 - CONTEXT + x, 0, w - 1);
            size_t i = (size_t)y * in_w + x;

            r[i] = px[0] / 255.f;
            g[i] = px[1] / 255.f;
            b[i] = px[2] / 255.f;
        }
    }
}

/* [0, 1] -> 0..255, rounded; below 0 or NaN -> 0, above 1 -> 255 (branch-free: it vectorises) */
static inline uint8_t to_byte(float v)
{
    float f = v * 255.f + 0.5f;

    f = f > 0.f ? f : 0.f; /* NaN fails the test */
    f = f < 255.f ? f : 255.f;
    return (uint8_t)(int)f;
}

#define STORE_CHUNK 256

/* Crop the tile's own rows x cols (frame pixels) out of the network output. */
static void store_tile(const Lane *ln, int s, uint8_t *out, ptrdiff_t out_stride, int x0, int y0,
                       int rows, int cols)
{
    int ow = (ln->tile_w + 2 * CONTEXT) * s, oh = (ln->tile_h + 2 * CONTEXT) * s, n = cols * s;
    size_t plane = (size_t)oh * ow;
    const float *r = ln->out, *g = r + plane, *b = g + plane;

    for (int y = 0; y < rows * s; y++) {
        uint8_t *restrict dst = out + (ptrdiff_t)(y0 * s + y) * out_stride + (ptrdiff_t)x0 * s * 3;
        size_t i = (size_t)(CONTEXT * s + y) * ow + CONTEXT * s;
        const float *restrict rr = r + i, *restrict gg = g + i, *restrict bb = b + i;

        /* in chunks: each plane's bytes first (vectorised), then interleaved */
        for (int x = 0; x < n; x += STORE_CHUNK) {
            int m = n - x < STORE_CHUNK ? n - x : STORE_CHUNK;
            uint8_t cr[STORE_CHUNK], cg[STORE_CHUNK], cb[STORE_CHUNK];

            for (int j = 0; j < m; j++) {
                cr[j] = to_byte(rr[x + j]);
                cg[j] = to_byte(gg[x + j]);
                cb[j] = to_byte(bb[x + j]);
            }
            for (int j = 0; j < m; j++) {
                dst[3 * (x + j)] = cr[j];
                dst[3 * (x + j) + 1] = cg[j];
                dst[3 * (x + j) + 2] = cb[j];
            }
        }
    }
}

int reel_upscale_run(ReelUpscaler *up, const uint8_t *rgb, int w, int h, ptrdiff_t stride,
                     uint8_t *out, ptrdiff_t out_stride)
{
    return reel_upscale_run_lane(up, 0, rgb, w, h, stride, out, out_stride);
}

int reel_upscale_run_lane(ReelUpscaler *up, int lane, const uint8_t *rgb, int w, int h,
                          ptrdiff_t stride, uint8_t *out, ptrdiff_t out_stride)
{
    Lane *ln;
    int s, th, tw, ret;

    if (!up || lane < 0 || lane >= up->nlanes)
        return REEL_ERR(EINVAL);
    ln = &up->lane[lane];
    ln->errmsg[0] = 0;
    s = up->graph->scale;
    if (!rgb || !out || w < 1 || h < 1 || w > MAX_FRAME_SIDE || h > MAX_FRAME_SIDE)
        return reel_fail(ln->errmsg, REEL_ERR(EINVAL), "upscale: bad frame %dx%d", w, h);
    if (stride < (ptrdiff_t)w * 3 || out_stride < (ptrdiff_t)w * 3 * s)
        return reel_fail(ln->errmsg, REEL_ERR(EINVAL),
                         "upscale: strides %td/%td too small for %dx%d RGB24 x%d", stride,
                         out_stride, w, h, s);
    if (up->graph->in_channels != 3)
        return reel_fail(ln->errmsg, REEL_ERROR_MODEL, "upscale: the model takes %d channels",
                         up->graph->in_channels);
    if (up->tile < 0) {
        th = h;
        tw = w;
    } else {
        /* as many tiles as `tile` asks for, shared out evenly */
        int rows = (h + up->tile - 1) / up->tile, cols = (w + up->tile - 1) / up->tile;

        th = (h + rows - 1) / rows;
        tw = (w + cols - 1) / cols;
    }
    if ((ret = prepare(up, ln, th, tw)) < 0)
        return ret;
    for (int y0 = 0; y0 < h; y0 += th) {
        for (int x0 = 0; x0 < w; x0 += tw) {
            load_tile(ln, rgb, w, h, stride, x0, y0);
            if ((ret = up->backend->run(ln->state, ln->in, ln->out, ln->errmsg)) < 0)
                return ret;
            store_tile(ln, s, out, out_stride, x0, y0, h - y0 < th ? h - y0 : th,
                       w - x0 < tw ? w - x0 : tw);
        }
    }
    return 0;
}
