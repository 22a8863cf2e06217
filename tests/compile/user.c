/* The second translation unit of the link check: it includes cnn.h without
   the implementation and uses it, so the declarations must match the one
   definition in impl.c. */
#include "../../cnn.h"
#include <stdio.h>

int compile_check_layers(void);

int main(void)
{
    cnn_rng rng;
    cnn_rng_seed(&rng, 7);
    if (!compile_check_layers()) return 1;
    printf("%s %u\n", cnn_result_string(CNN_ERROR_BAD_SHAPE), (unsigned)cnn_rng_below(&rng, 10));
    return 0;
}
