/* test_fast_paths.c - the vector loops and special cases that make cnn.h
   fast give the same bits as the plain loops they stand in for.

   Each fast path claims to compute exactly what the plain code computes,
   only several values at a time: activations 8 at a time, the 2 x 2 max
   pool 8 windows at a time, Adam 4 parameters at a time and its check for
   values that are not finite 8 at a time, a dense layer on fewer samples
   than the multiply's panel one sample at a time, the packing of a
   transposed operand 8 x 8 at a time, a dropout mask a block per thread.
   So the checks here
   are bitwise, against the plain formula (written out again in the test)
   or the plain loop (cnn__max_pool_plane), on counts and widths that leave
   every kind of remainder, and on values that test the rules at their
   edges: NaN, infinities, -0, and ties. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

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
        cnn__relu_forward((size_t)count, x, y);
        for (i = 0; i < count; i++) bad += !same_bits(y[i], x[i] < 0.0f ? 0.0f : x[i]);
        cnn__relu_backward((size_t)count, x, dy, dx);
        for (i = 0; i < count; i++) bad += !same_bits(dx[i], x[i] > 0.0f ? dy[i] : 0.0f);
        cnn__leaky_relu_forward((size_t)count, alpha, x, y);
        for (i = 0; i < count; i++) bad += !same_bits(y[i], x[i] < 0.0f ? alpha * x[i] : x[i]);
        cnn__leaky_relu_backward((size_t)count, alpha, x, dy, dx);
        for (i = 0; i < count; i++) bad += !same_bits(dx[i], x[i] > 0.0f ? dy[i] : alpha * dy[i]);
    }
    CHECK(bad == 0, "%d values differ from the plain formulas", bad);
    /* and a NaN stays a NaN through ReLU, as the divergence checks need */
    x[0] = NAN;
    cnn__relu_forward(9, x, y);
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
    int W, H, integers, i, planes = 0, bad = 0;
    cnn_rng_seed(&rng, 9);
    for (integers = 0; integers <= 1; integers++)
        for (W = 2; W <= 21; W++)
            for (H = 2; H <= 7; H++) {
                const int OH = H / 2, OW = W / 2;
                fill_awkward(x, H * W, &rng, integers);
#ifdef CNN__POOL_VECTORS
                cnn__max_pool_plane_2x2(W, OH, OW, x, fast_y, fast_at);
#else
                cnn__max_pool_plane(W, OH, OW, 2, 2, x, fast_y, fast_at);
#endif
                cnn__max_pool_plane(W, OH, OW, 2, 2, x, plain_y, plain_at);
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
        /* the same float constants cnn__optimizer_pass derives in double */
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
        if (cnn_model_build(&model, BATCH) != CNN_OK || cnn_model_forward(&model, x, BATCH, CNN_MODE_EVAL) != CNN_OK) {
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
    CHECK(bad == 0, "%d outputs differ from the batch's", bad);
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
   mask drawn in blocks (as threads draw it; here the blocks run one after
   the other) is the mask drawn in one go, with the stream left one draw
   per value on. */
TEST(dropout_in_blocks_draws_the_same_mask)
{
    enum { COUNT = 3 * 65536 + 5 };
    static const uint64_t far[] = {1000, 65536, 123457, 1000003};
    float *x = (float *)malloc(COUNT * sizeof(float)), *y[2], *mask[2];
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
        mask[threads - 1] = (float *)malloc(COUNT * sizeof(float));
        cnn_rng_seed(&rng[threads - 1], 77);
        if (y[threads - 1] && mask[threads - 1])
            cnn__dropout_forward(COUNT, 0.3f, x, y[threads - 1], mask[threads - 1], &rng[threads - 1], threads);
    }
    if (y[0] && y[1] && mask[0] && mask[1]) {
        CHECK(cnn__elementwise_blocks(COUNT, 2) == 2, "the mask is not split in two");
        CHECK(memcmp(mask[0], mask[1], COUNT * sizeof(float)) == 0 && memcmp(y[0], y[1], COUNT * sizeof(float)) == 0,
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

int main(void)
{
    RUN(activations_match_the_plain_formulas);
    RUN(max_pool_2x2_matches_the_plain_loop);
    RUN(adam_update_matches_the_formula);
    RUN(adam_check_finds_the_first_bad_parameter);
    RUN(dense_on_few_samples_matches_the_batch);
    RUN(transposing_pack_matches_the_layout);
    RUN(dropout_in_blocks_draws_the_same_mask);
    return test_report();
}
