/* test.h - the tiny harness every test program uses.

   TEST(name) { ... CHECK(condition, "printf-style message", ...); ... }
   int main(void) { RUN(name); ...; return test_report(); }

   A test passes when none of its CHECKs fails. A test that cannot run here
   says so and is counted as skipped, neither passed nor failed:
     SKIP("no %s (set EMNIST_DIR)", path);  inside a TEST: prints
                                  "skip name: no ..." and returns from it
     RUN_SKIPPED(name, "reason");  in main, instead of RUN(name): the test
                                  is not run (nor needs to be compiled)
   The last line a program prints is "RESULT <passed> <failed> <skipped>",
   which tests/run.sh adds up. Include it after cnn.h: make_random_dataset
   uses its types. */
#ifndef CNN_TEST_H
#define CNN_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The counts of the program's tests, and the state of the one running. */
static struct {
    int passed, failed, skipped;
    int current_failed, current_skipped; /* CHECKs failed, SKIP called */
    char skip_reason[2048];
} test_state;

#define TEST(name) static void name(void)

#define CHECK(condition, ...)                                              \
    do {                                                                   \
        if (!(condition)) {                                                \
            test_state.current_failed++;                                   \
            printf("    %s:%d: check failed: %s: ", __FILE__, __LINE__, #condition); \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
        }                                                                  \
    } while (0)

/* Ends the current test as skipped, with a printf-style reason. A CHECK
   that failed before it still fails the test. */
#define SKIP(...)                                                          \
    do {                                                                   \
        snprintf(test_state.skip_reason, sizeof test_state.skip_reason, __VA_ARGS__); \
        test_state.current_skipped = 1;                                    \
        return;                                                            \
    } while (0)

#define RUN(name)                                                          \
    do {                                                                   \
        test_state.current_failed = test_state.current_skipped = 0;        \
        name();                                                            \
        if (test_state.current_failed) {                                   \
            test_state.failed++;                                           \
            printf("FAIL %s\n", #name);                                    \
        } else if (test_state.current_skipped) {                           \
            test_state.skipped++;                                          \
            printf("skip %s: %s\n", #name, test_state.skip_reason);        \
        } else {                                                           \
            test_state.passed++;                                           \
            printf("ok   %s\n", #name);                                    \
        }                                                                  \
        fflush(stdout);                                                    \
    } while (0)

#define RUN_SKIPPED(name, reason)                                          \
    do {                                                                   \
        test_state.skipped++;                                              \
        printf("skip %s: %s\n", #name, reason);                            \
        fflush(stdout);                                                    \
    } while (0)

static inline int test_report(void)
{
    printf("RESULT %d %d %d\n", test_state.passed, test_state.failed, test_state.skipped);
    return test_state.failed ? 1 : 0;
}

/* EXPECT(call, want, error): the call must return want; where it has a
   cnn_error (error is not NULL), that must hold the same code and a message. */
#define EXPECT(call, want, error) test_expect((call), (want), (error), #call, __LINE__)

static inline void test_expect(cnn_result got, cnn_result want, const cnn_error *error, const char *call, int line)
{
    if (got != want) {
        test_state.current_failed++;
        printf("    line %d: %s returned %d (%s), expected %d (%s)\n", line, call, (int)got, cnn_result_string(got), (int)want,
               cnn_result_string(want));
    } else if (error && (error->code != want || error->message[0] == '\0')) {
        test_state.current_failed++;
        printf("    line %d: %s: its cnn_error holds code %d and message '%s'\n", line, call, (int)error->code, error->message);
    }
}

/* Writes text to a file in the test's scratch folder and returns its path.
   The folder comes from $TEST_TMP (set by tests/run.sh), else /tmp. */
static inline const char *test_write_file(const char *name, const void *bytes, size_t length)
{
    static char path[1024];
    const char *dir = getenv("TEST_TMP");
    FILE *file;
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/tmp", name);
    file = fopen(path, "wb");
    if (!file) {
        printf("    cannot create %s\n", path);
        return path;
    }
    fwrite(bytes, 1, length, file);
    fclose(file);
    return path;
}

static inline const char *test_path(const char *name)
{
    static char path[1024];
    const char *dir = getenv("TEST_TMP");
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/tmp", name);
    return path;
}

/* The EMNIST balanced CSV file of a split ("train" or "test") in
   $EMNIST_DIR (default data), under either of its names: emnist47-SPLIT.csv
   or Kaggle's emnist-balanced-SPLIT.csv (tests/scripts/lib.sh's emnist_csv
   looks for the same). Returns 1 with its path in path; 0 when neither
   file is there, with path saying what was looked for, for a SKIP:
       if (!test_emnist_path(path, sizeof path, "train")) SKIP("%s", path); */
static inline int test_emnist_path(char *path, size_t size, const char *split)
{
    static const char *const prefixes[2] = {"emnist47-", "emnist-balanced-"};
    const char *dir = getenv("EMNIST_DIR");
    FILE *file;
    int i;
    if (!dir || !*dir) dir = "data";
    for (i = 0; i < 2; i++) {
        snprintf(path, size, "%s/%s%s.csv", dir, prefixes[i], split);
        if ((file = fopen(path, "rb")) != NULL) {
            fclose(file);
            return 1;
        }
    }
    snprintf(path, size, "no emnist47-%s.csv or emnist-balanced-%s.csv in %s (set EMNIST_DIR)", split, split, dir);
    return 0;
}

/* The whole file at path, malloc'ed (free it) with a '\0' after its bytes,
   so text can be read as a string; *size (unless size is NULL) its length,
   0 when it cannot be read, and then NULL. */
static inline unsigned char *test_read_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    unsigned char *bytes = NULL;
    long length;
    size_t got = 0;
    if (file && fseek(file, 0, SEEK_END) == 0 && (length = ftell(file)) >= 0 && fseek(file, 0, SEEK_SET) == 0) {
        bytes = (unsigned char *)malloc((size_t)length + 1);
        if (bytes) {
            got = fread(bytes, 1, (size_t)length, file);
            bytes[got] = '\0';
        }
    }
    if (file) fclose(file);
    if (size) *size = got;
    return bytes;
}

/* The largest |a - b| over n values. */
static inline double test_max_abs_diff(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > worst || d != d) worst = d;
    }
    return worst;
}

/* x[i] uniform in [lo, hi), n values drawn from rng. */
static inline void test_fill_uniform(cnn_rng *rng, float *x, size_t n, float lo, float hi)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] = lo + (hi - lo) * cnn_rng_uniform(rng);
}

/* A batch of inputs and a model's outputs for them, as the interop tests
   exchange them with PyTorch and ONNX Runtime (tests/interop/README.md):
   "CNNIO1\n\0", u32 batch, c, h, w, outputs, then float32 input and output,
   all little-endian. */
typedef struct test_io {
    unsigned batch, c, h, w, outputs;
    float *input;   /* (batch, c, h, w) */
    float *output;  /* (batch, outputs) */
} test_io;

static inline void test_io_free(test_io *io)
{
    free(io->input);
    free(io->output);
    memset(io, 0, sizeof *io);
}

static inline unsigned test_u32(const unsigned char *at)
{
    return (unsigned)at[0] | (unsigned)at[1] << 8 | (unsigned)at[2] << 16 | (unsigned)at[3] << 24;
}

static inline float test_f32(const unsigned char *at)
{
    unsigned bits = test_u32(at);
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static inline void test_put_u32(unsigned char *at, unsigned value)
{
    at[0] = (unsigned char)value; at[1] = (unsigned char)(value >> 8);
    at[2] = (unsigned char)(value >> 16); at[3] = (unsigned char)(value >> 24);
}

/* Reads a .io file; 0 (with a line saying why) when it cannot. */
static inline int test_io_read(test_io *io, const char *path)
{
    size_t size, inputs, outputs, i;
    unsigned char *bytes = test_read_file(path, &size);
    memset(io, 0, sizeof *io);
    if (!bytes || size < 28 || memcmp(bytes, "CNNIO1\n\0", 8) != 0) {
        printf("    %s: missing or not a .io file\n", path);
        free(bytes);
        return 0;
    }
    io->batch = test_u32(bytes + 8); io->c = test_u32(bytes + 12); io->h = test_u32(bytes + 16);
    io->w = test_u32(bytes + 20); io->outputs = test_u32(bytes + 24);
    inputs = (size_t)io->batch * io->c * io->h * io->w;
    outputs = (size_t)io->batch * io->outputs;
    io->input = (float *)malloc(inputs * sizeof(float) + 1);
    io->output = (float *)malloc(outputs * sizeof(float) + 1);
    if (!io->input || !io->output || size != 28 + 4 * (inputs + outputs)) {
        printf("    %s: %lu bytes do not match its header\n", path, (unsigned long)size);
        free(bytes);
        test_io_free(io);
        return 0;
    }
    for (i = 0; i < inputs; i++) io->input[i] = test_f32(bytes + 28 + 4 * i);
    for (i = 0; i < outputs; i++) io->output[i] = test_f32(bytes + 28 + 4 * (inputs + i));
    free(bytes);
    return 1;
}

/* Writes a .io file of batch inputs of the model's input shape and their
   outputs; 0 when it cannot. */
static inline int test_io_write(const char *path, const cnn_model *model, int batch, const float *input, const float *output)
{
    cnn_shape out = cnn_model_output_shape(model);
    size_t inputs = (size_t)batch * cnn_shape_count(model->input), outputs = (size_t)batch * cnn_shape_count(out), i;
    unsigned char header[28], value[4];
    FILE *file = fopen(path, "wb");
    int ok = file != NULL;
    memcpy(header, "CNNIO1\n\0", 8);
    test_put_u32(header + 8, (unsigned)batch);
    test_put_u32(header + 12, (unsigned)model->input.c);
    test_put_u32(header + 16, (unsigned)model->input.h);
    test_put_u32(header + 20, (unsigned)model->input.w);
    test_put_u32(header + 24, (unsigned)cnn_shape_count(out));
    ok = ok && fwrite(header, 1, sizeof header, file) == sizeof header;
    for (i = 0; ok && i < inputs + outputs; i++) {
        float x = i < inputs ? input[i] : output[i - inputs];
        unsigned bits;
        memcpy(&bits, &x, sizeof bits);
        test_put_u32(value, bits);
        ok = fwrite(value, 1, 4, file) == 4;
    }
    if (file && fclose(file) != 0) ok = 0;
    if (!ok) printf("    cannot write %s\n", path);
    return ok;
}

/* The largest |a - b| / max(1, |b|) over n values: the interop tolerance
   (1e-5) is absolute for probabilities and relative for large logits. */
static inline double test_max_scaled_diff(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        double scale = fabs((double)b[i]) > 1.0 ? fabs((double)b[i]) : 1.0;
        double d = fabs((double)a[i] - (double)b[i]) / scale;
        if (d > worst || d != d) worst = d;
    }
    return worst;
}

/* Sets a built model's weights to U(-a, a), a = sqrt(6 / fan_in) (He
   uniform), and its biases to U(-0.2, 0.2), from seed: far from a fresh
   initialisation, whose softmax outputs are about 1 / classes for any
   input, so that a comparison of outputs sees every weight. */
static inline void test_randomise_weights(cnn_model *model, uint64_t seed)
{
    cnn_rng rng;
    int l;
    cnn_rng_seed(&rng, seed);
    for (l = 0; l < model->layer_count; l++) {
        cnn_layer *layer = &model->layers[l];
        float a;
        if (!layer->weight_count) continue;
        a = (float)sqrt(6.0 / (double)(layer->weight_count / layer->bias_count));
        test_fill_uniform(&rng, layer->weight, layer->weight_count, -a, a);
        test_fill_uniform(&rng, layer->bias, layer->bias_count, -0.2f, 0.2f);
    }
}

/* A model of every layer type and setting (3, 10, 10) -> 4 classes, not
   built, weights from seed: what test_interop sends through safetensors
   (every setting its metadata records) and test_onnx through ONNX Runtime
   (every operator its graph writes). */
static inline void test_add_every_layer(cnn_model *model, uint64_t seed)
{
    cnn_layer_desc conv;
    cnn_model_init(model, 3, 10, 10, seed);
    memset(&conv, 0, sizeof conv);
    conv.type = CNN_LAYER_CONV2D; conv.units = 4; conv.kernel = 3; conv.padding = 1; conv.init = CNN_INIT_HE_NORMAL;
    cnn_model_add(model, &conv);
    cnn_add_leaky_relu(model, 0.1f);
    cnn_add_max_pool(model, 2, 2);           /* (4, 5, 5) */
    cnn_add_conv2d(model, 5, 3, 2, 1);       /* (5, 3, 3) */
    cnn_add_sigmoid(model);
    cnn_add_relu(model);
    cnn_add_avg_pool(model, 3, 1);           /* (5, 1, 1) */
    cnn_add_flatten(model);
    cnn_add_dense(model, 6);
    cnn_add_tanh(model);
    cnn_add_dropout(model, 0.3f);
    cnn_add_dense(model, 4);
    cnn_add_softmax(model);
}

#ifndef TEST_OLD_CNN_H /* tests/fixtures/make_old_models.c builds against a cnn.h without these layers */
/* A model of the layers test_add_every_layer leaves out, (3, 9, 9) -> 4
   classes, not built, weights from seed: batch norm on images and on a
   flat vector, residual blocks (an identity, a projection with stride 2, a
   block inside a block), padded pools in ceil mode, global average pooling
   and a dense layer straight on its (C, 1, 1). For test_model_file (files),
   test_interop (safetensors; tests/interop/gen.py builds the same in
   PyTorch) and test_onnx (ONNX Runtime). */
static inline void test_add_residual_layers(cnn_model *model, uint64_t seed)
{
    cnn_layer_desc d;
    cnn_model_init(model, 3, 9, 9, seed);
    memset(&d, 0, sizeof d);
    d.type = CNN_LAYER_CONV2D; d.units = 4; d.kernel = 3; d.padding = 1; d.init = CNN_INIT_HE_NORMAL;
    cnn_model_add(model, &d);                /* (4, 9, 9) */
    cnn_add_batch_norm(model);
    cnn_add_relu(model);
    memset(&d, 0, sizeof d);
    d.type = CNN_LAYER_MAX_POOL; d.kernel = 3; d.stride = 2; d.padding = 1; d.ceil_mode = 1;
    cnn_model_add(model, &d);                /* (4, 5, 5) */
    cnn_add_residual_begin(model);
    cnn_add_conv2d(model, 4, 3, 1, 1);
    cnn_add_batch_norm(model);
    cnn_add_relu(model);
    cnn_add_conv2d(model, 4, 3, 1, 1);
    cnn_add_batch_norm(model);
    cnn_add_residual_end(model, CNN_INIT_DEFAULT);     /* + x */
    cnn_add_relu(model);
    cnn_add_residual_begin(model);
    cnn_add_conv2d(model, 6, 3, 2, 1);       /* (6, 3, 3) */
    cnn_add_batch_norm(model);
    cnn_add_residual_begin(model);
    cnn_add_leaky_relu(model, 0.1f);
    cnn_add_residual_end(model, CNN_INIT_DEFAULT);     /* + x, inside the outer block */
    cnn_add_residual_end(model, CNN_INIT_HE_NORMAL);   /* + conv1x1 stride 2 (x) */
    memset(&d, 0, sizeof d);
    d.type = CNN_LAYER_AVG_POOL; d.kernel = 2; d.stride = 2; d.padding = 1; d.ceil_mode = 1;
    cnn_model_add(model, &d);                /* (6, 2, 2): a third window would start in the padding */
    cnn_add_global_avg_pool(model);          /* (6, 1, 1) */
    cnn_add_dense(model, 5);
    cnn_add_batch_norm(model);               /* on a flat vector */
    cnn_add_relu(model);
    cnn_add_dense(model, 4);
    cnn_add_softmax(model);
}

/* Gives a built model's batch norm layers running statistics far from
   their start (means U(-0.5, 0.5), variances U(0.5, 2)) and a count of
   batches, from seed: as if trained, so that a file or another tool that
   dropped or mixed them up would show. */
static inline void test_randomise_statistics(cnn_model *model, uint64_t seed)
{
    cnn_rng rng;
    int l;
    cnn_rng_seed(&rng, seed);
    for (l = 0; l < model->layer_count; l++) {
        cnn_layer *layer = &model->layers[l];
        if (layer->desc.type != CNN_LAYER_BATCH_NORM) continue;
        test_fill_uniform(&rng, layer->running_mean, (size_t)layer->in.c, -0.5f, 0.5f);
        test_fill_uniform(&rng, layer->running_var, (size_t)layer->in.c, 0.5f, 2.0f);
        layer->batches_tracked = 1000 + (uint64_t)l;
    }
}
#endif

/* A dataset of count random images (1, side, side) with random labels below
   classes, from seed; 0 when out of memory. */
static inline int make_random_dataset(cnn_dataset *data, int count, int side, int classes, uint64_t seed)
{
    cnn_rng rng;
    size_t i;
    memset(data, 0, sizeof *data);
    cnn_rng_seed(&rng, seed);
    if (cnn_tensor_alloc(&data->images, count, 1, side, side) != CNN_OK) return 0;
    data->labels = (int *)malloc((size_t)count * sizeof(int));
    if (!data->labels) return 0;
    for (i = 0; i < cnn_tensor_count(&data->images); i++) data->images.data[i] = cnn_rng_uniform(&rng);
    for (i = 0; i < (size_t)count; i++) data->labels[i] = (int)cnn_rng_below(&rng, (uint32_t)classes);
    data->count = count;
    data->num_classes = classes;
    return 1;
}

#endif
