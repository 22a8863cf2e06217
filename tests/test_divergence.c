/* test_divergence.c - training that diverges stops with CNN_ERROR_NOT_FINITE
   and leaves the last good weights: whether the NaN or infinity shows up in
   the loss, in a gradient, or only in the weights an update would produce
   (an overflow). Through cnn_model_fit the message names the epoch and step. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

/* A dense classifier on (4, 1, 1) inputs: small enough that every number in
   these tests can be worked out by hand. */
static int build_dense(cnn_model *model, int max_batch)
{
    return cnn_model_init(model, 4, 1, 1, 7) == CNN_OK && cnn_add_dense(model, 3) == CNN_OK &&
           cnn_add_softmax(model) == CNN_OK && cnn_model_build(model, max_batch) == CNN_OK;
}

static int all_finite(const float *values, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        if (!isfinite(values[i])) return 0;
    return 1;
}

/* The loss and gradients are finite, but learning rate 3e38 times a gradient
   of about 90 overflows float: the step must be refused, not write inf. */
TEST(overflowing_update_is_refused)
{
    cnn_model model;
    cnn_optimizer sgd;
    cnn_optimizer_desc desc;
    float input[4] = {100.0f, -50.0f, 20.0f, 80.0f}, *before, loss = -1.0f;
    int label = 1, correct = -1;
    CHECK(build_dense(&model, 2), "build: %s", model.error.message);
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_OPTIMIZER_SGD;
    desc.learning_rate = 3e38f;
    CHECK(cnn_optimizer_init(&sgd, &model, &desc) == CNN_OK, "optimizer: %s", model.error.message);
    before = (float *)malloc(model.param_count * sizeof(float));
    memcpy(before, model.params, model.param_count * sizeof(float));
    CHECK(cnn_model_train_step(&model, &sgd, input, &label, 1, &loss, &correct) == CNN_ERROR_NOT_FINITE, "code %d: %s",
          (int)model.error.code, model.error.message);
    CHECK(model.error.code == CNN_ERROR_NOT_FINITE, "error.code %d", (int)model.error.code);
    CHECK(memcmp(before, model.params, model.param_count * sizeof(float)) == 0, "weights changed");
    CHECK(all_finite(model.grads, model.param_count), "the gradients themselves were finite");
    CHECK(sgd.step == 0, "optimiser step counter moved to %ld", sgd.step);
    CHECK(sgd.first_moment[0] == 0.0f && all_finite(sgd.first_moment, model.param_count), "velocity changed");
    CHECK(strstr(model.error.message, "the update of parameter") && strstr(model.error.message, "layer 1, dense"),
          "message: %s", model.error.message);
    /* the same model trains normally once the learning rate is sane */
    sgd.desc.learning_rate = 1e-2f;
    CHECK(cnn_model_train_step(&model, &sgd, input, &label, 1, &loss, &correct) == CNN_OK, "sane step: %s", model.error.message);
    CHECK(sgd.step == 1 && memcmp(before, model.params, model.param_count * sizeof(float)) != 0, "sane step did not update");
    CHECK(all_finite(model.params, model.param_count), "weights not finite after a sane step");
    free(before);
    cnn_optimizer_free(&sgd);
    cnn_model_free(&model);
}

/* Adam squares the gradient: g = 1e22 is finite, (1 - b2) g^2 = 1e41 is not. */
TEST(adam_overflowing_moment_is_refused)
{
    cnn_model model;
    cnn_optimizer adam;
    float *before;
    CHECK(build_dense(&model, 1), "build");
    CHECK(cnn_optimizer_init(&adam, &model, NULL) == CNN_OK, "optimizer");
    before = (float *)malloc(model.param_count * sizeof(float));
    memcpy(before, model.params, model.param_count * sizeof(float));
    cnn_model_zero_grad(&model);
    model.grads[5] = 1e22f;
    CHECK(cnn_optimizer_step(&adam, &model) == CNN_ERROR_NOT_FINITE, "code %d", (int)model.error.code);
    CHECK(memcmp(before, model.params, model.param_count * sizeof(float)) == 0, "weights changed");
    CHECK(adam.step == 0 && adam.second_moment[5] == 0.0f && adam.first_moment[5] == 0.0f, "optimiser state changed");
    CHECK(strstr(model.error.message, "parameter 5 ") != NULL, "message: %s", model.error.message);
    /* a large but safe gradient goes through, and Adam's first step moves
       each weight by about the learning rate (m / sqrt(v) = sign g) */
    model.grads[5] = 1e10f;
    CHECK(cnn_optimizer_step(&adam, &model) == CNN_OK, "code %d: %s", (int)model.error.code, model.error.message);
    CHECK(fabsf(before[5] - model.params[5] - 1e-3f) < 1e-6f, "moved by %g", (double)(before[5] - model.params[5]));
    free(before);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
}

/* Adam's new value overflows although g, m and v are finite: a weight of
   3.3e38 moved by the learning rate 3e37 (Adam's first step moves a weight
   by about the learning rate) is past FLT_MAX (3.4e38). The optimiser skips the exact
   check of the new value only where |p| and |m| are small enough to prove
   it finite; here it must not. */
TEST(adam_overflowing_update_is_refused)
{
    cnn_model model;
    cnn_optimizer adam;
    cnn_optimizer_desc desc;
    float *before;
    CHECK(build_dense(&model, 1), "build");
    memset(&desc, 0, sizeof desc);
    desc.learning_rate = 3e37f;
    CHECK(cnn_optimizer_init(&adam, &model, &desc) == CNN_OK, "optimizer");
    model.params[2] = 3.3e38f;
    before = (float *)malloc(model.param_count * sizeof(float));
    memcpy(before, model.params, model.param_count * sizeof(float));
    cnn_model_zero_grad(&model);
    model.grads[2] = -1.0f;
    CHECK(cnn_optimizer_step(&adam, &model) == CNN_ERROR_NOT_FINITE, "code %d", (int)model.error.code);
    CHECK(strstr(model.error.message, "the update of parameter 2 ") != NULL, "message: %s", model.error.message);
    CHECK(memcmp(before, model.params, model.param_count * sizeof(float)) == 0, "weights changed");
    /* the same gradient on the other side brings the weight down: finite */
    model.grads[2] = 1.0f;
    CHECK(cnn_optimizer_step(&adam, &model) == CNN_OK, "code %d: %s", (int)model.error.code, model.error.message);
    CHECK(model.params[2] < 3.3e38f && isfinite(model.params[2]), "weight %g", (double)model.params[2]);
    free(before);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
}

/* A NaN gradient (from a custom loss through cnn_model_backward_from) is
   refused by the optimiser, for SGD and Adam alike. */
TEST(nan_gradient_is_refused)
{
    cnn_model model;
    cnn_optimizer optimizer;
    cnn_optimizer_desc desc;
    float input[4] = {0.5f, 0.25f, -1.0f, 2.0f}, output_grad[3] = {0.1f, (float)NAN, -0.1f}, *before;
    int type;
    for (type = 0; type < 2; type++) {
        CHECK(build_dense(&model, 1), "build");
        memset(&desc, 0, sizeof desc);
        desc.type = type ? CNN_OPTIMIZER_SGD : CNN_OPTIMIZER_ADAM;
        CHECK(cnn_optimizer_init(&optimizer, &model, &desc) == CNN_OK, "optimizer");
        before = (float *)malloc(model.param_count * sizeof(float));
        memcpy(before, model.params, model.param_count * sizeof(float));
        CHECK(cnn_model_forward(&model, input, 1, CNN_MODE_TRAIN) == CNN_OK, "forward");
        cnn_model_zero_grad(&model);
        CHECK(cnn_model_backward_from(&model, output_grad) == CNN_OK, "backward");
        CHECK(!all_finite(model.grads, model.param_count), "the NaN did not reach the gradients");
        CHECK(cnn_optimizer_step(&optimizer, &model) == CNN_ERROR_NOT_FINITE, "%s: code %d", type ? "sgd" : "adam",
              (int)model.error.code);
        CHECK(strstr(model.error.message, "the gradient of parameter") != NULL, "message: %s", model.error.message);
        CHECK(memcmp(before, model.params, model.param_count * sizeof(float)) == 0, "weights changed");
        CHECK(optimizer.step == 0, "step counter moved");
        free(before);
        cnn_optimizer_free(&optimizer);
        cnn_model_free(&model);
    }
}

/* Through fit: an augment callback (which runs before each step) turns the
   batch of epoch 2, step 3 into four identical images of pixels 1e30 with
   labels 0, 1, 2, 0. The loss and gradients stay finite (about 1e30; the
   mixed labels make sure the gradient is not 0), but Adam's second moment
   (1 - b2) g^2 would overflow. Fit must stop with an error naming that epoch
   and step, and the model must hold exactly the weights it had before it. */
typedef struct {
    int epoch, step, steps_per_epoch, calls;
    float *snapshot;
    size_t count;
} poison_plan;

static cnn_result poison_batch(cnn_model *model, float *images, int *labels, int batch, void *user)
{
    poison_plan *plan = (poison_plan *)user;
    int epoch = plan->calls / plan->steps_per_epoch + 1, step = plan->calls % plan->steps_per_epoch + 1, i;
    plan->calls++;
    if (epoch == plan->epoch && step == plan->step) {
        memcpy(plan->snapshot, model->params, plan->count * sizeof(float));
        for (i = 0; i < batch * 4; i++) images[i] = 1e30f;
        for (i = 0; i < batch; i++) labels[i] = i % 3;
    }
    return CNN_OK;
}

TEST(fit_stops_naming_epoch_and_step_with_last_good_weights)
{
    cnn_model model;
    cnn_optimizer adam;
    cnn_dataset data;
    cnn_fit_desc fit;
    poison_plan plan;
    int i;
    cnn_result result;
    CHECK(build_dense(&model, 4), "build");
    CHECK(cnn_optimizer_init(&adam, &model, NULL) == CNN_OK, "optimizer");
    memset(&data, 0, sizeof data);
    CHECK(cnn_tensor_alloc(&data.images, 16, 4, 1, 1) == CNN_OK, "images");
    data.labels = (int *)malloc(16 * sizeof(int));
    for (i = 0; i < 64; i++) data.images.data[i] = (float)((i * 7) % 5) / 5.0f;
    for (i = 0; i < 16; i++) data.labels[i] = i % 3;
    data.count = 16;
    data.num_classes = 3;
    memset(&plan, 0, sizeof plan);
    plan.epoch = 2;
    plan.step = 3;
    plan.steps_per_epoch = 4; /* 16 samples in batches of 4 */
    plan.count = model.param_count;
    plan.snapshot = (float *)malloc(model.param_count * sizeof(float));
    memset(&fit, 0, sizeof fit);
    fit.epochs = 5;
    fit.augment = poison_batch;
    fit.augment_user = &plan;
    result = cnn_model_fit(&model, &adam, &data, &fit);
    CHECK(result == CNN_ERROR_NOT_FINITE, "fit returned %d: %s", (int)result, model.error.message);
    CHECK(strstr(model.error.message, "epoch 2, step 3: the update of parameter") != NULL, "message: %s", model.error.message);
    CHECK(plan.calls == 7, "fit went on after the bad step: %d augment calls", plan.calls);
    CHECK(adam.step == 6, "optimiser took %ld steps, 6 were good", adam.step);
    CHECK(memcmp(plan.snapshot, model.params, model.param_count * sizeof(float)) == 0, "weights are not those before the bad step");
    CHECK(all_finite(model.params, model.param_count), "weights not finite");
    free(plan.snapshot);
    cnn_dataset_free(&data);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
}

/* And with a step that overflows only in the update (loss and gradient
   finite): fit stops at the first step, the weights untouched. */
TEST(fit_stops_on_overflowing_weights)
{
    cnn_model model;
    cnn_optimizer sgd;
    cnn_optimizer_desc desc;
    cnn_dataset data;
    cnn_fit_desc fit;
    float *before;
    int i;
    CHECK(build_dense(&model, 2), "build");
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_OPTIMIZER_SGD;
    desc.learning_rate = 3e38f;
    CHECK(cnn_optimizer_init(&sgd, &model, &desc) == CNN_OK, "optimizer");
    memset(&data, 0, sizeof data);
    CHECK(cnn_tensor_alloc(&data.images, 4, 4, 1, 1) == CNN_OK, "images");
    data.labels = (int *)malloc(4 * sizeof(int));
    for (i = 0; i < 16; i++) data.images.data[i] = 50.0f + (float)i;
    for (i = 0; i < 4; i++) data.labels[i] = i % 3;
    data.count = 4;
    before = (float *)malloc(model.param_count * sizeof(float));
    memcpy(before, model.params, model.param_count * sizeof(float));
    memset(&fit, 0, sizeof fit);
    fit.epochs = 3;
    CHECK(cnn_model_fit(&model, &sgd, &data, &fit) == CNN_ERROR_NOT_FINITE, "code %d: %s", (int)model.error.code, model.error.message);
    CHECK(strstr(model.error.message, "epoch 1, step 1: the update of parameter") != NULL, "message: %s", model.error.message);
    CHECK(memcmp(before, model.params, model.param_count * sizeof(float)) == 0, "weights changed");
    free(before);
    cnn_dataset_free(&data);
    cnn_optimizer_free(&sgd);
    cnn_model_free(&model);
}

int main(void)
{
    RUN(overflowing_update_is_refused);
    RUN(adam_overflowing_moment_is_refused);
    RUN(adam_overflowing_update_is_refused);
    RUN(nan_gradient_is_refused);
    RUN(fit_stops_naming_epoch_and_step_with_last_good_weights);
    RUN(fit_stops_on_overflowing_weights);
    return test_report();
}
