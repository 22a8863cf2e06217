/* libFuzzer target: cnn_label_map_load_memory. The whole input is the
   mapping file ("label code" lines). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cnn_label_map map; /* 4 KB of codes: keep it off the stack */
    cnn_result result;
    int i;
    result = cnn_label_map_load_memory(&map, data, size);
    fuzz_check_error(result, &map.error);
    if (result != CNN_OK) {
        if (map.count != 0) abort();
        return 0;
    }
    if (map.count < 1 || map.count > CNN_MAX_CLASSES) abort();
    for (i = 0; i < map.count; i++)
        if (map.codes[i] < 0 || map.codes[i] > 0x10ffff || cnn_label_map_char(&map, i) != map.codes[i]) abort();
    if (cnn_label_map_char(&map, -1) != '?' || cnn_label_map_char(&map, map.count) != '?') abort();
    return 0;
}
