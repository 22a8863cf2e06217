/* mlp.c - a multilayer perceptron on EMNIST, and what you want to see of it.

     mlp --train emnist47-train.csv --test emnist47-test.csv \
         [--mapping emnist-balanced-mapping.txt] [--out mlp-out] [--epochs 10]

   784 -> dense 512 ReLU -> dropout 0.2 -> dense 512 ReLU -> dropout 0.2 ->
   dense 47 softmax; Adam lr 1e-3, batch 256, seed 1, 10% of the training
   file held out for validation. Prints a progress bar (one line per epoch
   when stdout is not a terminal), the test accuracy and each class's
   precision and recall; writes history.csv, curves.png, confusion.png,
   mistakes.png and model.cnn into the output folder. With -fopenmp it uses
   OMP_NUM_THREADS threads (default: all); the results do not depend on it.
   Build: cc -std=c99 -O2 [-fopenmp] $(pkg-config --cflags stb) mlp.c -o mlp -lm */
#define _POSIX_C_SOURCE 200809L         /* for mkdir */
#define STB_IMAGE_IMPLEMENTATION        /* stb is header-only: its code goes here */
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define CNN_IMAGES                      /* the pictures of training */
#define CNN_IMPLEMENTATION
#include "../cnn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h> /* mkdir */

#define FAIL(message) do { fprintf(stderr, "mlp: %s\n", message); goto done; } while (0)

static const char *in_folder(char *path, size_t size, const char *folder, const char *name)
{
    snprintf(path, size, "%s/%s", folder, name);
    return path;
}

static cnn_result build_mlp(cnn_model *model, int classes)
{
    cnn_model_init(model, 1, 28, 28, 1);  /* input (1, 28, 28), seed 1 */
    cnn_add_flatten(model);               /* (784) */
    cnn_add_dense(model, 512);
    cnn_add_relu(model);
    cnn_add_dropout(model, 0.2f);
    cnn_add_dense(model, 512);
    cnn_add_relu(model);
    cnn_add_dropout(model, 0.2f);
    cnn_add_dense(model, classes);
    cnn_add_softmax(model);
    return cnn_model_build(model, 256);   /* largest batch; reports the first error of the adds */
}

int main(int argc, char **argv)
{
    static cnn_model model; /* large (it holds every layer): static, not on the stack */
    static cnn_label_map map;
    static char text[8192], path[4096];
    const char *train_csv = NULL, *test_csv = NULL, *mapping = NULL, *out = "mlp-out";
    cnn_dataset full = {0}, train = {0}, validation = {0}, test = {0};
    cnn_optimizer adam = {0};
    cnn_fit_desc fit = {0};
    cnn_progress_desc progress_desc = {0};
    cnn_progress progress;                /* prints the bar or the lines */
    cnn_history history = {0};            /* every epoch's numbers */
    cnn_error error;
    const cnn_label_map *names = NULL;  /* class characters; NULL: numbers */
    int *predicted = NULL, *matrix = NULL, classes = 47, i, status = 1;
    double seconds = 0.0;

    fit.epochs = 10;
    for (i = 1; i + 1 < argc; i += 2) { /* every option takes a value */
        if (!strcmp(argv[i], "--train")) train_csv = argv[i + 1];
        else if (!strcmp(argv[i], "--test")) test_csv = argv[i + 1];
        else if (!strcmp(argv[i], "--mapping")) mapping = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--epochs")) fit.epochs = atoi(argv[i + 1]);
        else break;
    }
    if (i < argc || !train_csv || !test_csv || fit.epochs < 1) {
        fprintf(stderr, "usage: mlp --train CSV --test CSV [--mapping FILE] [--out FOLDER] [--epochs N]\n");
        return 2;
    }

    /* data: the training file split 90/10 (seeded), the test file, class characters */
    if (cnn_dataset_load_csv(&full, train_csv, NULL) != CNN_OK) FAIL(full.error.message);
    if (cnn_dataset_load_csv(&test, test_csv, NULL) != CNN_OK) FAIL(test.error.message);
    if (cnn_dataset_split(&full, 0.1f, 1, &train, &validation) != CNN_OK) FAIL(train.error.message);
    cnn_dataset_free(&full);
    if (mapping && cnn_label_map_load(&map, mapping) != CNN_OK) FAIL(map.error.message);
    names = mapping ? &map : NULL;
    if (train.num_classes > classes || test.num_classes > classes) FAIL("labels above 46: this is not EMNIST balanced");
    printf("train %d, validation %d, test %d images\n", train.count, validation.count, test.count);

    /* the model, Adam, and training with validation and a progress reporter */
    if (build_mlp(&model, classes) != CNN_OK) FAIL(model.error.message);
    cnn_model_summary(&model, text, sizeof text);
    fputs(text, stdout);
    if (cnn_optimizer_init(&adam, &model, NULL) != CNN_OK) FAIL(model.error.message); /* NULL: Adam, lr 1e-3 */
    progress_desc.history = &history;
    cnn_progress_init(&progress, stdout, &progress_desc);
    fit.batch_size = 256;
    fit.validation = &validation;
    fit.on_batch = cnn_progress_batch;
    fit.on_epoch = cnn_progress_epoch;
    fit.user = &progress;
    if (cnn_model_fit(&model, &adam, &train, &fit) != CNN_OK) FAIL(model.error.message);

    /* the test set: predictions, confusion matrix, per-class table */
    predicted = (int *)malloc((size_t)test.count * sizeof(int));
    matrix = (int *)malloc((size_t)classes * classes * sizeof(int));
    if (!predicted || !matrix) FAIL("out of memory");
    if (cnn_model_predict(&model, test.images.data, test.count, predicted, NULL) != CNN_OK) FAIL(model.error.message);
    cnn_confusion_count(test.labels, predicted, test.count, classes, matrix);
    cnn_confusion_report(matrix, classes, names, text, sizeof text);
    fputs(text, stdout);
    for (i = 0; i < history.count; i++) seconds += history.epochs[i].seconds;
    printf("trained %d epochs in %.1f s\n", history.count, seconds);
    printf("test accuracy: %.2f%%\n", 100.0 * cnn_confusion_accuracy(matrix, classes));

    /* the output folder */
    if (mkdir(out, 0777) != 0 && errno != EEXIST) FAIL("cannot create the output folder");
    if (cnn_history_save_csv(&history, in_folder(path, sizeof path, out, "history.csv")) != CNN_OK) FAIL(history.error.message);
    if (cnn_curves_save_png(&history, in_folder(path, sizeof path, out, "curves.png"), &error) != CNN_OK ||
        cnn_confusion_save_png(matrix, classes, names, in_folder(path, sizeof path, out, "confusion.png"), &error) != CNN_OK ||
        cnn_mistakes_save_png(&test, predicted, names, in_folder(path, sizeof path, out, "mistakes.png"), &error) != CNN_OK)
        FAIL(error.message);
    if (cnn_model_save(&model, in_folder(path, sizeof path, out, "model.cnn")) != CNN_OK) FAIL(model.error.message);
    printf("output folder: %s\n", out);
    status = 0;
done:
    free(predicted), free(matrix);
    cnn_history_free(&history);
    cnn_optimizer_free(&adam), cnn_model_free(&model);
    cnn_dataset_free(&full), cnn_dataset_free(&train), cnn_dataset_free(&validation), cnn_dataset_free(&test);
    return status;
}
