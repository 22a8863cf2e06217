/* libFuzzer target: cnn_model_load_memory. The whole input is the model
   file. A model that loads must hold finite parameters and run forward on
   a zero input (fuzz_check_loaded): that checks that the layers the file
   described fit the memory the build handed out. A few bytes can describe
   a model that takes seconds to run, which is no bug but would slow the
   fuzzer a thousandfold; so allocations stop at 1 MB (a model of 250,000
   floats in all: parameters, gradients, activations) and the forward pass
   runs only when it costs under a million multiply-adds. */
#define FUZZ_ALLOCATION_LIMIT ((size_t)1 << 20)
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cnn_model model; /* large: keep it off the stack */
    cnn_result result = cnn_model_load_memory(&model, data, size, 1);
    fuzz_check_error(result, &model.error);
    if (result != CNN_OK) {
        if (model.memory || model.int_memory || model.layer_count) abort();
        return 0;
    }
    fuzz_check_loaded(&model);
    cnn_model_free(&model);
    return 0;
}
