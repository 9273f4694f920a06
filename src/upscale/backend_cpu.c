/*
 * backend_cpu.c - the CPU backend: oneDNN 2.x primitives for the layers that
 * carry the work, plain C loops for the data shuffles.
 *
 * DESIGN
 *
 * Layout. Every tensor is float32 NHWC (batch 1): element (y, x, c) of a
 * C-channel map W wide sits at (y * W + x) * C + c. oneDNN 2.6 runs its
 * fastest convolutions (brgconv/jit) on NHWC directly, including the
 * 3-channel first layer, so nothing is reordered between layers, and pixel
 * shuffle and nearest resize are simple loops over per-pixel channel vectors.
 * Only the network input and output are converted from/to planar.
 *
 * Plan, built once per input shape by create():
 *   - shapes of all blobs (reel_nn_graph_infer);
 *   - Split outputs become aliases of their input (no copies);
 *   - one step per remaining layer, in file order; a PReLU that alone reads a
 *     convolution's output joins that convolution's step and runs in place
 *     on its output (oneDNN 2.6 has no fast f32 convolution with a prelu
 *     post-op: asking for one gets the reference kernel);
 *   - ReLU/LeakyReLU activations fused as eltwise post-ops; if oneDNN would
 *     answer that with its reference (slow) kernel, the activation runs as a
 *     loop after the convolution instead;
 *   - buffers by liveness: a blob takes a free buffer when its step runs and
 *     gives it back after its last reader, so x4plus's ~1800 blobs fit in a
 *     handful of buffers; a step's output never shares a buffer with its
 *     inputs (every step is out of place, the in-place PReLU aside);
 *   - oneDNN primitives: convolution (weights reordered once into the layout
 *     it picked), prelu, sum with scales (Eltwise sum), concat, binary
 *     (BinaryOp of two tensors); all share one user-managed scratchpad;
 *   - C loops: input/output conversion, PixelShuffle, nearest Interp,
 *     BinaryOp with a scalar, Eltwise product/max.
 * run() then only executes steps: no allocation, no primitive creation.
 *
 * Threads. libdnnl here uses OpenMP; the thread count is the calling
 * thread's OpenMP setting, set through omp_set_num_threads (looked up at run
 * time, so the build needs no -fopenmp) before creating and running. The C
 * loops are single-threaded.
 */
#include "upscale/backend.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>
#include <dnnl_debug.h>

#include "core/error.h"
#include "core/log.h"

#define STEP_INPUT (-1) /* kind of the step that imports the planar input */

typedef struct DnnlCall {
    dnnl_primitive_t prim;
    dnnl_exec_arg_t *args;
    int nargs;
} DnnlCall;

typedef struct CpuStep {
    const ReelNnLayer *l;
    int kind; /* ReelNnOp, or STEP_INPUT */
    int nsrc;
    int *src;                 /* canonical blob ids */
    int dst;                  /* canonical blob id */
    const ReelNnLayer *prelu; /* conv: the PReLU that alone reads its output, run in place */
    int act_in_loop;          /* conv: its activation runs as a loop, not fused */
    DnnlCall call[2];         /* oneDNN primitives of this step, run in order */
    int ncalls;
    dnnl_memory_t *mems; /* memory objects the calls use (owned) */
    int nmems, capmems;
    float *prelu_w;   /* PReLU slopes expanded to one per channel */
    int *ymap, *xmap; /* interp: source row/column of each output row/column */
} CpuStep;

typedef struct CpuState {
    const ReelNnGraph *g;
    int threads;
    int in_h, in_w;
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    dnnl_primitive_attr_t attr; /* user scratchpad: every primitive shares ours */
    ReelNnShape *shapes;
    int *alias;    /* blob -> canonical blob (Split outputs -> input) */
    int *blob_buf; /* canonical blob -> buffer index */
    int nsteps;
    CpuStep *steps;
    int nbufs;
    float **bufs;
    size_t *buf_floats;
    void *scratch;
    size_t scratch_bytes;
    dnnl_memory_t *scratch_mems; /* their handles are set once the size is known */
    int nscratch, capscratch;
} CpuState;

/* ------------------------------------------------------------------------ */
/* threads */

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

static float *buf_of(const CpuState *s, int blob)
{
    return s->bufs[s->blob_buf[blob]];
}

static void nhwc_desc(dnnl_memory_desc_t *md, const ReelNnShape *sh)
{
    dnnl_dims_t dims = {1, sh->c, sh->h, sh->w};

    dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_nhwc);
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

/* A memory object over handle (or DNNL_MEMORY_ALLOCATE), owned by the step. */
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

/* Turn pd into the step's next call with room for nargs arguments + scratchpad. */
static int step_call(CpuState *s, CpuStep *st, const_dnnl_primitive_desc_t pd, int nargs,
                     DnnlCall **out, char *errmsg)
{
    DnnlCall *c = &st->call[st->ncalls];
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sbytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    dnnl_memory_t m;
    int ret = 0;

    *out = NULL;
    if (st->ncalls == (int)(sizeof(st->call) / sizeof(st->call[0])))
        return reel_fail(errmsg, REEL_ERROR_INTERNAL, "cpu backend: too many calls in a step");
    if (!(c->args = calloc((size_t)nargs + 1, sizeof(*c->args))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
    st->ncalls++;
    DNNL_TRY(dnnl_primitive_create(&c->prim, pd), "primitive", st->l);
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
    *out = c;
fail:
    return ret;
}

static void call_arg(DnnlCall *c, int arg, dnnl_memory_t m)
{
    c->args[c->nargs++] = (dnnl_exec_arg_t){arg, m};
}

static void warn_if_ref(const_dnnl_primitive_desc_t pd, const ReelNnLayer *l)
{
    const char *impl = "";

    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
        !strncmp(impl, "ref", 3))
        reel_log(REEL_LOG_WARNING, "upscale",
                 "%s: oneDNN has only its reference kernel (%s) for this layer here: slow", l->name,
                 impl);
}

/* Reorder user weights (OIHW) into the layout the convolution wants, once. */
static int make_weights(CpuState *s, CpuStep *st, const dnnl_memory_desc_t *want,
                        dnnl_memory_t *out, char *errmsg)
{
    const ReelNnConv *cv = &st->l->p.conv;
    dnnl_memory_desc_t user_md;
    dnnl_dims_t wd = {cv->out_c, cv->in_c, cv->kh, cv->kw};
    dnnl_memory_t user = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    int ret = 0;

    DNNL_TRY(dnnl_memory_desc_init_by_tag(&user_md, 4, wd, dnnl_f32, dnnl_oihw), "weights desc",
             st->l);
    if ((ret = step_mem(s, st, &user_md, cv->weight, &user, errmsg)) < 0)
        return ret;
    if (dnnl_memory_desc_equal(&user_md, want)) {
        *out = user;
        return 0;
    }
    if ((ret = step_mem(s, st, want, DNNL_MEMORY_ALLOCATE, out, errmsg)) < 0)
        return ret;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &user_md, s->eng, want, s->eng, NULL),
             "weights reorder", st->l);
    DNNL_TRY(dnnl_primitive_create(&reorder, rpd), "weights reorder", st->l);
    {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, *out}};

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

/*
 * The primitive descriptor of a convolution, its activation fused as an
 * eltwise post-op when fuse != 0. *is_ref: oneDNN fell back to its reference
 * implementation. (oneDNN 2.6 has no fast f32 convolution with a prelu
 * post-op, which is why a PReLU runs as its own primitive after it.)
 */
static int conv_pd(CpuState *s, CpuStep *st, int fuse, dnnl_primitive_desc_t *pd, int *is_ref,
                   char *errmsg)
{
    const ReelNnConv *cv = &st->l->p.conv;
    const ReelNnShape *ish = &s->shapes[st->src[0]], *osh = &s->shapes[st->dst];
    dnnl_memory_desc_t src_md, dst_md, wei_md, bias_md;
    dnnl_dims_t wd = {cv->out_c, cv->in_c, cv->kh, cv->kw}, bd = {cv->out_c};
    dnnl_dims_t strides = {cv->sh, cv->sw}, dil = {cv->dh - 1, cv->dw - 1};
    dnnl_dims_t pad_l = {cv->pad_t, cv->pad_l}, pad_r = {cv->pad_b, cv->pad_r};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    const char *impl = "";
    int ret = 0;

    *pd = NULL;
    nhwc_desc(&src_md, ish);
    nhwc_desc(&dst_md, osh);
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&wei_md, 4, wd, dnnl_f32, dnnl_format_tag_any),
             "weights desc", st->l);
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_a), "bias desc", st->l);
    DNNL_TRY(dnnl_dilated_convolution_forward_desc_init(
                 &cd, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &wei_md,
                 cv->bias ? &bias_md : NULL, &dst_md, strides, dil, pad_l, pad_r),
             "convolution desc", st->l);
    DNNL_TRY(dnnl_primitive_attr_clone(&attr, s->attr), "attr", st->l);
    if (fuse && cv->act != REEL_NN_ACT_NONE) {
        DNNL_TRY(dnnl_post_ops_create(&po), "post-ops", st->l);
        DNNL_TRY(dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu,
                                              cv->act == REEL_NN_ACT_LEAKY ? cv->act_alpha : 0.f,
                                              0.f),
                 "eltwise post-op", st->l);
        DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops", st->l);
    }
    DNNL_TRY(dnnl_primitive_desc_create(pd, &cd, attr, s->eng, NULL), "convolution", st->l);
    DNNL_TRY(dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, &impl),
             "convolution query", st->l);
    *is_ref = !strncmp(impl, "ref", 3);
    reel_log(REEL_LOG_DEBUG, "upscale", "%s: %s%s", st->l->name, impl,
             fuse && cv->act != REEL_NN_ACT_NONE ? " (activation fused)" : "");
fail:
    if (ret < 0 && *pd) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
    }
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return ret;
}

/* A PReLU primitive from src to dst (the same buffer when run in place). */
static int prelu_create(CpuState *s, CpuStep *st, const ReelNnLayer *pl, float *src, float *dst,
                        const ReelNnShape *sh, char *errmsg)
{
    dnnl_memory_desc_t data_md, w_md;
    dnnl_dims_t wd = {1, sh->c, 1, 1};
    dnnl_prelu_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_t m_src, m_dst, m_w;
    DnnlCall *c;
    int ret = 0;

    if (!(st->prelu_w = malloc((size_t)sh->c * sizeof(float))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
    for (int k = 0; k < sh->c; k++)
        st->prelu_w[k] = pl->p.prelu.slope[pl->p.prelu.n == 1 ? 0 : k];
    nhwc_desc(&data_md, sh);
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_md, 4, wd, dnnl_f32, dnnl_nhwc), "prelu desc", pl);
    DNNL_TRY(dnnl_prelu_forward_desc_init(&desc, dnnl_forward_inference, &data_md, &w_md),
             "prelu desc", pl);
    DNNL_TRY(dnnl_primitive_desc_create(&pd, &desc, s->attr, s->eng, NULL), "prelu", pl);
    warn_if_ref(pd, pl);
    if ((ret = step_mem(s, st, &data_md, src, &m_src, errmsg)) < 0 ||
        (ret = step_mem(s, st, &data_md, dst, &m_dst, errmsg)) < 0 ||
        (ret = step_mem(s, st, &w_md, st->prelu_w, &m_w, errmsg)) < 0 ||
        (ret = step_call(s, st, pd, 3, &c, errmsg)) < 0)
        goto fail;
    call_arg(c, DNNL_ARG_SRC, m_src);
    call_arg(c, DNNL_ARG_WEIGHTS, m_w);
    call_arg(c, DNNL_ARG_DST, m_dst);
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return ret;
}

static int conv_create(CpuState *s, CpuStep *st, char *errmsg)
{
    const ReelNnConv *cv = &st->l->p.conv;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src_md, dst_md;
    dnnl_memory_t m_src, m_dst, m_wei, m_bias = NULL;
    DnnlCall *c;
    int ret = 0, is_ref = 0;

    if ((ret = conv_pd(s, st, 1, &pd, &is_ref, errmsg)) < 0)
        return ret;
    if (is_ref && cv->act != REEL_NN_ACT_NONE) {
        /* no fast kernel with the activation fused here: run it as a loop */
        dnnl_primitive_desc_destroy(pd);
        if ((ret = conv_pd(s, st, 0, &pd, &is_ref, errmsg)) < 0)
            return ret;
        st->act_in_loop = 1;
    }
    warn_if_ref(pd, st->l);
    if ((ret = make_weights(s, st, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
                            &m_wei, errmsg)) < 0)
        goto fail;
    nhwc_desc(&src_md, &s->shapes[st->src[0]]);
    nhwc_desc(&dst_md, &s->shapes[st->dst]);
    if ((ret = step_mem(s, st, &src_md, buf_of(s, st->src[0]), &m_src, errmsg)) < 0 ||
        (ret = step_mem(s, st, &dst_md, buf_of(s, st->dst), &m_dst, errmsg)) < 0)
        goto fail;
    if (cv->bias) {
        dnnl_memory_desc_t bias_md;
        dnnl_dims_t bd = {cv->out_c};

        DNNL_TRY(dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_a), "bias desc",
                 st->l);
        if ((ret = step_mem(s, st, &bias_md, cv->bias, &m_bias, errmsg)) < 0)
            goto fail;
    }
    if ((ret = step_call(s, st, pd, 4, &c, errmsg)) < 0)
        goto fail;
    call_arg(c, DNNL_ARG_SRC, m_src);
    call_arg(c, DNNL_ARG_WEIGHTS, m_wei);
    call_arg(c, DNNL_ARG_DST, m_dst);
    if (m_bias)
        call_arg(c, DNNL_ARG_BIAS, m_bias);
    /* a PReLU in place behind it; not when the activation runs as a loop in between */
    if (st->prelu && !st->act_in_loop)
        ret = prelu_create(s, st, st->prelu, buf_of(s, st->dst), buf_of(s, st->dst),
                           &s->shapes[st->dst], errmsg);
fail:
    dnnl_primitive_desc_destroy(pd);
    return ret;
}

/* Eltwise sum (with coefficients) and channel concat as oneDNN sum/concat. */
static int multi_create(CpuState *s, CpuStep *st, char *errmsg)
{
    const ReelNnLayer *l = st->l;
    dnnl_memory_desc_t *mds = NULL, dst_md;
    float *scales = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_t m;
    DnnlCall *c;
    int ret = 0;

    mds = calloc((size_t)st->nsrc, sizeof(*mds));
    scales = malloc((size_t)st->nsrc * sizeof(float));
    if (!mds || !scales) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto fail;
    }
    for (int i = 0; i < st->nsrc; i++) {
        nhwc_desc(&mds[i], &s->shapes[st->src[i]]);
        scales[i] = l->op == REEL_NN_ELTWISE && l->p.eltwise.coef ? l->p.eltwise.coef[i] : 1.f;
    }
    nhwc_desc(&dst_md, &s->shapes[st->dst]);
    if (l->op == REEL_NN_CONCAT)
        DNNL_TRY(dnnl_concat_primitive_desc_create(&pd, &dst_md, st->nsrc, 1, mds, s->attr, s->eng),
                 "concat", l);
    else
        DNNL_TRY(
            dnnl_sum_primitive_desc_create(&pd, &dst_md, st->nsrc, scales, mds, s->attr, s->eng),
            "sum", l);
    warn_if_ref(pd, l);
    if ((ret = step_call(s, st, pd, st->nsrc + 1, &c, errmsg)) < 0)
        goto fail;
    for (int i = 0; i < st->nsrc; i++) {
        if ((ret = step_mem(s, st, &mds[i], buf_of(s, st->src[i]), &m, errmsg)) < 0)
            goto fail;
        call_arg(c, DNNL_ARG_MULTIPLE_SRC + i, m);
    }
    if ((ret = step_mem(s, st, &dst_md, buf_of(s, st->dst), &m, errmsg)) < 0)
        goto fail;
    call_arg(c, DNNL_ARG_DST, m);
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    free(mds);
    free(scales);
    return ret;
}

/* BinaryOp of two tensors as a oneDNN binary primitive. */
static int binary_create(CpuState *s, CpuStep *st, char *errmsg)
{
    static const dnnl_alg_kind_t algs[] = {
        [REEL_NN_BIN_ADD] = dnnl_binary_add,
        [REEL_NN_BIN_SUB] = dnnl_binary_sub,
        [REEL_NN_BIN_MUL] = dnnl_binary_mul,
    };
    dnnl_memory_desc_t md;
    dnnl_binary_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_t a, b, d;
    DnnlCall *c;
    int ret = 0;

    nhwc_desc(&md, &s->shapes[st->dst]);
    DNNL_TRY(dnnl_binary_desc_init(&desc, algs[st->l->p.binary.op], &md, &md, &md), "binary",
             st->l);
    DNNL_TRY(dnnl_primitive_desc_create(&pd, &desc, s->attr, s->eng, NULL), "binary", st->l);
    warn_if_ref(pd, st->l);
    if ((ret = step_mem(s, st, &md, buf_of(s, st->src[0]), &a, errmsg)) < 0 ||
        (ret = step_mem(s, st, &md, buf_of(s, st->src[1]), &b, errmsg)) < 0 ||
        (ret = step_mem(s, st, &md, buf_of(s, st->dst), &d, errmsg)) < 0 ||
        (ret = step_call(s, st, pd, 3, &c, errmsg)) < 0)
        goto fail;
    call_arg(c, DNNL_ARG_SRC_0, a);
    call_arg(c, DNNL_ARG_SRC_1, b);
    call_arg(c, DNNL_ARG_DST, d);
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* the loops (NHWC) */

static void run_prelu(const float *src, float *dst, size_t pixels, int c, const float *slope, int n)
{
    for (size_t p = 0; p < pixels; p++, src += c, dst += c)
        for (int k = 0; k < c; k++) {
            float v = src[k];
            dst[k] = v < 0.f ? v * slope[n == 1 ? 0 : k] : v;
        }
}

static void run_act(float *x, size_t n, ReelNnAct act, float alpha)
{
    if (act == REEL_NN_ACT_NONE)
        return;
    for (size_t i = 0; i < n; i++)
        if (x[i] < 0.f)
            x[i] = act == REEL_NN_ACT_LEAKY ? x[i] * alpha : 0.f;
}

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

static void run_binary(const CpuState *s, const CpuStep *st, size_t n)
{
    const float *a = buf_of(s, st->src[0]);
    const float *b = st->l->p.binary.with_scalar ? NULL : buf_of(s, st->src[1]);
    float *d = buf_of(s, st->dst), k = st->l->p.binary.b;

    switch (st->l->p.binary.op) {
    case REEL_NN_BIN_ADD:
        for (size_t i = 0; i < n; i++)
            d[i] = a[i] + (b ? b[i] : k);
        break;
    case REEL_NN_BIN_SUB:
        for (size_t i = 0; i < n; i++)
            d[i] = a[i] - (b ? b[i] : k);
        break;
    case REEL_NN_BIN_MUL:
        for (size_t i = 0; i < n; i++)
            d[i] = a[i] * (b ? b[i] : k);
        break;
    }
}

static void run_eltwise(const CpuState *s, const CpuStep *st, size_t n)
{
    const ReelNnLayer *l = st->l;
    const float *coef = l->p.eltwise.coef;
    float *d = buf_of(s, st->dst);
    const float *a = buf_of(s, st->src[0]);

    if (l->p.eltwise.op == REEL_NN_ELT_SUM && coef) {
        for (size_t i = 0; i < n; i++)
            d[i] = a[i] * coef[0];
    } else {
        memcpy(d, a, n * sizeof(float));
    }
    for (int k = 1; k < st->nsrc; k++) {
        const float *b = buf_of(s, st->src[k]);

        switch (l->p.eltwise.op) {
        case REEL_NN_ELT_PROD:
            for (size_t i = 0; i < n; i++)
                d[i] *= b[i];
            break;
        case REEL_NN_ELT_SUM:
            if (coef)
                for (size_t i = 0; i < n; i++)
                    d[i] += b[i] * coef[k];
            else
                for (size_t i = 0; i < n; i++)
                    d[i] += b[i];
            break;
        case REEL_NN_ELT_MAX:
            for (size_t i = 0; i < n; i++)
                d[i] = b[i] > d[i] ? b[i] : d[i];
            break;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* planning */

static void free_steps(CpuState *s)
{
    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];

        for (int k = 0; k < st->ncalls; k++) {
            if (st->call[k].prim)
                dnnl_primitive_destroy(st->call[k].prim);
            free(st->call[k].args);
        }
        for (int k = 0; k < st->nmems; k++)
            dnnl_memory_destroy(st->mems[k]);
        free(st->mems);
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
    for (int i = 0; i < s->nbufs; i++)
        free(s->bufs[i]);
    free(s->bufs);
    free(s->buf_floats);
    free(s->scratch);
    free(s->scratch_mems);
    free(s->shapes);
    free(s->alias);
    free(s->blob_buf);
    if (s->attr)
        dnnl_primitive_attr_destroy(s->attr);
    if (s->strm)
        dnnl_stream_destroy(s->strm);
    if (s->eng)
        dnnl_engine_destroy(s->eng);
    free(s);
    *state = NULL;
}

static size_t blob_floats(const CpuState *s, int b)
{
    const ReelNnShape *sh = &s->shapes[b];

    return (size_t)sh->c * sh->h * sh->w;
}

/* Build the step list: aliases, fusion, one step per executed layer. */
static int build_steps(CpuState *s, char *errmsg)
{
    const ReelNnGraph *g = s->g;
    int *readers = NULL, *fused_into = NULL, ret = 0;

    readers = calloc((size_t)g->nblobs, sizeof(int));
    fused_into = malloc((size_t)g->nlayers * sizeof(int));
    s->steps = calloc((size_t)g->nlayers, sizeof(CpuStep));
    if (!readers || !fused_into || !s->steps) {
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
        st = &s->steps[s->nsteps++];
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
done:
    free(readers);
    free(fused_into);
    return ret;
}

/* Give every canonical blob a buffer, reusing buffers whose blobs are dead. */
static int plan_buffers(CpuState *s, char *errmsg)
{
    const ReelNnGraph *g = s->g;
    int *last_use = NULL, *free_list = NULL, nfree = 0, ret = 0, cap = 0;

    last_use = malloc((size_t)g->nblobs * sizeof(int));
    free_list = malloc(((size_t)s->nsteps + 1) * sizeof(int));
    if (!last_use || !free_list) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto done;
    }
    for (int b = 0; b < g->nblobs; b++) {
        last_use[b] = -1;
        s->blob_buf[b] = -1;
    }
    for (int i = 0; i < s->nsteps; i++)
        for (int k = 0; k < s->steps[i].nsrc; k++)
            last_use[s->steps[i].src[k]] = i;
    last_use[s->alias[g->output]] = s->nsteps; /* read by run() after the last step */

    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];
        size_t need = blob_floats(s, st->dst);
        int best = -1;

        /* the smallest free buffer that fits, else the largest free one (grown) */
        int fit = -1, big = -1;

        for (int f = 0; f < nfree; f++) {
            size_t have = s->buf_floats[free_list[f]];

            if (have >= need) {
                if (fit < 0 || have < s->buf_floats[free_list[fit]])
                    fit = f;
            } else if (big < 0 || have > s->buf_floats[free_list[big]]) {
                big = f;
            }
        }
        best = fit >= 0 ? fit : big;
        if (best >= 0) {
            s->blob_buf[st->dst] = free_list[best];
            free_list[best] = free_list[--nfree];
        } else {
            if (s->nbufs == cap) {
                int ncap = cap ? cap * 2 : 16;
                size_t *nf = realloc(s->buf_floats, (size_t)ncap * sizeof(size_t));

                if (!nf) {
                    ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
                    goto done;
                }
                s->buf_floats = nf;
                cap = ncap;
            }
            s->buf_floats[s->nbufs] = 0;
            s->blob_buf[st->dst] = s->nbufs++;
        }
        if (s->buf_floats[s->blob_buf[st->dst]] < need)
            s->buf_floats[s->blob_buf[st->dst]] = need;
        if (last_use[st->dst] < 0) {
            /* written, never read: its buffer is free again at once */
            free_list[nfree++] = s->blob_buf[st->dst];
        }
        for (int k = 0; k < st->nsrc; k++) {
            int b = st->src[k], dup = 0;

            for (int j = 0; j < k; j++)
                dup |= st->src[j] == b;
            if (last_use[b] == i && !dup)
                free_list[nfree++] = s->blob_buf[b];
        }
    }
    if (!(s->bufs = calloc((size_t)s->nbufs, sizeof(float *)))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto done;
    }
    for (int i = 0; i < s->nbufs; i++) {
        size_t bytes = (s->buf_floats[i] * sizeof(float) + 63) & ~(size_t)63;

        if (!(s->bufs[i] = aligned_alloc(64, bytes ? bytes : 64))) {
            ret = reel_fail(errmsg, REEL_ERR(ENOMEM),
                            "cpu backend: out of memory (%zu MB buffer for a %dx%d tile)",
                            bytes >> 20, s->in_w, s->in_h);
            goto done;
        }
    }
done:
    free(last_use);
    free(free_list);
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

static int cpu_supports(ReelUpscalePrecision p)
{
    return p == REEL_UPSCALE_FP32;
}

static int cpu_create(void **state, const ReelNnGraph *g, int in_h, int in_w,
                      const ReelBackendConfig *cfg, char *errmsg)
{
    CpuState *s;
    int ret = 0, threads = cfg->threads;

    *state = NULL;
    if (!(s = calloc(1, sizeof(*s))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
    s->g = g;
    s->threads = threads;
    s->in_h = in_h;
    s->in_w = in_w;
    s->shapes = malloc((size_t)g->nblobs * sizeof(*s->shapes));
    s->alias = malloc((size_t)g->nblobs * sizeof(int));
    s->blob_buf = malloc((size_t)g->nblobs * sizeof(int));
    if (!s->shapes || !s->alias || !s->blob_buf) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
        goto fail;
    }
    if ((ret = reel_nn_graph_infer(g, in_h, in_w, s->shapes, errmsg)) < 0 ||
        (ret = build_steps(s, errmsg)) < 0 || (ret = plan_buffers(s, errmsg)) < 0)
        goto fail;
    set_omp_threads(threads);
    DNNL_TRY(dnnl_engine_create(&s->eng, dnnl_cpu, 0), "engine", NULL);
    DNNL_TRY(dnnl_stream_create(&s->strm, s->eng, dnnl_stream_default_flags), "stream", NULL);
    DNNL_TRY(dnnl_primitive_attr_create(&s->attr), "attr", NULL);
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(s->attr, dnnl_scratchpad_mode_user), "attr",
             NULL);
    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];
        const ReelNnLayer *l = st->l;

        if (st->kind == REEL_NN_CONV)
            ret = conv_create(s, st, errmsg);
        else if (st->kind == REEL_NN_PRELU)
            ret = prelu_create(s, st, l, buf_of(s, st->src[0]), buf_of(s, st->dst),
                               &s->shapes[st->dst], errmsg);
        else if (st->kind == REEL_NN_CONCAT ||
                 (st->kind == REEL_NN_ELTWISE && l->p.eltwise.op == REEL_NN_ELT_SUM))
            ret = multi_create(s, st, errmsg);
        else if (st->kind == REEL_NN_BINARY && !l->p.binary.with_scalar)
            ret = binary_create(s, st, errmsg);
        else if (st->kind == REEL_NN_INTERP)
            ret = make_interp_maps(s, st, errmsg);
        if (ret < 0)
            goto fail;
    }
    if (s->scratch_bytes) {
        size_t bytes = (s->scratch_bytes + 63) & ~(size_t)63;

        if (!(s->scratch = aligned_alloc(64, bytes))) {
            ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
            goto fail;
        }
        for (int i = 0; i < s->nscratch; i++)
            DNNL_TRY(dnnl_memory_set_data_handle(s->scratch_mems[i], s->scratch), "scratchpad",
                     NULL);
    }
    {
        size_t total = s->scratch_bytes;

        for (int i = 0; i < s->nbufs; i++)
            total += s->buf_floats[i] * sizeof(float);
        reel_log(REEL_LOG_DEBUG, "upscale",
                 "cpu backend: %dx%d input, %d steps, %d buffers, %zu MB activations", in_w, in_h,
                 s->nsteps, s->nbufs, total >> 20);
    }
    *state = s;
    return 0;

fail:
    cpu_free((void **)&s);
    return ret;
}

static int cpu_run(void *state, const float *in, float *out, char *errmsg)
{
    CpuState *s = state;
    const ReelNnGraph *g = s->g;
    int ret = 0;

    set_omp_threads(s->threads);
    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];
        const ReelNnLayer *l = st->l;
        const ReelNnShape *os = &s->shapes[st->dst];
        size_t pixels = (size_t)os->h * os->w, n = pixels * os->c;
        float *d = buf_of(s, st->dst);

        for (int k = 0; k < st->ncalls; k++)
            DNNL_TRY(dnnl_primitive_execute(st->call[k].prim, s->strm, st->call[k].nargs,
                                            st->call[k].args),
                     "execute", l);
        if (st->ncalls) {
            DNNL_TRY(dnnl_stream_wait(s->strm), "execute", l);
            if (st->act_in_loop) {
                run_act(d, n, l->p.conv.act, l->p.conv.act_alpha);
                if (st->prelu)
                    run_prelu(d, d, pixels, os->c, st->prelu->p.prelu.slope, st->prelu->p.prelu.n);
            }
            continue;
        }
        switch (st->kind) {
        case STEP_INPUT:
            for (size_t p = 0; p < pixels; p++)
                for (int c = 0; c < os->c; c++)
                    d[p * os->c + c] = in[(size_t)c * pixels + p];
            break;
        case REEL_NN_PIXEL_SHUFFLE:
            run_pixel_shuffle(buf_of(s, st->src[0]), d, &s->shapes[st->src[0]], os,
                              l->p.shuffle.factor, l->p.shuffle.mode);
            break;
        case REEL_NN_INTERP:
            run_interp(buf_of(s, st->src[0]), d, &s->shapes[st->src[0]], os, st->ymap, st->xmap);
            break;
        case REEL_NN_BINARY: /* with a scalar */
            run_binary(s, st, n);
            break;
        case REEL_NN_ELTWISE: /* product or max */
            run_eltwise(s, st, n);
            break;
        default:
            return reel_fail(errmsg, REEL_ERROR_INTERNAL, "cpu backend: step kind %d", st->kind);
        }
    }
    {
        int ob = s->alias[g->output];
        const ReelNnShape *os = &s->shapes[ob];
        size_t pixels = (size_t)os->h * os->w;
        const float *src = buf_of(s, ob);

        for (int c = 0; c < os->c; c++)
            for (size_t p = 0; p < pixels; p++)
                out[(size_t)c * pixels + p] = src[p * os->c + c];
    }
fail:
    return ret;
}

const ReelUpscaleBackend reel_upscale_backend_cpu = {
    .name = "cpu",
    .supports = cpu_supports,
    .create = cpu_create,
    .run = cpu_run,
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
