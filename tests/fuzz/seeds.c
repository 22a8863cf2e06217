/* seeds.c - writes the seed corpora of the fuzz targets: small valid inputs
   of every kind each loader reads, and damaged copies of them (truncated,
   a byte changed, a header lying about sizes). libFuzzer starts from these
   and mutates them, so it reaches deep into each parser from the start.

       seeds OUT_DIR [MAPPING_FILE [FIXTURES_DIR]]

   makes OUT_DIR/{csv,idx,mapping,model,safetensors,image}/ (which must not
   exist yet or be empty). MAPPING_FILE, a real EMNIST mapping file, becomes
   one seed; so does each *.safetensors file in FIXTURES_DIR (PyTorch's,
   tests/interop/fixtures). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#include "fuzz.h" /* cnn.h, and the model fuzz_safetensors.c fills */

static const char *out_dir;
static int written;

static void put(const char *kind, const char *name, const void *bytes, size_t size)
{
    char path[1024];
    FILE *file;
    snprintf(path, sizeof path, "%s/%s", out_dir, kind);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, kind, name);
    file = fopen(path, "wb");
    if (!file || fwrite(bytes, 1, size, file) != size || fclose(file) != 0) {
        fprintf(stderr, "seeds: cannot write %s\n", path);
        exit(1);
    }
    written++;
}

/* The seed, then copies: cut in half, cut by one byte, one byte flipped. */
static void put_damaged(const char *kind, const char *name, const unsigned char *bytes, size_t size)
{
    char damaged_name[256];
    unsigned char *copy = (unsigned char *)malloc(size + 1);
    put(kind, name, bytes, size);
    snprintf(damaged_name, sizeof damaged_name, "%s-half", name);
    put(kind, damaged_name, bytes, size / 2);
    snprintf(damaged_name, sizeof damaged_name, "%s-short", name);
    put(kind, damaged_name, bytes, size ? size - 1 : 0);
    memcpy(copy, bytes, size);
    copy[size / 3] ^= 0x55;
    snprintf(damaged_name, sizeof damaged_name, "%s-flipped", name);
    put(kind, damaged_name, copy, size);
    free(copy);
}

/* CSV seeds start with the settings byte of fuzz_csv.c. */
static void put_csv(const char *name, unsigned char settings, const char *text)
{
    size_t length = strlen(text);
    unsigned char *bytes = (unsigned char *)malloc(length + 1);
    bytes[0] = settings;
    memcpy(bytes + 1, text, length);
    put_damaged("csv", name, bytes, length + 1);
    free(bytes);
}

static void csv_seeds(void)
{
    char row28[4096];
    size_t at = 0;
    int i;
    /* settings: width = (bits 0-1) + 1; 0x04 AS_STORED; 0x10 ten classes; 0x20 three rows; 0x40 28x28 */
    put_csv("2x2", 0x01, "3,0,128,255,7\n1,1,2,3,4\n");
    put_csv("2x2-header-crlf", 0x01, "label,p1,p2,p3,p4\r\n3,0,128,255,7\r\n\r\n9,9,9,9,9\r\n");
    put_csv("3x3-stored", 0x06, "5,1,2,3,4,5,6,7,8,9\n");
    put_csv("1x1-ten-classes", 0x10, "0,0\n9,255\n10,1\n");
    put_csv("1x1-max-rows", 0x20, "1,1\n2,2\n3,3\n4,4\n5,5\n");
    put_csv("bad-number", 0x01, "3,0,12a,255,7\n");
    put_csv("too-few-fields", 0x01, "3,0,1\n");
    put_csv("stray-cr", 0x00, "1,2\r3\n");
    put_csv("big-values", 0x00, "99999999999999999999,300\n");
    put_csv("blank-lines", 0x00, "\n\n  \n\t\n");
    /* a 28x28 row, like one line of an EMNIST CSV */
    at += (size_t)sprintf(row28 + at, "17");
    for (i = 0; i < 784; i++) at += (size_t)sprintf(row28 + at, ",%d", (i * 37) % 256);
    sprintf(row28 + at, "\n");
    put_csv("28x28", 0x40, row28);
}

static void put_be32(unsigned char *out, unsigned value)
{
    out[0] = (unsigned char)(value >> 24); out[1] = (unsigned char)(value >> 16);
    out[2] = (unsigned char)(value >> 8); out[3] = (unsigned char)value;
}

/* IDX seeds: settings byte, labels length, labels file, images file. */
static void put_idx(const char *name, unsigned char settings, int count, int height, int width, int declared_count)
{
    size_t label_size = 8 + (size_t)count, image_size = 16 + (size_t)count * height * width, i;
    unsigned char *bytes = (unsigned char *)calloc(2 + label_size + image_size, 1);
    unsigned char *labels = bytes + 2, *images = labels + label_size;
    bytes[0] = settings;
    bytes[1] = (unsigned char)label_size;
    labels[2] = 0x08; labels[3] = 1; put_be32(labels + 4, (unsigned)declared_count);
    for (i = 0; i < (size_t)count; i++) labels[8 + i] = (unsigned char)(i % 10);
    images[2] = 0x08; images[3] = 3; put_be32(images + 4, (unsigned)declared_count);
    put_be32(images + 8, (unsigned)height); put_be32(images + 12, (unsigned)width);
    for (i = 0; i < (size_t)count * height * width; i++) images[16 + i] = (unsigned char)(i * 13);
    put_damaged("idx", name, bytes, 2 + label_size + image_size);
    free(bytes);
}

static void idx_seeds(void)
{
    put_idx("3x4x4", 0x00, 3, 4, 4, 3);
    put_idx("2x3x3-transpose", 0x02, 2, 3, 3, 2);
    put_idx("5x2x3-max-rows", 0x08, 5, 2, 3, 5);
    put_idx("12x2x2-ten-classes", 0x04, 12, 2, 2, 12);
    put_idx("1x28x28", 0x00, 1, 28, 28, 1);
    put_idx("count-lies", 0x00, 2, 2, 2, 1000000);
}

static void mapping_seeds(const char *real)
{
    static const char *texts[][2] = {
        {"digits", "0 48\n1 49\n2 50\n3 51\n4 52\n5 53\n6 54\n7 55\n8 56\n9 57\n"},
        {"crlf-blank", "0 65\r\n\r\n1 66\r\n"},
        {"gap", "0 48\n2 50\n"},
        {"twice", "0 48\n0 49\n"},
        {"unicode-max", "0 1114111\n"},
        {"too-big", "0 1114112\n1024 5\n"},
        {"trailing", "0 48 x\n"},
    };
    size_t i;
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++) put_damaged("mapping", texts[i][0], (const unsigned char *)texts[i][1], strlen(texts[i][1]));
    if (real) {
        FILE *file = fopen(real, "rb");
        unsigned char buffer[8192];
        size_t n = file ? fread(buffer, 1, sizeof buffer, file) : 0;
        if (file) fclose(file);
        if (n) put_damaged("mapping", "emnist-balanced", buffer, n);
    }
}

/* The whole of a file, in memory the caller frees; NULL if it cannot be read. */
static unsigned char *read_whole(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    unsigned char *bytes = NULL;
    long length;
    if (!file) return NULL;
    if (fseek(file, 0, SEEK_END) == 0 && (length = ftell(file)) >= 0 && fseek(file, 0, SEEK_SET) == 0 &&
        (bytes = (unsigned char *)malloc((size_t)length + 1)) != NULL && fread(bytes, 1, (size_t)length, file) == (size_t)length)
        *size = (size_t)length;
    else
        free(bytes), bytes = NULL;
    fclose(file);
    return bytes;
}

/* A built model saved through save (cnn_model_save or
   cnn_model_save_safetensors) and read back; the caller frees it. */
static unsigned char *saved(cnn_model *model, cnn_result (*save)(cnn_model *, const char *), const char *name, size_t *size)
{
    char path[1024];
    unsigned char *bytes;
    snprintf(path, sizeof path, "%s/model-seed", out_dir);
    if (save(model, path) != CNN_OK || !(bytes = read_whole(path, size))) {
        fprintf(stderr, "seeds: model %s: %s\n", name, model->error.message);
        exit(1);
    }
    remove(path);
    return bytes;
}

/* A model: built, saved as a model file and as a safetensors file. */
static void put_model(const char *name, cnn_model *model)
{
    unsigned char *bytes;
    size_t size;
    if (cnn_model_build(model, 1) != CNN_OK) {
        fprintf(stderr, "seeds: model %s: %s\n", name, model->error.message);
        exit(1);
    }
    bytes = saved(model, cnn_model_save, name, &size);
    put_damaged("model", name, bytes, size);
    free(bytes);
    bytes = saved(model, cnn_model_save_safetensors, name, &size);
    put_damaged("safetensors", name, bytes, size);
    free(bytes);
    cnn_model_free(model);
}

/* A checkpoint (cnn_checkpoint_save) of a small named model: Adam's
   moments after a step, the training state with a best copy, an augment
   generator and a history of one epoch. */
static void put_checkpoint(void)
{
    static const char *const names[3] = {"circle", "cross", "\xc3\xa9toile"};
    static cnn_model model;
    cnn_optimizer adam;
    cnn_fit_state state;
    cnn_history history;
    cnn_epoch_record record;
    cnn_rng augment;
    float input[16];
    int label = 1, i;
    char path[1024];
    unsigned char *bytes;
    size_t size;
    cnn_model_init(&model, 1, 4, 4, 9);
    cnn_add_conv2d(&model, 2, 3, 1, 1);
    cnn_add_relu(&model);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 3);
    cnn_add_softmax(&model);
    memset(&state, 0, sizeof state);
    memset(&history, 0, sizeof history);
    memset(&record, 0, sizeof record);
    for (i = 0; i < 16; i++) input[i] = (float)i / 16.0f;
    if (cnn_model_build(&model, 1) != CNN_OK || cnn_model_set_class_names(&model, names, 3) != CNN_OK ||
        cnn_optimizer_init(&adam, &model, NULL) != CNN_OK || cnn_model_train_step(&model, &adam, input, &label, 1, NULL, NULL) != CNN_OK) {
        fprintf(stderr, "seeds: checkpoint: %s\n", model.error.message);
        exit(1);
    }
    record.epoch = 1;
    cnn_history_add(&history, &record);
    cnn_rng_seed(&augment, 5);
    state.epoch = state.best_epoch = 1;
    state.best_loss = 0.5f;
    state.param_count = model.param_count;
    state.best_params = model.params; /* borrowed: saved, never freed here */
    state.augment_rng = &augment;
    state.history = &history;
    snprintf(path, sizeof path, "%s/model-seed", out_dir);
    if (cnn_checkpoint_save(&model, &adam, &state, path) != CNN_OK || !(bytes = read_whole(path, &size))) {
        fprintf(stderr, "seeds: checkpoint: %s\n", model.error.message);
        exit(1);
    }
    remove(path);
    put_damaged("model", "checkpoint", bytes, size);
    free(bytes);
    cnn_history_free(&history);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
}

static void model_seeds(void)
{
    cnn_model model;
    cnn_layer_desc desc;
    /* a small LeNet-like net: every layer type with parameters or shape changes */
    cnn_model_init(&model, 1, 8, 8, 1);
    cnn_add_conv2d(&model, 2, 3, 1, 1);
    cnn_add_relu(&model);
    cnn_add_max_pool(&model, 2, 2);
    cnn_add_conv2d(&model, 3, 2, 2, 0);
    cnn_add_tanh(&model);
    cnn_add_avg_pool(&model, 2, 1);
    cnn_add_flatten(&model);
    cnn_add_dropout(&model, 0.25f);
    cnn_add_dense(&model, 4);
    cnn_add_leaky_relu(&model, 0.1f);
    cnn_add_dense(&model, 3);
    cnn_add_softmax(&model);
    put_model("small-cnn", &model);
    /* with class names, and as a checkpoint of Adam after a step */
    put_checkpoint();
    /* dense only, on a flat input, He initialised */
    cnn_model_init(&model, 5, 1, 1, 2);
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_LAYER_DENSE; desc.units = 2; desc.init = CNN_INIT_HE_NORMAL;
    cnn_model_add(&model, &desc);
    cnn_add_sigmoid(&model);
    put_model("dense", &model);
    /* no parameters at all */
    cnn_model_init(&model, 2, 3, 3, 3);
    cnn_add_relu(&model);
    put_model("relu-only", &model);
}

/* A safetensors file for model written by hand, as other tools write them:
   dtype "F32", "F16" or "BF16"; metadata, the '"__metadata__":{...}' of a
   file cnn.h wrote, or NULL; tensors in the reverse order of their names
   (bias before weight, the last layer first), no padding. The values are a
   pattern of small numbers (F16 subnormals among them), not the model's. */
static void put_by_hand(const char *name, const cnn_model *model, const char *dtype, const char *metadata)
{
    static char header[8192];
    static unsigned char bytes[8 + sizeof header + 4096];
    size_t length = 0, data = 0, element = strcmp(dtype, "F32") == 0 ? 4 : 2, k;
    int l, bias;
    length += (size_t)snprintf(header + length, sizeof header - length, "{%s", metadata ? metadata : "");
    for (l = model->layer_count - 1; l >= 0; l--) {
        const cnn_layer *layer = &model->layers[l];
        size_t count;
        if (!layer->weight_count) continue;
        for (bias = 1; bias >= 0; bias--) {
            count = bias ? layer->bias_count : layer->weight_count;
            length += (size_t)snprintf(header + length, sizeof header - length, "%s\"%d.%s\":{\"dtype\":\"%s\",\"shape\":",
                                       length > 1 ? "," : "", l, bias ? "bias" : "weight", dtype);
            if (bias) length += (size_t)snprintf(header + length, sizeof header - length, "[%d]", layer->desc.units);
            else if (layer->desc.type == CNN_LAYER_CONV2D)  /* (OC, C, K, K) */
                length += (size_t)snprintf(header + length, sizeof header - length, "[%d,%d,%d,%d]", layer->desc.units,
                                           layer->in.c, layer->desc.kernel, layer->desc.kernel);
            else  /* dense: (out, in) */
                length += (size_t)snprintf(header + length, sizeof header - length, "[%d,%lu]", layer->desc.units,
                                           (unsigned long)cnn_shape_count(layer->in));
            length += (size_t)snprintf(header + length, sizeof header - length, ",\"data_offsets\":[%lu,%lu]}",
                                       (unsigned long)data, (unsigned long)(data + count * element));
            data += count * element;
        }
    }
    length += (size_t)snprintf(header + length, sizeof header - length, "}");
    if (length >= sizeof header || 8 + length + data > sizeof bytes) {
        fprintf(stderr, "seeds: safetensors %s is too big\n", name);
        exit(1);
    }
    memset(bytes, 0, 8);
    bytes[0] = (unsigned char)length; bytes[1] = (unsigned char)(length >> 8);
    memcpy(bytes + 8, header, length);
    for (k = 0; k < data / element; k++) {
        unsigned char *at = bytes + 8 + length + k * element;
        unsigned sign = (k & 1) << 15, bits;
        if (element == 4) {
            float value = (float)((int)(k % 9) - 4) * 0.125f;
            memcpy(&bits, &value, 4);
            at[0] = (unsigned char)bits; at[1] = (unsigned char)(bits >> 8);
            at[2] = (unsigned char)(bits >> 16); at[3] = (unsigned char)(bits >> 24);
            continue;
        }
        if (strcmp(dtype, "F16") == 0) bits = sign | (k % 5 == 0 ? (unsigned)(k * 7 % 0x400) : 0x3000u + (unsigned)(k * 37 % 0x800));
        else bits = sign | (0x3D80u + (unsigned)(k * 13 % 0x100)); /* BF16 */
        at[0] = (unsigned char)bits; at[1] = (unsigned char)(bits >> 8);
    }
    put_damaged("safetensors", name, bytes, 8 + length + data);
}

/* For fuzz_safetensors.c's model: as cnn.h saves it, then by hand as F32
   without metadata, as F16 and BF16 with; and the fixtures from PyTorch. */
static void safetensors_seeds(const char *fixtures)
{
    cnn_model model;
    unsigned char *bytes;
    char *metadata, *end;
    size_t size;
    if (fuzz_safetensors_model(&model) != CNN_OK) {
        fprintf(stderr, "seeds: fuzz_safetensors_model: %s\n", model.error.message);
        exit(1);
    }
    bytes = saved(&model, cnn_model_save_safetensors, "fuzz_safetensors_model", &size);
    put_damaged("safetensors", "fixed", bytes, size);
    /* its metadata: from the header's '{' to the end of the first object (its values hold no '}') */
    bytes[size - 1] = '\0';
    metadata = (char *)bytes + 9;
    if (size < 10 || strncmp(metadata, "\"__metadata__\":{", 16) != 0 || !(end = strchr(metadata, '}'))) {
        fprintf(stderr, "seeds: no __metadata__ in what cnn_model_save_safetensors wrote\n");
        exit(1);
    }
    end[1] = '\0';
    put_by_hand("fixed-no-metadata", &model, "F32", NULL);
    put_by_hand("fixed-f16", &model, "F16", metadata);
    put_by_hand("fixed-bf16", &model, "BF16", metadata);
    free(bytes);
    cnn_model_free(&model);
    if (fixtures) {
        DIR *dir = opendir(fixtures);
        struct dirent *item;
        char path[1024];
        size_t n;
        while (dir && (item = readdir(dir)) != NULL) {
            n = strlen(item->d_name);
            if (n < 12 || strcmp(item->d_name + n - 12, ".safetensors") != 0) continue;
            snprintf(path, sizeof path, "%s/%s", fixtures, item->d_name);
            if ((bytes = read_whole(path, &size)) != NULL) put_damaged("safetensors", item->d_name, bytes, size);
            free(bytes);
        }
        if (dir) closedir(dir);
    }
}

static void write_to_memory(void *context, void *data, int size)
{
    unsigned char **cursor = (unsigned char **)context;
    memcpy(*cursor, data, (size_t)size);
    *cursor += size;
}

/* Images: PNG, BMP, TGA, JPEG from stb_image_write, PGM/PPM by hand; each
   with the channels byte of fuzz_image.c in front. */
static void put_image(const char *name, int channels_byte, const unsigned char *bytes, size_t size)
{
    unsigned char *copy = (unsigned char *)malloc(size + 1);
    copy[0] = (unsigned char)channels_byte;
    memcpy(copy + 1, bytes, size);
    put_damaged("image", name, copy, size + 1);
    free(copy);
}

static void image_seeds(void)
{
    static unsigned char buffer[1 << 16];
    unsigned char pixels[4 * 6 * 5], *cursor;
    int i;
    for (i = 0; i < (int)sizeof pixels; i++) pixels[i] = (unsigned char)(i * 11);
    cursor = buffer; stbi_write_png_to_func(write_to_memory, &cursor, 6, 5, 1, pixels, 6);
    put_image("grey.png", 0, buffer, (size_t)(cursor - buffer));
    cursor = buffer; stbi_write_png_to_func(write_to_memory, &cursor, 6, 5, 4, pixels, 24);
    put_image("rgba.png", 1, buffer, (size_t)(cursor - buffer));
    cursor = buffer; stbi_write_bmp_to_func(write_to_memory, &cursor, 6, 5, 3, pixels);
    put_image("rgb.bmp", 3, buffer, (size_t)(cursor - buffer));
    cursor = buffer; stbi_write_tga_to_func(write_to_memory, &cursor, 6, 5, 2, pixels);
    put_image("grey-alpha.tga", 0, buffer, (size_t)(cursor - buffer));
    cursor = buffer; stbi_write_jpg_to_func(write_to_memory, &cursor, 6, 5, 3, pixels, 80);
    put_image("rgb.jpg", 1, buffer, (size_t)(cursor - buffer));
    {
        static const char pgm[] = "P5\n3 2\n255\n\x00\x40\x80\xc0\xff\x10";
        static const char ppm[] = "P6 1 2 255 \x01\x02\x03\x04\x05\x06";
        static const char gif[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;";
        put_image("grey.pgm", 0, (const unsigned char *)pgm, sizeof pgm - 1);
        put_image("rgb.ppm", 3, (const unsigned char *)ppm, sizeof ppm - 1);
        put_image("1x1.gif", 0, (const unsigned char *)gif, sizeof gif - 1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: seeds OUT_DIR [MAPPING_FILE [FIXTURES_DIR]]\n");
        return 2;
    }
    out_dir = argv[1];
    mkdir(out_dir, 0777);
    csv_seeds();
    idx_seeds();
    mapping_seeds(argc > 2 ? argv[2] : NULL);
    model_seeds();
    safetensors_seeds(argc > 3 ? argv[3] : NULL);
    image_seeds();
    printf("seeds: %d files in %s\n", written, out_dir);
    return 0;
}
