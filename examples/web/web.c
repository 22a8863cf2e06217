/* web.c - cnn.h in a web page: the functions web.js calls, compiled with
   clang to a WebAssembly (wasm32-wasi) reactor by `make web`.

   The page hands this module bytes (a model file, a picture file) or the
   pixels of its drawing canvas; the module runs them through cnn.h exactly
   as examples/predict.c does (cnn_image_load_memory with the model's channel
   count, then cnn_image_prepare, then cnn_model_predict) and leaves for the
   page to read: the probabilities, the prepared input, and the feature maps
   of the first conv layer after its batch norm, activation and pooling.

   The page is one user with one model at a time, so the state is a handful
   of statics (two model slots: a new model is loaded into the spare one and
   replaces the current one only when it loads). Every function that can
   fail returns 0 on success, else non-zero with a sentence in web_error().
   Strings and arrays returned stay valid until the next call that changes
   them. Built with -DCNN_NO_FAST: the plain library, one thread. */
#define STBI_NO_STDIO          /* pictures come as bytes */
#define STBI_NO_LINEAR         /* no HDR: the page takes 8-bit pictures */
#define STBI_NO_HDR
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define CNN_IMAGES
#define CNN_IMPLEMENTATION
#include "../../cnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEB_EXPORT(name) __attribute__((export_name(#name)))

/* The largest picture the page decodes: stb_image would first allocate
   width x height x 4 bytes, and a 2-byte header may claim anything. */
#define WEB_MAX_PIXELS (25 * 1000 * 1000)
#define WEB_MAX_SIDE 16384

static cnn_model web_models[2];      /* the current one and a spare */
static cnn_model *web_model;         /* NULL until a model loads */
static cnn_label_map web_map;        /* EMNIST's mapping, for 47-class models without names */
static int web_have_map;
static int web_classes;
static int web_names;                /* where the names come from: 1 the model, 2 the mapping, 0 none */
static float *web_probs;             /* (classes) of the last prediction */
static float *web_input;             /* (C, H, W) the last prepared input */
static int web_maps_layer = -1;      /* activations[web_maps_layer + 1]: first conv, activated, pooled */
static int web_info_values[12];
static char web_message[320];
static char web_name[32];
static char web_title[160];          /* the maps' layers, by arrows: conv2d, relu, max_pool */

static int web_fail(const char *message)
{
    snprintf(web_message, sizeof web_message, "%s", message);
    return 1;
}

WEB_EXPORT(web_alloc) void *web_alloc(int size)
{
    return size > 0 ? malloc((size_t)size) : NULL;
}

WEB_EXPORT(web_free) void web_free(void *pointer)
{
    free(pointer);
}

WEB_EXPORT(web_error) const char *web_error(void)
{
    return web_message;
}

/* What may come between a conv layer and its pool: its batch norm (which
   shows the maps as the next layers see them, not in the conv's raw scale)
   and its activations. */
static int web_follows_conv(cnn_layer_type type)
{
    return type == CNN_LAYER_BATCH_NORM || type == CNN_LAYER_RELU || type == CNN_LAYER_LEAKY_RELU || type == CNN_LAYER_SIGMOID ||
           type == CNN_LAYER_TANH;
}

/* The first conv layer, then the batch norm and activations and the one
   pooling layer right after it: the last of these is the layer whose output
   the page shows ("conv2d -> batch_norm -> relu -> max_pool" in a ResNet). */
static void web_find_maps(const cnn_model *model)
{
    int i, j, length = 0;
    web_maps_layer = -1;
    web_title[0] = '\0';
    for (i = 0; i < model->layer_count && model->layers[i].desc.type != CNN_LAYER_CONV2D; i++) continue;
    if (i == model->layer_count) return;
    for (j = i; j + 1 < model->layer_count && web_follows_conv(model->layers[j + 1].desc.type); j++) continue;
    if (j + 1 < model->layer_count &&
        (model->layers[j + 1].desc.type == CNN_LAYER_MAX_POOL || model->layers[j + 1].desc.type == CNN_LAYER_AVG_POOL))
        j++;
    web_maps_layer = j;
    for (; i <= j && length < (int)sizeof web_title - 1; i++)
        length += snprintf(web_title + length, sizeof web_title - (size_t)length, "%s%s", length ? " \xe2\x86\x92 " : "",
                           cnn_layer_type_name(model->layers[i].desc.type));
}

/* Loads a .cnn model file; on failure the current model stays. */
WEB_EXPORT(web_load_model) int web_load_model(const void *bytes, int size)
{
    cnn_model *spare = web_model == &web_models[0] ? &web_models[1] : &web_models[0];
    cnn_shape input, output;
    float *probs, *prepared;
    if (size <= 0) return web_fail("the model file is empty (0 bytes)");
    if (cnn_model_load_memory(spare, bytes, (size_t)size, 1) != CNN_OK) return web_fail(spare->error.message);
    input = spare->input;
    output = cnn_model_output_shape(spare);
    if ((input.c != 1 && input.c != 3) || input.h < 1 || input.w < 1) {
        snprintf(web_message, sizeof web_message, "this model takes inputs of %d channels; the page gives it pictures of 1 or 3", input.c);
        cnn_model_free(spare);
        return 1;
    }
    probs = (float *)malloc(cnn_shape_count(output) * sizeof(float));
    prepared = (float *)malloc(cnn_shape_count(input) * sizeof(float));
    if (!probs || !prepared) {
        free(probs);
        free(prepared);
        cnn_model_free(spare);
        return web_fail("out of memory for the model");
    }
    if (web_model) cnn_model_free(web_model);
    free(web_probs);
    free(web_input);
    web_model = spare;
    web_probs = probs;
    web_input = prepared;
    memset(web_input, 0, cnn_shape_count(input) * sizeof(float));
    web_classes = (int)cnn_shape_count(output);
    web_names = web_model->class_name_count ? 1 : 0;
    if (!web_names && web_have_map && web_map.count == web_classes && cnn_model_set_class_names_from_map(web_model, &web_map) == CNN_OK)
        web_names = 2;
    web_find_maps(web_model);
    return 0;
}

/* EMNIST's mapping file ("label code" lines): the characters, as names, of
   the models loaded after it that carry no names and have as many classes
   (47 for EMNIST's balanced set). */
WEB_EXPORT(web_load_mapping) int web_load_mapping(const void *bytes, int size)
{
    web_have_map = 0;
    if (cnn_label_map_load_memory(&web_map, bytes, (size_t)(size > 0 ? size : 0)) != CNN_OK) return web_fail(web_map.error.message);
    web_have_map = 1;
    return 0;
}

/* The model's shape and the feature maps' layer, as integers:
   [0..2] input C, H, W; [3] classes; [4] names' source (1 the model's, 2 the
   EMNIST mapping, 0 numbers); [5] the maps' layer or -1; [6..8] its C, H, W. */
WEB_EXPORT(web_info) const int *web_info(void)
{
    memset(web_info_values, 0, sizeof web_info_values);
    if (!web_model) return web_info_values;
    web_info_values[0] = web_model->input.c;
    web_info_values[1] = web_model->input.h;
    web_info_values[2] = web_model->input.w;
    web_info_values[3] = web_classes;
    web_info_values[4] = web_names;
    web_info_values[5] = web_maps_layer;
    if (web_maps_layer >= 0) {
        cnn_shape out = web_model->layers[web_maps_layer].out;
        web_info_values[6] = out.c;
        web_info_values[7] = out.h;
        web_info_values[8] = out.w;
    }
    return web_info_values;
}

WEB_EXPORT(web_maps_title) const char *web_maps_title(void)
{
    return web_title;
}

/* A class as predict names it: by the model's name for it (or the mapping's
   character, see web_load_mapping), else "class N". */
WEB_EXPORT(web_class_name) const char *web_class_name(int label)
{
    const char *name = web_model ? cnn_model_class_name(web_model, label) : NULL;
    if (name) return name;
    snprintf(web_name, sizeof web_name, "class %d", label);
    return web_name;
}

WEB_EXPORT(web_probabilities) const float *web_probabilities(void)
{
    return web_probs;
}

WEB_EXPORT(web_prepared) const float *web_prepared(void)
{
    return web_input;
}

/* The feature maps of the last prediction, (C, H, W) as web_info says. */
WEB_EXPORT(web_maps) const float *web_maps(void)
{
    return web_model && web_maps_layer >= 0 ? web_model->activations[web_maps_layer + 1].data : NULL;
}

/* Prepares a picture as predict does and runs the model on it. */
static int web_run(const cnn_image *picture)
{
    cnn_image prepared;
    int predicted;
    if (cnn_image_prepare(picture, &prepared, web_model->input, NULL) != CNN_OK) return web_fail(prepared.error.message);
    memcpy(web_input, prepared.data, cnn_shape_count(web_model->input) * sizeof(float));
    cnn_image_free(&prepared);
    if (cnn_model_predict(web_model, web_input, 1, &predicted, web_probs) != CNN_OK) return web_fail(web_model->error.message);
    return 0;
}

/* A picture file (PNG, JPEG, ...), loaded with the model's channel count. */
WEB_EXPORT(web_predict_file) int web_predict_file(const void *bytes, int size)
{
    cnn_image picture;
    int width, height, channels, failed;
    if (!web_model) return web_fail("no model is loaded");
    if (size <= 0) return web_fail("the file is empty (0 bytes)");
    if (stbi_info_from_memory((const stbi_uc *)bytes, size, &width, &height, &channels) &&
        (width > WEB_MAX_SIDE || height > WEB_MAX_SIDE || (double)width * height > WEB_MAX_PIXELS)) {
        snprintf(web_message, sizeof web_message,
                 "the picture says it is %d x %d pixels: the page reads pictures of up to %d megapixels and %d pixels a side", width,
                 height, WEB_MAX_PIXELS / 1000000, WEB_MAX_SIDE);
        return 1;
    }
    if (cnn_image_load_memory(&picture, bytes, (size_t)size, web_model->input.c) != CNN_OK) return web_fail(picture.error.message);
    failed = web_run(&picture);
    cnn_image_free(&picture);
    return failed;
}

/* The canvas: size bytes of RGBA, row by row, composited over white paper
   as cnn_image_load composites a transparent picture. */
WEB_EXPORT(web_predict_pixels) int web_predict_pixels(const unsigned char *rgba, int size, int width, int height)
{
    cnn_image picture;
    size_t plane, i;
    int failed;
    if (!web_model) return web_fail("no model is loaded");
    if (!rgba || width < 1 || height < 1 || width > WEB_MAX_SIDE || height > WEB_MAX_SIDE || size / 4 / width < height)
        return web_fail("the drawing's size does not match its pixels");
    if (cnn_image_alloc(&picture, 3, height, width) != CNN_OK) return web_fail(picture.error.message);
    plane = (size_t)width * (size_t)height;
    for (i = 0; i < plane; i++) {
        const unsigned char *p = rgba + 4 * i;
        const float alpha = (float)p[3] / 255.0f, white = 1.0f - alpha;
        picture.data[i] = alpha * ((float)p[0] / 255.0f) + white;
        picture.data[plane + i] = alpha * ((float)p[1] / 255.0f) + white;
        picture.data[2 * plane + i] = alpha * ((float)p[2] / 255.0f) + white;
    }
    failed = web_run(&picture);
    cnn_image_free(&picture);
    return failed;
}
