/*
 * resize_bench.c - the no-AI path's crop-and-scale per frame: clipreel's
 * Lanczos-3 (src/media/resize.c; its C kernels with --c, AVX2 with --avx2) against swscale's
 * SWS_LANCZOS | SWS_ACCURATE_RND, as the pipeline used it, on the same frame.
 *
 *   resize_bench [--frames N] [--c | --avx2] [--zoom] [--cold K] SRC_WxSRC_H CROP_WxCROP_H
 *                OUT_WxOUT_H
 *
 * Prints milliseconds per frame for each and their ratio (min of 3 runs).
 * --zoom: the crop shrinks by 2 pixels each frame (a keyframed zoom), so both
 * scalers set up again for every frame (swscale: sws_getCachedContext).
 * --cold K: frame i reads source K and writes output K (i mod K), K of each,
 * as an export does (decoded frames from the decoder's pool, outputs into the
 * encoder's queue): with K large enough they are out of cache when their turn
 * comes. Without it every frame reads and writes the same, cached, buffers.
 */
#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "media/resize.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int size(const char *s, int *w, int *h)
{
    return sscanf(s, "%dx%d", w, h) == 2 && *w > 0 && *h > 0;
}

int main(int argc, char **argv)
{
    int frames = 60, c_only = 0, avx2 = 0, zoom = 0, cold = 1, a = 1, sw, sh, cw, ch, ow, oh;
    while (a < argc && argv[a][0] == '-') {
        if (!strcmp(argv[a], "--frames") && a + 1 < argc)
            frames = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--c"))
            c_only = 1;
        else if (!strcmp(argv[a], "--avx2"))
            avx2 = 1;
        else if (!strcmp(argv[a], "--zoom"))
            zoom = 1;
        else if (!strcmp(argv[a], "--cold") && a + 1 < argc)
            cold = atoi(argv[++a]);
        else
            break;
        a++;
    }
    if (argc - a != 3 || !size(argv[a], &sw, &sh) || !size(argv[a + 1], &cw, &ch) ||
        !size(argv[a + 2], &ow, &oh) || cw > sw || ch > sh || frames < 1 || cold < 1 ||
        (zoom && (cw <= 2 * frames || ch <= 2 * frames))) {
        fprintf(
            stderr,
            "usage: resize_bench [--frames N] [--c | --avx2] [--zoom] [--cold K] SRC_WxH CROP_WxH "
            "OUT_WxH\n");
        return 2;
    }
    uint8_t *(*src)[3] = calloc((size_t)cold, sizeof(*src)),
            *(*dst)[3] = calloc((size_t)cold, sizeof(*dst));
    int ss[3] = {sw, sw / 2, sw / 2}, ds[3] = {ow, ow / 2, ow / 2};
    if (!src || !dst)
        return 1;
    for (int k = 0; k < cold; k++)
        for (int p = 0; p < 3; p++) {
            size_t n = (size_t)ss[p] * (size_t)(p ? sh / 2 : sh);
            if (!(src[k][p] = malloc(n)) ||
                !(dst[k][p] = calloc((size_t)ds[p], (size_t)(p ? oh / 2 : oh))))
                return 1;
            for (size_t i = 0; i < n; i++)
                src[k][p][i] = (uint8_t)(i * 7 + i / (size_t)ss[p] * 3 + (size_t)k);
        }
    int x = ((sw - cw) / 2) & ~1;
    ReelResize rs;
    reel_resize_init(&rs);
    if (c_only)
        rs.use_simd = REEL_RESIZE_C;
    if (avx2 && rs.use_simd > REEL_RESIZE_AVX2)
        rs.use_simd = REEL_RESIZE_AVX2;
    if (reel_resize_set(&rs, AV_PIX_FMT_YUV420P, x, 0, cw, ch, ow, oh) < 0) {
        fprintf(stderr, "clipreel's scaler does not take %dx%d -> %dx%d\n", cw, ch, ow, oh);
        return 1;
    }
    struct SwsContext *c = sws_getContext(cw, ch, AV_PIX_FMT_YUV420P, ow, oh, AV_PIX_FMT_YUV420P,
                                          SWS_LANCZOS | SWS_ACCURATE_RND, NULL, NULL, NULL);
    double best_ours = 1e9, best_sws = 1e9;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        for (int i = 0; i < frames; i++) {
            if (zoom)
                reel_resize_set(&rs, AV_PIX_FMT_YUV420P, x, 0, cw - 2 * i, ch - 2 * i, ow, oh);
            reel_resize_run(&rs, (const uint8_t *const *)src[i % cold], ss, dst[i % cold], ds);
        }
        double t1 = now();
        for (int i = 0; i < frames; i++) {
            if (zoom)
                c = sws_getCachedContext(c, cw - 2 * i, ch - 2 * i, AV_PIX_FMT_YUV420P, ow, oh,
                                         AV_PIX_FMT_YUV420P, SWS_LANCZOS | SWS_ACCURATE_RND, NULL,
                                         NULL, NULL);
            const uint8_t *const *in = (const uint8_t *const *)src[i % cold];
            const uint8_t *crop[3] = {in[0] + x, in[1] + x / 2, in[2] + x / 2};
            sws_scale(c, crop, ss, 0, ch - (zoom ? 2 * i : 0), dst[i % cold], ds);
        }
        double t2 = now();
        if (t1 - t0 < best_ours)
            best_ours = t1 - t0;
        if (t2 - t1 < best_sws)
            best_sws = t2 - t1;
    }
    printf("%dx%d crop of %dx%d -> %dx%d%s%s, %d frames: clipreel %s %.3f ms/frame, swscale %.3f "
           "ms/frame, swscale / clipreel %.2f\n",
           cw, ch, sw, sh, ow, oh, zoom ? " (zooming)" : "", cold > 1 ? " (cold)" : "", frames,
           rs.use_simd == REEL_RESIZE_AVX512 ? "AVX-512"
           : rs.use_simd == REEL_RESIZE_AVX2 ? "AVX2"
                                             : "C",
           best_ours * 1e3 / frames, best_sws * 1e3 / frames, best_sws / best_ours);
    sws_freeContext(c);
    reel_resize_free(&rs);
    for (int k = 0; k < cold; k++)
        for (int p = 0; p < 3; p++) {
            free(src[k][p]);
            free(dst[k][p]);
        }
    free(src);
    free(dst);
    return 0;
}
