/* host.c - the host's half of make mcu (tests/mcu/run.sh): what the
   emulated Cortex-M4 runs, and what it must answer.

     host images MODEL.cnn DATA.csv COUNT OUTDIR [CALIBRATION_ROWS]
     host images MODEL.cnn --idx IMAGES LABELS COUNT OUTDIR [CALIBRATION_ROWS]
         takes the first COUNT images of the data (Kaggle EMNIST CSV, or IDX
         files such as Fashion-MNIST's) and the next CALIBRATION_ROWS
         (default 1,000, or all that are left) and writes to OUTDIR:
           images.h, images.c    the COUNT images and labels for firmware.c
           calibration.csv       the calibration rows, for build/export
                                 --calibrate (so the int8 export and the host
                                 quantize from the same images)
           expected_float.txt    cnn_model_predict's class and probabilities
           expected_int8.txt     cnn_quantized_predict's, quantized from
                                 calibration.csv as read back
         in the text firmware.c prints, and says the host's accuracies.
     host slice IMAGES LABELS ROWS OUTDIR
         writes the first ROWS of IDX files as OUTDIR/train.csv (to train a
         small model on Fashion-MNIST quickly, with build/lenet5 --train)
     host compare EXPECTED.txt FIRMWARE.txt float|int8
         checks the firmware's answers against the host's: the same class for
         every image, and every probability within 1e-4 (float) or 1e-5
         (int8, whose only float is the softmax at the end); prints one line,
         and exits 1 on any difference. */
#define CNN_IMPLEMENTATION
#include "../../cnn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_MAX_IMAGES 100000

static void usage(void)
{
    fprintf(stderr, "usage: host images MODEL.cnn DATA.csv COUNT OUTDIR [CALIBRATION_ROWS]\n"
                    "       host images MODEL.cnn --idx IMAGES LABELS COUNT OUTDIR [CALIBRATION_ROWS]\n"
                    "       host slice IMAGES LABELS ROWS OUTDIR\n"
                    "       host compare EXPECTED.txt FIRMWARE.txt float|int8\n");
}

/* A positive count from the command line, or 0. */
static int parse_count(const char *text, int largest)
{
    char *end;
    long value = strtol(text, &end, 10);
    return *text && !*end && value > 0 && value <= largest ? (int)value : 0;
}

static FILE *open_out(const char *dir, const char *name, char *path, size_t size)
{
    FILE *f;
    snprintf(path, size, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f) perror(path);
    return f;
}

static int close_out(FILE *f, const char *path)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "host: cannot write %s\n", path);
        return 0;
    }
    return 1;
}

static unsigned long bits_of(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (unsigned long)u;
}

/* round(100 * correct / count) in hundredths, as firmware.c computes it */
static int basis_points(int correct, int count)
{
    return (int)((20000L * correct + count) / (2L * count));
}

/* The answers in firmware.c's text: one line an image, then the accuracy. */
static int write_answers(const char *dir, const char *name, const int *labels, const int *classes, const float *probabilities,
                         int count, int class_count, const char *what)
{
    char path[4096];
    int i, k, correct = 0, bp;
    FILE *f = open_out(dir, name, path, sizeof path);
    if (!f) return 0;
    for (i = 0; i < count; i++) {
        correct += classes[i] == labels[i];
        fprintf(f, "image %d label %d class %d:", i, labels[i], classes[i]);
        for (k = 0; k < class_count; k++) fprintf(f, " %08lx", bits_of(probabilities[(size_t)i * (size_t)class_count + (size_t)k]));
        fputc('\n', f);
    }
    bp = basis_points(correct, count);
    fprintf(f, "accuracy: %d.%02d%% (%d of %d)\n", bp / 100, bp % 100, correct, count);
    printf("host %s accuracy: %d.%02d%% (%d of %d)\n", what, bp / 100, bp % 100, correct, count);
    return close_out(f, path);
}

/* images.h and images.c: the first count images as exact hexadecimal floats. */
static int write_images(const char *dir, const cnn_dataset *data, int count, int class_count)
{
    char path[4096];
    size_t size = (size_t)data->images.c * (size_t)data->images.h * (size_t)data->images.w, i;
    int n;
    FILE *f;
    if (!(f = open_out(dir, "images.h", path, sizeof path))) return 0;
    fprintf(f, "/* written by tests/mcu/host.c */\n#define MCU_COUNT %d\n#define MCU_INPUT_SIZE %lu\n#define MCU_CLASSES %d\n",
            count, (unsigned long)size, class_count);
    if (!close_out(f, path) || !(f = open_out(dir, "images.c", path, sizeof path))) return 0;
    fprintf(f, "/* written by tests/mcu/host.c: %d images (C, H, W) = (%d, %d, %d) */\n#include \"images.h\"\n\n",
            count, data->images.c, data->images.h, data->images.w);
    fprintf(f, "const unsigned char mcu_labels[MCU_COUNT] = {");
    for (n = 0; n < count; n++) fprintf(f, "%s%s%d", n ? "," : "", n % 32 ? "" : "\n    ", data->labels[n]);
    fprintf(f, "\n};\n\nconst float mcu_images[MCU_COUNT][MCU_INPUT_SIZE] = {\n");
    for (n = 0; n < count; n++) {
        const float *image = data->images.data + (size_t)n * size;
        fprintf(f, "  {");
        for (i = 0; i < size; i++) {
            if (image[i] == 0.0f) fprintf(f, "%s0", i ? "," : "");
            else fprintf(f, "%s%af", i ? "," : "", (double)image[i]);
            if (i % 16 == 15 && i + 1 < size) fprintf(f, "\n   ");
        }
        fprintf(f, "}%s\n", n + 1 < count ? "," : "");
    }
    fprintf(f, "};\n");
    return close_out(f, path);
}

/* Rows [first, first + count) as Kaggle CSV, stored transposed (the
   loader's default for CSV turns them upright), so that loading the file
   gives the same images bit for bit: pixels are bytes / 255. */
static int write_csv(const char *dir, const char *name, const cnn_dataset *data, int first, int count, char *path, size_t path_size)
{
    int side = data->images.w, n, r, c;
    FILE *f = open_out(dir, name, path, path_size);
    if (!f) return 0;
    for (n = first; n < first + count; n++) {
        const float *image = data->images.data + (size_t)n * (size_t)side * (size_t)side;
        fprintf(f, "%d", data->labels[n]);
        for (r = 0; r < side; r++)
            for (c = 0; c < side; c++) fprintf(f, ",%d", (int)floorf(image[c * side + r] * 255.0f + 0.5f));
        fputc('\n', f);
    }
    return close_out(f, path);
}

static int images(int argc, char **argv)
{
    const char *model_path = argv[2], *csv = NULL, *idx_images = NULL, *idx_labels = NULL, *dir;
    char calibration_path[4096];
    cnn_model model;
    cnn_dataset data, calibration;
    cnn_quantized q;
    cnn_data_desc desc;
    cnn_result result;
    cnn_shape out;
    size_t image_size;
    int count, wanted_rows = 1000, rows, class_count, i, status = 1, arg = 3;
    int *classes = NULL;
    float *probabilities = NULL;

    if (argc > arg && !strcmp(argv[arg], "--idx")) {
        if (argc < arg + 5) { usage(); return 2; }
        idx_images = argv[arg + 1];
        idx_labels = argv[arg + 2];
        arg += 3;
    } else {
        if (argc < arg + 3) { usage(); return 2; }
        csv = argv[arg++];
    }
    count = parse_count(argv[arg], HOST_MAX_IMAGES);
    dir = argv[arg + 1];
    if (argc > arg + 3 || !count || (argc == arg + 3 && !(wanted_rows = parse_count(argv[arg + 2], HOST_MAX_IMAGES)))) {
        usage();
        return 2;
    }

    memset(&model, 0, sizeof model);
    memset(&data, 0, sizeof data);
    memset(&calibration, 0, sizeof calibration);
    memset(&q, 0, sizeof q);
    memset(&desc, 0, sizeof desc);
    if (cnn_model_load(&model, model_path, 256) != CNN_OK) { /* the batch build/export uses */
        fprintf(stderr, "host: %s\n", model.error.message);
        return 1;
    }
    desc.max_rows = count + wanted_rows;
    result = csv ? cnn_dataset_load_csv(&data, csv, &desc) : cnn_dataset_load_idx(&data, idx_images, idx_labels, &desc);
    if (result != CNN_OK) {
        fprintf(stderr, "host: %s\n", data.error.message);
        goto done;
    }
    if (data.images.c != model.input.c || data.images.h != model.input.h || data.images.w != model.input.w) {
        fprintf(stderr, "host: the images are (%d, %d, %d), the model takes (%d, %d, %d)\n", data.images.c, data.images.h,
                data.images.w, model.input.c, model.input.h, model.input.w);
        goto done;
    }
    if (data.images.c != 1 || data.images.h != data.images.w) {
        fprintf(stderr, "host: calibration.csv holds square grey images only\n");
        goto done;
    }
    if (data.count <= count) {
        fprintf(stderr, "host: %d images, none left for calibration after the first %d\n", data.count, count);
        goto done;
    }
    rows = data.count - count < wanted_rows ? data.count - count : wanted_rows;
    out = cnn_model_output_shape(&model);
    class_count = (int)cnn_shape_count(out);
    for (i = 0; i < count; i++) {
        if (data.labels[i] >= class_count || data.labels[i] > 255) {
            fprintf(stderr, "host: image %d has label %d; the model has %d classes\n", i, data.labels[i], class_count);
            goto done;
        }
    }

    /* the calibration rows, written and read back as build/export will read them */
    if (!write_csv(dir, "calibration.csv", &data, count, rows, calibration_path, sizeof calibration_path)) goto done;
    memset(&desc, 0, sizeof desc);
    if (cnn_dataset_load_csv(&calibration, calibration_path, &desc) != CNN_OK) {
        fprintf(stderr, "host: %s\n", calibration.error.message);
        goto done;
    }
    image_size = (size_t)data.images.h * (size_t)data.images.w;
    if (calibration.count != rows ||
        memcmp(calibration.images.data, data.images.data + (size_t)count * image_size, (size_t)rows * image_size * sizeof(float))) {
        fprintf(stderr, "host: %s does not read back as the images it was written from\n", calibration_path);
        goto done;
    }

    classes = (int *)malloc((size_t)count * sizeof *classes);
    probabilities = (float *)malloc((size_t)count * (size_t)class_count * sizeof *probabilities);
    if (!classes || !probabilities) {
        fprintf(stderr, "host: out of memory\n");
        goto done;
    }
    if (!write_images(dir, &data, count, class_count)) goto done;
    if (cnn_model_predict(&model, data.images.data, count, classes, probabilities) != CNN_OK) {
        fprintf(stderr, "host: %s\n", model.error.message);
        goto done;
    }
    if (!write_answers(dir, "expected_float.txt", data.labels, classes, probabilities, count, class_count, "float")) goto done;
    if (cnn_quantize(&q, &model, &calibration, rows) != CNN_OK) {
        fprintf(stderr, "host: %s\n", q.error.message);
        goto done;
    }
    if (cnn_quantized_predict(&q, data.images.data, count, classes, probabilities) != CNN_OK) {
        fprintf(stderr, "host: %s\n", q.error.message);
        goto done;
    }
    if (!write_answers(dir, "expected_int8.txt", data.labels, classes, probabilities, count, class_count, "int8")) goto done;
    printf("host: %d images and their answers in %s; %d calibration rows in %s\n", count, dir, rows, calibration_path);
    status = 0;
done:
    free(classes);
    free(probabilities);
    cnn_quantized_free(&q);
    cnn_dataset_free(&calibration);
    cnn_dataset_free(&data);
    cnn_model_free(&model);
    return status;
}

static int slice(char **argv)
{
    char path[4096];
    cnn_dataset data;
    cnn_data_desc desc;
    int rows = parse_count(argv[4], HOST_MAX_IMAGES), ok;
    if (!rows) {
        usage();
        return 2;
    }
    memset(&desc, 0, sizeof desc);
    desc.max_rows = rows;
    if (cnn_dataset_load_idx(&data, argv[2], argv[3], &desc) != CNN_OK) {
        fprintf(stderr, "host: %s\n", data.error.message);
        return 1;
    }
    ok = data.images.c == 1 && data.images.h == data.images.w;
    if (!ok) fprintf(stderr, "host: CSV holds square grey images only\n");
    ok = ok && write_csv(argv[5], "train.csv", &data, 0, data.count, path, sizeof path);
    if (ok) printf("host: %d images of %s in %s\n", data.count, argv[2], path);
    cnn_dataset_free(&data);
    return ok ? 0 : 1;
}

/* ---------------------------------------------------------------- compare */

typedef struct answers {
    int count, classes;          /* images; probabilities a line */
    int *label, *class_of;       /* (count) */
    float *probability;          /* (count, classes) */
    char accuracy[128];          /* the "accuracy: " line, without its end */
} answers;

static void answers_free(answers *a)
{
    free(a->label);
    free(a->class_of);
    free(a->probability);
}

/* Reads firmware.c's text; lines that are not answers (qemu's, say) are
   skipped, but the images must come in order, 0 to count - 1. */
static int read_answers(const char *path, answers *a)
{
    static char line[1 << 16];
    FILE *f = fopen(path, "r");
    long line_number = 0;
    memset(a, 0, sizeof *a);
    if (!f) {
        perror(path);
        return 0;
    }
    while (fgets(line, sizeof line, f)) {
        int index, label, class_of, used, k;
        char *p;
        line_number++;
        if (!strncmp(line, "accuracy: ", 10)) {
            line[strcspn(line, "\r\n")] = 0;
            snprintf(a->accuracy, sizeof a->accuracy, "%.100s", line + 10);
            continue;
        }
        if (sscanf(line, "image %d label %d class %d:%n", &index, &label, &class_of, &used) != 3) continue;
        if (index != a->count || index >= HOST_MAX_IMAGES) {
            fprintf(stderr, "host: %s, line %ld: image %d where image %d was due\n", path, line_number, index, a->count);
            goto fail;
        }
        if (index == 0) {
            for (a->classes = 0, p = line + used; *p && *p != '\n';) {
                strtoul(p, &p, 16);
                a->classes++;
                while (*p == ' ') p++;
            }
            a->label = (int *)malloc(HOST_MAX_IMAGES * sizeof *a->label);
            a->class_of = (int *)malloc(HOST_MAX_IMAGES * sizeof *a->class_of);
            a->probability = (float *)malloc((size_t)HOST_MAX_IMAGES * (size_t)a->classes * sizeof *a->probability);
            if (!a->classes || !a->label || !a->class_of || !a->probability) {
                fprintf(stderr, "host: %s, line %ld: no probabilities, or out of memory\n", path, line_number);
                goto fail;
            }
        }
        a->label[index] = label;
        a->class_of[index] = class_of;
        for (k = 0, p = line + used; k < a->classes; k++) {
            char *end;
            unsigned long u = strtoul(p, &end, 16);
            uint32_t u32 = (uint32_t)u;
            if (end == p || u > 0xFFFFFFFFUL) break;
            memcpy(&a->probability[(size_t)index * (size_t)a->classes + (size_t)k], &u32, sizeof u32);
            p = end;
        }
        while (*p == ' ') p++;
        if (k != a->classes || (*p && *p != '\n' && *p != '\r')) {
            fprintf(stderr, "host: %s, line %ld: not %d probabilities in hexadecimal\n", path, line_number, a->classes);
            goto fail;
        }
        a->count++;
    }
    fclose(f);
    if (!a->count || !a->accuracy[0]) {
        fprintf(stderr, "host: %s holds no %s\n", path, a->count ? "accuracy line" : "answers");
        answers_free(a);
        return 0;
    }
    return 1;
fail:
    fclose(f);
    answers_free(a);
    return 0;
}

static int compare(const char *expected_path, const char *actual_path, const char *mode)
{
    answers want, got;
    double limit, largest = 0.0;
    int i, k, class_mismatches = 0, far = 0, bits_equal = 0, total, ok;
    if (!strcmp(mode, "float")) limit = 1e-4;
    else if (!strcmp(mode, "int8")) limit = 1e-5;
    else { usage(); return 2; }
    if (!read_answers(expected_path, &want)) return 1;
    if (!read_answers(actual_path, &got)) {
        answers_free(&want);
        return 1;
    }
    if (want.count != got.count || want.classes != got.classes) {
        printf("%s: FAIL: %d images of %d classes expected, the firmware gave %d of %d\n", mode, want.count, want.classes,
               got.count, got.classes);
        answers_free(&want);
        answers_free(&got);
        return 1;
    }
    total = want.count * want.classes;
    for (i = 0; i < want.count; i++) {
        if (want.class_of[i] != got.class_of[i] || want.label[i] != got.label[i]) {
            if (class_mismatches++ < 5)
                fprintf(stderr, "%s: image %d (label %d): class %d on the host, %d on the Cortex-M4\n", mode, i, want.label[i],
                        want.class_of[i], got.class_of[i]);
        }
        for (k = 0; k < want.classes; k++) {
            float a = want.probability[(size_t)i * (size_t)want.classes + (size_t)k];
            float b = got.probability[(size_t)i * (size_t)want.classes + (size_t)k];
            double d = fabs((double)a - (double)b);
            bits_equal += bits_of(a) == bits_of(b);
            if (!(d <= limit)) {
                if (far++ < 5)
                    fprintf(stderr, "%s: image %d, class %d: probability %.9g on the host, %.9g on the Cortex-M4\n", mode, i, k,
                            (double)a, (double)b);
                d = isnan(d) ? HUGE_VAL : d;
            }
            if (d > largest) largest = d;
        }
    }
    ok = !class_mismatches && !far && !strcmp(want.accuracy, got.accuracy);
    printf("%s: %s: %d of %d classes identical, %d of %d probabilities bit for bit, the largest difference %.2g (limit %.0e); "
           "accuracy %s on the host, %s on the Cortex-M4\n",
           mode, ok ? "PASS" : "FAIL", want.count - class_mismatches, want.count, bits_equal, total, largest, limit,
           want.accuracy, got.accuracy);
    answers_free(&want);
    answers_free(&got);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "images")) return images(argc, argv);
    if (argc == 6 && !strcmp(argv[1], "slice")) return slice(argv);
    if (argc == 5 && !strcmp(argv[1], "compare")) return compare(argv[2], argv[3], argv[4]);
    usage();
    return 2;
}
