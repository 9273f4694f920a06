/*
 * ncnn_model.c - load an ncnn .param/.bin pair into a ReelNnGraph.
 *
 * The formats, as ncnn writes them (learned from ncnn's docs and loaders; no
 * code taken):
 *
 * .param is text. Line 1: the magic 7767517. Line 2: layer count, blob count.
 * Then one line per layer:
 *     Type  name  nin nout  in_blob... out_blob...  key=value...
 * key is 0..31 with an int value ("64") or a float value (anything containing
 * '.', 'e' or 'E'); an array is written with key -23300-k and the value
 * "n,v1,...,vn". Layers appear in execution order, each blob is written by
 * exactly one layer before it is read.
 *
 * .bin is the weights of the layers, in layer order, with no header. A
 * Convolution stores weight_data_size values behind a 4-byte storage tag
 * (0x01306B47: fp16, padded to 4 bytes; 0: raw fp32; 0x0002C056: raw fp32
 * with scaling data elsewhere; 0x000D4B38: int8; other non-zero tags: an
 * 8-bit table) and then, if bias_term, num_output raw fp32 biases. PReLU
 * stores num_slope raw fp32 slopes. The other layer types store nothing.
 *
 * Every read is bounds-checked against the file sizes: a truncated, padded or
 * garbled file is a REEL_ERROR_MODEL sentence, never a crash. Each parameter
 * a layer does not implement is rejected by name rather than ignored, because
 * an ignored parameter means silently wrong pictures.
 */
#include "upscale/ncnn_model.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "core/error.h"

#define NCNN_MAGIC 7767517
#define MAX_PARAM_ID 32         /* ncnn's NCNN_MAX_PARAM_COUNT */
#define ARRAY_KEY_BASE (-23300) /* array key = -23300 - id */
#define MAX_PARAM_FILE (64u << 20)
#define MAX_BIN_FILE (4ull << 30)
#define MAX_LAYERS 100000
#define MAX_BLOBS 200000
#define MAX_ARRAY 65536
#define MAX_CHANNELS 65536
#define MAX_KERNEL 31
#define MAX_DIM (1 << 20) /* any tensor side, to keep sizes far from overflow */

#define TAG_FP16 0x01306B47u
#define TAG_INT8 0x000D4B38u
#define TAG_FP32_SCALED 0x0002C056u

enum { PV_NONE, PV_INT, PV_FLOAT, PV_ARRAY };

typedef struct ParamValue {
    int kind;   /* PV_* */
    int i;      /* PV_INT */
    float f;    /* PV_INT (converted) and PV_FLOAT */
    int n;      /* PV_ARRAY length */
    float *arr; /* PV_ARRAY values */
} ParamValue;

typedef struct LoadCtx {
    const char *param_path, *bin_path;
    char *errmsg;
    int line;                 /* current .param line, for messages */
    const unsigned char *bin; /* whole .bin */
    size_t bin_len, bin_pos;
    ParamValue pv[MAX_PARAM_ID];
    /* blob name -> index, open addressing */
    int *hash;
    size_t hash_size;
} LoadCtx;

/* ------------------------------------------------------------------------ */
/* files */

static int read_whole_file(const char *path, size_t max, unsigned char **data, size_t *len,
                           char *errmsg)
{
    FILE *f = NULL;
    unsigned char *buf = NULL;
    long size;
    int ret;

    *data = NULL;
    *len = 0;
    if (!(f = fopen(path, "rb"))) {
        ret = REEL_ERR(errno);
        return reel_fail(errmsg, ret, "%s: cannot open: %s", path, strerror(errno));
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        ret = reel_fail(errmsg, REEL_ERROR_MODEL, "%s: cannot read (not a regular file?)", path);
        goto close_file;
    }
    if ((unsigned long long)size > max) {
        ret =
            reel_fail(errmsg, REEL_ERROR_MODEL, "%s: %ld bytes, larger than any model", path, size);
        goto close_file;
    }
    /* one spare byte so text parsing can NUL-terminate */
    if (!(buf = malloc((size_t)size + 1))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "%s: out of memory", path);
        goto close_file;
    }
    if (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        ret = reel_fail(errmsg, REEL_ERROR_MODEL, "%s: short read", path);
        goto free_buf;
    }
    buf[size] = 0;
    fclose(f);
    *data = buf;
    *len = (size_t)size;
    return 0;

free_buf:
    free(buf);
close_file:
    fclose(f);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* text helpers */

static int parse_int(const char *s, int *v)
{
    char *end;
    long x;

    errno = 0;
    x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < INT_MIN || x > INT_MAX)
        return -1;
    *v = (int)x;
    return 0;
}

static int parse_float(const char *s, float *v)
{
    char *end;
    double x;

    errno = 0;
    x = strtod(s, &end);
    if (end == s || *end || !isfinite(x) || fabs(x) > 3.0e38)
        return -1;
    *v = (float)x;
    return 0;
}

static int is_float_text(const char *s)
{
    return strpbrk(s, ".eE") != NULL;
}

/* Split a line in place into whitespace-separated tokens. */
static int tokenize(char *line, char **tok, int max)
{
    int n = 0;
    char *p = line;

    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (!*p)
            return n;
        if (n == max)
            return -1;
        tok[n++] = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r')
            p++;
        if (*p)
            *p++ = 0;
    }
}

/* ------------------------------------------------------------------------ */
/* blob names */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* Index of name, or -1; *slot is where it is or would go. */
static int blob_find(const LoadCtx *c, const ReelNnGraph *g, const char *name, size_t *slot)
{
    size_t mask = c->hash_size - 1, i = hash_name(name) & mask;

    while (c->hash[i] >= 0) {
        if (!strcmp(g->blob_names[c->hash[i]], name)) {
            *slot = i;
            return c->hash[i];
        }
        i = (i + 1) & mask;
    }
    *slot = i;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* parameters */

static void params_clear(LoadCtx *c)
{
    for (int i = 0; i < MAX_PARAM_ID; i++) {
        free(c->pv[i].arr);
        memset(&c->pv[i], 0, sizeof(c->pv[i]));
    }
}

#define LAYER_FAIL(c, l, ...) layer_fail(c, l, __VA_ARGS__)

static int layer_fail(LoadCtx *c, const ReelNnLayer *l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int layer_fail(LoadCtx *c, const ReelNnLayer *l, const char *fmt, ...)
{
    char what[REEL_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return reel_fail(c->errmsg, REEL_ERROR_MODEL, "%s:%d: layer %s (%s): %s", c->param_path,
                     c->line, l->name, l->type, what);
}

static int parse_params(LoadCtx *c, const ReelNnLayer *l, char **tok, int ntok)
{
    for (int t = 0; t < ntok; t++) {
        char *eq = strchr(tok[t], '=');
        int key, id, is_array;
        ParamValue *v;

        if (!eq)
            return LAYER_FAIL(c, l, "'%s' is not key=value", tok[t]);
        *eq = 0;
        if (parse_int(tok[t], &key) < 0)
            return LAYER_FAIL(c, l, "bad parameter key '%s'", tok[t]);
        is_array = key <= ARRAY_KEY_BASE;
        id = is_array ? ARRAY_KEY_BASE - key : key;
        if (id < 0 || id >= MAX_PARAM_ID)
            return LAYER_FAIL(c, l, "parameter key %d out of range", key);
        v = &c->pv[id];
        if (v->kind != PV_NONE)
            return LAYER_FAIL(c, l, "parameter %d given twice", id);
        if (is_array) {
            char *p = eq + 1, *comma = strchr(p, ',');
            int n;

            if (comma)
                *comma = 0;
            if (parse_int(p, &n) < 0 || n < 0 || n > MAX_ARRAY)
                return LAYER_FAIL(c, l, "parameter %d: bad array length '%s'", id, p);
            if (n && !(v->arr = calloc((size_t)n, sizeof(float))))
                return reel_fail(c->errmsg, REEL_ERR(ENOMEM), "%s: out of memory", c->param_path);
            v->kind = PV_ARRAY;
            v->n = n;
            for (int i = 0; i < n; i++) {
                if (!comma)
                    return LAYER_FAIL(c, l, "parameter %d: array has fewer than %d values", id, n);
                p = comma + 1;
                if ((comma = strchr(p, ',')))
                    *comma = 0;
                if (parse_float(p, &v->arr[i]) < 0)
                    return LAYER_FAIL(c, l, "parameter %d: bad array value '%s'", id, p);
            }
            if (comma)
                return LAYER_FAIL(c, l, "parameter %d: array has more than %d values", id, n);
        } else if (is_float_text(eq + 1)) {
            if (parse_float(eq + 1, &v->f) < 0)
                return LAYER_FAIL(c, l, "parameter %d: bad value '%s'", id, eq + 1);
            v->kind = PV_FLOAT;
        } else {
            if (parse_int(eq + 1, &v->i) < 0)
                return LAYER_FAIL(c, l, "parameter %d: bad value '%s'", id, eq + 1);
            v->f = (float)v->i;
            v->kind = PV_INT;
        }
    }
    return 0;
}

/* Reject any parameter id not in the allowed list (terminated by -1). */
static int params_allow(LoadCtx *c, const ReelNnLayer *l, const int *allowed)
{
    for (int id = 0; id < MAX_PARAM_ID; id++) {
        int ok = 0;

        if (c->pv[id].kind == PV_NONE)
            continue;
        for (const int *a = allowed; *a >= 0; a++)
            ok |= *a == id;
        if (!ok)
            return LAYER_FAIL(c, l, "parameter %d is not supported", id);
    }
    return 0;
}

static int get_int(LoadCtx *c, const ReelNnLayer *l, int id, int def, int *v)
{
    const ParamValue *p = &c->pv[id];

    if (p->kind == PV_NONE) {
        *v = def;
        return 0;
    }
    if (p->kind != PV_INT)
        return LAYER_FAIL(c, l, "parameter %d must be an integer", id);
    *v = p->i;
    return 0;
}

static int get_float(LoadCtx *c, const ReelNnLayer *l, int id, float def, float *v)
{
    const ParamValue *p = &c->pv[id];

    if (p->kind == PV_NONE) {
        *v = def;
        return 0;
    }
    if (p->kind == PV_ARRAY)
        return LAYER_FAIL(c, l, "parameter %d must be a number, not an array", id);
    *v = p->f;
    return 0;
}

static int get_int_range(LoadCtx *c, const ReelNnLayer *l, int id, int def, int lo, int hi,
                         const char *what, int *v)
{
    int ret;

    if ((ret = get_int(c, l, id, def, v)) < 0)
        return ret;
    if (*v < lo || *v > hi)
        return LAYER_FAIL(c, l, "%s=%d (parameter %d) is not supported (supported: %d..%d)", what,
                          *v, id, lo, hi);
    return 0;
}

/*
 * The .bin, mapped read-only instead of read into memory: a read copies every
 * byte into pages that each fault in on first touch, and on the VMs this
 * project runs on a fault costs several microseconds (x4fast's 2.4 MB: ~600 of
 * them, ~8 ms of the ~33 ms its load took); the file's pages in the page cache
 * are mapped a few at a time. Same checks and messages as read_whole_file. It
 * is mapped only while the graph is built (every weight is copied out of it),
 * so replacing the file later changes nothing.
 */
static int map_whole_file(const char *path, size_t max, const unsigned char **data, size_t *len,
                          char *errmsg)
{
    static const unsigned char empty[1];
    struct stat st;
    void *p;
    int fd, ret;

    *data = empty; /* an empty file: no mapping, nothing to read */
    *len = 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        ret = REEL_ERR(errno);
        return reel_fail(errmsg, ret, "%s: cannot open: %s", path, strerror(errno));
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return reel_fail(errmsg, REEL_ERROR_MODEL, "%s: cannot read (not a regular file?)", path);
    }
    if ((unsigned long long)st.st_size > max) {
        close(fd);
        return reel_fail(errmsg, REEL_ERROR_MODEL, "%s: %lld bytes, larger than any model", path,
                         (long long)st.st_size);
    }
    if (st.st_size > 0) {
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (p == MAP_FAILED) {
            ret = REEL_ERR(errno);
            close(fd);
            return reel_fail(errmsg, ret, "%s: cannot map: %s", path, strerror(errno));
        }
        *data = p;
        *len = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

static void unmap_whole_file(const unsigned char *data, size_t len)
{
    if (len)
        munmap((void *)data, len);
}

/* ------------------------------------------------------------------------ */
/* .bin */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    float f;

    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf / nan */
    } else if (exp) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man) {
        /* subnormal half: man * 2^-24, exact in float */
        f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    } else {
        bits = sign;
    }
    memcpy(&f, &bits, sizeof(f));
    return f;
}

static void halves_to_floats_c(const unsigned char *p, float *out, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++)
        out[i] = half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
}

#if defined(__x86_64__) || defined(__i386__)
/* F16C's conversion is exact, as half_to_float (a NaN, which the loader rejects
 * either way, may come out quieted) */
__attribute__((target("avx,f16c"))) static void halves_to_floats_f16c(const unsigned char *p,
                                                                      float *out, size_t n)
{
    size_t i = 0;

    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
    halves_to_floats_c(p, out, i, n);
}
#endif

void reel_nn_halves_to_floats(const unsigned char *p, float *out, size_t n)
{
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx")) {
        halves_to_floats_f16c(p, out, n);
        return;
    }
#endif
    halves_to_floats_c(p, out, 0, n);
}

static uint32_t read_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int bin_truncated(LoadCtx *c, const ReelNnLayer *l, const char *what, size_t need)
{
    return reel_fail(c->errmsg, REEL_ERROR_MODEL,
                     "%s: truncated: layer %s (%s) needs %zu bytes of %s at offset %zu, "
                     "the file has %zu",
                     c->bin_path, l->name, l->type, need, what, c->bin_pos, c->bin_len);
}

static int check_finite(LoadCtx *c, const ReelNnLayer *l, const char *what, const float *v,
                        size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return reel_fail(c->errmsg, REEL_ERROR_MODEL,
                             "%s: layer %s (%s): %s value %zu is not a finite number", c->bin_path,
                             l->name, l->type, what, i);
    return 0;
}

/* n raw little-endian float32 values (the host is little-endian: x86/arm64). */
static int bin_load_raw(LoadCtx *c, const ReelNnLayer *l, const char *what, size_t n, float **out)
{
    size_t bytes = n * sizeof(float);
    int ret;

    *out = NULL;
    if (c->bin_len - c->bin_pos < bytes)
        return bin_truncated(c, l, what, bytes);
    if (!(*out = malloc(bytes ? bytes : 1)))
        return reel_fail(c->errmsg, REEL_ERR(ENOMEM), "%s: out of memory", c->bin_path);
    memcpy(*out, c->bin + c->bin_pos, bytes);
    c->bin_pos += bytes;
    if ((ret = check_finite(c, l, what, *out, n)) < 0) {
        free(*out);
        *out = NULL;
    }
    return ret;
}

/* n values behind a storage tag, widened to float32. */
static int bin_load_tagged(LoadCtx *c, const ReelNnLayer *l, const char *what, size_t n,
                           float **out)
{
    uint32_t tag;
    size_t bytes;
    int ret;

    *out = NULL;
    if (c->bin_len - c->bin_pos < 4)
        return bin_truncated(c, l, "storage tag", 4);
    tag = read_le32(c->bin + c->bin_pos);
    if (tag == 0 || tag == TAG_FP32_SCALED) {
        c->bin_pos += 4;
        if ((ret = bin_load_raw(c, l, what, n, out)) < 0)
            c->bin_pos -= 4;
        return ret;
    }
    if (tag == TAG_INT8)
        return reel_fail(c->errmsg, REEL_ERROR_MODEL,
                         "%s: layer %s (%s): int8 %s are not supported (offset %zu)", c->bin_path,
                         l->name, l->type, what, c->bin_pos);
    if (tag != TAG_FP16)
        return reel_fail(c->errmsg, REEL_ERROR_MODEL,
                         "%s: layer %s (%s): unsupported storage tag 0x%08x for %s (offset %zu)",
                         c->bin_path, l->name, l->type, tag, what, c->bin_pos);
    bytes = (n * 2 + 3) & ~(size_t)3;
    if (c->bin_len - c->bin_pos - 4 < bytes) {
        c->bin_pos += 4;
        ret = bin_truncated(c, l, what, bytes);
        c->bin_pos -= 4;
        return ret;
    }
    c->bin_pos += 4;
    if (!(*out = malloc(n ? n * sizeof(float) : 1)))
        return reel_fail(c->errmsg, REEL_ERR(ENOMEM), "%s: out of memory", c->bin_path);
    reel_nn_halves_to_floats(c->bin + c->bin_pos, *out, n);
    c->bin_pos += bytes;
    if ((ret = check_finite(c, l, what, *out, n)) < 0) {
        free(*out);
        *out = NULL;
    }
    return ret;
}

/* ------------------------------------------------------------------------ */
/* layer types */

static int setup_input(LoadCtx *c, ReelNnLayer *l)
{
    /* 0=w 1=h 2=c 11=d are shape hints for ncnn's allocator; shapes come from the frame */
    static const int allowed[] = {0, 1, 2, 11, -1};

    if (l->nin != 0 || l->nout != 1)
        return LAYER_FAIL(c, l, "an Input takes 0 inputs and gives 1 output");
    return params_allow(c, l, allowed);
}

static int setup_split(LoadCtx *c, ReelNnLayer *l)
{
    static const int allowed[] = {-1};

    if (l->nin != 1 || l->nout < 1)
        return LAYER_FAIL(c, l, "a Split takes 1 input and gives at least 1 output");
    return params_allow(c, l, allowed);
}

static int setup_conv(LoadCtx *c, ReelNnLayer *l, ReelNnGraph *g)
{
    static const int allowed[] = {0,  1,  2,  3,  4,  5,  6,  8,  9, 10,
                                  11, 12, 13, 14, 15, 16, 18, 19, -1};
    ReelNnConv *cv = &l->p.conv;
    int ret, bias_term = 0, wsize = 0, int8 = 0, act = 0, dynamic = 0;
    float pad_value = 0.f;
    long long per_out;

    if (l->nin != 1 || l->nout != 1)
        return LAYER_FAIL(c, l, "a Convolution takes 1 input and gives 1 output");
    if ((ret = params_allow(c, l, allowed)) < 0 ||
        (ret = get_int_range(c, l, 0, 0, 1, MAX_CHANNELS, "num_output", &cv->out_c)) < 0 ||
        (ret = get_int_range(c, l, 1, 0, 1, MAX_KERNEL, "kernel_w", &cv->kw)) < 0 ||
        (ret = get_int_range(c, l, 11, cv->kw, 1, MAX_KERNEL, "kernel_h", &cv->kh)) < 0 ||
        (ret = get_int_range(c, l, 2, 1, 1, MAX_KERNEL, "dilation_w", &cv->dw)) < 0 ||
        (ret = get_int_range(c, l, 12, cv->dw, 1, MAX_KERNEL, "dilation_h", &cv->dh)) < 0 ||
        (ret = get_int_range(c, l, 3, 1, 1, MAX_KERNEL, "stride_w", &cv->sw)) < 0 ||
        (ret = get_int_range(c, l, 13, cv->sw, 1, MAX_KERNEL, "stride_h", &cv->sh)) < 0 ||
        (ret = get_int_range(c, l, 4, 0, 0, 1024, "pad_left", &cv->pad_l)) < 0 ||
        (ret = get_int_range(c, l, 15, cv->pad_l, 0, 1024, "pad_right", &cv->pad_r)) < 0 ||
        (ret = get_int_range(c, l, 14, cv->pad_l, 0, 1024, "pad_top", &cv->pad_t)) < 0 ||
        (ret = get_int_range(c, l, 16, cv->pad_t, 0, 1024, "pad_bottom", &cv->pad_b)) < 0 ||
        (ret = get_int_range(c, l, 5, 0, 0, 1, "bias_term", &bias_term)) < 0 ||
        (ret = get_int_range(c, l, 6, 0, 1, INT_MAX, "weight_data_size", &wsize)) < 0 ||
        (ret = get_int_range(c, l, 8, 0, 0, 0, "int8_scale_term", &int8)) < 0 ||
        (ret = get_int_range(c, l, 9, 0, 0, 2, "activation_type", &act)) < 0 ||
        (ret = get_int_range(c, l, 19, 0, 0, 0, "dynamic_weight", &dynamic)) < 0 ||
        (ret = get_float(c, l, 18, 0.f, &pad_value)) < 0)
        return ret;
    if (pad_value != 0.f)
        return LAYER_FAIL(c, l, "pad_value=%g (parameter 18) is not supported (want 0)", pad_value);
    per_out = (long long)cv->out_c * cv->kh * cv->kw;
    if (wsize % per_out != 0)
        return LAYER_FAIL(c, l, "weight_data_size=%d is not a multiple of %d x %d x %d", wsize,
                          cv->out_c, cv->kh, cv->kw);
    cv->in_c = (int)(wsize / per_out);
    if (cv->in_c > MAX_CHANNELS)
        return LAYER_FAIL(c, l, "%d input channels is too many", cv->in_c);
    cv->act = (ReelNnAct)act;
    cv->act_alpha = 0.f;
    if (act == REEL_NN_ACT_LEAKY) {
        if (c->pv[10].kind != PV_ARRAY || c->pv[10].n != 1)
            return LAYER_FAIL(c, l, "leaky ReLU needs activation_params (-23310) = 1,slope");
        cv->act_alpha = c->pv[10].arr[0];
    } else if (act == REEL_NN_ACT_RELU) {
        /* ncnn ignores params for a plain ReLU; accept none or a zero slope */
        if (c->pv[10].kind != PV_NONE && (c->pv[10].kind != PV_ARRAY || c->pv[10].n > 1 ||
                                          (c->pv[10].n == 1 && c->pv[10].arr[0] != 0.f)))
            return LAYER_FAIL(c, l, "ReLU with activation_params is not supported");
    } else if (c->pv[10].kind != PV_NONE) {
        return LAYER_FAIL(c, l, "activation_params (-23310) without an activation");
    }
    if ((ret = bin_load_tagged(c, l, "weights", (size_t)wsize, &cv->weight)) < 0)
        return ret;
    g->weight_floats += (size_t)wsize;
    if (bias_term) {
        if ((ret = bin_load_raw(c, l, "bias", (size_t)cv->out_c, &cv->bias)) < 0)
            return ret;
        g->weight_floats += (size_t)cv->out_c;
    }
    return 0;
}

static int setup_prelu(LoadCtx *c, ReelNnLayer *l, ReelNnGraph *g)
{
    static const int allowed[] = {0, -1};
    int ret;

    if (l->nin != 1 || l->nout != 1)
        return LAYER_FAIL(c, l, "a PReLU takes 1 input and gives 1 output");
    if ((ret = params_allow(c, l, allowed)) < 0 ||
        (ret = get_int_range(c, l, 0, 0, 1, MAX_CHANNELS, "num_slope", &l->p.prelu.n)) < 0)
        return ret;
    if ((ret = bin_load_raw(c, l, "slopes", (size_t)l->p.prelu.n, &l->p.prelu.slope)) < 0)
        return ret;
    g->weight_floats += (size_t)l->p.prelu.n;
    return 0;
}

static int setup_pixel_shuffle(LoadCtx *c, ReelNnLayer *l)
{
    static const int allowed[] = {0, 1, -1};
    int ret;

    if (l->nin != 1 || l->nout != 1)
        return LAYER_FAIL(c, l, "a PixelShuffle takes 1 input and gives 1 output");
    if ((ret = params_allow(c, l, allowed)) < 0 ||
        (ret = get_int_range(c, l, 0, 1, 1, 16, "upscale_factor", &l->p.shuffle.factor)) < 0 ||
        (ret = get_int_range(c, l, 1, 0, 0, 1, "mode", &l->p.shuffle.mode)) < 0)
        return ret;
    return 0;
}

static int setup_interp(LoadCtx *c, ReelNnLayer *l)
{
    static const int allowed[] = {0, 1, 2, 3, 4, 5, 6, -1};
    int ret, type = 0, oh = 0, ow = 0, dynamic = 0, align = 0;

    if (l->nin != 1 || l->nout != 1)
        return LAYER_FAIL(c, l, "an Interp takes 1 input and gives 1 output");
    if ((ret = params_allow(c, l, allowed)) < 0 ||
        (ret = get_int_range(c, l, 0, 0, 1, 1, "resize_type", &type)) < 0 ||
        (ret = get_float(c, l, 1, 1.f, &l->p.interp.scale_h)) < 0 ||
        (ret = get_float(c, l, 2, 1.f, &l->p.interp.scale_w)) < 0 ||
        (ret = get_int_range(c, l, 3, 0, 0, 0, "output_height", &oh)) < 0 ||
        (ret = get_int_range(c, l, 4, 0, 0, 0, "output_width", &ow)) < 0 ||
        (ret = get_int_range(c, l, 5, 0, 0, 0, "dynamic_target_size", &dynamic)) < 0 ||
        (ret = get_int_range(c, l, 6, 0, 0, 0, "align_corner", &align)) < 0)
        return ret;
    if (!(l->p.interp.scale_h > 0.f && l->p.interp.scale_h <= 64.f && l->p.interp.scale_w > 0.f &&
          l->p.interp.scale_w <= 64.f))
        return LAYER_FAIL(c, l, "scale %g x %g is not supported (want 0..64)", l->p.interp.scale_h,
                          l->p.interp.scale_w);
    return 0;
}

static int setup_binary(LoadCtx *c, ReelNnLayer *l)
{
    static const int allowed[] = {0, 1, 2, -1};
    int ret, op = 0;

    if ((ret = params_allow(c, l, allowed)) < 0 ||
        (ret = get_int_range(c, l, 0, 0, 0, 2, "op_type", &op)) < 0 ||
        (ret = get_int_range(c, l, 1, 0, 0, 1, "with_scalar", &l->p.binary.with_scalar)) < 0 ||
        (ret = get_float(c, l, 2, 0.f, &l->p.binary.b)) < 0)
        return ret;
    l->p.binary.op = (ReelNnBinaryOp)op;
    if (l->nin != (l->p.binary.with_scalar ? 1 : 2) || l->nout != 1)
        return LAYER_FAIL(c, l, "a BinaryOp takes %d input(s) and gives 1 output",
                          l->p.binary.with_scalar ? 1 : 2);
    return 0;
}

static int setup_eltwise(LoadCtx *c, ReelNnLayer *l)
{
    static const int allowed[] = {0, 1, -1};
    ParamValue *coef = &c->pv[1];
    int ret, op = 0;

    if (l->nin < 1 || l->nout != 1)
        return LAYER_FAIL(c, l, "an Eltwise takes at least 1 input and gives 1 output");
    if ((ret = params_allow(c, l, allowed)) < 0 ||
        (ret = get_int_range(c, l, 0, 1, 0, 2, "op_type", &op)) < 0)
        return ret;
    l->p.eltwise.op = (ReelNnEltwiseOp)op;
    if (coef->kind == PV_NONE || (coef->kind == PV_ARRAY && coef->n == 0))
        return 0;
    if (coef->kind != PV_ARRAY)
        return LAYER_FAIL(c, l, "coefficients (-23301) must be an array");
    if (op != REEL_NN_ELT_SUM)
        return LAYER_FAIL(c, l, "coefficients are only supported with op_type 1 (sum)");
    if (coef->n != l->nin)
        return LAYER_FAIL(c, l, "%d coefficients for %d inputs", coef->n, l->nin);
    l->p.eltwise.coef = coef->arr; /* take it over */
    coef->arr = NULL;
    return 0;
}

static int setup_concat(LoadCtx *c, ReelNnLayer *l)
{
    static const int allowed[] = {0, -1};
    int ret, axis = 0;

    if (l->nin < 1 || l->nout != 1)
        return LAYER_FAIL(c, l, "a Concat takes at least 1 input and gives 1 output");
    if ((ret = params_allow(c, l, allowed)) < 0 || (ret = get_int(c, l, 0, 0, &axis)) < 0)
        return ret;
    if (axis != 0 && axis != -3)
        return LAYER_FAIL(c, l, "axis=%d is not supported (only the channel axis, 0)", axis);
    return 0;
}

static int setup_layer(LoadCtx *c, ReelNnLayer *l, ReelNnGraph *g)
{
    static const struct {
        const char *type;
        ReelNnOp op;
    } types[] = {
        {"Input", REEL_NN_INPUT},
        {"Split", REEL_NN_SPLIT},
        {"Convolution", REEL_NN_CONV},
        {"PReLU", REEL_NN_PRELU},
        {"PixelShuffle", REEL_NN_PIXEL_SHUFFLE},
        {"Interp", REEL_NN_INTERP},
        {"BinaryOp", REEL_NN_BINARY},
        {"Eltwise", REEL_NN_ELTWISE},
        {"Concat", REEL_NN_CONCAT},
    };
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(l->type, types[i].type))
            break;
    if (i == sizeof(types) / sizeof(types[0]))
        return LAYER_FAIL(c, l, "layer type '%s' is not supported", l->type);
    l->op = types[i].op;
    switch (l->op) {
    case REEL_NN_INPUT:
        return setup_input(c, l);
    case REEL_NN_SPLIT:
        return setup_split(c, l);
    case REEL_NN_CONV:
        return setup_conv(c, l, g);
    case REEL_NN_PRELU:
        return setup_prelu(c, l, g);
    case REEL_NN_PIXEL_SHUFFLE:
        return setup_pixel_shuffle(c, l);
    case REEL_NN_INTERP:
        return setup_interp(c, l);
    case REEL_NN_BINARY:
        return setup_binary(c, l);
    case REEL_NN_ELTWISE:
        return setup_eltwise(c, l);
    case REEL_NN_CONCAT:
        return setup_concat(c, l);
    }
    return reel_fail(c->errmsg, REEL_ERROR_INTERNAL, "unreachable layer op");
}

/* ------------------------------------------------------------------------ */
/* the .param file */

/* Next line of text (NUL-terminated in place); NULL at the end. */
static char *next_line(char **cursor)
{
    char *s = *cursor, *nl;

    if (!s || !*s)
        return NULL;
    nl = strchr(s, '\n');
    if (nl) {
        *nl = 0;
        *cursor = nl + 1;
    } else {
        *cursor = s + strlen(s);
    }
    return s;
}

/* Next line with at least one token; returns the token count (0 at the end). */
static int next_tokens(LoadCtx *c, char **cursor, char **tok, int max)
{
    char *line;
    int n;

    while ((line = next_line(cursor))) {
        c->line++;
        if ((n = tokenize(line, tok, max)) < 0)
            return reel_fail(c->errmsg, REEL_ERROR_MODEL, "%s:%d: line has too many fields",
                             c->param_path, c->line);
        if (n > 0)
            return n;
    }
    return 0;
}

#define MAX_TOKENS 4096

static int parse_layers(LoadCtx *c, ReelNnGraph *g, char *text)
{
    char *cursor = text, **tok = NULL;
    int ret, n, magic, nlayers, nblobs, nnames = 0;

    if (!(tok = malloc(MAX_TOKENS * sizeof(*tok))))
        return reel_fail(c->errmsg, REEL_ERR(ENOMEM), "out of memory");
    if ((ret = n = next_tokens(c, &cursor, tok, MAX_TOKENS)) < 0)
        goto free_tok;
    if (n != 1 || parse_int(tok[0], &magic) < 0 || magic != NCNN_MAGIC) {
        ret = reel_fail(c->errmsg, REEL_ERROR_MODEL,
                        "%s: not an ncnn param file (first line must be the magic %d)",
                        c->param_path, NCNN_MAGIC);
        goto free_tok;
    }
    if ((ret = n = next_tokens(c, &cursor, tok, MAX_TOKENS)) < 0)
        goto free_tok;
    if (n != 2 || parse_int(tok[0], &nlayers) < 0 || parse_int(tok[1], &nblobs) < 0 ||
        nlayers < 1 || nlayers > MAX_LAYERS || nblobs < 1 || nblobs > MAX_BLOBS) {
        ret = reel_fail(c->errmsg, REEL_ERROR_MODEL,
                        "%s:%d: expected '<layer count> <blob count>' (1..%d, 1..%d)",
                        c->param_path, c->line, MAX_LAYERS, MAX_BLOBS);
        goto free_tok;
    }
    g->layers = calloc((size_t)nlayers, sizeof(*g->layers));
    g->blob_names = calloc((size_t)nblobs, sizeof(*g->blob_names));
    g->blob_producer = malloc((size_t)nblobs * sizeof(*g->blob_producer));
    for (c->hash_size = 16; c->hash_size < 2 * (size_t)nblobs; c->hash_size *= 2)
        ;
    c->hash = malloc(c->hash_size * sizeof(*c->hash));
    if (!g->layers || !g->blob_names || !g->blob_producer || !c->hash) {
        ret = reel_fail(c->errmsg, REEL_ERR(ENOMEM), "%s: out of memory", c->param_path);
        goto free_tok;
    }
    memset(c->hash, 0xff, c->hash_size * sizeof(*c->hash));
    g->nblobs = nblobs;
    g->input = -1;

    for (int li = 0; li < nlayers; li++) {
        ReelNnLayer *l = &g->layers[li];
        int nin, nout;

        if ((ret = n = next_tokens(c, &cursor, tok, MAX_TOKENS)) < 0)
            goto free_tok;
        if (n == 0) {
            ret = reel_fail(c->errmsg, REEL_ERROR_MODEL,
                            "%s: ends after %d layers, the header says %d", c->param_path, li,
                            nlayers);
            goto free_tok;
        }
        if (n < 4 || parse_int(tok[2], &nin) < 0 || parse_int(tok[3], &nout) < 0 || nin < 0 ||
            nout < 0 || nin > n - 4 || nout > n - 4 - nin) {
            ret = reel_fail(c->errmsg, REEL_ERROR_MODEL,
                            "%s:%d: expected 'Type name nin nout inputs... outputs...'",
                            c->param_path, c->line);
            goto free_tok;
        }
        g->nlayers = li + 1; /* so free() sees this layer's allocations */
        l->type = strdup(tok[0]);
        l->name = strdup(tok[1]);
        l->nin = nin;
        l->nout = nout;
        l->in = calloc((size_t)nin + 1, sizeof(int));
        l->out = calloc((size_t)nout + 1, sizeof(int));
        if (!l->type || !l->name || !l->in || !l->out) {
            ret = reel_fail(c->errmsg, REEL_ERR(ENOMEM), "%s: out of memory", c->param_path);
            goto free_tok;
        }
        for (int i = 0; i < nin; i++) {
            size_t slot;
            int b = blob_find(c, g, tok[4 + i], &slot);

            if (b < 0) {
                ret = LAYER_FAIL(c, l, "input blob '%s' is not produced by an earlier layer",
                                 tok[4 + i]);
                goto free_tok;
            }
            l->in[i] = b;
        }
        for (int i = 0; i < nout; i++) {
            size_t slot;
            const char *name = tok[4 + nin + i];

            if (blob_find(c, g, name, &slot) >= 0) {
                ret = LAYER_FAIL(c, l, "blob '%s' is produced twice", name);
                goto free_tok;
            }
            if (nnames == nblobs) {
                ret = LAYER_FAIL(c, l, "more blobs than the %d the header declares", nblobs);
                goto free_tok;
            }
            if (!(g->blob_names[nnames] = strdup(name))) {
                ret = reel_fail(c->errmsg, REEL_ERR(ENOMEM), "%s: out of memory", c->param_path);
                goto free_tok;
            }
            g->blob_producer[nnames] = li;
            c->hash[slot] = nnames;
            l->out[i] = nnames++;
        }
        if ((ret = parse_params(c, l, tok + 4 + nin + nout, n - 4 - nin - nout)) < 0 ||
            (ret = setup_layer(c, l, g)) < 0) {
            params_clear(c);
            goto free_tok;
        }
        params_clear(c);
        if (l->op == REEL_NN_INPUT) {
            if (g->input >= 0) {
                ret = LAYER_FAIL(c, l, "a second Input layer is not supported");
                goto free_tok;
            }
            g->input = l->out[0];
        }
    }
    if ((ret = n = next_tokens(c, &cursor, tok, MAX_TOKENS)) < 0)
        goto free_tok;
    if (n > 0) {
        ret = reel_fail(c->errmsg, REEL_ERROR_MODEL,
                        "%s:%d: text after the %d layers the header declares", c->param_path,
                        c->line, nlayers);
        goto free_tok;
    }
    if (nnames != nblobs) {
        ret = reel_fail(c->errmsg, REEL_ERROR_MODEL,
                        "%s: the header declares %d blobs, the layers define %d", c->param_path,
                        nblobs, nnames);
        goto free_tok;
    }
    if (g->input < 0) {
        ret = reel_fail(c->errmsg, REEL_ERROR_MODEL, "%s: no Input layer", c->param_path);
        goto free_tok;
    }
    ret = 0;

free_tok:
    free(tok);
    return ret;
}

/* The output is the one blob no layer reads. */
static int find_output(LoadCtx *c, ReelNnGraph *g)
{
    char *used = calloc((size_t)g->nblobs, 1);
    int ret = 0, count = 0;

    if (!used)
        return reel_fail(c->errmsg, REEL_ERR(ENOMEM), "out of memory");
    for (int li = 0; li < g->nlayers; li++)
        for (int i = 0; i < g->layers[li].nin; i++)
            used[g->layers[li].in[i]] = 1;
    g->output = -1;
    for (int b = 0; b < g->nblobs; b++) {
        if (used[b])
            continue;
        if (count++ == 0) {
            g->output = b;
        } else {
            ret = reel_fail(c->errmsg, REEL_ERROR_MODEL,
                            "%s: blobs '%s' and '%s' are both unused: cannot tell the output",
                            c->param_path, g->blob_names[g->output], g->blob_names[b]);
            break;
        }
    }
    if (!ret && g->output < 0)
        ret = reel_fail(c->errmsg, REEL_ERROR_MODEL, "%s: no output blob", c->param_path);
    free(used);
    return ret;
}

/* The network must map C x H x W to C x sH x sW for one integer s at any size. */
static int check_scale(LoadCtx *c, ReelNnGraph *g)
{
    static const int probe[2][2] = {{24, 40}, {37, 29}};
    ReelNnShape *shapes = malloc((size_t)g->nblobs * sizeof(*shapes));
    int ret = 0;

    if (!shapes)
        return reel_fail(c->errmsg, REEL_ERR(ENOMEM), "out of memory");
    g->scale = 0;
    for (int i = 0; i < 2 && ret >= 0; i++) {
        const ReelNnShape *o;
        int h = probe[i][0], w = probe[i][1], s;

        if ((ret = reel_nn_graph_infer(g, h, w, shapes, c->errmsg)) < 0)
            break;
        o = &shapes[g->output];
        s = o->h / h;
        if (o->c != g->in_channels || s < 1 || o->h != s * h || o->w != s * w ||
            (g->scale && s != g->scale)) {
            ret = reel_fail(c->errmsg, REEL_ERROR_MODEL,
                            "%s: maps %dx%dx%d to %dx%dx%d: not an image upscaler with an "
                            "integer scale",
                            c->param_path, g->in_channels, h, w, o->c, o->h, o->w);
            break;
        }
        g->scale = s;
    }
    free(shapes);
    return ret;
}

int reel_nn_graph_load(ReelNnGraph **out, const char *param_path, const char *bin_path,
                       char *errmsg)
{
    LoadCtx c = {0};
    ReelNnGraph *g = NULL;
    unsigned char *text = NULL;
    const unsigned char *bin = NULL;
    size_t text_len, bin_len = 0;
    int ret;

    *out = NULL;
    c.param_path = param_path;
    c.bin_path = bin_path;
    c.errmsg = errmsg;
    if ((ret = read_whole_file(param_path, MAX_PARAM_FILE, &text, &text_len, errmsg)) < 0)
        return ret;
    if (memchr(text, 0, text_len)) {
        ret = reel_fail(errmsg, REEL_ERROR_MODEL, "%s: binary data in a text file", param_path);
        goto free_text;
    }
    if ((ret = map_whole_file(bin_path, MAX_BIN_FILE, &bin, &bin_len, errmsg)) < 0)
        goto free_text;
    c.bin = bin;
    c.bin_len = bin_len;
    if (!(g = calloc(1, sizeof(*g))) || !(g->param_path = strdup(param_path))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "%s: out of memory", param_path);
        goto free_graph;
    }
    g->in_channels = 3;
    if ((ret = parse_layers(&c, g, (char *)text)) < 0)
        goto free_graph;
    if (c.bin_pos != c.bin_len) {
        ret = reel_fail(errmsg, REEL_ERROR_MODEL,
                        "%s: %zu bytes left over after the last layer's weights: it does not "
                        "belong to %s",
                        bin_path, c.bin_len - c.bin_pos, param_path);
        goto free_graph;
    }
    if ((ret = find_output(&c, g)) < 0 || (ret = check_scale(&c, g)) < 0)
        goto free_graph;
    *out = g;
    g = NULL;
    ret = 0;

free_graph:
    params_clear(&c);
    free(c.hash);
    reel_nn_graph_free(&g);
    unmap_whole_file(bin, bin_len);
free_text:
    free(text);
    return ret;
}

void reel_nn_graph_free(ReelNnGraph **pg)
{
    ReelNnGraph *g = pg ? *pg : NULL;

    if (!g)
        return;
    for (int li = 0; li < g->nlayers; li++) {
        ReelNnLayer *l = &g->layers[li];

        free(l->type);
        free(l->name);
        free(l->in);
        free(l->out);
        if (l->op == REEL_NN_CONV) {
            free(l->p.conv.weight);
            free(l->p.conv.bias);
        } else if (l->op == REEL_NN_PRELU) {
            free(l->p.prelu.slope);
        } else if (l->op == REEL_NN_ELTWISE) {
            free(l->p.eltwise.coef);
        }
    }
    free(g->layers);
    if (g->blob_names)
        for (int b = 0; b < g->nblobs; b++)
            free(g->blob_names[b]);
    free(g->blob_names);
    free(g->blob_producer);
    free(g->param_path);
    free(g);
    *pg = NULL;
}

/* ------------------------------------------------------------------------ */
/* shapes */

static int shape_fail(char *errmsg, const ReelNnGraph *g, const ReelNnLayer *l, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

static int shape_fail(char *errmsg, const ReelNnGraph *g, const ReelNnLayer *l, const char *fmt,
                      ...)
{
    char what[REEL_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return reel_fail(errmsg, REEL_ERROR_MODEL, "%s: layer %s (%s): %s", g->param_path, l->name,
                     l->type, what);
}

static int same_shape(const ReelNnShape *a, const ReelNnShape *b)
{
    return a->c == b->c && a->h == b->h && a->w == b->w;
}

int reel_nn_graph_infer(const ReelNnGraph *g, int h, int w, ReelNnShape *shapes, char *errmsg)
{
    if (h < 1 || w < 1 || h > MAX_DIM || w > MAX_DIM)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: input size %dx%d out of range",
                         g->param_path, w, h);
    for (int li = 0; li < g->nlayers; li++) {
        const ReelNnLayer *l = &g->layers[li];
        const ReelNnShape *a = l->nin ? &shapes[l->in[0]] : NULL;
        ReelNnShape o = {0, 0, 0};
        long long oh, ow;

        switch (l->op) {
        case REEL_NN_INPUT:
            o = (ReelNnShape){g->in_channels, h, w};
            break;
        case REEL_NN_SPLIT:
            for (int i = 0; i < l->nout; i++)
                shapes[l->out[i]] = *a;
            continue;
        case REEL_NN_CONV: {
            const ReelNnConv *cv = &l->p.conv;

            if (a->c != cv->in_c)
                return shape_fail(errmsg, g, l, "gets %d channels, its weights want %d", a->c,
                                  cv->in_c);
            oh = ((long long)a->h + cv->pad_t + cv->pad_b - ((cv->kh - 1) * cv->dh + 1)) / cv->sh +
                 1;
            ow = ((long long)a->w + cv->pad_l + cv->pad_r - ((cv->kw - 1) * cv->dw + 1)) / cv->sw +
                 1;
            if (a->h + cv->pad_t + cv->pad_b < (cv->kh - 1) * cv->dh + 1 ||
                a->w + cv->pad_l + cv->pad_r < (cv->kw - 1) * cv->dw + 1)
                oh = ow = 0;
            o = (ReelNnShape){cv->out_c, (int)(oh > 0 ? (oh > MAX_DIM ? MAX_DIM + 1 : oh) : 0),
                              (int)(ow > 0 ? (ow > MAX_DIM ? MAX_DIM + 1 : ow) : 0)};
            break;
        }
        case REEL_NN_PRELU:
            if (l->p.prelu.n != 1 && l->p.prelu.n != a->c)
                return shape_fail(errmsg, g, l, "%d slopes for %d channels", l->p.prelu.n, a->c);
            o = *a;
            break;
        case REEL_NN_PIXEL_SHUFFLE: {
            int r = l->p.shuffle.factor;

            if (a->c % (r * r))
                return shape_fail(errmsg, g, l, "%d channels do not divide by %d", a->c, r * r);
            oh = (long long)a->h * r;
            ow = (long long)a->w * r;
            o = (ReelNnShape){a->c / (r * r), (int)(oh > MAX_DIM ? MAX_DIM + 1 : oh),
                              (int)(ow > MAX_DIM ? MAX_DIM + 1 : ow)};
            break;
        }
        case REEL_NN_INTERP: {
            /* as ncnn: int * float, truncated */
            double fh = (double)(float)((float)a->h * l->p.interp.scale_h);
            double fw = (double)(float)((float)a->w * l->p.interp.scale_w);

            o = (ReelNnShape){a->c, fh > MAX_DIM ? MAX_DIM + 1 : (int)fh,
                              fw > MAX_DIM ? MAX_DIM + 1 : (int)fw};
            break;
        }
        case REEL_NN_BINARY:
            if (!l->p.binary.with_scalar && !same_shape(a, &shapes[l->in[1]]))
                return shape_fail(errmsg, g, l,
                                  "operands %dx%dx%d and %dx%dx%d differ (broadcasting is "
                                  "not supported)",
                                  a->c, a->h, a->w, shapes[l->in[1]].c, shapes[l->in[1]].h,
                                  shapes[l->in[1]].w);
            o = *a;
            break;
        case REEL_NN_ELTWISE:
            for (int i = 1; i < l->nin; i++)
                if (!same_shape(a, &shapes[l->in[i]]))
                    return shape_fail(errmsg, g, l, "input %d has a different shape", i);
            o = *a;
            break;
        case REEL_NN_CONCAT: {
            long long ch = 0;

            for (int i = 0; i < l->nin; i++) {
                const ReelNnShape *b = &shapes[l->in[i]];

                if (b->h != a->h || b->w != a->w)
                    return shape_fail(errmsg, g, l, "input %d is %dx%d, input 0 is %dx%d", i, b->w,
                                      b->h, a->w, a->h);
                ch += b->c;
            }
            if (ch > MAX_CHANNELS)
                return shape_fail(errmsg, g, l, "%lld channels is too many", ch);
            o = (ReelNnShape){(int)ch, a->h, a->w};
            break;
        }
        }
        if (o.c < 1 || o.h < 1 || o.w < 1 || o.h > MAX_DIM || o.w > MAX_DIM)
            return shape_fail(errmsg, g, l,
                              "output size %dx%dx%d for a %dx%d input is out of "
                              "range",
                              o.c, o.h, o.w, w, h);
        shapes[l->out[0]] = o;
    }
    return 0;
}
