/* predict.c - classify image files with a saved model and print, for each
   image, the five most probable classes.

     predict lenet5.cnn a.png b.jpg ...
     predict --mapping emnist-balanced-mapping.txt old-model.cnn drawing.png

   Classes are named by the names the model carries (the training examples
   store them in the model file), else by a mapping file given with
   --mapping, else by number.

   A model with one input channel and a square input (a character model such
   as the LeNet-5 of `make demo`) gets each picture prepared the way EMNIST
   was made, by cnn_image_to_character: dark ink on light paper is inverted,
   cropped to the ink, scaled to fit and centred. Any other model gets the
   picture resized to its input (cnn_image_prepare does both). An unreadable file is reported and skipped;
   the exit status is then 1. Needs stb_image.h (Debian: libstb-dev). */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define CNN_IMAGES
#define CNN_IMPLEMENTATION
#include "../cnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOP 5

static void usage(FILE *out)
{
    fprintf(out,
            "usage: predict [options] MODEL IMAGE...\n"
            "  --mapping FILE   label -> character file (EMNIST's), for a model that carries\n"
            "                   no class names; it must map exactly the model's classes\n"
            "  --box N          character models: fit the ink into N x N (default 22)\n"
            "  --mass           character models: centre the ink's centre of mass, as MNIST,\n"
            "                   instead of its bounding box, as EMNIST\n"
            "  --transposed     character models: the model was trained on EMNIST images as\n"
            "                   stored (transposed), not upright\n"
            "  --show           print each prepared character as text\n"
            "  --help           this text\n");
}

/* The prepared 28 x 28 (or so) input as characters, darkest ' ' to '@'. */
static void show(const float *pixels, int height, int width)
{
    static const char shades[] = " .:-=+*#%@";
    int x, y;
    for (y = 0; y < height; y++) {
        printf("    |");
        for (x = 0; x < width; x++) {
            int level = (int)(pixels[y * width + x] * 9.0f + 0.5f);
            putchar(shades[level < 0 ? 0 : level > 9 ? 9 : level]);
        }
        printf("|\n");
    }
}

/* Fills input (the model's input shape) from the file at path: loaded with
   the model's channel count and prepared by cnn_image_prepare, as the web
   page does, so a file gets the same answer in both. */
static cnn_result prepare(const cnn_model *model, const char *path, const cnn_character_desc *character, float *input, cnn_error *error)
{
    cnn_image picture, prepared;
    cnn_result result;
    if ((result = cnn_image_load(&picture, path, model->input.c)) != CNN_OK) {
        *error = picture.error;
        return result;
    }
    result = cnn_image_prepare(&picture, &prepared, model->input, character);
    cnn_image_free(&picture);
    if (result != CNN_OK) {
        *error = prepared.error;
        return result;
    }
    memcpy(input, prepared.data, cnn_shape_count(model->input) * sizeof(float));
    cnn_image_free(&prepared);
    return CNN_OK;
}

/* The name of class label: the model's own, else the mapping's character,
   else NULL (print the number). */
static const char *class_name(const cnn_model *model, const cnn_label_map *map, int label, char *text)
{
    const char *name = cnn_model_class_name(model, label);
    if (name) return name;
    if (!map) return NULL;
    snprintf(text, 8, "%c", cnn_label_map_char(map, label));
    return text;
}

int main(int argc, char **argv)
{
    const char *mapping_path = NULL, *model_path = NULL;
    cnn_character_desc character;
    static cnn_label_map map;
    static cnn_model model;
    float *input = NULL, *probabilities = NULL;
    int show_input = 0, failures = 0, first_image, classes, width = 1, status = 2, i, k;
    char text[8];

    memset(&character, 0, sizeof character);
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--mapping") && i + 1 < argc) mapping_path = argv[++i];
        else if (!strcmp(argv[i], "--box") && i + 1 < argc) character.box = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mass")) character.centre = CNN_CENTRE_MASS;
        else if (!strcmp(argv[i], "--transposed")) character.orientation = CNN_ORIENTATION_TRANSPOSE;
        else if (!strcmp(argv[i], "--show")) show_input = 1;
        else { fprintf(stderr, "predict: unknown option '%s'\n", argv[i]); usage(stderr); return 2; }
    }
    if (argc - i < 2) { usage(stderr); return 2; }
    model_path = argv[i];
    first_image = i + 1;

    if (cnn_model_load(&model, model_path, 1) != CNN_OK) {
        fprintf(stderr, "predict: %s\n", model.error.message);
        return 2;
    }
    classes = (int)cnn_shape_count(cnn_model_output_shape(&model));
    if (mapping_path) {
        if (cnn_label_map_load(&map, mapping_path) != CNN_OK) {
            fprintf(stderr, "predict: %s\n", map.error.message);
            goto done;
        }
        if (map.count != classes) {
            fprintf(stderr, "predict: '%s' maps %d labels but the model '%s' has %d classes\n", mapping_path, map.count,
                    model_path, classes);
            goto done;
        }
        if (model.class_name_count) fprintf(stderr, "predict: '%s' names its classes: --mapping is not used\n", model_path);
    }
    for (k = 0; k < model.class_name_count; k++) /* names line up in a column */
        if ((int)strlen(model.class_names[k]) > width) width = (int)strlen(model.class_names[k]);

    input = (float *)malloc(cnn_shape_count(model.input) * sizeof(float));
    probabilities = (float *)malloc((size_t)classes * sizeof(float));
    if (!input || !probabilities) {
        fprintf(stderr, "predict: out of memory\n");
        goto done;
    }
    for (i = first_image; i < argc; i++) {
        cnn_error error;
        int predicted, order[TOP], shown = classes < TOP ? classes : TOP;
        if (prepare(&model, argv[i], &character, input, &error) != CNN_OK) {
            fprintf(stderr, "predict: skipping '%s': %s\n", argv[i], error.message);
            failures++;
            continue;
        }
        if (cnn_model_predict(&model, input, 1, &predicted, probabilities) != CNN_OK) {
            fprintf(stderr, "predict: '%s': %s\n", argv[i], model.error.message);
            failures++;
            continue;
        }
        /* the TOP largest probabilities, by selection */
        for (k = 0; k < shown; k++) {
            int c, best = -1;
            for (c = 0; c < classes; c++) {
                int taken = 0, j;
                for (j = 0; j < k; j++) taken |= order[j] == c;
                if (!taken && (best < 0 || probabilities[c] > probabilities[best])) best = c;
            }
            order[k] = best;
        }
        printf("%s\n", argv[i]);
        if (show_input) show(input, model.input.h, model.input.w);
        for (k = 0; k < shown; k++) {
            const char *name = class_name(&model, mapping_path ? &map : NULL, order[k], text);
            if (name) printf("  %-*s  %6.2f%%   (class %d)\n", width, name, 100.0 * probabilities[order[k]], order[k]);
            else printf("  class %-4d %6.2f%%\n", order[k], 100.0 * probabilities[order[k]]);
        }
    }
    if (failures) fprintf(stderr, "predict: %d of %d images could not be read\n", failures, argc - first_image);
    status = failures ? 1 : 0;
done:
    free(input);
    free(probabilities);
    cnn_model_free(&model);
    return status;
}
