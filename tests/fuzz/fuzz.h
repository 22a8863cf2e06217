/* fuzz.h - what every libFuzzer target in this folder shares.

   Build (see `make fuzz` in the Makefile):
       clang -fsanitize=fuzzer,address,undefined -g -O1 tests/fuzz/fuzz_csv.c -o fuzz_csv -lm

   A tiny input can legitimately ask for a huge allocation (an IDX header or a
   model file declaring gigabytes of activations). The library must answer
   that with CNN_ERROR_OUT_OF_MEMORY, not crash; so the targets route every
   allocation through fuzz_malloc, which refuses requests above
   FUZZ_ALLOCATION_LIMIT the way a small machine would. Without it libFuzzer
   would stop at the first such request and report it as a crash of its own
   ("malloc exceeds limit"), which is not a bug in cnn.h.

   seeds.c includes it too, for the model fuzz_safetensors.c fills, so that
   its seeds fit that model. */
#ifndef CNN_FUZZ_H
#define CNN_FUZZ_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_ALLOCATION_LIMIT
#define FUZZ_ALLOCATION_LIMIT ((size_t)64 << 20) /* 64 MB */
#endif

static void *fuzz_malloc(size_t size)
{
    return size > FUZZ_ALLOCATION_LIMIT ? NULL : malloc(size);
}

#define CNN_MALLOC(size) fuzz_malloc(size)
#define CNN_FREE(ptr) free(ptr)
#define CNN_IMPLEMENTATION
#include "../../cnn.h"

/* The helpers below, which each program uses only some of. */
#if defined(__GNUC__) || defined(__clang__)
#define FUZZ_HELPER static __attribute__((unused))
#else
#define FUZZ_HELPER static
#endif

/* Every error must come with a message: a failure with an empty message would
   leave the user guessing. Crashing here makes libFuzzer keep the input. */
FUZZ_HELPER void fuzz_check_error(cnn_result result, const cnn_error *error)
{
    if (result == CNN_OK) return;
    if (error->code != result || error->message[0] == '\0') abort();
    if (memchr(error->message, '\0', sizeof error->message) == NULL) abort();
}

/* Multiply-adds of one forward pass of one sample, roughly. */
FUZZ_HELPER double fuzz_forward_cost(const cnn_model *model)
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

/* What a model that a loader built must satisfy: its parameters are finite
   (loaders refuse NaN and infinity) and it runs. A few bytes can describe a
   model that takes seconds to run, which is no bug but would slow the
   fuzzer a thousandfold, so the forward pass (one sample of zeros) runs
   only when it costs under a million multiply-adds. */
FUZZ_HELPER void fuzz_check_loaded(cnn_model *model)
{
    cnn_result result;
    float *input;
    size_t i;
    for (i = 0; i < model->param_count; i++)
        if (!isfinite(model->params[i])) abort();
    if (fuzz_forward_cost(model) >= 1e6) return;
    input = (float *)calloc(cnn_shape_count(model->input), sizeof(float));
    if (!input) return;
    result = cnn_model_forward(model, input, 1, CNN_MODE_EVAL);
    fuzz_check_error(result, &model->error);
    if (result != CNN_OK) abort(); /* a loaded model always runs */
    free(input);
}

/* The built model fuzz_safetensors.c loads every input into, and seeds.c
   saves for its seeds: input (1, 4, 4); conv2d 2 3x3 padding 1, relu,
   flatten, dense 3, softmax (119 parameters, as "0.weight", "0.bias",
   "3.weight", "3.bias"). */
FUZZ_HELPER cnn_result fuzz_safetensors_model(cnn_model *model)
{
    cnn_model_init(model, 1, 4, 4, 1);
    cnn_add_conv2d(model, 2, 3, 1, 1);
    cnn_add_relu(model);
    cnn_add_flatten(model);
    cnn_add_dense(model, 3);
    cnn_add_softmax(model);
    return cnn_model_build(model, 1);
}

#endif
