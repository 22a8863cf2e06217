/* folders.c - train a small CNN on a folder of images, one sub-folder per
   class (root/cat/1.jpg, root/dog/2.png, ...), with a seeded 70/30 split and
   random flips, rotations and shifts of the training images.

     folders ROOT [options] [--test FOLDER]
     folders --eval MODEL --test FOLDER
     folders --generate shapes 100 && folders shapes    # try it on drawn shapes

   Every image is resized to the input size; the held-out 30% of each class
   are only ever evaluated, never augmented. --test evaluates on every image
   of another tree of the same class folders, after training or (--eval) with
   a saved model, and prints "test accuracy: X%" last. Needs stb_image.h (and,
   for --generate, stb_image_write.h): Debian's libstb-dev. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define CNN_IMAGES
#define CNN_IMPLEMENTATION
#include "../cnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "folders.h" /* the model, and the shapes of --generate */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: folders ROOT [options]       train on ROOT/<class>/<image>\n"
            "       folders --eval MODEL --test FOLDER\n"
            "                                    a saved model on every image of FOLDER/<class>/<image>\n"
            "       folders --generate DIR N     draw N circles, crosses and squares into DIR/<shape>/\n"
            "  --size N        input side in pixels (default 32)\n"
            "  --grey          one channel instead of RGB\n"
            "  --epochs N      default 20\n"
            "  --validation F  fraction of each class held out (default 0.3)\n"
            "  --seed N        split, weights and augmentation (default 1)\n"
            "  --no-augment    train on the images as they are\n"
            "  --model PATH    save the trained model there\n"
            "  --test FOLDER   then evaluate it on every image of FOLDER/<class>/<image>\n");
}

/* ---- results */

/* The per-class table of the model on data (labels: the model's classes,
   named by its class names), after "WHAT accuracy N%" unless what is NULL;
   returns the accuracy, or -1 after printing why there is none. */
static double print_classes(cnn_model *model, const cnn_dataset *data, const char *what)
{
    const int classes = (int)cnn_shape_count(cnn_model_output_shape(model));
    int *matrix = (int *)calloc((size_t)classes * classes, sizeof(int)), k;
    cnn_class_metrics *metrics = (cnn_class_metrics *)calloc((size_t)classes, sizeof(cnn_class_metrics));
    double accuracy = -1.0;
    if (!matrix || !metrics) fprintf(stderr, "folders: out of memory\n");
    else if (cnn_model_confusion(model, data, matrix) != CNN_OK || cnn_confusion_metrics(matrix, classes, metrics) != CNN_OK)
        fprintf(stderr, "folders: %s\n", model->error.message);
    else {
        accuracy = cnn_confusion_accuracy(matrix, classes);
        if (what) printf("%s accuracy %.1f%%\n", what, 100.0 * accuracy);
        printf("%-16s %9s %9s %9s\n", "class", "precision", "recall", "images");
        for (k = 0; k < classes; k++)
            printf("%-16s %8.1f%% %8.1f%% %9d\n", model->class_names ? model->class_names[k] : "?", 100.0 * metrics[k].precision,
                   100.0 * metrics[k].recall, metrics[k].support);
    }
    free(matrix);
    free(metrics);
    return accuracy;
}

/* The model on every image of FOLDER/<class>/<image>, read at the model's
   input size and channels, each class folder's images labelled with the
   model's class of that name: the table, then "test accuracy: X%" (last:
   scripts read it there). Returns 0, or 1 after printing why not. */
static int evaluate(cnn_model *model, const char *folder)
{
    const int classes = (int)cnn_shape_count(cnn_model_output_shape(model));
    cnn_folder_desc desc;
    cnn_image_folders test;
    int *to_model = NULL, i, k, status = 1;
    double accuracy;
    if (model->class_name_count != classes) {
        fprintf(stderr, "folders: the model has no class names to match the folders of '%s' with\n", folder);
        return 1;
    }
    memset(&desc, 0, sizeof desc);
    desc.channels = model->input.c;
    desc.width = model->input.w;
    desc.height = model->input.h;
    desc.validation = -1.0f; /* nothing held out: every image is a test image */
    if (cnn_image_folders_load(&test, folder, &desc) != CNN_OK) {
        fprintf(stderr, "folders: %s\n", test.error.message);
        return 1;
    }
    if (!(to_model = (int *)malloc((size_t)test.class_count * sizeof(int)))) {
        fprintf(stderr, "folders: out of memory\n");
        goto done;
    }
    for (k = 0; k < test.class_count; k++) { /* the folders' labels (their sorted order) to the model's */
        to_model[k] = -1;
        for (i = 0; i < classes; i++)
            if (!strcmp(test.class_names[k], model->class_names[i])) to_model[k] = i;
        if (to_model[k] < 0) {
            fprintf(stderr, "folders: '%s/%s': the model has no class of that name\n", folder, test.class_names[k]);
            goto done;
        }
    }
    for (i = 0; i < test.train.count; i++) test.train.labels[i] = to_model[test.train.labels[i]];
    printf("test: %d images of %dx%dx%d in %s\n", test.train.count, desc.channels, desc.width, desc.height, folder);
    if ((accuracy = print_classes(model, &test.train, NULL)) < 0.0) goto done;
    printf("test accuracy: %.2f%%\n", 100.0 * accuracy);
    status = 0;
done:
    free(to_model);
    cnn_image_folders_free(&test);
    return status;
}

/* --eval MODEL --test FOLDER */
static int evaluate_saved(const char *model_path, const char *folder)
{
    static cnn_model model; /* large (it holds every layer): static, not on the stack */
    int status;
    if (cnn_model_load(&model, model_path, 16) != CNN_OK) {
        fprintf(stderr, "folders: %s\n", model.error.message);
        return 1;
    }
    status = evaluate(&model, folder);
    cnn_model_free(&model);
    return status;
}

/* ---- --generate: a data set to try it on (folders.h draws it) */

static int generate(const char *root, int per_class)
{
    const char *failed = folders_write_shapes(root, per_class, 96, 2024);
    if (failed) {
        fprintf(stderr, "folders: cannot write '%s'\n", failed);
        return 1;
    }
    printf("wrote %d images into each of %s/circle, %s/cross and %s/square\n", per_class, root, root, root);
    return 0;
}

/* ---- training */

static int print_epoch(cnn_model *model, const cnn_epoch_stats *s, void *user)
{
    (void)model;
    (void)user;
    printf("epoch %2d/%d  loss %.4f  train accuracy %5.1f%%  validation loss %.4f  accuracy %5.1f%%\n", s->epoch, s->epochs,
           (double)s->loss, 100.0 * s->accuracy, (double)s->validation_loss, 100.0 * s->validation_accuracy);
    return 0;
}

int main(int argc, char **argv)
{
    const char *root = NULL, *model_path = NULL, *test_folder = NULL, *eval = NULL;
    int size = 32, channels = 3, epochs = 20, augment = 1, status = 0, i, k;
    unsigned long seed = 1;
    float validation = 0.3f;
    cnn_folder_desc desc;
    cnn_image_folders folders;
    static cnn_model model; /* large (it holds every layer): static, not on the stack */
    cnn_optimizer adam;
    cnn_fit_desc fit;
    cnn_augmenter augmenter;

    if (argc == 4 && !strcmp(argv[1], "--generate")) return generate(argv[2], atoi(argv[3]));
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(a, "--grey")) channels = 1;
        else if (!strcmp(a, "--epochs") && i + 1 < argc) epochs = atoi(argv[++i]);
        else if (!strcmp(a, "--validation") && i + 1 < argc) validation = (float)atof(argv[++i]);
        else if (!strcmp(a, "--seed") && i + 1 < argc) seed = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--no-augment")) augment = 0;
        else if (!strcmp(a, "--model") && i + 1 < argc) model_path = argv[++i];
        else if (!strcmp(a, "--test") && i + 1 < argc) test_folder = argv[++i];
        else if (!strcmp(a, "--eval") && i + 1 < argc) eval = argv[++i];
        else if (a[0] != '-' && !root) root = a;
        else { fprintf(stderr, "folders: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
    }
    if (eval) {
        if (root || !test_folder) {
            fprintf(stderr, "folders: --eval MODEL takes --test FOLDER, and no ROOT to train on\n");
            usage(stderr);
            return 2;
        }
        return evaluate_saved(eval, test_folder);
    }
    if (!root || size < 8 || size % 4 != 0 || epochs < 1 || !(validation > 0.0f && validation < 1.0f)) {
        fprintf(stderr, "folders: need ROOT, a --size that is a multiple of 4 (at least 8), --epochs >= 1 and 0 < --validation < 1\n");
        usage(stderr);
        return 2;
    }

    memset(&desc, 0, sizeof desc);
    desc.channels = channels;
    desc.width = desc.height = size;
    desc.validation = validation;
    desc.seed = seed;
    if (cnn_image_folders_load(&folders, root, &desc) != CNN_OK) {
        fprintf(stderr, "folders: %s\n", folders.error.message);
        return 1;
    }
    printf("%d classes:", folders.class_count);
    for (k = 0; k < folders.class_count; k++) printf(" %s", folders.class_names[k]);
    printf("\n%d training and %d validation images of %dx%dx%d\n", folders.train.count, folders.validation.count, channels, size, size);

    /* conv 16@3x3 - ReLU - pool - conv 32@3x3 - ReLU - pool - dense 64 - ReLU - dense classes */
    cnn_model_init(&model, channels, size, size, seed);
    folders_add_cnn(&model, 16, folders.class_count);
    if (cnn_model_build(&model, 16) != CNN_OK || cnn_optimizer_init(&adam, &model, NULL) != CNN_OK ||
        cnn_model_set_class_names(&model, (const char *const *)folders.class_names, folders.class_count) != CNN_OK) { /* saved with it */
        fprintf(stderr, "folders: %s\n", model.error.message);
        return 1;
    }

    /* flips, rotations up to 10 degrees and shifts up to 10%, drawn from
       their own random state, for the training batches only */
    memset(&augmenter, 0, sizeof augmenter);
    augmenter.desc.flip = 1;
    augmenter.desc.rotate = 10.0f;
    augmenter.desc.shift = 0.1f;
    cnn_rng_seed(&augmenter.rng, seed + 1);
    memset(&fit, 0, sizeof fit);
    fit.epochs = epochs;
    fit.batch_size = 16;
    fit.on_epoch = print_epoch;
    fit.validation = folders.validation.count > 0 ? &folders.validation : NULL;
    if (augment) {
        fit.augment = cnn_augment_batch;
        fit.augment_user = &augmenter;
    }
    if (cnn_model_fit(&model, &adam, &folders.train, &fit) != CNN_OK) {
        fprintf(stderr, "folders: %s\n", model.error.message);
        return 1;
    }

    /* per-class results on the validation images, with the best epoch's weights */
    if (fit.validation && print_classes(&model, &folders.validation, "validation") < 0.0) status = 1;
    if (model_path) {
        if (cnn_model_save(&model, model_path) != CNN_OK) fprintf(stderr, "folders: %s\n", model.error.message), status = 1;
        else printf("saved %s (class i is the i-th folder name in sorted order)\n", model_path);
    }
    if (test_folder && evaluate(&model, test_folder) != 0) status = 1;
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_image_folders_free(&folders);
    return status;
}
