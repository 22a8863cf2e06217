/* test_fast_paths.c - every fast twin in cnn.h's FAST section computes what
   its plain twin computes.

   The plain part of cnn.h is each layer's formula as plain loops; the FAST
   section has a twin for the layers that take the time (conv2d, dense, the
   activations, max pooling, dropout, batch norm, a residual block's
   projection, the optimisers), which the model runs instead. Here each
   pair runs on the same inputs, on many shapes, through the same entry
   points the model uses (cnn__layer_forward and _backward, plain;
   cnn__layer_forward_fast and _backward_fast), and must agree: bit for bit
   where the twin adds in the plain order (dense, activations, max pooling,
   dropout, optimisers, conv2d's forward pass and the projection's), to
   1e-5 of the largest value where it does not (conv2d's gradients: the
   weight gradient is summed in chunks of samples, dx window by window
   through col2im; batch norm, whose sums run in vector lanes).
   The multiply's kernel comes in three builds (cnn.h, "instruction sets"):
   the tests of the layers that multiply (conv2d, dense, the projection)
   run once with each kernel this machine has, set on the built model. The
   avx2 and avx512 kernels fuse each multiply-add, rounding once where the
   plain loops round twice, so with them the forward passes too agree to
   1e-5 of the largest value, not bit for bit; the two give each other's
   bits, which a test checks, and CNN_MAX_ISA caps the choice.

   Then the special cases inside the twins, each against the plain loop or
   the formula written out again here, on counts and widths that leave every
   kind of remainder and on values that test the rules at their edges (NaN,
   infinities, -0, ties): activations 8 at a time, the 2 x 2 max pool 8
   windows at a time, Adam 4 parameters at a time and its check 8 at a
   time, a dense layer on fewer samples than the multiply's panel, the
   packing of a transposed operand, a dropout mask a block per thread.

   Built with CNN_NO_FAST there is no FAST section, and every test here
   says it is skipped. */
#define _POSIX_C_SOURCE 200112L /* setenv, to try CNN_MAX_ISA */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#ifndef CNN_NO_FAST
static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The multiply's kernel the tests set on each model they build
   (CNN__ISA_GENERIC, _AVX2, _AVX512), or -1 for the model's own choice;
   main runs the tests of the layers that multiply once for each kernel up
   to the widest this machine runs. */
static int kernel_under_test = -1;

static int widest_kernel(void)
{
    int isa = CNN__ISA_GENERIC;
    return cnn__choose_isa(NULL, &isa) == CNN_OK ? isa : CNN__ISA_GENERIC;
}

static void set_kernel(cnn_model *model)
{
    if (kernel_under_test >= 0 && model->fast) model->fast->work.isa = kernel_under_test;
}

/* Values with every awkward case in the first few places, then random
   ones of both signs. Small integers make ties likely in max pools. */
static void fill_awkward(float *x, int count, cnn_rng *rng, int small_integers)
{
    static const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 1e-40f, -1e-40f, 3.5f, -2.25f};
    int i;
    for (i = 0; i < count; i++) {
        if (small_integers) x[i] = (float)((int)(cnn_rng_uniform(rng) * 7.0f) - 3);
        else x[i] = (cnn_rng_uniform(rng) - 0.5f) * 8.0f;
        if (i < (int)(sizeof specials / sizeof specials[0])) x[i] = specials[i];
    }
    if (count > 11) {
        x[count / 2] = NAN;
        x[count / 3] = INFINITY;
        x[count - 2] = -INFINITY;
        x[count - 1] = NAN;
    }
}

/* ---------------------------------------------------------------- twin against twin */

/* The largest |a - b| over n values, relative to the largest |b|; a NaN
   anywhere makes it NaN. */
static double relative_difference(const float *a, const float *b, size_t n)
{
    double scale = 0.0, diff = test_max_abs_diff(a, b, n);
    size_t i;
    for (i = 0; i < n; i++)
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    return scale > 0.0 ? diff / scale : diff;
}

/* Layer i of a built model, on a batch of N random inputs in the given
   mode: forward and backward once with its plain pair and once with its
   fast twin, from the same x, dy, random stream and starting dw, db (not
   zero: both must add to them), the input gradient wanted. A batch norm's
   running statistics start each twin at the same random values and are
   compared after it (with its count of steps); a residual end reads the
   block's input, filled with random values, and its skip path's gradient
   is compared too. Returns the largest relative difference of y, dx, dw,
   db and those (0 when all are the same bits); *exact is set to 0 where
   any differs in its bits, *forward_exact where y (or the running
   statistics) does. */
static double compare_layer(cnn_model *model, int i, int N, cnn_mode mode, uint64_t seed, int *exact, int *forward_exact)
{
    cnn_layer *layer = &model->layers[i];
    const size_t in_count = (size_t)N * cnn_shape_count(layer->in), out_count = (size_t)N * cnn_shape_count(layer->out);
    const size_t params = layer->weight_count + layer->bias_count;
    const int is_end = layer->desc.type == CNN_LAYER_RESIDUAL_END;
    /* what else the layer writes: batch norm's state, a residual end's skip gradient */
    const size_t extra_count = layer->state_count + (is_end ? (size_t)N * cnn_shape_count(model->layers[layer->block_begin].in) : 0);
    float *x, *y[2], *dy, *dx[2], *grads[2], *extra[2], *start = NULL, *state_start = NULL;
    uint64_t tracked[2];
    cnn_rng rng, stream_start, stream[2];
    double worst = 0.0, e[5];
    int twin, handled = 1, k;
    x = (float *)malloc(in_count * sizeof(float));
    dy = (float *)malloc(out_count * sizeof(float));
    for (twin = 0; twin < 2; twin++) {
        y[twin] = (float *)malloc(out_count * sizeof(float));
        dx[twin] = (float *)malloc(in_count * sizeof(float));
        grads[twin] = (float *)malloc((params + 1) * sizeof(float));
        extra[twin] = (float *)malloc((extra_count + 1) * sizeof(float));
    }
    if (params) start = (float *)malloc(params * sizeof(float));
    if (layer->state_count) state_start = (float *)malloc(layer->state_count * sizeof(float));
    cnn_rng_seed(&rng, seed);
    test_fill_uniform(&rng, x, in_count, -2.0f, 2.0f);
    test_fill_uniform(&rng, dy, out_count, -1.0f, 1.0f);
    if (params) test_fill_uniform(&rng, start, params, -1.0f, 1.0f);
    test_fill_uniform(&rng, model->params + layer->param_offset, params, -0.5f, 0.5f);
    if (state_start) { /* running means, then variances */
        test_fill_uniform(&rng, state_start, layer->state_count / 2, -1.0f, 1.0f);
        test_fill_uniform(&rng, state_start + layer->state_count / 2, layer->state_count / 2, 0.5f, 2.0f);
    }
    /* the model's batch, mode and tensor sizes, as a pass sets them */
    CHECK(cnn_model_forward(model, model->activations[0].data, N, mode) == CNN_OK, "%s", model->error.message);
    if (is_end)
        test_fill_uniform(&rng, model->activations[layer->block_begin].data, extra_count, -2.0f, 2.0f);
    stream_start = model->rng;
    for (twin = 0; twin < 2; twin++) {
        model->rng = stream_start;
        if (state_start) {
            memcpy(layer->running_mean, state_start, layer->state_count / 2 * sizeof(float));
            memcpy(layer->running_var, state_start + layer->state_count / 2, layer->state_count / 2 * sizeof(float));
            layer->batches_tracked = 5;
        }
        memcpy(model->activations[i].data, x, in_count * sizeof(float));
        if (twin == 0) cnn__layer_forward(model, i);
        else handled &= cnn__layer_forward_fast(model, i);
        memcpy(y[twin], model->activations[i + 1].data, out_count * sizeof(float));
        stream[twin] = model->rng;
        if (params) memcpy(model->grads + layer->param_offset, start, params * sizeof(float));
        memcpy(model->activation_grads[i + 1].data, dy, out_count * sizeof(float));
        for (k = 0; k < (int)in_count; k++) model->activation_grads[i].data[k] = 1234.5f; /* overwritten, not added to */
        if (is_end)
            for (k = 0; k < (int)extra_count; k++) layer->skip_grad[k] = 1234.5f;
        if (twin == 0) cnn__layer_backward(model, i, 1);
        else handled &= cnn__layer_backward_fast(model, i, 1) || layer->desc.type == CNN_LAYER_DROPOUT;
        if (twin == 1 && layer->desc.type == CNN_LAYER_DROPOUT) cnn__layer_backward(model, i, 1); /* no twin: plain */
        memcpy(dx[twin], model->activation_grads[i].data, in_count * sizeof(float));
        memcpy(grads[twin], model->grads + layer->param_offset, params * sizeof(float));
        if (state_start) {
            memcpy(extra[twin], layer->running_mean, layer->state_count / 2 * sizeof(float));
            memcpy(extra[twin] + layer->state_count / 2, layer->running_var, layer->state_count / 2 * sizeof(float));
        }
        if (is_end) memcpy(extra[twin], layer->skip_grad, extra_count * sizeof(float));
        tracked[twin] = layer->batches_tracked;
    }
    CHECK(handled, "layer %d (%s) has no fast twin", i, cnn_layer_type_name(layer->desc.type));
    CHECK(stream[0].state == stream[1].state, "layer %d: the twins leave the random stream in different places", i);
    CHECK(tracked[0] == tracked[1], "layer %d: the twins count %lu and %lu batches", i, (unsigned long)tracked[0],
          (unsigned long)tracked[1]);
    e[0] = relative_difference(y[1], y[0], out_count);
    e[1] = relative_difference(dx[1], dx[0], in_count);
    e[2] = relative_difference(grads[1], grads[0], layer->weight_count);
    e[3] = relative_difference(grads[1] + layer->weight_count, grads[0] + layer->weight_count, layer->bias_count);
    e[4] = relative_difference(extra[1], extra[0], extra_count);
    for (k = 0; k < 5; k++)
        if (e[k] > worst || e[k] != e[k]) worst = e[k];
    if (memcmp(y[0], y[1], out_count * sizeof(float)) || memcmp(extra[0], extra[1], layer->state_count * sizeof(float)))
        *forward_exact = 0;
    if (memcmp(y[0], y[1], out_count * sizeof(float)) || memcmp(dx[0], dx[1], in_count * sizeof(float)) ||
        memcmp(grads[0], grads[1], params * sizeof(float)) || memcmp(extra[0], extra[1], extra_count * sizeof(float)))
        *exact = 0;
    free(x); free(dy); free(start); free(state_start);
    for (twin = 0; twin < 2; twin++) {
        free(y[twin]); free(dx[twin]); free(grads[twin]); free(extra[twin]);
    }
    return worst;
}

/* How closely a fast twin must agree with its plain pair. */
typedef enum agreement {
    SAME_BITS,          /* the same bits everywhere */
    SAME_FORWARD_BITS,  /* the same bits forward; backward within 1e-5 of each tensor's largest value */
    WITHIN_ROUNDING     /* within 1e-5 of each tensor's largest value, forward too */
} agreement;

/* Every layer of a model built for batches of N, through compare_layer in
   the given mode, agreeing as asked. Layers without a twin are left out.
   Returns 1 when the model could be built. */
static int compare_model_in(cnn_model *model, int N, cnn_mode mode, agreement agree, const char *name, uint64_t seed,
                            double *worst)
{
    int i, bits = 1, forward_bits = 1;
    double e = 0.0, layer_e;
    int fused, multiplies = 0;
    if (cnn_model_build(model, N) != CNN_OK) {
        CHECK(0, "%s: cannot build: %s", name, model->error.message);
        cnn_model_free(model);
        return 0;
    }
    set_kernel(model);
    fused = model->fast->work.isa != CNN__ISA_GENERIC;
    for (i = 0; i < model->layer_count; i++) {
        const cnn_layer_type type = model->layers[i].desc.type;
        multiplies |= type == CNN_LAYER_CONV2D || type == CNN_LAYER_DENSE ||
                      (type == CNN_LAYER_RESIDUAL_END && model->layers[i].weight_count > 0);
    }
    if (fused && multiplies) agree = WITHIN_ROUNDING; /* fused multiply-adds round once, the plain loops twice */
    for (i = 0; i < model->layer_count; i++) {
        const cnn_layer_type type = model->layers[i].desc.type;
        if (type == CNN_LAYER_FLATTEN || type == CNN_LAYER_SOFTMAX || type == CNN_LAYER_AVG_POOL ||
            type == CNN_LAYER_GLOBAL_AVG_POOL || type == CNN_LAYER_RESIDUAL_BEGIN ||
            (type == CNN_LAYER_RESIDUAL_END && model->layers[i].weight_count == 0))
            continue; /* no twin */
        layer_e = compare_layer(model, i, N, mode, seed + (uint64_t)i, &bits, &forward_bits);
        if (layer_e > e || layer_e != layer_e) e = layer_e;
    }
    if (agree == SAME_BITS)
        CHECK(bits, "%s, %s kernel: the fast twin's bits differ from the plain pair's (relative difference %.3g)", name,
              cnn_model_instruction_set(model), e);
    else
        CHECK(e <= 1e-5 && (forward_bits || agree == WITHIN_ROUNDING),
              "%s, %s kernel: fast vs plain relative difference %.3g (limit 1e-5)%s", name, cnn_model_instruction_set(model), e,
              forward_bits ? "" : ", and the forward pass differs in its bits");
    if (e > *worst || e != e) *worst = e;
    cnn_model_free(model);
    return 1;
}

/* The same in training mode; exact: SAME_BITS, else SAME_FORWARD_BITS. */
static int compare_model(cnn_model *model, int N, int exact, const char *name, uint64_t seed, double *worst)
{
    return compare_model_in(model, N, CNN_MODE_TRAIN, exact ? SAME_BITS : SAME_FORWARD_BITS, name, seed, worst);
}

/* conv2d, on every combination of C in {1,2,3}, K in {1,3,5}, S in {1,2},
   P in {0,1,2} with inputs 7x9 and 6x8, batch 2 (on 6x8 stride 2 does not
   tile: the last row and column of windows are dropped), plus one
   large case (24x26, 624 output positions, 39 column panels of the
   multiply), also as a batch of one sample (built with OpenMP, fewer
   samples than threads share each multiply instead of taking samples;
   test_threads runs that path on two), one batch of 19 (the fast backward sums its weight gradient
   in chunks of CNN__CHUNK = 8 samples: 19 makes three chunks, the last one
   partial), and every K, S and P on 21x23 with 13 channels (up to 326 rows
   of col). All with 3, 6 and 16 output channels: the weight gradient is
   summed by rows for 3 and 6, where col has few rows (see
   cnn__conv2d_grad_by_rows), with dy packed for 3 and read in place for 6,
   a whole panel of rows; and the other way round for 16. The forward
   passes add the same products in the same order, and must give the same
   bits; the gradients add them in different orders, so they differ by
   float rounding only: at most a few ulp of the largest |term| sum (~1e-6
   relative here); we accept 1e-5 relative to the largest value of each
   tensor. */
TEST(conv2d_fast_matches_plain)
{
    static const int channels[] = {1, 2, 3, 13}, kernels[] = {1, 3, 5}, strides[] = {1, 2}, paddings[] = {0, 1, 2};
    static const int sizes[][3] = {{7, 9, 2}, {6, 8, 2}, {24, 26, 2}, {7, 9, 19}, {21, 23, 2}, {24, 26, 1}}; /* H, W, N */
    static const int outputs[] = {3, 6, 16};
    size_t oi, ci, ki, si, pi, zi;
    int cases = 0;
    double worst = 0.0;
    char name[96];
    for (oi = 0; oi < 3; oi++)
        for (zi = 0; zi < sizeof sizes / sizeof sizes[0]; zi++)
            for (ci = 0; ci < 4; ci++)
                for (ki = 0; ki < 3; ki++)
                    for (si = 0; si < 2; si++)
                        for (pi = 0; pi < 3; pi++) {
                            const int C = channels[ci], K = kernels[ki], S = strides[si], P = paddings[pi];
                            const int H = sizes[zi][0], W = sizes[zi][1], N = sizes[zi][2];
                            cnn_model model;
                            if ((zi == 2 || zi == 5) && !(C == 3 && K == 5 && S == 1 && P == 2)) continue; /* one large case */
                            if (zi == 3 && !(C == 2 && K == 3 && S == 2 && P == 1)) continue; /* one large batch */
                            if ((zi == 4) != (C == 13)) continue; /* many channels: only in 21x23 */
                            snprintf(name, sizeof name, "conv2d C%d %dx%d K%d S%d P%d N%d OC%d", C, H, W, K, S, P, N, outputs[oi]);
                            cnn_model_init(&model, C, H, W, 1);
                            cnn_add_conv2d(&model, outputs[oi], K, S, P);
                            cases += compare_model(&model, N, 0, name, 900 + (uint64_t)cases, &worst);
                        }
    /* 7x9 and 6x8: all 54 each; plus the large shape, alone too, and the
       large batch; 21x23 with 13 channels: all 18; each with 3, 6 and 16
       output channels */
    CHECK(cases == 3 * (54 + 54 + 1 + 1 + 1 + 18), "expected 387 shapes to be compared, got %d", cases);
    if (getenv("FAST_PATHS_VERBOSE")) printf("    conv2d: %d shapes, worst relative difference %.2e\n", cases, worst);
}

/* dense, bit for bit: batches below and above the multiply's 6-row panel
   (1 sample goes through w alone), widths that leave every kind of last
   panel and block, and a layer large enough for threads to share it. */
TEST(dense_fast_matches_plain)
{
    static const int ins[] = {1, 5, 16, 37, 300}, outs[] = {1, 7, 8, 17, 64, 130, 250}, batches[] = {1, 3, 6, 7, 20};
    size_t a, b, c;
    int cases = 0;
    double worst = 0.0;
    char name[64];
    for (a = 0; a < sizeof ins / sizeof ins[0]; a++)
        for (b = 0; b < sizeof outs / sizeof outs[0]; b++)
            for (c = 0; c < sizeof batches / sizeof batches[0]; c++) {
                cnn_model model;
                snprintf(name, sizeof name, "dense %d -> %d, N %d", ins[a], outs[b], batches[c]);
                cnn_model_init(&model, ins[a], 1, 1, 2);
                cnn_add_dense(&model, outs[b]);
                cases += compare_model(&model, batches[c], 1, name, 40 + (uint64_t)cases, &worst);
            }
    CHECK(cases == 5 * 7 * 5, "%d shapes compared", cases);
}

/* The activations, max pooling (2 x 2 stride 2 and other windows, even and
   odd sides) and dropout, bit for bit, on a small batch and on one large
   enough (over 65,536 values) for threads to take blocks of it. */
TEST(elementwise_and_pooling_fast_match_plain)
{
    static const int sides[] = {2, 5, 8, 13, 28}, batches[] = {1, 3, 90};
    static const int pools[][2] = {{2, 2}, {3, 2}, {2, 1}, {3, 3}}; /* kernel, stride */
    size_t s, b, p;
    int cases = 0;
    double worst = 0.0;
    char name[96];
    for (s = 0; s < sizeof sides / sizeof sides[0]; s++)
        for (b = 0; b < sizeof batches / sizeof batches[0]; b++) {
            const int side = sides[s], N = batches[b];
            cnn_model model;
            snprintf(name, sizeof name, "activations and dropout on (3, %d, %d), N %d", side, side, N);
            cnn_model_init(&model, 3, side, side, 5);
            cnn_add_relu(&model);
            cnn_add_leaky_relu(&model, 0.2f);
            cnn_add_sigmoid(&model);
            cnn_add_tanh(&model);
            cnn_add_dropout(&model, 0.3f);
            cases += compare_model(&model, N, 1, name, 70 + (uint64_t)cases, &worst);
            for (p = 0; p < sizeof pools / sizeof pools[0]; p++) {
                if (side < pools[p][0]) continue;
                snprintf(name, sizeof name, "max pool %dx%d s%d on (3, %d, %d), N %d", pools[p][0], pools[p][0], pools[p][1],
                         side, side, N);
                cnn_model_init(&model, 3, side, side, 6);
                cnn_add_max_pool(&model, pools[p][0], pools[p][1]);
                cases += compare_model(&model, N, 1, name, 80 + (uint64_t)cases, &worst);
            }
        }
    CHECK(cases == 3 * (5 + 2 + 4 * 4), "%d shapes compared", cases); /* side 2 has no 3x3 window */
}

/* Batch norm, in training (the batch's statistics, the running ones
   updated) and in evaluation (the running ones), on images whose planes
   are 1 (after a dense layer), 9, 25, 64, 169 and 784 values (whole
   vectors of 8 and every kind of remainder), 3 and 16 channels, batches of
   2 (but not of flat vectors in training), 3 and 40. The fast twin sums each plane in vector lanes before adding
   the planes in double, the plain loop value by value in double: they
   agree to rounding, forward and backward (1e-5 of each tensor's largest
   value), and count the same batches. */
TEST(batch_norm_fast_matches_plain)
{
    static const int sides[] = {1, 3, 5, 8, 13, 28}, channels[] = {3, 16}, batches[] = {2, 3, 40};
    size_t s, c, b;
    int mode, cases = 0;
    double worst = 0.0;
    char name[96];
    for (mode = 0; mode < 2; mode++)
        for (s = 0; s < sizeof sides / sizeof sides[0]; s++)
            for (c = 0; c < sizeof channels / sizeof channels[0]; c++)
                for (b = 0; b < sizeof batches / sizeof batches[0]; b++) {
                    cnn_model model;
                    /* two values a channel in training: xhat is +-1 and dx = 0 but for eps, rounding alone */
                    if (mode && sides[s] == 1 && batches[b] == 2) continue;
                    snprintf(name, sizeof name, "batch norm %s on (%d, %d, %d), N %d", mode ? "train" : "eval", channels[c],
                             sides[s], sides[s], batches[b]);
                    cnn_model_init(&model, channels[c], sides[s], sides[s], 3);
                    cnn_add_batch_norm(&model);
                    cases += compare_model_in(&model, batches[b], mode ? CNN_MODE_TRAIN : CNN_MODE_EVAL, WITHIN_ROUNDING, name,
                                              120 + (uint64_t)cases, &worst);
                }
    CHECK(cases == 2 * 6 * 2 * 3 - 2, "%d shapes compared", cases);
    if (getenv("FAST_PATHS_VERBOSE")) printf("    batch norm: %d shapes, worst relative difference %.2e\n", cases, worst);
}

/* A residual block's end with a projection runs it through the fast conv
   (without the stride-1 shifts): y = projection + body the same bits as
   the plain pair's, and the projection's gradients and the skip path's
   input gradient within 1e-5. Bodies of stride 2, 1 (only the channels
   change) and 3 (on 9x10 the smallest stride that maps the sides is 4),
   3, 6 and 16 output channels, a batch of 2 and one of 19 (more than two
   chunks of samples). */
TEST(residual_projection_fast_matches_plain)
{
    static const int shapes[][4] = {{1, 7, 9, 2}, {3, 8, 8, 2}, {13, 21, 23, 2}, {2, 7, 9, 19}, {3, 9, 10, 2}}; /* C, H, W, N */
    static const int bodies[][3] = {{3, 2, 1}, {3, 1, 1}, {3, 3, 0}};                                         /* K, S, P */
    static const int outputs[] = {3, 6, 16};
    size_t z, k, o;
    int cases = 0;
    double worst = 0.0;
    char name[96];
    for (z = 0; z < sizeof shapes / sizeof shapes[0]; z++)
        for (k = 0; k < sizeof bodies / sizeof bodies[0]; k++)
            for (o = 0; o < sizeof outputs / sizeof outputs[0]; o++) {
                const int C = shapes[z][0], H = shapes[z][1], W = shapes[z][2], N = shapes[z][3];
                cnn_model model;
                if (bodies[k][1] == 1 && outputs[o] == C) continue; /* the same shape: no projection */
                if (bodies[k][1] == 3 && z != 4) continue;            /* 1x1 strides map only 9x10 onto 3x3 */
                snprintf(name, sizeof name, "residual (%d, %d, %d), body K%d S%d P%d OC%d, N %d", C, H, W, bodies[k][0],
                         bodies[k][1], bodies[k][2], outputs[o], N);
                cnn_model_init(&model, C, H, W, 4);
                cnn_add_residual_begin(&model);
                cnn_add_conv2d(&model, outputs[o], bodies[k][0], bodies[k][1], bodies[k][2]);
                CHECK(cnn_add_residual_end(&model, CNN_INIT_DEFAULT) == CNN_OK && model.layers[2].weight_count > 0,
                      "%s: no projection: %s", name, model.error.message);
                cases += compare_model(&model, N, 0, name, 160 + (uint64_t)cases, &worst);
            }
    CHECK(cases == 4 * 2 * 3 - 1 + 8, "%d shapes compared", cases); /* stride 1 keeps (3, 8, 8) and (3, 9, 10) with 3 outputs */
    if (getenv("FAST_PATHS_VERBOSE")) printf("    residual end: %d shapes, worst relative difference %.2e\n", cases, worst);
}

/* Max pools with padding and ceil mode, bit for bit: the fast twin must
   take the plain loop for them, since the 2 x 2 vector kernel only knows
   whole windows inside the image (a ceil-mode 2 x 2 pool on an odd side
   has a last window one value wide, which it would read past). */
TEST(padded_and_ceil_max_pools_fast_match_plain)
{
    static const int sides[] = {2, 5, 8, 13, 28}, batches[] = {1, 3};
    static const int pools[][4] = {/* K, S, P, ceil */
                                   {2, 2, 0, 1}, {3, 2, 1, 0}, {3, 2, 1, 1}, {2, 2, 1, 1}, {3, 1, 1, 0}, {2, 2, 0, 0}};
    size_t s, b, p;
    int cases = 0;
    double worst = 0.0;
    char name[96];
    for (s = 0; s < sizeof sides / sizeof sides[0]; s++)
        for (b = 0; b < sizeof batches / sizeof batches[0]; b++)
            for (p = 0; p < sizeof pools / sizeof pools[0]; p++) {
                cnn_model model;
                cnn_layer_desc desc;
                memset(&desc, 0, sizeof desc);
                desc.type = CNN_LAYER_MAX_POOL;
                desc.kernel = pools[p][0];
                desc.stride = pools[p][1];
                desc.padding = pools[p][2];
                desc.ceil_mode = pools[p][3];
                if (sides[s] + 2 * desc.padding < desc.kernel) continue;
                snprintf(name, sizeof name, "max pool %dx%d s%d p%d%s on (3, %d, %d), N %d", desc.kernel, desc.kernel, desc.stride,
                         desc.padding, desc.ceil_mode ? " ceil" : "", sides[s], sides[s], batches[b]);
                cnn_model_init(&model, 3, sides[s], sides[s], 6);
                CHECK(cnn_model_add(&model, &desc) == CNN_OK, "%s: %s", name, model.error.message);
                cases += compare_model(&model, batches[b], 1, name, 200 + (uint64_t)cases, &worst);
            }
    CHECK(cases == 5 * 2 * 6, "%d shapes compared", cases);
}

/* The optimisers' fast pass (threads, vectors) against the plain one, bit
   for bit: SGD with and without momentum and Adam, for 4 steps on a model
   of 4k + 3 parameters, and one above 16,384 parameters, where threads
   share the pass. The dry pass finds the same first bad parameter. */
TEST(optimizer_fast_pass_matches_plain)
{
    static const int widths[] = {37, 300};
    cnn_optimizer_desc desc[3];
    int w, o, step, bad = 0, cases = 0;
    memset(desc, 0, sizeof desc);
    desc[0].type = CNN_OPTIMIZER_SGD;
    desc[1].type = CNN_OPTIMIZER_SGD;
    desc[1].momentum = 0.9f;
    desc[2].type = CNN_OPTIMIZER_ADAM;
    for (w = 0; w < 2; w++)
        for (o = 0; o < 3; o++) {
            cnn_model model[2];
            cnn_optimizer opt[2];
            cnn_rng rng;
            size_t i, count, first[2];
            int t;
            for (t = 0; t < 2; t++) {
                cnn_model_init(&model[t], widths[w], 1, 1, 7);
                cnn_add_dense(&model[t], widths[w] / 5 + 3);
                if (cnn_model_build(&model[t], 1) != CNN_OK || cnn_optimizer_init(&opt[t], &model[t], &desc[o]) != CNN_OK) {
                    CHECK(0, "set-up: %s", model[t].error.message);
                    return;
                }
            }
            count = model[0].param_count;
            cnn_rng_seed(&rng, 99);
            for (step = 1; step <= 4; step++) {
                for (i = 0; i < count; i++)
                    model[0].grads[i] = model[1].grads[i] = (cnn_rng_uniform(&rng) - 0.5f) * powf(10.0f, (float)(i % 7) - 4.0f);
                first[0] = cnn__optimizer_pass(&opt[0], &model[0], step, 0);
                first[1] = cnn__optimizer_pass_fast(&opt[1], &model[1], step, 0);
                bad += first[0] != count || first[1] != count;
                cnn__optimizer_pass(&opt[0], &model[0], step, 1);
                cnn__optimizer_pass_fast(&opt[1], &model[1], step, 1);
                bad += memcmp(model[0].params, model[1].params, count * sizeof(float)) != 0;
                bad += memcmp(opt[0].first_moment, opt[1].first_moment, count * sizeof(float)) != 0;
                if (opt[0].second_moment) bad += memcmp(opt[0].second_moment, opt[1].second_moment, count * sizeof(float)) != 0;
            }
            /* a NaN late in the block, and an infinity after it */
            model[0].grads[count - 9] = model[1].grads[count - 9] = NAN;
            model[0].grads[count - 2] = model[1].grads[count - 2] = INFINITY;
            first[0] = cnn__optimizer_pass(&opt[0], &model[0], 5, 0);
            first[1] = cnn__optimizer_pass_fast(&opt[1], &model[1], 5, 0);
            CHECK(first[0] == count - 9 && first[1] == first[0], "first bad parameter: plain %lu, fast %lu, expected %lu",
                  (unsigned long)first[0], (unsigned long)first[1], (unsigned long)(count - 9));
            cases++;
            for (t = 0; t < 2; t++) {
                cnn_optimizer_free(&opt[t]);
                cnn_model_free(&model[t]);
            }
        }
    CHECK(bad == 0, "%d of the passes differ between the twins", bad);
    CHECK(cases == 6, "%d optimiser cases", cases);
}

/* ---------------------------------------------------------------- special cases inside the twins */

/* ReLU and LeakyReLU, forward and backward, for every count from 0 to 40
   (whole vectors of 8 and every remainder), against the plain formulas. */
TEST(activations_match_the_plain_formulas)
{
    enum { MOST = 40 };
    const float alpha = 0.3f;
    float x[MOST], dy[MOST], y[MOST], dx[MOST];
    cnn_rng rng;
    int count, i, bad = 0;
    cnn_rng_seed(&rng, 5);
    for (count = 0; count <= MOST; count++) {
        fill_awkward(x, count, &rng, 0);
        for (i = 0; i < count; i++) /* nonzero, so that each branch shows */
            dy[i] = (i % 2 ? -1.0f : 1.0f) * (0.5f + cnn_rng_uniform(&rng));
        /* backward reads y, and must give the formula's dx, written with x */
        cnn__relu_forward_fast((size_t)count, x, y);
        for (i = 0; i < count; i++) bad += !same_bits(y[i], x[i] < 0.0f ? 0.0f : x[i]);
        cnn__relu_backward_fast((size_t)count, y, dy, dx);
        for (i = 0; i < count; i++) bad += !same_bits(dx[i], x[i] > 0.0f ? dy[i] : 0.0f);
        cnn__leaky_relu_forward_fast((size_t)count, alpha, x, y);
        for (i = 0; i < count; i++) bad += !same_bits(y[i], x[i] < 0.0f ? alpha * x[i] : x[i]);
        cnn__leaky_relu_backward_fast((size_t)count, alpha, y, dy, dx);
        for (i = 0; i < count; i++) bad += !same_bits(dx[i], x[i] > 0.0f ? dy[i] : alpha * dy[i]);
    }
    CHECK(bad == 0, "%d values differ from the plain formulas", bad);
    /* and a NaN stays a NaN through ReLU, as the divergence checks need */
    x[0] = NAN;
    cnn__relu_forward_fast(9, x, y);
    CHECK(y[0] != y[0], "ReLU(NaN) = %g, expected NaN", (double)y[0]);
}

/* The 2 x 2, stride 2 pool (8 windows at a time) against the plain loop
   for any window, on widths 2 to 21 (odd ones drop their last column) and
   heights 2 to 7, with ties everywhere (small integers) and NaNs: the same
   maxima and the same index for every window. */
TEST(max_pool_2x2_matches_the_plain_loop)
{
    enum { MOST = 21 * 7 };
    float x[MOST], fast_y[MOST], plain_y[MOST];
    int fast_at[MOST], plain_at[MOST];
    cnn_rng rng;
    cnn_layer pool; /* the plain loop reads the window and the sides from the layer */
    int W, H, integers, i, planes = 0, bad = 0;
    memset(&pool, 0, sizeof pool);
    pool.desc.type = CNN_LAYER_MAX_POOL;
    pool.desc.kernel = pool.desc.stride = 2;
    cnn_rng_seed(&rng, 9);
    for (integers = 0; integers <= 1; integers++)
        for (W = 2; W <= 21; W++)
            for (H = 2; H <= 7; H++) {
                const int OH = H / 2, OW = W / 2;
                pool.in.c = pool.out.c = 1;
                pool.in.h = H; pool.in.w = W;
                pool.out.h = OH; pool.out.w = OW;
                fill_awkward(x, H * W, &rng, integers);
#ifdef CNN__SHUFFLES
                cnn__max_pool_plane_2x2(W, OH, OW, x, fast_y, fast_at);
#else
                cnn__max_pool_plane(&pool, x, fast_y, fast_at);
#endif
                cnn__max_pool_plane(&pool, x, plain_y, plain_at);
                for (i = 0; i < OH * OW; i++) bad += !same_bits(fast_y[i], plain_y[i]) || fast_at[i] != plain_at[i];
                planes++;
            }
    CHECK(bad == 0, "%d of the windows of %d planes differ", bad, planes);
}

/* Adam's real pass (4 parameters at a time, then one at a time) against
   the formula, on 4k + 3 parameters for 5 steps, with gradients from 1e-6
   to 1e3 in size. */
TEST(adam_update_matches_the_formula)
{
    enum { COUNT = 4 * 37 + 3 };
    cnn_model model;
    cnn_optimizer adam;
    cnn_rng rng;
    float p[COUNT], m[COUNT], v[COUNT];
    int step, i, bad = 0;
    cnn_model_init(&model, COUNT - 1, 1, 1, 1);
    cnn_add_dense(&model, 1); /* (COUNT - 1) weights and 1 bias */
    if (cnn_model_build(&model, 1) != CNN_OK || cnn_optimizer_init(&adam, &model, NULL) != CNN_OK) {
        CHECK(0, "set-up failed: %s", model.error.message);
        cnn_model_free(&model);
        return;
    }
    CHECK(model.param_count == COUNT, "%lu parameters", (unsigned long)model.param_count);
    cnn_rng_seed(&rng, 3);
    for (i = 0; i < COUNT; i++) p[i] = model.params[i], m[i] = v[i] = 0.0f;
    for (step = 1; step <= 5; step++) {
        const float b1 = adam.desc.beta1, b2 = adam.desc.beta2, eps = adam.desc.epsilon;
        /* the same float constants cnn__adam_constants derives in double */
        const float step_size = (float)(adam.desc.learning_rate / (1.0 - pow(b1, step)));
        const float root_correction2 = (float)sqrt(1.0 - pow(b2, step));
        for (i = 0; i < COUNT; i++)
            model.grads[i] = (cnn_rng_uniform(&rng) - 0.5f) * powf(10.0f, (float)(i % 10) - 6.0f);
        for (i = 0; i < COUNT; i++) {
            const float g = model.grads[i];
            m[i] = b1 * m[i] + (1.0f - b1) * g;
            v[i] = b2 * v[i] + (1.0f - b2) * g * g;
            p[i] = p[i] - step_size * m[i] / (sqrtf(v[i]) / root_correction2 + eps);
        }
        CHECK(cnn_optimizer_step(&adam, &model) == CNN_OK, "step %d: %s", step, model.error.message);
        for (i = 0; i < COUNT; i++)
            bad += !same_bits(model.params[i], p[i]) || !same_bits(adam.first_moment[i], m[i]) ||
                   !same_bits(adam.second_moment[i], v[i]);
    }
    CHECK(bad == 0, "%d of %d values differ from the formula over 5 steps", bad, 5 * COUNT);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
}

/* Adam's dry pass (8 parameters at a time, a group with anything unusual
   again one at a time) finds the first parameter a step would make not
   finite, wherever it lies in or after the groups of 8, and refuses the
   step without changing anything; a parameter that is huge but stays
   finite does not stop the step. */
TEST(adam_check_finds_the_first_bad_parameter)
{
    enum { COUNT = 8 * 9 + 5 };
    static const int places[] = {0, 1, 7, 8, 13, 15, 16, 40, 71, 72, 75, COUNT - 1};
    static const float bad_grads[] = {NAN, INFINITY, -INFINITY, 1e30f}; /* 1e30^2 overflows v */
    cnn_model model;
    cnn_optimizer adam;
    float before[COUNT];
    char expected[64];
    int place, kind, i, wrong = 0, cases = 0;
    cnn_model_init(&model, COUNT - 1, 1, 1, 1);
    cnn_add_dense(&model, 1);
    if (cnn_model_build(&model, 1) != CNN_OK || cnn_optimizer_init(&adam, &model, NULL) != CNN_OK) {
        CHECK(0, "set-up failed: %s", model.error.message);
        cnn_model_free(&model);
        return;
    }
    for (place = 0; place < (int)(sizeof places / sizeof places[0]); place++)
        for (kind = 0; kind < (int)(sizeof bad_grads / sizeof bad_grads[0]); kind++) {
            const int at = places[place];
            for (i = 0; i < COUNT; i++) model.grads[i] = 0.001f * (float)(i % 7 - 3);
            model.grads[at] = bad_grads[kind];
            if (at + 3 < COUNT) model.grads[at + 3] = NAN; /* a later one must not be the one reported */
            memcpy(before, model.params, sizeof before);
            snprintf(expected, sizeof expected, "parameter %d (", at);
            cases++;
            if (cnn_optimizer_step(&adam, &model) != CNN_ERROR_NOT_FINITE || !strstr(model.error.message, expected) ||
                memcmp(before, model.params, sizeof before) != 0) {
                if (wrong++ == 0) printf("    bad gradient %g at %d: \"%s\"\n", (double)bad_grads[kind], at, model.error.message);
            }
        }
    CHECK(wrong == 0, "%d of %d steps with a bad gradient went wrong", wrong, cases);
    /* huge parameters (past the shortcut's bound) that stay finite */
    for (i = 0; i < COUNT; i++) model.grads[i] = 0.001f;
    model.params[9] = FLT_MAX / 2.0f;
    model.params[COUNT - 2] = -FLT_MAX;
    CHECK(cnn_optimizer_step(&adam, &model) == CNN_OK, "a finite step was refused: %s", model.error.message);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
}

/* A dense layer's forward pass on fewer than CNN__MR samples (one sample at
   a time through w) gives the bits the multiply gives for the same sample
   in a batch of 8, for widths that leave every kind of last block. */
TEST(dense_on_few_samples_matches_the_batch)
{
    static const int outs[] = {1, 7, 8, 9, 47, 63, 64, 65, 84, 120, 130};
    enum { IN = 37, BATCH = 8 };
    float x[BATCH * IN], batch_y[BATCH * 130];
    cnn_rng rng;
    int o, n, few, i, bad = 0;
    cnn_rng_seed(&rng, 11);
    fill_awkward(x, BATCH * IN, &rng, 0);
    for (i = 0; i < BATCH * IN; i++) /* finite inputs: a NaN would only make the products NaN alike */
        if (!(fabsf(x[i]) <= 10.0f)) x[i] = 0.5f;
    for (o = 0; o < (int)(sizeof outs / sizeof outs[0]); o++) {
        const int OUT = outs[o];
        cnn_model model;
        cnn_model_init(&model, IN, 1, 1, (uint64_t)OUT);
        cnn_add_flatten(&model);
        cnn_add_dense(&model, OUT);
        if (cnn_model_build(&model, BATCH) != CNN_OK || (set_kernel(&model), 0) ||
            cnn_model_forward(&model, x, BATCH, CNN_MODE_EVAL) != CNN_OK) {
            CHECK(0, "dense %d: %s", OUT, model.error.message);
            cnn_model_free(&model);
            continue;
        }
        for (i = 0; i < model.layer_count; i++) /* nonzero biases, so that adding them shows */
            if (model.layers[i].bias_count)
                for (n = 0; n < OUT; n++) model.layers[i].bias[n] = 0.25f * (float)(n % 5) - 0.5f;
        cnn_model_forward(&model, x, BATCH, CNN_MODE_EVAL);
        memcpy(batch_y, cnn_model_output(&model), (size_t)(BATCH * OUT) * sizeof(float));
        for (few = 1; few < CNN__MR; few++)
            for (n = 0; n + few <= BATCH; n += few) {
                const float *y;
                cnn_model_forward(&model, x + n * IN, few, CNN_MODE_EVAL);
                y = cnn_model_output(&model);
                for (i = 0; i < few * OUT; i++) bad += !same_bits(y[i], batch_y[n * OUT + i]);
            }
        cnn_model_free(&model);
    }
    CHECK(bad == 0, "%d outputs differ from the batch's (kernel %s)", bad, cnn__isa_name(kernel_under_test < 0 ? widest_kernel() : kernel_under_test));
}

/* Packing B = X^T (X's rows are runs, so B's columns are): the 8 x 8
   transposes give B's panels in the layout the kernel reads, NR columns
   per row of the panel and zeros past N, for sizes that leave every kind
   of remainder, from rows with a gap between them. */
TEST(transposing_pack_matches_the_layout)
{
    static const int ks[] = {1, 7, 8, 9, 16, 17, 33};
    static const int ns[] = {1, 5, 6, 8, 9, 15, 16, 17, 31, 33};
    enum { MOST_K = 33, MOST_N = 33, GAP = 3 };
    float x[MOST_N * (MOST_K + GAP)], packed[((MOST_N + CNN__NR - 1) / CNN__NR) * CNN__NR * MOST_K];
    cnn_rng rng;
    int a, b, k, q, r, bad = 0;
    cnn_rng_seed(&rng, 13);
    fill_awkward(x, (int)(sizeof x / sizeof x[0]), &rng, 0);
    for (a = 0; a < (int)(sizeof ks / sizeof ks[0]); a++)
        for (b = 0; b < (int)(sizeof ns / sizeof ns[0]); b++) {
            const int K = ks[a], N = ns[b], stride = K + GAP;
            cnn__pack_b(K, N, x, 1, (size_t)stride, packed, 1); /* B[k][j] = x[j * stride + k] */
            for (q = 0; q * CNN__NR < N; q++)
                for (k = 0; k < K; k++)
                    for (r = 0; r < CNN__NR; r++) {
                        const int j = q * CNN__NR + r;
                        bad += !same_bits(packed[((size_t)q * K + k) * CNN__NR + r], j < N ? x[j * stride + k] : 0.0f);
                    }
        }
    CHECK(bad == 0, "%d packed values out of place", bad);
}

/* Moving the random stream on by n draws at once lands where n draws one
   after another do, for n from 0 to 70 and some large n, and a dropout
   mask drawn in blocks (as threads draw it, 7 of them for 196,613 values;
   here the blocks run one after the other) is the mask drawn in one go, with the stream left one draw
   per value on. */
TEST(dropout_in_blocks_draws_the_same_mask)
{
    enum { COUNT = 3 * 65536 + 5 };
    static const uint64_t far[] = {1000, 65536, 123457, 1000003};
    float *x = (float *)malloc(COUNT * sizeof(float)), *y[2];
    unsigned char *mask[2];
    cnn_rng stepped, jumped, rng[2];
    int threads, bad = 0;
    uint64_t n, i;
    size_t k;
    for (n = 0; n < 70 + sizeof far / sizeof far[0]; n++) {
        const uint64_t steps = n < 70 ? n : far[n - 70];
        cnn_rng_seed(&stepped, 5 + n);
        jumped = stepped;
        for (i = 0; i < steps; i++) cnn_rng_next(&stepped);
        cnn__rng_advance(&jumped, steps);
        bad += stepped.state != jumped.state || stepped.increment != jumped.increment;
    }
    CHECK(bad == 0, "%d jumps ahead land elsewhere than the steps", bad);
    if (!x) return;
    for (k = 0; k < COUNT; k++) x[k] = (float)k;
    for (threads = 1; threads <= 2; threads++) {
        y[threads - 1] = (float *)malloc(COUNT * sizeof(float));
        mask[threads - 1] = (unsigned char *)malloc(COUNT);
        cnn_rng_seed(&rng[threads - 1], 77);
        if (y[threads - 1] && mask[threads - 1])
            cnn__dropout_forward_fast(COUNT, 0.3f, x, y[threads - 1], mask[threads - 1], &rng[threads - 1], threads);
    }
    if (y[0] && y[1] && mask[0] && mask[1]) {
        CHECK(cnn__elementwise_blocks(COUNT, 2) == 7, "the mask is not split in 7 blocks of at most 32,768 values");
        CHECK(memcmp(mask[0], mask[1], COUNT) == 0 && memcmp(y[0], y[1], COUNT * sizeof(float)) == 0,
              "the mask drawn in two blocks differs from the one drawn in one");
        cnn_rng_seed(&stepped, 77);
        for (k = 0; k < COUNT; k++) cnn_rng_next(&stepped);
        CHECK(rng[0].state == stepped.state && rng[1].state == stepped.state,
              "the stream is not left %d draws on, as one draw per value leaves it", COUNT);
    }
    for (threads = 0; threads < 2; threads++) {
        free(y[threads]);
        free(mask[threads]);
    }
    free(x);
}


/* The avx2 and avx512 kernels add the same products in the same order with
   the same rounding, so cnn__gemm gives the same bits with either, and
   both within 1e-5 of a sum in doubles: on every kind of B the layers use
   (packed; read in place with a packed last panel; rows at offsets, as
   the stride-1 conv reads its input), for sizes that leave every
   remainder of the 6-row panel and the 16- and 32-column tiles, storing
   into C and adding to it. */
TEST(fused_kernels_give_the_same_bits)
{
    static const int ms[] = {1, 5, 6, 7, 13, 16}, ns[] = {1, 15, 16, 17, 31, 32, 33, 48, 70}, ks[] = {1, 3, 9, 40};
    enum { MOST_M = 16, MOST_N = 70, MOST_K = 40 };
    static float a[MOST_M * MOST_K], b[MOST_K * MOST_N + 2 * CNN__NR], start[MOST_M * MOST_N], c[2][MOST_M * MOST_N];
    static float packed_a[((MOST_M + CNN__MR - 1) / CNN__MR) * CNN__MR * MOST_K];
    static float packed_b[((MOST_N + CNN__NR - 1) / CNN__NR) * CNN__NR * MOST_K], edge[CNN__NR * MOST_K];
    static int rows[MOST_K];
    size_t mi, ni, ki;
    int kind, accumulate, isa, i, j, k, cases = 0, bad = 0, far = 0;
    double worst = 0.0;
    cnn_rng rng;
    cnn_rng_seed(&rng, 17);
    test_fill_uniform(&rng, a, MOST_M * MOST_K, -1.0f, 1.0f);
    test_fill_uniform(&rng, b, MOST_K * MOST_N + 2 * CNN__NR, -1.0f, 1.0f);
    test_fill_uniform(&rng, start, MOST_M * MOST_N, -1.0f, 1.0f);
    for (mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
        for (ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                for (kind = 0; kind < 3; kind++)
                    for (accumulate = 0; accumulate < 2; accumulate++) {
                        const int M = ms[mi], N = ns[ni], K = ks[ki];
                        cnn__matrix_b matrix_b;
                        cnn__pack_a(M, K, a, (size_t)K, 1, packed_a, 1);
                        if (kind == 0) {
                            cnn__pack_b(K, N, b, (size_t)N, 1, packed_b, 1);
                            matrix_b = cnn__b_packed(K, packed_b);
                        } else if (kind == 1) {
                            matrix_b = cnn__b_in_place(K, N, b, (size_t)N, edge);
                        } else {
                            for (k = 0; k < K; k++) rows[k] = k * N; /* the last panel reads past row K - 1: b has room */
                            matrix_b = cnn__b_shifted(b, rows);
                        }
                        for (isa = 0; isa < 2; isa++) {
                            memcpy(c[isa], start, sizeof start);
                            cnn__gemm(M, N, K, cnn__a_packed(K, packed_a), matrix_b, c[isa], N, accumulate, 1,
                                      isa ? CNN__ISA_AVX512 : CNN__ISA_AVX2);
                        }
                        bad += memcmp(c[0], c[1], (size_t)(M * N) * sizeof(float)) != 0;
                        for (i = 0; i < M; i++)
                            for (j = 0; j < N; j++) {
                                double sum = accumulate ? start[i * N + j] : 0.0, e;
                                for (k = 0; k < K; k++) sum += (double)a[i * K + k] * b[k * N + j];
                                e = fabs(c[1][i * N + j] - sum) / (double)K; /* |products| < 1: K bounds the sum */
                                if (e > worst) worst = e;
                                far += e > 1e-5;
                            }
                        cases++;
                    }
    CHECK(bad == 0, "%d of %d multiplies differ between the avx2 and avx512 kernels", bad, cases);
    CHECK(far == 0, "%d values further than 1e-5 from the sums in doubles (worst %.3g)", far, worst);
}

/* CNN_MAX_ISA caps the kernel a model picks at build (sse2, avx2, avx512:
   the lower of the cap and what the CPU runs), and another value makes
   the build fail with a message that names the variable. */
TEST(max_isa_caps_the_kernel)
{
    static const char *const caps[] = {"sse2", "avx2", "avx512"};
    const char *outside = getenv("CNN_MAX_ISA");
    char saved[64] = "";
    cnn_model model;
    int machine, cap;
    if (outside) snprintf(saved, sizeof saved, "%s", outside);
    unsetenv("CNN_MAX_ISA");
    machine = widest_kernel();
    for (cap = CNN__ISA_GENERIC; cap <= CNN__ISA_AVX512; cap++) {
        const char *want = cnn__isa_name(cap < machine ? cap : machine);
        setenv("CNN_MAX_ISA", caps[cap], 1);
        cnn_model_init(&model, 4, 1, 1, 1);
        cnn_add_dense(&model, 3);
        CHECK(cnn_model_build(&model, 2) == CNN_OK, "CNN_MAX_ISA=%s: %s", caps[cap], model.error.message);
        CHECK(strcmp(cnn_model_instruction_set(&model), want) == 0, "CNN_MAX_ISA=%s gave the %s kernel, expected %s", caps[cap],
              cnn_model_instruction_set(&model), want);
        cnn_model_free(&model);
    }
    setenv("CNN_MAX_ISA", "avx1024", 1);
    cnn_model_init(&model, 4, 1, 1, 1);
    cnn_add_dense(&model, 3);
    CHECK(cnn_model_build(&model, 2) == CNN_ERROR_INVALID_ARGUMENT && strstr(model.error.message, "CNN_MAX_ISA") &&
              strstr(model.error.message, "avx1024"),
          "CNN_MAX_ISA=avx1024 was not refused with a message: '%s'", model.error.message);
    CHECK(strcmp(cnn_model_instruction_set(&model), "plain") == 0, "a model whose build failed reports '%s'",
          cnn_model_instruction_set(&model));
    cnn_model_free(&model);
    if (outside) setenv("CNN_MAX_ISA", saved, 1);
    else unsetenv("CNN_MAX_ISA");
}

#endif /* CNN_NO_FAST */

#ifdef CNN_NO_FAST
#define RUN_FAST(name) RUN_SKIPPED(name, "built with CNN_NO_FAST: there is no FAST section")
#else
#define RUN_FAST(name) RUN(name)
#endif

int main(void)
{
#ifndef CNN_NO_FAST
    /* the layers that multiply, with each kernel this machine runs */
    const int widest = widest_kernel();
    for (kernel_under_test = CNN__ISA_GENERIC; kernel_under_test <= widest; kernel_under_test++) {
        printf("-- the %s kernel\n", cnn__isa_name(kernel_under_test));
        RUN(conv2d_fast_matches_plain);
        RUN(dense_fast_matches_plain);
        RUN(residual_projection_fast_matches_plain);
        RUN(dense_on_few_samples_matches_the_batch);
    }
    kernel_under_test = -1;
    printf("-- the model's own choice\n");
    if (widest == CNN__ISA_AVX512) RUN(fused_kernels_give_the_same_bits);
    else RUN_SKIPPED(fused_kernels_give_the_same_bits, "no AVX-512 here (or CNN_MAX_ISA caps it): one fused kernel only");
    RUN(max_isa_caps_the_kernel);
#else
    RUN_FAST(conv2d_fast_matches_plain);
    RUN_FAST(dense_fast_matches_plain);
    RUN_FAST(residual_projection_fast_matches_plain);
    RUN_FAST(dense_on_few_samples_matches_the_batch);
    RUN_FAST(fused_kernels_give_the_same_bits);
    RUN_FAST(max_isa_caps_the_kernel);
#endif
    RUN_FAST(elementwise_and_pooling_fast_match_plain);
    RUN_FAST(batch_norm_fast_matches_plain);
    RUN_FAST(padded_and_ceil_max_pools_fast_match_plain);
    RUN_FAST(optimizer_fast_pass_matches_plain);
    RUN_FAST(activations_match_the_plain_formulas);
    RUN_FAST(max_pool_2x2_matches_the_plain_loop);
    RUN_FAST(adam_update_matches_the_formula);
    RUN_FAST(adam_check_finds_the_first_bad_parameter);
    RUN_FAST(transposing_pack_matches_the_layout);
    RUN_FAST(dropout_in_blocks_draws_the_same_mask);
    return test_report();
}
