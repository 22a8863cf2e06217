/* libFuzzer target: cnn_model_load_memory and cnn_checkpoint_load. The
   whole input is the model file. A model that loads must hold finite
   parameters and run forward on a zero input (fuzz_check_loaded): that
   checks that the layers the file described fit the memory the build
   handed out. A few bytes can describe a model that takes seconds to run,
   which is no bug but would slow the fuzzer a thousandfold; so allocations
   stop at 1 MB (a model of 250,000 floats in all: parameters, gradients,
   activations) and the forward pass runs only when it costs under a
   million multiply-adds.

   A random change to a version-2 file almost always breaks its CRC, and
   the parser behind the CRC check would go unexercised: so an input that
   ends in a "CRC " section is loaded a second time with its CRC made right
   (computed here, independently of cnn.h), as a model and as a checkpoint. */
#define FUZZ_ALLOCATION_LIMIT ((size_t)1 << 20)
#include "fuzz.h"

#include <stdio.h>
#include <unistd.h> /* getpid */

static uint32_t crc32_of(const uint8_t *bytes, size_t size)
{
    uint32_t crc = 0xffffffffu;
    size_t i;
    int bit;
    for (i = 0; i < size; i++) {
        crc ^= bytes[i];
        for (bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void load_model(const uint8_t *data, size_t size)
{
    static cnn_model model; /* large: keep it off the stack */
    cnn_result result = cnn_model_load_memory(&model, data, size, 1);
    fuzz_check_error(result, &model.error);
    if (result != CNN_OK) {
        if (model.memory || model.int_memory || model.layer_count || model.class_names) abort();
        return;
    }
    fuzz_check_loaded(&model);
    cnn_model_free(&model);
}

/* cnn_checkpoint_load reads files only: the input goes through a file. */
static void load_checkpoint(const uint8_t *data, size_t size)
{
    static cnn_model model;
    static char path[64];
    cnn_optimizer optimizer;
    cnn_fit_state state;
    cnn_rng augment;
    cnn_history history;
    cnn_result result;
    FILE *file;
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_checkpoint_%ld.cnn", (long)getpid());
    if (!(file = fopen(path, "wb"))) return;
    fwrite(data, 1, size, file);
    fclose(file);
    memset(&state, 0, sizeof state);
    memset(&history, 0, sizeof history);
    state.augment_rng = &augment;
    state.history = &history;
    result = cnn_checkpoint_load(&model, &optimizer, &state, path, 1);
    fuzz_check_error(result, &model.error);
    if (result != CNN_OK) {
        if (model.memory || optimizer.first_moment || state.best_params || history.epochs) abort();
        return;
    }
    fuzz_check_loaded(&model);
    cnn_optimizer_free(&optimizer);
    cnn_fit_state_free(&state);
    cnn_history_free(&history);
    cnn_model_free(&model);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *fixed;
    uint32_t crc;
    load_model(data, size);
    if (size < 28 || memcmp(data + size - 16, "CRC \4\0\0\0\0\0\0\0", 12) != 0) return 0;
    if (!(fixed = (uint8_t *)malloc(size))) return 0;
    memcpy(fixed, data, size);
    crc = crc32_of(fixed, size - 16);
    fixed[size - 4] = (uint8_t)crc, fixed[size - 3] = (uint8_t)(crc >> 8);
    fixed[size - 2] = (uint8_t)(crc >> 16), fixed[size - 1] = (uint8_t)(crc >> 24);
    load_model(fixed, size);
    load_checkpoint(fixed, size);
    free(fixed);
    return 0;
}
