/* libFuzzer target: cnn_image_load_memory (CNN_IMAGES, through stb_image).
   The first byte picks the channels asked for (0, 1 or 3); the rest is the
   image file. stb_image allocates under the same limit as cnn.h, so a
   header declaring a huge image is refused as out of memory, not by
   libFuzzer. The limit is 4 MB here: decoding and converting a 64 MB image
   takes long enough to slow the fuzzer twentyfold, and a 1000x1000 RGBA
   image still fits. */
#include <stddef.h>
#include <stdlib.h>
#define FUZZ_ALLOCATION_LIMIT ((size_t)4 << 20)
static void *fuzz_stb_malloc(size_t size) { return size > FUZZ_ALLOCATION_LIMIT ? NULL : malloc(size); }
static void *fuzz_stb_realloc(void *p, size_t size) { return size > FUZZ_ALLOCATION_LIMIT ? NULL : realloc(p, size); }
#define STBI_MALLOC(size) fuzz_stb_malloc(size)
#define STBI_REALLOC(p, size) fuzz_stb_realloc(p, size)
#define STBI_FREE(p) free(p)
/* stb_image's own asserts stay on: v2.27 failed one in
   stbi__jpeg_huff_decode on JPEGs whose scans use Huffman tables never
   defined, which cnn.h now refuses (tests/test_image_fuzz.c). */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define CNN_IMAGES
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int channels_for[4] = {0, 1, 3, 0};
    cnn_image image;
    cnn_result result;
    size_t i, count;
    int channels;
    if (size < 1) return 0;
    channels = channels_for[data[0] & 3];
    result = cnn_image_load_memory(&image, data + 1, size - 1, channels);
    fuzz_check_error(result, &image.error);
    if (result != CNN_OK) {
        if (image.data) abort();
        return 0;
    }
    if (image.h < 1 || image.w < 1 || (channels && image.c != channels) || (image.c != 1 && image.c != 3)) abort();
    count = (size_t)image.c * (size_t)image.h * (size_t)image.w;
    for (i = 0; i < count; i++)
        if (!(image.data[i] >= 0.0f && image.data[i] <= 1.0f)) abort();
    cnn_image_free(&image);
    return 0;
}
