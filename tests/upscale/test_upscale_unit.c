/*
 * test_upscale_unit.c - the upscaler's parts, without the golden pictures.
 *
 * usage: test_upscale_unit GROUP MODEL_DIR FIXTURE_DIR
 *   loader  ncnn .param/.bin rejections: copies of realesrgan-x4fast with one
 *           defect each (bad magic, unknown layer, truncated/oversized .bin,
 *           unsupported activation/parameter/storage, bad wiring...), and a
 *           few thousand random mutations that must fail cleanly or load,
 *           never crash (run it under REEL_SANITIZE=ON).
 *   ops     a synthetic 2x network written here that uses every layer type
 *           and parameter form the loader accepts, beyond what the shipped
 *           models use (fp16/fp32/scaled-fp32 storage, odd fp16 counts,
 *           dilation, asymmetric kernels and pads, PReLU fused and not,
 *           PixelShuffle mode 1, BinaryOp sub/mul/scalar, Eltwise
 *           max/prod/sum with coefficients, Concat), run through the public
 *           API untiled and tiled on odd frame sizes and checked against a
 *           naive float reference of the same convention. Its reach is 3 px,
 *           under the 10 px of context, so tiled must equal untiled.
 *   api     option and argument errors of reel_upscale_*.
 *   png     reel_png_read/write: gray, gray+alpha, palette, 16-bit, RGBA,
 *           interlaced inputs to RGB8; broken and missing files.
 *   cli     `clipreel upscale` ($CLIPREEL_BIN) on a fixture, untiled and
 *           tiled, against the reference; its exit codes for usage errors
 *           (2) and failures (1).
 */
#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <png.h>

#include "core/error.h"
#include "core/log.h"
#include "upscale/ncnn_model.h"
#include "upscale/png_io.h"
#include "upscale/upscale.h"

static const char *model_dir, *fixture_dir;
static char tmpdir[256];

/* ------------------------------------------------------------------------ */
/* helpers */

static uint32_t rng_state = 12345;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void tmp_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", tmpdir, name);
}

/* Replace the first occurrence of from with to (must exist). */
static char *replace(const char *text, const char *from, const char *to)
{
    const char *p = strstr(text, from);
    size_t a, lf = strlen(from), lt = strlen(to), n = strlen(text);
    char *out;

    if (!p)
        fail_msg("'%s' not found in the .param text", from);
    a = (size_t)(p - text);
    out = malloc(n - lf + lt + 1);
    assert_non_null(out);
    memcpy(out, text, a);
    memcpy(out + a, to, lt);
    memcpy(out + a + lt, p + lf, n - a - lf + 1);
    return out;
}

/* ------------------------------------------------------------------------ */
/* loader */

static char *x4_param, *x4_bin;
static size_t x4_param_len, x4_bin_len;

/* Load param/bin texts written to the temp dir; expect failure mentioning all words. */
static void expect_reject(const char *param, size_t param_len, const char *bin, size_t bin_len,
                          int want_err, const char *words)
{
    char pp[512], bp[512], err[REEL_ERRMSG_SIZE] = "", list[256];
    ReelNnGraph *g = (ReelNnGraph *)&g; /* must come back NULL */
    int ret;

    tmp_path(pp, sizeof(pp), "m.param");
    tmp_path(bp, sizeof(bp), "m.bin");
    spit(pp, param, param_len);
    spit(bp, bin, bin_len);
    ret = reel_nn_graph_load(&g, pp, bp, err);
    print_message("  -> %s\n", err);
    if (ret >= 0)
        fail_msg("loaded; wanted an error mentioning: %s", words);
    assert_null(g);
    assert_int_equal(ret, want_err);
    snprintf(list, sizeof(list), "%s", words);
    for (char *w = list, *next; w && *w; w = next) {
        if ((next = strchr(w, '|')))
            *next++ = 0;
        if (!strstr(err, w))
            fail_msg("error '%s' does not mention '%s'", err, w);
    }
}

static void expect_param_reject(const char *from, const char *to, const char *words)
{
    char *p = replace(x4_param, from, to);

    expect_reject(p, strlen(p), x4_bin, x4_bin_len, REEL_ERROR_MODEL, words);
    free(p);
}

static int loader_setup(void **state)
{
    char path[1024];

    (void)state;
    snprintf(path, sizeof(path), "%s/realesrgan-x4fast.param", model_dir);
    x4_param = slurp(path, &x4_param_len);
    snprintf(path, sizeof(path), "%s/realesrgan-x4fast.bin", model_dir);
    x4_bin = slurp(path, &x4_bin_len);
    return 0;
}

static int loader_teardown(void **state)
{
    (void)state;
    free(x4_param);
    free(x4_bin);
    return 0;
}

static void test_loads_shipped_models(void **state)
{
    static const char *names[] = {"x4fast", "x4plus"};
    char pp[1024], bp[1024], err[REEL_ERRMSG_SIZE];

    (void)state;
    for (int i = 0; i < 2; i++) {
        ReelNnGraph *g = NULL;

        snprintf(pp, sizeof(pp), "%s/realesrgan-%s.param", model_dir, names[i]);
        snprintf(bp, sizeof(bp), "%s/realesrgan-%s.bin", model_dir, names[i]);
        if (reel_nn_graph_load(&g, pp, bp, err) < 0)
            fail_msg("%s", err);
        assert_int_equal(g->scale, 4);
        assert_int_equal(g->nlayers, i == 0 ? 72 : 999);
        assert_int_equal(g->nblobs, i == 0 ? 73 : 1782);
        assert_string_equal(g->blob_names[g->output], "output");
        reel_nn_graph_free(&g);
        assert_null(g);
    }
}

static void test_bad_magic(void **state)
{
    (void)state;
    expect_param_reject("7767517", "7767518", "m.param|magic");
    expect_reject("", 0, x4_bin, x4_bin_len, REEL_ERROR_MODEL, "magic");
    expect_reject("\x89PNG\r\n\x1a\n", 8, x4_bin, x4_bin_len, REEL_ERROR_MODEL, "magic");
}

static void test_unknown_layer(void **state)
{
    (void)state;
    expect_param_reject("PReLU            PRelu_1 ", "Sigmoid          PRelu_1 ",
                        "m.param|PRelu_1|Sigmoid|not supported");
}

static void test_truncated_bin(void **state)
{
    (void)state;
    expect_reject(x4_param, x4_param_len, x4_bin, x4_bin_len - 1000, REEL_ERROR_MODEL,
                  "m.bin|truncated|Conv_66");
    expect_reject(x4_param, x4_param_len, x4_bin, 2, REEL_ERROR_MODEL,
                  "truncated|Conv_0|storage tag");
    expect_reject(x4_param, x4_param_len, x4_bin, 0, REEL_ERROR_MODEL, "truncated");
}

static void test_oversized_bin(void **state)
{
    char *big = malloc(x4_bin_len + 8);

    (void)state;
    assert_non_null(big);
    memcpy(big, x4_bin, x4_bin_len);
    memset(big + x4_bin_len, 0, 8);
    expect_reject(x4_param, x4_param_len, big, x4_bin_len + 8, REEL_ERROR_MODEL,
                  "8 bytes left over");
    free(big);
}

static void test_unsupported_activation(void **state)
{
    (void)state;
    expect_param_reject("0=64 1=3 4=1 5=1 6=1728", "0=64 1=3 4=1 5=1 6=1728 9=5",
                        "Conv_0|activation_type=5");
    expect_param_reject("0=64 1=3 4=1 5=1 6=1728", "0=64 1=3 4=1 5=1 6=1728 9=2",
                        "Conv_0|activation_params");
}

static void test_unsupported_params(void **state)
{
    (void)state;
    expect_param_reject("0=64 1=3 4=1 5=1 6=1728", "0=64 1=3 4=1 5=1 6=1728 7=1",
                        "Conv_0|parameter 7 is not supported");
    expect_param_reject("0=64 1=3 4=1 5=1 6=1728", "0=64 1=3 4=-233 5=1 6=1728",
                        "Conv_0|pad_left=-233");
    expect_param_reject("0=64 1=3 4=1 5=1 6=1728", "0=64 1=3 4=1 5=1 6=1728 8=1",
                        "int8_scale_term");
    expect_param_reject("0=64 1=3 4=1 5=1 6=1728", "0=64 1=3 4=1 5=1 6=1729", "multiple");
    expect_param_reject("0=64 1=3 4=1 5=1 6=1728", "0=64 1=3.5 4=1 5=1 6=1728",
                        "must be an integer");
    expect_param_reject("0=1 1=4.000000e+00", "0=2 1=4.000000e+00", "Resize_68|resize_type");
    expect_param_reject("0=1 1=4.000000e+00", "0=1 3=32 1=4.000000e+00", "output_height");
    expect_param_reject("235 240 output", "235 240 output 0=3", "Add_69|op_type=3");
    expect_param_reject("235 0=4", "235 0=4 1=2", "DepthToSpace_67|mode=2");
    expect_param_reject("105 0=64", "105 0=64 -23301=1,1,2", "PRelu_1|array has more");
    expect_param_reject("105 0=64", "105 0=64 -23301=3,1,2", "PRelu_1|array has fewer");
    expect_param_reject("105 0=64", "105 0=64 0=64", "PRelu_1|given twice");
    expect_param_reject("105 0=64", "105 0=64 77=1", "PRelu_1|out of range");
    expect_param_reject("105 0=64", "105 0=64 x", "PRelu_1|not key=value");
}

static void test_bad_storage(void **state)
{
    char *b = malloc(x4_bin_len);

    (void)state;
    assert_non_null(b);
    memcpy(b, x4_bin, x4_bin_len);
    /* Conv_0's weights start the file, behind their tag */
    memcpy(b, "\x38\x4b\x0d\x00", 4);
    expect_reject(x4_param, x4_param_len, b, x4_bin_len, REEL_ERROR_MODEL, "m.bin|Conv_0|int8");
    memcpy(b, "\x78\x56\x34\x12", 4);
    expect_reject(x4_param, x4_param_len, b, x4_bin_len, REEL_ERROR_MODEL,
                  "Conv_0|storage tag 0x12345678");
    /* an fp16 infinity among the weights */
    memcpy(b, x4_bin, 8);
    memcpy(b + 4, "\x00\x7c", 2);
    expect_reject(x4_param, x4_param_len, b, x4_bin_len, REEL_ERROR_MODEL,
                  "Conv_0|not a finite number");
    free(b);
}

static void test_bad_wiring(void **state)
{
    (void)state;
    expect_param_reject("1 1 105 106", "1 1 nope 106", "Conv_2|'nope'|not produced");
    expect_param_reject("1 1 105 106", "1 1 106 106", "Conv_2|'106'|not produced");
    expect_param_reject("1 1 109 110", "1 1 109 106", "Conv_4|'106'|produced twice");
    expect_param_reject("72 73", "73 73", "ends after 72 layers");
    expect_param_reject("72 73", "71 73", "text after the 71 layers");
    expect_param_reject("72 73", "72 74", "declares 74 blobs");
    expect_param_reject("72 73", "72 72", "more blobs than the 72");
    expect_param_reject("72 73", "72", "layer count");
    expect_param_reject("Convolution      Conv_0                   1 1",
                        "Convolution      Conv_0                   1 9", "Type name nin nout");
    expect_param_reject("Convolution      Conv_0                   1 1",
                        "Convolution      Conv_0                   1 2", "Conv_0|takes 1 input");
    {
        char *p1 = replace(x4_param, "72 73", "72 74");
        char *p2 = replace(p1, "1 2 data input_splitncnn_0 input_splitncnn_1",
                           "1 3 data input_splitncnn_0 input_splitncnn_1 spare");

        expect_reject(p2, strlen(p2), x4_bin, x4_bin_len, REEL_ERROR_MODEL,
                      "'spare'|'output'|both unused");
        free(p1);
        free(p2);
    }
    expect_param_reject("Input            input.1                  0 1 data",
                        "Input            input.1                  0 1 data\n"
                        "Input            input.2                  0 1 data2",
                        "input.2|second Input");
}

static void test_wrong_shapes(void **state)
{
    (void)state;
    /* an upscaler by 2 and 4 at once: the adds no longer meet */
    expect_param_reject("1=4.000000e+00 2=4.000000e+00", "1=2.000000e+00 2=2.000000e+00",
                        "Add_69|differ");
    /* a PixelShuffle of 2 gives 12 channels where 3 are expected */
    expect_param_reject("235 0=4", "235 0=2", "Add_69|12x");
}

static void test_missing_files(void **state)
{
    char pp[512], err[REEL_ERRMSG_SIZE];
    ReelNnGraph *g = NULL;

    (void)state;
    tmp_path(pp, sizeof(pp), "absent.param");
    assert_int_equal(reel_nn_graph_load(&g, pp, pp, err), REEL_ERR(ENOENT));
    assert_null(g);
    assert_non_null(strstr(err, "absent.param"));
    assert_int_equal(reel_nn_graph_load(&g, tmpdir, pp, err), REEL_ERROR_MODEL);
    assert_null(g);
    /* the .bin (mapped, not read): absent, then a directory */
    tmp_path(pp, sizeof(pp), "m.param");
    spit(pp, x4_param, x4_param_len);
    {
        char bp[512];

        tmp_path(bp, sizeof(bp), "absent.bin");
        assert_int_equal(reel_nn_graph_load(&g, pp, bp, err), REEL_ERR(ENOENT));
        assert_non_null(strstr(err, "absent.bin"));
        assert_int_equal(reel_nn_graph_load(&g, pp, tmpdir, err), REEL_ERROR_MODEL);
        assert_non_null(strstr(err, "not a regular file"));
        assert_null(g);
    }
}

/* Every fp16 value but NaN widens to the float it is (the SIMD conversion and its
 * scalar tail against ldexp), at every offset of the vector loop's tail. */
static void test_halves_exact(void **state)
{
    enum { N = 65536 };
    unsigned char *in = malloc(2 * N);
    float *out = malloc(N * sizeof(float)), *part = malloc(16 * sizeof(float));
    int checked = 0;

    (void)state;
    assert_non_null(in);
    assert_non_null(out);
    assert_non_null(part);
    for (int h = 0; h < N; h++) {
        in[2 * h] = (unsigned char)(h & 0xff);
        in[2 * h + 1] = (unsigned char)(h >> 8);
    }
    reel_nn_halves_to_floats(in, out, N);
    for (int h = 0; h < N; h++) {
        int e = (h >> 10) & 0x1f, m = h & 0x3ff;
        float want;

        if (e == 0x1f && m)
            continue; /* NaN: the loader rejects it whatever its bits */
        want = e == 0x1f ? INFINITY
               : e       ? ldexpf((float)(m | 0x400), e - 25)
                         : ldexpf((float)m, -24);
        if (h & 0x8000)
            want = -want;
        assert_memory_equal(&out[h], &want, sizeof(float));
        checked++;
    }
    assert_int_equal(checked, N - 2 * 1023);
    for (int n = 0; n <= 16; n++) { /* counts around the 8-wide loop */
        reel_nn_halves_to_floats(in + 2 * 0x3c00, part, (size_t)n);
        for (int i = 0; i < n; i++)
            assert_memory_equal(&part[i], &out[0x3c00 + i], sizeof(float));
    }
    free(in);
    free(out);
    free(part);
}

/* Random damage must give an error or a graph, never a crash or a leak. */
static void test_fuzz(void **state)
{
    char pp[512], bp[512], err[REEL_ERRMSG_SIZE];
    static const char alphabet[] = "0123456789=-,. \n\tabcXYZe+";
    int loaded = 0, rejected = 0;

    (void)state;
    tmp_path(pp, sizeof(pp), "f.param");
    tmp_path(bp, sizeof(bp), "f.bin");
    spit(bp, x4_bin, x4_bin_len);
    for (int it = 0; it < 400; it++) {
        char *p = malloc(x4_param_len + 1);
        size_t len = x4_param_len;
        ReelNnGraph *g = NULL;

        assert_non_null(p);
        memcpy(p, x4_param, x4_param_len + 1);
        if (it % 4 == 0) {
            len = rnd() % x4_param_len; /* cut short */
        } else {
            for (int k = 0; k < 1 + it % 3; k++)
                p[rnd() % len] = alphabet[rnd() % (sizeof(alphabet) - 1)];
        }
        spit(pp, p, len);
        if (reel_nn_graph_load(&g, pp, bp, err) < 0) {
            assert_null(g);
            rejected++;
        } else {
            loaded++;
            reel_nn_graph_free(&g);
        }
        free(p);
    }
    spit(pp, x4_param, x4_param_len);
    for (int it = 0; it < 200; it++) {
        char *b = malloc(x4_bin_len);
        size_t len = x4_bin_len;
        ReelNnGraph *g = NULL;

        assert_non_null(b);
        memcpy(b, x4_bin, x4_bin_len);
        if (it % 2)
            len = rnd() % x4_bin_len;
        else
            for (int k = 0; k < 4; k++)
                b[rnd() % 16] = (char)rnd(); /* the first tag and weights */
        spit(bp, b, len);
        if (reel_nn_graph_load(&g, pp, bp, err) < 0) {
            assert_null(g);
            rejected++;
        } else {
            loaded++;
            reel_nn_graph_free(&g);
        }
        free(b);
    }
    print_message("  fuzz: %d rejected, %d loaded anyway\n", rejected, loaded);
    assert_true(rejected > 300);
}

/* ------------------------------------------------------------------------ */
/* ops: a synthetic network and its naive reference */

typedef struct Map {
    int c, h, w;
    float *v; /* planar */
} Map;

static Map map_new(int c, int h, int w)
{
    Map m = {c, h, w, calloc((size_t)c * h * w, sizeof(float))};

    assert_non_null(m.v);
    return m;
}

#define AT(m, k, y, x) ((m).v[((size_t)(k) * (m).h + (y)) * (m).w + (x)])

/* Independent fp16 decoding for the reference. */
static float half_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e ? ldexp(1.0 + m / 1024.0, e - 15) : ldexp(m / 1024.0, -14);

    return (float)((h & 0x8000) ? -v : v);
}

typedef struct SynConv {
    int out_c, in_c, kh, kw, dil, pt, pb, pl, pr, act; /* act: 0, 1 relu, 2 leaky */
    float alpha;
    int storage; /* 0: fp16, 1: fp32 tag 0, 2: fp32 tag 0x0002C056 */
    int bias;
    int exp_lo; /* weights are fp16 with exponent exp_lo..exp_lo+3: |w| < 2^(exp_lo-11) */
    float *w, *b;
    uint16_t *hw; /* the fp16 bits of w */
} SynConv;

static void syn_conv_init(SynConv *cv)
{
    size_t n = (size_t)cv->out_c * cv->in_c * cv->kh * cv->kw;

    cv->w = malloc(n * sizeof(float));
    cv->hw = malloc(n * sizeof(uint16_t));
    cv->b = malloc((size_t)cv->out_c * sizeof(float));
    assert_non_null(cv->w);
    assert_non_null(cv->hw);
    assert_non_null(cv->b);
    for (size_t i = 0; i < n; i++) {
        /* fp16-exact values, with a subnormal and a negative zero */
        uint16_t h =
            (uint16_t)((rnd() & 0x8000) | ((cv->exp_lo + rnd() % 4) << 10) | (rnd() & 1023));

        if (i == 0)
            h = 0x0001;
        if (i == 1)
            h = 0x8000;
        cv->w[i] = half_value(h);
        cv->hw[i] = h;
    }
    for (int i = 0; i < cv->out_c; i++)
        cv->b[i] = cv->bias ? ((int)(rnd() % 200) - 100) / 1000.f : 0.f;
}

static void put_le32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {v & 255, (v >> 8) & 255, (v >> 16) & 255, v >> 24};

    assert_int_equal(fwrite(b, 1, 4, f), 4);
}

static void put_f32(FILE *f, float v)
{
    uint32_t u;

    memcpy(&u, &v, 4);
    put_le32(f, u);
}

static void syn_conv_write(FILE *f, const SynConv *cv)
{
    size_t n = (size_t)cv->out_c * cv->in_c * cv->kh * cv->kw;

    if (cv->storage == 0) {
        put_le32(f, 0x01306B47u);
        for (size_t i = 0; i < n; i++) {
            uint16_t h = cv->hw[i];
            unsigned char b[2] = {h & 255, h >> 8};
            assert_int_equal(fwrite(b, 1, 2, f), 2);
        }
        if (n % 2)
            assert_int_equal(fwrite("\0\0", 1, 2, f), 2);
    } else {
        put_le32(f, cv->storage == 1 ? 0 : 0x0002C056u);
        for (size_t i = 0; i < n; i++)
            put_f32(f, cv->w[i]);
    }
    if (cv->bias)
        for (int i = 0; i < cv->out_c; i++)
            put_f32(f, cv->b[i]);
}

static Map ref_conv(const Map *in, const SynConv *cv)
{
    int oh = in->h + cv->pt + cv->pb - (cv->kh - 1) * cv->dil;
    int ow = in->w + cv->pl + cv->pr - (cv->kw - 1) * cv->dil;
    Map o = map_new(cv->out_c, oh, ow);

    for (int k = 0; k < cv->out_c; k++)
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                double s = cv->b[k];

                for (int c = 0; c < cv->in_c; c++)
                    for (int i = 0; i < cv->kh; i++)
                        for (int j = 0; j < cv->kw; j++) {
                            int sy = y - cv->pt + i * cv->dil, sx = x - cv->pl + j * cv->dil;

                            if (sy >= 0 && sy < in->h && sx >= 0 && sx < in->w)
                                s += (double)cv->w[((k * cv->in_c + c) * cv->kh + i) * cv->kw + j] *
                                     AT(*in, c, sy, sx);
                        }
                if (cv->act && s < 0)
                    s = cv->act == 2 ? s * cv->alpha : 0;
                AT(o, k, y, x) = (float)s;
            }
    return o;
}

static SynConv conv0 = {.out_c = 12,
                        .in_c = 3,
                        .kh = 3,
                        .kw = 3,
                        .dil = 1,
                        .pt = 1,
                        .pb = 1,
                        .pl = 1,
                        .pr = 1,
                        .act = 2,
                        .alpha = 0.1f,
                        .storage = 0,
                        .bias = 1,
                        .exp_lo = 7};
static SynConv conv1 = {
    .out_c = 5, .in_c = 3, .kh = 1, .kw = 1, .dil = 1, .storage = 1, .exp_lo = 13};
static SynConv conv2 = {.out_c = 2,
                        .in_c = 3,
                        .kh = 3,
                        .kw = 3,
                        .dil = 2,
                        .pt = 2,
                        .pb = 2,
                        .pl = 2,
                        .pr = 2,
                        .act = 1,
                        .storage = 2,
                        .bias = 1,
                        .exp_lo = 7};
static SynConv conv3 = {.out_c = 3,
                        .in_c = 7,
                        .kh = 1,
                        .kw = 3,
                        .dil = 1,
                        .pl = 1,
                        .pr = 1,
                        .storage = 0,
                        .bias = 1,
                        .exp_lo = 12};
static float pr0_slope[3] = {0.25f, -0.5f, 0.125f}, pr1_slope[1] = {0.8f};

static const char syn_param[] =
    "7767517\n"
    "21 26\n"
    "Input in 0 1 data\n"
    "Split sp0 1 3 data d0 d1 d2\n"
    "Convolution conv0 1 1 d0 c0 0=12 1=3 4=1 5=1 6=324 9=2 -23310=1,1.000000e-01\n"
    "PixelShuffle ps 1 1 c0 p0 0=2 1=1\n"
    "Interp up 1 1 d1 u0 0=1 1=2.0 2=2.0\n"
    "BinaryOp subk 1 1 u0 u0b 0=1 1=1 2=0.5\n"
    "PReLU pr0 1 1 u0b u1 0=3\n"
    "BinaryOp sub 2 1 p0 u1 s0 0=1\n"
    "BinaryOp mulk 1 1 s0 s1 0=2 1=1 2=0.5\n"
    "Split sp1 1 4 s1 e0 e1 e2 e3\n"
    "Eltwise emax 2 1 e0 e1 m0 0=2\n"
    "Eltwise eprod 2 1 m0 e2 m1 0=0\n"
    "Convolution conv1 1 1 m1 c1 0=5 1=1 6=15\n"
    "PReLU pr1 1 1 c1 c2 0=1\n"
    "Interp up2 1 1 d2 u2 0=1 1=2.000000e+00 2=2.000000e+00\n"
    "Convolution conv2 1 1 u2 c3 0=2 1=3 2=2 4=2 5=1 6=54 9=1\n"
    "Concat cat 2 1 c2 c3 k0 0=0\n"
    "Convolution conv3 1 1 k0 c4 0=3 1=3 11=1 4=1 14=0 5=1 6=63\n"
    "Eltwise esum 2 1 c4 e3 t0 0=1 -23301=2,5.000000e-01,2.500000e-01\n"
    "BinaryOp addk 1 1 t0 t1 0=0 1=1 2=0.5\n"
    "Split sp2 1 1 t1 output\n";

static void write_syn_model(void)
{
    char pp[512], bp[512];
    FILE *f;

    syn_conv_init(&conv0);
    syn_conv_init(&conv1);
    syn_conv_init(&conv2);
    syn_conv_init(&conv3);
    tmp_path(pp, sizeof(pp), "realesrgan-x4fast.param");
    tmp_path(bp, sizeof(bp), "realesrgan-x4fast.bin");
    spit(pp, syn_param, strlen(syn_param));
    f = fopen(bp, "wb");
    assert_non_null(f);
    syn_conv_write(f, &conv0);
    for (int i = 0; i < 3; i++)
        put_f32(f, pr0_slope[i]);
    syn_conv_write(f, &conv1);
    put_f32(f, pr1_slope[0]);
    syn_conv_write(f, &conv2);
    syn_conv_write(f, &conv3);
    assert_int_equal(fclose(f), 0);
}

static void free_syn_model(void)
{
    SynConv *all[] = {&conv0, &conv1, &conv2, &conv3};

    for (int i = 0; i < 4; i++) {
        free(all[i]->w);
        free(all[i]->b);
        free(all[i]->hw);
        all[i]->w = all[i]->b = NULL;
        all[i]->hw = NULL;
    }
}

/* The synthetic network on one padded planar input, by the book. */
static Map ref_forward(const Map *x)
{
    int H = x->h * 2, W = x->w * 2;
    Map c0 = ref_conv(x, &conv0), p0 = map_new(3, H, W), u0 = map_new(3, H, W);
    Map m1 = map_new(3, H, W), c1, c3, k0 = map_new(7, H, W), c4, out = map_new(3, H, W);

    for (int k = 0; k < 3; k++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                int dy = y % 2, dx = xx % 2;
                float up = AT(*x, k, y / 2, xx / 2), s0, s1;

                /* PixelShuffle mode 1: source channel (dy * r + dx) * C + k */
                AT(p0, k, y, xx) = AT(c0, (dy * 2 + dx) * 3 + k, y / 2, xx / 2);
                AT(u0, k, y, xx) = up;
                up -= 0.5f;
                up = up < 0 ? up * pr0_slope[k] : up;
                s0 = AT(p0, k, y, xx) - up;
                s1 = s0 * 0.5f;
                AT(m1, k, y, xx) = s1 * s1; /* max(s1, s1) * s1 */
            }
    c1 = ref_conv(&m1, &conv1);
    c3 = ref_conv(&u0, &conv2);
    for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++) {
            for (int k = 0; k < 5; k++) {
                float v = AT(c1, k, y, xx);
                AT(k0, k, y, xx) = v < 0 ? v * pr1_slope[0] : v;
            }
            for (int k = 0; k < 2; k++)
                AT(k0, 5 + k, y, xx) = AT(c3, k, y, xx);
        }
    c4 = ref_conv(&k0, &conv3);
    for (int k = 0; k < 3; k++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                float u = AT(u0, k, y, xx) - 0.5f;
                float s1 = (AT(p0, k, y, xx) - (u < 0 ? u * pr0_slope[k] : u)) * 0.5f;
                AT(out, k, y, xx) = AT(c4, k, y, xx) * 0.5f + s1 * 0.25f + 0.5f;
            }
    free(c0.v);
    free(p0.v);
    free(u0.v);
    free(m1.v);
    free(c1.v);
    free(c3.v);
    free(k0.v);
    free(c4.v);
    return out;
}

/* Reference bytes for an RGB24 frame: 10 px edge padding, crop, round. */
static uint8_t *ref_upscale(const uint8_t *rgb, int w, int h, int *unclamped)
{
    Map x = map_new(3, h + 20, w + 20), y;
    uint8_t *out = malloc((size_t)w * h * 12);

    assert_non_null(out);
    for (int k = 0; k < 3; k++)
        for (int yy = 0; yy < h + 20; yy++)
            for (int xx = 0; xx < w + 20; xx++) {
                int sy = yy - 10 < 0 ? 0 : yy - 10 >= h ? h - 1 : yy - 10;
                int sx = xx - 10 < 0 ? 0 : xx - 10 >= w ? w - 1 : xx - 10;
                AT(x, k, yy, xx) = rgb[((size_t)sy * w + sx) * 3 + k] / 255.f;
            }
    y = ref_forward(&x);
    *unclamped = 0;
    for (int yy = 0; yy < 2 * h; yy++)
        for (int xx = 0; xx < 2 * w; xx++)
            for (int k = 0; k < 3; k++) {
                float v = AT(y, k, yy + 20, xx + 20) * 255.f + 0.5f;

                *unclamped += v > 0.f && v < 255.f;
                out[((size_t)yy * 2 * w + xx) * 3 + k] = (uint8_t)(v < 0.f     ? 0.f
                                                                   : v > 255.f ? 255.f
                                                                               : v);
            }
    free(x.v);
    free(y.v);
    return out;
}

static void test_synthetic_network(void **state)
{
    /* 160x140 untiled or in the default tile: buffers of 256 KiB and more (mapped, not
     * malloc'd: core/pages.c, from backend_cpu.c's take_block), which the smaller frame
     * after it takes over */
    static const int sizes[][2] = {{37, 23},   {1, 1},     {1, 9},  {16, 5},
                                   {160, 140}, {150, 130}, {37, 23}};
    static const int tiles[] = {-1, 7, 16, 0};
    char err[REEL_ERRMSG_SIZE];

    (void)state;
    write_syn_model();
    for (size_t t = 0; t < sizeof(tiles) / sizeof(tiles[0]); t++) {
        ReelUpscaleOptions opt = {.model_dir = tmpdir, .tile = tiles[t], .threads = 1};
        ReelUpscaler *up = NULL;

        if (reel_upscale_open(&up, &opt, err) < 0)
            fail_msg("%s", err);
        assert_int_equal(reel_upscale_scale(up), 2);
        /* several sizes through one object: its tile shape is rebuilt as needed */
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            int w = sizes[s][0], h = sizes[s][1], unclamped, maxd = 0;
            uint8_t *in = malloc((size_t)w * h * 3), *out, *ref;
            ptrdiff_t ostride = (ptrdiff_t)w * 6 + 5; /* a padded output stride */

            assert_non_null(in);
            for (int i = 0; i < w * h * 3; i++)
                in[i] = (uint8_t)rnd();
            out = malloc((size_t)ostride * h * 2);
            assert_non_null(out);
            if (reel_upscale_run(up, in, w, h, (ptrdiff_t)w * 3, out, ostride) < 0)
                fail_msg("%s", reel_upscale_errmsg(up));
            ref = ref_upscale(in, w, h, &unclamped);
            for (int y = 0; y < 2 * h; y++)
                for (int x = 0; x < 6 * w; x++) {
                    int d = abs(out[(ptrdiff_t)y * ostride + x] - ref[(size_t)y * 6 * w + x]);
                    if (d > maxd)
                        maxd = d;
                }
            print_message("  tile %d, %dx%d: max diff %d, %d of %d samples unclamped\n", tiles[t],
                          w, h, maxd, unclamped, w * h * 12);
            assert_true(maxd <= 1);
            /* the comparison means something only if few samples clip */
            assert_true(unclamped > w * h * 12 * 9 / 10);
            free(in);
            free(out);
            free(ref);
        }
        reel_upscale_close(&up);
        assert_null(up);
    }
    free_syn_model();
}

/* Channel-count mismatch found by shape inference, naming the layer. */
static void test_synthetic_shape_error(void **state)
{
    char pp[512], bp[512], err[REEL_ERRMSG_SIZE];
    char *p = replace(syn_param, "0=5 1=1 6=15", "0=3 1=1 6=15");
    ReelNnGraph *g = NULL;

    (void)state;
    write_syn_model();
    tmp_path(pp, sizeof(pp), "realesrgan-x4fast.param");
    tmp_path(bp, sizeof(bp), "realesrgan-x4fast.bin");
    spit(pp, p, strlen(p));
    assert_int_equal(reel_nn_graph_load(&g, pp, bp, err), REEL_ERROR_MODEL);
    print_message("  -> %s\n", err);
    assert_non_null(strstr(err, "conv1"));
    assert_non_null(strstr(err, "gets 3 channels, its weights want 5"));
    free(p);
    free_syn_model();
}

/* ------------------------------------------------------------------------ */
/* api */

static void test_api_errors(void **state)
{
    char err[REEL_ERRMSG_SIZE];
    ReelUpscaler *up = (ReelUpscaler *)&up;
    ReelUpscaleOptions opt = {.model_dir = model_dir, .model = "x9"};
    uint8_t px[3 * 4] = {0}, out[3 * 4 * 16];

    (void)state;
    assert_int_equal(reel_upscale_open(&up, &opt, err), REEL_ERR(EINVAL));
    assert_null(up);
    assert_non_null(strstr(err, "unknown model 'x9'"));
    opt.model = NULL;
    opt.backend = "cuda";
    assert_int_equal(reel_upscale_open(&up, &opt, err), REEL_ERR(EINVAL));
    assert_non_null(strstr(err, "unknown backend 'cuda'"));
    opt.backend = "cpu";
    opt.threads = -2;
    assert_int_equal(reel_upscale_open(&up, &opt, err), REEL_ERR(EINVAL));
    opt.threads = 0;
    opt.model_dir = "/nonexistent/models";
    assert_int_equal(reel_upscale_open(&up, &opt, NULL), REEL_ERR(ENOENT));
    assert_null(up);
    assert_int_equal(reel_upscale_open(&up, &opt, err), REEL_ERR(ENOENT));
    assert_non_null(strstr(err, "/nonexistent/models/realesrgan-x4fast.param"));

    /* $CLIPREEL_MODELS when model_dir is NULL */
    opt.model_dir = NULL;
    setenv("CLIPREEL_MODELS", model_dir, 1);
    opt.model = "realesr-general-x4v3";
    if (reel_upscale_open(&up, &opt, err) < 0)
        fail_msg("%s", err);
    unsetenv("CLIPREEL_MODELS");
    assert_int_equal(reel_upscale_run(up, NULL, 2, 2, 6, out, 24), REEL_ERR(EINVAL));
    assert_non_null(strstr(reel_upscale_errmsg(up), "bad frame"));
    assert_int_equal(reel_upscale_run(up, px, 0, 2, 6, out, 24), REEL_ERR(EINVAL));
    assert_int_equal(reel_upscale_run(up, px, 2, 2, 5, out, 24), REEL_ERR(EINVAL));
    assert_int_equal(reel_upscale_run(up, px, 2, 2, 6, out, 23), REEL_ERR(EINVAL));
    assert_int_equal(reel_upscale_run(up, px, 2, 2, 6, out, 24), 0);
    assert_string_equal(reel_upscale_errmsg(up), "");
    reel_upscale_close(&up);
    assert_null(up);
    reel_upscale_close(&up);
    reel_upscale_close(NULL);
}

/* ------------------------------------------------------------------------ */
/* png */

/* Write a PNG of any type with libpng directly (rows given as bytes). */
static void write_png_raw(const char *path, int w, int h, int depth, int color, int interlace,
                          const uint8_t *data, size_t rowbytes, const png_color *pal, int npal,
                          const png_byte *trns, int ntrns)
{
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_bytep *rows = malloc((size_t)h * sizeof(*rows));

    assert_non_null(f);
    assert_non_null(rows);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("libpng failed writing %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color, interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal)
        png_set_PLTE(png, info, pal, npal);
    if (trns)
        png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)(data + (size_t)y * rowbytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    free(rows);
}

static void expect_rgb(const char *path, int w, int h, const uint8_t *want)
{
    char err[REEL_ERRMSG_SIZE];
    uint8_t *rgb;
    int gw, gh;

    if (reel_png_read(path, &rgb, &gw, &gh, err) < 0)
        fail_msg("%s", err);
    assert_int_equal(gw, w);
    assert_int_equal(gh, h);
    assert_memory_equal(rgb, want, (size_t)w * h * 3);
    free(rgb);
}

static void test_png_formats(void **state)
{
    enum { W = 5, H = 3 };
    uint8_t rgb[W * H * 3], rgba[W * H * 4], gray[W * H], ga[W * H * 2], idx[W * H];
    uint8_t rgb16[W * H * 6], want[W * H * 3];
    png_color pal[4] = {{10, 20, 30}, {200, 100, 0}, {0, 0, 255}, {255, 255, 255}};
    png_byte trns[1] = {0};
    char path[512];

    (void)state;
    for (int i = 0; i < W * H; i++) {
        for (int c = 0; c < 3; c++) {
            rgb[i * 3 + c] = (uint8_t)(i * 17 + c * 80);
            rgba[i * 4 + c] = rgb[i * 3 + c];
            rgb16[i * 6 + c * 2] = rgb[i * 3 + c]; /* big-endian 16-bit: v * 257 */
            rgb16[i * 6 + c * 2 + 1] = rgb[i * 3 + c];
        }
        rgba[i * 4 + 3] = (uint8_t)(i * 10); /* alpha is dropped, not composited */
        gray[i] = (uint8_t)(i * 16);
        ga[i * 2] = gray[i];
        ga[i * 2 + 1] = 7;
        idx[i] = (uint8_t)(i % 4);
    }
    tmp_path(path, sizeof(path), "p.png");

    write_png_raw(path, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, rgb, W * 3, NULL, 0, NULL,
                  0);
    expect_rgb(path, W, H, rgb);
    write_png_raw(path, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, rgb, W * 3, NULL, 0, NULL,
                  0);
    expect_rgb(path, W, H, rgb);
    write_png_raw(path, W, H, 8, PNG_COLOR_TYPE_RGBA, PNG_INTERLACE_NONE, rgba, W * 4, NULL, 0,
                  NULL, 0);
    expect_rgb(path, W, H, rgb);
    write_png_raw(path, W, H, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, rgb16, W * 6, NULL, 0,
                  NULL, 0);
    expect_rgb(path, W, H, rgb);
    for (int i = 0; i < W * H; i++)
        want[i * 3] = want[i * 3 + 1] = want[i * 3 + 2] = gray[i];
    write_png_raw(path, W, H, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, gray, W, NULL, 0, NULL,
                  0);
    expect_rgb(path, W, H, want);
    write_png_raw(path, W, H, 8, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_INTERLACE_NONE, ga, W * 2, NULL, 0,
                  NULL, 0);
    expect_rgb(path, W, H, want);
    for (int i = 0; i < W * H; i++) {
        want[i * 3] = pal[i % 4].red;
        want[i * 3 + 1] = pal[i % 4].green;
        want[i * 3 + 2] = pal[i % 4].blue;
    }
    write_png_raw(path, W, H, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, idx, W, pal, 4, trns,
                  1);
    expect_rgb(path, W, H, want);
    {
        /* 2-bit gray: 0..3 -> 0, 85, 170, 255 */
        uint8_t packed[H * 2] = {0x1B, 0x00, 0xE4, 0x00, 0x55, 0x00}; /* 00 01 10 11 | 00 */
        static const uint8_t lv[4] = {0, 85, 170, 255};
        int codes[H][W] = {{0, 1, 2, 3, 0}, {3, 2, 1, 0, 0}, {1, 1, 1, 1, 0}};

        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++)
                    want[(y * W + x) * 3 + c] = lv[codes[y][x]];
        write_png_raw(path, W, H, 2, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, packed, 2, NULL, 0,
                      NULL, 0);
        expect_rgb(path, W, H, want);
    }
}

static void test_png_roundtrip_and_errors(void **state)
{
    char path[512], err[REEL_ERRMSG_SIZE];
    uint8_t img[4 * 7 * 3 + 64], *rgb = NULL;
    uint8_t packed[3 * 7 * 3];
    int w, h;
    size_t len;
    char *bytes;

    (void)state;
    for (size_t i = 0; i < sizeof(img); i++)
        img[i] = (uint8_t)(i * 7);
    /* 7x3 with a 30-byte stride in, packed rows out */
    tmp_path(path, sizeof(path), "rt.png");
    assert_int_equal(reel_png_write(path, img, 7, 3, 30, err), 0);
    for (int y = 0; y < 3; y++)
        memcpy(packed + y * 21, img + y * 30, 21);
    expect_rgb(path, 7, 3, packed);

    /* a write that fails half way (the file size limit standing in for a full
     * disk) leaves the file that was at the path as it was, and nothing beside */
    {
        size_t n = 256 * 256 * 3;
        uint8_t *noise = malloc(n);
        struct rlimit old_lim, lim;
        assert_non_null(noise);
        uint32_t x = 2463534242u; /* xorshift: incompressible, ~196 KB of PNG */
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            noise[i] = (uint8_t)(x >> 24);
        }
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
        lim = old_lim;
        lim.rlim_cur = 16384;
        void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        int ret = reel_png_write(path, noise, 256, 256, 256 * 3, err);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
        signal(SIGXFSZ, was);
        assert_true(ret < 0);
        assert_non_null(strstr(err, path));
        expect_rgb(path, 7, 3, packed);
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "ls %s.*.part 2>/dev/null | grep -q .", path);
        assert_int_not_equal(system(cmd), 0);
        free(noise);
    }

    assert_int_equal(reel_png_write(path, img, 7, 3, 20, err), REEL_ERR(EINVAL));
    assert_int_equal(reel_png_write("/nonexistent/dir/x.png", img, 7, 3, 21, err),
                     REEL_ERR(ENOENT));
    assert_non_null(strstr(err, "/nonexistent/dir/x.png"));

    assert_int_equal(reel_png_read("/nonexistent.png", &rgb, &w, &h, err), REEL_ERR(ENOENT));
    assert_null(rgb);
    assert_non_null(strstr(err, "/nonexistent.png"));
    tmp_path(path, sizeof(path), "text.png");
    spit(path, "hello, not a png", 16);
    assert_int_equal(reel_png_read(path, &rgb, &w, &h, err), REEL_ERROR_MEDIA);
    assert_non_null(strstr(err, "not a PNG"));
    /* a real PNG cut short, and one with its pixel data damaged */
    {
        char fix[1024];

        snprintf(fix, sizeof(fix), "%s/flower_64x48.png", fixture_dir);
        bytes = slurp(fix, &len);
        tmp_path(path, sizeof(path), "cut.png");
        for (size_t cut = 8; cut < len; cut += len / 7) {
            spit(path, bytes, cut);
            assert_int_equal(reel_png_read(path, &rgb, &w, &h, err), REEL_ERROR_MEDIA);
            assert_null(rgb);
        }
        print_message("  -> %s\n", err);
        for (size_t i = len / 2; i < len / 2 + 64; i++)
            bytes[i] ^= 0x5a;
        spit(path, bytes, len);
        assert_int_equal(reel_png_read(path, &rgb, &w, &h, err), REEL_ERROR_MEDIA);
        print_message("  -> %s\n", err);
        free(bytes);
    }
}

/* ------------------------------------------------------------------------ */
/* cli: the clipreel binary named by $CLIPREEL_BIN */

static int run_cli(const char *args)
{
    char cmd[4096];
    int st;

    snprintf(cmd, sizeof(cmd), "'%s' upscale %s >/dev/null 2>&1", getenv("CLIPREEL_BIN"), args);
    st = system(cmd);
    assert_true(st != -1 && WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void cli_check(const char *tile, double min_psnr, int max_diff)
{
    char args[3072], out[512], gold[1024], err[REEL_ERRMSG_SIZE];
    uint8_t *a, *b;
    int w, h, gw, gh, md = 0;
    double se = 0, p;

    tmp_path(out, sizeof(out), "cli.png");
    snprintf(gold, sizeof(gold), "%s/flower_64x48.x4fast.png", fixture_dir);
    snprintf(args, sizeof(args), "'%s/flower_64x48.png' -o '%s' --models '%s' --tile %s",
             fixture_dir, out, model_dir, tile);
    assert_int_equal(run_cli(args), 0);
    if (reel_png_read(out, &a, &w, &h, err) < 0 || reel_png_read(gold, &b, &gw, &gh, err) < 0)
        fail_msg("%s", err);
    assert_int_equal(w, gw);
    assert_int_equal(h, gh);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        int d = abs(a[i] - b[i]);
        se += (double)d * d;
        md = d > md ? d : md;
    }
    p = se ? 10 * log10(255.0 * 255.0 * w * h * 3 / se) : 99;
    print_message("  --tile %s: PSNR %.2f dB, max diff %d against the reference\n", tile, p, md);
    assert_true(p >= min_psnr);
    assert_true(md <= max_diff);
    free(a);
    free(b);
}

static void test_cli(void **state)
{
    char args[2048];

    (void)state;
    if (!getenv("CLIPREEL_BIN"))
        skip();
    cli_check("-1", 50.0, 2);
    cli_check("24", 40.0, 255);
    /* usage errors: 2; failures: 1 */
    assert_int_equal(run_cli(""), 2);
    assert_int_equal(run_cli("in.png"), 2);
    assert_int_equal(run_cli("in.png -o out.png --tile x"), 2);
    assert_int_equal(run_cli("in.png -o out.png --model x9"), 2);
    assert_int_equal(run_cli("in.png -o out.png --frobnicate"), 2);
    assert_int_equal(run_cli("--help"), 0);
    snprintf(args, sizeof(args), "'%s/absent.png' -o '%s/x.png' --models '%s'", tmpdir, tmpdir,
             model_dir);
    assert_int_equal(run_cli(args), 1);
    snprintf(args, sizeof(args), "'%s/README.md' -o '%s/x.png' --models '%s'", fixture_dir, tmpdir,
             model_dir);
    assert_int_equal(run_cli(args), 1);
    snprintf(args, sizeof(args), "'%s/flower_64x48.png' -o '%s/x.png' --models '%s'", fixture_dir,
             tmpdir, tmpdir);
    assert_int_equal(run_cli(args), 1);
}

/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* lanes: frames side by side, each the same bytes as one at a time */

typedef struct LaneJob {
    ReelUpscaler *up;
    int lane, w, h, rounds, ret;
    uint8_t *in[3], *out[3]; /* one frame per round */
} LaneJob;

static void *lane_job(void *arg)
{
    LaneJob *j = arg;

    for (int r = 0; r < j->rounds && j->ret == 0; r++)
        j->ret = reel_upscale_run_lane(j->up, j->lane, j->in[r], j->w, j->h, (ptrdiff_t)j->w * 3,
                                       j->out[r], (ptrdiff_t)j->w * 12);
    return NULL;
}

static void test_lanes(void **state)
{
    char err[REEL_ERRMSG_SIZE], named[32];
    ReelUpscaleOptions opt = {.model_dir = model_dir, .tile = -1, .threads = 2, .lanes = 2};
    ReelUpscaleOptions one = {.model_dir = model_dir, .tile = -1, .threads = 1};
    ReelUpscaler *up = NULL, *ref = NULL;
    LaneJob jobs[2];
    pthread_t tid[2];
    const int w = 24, h = 17, rounds = 3;
    uint8_t px[3 * 4] = {0}, small[3 * 4 * 16], *want = malloc((size_t)w * h * 48);

    (void)state;
    assert_non_null(want);
    /* how lanes and threads are shared out */
    assert_int_equal(reel_upscale_planned_lanes(&opt), 2);
    assert_int_equal(reel_upscale_planned_lanes(&one), 1);
    assert_int_equal(reel_upscale_planned_lanes(&(ReelUpscaleOptions){.threads = 3, .lanes = -1}),
                     3);
    assert_int_equal(reel_upscale_planned_lanes(&(ReelUpscaleOptions){.threads = 16, .lanes = -1}),
                     REEL_UPSCALE_AUTO_LANES);
    assert_int_equal(reel_upscale_planned_lanes(&(ReelUpscaleOptions){.threads = 1, .lanes = 3}),
                     3);
    /* and threads per lane (the CLI restarts for libgomp's wait policy only above 1) */
    assert_int_equal(reel_upscale_planned_lane_threads(&opt), 1);
    assert_int_equal(
        reel_upscale_planned_lane_threads(&(ReelUpscaleOptions){.threads = 16, .lanes = -1}),
        16 / REEL_UPSCALE_AUTO_LANES);
    assert_int_equal(reel_upscale_planned_lane_threads(&(ReelUpscaleOptions){.threads = 5}), 5);
    assert_int_equal(
        reel_upscale_planned_lane_threads(&(ReelUpscaleOptions){.threads = 5, .lanes = 2}), 2);
    assert_int_equal(
        reel_upscale_planned_lane_threads(&(ReelUpscaleOptions){.threads = 1, .lanes = 3}), 1);
    /* threads 0: the machine's, the same count the auto lanes are made from */
    int machine = reel_upscale_planned_lane_threads(&(ReelUpscaleOptions){.lanes = 1});
    assert_int_equal(reel_upscale_planned_lanes(&(ReelUpscaleOptions){.lanes = -1}),
                     machine < REEL_UPSCALE_AUTO_LANES ? machine : REEL_UPSCALE_AUTO_LANES);
    assert_int_equal(reel_upscale_planned_lane_threads(&(ReelUpscaleOptions){.threads = -1}), 1);
    opt.lanes = REEL_UPSCALE_MAX_LANES + 1;
    assert_int_equal(reel_upscale_open(&up, &opt, err), REEL_ERR(EINVAL));
    assert_null(up);
    snprintf(named, sizeof(named), "lanes=%d", opt.lanes);
    assert_non_null(strstr(err, named));
    opt.lanes = 2;

    if (reel_upscale_open(&up, &opt, err) < 0 || reel_upscale_open(&ref, &one, err) < 0)
        fail_msg("%s", err);
    assert_int_equal(reel_upscale_lanes(up), 2);
    assert_int_equal(reel_upscale_lanes(ref), 1);
    assert_int_equal(reel_upscale_run_lane(up, 2, px, 2, 2, 6, small, 24), REEL_ERR(EINVAL));
    assert_int_equal(reel_upscale_run_lane(up, -1, px, 2, 2, 6, small, 24), REEL_ERR(EINVAL));
    assert_int_equal(reel_upscale_run_lane(up, 1, NULL, 2, 2, 6, small, 24), REEL_ERR(EINVAL));
    assert_non_null(strstr(reel_upscale_lane_errmsg(up, 1), "bad frame"));
    assert_string_equal(reel_upscale_lane_errmsg(up, 0), "");
    assert_string_equal(reel_upscale_lane_errmsg(up, 7), "");

    /* two lanes at once, three different frames each */
    for (int l = 0; l < 2; l++) {
        jobs[l] = (LaneJob){.up = up, .lane = l, .w = w, .h = h, .rounds = rounds};
        for (int r = 0; r < rounds; r++) {
            jobs[l].in[r] = malloc((size_t)w * h * 3);
            jobs[l].out[r] = malloc((size_t)w * h * 48);
            assert_non_null(jobs[l].in[r]);
            assert_non_null(jobs[l].out[r]);
            for (int i = 0; i < w * h * 3; i++)
                jobs[l].in[r][i] = (uint8_t)rnd();
        }
    }
    for (int l = 0; l < 2; l++)
        assert_int_equal(pthread_create(&tid[l], NULL, lane_job, &jobs[l]), 0);
    for (int l = 0; l < 2; l++) {
        pthread_join(tid[l], NULL);
        if (jobs[l].ret < 0)
            fail_msg("lane %d: %s", l, reel_upscale_lane_errmsg(up, l));
    }
    for (int l = 0; l < 2; l++)
        for (int r = 0; r < rounds; r++) {
            if (reel_upscale_run(ref, jobs[l].in[r], w, h, (ptrdiff_t)w * 3, want,
                                 (ptrdiff_t)w * 12) < 0)
                fail_msg("%s", reel_upscale_errmsg(ref));
            assert_memory_equal(jobs[l].out[r], want, (size_t)w * h * 48);
            free(jobs[l].in[r]);
            free(jobs[l].out[r]);
        }
    free(want);
    reel_upscale_close(&up);
    reel_upscale_close(&ref);
}

int main(int argc, char **argv)
{
    static const struct CMUnitTest loader[] = {
        cmocka_unit_test(test_loads_shipped_models), cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_unknown_layer),        cmocka_unit_test(test_truncated_bin),
        cmocka_unit_test(test_oversized_bin),        cmocka_unit_test(test_unsupported_activation),
        cmocka_unit_test(test_unsupported_params),   cmocka_unit_test(test_bad_storage),
        cmocka_unit_test(test_bad_wiring),           cmocka_unit_test(test_wrong_shapes),
        cmocka_unit_test(test_missing_files),        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_halves_exact),
    };
    static const struct CMUnitTest ops[] = {
        cmocka_unit_test(test_synthetic_network),
        cmocka_unit_test(test_synthetic_shape_error),
    };
    static const struct CMUnitTest api[] = {
        cmocka_unit_test(test_api_errors),
        cmocka_unit_test(test_lanes),
    };
    static const struct CMUnitTest cli[] = {
        cmocka_unit_test(test_cli),
    };
    static const struct CMUnitTest png[] = {
        cmocka_unit_test(test_png_formats),
        cmocka_unit_test(test_png_roundtrip_and_errors),
    };
    char cmd[600];
    int ret;

    if (argc != 4) {
        fprintf(stderr, "usage: %s loader|ops|api|png|cli MODEL_DIR FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    model_dir = argv[2];
    fixture_dir = argv[3];
    snprintf(tmpdir, sizeof(tmpdir), "%s/reel-upscale-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    reel_log_set_level(REEL_LOG_QUIET); /* the tests print the sentences they check */
    if (!strcmp(argv[1], "loader"))
        ret = cmocka_run_group_tests_name("loader", loader, loader_setup, loader_teardown);
    else if (!strcmp(argv[1], "ops"))
        ret = cmocka_run_group_tests_name("ops", ops, NULL, NULL);
    else if (!strcmp(argv[1], "api"))
        ret = cmocka_run_group_tests_name("api", api, NULL, NULL);
    else if (!strcmp(argv[1], "cli"))
        ret = cmocka_run_group_tests_name("cli", cli, NULL, NULL);
    else if (!strcmp(argv[1], "png"))
        ret = cmocka_run_group_tests_name("png", png, NULL, NULL);
    else
        ret = 2;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return ret;
}
