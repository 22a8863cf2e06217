/* test_data.c - the data loaders: Kaggle CSV, IDX and label mapping files.

   Every file is written by the test itself into $TEST_TMP, small enough to
   check by hand. A loader must give the right values on good files, and on
   bad ones the right code with the line, field or byte that is wrong, and
   leave the dataset (or map) empty and safe to free. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#include <stdarg.h>

/* ---------------------------------------------------------------- helpers */

/* A text built up piece by piece, then written to a scratch file. */
typedef struct text {
    char data[65536];
    size_t length;
} text;

static void text_add(text *t, const char *format, ...)
{
    va_list args;
    int written;
    va_start(args, format);
    written = vsnprintf(t->data + t->length, sizeof t->data - t->length, format, args);
    va_end(args);
    if (written > 0) t->length += (size_t)written;
}

/* Appends one CSV row: the label, then count pixel values, then eol. */
static void csv_row(text *t, int label, const int *pixels, int count, const char *eol)
{
    int i;
    text_add(t, "%d", label);
    for (i = 0; i < count; i++) text_add(t, ",%d", pixels[i]);
    text_add(t, "%s", eol);
}

/* Writes content to a scratch file called name and loads it as CSV. */
static cnn_result load_csv(cnn_dataset *dataset, const char *name, const char *content, const cnn_data_desc *desc)
{
    const char *path = test_write_file(name, content, strlen(content));
    return cnn_dataset_load_csv(dataset, path, desc);
}

/* A descriptor for tiny square images. */
static cnn_data_desc tiny(int side, cnn_orientation orientation)
{
    cnn_data_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.width = side;
    desc.height = side;
    desc.orientation = orientation;
    return desc;
}

/* Index of the first float that differs (bit for bit), or -1. */
static long first_difference(const float *got, const float *want, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        if (got[i] != want[i]) return (long)i;
    return -1;
}

/* Stored pixel values 0..255 as the loader should scale them. */
static void scale(const int *values, float *out, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++) out[i] = (float)values[i] / 255.0f;
}

/* Byte offset of the first occurrence of needle in haystack (must occur). */
static long long offset_of(const char *haystack, const char *needle)
{
    const char *at = strstr(haystack, needle);
    return at ? (long long)(at - haystack) : -2;
}

/* The error recorded in ERR has this code, line, field and byte, and says something. */
#define CHECK_ERROR(err, want_code, want_line, want_field, want_byte)                                          \
    do {                                                                                                       \
        const cnn_error *e_ = &(err);                                                                          \
        CHECK(e_->code == (want_code), "error.code %d, expected %d (%s)", (int)e_->code, (int)(want_code),     \
              e_->message);                                                                                    \
        CHECK(e_->line == (long)(want_line), "error.line %ld, expected %ld (%s)", e_->line, (long)(want_line), \
              e_->message);                                                                                    \
        CHECK(e_->field == (long)(want_field), "error.field %ld, expected %ld (%s)", e_->field,                \
              (long)(want_field), e_->message);                                                                \
        CHECK(e_->byte == (long long)(want_byte), "error.byte %lld, expected %lld (%s)", e_->byte,             \
              (long long)(want_byte), e_->message);                                                            \
        CHECK(e_->message[0] != '\0', "the error has no message");                                             \
    } while (0)

/* After a failed load the dataset holds nothing, and freeing it (twice) is safe. */
#define CHECK_DATASET_EMPTY(dataset)                                                                      \
    do {                                                                                                  \
        CHECK((dataset).count == 0, "count %d after a failed load", (dataset).count);                     \
        CHECK((dataset).images.data == NULL, "images.data not NULL after a failed load");                 \
        CHECK((dataset).labels == NULL, "labels not NULL after a failed load");                           \
        CHECK((dataset).images.n == 0, "images.n %d after a failed load", (dataset).images.n);            \
        cnn_dataset_free(&(dataset));                                                                     \
        cnn_dataset_free(&(dataset));                                                                     \
    } while (0)

/* A dataset loaded from content fails with this code, line, field and byte. */
#define CHECK_CSV_FAILS(name, content, desc, want_code, want_line, want_field, want_byte)              \
    do {                                                                                               \
        cnn_dataset ds_;                                                                               \
        cnn_result r_ = load_csv(&ds_, name, content, desc);                                           \
        CHECK(r_ == (want_code), "%s: result %d, expected %d", name, (int)r_, (int)(want_code));       \
        CHECK_ERROR(ds_.error, want_code, want_line, want_field, want_byte);                           \
        CHECK_DATASET_EMPTY(ds_);                                                                      \
    } while (0)

/* Three 2x2 rows that are all fine: lines 1 and 2 of the malformed files. */
#define GOOD_2X2 "1,0,1,2,3\n2,4,5,6,7\n"

/* ---------------------------------------------------------------- CSV: good files */

/* A Kaggle-style file (label + 784 pixels, default 28x28) loads with the right
   count, labels and num_classes; 255 becomes exactly 1.0; and each image is
   transposed: stored (row r, column c) lands at upright (row c, column r). */
TEST(csv_kaggle_rows_are_transposed_by_default)
{
    static int pixels[3][784];
    static text t;
    cnn_dataset ds;
    cnn_result r;
    memset(pixels, 0, sizeof pixels);
    t.length = 0;
    pixels[0][1 * 28 + 5] = 255;   /* stored row 1, column 5 */
    pixels[0][20 * 28 + 3] = 128;  /* stored row 20, column 3 */
    pixels[1][0 * 28 + 27] = 1;    /* stored row 0, column 27 */
    pixels[2][27 * 28 + 0] = 254;  /* stored row 27, column 0 */
    csv_row(&t, 7, pixels[0], 784, "\n");
    csv_row(&t, 0, pixels[1], 784, "\n");
    csv_row(&t, 12, pixels[2], 784, "\n");
    r = load_csv(&ds, "kaggle.csv", t.data, NULL);
    CHECK(r == CNN_OK, "load failed: %d %s", (int)r, ds.error.message);
    if (r != CNN_OK) return;
    CHECK(ds.count == 3, "count %d", ds.count);
    CHECK(ds.images.n == 3 && ds.images.c == 1 && ds.images.h == 28 && ds.images.w == 28,
          "images shape (%d, %d, %d, %d)", ds.images.n, ds.images.c, ds.images.h, ds.images.w);
    CHECK(ds.labels[0] == 7 && ds.labels[1] == 0 && ds.labels[2] == 12, "labels %d %d %d", ds.labels[0],
          ds.labels[1], ds.labels[2]);
    CHECK(ds.num_classes == 13, "num_classes %d, expected 1 + largest label = 13", ds.num_classes);
    /* image 0: upright (5, 1) = 1.0 exactly, and not at the stored place */
    CHECK(ds.images.data[5 * 28 + 1] == 1.0f, "upright (5,1) = %g", (double)ds.images.data[5 * 28 + 1]);
    CHECK(ds.images.data[1 * 28 + 5] == 0.0f, "stored place (1,5) = %g", (double)ds.images.data[1 * 28 + 5]);
    CHECK(ds.images.data[3 * 28 + 20] == 128.0f / 255.0f, "upright (3,20) = %g", (double)ds.images.data[3 * 28 + 20]);
    /* image 1: stored (0, 27) -> upright (27, 0) */
    CHECK(ds.images.data[784 + 27 * 28 + 0] == 1.0f / 255.0f, "image 1 upright (27,0) = %g",
          (double)ds.images.data[784 + 27 * 28]);
    /* image 2: stored (27, 0) -> upright (0, 27) */
    CHECK(ds.images.data[2 * 784 + 0 * 28 + 27] == 254.0f / 255.0f, "image 2 upright (0,27) = %g",
          (double)ds.images.data[2 * 784 + 27]);
    {
        /* every other pixel is 0 */
        int i, nonzero = 0;
        for (i = 0; i < 3 * 784; i++) nonzero += ds.images.data[i] != 0.0f;
        CHECK(nonzero == 4, "%d non-zero pixels, expected 4", nonzero);
    }
    cnn_dataset_free(&ds);
    CHECK(ds.count == 0 && ds.images.data == NULL && ds.labels == NULL, "cnn_dataset_free did not empty the dataset");
}

/* The same 28x28 file with CNN_ORIENTATION_AS_STORED keeps pixels where they are. */
TEST(csv_kaggle_rows_as_stored)
{
    static int pixels[784];
    static text t;
    cnn_data_desc desc;
    cnn_dataset ds;
    cnn_result r;
    memset(pixels, 0, sizeof pixels);
    memset(&desc, 0, sizeof desc);
    t.length = 0;
    desc.orientation = CNN_ORIENTATION_AS_STORED;
    pixels[1 * 28 + 5] = 255;
    csv_row(&t, 3, pixels, 784, "\n");
    r = load_csv(&ds, "kaggle_as_stored.csv", t.data, &desc);
    CHECK(r == CNN_OK, "load failed: %d %s", (int)r, ds.error.message);
    if (r != CNN_OK) return;
    CHECK(ds.count == 1 && ds.labels[0] == 3, "count %d label %d", ds.count, ds.labels[0]);
    CHECK(ds.images.data[1 * 28 + 5] == 1.0f, "stored (1,5) = %g", (double)ds.images.data[1 * 28 + 5]);
    CHECK(ds.images.data[5 * 28 + 1] == 0.0f, "(5,1) = %g", (double)ds.images.data[5 * 28 + 1]);
    cnn_dataset_free(&ds);
}

/* Tiny 3x3 images, checked value by value: transposed by default and with
   CNN_ORIENTATION_TRANSPOSE, untouched with CNN_ORIENTATION_AS_STORED. */
TEST(csv_tiny_values_and_orientation)
{
    static const char content[] = "1,10,20,30,40,50,60,70,80,90\n"
                                  "4,0,255,0,0,0,0,0,0,17\n";
    static const int stored[2][9] = {{10, 20, 30, 40, 50, 60, 70, 80, 90}, {0, 255, 0, 0, 0, 0, 0, 0, 17}};
    static const int upright[2][9] = {{10, 40, 70, 20, 50, 80, 30, 60, 90}, {0, 0, 0, 255, 0, 0, 0, 0, 17}};
    const cnn_orientation orientations[3] = {CNN_ORIENTATION_DEFAULT, CNN_ORIENTATION_TRANSPOSE,
                                             CNN_ORIENTATION_AS_STORED};
    int o;
    for (o = 0; o < 3; o++) {
        cnn_data_desc desc = tiny(3, orientations[o]);
        cnn_dataset ds;
        float want[18];
        long at;
        cnn_result r = load_csv(&ds, "tiny3.csv", content, &desc);
        CHECK(r == CNN_OK, "orientation %d: load failed: %s", o, ds.error.message);
        if (r != CNN_OK) continue;
        CHECK(ds.count == 2 && ds.labels[0] == 1 && ds.labels[1] == 4, "orientation %d: count %d", o, ds.count);
        CHECK(ds.images.h == 3 && ds.images.w == 3 && ds.images.c == 1, "orientation %d: image %dx%d", o,
              ds.images.h, ds.images.w);
        CHECK(ds.num_classes == 5, "num_classes %d", ds.num_classes);
        scale(orientations[o] == CNN_ORIENTATION_AS_STORED ? stored[0] : upright[0], want, 9);
        scale(orientations[o] == CNN_ORIENTATION_AS_STORED ? stored[1] : upright[1], want + 9, 9);
        at = first_difference(ds.images.data, want, 18);
        CHECK(at < 0, "orientation %d: pixel %ld is %g, expected %g", o, at, at < 0 ? 0.0 : (double)ds.images.data[at],
              at < 0 ? 0.0 : (double)want[at]);
        {
            /* the 255 of row 2 is stored at (0, 1), upright at (1, 0) */
            float full = ds.images.data[9 + (orientations[o] == CNN_ORIENTATION_AS_STORED ? 1 : 3)];
            CHECK(full == 1.0f, "orientation %d: 255 must scale to exactly 1.0, got %.9g", o, (double)full);
        }
        cnn_dataset_free(&ds);
    }
}

/* Transposing needs square images; non-square ones load as stored. */
TEST(csv_non_square_images)
{
    cnn_data_desc desc = tiny(3, CNN_ORIENTATION_AS_STORED);
    cnn_dataset ds;
    cnn_result r;
    float want[6];
    static const int values[6] = {1, 2, 3, 4, 5, 6};
    desc.height = 2; /* 2 rows of 3 */
    r = load_csv(&ds, "wide.csv", "9,1,2,3,4,5,6\n", &desc);
    CHECK(r == CNN_OK, "load failed: %s", ds.error.message);
    if (r == CNN_OK) {
        scale(values, want, 6);
        CHECK(ds.images.h == 2 && ds.images.w == 3, "image %dx%d, expected 2x3", ds.images.h, ds.images.w);
        CHECK(first_difference(ds.images.data, want, 6) < 0, "pixels differ");
        cnn_dataset_free(&ds);
    }
    desc.orientation = CNN_ORIENTATION_DEFAULT;
    r = load_csv(&ds, "wide.csv", "9,1,2,3,4,5,6\n", &desc);
    CHECK(r == CNN_ERROR_INVALID_ARGUMENT, "transposing 2x3 images: result %d", (int)r);
    CHECK_DATASET_EMPTY(ds);
}

/* A header line (Kaggle's "label,pixel1,...") is skipped, not counted. */
TEST(csv_header_line_tolerated)
{
    cnn_data_desc desc = tiny(2, CNN_ORIENTATION_AS_STORED);
    cnn_dataset ds;
    cnn_result r = load_csv(&ds, "header.csv", "label,pixel1,pixel2,pixel3,pixel4\n5,0,51,102,255\n6,1,2,3,4\n", &desc);
    CHECK(r == CNN_OK, "load failed: %s", ds.error.message);
    if (r != CNN_OK) return;
    CHECK(ds.count == 2, "count %d, expected 2", ds.count);
    CHECK(ds.labels[0] == 5 && ds.labels[1] == 6, "labels %d %d", ds.labels[0], ds.labels[1]);
    CHECK(ds.images.data[1] == 51.0f / 255.0f && ds.images.data[3] == 1.0f, "pixels %g %g",
          (double)ds.images.data[1], (double)ds.images.data[3]);
    cnn_dataset_free(&ds);
}

/* Windows line ends (CRLF), including on the last line, load the same values. */
TEST(csv_crlf_tolerated)
{
    cnn_data_desc desc = tiny(2, CNN_ORIENTATION_AS_STORED);
    cnn_dataset ds;
    cnn_result r = load_csv(&ds, "crlf.csv", "label,a,b,c,d\r\n1,0,1,2,255\r\n2,4,5,6,7\r\n", &desc);
    CHECK(r == CNN_OK, "load failed: %s", ds.error.message);
    if (r != CNN_OK) return;
    CHECK(ds.count == 2 && ds.labels[0] == 1 && ds.labels[1] == 2, "count %d", ds.count);
    CHECK(ds.images.data[3] == 1.0f, "last pixel before CR is %g, expected 1", (double)ds.images.data[3]);
    CHECK(ds.images.data[7] == 7.0f / 255.0f, "last pixel of row 2 is %g", (double)ds.images.data[7]);
    cnn_dataset_free(&ds);
}

/* Blank lines (a trailing one, one in the middle, a missing final newline) are not images. */
TEST(csv_blank_lines_tolerated)
{
    static const char *const files[4] = {GOOD_2X2 "\n", GOOD_2X2 "\r\n\n", "1,0,1,2,3\n\n2,4,5,6,7",
                                         "1,0,1,2,3\n  \n2,4,5,6,7\n"};
    int i;
    for (i = 0; i < 4; i++) {
        cnn_data_desc desc = tiny(2, CNN_ORIENTATION_AS_STORED);
        cnn_dataset ds;
        cnn_result r = load_csv(&ds, "blank.csv", files[i], &desc);
        CHECK(r == CNN_OK, "file %d: %s", i, ds.error.message);
        if (r != CNN_OK) continue;
        CHECK(ds.count == 2 && ds.labels[1] == 2, "file %d: count %d", i, ds.count);
        CHECK(ds.images.data[7] == 7.0f / 255.0f, "file %d: last pixel %g", i, (double)ds.images.data[7]);
        cnn_dataset_free(&ds);
    }
}

/* max_rows stops after that many images (a header does not count as one);
   lines after the limit are not read, so a bad one there does not matter. */
TEST(csv_max_rows_honoured)
{
    cnn_data_desc desc = tiny(2, CNN_ORIENTATION_AS_STORED);
    cnn_dataset ds;
    cnn_result r;
    desc.max_rows = 2;
    r = load_csv(&ds, "rows.csv", "label,a,b,c,d\n1,0,0,0,0\n2,0,0,0,0\n3,0,0,0,0\n4,0,0,0,0\n", &desc);
    CHECK(r == CNN_OK, "load failed: %s", ds.error.message);
    if (r == CNN_OK) {
        CHECK(ds.count == 2 && ds.images.n == 2, "count %d, images.n %d, expected 2", ds.count, ds.images.n);
        CHECK(ds.labels[0] == 1 && ds.labels[1] == 2, "labels %d %d", ds.labels[0], ds.labels[1]);
        CHECK(ds.num_classes == 3, "num_classes %d, expected 3 (from the rows read)", ds.num_classes);
        cnn_dataset_free(&ds);
    }
    desc.max_rows = 3;
    r = load_csv(&ds, "rows_bad_after.csv", "1,0,0,0,0\n2,0,0,0,0\n3,0,0,0,0\nnot,a,row\n", &desc);
    CHECK(r == CNN_OK && ds.count == 3, "a bad line after max_rows: result %d, count %d", (int)r, ds.count);
    cnn_dataset_free(&ds);
    desc.max_rows = 100;
    r = load_csv(&ds, "rows.csv", "1,0,0,0,0\n2,0,0,0,0\n", &desc);
    CHECK(r == CNN_OK && ds.count == 2, "max_rows above the file size: result %d, count %d", (int)r, ds.count);
    cnn_dataset_free(&ds);
}

/* num_classes sets dataset.num_classes (else 1 + the largest label) and
   accepts labels up to num_classes - 1. */
TEST(csv_num_classes_honoured)
{
    cnn_data_desc desc = tiny(2, CNN_ORIENTATION_AS_STORED);
    cnn_dataset ds;
    cnn_result r = load_csv(&ds, "classes.csv", "0,0,0,0,0\n3,0,0,0,0\n5,0,0,0,0\n", &desc);
    CHECK(r == CNN_OK && ds.num_classes == 6, "without num_classes: result %d, num_classes %d", (int)r, ds.num_classes);
    cnn_dataset_free(&ds);
    desc.num_classes = 47;
    r = load_csv(&ds, "classes.csv", "0,0,0,0,0\n3,0,0,0,0\n5,0,0,0,0\n", &desc);
    CHECK(r == CNN_OK && ds.num_classes == 47, "num_classes 47: result %d, num_classes %d", (int)r, ds.num_classes);
    cnn_dataset_free(&ds);
    r = load_csv(&ds, "classes46.csv", "46,0,0,0,0\n", &desc);
    CHECK(r == CNN_OK && ds.labels && ds.labels[0] == 46, "label 46 with num_classes 47: result %d", (int)r);
    cnn_dataset_free(&ds);
}

/* ---------------------------------------------------------------- CSV: bad files */

/* Too few or too many columns on line 3 -> that line (the row, not a field). */
TEST(csv_wrong_column_count)
{
    cnn_data_desc desc = tiny(2, CNN_ORIENTATION_DEFAULT);
    CHECK_CSV_FAILS("few.csv", GOOD_2X2 "3,1,2,3\n4,0,0,0,0\n", &desc, CNN_ERROR_MALFORMED_DATA, 3, 0, -1);
    CHECK_CSV_FAILS("many.csv", GOOD_2X2 "3,1,2,3,4,5\n4,0,0,0,0\n", &desc, CNN_ERROR_MALFORMED_DATA, 3, 0, -1);
    CHECK_CSV_FAILS("label_only.csv", GOOD_2X2 "3\n", &desc, CNN_ERROR_MALFORMED_DATA, 3, 0, -1);
    /* 784 columns expected by default: a 2x2 file is refused on its first line */
    CHECK_CSV_FAILS("not784.csv", GOOD_2X2, NULL, CNN_ERROR_MALFORMED_DATA, 1, 0, -1);
}

/* A field that is not a whole number -> its line, field and the byte where it goes wrong. */
TEST(csv_non_numeric_field)
{
    cnn_data_desc desc = tiny(2, CNN_ORIENTATION_DEFAULT);
    static const char abc[] = GOOD_2X2 "3,1,abc,3,4\n";
    static const char decimal[] = GOOD_2X2 "3,1,2,1.5,4\n";
    static const char label[] = GOOD_2X2 "x3,1,2,3,4\n";
    static const char empty_field[] = GOOD_2X2 "3,1,,3,4\n";
    CHECK_CSV_FAILS("abc.csv", abc, &desc, CNN_ERROR_MALFORMED_DATA, 3, 3, offset_of(abc, "abc"));
    CHECK_CSV_FAILS("decimal.csv", decimal, &desc, CNN_ERROR_MALFORMED_DATA, 3, 4, offset_of(decimal, ".5"));
    /* only line 1 may be a header: a non-numeric label later is an error */
    CHECK_CSV_FAILS("label.csv", label, &desc, CNN_ERROR_MALFORMED_DATA, 3, 1, offset_of(label, "x3"));
    CHECK_CSV_FAILS("empty_field.csv", empty_field, &desc, CNN_ERROR_MALFORMED_DATA, 3, 3, offset_of(empty_field, ",,") + 1);
}

/* Pixels outside 0..255 -> line and field (the label is field 1). */
TEST(csv_pixel_out_of_range)
{
    cnn_data_desc desc = tiny(2, CNN_ORIENTATION_DEFAULT);
    CHECK_CSV_FAILS("256.csv", GOOD_2X2 "3,1,2,256,4\n", &desc, CNN_ERROR_MALFORMED_DATA, 3, 4, -1);
    CHECK_CSV_FAILS("negative.csv", GOOD_2X2 "3,-1,2,3,4\n", &desc, CNN_ERROR_MALFORMED_DATA, 3, 2, -1);
    CHECK_CSV_FAILS("huge.csv", GOOD_2X2 "3,1,2,3,99999999999999999999\n", &desc, CNN_ERROR_MALFORMED_DATA, 3, 5, -1);
}

/* Labels outside 0..num_classes-1 -> line, field 1. */
TEST(csv_label_out_of_range)
{
    cnn_data_desc desc = tiny(2, CNN_ORIENTATION_DEFAULT);
    desc.num_classes = 47;
    CHECK_CSV_FAILS("label47.csv", "0,0,0,0,0\n46,0,0,0,0\n47,0,0,0,0\n", &desc, CNN_ERROR_MALFORMED_DATA, 3, 1, -1);
    CHECK_CSV_FAILS("label_negative.csv", GOOD_2X2 "-1,0,0,0,0\n", &desc, CNN_ERROR_MALFORMED_DATA, 3, 1, -1);
    /* without num_classes the limit is CNN_MAX_CLASSES */
    desc.num_classes = 0;
    CHECK_CSV_FAILS("label_max.csv", GOOD_2X2 "1024,0,0,0,0\n", &desc, CNN_ERROR_MALFORMED_DATA, 3, 1, -1);
}

/* An empty file is malformed (line 1, byte 0); a missing one is an I/O error. */
TEST(csv_empty_and_missing_files)
{
    cnn_data_desc desc = tiny(2, CNN_ORIENTATION_DEFAULT);
    cnn_dataset ds;
    cnn_result r;
    CHECK_CSV_FAILS("empty.csv", "", &desc, CNN_ERROR_MALFORMED_DATA, 1, 0, 0);
    r = cnn_dataset_load_csv(&ds, test_path("no-such-file.csv"), &desc);
    CHECK(r == CNN_ERROR_IO, "missing file: result %d", (int)r);
    CHECK_ERROR(ds.error, CNN_ERROR_IO, 0, 0, -1);
    CHECK(strstr(ds.error.message, "no-such-file.csv") != NULL, "message does not name the file: %s", ds.error.message);
    CHECK_DATASET_EMPTY(ds);
    /* a file with only a header holds no images */
    r = load_csv(&ds, "header_only.csv", "label,a,b,c,d\n", &desc);
    CHECK(r == CNN_ERROR_MALFORMED_DATA, "header only: result %d", (int)r);
    CHECK_DATASET_EMPTY(ds);
}

/* ---------------------------------------------------------------- IDX */

static void put_be32(unsigned char *at, uint32_t value)
{
    at[0] = (unsigned char)(value >> 24);
    at[1] = (unsigned char)(value >> 16);
    at[2] = (unsigned char)(value >> 8);
    at[3] = (unsigned char)value;
}

/* An IDX images file (magic 0x00000803, dims N, H, W) into out; returns its length. */
static size_t idx_images(unsigned char *out, uint32_t n, uint32_t h, uint32_t w, const unsigned char *pixels)
{
    put_be32(out, 0x00000803u);
    put_be32(out + 4, n);
    put_be32(out + 8, h);
    put_be32(out + 12, w);
    memcpy(out + 16, pixels, (size_t)n * h * w);
    return 16 + (size_t)n * h * w;
}

/* An IDX labels file (magic 0x00000801, dim N) into out; returns its length. */
static size_t idx_labels(unsigned char *out, uint32_t n, const unsigned char *labels)
{
    put_be32(out, 0x00000801u);
    put_be32(out + 4, n);
    memcpy(out + 8, labels, n);
    return 8 + (size_t)n;
}

/* Two 3x3 images (non-symmetric) with labels 2 and 9. */
static const unsigned char idx_pixels[18] = {0, 1, 2, 3, 4, 5, 6, 7, 255, 10, 0, 0, 20, 0, 0, 30, 0, 128};
static const unsigned char idx_label_bytes[2] = {2, 9};

/* Writes images and labels files (the given bytes) and loads them. */
static cnn_result load_idx(cnn_dataset *ds, const unsigned char *images, size_t images_length,
                           const unsigned char *labels, size_t labels_length, const cnn_data_desc *desc)
{
    char images_path[1024], labels_path[1024];
    snprintf(images_path, sizeof images_path, "%s", test_write_file("images.idx", images, images_length));
    snprintf(labels_path, sizeof labels_path, "%s", test_write_file("labels.idx", labels, labels_length));
    return cnn_dataset_load_idx(ds, images_path, labels_path, desc);
}

#define CHECK_IDX_FAILS(what, images, images_length, labels, labels_length, desc, want_code, want_byte)      \
    do {                                                                                                     \
        cnn_dataset ds_;                                                                                     \
        cnn_result r_ = load_idx(&ds_, images, images_length, labels, labels_length, desc);                  \
        CHECK(r_ == (want_code), "%s: result %d, expected %d (%s)", what, (int)r_, (int)(want_code),         \
              ds_.error.message);                                                                            \
        CHECK_ERROR(ds_.error, want_code, 0, 0, want_byte);                                                  \
        CHECK_DATASET_EMPTY(ds_);                                                                            \
    } while (0)

/* Valid IDX files load as stored by default (MNIST's orientation) and with
   AS_STORED, and transposed with CNN_ORIENTATION_TRANSPOSE. */
TEST(idx_values_and_orientation)
{
    unsigned char images[64], labels[16];
    size_t images_length = idx_images(images, 2, 3, 3, idx_pixels);
    size_t labels_length = idx_labels(labels, 2, idx_label_bytes);
    static const int transposed[18] = {0, 3, 6, 1, 4, 7, 2, 5, 255, 10, 20, 30, 0, 0, 0, 0, 0, 128};
    int stored[18], i, o;
    const cnn_orientation orientations[3] = {CNN_ORIENTATION_DEFAULT, CNN_ORIENTATION_AS_STORED,
                                             CNN_ORIENTATION_TRANSPOSE};
    for (i = 0; i < 18; i++) stored[i] = idx_pixels[i];
    for (o = 0; o < 3; o++) {
        cnn_data_desc desc = tiny(0, orientations[o]);
        cnn_dataset ds;
        float want[18];
        long at;
        cnn_result r = load_idx(&ds, images, images_length, labels, labels_length, &desc);
        CHECK(r == CNN_OK, "orientation %d: %s", o, ds.error.message);
        if (r != CNN_OK) continue;
        CHECK(ds.count == 2 && ds.labels[0] == 2 && ds.labels[1] == 9, "orientation %d: count %d", o, ds.count);
        CHECK(ds.num_classes == 10, "num_classes %d, expected 10", ds.num_classes);
        CHECK(ds.images.n == 2 && ds.images.c == 1 && ds.images.h == 3 && ds.images.w == 3, "shape (%d,%d,%d,%d)",
              ds.images.n, ds.images.c, ds.images.h, ds.images.w);
        scale(orientations[o] == CNN_ORIENTATION_TRANSPOSE ? transposed : stored, want, 18);
        at = first_difference(ds.images.data, want, 18);
        CHECK(at < 0, "orientation %d: pixel %ld is %g, expected %g", o, at, at < 0 ? 0.0 : (double)ds.images.data[at],
              at < 0 ? 0.0 : (double)want[at]);
        cnn_dataset_free(&ds);
    }
}

/* Non-square IDX images keep their height and width; num_classes and
   max_rows work as for CSV. */
TEST(idx_non_square_max_rows_num_classes)
{
    static const unsigned char pixels[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 255};
    static const unsigned char label_bytes[2] = {4, 1};
    unsigned char images[64], labels[16];
    size_t images_length = idx_images(images, 2, 2, 3, pixels);
    size_t labels_length = idx_labels(labels, 2, label_bytes);
    cnn_data_desc desc = tiny(0, CNN_ORIENTATION_DEFAULT);
    cnn_dataset ds;
    cnn_result r;
    desc.num_classes = 47;
    desc.max_rows = 1;
    r = load_idx(&ds, images, images_length, labels, labels_length, &desc);
    CHECK(r == CNN_OK, "%s", ds.error.message);
    if (r == CNN_OK) {
        CHECK(ds.count == 1 && ds.images.n == 1, "count %d, expected 1 (max_rows)", ds.count);
        CHECK(ds.images.h == 2 && ds.images.w == 3, "image %dx%d, expected 2x3", ds.images.h, ds.images.w);
        CHECK(ds.num_classes == 47 && ds.labels[0] == 4, "num_classes %d label %d", ds.num_classes, ds.labels[0]);
        CHECK(ds.images.data[5] == 6.0f / 255.0f, "pixel 5 = %g", (double)ds.images.data[5]);
        cnn_dataset_free(&ds);
    }
    desc.orientation = CNN_ORIENTATION_TRANSPOSE;
    CHECK_IDX_FAILS("transposing 2x3", images, images_length, labels, labels_length, &desc,
                    CNN_ERROR_INVALID_ARGUMENT, -1);
}

/* A damaged images file: truncated data (byte = the file's real size),
   truncated header (byte = its size), wrong magic (byte 0), wrong element
   type (byte 2), wrong dimension count (byte 3), zero dimension, trailing bytes
   (byte = where they start). */
TEST(idx_damaged_images_file)
{
    unsigned char images[64], labels[16], bad[64];
    size_t images_length = idx_images(images, 2, 3, 3, idx_pixels);
    size_t labels_length = idx_labels(labels, 2, idx_label_bytes);
    CHECK_IDX_FAILS("truncated data", images, images_length - 1, labels, labels_length, NULL,
                    CNN_ERROR_MALFORMED_DATA, (long long)images_length - 1);
    CHECK_IDX_FAILS("truncated header", images, 10, labels, labels_length, NULL, CNN_ERROR_MALFORMED_DATA, 10);
    CHECK_IDX_FAILS("3-byte file", images, 3, labels, labels_length, NULL, CNN_ERROR_MALFORMED_DATA, 0);
    memcpy(bad, images, images_length);
    bad[0] = 0x1f; /* gzip's first byte */
    CHECK_IDX_FAILS("wrong magic", bad, images_length, labels, labels_length, NULL, CNN_ERROR_MALFORMED_DATA, 0);
    memcpy(bad, images, images_length);
    bad[2] = 0x0D; /* float32 elements */
    CHECK_IDX_FAILS("wrong type", bad, images_length, labels, labels_length, NULL, CNN_ERROR_MALFORMED_DATA, 2);
    memcpy(bad, images, images_length);
    bad[3] = 0x02; /* two dimensions */
    CHECK_IDX_FAILS("wrong dims", bad, images_length, labels, labels_length, NULL, CNN_ERROR_MALFORMED_DATA, 3);
    memcpy(bad, images, images_length);
    put_be32(bad + 8, 0); /* height 0 */
    CHECK_IDX_FAILS("zero height", bad, images_length, labels, labels_length, NULL, CNN_ERROR_MALFORMED_DATA, 8);
    memcpy(bad, images, images_length);
    bad[images_length] = 0;
    CHECK_IDX_FAILS("trailing byte", bad, images_length + 1, labels, labels_length, NULL, CNN_ERROR_MALFORMED_DATA,
                    (long long)images_length);
}

/* A damaged labels file, or one that disagrees with the images. */
TEST(idx_damaged_labels_file)
{
    static const unsigned char three[3] = {1, 2, 3};
    unsigned char images[64], labels[16], bad[16], labels3[16];
    size_t images_length = idx_images(images, 2, 3, 3, idx_pixels);
    size_t labels_length = idx_labels(labels, 2, idx_label_bytes);
    size_t labels3_length = idx_labels(labels3, 3, three);
    cnn_data_desc desc = tiny(0, CNN_ORIENTATION_DEFAULT);
    /* the images file given twice: a labels file must have 1 dimension (byte 3) */
    CHECK_IDX_FAILS("images as labels", images, images_length, images, images_length, NULL, CNN_ERROR_MALFORMED_DATA, 3);
    CHECK_IDX_FAILS("truncated labels", images, images_length, labels, labels_length - 1, NULL,
                    CNN_ERROR_MALFORMED_DATA, (long long)labels_length - 1);
    memcpy(bad, labels, labels_length);
    bad[labels_length] = 7;
    CHECK_IDX_FAILS("trailing label byte", images, images_length, bad, labels_length + 1, NULL,
                    CNN_ERROR_MALFORMED_DATA, (long long)labels_length);
    /* 2 images, 3 labels: the count (byte 4) disagrees */
    CHECK_IDX_FAILS("count mismatch", images, images_length, labels3, labels3_length, NULL,
                    CNN_ERROR_MALFORMED_DATA, 4);
    /* label 9 (image 1, byte 8 + 1) with num_classes 9 */
    desc.num_classes = 9;
    CHECK_IDX_FAILS("label >= num_classes", images, images_length, labels, labels_length, &desc,
                    CNN_ERROR_MALFORMED_DATA, 9);
}

/* A missing images or labels file is an I/O error. */
TEST(idx_missing_files)
{
    unsigned char images[64];
    size_t images_length = idx_images(images, 2, 3, 3, idx_pixels);
    char images_path[1024];
    cnn_dataset ds;
    cnn_result r;
    snprintf(images_path, sizeof images_path, "%s", test_write_file("present.idx", images, images_length));
    r = cnn_dataset_load_idx(&ds, test_path("no-such-images.idx"), images_path, NULL);
    CHECK(r == CNN_ERROR_IO, "missing images: result %d", (int)r);
    CHECK_ERROR(ds.error, CNN_ERROR_IO, 0, 0, -1);
    CHECK_DATASET_EMPTY(ds);
    r = cnn_dataset_load_idx(&ds, images_path, test_path("no-such-labels.idx"), NULL);
    CHECK(r == CNN_ERROR_IO, "missing labels: result %d", (int)r);
    CHECK_ERROR(ds.error, CNN_ERROR_IO, 0, 0, -1);
    CHECK(strstr(ds.error.message, "no-such-labels.idx") != NULL, "message does not name the file: %s", ds.error.message);
    CHECK_DATASET_EMPTY(ds);
}

/* ---------------------------------------------------------------- messages */

/* Every data error names its file, so that a training file's error cannot be
   taken for the test file's; a label's limit is said for what it is; and a
   gzipped file is recognised as one, with how to unpack it. */
TEST(errors_name_the_file_and_the_reason)
{
    static const unsigned char gzip_start[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00};
    cnn_data_desc desc = tiny(2, CNN_ORIENTATION_DEFAULT);
    cnn_dataset ds;
    cnn_label_map map;
    char path[1024], expected[2200];
    unsigned char labels[16];
    size_t labels_length = idx_labels(labels, 2, idx_label_bytes);
    const char *labels_path;

    snprintf(path, sizeof path, "%s", test_write_file("train.csv", GOOD_2X2 "3,1,0a,3,4\n", strlen(GOOD_2X2 "3,1,0a,3,4\n")));
    CHECK(cnn_dataset_load_csv(&ds, path, &desc) == CNN_ERROR_MALFORMED_DATA, "bad CSV loaded");
    snprintf(expected, sizeof expected, "'%s', line 3, field 3: unexpected character 'a' in a number", path);
    CHECK(strcmp(ds.error.message, expected) == 0, "message '%s', expected '%s'", ds.error.message, expected);
    CHECK(load_csv(&ds, "m.csv", GOOD_2X2 "-3,0,0,0,0\n", &desc) == CNN_ERROR_MALFORMED_DATA, "negative label loaded");
    CHECK(strstr(ds.error.message, "line 3: label -3 is negative") != NULL, "message: %s", ds.error.message);
    CHECK(load_csv(&ds, "m.csv", GOOD_2X2 "5000,0,0,0,0\n", &desc) == CNN_ERROR_MALFORMED_DATA, "label 5000 loaded");
    CHECK(strstr(ds.error.message, "label 5000 is above 1023, the most classes cnn.h takes") != NULL, "message: %s", ds.error.message);
    desc.num_classes = 4;
    CHECK(load_csv(&ds, "m.csv", GOOD_2X2 "4,0,0,0,0\n", &desc) == CNN_ERROR_MALFORMED_DATA, "label 4 of 4 classes loaded");
    CHECK(strstr(ds.error.message, "label 4 is outside 0..3 (4 classes asked for)") != NULL, "message: %s", ds.error.message);

    /* gzipped CSV, IDX and mapping files */
    snprintf(path, sizeof path, "%s", test_write_file("train.csv.gz", gzip_start, sizeof gzip_start));
    CHECK(cnn_dataset_load_csv(&ds, path, NULL) == CNN_ERROR_MALFORMED_DATA, "gzipped CSV loaded");
    snprintf(expected, sizeof expected, "'%s' looks gzip-compressed: unpack it first (gunzip -k '%s')", path, path);
    CHECK(strcmp(ds.error.message, expected) == 0, "message '%s'", ds.error.message);
    labels_path = test_write_file("labels.idx", labels, labels_length);
    CHECK(cnn_dataset_load_idx(&ds, path, labels_path, NULL) == CNN_ERROR_MALFORMED_DATA, "gzipped IDX loaded");
    CHECK(strcmp(ds.error.message, expected) == 0, "message '%s'", ds.error.message);

    /* a mapping file's errors name it too */
    snprintf(path, sizeof path, "%s", test_write_file("mapping.txt", "0 48\n1 x\n", 9));
    CHECK(cnn_label_map_load(&map, path) == CNN_ERROR_MALFORMED_DATA, "bad mapping loaded");
    snprintf(expected, sizeof expected, "'%s', line 2:", path);
    CHECK(strncmp(map.error.message, expected, strlen(expected)) == 0, "message '%s'", map.error.message);
}

/* ---------------------------------------------------------------- label mapping files */

/* EMNIST Balanced's 47 classes: digits, A-Z, and a b d e f g h n q r t. */
static const int balanced_codes[47] = {48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 65, 66, 67, 68, 69, 70,
                                       71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86,
                                       87, 88, 89, 90, 97, 98, 100, 101, 102, 103, 104, 110, 113, 114, 116};

/* A copy of emnist-balanced-mapping.txt, with its CRLF line ends. */
static const char *write_balanced_mapping(void)
{
    static text t;
    int i;
    t.length = 0;
    for (i = 0; i < 47; i++) text_add(&t, "%d %d\r\n", i, balanced_codes[i]);
    return test_write_file("emnist-balanced-mapping.txt", t.data, t.length);
}

/* Checks the 47 Balanced entries and '?' outside them. */
static void check_balanced_map(const cnn_label_map *map)
{
    int i, wrong = 0;
    CHECK(map->count == 47, "count %d, expected 47", map->count);
    for (i = 0; i < 47; i++) wrong += cnn_label_map_char(map, i) != balanced_codes[i];
    CHECK(wrong == 0, "%d labels map to the wrong character", wrong);
    CHECK(cnn_label_map_char(map, 0) == '0', "label 0 -> %d", cnn_label_map_char(map, 0));
    CHECK(cnn_label_map_char(map, 9) == '9', "label 9 -> %d", cnn_label_map_char(map, 9));
    CHECK(cnn_label_map_char(map, 10) == 'A', "label 10 -> %d", cnn_label_map_char(map, 10));
    CHECK(cnn_label_map_char(map, 35) == 'Z', "label 35 -> %d", cnn_label_map_char(map, 35));
    CHECK(cnn_label_map_char(map, 36) == 'a', "label 36 -> %d", cnn_label_map_char(map, 36));
    CHECK(cnn_label_map_char(map, 46) == 't', "label 46 -> %d", cnn_label_map_char(map, 46));
    CHECK(cnn_label_map_char(map, 47) == '?', "label 47 -> %d", cnn_label_map_char(map, 47));
    CHECK(cnn_label_map_char(map, -1) == '?', "label -1 -> %d", cnn_label_map_char(map, -1));
    CHECK(cnn_label_map_char(map, 1023) == '?', "label 1023 -> %d", cnn_label_map_char(map, 1023));
}

/* The Balanced mapping (as shipped, CRLF) loads with 47 entries. */
TEST(label_map_balanced)
{
    static const char unordered[] = "2 67\n\n0 65\n1 66\n";
    cnn_label_map map;
    cnn_result r = cnn_label_map_load(&map, write_balanced_mapping());
    CHECK(r == CNN_OK, "load failed: %s", map.error.message);
    check_balanced_map(&map);
    CHECK(cnn_label_map_char(NULL, 0) == '?', "NULL map must give '?'");
    /* LF line ends, a blank line and lines in any order work too */
    r = cnn_label_map_load(&map, test_write_file("unordered.txt", unordered, strlen(unordered)));
    CHECK(r == CNN_OK && map.count == 3, "result %d count %d (%s)", (int)r, map.count, map.error.message);
    CHECK(cnn_label_map_char(&map, 0) == 'A' && cnn_label_map_char(&map, 2) == 'C', "unordered map is wrong");
}

/* Loads content as a mapping file and checks it fails with this line and byte. */
#define CHECK_MAP_FAILS(name, content, want_line, want_byte)                                            \
    do {                                                                                                \
        cnn_label_map map_;                                                                             \
        cnn_result r_ = cnn_label_map_load(&map_, test_write_file(name, content, strlen(content)));     \
        CHECK(r_ == CNN_ERROR_MALFORMED_DATA, "%s: result %d (%s)", name, (int)r_, map_.error.message); \
        CHECK_ERROR(map_.error, CNN_ERROR_MALFORMED_DATA, want_line, 0, want_byte);                     \
        CHECK(map_.count == 0, "%s: count %d after a failed load", name, map_.count);                   \
        CHECK(cnn_label_map_char(&map_, 0) == '?', "%s: a failed map still maps label 0", name);        \
    } while (0)

/* Malformed mapping files are refused with the line that is wrong. */
TEST(label_map_malformed)
{
    static const char one_number[] = "0 48\n1 49\n2\n3 51\n";
    static const char text_label[] = "0 48\nA 65\n";
    static const char trailing[] = "0 48\n1 49 x\n";
    CHECK_MAP_FAILS("one_number.txt", one_number, 3, offset_of(one_number, "2\n") + 1);
    CHECK_MAP_FAILS("text.txt", text_label, 2, offset_of(text_label, "A"));
    CHECK_MAP_FAILS("trailing.txt", trailing, 2, offset_of(trailing, "x"));
    CHECK_MAP_FAILS("duplicate.txt", "0 48\n1 49\n1 50\n", 3, -1);
    CHECK_MAP_FAILS("negative.txt", "0 48\n-1 49\n", 2, -1);
    CHECK_MAP_FAILS("too_big.txt", "0 48\n1024 49\n", 2, -1);
    CHECK_MAP_FAILS("empty.txt", "", 1, 0);
    CHECK_MAP_FAILS("blank.txt", "\n\n", 1, 0);
    /* A gap (no line for label 2) is not the fault of any one line: the
       library reports line 0 ("not about a line") and names the label. */
    {
        cnn_label_map map;
        static const char gap[] = "0 48\n1 49\n3 51\n";
        cnn_result r = cnn_label_map_load(&map, test_write_file("gap.txt", gap, strlen(gap)));
        CHECK(r == CNN_ERROR_MALFORMED_DATA, "gap: result %d", (int)r);
        CHECK_ERROR(map.error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1);
        CHECK(strstr(map.error.message, "label 2") != NULL, "gap: message does not name label 2: %s", map.error.message);
        CHECK(map.count == 0, "gap: count %d", map.count);
    }
}

/* A missing mapping file is an I/O error. */
TEST(label_map_missing_file)
{
    cnn_label_map map;
    cnn_result r = cnn_label_map_load(&map, test_path("no-such-mapping.txt"));
    CHECK(r == CNN_ERROR_IO, "result %d", (int)r);
    CHECK_ERROR(map.error, CNN_ERROR_IO, 0, 0, -1);
    CHECK(map.count == 0 && cnn_label_map_char(&map, 0) == '?', "count %d", map.count);
}

/* The real emnist-balanced-mapping.txt from $EMNIST_DIR, when it is there. */
TEST(label_map_real_emnist_file)
{
    const char *dir = getenv("EMNIST_DIR");
    char path[1024];
    FILE *file;
    cnn_label_map map;
    cnn_result r;
    if (!dir || !*dir) SKIP("EMNIST_DIR is not set");
    snprintf(path, sizeof path, "%s/emnist-balanced-mapping.txt", dir);
    file = fopen(path, "rb");
    if (!file) SKIP("%s does not exist", path);
    fclose(file);
    r = cnn_label_map_load(&map, path);
    CHECK(r == CNN_OK, "%s: %s", path, map.error.message);
    check_balanced_map(&map);
}

int main(void)
{
    RUN(csv_kaggle_rows_are_transposed_by_default);
    RUN(csv_kaggle_rows_as_stored);
    RUN(csv_tiny_values_and_orientation);
    RUN(csv_non_square_images);
    RUN(csv_header_line_tolerated);
    RUN(csv_crlf_tolerated);
    RUN(csv_blank_lines_tolerated);
    RUN(csv_max_rows_honoured);
    RUN(csv_num_classes_honoured);
    RUN(csv_wrong_column_count);
    RUN(csv_non_numeric_field);
    RUN(csv_pixel_out_of_range);
    RUN(csv_label_out_of_range);
    RUN(csv_empty_and_missing_files);
    RUN(idx_values_and_orientation);
    RUN(idx_non_square_max_rows_num_classes);
    RUN(idx_damaged_images_file);
    RUN(idx_damaged_labels_file);
    RUN(idx_missing_files);
    RUN(errors_name_the_file_and_the_reason);
    RUN(label_map_balanced);
    RUN(label_map_malformed);
    RUN(label_map_missing_file);
    RUN(label_map_real_emnist_file);
    return test_report();
}
