/* test_gradients.c - finite-difference checks of every layer's backward pass.

   For each layer type we build a small model, fill its weights, biases and
   input with seeded random values, and compare the analytic gradients of a
   scalar L with central differences

       dL/dt  ~  (L(t + h) - L(t - h)) / ((t + h) - (t - h))

   for every input value t and every weight and bias. L is

     - for a lone layer:  L = sum_i output_i * R_i for a fixed random R, so
       dL/doutput = R, fed in through cnn_model_backward_from;
     - for a model ending in softmax with labels: the mean cross-entropy of
       cnn_model_loss, differentiated by cnn_model_backward (the fused
       softmax + cross-entropy gradient).

   HOW BIG h, HOW LOOSE THE TOLERANCE
   The forward passes are float32 (relative rounding u = 6e-8 per operation);
   only the sum L = sum output * R and the difference quotient are formed in
   double. Two errors compete in the quotient:
     - truncation, h^2 / 6 * |d3L/dt3|: zero for layers that are linear in
       the value being perturbed (conv, dense, pools, flatten, dropout, ReLU
       away from 0), about 1e-5 for sigmoid / tanh / softmax at h = 1e-2;
     - rounding: each L carries an absolute error of about u times the sum of
       the magnitudes of everything added up on the way (~1e-6 here), which
       divided by 2h becomes ~5e-5 at h = 1e-2, 2.5e-4 at h = 2e-3.
   h = 1e-2 balances the two (measured: the largest |analytic - numeric| of
   any check is 1e-4, on gradients of size ~0.1-1, and 6e-5 on small ones;
   at h = 2e-3 rounding alone already fails the 150-input dense layer).
   The difference is divided by the step actually taken, (float)(t + h) -
   (float)(t - h), not by 2h, so the rounding of t + h to float costs nothing.
   We measure
       err = |a - n| / max(|a| + |n|, GRAD_FLOOR),   GRAD_FLOOR = 2e-2,
   and require err <= GRAD_TOL = 1e-2: a 1% relative error for gradients of
   useful size, and an absolute error of at most 2e-4 for gradients near 0,
   where a relative error would only measure rounding noise (a gradient that
   is exactly 0, such as a max-pool loser's, is matched exactly). The worst
   err measured is 3e-3 (the network's input gradient), so the limit has 3x
   headroom for other compilers and flags, while a real mistake (a wrong
   index, a missing term, a factor of 2, a flipped kernel) gives err ~ 0.1-1.

   KINKS
   ReLU and LeakyReLU have a kink at 0 and max-pool one wherever two values of
   a window tie. A central difference across a kink is wrong, so inputs of
   those layers are kept far from them: ReLU inputs are at least 5h away from
   0, and max-pool inputs are a random permutation of a grid with spacing 5h,
   so no perturbation of size h can change which value of a window is largest.
   In the whole network the ReLU and pool inputs are computed, so there the
   test checks (and reports) that every one of them is farther from a kink
   than any single perturbation of size h can move it.

   Set GRADCHECK_VERBOSE=1 in the environment to print the worst error of
   every check, passing or not. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#ifndef GRAD_H
#define GRAD_H 1e-2      /* finite-difference step, see above */
#endif
#define GRAD_FLOOR 2e-2  /* below this |a| + |n| the error is absolute */
#define GRAD_TOL 1e-2    /* largest accepted err */

static int verbose(void)
{
    const char *v = getenv("GRADCHECK_VERBOSE");
    return v && *v && *v != '0';
}

/* ---------------------------------------------------------------- random fills */

/* Uniform in [-1, 1] but never closer than margin to 0: values that fall
   inside are resampled. For ReLU / LeakyReLU inputs. */
static void fill_away_from_zero(cnn_rng *rng, float *x, size_t n, float margin)
{
    size_t i;
    for (i = 0; i < n; i++) {
        do x[i] = 2.0f * cnn_rng_uniform(rng) - 1.0f;
        while (fabsf(x[i]) < margin);
    }
}

/* A random permutation of the grid (k - n/2 + 0.5) * spacing, k = 0..n-1:
   every two values differ by at least spacing and none is within
   spacing / 2 of 0. For max-pool inputs (no ties) and ReLU inputs. */
static void fill_distinct(cnn_rng *rng, float *x, size_t n, float spacing)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] = ((float)i - (float)(n / 2) + 0.5f) * spacing;
    for (i = n - 1; i > 0; i--) { /* Fisher-Yates */
        size_t j = cnn_rng_below(rng, (uint32_t)i + 1u);
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* Weights uniform in [-1, 1], biases uniform in +-[0.1, 1]: never zero, so
   a backward pass that forgets the bias somewhere cannot hide. */
static void fill_params(cnn_model *model, cnn_rng *rng)
{
    int i;
    size_t k;
    for (i = 0; i < model->layer_count; i++) {
        cnn_layer *layer = &model->layers[i];
        test_fill_uniform(rng, layer->weight, layer->weight_count, -1.0f, 1.0f);
        for (k = 0; k < layer->bias_count; k++) {
            float magnitude = 0.1f + 0.9f * cnn_rng_uniform(rng);
            layer->bias[k] = cnn_rng_uniform(rng) < 0.5f ? -magnitude : magnitude;
        }
    }
}

/* ---------------------------------------------------------------- the checker */

/* The scalar being differentiated and everything needed to recompute it. */
typedef struct objective {
    cnn_model *model;
    float *x;             /* (batch, input shape), perturbed in place */
    int batch;
    cnn_mode mode;
    const float *R;       /* (batch, output shape): L = sum output * R; or NULL */
    const int *labels;    /* when R is NULL: L = mean cross-entropy */
    cnn_rng rng;          /* model.rng before the first forward pass */
} objective;

/* One forward pass and L. The model's RNG is rewound first, so a dropout
   layer draws the same mask in every pass. */
static double objective_value(objective *o)
{
    cnn_model *model = o->model;
    model->rng = o->rng;
    if (cnn_model_forward(model, o->x, o->batch, o->mode) != CNN_OK) {
        printf("    forward failed: %s\n", model->error.message);
        return NAN;
    }
    if (o->R) {
        const float *out = cnn_model_output(model);
        size_t n = (size_t)o->batch * cnn_shape_count(cnn_model_output_shape(model)), i;
        double sum = 0.0;
        for (i = 0; i < n; i++) sum += (double)out[i] * (double)o->R[i];
        return sum;
    } else {
        float loss = NAN;
        if (cnn_model_loss(model, o->labels, &loss, NULL) != CNN_OK) printf("    loss failed: %s\n", model->error.message);
        return (double)loss;
    }
}

/* Forward, zero the gradients, backward: model.grads and
   model.activation_grads[0] then hold the analytic gradients of L. */
static void objective_backward(objective *o)
{
    cnn_result result;
    objective_value(o);
    cnn_model_zero_grad(o->model);
    result = o->R ? cnn_model_backward_from(o->model, o->R) : cnn_model_backward(o->model, o->labels);
    if (result != CNN_OK) printf("    backward failed: %s\n", o->model->error.message);
}

static double grad_error(double analytic, double numeric)
{
    double scale = fabs(analytic) + fabs(numeric);
    return fabs(analytic - numeric) / (scale > GRAD_FLOOR ? scale : GRAD_FLOOR);
}

/* Compares analytic[i] with the central difference of L in values[i], for
   count values. Returns the worst error; fails the test above tol. */
static double check_values(objective *o, float *values, const float *analytic, size_t count, double h, double tol,
                           const char *test, const char *what)
{
    double worst = 0.0, worst_a = 0.0, worst_n = 0.0, worst_abs = 0.0;
    size_t i, worst_i = 0;
    for (i = 0; i < count; i++) {
        const float saved = values[i];
        const float up = (float)((double)saved + h), down = (float)((double)saved - h);
        double plus, minus, numeric, err;
        values[i] = up;
        plus = objective_value(o);
        values[i] = down;
        minus = objective_value(o);
        values[i] = saved;
        numeric = (plus - minus) / ((double)up - (double)down);
        err = grad_error(analytic[i], numeric);
        if (fabs(analytic[i] - numeric) > worst_abs) worst_abs = fabs(analytic[i] - numeric);
        if (i == 0 || err > worst || err != err) {
            worst = err;
            worst_i = i;
            worst_a = analytic[i];
            worst_n = numeric;
        }
    }
    CHECK(worst <= tol, "%s %s: worst error %.3g > %.3g at [%lu]: analytic %.8g, numeric %.8g", test, what, worst, tol,
          (unsigned long)worst_i, worst_a, worst_n);
    if (verbose())
        printf("    %-30s %-16s %5lu values, worst error %.2e (analytic %.6g, numeric %.6g), largest |a - n| %.1e\n",
               test, what, (unsigned long)count, worst, worst_a, worst_n, worst_abs);
    return worst;
}

/* Checks d L / d input and d L / d every weight and bias of the model.
   model.rng at the call is the RNG state every forward pass starts from. */
static double check_model(cnn_model *model, float *x, int batch, cnn_mode mode, const float *R, const int *labels,
                          double h, double tol, const char *test)
{
    objective o;
    size_t in_count = (size_t)batch * cnn_shape_count(model->input);
    float *input_grad = (float *)malloc(in_count * sizeof(float));
    float *param_grad = (float *)malloc((model->param_count ? model->param_count : 1) * sizeof(float));
    double worst = 0.0, err;
    int i;
    char what[64];
    o.model = model; o.x = x; o.batch = batch; o.mode = mode; o.R = R; o.labels = labels; o.rng = model->rng;

    objective_backward(&o);
    memcpy(input_grad, model->activation_grads[0].data, in_count * sizeof(float));
    if (model->param_count) memcpy(param_grad, model->grads, model->param_count * sizeof(float));

    err = check_values(&o, x, input_grad, in_count, h, tol, test, "d/d input");
    if (err > worst || err != err) worst = err;
    for (i = 0; i < model->layer_count; i++) {
        cnn_layer *layer = &model->layers[i];
        if (!layer->weight_count) continue;
        snprintf(what, sizeof what, "d/d weight[%d]", i);
        err = check_values(&o, layer->weight, param_grad + layer->param_offset, layer->weight_count, h, tol, test, what);
        if (err > worst || err != err) worst = err;
        snprintf(what, sizeof what, "d/d bias[%d]", i);
        err = check_values(&o, layer->bias, param_grad + layer->param_offset + layer->weight_count, layer->bias_count, h,
                           tol, test, what);
        if (err > worst || err != err) worst = err;
    }
    free(input_grad);
    free(param_grad);
    return worst;
}

/* How an input is filled before a check. */
typedef enum fill_kind { FILL_UNIFORM, FILL_AWAY_FROM_ZERO, FILL_DISTINCT, FILL_WIDE } fill_kind;

/* Builds nothing, fills no parameter: fills x (batch, input shape) and R
   (batch, output shape) of a built model from rng, then checks it with
   L = sum output * R. */
static double check_with_R_as_is(cnn_model *model, int batch, cnn_mode mode, fill_kind fill, cnn_rng *rng, const char *test)
{
    size_t in_count = (size_t)batch * cnn_shape_count(model->input);
    size_t out_count = (size_t)batch * cnn_shape_count(cnn_model_output_shape(model));
    float *x = (float *)malloc(in_count * sizeof(float));
    float *R = (float *)malloc(out_count * sizeof(float));
    double worst;
    switch (fill) {
    case FILL_UNIFORM: test_fill_uniform(rng, x, in_count, -1.0f, 1.0f); break;
    case FILL_WIDE: test_fill_uniform(rng, x, in_count, -3.0f, 3.0f); break;
    /* margin 5h: a step of h never reaches the kink at 0 */
    case FILL_AWAY_FROM_ZERO: fill_away_from_zero(rng, x, in_count, (float)(5 * GRAD_H)); break;
    /* spacing 5h: a step of h never reorders two values (they stay >= 3h apart) */
    case FILL_DISTINCT: fill_distinct(rng, x, in_count, (float)(5 * GRAD_H)); break;
    }
    test_fill_uniform(rng, R, out_count, -1.0f, 1.0f);
    worst = check_model(model, x, batch, mode, R, NULL, GRAD_H, GRAD_TOL, test);
    free(x);
    free(R);
    return worst;
}

/* The same after filling the parameters (fill_params). */
static double check_with_R(cnn_model *model, int batch, cnn_mode mode, fill_kind fill, cnn_rng *rng, const char *test)
{
    fill_params(model, rng);
    return check_with_R_as_is(model, batch, mode, fill, rng, test);
}

/* Builds a model whose layers were added, reporting failures. */
static int build(cnn_model *model, int max_batch, const char *test)
{
    cnn_result result = cnn_model_build(model, max_batch);
    CHECK(result == CNN_OK, "%s: build failed: %s", test, model->error.message);
    return result == CNN_OK;
}

/* ---------------------------------------------------------------- conv2d */

typedef struct conv_case {
    int c, h, w, filters, kernel, stride, padding, batch;
} conv_case;

/* Input, weight and bias gradients of conv2d on shapes that cover 1 and 3
   input channels, stride 1 and 2, padding 0, 1 and 2 (including padding
   wider than the kernel reaches, where outputs see only the bias), kernel
   1, 3 and 5, non-square inputs and batches of 2 and 3, and strides that
   do not tile the input (the output side is floored, as PyTorch's). */
TEST(conv2d_gradients)
{
    static const conv_case cases[] = {
        /* C   H  W  OC  K  S  P  N */
        {1, 6, 8, 2, 3, 1, 1, 2},
        {3, 7, 9, 4, 3, 2, 1, 3},
        {3, 5, 7, 2, 5, 1, 2, 2},
        {1, 7, 5, 3, 5, 2, 0, 2},
        {3, 4, 6, 2, 1, 1, 0, 2},
        {2, 5, 7, 2, 1, 2, 2, 3},
        {1, 9, 7, 2, 3, 2, 0, 3},
        {3, 6, 5, 3, 3, 1, 0, 2},
        {1, 5, 7, 2, 3, 1, 1, 10}, /* more than one CNN__CHUNK of samples */
        {1, 8, 8, 2, 3, 2, 0, 2},  /* 8 - 3 = 5 is odd: the last row and column feed nothing */
        {2, 6, 9, 3, 3, 2, 1, 2},  /* 6 + 2 - 3 = 5, floored to 2 steps */
    };
    size_t k;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const conv_case *t = &cases[k];
        cnn_model model;
        cnn_rng rng;
        char name[80];
        snprintf(name, sizeof name, "conv C%d %dx%d OC%d K%d S%d P%d N%d", t->c, t->h, t->w, t->filters, t->kernel,
                 t->stride, t->padding, t->batch);
        cnn_model_init(&model, t->c, t->h, t->w, 1);
        cnn_add_conv2d(&model, t->filters, t->kernel, t->stride, t->padding);
        if (build(&model, t->batch, name)) {
            cnn_rng_seed(&rng, 100 + k);
            check_with_R(&model, t->batch, CNN_MODE_EVAL, FILL_UNIFORM, &rng, name);
        }
        cnn_model_free(&model);
    }
}

/* ---------------------------------------------------------------- dense */

/* Dense on a flat input, on a flattened image (flatten -> dense), and with
   more than 128 inputs (the GEMM's depth panel) checks x, w (IN, OUT), b. */
TEST(dense_gradients)
{
    cnn_model model;
    cnn_rng rng;
    cnn_rng_seed(&rng, 200);

    cnn_model_init(&model, 7, 1, 1, 1);
    cnn_add_dense(&model, 5);
    if (build(&model, 3, "dense 7->5")) check_with_R(&model, 3, CNN_MODE_EVAL, FILL_UNIFORM, &rng, "dense 7->5");
    cnn_model_free(&model);

    cnn_model_init(&model, 2, 3, 3, 1);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 4);
    if (build(&model, 2, "flatten->dense 18->4"))
        check_with_R(&model, 2, CNN_MODE_EVAL, FILL_UNIFORM, &rng, "flatten->dense 18->4");
    cnn_model_free(&model);

    cnn_model_init(&model, 150, 1, 1, 1);
    cnn_add_dense(&model, 6);
    if (build(&model, 2, "dense 150->6")) check_with_R(&model, 2, CNN_MODE_EVAL, FILL_UNIFORM, &rng, "dense 150->6");
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- activations */

/* ReLU and LeakyReLU (alpha 0.3) on inputs at least 5h from the kink at 0;
   sigmoid and tanh on inputs in [-3, 3], where they curve the most. */
TEST(activation_gradients)
{
    cnn_model model;
    cnn_rng rng;
    cnn_rng_seed(&rng, 300);

    cnn_model_init(&model, 2, 3, 4, 1);
    cnn_add_relu(&model);
    if (build(&model, 2, "relu")) check_with_R(&model, 2, CNN_MODE_EVAL, FILL_AWAY_FROM_ZERO, &rng, "relu");
    cnn_model_free(&model);

    cnn_model_init(&model, 2, 3, 4, 1);
    cnn_add_leaky_relu(&model, 0.3f);
    if (build(&model, 2, "leaky_relu 0.3"))
        check_with_R(&model, 2, CNN_MODE_EVAL, FILL_AWAY_FROM_ZERO, &rng, "leaky_relu 0.3");
    cnn_model_free(&model);

    cnn_model_init(&model, 2, 3, 4, 1);
    cnn_add_sigmoid(&model);
    if (build(&model, 2, "sigmoid")) check_with_R(&model, 2, CNN_MODE_EVAL, FILL_WIDE, &rng, "sigmoid");
    cnn_model_free(&model);

    cnn_model_init(&model, 2, 3, 4, 1);
    cnn_add_tanh(&model);
    if (build(&model, 2, "tanh")) check_with_R(&model, 2, CNN_MODE_EVAL, FILL_WIDE, &rng, "tanh");
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- pooling */

typedef struct pool_case {
    int c, h, w, size, stride, batch;
} pool_case;

static const pool_case pool_cases[] = {
    /* C  H  W  K  S  N */
    {2, 4, 6, 2, 2, 2}, /* tiling windows */
    {2, 5, 7, 2, 2, 2}, /* the last row and column belong to no window */
    {2, 7, 5, 3, 2, 2}, /* overlapping 3x3 windows, stride 2 */
    {1, 9, 7, 3, 2, 3},
};

/* Max pool on tie-free inputs (a permuted grid of spacing 5h), and average
   pool, in tiling and overlapping windows, including inputs no window reads
   (their gradient must be exactly 0, and is). */
TEST(pool_gradients)
{
    size_t k;
    for (k = 0; k < sizeof pool_cases / sizeof pool_cases[0]; k++) {
        const pool_case *t = &pool_cases[k];
        cnn_model model;
        cnn_rng rng;
        char name[80];
        cnn_rng_seed(&rng, 400 + k);

        snprintf(name, sizeof name, "max_pool %d/%d on %dx%dx%d", t->size, t->stride, t->c, t->h, t->w);
        cnn_model_init(&model, t->c, t->h, t->w, 1);
        cnn_add_max_pool(&model, t->size, t->stride);
        if (build(&model, t->batch, name)) check_with_R(&model, t->batch, CNN_MODE_EVAL, FILL_DISTINCT, &rng, name);
        cnn_model_free(&model);

        snprintf(name, sizeof name, "avg_pool %d/%d on %dx%dx%d", t->size, t->stride, t->c, t->h, t->w);
        cnn_model_init(&model, t->c, t->h, t->w, 1);
        cnn_add_avg_pool(&model, t->size, t->stride);
        if (build(&model, t->batch, name)) check_with_R(&model, t->batch, CNN_MODE_EVAL, FILL_UNIFORM, &rng, name);
        cnn_model_free(&model);
    }
}

/* ---------------------------------------------------------------- flatten, dropout */

TEST(flatten_gradients)
{
    cnn_model model;
    cnn_rng rng;
    cnn_rng_seed(&rng, 500);
    cnn_model_init(&model, 2, 3, 4, 1);
    cnn_add_flatten(&model);
    if (build(&model, 2, "flatten")) check_with_R(&model, 2, CNN_MODE_EVAL, FILL_UNIFORM, &rng, "flatten");
    cnn_model_free(&model);
}

/* Dropout in training: the mask is drawn from model.rng in every forward
   pass, and the checker rewinds model.rng before each one, so all passes
   use the same mask and L is a fixed linear function of x. The test also
   checks that the mask really drops some values and keeps others (else it
   would prove little), and that the analytic gradient is exactly R * mask. */
TEST(dropout_train_gradients)
{
    static const float rates[] = {0.5f, 0.2f};
    size_t r;
    for (r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        cnn_model model;
        cnn_rng rng, start;
        char name[64];
        enum { N = 2 };
        float x[N * 60], R[N * 60];
        size_t i, count = N * 60, dropped = 0, wrong = 0;
        const unsigned char *mask;
        const float keep_scale = 1.0f / (1.0f - rates[r]);
        snprintf(name, sizeof name, "dropout %g train", (double)rates[r]);
        cnn_model_init(&model, 3, 4, 5, 7);
        cnn_add_dropout(&model, rates[r]);
        if (!build(&model, N, name)) continue;
        cnn_rng_seed(&rng, 600 + r);
        test_fill_uniform(&rng, x, count, -1.0f, 1.0f);
        test_fill_uniform(&rng, R, count, -1.0f, 1.0f);
        start = model.rng;
        check_model(&model, x, N, CNN_MODE_TRAIN, R, NULL, GRAD_H, GRAD_TOL, name);

        /* one more pass from the same RNG state: the mask the checker used */
        model.rng = start;
        mask = model.layers[0].mask;
        cnn_model_forward(&model, x, N, CNN_MODE_TRAIN);
        cnn_model_backward_from(&model, R);
        for (i = 0; i < count; i++) {
            dropped += !mask[i];
            if (model.activation_grads[0].data[i] != R[i] * (mask[i] ? keep_scale : 0.0f)) wrong++;
        }
        CHECK(dropped > 0 && dropped < count, "%s: %lu of %lu values dropped: the mask is not random", name,
              (unsigned long)dropped, (unsigned long)count);
        CHECK(wrong == 0, "%s: %lu input gradients differ from R * mask", name, (unsigned long)wrong);
        cnn_model_free(&model);
    }
}

/* Dropout in evaluation is the identity both ways: y == x and dx == dy,
   bit for bit, and the numeric gradient agrees. */
TEST(dropout_eval_is_identity)
{
    cnn_model model;
    cnn_rng rng;
    enum { N = 2, SIZE = 24 };
    float x[N * SIZE], R[N * SIZE];
    cnn_rng_seed(&rng, 610);
    test_fill_uniform(&rng, x, N * SIZE, -1.0f, 1.0f);
    test_fill_uniform(&rng, R, N * SIZE, -1.0f, 1.0f);
    cnn_model_init(&model, 2, 3, 4, 7);
    cnn_add_dropout(&model, 0.5f);
    if (build(&model, N, "dropout eval")) {
        check_model(&model, x, N, CNN_MODE_EVAL, R, NULL, GRAD_H, GRAD_TOL, "dropout eval");
        cnn_model_forward(&model, x, N, CNN_MODE_EVAL);
        CHECK(memcmp(cnn_model_output(&model), x, sizeof x) == 0, "dropout in eval mode changed its input");
        cnn_model_backward_from(&model, R);
        CHECK(memcmp(model.activation_grads[0].data, R, sizeof R) == 0, "dropout in eval mode changed the gradient");
    }
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- softmax, cross-entropy */

/* Softmax alone, any upstream gradient R: its own backward
   dz = p * (R - sum R p), through cnn_model_backward_from. */
TEST(softmax_gradients)
{
    cnn_model model;
    cnn_rng rng;
    cnn_rng_seed(&rng, 700);
    cnn_model_init(&model, 6, 1, 1, 1);
    cnn_add_softmax(&model);
    if (build(&model, 3, "softmax")) check_with_R(&model, 3, CNN_MODE_EVAL, FILL_WIDE, &rng, "softmax");
    cnn_model_free(&model);
}

/* The fused softmax + cross-entropy: L = mean over the batch of
   -log p[label] from cnn_model_loss, gradient from cnn_model_backward.
   On bare logits (so dL/dz = (p - y) / N is checked directly), and after a
   dense layer (so the fused gradient is seen to flow into parameters). */
TEST(softmax_cross_entropy_gradients)
{
    static const int labels[3] = {2, 0, 4};
    cnn_model model;
    cnn_rng rng;
    float x[3 * 8];
    cnn_rng_seed(&rng, 710);

    cnn_model_init(&model, 5, 1, 1, 1);
    cnn_add_softmax(&model);
    if (build(&model, 3, "softmax+xent on logits")) {
        test_fill_uniform(&rng, x, 3 * 5, -3.0f, 3.0f);
        check_model(&model, x, 3, CNN_MODE_EVAL, NULL, labels, GRAD_H, GRAD_TOL, "softmax+xent on logits");
    }
    cnn_model_free(&model);

    cnn_model_init(&model, 8, 1, 1, 1);
    cnn_add_dense(&model, 5);
    cnn_add_softmax(&model);
    if (build(&model, 3, "dense->softmax+xent")) {
        fill_params(&model, &rng);
        test_fill_uniform(&rng, x, 3 * 8, -1.0f, 1.0f);
        check_model(&model, x, 3, CNN_MODE_EVAL, NULL, labels, GRAD_H, GRAD_TOL, "dense->softmax+xent");
    }
    cnn_model_free(&model);
}

/* How far the network below is from its kinks, in units of the most one
   perturbation of size h can move a ReLU input or a pool candidate (> 1 is
   safe). The conv output z[o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] x[...]
   uses each input value at most once (one (u, v) per output position), so
   it moves by at most h * max|w| when one x moves by h, by h * max|x| when
   one w moves, and by h when b[o] moves: delta = h * max(1, max|x|, max|w|).
   The dense layer and softmax after the pool are smooth. We need |z| > delta
   everywhere (no ReLU flips) and, in every pool window whose maximum is
   positive, maximum - runner-up > 2 delta (no change of the winner; windows
   that are all 0 after the ReLU stay all 0). */
static double network_kink_margin(cnn_model *model, const float *x, int batch, double h)
{
    const cnn_layer *conv = &model->layers[0], *pool = &model->layers[2];
    const float *z = model->activations[1].data, *r = model->activations[2].data;
    size_t i, n_z = (size_t)batch * cnn_shape_count(conv->out), n_x = (size_t)batch * cnn_shape_count(model->input);
    double max_abs = 1.0, delta, worst_ratio = 1e30;
    int plane, oi, oj, u, v;
    for (i = 0; i < n_x; i++) if (fabs(x[i]) > max_abs) max_abs = fabs(x[i]);
    for (i = 0; i < conv->weight_count; i++) if (fabs(conv->weight[i]) > max_abs) max_abs = fabs(conv->weight[i]);
    delta = h * max_abs;
    for (i = 0; i < n_z; i++) if (fabs(z[i]) / delta < worst_ratio) worst_ratio = fabs(z[i]) / delta;
    for (plane = 0; plane < batch * pool->in.c; plane++) {
        const float *in = r + (size_t)plane * pool->in.h * pool->in.w;
        for (oi = 0; oi < pool->out.h; oi++)
            for (oj = 0; oj < pool->out.w; oj++) {
                double best = -1e30, second = -1e30;
                for (u = 0; u < pool->desc.kernel; u++)
                    for (v = 0; v < pool->desc.kernel; v++) {
                        double value = in[(oi * pool->desc.stride + u) * pool->in.w + oj * pool->desc.stride + v];
                        if (value > best) { second = best; best = value; }
                        else if (value > second) second = value;
                    }
                if (best > 0.0 && (best - second) / (2.0 * delta) < worst_ratio) worst_ratio = (best - second) / (2.0 * delta);
            }
    }
    return worst_ratio;
}

/* A whole small network, conv -> relu -> maxpool -> flatten -> dense ->
   softmax, trained by cross-entropy: every gradient through every layer.
   Inputs and weights are drawn from successive seeds until no ReLU input
   and no pool window is within reach of a kink (see network_kink_margin);
   the first seed that works is used, so the test is deterministic. */
TEST(network_gradients)
{
    static const int labels[3] = {1, 4, 0};
    enum { N = 3, C = 1, H = 6, W = 8 };
    float x[N * C * H * W];
    cnn_model model;
    cnn_rng rng;
    uint64_t seed;
    double margin = 0.0;
    cnn_model_init(&model, C, H, W, 1);
    cnn_model_keep_outputs(&model, 1); /* network_kink_margin reads the conv's output, which the ReLU would overwrite */
    cnn_add_conv2d(&model, 2, 3, 1, 1);
    cnn_add_relu(&model);
    cnn_add_max_pool(&model, 2, 2);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 5);
    cnn_add_softmax(&model);
    if (!build(&model, N, "network")) {
        cnn_model_free(&model);
        return;
    }
    for (seed = 800; seed < 1800; seed++) {
        cnn_rng_seed(&rng, seed);
        fill_params(&model, &rng);
        test_fill_uniform(&rng, x, sizeof x / sizeof x[0], -1.0f, 1.0f);
        cnn_model_forward(&model, x, N, CNN_MODE_EVAL);
        margin = network_kink_margin(&model, x, N, GRAD_H);
        if (margin > 1.0) break;
    }
    CHECK(margin > 1.0, "no seed gave a network without kinks within reach of h (best margin %g)", margin);
    if (verbose()) printf("    network: seed %lu, kink margin %.2f x the largest move\n", (unsigned long)seed, margin);
    check_model(&model, x, N, CNN_MODE_EVAL, NULL, labels, GRAD_H, GRAD_TOL, "network");
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- batch norm, global average pool */

/* Batch norm's running statistics set to something other than their
   starting 0 and 1 (for evaluation mode), from rng. */
static void fill_running_stats(cnn_model *model, cnn_rng *rng)
{
    int i;
    for (i = 0; i < model->layer_count; i++) {
        cnn_layer *layer = &model->layers[i];
        if (layer->desc.type != CNN_LAYER_BATCH_NORM) continue;
        test_fill_uniform(rng, layer->running_mean, (size_t)layer->in.c, -0.5f, 0.5f);
        test_fill_uniform(rng, layer->running_var, (size_t)layer->in.c, 0.5f, 2.0f);
    }
}

/* Batch norm in training, where every output of a channel depends on every
   input of it through the batch's mean and variance (the backward pass's
   two extra sums), on images (over N, H and W) and on flat vectors (over N
   only: 3 and 4 samples), after a dense layer too; then in evaluation,
   where the running statistics are constants. gamma and beta are checked
   with the rest. */
TEST(batch_norm_gradients)
{
    static const struct { int c, h, w, batch, dense; } cases[] = {
        {2, 3, 4, 3, 0}, /* images: 36 values per channel */
        {3, 1, 1, 4, 0}, /* flat: one value per sample */
        {5, 1, 1, 3, 4}, /* dense 5 -> 4, then batch norm */
        {1, 5, 3, 1, 0}, /* a batch of one image: 15 values per channel */
    };
    int mode;
    size_t k;
    for (mode = 0; mode < 2; mode++)
        for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            cnn_model model;
            cnn_rng rng;
            char name[80];
            snprintf(name, sizeof name, "batch_norm %s (%d, %d, %d)%s N%d", mode ? "train" : "eval", cases[k].c, cases[k].h,
                     cases[k].w, cases[k].dense ? " after dense" : "", cases[k].batch);
            cnn_model_init(&model, cases[k].c, cases[k].h, cases[k].w, 1);
            if (cases[k].dense) cnn_add_dense(&model, cases[k].dense);
            cnn_add_batch_norm(&model);
            if (build(&model, cases[k].batch, name)) {
                cnn_rng_seed(&rng, 1000 + 10 * (uint64_t)mode + k);
                fill_params(&model, &rng);
                fill_running_stats(&model, &rng);
                check_with_R_as_is(&model, cases[k].batch, mode ? CNN_MODE_TRAIN : CNN_MODE_EVAL, FILL_WIDE, &rng, name);
            }
            cnn_model_free(&model);
        }
}

/* (C, H, W) -> (C): each plane's mean; then into a dense layer. */
TEST(global_avg_pool_gradients)
{
    cnn_model model;
    cnn_rng rng;
    cnn_rng_seed(&rng, 1100);
    cnn_model_init(&model, 3, 4, 5, 1);
    cnn_add_global_avg_pool(&model);
    if (build(&model, 2, "global_avg_pool")) check_with_R(&model, 2, CNN_MODE_EVAL, FILL_UNIFORM, &rng, "global_avg_pool");
    cnn_model_free(&model);

    cnn_model_init(&model, 2, 3, 3, 1);
    cnn_add_global_avg_pool(&model);
    cnn_add_dense(&model, 3);
    if (build(&model, 3, "global_avg_pool->dense"))
        check_with_R(&model, 3, CNN_MODE_EVAL, FILL_UNIFORM, &rng, "global_avg_pool->dense");
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- residual blocks */

/* y = F(x) + x and y = F(x) + conv1x1_S(x): the sum's gradient goes down
   both paths and adds up at x, and the projection's weights get theirs.
   Bodies use tanh, which has no kink. Cases: the identity skip; a
   projection of stride 2 (the body's conv floors 6 + 2 - 3 = 5 to 2 steps
   of 2, as the projection does); a projection of stride 1 (only the
   channels change); a block inside a block; and a ResNet block with batch
   norm in training. */
TEST(residual_gradients)
{
    int k;
    for (k = 0; k < 5; k++) {
        cnn_model model;
        cnn_rng rng;
        const char *name = "";
        cnn_mode mode = CNN_MODE_EVAL;
        int batch = 2;
        switch (k) {
        case 0:
            name = "residual identity";
            cnn_model_init(&model, 2, 4, 5, 1);
            cnn_add_residual_begin(&model);
            cnn_add_conv2d(&model, 2, 3, 1, 1);
            cnn_add_tanh(&model);
            cnn_add_conv2d(&model, 2, 3, 1, 1);
            cnn_add_residual_end(&model, CNN_INIT_DEFAULT);
            break;
        case 1:
            name = "residual projection s2";
            cnn_model_init(&model, 2, 5, 6, 1);
            cnn_add_residual_begin(&model);
            cnn_add_conv2d(&model, 3, 3, 2, 1); /* (3, 3, 3) */
            cnn_add_tanh(&model);
            cnn_add_residual_end(&model, CNN_INIT_DEFAULT);
            break;
        case 2:
            name = "residual projection s1";
            cnn_model_init(&model, 2, 4, 4, 1);
            cnn_add_residual_begin(&model);
            cnn_add_conv2d(&model, 4, 3, 1, 1);
            cnn_add_sigmoid(&model);
            cnn_add_residual_end(&model, CNN_INIT_DEFAULT);
            break;
        case 3:
            name = "residual nested";
            cnn_model_init(&model, 2, 5, 5, 1);
            cnn_add_residual_begin(&model);
            cnn_add_conv2d(&model, 3, 3, 1, 1);
            cnn_add_residual_begin(&model);
            cnn_add_tanh(&model);
            cnn_add_conv2d(&model, 3, 3, 1, 1);
            cnn_add_residual_end(&model, CNN_INIT_DEFAULT);   /* identity */
            cnn_add_conv2d(&model, 3, 3, 2, 1);
            cnn_add_residual_end(&model, CNN_INIT_DEFAULT);   /* projection 2 -> 3, stride 2 */
            break;
        default:
            name = "residual with batch norm, train";
            mode = CNN_MODE_TRAIN;
            batch = 3;
            cnn_model_init(&model, 2, 5, 5, 1);
            cnn_add_residual_begin(&model);
            cnn_add_conv2d(&model, 3, 3, 2, 1);
            cnn_add_batch_norm(&model);
            cnn_add_tanh(&model);
            cnn_add_conv2d(&model, 3, 3, 1, 1);
            cnn_add_batch_norm(&model);
            cnn_add_residual_end(&model, CNN_INIT_DEFAULT);
            break;
        }
        if (build(&model, batch, name)) {
            cnn_rng_seed(&rng, 1200 + (uint64_t)k);
            check_with_R(&model, batch, mode, FILL_UNIFORM, &rng, name);
        }
        cnn_model_free(&model);
    }
}

/* A small residual network trained by cross-entropy, every layer in
   training mode: conv, batch norm, tanh, a block with a projection, global
   average pooling, dense, softmax. */
TEST(resnet_gradients)
{
    static const int labels[3] = {2, 0, 1};
    enum { N = 3, C = 1, H = 6, W = 6 };
    float x[N * C * H * W];
    cnn_model model;
    cnn_rng rng;
    cnn_model_init(&model, C, H, W, 1);
    cnn_add_conv2d(&model, 2, 3, 1, 1);
    cnn_add_batch_norm(&model);
    cnn_add_tanh(&model);
    cnn_add_residual_begin(&model);
    cnn_add_conv2d(&model, 3, 3, 2, 1);
    cnn_add_batch_norm(&model);
    cnn_add_tanh(&model);
    cnn_add_residual_end(&model, CNN_INIT_HE_NORMAL);
    cnn_add_global_avg_pool(&model);
    cnn_add_dense(&model, 3);
    cnn_add_softmax(&model);
    if (build(&model, N, "resnet")) {
        cnn_rng_seed(&rng, 1300);
        fill_params(&model, &rng);
        test_fill_uniform(&rng, x, sizeof x / sizeof x[0], -1.0f, 1.0f);
        check_model(&model, x, N, CNN_MODE_TRAIN, NULL, labels, GRAD_H, GRAD_TOL, "resnet");
    }
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- padded pools, ceil mode */

/* Pools with padding (which never wins a max, and counts in an average's
   divisor) and in ceil mode (a last window hanging over the edge, divided
   by its area inside the padded input), max on tie-free inputs. */
TEST(pool_padding_gradients)
{
    static const struct { int max, h, w, kernel, stride, padding, ceil; } cases[] = {
        {1, 7, 8, 3, 2, 1, 0}, /* ResNet's stem pool */
        {1, 5, 7, 2, 2, 0, 1}, /* last windows 1 wide */
        {1, 6, 7, 3, 2, 1, 1},
        {0, 6, 7, 3, 2, 1, 1},
        {0, 5, 6, 2, 2, 1, 1}, /* a 4th row of windows would start in the padding: dropped */
        {0, 4, 5, 3, 1, 1, 0},
    };
    size_t k;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cnn_model model;
        cnn_layer_desc desc;
        cnn_rng rng;
        char name[96];
        snprintf(name, sizeof name, "%s_pool %d/%d p%d%s on 2x%dx%d", cases[k].max ? "max" : "avg", cases[k].kernel,
                 cases[k].stride, cases[k].padding, cases[k].ceil ? " ceil" : "", cases[k].h, cases[k].w);
        memset(&desc, 0, sizeof desc);
        desc.type = cases[k].max ? CNN_LAYER_MAX_POOL : CNN_LAYER_AVG_POOL;
        desc.kernel = cases[k].kernel;
        desc.stride = cases[k].stride;
        desc.padding = cases[k].padding;
        desc.ceil_mode = cases[k].ceil;
        cnn_model_init(&model, 2, cases[k].h, cases[k].w, 1);
        cnn_model_add(&model, &desc);
        if (build(&model, 2, name)) {
            cnn_rng_seed(&rng, 1400 + (uint64_t)k);
            check_with_R(&model, 2, CNN_MODE_EVAL, cases[k].max ? FILL_DISTINCT : FILL_UNIFORM, &rng, name);
        }
        cnn_model_free(&model);
    }
}

int main(void)
{
    RUN(conv2d_gradients);
    RUN(dense_gradients);
    RUN(activation_gradients);
    RUN(pool_gradients);
    RUN(flatten_gradients);
    RUN(dropout_train_gradients);
    RUN(dropout_eval_is_identity);
    RUN(softmax_gradients);
    RUN(softmax_cross_entropy_gradients);
    RUN(network_gradients);
    RUN(batch_norm_gradients);
    RUN(global_avg_pool_gradients);
    RUN(residual_gradients);
    RUN(resnet_gradients);
    RUN(pool_padding_gradients);
    return test_report();
}
