/* ONNX export: the graph's operators read back from the protocol buffer,
   and the exported LeNet-5, seed MLP, seed CNN, a model with every layer
   type, one of batch norm, residual blocks and padded pools in ceil mode
   (test.h's test_add_residual_layers) and five at the edges of the graph
   writer run in ONNX Runtime (onnxruntime-web on Node.js, installed by
   tests/onnx/setup.sh into build/npm) with the outputs cnn.h computes,
   within 1e-5. onnx.checker (Debian's python3-onnx) checks the files too
   when it is installed. Without Node.js the ONNX Runtime test is skipped;
   with CNN_REQUIRE_ONNX_RUNTIME=1 (CI) it fails instead. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"
#include "../examples/seed_models.h"
#include <sys/wait.h>

#define BATCH 4

/* ---------------------------------------------------------------- reading protocol buffers back */

/* Reads a varint at *at (below end); 0 when it runs past end. */
static int pb_varint(const unsigned char **at, const unsigned char *end, uint64_t *value)
{
    int shift = 0;
    *value = 0;
    while (*at < end && shift < 64) {
        unsigned char byte = *(*at)++;
        *value |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) return 1;
        shift += 7;
    }
    return 0;
}

/* The next field of a message: its number, and for a length-delimited
   field its bytes, else its integer value. 0 at the end or when malformed. */
static int pb_field(const unsigned char **at, const unsigned char *end, unsigned *field, const unsigned char **bytes,
                    uint64_t *value)
{
    uint64_t key;
    if (*at >= end || !pb_varint(at, end, &key)) return 0;
    *field = (unsigned)(key >> 3);
    switch (key & 7) {
    case 0: return pb_varint(at, end, value);
    case 5:
        if (end - *at < 4) return 0;
        *at += 4;
        return 1;
    case 2:
        if (!pb_varint(at, end, value) || *value > (uint64_t)(end - *at)) return 0;
        *bytes = *at;
        *at += *value;
        return 1;
    }
    return 0;
}

/* "ir 8 opset 13: Conv Relu ..." for a model file's bytes. */
static void describe_onnx(const unsigned char *bytes, size_t size, char *out, size_t out_size)
{
    const unsigned char *at = bytes, *end = bytes + size, *sub;
    uint64_t value, ir = 0, opset = 0;
    unsigned field;
    size_t used;
    out[0] = '\0';
    used = 0;
    while (pb_field(&at, end, &field, &sub, &value)) {
        if (field == 1) ir = value;
        if (field == 8) {
            const unsigned char *o = sub, *o_end = sub + value, *s;
            uint64_t v;
            unsigned f;
            while (pb_field(&o, o_end, &f, &s, &v))
                if (f == 2) opset = v;
        }
        if (field == 7) {
            const unsigned char *g = sub, *g_end = sub + value, *node;
            uint64_t length;
            unsigned f;
            while (pb_field(&g, g_end, &f, &node, &length)) {
                const unsigned char *n = node, *n_end = node + length, *s;
                uint64_t v;
                unsigned nf;
                if (f != 1) continue;
                while (pb_field(&n, n_end, &nf, &s, &v))
                    if (nf == 4 && used + v + 2 < out_size) {
                        memcpy(out + used, s, (size_t)v);
                        used += (size_t)v;
                        out[used++] = ' ';
                        out[used] = '\0';
                    }
            }
        }
    }
    if (at != end) snprintf(out, out_size, "malformed at byte %ld", (long)(at - bytes));
    else {
        char head[40];
        snprintf(head, sizeof head, "ir %llu opset %llu: ", (unsigned long long)ir, (unsigned long long)opset);
        if (strlen(head) + used < out_size) {
            memmove(out + strlen(head), out, used + 1);
            memcpy(out, head, strlen(head));
        }
    }
}

/* ---------------------------------------------------------------- the models */

typedef struct onnx_case {
    const char *name;
    const char *operators;  /* what the graph must hold, in order */
} onnx_case;

/* Models at the edges of the graph writer: no weights and a 4-D output,
   dropout last, a dense layer straight on a conv's output, dropout alone;
   pools whose last window hangs over the padded input in ceil mode (max,
   average with padding, average without) and an average pool that pads
   without ceil mode; residual blocks whose body makes the input flat
   (the skip path then flattened too), with a projection and without. */
static void add_edge_model(cnn_model *model, int which)
{
    cnn_layer_desc pool;
    memset(&pool, 0, sizeof pool);
    if (which == 3) {
        cnn_model_init(model, 2, 6, 6, 8);
        pool.type = CNN_LAYER_MAX_POOL; pool.kernel = 3; pool.stride = 2; pool.padding = 1; pool.ceil_mode = 1;
        cnn_model_add(model, &pool);             /* (2, 4, 4): the last window hangs 1 over the padded 8 */
        pool.type = CNN_LAYER_AVG_POOL;
        cnn_model_add(model, &pool);             /* (2, 3, 3): the same with padding that counts */
        pool.kernel = 2; pool.padding = 0;
        cnn_model_add(model, &pool);             /* (2, 2, 2): without padding */
        pool.stride = 1; pool.padding = 1; pool.ceil_mode = 0;
        cnn_model_add(model, &pool);             /* (2, 3, 3): padding that counts, floor mode */
        return;
    }
    if (which == 4) {
        cnn_model_init(model, 3, 2, 2, 9);
        cnn_add_global_avg_pool(model);          /* (3, 1, 1) */
        cnn_add_residual_begin(model);
        cnn_add_flatten(model);
        cnn_add_dense(model, 5);
        cnn_add_relu(model);
        cnn_add_residual_end(model, CNN_INIT_DEFAULT);  /* + conv1x1 (x), flattened */
        cnn_add_residual_begin(model);
        cnn_add_dense(model, 5);
        cnn_add_tanh(model);
        cnn_add_residual_end(model, CNN_INIT_DEFAULT);  /* + x, both flat */
        cnn_add_softmax(model);
        return;
    }
    if (which == 0) {
        cnn_model_init(model, 2, 4, 4, 5);
        cnn_add_relu(model);
        cnn_add_max_pool(model, 2, 2);
        cnn_add_dropout(model, 0.5f);
    } else if (which == 1) {
        cnn_model_init(model, 5, 1, 1, 6);
        cnn_add_conv2d(model, 3, 1, 1, 0);
        cnn_add_tanh(model);
        cnn_add_dense(model, 4);                 /* straight on (3, 1, 1): Flatten first */
        cnn_add_dropout(model, 0.5f);
    } else {
        cnn_model_init(model, 1, 2, 3, 7);
        cnn_add_dropout(model, 0.5f);
    }
}

static const onnx_case cases[] = {
    {"lenet5", "ir 8 opset 13: Conv Relu MaxPool Conv Relu MaxPool Flatten Gemm Relu Gemm Relu Gemm Softmax "},
    {"mlp", "ir 8 opset 13: Flatten Gemm Relu Gemm Relu Gemm Softmax "},
    {"cnn", "ir 8 opset 13: Conv LeakyRelu Conv LeakyRelu MaxPool Conv LeakyRelu Conv LeakyRelu MaxPool Flatten Gemm Relu Gemm "
            "Relu Gemm Softmax "},
    {"every_layer", "ir 8 opset 13: Conv LeakyRelu MaxPool Conv Sigmoid Relu AveragePool Flatten Gemm Tanh Gemm Softmax "},
    {"edge_no_weights", "ir 8 opset 13: Relu MaxPool "},
    {"edge_dense_on_conv", "ir 8 opset 13: Conv Tanh Flatten Gemm "},
    {"edge_dropout_only", "ir 8 opset 13: Identity "},
    {"edge_pools", "ir 8 opset 13: MaxPool Pad AveragePool AveragePool AveragePool "},
    {"edge_flat_blocks", "ir 8 opset 13: GlobalAveragePool Flatten Gemm Relu Conv Flatten Add Gemm Tanh Add Softmax "},
    {"residual", "ir 8 opset 13: Conv BatchNormalization Relu MaxPool Conv BatchNormalization Relu Conv BatchNormalization Add "
                 "Relu Conv BatchNormalization LeakyRelu Add Conv Add AveragePool GlobalAveragePool Flatten Gemm "
                 "BatchNormalization Relu Gemm Softmax "},
};
#define CASES (sizeof cases / sizeof cases[0])

static cnn_result build_case(cnn_model *model, size_t which)
{
    if (which == 3) test_add_every_layer(model, 4);
    else if (which == 9) test_add_residual_layers(model, 5);
    else if (which > 3) add_edge_model(model, (int)which - 4);
    else {
        cnn_model_init(model, 1, 28, 28, 1 + which);
        if (which == 0) cnn_add_lenet5(model, 47);
        if (which == 1) seed_add_mlp(model, 47);
        if (which == 2) seed_add_cnn(model, 47);
    }
    return cnn_model_build(model, BATCH);
}

static char case_dir[1024];

/* Exports each model with a batch of inputs and cnn.h's outputs for them. */
TEST(export_writes_the_graph)
{
    size_t i;
    snprintf(case_dir, sizeof case_dir, "%s", test_path("onnx-cases"));
    {
        char command[1200];
        snprintf(command, sizeof command, "mkdir -p '%s'", case_dir);
        CHECK(system(command) == 0, "%s", command);
    }
    for (i = 0; i < CASES; i++) {
        cnn_model model;
        char path[1200], found[512];
        float *input;
        size_t size;
        unsigned char *bytes;
        cnn_rng rng;
        EXPECT(build_case(&model, i), CNN_OK, NULL);
        if (!model.memory) continue;
        test_randomise_weights(&model, 100 + i);
        test_randomise_statistics(&model, 300 + i);
        input = (float *)malloc(BATCH * cnn_shape_count(model.input) * sizeof(float));
        cnn_rng_seed(&rng, 200 + i);
        test_fill_uniform(&rng, input, BATCH * cnn_shape_count(model.input), 0.0f, 1.0f);
        EXPECT(cnn_model_forward(&model, input, BATCH, CNN_MODE_EVAL), CNN_OK, NULL);
        snprintf(path, sizeof path, "%s/%s.io", case_dir, cases[i].name);
        CHECK(test_io_write(path, &model, BATCH, input, cnn_model_output(&model)), "%s", path);
        snprintf(path, sizeof path, "%s/%s.onnx", case_dir, cases[i].name);
        EXPECT(cnn_model_export_onnx(&model, path), CNN_OK, NULL);
        bytes = test_read_file(path, &size);
        CHECK(bytes != NULL, "%s", path);
        if (bytes) {
            describe_onnx(bytes, size, found, sizeof found);
            CHECK(strcmp(found, cases[i].operators) == 0, "%s: %s\n      wanted %s", cases[i].name, found, cases[i].operators);
            CHECK(size > 4 * model.param_count, "%s: %lu bytes for %lu parameters", cases[i].name, (unsigned long)size,
                  (unsigned long)model.param_count);
        }
        free(bytes);
        free(input);
        cnn_model_free(&model);
    }
}

/* What ONNX's operators cannot say is refused, naming the layer: a
   residual block's 1x1 projection of a flat vector (Conv takes images). */
TEST(export_refuses_a_projection_of_a_flat_vector)
{
    cnn_model model;
    cnn_model_init(&model, 4, 1, 1, 3);
    cnn_add_flatten(&model);
    cnn_add_residual_begin(&model);
    cnn_add_dense(&model, 3);
    cnn_add_residual_end(&model, CNN_INIT_DEFAULT);  /* (4) -> (3): a projection */
    EXPECT(cnn_model_build(&model, 1), CNN_OK, NULL);
    EXPECT(cnn_model_export_onnx(&model, test_path("flat-projection.onnx")), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    CHECK(strstr(model.error.message, "layer 4 projects a flat vector") != NULL, "message: %s", model.error.message);
    cnn_model_free(&model);
}

TEST(onnx_runtime_computes_the_same)
{
    const char *npm = getenv("CNN_NPM_DIR") ? getenv("CNN_NPM_DIR") : "build/npm";
    int required = getenv("CNN_REQUIRE_ONNX_RUNTIME") && strcmp(getenv("CNN_REQUIRE_ONNX_RUNTIME"), "1") == 0;
    char command[2048];
    size_t i, used;
    int status;
    fflush(stdout);
    if (system("command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1") != 0) {
        CHECK(!required, "CNN_REQUIRE_ONNX_RUNTIME=1 but there is no node or npm");
        SKIP("no Node.js and npm (Debian: apt-get install nodejs npm)");
    }
    snprintf(command, sizeof command, "sh tests/onnx/setup.sh '%s' >'%s/setup.log' 2>&1", npm, case_dir);
    status = system(command);
    if (status != 0) {
        snprintf(command, sizeof command, "sed 's/^/    /' '%s/setup.log'", case_dir);
        (void)system(command);
        CHECK(!required, "tests/onnx/setup.sh failed (status %d)", status);
        SKIP("onnxruntime-web could not be installed (offline?)");
    }
    /* the status is check.mjs's: its lines go to a log, shown after */
    used = (size_t)snprintf(command, sizeof command, "node tests/onnx/check.mjs '%s' '%s'", npm, case_dir);
    for (i = 0; i < CASES; i++) used += (size_t)snprintf(command + used, sizeof command - used, " %s", cases[i].name);
    snprintf(command + used, sizeof command - used, " >'%s/check.log' 2>&1", case_dir);
    status = system(command);
    {
        char show[1200];
        snprintf(show, sizeof show, "sed 's/^/    /' '%s/check.log'", case_dir);
        fflush(stdout);
        (void)system(show);
    }
    CHECK(status == 0, "ONNX Runtime disagrees with cnn.h, or could not run the models (status %d)", status);
}

TEST(onnx_checker_accepts_the_files)
{
    char command[2048];
    size_t i, used;
    int status;
    used = (size_t)snprintf(command, sizeof command, "/usr/bin/python3 tests/onnx/checker.py");
    for (i = 0; i < CASES; i++) used += (size_t)snprintf(command + used, sizeof command - used, " '%s/%s.onnx'", case_dir, cases[i].name);
    snprintf(command + used, sizeof command - used, " >'%s/checker.log' 2>&1", case_dir);
    fflush(stdout);
    status = system(command);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        CHECK(!(getenv("CNN_REQUIRE_ONNX_RUNTIME") && strcmp(getenv("CNN_REQUIRE_ONNX_RUNTIME"), "1") == 0),
              "CNN_REQUIRE_ONNX_RUNTIME=1 but python3-onnx is not installed");
        SKIP("no python3-onnx (Debian: apt-get install python3-onnx)");
    }
    {
        char show[1200];
        snprintf(show, sizeof show, "sed 's/^/    /' '%s/checker.log'", case_dir);
        (void)system(show);
    }
    CHECK(status == 0, "onnx.checker refused an exported model (status %d)", status);
}

int main(void)
{
    RUN(export_writes_the_graph);
    RUN(export_refuses_a_projection_of_a_flat_vector);
    RUN(onnx_runtime_computes_the_same);
    RUN(onnx_checker_accepts_the_files);
    return test_report();
}
