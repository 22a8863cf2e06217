/* test_reproducible.c - training is a function of the seed (issue 3).

   A small model with every source of randomness cnn.h has (weight
   initialisation, dropout masks, the shuffle of every epoch) is trained with
   cnn_model_fit on a generated data set. The same seed must give the same
   weights bit for bit; another seed different weights; and two models
   trained in turns must not disturb each other (no hidden global state). */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#define SIDE 12
#define SAMPLES 40   /* 5 batches of 8 */
#define CLASSES 3
#define BATCH 8

/* Class 0: a horizontal bar, 1: a vertical bar, 2: a diagonal; at a random
   place, on noise. The data's own RNG, not any model's. */
static int make_dataset(cnn_dataset *data)
{
    cnn_rng rng;
    int n, i, j;
    memset(data, 0, sizeof *data);
    if (cnn_tensor_alloc(&data->images, SAMPLES, 1, SIDE, SIDE) != CNN_OK) return 0;
    data->labels = (int *)CNN_MALLOC(SAMPLES * sizeof(int));
    if (!data->labels) return 0;
    data->count = SAMPLES;
    data->num_classes = CLASSES;
    cnn_rng_seed(&rng, 2024);
    for (n = 0; n < SAMPLES; n++) {
        int label = n % CLASSES, at = 2 + (int)cnn_rng_below(&rng, SIDE - 4);
        data->labels[n] = label;
        for (i = 0; i < SIDE; i++)
            for (j = 0; j < SIDE; j++) {
                int on = label == 0 ? i == at : label == 1 ? j == at : i == j;
                *cnn_tensor_at(&data->images, n, 0, i, j) = (on ? 0.8f : 0.0f) + 0.2f * cnn_rng_uniform(&rng);
            }
    }
    return 1;
}

/* conv 4@3x3 pad 1, relu, max-pool 2, dropout 0.25, flatten, dense 3, softmax */
static int make_model(cnn_model *model, uint64_t seed)
{
    cnn_result r = cnn_model_init(model, 1, SIDE, SIDE, seed);
    if (r == CNN_OK) r = cnn_add_conv2d(model, 4, 3, 1, 1);
    if (r == CNN_OK) r = cnn_add_relu(model);
    if (r == CNN_OK) r = cnn_add_max_pool(model, 2, 2);
    if (r == CNN_OK) r = cnn_add_dropout(model, 0.25f);
    if (r == CNN_OK) r = cnn_add_flatten(model);
    if (r == CNN_OK) r = cnn_add_dense(model, CLASSES);
    if (r == CNN_OK) r = cnn_add_softmax(model);
    if (r == CNN_OK) r = cnn_model_build(model, BATCH);
    CHECK(r == CNN_OK, "building the model: %s", model->error.message);
    return r == CNN_OK;
}

static int record_loss(cnn_model *model, const cnn_epoch_stats *stats, void *user)
{
    (void)model;
    *(float *)user = stats->loss;
    return 0;
}

/* Trains a fresh model from seed for `epochs` single-epoch fit calls and
   returns a copy of its parameters (NULL on failure). */
static float *train(uint64_t seed, cnn_optimizer_type type, int epochs, size_t *count)
{
    cnn_dataset data;
    cnn_model model;
    cnn_optimizer opt;
    cnn_optimizer_desc desc;
    cnn_fit_desc fit;
    float *params = NULL, loss = -1.0f;
    int epoch;
    cnn_result r = CNN_ERROR_STATE;
    if (!make_dataset(&data)) {
        CHECK(0, "out of memory for the data set");
        cnn_dataset_free(&data);
        return NULL;
    }
    if (make_model(&model, seed)) {
        memset(&desc, 0, sizeof desc);
        desc.type = type;
        if (type == CNN_OPTIMIZER_SGD) desc.momentum = 0.9f;
        r = cnn_optimizer_init(&opt, &model, &desc);
        CHECK(r == CNN_OK, "cnn_optimizer_init: %s", model.error.message);
        memset(&fit, 0, sizeof fit);
        fit.epochs = 1;
        fit.batch_size = BATCH;
        fit.on_epoch = record_loss;
        fit.user = &loss;
        for (epoch = 0; r == CNN_OK && epoch < epochs; epoch++) r = cnn_model_fit(&model, &opt, &data, &fit);
        CHECK(r == CNN_OK, "cnn_model_fit: %s", model.error.message);
        if (epochs > 0) CHECK(loss >= 0.0f && loss < 100.0f, "last epoch's loss is %g", (double)loss);
        if (r == CNN_OK) {
            *count = model.param_count;
            params = (float *)malloc(model.param_count * sizeof(float));
            if (params) memcpy(params, model.params, model.param_count * sizeof(float));
        }
        cnn_optimizer_free(&opt);
    }
    cnn_model_free(&model);
    cnn_dataset_free(&data);
    return params;
}

static size_t count_different(const float *a, const float *b, size_t n)
{
    size_t i, different = 0;
    for (i = 0; i < n; i++) different += a[i] != b[i];
    return different;
}

static void same_seed_same_bits(cnn_optimizer_type type)
{
    size_t n1 = 0, n2 = 0, n3 = 0;
    float *a = train(7, type, 3, &n1), *b = train(7, type, 3, &n2), *c = train(8, type, 3, &n3);
    float *untrained = train(7, type, 0, &n3);
    if (a && b && c && untrained && n1 == n2 && n2 == n3) {
        CHECK(memcmp(a, b, n1 * sizeof(float)) == 0, "seed 7 twice: %lu of %lu parameters differ",
              (unsigned long)count_different(a, b, n1), (unsigned long)n1);
        CHECK(count_different(a, c, n1) > n1 / 2, "seeds 7 and 8: only %lu of %lu parameters differ",
              (unsigned long)count_different(a, c, n1), (unsigned long)n1);
        CHECK(count_different(a, untrained, n1) > n1 / 2, "training changed only %lu of %lu parameters",
              (unsigned long)count_different(a, untrained, n1), (unsigned long)n1);
    } else {
        CHECK(0, "training failed");
    }
    free(a); free(b); free(c); free(untrained);
}

TEST(fit_adam_same_seed_bit_identical) { same_seed_same_bits(CNN_OPTIMIZER_ADAM); }
TEST(fit_sgd_momentum_same_seed_bit_identical) { same_seed_same_bits(CNN_OPTIMIZER_SGD); }

/* Two models from seed 7 trained an epoch each in turn end exactly where one
   model trained alone ends. */
TEST(fit_two_models_in_turn_do_not_interfere)
{
    cnn_dataset data;
    cnn_model models[2];
    cnn_optimizer opts[2];
    cnn_fit_desc fit;
    size_t n = 0;
    float *alone = train(7, CNN_OPTIMIZER_ADAM, 3, &n);
    int i, epoch, built = 0;
    cnn_result r = CNN_OK;
    if (!alone || !make_dataset(&data)) {
        CHECK(0, "setup failed");
        free(alone);
        return;
    }
    memset(&fit, 0, sizeof fit);
    fit.epochs = 1;
    fit.batch_size = BATCH;
    for (i = 0; i < 2; i++) {
        if (!make_model(&models[i], 7)) break;
        if (cnn_optimizer_init(&opts[i], &models[i], NULL) != CNN_OK) { cnn_model_free(&models[i]); break; }
        built++;
    }
    for (epoch = 0; built == 2 && r == CNN_OK && epoch < 3; epoch++)
        for (i = 0; i < 2 && r == CNN_OK; i++) r = cnn_model_fit(&models[i], &opts[i], &data, &fit);
    CHECK(built == 2 && r == CNN_OK, "training in turns failed");
    if (built == 2 && r == CNN_OK)
        for (i = 0; i < 2; i++)
            CHECK(models[i].param_count == n && memcmp(models[i].params, alone, n * sizeof(float)) == 0,
                  "model %d trained in turns: %lu of %lu parameters differ from one trained alone", i,
                  (unsigned long)count_different(models[i].params, alone, n), (unsigned long)n);
    for (i = 0; i < built; i++) {
        cnn_optimizer_free(&opts[i]);
        cnn_model_free(&models[i]);
    }
    cnn_dataset_free(&data);
    free(alone);
}

int main(void)
{
    RUN(fit_adam_same_seed_bit_identical);
    RUN(fit_sgd_momentum_same_seed_bit_identical);
    RUN(fit_two_models_in_turn_do_not_interfere);
    return test_report();
}
