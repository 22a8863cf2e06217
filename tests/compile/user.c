/* The second translation unit of the link check: it includes cnn.h without
   the implementation and uses it, so the declarations must match the one
   definition in impl.c. It also reads a model that impl.c built: the
   public structs must have one layout, whether impl.c was built with
   CNN_NO_FAST or not (two_units_link_plain). */
#include "../../cnn.h"
#include <stdio.h>
#include <string.h>

int compile_check_layers(void);

int main(void)
{
    static const float x[2 * 8 * 8] = {0.5f, 1.0f};
    cnn_model model;
    cnn_rng rng;
    const float *p;
    cnn_rng_seed(&rng, 7);
    if (!compile_check_layers()) return 1;
    cnn_model_init(&model, 1, 8, 8, 1);
    cnn_add_conv2d(&model, 2, 3, 1, 1);
    cnn_add_relu(&model);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 3);
    cnn_add_softmax(&model);
    if (cnn_model_build(&model, 2) != CNN_OK || cnn_model_forward(&model, x, 2, CNN_MODE_TRAIN) != CNN_OK) return 1;
    p = cnn_model_output(&model);
    if (model.param_count != 20 + 128 * 3 + 3 || model.layers[3].out.c != 3 || model.batch != 2 ||
        model.activations[5].data != p || !(p[0] + p[1] + p[2] > 0.99f && p[0] + p[1] + p[2] < 1.01f))
        return 1;
    /* the fields after the private one, as impl.c wrote them */
    if (cnn_model_forward(&model, x, 3, CNN_MODE_EVAL) != CNN_ERROR_INVALID_ARGUMENT || !model.memory || !model.labels ||
        model.error.code != CNN_ERROR_INVALID_ARGUMENT || !strstr(model.error.message, "max_batch 2"))
        return 1;
    cnn_model_free(&model);
    printf("%s %u\n", cnn_result_string(CNN_ERROR_BAD_SHAPE), (unsigned)cnn_rng_below(&rng, 10));
    return 0;
}
