/*
 * upscale.h - the AI upscaler: a Real-ESRGAN network (ncnn .param/.bin) run
 * over a packed RGB24 frame, tile by tile, on a compute backend.
 *
 * One ReelUpscaler holds one loaded model and the backend state for one tile
 * shape (created at the first frame, kept for every later frame of the same
 * size). Convention and internals: docs/internals/upscale.md.
 *
 * Lanes: an upscaler opened with lanes = N > 1 can upscale N frames at once,
 * one per lane (reel_upscale_run_lane), each lane with its own backend state
 * and buffers and threads / N threads. On this 2-core CPU two one-thread lanes
 * upscale more frames per second of a small crop than one two-thread lane
 * (the threads wait on each other at every layer; docs/PERFORMANCE.md), at
 * twice the buffers' memory. One image is fastest on one lane with every
 * thread.
 *
 * Thread-safety: each lane is bound to one thread at a time (a run uses the
 * lane's scratch buffers); different lanes and separate objects run
 * concurrently. The CPU backend itself uses OpenMP worker threads inside each
 * run when a lane has more than one thread.
 */
#ifndef REEL_UPSCALE_UPSCALE_H
#define REEL_UPSCALE_UPSCALE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ReelUpscaler ReelUpscaler;

/** Arithmetic of the network's convolutions. */
typedef enum ReelUpscalePrecision {
    REEL_UPSCALE_FP32 = 0, /**< float32 everywhere (default) */
    REEL_UPSCALE_BF16,     /**< bfloat16 activations and weights, float32 accumulation, bias and
                            *   network input/output; only where the CPU computes bf16 natively
                            *   (AVX-512 BF16, AMX), else float32 (logged) */
} ReelUpscalePrecision;

#define REEL_UPSCALE_MAX_LANES 64
#define REEL_UPSCALE_AUTO_LANES 4

typedef struct ReelUpscaleOptions {
    /* folder with realesrgan-*.param/.bin; NULL = "models" or $CLIPREEL_MODELS */
    const char *model_dir;
    /* "x4fast" (= "realesr-general-x4v3", default when NULL) or "x4plus" (= "RealESRGAN_x4plus") */
    const char *model;
    /* tile size in input pixels (excl. 10 px context); 0 = the model's default (x4fast 512,
     * x4plus 128: memory-bound, see upscale.c); <0 = untiled (whole frame one tile) */
    int tile;
    int threads; /* in all; 0 = one per physical core we may run on */
    /* frames that may run at once, each on threads / lanes threads (at least 1): 0 or 1 = one
     * lane with every thread; < 0 = one lane per thread, at most REEL_UPSCALE_AUTO_LANES (each
     * lane holds its own buffers: memory grows with lanes); at most REEL_UPSCALE_MAX_LANES */
    int lanes;
    const char *backend;            /* NULL or "cpu"; unknown -> error */
    ReelUpscalePrecision precision; /* REEL_UPSCALE_FP32 (0) unless asked */
} ReelUpscaleOptions;

/**
 * Load the model once.
 *
 * The model is realesrgan-<name>.param/.bin in opt->model_dir (or, when that is
 * NULL, $CLIPREEL_MODELS, else "models"). opt may be NULL for all defaults.
 * On success *out is a new upscaler; the caller frees it with
 * reel_upscale_close(). On error *out is NULL and errmsg (REEL_ERRMSG_SIZE
 * bytes, may be NULL) says why: REEL_ERR(EINVAL) for bad options,
 * REEL_ERROR_MODEL for a missing, malformed or unsupported model file,
 * REEL_ERR(ENOMEM), REEL_ERROR_BACKEND.
 */
int reel_upscale_open(ReelUpscaler **out, const ReelUpscaleOptions *opt, char *errmsg);

/** The model's scale factor (4 for both shipped models). */
int reel_upscale_scale(const ReelUpscaler *up);

/**
 * The precision the upscaler runs at: the one asked for, or REEL_UPSCALE_FP32
 * when bf16 was asked for on a CPU without native bf16 arithmetic.
 */
ReelUpscalePrecision reel_upscale_precision(const ReelUpscaler *up);

/** "fp32" or "bf16". */
const char *reel_upscale_precision_name(ReelUpscalePrecision p);

/**
 * Parse "fp32" or "bf16" (case-insensitive) into *p.
 * @return 0, or REEL_ERR(EINVAL) for anything else (*p unchanged).
 */
int reel_upscale_precision_parse(const char *s, ReelUpscalePrecision *p);

/**
 * How many lanes reel_upscale_open(opt) would give (without loading anything);
 * 1 for options it would refuse.
 */
int reel_upscale_planned_lanes(const ReelUpscaleOptions *opt);

/**
 * How many threads each of those lanes would run (>= 1); 1 for options it
 * would refuse.
 */
int reel_upscale_planned_lane_threads(const ReelUpscaleOptions *opt);
/** How many lanes the upscaler has (>= 1). */
int reel_upscale_lanes(const ReelUpscaler *up);
/** The sentence describing the last error of reel_upscale_run() ("" if none). */
const char *reel_upscale_errmsg(const ReelUpscaler *up);
/** The same for one lane (lane 0 is reel_upscale_run's). */
const char *reel_upscale_lane_errmsg(const ReelUpscaler *up, int lane);

/**
 * Upscale packed RGB24 (w x h, stride bytes per row) into out (w*scale x h*scale
 * RGB24, out_stride bytes per row). Both buffers are borrowed; out must not
 * overlap rgb. Runs on lane 0.
 *
 * Tiling: with opt->tile = T > 0 the frame is cut into ceil(h / T) rows and
 * ceil(w / T) columns of equal size (ceil(h / rows) x ceil(w / cols); the last
 * row/column may be shorter), each run with 10 px of context around it; with
 * T < 0 the frame is one tile. The first frame of a new size builds the backend state for its tile
 * shape (oneDNN primitives, buffers); later frames of that size only compute. Returns 0 or a
 * negative error (REEL_ERR(EINVAL) for bad arguments, REEL_ERR(ENOMEM), REEL_ERROR_BACKEND), whose
 * sentence is then in reel_upscale_errmsg(up). On error the content of out is unspecified.
 */
int reel_upscale_run(ReelUpscaler *up, const uint8_t *rgb, int w, int h, ptrdiff_t stride,
                     uint8_t *out, ptrdiff_t out_stride);
/**
 * reel_upscale_run on lane `lane` (0 <= lane < reel_upscale_lanes(up)): may run
 * while other lanes run in other threads. Each lane builds its own backend
 * state at its first frame of a new size. Error text: reel_upscale_lane_errmsg.
 */
int reel_upscale_run_lane(ReelUpscaler *up, int lane, const uint8_t *rgb, int w, int h,
                          ptrdiff_t stride, uint8_t *out, ptrdiff_t out_stride);

/** Free the upscaler and set *up to NULL; NULL or *up == NULL is a no-op. */
void reel_upscale_close(ReelUpscaler **up);

#endif
