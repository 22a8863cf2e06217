/* libFuzzer target: cnn_dataset_load_idx_memory.
   Input: one settings byte (bits 0-1 orientation, bit 2 num_classes 10,
   bit 3 max_rows 2), one byte L, then the labels file (L bytes, or all that
   is left) followed by the images file. Labels files are short, so one
   byte of length reaches every interesting one. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnn_dataset dataset;
    cnn_data_desc desc;
    cnn_result result;
    size_t label_size, i, pixels;
    const uint8_t *labels, *images;
    if (size < 2) return 0;
    memset(&desc, 0, sizeof desc);
    desc.orientation = (cnn_orientation)(data[0] & 3);
    desc.num_classes = (data[0] & 4) ? 10 : 0;
    desc.max_rows = (data[0] & 8) ? 2 : 0;
    label_size = data[1];
    labels = data + 2;
    if (label_size > size - 2) label_size = size - 2;
    images = labels + label_size;
    result = cnn_dataset_load_idx_memory(&dataset, images, size - 2 - label_size, labels, label_size, &desc);
    fuzz_check_error(result, &dataset.error);
    if (result != CNN_OK) {
        if (dataset.images.data || dataset.labels || dataset.count) abort();
        return 0;
    }
    if (dataset.count < 1 || (desc.max_rows && dataset.count > desc.max_rows)) abort();
    pixels = (size_t)dataset.images.h * (size_t)dataset.images.w;
    for (i = 0; i < (size_t)dataset.count; i++)
        if (dataset.labels[i] < 0 || dataset.labels[i] >= dataset.num_classes) abort();
    for (i = 0; i < (size_t)dataset.count * pixels; i++)
        if (!(dataset.images.data[i] >= 0.0f && dataset.images.data[i] <= 1.0f)) abort();
    cnn_dataset_free(&dataset);
    return 0;
}
