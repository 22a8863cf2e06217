/* export.c - a trained model as one C file for a microcontroller, in float32
   or int8 (cnn_model_export_c; README.md, "On a microcontroller"):

     export MODEL.cnn OUT.c [--name NAME] [--int8 --calibrate DATA.csv [--rows N]]
                            [--test DATA.csv]

   --int8 quantizes as TensorFlow Lite does, with the value ranges of the
   first N (default 1,000) images of --calibrate (batch norm folded into
   the conv2d or dense layer before it; a model with residual blocks is
   refused, with a message: it exports in float32). It prints the flash and
   RAM the file needs and, with --test (Kaggle EMNIST CSV), the accuracy of
   the float model and, with --int8, of the int8 one, computed here by the
   library (cnn_model_predict, cnn_quantized_predict): the same arithmetic
   as the exported file's. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The share of count samples whose class is the label. */
static double accuracy(const int *classes, const int *labels, int count)
{
    int i, right = 0;
    for (i = 0; i < count; i++) right += classes[i] == labels[i];
    return count ? (double)right / count : 0.0;
}

int main(int argc, char **argv)
{
    static cnn_model model; /* large (it holds every layer): static, not on the stack */
    static cnn_quantized q;
    cnn_dataset calibration, test;
    cnn_export_desc desc;
    const char *calibrate = NULL, *test_csv = NULL;
    int i, status = 1;
    memset(&desc, 0, sizeof desc);
    memset(&calibration, 0, sizeof calibration);
    memset(&test, 0, sizeof test);
    for (i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--int8")) desc.int8 = 1;
        else if (!strcmp(argv[i], "--name") && i + 1 < argc) desc.name = argv[++i];
        else if (!strcmp(argv[i], "--calibrate") && i + 1 < argc) calibrate = argv[++i];
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) desc.calibration_rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--test") && i + 1 < argc) test_csv = argv[++i];
        else break;
    }
    if (argc < 3 || i < argc || (desc.int8 && !calibrate)) {
        fprintf(stderr, "usage: export MODEL.cnn OUT.c [--name NAME] [--int8 --calibrate DATA.csv [--rows N]] [--test DATA.csv]\n");
        return 2;
    }
    if (cnn_model_load(&model, argv[1], 256) != CNN_OK) {
        fprintf(stderr, "export: %s\n", model.error.message);
        return 1;
    }
    if (calibrate && cnn_dataset_load_csv(&calibration, calibrate, NULL) != CNN_OK) {
        fprintf(stderr, "export: %s\n", calibration.error.message);
        goto done;
    }
    desc.calibration = calibrate ? &calibration : NULL;
    if (cnn_model_export_c(&model, argv[2], &desc) != CNN_OK) {
        fprintf(stderr, "export: %s\n", model.error.message);
        goto done;
    }
    {
        /* the figures the file's comment gives, read back from it: the line
           from "flash:" and those that continue it (after a comma) */
        FILE *file = fopen(argv[2], "r");
        char line[256];
        int going = 0;
        while (file && fgets(line, sizeof line, file)) {
            size_t length = strlen(line);
            if (!going && strstr(line, "   flash: ") == line) printf("%s (%s): %s", argv[2], desc.int8 ? "int8" : "float32", line + 3);
            else if (going) printf("%s", line + (length > 3 ? 3 : 0));
            else continue;
            going = length >= 2 && line[length - 2] == ',';
            if (!going) break;
        }
        if (file) fclose(file);
    }
    if (test_csv) {
        int *classes;
        if (cnn_dataset_load_csv(&test, test_csv, NULL) != CNN_OK) {
            fprintf(stderr, "export: %s\n", test.error.message);
            goto done;
        }
        classes = (int *)malloc((size_t)test.count * sizeof(int));
        if (!classes || cnn_model_predict(&model, test.images.data, test.count, classes, NULL) != CNN_OK) {
            fprintf(stderr, "export: %s\n", classes ? model.error.message : "out of memory");
            free(classes);
            goto done;
        }
        printf("accuracy on %d images of %s: float32 %.2f%%", test.count, test_csv, 100.0 * accuracy(classes, test.labels, test.count));
        if (desc.int8) {
            if (cnn_quantize(&q, &model, &calibration, desc.calibration_rows) != CNN_OK ||
                cnn_quantized_predict(&q, test.images.data, test.count, classes, NULL) != CNN_OK) {
                fprintf(stderr, "\nexport: %s\n", q.error.message);
                free(classes);
                goto done;
            }
            printf(", int8 %.2f%%", 100.0 * accuracy(classes, test.labels, test.count));
        }
        printf("\n");
        free(classes);
    }
    status = 0;
done:
    cnn_quantized_free(&q);
    cnn_dataset_free(&calibration);
    cnn_dataset_free(&test);
    cnn_model_free(&model);
    return status;
}
