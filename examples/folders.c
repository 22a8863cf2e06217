/* folders.c - train a small CNN on a folder of images, one sub-folder per
   class (root/cat/1.jpg, root/dog/2.png, ...), with a seeded 70/30 split and
   random flips, rotations and shifts of the training images.

     folders ROOT [options]
     folders --generate shapes 100 && folders shapes    # try it on drawn shapes

   Every image is resized to the input size; the held-out 30% of each class
   are only ever evaluated, never augmented. Needs stb_image.h (and, for
   --generate, stb_image_write.h): Debian's libstb-dev. */
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
            "       folders --generate DIR N     draw N circles, crosses and squares into DIR/<shape>/\n"
            "  --size N        input side in pixels (default 32)\n"
            "  --grey          one channel instead of RGB\n"
            "  --epochs N      default 20\n"
            "  --validation F  fraction of each class held out (default 0.3)\n"
            "  --seed N        split, weights and augmentation (default 1)\n"
            "  --no-augment    train on the images as they are\n"
            "  --model PATH    save the trained model there\n");
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
    const char *root = NULL, *model_path = NULL;
    int size = 32, channels = 3, epochs = 20, augment = 1, i, k;
    unsigned long seed = 1;
    float validation = 0.3f, accuracy = 0.0f;
    cnn_folder_desc desc;
    cnn_image_folders folders;
    cnn_model model;
    cnn_optimizer adam;
    cnn_fit_desc fit;
    cnn_augmenter augmenter;
    cnn_class_metrics *metrics;
    int *matrix;

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
        else if (a[0] != '-' && !root) root = a;
        else { fprintf(stderr, "folders: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
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
    matrix = (int *)calloc((size_t)folders.class_count * folders.class_count, sizeof(int));
    metrics = (cnn_class_metrics *)calloc((size_t)folders.class_count, sizeof(cnn_class_metrics));
    if (matrix && metrics && fit.validation && cnn_model_confusion(&model, &folders.validation, matrix) == CNN_OK &&
        cnn_confusion_metrics(matrix, folders.class_count, metrics) == CNN_OK) {
        accuracy = cnn_confusion_accuracy(matrix, folders.class_count);
        printf("validation accuracy %.1f%%\n%-16s %9s %9s %9s\n", 100.0 * accuracy, "class", "precision", "recall", "images");
        for (k = 0; k < folders.class_count; k++)
            printf("%-16s %8.1f%% %8.1f%% %9d\n", folders.class_names[k], 100.0 * metrics[k].precision, 100.0 * metrics[k].recall,
                   metrics[k].support);
    }
    free(matrix);
    free(metrics);
    if (model_path) {
        if (cnn_model_save(&model, model_path) != CNN_OK) fprintf(stderr, "folders: %s\n", model.error.message);
        else printf("saved %s (class i is the i-th folder name in sorted order)\n", model_path);
    }
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_image_folders_free(&folders);
    return 0;
}
