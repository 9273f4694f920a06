/*
 * ncnn_model.h - private: an ncnn model (.param text + .bin weights) loaded
 * into a small, backend-neutral graph.
 *
 * The graph is the .param file's layer list in file order (which ncnn requires
 * to be topological), with blob names turned into indices and weights widened
 * to float32. Only the layer types and parameters the upscaler can run are
 * accepted; everything else is rejected at load time with a sentence naming
 * the file, the layer and the parameter, so a backend never sees a layer it
 * would have to guess about.
 *
 * Tensors are 3-D (channels, height, width), batch 1. Shapes are not stored in
 * the graph: reel_nn_graph_infer() computes them for a given input size, so one
 * graph serves every tile shape.
 *
 * Thread-safety: a loaded graph is immutable; any number of threads may read it.
 */
#ifndef REEL_UPSCALE_NCNN_MODEL_H
#define REEL_UPSCALE_NCNN_MODEL_H

#include <stddef.h>

typedef enum ReelNnOp {
    REEL_NN_INPUT,         /* the network input; no params used */
    REEL_NN_SPLIT,         /* every output is the input (no data moves) */
    REEL_NN_CONV,          /* 2-D convolution, optional fused activation */
    REEL_NN_PRELU,         /* per-channel (or single) negative slope */
    REEL_NN_PIXEL_SHUFFLE, /* depth to space */
    REEL_NN_INTERP,        /* nearest-neighbour resize by scale factors */
    REEL_NN_BINARY,        /* a op b, same shapes, or a op scalar */
    REEL_NN_ELTWISE,       /* n-ary sum (with coefficients), product or max */
    REEL_NN_CONCAT,        /* channel concatenation */
} ReelNnOp;

typedef enum ReelNnAct {
    REEL_NN_ACT_NONE = 0,
    REEL_NN_ACT_RELU = 1,  /* ncnn activation_type 1 */
    REEL_NN_ACT_LEAKY = 2, /* ncnn activation_type 2, slope in act_alpha */
} ReelNnAct;

typedef enum ReelNnBinaryOp {
    REEL_NN_BIN_ADD = 0, /* ncnn op_type numbers */
    REEL_NN_BIN_SUB = 1,
    REEL_NN_BIN_MUL = 2,
} ReelNnBinaryOp;

typedef enum ReelNnEltwiseOp {
    REEL_NN_ELT_PROD = 0, /* ncnn op_type numbers */
    REEL_NN_ELT_SUM = 1,
    REEL_NN_ELT_MAX = 2,
} ReelNnEltwiseOp;

typedef struct ReelNnConv {
    int out_c, in_c;                /* in_c = weight_data_size / (out_c * kh * kw) */
    int kh, kw;                     /* kernel */
    int dh, dw;                     /* dilation (1 = dense) */
    int sh, sw;                     /* stride */
    int pad_t, pad_b, pad_l, pad_r; /* zero padding */
    ReelNnAct act;                  /* fused activation */
    float act_alpha;                /* leaky slope */
    float *weight;                  /* out_c x in_c x kh x kw (OIHW), float32 */
    float *bias;                    /* out_c, or NULL */
} ReelNnConv;

typedef struct ReelNnLayer {
    ReelNnOp op;
    char *type; /* ncnn type name, for messages */
    char *name; /* ncnn layer name, for messages */
    int nin, nout;
    int *in, *out; /* blob indices */
    union {
        ReelNnConv conv;
        struct {
            int n; /* 1 = one slope for all channels */
            float *slope;
        } prelu;
        struct {
            int factor;
            int mode; /* 0: in channel = c*r*r + dy*r + dx; 1: (dy*r + dx)*C + c */
        } shuffle;
        struct {
            float scale_h, scale_w; /* output = (int)(in * scale) */
        } interp;
        struct {
            ReelNnBinaryOp op;
            int with_scalar; /* 1: one input, b is the second operand */
            float b;
        } binary;
        struct {
            ReelNnEltwiseOp op;
            float *coef; /* nin coefficients (SUM only), or NULL = all 1 */
        } eltwise;
    } p;
} ReelNnLayer;

typedef struct ReelNnGraph {
    char *param_path; /* for messages */
    int nlayers, nblobs;
    ReelNnLayer *layers;
    char **blob_names;
    int *blob_producer;   /* layer index that writes each blob */
    int input;            /* the Input layer's blob */
    int output;           /* the one blob nothing consumes */
    int in_channels;      /* channels the first consumers of the input expect */
    int scale;            /* output size / input size (integer, checked) */
    size_t weight_floats; /* total weights + biases + slopes */
} ReelNnGraph;

typedef struct ReelNnShape {
    int c, h, w;
} ReelNnShape;

/**
 * Load param_path and bin_path into a new graph (*out; free with
 * reel_nn_graph_free). Checks the text, every parameter, the weight sizes
 * against the .bin length, the blob wiring, and that the network maps
 * in_channels x H x W to in_channels x sH x sW for an integer s.
 * Errors: REEL_ERR(errno) when a file cannot be read, REEL_ERROR_MODEL for
 * anything malformed or unsupported, REEL_ERR(ENOMEM); errmsg says which file
 * and layer. *out is NULL on error.
 */
int reel_nn_graph_load(ReelNnGraph **out, const char *param_path, const char *bin_path,
                       char *errmsg);

/** Free a graph and NULL the pointer; NULL-safe. */
void reel_nn_graph_free(ReelNnGraph **g);

/** n little-endian IEEE fp16 values at p widened to float32, exactly (as the
 *  loader reads fp16 weights; F16C where the CPU has it). */
void reel_nn_halves_to_floats(const unsigned char *p, float *out, size_t n);

/**
 * Shapes of every blob (shapes[nblobs], caller's storage) when the input is
 * in_channels x h x w. REEL_ERROR_MODEL (with errmsg naming the layer) when a
 * layer cannot take its inputs' shapes: channel mismatch, size <= 0, ...
 */
int reel_nn_graph_infer(const ReelNnGraph *g, int h, int w, ReelNnShape *shapes, char *errmsg);

#endif
