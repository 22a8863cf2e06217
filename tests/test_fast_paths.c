/* test_fast_paths.c - the vector loops and special cases that make cnn.h
   fast give the same bits as the plain loops they stand in for.

   Each fast path claims to compute exactly what the plain code computes,
   only several values at a time: activations 8 at a time, the 2 x 2 max
   pool 8 windows at a time, Adam 4 parameters at a time. So the checks here
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

int main(void)
{
    RUN(activations_match_the_plain_formulas);
    RUN(max_pool_2x2_matches_the_plain_loop);
    RUN(adam_update_matches_the_formula);
    return test_report();
}
