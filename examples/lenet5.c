/* lenet5.c - train LeNet-5 on EMNIST (Kaggle CSV) or any IDX data set,
   save the model, and report test accuracy.

     lenet5 --train emnist-balanced-train.csv --test emnist-balanced-test.csv
     lenet5 --train-idx train-images-idx3-ubyte train-labels-idx1-ubyte \
            --test-idx t10k-images-idx3-ubyte t10k-labels-idx1-ubyte
     lenet5 --eval lenet5.cnn --test emnist-balanced-test.csv

   The model, cnn_add_lenet5 (LeCun et al., 1998, with ReLU and max-pooling
   as is usual now):
     conv 6@5x5 pad 2 - ReLU - max-pool 2 - conv 16@5x5 - ReLU - max-pool 2
     - dense 120 - ReLU - dense 84 - ReLU - dense classes - softmax */
#define _POSIX_C_SOURCE 199309L
#define CNN_IMPLEMENTATION
#include "../cnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct options {
    const char *train_csv, *test_csv;
    const char *train_images, *train_labels, *test_images, *test_labels;
    const char *model_path, *eval_path;
    int epochs, batch, classes, transpose_idx;
    float learning_rate;
    unsigned long seed;
} options;

typedef struct progress {
    const cnn_dataset *test;
    double started;
    float test_accuracy;
    int epochs_done;
} progress;

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: lenet5 [options]\n"
            "  --train FILE            training images, Kaggle EMNIST CSV\n"
            "  --test FILE             test images, Kaggle EMNIST CSV\n"
            "  --train-idx IMAGES LABELS   training images as IDX files instead\n"
            "  --test-idx IMAGES LABELS    test images as IDX files instead\n"
            "  --idx-transposed        IDX images are stored transposed (NIST's EMNIST release)\n"
            "  --classes N             number of classes (default: from the training labels)\n"
            "  --epochs N              default 10\n"
            "  --batch N               default 256\n"
            "  --lr X                  Adam learning rate, default 0.001\n"
            "  --seed N                default 1\n"
            "  --model PATH            where to save the trained model (default lenet5.cnn)\n"
            "  --eval MODEL            load MODEL and evaluate it on the test set; no training\n"
            "  --help                  this text\n");
}

static int parse_options(int argc, char **argv, options *o)
{
    int i;
    memset(o, 0, sizeof *o);
    o->epochs = 10;
    o->batch = 256;
    o->learning_rate = 1e-3f;
    o->seed = 1;
    o->model_path = "lenet5.cnn";
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = argc - i - 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        else if (!strcmp(a, "--train") && more >= 1) o->train_csv = argv[++i];
        else if (!strcmp(a, "--test") && more >= 1) o->test_csv = argv[++i];
        else if (!strcmp(a, "--train-idx") && more >= 2) { o->train_images = argv[++i]; o->train_labels = argv[++i]; }
        else if (!strcmp(a, "--test-idx") && more >= 2) { o->test_images = argv[++i]; o->test_labels = argv[++i]; }
        else if (!strcmp(a, "--idx-transposed")) o->transpose_idx = 1;
        else if (!strcmp(a, "--classes") && more >= 1) o->classes = atoi(argv[++i]);
        else if (!strcmp(a, "--epochs") && more >= 1) o->epochs = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && more >= 1) o->batch = atoi(argv[++i]);
        else if (!strcmp(a, "--lr") && more >= 1) o->learning_rate = (float)atof(argv[++i]);
        else if (!strcmp(a, "--seed") && more >= 1) o->seed = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--model") && more >= 1) o->model_path = argv[++i];
        else if (!strcmp(a, "--eval") && more >= 1) o->eval_path = argv[++i];
        else {
            fprintf(stderr, "lenet5: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 0;
        }
    }
    if (o->epochs < 1 || o->batch < 1 || o->classes < 0 || !(o->learning_rate > 0.0f)) {
        fprintf(stderr, "lenet5: --epochs, --batch and --lr must be positive\n");
        return 0;
    }
    if (!o->test_csv && !o->test_images) {
        fprintf(stderr, "lenet5: give a test set (--test or --test-idx)\n");
        return 0;
    }
    if (!o->eval_path && !o->train_csv && !o->train_images) {
        fprintf(stderr, "lenet5: give a training set (--train or --train-idx), or --eval MODEL\n");
        return 0;
    }
    return 1;
}

/* Loads CSV or IDX as the options say; prints the reason on failure. */
static int load(cnn_dataset *data, const char *csv, const char *images, const char *labels, const options *o)
{
    cnn_data_desc desc;
    cnn_result result;
    memset(&desc, 0, sizeof desc);
    desc.num_classes = o->classes;
    if (csv) {
        result = cnn_dataset_load_csv(data, csv, &desc);
    } else {
        desc.orientation = o->transpose_idx ? CNN_ORIENTATION_TRANSPOSE : CNN_ORIENTATION_AS_STORED;
        result = cnn_dataset_load_idx(data, images, labels, &desc);
    }
    if (result != CNN_OK) {
        fprintf(stderr, "lenet5: %s\n", data->error.message);
        return 0;
    }
    printf("loaded %d images of %dx%d from %s\n", data->count, data->images.h, data->images.w, csv ? csv : images);
    return 1;
}

static cnn_result build_lenet5(cnn_model *model, int height, int width, int classes, int max_batch, unsigned long seed)
{
    cnn_model_init(model, 1, height, width, seed);
    cnn_add_lenet5(model, classes);
    return cnn_model_build(model, max_batch); /* errors are sticky: this reports the first */
}

static int on_epoch(cnn_model *model, const cnn_epoch_stats *stats, void *user)
{
    progress *p = (progress *)user;
    float test_loss;
    p->epochs_done = stats->epoch;
    if (cnn_model_evaluate(model, p->test, &test_loss, &p->test_accuracy) != CNN_OK) {
        fprintf(stderr, "lenet5: evaluation failed: %s\n", model->error.message);
        return 1;
    }
    printf("epoch %2d/%d  loss %.4f  train %6.2f%%  test loss %.4f  test %6.2f%%  %6.1f s\n", stats->epoch, stats->epochs,
           (double)stats->loss, 100.0 * stats->accuracy, (double)test_loss, 100.0 * p->test_accuracy, now_seconds() - p->started);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    cnn_dataset train, test;
    cnn_model model;
    cnn_optimizer adam;
    cnn_optimizer_desc adam_desc;
    cnn_fit_desc fit;
    progress p;
    char summary[4096];
    float loss, accuracy;
    int status = 1;

    if (!parse_options(argc, argv, &o)) return 2;
    memset(&train, 0, sizeof train);
    memset(&model, 0, sizeof model);
    memset(&adam, 0, sizeof adam);
    if (!load(&test, o.test_csv, o.test_images, o.test_labels, &o)) return 1;

    if (o.eval_path) {
        if (cnn_model_load(&model, o.eval_path, o.batch) != CNN_OK) {
            fprintf(stderr, "lenet5: %s\n", model.error.message);
            goto done;
        }
    } else {
        if (!load(&train, o.train_csv, o.train_images, o.train_labels, &o)) goto done;
        if (build_lenet5(&model, train.images.h, train.images.w, o.classes ? o.classes : train.num_classes, o.batch, o.seed) != CNN_OK) {
            fprintf(stderr, "lenet5: %s\n", model.error.message);
            goto done;
        }
    }
    cnn_model_summary(&model, summary, sizeof summary);
    fputs(summary, stdout);

    if (!o.eval_path) {
        memset(&adam_desc, 0, sizeof adam_desc);
        adam_desc.learning_rate = o.learning_rate;
        if (cnn_optimizer_init(&adam, &model, &adam_desc) != CNN_OK) {
            fprintf(stderr, "lenet5: %s\n", model.error.message);
            goto done;
        }
        memset(&fit, 0, sizeof fit);
        fit.epochs = o.epochs;
        fit.batch_size = o.batch;
        fit.on_epoch = on_epoch;
        fit.user = &p;
        p.test = &test;
        p.epochs_done = 0;
        p.started = now_seconds();
        printf("training: %d epochs, batch %d, Adam lr %g, seed %lu\n", o.epochs, o.batch, (double)o.learning_rate, o.seed);
        if (cnn_model_fit(&model, &adam, &train, &fit) != CNN_OK) {
            fprintf(stderr, "lenet5: training stopped: %s\n", model.error.message);
            goto done;
        }
        printf("trained %d epochs in %.1f s\n", p.epochs_done, now_seconds() - p.started);
        if (cnn_model_save(&model, o.model_path) != CNN_OK) {
            fprintf(stderr, "lenet5: %s\n", model.error.message);
            goto done;
        }
        printf("saved %s\n", o.model_path);
    }
    if (cnn_model_evaluate(&model, &test, &loss, &accuracy) != CNN_OK) {
        fprintf(stderr, "lenet5: %s\n", model.error.message);
        goto done;
    }
    printf("test loss: %.4f\n", (double)loss);
    printf("test accuracy: %.2f%%\n", 100.0 * accuracy);
    status = 0;
done:
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_dataset_free(&train);
    cnn_dataset_free(&test);
    return status;
}
