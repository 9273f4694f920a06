/*
 * test_plan.c - what the CPU backend makes of the shipped models (its
 * describe()), so that a planner which stopped folding would fail here and
 * not only run slower. The fixture tests prove the folded results right; this
 * proves the folds happen:
 *   - every 3x3 convolution of 16k channels in and out runs on clipreel's own
 *     Winograd kernels (wino.c);
 *   - every Concat is read in place by the convolution that reads it (x4plus:
 *     4 per dense block) and every two-input Eltwise sum is fused into a
 *     convolution's output pass (x4plus: the dense blocks' and the RRDBs');
 *   - x4fast's tail (last convolution, PixelShuffle, sum with the input
 *     upsampled) is one step writing the output: three steps fewer;
 *   - with CLIPREEL_CONV_ALGO=onednn none of that: the graph's own steps run
 *     (at least one more step per Concat and per sum, three for a tail),
 *     oneDNN's Winograd takes the convolutions it has kernels for.
 * The graph's counts are checked against the models' known figures too, so a
 * loader that lost layers cannot make both sides agree on nothing.
 *
 * usage: test_plan MODEL_DIR
 * Exit 77 (skip) on CPUs without AVX-512, where the own kernels and both folds
 * are off by design; bf16 is checked where the CPU has AVX-512 BF16.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "upscale/backend.h"
#include "upscale/ncnn_model.h"
#include "upscale/wino.h"

#include "../check.h"

#define SKIP 77

typedef struct Model {
    const char *name;
    int convs3, concats, sums; /* what the graph holds: known figures */
    int tail;                  /* 1: ends conv -> PixelShuffle(4) -> + input upsampled 4x */
} Model;

static const Model models[] = {
    {"x4fast", 33, 0, 0, 1},
    {"x4plus", 349, 276, 92, 0},
};

/* What the graph holds that the planner can fold: counted from the layers, not the plan. */
static void count_graph(const ReelNnGraph *g, int *convs3, int *concats, int *sums)
{
    *convs3 = *concats = *sums = 0;
    for (int i = 0; i < g->nlayers; i++) {
        const ReelNnLayer *l = &g->layers[i];
        const ReelNnConv *cv = &l->p.conv;

        if (l->op == REEL_NN_CONV && cv->kh == 3 && cv->kw == 3 && cv->sh == 1 && cv->sw == 1 &&
            cv->dh == 1 && cv->dw == 1 && cv->pad_t == 1 && cv->pad_b == 1 && cv->pad_l == 1 &&
            cv->pad_r == 1 && reel_wino_fits(cv->in_c, cv->out_c))
            (*convs3)++;
        *concats += l->op == REEL_NN_CONCAT;
        *sums += l->op == REEL_NN_ELTWISE && l->p.eltwise.op == REEL_NN_ELT_SUM && l->nin == 2;
    }
}

static int plan(const ReelNnGraph *g, ReelUpscalePrecision prec, ReelBackendPlan *p)
{
    const ReelUpscaleBackend *be = &reel_upscale_backend_cpu;
    ReelBackendConfig cfg = {.threads = 1, .precision = prec};
    char err[REEL_ERRMSG_SIZE];
    void *state = NULL;

    if (!be->describe) {
        fprintf(stderr, "FAIL: the cpu backend has no describe()\n");
        return -1;
    }
    if (be->create(&state, g, 64, 48, &cfg, err) < 0) {
        fprintf(stderr, "FAIL: create: %s\n", err);
        return -1;
    }
    be->describe(state, p);
    be->free(&state);
    return 0;
}

static void check_model(const char *model_dir, const Model *m)
{
    char param[4096], bin[4096], err[REEL_ERRMSG_SIZE];
    ReelNnGraph *g = NULL;
    ReelBackendPlan p, own = {0};
    int convs3, concats, sums;

    snprintf(param, sizeof(param), "%s/realesrgan-%s.param", model_dir, m->name);
    snprintf(bin, sizeof(bin), "%s/realesrgan-%s.bin", model_dir, m->name);
    if (reel_nn_graph_load(&g, param, bin, err) < 0) {
        fprintf(stderr, "FAIL: %s\n", err);
        failures++;
        return;
    }
    count_graph(g, &convs3, &concats, &sums);
    CHECK(convs3 == m->convs3 && concats == m->concats && sums == m->sums,
          "%s holds %d 3x3 convolutions, %d concats, %d sums (want %d, %d, %d)", m->name, convs3,
          concats, sums, m->convs3, m->concats, m->sums);

    for (int bf = 0; bf < 2; bf++) {
        const char *kind = bf ? "bf16" : "fp32";

        if (bf && !reel_wino_supported(REEL_WINO_BF16)) {
            printf("%s bf16: skipped (no AVX-512 BF16 on this CPU)\n", m->name);
            continue;
        }
        if (plan(g, bf ? REEL_UPSCALE_BF16 : REEL_UPSCALE_FP32, &p) < 0) {
            failures++;
            continue;
        }
        if (!bf)
            own = p;
        printf("%s %s: %d steps, %d convolutions on clipreel's kernels, %d on oneDNN's "
               "Winograd, %d conversions, %d concats read in place, %d sums fused, tail %s\n",
               m->name, kind, p.steps, p.own_convs, p.onednn_wino, p.conversions, p.concats_folded,
               p.sums_fused, p.tail_fused ? "fused" : "not fused");
        CHECK(p.tail_fused == m->tail, "%s %s: tail %sfused", m->name, kind,
              p.tail_fused ? "" : "not ");
        CHECK(p.own_convs == convs3, "%s %s: %d of %d convolutions on clipreel's kernels", m->name,
              kind, p.own_convs, convs3);
        CHECK(p.onednn_wino == 0, "%s %s: %d convolutions left to oneDNN's Winograd", m->name, kind,
              p.onednn_wino);
        CHECK(p.concats_folded == concats, "%s %s: %d of %d concats read in place", m->name, kind,
              p.concats_folded, concats);
        CHECK(p.sums_fused == sums, "%s %s: %d of %d sums fused", m->name, kind, p.sums_fused,
              sums);
    }

    /* oneDNN runs every convolution: nothing folds, the graph's Concats and sums are steps */
    setenv("CLIPREEL_CONV_ALGO", "onednn", 1);
    if (plan(g, REEL_UPSCALE_FP32, &p) == 0) {
        printf("%s fp32, CLIPREEL_CONV_ALGO=onednn: %d steps, %d on oneDNN's Winograd, %d "
               "concats read in place, %d sums fused\n",
               m->name, p.steps, p.onednn_wino, p.concats_folded, p.sums_fused);
        CHECK(p.own_convs == 0 && p.concats_folded == 0 && p.sums_fused == 0 && !p.tail_fused,
              "%s on oneDNN: %d own convolutions, %d concats folded, %d sums fused, tail %d "
              "(want 0)",
              m->name, p.own_convs, p.concats_folded, p.sums_fused, p.tail_fused);
        /* each fold took steps away (a tail three), so the unfolded plan has them all back */
        CHECK(p.steps >= own.steps + concats + sums + 3 * m->tail,
              "%s on oneDNN: %d steps, want at least %d (the folded plan's %d + %d concats + %d "
              "sums + %d for the tail)",
              m->name, p.steps, own.steps + concats + sums + 3 * m->tail, own.steps, concats, sums,
              3 * m->tail);
        CHECK(p.onednn_wino > 0, "%s on oneDNN: no convolution on its Winograd", m->name);
    } else {
        failures++;
    }
    unsetenv("CLIPREEL_CONV_ALGO");
    reel_nn_graph_free(&g);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_plan MODEL_DIR\n");
        return 2;
    }
    if (!reel_wino_supported(REEL_WINO_F32)) {
        printf("skipped: no AVX-512 on this CPU (clipreel's kernels and the folds are off)\n");
        return SKIP;
    }
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
        check_model(argv[1], &models[i]);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
