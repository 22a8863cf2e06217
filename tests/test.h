/* test.h - the tiny harness every test program uses.

   TEST(name) { ... CHECK(condition, "printf-style message", ...); ... }
   int main(void) { RUN(name); ...; return test_report(); }

   A test passes when none of its CHECKs fails. The last line a program
   prints is "RESULT <passed> <failed>", which tests/run.sh adds up.
   Include it after cnn.h: make_random_dataset uses its types. */
#ifndef CNN_TEST_H
#define CNN_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed, test_failed, test_current_failed;

#define TEST(name) static void name(void)

#define CHECK(condition, ...)                                              \
    do {                                                                   \
        if (!(condition)) {                                                \
            test_current_failed++;                                         \
            printf("    %s:%d: check failed: %s: ", __FILE__, __LINE__, #condition); \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
        }                                                                  \
    } while (0)

#define RUN(name)                                                          \
    do {                                                                   \
        test_current_failed = 0;                                           \
        name();                                                            \
        if (test_current_failed) {                                         \
            test_failed++;                                                 \
            printf("FAIL %s\n", #name);                                    \
        } else {                                                           \
            test_passed++;                                                 \
            printf("ok   %s\n", #name);                                    \
        }                                                                  \
        fflush(stdout);                                                    \
    } while (0)

static inline int test_report(void)
{
    printf("RESULT %d %d\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

/* Writes text to a file in the test's scratch folder and returns its path.
   The folder comes from $TEST_TMP (set by tests/run.sh), else /tmp. */
static inline const char *test_write_file(const char *name, const void *bytes, size_t length)
{
    static char path[1024];
    const char *dir = getenv("TEST_TMP");
    FILE *file;
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/tmp", name);
    file = fopen(path, "wb");
    if (!file) {
        printf("    cannot create %s\n", path);
        return path;
    }
    fwrite(bytes, 1, length, file);
    fclose(file);
    return path;
}

static inline const char *test_path(const char *name)
{
    static char path[1024];
    const char *dir = getenv("TEST_TMP");
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/tmp", name);
    return path;
}

/* The largest |a - b| over n values. */
static inline double test_max_abs_diff(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > worst || d != d) worst = d;
    }
    return worst;
}

/* A dataset of count random images (1, side, side) with random labels below
   classes, from seed; 0 when out of memory. */
static inline int make_random_dataset(cnn_dataset *data, int count, int side, int classes, uint64_t seed)
{
    cnn_rng rng;
    size_t i;
    memset(data, 0, sizeof *data);
    cnn_rng_seed(&rng, seed);
    if (cnn_tensor_alloc(&data->images, count, 1, side, side) != CNN_OK) return 0;
    data->labels = (int *)malloc((size_t)count * sizeof(int));
    if (!data->labels) return 0;
    for (i = 0; i < cnn_tensor_count(&data->images); i++) data->images.data[i] = cnn_rng_uniform(&rng);
    for (i = 0; i < (size_t)count; i++) data->labels[i] = (int)cnn_rng_below(&rng, (uint32_t)classes);
    data->count = count;
    data->num_classes = classes;
    return 1;
}

#endif
