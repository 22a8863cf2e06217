/* test_summary.c - shape inference and parameter counts of three classic
   networks, described without building (nothing is allocated), against the
   totals their papers and Keras give: LeNet-5 61,706, AlexNet 62,378,344,
   VGG16 138,357,544. The same models are in examples/summary.c. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

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
    cnn_model_init(&model, 1, 32, 32, 1);
    cnn_add_conv2d(&model, 6, 5, 1, 0);
    cnn_add_tanh(&model);
    cnn_add_avg_pool(&model, 2, 2);
    cnn_add_conv2d(&model, 16, 5, 1, 0);
    cnn_add_tanh(&model);
    cnn_add_avg_pool(&model, 2, 2);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 120);
    cnn_add_tanh(&model);
    cnn_add_dense(&model, 84);
    cnn_add_tanh(&model);
    cnn_add_dense(&model, 10);
    cnn_add_softmax(&model);
    check_total(&model, 61706, "61,706");
    CHECK(model.layers[6].out.c == 400, "flatten gives 16 * 5 * 5 = 400, got %d", model.layers[6].out.c);
    out = cnn_model_output_shape(&model);
    CHECK(out.c == 10 && out.h == 1 && out.w == 1, "output (%d, %d, %d)", out.c, out.h, out.w);
    cnn_model_free(&model);
}

TEST(alexnet_has_62378344_parameters)
{
    cnn_model_init(&model, 3, 227, 227, 1);
    cnn_add_conv2d(&model, 96, 11, 4, 0);
    cnn_add_relu(&model);
    cnn_add_max_pool(&model, 3, 2);
    cnn_add_conv2d(&model, 256, 5, 1, 2);
    cnn_add_relu(&model);
    cnn_add_max_pool(&model, 3, 2);
    cnn_add_conv2d(&model, 384, 3, 1, 1);
    cnn_add_relu(&model);
    cnn_add_conv2d(&model, 384, 3, 1, 1);
    cnn_add_relu(&model);
    cnn_add_conv2d(&model, 256, 3, 1, 1);
    cnn_add_relu(&model);
    cnn_add_max_pool(&model, 3, 2);
    CHECK(model.layers[0].out.h == 55 && model.layers[2].out.h == 27 && model.layers[5].out.h == 13, "55, 27, 13: %d %d %d",
          model.layers[0].out.h, model.layers[2].out.h, model.layers[5].out.h);
    cnn_add_flatten(&model);
    CHECK(model.layers[model.layer_count - 1].out.c == 9216, "flatten gives 256 * 6 * 6 = 9216, got %d",
          model.layers[model.layer_count - 1].out.c);
    cnn_add_dense(&model, 4096);
    cnn_add_relu(&model);
    cnn_add_dropout(&model, 0.5f);
    cnn_add_dense(&model, 4096);
    cnn_add_relu(&model);
    cnn_add_dropout(&model, 0.5f);
    cnn_add_dense(&model, 1000);
    cnn_add_softmax(&model);
    check_total(&model, 62378344, "62,378,344");
    cnn_model_free(&model);
}

TEST(vgg16_has_138357544_parameters)
{
    static const int filters[5] = {64, 128, 256, 512, 512};
    static const int convs[5] = {2, 2, 3, 3, 3};
    int block, i;
    cnn_model_init(&model, 3, 224, 224, 1);
    for (block = 0; block < 5; block++) {
        for (i = 0; i < convs[block]; i++) {
            cnn_add_conv2d(&model, filters[block], 3, 1, 1);
            cnn_add_relu(&model);
        }
        cnn_add_max_pool(&model, 2, 2);
    }
    cnn_add_flatten(&model);
    CHECK(model.layers[model.layer_count - 1].out.c == 25088, "flatten gives 512 * 7 * 7 = 25088, got %d",
          model.layers[model.layer_count - 1].out.c);
    cnn_add_dense(&model, 4096);
    cnn_add_relu(&model);
    cnn_add_dropout(&model, 0.5f);
    cnn_add_dense(&model, 4096);
    cnn_add_relu(&model);
    cnn_add_dropout(&model, 0.5f);
    cnn_add_dense(&model, 1000);
    cnn_add_softmax(&model);
    check_total(&model, 138357544, "138,357,544");
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
    return test_report();
}
