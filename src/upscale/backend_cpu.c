/*
 * backend_cpu.c - the CPU backend: the network as a list of oneDNN 2.x
 * primitives and clipreel's own Winograd convolutions (wino.c), C loops only
 * for layer forms no shipped model uses.
 *
 * DESIGN
 *
 * Tensors. Batch 1. Every blob has one oneDNN memory descriptor, chosen when
 * the plan is made: its data type (f32, or bf16 in bf16 mode) and its layout,
 * NHWC ("acdb") or channel-blocked by 16 ("aBcd16b", what oneDNN's Winograd
 * kernels read and write). PixelShuffle, Interp and the C loops take NHWC f32,
 * element (y, x, c) of a C-channel map W wide at (y * W + x) * C + c. The
 * caller's planar input enters through one reorder (its memory object's handle
 * set per run) and the output blob leaves, in whatever layout it has, through
 * one reorder straight into the caller's planar buffer.
 *
 * Plan, built once per input shape by create(), in four passes:
 *   1. steps: Split outputs become aliases of their input (no copies); one
 *      step per remaining layer, in file order; a PReLU that alone reads a
 *      convolution's output joins that convolution's step and runs in place
 *      on its output (oneDNN 2.6 has no fast convolution with a prelu
 *      post-op: asking for one gets the reference kernel); a Concat read
 *      only by a convolution clipreel's Winograd runs is dropped, that
 *      convolution reading the Concat's inputs where they lie (x4plus's
 *      dense blocks copy nothing), and so is an Eltwise sum such a
 *      convolution alone feeds: its output pass adds the other tensor; a
 *      network ending in such a convolution, PixelShuffle(4) and a sum with
 *      its input upsampled 4x (x4fast) ends in that convolution alone, which
 *      writes the caller's planar output and adds the caller's input
 *      (fold_tail: no shuffle, resampling, sum or export run).
 *   2. formats: walking the steps in order, every step picks the primitive
 *      (descriptor) it will run and the descriptors it needs for its inputs;
 *      an input whose blob has another descriptor gets a conversion step (one
 *      oneDNN reorder) right before it, into a new "shadow" blob that later
 *      readers wanting the same descriptor share. Convolutions:
 *        - every 3x3/stride 1/pad 1 layer with 16k channels in and out, on a
 *          CPU with AVX-512: clipreel's Winograd (wino.c; f32 F(4x4) in fp32
 *          mode, bf16 F(4x4) in bf16 mode) on NHWC, its activation or PReLU
 *          fused, no oneDNN call; CLIPREEL_CONV_ALGO=onednn leaves these to
 *          oneDNN as below;
 *        - fp32: Winograd F(4x4, 3x3) (oneDNN's jit_wino_4x3, about 2.3x the
 *          direct kernel's speed here) for every 3x3/stride 1/pad 1 layer with
 *          16k channels in and out, reading and writing aBcd16b, so a chain of
 *          such layers (the body of both shipped models) has no reorder at
 *          all; other layers direct, writing aBcd16b when a Winograd layer
 *          reads them next, NHWC when a C loop or the output does; a direct
 *          layer without a fast kernel for the exact layouts lets oneDNN pick
 *          the layout of its smaller side first (the 3-channel image is
 *          converted, not the 64-channel output);
 *        - bf16: direct kernels on NHWC bf16 with bf16 weights (oneDNN
 *          accumulates in f32 and adds the f32 bias), writing f32 where a C
 *          loop or the output reads the result; the f32 network input is
 *          converted once per tile by the conversion step in front of the
 *          first convolution;
 *      ReLU/LeakyReLU are fused as eltwise post-ops (an eltwise primitive in
 *      place if oneDNN would answer the fused form with its reference
 *      kernel); PReLU is a oneDNN prelu primitive in place; Eltwise sum with
 *      its coefficients as scales, Concat and two-tensor BinaryOp are oneDNN
 *      sum/concat/binary primitives on a common descriptor; PixelShuffle is
 *      one reorder between two strided 5-D views (y, x, c, dy, dx) of its
 *      NHWC input and output, and nearest Interp with an integer factor a
 *      resampling primitive (the C loops remain for anything else: Interp
 *      with another factor, BinaryOp with a scalar, Eltwise product/max).
 *      CLIPREEL_CONV_ALGO=direct in the environment turns every Winograd off
 *      (for the benchmark).
 *   3. buffers by liveness: a blob takes a free buffer when its step runs and
 *      gives it back after its last reader, so x4plus's ~1800 blobs fit in a
 *      handful of buffers; a step's output never shares a buffer with its
 *      inputs (every step is out of place, the in-place PReLU and activation
 *      aside). Sizes come from the descriptors (blocked layouts pad channels).
 *   4. primitives: created from the planned descriptors, weights reordered
 *      once into the layout and type each convolution wants, one user-mode
 *      scratchpad shared by all.
 * run() then only executes steps: no allocation, no primitive creation.
 *
 * Threads. libdnnl here uses OpenMP; the thread count is the calling
 * thread's OpenMP setting, set through omp_set_num_threads (looked up at run
 * time, so the build needs no -fopenmp) before creating and running. When the
 * caller leaves it to us (threads 0) it is one thread per physical core this
 * process may run on (its affinity mask, SMT siblings counted once): oneDNN's
 * kernels fill a core's vector units with one thread, a second hyperthread on
 * the same core only competes for them. clipreel's Winograd kernels run on
 * the same OpenMP runtime with the same count (one parallel region per
 * layer). The C loops are single-threaded. libgomp's wait policy matters
 * more than the count on a busy machine (every oneDNN Winograd layer is three
 * parallel regions): docs/PERFORMANCE.md, "Threads".
 */
#include "upscale/backend.h"

#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dnnl.h>
#include <dnnl_debug.h>

#include "core/error.h"
#include "core/log.h"
#include "core/pages.h"
#include "upscale/wino.h"

#define STEP_INPUT (-1)   /* kind of the step that imports the planar input */
#define STEP_CONVERT (-2) /* kind of a conversion step (one reorder into a shadow blob) */
#define MAX_CALLS 3       /* primitives in one step: conv, activation, prelu */

typedef enum CallRole {
    ROLE_REORDER,  /* src[0] -> dst */
    ROLE_CONV,     /* src[0] -> dst, with weights and bias */
    ROLE_ACT,      /* eltwise in place on dst */
    ROLE_PRELU,    /* prelu from src (step's src[0], or dst when in place) to dst */
    ROLE_MULTI,    /* sum / concat of all srcs -> dst */
    ROLE_BINARY,   /* src[0] op src[1] -> dst */
    ROLE_VIEW,     /* reorder src[0] -> dst through the strided views its pd holds (shuffle) */
    ROLE_RESAMPLE, /* nearest resampling src[0] -> dst */
    ROLE_IMPORT,   /* reorder from the caller's planar input (handle set by run) -> dst */
} CallRole;

typedef struct DnnlCall {
    CallRole role;
    dnnl_primitive_desc_t pd; /* planned; freed once the primitive exists */
    dnnl_primitive_t prim;
    dnnl_exec_arg_t *args;
    int nargs;
} DnnlCall;

typedef struct CpuStep {
    const ReelNnLayer *l; /* the layer (a conversion: the layer it feeds) */
    int kind;             /* ReelNnOp, STEP_INPUT or STEP_CONVERT */
    int nsrc;
    int *src;                 /* canonical blob ids */
    int dst;                  /* canonical blob id */
    const ReelNnLayer *prelu; /* conv: the PReLU that alone reads its output, run in place */
    int wino;                 /* conv: Winograd */
    int own;                  /* conv: clipreel's Winograd kernel (wino.c, no oneDNN call) */
    ReelWinoConv *own_conv;   /* its transformed weights, made in pass 4 */
    ReelWinoIo own_io;        /* own: the buffers each run reads and writes (pass 4) */
    int nres;                 /* own: residual sums fused (the last nres of src) */
    int tail;                 /* own: writes the planar output through the shuffle (fold_tail) */
    float res_self[REEL_WINO_MAX_RES], res_coef[REEL_WINO_MAX_RES];
    DnnlCall call[MAX_CALLS]; /* oneDNN primitives of this step, run in order */
    int ncalls;
    dnnl_memory_t *mems; /* memory objects the calls use (owned) */
    int nmems, capmems;
    float *prelu_w;   /* PReLU slopes, one per channel (the weights memory may point here) */
    int *ymap, *xmap; /* interp: source row/column of each output row/column */
} CpuStep;

typedef struct CpuState {
    const ReelNnGraph *g;
    int threads;
    int bf16;               /* bf16 convolutions */
    int wino_ok;            /* Winograd allowed (fp32, not turned off) */
    int own_ok;             /* clipreel's Winograd allowed (the CPU runs it, not turned off) */
    int own_rows, own_cols; /* bf16: its tile (4x4; CLIPREEL_BF16_TILE=4x2 or 2x2) */
    int plain_stores;       /* CLIPREEL_STREAM_STORES=off: no streaming stores (wino.c) */
    int wino_group;         /* the Winograd weights' share group: the lane, or 0 (LANE_COPY) */
    int in_h, in_w;
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    dnnl_primitive_attr_t attr; /* user scratchpad: every primitive shares ours */
    int nblobs, capblobs;       /* graph blobs, then shadows */
    ReelNnShape *shapes;
    dnnl_memory_desc_t *md; /* per canonical blob, once its producer is planned */
    int *alias;             /* blob -> canonical blob (Split outputs -> input) */
    int *blob_buf;          /* canonical blob -> buffer index */
    int *loop_reader;       /* blob is read by a C loop or is the output */
    int *wino_reader;       /* blob is read by a convolution that can run Winograd */
    int *shadow;            /* blob -> its shadow (one per blob: the last made), or -1 */
    int out_blob;           /* the canonical blob exported to the planar output */
    int tail;               /* a step writes the planar output itself: no export (fold_tail) */
    dnnl_memory_t in_mem;   /* the caller's planar input: handle set by each run() */
    dnnl_memory_t out_mem;  /* the caller's planar output: handle set by each run() */
    DnnlCall export_call;   /* reorder out_blob -> out_mem, after the last step */
    int nsteps, capsteps;
    CpuStep *steps;
    int nbufs;
    void **bufs;
    size_t *buf_bytes;
    void *scratch;
    size_t scratch_bytes;
    dnnl_memory_t *scratch_mems; /* their handles are set once the size is known */
    int nscratch, capscratch;
    void *own_scratch; /* shared by the steps on clipreel's Winograd, one share per thread */
    size_t own_scratch_bytes;
    int nconvert, nwino, nown, nfolded, nfused; /* for the log and describe() */
    /*
     * capacities of bufs[], scratch and own_scratch (at least their sizes), and the
     * blocks a previous state left to this one while create() runs (take_block)
     */
    size_t *buf_cap, scratch_cap, own_scratch_cap;
    struct Spare {
        void *p;
        size_t cap;
    } * spare;
    int nspare;
} CpuState;

/* ------------------------------------------------------------------------ */
/* threads */

/* Does the sibling list text ("0-1", "0,64", "3") hold a CPU of set below cpu? */
static int lower_sibling_in(const char *text, int cpu, const cpu_set_t *set)
{
    const char *p = text;

    while (*p >= '0' && *p <= '9') {
        char *end;
        long a = strtol(p, &end, 10), b = a;

        if (*end == '-')
            b = strtol(end + 1, &end, 10);
        for (long c = a; c <= b && c < cpu; c++)
            if (c >= 0 && c < CPU_SETSIZE && CPU_ISSET((int)c, set))
                return 1;
        if (*end != ',')
            break;
        p = end + 1;
    }
    return 0;
}

/* Physical cores in this process's affinity mask (SMT siblings once); >= 1. */
static int machine_threads(void)
{
    cpu_set_t set;
    int n = 0;

    if (sched_getaffinity(0, sizeof(set), &set) < 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        return online > 0 && online < 1024 ? (int)online : 1;
    }
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        char path[96], text[256] = "";
        FILE *f;

        if (!CPU_ISSET(cpu, &set))
            continue;
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list",
                 cpu);
        if ((f = fopen(path, "r"))) {
            if (!fgets(text, sizeof(text), f))
                text[0] = 0;
            fclose(f);
        }
        n += !lower_sibling_in(text, cpu, &set);
    }
    return n > 0 ? n : 1;
}

static void set_omp_threads(int threads)
{
    void (*set)(int);
    void *sym;

    if (threads <= 0)
        return;
    if (!(sym = dlsym(RTLD_DEFAULT, "omp_set_num_threads")))
        return; /* not an OpenMP build of oneDNN: nothing to set */
    memcpy(&set, &sym, sizeof(set));
    set(threads);
}

/* ------------------------------------------------------------------------ */
/* oneDNN helpers */

static int dnnl_fail(char *errmsg, dnnl_status_t st, const char *what, const ReelNnLayer *l)
{
    int err = st == dnnl_out_of_memory ? REEL_ERR(ENOMEM) : REEL_ERROR_BACKEND;

    return reel_fail(errmsg, err, "cpu backend: oneDNN %s failed%s%s: %s", what,
                     l ? " for layer " : "", l ? l->name : "", dnnl_status2str(st));
}

#define DNNL_TRY(call, what, layer)                                                                \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) {                                                                 \
            ret = dnnl_fail(errmsg, st_, what, layer);                                             \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

static void *buf_of(const CpuState *s, int blob)
{
    return s->bufs[s->blob_buf[blob]];
}

/* The buffer of a blob a C loop reads or writes: NHWC f32 by construction. */
static float *fbuf(const CpuState *s, int blob)
{
    return s->bufs[s->blob_buf[blob]];
}

static void tag_desc(dnnl_memory_desc_t *md, const ReelNnShape *sh, dnnl_data_type_t dt,
                     dnnl_format_tag_t tag)
{
    dnnl_dims_t dims = {1, sh->c, sh->h, sh->w};

    dnnl_memory_desc_init_by_tag(md, 4, dims, dt, tag);
}

static int grow(void **arr, int *cap, int need, size_t elem)
{
    void *p;
    int ncap;

    if (need <= *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 8;
    if (ncap < need)
        ncap = need;
    if (!(p = realloc(*arr, (size_t)ncap * elem)))
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

/*
 * A block of at least `need` bytes (64-byte aligned) and its capacity: the
 * smallest block the previous state left that fits, else a new one with an
 * eighth more room (a zooming crop changes the tile every frame: its buffers
 * are then taken over, not freed and faulted in again), its pages faulted in
 * at once where it is big (core/pages.h: x4fast's first 480x270 frame faulted
 * ~27k pages one by one). NULL when out of memory.
 */
static void *take_block(CpuState *s, size_t need, size_t *cap)
{
    int best = -1;
    void *p;

    need = (need + 63) & ~(size_t)63;
    for (int i = 0; i < s->nspare; i++)
        if (s->spare[i].p && s->spare[i].cap >= need &&
            (best < 0 || s->spare[i].cap < s->spare[best].cap))
            best = i;
    if (best >= 0) {
        p = s->spare[best].p;
        *cap = s->spare[best].cap;
        s->spare[best].p = NULL;
        return p;
    }
    *cap = ((need + need / 8) + 63) & ~(size_t)63;
    if (!(p = reel_pages_new(need, *cap)))
        *cap = 0;
    return p;
}

/* Free what no step took of the previous state's blocks. */
static void drop_spare(CpuState *s)
{
    for (int i = 0; i < s->nspare; i++)
        reel_pages_free(s->spare[i].p, s->spare[i].cap);
    free(s->spare);
    s->spare = NULL;
    s->nspare = 0;
}

static const char *impl_of(const_dnnl_primitive_desc_t pd)
{
    const char *impl = "";

    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success)
        return "";
    return impl;
}

static int is_ref(const_dnnl_primitive_desc_t pd)
{
    return !strncmp(impl_of(pd), "ref", 3);
}

static void warn_if_ref(const_dnnl_primitive_desc_t pd, const ReelNnLayer *l)
{
    if (is_ref(pd))
        reel_log(REEL_LOG_WARNING, "upscale",
                 "%s: oneDNN has only its reference kernel (%s) for this layer here: slow", l->name,
                 impl_of(pd));
}

/* A memory object over handle (or DNNL_MEMORY_ALLOCATE / NONE), owned by the step. */
static int step_mem(CpuState *s, CpuStep *st, const dnnl_memory_desc_t *md, void *handle,
                    dnnl_memory_t *out, char *errmsg)
{
    int ret = 0;

    *out = NULL;
    if (grow((void **)&st->mems, &st->capmems, st->nmems + 1, sizeof(*st->mems)) < 0)
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
    DNNL_TRY(dnnl_memory_create(out, md, s->eng, handle), "memory", st->l);
    st->mems[st->nmems++] = *out;
fail:
    return ret;
}

/* Plan a call: the step takes ownership of pd. */
static int plan_call(CpuStep *st, CallRole role, dnnl_primitive_desc_t pd, char *errmsg)
{
    if (st->ncalls == MAX_CALLS) {
        dnnl_primitive_desc_destroy(pd);
        return reel_fail(errmsg, REEL_ERROR_INTERNAL, "cpu backend: too many calls in a step");
    }
    st->call[st->ncalls].role = role;
    st->call[st->ncalls].pd = pd;
    st->ncalls++;
    return 0;
}

/* Create call c's primitive, with room for nargs arguments + scratchpad. */
static int make_call(CpuState *s, CpuStep *st, DnnlCall *c, int nargs, char *errmsg)
{
    const dnnl_memory_desc_t *smd =
        dnnl_primitive_desc_query_md(c->pd, dnnl_query_scratchpad_md, 0);
    size_t sbytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    dnnl_memory_t m;
    int ret = 0;

    if (!(c->args = calloc((size_t)nargs + 1, sizeof(*c->args))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
    DNNL_TRY(dnnl_primitive_create(&c->prim, c->pd), "primitive", st->l);
    if (sbytes) {
        if ((ret = step_mem(s, st, smd, DNNL_MEMORY_NONE, &m, errmsg)) < 0)
            return ret;
        if (grow((void **)&s->scratch_mems, &s->capscratch, s->nscratch + 1,
                 sizeof(*s->scratch_mems)) < 0)
            return reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        s->scratch_mems[s->nscratch++] = m;
        if (sbytes > s->scratch_bytes)
            s->scratch_bytes = sbytes;
        c->args[c->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m};
    }
fail:
    return ret;
}

static void call_arg(DnnlCall *c, int arg, dnnl_memory_t m)
{
    c->args[c->nargs++] = (dnnl_exec_arg_t){arg, m};
}

/* A memory object in layout `want` holding a constant given as user_md over user (copied). */
static int import_const(CpuState *s, CpuStep *st, const dnnl_memory_desc_t *user_md, void *user,
                        const dnnl_memory_desc_t *want, dnnl_memory_t *out, char *errmsg)
{
    dnnl_memory_t um = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    int ret = 0;

    if ((ret = step_mem(s, st, user_md, user, &um, errmsg)) < 0)
        return ret;
    if (dnnl_memory_desc_equal(user_md, want)) {
        *out = um;
        return 0;
    }
    if ((ret = step_mem(s, st, want, DNNL_MEMORY_ALLOCATE, out, errmsg)) < 0)
        return ret;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, user_md, s->eng, want, s->eng, NULL),
             "weights reorder", st->l);
    DNNL_TRY(dnnl_primitive_create(&reorder, rpd), "weights reorder", st->l);
    {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, um}, {DNNL_ARG_TO, *out}};

        DNNL_TRY(dnnl_primitive_execute(reorder, s->strm, 2, a), "weights reorder", st->l);
        DNNL_TRY(dnnl_stream_wait(s->strm), "weights reorder", st->l);
    }
fail:
    if (reorder)
        dnnl_primitive_destroy(reorder);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* pass 1: steps */

static int is_loop_step(const CpuStep *st)
{
    switch (st->kind) {
    case REEL_NN_PIXEL_SHUFFLE:
    case REEL_NN_INTERP:
        return 1;
    case REEL_NN_BINARY:
        return st->l->p.binary.with_scalar;
    case REEL_NN_ELTWISE:
        return st->l->p.eltwise.op != REEL_NN_ELT_SUM;
    default:
        return 0;
    }
}

/* A 3x3 / stride 1 / pad 1 convolution of 16k channels in and out: what Winograd computes. */
static int wino_shape(const ReelNnLayer *l)
{
    const ReelNnConv *cv = &l->p.conv;

    return l->op == REEL_NN_CONV && cv->kh == 3 && cv->kw == 3 && cv->sh == 1 && cv->sw == 1 &&
           cv->dh == 1 && cv->dw == 1 && cv->pad_t == 1 && cv->pad_b == 1 && cv->pad_l == 1 &&
           cv->pad_r == 1 && reel_wino_fits(cv->in_c, cv->out_c);
}

static int wino_capable(const CpuState *s, const ReelNnLayer *l)
{
    return s->wino_ok && wino_shape(l);
}

/*
 * Can clipreel's Winograd kernel run this step: a 3x3/stride 1/pad 1
 * convolution of 16k channels in and out whose activation (its own, or the
 * PReLU fused into its step, not both) is x < 0 -> x * slope.
 */
static int own_capable(const CpuState *s, const CpuStep *st)
{
    const ReelNnConv *cv = &st->l->p.conv;

    return s->own_ok && wino_shape(st->l) &&
           (cv->act == REEL_NN_ACT_NONE || cv->act == REEL_NN_ACT_RELU ||
            cv->act == REEL_NN_ACT_LEAKY) &&
           !(st->prelu && cv->act != REEL_NN_ACT_NONE);
}

static CpuStep *new_step(CpuState *s, char *errmsg)
{
    CpuStep *st;

    if (grow((void **)&s->steps, &s->capsteps, s->nsteps + 1, sizeof(*s->steps)) < 0) {
        reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        return NULL;
    }
    st = &s->steps[s->nsteps++];
    memset(st, 0, sizeof(*st));
    return st;
}

/* Remove step i (pass 1, before any primitive exists). */
static void drop_step(CpuState *s, int i)
{
    free(s->steps[i].src);
    memmove(&s->steps[i], &s->steps[i + 1], (size_t)(s->nsteps - 1 - i) * sizeof(*s->steps));
    s->nsteps--;
}

/* Index of the step that writes blob b (pass 1: every blob but a Split's has one), or -1. */
static int producer_of(const CpuState *s, int b)
{
    for (int i = 0; i < s->nsteps; i++)
        if (s->steps[i].dst == b)
            return i;
    return -1;
}

/* Index of the one step that reads blob b, or -1 when none or several do. */
static int only_reader(const CpuState *s, int b)
{
    int found = -1;

    for (int i = 0; i < s->nsteps; i++)
        for (int k = 0; k < s->steps[i].nsrc; k++)
            if (s->steps[i].src[k] == b) {
                if (found >= 0)
                    return -1;
                found = i;
            }
    return found;
}

/*
 * A Concat whose only reader is a convolution clipreel's Winograd runs is not
 * made: that convolution takes the Concat's inputs as its own and reads them
 * where they lie (reel_wino_run_io), so a dense block (x4plus's RRDB) copies
 * nothing. Each input must be a whole number of 16-channel groups.
 */
static void fold_concats(CpuState *s)
{
    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *cat = &s->steps[i], *reader;
        int r, chans = 0, groups_ok = 1;

        if (cat->kind != REEL_NN_CONCAT || cat->nsrc > REEL_WINO_MAX_SRC ||
            cat->dst == s->alias[s->g->output])
            continue;
        for (int k = 0; k < cat->nsrc; k++) {
            groups_ok &= s->shapes[cat->src[k]].c % 16 == 0;
            chans += s->shapes[cat->src[k]].c;
        }
        if (!groups_ok || (r = only_reader(s, cat->dst)) < 0)
            continue;
        reader = &s->steps[r];
        if (reader->kind != REEL_NN_CONV || !own_capable(s, reader) ||
            chans != reader->l->p.conv.in_c)
            continue;
        free(reader->src);
        reader->src = cat->src;
        reader->nsrc = cat->nsrc;
        cat->src = NULL;
        reel_log(REEL_LOG_DEBUG, "upscale", "%s: reads the %d inputs of %s in place",
                 reader->l->name, cat->nsrc, cat->l->name);
        drop_step(s, i--);
        s->nfolded++;
    }
}

/*
 * An Eltwise sum of two tensors, one written by a convolution clipreel's
 * Winograd runs and read by nothing else, the other ready before that
 * convolution runs, becomes part of the convolution: its output pass adds the
 * other tensor (y = a * y + b * other, in f32 before the one rounding). Up to
 * REEL_WINO_MAX_RES in a row: x4plus's dense-block sum and the RRDB's sum
 * behind it both fold into the block's last convolution.
 */
static int fold_sums(CpuState *s, char *errmsg)
{
    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *sum = &s->steps[i];
        const ReelNnLayer *l = sum->l;

        if (sum->kind != REEL_NN_ELTWISE || l->p.eltwise.op != REEL_NN_ELT_SUM || sum->nsrc != 2)
            continue;
        for (int p = 0; p < 2; p++) {
            int b = sum->src[p], other = sum->src[1 - p], ci = producer_of(s, b);
            int oi = producer_of(s, other);
            const ReelNnShape *os = &s->shapes[other], *ds = &s->shapes[sum->dst];
            CpuStep *cv = ci >= 0 ? &s->steps[ci] : NULL;
            int *src;

            if (!cv || cv->kind != REEL_NN_CONV || !own_capable(s, cv) ||
                cv->nres == REEL_WINO_MAX_RES || b == other || b == s->alias[s->g->output] ||
                only_reader(s, b) != i || oi < 0 || oi >= ci || os->c != ds->c || os->h != ds->h ||
                os->w != ds->w)
                continue;
            if (!(src = realloc(cv->src, ((size_t)cv->nsrc + 1) * sizeof(int))))
                return reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
            cv->src = src;
            cv->src[cv->nsrc++] = other;
            cv->res_self[cv->nres] = l->p.eltwise.coef ? l->p.eltwise.coef[p] : 1.f;
            cv->res_coef[cv->nres] = l->p.eltwise.coef ? l->p.eltwise.coef[1 - p] : 1.f;
            cv->nres++;
            cv->dst = sum->dst;
            reel_log(REEL_LOG_DEBUG, "upscale", "%s: %s fused into its output", cv->l->name,
                     l->name);
            drop_step(s, i--);
            s->nfused++;
            break;
        }
    }
    return 0;
}

/*
 * realesr-general-x4v3's tail: the last convolution (16 C channels), a
 * PixelShuffle(4), and the sum with the network's input upsampled 4x nearest,
 * which is the output. With that convolution on clipreel's Winograd, its
 * output pass writes the caller's planar output itself (spec.shuffle_out),
 * adding the caller's planar input pixel: the shuffle, the resampling, the sum
 * and the export do not run (four passes over the 4x-sized output and ~12 ms
 * of a 480x270 frame; docs/internals/upscale.md). The same bits.
 */
static void fold_tail(CpuState *s)
{
    int out = s->alias[s->g->output], si = producer_of(s, out);
    const CpuStep *sum = si >= 0 ? &s->steps[si] : NULL;

    if (!sum || sum->kind != REEL_NN_BINARY || sum->l->p.binary.with_scalar ||
        sum->l->p.binary.op != REEL_NN_BIN_ADD || sum->nsrc != 2 || sum->src[0] == sum->src[1])
        return;
    for (int p = 0; p < 2; p++) {
        int a = sum->src[p], b = sum->src[1 - p], hi = producer_of(s, a), ui = producer_of(s, b);
        const CpuStep *sh = hi >= 0 ? &s->steps[hi] : NULL, *up = ui >= 0 ? &s->steps[ui] : NULL;

        if (!sh || !up || sh->kind != REEL_NN_PIXEL_SHUFFLE || sh->l->p.shuffle.factor != 4 ||
            sh->l->p.shuffle.mode != 0 || up->kind != REEL_NN_INTERP ||
            up->l->p.interp.scale_h != 4.f || up->l->p.interp.scale_w != 4.f ||
            only_reader(s, a) != si || only_reader(s, b) != si)
            continue;
        int x = sh->src[0], in = up->src[0], ci = producer_of(s, x), ii = producer_of(s, in);
        const ReelNnShape *xs = &s->shapes[x], *is = &s->shapes[in], *os = &s->shapes[out];
        CpuStep *cv = ci >= 0 ? &s->steps[ci] : NULL;

        if (!cv || cv->kind != REEL_NN_CONV || !own_capable(s, cv) || cv->nres ||
            only_reader(s, x) != hi || ii < 0 || s->steps[ii].kind != STEP_INPUT ||
            xs->c != 16 * os->c || is->c != os->c || is->h != xs->h || is->w != xs->w ||
            os->h != 4 * xs->h || os->w != 4 * xs->w)
            continue;
        cv->tail = 1;
        cv->dst = out;
        s->tail = 1;
        reel_log(REEL_LOG_DEBUG, "upscale", "%s: writes the output through %s, adding %s",
                 cv->l->name, sh->l->name, up->l->name);
        /* highest index first: the others stay where they are */
        for (int i = s->nsteps - 1; i >= 0; i--)
            if (i == si || i == hi || i == ui)
                drop_step(s, i);
        return;
    }
}

/* Build the step list: aliases, PReLU fusion, one step per executed layer. */
static int build_steps(CpuState *s, char *errmsg)
{
    const ReelNnGraph *g = s->g;
    int *readers = NULL, *fused_into = NULL, ret = 0;

    readers = calloc((size_t)g->nblobs, sizeof(int));
    fused_into = malloc((size_t)g->nlayers * sizeof(int));
    if (!readers || !fused_into) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto done;
    }
    for (int b = 0; b < g->nblobs; b++)
        s->alias[b] = b;
    for (int li = 0; li < g->nlayers; li++) {
        const ReelNnLayer *l = &g->layers[li];

        fused_into[li] = -1;
        for (int i = 0; i < l->nin; i++)
            readers[l->in[i]]++;
        if (l->op == REEL_NN_SPLIT)
            for (int i = 0; i < l->nout; i++)
                s->alias[l->out[i]] = s->alias[l->in[0]];
    }
    /* a PReLU alone behind a convolution runs in place in the convolution's step */
    for (int li = 0; li < g->nlayers; li++) {
        const ReelNnLayer *l = &g->layers[li];
        int b, pi;

        if (l->op != REEL_NN_PRELU)
            continue;
        b = l->in[0];
        pi = g->blob_producer[b];
        if (g->layers[pi].op == REEL_NN_CONV && readers[b] == 1 && b != g->output)
            fused_into[li] = pi;
    }
    for (int li = 0; li < g->nlayers; li++) {
        const ReelNnLayer *l = &g->layers[li];
        CpuStep *st;

        if (l->op == REEL_NN_SPLIT || fused_into[li] >= 0)
            continue;
        if (!(st = new_step(s, errmsg))) {
            ret = REEL_ERR(ENOMEM);
            goto done;
        }
        st->l = l;
        st->kind = l->op == REEL_NN_INPUT ? STEP_INPUT : (int)l->op;
        st->nsrc = l->nin;
        if (!(st->src = malloc(((size_t)l->nin + 1) * sizeof(int)))) {
            ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
            goto done;
        }
        for (int i = 0; i < l->nin; i++)
            st->src[i] = s->alias[l->in[i]];
        st->dst = l->out[0];
    }
    /* point fused convolutions at their PReLU's output */
    for (int li = 0; li < g->nlayers; li++) {
        if (fused_into[li] < 0)
            continue;
        for (int i = 0; i < s->nsteps; i++) {
            if (s->steps[i].l == &g->layers[fused_into[li]]) {
                s->steps[i].prelu = &g->layers[li];
                s->steps[i].dst = g->layers[li].out[0];
                break;
            }
        }
    }
    fold_concats(s);
    if ((ret = fold_sums(s, errmsg)) < 0)
        goto done;
    fold_tail(s);
    /* who reads what: the formats pass writes for the readers it knows are coming */
    s->loop_reader[s->alias[g->output]] = 1;
    for (int i = 0; i < s->nsteps; i++) {
        const CpuStep *st = &s->steps[i];

        for (int k = 0; k < st->nsrc; k++) {
            if (is_loop_step(st))
                s->loop_reader[st->src[k]] = 1;
            if (st->kind == REEL_NN_CONV && wino_capable(s, st->l) && !own_capable(s, st))
                s->wino_reader[st->src[k]] = 1;
        }
    }
done:
    free(readers);
    free(fused_into);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* pass 2: formats */

static int new_blob(CpuState *s, int like, const dnnl_memory_desc_t *md, char *errmsg)
{
    int b = s->nblobs;

    if (b == s->capblobs)
        return reel_fail(errmsg, REEL_ERROR_INTERNAL, "cpu backend: shadow blobs overflow");
    s->nblobs++;
    s->shapes[b] = s->shapes[like];
    s->md[b] = *md;
    s->alias[b] = b;
    s->blob_buf[b] = -1;
    s->loop_reader[b] = s->wino_reader[b] = 0;
    s->shadow[b] = -1;
    return b;
}

/*
 * Make step `at` (already in s->steps at index *pos) read its input k with
 * descriptor want: when the blob has another one, insert a conversion step in
 * front of it (or reuse the blob's shadow made for an earlier reader).
 */
static int need_src(CpuState *s, int *pos, int k, const dnnl_memory_desc_t *want, char *errmsg)
{
    CpuStep *st = &s->steps[*pos], *cv;
    int b = st->src[k], sb, ret = 0;
    dnnl_primitive_desc_t pd = NULL;

    if (dnnl_memory_desc_equal(&s->md[b], want))
        return 0;
    sb = s->shadow[b];
    if (sb >= 0 && dnnl_memory_desc_equal(&s->md[sb], want)) {
        st->src[k] = sb;
        return 0;
    }
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, &s->md[b], s->eng, want, s->eng, s->attr),
             "conversion", st->l);
    if ((sb = new_blob(s, b, want, errmsg)) < 0)
        goto fail;
    if (!new_step(s, errmsg)) { /* may move s->steps */
        ret = REEL_ERR(ENOMEM);
        goto fail;
    }
    /* the new step goes in front of step *pos */
    memmove(&s->steps[*pos + 1], &s->steps[*pos], (size_t)(s->nsteps - 1 - *pos) * sizeof(*cv));
    cv = &s->steps[*pos];
    memset(cv, 0, sizeof(*cv));
    st = &s->steps[*pos + 1];
    cv->l = st->l;
    cv->kind = STEP_CONVERT;
    cv->nsrc = 1;
    if (!(cv->src = malloc(sizeof(int)))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto fail;
    }
    cv->src[0] = b;
    cv->dst = sb;
    ret = plan_call(cv, ROLE_REORDER, pd, errmsg);
    pd = NULL;
    if (ret < 0)
        goto fail;
    s->shadow[b] = sb;
    st->src[k] = sb;
    s->nconvert++;
    (*pos)++;
    reel_log(REEL_LOG_DEBUG, "upscale", "%s: input %d converted (%s)", st->l->name, k,
             dnnl_dt2str(want->data_type));
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return ret;
}

/* The descriptor of blob b's shape in NHWC of type dt. */
static dnnl_memory_desc_t nhwc_of(const CpuState *s, int b, dnnl_data_type_t dt)
{
    dnnl_memory_desc_t md;

    tag_desc(&md, &s->shapes[b], dt, dnnl_nhwc);
    return md;
}

/*
 * A convolution's primitive descriptor for src -> dst descriptors (either may
 * be format "any"), its activation fused when fuse != 0. NULL when oneDNN has
 * no implementation at all.
 */
static dnnl_primitive_desc_t conv_try(CpuState *s, const CpuStep *st, dnnl_alg_kind_t alg,
                                      const dnnl_memory_desc_t *src_md,
                                      const dnnl_memory_desc_t *dst_md, int fuse)
{
    const ReelNnConv *cv = &st->l->p.conv;
    dnnl_memory_desc_t wei_md, bias_md;
    dnnl_dims_t wd = {cv->out_c, cv->in_c, cv->kh, cv->kw}, bd = {cv->out_c};
    dnnl_dims_t strides = {cv->sh, cv->sw}, dil = {cv->dh - 1, cv->dw - 1};
    dnnl_dims_t pad_l = {cv->pad_t, cv->pad_l}, pad_r = {cv->pad_b, cv->pad_r};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;

    dnnl_memory_desc_init_by_tag(&wei_md, 4, wd, src_md->data_type, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_a);
    if (dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, alg, src_md,
                                                   &wei_md, cv->bias ? &bias_md : NULL, dst_md,
                                                   strides, dil, pad_l, pad_r) != dnnl_success ||
        dnnl_primitive_attr_clone(&attr, s->attr) != dnnl_success)
        goto done;
    if (fuse && cv->act != REEL_NN_ACT_NONE) {
        if (dnnl_post_ops_create(&po) != dnnl_success ||
            dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu,
                                         cv->act == REEL_NN_ACT_LEAKY ? cv->act_alpha : 0.f,
                                         0.f) != dnnl_success ||
            dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success)
            goto done;
    }
    if (dnnl_primitive_desc_create(&pd, &cd, attr, s->eng, NULL) != dnnl_success)
        pd = NULL;
done:
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return pd;
}

/* An eltwise (ReLU/leaky) primitive descriptor in place on md. */
static int act_pd(CpuState *s, const CpuStep *st, const dnnl_memory_desc_t *md,
                  dnnl_primitive_desc_t *pd, char *errmsg)
{
    const ReelNnConv *cv = &st->l->p.conv;
    dnnl_eltwise_desc_t ed;
    int ret = 0;

    *pd = NULL;
    DNNL_TRY(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, dnnl_eltwise_relu, md,
                                            cv->act == REEL_NN_ACT_LEAKY ? cv->act_alpha : 0.f,
                                            0.f),
             "activation", st->l);
    DNNL_TRY(dnnl_primitive_desc_create(pd, &ed, s->attr, s->eng, NULL), "activation", st->l);
    warn_if_ref(*pd, st->l);
fail:
    return ret;
}

/* A prelu primitive descriptor on data md (weights in the layout it picks). */
static int prelu_pd(CpuState *s, const ReelNnLayer *pl, const dnnl_memory_desc_t *md,
                    dnnl_primitive_desc_t *pd, char *errmsg)
{
    dnnl_memory_desc_t w_md;
    dnnl_dims_t wd = {1, md->dims[1], 1, 1};
    dnnl_prelu_desc_t desc;
    int ret = 0;

    *pd = NULL;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_md, 4, wd, dnnl_f32, dnnl_format_tag_any),
             "prelu desc", pl);
    DNNL_TRY(dnnl_prelu_forward_desc_init(&desc, dnnl_forward_inference, md, &w_md), "prelu desc",
             pl);
    DNNL_TRY(dnnl_primitive_desc_create(pd, &desc, s->attr, s->eng, NULL), "prelu", pl);
    warn_if_ref(*pd, pl);
fail:
    return ret;
}

/*
 * Choose a convolution's kernel and descriptors (see DESIGN): Winograd on
 * blocked f32 where it applies, else direct, its output in the layout its
 * readers want. The step's input gets a conversion step when needed.
 */
static int plan_conv(CpuState *s, int *pos, char *errmsg)
{
    CpuStep *st = &s->steps[*pos];
    const ReelNnConv *cv = &st->l->p.conv;
    int b = st->src[0], d = st->dst, ret = 0, fused = 1;
    dnnl_data_type_t dt = s->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_data_type_t ddt = s->bf16 && !s->loop_reader[d] ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t src_md, dst_md, any_src, any_dst;
    dnnl_primitive_desc_t pd = NULL;

    if (own_capable(s, st)) {
        /* clipreel's Winograd: NHWC in (bf16 or f32), NHWC out (bf16, or f32 for a C loop) */
        st->own = 1;
        s->nown++;
        s->md[d] = nhwc_of(s, d, ddt);
        src_md = nhwc_of(s, b, dt);
        reel_log(REEL_LOG_DEBUG, "upscale", "%s: clipreel Winograd %s F(%dx%d, 3x3)%s", st->l->name,
                 s->bf16 ? "bf16" : "f32", s->bf16 ? s->own_rows : 4, s->bf16 ? s->own_cols : 4,
                 st->prelu || cv->act != REEL_NN_ACT_NONE ? " (activation fused)" : "");
        /*
         * one input, or the inputs of a Concat folded into it (fold_concats); then the
         * residuals (fold_sums), in the output's type
         */
        for (int k = 0; ret >= 0 && k < s->steps[*pos].nsrc; k++) {
            const CpuStep *cs = &s->steps[*pos];

            src_md = nhwc_of(s, cs->src[k], k < cs->nsrc - cs->nres ? dt : ddt);
            ret = need_src(s, pos, k, &src_md, errmsg); /* may move the steps */
        }
        return ret;
    }
    tag_desc(&any_src, &s->shapes[b], dt, dnnl_format_tag_any);
    tag_desc(&any_dst, &s->shapes[d], ddt, dnnl_format_tag_any);
    if (wino_capable(s, st->l)) {
        tag_desc(&src_md, &s->shapes[b], dnnl_f32, dnnl_aBcd16b);
        tag_desc(&dst_md, &s->shapes[d], dnnl_f32, dnnl_aBcd16b);
        pd = conv_try(s, st, dnnl_convolution_winograd, &src_md, &dst_md, 1);
        if (pd && is_ref(pd)) {
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
        }
        st->wino = pd != NULL;
    }
    if (!pd) {
        /* direct: read the blob as it is if its type fits, write what the readers want */
        int blocked = s->wino_reader[d] && !s->loop_reader[d] && !s->bf16;

        src_md = s->md[b].data_type == dt ? s->md[b] : nhwc_of(s, b, dt);
        tag_desc(&dst_md, &s->shapes[d], ddt, blocked ? dnnl_aBcd16b : dnnl_nhwc);
        /*
         * exact in and out; then "any" on the smaller side (its conversion is
         * the cheaper one: the 3-channel image in front of the first layer),
         * then on the other; then both; then without fusion
         */
        int small_in = cv->in_c <= cv->out_c;
        for (int attempt = 0; attempt < 5 && (!pd || is_ref(pd)); attempt++) {
            int any_in = attempt >= 3 || attempt == (small_in ? 1 : 2);
            int any_out = attempt >= 3 || attempt == (small_in ? 2 : 1);

            if (pd)
                dnnl_primitive_desc_destroy(pd);
            fused = attempt < 4;
            pd = conv_try(s, st, dnnl_convolution_direct, any_in ? &any_src : &src_md,
                          any_out ? &any_dst : &dst_md, fused);
        }
        if (!pd)
            return reel_fail(errmsg, REEL_ERROR_BACKEND,
                             "cpu backend: oneDNN has no convolution for layer %s", st->l->name);
        warn_if_ref(pd, st->l);
    }
    reel_log(REEL_LOG_DEBUG, "upscale", "%s: %s%s", st->l->name, impl_of(pd),
             fused && cv->act != REEL_NN_ACT_NONE ? " (activation fused)" : "");
    if ((ret = plan_call(st, ROLE_CONV, pd, errmsg)) < 0)
        return ret;
    s->nwino += st->wino;
    /* its input as the kernel reads it, its output as the kernel writes it */
    src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    s->md[d] = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if (!fused && cv->act != REEL_NN_ACT_NONE) {
        if ((ret = act_pd(s, st, &s->md[d], &pd, errmsg)) < 0 ||
            (ret = plan_call(st, ROLE_ACT, pd, errmsg)) < 0)
            return ret;
    }
    if (st->prelu) {
        if ((ret = prelu_pd(s, st->prelu, &s->md[d], &pd, errmsg)) < 0 ||
            (ret = plan_call(st, ROLE_PRELU, pd, errmsg)) < 0)
            return ret;
    }
    return need_src(s, pos, 0, &src_md, errmsg);
}

/* dnnl_nhwc or dnnl_aBcd16b when blob b is laid out so, else dnnl_format_tag_undef. */
static dnnl_format_tag_t layout_of(const CpuState *s, int b)
{
    static const dnnl_format_tag_t tags[] = {dnnl_nhwc, dnnl_aBcd16b};

    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        dnnl_memory_desc_t md;

        tag_desc(&md, &s->shapes[b], s->md[b].data_type, tags[i]);
        if (dnnl_memory_desc_equal(&md, &s->md[b]))
            return tags[i];
    }
    return dnnl_format_tag_undef;
}

/*
 * Sum/concat/binary: every input in one type and layout, the inputs' own when
 * they agree (so a chain of blocked or bf16 tensors stays so), else NHWC f32.
 */
static int plan_multi(CpuState *s, int *pos, char *errmsg)
{
    CpuStep *st = &s->steps[*pos];
    const ReelNnLayer *l = st->l;
    int nsrc = st->nsrc, ret = 0;
    dnnl_memory_desc_t *mds = NULL, dst_md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_data_type_t dt = s->md[st->src[0]].data_type;
    dnnl_format_tag_t tag = layout_of(s, st->src[0]);
    float *scales = NULL;

    for (int k = 1; k < nsrc; k++) {
        if (s->md[st->src[k]].data_type != dt)
            dt = dnnl_f32;
        if (layout_of(s, st->src[k]) != tag)
            tag = dnnl_nhwc;
    }
    if (tag == dnnl_format_tag_undef)
        tag = dnnl_nhwc;
    mds = calloc((size_t)nsrc, sizeof(*mds));
    scales = malloc((size_t)nsrc * sizeof(float));
    if (!mds || !scales) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto fail;
    }
    for (int k = 0; k < nsrc; k++) {
        tag_desc(&mds[k], &s->shapes[st->src[k]], dt, tag);
        scales[k] = l->op == REEL_NN_ELTWISE && l->p.eltwise.coef ? l->p.eltwise.coef[k] : 1.f;
    }
    tag_desc(&dst_md, &s->shapes[st->dst], dt, tag);
    if (l->op == REEL_NN_CONCAT) {
        DNNL_TRY(dnnl_concat_primitive_desc_create(&pd, &dst_md, nsrc, 1, mds, s->attr, s->eng),
                 "concat", l);
    } else if (l->op == REEL_NN_ELTWISE) {
        DNNL_TRY(dnnl_sum_primitive_desc_create(&pd, &dst_md, nsrc, scales, mds, s->attr, s->eng),
                 "sum", l);
    } else {
        static const dnnl_alg_kind_t algs[] = {
            [REEL_NN_BIN_ADD] = dnnl_binary_add,
            [REEL_NN_BIN_SUB] = dnnl_binary_sub,
            [REEL_NN_BIN_MUL] = dnnl_binary_mul,
        };
        dnnl_binary_desc_t desc;

        DNNL_TRY(dnnl_binary_desc_init(&desc, algs[l->p.binary.op], &mds[0], &mds[1], &dst_md),
                 "binary", l);
        DNNL_TRY(dnnl_primitive_desc_create(&pd, &desc, s->attr, s->eng, NULL), "binary", l);
    }
    warn_if_ref(pd, l);
    s->md[st->dst] = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    ret = plan_call(st, l->op == REEL_NN_BINARY ? ROLE_BINARY : ROLE_MULTI, pd, errmsg);
    pd = NULL;
    for (int k = 0; ret >= 0 && k < nsrc; k++)
        ret = need_src(s, pos, k, &mds[k], errmsg); /* may move the steps */
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    free(mds);
    free(scales);
    return ret;
}

/* The input step: one reorder from the caller's planar float input into the first blob. */
static int plan_import(CpuState *s, CpuStep *st, char *errmsg)
{
    dnnl_memory_desc_t planar;
    dnnl_primitive_desc_t pd = NULL;
    int ret = 0;

    tag_desc(&planar, &s->shapes[st->dst], dnnl_f32, dnnl_nchw);
    DNNL_TRY(
        dnnl_reorder_primitive_desc_create(&pd, &planar, s->eng, &s->md[st->dst], s->eng, s->attr),
        "input conversion", st->l);
    warn_if_ref(pd, st->l);
    return plan_call(st, ROLE_IMPORT, pd, errmsg);
fail:
    return ret;
}

/*
 * PixelShuffle as one oneDNN reorder (parallel, vectorised) between two
 * strided 5-D views of the NHWC buffers, dims (y, x, c, dy, dx):
 *   in:  channel c * r * r + dy * r + dx (mode 0) or (dy * r + dx) * C + c
 *        (mode 1) of pixel (y, x);
 *   out: channel c of pixel (y * r + dy, x * r + dx).
 * Left to the C loop if oneDNN would only have its reference reorder for it.
 */
static int plan_shuffle(CpuState *s, CpuStep *st, char *errmsg)
{
    const ReelNnShape *is = &s->shapes[st->src[0]], *os = &s->shapes[st->dst];
    dnnl_dim_t r = st->l->p.shuffle.factor, C = os->c, mode = st->l->p.shuffle.mode;
    dnnl_dims_t dims = {is->h, is->w, C, r, r};
    dnnl_dims_t in_str = {(dnnl_dim_t)is->w * is->c, is->c, mode == 0 ? r * r : 1,
                          mode == 0 ? r : r * C, mode == 0 ? 1 : C};
    dnnl_dims_t out_str = {r * os->w * C, r * C, 1, (dnnl_dim_t)os->w * C, C};
    dnnl_memory_desc_t in_md, out_md;
    dnnl_primitive_desc_t pd = NULL;
    int ret = 0;

    DNNL_TRY(dnnl_memory_desc_init_by_strides(&in_md, 5, dims, dnnl_f32, in_str), "pixel shuffle",
             st->l);
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&out_md, 5, dims, dnnl_f32, out_str), "pixel shuffle",
             st->l);
    if (dnnl_reorder_primitive_desc_create(&pd, &in_md, s->eng, &out_md, s->eng, s->attr) !=
            dnnl_success ||
        is_ref(pd)) {
        if (pd)
            dnnl_primitive_desc_destroy(pd);
        return 0; /* the C loop */
    }
    return plan_call(st, ROLE_VIEW, pd, errmsg);
fail:
    return ret;
}

/*
 * Nearest Interp as oneDNN resampling: its source index round((o + 0.5) / k
 * - 0.5) equals ncnn's floor(o / k) for integer factors k, so only those; the
 * C loop does the rest.
 */
static int plan_resample(CpuState *s, CpuStep *st, char *errmsg)
{
    const ReelNnShape *is = &s->shapes[st->src[0]], *os = &s->shapes[st->dst];
    const ReelNnLayer *l = st->l;
    dnnl_resampling_desc_t rd;
    dnnl_primitive_desc_t pd = NULL;

    (void)errmsg;
    if (os->h % is->h || os->w % is->w || l->p.interp.scale_h != (float)(os->h / is->h) ||
        l->p.interp.scale_w != (float)(os->w / is->w))
        return 0;
    if (dnnl_resampling_forward_desc_init(&rd, dnnl_forward_inference, dnnl_resampling_nearest,
                                          NULL, &s->md[st->src[0]],
                                          &s->md[st->dst]) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &rd, s->attr, s->eng, NULL) != dnnl_success || is_ref(pd)) {
        if (pd)
            dnnl_primitive_desc_destroy(pd);
        return 0;
    }
    return plan_call(st, ROLE_RESAMPLE, pd, errmsg);
}

static int plan_formats(CpuState *s, char *errmsg)
{
    int ret = 0;

    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];
        dnnl_memory_desc_t md;

        if (st->kind == STEP_INPUT) {
            s->md[st->dst] = nhwc_of(s, st->dst, dnnl_f32);
            ret = plan_import(s, st, errmsg);
        } else if (st->kind == REEL_NN_CONV) {
            ret = plan_conv(s, &i, errmsg);
        } else if (st->kind == REEL_NN_PRELU) {
            dnnl_primitive_desc_t pd;

            s->md[st->dst] = s->md[st->src[0]];
            if ((ret = prelu_pd(s, st->l, &s->md[st->dst], &pd, errmsg)) >= 0)
                ret = plan_call(st, ROLE_PRELU, pd, errmsg);
        } else if (is_loop_step(st)) {
            int nsrc = st->nsrc;

            for (int k = 0; ret >= 0 && k < nsrc; k++) {
                md = nhwc_of(s, s->steps[i].src[k], dnnl_f32);
                ret = need_src(s, &i, k, &md, errmsg); /* may move the steps */
            }
            st = &s->steps[i];
            s->md[st->dst] = nhwc_of(s, st->dst, dnnl_f32);
            if (ret >= 0 && st->kind == REEL_NN_PIXEL_SHUFFLE)
                ret = plan_shuffle(s, st, errmsg);
            else if (ret >= 0 && st->kind == REEL_NN_INTERP)
                ret = plan_resample(s, st, errmsg);
        } else {
            ret = plan_multi(s, &i, errmsg);
        }
        if (ret < 0)
            return ret;
    }
    /* run() exports the output blob, in whatever layout it has, to the planar output */
    s->out_blob = s->alias[s->g->output];
    if (!s->tail) {
        dnnl_memory_desc_t planar;

        tag_desc(&planar, &s->shapes[s->out_blob], dnnl_f32, dnnl_nchw);
        DNNL_TRY(dnnl_reorder_primitive_desc_create(&s->export_call.pd, &s->md[s->out_blob], s->eng,
                                                    &planar, s->eng, s->attr),
                 "output conversion", NULL);
        warn_if_ref(s->export_call.pd, s->steps[s->nsteps - 1].l);
    }
fail:
    return ret;
}

/* ------------------------------------------------------------------------ */
/* pass 3: buffers */

/*
 * A buffer of at least `need` bytes for a blob written now: the smallest free
 * one that fits, else the largest free one (grown), else a new one. Its index,
 * or -1 when out of memory.
 */
static int buffer_for(CpuState *s, int *free_list, int *nfree, int *cap, size_t need)
{
    int best, got, fit = -1, big = -1;

    for (int f = 0; f < *nfree; f++) {
        size_t have = s->buf_bytes[free_list[f]];

        if (have >= need) {
            if (fit < 0 || have < s->buf_bytes[free_list[fit]])
                fit = f;
        } else if (big < 0 || have > s->buf_bytes[free_list[big]]) {
            big = f;
        }
    }
    best = fit >= 0 ? fit : big;
    if (best >= 0) {
        got = free_list[best];
        free_list[best] = free_list[--*nfree];
    } else {
        if (s->nbufs == *cap) {
            int ncap = *cap ? *cap * 2 : 16;
            size_t *nb = realloc(s->buf_bytes, (size_t)ncap * sizeof(size_t));

            if (!nb)
                return -1;
            s->buf_bytes = nb;
            *cap = ncap;
        }
        s->buf_bytes[s->nbufs] = 0;
        got = s->nbufs++;
    }
    if (s->buf_bytes[got] < need)
        s->buf_bytes[got] = need;
    return got;
}

/* Give every canonical blob a buffer, reusing buffers whose blobs are dead. */
static int plan_buffers(CpuState *s, char *errmsg)
{
    int *last_use = NULL, *free_list = NULL, nfree = 0, ret = 0, cap = 0;

    last_use = malloc((size_t)s->nblobs * sizeof(int));
    free_list = malloc(((size_t)s->nsteps + 1) * sizeof(int));
    if (!last_use || !free_list) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto done;
    }
    for (int b = 0; b < s->nblobs; b++) {
        last_use[b] = -1;
        s->blob_buf[b] = -1;
    }
    for (int i = 0; i < s->nsteps; i++)
        for (int k = 0; k < s->steps[i].nsrc; k++)
            last_use[s->steps[i].src[k]] = i;
    last_use[s->out_blob] = s->nsteps; /* read by run() after the last step */

    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];

        if (!st->tail) { /* a tail writes the caller's output: no buffer */
            int got =
                buffer_for(s, free_list, &nfree, &cap, dnnl_memory_desc_get_size(&s->md[st->dst]));

            if (got < 0) {
                ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
                goto done;
            }
            s->blob_buf[st->dst] = got;
            if (last_use[st->dst] < 0) /* written, never read: its buffer is free again at once */
                free_list[nfree++] = got;
        }
        for (int k = 0; k < st->nsrc; k++) {
            int b = st->src[k], dup = 0;

            for (int j = 0; j < k; j++)
                dup |= st->src[j] == b;
            if (last_use[b] == i && !dup)
                free_list[nfree++] = s->blob_buf[b];
        }
    }
    if (!(s->bufs = calloc((size_t)s->nbufs, sizeof(*s->bufs))) ||
        !(s->buf_cap = calloc((size_t)s->nbufs, sizeof(*s->buf_cap)))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto done;
    }
    for (int i = 0; i < s->nbufs; i++) {
        if (!(s->bufs[i] = take_block(s, s->buf_bytes[i], &s->buf_cap[i]))) {
            ret = reel_fail(errmsg, REEL_ERR(ENOMEM),
                            "cpu backend: out of memory (%zu MB buffer for a %dx%d tile)",
                            s->buf_bytes[i] >> 20, s->in_w, s->in_h);
            goto done;
        }
    }
done:
    free(last_use);
    free(free_list);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* pass 4: primitives */

static int make_conv(CpuState *s, CpuStep *st, DnnlCall *c, char *errmsg)
{
    const ReelNnConv *cv = &st->l->p.conv;
    dnnl_memory_desc_t user_md, bias_md;
    dnnl_dims_t wd = {cv->out_c, cv->in_c, cv->kh, cv->kw}, bd = {cv->out_c};
    dnnl_memory_t m_src, m_dst, m_wei, m_bias = NULL;
    int ret = 0;

    DNNL_TRY(dnnl_memory_desc_init_by_tag(&user_md, 4, wd, dnnl_f32, dnnl_oihw), "weights desc",
             st->l);
    if ((ret = import_const(s, st, &user_md, cv->weight,
                            dnnl_primitive_desc_query_md(c->pd, dnnl_query_weights_md, 0), &m_wei,
                            errmsg)) < 0 ||
        (ret = step_mem(s, st, &s->md[st->src[0]], buf_of(s, st->src[0]), &m_src, errmsg)) < 0 ||
        (ret = step_mem(s, st, &s->md[st->dst], buf_of(s, st->dst), &m_dst, errmsg)) < 0)
        goto fail;
    if (cv->bias) {
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_a), "bias desc",
                 st->l);
        if ((ret = step_mem(s, st, &bias_md, cv->bias, &m_bias, errmsg)) < 0)
            goto fail;
    }
    if ((ret = make_call(s, st, c, 4, errmsg)) < 0)
        goto fail;
    call_arg(c, DNNL_ARG_SRC, m_src);
    call_arg(c, DNNL_ARG_WEIGHTS, m_wei);
    call_arg(c, DNNL_ARG_DST, m_dst);
    if (m_bias)
        call_arg(c, DNNL_ARG_BIAS, m_bias);
fail:
    return ret;
}

static int make_prelu(CpuState *s, CpuStep *st, DnnlCall *c, char *errmsg)
{
    const ReelNnLayer *pl = st->kind == REEL_NN_PRELU ? st->l : st->prelu;
    int in_place = st->kind != REEL_NN_PRELU, ch = (int)s->md[st->dst].dims[1];
    dnnl_memory_desc_t user_md;
    dnnl_dims_t wd = {1, ch, 1, 1};
    dnnl_memory_t m_src, m_dst, m_w;
    int ret;

    if (!(st->prelu_w = malloc((size_t)ch * sizeof(float))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
    for (int k = 0; k < ch; k++)
        st->prelu_w[k] = pl->p.prelu.slope[pl->p.prelu.n == 1 ? 0 : k];
    dnnl_memory_desc_init_by_tag(&user_md, 4, wd, dnnl_f32, dnnl_abcd);
    if ((ret = import_const(s, st, &user_md, st->prelu_w,
                            dnnl_primitive_desc_query_md(c->pd, dnnl_query_weights_md, 0), &m_w,
                            errmsg)) < 0 ||
        (ret = step_mem(s, st, &s->md[st->dst], buf_of(s, in_place ? st->dst : st->src[0]), &m_src,
                        errmsg)) < 0 ||
        (ret = step_mem(s, st, &s->md[st->dst], buf_of(s, st->dst), &m_dst, errmsg)) < 0 ||
        (ret = make_call(s, st, c, 3, errmsg)) < 0)
        return ret;
    call_arg(c, DNNL_ARG_SRC, m_src);
    call_arg(c, DNNL_ARG_WEIGHTS, m_w);
    call_arg(c, DNNL_ARG_DST, m_dst);
    return 0;
}

/* The Winograd kernel's weights for step st; its scratch need counted in s. */
static int make_own(CpuState *s, CpuStep *st, char *errmsg)
{
    const ReelNnConv *cv = &st->l->p.conv;
    float act_slope = cv->act == REEL_NN_ACT_LEAKY ? cv->act_alpha : 0.f;
    ReelWinoSpec spec = {
        .kind = s->bf16 ? REEL_WINO_BF16 : REEL_WINO_F32,
        .in_c = cv->in_c,
        .out_c = cv->out_c,
        .weight = cv->weight,
        .bias = cv->bias,
        .out_f32 = s->md[st->dst].data_type == dnnl_f32,
        .h = s->shapes[st->src[0]].h, /* 3x3, stride 1, pad 1: the output's (a tail's: 1/4) */
        .w = s->shapes[st->src[0]].w,
        .tile_rows = s->own_rows,
        .tile_cols = s->own_cols,
        .threads = s->threads,
        .plain_stores = s->plain_stores,
        .share_group = s->wino_group,
    };
    int ret;

    spec.nres = st->nres;
    for (int r = 0; r < st->nres; r++) {
        spec.res_self[r] = st->res_self[r];
        spec.res_coef[r] = st->res_coef[r];
    }
    if (st->tail) { /* the caller's planar input, added as it is: run() sets both pointers */
        spec.shuffle_out = 1;
        spec.nres = 1;
        spec.res_self[0] = spec.res_coef[0] = 1.f;
    }
    if (st->prelu) {
        spec.slope = st->prelu->p.prelu.slope;
        spec.nslope = st->prelu->p.prelu.n;
    } else if (cv->act != REEL_NN_ACT_NONE) {
        spec.slope = &act_slope;
        spec.nslope = 1;
    }
    if ((ret = reel_wino_create(&st->own_conv, &spec, errmsg)) < 0)
        return ret;
    /* the inputs (a folded Concat's several), then the residuals; the buffers are fixed now */
    st->own_io =
        (ReelWinoIo){.nsrc = st->nsrc - st->nres, .dst = st->tail ? NULL : buf_of(s, st->dst)};
    for (int k = 0; k < st->nsrc; k++) {
        if (k < st->own_io.nsrc) {
            st->own_io.src[k] = buf_of(s, st->src[k]);
            st->own_io.chans[k] = s->shapes[st->src[k]].c;
        } else {
            st->own_io.res[k - st->own_io.nsrc] = buf_of(s, st->src[k]);
        }
    }
    if (reel_wino_scratch(st->own_conv) > s->own_scratch_bytes)
        s->own_scratch_bytes = reel_wino_scratch(st->own_conv);
    return 0;
}

static int make_step(CpuState *s, CpuStep *st, char *errmsg)
{
    dnnl_memory_t m, d;
    int ret = 0;

    for (int k = 0; k < st->ncalls; k++) {
        DnnlCall *c = &st->call[k];

        switch (c->role) {
        case ROLE_CONV:
            ret = make_conv(s, st, c, errmsg);
            break;
        case ROLE_PRELU:
            ret = make_prelu(s, st, c, errmsg);
            break;
        case ROLE_ACT:
            if ((ret = step_mem(s, st, &s->md[st->dst], buf_of(s, st->dst), &d, errmsg)) < 0 ||
                (ret = make_call(s, st, c, 2, errmsg)) < 0)
                break;
            call_arg(c, DNNL_ARG_SRC, d);
            call_arg(c, DNNL_ARG_DST, d);
            break;
        case ROLE_REORDER:
            if ((ret = step_mem(s, st, &s->md[st->src[0]], buf_of(s, st->src[0]), &m, errmsg)) <
                    0 ||
                (ret = step_mem(s, st, &s->md[st->dst], buf_of(s, st->dst), &d, errmsg)) < 0 ||
                (ret = make_call(s, st, c, 2, errmsg)) < 0)
                break;
            call_arg(c, DNNL_ARG_FROM, m);
            call_arg(c, DNNL_ARG_TO, d);
            break;
        case ROLE_VIEW:
        case ROLE_RESAMPLE: {
            const dnnl_memory_desc_t *smd =
                dnnl_primitive_desc_query_md(c->pd, dnnl_query_src_md, 0);
            const dnnl_memory_desc_t *dmd =
                dnnl_primitive_desc_query_md(c->pd, dnnl_query_dst_md, 0);
            int view = c->role == ROLE_VIEW;

            if ((ret = step_mem(s, st, smd, buf_of(s, st->src[0]), &m, errmsg)) < 0 ||
                (ret = step_mem(s, st, dmd, buf_of(s, st->dst), &d, errmsg)) < 0 ||
                (ret = make_call(s, st, c, 2, errmsg)) < 0)
                break;
            call_arg(c, view ? DNNL_ARG_FROM : DNNL_ARG_SRC, m);
            call_arg(c, view ? DNNL_ARG_TO : DNNL_ARG_DST, d);
            break;
        }
        case ROLE_IMPORT:
            DNNL_TRY(dnnl_memory_create(&s->in_mem,
                                        dnnl_primitive_desc_query_md(c->pd, dnnl_query_src_md, 0),
                                        s->eng, DNNL_MEMORY_NONE),
                     "memory", st->l);
            if ((ret = step_mem(s, st, &s->md[st->dst], buf_of(s, st->dst), &d, errmsg)) < 0 ||
                (ret = make_call(s, st, c, 2, errmsg)) < 0)
                break;
            call_arg(c, DNNL_ARG_FROM, s->in_mem);
            call_arg(c, DNNL_ARG_TO, d);
            break;
        case ROLE_MULTI:
        case ROLE_BINARY:
            if ((ret = make_call(s, st, c, st->nsrc + 1, errmsg)) < 0)
                break;
            for (int i = 0; i < st->nsrc; i++) {
                if ((ret = step_mem(s, st, &s->md[st->src[i]], buf_of(s, st->src[i]), &m, errmsg)) <
                    0)
                    return ret;
                call_arg(c,
                         c->role == ROLE_BINARY ? (i ? DNNL_ARG_SRC_1 : DNNL_ARG_SRC_0)
                                                : DNNL_ARG_MULTIPLE_SRC + i,
                         m);
            }
            if ((ret = step_mem(s, st, &s->md[st->dst], buf_of(s, st->dst), &d, errmsg)) < 0)
                break;
            call_arg(c, DNNL_ARG_DST, d);
            break;
        }
        if (ret < 0)
            return ret;
        dnnl_primitive_desc_destroy(c->pd);
        c->pd = NULL;
    }
    return 0;
fail:
    return ret;
}

/* The export after the last step: out_blob -> the caller's planar output (handle set by run). */
static int make_export(CpuState *s, char *errmsg)
{
    CpuStep *last = &s->steps[s->nsteps - 1]; /* owns the memory objects */
    DnnlCall *c = &s->export_call;
    dnnl_memory_t m;
    int ret = 0;

    DNNL_TRY(dnnl_memory_create(&s->out_mem,
                                dnnl_primitive_desc_query_md(c->pd, dnnl_query_dst_md, 0), s->eng,
                                DNNL_MEMORY_NONE),
             "memory", last->l);
    if ((ret = step_mem(s, last, &s->md[s->out_blob], buf_of(s, s->out_blob), &m, errmsg)) < 0 ||
        (ret = make_call(s, last, c, 2, errmsg)) < 0)
        return ret;
    call_arg(c, DNNL_ARG_FROM, m);
    call_arg(c, DNNL_ARG_TO, s->out_mem);
    dnnl_primitive_desc_destroy(c->pd);
    c->pd = NULL;
fail:
    return ret;
}

static int make_interp_maps(CpuState *s, CpuStep *st, char *errmsg)
{
    const ReelNnShape *is = &s->shapes[st->src[0]], *os = &s->shapes[st->dst];

    st->ymap = malloc((size_t)os->h * sizeof(int));
    st->xmap = malloc((size_t)os->w * sizeof(int));
    if (!st->ymap || !st->xmap)
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
    /* ncnn's nearest: min((int)(y / scale), h - 1), in float */
    for (int y = 0; y < os->h; y++) {
        int v = (int)((float)y / st->l->p.interp.scale_h);
        st->ymap[y] = v < is->h - 1 ? v : is->h - 1;
    }
    for (int x = 0; x < os->w; x++) {
        int v = (int)((float)x / st->l->p.interp.scale_w);
        st->xmap[x] = v < is->w - 1 ? v : is->w - 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* the loops (NHWC f32) */

static void run_pixel_shuffle(const float *src, float *dst, const ReelNnShape *is,
                              const ReelNnShape *os, int r, int mode)
{
    for (int y = 0; y < is->h; y++)
        for (int dy = 0; dy < r; dy++) {
            float *d = dst + (size_t)(y * r + dy) * os->w * os->c;

            for (int x = 0; x < is->w; x++) {
                const float *sp = src + ((size_t)y * is->w + x) * is->c;

                for (int dx = 0; dx < r; dx++, d += os->c)
                    for (int c = 0; c < os->c; c++)
                        d[c] = sp[mode == 0 ? c * r * r + dy * r + dx : (dy * r + dx) * os->c + c];
            }
        }
}

static void run_interp(const float *src, float *dst, const ReelNnShape *is, const ReelNnShape *os,
                       const int *ymap, const int *xmap)
{
    size_t row = (size_t)is->c * sizeof(float);

    for (int y = 0; y < os->h; y++)
        for (int x = 0; x < os->w; x++)
            memcpy(dst + ((size_t)y * os->w + x) * os->c,
                   src + ((size_t)ymap[y] * is->w + xmap[x]) * is->c, row);
}

static void run_binary_scalar(const CpuState *s, const CpuStep *st, size_t n)
{
    const float *a = fbuf(s, st->src[0]);
    float *d = fbuf(s, st->dst), k = st->l->p.binary.b;

    switch (st->l->p.binary.op) {
    case REEL_NN_BIN_ADD:
        for (size_t i = 0; i < n; i++)
            d[i] = a[i] + k;
        break;
    case REEL_NN_BIN_SUB:
        for (size_t i = 0; i < n; i++)
            d[i] = a[i] - k;
        break;
    case REEL_NN_BIN_MUL:
        for (size_t i = 0; i < n; i++)
            d[i] = a[i] * k;
        break;
    }
}

/* Eltwise product or max (sum runs as a oneDNN primitive). */
static void run_eltwise(const CpuState *s, const CpuStep *st, size_t n)
{
    float *d = fbuf(s, st->dst);

    memcpy(d, fbuf(s, st->src[0]), n * sizeof(float));
    for (int k = 1; k < st->nsrc; k++) {
        const float *b = fbuf(s, st->src[k]);

        if (st->l->p.eltwise.op == REEL_NN_ELT_PROD)
            for (size_t i = 0; i < n; i++)
                d[i] *= b[i];
        else
            for (size_t i = 0; i < n; i++)
                d[i] = b[i] > d[i] ? b[i] : d[i];
    }
}

/* ------------------------------------------------------------------------ */
/* the table */

static void free_steps(CpuState *s)
{
    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];

        for (int k = 0; k < st->ncalls; k++) {
            if (st->call[k].prim)
                dnnl_primitive_destroy(st->call[k].prim);
            if (st->call[k].pd)
                dnnl_primitive_desc_destroy(st->call[k].pd);
            free(st->call[k].args);
        }
        for (int k = 0; k < st->nmems; k++)
            dnnl_memory_destroy(st->mems[k]);
        free(st->mems);
        reel_wino_free(&st->own_conv);
        free(st->prelu_w);
        free(st->src);
        free(st->ymap);
        free(st->xmap);
    }
    free(s->steps);
    s->steps = NULL;
    s->nsteps = 0;
}

static void cpu_free(void **state)
{
    CpuState *s = state ? *state : NULL;

    if (!s)
        return;
    free_steps(s);
    if (s->export_call.prim)
        dnnl_primitive_destroy(s->export_call.prim);
    if (s->export_call.pd)
        dnnl_primitive_desc_destroy(s->export_call.pd);
    free(s->export_call.args);
    if (s->in_mem)
        dnnl_memory_destroy(s->in_mem);
    if (s->out_mem)
        dnnl_memory_destroy(s->out_mem);
    for (int i = 0; s->bufs && i < s->nbufs; i++)
        reel_pages_free(s->bufs[i], s->buf_cap ? s->buf_cap[i] : 0);
    free(s->bufs);
    free(s->buf_bytes);
    free(s->buf_cap);
    drop_spare(s);
    reel_pages_free(s->scratch, s->scratch_cap);
    reel_pages_free(s->own_scratch, s->own_scratch_cap);
    free(s->scratch_mems);
    free(s->shapes);
    free(s->md);
    free(s->alias);
    free(s->blob_buf);
    free(s->loop_reader);
    free(s->wino_reader);
    free(s->shadow);
    if (s->attr)
        dnnl_primitive_attr_destroy(s->attr);
    if (s->strm)
        dnnl_stream_destroy(s->strm);
    if (s->eng)
        dnnl_engine_destroy(s->eng);
    free(s);
    *state = NULL;
}

static int cpu_supports(ReelUpscalePrecision p)
{
    if (p == REEL_UPSCALE_FP32)
        return 1;
    /* bf16 only where the CPU computes it natively: emulated bf16 is slower than f32 */
    return p == REEL_UPSCALE_BF16 &&
           (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_bf16) ==
               dnnl_cpu_isa_avx512_core_bf16;
}

/*
 * The previous state's buffers and scratch become s's spare blocks (take_block
 * hands them out again); the rest of it is freed.
 */
static int take_over(CpuState *s, CpuState *old, char *errmsg)
{
    int n = old->nbufs + 2, ret = 0;

    if (!(s->spare = calloc((size_t)n, sizeof(*s->spare)))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto done;
    }
    for (int i = 0; old->bufs && old->buf_cap && i < old->nbufs; i++) {
        s->spare[s->nspare++] = (struct Spare){old->bufs[i], old->buf_cap[i]};
        old->bufs[i] = NULL;
    }
    s->spare[s->nspare++] = (struct Spare){old->scratch, old->scratch_cap};
    s->spare[s->nspare++] = (struct Spare){old->own_scratch, old->own_scratch_cap};
    old->scratch = old->own_scratch = NULL;
done:
    cpu_free((void **)&old);
    return ret;
}

static void cpu_describe(const void *state, ReelBackendPlan *plan)
{
    const CpuState *s = state;

    *plan = (ReelBackendPlan){.steps = s->nsteps,
                              .own_convs = s->nown,
                              .onednn_wino = s->nwino,
                              .conversions = s->nconvert,
                              .concats_folded = s->nfolded,
                              .sums_fused = s->nfused,
                              .tail_fused = s->tail};
}

/*
 * LANE_COPY: each lane of a model of at most this many weights keeps its own
 * copy of the Winograd-ready weights (~16 bytes per weight in fp32: x4fast's
 * 1.2 M make 19.5 MB a lane); bigger models (x4plus: 16.7 M, ~265 MB) share
 * one between the lanes. Why: wino.c, shared_get.
 */
#define LANE_COPY_MAX_WEIGHTS ((size_t)4 << 20)

static int cpu_create(void **state, const ReelNnGraph *g, int in_h, int in_w,
                      const ReelBackendConfig *cfg, char *errmsg)
{
    CpuState *s;
    const char *algo = getenv("CLIPREEL_CONV_ALGO"), *tile = getenv("CLIPREEL_BF16_TILE");
    const char *stores = getenv("CLIPREEL_STREAM_STORES");
    CpuState *old = *state;
    int ret = 0, cap;

    *state = NULL;
    if (!(s = calloc(1, sizeof(*s)))) {
        cpu_free((void **)&old);
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
    }
    if (old && (ret = take_over(s, old, errmsg)) < 0)
        goto fail;
    s->g = g;
    s->threads = cfg->threads > 0 ? cfg->threads : machine_threads();
    s->bf16 = cfg->precision == REEL_UPSCALE_BF16;
    /* CLIPREEL_CONV_ALGO: "direct" = oneDNN's direct kernels, "onednn" = oneDNN's choice */
    s->wino_ok = !s->bf16 && !(algo && !strcmp(algo, "direct"));
    s->own_ok = !(algo && (!strcmp(algo, "direct") || !strcmp(algo, "onednn"))) &&
                reel_wino_supported(s->bf16 ? REEL_WINO_BF16 : REEL_WINO_F32);
    /* the bf16 tile: 4x4 (default), or the more exact 4x2 or 2x2 */
    s->own_rows = tile && !strcmp(tile, "2x2") ? 2 : 4;
    s->own_cols = tile && (!strcmp(tile, "2x2") || !strcmp(tile, "4x2")) ? 2 : 4;
    s->plain_stores = stores && !strcmp(stores, "off");
    s->wino_group = g->weight_floats <= LANE_COPY_MAX_WEIGHTS ? cfg->lane : 0;
    s->in_h = in_h;
    s->in_w = in_w;
    /* graph blobs, then at most one shadow per layer input and one for the output */
    cap = g->nblobs + 1;
    for (int i = 0; i < g->nlayers; i++)
        cap += g->layers[i].nin;
    s->capblobs = cap;
    s->nblobs = g->nblobs;
    s->shapes = calloc((size_t)cap, sizeof(*s->shapes));
    s->md = calloc((size_t)cap, sizeof(*s->md));
    s->alias = malloc((size_t)cap * sizeof(int));
    s->blob_buf = malloc((size_t)cap * sizeof(int));
    s->loop_reader = calloc((size_t)cap, sizeof(int));
    s->wino_reader = calloc((size_t)cap, sizeof(int));
    s->shadow = malloc((size_t)cap * sizeof(int));
    if (!s->shapes || !s->md || !s->alias || !s->blob_buf || !s->loop_reader || !s->wino_reader ||
        !s->shadow) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto fail;
    }
    for (int b = 0; b < cap; b++)
        s->shadow[b] = -1;
    set_omp_threads(s->threads);
    DNNL_TRY(dnnl_engine_create(&s->eng, dnnl_cpu, 0), "engine", NULL);
    DNNL_TRY(dnnl_stream_create(&s->strm, s->eng, dnnl_stream_default_flags), "stream", NULL);
    DNNL_TRY(dnnl_primitive_attr_create(&s->attr), "attr", NULL);
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(s->attr, dnnl_scratchpad_mode_user), "attr",
             NULL);
    if ((ret = reel_nn_graph_infer(g, in_h, in_w, s->shapes, errmsg)) < 0 ||
        (ret = build_steps(s, errmsg)) < 0 || (ret = plan_formats(s, errmsg)) < 0 ||
        (ret = plan_buffers(s, errmsg)) < 0)
        goto fail;
    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];

        if ((ret = make_step(s, st, errmsg)) < 0 ||
            (st->kind == REEL_NN_INTERP && !st->ncalls &&
             (ret = make_interp_maps(s, st, errmsg)) < 0) ||
            (st->own && (ret = make_own(s, st, errmsg)) < 0))
            goto fail;
    }
    if (s->own_scratch_bytes &&
        !(s->own_scratch = take_block(s, s->own_scratch_bytes, &s->own_scratch_cap))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto fail;
    }
    if (!s->tail && (ret = make_export(s, errmsg)) < 0)
        goto fail;
    if (s->scratch_bytes) {
        if (!(s->scratch = take_block(s, s->scratch_bytes, &s->scratch_cap))) {
            ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
            goto fail;
        }
        for (int i = 0; i < s->nscratch; i++)
            DNNL_TRY(dnnl_memory_set_data_handle(s->scratch_mems[i], s->scratch), "scratchpad",
                     NULL);
    }
    {
        size_t total = s->scratch_bytes + s->own_scratch_bytes;
        ReelBackendPlan p;

        for (int i = 0; i < s->nbufs; i++)
            total += s->buf_bytes[i];
        cpu_describe(s, &p);
        reel_log(REEL_LOG_DEBUG, "upscale",
                 "cpu backend: %dx%d input, %s, %d threads, %d steps (%d Winograd "
                 "convolutions by oneDNN, %d by clipreel, %d conversions, %d concats read in "
                 "place, %d sums fused), %d buffers, %zu MB activations",
                 in_w, in_h, s->bf16 ? "bf16" : "fp32", s->threads, p.steps, p.onednn_wino,
                 p.own_convs, p.conversions, p.concats_folded, p.sums_fused, s->nbufs, total >> 20);
    }
    drop_spare(s);
    *state = s;
    return 0;

fail:
    cpu_free((void **)&s);
    return ret;
}

static int cpu_run(void *state, const float *in, float *out, char *errmsg)
{
    CpuState *s = state;
    int ret = 0;

    set_omp_threads(s->threads);
    /* the import reorder only reads `in`; setting a handle allocates nothing */
    DNNL_TRY(dnnl_memory_set_data_handle(s->in_mem, (void *)(uintptr_t)in), "input", NULL);
    if (!s->tail)
        DNNL_TRY(dnnl_memory_set_data_handle(s->out_mem, out), "output", NULL);
    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];
        const ReelNnLayer *l = st->l;
        const ReelNnShape *os = &s->shapes[st->dst];
        size_t n = (size_t)os->h * os->w * os->c;

        if (st->ncalls) {
            for (int k = 0; k < st->ncalls; k++)
                DNNL_TRY(dnnl_primitive_execute(st->call[k].prim, s->strm, st->call[k].nargs,
                                                st->call[k].args),
                         "execute", l);
            DNNL_TRY(dnnl_stream_wait(s->strm), "execute", l);
            continue;
        }
        switch (st->kind) {
        case REEL_NN_CONV: /* clipreel's Winograd */
            if (st->tail) {
                ReelWinoIo io = st->own_io;

                io.dst = out;
                io.res[0] = in;
                reel_wino_run_io(st->own_conv, &io, s->own_scratch);
            } else {
                reel_wino_run_io(st->own_conv, &st->own_io, s->own_scratch);
            }
            break;
        case REEL_NN_PIXEL_SHUFFLE:
            run_pixel_shuffle(fbuf(s, st->src[0]), fbuf(s, st->dst), &s->shapes[st->src[0]], os,
                              l->p.shuffle.factor, l->p.shuffle.mode);
            break;
        case REEL_NN_INTERP:
            run_interp(fbuf(s, st->src[0]), fbuf(s, st->dst), &s->shapes[st->src[0]], os, st->ymap,
                       st->xmap);
            break;
        case REEL_NN_BINARY: /* with a scalar */
            run_binary_scalar(s, st, n);
            break;
        case REEL_NN_ELTWISE: /* product or max */
            run_eltwise(s, st, n);
            break;
        default:
            return reel_fail(errmsg, REEL_ERROR_INTERNAL, "cpu backend: step kind %d", st->kind);
        }
    }
    if (s->tail)
        return 0;
    DNNL_TRY(dnnl_primitive_execute(s->export_call.prim, s->strm, s->export_call.nargs,
                                    s->export_call.args),
             "execute", NULL);
    DNNL_TRY(dnnl_stream_wait(s->strm), "execute", NULL);
fail:
    return ret;
}

const ReelUpscaleBackend reel_upscale_backend_cpu = {
    .name = "cpu",
    .default_threads = machine_threads,
    .supports = cpu_supports,
    .create = cpu_create,
    .run = cpu_run,
    .describe = cpu_describe,
    .free = cpu_free,
};

const ReelUpscaleBackend *reel_upscale_backend_find(const char *name)
{
    static const ReelUpscaleBackend *const all[] = {&reel_upscale_backend_cpu};

    if (!name)
        return all[0];
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (!strcmp(all[i]->name, name))
            return all[i];
    return NULL;
}
