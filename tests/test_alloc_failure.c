/* test_alloc_failure.c - every allocation cnn.h makes can fail, and then
   the call that made it returns CNN_ERROR_OUT_OF_MEMORY with a message,
   nothing crashes and nothing leaks.

   CNN_MALLOC and CNN_FREE go to a counting allocator that fails the N-th
   allocation. One scenario - build a LeNet-5, load CSV, IDX and mapping
   files (from disk and from memory), split, a training step, fit with
   validation and early stopping, a confusion matrix, save, load - is run
   once to count its allocations, then again for every N from 1 to that
   count. The allocator counts live blocks itself, so a leak fails this test
   even without LeakSanitizer (and `make sanitize` runs it under LSan too). */
#include <stddef.h>
#include <stdlib.h>

static long alloc_calls;  /* allocations asked for since the counter was reset */
static long alloc_fail_at; /* the one to refuse, counting from 1; 0: none */
static long alloc_live;   /* blocks handed out and not yet freed */

static void *counting_malloc(size_t size)
{
    void *block;
    alloc_calls++;
    if (alloc_calls == alloc_fail_at) return NULL;
    block = malloc(size ? size : 1);
    if (block) alloc_live++;
    return block;
}

static void counting_free(void *block)
{
    if (!block) return;
    alloc_live--;
    free(block);
}

#define CNN_MALLOC(size) counting_malloc(size)
#define CNN_FREE(ptr) counting_free(ptr)
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#define SIDE 28
#define ROWS 12
#define CLASSES 10

static char csv_text[ROWS * (SIDE * SIDE * 4 + 8)];
static unsigned char idx_images[16 + ROWS * SIDE * SIDE], idx_labels[8 + ROWS];
static const char mapping_text[] = "0 48\n1 49\n2 50\n3 51\n4 52\n5 53\n6 54\n7 55\n8 56\n9 57\n";
static char csv_path[1024], images_path[1024], labels_path[1024], mapping_path[1024], model_path[1024];
static char safetensors_path[1024], onnx_path[1024], c_path[1024];

/* The files the scenario reads: ROWS EMNIST-like samples as CSV and IDX. */
static void write_inputs(void)
{
    size_t at = 0;
    int row, i;
    for (row = 0; row < ROWS; row++) {
        at += (size_t)sprintf(csv_text + at, "%d", row % CLASSES);
        for (i = 0; i < SIDE * SIDE; i++) at += (size_t)sprintf(csv_text + at, ",%d", (row * 31 + i * 7) % 256);
        csv_text[at++] = '\n';
    }
    csv_text[at] = '\0';
    idx_images[2] = 0x08; idx_images[3] = 3; idx_images[7] = ROWS; idx_images[11] = SIDE; idx_images[15] = SIDE;
    idx_labels[2] = 0x08; idx_labels[3] = 1; idx_labels[7] = ROWS;
    for (i = 0; i < ROWS * SIDE * SIDE; i++) idx_images[16 + i] = (unsigned char)(i * 13);
    for (i = 0; i < ROWS; i++) idx_labels[8 + i] = (unsigned char)(i % CLASSES);
    snprintf(csv_path, sizeof csv_path, "%s", test_write_file("alloc.csv", csv_text, strlen(csv_text)));
    snprintf(images_path, sizeof images_path, "%s", test_write_file("alloc-images-idx3-ubyte", idx_images, sizeof idx_images));
    snprintf(labels_path, sizeof labels_path, "%s", test_write_file("alloc-labels-idx1-ubyte", idx_labels, sizeof idx_labels));
    snprintf(mapping_path, sizeof mapping_path, "%s", test_write_file("alloc-mapping.txt", mapping_text, strlen(mapping_text)));
    snprintf(model_path, sizeof model_path, "%s", test_path("alloc-model.cnn"));
    snprintf(safetensors_path, sizeof safetensors_path, "%s", test_path("alloc-model.safetensors"));
    snprintf(onnx_path, sizeof onnx_path, "%s", test_path("alloc-model.onnx"));
    snprintf(c_path, sizeof c_path, "%s", test_path("alloc-model.c"));
}

static cnn_result lenet5(cnn_model *model, int max_batch)
{
    cnn_model_init(model, 1, SIDE, SIDE, 1);
    cnn_add_lenet5(model, CLASSES);
    return cnn_model_build(model, max_batch); /* errors are sticky: this reports the first */
}

/* What one run of the scenario saw. */
typedef struct {
    int failures;          /* calls that returned an error */
    const char *stage;     /* the first one that did */
    cnn_result code;
    int has_message;       /* its cnn_error had a message and the same code */
} outcome;

static int stage_failed(outcome *out, const char *stage, cnn_result result, const cnn_error *error)
{
    if (result == CNN_OK) return 0;
    if (out->failures++ == 0) {
        out->stage = stage;
        out->code = result;
        out->has_message = error && error->code == result && error->message[0] != '\0';
    }
    return 1;
}

/* Runs every step until one fails; frees everything either way. */
static outcome scenario(void)
{
    outcome out;
    cnn_model model, loaded, rebuilt;
    static cnn_quantized quantized;
    cnn_export_desc export_desc;
    int classes[2];
    cnn_optimizer adam;
    cnn_dataset csv, csv_memory, idx, idx_memory, train, validation;
    static cnn_label_map map, map_memory;
    cnn_data_desc desc;
    cnn_fit_desc fit;
    int matrix[CLASSES * CLASSES], correct;
    float loss;
    memset(&out, 0, sizeof out);
    memset(&model, 0, sizeof model);
    memset(&loaded, 0, sizeof loaded);
    memset(&rebuilt, 0, sizeof rebuilt);
    memset(&adam, 0, sizeof adam);
    memset(&csv, 0, sizeof csv);
    memset(&csv_memory, 0, sizeof csv_memory);
    memset(&idx, 0, sizeof idx);
    memset(&idx_memory, 0, sizeof idx_memory);
    memset(&train, 0, sizeof train);
    memset(&validation, 0, sizeof validation);
    memset(&desc, 0, sizeof desc);
    desc.num_classes = CLASSES;

    do {
        if (stage_failed(&out, "build LeNet-5", lenet5(&model, 4), &model.error)) break;
        if (stage_failed(&out, "optimizer init", cnn_optimizer_init(&adam, &model, NULL), &model.error)) break;
        if (stage_failed(&out, "load CSV", cnn_dataset_load_csv(&csv, csv_path, &desc), &csv.error)) break;
        if (stage_failed(&out, "load CSV from memory",
                         cnn_dataset_load_csv_memory(&csv_memory, csv_text, strlen(csv_text), &desc), &csv_memory.error)) break;
        if (stage_failed(&out, "load IDX", cnn_dataset_load_idx(&idx, images_path, labels_path, &desc), &idx.error)) break;
        if (stage_failed(&out, "load IDX from memory",
                         cnn_dataset_load_idx_memory(&idx_memory, idx_images, sizeof idx_images, idx_labels, sizeof idx_labels, &desc),
                         &idx_memory.error)) break;
        if (stage_failed(&out, "load mapping", cnn_label_map_load(&map, mapping_path), &map.error)) break;
        if (stage_failed(&out, "load mapping from memory", cnn_label_map_load_memory(&map_memory, mapping_text, strlen(mapping_text)),
                         &map_memory.error)) break;
        if (stage_failed(&out, "split", cnn_dataset_split(&csv, 0.25f, 3, &train, &validation), &train.error)) break;
        if (stage_failed(&out, "train step",
                         cnn_model_train_step(&model, &adam, idx.images.data, idx.labels, 4, &loss, &correct), &model.error)) break;
        memset(&fit, 0, sizeof fit);
        fit.epochs = 2;
        fit.validation = &validation;
        fit.patience = 1;
        if (stage_failed(&out, "fit with validation", cnn_model_fit(&model, &adam, &train, &fit), &model.error)) break;
        if (stage_failed(&out, "confusion matrix", cnn_model_confusion(&model, &validation, matrix), &model.error)) break;
        if (stage_failed(&out, "save", cnn_model_save(&model, model_path), &model.error)) break;
        if (stage_failed(&out, "load", cnn_model_load(&loaded, model_path, 4), &loaded.error)) break;
        if (stage_failed(&out, "save safetensors", cnn_model_save_safetensors(&model, safetensors_path), &model.error)) break;
        if (stage_failed(&out, "load safetensors", cnn_model_load_safetensors(&loaded, safetensors_path), &loaded.error)) break;
        if (stage_failed(&out, "model from safetensors", cnn_model_from_safetensors(&rebuilt, safetensors_path, 2), &rebuilt.error)) break;
        if (stage_failed(&out, "export ONNX", cnn_model_export_onnx(&model, onnx_path), &model.error)) break;
        if (stage_failed(&out, "quantize", cnn_quantize(&quantized, &model, &csv, 0), &quantized.error)) break;
        if (stage_failed(&out, "quantized predict", cnn_quantized_predict(&quantized, csv.images.data, 2, classes, NULL),
                         &quantized.error)) break;
        memset(&export_desc, 0, sizeof export_desc);
        export_desc.int8 = 1;
        export_desc.calibration = &csv;
        if (stage_failed(&out, "export C int8", cnn_model_export_c(&model, c_path, &export_desc), &model.error)) break;
    } while (0);

    cnn_model_free(&loaded);
    cnn_model_free(&rebuilt);
    cnn_quantized_free(&quantized);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_dataset_free(&csv);
    cnn_dataset_free(&csv_memory);
    cnn_dataset_free(&idx);
    cnn_dataset_free(&idx_memory);
    cnn_dataset_free(&train);
    cnn_dataset_free(&validation);
    return out;
}

TEST(every_allocation_can_fail)
{
    outcome out;
    long total, n, bad = 0;
    alloc_fail_at = 0;
    alloc_calls = alloc_live = 0;
    out = scenario();
    total = alloc_calls;
    CHECK(out.failures == 0, "without failures, '%s' failed with code %d", out.stage ? out.stage : "", (int)out.code);
    CHECK(alloc_live == 0, "%ld blocks leaked without failures", alloc_live);
    CHECK(total >= 20, "only %ld allocations: the scenario is not doing its work", total);
    printf("    the scenario makes %ld allocations; failing each in turn\n", total);
    for (n = 1; n <= total; n++) {
        alloc_calls = alloc_live = 0;
        alloc_fail_at = n;
        out = scenario();
        if (out.failures != 1 || out.code != CNN_ERROR_OUT_OF_MEMORY || !out.has_message || alloc_live != 0) {
            if (bad++ < 10)
                printf("    allocation %ld: %d failures, first '%s' code %d (%s), message %s, %ld blocks leaked\n", n,
                       out.failures, out.stage ? out.stage : "none", (int)out.code, cnn_result_string(out.code),
                       out.has_message ? "given" : "missing", alloc_live);
        }
    }
    alloc_fail_at = 0;
    CHECK(bad == 0, "%ld of %ld failed allocations were not answered with exactly one out-of-memory error and no leak", bad, total);
    remove(model_path);
    remove(safetensors_path);
    remove(onnx_path);
    remove(c_path);
}

int main(void)
{
    write_inputs();
    RUN(every_allocation_can_fail);
    return test_report();
}
