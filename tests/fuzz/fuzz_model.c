/* libFuzzer target: cnn_model_load_memory. The whole input is the model
   file. A model that loads is run forward once on a zero input: that checks
   that the layers the file described fit the memory the build handed out.
   A few bytes can describe a model that takes seconds to run, which is no
   bug but would slow the fuzzer a thousandfold; so allocations stop at 1 MB
   (a model of 250,000 floats in all: parameters, gradients, activations)
   and the forward pass runs only when it costs under a million
   multiply-adds. */
#include <math.h>
#define FUZZ_ALLOCATION_LIMIT ((size_t)1 << 20)
#include "fuzz.h"

/* Multiply-adds of one forward pass of one sample, roughly. */
static double forward_cost(const cnn_model *model)
{
    double cost = 0.0;
    int i;
    for (i = 0; i < model->layer_count; i++) {
        const cnn_layer *layer = &model->layers[i];
        double out = (double)cnn_shape_count(layer->out), in = (double)cnn_shape_count(layer->in);
        double k = (double)layer->desc.kernel;
        if (layer->desc.type == CNN_LAYER_CONV2D) cost += out * layer->in.c * k * k + in * k * k; /* GEMM + im2col */
        else if (layer->desc.type == CNN_LAYER_DENSE) cost += out * in;
        else if (layer->desc.type == CNN_LAYER_MAX_POOL || layer->desc.type == CNN_LAYER_AVG_POOL) cost += out * k * k;
        else cost += out + in;
    }
    return cost;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cnn_model model; /* large: keep it off the stack */
    cnn_result result;
    float *input;
    size_t count, i;
    result = cnn_model_load_memory(&model, data, size, 1);
    fuzz_check_error(result, &model.error);
    if (result != CNN_OK) {
        if (model.memory || model.int_memory || model.layer_count) abort();
        return 0;
    }
    for (i = 0; i < model.param_count; i++)
        if (!isfinite(model.params[i])) abort(); /* the loader refuses NaN and infinity */
    count = cnn_shape_count(model.input);
    input = forward_cost(&model) < 1e6 ? (float *)calloc(count, sizeof(float)) : NULL;
    if (input) {
        result = cnn_model_forward(&model, input, 1, CNN_MODE_EVAL);
        fuzz_check_error(result, &model.error);
        if (result != CNN_OK) abort(); /* a loaded model always runs */
        free(input);
    }
    cnn_model_free(&model);
    return 0;
}
