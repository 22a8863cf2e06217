/* bench.c - the cnn.h side of `make bench` (tests/bench/run.sh drives it).

     bench MODEL BATCH SAMPLES THREADS DATA.csv
     bench MODEL BATCH SAMPLES THREADS IMAGES.idx LABELS.idx
     bench peak
     bench spin

   MODEL is lenet5, cnn or mlp (the same models as tests/bench/bench_torch.py).
   Loads the first BENCH_ROWS samples of DATA, then trains on SAMPLES samples
   taken from them in consecutive batches of BATCH, going round them as many
   times as needed, with Adam (lr 1e-3); prints one line of key=value pairs:

     RESULT impl=cnn.h model=.. batch=.. threads=.. samples=.. seconds=..
            samples_per_s=.. flops_per_sample=.. latency_us=.. maxrss_kb=..
            isa=..

   Only the training steps are timed: loading, building and WARMUP_STEPS
   steps come before the clock starts. latency_us is the median of single-
   sample forward passes (eval mode) after the training. maxrss_kb is the
   peak resident memory of the whole process, data included. isa is the
   instruction set of the model's multiply kernels (cnn_model_instruction_set:
   avx512, avx2, sse2, generic or plain; CNN_MAX_ISA caps it).
   `bench peak` prints one core's FP32 peak for the instruction set cnn.h
   picks on this machine (CNN_MAX_ISA included), measured with a loop of
   independent multiply-adds in that set:

     PEAK isa=.. loop=.. gflops_per_core=.. sink=..

   `bench spin` spins on one core until its parent ends or kills it:
   run.sh's busy rows run while it does. */
#define _POSIX_C_SOURCE 200112L
#define CNN_IMPLEMENTATION
#include "../../cnn.h"
#include "../../examples/seed_models.h" /* the seed CNN and MLP, as examples/cnn.c and mlp.c train them */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* bench_torch.py uses the same numbers. A fixed number of rows keeps
   the data's share of the peak memory the same (12.8 MB of floats) whatever
   SAMPLES is; the time it takes to read a batch is tiny beside its step. */
#define BENCH_ROWS 4096
#define WARMUP_STEPS 2 /* PyTorch's first two steps are slower (allocations, kernel set-up) */
#define LATENCY_WARMUP 20
#define LATENCY_RUNS 300

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------- peak */

/* Each chain is x = x * m + c, which converges (m < 1) so the values stay
   normal: denormals would slow the loop down. The chains are independent so
   that the pipes never wait for a previous result: two FMA pipes with a
   latency of 4 cycles (Zen 3, Intel since Skylake; AVX-512 on Zen 5 and on
   Intel's two-unit cores) need 8 chains in flight. 12 are safe and, with m
   and c, fit the 16 vector registers of SSE2 and AVX2 without a spill;
   AVX-512 has 32 registers, so its loop runs 16 (Zen 4 splits each 512-bit
   FMA over its two 256-bit pipes, and needs fewer). */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define CHAIN_COUNT 12
#define CHAINS_AVX512(X) CHAINS(X) X(12) X(13) X(14) X(15)
#define CHAIN_COUNT_AVX512 16

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_VECTOR_PEAK 1
__attribute__((target("avx512f,fma"))) static float fma_chains_avx512(long iterations)
{
    const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
    __m512 total = _mm512_setzero_ps();
    float lanes[16], sum = 0.0f;
    long i;
    int k;
#define DECLARE(j) __m512 x##j = _mm512_set1_ps((float)(j));
#define STEP(j) x##j = _mm512_fmadd_ps(x##j, m, c);
#define ADD(j) total = _mm512_add_ps(total, x##j);
    CHAINS_AVX512(DECLARE)
    for (i = 0; i < iterations; i++) { CHAINS_AVX512(STEP) }
    CHAINS_AVX512(ADD) /* every chain feeds the result, so none is optimised away */
    _mm512_storeu_ps(lanes, total);
    for (k = 0; k < 16; k++) sum += lanes[k];
    return sum;
}
#undef DECLARE
#undef STEP
#undef ADD

__attribute__((target("avx2,fma"))) static float fma_chains_avx2(long iterations)
{
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
    __m256 total = _mm256_setzero_ps();
    float lanes[8], sum = 0.0f;
    long i;
    int k;
#define DECLARE(j) __m256 x##j = _mm256_set1_ps((float)(j));
#define STEP(j) x##j = _mm256_fmadd_ps(x##j, m, c);
#define ADD(j) total = _mm256_add_ps(total, x##j);
    CHAINS(DECLARE)
    for (i = 0; i < iterations; i++) { CHAINS(STEP) }
    CHAINS(ADD) /* every chain feeds the result, so none is optimised away */
    _mm256_storeu_ps(lanes, total);
    for (k = 0; k < 8; k++) sum += lanes[k];
    return sum;
}
#undef DECLARE
#undef STEP
#undef ADD

/* cnn.h's sse2 kernel has no fused multiply-add: a multiply and an add per
   step, 4 lanes. SSE2 is part of x86-64, so no target attribute. */
static float mul_add_chains_sse2(long iterations)
{
    const __m128 m = _mm_set1_ps(0.999f), c = _mm_set1_ps(0.001f);
    __m128 total = _mm_setzero_ps();
    float lanes[4];
    long i;
#define DECLARE(j) __m128 x##j = _mm_set1_ps((float)(j));
#define STEP(j) x##j = _mm_add_ps(_mm_mul_ps(x##j, m), c);
#define ADD(j) total = _mm_add_ps(total, x##j);
    CHAINS(DECLARE)
    for (i = 0; i < iterations; i++) { CHAINS(STEP) }
    CHAINS(ADD)
    _mm_storeu_ps(lanes, total);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#undef DECLARE
#undef STEP
#undef ADD
#endif

/* cnn.h's generic and plain builds: a multiply and an add per step, one
   lane (GCC 12 at -O2 keeps this loop scalar). */
static float mul_add_chains_scalar(long iterations)
{
    const float m = 0.999f, c = 0.001f;
    long i;
#define DECLARE(j) float x##j = (float)(j);
#define STEP(j) x##j = x##j * m + c;
#define ADD(j) + x##j
    CHAINS(DECLARE)
    for (i = 0; i < iterations; i++) { CHAINS(STEP) }
    return 0.0f CHAINS(ADD);
}

/* The peak of the instruction set cnn.h picks here: a model of one weight
   is built and asked which it got, so that the CPU check and CNN_MAX_ISA are
   cnn.h's own. Best of several short runs: other processes on the machine
   can only slow a run down, never speed it up. */
static int peak(void)
{
    cnn_model probe;
    float (*chains)(long) = mul_add_chains_scalar;
    const char *isa, *loop = "scalar";
    double flops_per_iteration = CHAIN_COUNT * 2.0, best = 0.0;
    long iterations = 2000000;
    float sink = 0.0f;
    int run;
    cnn_model_init(&probe, 1, 1, 1, 1);
    cnn_add_dense(&probe, 1);
    if (cnn_model_build(&probe, 1) != CNN_OK) {
        fprintf(stderr, "bench peak: %s\n", probe.error.message);
        cnn_model_free(&probe);
        return 1;
    }
    isa = cnn_model_instruction_set(&probe);
#ifdef HAVE_VECTOR_PEAK
    if (!strcmp(isa, "avx512")) chains = fma_chains_avx512, loop = "avx512f+fma", flops_per_iteration = CHAIN_COUNT_AVX512 * 16 * 2.0;
    else if (!strcmp(isa, "avx2")) chains = fma_chains_avx2, loop = "avx2+fma", flops_per_iteration = CHAIN_COUNT * 8 * 2.0;
    else if (!strcmp(isa, "sse2")) chains = mul_add_chains_sse2, loop = "sse2", flops_per_iteration = CHAIN_COUNT * 4 * 2.0;
#endif
    for (run = 0; run < 50; run++) {
        double start = now_seconds(), seconds;
        sink += chains(iterations);
        seconds = now_seconds() - start;
        if (flops_per_iteration * (double)iterations / seconds > best) best = flops_per_iteration * (double)iterations / seconds;
    }
    printf("PEAK isa=%s loop=%s gflops_per_core=%.1f sink=%g\n", isa, loop, best * 1e-9, (double)sink);
    cnn_model_free(&probe);
    return 0;
}

/* ---------------------------------------------------------------- spin */

/* Stands for another program's work on one core. It ends by itself once
   its parent (run.sh) is gone, so that it cannot outlive a run.sh killed
   before it could stop it: an orphan gets a new parent. */
static int spin(void)
{
    const pid_t parent = getppid();
    volatile unsigned long n; /* volatile: the loop must not be optimised away */
    while (getppid() == parent)
        for (n = 0; n < 100000000UL; n++) {
        }
    return 0;
}

/* ---------------------------------------------------------------- models */

/* Errors are sticky in cnn.h, so the adds are checked once, at the build. */
static cnn_result build_model(cnn_model *m, const char *name, int classes, int max_batch)
{
    cnn_model_init(m, 1, 28, 28, 1);
    if (!strcmp(name, "lenet5")) {
        cnn_add_lenet5(m, classes);
    } else if (!strcmp(name, "cnn")) {
        seed_add_cnn(m, classes);
    } else if (!strcmp(name, "mlp")) {
        seed_add_mlp(m, classes);
    } else {
        return CNN_ERROR_INVALID_ARGUMENT;
    }
    return cnn_model_build(m, max_batch);
}

/* Training FLOPs per sample, counting the work that training needs, by the
   usual convention: a multiply-add is 2 FLOPs and only conv and dense layers
   count (activations, pooling, softmax and the optimiser are left out). Each
   such layer costs its forward product twice more in the backward pass, once
   for the gradient of its weights and once for the gradient of its input -
   except a layer with no conv or dense layer before it, whose input gradient
   nobody needs (PyTorch does not compute it). */
static double training_flops_per_sample(const cnn_model *m)
{
    double flops = 0.0;
    int i, trainable_before = 0;
    for (i = 0; i < m->layer_count; i++) {
        const cnn_layer *l = &m->layers[i];
        double in = (double)cnn_shape_count(l->in), out = (double)cnn_shape_count(l->out), macs;
        if (l->desc.type == CNN_LAYER_CONV2D) macs = out * l->in.c * l->desc.kernel * l->desc.kernel;
        else if (l->desc.type == CNN_LAYER_DENSE) macs = in * out;
        else continue;
        flops += 2.0 * macs * (trainable_before ? 3.0 : 2.0);
        trainable_before = 1;
    }
    return flops;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    cnn_dataset data;
    cnn_data_desc data_desc;
    cnn_model model;
    cnn_optimizer adam;
    cnn_result r;
    struct rusage usage;
    double latencies[LATENCY_RUNS], start, seconds;
    const char *name;
    size_t sample_size;
    int batch, samples, threads, steps, usable_rows, i;

    if (argc == 2 && !strcmp(argv[1], "peak")) return peak();
    if (argc == 2 && !strcmp(argv[1], "spin")) return spin();
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: bench lenet5|cnn|mlp BATCH SAMPLES THREADS (DATA.csv | IMAGES LABELS)\n       bench peak\n       bench spin\n");
        return 2;
    }
    name = argv[1];
    batch = atoi(argv[2]);
    samples = atoi(argv[3]);
    threads = atoi(argv[4]);
    if (batch < 1 || samples < batch || threads < 1) {
        fprintf(stderr, "bench: need 1 <= BATCH <= SAMPLES and THREADS >= 1\n");
        return 2;
    }
#ifdef _OPENMP
    omp_set_num_threads(threads); /* the model takes its thread count at the build */
#endif

    memset(&data_desc, 0, sizeof data_desc);
    data_desc.max_rows = BENCH_ROWS;
    r = argc == 6 ? cnn_dataset_load_csv(&data, argv[5], &data_desc) : cnn_dataset_load_idx(&data, argv[5], argv[6], &data_desc);
    if (r != CNN_OK) {
        fprintf(stderr, "bench: %s\n", data.error.message);
        return 1;
    }
    usable_rows = data.count - data.count % batch; /* whole batches only, as bench_torch.py */
    if (usable_rows < batch) {
        fprintf(stderr, "bench: a batch of %d needs as many samples, the data has %d\n", batch, data.count);
        return 1;
    }
    /* the classes seen in the rows: bench_torch.py counts them the same way */
    if (build_model(&model, name, data.num_classes, batch) != CNN_OK || cnn_optimizer_init(&adam, &model, NULL) != CNN_OK) {
        fprintf(stderr, "bench: model '%s': %s\n", name, model.error.message);
        return 1;
    }

    sample_size = cnn_shape_count(model.input);
    steps = samples / batch;
    for (i = 0; i < WARMUP_STEPS && r == CNN_OK; i++)
        r = cnn_model_train_step(&model, &adam, data.images.data, data.labels, batch, NULL, NULL);
    start = now_seconds();
    for (i = 0; i < steps && r == CNN_OK; i++) {
        size_t first = (size_t)i * batch % (size_t)usable_rows; /* round the rows */
        r = cnn_model_train_step(&model, &adam, data.images.data + first * sample_size, data.labels + first, batch, NULL, NULL);
    }
    seconds = now_seconds() - start;
    if (r != CNN_OK) {
        fprintf(stderr, "bench: training failed: %s\n", model.error.message);
        return 1;
    }

    /* batch-1 inference: each pass timed alone, the median reported */
    for (i = 0; i < LATENCY_WARMUP + LATENCY_RUNS && r == CNN_OK; i++) {
        double t = now_seconds();
        r = cnn_model_forward(&model, data.images.data + (size_t)(i % data.count) * sample_size, 1, CNN_MODE_EVAL);
        if (i >= LATENCY_WARMUP) latencies[i - LATENCY_WARMUP] = now_seconds() - t;
    }
    if (r != CNN_OK) {
        fprintf(stderr, "bench: forward failed: %s\n", model.error.message);
        return 1;
    }
    qsort(latencies, LATENCY_RUNS, sizeof latencies[0], compare_doubles);

    getrusage(RUSAGE_SELF, &usage);
    /* threads= is what the model really uses: 1 when cnn.h runs single-threaded */
    printf("RESULT impl=cnn.h model=%s batch=%d threads=%d samples=%d seconds=%.4f samples_per_s=%.1f flops_per_sample=%.0f "
           "latency_us=%.1f maxrss_kb=%ld isa=%s\n",
           name, batch, model.threads, steps * batch, seconds, steps * batch / seconds, training_flops_per_sample(&model),
           latencies[LATENCY_RUNS / 2] * 1e6, (long)usage.ru_maxrss, cnn_model_instruction_set(&model));
    cnn_optimizer_free(&adam);
    cnn_model_free(&model);
    cnn_dataset_free(&data);
    return 0;
}
