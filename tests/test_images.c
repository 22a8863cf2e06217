/* test_images.c - the optional image code (CNN_IMAGES): loading, resizing,
   characters made to look like EMNIST, image-folder datasets and
   augmentation.

   Every image is made here: known pixel arrays and a drawn character are
   written as PNG (and BMP, TGA, JPEG) with stb_image_write into $TEST_TMP
   and read back through cnn.h, so each value can be checked by hand. The
   folder test draws a tree of squares, circles and crosses and trains a
   small CNN on it, both from examples/folders.h. Needs stb_image.h and stb_image_write.h (libstb-dev). */
#define _POSIX_C_SOURCE 200809L /* mkdir */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define CNN_IMAGES
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"
#include "../examples/folders.h" /* the shapes and the CNN of examples/folders.c */

#include <errno.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- helpers */

static int make_folder(const char *path)
{
    return mkdir(path, 0777) == 0 || errno == EEXIST;
}

/* Writes text to the file at path (a full path). */
static void write_text(const char *path, const char *text)
{
    FILE *file = fopen(path, "wb");
    if (!file) {
        printf("    cannot create %s\n", path);
        return;
    }
    fputs(text, file);
    fclose(file);
}

/* Centre of mass (x, y) of a (h, w) plane, pixel x at x + 0.5. */
static void centre_of_mass(const float *p, int h, int w, double *cx, double *cy)
{
    double mass = 0.0, mx = 0.0, my = 0.0;
    int x, y;
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            mass += p[y * w + x];
            mx += p[y * w + x] * (x + 0.5);
            my += p[y * w + x] * (y + 0.5);
        }
    *cx = mass > 0.0 ? mx / mass : -1.0;
    *cy = mass > 0.0 ? my / mass : -1.0;
}

/* Bounding box of the pixels above threshold: columns x0..x1, rows y0..y1. */
static void ink_box(const float *p, int h, int w, float threshold, int *x0, int *x1, int *y0, int *y1)
{
    int x, y;
    *x0 = w; *x1 = -1; *y0 = h; *y1 = -1;
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            if (p[y * w + x] > threshold) {
                if (x < *x0) *x0 = x;
                if (x > *x1) *x1 = x;
                if (y < *y0) *y0 = y;
                if (y > *y1) *y1 = y;
            }
}

/* A white (h, w) canvas of bytes with a black filled rectangle. */
static void white_with_rectangle(unsigned char *canvas, int h, int w, int x0, int y0, int rw, int rh)
{
    int x, y;
    memset(canvas, 255, (size_t)h * (size_t)w);
    for (y = y0; y < y0 + rh; y++)
        for (x = x0; x < x0 + rw; x++) canvas[y * w + x] = 0;
}

/* Distance from (px, py) to the segment (ax, ay)-(bx, by). */
static double segment_distance(double px, double py, double ax, double ay, double bx, double by)
{
    double dx = bx - ax, dy = by - ay, t = ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy);
    t = t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t;
    dx = ax + t * dx - px;
    dy = ay + t * dy - py;
    return sqrt(dx * dx + dy * dy);
}

/* A '7' drawn in black on white bytes (h, w): a bar along the top from
   (x0, y0) to (x1, y0), then a stroke down to (x2, y2); round pen of width
   pen pixels, edges anti-aliased over one pixel. */
static void draw_seven(unsigned char *canvas, int h, int w, double x0, double y0, double x1, double x2, double y2, double pen)
{
    int x, y;
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            double a = segment_distance(x + 0.5, y + 0.5, x0, y0, x1, y0);
            double b = segment_distance(x + 0.5, y + 0.5, x1, y0, x2, y2);
            double cover = pen / 2.0 - (a < b ? a : b) + 0.5;
            cover = cover < 0.0 ? 0.0 : cover > 1.0 ? 1.0 : cover;
            canvas[y * w + x] = (unsigned char)(255.0 * (1.0 - cover) + 0.5);
        }
}

/* A grey image from bytes: value / 255. */
static int image_from_bytes(cnn_image *image, const unsigned char *bytes, int h, int w)
{
    int i;
    if (cnn_image_alloc(image, 1, h, w) != CNN_OK) return 0;
    for (i = 0; i < h * w; i++) image->data[i] = bytes[i] / 255.0f;
    return 1;
}

/* ---------------------------------------------------------------- loading */

TEST(load_grey_png_exactly)
{
    static const unsigned char pixels[3 * 4] = {0, 1, 2, 3, 64, 127, 128, 200, 250, 253, 254, 255};
    const char *path = test_path("grey.png");
    cnn_image image;
    int i;
    CHECK(stbi_write_png(path, 4, 3, 1, pixels, 4), "stb_image_write failed");
    CHECK(cnn_image_load(&image, path, 0) == CNN_OK, "%s", image.error.message);
    CHECK(image.c == 1 && image.h == 3 && image.w == 4, "shape %d %d %d", image.c, image.h, image.w);
    for (i = 0; image.data && i < 12; i++)
        CHECK(image.data[i] == pixels[i] / 255.0f, "pixel %d: %g, want %g", i, (double)image.data[i], pixels[i] / 255.0);
    cnn_image_free(&image);
    /* as RGB: three equal planes */
    CHECK(cnn_image_load(&image, path, 3) == CNN_OK, "%s", image.error.message);
    CHECK(image.c == 3, "channels %d", image.c);
    for (i = 0; image.data && i < 12; i++)
        CHECK(image.data[i] == pixels[i] / 255.0f && image.data[12 + i] == image.data[i] && image.data[24 + i] == image.data[i],
              "pixel %d", i);
    cnn_image_free(&image);
}

TEST(load_rgb_png_planar_and_grey_weights)
{
    /* 2 x 2 interleaved RGB: red, green, blue, a mixed colour */
    static const unsigned char pixels[2 * 2 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 100, 200};
    const char *path = test_path("rgb.png");
    cnn_image image;
    int i, k;
    CHECK(stbi_write_png(path, 2, 2, 3, pixels, 2 * 3), "stb_image_write failed");
    CHECK(cnn_image_load(&image, path, 0) == CNN_OK, "%s", image.error.message);
    CHECK(image.c == 3 && image.h == 2 && image.w == 2, "shape %d %d %d", image.c, image.h, image.w);
    for (i = 0; image.data && i < 4; i++)
        for (k = 0; k < 3; k++) /* planar: channel k of pixel i at k * 4 + i */
            CHECK(image.data[k * 4 + i] == pixels[i * 3 + k] / 255.0f, "pixel %d channel %d: %g", i, k, (double)image.data[k * 4 + i]);
    cnn_image_free(&image);
    CHECK(cnn_image_load(&image, path, 1) == CNN_OK, "%s", image.error.message);
    for (i = 0; image.data && i < 4; i++) {
        double want = (0.299 * pixels[3 * i] + 0.587 * pixels[3 * i + 1] + 0.114 * pixels[3 * i + 2]) / 255.0;
        CHECK(fabs(image.data[i] - want) < 1e-6, "grey pixel %d: %g, want %g", i, (double)image.data[i], want);
    }
    cnn_image_free(&image);
}

TEST(alpha_composited_over_white)
{
    /* RGBA: transparent black, opaque black, half-transparent red, opaque grey */
    static const unsigned char rgba[4 * 4] = {0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 128, 100, 100, 100, 255};
    static const unsigned char grey_alpha[2 * 2] = {0, 0, 51, 255}; /* grey + alpha */
    const char *path = test_path("rgba.png");
    const double a = 128 / 255.0;
    cnn_image image;
    CHECK(stbi_write_png(path, 4, 1, 4, rgba, 4 * 4), "stb_image_write failed");
    CHECK(cnn_image_load(&image, path, 3) == CNN_OK, "%s", image.error.message);
    if (image.data) {
        /* R plane, G plane, B plane of 4 pixels each */
        CHECK(image.data[0] == 1.0f && image.data[4] == 1.0f && image.data[8] == 1.0f, "transparent is white");
        CHECK(image.data[1] == 0.0f && image.data[5] == 0.0f && image.data[9] == 0.0f, "opaque black stays black");
        CHECK(fabs(image.data[2] - 1.0) < 1e-6, "red over white: R %g", (double)image.data[2]);
        CHECK(fabs(image.data[6] - (1.0 - a)) < 1e-6 && fabs(image.data[10] - (1.0 - a)) < 1e-6, "red over white: G %g, want %g",
              (double)image.data[6], 1.0 - a);
        CHECK(fabs(image.data[3] - 100 / 255.0) < 1e-6, "opaque grey %g", (double)image.data[3]);
    }
    cnn_image_free(&image);
    path = test_path("grey_alpha.png");
    CHECK(stbi_write_png(path, 2, 1, 2, grey_alpha, 2 * 2), "stb_image_write failed");
    CHECK(cnn_image_load(&image, path, 0) == CNN_OK, "%s", image.error.message);
    CHECK(image.c == 1, "grey + alpha loads as grey: %d channels", image.c);
    CHECK(image.data && image.data[0] == 1.0f && fabs(image.data[1] - 51 / 255.0) < 1e-6, "grey over white: %g %g",
          image.data ? (double)image.data[0] : -1.0, image.data ? (double)image.data[1] : -1.0);
    cnn_image_free(&image);
}

/* An 8 x 8 JPEG of flat grey 100, as stbi_write_jpg writes it at quality 95
   (made once and kept here: stb_image_write's JPEG encoder shifts signed
   ints past their range, which UBSan reports, and the suite runs under it). */
static const unsigned char flat_jpeg[612] = {
    255, 216, 255, 224, 0, 16, 74, 70, 73, 70, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
    255, 219, 0, 132, 0, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 2, 2, 2, 2, 2,
    4, 3, 2, 2, 2, 2, 5, 4, 4, 3, 4, 6, 5, 6, 6, 6, 5, 6, 6, 6,
    7, 9, 8, 6, 7, 9, 7, 6, 6, 8, 11, 8, 9, 10, 10, 10, 10, 10, 6, 8,
    11, 12, 11, 10, 12, 9, 10, 10, 10, 1, 2, 2, 2, 2, 2, 2, 5, 3, 3, 5,
    10, 7, 6, 7, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 255, 192, 0, 17, 8, 0,
    8, 0, 8, 3, 1, 17, 0, 2, 17, 1, 3, 17, 1, 255, 196, 1, 162, 0, 0, 1,
    5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5,
    6, 7, 8, 9, 10, 11, 16, 0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0,
    0, 1, 125, 1, 2, 3, 0, 4, 17, 5, 18, 33, 49, 65, 6, 19, 81, 97, 7, 34,
    113, 20, 50, 129, 145, 161, 8, 35, 66, 177, 193, 21, 82, 209, 240, 36, 51, 98, 114, 130,
    9, 10, 22, 23, 24, 25, 26, 37, 38, 39, 40, 41, 42, 52, 53, 54, 55, 56, 57, 58,
    67, 68, 69, 70, 71, 72, 73, 74, 83, 84, 85, 86, 87, 88, 89, 90, 99, 100, 101, 102,
    103, 104, 105, 106, 115, 116, 117, 118, 119, 120, 121, 122, 131, 132, 133, 134, 135, 136, 137, 138,
    146, 147, 148, 149, 150, 151, 152, 153, 154, 162, 163, 164, 165, 166, 167, 168, 169, 170, 178, 179,
    180, 181, 182, 183, 184, 185, 186, 194, 195, 196, 197, 198, 199, 200, 201, 202, 210, 211, 212, 213,
    214, 215, 216, 217, 218, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 241, 242, 243, 244, 245,
    246, 247, 248, 249, 250, 1, 0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
    0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 17, 0, 2, 1, 2, 4,
    4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 119, 0, 1, 2, 3, 17, 4, 5, 33, 49,
    6, 18, 65, 81, 7, 97, 113, 19, 34, 50, 129, 8, 20, 66, 145, 161, 177, 193, 9, 35,
    51, 82, 240, 21, 98, 114, 209, 10, 22, 36, 52, 225, 37, 241, 23, 24, 25, 26, 38, 39,
    40, 41, 42, 53, 54, 55, 56, 57, 58, 67, 68, 69, 70, 71, 72, 73, 74, 83, 84, 85,
    86, 87, 88, 89, 90, 99, 100, 101, 102, 103, 104, 105, 106, 115, 116, 117, 118, 119, 120, 121,
    122, 130, 131, 132, 133, 134, 135, 136, 137, 138, 146, 147, 148, 149, 150, 151, 152, 153, 154, 162,
    163, 164, 165, 166, 167, 168, 169, 170, 178, 179, 180, 181, 182, 183, 184, 185, 186, 194, 195, 196,
    197, 198, 199, 200, 201, 202, 210, 211, 212, 213, 214, 215, 216, 217, 218, 226, 227, 228, 229, 230,
    231, 232, 233, 234, 242, 243, 244, 245, 246, 247, 248, 249, 250, 255, 218, 0, 12, 3, 1, 0,
    2, 17, 3, 17, 0, 63, 0, 240, 250, 0, 255, 217,
};

TEST(other_formats_and_memory)
{
    static const unsigned char pixels[2 * 3 * 3] = {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 255};
    cnn_image image, from_memory;
    unsigned char *bytes;
    size_t size = 0;
    int i;
    /* BMP and TGA are lossless */
    CHECK(stbi_write_bmp(test_path("rgb.bmp"), 3, 2, 3, pixels), "bmp");
    CHECK(stbi_write_tga(test_path("rgb.tga"), 3, 2, 3, pixels), "tga");
    CHECK(cnn_image_load(&image, test_path("rgb.bmp"), 3) == CNN_OK, "%s", image.error.message);
    for (i = 0; image.data && i < 6; i++) CHECK(image.data[6 + i] == pixels[3 * i + 1] / 255.0f, "bmp G of pixel %d", i);
    cnn_image_free(&image);
    CHECK(cnn_image_load(&image, test_path("rgb.tga"), 3) == CNN_OK, "%s", image.error.message);
    for (i = 0; image.data && i < 6; i++) CHECK(image.data[12 + i] == pixels[3 * i + 2] / 255.0f, "tga B of pixel %d", i);
    cnn_image_free(&image);
    /* JPEG is lossy: a flat grey of 100 must come back near 100 / 255 */
    CHECK(cnn_image_load_memory(&image, flat_jpeg, sizeof flat_jpeg, 1) == CNN_OK, "%s", image.error.message);
    CHECK(image.c == 1 && image.h == 8 && image.w == 8, "jpeg shape");
    for (i = 0; image.data && i < 64; i++) CHECK(fabs(image.data[i] - 100 / 255.0) < 3 / 255.0, "jpeg pixel %d: %g", i, (double)image.data[i]);
    cnn_image_free(&image);
    /* the same bytes from memory give the same image */
    bytes = test_read_file(test_path("rgb.bmp"), &size);
    CHECK(bytes && size > 0, "cannot read back rgb.bmp");
    CHECK(cnn_image_load(&image, test_path("rgb.bmp"), 0) == CNN_OK, "%s", image.error.message);
    CHECK(cnn_image_load_memory(&from_memory, bytes, size, 0) == CNN_OK, "%s", from_memory.error.message);
    CHECK(image.data && from_memory.data && image.c == from_memory.c && !memcmp(image.data, from_memory.data, 18 * sizeof(float)),
          "memory and file differ");
    cnn_image_free(&image);
    cnn_image_free(&from_memory);
    free(bytes);
}

TEST(save_png_round_trip_and_clamping)
{
    cnn_image image, back;
    int i;
    CHECK(cnn_image_alloc(&image, 3, 2, 3) == CNN_OK, "alloc");
    for (i = 0; i < 18; i++) image.data[i] = (float)(i * 13) / 255.0f;
    image.data[0] = -0.5f;          /* clamped to 0 */
    image.data[1] = 2.0f;           /* clamped to 1 */
    image.data[2] = (float)NAN;     /* written as 0 */
    CHECK(cnn_image_save_png(&image, test_path("saved.png")) == CNN_OK, "%s", image.error.message);
    CHECK(cnn_image_load(&back, test_path("saved.png"), 0) == CNN_OK, "%s", back.error.message);
    CHECK(back.c == 3 && back.h == 2 && back.w == 3, "shape %d %d %d", back.c, back.h, back.w);
    if (back.data) {
        CHECK(back.data[0] == 0.0f && back.data[1] == 1.0f && back.data[2] == 0.0f, "clamping: %g %g %g", (double)back.data[0],
              (double)back.data[1], (double)back.data[2]);
        for (i = 3; i < 18; i++) CHECK(back.data[i] == image.data[i], "value %d: %g, want %g", i, (double)back.data[i], (double)image.data[i]);
    }
    cnn_image_free(&back);
    CHECK(cnn_image_save_png(&image, test_path("no-such-folder/saved.png")) == CNN_ERROR_IO, "saving into a missing folder");
    CHECK(strstr(image.error.message, "no-such-folder") != NULL, "message: %s", image.error.message);
    cnn_image_free(&image);
}

TEST(load_errors)
{
    static const unsigned char pixels[8 * 8] = {0};
    const char *path;
    cnn_image image;
    unsigned char *bytes;
    size_t size = 0;
    /* missing file */
    path = test_path("missing.png");
    CHECK(cnn_image_load(&image, path, 0) == CNN_ERROR_IO, "missing file: %d", image.error.code);
    CHECK(strstr(image.error.message, "missing.png") != NULL, "message: %s", image.error.message);
    CHECK(image.data == NULL && image.c == 0, "nothing allocated");
    /* a folder */
    path = test_path("");
    CHECK(cnn_image_load(&image, path, 0) == CNN_ERROR_IO, "folder: %s", image.error.message);
    /* empty file */
    path = test_write_file("empty.png", "", 0);
    CHECK(cnn_image_load(&image, path, 0) == CNN_ERROR_MALFORMED_DATA, "empty file: %s", image.error.message);
    /* text */
    path = test_write_file("text.png", "hello, this is not a picture\n", 29);
    CHECK(cnn_image_load(&image, path, 0) == CNN_ERROR_MALFORMED_DATA, "text: %s", image.error.message);
    CHECK(strstr(image.error.message, "text.png") && strstr(image.error.message, "stb_image"), "message: %s", image.error.message);
    /* a PNG cut in half */
    CHECK(stbi_write_png(test_path("whole.png"), 8, 8, 1, pixels, 8), "stb_image_write failed");
    bytes = test_read_file(test_path("whole.png"), &size);
    CHECK(bytes && size > 40, "cannot read whole.png back");
    if (bytes) {
        path = test_write_file("truncated.png", bytes, size / 2);
        CHECK(cnn_image_load(&image, path, 0) == CNN_ERROR_MALFORMED_DATA, "truncated: %s", image.error.message);
        CHECK(strstr(image.error.message, "truncated.png") != NULL, "message: %s", image.error.message);
        CHECK(cnn_image_load_memory(&image, bytes, size / 2, 0) == CNN_ERROR_MALFORMED_DATA, "truncated in memory");
        CHECK(cnn_image_load_memory(&image, bytes, size, 2) == CNN_ERROR_INVALID_ARGUMENT, "2 channels is refused");
        free(bytes);
    }
    CHECK(cnn_image_load_memory(&image, NULL, 0, 0) == CNN_ERROR_MALFORMED_DATA, "no bytes");
    CHECK(image.data == NULL, "nothing allocated after a failure");
}

/* ---------------------------------------------------------------- resizing */

TEST(resize_area_on_known_arrays)
{
    cnn_image in, out;
    int i;
    double sum_in = 0.0, sum_out = 0.0;
    /* 4 x 4 to 2 x 2: each output is the mean of a 2 x 2 block */
    CHECK(cnn_image_alloc(&in, 1, 4, 4) == CNN_OK, "alloc");
    for (i = 0; i < 16; i++) in.data[i] = (float)i;
    CHECK(cnn_image_resize(&in, &out, 2, 2, CNN_RESIZE_AREA) == CNN_OK, "%s", out.error.message);
    if (out.data) {
        CHECK(fabs(out.data[0] - 2.5) < 1e-5 && fabs(out.data[1] - 4.5) < 1e-5, "top row %g %g", (double)out.data[0], (double)out.data[1]);
        CHECK(fabs(out.data[2] - 10.5) < 1e-5 && fabs(out.data[3] - 12.5) < 1e-5, "bottom row %g %g", (double)out.data[2], (double)out.data[3]);
    }
    cnn_image_free(&out);
    cnn_image_free(&in);
    /* a row of 3 to 2: output 0 covers [0, 1.5), output 1 [1.5, 3) */
    CHECK(cnn_image_alloc(&in, 1, 1, 3) == CNN_OK, "alloc");
    in.data[0] = 3.0f; in.data[1] = 6.0f; in.data[2] = 9.0f;
    CHECK(cnn_image_resize(&in, &out, 1, 2, CNN_RESIZE_AREA) == CNN_OK, "%s", out.error.message);
    if (out.data) {
        CHECK(fabs(out.data[0] - (3.0 + 0.5 * 6.0) / 1.5) < 1e-5, "out 0: %g, want 4", (double)out.data[0]);
        CHECK(fabs(out.data[1] - (0.5 * 6.0 + 9.0) / 1.5) < 1e-5, "out 1: %g, want 8", (double)out.data[1]);
    }
    cnn_image_free(&out);
    cnn_image_free(&in);
    /* 7 x 5 to 3 x 2: the total ink times the area ratio is kept */
    CHECK(cnn_image_alloc(&in, 2, 7, 5) == CNN_OK, "alloc");
    for (i = 0; i < 70; i++) {
        in.data[i] = (float)((i * 37) % 11) / 10.0f;
        sum_in += in.data[i];
    }
    CHECK(cnn_image_resize(&in, &out, 3, 2, CNN_RESIZE_AREA) == CNN_OK, "%s", out.error.message);
    for (i = 0; out.data && i < 12; i++) sum_out += out.data[i];
    CHECK(fabs(sum_out * (35.0 / 6.0) - sum_in) < 1e-3, "ink %g, want %g", sum_out * 35.0 / 6.0, sum_in);
    cnn_image_free(&out);
    /* the same size is a copy */
    CHECK(cnn_image_resize(&in, &out, 7, 5, CNN_RESIZE_AREA) == CNN_OK, "%s", out.error.message);
    CHECK(out.data && test_max_abs_diff(in.data, out.data, 70) < 1e-6, "area at the same size changed the image");
    cnn_image_free(&out);
    CHECK(cnn_image_resize(&in, &out, 7, 5, CNN_RESIZE_BILINEAR) == CNN_OK, "%s", out.error.message);
    CHECK(out.data && test_max_abs_diff(in.data, out.data, 70) < 1e-6, "bilinear at the same size changed the image");
    cnn_image_free(&out);
    CHECK(cnn_image_resize(&in, &out, 0, 5, CNN_RESIZE_AREA) == CNN_ERROR_INVALID_ARGUMENT, "a zero height is refused");
    CHECK(cnn_image_resize(&in, &in, 3, 3, CNN_RESIZE_AREA) == CNN_ERROR_INVALID_ARGUMENT, "in place is refused");
    cnn_image_free(&in);
}

TEST(resize_bilinear_on_known_arrays)
{
    cnn_image in, out, area;
    static const float want_row[4] = {0.0f, 0.25f, 0.75f, 1.0f};
    int i;
    /* a row [0, 1] to 4: samples at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped) */
    CHECK(cnn_image_alloc(&in, 1, 1, 2) == CNN_OK, "alloc");
    in.data[1] = 1.0f;
    CHECK(cnn_image_resize(&in, &out, 1, 4, CNN_RESIZE_BILINEAR) == CNN_OK, "%s", out.error.message);
    for (i = 0; out.data && i < 4; i++) CHECK(fabs(out.data[i] - want_row[i]) < 1e-6, "x %d: %g, want %g", i, (double)out.data[i], (double)want_row[i]);
    cnn_image_free(&out);
    /* growing is bilinear by default */
    CHECK(cnn_image_resize(&in, &out, 1, 4, CNN_RESIZE_DEFAULT) == CNN_OK, "%s", out.error.message);
    for (i = 0; out.data && i < 4; i++) CHECK(fabs(out.data[i] - want_row[i]) < 1e-6, "default, x %d", i);
    cnn_image_free(&out);
    cnn_image_free(&in);
    /* 2 x 2 [[0, 1], [2, 3]] to 4 x 4: separable, so out(y, x) = row(y) * 2 + col(x) */
    CHECK(cnn_image_alloc(&in, 1, 2, 2) == CNN_OK, "alloc");
    for (i = 0; i < 4; i++) in.data[i] = (float)i;
    CHECK(cnn_image_resize(&in, &out, 4, 4, CNN_RESIZE_BILINEAR) == CNN_OK, "%s", out.error.message);
    for (i = 0; out.data && i < 16; i++) {
        const float want = 2.0f * want_row[i / 4] + want_row[i % 4];
        CHECK(fabs(out.data[i] - want) < 1e-6, "(%d, %d): %g, want %g", i / 4, i % 4, (double)out.data[i], (double)want);
    }
    cnn_image_free(&out);
    cnn_image_free(&in);
    /* shrinking is area by default */
    CHECK(cnn_image_alloc(&in, 1, 6, 9) == CNN_OK, "alloc");
    for (i = 0; i < 54; i++) in.data[i] = (float)((i * 7) % 5);
    CHECK(cnn_image_resize(&in, &out, 4, 4, CNN_RESIZE_DEFAULT) == CNN_OK, "%s", out.error.message);
    CHECK(cnn_image_resize(&in, &area, 4, 4, CNN_RESIZE_AREA) == CNN_OK, "%s", area.error.message);
    CHECK(out.data && area.data && test_max_abs_diff(out.data, area.data, 16) == 0.0, "default shrink is not area");
    cnn_image_free(&out);
    cnn_image_free(&area);
    cnn_image_free(&in);
}

TEST(convert_channels)
{
    cnn_image rgb, grey, back;
    CHECK(cnn_image_alloc(&rgb, 3, 1, 2) == CNN_OK, "alloc");
    rgb.data[0] = 1.0f; rgb.data[1] = 0.2f; /* R */
    rgb.data[2] = 0.5f; rgb.data[3] = 0.4f; /* G */
    rgb.data[4] = 0.0f; rgb.data[5] = 1.0f; /* B */
    CHECK(cnn_image_convert(&rgb, &grey, 1) == CNN_OK, "%s", grey.error.message);
    CHECK(grey.data && fabs(grey.data[0] - (0.299 + 0.587 * 0.5)) < 1e-6 && fabs(grey.data[1] - (0.299 * 0.2 + 0.587 * 0.4 + 0.114)) < 1e-6,
          "grey %g %g", grey.data ? (double)grey.data[0] : -1.0, grey.data ? (double)grey.data[1] : -1.0);
    CHECK(cnn_image_convert(&grey, &back, 3) == CNN_OK, "%s", back.error.message);
    CHECK(back.data && back.data[0] == grey.data[0] && back.data[2] == grey.data[0] && back.data[5] == grey.data[1], "grey to RGB repeats");
    cnn_image_free(&back);
    CHECK(cnn_image_convert(&rgb, &back, 2) == CNN_ERROR_INVALID_ARGUMENT, "2 channels is refused");
    cnn_image_free(&grey);
    cnn_image_free(&rgb);
}

/* ---------------------------------------------------------------- characters */

TEST(character_box_fit_and_centre)
{
    /* a black 40 x 20 rectangle off-centre on a white 100 x 60 canvas */
    static unsigned char canvas[60 * 100];
    cnn_image image, character;
    cnn_character_desc desc;
    int x, y, x0, x1, y0, y1, wrong = 0;
    white_with_rectangle(canvas, 60, 100, 50, 5, 40, 20);
    CHECK(image_from_bytes(&image, canvas, 60, 100), "alloc");
    /* box 20 (MNIST's): the rectangle becomes 20 x 10 at columns 4..23, rows 9..18 */
    memset(&desc, 0, sizeof desc);
    desc.box = 20;
    CHECK(cnn_image_to_character(&image, &character, &desc) == CNN_OK, "%s", character.error.message);
    CHECK(character.c == 1 && character.h == 28 && character.w == 28, "shape %d %d %d", character.c, character.h, character.w);
    for (y = 0; character.data && y < 28; y++)
        for (x = 0; x < 28; x++) {
            const float want = x >= 4 && x < 24 && y >= 9 && y < 19 ? 1.0f : 0.0f;
            if (fabs(character.data[y * 28 + x] - want) > 1e-5) wrong++;
        }
    CHECK(wrong == 0, "%d pixels differ from a 20 x 10 block in the middle", wrong);
    cnn_image_free(&character);
    /* the default box (22): 22 x 11, so the centre falls between pixels */
    CHECK(cnn_image_to_character(&image, &character, NULL) == CNN_OK, "%s", character.error.message);
    if (character.data) {
        double cx, cy;
        ink_box(character.data, 28, 28, 0.4f, &x0, &x1, &y0, &y1);
        CHECK(x0 == 3 && x1 == 24, "columns %d..%d, want 3..24", x0, x1);
        CHECK(y1 - y0 + 1 == 11 || y1 - y0 + 1 == 12, "rows %d..%d: 11 rows and a half", y0, y1);
        centre_of_mass(character.data, 28, 28, &cx, &cy);
        CHECK(fabs(cx - 14.0) < 1e-4 && fabs(cy - 14.0) < 1e-4, "a symmetric block's centre is at (%g, %g)", cx, cy);
    }
    cnn_image_free(&character);
    cnn_image_free(&image);
}

TEST(character_centre_of_mass_and_threshold)
{
    /* an L: its centre of mass is far from the middle of its box */
    static unsigned char canvas[80 * 80];
    cnn_image image, character, with_speck;
    cnn_character_desc desc;
    double cx, cy;
    int x, y, x0, x1, y0, y1;
    memset(canvas, 255, sizeof canvas);
    for (y = 10; y < 70; y++)
        for (x = 20; x < 60; x++)
            if (x < 30 || y >= 60) canvas[y * 80 + x] = 0;
    CHECK(image_from_bytes(&image, canvas, 80, 80), "alloc");
    memset(&desc, 0, sizeof desc);
    desc.centre = CNN_CENTRE_MASS;
    desc.box = 20;
    CHECK(cnn_image_to_character(&image, &character, &desc) == CNN_OK, "%s", character.error.message);
    if (character.data) {
        centre_of_mass(character.data, 28, 28, &cx, &cy);
        CHECK(fabs(cx - 14.0) < 0.5 && fabs(cy - 14.0) < 0.5, "centre of mass (%g, %g), want (14, 14)", cx, cy);
        CHECK(fabs(cx - 14.0) < 1e-3 && fabs(cy - 14.0) < 1e-3, "centre of mass (%g, %g) is not exact", cx, cy);
        ink_box(character.data, 28, 28, 0.5f, &x0, &x1, &y0, &y1);
        CHECK(y1 - y0 + 1 == 20 && (x1 - x0 + 1 == 13 || x1 - x0 + 1 == 14), "the L is %d x %d, want 13 x 20", x1 - x0 + 1, y1 - y0 + 1);
        CHECK(x0 > 4, "mass centring moves the L right of the box centre: starts at column %d", x0);
    }
    cnn_image_free(&character);
    /* box centring: the middle of the ink's box at 14 */
    desc.centre = CNN_CENTRE_BOX;
    CHECK(cnn_image_to_character(&image, &character, &desc) == CNN_OK, "%s", character.error.message);
    if (character.data) {
        ink_box(character.data, 28, 28, 0.5f, &x0, &x1, &y0, &y1);
        CHECK(y0 == 4 && y1 == 23, "rows %d..%d, want 4..23", y0, y1);
        CHECK(fabs((x0 + x1 + 1) / 2.0 - 14.0) <= 0.5, "columns %d..%d are not centred", x0, x1);
    }
    /* a faint speck (below the threshold once inverted) changes nothing */
    canvas[2 * 80 + 75] = 240;
    cnn_image_free(&image);
    CHECK(image_from_bytes(&image, canvas, 80, 80), "alloc");
    CHECK(cnn_image_to_character(&image, &with_speck, &desc) == CNN_OK, "%s", with_speck.error.message);
    CHECK(character.data && with_speck.data && test_max_abs_diff(character.data, with_speck.data, 784) == 0.0,
          "a speck of 0.06 moved the box");
    cnn_image_free(&with_speck);
    /* a dark speck is ink: the box grows to reach it */
    canvas[2 * 80 + 75] = 0;
    cnn_image_free(&image);
    CHECK(image_from_bytes(&image, canvas, 80, 80), "alloc");
    CHECK(cnn_image_to_character(&image, &with_speck, &desc) == CNN_OK, "%s", with_speck.error.message);
    CHECK(character.data && with_speck.data && test_max_abs_diff(character.data, with_speck.data, 784) > 0.5, "a black speck was ignored");
    cnn_image_free(&with_speck);
    cnn_image_free(&character);
    cnn_image_free(&image);
}

TEST(character_inversion_and_errors)
{
    static unsigned char dark_on_light[50 * 50], light_on_dark[50 * 50];
    cnn_image dark, light, a, b;
    cnn_character_desc desc;
    int i;
    white_with_rectangle(dark_on_light, 50, 50, 10, 12, 8, 30);
    for (i = 0; i < 2500; i++) light_on_dark[i] = (unsigned char)(255 - dark_on_light[i]);
    CHECK(image_from_bytes(&dark, dark_on_light, 50, 50) && image_from_bytes(&light, light_on_dark, 50, 50), "alloc");
    CHECK(cnn_image_to_character(&dark, &a, NULL) == CNN_OK, "%s", a.error.message);
    CHECK(cnn_image_to_character(&light, &b, NULL) == CNN_OK, "%s", b.error.message);
    CHECK(a.data && b.data && test_max_abs_diff(a.data, b.data, 784) == 0.0, "dark-on-light and light-on-dark differ");
    CHECK(a.data && a.data[0] == 0.0f && a.data[14 * 28 + 14] == 1.0f, "background 0, ink 1");
    cnn_image_free(&a);
    cnn_image_free(&b);
    memset(&desc, 0, sizeof desc);
    desc.invert = CNN_INVERT_NEVER; /* dark ink taken as background: nothing left */
    CHECK(cnn_image_to_character(&dark, &a, &desc) == CNN_ERROR_MALFORMED_DATA, "never inverting dark ink finds no ink");
    desc.invert = CNN_INVERT_ALWAYS;
    CHECK(cnn_image_to_character(&dark, &a, &desc) == CNN_OK, "%s", a.error.message);
    cnn_image_free(&a);
    /* blank pictures and bad settings */
    memset(dark.data, 0, 2500 * sizeof(float));
    for (i = 0; i < 2500; i++) dark.data[i] = 1.0f;
    dark.data[100] = 0.98f;
    CHECK(cnn_image_to_character(&dark, &a, NULL) == CNN_ERROR_MALFORMED_DATA, "a blank page: %s", a.error.message);
    CHECK(strstr(a.error.message, "blank") != NULL, "message: %s", a.error.message);
    desc.invert = CNN_INVERT_AUTO;
    desc.box = 30;
    CHECK(cnn_image_to_character(&light, &a, &desc) == CNN_ERROR_INVALID_ARGUMENT, "a box larger than the field");
    cnn_image_free(&dark);
    cnn_image_free(&light);
}

/* cnn_image_prepare, the preparation predict and the web page share: for a
   28 x 28 character model exactly cnn_image_to_character's defaults; for a
   smaller one the box scaled as 22 of 28 (the default 22 would not fit a
   16 x 16 field); for any other model the picture converted and resized;
   refused for an input pictures cannot have. */
TEST(prepare_for_any_model_input)
{
    static unsigned char canvas[60 * 50];
    cnn_image picture, prepared, expected, grey;
    cnn_shape input;
    size_t i;
    int x0, x1, y0, y1;
    draw_seven(canvas, 60, 50, 10, 10, 40, 20, 52, 5);
    CHECK(image_from_bytes(&picture, canvas, 60, 50), "picture");

    input.c = 1, input.h = 28, input.w = 28;
    CHECK(cnn_image_prepare(&picture, &prepared, input, NULL) == CNN_OK, "28: %s", prepared.error.message);
    CHECK(cnn_image_to_character(&picture, &expected, NULL) == CNN_OK, "to_character: %s", expected.error.message);
    CHECK(prepared.c == 1 && prepared.h == 28 && prepared.w == 28, "28: shape (%d, %d, %d)", prepared.c, prepared.h, prepared.w);
    for (i = 0; i < 28 * 28 && prepared.data && expected.data; i++)
        if (prepared.data[i] != expected.data[i]) break;
    CHECK(i == 28 * 28, "28: pixel %lu differs from cnn_image_to_character's", (unsigned long)i);
    cnn_image_free(&prepared), cnn_image_free(&expected);

    input.h = input.w = 16;  /* box (16 * 22 + 14) / 28 = 13 */
    CHECK(cnn_image_prepare(&picture, &prepared, input, NULL) == CNN_OK, "16: %s", prepared.error.message);
    CHECK(prepared.h == 16 && prepared.w == 16, "16: shape (%d, %d)", prepared.h, prepared.w);
    if (prepared.data) {
        ink_box(prepared.data, 16, 16, 0.2f, &x0, &x1, &y0, &y1);
        CHECK(y1 - y0 + 1 >= 12 && y1 - y0 + 1 <= 14, "16: the ink spans rows %d..%d, not about 13", y0, y1);
    }
    cnn_image_free(&prepared);

    input.c = 3, input.h = 20, input.w = 30;  /* an RGB model: converted and resized */
    CHECK(cnn_image_prepare(&picture, &prepared, input, NULL) == CNN_OK, "RGB: %s", prepared.error.message);
    CHECK(prepared.c == 3 && prepared.h == 20 && prepared.w == 30, "RGB: shape (%d, %d, %d)", prepared.c, prepared.h, prepared.w);
    CHECK(cnn_image_convert(&picture, &grey, 3) == CNN_OK && cnn_image_resize(&grey, &expected, 20, 30, CNN_RESIZE_DEFAULT) == CNN_OK,
          "expected");
    for (i = 0; i < 3 * 20 * 30 && prepared.data && expected.data; i++)
        if (prepared.data[i] != expected.data[i]) break;
    CHECK(i == 3 * 20 * 30, "RGB: value %lu differs from convert + resize", (unsigned long)i);
    cnn_image_free(&prepared), cnn_image_free(&expected), cnn_image_free(&grey);

    input.c = 2;
    CHECK(cnn_image_prepare(&picture, &prepared, input, NULL) == CNN_ERROR_BAD_SHAPE, "a 2-channel input accepted");
    CHECK(strstr(prepared.error.message, "takes no pictures") != NULL, "message: %s", prepared.error.message);
    cnn_image_free(&picture);
}

TEST(drawn_character_through_png)
{
    /* a '7' drawn with a 9-pixel pen on a 160 x 120 page, written as PNG */
    static unsigned char page[120 * 160];
    cnn_image image, upright, transposed;
    cnn_character_desc desc;
    int x, y, x0, x1, y0, y1;
    double top = 0.0, left = 0.0;
    draw_seven(page, 120, 160, 50, 20, 100, 65, 100, 9);
    CHECK(stbi_write_png(test_path("seven.png"), 160, 120, 1, page, 160), "stb_image_write failed");
    CHECK(cnn_image_load(&image, test_path("seven.png"), 0) == CNN_OK, "%s", image.error.message);
    CHECK(image.data && image.data[0] == 1.0f && image.data[20 * 160 + 60] == 0.0f, "white page, black ink");
    CHECK(cnn_image_to_character(&image, &upright, NULL) == CNN_OK, "%s", upright.error.message);
    if (upright.data) {
        /* the ink's box: 22 pixels on its long (vertical) side, centred */
        ink_box(upright.data, 28, 28, 0.2f, &x0, &x1, &y0, &y1);
        CHECK(y1 - y0 + 1 >= 21 && y1 - y0 + 1 <= 23, "height %d, want 22", y1 - y0 + 1);
        CHECK(x1 - x0 + 1 < y1 - y0 + 1, "aspect kept: %d wide, %d high", x1 - x0 + 1, y1 - y0 + 1);
        CHECK(fabs((x0 + x1 + 1) / 2.0 - 14.0) <= 1.0 && fabs((y0 + y1 + 1) / 2.0 - 14.0) <= 1.0, "box %d..%d x %d..%d not centred", x0, x1, y0,
              y1);
        /* upright: the bar is along the top rows, not down the left columns */
        for (y = 0; y < 28; y++)
            for (x = 0; x < 28; x++) {
                if (y <= y0 + 3) top += upright.data[y * 28 + x];
                if (x <= x0 + 3) left += upright.data[y * 28 + x];
            }
        CHECK(top > 2.0 * left, "not upright: ink %g in the top rows, %g in the left columns", top, left);
    }
    memset(&desc, 0, sizeof desc);
    desc.orientation = CNN_ORIENTATION_TRANSPOSE;
    CHECK(cnn_image_to_character(&image, &transposed, &desc) == CNN_OK, "%s", transposed.error.message);
    for (y = 0; upright.data && transposed.data && y < 28; y++)
        for (x = 0; x < 28; x++)
            if (transposed.data[x * 28 + y] != upright.data[y * 28 + x]) {
                CHECK(0, "transposed (%d, %d) differs", x, y);
                y = 28;
                break;
            }
    cnn_image_free(&transposed);
    cnn_image_free(&upright);
    cnn_image_free(&image);
}

/* ---------------------------------------------------------------- folders */

/* root/circle, root/cross, root/square with per_class PNGs of 24..56 px
   (folders_write_shapes, as `folders --generate` draws them), and in each
   folder two files that are not images. */
static int write_shape_tree(const char *root, int per_class, uint64_t seed)
{
    char path[1100];
    const char *failed = folders_write_shapes(root, per_class, 56, seed);
    int s;
    if (failed) {
        printf("    cannot write %s\n", failed);
        return 0;
    }
    for (s = 0; s < 3; s++) {
        /* files that are not images, and hidden ones, are skipped */
        snprintf(path, sizeof path, "%s/%s/notes.txt", root, folders_shape_names[s]);
        write_text(path, "not an image");
        snprintf(path, sizeof path, "%s/%s/.hidden.png", root, folders_shape_names[s]);
        write_text(path, "not an image either");
    }
    return 1;
}

/* An augment callback that counts the samples it sees, then augments. */
typedef struct counting_augmenter {
    cnn_augmenter augmenter;
    long samples;
} counting_augmenter;

static cnn_result count_and_augment(cnn_model *model, float *images, int *labels, int batch, void *user)
{
    counting_augmenter *c = (counting_augmenter *)user;
    c->samples += batch;
    return cnn_augment_batch(model, images, labels, batch, &c->augmenter);
}

TEST(folders_learn_shapes)
{
    char root[1024];
    cnn_image_folders folders;
    cnn_folder_desc desc;
    cnn_model model;
    cnn_optimizer adam;
    cnn_optimizer_desc adam_desc;
    cnn_fit_desc fit;
    counting_augmenter counter;
    float accuracy = 0.0f, *before;
    int k, per_class[3] = {0, 0, 0};
    const int epochs = 25;
    snprintf(root, sizeof root, "%s", test_path("shapes"));
    CHECK(write_shape_tree(root, 100, 5), "cannot write the shape tree under %s", root);
    memset(&desc, 0, sizeof desc);
    desc.width = desc.height = 24;
    desc.seed = 11; /* channels 3 and validation 0.3 by default */
    CHECK(cnn_image_folders_load(&folders, root, &desc) == CNN_OK, "%s", folders.error.message);
    CHECK(folders.class_count == 3, "%d classes", folders.class_count);
    for (k = 0; k < folders.class_count && k < 3; k++)
        CHECK(!strcmp(folders.class_names[k], folders_shape_names[k]), "class %d is '%s', want '%s'", k, folders.class_names[k],
              folders_shape_names[k]);
    /* 100 a class: 30 held out (30%), 70 trained on */
    CHECK(folders.train.count == 210 && folders.validation.count == 90, "train %d, validation %d", folders.train.count,
          folders.validation.count);
    CHECK(folders.train.images.c == 3 && folders.train.images.h == 24 && folders.train.images.w == 24, "image shape");
    for (k = 0; k < folders.validation.count; k++)
        if (folders.validation.labels[k] >= 0 && folders.validation.labels[k] < 3) per_class[folders.validation.labels[k]]++;
    CHECK(per_class[0] == 30 && per_class[1] == 30 && per_class[2] == 30, "validation per class %d %d %d", per_class[0], per_class[1],
          per_class[2]);

    cnn_model_init(&model, 3, 24, 24, 3);
    folders_add_cnn(&model, 8, 3); /* examples/folders.c's CNN, narrower: 8, 16, 32 */
    CHECK(cnn_model_build(&model, 8) == CNN_OK, "%s", model.error.message);
    memset(&adam_desc, 0, sizeof adam_desc);
    adam_desc.learning_rate = 3e-3f;
    CHECK(cnn_optimizer_init(&adam, &model, &adam_desc) == CNN_OK, "optimizer");
    memset(&counter, 0, sizeof counter);
    counter.augmenter.desc.flip = 1;
    counter.augmenter.desc.rotate = 10.0f;
    counter.augmenter.desc.shift = 0.1f;
    cnn_rng_seed(&counter.augmenter.rng, 17);
    memset(&fit, 0, sizeof fit);
    fit.epochs = epochs;
    fit.batch_size = 8;
    fit.validation = &folders.validation;
    fit.augment = count_and_augment;
    fit.augment_user = &counter;
    before = (float *)malloc(cnn_tensor_count(&folders.train.images) * sizeof(float));
    if (before) memcpy(before, folders.train.images.data, cnn_tensor_count(&folders.train.images) * sizeof(float));
    CHECK(cnn_model_fit(&model, &adam, &folders.train, &fit) == CNN_OK, "%s", model.error.message);
    /* augmentation saw every training sample once an epoch, and nothing else */
    CHECK(counter.samples == (long)epochs * folders.train.count, "augmented %ld samples, want %ld", counter.samples,
          (long)epochs * folders.train.count);
    CHECK(before && !memcmp(before, folders.train.images.data, cnn_tensor_count(&folders.train.images) * sizeof(float)),
          "augmentation changed the dataset itself");
    CHECK(cnn_model_evaluate(&model, &folders.validation, NULL, &accuracy) == CNN_OK, "%s", model.error.message);
    CHECK(counter.samples == (long)epochs * folders.train.count, "evaluation was augmented");
    printf("    validation accuracy on the shapes: %.1f%% (%d images)\n", 100.0 * accuracy, folders.validation.count);
    CHECK(accuracy > 0.95f, "validation accuracy %.3f, want above 0.95", (double)accuracy);
    free(before);
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_image_folders_free(&folders);
}

TEST(folders_split_is_reproducible)
{
    char root[1024];
    cnn_image_folders a, b, c;
    cnn_folder_desc desc;
    size_t bytes;
    snprintf(root, sizeof root, "%s", test_path("split"));
    CHECK(write_shape_tree(root, 10, 9), "cannot write the tree");
    memset(&desc, 0, sizeof desc);
    desc.channels = 1;
    desc.width = 16;
    desc.height = 12;
    desc.seed = 42;
    CHECK(cnn_image_folders_load(&a, root, &desc) == CNN_OK, "%s", a.error.message);
    CHECK(cnn_image_folders_load(&b, root, &desc) == CNN_OK, "%s", b.error.message);
    desc.seed = 43;
    CHECK(cnn_image_folders_load(&c, root, &desc) == CNN_OK, "%s", c.error.message);
    CHECK(a.train.count == 21 && a.validation.count == 9, "10 a class, 3 held out: %d + %d", a.train.count, a.validation.count);
    CHECK(a.train.images.c == 1 && a.train.images.h == 12 && a.train.images.w == 16, "grey 16 x 12");
    bytes = (size_t)a.validation.count * 12 * 16 * sizeof(float);
    CHECK(a.validation.count == b.validation.count && !memcmp(a.validation.images.data, b.validation.images.data, bytes) &&
              !memcmp(a.validation.labels, b.validation.labels, (size_t)a.validation.count * sizeof(int)),
          "the same seed gave another split");
    CHECK(a.validation.count == c.validation.count && memcmp(a.validation.images.data, c.validation.images.data, bytes) != 0,
          "another seed gave the same split");
    cnn_image_folders_free(&a);
    cnn_image_folders_free(&b);
    cnn_image_folders_free(&c);
    /* no validation at all */
    desc.validation = -1.0f;
    CHECK(cnn_image_folders_load(&a, root, &desc) == CNN_OK, "%s", a.error.message);
    CHECK(a.train.count == 30 && a.validation.count == 0, "train %d, validation %d", a.train.count, a.validation.count);
    cnn_image_folders_free(&a);
}

TEST(folders_errors)
{
    char root[1024], path[1100];
    cnn_image_folders folders;
    CHECK(cnn_image_folders_load(&folders, test_path("no-such-root"), NULL) == CNN_ERROR_IO, "missing root");
    CHECK(strstr(folders.error.message, "no-such-root") != NULL, "message: %s", folders.error.message);
    /* a root with files but no sub-folders */
    snprintf(root, sizeof root, "%s", test_path("flat"));
    CHECK(make_folder(root), "mkdir");
    snprintf(path, sizeof path, "%s/a.png", root);
    write_text(path, "x");
    CHECK(cnn_image_folders_load(&folders, root, NULL) == CNN_ERROR_MALFORMED_DATA, "no sub-folders: %s", folders.error.message);
    /* an empty class */
    snprintf(path, sizeof path, "%s/empty-class", root);
    CHECK(make_folder(path), "mkdir");
    CHECK(cnn_image_folders_load(&folders, root, NULL) == CNN_ERROR_MALFORMED_DATA, "empty class");
    CHECK(strstr(folders.error.message, "empty-class") != NULL, "message: %s", folders.error.message);
    /* a damaged image is named, and nothing is left allocated */
    snprintf(path, sizeof path, "%s/empty-class/broken.png", root);
    write_text(path, "\x89PNG\r\n\x1a\n but then nothing");
    CHECK(cnn_image_folders_load(&folders, root, NULL) == CNN_ERROR_MALFORMED_DATA, "damaged image");
    CHECK(strstr(folders.error.message, "broken.png") != NULL, "message: %s", folders.error.message);
    CHECK(folders.train.count == 0 && folders.class_names == NULL && folders.train.images.data == NULL, "left allocated");
    cnn_image_folders_free(&folders);
}

/* ---------------------------------------------------------------- augmentation */

TEST(augment_flip_rotate_shift)
{
    enum { N = 64, H = 5, W = 6 };
    static float images[N * H * W], original[H * W];
    cnn_augment_desc desc;
    cnn_shape shape;
    cnn_rng rng, again;
    int n, i, flipped = 0, kept = 0, other = 0;
    shape.c = 1; shape.h = H; shape.w = W;
    for (i = 0; i < H * W; i++) original[i] = (float)i;
    for (n = 0; n < N; n++) memcpy(images + n * H * W, original, sizeof original);
    memset(&desc, 0, sizeof desc);
    desc.flip = 1;
    cnn_rng_seed(&rng, 1);
    CHECK(cnn_augment_images(images, N, shape, &desc, &rng) == CNN_OK, "flip");
    for (n = 0; n < N; n++) {
        const float *p = images + n * H * W;
        int same = 1, mirror = 1, y, x;
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++) {
                same &= p[y * W + x] == original[y * W + x];
                mirror &= p[y * W + x] == original[y * W + (W - 1 - x)];
            }
        kept += same;
        flipped += mirror;
        other += !same && !mirror;
    }
    CHECK(other == 0 && kept > 16 && flipped > 16, "flip: %d kept, %d mirrored, %d other", kept, flipped, other);
    /* rotation and shift of a flat image: edges repeat, so it stays flat */
    for (i = 0; i < N * H * W; i++) images[i] = 0.25f;
    desc.flip = 0;
    desc.rotate = 30.0f;
    desc.shift = 0.2f;
    CHECK(cnn_augment_images(images, N, shape, &desc, &rng) == CNN_OK, "rotate");
    for (i = 0; i < N * H * W; i++)
        if (fabs(images[i] - 0.25f) > 1e-6) {
            CHECK(0, "a flat image changed at %d: %g", i, (double)images[i]);
            break;
        }
    /* the same seed augments the same way */
    for (n = 0; n < N; n++) memcpy(images + n * H * W, original, sizeof original);
    cnn_rng_seed(&rng, 7);
    CHECK(cnn_augment_images(images, N / 2, shape, &desc, &rng) == CNN_OK, "first half");
    cnn_rng_seed(&again, 7);
    CHECK(cnn_augment_images(images + (N / 2) * H * W, N / 2, shape, &desc, &again) == CNN_OK, "second half");
    CHECK(!memcmp(images, images + (N / 2) * H * W, (N / 2) * H * W * sizeof(float)), "the same seed augmented differently");
    CHECK(test_max_abs_diff(images, original, H * W) > 0.0, "rotation and shift changed nothing");
    desc.rotate = -1.0f;
    CHECK(cnn_augment_images(images, N, shape, &desc, &rng) == CNN_ERROR_INVALID_ARGUMENT, "a negative angle is refused");
}

int main(void)
{
    RUN(load_grey_png_exactly);
    RUN(load_rgb_png_planar_and_grey_weights);
    RUN(alpha_composited_over_white);
    RUN(other_formats_and_memory);
    RUN(save_png_round_trip_and_clamping);
    RUN(load_errors);
    RUN(resize_area_on_known_arrays);
    RUN(resize_bilinear_on_known_arrays);
    RUN(convert_channels);
    RUN(character_box_fit_and_centre);
    RUN(character_centre_of_mass_and_threshold);
    RUN(character_inversion_and_errors);
    RUN(prepare_for_any_model_input);
    RUN(drawn_character_through_png);
    RUN(folders_learn_shapes);
    RUN(folders_split_is_reproducible);
    RUN(folders_errors);
    RUN(augment_flip_rotate_shift);
    return test_report();
}
