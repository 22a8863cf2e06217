/* test_threads.c - built with -fopenmp (see the Makefile): the same training
   with 1 and with 2 threads gives bit-identical weights and then the same
   answers for single samples, because every sum is added in one fixed
   order whatever the number of threads; and a step
   the optimiser refuses names the same first bad parameter on 2 threads as
   on one. The thread tuner, which runs some training steps on one of the
   two threads (trial steps, or when one thread proves faster), changes
   nothing in the results: the first two tests train through it; the fourth
   drives it with made-up times. The last holds a single sample, whose
   conv multiplies the threads share, to the bits it gets on one thread
   and in a batch. Threads are the FAST section's: built
   with CNN_NO_FAST, the tests say they are skipped. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef CNN_NO_FAST

/* A conv net (conv, leaky ReLU, max-pool, dropout, dense) for (1, 12, 12)
   and 5 classes. The dense layer of 256 gives it 76,005 parameters, more
   than the 16,384 from which the optimiser shares its update between
   threads, and 288 x 256 weights, enough for threads to share a single
   sample's pass through it. */
static int add_conv_net(cnn_model *model)
{
    return cnn_add_conv2d(model, 8, 3, 1, 1) == CNN_OK && cnn_add_leaky_relu(model, 0.3f) == CNN_OK &&
           cnn_add_conv2d(model, 8, 3, 1, 1) == CNN_OK && cnn_add_relu(model) == CNN_OK && cnn_add_max_pool(model, 2, 2) == CNN_OK &&
           cnn_add_dropout(model, 0.25f) == CNN_OK && cnn_add_flatten(model) == CNN_OK && cnn_add_dense(model, 256) == CNN_OK &&
           cnn_add_relu(model) == CNN_OK && cnn_add_dense(model, 5) == CNN_OK && cnn_add_softmax(model) == CNN_OK;
}

/* A small ResNet for the same inputs: conv, batch norm, a block with the
   identity skip, a block that halves the image through a 1x1 projection,
   global average pooling, dense. Its batch norms see 40 x 144 x 8 = 46,080
   values in a batch of 40, more than the 32,768 from which threads share
   them a channel each, and the last batch of 20 fewer. */
static int add_resnet(cnn_model *model)
{
    return cnn_add_conv2d(model, 8, 3, 1, 1) == CNN_OK && cnn_add_batch_norm(model) == CNN_OK && cnn_add_relu(model) == CNN_OK &&
           cnn_add_residual_begin(model) == CNN_OK && cnn_add_conv2d(model, 8, 3, 1, 1) == CNN_OK &&
           cnn_add_batch_norm(model) == CNN_OK && cnn_add_relu(model) == CNN_OK && cnn_add_conv2d(model, 8, 3, 1, 1) == CNN_OK &&
           cnn_add_batch_norm(model) == CNN_OK && cnn_add_residual_end(model, CNN_INIT_HE_NORMAL) == CNN_OK &&
           cnn_add_relu(model) == CNN_OK && cnn_add_residual_begin(model) == CNN_OK && cnn_add_conv2d(model, 16, 3, 2, 1) == CNN_OK &&
           cnn_add_batch_norm(model) == CNN_OK && cnn_add_relu(model) == CNN_OK && cnn_add_conv2d(model, 16, 3, 1, 1) == CNN_OK &&
           cnn_add_batch_norm(model) == CNN_OK && cnn_add_residual_end(model, CNN_INIT_HE_NORMAL) == CNN_OK &&
           cnn_add_relu(model) == CNN_OK && cnn_add_global_avg_pool(model) == CNN_OK && cnn_add_dense(model, 5) == CNN_OK &&
           cnn_add_softmax(model) == CNN_OK;
}

/* Trains the model add() describes for a few steps with the given number
   of threads and returns its parameters and state (batch norm's running
   statistics), followed by its outputs for SINGLES samples passed one at a
   time. */
#define SINGLES 5
static float *train_with_threads(int threads, size_t *count, int (*add)(cnn_model *))
{
    cnn_model model;
    cnn_optimizer adam;
    cnn_dataset data;
    cnn_fit_desc fit;
    cnn_rng rng;
    float *params = NULL;
    size_t i;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    memset(&data, 0, sizeof data);
    cnn_rng_seed(&rng, 99);
    cnn_tensor_alloc(&data.images, 100, 1, 12, 12);
    data.labels = (int *)malloc(100 * sizeof(int));
    for (i = 0; i < cnn_tensor_count(&data.images); i++) data.images.data[i] = cnn_rng_uniform(&rng);
    for (i = 0; i < 100; i++) data.labels[i] = (int)cnn_rng_below(&rng, 5);
    data.count = 100;
    data.num_classes = 5;
    if (cnn_model_init(&model, 1, 12, 12, 7) == CNN_OK && add(&model) && cnn_model_build(&model, 40) == CNN_OK &&
        cnn_optimizer_init(&adam, &model, NULL) == CNN_OK) {
        const size_t learned = model.param_count + model.state_count; /* params, then state, in one block */
        CHECK(model.threads == threads, "model uses %d threads, asked for %d", model.threads, threads);
        memset(&fit, 0, sizeof fit);
        fit.epochs = 2; /* 100 samples in batches of 40: full and partial batches */
        CHECK(cnn_model_fit(&model, &adam, &data, &fit) == CNN_OK, "fit: %s", model.error.message);
        params = (float *)malloc((learned + SINGLES * 5) * sizeof(float));
        memcpy(params, model.params, learned * sizeof(float));
        *count = learned + SINGLES * 5;
        for (i = 0; i < SINGLES; i++) {
            CHECK(cnn_model_forward(&model, data.images.data + i * 144, 1, CNN_MODE_EVAL) == CNN_OK, "forward: %s",
                  model.error.message);
            memcpy(params + learned + i * 5, cnn_model_output(&model), 5 * sizeof(float));
        }
        cnn_optimizer_free(&adam);
    } else {
        CHECK(0, "build: %s", model.error.message);
    }
    cnn_model_free(&model);
    cnn_dataset_free(&data);
    return params;
}

static void train_identically(int (*add)(cnn_model *))
{
    size_t count1 = 0, count2 = 0;
    float *one = train_with_threads(1, &count1, add);
    float *two = train_with_threads(2, &count2, add);
#ifndef _OPENMP
    printf("    built without OpenMP: both runs used one thread\n");
#endif
    CHECK(one && two && count1 == count2, "both trained");
    if (one) {
        size_t i, bad = 0;
        for (i = 0; i < count1; i++) bad += !(fabsf(one[i]) <= 1e30f);
        CHECK(bad == 0, "%lu of %lu values are not finite: identical NaNs would prove nothing", (unsigned long)bad,
              (unsigned long)count1);
    }
    if (one && two && count1 == count2)
        CHECK(memcmp(one, two, count1 * sizeof(float)) == 0, "weights, running statistics or answers differ by up to %g",
              test_max_abs_diff(one, two, count1));
    free(one);
    free(two);
}

TEST(one_and_two_threads_train_identically) { train_identically(add_conv_net); }
TEST(resnet_trains_identically_on_one_and_two_threads) { train_identically(add_resnet); }

/* A batch smaller than the thread count (one sample, at inference) runs
   its convolutions sample by sample with each multiply shared by the
   threads; a larger batch gives each thread whole samples. Both must give
   a sample the same bits, on 2 threads and on 1: a conv of 16 5x5 filters
   on 28x28 (a multiply of 16 x 784 x 25, enough to be shared) and a
   stride-2 one (through im2col rather than the stride-1 shifts). */
TEST(single_sample_shares_the_multiply)
{
    enum { BATCH = 4, SIZE = 28 * 28 };
    float x[BATCH * SIZE], alone[2][BATCH * 47], together[BATCH * 47];
    cnn_model model;
    cnn_rng rng;
    int threads, n, bad = 0;
    size_t i;
    cnn_rng_seed(&rng, 21);
    for (i = 0; i < BATCH * SIZE; i++) x[i] = cnn_rng_uniform(&rng);
    for (threads = 1; threads <= 2; threads++) {
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        if (cnn_model_init(&model, 1, 28, 28, 5) != CNN_OK || cnn_add_conv2d(&model, 16, 5, 1, 2) != CNN_OK ||
            cnn_add_relu(&model) != CNN_OK || cnn_add_conv2d(&model, 16, 3, 2, 1) != CNN_OK || cnn_add_flatten(&model) != CNN_OK ||
            cnn_add_dense(&model, 47) != CNN_OK || cnn_model_build(&model, BATCH) != CNN_OK) {
            CHECK(0, "build: %s", model.error.message);
            cnn_model_free(&model);
            return;
        }
        for (n = 0; n < BATCH; n++) {
            CHECK(cnn_model_forward(&model, x + n * SIZE, 1, CNN_MODE_EVAL) == CNN_OK, "%s", model.error.message);
            memcpy(alone[threads - 1] + n * 47, cnn_model_output(&model), 47 * sizeof(float));
        }
        if (threads == 2) {
#ifdef _OPENMP
            CHECK(model.threads == 2, "2 threads asked, %d used", model.threads);
#endif
            CHECK(cnn_model_forward(&model, x, BATCH, CNN_MODE_EVAL) == CNN_OK, "%s", model.error.message);
            memcpy(together, cnn_model_output(&model), sizeof together);
        }
        cnn_model_free(&model);
    }
    for (i = 0; i < BATCH * 47; i++) bad += memcmp(&alone[0][i], &alone[1][i], sizeof(float)) || memcmp(&alone[1][i], &together[i], sizeof(float));
    CHECK(bad == 0, "%d of %d outputs differ between one sample on 1 thread, on 2, and in a batch", bad, BATCH * 47);
}

/* Runs `count` training steps as the tuner sees them, each taking the
   made-up `one` or `two` seconds per sample by its thread count; the first
   step after a change of count takes `change` seconds a sample instead,
   when it is not 0. Returns how many ran on `expected` threads and gave
   the model all its threads back after. */
static int tuned_steps(cnn_model *model, int count, double one, double two, double change, int expected)
{
    int step, right = 0, threads;
    for (step = 0; step < count; step++) {
        const int changed = model->fast->tuner.last_threads != cnn__tuner_threads(model);
        double seconds;
        cnn__fast_step_begin(model);
        threads = model->fast->work.threads;
        seconds = changed && change > 0.0 ? change : threads == 1 ? one : two;
        cnn__fast_step_end(model, cnn__seconds() - 8.0 * seconds, 8);
        right += threads == expected && model->fast->work.threads == model->threads;
    }
    return right;
}

/* The thread tuner (cnn.h, "the thread tuner"), with made-up step times,
   period by period: each runs its steps on the chosen count but the last
   2 (the trial), which run on the other; then the faster per sample is
   chosen, all threads only when they gain 10%; while it keeps winning,
   periods grow 4-fold; a costly trial makes the period as long as it can
   be. Between steps the model has both threads back. */
TEST(thread_tuner_runs_steps_on_the_faster_count)
{
    static const struct {
        int steps, on;           /* the period's steps, and the threads of all but its trial */
        double one, two, change; /* seconds a sample on 1 and 2 threads, and the first step after a change (0: as the others) */
        int chosen;              /* the choice after it */
        long period;             /* and the next period's steps (0: not checked) */
        const char *what;
    } periods[] = {
        {4, 2, 1.0, 1.01, 0.0, 1, 4, "the first: 2 threads take 1% longer, trials cost next to nothing"},
        {4, 1, 1.0, 1.01, 0.0, 1, 16, "one thread wins again: the period grows"},
        {16, 1, 1.0, 1.01, 0.0, 1, 64, "and again"},
        {64, 1, 1.0, 3.0, 100.0, 1, 1024, "a busy core: 2 threads take 3 s a sample, the first step back on them 100 s"},
        {1024, 1, 1.0, 0.5, 100.0, 1, 1024, "their second step is faster, but waking them costs more"},
        {1024, 1, 1.0, 0.5, 0.0, 2, 4, "the machine goes quiet: 2 threads win and take over"},
        {4, 2, 1.0, 0.92, 0.0, 1, 0, "2 threads gain 8% only: not enough"},
    };
    cnn_model model;
    size_t p;
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
    if (cnn_model_init(&model, 4, 1, 1, 1) != CNN_OK || cnn_add_dense(&model, 3) != CNN_OK || cnn_model_build(&model, 8) != CNN_OK) {
        CHECK(0, "build: %s", model.error.message);
        cnn_model_free(&model);
        return;
    }
    if (model.threads < 2 || !CNN__TUNER) {
        printf("    one thread only, or no wall clock: the tuner stays out of the way\n");
        CHECK(model.fast->work.threads == model.threads, "threads %d of %d", model.fast->work.threads, model.threads);
        cnn_model_free(&model);
        return;
    }
    for (p = 0; p < sizeof periods / sizeof periods[0]; p++) {
        const int steps = periods[p].steps, on = periods[p].on, other = 3 - on;
        const double one = periods[p].one, two = periods[p].two, change = periods[p].change;
        CHECK(model.fast->tuner.period == steps, "period %lu (%s): %ld steps, expected %d", (unsigned long)p, periods[p].what,
              model.fast->tuner.period, steps);
        CHECK(tuned_steps(&model, steps - 2, one, two, change, on) == steps - 2, "period %lu (%s): steps not on %d threads",
              (unsigned long)p, periods[p].what, on);
        CHECK(tuned_steps(&model, 2, one, two, change, other) == 2, "period %lu (%s): trial not on %d threads", (unsigned long)p,
              periods[p].what, other);
        CHECK(model.fast->tuner.chosen == periods[p].chosen && (!periods[p].period || model.fast->tuner.period == periods[p].period),
              "period %lu (%s): chose %d, period %ld", (unsigned long)p, periods[p].what, model.fast->tuner.chosen,
              model.fast->tuner.period);
    }
    cnn_model_free(&model);
}

/* On 2 threads each thread checks its own half of the parameters before a
   step. A NaN gradient in each half must be reported at the first one, a
   NaN only in the second half at that one, and neither step may change a
   weight or the optimiser's state. */
TEST(two_threads_refuse_at_the_first_bad_parameter)
{
    cnn_model model;
    cnn_optimizer optimizer;
    cnn_optimizer_desc desc;
    float *before;
    size_t first_half, second_half;
    char expected[64];
    int type;
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
    for (type = 0; type < 2; type++) {
        memset(&desc, 0, sizeof desc);
        desc.type = type ? CNN_OPTIMIZER_SGD : CNN_OPTIMIZER_ADAM;
        if (cnn_model_init(&model, 300, 1, 1, 1) != CNN_OK || cnn_add_dense(&model, 256) != CNN_OK ||
            cnn_add_softmax(&model) != CNN_OK || cnn_model_build(&model, 1) != CNN_OK ||
            cnn_optimizer_init(&optimizer, &model, &desc) != CNN_OK) {
            CHECK(0, "build: %s", model.error.message);
            cnn_model_free(&model);
            return;
        }
        first_half = model.param_count / 2 - 100;  /* 77,056 parameters: blocks 0..38527 and 38528.. */
        second_half = model.param_count / 2 + 100;
        before = (float *)malloc(model.param_count * sizeof(float));
        memcpy(before, model.params, model.param_count * sizeof(float));
        cnn_model_zero_grad(&model);
        model.grads[second_half] = (float)NAN;
        model.grads[first_half] = (float)NAN;
        CHECK(cnn_optimizer_step(&optimizer, &model) == CNN_ERROR_NOT_FINITE, "code %d", (int)model.error.code);
        snprintf(expected, sizeof expected, "parameter %lu ", (unsigned long)first_half);
        CHECK(strstr(model.error.message, expected) != NULL, "message: %s", model.error.message);
        model.grads[first_half] = 0.0f;
        CHECK(cnn_optimizer_step(&optimizer, &model) == CNN_ERROR_NOT_FINITE, "code %d", (int)model.error.code);
        snprintf(expected, sizeof expected, "parameter %lu ", (unsigned long)second_half);
        CHECK(strstr(model.error.message, expected) != NULL, "message: %s", model.error.message);
        CHECK(memcmp(before, model.params, model.param_count * sizeof(float)) == 0, "weights changed");
        CHECK(optimizer.step == 0 && optimizer.first_moment[first_half] == 0.0f, "optimiser state changed");
        model.grads[second_half] = 1.0f;
        CHECK(cnn_optimizer_step(&optimizer, &model) == CNN_OK, "a finite step: %s", model.error.message);
        CHECK(model.params[second_half] != before[second_half] && model.params[first_half] == before[first_half],
              "the finite step moved the wrong weights");
        free(before);
        cnn_optimizer_free(&optimizer);
        cnn_model_free(&model);
    }
}

#endif /* CNN_NO_FAST */

#ifdef CNN_NO_FAST
#define RUN_FAST(name) RUN_SKIPPED(name, "built with CNN_NO_FAST: there is no FAST section, and no threads")
#else
#define RUN_FAST(name) RUN(name)
#endif

int main(void)
{
    RUN_FAST(one_and_two_threads_train_identically);
    RUN_FAST(resnet_trains_identically_on_one_and_two_threads);
    RUN_FAST(two_threads_refuse_at_the_first_bad_parameter);
    RUN_FAST(thread_tuner_runs_steps_on_the_faster_count);
    RUN_FAST(single_sample_shares_the_multiply);
    return test_report();
}
