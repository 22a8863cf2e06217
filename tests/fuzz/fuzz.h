/* fuzz.h - what every libFuzzer target in this folder shares.

   Build (see `make fuzz` in the Makefile):
       clang -fsanitize=fuzzer,address,undefined -g -O1 tests/fuzz/fuzz_csv.c -o fuzz_csv -lm

   A tiny input can legitimately ask for a huge allocation (an IDX header or a
   model file declaring gigabytes of activations). The library must answer
   that with CNN_ERROR_OUT_OF_MEMORY, not crash; so the targets route every
   allocation through fuzz_malloc, which refuses requests above
   FUZZ_ALLOCATION_LIMIT the way a small machine would. Without it libFuzzer
   would stop at the first such request and report it as a crash of its own
   ("malloc exceeds limit"), which is not a bug in cnn.h. */
#ifndef CNN_FUZZ_H
#define CNN_FUZZ_H

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

/* Every error must come with a message: a failure with an empty message would
   leave the user guessing. Crashing here makes libFuzzer keep the input. */
static void fuzz_check_error(cnn_result result, const cnn_error *error)
{
    if (result == CNN_OK) return;
    if (error->code != result || error->message[0] == '\0') abort();
    if (memchr(error->message, '\0', sizeof error->message) == NULL) abort();
}

#endif
