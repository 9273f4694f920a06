/*
 * conv_peak.c - what oneDNN itself reaches on this machine for the upscaler's
 * dominant layer: a 64->64 3x3 convolution (pad 1) on an H x W map, fp32 or
 * bf16, direct or Winograd (fp32 only: oneDNN 2.6 has no bf16 Winograd), layouts
 * chosen by oneDNN (format_tag_any), primitive created once and run repeatedly
 * (best of runs after one warm-up). Prints one JSON line:
 * {"layer":..., "gflops":...}. This is the ceiling the whole network's
 * throughput is compared against (bench/run.py, net_vs_conv). threads sets
 * oneDNN's OpenMP pool (omp_set_num_threads, looked up at run time as the
 * upscaler does); 0 or absent = all cores.
 *
 * wbf16 / wbf16_4x2 / wbf16_2x2 / wf32 time clipreel's own Winograd kernels
 * (src/upscale/wino.c: bf16 F(4x4, 3x3), F(4x2), F(2x2), NHWC bf16 in and out; f32
 * F(4x4, 3x3), NHWC f32), bias and PReLU fused, on the same layer.
 *
 * usage: conv_peak [H W [runs [f32|bf16|wino|wbf16|wbf16_4x2|wbf16_2x2|wf32 [threads]]]]
 *        (wino: oneDNN's f32 Winograd)
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <dnnl.h>

#include "upscale/wino.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        dnnl_status_t s_ = (call);                                                                 \
        if (s_ != dnnl_success) {                                                                  \
            fprintf(stderr, "conv_peak: %s failed: %d\n", #call, (int)s_);                         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int arg(int argc, char **argv, int i, int def, int lo, int hi)
{
    char *end;
    long v;

    if (argc <= i)
        return def;
    errno = 0;
    v = strtol(argv[i], &end, 10);
    if (errno || end == argv[i] || *end || v < lo || v > hi) {
        fprintf(stderr, "conv_peak: argument %d '%s' is not in %d..%d\n", i, argv[i], lo, hi);
        exit(2);
    }
    return (int)v;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* clipreel's Winograd kernels on the same layer: one JSON line like oneDNN's */
static int own_kernel(int H, int W, int runs, int threads, int bf16, int rows, int cols)
{
    static float weight[64 * 64 * 9], bias[64], slope[64];
    size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    ReelWinoSpec sp = {.kind = bf16 ? REEL_WINO_BF16 : REEL_WINO_F32,
                       .in_c = 64,
                       .out_c = 64,
                       .weight = weight,
                       .bias = bias,
                       .slope = slope,
                       .nslope = 64,
                       .h = H,
                       .w = W,
                       .tile_rows = rows,
                       .tile_cols = cols,
                       .threads = threads > 0 ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN)};
    ReelWinoConv *c;
    char err[512];
    /* 64-byte aligned, as the upscaler's tensors are: the output pass streams only into those */
    size_t bytes = ((size_t)H * W * 64 * elem + 63) & ~(size_t)63;
    void *src = aligned_alloc(64, bytes), *dst = aligned_alloc(64, bytes);
    void *scratch = NULL;
    double best = 1e30;

    if (!reel_wino_supported(sp.kind)) {
        fprintf(stderr, "conv_peak: this CPU has no AVX-512%s\n", bf16 ? " BF16" : "");
        return 1;
    }
    for (int i = 0; i < 64 * 64 * 9; i++)
        weight[i] = (float)((i * 7919) % 201 - 100) * 1e-3f;
    if (src && dst) {
        memset(src, 0, bytes);
        memset(dst, 0, bytes);
    }
    if (!src || !dst || reel_wino_create(&c, &sp, err) < 0 ||
        !(scratch = aligned_alloc(64, reel_wino_scratch(c)))) {
        fprintf(stderr, "conv_peak: %s\n", src && dst ? err : "out of memory");
        return 1;
    }
    reel_wino_run(c, src, dst, scratch); /* warm-up */
    for (int r = 0; r < runs; r++) {
        double t0 = now(), t;

        reel_wino_run(c, src, dst, scratch);
        if ((t = now() - t0) < best)
            best = t;
    }
    printf("{\"layer\":\"conv3x3_64_64\",\"h\":%d,\"w\":%d,\"dtype\":\"%s\",\"algo\":\"winograd\","
           "\"impl\":\"clipreel wino F(%dx%d,3x3)\",\"threads\":%d,\"best_s\":%.6f,"
           "\"gflops\":%.1f}\n",
           H, W, bf16 ? "bf16" : "f32", rows, cols, threads, best,
           2.0 * 64 * 64 * 9 * (double)H * W / best * 1e-9);
    reel_wino_free(&c);
    free(scratch);
    free(src);
    free(dst);
    return 0;
}

int main(int argc, char **argv)
{
    int H = arg(argc, argv, 1, 270, 1, 16384), W = arg(argc, argv, 2, 480, 1, 16384);
    int runs = arg(argc, argv, 3, 10, 1, 100000), threads = arg(argc, argv, 5, 0, 0, 1024);
    int bf16 = argc > 4 && !strcmp(argv[4], "bf16");
    int wino = argc > 4 && !strcmp(argv[4], "wino");
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    dnnl_memory_desc_t src_md, wei_md, bia_md, dst_md;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t conv;
    dnnl_memory_t src, wei, bia, dst;
    dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t sd = {1, 64, H, W}, wd = {64, 64, 3, 3}, bd = {64}, dd = {1, 64, H, W};
    dnnl_dims_t strides = {1, 1}, pad = {1, 1};

    if (argc > 4 && !strcmp(argv[4], "wbf16"))
        return own_kernel(H, W, runs, threads, 1, 4, 4);
    if (argc > 4 && !strcmp(argv[4], "wbf16_4x2"))
        return own_kernel(H, W, runs, threads, 1, 4, 2);
    if (argc > 4 && !strcmp(argv[4], "wbf16_2x2"))
        return own_kernel(H, W, runs, threads, 1, 2, 2);
    if (argc > 4 && !strcmp(argv[4], "wf32"))
        return own_kernel(H, W, runs, threads, 0, 4, 4);
    if (threads > 0) {
        void *sym = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
        void (*set)(int);

        if (sym) {
            memcpy(&set, &sym, sizeof(set));
            set(threads);
        }
    }
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, sd, dt, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&wei_md, 4, wd, dt, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&bia_md, 1, bd, dnnl_f32, dnnl_a));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dd, dt, dnnl_format_tag_any));
    CHECK(dnnl_convolution_forward_desc_init(
        &cd, dnnl_forward_inference, wino ? dnnl_convolution_winograd : dnnl_convolution_direct,
        &src_md, &wei_md, &bia_md, &dst_md, strides, pad, pad));
    CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, eng, NULL));
    CHECK(dnnl_primitive_create(&conv, pd));
    CHECK(dnnl_memory_create(&src, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), eng,
                             DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&wei, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), eng,
                             DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&bia, &bia_md, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&dst, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), eng,
                             DNNL_MEMORY_ALLOCATE));
    /* zero data is fine for timing; denormals can't appear */
    void *p;
    const dnnl_memory_desc_t *md;
    CHECK(dnnl_memory_get_data_handle(src, &p));
    CHECK(dnnl_memory_get_memory_desc(src, &md));
    memset(p, 0, dnnl_memory_desc_get_size(md));
    CHECK(dnnl_memory_get_data_handle(wei, &p));
    CHECK(dnnl_memory_get_memory_desc(wei, &md));
    memset(p, 0, dnnl_memory_desc_get_size(md));

    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bia}, {DNNL_ARG_DST, dst}};
    CHECK(dnnl_primitive_execute(conv, strm, 4, args)); /* warm-up */
    CHECK(dnnl_stream_wait(strm));
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        CHECK(dnnl_primitive_execute(conv, strm, 4, args));
        CHECK(dnnl_stream_wait(strm));
        double t = now() - t0;
        if (t < best)
            best = t;
    }
    const char *impl = "";
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    double flop = 2.0 * 64 * 64 * 9 * (double)H * W;
    /* Winograd does fewer multiplications: its figure counts the direct algorithm's FLOPs */
    printf("{\"layer\":\"conv3x3_64_64\",\"h\":%d,\"w\":%d,\"dtype\":\"%s\",\"algo\":\"%s\","
           "\"impl\":\"%s\",\"threads\":%d,\"best_s\":%.6f,\"gflops\":%.1f}\n",
           H, W, bf16 ? "bf16" : "f32", wino ? "winograd" : "direct", impl, threads, best,
           flop / best * 1e-9);
    dnnl_primitive_destroy(conv);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(wei);
    dnnl_memory_destroy(bia);
    dnnl_memory_destroy(dst);
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    return 0;
}
