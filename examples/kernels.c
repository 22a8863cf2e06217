/* kernels.c - what a convolution layer sees: a picture, made grey, through
   three hand-made 3x3 kernels, ReLU and 2x2 max-pooling, each stage written
   as PNG files so you can look at the feature maps.

     kernels photo.jpg out/

   creates out/ (and its missing parents) and writes out/0-grey.png, then out/1-conv-vertical.png, -horizontal, -laplacian,
   out/2-relu-*.png and out/3-pool-*.png, and prints each stage's shape. The
   work is done by cnn.h's own conv2d, ReLU and max-pool layers: a model of
   those three layers whose conv weights are set by hand instead of learned.
   Needs stb_image.h and stb_image_write.h (Debian: libstb-dev). */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define CNN_IMAGES
#define CNN_IMPLEMENTATION
#include "../cnn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "make_dirs.h" /* make_dirs: mkdir -p */

#define LARGEST 512 /* longer sides are scaled down to this, to keep it quick */

static const char *const kernel_names[3] = {"vertical", "horizontal", "laplacian"};

/* (3 kernels, 1 channel, 3, 3): conv2d computes cross-correlation, as
   PyTorch and Keras do: out(y, x) = sum over i, j of k(i, j) * in(y + i - 1, x + j - 1). */
static const float kernels[3][3][3] = {
    {{1, 0, -1}, {1, 0, -1}, {1, 0, -1}},   /* vertical edges: left minus right */
    {{1, 1, 1}, {0, 0, 0}, {-1, -1, -1}},   /* horizontal edges: top minus bottom */
    {{0, 1, 0}, {1, -4, 1}, {0, 1, 0}},     /* Laplacian: the neighbours minus the centre */
};

/* Writes channel c of a (C, H, W) activation as a grey PNG. Signed maps
   (before ReLU) show 0 as mid-grey and +-largest |value| as white / black;
   the others 0 as black and the largest value as white. */
static int save_map(const float *maps, int c, int height, int width, int is_signed, const char *path)
{
    cnn_image picture;
    const float *map = maps + (size_t)c * height * width;
    float largest = 0.0f;
    size_t i, count = (size_t)height * width;
    int ok;
    for (i = 0; i < count; i++)
        if (fabsf(map[i]) > largest) largest = fabsf(map[i]);
    if (cnn_image_alloc(&picture, 1, height, width) != CNN_OK) return 0;
    for (i = 0; i < count; i++) {
        const float v = largest > 0.0f ? map[i] / largest : 0.0f;
        picture.data[i] = is_signed ? 0.5f + 0.5f * v : v;
    }
    ok = cnn_image_save_png(&picture, path) == CNN_OK;
    if (!ok) fprintf(stderr, "kernels: %s\n", picture.error.message);
    cnn_image_free(&picture);
    return ok;
}

int main(int argc, char **argv)
{
    cnn_image original, grey;
    cnn_model model;
    char path[4096];
    int height, width, stage, c, k, i, j;
    static const char *const stage_names[4] = {"grey", "conv", "relu", "pool"};

    if (argc != 3) {
        fprintf(stderr, "usage: kernels IMAGE OUTPUT_FOLDER\n");
        return 2;
    }
    if (!make_dirs(argv[2])) {
        fprintf(stderr, "kernels: cannot create the folder '%s': %s\n", argv[2], strerror(errno));
        return 1;
    }
    if (cnn_image_load(&original, argv[1], 1) != CNN_OK) {
        fprintf(stderr, "kernels: %s\n", original.error.message);
        return 1;
    }
    /* at most LARGEST on the longer side, and even sides for the 2x2 pool */
    height = original.h;
    width = original.w;
    if (height > LARGEST || width > LARGEST) {
        const double scale = (double)LARGEST / (height > width ? height : width);
        height = (int)(height * scale + 0.5);
        width = (int)(width * scale + 0.5);
    }
    height = height > 2 ? height & ~1 : 2;
    width = width > 2 ? width & ~1 : 2;
    if (cnn_image_resize(&original, &grey, height, width, CNN_RESIZE_DEFAULT) != CNN_OK) {
        fprintf(stderr, "kernels: %s\n", grey.error.message);
        return 1;
    }
    cnn_image_free(&original);
    printf("%s: grey, %d x %d\n", argv[1], width, height);

    /* conv 3@3x3 with padding 1 (same size out), ReLU, max-pool 2x2; every
       layer's output kept in its own buffer, or the ReLU would run in place
       over the conv's output, which we want to see */
    cnn_model_init(&model, 1, height, width, 1);
    cnn_model_keep_outputs(&model, 1);
    cnn_add_conv2d(&model, 3, 3, 1, 1);
    cnn_add_relu(&model);
    cnn_add_max_pool(&model, 2, 2);
    if (cnn_model_build(&model, 1) != CNN_OK) {
        fprintf(stderr, "kernels: %s\n", model.error.message);
        return 1;
    }
    for (k = 0; k < 3; k++) { /* weight is (OC, C, K, K) */
        for (i = 0; i < 3; i++)
            for (j = 0; j < 3; j++) model.layers[0].weight[(k * 3 + i) * 3 + j] = kernels[k][i][j];
        model.layers[0].bias[k] = 0.0f;
    }
    if (cnn_model_forward(&model, grey.data, 1, CNN_MODE_EVAL) != CNN_OK) {
        fprintf(stderr, "kernels: %s\n", model.error.message);
        return 1;
    }

    /* activations[0] is the input, activations[s] the output of layer s - 1 */
    for (stage = 0; stage <= 3; stage++) {
        const cnn_tensor *t = &model.activations[stage];
        float low = t->data[0], high = t->data[0];
        size_t n, count = cnn_tensor_count(t);
        for (n = 1; n < count; n++) {
            if (t->data[n] < low) low = t->data[n];
            if (t->data[n] > high) high = t->data[n];
        }
        printf("%d %-5s (N, C, H, W) = (%d, %d, %d, %d)   values %.3f .. %.3f\n", stage, stage_names[stage], t->n, t->c, t->h, t->w,
               (double)low, (double)high);
        for (c = 0; c < t->c; c++) {
            if (stage == 0) snprintf(path, sizeof path, "%s/0-grey.png", argv[2]);
            else snprintf(path, sizeof path, "%s/%d-%s-%s.png", argv[2], stage, stage_names[stage], kernel_names[c]);
            if (!save_map(t->data, c, t->h, t->w, stage == 1, path)) return 1;
            printf("    %s\n", path);
        }
    }
    cnn_image_free(&grey);
    cnn_model_free(&model);
    return 0;
}
