/* images.c - writes the test pictures of tests/web (committed in
   tests/web/images/; run it again only to remake them):

     cc -std=c99 -O2 -I/usr/include/stb tests/web/images.c -o build/web-images -lm
     build/web-images /tmp/emnist/emnist47-test.csv tests/web/images

   From an EMNIST test file (Kaggle CSV, 47 classes): the first test image of
   each of ten classes, as a user would draw it - dark ink on white paper,
   4x larger (112 x 112) - as char-LABEL.png; and photo.jpg, the first test
   image of class 10 ('A') as a photo of a character on paper might look:
   480 x 360, RGB, blue ink off-centre on warm paper that darkens towards a
   corner, with grain, saved as a JPEG. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define CNN_IMAGES
#define CNN_IMPLEMENTATION
#include "../../cnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int labels[10] = {0, 3, 7, 10, 11, 14, 20, 22, 36, 39};

/* The first image of label in the data set, as a 1-channel image. */
static int first_of(const cnn_dataset *data, int label, cnn_image *image)
{
    int i;
    const size_t plane = (size_t)data->images.h * (size_t)data->images.w;
    for (i = 0; i < data->count && data->labels[i] != label; i++) continue;
    if (i == data->count || cnn_image_alloc(image, 1, data->images.h, data->images.w) != CNN_OK) return 0;
    memcpy(image->data, data->images.data + (size_t)i * plane, plane * sizeof(float));
    return 1;
}

static int photo(const cnn_image *character, const char *path)
{
    enum { W = 480, H = 360, SIDE = 200, LEFT = 170, TOP = 60 };
    cnn_image ink;
    cnn_rng rng;
    unsigned char *rgb = (unsigned char *)malloc((size_t)W * H * 3);
    int x, y, k, ok;
    if (!rgb || cnn_image_resize(character, &ink, SIDE, SIDE, CNN_RESIZE_BILINEAR) != CNN_OK) return 0;
    cnn_rng_seed(&rng, 7);
    for (y = 0; y < H; y++)
        for (x = 0; x < W; x++) {
            /* paper: warm white, a shadow towards the bottom right */
            const float shade = 1.0f - 0.25f * (float)(x + y) / (float)(W + H);
            const float paper[3] = {0.96f * shade, 0.91f * shade, 0.80f * shade}, pen[3] = {0.10f, 0.15f, 0.45f};
            float amount = 0.0f;
            if (x >= LEFT && x < LEFT + SIDE && y >= TOP && y < TOP + SIDE) amount = ink.data[(y - TOP) * SIDE + (x - LEFT)];
            if (amount < 0.0f) amount = 0.0f;
            if (amount > 1.0f) amount = 1.0f;
            for (k = 0; k < 3; k++) {
                float v = paper[k] + amount * (pen[k] - paper[k]) + 0.04f * (cnn_rng_uniform(&rng) - 0.5f);
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                rgb[((size_t)y * W + x) * 3 + k] = (unsigned char)(v * 255.0f + 0.5f);
            }
        }
    ok = stbi_write_jpg(path, W, H, 3, rgb, 85);
    cnn_image_free(&ink);
    free(rgb);
    return ok;
}

int main(int argc, char **argv)
{
    cnn_dataset data;
    cnn_data_desc desc;
    char path[1024];
    int i;
    if (argc != 3) {
        fprintf(stderr, "usage: web-images EMNIST-TEST-CSV DIR\n");
        return 2;
    }
    memset(&desc, 0, sizeof desc);
    desc.max_rows = 2000;
    if (cnn_dataset_load_csv(&data, argv[1], &desc) != CNN_OK) {
        fprintf(stderr, "web-images: %s\n", data.error.message);
        return 1;
    }
    for (i = 0; i < 10; i++) {
        cnn_image character, large;
        size_t k;
        if (!first_of(&data, labels[i], &character)) {
            fprintf(stderr, "web-images: no image of class %d in the first 2000 rows\n", labels[i]);
            return 1;
        }
        if (labels[i] == 10) {
            snprintf(path, sizeof path, "%s/photo.jpg", argv[2]);
            if (!photo(&character, path)) {
                fprintf(stderr, "web-images: cannot write '%s'\n", path);
                return 1;
            }
        }
        if (cnn_image_resize(&character, &large, 112, 112, CNN_RESIZE_BILINEAR) != CNN_OK) return 1;
        for (k = 0; k < (size_t)112 * 112; k++) large.data[k] = 1.0f - large.data[k]; /* dark on light */
        snprintf(path, sizeof path, "%s/char-%d.png", argv[2], labels[i]);
        if (cnn_image_save_png(&large, path) != CNN_OK) {
            fprintf(stderr, "web-images: %s\n", large.error.message);
            return 1;
        }
        cnn_image_free(&character);
        cnn_image_free(&large);
    }
    printf("wrote 10 characters and a photo into %s\n", argv[2]);
    cnn_dataset_free(&data);
    return 0;
}
