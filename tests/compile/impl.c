/* The implementation translation unit of the two-file link check, also
   compiled as C++ and under CNN_STATIC: cnn.h must build warning-free in
   every one of those ways. */
#define CNN_IMPLEMENTATION
#include "../../cnn.h"

int compile_check_layers(void);

int compile_check_layers(void)
{
    cnn_model model;
    int ok = cnn_model_init(&model, 1, 8, 8, 1) == CNN_OK && cnn_add_conv2d(&model, 2, 3, 1, 1) == CNN_OK;
    cnn_model_free(&model);
    return ok;
}

#ifdef COMPILE_CHECK_MAIN
int main(void) { return compile_check_layers() ? 0 : 1; }
#endif
