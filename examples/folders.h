/* folders.h - what examples/folders.c shares with tests/test_images.c: the
   small CNN it trains, and the circles, crosses and squares it draws for
   `folders --generate`, which the test trains that CNN on.
   Include after cnn.h (with CNN_IMAGES) and stb_image_write.h. */
#ifndef FOLDERS_H
#define FOLDERS_H

#include <math.h>
#include <stdio.h>

#include "make_dirs.h" /* make_dirs: mkdir -p */

/* Two blocks of [conv 3x3 "same" - ReLU - max-pool 2] with filters, then
   2 * filters, channels; dense 4 * filters - ReLU - dense classes - softmax.
   The input's sides must be multiples of 4. Errors are sticky (cnn.h): the
   build reports the first. */
static cnn_result folders_add_cnn(cnn_model *model, int filters, int classes)
{
    int block;
    for (block = 0; block < 2; block++) {
        cnn_add_conv2d(model, block == 0 ? filters : 2 * filters, 3, 1, 1);
        cnn_add_relu(model);
        cnn_add_max_pool(model, 2, 2);
    }
    cnn_add_flatten(model);
    cnn_add_dense(model, 4 * filters);
    cnn_add_relu(model);
    cnn_add_dense(model, classes);
    return cnn_add_softmax(model);
}

static const char *const folders_shape_names[3] = {"circle", "cross", "square"};

/* A circle (shape 0), cross (1) or square (2) in a random colour on a
   random dark background, at a random size and place, on side x side RGB
   bytes. */
static void folders_draw_shape(unsigned char *rgb, int side, int shape, cnn_rng *rng)
{
    const int size = (int)(side * (0.5f + 0.4f * cnn_rng_uniform(rng)));
    const int left = (int)cnn_rng_below(rng, (uint32_t)(side - size + 1)), top = (int)cnn_rng_below(rng, (uint32_t)(side - size + 1));
    const double r = size / 2.0, cx = left + r, cy = top + r, bar = size / 12.0 + 0.75;
    unsigned char ink[3], paper[3];
    int x, y, k;
    for (k = 0; k < 3; k++) {
        ink[k] = (unsigned char)(150 + cnn_rng_below(rng, 106));
        paper[k] = (unsigned char)cnn_rng_below(rng, 80);
    }
    for (y = 0; y < side; y++)
        for (x = 0; x < side; x++) {
            const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
            int inside;
            if (shape == 0) inside = dx * dx + dy * dy <= r * r;
            else if (shape == 1) inside = fabs(dx) <= r && fabs(dy) <= r && (fabs(dx) <= bar || fabs(dy) <= bar);
            else inside = fabs(dx) <= r && fabs(dy) <= r;
            for (k = 0; k < 3; k++) rgb[(y * side + x) * 3 + k] = inside ? ink[k] : paper[k];
        }
}

/* Draws per_class PNGs of each shape into root/circle, root/cross and
   root/square (root/circle/0000.png, ...), creating the folders, each
   image 24 to max_side pixels square (max_side at most 96), all from the
   random stream of seed. Returns NULL, or the folder or file it could not
   write. */
static const char *folders_write_shapes(const char *root, int per_class, int max_side, uint64_t seed)
{
    static unsigned char rgb[96 * 96 * 3];
    static char path[4096];
    cnn_rng rng;
    int s, i;
    if (max_side > 96) max_side = 96;
    cnn_rng_seed(&rng, seed);
    if (!make_dirs(root)) return root;
    for (s = 0; s < 3; s++) {
        snprintf(path, sizeof path, "%s/%s", root, folders_shape_names[s]);
        if (!make_dirs(path)) return path;
        for (i = 0; i < per_class; i++) {
            const int side = 24 + (int)cnn_rng_below(&rng, (uint32_t)(max_side - 23));
            folders_draw_shape(rgb, side, s, &rng);
            snprintf(path, sizeof path, "%s/%s/%04d.png", root, folders_shape_names[s], i);
            if (!stbi_write_png(path, side, side, 3, rgb, side * 3)) return path;
        }
    }
    return NULL;
}

#endif
