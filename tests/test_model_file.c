/* test_model_file.c - saving and loading models, checkpoints and class
   names, and shape errors.

   A saved model must load back bit for bit; a damaged or foreign file must be
   refused with CNN_ERROR_BAD_MODEL_FILE, the byte where it goes wrong and a
   message, leaving the model freed. Files are of format version 2: the
   magic, the version, then sections (a 4-byte tag, a u64 length, the
   contents), the last a CRC-32 of every byte before it (cnn.h, "model
   files"). A test that changes a field inside a section recomputes that
   CRC (fix_crc, with a CRC-32 of its own) so that the check it aims at is
   the one that fires; others leave it stale and expect the CRC to refuse
   the file. Files of older formats (tests/fixtures: model_v1.cnn, format
   version 1, and model_v2_32.cnn, layer records of 32 bytes, each written
   by the cnn.h of the commit make_old_models.c names) still load and
   compute what they did. Batch norm's running statistics and batch counts
   travel in their own section, and resume with a checkpoint. Layers that
   cannot fit their input are refused when added, with a message naming
   the problem; the shapes of layers that fit are inferred exactly. */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L /* pipe, write, close under -std=c99 */
#endif
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"
#if defined(__linux__)
#include <unistd.h>
#endif

#define FIXTURES "tests/fixtures/"

/* ---------------------------------------------------------------- helpers */

/* The small model used throughout: input 1x12x12, conv 4@3x3 pad 1, ReLU,
   max-pool 2, flatten, dense 10, softmax; and where each part of its file
   lies (format version 2, without class names). */
#define SMALL_LAYERS 6
#define SMALL_PARAMS (4 * 1 * 3 * 3 + 4 + 4 * 6 * 6 * 10 + 10) /* 1490 */
#define INPT_AT 12                                     /* the input section's header */
#define INPUT_AT (INPT_AT + 12)                        /* 24: channels, height, width */
#define LAYR_AT (INPUT_AT + 12)                        /* 36: the layer section's header */
#define LAYER_COUNT_AT (LAYR_AT + 12)                  /* 48: u32 layer count */
#define RECORD_SIZE_AT (LAYER_COUNT_AT + 4)            /* 52: u32 record size (36) */
#define LAYER_BYTES 36                                 /* a layer record, as cnn.h writes it */
#define LAYER_AT(i) (RECORD_SIZE_AT + 4 + LAYER_BYTES * (i)) /* 56 + 36 i: layer record i */
#define PARM_AT LAYER_AT(SMALL_LAYERS)                 /* 272: the parameter section's header */
#define COUNT_AT (PARM_AT + 12)                        /* 284: u64 parameter count */
#define PARAMS_AT (COUNT_AT + 8)                       /* 292: the first parameter */
#define CRC_SECTION_AT (PARAMS_AT + 4 * SMALL_PARAMS)  /* 6252: the CRC section's header */
#define CRC_AT (CRC_SECTION_AT + 12)                   /* 6264: the CRC */
#define SMALL_FILE_BYTES (CRC_AT + 4)                  /* 6268 */

/* The version-1 fixture: input 1x8x8, conv 2@3x3 pad 1, ReLU, max-pool 2,
   flatten, dense 3, softmax; version 1 has no sections and no CRC. */
#define V1_LAYERS 6
#define V1_PARAMS (2 * 9 + 2 + 32 * 3 + 3)             /* 119 */
#define V1_LAYER_AT(i) (28 + 32 * (i))
#define V1_COUNT_AT V1_LAYER_AT(V1_LAYERS)             /* 220 */
#define V1_PARAMS_AT (V1_COUNT_AT + 8)                 /* 228 */
#define V1_FILE_BYTES (V1_PARAMS_AT + 4 * V1_PARAMS)   /* 704 */

static cnn_result small_model_seeded(cnn_model *model, int max_batch, uint64_t seed, int dense_units)
{
    cnn_result r = cnn_model_init(model, 1, 12, 12, seed);
    if (r == CNN_OK) r = cnn_add_conv2d(model, 4, 3, 1, 1);
    if (r == CNN_OK) r = cnn_add_relu(model);
    if (r == CNN_OK) r = cnn_add_max_pool(model, 2, 2);
    if (r == CNN_OK) r = cnn_add_flatten(model);
    if (r == CNN_OK) r = cnn_add_dense(model, dense_units);
    if (r == CNN_OK) r = cnn_add_softmax(model);
    if (r == CNN_OK) r = cnn_model_build(model, max_batch);
    return r;
}

static cnn_result small_model(cnn_model *model, int max_batch) { return small_model_seeded(model, max_batch, 42, 10); }

/* count inputs of 1x12x12 uniform in [0, 1), reproducibly. */
static void fill_inputs(float *inputs, size_t count, uint64_t seed)
{
    cnn_rng rng;
    size_t i;
    cnn_rng_seed(&rng, seed);
    for (i = 0; i < count * 144; i++) inputs[i] = cnn_rng_uniform(&rng);
}

/* A scratch path copied out of test_path's static buffer. */
static void scratch(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s", test_path(name));
}

static int file_exists(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (file) fclose(file);
    return file != NULL;
}

static void put_u32(unsigned char *at, uint32_t value)
{
    at[0] = (unsigned char)value;
    at[1] = (unsigned char)(value >> 8);
    at[2] = (unsigned char)(value >> 16);
    at[3] = (unsigned char)(value >> 24);
}

static void put_u64(unsigned char *at, uint64_t value)
{
    put_u32(at, (uint32_t)value);
    put_u32(at + 4, (uint32_t)(value >> 32));
}

static void put_f32(unsigned char *at, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    put_u32(at, bits);
}

static uint32_t get_u32(const unsigned char *at)
{
    return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 | (uint32_t)at[3] << 24;
}

static uint64_t get_u64(const unsigned char *at) { return (uint64_t)get_u32(at) | (uint64_t)get_u32(at + 4) << 32; }

static float get_f32(const unsigned char *at)
{
    uint32_t bits = get_u32(at);
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Whether the little-endian float32 at `at` has the same bits as value. */
static int get_f32_bits_equal(const unsigned char *at, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return get_u32(at) == bits;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Whether model names label name. */
static int name_is(const cnn_model *model, int label, const char *name)
{
    const char *have = cnn_model_class_name(model, label);
    return have && strcmp(have, name) == 0;
}

/* label's name, or "(none)", for messages. */
static const char *name_of(const cnn_model *model, int label)
{
    const char *have = cnn_model_class_name(model, label);
    return have ? have : "(none)";
}

/* CRC-32 as zlib and PNG compute it (reflected polynomial 0xEDB88320), one
   bit at a time: written here from its definition, not taken from cnn.h,
   so that a wrong CRC in the library cannot agree with itself. */
static uint32_t crc32_of(const unsigned char *bytes, size_t count)
{
    uint32_t crc = 0xffffffffu;
    size_t i;
    int bit;
    for (i = 0; i < count; i++) {
        crc ^= bytes[i];
        for (bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* Recomputes the CRC of a version-2 file after a change: the CRC section
   (a 12-byte header and the u32 CRC) is its last 16 bytes. */
static void fix_crc(unsigned char *bytes, size_t length)
{
    put_u32(bytes + length - 4, crc32_of(bytes, length - 16));
}

/* The offset of the header of the first section tagged tag in a version-2
   file, or -1 when there is none. */
static long find_section(const unsigned char *bytes, size_t length, const char *tag)
{
    size_t at = 12;
    while (at + 12 <= length) {
        uint64_t size = get_u64(bytes + at + 4);
        if (memcmp(bytes + at, tag, 4) == 0) return (long)at;
        if (size > length - at - 12) return -1;
        at += 12 + (size_t)size;
    }
    return -1;
}

/* A copy of length bytes (malloc'd) with count bytes of extra inserted at
   `at` (extra NULL: with bytes at..at+count-1 removed instead); *new_length
   its length. The CRC is not fixed. */
static unsigned char *spliced(const unsigned char *bytes, size_t length, size_t at, const void *extra, size_t count,
                              size_t *new_length)
{
    unsigned char *out;
    *new_length = extra ? length + count : length - count;
    out = (unsigned char *)malloc(*new_length + 1);
    if (!out) return NULL;
    memcpy(out, bytes, at);
    if (extra) {
        memcpy(out + at, extra, count);
        memcpy(out + at + count, bytes + at, length - at);
    } else {
        memcpy(out + at, bytes + at + count, length - at - count);
    }
    return out;
}

/* A section (header and contents) in out, which must hold 12 + count bytes;
   returns its size. */
static size_t make_section(unsigned char *out, const char *tag, const void *contents, size_t count)
{
    memcpy(out, tag, 4);
    put_u64(out + 4, count);
    if (count) memcpy(out + 12, contents, count);
    return 12 + count;
}

/* The bytes of a model saved to a file (malloc'd; free it). */
static unsigned char *model_bytes(cnn_model *model, const char *name, size_t *length)
{
    char path[1024];
    scratch(path, sizeof path, name);
    *length = 0;
    if (cnn_model_save(model, path) != CNN_OK) {
        printf("    cannot save %s: %s\n", name, model->error.message);
        return NULL;
    }
    return test_read_file(path, length);
}

/* The bytes of the small model saved to a file (malloc'd; free it). */
static unsigned char *small_model_bytes(size_t *length)
{
    cnn_model model;
    unsigned char *bytes = NULL;
    *length = 0;
    if (small_model(&model, 4) != CNN_OK) printf("    cannot build the small model: %s\n", model.error.message);
    else bytes = model_bytes(&model, "small.cnn", length);
    cnn_model_free(&model);
    if (bytes && *length != SMALL_FILE_BYTES) {
        printf("    the small model's file has %lu bytes, expected %d\n", (unsigned long)*length, SMALL_FILE_BYTES);
        free(bytes);
        bytes = NULL;
    }
    return bytes;
}

/* The model is freed: no memory, no layers; freeing it again is safe. */
static void check_freed(cnn_model *model, const char *what)
{
    CHECK(model->memory == NULL && model->int_memory == NULL, "%s: model memory not freed", what);
    CHECK(model->params == NULL && model->grads == NULL, "%s: params not NULL", what);
    CHECK(model->layer_count == 0 && model->param_count == 0, "%s: %d layers, %lu params left", what,
          model->layer_count, (unsigned long)model->param_count);
    CHECK(model->class_names == NULL && model->class_name_count == 0, "%s: class names left", what);
    cnn_model_free(model);
    cnn_model_free(model);
}

/* A load into model returned r: it must be CNN_ERROR_BAD_MODEL_FILE at
   want_byte, with a message that contains needle, the model left freed. */
static void check_load_error(cnn_model *model, cnn_result r, long long want_byte, const char *needle, const char *what)
{
    CHECK(r == CNN_ERROR_BAD_MODEL_FILE, "%s: result %d (%s)", what, (int)r, model->error.message);
    CHECK(model->error.code == CNN_ERROR_BAD_MODEL_FILE, "%s: error.code %d", what, (int)model->error.code);
    CHECK(model->error.byte == want_byte, "%s: error.byte %lld, expected %lld (%s)", what, model->error.byte, want_byte,
          model->error.message);
    CHECK(strstr(model->error.message, needle) != NULL, "%s: message '%s' does not mention '%s'", what, model->error.message,
          needle);
    check_freed(model, what);
}

/* Writes length bytes as a model file called name and checks that loading it
   is refused with CNN_ERROR_BAD_MODEL_FILE at want_byte, with a message that
   contains needle, leaving the model freed. */
static void check_refused(const char *name, const unsigned char *bytes, size_t length, long long want_byte,
                          const char *needle)
{
    cnn_model model;
    cnn_result r;
    memset(&model, 0x5a, sizeof model); /* load must not trust what was there */
    r = cnn_model_load(&model, test_write_file(name, bytes, length), 4);
    check_load_error(&model, r, want_byte, needle, name);
}

/* A copy of good with one u32 replaced and the CRC fixed, refused. */
static void check_patched_u32(const char *name, const unsigned char *good, size_t length, size_t at, uint32_t value,
                              long long want_byte, const char *needle)
{
    unsigned char *bad = (unsigned char *)malloc(length);
    if (!bad) return;
    memcpy(bad, good, length);
    put_u32(bad + at, value);
    fix_crc(bad, length);
    check_refused(name, bad, length, want_byte, needle);
    free(bad);
}

/* The same with a float32. */
static void check_patched_f32(const char *name, const unsigned char *good, size_t length, size_t at, float value,
                              long long want_byte, const char *needle)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    check_patched_u32(name, good, length, at, bits, want_byte, needle);
}

/* Writes length bytes as a model file called name and loads it; 1 when it
   loads (model then holds it), else 0 with a line saying why. */
static int loads(cnn_model *model, const char *name, const unsigned char *bytes, size_t length)
{
    cnn_result r = cnn_model_load(model, test_write_file(name, bytes, length), 4);
    CHECK(r == CNN_OK, "%s was refused: %s", name, model->error.message);
    return r == CNN_OK;
}

#if defined(__linux__)
/* Loads bytes through a pipe (/dev/fd/N of its reading end), an input whose
   size cannot be known before it ends: the loader finds the end only when
   it reads there. path receives the name used. */
static cnn_result load_through_pipe(cnn_model *model, const unsigned char *bytes, size_t length, char *path, size_t size)
{
    int ends[2];
    cnn_result r;
    snprintf(path, size, "(no pipe)");
    if (pipe(ends) != 0) return CNN_ERROR_IO;
    if (write(ends[1], bytes, length) != (ssize_t)length) { /* fits in the pipe's buffer (64 KiB on Linux) */
        close(ends[0]);
        close(ends[1]);
        return CNN_ERROR_IO;
    }
    close(ends[1]);
    snprintf(path, size, "/dev/fd/%d", ends[0]);
    r = cnn_model_load(model, path, 4);
    close(ends[0]);
    return r;
}
#endif

/* ---------------------------------------------------------------- save and load */

/* The test's own CRC-32 is the standard one ("123456789" gives CBF43926),
   so the files it fixes are what a correct writer writes. */
TEST(crc32_helper_is_standard)
{
    CHECK(crc32_of((const unsigned char *)"123456789", 9) == 0xcbf43926u, "crc32 %08lx",
          (unsigned long)crc32_of((const unsigned char *)"123456789", 9));
    CHECK(crc32_of((const unsigned char *)"", 0) == 0, "crc32 of nothing");
}

/* Save then load gives the same architecture, the same parameters bit for
   bit, the same summary, and bit-identical predictions and probabilities
   (on 11 inputs, more than one batch of 8); the file is laid out exactly as
   cnn.h's "model files" says. */
TEST(save_load_round_trip)
{
    enum { COUNT = 11 };
    static float inputs[COUNT * 144], before_p[COUNT * 10], after_p[COUNT * 10];
    int before_c[COUNT], after_c[COUNT], i;
    char path[1024], summary_before[2048], summary_after[2048];
    cnn_model model, loaded;
    cnn_result r;
    unsigned char *bytes;
    size_t length;
    scratch(path, sizeof path, "round_trip.cnn");
    fill_inputs(inputs, COUNT, 7);
    r = small_model(&model, 8);
    CHECK(r == CNN_OK, "build: %s", model.error.message);
    if (r != CNN_OK) return;
    CHECK(model.param_count == SMALL_PARAMS, "param_count %lu, expected %d", (unsigned long)model.param_count, SMALL_PARAMS);
    r = cnn_model_predict(&model, inputs, COUNT, before_c, before_p);
    CHECK(r == CNN_OK, "predict: %s", model.error.message);
    r = cnn_model_save(&model, path);
    CHECK(r == CNN_OK, "save: %s", model.error.message);

    /* the file is exactly as documented */
    bytes = test_read_file(path, &length);
    CHECK(bytes && length == SMALL_FILE_BYTES, "file has %lu bytes, expected %d", (unsigned long)length, SMALL_FILE_BYTES);
    if (bytes && length == SMALL_FILE_BYTES) {
        CHECK(memcmp(bytes, "\x89" "CNN\r\n\x1a\n", 8) == 0, "wrong magic");
        CHECK(get_u32(bytes + 8) == 2, "version %lu", (unsigned long)get_u32(bytes + 8));
        CHECK(memcmp(bytes + INPT_AT, "INPT", 4) == 0 && get_u64(bytes + INPT_AT + 4) == 12, "input section header");
        CHECK(get_u32(bytes + INPUT_AT) == 1 && get_u32(bytes + INPUT_AT + 4) == 12 && get_u32(bytes + INPUT_AT + 8) == 12,
              "input shape");
        CHECK(memcmp(bytes + LAYR_AT, "LAYR", 4) == 0 && get_u64(bytes + LAYR_AT + 4) == 8 + LAYER_BYTES * SMALL_LAYERS,
              "layer section header");
        CHECK(get_u32(bytes + LAYER_COUNT_AT) == SMALL_LAYERS, "layer count %lu", (unsigned long)get_u32(bytes + LAYER_COUNT_AT));
        CHECK(get_u32(bytes + RECORD_SIZE_AT) == LAYER_BYTES, "record size %lu", (unsigned long)get_u32(bytes + RECORD_SIZE_AT));
        CHECK(get_u32(bytes + LAYER_AT(0)) == CNN_LAYER_CONV2D && get_u32(bytes + LAYER_AT(0) + 4) == 4 &&
                  get_u32(bytes + LAYER_AT(0) + 8) == 3 && get_u32(bytes + LAYER_AT(0) + 12) == 1 &&
                  get_u32(bytes + LAYER_AT(0) + 16) == 1 && get_u32(bytes + LAYER_AT(0) + 20) == CNN_INIT_GLOROT_UNIFORM,
              "conv2d record");
        CHECK(get_u32(bytes + LAYER_AT(2)) == CNN_LAYER_MAX_POOL && get_u32(bytes + LAYER_AT(2) + 8) == 2 &&
                  get_u32(bytes + LAYER_AT(2) + 12) == 2,
              "max pool record");
        CHECK(get_u32(bytes + LAYER_AT(4)) == CNN_LAYER_DENSE && get_u32(bytes + LAYER_AT(4) + 4) == 10, "dense record");
        CHECK(get_u32(bytes + LAYER_AT(5)) == CNN_LAYER_SOFTMAX, "softmax record");
        CHECK(memcmp(bytes + PARM_AT, "PARM", 4) == 0 && get_u64(bytes + PARM_AT + 4) == 8 + 4 * SMALL_PARAMS,
              "parameter section header");
        CHECK(get_u64(bytes + COUNT_AT) == SMALL_PARAMS, "parameter count");
        CHECK(get_f32_bits_equal(bytes + PARAMS_AT, model.params[0]), "the first parameter is not params[0]");
        CHECK(get_f32_bits_equal(bytes + CRC_SECTION_AT - 4, model.params[SMALL_PARAMS - 1]), "the last parameter differs");
        CHECK(memcmp(bytes + CRC_SECTION_AT, "CRC ", 4) == 0 && get_u64(bytes + CRC_SECTION_AT + 4) == 4, "CRC section header");
        CHECK(get_u32(bytes + CRC_AT) == crc32_of(bytes, CRC_SECTION_AT), "CRC %08lx, the bytes before it give %08lx",
              (unsigned long)get_u32(bytes + CRC_AT), (unsigned long)crc32_of(bytes, CRC_SECTION_AT));
    }
    free(bytes);

    r = cnn_model_load(&loaded, path, 8);
    CHECK(r == CNN_OK, "load: %s", loaded.error.message);
    if (r != CNN_OK) {
        cnn_model_free(&model);
        return;
    }
    CHECK(loaded.input.c == 1 && loaded.input.h == 12 && loaded.input.w == 12, "input shape");
    CHECK(loaded.layer_count == SMALL_LAYERS, "layer_count %d", loaded.layer_count);
    CHECK(loaded.max_batch == 8, "max_batch %d", loaded.max_batch);
    CHECK(loaded.param_count == model.param_count, "param_count %lu vs %lu", (unsigned long)loaded.param_count,
          (unsigned long)model.param_count);
    CHECK(memcmp(loaded.params, model.params, model.param_count * sizeof(float)) == 0, "parameters differ");
    CHECK(loaded.class_names == NULL && cnn_model_class_name(&loaded, 0) == NULL, "a model saved without names has names");
    for (i = 0; i < SMALL_LAYERS && i < loaded.layer_count; i++) {
        const cnn_layer *a = &model.layers[i], *b = &loaded.layers[i];
        CHECK(a->desc.type == b->desc.type && a->desc.units == b->desc.units && a->desc.kernel == b->desc.kernel &&
                  a->desc.stride == b->desc.stride && a->desc.padding == b->desc.padding && a->desc.init == b->desc.init,
              "layer %d settings differ", i);
        CHECK(a->out.c == b->out.c && a->out.h == b->out.h && a->out.w == b->out.w, "layer %d output shape differs", i);
    }
    cnn_model_summary(&model, summary_before, sizeof summary_before);
    cnn_model_summary(&loaded, summary_after, sizeof summary_after);
    CHECK(strcmp(summary_before, summary_after) == 0, "summaries differ:\n%s\n%s", summary_before, summary_after);
    CHECK(strstr(summary_after, "total parameters: 1,490") != NULL, "summary:\n%s", summary_after);

    r = cnn_model_predict(&loaded, inputs, COUNT, after_c, after_p);
    CHECK(r == CNN_OK, "predict after load: %s", loaded.error.message);
    CHECK(memcmp(before_c, after_c, sizeof before_c) == 0, "predicted classes differ");
    CHECK(memcmp(before_p, after_p, sizeof before_p) == 0, "probabilities differ (max %g)",
          test_max_abs_diff(before_p, after_p, COUNT * 10));
    cnn_model_free(&loaded);
    cnn_model_free(&model);
}

/* Every layer type and setting survives a round trip: leaky ReLU's alpha,
   dropout's rate, pool strides, conv stride, initialisers. */
TEST(save_load_every_layer_setting)
{
    cnn_model model, loaded;
    cnn_layer_desc he;
    char path[1024];
    cnn_result r;
    int i;
    scratch(path, sizeof path, "every_layer.cnn");
    memset(&he, 0, sizeof he);
    he.type = CNN_LAYER_DENSE;
    he.units = 7;
    he.init = CNN_INIT_HE_NORMAL;
    r = cnn_model_init(&model, 2, 9, 9, 3);
    if (r == CNN_OK) r = cnn_add_conv2d(&model, 3, 3, 2, 1);      /* 5x5 */
    if (r == CNN_OK) r = cnn_add_leaky_relu(&model, 0.125f);
    if (r == CNN_OK) r = cnn_add_avg_pool(&model, 3, 1);          /* 3x3 */
    if (r == CNN_OK) r = cnn_add_tanh(&model);
    if (r == CNN_OK) r = cnn_add_max_pool(&model, 2, 1);          /* 2x2 */
    if (r == CNN_OK) r = cnn_add_sigmoid(&model);
    if (r == CNN_OK) r = cnn_add_flatten(&model);
    if (r == CNN_OK) r = cnn_add_dropout(&model, 0.25f);
    if (r == CNN_OK) r = cnn_model_add(&model, &he);
    if (r == CNN_OK) r = cnn_add_softmax(&model);
    if (r == CNN_OK) r = cnn_model_build(&model, 2);
    CHECK(r == CNN_OK, "build: %s", model.error.message);
    if (r == CNN_OK) r = cnn_model_save(&model, path);
    CHECK(r == CNN_OK, "save: %s", model.error.message);
    if (r == CNN_OK) r = cnn_model_load(&loaded, path, 2);
    CHECK(r == CNN_OK, "load: %s", loaded.error.message);
    if (r != CNN_OK) {
        cnn_model_free(&model);
        return;
    }
    CHECK(loaded.layer_count == model.layer_count, "layer_count %d vs %d", loaded.layer_count, model.layer_count);
    for (i = 0; i < model.layer_count && i < loaded.layer_count; i++) {
        const cnn_layer_desc *a = &model.layers[i].desc, *b = &loaded.layers[i].desc;
        CHECK(memcmp(a, b, sizeof *a) == 0, "layer %d (%s) settings differ", i, cnn_layer_type_name(a->type));
    }
    CHECK(loaded.layers[1].desc.alpha == 0.125f, "alpha %g", (double)loaded.layers[1].desc.alpha);
    CHECK(loaded.layers[7].desc.rate == 0.25f, "rate %g", (double)loaded.layers[7].desc.rate);
    CHECK(loaded.layers[8].desc.init == CNN_INIT_HE_NORMAL, "init %d", (int)loaded.layers[8].desc.init);
    CHECK(loaded.param_count == model.param_count &&
              memcmp(loaded.params, model.params, model.param_count * sizeof(float)) == 0,
          "parameters differ");
    cnn_model_free(&loaded);
    cnn_model_free(&model);
}

/* Saving over an existing file replaces it, and leaves no PATH.tmp behind. */
TEST(save_replaces_existing_file)
{
    static const char junk[] = "an old file that is not a model";
    cnn_model model, loaded;
    char path[1024], temp[1040];
    size_t length;
    unsigned char *bytes;
    cnn_result r;
    snprintf(path, sizeof path, "%s", test_write_file("replace.cnn", junk, sizeof junk));
    snprintf(temp, sizeof temp, "%s.tmp", path);
    r = small_model(&model, 2);
    if (r == CNN_OK) r = cnn_model_save(&model, path);
    CHECK(r == CNN_OK, "save: %d %s", (int)r, model.error.message);
    bytes = test_read_file(path, &length);
    CHECK(length == SMALL_FILE_BYTES, "file has %lu bytes, expected %d", (unsigned long)length, SMALL_FILE_BYTES);
    CHECK(bytes && memcmp(bytes, "\x89" "CNN", 4) == 0, "the old content is still there");
    free(bytes);
    CHECK(!file_exists(temp), "%s is left behind", temp);
    r = cnn_model_load(&loaded, path, 2);
    CHECK(r == CNN_OK, "load after replace: %s", loaded.error.message);
    cnn_model_free(&loaded);
    cnn_model_free(&model);
}

/* The new file is written under PATH.tmp and renamed: a reader that had the
   old file open still reads the old bytes (an in-place rewrite would
   truncate them under it). POSIX rename semantics; Windows cannot replace an
   open file. */
TEST(save_writes_temp_then_renames)
{
#ifndef _WIN32
    static const char old_text[] = "OLD CONTENT";
    cnn_model model;
    char path[1024], temp[1040], seen[sizeof old_text];
    FILE *reader;
    size_t got;
    cnn_result r;
    snprintf(path, sizeof path, "%s", test_write_file("rename.cnn", old_text, sizeof old_text));
    snprintf(temp, sizeof temp, "%s.tmp", path);
    reader = fopen(path, "rb");
    CHECK(reader != NULL, "cannot open %s", path);
    if (!reader) return;
    r = small_model(&model, 2);
    if (r == CNN_OK) r = cnn_model_save(&model, path);
    CHECK(r == CNN_OK, "save: %d %s", (int)r, model.error.message);
    got = fread(seen, 1, sizeof seen, reader);
    fclose(reader);
    CHECK(got == sizeof old_text && memcmp(seen, old_text, sizeof old_text) == 0,
          "the open old file changed under its reader: the model was written in place");
    CHECK(!file_exists(temp), "%s is left behind", temp);
    cnn_model_free(&model);
#endif
}

/* A save that cannot create its file (a folder that does not exist) is an
   I/O error, creates nothing, and names the path; so is one whose rename
   fails (the target is an existing folder), which removes its PATH.tmp. */
TEST(save_failures_leave_nothing)
{
    cnn_model model;
    char path[1024], temp[1040], folder[1024];
    cnn_result r;
    scratch(path, sizeof path, "no-such-folder/model.cnn");
    snprintf(temp, sizeof temp, "%s.tmp", path);
    r = small_model(&model, 2);
    CHECK(r == CNN_OK, "build: %s", model.error.message);
    if (r != CNN_OK) return;
    r = cnn_model_save(&model, path);
    CHECK(r == CNN_ERROR_IO, "save into a missing folder: result %d", (int)r);
    CHECK(model.error.code == CNN_ERROR_IO && model.error.message[0], "error.code %d", (int)model.error.code);
    CHECK(strstr(model.error.message, "no-such-folder") != NULL, "message does not name the path: %s", model.error.message);
    CHECK(!file_exists(path) && !file_exists(temp), "a failed save left a file behind");

    /* "$TEST_TMP/" is a folder: the temporary "$TEST_TMP/.tmp" is written,
       the rename onto the folder fails, and the temporary must go. */
    scratch(folder, sizeof folder, "");
    snprintf(temp, sizeof temp, "%s.tmp", folder);
    r = cnn_model_save(&model, folder);
    CHECK(r == CNN_ERROR_IO, "save onto a folder: result %d", (int)r);
    CHECK(!file_exists(temp), "a failed rename left %s behind", temp);

    /* an unbuilt model has nothing to save */
    cnn_model_free(&model);
    cnn_model_init(&model, 1, 4, 4, 1);
    cnn_add_flatten(&model);
    scratch(path, sizeof path, "unbuilt.cnn");
    r = cnn_model_save(&model, path);
    CHECK(r == CNN_ERROR_STATE, "saving an unbuilt model: result %d", (int)r);
    CHECK(!file_exists(path), "saving an unbuilt model created a file");
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- damaged files */

/* Files that are not models at all: empty, text, missing. */
TEST(load_rejects_foreign_files)
{
    static const char text[] = "This is a text file, long enough to hold a whole header.\n";
    cnn_model model;
    cnn_result r;
    check_refused("empty.cnn", (const unsigned char *)"", 0, 0, "too short");
    check_refused("text.cnn", (const unsigned char *)text, sizeof text - 1, 0, "magic");
    check_refused("short_text.cnn", (const unsigned char *)"hello\n", 6, 6, "too short");
    memset(&model, 0x5a, sizeof model);
    r = cnn_model_load(&model, test_path("no-such-model.cnn"), 4);
    CHECK(r == CNN_ERROR_IO, "missing file: result %d", (int)r);
    CHECK(model.error.code == CNN_ERROR_IO && model.error.message[0], "error.code %d", (int)model.error.code);
    CHECK(strstr(model.error.message, "no-such-model.cnn") != NULL, "message: %s", model.error.message);
    check_freed(&model, "missing file");
    /* and arguments that cannot work */
    r = cnn_model_load(&model, test_path("no-such-model.cnn"), 0);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT, "max_batch 0: result %d", (int)r);
    check_freed(&model, "max_batch 0");
}


/* Damage to the header and to the fields that frame the sections: magic,
   version, the input section, the layer count and record size, the
   section order and lengths. Each with the CRC fixed, so that the field's
   own check is the one that answers. */
TEST(load_rejects_bad_header)
{
    size_t length, n;
    unsigned char *good = small_model_bytes(&length), *bad;
    if (!good) {
        CHECK(0, "could not save the small model");
        return;
    }
    check_patched_u32("magic_zip.cnn", good, length, 0, 0x04034b50u, 0, "magic"); /* "PK\3\4" */
    check_patched_u32("magic_lf.cnn", good, length, 4, 0x0a1a0a0au, 0, "magic");  /* the CR became LF */
    check_patched_u32("version3.cnn", good, length, 8, 3, 8, "format version 3");
    check_patched_u32("version0.cnn", good, length, 8, 0, 8, "format version 0");
    check_patched_u32("version_max.cnn", good, length, 8, 0xffffffffu, 8, "format version 4294967295");
    /* a version-2 file that says version 1 is read as one: the tag "INPT"
       is then the number of input channels */
    check_patched_u32("version1_of_2.cnn", good, length, 8, 1, INPT_AT, "not plausible");

    /* the input section */
    check_patched_u32("inpt_tag.cnn", good, length, INPT_AT, get_u32((const unsigned char *)"INPU"), INPT_AT, "'INPU' where 'INPT' belongs");
    check_patched_u32("inpt_length11.cnn", good, length, INPT_AT + 4, 11, INPT_AT + 4, "is 11 bytes, not 12");
    check_patched_u32("inpt_length13.cnn", good, length, INPT_AT + 4, 13, INPT_AT + 4, "13 bytes, not 12");
    check_patched_u32("input_huge.cnn", good, length, INPUT_AT + 4, 1000000, INPUT_AT + 4, "input dimension 1000000");

    /* the layer section */
    check_patched_u32("layr_tag.cnn", good, length, LAYR_AT, get_u32((const unsigned char *)"LAYS"), LAYR_AT,
                      "section 2 is 'LAYS' where 'LAYR' belongs");
    check_patched_u32("parm_for_layr.cnn", good, length, LAYR_AT, get_u32((const unsigned char *)"PARM"), LAYR_AT,
                      "section 2 is 'PARM' where 'LAYR' belongs");
    check_patched_u32("layers0.cnn", good, length, LAYER_COUNT_AT, 0, LAYER_COUNT_AT, "declares 0 layers");
    check_patched_u32("layers65.cnn", good, length, LAYER_COUNT_AT, CNN_MAX_LAYERS + 1, LAYER_COUNT_AT, "declares 65 layers");
    /* one layer more than the section holds */
    check_patched_u32("layers7.cnn", good, length, LAYER_COUNT_AT, SMALL_LAYERS + 1, RECORD_SIZE_AT,
                      "7 layer records of 36 bytes do not fill the section's 224");
    check_patched_u32("record0.cnn", good, length, RECORD_SIZE_AT, 0, RECORD_SIZE_AT, "records of 0 bytes");
    check_patched_u32("record31.cnn", good, length, RECORD_SIZE_AT, 31, RECORD_SIZE_AT, "records of 31 bytes");
    check_patched_u32("record1025.cnn", good, length, RECORD_SIZE_AT, 1025, RECORD_SIZE_AT, "records of 1025 bytes");
    /* records shorter than 32 bytes, even in a section of the length they imply */
    if ((bad = spliced(good, length, LAYER_AT(0), NULL, LAYER_BYTES * SMALL_LAYERS, &n)) != NULL) {
        put_u64(bad + LAYR_AT + 4, 8);
        put_u32(bad + RECORD_SIZE_AT, 0);
        fix_crc(bad, n);
        check_refused("record0_fits.cnn", bad, n, RECORD_SIZE_AT, "6 layer records of 0 bytes do not fill the section's 8");
        free(bad);
    }
    if ((bad = spliced(good, length, LAYER_AT(0), NULL, (LAYER_BYTES - 16) * SMALL_LAYERS, &n)) != NULL) {
        put_u64(bad + LAYR_AT + 4, 8 + 16 * SMALL_LAYERS);
        put_u32(bad + RECORD_SIZE_AT, 16);
        fix_crc(bad, n);
        check_refused("record16_fits.cnn", bad, n, RECORD_SIZE_AT, "6 layer records of 16 bytes do not fill the section's 104");
        free(bad);
    }
    check_patched_u32("layr_length4.cnn", good, length, LAYR_AT + 4, 4, LAYR_AT + 4, "section 'LAYR' is too short (4 bytes)");
    /* a length beyond the end of the file, also in its high half */
    check_patched_u32("layr_length_high.cnn", good, length, LAYR_AT + 8, 1, LAYR_AT + 4, "claims 4294967520 bytes");
    check_patched_u32("parm_length_huge.cnn", good, length, PARM_AT + 4, 0xffffffffu, PARM_AT + 4, "claims 4294967295 bytes");

    /* the parameter section's tag */
    check_patched_u32("parm_tag.cnn", good, length, PARM_AT, get_u32((const unsigned char *)"parm"), PARM_AT,
                      "section 3 is 'parm' where 'PARM' belongs");

    /* the CRC section: a length other than 4 (one byte more, and there) */
    bad = (unsigned char *)malloc(length + 1);
    if (bad) {
        memcpy(bad, good, length);
        bad[length] = 0;
        put_u64(bad + CRC_SECTION_AT + 4, 5);
        check_refused("crc_length5.cnn", bad, length + 1, CRC_SECTION_AT + 4, "the CRC section is 5 bytes, not 4");
        free(bad);
    }
    free(good);
}

/* An input dimension of 0 is refused, and the message says why in plain
   words (it quotes the path once, then cnn_model_init's reason). */
TEST(load_rejects_zero_input_with_clear_message)
{
    size_t length;
    unsigned char *good = small_model_bytes(&length);
    char expected[1200];
    cnn_model model;
    cnn_result r;
    if (!good) return;
    put_u32(good + INPUT_AT, 0); /* channels 0 */
    fix_crc(good, length);
    r = cnn_model_load(&model, test_write_file("channels0.cnn", good, length), 4);
    CHECK(r == CNN_ERROR_BAD_MODEL_FILE, "result %d", (int)r);
    CHECK(model.error.byte == INPUT_AT, "error.byte %lld, expected %d", model.error.byte, INPUT_AT);
    snprintf(expected, sizeof expected, "'%s': input shape (0, 12, 12) is not valid", test_path("channels0.cnn"));
    CHECK(strncmp(model.error.message, expected, strlen(expected)) == 0, "message '%s', expected it to start with '%s'",
          model.error.message, expected);
    check_freed(&model, "channels 0");
    free(good);
}

/* Where and why loading the first cut bytes of the small model's file must
   fail when the input's size is known (a file, memory): before the
   header's 12 bytes "too short"; at a section's first byte, no CRC came;
   inside a section's header, truncated there; inside its contents, the
   section claims more bytes than remain, said at its length field. */
static long long truncation_byte(size_t cut, const char **needle)
{
    static const size_t sections[4] = {INPT_AT, LAYR_AT, PARM_AT, CRC_SECTION_AT};
    int i;
    if (cut < 12) {
        *needle = "too short";
        return (long long)cut;
    }
    for (i = 3; cut < sections[i]; i--) {}
    if (cut == sections[i]) {
        *needle = "without its CRC";
        return (long long)cut;
    }
    if (cut < sections[i] + 12) {
        *needle = "truncated inside a section header";
        return (long long)cut;
    }
    *needle = "remain (truncated?)";
    return (long long)sections[i] + 4;
}

/* The file cut at every length from 0 to one byte short (in memory, which
   the file loader shares its parser with), then a few cuts as files, named:
   inside a section header, inside the input, the layers, the parameter
   count, the parameters and the CRC, and right after the parameters (no
   CRC at all). */
TEST(load_rejects_truncated_files)
{
    size_t length, cut;
    int wrong = 0;
    unsigned char *good = small_model_bytes(&length);
    if (!good) return;
    for (cut = 0; cut < length; cut++) {
        cnn_model model;
        const char *needle;
        long long want = truncation_byte(cut, &needle);
        cnn_result r = cnn_model_load_memory(&model, good, cut, 1);
        if (r != CNN_ERROR_BAD_MODEL_FILE || model.error.byte != want || !strstr(model.error.message, needle) ||
            model.memory != NULL) {
            if (wrong++ < 5)
                printf("    cut at %lu: result %d, byte %lld (expected %lld), '%s' (expected '%s')\n", (unsigned long)cut, (int)r,
                       model.error.byte, want, model.error.message, needle);
        }
        cnn_model_free(&model);
    }
    CHECK(wrong == 0, "%d of %lu truncated files were not refused as expected", wrong, (unsigned long)length);

    check_refused("cut8.cnn", good, 8, 8, "too short");
    check_refused("cut11.cnn", good, 11, 11, "too short");
    check_refused("cut12.cnn", good, 12, 12, "ends after 0 sections without its CRC");
    check_refused("cut_inpt_header.cnn", good, INPT_AT + 7, INPT_AT + 7, "truncated inside a section header");
    check_refused("cut_input.cnn", good, INPUT_AT + 5, INPT_AT + 4, "section 'INPT' at byte 12 claims 12 bytes; 5 remain");
    check_refused("cut_layr_header.cnn", good, LAYR_AT + 11, LAYR_AT + 11, "truncated inside a section header");
    check_refused("cut_layer3.cnn", good, LAYER_AT(2) + 31, LAYR_AT + 4, "section 'LAYR' at byte 36 claims 224 bytes; 111 remain");
    check_refused("cut_count.cnn", good, COUNT_AT + 4, PARM_AT + 4, "section 'PARM' at byte 272 claims 5968 bytes; 4 remain");
    check_refused("cut_params.cnn", good, PARAMS_AT + 10, PARM_AT + 4, "claims 5968 bytes; 18 remain");
    check_refused("cut_middle.cnn", good, PARAMS_AT + 4 * 700 + 2, PARM_AT + 4, "claims 5968 bytes; 2810 remain");
    check_refused("cut_after_params.cnn", good, CRC_SECTION_AT, CRC_SECTION_AT, "ends after 3 sections without its CRC");
    check_refused("cut_crc_header.cnn", good, CRC_SECTION_AT + 5, CRC_SECTION_AT + 5, "truncated inside a section header");
    check_refused("cut_crc.cnn", good, length - 1, CRC_SECTION_AT + 4, "section 'CRC ' at byte 6252 claims 4 bytes; 3 remain");
    free(good);
}

/* The same cuts read through a pipe, whose size the loader cannot know
   beforehand: each is found where the bytes run out, inside the part being
   read, which the message names. The whole file through a pipe loads. */
TEST(load_rejects_truncated_stream)
{
#if defined(__linux__)
    static const struct {
        size_t cut;
        const char *needle;
    } cuts[] = {
        {INPT_AT + 7, "truncated inside a section header"},
        {INPUT_AT + 5, "truncated inside the input shape"},
        {LAYER_COUNT_AT + 6, "truncated inside the layers"},
        {LAYER_AT(2) + 31, "truncated inside a layer record"},
        {COUNT_AT + 4, "truncated inside the parameter count"},
        {PARAMS_AT + 10, "truncated inside parameter"},
        {PARAMS_AT + 4 * 1200 + 3, "truncated inside parameter"}, /* in the second block of 1024 */
        {CRC_SECTION_AT, "truncated inside a section header"},
        {CRC_AT + 2, "truncated inside the CRC"},
    };
    size_t length, i;
    unsigned char *good = small_model_bytes(&length), *longer;
    char path[64], what[96];
    cnn_model model;
    cnn_result r;
    if (!good) return;
    r = load_through_pipe(&model, good, length, path, sizeof path);
    CHECK(r == CNN_OK, "the whole file through %s: %s", path, model.error.message);
    if (r == CNN_OK) CHECK(model.param_count == SMALL_PARAMS, "param_count %lu", (unsigned long)model.param_count);
    cnn_model_free(&model);
    for (i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        r = load_through_pipe(&model, good, cuts[i].cut, path, sizeof path);
        snprintf(what, sizeof what, "cut at %lu through a pipe", (unsigned long)cuts[i].cut);
        check_load_error(&model, r, (long long)cuts[i].cut, cuts[i].needle, what);
    }
    /* and a byte too many */
    longer = (unsigned char *)malloc(length + 1);
    if (longer) {
        memcpy(longer, good, length);
        longer[length] = 7;
        r = load_through_pipe(&model, longer, length + 1, path, sizeof path);
        check_load_error(&model, r, (long long)length, "bytes after its CRC", "a trailing byte through a pipe");
        free(longer);
    }
    free(good);
#else
    SKIP("reads a pipe through /dev/fd (Linux)");
#endif
}

/* Bytes after the CRC are refused, at the byte where they start: one byte,
   or a whole section (the CRC section must be the last). */
TEST(load_rejects_trailing_bytes)
{
    size_t length, longer_length;
    unsigned char *good = small_model_bytes(&length), *longer, section[12];
    if (!good) return;
    longer = spliced(good, length, length, "", 1, &longer_length);
    if (longer) check_refused("trailing.cnn", longer, longer_length, (long long)length, "has bytes after its CRC");
    free(longer);
    make_section(section, "zzzz", NULL, 0);
    longer = spliced(good, length, length, section, sizeof section, &longer_length);
    if (longer) check_refused("section_after_crc.cnn", longer, longer_length, (long long)length, "has bytes after its CRC");
    free(longer);
    free(good);
}

/* Layer records that describe no valid layer: an unknown type, 0 filters, a
   kernel that cannot fit (99 on 12x12), a pool padded by more than half
   its window, a ceil_mode other than 0 and 1, a negative setting, an unknown initialiser, a dropout rate of 1, a dense
   layer on an image, a conv or a pool after flatten or dense; reported at
   the record's first byte (a negative setting at its own), the CRC fixed. */
TEST(load_rejects_bad_layers)
{
    size_t length;
    unsigned char *good = small_model_bytes(&length), *bad;
    if (!good) return;
    check_patched_u32("type99.cnn", good, length, LAYER_AT(1), 99, LAYER_AT(1), "layer 2 has unknown type 99");
    check_patched_u32("type0.cnn", good, length, LAYER_AT(1), CNN_LAYER_NONE, LAYER_AT(1), "unknown type 0");
    check_patched_u32("type12.cnn", good, length, LAYER_AT(3), CNN_LAYER_TYPE_COUNT, LAYER_AT(3), "unknown type");
    check_patched_u32("filters0.cnn", good, length, LAYER_AT(0) + 4, 0, LAYER_AT(0), "layer 1: conv2d needs filters >= 1");
    check_patched_u32("kernel99.cnn", good, length, LAYER_AT(0) + 8, 99, LAYER_AT(0), "kernel 99");
    check_patched_u32("pool_padding2.cnn", good, length, LAYER_AT(2) + 16, 2, LAYER_AT(2), "padding 2 is more than half its window 2");
    check_patched_u32("ceil_mode2.cnn", good, length, LAYER_AT(2) + 32, 2, LAYER_AT(2), "ceil_mode 0 or 1");
    check_patched_u32("units_negative.cnn", good, length, LAYER_AT(0) + 4, 0xffffffffu, LAYER_AT(0) + 4, "negative");
    check_patched_u32("padding_negative.cnn", good, length, LAYER_AT(0) + 16, 0x80000000u, LAYER_AT(0) + 16, "negative");
    check_patched_u32("init9.cnn", good, length, LAYER_AT(0) + 20, 9, LAYER_AT(0), "unknown initialiser 9");
    check_patched_u32("pool_window13.cnn", good, length, LAYER_AT(2) + 8, 13, LAYER_AT(2), "larger than its input");
    /* dense (layer 5) straight after the pool: flatten turned into ReLU */
    check_patched_u32("no_flatten.cnn", good, length, LAYER_AT(3), CNN_LAYER_RELU, LAYER_AT(4), "flat");
    /* a conv after flatten (the dense layer made a conv), a pool after dense (softmax made a pool) */
    check_patched_u32("conv_after_flatten.cnn", good, length, LAYER_AT(4), CNN_LAYER_CONV2D, LAYER_AT(4),
                      "layer 4 (flatten) made its input a flat vector");
    check_patched_u32("pool_after_dense.cnn", good, length, LAYER_AT(5), CNN_LAYER_MAX_POOL, LAYER_AT(5),
                      "layer 5 (dense) made its input a flat vector");
    bad = (unsigned char *)malloc(length);
    if (bad) {
        /* dropout rate 1.0 cannot have been saved by cnn_model_save */
        memcpy(bad, good, length);
        put_u32(bad + LAYER_AT(1), CNN_LAYER_DROPOUT);
        put_f32(bad + LAYER_AT(1) + 28, 1.0f);
        fix_crc(bad, length);
        check_refused("dropout1.cnn", bad, length, LAYER_AT(1), "dropout rate");
        /* nor a NaN slope */
        memcpy(bad, good, length);
        put_u32(bad + LAYER_AT(1), CNN_LAYER_LEAKY_RELU);
        put_f32(bad + LAYER_AT(1) + 24, NAN);
        fix_crc(bad, length);
        check_refused("alpha_nan.cnn", bad, length, LAYER_AT(1), "alpha");
        free(bad);
    }
    free(good);
}

/* A later cnn.h may write longer layer records: bytes past the 36 this one
   knows load when they are zero ("as before"), and are refused, at the
   first that is not, when they say something. */
TEST(load_layer_records_longer)
{
    enum { EXTRA = 8, RECORD = LAYER_BYTES + EXTRA };
    size_t length, wide_length, i;
    unsigned char *good = small_model_bytes(&length), *wide;
    cnn_model model, loaded;
    if (!good) return;
    wide_length = length + SMALL_LAYERS * EXTRA;
    wide = (unsigned char *)calloc(1, wide_length);
    if (!wide || small_model(&model, 1) != CNN_OK) {
        CHECK(0, "setup");
        free(wide);
        free(good);
        return;
    }
    memcpy(wide, good, LAYER_AT(0));
    put_u64(wide + LAYR_AT + 4, 8 + SMALL_LAYERS * RECORD);
    put_u32(wide + RECORD_SIZE_AT, RECORD);
    for (i = 0; i < SMALL_LAYERS; i++) memcpy(wide + LAYER_AT(0) + RECORD * i, good + LAYER_AT(i), LAYER_BYTES); /* zeros after */
    memcpy(wide + LAYER_AT(0) + RECORD * SMALL_LAYERS, good + PARM_AT, length - PARM_AT);
    fix_crc(wide, wide_length);
    if (loads(&loaded, "wide_records.cnn", wide, wide_length)) {
        CHECK(loaded.layer_count == SMALL_LAYERS && loaded.param_count == SMALL_PARAMS, "%d layers, %lu parameters",
              loaded.layer_count, (unsigned long)loaded.param_count);
        for (i = 0; i < SMALL_LAYERS && (int)i < loaded.layer_count; i++)
            CHECK(memcmp(&loaded.layers[i].desc, &model.layers[i].desc, sizeof model.layers[i].desc) == 0, "layer %lu differs",
                  (unsigned long)i);
        CHECK(memcmp(loaded.params, model.params, sizeof(float) * SMALL_PARAMS) == 0, "parameters differ");
        cnn_model_free(&loaded);
    }
    wide[LAYER_AT(0) + RECORD * 3 + LAYER_BYTES + 5] = 1; /* layer 4's extra byte 5 */
    fix_crc(wide, wide_length);
    check_refused("wide_records_set.cnn", wide, wide_length, LAYER_AT(0) + RECORD * 3 + LAYER_BYTES + 5,
                  "layer 4 has settings this cnn.h does not know");
    cnn_model_free(&model);
    free(wide);
    free(good);
}

/* A parameter count that disagrees with the layers, written directly or
   implied by a layer that fits but has other weights (kernel 5, pad 2),
   or a parameter section of the wrong length. */
TEST(load_rejects_parameter_count_mismatch)
{
    size_t length;
    unsigned char *good = small_model_bytes(&length), *bad;
    if (!good) return;
    check_patched_u32("count_plus1.cnn", good, length, COUNT_AT, SMALL_PARAMS + 1, COUNT_AT,
                      "says 1491 parameters but its layers have 1490");
    check_patched_u32("count_high.cnn", good, length, COUNT_AT + 4, 1, COUNT_AT, "says 4294968786 parameters");
    check_patched_u32("parm_length_plus4.cnn", good, length, PARM_AT + 4, 8 + 4 * SMALL_PARAMS + 4, PARM_AT + 4,
                      "the parameter section is 5972 bytes; the layers' 1490 parameters need 5968");
    bad = (unsigned char *)malloc(length);
    if (bad) {
        memcpy(bad, good, length);
        put_u32(bad + LAYER_AT(0) + 8, 5);  /* kernel 5 */
        put_u32(bad + LAYER_AT(0) + 16, 2); /* padding 2: still 12x12, but 4*25+4 conv parameters */
        fix_crc(bad, length);
        check_refused("kernel5.cnn", bad, length, PARM_AT + 4, "the layers' 1554 parameters need 6224");
        free(bad);
    }
    free(good);
}

/* A NaN or infinite parameter is refused at its byte, after the model was
   already built: the model must still end up freed. */
TEST(load_rejects_non_finite_parameters)
{
    size_t length;
    unsigned char *good = small_model_bytes(&length);
    if (!good) return;
    check_patched_f32("nan.cnn", good, length, PARAMS_AT + 4 * 5, NAN, PARAMS_AT + 4 * 5, "parameter value 5 is not a finite number");
    check_patched_f32("inf.cnn", good, length, PARAMS_AT + 4 * (SMALL_PARAMS - 1), -INFINITY, PARAMS_AT + 4 * (SMALL_PARAMS - 1),
                      "parameter value 1489 is not a finite number");
    /* past the first block of 1024 values the loader reads at a time */
    check_patched_f32("inf_1100.cnn", good, length, PARAMS_AT + 4 * 1100, INFINITY, PARAMS_AT + 4 * 1100, "parameter value 1100");
    free(good);
}


/* The largest finite float is a finite parameter: what saves must load. */
TEST(load_accepts_largest_finite_parameter)
{
    cnn_model model, loaded;
    char path[1024];
    cnn_result r;
    scratch(path, sizeof path, "flt_max.cnn");
    r = small_model(&model, 2);
    if (r != CNN_OK) return;
    model.params[3] = FLT_MAX;
    model.params[4] = -FLT_MAX;
    r = cnn_model_save(&model, path);
    CHECK(r == CNN_OK, "save: %s", model.error.message);
    r = cnn_model_load(&loaded, path, 2);
    CHECK(r == CNN_OK, "load refused a finite parameter: %s", loaded.error.message);
    if (r == CNN_OK) CHECK(loaded.params[3] == FLT_MAX && loaded.params[4] == -FLT_MAX, "values changed");
    cnn_model_free(&loaded);
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- the CRC and unknown sections */

/* Flips one bit of bad (a copy of good) at byte `at`, loads it from memory
   and checks that the CRC refuses it: at the CRC section (crc_section),
   with the stored and the computed CRC in the message. A flip that makes a
   parameter not finite is refused at that parameter instead. Returns 1
   when all is as expected, else 0 with a line saying what happened. */
static int flip_refused(unsigned char *bad, const unsigned char *good, size_t length, size_t at, int bit, size_t crc_section)
{
    cnn_model model;
    cnn_result r;
    char expected[128];
    long long want_byte = (long long)crc_section;
    const char *needle = expected;
    int ok;
    memcpy(bad, good, length);
    bad[at] ^= (unsigned char)(1u << bit);
    snprintf(expected, sizeof expected, "is damaged: its CRC-32 says %08lx but its contents give %08lx",
             (unsigned long)get_u32(bad + crc_section + 12), (unsigned long)crc32_of(bad, crc_section));
    if (at >= PARAMS_AT && at < CRC_SECTION_AT && crc_section == CRC_SECTION_AT) {
        float value = get_f32(bad + PARAMS_AT + (at - PARAMS_AT) / 4 * 4);
        if (value != value || value - value != 0.0f) { /* NaN or infinite */
            want_byte = (long long)(PARAMS_AT + (at - PARAMS_AT) / 4 * 4);
            needle = "not a finite number";
        }
    }
    r = cnn_model_load_memory(&model, bad, length, 1);
    ok = r == CNN_ERROR_BAD_MODEL_FILE && model.error.code == r && model.error.byte == want_byte &&
         strstr(model.error.message, needle) != NULL && model.memory == NULL;
    if (!ok)
        printf("    bit %d of byte %lu flipped: result %d, byte %lld (expected %lld), '%s' (expected '%s')\n", bit,
               (unsigned long)at, (int)r, model.error.byte, want_byte, model.error.message, needle);
    cnn_model_free(&model);
    return ok;
}

/* Damage that leaves the structure valid is what the CRC is for. Any bit
   flipped in the parameters (every bit of every 23rd parameter and of the
   last), in a setting the layer ignores (a ReLU's alpha), or in the CRC
   itself is refused as damaged, at the CRC section, the message giving
   both CRCs; so is a valid change (another initialiser) whose CRC was not
   recomputed, which loads once it is. */
TEST(crc_refuses_flipped_bits)
{
    size_t length, p, k, tried = 0;
    unsigned char *good = small_model_bytes(&length), *bad;
    int bit, wrong = 0;
    cnn_model model;
    if (!good) return;
    bad = (unsigned char *)malloc(length);
    if (!bad) {
        free(good);
        return;
    }
    for (k = 0; k <= (SMALL_PARAMS - 1) / 23 + 1; k++) { /* parameters 0, 23, ..., 1472, then the last, 1489 */
        p = 23 * k < SMALL_PARAMS ? 23 * k : SMALL_PARAMS - 1;
        for (bit = 0; bit < 32; bit++, tried++)
            wrong += !flip_refused(bad, good, length, PARAMS_AT + 4 * p + (size_t)bit / 8, bit % 8, CRC_SECTION_AT);
    }
    CHECK(tried == 66 * 32, "%lu flips tried", (unsigned long)tried);
    for (bit = 0; bit < 32; bit++) wrong += !flip_refused(bad, good, length, CRC_AT + (size_t)bit / 8, bit % 8, CRC_SECTION_AT);
    for (bit = 0; bit < 32; bit++) /* the ReLU's alpha: 0, which the ReLU never reads */
        wrong += !flip_refused(bad, good, length, LAYER_AT(1) + 24 + (size_t)bit / 8, bit % 8, CRC_SECTION_AT);
    CHECK(wrong == 0, "%d flipped bits were not refused by the CRC", wrong);

    /* a file, named in the message */
    memcpy(bad, good, length);
    bad[PARAMS_AT + 4 * 700 + 1] ^= 0x10;
    check_refused("flipped.cnn", bad, length, CRC_SECTION_AT, "flipped.cnn' is damaged: its CRC-32 says");

    /* a valid change: He uniform for the conv's weights */
    memcpy(bad, good, length);
    put_u32(bad + LAYER_AT(0) + 20, CNN_INIT_HE_UNIFORM);
    check_refused("init_crc_stale.cnn", bad, length, CRC_SECTION_AT, "is damaged");
    fix_crc(bad, length);
    if (loads(&model, "init_crc_fixed.cnn", bad, length)) {
        CHECK(model.layers[0].desc.init == CNN_INIT_HE_UNIFORM, "init %d", (int)model.layers[0].desc.init);
        cnn_model_free(&model);
    }
    /* and the good file, fixed, is unchanged: fix_crc writes what cnn.h wrote */
    memcpy(bad, good, length);
    fix_crc(bad, length);
    CHECK(memcmp(bad, good, length) == 0, "fix_crc changed a good file");
    free(bad);
    free(good);
}

/* Sections this cnn.h does not know: one whose tag starts with a small
   letter is skipped (the CRC still covers it); one with a capital is
   refused as needed and not known. INPT, LAYR and PARM must come first, a
   known section only once, and the CRC last; a file without it is
   refused. */
TEST(load_sections_unknown_and_misplaced)
{
    size_t length, n, at;
    unsigned char *good = small_model_bytes(&length), *file, section[12 + 5], *named;
    cnn_model model, loaded;
    const char *names[10] = {"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"};
    long clas;
    if (!good || small_model(&model, 1) != CNN_OK) {
        CHECK(0, "setup");
        free(good);
        return;
    }
    make_section(section, "zzzz", "hello", 5);

    /* before the CRC: skipped */
    if ((file = spliced(good, length, CRC_SECTION_AT, section, sizeof section, &n)) != NULL) {
        fix_crc(file, n);
        if (loads(&loaded, "zzzz.cnn", file, n)) {
            CHECK(loaded.param_count == SMALL_PARAMS && memcmp(loaded.params, model.params, sizeof(float) * SMALL_PARAMS) == 0,
                  "parameters differ");
            cnn_model_free(&loaded);
        }
        /* the CRC covers it: a flipped byte inside it, or a stale CRC */
        file[CRC_SECTION_AT + 12 + 2] ^= 1;
        check_refused("zzzz_flipped.cnn", file, n, CRC_SECTION_AT + sizeof section, "is damaged");
        free(file);
    }
    if ((file = spliced(good, length, CRC_SECTION_AT, section, sizeof section, &n)) != NULL) {
        check_refused("zzzz_stale_crc.cnn", file, n, CRC_SECTION_AT + sizeof section, "is damaged");
        free(file);
    }
    /* two of them, one empty, right after PARM and before the CRC */
    if ((file = spliced(good, length, CRC_SECTION_AT, section, 12, &n)) != NULL) {
        unsigned char *two;
        size_t n2;
        memcpy(file + CRC_SECTION_AT, "aaaa", 4);
        put_u64(file + CRC_SECTION_AT + 4, 0);
        if ((two = spliced(file, n, CRC_SECTION_AT, section, sizeof section, &n2)) != NULL) {
            fix_crc(two, n2);
            if (loads(&loaded, "two_unknown.cnn", two, n2)) cnn_model_free(&loaded);
            free(two);
        }
        free(file);
    }
    /* the same tag with a capital: the model needs it, and it is not known */
    if ((file = spliced(good, length, CRC_SECTION_AT, section, sizeof section, &n)) != NULL) {
        memcpy(file + CRC_SECTION_AT, "ZZZZ", 4);
        fix_crc(file, n);
        check_refused("ZZZZ.cnn", file, n, CRC_SECTION_AT, "section 'ZZZZ' is one this cnn.h does not know and the model needs");
        free(file);
    }
    /* an unknown section before the parameters */
    if ((file = spliced(good, length, PARM_AT, section, sizeof section, &n)) != NULL) {
        fix_crc(file, n);
        check_refused("zzzz_before_parm.cnn", file, n, PARM_AT, "section 3 is 'zzzz' where 'PARM' belongs");
        free(file);
    }
    /* an unknown section that claims more bytes than remain */
    if ((file = spliced(good, length, CRC_SECTION_AT, section, sizeof section, &n)) != NULL) {
        put_u64(file + CRC_SECTION_AT + 4, 100);
        fix_crc(file, n);
        check_refused("zzzz_too_long.cnn", file, n, CRC_SECTION_AT + 4, "section 'zzzz' at byte 6252 claims 100 bytes; 21 remain");
        free(file);
    }
    /* no CRC: the file ends after the parameters */
    check_refused("no_crc.cnn", good, CRC_SECTION_AT, CRC_SECTION_AT, "ends after 3 sections without its CRC");

    /* the class names twice; before the parameters; after the CRC */
    if (cnn_model_set_class_names(&model, names, 10) == CNN_OK && (named = model_bytes(&model, "named.cnn", &n)) != NULL) {
        size_t clas_size;
        clas = find_section(named, n, "clas");
        CHECK(clas == CRC_SECTION_AT, "the names are at %ld, expected right after the parameters", clas);
        if (clas == CRC_SECTION_AT) {
            size_t m;
            clas_size = 12 + (size_t)get_u64(named + clas + 4);
            file = spliced(named, n, (size_t)clas + clas_size, named + clas, clas_size, &m);
            if (file) {
                fix_crc(file, m);
                check_refused("clas_twice.cnn", file, m, clas + (long)clas_size, "section 'clas' appears twice");
                free(file);
            }
            /* moved before PARM */
            file = (unsigned char *)malloc(n);
            if (file) {
                memcpy(file, named, PARM_AT);
                memcpy(file + PARM_AT, named + clas, clas_size);
                memcpy(file + PARM_AT + clas_size, named + PARM_AT, (size_t)clas - PARM_AT);
                memcpy(file + clas + clas_size, named + clas + clas_size, n - (size_t)clas - clas_size);
                fix_crc(file, n);
                check_refused("clas_before_parm.cnn", file, n, PARM_AT, "section 3 is 'clas' where 'PARM' belongs");
                free(file);
            }
            /* a CRC section before the names: what follows it is refused */
            file = (unsigned char *)malloc(n);
            if (file) {
                at = (size_t)clas;
                memcpy(file, named, at);
                make_section(file + at, "CRC ", "\0\0\0\0", 4);
                put_u32(file + at + 12, crc32_of(file, at));
                memcpy(file + at + 16, named + clas, clas_size);
                check_refused("crc_not_last.cnn", file, n, (long long)at + 16, "has bytes after its CRC");
                free(file);
            }
        }
        free(named);
    }
    cnn_model_free(&model);
    free(good);
}

/* ---------------------------------------------------------------- class names */

/* cnn_model_set_class_names takes one name per class, each 1 to 255 bytes
   without control characters, and copies them; anything else is refused
   with CNN_ERROR_INVALID_ARGUMENT and a message, the names held before
   kept. A model without layers cannot be named (CNN_ERROR_STATE). */
TEST(class_names_set_and_refused)
{
    const char *names[11] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"};
    const char *bad[10];
    char copied[8], long_name[257];
    cnn_model model;
    cnn_result r;
    int i;
    cnn_model_init(&model, 1, 12, 12, 1);
    r = cnn_model_set_class_names(&model, names, 10);
    CHECK(r == CNN_ERROR_STATE && model.error.code == CNN_ERROR_STATE, "names before layers: result %d", (int)r);
    CHECK(strstr(model.error.message, "layers") != NULL, "message: %s", model.error.message);
    CHECK(cnn_model_class_name(&model, 0) == NULL, "a name was kept");
    cnn_model_free(&model);
    if (small_model(&model, 1) != CNN_OK) return;
    CHECK(cnn_model_class_name(&model, 0) == NULL && model.class_name_count == 0, "a model without names has one");

    /* names are copied */
    memcpy(copied, "zero", 5);
    bad[0] = copied;
    for (i = 1; i < 10; i++) bad[i] = names[i];
    EXPECT(cnn_model_set_class_names(&model, bad, 10), CNN_OK, NULL);
    copied[0] = 'Z';
    CHECK(name_is(&model, 0, "zero"), "name 0: %s",
          name_of(&model, 0));
    CHECK(name_is(&model, 9, "nine"), "name 9");
    CHECK(model.class_name_count == 10, "class_name_count %d", model.class_name_count);
    CHECK(cnn_model_class_name(&model, -1) == NULL && cnn_model_class_name(&model, 10) == NULL &&
              cnn_model_class_name(&model, 0x7fffffff) == NULL && cnn_model_class_name(NULL, 0) == NULL,
          "a label that is no class has a name");

#define REFUSED(call, needle)                                                                                   \
    do {                                                                                                        \
        cnn_result r_ = (call);                                                                                 \
        CHECK(r_ == CNN_ERROR_INVALID_ARGUMENT && model.error.code == r_, "%s: result %d", #call, (int)r_);      \
        CHECK(strstr(model.error.message, needle) != NULL, "%s: message '%s' does not mention '%s'", #call,     \
              model.error.message, needle);                                                                     \
        CHECK(model.class_name_count == 10 && name_is(&model, 0, "zero") && name_is(&model, 9, "nine"),         \
              "%s: the names held before were changed", #call);                                                 \
    } while (0)
    REFUSED(cnn_model_set_class_names(&model, names, 9), "9 class names given for a model with 10 classes");
    REFUSED(cnn_model_set_class_names(&model, names, 11), "11 class names");
    REFUSED(cnn_model_set_class_names(&model, names, -1), "-1 class names");
    REFUSED(cnn_model_set_class_names(&model, NULL, 10), "names is NULL");
    for (i = 0; i < 10; i++) bad[i] = names[i];
    bad[3] = NULL;
    REFUSED(cnn_model_set_class_names(&model, bad, 10), "class 3 has no name");
    bad[3] = "";
    REFUSED(cnn_model_set_class_names(&model, bad, 10), "the name of class 3 is 0 bytes long");
    memset(long_name, 'a', 256);
    long_name[256] = '\0';
    bad[3] = long_name;
    REFUSED(cnn_model_set_class_names(&model, bad, 10), "the name of class 3 is 256 bytes long");
    bad[3] = "tab\there";
    REFUSED(cnn_model_set_class_names(&model, bad, 10), "the name of class 3 holds a control character (byte 3)");
    bad[3] = "new\nline";
    REFUSED(cnn_model_set_class_names(&model, bad, 10), "control character");
    bad[3] = "del\x7f";
    REFUSED(cnn_model_set_class_names(&model, bad, 10), "control character");
    bad[3] = "\x1b[31m";
    REFUSED(cnn_model_set_class_names(&model, bad, 10), "control character (byte 0)");
#undef REFUSED

    /* 255 bytes, UTF-8 and spaces are names */
    long_name[255] = '\0';
    bad[3] = long_name;
    bad[4] = "\xc3\xa9t\xc3\xa9";       /* "été" */
    bad[5] = "\xe6\x97\xa5\xe6\x9c\xac"; /* "日本" */
    bad[6] = "T-shirt/top";
    bad[7] = "Ankle boot";
    EXPECT(cnn_model_set_class_names(&model, bad, 10), CNN_OK, NULL);
    CHECK(cnn_model_class_name(&model, 3) && strlen(cnn_model_class_name(&model, 3)) == 255, "the 255-byte name");
    CHECK(name_is(&model, 4, "\xc3\xa9t\xc3\xa9"), "UTF-8 name");
    CHECK(name_is(&model, 7, "Ankle boot"), "name 7");

    /* 0 removes them */
    EXPECT(cnn_model_set_class_names(&model, NULL, 0), CNN_OK, NULL);
    CHECK(model.class_name_count == 0 && cnn_model_class_name(&model, 0) == NULL, "names left after removing them");
    cnn_model_free(&model);
}

/* Names go into the file ("clas", after the parameters) and come back, byte
   for byte (UTF-8 too), from a file and from memory; a model saved without
   names loads without. */
TEST(class_names_round_trip)
{
    const char *names[10] = {"zero", "\xc3\xa9t\xc3\xa9", "\xf0\x9f\x98\x80", "three", "four", "five", "six", "seven", "8",
                             "Ankle boot"};
    cnn_model model, loaded;
    unsigned char *bytes;
    size_t length, at;
    long clas;
    int i;
    char path[1024];
    if (small_model(&model, 2) != CNN_OK) return;
    CHECK(cnn_model_set_class_names(&model, names, 10) == CNN_OK, "%s", model.error.message);
    bytes = model_bytes(&model, "names.cnn", &length);
    scratch(path, sizeof path, "names.cnn");
    if (!bytes) {
        cnn_model_free(&model);
        return;
    }
    clas = find_section(bytes, length, "clas");
    CHECK(clas == CRC_SECTION_AT, "clas at %ld", clas);
    if (clas == CRC_SECTION_AT) {
        size_t text = 0;
        for (i = 0; i < 10; i++) text += 4 + strlen(names[i]);
        CHECK(get_u64(bytes + clas + 4) == 4 + text, "clas is %lu bytes", (unsigned long)get_u64(bytes + clas + 4));
        CHECK(get_u32(bytes + clas + 12) == 10, "clas count %lu", (unsigned long)get_u32(bytes + clas + 12));
        for (i = 0, at = (size_t)clas + 16; i < 10 && at + 4 <= length; i++) {
            size_t n = get_u32(bytes + at);
            CHECK(n == strlen(names[i]) && memcmp(bytes + at + 4, names[i], n) == 0, "name %d in the file", i);
            at += 4 + n;
        }
        CHECK(at == (size_t)clas + 16 + text && memcmp(bytes + at, "CRC ", 4) == 0, "the CRC does not follow the names");
    }
    if (cnn_model_load(&loaded, path, 2) == CNN_OK) {
        CHECK(loaded.class_name_count == 10, "class_name_count %d", loaded.class_name_count);
        for (i = 0; i < 10; i++)
            CHECK(name_is(&loaded, i, names[i]), "name %d: '%s'", i,
                  name_of(&loaded, i));
        cnn_model_free(&loaded);
    } else {
        CHECK(0, "load: %s", loaded.error.message);
    }
    if (cnn_model_load_memory(&loaded, bytes, length, 2) == CNN_OK) {
        CHECK(name_is(&loaded, 2, "\xf0\x9f\x98\x80"),
              "name 2 from memory");
        cnn_model_free(&loaded);
    } else {
        CHECK(0, "load from memory: %s", loaded.error.message);
    }
    free(bytes);
    cnn_model_free(&model);
}

/* cnn_model_set_class_names_from_map names each class by its character in
   UTF-8: the EMNIST balanced mapping's 47 (label 10 is "A"), and characters
   of two, three and four bytes; a map of another size is refused. */
TEST(class_names_from_map)
{
    cnn_label_map map, other;
    cnn_model model;
    cnn_result r;
    if (cnn_label_map_load(&map, "data/emnist-balanced-mapping.txt") != CNN_OK) {
        CHECK(0, "data/emnist-balanced-mapping.txt: %s", map.error.message);
        return;
    }
    CHECK(map.count == 47, "the map has %d classes", map.count);
    cnn_model_init(&model, 1, 2, 2, 1);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 47);
    cnn_add_softmax(&model);
    if (cnn_model_build(&model, 1) != CNN_OK) return;
    EXPECT(cnn_model_set_class_names_from_map(&model, &map), CNN_OK, NULL);
    CHECK(model.class_name_count == 47, "class_name_count %d", model.class_name_count);
    CHECK(name_is(&model, 10, "A"), "label 10: '%s'",
          name_of(&model, 10));
    CHECK(name_is(&model, 0, "0"), "label 0");
    CHECK(name_is(&model, 46, "t"), "label 46: '%s'",
          name_of(&model, 46));
    CHECK(cnn_model_class_name(&model, 47) == NULL, "label 47 has a name");

    other = map;
    other.codes[0] = 0xe9;    /* é */
    other.codes[1] = 0x65e5;  /* 日 */
    other.codes[2] = 0x1f600; /* an emoji */
    EXPECT(cnn_model_set_class_names_from_map(&model, &other), CNN_OK, NULL);
    CHECK(name_is(&model, 0, "\xc3\xa9"), "two bytes");
    CHECK(name_is(&model, 1, "\xe6\x97\xa5"), "three bytes");
    CHECK(name_is(&model, 2, "\xf0\x9f\x98\x80"), "four bytes");

    other = map;
    other.count = 10;
    r = cnn_model_set_class_names_from_map(&model, &other);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT && model.error.code == r, "a map of 10 for 47 classes: result %d", (int)r);
    CHECK(strstr(model.error.message, "10 class names given for a model with 47 classes") != NULL, "message: %s",
          model.error.message);
    CHECK(name_is(&model, 2, "\xf0\x9f\x98\x80"),
          "a refused map changed the names");
    other.count = 0;
    EXPECT(cnn_model_set_class_names_from_map(&model, &other), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_set_class_names_from_map(&model, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    cnn_model_free(&model);
}

/* The names section is checked as the rest: the count must be the model's
   classes, each name 1 to 255 bytes without a control character (a zero
   byte is one), and the names must fill the section exactly. */
TEST(load_rejects_bad_class_names)
{
    const char *names[10] = {"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"};
    cnn_model model;
    unsigned char *good, *bad;
    size_t length;
    long clas;
    long long name3;
    if (small_model(&model, 1) != CNN_OK) return;
    cnn_model_set_class_names(&model, names, 10);
    good = model_bytes(&model, "names10.cnn", &length);
    cnn_model_free(&model);
    if (!good) return;
    clas = find_section(good, length, "clas");
    CHECK(clas == CRC_SECTION_AT && get_u64(good + clas + 4) == 64, "clas at %ld", clas);
    if (clas != CRC_SECTION_AT || !(bad = (unsigned char *)malloc(length))) {
        free(good);
        return;
    }
    name3 = clas + 16 + 3 * 6; /* name 3's length; its bytes follow */
    check_patched_u32("names9.cnn", good, length, (size_t)clas + 12, 9, clas + 12, "names 9 classes but the model has 10");
    check_patched_u32("name_empty.cnn", good, length, (size_t)name3, 0, name3, "class 3's name is 0 bytes long");
    check_patched_u32("name256.cnn", good, length, (size_t)name3, 256, name3, "class 3's name is 256 bytes long");
    /* a zero byte or another control character, reported at its byte */
    memcpy(bad, good, length);
    bad[name3 + 5] = 0;
    fix_crc(bad, length);
    check_refused("name_zero_byte.cnn", bad, length, name3 + 5, "class 3's name holds a control character");
    memcpy(bad, good, length);
    bad[name3 + 5] = '\n';
    fix_crc(bad, length);
    check_refused("name_control.cnn", bad, length, name3 + 5, "class 3's name holds a control character");
    memcpy(bad, good, length);
    bad[name3 + 4] = 0x7f;
    fix_crc(bad, length);
    check_refused("name_delete.cnn", bad, length, name3 + 4, "class 3's name holds a control character");
    /* a section one byte longer or shorter than its names (the CRC's tag
       then holds the extra byte, or the last name loses one) */
    check_patched_u32("clas_long.cnn", good, length, (size_t)clas + 4, 65, clas + 16 + 9 * 6,
                      "the class names do not fill their section of 65 bytes exactly");
    check_patched_u32("clas_short.cnn", good, length, (size_t)clas + 4, 63, clas + 16 + 9 * 6,
                      "the class names do not fill their section of 63 bytes exactly");
    free(bad);
    free(good);
}

/* ---------------------------------------------------------------- cnn_model_load_weights */

/* A file's parameters (and names) go into a built model of the same
   layers, which then computes what the file's model computes. Anything
   else is refused and changes nothing: other layers (CNN_ERROR_BAD_SHAPE,
   naming the first layer that differs), another input, an unbuilt model
   (CNN_ERROR_STATE), a missing file (naming it), a damaged one. */
TEST(load_weights_into_built_model)
{
    enum { COUNT = 5 };
    static float inputs[COUNT * 144], want[COUNT * 10], got[COUNT * 10], before[SMALL_PARAMS];
    const char *names[10] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
    int classes[COUNT];
    cnn_model source, target, other;
    char path[1024], damaged_path[1024], nan_path[1024];
    unsigned char *bytes;
    size_t length;
    cnn_result r;
    scratch(path, sizeof path, "weights.cnn");
    fill_inputs(inputs, COUNT, 3);
    if (small_model(&source, COUNT) != CNN_OK || small_model_seeded(&target, COUNT, 7, 10) != CNN_OK) {
        CHECK(0, "build");
        return;
    }
    CHECK(memcmp(source.params, target.params, sizeof before) != 0, "the two models must start different");
    cnn_model_set_class_names(&source, names, 10);
    cnn_model_predict(&source, inputs, COUNT, classes, want);
    CHECK(cnn_model_save(&source, path) == CNN_OK, "%s", source.error.message);

    /* an unbuilt model */
    cnn_model_init(&other, 1, 12, 12, 1);
    cnn_add_flatten(&other);
    r = cnn_model_load_weights(&other, path);
    CHECK(r == CNN_ERROR_STATE && other.error.code == r, "an unbuilt model: result %d", (int)r);
    CHECK(strstr(other.error.message, "build it first") != NULL, "message: %s", other.error.message);
    cnn_model_free(&other);

    /* other layers: dense 11 instead of 10; nothing changes */
    if (small_model_seeded(&other, 1, 7, 11) == CNN_OK) {
        float *copy = (float *)malloc(sizeof(float) * other.param_count);
        if (copy) memcpy(copy, other.params, sizeof(float) * other.param_count);
        r = cnn_model_load_weights(&other, path);
        CHECK(r == CNN_ERROR_BAD_SHAPE && other.error.code == r, "dense 11: result %d (%s)", (int)r, other.error.message);
        CHECK(strstr(other.error.message, "layer 5 is 'dense' (10) in the file, 'dense' (11) here") != NULL, "message: %s",
              other.error.message);
        CHECK(copy && memcmp(copy, other.params, sizeof(float) * other.param_count) == 0, "a refused file changed the parameters");
        free(copy);
        CHECK(other.class_names == NULL, "a refused file gave its names");
        cnn_model_free(&other);
    }
    /* a layer fewer (no softmax) */
    cnn_model_init(&other, 1, 12, 12, 1);
    cnn_add_conv2d(&other, 4, 3, 1, 1);
    cnn_add_relu(&other);
    cnn_add_max_pool(&other, 2, 2);
    cnn_add_flatten(&other);
    cnn_add_dense(&other, 10);
    if (cnn_model_build(&other, 1) == CNN_OK) {
        memcpy(before, other.params, sizeof before);
        r = cnn_model_load_weights(&other, path);
        CHECK(r == CNN_ERROR_BAD_SHAPE, "no softmax: result %d", (int)r);
        CHECK(strstr(other.error.message, "layer 6 is 'softmax' in the file, no layer here") != NULL, "message: %s",
              other.error.message);
        CHECK(memcmp(before, other.params, sizeof before) == 0, "a refused file changed the parameters");
    }
    cnn_model_free(&other);
    /* another input: 1x14x14 (a conv of the same shape, but 7x7 after the pool) */
    cnn_model_init(&other, 1, 14, 14, 1);
    cnn_add_conv2d(&other, 4, 3, 1, 1);
    cnn_add_relu(&other);
    cnn_add_max_pool(&other, 2, 2);
    cnn_add_flatten(&other);
    cnn_add_dense(&other, 10);
    cnn_add_softmax(&other);
    if (cnn_model_build(&other, 1) == CNN_OK) {
        r = cnn_model_load_weights(&other, path);
        CHECK(r == CNN_ERROR_BAD_SHAPE, "another input: result %d", (int)r);
        CHECK(strstr(other.error.message, "is for input (1, 12, 12), this model takes (1, 14, 14)") != NULL, "message: %s",
              other.error.message);
    }
    cnn_model_free(&other);

    /* a missing file, a damaged one (a flipped bit), one with a NaN (CRC
       fixed): refused, the target unchanged */
    memcpy(before, target.params, sizeof before);
    r = cnn_model_load_weights(&target, test_path("no-such-weights.cnn"));
    CHECK(r == CNN_ERROR_IO && target.error.code == r, "a missing file: result %d", (int)r);
    CHECK(strstr(target.error.message, "no-such-weights.cnn") != NULL, "message: %s", target.error.message);
    EXPECT(cnn_model_load_weights(&target, NULL), CNN_ERROR_INVALID_ARGUMENT, &target.error);
    EXPECT(cnn_model_load_weights(&target, ""), CNN_ERROR_INVALID_ARGUMENT, &target.error);
    bytes = test_read_file(path, &length);
    if (bytes && length > PARAMS_AT + 100) {
        bytes[PARAMS_AT + 41] ^= 0x04;
        snprintf(damaged_path, sizeof damaged_path, "%s", test_write_file("weights_damaged.cnn", bytes, length));
        r = cnn_model_load_weights(&target, damaged_path);
        CHECK(r == CNN_ERROR_BAD_MODEL_FILE && strstr(target.error.message, "is damaged") != NULL, "damaged: result %d (%s)", (int)r,
              target.error.message);
        bytes[PARAMS_AT + 41] ^= 0x04;
        put_f32(bytes + PARAMS_AT + 4 * 1400, NAN);
        fix_crc(bytes, length);
        snprintf(nan_path, sizeof nan_path, "%s", test_write_file("weights_nan.cnn", bytes, length));
        r = cnn_model_load_weights(&target, nan_path);
        CHECK(r == CNN_ERROR_BAD_MODEL_FILE && target.error.byte == PARAMS_AT + 4 * 1400, "NaN: result %d, byte %lld (%s)", (int)r,
              target.error.byte, target.error.message);
    } else {
        CHECK(0, "cannot read %s", path);
    }
    free(bytes);
    CHECK(memcmp(before, target.params, sizeof before) == 0, "a refused file changed the parameters");
    CHECK(target.class_names == NULL, "a refused file gave its names");

    /* the same layers: the file's parameters and names, and its outputs */
    r = cnn_model_load_weights(&target, path);
    CHECK(r == CNN_OK, "load_weights: %s", target.error.message);
    CHECK(memcmp(source.params, target.params, sizeof before) == 0, "the parameters are not the file's");
    CHECK(target.class_name_count == 10 && name_is(&target, 9, "j"), "the names did not come with the weights");
    CHECK(target.max_batch == COUNT, "max_batch %d", target.max_batch);
    r = cnn_model_predict(&target, inputs, COUNT, classes, got);
    CHECK(r == CNN_OK && memcmp(want, got, sizeof want) == 0, "the outputs differ from the file's model (max %g)",
          test_max_abs_diff(want, got, COUNT * 10));
    cnn_model_free(&target);
    cnn_model_free(&source);
}

/* ---------------------------------------------------------------- checkpoints */

/* A model trained for 3 steps with optimizer (desc), for checkpoints. */
static int trained_model(cnn_model *model, cnn_optimizer *optimizer, const cnn_optimizer_desc *desc)
{
    static float inputs[4 * 144];
    static const int labels[4] = {1, 3, 5, 7};
    int step;
    fill_inputs(inputs, 4, 11);
    if (small_model(model, 4) != CNN_OK || cnn_optimizer_init(optimizer, model, desc) != CNN_OK) return 0;
    for (step = 0; step < 3; step++)
        if (cnn_model_train_step(model, optimizer, inputs, labels, 4, NULL, NULL) != CNN_OK) return 0;
    return 1;
}

static void add_record(cnn_history *history, int epoch, int validated)
{
    cnn_epoch_record record;
    memset(&record, 0, sizeof record);
    record.epoch = epoch;
    record.loss = 2.0f / (float)epoch;
    record.accuracy = 0.1f * (float)epoch;
    record.validated = validated;
    record.validation_loss = validated ? 2.5f / (float)epoch : 0.0f;
    record.validation_accuracy = validated ? 0.09f * (float)epoch : 0.0f;
    record.seconds = 1.25 * epoch + 1e-9;
    cnn_history_add(history, &record);
}

/* A checkpoint keeps, bit for bit: the parameters, the optimiser (Adam's
   settings, the learning rate as lowered, the step, both moments), the
   training state (epoch, best epoch and loss, the best parameters, the
   augment generator and the history when the caller has them) and the
   model's generator. One more training step on the original and on the
   loaded copy gives the same parameters. cnn_model_load reads the
   checkpoint as a plain model. */
TEST(checkpoint_round_trip_adam)
{
    static float inputs[4 * 144];
    static const int labels[4] = {2, 4, 6, 8};
    cnn_model model, loaded, plain;
    cnn_optimizer adam, adam2;
    cnn_fit_state state, state2;
    cnn_history history, history2;
    cnn_rng augment, augment2;
    char path[1024];
    unsigned char *bytes;
    size_t length;
    int i;
    cnn_result r;
    memset(&state, 0, sizeof state);
    memset(&state2, 0, sizeof state2);
    memset(&history, 0, sizeof history);
    memset(&history2, 0, sizeof history2);
    scratch(path, sizeof path, "adam.ckpt");
    if (!trained_model(&model, &adam, NULL)) {
        CHECK(0, "training: %s", model.error.message);
        cnn_model_free(&model);
        return;
    }
    CHECK(adam.step == 3, "step %ld", adam.step);
    adam.desc.learning_rate = 0.00025f; /* as a decay would have lowered it */
    for (i = 0; i < 5; i++) cnn_rng_next(&model.rng);
    cnn_rng_seed(&augment, 99);
    cnn_rng_next(&augment);
    add_record(&history, 1, 1);
    add_record(&history, 2, 0);
    add_record(&history, 3, 1);
    state.epoch = 3;
    state.best_epoch = 2;
    state.best_loss = 0.6875f;
    state.param_count = model.param_count;
    state.best_params = (float *)malloc(sizeof(float) * model.param_count);
    for (i = 0; i < (int)model.param_count && state.best_params; i++) state.best_params[i] = model.params[i] * 0.5f - 0.001f;
    state.augment_rng = &augment;
    state.history = &history;
    r = cnn_checkpoint_save(&model, &adam, &state, path);
    CHECK(r == CNN_OK, "save: %s", model.error.message);

    /* the file: a model file, with "optm" and "fits" before the CRC */
    bytes = test_read_file(path, &length);
    if (bytes) {
        long optm = find_section(bytes, length, "optm"), fits = find_section(bytes, length, "fits");
        CHECK(optm > PARM_AT && fits > optm && find_section(bytes, length, "CRC ") == (long)length - 16, "sections at %ld, %ld",
              optm, fits);
        CHECK(optm > 0 && get_u64(bytes + optm + 4) == 40 + 8 * (uint64_t)SMALL_PARAMS, "optm is %lu bytes",
              optm > 0 ? (unsigned long)get_u64(bytes + optm + 4) : 0ul);
        CHECK(get_u32(bytes + length - 4) == crc32_of(bytes, length - 16), "CRC");
        free(bytes);
    }

    /* what the caller had is replaced */
    cnn_rng_seed(&augment2, 1);
    add_record(&history2, 1, 0);
    state2.augment_rng = &augment2;
    state2.history = &history2;
    state2.epoch = 17;
    memset(&adam2, 0x5a, sizeof adam2);
    r = cnn_checkpoint_load(&loaded, &adam2, &state2, path, 4);
    CHECK(r == CNN_OK, "load: %s", loaded.error.message);
    if (r == CNN_OK) {
        CHECK(loaded.param_count == SMALL_PARAMS && memcmp(loaded.params, model.params, sizeof(float) * SMALL_PARAMS) == 0,
              "parameters differ");
        CHECK(loaded.rng.state == model.rng.state && loaded.rng.increment == model.rng.increment, "the model's generator differs");
        CHECK(adam2.desc.type == CNN_OPTIMIZER_ADAM && same_bits(adam2.desc.learning_rate, 0.00025f) &&
                  same_bits(adam2.desc.beta1, adam.desc.beta1) && same_bits(adam2.desc.beta2, adam.desc.beta2) &&
                  same_bits(adam2.desc.epsilon, adam.desc.epsilon) && same_bits(adam2.desc.momentum, adam.desc.momentum),
              "Adam's settings differ (learning rate %g)", (double)adam2.desc.learning_rate);
        CHECK(adam2.step == 3 && adam2.param_count == SMALL_PARAMS, "step %ld, %lu parameters", adam2.step,
              (unsigned long)adam2.param_count);
        CHECK(adam2.first_moment && memcmp(adam2.first_moment, adam.first_moment, sizeof(float) * SMALL_PARAMS) == 0,
              "first moments differ");
        CHECK(adam2.second_moment && memcmp(adam2.second_moment, adam.second_moment, sizeof(float) * SMALL_PARAMS) == 0,
              "second moments differ");
        CHECK(state2.epoch == 3 && state2.best_epoch == 2 && same_bits(state2.best_loss, 0.6875f), "epoch %d, best %d, loss %g",
              state2.epoch, state2.best_epoch, (double)state2.best_loss);
        CHECK(state2.best_params && state2.param_count == SMALL_PARAMS && state.best_params &&
                  memcmp(state2.best_params, state.best_params, sizeof(float) * SMALL_PARAMS) == 0,
              "best parameters differ");
        CHECK(state2.augment_rng == &augment2 && augment2.state == augment.state && augment2.increment == augment.increment,
              "the augment generator differs");
        CHECK(state2.history == &history2 && history2.count == 3, "history of %d records", history2.count);
        for (i = 0; i < 3 && i < history2.count; i++) {
            const cnn_epoch_record *a = &history.epochs[i], *b = &history2.epochs[i];
            CHECK(a->epoch == b->epoch && same_bits(a->loss, b->loss) && same_bits(a->accuracy, b->accuracy) &&
                      a->validated == b->validated && same_bits(a->validation_loss, b->validation_loss) &&
                      same_bits(a->validation_accuracy, b->validation_accuracy) && memcmp(&a->seconds, &b->seconds, 8) == 0,
                  "history record %d differs", i);
        }
        /* both go on the same */
        fill_inputs(inputs, 4, 12);
        r = cnn_model_train_step(&model, &adam, inputs, labels, 4, NULL, NULL);
        CHECK(r == CNN_OK, "step: %s", model.error.message);
        r = cnn_model_train_step(&loaded, &adam2, inputs, labels, 4, NULL, NULL);
        CHECK(r == CNN_OK, "step after load: %s", loaded.error.message);
        CHECK(memcmp(loaded.params, model.params, sizeof(float) * SMALL_PARAMS) == 0, "a step after loading gives other weights");
        CHECK(adam2.step == 4, "step %ld", adam2.step);
        cnn_model_free(&loaded);
    }
    cnn_optimizer_free(&adam2);
    cnn_fit_state_free(&state2);

    /* a caller without a history or an augment generator loads it too */
    memset(&state2, 0, sizeof state2);
    r = cnn_checkpoint_load(&loaded, &adam2, &state2, path, 1);
    CHECK(r == CNN_OK, "load without history or augment generator: %s", loaded.error.message);
    if (r == CNN_OK) {
        CHECK(state2.epoch == 3 && state2.best_params && state2.history == NULL && state2.augment_rng == NULL, "state");
        cnn_model_free(&loaded);
    }
    cnn_optimizer_free(&adam2);
    cnn_fit_state_free(&state2);

    /* a checkpoint is a model file too */
    r = cnn_model_load(&plain, path, 2);
    CHECK(r == CNN_OK, "cnn_model_load of a checkpoint: %s", plain.error.message);
    if (r == CNN_OK) {
        CHECK(plain.layer_count == SMALL_LAYERS && plain.param_count == SMALL_PARAMS, "%d layers", plain.layer_count);
        cnn_model_free(&plain);
    }
    cnn_history_free(&history);
    cnn_history_free(&history2);
    free(state.best_params);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
}

/* SGD with momentum (one block of moments), and a state with nothing
   optional: no best parameters, no augment generator, no history. A
   caller's augment generator is left alone when the file has none. */
TEST(checkpoint_round_trip_sgd_bare_state)
{
    cnn_model model, loaded;
    cnn_optimizer sgd, sgd2;
    cnn_optimizer_desc desc;
    cnn_fit_state state, state2;
    cnn_rng augment2;
    char path[1024];
    cnn_result r;
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_OPTIMIZER_SGD;
    desc.learning_rate = 0.05f;
    desc.momentum = 0.9f;
    memset(&state, 0, sizeof state);
    memset(&state2, 0, sizeof state2);
    scratch(path, sizeof path, "sgd.ckpt");
    if (!trained_model(&model, &sgd, &desc)) {
        CHECK(0, "training: %s", model.error.message);
        cnn_model_free(&model);
        return;
    }
    state.epoch = 1;
    r = cnn_checkpoint_save(&model, &sgd, &state, path);
    CHECK(r == CNN_OK, "save: %s", model.error.message);
    cnn_rng_seed(&augment2, 5);
    state2.augment_rng = &augment2;
    r = cnn_checkpoint_load(&loaded, &sgd2, &state2, path, 1);
    CHECK(r == CNN_OK, "load: %s", loaded.error.message);
    if (r == CNN_OK) {
        cnn_rng fresh;
        cnn_rng_seed(&fresh, 5);
        CHECK(sgd2.desc.type == CNN_OPTIMIZER_SGD && same_bits(sgd2.desc.learning_rate, 0.05f) && same_bits(sgd2.desc.momentum, 0.9f),
              "SGD settings");
        CHECK(sgd2.step == 3 && sgd2.second_moment == NULL, "step %ld", sgd2.step);
        CHECK(sgd2.first_moment && memcmp(sgd2.first_moment, sgd.first_moment, sizeof(float) * SMALL_PARAMS) == 0, "velocities differ");
        CHECK(state2.epoch == 1 && state2.best_epoch == 0 && state2.best_params == NULL && state2.param_count == 0, "state");
        CHECK(augment2.state == fresh.state && augment2.increment == fresh.increment, "the caller's augment generator changed");
        CHECK(loaded.rng.state == model.rng.state && loaded.rng.increment == model.rng.increment, "the model's generator differs");
        cnn_model_free(&loaded);
    }
    cnn_optimizer_free(&sgd2);
    cnn_fit_state_free(&state2);
    cnn_optimizer_free(&sgd);
    cnn_model_free(&model);
}

/* Loading path as a checkpoint is refused with CNN_ERROR_BAD_MODEL_FILE at
   want_byte (-1: not about a byte), needle in the message; the model, the
   optimiser and the state are left freed, and the caller's history not
   half-filled. */
static void check_checkpoint_refused(const char *path, long long want_byte, const char *needle, const char *what)
{
    cnn_model model;
    cnn_optimizer optimizer;
    cnn_fit_state state;
    cnn_history history;
    cnn_rng augment;
    cnn_result r;
    memset(&model, 0x5a, sizeof model);
    memset(&optimizer, 0x5a, sizeof optimizer);
    memset(&state, 0, sizeof state);
    memset(&history, 0, sizeof history);
    add_record(&history, 1, 0);
    cnn_rng_seed(&augment, 1);
    state.epoch = 5;
    state.history = &history;
    state.augment_rng = &augment;
    r = cnn_checkpoint_load(&model, &optimizer, &state, path, 2);
    check_load_error(&model, r, want_byte, needle, what);
    CHECK(optimizer.first_moment == NULL && optimizer.second_moment == NULL && optimizer.param_count == 0 && optimizer.step == 0,
          "%s: the optimiser was not left freed", what);
    CHECK(state.best_params == NULL && state.param_count == 0, "%s: best parameters left", what);
    CHECK(state.history == &history && state.augment_rng == &augment, "%s: the caller's pointers changed", what);
    CHECK(history.count == 0 || (history.count == 1 && history.epochs[0].epoch == 1), "%s: the history holds %d records", what,
          history.count);
    cnn_optimizer_free(&optimizer);
    cnn_history_free(&history);
}

/* A plain model file (either version) is not a checkpoint; a checkpoint
   whose optimiser holds a NaN moment or a negative second moment, a
   generator with an even stream, more history than epochs, or a section
   twice is refused (CRC fixed), as is one damaged anywhere (CRC stale),
   after the optimiser and the best parameters were already allocated. */
TEST(checkpoint_load_refusals)
{
    cnn_model model;
    cnn_optimizer adam;
    cnn_fit_state state;
    cnn_history history;
    cnn_rng augment;
    char path[1024], bad_path[1024];
    unsigned char *good, *bad;
    size_t length, n;
    long optm, fits;
    cnn_result r;
    memset(&state, 0, sizeof state);
    memset(&history, 0, sizeof history);
    scratch(path, sizeof path, "refusals.ckpt");
    remove(path); /* left by an earlier run in the same TEST_TMP */
    if (!trained_model(&model, &adam, NULL)) {
        cnn_model_free(&model);
        return;
    }
    /* a plain model */
    scratch(bad_path, sizeof bad_path, "plain.cnn");
    CHECK(cnn_model_save(&model, bad_path) == CNN_OK, "%s", model.error.message);
    check_checkpoint_refused(bad_path, -1, "plain.cnn' is a model file, not a checkpoint", "a plain model");
    check_checkpoint_refused(FIXTURES "model_v1.cnn", 8, "is a model file of format version 1, not a checkpoint", "version 1");

    /* arguments */
    state.epoch = 1;
    state.best_epoch = 2;
    r = cnn_checkpoint_save(&model, &adam, &state, path);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT && strstr(model.error.message, "training state") != NULL, "best epoch after epoch: %d (%s)",
          (int)r, model.error.message);
    r = cnn_checkpoint_save(&model, NULL, &state, path);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT, "no optimiser: %d", (int)r);
    CHECK(!file_exists(path), "a refused checkpoint was written");

    cnn_rng_seed(&augment, 3);
    add_record(&history, 1, 1);
    add_record(&history, 2, 1);
    state.epoch = 2;
    state.best_epoch = 1;
    state.best_loss = 1.5f;
    state.param_count = model.param_count;
    state.best_params = (float *)malloc(sizeof(float) * model.param_count);
    if (state.best_params) memcpy(state.best_params, model.params, sizeof(float) * model.param_count);
    state.augment_rng = &augment;
    state.history = &history;
    r = cnn_checkpoint_save(&model, &adam, &state, path);
    CHECK(r == CNN_OK, "save: %s", model.error.message);
    good = test_read_file(path, &length);
    optm = good ? find_section(good, length, "optm") : -1;
    fits = good ? find_section(good, length, "fits") : -1;
    CHECK(optm > 0 && fits > 0, "no optm or fits section");
    if (optm > 0 && fits > 0 && (bad = (unsigned char *)malloc(length)) != NULL) {
        size_t moments = (size_t)optm + 12 + 40, fits_best = (size_t)fits + 12 + 12 + 16 + 4 + 16;
        cnn_model loaded;
        cnn_optimizer adam2;
        cnn_fit_state state2;
        /* the good file loads: what follows is refused for its change alone */
        memset(&state2, 0, sizeof state2);
        r = cnn_checkpoint_load(&loaded, &adam2, &state2, path, 1);
        CHECK(r == CNN_OK, "the good checkpoint: %s", loaded.error.message);
        if (r == CNN_OK) {
            CHECK(state2.best_params != NULL && state2.epoch == 2, "state");
            cnn_optimizer_free(&adam2);
            cnn_fit_state_free(&state2);
            cnn_model_free(&loaded);
        }
#define REFUSED(name, want_byte, needle)                                                          \
    do {                                                                                          \
        fix_crc(bad, length);                                                                     \
        snprintf(bad_path, sizeof bad_path, "%s", test_write_file(name, bad, length));            \
        check_checkpoint_refused(bad_path, want_byte, needle, name);                              \
        memcpy(bad, good, length);                                                                \
    } while (0)
        memcpy(bad, good, length);
        put_f32(bad + moments + 4 * 7, NAN);
        REFUSED("moment_nan.ckpt", (long long)moments + 4 * 7, "first moment value 7 is not a finite number");
        put_f32(bad + moments + 4 * (SMALL_PARAMS + 9), -1e-3f);
        REFUSED("moment_negative.ckpt", (long long)moments + 4 * (SMALL_PARAMS + 9), "second moment value 9 is negative");
        put_f32(bad + moments + 4 * (SMALL_PARAMS + 10), INFINITY);
        REFUSED("moment_inf.ckpt", (long long)moments + 4 * (SMALL_PARAMS + 10), "second moment value 10 is not a finite number");
        put_u32(bad + optm + 12, 2);
        REFUSED("optimizer_type2.ckpt", optm + 12, "unknown optimiser type 2");
        put_u32(bad + optm + 12 + 28, 1); /* the step count's high half */
        REFUSED("step_huge.ckpt", optm + 12 + 24, "step count");
        put_u32(bad + (size_t)fits + 12 + 20, get_u32(good + fits + 12 + 20) & ~1u); /* the model's generator's stream */
        REFUSED("rng_even.ckpt", fits + 12 + 20, "stream is even");
        put_u32(bad + (size_t)fits + 12 + 4, 3); /* best epoch 3 after epoch 2 */
        REFUSED("best_after_epoch.ckpt", fits + 12, "not plausible");
        put_f32(bad + fits_best + 8 + 4 * 3, NAN);
        REFUSED("best_nan.ckpt", (long long)fits_best + 8 + 4 * 3, "best parameter value 3");
        put_u32(bad + length - 16 - 4 - 64, 3); /* 3 history records after 2 epochs */
        REFUSED("history3.ckpt", (long long)length - 16 - 4 - 64, "3 history records");
#undef REFUSED
        /* optm twice */
        free(bad);
        bad = spliced(good, length, length - 16, good + optm, (size_t)(fits - optm), &n);
        if (bad) {
            fix_crc(bad, n);
            snprintf(bad_path, sizeof bad_path, "%s", test_write_file("optm_twice.ckpt", bad, n));
            check_checkpoint_refused(bad_path, (long long)length - 16, "section 'optm' appears twice", "optm twice");
            free(bad);
        }
        /* no training state: not a checkpoint */
        bad = spliced(good, length, (size_t)fits, NULL, length - 16 - (size_t)fits, &n);
        if (bad) {
            fix_crc(bad, n);
            snprintf(bad_path, sizeof bad_path, "%s", test_write_file("no_fits.ckpt", bad, n));
            check_checkpoint_refused(bad_path, -1, "not a checkpoint", "no fits");
            free(bad);
        }
        /* a stale CRC after everything was read: a moment's bit, a history record's */
        bad = (unsigned char *)malloc(length);
        if (bad) {
            memcpy(bad, good, length);
            bad[moments + 4 * 100] ^= 1;
            snprintf(bad_path, sizeof bad_path, "%s", test_write_file("moment_flipped.ckpt", bad, length));
            check_checkpoint_refused(bad_path, (long long)length - 16, "is damaged", "a flipped moment");
            memcpy(bad, good, length);
            bad[length - 16 - 3] ^= 0x80;
            snprintf(bad_path, sizeof bad_path, "%s", test_write_file("history_flipped.ckpt", bad, length));
            check_checkpoint_refused(bad_path, (long long)length - 16, "is damaged", "a flipped history record");
            free(bad);
        }
    }
    free(good);
    free(state.best_params);
    cnn_history_free(&history);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- version 1 */

/* tests/fixtures/model_v1.cnn, written by the cnn.h that wrote format
   version 1 (see make_old_models.c), loads: its layers, its parameters as
   stored, and for model_v1.io's inputs exactly the probabilities that cnn.h
   computed. Saved again it becomes version 2, which loads the same; its
   weights also go into a built model. */
TEST(version1_file_loads)
{
    cnn_model model, again, built;
    test_io io;
    unsigned char *bytes;
    size_t length, i;
    char path[1024];
    int ok;
    static const cnn_layer_type types[V1_LAYERS] = {CNN_LAYER_CONV2D,  CNN_LAYER_RELU,  CNN_LAYER_MAX_POOL,
                                                    CNN_LAYER_FLATTEN, CNN_LAYER_DENSE, CNN_LAYER_SOFTMAX};
    bytes = test_read_file(FIXTURES "model_v1.cnn", &length);
    CHECK(bytes && length == V1_FILE_BYTES && get_u32(bytes + 8) == 1, FIXTURES "model_v1.cnn: missing, or not the version-1 file");
    ok = test_io_read(&io, FIXTURES "model_v1.io");
    CHECK(ok && io.batch == 3 && io.c == 1 && io.h == 8 && io.w == 8 && io.outputs == 3, FIXTURES "model_v1.io");
    if (!bytes || length != V1_FILE_BYTES || !ok || io.batch != 3 || io.outputs != 3) {
        free(bytes);
        if (ok) test_io_free(&io);
        return;
    }
    if (cnn_model_load(&model, FIXTURES "model_v1.cnn", 3) != CNN_OK) {
        CHECK(0, "load: %s", model.error.message);
    } else {
        const float *out;
        CHECK(model.input.c == 1 && model.input.h == 8 && model.input.w == 8, "input shape");
        CHECK(model.layer_count == V1_LAYERS && model.param_count == V1_PARAMS, "%d layers, %lu parameters", model.layer_count,
              (unsigned long)model.param_count);
        for (i = 0; i < V1_LAYERS && (int)i < model.layer_count; i++)
            CHECK(model.layers[i].desc.type == types[i], "layer %lu is %s", (unsigned long)i, cnn_layer_type_name(model.layers[i].desc.type));
        CHECK(model.layers[0].desc.units == 2 && model.layers[0].desc.kernel == 3 && model.layers[0].desc.padding == 1, "conv");
        CHECK(model.layers[4].desc.units == 3, "dense");
        CHECK(model.class_names == NULL, "names from a version-1 file");
        for (i = 0; i < V1_PARAMS && model.param_count == V1_PARAMS; i++)
            if (!get_f32_bits_equal(bytes + V1_PARAMS_AT + 4 * i, model.params[i])) break;
        CHECK(i == V1_PARAMS, "parameter %lu is not the file's", (unsigned long)i);
        CHECK(cnn_model_forward(&model, io.input, 3, CNN_MODE_EVAL) == CNN_OK, "forward: %s", model.error.message);
        out = cnn_model_output(&model);
        /* probabilities, to 1e-6: the file's were computed with the sse2
           kernel, and a fused multiply-add kernel rounds differently */
        CHECK(out && test_max_abs_diff(out, io.output, 9) <= 1e-6, "the outputs are not those version 1 computed (max %g)",
              out ? test_max_abs_diff(out, io.output, 9) : -1.0);

        /* saved again: version 2, the same model */
        scratch(path, sizeof path, "v1_upgraded.cnn");
        CHECK(cnn_model_save(&model, path) == CNN_OK, "%s", model.error.message);
        free(bytes);
        bytes = test_read_file(path, &length);
        CHECK(bytes && length > 12 && get_u32(bytes + 8) == 2, "not saved as version 2");
        if (cnn_model_load(&again, path, 3) == CNN_OK) {
            CHECK(again.param_count == V1_PARAMS && memcmp(again.params, model.params, sizeof(float) * V1_PARAMS) == 0,
                  "parameters differ after saving as version 2");
            cnn_model_free(&again);
        } else {
            CHECK(0, "the upgraded file: %s", again.error.message);
        }

        /* into a built model of the same layers */
        cnn_model_init(&built, 1, 8, 8, 77);
        cnn_add_conv2d(&built, 2, 3, 1, 1);
        cnn_add_relu(&built);
        cnn_add_max_pool(&built, 2, 2);
        cnn_add_flatten(&built);
        cnn_add_dense(&built, 3);
        cnn_add_softmax(&built);
        if (cnn_model_build(&built, 1) == CNN_OK) {
            CHECK(cnn_model_load_weights(&built, FIXTURES "model_v1.cnn") == CNN_OK, "%s", built.error.message);
            CHECK(memcmp(built.params, model.params, sizeof(float) * V1_PARAMS) == 0, "load_weights from version 1");
        }
        cnn_model_free(&built);
        cnn_model_free(&model);
    }
    free(bytes);
    test_io_free(&io);
}

/* The version-1 reader checks as it did: truncation (inside the input, a
   layer record, the parameter count, the parameters), trailing bytes, a
   bad layer count, layer or parameter count, a NaN parameter. */
TEST(version1_damage_refused)
{
    unsigned char *good, *bad;
    size_t length;
    good = test_read_file(FIXTURES "model_v1.cnn", &length);
    if (!good || length != V1_FILE_BYTES || !(bad = (unsigned char *)malloc(length + 1))) {
        CHECK(0, FIXTURES "model_v1.cnn is missing");
        free(good);
        return;
    }
    check_refused("v1_cut20.cnn", good, 20, 20, "truncated inside the input shape");
    check_refused("v1_cut_layer3.cnn", good, V1_LAYER_AT(2) + 10, V1_LAYER_AT(2) + 10, "truncated inside a layer record");
    check_refused("v1_cut_count.cnn", good, V1_COUNT_AT + 3, V1_COUNT_AT + 3, "truncated inside the parameter count");
    check_refused("v1_cut_params.cnn", good, length - 4, (long long)length - 4, "119 parameters need 476 bytes, 472 remain");
    memcpy(bad, good, length);
    bad[length] = 0;
    check_refused("v1_trailing.cnn", bad, length + 1, (long long)length, "has bytes after its parameters");
#define V1_PATCHED(name, at, value, want_byte, needle)                \
    do {                                                              \
        memcpy(bad, good, length);                                    \
        put_u32(bad + (at), (value));                                 \
        check_refused(name, bad, length, want_byte, needle);          \
    } while (0)
    V1_PATCHED("v1_layers0.cnn", 24, 0, 24, "declares 0 layers");
    V1_PATCHED("v1_layers65.cnn", 24, 65, 24, "declares 65 layers");
    V1_PATCHED("v1_type99.cnn", V1_LAYER_AT(1), 99, V1_LAYER_AT(1), "layer 2 has unknown type 99");
    V1_PATCHED("v1_kernel99.cnn", V1_LAYER_AT(0) + 8, 99, V1_LAYER_AT(0), "kernel 99");
    V1_PATCHED("v1_conv_after_flatten.cnn", V1_LAYER_AT(4), CNN_LAYER_CONV2D, V1_LAYER_AT(4), "flat vector");
    V1_PATCHED("v1_count.cnn", V1_COUNT_AT, V1_PARAMS + 1, V1_COUNT_AT, "says 120 parameters but its layers have 119");
    V1_PATCHED("v1_version3.cnn", 8, 3, 8, "format version 3");
    {
        uint32_t nan_bits = 0x7fc00000u;
        V1_PATCHED("v1_nan.cnn", V1_PARAMS_AT + 4 * 5, nan_bits, V1_PARAMS_AT + 4 * 5, "parameter value 5 is not a finite number");
    }
#undef V1_PATCHED
    free(bad);
    free(good);
}

/* ---------------------------------------------------------------- batch norm, residual blocks, new pool settings

   test_add_residual_layers (test.h): batch norm on images and on a flat
   vector, residual blocks with and without a projection and one inside
   another, padded pools in ceil mode, global average pooling. Its file
   holds the layers' new settings (padding and ceil_mode of the pools, the
   projection's kernel and stride) and a "STAT" section after "PARM": per
   batch norm layer the u64 batches tracked, C running means and C running
   variances. */
#define RESIDUAL_INPUTS (3 * 9 * 9)
#define RESIDUAL_OUTPUTS 4
#define RESIDUAL_STAT_BYTES (5 * 8 + 8 * (4 + 4 + 4 + 6 + 5)) /* 224: its five batch norm layers */

/* The model built for max_batch, with far-from-initial weights and running
   statistics, then two training passes on inputs (max_batch of them, which
   it fills) that move the statistics on; 0 with a line when it fails. */
static int residual_model(cnn_model *model, int max_batch, float *inputs)
{
    cnn_rng rng;
    test_add_residual_layers(model, 5);
    if (cnn_model_build(model, max_batch) != CNN_OK) {
        printf("    build: %s\n", model->error.message);
        return 0;
    }
    test_randomise_weights(model, 6);
    test_randomise_statistics(model, 7);
    cnn_rng_seed(&rng, 8);
    test_fill_uniform(&rng, inputs, (size_t)max_batch * RESIDUAL_INPUTS, 0.0f, 1.0f);
    if (cnn_model_forward(model, inputs, max_batch, CNN_MODE_TRAIN) != CNN_OK ||
        cnn_model_forward(model, inputs, max_batch, CNN_MODE_TRAIN) != CNN_OK) {
        printf("    training pass: %s\n", model->error.message);
        return 0;
    }
    return 1;
}

/* The running statistics and batch counts of two models are the same, bit for bit. */
static int same_statistics(const cnn_model *a, const cnn_model *b)
{
    int l;
    if (a->state_count != b->state_count || a->layer_count != b->layer_count ||
        memcmp(a->state, b->state, a->state_count * sizeof(float)) != 0)
        return 0;
    for (l = 0; l < a->layer_count; l++)
        if (a->layers[l].batches_tracked != b->layers[l].batches_tracked) return 0;
    return 1;
}

/* Saved and loaded, the model has the same layers (every setting), the
   same parameters, running statistics and batch counts, and computes the
   same outputs bit for bit, in evaluation and in a training pass (which
   moves the loaded statistics exactly as the original's). */
TEST(batch_norm_and_residual_round_trip)
{
    enum { COUNT = 6 };
    static float inputs[COUNT * RESIDUAL_INPUTS], before[COUNT * RESIDUAL_OUTPUTS];
    char path[1024], summary_before[4096], summary_after[4096];
    cnn_model model, loaded;
    unsigned char *bytes;
    size_t length;
    long stat;
    int l;
    scratch(path, sizeof path, "residual.cnn");
    if (!residual_model(&model, COUNT, inputs)) {
        CHECK(0, "the model");
        cnn_model_free(&model);
        return;
    }
    CHECK(model.state_count == 2 * (4 + 4 + 4 + 6 + 5), "state_count %lu", (unsigned long)model.state_count);
    CHECK(model.layers[1].batches_tracked == 1001 + 2, "batches tracked %lu", (unsigned long)model.layers[1].batches_tracked);
    CHECK(cnn_model_save(&model, path) == CNN_OK, "save: %s", model.error.message);

    /* the file: the new settings in the records, STAT right after PARM */
    bytes = test_read_file(path, &length);
    CHECK(bytes && length > 100, "the file");
    if (bytes && length > 100) {
        const long parm = find_section(bytes, length, "PARM");
        const size_t first = LAYER_AT(0);
        CHECK(get_u32(bytes + RECORD_SIZE_AT) == LAYER_BYTES, "record size %lu", (unsigned long)get_u32(bytes + RECORD_SIZE_AT));
        CHECK(get_u32(bytes + first + 3 * LAYER_BYTES) == CNN_LAYER_MAX_POOL && get_u32(bytes + first + 3 * LAYER_BYTES + 16) == 1 &&
                  get_u32(bytes + first + 3 * LAYER_BYTES + 32) == 1,
              "the max pool's padding and ceil_mode");
        CHECK(get_u32(bytes + first + 18 * LAYER_BYTES) == CNN_LAYER_RESIDUAL_END && get_u32(bytes + first + 18 * LAYER_BYTES + 4) == 6 &&
                  get_u32(bytes + first + 18 * LAYER_BYTES + 8) == 1 && get_u32(bytes + first + 18 * LAYER_BYTES + 12) == 2 &&
                  get_u32(bytes + first + 18 * LAYER_BYTES + 20) == CNN_INIT_HE_NORMAL,
              "the projection's record");
        stat = find_section(bytes, length, "STAT");
        CHECK(parm > 0 && stat == parm + 12 + 8 + 4 * (long)model.param_count, "STAT at %ld, PARM at %ld", stat, parm);
        if (stat > 0) {
            const unsigned char *s = bytes + stat + 12;
            CHECK(get_u64(bytes + stat + 4) == RESIDUAL_STAT_BYTES, "STAT holds %llu bytes",
                  (unsigned long long)get_u64(bytes + stat + 4));
            CHECK(get_u64(s) == model.layers[1].batches_tracked && get_f32_bits_equal(s + 8, model.layers[1].running_mean[0]) &&
                      get_f32_bits_equal(s + 8 + 4 * 3, model.layers[1].running_mean[3]) &&
                      get_f32_bits_equal(s + 8 + 4 * 4, model.layers[1].running_var[0]),
                  "the first batch norm layer's statistics");
            s += 3 * (8 + 8 * 4); /* the fourth batch norm layer, layer 14 */
            CHECK(get_u64(s) == model.layers[14].batches_tracked && get_f32_bits_equal(s + 8 + 4 * 6, model.layers[14].running_var[0]),
                  "layer 14's statistics");
        }
    }
    free(bytes);

    if (cnn_model_load(&loaded, path, COUNT) != CNN_OK) {
        CHECK(0, "load: %s", loaded.error.message);
        cnn_model_free(&model);
        return;
    }
    CHECK(loaded.layer_count == model.layer_count, "%d layers", loaded.layer_count);
    for (l = 0; l < model.layer_count && l < loaded.layer_count; l++) {
        CHECK(memcmp(&loaded.layers[l].desc, &model.layers[l].desc, sizeof(cnn_layer_desc)) == 0, "layer %d (%s) differs", l,
              cnn_layer_type_name(model.layers[l].desc.type));
        CHECK(loaded.layers[l].block_begin == model.layers[l].block_begin, "layer %d's block", l);
    }
    CHECK(loaded.param_count == model.param_count && memcmp(loaded.params, model.params, model.param_count * sizeof(float)) == 0,
          "parameters differ");
    CHECK(same_statistics(&loaded, &model), "running statistics or batch counts differ");
    cnn_model_summary(&model, summary_before, sizeof summary_before);
    cnn_model_summary(&loaded, summary_after, sizeof summary_after);
    CHECK(strcmp(summary_before, summary_after) == 0, "summaries differ:\n%s\n%s", summary_before, summary_after);
    CHECK(cnn_model_forward(&model, inputs, COUNT, CNN_MODE_EVAL) == CNN_OK, "%s", model.error.message);
    memcpy(before, cnn_model_output(&model), sizeof before);
    CHECK(cnn_model_forward(&loaded, inputs, COUNT, CNN_MODE_EVAL) == CNN_OK, "%s", loaded.error.message);
    CHECK(memcmp(before, cnn_model_output(&loaded), sizeof before) == 0, "outputs differ (max %g)",
          test_max_abs_diff(before, cnn_model_output(&loaded), COUNT * RESIDUAL_OUTPUTS));
    CHECK(cnn_model_forward(&model, inputs + RESIDUAL_INPUTS, COUNT - 1, CNN_MODE_TRAIN) == CNN_OK &&
              cnn_model_forward(&loaded, inputs + RESIDUAL_INPUTS, COUNT - 1, CNN_MODE_TRAIN) == CNN_OK,
          "training pass");
    CHECK(same_statistics(&loaded, &model), "a training pass moved the statistics differently");
    cnn_model_free(&loaded);
    cnn_model_free(&model);
}

/* The STAT section is checked as the others: there exactly when the model
   has batch norm layers, once, after PARM, of the length the layers need,
   its means finite and its variances finite and >= 0 (0 is a variance). A
   file's statistics go into a built model with its weights; a file whose
   pool rounds the other way is other layers, even where the shapes agree. */
TEST(statistics_section_checked)
{
    enum { COUNT = 2 };
    static float inputs[COUNT * RESIDUAL_INPUTS];
    size_t length, small_length, n;
    unsigned char *good = NULL, *small = small_model_bytes(&small_length), *bad, section[12 + 8];
    cnn_model model, built;
    long stat = -1;
    const long first_var = 12 + 8 + 4 * 4;                     /* from STAT: the first layer's variances */
    const long second_var = 12 + (8 + 8 * 4) + 8 + 4 * 4;      /* the second's */
    if (residual_model(&model, COUNT, inputs)) good = model_bytes(&model, "stat.cnn", &length);
    if (good) stat = find_section(good, length, "STAT");
    CHECK(good && small && stat > 0, "setup");
    if (!good || !small || stat <= 0) {
        cnn_model_free(&model);
        free(good);
        free(small);
        return;
    }

    /* missing: refused where the CRC section now is */
    if ((bad = spliced(good, length, (size_t)stat, NULL, 12 + RESIDUAL_STAT_BYTES, &n)) != NULL) {
        fix_crc(bad, n);
        check_refused("stat_missing.cnn", bad, n, stat, "has batch norm layers but no running statistics (section 'STAT')");
        free(bad);
    }
    /* in a model without batch norm */
    make_section(section, "STAT", "\0\0\0\0\0\0\0\0", 8);
    if ((bad = spliced(small, small_length, CRC_SECTION_AT, section, sizeof section, &n)) != NULL) {
        fix_crc(bad, n);
        check_refused("stat_without_batch_norm.cnn", bad, n, CRC_SECTION_AT, "has running statistics but no batch norm layer");
        free(bad);
    }
    /* twice; before PARM */
    if ((bad = spliced(good, length, (size_t)stat + 12 + RESIDUAL_STAT_BYTES, good + stat, 12 + RESIDUAL_STAT_BYTES, &n)) != NULL) {
        fix_crc(bad, n);
        check_refused("stat_twice.cnn", bad, n, stat + 12 + RESIDUAL_STAT_BYTES, "section 'STAT' appears twice");
        free(bad);
    }
    {
        const long parm = find_section(good, length, "PARM");
        if ((bad = spliced(good, length, (size_t)parm, good + stat, 12 + RESIDUAL_STAT_BYTES, &n)) != NULL) {
            fix_crc(bad, n);
            check_refused("stat_before_parm.cnn", bad, n, parm, "section 3 is 'STAT' where 'PARM' belongs");
            free(bad);
        }
    }
    /* four bytes too many, four too few */
    if ((bad = spliced(good, length, (size_t)stat + 12 + RESIDUAL_STAT_BYTES, "\0\0\0\0", 4, &n)) != NULL) {
        put_u64(bad + stat + 4, RESIDUAL_STAT_BYTES + 4);
        fix_crc(bad, n);
        check_refused("stat_long.cnn", bad, n, stat + 4, "the running statistics are 228 bytes; the batch norm layers need 224");
        free(bad);
    }
    if ((bad = spliced(good, length, (size_t)stat + 12 + RESIDUAL_STAT_BYTES - 4, NULL, 4, &n)) != NULL) {
        put_u64(bad + stat + 4, RESIDUAL_STAT_BYTES - 4);
        fix_crc(bad, n);
        check_refused("stat_short.cnn", bad, n, stat + 4, "the running statistics are 220 bytes; the batch norm layers need 224");
        free(bad);
    }
    /* values: a negative or infinite variance, a NaN mean */
    check_patched_f32("stat_negative.cnn", good, length, (size_t)(stat + second_var + 4 * 2), -1.0f, stat + second_var + 4 * 2,
                      "running variance value 2 is negative");
    check_patched_f32("stat_infinite.cnn", good, length, (size_t)(stat + first_var), INFINITY, stat + first_var,
                      "running variance value 0 is not a finite number");
    check_patched_f32("stat_nan_mean.cnn", good, length, (size_t)(stat + 12 + 8 + 4), NAN, stat + 12 + 8 + 4,
                      "running mean value 1 is not a finite number");
    /* a variance of 0, and any count of batches, load */
    if ((bad = (unsigned char *)malloc(length)) != NULL) {
        cnn_model loaded;
        memcpy(bad, good, length);
        put_f32(bad + stat + first_var, 0.0f);
        put_u64(bad + stat + 12, 0xffffffffffffffffull);
        fix_crc(bad, length);
        if (loads(&loaded, "stat_zero_variance.cnn", bad, length)) {
            CHECK(loaded.layers[1].running_var[0] == 0.0f && loaded.layers[1].batches_tracked == 0xffffffffffffffffull,
                  "variance %g, %llu batches", (double)loaded.layers[1].running_var[0],
                  (unsigned long long)loaded.layers[1].batches_tracked);
            cnn_model_free(&loaded);
        }
        free(bad);
    }

    /* into a built model: the weights, the statistics and the counts */
    test_add_residual_layers(&built, 99);
    if (cnn_model_build(&built, 1) == CNN_OK) {
        CHECK(cnn_model_load_weights(&built, test_path("stat.cnn")) == CNN_OK, "load_weights: %s", built.error.message);
        CHECK(memcmp(built.params, model.params, model.param_count * sizeof(float)) == 0, "parameters");
        CHECK(same_statistics(&built, &model), "running statistics or counts");
        /* the max pool (layer 4) without ceil mode: 9 rows still give 5, but it is another layer */
        if ((bad = (unsigned char *)malloc(length)) != NULL) {
            memcpy(bad, good, length);
            put_u32(bad + LAYER_AT(3) + 32, 0);
            fix_crc(bad, length);
            CHECK(cnn_model_load_weights(&built, test_write_file("floor_pool.cnn", bad, length)) == CNN_ERROR_BAD_SHAPE &&
                      strstr(built.error.message, "layer 4 is 'max_pool 3x3 s2 p1' in the file, 'max_pool 3x3 s2 p1 ceil' here"),
                  "message: %s", built.error.message);
            free(bad);
        }
    }
    cnn_model_free(&built);
    cnn_model_free(&model);
    free(good);
    free(small);
}

/* A model of batch norm layers (after a conv and after a dense layer) and
   a residual block, 1x8x8 -> 5 classes. */
static int build_batch_norm_cnn(cnn_model *model)
{
    cnn_layer_desc pool;
    memset(&pool, 0, sizeof pool);
    pool.type = CNN_LAYER_MAX_POOL; pool.kernel = 3; pool.stride = 2; pool.padding = 1; pool.ceil_mode = 1;
    cnn_model_init(model, 1, 8, 8, 21);
    cnn_add_conv2d(model, 4, 3, 1, 1);
    cnn_add_batch_norm(model);
    cnn_add_relu(model);
    cnn_add_residual_begin(model);
    cnn_add_conv2d(model, 4, 3, 1, 1);
    cnn_add_batch_norm(model);
    cnn_add_residual_end(model, CNN_INIT_DEFAULT);
    cnn_add_relu(model);
    cnn_model_add(model, &pool);             /* (4, 5, 5) */
    cnn_add_global_avg_pool(model);
    cnn_add_dense(model, 5);
    cnn_add_batch_norm(model);
    cnn_add_softmax(model);
    return cnn_model_build(model, 12) == CNN_OK;
}

typedef struct batch_norm_hook {
    cnn_optimizer *optimizer;
    cnn_fit_state *state;
    const char *path;    /* a checkpoint after epoch stop_after, then training stops */
    int stop_after;
    float *snapshots;    /* (epochs + 1, params + state): each epoch's parameters and statistics */
} batch_norm_hook;

static int batch_norm_epoch(cnn_model *model, const cnn_epoch_stats *stats, void *user)
{
    batch_norm_hook *hook = (batch_norm_hook *)user;
    const size_t count = model->param_count + model->state_count;
    if (hook->snapshots) memcpy(hook->snapshots + (size_t)stats->epoch * count, model->params, count * sizeof(float));
    if (stats->epoch != hook->stop_after) return 0;
    return cnn_checkpoint_save(model, hook->optimizer, hook->state, hook->path) == CNN_OK ? 1 : 2;
}

static void fit_batch_norm_cnn(cnn_model *model, cnn_optimizer *adam, cnn_fit_state *state, const cnn_dataset *train,
                               const cnn_dataset *validation, int epochs, int patience, batch_norm_hook *hook)
{
    cnn_fit_desc fit;
    memset(&fit, 0, sizeof fit);
    fit.epochs = epochs;
    fit.batch_size = 12; /* 40 samples: a short last batch of 4 */
    fit.validation = validation;
    fit.patience = patience;
    fit.state = state;
    fit.on_epoch = batch_norm_epoch;
    fit.user = hook;
    hook->state = state;
    hook->optimizer = adam;
    CHECK(cnn_model_fit(model, adam, train, &fit) == CNN_OK, "fit: %s", model->error.message);
}

/* Four epochs straight, and two + a checkpoint + a resumed run to four,
   end with the same parameters, running statistics, batch counts, Adam
   state and early stopping's best copy (parameters and statistics), bit
   for bit: the checkpoint holds the statistics, and its best copy them too. */
TEST(checkpoint_of_batch_norm_model_resumes)
{
    static cnn_model straight, resumed;
    cnn_dataset train, validation;
    cnn_optimizer adam_straight, adam_resumed;
    cnn_fit_state state_straight, state_resumed;
    batch_norm_hook hook;
    char path[1024];
    size_t count;
    scratch(path, sizeof path, "batch_norm.ckpt");
    memset(&hook, 0, sizeof hook);
    hook.path = path;
    memset(&state_straight, 0, sizeof state_straight);
    memset(&state_resumed, 0, sizeof state_resumed);
    CHECK(make_random_dataset(&train, 40, 8, 5, 31) && make_random_dataset(&validation, 10, 8, 5, 32), "datasets");
    CHECK(build_batch_norm_cnn(&straight) && cnn_optimizer_init(&adam_straight, &straight, NULL) == CNN_OK, "build: %s",
          straight.error.message);
    fit_batch_norm_cnn(&straight, &adam_straight, &state_straight, &train, &validation, 4, 3, &hook);

    hook.stop_after = 2;
    CHECK(build_batch_norm_cnn(&resumed) && cnn_optimizer_init(&adam_resumed, &resumed, NULL) == CNN_OK, "build");
    fit_batch_norm_cnn(&resumed, &adam_resumed, &state_resumed, &train, &validation, 4, 3, &hook);
    CHECK(state_resumed.epoch == 2, "stopped after epoch %d", state_resumed.epoch);
    cnn_model_free(&resumed);
    cnn_optimizer_free(&adam_resumed);
    cnn_fit_state_free(&state_resumed);
    CHECK(cnn_checkpoint_load(&resumed, &adam_resumed, &state_resumed, path, 12) == CNN_OK, "load: %s", resumed.error.message);
    CHECK(resumed.layers[1].batches_tracked == 2 * 4, "batches tracked after two epochs of 4 batches: %lu",
          (unsigned long)resumed.layers[1].batches_tracked);
    hook.stop_after = 0;
    fit_batch_norm_cnn(&resumed, &adam_resumed, &state_resumed, &train, &validation, 4, 3, &hook);

    count = straight.param_count + straight.state_count;
    CHECK(resumed.param_count == straight.param_count && resumed.state_count == straight.state_count, "sizes");
    CHECK(memcmp(resumed.params, straight.params, straight.param_count * sizeof(float)) == 0, "weights differ after resuming");
    CHECK(same_statistics(&resumed, &straight), "running statistics or batch counts differ after resuming");
    CHECK(straight.layers[1].batches_tracked == 4 * 4, "batches tracked %lu", (unsigned long)straight.layers[1].batches_tracked);
    CHECK(memcmp(adam_resumed.first_moment, adam_straight.first_moment, 2 * straight.param_count * sizeof(float)) == 0,
          "Adam's moments differ");
    CHECK(state_resumed.best_epoch == state_straight.best_epoch && state_resumed.param_count == count &&
              state_straight.param_count == count && state_resumed.best_params && state_straight.best_params &&
              memcmp(state_resumed.best_params, state_straight.best_params, count * sizeof(float)) == 0,
          "early stopping's best copy differs (best epoch %d vs %d)", state_resumed.best_epoch, state_straight.best_epoch);
    cnn_model_free(&straight), cnn_model_free(&resumed);
    cnn_optimizer_free(&adam_straight), cnn_optimizer_free(&adam_resumed);
    cnn_fit_state_free(&state_straight), cnn_fit_state_free(&state_resumed);
    cnn_dataset_free(&train), cnn_dataset_free(&validation);
}

/* Early stopping leaves the best epoch's running statistics with its
   parameters: random labels and a high learning rate make the validation
   loss rise after the first epochs, and training stops on it. */
TEST(early_stopping_restores_running_statistics)
{
    enum { EPOCHS = 8 };
    cnn_model model;
    cnn_dataset train, validation;
    cnn_optimizer adam;
    cnn_optimizer_desc fast;
    cnn_fit_state state;
    batch_norm_hook hook;
    size_t count;
    memset(&hook, 0, sizeof hook);
    memset(&state, 0, sizeof state);
    memset(&fast, 0, sizeof fast);
    fast.learning_rate = 0.05f;
    CHECK(make_random_dataset(&train, 40, 8, 5, 51) && make_random_dataset(&validation, 10, 8, 5, 52), "datasets");
    if (!build_batch_norm_cnn(&model) || cnn_optimizer_init(&adam, &model, &fast) != CNN_OK) {
        CHECK(0, "build: %s", model.error.message);
        cnn_model_free(&model);
        return;
    }
    count = model.param_count + model.state_count;
    hook.snapshots = (float *)malloc((EPOCHS + 1) * count * sizeof(float));
    if (hook.snapshots) {
        fit_batch_norm_cnn(&model, &adam, &state, &train, &validation, EPOCHS, 2, &hook);
        CHECK(state.best_epoch >= 1 && state.best_epoch < state.epoch, "best epoch %d of %d: nothing to restore", state.best_epoch,
              state.epoch);
        CHECK(memcmp(model.params, hook.snapshots + (size_t)state.best_epoch * count, count * sizeof(float)) == 0,
              "the parameters and statistics are not those of the best epoch (%d)", state.best_epoch);
        CHECK(memcmp(model.state, hook.snapshots + (size_t)state.epoch * count + model.param_count, model.state_count * sizeof(float)) != 0,
              "the statistics of the last epoch (%d) were left", state.epoch);
    }
    free(hook.snapshots);
    cnn_fit_state_free(&state);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_dataset_free(&train), cnn_dataset_free(&validation);
}

/* tests/fixtures/model_v2_32.cnn, written by the cnn.h of commit 72b8fba
   (make_old_models.c): format version 2 with layer records of 32 bytes,
   from before ceil_mode. It loads, with its class names, its parameters as
   stored and exactly the probabilities that cnn.h computed for
   model_v2_32.io's inputs; saved again its records are of 36 bytes. */
#define V2_32_LAYERS 12
TEST(records_of_32_bytes_load)
{
    static const cnn_layer_type types[V2_32_LAYERS] = {
        CNN_LAYER_CONV2D, CNN_LAYER_LEAKY_RELU, CNN_LAYER_AVG_POOL, CNN_LAYER_CONV2D, CNN_LAYER_TANH,  CNN_LAYER_MAX_POOL,
        CNN_LAYER_FLATTEN, CNN_LAYER_DROPOUT,   CNN_LAYER_DENSE,    CNN_LAYER_SIGMOID, CNN_LAYER_DENSE, CNN_LAYER_SOFTMAX};
    cnn_model model, again;
    test_io io;
    unsigned char *bytes;
    size_t length, i;
    long parm;
    char path[1024];
    int ok;
    bytes = test_read_file(FIXTURES "model_v2_32.cnn", &length);
    CHECK(bytes && length > 56 && get_u32(bytes + 8) == 2 && get_u32(bytes + RECORD_SIZE_AT) == 32 &&
              get_u32(bytes + LAYER_COUNT_AT) == V2_32_LAYERS,
          FIXTURES "model_v2_32.cnn: missing, or not a file of 32-byte records");
    ok = test_io_read(&io, FIXTURES "model_v2_32.io");
    CHECK(ok && io.batch == 3 && io.c == 2 && io.h == 11 && io.w == 11 && io.outputs == 3, FIXTURES "model_v2_32.io");
    if (!bytes || length <= 56 || get_u32(bytes + RECORD_SIZE_AT) != 32 || !ok || io.batch != 3 || io.outputs != 3) {
        free(bytes);
        if (ok) test_io_free(&io);
        return;
    }
    /* 32-byte records said to be 36: they no longer fill the section */
    check_patched_u32("v2_32_said_36.cnn", bytes, length, RECORD_SIZE_AT, 36, RECORD_SIZE_AT,
                      "12 layer records of 36 bytes do not fill the section's 392");
    if (cnn_model_load(&model, FIXTURES "model_v2_32.cnn", 3) != CNN_OK) {
        CHECK(0, "load: %s", model.error.message);
    } else {
        const float *out;
        CHECK(model.input.c == 2 && model.input.h == 11 && model.input.w == 11, "input shape");
        CHECK(model.layer_count == V2_32_LAYERS, "%d layers", model.layer_count);
        for (i = 0; i < V2_32_LAYERS && (int)i < model.layer_count; i++) {
            CHECK(model.layers[i].desc.type == types[i], "layer %lu is %s", (unsigned long)i,
                  cnn_layer_type_name(model.layers[i].desc.type));
            CHECK(model.layers[i].desc.ceil_mode == 0, "layer %lu in ceil mode", (unsigned long)i);
        }
        CHECK(model.layer_count == V2_32_LAYERS && model.layers[0].desc.stride == 2 && model.layers[1].desc.alpha == 0.2f &&
                  model.layers[3].desc.init == CNN_INIT_HE_UNIFORM && model.layers[7].desc.rate == 0.25f &&
                  model.layers[8].desc.init == CNN_INIT_HE_NORMAL,
              "settings");
        CHECK(name_is(&model, 0, "cat") && name_is(&model, 1, "dog") && name_is(&model, 2, "\xc3\xa9meu"), "class names %s %s %s",
              name_of(&model, 0), name_of(&model, 1), name_of(&model, 2));
        parm = find_section(bytes, length, "PARM");
        for (i = 0; parm > 0 && i < model.param_count; i++)
            if (!get_f32_bits_equal(bytes + parm + 12 + 8 + 4 * i, model.params[i])) break;
        CHECK(parm > 0 && i == model.param_count, "parameter %lu is not the file's", (unsigned long)i);
        CHECK(cnn_model_forward(&model, io.input, 3, CNN_MODE_EVAL) == CNN_OK, "forward: %s", model.error.message);
        out = cnn_model_output(&model);
        CHECK(out && test_max_abs_diff(out, io.output, 9) <= 1e-6, "the outputs are not those the older cnn.h computed (max %g)",
              out ? test_max_abs_diff(out, io.output, 9) : -1.0); /* to 1e-6, as above */

        scratch(path, sizeof path, "v2_32_again.cnn");
        CHECK(cnn_model_save(&model, path) == CNN_OK, "%s", model.error.message);
        free(bytes);
        bytes = test_read_file(path, &length);
        CHECK(bytes && length > 56 && get_u32(bytes + RECORD_SIZE_AT) == LAYER_BYTES, "saved again with other records");
        if (cnn_model_load(&again, path, 3) == CNN_OK) {
            CHECK(again.param_count == model.param_count && memcmp(again.params, model.params, sizeof(float) * model.param_count) == 0,
                  "parameters differ after saving again");
            for (i = 0; i < V2_32_LAYERS && (int)i < again.layer_count; i++)
                CHECK(memcmp(&again.layers[i].desc, &model.layers[i].desc, sizeof(cnn_layer_desc)) == 0, "layer %lu differs",
                      (unsigned long)i);
            CHECK(name_is(&again, 2, "\xc3\xa9meu"), "class names");
            cnn_model_free(&again);
        } else {
            CHECK(0, "saved again: %s", again.error.message);
        }
        cnn_model_free(&model);
    }
    free(bytes);
    test_io_free(&io);
}

/* ---------------------------------------------------------------- shapes */

/* Calling ADD must be refused with WANT and a message that contains
   NEEDLE, without adding a layer. */
#define CHECK_REFUSED_ADD(model, add, want, needle)                                                          \
    do {                                                                                                     \
        int layers_ = (model).layer_count;                                                                   \
        size_t params_ = (model).param_count;                                                                \
        cnn_result r_ = (add);                                                                               \
        CHECK(r_ == (want), "%s: result %d (%s)", #add, (int)r_, (model).error.message);                     \
        CHECK((model).error.code == (want), "%s: error.code %d", #add, (int)(model).error.code);             \
        CHECK(strstr((model).error.message, needle) != NULL, "%s: message '%s' does not mention '%s'", #add, \
              (model).error.message, needle);                                                                \
        CHECK((model).layer_count == layers_ && (model).param_count == params_, "%s: a layer was added",     \
              #add);                                                                                         \
    } while (0)
/* a layer that does not fit its input */
#define CHECK_BAD_SHAPE(model, add, needle) CHECK_REFUSED_ADD(model, add, CNN_ERROR_BAD_SHAPE, needle)
/* a setting out of range, whatever the input */
#define CHECK_BAD_SETTING(model, add, needle) CHECK_REFUSED_ADD(model, add, CNN_ERROR_INVALID_ARGUMENT, needle)

/* The last layer added has output shape (c, h, w). */
#define CHECK_OUT(model, want_c, want_h, want_w)                                                           \
    do {                                                                                                   \
        cnn_shape s_ = cnn_model_output_shape(&(model));                                                   \
        CHECK(s_.c == (want_c) && s_.h == (want_h) && s_.w == (want_w), "output (%d, %d, %d), expected "   \
              "(%d, %d, %d)", s_.c, s_.h, s_.w, want_c, want_h, want_w);                                   \
    } while (0)

/* Starts model afresh with input (c, h, w): definition errors are sticky,
   so each refusal below needs a model of its own. */
static void fresh(cnn_model *model, int c, int h, int w)
{
    cnn_model_free(model);
    cnn_model_init(model, c, h, w, 1);
}

/* Layers that cannot fit are refused (CNN_ERROR_BAD_SHAPE), settings out of
   range too (CNN_ERROR_INVALID_ARGUMENT), each with a message naming the
   problem. */
TEST(impossible_shapes_refused)
{
    cnn_model model;
    cnn_layer_desc desc;
    memset(&model, 0, sizeof model);

    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 2, 7, 1, 1), "does not fit input 4x4"); /* 4 + 2 < 7 */
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_add_conv2d(&model, 0, 3, 1, 0), "filters >= 1");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_add_conv2d(&model, 2, 3, 1, -1), "padding >= 0");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_add_conv2d(&model, 2, 0, 1, 0), "kernel >= 1");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_add_conv2d(&model, 2, 3, 0, 0), "stride >= 1"); /* 0 is not "default" here */
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_add_conv2d(&model, 2, 3, -1, 0), "stride >= 1");
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_LAYER_CONV2D;
    desc.units = 2;
    desc.kernel = 3;
    desc.stride = -2;
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_model_add(&model, &desc), "stride >= 1");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_dense(&model, 10), "flat input");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_softmax(&model), "flat input");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_max_pool(&model, 5, 5), "larger than its input 4x4");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_avg_pool(&model, 5, 1), "larger than its input 4x4");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_add_max_pool(&model, 0, 2), "size >= 1");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_add_avg_pool(&model, 2, 0), "stride >= 1");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_add_dropout(&model, 1.0f), "dropout rate");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_add_dropout(&model, -0.1f), "dropout rate");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SETTING(model, cnn_add_dropout(&model, 1.5f), "dropout rate");
    fresh(&model, 1, 4, 4);
    cnn_add_flatten(&model);
    CHECK_BAD_SETTING(model, cnn_add_dense(&model, 0), "units >= 1");
    /* an image layer after flatten or dense */
    fresh(&model, 1, 4, 4);
    cnn_add_flatten(&model);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 2, 1, 1, 0), "layer 1 (flatten) made its input a flat vector of 16");
    fresh(&model, 1, 4, 4);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 9);
    cnn_add_relu(&model);
    CHECK_BAD_SHAPE(model, cnn_add_max_pool(&model, 1, 1), "layer 2 (dense) made its input a flat vector of 9");

    /* a kernel larger than the padded input: 5 + 2 * 1 < 8, named with its settings */
    fresh(&model, 1, 5, 5);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 4, 8, 2, 1), "larger than the padded input");
    CHECK(strstr(model.error.message, "kernel 8, stride 2, padding 1") != NULL, "message: %s", model.error.message);
    /* only one side that does not fit is enough (height 9 fits a kernel of 9; width 8 does not) */
    fresh(&model, 1, 9, 8);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 4, 9, 2, 0), "9x8");
    cnn_model_free(&model);
}

/* Definition errors are sticky, as documented: after a refused layer every
   later add and the build fail with the first error and keep its message;
   cnn_model_init starts over. */
TEST(definition_errors_are_sticky)
{
    cnn_model model;
    cnn_result r;
    char first[256];
    cnn_model_init(&model, 1, 4, 4, 1);
    r = cnn_add_conv2d(&model, 2, 7, 1, 0);
    CHECK(r == CNN_ERROR_BAD_SHAPE, "conv 7x7 on 4x4: result %d", (int)r);
    snprintf(first, sizeof first, "%s", model.error.message);
    r = cnn_add_flatten(&model);
    CHECK(r == CNN_ERROR_BAD_SHAPE, "a valid add after an error: result %d", (int)r);
    r = cnn_add_dense(&model, 0);
    CHECK(r == CNN_ERROR_BAD_SHAPE, "a second bad add: result %d", (int)r);
    CHECK(strcmp(model.error.message, first) == 0, "the first message was replaced: '%s'", model.error.message);
    CHECK(model.layer_count == 0, "%d layers added after the error", model.layer_count);
    r = cnn_model_build(&model, 4);
    CHECK(r == CNN_ERROR_BAD_SHAPE && model.memory == NULL, "build after an error: result %d", (int)r);
    CHECK(strcmp(model.error.message, first) == 0, "build replaced the message: '%s'", model.error.message);
    cnn_model_free(&model);
    /* a bad input shape is a definition error too */
    r = cnn_model_init(&model, 0, 4, 4, 1);
    CHECK(r == CNN_ERROR_BAD_SHAPE, "input (0, 4, 4): result %d", (int)r);
    CHECK(strstr(model.error.message, "input shape (0, 4, 4)") != NULL, "message: %s", model.error.message);
    r = cnn_add_flatten(&model);
    CHECK(r == CNN_ERROR_BAD_SHAPE, "add after a bad init: result %d", (int)r);
    /* init starts over */
    r = cnn_model_init(&model, 1, 4, 4, 1);
    if (r == CNN_OK) r = cnn_add_flatten(&model);
    if (r == CNN_OK) r = cnn_model_build(&model, 2);
    CHECK(r == CNN_OK, "a fresh init after errors: result %d (%s)", (int)r, model.error.message);
    cnn_model_free(&model);
}

/* Output shapes inferred for layers that fit: "same" padding, stride 2,
   kernel equal to the padded input, non-square inputs, pools that floor. */
TEST(valid_shapes_inferred)
{
    cnn_model model;
    cnn_result r;

    cnn_model_init(&model, 1, 28, 28, 1);
    r = cnn_add_conv2d(&model, 6, 5, 1, 2); /* same: 28 + 4 - 5 = 27, /1 + 1 = 28 */
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 6, 28, 28);
    CHECK(model.layers[0].weight_count == 6 * 1 * 5 * 5 && model.layers[0].bias_count == 6, "conv weights %lu",
          (unsigned long)model.layers[0].weight_count);
    r = cnn_add_conv2d(&model, 8, 4, 2, 1); /* (28 + 2 - 4) / 2 + 1 = 14 */
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 8, 14, 14);
    CHECK(model.layers[1].weight_count == 8 * 6 * 4 * 4, "conv weights %lu", (unsigned long)model.layers[1].weight_count);
    cnn_model_free(&model);

    /* strides that do not tile the input are floored as PyTorch floors them:
       28 rows, kernel 3, stride 2, padding 1: (28 + 2 - 3) / 2 + 1 = 14 (the
       padded input's last row is in no window); without padding 13 */
    cnn_model_init(&model, 1, 28, 28, 1);
    r = cnn_add_conv2d(&model, 4, 3, 2, 1);
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 4, 14, 14);
    r = cnn_add_conv2d(&model, 4, 3, 2, 0); /* (14 - 3) / 2 + 1 = 6 */
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 4, 6, 6);
    cnn_model_free(&model);
    cnn_model_init(&model, 1, 28, 27, 1);
    r = cnn_add_conv2d(&model, 4, 3, 2, 0); /* 25 / 2 + 1 = 13 and 24 / 2 + 1 = 13 */
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 4, 13, 13);
    cnn_model_free(&model);

    cnn_model_init(&model, 1, 27, 27, 1);
    r = cnn_add_conv2d(&model, 4, 3, 2, 0); /* (27 - 3) / 2 + 1 = 13 */
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 4, 13, 13);
    r = cnn_add_max_pool(&model, 2, 2); /* floor((13 - 2) / 2) + 1 = 6 */
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 4, 6, 6);
    r = cnn_add_avg_pool(&model, 3, 2); /* floor((6 - 3) / 2) + 1 = 2 */
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 4, 2, 2);
    r = cnn_add_flatten(&model);
    CHECK_OUT(model, 16, 1, 1);
    r = cnn_add_dense(&model, 10);
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 10, 1, 1);
    CHECK(model.layers[4].weight_count == 160 && model.layers[4].bias_count == 10, "dense weights %lu",
          (unsigned long)model.layers[4].weight_count);
    CHECK(model.param_count == 4 * 9 + 4 + 160 + 10, "param_count %lu", (unsigned long)model.param_count);
    cnn_model_free(&model);

    /* non-square: height and width are inferred separately */
    cnn_model_init(&model, 3, 10, 12, 1);
    r = cnn_add_conv2d(&model, 2, 3, 1, 0);
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 2, 8, 10);
    r = cnn_add_max_pool(&model, 3, 3); /* floor(5/3) + 1 = 2, floor(7/3) + 1 = 3 */
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 2, 2, 3);
    cnn_model_free(&model);

    /* a kernel exactly as large as the padded input gives 1x1; a window as large as the input too */
    cnn_model_init(&model, 1, 4, 4, 1);
    r = cnn_add_conv2d(&model, 2, 6, 1, 1);
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 2, 1, 1);
    cnn_model_free(&model);
    cnn_model_init(&model, 1, 3, 3, 1);
    r = cnn_add_max_pool(&model, 3, 3);
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 1, 1, 1);
    /* a conv output of (C, 1, 1) is flat: dense may follow without flatten */
    r = cnn_add_dense(&model, 3);
    CHECK(r == CNN_OK, "%s", model.error.message);
    CHECK_OUT(model, 3, 1, 1);
    cnn_model_free(&model);
}

/* Forward passes with a bad batch, before build, or after free return an
   error code; none of them crashes, and the model still works afterwards. */
TEST(forward_errors)
{
    static float inputs[9 * 144];
    int classes[9];
    cnn_model model;
    cnn_result r;
    memset(&model, 0, sizeof model);
    r = cnn_model_forward(&model, inputs, 1, CNN_MODE_EVAL);
    CHECK(r == CNN_ERROR_STATE, "zeroed model: result %d", (int)r);

    cnn_model_init(&model, 1, 12, 12, 1);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 10);
    cnn_add_softmax(&model);
    r = cnn_model_forward(&model, inputs, 1, CNN_MODE_EVAL);
    CHECK(r == CNN_ERROR_STATE && model.error.code == CNN_ERROR_STATE, "before build: result %d", (int)r);
    CHECK(strstr(model.error.message, "not built") != NULL, "message: %s", model.error.message);
    r = cnn_model_predict(&model, inputs, 1, classes, NULL);
    CHECK(r == CNN_ERROR_STATE, "predict before build: result %d", (int)r);
    r = cnn_model_build(&model, 0);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT, "build(0): result %d", (int)r);
    r = cnn_model_build(&model, 8);
    CHECK(r == CNN_OK, "build: %s", model.error.message);
    if (r != CNN_OK) return;

    r = cnn_model_forward(&model, inputs, 0, CNN_MODE_EVAL);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT && model.error.code == CNN_ERROR_INVALID_ARGUMENT, "batch 0: result %d", (int)r);
    CHECK(strstr(model.error.message, "max_batch 8") != NULL, "message: %s", model.error.message);
    r = cnn_model_forward(&model, inputs, 9, CNN_MODE_EVAL);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT, "batch 9 > max_batch 8: result %d", (int)r);
    r = cnn_model_forward(&model, inputs, -1, CNN_MODE_EVAL);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT, "batch -1: result %d", (int)r);
    r = cnn_model_forward(&model, NULL, 1, CNN_MODE_EVAL);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT, "NULL input: result %d", (int)r);
    r = cnn_model_forward(&model, inputs, 1, (cnn_mode)7);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT, "mode 7: result %d", (int)r);
    CHECK(model.batch == 0, "a refused forward pass ran (batch %d)", model.batch);
    r = cnn_add_relu(&model);
    CHECK(r == CNN_ERROR_STATE, "adding a layer after build: result %d", (int)r);
    r = cnn_model_build(&model, 8);
    CHECK(r == CNN_ERROR_STATE, "building twice: result %d", (int)r);

    r = cnn_model_forward(&model, inputs, 8, CNN_MODE_EVAL);
    CHECK(r == CNN_OK && model.batch == 8, "batch 8 after the errors: result %d", (int)r);
    r = cnn_model_predict(&model, inputs, 9, classes, NULL); /* predict batches by itself */
    CHECK(r == CNN_OK, "predict 9: result %d", (int)r);
    cnn_model_free(&model);
    r = cnn_model_forward(&model, inputs, 1, CNN_MODE_EVAL);
    CHECK(r == CNN_ERROR_STATE, "after free: result %d", (int)r);
    CHECK(cnn_model_output(&model) == NULL, "output after free");
}

/* Names belong to the output they name: adding a layer after them drops
   them, so that no model can be saved with names it cannot load. */
TEST(class_names_dropped_when_a_layer_is_added)
{
    static const char *const three[3] = {"a", "b", "c"};
    static cnn_model model, loaded;
    cnn_model_init(&model, 1, 4, 4, 1);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 3);
    CHECK(cnn_model_set_class_names(&model, three, 3) == CNN_OK, "%s", model.error.message);
    cnn_add_dense(&model, 2);
    CHECK(model.class_name_count == 0 && cnn_model_class_name(&model, 0) == NULL, "%d names kept", model.class_name_count);
    CHECK(cnn_model_build(&model, 1) == CNN_OK, "%s", model.error.message);
    CHECK(cnn_model_save(&model, test_path("renamed.cnn")) == CNN_OK, "%s", model.error.message);
    CHECK(cnn_model_load(&loaded, test_path("renamed.cnn"), 1) == CNN_OK, "%s", loaded.error.message);
    cnn_model_free(&loaded);
    cnn_model_free(&model);
}

int main(void)
{
    RUN(class_names_dropped_when_a_layer_is_added);
    RUN(crc32_helper_is_standard);
    RUN(save_load_round_trip);
    RUN(save_load_every_layer_setting);
    RUN(save_replaces_existing_file);
    RUN(save_writes_temp_then_renames);
    RUN(save_failures_leave_nothing);
    RUN(load_rejects_foreign_files);
    RUN(load_rejects_bad_header);
    RUN(load_rejects_zero_input_with_clear_message);
    RUN(load_rejects_truncated_files);
    RUN(load_rejects_truncated_stream);
    RUN(load_rejects_trailing_bytes);
    RUN(load_rejects_bad_layers);
    RUN(load_layer_records_longer);
    RUN(load_rejects_parameter_count_mismatch);
    RUN(load_rejects_non_finite_parameters);
    RUN(load_accepts_largest_finite_parameter);
    RUN(crc_refuses_flipped_bits);
    RUN(load_sections_unknown_and_misplaced);
    RUN(class_names_set_and_refused);
    RUN(class_names_round_trip);
    RUN(class_names_from_map);
    RUN(load_rejects_bad_class_names);
    RUN(load_weights_into_built_model);
    RUN(checkpoint_round_trip_adam);
    RUN(checkpoint_round_trip_sgd_bare_state);
    RUN(checkpoint_load_refusals);
    RUN(version1_file_loads);
    RUN(version1_damage_refused);
    RUN(batch_norm_and_residual_round_trip);
    RUN(statistics_section_checked);
    RUN(checkpoint_of_batch_norm_model_resumes);
    RUN(early_stopping_restores_running_statistics);
    RUN(records_of_32_bytes_load);
    RUN(impossible_shapes_refused);
    RUN(definition_errors_are_sticky);
    RUN(valid_shapes_inferred);
    RUN(forward_errors);
    return test_report();
}
