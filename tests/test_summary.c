/* test_summary.c - shape inference and parameter counts of three classic
   networks, described without building (nothing is allocated), against the
   totals their papers and Keras give: LeNet-5 61,706, AlexNet 62,378,344,
   VGG16 138,357,544. The models are examples/summary.c's, from
   examples/classics.h. And the whole text of one summary: residual blocks
   indented, padded pools. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"
#include "../examples/classics.h"

static cnn_model model; /* large: static, not on the stack */

/* Checks the count, the summary's last line and that nothing was allocated. */
static void check_total(const cnn_model *m, size_t expected, const char *expected_text)
{
    static char text[8192];
    char line[64];
    size_t length;
    CHECK(m->definition_error == CNN_OK, "definition: %s", m->error.message);
    CHECK(m->param_count == expected, "param_count %lu, expected %lu", (unsigned long)m->param_count, (unsigned long)expected);
    CHECK(m->memory == NULL && m->params == NULL && m->activations[0].data == NULL, "nothing allocated before build");
    length = cnn_model_summary(m, text, sizeof text);
    CHECK(length > 0 && length < sizeof text, "summary length %lu", (unsigned long)length);
    snprintf(line, sizeof line, "total parameters: %s\n", expected_text);
    CHECK(length >= strlen(line) && strcmp(text + length - strlen(line), line) == 0, "summary ends with '%s'", line);
}

TEST(lenet5_classic_has_61706_parameters)
{
    cnn_shape out;
    describe_lenet5(&model);
    check_total(&model, 61706, "61,706");
    CHECK(model.layers[6].out.c == 400, "flatten gives 16 * 5 * 5 = 400, got %d", model.layers[6].out.c);
    out = cnn_model_output_shape(&model);
    CHECK(out.c == 10 && out.h == 1 && out.w == 1, "output (%d, %d, %d)", out.c, out.h, out.w);
    cnn_model_free(&model);
}

TEST(alexnet_has_62378344_parameters)
{
    describe_alexnet(&model);
    CHECK(model.layers[0].out.h == 55 && model.layers[2].out.h == 27 && model.layers[5].out.h == 13, "55, 27, 13: %d %d %d",
          model.layers[0].out.h, model.layers[2].out.h, model.layers[5].out.h);
    CHECK(model.layers[13].desc.type == CNN_LAYER_FLATTEN && model.layers[13].out.c == 9216,
          "layer 13 is the flatten, giving 256 * 6 * 6 = 9216: type %d, %d", (int)model.layers[13].desc.type, model.layers[13].out.c);
    check_total(&model, 62378344, "62,378,344");
    cnn_model_free(&model);
}

TEST(vgg16_has_138357544_parameters)
{
    describe_vgg16(&model);
    CHECK(model.layers[31].desc.type == CNN_LAYER_FLATTEN && model.layers[31].out.c == 25088,
          "layer 31 is the flatten, giving 512 * 7 * 7 = 25088: type %d, %d", (int)model.layers[31].desc.type, model.layers[31].out.c);
    check_total(&model, 138357544, "138,357,544");
    cnn_model_free(&model);
}

/* A residual block's layers are indented under its begin, two spaces a
   level, and its end is back at the begin's level and says what it adds
   (the block's input, or a projection); padded and ceil-mode pools show
   their padding and "ceil"; batch norm and the projection count their
   parameters (gamma and beta, 8 x 4 weights and 8 biases). */
TEST(summary_indents_residual_blocks)
{
    static const char expected[] =
        "layer                        output shape         parameters\n"
        "input                        (1, 8, 8)                     0\n"
        "conv2d 3x3 s1 p1             (4, 8, 8)                    40\n"
        "max_pool 3x3 s2 p1 ceil      (4, 5, 5)                     0\n"
        "residual_begin               (4, 5, 5)                     0\n"
        "  conv2d 3x3 s2 p1           (8, 3, 3)                   296\n"
        "  batch_norm                 (8, 3, 3)                    16\n"
        "  residual_begin             (8, 3, 3)                     0\n"
        "    relu                     (8, 3, 3)                     0\n"
        "  residual_end + input       (8, 3, 3)                     0\n"
        "residual_end + conv 1x1 s2   (8, 3, 3)                    40\n"
        "relu                         (8, 3, 3)                     0\n"
        "global_avg_pool              (8)                           0\n"
        "dense                        (3)                          27\n"
        "softmax                      (3)                           0\n"
        "total parameters: 419\n";
    static char text[4096];
    cnn_layer_desc pool;
    cnn_model_init(&model, 1, 8, 8, 1);
    cnn_add_conv2d(&model, 4, 3, 1, 1);
    memset(&pool, 0, sizeof pool);
    pool.type = CNN_LAYER_MAX_POOL; pool.kernel = 3; pool.stride = 2; pool.padding = 1; pool.ceil_mode = 1;
    cnn_model_add(&model, &pool);
    cnn_add_residual_begin(&model);
    cnn_add_conv2d(&model, 8, 3, 2, 1);
    cnn_add_batch_norm(&model);
    cnn_add_residual_begin(&model);
    cnn_add_relu(&model);
    cnn_add_residual_end(&model, CNN_INIT_DEFAULT);
    cnn_add_residual_end(&model, CNN_INIT_DEFAULT);
    cnn_add_relu(&model);
    cnn_add_global_avg_pool(&model);
    cnn_add_dense(&model, 3);
    cnn_add_softmax(&model);
    check_total(&model, 419, "419");
    cnn_model_summary(&model, text, sizeof text);
    CHECK(strcmp(text, expected) == 0, "the summary reads\n%s", text);
    cnn_model_free(&model);
}

/* The summary measures itself like snprintf: a short buffer is cut, still
   terminated, and the return value is the full length. */
TEST(summary_reports_its_full_length)
{
    char small[40], big[4096];
    size_t need, full;
    cnn_model_init(&model, 1, 28, 28, 1);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 10);
    need = cnn_model_summary(&model, NULL, 0);
    full = cnn_model_summary(&model, big, sizeof big);
    CHECK(need == full && full == strlen(big), "lengths %lu %lu %lu", (unsigned long)need, (unsigned long)full,
          (unsigned long)strlen(big));
    CHECK(cnn_model_summary(&model, small, sizeof small) == full, "the same length from a short buffer");
    CHECK(strlen(small) == sizeof small - 1 && strncmp(small, big, sizeof small - 1) == 0, "cut, terminated");
    cnn_model_free(&model);
}

int main(void)
{
    RUN(lenet5_classic_has_61706_parameters);
    RUN(alexnet_has_62378344_parameters);
    RUN(vgg16_has_138357544_parameters);
    RUN(summary_reports_its_full_length);
    RUN(summary_indents_residual_blocks);
    return test_report();
}
