/* convert.c - a model from one format to another, by the files' endings:

     convert MODEL.cnn OUT.safetensors     for PyTorch (examples/pytorch/cnnh.py)
     convert MODEL.cnn OUT.onnx            for ONNX Runtime and every other runtime
     convert IN.safetensors OUT.cnn        a file from cnn.h or cnnh.py back to cnn.h
     (and IN.safetensors OUT.onnx)

   A .safetensors file read here must carry cnn.h's metadata (the layer
   list), as cnn_model_save_safetensors and cnnh.save write it; a bare
   PyTorch state_dict does not say which layers it belongs to, so build
   that model in C and fill it with cnn_model_load_safetensors. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"

#include <stdio.h>
#include <string.h>

/* 1 when text ends with ending. */
static int ends_with(const char *text, const char *ending)
{
    size_t length = strlen(text), n = strlen(ending);
    return length >= n && strcmp(text + length - n, ending) == 0;
}

int main(int argc, char **argv)
{
    static cnn_model model; /* large (it holds every layer): static, not on the stack */
    const char *in, *out;
    cnn_result result;
    if (argc != 3 || !(ends_with(argv[1], ".cnn") || ends_with(argv[1], ".safetensors")) ||
        !(ends_with(argv[2], ".cnn") || ends_with(argv[2], ".safetensors") || ends_with(argv[2], ".onnx"))) {
        fprintf(stderr, "usage: convert IN.cnn|IN.safetensors OUT.cnn|OUT.safetensors|OUT.onnx\n");
        return 2;
    }
    in = argv[1];
    out = argv[2];
    result = ends_with(in, ".cnn") ? cnn_model_load(&model, in, 1) : cnn_model_from_safetensors(&model, in, 1);
    if (result != CNN_OK) {
        fprintf(stderr, "convert: %s\n", model.error.message);
        return 1;
    }
    if (ends_with(out, ".onnx")) result = cnn_model_export_onnx(&model, out);
    else if (ends_with(out, ".safetensors")) result = cnn_model_save_safetensors(&model, out);
    else result = cnn_model_save(&model, out);
    if (result != CNN_OK) {
        fprintf(stderr, "convert: %s\n", model.error.message);
        cnn_model_free(&model);
        return 1;
    }
    printf("%s (%d layers, %lu parameters, input %dx%dx%d) -> %s\n", in, model.layer_count, (unsigned long)model.param_count,
           model.input.c, model.input.h, model.input.w, out);
    cnn_model_free(&model);
    return 0;
}
