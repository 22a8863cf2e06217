/* test_pictures.c - watching training: the history and its CSV file, the
   progress reporter's output, the per-class table, and the pictures of
   training (CNN_IMAGES): learning curves, the confusion heat map and the
   grid of mistakes. The PNGs are read back with stb_image and their pixels
   checked where the documented layout says what must be there. Needs
   stb_image.h and stb_image_write.h (libstb-dev). */
#define _POSIX_C_SOURCE 200809L /* mkdir */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define CNN_IMAGES
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h> /* rmdir */

/* ---------------------------------------------------------------- helpers */

static cnn_epoch_record record(int epoch, float loss, float accuracy, int validated, float val_loss, float val_accuracy, double seconds)
{
    cnn_epoch_record r;
    memset(&r, 0, sizeof r);
    r.epoch = epoch, r.loss = loss, r.accuracy = accuracy, r.validated = validated;
    r.validation_loss = val_loss, r.validation_accuracy = val_accuracy, r.seconds = seconds;
    return r;
}

/* Everything written to a stream so far, from its start. */
static char *stream_text(FILE *stream)
{
    static char text[4096];
    size_t n;
    fflush(stream);
    rewind(stream);
    n = fread(text, 1, sizeof text - 1, stream);
    text[n] = '\0';
    return text;
}

static int file_exists(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (file) fclose(file);
    return file != NULL;
}

/* An RGB PNG as 8-bit pixels; pixel (x, y) channel k at [(y * w + x) * 3 + k]. */
static unsigned char *load_png(const char *path, int *w, int *h)
{
    int channels;
    return stbi_load(path, w, h, &channels, 3);
}

static const unsigned char *pixel(const unsigned char *p, int w, int x, int y) { return p + ((size_t)y * (size_t)w + (size_t)x) * 3; }

/* Pixels in the box (x0, y0) .. (x1, y1), inclusive, within tolerance 12 of (r, g, b). */
static int count_colour(const unsigned char *p, int w, int x0, int y0, int x1, int y1, int r, int g, int b)
{
    int x, y, n = 0;
    for (y = y0; y <= y1; y++)
        for (x = x0; x <= x1; x++) {
            const unsigned char *q = pixel(p, w, x, y);
            n += abs(q[0] - r) <= 12 && abs(q[1] - g) <= 12 && abs(q[2] - b) <= 12;
        }
    return n;
}

/* ---------------------------------------------------------------- history */

TEST(history_grows_and_keeps_every_epoch)
{
    cnn_history history = {0};
    cnn_epoch_record r;
    int i, ok = 1;
    for (i = 1; i <= 40; i++) {
        r = record(i, 1.0f / i, 0.01f * i, i % 2, 2.0f / i, 0.02f * i, 0.5 * i);
        ok &= cnn_history_add(&history, &r) == CNN_OK;
    }
    CHECK(ok, "every add succeeds");
    CHECK(history.count == 40 && history.capacity >= 40, "count %d capacity %d", history.count, history.capacity);
    for (i = 0; i < history.count; i++)
        if (history.epochs[i].epoch != i + 1 || history.epochs[i].loss != 1.0f / (i + 1) || history.epochs[i].seconds != 0.5 * (i + 1) ||
            history.epochs[i].validated != (i + 1) % 2)
            break;
    CHECK(i == 40, "record %d differs from what was added", i + 1);
    CHECK(cnn_history_add(&history, NULL) == CNN_ERROR_INVALID_ARGUMENT, "a NULL record is refused");
    cnn_history_free(&history);
    CHECK(history.count == 0 && history.epochs == NULL, "free leaves it empty");
}

TEST(history_csv_has_a_header_and_one_line_per_epoch)
{
    cnn_history history = {0};
    cnn_epoch_record r[3];
    const char *path = test_path("pictures_history.csv");
    char *text;
    int i;
    r[0] = record(1, 0.5f, 0.75f, 1, 0.4f, 0.8f, 1.25);
    r[1] = record(2, 0.375f, 0.875f, 1, 0.3125f, 0.90625f, 2.5);
    r[2] = record(3, 0.25f, 0.9375f, 0, 0.0f, 0.0f, 2.0); /* no validation: empty fields */
    for (i = 0; i < 3; i++) cnn_history_add(&history, &r[i]);
    remove(path);
    CHECK(cnn_history_save_csv(&history, path) == CNN_OK, "save: %s", history.error.message);
    text = (char *)test_read_file(path, NULL);
    CHECK(text && !strcmp(text, "epoch,train_loss,train_accuracy,validation_loss,validation_accuracy,seconds\n"
                                "1,0.500000,0.750000,0.400000,0.800000,1.250\n"
                                "2,0.375000,0.875000,0.312500,0.906250,2.500\n"
                                "3,0.250000,0.937500,,,2.000\n"),
          "the file is:\n%s", text ? text : "(missing)");
    free(text);
    cnn_history_free(&history);
}

/* The CSV is written to PATH.tmp and renamed: when PATH.tmp cannot be
   created the old PATH is left whole, and after a successful save no
   PATH.tmp remains (a stale one is replaced). */
TEST(history_csv_is_written_atomically)
{
    cnn_history history = {0};
    cnn_epoch_record r = record(1, 0.5f, 0.5f, 0, 0.0f, 0.0f, 1.0);
    char path[1024], temp[1100];
    char *text;
    snprintf(path, sizeof path, "%s", test_path("pictures_atomic.csv"));
    snprintf(temp, sizeof temp, "%s.tmp", path);
    cnn_history_add(&history, &r);
    remove(temp), rmdir(temp);
    CHECK(test_write_file("pictures_atomic.csv", "old contents\n", 13) != NULL, "old file");
    CHECK(mkdir(temp, 0777) == 0, "a folder in the way of PATH.tmp");
    CHECK(cnn_history_save_csv(&history, path) == CNN_ERROR_IO, "cannot create PATH.tmp: an I/O error");
    CHECK(strstr(history.error.message, ".tmp") != NULL, "the message names the temporary file: %s", history.error.message);
    text = (char *)test_read_file(path, NULL);
    CHECK(text && !strcmp(text, "old contents\n"), "the old file is untouched: %s", text ? text : "(missing)");
    free(text);
    rmdir(temp);
    test_write_file("pictures_atomic.csv.tmp", "stale", 5);
    CHECK(cnn_history_save_csv(&history, path) == CNN_OK, "save: %s", history.error.message);
    text = (char *)test_read_file(path, NULL);
    CHECK(text && !strncmp(text, "epoch,", 6) && strstr(text, "1,0.500000,0.500000,,,1.000\n"), "the new file: %s", text ? text : "(missing)");
    CHECK(!file_exists(temp), "no PATH.tmp is left behind");
    free(text);
    CHECK(cnn_history_save_csv(&history, test_path("no-such-folder/h.csv")) == CNN_ERROR_IO, "a missing folder is an I/O error");
    cnn_history_free(&history);
}

/* ---------------------------------------------------------------- progress */

static cnn_epoch_stats epoch_stats(int epoch, int epochs, float loss, float accuracy, int validated, float val_loss, float val_accuracy)
{
    cnn_epoch_stats s;
    memset(&s, 0, sizeof s);
    s.epoch = epoch, s.epochs = epochs, s.loss = loss, s.accuracy = accuracy;
    s.validated = validated, s.validation_loss = val_loss, s.validation_accuracy = val_accuracy, s.best_epoch = epoch;
    return s;
}

TEST(progress_prints_one_plain_line_per_epoch_to_a_file)
{
    FILE *stream = tmpfile();
    cnn_history history = {0};
    cnn_progress_desc desc = {0};
    cnn_progress progress;
    cnn_batch_stats batch;
    cnn_epoch_stats s;
    const char *text;
    double seconds;
    CHECK(stream != NULL, "tmpfile");
    if (!stream) return;
    desc.history = &history;
    cnn_progress_init(&progress, stream, &desc); /* AUTO: a file is no terminal */
    CHECK(progress.bar == 0, "no bar on a file");
    memset(&batch, 0, sizeof batch);
    batch.epoch = 2, batch.epochs = 5, batch.step = 3, batch.steps = 4, batch.samples = 300, batch.total = 400;
    CHECK(cnn_progress_batch(NULL, &batch, &progress) == 0, "the batch callback never stops training");
    CHECK(stream_text(stream)[0] == '\0', "no output during an epoch without a bar");
    fseek(stream, 0, SEEK_END);
    s = epoch_stats(2, 5, 0.1234f, 0.5f, 1, 0.2345f, 0.625f);
    CHECK(cnn_progress_epoch(NULL, &s, &progress) == 0, "the epoch callback does not stop training");
    text = stream_text(stream);
    CHECK(!strncmp(text, "epoch  2/5  loss 0.1234  acc  50.00%  val loss 0.2345  val acc  62.50%  ", 72), "the line: [%s]", text);
    CHECK(strlen(text) > 72 && sscanf(text + 72, "%lf", &seconds) == 1 && seconds >= 0.0 && !strcmp(text + strlen(text) - 3, " s\n"),
          "ends with the seconds: [%s]", text);
    CHECK(strchr(text, '\r') == NULL && strchr(text, '\033') == NULL, "no terminal control characters in a file");
    CHECK(history.count == 1 && history.epochs[0].epoch == 2 && history.epochs[0].loss == 0.1234f && history.epochs[0].validated == 1 &&
              history.epochs[0].validation_accuracy == 0.625f,
          "the epoch is in the history (%d records)", history.count);
    /* without validation, and stopping early */
    fseek(stream, 0, SEEK_END);
    s = epoch_stats(3, 5, 0.5f, 0.25f, 0, 0.0f, 0.0f);
    s.stopping = 1, s.best_epoch = 1;
    cnn_progress_epoch(NULL, &s, &progress);
    text = stream_text(stream);
    text = strchr(text, '\n') + 1;
    CHECK(!strncmp(text, "epoch  3/5  loss 0.5000  acc  25.00%  ", 38) && strstr(text, "val loss") == NULL && strstr(text, "val acc") == NULL,
          "no validation fields when not validated: [%s]", text);
    CHECK(strstr(text, "\nearly stop: no lower validation loss since epoch 1, whose weights are kept\n") != NULL, "the early stop line: [%s]", text);
    fclose(stream);
    cnn_history_free(&history);
}

TEST(progress_bar_shows_rate_and_eta_then_clears_itself)
{
    FILE *stream = tmpfile();
    cnn_progress_desc desc = {0};
    cnn_progress progress;
    cnn_batch_stats batch;
    cnn_epoch_stats s;
    const char *text;
    if (!stream) { CHECK(0, "tmpfile"); return; }
    desc.style = CNN_PROGRESS_BAR;
    cnn_progress_init(&progress, stream, &desc);
    CHECK(progress.bar == 1, "the bar is forced");
    memset(&batch, 0, sizeof batch);
    batch.epoch = 1, batch.epochs = 3, batch.step = 2, batch.steps = 2, batch.samples = 100, batch.total = 100; /* the last step always draws */
    batch.loss = 0.5f, batch.accuracy = 0.25f;
    cnn_progress_batch(NULL, &batch, &progress);
    text = stream_text(stream);
    CHECK(!strncmp(text, "\repoch 1/3 [==================] ", 32), "the full bar: [%s]", text);
    CHECK(strstr(text, " samples/s ETA 0:00 loss 0.500 acc 25.0%") != NULL, "rate, ETA, loss, accuracy: [%s]", text);
    CHECK(strlen(text) < 81, "fits 80 columns: %d", (int)strlen(text));
    fseek(stream, 0, SEEK_END);
    s = epoch_stats(1, 3, 0.5f, 0.25f, 0, 0.0f, 0.0f);
    cnn_progress_epoch(NULL, &s, &progress);
    text = stream_text(stream);
    CHECK(strstr(text, "\r\033[Kepoch  1/3  loss 0.5000") != NULL, "the epoch line replaces the bar: [%s]", text);
    fclose(stream);
}

/* The reporter in a real cnn_model_fit: two epochs, two lines, two records. */
TEST(progress_with_fit_records_every_epoch)
{
    static cnn_model model;
    cnn_optimizer sgd;
    cnn_optimizer_desc sgd_desc = {CNN_OPTIMIZER_SGD, 0.1f, 0.0f, 0.0f, 0.0f, 0.0f};
    cnn_dataset data;
    cnn_tensor images;
    cnn_fit_desc fit = {0};
    cnn_progress_desc desc = {0};
    cnn_progress progress;
    cnn_history history = {0};
    FILE *stream = tmpfile();
    const char *text, *second;
    int labels[32], i;
    if (!stream) { CHECK(0, "tmpfile"); return; }
    memset(&data, 0, sizeof data);
    cnn_tensor_alloc(&images, 32, 1, 2, 2);
    for (i = 0; i < 32; i++) labels[i] = i % 2, images.data[i * 4 + (i % 2)] = 1.0f;
    data.count = 32, data.num_classes = 2, data.images = images, data.labels = labels;
    cnn_model_init(&model, 1, 2, 2, 3);
    cnn_add_flatten(&model);
    cnn_add_dense(&model, 2);
    cnn_add_softmax(&model);
    CHECK(cnn_model_build(&model, 8) == CNN_OK, "build: %s", model.error.message);
    cnn_optimizer_init(&sgd, &model, &sgd_desc);
    desc.history = &history;
    desc.style = CNN_PROGRESS_LINES;
    cnn_progress_init(&progress, stream, &desc);
    fit.epochs = 2, fit.batch_size = 8, fit.on_batch = cnn_progress_batch, fit.on_epoch = cnn_progress_epoch, fit.user = &progress;
    CHECK(cnn_model_fit(&model, &sgd, &data, &fit) == CNN_OK, "fit: %s", model.error.message);
    text = stream_text(stream);
    second = strchr(text, '\n');
    CHECK(!strncmp(text, "epoch  1/2  loss ", 17) && second && !strncmp(second + 1, "epoch  2/2  loss ", 17) && strchr(second + 1, '\n') &&
              strchr(second + 1, '\n')[1] == '\0',
          "two lines: [%s]", text);
    CHECK(history.count == 2 && history.epochs[0].epoch == 1 && history.epochs[1].epoch == 2 && history.epochs[1].seconds >= 0.0 &&
              history.epochs[1].loss < history.epochs[0].loss,
          "two records, the loss going down (%d records)", history.count);
    cnn_history_free(&history);
    cnn_optimizer_free(&sgd);
    cnn_model_free(&model);
    cnn_tensor_free(&images);
    fclose(stream);
}

TEST(progress_without_a_stream_prints_nothing_but_records)
{
    cnn_history history = {0};
    cnn_progress_desc desc = {0};
    cnn_progress progress;
    cnn_epoch_stats s = epoch_stats(1, 1, 1.0f, 0.5f, 0, 0.0f, 0.0f);
    desc.history = &history;
    cnn_progress_init(&progress, NULL, &desc);
    CHECK(cnn_progress_epoch(NULL, &s, &progress) == 0 && history.count == 1, "recorded without printing");
    cnn_history_free(&history);
}

/* ---------------------------------------------------------------- per-class table */

TEST(confusion_report_gives_precision_recall_and_f1)
{
    /* rows true, columns predicted */
    static const int matrix[9] = {8, 2, 0, 0, 5, 5, 0, 0, 10};
    cnn_label_map map;
    char text[1024], small[16];
    size_t length;
    length = cnn_confusion_report(matrix, 3, NULL, text, sizeof text);
    CHECK(length == strlen(text), "returns the length: %d vs %d", (int)length, (int)strlen(text));
    CHECK(strstr(text, "\n    0       10    100.00%  80.00%   0.889\n") != NULL, "class 0: precision 8/8, recall 8/10:\n%s", text);
    CHECK(strstr(text, "\n    1       10     71.43%  50.00%   0.588\n") != NULL, "class 1: precision 5/7, recall 5/10:\n%s", text);
    CHECK(strstr(text, "\n    2       10     66.67%  100.00%   0.800\n") != NULL, "class 2: precision 10/15, recall 10/10:\n%s", text);
    CHECK(strstr(text, "accuracy 76.67%\n") != NULL, "accuracy 23/30:\n%s", text);
    CHECK(cnn_label_map_load_memory(&map, "0 65\n1 66\n2 67\n", 15) == CNN_OK, "map: %s", map.error.message);
    cnn_confusion_report(matrix, 3, &map, text, sizeof text);
    CHECK(strstr(text, "\n    B       10     71.43%") != NULL, "classes named by the map:\n%s", text);
    CHECK(cnn_confusion_report(matrix, 3, &map, small, sizeof small) == strlen(text) && strlen(small) == sizeof small - 1,
          "a short buffer gets a truncated table and the full length");
}

/* ---------------------------------------------------------------- pictures */

#define BLUE_R 31   /* the training colour, (0.12, 0.47, 0.71) */
#define BLUE_G 120
#define BLUE_B 181
#define ORANGE_R 255 /* validation, (1.0, 0.5, 0.05) */
#define ORANGE_G 128
#define ORANGE_B 13

TEST(curves_png_draws_train_and_validation)
{
    cnn_history history = {0};
    cnn_epoch_record r;
    cnn_error error;
    const char *path = test_path("pictures_curves.png");
    unsigned char *p;
    int w = 0, h = 0, i, y, first_y = -1, last_y = -1;
    for (i = 1; i <= 5; i++) { /* the training loss falls from 2.0 to 0.4 */
        r = record(i, 2.4f - 0.4f * i, 0.1f * i + 0.4f, 1, 2.5f - 0.4f * i, 0.1f * i + 0.35f, 1.0);
        cnn_history_add(&history, &r);
    }
    CHECK(cnn_curves_save_png(&history, path, &error) == CNN_OK, "save: %s", error.message);
    p = load_png(path, &w, &h);
    CHECK(p && w == 1200 && h == 500, "a 1200 x 500 PNG, got %d x %d", w, h);
    if (!p) return;
    CHECK(count_colour(p, w, 0, 0, w - 1, h - 1, BLUE_R, BLUE_G, BLUE_B) > 200, "training curves in blue");
    CHECK(count_colour(p, w, 0, 0, w - 1, h - 1, ORANGE_R, ORANGE_G, ORANGE_B) > 200, "validation curves in orange");
    /* left panel x 100 .. 569: epoch 1 at x 100, epoch 5 at 569; the loss falls, so epoch 1's blue point is higher up */
    for (y = 50; y < 420; y++) {
        if (first_y < 0 && count_colour(p, w, 101, y, 102, y, BLUE_R, BLUE_G, BLUE_B) == 2) first_y = y;
        if (last_y < 0 && count_colour(p, w, 566, y, 567, y, BLUE_R, BLUE_G, BLUE_B) == 2) last_y = y;
    }
    CHECK(first_y >= 0 && last_y >= 0 && first_y < last_y - 200, "epoch 1 at y %d, well above epoch 5 at y %d", first_y, last_y);
    stbi_image_free(p);

    /* without validation: no orange at all */
    for (i = 0; i < history.count; i++) history.epochs[i].validated = 0;
    CHECK(cnn_curves_save_png(&history, path, &error) == CNN_OK, "save: %s", error.message);
    p = load_png(path, &w, &h);
    CHECK(p && count_colour(p, w, 0, 0, w - 1, h - 1, ORANGE_R, ORANGE_G, ORANGE_B) == 0, "no validation curve when there is none");
    stbi_image_free(p);
    cnn_history_free(&history);
    CHECK(cnn_curves_save_png(&history, path, &error) == CNN_ERROR_INVALID_ARGUMENT && strstr(error.message, "at least one epoch"),
          "an empty history is refused: %s", error.message);
}

TEST(confusion_png_is_dark_on_the_diagonal)
{
    enum { CLASSES = 5, LEFT = 60, TOP = 110, CELL = 32 };
    int matrix[CLASSES * CLASSES] = {0};
    cnn_label_map map;
    cnn_error error;
    const char *path = test_path("pictures_confusion.png");
    unsigned char *p;
    int w = 0, h = 0, t, q, dark_diagonal = 1, white_elsewhere = 1, ink;
    for (t = 0; t < CLASSES; t++) matrix[t * CLASSES + t] = 10;
    matrix[1 * CLASSES + 2] = 10; /* half of class 1 predicted as 2: a mid-blue cell */
    cnn_label_map_load_memory(&map, "0 65\n1 66\n2 67\n3 68\n4 69\n", 25);
    CHECK(cnn_confusion_save_png(matrix, CLASSES, &map, path, &error) == CNN_OK, "save: %s", error.message);
    p = load_png(path, &w, &h);
    CHECK(p && w == 720 && h == CLASSES * CELL + 170, "720 x %d, got %d x %d", CLASSES * CELL + 170, w, h);
    if (!p) return;
    for (t = 0; t < CLASSES; t++)
        for (q = 0; q < CLASSES; q++) {
            const unsigned char *c = pixel(p, w, LEFT + q * CELL + CELL / 2, TOP + t * CELL + CELL / 2);
            if (t == q && t != 1) dark_diagonal &= c[0] < 30 && c[2] < 120;       /* share 1: navy */
            else if (t != q && !(t == 1 && q == 2)) white_elsewhere &= c[0] > 250 && c[1] > 250 && c[2] > 250;
        }
    CHECK(dark_diagonal, "the diagonal cells are dark navy");
    CHECK(white_elsewhere, "cells with no samples are white");
    {
        const unsigned char *half = pixel(p, w, LEFT + 2 * CELL + CELL / 2, TOP + 1 * CELL + CELL / 2);
        const unsigned char *full = pixel(p, w, LEFT + 0 * CELL + CELL / 2, TOP + 0 * CELL + CELL / 2);
        CHECK(half[0] > full[0] + 40 && half[0] < 250, "a share of 0.5 is lighter than 1 and darker than 0: %d vs %d", half[0], full[0]);
    }
    /* class characters: ink (black) above each column and left of each row */
    ink = 1;
    for (t = 0; t < CLASSES; t++) {
        ink &= count_colour(p, w, LEFT + t * CELL, TOP - 30, LEFT + t * CELL + CELL - 1, TOP - 4, 0, 0, 0) > 10;
        ink &= count_colour(p, w, LEFT - 30, TOP + t * CELL, LEFT - 4, TOP + t * CELL + CELL - 1, 0, 0, 0) > 10;
    }
    CHECK(ink, "a character drawn for every row and column");
    stbi_image_free(p);
    {   /* 47 classes: 20-pixel cells */
        static int big[47 * 47];
        CHECK(cnn_confusion_save_png(big, 47, NULL, path, &error) == CNN_OK, "save 47: %s", error.message);
        p = load_png(path, &w, &h);
        CHECK(p && w == 47 * 20 + 220 && h == 47 * 20 + 170, "47 classes: %d x %d", w, h);
        stbi_image_free(p);
    }
    CHECK(cnn_confusion_save_png(matrix, 0, NULL, path, &error) == CNN_ERROR_INVALID_ARGUMENT, "no classes: refused");
    CHECK(cnn_confusion_save_png(matrix, CLASSES, NULL, test_path("no-such-folder/c.png"), &error) == CNN_ERROR_IO,
          "a missing folder: CNN_ERROR_IO (%s)", error.message);
}

TEST(mistakes_png_shows_only_the_wrong_ones)
{
    enum { COUNT = 15, CELL_W = 68, CELL_H = 86, PAD = 12, TOP = 60 };
    cnn_dataset data;
    int labels[COUNT], predicted[COUNT], i, w = 0, h = 0;
    cnn_error error;
    const char *path = test_path("pictures_mistakes.png");
    unsigned char *p;
    memset(&data, 0, sizeof data);
    cnn_tensor_alloc(&data.images, COUNT, 1, 28, 28);
    for (i = 0; i < COUNT; i++) { /* image i is a flat grey of brightness i / 20 */
        int k;
        for (k = 0; k < 28 * 28; k++) data.images.data[i * 28 * 28 + k] = (float)i / 20.0f;
        labels[i] = i % 3;
        predicted[i] = i < 3 ? labels[i] : (labels[i] + 1) % 3; /* 0, 1, 2 right; 12 wrong */
    }
    data.count = COUNT, data.num_classes = 3, data.labels = labels;
    CHECK(cnn_mistakes_save_png(&data, predicted, NULL, path, &error) == CNN_OK, "save: %s", error.message);
    p = load_png(path, &w, &h);
    CHECK(p && w == 10 * CELL_W + 24 && h == 72 + 2 * CELL_H, "12 mistakes, 2 rows: %d x %d", w, h);
    if (p) {
        const unsigned char *first = pixel(p, w, PAD + 20, TOP + 20), *second = pixel(p, w, PAD + CELL_W + 20, TOP + 20);
        const unsigned char *row2 = pixel(p, w, PAD + 20, TOP + CELL_H + 20);
        CHECK(first[0] == 38 && first[1] == 38, "the first cell shows image 3 (grey 0.15 -> 38), got %d", first[0]);
        CHECK(second[0] == 51, "the second shows image 4 (0.2 -> 51), got %d", second[0]);
        CHECK(row2[0] == 166, "the second row starts with image 13 (0.65 -> 166), got %d", row2[0]);
        CHECK(count_colour(p, w, PAD, TOP + 56, PAD + CELL_W, TOP + CELL_H - 1, 26, 128, 38) > 10, "the true class in green");
        CHECK(count_colour(p, w, PAD, TOP + 56, PAD + CELL_W, TOP + CELL_H - 1, 204, 26, 26) > 10, "the prediction in red");
    }
    stbi_image_free(p);
    for (i = 0; i < COUNT; i++) predicted[i] = labels[i];
    CHECK(cnn_mistakes_save_png(&data, predicted, NULL, path, &error) == CNN_OK, "no mistakes: %s", error.message);
    p = load_png(path, &w, &h);
    CHECK(p && h == 72 + CELL_H, "no mistakes: one empty row, %d high", h);
    stbi_image_free(p);
    CHECK(cnn_mistakes_save_png(&data, NULL, NULL, path, &error) == CNN_ERROR_INVALID_ARGUMENT, "no predictions: refused");
    cnn_tensor_free(&data.images);
}

TEST(mistakes_png_stops_at_one_hundred)
{
    cnn_dataset data;
    static int labels[150], predicted[150];
    int i, w = 0, h = 0;
    cnn_error error;
    const char *path = test_path("pictures_mistakes100.png");
    unsigned char *p;
    memset(&data, 0, sizeof data);
    cnn_tensor_alloc(&data.images, 150, 1, 28, 28);
    for (i = 0; i < 150; i++) labels[i] = 0, predicted[i] = 1;
    data.count = 150, data.num_classes = 2, data.labels = labels;
    CHECK(cnn_mistakes_save_png(&data, predicted, NULL, path, &error) == CNN_OK, "save: %s", error.message);
    p = load_png(path, &w, &h);
    CHECK(p && w == 704 && h == 72 + 10 * 86, "100 shown in 10 rows: %d x %d", w, h);
    stbi_image_free(p);
    cnn_tensor_free(&data.images);
}

int main(void)
{
    RUN(history_grows_and_keeps_every_epoch);
    RUN(history_csv_has_a_header_and_one_line_per_epoch);
    RUN(history_csv_is_written_atomically);
    RUN(progress_prints_one_plain_line_per_epoch_to_a_file);
    RUN(progress_bar_shows_rate_and_eta_then_clears_itself);
    RUN(progress_with_fit_records_every_epoch);
    RUN(progress_without_a_stream_prints_nothing_but_records);
    RUN(confusion_report_gives_precision_recall_and_f1);
    RUN(curves_png_draws_train_and_validation);
    RUN(confusion_png_is_dark_on_the_diagonal);
    RUN(mistakes_png_shows_only_the_wrong_ones);
    RUN(mistakes_png_stops_at_one_hundred);
    return test_report();
}
