/* Models in safetensors files, in and out: PyTorch's fixtures load and
   compute what PyTorch computed (tests/interop/fixtures, written by
   tests/interop/gen.py), cnn.h's own files come back bit for bit, a failed
   load changes nothing, and malformed files are refused with a message
   naming the problem. The live round trip with PyTorch is `make interop`. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"
#include "../examples/seed_models.h"

#define FIXTURES "tests/interop/fixtures/"
#define TOLERANCE 1e-5 /* |cnn.h - PyTorch| / max(1, |PyTorch|) */

/* Runs a model on a fixture's inputs and compares with PyTorch's outputs. */
static void check_outputs(cnn_model *model, const test_io *io, int softmax_of_logits, const char *name)
{
    size_t outputs = cnn_shape_count(cnn_model_output_shape(model)), n, k;
    float *want;
    double worst;
    CHECK(outputs == io->outputs, "%s: the model has %lu outputs, PyTorch %u", name, (unsigned long)outputs, io->outputs);
    if (outputs != io->outputs) return;
    EXPECT(cnn_model_forward(model, io->input, (int)io->batch, CNN_MODE_EVAL), CNN_OK, NULL);
    want = (float *)malloc(io->batch * outputs * sizeof(float));
    memcpy(want, io->output, io->batch * outputs * sizeof(float));
    if (softmax_of_logits)  /* PyTorch's logits through a softmax, in double */
        for (n = 0; n < io->batch; n++) {
            double top = want[n * outputs], sum = 0.0;
            for (k = 1; k < outputs; k++) top = want[n * outputs + k] > top ? want[n * outputs + k] : top;
            for (k = 0; k < outputs; k++) sum += exp(want[n * outputs + k] - top);
            for (k = 0; k < outputs; k++) want[n * outputs + k] = (float)(exp(want[n * outputs + k] - top) / sum);
        }
    worst = test_max_scaled_diff(cnn_model_output(model), want, io->batch * outputs);
    printf("    %s: largest difference from PyTorch %.2g\n", name, worst);
    CHECK(worst <= TOLERANCE, "%s: cnn.h and PyTorch differ by %g", name, worst);
    free(want);
}

TEST(pytorch_files_with_metadata)
{
    static const char *const names[] = {"every_layer_f32", "every_layer_f16", "every_layer_bf16", "strided_conv", "residual"};
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[256];
        test_io io;
        cnn_model model;
        snprintf(path, sizeof path, FIXTURES "%s.io", names[i]);
        CHECK(test_io_read(&io, path), "%s", path);
        if (!io.input) continue;
        snprintf(path, sizeof path, FIXTURES "%s.safetensors", names[i]);
        EXPECT(cnn_model_from_safetensors(&model, path, (int)io.batch), CNN_OK, NULL);
        if (model.memory) {
            CHECK(model.input.c == (int)io.c && model.input.h == (int)io.h && model.input.w == (int)io.w,
                  "%s: input (%d, %d, %d)", names[i], model.input.c, model.input.h, model.input.w);
            check_outputs(&model, &io, 0, names[i]);
        }
        cnn_model_free(&model);
        test_io_free(&io);
    }
}

/* residual.safetensors, PyTorch's nn.Sequential of batch norm layers,
   cnnh.Residual blocks, padded pools in ceil mode and global average
   pooling, is test.h's test_add_residual_layers: built from its metadata
   it has the same layers, and it fills one built by hand, running
   statistics (PyTorch's buffers) and counts of batches included. */
TEST(pytorch_batch_norm_and_residual_blocks)
{
    const char *path = FIXTURES "residual.safetensors";
    cnn_model model, by_hand;
    test_io io;
    int l;
    CHECK(test_io_read(&io, FIXTURES "residual.io"), "fixture");
    if (!io.input) return;
    EXPECT(cnn_model_from_safetensors(&model, path, (int)io.batch), CNN_OK, NULL);
    test_add_residual_layers(&by_hand, 1);
    EXPECT(cnn_model_build(&by_hand, (int)io.batch), CNN_OK, NULL);
    EXPECT(cnn_model_load_safetensors(&by_hand, path), CNN_OK, NULL);
    if (model.memory && by_hand.memory) {
        CHECK(model.layer_count == by_hand.layer_count, "%d layers, %d by hand", model.layer_count, by_hand.layer_count);
        for (l = 0; l < model.layer_count && l < by_hand.layer_count; l++) {
            CHECK(memcmp(&model.layers[l].desc, &by_hand.layers[l].desc, sizeof(cnn_layer_desc)) == 0, "layer %d (%s) differs", l,
                  cnn_layer_type_name(model.layers[l].desc.type));
            CHECK(model.layers[l].batches_tracked == (model.layers[l].desc.type == CNN_LAYER_BATCH_NORM ? 7u : 0u) &&
                      by_hand.layers[l].batches_tracked == model.layers[l].batches_tracked,
                  "layer %d: %lu batches", l, (unsigned long)model.layers[l].batches_tracked);
        }
        CHECK(model.state_count == by_hand.state_count &&
                  memcmp(model.params, by_hand.params, (model.param_count + model.state_count) * sizeof(float)) == 0,
              "parameters or statistics differ");
        CHECK(model.layers[1].running_var[0] != 1.0f && model.layers[22].running_mean[0] != 0.0f, "the statistics were not read");
        check_outputs(&model, &io, 0, "residual from its metadata");
        check_outputs(&by_hand, &io, 0, "residual built by hand");
    }
    cnn_model_free(&model);
    cnn_model_free(&by_hand);
    test_io_free(&io);
}

/* small_lenet_logits.safetensors is a bare state_dict (no metadata), of a
   model that ends in logits: it fills a model built by hand, with or
   without a softmax on top, and cannot build one. */
static void add_small_lenet(cnn_model *model, int softmax)
{
    cnn_model_init(model, 1, 16, 16, 5);
    cnn_add_conv2d(model, 4, 5, 1, 2);
    cnn_add_relu(model);
    cnn_add_max_pool(model, 2, 2);
    cnn_add_conv2d(model, 8, 5, 1, 0);
    cnn_add_relu(model);
    cnn_add_max_pool(model, 2, 2);
    cnn_add_flatten(model);
    cnn_add_dense(model, 24);
    cnn_add_relu(model);
    cnn_add_dense(model, 10);
    if (softmax) cnn_add_softmax(model);
}

TEST(pytorch_state_dict_without_metadata)
{
    const char *path = FIXTURES "small_lenet_logits.safetensors";
    test_io io;
    cnn_model model;
    int softmax;
    CHECK(test_io_read(&io, FIXTURES "small_lenet_logits.io"), "fixture");
    if (!io.input) return;
    for (softmax = 0; softmax < 2; softmax++) {
        add_small_lenet(&model, softmax);
        EXPECT(cnn_model_build(&model, (int)io.batch), CNN_OK, NULL);
        EXPECT(cnn_model_load_safetensors(&model, path), CNN_OK, NULL);
        check_outputs(&model, &io, softmax, softmax ? "small_lenet + softmax" : "small_lenet logits");
        cnn_model_free(&model);
    }
    EXPECT(cnn_model_from_safetensors(&model, path, 1), CNN_ERROR_BAD_MODEL_FILE, &model.error);
    CHECK(strstr(model.error.message, "has no cnn.h metadata") && strstr(model.error.message, "small_lenet_logits"),
          "message: %s", model.error.message);
    test_io_free(&io);
}

/* Saved and built again from the file: the same layers, every setting,
   the same parameters bit for bit, the same outputs. */
static void check_round_trip(cnn_model *model, const char *name)
{
    const char *path = test_path("round-trip.safetensors");
    cnn_model again;
    cnn_rng rng;
    float *input;
    size_t count = 3 * cnn_shape_count(model->input), outputs = 3 * cnn_shape_count(cnn_model_output_shape(model));
    int l;
    CHECK(model->memory != NULL, "%s is not built: %s", name, model->error.message);
    if (!model->memory) return;
    EXPECT(cnn_model_save_safetensors(model, path), CNN_OK, NULL);
    EXPECT(cnn_model_from_safetensors(&again, path, 3), CNN_OK, NULL);
    if (!again.memory) return;
    CHECK(again.layer_count == model->layer_count && again.param_count == model->param_count &&
          memcmp(&again.input, &model->input, sizeof again.input) == 0, "%s: a different model came back", name);
    for (l = 0; l < model->layer_count && l < again.layer_count; l++)
        CHECK(memcmp(&again.layers[l].desc, &model->layers[l].desc, sizeof(cnn_layer_desc)) == 0, "%s: layer %d changed", name, l);
    CHECK(again.param_count == model->param_count && memcmp(again.params, model->params, model->param_count * sizeof(float)) == 0,
          "%s: the parameters changed", name);
    CHECK(again.state_count == model->state_count && memcmp(again.state, model->state, model->state_count * sizeof(float)) == 0,
          "%s: the running statistics changed", name);
    for (l = 0; l < model->layer_count && l < again.layer_count; l++)
        CHECK(again.layers[l].batches_tracked == model->layers[l].batches_tracked, "%s: layer %d's count of batches changed", name, l);
    input = (float *)malloc(count * sizeof(float));
    cnn_rng_seed(&rng, 11);
    test_fill_uniform(&rng, input, count, 0.0f, 1.0f);
    EXPECT(cnn_model_forward(model, input, 3, CNN_MODE_EVAL), CNN_OK, NULL);
    EXPECT(cnn_model_forward(&again, input, 3, CNN_MODE_EVAL), CNN_OK, NULL);
    CHECK(memcmp(cnn_model_output(model), cnn_model_output(&again), outputs * sizeof(float)) == 0, "%s: outputs differ", name);
    free(input);
    cnn_model_free(&again);
}

TEST(cnn_h_files_come_back_the_same)
{
    cnn_model model;
    cnn_model_init(&model, 1, 28, 28, 1);
    cnn_add_lenet5(&model, 47);
    EXPECT(cnn_model_build(&model, 3), CNN_OK, NULL);
    check_round_trip(&model, "LeNet-5");
    cnn_model_free(&model);
    cnn_model_init(&model, 1, 28, 28, 2);
    seed_add_mlp(&model, 47);
    EXPECT(cnn_model_build(&model, 3), CNN_OK, NULL);
    check_round_trip(&model, "seed MLP");
    cnn_model_free(&model);
    cnn_model_init(&model, 1, 28, 28, 3);
    seed_add_cnn(&model, 47);
    EXPECT(cnn_model_build(&model, 3), CNN_OK, NULL);
    check_round_trip(&model, "seed CNN");
    cnn_model_free(&model);
    test_add_every_layer(&model, 3);
    EXPECT(cnn_model_build(&model, 3), CNN_OK, NULL);
    check_round_trip(&model, "every layer");
    cnn_model_free(&model);
    test_add_residual_layers(&model, 3);
    EXPECT(cnn_model_build(&model, 3), CNN_OK, NULL);
    test_randomise_weights(&model, 4);
    test_randomise_statistics(&model, 5);
    check_round_trip(&model, "batch norm and residual blocks");
    cnn_model_free(&model);
}


/* In the file, a dense weight is (out, in), the transpose of cnn.h's. */
TEST(dense_weights_are_transposed_at_the_border)
{
    cnn_model model;
    unsigned char *bytes;
    size_t size, header;
    cnn_model_init(&model, 2, 1, 1, 1);
    cnn_add_dense(&model, 3);
    EXPECT(cnn_model_build(&model, 1), CNN_OK, NULL);
    model.layers[0].weight[0 * 3 + 1] = 5.0f; /* in 0 -> out 1 */
    EXPECT(cnn_model_save_safetensors(&model, test_path("dense.safetensors")), CNN_OK, NULL);
    bytes = test_read_file(test_path("dense.safetensors"), &size);
    CHECK(bytes && size > 8, "the file");
    if (bytes && size > 8) {
        header = test_u32(bytes);
        CHECK(strstr((const char *)bytes + 8, "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,2]") != NULL, "header: %.200s", bytes + 8);
        CHECK(8 + header + 4 * 2 < size && test_f32(bytes + 8 + header + 4 * 2) == 5.0f, "element (1, 0) of (out, in) is not 5");
    }
    free(bytes);
    cnn_model_free(&model);
}

/* ---------------------------------------------------------------- malformed files

   The model: input (1, 4, 4), conv2d 2 3x3 padding 1, relu, flatten,
   dense 3, softmax: tensors 0.weight (2, 1, 3, 3), 0.bias (2), 3.weight
   (3, 32), 3.bias (3), 476 bytes of F32 data in all. */
#define W0 "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[0,72]}"
#define B0 "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[72,80]}"
#define W3 "\"3.weight\":{\"dtype\":\"F32\",\"shape\":[3,32],\"data_offsets\":[80,464]}"
#define B3 "\"3.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[464,476]}"
#define GOOD "{" W0 "," B0 "," W3 "," B3 "}"
#define DATA_BYTES 476

static void add_tiny(cnn_model *model)
{
    cnn_model_init(model, 1, 4, 4, 9);
    cnn_add_conv2d(model, 2, 3, 1, 1);
    cnn_add_relu(model);
    cnn_add_flatten(model);
    cnn_add_dense(model, 3);
    cnn_add_softmax(model);
}

/* 8-byte length, json, then data_bytes of data (values 0.01 * i, as F32;
   f16_at >= 0: the two bytes there are 0x7C00, F16 infinity). */
static unsigned char *make_file(const char *json, long long header_length, size_t data_bytes, size_t *size)
{
    size_t json_length = strlen(json), i;
    unsigned char *bytes = (unsigned char *)calloc(8 + json_length + data_bytes + 4, 1);
    uint64_t length = header_length >= 0 ? (uint64_t)header_length : (uint64_t)json_length;
    for (i = 0; i < 8; i++) bytes[i] = (unsigned char)(length >> (8 * i));
    memcpy(bytes + 8, json, json_length);
    for (i = 0; i + 4 <= data_bytes; i += 4) {
        float value = 0.01f * (float)(i / 4);
        unsigned bits;
        memcpy(&bits, &value, sizeof bits);
        test_put_u32(bytes + 8 + json_length + i, bits);
    }
    *size = 8 + json_length + data_bytes;
    return bytes;
}

typedef struct bad_file {
    const char *json;
    long long header_length;   /* -1: the JSON's */
    long data_bytes;           /* -1: DATA_BYTES */
    long poke_at;              /* >= 0: a value written at this byte of the data */
    unsigned poke;             /* the value, as 4 bytes (2 when poke_bytes is 2) */
    int poke_bytes;
    const char *message;       /* a part of the message that must be there */
} bad_file;

TEST(malformed_files_are_refused)
{
    static const bad_file cases[] = {
        {"{}", -1, 0, -1, 0, 0, "has no tensor '0.weight'"},
        {"", -1, 0, -1, 0, 0, "header length 0 is too short for a JSON object"},
        {GOOD, 200000000, -1, -1, 0, 0, "more than the format's 100 MB"},
        {GOOD, 100000, -1, -1, 0, 0, "runs past the end of the file"},
        {" []", -1, -1, -1, 0, 0, "the header is not a JSON object"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", -1, -1, -1, 0, 0,
         "take more bytes than 64 bits can count"},
        {"{\"0.weight\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", -1, -1, -1, 0, 0,
         "3 elements of F4 are not a whole number of bytes"},
        {"{\"0.weight\xff\":1}", -1, -1, -1, 0, 0, "not valid UTF-8"},
        {"{\"0.weight\":{\"dtype\":\"F32\"", -1, -1, -1, 0, 0, "expected ',' or '}' in tensor '0.weight'"},
        {"{" W0 "," W0 "," B0 "," W3 "," B3 "}", -1, -1, -1, 0, 0, "begins at data offset 0, but the one before it ends at 72"},
        {"{" W0 "," B0 "," W3 "," B3 ",\"0.weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[476,476]}}", -1, -1, -1, 0, 0,
         "tensor '0.weight' appears twice"},
        {"{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}," W0 "," B0 "," W3 "," B3 "}", -1, -1, -1, 0, 0, "metadata key 'a' appears twice"},
        {"{\"__metadata__\":{},\"__metadata__\":{}," W0 "}", -1, -1, -1, 0, 0, "__metadata__ appears twice"},
        {"{\"__metadata__\":{\"a\":1}}", -1, -1, -1, 0, 0, "metadata values must be strings"},
        {"{\"0.weight\":{\"dtype\":\"F33\",\"shape\":[2,1,3,3],\"data_offsets\":[0,72]}}", -1, -1, -1, 0, 0, "unknown dtype 'F33'"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,-1,3,3],\"data_offsets\":[0,72]}}", -1, -1, -1, 0, 0, "a dimension is negative"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[0,72.0]}}", -1, -1, -1, 0, 0, "is not a whole number"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[0,72,80]}}", -1, -1, -1, 0, 0, "expected ']'"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3]}}", -1, -1, -1, 0, 0, "has no data_offsets"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[72,0]}}", -1, -1, -1, 0, 0, "end before they begin"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[0,76]}}", -1, -1, -1, 0, 0,
         "18 elements of F32 take 72 bytes, but data_offsets [0, 76] hold 76"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", -1, -1, -1, 0, 0,
         "more elements than 64 bits can count"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[0,18446744073709551616]}}", -1, -1, -1, 0, 0,
         "does not fit in 64 bits"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[0,072]}}", -1, -1, -1, 0, 0, "leading zero"},
        {"{" W0 "," B0 ",\"3.weight\":{\"dtype\":\"F32\",\"shape\":[3,32],\"data_offsets\":[84,468]},"
         "\"3.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[468,480]}}", -1, 480, -1, 0, 0, "a gap"},
        {GOOD, -1, DATA_BYTES + 4, -1, 0, 0, "trailing bytes"},
        {GOOD, -1, DATA_BYTES - 4, -1, 0, 0, "truncated"},
        {GOOD "x", -1, -1, -1, 0, 0, "something other than spaces after the header's object"},
        {GOOD, -1, -1, 100, 0x7FC00000u, 4, "tensor '3.weight', element 5 is not a finite number"},
        {"{" W0 "," B0 "," W3 ",\"3.bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[464,470]}}", -1, 470, 466, 0x7C00u, 2,
         "tensor '3.bias', element 1 is not a finite number"},
        {"{" W0 "," B0 "," W3 ",\"3.bias\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[464,470]}}", -1, 470, 468, 0xFF80u, 2,
         "tensor '3.bias', element 2 is not a finite number"},
        {"{" W0 "," B0 "," W3 "}", -1, 464, -1, 0, 0, "has no tensor '3.bias' (layer 3, dense, needs it as (3))"},
        {"{" W0 "," B0 "," W3 "," B3 ",\"1.weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[476,476]}}", -1, -1, -1, 0, 0,
         "tensor '1.weight' is not a parameter of this model (layer 1 is relu)"},
        {"{" W0 "," B0 "," W3 "," B3 ",\"x\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[476,480]}}", -1, 480, -1, 0, 0,
         "tensor 'x' is not a parameter of this model"},
        {"{" W0 "," B0 ",\"3.weight\":{\"dtype\":\"F32\",\"shape\":[32,3],\"data_offsets\":[80,464]}," B3 "}", -1, -1, -1, 0, 0,
         "tensor '3.weight' has shape (32, 3); layer 3 (dense) needs (3, 32)"},
        {"{" W0 "," B0 "," W3 ",\"3.bias\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[464,476]}}", -1, -1, -1, 0, 0,
         "tensor '3.bias' is I32; cnn.h reads F32, F16 and BF16"},
        {"{\"0.weight\\uDC00\":{}}", -1, -1, -1, 0, 0, "a lone low surrogate"},
        {"{\"0.weight\\uD800x\":{}}", -1, -1, -1, 0, 0, "without its low half"},
        {"{\"0.weight\\u0000\":{}}", -1, -1, -1, 0, 0, "contains \\u0000"},
        {"{\"0.weight\\q\":{}}", -1, -1, -1, 0, 0, "unknown escape '\\q'"},
        {"{\"0.weight\":{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}",
         -1, -1, -1, 0, 0, "nested more than 64 deep"},
        {"{\"0.weight\":{\"x\":tru}}", -1, -1, -1, 0, 0, "expected a value"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", -1, -1, -1, 0, 0, "has two dtypes"},
        {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[0,72],}}", -1, -1, -1, 0, 0, "expected a field name"},
    };
    cnn_model model;
    float *before;
    size_t i;
    add_tiny(&model);
    EXPECT(cnn_model_build(&model, 1), CNN_OK, NULL);
    before = (float *)malloc(model.param_count * sizeof(float));
    memcpy(before, model.params, model.param_count * sizeof(float));
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_file *c = &cases[i];
        size_t size;
        unsigned char *bytes = make_file(c->json, c->header_length, c->data_bytes >= 0 ? (size_t)c->data_bytes : DATA_BYTES, &size);
        cnn_result result;
        if (c->poke_at >= 0) {
            size_t at = 8 + strlen(c->json) + (size_t)c->poke_at;
            if (c->poke_bytes == 2) bytes[at] = (unsigned char)c->poke, bytes[at + 1] = (unsigned char)(c->poke >> 8);
            else test_put_u32(bytes + at, c->poke);
        }
        result = cnn_model_load_safetensors_memory(&model, bytes, size);
        CHECK(result == CNN_ERROR_BAD_MODEL_FILE && strstr(model.error.message, c->message) && strstr(model.error.message, "<memory>"),
              "case %lu: result %d, message \"%s\"; wanted \"%s\"", (unsigned long)i, (int)result, model.error.message, c->message);
        CHECK(memcmp(before, model.params, model.param_count * sizeof(float)) == 0, "case %lu changed the parameters", (unsigned long)i);
        free(bytes);
    }
    printf("    %lu malformed files refused, each with its message\n", (unsigned long)i);
    free(before);
    cnn_model_free(&model);
}

/* Batch norm's tensors are named and shaped as PyTorch's: num_batches_tracked
   an I64 of no dimensions; a residual block's layers inside it ("4.body.0")
   and its projection "shortcut"; what is wrong with them is refused. */
TEST(batch_norm_and_residual_tensors)
{
    /* input (2, 3, 3): batch_norm; residual_begin, conv2d 3 3x3 stride 2 padding 1, residual_end (a
       projection); flatten: tensors 0.* (2 each and a count), 1.body.0.* and 1.shortcut.* */
    static const char *const layers =
        "\"cnn.h.layers\":\"5\",\"cnn.h.layer.0\":\"batch_norm\",\"cnn.h.layer.1\":\"residual_begin\","
        "\"cnn.h.layer.2\":\"conv2d units=3 kernel=3 stride=2 padding=1\",\"cnn.h.layer.3\":\"residual_end\","
        "\"cnn.h.layer.4\":\"flatten\"";
#define BN_W "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
#define BN_B "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}"
#define BN_M "\"0.running_mean\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}"
#define BN_V "\"0.running_var\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}"
#define BN_T "\"0.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]}"
#define BODY "\"1.body.0.weight\":{\"dtype\":\"F32\",\"shape\":[3,2,3,3],\"data_offsets\":[40,256]}," \
             "\"1.body.0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[256,268]}"
#define SHORTCUT "\"1.shortcut.weight\":{\"dtype\":\"F32\",\"shape\":[3,2,1,1],\"data_offsets\":[268,292]}," \
                 "\"1.shortcut.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[292,304]}"
#define MOVED_UP "\"1.body.0.weight\":{\"dtype\":\"F32\",\"shape\":[3,2,3,3],\"data_offsets\":[24,240]}," \
                 "\"1.body.0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[240,252]}," \
                 "\"1.shortcut.weight\":{\"dtype\":\"F32\",\"shape\":[3,2,1,1],\"data_offsets\":[252,276]}," \
                 "\"1.shortcut.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[276,288]}"
    static const struct { const char *tensors; size_t data_bytes; long poke_at; unsigned poke; const char *message; } cases[] = {
        {BN_W "," BN_B "," BN_M "," BN_V "," BN_T "," BODY "," SHORTCUT, 304, -1, 0, NULL},
        {BN_W "," BN_B "," BN_M "," BN_V "," BN_T "," BODY "," SHORTCUT, 304, 28, 0xBF800000u,
         "tensor '0.running_var', element 1 is a negative variance"},
        {BN_W "," BN_B "," BN_M "," BN_V "," BN_T "," BODY "," SHORTCUT, 304, 36, 0x80000000u,
         "tensor '0.num_batches_tracked' counts a negative number"},
        {BN_W "," BN_B "," BN_M "," BN_V ",\"0.num_batches_tracked\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[32,40]},"
         BODY "," SHORTCUT, 304, -1, 0, "tensor '0.num_batches_tracked' is F64; a count of batches is I64"},
        {BN_W "," BN_B "," BN_M "," BN_V ",\"0.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[32,40]},"
         BODY "," SHORTCUT, 304, -1, 0, "tensor '0.num_batches_tracked' has shape (1); layer 0 (batch_norm) needs ()"},
        {BN_W "," BN_B "," BN_M "," MOVED_UP, 288, -1, 0, "has no tensor '0.running_var' (layer 0, batch_norm, needs it as (2))"},
        {BN_W "," BN_B "," BN_M "," BN_V "," BN_T "," BODY, 268, -1, 0, "has no tensor '1.shortcut.weight' (layer 3, residual_end"},
        {BN_W "," BN_B "," BN_M "," BN_V "," BN_T "," BODY "," SHORTCUT ",\"1.weight\":{\"dtype\":\"F32\",\"shape\":[],"
         "\"data_offsets\":[304,308]}", 308, -1, 0, "tensor '1.weight' is not a parameter of this model (layers 0 to 4)"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[2048];
        size_t size, data;
        unsigned char *bytes;
        cnn_model model;
        cnn_result result;
        snprintf(json, sizeof json, "{\"__metadata__\":{\"cnn.h.version\":\"1\",\"cnn.h.input\":\"2,3,3\",%s},%s}", layers,
                 cases[i].tensors);
        bytes = make_file(json, -1, cases[i].data_bytes, &size);
        data = 8 + strlen(json);
        if (strstr(cases[i].tensors, "[32,40]")) { /* a count of batches: 7 */
            memset(bytes + data + 32, 0, 8);
            bytes[data + 32] = 7;
        }
        if (cases[i].poke_at >= 0) test_put_u32(bytes + data + (size_t)cases[i].poke_at, cases[i].poke);
        result = cnn_model_from_safetensors_memory(&model, bytes, size, 1);
        if (!cases[i].message) {
            CHECK(result == CNN_OK, "case %lu: %s", (unsigned long)i, model.error.message);
            if (result == CNN_OK)
                CHECK(model.layers[0].batches_tracked == 7 && model.layers[0].running_mean[1] == 0.01f * 5 &&
                          model.layers[0].running_var[0] == 0.01f * 6 && model.layers[3].weight[0] == 0.01f * 67,
                      "case %lu: the values are not where PyTorch keeps them", (unsigned long)i);
        } else {
            CHECK(result == CNN_ERROR_BAD_MODEL_FILE && strstr(model.error.message, cases[i].message),
                  "case %lu: result %d, \"%s\"; wanted \"%s\"", (unsigned long)i, (int)result, model.error.message,
                  cases[i].message);
        }
        cnn_model_free(&model);
        free(bytes);
    }
#undef MOVED_UP
#undef BN_W
#undef BN_B
#undef BN_M
#undef BN_V
#undef BN_T
#undef BODY
#undef SHORTCUT
}

/* What the format allows loads: escaped names, fields it does not know,
   keys in any order of offsets, a header padded with white space. */
TEST(unusual_but_valid_files_load)
{
    static const char *const good[] = {
        GOOD,
        "{\"0.w\\u0065ight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[0,72]}," B0 "," W3 "," B3 "}",
        "{" B3 "," W3 "," B0 "," W0 "}",
        "{\"__metadata__\":{\"note\":\"\\\"quoted\\\" \\u00e9 \\ud83d\\ude00\"},\"0.weight\":{\"data_offsets\":[0,72],\"extra\":[1,{\"a\":null},-2.5e3,true],"
        "\"shape\":[2,1,3,3],\"dtype\":\"F32\"}," B0 "," W3 "," B3 "}    \n  ",
        "\t\n\r {\"__metadata__\":null," W0 "," B0 "," W3 "," B3 "}",
    };
    cnn_model model;
    size_t i;
    add_tiny(&model);
    EXPECT(cnn_model_build(&model, 1), CNN_OK, NULL);
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t size;
        unsigned char *bytes = make_file(good[i], -1, DATA_BYTES, &size);
        memset(model.params, 0, model.param_count * sizeof(float));
        EXPECT(cnn_model_load_safetensors_memory(&model, bytes, size), CNN_OK, NULL);
        CHECK(model.layers[0].weight[1] == 0.01f && model.layers[3].bias[2] == 0.01f * 118, "case %lu: wrong values", (unsigned long)i);
        free(bytes);
    }
    cnn_model_free(&model);
}

/* The metadata describes a model that could be built, or it is refused. */
TEST(bad_metadata_is_refused)
{
    static const struct { const char *layers; const char *message; } cases[] = {
        {"\"cnn.h.layers\":\"2\",\"cnn.h.layer.0\":\"flatten\"", "has 2 layers but no metadata \"cnn.h.layer.1\""},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"flaten\"", "unknown layer type"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"conv2d units=2 kernel=3 stride=1\"", "a required setting missing"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"relu units=2\"", "a setting this layer type does not have"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"leaky_relu alpha=0\"", "alpha=0, which is relu"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"dropout rate=1.5\"", "a rate outside (0, 1)"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"max_pool kernel=2 stride=2 kernel=2\"", "a setting given twice"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"conv2d units=2 kernel=9 stride=1 padding=0\"", "cnn.h.layer.0: conv2d kernel 9"},
        {"\"cnn.h.layers\":\"0\"", "cnn.h.layers is not a layer count"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"relu\",\"cnn.h.layer.00\":\"relu\"", "\"cnn.h.layer.00\" names no layer"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"dense units=016\"", "a setting whose value cannot be read"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"relu\",\"cnn.h.layer.1\":\"relu\"", "\"cnn.h.layer.1\" names no layer of the 1"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"max_pool kernel=2 stride=2 ceil_mode=2\"", "ceil_mode other than 0 or 1"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"avg_pool kernel=2 stride=2 padding=2\"", "padding 2 is more than half"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"batch_norm init=he_normal\"", "a setting this layer type does not have"},
        {"\"cnn.h.layers\":\"1\",\"cnn.h.layer.0\":\"residual_end\"", "residual_end without a residual_begin"},
        {"\"cnn.h.layers\":\"2\",\"cnn.h.layer.0\":\"residual_begin\",\"cnn.h.layer.1\":\"residual_end units=3\"",
         "a setting this layer type does not have"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[512];
        size_t size;
        unsigned char *bytes;
        cnn_model model;
        snprintf(json, sizeof json, "{\"__metadata__\":{\"cnn.h.version\":\"1\",\"cnn.h.input\":\"1,4,4\",%s}}", cases[i].layers);
        bytes = make_file(json, -1, 0, &size);
        EXPECT(cnn_model_from_safetensors_memory(&model, bytes, size, 1), CNN_ERROR_BAD_MODEL_FILE, &model.error);
        CHECK(strstr(model.error.message, cases[i].message) != NULL, "case %lu: \"%s\"; wanted \"%s\"", (unsigned long)i,
              model.error.message, cases[i].message);
        CHECK(model.memory == NULL && model.layer_count == 0, "case %lu: the model is not left freed", (unsigned long)i);
        free(bytes);
    }
}

TEST(errors_name_the_file_and_saving_is_atomic)
{
    cnn_model model, other;
    const char *path = test_path("atomic.safetensors");
    add_tiny(&model);
    EXPECT(cnn_model_build(&model, 1), CNN_OK, NULL);
    EXPECT(cnn_model_save_safetensors(&model, test_path("no-such-folder/x.safetensors")), CNN_ERROR_IO, &model.error);
    EXPECT(cnn_model_export_onnx(&model, test_path("no-such-folder/x.onnx")), CNN_ERROR_IO, &model.error);
    EXPECT(cnn_model_load_safetensors(&model, test_path("missing.safetensors")), CNN_ERROR_IO, &model.error);
    CHECK(strstr(model.error.message, "missing.safetensors") != NULL, "message: %s", model.error.message);
    test_write_file("tiny.safetensors", "\x10\0\0\0\0", 5);
    EXPECT(cnn_model_load_safetensors(&model, test_path("tiny.safetensors")), CNN_ERROR_BAD_MODEL_FILE, &model.error);
    CHECK(strstr(model.error.message, "tiny.safetensors' is too short to be a safetensors file (5 bytes)") != NULL, "message: %s",
          model.error.message);
    test_write_file("short.safetensors", "\x10\0\0\0\0\0\0\0{}", 10);
    EXPECT(cnn_model_load_safetensors(&model, test_path("short.safetensors")), CNN_ERROR_BAD_MODEL_FILE, &model.error);
    CHECK(strstr(model.error.message, "short.safetensors") && strstr(model.error.message, "runs past the end"), "message: %s",
          model.error.message);
    /* a save replaces the file whole and leaves no PATH.tmp */
    test_write_file("atomic.safetensors", "old", 3);
    EXPECT(cnn_model_save_safetensors(&model, path), CNN_OK, NULL);
    {
        char temp[1100];
        FILE *file;
        snprintf(temp, sizeof temp, "%s.tmp", path);
        file = fopen(temp, "rb");
        CHECK(file == NULL, "%s was left behind", temp);
        if (file) fclose(file);
    }
    add_tiny(&other);
    EXPECT(cnn_model_build(&other, 1), CNN_OK, NULL);
    EXPECT(cnn_model_load_safetensors(&other, path), CNN_OK, NULL);
    CHECK(memcmp(other.params, model.params, model.param_count * sizeof(float)) == 0, "parameters differ");
    cnn_model_free(&other);
    /* a model that is not built has nothing to fill or save */
    add_tiny(&other);
    EXPECT(cnn_model_load_safetensors(&other, path), CNN_ERROR_STATE, &other.error);
    EXPECT(cnn_model_save_safetensors(&other, path), CNN_ERROR_STATE, &other.error);
    cnn_model_free(&other);
    cnn_model_free(&model);
}

/* A model without parameters loads ({} is a valid file), a layer wider
   than any image side comes back, and the metadata's numbers are short. */
TEST(edge_models)
{
    cnn_model model, again;
    unsigned char *bytes;
    size_t size;
    cnn_model_init(&model, 3, 1, 1, 1);
    cnn_add_relu(&model);
    cnn_add_softmax(&model);
    EXPECT(cnn_model_build(&model, 3), CNN_OK, NULL);
    bytes = make_file("{}", -1, 0, &size);
    EXPECT(cnn_model_load_safetensors_memory(&model, bytes, size), CNN_OK, NULL);
    free(bytes);
    check_round_trip(&model, "no parameters");
    cnn_model_free(&model);

    cnn_model_init(&model, 1, 1, 1, 1);
    cnn_add_dense(&model, 70000);
    cnn_add_dense(&model, 2);
    EXPECT(cnn_model_build(&model, 3), CNN_OK, NULL);
    check_round_trip(&model, "dense 70000");
    cnn_model_free(&model);

    test_add_every_layer(&model, 3);
    EXPECT(cnn_model_build(&model, 1), CNN_OK, NULL);
    EXPECT(cnn_model_save_safetensors(&model, test_path("short.safetensors")), CNN_OK, NULL);
    bytes = test_read_file(test_path("short.safetensors"), &size);
    CHECK(bytes && strstr((const char *)bytes + 8, "\"leaky_relu alpha=0.1\"") && strstr((const char *)bytes + 8, "\"dropout rate=0.3\""),
          "header: %.600s", bytes ? (const char *)bytes + 8 : "");
    free(bytes);
    cnn_model_free(&model);

    /* metadata describing 134 million parameters, and no tensors: refused
       before the model is built, so nothing that large is allocated */
    bytes = make_file("{\"__metadata__\":{\"cnn.h.version\":\"1\",\"cnn.h.input\":\"8192,1,1\",\"cnn.h.layers\":\"1\","
                      "\"cnn.h.layer.0\":\"dense units=16384\"}}", -1, 0, &size);
    EXPECT(cnn_model_from_safetensors_memory(&again, bytes, size, 1), CNN_ERROR_BAD_MODEL_FILE, &again.error);
    CHECK(strstr(again.error.message, "has no tensor '0.weight'") != NULL, "message: %s", again.error.message);
    free(bytes);
}

int main(void)
{
    RUN(pytorch_files_with_metadata);
    RUN(pytorch_state_dict_without_metadata);
    RUN(pytorch_batch_norm_and_residual_blocks);
    RUN(cnn_h_files_come_back_the_same);
    RUN(batch_norm_and_residual_tensors);
    RUN(dense_weights_are_transposed_at_the_border);
    RUN(malformed_files_are_refused);
    RUN(unusual_but_valid_files_load);
    RUN(bad_metadata_is_refused);
    RUN(edge_models);
    RUN(errors_name_the_file_and_saving_is_atomic);
    return test_report();
}
