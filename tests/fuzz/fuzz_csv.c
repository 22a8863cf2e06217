/* libFuzzer target: cnn_dataset_load_csv_memory.
   The first input byte picks the loader's settings, so the fuzzer explores
   small images (where a whole row is a few bytes) as well as 28x28:
     bits 0-1  width and height - 1 (1..4), or 28 when bit 6 is set
     bits 2-3  orientation; bit 4: num_classes 10; bit 5: max_rows 3
   the rest is the CSV text. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnn_dataset dataset;
    cnn_data_desc desc;
    cnn_result result;
    int i;
    size_t pixels;
    if (size < 1) return 0;
    memset(&desc, 0, sizeof desc);
    desc.width = desc.height = (data[0] & 0x40) ? 28 : 1 + (data[0] & 3);
    desc.orientation = (cnn_orientation)((data[0] >> 2) & 3); /* 3 is invalid on purpose */
    desc.num_classes = (data[0] & 0x10) ? 10 : 0;
    desc.max_rows = (data[0] & 0x20) ? 3 : 0;
    result = cnn_dataset_load_csv_memory(&dataset, data + 1, size - 1, &desc);
    fuzz_check_error(result, &dataset.error);
    if (result != CNN_OK) {
        /* a failed load leaves nothing allocated */
        if (dataset.images.data || dataset.labels || dataset.count) abort();
        return 0;
    }
    if (dataset.count < 1 || (desc.max_rows && dataset.count > desc.max_rows)) abort();
    if (dataset.num_classes < 1 || (desc.num_classes && dataset.num_classes != desc.num_classes)) abort();
    pixels = (size_t)desc.width * (size_t)desc.height;
    for (i = 0; i < dataset.count; i++)
        if (dataset.labels[i] < 0 || dataset.labels[i] >= dataset.num_classes) abort();
    for (i = 0; (size_t)i < (size_t)dataset.count * pixels; i++)
        if (!(dataset.images.data[i] >= 0.0f && dataset.images.data[i] <= 1.0f)) abort();
    cnn_dataset_free(&dataset);
    return 0;
}
