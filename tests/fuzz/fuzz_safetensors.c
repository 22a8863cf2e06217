/* libFuzzer target: the safetensors reader. The whole input is the file,
   read two ways:
   - cnn_model_from_safetensors_memory builds a model from the file's cnn.h
     metadata. A model that loads must hold finite parameters and run
     (fuzz_check_loaded), and cnn_model_load_safetensors_memory must fill it
     again from the same bytes with the same values; a model that does not
     load is left freed, with a message.
   - cnn_model_load_safetensors_memory fills a small model built once
     (fuzz_safetensors_model in fuzz.h), which needs no metadata. On failure
     its parameters are those it had, bit for bit; on success they are
     finite.
   Allocations stop at 1 MB, as in fuzz_model.c. */
#define FUZZ_ALLOCATION_LIMIT ((size_t)1 << 20)
#include "fuzz.h"

/* The model the file describes: filled a second time by the loader that
   wants a built model, which must agree with the first. */
static void check_built_from_file(cnn_model *model, const uint8_t *data, size_t size)
{
    static float first[(FUZZ_ALLOCATION_LIMIT) / sizeof(float)]; /* params fit in what the build could allocate */
    size_t bytes = model->param_count * sizeof(float);
    cnn_result result;
    fuzz_check_loaded(model);
    if (bytes > sizeof first) abort();
    memcpy(first, model->params, bytes);
    memset(model->params, 0, bytes);
    result = cnn_model_load_safetensors_memory(model, data, size);
    fuzz_check_error(result, &model->error);
    if (result != CNN_OK || memcmp(first, model->params, bytes) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cnn_model model, fixed; /* large: keep them off the stack */
    static float before[128];      /* fixed's parameters before the load */
    cnn_result result;
    size_t i;

    result = cnn_model_from_safetensors_memory(&model, data, size, 1);
    fuzz_check_error(result, &model.error);
    if (result == CNN_OK) {
        check_built_from_file(&model, data, size);
        cnn_model_free(&model);
    } else if (model.memory || model.int_memory || model.layer_count) {
        abort();
    }

    if (!fixed.memory && (fuzz_safetensors_model(&fixed) != CNN_OK || fixed.param_count > 128)) abort();
    memcpy(before, fixed.params, fixed.param_count * sizeof(float));
    result = cnn_model_load_safetensors_memory(&fixed, data, size);
    fuzz_check_error(result, &fixed.error);
    if (result != CNN_OK && memcmp(before, fixed.params, fixed.param_count * sizeof(float)) != 0) abort();
    if (result == CNN_OK)
        for (i = 0; i < fixed.param_count; i++)
            if (!isfinite(fixed.params[i])) abort();
    return 0;
}
