/* test_reference.c - every layer, the loss and both optimisers against
   PyTorch (issue 3).

   The expected values come from tests/reference/gen.py, which runs PyTorch
   (float32, CPU) and writes one small file per case into tests/reference/;
   the format is described in tests/reference/README.md. No PyTorch is needed
   here. Run from the repository root (as `make test` does), or point
   REFERENCE_DIR at the fixtures. REFERENCE_VERBOSE=1 prints the max absolute
   and relative error of every tensor compared.

   HOW VALUES ARE COMPARED
   A value passes when

       |got - want| <= tol * max(|want|, floor * max|want over the tensor|)

   that is, it must agree to tol relative to itself, except that values far
   below the tensor's largest are held to an absolute tol * floor * max. The
   printed "rel" error is |got - want| divided by that same denominator.

   tol = 1e-5 for single layers, 1e-4 for the whole LeNet-5 and the
   optimiser trajectories. float32 carries 24 bits (eps = 1.2e-7). cnn.h and
   PyTorch add the same products in different orders (cnn.h's im2col matrix
   multiply, PyTorch's oneDNN/ATen kernels), so each sum differs by rounding:
   about sqrt(n) * eps relative to its terms for n terms. The largest sums
   here (a conv weight gradient over 576 positions) reach a few times 1e-6;
   1e-5 leaves that a margin of 4 or more and is still 1e4 times smaller than
   any real mistake (a wrong index, a missing term, a wrong sign moves values
   by their own size). Through LeNet-5 rounding compounds over 12 layers,
   and after 3 optimiser steps it also feeds back through changed weights,
   hence 1e-4. gen.py computes every case in float64 too and refuses a case
   whose float32 rounding alone uses more than half of its tolerance, so these
   limits are measured, not hoped: it prints how much each case uses.

   floor = 0.1: summation rounding is proportional to the size of the summed
   terms, which is the tensor's scale, not the size of a result that happens
   to cancel to almost nothing; a gradient element 1e-3 of the tensor's
   largest cannot be expected to agree to 1e-5 of itself. Below a tenth of the
   largest value the check becomes absolute (1e-6 of the largest for a single
   layer), still only 8 to 16 float32 ulps of that value.

   floor = 1 for LeNet-5's weights after 3 Adam or SGD steps: an absolute
   1e-4 of the tensor's largest weight, 1e-5 to 2.5e-5 here, under 1% of the
   3e-3 that three Adam steps move a weight (any bug in an update formula
   moves it by a sizeable fraction of that). Adam divides each gradient by its own
   running RMS, so a gradient of 1e-7 (Adam's epsilon) that carries 1e-9 of
   float32 summation noise moves its weight by an amount uncertain at the 1%
   level: PyTorch float32 and float64 differ by 2e-6 there. Only an absolute
   measure is meaningful for such weights. The update formulas themselves are
   checked to 1e-5 in the *_given_grads tests, where cnn.h receives PyTorch's
   exact gradients. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#define TOL_LAYER 1e-5
#define TOL_NET 1e-4
#define FLOOR 0.1
#define FLOOR_TRAJECTORY 1.0

#define REF_MAX_TENSORS 96
#define REF_NAME_SIZE 64

/* ---------------------------------------------------------------- fixtures */

typedef struct ref_tensor {
    char name[REF_NAME_SIZE];
    int ndim;
    int dims[4];
    size_t count;
    float *data;
} ref_tensor;

typedef struct ref_file {
    char case_name[REF_NAME_SIZE];
    int count;
    ref_tensor tensors[REF_MAX_TENSORS];
} ref_file;

static int ref_verbose(void)
{
    const char *v = getenv("REFERENCE_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

/* splitmix64; u = (z >> 40) / 2^24; value = float(lo + (hi - lo) * u) in
   double. The same bits as generate() in gen.py. */
static void ref_generate(uint64_t seed, size_t count, double lo, double hi, float *out)
{
    uint64_t state = seed;
    size_t i;
    for (i = 0; i < count; i++) {
        uint64_t z;
        double u;
        state += 0x9E3779B97F4A7C15ULL;
        z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        u = (double)(z >> 40) * (1.0 / 16777216.0);
        out[i] = (float)(lo + (hi - lo) * u);
    }
}

/* little-endian readers over a bounded buffer */
typedef struct ref_reader {
    const unsigned char *bytes;
    size_t size, at;
    int ok;
} ref_reader;

static const unsigned char *ref_take(ref_reader *r, size_t n)
{
    const unsigned char *p;
    if (!r->ok || n > r->size - r->at) {
        r->ok = 0;
        return NULL;
    }
    p = r->bytes + r->at;
    r->at += n;
    return p;
}

static uint64_t ref_uint(ref_reader *r, int n)
{
    const unsigned char *p = ref_take(r, (size_t)n);
    uint64_t v = 0;
    int i;
    if (!p) return 0;
    for (i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static float ref_f32(ref_reader *r)
{
    uint32_t bits = (uint32_t)ref_uint(r, 4);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static double ref_f64(ref_reader *r)
{
    uint64_t bits = ref_uint(r, 8);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static void ref_name(ref_reader *r, char *out)
{
    size_t length = (size_t)ref_uint(r, 2);
    const unsigned char *p = ref_take(r, length);
    if (!p || length == 0 || length >= REF_NAME_SIZE) {
        r->ok = 0;
        out[0] = '\0';
        return;
    }
    memcpy(out, p, length);
    out[length] = '\0';
}

static ref_tensor *ref_find(ref_file *file, const char *name)
{
    int i;
    for (i = 0; i < file->count; i++)
        if (strcmp(file->tensors[i].name, name) == 0) return &file->tensors[i];
    return NULL;
}

static void ref_free(ref_file *file)
{
    int i;
    for (i = 0; i < file->count; i++) free(file->tensors[i].data);
    file->count = 0;
}

/* Opens <dir>/<case>.bin, trying $REFERENCE_DIR, the folder next to this
   source file, then tests/reference and reference. */
static FILE *ref_open(const char *case_name, char *path, size_t size)
{
    const char *env = getenv("REFERENCE_DIR");
    char here[1024];
    const char *dirs[4];
    const char *slash;
    int i, n = 0;
    FILE *f;
    if (env && *env) dirs[n++] = env;
    slash = strrchr(__FILE__, '/');
    if (slash) {
        snprintf(here, sizeof here, "%.*s/reference", (int)(slash - __FILE__), __FILE__);
        dirs[n++] = here;
    }
    dirs[n++] = "tests/reference";
    dirs[n++] = "reference";
    for (i = 0; i < n; i++) {
        snprintf(path, size, "%s/%s.bin", dirs[i], case_name);
        if ((f = fopen(path, "rb")) != NULL) return f;
    }
    snprintf(path, size, "%s/%s.bin", dirs[0], case_name);
    return NULL;
}

/* Loads a case; on any problem fails the current test and returns 0. */
static int ref_load(ref_file *file, const char *case_name)
{
    char path[1100];
    FILE *f = ref_open(case_name, path, sizeof path);
    unsigned char *bytes = NULL;
    long size;
    ref_reader r;
    uint64_t records, i;
    memset(file, 0, sizeof *file);
    snprintf(file->case_name, sizeof file->case_name, "%s", case_name);
    CHECK(f != NULL, "cannot open the fixture %s (run from the repository root, or set REFERENCE_DIR)", path);
    if (!f) return 0;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
        bytes = (unsigned char *)malloc((size_t)size);
        if (bytes && fread(bytes, 1, (size_t)size, f) != (size_t)size) {
            free(bytes);
            bytes = NULL;
        }
    } else {
        size = 0;
    }
    fclose(f);
    CHECK(bytes != NULL, "cannot read %s", path);
    if (!bytes) return 0;

    r.bytes = bytes; r.size = (size_t)size; r.at = 0; r.ok = 1;
    r.ok = size >= 8 && memcmp(bytes, "CNNREF1\n", 8) == 0;
    r.at = 8;
    records = ref_uint(&r, 4);
    if (records > REF_MAX_TENSORS) r.ok = 0;
    for (i = 0; r.ok && i < records; i++) {
        ref_tensor *t = &file->tensors[file->count];
        int kind, d;
        size_t j;
        ref_name(&r, t->name);
        kind = (int)ref_uint(&r, 1);
        t->ndim = (int)ref_uint(&r, 1);
        if (!r.ok || t->ndim < 1 || t->ndim > 4 || ref_find(file, t->name)) { r.ok = 0; break; }
        t->count = 1;
        for (d = 0; d < t->ndim; d++) {
            t->dims[d] = (int)ref_uint(&r, 4);
            if (t->dims[d] < 1 || t->dims[d] > (1 << 24)) r.ok = 0;
            t->count *= (size_t)(t->dims[d] > 0 ? t->dims[d] : 1);
        }
        if (!r.ok || t->count > ((size_t)1 << 26)) { r.ok = 0; break; }
        t->data = (float *)malloc(t->count * sizeof(float));
        if (!t->data) { r.ok = 0; break; }
        file->count++;
        if (kind == 0) {          /* float32 values */
            for (j = 0; j < t->count; j++) t->data[j] = ref_f32(&r);
        } else if (kind == 1) {   /* generated: seed, lo, hi */
            uint64_t seed = ref_uint(&r, 8);
            double lo = ref_f64(&r), hi = ref_f64(&r);
            if (r.ok) ref_generate(seed, t->count, lo, hi, t->data);
        } else if (kind == 2) {   /* 16-bit steps from an earlier tensor */
            char base_name[REF_NAME_SIZE];
            const ref_tensor *base;
            double scale;
            ref_name(&r, base_name);
            scale = ref_f64(&r);
            base = ref_find(file, base_name);
            if (!base || base->count != t->count) { r.ok = 0; break; }
            for (j = 0; j < t->count; j++) {
                int16_t q = (int16_t)(uint16_t)ref_uint(&r, 2);
                t->data[j] = (float)((double)base->data[j] + scale * (double)q);
            }
        } else {
            r.ok = 0;
        }
    }
    if (r.ok && r.at != r.size) r.ok = 0;
    CHECK(r.ok, "%s is damaged or not a fixture (byte %lu)", path, (unsigned long)r.at);
    free(bytes);
    if (!r.ok) ref_free(file);
    return r.ok;
}

/* The tensor called name with the given shape (trailing -1 dims: any), or
   NULL after failing the test. */
static const ref_tensor *ref_get(ref_file *file, const char *name, int ndim, const int *dims)
{
    const ref_tensor *t = ref_find(file, name);
    int d, same;
    CHECK(t != NULL, "%s: no tensor '%s' in the fixture", file->case_name, name);
    if (!t) return NULL;
    same = t->ndim == ndim;
    for (d = 0; same && d < ndim; d++) same = dims[d] < 0 || dims[d] == t->dims[d];
    CHECK(same, "%s: tensor '%s' has %d dims (%d, %d, %d, %d), the test expects %d", file->case_name, name, t->ndim,
          t->dims[0], t->ndim > 1 ? t->dims[1] : 0, t->ndim > 2 ? t->dims[2] : 0, t->ndim > 3 ? t->dims[3] : 0, ndim);
    return same ? t : NULL;
}

static const ref_tensor *ref_get1(ref_file *file, const char *name, int d0)
{
    int dims[1];
    dims[0] = d0;
    return ref_get(file, name, 1, dims);
}

static const ref_tensor *ref_get2(ref_file *file, const char *name, int d0, int d1)
{
    int dims[2];
    dims[0] = d0; dims[1] = d1;
    return ref_get(file, name, 2, dims);
}

static const ref_tensor *ref_get4(ref_file *file, const char *name, int d0, int d1, int d2, int d3)
{
    int dims[4];
    dims[0] = d0; dims[1] = d1; dims[2] = d2; dims[3] = d3;
    return ref_get(file, name, 4, dims);
}

/* ---------------------------------------------------------------- comparing */

static int ref_compared;  /* tensors compared, for the summary line */

/* Compares count values of got with want (minus baseline from both when
   given: to compare changes) by the rule at the top of this file. */
static void ref_compare(const ref_file *file, const char *what, const float *got, const ref_tensor *want,
                        const float *baseline, double tol, double floor_fraction)
{
    double scale = 0.0, floor, max_abs = 0.0, max_rel = 0.0;
    size_t i, worst = 0;
    if (!want) return;
    for (i = 0; i < want->count; i++) {
        double w = (double)want->data[i] - (baseline ? (double)baseline[i] : 0.0);
        if (fabs(w) > scale) scale = fabs(w);
    }
    floor = floor_fraction * scale;
    if (floor < 1e-30) floor = 1e-30;
    for (i = 0; i < want->count; i++) {
        double b = baseline ? (double)baseline[i] : 0.0;
        double g = (double)got[i] - b, w = (double)want->data[i] - b;
        double a = fabs(g - w), rel = a / (fabs(w) > floor ? fabs(w) : floor);
        if (a != a) a = rel = HUGE_VAL;  /* NaN */
        if (a > max_abs) max_abs = a;
        if (rel > max_rel) { max_rel = rel; worst = i; }
    }
    ref_compared++;
    if (ref_verbose())
        printf("    %-34s %-22s %6lu values  max abs %.2e  max rel %.2e  (tol %.0e, floor %.1f)\n", file->case_name,
               what, (unsigned long)want->count, max_abs, max_rel, tol, floor_fraction);
    CHECK(max_rel <= tol, "%s: %s: max abs error %.3e, max rel error %.3e > %.0e (worst at %lu: got %.9g, want %.9g)",
          file->case_name, what, max_abs, max_rel, tol, (unsigned long)worst, (double)got[worst],
          (double)want->data[worst]);
}

static void ref_compare_named(ref_file *file, const char *name, const float *got, double tol, double floor_fraction)
{
    const ref_tensor *want = ref_find(file, name);
    CHECK(want != NULL, "%s: no tensor '%s' in the fixture", file->case_name, name);
    ref_compare(file, name, got, want, NULL, tol, floor_fraction);
}

static int *ref_labels(const ref_tensor *t)
{
    int *labels = (int *)malloc(t->count * sizeof(int));
    size_t i;
    if (!labels) return NULL;
    for (i = 0; i < t->count; i++) labels[i] = (int)t->data[i];
    return labels;
}

/* ---------------------------------------------------------------- the generator */

/* gen.py and this file must make the same inputs from the same recipe. */
TEST(generator_matches_gen_py)
{
    ref_file f;
    const char *pairs[2][2] = {{"sample", "sample_values"}, {"unit", "unit_values"}};
    int i;
    if (!ref_load(&f, "generator")) return;
    for (i = 0; i < 2; i++) {
        const ref_tensor *generated = ref_get1(&f, pairs[i][0], 64), *stored = ref_get1(&f, pairs[i][1], 64);
        if (generated && stored)
            CHECK(memcmp(generated->data, stored->data, 64 * sizeof(float)) == 0,
                  "the generated '%s' differs from the values gen.py made", pairs[i][0]);
    }
    ref_free(&f);
}

/* ---------------------------------------------------------------- single layers */

/* A model for input (c, h, w), before its one layer is added. */
static int one_layer_model(cnn_model *m, int c, int h, int w)
{
    cnn_result r = cnn_model_init(m, c, h, w, 1);
    CHECK(r == CNN_OK, "cnn_model_init: %s", m->error.message);
    return r == CNN_OK;
}

static int finish_model(cnn_model *m, cnn_result added, int max_batch)
{
    CHECK(added == CNN_OK, "adding the layer: %s", m->error.message);
    if (added != CNN_OK) return 0;
    added = cnn_model_build(m, max_batch);
    CHECK(added == CNN_OK, "cnn_model_build: %s", m->error.message);
    return added == CNN_OK;
}

/* Forward x, then backward from dy; compares y and dx. */
static void forward_backward(ref_file *f, cnn_model *m, const ref_tensor *x, const ref_tensor *dy, int n, cnn_mode mode)
{
    cnn_result r = cnn_model_forward(m, x->data, n, mode);
    CHECK(r == CNN_OK, "forward: %s", m->error.message);
    if (r != CNN_OK) return;
    CHECK(cnn_tensor_count(&m->activations[m->layer_count]) == dy->count, "output size %lu, fixture %lu",
          (unsigned long)cnn_tensor_count(&m->activations[m->layer_count]), (unsigned long)dy->count);
    if (cnn_tensor_count(&m->activations[m->layer_count]) != dy->count) return;
    ref_compare_named(f, "y", cnn_model_output(m), TOL_LAYER, FLOOR);
    cnn_model_zero_grad(m);
    r = cnn_model_backward_from(m, dy->data);
    CHECK(r == CNN_OK, "backward: %s", m->error.message);
    ref_compare_named(f, "dx", m->activation_grads[0].data, TOL_LAYER, FLOOR);
}

static void conv2d_case(const char *name, int stride, int padding)
{
    ref_file f;
    const ref_tensor *x, *w, *b, *dy, *config;
    cnn_model m;
    int n, c, h, wd, oc, k;
    if (!ref_load(&f, name)) return;
    x = ref_get4(&f, "x", -1, -1, -1, -1);
    w = ref_get4(&f, "weight", -1, -1, -1, -1);
    config = ref_get1(&f, "config", 2);
    if (!x || !w || !config) { ref_free(&f); return; }
    n = x->dims[0]; c = x->dims[1]; h = x->dims[2]; wd = x->dims[3];
    oc = w->dims[0]; k = w->dims[2];
    CHECK(config->data[0] == stride && config->data[1] == padding, "%s: fixture is stride %g padding %g", name,
          (double)config->data[0], (double)config->data[1]);
    b = ref_get1(&f, "bias", oc);
    dy = ref_get4(&f, "dy", n, oc, (h + 2 * padding - k) / stride + 1, (wd + 2 * padding - k) / stride + 1);
    if (b && dy && w->dims[1] == c && one_layer_model(&m, c, h, wd)) {
        if (finish_model(&m, cnn_add_conv2d(&m, oc, k, stride, padding), n)) {
            cnn_layer *layer = &m.layers[0];
            CHECK(layer->weight_count == w->count, "weight count %lu", (unsigned long)layer->weight_count);
            memcpy(layer->weight, w->data, w->count * sizeof(float));
            memcpy(layer->bias, b->data, b->count * sizeof(float));
            forward_backward(&f, &m, x, dy, n, CNN_MODE_EVAL);
            ref_compare_named(&f, "dweight", layer->weight_grad, TOL_LAYER, FLOOR);
            ref_compare_named(&f, "dbias", layer->bias_grad, TOL_LAYER, FLOOR);
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

TEST(conv2d_c1_k3_s1_p1) { conv2d_case("conv2d_c1_k3_s1_p1", 1, 1); }
TEST(conv2d_c3_k3_s2_p1) { conv2d_case("conv2d_c3_k3_s2_p1", 2, 1); }
TEST(conv2d_c3_k5_s1_p2) { conv2d_case("conv2d_c3_k5_s1_p2", 1, 2); }
TEST(conv2d_c1_k5_s1_p0) { conv2d_case("conv2d_c1_k5_s1_p0", 1, 0); }
TEST(conv2d_c3_k1_s1_p0) { conv2d_case("conv2d_c3_k1_s1_p0", 1, 0); }
TEST(conv2d_c3_k1_s2_p0) { conv2d_case("conv2d_c3_k1_s2_p0", 2, 0); }
TEST(conv2d_c1_k3_s2_p0) { conv2d_case("conv2d_c1_k3_s2_p0", 2, 0); }
TEST(conv2d_c3_k5_s2_p2) { conv2d_case("conv2d_c3_k5_s2_p2", 2, 2); }
TEST(conv2d_c3_k3_s1_p2) { conv2d_case("conv2d_c3_k3_s1_p2", 1, 2); }
TEST(conv2d_c6_k5_s1_p2_24x24) { conv2d_case("conv2d_c6_k5_s1_p2_24x24", 1, 2); }

static void pool_case(const char *name, cnn_layer_type type, int size, int stride)
{
    ref_file f;
    const ref_tensor *x, *dy, *config;
    cnn_model m;
    int n;
    if (!ref_load(&f, name)) return;
    x = ref_get4(&f, "x", -1, -1, -1, -1);
    config = ref_get1(&f, "config", 2);
    if (!x || !config) { ref_free(&f); return; }
    n = x->dims[0];
    CHECK(config->data[0] == size && config->data[1] == stride, "%s: fixture is size %g stride %g", name,
          (double)config->data[0], (double)config->data[1]);
    /* floor((side - size) / stride) + 1, as PyTorch */
    dy = ref_get4(&f, "dy", n, x->dims[1], (x->dims[2] - size) / stride + 1, (x->dims[3] - size) / stride + 1);
    if (dy && one_layer_model(&m, x->dims[1], x->dims[2], x->dims[3])) {
        cnn_result added = type == CNN_LAYER_MAX_POOL ? cnn_add_max_pool(&m, size, stride) : cnn_add_avg_pool(&m, size, stride);
        if (finish_model(&m, added, n)) forward_backward(&f, &m, x, dy, n, CNN_MODE_EVAL);
        cnn_model_free(&m);
    }
    ref_free(&f);
}

TEST(max_pool_k2_s2) { pool_case("max_pool_k2_s2", CNN_LAYER_MAX_POOL, 2, 2); }
TEST(max_pool_k3_s2) { pool_case("max_pool_k3_s2", CNN_LAYER_MAX_POOL, 3, 2); }
/* equal maxima in most windows: the first (row-major) takes the gradient */
TEST(max_pool_k2_s2_ties) { pool_case("max_pool_k2_s2_ties", CNN_LAYER_MAX_POOL, 2, 2); }
TEST(max_pool_k3_s2_ties) { pool_case("max_pool_k3_s2_ties", CNN_LAYER_MAX_POOL, 3, 2); }
TEST(avg_pool_k2_s2) { pool_case("avg_pool_k2_s2", CNN_LAYER_AVG_POOL, 2, 2); }
TEST(avg_pool_k3_s2) { pool_case("avg_pool_k3_s2", CNN_LAYER_AVG_POOL, 3, 2); }

static void dense_case(const char *name)
{
    ref_file f;
    const ref_tensor *x, *w, *b, *dy;
    cnn_model m;
    int n, inputs, outputs;
    if (!ref_load(&f, name)) return;
    x = ref_get2(&f, "x", -1, -1);
    w = ref_get2(&f, "weight", -1, -1);  /* (IN, OUT): cnn.h's layout, nn.Linear's transposed */
    if (!x || !w) { ref_free(&f); return; }
    n = x->dims[0]; inputs = x->dims[1]; outputs = w->dims[1];
    b = ref_get1(&f, "bias", outputs);
    dy = ref_get2(&f, "dy", n, outputs);
    if (b && dy && w->dims[0] == inputs && one_layer_model(&m, inputs, 1, 1)) {
        if (finish_model(&m, cnn_add_dense(&m, outputs), n)) {
            cnn_layer *layer = &m.layers[0];
            CHECK(layer->weight_count == w->count, "weight count %lu", (unsigned long)layer->weight_count);
            memcpy(layer->weight, w->data, w->count * sizeof(float));
            memcpy(layer->bias, b->data, b->count * sizeof(float));
            forward_backward(&f, &m, x, dy, n, CNN_MODE_EVAL);
            ref_compare_named(&f, "dweight", layer->weight_grad, TOL_LAYER, FLOOR);
            ref_compare_named(&f, "dbias", layer->bias_grad, TOL_LAYER, FLOOR);
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

TEST(dense_in20_out7) { dense_case("dense_in20_out7"); }
TEST(dense_in130_out9) { dense_case("dense_in130_out9"); }

static void activation_case(const char *name, cnn_layer_type type)
{
    ref_file f;
    const ref_tensor *x, *dy;
    cnn_model m;
    if (!ref_load(&f, name)) return;
    x = ref_get4(&f, "x", -1, -1, -1, -1);
    dy = x ? ref_get4(&f, "dy", x->dims[0], x->dims[1], x->dims[2], x->dims[3]) : NULL;
    if (x && dy && one_layer_model(&m, x->dims[1], x->dims[2], x->dims[3])) {
        cnn_result added;
        switch (type) {
        case CNN_LAYER_RELU: added = cnn_add_relu(&m); break;
        case CNN_LAYER_LEAKY_RELU: added = cnn_add_leaky_relu(&m, 0.3f); break;
        case CNN_LAYER_SIGMOID: added = cnn_add_sigmoid(&m); break;
        default: added = cnn_add_tanh(&m); break;
        }
        if (finish_model(&m, added, x->dims[0])) forward_backward(&f, &m, x, dy, x->dims[0], CNN_MODE_EVAL);
        cnn_model_free(&m);
    }
    ref_free(&f);
}

TEST(activation_relu) { activation_case("relu", CNN_LAYER_RELU); }
TEST(activation_leaky_relu_0_3) { activation_case("leaky_relu_0.3", CNN_LAYER_LEAKY_RELU); }
/* every third input exactly 0: PyTorch's derivative there is 0 for ReLU and
   alpha for LeakyReLU */
TEST(activation_relu_zeros) { activation_case("relu_zeros", CNN_LAYER_RELU); }
TEST(activation_leaky_relu_0_3_zeros) { activation_case("leaky_relu_0.3_zeros", CNN_LAYER_LEAKY_RELU); }
TEST(activation_sigmoid) { activation_case("sigmoid", CNN_LAYER_SIGMOID); }
TEST(activation_tanh) { activation_case("tanh", CNN_LAYER_TANH); }

/* cnn.h's last layer is softmax and cnn_model_loss the mean -log p[label];
   cnn_model_backward's fused gradient lands on the logits. PyTorch:
   F.cross_entropy on the logits. */
static void softmax_cross_entropy_case(const char *name)
{
    ref_file f;
    const ref_tensor *z, *labels_t;
    cnn_model m;
    int n, classes, *labels = NULL;
    if (!ref_load(&f, name)) return;
    z = ref_get2(&f, "logits", -1, -1);
    labels_t = z ? ref_get1(&f, "labels", z->dims[0]) : NULL;
    if (labels_t) labels = ref_labels(labels_t);
    if (labels && one_layer_model(&m, z->dims[1], 1, 1)) {
        n = z->dims[0]; classes = z->dims[1];
        if (finish_model(&m, cnn_add_softmax(&m), n)) {
            float loss = 0.0f;
            cnn_result r = cnn_model_forward(&m, z->data, n, CNN_MODE_TRAIN);
            CHECK(r == CNN_OK, "forward: %s", m.error.message);
            ref_compare_named(&f, "probabilities", cnn_model_output(&m), TOL_LAYER, FLOOR);
            r = cnn_model_loss(&m, labels, &loss, NULL);
            CHECK(r == CNN_OK, "loss: %s", m.error.message);
            ref_compare_named(&f, "loss", &loss, TOL_LAYER, FLOOR);
            cnn_model_zero_grad(&m);
            r = cnn_model_backward(&m, labels);
            CHECK(r == CNN_OK, "backward: %s", m.error.message);
            ref_compare_named(&f, "dlogits", m.activation_grads[0].data, TOL_LAYER, FLOOR);
            (void)classes;
        }
        cnn_model_free(&m);
    }
    free(labels);
    ref_free(&f);
}

TEST(softmax_cross_entropy) { softmax_cross_entropy_case("softmax_cross_entropy"); }
TEST(softmax_cross_entropy_large_logits) { softmax_cross_entropy_case("softmax_cross_entropy_large_logits"); }

/* Softmax's own backward, for any upstream gradient. */
TEST(softmax_backward)
{
    ref_file f;
    const ref_tensor *z, *dy;
    cnn_model m;
    if (!ref_load(&f, "softmax_backward")) return;
    z = ref_get2(&f, "logits", -1, -1);
    dy = z ? ref_get2(&f, "dy", z->dims[0], z->dims[1]) : NULL;
    if (dy && one_layer_model(&m, z->dims[1], 1, 1)) {
        if (finish_model(&m, cnn_add_softmax(&m), z->dims[0])) {
            cnn_result r = cnn_model_forward(&m, z->data, z->dims[0], CNN_MODE_EVAL);
            CHECK(r == CNN_OK, "forward: %s", m.error.message);
            ref_compare_named(&f, "probabilities", cnn_model_output(&m), TOL_LAYER, FLOOR);
            r = cnn_model_backward_from(&m, dy->data);
            CHECK(r == CNN_OK, "backward: %s", m.error.message);
            ref_compare_named(&f, "dlogits", m.activation_grads[0].data, TOL_LAYER, FLOOR);
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

/* cnn.h draws dropout masks from its own RNG, so: its forward must be
   y = x * mask exactly for its own mask, with kept units scaled exactly as
   PyTorch scales them (1 / (1 - rate)); its backward, given PyTorch's mask
   (written into layer->mask), must give PyTorch's dx = dy * mask. */
TEST(dropout_0_25)
{
    ref_file f;
    const ref_tensor *x, *dy, *mask, *config;
    cnn_model m;
    if (!ref_load(&f, "dropout_0.25")) return;
    x = ref_get4(&f, "x", -1, -1, -1, -1);
    config = ref_get1(&f, "config", 1);
    dy = x ? ref_get4(&f, "dy", x->dims[0], x->dims[1], x->dims[2], x->dims[3]) : NULL;
    mask = x ? ref_get4(&f, "mask", x->dims[0], x->dims[1], x->dims[2], x->dims[3]) : NULL;
    if (config && dy && mask && one_layer_model(&m, x->dims[1], x->dims[2], x->dims[3])) {
        if (finish_model(&m, cnn_add_dropout(&m, config->data[0]), x->dims[0])) {
            cnn_layer *layer = &m.layers[0];
            const float own_scale = 1.0f / (1.0f - config->data[0]); /* cnn.h's m for a kept value */
            float keep_scale = 0.0f;
            size_t i, dropped = 0, exact = 1, scaled_like_torch = 1;
            cnn_result r;
            for (i = 0; i < mask->count; i++)
                if (mask->data[i] != 0.0f) keep_scale = mask->data[i];
            CHECK(keep_scale > 1.0f, "the fixture mask keeps nothing");

            r = cnn_model_forward(&m, x->data, x->dims[0], CNN_MODE_TRAIN);
            CHECK(r == CNN_OK, "forward: %s", m.error.message);
            for (i = 0; i < x->count; i++) {
                exact &= cnn_model_output(&m)[i] == x->data[i] * (layer->mask[i] ? own_scale : 0.0f);
                dropped += !layer->mask[i];
            }
            scaled_like_torch = own_scale == keep_scale;
            CHECK(exact, "train-mode y is not x * mask");
            CHECK(scaled_like_torch, "cnn.h scales kept units by %.9g, PyTorch by %.9g", (double)own_scale, (double)keep_scale);
            /* 96 units at rate 0.25: 24 expected, standard deviation 4.2 */
            CHECK(dropped >= 6 && dropped <= 48, "%lu of %lu units dropped at rate 0.25", (unsigned long)dropped,
                  (unsigned long)x->count);
            if (ref_verbose())
                printf("    %-34s %-22s %6lu values  y == x * mask exactly; kept scale %.9g == PyTorch's\n",
                       f.case_name, "y (cnn.h's own mask)", (unsigned long)x->count, (double)keep_scale);

            for (i = 0; i < mask->count; i++) layer->mask[i] = mask->data[i] != 0.0f;  /* PyTorch's mask */
            cnn_model_zero_grad(&m);
            r = cnn_model_backward_from(&m, dy->data);
            CHECK(r == CNN_OK, "backward: %s", m.error.message);
            ref_compare_named(&f, "dx", m.activation_grads[0].data, TOL_LAYER, FLOOR);

            r = cnn_model_forward(&m, x->data, x->dims[0], CNN_MODE_EVAL);
            CHECK(r == CNN_OK && memcmp(cnn_model_output(&m), x->data, x->count * sizeof(float)) == 0,
                  "eval-mode dropout is not the identity");
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

/* ---------------------------------------------------------------- optimisers */

/* The update formulas on PyTorch's own gradients: a dense 16 -> 8 layer's
   136 parameters, three steps with given gradients (magnitudes 1 to 1e-9,
   zeros, sign changes); each step's change from the start compared. */
static void optimizer_case(const char *name, cnn_optimizer_type type)
{
    ref_file f;
    const ref_tensor *p0, *config;
    cnn_model m;
    cnn_optimizer opt;
    cnn_optimizer_desc desc;
    int step;
    if (!ref_load(&f, name)) return;
    p0 = ref_get1(&f, "params", 136);
    config = ref_get1(&f, "config", type == CNN_OPTIMIZER_ADAM ? 4 : 2);
    if (p0 && config && one_layer_model(&m, 16, 1, 1)) {
        if (finish_model(&m, cnn_add_dense(&m, 8), 1)) {
            cnn_result r;
            CHECK(m.param_count == p0->count, "param count %lu", (unsigned long)m.param_count);
            memcpy(m.params, p0->data, p0->count * sizeof(float));
            memset(&desc, 0, sizeof desc);  /* zeros: cnn.h's defaults */
            desc.type = type;
            desc.learning_rate = config->data[0];
            if (type == CNN_OPTIMIZER_ADAM) {
                desc.beta1 = config->data[1]; desc.beta2 = config->data[2]; desc.epsilon = config->data[3];
            } else {
                desc.momentum = config->data[1];
            }
            r = cnn_optimizer_init(&opt, &m, &desc);
            CHECK(r == CNN_OK, "cnn_optimizer_init: %s", m.error.message);
            for (step = 1; r == CNN_OK && step <= 3; step++) {
                char grad_name[16], params_name[16];
                const ref_tensor *g;
                snprintf(grad_name, sizeof grad_name, "grad%d", step);
                snprintf(params_name, sizeof params_name, "params%d", step);
                if (!(g = ref_get1(&f, grad_name, 136))) break;
                memcpy(m.grads, g->data, g->count * sizeof(float));
                r = cnn_optimizer_step(&opt, &m);
                CHECK(r == CNN_OK, "cnn_optimizer_step: %s", m.error.message);
                ref_compare(&f, params_name, m.params, ref_get1(&f, params_name, 136), p0->data, TOL_LAYER, FLOOR);
            }
            cnn_optimizer_free(&opt);
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

TEST(adam_default_given_grads) { optimizer_case("adam_default_given_grads", CNN_OPTIMIZER_ADAM); }
TEST(adam_custom_given_grads) { optimizer_case("adam_custom_given_grads", CNN_OPTIMIZER_ADAM); }
TEST(sgd_momentum_given_grads) { optimizer_case("sgd_momentum_given_grads", CNN_OPTIMIZER_SGD); }
TEST(sgd_plain_given_grads) { optimizer_case("sgd_plain_given_grads", CNN_OPTIMIZER_SGD); }

/* ---------------------------------------------------------------- LeNet-5 */

/* fixture name -> layer index in the model built by lenet5_model() */
static const struct { const char *name; int layer; } lenet_layers[] = {
    {"conv1", 0}, {"conv2", 3}, {"fc1", 7}, {"fc2", 9}, {"fc3", 11}};
#define LENET_PARAM_LAYERS 5
#define LENET_BATCH 8

/* cnn_add_lenet5 with 10 classes (gen.py's lenet_forward); weights
   from the fixture (dense in cnn.h's (IN, OUT) layout, as stored). */
static int lenet5_model(cnn_model *m, ref_file *f)
{
    cnn_result r;
    int i;
    cnn_model_init(m, 1, 28, 28, 1);
    cnn_add_lenet5(m, 10);
    r = cnn_model_build(m, LENET_BATCH);
    CHECK(r == CNN_OK, "building LeNet-5: %s", m->error.message);
    if (r != CNN_OK) return 0;
    CHECK(m->param_count == 61706, "LeNet-5 has %lu parameters, expected 61706", (unsigned long)m->param_count);
    for (i = 0; i < LENET_PARAM_LAYERS; i++) {
        cnn_layer *layer = &m->layers[lenet_layers[i].layer];
        char name[REF_NAME_SIZE];
        const ref_tensor *w, *b;
        snprintf(name, sizeof name, "%s.weight", lenet_layers[i].name);
        w = ref_find(f, name);
        snprintf(name, sizeof name, "%s.bias", lenet_layers[i].name);
        b = ref_find(f, name);
        CHECK(w && b && w->count == layer->weight_count && b->count == layer->bias_count,
              "LeNet-5 %s: fixture parameters missing or of the wrong size", lenet_layers[i].name);
        if (!(w && b && w->count == layer->weight_count && b->count == layer->bias_count)) return 0;
        memcpy(layer->weight, w->data, w->count * sizeof(float));
        memcpy(layer->bias, b->data, b->count * sizeof(float));
    }
    return 1;
}

/* prefix.conv1.weight, prefix.conv1.bias, ... against the model's params
   (prefix "grad": against its gradients) */
static void lenet5_compare_params(ref_file *f, cnn_model *m, const char *prefix, int grads, double tol, double floor_fraction)
{
    int i, part;
    for (i = 0; i < LENET_PARAM_LAYERS; i++) {
        cnn_layer *layer = &m->layers[lenet_layers[i].layer];
        for (part = 0; part < 2; part++) {
            char name[REF_NAME_SIZE];
            const float *got = part == 0 ? (grads ? layer->weight_grad : layer->weight) : (grads ? layer->bias_grad : layer->bias);
            snprintf(name, sizeof name, "%s.%s.%s", prefix, lenet_layers[i].name, part == 0 ? "weight" : "bias");
            ref_compare_named(f, name, got, tol, floor_fraction);
        }
    }
}

static int lenet5_batch(ref_file *f, int step, const ref_tensor **x, int **labels)
{
    char name[16];
    const ref_tensor *l;
    snprintf(name, sizeof name, "x%d", step);
    *x = ref_get4(f, name, LENET_BATCH, 1, 28, 28);
    snprintf(name, sizeof name, "labels%d", step);
    l = ref_get1(f, name, LENET_BATCH);
    *labels = l ? ref_labels(l) : NULL;
    return *x && *labels;
}

/* The loss, the probabilities and every gradient on batch 0. */
TEST(lenet5_forward_backward)
{
    ref_file f;
    cnn_model m;
    const ref_tensor *x;
    int *labels = NULL;
    memset(&m, 0, sizeof m);
    if (!ref_load(&f, "lenet5")) return;
    if (lenet5_batch(&f, 0, &x, &labels) && lenet5_model(&m, &f)) {
        float loss = 0.0f;
        cnn_result r = cnn_model_forward(&m, x->data, LENET_BATCH, CNN_MODE_TRAIN);
        CHECK(r == CNN_OK, "forward: %s", m.error.message);
        ref_compare_named(&f, "probabilities", cnn_model_output(&m), TOL_NET, FLOOR);
        r = cnn_model_loss(&m, labels, &loss, NULL);
        CHECK(r == CNN_OK, "loss: %s", m.error.message);
        ref_compare_named(&f, "loss", &loss, TOL_NET, FLOOR);
        cnn_model_zero_grad(&m);
        r = cnn_model_backward(&m, labels);
        CHECK(r == CNN_OK, "backward: %s", m.error.message);
        ref_compare_named(&f, "grad.input", m.activation_grads[0].data, TOL_NET, FLOOR);
        lenet5_compare_params(&f, &m, "grad", 1, TOL_NET, FLOOR);
    }
    cnn_model_free(&m);
    free(labels);
    ref_free(&f);
}

/* 3 optimiser steps from the fixture's weights, step t on batch t (three
   different batches), compared with PyTorch's losses before each step and
   weights after the last. Adam goes through forward / loss / zero_grad /
   backward / cnn_optimizer_step; SGD through cnn_model_train_step, which
   does the same in one call. */
static void lenet5_trajectory(const char *prefix, cnn_optimizer_type type)
{
    ref_file f;
    cnn_model m;
    cnn_optimizer opt;
    const ref_tensor *want_losses;
    float losses[3];
    int step, *labels[3] = {NULL, NULL, NULL};
    const ref_tensor *x[3];
    char name[REF_NAME_SIZE];
    memset(&m, 0, sizeof m);
    if (!ref_load(&f, "lenet5")) return;
    snprintf(name, sizeof name, "%s.losses", prefix);
    want_losses = ref_get1(&f, name, 3);
    for (step = 0; step < 3; step++)
        if (!lenet5_batch(&f, step, &x[step], &labels[step])) want_losses = NULL;
    if (want_losses && lenet5_model(&m, &f)) {
        cnn_result r;
        if (type == CNN_OPTIMIZER_ADAM) {
            r = cnn_optimizer_init(&opt, &m, NULL);  /* defaults: lr 1e-3, betas .9/.999, eps 1e-7 */
        } else {
            cnn_optimizer_desc desc;
            memset(&desc, 0, sizeof desc);
            desc.type = CNN_OPTIMIZER_SGD;
            desc.learning_rate = 0.01f;
            desc.momentum = 0.9f;
            r = cnn_optimizer_init(&opt, &m, &desc);
        }
        CHECK(r == CNN_OK, "cnn_optimizer_init: %s", m.error.message);
        for (step = 0; r == CNN_OK && step < 3; step++) {
            if (type == CNN_OPTIMIZER_ADAM) {
                r = cnn_model_forward(&m, x[step]->data, LENET_BATCH, CNN_MODE_TRAIN);
                if (r == CNN_OK) r = cnn_model_loss(&m, labels[step], &losses[step], NULL);
                cnn_model_zero_grad(&m);
                if (r == CNN_OK) r = cnn_model_backward(&m, labels[step]);
                if (r == CNN_OK) r = cnn_optimizer_step(&opt, &m);
            } else {
                r = cnn_model_train_step(&m, &opt, x[step]->data, labels[step], LENET_BATCH, &losses[step], NULL);
            }
            CHECK(r == CNN_OK, "step %d: %s", step + 1, m.error.message);
        }
        if (r == CNN_OK) {
            ref_compare(&f, name, losses, want_losses, NULL, TOL_NET, FLOOR);
            lenet5_compare_params(&f, &m, prefix, 0, TOL_NET, FLOOR_TRAJECTORY);
        }
        cnn_optimizer_free(&opt);
    }
    cnn_model_free(&m);
    for (step = 0; step < 3; step++) free(labels[step]);
    ref_free(&f);
}

TEST(lenet5_adam_3_steps) { lenet5_trajectory("adam", CNN_OPTIMIZER_ADAM); }
TEST(lenet5_sgd_momentum_3_steps) { lenet5_trajectory("sgd", CNN_OPTIMIZER_SGD); }

/* ---------------------------------------------------------------- batch norm, residual blocks, padded pools */

/* x of a batch norm fixture: (N, C, H, W), or (N, C) for BatchNorm1d,
   which in cnn.h is the same layer on a (C, 1, 1) input. NULL after
   failing the test. */
static const ref_tensor *bn_input(ref_file *f, const char *name, int *n, int *c, int *h, int *w)
{
    const ref_tensor *x = ref_find(f, name);
    CHECK(x && (x->ndim == 2 || x->ndim == 4), "%s: no 2- or 4-dimensional '%s'", f->case_name, name);
    if (!x || (x->ndim != 2 && x->ndim != 4)) return NULL;
    *n = x->dims[0]; *c = x->dims[1];
    *h = x->ndim == 4 ? x->dims[2] : 1;
    *w = x->ndim == 4 ? x->dims[3] : 1;
    return x;
}

/* One batch norm layer: gamma, beta (and in evaluation the running
   statistics) from the fixture; y, dx, dgamma, dbeta; in training also the
   running statistics after the step (they start at mean 0, variance 1, as
   PyTorch's do) and its count. */
static void batch_norm_case(const char *name, cnn_mode mode)
{
    ref_file f;
    const ref_tensor *x, *gamma, *beta, *dy, *mean = NULL, *var = NULL;
    cnn_model m;
    int n, c, h, w;
    if (!ref_load(&f, name)) return;
    x = bn_input(&f, "x", &n, &c, &h, &w);
    gamma = x ? ref_get1(&f, "weight", c) : NULL;
    beta = x ? ref_get1(&f, "bias", c) : NULL;
    dy = ref_find(&f, "dy");
    if (mode == CNN_MODE_EVAL && x) {
        mean = ref_get1(&f, "running_mean", c);
        var = ref_get1(&f, "running_var", c);
    }
    CHECK(!x || (dy && dy->count == x->count), "%s: dy missing or not the size of x", name);
    if (gamma && beta && dy && dy->count == x->count && (mode == CNN_MODE_TRAIN || (mean && var)) &&
        one_layer_model(&m, c, h, w)) {
        if (finish_model(&m, cnn_add_batch_norm(&m), n)) {
            cnn_layer *layer = &m.layers[0];
            CHECK(layer->weight_count == (size_t)c && layer->bias_count == (size_t)c && layer->state_count == 2 * (size_t)c,
                  "batch norm of %d channels has %lu + %lu parameters and %lu state", c, (unsigned long)layer->weight_count,
                  (unsigned long)layer->bias_count, (unsigned long)layer->state_count);
            memcpy(layer->weight, gamma->data, gamma->count * sizeof(float));
            memcpy(layer->bias, beta->data, beta->count * sizeof(float));
            if (mode == CNN_MODE_EVAL) {
                memcpy(layer->running_mean, mean->data, mean->count * sizeof(float));
                memcpy(layer->running_var, var->data, var->count * sizeof(float));
            }
            forward_backward(&f, &m, x, dy, n, mode);
            ref_compare_named(&f, "dweight", layer->weight_grad, TOL_LAYER, FLOOR);
            ref_compare_named(&f, "dbias", layer->bias_grad, TOL_LAYER, FLOOR);
            if (mode == CNN_MODE_TRAIN) {
                ref_compare_named(&f, "running_mean", layer->running_mean, TOL_LAYER, FLOOR);
                ref_compare_named(&f, "running_var", layer->running_var, TOL_LAYER, FLOOR);
            } else {
                CHECK(memcmp(layer->running_mean, mean->data, mean->count * sizeof(float)) == 0 &&
                          memcmp(layer->running_var, var->data, var->count * sizeof(float)) == 0,
                      "%s: evaluation changed the running statistics", name);
            }
            CHECK(layer->batches_tracked == (mode == CNN_MODE_TRAIN ? 1u : 0u), "%s: batches_tracked %lu after one pass", name,
                  (unsigned long)layer->batches_tracked);
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

TEST(batch_norm_train_conv) { batch_norm_case("batch_norm_train_conv", CNN_MODE_TRAIN); }
TEST(batch_norm_train_dense) { batch_norm_case("batch_norm_train_dense", CNN_MODE_TRAIN); }
TEST(batch_norm_eval_conv) { batch_norm_case("batch_norm_eval_conv", CNN_MODE_EVAL); }
TEST(batch_norm_eval_dense) { batch_norm_case("batch_norm_eval_dense", CNN_MODE_EVAL); }

/* nn.BatchNorm2d / 1d trained on several different batches (x1, x2, ...):
   the running statistics after every step, the count of steps, and the
   last step's output (gamma 1 and beta 0, the layer's starting values,
   which are checked too). */
static void batch_norm_running_stats_case(const char *name)
{
    ref_file f;
    const ref_tensor *x1, *config;
    cnn_model m;
    int n, c, h, w, steps, step;
    if (!ref_load(&f, name)) return;
    x1 = bn_input(&f, "x1", &n, &c, &h, &w);
    config = ref_get1(&f, "config", 1);
    if (x1 && config && one_layer_model(&m, c, h, w)) {
        steps = (int)config->data[0];
        if (finish_model(&m, cnn_add_batch_norm(&m), n)) {
            cnn_layer *layer = &m.layers[0];
            int k, starts_as_identity = 1;
            for (k = 0; k < c; k++)
                starts_as_identity &= layer->weight[k] == 1.0f && layer->bias[k] == 0.0f && layer->running_mean[k] == 0.0f &&
                                      layer->running_var[k] == 1.0f;
            CHECK(starts_as_identity, "%s: a new batch norm is not gamma 1, beta 0, running mean 0, variance 1", name);
            for (step = 1; step <= steps; step++) {
                char tensor[32];
                const ref_tensor *x;
                cnn_result r;
                snprintf(tensor, sizeof tensor, "x%d", step);
                if (!(x = ref_find(&f, tensor)) || x->count != x1->count) {
                    CHECK(0, "%s: no %s of x1's size", name, tensor);
                    break;
                }
                r = cnn_model_forward(&m, x->data, n, CNN_MODE_TRAIN);
                CHECK(r == CNN_OK, "step %d: %s", step, m.error.message);
                snprintf(tensor, sizeof tensor, "running_mean%d", step);
                ref_compare_named(&f, tensor, layer->running_mean, TOL_LAYER, FLOOR);
                snprintf(tensor, sizeof tensor, "running_var%d", step);
                ref_compare_named(&f, tensor, layer->running_var, TOL_LAYER, FLOOR);
            }
            CHECK(layer->batches_tracked == (uint64_t)steps, "%s: batches_tracked %lu after %d steps", name,
                  (unsigned long)layer->batches_tracked, steps);
            ref_compare_named(&f, "y", cnn_model_output(&m), TOL_LAYER, FLOOR);
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

TEST(batch_norm_running_stats_conv) { batch_norm_running_stats_case("batch_norm_running_stats_conv"); }
TEST(batch_norm_running_stats_dense) { batch_norm_running_stats_case("batch_norm_running_stats_dense"); }

/* fixture parameter name -> layer of the model and which part */
typedef struct ref_param {
    const char *name;
    int layer, is_bias;
} ref_param;

/* Copies the fixture's parameters into the model; 0 (after failing the
   test) when one is missing or of another size. */
static int ref_set_params(ref_file *f, cnn_model *m, const ref_param *params, int count)
{
    int i;
    for (i = 0; i < count; i++) {
        cnn_layer *layer = &m->layers[params[i].layer];
        const ref_tensor *t = ref_find(f, params[i].name);
        size_t want = params[i].is_bias ? layer->bias_count : layer->weight_count;
        CHECK(t && t->count == want, "%s: '%s' missing, or not the %lu values of layer %d", f->case_name, params[i].name,
              (unsigned long)want, params[i].layer);
        if (!t || t->count != want) return 0;
        memcpy(params[i].is_bias ? layer->bias : layer->weight, t->data, want * sizeof(float));
    }
    return 1;
}

/* Forward x in training mode, backward from dy: y, grad.input and
   grad.<name> of every parameter named but the bias of a conv just before
   a batch norm, whose gradient is 0 plus rounding (see residual_projection). */
static void residual_compare(ref_file *f, cnn_model *m, const ref_param *params, int count)
{
    const ref_tensor *x = ref_find(f, "x"), *dy = ref_find(f, "dy");
    const ref_tensor *want_input = ref_find(f, "grad.input");
    cnn_shape out = cnn_model_output_shape(m);
    cnn_result r;
    int i, n;
    CHECK(x && dy && want_input && x->ndim == 4 && dy->ndim == 4, "%s: x, dy or grad.input missing", f->case_name);
    if (!x || !dy || !want_input || x->ndim != 4 || dy->ndim != 4) return;
    n = x->dims[0];
    CHECK(dy->dims[1] == out.c && dy->dims[2] == out.h && dy->dims[3] == out.w,
          "%s: the model's output is (%d, %d, %d), PyTorch's (%d, %d, %d)", f->case_name, out.c, out.h, out.w, dy->dims[1],
          dy->dims[2], dy->dims[3]);
    if (dy->dims[1] != out.c || dy->dims[2] != out.h || dy->dims[3] != out.w) return;
    r = cnn_model_forward(m, x->data, n, CNN_MODE_TRAIN);
    CHECK(r == CNN_OK, "forward: %s", m->error.message);
    if (r != CNN_OK) return;
    ref_compare_named(f, "y", cnn_model_output(m), TOL_LAYER, FLOOR);
    cnn_model_zero_grad(m);
    r = cnn_model_backward_from(m, dy->data);
    CHECK(r == CNN_OK, "backward: %s", m->error.message);
    ref_compare_named(f, "grad.input", m->activation_grads[0].data, TOL_LAYER, FLOOR);
    for (i = 0; i < count; i++) {
        const cnn_layer *layer = &m->layers[params[i].layer];
        char name[REF_NAME_SIZE];
        if (params[i].is_bias && params[i].layer + 1 < m->layer_count &&
            m->layers[params[i].layer + 1].desc.type == CNN_LAYER_BATCH_NORM)
            continue;
        snprintf(name, sizeof name, "grad.%s", params[i].name);
        ref_compare_named(f, name, params[i].is_bias ? layer->bias_grad : layer->weight_grad, TOL_LAYER, FLOOR);
    }
}

/* begin; conv 3x3 p1; relu; conv 3x3 p1; end: y = F(x) + x. */
TEST(residual_identity)
{
    static const ref_param params[] = {
        {"conv1.weight", 1, 0}, {"conv1.bias", 1, 1}, {"conv2.weight", 3, 0}, {"conv2.bias", 3, 1}};
    ref_file f;
    const ref_tensor *x;
    cnn_model m;
    if (!ref_load(&f, "residual_identity")) return;
    x = ref_get4(&f, "x", -1, -1, -1, -1);
    if (x && one_layer_model(&m, x->dims[1], x->dims[2], x->dims[3])) {
        cnn_add_residual_begin(&m);
        cnn_add_conv2d(&m, x->dims[1], 3, 1, 1);
        cnn_add_relu(&m);
        cnn_add_conv2d(&m, x->dims[1], 3, 1, 1);
        if (finish_model(&m, cnn_add_residual_end(&m, CNN_INIT_DEFAULT), x->dims[0])) {
            CHECK(m.layers[4].weight_count == 0 && m.layers[4].block_begin == 0, "the block's end has a projection, or no begin");
            if (ref_set_params(&f, &m, params, 4)) residual_compare(&f, &m, params, 4);
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

/* A ResNet block that halves the image: begin; conv 3x3 s2 p1; batch norm;
   relu; conv 3x3 p1; batch norm; end, whose projection is a 1x1 conv of
   stride 2 (chosen by cnn.h: the smallest stride that maps 6x7 to 3x4).
   Batch norm in training. The convs' biases just before a batch norm have
   a gradient of 0 (the batch mean takes them away): PyTorch's is rounding
   noise and not stored, and cnn.h's must be as small. */
TEST(residual_projection)
{
    static const ref_param params[] = {
        {"conv1.weight", 1, 0}, {"conv1.bias", 1, 1}, {"bn1.weight", 2, 0}, {"bn1.bias", 2, 1},
        {"conv2.weight", 4, 0}, {"conv2.bias", 4, 1}, {"bn2.weight", 5, 0}, {"bn2.bias", 5, 1},
        {"proj.weight", 6, 0}, {"proj.bias", 6, 1}};
    ref_file f;
    const ref_tensor *x, *pw;
    cnn_model m;
    if (!ref_load(&f, "residual_projection")) return;
    x = ref_get4(&f, "x", -1, -1, -1, -1);
    pw = ref_get4(&f, "proj.weight", -1, -1, 1, 1);
    if (x && pw && one_layer_model(&m, x->dims[1], x->dims[2], x->dims[3])) {
        const int oc = pw->dims[0];
        cnn_add_residual_begin(&m);
        cnn_add_conv2d(&m, oc, 3, 2, 1);
        cnn_add_batch_norm(&m);
        cnn_add_relu(&m);
        cnn_add_conv2d(&m, oc, 3, 1, 1);
        cnn_add_batch_norm(&m);
        if (finish_model(&m, cnn_add_residual_end(&m, CNN_INIT_DEFAULT), x->dims[0])) {
            const cnn_layer *end = &m.layers[6];
            CHECK(end->desc.kernel == 1 && end->desc.stride == 2 && end->weight_count == (size_t)oc * x->dims[1] &&
                      end->bias_count == (size_t)oc,
                  "projection %dx%d stride %d with %lu + %lu parameters, expected 1x1 stride 2", end->desc.kernel,
                  end->desc.kernel, end->desc.stride, (unsigned long)end->weight_count, (unsigned long)end->bias_count);
            if (ref_set_params(&f, &m, params, 10)) {
                double largest = 0.0, bias = 0.0;
                size_t k;
                residual_compare(&f, &m, params, 10);
                for (k = 0; k < m.layers[1].weight_count; k++)
                    if (fabs(m.layers[1].weight_grad[k]) > largest) largest = fabs(m.layers[1].weight_grad[k]);
                for (k = 0; k < (size_t)oc; k++) {
                    if (fabs(m.layers[1].bias_grad[k]) > bias) bias = fabs(m.layers[1].bias_grad[k]);
                    if (fabs(m.layers[4].bias_grad[k]) > bias) bias = fabs(m.layers[4].bias_grad[k]);
                }
                CHECK(bias <= TOL_LAYER * FLOOR * largest, "a conv bias before batch norm has gradient %.3g (conv1's weights' "
                      "largest: %.3g): it should be 0 plus rounding", bias, largest);
            }
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

/* A block inside a block, each with a projection: outer begin; conv_a 3x3
   p1; inner begin; conv_b 3x3 s2 p1; inner end; outer end. */
TEST(residual_nested)
{
    static const ref_param params[] = {
        {"conv_a.weight", 1, 0}, {"conv_a.bias", 1, 1}, {"conv_b.weight", 3, 0}, {"conv_b.bias", 3, 1},
        {"inner_proj.weight", 4, 0}, {"inner_proj.bias", 4, 1}, {"outer_proj.weight", 5, 0}, {"outer_proj.bias", 5, 1}};
    ref_file f;
    const ref_tensor *x, *wa;
    cnn_model m;
    if (!ref_load(&f, "residual_nested")) return;
    x = ref_get4(&f, "x", -1, -1, -1, -1);
    wa = ref_get4(&f, "conv_a.weight", -1, -1, 3, 3);
    if (x && wa && one_layer_model(&m, x->dims[1], x->dims[2], x->dims[3])) {
        cnn_add_residual_begin(&m);
        cnn_add_conv2d(&m, wa->dims[0], 3, 1, 1);
        cnn_add_residual_begin(&m);
        cnn_add_conv2d(&m, wa->dims[0], 3, 2, 1);
        cnn_add_residual_end(&m, CNN_INIT_DEFAULT);
        if (finish_model(&m, cnn_add_residual_end(&m, CNN_INIT_DEFAULT), x->dims[0])) {
            CHECK(m.layers[4].block_begin == 2 && m.layers[5].block_begin == 0, "the ends close blocks %d and %d, expected 2 and 0",
                  m.layers[4].block_begin, m.layers[5].block_begin);
            if (ref_set_params(&f, &m, params, 8)) residual_compare(&f, &m, params, 8);
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

/* PyTorch's F.max_pool2d / F.avg_pool2d with padding and ceil_mode
   (count_include_pad): the fixture's config is kernel, stride, padding,
   ceil_mode, and its dy has PyTorch's output shape, which cnn.h must give. */
static void pool_padding_case(const char *name, cnn_layer_type type)
{
    ref_file f;
    const ref_tensor *x, *dy, *config;
    cnn_layer_desc desc;
    cnn_model m;
    if (!ref_load(&f, name)) return;
    x = ref_get4(&f, "x", -1, -1, -1, -1);
    config = ref_get1(&f, "config", 4);
    dy = x ? ref_get4(&f, "dy", x->dims[0], x->dims[1], -1, -1) : NULL;
    if (dy && config && one_layer_model(&m, x->dims[1], x->dims[2], x->dims[3])) {
        memset(&desc, 0, sizeof desc);
        desc.type = type;
        desc.kernel = (int)config->data[0];
        desc.stride = (int)config->data[1];
        desc.padding = (int)config->data[2];
        desc.ceil_mode = (int)config->data[3];
        if (finish_model(&m, cnn_model_add(&m, &desc), x->dims[0])) {
            const cnn_shape out = m.layers[0].out;
            CHECK(out.h == dy->dims[2] && out.w == dy->dims[3], "%s: output %dx%d, PyTorch's %dx%d", name, out.h, out.w,
                  dy->dims[2], dy->dims[3]);
            if (out.h == dy->dims[2] && out.w == dy->dims[3]) forward_backward(&f, &m, x, dy, x->dims[0], CNN_MODE_EVAL);
        }
        cnn_model_free(&m);
    }
    ref_free(&f);
}

TEST(pool_padding_max_k3_s2_p1) { pool_padding_case("pool_padding_max_k3_s2_p1", CNN_LAYER_MAX_POOL); }
TEST(pool_padding_max_k2_s2_ceil) { pool_padding_case("pool_padding_max_k2_s2_ceil", CNN_LAYER_MAX_POOL); }
TEST(pool_padding_max_k3_s2_p1_ceil) { pool_padding_case("pool_padding_max_k3_s2_p1_ceil", CNN_LAYER_MAX_POOL); }
TEST(pool_padding_avg_k3_s2_p1_ceil) { pool_padding_case("pool_padding_avg_k3_s2_p1_ceil", CNN_LAYER_AVG_POOL); }
TEST(pool_padding_avg_k2_s2_ceil) { pool_padding_case("pool_padding_avg_k2_s2_ceil", CNN_LAYER_AVG_POOL); }
/* 5 rows, 2/2, padding 1, ceil: a fourth window would start in the bottom padding and is dropped */
TEST(pool_padding_avg_k2_s2_p1_ceil) { pool_padding_case("pool_padding_avg_k2_s2_p1_ceil", CNN_LAYER_AVG_POOL); }
TEST(pool_padding_avg_k3_s1_p1) { pool_padding_case("pool_padding_avg_k3_s1_p1", CNN_LAYER_AVG_POOL); }

int main(void)
{
    RUN(generator_matches_gen_py);
    RUN(conv2d_c1_k3_s1_p1);
    RUN(conv2d_c3_k3_s2_p1);
    RUN(conv2d_c3_k5_s1_p2);
    RUN(conv2d_c1_k5_s1_p0);
    RUN(conv2d_c3_k1_s1_p0);
    RUN(conv2d_c3_k1_s2_p0);
    RUN(conv2d_c1_k3_s2_p0);
    RUN(conv2d_c3_k5_s2_p2);
    RUN(conv2d_c3_k3_s1_p2);
    RUN(conv2d_c6_k5_s1_p2_24x24);
    RUN(max_pool_k2_s2);
    RUN(max_pool_k3_s2);
    RUN(max_pool_k2_s2_ties);
    RUN(max_pool_k3_s2_ties);
    RUN(avg_pool_k2_s2);
    RUN(avg_pool_k3_s2);
    RUN(dense_in20_out7);
    RUN(dense_in130_out9);
    RUN(activation_relu);
    RUN(activation_leaky_relu_0_3);
    RUN(activation_relu_zeros);
    RUN(activation_leaky_relu_0_3_zeros);
    RUN(activation_sigmoid);
    RUN(activation_tanh);
    RUN(softmax_cross_entropy);
    RUN(softmax_cross_entropy_large_logits);
    RUN(softmax_backward);
    RUN(dropout_0_25);
    RUN(adam_default_given_grads);
    RUN(adam_custom_given_grads);
    RUN(sgd_momentum_given_grads);
    RUN(sgd_plain_given_grads);
    RUN(lenet5_forward_backward);
    RUN(lenet5_adam_3_steps);
    RUN(lenet5_sgd_momentum_3_steps);
    RUN(batch_norm_train_conv);
    RUN(batch_norm_train_dense);
    RUN(batch_norm_eval_conv);
    RUN(batch_norm_eval_dense);
    RUN(batch_norm_running_stats_conv);
    RUN(batch_norm_running_stats_dense);
    RUN(residual_identity);
    RUN(residual_projection);
    RUN(residual_nested);
    RUN(pool_padding_max_k3_s2_p1);
    RUN(pool_padding_max_k2_s2_ceil);
    RUN(pool_padding_max_k3_s2_p1_ceil);
    RUN(pool_padding_avg_k3_s2_p1_ceil);
    RUN(pool_padding_avg_k2_s2_ceil);
    RUN(pool_padding_avg_k2_s2_p1_ceil);
    RUN(pool_padding_avg_k3_s1_p1);
    if (ref_verbose()) printf("%d tensors compared\n", ref_compared);
    return test_report();
}
