/*
 * backend.h - private: the table of functions a compute backend implements
 * for the upscaler (the shape of FFmpeg's DNNModule in dnn_interface.h).
 *
 * A backend turns a loaded ReelNnGraph plus one fixed input shape into an
 * opaque state object, then runs that state once per tile. Everything costly
 * (kernel selection, weight reordering/upload, buffer allocation) belongs in
 * create(); run() must not allocate. upscale.c owns tiling, edge replication,
 * byte <-> float conversion and cropping, and talks to backends only through
 * this table, so adding one (CUDA, Vulkan, ...) means one new file that
 * defines a ReelUpscaleBackend and one line in reel_upscale_backend_find().
 *
 * Data exchanged with run() is float32 CHW ("planar"), batch 1, in host
 * memory:
 *   in:  g->in_channels x in_h x in_w
 *   out: g->in_channels x (in_h * g->scale) x (in_w * g->scale)
 * A backend is free to use any layout inside.
 *
 * Thread-safety: a state object is used by one thread at a time; different
 * state objects may run concurrently. The table itself is immutable.
 */
#ifndef REEL_UPSCALE_BACKEND_H
#define REEL_UPSCALE_BACKEND_H

#include "upscale/ncnn_model.h"
#include "upscale/upscale.h"

/** What create() is asked for besides the graph and the shape. */
typedef struct ReelBackendConfig {
    int threads;                    /* at most this many threads; 0 = the backend's default */
    ReelUpscalePrecision precision; /* one that supports() accepted */
    int lane;                       /* which of the upscaler's lanes the state is for (0, 1...) */
} ReelBackendConfig;

/** What create() made of a graph: for the log, and for tests that the plan holds. */
typedef struct ReelBackendPlan {
    int steps;          /* steps one run() executes */
    int own_convs;      /* convolutions on clipreel's own kernels (wino.c) */
    int onednn_wino;    /* convolutions on oneDNN's Winograd */
    int conversions;    /* layout conversions between steps */
    int concats_folded; /* Concats not made: their reader takes their inputs */
    int sums_fused;     /* Eltwise sums done in a convolution's output pass */
    int tail_fused;     /* 1: the last convolution writes the output through its shuffle */
} ReelBackendPlan;

typedef struct ReelUpscaleBackend {
    const char *name; /* as in ReelUpscaleOptions.backend */

    /** The thread count create() uses for cfg->threads = 0 (>= 1). */
    int (*default_threads)(void);
    /** Non-zero when this machine can run the backend at precision p. */
    int (*supports)(ReelUpscalePrecision p);

    /**
     * Prepare to run g on in_h x in_w inputs as cfg says. g is borrowed and
     * must outlive the state. *state on entry is NULL or a state this backend
     * made for the same g and cfg (a new tile size): it is freed in any case,
     * and its memory may be taken over by the new one. On success *state is
     * the new state; on error it is NULL, the return is negative
     * (REEL_ERROR_BACKEND, REEL_ERROR_MODEL for a graph the backend cannot
     * express, REEL_ERR(ENOMEM)) and errmsg says why.
     */
    int (*create)(void **state, const ReelNnGraph *g, int in_h, int in_w,
                  const ReelBackendConfig *cfg, char *errmsg);

    /**
     * One forward pass: read `in`, write `out` (shapes above, both borrowed,
     * not overlapping). Returns 0 or negative with errmsg set; on error `out`
     * is unspecified and the state stays usable.
     */
    int (*run)(void *state, const float *in, float *out, char *errmsg);

    /** Describe a state create() made (optional: NULL when a backend has no plan to tell). */
    void (*describe)(const void *state, ReelBackendPlan *plan);

    /** Free the state and set *state to NULL; NULL-safe. */
    void (*free)(void **state);
} ReelUpscaleBackend;

extern const ReelUpscaleBackend reel_upscale_backend_cpu;

/** The backend called name (NULL = the default, "cpu"), or NULL if unknown. */
const ReelUpscaleBackend *reel_upscale_backend_find(const char *name);

#endif
