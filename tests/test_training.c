/* test_training.c - training end to end: a tiny model memorises 64 samples,
   a diverging step is refused without touching the weights, fit and
   evaluate agree with predict, and LeNet-5 learns real EMNIST in one epoch
   (when $EMNIST_DIR holds it). */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

static int build_small_cnn(cnn_model *model, int side, int classes, int max_batch, uint64_t seed)
{
    return cnn_model_init(model, 1, side, side, seed) == CNN_OK && cnn_add_conv2d(model, 8, 3, 1, 1) == CNN_OK &&
           cnn_add_relu(model) == CNN_OK && cnn_add_max_pool(model, 2, 2) == CNN_OK && cnn_add_flatten(model) == CNN_OK &&
           cnn_add_dense(model, 64) == CNN_OK && cnn_add_relu(model) == CNN_OK && cnn_add_dense(model, classes) == CNN_OK &&
           cnn_add_softmax(model) == CNN_OK && cnn_model_build(model, max_batch) == CNN_OK;
}

/* 64 samples with random labels carry no pattern at all: reaching 100%
   means the whole chain (forward, loss, backward, Adam) can memorise,
   which any correct implementation does within a few hundred steps. */
TEST(overfits_64_random_samples)
{
    cnn_dataset data;
    cnn_model model;
    cnn_optimizer adam;
    cnn_optimizer_desc desc;
    cnn_fit_desc fit;
    float loss = 0.0f, accuracy = 0.0f;
    int round;
    CHECK(make_random_dataset(&data, 64, 8, 10, 5), "dataset");
    CHECK(build_small_cnn(&model, 8, 10, 16, 3), "build: %s", model.error.message);
    memset(&desc, 0, sizeof desc);
    desc.learning_rate = 3e-3f;
    CHECK(cnn_optimizer_init(&adam, &model, &desc) == CNN_OK, "optimizer");
    memset(&fit, 0, sizeof fit);
    fit.epochs = 20;
    for (round = 0; round < 15 && accuracy < 1.0f; round++) {
        CHECK(cnn_model_fit(&model, &adam, &data, &fit) == CNN_OK, "fit: %s", model.error.message);
        CHECK(cnn_model_evaluate(&model, &data, &loss, &accuracy) == CNN_OK, "evaluate");
    }
    CHECK(accuracy == 1.0f, "accuracy %.4f after %d epochs (loss %.4f)", (double)accuracy, round * fit.epochs, (double)loss);
    CHECK(loss < 0.5f, "loss %.4f", (double)loss); /* memorised: p(label) well above chance on average */
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_dataset_free(&data);
}

/* A NaN input makes the loss NaN: the step is refused with
   CNN_ERROR_NOT_FINITE and the weights and optimiser state stay as they were. */
TEST(nan_loss_stops_without_update)
{
    cnn_dataset data;
    cnn_model model;
    cnn_optimizer adam;
    float *before, loss = 0.0f;
    int correct = 0;
    CHECK(make_random_dataset(&data, 16, 8, 10, 6), "dataset");
    CHECK(build_small_cnn(&model, 8, 10, 16, 4), "build");
    CHECK(cnn_optimizer_init(&adam, &model, NULL) == CNN_OK, "optimizer");
    CHECK(cnn_model_train_step(&model, &adam, data.images.data, data.labels, 16, &loss, &correct) == CNN_OK, "good step");
    before = (float *)malloc(model.param_count * sizeof(float));
    memcpy(before, model.params, model.param_count * sizeof(float));
    data.images.data[5] = (float)NAN;
    CHECK(cnn_model_train_step(&model, &adam, data.images.data, data.labels, 16, &loss, &correct) == CNN_ERROR_NOT_FINITE,
          "code %d", (int)model.error.code);
    CHECK(memcmp(before, model.params, model.param_count * sizeof(float)) == 0, "weights changed");
    CHECK(adam.step == 1, "optimiser stepped: %ld", adam.step);
    CHECK(strstr(model.error.message, "nan") || strstr(model.error.message, "NaN"), "message: %s", model.error.message);
    /* through fit, the error names the epoch and step */
    CHECK(cnn_model_fit(&model, &adam, &data, NULL) == CNN_ERROR_NOT_FINITE, "fit");
    CHECK(strstr(model.error.message, "epoch 1, step 1") != NULL, "message: %s", model.error.message);
    free(before);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_dataset_free(&data);
}

/* evaluate's accuracy and predict's classes agree; probabilities sum to 1. */
TEST(evaluate_agrees_with_predict)
{
    cnn_dataset data;
    cnn_model model;
    int classes[50], right = 0, n, k;
    float probabilities[50 * 10], accuracy = 0.0f, loss = 0.0f;
    CHECK(make_random_dataset(&data, 50, 8, 10, 8), "dataset");
    CHECK(build_small_cnn(&model, 8, 10, 16, 9), "build"); /* 50 = 3 full batches of 16 and one of 2 */
    CHECK(cnn_model_predict(&model, data.images.data, 50, classes, probabilities) == CNN_OK, "predict");
    for (n = 0; n < 50; n++) {
        double sum = 0.0;
        for (k = 0; k < 10; k++) sum += probabilities[n * 10 + k];
        CHECK(fabs(sum - 1.0) < 1e-5, "sample %d sums to %.7f", n, sum);
        right += classes[n] == data.labels[n];
    }
    CHECK(cnn_model_evaluate(&model, &data, &loss, &accuracy) == CNN_OK, "evaluate");
    CHECK(accuracy == (float)right / 50.0f, "evaluate %.4f, predict %.4f", (double)accuracy, right / 50.0);
    CHECK(loss > 0.0f && loss < 10.0f, "loss %.4f", (double)loss);
    cnn_model_free(&model);
    cnn_dataset_free(&data);
}

/* The callback sees each epoch and can stop training early. */
static int stop_after_two(cnn_model *model, const cnn_epoch_stats *stats, void *user)
{
    (void)model;
    *(int *)user = stats->epoch;
    return stats->epoch == 2;
}

TEST(fit_callback_can_stop)
{
    cnn_dataset data;
    cnn_model model;
    cnn_optimizer sgd;
    cnn_optimizer_desc desc;
    cnn_fit_desc fit;
    int last_epoch = 0;
    CHECK(make_random_dataset(&data, 32, 8, 4, 10), "dataset");
    CHECK(build_small_cnn(&model, 8, 4, 8, 11), "build");
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_OPTIMIZER_SGD;
    desc.momentum = 0.9f;
    CHECK(cnn_optimizer_init(&sgd, &model, &desc) == CNN_OK, "optimizer");
    memset(&fit, 0, sizeof fit);
    fit.epochs = 5;
    fit.on_epoch = stop_after_two;
    fit.user = &last_epoch;
    CHECK(cnn_model_fit(&model, &sgd, &data, &fit) == CNN_OK, "fit");
    CHECK(last_epoch == 2, "stopped after epoch %d", last_epoch);
    CHECK(sgd.step == 2 * 4, "steps %ld (2 epochs of 4 batches)", sgd.step);
    cnn_optimizer_free(&sgd);
    cnn_model_free(&model);
    cnn_dataset_free(&data);
}

/* Step decay: the rate each epoch trains at, as on_epoch sees it. */
typedef struct rate_log {
    const cnn_optimizer *optimizer;
    float rates[8];
} rate_log;

static int record_rate(cnn_model *model, const cnn_epoch_stats *stats, void *user)
{
    rate_log *log = (rate_log *)user;
    (void)model;
    if (stats->epoch <= 8) log->rates[stats->epoch - 1] = log->optimizer->desc.learning_rate;
    return 0;
}

/* The test's augmentation: each image gets noise from its own generator,
   which the checkpoint must carry (cnn_fit_state.augment_rng). */
static cnn_result noisy_augment(cnn_model *model, float *images, int *labels, int batch, void *user)
{
    cnn_rng *rng = (cnn_rng *)user;
    size_t i, count = (size_t)batch * cnn_shape_count(model->input);
    (void)labels;
    for (i = 0; i < count; i++) images[i] += 0.05f * (cnn_rng_uniform(rng) - 0.5f);
    return CNN_OK;
}

typedef struct checkpoint_hook {
    cnn_optimizer *optimizer;
    cnn_fit_state *state;
    cnn_history *history;
    const char *path;    /* saved after epoch stop_after, then training stops */
    int stop_after;
} checkpoint_hook;

static int record_and_checkpoint(cnn_model *model, const cnn_epoch_stats *stats, void *user)
{
    checkpoint_hook *hook = (checkpoint_hook *)user;
    cnn_epoch_record record;
    memset(&record, 0, sizeof record);
    record.epoch = stats->epoch;
    record.loss = stats->loss;
    record.validated = stats->validated;
    record.validation_loss = stats->validation_loss;
    cnn_history_add(hook->history, &record);
    if (stats->epoch != hook->stop_after) return 0;
    return cnn_checkpoint_save(model, hook->optimizer, hook->state, hook->path) == CNN_OK ? 1 : 2;
}

/* Issue "first hour" 16: 5 epochs straight, and 2 epochs + a checkpoint +
   a resumed run to 5, end with the same weights, Adam state, learning rate
   and history, bit for bit - with shuffling, dropout, augmentation, a
   learning-rate schedule, validation and early stopping's best copy all
   in play. */
static void train_maybe_resumed(cnn_model *model, cnn_optimizer *adam, cnn_fit_state *state, cnn_history *history, cnn_rng *augment_rng,
                                const cnn_dataset *train, const cnn_dataset *validation, int stop_after, const char *path)
{
    checkpoint_hook hook;
    cnn_fit_desc fit;
    memset(&fit, 0, sizeof fit);
    fit.epochs = 5;
    fit.batch_size = 12; /* 40 samples: a short last batch */
    fit.validation = validation;
    fit.patience = 3;
    fit.lr_decay = 0.5f;
    fit.lr_decay_after = 2;
    fit.augment = noisy_augment;
    fit.augment_user = augment_rng;
    fit.state = state;
    fit.on_epoch = record_and_checkpoint;
    fit.user = &hook;
    hook.optimizer = adam;
    hook.state = state;
    hook.history = history;
    hook.path = path;
    hook.stop_after = stop_after;
    CHECK(cnn_model_fit(model, adam, train, &fit) == CNN_OK, "fit: %s", model->error.message);
}

static int build_dropout_cnn(cnn_model *model)
{
    return cnn_model_init(model, 1, 8, 8, 21) == CNN_OK && cnn_add_conv2d(model, 4, 3, 1, 1) == CNN_OK &&
           cnn_add_relu(model) == CNN_OK && cnn_add_max_pool(model, 2, 2) == CNN_OK && cnn_add_flatten(model) == CNN_OK &&
           cnn_add_dropout(model, 0.3f) == CNN_OK && cnn_add_dense(model, 5) == CNN_OK && cnn_add_softmax(model) == CNN_OK &&
           cnn_model_build(model, 12) == CNN_OK;
}

TEST(resumed_training_is_bit_identical)
{
    static cnn_model straight, resumed;
    cnn_dataset train, validation;
    cnn_optimizer adam_straight, adam_resumed;
    cnn_fit_state state_straight, state_resumed;
    cnn_history history_straight, history_resumed;
    cnn_rng augment_straight, augment_resumed;
    char path[1024];
    int i;
    snprintf(path, sizeof path, "%s", test_path("resume.cnn"));
    CHECK(make_random_dataset(&train, 40, 8, 5, 31) && make_random_dataset(&validation, 10, 8, 5, 32), "datasets");
    memset(&state_straight, 0, sizeof state_straight);
    memset(&state_resumed, 0, sizeof state_resumed);
    memset(&history_straight, 0, sizeof history_straight);
    memset(&history_resumed, 0, sizeof history_resumed);
    cnn_rng_seed(&augment_straight, 7);
    cnn_rng_seed(&augment_resumed, 7);
    state_straight.augment_rng = &augment_straight, state_resumed.augment_rng = &augment_resumed;
    state_straight.history = &history_straight, state_resumed.history = &history_resumed;

    /* straight through */
    CHECK(build_dropout_cnn(&straight) && cnn_optimizer_init(&adam_straight, &straight, NULL) == CNN_OK, "build");
    train_maybe_resumed(&straight, &adam_straight, &state_straight, &history_straight, &augment_straight, &train, &validation, 0, path);
    CHECK(state_straight.epoch == 5 && history_straight.count == 5, "epochs done %d, recorded %d", state_straight.epoch,
          history_straight.count);

    /* two epochs, a checkpoint, then everything thrown away but the file */
    CHECK(build_dropout_cnn(&resumed) && cnn_optimizer_init(&adam_resumed, &resumed, NULL) == CNN_OK, "build");
    train_maybe_resumed(&resumed, &adam_resumed, &state_resumed, &history_resumed, &augment_resumed, &train, &validation, 2, path);
    CHECK(state_resumed.epoch == 2, "stopped after epoch %d", state_resumed.epoch);
    cnn_model_free(&resumed);
    cnn_optimizer_free(&adam_resumed);
    cnn_fit_state_free(&state_resumed);
    cnn_history_free(&history_resumed);
    cnn_rng_seed(&augment_resumed, 99); /* whatever it holds now must be replaced */
    CHECK(cnn_checkpoint_load(&resumed, &adam_resumed, &state_resumed, path, 12) == CNN_OK, "load: %s", resumed.error.message);
    CHECK(state_resumed.epoch == 2 && history_resumed.count == 2, "resumed at epoch %d with %d records", state_resumed.epoch,
          history_resumed.count);
    train_maybe_resumed(&resumed, &adam_resumed, &state_resumed, &history_resumed, &augment_resumed, &train, &validation, 0, path);

    CHECK(resumed.param_count == straight.param_count, "parameter counts");
    CHECK(memcmp(resumed.params, straight.params, straight.param_count * sizeof(float)) == 0, "weights differ after resuming");
    CHECK(memcmp(adam_resumed.first_moment, adam_straight.first_moment, 2 * straight.param_count * sizeof(float)) == 0,
          "Adam's moments differ");
    CHECK(adam_resumed.step == adam_straight.step && adam_resumed.desc.learning_rate == adam_straight.desc.learning_rate,
          "step %ld vs %ld, rate %g vs %g", adam_resumed.step, adam_straight.step, (double)adam_resumed.desc.learning_rate,
          (double)adam_straight.desc.learning_rate);
    CHECK(state_resumed.best_epoch == state_straight.best_epoch && state_resumed.best_loss == state_straight.best_loss,
          "best epoch %d vs %d", state_resumed.best_epoch, state_straight.best_epoch);
    CHECK(history_resumed.count == 5, "history of %d epochs", history_resumed.count);
    for (i = 0; i < history_resumed.count && i < 5; i++)
        CHECK(history_resumed.epochs[i].loss == history_straight.epochs[i].loss, "epoch %d loss %g vs %g", i + 1,
              (double)history_resumed.epochs[i].loss, (double)history_straight.epochs[i].loss);
    CHECK(augment_resumed.state == augment_straight.state, "the augment generator went another way");

    cnn_model_free(&straight), cnn_model_free(&resumed);
    cnn_optimizer_free(&adam_straight), cnn_optimizer_free(&adam_resumed);
    cnn_fit_state_free(&state_straight), cnn_fit_state_free(&state_resumed);
    cnn_history_free(&history_straight), cnn_history_free(&history_resumed);
    cnn_dataset_free(&train), cnn_dataset_free(&validation);
}

/* Keeps a copy of the parameters after each epoch. */
static int snapshot_params(cnn_model *model, const cnn_epoch_stats *stats, void *user)
{
    (void)stats;
    memcpy(user, model->params, model->param_count * sizeof(float));
    return 0;
}

/* A state whose best epoch came from a fit without early stopping holds no
   weights for it: a later fit with patience must not "restore" them (it
   would copy memory never written), but track its best anew. */
TEST(early_stopping_never_restores_weights_it_did_not_keep)
{
    cnn_dataset train, validation;
    cnn_model model;
    cnn_optimizer adam;
    cnn_fit_state state;
    cnn_fit_desc fit;
    float *last;
    CHECK(make_random_dataset(&train, 24, 8, 4, 41) && make_random_dataset(&validation, 8, 8, 4, 42), "datasets");
    CHECK(build_small_cnn(&model, 8, 4, 8, 43) && cnn_optimizer_init(&adam, &model, NULL) == CNN_OK, "build");
    last = (float *)malloc(model.param_count * sizeof(float));
    memset(&state, 0, sizeof state);
    memset(&fit, 0, sizeof fit);
    fit.epochs = 1;
    fit.validation = &validation;
    fit.state = &state;
    CHECK(cnn_model_fit(&model, &adam, &train, &fit) == CNN_OK, "fit: %s", model.error.message);
    CHECK(state.best_epoch == 1 && !state.best_params, "best epoch %d, best copy %p", state.best_epoch, (void *)state.best_params);
    state.best_loss = -1.0f; /* no later epoch can beat it */
    fit.epochs = 2;
    fit.patience = 1;
    fit.on_epoch = snapshot_params;
    fit.user = last;
    CHECK(cnn_model_fit(&model, &adam, &train, &fit) == CNN_OK, "fit: %s", model.error.message);
    CHECK(state.best_epoch == 2, "best epoch %d: the earlier one, whose weights were never kept", state.best_epoch);
    CHECK(memcmp(model.params, last, model.param_count * sizeof(float)) == 0, "the weights are not epoch 2's");
    free(last);
    cnn_fit_state_free(&state);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_dataset_free(&train), cnn_dataset_free(&validation);
}

TEST(fit_lr_decay_steps_the_rate)
{
    /* two epochs at 0.01, then halved; on_epoch sees the rate the next epoch
       trains at (so a checkpoint saved there holds it) */
    static const float expected[5] = {0.01f, 0.005f, 0.0025f, 0.00125f, 0.000625f};
    static const float bad_decays[3] = {1.5f, -0.5f, 0.5f};
    cnn_dataset data;
    cnn_model model;
    cnn_optimizer sgd;
    cnn_optimizer_desc desc;
    cnn_fit_desc fit;
    rate_log log;
    int i;
    CHECK(make_random_dataset(&data, 32, 8, 4, 12), "dataset");
    CHECK(build_small_cnn(&model, 8, 4, 8, 13), "build");
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_OPTIMIZER_SGD;  /* lr 0.01 by default */
    CHECK(cnn_optimizer_init(&sgd, &model, &desc) == CNN_OK, "optimizer");
    memset(&log, 0, sizeof log);
    log.optimizer = &sgd;
    memset(&fit, 0, sizeof fit);
    fit.epochs = 5;
    fit.on_epoch = record_rate;
    fit.user = &log;
    for (i = 0; i < 3; i++) { /* refused before any step: decay outside (0, 1], or a negative start */
        fit.lr_decay = bad_decays[i];
        fit.lr_decay_after = i == 2 ? -1 : 2;
        CHECK(cnn_model_fit(&model, &sgd, &data, &fit) == CNN_ERROR_INVALID_ARGUMENT, "lr_decay %g after %d accepted",
              (double)fit.lr_decay, fit.lr_decay_after);
    }
    CHECK(sgd.step == 0, "a refused fit took %ld steps", sgd.step);
    fit.lr_decay = 0.5f;
    fit.lr_decay_after = 2;
    CHECK(cnn_model_fit(&model, &sgd, &data, &fit) == CNN_OK, "fit: %s", model.error.message);
    for (i = 0; i < 5; i++)
        CHECK(log.rates[i] == expected[i], "after epoch %d the rate is %g, want %g", i + 1, (double)log.rates[i], (double)expected[i]);
    cnn_optimizer_free(&sgd);
    cnn_model_free(&model);
    cnn_dataset_free(&data);
}

/* Training skips the backward pass in front of the first layer with
   parameters (here a flatten and the dense layer's input gradient): the
   parameter gradients it leaves must be exactly those of a full backward. */
TEST(train_step_gradients_match_full_backward)
{
    cnn_dataset data;
    cnn_model model;
    cnn_optimizer sgd;
    cnn_optimizer_desc desc;
    float *full;
    size_t i, differ = 0;
    CHECK(make_random_dataset(&data, 16, 6, 5, 14), "dataset");
    cnn_model_init(&model, 1, 6, 6, 15);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 12);
    cnn_add_relu(&model);
    cnn_add_dense(&model, 5);
    cnn_add_softmax(&model);
    CHECK(cnn_model_build(&model, 16) == CNN_OK, "build: %s", model.error.message);
    full = (float *)malloc(model.param_count * sizeof(float));
    CHECK(full != NULL, "out of memory");
    CHECK(cnn_model_forward(&model, data.images.data, 16, CNN_MODE_TRAIN) == CNN_OK, "forward");
    cnn_model_zero_grad(&model);
    CHECK(cnn_model_backward(&model, data.labels) == CNN_OK, "backward");
    memcpy(full, model.grads, model.param_count * sizeof(float));
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_OPTIMIZER_SGD;
    CHECK(cnn_optimizer_init(&sgd, &model, &desc) == CNN_OK, "optimizer");
    CHECK(cnn_model_train_step(&model, &sgd, data.images.data, data.labels, 16, NULL, NULL) == CNN_OK, "step");
    for (i = 0; i < model.param_count; i++) differ += model.grads[i] != full[i];
    CHECK(differ == 0, "%zu of %zu gradients differ", differ, model.param_count);
    free(full);
    cnn_optimizer_free(&sgd);
    cnn_model_free(&model);
    cnn_dataset_free(&data);
}

/* The models of shared_buffers_give_the_same_bits (input (2, 8, 8), 5
   classes): every layer that can run in place, next to the layers that
   stop it (an activation before it, the input, a negative alpha), and
   gradients written over conv2d, dense, pool, batch norm and residual
   outputs. */
static void add_sharing_model(cnn_model *model, int which)
{
    switch (which) {
    case 0: /* the seed CNN in small: LeakyReLU over conv2d, dropout over max pool, flatten over dropout */
        cnn_add_conv2d(model, 4, 3, 1, 1);
        cnn_add_leaky_relu(model, 0.3f);
        cnn_add_conv2d(model, 4, 3, 1, 1);
        cnn_add_leaky_relu(model, 0.3f);
        cnn_add_max_pool(model, 2, 2);
        cnn_add_dropout(model, 0.25f);
        cnn_add_flatten(model);
        cnn_add_dense(model, 16);
        cnn_add_relu(model);
        cnn_add_dropout(model, 0.2f); /* after ReLU: keeps its own buffer */
        break;
    case 1: /* activations after activations, a negative alpha, average pooling, tanh */
        cnn_add_conv2d(model, 3, 3, 1, 0);
        cnn_add_relu(model);
        cnn_add_relu(model);
        cnn_add_sigmoid(model);
        cnn_add_conv2d(model, 4, 3, 1, 1);
        cnn_add_leaky_relu(model, -0.5f);
        cnn_add_avg_pool(model, 2, 2);
        cnn_add_flatten(model);
        cnn_add_dense(model, 10);
        cnn_add_tanh(model);
        break;
    case 2: /* ReLU on the input; batch norm and residual blocks, identity and projection */
        cnn_add_relu(model);
        cnn_add_conv2d(model, 4, 3, 1, 1);
        cnn_add_batch_norm(model);
        cnn_add_relu(model);
        cnn_add_residual_begin(model);
        cnn_add_conv2d(model, 4, 3, 1, 1);
        cnn_add_batch_norm(model);
        cnn_add_relu(model);
        cnn_add_conv2d(model, 4, 3, 1, 1);
        cnn_add_residual_end(model, CNN_INIT_HE_NORMAL);
        cnn_add_relu(model);
        cnn_add_residual_begin(model);
        cnn_add_conv2d(model, 6, 3, 2, 1);
        cnn_add_relu(model);
        cnn_add_residual_end(model, CNN_INIT_HE_NORMAL);
        cnn_add_relu(model);
        cnn_add_global_avg_pool(model);
        break;
    default: /* flatten on the input, sigmoid then dropout */
        cnn_add_flatten(model);
        cnn_add_dense(model, 12);
        cnn_add_sigmoid(model);
        cnn_add_dropout(model, 0.3f);
        cnn_add_dense(model, 12);
        cnn_add_relu(model);
        break;
    }
    cnn_add_dense(model, 5);
    cnn_add_softmax(model);
}

/* Layers that run in place and gradients written over activations change
   where values live, never what they are: a model built with sharing (the
   default) and the same model with cnn_model_keep_outputs must train to
   the same bits (3 Adam steps, dropout included), and give the same
   outputs and input gradients (a full backward pass) afterwards. */
TEST(shared_buffers_give_the_same_bits)
{
    enum { N = 6, SAMPLE = 2 * 8 * 8 };
    float x[N * SAMPLE];
    int labels[N], which, k, step;
    cnn_rng rng;
    for (which = 0; which < 4; which++) {
        cnn_model model[2];
        cnn_optimizer adam[2];
        float loss[2];
        int correct[2], distinct[2], built = 1;
        size_t i, differ = 0;
        for (k = 0; k < 2; k++) {
            cnn_model_init(&model[k], 2, 8, 8, 40 + which);
            if (k == 1) CHECK(cnn_model_keep_outputs(&model[k], 1) == CNN_OK, "keep_outputs: %s", model[k].error.message);
            add_sharing_model(&model[k], which);
            built &= cnn_model_build(&model[k], N) == CNN_OK && cnn_optimizer_init(&adam[k], &model[k], NULL) == CNN_OK;
            CHECK(built, "model %d: build: %s", which, model[k].error.message);
            if (!built) return;
            for (distinct[k] = 1, i = 1; i <= (size_t)model[k].layer_count; i++)
                distinct[k] += model[k].activations[i].data != model[k].activations[i - 1].data;
        }
        CHECK(distinct[1] == model[1].layer_count + 1, "model %d: kept, %d of %d activations have their own buffer", which,
              distinct[1], model[1].layer_count + 1);
        CHECK(distinct[0] < distinct[1], "model %d: shared, still %d buffers of activations", which, distinct[0]);
        CHECK(cnn_model_keep_outputs(&model[1], 0) == CNN_ERROR_STATE, "keep_outputs after the build is refused");
        if (which == 0)
            CHECK(model[0].activations[2].data == model[0].activations[1].data &&
                  model[0].activations[6].data == model[0].activations[5].data &&
                  model[0].activations[7].data == model[0].activations[5].data &&
                  model[0].activations[10].data != model[0].activations[9].data,
                  "model 0: LeakyReLU, dropout and flatten in place, the dropout after ReLU not");
        cnn_rng_seed(&rng, 90 + which);
        for (step = 0; step < 3; step++) {
            test_fill_uniform(&rng, x, sizeof x / sizeof x[0], -1.0f, 1.0f);
            for (i = 0; i < N; i++) labels[i] = (int)(cnn_rng_next(&rng) % 5);
            for (k = 0; k < 2; k++)
                CHECK(cnn_model_train_step(&model[k], &adam[k], x, labels, N, &loss[k], &correct[k]) == CNN_OK, "model %d: step: %s",
                      which, model[k].error.message);
            CHECK(memcmp(&loss[0], &loss[1], sizeof loss[0]) == 0 && correct[0] == correct[1],
                  "model %d, step %d: loss %.9g shared, %.9g kept", which, step, (double)loss[0], (double)loss[1]);
        }
        for (i = 0; i < model[0].param_count + model[0].state_count; i++) differ += memcmp(&model[0].params[i], &model[1].params[i], sizeof(float)) != 0;
        CHECK(differ == 0, "model %d: %lu of %lu trained values differ", which, (unsigned long)differ,
              (unsigned long)(model[0].param_count + model[0].state_count));
        for (k = 0; k < 2; k++) {
            CHECK(cnn_model_forward(&model[k], x, N, CNN_MODE_TRAIN) == CNN_OK, "forward");
            cnn_model_zero_grad(&model[k]);
            CHECK(cnn_model_backward(&model[k], labels) == CNN_OK, "model %d: backward: %s", which, model[k].error.message);
        }
        CHECK(memcmp(cnn_model_output(&model[0]), cnn_model_output(&model[1]), N * 5 * sizeof(float)) == 0 &&
              memcmp(model[0].activation_grads[0].data, model[1].activation_grads[0].data, sizeof x) == 0 &&
              memcmp(model[0].grads, model[1].grads, model[0].param_count * sizeof(float)) == 0,
              "model %d: outputs, input gradients or parameter gradients differ", which);
        CHECK(memcmp(model[0].activations[0].data, x, sizeof x) == 0, "model %d: the input was overwritten", which);
        for (k = 0; k < 2; k++) {
            cnn_optimizer_free(&adam[k]);
            cnn_model_free(&model[k]);
        }
    }
}

/* A backward pass writes gradients over activations it is done with, but
   never over the last two, which cnn_model_loss and cnn_model_output read,
   even where a layer run in place (dropout, flatten, ReLU) shares their
   memory with an earlier layer's output: the loss and the output are the
   same after a backward pass as before it. */
TEST(backward_keeps_logits_and_output)
{
    enum { N = 3 };
    static const int labels[N] = {0, 2, 1};
    float x[N * 2 * 8 * 8], before[N * 128], loss[2];
    int which;
    cnn_rng rng;
    cnn_rng_seed(&rng, 5);
    test_fill_uniform(&rng, x, sizeof x / sizeof x[0], -1.0f, 1.0f);
    for (which = 0; which < 3; which++) {
        cnn_model model;
        size_t outputs;
        if (which == 0) { /* dense -> dropout -> softmax: the logits are dense's output */
            cnn_model_init(&model, 4, 1, 1, 7);
            cnn_add_dense(&model, 10);
            cnn_add_dropout(&model, 0.5f);
        } else { /* conv -> flatten (-> ReLU) -> softmax: the logits are conv's output */
            cnn_model_init(&model, 2, 8, 8, 7);
            cnn_add_conv2d(&model, 2, 3, 1, 1); /* its input gradient fits in its output */
            cnn_add_flatten(&model);
            if (which == 2) cnn_add_relu(&model);
        }
        cnn_add_softmax(&model);
        if (cnn_model_build(&model, N) != CNN_OK) {
            CHECK(0, "model %d: build: %s", which, model.error.message);
            cnn_model_free(&model);
            continue;
        }
        outputs = (size_t)N * cnn_shape_count(cnn_model_output_shape(&model));
        CHECK(model.activations[model.layer_count - 1].data == model.activations[model.layer_count - 2].data,
              "model %d: the layer before softmax does not run in place", which);
        CHECK(cnn_model_forward(&model, x, N, CNN_MODE_TRAIN) == CNN_OK, "forward");
        CHECK(cnn_model_loss(&model, labels, &loss[0], NULL) == CNN_OK, "loss");
        memcpy(before, cnn_model_output(&model), outputs * sizeof(float));
        cnn_model_zero_grad(&model);
        CHECK(cnn_model_backward(&model, labels) == CNN_OK, "model %d: backward: %s", which, model.error.message);
        CHECK(cnn_model_loss(&model, labels, &loss[1], NULL) == CNN_OK, "loss");
        CHECK(memcmp(&loss[0], &loss[1], sizeof loss[0]) == 0 && memcmp(before, cnn_model_output(&model), outputs * sizeof(float)) == 0,
              "model %d: loss %.9g before the backward pass, %.9g after, or the output changed", which, (double)loss[0],
              (double)loss[1]);
        cnn_model_free(&model);
    }
}

/* One epoch of LeNet-5 on 12,000 real EMNIST training images (batch 64,
   Adam 1e-3), scored on 4,000 test images. Measured with seeds 1 to 6:
   65.6, 64.5, 63.8, 60.5, 63.9 and 67.8%; an untrained net scores about 2%
   (1 in 47). The floor of 50% is ten points under the worst seed, so seed
   and compiler differences cannot trip it, while a broken pipeline (wrong
   labels, a layer that does not learn, a sign error) stays far below it.
   The finite-difference and reference tests catch the subtle errors. */
TEST(lenet5_one_epoch_on_emnist)
{
    char train_path[1024], test_path[1024];
    cnn_dataset train, test;
    cnn_data_desc desc;
    cnn_model model;
    cnn_optimizer adam;
    cnn_fit_desc fit;
    float loss = 0.0f, accuracy = 0.0f;
    cnn_result r;
    if (!test_emnist_path(train_path, sizeof train_path, "train")) SKIP("%s", train_path);
    if (!test_emnist_path(test_path, sizeof test_path, "test")) SKIP("%s", test_path);
    memset(&desc, 0, sizeof desc);
    desc.num_classes = 47;
    desc.max_rows = 12000;
    CHECK(cnn_dataset_load_csv(&train, train_path, &desc) == CNN_OK, "%s", train.error.message);
    desc.max_rows = 4000;
    CHECK(cnn_dataset_load_csv(&test, test_path, &desc) == CNN_OK, "%s", test.error.message);
    cnn_model_init(&model, 1, 28, 28, 1);
    cnn_add_lenet5(&model, 47);
    r = cnn_model_build(&model, 64);
    CHECK(r == CNN_OK, "build: %s", model.error.message);
    CHECK(model.param_count == 64851, "LeNet-5 with 47 classes has 64,851 parameters, got %lu", (unsigned long)model.param_count);
    CHECK(cnn_optimizer_init(&adam, &model, NULL) == CNN_OK, "optimizer");
    memset(&fit, 0, sizeof fit);
    fit.epochs = 1;
    CHECK(cnn_model_fit(&model, &adam, &train, &fit) == CNN_OK, "fit: %s", model.error.message);
    CHECK(cnn_model_evaluate(&model, &test, &loss, &accuracy) == CNN_OK, "evaluate");
    printf("    one epoch on 12,000 EMNIST images: test accuracy %.2f%%, loss %.4f\n", 100.0 * accuracy, (double)loss);
    CHECK(accuracy >= 0.50f, "test accuracy %.2f%% is below the 50%% floor", 100.0 * accuracy);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_dataset_free(&train);
    cnn_dataset_free(&test);
}

int main(void)
{
    RUN(overfits_64_random_samples);
    RUN(nan_loss_stops_without_update);
    RUN(evaluate_agrees_with_predict);
    RUN(fit_callback_can_stop);
    RUN(fit_lr_decay_steps_the_rate);
    RUN(resumed_training_is_bit_identical);
    RUN(early_stopping_never_restores_weights_it_did_not_keep);
    RUN(train_step_gradients_match_full_backward);
    RUN(shared_buffers_give_the_same_bits);
    RUN(backward_keeps_logits_and_output);
    RUN(lenet5_one_epoch_on_emnist);
    return test_report();
}
