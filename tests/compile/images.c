/* Compile check of the optional image code: cnn.h's implementation with
   CNN_IMAGES, after stb_image.h and stb_image_write.h (their declarations
   only: stb's own implementations are not ours to hold to -Werror). Built
   with -c as C99 and C++11, by gcc and clang, under -Werror. */
#include <stb_image.h>
#include <stb_image_write.h>
#define CNN_IMAGES
#define CNN_IMPLEMENTATION
#include "../../cnn.h"

int compile_check_images(void);

int compile_check_images(void)
{
    cnn_image image;
    cnn_character_desc desc;
    cnn_image character;
    int ok;
    memset(&desc, 0, sizeof desc);
    ok = cnn_image_alloc(&image, 1, 8, 8) == CNN_OK;
    if (ok) image.data[27] = 1.0f;
    ok = ok && cnn_image_to_character(&image, &character, &desc) == CNN_OK;
    cnn_image_free(&character);
    cnn_image_free(&image);
    return ok;
}
