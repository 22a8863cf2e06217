/* The C export (cnn_model_export_c) and int8 quantization: exported files
   compile as C99 and C++ under -Werror, and freestanding; compiled with a
   small main and run on 2,000 images (EMNIST test rows when EMNIST_DIR
   has them, else generated ones), a float file gives cnn_model_predict's
   classes and probabilities within 1e-5, an int8 file exactly
   cnn_quantized_predict's classes (the same integer arithmetic), also
   with batch norm, residual blocks (float32), global average pooling and
   padded pools; and the exports a model or a calibration set cannot make
   are refused, each with a message that names the layer. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#define ROWS 2000

static cnn_dataset images;   /* the 2,000 images, (1, 28, 28) */
static int from_emnist;

static void load_images(void)
{
    char path[1024];
    cnn_data_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.max_rows = ROWS;
    from_emnist = test_emnist_path(path, sizeof path, "test") && cnn_dataset_load_csv(&images, path, &desc) == CNN_OK &&
                  images.count == ROWS;
    if (!from_emnist) {
        cnn_dataset_free(&images);
        make_random_dataset(&images, ROWS, 28, 47, 5);
    }
    printf("    %d images from %s\n", images.count, from_emnist ? path : "a random generator (no EMNIST)");
}

/* LeNet-5 with weights that make every output depend on every weight. */
static cnn_result lenet5(cnn_model *model)
{
    cnn_result result;
    cnn_model_init(model, 1, 28, 28, 3);
    cnn_add_lenet5(model, 47);
    if ((result = cnn_model_build(model, 64)) == CNN_OK) test_randomise_weights(model, 4);
    return result;
}

/* Every layer type the export writes, on the same images. */
static cnn_result every_layer(cnn_model *model)
{
    cnn_result result;
    cnn_model_init(model, 1, 28, 28, 5);
    cnn_add_conv2d(model, 4, 3, 1, 1);
    cnn_add_leaky_relu(model, 0.1f);
    cnn_add_avg_pool(model, 2, 2);          /* (4, 14, 14) */
    cnn_add_conv2d(model, 6, 4, 2, 0);      /* (6, 6, 6) */
    cnn_add_sigmoid(model);
    cnn_add_max_pool(model, 3, 3);          /* (6, 2, 2) */
    cnn_add_flatten(model);
    cnn_add_dropout(model, 0.2f);
    cnn_add_dense(model, 20);
    cnn_add_tanh(model);
    cnn_add_dense(model, 10);
    cnn_add_relu(model);
    cnn_add_dense(model, 7);
    cnn_add_softmax(model);
    if ((result = cnn_model_build(model, 64)) == CNN_OK) test_randomise_weights(model, 6);
    return result;
}

/* Running estimates for every batch norm layer: the means and variances
   of 40 training-mode passes over the first 64 images, as training would
   leave them (not 0 and 1, which would hide a mean or a variance used
   wrongly). */
static void set_running_estimates(cnn_model *model)
{
    int pass;
    for (pass = 0; pass < 40; pass++) cnn_model_forward(model, images.images.data, 64, CNN_MODE_TRAIN);
}

/* Batch norm (after conv2d, a pool and dense), residual blocks (one nested
   in another, one with a 1x1 projection of stride 2), a padded max pool, a
   padded average pool in ceil mode and global average pooling. */
static cnn_result modern(cnn_model *model)
{
    cnn_layer_desc pool;
    cnn_result result;
    cnn_model_init(model, 1, 28, 28, 9);
    memset(&pool, 0, sizeof pool);
    cnn_add_conv2d(model, 8, 3, 1, 1);
    cnn_add_batch_norm(model);
    cnn_add_relu(model);
    pool.type = CNN_LAYER_MAX_POOL; pool.kernel = 3; pool.stride = 2; pool.padding = 1;
    cnn_model_add(model, &pool);                /* (8, 14, 14) */
    cnn_add_residual_begin(model);              /* layer 4 */
      cnn_add_conv2d(model, 8, 3, 1, 1);
      cnn_add_batch_norm(model);
      cnn_add_relu(model);
      cnn_add_residual_begin(model);
        cnn_add_conv2d(model, 8, 3, 1, 1);
        cnn_add_batch_norm(model);
      cnn_add_residual_end(model, CNN_INIT_DEFAULT);
    cnn_add_residual_end(model, CNN_INIT_DEFAULT);
    cnn_add_relu(model);
    cnn_add_residual_begin(model);
      cnn_add_conv2d(model, 12, 3, 2, 1);       /* (12, 7, 7) */
      cnn_add_batch_norm(model);
      cnn_add_leaky_relu(model, 0.1f);
    cnn_add_residual_end(model, CNN_INIT_DEFAULT); /* + a 1x1 projection, stride 2 */
    cnn_add_relu(model);
    pool.type = CNN_LAYER_AVG_POOL; pool.ceil_mode = 1;
    cnn_model_add(model, &pool);                /* (12, 4, 4): the last windows hang over the padding */
    cnn_add_batch_norm(model);
    cnn_add_global_avg_pool(model);             /* (12) */
    cnn_add_dense(model, 7);
    cnn_add_batch_norm(model);
    cnn_add_softmax(model);
    if ((result = cnn_model_build(model, 64)) != CNN_OK) return result;
    test_randomise_weights(model, 10);
    set_running_estimates(model);
    return CNN_OK;
}

/* What int8 takes of those: batch norm right after conv2d and dense (folded
   in), padded pools, one in ceil mode, and global average pooling. */
static cnn_result folded(cnn_model *model)
{
    cnn_layer_desc pool;
    cnn_result result;
    cnn_model_init(model, 1, 28, 28, 11);
    memset(&pool, 0, sizeof pool);
    cnn_add_conv2d(model, 6, 3, 1, 1);
    cnn_add_batch_norm(model);
    cnn_add_relu(model);
    pool.type = CNN_LAYER_MAX_POOL; pool.kernel = 3; pool.stride = 2; pool.padding = 1; pool.ceil_mode = 1;
    cnn_model_add(model, &pool);                /* (6, 14, 14) */
    cnn_add_conv2d(model, 8, 3, 1, 0);          /* (8, 12, 12) */
    cnn_add_batch_norm(model);
    cnn_add_relu(model);
    pool.type = CNN_LAYER_AVG_POOL; pool.ceil_mode = 0;
    cnn_model_add(model, &pool);                /* (8, 6, 6) */
    cnn_add_global_avg_pool(model);
    cnn_add_dense(model, 10);
    cnn_add_batch_norm(model);
    cnn_add_softmax(model);
    if ((result = cnn_model_build(model, 64)) != CNN_OK) return result;
    test_randomise_weights(model, 12);
    set_running_estimates(model);
    return CNN_OK;
}

/* Compiles OUT.c with a main that runs NAME_predict on the images; returns
   its classes and probabilities (classes values a sample) in the given
   arrays, or 0 when something failed (said in a CHECK). */
static int run_exported(const char *c_file, const char *name, size_t classes, int *got_classes, float *got_probabilities)
{
    char main_c[1024], program[1024], input[1024], output[1024], command[4096];
    const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
    FILE *file;
    size_t n;
    int ok;
    snprintf(main_c, sizeof main_c, "%s", test_path("export_main.c"));
    snprintf(program, sizeof program, "%s", test_path("export_program"));
    snprintf(input, sizeof input, "%s", test_path("export_input.bin"));
    snprintf(output, sizeof output, "%s", test_path("export_output.bin"));
    file = fopen(main_c, "w");
    if (!file) return 0;
    fprintf(file,
            "#include <stdio.h>\n"
            "int %s_predict(const float *input, float *probabilities);\n"
            "int main(int argc, char **argv)\n"
            "{\n"
            "    static float x[784], p[%lu];\n"
            "    FILE *in = fopen(argv[1], \"rb\"), *out = fopen(argv[2], \"wb\");\n"
            "    if (argc != 3 || !in || !out) return 2;\n"
            "    while (fread(x, sizeof x, 1, in) == 1) {\n"
            "        int c = %s_predict(x, p);\n"
            "        fwrite(&c, sizeof c, 1, out);\n"
            "        fwrite(p, sizeof p, 1, out);\n"
            "    }\n"
            "    return fclose(out) != 0;\n"
            "}\n",
            name, (unsigned long)classes, name);
    fclose(file);
    file = fopen(input, "wb");
    if (!file) return 0;
    fwrite(images.images.data, sizeof(float), cnn_tensor_count(&images.images), file);
    fclose(file);
    snprintf(command, sizeof command, "%s -std=c99 -O2 -Wall -Wextra -pedantic -Werror -ffp-contract=off '%s' '%s' -o '%s' -lm", cc, c_file,
             main_c, program);
    fflush(stdout);
    ok = system(command) == 0;
    CHECK(ok, "%s", command);
    if (!ok) return 0;
    snprintf(command, sizeof command, "'%s' '%s' '%s'", program, input, output);
    ok = system(command) == 0;
    CHECK(ok, "%s", command);
    file = ok ? fopen(output, "rb") : NULL;
    if (!file) return 0;
    for (n = 0; n < (size_t)images.count; n++) {
        ok &= fread(&got_classes[n], sizeof(int), 1, file) == 1;
        ok &= fread(got_probabilities + n * classes, sizeof(float), classes, file) == classes;
    }
    fclose(file);
    CHECK(ok, "%s: short output", output);
    return ok;
}

/* The file compiles under -Werror as C99, as C++11 and freestanding. */
static void check_compiles(const char *c_file)
{
    static const char *const ways[] = {"-std=c99 -Wall -Wextra -pedantic -Werror", "-std=c99 -ffreestanding -Wall -Wextra -pedantic -Werror",
                                       "-std=c++11 -Wall -Wextra -pedantic -Werror -x c++"};
    const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc", *cxx = getenv("CXX") && *getenv("CXX") ? getenv("CXX") : "c++";
    char command[4096], object[1024];
    int i;
    snprintf(object, sizeof object, "%s", test_path("export_check.o"));
    for (i = 0; i < 3; i++) {
        snprintf(command, sizeof command, "%s %s -c '%s' -o '%s'", i == 2 ? cxx : cc, ways[i], c_file, object);
        fflush(stdout);
        CHECK(system(command) == 0, "%s", command);
    }
}

/* kinds: 1 float32, 2 int8, 3 both */
static void check_model_kinds(cnn_result (*make)(cnn_model *), const char *what, int kinds)
{
    static cnn_model model;
    cnn_quantized q;
    cnn_export_desc desc;
    int *want = (int *)malloc(ROWS * sizeof(int)), *got = (int *)malloc(ROWS * sizeof(int)), int8;
    float *want_p, *got_p;
    size_t classes;
    EXPECT(make(&model), CNN_OK, NULL);
    classes = cnn_shape_count(cnn_model_output_shape(&model));
    want_p = (float *)malloc(ROWS * classes * sizeof(float));
    got_p = (float *)malloc(ROWS * classes * sizeof(float));
    for (int8 = 0; int8 < 2; int8++) {
        char path[1024];
        if (!(kinds & (1 << int8))) continue;
        const char *name = int8 ? "exported_q" : "exported_f";
        size_t n, mismatched = 0;
        double worst = 0.0;
        snprintf(path, sizeof path, "%s", test_path(int8 ? "exported_q.c" : "exported_f.c"));
        memset(&desc, 0, sizeof desc);
        desc.name = name;
        desc.int8 = int8;
        desc.calibration = &images;
        desc.calibration_rows = 500;
        EXPECT(cnn_model_export_c(&model, path, &desc), CNN_OK, NULL);
        check_compiles(path);
        if (int8) {
            EXPECT(cnn_quantize(&q, &model, &images, 500), CNN_OK, NULL);
            EXPECT(cnn_quantized_predict(&q, images.images.data, ROWS, want, want_p), CNN_OK, NULL);
            cnn_quantized_free(&q);
        } else {
            EXPECT(cnn_model_predict(&model, images.images.data, ROWS, want, want_p), CNN_OK, NULL);
        }
        if (!run_exported(path, name, classes, got, got_p)) continue;
        for (n = 0; n < ROWS; n++) {
            /* float: a class may differ only where two probabilities tie within rounding */
            size_t k, ties = 0;
            for (k = 0; k < classes && !int8; k++) ties += fabsf(want_p[n * classes + k] - want_p[n * classes + (size_t)want[n]]) <= 1e-6f;
            mismatched += want[n] != got[n] && (int8 || ties < 2);
        }
        worst = test_max_abs_diff(want_p, got_p, ROWS * classes);
        printf("    %s, %s: %lu of %d classes differ from the library's%s, probabilities by at most %.2g\n", what, int8 ? "int8" : "float32",
               (unsigned long)mismatched, ROWS, int8 ? "" : " (but for ties)", worst);
        CHECK(mismatched == 0, "%s %s: %lu classes differ", what, int8 ? "int8" : "float32", (unsigned long)mismatched);
        CHECK(worst <= (int8 ? 1e-6 : 1e-5), "%s %s: probabilities differ by %g", what, int8 ? "int8" : "float32", worst);
    }
    free(want); free(got); free(want_p); free(got_p);
    cnn_model_free(&model);
}

static void check_model(cnn_result (*make)(cnn_model *), const char *what)
{
    check_model_kinds(make, what, 3);
}

TEST(exported_lenet5_computes_what_the_library_does)
{
    check_model(lenet5, "LeNet-5");
}

TEST(exported_every_layer_computes_what_the_library_does)
{
    check_model(every_layer, "every layer");
}

/* Batch norm, residual blocks, global average pooling and padded pools in
   float32; and the file says the RAM the blocks' inputs take: two buffers
   of the largest activation (8, 28, 28) and one (8, 14, 14) for each of
   the two depths of blocks. */
TEST(exported_residual_batch_norm_model_computes_what_the_library_does)
{
    static cnn_model model;
    static char text[4096];
    FILE *file;
    size_t length;
    check_model_kinds(modern, "batch norm, residual, global average pool, padded pools", 1);
    EXPECT(modern(&model), CNN_OK, NULL);
    EXPECT(cnn_model_export_c(&model, test_path("modern.c"), NULL), CNN_OK, NULL);
    file = fopen(test_path("modern.c"), "r");
    CHECK(file != NULL, "%s", test_path("modern.c"));
    if (file) {
        length = fread(text, 1, sizeof text - 1, file);
        text[length] = '\0';
        fclose(file);
        CHECK(strstr(text, "RAM: 62720 bytes (two buffers of activations,\n   and 12544 of them the inputs residual blocks keep") != NULL,
              "the RAM in the file's comment:\n%s", text);
    }
    cnn_model_free(&model);
}

/* Quantizes model into q, calibrated on the first 1,000 images, and
   returns on how many of the ROWS images int8 gives float32's class,
   printed after what. */
static int int8_agreement(cnn_model *model, cnn_quantized *q, const char *what)
{
    int *f = (int *)malloc(ROWS * sizeof(int)), *i8 = (int *)malloc(ROWS * sizeof(int)), n, same = 0;
    EXPECT(cnn_quantize(q, model, &images, 1000), CNN_OK, NULL);
    EXPECT(cnn_model_predict(model, images.images.data, ROWS, f, NULL), CNN_OK, NULL);
    EXPECT(cnn_quantized_predict(q, images.images.data, ROWS, i8, NULL), CNN_OK, NULL);
    for (n = 0; n < ROWS; n++) same += f[n] == i8[n];
    printf("    %s: int8 agrees with float32 on %d of %d images\n", what, same, ROWS);
    free(f);
    free(i8);
    return same;
}

/* int8 with batch norm folded into the conv2d or dense before it, padded
   pools and global average pooling: the file computes what the library
   does, and the int8 model keeps most of the float model's answers (a
   fold gone wrong keeps few). Fewer than LeNet-5's: with random weights
   the batch norm after the last dense layer magnifies differences between
   images that are small next to the codes' steps (85% on generated
   images, 94% on EMNIST's). */
TEST(exported_folded_batch_norm_computes_what_the_library_does)
{
    static cnn_model model;
    cnn_quantized q;
    int same;
    check_model(folded, "folded batch norm, global average pool, padded pools");
    EXPECT(folded(&model), CNN_OK, NULL);
    same = int8_agreement(&model, &q, "folded batch norm");
    CHECK(same >= ROWS * 80 / 100, "int8 and float agree on only %d of %d", same, ROWS);
    cnn_quantized_free(&q);
    cnn_model_free(&model);
}

/* int8 keeps the float model's answers on most images; each output
   channel's weights span [-127, 127] symmetrically, its largest at +-127. */
TEST(int8_stays_close_to_float)
{
    static cnn_model model;
    cnn_quantized q;
    int same, l, bad = 0;
    EXPECT(lenet5(&model), CNN_OK, NULL);
    same = int8_agreement(&model, &q, "LeNet-5, random weights");
    for (l = 0; l < q.layer_count; l++) {
        size_t outputs = q.layers[l].bias_count, per = outputs ? q.layers[l].weight_count / outputs : 0, o, k;
        for (o = 0; o < outputs; o++) {
            int largest = 0;
            for (k = 0; k < per; k++) {
                int code = q.quant[l].weight[o * per + k];
                bad += code < -127;
                largest = abs(code) > largest ? abs(code) : largest;
            }
            bad += largest != 127;
        }
    }
    CHECK(same >= ROWS * 95 / 100, "int8 and float agree on only %d of %d", same, ROWS);
    CHECK(bad == 0, "%d output channels whose codes are not symmetric with a largest of 127", bad);
    CHECK(q.quant[0].weight_scale[0] > 0.0f && q.input_zero == -128 && q.input_scale > 0.0f, "input scale %g zero %d",
          (double)q.input_scale, q.input_zero);
    cnn_quantized_free(&q);
    cnn_model_free(&model);
}

/* The fixed-point multiply: within 1 of the exact product (it rounds twice,
   as TensorFlow Lite's kernels do). */
TEST(requantize_rounds_like_tensorflow_lite)
{
    static const double multipliers[] = {0.5, 0.75, 0.0003, 1.0 / 3.0, 0.999999, 2.5, 1e-9};
    static const int32_t sums[] = {0, 1, -1, 5, -5, 1000, -1000, 123456, -123456, 2147483647, -2147483647};
    size_t i, j, bad = 0;
    for (i = 0; i < sizeof multipliers / sizeof multipliers[0]; i++) {
        int32_t multiplier;
        int shift;
        cnn__quantize_multiplier(multipliers[i], &multiplier, &shift);
        for (j = 0; j < sizeof sums / sizeof sums[0]; j++) {
            double exact = (double)sums[j] * multiplier * ldexp(1.0, shift - 31);
            int32_t got = cnn__requantize(sums[j], multiplier, shift);
            if (shift > 0 && fabs((double)sums[j]) * ldexp(1.0, shift) > 2147483647.0) continue;  /* saturates first */
            if (fabs((double)got - exact) > 1.0) {
                if (bad++ < 5) printf("    %d x %g: got %ld, exact %.3f\n", (int)sums[j], multipliers[i], (long)got, exact);
            }
        }
    }
    CHECK(bad == 0, "%lu products off by more than rounding", (unsigned long)bad);
}

TEST(exports_that_cannot_be_made_are_refused)
{
    static cnn_model model;
    cnn_export_desc desc;
    cnn_dataset flat;
    cnn_quantized q;
    size_t i;
    EXPECT(lenet5(&model), CNN_OK, NULL);
    memset(&desc, 0, sizeof desc);
    desc.name = "9lives";
    EXPECT(cnn_model_export_c(&model, test_path("x.c"), &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    CHECK(strstr(model.error.message, "not a C identifier") != NULL, "message: %s", model.error.message);
    desc.name = "my-model";
    EXPECT(cnn_model_export_c(&model, test_path("x.c"), &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    desc.name = NULL;
    desc.int8 = 1;
    EXPECT(cnn_model_export_c(&model, test_path("x.c"), &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    CHECK(strstr(model.error.message, "needs calibration images") != NULL, "message: %s", model.error.message);
    /* all-constant calibration images: a clear error, not NaN scales */
    make_random_dataset(&flat, 10, 28, 47, 1);
    for (i = 0; i < cnn_tensor_count(&flat.images); i++) flat.images.data[i] = 0.5f;
    EXPECT(cnn_quantize(&q, &model, &flat, 0), CNN_ERROR_INVALID_ARGUMENT, &q.error);
    CHECK(strstr(q.error.message, "every value of the 10 calibration images is 0.5") != NULL, "message: %s", q.error.message);
    desc.calibration = &flat;
    EXPECT(cnn_model_export_c(&model, test_path("x.c"), &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    flat.count = 0;
    EXPECT(cnn_quantize(&q, &model, &flat, 0), CNN_ERROR_INVALID_ARGUMENT, &q.error);
    CHECK(strstr(q.error.message, "empty") != NULL, "message: %s", q.error.message);
    cnn_dataset_free(&flat);
    cnn_model_free(&model);
    /* a softmax before the end, and a layer whose outputs never change */
    cnn_model_init(&model, 1, 28, 28, 1);
    cnn_add_flatten(&model);
    cnn_add_softmax(&model);
    cnn_add_dense(&model, 3);
    EXPECT(cnn_model_build(&model, 8), CNN_OK, NULL);
    EXPECT(cnn_quantize(&q, &model, &images, 100), CNN_ERROR_INVALID_ARGUMENT, &q.error);
    CHECK(strstr(q.error.message, "layer 1 is a softmax") != NULL, "message: %s", q.error.message);
    cnn_model_free(&model);
    cnn_model_init(&model, 1, 28, 28, 1);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 3);
    EXPECT(cnn_model_build(&model, 8), CNN_OK, NULL);
    memset(model.params, 0, model.param_count * sizeof(float));
    EXPECT(cnn_quantize(&q, &model, &images, 100), CNN_ERROR_INVALID_ARGUMENT, &q.error);
    CHECK(strstr(q.error.message, "layer 1 (dense) gives 0 for every calibration image") != NULL, "message: %s", q.error.message);
    EXPECT(cnn_quantized_predict(&q, images.images.data, 1, &model.batch, NULL), CNN_ERROR_STATE, &q.error);
    desc.name = "_Model";
    desc.int8 = 0;
    EXPECT(cnn_model_export_c(&model, test_path("x.c"), &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    model.params[0] = (float)NAN;
    desc.name = NULL;
    EXPECT(cnn_model_export_c(&model, test_path("x.c"), &desc), CNN_ERROR_NOT_FINITE, &model.error);
    cnn_model_free(&model);
    /* the float export refuses a softmax before the end too */
    cnn_model_init(&model, 1, 28, 28, 1);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 4);
    cnn_add_softmax(&model);
    cnn_add_dense(&model, 3);
    EXPECT(cnn_model_build(&model, 8), CNN_OK, NULL);
    EXPECT(cnn_model_export_c(&model, test_path("x.c"), NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    CHECK(strstr(model.error.message, "layer 2 is a softmax") != NULL, "message: %s", model.error.message);
    cnn_model_free(&model);
    /* int8 has no residual blocks, and folds a batch norm only into a conv2d
       or dense layer right before it; the float export takes both */
    EXPECT(modern(&model), CNN_OK, NULL);
    EXPECT(cnn_quantize(&q, &model, &images, 100), CNN_ERROR_INVALID_ARGUMENT, &q.error);
    CHECK(strstr(q.error.message, "layer 4 (residual_begin) is part of a residual block") != NULL, "message: %s", q.error.message);
    memset(&desc, 0, sizeof desc);
    desc.int8 = 1;
    desc.calibration = &images;
    EXPECT(cnn_model_export_c(&model, test_path("x.c"), &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    CHECK(strstr(model.error.message, "residual block") != NULL, "message: %s", model.error.message);
    model.layers[1].running_var[2] = -1.0f;  /* a variance no training gives: no finite scale */
    EXPECT(cnn_model_export_c(&model, test_path("x.c"), NULL), CNN_ERROR_NOT_FINITE, &model.error);
    CHECK(strstr(model.error.message, "layer 1 (batch_norm), channel 2") != NULL, "message: %s", model.error.message);
    cnn_model_free(&model);
    cnn_model_init(&model, 1, 28, 28, 1);
    cnn_add_conv2d(&model, 4, 3, 1, 1);
    cnn_add_relu(&model);
    cnn_add_max_pool(&model, 2, 2);
    cnn_add_batch_norm(&model);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 3);
    EXPECT(cnn_model_build(&model, 8), CNN_OK, NULL);
    EXPECT(cnn_quantize(&q, &model, &images, 100), CNN_ERROR_INVALID_ARGUMENT, &q.error);
    CHECK(strstr(q.error.message, "layer 3 (batch_norm) follows a max_pool") != NULL, "message: %s", q.error.message);
    EXPECT(cnn_model_export_c(&model, test_path("x.c"), NULL), CNN_OK, NULL);
    cnn_model_free(&model);
    cnn_model_init(&model, 1, 28, 28, 1);
    cnn_add_batch_norm(&model);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 3);
    EXPECT(cnn_model_build(&model, 8), CNN_OK, NULL);
    EXPECT(cnn_quantize(&q, &model, &images, 100), CNN_ERROR_INVALID_ARGUMENT, &q.error);
    CHECK(strstr(q.error.message, "layer 0 (batch_norm) follows the input") != NULL, "message: %s", q.error.message);
    cnn_model_free(&model);
    /* a dataset that counts more images than it holds */
    make_random_dataset(&flat, 10, 28, 47, 1);
    flat.count = 1000;
    EXPECT(lenet5(&model), CNN_OK, NULL);
    EXPECT(cnn_quantize(&q, &model, &flat, 0), CNN_ERROR_INVALID_ARGUMENT, &q.error);
    cnn_dataset_free(&flat);
    cnn_model_free(&model);
}

/* Models at the edges of the writer compile under -Werror and give the
   library's answers: no layer that changes buffers, int8 without conv2d
   or dense, a bias far beyond its weights (whose int32 sum must not
   overflow), and near-ties, whose float class must be the first largest
   probability. */
static cnn_result edge_no_swaps(cnn_model *model)
{
    cnn_model_init(model, 1, 28, 28, 7);
    cnn_add_sigmoid(model);
    cnn_add_flatten(model);
    return cnn_model_build(model, 64);
}

static cnn_result edge_pools_only(cnn_model *model)
{
    cnn_model_init(model, 1, 28, 28, 7);
    cnn_add_avg_pool(model, 2, 2);
    cnn_add_max_pool(model, 7, 7);
    cnn_add_tanh(model);
    cnn_add_flatten(model);
    cnn_add_softmax(model);
    return cnn_model_build(model, 64);
}

static cnn_result edge_dead_channel(cnn_model *model)
{
    cnn_result result;
    size_t i;
    cnn_model_init(model, 1, 28, 28, 7);
    cnn_add_flatten(model);
    cnn_add_dense(model, 3);
    cnn_add_softmax(model);
    if ((result = cnn_model_build(model, 64)) != CNN_OK) return result;
    test_randomise_weights(model, 8);
    for (i = 0; i < 784; i++) model->layers[1].weight[i * 3 + 1] = 1e-6f; /* output 1: tiny weights ... */
    model->layers[1].bias[1] = 0.6f;                                       /* ... and a bias that often wins */
    return CNN_OK;
}

TEST(edge_models_export_cleanly)
{
    static cnn_result (*const makers[])(cnn_model *) = {edge_no_swaps, edge_pools_only, edge_dead_channel};
    static const char *const names[] = {"no buffer swaps", "pools only", "dead channel"};
    size_t i;
    for (i = 0; i < sizeof makers / sizeof makers[0]; i++) check_model(makers[i], names[i]);
}

/* The nearly dead channel above: with its weights at full range, its
   bias would take more than int32 holds; the int8 model still gives the
   float model's classes. */
TEST(int8_sums_never_overflow)
{
    static cnn_model model;
    cnn_quantized q;
    int same;
    EXPECT(edge_dead_channel(&model), CNN_OK, NULL);
    same = int8_agreement(&model, &q, "dead channel");
    CHECK(same >= ROWS * 95 / 100, "int8 and float agree on only %d of %d", same, ROWS);
    cnn_quantized_free(&q);
    cnn_model_free(&model);
}

/* Every external symbol carries the name: two exported models link into
   one program beside cnn.h's implementation. */
TEST(two_exports_link_beside_the_library)
{
    static cnn_model model;
    cnn_export_desc desc;
    char first[1024], second[1024], main_c[1024], command[4096];
    const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
    FILE *file;
    EXPECT(lenet5(&model), CNN_OK, NULL);
    snprintf(first, sizeof first, "%s", test_path("first.c"));
    snprintf(second, sizeof second, "%s", test_path("second.c"));
    snprintf(main_c, sizeof main_c, "%s", test_path("both_main.c"));
    memset(&desc, 0, sizeof desc);
    desc.name = "first";
    EXPECT(cnn_model_export_c(&model, first, &desc), CNN_OK, NULL);
    desc.name = "second";
    desc.int8 = 1;
    desc.calibration = &images;
    desc.calibration_rows = 100;
    EXPECT(cnn_model_export_c(&model, second, &desc), CNN_OK, NULL);
    file = fopen(main_c, "w");
    CHECK(file != NULL, "%s", main_c);
    if (!file) return;
    fprintf(file, "#define CNN_IMPLEMENTATION\n#include \"cnn.h\"\n"
                  "int first_predict(const float *input, float *probabilities);\n"
                  "int second_predict(const float *input, float *probabilities);\n"
                  "int main(void)\n{\n    static float x[784];\n"
                  "    return first_predict(x, 0) < 0 || second_predict(x, 0) < 0 || cnn_shape_count(cnn_model_output_shape(0)) != 0;\n}\n");
    fclose(file);
    snprintf(command, sizeof command, "%s -std=c99 -Wall -Wextra -pedantic -Werror -I. '%s' '%s' '%s' -o '%s' -lm && '%s'", cc, main_c, first,
             second, test_path("both"), test_path("both"));
    fflush(stdout);
    CHECK(system(command) == 0, "%s", command);
    cnn_model_free(&model);
}

int main(void)
{
    load_images();
    RUN(exported_lenet5_computes_what_the_library_does);
    RUN(exported_every_layer_computes_what_the_library_does);
    RUN(exported_residual_batch_norm_model_computes_what_the_library_does);
    RUN(exported_folded_batch_norm_computes_what_the_library_does);
    RUN(int8_stays_close_to_float);
    RUN(requantize_rounds_like_tensorflow_lite);
    RUN(exports_that_cannot_be_made_are_refused);
    RUN(two_exports_link_beside_the_library);
    RUN(edge_models_export_cleanly);
    RUN(int8_sums_never_overflow);
    cnn_dataset_free(&images);
    return test_report();
}
