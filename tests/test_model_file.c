/* test_model_file.c - saving and loading models, and shape errors.

   A saved model must load back bit for bit; a damaged or foreign file must be
   refused with CNN_ERROR_BAD_MODEL_FILE, the byte where it goes wrong and a
   message, leaving the model freed. Layers that cannot fit their input are
   refused when added, with a message naming the problem; the shapes of
   layers that fit are inferred exactly. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

/* ---------------------------------------------------------------- helpers */

/* The small model used throughout: input 1x12x12, conv 4@3x3 pad 1, ReLU,
   max-pool 2, flatten, dense 10, softmax. */
#define SMALL_LAYERS 6
#define SMALL_PARAMS (4 * 1 * 3 * 3 + 4 + 4 * 6 * 6 * 10 + 10) /* 1490 */
#define LAYER_AT(i) (28 + 32 * (i))                            /* byte of layer record i */
#define COUNT_AT LAYER_AT(SMALL_LAYERS)                        /* byte of the u64 parameter count */
#define PARAMS_AT (COUNT_AT + 8)                               /* byte of the first parameter */
#define SMALL_FILE_BYTES (PARAMS_AT + 4 * SMALL_PARAMS)

static cnn_result small_model(cnn_model *model, int max_batch)
{
    cnn_result r = cnn_model_init(model, 1, 12, 12, 42);
    if (r == CNN_OK) r = cnn_add_conv2d(model, 4, 3, 1, 1);
    if (r == CNN_OK) r = cnn_add_relu(model);
    if (r == CNN_OK) r = cnn_add_max_pool(model, 2, 2);
    if (r == CNN_OK) r = cnn_add_flatten(model);
    if (r == CNN_OK) r = cnn_add_dense(model, 10);
    if (r == CNN_OK) r = cnn_add_softmax(model);
    if (r == CNN_OK) r = cnn_model_build(model, max_batch);
    return r;
}

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

/* Whether the little-endian float32 at `at` has the same bits as value. */
static int get_f32_bits_equal(const unsigned char *at, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return get_u32(at) == bits;
}

/* The bytes of the small model saved to a file (malloc'd; free it). */
static unsigned char *small_model_bytes(size_t *length)
{
    cnn_model model;
    char path[1024];
    unsigned char *bytes;
    scratch(path, sizeof path, "small.cnn");
    *length = 0;
    if (small_model(&model, 4) != CNN_OK || cnn_model_save(&model, path) != CNN_OK) {
        printf("    cannot save the small model: %s\n", model.error.message);
        cnn_model_free(&model);
        return NULL;
    }
    cnn_model_free(&model);
    bytes = test_read_file(path, length);
    return bytes;
}

/* The model is freed: no memory, no layers; freeing it again is safe. */
static void check_freed(cnn_model *model, const char *what)
{
    CHECK(model->memory == NULL && model->int_memory == NULL, "%s: model memory not freed", what);
    CHECK(model->params == NULL && model->grads == NULL, "%s: params not NULL", what);
    CHECK(model->layer_count == 0 && model->param_count == 0, "%s: %d layers, %lu params left", what,
          model->layer_count, (unsigned long)model->param_count);
    cnn_model_free(model);
    cnn_model_free(model);
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
    CHECK(r == CNN_ERROR_BAD_MODEL_FILE, "%s: result %d (%s)", name, (int)r, model.error.message);
    CHECK(model.error.code == CNN_ERROR_BAD_MODEL_FILE, "%s: error.code %d", name, (int)model.error.code);
    CHECK(model.error.byte == want_byte, "%s: error.byte %lld, expected %lld (%s)", name, model.error.byte, want_byte,
          model.error.message);
    CHECK(model.error.message[0] != '\0', "%s: no message", name);
    CHECK(strstr(model.error.message, needle) != NULL, "%s: message '%s' does not mention '%s'", name,
          model.error.message, needle);
    check_freed(&model, name);
}

/* A copy of the small model's bytes with one u32 (or f32) replaced, refused. */
static void check_patched_u32(const char *name, const unsigned char *good, size_t length, size_t at, uint32_t value,
                              long long want_byte, const char *needle)
{
    unsigned char *bad = (unsigned char *)malloc(length);
    if (!bad) return;
    memcpy(bad, good, length);
    put_u32(bad + at, value);
    check_refused(name, bad, length, want_byte, needle);
    free(bad);
}

/* ---------------------------------------------------------------- save and load */

/* Save then load gives the same architecture, the same parameters bit for
   bit, the same summary, and bit-identical predictions and probabilities
   (on 11 inputs, more than one batch of 8). */
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
        CHECK(get_u32(bytes + 8) == 1, "version %lu", (unsigned long)get_u32(bytes + 8));
        CHECK(get_u32(bytes + 12) == 1 && get_u32(bytes + 16) == 12 && get_u32(bytes + 20) == 12, "input shape");
        CHECK(get_u32(bytes + 24) == SMALL_LAYERS, "layer count %lu", (unsigned long)get_u32(bytes + 24));
        CHECK(get_u32(bytes + LAYER_AT(0)) == CNN_LAYER_CONV2D && get_u32(bytes + LAYER_AT(0) + 4) == 4 &&
                  get_u32(bytes + LAYER_AT(0) + 8) == 3 && get_u32(bytes + LAYER_AT(0) + 16) == 1,
              "conv2d record");
        CHECK(get_u32(bytes + LAYER_AT(4)) == CNN_LAYER_DENSE && get_u32(bytes + LAYER_AT(4) + 4) == 10, "dense record");
        CHECK(get_u32(bytes + COUNT_AT) == SMALL_PARAMS && get_u32(bytes + COUNT_AT + 4) == 0, "parameter count");
        CHECK(get_f32_bits_equal(bytes + PARAMS_AT, model.params[0]), "the first parameter is not params[0]");
        CHECK(get_f32_bits_equal(bytes + length - 4, model.params[SMALL_PARAMS - 1]), "the last parameter differs");
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

/* Damage to the header: magic, version, input shape, layer count. */
TEST(load_rejects_bad_header)
{
    size_t length;
    unsigned char *good = small_model_bytes(&length);
    CHECK(good && length == SMALL_FILE_BYTES, "could not save the small model");
    if (!good || length != SMALL_FILE_BYTES) {
        free(good);
        return;
    }
    check_patched_u32("magic_zip.cnn", good, length, 0, 0x04034b50u, 0, "magic"); /* "PK\3\4" */
    check_patched_u32("magic_lf.cnn", good, length, 4, 0x0a1a0a0au, 0, "magic");  /* the CR became LF */
    check_patched_u32("version2.cnn", good, length, 8, 2, 8, "version");
    check_patched_u32("version0.cnn", good, length, 8, 0, 8, "version");
    check_patched_u32("input_huge.cnn", good, length, 16, 1000000, 16, "input");
    check_patched_u32("layers0.cnn", good, length, 24, 0, 24, "layers");
    check_patched_u32("layers65.cnn", good, length, 24, CNN_MAX_LAYERS + 1, 24, "layers");
    /* one layer more than the file holds: the parameter count (1490) and the
       first parameters (zeroed here) are read as layer 7, of unknown type 1490 */
    memset(good + PARAMS_AT, 0, length - PARAMS_AT);
    check_patched_u32("layers7.cnn", good, length, 24, SMALL_LAYERS + 1, LAYER_AT(SMALL_LAYERS), "layer 7");
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
    put_u32(good + 12, 0); /* channels 0 */
    r = cnn_model_load(&model, test_write_file("channels0.cnn", good, length), 4);
    CHECK(r == CNN_ERROR_BAD_MODEL_FILE, "result %d", (int)r);
    CHECK(model.error.byte == 12, "error.byte %lld, expected 12", model.error.byte);
    snprintf(expected, sizeof expected, "'%s': input shape (0, 12, 12) is not valid", test_path("channels0.cnn"));
    CHECK(strncmp(model.error.message, expected, strlen(expected)) == 0, "message '%s', expected it to start with '%s'",
          model.error.message, expected);
    check_freed(&model, "channels 0");
    free(good);
}

/* Truncated at several offsets: inside the header, inside layer records,
   inside the parameter count, inside the parameters, one byte short. The
   byte reported is where the missing part starts (the file size when the
   parameters are short). */
TEST(load_rejects_truncated_files)
{
    size_t length;
    unsigned char *good = small_model_bytes(&length);
    if (!good) return;
    check_refused("cut8.cnn", good, 8, 8, "too short");
    check_refused("cut27.cnn", good, 27, 27, "too short");
    check_refused("cut28.cnn", good, 28, LAYER_AT(0), "layer 1");
    check_refused("cut40.cnn", good, 40, LAYER_AT(0), "layer 1");
    check_refused("cut_layer3.cnn", good, LAYER_AT(2) + 31, LAYER_AT(2), "layer 3");
    check_refused("cut_count.cnn", good, COUNT_AT + 4, COUNT_AT, "parameter count");
    check_refused("cut_params.cnn", good, PARAMS_AT + 10, PARAMS_AT + 10, "truncated");
    check_refused("cut_middle.cnn", good, PARAMS_AT + 4 * 700 + 2, PARAMS_AT + 4 * 700 + 2, "truncated");
    check_refused("cut_last.cnn", good, length - 1, (long long)length - 1, "truncated");
    free(good);
}

/* One byte too many is refused too, at the byte where the extra data starts. */
TEST(load_rejects_trailing_byte)
{
    size_t length;
    unsigned char *good = small_model_bytes(&length), *longer;
    if (!good) return;
    longer = (unsigned char *)malloc(length + 1);
    if (longer) {
        memcpy(longer, good, length);
        longer[length] = 0;
        check_refused("trailing.cnn", longer, length + 1, (long long)length, "trailing");
        free(longer);
    }
    free(good);
}

/* Layer records that describe no valid layer: an unknown type, a shape that
   cannot fit (conv kernel 99 on 12x12), a negative setting, a layer that
   does not fit after the one before it; reported at the record's first byte. */
TEST(load_rejects_bad_layers)
{
    size_t length;
    unsigned char *good = small_model_bytes(&length);
    if (!good) return;
    check_patched_u32("type99.cnn", good, length, LAYER_AT(1), 99, LAYER_AT(1), "unknown type");
    check_patched_u32("type0.cnn", good, length, LAYER_AT(1), CNN_LAYER_NONE, LAYER_AT(1), "unknown type");
    check_patched_u32("type12.cnn", good, length, LAYER_AT(3), CNN_LAYER_TYPE_COUNT, LAYER_AT(3), "unknown type");
    check_patched_u32("kernel99.cnn", good, length, LAYER_AT(0) + 8, 99, LAYER_AT(0), "kernel 99");
    check_patched_u32("stride2.cnn", good, length, LAYER_AT(0) + 12, 2, LAYER_AT(0), "stride");
    check_patched_u32("units_negative.cnn", good, length, LAYER_AT(0) + 4, 0xffffffffu, LAYER_AT(0) + 4, "negative");
    check_patched_u32("init9.cnn", good, length, LAYER_AT(0) + 20, 9, LAYER_AT(0), "initialiser");
    /* dense (layer 5) straight after the pool: flatten turned into ReLU */
    check_patched_u32("no_flatten.cnn", good, length, LAYER_AT(3), CNN_LAYER_RELU, LAYER_AT(4), "flat");
    {
        /* dropout rate 1.0 cannot have been saved by cnn_model_save */
        unsigned char *bad = (unsigned char *)malloc(length);
        if (bad) {
            memcpy(bad, good, length);
            put_u32(bad + LAYER_AT(1), CNN_LAYER_DROPOUT);
            put_f32(bad + LAYER_AT(1) + 28, 1.0f);
            check_refused("dropout1.cnn", bad, length, LAYER_AT(1), "dropout rate");
            free(bad);
        }
    }
    free(good);
}

/* A parameter count that disagrees with the layers, written directly or
   implied by a layer that fits but has other weights (kernel 5, pad 2). */
TEST(load_rejects_parameter_count_mismatch)
{
    size_t length;
    unsigned char *good = small_model_bytes(&length), *bad;
    if (!good) return;
    check_patched_u32("count_plus1.cnn", good, length, COUNT_AT, SMALL_PARAMS + 1, COUNT_AT, "parameters");
    check_patched_u32("count_high.cnn", good, length, COUNT_AT + 4, 1, COUNT_AT, "parameters");
    bad = (unsigned char *)malloc(length);
    if (bad) {
        memcpy(bad, good, length);
        put_u32(bad + LAYER_AT(0) + 8, 5);  /* kernel 5 */
        put_u32(bad + LAYER_AT(0) + 16, 2); /* padding 2: still 12x12, but 4*25+4 conv parameters */
        check_refused("kernel5.cnn", bad, length, COUNT_AT, "parameters");
        free(bad);
    }
    free(good);
}

/* A NaN or infinite parameter is refused at its byte, after the model was
   already built: the model must still end up freed. */
TEST(load_rejects_non_finite_parameters)
{
    size_t length;
    unsigned char *good = small_model_bytes(&length), *bad;
    if (!good) return;
    bad = (unsigned char *)malloc(length);
    if (!bad) {
        free(good);
        return;
    }
    memcpy(bad, good, length);
    put_f32(bad + PARAMS_AT + 4 * 5, NAN);
    check_refused("nan.cnn", bad, length, PARAMS_AT + 4 * 5, "parameter 5");
    memcpy(bad, good, length);
    put_f32(bad + PARAMS_AT + 4 * (SMALL_PARAMS - 1), -INFINITY);
    check_refused("inf.cnn", bad, length, PARAMS_AT + 4 * (SMALL_PARAMS - 1), "not a finite number");
    free(bad);
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

/* ---------------------------------------------------------------- shapes */

/* Calling ADD must be refused with CNN_ERROR_BAD_SHAPE and a message that
   contains NEEDLE, without adding a layer. */
#define CHECK_BAD_SHAPE(model, add, needle)                                                                  \
    do {                                                                                                     \
        int layers_ = (model).layer_count;                                                                   \
        size_t params_ = (model).param_count;                                                                \
        cnn_result r_ = (add);                                                                               \
        CHECK(r_ == CNN_ERROR_BAD_SHAPE, "%s: result %d (%s)", #add, (int)r_, (model).error.message);        \
        CHECK((model).error.code == CNN_ERROR_BAD_SHAPE, "%s: error.code %d", #add, (int)(model).error.code); \
        CHECK(strstr((model).error.message, needle) != NULL, "%s: message '%s' does not mention '%s'", #add, \
              (model).error.message, needle);                                                                \
        CHECK((model).layer_count == layers_ && (model).param_count == params_, "%s: a layer was added",     \
              #add);                                                                                         \
    } while (0)

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

/* Layers that cannot fit are refused, each with a message naming the problem. */
TEST(impossible_shapes_refused)
{
    cnn_model model;
    cnn_layer_desc desc;
    memset(&model, 0, sizeof model);

    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 2, 7, 1, 1), "does not fit input 4x4"); /* 4 + 2 < 7 */
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 0, 3, 1, 0), "filters >= 1");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 2, 3, 1, -1), "padding >= 0");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 2, 0, 1, 0), "kernel >= 1");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 2, 3, 0, 0), "stride >= 1"); /* 0 is not "default" here */
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 2, 3, -1, 0), "stride >= 1");
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_LAYER_CONV2D;
    desc.units = 2;
    desc.kernel = 3;
    desc.stride = -2;
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_model_add(&model, &desc), "stride >= 1");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_dense(&model, 10), "flat input");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_softmax(&model), "flat input");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_max_pool(&model, 5, 5), "larger than its input 4x4");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_avg_pool(&model, 5, 1), "larger than its input 4x4");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_max_pool(&model, 0, 2), "size >= 1");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_avg_pool(&model, 2, 0), "stride >= 1");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_dropout(&model, 1.0f), "dropout rate");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_dropout(&model, -0.1f), "dropout rate");
    fresh(&model, 1, 4, 4);
    CHECK_BAD_SHAPE(model, cnn_add_dropout(&model, 1.5f), "dropout rate");
    fresh(&model, 1, 4, 4);
    cnn_add_flatten(&model);
    CHECK_BAD_SHAPE(model, cnn_add_dense(&model, 0), "units >= 1");

    /* strides that do not tile the input: (28 - 3 + 0) = 25 and (28 - 3 + 2) = 27 are odd */
    fresh(&model, 1, 28, 28);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 4, 3, 2, 0), "divisible by the stride");
    CHECK(strstr(model.error.message, "kernel 3, stride 2, padding 0") != NULL, "message: %s", model.error.message);
    fresh(&model, 1, 28, 28);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 4, 3, 2, 1), "divisible by the stride");
    CHECK(strstr(model.error.message, "kernel 3, stride 2, padding 1") != NULL, "message: %s", model.error.message);

    /* only one side that does not fit is enough (height 28: 25 is odd; width 27: 24 is even) */
    fresh(&model, 1, 28, 27);
    CHECK_BAD_SHAPE(model, cnn_add_conv2d(&model, 4, 3, 2, 0), "28x27");
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

int main(void)
{
    RUN(save_load_round_trip);
    RUN(save_load_every_layer_setting);
    RUN(save_replaces_existing_file);
    RUN(save_writes_temp_then_renames);
    RUN(save_failures_leave_nothing);
    RUN(load_rejects_foreign_files);
    RUN(load_rejects_bad_header);
    RUN(load_rejects_zero_input_with_clear_message);
    RUN(load_rejects_truncated_files);
    RUN(load_rejects_trailing_byte);
    RUN(load_rejects_bad_layers);
    RUN(load_rejects_parameter_count_mismatch);
    RUN(load_rejects_non_finite_parameters);
    RUN(load_accepts_largest_finite_parameter);
    RUN(impossible_shapes_refused);
    RUN(definition_errors_are_sticky);
    RUN(valid_shapes_inferred);
    RUN(forward_errors);
    return test_report();
}
