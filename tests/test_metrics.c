/* test_metrics.c - the validation split, per-epoch validation, progress
   callbacks, early stopping with the best weights restored, and confusion
   matrices with per-class precision and recall. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

/* count images (1, side, side) whose pixels all hold the sample's index, so
   a copied sample can be traced back; labels are the index modulo classes. */
static int make_numbered_dataset(cnn_dataset *data, int count, int side, int classes)
{
    int i;
    size_t p, sample = (size_t)side * (size_t)side;
    memset(data, 0, sizeof *data);
    if (cnn_tensor_alloc(&data->images, count, 1, side, side) != CNN_OK) return 0;
    data->labels = (int *)malloc((size_t)count * sizeof(int));
    if (!data->labels) return 0;
    for (i = 0; i < count; i++) {
        for (p = 0; p < sample; p++) data->images.data[(size_t)i * sample + p] = (float)i;
        data->labels[i] = i % classes;
    }
    data->count = count;
    data->num_classes = classes;
    return 1;
}


static int build_mlp(cnn_model *model, int side, int classes, int max_batch, uint64_t seed)
{
    return cnn_model_init(model, 1, side, side, seed) == CNN_OK && cnn_add_flatten(model) == CNN_OK &&
           cnn_add_dense(model, 32) == CNN_OK && cnn_add_relu(model) == CNN_OK && cnn_add_dropout(model, 0.1f) == CNN_OK &&
           cnn_add_dense(model, classes) == CNN_OK && cnn_add_softmax(model) == CNN_OK &&
           cnn_model_build(model, max_batch) == CNN_OK;
}

/* The index a sample was numbered with by make_numbered_dataset. */
static int sample_id(const cnn_dataset *data, int i)
{
    return (int)data->images.data[(size_t)i * data->images.h * data->images.w];
}

TEST(split_sizes_default_and_rounding)
{
    cnn_dataset all, train, validation;
    CHECK(make_numbered_dataset(&all, 1000, 2, 7), "dataset");
    CHECK(cnn_dataset_split(&all, 0.0f, 1, &train, &validation) == CNN_OK, "split: %s", train.error.message);
    CHECK(train.count == 900 && validation.count == 100, "default 10%%: %d + %d", train.count, validation.count);
    CHECK(train.images.n == 900 && validation.images.n == 100, "tensor sizes %d %d", train.images.n, validation.images.n);
    CHECK(train.num_classes == 7 && validation.num_classes == 7, "classes %d %d", train.num_classes, validation.num_classes);
    cnn_dataset_free(&train);
    cnn_dataset_free(&validation);
    CHECK(cnn_dataset_split(&all, 0.25f, 1, &train, &validation) == CNN_OK, "split 0.25");
    CHECK(train.count == 750 && validation.count == 250, "25%%: %d + %d", train.count, validation.count);
    cnn_dataset_free(&train);
    cnn_dataset_free(&validation);
    CHECK(cnn_dataset_split(&all, 0.0001f, 1, &train, &validation) == CNN_OK, "split tiny");
    CHECK(validation.count == 1 && train.count == 999, "at least one held out: %d + %d", train.count, validation.count);
    cnn_dataset_free(&train);
    cnn_dataset_free(&validation);
    cnn_dataset_free(&all);
}

TEST(split_is_disjoint_complete_and_ordered)
{
    cnn_dataset all, train, validation;
    static int seen[1000];
    int i, ok = 1, ordered = 1;
    CHECK(make_numbered_dataset(&all, 1000, 3, 10), "dataset");
    CHECK(cnn_dataset_split(&all, 0.1f, 42, &train, &validation) == CNN_OK, "split");
    memset(seen, 0, sizeof seen);
    for (i = 0; i < train.count; i++) {
        int id = sample_id(&train, i);
        seen[id]++;
        ok &= train.labels[i] == id % 10 && train.images.data[(size_t)i * 9 + 8] == (float)id;
        if (i > 0) ordered &= sample_id(&train, i - 1) < id;
    }
    for (i = 0; i < validation.count; i++) {
        int id = sample_id(&validation, i);
        seen[id]++;
        ok &= validation.labels[i] == id % 10;
        if (i > 0) ordered &= sample_id(&validation, i - 1) < id;
    }
    CHECK(ok, "images and labels travel together");
    CHECK(ordered, "both parts keep the source order");
    for (i = 0; i < 1000; i++) CHECK(seen[i] == 1, "sample %d appears %d times", i, seen[i]);
    /* the held-out samples are spread over the whole set, not a block */
    CHECK(sample_id(&validation, 0) < 100 && sample_id(&validation, validation.count - 1) >= 900, "validation from %d to %d",
          sample_id(&validation, 0), sample_id(&validation, validation.count - 1));
    cnn_dataset_free(&train);
    cnn_dataset_free(&validation);
    cnn_dataset_free(&all);
}

TEST(split_is_deterministic_per_seed)
{
    cnn_dataset all, a_train, a_val, b_train, b_val, c_train, c_val;
    int i, same = 1, differ = 0;
    CHECK(make_numbered_dataset(&all, 500, 2, 5), "dataset");
    CHECK(cnn_dataset_split(&all, 0.2f, 7, &a_train, &a_val) == CNN_OK, "split a");
    CHECK(cnn_dataset_split(&all, 0.2f, 7, &b_train, &b_val) == CNN_OK, "split b");
    CHECK(cnn_dataset_split(&all, 0.2f, 8, &c_train, &c_val) == CNN_OK, "split c");
    for (i = 0; i < a_val.count; i++) {
        same &= sample_id(&a_val, i) == sample_id(&b_val, i);
        differ |= sample_id(&a_val, i) != sample_id(&c_val, i);
    }
    CHECK(same, "the same seed gives the same split");
    CHECK(differ, "another seed gives another split");
    cnn_dataset_free(&a_train); cnn_dataset_free(&a_val);
    cnn_dataset_free(&b_train); cnn_dataset_free(&b_val);
    cnn_dataset_free(&c_train); cnn_dataset_free(&c_val);
    cnn_dataset_free(&all);
}

TEST(split_refuses_bad_arguments)
{
    cnn_dataset all, train, validation;
    CHECK(make_numbered_dataset(&all, 10, 2, 2), "dataset");
    CHECK(cnn_dataset_split(&all, 1.0f, 1, &train, &validation) == CNN_ERROR_INVALID_ARGUMENT, "fraction 1");
    CHECK(strstr(train.error.message, "fraction") != NULL, "message: %s", train.error.message);
    CHECK(train.count == 0 && !train.images.data && validation.count == 0, "left empty");
    CHECK(cnn_dataset_split(&all, -0.1f, 1, &train, &validation) == CNN_ERROR_INVALID_ARGUMENT, "negative fraction");
    all.count = 1;
    CHECK(cnn_dataset_split(&all, 0.5f, 1, &train, &validation) == CNN_ERROR_INVALID_ARGUMENT, "one sample");
    all.count = 10;
    CHECK(cnn_dataset_split(NULL, 0.5f, 1, &train, &validation) == CNN_ERROR_INVALID_ARGUMENT, "no source");
    cnn_dataset_free(&all);
}

/* 3 classes, 10 samples:
     true 0: predicted 0 0 0 1        true 1: predicted 1 1 0
     true 2: predicted 2 1 2          (nothing is predicted wrongly as 2)
   confusion (rows true, columns predicted):
     3 1 0
     1 2 0
     0 1 2                                                              */
TEST(confusion_matrix_by_hand)
{
    static const int labels[10] = {0, 0, 0, 0, 1, 1, 1, 2, 2, 2};
    static const int predicted[10] = {0, 0, 0, 1, 1, 1, 0, 2, 1, 2};
    static const int expected[9] = {3, 1, 0, 1, 2, 0, 0, 1, 2};
    int matrix[9], i;
    cnn_class_metrics m[3];
    for (i = 0; i < 9; i++) matrix[i] = 99; /* zeroed first */
    CHECK(cnn_confusion_count(labels, predicted, 10, 3, matrix) == CNN_OK, "count");
    for (i = 0; i < 9; i++) CHECK(matrix[i] == expected[i], "cell %d: %d, expected %d", i, matrix[i], expected[i]);
    CHECK(fabs(cnn_confusion_accuracy(matrix, 3) - 0.7) < 1e-6, "accuracy %g", (double)cnn_confusion_accuracy(matrix, 3));
    CHECK(cnn_confusion_metrics(matrix, 3, m) == CNN_OK, "metrics");
    /* class 0: 3 right of 4 true, of 4 predicted; class 1: 2 of 3 true, of 4 predicted; class 2: 2 of 3, of 2 */
    CHECK(m[0].support == 4 && m[0].predicted == 4 && m[0].correct == 3, "class 0 counts %d %d %d", m[0].support, m[0].predicted, m[0].correct);
    CHECK(fabs(m[0].precision - 0.75) < 1e-6 && fabs(m[0].recall - 0.75) < 1e-6, "class 0: %g %g", (double)m[0].precision, (double)m[0].recall);
    CHECK(fabs(m[1].precision - 0.5) < 1e-6 && fabs(m[1].recall - 2.0 / 3.0) < 1e-6, "class 1: %g %g", (double)m[1].precision, (double)m[1].recall);
    CHECK(fabs(m[1].f1 - 4.0 / 7.0) < 1e-6, "class 1 f1 %g", (double)m[1].f1);
    CHECK(fabs(m[2].precision - 1.0) < 1e-6 && fabs(m[2].recall - 2.0 / 3.0) < 1e-6, "class 2: %g %g", (double)m[2].precision, (double)m[2].recall);
    CHECK(m[2].support == 3 && m[2].predicted == 2, "class 2 counts %d %d", m[2].support, m[2].predicted);
}

TEST(confusion_metrics_of_empty_classes_are_zero)
{
    static const int labels[3] = {0, 0, 1};
    static const int predicted[3] = {0, 1, 1};
    int matrix[9];
    cnn_class_metrics m[3];
    CHECK(cnn_confusion_count(labels, predicted, 3, 3, matrix) == CNN_OK, "count");
    CHECK(cnn_confusion_metrics(matrix, 3, m) == CNN_OK, "metrics");
    CHECK(m[2].support == 0 && m[2].predicted == 0, "class 2 unseen");
    CHECK(m[2].precision == 0.0f && m[2].recall == 0.0f && m[2].f1 == 0.0f, "zeros, not NaN: %g %g %g", (double)m[2].precision,
          (double)m[2].recall, (double)m[2].f1);
    CHECK(cnn_confusion_count(labels, predicted, 3, 1, matrix) == CNN_ERROR_INVALID_ARGUMENT, "label out of range refused");
    CHECK(cnn_confusion_accuracy(matrix, 0) == 0.0f, "no classes");
}

TEST(model_confusion_agrees_with_predict)
{
    cnn_dataset data;
    cnn_model model;
    int *predicted, matrix[25], expected[25], i;
    float accuracy;
    CHECK(make_random_dataset(&data, 300, 4, 5, 11), "dataset");
    CHECK(build_mlp(&model, 4, 5, 64, 2), "build: %s", model.error.message);
    predicted = (int *)malloc(300 * sizeof(int));
    CHECK(cnn_model_predict(&model, data.images.data, 300, predicted, NULL) == CNN_OK, "predict");
    CHECK(cnn_confusion_count(data.labels, predicted, 300, 5, expected) == CNN_OK, "count");
    CHECK(cnn_model_confusion(&model, &data, matrix) == CNN_OK, "confusion: %s", model.error.message);
    for (i = 0; i < 25; i++) CHECK(matrix[i] == expected[i], "cell %d: %d vs %d", i, matrix[i], expected[i]);
    CHECK(cnn_model_evaluate(&model, &data, NULL, &accuracy) == CNN_OK, "evaluate");
    CHECK(fabs(cnn_confusion_accuracy(matrix, 5) - accuracy) < 1e-6, "accuracy %g vs %g", (double)cnn_confusion_accuracy(matrix, 5),
          (double)accuracy);
    data.labels[7] = 5;
    CHECK(cnn_model_confusion(&model, &data, matrix) == CNN_ERROR_INVALID_ARGUMENT, "a label beyond the classes is refused");
    CHECK(strstr(model.error.message, "label 5") != NULL, "message: %s", model.error.message);
    free(predicted);
    cnn_model_free(&model);
    cnn_dataset_free(&data);
}

typedef struct recorder {
    int epochs_seen, batches_seen, last_samples, stop_after_batches;
    int steps_ok, running_ok;
    float validation_loss[64];
    int best_epoch[64], stopping[64], validated[64];
    float *params[64];   /* a copy of the parameters after each epoch */
    size_t param_count;
} recorder;

static int record_epoch(cnn_model *model, const cnn_epoch_stats *stats, void *user)
{
    recorder *r = (recorder *)user;
    int e = stats->epoch - 1;
    if (e < 0 || e >= 64) return 1;
    r->epochs_seen = stats->epoch;
    r->validation_loss[e] = stats->validation_loss;
    r->best_epoch[e] = stats->best_epoch;
    r->stopping[e] = stats->stopping;
    r->validated[e] = stats->validated;
    if (r->param_count) {
        r->params[e] = (float *)malloc(r->param_count * sizeof(float));
        if (r->params[e]) memcpy(r->params[e], model->params, r->param_count * sizeof(float));
    }
    return 0;
}

static int record_batch(cnn_model *model, const cnn_batch_stats *stats, void *user)
{
    recorder *r = (recorder *)user;
    (void)model;
    r->batches_seen++;
    r->last_samples = stats->samples;
    r->steps_ok &= stats->steps == (stats->total + 31) / 32 && stats->step >= 1 && stats->step <= stats->steps &&
                   stats->samples == (stats->step < stats->steps ? stats->step * 32 : stats->total);
    r->running_ok &= stats->loss > 0.0f && stats->accuracy >= 0.0f && stats->accuracy <= 1.0f;
    return r->stop_after_batches && r->batches_seen >= r->stop_after_batches;
}

static void free_recorder(recorder *r)
{
    int i;
    for (i = 0; i < 64; i++) free(r->params[i]);
}

TEST(progress_callback_reports_every_step_and_can_stop)
{
    cnn_dataset data;
    cnn_model model;
    cnn_optimizer adam;
    cnn_fit_desc fit;
    recorder r;
    CHECK(make_random_dataset(&data, 100, 4, 3, 5), "dataset");
    CHECK(build_mlp(&model, 4, 3, 32, 1), "build");
    CHECK(cnn_optimizer_init(&adam, &model, NULL) == CNN_OK, "adam");
    memset(&r, 0, sizeof r);
    r.steps_ok = r.running_ok = 1;
    memset(&fit, 0, sizeof fit);
    fit.epochs = 2;
    fit.batch_size = 32;
    fit.on_batch = record_batch;
    fit.on_epoch = record_epoch;
    fit.user = &r;
    CHECK(cnn_model_fit(&model, &adam, &data, &fit) == CNN_OK, "fit");
    CHECK(r.batches_seen == 8, "4 steps of 32, 32, 32, 4 per epoch, twice: %d", r.batches_seen);
    CHECK(r.last_samples == 100, "last step ends the epoch: %d", r.last_samples);
    CHECK(r.steps_ok && r.running_ok, "step counts and running means");
    CHECK(r.epochs_seen == 2 && !r.validated[0], "two epochs, not validated");
    memset(&r, 0, sizeof r);
    r.steps_ok = r.running_ok = 1;
    r.stop_after_batches = 3;
    CHECK(cnn_model_fit(&model, &adam, &data, &fit) == CNN_OK, "fit stopped by on_batch");
    CHECK(r.batches_seen == 3 && r.epochs_seen == 0, "stopped after 3 steps: %d, epochs %d", r.batches_seen, r.epochs_seen);
    free_recorder(&r);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_dataset_free(&data);
}

/* Evaluating on a validation set uses no randomness: training goes
   bit-identically with and without it. */
TEST(validation_is_reported_and_does_not_change_training)
{
    cnn_dataset all, train, validation;
    cnn_model a, b;
    cnn_optimizer adam_a, adam_b;
    cnn_fit_desc fit;
    recorder r;
    float loss, accuracy;
    CHECK(make_random_dataset(&all, 200, 4, 3, 9), "dataset");
    CHECK(cnn_dataset_split(&all, 0.2f, 3, &train, &validation) == CNN_OK, "split");
    CHECK(build_mlp(&a, 4, 3, 32, 4) && build_mlp(&b, 4, 3, 32, 4), "build");
    CHECK(cnn_optimizer_init(&adam_a, &a, NULL) == CNN_OK && cnn_optimizer_init(&adam_b, &b, NULL) == CNN_OK, "adam");
    memset(&r, 0, sizeof r);
    memset(&fit, 0, sizeof fit);
    fit.epochs = 3;
    fit.batch_size = 32;
    CHECK(cnn_model_fit(&a, &adam_a, &train, &fit) == CNN_OK, "fit without validation");
    fit.validation = &validation;
    fit.on_epoch = record_epoch;
    fit.user = &r;
    CHECK(cnn_model_fit(&b, &adam_b, &train, &fit) == CNN_OK, "fit with validation: %s", b.error.message);
    CHECK(memcmp(a.params, b.params, a.param_count * sizeof(float)) == 0, "identical parameters");
    CHECK(r.epochs_seen == 3 && r.validated[0] && r.validated[2], "validated every epoch");
    CHECK(cnn_model_evaluate(&b, &validation, &loss, &accuracy) == CNN_OK, "evaluate");
    CHECK(r.validation_loss[2] == loss, "last validation loss %g is the model's: %g", (double)r.validation_loss[2], (double)loss);
    CHECK(r.best_epoch[2] >= 1 && r.best_epoch[2] <= 3 && !r.stopping[2], "best epoch %d, no stopping without patience", r.best_epoch[2]);
    fit.validation = NULL;
    fit.patience = 2;
    CHECK(cnn_model_fit(&b, &adam_b, &train, &fit) == CNN_ERROR_INVALID_ARGUMENT, "patience needs validation");
    CHECK(strstr(b.error.message, "validation") != NULL, "message: %s", b.error.message);
    free_recorder(&r);
    cnn_optimizer_free(&adam_a);
    cnn_optimizer_free(&adam_b);
    cnn_model_free(&a);
    cnn_model_free(&b);
    cnn_dataset_free(&train);
    cnn_dataset_free(&validation);
    cnn_dataset_free(&all);
}

/* Random labels: the model memorises the training set while the loss on
   other random labels grows, so early stopping fires; the model must end
   with the parameters it had after its best epoch. */
TEST(early_stopping_restores_the_best_weights)
{
    cnn_dataset train, validation;
    cnn_model model;
    cnn_optimizer adam;
    cnn_optimizer_desc adam_desc;
    cnn_fit_desc fit;
    recorder r;
    int e, best = 0, last;
    CHECK(make_random_dataset(&train, 64, 6, 4, 21) && make_random_dataset(&validation, 64, 6, 4, 22), "datasets");
    CHECK(build_mlp(&model, 6, 4, 16, 6), "build");
    memset(&adam_desc, 0, sizeof adam_desc);
    adam_desc.learning_rate = 1e-2f;
    CHECK(cnn_optimizer_init(&adam, &model, &adam_desc) == CNN_OK, "adam");
    memset(&r, 0, sizeof r);
    r.param_count = model.param_count;
    memset(&fit, 0, sizeof fit);
    fit.epochs = 60;
    fit.batch_size = 16;
    fit.validation = &validation;
    fit.patience = 4;
    fit.on_epoch = record_epoch;
    fit.user = &r;
    CHECK(cnn_model_fit(&model, &adam, &train, &fit) == CNN_OK, "fit: %s", model.error.message);
    last = r.epochs_seen;
    for (e = 1; e <= last; e++)
        if (best == 0 || r.validation_loss[e - 1] < r.validation_loss[best - 1]) best = e;
    CHECK(last < 60, "stopped early, after epoch %d", last);
    CHECK(r.best_epoch[last - 1] == best, "best epoch %d, expected %d", r.best_epoch[last - 1], best);
    CHECK(last == best + 4, "stopped %d epochs after the best, expected 4", last - best);
    CHECK(r.stopping[last - 1] == 1 && (last < 2 || r.stopping[last - 2] == 0), "stopping flagged on the last epoch only");
    CHECK(best < last && r.params[best - 1] && r.params[last - 1], "snapshots");
    if (best < last && r.params[best - 1] && r.params[last - 1]) {
        CHECK(memcmp(model.params, r.params[best - 1], model.param_count * sizeof(float)) == 0, "the best epoch's parameters are back");
        CHECK(memcmp(model.params, r.params[last - 1], model.param_count * sizeof(float)) != 0, "not the last epoch's");
    }
    free_recorder(&r);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_dataset_free(&train);
    cnn_dataset_free(&validation);
}

int main(void)
{
    RUN(split_sizes_default_and_rounding);
    RUN(split_is_disjoint_complete_and_ordered);
    RUN(split_is_deterministic_per_seed);
    RUN(split_refuses_bad_arguments);
    RUN(confusion_matrix_by_hand);
    RUN(confusion_metrics_of_empty_classes_are_zero);
    RUN(model_confusion_agrees_with_predict);
    RUN(progress_callback_reports_every_step_and_can_stop);
    RUN(validation_is_reported_and_does_not_change_training);
    RUN(early_stopping_restores_the_best_weights);
    return test_report();
}
