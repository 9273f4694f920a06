/*
 * backend_cpu.c - the CPU backend: convolutions on oneDNN 2.x primitives,
 * the cheap layers as plain C loops.
 *
 * DESIGN
 *
 * Layout. Every tensor is float32 NHWC (batch 1): element (y, x, c) of a
 * C-channel map W wide sits at (y * W + x) * C + c. oneDNN 2.6 runs its
 * fastest convolutions (brgconv/jit) on NHWC directly, including the 3-channel
 * first layer, so no reorders happen between layers; the per-pixel channel
 * vectors also make PReLU, concat, pixel shuffle and nearest resize simple
 * loops. Only the network input and output are converted from/to planar.
 *
 * Plan, built once per input shape by create():
 *   - shapes of all blobs (reel_nn_graph_infer);
 *   - Split outputs become aliases of their input (no copies);
 *   - a PReLU that is the only reader of a convolution's output is fused
 *     into that convolution as a oneDNN prelu post-op, ReLU/LeakyReLU
 *     activations as eltwise post-ops; if oneDNN would answer a fused
 *     convolution with its reference (slow) implementation, the fusion is
 *     dropped and the activation runs as a loop instead;
 *   - one step per remaining layer, in file order;
 *   - buffers by liveness: a blob takes a free buffer when its step runs and
 *     gives it back after its last reader, so x4plus's ~1800 blobs fit in a
 *     dozen buffers; outputs never share a buffer with the step's inputs
 *     (every step is out of place);
 *   - convolution primitives with their weights reordered once into the
 *     layout oneDNN picked, one user-managed scratchpad shared by all.
 * run() then only executes steps: no allocation, no primitive creation.
 *
 * Threads. libdnnl here uses OpenMP; the thread count is the calling
 * thread's OpenMP setting, set through omp_set_num_threads (looked up at run
 * time, so the build needs no -fopenmp) before creating and running. The C
 * loops are single-threaded: they are a few percent of the work.
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

typedef struct CpuStep {
    const ReelNnLayer *l;
    int kind;                  /* ReelNnOp, or STEP_INPUT */
    int nsrc;
    int *src;                  /* canonical blob ids */
    int dst;                   /* canonical blob id */
    int act_in_loop;           /* conv: activation not fused, run it after */
    const ReelNnLayer *prelu;  /* conv: PReLU fused into this step (or run after) */
    /* convolution */
    dnnl_primitive_t prim;
    dnnl_memory_t m_src, m_dst, m_wei, m_bias, m_prelu, m_scratch;
    float *prelu_w;            /* fused PReLU weights expanded to out_c */
    dnnl_exec_arg_t args[6];
    int nargs;
    /* interp */
    int *ymap, *xmap;
} CpuStep;

typedef struct CpuState {
    const ReelNnGraph *g;
    int threads;
    int in_h, in_w;
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    ReelNnShape *shapes;
    int *alias;          /* blob -> canonical blob (Split outputs -> input) */
    int *blob_buf;       /* canonical blob -> buffer index */
    int nsteps;
    CpuStep *steps;
    int nbufs;
    float **bufs;
    size_t *buf_floats;
    void *scratch;
    size_t scratch_bytes;
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

#define DNNL_TRY(call, what, layer)                                                        \
    do {                                                                                   \
        dnnl_status_t st_ = (call);                                                        \
        if (st_ != dnnl_success) {                                                         \
            ret = dnnl_fail(errmsg, st_, what, layer);                                     \
            goto fail;                                                                     \
        }                                                                                  \
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

/* Reorder user weights (OIHW) into the layout the primitive wants, once. */
static int make_weights(CpuState *s, CpuStep *st, const dnnl_memory_desc_t *want,
                        char *errmsg)
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
    DNNL_TRY(dnnl_memory_create(&user, &user_md, s->eng, cv->weight), "weights memory", st->l);
    if (dnnl_memory_desc_equal(&user_md, want)) {
        st->m_wei = user;
        return 0;
    }
    DNNL_TRY(dnnl_memory_create(&st->m_wei, want, s->eng, DNNL_MEMORY_ALLOCATE),
             "weights memory", st->l);
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &user_md, s->eng, want, s->eng, NULL),
             "weights reorder", st->l);
    DNNL_TRY(dnnl_primitive_create(&reorder, rpd), "weights reorder", st->l);
    {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, st->m_wei}};

        DNNL_TRY(dnnl_primitive_execute(reorder, s->strm, 2, a), "weights reorder", st->l);
        DNNL_TRY(dnnl_stream_wait(s->strm), "weights reorder", st->l);
    }
fail:
    if (reorder)
        dnnl_primitive_destroy(reorder);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (user)
        dnnl_memory_destroy(user);
    return ret;
}

/*
 * Create the primitive descriptor of a convolution step, with its activation
 * and PReLU fused when fuse != 0. *is_ref tells whether oneDNN fell back to a
 * reference implementation.
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
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_a), "bias desc",
             st->l);
    DNNL_TRY(dnnl_dilated_convolution_forward_desc_init(
                 &cd, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &wei_md,
                 cv->bias ? &bias_md : NULL, &dst_md, strides, dil, pad_l, pad_r),
             "convolution desc", st->l);
    DNNL_TRY(dnnl_primitive_attr_create(&attr), "attr", st->l);
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
             "scratchpad mode", st->l);
    if (fuse && (cv->act != REEL_NN_ACT_NONE || st->prelu)) {
        DNNL_TRY(dnnl_post_ops_create(&po), "post-ops", st->l);
        if (cv->act != REEL_NN_ACT_NONE)
            DNNL_TRY(dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu,
                                                  cv->act == REEL_NN_ACT_LEAKY ? cv->act_alpha
                                                                               : 0.f,
                                                  0.f),
                     "eltwise post-op", st->l);
        if (st->prelu)
            DNNL_TRY(dnnl_post_ops_append_prelu(po, 1 << 1), "prelu post-op", st->l);
        DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops", st->l);
    }
    DNNL_TRY(dnnl_primitive_desc_create(pd, &cd, attr, s->eng, NULL), "convolution", st->l);
    DNNL_TRY(dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, &impl),
             "convolution query", st->l);
    *is_ref = !strncmp(impl, "ref", 3);
    reel_log(REEL_LOG_DEBUG, "upscale", "%s: %s%s", st->l->name, impl,
             fuse && (cv->act || st->prelu) ? " (fused)" : "");
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

static int conv_create(CpuState *s, CpuStep *st, char *errmsg)
{
    const ReelNnConv *cv = &st->l->p.conv;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src_md, dst_md;
    const dnnl_memory_desc_t *want, *scratch_md;
    int ret = 0, is_ref = 0, fused = cv->act != REEL_NN_ACT_NONE || st->prelu;
    size_t scratch;

    if ((ret = conv_pd(s, st, 1, &pd, &is_ref, errmsg)) < 0)
        return ret;
    if (is_ref && fused) {
        /* the fused form has no fast kernel here: run the activation as a loop */
        dnnl_primitive_desc_destroy(pd);
        if ((ret = conv_pd(s, st, 0, &pd, &is_ref, errmsg)) < 0)
            return ret;
        st->act_in_loop = 1;
        fused = 0;
    }
    if (is_ref)
        reel_log(REEL_LOG_WARNING, "upscale",
                 "%s: oneDNN has only its reference convolution for this shape: slow",
                 st->l->name);
    DNNL_TRY(dnnl_primitive_create(&st->prim, pd), "convolution", st->l);
    want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if ((ret = make_weights(s, st, want, errmsg)) < 0)
        goto fail;
    nhwc_desc(&src_md, &s->shapes[st->src[0]]);
    nhwc_desc(&dst_md, &s->shapes[st->dst]);
    DNNL_TRY(dnnl_memory_create(&st->m_src, &src_md, s->eng, buf_of(s, st->src[0])),
             "src memory", st->l);
    DNNL_TRY(dnnl_memory_create(&st->m_dst, &dst_md, s->eng, buf_of(s, st->dst)), "dst memory",
             st->l);
    st->args[st->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, st->m_src};
    st->args[st->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, st->m_wei};
    st->args[st->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, st->m_dst};
    if (cv->bias) {
        dnnl_memory_desc_t bias_md;
        dnnl_dims_t bd = {cv->out_c};

        DNNL_TRY(dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_a), "bias desc",
                 st->l);
        DNNL_TRY(dnnl_memory_create(&st->m_bias, &bias_md, s->eng, cv->bias), "bias memory",
                 st->l);
        st->args[st->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, st->m_bias};
    }
    if (fused && st->prelu) {
        const ReelNnLayer *pl = st->prelu;
        dnnl_memory_desc_t pmd;
        dnnl_dims_t pd_dims = {1, cv->out_c, 1, 1};
        int idx = cv->act != REEL_NN_ACT_NONE ? 1 : 0; /* prelu is the last post-op */

        if (!(st->prelu_w = malloc((size_t)cv->out_c * sizeof(float)))) {
            ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "cpu backend: out of memory");
            goto fail;
        }
        for (int c = 0; c < cv->out_c; c++)
            st->prelu_w[c] = pl->p.prelu.slope[pl->p.prelu.n == 1 ? 0 : c];
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&pmd, 4, pd_dims, dnnl_f32, dnnl_nhwc),
                 "prelu desc", st->l);
        DNNL_TRY(dnnl_memory_create(&st->m_prelu, &pmd, s->eng, st->prelu_w), "prelu memory",
                 st->l);
        st->args[st->nargs++] = (dnnl_exec_arg_t){
            DNNL_ARG_ATTR_MULTIPLE_POST_OP(idx) | DNNL_ARG_WEIGHTS, st->m_prelu};
    }
    scratch_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    scratch = scratch_md ? dnnl_memory_desc_get_size(scratch_md) : 0;
    if (scratch) {
        /* the shared buffer is allocated after all steps know their size */
        if (scratch > s->scratch_bytes)
            s->scratch_bytes = scratch;
        DNNL_TRY(dnnl_memory_create(&st->m_scratch, scratch_md, s->eng, DNNL_MEMORY_NONE),
                 "scratchpad memory", st->l);
        st->args[st->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, st->m_scratch};
    }
fail:
    dnnl_primitive_desc_destroy(pd);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* the loops (NHWC) */

static void run_prelu(const float *src, float *dst, size_t pixels, int c, const float *slope,
                      int n)
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

static void run_interp(const float *src, float *dst, const ReelNnShape *is,
                       const ReelNnShape *os, const int *ymap, const int *xmap)
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

static void run_concat(const CpuState *s, const CpuStep *st)
{
    const ReelNnShape *os = &s->shapes[st->dst];
    size_t pixels = (size_t)os->h * os->w;
    float *d = buf_of(s, st->dst);
    int off = 0;

    for (int k = 0; k < st->nsrc; k++) {
        const float *src = buf_of(s, st->src[k]);
        int c = s->shapes[st->src[k]].c;
        size_t bytes = (size_t)c * sizeof(float);

        for (size_t p = 0; p < pixels; p++)
            memcpy(d + p * os->c + off, src + p * c, bytes);
        off += c;
    }
}

/* ------------------------------------------------------------------------ */
/* planning */

static void free_steps(CpuState *s)
{
    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];

        if (st->prim)
            dnnl_primitive_destroy(st->prim);
        if (st->m_src)
            dnnl_memory_destroy(st->m_src);
        if (st->m_dst)
            dnnl_memory_destroy(st->m_dst);
        if (st->m_wei)
            dnnl_memory_destroy(st->m_wei);
        if (st->m_bias)
            dnnl_memory_destroy(st->m_bias);
        if (st->m_prelu)
            dnnl_memory_destroy(st->m_prelu);
        if (st->m_scratch)
            dnnl_memory_destroy(st->m_scratch);
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
    free(s->shapes);
    free(s->alias);
    free(s->blob_buf);
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
    /* a PReLU alone behind a convolution joins it */
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

static int cpu_create(void **state, const ReelNnGraph *g, int in_h, int in_w, int threads,
                      char *errmsg)
{
    CpuState *s;
    int ret = 0;

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
    for (int i = 0; i < s->nsteps; i++) {
        CpuStep *st = &s->steps[i];

        if (st->kind == REEL_NN_CONV)
            ret = conv_create(s, st, errmsg);
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
        for (int i = 0; i < s->nsteps; i++)
            if (s->steps[i].m_scratch)
                DNNL_TRY(dnnl_memory_set_data_handle(s->steps[i].m_scratch, s->scratch),
                         "scratchpad", s->steps[i].l);
    }
    {
        size_t total = s->scratch_bytes;

        for (int i = 0; i < s->nbufs; i++)
            total += s->buf_floats[i] * sizeof(float);
        reel_log(REEL_LOG_DEBUG, "upscale",
                 "cpu backend: %dx%d input, %d steps, %d buffers, %zu MB activations", in_w,
                 in_h, s->nsteps, s->nbufs, total >> 20);
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

        switch (st->kind) {
        case STEP_INPUT:
            for (size_t p = 0; p < pixels; p++)
                for (int c = 0; c < os->c; c++)
                    d[p * os->c + c] = in[(size_t)c * pixels + p];
            break;
        case REEL_NN_CONV:
            DNNL_TRY(dnnl_primitive_execute(st->prim, s->strm, st->nargs, st->args),
                     "convolution", l);
            DNNL_TRY(dnnl_stream_wait(s->strm), "convolution", l);
            if (st->act_in_loop) {
                run_act(d, n, l->p.conv.act, l->p.conv.act_alpha);
                if (st->prelu)
                    run_prelu(d, d, pixels, os->c, st->prelu->p.prelu.slope,
                              st->prelu->p.prelu.n);
            }
            break;
        case REEL_NN_PRELU:
            run_prelu(buf_of(s, st->src[0]), d, pixels, os->c, l->p.prelu.slope, l->p.prelu.n);
            break;
        case REEL_NN_PIXEL_SHUFFLE:
            run_pixel_shuffle(buf_of(s, st->src[0]), d, &s->shapes[st->src[0]], os,
                              l->p.shuffle.factor, l->p.shuffle.mode);
            break;
        case REEL_NN_INTERP:
            run_interp(buf_of(s, st->src[0]), d, &s->shapes[st->src[0]], os, st->ymap,
                       st->xmap);
            break;
        case REEL_NN_BINARY:
            run_binary(s, st, n);
            break;
        case REEL_NN_ELTWISE:
            run_eltwise(s, st, n);
            break;
        case REEL_NN_CONCAT:
            run_concat(s, st);
            break;
        default:
            return reel_fail(errmsg, REEL_ERROR_INTERNAL, "cpu backend: step kind %d",
                             st->kind);
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
