/* cnn.h - a single-header convolutional neural network library in C99.
   v0.1.0. MIT or public domain, your choice: see the end of this file.

   Do this in *one* C or C++ file of your project:

       #define CNN_IMPLEMENTATION
       #include "cnn.h"

   and include "cnn.h" without the define everywhere else.

   WHAT IT DOES
     Float32 NCHW tensors; layers with forward and backward passes (conv2d,
     dense, ReLU, LeakyReLU, sigmoid, tanh, max and average pooling with
     padding and ceil mode, global average pooling, batch normalization,
     residual blocks, flatten, dropout, softmax fused with cross-entropy);
     Glorot and He initialisers;
     SGD with momentum and Adam; a sequential model with shape inference, a
     summary, training (with validation, early stopping, a progress reporter
     and a per-epoch history saved as CSV), evaluation, a confusion matrix
     and per-class metrics, save and load (with the class names, closed by
     a CRC-32) and checkpoints to resume training bit for bit; loaders for EMNIST/MNIST
     data as Kaggle CSV or IDX files and for label -> character mapping files;
     models to and from PyTorch as safetensors files (under torch.nn.Sequential's
     names and layouts) and out to ONNX (opset 13); int8 quantization as
     TensorFlow Lite does it, and a model exported as one C file (float or
     int8, no malloc) for a microcontroller.

   A COMPLETE PROGRAM
       cnn_model model;
       cnn_optimizer adam;
       cnn_dataset train;
       cnn_model_init(&model, 1, 28, 28, 42);     // input (C, H, W), seed
       cnn_add_conv2d(&model, 6, 5, 1, 2);        // 6 filters 5x5, stride 1, pad 2
       cnn_add_relu(&model);
       cnn_add_max_pool(&model, 2, 2);
       cnn_add_flatten(&model);
       cnn_add_dense(&model, 47);
       cnn_add_softmax(&model);
       if (cnn_model_build(&model, 256) != CNN_OK)           // largest batch
           puts(model.error.message);
       cnn_dataset_load_csv(&train, "emnist-balanced-train.csv", NULL);
       cnn_optimizer_init(&adam, &model, NULL);           // NULL: Adam, lr 1e-3
       cnn_model_fit(&model, &adam, &train, NULL);        // NULL: 10 epochs
       cnn_model_save(&model, "model.cnn");
       cnn_optimizer_free(&adam); cnn_dataset_free(&train); cnn_model_free(&model);

   CONVENTIONS
     - Every function that can fail returns a cnn_result (CNN_OK is 0). The
       object it works on (model, dataset, label map) keeps a cnn_error with a
       sentence saying what went wrong, and for files the line, field or byte.
       cnn_result_string() turns a code into a sentence.
     - The library never exits or aborts, and prints only through the
       optional progress callbacks (cnn_progress_batch / _epoch), to the
       stream you give them, when you pass them to cnn_model_fit. It keeps
       no global state: two models on two threads never interfere. All
       randomness comes from the cnn_rng inside each model, seeded by you.
     - Descriptor structs (cnn_layer_desc, cnn_optimizer_desc, cnn_data_desc,
       cnn_fit_desc) mean "default" wherever a field is zero; pass NULL for all
       defaults.
     - Layout is NCHW: a batch of N images, each C channels of H rows of W.

   OPTIONS (define before including the implementation)
     CNN_STATIC               make every function static to this file
     CNN_MALLOC(size) / CNN_FREE(ptr)   your allocator (define both or neither)
     CNN_ASSERT(x)            your assert; it only guards the library's own
                              invariants, never your input
     CNN_MAX_LAYERS           most layers in one model (default 64)
     CNN_NO_FAST              the plain library alone: every layer as the
                              plain loops of its formula, without the FAST
                              section's multiply kernel, vector code and
                              threads (slower, the same answers to rounding)
     CNN_NO_CLONES            compile the FAST section's hot loops once
                              only; by default GCC
                              and clang on x86-64 Linux add an AVX2 copy that
                              the loader picks when the CPU has it

   OPTIONAL: IMAGES
     Define CNN_IMAGES (everywhere you include cnn.h) for image files as
     input: cnn_image_load (PNG, JPEG, BMP, GIF, ...), resizing, a character
     prepared like an EMNIST sample (cnn_image_to_character), class-per-folder
     datasets with a seeded split (cnn_image_folders_load), on-the-fly
     augmentation for cnn_model_fit, PNG output, and pictures of training
     (learning curves, a confusion heat map, the misclassified samples). The
     implementation decodes
     with Sean Barrett's stb_image.h, and writes PNGs with stb_image_write.h
     if it is there too; cnn.h does not contain them. Include them before the
     implementation, and define their own implementation macros in one file:

       #define STB_IMAGE_IMPLEMENTATION
       #include <stb_image.h>
       #define STB_IMAGE_WRITE_IMPLEMENTATION     // optional: cnn_image_save_png
       #include <stb_image_write.h>
       #define CNN_IMAGES
       #define CNN_IMPLEMENTATION
       #include "cnn.h"

     Debian and Ubuntu: apt-get install libstb-dev; compile with
     -I/usr/include/stb. Folders are listed with POSIX opendir
     (_findfirst on Windows).

     Untrusted files: stb_image v2.27 (Debian 12's) decodes some damaged
     files unsafely. cnn.h refuses the kinds found so far (by fuzzing)
     before stb_image sees them: JPEG Huffman tables that are over-full or
     never defined, JPEG quantisation tables never defined, 16-bit PNM
     files. A newer stb_image is still the safer choice for images from
     strangers.

   THREADS
     Compile with -fopenmp and a model uses OpenMP threads for its layers.
     Every sum is still added in one fixed order, so the results are
     bit-identical for any number of threads, and to a build without OpenMP.
     The threads belong to the FAST section: under CNN_NO_FAST a model runs
     on one thread.

   INSTRUCTION SETS
     The default build (-O2, no -march) runs the widest matrix-multiply
     kernel the CPU has, chosen at cnn_model_build on x86-64 with GCC 8+ or
     clang 14+: AVX-512 with fused multiply-add, else AVX2 with fused
     multiply-add, else SSE2; cnn_model_instruction_set() says which. Set
     the environment variable CNN_MAX_ISA to sse2, avx2 or avx512 to cap
     the choice (the tests run each kernel so). A fused multiply-add rounds
     once where a multiply and an add round twice: results are still
     bit-identical for any number of threads on one machine, and the avx2
     and avx512 kernels give the same bits, but they differ from the sse2
     kernel's and from CNN_NO_FAST's in the last bits (tests hold them to
     1e-5 of the largest value).
*/
#ifndef CNN_H
#define CNN_H

#define CNN_VERSION_MAJOR 0
#define CNN_VERSION_MINOR 1
#define CNN_VERSION_PATCH 0

#include <stddef.h>
#include <stdint.h>
#include <stdio.h> /* FILE, for the progress reporter */

#if defined(CNN_STATIC) && (defined(__GNUC__) || defined(__clang__))
#define CNNDEF static __attribute__((unused)) /* no warning for what you don't call */
#elif defined(CNN_STATIC)
#define CNNDEF static
#else
#define CNNDEF extern
#endif

#ifndef CNN_MAX_LAYERS
#define CNN_MAX_LAYERS 64
#endif
#define CNN_MAX_CLASSES 1024

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- results */

typedef enum cnn_result {
    CNN_OK = 0,
    CNN_ERROR_INVALID_ARGUMENT = -1, /* NULL pointer, size <= 0, batch too big, a setting out of range */
    CNN_ERROR_OUT_OF_MEMORY = -2,
    CNN_ERROR_BAD_SHAPE = -3,        /* a layer does not fit its input */
    CNN_ERROR_IO = -4,               /* a file cannot be opened, read or written */
    CNN_ERROR_MALFORMED_DATA = -5,   /* a CSV, IDX or mapping file is wrong */
    CNN_ERROR_BAD_MODEL_FILE = -6,   /* not a cnn.h model, or damaged */
    CNN_ERROR_NOT_FINITE = -7,       /* the loss, a gradient or an updated weight became NaN or infinite */
    CNN_ERROR_STATE = -8             /* called in the wrong order (e.g. not built) */
} cnn_result;

/* A sentence for a result code, e.g. "out of memory". Never NULL. */
CNNDEF const char *cnn_result_string(cnn_result result);

/* What went wrong, in detail. line and field count from 1; 0 means "not
   about a line". byte is an offset into a file, -1 when not about a byte. */
typedef struct cnn_error {
    cnn_result code;
    long line;
    long field;
    long long byte;
    char message[256];
} cnn_error;

/* ---------------------------------------------------------------- random */

/* PCG32 (O'Neill, 2014): small, fast and statistically good. */
typedef struct cnn_rng {
    uint64_t state;
    uint64_t increment;
} cnn_rng;

/* A NULL rng is ignored: seeding does nothing, the others return 0. */
CNNDEF void cnn_rng_seed(cnn_rng *rng, uint64_t seed);
CNNDEF uint32_t cnn_rng_next(cnn_rng *rng);                /* uniform 32 bits */
CNNDEF float cnn_rng_uniform(cnn_rng *rng);                /* uniform in [0, 1) */
CNNDEF float cnn_rng_normal(cnn_rng *rng);                 /* mean 0, sd 1 */
CNNDEF uint32_t cnn_rng_below(cnn_rng *rng, uint32_t n);   /* uniform in [0, n) */

/* ---------------------------------------------------------------- tensors */

/* A float32 tensor in NCHW layout: element (n, c, h, w) lives at
   data[((n * c_count + c) * h_count + h) * w_count + w]. A tensor either owns
   its data (cnn_tensor_alloc) or views memory owned by a model. */
typedef struct cnn_tensor {
    int n, c, h, w;
    float *data;
} cnn_tensor;

/* The shape of one sample: channels, height, width. Flat vectors are (C, 1, 1). */
typedef struct cnn_shape {
    int c, h, w;
} cnn_shape;

/* Allocates a zeroed tensor; every dimension must be >= 1. */
CNNDEF cnn_result cnn_tensor_alloc(cnn_tensor *tensor, int n, int c, int h, int w);
CNNDEF void cnn_tensor_free(cnn_tensor *tensor);
CNNDEF size_t cnn_tensor_count(const cnn_tensor *tensor);  /* n * c * h * w */
/* The address of element (n, c, h, w); NULL when it is outside the tensor. */
CNNDEF float *cnn_tensor_at(const cnn_tensor *tensor, int n, int c, int h, int w);
CNNDEF size_t cnn_shape_count(cnn_shape shape);            /* c * h * w; 0 when any is <= 0 */

/* ---------------------------------------------------------------- layers */

typedef enum cnn_layer_type {
    CNN_LAYER_NONE = 0,
    CNN_LAYER_CONV2D,
    CNN_LAYER_DENSE,
    CNN_LAYER_RELU,
    CNN_LAYER_LEAKY_RELU,
    CNN_LAYER_SIGMOID,
    CNN_LAYER_TANH,
    CNN_LAYER_MAX_POOL,
    CNN_LAYER_AVG_POOL,
    CNN_LAYER_FLATTEN,
    CNN_LAYER_DROPOUT,
    CNN_LAYER_SOFTMAX,
    CNN_LAYER_BATCH_NORM,       /* cnn_add_batch_norm */
    CNN_LAYER_GLOBAL_AVG_POOL,  /* cnn_add_global_avg_pool */
    CNN_LAYER_RESIDUAL_BEGIN,   /* cnn_add_residual_begin / _end: a residual block */
    CNN_LAYER_RESIDUAL_END,
    CNN_LAYER_TYPE_COUNT
} cnn_layer_type;

typedef enum cnn_init {
    CNN_INIT_DEFAULT = 0,      /* Glorot uniform, as in Keras */
    CNN_INIT_GLOROT_UNIFORM,   /* U(-a, a), a = sqrt(6 / (fan_in + fan_out)) */
    CNN_INIT_HE_NORMAL,        /* N(0, sd^2), sd = sqrt(2 / fan_in): for ReLU nets */
    CNN_INIT_HE_UNIFORM        /* U(-a, a), a = sqrt(6 / fan_in) */
} cnn_init;

/* Describes one layer. Zero means default in every field. */
typedef struct cnn_layer_desc {
    cnn_layer_type type;
    int units;      /* conv2d: output channels; dense: outputs */
    int kernel;     /* conv2d: kernel side; pools: window side (default 2) */
    int stride;     /* conv2d: default 1; pools: default = kernel */
    int padding;    /* conv2d, pools: zeros added on every side (default 0); a
                       pool's padding never wins a max, and counts in an
                       average (PyTorch's count_include_pad); at most kernel / 2 */
    float alpha;    /* leaky ReLU: slope below zero (default 0.3, as Keras) */
    float rate;     /* dropout: probability of dropping a unit (default 0.5) */
    cnn_init init;  /* conv2d, dense, a residual end's projection: weight initialiser */
    int ceil_mode;  /* pools: 1 keeps a last window that hangs over the (padded)
                       edge, as PyTorch's ceil_mode=True; 0 drops it */
} cnn_layer_desc;

/* A layer inside a model: its settings, shapes and views of its parameters.
   Read it freely; change it only through the API. */
typedef struct cnn_layer {
    cnn_layer_desc desc;       /* with defaults filled in */
    cnn_shape in, out;         /* per-sample shapes */
    size_t param_offset;       /* into model.params: weights, then biases */
    size_t weight_count, bias_count;
    size_t state_count;        /* floats of model.state: batch norm's 2 * C */
    float *weight, *bias;                 /* conv2d (OC, C, K, K); dense (IN, OUT); batch norm
                                             scale and shift (C); a residual end's
                                             projection (OC, C, 1, 1) and (OC) */
    float *weight_grad, *bias_grad;       /* same shapes, in model.grads */
    int *argmax;               /* max pool: (N, C, OH, OW) input index of each max */
    unsigned char *mask;       /* dropout: (N, size) 1 where kept, 0 where dropped */
    float *running_mean, *running_var;    /* batch norm: (C) each, in model.state */
    uint64_t batches_tracked;             /* batch norm: training steps taken (PyTorch's
                                             num_batches_tracked) */
    float *batch_mean, *batch_inv_std;    /* batch norm: (C) each, of the last forward pass */
    int block_begin;           /* residual end: the index of its begin layer */
    float *skip_grad;          /* residual end: (N, begin's input shape) the gradient the
                                  skip path carries back to the block's input */
} cnn_layer;

/* ---------------------------------------------------------------- model */

typedef enum cnn_mode {
    CNN_MODE_EVAL = 0,   /* dropout is the identity */
    CNN_MODE_TRAIN = 1   /* dropout drops */
} cnn_mode;

/* A sequential model. Caller-owned: declare one, cnn_model_init it, add
   layers, cnn_model_build it, use it, cnn_model_free it. */
typedef struct cnn_model {
    cnn_shape input;
    int layer_count;
    cnn_layer layers[CNN_MAX_LAYERS];
    size_t param_count;
    float *params;      /* (param_count) every layer's weights and biases */
    size_t state_count;
    float *state;       /* (state_count) what layers learn without gradients: batch
                           norm's running means and variances. It follows
                           params in memory, so params[0 .. param_count +
                           state_count) is everything a trained model knows */
    float *grads;       /* (param_count) d loss / d params, same layout */
    int max_batch;      /* activations are sized for this many samples */
    int batch;          /* samples in the last forward pass (0: none yet) */
    cnn_mode mode;      /* mode of the last forward pass */
    cnn_tensor activations[CNN_MAX_LAYERS + 1];       /* [0] input, [i+1] layer i output, but
                                                         shared: see "Memory" at cnn_model_build */
    cnn_tensor activation_grads[CNN_MAX_LAYERS + 1];  /* d loss / d activations[i], sharing memory
                                                         too: after a backward pass only [0] is left */
    int keep_outputs;   /* 1: no sharing (cnn_model_keep_outputs) */
    int threads;        /* worker threads (OpenMP), fixed at build; 1 without
                           OpenMP or under CNN_NO_FAST. Training steps may
                           use fewer (see cnn_model_build) */
    struct cnn__fast *fast;  /* private: the FAST section's working memory (NULL
                                under CNN_NO_FAST); the same layout either way */
    int *labels;        /* (max_batch) labels of the batch being trained */
    void *memory;       /* the blocks above live in these allocations: floats; */
    void *int_memory;   /* ints, then bytes */
    cnn_rng rng;        /* weight init, dropout masks, shuffling */
    cnn_error error;    /* why the last call on this model failed */
    cnn_result definition_error;  /* the first failure of init or add, kept */
    int class_name_count;         /* 0, or the class count: see cnn_model_set_class_names */
    char **class_names;           /* (class_name_count) their names, NUL-terminated */
} cnn_model;

/* Starts an empty model for inputs of shape (channels, height, width). */
CNNDEF cnn_result cnn_model_init(cnn_model *model, int channels, int height, int width, uint64_t seed);

/* Adds a layer after the last one, inferring its input shape. A layer that
   cannot fit (a kernel larger than the padded input, a dense layer on a
   non-flat input, a conv on a flat one, a residual end without a begin...) is
   refused with CNN_ERROR_BAD_SHAPE, and a setting out of range (0 filters,
   dropout 1.5) with CNN_ERROR_INVALID_ARGUMENT, each with a message.
   Layers are added before cnn_model_build. Such errors are sticky: after one, every later add and
   the build fail with the first error and keep its message, so a model can
   be described in a row of calls and checked once, at the build. */
CNNDEF cnn_result cnn_model_add(cnn_model *model, const cnn_layer_desc *desc);
CNNDEF cnn_result cnn_add_conv2d(cnn_model *model, int filters, int kernel, int stride, int padding);
CNNDEF cnn_result cnn_add_dense(cnn_model *model, int units);
CNNDEF cnn_result cnn_add_relu(cnn_model *model);
CNNDEF cnn_result cnn_add_leaky_relu(cnn_model *model, float alpha);
CNNDEF cnn_result cnn_add_sigmoid(cnn_model *model);
CNNDEF cnn_result cnn_add_tanh(cnn_model *model);
CNNDEF cnn_result cnn_add_max_pool(cnn_model *model, int size, int stride);
CNNDEF cnn_result cnn_add_avg_pool(cnn_model *model, int size, int stride);
CNNDEF cnn_result cnn_add_flatten(cnn_model *model);
CNNDEF cnn_result cnn_add_dropout(cnn_model *model, float rate);
CNNDEF cnn_result cnn_add_softmax(cnn_model *model);

/* Padded pools and ceil mode take the descriptor, as PyTorch's
   MaxPool2d(kernel, stride, padding, ceil_mode) - the usual ResNet stem's
   pool is 3x3, stride 2, padding 1:
       cnn_layer_desc pool = {0};
       pool.type = CNN_LAYER_MAX_POOL; pool.kernel = 3; pool.stride = 2; pool.padding = 1;
       cnn_model_add(model, &pool);
   OH = (H + 2P - K) / S + 1, rounded down (up with ceil_mode; a window
   that would start in the right or bottom padding is dropped). */

/* Batch normalization (Ioffe and Szegedy, 2015), per channel of an image
   or per feature of a flat vector:
       y = gamma * (x - mean) / sqrt(var + 1e-5) + beta
   In training, mean and var are the batch's own (over N, H and W), and
   the running estimates move 10% of the way toward them (PyTorch's
   momentum 0.1, with the unbiased variance); in evaluation the running
   estimates are used. gamma (weight, starts at 1) and beta (bias, 0) are
   parameters; the running estimates are model.state, saved with the model.
   A training batch must give each channel more than one value (a batch of
   one after a dense layer does not): cnn_model_forward refuses it, and
   cnn_model_fit leaves out a last batch that would. Put it after a conv or
   dense layer, before the activation. */
CNNDEF cnn_result cnn_add_batch_norm(cnn_model *model);

/* (C, H, W) -> (C, 1, 1): each channel's mean over the image, a flat
   vector a dense layer can take directly (PyTorch's AdaptiveAvgPool2d(1)
   and flatten; Keras's GlobalAveragePooling2D). */
CNNDEF cnn_result cnn_add_global_avg_pool(cnn_model *model);

/* A residual block (He et al., 2015): the layers added between begin and
   end are the block's body F, and end adds the block's input x back:
       y = F(x) + x                    when F keeps the shape
       y = F(x) + conv1x1_S(x)         when it does not: a 1x1 projection
                                       with the stride S that maps x's height
                                       and width to F's, and F's channels
   The projection is made by end (its weights are end's), initialised by
   init (CNN_INIT_DEFAULT: Glorot, as other layers). A shape no 1x1
   convolution can map (x 7x7, F(x) 5x5) is refused. Blocks may nest; the
   usual activation after the sum is a layer after end:
       cnn_add_residual_begin(model);
         cnn_add_conv2d(model, 64, 3, 2, 1); cnn_add_batch_norm(model); cnn_add_relu(model);
         cnn_add_conv2d(model, 64, 3, 1, 1); cnn_add_batch_norm(model);
       cnn_add_residual_end(model, CNN_INIT_HE_NORMAL);
       cnn_add_relu(model);
   Backward, the sum's gradient goes down both paths and adds up at x. */
CNNDEF cnn_result cnn_add_residual_begin(cnn_model *model);
CNNDEF cnn_result cnn_add_residual_end(cnn_model *model, cnn_init init);

/* Adds LeNet-5 (LeCun et al., 1998) as it is trained today, with ReLU and
   max pooling: conv2d 6 5x5 padding 2, relu, max pool 2; conv2d 16 5x5,
   relu, max pool 2; flatten; dense 120, relu; dense 84, relu; dense
   classes; softmax. For inputs of (C, 28, 28): 64,851 parameters with one
   channel and 47 classes. Errors are those of the adds (sticky, as above). */
CNNDEF cnn_result cnn_add_lenet5(cnn_model *model, int classes);

/* Allocates parameters, gradients and activations for batches of up to
   max_batch samples, and initialises the weights from the model's RNG.
   Built with OpenMP (-fopenmp) and without CNN_NO_FAST, the model uses
   omp_get_max_threads() threads as at this call; results are bit-identical
   for any number of threads. Training steps time themselves and run on one
   thread when that proves faster (a core taken by another program, a model
   too small to share): see "the thread tuner" in the FAST section.
   Memory: layers share buffers where the backward pass allows it (see
   "memory" at cnn_model_build's code), which about halves a CNN's.
   - ReLU, LeakyReLU with alpha > 0, sigmoid, tanh, dropout and flatten run
     in place, over their input, unless the layer before them is one of the
     activations or softmax, or they are the first layer (the input is
     kept). So after a forward pass activations[i + 1]
     holds layer i's output unless layer i + 1 ran in place over it: after
     conv2d then ReLU, both hold the ReLU's output.
   - A backward pass writes gradients over activations it no longer needs:
     after one, only the input and the last two activations (logits and
     probabilities) are left as the forward pass made them. So each
     backward pass needs a forward pass of its own, and activation_grads[0]
     lasts until the next forward pass.
   Call cnn_model_keep_outputs(model, 1) before the build to keep every
   layer's output in its own buffer, as kernels.c does to show a conv's
   output before its ReLU. Results are the same bits either way. */
CNNDEF cnn_result cnn_model_keep_outputs(cnn_model *model, int keep);
CNNDEF cnn_result cnn_model_build(cnn_model *model, int max_batch);
CNNDEF void cnn_model_free(cnn_model *model);

/* The instruction set of the built model's multiply kernel (see INSTRUCTION
   SETS above): "avx512", "avx2", "sse2" (or "generic" off x86-64), and
   "plain" under CNN_NO_FAST or before cnn_model_build. */
CNNDEF const char *cnn_model_instruction_set(const cnn_model *model);

/* Writes a table (layer, output shape, parameters, total) into buffer, like
   snprintf: returns the length the whole summary needs. Works before build. */
CNNDEF size_t cnn_model_summary(const cnn_model *model, char *buffer, size_t size);
CNNDEF cnn_shape cnn_model_output_shape(const cnn_model *model);
CNNDEF const char *cnn_layer_type_name(cnn_layer_type type);

/* Forward pass of a batch: input is (batch, C, H, W) as given at init. The
   result is in model->activations[model->layer_count]. */
CNNDEF cnn_result cnn_model_forward(cnn_model *model, const float *input, int batch, cnn_mode mode);
CNNDEF const float *cnn_model_output(const cnn_model *model);

/* Cross-entropy of the last forward pass against labels: mean loss over the
   batch and the number of samples whose most probable class is the label.
   The model must end with softmax. Either output pointer may be NULL. */
CNNDEF cnn_result cnn_model_loss(cnn_model *model, const int *labels, float *mean_loss, int *correct);

/* Sets every parameter gradient to zero. Backward passes add to them. */
CNNDEF void cnn_model_zero_grad(cnn_model *model);

/* Backward pass of the mean cross-entropy of the last forward pass. Uses the
   fused softmax + cross-entropy gradient (p - y) / N. Adds into model->grads;
   d loss / d input lands in model->activation_grads[0]. */
CNNDEF cnn_result cnn_model_backward(cnn_model *model, const int *labels);

/* Backward pass from any gradient of the output, (batch, output shape): for
   losses of your own and for gradient checks. */
CNNDEF cnn_result cnn_model_backward_from(cnn_model *model, const float *output_grad);

/* Most probable class of each of count samples (any count; batched inside).
   probabilities may be NULL, else it receives (count, classes). */
CNNDEF cnn_result cnn_model_predict(cnn_model *model, const float *input, int count, int *classes, float *probabilities);

/* Names for the output classes ("A", "Dress", a folder's name), carried by
   the model and saved in its file, so that whoever loads it can name its
   answers. The model must have its layers; count must be its class count
   (the size of its output, at most CNN_MAX_CLASSES), or 0 to remove the
   names. Each name is 1 to 255 bytes without control characters (UTF-8 is
   kept as it is). The names are copied; cnn_model_free frees them, and
   adding a layer afterwards removes them (the output changes). */
CNNDEF cnn_result cnn_model_set_class_names(cnn_model *model, const char *const *names, int count);
/* label's name, or NULL when the model carries no names or label is not a class. */
CNNDEF const char *cnn_model_class_name(const cnn_model *model, int label);

/* ---------------------------------------------------------------- optimisers */

typedef enum cnn_optimizer_type {
    CNN_OPTIMIZER_ADAM = 0,
    CNN_OPTIMIZER_SGD = 1
} cnn_optimizer_type;

typedef struct cnn_optimizer_desc {
    cnn_optimizer_type type;  /* default Adam */
    float learning_rate;      /* default 1e-3 for Adam, 1e-2 for SGD */
    float momentum;           /* SGD: 0 means plain SGD */
    float beta1;              /* Adam: default 0.9 */
    float beta2;              /* Adam: default 0.999 */
    float epsilon;            /* Adam: default 1e-7, as Keras */
} cnn_optimizer_desc;

/* Optimiser state mirrors the parameter block: SGD keeps a velocity per
   parameter, Adam a first and second moment. */
typedef struct cnn_optimizer {
    cnn_optimizer_desc desc;  /* with defaults filled in */
    size_t param_count;
    float *first_moment;      /* (param_count) Adam m, SGD velocity */
    float *second_moment;     /* (param_count) Adam v; NULL for SGD */
    long step;                /* updates done, for Adam's bias correction */
} cnn_optimizer;

CNNDEF cnn_result cnn_optimizer_init(cnn_optimizer *optimizer, cnn_model *model, const cnn_optimizer_desc *desc);
/* Updates model->params from model->grads. A step that would make any
   parameter or optimiser state NaN or infinite (a non-finite gradient, or an
   update that overflows) is refused with CNN_ERROR_NOT_FINITE, naming the
   parameter and its layer, and changes nothing. */
CNNDEF cnn_result cnn_optimizer_step(cnn_optimizer *optimizer, cnn_model *model);
CNNDEF void cnn_optimizer_free(cnn_optimizer *optimizer);

/* ---------------------------------------------------------------- data */

/* Images with integer labels. images is (count, C, H, W), pixels in [0, 1]. */
typedef struct cnn_dataset {
    int count;
    int num_classes;     /* 1 + the largest label, or the number you asked for */
    cnn_tensor images;
    int *labels;         /* (count) */
    cnn_error error;
} cnn_dataset;

typedef enum cnn_orientation {
    CNN_ORIENTATION_DEFAULT = 0,  /* CSV: transpose (EMNIST); IDX: as stored (MNIST) */
    CNN_ORIENTATION_AS_STORED,
    CNN_ORIENTATION_TRANSPOSE     /* EMNIST stores images transposed */
} cnn_orientation;

typedef struct cnn_data_desc {
    int width, height;            /* CSV: image size (default 28 x 28) */
    int num_classes;              /* labels must be below this (default: any >= 0) */
    int max_rows;                 /* read at most this many samples (default all) */
    cnn_orientation orientation;
} cnn_data_desc;

/* Kaggle-style CSV: one image a line, the label then width * height pixel
   values 0..255. A header line, CRLF line ends and blank lines are tolerated;
   anything else wrong is refused with its line and field. */
CNNDEF cnn_result cnn_dataset_load_csv(cnn_dataset *dataset, const char *path, const cnn_data_desc *desc);

/* The same, from size bytes in memory (a CSV file read or received whole).
   Messages name the input "<memory>" where they would name the file. */
CNNDEF cnn_result cnn_dataset_load_csv_memory(cnn_dataset *dataset, const void *bytes, size_t size, const cnn_data_desc *desc);

/* Uncompressed IDX files (MNIST, Fashion-MNIST, NIST's EMNIST release):
   unsigned-byte images (N, H, W) and labels (N). */
CNNDEF cnn_result cnn_dataset_load_idx(cnn_dataset *dataset, const char *images_path, const char *labels_path, const cnn_data_desc *desc);

/* The same, from the two files' bytes in memory; messages name them
   "<images in memory>" and "<labels in memory>". */
CNNDEF cnn_result cnn_dataset_load_idx_memory(cnn_dataset *dataset, const void *image_bytes, size_t image_size,
                                              const void *label_bytes, size_t label_size, const cnn_data_desc *desc);
CNNDEF void cnn_dataset_free(cnn_dataset *dataset);

/* Label -> character code, from lines "label code" (EMNIST's mapping files). */
typedef struct cnn_label_map {
    int count;
    int codes[CNN_MAX_CLASSES];
    cnn_error error;
} cnn_label_map;

CNNDEF cnn_result cnn_label_map_load(cnn_label_map *map, const char *path);
/* The same, from size bytes in memory; messages name the input "<memory>". */
CNNDEF cnn_result cnn_label_map_load_memory(cnn_label_map *map, const void *bytes, size_t size);
/* The character for a label, or '?' when the label is not in the map. */
CNNDEF int cnn_label_map_char(const cnn_label_map *map, int label);
/* cnn_model_set_class_names with each label's character (in UTF-8) as its
   name: a mapping file's names put into a model. The map must hold
   exactly the model's classes. */
CNNDEF cnn_result cnn_model_set_class_names_from_map(cnn_model *model, const cnn_label_map *map);

/* ---------------------------------------------------------------- training */

typedef struct cnn_epoch_stats {
    int epoch;            /* counts from 1 */
    int epochs;
    float loss;           /* mean training loss over the epoch */
    float accuracy;       /* training accuracy over the epoch, in [0, 1] */
    /* Set when cnn_fit_desc.validation is given (else 0): */
    int validated;                /* 1: the validation fields below are set */
    float validation_loss;        /* mean loss on the validation set, after the epoch */
    float validation_accuracy;    /* in [0, 1] */
    int best_epoch;               /* epoch with the lowest validation loss so far */
    int stopping;                 /* 1: early stopping ends training after this epoch */
} cnn_epoch_stats;

/* Called after each epoch; return non-zero to stop training. */
typedef int (*cnn_epoch_callback)(cnn_model *model, const cnn_epoch_stats *stats, void *user);

/* Progress inside an epoch, after each training step. */
typedef struct cnn_batch_stats {
    int epoch, epochs;    /* epoch counts from 1 */
    int step, steps;      /* training steps (batches) in this epoch; step counts from 1 */
    int samples, total;   /* samples trained on so far in this epoch, of total */
    float loss;           /* mean training loss over the epoch so far */
    float accuracy;       /* training accuracy over the epoch so far, in [0, 1] */
} cnn_batch_stats;

/* Called after each training step (e.g. to draw a progress bar); return
   non-zero to stop training. The library never prints: you do. */
typedef int (*cnn_batch_callback)(cnn_model *model, const cnn_batch_stats *stats, void *user);

/* Called by cnn_model_fit with each training batch once it is in the
   model's input, before its step: images (batch, C, H, W) and labels (batch)
   may be changed in place - data augmentation (see cnn_augment_batch under
   CNN_IMAGES). A result other than CNN_OK stops training with that result.
   Never called by cnn_model_evaluate, _predict or on validation data. */
typedef cnn_result (*cnn_augment_callback)(cnn_model *model, float *images, int *labels, int batch, void *user);

/* Where training stands between two epochs. Given one (cnn_fit_desc.state),
   cnn_model_fit starts after state->epoch and updates the state after each
   epoch, before on_epoch: a checkpoint saved there (cnn_checkpoint_save)
   holds, with the model and the optimiser, all that resuming needs to go
   on exactly as if training had never stopped - the same weights, bit for
   bit. Zero-initialise it; free it with cnn_fit_state_free. */
typedef struct cnn_fit_state {
    int epoch;                    /* epochs done (0: none) */
    int best_epoch;               /* early stopping: the epoch of the lowest
                                     validation loss so far (0: none yet) */
    float best_loss;              /* that loss */
    size_t param_count;           /* model.param_count + model.state_count */
    float *best_params;           /* (param_count) that epoch's parameters and
                                     state (batch norm's running statistics),
                                     kept while patience > 0 (allocated by
                                     cnn_model_fit, freed by cnn_fit_state_free) */
    cnn_rng *augment_rng;         /* optional, yours: one more generator saved and
                                     restored with the state (the augmenter's) */
    struct cnn_history *history;  /* optional, yours: saved and restored too */
} cnn_fit_state;

CNNDEF void cnn_fit_state_free(cnn_fit_state *state);  /* best_params; the pointers you set are kept */

typedef struct cnn_fit_desc {
    int epochs;                    /* default 10 */
    int batch_size;                /* default model->max_batch */
    int no_shuffle;                /* default: shuffle every epoch with the model's RNG */
    cnn_epoch_callback on_epoch;   /* optional */
    void *user;                    /* passed to on_epoch and on_batch */
    cnn_batch_callback on_batch;   /* optional: progress after every step */
    const cnn_dataset *validation; /* optional: evaluated after every epoch, never
                                      trained on (see cnn_dataset_split) */
    int patience;                  /* early stopping, needs validation: stop when
                                      the validation loss has not improved for
                                      this many epochs, and restore the weights
                                      of the best epoch. Default 0: off */
    cnn_augment_callback augment;  /* optional: changes each training batch in
                                      place before its step (default: none) */
    float lr_decay;                /* step decay: after each epoch from
                                      lr_decay_after on, the optimiser's
                                      learning rate is multiplied by this, in
                                      (0, 1]. Default 0: a constant rate */
    int lr_decay_after;            /* epochs at the starting rate (default 0) */
    void *augment_user;            /* passed to augment */
    cnn_fit_state *state;          /* optional: resume from it, and keep it up
                                      to date for checkpoints (see above);
                                      epochs is then the total, those already
                                      done included */
} cnn_fit_desc;

/* One step: forward, loss, zero grads, backward, optimiser step. A loss, a
   gradient or an updated weight that is not finite stops the step before
   the update with CNN_ERROR_NOT_FINITE: the weights and the optimiser keep
   their last good values (cnn_model_fit then stops too, its message naming
   the epoch and step). */
CNNDEF cnn_result cnn_model_train_step(cnn_model *model, cnn_optimizer *optimizer, const float *input, const int *labels, int batch, float *mean_loss, int *correct);

/* Trains for desc->epochs passes over the dataset. With desc->validation,
   each epoch ends with an evaluation on it, reported in the epoch stats (it
   uses no randomness, so training goes exactly as without it). With
   desc->patience as well, training stops after that many epochs without a
   lower validation loss, and whenever it ends - early or not - the model is
   left with the parameters of its best epoch (the optimiser's state is not
   rewound). With desc->lr_decay, optimizer->desc.learning_rate is lowered
   in place after each epoch, before on_epoch sees it (see cnn_fit_desc).
   Each epoch shuffles the samples afresh from the model's generator. */
CNNDEF cnn_result cnn_model_fit(cnn_model *model, cnn_optimizer *optimizer, const cnn_dataset *dataset, const cnn_fit_desc *desc);

/* Mean cross-entropy and accuracy in [0, 1] over a dataset. */
CNNDEF cnn_result cnn_model_evaluate(cnn_model *model, const cnn_dataset *dataset, float *mean_loss, float *accuracy);

/* ---------------------------------------------------------------- validation and metrics */

/* Holds out part of a dataset for validation: a fraction of the samples
   (default 0.1 when fraction is 0; rounded, and at least one sample on each
   side), picked by a shuffle seeded with seed, so the same seed gives the same
   split. train and validation receive copies, in the source's order, to be
   freed with cnn_dataset_free; source is not changed. On failure both are left
   empty and train->error says why. */
CNNDEF cnn_result cnn_dataset_split(const cnn_dataset *source, float fraction, uint64_t seed, cnn_dataset *train, cnn_dataset *validation);

/* A confusion matrix is (classes, classes) ints: matrix[t * classes + p]
   counts the samples of true class t predicted as class p. Rows are true
   classes, columns predictions, the diagonal the correct ones. */

/* Fills matrix from count true labels and predictions (both below classes),
   zeroing it first. */
CNNDEF cnn_result cnn_confusion_count(const int *labels, const int *predicted, int count, int classes, int *matrix);

/* Predicts every sample of dataset and fills matrix, zeroing it first;
   classes is the model's output size, cnn_model_output_shape(model).c. */
CNNDEF cnn_result cnn_model_confusion(cnn_model *model, const cnn_dataset *dataset, int *matrix);

typedef struct cnn_class_metrics {
    int support;      /* samples of the class: its row's sum */
    int predicted;    /* samples predicted as the class: its column's sum */
    int correct;      /* the diagonal entry */
    float precision;  /* correct / predicted; 0 when nothing was predicted as it */
    float recall;     /* correct / support; 0 when the class has no samples */
    float f1;         /* 2 precision recall / (precision + recall); 0 when both are 0 */
} cnn_class_metrics;

/* Per-class precision, recall and F1 from a confusion matrix: fills
   metrics[0 .. classes - 1]. */
CNNDEF cnn_result cnn_confusion_metrics(const int *matrix, int classes, cnn_class_metrics *metrics);

/* The fraction of samples on the diagonal, in [0, 1]; 0 for an empty matrix. */
CNNDEF float cnn_confusion_accuracy(const int *matrix, int classes);

/* ---------------------------------------------------------------- progress and history

   cnn_model_fit prints nothing. A cnn_progress is a pair of ready-made
   callbacks that print for you, to the stream you give them, and only when
   you pass them in the cnn_fit_desc - the only printing cnn.h ever does:

       cnn_history history = {0};        // every epoch's numbers, for a CSV
       cnn_progress progress;
       cnn_progress_desc pd = {0};
       pd.history = &history;
       cnn_progress_init(&progress, stdout, &pd);   // just before the fit
       fit.on_batch = cnn_progress_batch;
       fit.on_epoch = cnn_progress_epoch;
       fit.user = &progress;
       cnn_model_fit(&model, &adam, &train, &fit);
       cnn_history_save_csv(&history, "history.csv");
       cnn_history_free(&history);

   On a terminal (POSIX isatty) it redraws one bar during each epoch, at
   most ten times a second, with samples/s and the time left:
     epoch 3/10 [=======>          ] 2410 samples/s ETA 0:13 loss 0.461 acc 84.2%
   Anywhere else (a file, a pipe, a log), and on systems without isatty, it
   prints only one plain line per epoch:
     epoch  3/10  loss 0.4612  acc  84.20%  val loss 0.4401  val acc  85.01%  12.3 s
   To do more in your own callbacks, call these two from them. */

typedef struct cnn_epoch_record {
    int epoch;                  /* counts from 1 */
    float loss, accuracy;       /* training, over the epoch; accuracy in [0, 1] */
    int validated;              /* 1: the two validation fields are set */
    float validation_loss, validation_accuracy;
    double seconds;             /* wall-clock time of the epoch, validation included */
} cnn_epoch_record;

/* Per-epoch numbers, in order. Zero-initialise it (cnn_history h = {0}) and
   free it with cnn_history_free; it grows as epochs are added. */
typedef struct cnn_history {
    int count;                  /* epochs recorded */
    int capacity;               /* room in epochs before it must grow */
    cnn_epoch_record *epochs;   /* (count) */
    cnn_error error;            /* why the last call on it failed */
} cnn_history;

/* Appends a copy of record. */
CNNDEF cnn_result cnn_history_add(cnn_history *history, const cnn_epoch_record *record);

/* Writes the history as CSV, a header line then one line per epoch:
     epoch,train_loss,train_accuracy,validation_loss,validation_accuracy,seconds
   (validation fields left empty for epochs without validation). Written
   like cnn_model_save: to PATH.tmp, flushed to the disk, then renamed, so
   PATH is never half-written. */
CNNDEF cnn_result cnn_history_save_csv(cnn_history *history, const char *path);
CNNDEF void cnn_history_free(cnn_history *history);

typedef enum cnn_progress_style {
    CNN_PROGRESS_AUTO = 0,   /* a bar when the stream is a terminal, else lines */
    CNN_PROGRESS_BAR,        /* the bar, and a line at the end of each epoch */
    CNN_PROGRESS_LINES       /* one line per epoch only */
} cnn_progress_style;

typedef struct cnn_progress_desc {
    cnn_progress_style style;
    cnn_history *history;    /* optional: each epoch is appended to it */
} cnn_progress_desc;

/* The reporter's state: fill it with cnn_progress_init. */
typedef struct cnn_progress {
    FILE *stream;            /* where it prints; NULL prints nothing */
    int bar;                 /* 1: draws the bar (the style, resolved) */
    cnn_history *history;
    double epoch_started;    /* seconds, on a monotonic wall clock where there is one */
    double last_drawn;       /* when the bar was last redrawn */
    int bar_on_line;         /* the bar is on the current line: clear it first */
} cnn_progress;

/* Call it just before cnn_model_fit: the first epoch's clock starts here.
   desc may be NULL (AUTO, no history). */
CNNDEF void cnn_progress_init(cnn_progress *progress, FILE *stream, const cnn_progress_desc *desc);

/* A cnn_batch_callback: redraws the bar (when there is one). Returns 0. */
CNNDEF int cnn_progress_batch(cnn_model *model, const cnn_batch_stats *stats, void *progress);

/* A cnn_epoch_callback: prints the epoch's line (and a line saying so when
   early stopping ends training), and appends the epoch to the history. It
   returns non-zero, which stops training, only when the history cannot grow
   (out of memory: the history's error says so). */
CNNDEF int cnn_progress_epoch(cnn_model *model, const cnn_epoch_stats *stats, void *progress);

/* A table of each class's support, precision, recall and F1 from a
   confusion matrix, then the accuracy, written into buffer like snprintf
   (it returns the length the whole table needs; the caller prints it).
   Classes are named by map's characters (map NULL: by number). */
CNNDEF size_t cnn_confusion_report(const int *matrix, int classes, const cnn_label_map *map, char *buffer, size_t size);

/* ---------------------------------------------------------------- model files */

/* Saves architecture and parameters (the format is described in the
   implementation, under "model files"). The file is written
   under a temporary name (PATH.tmp), flushed to the disk (fsync, on POSIX
   systems) and renamed, so that neither an interrupted save nor a crash
   afterwards leaves PATH half-written: it holds the old model or the new.
   A PATH.tmp left by an interrupted save is simply overwritten. */
CNNDEF cnn_result cnn_model_save(cnn_model *model, const char *path);

/* Loads a model saved by cnn_model_save (or a checkpoint, as a model) and
   builds it for max_batch. The contract: model is a new struct, or one
   given to cnn_model_free - cnn_model_load fills it from scratch and cannot
   tell a built model from uninitialised memory, so loading into a built
   model loses (leaks) what it held. To put a file's weights into a model
   you built, call cnn_model_load_weights. On failure the model is left
   freed, its error kept. Files are checked whole: the layers must make a
   model, the sizes must agree, every parameter must be finite, and the
   CRC-32 must match (files of format version 1, which had none, load too). */
CNNDEF cnn_result cnn_model_load(cnn_model *model, const char *path, int max_batch);

/* The same, from the size bytes of a model file in memory; messages name
   the input "<memory>". */
CNNDEF cnn_result cnn_model_load_memory(cnn_model *model, const void *bytes, size_t size, int max_batch);

/* Loads the parameters and class names (when it has them) of a model file
   into a built model with the same input and layers, as
   cnn_model_load_safetensors does for safetensors. A file of other layers
   is refused with a message naming the first difference; on any failure
   the model is left as it was. */
CNNDEF cnn_result cnn_model_load_weights(cnn_model *model, const char *path);

/* A checkpoint is a model file with two more sections: the optimiser's
   state (its settings, the learning rate as lowered so far, its moments
   and step count) and the training state (cnn_fit_state and the model's
   random generator, which shuffles and drops out). Save one from
   on_epoch with the state given to cnn_model_fit; cnn_model_load reads it
   as a plain model. */
CNNDEF cnn_result cnn_checkpoint_save(cnn_model *model, const cnn_optimizer *optimizer, const cnn_fit_state *state, const char *path);

/* Loads a checkpoint into a new model (as cnn_model_load, built for
   max_batch), a new optimiser and the state: its epoch and early-stopping
   fields are replaced (free a state that held best_params first), and the
   generator and history it points to, when you set them, are filled from
   the file when it has them. On failure all three are left freed, and
   the history you gave emptied. */
CNNDEF cnn_result cnn_checkpoint_load(cnn_model *model, cnn_optimizer *optimizer, cnn_fit_state *state, const char *path, int max_batch);

/* ---------------------------------------------------------------- other tools' formats: safetensors and ONNX

   A model travels to other tools in their own formats and under their own
   conventions. Names and layouts are those of torch.nn.Sequential built of
   the same layers in the same order: layer i (from 0) is module i, so
   LeNet-5's first conv holds "0.weight" (6, 1, 5, 5) and "0.bias" (6), and
   its first dense layer "7.weight" (120, 400), as (out, in): cnn.h keeps a
   dense layer's weights as (in, out) and transposes them at the border.
   Layers without parameters still count, so a PyTorch Sequential that ends
   in logits (no Softmax) fits a cnn.h model that ends in softmax. A batch
   norm layer is nn.BatchNorm2d (BatchNorm1d after a dense or flatten
   layer): "i.weight", "i.bias", "i.running_mean", "i.running_var" and
   "i.num_batches_tracked" (int64, no dimensions). A residual block, begin
   to end, is one module, examples/pytorch/cnnh.py's Residual: its body's
   layers are named inside it from 0 ("4.body.0.weight"), its projection
   "4.shortcut.weight" (OC, C, 1, 1) and "4.shortcut.bias", and the layer
   after its end is module 5. */

/* Writes the parameters (F32) and batch norm's running statistics (F32)
   and counts of batches (I64) as a safetensors file, with the layer list
   and input shape in its __metadata__ (README.md, "To and from PyTorch and
   ONNX", defines the keys), through a temporary file and a rename as
   cnn_model_save does. The model must be built. */
CNNDEF cnn_result cnn_model_save_safetensors(cnn_model *model, const char *path);

/* Fills the parameters of a model that is already built with the same
   layers (unlike cnn_model_load, which wants a fresh model) from a
   safetensors file, from cnn.h or from PyTorch's own tools: no metadata is
   needed. Every parameter tensor of the model must be in the file, under
   its name, with its shape, as F32, F16 or BF16 (converted to float), and
   no other tensor; batch norm's running statistics too (a variance must
   not be negative), and its count of batches as I64 or not at all (0, as
   PyTorch's load_state_dict counts it). All is checked before anything
   changes: on failure the model keeps its parameters and model->error says
   what was wrong. */
CNNDEF cnn_result cnn_model_load_safetensors(cnn_model *model, const char *path);
CNNDEF cnn_result cnn_model_load_safetensors_memory(cnn_model *model, const void *bytes, size_t size);

/* Builds a fresh model (not initialised: like cnn_model_load) from a
   safetensors file with cnn.h's metadata, written by
   cnn_model_save_safetensors or by examples/pytorch/cnnh.py, for batches of
   up to max_batch, and loads its parameters. On failure it is left freed. */
CNNDEF cnn_result cnn_model_from_safetensors(cnn_model *model, const char *path, int max_batch);
CNNDEF cnn_result cnn_model_from_safetensors_memory(cnn_model *model, const void *bytes, size_t size, int max_batch);

/* Writes the inference graph as an ONNX model (IR version 8, opset 13):
   input "input" (N, C, H, W) with a dynamic batch N, output "output",
   (N, outputs) after a flatten or dense layer, else (N, C, H, W);
   Conv, Relu, LeakyRelu, Sigmoid, Tanh, MaxPool, AveragePool, Flatten,
   Gemm, Softmax, BatchNormalization (the running statistics, epsilon
   1e-5), GlobalAveragePool and, for a residual block's end, Add (after a
   Conv 1x1 for a projection); Flatten where a dense layer meets an image;
   a padded average pool whose last window hangs over the padding in ceil
   mode pads its input with a Pad node first. Dropout and a residual
   block's begin, the identity at inference, are left out. Weights are
   initialisers under the names above, in PyTorch's layouts. Refused
   (CNN_ERROR_INVALID_ARGUMENT): a residual block's projection of a flat
   vector, which ONNX's Conv cannot take. Written through a temporary file
   and a rename. */
CNNDEF cnn_result cnn_model_export_onnx(cnn_model *model, const char *path);

/* ---------------------------------------------------------------- microcontrollers: int8 and C export

   Post-training int8 quantization as TensorFlow Lite does it, so that
   CMSIS-NN-style kernels could take its tensors as they are:
     - a tensor of activations holds int8 values q standing for the reals
       scale * (q - zero): one scale and zero point per tensor, from the
       smallest and largest value seen on calibration images (widened to
       hold 0, which then has an exact code);
     - conv2d and dense weights are symmetric, one scale per output
       channel, in [-127, 127]; biases int32, in units of
       input scale x weight scale;
     - a layer's int32 sum goes to its output's codes through a fixed-point
       multiplier and shift (no float in the inner loops); ReLU, max pool,
       average pool (padding counts as the code of 0), flatten and dropout
       keep their input's scale; global average pooling takes a scale of
       its own (its means span far less than its input), its int32 sum
       requantized as a conv2d's; LeakyReLU, sigmoid and tanh look their 256
       possible answers up in a table (sigmoid's and tanh's outputs at
       TensorFlow Lite's fixed scales);
     - a batch norm right after a conv2d or dense layer is folded into it
       before quantizing, as converters do: in evaluation it is the
       per-channel y = x * scale + shift, so the layer's weights of output
       channel c are multiplied by scale[c] and its bias becomes
       bias[c] * scale[c] + shift[c];
     - softmax, the last layer if there is one, runs in float.
   Residual blocks (whose sum of two int8 tensors of different scales
   would need a rescaling of its own) and a batch norm after anything but
   a conv2d or dense layer are refused: export such a model in float32.
   A cnn_quantized holds such a copy of a model, evaluable here; the C
   export writes the same arithmetic into a file of its own. */

typedef struct cnn_quant_layer {
    float out_scale;            /* output codes stand for out_scale * (q - out_zero) */
    int out_zero;
    signed char *weight;        /* conv2d (OC, C, K, K); dense (OUT, IN); NULL for others */
    int32_t *bias;              /* (OC or OUT), in units of input scale x weight scale */
    float *weight_scale;        /* (OC or OUT) */
    int32_t *multiplier;        /* (OC or OUT): input scale x weight scale / output scale */
    int *shift;                 /*   = multiplier x 2^(shift - 31) */
    signed char *table;         /* leaky_relu, sigmoid, tanh: (256) the output code of each input code */
} cnn_quant_layer;

typedef struct cnn_quantized {
    cnn_shape input;
    int layer_count;
    cnn_layer layers[CNN_MAX_LAYERS];       /* settings and shapes, as the model's (their pointers unused) */
    cnn_quant_layer quant[CNN_MAX_LAYERS];
    float input_scale;                      /* input codes: q = round(x / input_scale) + input_zero */
    int input_zero;
    int calibration_rows;                   /* images the ranges came from */
    void *memory;                           /* everything above lives in this block */
    signed char *buffers[2];                /* (largest activation) each: a sample's activations, in turn */
    cnn_error error;
} cnn_quantized;

/* Quantizes a built model: runs rows images of calibration (0: 1,000 or
   all there are) through it to find each tensor's range, then converts
   the weights. The model is not changed, and q does not need it later.
   q is overwritten without being freed: pass a new or freed one. Refused:
   a calibration set whose images are all one value, a conv2d, dense or
   LeakyReLU layer whose outputs are all 0 on it (no scale fits), softmax
   anywhere but last, a residual block, a batch norm that does not follow a
   conv2d or dense layer (the message names the layer). A conv2d or dense
   output channel whose int32 sums could overflow (a very wide layer, or a bias far larger than its
   weights) gets a coarser weight scale. Sigmoid and tanh outputs have
   TensorFlow Lite's fixed scales, 1/256 and 1/128. */
CNNDEF cnn_result cnn_quantize(cnn_quantized *q, cnn_model *model, const cnn_dataset *calibration, int rows);

/* As cnn_model_predict, through the int8 model: the class of each of count
   samples is the first largest int8 output; probabilities (may be NULL)
   receives (count, classes) from the float softmax at the end (the
   dequantized outputs when the model has no softmax). */
CNNDEF cnn_result cnn_quantized_predict(cnn_quantized *q, const float *input, int count, int *classes, float *probabilities);
CNNDEF void cnn_quantized_free(cnn_quantized *q);

/* Describes a C export. Zero means default in every field. */
typedef struct cnn_export_desc {
    const char *name;                   /* prefix of every symbol (default "model"): a C identifier */
    int int8;                           /* 1: the int8 model (needs calibration), else float32 */
    const cnn_dataset *calibration;     /* int8: images for the ranges */
    int calibration_rows;               /* int8: how many (default 1,000, or all there are) */
} cnn_export_desc;

/* Writes the model as one self-contained C99 file (C++ too, freestanding):
   its weights as static const arrays, NAME_INPUT_SIZE and NAME_CLASSES
   (the name in capitals), and

       int NAME_predict(const float *input, float *probabilities);

   which takes one input as cnn_model_predict does ((C, H, W) floats,
   pixels in [0, 1]), returns the top class and, unless probabilities is
   NULL, writes NAME_CLASSES of them. It works in two static buffers sized
   at export (not reentrant), and in a model with residual blocks one more
   for each level of nesting, which keeps a block's input for its end; it
   allocates nothing, prints nothing, and needs only expf (define
   NAME_EXPF before compiling it for your own), and an int of 32 bits, as
   on every Cortex-M. A batch norm is exported in its evaluation form
   (float32: a per-channel scale and shift from the running estimates;
   int8: folded into the layer before it). Refused: a softmax anywhere but
   last, a parameter or running estimate that is not finite, and in int8
   what cnn_quantize refuses. A comment at its top gives the architecture,
   the flash bytes of the weights and the RAM bytes of the buffers. int8
   files compute exactly what cnn_quantized_predict computes. Written
   through a temporary file and a rename. */
CNNDEF cnn_result cnn_model_export_c(cnn_model *model, const char *path, const cnn_export_desc *desc);

/* ---------------------------------------------------------------- images (optional)

   Declared only with CNN_IMAGES defined; see OPTIONAL: IMAGES at the top for
   the stb_image.h / stb_image_write.h the implementation needs. */
#ifdef CNN_IMAGES

/* An image as one NCHW sample: planar (channels, height, width) floats in
   [0, 1], 0 black. When its shape is a model's input, data can go straight to
   cnn_model_predict or _forward. Caller-owned: functions that fill an image
   overwrite it without freeing it (pass a new or freed one); free it with
   cnn_image_free. */
typedef struct cnn_image {
    int c, h, w;          /* channels (1 grey, 3 RGB), height, width */
    float *data;          /* (c, h, w) */
    cnn_error error;      /* why the last call that filled this image failed */
} cnn_image;

/* How images are resized. Both methods are separable (rows, then columns). */
typedef enum cnn_resize {
    CNN_RESIZE_DEFAULT = 0,  /* area averaging along an axis that shrinks,
                                bilinear along one that grows */
    CNN_RESIZE_AREA,         /* each output pixel is the mean of the input
                                area it covers (partly covered pixels count
                                by the fraction covered): no aliasing, the
                                total ink is kept */
    CNN_RESIZE_BILINEAR      /* pixel centres aligned, edges clamped: output
                                x samples input (x + 0.5) * in / out - 0.5, as
                                OpenCV's INTER_LINEAR and PyTorch's
                                align_corners=False */
} cnn_resize;

CNNDEF cnn_result cnn_image_alloc(cnn_image *image, int channels, int height, int width);  /* zeroed */
CNNDEF void cnn_image_free(cnn_image *image);

/* Loads a PNG, JPEG, BMP, GIF (first frame), TGA, PSD, HDR or PNM file with
   stb_image. channels: 1 grey, 3 RGB, 0 as in the file (grey files give 1,
   colour files 3). Transparent pixels are composited over white; colour
   becomes grey as 0.299 R + 0.587 G + 0.114 B. Pixels are 8-bit values / 255.
   A missing or unreadable file (or a folder) is CNN_ERROR_IO; an empty,
   truncated or damaged file, or one that is not an image, is
   CNN_ERROR_MALFORMED_DATA with stb_image's reason in the message. */
CNNDEF cnn_result cnn_image_load(cnn_image *image, const char *path, int channels);
CNNDEF cnn_result cnn_image_load_memory(cnn_image *image, const void *bytes, size_t size, int channels);

/* cnn_image_load, then cnn_image_resize to (height, width) with the default
   method: how cnn_image_folders_load reads every file. */
CNNDEF cnn_result cnn_image_load_resized(cnn_image *image, const char *path, int channels, int height, int width);

/* Writes an 8-bit PNG of a 1-channel (grey) or 3-channel (RGB) image: values
   are clamped to [0, 1] and scaled to 0..255 (NaN writes 0). Needs
   stb_image_write.h (else CNN_ERROR_STATE). Errors land in image->error. */
CNNDEF cnn_result cnn_image_save_png(cnn_image *image, const char *path);

/* out = in resized to (height, width), same channels. out must not be in. */
CNNDEF cnn_result cnn_image_resize(const cnn_image *in, cnn_image *out, int height, int width, cnn_resize method);

/* out = in with 1 or 3 channels: grey is 0.299 R + 0.587 G + 0.114 B; grey
   to RGB repeats the channel; the same count copies. out must not be in. */
CNNDEF cnn_result cnn_image_convert(const cnn_image *in, cnn_image *out, int channels);

/* ---- characters: a drawing or photo of one character, made to look like
   an EMNIST sample (Cohen et al., 2017) */

typedef enum cnn_invert {
    CNN_INVERT_AUTO = 0,   /* invert when the image's border is mostly light
                              (mean above 0.5): dark ink on light paper */
    CNN_INVERT_ALWAYS,
    CNN_INVERT_NEVER       /* already light ink on a dark background */
} cnn_invert;

typedef enum cnn_centre {
    CNN_CENTRE_DEFAULT = 0,  /* CNN_CENTRE_BOX */
    CNN_CENTRE_BOX,          /* the middle of the ink's bounding box at the
                                middle of the field, as EMNIST was made */
    CNN_CENTRE_MASS          /* the ink's centre of mass there, as MNIST was */
} cnn_centre;

typedef struct cnn_character_desc {
    int size;                     /* output side (default 28) */
    int box;                      /* the ink is scaled to fit box x box, aspect
                                     kept (default 22: EMNIST's characters
                                     span 22 to 24 pixels; MNIST's 20) */
    float threshold;              /* ink: brighter than this once the background
                                     is 0 and the brightest pixel 1 (default 0.2) */
    cnn_invert invert;
    cnn_orientation orientation;  /* DEFAULT or AS_STORED: upright, like the
                                     picture - what cnn_dataset_load_csv gives
                                     for EMNIST by default, so what a model
                                     trained by `make demo` expects. TRANSPOSE:
                                     EMNIST's stored orientation, for models
                                     trained on IDX files as stored or on CSV
                                     loaded with CNN_ORIENTATION_AS_STORED */
    cnn_resize resize;            /* for the fit into the box */
    cnn_centre centre;            /* what is put at the centre of the field */
} cnn_character_desc;

/* Prepares a character image (any size, grey or RGB) for a model trained on
   EMNIST, into out (1, size, size):
     1. grey; invert if the ink is dark (see cnn_invert);
     2. background to 0 and the brightest pixel to 1: v = (v - border mean) /
        (max - border mean), clamped to [0, 1];
     3. crop to the bounding box of the pixels above threshold;
     4. resize that box to fit box x box, keeping its aspect ratio;
     5. place it in the size x size field with the middle of its box (or,
        with CNN_CENTRE_MASS, its centre of mass) at the centre of the field:
        a whole-pixel shift plus a bilinear sub-pixel shift, which moves both
        by exactly the fraction; ink shifted past the edge is lost;
     6. scale so the brightest pixel is 1 (as in EMNIST), and transpose if
        orientation says so.
   An image with no ink (contrast below 0.05) is CNN_ERROR_MALFORMED_DATA.
   Why the defaults (box 22, box centred) and not MNIST's (box 20, centre of
   mass): EMNIST (Cohen et al., 2017) centres each character's bounding box
   in a square frame and keeps 22 to 24 pixels of the 28 for it. EMNIST test
   images made dark-on-light and 4x larger, then put through this function,
   keep 85.4% of a LeNet-5's 86.0% accuracy with the defaults, 71.6% with
   MNIST's settings (first 3000 test images of the balanced set). */
CNNDEF cnn_result cnn_image_to_character(const cnn_image *in, cnn_image *out, const cnn_character_desc *desc);

/* A picture made ready for a model whose input is `input`, into out: the
   one preparation that examples/predict.c and the web page share, so a
   file gets the same answer in both. A character model (one channel, a
   square input) gets cnn_image_to_character with size = input.h and, unless
   desc says otherwise, the box scaled as EMNIST's 22 of 28 (desc may be
   NULL: the defaults); any other model gets the picture converted to
   input.c channels (1 or 3) and resized to (input.h, input.w) with the
   default method, as cnn_image_folders_load reads its files. */
CNNDEF cnn_result cnn_image_prepare(const cnn_image *in, cnn_image *out, cnn_shape input, const cnn_character_desc *desc);

/* ---- image folders as a dataset: root/<class>/<image>, one sub-folder per
   class. Labels follow the sub-folder names sorted by strcmp; files too are
   sorted, so the result does not depend on the file system's order. Names
   starting with '.' are skipped, and so are files without an image
   extension (png jpg jpeg bmp gif tga psd hdr pgm ppm pnm, any case). Uses
   POSIX opendir/readdir (_findfirst on Windows). */

typedef struct cnn_folder_desc {
    int channels;         /* 1 grey or 3 RGB (default 3) */
    int width, height;    /* every image is resized to this (default 32 x 32) */
    float validation;     /* fraction of each class held out, rounded (default
                             0.3; negative: none). Each class keeps at least
                             one training image. */
    uint64_t seed;        /* of the split, which is reproducible */
} cnn_folder_desc;

typedef struct cnn_image_folders {
    cnn_dataset train;        /* (count, channels, height, width), labels */
    cnn_dataset validation;   /* count 0 when nothing is held out */
    int class_count;
    char **class_names;       /* (class_count) label i is class_names[i] */
    cnn_error error;          /* which folder or file was wrong, and why */
} cnn_image_folders;

/* Loads every image under root. A missing root is CNN_ERROR_IO; no
   sub-folders, an empty class or an unreadable image is
   CNN_ERROR_MALFORMED_DATA (or _IO) naming the file. On failure nothing is
   left allocated. */
CNNDEF cnn_result cnn_image_folders_load(cnn_image_folders *folders, const char *root, const cnn_folder_desc *desc);
CNNDEF void cnn_image_folders_free(cnn_image_folders *folders);

/* ---- augmentation: random changes to training images, drawn from rng */

typedef struct cnn_augment_desc {
    int flip;        /* non-zero: mirror left-right, half of the time */
    float rotate;    /* rotate by a uniform angle in [-rotate, rotate] degrees */
    float shift;     /* translate by up to shift * width and shift * height */
} cnn_augment_desc;  /* all zero: no change */

/* Changes count images of the given shape in place. Rotation and shift
   resample bilinearly about the image centre; pixels from outside repeat
   the nearest edge pixel. */
CNNDEF cnn_result cnn_augment_images(float *images, int count, cnn_shape shape, const cnn_augment_desc *desc, cnn_rng *rng);

/* What cnn_augment_batch needs: the settings and a random state of its
   own, so augmenting does not change the model's shuffling. */
typedef struct cnn_augmenter {
    cnn_augment_desc desc;
    cnn_rng rng;           /* seed it with cnn_rng_seed */
} cnn_augmenter;

/* A cnn_augment_callback for cnn_model_fit: fit.augment = cnn_augment_batch;
   fit.augment_user = &augmenter. Training batches only: evaluation and
   validation see the images unchanged. */
CNNDEF cnn_result cnn_augment_batch(cnn_model *model, float *images, int *labels, int batch, void *augmenter);

/* ---- pictures of training: learning curves, a confusion matrix and the
   samples a model got wrong, drawn by cnn.h into RGB images (text in a
   small built-in 5x9 bitmap font, ASCII only) and written with
   cnn_image_save_png, so they need stb_image_write.h (else CNN_ERROR_STATE).
   Classes are named by map's characters, or by number when map is NULL.
   Each function returns a cnn_result and, on failure, writes the reason
   into *error when error is not NULL. */

/* Learning curves, 1200 x 500: loss on the left, accuracy (%) on the right,
   each with the training (blue) and validation (orange, for the epochs that
   have it) values of every epoch of the history. */
CNNDEF cnn_result cnn_curves_save_png(const cnn_history *history, const char *path, cnn_error *error);

/* The confusion matrix (see cnn_confusion_count) as a heat map: rows true
   classes, columns predictions, each cell coloured by its share of its row,
   from white (0) to dark blue (1) on a square-root scale so that a few
   percent of confusions stand out next to a diagonal of ninety; class names
   down the left and along the top, and a colour bar. Cells are 32 pixels
   for up to 20 classes, 20 up to 50, else 1000 / classes (at least 2; names
   only when a cell has 10 or more). With grid = cell * classes, the picture
   is max(grid + 220, 720) wide and grid + 170 high. */
CNNDEF cnn_result cnn_confusion_save_png(const int *matrix, int classes, const cnn_label_map *map, const char *path, cnn_error *error);

/* The first 100 (at most) samples of dataset whose predicted[i] (dataset->
   count of them) is not their label, in a grid of 10 columns: each image
   at twice its size (grey, or RGB for 3 channels), with "true -> predicted"
   under it, true in green and predicted in red. With cell_w = max(2 * w +
   12, 60), cell_h = 2 * h + 30 and rows = max(1, ceil(shown / 10)), the
   picture is 10 * cell_w + 24 wide and 72 + rows * cell_h high. */
CNNDEF cnn_result cnn_mistakes_save_png(const cnn_dataset *dataset, const int *predicted, const cnn_label_map *map, const char *path,
                                        cnn_error *error);

#endif /* CNN_IMAGES */

#ifdef __cplusplus
}
#endif
#endif /* CNN_H */

/* ========================================================================
   IMPLEMENTATION

   In the API's order: results, random numbers, tensors, the layers, the
   model, optimisers, data files, training, validation and metrics,
   progress and history, model files. That is the whole library, each layer
   as the plain loops of its formula. Then the FAST section: the same
   layers again, lowered to one matrix multiply, in vectors and on threads
   (left out under CNN_NO_FAST). Then the optional IMAGES section.
   ======================================================================== */
#ifdef CNN_IMPLEMENTATION
#ifndef CNN_IMPLEMENTATION_DONE
#define CNN_IMPLEMENTATION_DONE

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/time.h> /* gettimeofday: the progress reporter's clock */
#include <unistd.h>   /* fsync for saved files, isatty for the progress bar */
#ifndef __cplusplus
extern int fileno(FILE *stream); /* POSIX; stdio.h hides it under -std=c99 */
#endif
#else
#include <time.h>     /* clock */
#endif

#if defined(CNN_MALLOC) && defined(CNN_FREE)
/* the caller's allocator */
#elif !defined(CNN_MALLOC) && !defined(CNN_FREE)
#include <stdlib.h>
#define CNN_MALLOC(size) malloc(size)
#define CNN_FREE(ptr) free(ptr)
#else
#error "cnn.h: define both CNN_MALLOC and CNN_FREE, or neither"
#endif

#ifndef CNN_ASSERT
#include <assert.h>
#define CNN_ASSERT(x) assert(x)
#endif

/* Private helpers are static; under CNN_STATIC some may go unused. */
#if defined(__GNUC__) || defined(__clang__)
#define CNN__PRIVATE static __attribute__((unused))
#else
#define CNN__PRIVATE static
#endif

#define CNN__PI 3.14159265358979323846

/* Shape legend used in the comments below:
     N   batch size               C, H, W     input channels, height, width
     OC  output channels          OH, OW      output height, width
     K   kernel side              S, P        stride, padding
     IN, OUT                      dense input and output sizes            */

/* What the plain part calls in the FAST section, which comes after it:
   the model's working memory for the fast layers, each layer's fast twin
   (they answer 0 where a layer has none) and the optimisers' twin. */
#ifndef CNN_NO_FAST
CNN__PRIVATE cnn_result cnn__fast_build(cnn_model *model, int max_batch);
CNN__PRIVATE void cnn__fast_free(cnn_model *model);
CNN__PRIVATE const char *cnn__fast_instruction_set(const cnn_model *model);
CNN__PRIVATE double cnn__fast_step_begin(cnn_model *model);
CNN__PRIVATE void cnn__fast_step_end(cnn_model *model, double started, int batch);
CNN__PRIVATE int cnn__layer_forward_fast(cnn_model *model, int i);
CNN__PRIVATE int cnn__layer_backward_fast(cnn_model *model, int i, int want_input_grad);
CNN__PRIVATE size_t cnn__optimizer_pass_fast(const cnn_optimizer *optimizer, cnn_model *model, long step, int write);
#endif

/* ======================================================================== results */

CNNDEF const char *cnn_result_string(cnn_result result)
{
    switch (result) {
    case CNN_OK: return "success";
    case CNN_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case CNN_ERROR_OUT_OF_MEMORY: return "out of memory";
    case CNN_ERROR_BAD_SHAPE: return "layer does not fit its input shape";
    case CNN_ERROR_IO: return "file could not be opened, read or written";
    case CNN_ERROR_MALFORMED_DATA: return "malformed data file";
    case CNN_ERROR_BAD_MODEL_FILE: return "not a valid cnn.h model file";
    case CNN_ERROR_NOT_FINITE: return "loss or weights became NaN or infinite";
    case CNN_ERROR_STATE: return "function called in the wrong state";
    }
    return "unknown result code";
}

/* Records an error and returns its code, so callers can write
   `return cnn__fail(...)`. error may be NULL. */
CNN__PRIVATE cnn_result cnn__fail(cnn_error *error, cnn_result code, long line, long field,
                                  long long byte, const char *format, ...)
{
    va_list args;
    if (!error) return code;
    error->code = code;
    error->line = line;
    error->field = field;
    error->byte = byte;
    va_start(args, format);
    vsnprintf(error->message, sizeof error->message, format, args);
    va_end(args);
    return code;
}

CNN__PRIVATE void cnn__clear_error(cnn_error *error)
{
    memset(error, 0, sizeof *error);
    error->byte = -1;
}

/* For a pointer argument that must not be NULL: records which one was. */
CNN__PRIVATE cnn_result cnn__null_argument(cnn_error *error, const char *function, const char *argument)
{
    return cnn__fail(error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "%s: %s is NULL", function, argument);
}

/* ======================================================================== random */

CNNDEF void cnn_rng_seed(cnn_rng *rng, uint64_t seed)
{
    if (!rng) return;
    rng->state = 0;
    rng->increment = (seed << 1) | 1u;  /* the stream; must be odd */
    cnn_rng_next(rng);
    rng->state += seed ^ 0x853c49e6748fea9bULL;
    cnn_rng_next(rng);
}

CNNDEF uint32_t cnn_rng_next(cnn_rng *rng)
{
    /* a 64-bit LCG step, then a permutation of the old state to 32 bits */
    uint64_t old;
    uint32_t xorshifted, rotation;
    if (!rng) return 0;
    old = rng->state;
    rng->state = old * 6364136223846793005ULL + rng->increment;
    xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
    rotation = (uint32_t)(old >> 59);
    return (xorshifted >> rotation) | (xorshifted << ((0u - rotation) & 31u));
}

CNNDEF float cnn_rng_uniform(cnn_rng *rng)
{
    if (!rng) return 0.0f;
    return (float)(cnn_rng_next(rng) >> 8) * (1.0f / 16777216.0f);  /* 24 bits */
}

CNNDEF float cnn_rng_normal(cnn_rng *rng)
{
    /* Box-Muller; u1 in (0, 1] keeps the log finite */
    double u1, u2;
    if (!rng) return 0.0f;
    u1 = ((double)(cnn_rng_next(rng) >> 8) + 1.0) / 16777216.0;
    u2 = (double)(cnn_rng_next(rng) >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * CNN__PI * u2));
}

CNNDEF uint32_t cnn_rng_below(cnn_rng *rng, uint32_t n)
{
    /* rejection sampling: drop the values that would make some results
       more likely than others */
    uint32_t threshold, r;
    if (!rng || n <= 1) return 0;
    threshold = (0u - n) % n;
    do {
        r = cnn_rng_next(rng);
    } while (r < threshold);
    return r % n;
}

/* ======================================================================== tensors */

/* a * b, or 0 when it would not fit in a size_t */
CNN__PRIVATE size_t cnn__mul_size(size_t a, size_t b)
{
    if (a != 0 && b > (size_t)-1 / a) return 0;
    return a * b;
}

/* 1 for a finite float, 0 for NaN and the infinities (x - x is NaN for those). */
CNN__PRIVATE int cnn__is_finite(float x)
{
    return x - x == 0.0f;
}

/* Allocates count floats, or NULL when count is 0, overflows or malloc fails. */
CNN__PRIVATE float *cnn__alloc_floats(size_t count)
{
    size_t bytes = cnn__mul_size(count, sizeof(float));
    if (bytes == 0) return NULL;
    return (float *)CNN_MALLOC(bytes);
}

CNNDEF size_t cnn_shape_count(cnn_shape shape)
{
    if (shape.c <= 0 || shape.h <= 0 || shape.w <= 0) return 0;
    return cnn__mul_size(cnn__mul_size((size_t)shape.c, (size_t)shape.h), (size_t)shape.w);
}

CNNDEF size_t cnn_tensor_count(const cnn_tensor *tensor)
{
    cnn_shape shape;
    if (!tensor || tensor->n <= 0) return 0;
    shape.c = tensor->c; shape.h = tensor->h; shape.w = tensor->w;
    return cnn__mul_size((size_t)tensor->n, cnn_shape_count(shape));
}

CNNDEF cnn_result cnn_tensor_alloc(cnn_tensor *tensor, int n, int c, int h, int w)
{
    size_t count;
    if (!tensor) return CNN_ERROR_INVALID_ARGUMENT;
    memset(tensor, 0, sizeof *tensor);
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return CNN_ERROR_INVALID_ARGUMENT;
    tensor->n = n; tensor->c = c; tensor->h = h; tensor->w = w;
    count = cnn_tensor_count(tensor);
    tensor->data = cnn__alloc_floats(count);
    if (!tensor->data) {
        memset(tensor, 0, sizeof *tensor);
        return CNN_ERROR_OUT_OF_MEMORY;
    }
    memset(tensor->data, 0, count * sizeof(float));
    return CNN_OK;
}

CNNDEF void cnn_tensor_free(cnn_tensor *tensor)
{
    if (!tensor) return;
    CNN_FREE(tensor->data);
    memset(tensor, 0, sizeof *tensor);
}

CNNDEF float *cnn_tensor_at(const cnn_tensor *tensor, int n, int c, int h, int w)
{
    if (!tensor || !tensor->data || n < 0 || n >= tensor->n || c < 0 || c >= tensor->c || h < 0 || h >= tensor->h || w < 0 ||
        w >= tensor->w)
        return NULL;
    return tensor->data + (((size_t)n * (size_t)tensor->c + (size_t)c) * (size_t)tensor->h + (size_t)h) * (size_t)tensor->w + (size_t)w;
}

/* ======================================================================== layers

   Each layer is a forward / backward pair with the same arguments:
     x (N, in shape) input, y (N, out shape) output,
     dy = d loss / d y, dx = d loss / d x (overwritten: each activation has
     exactly one consumer in a sequential model; conv2d and dense take NULL
     where nobody needs it), and parameter gradients, which are *added to*
     so that gradients of several batches can be summed.
   These are the formulas as plain loops: the library as it is taught, and
   the reference every fast twin in the FAST section is tested against.
   ======================================================================== */

/* ---------------------------------------------------------------- conv2d

   y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] * x[n, c, i*S + u - P, j*S + v - P]
   with x = 0 outside the image (zero padding); OH = (H + 2P - K) / S + 1,
   rounded down.
   x (N, C, H, W), w (OC, C, K, K), b (OC), y (N, OC, OH, OW)
   Here and in every layer, a sum starts from zero and the bias is added
   last: the order the fast twins keep too, so that they can give the same
   bits. */
CNN__PRIVATE void cnn__conv2d_forward(const cnn_layer *layer, int N, const float *x, float *y)
{
    const int C = layer->in.c, H = layer->in.h, W = layer->in.w;
    const int OC = layer->out.c, OH = layer->out.h, OW = layer->out.w;
    const int K = layer->desc.kernel, S = layer->desc.stride, P = layer->desc.padding;
    int n, o, i, j, c, u, v;
    for (n = 0; n < N; n++)
        for (o = 0; o < OC; o++)
            for (i = 0; i < OH; i++)
                for (j = 0; j < OW; j++) {
                    float sum = 0.0f;
                    for (c = 0; c < C; c++)
                        for (u = 0; u < K; u++)
                            for (v = 0; v < K; v++) {
                                int row = i * S + u - P, col = j * S + v - P;
                                if (row < 0 || row >= H || col < 0 || col >= W) continue; /* padding */
                                sum += layer->weight[((o * C + c) * K + u) * K + v] *
                                       x[(((size_t)n * C + c) * H + row) * W + col];
                            }
                    y[(((size_t)n * OC + o) * OH + i) * OW + j] = layer->bias[o] + sum;
                }
}

/* The chain rule on the formula above: every product w * x sends dy back
   to both of its factors.
   db[o] += sum_{n,i,j} dy[n,o,i,j]
   dw[o,c,u,v] += sum_{n,i,j} dy[n,o,i,j] * x[n, c, i*S+u-P, j*S+v-P]
   dx[n, c, i*S+u-P, j*S+v-P] += dy[n,o,i,j] * w[o,c,u,v] */
CNN__PRIVATE void cnn__conv2d_backward(const cnn_layer *layer, int N, const float *x, const float *dy, float *dx)
{
    const int C = layer->in.c, H = layer->in.h, W = layer->in.w;
    const int OC = layer->out.c, OH = layer->out.h, OW = layer->out.w;
    const int K = layer->desc.kernel, S = layer->desc.stride, P = layer->desc.padding;
    int n, o, i, j, c, u, v;
    if (dx) memset(dx, 0, (size_t)N * C * H * W * sizeof(float));
    for (n = 0; n < N; n++)
        for (o = 0; o < OC; o++)
            for (i = 0; i < OH; i++)
                for (j = 0; j < OW; j++) {
                    float g = dy[(((size_t)n * OC + o) * OH + i) * OW + j];
                    layer->bias_grad[o] += g;
                    for (c = 0; c < C; c++)
                        for (u = 0; u < K; u++)
                            for (v = 0; v < K; v++) {
                                int row = i * S + u - P, col = j * S + v - P;
                                size_t xi = (((size_t)n * C + c) * H + row) * W + col;
                                size_t wi = (size_t)((o * C + c) * K + u) * K + v;
                                if (row < 0 || row >= H || col < 0 || col >= W) continue;
                                layer->weight_grad[wi] += g * x[xi];
                                if (dx) dx[xi] += g * layer->weight[wi];
                            }
                }
}

/* ---------------------------------------------------------------- dense

   y[n,o] = b[o] + sum_i x[n,i] * w[i,o]      x (N, IN), w (IN, OUT), y (N, OUT)
   w is stored (IN, OUT), as Keras does, so the forward pass is x @ w with
   no transpose; PyTorch's nn.Linear keeps the transpose, (OUT, IN). */
CNN__PRIVATE void cnn__dense_forward(const cnn_layer *layer, int N, const float *x, float *y)
{
    const int IN = (int)cnn_shape_count(layer->in), OUT = (int)cnn_shape_count(layer->out);
    int n, o, i;
    for (n = 0; n < N; n++)
        for (o = 0; o < OUT; o++) {
            float sum = 0.0f;
            for (i = 0; i < IN; i++) sum += x[(size_t)n * IN + i] * layer->weight[(size_t)i * OUT + o];
            y[(size_t)n * OUT + o] = layer->bias[o] + sum;
        }
}

/* db[o] += sum_n dy[n,o];  dw[i,o] += sum_n x[n,i] * dy[n,o]  (x^T @ dy);
   dx[n,i] = sum_o dy[n,o] * w[i,o]  (dy @ w^T) */
CNN__PRIVATE void cnn__dense_backward(const cnn_layer *layer, int N, const float *x, const float *dy, float *dx)
{
    const int IN = (int)cnn_shape_count(layer->in), OUT = (int)cnn_shape_count(layer->out);
    int n, o, i;
    for (n = 0; n < N; n++)
        for (o = 0; o < OUT; o++) layer->bias_grad[o] += dy[(size_t)n * OUT + o];
    for (i = 0; i < IN; i++)
        for (o = 0; o < OUT; o++) {
            float sum = 0.0f;
            for (n = 0; n < N; n++) sum += x[(size_t)n * IN + i] * dy[(size_t)n * OUT + o];
            layer->weight_grad[(size_t)i * OUT + o] += sum;
        }
    if (!dx) return;
    for (n = 0; n < N; n++)
        for (i = 0; i < IN; i++) {
            float sum = 0.0f;
            for (o = 0; o < OUT; o++) sum += dy[(size_t)n * OUT + o] * layer->weight[(size_t)i * OUT + o];
            dx[(size_t)n * IN + i] = sum;
        }
}

/* ---------------------------------------------------------------- activations
   Elementwise over count = N * size values. */

/* y = max(0, x);  dx = dy where x > 0, else 0.
   Written as "x < 0 ? 0 : x" so that a NaN passes through, as in PyTorch:
   a diverged net must show a NaN loss, not hide it behind zeros.
   Backward looks at y, not x: y > 0 exactly where x > 0, and a layer that
   needs only its output can run in place, over its input (see "memory" at
   cnn_model_build). */
CNN__PRIVATE void cnn__relu_forward(size_t count, const float *x, float *y)
{
    size_t i;
    for (i = 0; i < count; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

CNN__PRIVATE void cnn__relu_backward(size_t count, const float *y, const float *dy, float *dx)
{
    size_t i;
    for (i = 0; i < count; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

/* y = x for x > 0, alpha * x otherwise;  dx = dy or alpha * dy.
   Backward reads the sign of v: with alpha > 0, y > 0 exactly where x > 0,
   so v is y, as for ReLU; with alpha <= 0 the sign of y does not tell, and
   then v is x (and the layer keeps its input). */
CNN__PRIVATE void cnn__leaky_relu_forward(size_t count, float alpha, const float *x, float *y)
{
    size_t i;
    for (i = 0; i < count; i++) y[i] = x[i] < 0.0f ? alpha * x[i] : x[i];
}

CNN__PRIVATE void cnn__leaky_relu_backward(size_t count, float alpha, const float *v, const float *dy, float *dx)
{
    size_t i;
    for (i = 0; i < count; i++) dx[i] = v[i] > 0.0f ? dy[i] : alpha * dy[i];
}

/* y = 1 / (1 + e^-x);  dx = dy * y * (1 - y).
   For x < 0 the same value is computed as e^x / (1 + e^x), which cannot
   overflow. */
CNN__PRIVATE void cnn__sigmoid_forward(size_t count, const float *x, float *y)
{
    size_t i;
    for (i = 0; i < count; i++) {
        if (x[i] >= 0.0f) {
            y[i] = 1.0f / (1.0f + expf(-x[i]));
        } else {
            float e = expf(x[i]);
            y[i] = e / (1.0f + e);
        }
    }
}

CNN__PRIVATE void cnn__sigmoid_backward(size_t count, const float *y, const float *dy, float *dx)
{
    size_t i;
    for (i = 0; i < count; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

/* y = tanh(x);  dx = dy * (1 - y^2) */
CNN__PRIVATE void cnn__tanh_forward(size_t count, const float *x, float *y)
{
    size_t i;
    for (i = 0; i < count; i++) y[i] = tanhf(x[i]);
}

CNN__PRIVATE void cnn__tanh_backward(size_t count, const float *y, const float *dy, float *dx)
{
    size_t i;
    for (i = 0; i < count; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

/* One of the four above, on count values from x (and y, dy): the layer's
   type picks it. Backward, all four look at their output y (LeakyReLU with
   alpha <= 0 at x): x may be gone, overwritten by y. */
CNN__PRIVATE void cnn__activation_forward(const cnn_layer *layer, size_t count, const float *x, float *y)
{
    switch (layer->desc.type) {
    case CNN_LAYER_RELU: cnn__relu_forward(count, x, y); break;
    case CNN_LAYER_LEAKY_RELU: cnn__leaky_relu_forward(count, layer->desc.alpha, x, y); break;
    case CNN_LAYER_SIGMOID: cnn__sigmoid_forward(count, x, y); break;
    case CNN_LAYER_TANH: cnn__tanh_forward(count, x, y); break;
    default: CNN_ASSERT(0); break;
    }
}

CNN__PRIVATE void cnn__activation_backward(const cnn_layer *layer, size_t count, const float *x, const float *y,
                                           const float *dy, float *dx)
{
    switch (layer->desc.type) {
    case CNN_LAYER_RELU: cnn__relu_backward(count, y, dy, dx); break;
    case CNN_LAYER_LEAKY_RELU: cnn__leaky_relu_backward(count, layer->desc.alpha, layer->desc.alpha > 0.0f ? y : x, dy, dx); break;
    case CNN_LAYER_SIGMOID: cnn__sigmoid_backward(count, y, dy, dx); break;
    case CNN_LAYER_TANH: cnn__tanh_backward(count, y, dy, dx); break;
    default: CNN_ASSERT(0); break;
    }
}

/* ---------------------------------------------------------------- pooling

   Windows of K x K moved by S over the input with P zeros added on every
   side: OH = (H + 2P - K) / S + 1, rounded down, so rows and columns past
   the last whole window are dropped, as in PyTorch and Keras; with
   ceil_mode rounded up, keeping a last window that hangs over the edge,
   unless it would start in the padding. Window (i, j) covers rows
   i*S - P .. i*S - P + K - 1 and the like for columns.
   Max:     y[n,c,i,j] = max of x over the window's cells inside the input
            (the padding never wins; K >= 2P keeps a cell in every window)
            dx gets dy at the window's maximum (the first one, in row-major
            order, when several are equal, as PyTorch does), zero elsewhere.
            Overlapping windows (S < K) add up at shared inputs.
   Average: y = the window's sum over its cells inside the input, divided
            by its area inside the padded input (padding counts, as
            PyTorch's default count_include_pad; what hangs over the
            padding in ceil mode does not);
            dx += dy / that area at every input cell of the window.
   Each plane (n, c) is pooled on its own. The max pool keeps, in argmax
   (N, C, OH, OW), where in its plane each maximum was, for the backward
   pass. */

/* The rows (or columns) of window i inside the input, [*first, *last),
   and how many of them lie inside the padded input: the average's divisor
   along this axis. */
CNN__PRIVATE int cnn__pool_span(int i, int K, int S, int P, int side, int *first, int *last)
{
    const int start = i * S - P, stop = start + K < side + P ? start + K : side + P;
    *first = start < 0 ? 0 : start;
    *last = start + K < side ? start + K : side;
    return stop - start;
}

/* One plane: in (H, W), out and argmax (OH, OW). */
CNN__PRIVATE void cnn__max_pool_plane(const cnn_layer *layer, const float *in, float *out, int *argmax)
{
    const int H = layer->in.h, W = layer->in.w, OH = layer->out.h, OW = layer->out.w;
    const int K = layer->desc.kernel, S = layer->desc.stride, P = layer->desc.padding;
    int i, j, u, v, u_end, v_end, v_first;
    for (i = 0; i < OH; i++)
        for (j = 0; j < OW; j++) {
            int best = -1;
            cnn__pool_span(i, K, S, P, H, &u, &u_end);
            cnn__pool_span(j, K, S, P, W, &v_first, &v_end);
            for (; u < u_end; u++)
                for (v = v_first; v < v_end; v++) {
                    int at = u * W + v;
                    if (best < 0 || in[at] > in[best] || in[at] != in[at]) best = at; /* NaN wins, as in PyTorch */
                }
            out[i * OW + j] = in[best];
            argmax[i * OW + j] = best;
        }
}

CNN__PRIVATE void cnn__max_pool_forward(const cnn_layer *layer, int N, const float *x, float *y, int *argmax)
{
    const size_t in_plane = (size_t)layer->in.h * layer->in.w, out_plane = (size_t)layer->out.h * layer->out.w;
    const int planes = N * layer->in.c;
    int plane;
    for (plane = 0; plane < planes; plane++)
        cnn__max_pool_plane(layer, x + plane * in_plane, y + plane * out_plane, argmax + plane * out_plane);
}

CNN__PRIVATE void cnn__max_pool_backward(const cnn_layer *layer, int N, const float *dy, const int *argmax, float *dx)
{
    const size_t in_plane = (size_t)layer->in.h * layer->in.w, out_plane = (size_t)layer->out.h * layer->out.w;
    const int planes = N * layer->in.c;
    int plane;
    size_t k;
    memset(dx, 0, (size_t)planes * in_plane * sizeof(float));
    for (plane = 0; plane < planes; plane++)
        for (k = 0; k < out_plane; k++)
            dx[(size_t)plane * in_plane + argmax[(size_t)plane * out_plane + k]] += dy[(size_t)plane * out_plane + k];
}

CNN__PRIVATE void cnn__avg_pool_forward(const cnn_layer *layer, int N, const float *x, float *y)
{
    const int H = layer->in.h, W = layer->in.w, OH = layer->out.h, OW = layer->out.w;
    const int K = layer->desc.kernel, S = layer->desc.stride, P = layer->desc.padding;
    const int planes = N * layer->in.c;
    int plane, i, j, u, v, u_first, u_end, v_first, v_end, area;
    for (plane = 0; plane < planes; plane++) {
        const float *in = x + (size_t)plane * H * W;
        for (i = 0; i < OH; i++)
            for (j = 0; j < OW; j++) {
                float sum = 0.0f;
                area = cnn__pool_span(i, K, S, P, H, &u_first, &u_end) * cnn__pool_span(j, K, S, P, W, &v_first, &v_end);
                for (u = u_first; u < u_end; u++)
                    for (v = v_first; v < v_end; v++) sum += in[u * W + v];
                y[((size_t)plane * OH + i) * OW + j] = sum / (float)area;
            }
    }
}

CNN__PRIVATE void cnn__avg_pool_backward(const cnn_layer *layer, int N, const float *dy, float *dx)
{
    const int H = layer->in.h, W = layer->in.w, OH = layer->out.h, OW = layer->out.w;
    const int K = layer->desc.kernel, S = layer->desc.stride, P = layer->desc.padding;
    const int planes = N * layer->in.c;
    int plane, i, j, u, v, u_first, u_end, v_first, v_end, area;
    memset(dx, 0, (size_t)planes * H * W * sizeof(float));
    for (plane = 0; plane < planes; plane++) {
        float *out = dx + (size_t)plane * H * W;
        for (i = 0; i < OH; i++)
            for (j = 0; j < OW; j++) {
                float g;
                area = cnn__pool_span(i, K, S, P, H, &u_first, &u_end) * cnn__pool_span(j, K, S, P, W, &v_first, &v_end);
                g = dy[((size_t)plane * OH + i) * OW + j] / (float)area;
                for (u = u_first; u < u_end; u++)
                    for (v = v_first; v < v_end; v++) out[u * W + v] += g;
            }
    }
}

/* ---------------------------------------------------------------- global average pooling

   y[n,c] = (1 / (H W)) sum_{i,j} x[n,c,i,j];   dx[n,c,i,j] = dy[n,c] / (H W) */
CNN__PRIVATE void cnn__global_avg_pool_forward(const cnn_layer *layer, int N, const float *x, float *y)
{
    const size_t plane_size = (size_t)layer->in.h * layer->in.w;
    const int planes = N * layer->in.c;
    int plane;
    size_t k;
    for (plane = 0; plane < planes; plane++) {
        float sum = 0.0f;
        for (k = 0; k < plane_size; k++) sum += x[plane * plane_size + k];
        y[plane] = sum / (float)plane_size;
    }
}

CNN__PRIVATE void cnn__global_avg_pool_backward(const cnn_layer *layer, int N, const float *dy, float *dx)
{
    const size_t plane_size = (size_t)layer->in.h * layer->in.w;
    const int planes = N * layer->in.c;
    int plane;
    size_t k;
    for (plane = 0; plane < planes; plane++)
        for (k = 0; k < plane_size; k++) dx[plane * plane_size + k] = dy[plane] / (float)plane_size;
}

/* ---------------------------------------------------------------- batch normalization

   Per channel c, over its m = N * H * W values (H = W = 1 after a dense layer):
     training:   mean = (1/m) sum x,  var = (1/m) sum (x - mean)^2   (the batch's)
     evaluation: mean, var = the running estimates
     xhat = (x - mean) / sqrt(var + eps),   y = gamma * xhat + beta,   eps = 1e-5
   After a training pass the running estimates move toward the batch's:
     running_mean = 0.9 running_mean + 0.1 mean
     running_var  = 0.9 running_var  + 0.1 var * m / (m - 1)   (unbiased)
   as PyTorch's BatchNorm2d and BatchNorm1d do with their defaults.
   Backward (sums over the channel's m values):
     dbeta  += sum dy,   dgamma += sum dy * xhat
     training:   dx = gamma / sqrt(var + eps) * (dy - sum dy / m - xhat * sum (dy * xhat) / m)
                 (mean and var depend on every x of the channel: the two sums
                 are what that dependence sends back)
     evaluation: dx = gamma / sqrt(var + eps) * dy
   The sums are taken in double: a channel holds hundreds of thousands of
   values in a batch, and float sums of that many drift. The forward pass
   keeps each channel's mean and 1 / sqrt(var + eps) for the backward. */
#define CNN__BATCH_NORM_EPS 1e-5
#define CNN__BATCH_NORM_MOMENTUM 0.1

/* Channel c's mean and 1 / sqrt(var + eps), kept for the backward pass,
   and its scale gamma / sqrt(var + eps), returned. In training they come
   from the batch's mean and sum of squared deviations over m values, and
   the running estimates move toward them; in evaluation they are the
   running estimates. */
CNN__PRIVATE float cnn__batch_norm_channel(cnn_layer *layer, int c, cnn_mode mode, double mean, double squares, size_t m)
{
    const double momentum = CNN__BATCH_NORM_MOMENTUM;
    double var;
    if (mode == CNN_MODE_TRAIN) {
        var = squares / (double)m;
        layer->running_mean[c] = (float)((1.0 - momentum) * layer->running_mean[c] + momentum * mean);
        layer->running_var[c] = (float)((1.0 - momentum) * layer->running_var[c] + momentum * var * (double)m / (double)(m - 1));
    } else {
        mean = layer->running_mean[c];
        var = layer->running_var[c];
    }
    layer->batch_mean[c] = (float)mean;
    layer->batch_inv_std[c] = (float)(1.0 / sqrt(var + CNN__BATCH_NORM_EPS));
    return layer->weight[c] * layer->batch_inv_std[c];
}

CNN__PRIVATE void cnn__batch_norm_forward(cnn_layer *layer, int N, cnn_mode mode, const float *x, float *y)
{
    const int C = layer->in.c;
    const size_t plane_size = (size_t)layer->in.h * layer->in.w, m = (size_t)N * plane_size;
    int c, n;
    size_t k;
    for (c = 0; c < C; c++) {
        double mean = 0.0, sum = 0.0, squares = 0.0;
        float scale, shift;
        if (mode == CNN_MODE_TRAIN) {
            for (n = 0; n < N; n++)
                for (k = 0; k < plane_size; k++) sum += x[((size_t)n * C + c) * plane_size + k];
            mean = sum / (double)m;
            for (n = 0; n < N; n++)
                for (k = 0; k < plane_size; k++) {
                    double d = x[((size_t)n * C + c) * plane_size + k] - mean;
                    squares += d * d;
                }
        }
        /* y = gamma * (x - mean) * inv_std + beta = x * scale + shift */
        scale = cnn__batch_norm_channel(layer, c, mode, mean, squares, m);
        shift = layer->bias[c] - layer->batch_mean[c] * scale;
        for (n = 0; n < N; n++)
            for (k = 0; k < plane_size; k++) {
                size_t at = ((size_t)n * C + c) * plane_size + k;
                y[at] = x[at] * scale + shift;
            }
    }
    if (mode == CNN_MODE_TRAIN) layer->batches_tracked++;
}

CNN__PRIVATE void cnn__batch_norm_backward(const cnn_layer *layer, int N, cnn_mode mode, const float *x, const float *dy, float *dx)
{
    const int C = layer->in.c;
    const size_t plane_size = (size_t)layer->in.h * layer->in.w, m = (size_t)N * plane_size;
    int c, n;
    size_t k;
    for (c = 0; c < C; c++) {
        const float mean = layer->batch_mean[c], inv_std = layer->batch_inv_std[c];
        double dy_sum = 0.0, dy_xhat_sum = 0.0, mean_dy, mean_dy_xhat;
        for (n = 0; n < N; n++)
            for (k = 0; k < plane_size; k++) {
                size_t at = ((size_t)n * C + c) * plane_size + k;
                dy_sum += dy[at];
                dy_xhat_sum += (double)dy[at] * ((x[at] - mean) * inv_std);
            }
        layer->bias_grad[c] += (float)dy_sum;
        layer->weight_grad[c] += (float)dy_xhat_sum;
        mean_dy = mode == CNN_MODE_TRAIN ? dy_sum / (double)m : 0.0;
        mean_dy_xhat = mode == CNN_MODE_TRAIN ? dy_xhat_sum / (double)m : 0.0;
        for (n = 0; n < N; n++)
            for (k = 0; k < plane_size; k++) {
                size_t at = ((size_t)n * C + c) * plane_size + k;
                float xhat = (x[at] - mean) * inv_std;
                dx[at] = layer->weight[c] * inv_std * (float)(dy[at] - mean_dy - xhat * mean_dy_xhat);
            }
    }
}

/* ---------------------------------------------------------------- residual blocks

   begin:  y = x, the block's input x passed on to the body F
   end:    y = F(x) + x               (the body kept the shape)
           y = F(x) + conv1x1_S(x)    (it did not: end's projection, the
                                       conv2d formula with K = 1, P = 0)
   Backward, the sum sends dy to both of its terms: end passes dy on to F
   unchanged, and keeps the skip path's share, dy (or the projection's
   input gradient, conv2d backward with dy), in skip_grad; begin, reached
   after the whole body, adds it to what came through F:
           dx = dy_from_F + skip_grad.
   end reads x from the activations: x is begin's input. */

/* end's projection as the conv2d layer it is: (C, H, W) of the block's
   input to end's output shape, 1x1 with stride S, end's weights. */
CNN__PRIVATE cnn_layer cnn__projection(const cnn_model *model, const cnn_layer *end)
{
    cnn_layer conv = *end;
    conv.desc.type = CNN_LAYER_CONV2D;
    conv.desc.units = end->out.c;
    conv.desc.kernel = 1;
    conv.desc.padding = 0;
    conv.in = model->layers[end->block_begin].in;
    return conv;
}

CNN__PRIVATE void cnn__residual_end_forward(const cnn_model *model, const cnn_layer *end, int N, const float *block_input,
                                            const float *body, float *y)
{
    const size_t count = (size_t)N * cnn_shape_count(end->out);
    size_t k;
    if (end->weight_count) {
        const cnn_layer projection = cnn__projection(model, end);
        cnn__conv2d_forward(&projection, N, block_input, y);
        for (k = 0; k < count; k++) y[k] += body[k];
    } else {
        for (k = 0; k < count; k++) y[k] = body[k] + block_input[k];
    }
}

CNN__PRIVATE void cnn__residual_end_backward(const cnn_model *model, const cnn_layer *end, int N, const float *block_input,
                                             const float *dy, float *dx)
{
    const size_t count = (size_t)N * cnn_shape_count(end->out);
    if (end->weight_count) {
        const cnn_layer projection = cnn__projection(model, end);
        cnn__conv2d_backward(&projection, N, block_input, dy, end->skip_grad);
    } else {
        memcpy(end->skip_grad, dy, count * sizeof(float));
    }
    memcpy(dx, dy, count * sizeof(float));
}

CNN__PRIVATE void cnn__residual_begin_backward(size_t count, const float *dy, const float *skip_grad, float *dx)
{
    size_t k;
    for (k = 0; k < count; k++) dx[k] = dy[k] + skip_grad[k];
}

/* ---------------------------------------------------------------- dropout

   Inverted dropout: in training each value is kept with probability 1 - rate
   and scaled by 1 / (1 - rate), so its expected value is unchanged and
   evaluation needs no rescaling: y = x * m, dx = dy * m, with m = 1 / (1 -
   rate) where the mask keeps the value and 0 where it drops it (a 0 times
   a NaN is still a NaN, as in PyTorch). In evaluation y = x. Value i of the
   mask takes draw i of the model's random stream; the mask keeps one byte
   a value, not a float, since training keeps it until the backward pass. */
CNN__PRIVATE void cnn__dropout_forward(size_t count, float rate, const float *x, float *y, unsigned char *mask, cnn_rng *rng)
{
    const float keep_scale = 1.0f / (1.0f - rate);
    size_t i;
    for (i = 0; i < count; i++) {
        mask[i] = cnn_rng_uniform(rng) >= rate;
        y[i] = x[i] * (mask[i] ? keep_scale : 0.0f);
    }
}

CNN__PRIVATE void cnn__dropout_backward(size_t count, float rate, const unsigned char *mask, const float *dy, float *dx)
{
    const float keep_scale = 1.0f / (1.0f - rate);
    size_t i;
    for (i = 0; i < count; i++) dx[i] = dy[i] * (mask[i] ? keep_scale : 0.0f);
}

/* ---------------------------------------------------------------- softmax

   p[n,k] = e^(z[n,k] - m) / sum_j e^(z[n,j] - m),  m = max_j z[n,j]
   Subtracting the maximum changes nothing mathematically and keeps every
   exponent <= 0, so logits near 1000 do not overflow.
   Backward for any upstream gradient: dz = p * (dp - sum_j dp_j p_j).
   Training does not use it: with cross-entropy the two fuse into
   dz = (p - onehot(y)) / N (see cnn_model_backward), which is cheaper and
   exact even where p rounds to 0 or 1. */
CNN__PRIVATE void cnn__softmax_forward(int N, int classes, const float *z, float *p)
{
    int n, k;
    for (n = 0; n < N; n++) {
        const float *logits = z + (size_t)n * classes;
        float *prob = p + (size_t)n * classes;
        float max = logits[0], sum = 0.0f;
        for (k = 1; k < classes; k++)
            if (logits[k] > max) max = logits[k];
        for (k = 0; k < classes; k++) {
            prob[k] = expf(logits[k] - max);
            sum += prob[k];
        }
        for (k = 0; k < classes; k++) prob[k] /= sum;
    }
}

CNN__PRIVATE void cnn__softmax_backward(int N, int classes, const float *p, const float *dp, float *dz)
{
    int n, k;
    for (n = 0; n < N; n++) {
        const float *prob = p + (size_t)n * classes, *grad = dp + (size_t)n * classes;
        float dot = 0.0f;
        for (k = 0; k < classes; k++) dot += grad[k] * prob[k];
        for (k = 0; k < classes; k++) dz[(size_t)n * classes + k] = prob[k] * (grad[k] - dot);
    }
}

/* ======================================================================== model */

CNNDEF const char *cnn_layer_type_name(cnn_layer_type type)
{
    switch (type) {
    case CNN_LAYER_CONV2D: return "conv2d";
    case CNN_LAYER_DENSE: return "dense";
    case CNN_LAYER_RELU: return "relu";
    case CNN_LAYER_LEAKY_RELU: return "leaky_relu";
    case CNN_LAYER_SIGMOID: return "sigmoid";
    case CNN_LAYER_TANH: return "tanh";
    case CNN_LAYER_MAX_POOL: return "max_pool";
    case CNN_LAYER_AVG_POOL: return "avg_pool";
    case CNN_LAYER_FLATTEN: return "flatten";
    case CNN_LAYER_DROPOUT: return "dropout";
    case CNN_LAYER_SOFTMAX: return "softmax";
    case CNN_LAYER_BATCH_NORM: return "batch_norm";
    case CNN_LAYER_GLOBAL_AVG_POOL: return "global_avg_pool";
    case CNN_LAYER_RESIDUAL_BEGIN: return "residual_begin";
    case CNN_LAYER_RESIDUAL_END: return "residual_end";
    default: return "unknown";
    }
}

/* Largest sample we accept: every per-sample index fits in an int. */
#define CNN__MAX_SAMPLE_SIZE ((size_t)INT_MAX / 4)

CNNDEF cnn_result cnn_model_init(cnn_model *model, int channels, int height, int width, uint64_t seed)
{
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    memset(model, 0, sizeof *model);
    cnn__clear_error(&model->error);
    cnn_rng_seed(&model->rng, seed);
    model->input.c = channels; model->input.h = height; model->input.w = width;
    if (channels <= 0 || height <= 0 || width <= 0 || cnn_shape_count(model->input) > CNN__MAX_SAMPLE_SIZE)
        return model->definition_error = cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                         "input shape (%d, %d, %d) is not valid: every dimension must be at least 1",
                         channels, height, width);
    return CNN_OK;
}

CNN__PRIVATE cnn_shape cnn__make_shape(int c, int h, int w)
{
    cnn_shape shape;
    shape.c = c; shape.h = h; shape.w = w;
    return shape;
}

/* The output side of a convolution along one axis, or -1 when the kernel
   is larger than the padded input. As in PyTorch, rows and columns past
   the last whole window are left out: 28 rows, kernel 3, stride 2, padding
   1 give 14 (the 30th row of the padded input is in no window). */
CNN__PRIVATE long cnn__conv_side(long in, long kernel, long stride, long padding)
{
    long span = in + 2 * padding - kernel;
    if (span < 0) return -1;
    return span / stride + 1;
}

/* The layer (dense or flatten) that made the model's output a flat vector,
   with only element-wise layers after it; -1 when the output is an image. */
CNN__PRIVATE int cnn__flat_since(const cnn_model *model)
{
    int i;
    for (i = model->layer_count - 1; i >= 0; i--) {
        cnn_layer_type type = model->layers[i].desc.type;
        if (type == CNN_LAYER_DENSE || type == CNN_LAYER_FLATTEN) return i;
        /* (a residual end's output has the shape of its body's: the walk goes on into the body) */
        if (type == CNN_LAYER_CONV2D || type == CNN_LAYER_MAX_POOL || type == CNN_LAYER_AVG_POOL ||
            type == CNN_LAYER_GLOBAL_AVG_POOL)
            return -1;
    }
    return -1;
}

/* The innermost residual begin without its end before layer `before`, or -1. */
CNN__PRIVATE int cnn__open_block(const cnn_model *model, int before)
{
    int i, depth = 0;
    for (i = before - 1; i >= 0; i--) {
        if (model->layers[i].desc.type == CNN_LAYER_RESIDUAL_END) depth++;
        if (model->layers[i].desc.type == CNN_LAYER_RESIDUAL_BEGIN && depth-- == 0) return i;
    }
    return -1;
}

/* The side a pool's windows give along one axis (see the pooling layers):
   (side + 2P - K) / S + 1 rounded down, or up in ceil mode but without a
   window that starts in the padding. */
CNN__PRIVATE int cnn__pool_side(int side, int K, int S, int P, int ceil_mode)
{
    int out = (side + 2 * P - K + (ceil_mode ? S - 1 : 0)) / S + 1;
    if (ceil_mode && (out - 1) * S >= side + P) out--;
    return out;
}

CNN__PRIVATE cnn_result cnn__model_add(cnn_model *model, const cnn_layer_desc *desc_in)
{
    cnn_layer layer;
    cnn_layer_desc *desc = &layer.desc;
    cnn_shape in;
    size_t in_count;
    int flat_from, i;
    if (!model || !desc_in) return CNN_ERROR_INVALID_ARGUMENT;
    if (model->memory)
        return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "layers must be added before cnn_model_build");
    if (cnn_shape_count(model->input) == 0)
        return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "the model has no valid input shape: call cnn_model_init first");
    if (model->layer_count >= CNN_MAX_LAYERS)
        return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                         "a model holds at most %d layers (define CNN_MAX_LAYERS for more)", CNN_MAX_LAYERS);
    memset(&layer, 0, sizeof layer);
    *desc = *desc_in;
    in = model->layer_count ? model->layers[model->layer_count - 1].out : model->input;
    in_count = cnn_shape_count(in);
    layer.in = in;
    layer.out = in;

    if ((desc->type == CNN_LAYER_CONV2D || desc->type == CNN_LAYER_MAX_POOL || desc->type == CNN_LAYER_AVG_POOL ||
         desc->type == CNN_LAYER_GLOBAL_AVG_POOL) &&
        (flat_from = cnn__flat_since(model)) >= 0)
        return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                         "%s needs an image (channels, height, width), but layer %d (%s) made its input a flat vector "
                         "of %d: put conv and pool layers before flatten and dense",
                         cnn_layer_type_name(desc->type), flat_from + 1, cnn_layer_type_name(model->layers[flat_from].desc.type), in.c);
    switch (desc->type) {
    case CNN_LAYER_CONV2D: {
        long out_h, out_w;
        if (desc->stride == 0) desc->stride = 1;
        if (desc->units <= 0 || desc->kernel <= 0 || desc->stride < 0 || desc->padding < 0)
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "conv2d needs filters >= 1, kernel >= 1, stride >= 1 and padding >= 0 (got %d, %d, %d, %d)",
                             desc->units, desc->kernel, desc->stride, desc->padding);
        out_h = cnn__conv_side(in.h, desc->kernel, desc->stride, desc->padding);
        out_w = cnn__conv_side(in.w, desc->kernel, desc->stride, desc->padding);
        if (out_h < 0 || out_w < 0)
            return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                             "conv2d kernel %d, stride %d, padding %d does not fit input %dx%d: "
                             "the kernel is larger than the padded input",
                             desc->kernel, desc->stride, desc->padding, in.h, in.w);
        layer.out = cnn__make_shape(desc->units, (int)out_h, (int)out_w);
        layer.weight_count = cnn__mul_size(cnn__mul_size((size_t)desc->units, (size_t)in.c),
                                           (size_t)desc->kernel * (size_t)desc->kernel);
        layer.bias_count = (size_t)desc->units;
        break;
    }
    case CNN_LAYER_DENSE:
        if (desc->units <= 0)
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "dense needs units >= 1 (got %d)", desc->units);
        if (in.h != 1 || in.w != 1)
            return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                             "dense needs a flat input, got (%d, %d, %d): add cnn_add_flatten first", in.c, in.h, in.w);
        layer.out = cnn__make_shape(desc->units, 1, 1);
        layer.weight_count = cnn__mul_size(in_count, (size_t)desc->units);
        layer.bias_count = (size_t)desc->units;
        break;
    case CNN_LAYER_MAX_POOL:
    case CNN_LAYER_AVG_POOL:
        if (desc->kernel == 0) desc->kernel = 2;
        if (desc->stride == 0) desc->stride = desc->kernel;
        if (desc->kernel < 0 || desc->stride < 0 || desc->padding < 0 || (desc->ceil_mode != 0 && desc->ceil_mode != 1))
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "%s needs size >= 1, stride >= 1, padding >= 0 and ceil_mode 0 or 1 (got %d, %d, %d, %d)",
                             cnn_layer_type_name(desc->type), desc->kernel, desc->stride, desc->padding, desc->ceil_mode);
        if (desc->padding > desc->kernel / 2)
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "%s padding %d is more than half its window %d: a window could hold padding alone",
                             cnn_layer_type_name(desc->type), desc->padding, desc->kernel);
        if (in.h + 2 * desc->padding < desc->kernel || in.w + 2 * desc->padding < desc->kernel)
            return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                             "%s window %dx%d is larger than its input %dx%d with padding %d", cnn_layer_type_name(desc->type),
                             desc->kernel, desc->kernel, in.h, in.w, desc->padding);
        layer.out = cnn__make_shape(in.c, cnn__pool_side(in.h, desc->kernel, desc->stride, desc->padding, desc->ceil_mode),
                                    cnn__pool_side(in.w, desc->kernel, desc->stride, desc->padding, desc->ceil_mode));
        break;
    case CNN_LAYER_GLOBAL_AVG_POOL:
        layer.out = cnn__make_shape(in.c, 1, 1);
        break;
    case CNN_LAYER_BATCH_NORM:
        layer.weight_count = layer.bias_count = (size_t)in.c; /* gamma, beta */
        layer.state_count = 2 * (size_t)in.c;                 /* running mean, running variance */
        break;
    case CNN_LAYER_RESIDUAL_BEGIN:
        break;
    case CNN_LAYER_RESIDUAL_END: {
        const int begin = cnn__open_block(model, model->layer_count);
        cnn_shape x;
        if (begin < 0)
            return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                             "residual_end without a residual_begin: call cnn_add_residual_begin before the block's layers");
        if (begin == model->layer_count - 1)
            return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1, "the residual block that starts at layer %d has no layers",
                             begin + 1);
        x = model->layers[begin].in;
        for (i = begin + 1; i < model->layer_count; i++)
            if ((model->layers[i].desc.type == CNN_LAYER_FLATTEN || model->layers[i].desc.type == CNN_LAYER_DENSE) &&
                (x.h > 1 || x.w > 1))
                return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                                 "the residual block from layer %d flattens its image input (layer %d, %s): its input cannot "
                                 "be added to a flat vector; flatten after the block", begin + 1, i + 1,
                                 cnn_layer_type_name(model->layers[i].desc.type));
        layer.block_begin = begin;
        desc->kernel = desc->stride = 0;
        if (x.c != in.c || x.h != in.h || x.w != in.w) { /* a 1x1 projection: the smallest stride that fits */
            int stride = 1, largest = x.h > x.w ? x.h : x.w;
            while (stride <= largest && ((x.h - 1) / stride + 1 != in.h || (x.w - 1) / stride + 1 != in.w)) stride++;
            if (stride > largest)
                return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                                 "the residual block from layer %d turns (%d, %d, %d) into (%d, %d, %d): no 1x1 convolution "
                                 "with a stride maps the one onto the other, so its input cannot be added",
                                 begin + 1, x.c, x.h, x.w, in.c, in.h, in.w);
            desc->kernel = 1;
            desc->stride = stride;
            desc->units = in.c;
            layer.weight_count = cnn__mul_size((size_t)in.c, (size_t)x.c);
            layer.bias_count = (size_t)in.c;
        }
        break;
    }
    case CNN_LAYER_LEAKY_RELU:
        if (desc->alpha == 0.0f) desc->alpha = 0.3f;
        if (!cnn__is_finite(desc->alpha))
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "leaky_relu alpha must be a finite number");
        break;
    case CNN_LAYER_DROPOUT:
        if (desc->rate == 0.0f) desc->rate = 0.5f;
        if (!(desc->rate > 0.0f && desc->rate < 1.0f))
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "dropout rate must be in (0, 1), got %g",
                             (double)desc->rate);
        break;
    case CNN_LAYER_FLATTEN:
        layer.out = cnn__make_shape(in.c * in.h * in.w, 1, 1);
        break;
    case CNN_LAYER_SOFTMAX:
        if (in.h != 1 || in.w != 1)
            return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                             "softmax needs a flat input, got (%d, %d, %d): add cnn_add_flatten first", in.c, in.h, in.w);
        if (cnn__open_block(model, model->layer_count) >= 0)
            return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                             "softmax inside a residual block: close the block (cnn_add_residual_end) first");
        break;
    case CNN_LAYER_RELU:
    case CNN_LAYER_SIGMOID:
    case CNN_LAYER_TANH:
        break;
    default:
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "unknown layer type %d", (int)desc->type);
    }
    if (desc->init < CNN_INIT_DEFAULT || desc->init > CNN_INIT_HE_UNIFORM)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "unknown initialiser %d", (int)desc->init);
    if (desc->init == CNN_INIT_DEFAULT) desc->init = CNN_INIT_GLOROT_UNIFORM;
    if (cnn_shape_count(layer.out) == 0 || cnn_shape_count(layer.out) > CNN__MAX_SAMPLE_SIZE ||
        (layer.weight_count == 0 && layer.bias_count != 0) || layer.weight_count > CNN__MAX_SAMPLE_SIZE)
        return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1, "%s output or weights are too large",
                         cnn_layer_type_name(desc->type));
    layer.param_offset = model->param_count;
    model->param_count += layer.weight_count + layer.bias_count;
    model->state_count += layer.state_count;
    model->layers[model->layer_count++] = layer;
    CNN_FREE(model->class_names); /* they named the old output's classes */
    model->class_names = NULL;
    model->class_name_count = 0;
    return CNN_OK;
}

CNNDEF cnn_result cnn_model_add(cnn_model *model, const cnn_layer_desc *desc)
{
    cnn_result result;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (model->definition_error != CNN_OK) return model->definition_error;
    result = cnn__model_add(model, desc);
    if (result != CNN_OK && !model->memory) model->definition_error = result;
    return result;
}

CNN__PRIVATE cnn_result cnn__add(cnn_model *model, cnn_layer_type type, int units, int kernel, int stride,
                                 int padding, float alpha, float rate)
{
    cnn_layer_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.type = type; desc.units = units; desc.kernel = kernel; desc.stride = stride;
    desc.padding = padding; desc.alpha = alpha; desc.rate = rate;
    return cnn_model_add(model, &desc);
}

CNNDEF cnn_result cnn_add_conv2d(cnn_model *model, int filters, int kernel, int stride, int padding)
{
    /* stride 0 would silently mean "default 1" in a descriptor; here it is an error */
    return cnn__add(model, CNN_LAYER_CONV2D, filters, kernel, stride <= 0 ? -1 : stride, padding, 0.0f, 0.0f);
}
CNNDEF cnn_result cnn_add_dense(cnn_model *model, int units) { return cnn__add(model, CNN_LAYER_DENSE, units, 0, 0, 0, 0.0f, 0.0f); }
CNNDEF cnn_result cnn_add_relu(cnn_model *model) { return cnn__add(model, CNN_LAYER_RELU, 0, 0, 0, 0, 0.0f, 0.0f); }
CNNDEF cnn_result cnn_add_leaky_relu(cnn_model *model, float alpha) { return cnn__add(model, CNN_LAYER_LEAKY_RELU, 0, 0, 0, 0, alpha, 0.0f); }
CNNDEF cnn_result cnn_add_sigmoid(cnn_model *model) { return cnn__add(model, CNN_LAYER_SIGMOID, 0, 0, 0, 0, 0.0f, 0.0f); }
CNNDEF cnn_result cnn_add_tanh(cnn_model *model) { return cnn__add(model, CNN_LAYER_TANH, 0, 0, 0, 0, 0.0f, 0.0f); }
CNNDEF cnn_result cnn_add_flatten(cnn_model *model) { return cnn__add(model, CNN_LAYER_FLATTEN, 0, 0, 0, 0, 0.0f, 0.0f); }
CNNDEF cnn_result cnn_add_softmax(cnn_model *model) { return cnn__add(model, CNN_LAYER_SOFTMAX, 0, 0, 0, 0, 0.0f, 0.0f); }
CNNDEF cnn_result cnn_add_dropout(cnn_model *model, float rate) { return cnn__add(model, CNN_LAYER_DROPOUT, 0, 0, 0, 0, 0.0f, rate); }

CNN__PRIVATE cnn_result cnn__add_pool(cnn_model *model, cnn_layer_type type, int size, int stride)
{
    /* 0 would silently mean "default" in a descriptor; here it is an error */
    return cnn__add(model, type, 0, size <= 0 ? -1 : size, stride <= 0 ? -1 : stride, 0, 0.0f, 0.0f);
}
CNNDEF cnn_result cnn_add_max_pool(cnn_model *model, int size, int stride) { return cnn__add_pool(model, CNN_LAYER_MAX_POOL, size, stride); }
CNNDEF cnn_result cnn_add_avg_pool(cnn_model *model, int size, int stride) { return cnn__add_pool(model, CNN_LAYER_AVG_POOL, size, stride); }
CNNDEF cnn_result cnn_add_batch_norm(cnn_model *model) { return cnn__add(model, CNN_LAYER_BATCH_NORM, 0, 0, 0, 0, 0.0f, 0.0f); }
CNNDEF cnn_result cnn_add_global_avg_pool(cnn_model *model) { return cnn__add(model, CNN_LAYER_GLOBAL_AVG_POOL, 0, 0, 0, 0, 0.0f, 0.0f); }
CNNDEF cnn_result cnn_add_residual_begin(cnn_model *model) { return cnn__add(model, CNN_LAYER_RESIDUAL_BEGIN, 0, 0, 0, 0, 0.0f, 0.0f); }

CNNDEF cnn_result cnn_add_residual_end(cnn_model *model, cnn_init init)
{
    cnn_layer_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.type = CNN_LAYER_RESIDUAL_END;
    desc.init = init;
    return cnn_model_add(model, &desc);
}

CNNDEF cnn_result cnn_add_lenet5(cnn_model *model, int classes)
{
    /* an error sticks (see cnn_model_add), so the last result is the first error */
    cnn_add_conv2d(model, 6, 5, 1, 2);   /* (6, 28, 28) */
    cnn_add_relu(model);
    cnn_add_max_pool(model, 2, 2);       /* (6, 14, 14) */
    cnn_add_conv2d(model, 16, 5, 1, 0);  /* (16, 10, 10) */
    cnn_add_relu(model);
    cnn_add_max_pool(model, 2, 2);       /* (16, 5, 5) */
    cnn_add_flatten(model);              /* (400) */
    cnn_add_dense(model, 120);
    cnn_add_relu(model);
    cnn_add_dense(model, 84);
    cnn_add_relu(model);
    cnn_add_dense(model, classes);
    return cnn_add_softmax(model);
}

CNNDEF cnn_shape cnn_model_output_shape(const cnn_model *model)
{
    if (!model || model->layer_count == 0) return model ? model->input : cnn__make_shape(0, 0, 0);
    return model->layers[model->layer_count - 1].out;
}

/* Fills a layer's weights from its initialiser; biases start at zero.
   fan_in and fan_out count the inputs and outputs each weight touches:
   C*K*K and OC*K*K for conv2d (as Keras counts them), IN and OUT for dense. */
CNN__PRIVATE void cnn__init_weights(cnn_layer *layer, cnn_rng *rng)
{
    double fan_in, fan_out, limit;
    size_t i;
    if (layer->desc.type == CNN_LAYER_BATCH_NORM) { /* the identity: gamma 1, beta 0 */
        for (i = 0; i < layer->weight_count; i++) layer->weight[i] = 1.0f;
        memset(layer->bias, 0, layer->bias_count * sizeof(float));
        return;
    }
    if (layer->desc.type == CNN_LAYER_RESIDUAL_END) { /* the projection: a 1x1 conv */
        fan_in = (double)layer->weight_count / (double)layer->bias_count;
        fan_out = (double)layer->bias_count;
    } else if (layer->desc.type == CNN_LAYER_CONV2D) {
        double area = (double)layer->desc.kernel * layer->desc.kernel;
        fan_in = layer->in.c * area;
        fan_out = layer->out.c * area;
    } else {
        fan_in = (double)cnn_shape_count(layer->in);
        fan_out = (double)cnn_shape_count(layer->out);
    }
    switch (layer->desc.init) {
    case CNN_INIT_HE_NORMAL: {
        float sd = (float)sqrt(2.0 / fan_in);
        for (i = 0; i < layer->weight_count; i++) layer->weight[i] = sd * cnn_rng_normal(rng);
        break;
    }
    case CNN_INIT_HE_UNIFORM:
    default:
        limit = layer->desc.init == CNN_INIT_HE_UNIFORM ? sqrt(6.0 / fan_in) : sqrt(6.0 / (fan_in + fan_out));
        for (i = 0; i < layer->weight_count; i++)
            layer->weight[i] = (float)limit * (2.0f * cnn_rng_uniform(rng) - 1.0f);
        break;
    }
    memset(layer->bias, 0, layer->bias_count * sizeof(float));
}

/* Adds b to *total, or returns 0 when the sum overflows. */
CNN__PRIVATE int cnn__add_size(size_t *total, size_t b)
{
    if (b > (size_t)-1 - *total) return 0;
    *total += b;
    return 1;
}

/* Adds a * b to *total, or returns 0 when the product or the sum overflows. */
CNN__PRIVATE int cnn__add_product(size_t *total, size_t a, size_t b)
{
    if (a != 0 && b > (size_t)-1 / a) return 0;
    return cnn__add_size(total, a * b);
}

/* ---------------------------------------------------------------- memory

   Training keeps, from the forward pass to the backward pass, the values
   the backward pass reads, and the activations are most of a model's
   memory. Two kinds of sharing cut them down (cnn_model_keep_outputs turns
   both off):
   - In place. ReLU, LeakyReLU (alpha > 0), sigmoid and tanh compute their
     gradient from their output y alone, dropout from its mask, flatten
     from nothing, so each may write y over its input x, unless the layer
     that made x reads x again in its own backward pass (x is that layer's
     y: another activation, softmax). Backward, such a layer writes dx over
     dy. ReLU after conv2d is the usual case: conv2d's output is read by
     nothing but the ReLU.
   - Gradient over output. Backward runs from the last layer to the first,
     so when layer i's backward pass runs, every layer after it is done and
     its output activations[i + 1] is read by nobody, unless layer i reads
     it itself (the activations, softmax). So layer i writes dx over its own
     output when it fits, unless that memory holds one of the last two
     activations (through layers run in place over it): the logits and
     probabilities that cnn_model_loss reads are kept.
   The other gradients take turns in two buffers, each as large as the
   largest gradient it holds. */

/* 1 if the layer's backward pass reads its own output y */
CNN__PRIVATE int cnn__backward_reads_output(const cnn_layer *layer)
{
    switch (layer->desc.type) {
    case CNN_LAYER_RELU: case CNN_LAYER_LEAKY_RELU: case CNN_LAYER_SIGMOID: case CNN_LAYER_TANH: case CNN_LAYER_SOFTMAX: return 1;
    default: return 0;
    }
}

/* 1 if layer i writes its output over its input: activations[i + 1] is
   then activations[i], and activation_grads[i] activation_grads[i + 1].
   Never over the input itself, activations[0]. */
CNN__PRIVATE int cnn__runs_in_place(const cnn_model *model, int i)
{
    const cnn_layer_desc *d = &model->layers[i].desc;
    if (model->keep_outputs || i == 0 || cnn__backward_reads_output(&model->layers[i - 1])) return 0;
    return d->type == CNN_LAYER_RELU || d->type == CNN_LAYER_SIGMOID || d->type == CNN_LAYER_TANH || d->type == CNN_LAYER_DROPOUT ||
           d->type == CNN_LAYER_FLATTEN || (d->type == CNN_LAYER_LEAKY_RELU && d->alpha > 0.0f);
}

/* The last activation whose memory activations[k] shares: layers after k
   that run in place write their outputs there too. */
CNN__PRIVATE int cnn__last_sharing(const cnn_model *model, int k)
{
    while (k < model->layer_count && cnn__runs_in_place(model, k)) k++;
    return k;
}

/* Where each activation gradient goes, in place[i] for activation_grads[i]:
   0 or 1 for the gradient buffers, -(k + 1) for the memory of
   activations[k]; and the floats per sample each buffer needs. sizes[i] is
   the floats per sample of activations[i]. */
CNN__PRIVATE void cnn__plan_gradients(const cnn_model *model, const size_t *sizes, int *place, size_t *buffer_size)
{
    const int last = model->layer_count;
    int i;
    place[last] = 0;
    buffer_size[0] = sizes[last];
    buffer_size[1] = 0;
    for (i = last - 1; i >= 0; i--) {
        const int above = place[i + 1];
        if (cnn__runs_in_place(model, i)) {
            place[i] = above;
        } else if (!model->keep_outputs && cnn__last_sharing(model, i + 1) + 2 <= last &&
                   !cnn__backward_reads_output(&model->layers[i]) && sizes[i] <= sizes[i + 1]) {
            place[i] = -(i + 2);  /* over activations[i + 1] (-(k + 1) for k = i + 1): not in place, so its own memory */
        } else {
            /* the buffer dy is not in; when dy is in neither, the larger */
            place[i] = above >= 0 ? 1 - above : buffer_size[1] > buffer_size[0];
            if (sizes[i] > buffer_size[place[i]]) buffer_size[place[i]] = sizes[i];
        }
    }
}

CNNDEF cnn_result cnn_model_keep_outputs(cnn_model *model, int keep)
{
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (model->memory) return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "cnn_model_keep_outputs comes before cnn_model_build");
    model->keep_outputs = keep != 0;
    return CNN_OK;
}

CNNDEF cnn_result cnn_model_build(cnn_model *model, int max_batch)
{
    size_t floats = 0, ints = 0, bytes = 0, batch = (size_t)max_batch, buffer_size[2];
    size_t sizes[CNN_MAX_LAYERS + 1];
    int place[CNN_MAX_LAYERS + 1];
    float *buffers[2];
    unsigned char *byte_cursor;
    float *cursor, *state;
    int *int_cursor;
    int i, ok = 1;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (model->definition_error != CNN_OK) return model->definition_error; /* model->error says why */
    if (model->memory) return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "the model is built already");
    if (model->layer_count == 0) return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "the model has no layers");
    if ((i = cnn__open_block(model, model->layer_count)) >= 0)
        return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                         "the residual block that starts at layer %d has no end: add cnn_add_residual_end", i + 1);
    if (max_batch <= 0) return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "max_batch must be >= 1, got %d", max_batch);

    /* count: params, state, grads, activations (but those in place), two
       buffers for their gradients, dropout masks, batch norm's batch
       statistics, residual skip gradients, max pool positions, labels */
    sizes[0] = cnn_shape_count(model->input);
    ok &= cnn__add_product(&floats, 2, model->param_count);
    ok &= cnn__add_size(&floats, model->state_count);
    ok &= cnn__add_product(&floats, batch, sizes[0]);
    for (i = 0; i < model->layer_count; i++) {
        cnn_layer *layer = &model->layers[i];
        sizes[i + 1] = cnn_shape_count(layer->out);
        if (!cnn__runs_in_place(model, i)) ok &= cnn__add_product(&floats, batch, sizes[i + 1]);
        if (layer->desc.type == CNN_LAYER_DROPOUT) ok &= cnn__add_product(&bytes, batch, sizes[i + 1]);
        if (layer->desc.type == CNN_LAYER_BATCH_NORM) ok &= cnn__add_size(&floats, layer->state_count);
        if (layer->desc.type == CNN_LAYER_RESIDUAL_END) ok &= cnn__add_product(&floats, batch, sizes[layer->block_begin]);
        if (layer->desc.type == CNN_LAYER_MAX_POOL) ok &= cnn__add_product(&ints, batch, sizes[i + 1]);
    }
    cnn__plan_gradients(model, sizes, place, buffer_size);
    ok &= cnn__add_product(&floats, batch, buffer_size[0]);
    ok &= cnn__add_product(&floats, batch, buffer_size[1]);
    ok &= cnn__add_size(&ints, batch);
    ok &= cnn__add_product(&bytes, ints, sizeof(int)); /* the ints come first */
    if (!ok || cnn__mul_size(floats, sizeof(float)) == 0)
        return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "the model is too large for this machine's address space");

    model->memory = CNN_MALLOC(floats * sizeof(float));
    model->int_memory = CNN_MALLOC(bytes);
    if (!model->memory || !model->int_memory) {
        CNN_FREE(model->memory);
        CNN_FREE(model->int_memory);
        model->memory = model->int_memory = NULL;
        return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1,
                         "out of memory allocating %.1f MB for the model", (double)(floats * sizeof(float)) / 1e6);
    }
    memset(model->memory, 0, floats * sizeof(float));
    memset(model->int_memory, 0, bytes);
    model->threads = 1;
#ifndef CNN_NO_FAST
    {   /* the FAST section's working memory, and its thread count */
        const cnn_result fast_result = cnn__fast_build(model, max_batch);
        if (fast_result != CNN_OK) {
            CNN_FREE(model->memory);
            CNN_FREE(model->int_memory);
            model->memory = model->int_memory = NULL;
            return fast_result;
        }
    }
#endif

    /* hand out the blocks */
    cursor = (float *)model->memory;
    model->params = cursor; cursor += model->param_count;
    model->state = cursor; cursor += model->state_count;
    model->grads = cursor; cursor += model->param_count;
    /* activations, and their gradients as cnn__plan_gradients placed them
       (see "memory" above) */
    for (i = 0; i <= model->layer_count; i++) {
        cnn_shape shape = i == 0 ? model->input : model->layers[i - 1].out;
        cnn_tensor *act = &model->activations[i], *grad = &model->activation_grads[i];
        act->n = grad->n = max_batch;
        act->c = grad->c = shape.c; act->h = grad->h = shape.h; act->w = grad->w = shape.w;
        if (i > 0 && cnn__runs_in_place(model, i - 1)) {
            act->data = model->activations[i - 1].data;
        } else {
            act->data = cursor;
            cursor += batch * sizes[i];
        }
    }
    buffers[0] = cursor; cursor += batch * buffer_size[0];
    buffers[1] = cursor; cursor += batch * buffer_size[1];
    for (i = 0; i <= model->layer_count; i++)
        model->activation_grads[i].data = place[i] >= 0 ? buffers[place[i]] : model->activations[-place[i] - 1].data;
    int_cursor = (int *)model->int_memory;
    model->labels = int_cursor; int_cursor += max_batch;
    byte_cursor = (unsigned char *)model->int_memory + ints * sizeof(int);
    state = model->state;
    for (i = 0; i < model->layer_count; i++) {
        cnn_layer *layer = &model->layers[i];
        layer->weight = model->params + layer->param_offset;
        layer->bias = layer->weight + layer->weight_count;
        layer->weight_grad = model->grads + layer->param_offset;
        layer->bias_grad = layer->weight_grad + layer->weight_count;
        if (layer->desc.type == CNN_LAYER_DROPOUT) { layer->mask = byte_cursor; byte_cursor += batch * sizes[i + 1]; }
        if (layer->desc.type == CNN_LAYER_MAX_POOL) { layer->argmax = int_cursor; int_cursor += batch * sizes[i + 1]; }
        if (layer->desc.type == CNN_LAYER_BATCH_NORM) {
            const size_t C = (size_t)layer->in.c;
            size_t k;
            layer->running_mean = state; state += C;
            layer->running_var = state; state += C;
            for (k = 0; k < C; k++) layer->running_var[k] = 1.0f; /* as PyTorch starts them: mean 0, variance 1 */
            layer->batches_tracked = 0;
            layer->batch_mean = cursor; cursor += C;
            layer->batch_inv_std = cursor; cursor += C;
        }
        if (layer->desc.type == CNN_LAYER_RESIDUAL_END) { /* begin and end share the skip path's gradient */
            layer->skip_grad = model->layers[layer->block_begin].skip_grad = cursor;
            cursor += batch * sizes[layer->block_begin];
        }
        if (layer->weight_count) cnn__init_weights(layer, &model->rng);
    }
    model->max_batch = max_batch;
    model->batch = 0;
    return CNN_OK;
}

CNNDEF const char *cnn_model_instruction_set(const cnn_model *model)
{
#ifndef CNN_NO_FAST
    if (model && model->fast) return cnn__fast_instruction_set(model);
#endif
    (void)model;
    return "plain";
}

CNNDEF void cnn_model_free(cnn_model *model)
{
    if (!model) return;
#ifndef CNN_NO_FAST
    cnn__fast_free(model);
#endif
    CNN_FREE(model->memory);
    CNN_FREE(model->int_memory);
    CNN_FREE(model->class_names);
    memset(model, 0, sizeof *model);
}

/* A layer as the summary names it: "conv2d 5x5 s1 p2", "max_pool 2x2 s2",
   "leaky_relu 0.3"; its output shape says the rest. */
CNN__PRIVATE void cnn__layer_label(const cnn_layer_desc *d, char *text, size_t size)
{
    switch (d->type) {
    case CNN_LAYER_CONV2D: snprintf(text, size, "conv2d %dx%d s%d p%d", d->kernel, d->kernel, d->stride, d->padding); break;
    case CNN_LAYER_MAX_POOL: case CNN_LAYER_AVG_POOL: {
        char padding[16] = "";
        if (d->padding) snprintf(padding, sizeof padding, " p%d", d->padding);
        snprintf(text, size, "%s %dx%d s%d%s%s", cnn_layer_type_name(d->type), d->kernel, d->kernel, d->stride, padding,
                 d->ceil_mode ? " ceil" : "");
        break;
    }
    case CNN_LAYER_RESIDUAL_BEGIN: snprintf(text, size, "residual_begin"); break;
    case CNN_LAYER_RESIDUAL_END:
        if (d->kernel) snprintf(text, size, "residual_end + conv 1x1 s%d", d->stride);
        else snprintf(text, size, "residual_end + input");
        break;
    case CNN_LAYER_LEAKY_RELU: snprintf(text, size, "leaky_relu %g", (double)d->alpha); break;
    case CNN_LAYER_DROPOUT: snprintf(text, size, "dropout %g", (double)d->rate); break;
    default: snprintf(text, size, "%s", cnn_layer_type_name(d->type)); break;
    }
}

/* "1234567" -> "1,234,567" */
CNN__PRIVATE void cnn__format_count(size_t value, char *out, size_t size)
{
    char digits[32];
    int length = snprintf(digits, sizeof digits, "%lu", (unsigned long)value), i, o = 0;
    for (i = 0; i < length && (size_t)o + 2 < size; i++) {
        if (i > 0 && (length - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

CNNDEF size_t cnn_model_summary(const cnn_model *model, char *buffer, size_t size)
{
    size_t used = 0;
    char text[96], shape[48], count[32];
    int i, depth = 0;
    if (!model) return 0;
    if (buffer && size) buffer[0] = '\0';
#define CNN__APPEND(...)                                                                     \
    do {                                                                                     \
        int written_ = snprintf(used < size && buffer ? buffer + used : NULL,                \
                                used < size && buffer ? size - used : 0, __VA_ARGS__);       \
        if (written_ > 0) used += (size_t)written_;                                          \
    } while (0)
    CNN__APPEND("%-28s %-18s %12s\n", "layer", "output shape", "parameters");
    snprintf(shape, sizeof shape, "(%d, %d, %d)", model->input.c, model->input.h, model->input.w);
    CNN__APPEND("%-28s %-18s %12s\n", "input", shape, "0");
    for (i = 0; i < model->layer_count; i++) {
        const cnn_layer *layer = &model->layers[i];
        /* a residual block's layers are indented under its begin */
        int indent = 2 * (layer->desc.type == CNN_LAYER_RESIDUAL_END ? depth - 1 : depth);
        if (indent > 20) indent = 20;
        memset(text, ' ', (size_t)indent);
        cnn__layer_label(&layer->desc, text + indent, sizeof text - (size_t)indent);
        depth += layer->desc.type == CNN_LAYER_RESIDUAL_BEGIN;
        depth -= layer->desc.type == CNN_LAYER_RESIDUAL_END;
        if (layer->out.h == 1 && layer->out.w == 1) snprintf(shape, sizeof shape, "(%d)", layer->out.c);
        else snprintf(shape, sizeof shape, "(%d, %d, %d)", layer->out.c, layer->out.h, layer->out.w);
        cnn__format_count(layer->weight_count + layer->bias_count, count, sizeof count);
        CNN__APPEND("%-28s %-18s %12s\n", text, shape, count);
    }
    cnn__format_count(model->param_count, count, sizeof count);
    CNN__APPEND("total parameters: %s\n", count);
#undef CNN__APPEND
    return used;
}

/* ---------------------------------------------------------------- forward and backward */

/* The first batch norm layer that would see a single value per channel in
   a training batch of `batch` samples (after a dense layer, a batch of 1),
   or -1. Its variance would be 0/0: PyTorch refuses such a batch too. */
CNN__PRIVATE int cnn__single_value_layer(const cnn_model *model, int batch)
{
    int i;
    for (i = 0; i < model->layer_count; i++)
        if (model->layers[i].desc.type == CNN_LAYER_BATCH_NORM && (size_t)batch * model->layers[i].in.h * model->layers[i].in.w == 1)
            return i;
    return -1;
}

CNN__PRIVATE cnn_result cnn__check_training_batch(cnn_model *model, int batch)
{
    const int layer = cnn__single_value_layer(model, batch);
    if (layer < 0) return CNN_OK;
    return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                     "batch_norm (layer %d) needs more than one value per channel in training, and a batch of 1 gives it one: "
                     "train on batches of 2 or more", layer + 1);
}

CNN__PRIVATE cnn_result cnn__check_batch(cnn_model *model, int batch)
{
    if (!model->memory) return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "the model is not built: call cnn_model_build");
    if (batch <= 0 || batch > model->max_batch)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "batch of %d samples: must be between 1 and max_batch %d", batch, model->max_batch);
    return CNN_OK;
}

/* count floats from `from` to `to`; nothing when they are the same memory,
   as for a layer that runs in place */
CNN__PRIVATE void cnn__copy(float *to, const float *from, size_t count)
{
    if (to != from) memcpy(to, from, count * sizeof(float));
}

/* Layer i of a model on the model's batch: activations[i] in,
   activations[i + 1] out; backward, activation_grads[i + 1] in,
   activation_grads[i] out (conv2d and dense skip it when want_input_grad is
   0: cnn__backward passes 0 only to the first layer with parameters).
   Flatten is y = x, the same floats read as a (C*H*W) vector (NCHW is
   already flat), and so is dropout in evaluation; backward, both copy dy
   to dx. */
CNN__PRIVATE void cnn__layer_forward(cnn_model *model, int i)
{
    cnn_layer *layer = &model->layers[i];
    const int N = model->batch;
    const float *x = model->activations[i].data;
    float *y = model->activations[i + 1].data;
    const size_t count = (size_t)N * cnn_shape_count(layer->out);
    switch (layer->desc.type) {
    case CNN_LAYER_CONV2D: cnn__conv2d_forward(layer, N, x, y); break;
    case CNN_LAYER_DENSE: cnn__dense_forward(layer, N, x, y); break;
    case CNN_LAYER_RELU: case CNN_LAYER_LEAKY_RELU: case CNN_LAYER_SIGMOID: case CNN_LAYER_TANH:
        cnn__activation_forward(layer, count, x, y);
        break;
    case CNN_LAYER_MAX_POOL: cnn__max_pool_forward(layer, N, x, y, layer->argmax); break;
    case CNN_LAYER_AVG_POOL: cnn__avg_pool_forward(layer, N, x, y); break;
    case CNN_LAYER_SOFTMAX: cnn__softmax_forward(N, layer->out.c, x, y); break;
    case CNN_LAYER_DROPOUT:
        if (model->mode == CNN_MODE_TRAIN) cnn__dropout_forward(count, layer->desc.rate, x, y, layer->mask, &model->rng);
        else cnn__copy(y, x, count);
        break;
    case CNN_LAYER_FLATTEN: case CNN_LAYER_RESIDUAL_BEGIN: cnn__copy(y, x, count); break;
    case CNN_LAYER_BATCH_NORM: cnn__batch_norm_forward(layer, N, model->mode, x, y); break;
    case CNN_LAYER_GLOBAL_AVG_POOL: cnn__global_avg_pool_forward(layer, N, x, y); break;
    case CNN_LAYER_RESIDUAL_END:
        cnn__residual_end_forward(model, layer, N, model->activations[layer->block_begin].data, x, y);
        break;
    default: CNN_ASSERT(0); break;
    }
}

CNN__PRIVATE void cnn__layer_backward(cnn_model *model, int i, int want_input_grad)
{
    cnn_layer *layer = &model->layers[i];
    const int N = model->batch;
    const float *x = model->activations[i].data, *y = model->activations[i + 1].data;
    const float *dy = model->activation_grads[i + 1].data;
    float *dx = model->activation_grads[i].data;
    const size_t count = (size_t)N * cnn_shape_count(layer->out);
    switch (layer->desc.type) {
    case CNN_LAYER_CONV2D: cnn__conv2d_backward(layer, N, x, dy, want_input_grad ? dx : NULL); break;
    case CNN_LAYER_DENSE: cnn__dense_backward(layer, N, x, dy, want_input_grad ? dx : NULL); break;
    case CNN_LAYER_RELU: case CNN_LAYER_LEAKY_RELU: case CNN_LAYER_SIGMOID: case CNN_LAYER_TANH:
        cnn__activation_backward(layer, count, x, y, dy, dx);
        break;
    case CNN_LAYER_MAX_POOL: cnn__max_pool_backward(layer, N, dy, layer->argmax, dx); break;
    case CNN_LAYER_AVG_POOL: cnn__avg_pool_backward(layer, N, dy, dx); break;
    case CNN_LAYER_SOFTMAX: cnn__softmax_backward(N, layer->out.c, y, dy, dx); break;
    case CNN_LAYER_DROPOUT:
        if (model->mode == CNN_MODE_TRAIN) cnn__dropout_backward(count, layer->desc.rate, layer->mask, dy, dx);
        else cnn__copy(dx, dy, count);
        break;
    case CNN_LAYER_FLATTEN: cnn__copy(dx, dy, count); break;
    case CNN_LAYER_BATCH_NORM: cnn__batch_norm_backward(layer, N, model->mode, x, dy, dx); break;
    case CNN_LAYER_GLOBAL_AVG_POOL: cnn__global_avg_pool_backward(layer, N, dy, dx); break;
    case CNN_LAYER_RESIDUAL_BEGIN: cnn__residual_begin_backward(count, dy, layer->skip_grad, dx); break;
    case CNN_LAYER_RESIDUAL_END:
        cnn__residual_end_backward(model, layer, N, model->activations[layer->block_begin].data, dy, dx);
        break;
    default: CNN_ASSERT(0); break;
    }
}

/* A forward pass of N samples in mode, in two parts: begin, then each
   layer in turn, its fast twin where the FAST section has one, else its
   plain loops. */
CNN__PRIVATE void cnn__forward_begin(cnn_model *model, int N, cnn_mode mode)
{
    int i;
    model->batch = N;
    model->mode = mode;
    for (i = 0; i <= model->layer_count; i++) model->activations[i].n = model->activation_grads[i].n = N;
}

CNN__PRIVATE void cnn__forward_layer(cnn_model *model, int i)
{
#ifndef CNN_NO_FAST
    if (cnn__layer_forward_fast(model, i)) return;
#endif
    cnn__layer_forward(model, i);
}

/* Runs every layer on the batch already in activations[0] */
CNN__PRIVATE void cnn__forward(cnn_model *model, int N, cnn_mode mode)
{
    int i;
    cnn__forward_begin(model, N, mode);
    for (i = 0; i < model->layer_count; i++) cnn__forward_layer(model, i);
}

/* Runs layers last-1 .. 0 backward, from activation_grads[last]. Training
   has no use for d loss / d input, so it passes want_input_grad = 0: then
   the pass stops at the first layer with parameters, which skips its input
   gradient (a whole matrix product), and the parameterless layers in front
   of it (the flatten before an MLP) are not run at all. */
CNN__PRIVATE void cnn__backward(cnn_model *model, int last, int want_input_grad)
{
    int i, first = 0;
    if (!want_input_grad)
        while (first < last && model->layers[first].weight_count == 0) first++;
    for (i = last - 1; i >= first; i--) {
        const int want_dx = i > first || want_input_grad;
#ifndef CNN_NO_FAST
        if (cnn__layer_backward_fast(model, i, want_dx)) continue;
#endif
        cnn__layer_backward(model, i, want_dx);
    }
}

CNNDEF cnn_result cnn_model_forward(cnn_model *model, const float *input, int batch, cnn_mode mode)
{
    cnn_result result;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!input) return cnn__null_argument(&model->error, "cnn_model_forward", "input");
    if ((result = cnn__check_batch(model, batch)) != CNN_OK) return result;
    if (mode != CNN_MODE_EVAL && mode != CNN_MODE_TRAIN)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "unknown mode %d", (int)mode);
    if (mode == CNN_MODE_TRAIN && (result = cnn__check_training_batch(model, batch)) != CNN_OK) return result;
    if (input != model->activations[0].data)
        memmove(model->activations[0].data, input, (size_t)batch * cnn_shape_count(model->input) * sizeof(float));
    cnn__forward(model, batch, mode);
    return CNN_OK;
}

CNNDEF const float *cnn_model_output(const cnn_model *model)
{
    if (!model || !model->memory) return NULL;
    return model->activations[model->layer_count].data;
}

/* Checks that the model ends in softmax, has a forward pass to work on, and
   that every label names one of its classes. */
CNN__PRIVATE cnn_result cnn__check_labels(cnn_model *model, const int *labels)
{
    int n, classes;
    if (!model->memory || model->batch == 0)
        return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "no forward pass to compute a loss on: call cnn_model_forward first");
    if (model->layers[model->layer_count - 1].desc.type != CNN_LAYER_SOFTMAX)
        return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "cross-entropy needs a model that ends with softmax");
    classes = model->layers[model->layer_count - 1].out.c;
    for (n = 0; n < model->batch; n++)
        if (labels[n] < 0 || labels[n] >= classes)
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "label %d of sample %d in the batch (counting from 0) is outside the model's classes 0..%d",
                             labels[n], n, classes - 1);
    return CNN_OK;
}

/* loss_n = -log p[n, y_n] = log sum_k e^(z[n,k] - m) - (z[n, y_n] - m),
   computed from the logits z rather than from p, so that a probability that
   rounds to 0 gives a large finite loss instead of log(0) = -inf. */
CNNDEF cnn_result cnn_model_loss(cnn_model *model, const int *labels, float *mean_loss, int *correct)
{
    const float *z, *p;
    double total = 0.0;
    int n, k, classes, right = 0;
    cnn_result result;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!labels) return cnn__null_argument(&model->error, "cnn_model_loss", "labels");
    if ((result = cnn__check_labels(model, labels)) != CNN_OK) return result;
    classes = model->layers[model->layer_count - 1].out.c;
    z = model->activations[model->layer_count - 1].data;
    p = model->activations[model->layer_count].data;
    for (n = 0; n < model->batch; n++) {
        const float *logits = z + (size_t)n * classes, *prob = p + (size_t)n * classes;
        float max = logits[0];
        double sum = 0.0;
        int best = 0;
        for (k = 1; k < classes; k++) {
            if (logits[k] > max) max = logits[k];
            if (prob[k] > prob[best]) best = k;
        }
        for (k = 0; k < classes; k++) sum += exp((double)logits[k] - max);
        total += log(sum) - ((double)logits[labels[n]] - max);
        right += best == labels[n];
    }
    if (mean_loss) *mean_loss = (float)(total / model->batch);
    if (correct) *correct = right;
    return CNN_OK;
}

CNNDEF void cnn_model_zero_grad(cnn_model *model)
{
    if (model && model->grads) memset(model->grads, 0, model->param_count * sizeof(float));
}

/* Fused softmax + cross-entropy: for L = mean_n -log p[n, y_n],
   dL/dz[n,k] = (p[n,k] - [k == y_n]) / N. It goes straight into the
   gradient of the softmax's input, and the softmax layer's own backward is
   skipped. */
CNN__PRIVATE cnn_result cnn__loss_backward(cnn_model *model, const int *labels, int want_input_grad)
{
    const int last = model ? model->layer_count - 1 : 0;
    const float *p;
    float *dz, scale;
    int n, k, classes;
    cnn_result result;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!labels) return cnn__null_argument(&model->error, "cnn_model_backward", "labels");
    if ((result = cnn__check_labels(model, labels)) != CNN_OK) return result;
    classes = model->layers[last].out.c;
    p = model->activations[last + 1].data;
    dz = model->activation_grads[last].data;
    scale = 1.0f / (float)model->batch;
    for (n = 0; n < model->batch; n++)
        for (k = 0; k < classes; k++) {
            size_t at = (size_t)n * classes + k;
            dz[at] = (p[at] - (k == labels[n] ? 1.0f : 0.0f)) * scale;
        }
    cnn__backward(model, last, want_input_grad);
    return CNN_OK;
}

CNNDEF cnn_result cnn_model_backward(cnn_model *model, const int *labels)
{
    return cnn__loss_backward(model, labels, 1);
}

CNNDEF cnn_result cnn_model_backward_from(cnn_model *model, const float *output_grad)
{
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!output_grad) return cnn__null_argument(&model->error, "cnn_model_backward_from", "output_grad");
    if (!model->memory || model->batch == 0)
        return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "no forward pass to go backward from: call cnn_model_forward first");
    memmove(model->activation_grads[model->layer_count].data, output_grad,
            (size_t)model->batch * cnn_shape_count(cnn_model_output_shape(model)) * sizeof(float));
    cnn__backward(model, model->layer_count, 1);
    return CNN_OK;
}

CNNDEF cnn_result cnn_model_predict(cnn_model *model, const float *input, int count, int *classes, float *probabilities)
{
    size_t in_size, out_size;
    int start, n, k;
    cnn_result result;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!input) return cnn__null_argument(&model->error, "cnn_model_predict", "input");
    if (!classes) return cnn__null_argument(&model->error, "cnn_model_predict", "classes");
    if (count <= 0)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_model_predict: count must be >= 1, got %d", count);
    if ((result = cnn__check_batch(model, 1)) != CNN_OK) return result;
    in_size = cnn_shape_count(model->input);
    out_size = cnn_shape_count(cnn_model_output_shape(model));
    for (start = 0; start < count; start += model->max_batch) {
        int batch = count - start < model->max_batch ? count - start : model->max_batch;
        const float *out;
        if ((result = cnn_model_forward(model, input + (size_t)start * in_size, batch, CNN_MODE_EVAL)) != CNN_OK) return result;
        out = cnn_model_output(model);
        for (n = 0; n < batch; n++) {
            const float *row = out + (size_t)n * out_size;
            int best = 0;
            for (k = 1; k < (int)out_size; k++)
                if (row[k] > row[best]) best = k;
            classes[start + n] = best;
        }
        if (probabilities) memcpy(probabilities + (size_t)start * out_size, out, (size_t)batch * out_size * sizeof(float));
    }
    return CNN_OK;
}

/* The names live in one allocation: class_name_count pointers, then the
   text they point into. */
CNNDEF cnn_result cnn_model_set_class_names(cnn_model *model, const char *const *names, int count)
{
    size_t text = 0, length, at;
    char **block;
    int classes, i;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (model->layer_count == 0)
        return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "add the model's layers before naming its classes");
    classes = (int)cnn_shape_count(cnn_model_output_shape(model));
    if (count != 0 && count != classes)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "%d class names given for a model with %d classes",
                         count, classes);
    if (count > CNN_MAX_CLASSES)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "%d class names: a model keeps %d at most (CNN_MAX_CLASSES)",
                         count, CNN_MAX_CLASSES);
    if (count > 0 && !names) return cnn__null_argument(&model->error, "cnn_model_set_class_names", "names");
    for (i = 0; i < count; i++) {
        const unsigned char *name = (const unsigned char *)names[i];
        if (!name) return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "class %d has no name (NULL)", i);
        for (length = 0; name[length]; length++)
            if (name[length] < 0x20 || name[length] == 0x7f)
                return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                                 "the name of class %d holds a control character (byte %lu)", i, (unsigned long)length);
        if (length == 0 || length > 255)
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "the name of class %d is %lu bytes long; names have 1 to 255", i, (unsigned long)length);
        text += length + 1;
    }
    block = NULL;
    if (count > 0) {
        block = (char **)CNN_MALLOC((size_t)count * sizeof(char *) + text);
        if (!block) return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for %d class names", count);
        for (i = 0, at = (size_t)count * sizeof(char *); i < count; i++) {
            block[i] = (char *)block + at;
            length = strlen(names[i]) + 1;
            memcpy(block[i], names[i], length);
            at += length;
        }
    }
    CNN_FREE(model->class_names);
    model->class_names = block;
    model->class_name_count = count;
    return CNN_OK;
}

CNNDEF const char *cnn_model_class_name(const cnn_model *model, int label)
{
    if (!model || !model->class_names || label < 0 || label >= model->class_name_count) return NULL;
    return model->class_names[label];
}

/* ======================================================================== optimisers */

CNNDEF cnn_result cnn_optimizer_init(cnn_optimizer *optimizer, cnn_model *model, const cnn_optimizer_desc *desc)
{
    cnn_optimizer_desc d;
    size_t blocks;
    if (!optimizer) return CNN_ERROR_INVALID_ARGUMENT;
    memset(optimizer, 0, sizeof *optimizer);
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!model->memory) return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "build the model before its optimiser");
    if (model->param_count == 0)
        return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "the model has no weights for an optimiser to train");
    if (desc) d = *desc;
    else memset(&d, 0, sizeof d);
    if (d.type != CNN_OPTIMIZER_ADAM && d.type != CNN_OPTIMIZER_SGD)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "unknown optimiser type %d", (int)d.type);
    if (d.learning_rate == 0.0f) d.learning_rate = d.type == CNN_OPTIMIZER_ADAM ? 1e-3f : 1e-2f;
    if (d.beta1 == 0.0f) d.beta1 = 0.9f;
    if (d.beta2 == 0.0f) d.beta2 = 0.999f;
    if (d.epsilon == 0.0f) d.epsilon = 1e-7f;
    if (!(d.learning_rate > 0.0f && d.learning_rate < FLT_MAX) || !(d.momentum >= 0.0f && d.momentum < 1.0f) ||
        !(d.beta1 > 0.0f && d.beta1 < 1.0f) || !(d.beta2 > 0.0f && d.beta2 < 1.0f) || !(d.epsilon > 0.0f && d.epsilon < 1.0f))
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "optimiser settings out of range: need learning_rate > 0, momentum in [0, 1), "
                         "beta1 and beta2 in (0, 1), epsilon in (0, 1)");
    blocks = d.type == CNN_OPTIMIZER_ADAM ? 2 : 1;
    optimizer->first_moment = cnn__alloc_floats(cnn__mul_size(blocks, model->param_count));
    if (!optimizer->first_moment)
        return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory allocating the optimiser state");
    memset(optimizer->first_moment, 0, blocks * model->param_count * sizeof(float));
    if (blocks == 2) optimizer->second_moment = optimizer->first_moment + model->param_count;
    optimizer->desc = d;
    optimizer->param_count = model->param_count;
    return CNN_OK;
}

/* SGD with momentum, as PyTorch writes it:  v = momentum * v + g;  p -= lr * v.
   Adam (Kingma & Ba, 2015) with bias correction, step t counting from 1:
     m = b1 m + (1 - b1) g          v = b2 v + (1 - b2) g^2
     p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
   The corrections undo the pull of m and v towards their zero start.

   A step runs twice over the parameters: a dry pass (write == 0) that
   changes nothing and returns the index of the first parameter whose
   gradient, new value or new optimiser state would not be finite (or the
   end of the range when all would be), then, only if there is none, the
   real pass. So a step that would put NaN or infinity into the model is
   refused before anything changes. */
typedef struct {
    float step_size, root_correction2; /* lr / (1 - b1^t) and sqrt(1 - b2^t) */
} cnn__adam_step;

CNN__PRIVATE cnn__adam_step cnn__adam_constants(const cnn_optimizer *optimizer, long step)
{
    const double b1 = optimizer->desc.beta1, b2 = optimizer->desc.beta2;
    cnn__adam_step adam;
    adam.step_size = (float)(optimizer->desc.learning_rate / (1.0 - pow(b1, (double)step)));
    adam.root_correction2 = (float)sqrt(1.0 - pow(b2, (double)step));
    return adam;
}

/* Adam's new value of a weight p, from its new moments m and v */
CNN__PRIVATE float cnn__adam_new_param(float p, float m, float v, const cnn__adam_step *adam, float eps)
{
    return p - adam->step_size * m / (sqrtf(v) / adam->root_correction2 + eps);
}

/* One pass over parameters begin .. end-1, each updated on its own. */
CNN__PRIVATE size_t cnn__optimizer_range(const cnn_optimizer *optimizer, cnn_model *model, const cnn__adam_step *adam,
                                         int write, size_t begin, size_t end)
{
    float *params = model->params, *m = optimizer->first_moment, *v = optimizer->second_moment;
    const float *grads = model->grads;
    const float lr = optimizer->desc.learning_rate, momentum = optimizer->desc.momentum;
    const float b1 = optimizer->desc.beta1, b2 = optimizer->desc.beta2, eps = optimizer->desc.epsilon;
    const int sgd = optimizer->desc.type == CNN_OPTIMIZER_SGD;
    size_t i;
    for (i = begin; i < end; i++) {
        const float g = grads[i];
        float new_m, new_v = 0.0f, new_p;
        if (sgd) {
            new_m = momentum * m[i] + g;
            new_p = params[i] - lr * new_m;
        } else {
            new_m = b1 * m[i] + (1.0f - b1) * g;
            new_v = b2 * v[i] + (1.0f - b2) * g * g;
            new_p = cnn__adam_new_param(params[i], new_m, new_v, adam, eps);
        }
        if (write) {
            m[i] = new_m;
            if (!sgd) v[i] = new_v;
            params[i] = new_p;
        } else if (!cnn__is_finite(g) || !cnn__is_finite(new_m) || !cnn__is_finite(new_v) || !cnn__is_finite(new_p)) {
            return i;
        }
    }
    return end;
}

/* One pass over all parameters, as step number `step`: the first bad
   index of a dry pass, or param_count. */
CNN__PRIVATE size_t cnn__optimizer_pass(const cnn_optimizer *optimizer, cnn_model *model, long step, int write)
{
    const cnn__adam_step adam = cnn__adam_constants(optimizer, step);
    return cnn__optimizer_range(optimizer, model, &adam, write, 0, model->param_count);
}

/* The pass that runs: the FAST section's twin (threads, vectors), unless
   CNN_NO_FAST leaves it out. */
CNN__PRIVATE size_t cnn__run_optimizer_pass(const cnn_optimizer *optimizer, cnn_model *model, long step, int write)
{
#ifndef CNN_NO_FAST
    return cnn__optimizer_pass_fast(optimizer, model, step, write);
#else
    return cnn__optimizer_pass(optimizer, model, step, write);
#endif
}

CNNDEF cnn_result cnn_optimizer_step(cnn_optimizer *optimizer, cnn_model *model)
{
    size_t bad;
    int layer = 0, i;
    if (!optimizer || !model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!optimizer->first_moment || !model->memory || optimizer->param_count != model->param_count)
        return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "this optimiser was not initialised for this model");
    bad = cnn__run_optimizer_pass(optimizer, model, optimizer->step + 1, 0);
    if (bad < model->param_count) {
        /* the layer holding parameter `bad`: the last one with parameters that start at or before it */
        for (i = 0; i < model->layer_count; i++)
            if (model->layers[i].weight_count + model->layers[i].bias_count > 0 && model->layers[i].param_offset <= bad) layer = i;
        return cnn__fail(&model->error, CNN_ERROR_NOT_FINITE, 0, 0, -1,
                         "%s of parameter %lu (layer %d, %s) is not finite (gradient %g): training diverged; "
                         "weights left as before this step",
                         cnn__is_finite(model->grads[bad]) ? "the update" : "the gradient", (unsigned long)bad, layer + 1,
                         cnn_layer_type_name(model->layers[layer].desc.type), (double)model->grads[bad]);
    }
    cnn__run_optimizer_pass(optimizer, model, optimizer->step + 1, 1);
    optimizer->step++;
    return CNN_OK;
}

CNNDEF void cnn_optimizer_free(cnn_optimizer *optimizer)
{
    if (!optimizer) return;
    CNN_FREE(optimizer->first_moment);
    memset(optimizer, 0, sizeof *optimizer);
}

/* ======================================================================== data files

   First the file helpers that every file format of cnn.h shares: a reader
   for files and memory alike, and a writer that never leaves a file
   half-written. Then the data formats: Kaggle CSV, IDX, mapping files. */

/* 1 when bytes (2 at least) start a gzip stream, as a .gz file does. */
CNN__PRIVATE int cnn__is_gzip(const unsigned char *bytes) { return bytes[0] == 0x1f && bytes[1] == 0x8b; }

/* Size of an open file in bytes, or -1; leaves the position at the start. */
CNN__PRIVATE long long cnn__file_size(FILE *file)
{
    long size;
    if (fseek(file, 0, SEEK_END) != 0) return -1;
    size = ftell(file);
    if (fseek(file, 0, SEEK_SET) != 0) return -1;
    return size;
}

/* Every loader reads its input through a cnn__reader, which hands out the
   bytes of an open file (through a buffer) or of a block of memory and
   counts them. So the file and _memory versions of a loader share one
   parser, and report the same errors at the same lines and bytes. */
typedef struct cnn__reader {
    FILE *file;                   /* NULL when reading memory */
    unsigned char *owned;         /* a file reader's buffer */
    const unsigned char *buffer;  /* owned, or the caller's memory */
    size_t length, position;      /* bytes in buffer; the next one to hand out */
    long long offset;             /* of the next byte in the whole input */
    long long size;               /* of the whole input, -1 when unknown */
    const char *name;             /* the path, or "<memory>", for messages */
} cnn__reader;

#define CNN__READER_BYTES 65536
#define CNN__EOF (-1)

/* Makes sure a byte is waiting; 0 at the end of the input (or an error). */
CNN__PRIVATE int cnn__fill(cnn__reader *reader)
{
    if (reader->position < reader->length) return 1;
    if (!reader->file) return 0;
    reader->length = fread(reader->owned, 1, CNN__READER_BYTES, reader->file);
    reader->position = 0;
    return reader->length > 0;
}

CNN__PRIVATE int cnn__read_byte(cnn__reader *reader)
{
    if (!cnn__fill(reader)) return CNN__EOF;
    reader->offset++;
    return reader->buffer[reader->position++];
}

/* Copies up to count bytes into out; returns how many there were. */
CNN__PRIVATE size_t cnn__read_bytes(cnn__reader *reader, void *out, size_t count)
{
    unsigned char *to = (unsigned char *)out;
    size_t done = 0, n;
    while (done < count && cnn__fill(reader)) {
        n = reader->length - reader->position;
        if (n > count - done) n = count - done;
        memcpy(to + done, reader->buffer + reader->position, n);
        reader->position += n;
        reader->offset += (long long)n;
        done += n;
    }
    return done;
}

/* 1 when reading the file failed (as opposed to reaching its end). */
CNN__PRIVATE int cnn__reader_failed(const cnn__reader *reader)
{
    return reader->file && ferror(reader->file);
}

CNN__PRIVATE cnn_result cnn__open_reader(cnn__reader *reader, const char *path, cnn_error *error)
{
    memset(reader, 0, sizeof *reader);
    reader->size = -1;
    reader->name = path;
    if (!path || !*path) return cnn__fail(error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "no file name given");
    reader->file = fopen(path, "rb");
    if (!reader->file) return cnn__fail(error, CNN_ERROR_IO, 0, 0, -1, "cannot open '%s' for reading", path);
    reader->owned = (unsigned char *)CNN_MALLOC(CNN__READER_BYTES);
    if (!reader->owned) {
        fclose(reader->file);
        reader->file = NULL;
        return cnn__fail(error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for a read buffer");
    }
    reader->buffer = reader->owned;
    reader->size = cnn__file_size(reader->file);
    return CNN_OK;
}

/* A reader of size bytes at bytes, called name in messages. */
CNN__PRIVATE cnn_result cnn__memory_reader(cnn__reader *reader, const void *bytes, size_t size, const char *name,
                                           cnn_error *error)
{
    memset(reader, 0, sizeof *reader);
    reader->size = -1;
    reader->name = name;
    if (!bytes) return cnn__fail(error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "%s: the pointer to the bytes is NULL", name);
    reader->buffer = (const unsigned char *)bytes;
    reader->length = size;
    reader->size = (long long)size;
    return CNN_OK;
}

/* Back to the first byte, for a second pass. */
CNN__PRIVATE void cnn__rewind_reader(cnn__reader *reader)
{
    if (reader->file) {
        rewind(reader->file);
        reader->length = 0;
    }
    reader->position = 0;
    reader->offset = 0;
}

CNN__PRIVATE void cnn__close_reader(cnn__reader *reader)
{
    if (reader->file) fclose(reader->file);
    CNN_FREE(reader->owned);
    memset(reader, 0, sizeof *reader);
}

/* Pushes a written file's bytes to the disk before the file replaces the
   old one: without it, a power cut soon after the rename could leave PATH
   naming a file whose data never reached the disk. POSIX only; elsewhere
   the rename alone still guards against an interrupted save. */
#if defined(__unix__) || defined(__APPLE__)
CNN__PRIVATE int cnn__sync_file(FILE *file) { return fsync(fileno(file)) == 0; }
#else
CNN__PRIVATE int cnn__sync_file(FILE *file) { (void)file; return 1; }
#endif

/* A file written whole or not at all: cnn__atomic_open creates PATH.tmp;
   cnn__atomic_close flushes it to the disk and renames it over PATH when
   everything written to it went well (ok), else removes it, so that PATH
   always holds either its old contents or the complete new ones. */
typedef struct cnn__atomic_file {
    FILE *file;
    char *temp_path;  /* PATH.tmp */
} cnn__atomic_file;

CNN__PRIVATE cnn_result cnn__atomic_open(cnn__atomic_file *out, const char *path, cnn_error *error)
{
    size_t path_length = strlen(path);
    out->file = NULL;
    out->temp_path = (char *)CNN_MALLOC(path_length + 5);
    if (!out->temp_path) return cnn__fail(error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory");
    memcpy(out->temp_path, path, path_length);
    memcpy(out->temp_path + path_length, ".tmp", 5);
    out->file = fopen(out->temp_path, "wb");
    if (!out->file) {
        cnn__fail(error, CNN_ERROR_IO, 0, 0, -1, "cannot create '%s'", out->temp_path);
        CNN_FREE(out->temp_path);
        return CNN_ERROR_IO;
    }
    return CNN_OK;
}

CNN__PRIVATE cnn_result cnn__atomic_close(cnn__atomic_file *f, const char *path, int ok, cnn_error *error)
{
    ok &= fflush(f->file) == 0;
    ok &= cnn__sync_file(f->file);
    ok &= fclose(f->file) == 0;
#ifdef _WIN32
    if (ok) remove(path); /* Windows' rename does not replace */
#endif
    if (ok) ok = rename(f->temp_path, path) == 0;
    if (!ok) {
        remove(f->temp_path);
        cnn__fail(error, CNN_ERROR_IO, 0, 0, -1, "cannot write '%s' (disk full or no permission?)", path);
    }
    CNN_FREE(f->temp_path);
    return ok ? CNN_OK : CNN_ERROR_IO;
}

/* ---------------------------------------------------------------- CSV and IDX datasets */

CNN__PRIVATE int cnn__is_space(int c) { return c == ' ' || c == '\t'; }
CNN__PRIVATE int cnn__is_digit(int c) { return c >= '0' && c <= '9'; }

/* Reads an optionally signed whole number; *c holds the byte after it.
   Returns 0 when there are no digits. Huge values saturate (and are then
   rejected by the range checks) instead of overflowing. */
CNN__PRIVATE int cnn__read_number(cnn__reader *reader, int *c, long *value)
{
    int negative = 0, digits = 0;
    long v = 0;
    while (cnn__is_space(*c)) *c = cnn__read_byte(reader);
    if (*c == '-' || *c == '+') {
        negative = *c == '-';
        *c = cnn__read_byte(reader);
    }
    while (cnn__is_digit(*c)) {
        if (v < 100000000L) v = v * 10 + (*c - '0');
        digits++;
        *c = cnn__read_byte(reader);
    }
    while (cnn__is_space(*c)) *c = cnn__read_byte(reader);
    *value = negative ? -v : v;
    return digits > 0;
}

CNN__PRIVATE void cnn__skip_line(cnn__reader *reader, int *c)
{
    while (*c != '\n' && *c != CNN__EOF) *c = cnn__read_byte(reader);
}

/* Reads the first byte of a text file into *c, skipping a UTF-8 byte-order
   mark (EF BB BF), which some editors put at the start of CSV files. */
CNN__PRIVATE void cnn__first_byte(cnn__reader *reader, int *c)
{
    *c = cnn__read_byte(reader);
    if (*c == 0xEF && reader->length >= 3 && reader->buffer[1] == 0xBB && reader->buffer[2] == 0xBF) {
        cnn__read_byte(reader);
        cnn__read_byte(reader);
        *c = cnn__read_byte(reader);
    }
}

/* Starts an empty dataset; returns CNN_OK unless the arguments are wrong. */
CNN__PRIVATE cnn_result cnn__begin_dataset(cnn_dataset *dataset, const cnn_data_desc *desc, cnn_data_desc *d)
{
    memset(dataset, 0, sizeof *dataset);
    cnn__clear_error(&dataset->error);
    if (desc) *d = *desc;
    else memset(d, 0, sizeof *d);
    if (d->width == 0) d->width = 28;
    if (d->height == 0) d->height = 28;
    if (d->width < 0 || d->height < 0 || d->num_classes < 0 || d->num_classes > CNN_MAX_CLASSES || d->max_rows < 0 ||
        d->orientation < CNN_ORIENTATION_DEFAULT || d->orientation > CNN_ORIENTATION_TRANSPOSE ||
        (size_t)d->width * (size_t)d->height > CNN__MAX_SAMPLE_SIZE)
        return cnn__fail(&dataset->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "invalid cnn_data_desc settings");
    return CNN_OK;
}

/* Allocates room for rows images of width x height, one channel. */
CNN__PRIVATE cnn_result cnn__allocate_dataset(cnn_dataset *dataset, int rows, int height, int width)
{
    dataset->images.data = cnn__alloc_floats(cnn__mul_size((size_t)rows, (size_t)height * (size_t)width));
    dataset->labels = (int *)CNN_MALLOC((size_t)rows * sizeof(int));
    if (!dataset->images.data || !dataset->labels) {
        CNN_FREE(dataset->images.data);
        CNN_FREE(dataset->labels);
        dataset->images.data = NULL;
        dataset->labels = NULL;
        return cnn__fail(&dataset->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for %d images", rows);
    }
    dataset->images.n = rows;
    dataset->images.c = 1;
    dataset->images.h = height;
    dataset->images.w = width;
    return CNN_OK;
}

/* Puts pixel number index of a stored image (row-major, height x width)
   into image, transposing when asked: EMNIST stores each character mirrored
   on its diagonal, so stored (row, column) is upright (column, row). */
CNN__PRIVATE void cnn__put_pixel(float *image, long index, int width, int height, int transpose, float value)
{
    long row = index / width, column = index % width;
    if (transpose) image[column * height + row] = value;
    else image[index] = value;
}

CNN__PRIVATE void cnn__finish_dataset(cnn_dataset *dataset, cnn_result result, int rows, int max_label, int num_classes)
{
    if (result != CNN_OK) {
        cnn_error error = dataset->error;
        cnn_dataset_free(dataset);
        dataset->error = error;
        return;
    }
    dataset->count = rows;
    dataset->images.n = rows;
    dataset->num_classes = num_classes ? num_classes : max_label + 1;
}

/* Starts a dataset for a CSV loader and checks its settings. */
CNN__PRIVATE cnn_result cnn__begin_csv(cnn_dataset *dataset, const cnn_data_desc *desc, cnn_data_desc *d)
{
    cnn_result result;
    if (!dataset) return CNN_ERROR_INVALID_ARGUMENT;
    if ((result = cnn__begin_dataset(dataset, desc, d)) != CNN_OK) return result;
    if (d->orientation != CNN_ORIENTATION_AS_STORED && d->width != d->height)
        return cnn__fail(&dataset->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "only square images can be transposed (%dx%d)",
                         d->width, d->height);
    return CNN_OK;
}

/* Parses CSV from an open reader, which it closes. */
CNN__PRIVATE cnn_result cnn__parse_csv(cnn_dataset *dataset, cnn__reader *reader_in, const cnn_data_desc *desc)
{
    const cnn_data_desc d = *desc;
    cnn__reader reader = *reader_in;  /* taken over: closed here */
    cnn_error *error = &dataset->error;
    const char *path = reader.name;
    cnn_result result = CNN_OK;
    long pixels = (long)d.width * d.height, line = 1, capacity = 0, rows = 0, commas = 0;
    int c, transpose = d.orientation != CNN_ORIENTATION_AS_STORED, max_label = -1;
    unsigned char first_bytes[2] = {0, 0};

    /* first pass: count the lines that can be rows, those with a comma per
       pixel at least, to allocate once, and no more than the input can
       fill: a file of a million blank lines must not ask for gigabytes */
    while ((c = cnn__read_byte(&reader)) != CNN__EOF) {
        if (reader.offset <= 2) first_bytes[reader.offset - 1] = (unsigned char)c;
        if (c == ',') commas++;
        else if (c == '\n') {
            capacity += commas >= pixels;
            commas = 0;
        }
    }
    capacity += commas >= pixels;
    if (cnn__reader_failed(&reader)) {
        cnn__close_reader(&reader);
        return cnn__fail(error, CNN_ERROR_IO, 0, 0, -1, "read error in '%s'", path);
    }
    if (reader.offset == 0) {
        cnn__close_reader(&reader);
        return cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 1, 0, 0, "'%s' is empty", path);
    }
    if (reader.offset >= 2 && cnn__is_gzip(first_bytes)) {
        cnn__close_reader(&reader);
        return cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 1, 0, 0, "'%s' looks gzip-compressed: unpack it first (gunzip -k '%s')",
                         path, path);
    }
    if (d.max_rows && capacity > d.max_rows) capacity = d.max_rows;
    if (capacity > INT_MAX) capacity = INT_MAX;
    if (capacity < 1) capacity = 1; /* no row can be right; the parse below says which line is wrong */
    cnn__rewind_reader(&reader);
    if ((result = cnn__allocate_dataset(dataset, (int)capacity, d.height, d.width)) != CNN_OK) {
        cnn__close_reader(&reader);
        return result;
    }

    /* second pass: parse. A line parsed while rows == capacity cannot be a
       row (it was not counted), so nothing of it is stored: it ends in an
       error, or is blank or the header. */
    cnn__first_byte(&reader, &c);
    while (c != CNN__EOF && !(d.max_rows && rows >= d.max_rows) && result == CNN_OK) {
        float *image = rows < capacity ? dataset->images.data + (size_t)rows * (size_t)pixels : NULL;
        long field = 0, value;
        int at_line_start = 1;
        for (;;) {
            int line_was_blank = at_line_start && (c == '\n' || c == '\r' || cnn__is_space(c));
            if (!cnn__read_number(&reader, &c, &value)) {
                if (line_was_blank && (c == '\n' || c == '\r' || c == CNN__EOF)) { field = -1; break; } /* blank line */
                if (line == 1 && field == 0) { cnn__skip_line(&reader, &c); field = -1; break; }   /* header */
                result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, line, field + 1, reader.offset - 1,
                                   "'%s', line %ld, field %ld: expected a whole number", path, line, field + 1);
                break;
            }
            at_line_start = 0;
            if (c != ',' && c != '\n' && c != '\r' && c != CNN__EOF) {
                result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, line, field + 1, reader.offset - 1,
                                   "'%s', line %ld, field %ld: unexpected character '%c' in a number", path, line, field + 1,
                                   c >= 32 && c < 127 ? c : '?');
                break;
            }
            if (field == 0) {
                if (value < 0 || value >= (d.num_classes ? d.num_classes : CNN_MAX_CLASSES)) {
                    if (value < 0)
                        result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, line, 1, -1, "'%s', line %ld: label %ld is negative", path,
                                           line, value);
                    else if (d.num_classes)
                        result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, line, 1, -1, "'%s', line %ld: label %ld is outside 0..%d "
                                           "(%d classes asked for)", path, line, value, d.num_classes - 1, d.num_classes);
                    else
                        result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, line, 1, -1, "'%s', line %ld: label %ld is above %d, "
                                           "the most classes cnn.h takes (CNN_MAX_CLASSES)", path, line, value, CNN_MAX_CLASSES - 1);
                    break;
                }
                if (image) dataset->labels[rows] = (int)value;
                if (value > max_label) max_label = (int)value;
            } else if (field <= pixels) {
                if (value < 0 || value > 255) {
                    result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, line, field + 1, -1,
                                       "'%s', line %ld, field %ld: pixel value %ld is outside 0..255", path, line, field + 1, value);
                    break;
                }
                if (image) cnn__put_pixel(image, field - 1, d.width, d.height, transpose, (float)value / 255.0f);
            }
            field++;
            if (c == ',') {
                c = cnn__read_byte(&reader);
                continue;
            }
            break;
        }
        if (result != CNN_OK) break;
        if (c == '\r') c = cnn__read_byte(&reader);
        if (c != '\n' && c != CNN__EOF) {
            result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, line, 0, reader.offset - 1, "'%s', line %ld: stray carriage return",
                               path, line);
            break;
        }
        if (field >= 0 && field != pixels + 1) {
            result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, line, 0, -1,
                               "'%s', line %ld: expected %ld fields (a label and %ld pixels), found %ld", path, line, pixels + 1,
                               pixels, field);
            break;
        }
        if (field >= 0 && !image) { /* only when the file changed between the passes, or rows > INT_MAX */
            result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, line, 0, -1, "'%s', line %ld: more rows than the first pass counted (%ld)",
                               path, line, capacity);
            break;
        }
        if (field >= 0) rows++;
        if (c == '\n') c = cnn__read_byte(&reader);
        line++;
    }
    if (result == CNN_OK && cnn__reader_failed(&reader))
        result = cnn__fail(error, CNN_ERROR_IO, line, 0, reader.offset, "read error in '%s'", path);
    if (result == CNN_OK && rows == 0) result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, line, 0, -1, "'%s' holds no images", path);
    cnn__close_reader(&reader);
    cnn__finish_dataset(dataset, result, (int)rows, max_label, d.num_classes);
    return result;
}

CNNDEF cnn_result cnn_dataset_load_csv(cnn_dataset *dataset, const char *path, const cnn_data_desc *desc)
{
    cnn_data_desc d;
    cnn__reader reader;
    cnn_result result;
    if ((result = cnn__begin_csv(dataset, desc, &d)) != CNN_OK) return result;
    if ((result = cnn__open_reader(&reader, path, &dataset->error)) != CNN_OK) return result;
    return cnn__parse_csv(dataset, &reader, &d);
}

CNNDEF cnn_result cnn_dataset_load_csv_memory(cnn_dataset *dataset, const void *bytes, size_t size, const cnn_data_desc *desc)
{
    cnn_data_desc d;
    cnn__reader reader;
    cnn_result result;
    if ((result = cnn__begin_csv(dataset, desc, &d)) != CNN_OK) return result;
    if ((result = cnn__memory_reader(&reader, bytes, size, "<memory>", &dataset->error)) != CNN_OK) return result;
    return cnn__parse_csv(dataset, &reader, &d);
}

/* Reads an IDX header: 0, 0, type 0x08 (unsigned byte), dimension count,
   then each dimension as a big-endian u32. */
CNN__PRIVATE cnn_result cnn__read_idx_header(cnn__reader *reader, int want_dims, uint32_t *dims, cnn_error *error)
{
    unsigned char header[16];
    int i;
    const char *path = reader->name;
    size_t length = 4 + 4 * (size_t)want_dims;
    size_t got = cnn__read_bytes(reader, header, length);
    if (cnn__reader_failed(reader))
        return cnn__fail(error, CNN_ERROR_IO, 0, 0, -1, "cannot read '%s' (is it a folder?)", path);
    if (got >= 2 && cnn__is_gzip(header))
        return cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, 0, "'%s' looks gzip-compressed: unpack it first (gunzip -k '%s')",
                         path, path);
    if (got < 4 || header[0] != 0 || header[1] != 0)
        return cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, 0, "'%s' is not an IDX file (bad magic number)", path);
    if (header[2] != 0x08)
        return cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, 2, "'%s': IDX element type 0x%02x; only unsigned bytes (0x08) are supported",
                         path, header[2]);
    if (header[3] != want_dims)
        return cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, 3, "'%s' has %d dimensions, expected %d", path, header[3], want_dims);
    if (got < length)
        return cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, (long long)got, "'%s' is truncated inside its header", path);
    for (i = 0; i < want_dims; i++) {
        const unsigned char *b = header + 4 + 4 * i;
        dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
        if (dims[i] == 0 || dims[i] > (uint32_t)INT_MAX)
            return cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, 4 + 4 * i, "'%s': dimension %d is %lu", path, i + 1,
                             (unsigned long)dims[i]);
    }
    return CNN_OK;
}

/* Checks that an input holds exactly its header and payload. */
CNN__PRIVATE cnn_result cnn__check_idx_size(const cnn__reader *reader, long long header, long long payload, cnn_error *error)
{
    const char *path = reader->name;
    long long size = reader->size;
    if (size < 0) return cnn__fail(error, CNN_ERROR_IO, 0, 0, -1, "cannot find the size of '%s' (not a regular file?)", path);
    if (size < header + payload)
        return cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, size, "'%s' is truncated: %lld bytes, its header promises %lld", path,
                         size, header + payload);
    if (size > header + payload)
        return cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, header + payload, "'%s' has %lld bytes after its data", path,
                         size - header - payload);
    return CNN_OK;
}

/* Parses IDX images and labels from two open readers, which it closes. */
CNN__PRIVATE cnn_result cnn__parse_idx(cnn_dataset *dataset, cnn__reader *images, cnn__reader *labels, const cnn_data_desc *desc)
{
    const cnn_data_desc d = *desc;
    cnn_error *error = &dataset->error;
    const char *images_path = images->name, *labels_path = labels->name;
    cnn_result result = CNN_OK;
    uint32_t image_dims[3] = {0, 0, 0}, label_dims[1] = {0};
    unsigned char *row = NULL;
    int count = 0, height = 0, width = 0, max_label = -1, n;
    long pixel;
    if (result == CNN_OK) result = cnn__read_idx_header(images, 3, image_dims, error);
    if (result == CNN_OK) result = cnn__read_idx_header(labels, 1, label_dims, error);
    if (result == CNN_OK && image_dims[0] != label_dims[0])
        result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, 4, "'%s' holds %lu images but '%s' holds %lu labels", images_path,
                           (unsigned long)image_dims[0], labels_path, (unsigned long)label_dims[0]);
    if (result == CNN_OK && (uint64_t)image_dims[1] * image_dims[2] > CNN__MAX_SAMPLE_SIZE)
        result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, 8, "'%s': images of %lux%lu are too large", images_path,
                           (unsigned long)image_dims[1], (unsigned long)image_dims[2]);
    if (result == CNN_OK) {
        count = (int)image_dims[0];
        height = (int)image_dims[1];
        width = (int)image_dims[2];
        if (d.orientation == CNN_ORIENTATION_TRANSPOSE && width != height)
            result = cnn__fail(error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "only square images can be transposed (%dx%d)", width, height);
    }
    if (result == CNN_OK) result = cnn__check_idx_size(images, 16, (long long)count * height * width, error);
    if (result == CNN_OK) result = cnn__check_idx_size(labels, 8, count, error);
    if (result == CNN_OK && d.max_rows && count > d.max_rows) count = d.max_rows;
    if (result == CNN_OK) result = cnn__allocate_dataset(dataset, count, height, width);
    if (result == CNN_OK && !(row = (unsigned char *)CNN_MALLOC((size_t)height * width)))
        result = cnn__fail(error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory");
    for (n = 0; result == CNN_OK && n < count; n++) {
        int label = cnn__read_byte(labels);
        float *image = dataset->images.data + (size_t)n * height * width;
        if (label == CNN__EOF || cnn__read_bytes(images, row, (size_t)height * width) != (size_t)height * width) {
            result = cnn__fail(error, CNN_ERROR_IO, 0, 0, -1, "read error in '%s' or '%s'", images_path, labels_path);
            break;
        }
        if (d.num_classes && label >= d.num_classes) {
            result = cnn__fail(error, CNN_ERROR_MALFORMED_DATA, 0, 0, 8 + (long long)n, "'%s': label %d of image %d is outside 0..%d",
                               labels_path, label, n, d.num_classes - 1);
            break;
        }
        dataset->labels[n] = label;
        if (label > max_label) max_label = label;
        for (pixel = 0; pixel < (long)height * width; pixel++)
            cnn__put_pixel(image, pixel, width, height, d.orientation == CNN_ORIENTATION_TRANSPOSE, (float)row[pixel] / 255.0f);
    }
    CNN_FREE(row);
    cnn__close_reader(images);
    cnn__close_reader(labels);
    cnn__finish_dataset(dataset, result, count, max_label, d.num_classes);
    return result;
}

CNNDEF cnn_result cnn_dataset_load_idx(cnn_dataset *dataset, const char *images_path, const char *labels_path,
                                       const cnn_data_desc *desc)
{
    cnn_data_desc d;
    cnn__reader images, labels;
    cnn_result result;
    if (!dataset) return CNN_ERROR_INVALID_ARGUMENT;
    if ((result = cnn__begin_dataset(dataset, desc, &d)) != CNN_OK) return result;
    if ((result = cnn__open_reader(&images, images_path, &dataset->error)) != CNN_OK) return result;
    if ((result = cnn__open_reader(&labels, labels_path, &dataset->error)) != CNN_OK) {
        cnn__close_reader(&images);
        return result;
    }
    return cnn__parse_idx(dataset, &images, &labels, &d);
}

CNNDEF cnn_result cnn_dataset_load_idx_memory(cnn_dataset *dataset, const void *image_bytes, size_t image_size,
                                              const void *label_bytes, size_t label_size, const cnn_data_desc *desc)
{
    cnn_data_desc d;
    cnn__reader images, labels;
    cnn_result result;
    if (!dataset) return CNN_ERROR_INVALID_ARGUMENT;
    if ((result = cnn__begin_dataset(dataset, desc, &d)) != CNN_OK) return result;
    if ((result = cnn__memory_reader(&images, image_bytes, image_size, "<images in memory>", &dataset->error)) != CNN_OK ||
        (result = cnn__memory_reader(&labels, label_bytes, label_size, "<labels in memory>", &dataset->error)) != CNN_OK)
        return result;
    return cnn__parse_idx(dataset, &images, &labels, &d);
}

CNNDEF void cnn_dataset_free(cnn_dataset *dataset)
{
    if (!dataset) return;
    CNN_FREE(dataset->images.data);
    CNN_FREE(dataset->labels);
    memset(dataset, 0, sizeof *dataset);
}

/* Parses a mapping file from an open reader, which it closes. */
CNN__PRIVATE cnn_result cnn__parse_label_map(cnn_label_map *map, cnn__reader *reader_in)
{
    cnn__reader reader = *reader_in;  /* taken over: closed here */
    const char *path = reader.name;
    cnn_result result = CNN_OK;
    long line = 1, label, code;
    int c, i, seen[CNN_MAX_CLASSES];
    memset(seen, 0, sizeof seen);
    cnn__first_byte(&reader, &c);
    while (c != CNN__EOF && result == CNN_OK) {
        int has_label = cnn__read_number(&reader, &c, &label);
        if (!has_label && (c == '\n' || c == '\r' || c == CNN__EOF)) {
            /* blank line */
        } else if (!has_label || !cnn__read_number(&reader, &c, &code)) {
            result = cnn__fail(&map->error, CNN_ERROR_MALFORMED_DATA, line, 0, reader.offset - 1,
                               "'%s', line %ld: expected two whole numbers, a label and a character code", path, line);
        } else if (c != '\n' && c != '\r' && c != CNN__EOF) {
            result = cnn__fail(&map->error, CNN_ERROR_MALFORMED_DATA, line, 0, reader.offset - 1,
                               "'%s', line %ld: unexpected text after the code", path, line);
        } else if (label < 0 || label >= CNN_MAX_CLASSES || code < 0 || code > 0x10ffff) {
            result = cnn__fail(&map->error, CNN_ERROR_MALFORMED_DATA, line, 0, -1, "'%s', line %ld: label %ld or code %ld out of range",
                               path, line, label, code);
        } else if (seen[label]) {
            result = cnn__fail(&map->error, CNN_ERROR_MALFORMED_DATA, line, 0, -1, "'%s', line %ld: label %ld appears twice", path, line,
                               label);
        } else {
            seen[label] = 1;
            map->codes[label] = (int)code;
            if (label + 1 > map->count) map->count = (int)label + 1;
        }
        if (c == '\r') c = cnn__read_byte(&reader);
        if (result == CNN_OK && c != '\n' && c != CNN__EOF)
            result = cnn__fail(&map->error, CNN_ERROR_MALFORMED_DATA, line, 0, reader.offset - 1, "'%s', line %ld: stray carriage return",
                               path, line);
        if (c == '\n') c = cnn__read_byte(&reader);
        line++;
    }
    if (result == CNN_OK && cnn__reader_failed(&reader))
        result = cnn__fail(&map->error, CNN_ERROR_IO, 0, 0, reader.offset, "read error in '%s'", path);
    if (result == CNN_OK && map->count == 0) result = cnn__fail(&map->error, CNN_ERROR_MALFORMED_DATA, 1, 0, 0, "'%s' maps no labels", path);
    for (i = 0; result == CNN_OK && i < map->count; i++)
        if (!seen[i]) result = cnn__fail(&map->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1, "'%s' has no line for label %d", path, i);
    cnn__close_reader(&reader);
    if (result != CNN_OK) map->count = 0;
    return result;
}

/* Starts an empty map with a clear error. */
CNN__PRIVATE void cnn__begin_label_map(cnn_label_map *map)
{
    memset(map, 0, sizeof *map);
    cnn__clear_error(&map->error);
}

CNNDEF cnn_result cnn_label_map_load(cnn_label_map *map, const char *path)
{
    cnn__reader reader;
    cnn_result result;
    if (!map) return CNN_ERROR_INVALID_ARGUMENT;
    cnn__begin_label_map(map);
    if ((result = cnn__open_reader(&reader, path, &map->error)) != CNN_OK) return result;
    return cnn__parse_label_map(map, &reader);
}

CNNDEF cnn_result cnn_label_map_load_memory(cnn_label_map *map, const void *bytes, size_t size)
{
    cnn__reader reader;
    cnn_result result;
    if (!map) return CNN_ERROR_INVALID_ARGUMENT;
    cnn__begin_label_map(map);
    if ((result = cnn__memory_reader(&reader, bytes, size, "<memory>", &map->error)) != CNN_OK) return result;
    return cnn__parse_label_map(map, &reader);
}

CNNDEF int cnn_label_map_char(const cnn_label_map *map, int label)
{
    if (!map || label < 0 || label >= map->count || label >= CNN_MAX_CLASSES) return '?';
    return map->codes[label];
}

/* A Unicode code point as UTF-8 into out (room for 5): its length. */
CNN__PRIVATE int cnn__utf8_encode(long code, char *out)
{
    int length = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4, i;
    if (length == 1) out[0] = (char)code;
    else {
        for (i = length - 1; i > 0; i--, code >>= 6) out[i] = (char)(0x80 | (code & 0x3f));
        out[0] = (char)((0xf00 >> length) | code); /* 110xxxxx, 1110xxxx, 11110xxx */
    }
    out[length] = '\0';
    return length;
}

CNNDEF cnn_result cnn_model_set_class_names_from_map(cnn_model *model, const cnn_label_map *map)
{
    char (*text)[5];
    const char **names;
    cnn_result result;
    int i;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!map) return cnn__null_argument(&model->error, "cnn_model_set_class_names_from_map", "map");
    if (map->count <= 0) return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "the label map is empty");
    text = (char (*)[5])CNN_MALLOC((size_t)map->count * sizeof *text);
    names = (const char **)CNN_MALLOC((size_t)map->count * sizeof *names);
    if (!text || !names) {
        CNN_FREE(text);
        CNN_FREE((void *)names);
        return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for %d class names", map->count);
    }
    for (i = 0; i < map->count; i++) {
        cnn__utf8_encode(map->codes[i], text[i]);
        names[i] = text[i];
    }
    result = cnn_model_set_class_names(model, names, map->count);
    CNN_FREE(text);
    CNN_FREE((void *)names);
    return result;
}

/* ======================================================================== training */

/* Floats of everything a trained model knows: its parameters and, after
   them in memory, its state (batch norm's running statistics). Early
   stopping's copy of the best epoch keeps all of them. */
CNN__PRIVATE size_t cnn__snapshot_count(const cnn_model *model) { return model->param_count + model->state_count; }

/* The batch is already in activations[0]. */
CNN__PRIVATE cnn_result cnn__train_step_on(cnn_model *model, cnn_optimizer *optimizer, const int *labels, int batch,
                                           float *mean_loss, int *correct)
{
    cnn_result result;
    float loss;
    if ((result = cnn__check_training_batch(model, batch)) != CNN_OK) return result;
    cnn__forward(model, batch, CNN_MODE_TRAIN);
    if ((result = cnn_model_loss(model, labels, &loss, correct)) != CNN_OK) return result;
    if (!cnn__is_finite(loss))
        return cnn__fail(&model->error, CNN_ERROR_NOT_FINITE, 0, 0, -1, "the loss is %g: training diverged; weights left as before this step",
                         (double)loss);
    cnn_model_zero_grad(model);
    if ((result = cnn__loss_backward(model, labels, 0)) != CNN_OK) return result;
    if ((result = cnn_optimizer_step(optimizer, model)) != CNN_OK) return result;
    if (mean_loss) *mean_loss = loss;
    return CNN_OK;
}

/* One step, with the FAST section choosing how many of the model's threads
   it runs on (cnn__fast_step_begin): results do not depend on it. */
CNN__PRIVATE cnn_result cnn__train_step(cnn_model *model, cnn_optimizer *optimizer, const int *labels, int batch,
                                        float *mean_loss, int *correct)
{
#ifndef CNN_NO_FAST
    cnn_result result;
    const double started = cnn__fast_step_begin(model);
    result = cnn__train_step_on(model, optimizer, labels, batch, mean_loss, correct);
    cnn__fast_step_end(model, started, batch);
    return result;
#else
    return cnn__train_step_on(model, optimizer, labels, batch, mean_loss, correct);
#endif
}

CNNDEF cnn_result cnn_model_train_step(cnn_model *model, cnn_optimizer *optimizer, const float *input, const int *labels,
                                       int batch, float *mean_loss, int *correct)
{
    cnn_result result;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!optimizer) return cnn__null_argument(&model->error, "cnn_model_train_step", "optimizer");
    if (!input) return cnn__null_argument(&model->error, "cnn_model_train_step", "input");
    if (!labels) return cnn__null_argument(&model->error, "cnn_model_train_step", "labels");
    if ((result = cnn__check_batch(model, batch)) != CNN_OK) return result;
    if (input != model->activations[0].data)
        memmove(model->activations[0].data, input, (size_t)batch * cnn_shape_count(model->input) * sizeof(float));
    return cnn__train_step(model, optimizer, labels, batch, mean_loss, correct);
}

CNNDEF void cnn_fit_state_free(cnn_fit_state *state)
{
    if (!state) return;
    CNN_FREE(state->best_params);
    state->best_params = NULL;
    state->param_count = 0;
}

CNN__PRIVATE cnn_result cnn__check_dataset(cnn_model *model, const cnn_dataset *dataset)
{
    cnn_shape shape;
    if (!dataset->images.data || !dataset->labels || dataset->count <= 0)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "the dataset is empty");
    if (dataset->images.n < dataset->count)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "the dataset says %d samples but holds %d images",
                         dataset->count, dataset->images.n);
    shape = cnn__make_shape(dataset->images.c, dataset->images.h, dataset->images.w);
    if (shape.c != model->input.c || shape.h != model->input.h || shape.w != model->input.w)
        return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1, "dataset images (%d, %d, %d) do not match the model input (%d, %d, %d)",
                         shape.c, shape.h, shape.w, model->input.c, model->input.h, model->input.w);
    return CNN_OK;
}

/* Every label must be one of the model's classes; a wrong one is named by
   its image's place in the dataset (for a dataset loaded from a file, its
   row: the n-th image in the file). */
CNN__PRIVATE cnn_result cnn__check_dataset_labels(cnn_model *model, const cnn_dataset *dataset, const char *which)
{
    const int classes = (int)cnn_shape_count(cnn_model_output_shape(model));
    int i;
    for (i = 0; i < dataset->count; i++)
        if (dataset->labels[i] < 0 || dataset->labels[i] >= classes)
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "image %d of the %s set has label %d, but the model has %d classes (0..%d)", i + 1, which,
                             dataset->labels[i], classes, classes - 1);
    return CNN_OK;
}

CNNDEF cnn_result cnn_model_fit(cnn_model *model, cnn_optimizer *optimizer, const cnn_dataset *dataset, const cnn_fit_desc *desc)
{
    cnn_fit_desc d;
    cnn_fit_state own, *state;  /* where training stands: the caller's, or our own */
    int *order, epoch, start, i, stop = 0, steps, last_left_out;
    size_t sample;
    cnn_result result = CNN_OK;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!optimizer) return cnn__null_argument(&model->error, "cnn_model_fit", "optimizer");
    if (!dataset) return cnn__null_argument(&model->error, "cnn_model_fit", "dataset");
    if ((result = cnn__check_batch(model, 1)) != CNN_OK) return result;
    if ((result = cnn__check_dataset(model, dataset)) != CNN_OK) return result;
    if (desc) d = *desc;
    else memset(&d, 0, sizeof d);
    if (d.epochs == 0) d.epochs = 10;
    if (d.batch_size == 0) d.batch_size = model->max_batch;
    if (d.epochs < 0 || d.batch_size < 0 || d.batch_size > model->max_batch)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "need epochs >= 1 and batch_size between 1 and max_batch %d (got %d, %d)",
                         model->max_batch, d.epochs, d.batch_size);
    if (d.patience < 0 || (d.patience > 0 && !d.validation))
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "early stopping needs patience >= 1 and a validation dataset (got patience %d%s)", d.patience,
                         d.validation ? "" : ", no validation set");
    if (d.lr_decay != 0.0f && !(d.lr_decay > 0.0f && d.lr_decay <= 1.0f && d.lr_decay_after >= 0))
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "lr_decay must be in (0, 1] and lr_decay_after >= 0 (got %g, %d)", (double)d.lr_decay, d.lr_decay_after);
    if (d.validation && (result = cnn__check_dataset(model, d.validation)) != CNN_OK) return result;
    if ((result = cnn__check_dataset_labels(model, dataset, "training")) != CNN_OK) return result;
    if (d.validation && (result = cnn__check_dataset_labels(model, d.validation, "validation")) != CNN_OK) return result;
    memset(&own, 0, sizeof own);
    state = d.state ? d.state : &own;
    if (state->epoch < 0 || state->epoch == INT_MAX || state->best_epoch < 0 || state->best_epoch > state->epoch ||
        (state->best_params && state->param_count != cnn__snapshot_count(model)))
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "the training state to resume from does not fit this model");
    if (d.patience > 0 && model->param_count > 0 && !state->best_params) {
        if (!(state->best_params = cnn__alloc_floats(cnn__snapshot_count(model))))
            return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for a copy of the best parameters");
        state->param_count = cnn__snapshot_count(model);
        state->best_epoch = 0; /* a best epoch of before, whose weights were not kept, cannot be restored: tracking starts anew */
        state->best_loss = 0.0f;
    }
    order = (int *)CNN_MALLOC((size_t)dataset->count * sizeof(int));
    if (!order) {
        cnn_fit_state_free(&own);
        return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for the shuffle order");
    }
    sample = cnn_shape_count(model->input);

    /* a last batch of one sample that batch norm cannot train on is left out */
    last_left_out = dataset->count > d.batch_size && dataset->count % d.batch_size != 0 &&
                    cnn__single_value_layer(model, dataset->count % d.batch_size) >= 0;
    steps = (dataset->count + d.batch_size - 1) / d.batch_size - last_left_out;
    for (epoch = state->epoch + 1; epoch <= d.epochs && result == CNN_OK; epoch++) {
        cnn_epoch_stats stats;
        double loss_sum = 0.0;
        long right = 0;
        int trained = 0; /* samples; all but a last batch that batch norm cannot take */
        /* each epoch's order depends on the generator alone, so that a
           checkpoint's generator is all a resumed run needs */
        for (i = 0; i < dataset->count; i++) order[i] = i;
        if (!d.no_shuffle) /* Fisher-Yates */
            for (i = dataset->count - 1; i > 0; i--) {
                int j = (int)cnn_rng_below(&model->rng, (uint32_t)i + 1u), swap = order[i];
                order[i] = order[j];
                order[j] = swap;
            }
        for (start = 0; start < dataset->count; start += d.batch_size) {
            int batch = dataset->count - start < d.batch_size ? dataset->count - start : d.batch_size, correct;
            float loss;
            if (start / d.batch_size == steps) break; /* the batch left out */
            for (i = 0; i < batch; i++) {
                memcpy(model->activations[0].data + (size_t)i * sample,
                       dataset->images.data + (size_t)order[start + i] * sample, sample * sizeof(float));
                model->labels[i] = dataset->labels[order[start + i]];
            }
            if (d.augment && (result = d.augment(model, model->activations[0].data, model->labels, batch, d.augment_user)) != CNN_OK)
                cnn__fail(&model->error, result, 0, 0, -1, "the augment callback failed: %s", cnn_result_string(result));
            else
                result = cnn__train_step(model, optimizer, model->labels, batch, &loss, &correct);
            if (result != CNN_OK) {
                char reason[sizeof model->error.message];
                memcpy(reason, model->error.message, sizeof reason);
                cnn__fail(&model->error, result, 0, 0, -1, "epoch %d, step %d: %s", epoch, start / d.batch_size + 1, reason);
                break;
            }
            loss_sum += (double)loss * batch;
            right += correct;
            trained += batch;
            if (d.on_batch) {
                cnn_batch_stats progress;
                progress.epoch = epoch;
                progress.epochs = d.epochs;
                progress.step = start / d.batch_size + 1;
                progress.steps = steps;
                progress.samples = start + batch;
                progress.total = last_left_out ? dataset->count - dataset->count % d.batch_size : dataset->count;
                progress.loss = (float)(loss_sum / (start + batch));
                progress.accuracy = (float)right / (float)(start + batch);
                if (d.on_batch(model, &progress, d.user)) {
                    stop = 1;
                    break;
                }
            }
        }
        if (result != CNN_OK || stop) break;
        memset(&stats, 0, sizeof stats);
        stats.epoch = epoch;
        stats.epochs = d.epochs;
        stats.loss = (float)(loss_sum / trained);
        stats.accuracy = (float)right / (float)trained;
        if (d.validation) {
            if ((result = cnn_model_evaluate(model, d.validation, &stats.validation_loss, &stats.validation_accuracy)) != CNN_OK) break;
            stats.validated = 1;
            /* improved: strictly lower loss; a NaN loss never improves */
            if (state->best_epoch == 0 || stats.validation_loss < state->best_loss) {
                state->best_epoch = epoch;
                state->best_loss = stats.validation_loss;
                if (state->best_params) memcpy(state->best_params, model->params, cnn__snapshot_count(model) * sizeof(float));
            }
            stats.best_epoch = state->best_epoch;
            stats.stopping = d.patience > 0 && epoch - state->best_epoch >= d.patience && epoch < d.epochs;
        }
        /* the rate for the next epoch is set before on_epoch, so that a
           checkpoint saved there holds it */
        if (d.lr_decay > 0.0f && epoch >= d.lr_decay_after) optimizer->desc.learning_rate *= d.lr_decay;
        state->epoch = epoch;
        if (d.on_epoch && d.on_epoch(model, &stats, d.user)) break;
        if (stats.stopping) break;
    }
    /* early stopping leaves the best epoch's parameters, however training ended */
    if (d.patience > 0 && state->best_params && state->best_epoch > 0 && result == CNN_OK)
        memcpy(model->params, state->best_params, cnn__snapshot_count(model) * sizeof(float));
    cnn_fit_state_free(&own);
    CNN_FREE(order);
    return result;
}

CNNDEF cnn_result cnn_model_evaluate(cnn_model *model, const cnn_dataset *dataset, float *mean_loss, float *accuracy)
{
    double loss_sum = 0.0;
    long right = 0;
    int start;
    size_t sample;
    cnn_result result;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!dataset) return cnn__null_argument(&model->error, "cnn_model_evaluate", "dataset");
    if ((result = cnn__check_batch(model, 1)) != CNN_OK) return result;
    if ((result = cnn__check_dataset(model, dataset)) != CNN_OK) return result;
    if ((result = cnn__check_dataset_labels(model, dataset, "evaluation")) != CNN_OK) return result;
    sample = cnn_shape_count(model->input);
    for (start = 0; start < dataset->count; start += model->max_batch) {
        int batch = dataset->count - start < model->max_batch ? dataset->count - start : model->max_batch, correct;
        float loss;
        if ((result = cnn_model_forward(model, dataset->images.data + (size_t)start * sample, batch, CNN_MODE_EVAL)) != CNN_OK ||
            (result = cnn_model_loss(model, dataset->labels + start, &loss, &correct)) != CNN_OK)
            return result;
        loss_sum += (double)loss * batch;
        right += correct;
    }
    if (mean_loss) *mean_loss = (float)(loss_sum / dataset->count);
    if (accuracy) *accuracy = (float)right / (float)dataset->count;
    return CNN_OK;
}

/* ======================================================================== validation and metrics */

CNNDEF cnn_result cnn_dataset_split(const cnn_dataset *source, float fraction, uint64_t seed, cnn_dataset *train, cnn_dataset *validation)
{
    cnn_rng rng;
    unsigned char *held;  /* (count) 1: the sample goes to validation */
    int count, held_count, i, t = 0, v = 0;
    size_t sample;
    cnn_result result;
    if (!train || !validation) return CNN_ERROR_INVALID_ARGUMENT;
    memset(train, 0, sizeof *train);
    memset(validation, 0, sizeof *validation);
    cnn__clear_error(&train->error);
    cnn__clear_error(&validation->error);
    if (!source || !source->images.data || !source->labels || source->count < 2 || source->images.n < source->count)
        return cnn__fail(&train->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "splitting needs a dataset of at least 2 samples");
    if (fraction == 0.0f) fraction = 0.1f;
    if (!(fraction > 0.0f && fraction < 1.0f))
        return cnn__fail(&train->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "the validation fraction must be in (0, 1), got %g",
                         (double)fraction);
    count = source->count;
    held_count = (int)floor((double)fraction * count + 0.5);
    if (held_count < 1) held_count = 1;
    if (held_count > count - 1) held_count = count - 1;
    held = (unsigned char *)CNN_MALLOC((size_t)count);
    if (!held) return cnn__fail(&train->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory splitting %d samples", count);
    /* Floyd's sampling: held_count distinct indices, each subset equally likely */
    memset(held, 0, (size_t)count);
    cnn_rng_seed(&rng, seed);
    for (i = count - held_count; i < count; i++) {
        int j = (int)cnn_rng_below(&rng, (uint32_t)i + 1u);
        held[held[j] ? i : j] = 1;
    }
    sample = (size_t)source->images.c * (size_t)source->images.h * (size_t)source->images.w;
    result = cnn_tensor_alloc(&train->images, count - held_count, source->images.c, source->images.h, source->images.w);
    if (result == CNN_OK)
        result = cnn_tensor_alloc(&validation->images, held_count, source->images.c, source->images.h, source->images.w);
    train->labels = (int *)CNN_MALLOC((size_t)(count - held_count) * sizeof(int));
    validation->labels = (int *)CNN_MALLOC((size_t)held_count * sizeof(int));
    if (result != CNN_OK || !train->labels || !validation->labels) {
        CNN_FREE(held);
        cnn_dataset_free(train);
        cnn_dataset_free(validation);
        return cnn__fail(&train->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory splitting %d samples", count);
    }
    for (i = 0; i < count; i++) {
        cnn_dataset *part = held[i] ? validation : train;
        int k = held[i] ? v++ : t++;
        memcpy(part->images.data + (size_t)k * sample, source->images.data + (size_t)i * sample, sample * sizeof(float));
        part->labels[k] = source->labels[i];
    }
    CNN_FREE(held);
    train->count = t;
    validation->count = v;
    train->num_classes = validation->num_classes = source->num_classes;
    return CNN_OK;
}

CNNDEF cnn_result cnn_confusion_count(const int *labels, const int *predicted, int count, int classes, int *matrix)
{
    int i;
    if (!labels || !predicted || !matrix || count < 0 || classes <= 0 || classes > CNN_MAX_CLASSES) return CNN_ERROR_INVALID_ARGUMENT;
    for (i = 0; i < count; i++)
        if (labels[i] < 0 || labels[i] >= classes || predicted[i] < 0 || predicted[i] >= classes) return CNN_ERROR_INVALID_ARGUMENT;
    memset(matrix, 0, (size_t)classes * (size_t)classes * sizeof(int));
    for (i = 0; i < count; i++) matrix[labels[i] * classes + predicted[i]]++;
    return CNN_OK;
}

CNNDEF cnn_result cnn_model_confusion(cnn_model *model, const cnn_dataset *dataset, int *matrix)
{
    int *predicted, classes, i;
    cnn_result result;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!dataset) return cnn__null_argument(&model->error, "cnn_model_confusion", "dataset");
    if (!matrix) return cnn__null_argument(&model->error, "cnn_model_confusion", "matrix");
    if ((result = cnn__check_batch(model, 1)) != CNN_OK) return result;
    if ((result = cnn__check_dataset(model, dataset)) != CNN_OK) return result;
    classes = (int)cnn_shape_count(cnn_model_output_shape(model));
    for (i = 0; i < dataset->count; i++)
        if (dataset->labels[i] < 0 || dataset->labels[i] >= classes)
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "sample %d has label %d but the model has %d classes", i, dataset->labels[i], classes);
    predicted = (int *)CNN_MALLOC((size_t)dataset->count * sizeof(int));
    if (!predicted) return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for %d predictions", dataset->count);
    result = cnn_model_predict(model, dataset->images.data, dataset->count, predicted, NULL);
    if (result == CNN_OK) result = cnn_confusion_count(dataset->labels, predicted, dataset->count, classes, matrix);
    CNN_FREE(predicted);
    return result;
}

/* precision = TP / (TP + FP) = diagonal / column sum,  recall = TP / (TP + FN) = diagonal / row sum */
CNNDEF cnn_result cnn_confusion_metrics(const int *matrix, int classes, cnn_class_metrics *metrics)
{
    int k, j;
    if (!matrix || !metrics || classes <= 0 || classes > CNN_MAX_CLASSES) return CNN_ERROR_INVALID_ARGUMENT;
    for (k = 0; k < classes; k++) {
        cnn_class_metrics *m = &metrics[k];
        memset(m, 0, sizeof *m);
        for (j = 0; j < classes; j++) {
            m->support += matrix[k * classes + j];
            m->predicted += matrix[j * classes + k];
        }
        m->correct = matrix[k * classes + k];
        m->precision = m->predicted > 0 ? (float)m->correct / (float)m->predicted : 0.0f;
        m->recall = m->support > 0 ? (float)m->correct / (float)m->support : 0.0f;
        m->f1 = m->precision + m->recall > 0.0f ? 2.0f * m->precision * m->recall / (m->precision + m->recall) : 0.0f;
    }
    return CNN_OK;
}

CNNDEF float cnn_confusion_accuracy(const int *matrix, int classes)
{
    long total = 0, right = 0;
    int k;
    if (!matrix || classes <= 0) return 0.0f;
    for (k = 0; k < classes * classes; k++) total += matrix[k];
    for (k = 0; k < classes; k++) right += matrix[k * classes + k];
    return total > 0 ? (float)((double)right / (double)total) : 0.0f;
}

/* ======================================================================== progress and history

   The only code in cnn.h that prints, and only to the stream the caller gave
   a cnn_progress, from callbacks the caller chose to pass to cnn_model_fit. */

/* Wall-clock seconds from an arbitrary origin, for rates and durations.
   POSIX: gettimeofday. Elsewhere clock(), which is wall time on Windows but
   processor time on some other systems (then the rates are rough). */
#if defined(__unix__) || defined(__APPLE__)
CNN__PRIVATE double cnn__seconds(void)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    return (double)now.tv_sec + (double)now.tv_usec * 1e-6;
}
CNN__PRIVATE int cnn__is_terminal(FILE *stream) { return isatty(fileno(stream)) == 1; }
#else
CNN__PRIVATE double cnn__seconds(void) { return (double)clock() / (double)CLOCKS_PER_SEC; }
CNN__PRIVATE int cnn__is_terminal(FILE *stream) { (void)stream; return 0; } /* no isatty: plain lines */
#endif

CNNDEF cnn_result cnn_history_add(cnn_history *history, const cnn_epoch_record *record)
{
    if (!history) return CNN_ERROR_INVALID_ARGUMENT;
    if (!record) return cnn__null_argument(&history->error, "cnn_history_add", "record");
    if (history->count >= history->capacity) { /* grow by doubling: there is no CNN_REALLOC */
        int capacity = history->capacity > 0 ? 2 * history->capacity : 16;
        cnn_epoch_record *epochs = (cnn_epoch_record *)CNN_MALLOC((size_t)capacity * sizeof(cnn_epoch_record));
        if (!epochs) return cnn__fail(&history->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for the history of %d epochs", capacity);
        if (history->count > 0) memcpy(epochs, history->epochs, (size_t)history->count * sizeof(cnn_epoch_record));
        CNN_FREE(history->epochs);
        history->epochs = epochs;
        history->capacity = capacity;
    }
    history->epochs[history->count++] = *record;
    return CNN_OK;
}

CNNDEF void cnn_history_free(cnn_history *history)
{
    if (!history) return;
    CNN_FREE(history->epochs);
    memset(history, 0, sizeof *history);
}

CNNDEF cnn_result cnn_history_save_csv(cnn_history *history, const char *path)
{
    cnn__atomic_file out;
    cnn_result result;
    int i, ok = 1;
    if (!history) return CNN_ERROR_INVALID_ARGUMENT;
    if (!path || !*path) return cnn__fail(&history->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_history_save_csv: no file name given");
    if (history->count < 0 || (history->count > 0 && !history->epochs))
        return cnn__fail(&history->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_history_save_csv: the history is damaged");
    if ((result = cnn__atomic_open(&out, path, &history->error)) != CNN_OK) return result;
    ok &= fprintf(out.file, "epoch,train_loss,train_accuracy,validation_loss,validation_accuracy,seconds\n") > 0;
    for (i = 0; ok && i < history->count; i++) {
        const cnn_epoch_record *r = &history->epochs[i];
        ok &= fprintf(out.file, "%d,%.6f,%.6f,", r->epoch, (double)r->loss, (double)r->accuracy) > 0;
        if (r->validated) ok &= fprintf(out.file, "%.6f,%.6f,", (double)r->validation_loss, (double)r->validation_accuracy) > 0;
        else ok &= fputs(",,", out.file) >= 0; /* empty fields: not measured */
        ok &= fprintf(out.file, "%.3f\n", r->seconds) > 0;
    }
    return cnn__atomic_close(&out, path, ok, &history->error);
}

CNNDEF void cnn_progress_init(cnn_progress *progress, FILE *stream, const cnn_progress_desc *desc)
{
    cnn_progress_style style = desc ? desc->style : CNN_PROGRESS_AUTO;
    if (!progress) return;
    memset(progress, 0, sizeof *progress);
    progress->stream = stream;
    progress->history = desc ? desc->history : NULL;
    progress->bar = stream && (style == CNN_PROGRESS_BAR || (style == CNN_PROGRESS_AUTO && cnn__is_terminal(stream)));
    progress->epoch_started = progress->last_drawn = cnn__seconds();
}

/* The bar fits in 80 columns: a longer line would wrap, and \r could not
   go back over it. */
CNNDEF int cnn_progress_batch(cnn_model *model, const cnn_batch_stats *stats, void *user)
{
    enum { BAR = 18 };
    cnn_progress *p = (cnn_progress *)user;
    double now, elapsed, rate, left;
    char bar[BAR + 1];
    int filled, i;
    (void)model;
    if (!p || !stats || !p->stream || !p->bar || stats->total <= 0) return 0;
    now = cnn__seconds();
    if (now - p->last_drawn < 0.1 && stats->step < stats->steps) return 0; /* at most ten redraws a second */
    p->last_drawn = now;
    elapsed = now - p->epoch_started;
    rate = elapsed > 0.0 ? stats->samples / elapsed : 0.0;
    left = rate > 0.0 ? (stats->total - stats->samples) / rate : 0.0;
    if (rate > 9999999.0) rate = 9999999.0; /* a first step timed at a microsecond must not widen the line */
    filled = (int)((double)BAR * stats->samples / stats->total);
    for (i = 0; i < BAR; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[BAR] = '\0';
    fprintf(p->stream, "\repoch %d/%d [%s] %.0f samples/s ETA %d:%02d loss %.3f acc %.1f%%", stats->epoch, stats->epochs, bar, rate,
            (int)left / 60, (int)left % 60, (double)stats->loss, 100.0 * stats->accuracy);
    fflush(p->stream);
    p->bar_on_line = 1;
    return 0;
}

CNNDEF int cnn_progress_epoch(cnn_model *model, const cnn_epoch_stats *stats, void *user)
{
    cnn_progress *p = (cnn_progress *)user;
    cnn_epoch_record record;
    double now;
    int stop = 0;
    (void)model;
    if (!p || !stats) return 0;
    now = cnn__seconds();
    memset(&record, 0, sizeof record);
    record.epoch = stats->epoch;
    record.loss = stats->loss;
    record.accuracy = stats->accuracy;
    record.validated = stats->validated;
    record.validation_loss = stats->validation_loss;
    record.validation_accuracy = stats->validation_accuracy;
    record.seconds = now - p->epoch_started;
    if (p->history && cnn_history_add(p->history, &record) != CNN_OK) stop = 1;
    if (p->stream) {
        if (p->bar_on_line) fputs("\r\033[K", p->stream); /* back to the line's start, and erase the bar */
        p->bar_on_line = 0;
        fprintf(p->stream, "epoch %2d/%d  loss %.4f  acc %6.2f%%", stats->epoch, stats->epochs, (double)stats->loss,
                100.0 * stats->accuracy);
        if (stats->validated)
            fprintf(p->stream, "  val loss %.4f  val acc %6.2f%%", (double)stats->validation_loss, 100.0 * stats->validation_accuracy);
        fprintf(p->stream, "  %.1f s\n", record.seconds);
        if (stats->stopping)
            fprintf(p->stream, "early stop: no lower validation loss since epoch %d, whose weights are kept\n", stats->best_epoch);
        if (stop) fprintf(p->stream, "training stopped: %s\n", p->history->error.message);
        fflush(p->stream);
    }
    p->epoch_started = p->last_drawn = now;
    return stop;
}

CNNDEF size_t cnn_confusion_report(const int *matrix, int classes, const cnn_label_map *map, char *buffer, size_t size)
{
    size_t used = 0;
    char name[16];
    int k;
    if (buffer && size) buffer[0] = '\0';
    if (!matrix || classes <= 0) return 0;
#define CNN__APPEND(...)                                                                     \
    do {                                                                                     \
        int written_ = snprintf(used < size && buffer ? buffer + used : NULL,                \
                                used < size && buffer ? size - used : 0, __VA_ARGS__);       \
        if (written_ > 0) used += (size_t)written_;                                          \
    } while (0)
    CNN__APPEND("class  support  precision  recall      f1\n");
    for (k = 0; k < classes; k++) {
        /* as cnn_confusion_metrics: row sum = support, column sum = predicted */
        long row = 0, column = 0, correct = matrix[k * classes + k];
        float precision, recall, f1;
        int j;
        for (j = 0; j < classes; j++) row += matrix[k * classes + j], column += matrix[j * classes + k];
        precision = column > 0 ? (float)correct / (float)column : 0.0f;
        recall = row > 0 ? (float)correct / (float)row : 0.0f;
        f1 = precision + recall > 0.0f ? 2.0f * precision * recall / (precision + recall) : 0.0f;
        if (map) snprintf(name, sizeof name, "%c", cnn_label_map_char(map, k));
        else snprintf(name, sizeof name, "%d", k);
        CNN__APPEND("%5s  %7ld  %8.2f%%  %5.2f%%  %6.3f\n", name, row, 100.0 * precision, 100.0 * recall, (double)f1);
    }
    CNN__APPEND("accuracy %.2f%%\n", 100.0 * cnn_confusion_accuracy(matrix, classes));
#undef CNN__APPEND
    return used;
}

/* ======================================================================== model files

   A model file (format version 2) is the magic and the version, then a
   list of tagged sections. Integers are unsigned, everything little-endian
   whatever the machine:
     8 bytes   magic "\x89CNN\r\n\x1a\n": the high byte and the line ends
               show up damage from text-mode transfers, as PNG's do
     u32       format version (2)
     sections, each a 4-byte tag, a u64 length and that many bytes:
       "INPT"  input channels, height, width (3 x u32)
       "LAYR"  u32 layer count, u32 record size (36); per layer a record:
               type, units, kernel, stride, padding, init (6 x u32), alpha,
               rate (2 x float32), ceil_mode (u32). Bytes a later cnn.h
               adds to the record are settings whose zero means "as
               before"; records of 32 bytes (before ceil_mode) still load
       "PARM"  u64 parameter count; the float32 parameters in model.params
               order (each layer's weights, then its biases)
       "STAT"  batch norm's running statistics, there when the model has
               batch norm layers: for each, in layer order, u64 batches
               tracked, then C running means and C running variances
               (float32)
       "clas"  the class names: u32 count; per name a u32 length and bytes
       "optm"  a checkpoint's optimiser: u32 type, learning rate, momentum,
               beta1, beta2, epsilon (5 x float32), u64 step, u64 count,
               the first moments (count float32), then for Adam the second
       "fits"  a checkpoint's training state: u32 epoch, u32 best epoch,
               float32 best loss, the model's generator (2 x u64), u32 1 and
               the augment generator (2 x u64) or u32 0, u64 count and the
               best epoch's parameters (count float32), u32 history records
               and each (u32 epoch, 4 x float32, u32 validated, float64 seconds)
       "CRC "  CRC-32 (zlib's and PNG's) of every byte before this section,
               as u32; always the last section, at the end of the file
   INPT, LAYR and PARM come first, in that order. A tag that starts with a
   capital letter is critical, one with a small letter is not: a reader
   meeting a tag it does not know refuses the file if the tag is critical
   (the model needs it) and skips the section otherwise (the CRC still
   covers it). So later additions - a layer's running statistics, say -
   add a tag, not a format version. Loading rebuilds the layers through
   cnn_model_add, so a file can only describe a model that could have been
   built, and checks every count against the layers and the file size
   before allocating.

   Version 1 files, which cnn.h wrote until 0.1, still load: after the
   version they hold the input (3 x u32), the layer count and records as in
   LAYR but without the record size, the u64 parameter count and the
   parameters, with no CRC. */

#define CNN__FILE_VERSION 2u
#define CNN__LAYER_BYTES 36          /* a layer record, as written */
#define CNN__LAYER_BYTES_BEFORE 32   /* as 0.1 wrote it, without ceil_mode */
#define CNN__MAX_LAYER_BYTES 1024    /* the largest record a reader accepts */
static const unsigned char cnn__magic[8] = {0x89, 'C', 'N', 'N', '\r', '\n', 0x1a, '\n'};

CNN__PRIVATE void cnn__put_u32(unsigned char *out, uint32_t value)
{
    out[0] = (unsigned char)(value & 0xffu);
    out[1] = (unsigned char)((value >> 8) & 0xffu);
    out[2] = (unsigned char)((value >> 16) & 0xffu);
    out[3] = (unsigned char)((value >> 24) & 0xffu);
}

CNN__PRIVATE uint32_t cnn__get_u32(const unsigned char *in)
{
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
}

CNN__PRIVATE void cnn__put_u64(unsigned char *out, uint64_t value)
{
    cnn__put_u32(out, (uint32_t)(value & 0xffffffffu));
    cnn__put_u32(out + 4, (uint32_t)(value >> 32));
}

CNN__PRIVATE uint64_t cnn__get_u64(const unsigned char *in) { return (uint64_t)cnn__get_u32(in) | (uint64_t)cnn__get_u32(in + 4) << 32; }

CNN__PRIVATE void cnn__put_f32(unsigned char *out, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    cnn__put_u32(out, bits);
}

CNN__PRIVATE float cnn__get_f32(const unsigned char *in)
{
    uint32_t bits = cnn__get_u32(in);
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* CRC-32 as zlib, PNG and gzip compute it (reflected polynomial 0xEDB88320),
   four bits at a time from a 16-entry table: crc = cnn__crc32(0, ...) for
   the first block, then cnn__crc32(crc, ...) for each block after it. */
CNN__PRIVATE uint32_t cnn__crc32(uint32_t crc, const unsigned char *bytes, size_t count)
{
    static const uint32_t nibble[16] = {0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u,
                                        0x4db26158u, 0x5005713cu, 0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
                                        0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu};
    size_t i;
    crc = ~crc;
    for (i = 0; i < count; i++) {
        crc ^= bytes[i];
        crc = (crc >> 4) ^ nibble[crc & 15u];
        crc = (crc >> 4) ^ nibble[crc & 15u];
    }
    return ~crc;
}

/* ---- writing: every byte goes through cnn__put, which keeps the CRC */

typedef struct cnn__model_writer {
    FILE *file;
    uint32_t crc;   /* of every byte written so far */
    int ok;         /* 0 once a write failed */
} cnn__model_writer;

CNN__PRIVATE void cnn__put(cnn__model_writer *w, const void *bytes, size_t count)
{
    w->ok &= fwrite(bytes, 1, count, w->file) == count;
    w->crc = cnn__crc32(w->crc, (const unsigned char *)bytes, count);
}

CNN__PRIVATE void cnn__put_word(cnn__model_writer *w, uint32_t value)
{
    unsigned char bytes[4];
    cnn__put_u32(bytes, value);
    cnn__put(w, bytes, 4);
}

CNN__PRIVATE void cnn__put_long(cnn__model_writer *w, uint64_t value)
{
    unsigned char bytes[8];
    cnn__put_u64(bytes, value);
    cnn__put(w, bytes, 8);
}

CNN__PRIVATE void cnn__put_floats(cnn__model_writer *w, const float *values, size_t count)
{
    unsigned char chunk[4096];
    size_t done, i, n;
    for (done = 0; done < count; done += n) {
        n = count - done < sizeof chunk / 4 ? count - done : sizeof chunk / 4;
        for (i = 0; i < n; i++) cnn__put_f32(chunk + 4 * i, values[done + i]);
        cnn__put(w, chunk, 4 * n);
    }
}

CNN__PRIVATE void cnn__put_section(cnn__model_writer *w, const char *tag, uint64_t length)
{
    cnn__put(w, tag, 4);
    cnn__put_long(w, length);
}

CNN__PRIVATE void cnn__put_rng(cnn__model_writer *w, const cnn_rng *rng)
{
    cnn__put_long(w, rng->state);
    cnn__put_long(w, rng->increment);
}

/* The sections of a model; then, for a checkpoint, the optimiser's and the
   training state's; then the CRC. */
CNN__PRIVATE cnn_result cnn__save(cnn_model *model, const cnn_optimizer *optimizer, const cnn_fit_state *state, const char *path)
{
    cnn__model_writer w;
    cnn__atomic_file out;
    cnn_result result;
    uint32_t crc;
    size_t names_length = 4, best_count = state && state->best_params ? state->param_count : 0;
    int i, history = state && state->history ? state->history->count : 0;
    if (!path || !*path) return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "no file name given to save to");
    if (!model->memory) return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "the model is not built: nothing to save");
    if ((result = cnn__atomic_open(&out, path, &model->error)) != CNN_OK) return result;
    w.file = out.file;
    w.crc = 0;
    w.ok = 1;
    cnn__put(&w, cnn__magic, 8);
    cnn__put_word(&w, CNN__FILE_VERSION);

    cnn__put_section(&w, "INPT", 12);
    cnn__put_word(&w, (uint32_t)model->input.c);
    cnn__put_word(&w, (uint32_t)model->input.h);
    cnn__put_word(&w, (uint32_t)model->input.w);

    cnn__put_section(&w, "LAYR", 8 + (uint64_t)CNN__LAYER_BYTES * (uint64_t)model->layer_count);
    cnn__put_word(&w, (uint32_t)model->layer_count);
    cnn__put_word(&w, CNN__LAYER_BYTES);
    for (i = 0; i < model->layer_count; i++) {
        const cnn_layer_desc *d = &model->layers[i].desc;
        unsigned char record[CNN__LAYER_BYTES];
        cnn__put_u32(record, (uint32_t)d->type); cnn__put_u32(record + 4, (uint32_t)d->units);
        cnn__put_u32(record + 8, (uint32_t)d->kernel); cnn__put_u32(record + 12, (uint32_t)d->stride);
        cnn__put_u32(record + 16, (uint32_t)d->padding); cnn__put_u32(record + 20, (uint32_t)d->init);
        cnn__put_f32(record + 24, d->alpha); cnn__put_f32(record + 28, d->rate);
        cnn__put_u32(record + 32, (uint32_t)d->ceil_mode);
        cnn__put(&w, record, CNN__LAYER_BYTES);
    }

    cnn__put_section(&w, "PARM", 8 + 4 * (uint64_t)model->param_count);
    cnn__put_long(&w, model->param_count);
    cnn__put_floats(&w, model->params, model->param_count);

    if (model->state_count > 0) {
        uint64_t length = 4 * (uint64_t)model->state_count;
        for (i = 0; i < model->layer_count; i++) length += model->layers[i].state_count ? 8 : 0;
        cnn__put_section(&w, "STAT", length);
        for (i = 0; i < model->layer_count; i++) {
            const cnn_layer *layer = &model->layers[i];
            if (!layer->state_count) continue;
            cnn__put_long(&w, layer->batches_tracked);
            cnn__put_floats(&w, layer->running_mean, (size_t)layer->in.c);
            cnn__put_floats(&w, layer->running_var, (size_t)layer->in.c);
        }
    }

    if (model->class_name_count > 0) {
        for (i = 0; i < model->class_name_count; i++) names_length += 4 + strlen(model->class_names[i]);
        cnn__put_section(&w, "clas", names_length);
        cnn__put_word(&w, (uint32_t)model->class_name_count);
        for (i = 0; i < model->class_name_count; i++) {
            cnn__put_word(&w, (uint32_t)strlen(model->class_names[i]));
            cnn__put(&w, model->class_names[i], strlen(model->class_names[i]));
        }
    }

    if (optimizer) {
        int moments = optimizer->second_moment ? 2 : 1;
        cnn__put_section(&w, "optm", 4 + 5 * 4 + 8 + 8 + 4 * (uint64_t)moments * optimizer->param_count);
        cnn__put_word(&w, (uint32_t)optimizer->desc.type);
        cnn__put_floats(&w, &optimizer->desc.learning_rate, 1);
        cnn__put_floats(&w, &optimizer->desc.momentum, 1);
        cnn__put_floats(&w, &optimizer->desc.beta1, 1);
        cnn__put_floats(&w, &optimizer->desc.beta2, 1);
        cnn__put_floats(&w, &optimizer->desc.epsilon, 1);
        cnn__put_long(&w, (uint64_t)optimizer->step);
        cnn__put_long(&w, optimizer->param_count);
        cnn__put_floats(&w, optimizer->first_moment, optimizer->param_count);
        if (moments == 2) cnn__put_floats(&w, optimizer->second_moment, optimizer->param_count);
    }
    if (state) {
        cnn__put_section(&w, "fits", 12 + 16 + 4 + (state->augment_rng ? 16 : 0) + 8 + 4 * (uint64_t)best_count + 4 +
                                         (uint64_t)history * 32);
        cnn__put_word(&w, (uint32_t)state->epoch);
        cnn__put_word(&w, (uint32_t)state->best_epoch);
        cnn__put_floats(&w, &state->best_loss, 1);
        cnn__put_rng(&w, &model->rng);
        cnn__put_word(&w, state->augment_rng ? 1u : 0u);
        if (state->augment_rng) cnn__put_rng(&w, state->augment_rng);
        cnn__put_long(&w, best_count);
        cnn__put_floats(&w, state->best_params, best_count);
        cnn__put_word(&w, (uint32_t)history);
        for (i = 0; i < history; i++) {
            const cnn_epoch_record *r = &state->history->epochs[i];
            unsigned char record[32];
            uint64_t seconds;
            memcpy(&seconds, &r->seconds, 8);
            cnn__put_u32(record, (uint32_t)r->epoch);
            cnn__put_f32(record + 4, r->loss); cnn__put_f32(record + 8, r->accuracy);
            cnn__put_f32(record + 12, r->validation_loss); cnn__put_f32(record + 16, r->validation_accuracy);
            cnn__put_u32(record + 20, (uint32_t)r->validated);
            cnn__put_u64(record + 24, seconds);
            cnn__put(&w, record, 32);
        }
    }

    crc = w.crc; /* of every byte before the CRC section */
    cnn__put_section(&w, "CRC ", 4);
    cnn__put_word(&w, crc);
    return cnn__atomic_close(&out, path, w.ok, &model->error);
}

CNNDEF cnn_result cnn_model_save(cnn_model *model, const char *path)
{
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    return cnn__save(model, NULL, NULL, path);
}

/* ---- reading: every byte comes through cnn__take, which keeps the CRC */

typedef struct cnn__model_reader {
    cnn__reader *reader;
    const char *path;     /* the file's name, for messages */
    cnn_error *error;     /* the model's */
    uint32_t crc;         /* of every byte taken so far */
} cnn__model_reader;

/* Takes count bytes into out; 0, with the error set, when the input ends
   first ("truncated inside <what>") or cannot be read. */
CNN__PRIVATE int cnn__take(cnn__model_reader *r, void *out, size_t count, const char *what)
{
    long long at = r->reader->offset;
    size_t got = cnn__read_bytes(r->reader, out, count);
    r->crc = cnn__crc32(r->crc, (const unsigned char *)out, got);
    if (got == count) return 1;
    if (cnn__reader_failed(r->reader))
        cnn__fail(r->error, CNN_ERROR_IO, 0, 0, at + (long long)got, "read error in '%s'", r->path);
    else
        cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + (long long)got, "'%s' is truncated inside %s", r->path, what);
    return 0;
}

/* Takes count float32 values into out (NULL: checks and drops them); each
   must be finite, and >= 0 when nonnegative is set. */
CNN__PRIVATE cnn_result cnn__take_floats(cnn__model_reader *r, float *out, size_t count, const char *what, int nonnegative)
{
    unsigned char chunk[4096];
    size_t done, i, n;
    for (done = 0; done < count; done += n) {
        long long at = r->reader->offset;
        n = count - done < sizeof chunk / 4 ? count - done : sizeof chunk / 4;
        if (!cnn__take(r, chunk, 4 * n, what)) return r->error->code;
        for (i = 0; i < n; i++) {
            float value = cnn__get_f32(chunk + 4 * i);
            if (!cnn__is_finite(value) || (nonnegative && value < 0.0f))
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 4 * (long long)i, "'%s': %s value %lu is %s", r->path,
                                 what, (unsigned long)(done + i), cnn__is_finite(value) ? "negative" : "not a finite number");
            if (out) out[done + i] = value;
        }
    }
    return CNN_OK;
}

/* Reads count layer records of record_bytes each and adds their layers. */
CNN__PRIVATE cnn_result cnn__take_layers(cnn_model *model, cnn__model_reader *r, uint32_t count, uint32_t record_bytes)
{
    unsigned char record[CNN__MAX_LAYER_BYTES];
    uint32_t i, extra;
    int field;
    for (i = 0; i < count; i++) {
        long long at = r->reader->offset;
        cnn_layer_desc desc;
        if (!cnn__take(r, record, record_bytes, "a layer record")) return r->error->code;
        for (field = 0; field < 6; field++)
            if (cnn__get_u32(record + 4 * field) > (uint32_t)INT_MAX)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 4 * field, "'%s': layer %lu has a negative setting",
                                 r->path, (unsigned long)i + 1);
        if (record_bytes < CNN__LAYER_BYTES) memset(record + record_bytes, 0, CNN__LAYER_BYTES - record_bytes);
        for (extra = CNN__LAYER_BYTES; extra < record_bytes; extra++)
            if (record[extra] != 0)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + (long long)extra,
                                 "'%s': layer %lu has settings this cnn.h does not know (written by a newer one?)", r->path,
                                 (unsigned long)i + 1);
        memset(&desc, 0, sizeof desc);
        desc.type = (cnn_layer_type)cnn__get_u32(record);
        desc.units = (int)cnn__get_u32(record + 4);
        desc.kernel = (int)cnn__get_u32(record + 8);
        desc.stride = (int)cnn__get_u32(record + 12);
        desc.padding = (int)cnn__get_u32(record + 16);
        desc.init = (cnn_init)cnn__get_u32(record + 20);
        desc.alpha = cnn__get_f32(record + 24);
        desc.rate = cnn__get_f32(record + 28);
        desc.ceil_mode = (int)cnn__get_u32(record + 32);
        if ((int)desc.type <= CNN_LAYER_NONE || (int)desc.type >= CNN_LAYER_TYPE_COUNT)
            return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': layer %lu has unknown type %d", r->path,
                             (unsigned long)i + 1, (int)desc.type);
        if (cnn_model_add(model, &desc) != CNN_OK) {
            char reason[sizeof r->error->message];
            memcpy(reason, r->error->message, sizeof reason);
            return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': layer %lu: %s", r->path, (unsigned long)i + 1, reason);
        }
    }
    return CNN_OK;
}

/* Starts the model from its input shape (3 x u32 at `at`). */
CNN__PRIVATE cnn_result cnn__take_input(cnn_model *model, cnn__model_reader *r)
{
    unsigned char bytes[12];
    long long at = r->reader->offset;
    int i;
    if (!cnn__take(r, bytes, 12, "the input shape")) return r->error->code;
    for (i = 0; i < 3; i++)
        if (cnn__get_u32(bytes + 4 * i) > 65536u)
            return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 4 * i, "'%s': input dimension %lu is not plausible", r->path,
                             (unsigned long)cnn__get_u32(bytes + 4 * i));
    if (cnn_model_init(model, (int)cnn__get_u32(bytes), (int)cnn__get_u32(bytes + 4), (int)cnn__get_u32(bytes + 8), 0) != CNN_OK) {
        char reason[sizeof r->error->message];
        memcpy(reason, r->error->message, sizeof reason);
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': %s", r->path, reason);
    }
    return CNN_OK;
}

/* Builds the model for max_batch, then reads its parameters after their
   count (u64), which must be the layers'. */
CNN__PRIVATE cnn_result cnn__take_params(cnn_model *model, cnn__model_reader *r, int max_batch)
{
    unsigned char bytes[8];
    long long at = r->reader->offset;
    uint64_t count;
    if (!cnn__take(r, bytes, 8, "the parameter count")) return r->error->code;
    count = cnn__get_u64(bytes);
    if (count != (uint64_t)model->param_count)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s' says %llu parameters but its layers have %llu", r->path,
                         (unsigned long long)count, (unsigned long long)model->param_count);
    if (r->reader->size >= 0 && (unsigned long long)(r->reader->size - r->reader->offset) < 4 * count)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, r->reader->size,
                         "'%s' is truncated: %llu parameters need %llu bytes, %lld remain", r->path, (unsigned long long)count,
                         4 * (unsigned long long)count, r->reader->size - r->reader->offset);
    if (cnn_model_build(model, max_batch) != CNN_OK) return r->error->code;
    return cnn__take_floats(r, model->params, model->param_count, "parameter", 0);
}

/* "STAT": batch norm's running statistics, after the parameters (the
   model is built). Variances must be >= 0. */
CNN__PRIVATE cnn_result cnn__take_statistics(cnn_model *model, cnn__model_reader *r, long long at, uint64_t length)
{
    unsigned char bytes[8];
    uint64_t expected = 4 * (uint64_t)model->state_count;
    cnn_result result;
    int i;
    for (i = 0; i < model->layer_count; i++) expected += model->layers[i].state_count ? 8 : 0;
    if (model->state_count == 0)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s' has running statistics but no batch norm layer", r->path);
    if (length != expected)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 4,
                         "'%s': the running statistics are %llu bytes; the batch norm layers need %llu", r->path,
                         (unsigned long long)length, (unsigned long long)expected);
    for (i = 0; i < model->layer_count; i++) {
        cnn_layer *layer = &model->layers[i];
        if (!layer->state_count) continue;
        if (!cnn__take(r, bytes, 8, "the running statistics")) return r->error->code;
        layer->batches_tracked = cnn__get_u64(bytes);
        if ((result = cnn__take_floats(r, layer->running_mean, (size_t)layer->in.c, "running mean", 0)) != CNN_OK ||
            (result = cnn__take_floats(r, layer->running_var, (size_t)layer->in.c, "running variance", 1)) != CNN_OK)
            return result;
    }
    return CNN_OK;
}

/* "clas": the class names. */
CNN__PRIVATE cnn_result cnn__take_names(cnn_model *model, cnn__model_reader *r, uint64_t length)
{
    unsigned char bytes[4];
    char *text = NULL, **names = NULL;
    long long at = r->reader->offset;
    uint64_t used = 4;
    uint32_t count, i, j, size;
    cnn_result result = CNN_OK;
    if (length < 4) goto overrun;
    if (!cnn__take(r, bytes, 4, "the class names")) return r->error->code;
    count = cnn__get_u32(bytes);
    if (count != (uint32_t)cnn_shape_count(cnn_model_output_shape(model)))
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s' names %lu classes but the model has %lu", r->path,
                         (unsigned long)count, (unsigned long)cnn_shape_count(cnn_model_output_shape(model)));
    if (count > CNN_MAX_CLASSES)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s' names %lu classes; names are kept for %d at most", r->path,
                         (unsigned long)count, CNN_MAX_CLASSES);
    if (length < 4 + 5 * (uint64_t)count) goto overrun; /* each name takes 5 bytes at least: check before allocating */
    names = (char **)CNN_MALLOC((size_t)count * sizeof *names);
    text = (char *)CNN_MALLOC((size_t)count * 256);
    if (!names || !text) {
        result = cnn__fail(r->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for %lu class names", (unsigned long)count);
        goto done;
    }
    for (i = 0; i < count; i++) {
        at = r->reader->offset;
        names[i] = text + 256 * (size_t)i;
        if (used + 4 > length) goto overrun;
        if (!cnn__take(r, bytes, 4, "the class names")) goto failed;
        size = cnn__get_u32(bytes);
        if (size == 0 || size > 255) {
            result = cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': class %lu's name is %lu bytes long (1 to 255)",
                               r->path, (unsigned long)i, (unsigned long)size);
            goto done;
        }
        if (used + 4 + size > length) goto overrun;
        if (!cnn__take(r, names[i], size, "the class names")) goto failed;
        names[i][size] = '\0';
        for (j = 0; j < size; j++)
            if ((unsigned char)names[i][j] < 0x20 || (unsigned char)names[i][j] == 0x7f) {
                result = cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 4 + (long long)j,
                                   "'%s': class %lu's name holds a control character", r->path, (unsigned long)i);
                goto done;
            }
        used += 4 + size;
    }
    if (used != length) goto overrun;
    if (cnn_model_set_class_names(model, (const char *const *)names, (int)count) != CNN_OK) {
        char reason[sizeof r->error->message];
        memcpy(reason, r->error->message, sizeof reason);
        result = cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': %s", r->path, reason);
    }
    goto done;
overrun:
    result = cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at,
                       "'%s': the class names do not fill their section of %llu bytes exactly", r->path, (unsigned long long)length);
    goto done;
failed:
    result = r->error->code;
done:
    CNN_FREE(names);
    CNN_FREE(text);
    return result;
}

/* What a checkpoint load fills besides the model. */
typedef struct cnn__checkpoint {
    cnn_optimizer *optimizer;
    cnn_fit_state *state;
    int has_optimizer, has_state;  /* the file held their sections */
} cnn__checkpoint;

/* "optm": the optimiser, initialised for the model and given the file's state. */
CNN__PRIVATE cnn_result cnn__take_optimizer(cnn_model *model, cnn__model_reader *r, uint64_t length, cnn_optimizer *optimizer)
{
    unsigned char bytes[40];
    cnn_optimizer_desc desc;
    long long at = r->reader->offset;
    uint64_t step, count, moments;
    cnn_result result;
    if (length < 40) return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': the optimiser section is too short", r->path);
    if (!cnn__take(r, bytes, 40, "the optimiser's state")) return r->error->code;
    memset(&desc, 0, sizeof desc);
    if (cnn__get_u32(bytes) > (uint32_t)CNN_OPTIMIZER_SGD)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': unknown optimiser type %lu", r->path,
                         (unsigned long)cnn__get_u32(bytes));
    desc.type = (cnn_optimizer_type)cnn__get_u32(bytes);
    desc.learning_rate = cnn__get_f32(bytes + 4);
    desc.momentum = cnn__get_f32(bytes + 8);
    desc.beta1 = cnn__get_f32(bytes + 12);
    desc.beta2 = cnn__get_f32(bytes + 16);
    desc.epsilon = cnn__get_f32(bytes + 20);
    step = cnn__get_u64(bytes + 24);
    count = cnn__get_u64(bytes + 32);
    moments = desc.type == CNN_OPTIMIZER_ADAM ? 2 : 1;
    if (count != (uint64_t)model->param_count || length != 40 + 4 * moments * count)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 32,
                         "'%s': the optimiser's state is for %llu parameters in %llu bytes; the model has %llu parameters", r->path,
                         (unsigned long long)count, (unsigned long long)length, (unsigned long long)model->param_count);
    if (step > 0x7fffffffu)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 24, "'%s': the optimiser's step count %llu is not plausible",
                         r->path, (unsigned long long)step);
    if (cnn_optimizer_init(optimizer, model, &desc) != CNN_OK) {
        char reason[sizeof r->error->message];
        memcpy(reason, r->error->message, sizeof reason);
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': %s", r->path, reason);
    }
    optimizer->step = (long)step;
    if ((result = cnn__take_floats(r, optimizer->first_moment, model->param_count, "first moment", 0)) != CNN_OK) return result;
    if (moments == 2) return cnn__take_floats(r, optimizer->second_moment, model->param_count, "second moment", 1);
    return CNN_OK;
}

CNN__PRIVATE int cnn__take_rng(cnn__model_reader *r, cnn_rng *rng)
{
    unsigned char bytes[16];
    long long at = r->reader->offset;
    if (!cnn__take(r, bytes, 16, "the training state")) return 0;
    rng->state = cnn__get_u64(bytes);
    rng->increment = cnn__get_u64(bytes + 8);
    if ((rng->increment & 1u) == 0) { /* PCG's stream must be odd: cnn_rng_seed never makes an even one */
        cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 8, "'%s': a random generator's stream is even", r->path);
        return 0;
    }
    return 1;
}

/* "fits": the training state, the model's generator and the history. */
CNN__PRIVATE cnn_result cnn__take_state(cnn_model *model, cnn__model_reader *r, uint64_t length, cnn_fit_state *state)
{
    unsigned char bytes[32];
    cnn_rng model_rng, augment_rng;
    long long at = r->reader->offset;
    uint64_t used = 12 + 16 + 4 + 8 + 4, best_count;
    uint32_t epoch, best_epoch, has_augment, history, i;
    float best_loss;
    cnn_result result;
    if (length < used) goto overrun;
    if (!cnn__take(r, bytes, 12, "the training state") || !cnn__take_rng(r, &model_rng) || !cnn__take(r, bytes + 12, 4, "the training state"))
        return r->error->code;
    epoch = cnn__get_u32(bytes);
    best_epoch = cnn__get_u32(bytes + 4);
    best_loss = cnn__get_f32(bytes + 8);
    has_augment = cnn__get_u32(bytes + 12);
    if (epoch >= (uint32_t)INT_MAX || best_epoch > epoch || has_augment > 1)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': the training state is not plausible (epoch %lu, best %lu)",
                         r->path, (unsigned long)epoch, (unsigned long)best_epoch);
    if (has_augment) {
        used += 16;
        if (length < used) goto overrun;
        if (!cnn__take_rng(r, &augment_rng)) return r->error->code;
    }
    at = r->reader->offset;
    if (!cnn__take(r, bytes + 16, 8, "the training state")) return r->error->code;
    best_count = cnn__get_u64(bytes + 16);
    if (best_count != 0 && best_count != (uint64_t)cnn__snapshot_count(model))
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': the best epoch's parameters are %llu, the model's %llu",
                         r->path, (unsigned long long)best_count, (unsigned long long)cnn__snapshot_count(model));
    used += 4 * best_count;
    if (length < used) goto overrun;
    if (best_count > 0) {
        if (!(state->best_params = cnn__alloc_floats(cnn__snapshot_count(model))))
            return cnn__fail(r->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for the best epoch's parameters");
        state->param_count = cnn__snapshot_count(model);
        if ((result = cnn__take_floats(r, state->best_params, cnn__snapshot_count(model), "best parameter", 0)) != CNN_OK) return result;
    }
    at = r->reader->offset;
    if (!cnn__take(r, bytes, 4, "the training state")) return r->error->code;
    history = cnn__get_u32(bytes);
    if (history > epoch || length != used + 32 * (uint64_t)history)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': %lu history records do not fit the training state",
                         r->path, (unsigned long)history);
    if (state->history) cnn_history_free(state->history);
    for (i = 0; i < history; i++) {
        cnn_epoch_record record;
        uint64_t seconds;
        if (!cnn__take(r, bytes, 32, "the history")) return r->error->code;
        record.epoch = (int)cnn__get_u32(bytes);
        record.loss = cnn__get_f32(bytes + 4);
        record.accuracy = cnn__get_f32(bytes + 8);
        record.validation_loss = cnn__get_f32(bytes + 12);
        record.validation_accuracy = cnn__get_f32(bytes + 16);
        record.validated = cnn__get_u32(bytes + 20) != 0;
        seconds = cnn__get_u64(bytes + 24);
        memcpy(&record.seconds, &seconds, 8);
        if (state->history && cnn_history_add(state->history, &record) != CNN_OK)
            return cnn__fail(r->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for the history");
    }
    state->epoch = (int)epoch;
    state->best_epoch = (int)best_epoch;
    state->best_loss = best_loss;
    model->rng = model_rng;
    if (has_augment && state->augment_rng) *state->augment_rng = augment_rng;
    return CNN_OK;
overrun:
    return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': the training state does not fill its section of %llu bytes exactly",
                     r->path, (unsigned long long)length);
}

/* Reads and drops a section this reader does not need. */
CNN__PRIVATE cnn_result cnn__skip_section(cnn__model_reader *r, uint64_t length)
{
    unsigned char chunk[4096];
    while (length > 0) {
        size_t n = length < sizeof chunk ? (size_t)length : sizeof chunk;
        if (!cnn__take(r, chunk, n, "a section")) return r->error->code;
        length -= n;
    }
    return CNN_OK;
}

/* Format version 2: the sections, up to the CRC and the end of the file. */
CNN__PRIVATE cnn_result cnn__take_sections(cnn_model *model, cnn__model_reader *r, int max_batch, cnn__checkpoint *checkpoint)
{
    static const char *const first[3] = {"INPT", "LAYR", "PARM"};
    unsigned char head[12];
    int index, i, sections_seen = 0;
    cnn_result result = CNN_OK;
    for (index = 0;; index++) {
        long long at = r->reader->offset;
        uint32_t crc = r->crc; /* of the bytes before this section */
        uint64_t length;
        char tag[5];
        if (r->reader->size >= 0 && at >= r->reader->size)
            return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s' ends after %d sections without its CRC (truncated?)",
                             r->path, index);
        if (!cnn__take(r, head, 12, "a section header")) return r->error->code;
        for (i = 0; i < 4; i++) tag[i] = head[i] >= 32 && head[i] < 127 ? (char)head[i] : '?';
        tag[4] = '\0';
        for (i = 0; i < 4; i++) /* letters, and spaces after the first: "CRC " */
            if (!((head[i] >= 'A' && head[i] <= 'Z') || (head[i] >= 'a' && head[i] <= 'z') || (i > 0 && head[i] == ' ')))
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': '%s' at byte %lld is not a section tag", r->path, tag,
                                 at);
        length = cnn__get_u64(head + 4);
        if (r->reader->size >= 0 && length > (uint64_t)(r->reader->size - r->reader->offset))
            return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 4,
                             "'%s': section '%s' at byte %lld claims %llu bytes; %lld remain (truncated?)", r->path, tag, at,
                             (unsigned long long)length, r->reader->size - r->reader->offset);
        if (index < 3 && memcmp(head, first[index], 4) != 0)
            return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': section %d is '%s' where '%s' belongs", r->path,
                             index + 1, tag, first[index]);
        if (index == 0) {
            if (length != 12)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 4, "'%s': the input section is %llu bytes, not 12",
                                 r->path, (unsigned long long)length);
            result = cnn__take_input(model, r);
        } else if (index == 1) {
            uint32_t count, record;
            if (length < 8 || !cnn__take(r, head, 8, "the layers")) goto short_section;
            count = cnn__get_u32(head);
            record = cnn__get_u32(head + 4);
            if (count == 0 || count > CNN_MAX_LAYERS)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 12, "'%s' declares %lu layers (1..%d allowed)", r->path,
                                 (unsigned long)count, CNN_MAX_LAYERS);
            if (record < CNN__LAYER_BYTES_BEFORE || record > CNN__MAX_LAYER_BYTES || length != 8 + (uint64_t)count * record)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 16,
                                 "'%s': %lu layer records of %lu bytes do not fill the section's %llu", r->path, (unsigned long)count,
                                 (unsigned long)record, (unsigned long long)length);
            result = cnn__take_layers(model, r, count, record);
        } else if (index == 2) {
            if (length != 8 + 4 * (uint64_t)model->param_count)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 4,
                                 "'%s': the parameter section is %llu bytes; the layers' %llu parameters need %llu", r->path,
                                 (unsigned long long)length, (unsigned long long)model->param_count,
                                 8 + 4 * (unsigned long long)model->param_count);
            result = cnn__take_params(model, r, max_batch);
        } else if (!memcmp(head, "CRC ", 4)) {
            if (length != 4)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 4, "'%s': the CRC section is %llu bytes, not 4", r->path,
                                 (unsigned long long)length);
            if (model->state_count > 0 && !(sections_seen & 8))
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at,
                                 "'%s' has batch norm layers but no running statistics (section 'STAT')", r->path);
            if (!cnn__take(r, head, 4, "the CRC")) return r->error->code;
            if (cnn__get_u32(head) != crc)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at,
                                 "'%s' is damaged: its CRC-32 says %08lx but its contents give %08lx (a changed byte or a bad copy)",
                                 r->path, (unsigned long)cnn__get_u32(head), (unsigned long)crc);
            if (cnn__read_bytes(r->reader, head, 1) != 0)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, r->reader->offset - 1, "'%s' has bytes after its CRC", r->path);
            return CNN_OK;
        } else if (!memcmp(head, "clas", 4) || !memcmp(head, "optm", 4) || !memcmp(head, "fits", 4)) {
            int which = head[0] == 'c' ? 1 : head[0] == 'o' ? 2 : 4;
            if (sections_seen & which)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': section '%s' appears twice", r->path, tag);
            sections_seen |= which;
            if (which == 1) result = cnn__take_names(model, r, length);
            else if (!checkpoint) result = cnn__skip_section(r, length);
            else if (which == 2) {
                checkpoint->has_optimizer = 1;
                result = cnn__take_optimizer(model, r, length, checkpoint->optimizer);
            } else {
                checkpoint->has_state = 1;
                result = cnn__take_state(model, r, length, checkpoint->state);
            }
        } else if (!memcmp(head, "STAT", 4)) {
            if (sections_seen & 8)
                return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s': section '%s' appears twice", r->path, tag);
            sections_seen |= 8;
            result = cnn__take_statistics(model, r, at, length);
        } else if (head[0] >= 'A' && head[0] <= 'Z') {
            return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at,
                             "'%s': section '%s' is one this cnn.h does not know and the model needs (written by a newer cnn.h?)",
                             r->path, tag);
        } else {
            result = cnn__skip_section(r, length); /* not critical: a later cnn.h's extra */
        }
        if (result != CNN_OK) return result;
        continue;
    short_section:
        if (r->error->code != CNN_OK && r->error->byte >= at) return r->error->code;
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at + 4, "'%s': section '%s' is too short (%llu bytes)", r->path, tag,
                         (unsigned long long)length);
    }
}

/* Format version 1: input, layer count, records, parameters, and the end. */
CNN__PRIVATE cnn_result cnn__take_version1(cnn_model *model, cnn__model_reader *r, int max_batch)
{
    unsigned char bytes[4];
    long long at;
    uint32_t count;
    cnn_result result;
    if ((result = cnn__take_input(model, r)) != CNN_OK) return result;
    at = r->reader->offset;
    if (!cnn__take(r, bytes, 4, "the layer count")) return r->error->code;
    count = cnn__get_u32(bytes);
    if (count == 0 || count > CNN_MAX_LAYERS)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, at, "'%s' declares %lu layers (1..%d allowed)", r->path,
                         (unsigned long)count, CNN_MAX_LAYERS);
    if ((result = cnn__take_layers(model, r, count, CNN__LAYER_BYTES_BEFORE)) != CNN_OK) return result;
    if ((result = cnn__take_params(model, r, max_batch)) != CNN_OK) return result;
    if (cnn__read_bytes(r->reader, bytes, 1) != 0)
        return cnn__fail(r->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, r->reader->offset - 1, "'%s' has bytes after its parameters", r->path);
    return CNN_OK;
}

/* Reads a whole model file (and, for a checkpoint, its other sections). */
CNN__PRIVATE cnn_result cnn__take_model(cnn_model *model, cnn__reader *reader, int max_batch, cnn__checkpoint *checkpoint)
{
    cnn__model_reader r;
    unsigned char head[12];
    uint32_t version;
    size_t got = cnn__read_bytes(reader, head, 12);
    r.reader = reader;
    r.path = reader->name;
    r.error = &model->error;
    r.crc = cnn__crc32(0, head, got);
    if (got < 12 && cnn__reader_failed(reader))
        return cnn__fail(&model->error, CNN_ERROR_IO, 0, 0, -1, "cannot read '%s' (is it a folder?)", r.path);
    if (got >= 2 && cnn__is_gzip(head))
        return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, 0, "'%s' looks gzip-compressed: unpack it first (gunzip -k '%s')",
                         r.path, r.path);
    if (got < 12)
        return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, (long long)got, "'%s' is too short to be a cnn.h model (%lu bytes)",
                         r.path, (unsigned long)got);
    if (memcmp(head, cnn__magic, 8) != 0)
        return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, 0, "'%s' is not a cnn.h model file (wrong magic bytes)", r.path);
    version = cnn__get_u32(head + 8);
    if (version == 1 && !checkpoint) return cnn__take_version1(model, &r, max_batch);
    if (version == 1)
        return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, 8, "'%s' is a model file of format version 1, not a checkpoint", r.path);
    if (version != CNN__FILE_VERSION)
        return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, 8, "'%s' has format version %lu; this cnn.h reads versions 1 and 2",
                         r.path, (unsigned long)version);
    return cnn__take_sections(model, &r, max_batch, checkpoint);
}

/* Ends a load: a model that failed to load is left freed, its error kept. */
CNN__PRIVATE cnn_result cnn__end_load(cnn_model *model, cnn_result result)
{
    if (result != CNN_OK) {
        cnn_error error = model->error;
        cnn_model_free(model);
        model->error = error;
    }
    return result;
}

/* Starts a model for loading: zeroed, with a clear error. */
CNN__PRIVATE cnn_result cnn__begin_load(cnn_model *model, int max_batch)
{
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    memset(model, 0, sizeof *model);
    cnn__clear_error(&model->error);
    if (max_batch <= 0)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "loading a model needs max_batch >= 1, got %d", max_batch);
    return CNN_OK;
}

/* Loads from the file at path, or else from size bytes at bytes. */
CNN__PRIVATE cnn_result cnn__load(cnn_model *model, const char *path, const void *bytes, size_t size, int max_batch,
                                  cnn__checkpoint *checkpoint)
{
    cnn__reader reader;
    cnn_result result;
    if ((result = cnn__begin_load(model, max_batch)) != CNN_OK) return result;
    if (path) result = cnn__open_reader(&reader, path, &model->error);
    else result = cnn__memory_reader(&reader, bytes, size, "<memory>", &model->error);
    if (result != CNN_OK) return result;
    result = cnn__take_model(model, &reader, max_batch, checkpoint);
    if (result == CNN_OK && checkpoint && !(checkpoint->has_optimizer && checkpoint->has_state))
        result = cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, -1,
                           "'%s' is a model file, not a checkpoint: it holds no optimiser or training state", reader.name);
    cnn__close_reader(&reader);
    return cnn__end_load(model, result);
}

CNNDEF cnn_result cnn_model_load(cnn_model *model, const char *path, int max_batch)
{
    if (!path) {
        cnn__begin_load(model, 1);
        return model ? cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "no file name given") : CNN_ERROR_INVALID_ARGUMENT;
    }
    return cnn__load(model, path, NULL, 0, max_batch, NULL);
}

CNNDEF cnn_result cnn_model_load_memory(cnn_model *model, const void *bytes, size_t size, int max_batch)
{
    if (!bytes) {
        cnn__begin_load(model, 1);
        return model ? cnn__null_argument(&model->error, "cnn_model_load_memory", "bytes") : CNN_ERROR_INVALID_ARGUMENT;
    }
    return cnn__load(model, NULL, bytes, size, max_batch, NULL);
}

/* "'conv2d 5x5 s1 p0' (16)", "'dense' (120)", "'relu'", or "no layer". */
CNN__PRIVATE void cnn__layer_description(const cnn_layer_desc *desc, char *text, size_t size)
{
    char label[48];
    if (!desc) {
        snprintf(text, size, "no layer");
        return;
    }
    cnn__layer_label(desc, label, sizeof label);
    if (desc->units > 0) snprintf(text, size, "'%s' (%d)", label, desc->units);
    else snprintf(text, size, "'%s'", label);
}

/* CNN_OK when file (loaded from path) has model's input and layers, else
   an error in model->error naming the first difference. */
CNN__PRIVATE cnn_result cnn__same_layers(cnn_model *model, const cnn_model *file, const char *path)
{
    char here[64], there[64];
    int i;
    if (file->input.c != model->input.c || file->input.h != model->input.h || file->input.w != model->input.w)
        return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1, "'%s' is for input (%d, %d, %d), this model takes (%d, %d, %d)", path,
                         file->input.c, file->input.h, file->input.w, model->input.c, model->input.h, model->input.w);
    for (i = 0; i < model->layer_count || i < file->layer_count; i++) {
        const cnn_layer_desc *a = i < model->layer_count ? &model->layers[i].desc : NULL;
        const cnn_layer_desc *b = i < file->layer_count ? &file->layers[i].desc : NULL;
        if (a && b && a->type == b->type && a->units == b->units && a->kernel == b->kernel && a->stride == b->stride &&
            a->padding == b->padding && a->alpha == b->alpha && a->rate == b->rate && a->ceil_mode == b->ceil_mode)
            continue;
        cnn__layer_description(a, here, sizeof here);
        cnn__layer_description(b, there, sizeof there);
        return cnn__fail(&model->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1, "'%s' holds other layers: layer %d is %s in the file, %s here",
                         path, i + 1, there, here);
    }
    return CNN_OK;
}

CNNDEF cnn_result cnn_model_load_weights(cnn_model *model, const char *path)
{
    cnn_model *file;
    cnn_result result;
    int i;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!model->memory)
        return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "cnn_model_load_weights fills a built model: build it first, "
                         "or load a new model with cnn_model_load");
    if (!path || !*path) return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "no file name given");
    /* the file becomes a model of its own (for one sample), checked whole,
       and only then gives its weights: a failure changes nothing */
    if (!(file = (cnn_model *)CNN_MALLOC(sizeof *file)))
        return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory loading '%s'", path);
    if ((result = cnn__load(file, path, NULL, 0, 1, NULL)) != CNN_OK) model->error = file->error;
    else if ((result = cnn__same_layers(model, file, path)) == CNN_OK &&
             (file->class_name_count == 0 ||
              (result = cnn_model_set_class_names(model, (const char *const *)file->class_names, file->class_name_count)) == CNN_OK))
    {
        memcpy(model->params, file->params, cnn__snapshot_count(model) * sizeof(float)); /* and the running statistics */
        for (i = 0; i < model->layer_count; i++) model->layers[i].batches_tracked = file->layers[i].batches_tracked;
    }
    cnn_model_free(file);
    CNN_FREE(file);
    return result;
}

CNNDEF cnn_result cnn_checkpoint_save(cnn_model *model, const cnn_optimizer *optimizer, const cnn_fit_state *state, const char *path)
{
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!optimizer) return cnn__null_argument(&model->error, "cnn_checkpoint_save", "optimizer");
    if (!state) return cnn__null_argument(&model->error, "cnn_checkpoint_save", "state");
    if (!optimizer->first_moment || optimizer->param_count != model->param_count)
        return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "this optimiser was not initialised for this model");
    if (state->epoch < 0 || state->best_epoch < 0 || state->best_epoch > state->epoch ||
        (state->best_params && state->param_count != cnn__snapshot_count(model)) || (state->history && state->history->count > state->epoch))
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "the training state does not fit this model (epoch %d, best epoch %d, %lu best parameters)", state->epoch,
                         state->best_epoch, (unsigned long)(state->best_params ? state->param_count : 0));
    return cnn__save(model, optimizer, state, path);
}

CNNDEF cnn_result cnn_checkpoint_load(cnn_model *model, cnn_optimizer *optimizer, cnn_fit_state *state, const char *path, int max_batch)
{
    cnn__checkpoint checkpoint;
    cnn_result result;
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!optimizer || !state || !path) {
        cnn__begin_load(model, 1);
        return cnn__null_argument(&model->error, "cnn_checkpoint_load", !optimizer ? "optimizer" : !state ? "state" : "path");
    }
    memset(optimizer, 0, sizeof *optimizer);
    state->epoch = state->best_epoch = 0;
    state->best_loss = 0.0f;
    state->best_params = NULL;
    state->param_count = 0;
    memset(&checkpoint, 0, sizeof checkpoint);
    checkpoint.optimizer = optimizer;
    checkpoint.state = state;
    if ((result = cnn__load(model, path, NULL, 0, max_batch, &checkpoint)) != CNN_OK) {
        cnn_optimizer_free(optimizer);
        cnn_fit_state_free(state);
        if (state->history) cnn_history_free(state->history);
    }
    return result;
}


/* ======================================================================== other tools' formats

   Both formats below name a model's tensors as PyTorch names a
   torch.nn.Sequential of the same layers, and hold them in PyTorch's
   layouts (see the API). Layer i is module i, and holds its parts:
     conv2d, dense   "i.weight", "i.bias"
     batch norm      "i.weight" (gamma), "i.bias" (beta), "i.running_mean",
                     "i.running_var" (C each), "i.num_batches_tracked"
                     (int64, no dimensions): nn.BatchNorm2d's or 1d's
   A residual block, begin to end, is one module as
   examples/pytorch/cnnh.py's Residual holds it: a Sequential of the
   body's layers, "body", and the projection, "shortcut" (nn.Conv2d 1x1,
   or nn.Identity, which has no tensors). Its layers are named inside it,
   a block inside a block inside that: with a block as module 4, the first
   conv of its body is "4.body.0.weight", its projection "4.shortcut.weight",
   and the layer after its end module 5.
   Element k of a float tensor in PyTorch's order is element
   cnn__torch_index(layer, part, k) of the part's array: the same for
   conv2d (OC, C, K, K), a projection (OC, C, 1, 1), biases and batch norm,
   transposed for a dense layer, which cnn.h keeps as (IN, OUT) and PyTorch
   as (OUT, IN). */
enum { CNN__PART_WEIGHT, CNN__PART_BIAS, CNN__PART_MEAN, CNN__PART_VARIANCE, CNN__PART_TRACKED };
static const char *const cnn__part_names[5] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
#define CNN__TORCH_NAME_SIZE 256  /* a tensor name, with the blocks around it */

CNN__PRIVATE size_t cnn__torch_index(const cnn_layer *layer, int part, size_t k)
{
    size_t in_count, out_count;
    if (part != CNN__PART_WEIGHT || layer->desc.type != CNN_LAYER_DENSE) return k;
    out_count = (size_t)layer->desc.units;
    in_count = layer->weight_count / out_count;
    return (k % in_count) * out_count + k / in_count;  /* (out o, in i) -> [i][o] */
}

/* How many tensors a layer has in PyTorch: 0, 2 (weight and bias) or 5 (batch norm). */
CNN__PRIVATE int cnn__torch_parts(const cnn_layer *layer)
{
    if (layer->weight_count == 0) return 0;
    return layer->desc.type == CNN_LAYER_BATCH_NORM ? 5 : 2;
}

/* The shape of a layer's part in PyTorch; returns the rank (0: a scalar). */
CNN__PRIVATE int cnn__torch_shape(const cnn_layer *layer, int part, uint64_t shape[4])
{
    size_t units = layer->desc.type == CNN_LAYER_BATCH_NORM ? layer->weight_count : (size_t)layer->desc.units;
    size_t area = (size_t)layer->desc.kernel * (size_t)layer->desc.kernel;
    shape[0] = (uint64_t)units;
    if (part == CNN__PART_TRACKED) return 0;
    if (part != CNN__PART_WEIGHT || layer->desc.type == CNN_LAYER_BATCH_NORM) return 1;
    if (layer->desc.type == CNN_LAYER_DENSE) {
        shape[1] = (uint64_t)(layer->weight_count / units);
        return 2;
    }
    shape[1] = (uint64_t)(layer->weight_count / units / area);  /* a projection's C is its block's input's */
    shape[2] = shape[3] = (uint64_t)layer->desc.kernel;
    return 4;
}

/* The floats of a layer's part (PART_TRACKED has none) and their count. */
CNN__PRIVATE const float *cnn__torch_values(const cnn_layer *layer, int part, size_t *count)
{
    *count = part == CNN__PART_WEIGHT ? layer->weight_count : part == CNN__PART_TRACKED ? 0 : layer->bias_count;
    switch (part) {
    case CNN__PART_WEIGHT: return layer->weight;
    case CNN__PART_BIAS: return layer->bias;
    case CNN__PART_MEAN: return layer->running_mean;
    case CNN__PART_VARIANCE: return layer->running_var;
    default: return NULL;
    }
}

/* The name of layer l's part (see above) in out; 0 when it does not fit in
   CNN__TORCH_NAME_SIZE bytes (blocks nested about 25 deep). */
CNN__PRIVATE int cnn__torch_name(const cnn_model *model, int l, int part, char out[CNN__TORCH_NAME_SIZE])
{
    int outer[CNN__TORCH_NAME_SIZE / 7];  /* the module index of each open block, outermost first ("0.body." each) */
    int depth = 0, module = 0, i, d, length;
    size_t used = 0;
    for (i = 0; i < l; i++) {
        cnn_layer_type type = model->layers[i].desc.type;
        if (type == CNN_LAYER_RESIDUAL_BEGIN && depth == (int)(sizeof outer / sizeof outer[0])) return 0;
        if (type == CNN_LAYER_RESIDUAL_BEGIN) outer[depth++] = module, module = 0;
        else if (type == CNN_LAYER_RESIDUAL_END && depth > 0) module = outer[--depth] + 1;
        else module++;
    }
    if (model->layers[l].desc.type == CNN_LAYER_RESIDUAL_END && depth > 0) module = outer[--depth];
    for (d = 0; d <= depth; d++) {
        if (d < depth) length = snprintf(out + used, CNN__TORCH_NAME_SIZE - used, "%d.body.", outer[d]);
        else length = snprintf(out + used, CNN__TORCH_NAME_SIZE - used, "%d.%s%s", module,
                               model->layers[l].desc.type == CNN_LAYER_RESIDUAL_END ? "shortcut." : "", cnn__part_names[part]);
        if (length < 0 || (size_t)length >= CNN__TORCH_NAME_SIZE - used) return 0;
        used += (size_t)length;
    }
    return 1;
}

/* Refuses a model whose tensor names would not fit (see cnn__torch_name). */
CNN__PRIVATE cnn_result cnn__check_torch_names(cnn_model *model, const char *function)
{
    char name[CNN__TORCH_NAME_SIZE];
    int l, part;
    for (l = 0; l < model->layer_count; l++)
        for (part = 0; part < cnn__torch_parts(&model->layers[l]); part++)
            if (!cnn__torch_name(model, l, part, name))
                return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                                 "%s: layer %d is in residual blocks nested too deep for a tensor name of %d bytes", function,
                                 l + 1, CNN__TORCH_NAME_SIZE);
    return CNN_OK;
}

/* A growing block of bytes for the headers the writers build. An
   allocation failure sets failed and later appends do nothing, so a
   writer checks once, at the end. */
typedef struct cnn__buffer {
    unsigned char *data;
    size_t length, capacity;
    int failed;
} cnn__buffer;

CNN__PRIVATE void cnn__buffer_put(cnn__buffer *buffer, const void *bytes, size_t count)
{
    if (buffer->failed) return;
    if (count > buffer->capacity - buffer->length) {
        size_t capacity = buffer->capacity ? buffer->capacity : 256;
        unsigned char *bigger;
        while (capacity - buffer->length < count) {
            if (capacity > (size_t)-1 / 2) { buffer->failed = 1; return; }
            capacity *= 2;
        }
        bigger = (unsigned char *)CNN_MALLOC(capacity);
        if (!bigger) { buffer->failed = 1; return; }
        if (buffer->length) memcpy(bigger, buffer->data, buffer->length);
        CNN_FREE(buffer->data);
        buffer->data = bigger;
        buffer->capacity = capacity;
    }
    if (count) memcpy(buffer->data + buffer->length, bytes, count);
    buffer->length += count;
}

CNN__PRIVATE void cnn__buffer_printf(cnn__buffer *buffer, const char *format, ...)
{
    char text[256];
    int length;
    va_list args;
    va_start(args, format);
    length = vsnprintf(text, sizeof text, format, args);
    va_end(args);
    if (length < 0 || (size_t)length >= sizeof text) buffer->failed = 1;  /* never for our short pieces */
    else cnn__buffer_put(buffer, text, (size_t)length);
}

CNN__PRIVATE void cnn__buffer_free(cnn__buffer *buffer)
{
    CNN_FREE(buffer->data);
    memset(buffer, 0, sizeof *buffer);
}

CNN__PRIVATE const char *cnn__parse_decimal(const char *text, double *value);

/* Writes a float as the shortest "%.Ng" text (N <= 9 always suffices)
   that reads back as the same float: 0.3, not 0.300000012; with '.' as
   the decimal point whatever the C locale says. */
CNN__PRIVATE void cnn__format_float(char *text, size_t size, float value)
{
    int digits;
    for (digits = 1; digits <= 9; digits++) {
        double back = 0.0;
        char *c;
        snprintf(text, size, "%.*g", digits, (double)value);
        for (c = text; *c; c++)
            if (*c == ',') *c = '.';
        if (cnn__parse_decimal(text, &back) && (float)back == value) break;
    }
}

/* Reads a decimal number ("-0.300000012", "1e-05") from text, ignoring
   the C locale; returns a pointer past it, or NULL when there is none. */
CNN__PRIVATE const char *cnn__parse_decimal(const char *text, double *value)
{
    uint64_t digits = 0;
    int scale = 0, exponent = 0, any = 0, negative = 0, exponent_negative = 0;
    double result;
    if (*text == '-' || *text == '+') negative = *text++ == '-';
    for (; *text >= '0' && *text <= '9'; text++, any = 1) {
        if (digits < 100000000000000000ull) digits = digits * 10 + (uint64_t)(*text - '0');
        else scale++;
    }
    if (*text == '.')
        for (text++; *text >= '0' && *text <= '9'; text++, any = 1)
            if (digits < 100000000000000000ull) digits = digits * 10 + (uint64_t)(*text - '0'), scale--;
    if (!any) return NULL;
    if (*text == 'e' || *text == 'E') {
        text++;
        if (*text == '-' || *text == '+') exponent_negative = *text++ == '-';
        if (*text < '0' || *text > '9') return NULL;
        for (; *text >= '0' && *text <= '9'; text++)
            if (exponent < 10000) exponent = exponent * 10 + (*text - '0');
    }
    scale += exponent_negative ? -exponent : exponent;
    result = (double)digits;
    /* powers of ten up to 1e22 are exact doubles: one rounding for short numbers */
    for (; scale > 0; scale -= scale > 22 ? 22 : scale) result *= pow(10.0, scale > 22 ? 22 : scale);
    for (; scale < 0; scale += scale < -22 ? 22 : -scale) result /= pow(10.0, scale < -22 ? 22 : -scale);
    *value = negative ? -result : result;
    return text;
}

/* A tensor name as it may appear in a message: at most 48 bytes, with
   anything unprintable (a file can hold any name) as '?'. */
CNN__PRIVATE const char *cnn__printable(const char *name, char out[52])
{
    size_t i;
    for (i = 0; name[i] && i < 48; i++) out[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
    if (name[i]) out[i++] = '.', out[i++] = '.', out[i++] = '.';
    out[i] = '\0';
    return out;
}

/* ======================================================================== safetensors

   The format (github.com/huggingface/safetensors), all little-endian:
     u64        N, the header's length in bytes (at most 100 MB)
     N bytes    a JSON object in UTF-8, which writers may pad with spaces:
                  "NAME": {"dtype": "F32", "shape": [6, 1, 5, 5],
                           "data_offsets": [BEGIN, END]}
                for each tensor, and optionally "__metadata__": an object
                of string values
     the data   each tensor's elements in row-major order, at [BEGIN, END)
                from the end of the header; the tensors tile the data
                exactly, in any order of keys, and end at the end of the file
   The reader checks all of that, and the model's tensors against it,
   before it touches a model; then it reads the data once, in the order of
   the offsets. cnn.h writes F32, and I64 for a batch norm layer's count
   of batches; it reads F32, F16 and BF16 (converted to float), I64 for
   that count, and knows every other dtype of the format by name and size.

   cnn.h's metadata ("__metadata__"; README.md, "To and from PyTorch and
   ONNX"): "cnn.h.version": "1", "cnn.h.input": "C,H,W", "cnn.h.layers":
   "COUNT", and per layer "cnn.h.layer.I": its type and settings, such as
   "conv2d units=6 kernel=5 stride=1 padding=2 init=glorot_uniform",
   "max_pool kernel=3 stride=2 padding=1 ceil_mode=1" (a pool's padding and
   ceil_mode written only when not 0), "batch_norm", "global_avg_pool",
   "residual_begin", "residual_end init=he_normal" (its projection's).
   "format": "pt" tells the Hugging Face tools the tensors are PyTorch's. */

#define CNN__SAFETENSORS_MAX_HEADER 100000000ull  /* as the format's own reader */
#define CNN__SAFETENSORS_MAX_RANK 8                 /* dimensions kept for messages */

typedef struct cnn__dtype {
    const char *name;
    int bits;  /* per element */
} cnn__dtype;

/* Every dtype of the format; cnn.h reads the first three, and I64 for a count of batches. */
enum { CNN__DTYPE_F32, CNN__DTYPE_F16, CNN__DTYPE_BF16, CNN__DTYPE_I64 = 5 };
static const cnn__dtype cnn__dtypes[] = {
    {"F32", 32}, {"F16", 16}, {"BF16", 16}, {"F64", 64}, {"C64", 64}, {"I64", 64}, {"U64", 64},
    {"I32", 32}, {"U32", 32}, {"I16", 16}, {"U16", 16}, {"I8", 8}, {"U8", 8}, {"BOOL", 8},
    {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"F4", 4}};

/* One tensor of a file's header. */
typedef struct cnn__tensor_entry {
    const char *name;         /* decoded from JSON */
    long long at;             /* file offset of its key, for messages */
    int dtype;                /* index into cnn__dtypes */
    int rank;                 /* shape holds the first CNN__SAFETENSORS_MAX_RANK */
    uint64_t shape[CNN__SAFETENSORS_MAX_RANK];
    uint64_t count;           /* elements: the product of the shape, 1 for a scalar */
    uint64_t begin, end;      /* bytes into the data */
    int layer, part;          /* what it fills: a layer index (-1: none yet), a CNN__PART_ */
} cnn__tensor_entry;

typedef struct cnn__metadata_entry {
    const char *key, *value;
    long long at;
} cnn__metadata_entry;

/* A parsed header. Strings live in text, which the parser decodes into. */
typedef struct cnn__safetensors {
    unsigned char *json;      /* the N bytes of the header */
    size_t json_length;
    char *text;               /* decoded strings, NUL-terminated, one after another */
    size_t text_used;
    cnn__tensor_entry *tensors;
    size_t tensor_count, tensor_capacity;
    cnn__metadata_entry *metadata;
    size_t metadata_count, metadata_capacity;
    int has_metadata;
    uint64_t data_length;     /* bytes of data the tensors tile */
} cnn__safetensors;

CNN__PRIVATE void cnn__safetensors_free(cnn__safetensors *file)
{
    CNN_FREE(file->json);
    CNN_FREE(file->text);
    CNN_FREE(file->tensors);
    CNN_FREE(file->metadata);
    memset(file, 0, sizeof *file);
}

/* Makes room for one more item in a growing array of item_size bytes. */
CNN__PRIVATE int cnn__grow(void **items, size_t *capacity, size_t count, size_t item_size)
{
    size_t new_capacity = *capacity ? 2 * *capacity : 16, bytes;
    void *bigger;
    if (count < *capacity) return 1;
    bytes = cnn__mul_size(new_capacity, item_size);
    if (!bytes || !(bigger = CNN_MALLOC(bytes))) return 0;
    if (count) memcpy(bigger, *items, count * item_size);
    CNN_FREE(*items);
    *items = bigger;
    *capacity = new_capacity;
    return 1;
}

/* ---------------------------------------------------------------- the JSON header

   A small strict JSON reader for the one shape of object the header is.
   It decodes strings (escapes and surrogate pairs into UTF-8), reads
   whole numbers without overflow, and skips values it does not need
   (nested at most 64 deep). Errors name the file and the header's byte. */

typedef struct cnn__json {
    cnn__safetensors *file;
    size_t at;                /* next byte of file->json */
    const char *path;
    cnn_error *error;
} cnn__json;

#define CNN__JSON_HEADER_AT 8  /* the header's first byte in the file */

CNN__PRIVATE cnn_result cnn__json_fail(cnn__json *json, const char *format, ...)
{
    char reason[200];
    va_list args;
    va_start(args, format);
    vsnprintf(reason, sizeof reason, format, args);
    va_end(args);
    return cnn__fail(json->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, CNN__JSON_HEADER_AT + (long long)json->at,
                     "'%s': header byte %lld: %s", json->path, CNN__JSON_HEADER_AT + (long long)json->at, reason);
}

/* The next byte that is not white space, without taking it; -1 at the end. */
CNN__PRIVATE int cnn__json_peek(cnn__json *json)
{
    const unsigned char *text = json->file->json;
    while (json->at < json->file->json_length &&
           (text[json->at] == ' ' || text[json->at] == '\t' || text[json->at] == '\n' || text[json->at] == '\r'))
        json->at++;
    return json->at < json->file->json_length ? text[json->at] : -1;
}

CNN__PRIVATE cnn_result cnn__json_expect(cnn__json *json, int c, const char *where)
{
    if (cnn__json_peek(json) != c) return cnn__json_fail(json, "expected '%c' %s", c, where);
    json->at++;
    return CNN_OK;
}

/* 1 when bytes are well-formed UTF-8 (no overlong forms, no surrogates,
   nothing above U+10FFFF), as JSON requires; else 0 and *bad is where. */
CNN__PRIVATE int cnn__utf8_valid(const unsigned char *bytes, size_t length, size_t *bad)
{
    size_t i = 0;
    while (i < length) {
        unsigned c = bytes[i], need, code, k;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) need = 1, code = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) need = 2, code = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) need = 3, code = c & 0x07;
        else break;
        if (length - i <= need) break;
        for (k = 1; k <= need && (bytes[i + k] & 0xC0) == 0x80; k++) code = code << 6 | (bytes[i + k] & 0x3Fu);
        if (k <= need) break;
        if ((need == 2 && (code < 0x800 || (code >= 0xD800 && code <= 0xDFFF))) ||
            (need == 3 && (code < 0x10000 || code > 0x10FFFF)))
            break;
        i += need + 1;
    }
    *bad = i;
    return i == length;
}

CNN__PRIVATE int cnn__hex_digit(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits after "\u". */
CNN__PRIVATE long cnn__json_hex4(cnn__json *json)
{
    const unsigned char *text = json->file->json;
    long value = 0;
    int i, digit;
    if (json->file->json_length - json->at < 4) return -1;
    for (i = 0; i < 4; i++) {
        if ((digit = cnn__hex_digit(text[json->at + (size_t)i])) < 0) return -1;
        value = value * 16 + digit;
    }
    json->at += 4;
    return value;
}

/* Reads a string into file->text and points *out at it. A decoded string
   is never longer than its JSON form, so text (sized as the header) has
   room for all of them. U+0000 is refused: names are C strings. */
CNN__PRIVATE cnn_result cnn__json_string(cnn__json *json, const char **out, const char *what)
{
    cnn__safetensors *file = json->file;
    char *to = file->text + file->text_used;
    const char *start = to;
    if (cnn__json_peek(json) != '"') return cnn__json_fail(json, "expected %s (a string in double quotes)", what);
    json->at++;
    for (;;) {
        unsigned c;
        long code;
        if (json->at >= file->json_length) return cnn__json_fail(json, "%s is not terminated", what);
        c = file->json[json->at++];
        if (c == '"') break;
        if (c < 0x20) { json->at--; return cnn__json_fail(json, "a control character (%u) inside %s", c, what); }
        if (c != '\\') { *to++ = (char)c; continue; }
        if (json->at >= file->json_length) return cnn__json_fail(json, "%s is not terminated", what);
        switch (c = file->json[json->at++]) {
        case '"': case '\\': case '/': *to++ = (char)c; continue;
        case 'b': *to++ = '\b'; continue;
        case 'f': *to++ = '\f'; continue;
        case 'n': *to++ = '\n'; continue;
        case 'r': *to++ = '\r'; continue;
        case 't': *to++ = '\t'; continue;
        case 'u': break;
        default: json->at--; return cnn__json_fail(json, "unknown escape '\\%c' in %s", c >= 0x20 && c < 0x7f ? (int)c : '?', what);
        }
        if ((code = cnn__json_hex4(json)) < 0) return cnn__json_fail(json, "'\\u' needs 4 hex digits in %s", what);
        if (code >= 0xDC00 && code <= 0xDFFF) return cnn__json_fail(json, "a lone low surrogate \\u%04lX in %s", code, what);
        if (code >= 0xD800 && code <= 0xDBFF) {  /* a pair: \uD8xx\uDCxx */
            long low;
            if (file->json_length - json->at < 2 || file->json[json->at] != '\\' || file->json[json->at + 1] != 'u')
                return cnn__json_fail(json, "a high surrogate \\u%04lX without its low half in %s", code, what);
            json->at += 2;
            low = cnn__json_hex4(json);
            if (low < 0xDC00 || low > 0xDFFF)
                return cnn__json_fail(json, "a high surrogate \\u%04lX without its low half in %s", code, what);
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        if (code == 0) return cnn__json_fail(json, "%s contains \\u0000", what);
        if (code < 0x80) *to++ = (char)code;
        else if (code < 0x800) *to++ = (char)(0xC0 | code >> 6), *to++ = (char)(0x80 | (code & 0x3F));
        else if (code < 0x10000)
            *to++ = (char)(0xE0 | code >> 12), *to++ = (char)(0x80 | (code >> 6 & 0x3F)), *to++ = (char)(0x80 | (code & 0x3F));
        else
            *to++ = (char)(0xF0 | code >> 18), *to++ = (char)(0x80 | (code >> 12 & 0x3F)),
            *to++ = (char)(0x80 | (code >> 6 & 0x3F)), *to++ = (char)(0x80 | (code & 0x3F));
    }
    *to++ = '\0';
    file->text_used = (size_t)(to - file->text);
    *out = start;
    return CNN_OK;
}

/* Reads a whole number >= 0 that fits in 64 bits. */
CNN__PRIVATE cnn_result cnn__json_whole(cnn__json *json, uint64_t *value, const char *what)
{
    const unsigned char *text = json->file->json;
    size_t length = json->file->json_length;
    uint64_t v = 0;
    int c = cnn__json_peek(json);
    if (c == '-') return cnn__json_fail(json, "%s is negative", what);
    if (c < '0' || c > '9') return cnn__json_fail(json, "expected %s (a whole number)", what);
    if (c == '0' && json->at + 1 < length && text[json->at + 1] >= '0' && text[json->at + 1] <= '9')
        return cnn__json_fail(json, "%s has a leading zero, which JSON does not allow", what);
    while (json->at < length && text[json->at] >= '0' && text[json->at] <= '9') {
        unsigned digit = (unsigned)(text[json->at] - '0');
        if (v > (UINT64_MAX - digit) / 10) return cnn__json_fail(json, "%s does not fit in 64 bits", what);
        v = v * 10 + digit;
        json->at++;
    }
    if (json->at < length && (text[json->at] == '.' || text[json->at] == 'e' || text[json->at] == 'E'))
        return cnn__json_fail(json, "%s is not a whole number", what);
    *value = v;
    return CNN_OK;
}

/* Skips one JSON value of any kind (an unknown field), checking its syntax. */
CNN__PRIVATE cnn_result cnn__json_skip(cnn__json *json, int depth)
{
    cnn__safetensors *file = json->file;
    const char *ignored;
    cnn_result result;
    int c = cnn__json_peek(json);
    if (depth > 64) return cnn__json_fail(json, "values nested more than 64 deep");
    if (c == '"') {
        size_t used = file->text_used;
        result = cnn__json_string(json, &ignored, "a string");
        file->text_used = used;  /* not kept */
        return result;
    }
    if (c == '{' || c == '[') {
        int close = c == '{' ? '}' : ']';
        json->at++;
        if (cnn__json_peek(json) == close) { json->at++; return CNN_OK; }
        for (;;) {
            if (close == '}') {
                size_t used = file->text_used;
                if ((result = cnn__json_string(json, &ignored, "a key")) != CNN_OK) return result;
                file->text_used = used;
                if ((result = cnn__json_expect(json, ':', "after a key")) != CNN_OK) return result;
            }
            if ((result = cnn__json_skip(json, depth + 1)) != CNN_OK) return result;
            c = cnn__json_peek(json);
            json->at++;
            if (c == close) return CNN_OK;
            if (c != ',') { json->at--; return cnn__json_fail(json, "expected ',' or '%c'", close); }
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {  /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
        const unsigned char *text = file->json;
        size_t length = file->json_length, digits;
        if (c == '-') json->at++;
        for (digits = 0; json->at < length && text[json->at] >= '0' && text[json->at] <= '9'; digits++) json->at++;
        if (digits == 0 || (digits > 1 && text[json->at - digits] == '0')) return cnn__json_fail(json, "a malformed number");
        if (json->at < length && text[json->at] == '.') {
            for (json->at++, digits = 0; json->at < length && text[json->at] >= '0' && text[json->at] <= '9'; digits++) json->at++;
            if (digits == 0) return cnn__json_fail(json, "a malformed number");
        }
        if (json->at < length && (text[json->at] == 'e' || text[json->at] == 'E')) {
            json->at++;
            if (json->at < length && (text[json->at] == '+' || text[json->at] == '-')) json->at++;
            for (digits = 0; json->at < length && text[json->at] >= '0' && text[json->at] <= '9'; digits++) json->at++;
            if (digits == 0) return cnn__json_fail(json, "a malformed number");
        }
        return CNN_OK;
    }
    {
        static const char *const words[3] = {"true", "false", "null"};
        int i;
        for (i = 0; i < 3; i++) {
            size_t n = strlen(words[i]);
            if (file->json_length - json->at >= n && memcmp(file->json + json->at, words[i], n) == 0) {
                json->at += n;
                return CNN_OK;
            }
        }
    }
    return cnn__json_fail(json, c < 0 ? "the header ends where a value should be" : "expected a value");
}

/* "__metadata__": {"key": "value", ...} */
CNN__PRIVATE cnn_result cnn__json_metadata(cnn__json *json)
{
    cnn__safetensors *file = json->file;
    cnn_result result;
    if (file->json_length - json->at >= 4 && cnn__json_peek(json) == 'n' && memcmp(file->json + json->at, "null", 4) == 0) {
        json->at += 4;  /* the reference reads an optional map: null is none */
        return CNN_OK;
    }
    if ((result = cnn__json_expect(json, '{', "to open __metadata__")) != CNN_OK) return result;
    if (cnn__json_peek(json) == '}') { json->at++; return CNN_OK; }
    for (;;) {
        cnn__metadata_entry entry;
        void *items = file->metadata;
        int c;
        cnn__json_peek(json);
        entry.at = CNN__JSON_HEADER_AT + (long long)json->at;
        if ((result = cnn__json_string(json, &entry.key, "a metadata key")) != CNN_OK) return result;
        if ((result = cnn__json_expect(json, ':', "after a metadata key")) != CNN_OK) return result;
        if (cnn__json_peek(json) != '"') return cnn__json_fail(json, "metadata values must be strings");
        if ((result = cnn__json_string(json, &entry.value, "a metadata value")) != CNN_OK) return result;
        if (!cnn__grow(&items, &file->metadata_capacity, file->metadata_count, sizeof entry))
            return cnn__fail(json->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "'%s': out of memory for the header", json->path);
        file->metadata = (cnn__metadata_entry *)items;
        file->metadata[file->metadata_count++] = entry;
        c = cnn__json_peek(json);
        json->at++;
        if (c == '}') return CNN_OK;
        if (c != ',') { json->at--; return cnn__json_fail(json, "expected ',' or '}' in __metadata__"); }
    }
}

/* "NAME": {"dtype": ..., "shape": [...], "data_offsets": [BEGIN, END]};
   fields it does not know are skipped, as the format's reader does. */
CNN__PRIVATE cnn_result cnn__json_tensor(cnn__json *json, cnn__tensor_entry *entry)
{
    cnn__safetensors *file = json->file;
    char name[52];
    int have_dtype = 0, have_shape = 0, have_offsets = 0, c;
    uint64_t bits;
    cnn_result result;
    const char *shown = cnn__printable(entry->name, name);
    if ((result = cnn__json_expect(json, '{', "to open a tensor's description")) != CNN_OK) return result;
    c = cnn__json_peek(json);
    while (c != '}') {
        const char *field;
        size_t used = file->text_used;
        if ((result = cnn__json_string(json, &field, "a field name")) != CNN_OK) return result;
        if ((result = cnn__json_expect(json, ':', "after a field name")) != CNN_OK) return result;
        if (strcmp(field, "dtype") == 0) {
            const char *dtype;
            size_t i, count = sizeof cnn__dtypes / sizeof cnn__dtypes[0];
            if (have_dtype++) return cnn__json_fail(json, "tensor '%s' has two dtypes", shown);
            if ((result = cnn__json_string(json, &dtype, "the dtype")) != CNN_OK) return result;
            for (i = 0; i < count && strcmp(dtype, cnn__dtypes[i].name) != 0; i++) continue;
            if (i == count) { char d[52]; return cnn__json_fail(json, "tensor '%s' has an unknown dtype '%s'", shown, cnn__printable(dtype, d)); }
            entry->dtype = (int)i;
        } else if (strcmp(field, "shape") == 0) {
            if (have_shape++) return cnn__json_fail(json, "tensor '%s' has two shapes", shown);
            if ((result = cnn__json_expect(json, '[', "to open the shape")) != CNN_OK) return result;
            entry->count = 1;
            if (cnn__json_peek(json) == ']') json->at++;
            else for (;;) {
                uint64_t side;
                if ((result = cnn__json_whole(json, &side, "a dimension")) != CNN_OK) return result;
                if (entry->rank < CNN__SAFETENSORS_MAX_RANK) entry->shape[entry->rank] = side;
                if (entry->rank++ > 1000) return cnn__json_fail(json, "tensor '%s' has more than 1000 dimensions", shown);
                if (side != 0 && entry->count > UINT64_MAX / side)
                    return cnn__json_fail(json, "tensor '%s' has more elements than 64 bits can count", shown);
                entry->count *= side;
                c = cnn__json_peek(json);
                json->at++;
                if (c == ']') break;
                if (c != ',') { json->at--; return cnn__json_fail(json, "expected ',' or ']' in a shape"); }
            }
        } else if (strcmp(field, "data_offsets") == 0) {
            if (have_offsets++) return cnn__json_fail(json, "tensor '%s' has two data_offsets", shown);
            if ((result = cnn__json_expect(json, '[', "to open data_offsets")) != CNN_OK ||
                (result = cnn__json_whole(json, &entry->begin, "the first data offset")) != CNN_OK ||
                (result = cnn__json_expect(json, ',', "in data_offsets, which are [begin, end]")) != CNN_OK ||
                (result = cnn__json_whole(json, &entry->end, "the second data offset")) != CNN_OK ||
                (result = cnn__json_expect(json, ']', "after [begin, end] in data_offsets")) != CNN_OK)
                return result;
        } else if ((result = cnn__json_skip(json, 1)) != CNN_OK) {
            return result;
        }
        file->text_used = used;  /* the field name is not kept */
        c = cnn__json_peek(json);
        if (c == ',') { json->at++; c = 0; }
        else if (c != '}') return cnn__json_fail(json, "expected ',' or '}' in tensor '%s'", shown);
    }
    json->at++;
    if (!have_dtype || !have_shape || !have_offsets)
        return cnn__json_fail(json, "tensor '%s' has no %s", shown, !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    if (entry->end < entry->begin)
        return cnn__json_fail(json, "tensor '%s' has data_offsets [%llu, %llu], which end before they begin", shown,
                              (unsigned long long)entry->begin, (unsigned long long)entry->end);
    bits = (uint64_t)cnn__dtypes[entry->dtype].bits;
    if (entry->count > UINT64_MAX / bits)
        return cnn__json_fail(json, "tensor '%s': %llu elements of %s take more bytes than 64 bits can count", shown,
                              (unsigned long long)entry->count, cnn__dtypes[entry->dtype].name);
    if ((entry->count * bits) % 8 != 0)
        return cnn__json_fail(json, "tensor '%s': %llu elements of %s are not a whole number of bytes", shown,
                              (unsigned long long)entry->count, cnn__dtypes[entry->dtype].name);
    if (entry->end - entry->begin != entry->count * bits / 8)
        return cnn__json_fail(json, "tensor '%s': %llu elements of %s take %llu bytes, but data_offsets [%llu, %llu] hold %llu",
                              shown, (unsigned long long)entry->count, cnn__dtypes[entry->dtype].name,
                              (unsigned long long)(entry->count * bits / 8), (unsigned long long)entry->begin,
                              (unsigned long long)entry->end, (unsigned long long)(entry->end - entry->begin));
    return CNN_OK;
}

CNN__PRIVATE int cnn__compare_tensor_names(const void *a, const void *b)
{
    return strcmp(((const cnn__tensor_entry *)a)->name, ((const cnn__tensor_entry *)b)->name);
}

CNN__PRIVATE int cnn__compare_tensor_offsets(const void *a, const void *b)
{
    const cnn__tensor_entry *x = (const cnn__tensor_entry *)a, *y = (const cnn__tensor_entry *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;  /* an empty tensor before one that starts with it */
    return 0;
}

CNN__PRIVATE int cnn__compare_metadata_keys(const void *a, const void *b)
{
    return strcmp(((const cnn__metadata_entry *)a)->key, ((const cnn__metadata_entry *)b)->key);
}

/* Reads and checks a file's header, leaving the reader at the data. On
   return the tensors are sorted by name (no two alike) and tile the data
   exactly; file->data_length is its length, equal to the rest of the input. */
CNN__PRIVATE cnn_result cnn__safetensors_header(cnn__safetensors *file, cnn__reader *reader, cnn_error *error)
{
    const char *path = reader->name;
    unsigned char prefix[8];
    uint64_t header_length, expected = 0;
    long long size = reader->size;
    size_t got, i, bad;
    cnn__json json;
    cnn_result result;
    int c;
    memset(file, 0, sizeof *file);
    got = cnn__read_bytes(reader, prefix, 8);
    if (got < 8 && cnn__reader_failed(reader))
        return cnn__fail(error, CNN_ERROR_IO, 0, 0, -1, "cannot read '%s' (is it a folder?)", path);
    if (got < 8)
        return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, (long long)got,
                         "'%s' is too short to be a safetensors file (%lu bytes)", path, (unsigned long)got);
    header_length = (uint64_t)cnn__get_u32(prefix) | (uint64_t)cnn__get_u32(prefix + 4) << 32;
    if (header_length > CNN__SAFETENSORS_MAX_HEADER)
        return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, 0, "'%s': header length %llu is more than the format's 100 MB",
                         path, (unsigned long long)header_length);
    if (size >= 0 && header_length > (uint64_t)size - 8)
        return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, 0, "'%s': header length %llu runs past the end of the file (%lld bytes)",
                         path, (unsigned long long)header_length, size);
    if (header_length < 2)
        return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, 0, "'%s': header length %llu is too short for a JSON object",
                         path, (unsigned long long)header_length);
    file->json_length = (size_t)header_length;
    file->json = (unsigned char *)CNN_MALLOC(file->json_length);
    file->text = (char *)CNN_MALLOC(file->json_length);
    if (!file->json || !file->text)
        return cnn__fail(error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "'%s': out of memory for a %llu-byte header", path,
                         (unsigned long long)header_length);
    if ((got = cnn__read_bytes(reader, file->json, file->json_length)) != file->json_length)
        return cnn__fail(error, cnn__reader_failed(reader) ? CNN_ERROR_IO : CNN_ERROR_BAD_MODEL_FILE, 0, 0, 8 + (long long)got,
                         "'%s' ends inside its %llu-byte header", path, (unsigned long long)header_length);
    if (!cnn__utf8_valid(file->json, file->json_length, &bad))
        return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, 8 + (long long)bad, "'%s': header byte %lld: not valid UTF-8",
                         path, 8 + (long long)bad);

    json.file = file; json.at = 0; json.path = path; json.error = error;
    /* the format's text says the header begins with '{'; its reader, like
       any JSON reader, also takes white space before it, and so does this */
    if (cnn__json_peek(&json) != '{') return cnn__json_fail(&json, "the header is not a JSON object: not a safetensors file");
    json.at++;
    c = cnn__json_peek(&json);
    if (c == '}') json.at++;
    while (c != '}') {
        cnn__tensor_entry entry;
        const char *key;
        long long at;
        void *items = file->tensors;
        cnn__json_peek(&json);
        at = CNN__JSON_HEADER_AT + (long long)json.at;
        if ((result = cnn__json_string(&json, &key, "a tensor name")) != CNN_OK) return result;
        if ((result = cnn__json_expect(&json, ':', "after a tensor name")) != CNN_OK) return result;
        if (strcmp(key, "__metadata__") == 0) {
            if (file->has_metadata++) return cnn__json_fail(&json, "__metadata__ appears twice");
            if ((result = cnn__json_metadata(&json)) != CNN_OK) return result;
        } else {
            memset(&entry, 0, sizeof entry);
            entry.name = key; entry.at = at; entry.layer = -1;
            if ((result = cnn__json_tensor(&json, &entry)) != CNN_OK) return result;
            if (!cnn__grow(&items, &file->tensor_capacity, file->tensor_count, sizeof entry))
                return cnn__fail(error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "'%s': out of memory for the header", path);
            file->tensors = (cnn__tensor_entry *)items;
            file->tensors[file->tensor_count++] = entry;
        }
        c = cnn__json_peek(&json);
        json.at++;
        if (c != ',' && c != '}') { json.at--; return cnn__json_fail(&json, "expected ',' or '}' after a tensor"); }
    }
    if (cnn__json_peek(&json) >= 0) return cnn__json_fail(&json, "something other than spaces after the header's object");

    /* no two tensors (or metadata keys) alike */
    if (file->metadata_count > 1) qsort(file->metadata, file->metadata_count, sizeof *file->metadata, cnn__compare_metadata_keys);
    for (i = 1; i < file->metadata_count; i++)
        if (strcmp(file->metadata[i - 1].key, file->metadata[i].key) == 0) {
            char name[52];
            return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, file->metadata[i].at, "'%s': metadata key '%s' appears twice",
                             path, cnn__printable(file->metadata[i].key, name));
        }
    /* the data: tensors in the order of their offsets tile it exactly */
    if (file->tensor_count > 1) qsort(file->tensors, file->tensor_count, sizeof *file->tensors, cnn__compare_tensor_offsets);
    for (i = 0; i < file->tensor_count; i++) {
        cnn__tensor_entry *entry = &file->tensors[i];
        char name[52];
        if (entry->begin != expected)
            return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, entry->at,
                             "'%s': tensor '%s' begins at data offset %llu, but the one before it ends at %llu (%s)", path,
                             cnn__printable(entry->name, name), (unsigned long long)entry->begin, (unsigned long long)expected,
                             entry->begin < expected ? "they overlap" : "a gap");
        expected = entry->end;
    }
    if (size >= 0 && expected != (uint64_t)size - 8 - header_length)
        return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, size,
                         "'%s' has %llu bytes of data after its header; its tensors take %llu (%s)", path,
                         (unsigned long long)((uint64_t)size - 8 - header_length), (unsigned long long)expected,
                         expected > (uint64_t)size - 8 - header_length ? "truncated" : "trailing bytes");
    file->data_length = expected;
    if (file->tensor_count > 1) qsort(file->tensors, file->tensor_count, sizeof *file->tensors, cnn__compare_tensor_names);
    for (i = 1; i < file->tensor_count; i++)
        if (strcmp(file->tensors[i - 1].name, file->tensors[i].name) == 0) {
            char name[52];
            return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, file->tensors[i].at, "'%s': tensor '%s' appears twice", path,
                             cnn__printable(file->tensors[i].name, name));
        }
    return CNN_OK;
}

/* "(6, 1, 5, 5)" */
CNN__PRIVATE const char *cnn__format_shape(char out[96], const uint64_t *shape, int rank)
{
    size_t used = 0;
    int i;
    out[used++] = '(';
    for (i = 0; i < rank && i < CNN__SAFETENSORS_MAX_RANK && used < 70; i++)
        used += (size_t)snprintf(out + used, 96 - used, i ? ", %llu" : "%llu", (unsigned long long)shape[i]);
    if (i < rank) used += (size_t)snprintf(out + used, 96 - used, ", ...");
    snprintf(out + used, 96 - used, ")");
    return out;
}

/* Pairs every tensor of the model with a tensor of the file, by name, and
   checks its dtype and shape; then that nothing is left over. A batch norm
   layer's num_batches_tracked may be missing: PyTorch's load_state_dict
   counts 0 batches then, and so does cnn.h. */
CNN__PRIVATE cnn_result cnn__safetensors_match(const cnn_model *model, cnn__safetensors *file, const char *path, cnn_error *error)
{
    size_t matched = 0, i;
    int l, part, nested = 0;
    char name[CNN__TORCH_NAME_SIZE], shown[52], have[96], want[96];
    for (l = 0; l < model->layer_count; l++) {
        const cnn_layer *layer = &model->layers[l];
        nested |= layer->desc.type == CNN_LAYER_RESIDUAL_BEGIN;
        for (part = 0; part < cnn__torch_parts(layer); part++) {
            cnn__tensor_entry key, *entry;
            uint64_t shape[4];
            int rank = cnn__torch_shape(layer, part, shape), d, same;
            if (!cnn__torch_name(model, l, part, name))
                return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, -1,
                                 "'%s': layer %d is in residual blocks nested too deep for a tensor name of %d bytes", path, l,
                                 CNN__TORCH_NAME_SIZE);
            key.name = name;
            entry = file->tensor_count ? (cnn__tensor_entry *)bsearch(&key, file->tensors, file->tensor_count, sizeof key,
                                                                     cnn__compare_tensor_names) : NULL;
            if (!entry && part == CNN__PART_TRACKED) continue;
            if (!entry)
                return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, -1, "'%s' has no tensor '%s' (layer %d, %s, needs it as %s)",
                                 path, name, l, cnn_layer_type_name(layer->desc.type), cnn__format_shape(want, shape, rank));
            if (part == CNN__PART_TRACKED && entry->dtype != CNN__DTYPE_I64)
                return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, entry->at, "'%s': tensor '%s' is %s; a count of batches is I64",
                                 path, name, cnn__dtypes[entry->dtype].name);
            if (part != CNN__PART_TRACKED && entry->dtype != CNN__DTYPE_F32 && entry->dtype != CNN__DTYPE_F16 &&
                entry->dtype != CNN__DTYPE_BF16)
                return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, entry->at, "'%s': tensor '%s' is %s; cnn.h reads F32, F16 and BF16",
                                 path, name, cnn__dtypes[entry->dtype].name);
            same = entry->rank == rank;
            for (d = 0; same && d < rank; d++) same = entry->shape[d] == shape[d];
            if (!same)
                return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, entry->at, "'%s': tensor '%s' has shape %s; layer %d (%s) needs %s",
                                 path, name, cnn__format_shape(have, entry->shape, entry->rank), l,
                                 cnn_layer_type_name(layer->desc.type), cnn__format_shape(want, shape, rank));
            entry->layer = l;
            entry->part = part;
            matched++;
        }
    }
    if (matched == file->tensor_count) return CNN_OK;
    for (i = 0; file->tensors[i].layer >= 0; i++) continue;
    {
        const char *extra = file->tensors[i].name;
        char *end;
        long index = strtol(extra, &end, 10);
        if (!nested && end != extra && *end == '.' && index >= 0 && index < model->layer_count && extra[0] >= '0' && extra[0] <= '9')
            return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, file->tensors[i].at,
                             "'%s': tensor '%s' is not a parameter of this model (layer %ld is %s)", path,
                             cnn__printable(extra, shown), index, cnn_layer_type_name(model->layers[index].desc.type));
        return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, file->tensors[i].at,
                         "'%s': tensor '%s' is not a parameter of this model (layers 0 to %d)", path,
                         cnn__printable(extra, shown), model->layer_count - 1);
    }
}

/* F16 (1 sign, 5 exponent, 10 fraction bits) to float, exactly. */
CNN__PRIVATE float cnn__f16_to_float(unsigned bits)
{
    unsigned sign = bits >> 15 & 1u, exponent = bits >> 10 & 0x1Fu, fraction = bits & 0x3FFu;
    uint32_t out;
    float value;
    if (exponent == 0) {  /* zero or subnormal: fraction x 2^-24, exact in a float */
        value = (float)fraction * (1.0f / 16777216.0f);
        return sign ? -value : value;
    }
    if (exponent == 31) out = (uint32_t)sign << 31 | 0x7F800000u | (uint32_t)fraction << 13;  /* inf, NaN */
    else out = (uint32_t)sign << 31 | (uint32_t)(exponent - 15 + 127) << 23 | (uint32_t)fraction << 13;
    memcpy(&value, &out, sizeof value);
    return value;
}

/* BF16 is a float's top 16 bits. */
CNN__PRIVATE float cnn__bf16_to_float(unsigned bits)
{
    uint32_t out = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &out, sizeof value);
    return value;
}

/* Reads the data after the header into values, laid out as model->params
   and after them model->state (the model is built), and into tracked (a
   count of batches per layer), tensor by tensor in the order of their
   offsets: the reader's order. */
CNN__PRIVATE cnn_result cnn__safetensors_data(const cnn_model *model, cnn__safetensors *file, cnn__reader *reader, float *values,
                                              uint64_t *tracked, cnn_error *error)
{
    unsigned char chunk[4096];
    long long data_at = 8 + (long long)file->json_length;
    size_t t;
    if (file->tensor_count > 1) qsort(file->tensors, file->tensor_count, sizeof *file->tensors, cnn__compare_tensor_offsets);
    for (t = 0; t < file->tensor_count; t++) {
        const cnn__tensor_entry *entry = &file->tensors[t];
        const cnn_layer *layer = &model->layers[entry->layer];
        size_t element_bytes = (size_t)cnn__dtypes[entry->dtype].bits / 8, done, k, n, base;
        switch (entry->part) {
        case CNN__PART_WEIGHT: base = layer->param_offset; break;
        case CNN__PART_BIAS: base = layer->param_offset + layer->weight_count; break;
        case CNN__PART_MEAN: base = model->param_count + (size_t)(layer->running_mean - model->state); break;
        default: base = model->param_count + (size_t)(layer->running_var - model->state); break;
        }
        for (done = 0; done < (size_t)entry->count; done += n) {
            n = (size_t)entry->count - done;
            if (n > sizeof chunk / element_bytes) n = sizeof chunk / element_bytes;
            if (cnn__read_bytes(reader, chunk, n * element_bytes) != n * element_bytes)
                return cnn__fail(error, cnn__reader_failed(reader) ? CNN_ERROR_IO : CNN_ERROR_BAD_MODEL_FILE, 0, 0,
                                 data_at + (long long)(entry->begin + done * element_bytes),
                                 "'%s' ends inside tensor '%s'", reader->name, entry->name);
            for (k = 0; k < n; k++) {
                const unsigned char *at = chunk + k * element_bytes;
                const long long where = data_at + (long long)(entry->begin + (done + k) * element_bytes);
                float value;
                if (entry->part == CNN__PART_TRACKED) {  /* an int64 count */
                    uint64_t count = cnn__get_u64(at);
                    if (count >> 63)
                        return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, where,
                                         "'%s': tensor '%s' counts a negative number of batches", reader->name, entry->name);
                    tracked[entry->layer] = count;
                    continue;
                }
                value = entry->dtype == CNN__DTYPE_F32 ? cnn__get_f32(at)
                      : entry->dtype == CNN__DTYPE_F16 ? cnn__f16_to_float((unsigned)at[0] | (unsigned)at[1] << 8)
                                                       : cnn__bf16_to_float((unsigned)at[0] | (unsigned)at[1] << 8);
                if (!cnn__is_finite(value) || (entry->part == CNN__PART_VARIANCE && value < 0.0f))
                    return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, where, "'%s': tensor '%s', element %lu is %s", reader->name,
                                     entry->name, (unsigned long)(done + k),
                                     cnn__is_finite(value) ? "a negative variance" : "not a finite number");
                values[base + cnn__torch_index(layer, entry->part, done + k)] = value;
            }
        }
    }
    if (reader->size < 0 && cnn__read_byte(reader) != CNN__EOF)  /* a pipe: its size was not known before */
        return cnn__fail(error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, reader->offset - 1, "'%s' has trailing bytes after its data",
                         reader->name);
    return CNN_OK;
}

/* Reads the data of a file matched to a built model (cnn__safetensors_match)
   and only then changes the model: its parameters, running statistics and
   batch counts (0 for a batch norm layer without num_batches_tracked). */
CNN__PRIVATE cnn_result cnn__fill_from_safetensors(cnn_model *model, cnn__safetensors *file, cnn__reader *reader)
{
    const size_t count = cnn__snapshot_count(model);
    float *values = count ? cnn__alloc_floats(count) : NULL;
    uint64_t *tracked = (uint64_t *)CNN_MALLOC((size_t)model->layer_count * sizeof(uint64_t));
    cnn_result result;
    int l;
    if ((count && !values) || !tracked) {
        result = cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory loading '%s'", reader->name);
    } else {
        memset(tracked, 0, (size_t)model->layer_count * sizeof(uint64_t));
        result = cnn__safetensors_data(model, file, reader, values, tracked, &model->error);
    }
    if (result == CNN_OK) {  /* every tensor is in the file: the copy starts from nothing */
        if (count) memcpy(model->params, values, count * sizeof(float));
        for (l = 0; l < model->layer_count; l++) model->layers[l].batches_tracked = tracked[l];
    }
    CNN_FREE(values);
    CNN_FREE(tracked);
    return result;
}

/* Fills a built model from an open reader, which it closes. */
CNN__PRIVATE cnn_result cnn__load_safetensors(cnn_model *model, cnn__reader *reader)
{
    cnn__safetensors file;
    cnn_result result;
    cnn__clear_error(&model->error);
    result = cnn__safetensors_header(&file, reader, &model->error);
    if (result == CNN_OK) result = cnn__safetensors_match(model, &file, reader->name, &model->error);
    if (result == CNN_OK) result = cnn__fill_from_safetensors(model, &file, reader);
    cnn__safetensors_free(&file);
    cnn__close_reader(reader);
    return result;
}

CNN__PRIVATE cnn_result cnn__check_built(cnn_model *model, const char *function)
{
    if (!model) return CNN_ERROR_INVALID_ARGUMENT;
    if (!model->memory) return cnn__fail(&model->error, CNN_ERROR_STATE, 0, 0, -1, "%s: the model is not built", function);
    return CNN_OK;
}

CNNDEF cnn_result cnn_model_load_safetensors(cnn_model *model, const char *path)
{
    cnn__reader reader;
    cnn_result result;
    if ((result = cnn__check_built(model, "cnn_model_load_safetensors")) != CNN_OK) return result;
    if ((result = cnn__open_reader(&reader, path, &model->error)) != CNN_OK) return result;
    return cnn__load_safetensors(model, &reader);
}

CNNDEF cnn_result cnn_model_load_safetensors_memory(cnn_model *model, const void *bytes, size_t size)
{
    cnn__reader reader;
    cnn_result result;
    if ((result = cnn__check_built(model, "cnn_model_load_safetensors_memory")) != CNN_OK) return result;
    if ((result = cnn__memory_reader(&reader, bytes, size, "<memory>", &model->error)) != CNN_OK) return result;
    return cnn__load_safetensors(model, &reader);
}

/* ---------------------------------------------------------------- cnn.h's metadata */

static const char *const cnn__init_names[] = {"", "glorot_uniform", "he_normal", "he_uniform"};

/* A layer's metadata value, e.g. "max_pool kernel=2 stride=2". */
CNN__PRIVATE void cnn__layer_setting(const cnn_layer_desc *d, char *text, size_t size)
{
    const char *type = cnn_layer_type_name(d->type);
    char number[32];
    switch (d->type) {
    case CNN_LAYER_CONV2D:
        snprintf(text, size, "%s units=%d kernel=%d stride=%d padding=%d init=%s", type, d->units, d->kernel, d->stride,
                 d->padding, cnn__init_names[d->init]);
        break;
    case CNN_LAYER_DENSE: snprintf(text, size, "%s units=%d init=%s", type, d->units, cnn__init_names[d->init]); break;
    case CNN_LAYER_MAX_POOL: case CNN_LAYER_AVG_POOL: {
        char padding[32] = "";  /* written when set: a file without them reads as before */
        if (d->padding) snprintf(padding, sizeof padding, " padding=%d", d->padding);
        snprintf(text, size, "%s kernel=%d stride=%d%s%s", type, d->kernel, d->stride, padding, d->ceil_mode ? " ceil_mode=1" : "");
        break;
    }
    case CNN_LAYER_RESIDUAL_END: snprintf(text, size, "%s init=%s", type, cnn__init_names[d->init]); break;
    case CNN_LAYER_LEAKY_RELU:
        cnn__format_float(number, sizeof number, d->alpha);
        snprintf(text, size, "%s alpha=%s", type, number);
        break;
    case CNN_LAYER_DROPOUT:
        cnn__format_float(number, sizeof number, d->rate);
        snprintf(text, size, "%s rate=%s", type, number);
        break;
    default: snprintf(text, size, "%s", type); break;
    }
}

/* The value of a metadata key, or NULL (metadata is sorted by key). */
CNN__PRIVATE const cnn__metadata_entry *cnn__metadata_find(const cnn__safetensors *file, const char *key)
{
    cnn__metadata_entry wanted;
    if (!file->metadata_count) return NULL;
    wanted.key = key;
    return (const cnn__metadata_entry *)bsearch(&wanted, file->metadata, file->metadata_count, sizeof wanted,
                                                cnn__compare_metadata_keys);
}

/* A whole number from 0 to largest in text, in decimal digits without a
   leading zero; returns a pointer past it, or NULL when there is none. */
CNN__PRIVATE const char *cnn__parse_setting_int(const char *text, int *value, long largest)
{
    long v = 0;
    if (*text < '0' || *text > '9' || (text[0] == '0' && text[1] >= '0' && text[1] <= '9')) return NULL;
    for (; *text >= '0' && *text <= '9'; text++)
        if ((v = v * 10 + (*text - '0')) > largest) return NULL;
    *value = (int)v;
    return text;
}

/* Parses one "cnn.h.layer.I" value into a layer description. On failure
   it returns a reason; NULL means success. */
CNN__PRIVATE const char *cnn__parse_layer_setting(const char *text, cnn_layer_desc *desc)
{
    /* settings by bit: units 1, kernel 2, stride 4, padding 8, init 16, alpha 32, rate 64, ceil_mode 128; by
       layer type: none, conv2d, dense, relu, leaky_relu, sigmoid, tanh, max_pool, avg_pool, flatten,
       dropout, softmax, batch_norm, global_avg_pool, residual_begin, residual_end */
    static const unsigned char allowed[CNN_LAYER_TYPE_COUNT] = {0, 31, 17, 0, 32, 0, 0, 142, 142, 0, 64, 0, 0, 0, 0, 16};
    static const unsigned char required[CNN_LAYER_TYPE_COUNT] = {0, 15, 1, 0, 32, 0, 0, 6, 6, 0, 64, 0, 0, 0, 0, 0};
    static const char *const keys[8] = {"units", "kernel", "stride", "padding", "init", "alpha", "rate", "ceil_mode"};
    unsigned seen = 0;
    size_t length;
    int type, k;
    memset(desc, 0, sizeof *desc);
    for (length = 0; text[length] && text[length] != ' '; length++) continue;
    for (type = 1; type < CNN_LAYER_TYPE_COUNT; type++)
        if (strlen(cnn_layer_type_name((cnn_layer_type)type)) == length &&
            memcmp(text, cnn_layer_type_name((cnn_layer_type)type), length) == 0)
            break;
    if (type == CNN_LAYER_TYPE_COUNT) return "unknown layer type";
    desc->type = (cnn_layer_type)type;
    text += length;
    while (*text == ' ') {
        const char *end;
        double number;
        while (*text == ' ') text++;
        if (!*text) break;
        for (k = 0; k < 8; k++) {
            length = strlen(keys[k]);
            if (strncmp(text, keys[k], length) == 0 && text[length] == '=') break;
        }
        if (k == 8) return "a setting that is not key=value with a known key";
        if (!(allowed[type] >> k & 1u)) return "a setting this layer type does not have";
        if (seen >> k & 1u) return "a setting given twice";
        seen |= 1u << k;
        text += length + 1;
        switch (k) {
        case 0: end = cnn__parse_setting_int(text, &desc->units, INT_MAX); if (end && desc->units < 1) return "units below 1"; break;
        case 1: end = cnn__parse_setting_int(text, &desc->kernel, INT_MAX); if (end && desc->kernel < 1) return "kernel below 1"; break;
        case 2: end = cnn__parse_setting_int(text, &desc->stride, INT_MAX); if (end && desc->stride < 1) return "stride below 1"; break;
        case 3: end = cnn__parse_setting_int(text, &desc->padding, INT_MAX); break;
        case 7:
            end = cnn__parse_setting_int(text, &desc->ceil_mode, INT_MAX);
            if (end && desc->ceil_mode > 1) return "ceil_mode other than 0 or 1";
            break;
        case 4:
            for (end = NULL, desc->init = CNN_INIT_GLOROT_UNIFORM; desc->init <= CNN_INIT_HE_UNIFORM; desc->init = (cnn_init)(desc->init + 1)) {
                length = strlen(cnn__init_names[desc->init]);
                if (strncmp(text, cnn__init_names[desc->init], length) == 0 && (text[length] == ' ' || !text[length])) {
                    end = text + length;
                    break;
                }
            }
            break;
        default:
            end = cnn__parse_decimal(text, &number);
            if (end && !(number >= -1e30 && number <= 1e30)) end = NULL;
            if (end && k == 5) {
                desc->alpha = (float)number;
                if (desc->alpha == 0.0f) return "alpha=0, which is relu";
            }
            if (end && k == 6 && !((desc->rate = (float)number) > 0.0f && desc->rate < 1.0f)) return "a rate outside (0, 1)";
            break;
        }
        if (!end || (*end != ' ' && *end)) return "a setting whose value cannot be read";
        text = end;
    }
    if (*text) return "something that is not a setting";
    if ((seen & required[type]) != required[type]) return "a required setting missing";
    return NULL;
}

/* Initialises a model and adds the layers cnn.h's metadata in a file
   describes; the build waits until the file's tensors are known to fit. */
CNN__PRIVATE cnn_result cnn__safetensors_layers(cnn_model *model, const cnn__safetensors *file, const char *path)
{
    const cnn__metadata_entry *version = cnn__metadata_find(file, "cnn.h.version");
    const cnn__metadata_entry *input = cnn__metadata_find(file, "cnn.h.input");
    const cnn__metadata_entry *layers = cnn__metadata_find(file, "cnn.h.layers");
    int shape[3], count = 0, i;
    const char *text;
    char reason[sizeof model->error.message];
    if (!version || !input || !layers)
        return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, -1,
                         "'%s' has no cnn.h metadata (\"%s\"): build the model and fill it with cnn_model_load_safetensors",
                         path, !version ? "cnn.h.version" : !input ? "cnn.h.input" : "cnn.h.layers");
    if (strcmp(version->value, "1") != 0)
        return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, version->at,
                         "'%s': cnn.h metadata version is not 1, the one this cnn.h reads", path);
    for (text = input->value, i = 0; i < 3; i++) {
        if (!(text = cnn__parse_setting_int(text, &shape[i], 65536)) || *text != (i < 2 ? ',' : '\0')) break;
        text++;
    }
    if (i < 3)
        return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, input->at,
                         "'%s': cnn.h.input is not C,H,W (three whole numbers up to 65536)", path);
    if (!(text = cnn__parse_setting_int(layers->value, &count, CNN_MAX_LAYERS)) || *text || count < 1 || count > CNN_MAX_LAYERS)
        return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, layers->at,
                         "'%s': cnn.h.layers is not a layer count from 1 to %d", path, CNN_MAX_LAYERS);
    for (i = 0; i < (int)file->metadata_count; i++) {  /* no layer beyond the count */
        const char *key = file->metadata[i].key;
        int index;
        if (strncmp(key, "cnn.h.layer.", 12) != 0) continue;
        if (!(text = cnn__parse_setting_int(key + 12, &index, INT_MAX)) || *text || index >= count)
            return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, file->metadata[i].at,
                             "'%s': metadata \"%.40s\" names no layer of the %d in cnn.h.layers", path, key, count);
    }
    if (cnn_model_init(model, shape[0], shape[1], shape[2], 0) != CNN_OK) {
        memcpy(reason, model->error.message, sizeof reason);
        return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, input->at, "'%s': %s", path, reason);
    }
    for (i = 0; i < count; i++) {
        char key[32], value[52];
        const cnn__metadata_entry *layer;
        const char *problem;
        cnn_layer_desc desc;
        snprintf(key, sizeof key, "cnn.h.layer.%d", i);
        if (!(layer = cnn__metadata_find(file, key)))
            return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, -1, "'%s' has %d layers but no metadata \"%s\"", path,
                             count, key);
        if ((problem = cnn__parse_layer_setting(layer->value, &desc)) != NULL)
            return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, layer->at, "'%s': %s \"%s\": %s", path, key,
                             cnn__printable(layer->value, value), problem);
        if (cnn_model_add(model, &desc) != CNN_OK) {
            memcpy(reason, model->error.message, sizeof reason);
            return cnn__fail(&model->error, CNN_ERROR_BAD_MODEL_FILE, 0, 0, layer->at, "'%s': %s: %s", path, key, reason);
        }
    }
    return CNN_OK;
}

/* Builds and fills a fresh model from an open reader, which it closes. */
CNN__PRIVATE cnn_result cnn__from_safetensors(cnn_model *model, cnn__reader *reader, int max_batch)
{
    cnn__safetensors file;
    cnn_result result = cnn__safetensors_header(&file, reader, &model->error);
    if (result == CNN_OK) result = cnn__safetensors_layers(model, &file, reader->name);
    /* the tensors must fit the layers before anything is allocated for them */
    if (result == CNN_OK) result = cnn__safetensors_match(model, &file, reader->name, &model->error);
    if (result == CNN_OK) result = cnn_model_build(model, max_batch);
    if (result == CNN_OK) result = cnn__fill_from_safetensors(model, &file, reader);
    cnn__safetensors_free(&file);
    cnn__close_reader(reader);
    return cnn__end_load(model, result);
}

CNNDEF cnn_result cnn_model_from_safetensors(cnn_model *model, const char *path, int max_batch)
{
    cnn__reader reader;
    cnn_result result;
    if ((result = cnn__begin_load(model, max_batch)) != CNN_OK) return result;
    if ((result = cnn__open_reader(&reader, path, &model->error)) != CNN_OK) return result;
    return cnn__from_safetensors(model, &reader, max_batch);
}

CNNDEF cnn_result cnn_model_from_safetensors_memory(cnn_model *model, const void *bytes, size_t size, int max_batch)
{
    cnn__reader reader;
    cnn_result result;
    if ((result = cnn__begin_load(model, max_batch)) != CNN_OK) return result;
    if ((result = cnn__memory_reader(&reader, bytes, size, "<memory>", &model->error)) != CNN_OK) return result;
    return cnn__from_safetensors(model, &reader, max_batch);
}

/* ---------------------------------------------------------------- writing */

/* Writes a layer's part in PyTorch's order: float32, or for a batch count
   int64, little-endian. */
CNN__PRIVATE int cnn__write_torch_tensor(FILE *out, const cnn_layer *layer, int part)
{
    unsigned char chunk[4096];
    size_t count, done, k, n;
    const float *values = cnn__torch_values(layer, part, &count);
    if (part == CNN__PART_TRACKED) {
        cnn__put_u64(chunk, layer->batches_tracked);
        return fwrite(chunk, 1, 8, out) == 8;
    }
    for (done = 0; done < count; done += n) {
        n = count - done < sizeof chunk / 4 ? count - done : sizeof chunk / 4;
        for (k = 0; k < n; k++) cnn__put_f32(chunk + 4 * k, values[cnn__torch_index(layer, part, done + k)]);
        if (fwrite(chunk, 4, n, out) != n) return 0;
    }
    return 1;
}

CNNDEF cnn_result cnn_model_save_safetensors(cnn_model *model, const char *path)
{
    cnn__buffer header;
    cnn__atomic_file out;
    unsigned char prefix[8];
    uint64_t offset = 0;
    char setting[160], name[CNN__TORCH_NAME_SIZE];
    int l, part, ok = 1;
    cnn_result result;
    if ((result = cnn__check_built(model, "cnn_model_save_safetensors")) != CNN_OK) return result;
    if (!path || !*path) return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_model_save_safetensors: no file name given");
    if ((result = cnn__check_torch_names(model, "cnn_model_save_safetensors")) != CNN_OK) return result;
    memset(&header, 0, sizeof header);
    cnn__buffer_printf(&header, "{\"__metadata__\":{\"format\":\"pt\",\"cnn.h.version\":\"1\",\"cnn.h.input\":\"%d,%d,%d\",\"cnn.h.layers\":\"%d\"",
                       model->input.c, model->input.h, model->input.w, model->layer_count);
    for (l = 0; l < model->layer_count; l++) {
        cnn__layer_setting(&model->layers[l].desc, setting, sizeof setting);
        cnn__buffer_printf(&header, ",\"cnn.h.layer.%d\":\"%s\"", l, setting);
    }
    cnn__buffer_printf(&header, "}");
    for (l = 0; l < model->layer_count; l++) {
        const cnn_layer *layer = &model->layers[l];
        for (part = 0; part < cnn__torch_parts(layer); part++) {
            uint64_t shape[4], bytes;
            int rank = cnn__torch_shape(layer, part, shape), d;
            size_t count;
            cnn__torch_values(layer, part, &count);
            bytes = part == CNN__PART_TRACKED ? 8 : 4 * (uint64_t)count;
            cnn__torch_name(model, l, part, name);  /* it fits: checked above */
            cnn__buffer_put(&header, ",\"", 2);
            cnn__buffer_put(&header, name, strlen(name));
            cnn__buffer_printf(&header, "\":{\"dtype\":\"%s\",\"shape\":[", part == CNN__PART_TRACKED ? "I64" : "F32");
            for (d = 0; d < rank; d++) cnn__buffer_printf(&header, d ? ",%llu" : "%llu", (unsigned long long)shape[d]);
            cnn__buffer_printf(&header, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                               (unsigned long long)(offset + bytes));
            offset += bytes;
        }
    }
    cnn__buffer_printf(&header, "}");
    while (!header.failed && (8 + header.length) % 8 != 0) cnn__buffer_put(&header, " ", 1);  /* the data starts aligned */
    if (header.failed) {
        cnn__buffer_free(&header);
        return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory writing '%s'", path);
    }
    if ((result = cnn__atomic_open(&out, path, &model->error)) != CNN_OK) {
        cnn__buffer_free(&header);
        return result;
    }
    cnn__put_u32(prefix, (uint32_t)header.length);
    cnn__put_u32(prefix + 4, 0);
    ok &= fwrite(prefix, 1, 8, out.file) == 8;
    ok &= fwrite(header.data, 1, header.length, out.file) == header.length;
    for (l = 0; ok && l < model->layer_count; l++)
        for (part = 0; ok && part < cnn__torch_parts(&model->layers[l]); part++)
            ok &= cnn__write_torch_tensor(out.file, &model->layers[l], part);
    cnn__buffer_free(&header);
    return cnn__atomic_close(&out, path, ok, &model->error);
}

/* ======================================================================== ONNX

   An ONNX model is one protocol buffer message (onnx.proto in
   github.com/onnx/onnx), ModelProto, and protocol buffers are simple to
   write: each field is a key, varint(field number << 3 | wire type), then
   a varint (wire type 0: integers, enums), 4 little-endian bytes (type 5:
   float), or a varint length and that many bytes (type 2: strings, bytes
   and nested messages). The fields written here:
     ModelProto      1 ir_version, 2 producer_name, 3 producer_version,
                     7 graph, 8 opset_import {1 domain, 2 version}
     GraphProto      1 node, 2 name, 5 initializer, 11 input, 12 output
     NodeProto       1 input, 2 output, 3 name, 4 op_type, 5 attribute
     AttributeProto  1 name, 2 f, 3 i, 8 ints, 20 type (1 FLOAT, 2 INT, 7 INTS)
     TensorProto     1 dims, 2 data_type (1 FLOAT, 7 INT64), 8 name, 9 raw_data
     ValueInfoProto  1 name, 2 type {1 tensor_type {1 elem_type, 2 shape
                     {1 dim {1 dim_value | 2 dim_param}}}}
   Every message is built in memory except the weights: the graph's length
   is computed, so that their raw_data is written straight from the model. */

#define CNN__ONNX_IR_VERSION 8
#define CNN__ONNX_OPSET 13

CNN__PRIVATE void cnn__pb_varint(cnn__buffer *out, uint64_t value)
{
    unsigned char bytes[10];
    size_t n = 0;
    do {
        bytes[n++] = (unsigned char)((value & 0x7Fu) | (value > 0x7Fu ? 0x80u : 0u));
        value >>= 7;
    } while (value);
    cnn__buffer_put(out, bytes, n);
}

CNN__PRIVATE size_t cnn__pb_varint_size(uint64_t value)
{
    size_t n = 1;
    while (value > 0x7Fu) value >>= 7, n++;
    return n;
}

CNN__PRIVATE void cnn__pb_key(cnn__buffer *out, unsigned field, unsigned wire_type) { cnn__pb_varint(out, field << 3 | wire_type); }

/* int64 as protocol buffers encode it: a negative value as its 64-bit two's complement */
CNN__PRIVATE void cnn__pb_int(cnn__buffer *out, unsigned field, long long value)
{
    cnn__pb_key(out, field, 0);
    cnn__pb_varint(out, (uint64_t)value);
}

CNN__PRIVATE void cnn__pb_float(cnn__buffer *out, unsigned field, float value)
{
    unsigned char bytes[4];
    cnn__pb_key(out, field, 5);
    cnn__put_f32(bytes, value);
    cnn__buffer_put(out, bytes, 4);
}

CNN__PRIVATE void cnn__pb_bytes(cnn__buffer *out, unsigned field, const void *bytes, size_t count)
{
    cnn__pb_key(out, field, 2);
    cnn__pb_varint(out, count);
    cnn__buffer_put(out, bytes, count);
}

CNN__PRIVATE void cnn__pb_string(cnn__buffer *out, unsigned field, const char *text) { cnn__pb_bytes(out, field, text, strlen(text)); }

/* Appends a finished nested message and frees it. */
CNN__PRIVATE void cnn__pb_message(cnn__buffer *out, unsigned field, cnn__buffer *message)
{
    if (message->failed) out->failed = 1;
    else cnn__pb_bytes(out, field, message->data, message->length);
    cnn__buffer_free(message);
}

/* An attribute of a node: ints (count values), an int or a float. */
CNN__PRIVATE void cnn__onnx_ints(cnn__buffer *node, const char *name, const long long *values, int count)
{
    cnn__buffer attribute;
    int i;
    memset(&attribute, 0, sizeof attribute);
    cnn__pb_string(&attribute, 1, name);
    for (i = 0; i < count; i++) cnn__pb_int(&attribute, 8, values[i]);
    cnn__pb_int(&attribute, 20, 7);
    cnn__pb_message(node, 5, &attribute);
}

/* kernel_shape, strides: the same value for height and width */
CNN__PRIVATE void cnn__onnx_square(cnn__buffer *node, const char *name, long long value)
{
    const long long values[2] = {value, value};
    cnn__onnx_ints(node, name, values, 2);
}

CNN__PRIVATE void cnn__onnx_int(cnn__buffer *node, const char *name, long long value)
{
    cnn__buffer attribute;
    memset(&attribute, 0, sizeof attribute);
    cnn__pb_string(&attribute, 1, name);
    cnn__pb_int(&attribute, 3, value);
    cnn__pb_int(&attribute, 20, 2);
    cnn__pb_message(node, 5, &attribute);
}

CNN__PRIVATE void cnn__onnx_float(cnn__buffer *node, const char *name, float value)
{
    cnn__buffer attribute;
    memset(&attribute, 0, sizeof attribute);
    cnn__pb_string(&attribute, 1, name);
    cnn__pb_float(&attribute, 2, value);
    cnn__pb_int(&attribute, 20, 1);
    cnn__pb_message(node, 5, &attribute);
}

/* Starts a node: op_type, name, count inputs, one output. */
CNN__PRIVATE void cnn__onnx_node(cnn__buffer *node, const char *op, const char *name, const char *const *inputs, int count,
                                 const char *output)
{
    int i;
    memset(node, 0, sizeof *node);
    for (i = 0; i < count; i++) cnn__pb_string(node, 1, inputs[i]);
    cnn__pb_string(node, 2, output);
    cnn__pb_string(node, 3, name);
    cnn__pb_string(node, 4, op);
}

/* A node of one input, added to the graph as it is (no attributes). */
CNN__PRIVATE void cnn__onnx_unary(cnn__buffer *graph, const char *op, const char *name, const char *input, const char *output)
{
    cnn__buffer node;
    cnn__onnx_node(&node, op, name, &input, 1, output);
    if (strcmp(op, "Flatten") == 0) cnn__onnx_int(&node, "axis", 1);
    cnn__pb_message(graph, 1, &node);
}

/* A graph input or output: float, (N, dims...) with N the dynamic batch. */
CNN__PRIVATE void cnn__onnx_value_info(cnn__buffer *graph, unsigned field, const char *name, const int *dims, int rank)
{
    cnn__buffer info, type, tensor, shape, dim;
    int d;
    memset(&info, 0, sizeof info); memset(&type, 0, sizeof type);
    memset(&tensor, 0, sizeof tensor); memset(&shape, 0, sizeof shape);
    for (d = 0; d <= rank; d++) {
        memset(&dim, 0, sizeof dim);
        if (d == 0) cnn__pb_string(&dim, 2, "N");
        else cnn__pb_int(&dim, 1, dims[d - 1]);
        cnn__pb_message(&shape, 1, &dim);
    }
    cnn__pb_int(&tensor, 1, 1);             /* FLOAT */
    cnn__pb_message(&tensor, 2, &shape);
    cnn__pb_message(&type, 1, &tensor);
    cnn__pb_string(&info, 1, name);
    cnn__pb_message(&info, 2, &type);
    cnn__pb_message(graph, field, &info);
}

/* How many of a layer's PyTorch tensors ONNX takes: all but batch norm's
   count of batches, which inference does not use. */
CNN__PRIVATE int cnn__onnx_parts(const cnn_layer *layer)
{
    int parts = cnn__torch_parts(layer);
    return parts > CNN__PART_TRACKED ? CNN__PART_TRACKED : parts;
}

/* A TensorProto of layer l's part without its raw_data, which the writer
   streams; *data_bytes is that data's length. */
CNN__PRIVATE void cnn__onnx_tensor_head(cnn__buffer *tensor, const cnn_model *model, int l, int part, uint64_t *data_bytes)
{
    const cnn_layer *layer = &model->layers[l];
    uint64_t shape[4];
    int rank = cnn__torch_shape(layer, part, shape), d;
    char name[CNN__TORCH_NAME_SIZE];
    size_t count;
    memset(tensor, 0, sizeof *tensor);
    for (d = 0; d < rank; d++) cnn__pb_int(tensor, 1, (long long)shape[d]);
    cnn__pb_int(tensor, 2, 1);              /* FLOAT */
    cnn__torch_name(model, l, part, name);  /* it fits: cnn__check_torch_names */
    cnn__pb_string(tensor, 8, name);
    cnn__torch_values(layer, part, &count);
    *data_bytes = 4 * (uint64_t)count;
}

/* The bytes of a tensor field holding head and data_bytes of raw_data. */
CNN__PRIVATE uint64_t cnn__onnx_tensor_size(const cnn__buffer *head, uint64_t data_bytes)
{
    return head->length + 1 + cnn__pb_varint_size(data_bytes) + data_bytes;
}

/* A small 1-D int64 initializer, whole in the graph (a Pad node's pads). */
CNN__PRIVATE void cnn__onnx_int64s(cnn__buffer *graph, const char *name, const long long *values, int count)
{
    cnn__buffer tensor;
    unsigned char bytes[8];
    int i;
    memset(&tensor, 0, sizeof tensor);
    cnn__pb_int(&tensor, 1, count);
    cnn__pb_int(&tensor, 2, 7);             /* INT64 */
    cnn__pb_string(&tensor, 8, name);
    cnn__pb_key(&tensor, 9, 2);
    cnn__pb_varint(&tensor, 8 * (uint64_t)count);
    for (i = 0; i < count; i++) {
        cnn__put_u64(bytes, (uint64_t)values[i]);
        cnn__buffer_put(&tensor, bytes, 8);
    }
    cnn__pb_message(graph, 5, &tensor);
}

/* The graph's value that holds layer l's output: "input" before the first
   layer, "output" after the last that computes (last), else "layerL";
   dropout and a residual block's begin, the identity at inference, hand
   on their input's. */
CNN__PRIVATE void cnn__onnx_value(const cnn_model *model, int l, int last, char out[32])
{
    while (l >= 0 && (model->layers[l].desc.type == CNN_LAYER_DROPOUT || model->layers[l].desc.type == CNN_LAYER_RESIDUAL_BEGIN)) l--;
    if (l < 0) snprintf(out, 32, "input");
    else if (l == last) snprintf(out, 32, "output");
    else snprintf(out, 32, "layer%d", l);
}

/* Whether the graph holds layer l's output (l = -1: the input) flat, as
   (N, features), or as an image (N, C, H, W): flatten and dense make it
   flat, conv, pools and global pooling an image; a residual end's is its
   body's (the skip path is flattened to match), other layers keep their
   input's. */
CNN__PRIVATE int cnn__onnx_flat(const cnn_model *model, int l)
{
    for (; l >= 0; l--) {
        cnn_layer_type type = model->layers[l].desc.type;
        if (type == CNN_LAYER_DENSE || type == CNN_LAYER_FLATTEN) return 1;
        if (type == CNN_LAYER_CONV2D || type == CNN_LAYER_MAX_POOL || type == CNN_LAYER_AVG_POOL || type == CNN_LAYER_GLOBAL_AVG_POOL)
            return 0;
    }
    return 0;
}

/* A pool, as opset 13 says it exactly. Its ceil_mode keeps a last window
   that starts in the right padding, which cnn.h (and PyTorch) leave out,
   so cnn.h's windows are written without it: the pads at the end are
   those of both sides plus what a last window that hangs over the padded
   input needs (extra), and floor mode then makes exactly cnn.h's windows.
   MaxPool ignores pads. AveragePool divides by the window's cells inside
   the input when there is no padding (count_include_pad 0), by the whole
   window when padding counts and no window hangs over (count_include_pad
   1); when one does, the padding becomes zeros of the input (a Pad node)
   and the hanging part is left out (count_include_pad 0), as cnn.h and
   PyTorch leave it. */
CNN__PRIVATE void cnn__onnx_pool(const cnn_layer *layer, int l, const char *x, const char *value, cnn__buffer *graph)
{
    const cnn_layer_desc *d = &layer->desc;
    const long long K = d->kernel, S = d->stride, P = d->padding;
    long long extra_h = (layer->out.h - 1) * S + K - (layer->in.h + 2 * P);
    long long extra_w = (layer->out.w - 1) * S + K - (layer->in.w + 2 * P);
    long long pads[4];
    char name[48], padded[48], zeros_name[48];
    cnn__buffer node;
    const char *input = x;
    if (extra_h < 0) extra_h = 0;
    if (extra_w < 0) extra_w = 0;
    pads[0] = pads[1] = P;
    pads[2] = P + extra_h;
    pads[3] = P + extra_w;
    if (d->type == CNN_LAYER_AVG_POOL && P > 0 && (extra_h || extra_w)) {
        const long long zeros[8] = {0, 0, P, P, 0, 0, P, P};  /* N, C, H, W begins, then ends */
        const char *inputs[2];
        snprintf(padded, sizeof padded, "layer%d_padded", l);
        snprintf(zeros_name, sizeof zeros_name, "%d_pads", l);
        cnn__onnx_int64s(graph, zeros_name, zeros, 8);
        inputs[0] = x;
        inputs[1] = zeros_name;
        snprintf(name, sizeof name, "%d_pad", l);
        cnn__onnx_node(&node, "Pad", name, inputs, 2, padded);
        cnn__pb_message(graph, 1, &node);
        input = padded;
        pads[0] = pads[1] = 0;
        pads[2] = extra_h;
        pads[3] = extra_w;
    }
    snprintf(name, sizeof name, "%d_%s", l, cnn_layer_type_name(d->type));
    cnn__onnx_node(&node, d->type == CNN_LAYER_MAX_POOL ? "MaxPool" : "AveragePool", name, &input, 1, value);
    cnn__onnx_square(&node, "kernel_shape", K);
    cnn__onnx_square(&node, "strides", S);
    if (pads[0] || pads[1] || pads[2] || pads[3]) cnn__onnx_ints(&node, "pads", pads, 4);
    if (d->type == CNN_LAYER_AVG_POOL && input == x && P > 0) cnn__onnx_int(&node, "count_include_pad", 1);
    cnn__pb_message(graph, 1, &node);
}

/* Everything of the graph but the weights: nodes, name, inputs and
   outputs. A layer's output is "layerI", the last one's "output". Refused
   (CNN_ERROR_INVALID_ARGUMENT): a residual block's projection of a flat
   input, which ONNX's Conv cannot take, and a layer that needs an image
   after its input was made flat. */
CNN__PRIVATE cnn_result cnn__onnx_graph(cnn_model *model, cnn__buffer *graph)
{
    char x[32], value[32], name[48], skip[48], shaped[48], names[CNN__PART_TRACKED][CNN__TORCH_NAME_SIZE];
    const char *inputs[1 + CNN__PART_TRACKED];
    int last = -1, l, part, dims[3];
    for (l = 0; l < model->layer_count; l++)
        if (model->layers[l].desc.type != CNN_LAYER_DROPOUT && model->layers[l].desc.type != CNN_LAYER_RESIDUAL_BEGIN) last = l;
    for (l = 0; l < model->layer_count; l++) {
        const cnn_layer *layer = &model->layers[l];
        const cnn_layer_desc *d = &layer->desc;
        const int flat = cnn__onnx_flat(model, l - 1);
        cnn__buffer node;
        if (d->type == CNN_LAYER_DROPOUT || d->type == CNN_LAYER_RESIDUAL_BEGIN) continue;  /* the identity at inference */
        if (flat && (d->type == CNN_LAYER_CONV2D || d->type == CNN_LAYER_MAX_POOL || d->type == CNN_LAYER_AVG_POOL ||
                     d->type == CNN_LAYER_GLOBAL_AVG_POOL))
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "cnn_model_export_onnx: layer %d (%s) takes a flat vector, where ONNX's operator needs an image",
                             l + 1, cnn_layer_type_name(d->type));
        cnn__onnx_value(model, l - 1, last, x);
        cnn__onnx_value(model, l, last, value);
        snprintf(name, sizeof name, "%d_%s", l, cnn_layer_type_name(d->type));
        inputs[0] = x;
        for (part = 0; part < cnn__onnx_parts(layer); part++) {
            cnn__torch_name(model, l, part, names[part]);  /* it fits: cnn__check_torch_names */
            inputs[1 + part] = names[part];
        }
        if (d->type == CNN_LAYER_DENSE && !flat) {  /* Gemm wants (N, IN) */
            snprintf(shaped, sizeof shaped, "layer%d_flat", l);
            snprintf(name, sizeof name, "%d_flatten", l);
            cnn__onnx_unary(graph, "Flatten", name, x, shaped);
            inputs[0] = shaped;
            snprintf(name, sizeof name, "%d_%s", l, cnn_layer_type_name(d->type));
        }
        switch (d->type) {
        case CNN_LAYER_CONV2D: {
            const long long pads[4] = {d->padding, d->padding, d->padding, d->padding};
            cnn__onnx_node(&node, "Conv", name, inputs, 3, value);
            cnn__onnx_square(&node, "kernel_shape", d->kernel);
            cnn__onnx_square(&node, "strides", d->stride);
            cnn__onnx_ints(&node, "pads", pads, 4);
            break;
        }
        case CNN_LAYER_DENSE:  /* y = x W^T + b, W (OUT, IN) as PyTorch keeps it */
            cnn__onnx_node(&node, "Gemm", name, inputs, 3, value);
            cnn__onnx_int(&node, "transB", 1);
            break;
        case CNN_LAYER_BATCH_NORM:  /* inference: the running statistics */
            cnn__onnx_node(&node, "BatchNormalization", name, inputs, 5, value);
            cnn__onnx_float(&node, "epsilon", (float)CNN__BATCH_NORM_EPS);
            break;
        case CNN_LAYER_MAX_POOL: case CNN_LAYER_AVG_POOL:
            cnn__onnx_pool(layer, l, x, value, graph);
            continue;
        case CNN_LAYER_GLOBAL_AVG_POOL: cnn__onnx_node(&node, "GlobalAveragePool", name, inputs, 1, value); break;
        case CNN_LAYER_RESIDUAL_END: {  /* y = F(x) + x, or + Conv 1x1 (x); x is the block's input */
            const int begin = layer->block_begin;
            const char *terms[2];
            cnn__onnx_value(model, begin - 1, last, skip);
            if (layer->weight_count) {
                const long long no_pads[4] = {0, 0, 0, 0};
                if (cnn__onnx_flat(model, begin - 1))
                    return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                                     "cnn_model_export_onnx: layer %d projects a flat vector with a 1x1 convolution, which ONNX's "
                                     "Conv cannot take", l + 1);
                inputs[0] = skip;
                snprintf(shaped, sizeof shaped, "layer%d_shortcut", l);
                snprintf(name, sizeof name, "%d_shortcut", l);
                cnn__onnx_node(&node, "Conv", name, inputs, 3, shaped);
                cnn__onnx_square(&node, "kernel_shape", 1);
                cnn__onnx_square(&node, "strides", d->stride);
                cnn__onnx_ints(&node, "pads", no_pads, 4);
                cnn__pb_message(graph, 1, &node);
                memcpy(skip, shaped, sizeof skip);
            }
            if (flat && (layer->weight_count || !cnn__onnx_flat(model, begin - 1))) {  /* the body made it flat: so must the skip */
                snprintf(shaped, sizeof shaped, "layer%d_skip_flat", l);
                snprintf(name, sizeof name, "%d_skip_flatten", l);
                cnn__onnx_unary(graph, "Flatten", name, skip, shaped);
                memcpy(skip, shaped, sizeof skip);
            }
            terms[0] = x;
            terms[1] = skip;
            snprintf(name, sizeof name, "%d_%s", l, cnn_layer_type_name(d->type));
            cnn__onnx_node(&node, "Add", name, terms, 2, value);
            break;
        }
        case CNN_LAYER_RELU: cnn__onnx_node(&node, "Relu", name, inputs, 1, value); break;
        case CNN_LAYER_SIGMOID: cnn__onnx_node(&node, "Sigmoid", name, inputs, 1, value); break;
        case CNN_LAYER_TANH: cnn__onnx_node(&node, "Tanh", name, inputs, 1, value); break;
        case CNN_LAYER_LEAKY_RELU:
            cnn__onnx_node(&node, "LeakyRelu", name, inputs, 1, value);
            cnn__onnx_float(&node, "alpha", d->alpha);
            break;
        case CNN_LAYER_FLATTEN:
            cnn__onnx_node(&node, "Flatten", name, inputs, 1, value);
            cnn__onnx_int(&node, "axis", 1);
            break;
        default:  /* softmax: over the classes, axis 1 of (N, C) or of (N, C, 1, 1) */
            cnn__onnx_node(&node, "Softmax", name, inputs, 1, value);
            cnn__onnx_int(&node, "axis", 1);
            break;
        }
        cnn__pb_message(graph, 1, &node);
    }
    if (last < 0) cnn__onnx_unary(graph, "Identity", "identity", "input", "output");  /* only dropout: the identity */
    cnn__pb_string(graph, 2, "cnn_h");
    dims[0] = model->input.c; dims[1] = model->input.h; dims[2] = model->input.w;
    cnn__onnx_value_info(graph, 11, "input", dims, 3);
    {
        cnn_shape out = cnn_model_output_shape(model);
        dims[0] = out.c; dims[1] = out.h; dims[2] = out.w;
        cnn__onnx_value_info(graph, 12, "output", dims, cnn__onnx_flat(model, model->layer_count - 1) ? 1 : 3);
    }
    return CNN_OK;
}

CNNDEF cnn_result cnn_model_export_onnx(cnn_model *model, const char *path)
{
    cnn__buffer head, graph, tensor;
    cnn__atomic_file out;
    uint64_t graph_bytes, data_bytes;
    int l, part, ok = 1, out_of_memory = 0;
    cnn_result result;
    if ((result = cnn__check_built(model, "cnn_model_export_onnx")) != CNN_OK) return result;
    if (!path || !*path) return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_model_export_onnx: no file name given");
    if ((result = cnn__check_torch_names(model, "cnn_model_export_onnx")) != CNN_OK) return result;
    memset(&head, 0, sizeof head);
    memset(&graph, 0, sizeof graph);
    if ((result = cnn__onnx_graph(model, &graph)) != CNN_OK) {
        cnn__buffer_free(&graph);
        return result;
    }
    graph_bytes = graph.length;  /* plus each weight's initializer field */
    for (l = 0; l < model->layer_count; l++)
        for (part = 0; part < cnn__onnx_parts(&model->layers[l]); part++) {
            uint64_t size;
            cnn__onnx_tensor_head(&tensor, model, l, part, &data_bytes);
            size = cnn__onnx_tensor_size(&tensor, data_bytes);
            graph_bytes += 1 + cnn__pb_varint_size(size) + size;
            if (tensor.failed) graph.failed = 1;
            cnn__buffer_free(&tensor);
        }
    if (graph_bytes > 2147483647u - 4096u) {  /* protocol buffers' limit: 2 GB a message */
        cnn__buffer_free(&graph);
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "cnn_model_export_onnx: the model's %llu bytes are more than one ONNX file holds (2 GB)",
                         (unsigned long long)graph_bytes);
    }
    cnn__pb_int(&head, 1, CNN__ONNX_IR_VERSION);
    cnn__pb_string(&head, 2, "cnn.h");
    {
        char version[32];
        cnn__buffer opset;
        snprintf(version, sizeof version, "%d.%d.%d", CNN_VERSION_MAJOR, CNN_VERSION_MINOR, CNN_VERSION_PATCH);
        cnn__pb_string(&head, 3, version);
        memset(&opset, 0, sizeof opset);
        cnn__pb_int(&opset, 2, CNN__ONNX_OPSET);  /* domain "": the standard operators */
        cnn__pb_message(&head, 8, &opset);
    }
    cnn__pb_key(&head, 7, 2);
    cnn__pb_varint(&head, graph_bytes);
    if (head.failed || graph.failed) {
        cnn__buffer_free(&head);
        cnn__buffer_free(&graph);
        return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory writing '%s'", path);
    }
    if ((result = cnn__atomic_open(&out, path, &model->error)) != CNN_OK) {
        cnn__buffer_free(&head);
        cnn__buffer_free(&graph);
        return result;
    }
    ok &= fwrite(head.data, 1, head.length, out.file) == head.length;
    ok &= fwrite(graph.data, 1, graph.length, out.file) == graph.length;
    for (l = 0; ok && l < model->layer_count; l++)
        for (part = 0; ok && part < cnn__onnx_parts(&model->layers[l]); part++) {
            cnn__buffer field;  /* initializer: the head, then raw_data's key and length, then the data itself */
            memset(&field, 0, sizeof field);
            cnn__onnx_tensor_head(&tensor, model, l, part, &data_bytes);
            cnn__pb_key(&field, 5, 2);
            cnn__pb_varint(&field, cnn__onnx_tensor_size(&tensor, data_bytes));
            cnn__buffer_put(&field, tensor.data, tensor.length);
            cnn__pb_key(&field, 9, 2);
            cnn__pb_varint(&field, data_bytes);
            out_of_memory = field.failed || tensor.failed;
            ok &= !out_of_memory && fwrite(field.data, 1, field.length, out.file) == field.length;
            ok &= ok && cnn__write_torch_tensor(out.file, &model->layers[l], part);
            cnn__buffer_free(&field);
            cnn__buffer_free(&tensor);
        }
    cnn__buffer_free(&head);
    cnn__buffer_free(&graph);
    result = cnn__atomic_close(&out, path, ok, &model->error);  /* removes the temporary file on failure */
    if (out_of_memory) return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory writing '%s'", path);
    return result;
}


/* ======================================================================== int8 and C export

   The int8 arithmetic below is written twice on purpose: once here, as the
   library's cnn_quantized_predict, and once as text that
   cnn_model_export_c writes into the exported file. tests/test_export.c
   compiles such files and checks that both give the same codes. */

/* ---------------------------------------------------------------- fixed point, as TensorFlow Lite

   A real multiplier m > 0 becomes an int32 multiplier in [2^30, 2^31) and a
   shift, m = multiplier x 2^(shift - 31); an int32 sum times m is then
   the rounded high half of a 64-bit product, shifted with rounding: the
   arithmetic of gemmlowp's SaturatingRoundingDoublingHighMul and
   RoundingDivideByPOT, written with 64-bit integers so that no step can
   overflow and no negative number is shifted (whose result C leaves to
   the compiler). */
CNN__PRIVATE void cnn__quantize_multiplier(double m, int32_t *multiplier, int *shift)
{
    double fraction;
    long long fixed;
    *multiplier = 0;
    *shift = 0;
    if (!(m > 0.0)) return;
    fraction = frexp(m, shift);  /* m = fraction x 2^shift, fraction in [0.5, 1) */
    fixed = (long long)floor(fraction * 2147483648.0 + 0.5);
    if (fixed == 2147483648LL) fixed /= 2, ++*shift;
    if (*shift < -31) fixed = 0, *shift = 0;                  /* below 2^-32: nothing is left */
    if (*shift > 30) fixed = 2147483647LL, *shift = 30;       /* above 2^30: saturate */
    *multiplier = (int32_t)fixed;
}

/* round(sum x multiplier x 2^(shift - 31)), twice rounded as TensorFlow
   Lite's kernels round it (so within 1 of the exact value); a sum whose
   left-shifted value leaves int32 saturates first, where gemmlowp's
   would overflow */
CNN__PRIVATE int32_t cnn__requantize(int32_t sum, int32_t multiplier, int shift)
{
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    int64_t x = (int64_t)sum * ((int64_t)1 << left), product, high, mask, remainder, threshold;
    if (x > INT32_MAX) x = INT32_MAX;
    if (x < INT32_MIN) x = INT32_MIN;
    product = x * multiplier;  /* the doubling high half, rounded half away from zero */
    high = (product + (product >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30))) / ((int64_t)1 << 31);
    mask = ((int64_t)1 << right) - 1;  /* then / 2^right, rounded half away from zero */
    remainder = high & mask;
    threshold = (mask >> 1) + (high < 0 ? 1 : 0);
    return (int32_t)((high - remainder) / ((int64_t)1 << right) + (remainder > threshold ? 1 : 0));
}

/* The code of a real x: round(x / scale) + zero, clamped to int8. */
CNN__PRIVATE signed char cnn__quantize_value(float x, float scale, int zero)
{
    float v = x / scale;  /* a division cannot be fused into a multiply-add: the same bits everywhere */
    int code;
    if (v > 1000.0f) v = 1000.0f;
    if (v < -1000.0f) v = -1000.0f;
    code = (v >= 0.0f ? (int)(v + 0.5f) : -(int)(0.5f - v)) + zero;
    return (signed char)(code < -128 ? -128 : code > 127 ? 127 : code);
}

/* ---------------------------------------------------------------- the int8 layers

   x and y hold one sample, (C, H, W) codes; in_zero is x's zero point. A
   conv2d or dense sum is taken over (x - in_zero) x weight: padding holds
   the code of 0, in_zero, and adds nothing. */
CNN__PRIVATE void cnn__q_conv2d(const cnn_layer *layer, const cnn_quant_layer *q, int in_zero, const signed char *x, signed char *y)
{
    const int C = layer->in.c, H = layer->in.h, W = layer->in.w, OC = layer->out.c, OH = layer->out.h, OW = layer->out.w;
    const int K = layer->desc.kernel, S = layer->desc.stride, P = layer->desc.padding;
    int oc, oy, ox, c, ky, kx;
    for (oc = 0; oc < OC; oc++)
        for (oy = 0; oy < OH; oy++)
            for (ox = 0; ox < OW; ox++) {
                int32_t sum = q->bias[oc];
                int code;
                for (c = 0; c < C; c++)
                    for (ky = 0; ky < K; ky++) {
                        int iy = oy * S - P + ky;
                        if (iy < 0 || iy >= H) continue;
                        for (kx = 0; kx < K; kx++) {
                            int ix = ox * S - P + kx;
                            if (ix < 0 || ix >= W) continue;
                            sum += (x[(c * H + iy) * W + ix] - in_zero) * q->weight[((oc * C + c) * K + ky) * K + kx];
                        }
                    }
                code = q->out_zero + cnn__requantize(sum, q->multiplier[oc], q->shift[oc]);
                y[(oc * OH + oy) * OW + ox] = (signed char)(code < -128 ? -128 : code > 127 ? 127 : code);
            }
}

CNN__PRIVATE void cnn__q_dense(const cnn_layer *layer, const cnn_quant_layer *q, int in_zero, const signed char *x, signed char *y)
{
    const int IN = (int)cnn_shape_count(layer->in), OUT = layer->out.c;
    int o, i;
    for (o = 0; o < OUT; o++) {
        int32_t sum = q->bias[o];
        int code;
        for (i = 0; i < IN; i++) sum += (x[i] - in_zero) * q->weight[o * IN + i];
        code = q->out_zero + cnn__requantize(sum, q->multiplier[o], q->shift[o]);
        y[o] = (signed char)(code < -128 ? -128 : code > 127 ? 127 : code);
    }
}

/* Pools keep their input's scale: the largest code of the window's cells
   inside the input (the padding never wins), or the mean of the codes over
   the window's area in the padded input, each padding cell holding the
   code of 0, zero (as the float average counts it), rounded half away
   from zero. Windows as cnn__pool_span gives them. */
CNN__PRIVATE void cnn__q_pool(const cnn_layer *layer, int zero, const signed char *x, signed char *y)
{
    const int C = layer->in.c, H = layer->in.h, W = layer->in.w, OH = layer->out.h, OW = layer->out.w;
    const int K = layer->desc.kernel, S = layer->desc.stride, P = layer->desc.padding;
    int c, oy, ox, u, v, u_first, u_end, v_first, v_end, area;
    for (c = 0; c < C; c++)
        for (oy = 0; oy < OH; oy++)
            for (ox = 0; ox < OW; ox++) {
                int best = -128, sum;
                area = cnn__pool_span(oy, K, S, P, H, &u_first, &u_end) * cnn__pool_span(ox, K, S, P, W, &v_first, &v_end);
                sum = (area - (u_end - u_first) * (v_end - v_first)) * zero;  /* the padding's cells */
                for (u = u_first; u < u_end; u++)
                    for (v = v_first; v < v_end; v++) {
                        int code = x[(c * H + u) * W + v];
                        best = code > best ? code : best;
                        sum += code;
                    }
                y[(c * OH + oy) * OW + ox] = (signed char)(layer->desc.type == CNN_LAYER_MAX_POOL ? best
                                                           : (sum + (sum > 0 ? area / 2 : -(area / 2))) / area);
            }
}

/* Global average pooling: each plane's sum of (x - in_zero), requantized
   to the output's codes by multiplier[0], shift[0] = input scale /
   (output scale x plane). */
CNN__PRIVATE void cnn__q_mean(const cnn_layer *layer, const cnn_quant_layer *q, int in_zero, const signed char *x, signed char *y)
{
    const int C = layer->in.c, plane = layer->in.h * layer->in.w;
    int c, k;
    for (c = 0; c < C; c++) {
        int32_t sum = 0;
        int code;
        for (k = 0; k < plane; k++) sum += x[c * plane + k] - in_zero;
        code = q->out_zero + cnn__requantize(sum, q->multiplier[0], q->shift[0]);
        y[c] = (signed char)(code < -128 ? -128 : code > 127 ? 127 : code);
    }
}

/* One sample through the int8 model; returns its class and, unless
   probabilities is NULL, writes the float outputs. */
CNN__PRIVATE int cnn__quantized_sample(cnn_quantized *q, const float *input, float *probabilities)
{
    signed char *x = q->buffers[0], *y = q->buffers[1], *swap;
    size_t count = cnn_shape_count(q->input), i;
    float scale = q->input_scale;
    int zero = q->input_zero, l, best = 0, softmax = 0;
    for (i = 0; i < count; i++) x[i] = cnn__quantize_value(input[i], q->input_scale, q->input_zero);
    for (l = 0; l < q->layer_count; l++) {
        const cnn_layer *layer = &q->layers[l];
        const cnn_quant_layer *quant = &q->quant[l];
        count = cnn_shape_count(layer->out);
        switch (layer->desc.type) {
        case CNN_LAYER_CONV2D: cnn__q_conv2d(layer, quant, zero, x, y); swap = x, x = y, y = swap; break;
        case CNN_LAYER_DENSE: cnn__q_dense(layer, quant, zero, x, y); swap = x, x = y, y = swap; break;
        case CNN_LAYER_MAX_POOL: case CNN_LAYER_AVG_POOL: cnn__q_pool(layer, zero, x, y); swap = x, x = y, y = swap; break;
        case CNN_LAYER_GLOBAL_AVG_POOL: cnn__q_mean(layer, quant, zero, x, y); swap = x, x = y, y = swap; break;
        case CNN_LAYER_RELU:
            for (i = 0; i < count; i++) x[i] = x[i] < zero ? (signed char)zero : x[i];
            break;
        case CNN_LAYER_LEAKY_RELU: case CNN_LAYER_SIGMOID: case CNN_LAYER_TANH:
            for (i = 0; i < count; i++) x[i] = quant->table[x[i] + 128];
            break;
        case CNN_LAYER_SOFTMAX: softmax = 1; break;  /* last: in float, below */
        default: break;  /* flatten, dropout, batch norm (folded into the layer before it): the same codes */
        }
        scale = quant->out_scale;
        zero = quant->out_zero;
    }
    for (i = 1; i < count; i++)
        if (x[i] > x[best]) best = (int)i;
    if (probabilities) {
        float top = 0.0f, sum = 0.0f;
        for (i = 0; i < count; i++) probabilities[i] = scale * (float)(x[i] - zero);
        if (softmax) {
            for (i = 0; i < count; i++) top = i == 0 || probabilities[i] > top ? probabilities[i] : top;
            for (i = 0; i < count; i++) sum += probabilities[i] = expf(probabilities[i] - top);
            for (i = 0; i < count; i++) probabilities[i] /= sum;
        }
    }
    return best;
}

/* ---------------------------------------------------------------- quantization */

/* A batch norm layer in evaluation as y = x * scale + shift per channel c
   (shift: 1 for shift, 0 for scale): the very floats the forward pass
   computes from the running estimates. */
CNN__PRIVATE float cnn__batch_norm_eval(const cnn_layer *layer, int c, int shift)
{
    const float inv_std = (float)(1.0 / sqrt((double)layer->running_var[c] + CNN__BATCH_NORM_EPS));
    const float scale = layer->weight[c] * inv_std;
    return shift ? layer->bias[c] - layer->running_mean[c] * scale : scale;
}

/* 1 when layer l is a conv2d or dense layer followed by a batch norm,
   which int8 folds into it. */
CNN__PRIVATE int cnn__folded_batch_norm(const cnn_model *model, int l)
{
    cnn_layer_type type = model->layers[l].desc.type;
    return (type == CNN_LAYER_CONV2D || type == CNN_LAYER_DENSE) && l + 1 < model->layer_count &&
           model->layers[l + 1].desc.type == CNN_LAYER_BATCH_NORM;
}

/* Scale and zero point for values in [low, high] (widened to hold 0), or 0
   when the range is a single value. */
CNN__PRIVATE int cnn__choose_scale(float low, float high, float *scale, int *zero)
{
    double lo = low < 0.0f ? low : 0.0, hi = high > 0.0f ? high : 0.0, z;
    if (!(hi > lo)) return 0;
    *scale = (float)((hi - lo) / 255.0);
    if (!(*scale >= FLT_MIN)) return 0;  /* a range so small its scale is no normal float */
    z = floor(-128.0 - lo / *scale + 0.5);
    *zero = z < -128.0 ? -128 : z > 127.0 ? 127 : (int)z;
    return 1;
}

/* round(v), clamped to [lo, hi] */
CNN__PRIVATE long cnn__round_clamp(double v, long lo, long hi)
{
    v = floor(v + 0.5);
    return v < (double)lo ? lo : v > (double)hi ? hi : (long)v;
}

CNNDEF void cnn_quantized_free(cnn_quantized *q)
{
    if (!q) return;
    CNN_FREE(q->memory);
    memset(q, 0, sizeof *q);
}

/* Widens low[a] .. high[a] to the values of activations[a], batch images
   from calibration image `start` on. */
CNN__PRIVATE cnn_result cnn__widen_range(cnn_model *model, int a, int start, int batch, float *low, float *high)
{
    const size_t count = (size_t)batch * cnn_shape_count(a ? model->layers[a - 1].out : model->input);
    const float *values = model->activations[a].data;
    size_t i;
    for (i = 0; i < count; i++) {
        if (!cnn__is_finite(values[i]))
            return cnn__fail(&model->error, CNN_ERROR_NOT_FINITE, 0, 0, -1, "calibration image %d gives a value that is not finite%s",
                             start + (int)(i / (count / (size_t)batch)), a ? "" : " (in the image itself)");
        low[a] = values[i] < low[a] ? values[i] : low[a];
        high[a] = values[i] > high[a] ? values[i] : high[a];
    }
    return CNN_OK;
}

/* The smallest and largest value of every activation over rows images:
   low[0], high[0] the input's, low[i + 1], high[i + 1] layer i's output's.
   Each range is taken as soon as its layer has run: the next layer may run
   in place and overwrite it (see "memory" at cnn_model_build). */
CNN__PRIVATE cnn_result cnn__calibrate(cnn_model *model, const cnn_dataset *data, int rows, float *low, float *high)
{
    int start, a;
    cnn_result result;
    for (a = 0; a <= model->layer_count; a++) low[a] = FLT_MAX, high[a] = -FLT_MAX;
    for (start = 0; start < rows; start += model->max_batch) {
        const int batch = rows - start < model->max_batch ? rows - start : model->max_batch;
        memcpy(model->activations[0].data, data->images.data + (size_t)start * cnn_shape_count(model->input),
               (size_t)batch * cnn_shape_count(model->input) * sizeof(float));
        cnn__forward_begin(model, batch, CNN_MODE_EVAL);
        if ((result = cnn__widen_range(model, 0, start, batch, low, high)) != CNN_OK) return result;
        for (a = 0; a < model->layer_count; a++) {
            cnn__forward_layer(model, a);
            if ((result = cnn__widen_range(model, a + 1, start, batch, low, high)) != CNN_OK) return result;
        }
    }
    return CNN_OK;
}

CNNDEF cnn_result cnn_quantize(cnn_quantized *q, cnn_model *model, const cnn_dataset *calibration, int rows)
{
    float low[CNN_MAX_LAYERS + 1], high[CNN_MAX_LAYERS + 1], scale;
    size_t bytes = 0, largest, at;
    unsigned char *block;
    int l, zero;
    cnn_result result;
    if (!q) return CNN_ERROR_INVALID_ARGUMENT;
    memset(q, 0, sizeof *q);
    cnn__clear_error(&q->error);
    if (!model) return cnn__null_argument(&q->error, "cnn_quantize", "model");
    if (!calibration) return cnn__null_argument(&q->error, "cnn_quantize", "calibration");
    if (!model->memory) return cnn__fail(&q->error, CNN_ERROR_STATE, 0, 0, -1, "cnn_quantize: the model is not built");
    if (calibration->count < 1 || !calibration->images.data)
        return cnn__fail(&q->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_quantize: the calibration set is empty");
    if (calibration->count > calibration->images.n)
        return cnn__fail(&q->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_quantize: the calibration set counts %d images but holds %d",
                         calibration->count, calibration->images.n);
    if (calibration->images.c != model->input.c || calibration->images.h != model->input.h || calibration->images.w != model->input.w)
        return cnn__fail(&q->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1, "cnn_quantize: calibration images are (%d, %d, %d); the model takes (%d, %d, %d)",
                         calibration->images.c, calibration->images.h, calibration->images.w, model->input.c, model->input.h, model->input.w);
    if (rows < 0) return cnn__fail(&q->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_quantize: rows must be >= 0, got %d", rows);
    if (rows == 0) rows = 1000;
    if (rows > calibration->count) rows = calibration->count;
    for (l = 0; l < model->layer_count; l++) {
        cnn_layer_type type = model->layers[l].desc.type, before = l ? model->layers[l - 1].desc.type : CNN_LAYER_NONE;
        if (type == CNN_LAYER_SOFTMAX && l + 1 < model->layer_count)
            return cnn__fail(&q->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "cnn_quantize: layer %d is a softmax, which int8 models have only as their last layer", l);
        if (type == CNN_LAYER_RESIDUAL_BEGIN || type == CNN_LAYER_RESIDUAL_END)
            return cnn__fail(&q->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "cnn_quantize: layer %d (%s) is part of a residual block, which int8 models do not have: "
                             "export this model in float32", l, cnn_layer_type_name(type));
        if (type == CNN_LAYER_BATCH_NORM && before != CNN_LAYER_CONV2D && before != CNN_LAYER_DENSE)
            return cnn__fail(&q->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "cnn_quantize: layer %d (batch_norm) follows %s%s; int8 models fold a batch norm into the conv2d or "
                             "dense layer right before it: export this model in float32", l, l ? "a " : "the input",
                             l ? cnn_layer_type_name(before) : "");
    }
    if ((result = cnn__calibrate(model, calibration, rows, low, high)) != CNN_OK) {
        q->error = model->error;
        return result;
    }
    q->input = model->input;
    q->layer_count = model->layer_count;
    q->calibration_rows = rows;
    if (low[0] == high[0] || !cnn__choose_scale(low[0], high[0], &q->input_scale, &q->input_zero))
        return cnn__fail(&q->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "cnn_quantize: every value of the %d calibration images is %g: no scale fits them", rows, (double)low[0]);

    /* each activation's scale and zero point, and the memory the int8 model needs */
    scale = q->input_scale;
    zero = q->input_zero;
    largest = cnn_shape_count(model->input);
    for (l = 0; l < model->layer_count; l++) {
        const cnn_layer *layer = &model->layers[l];
        cnn_quant_layer *quant = &q->quant[l];
        cnn_layer_type type = layer->desc.type;
        int own = type == CNN_LAYER_CONV2D || type == CNN_LAYER_DENSE || type == CNN_LAYER_LEAKY_RELU || type == CNN_LAYER_GLOBAL_AVG_POOL;
        /* a conv2d or dense layer takes the range of the batch norm folded
           into it; before a ReLU, the ReLU's range: its codes then spend no
           precision on the negatives the ReLU drops */
        int a = l + 1 + cnn__folded_batch_norm(model, l);
        a += (type == CNN_LAYER_CONV2D || type == CNN_LAYER_DENSE) && a < model->layer_count &&
             model->layers[a].desc.type == CNN_LAYER_RELU;
        q->layers[l] = *layer;
        q->layers[l].weight = q->layers[l].bias = q->layers[l].weight_grad = q->layers[l].bias_grad = NULL;
        q->layers[l].argmax = NULL;
        q->layers[l].mask = NULL;
        q->layers[l].running_mean = q->layers[l].running_var = q->layers[l].batch_mean = q->layers[l].batch_inv_std = NULL;
        q->layers[l].skip_grad = NULL;
        quant->out_scale = scale;
        quant->out_zero = zero;
        if (own && !cnn__choose_scale(low[a], high[a], &quant->out_scale, &quant->out_zero))
            return cnn__fail(&q->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "cnn_quantize: layer %d (%s) gives %g for every calibration image: no scale fits its outputs", l,
                             cnn_layer_type_name(type), (double)low[a]);
        /* sigmoid's and tanh's outputs have the fixed codes TensorFlow Lite gives them */
        if (type == CNN_LAYER_SIGMOID) quant->out_scale = 1.0f / 256.0f, quant->out_zero = -128;
        if (type == CNN_LAYER_TANH) quant->out_scale = 1.0f / 128.0f, quant->out_zero = 0;
        if (type == CNN_LAYER_CONV2D || type == CNN_LAYER_DENSE)
            bytes += layer->weight_count + layer->bias_count * (3 * sizeof(int32_t) + sizeof(int)) + 16;
        if (type == CNN_LAYER_GLOBAL_AVG_POOL) bytes += sizeof(int32_t) + sizeof(int) + 16;
        if (type == CNN_LAYER_LEAKY_RELU || type == CNN_LAYER_SIGMOID || type == CNN_LAYER_TANH) bytes += 256;
        scale = quant->out_scale;
        zero = quant->out_zero;
        if (cnn_shape_count(layer->out) > largest) largest = cnn_shape_count(layer->out);
    }
    bytes += 2 * largest + 16;
    if (!(block = (unsigned char *)CNN_MALLOC(bytes)))
        return cnn__fail(&q->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "cnn_quantize: out of memory");
    q->memory = block;

    /* the weights, per output channel and symmetric, the int32 things first,
       aligned; and the tables: each input code's output code */
    at = 0;
    scale = q->input_scale;
    zero = q->input_zero;
    for (l = 0; l < model->layer_count; l++) {
        const cnn_layer *layer = &model->layers[l];
        cnn_quant_layer *quant = &q->quant[l];
        size_t outputs = layer->bias_count, per_output = outputs ? layer->weight_count / outputs : 0, o, k;
        const cnn_layer *batch_norm = cnn__folded_batch_norm(model, l) ? &model->layers[l + 1] : NULL;
        if (layer->desc.type == CNN_LAYER_CONV2D || layer->desc.type == CNN_LAYER_DENSE) {
            at = (at + 15) / 16 * 16;
            quant->bias = (int32_t *)(void *)(block + at); at += outputs * sizeof(int32_t);
            quant->multiplier = (int32_t *)(void *)(block + at); at += outputs * sizeof(int32_t);
            quant->weight_scale = (float *)(void *)(block + at); at += outputs * sizeof(float);
            quant->shift = (int *)(void *)(block + at); at += outputs * sizeof(int);
            quant->weight = (signed char *)(block + at); at += layer->weight_count;
            for (o = 0; o < outputs; o++) {
                float largest_weight = 0.0f, weight_scale, factor = 1.0f;
                double total = 0.0, bias = layer->bias[o];  /* total of |weight| */
                /* the weight of output o, input k: conv2d (OC, C, K, K); dense (IN, OUT) in cnn.h;
                   times the scale of a batch norm folded in, whose shift joins the bias */
#define CNN__WEIGHT(k) (factor * (layer->desc.type == CNN_LAYER_DENSE ? layer->weight[(k) * outputs + o] : layer->weight[o * per_output + (k)]))
                if (batch_norm) {
                    factor = cnn__batch_norm_eval(batch_norm, (int)o, 0);
                    bias = (double)layer->bias[o] * factor + cnn__batch_norm_eval(batch_norm, (int)o, 1);
                }
                for (k = 0; k < per_output; k++) {
                    if (fabsf(CNN__WEIGHT(k)) > largest_weight) largest_weight = fabsf(CNN__WEIGHT(k));
                    total += fabs((double)CNN__WEIGHT(k));
                }
                weight_scale = largest_weight > 0.0f ? largest_weight / 127.0f : 1.0f;
                /* The int32 sum, bias + sum of (x - zero) x weight with |x - zero| <= 255,
                   must not overflow: a layer too wide, or a bias too large for its
                   weights (a nearly dead channel), takes a coarser weight scale, so
                   that each part stays below 2^29 (TensorFlow Lite's converter
                   widens scales for its bias the same way). */
                if ((double)weight_scale < 255.0 * total / 536870912.0) weight_scale = (float)(255.0 * total / 536870912.0);
                if ((double)weight_scale < fabs(bias) / scale / 536870912.0) weight_scale = (float)(fabs(bias) / scale / 536870912.0);
                for (k = 0; k < per_output; k++)
                    quant->weight[o * per_output + k] = (signed char)cnn__round_clamp((double)CNN__WEIGHT(k) / weight_scale, -127, 127);
#undef CNN__WEIGHT
                quant->weight_scale[o] = weight_scale;
                quant->bias[o] = (int32_t)cnn__round_clamp(bias / ((double)scale * weight_scale), -2147483647L, 2147483647L);
                cnn__quantize_multiplier((double)scale * weight_scale / quant->out_scale, &quant->multiplier[o], &quant->shift[o]);
            }
        }
        if (layer->desc.type == CNN_LAYER_GLOBAL_AVG_POOL) {
            at = (at + 15) / 16 * 16;
            quant->multiplier = (int32_t *)(void *)(block + at); at += sizeof(int32_t);
            quant->shift = (int *)(void *)(block + at); at += sizeof(int);
            cnn__quantize_multiplier((double)scale / ((double)quant->out_scale * layer->in.h * layer->in.w), quant->multiplier, quant->shift);
        }
        if (layer->desc.type == CNN_LAYER_LEAKY_RELU || layer->desc.type == CNN_LAYER_SIGMOID || layer->desc.type == CNN_LAYER_TANH) {
            int code;
            quant->table = (signed char *)(block + at);
            at += 256;
            for (code = -128; code < 128; code++) {
                double x = (double)scale * (code - zero), y;
                if (layer->desc.type == CNN_LAYER_LEAKY_RELU) y = x < 0.0 ? (double)layer->desc.alpha * x : x;
                else if (layer->desc.type == CNN_LAYER_SIGMOID) y = 1.0 / (1.0 + exp(-x));
                else y = tanh(x);
                quant->table[code + 128] = (signed char)cnn__round_clamp(y / quant->out_scale + quant->out_zero, -128, 127);
            }
        }
        scale = quant->out_scale;
        zero = quant->out_zero;
    }
    q->buffers[0] = (signed char *)(block + at);
    q->buffers[1] = q->buffers[0] + largest;
    CNN_ASSERT(at + 2 * largest <= bytes);
    return CNN_OK;
}

CNNDEF cnn_result cnn_quantized_predict(cnn_quantized *q, const float *input, int count, int *classes, float *probabilities)
{
    size_t in_size, out_size;
    int n;
    if (!q) return CNN_ERROR_INVALID_ARGUMENT;
    if (!input) return cnn__null_argument(&q->error, "cnn_quantized_predict", "input");
    if (!classes) return cnn__null_argument(&q->error, "cnn_quantized_predict", "classes");
    if (!q->memory) return cnn__fail(&q->error, CNN_ERROR_STATE, 0, 0, -1, "cnn_quantized_predict: nothing is quantized (call cnn_quantize)");
    if (count <= 0)
        return cnn__fail(&q->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_quantized_predict: count must be >= 1, got %d", count);
    in_size = cnn_shape_count(q->input);
    out_size = cnn_shape_count(q->layers[q->layer_count - 1].out);
    for (n = 0; n < count; n++)
        classes[n] = cnn__quantized_sample(q, input + (size_t)n * in_size, probabilities ? probabilities + (size_t)n * out_size : NULL);
    return CNN_OK;
}

/* ---------------------------------------------------------------- the C export

   The exported file's code is written here once, as text in which '@'
   stands for the name and '$' for the name in capitals. Only the kernels a
   model uses are written, so that the file compiles under -Werror. */

/* The softmax at the end, in float in both kinds of file. */
#define CNN__C_SOFTMAX_KERNEL \
    "static void @_softmax(float *x, int count)\n" \
    "{\n" \
    "    float top = x[0], sum = 0.0f;\n" \
    "    int i;\n" \
    "    for (i = 1; i < count; i++) top = x[i] > top ? x[i] : top;\n" \
    "    for (i = 0; i < count; i++) sum += x[i] = $_EXPF(x[i] - top);\n" \
    "    for (i = 0; i < count; i++) x[i] /= sum;\n" \
    "}\n\n"

static const char cnn__c_float_kernels[][1100] = {
    /* 0 conv2d */
    "static void @_conv2d(const float *x, float *y, const float *weight, const float *bias,\n"
    "                      int C, int H, int W, int OC, int K, int S, int P, int OH, int OW)\n"
    "{\n"
    "    int oc, oy, ox, c, ky, kx;\n"
    "    for (oc = 0; oc < OC; oc++)\n"
    "        for (oy = 0; oy < OH; oy++)\n"
    "            for (ox = 0; ox < OW; ox++) {\n"
    "                float sum = bias[oc];\n"
    "                for (c = 0; c < C; c++)\n"
    "                    for (ky = 0; ky < K; ky++) {\n"
    "                        int iy = oy * S - P + ky;\n"
    "                        if (iy < 0 || iy >= H) continue;\n"
    "                        for (kx = 0; kx < K; kx++) {\n"
    "                            int ix = ox * S - P + kx;\n"
    "                            if (ix < 0 || ix >= W) continue;\n"
    "                            sum += x[(c * H + iy) * W + ix] * weight[((oc * C + c) * K + ky) * K + kx];\n"
    "                        }\n"
    "                    }\n"
    "                y[(oc * OH + oy) * OW + ox] = sum;\n"
    "            }\n"
    "}\n\n",
    /* 1 dense: weight (OUT, IN) */
    "static void @_dense(const float *x, float *y, const float *weight, const float *bias, int IN, int OUT)\n"
    "{\n"
    "    int o, i;\n"
    "    for (o = 0; o < OUT; o++) {\n"
    "        float sum = bias[o];\n"
    "        for (i = 0; i < IN; i++) sum += x[i] * weight[o * IN + i];\n"
    "        y[o] = sum;\n"
    "    }\n"
    "}\n\n",
    /* 2 pools: window (oy, ox) covers rows oy * S - P .. + K - 1 and the like;
       max over its cells inside the input, average over its area inside the
       padded input (the padding counts as 0) */
    "static void @_pool(const float *x, float *y, int max, int C, int H, int W, int K, int S, int P, int OH, int OW)\n"
    "{\n"
    "    int c, oy, ox, u, v;\n"
    "    for (c = 0; c < C; c++)\n"
    "        for (oy = 0; oy < OH; oy++)\n"
    "            for (ox = 0; ox < OW; ox++) {\n"
    "                int top = oy * S - P, left = ox * S - P, u0 = top < 0 ? 0 : top, v0 = left < 0 ? 0 : left;\n"
    "                int area = ((top + K < H + P ? top + K : H + P) - top) * ((left + K < W + P ? left + K : W + P) - left);\n"
    "                float best = x[(c * H + u0) * W + v0], sum = 0.0f;\n"
    "                for (u = u0; u < top + K && u < H; u++)\n"
    "                    for (v = v0; v < left + K && v < W; v++) {\n"
    "                        float value = x[(c * H + u) * W + v];\n"
    "                        best = value > best || value != value ? value : best;\n"
    "                        sum += value;\n"
    "                    }\n"
    "                y[(c * OH + oy) * OW + ox] = max ? best : sum / (float)area;\n"
    "            }\n"
    "}\n\n",
    /* 3 activations, in place: 0 relu, 1 leaky relu, 2 sigmoid, 3 tanh */
    "static void @_activate(float *x, int count, int kind, float alpha)\n"
    "{\n"
    "    int i;\n"
    "    for (i = 0; i < count; i++) {\n"
    "        float v = x[i];\n"
    "        if (kind == 0) x[i] = v > 0.0f ? v : 0.0f;\n"
    "        else if (kind == 1) x[i] = v < 0.0f ? alpha * v : v;\n"
    "        else if (kind == 2) x[i] = 1.0f / (1.0f + $_EXPF(-v));\n"
    "        else x[i] = 1.0f - 2.0f / ($_EXPF(2.0f * v) + 1.0f);  /* tanh, from expf alone */\n"
    "    }\n"
    "}\n\n",
    /* 4 softmax, in place */
    CNN__C_SOFTMAX_KERNEL,
    /* 5 batch norm in evaluation, in place: a scale and a shift a channel */
    "static void @_batch_norm(float *x, const float *scale, const float *shift, int C, int plane)\n"
    "{\n"
    "    int c, k;\n"
    "    for (c = 0; c < C; c++)\n"
    "        for (k = 0; k < plane; k++) x[c * plane + k] = x[c * plane + k] * scale[c] + shift[c];\n"
    "}\n\n",
    /* 6 global average pooling: each plane's mean */
    "static void @_mean(const float *x, float *y, int C, int plane)\n"
    "{\n"
    "    int c, k;\n"
    "    for (c = 0; c < C; c++) {\n"
    "        float sum = 0.0f;\n"
    "        for (k = 0; k < plane; k++) sum += x[c * plane + k];\n"
    "        y[c] = sum / (float)plane;\n"
    "    }\n"
    "}\n\n",
    /* 7 a residual block's begin keeps its input; its end adds it (or its projection) */
    "static void @_copy(float *to, const float *from, int count)\n"
    "{\n"
    "    int i;\n"
    "    for (i = 0; i < count; i++) to[i] = from[i];\n"
    "}\n\n"
    "static void @_add(float *x, const float *other, int count)\n"
    "{\n"
    "    int i;\n"
    "    for (i = 0; i < count; i++) x[i] += other[i];\n"
    "}\n\n"};

static const char cnn__c_int8_kernels[][1500] = {
    /* 0 the input's codes: always */
    "/* round(x / scale) + zero, clamped to int8: the code of a real */\n"
    "static signed char @_quantize(float x, float scale, int zero)\n"
    "{\n"
    "    float v = x / scale;\n"
    "    int code;\n"
    "    if (v > 1000.0f) v = 1000.0f;\n"
    "    if (v < -1000.0f) v = -1000.0f;\n"
    "    code = (v >= 0.0f ? (int)(v + 0.5f) : -(int)(0.5f - v)) + zero;\n"
    "    return (signed char)(code < -128 ? -128 : code > 127 ? 127 : code);\n"
    "}\n\n",
    /* 1 the fixed-point multiply: with conv2d and dense */
    "/* round(sum x multiplier x 2^(shift - 31)), as TensorFlow Lite, in 64 bits */\n"
    "static int32_t @_requantize(int32_t sum, int32_t multiplier, int shift)\n"
    "{\n"
    "    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;\n"
    "    int64_t x = (int64_t)sum * ((int64_t)1 << left), product, high, mask, remainder, threshold;\n"
    "    if (x > INT32_MAX) x = INT32_MAX;\n"
    "    if (x < INT32_MIN) x = INT32_MIN;\n"
    "    product = x * multiplier;\n"
    "    high = (product + (product >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30))) / ((int64_t)1 << 31);\n"
    "    mask = ((int64_t)1 << right) - 1;\n"
    "    remainder = high & mask;\n"
    "    threshold = (mask >> 1) + (high < 0 ? 1 : 0);\n"
    "    return (int32_t)((high - remainder) / ((int64_t)1 << right) + (remainder > threshold ? 1 : 0));\n"
    "}\n\n",
    /* 2 conv2d */
    "static void @_conv2d(const signed char *x, signed char *y, const signed char *weight, const int32_t *bias,\n"
    "                      const int32_t *multiplier, const signed char *shift, int in_zero, int out_zero,\n"
    "                      int C, int H, int W, int OC, int K, int S, int P, int OH, int OW)\n"
    "{\n"
    "    int oc, oy, ox, c, ky, kx;\n"
    "    for (oc = 0; oc < OC; oc++)\n"
    "        for (oy = 0; oy < OH; oy++)\n"
    "            for (ox = 0; ox < OW; ox++) {\n"
    "                int32_t sum = bias[oc];\n"
    "                int code;\n"
    "                for (c = 0; c < C; c++)\n"
    "                    for (ky = 0; ky < K; ky++) {\n"
    "                        int iy = oy * S - P + ky;\n"
    "                        if (iy < 0 || iy >= H) continue;\n"
    "                        for (kx = 0; kx < K; kx++) {\n"
    "                            int ix = ox * S - P + kx;\n"
    "                            if (ix < 0 || ix >= W) continue;\n"
    "                            sum += (x[(c * H + iy) * W + ix] - in_zero) * weight[((oc * C + c) * K + ky) * K + kx];\n"
    "                        }\n"
    "                    }\n"
    "                code = out_zero + @_requantize(sum, multiplier[oc], shift[oc]);\n"
    "                y[(oc * OH + oy) * OW + ox] = (signed char)(code < -128 ? -128 : code > 127 ? 127 : code);\n"
    "            }\n"
    "}\n\n",
    /* 3 dense: weight (OUT, IN) */
    "static void @_dense(const signed char *x, signed char *y, const signed char *weight, const int32_t *bias,\n"
    "                     const int32_t *multiplier, const signed char *shift, int in_zero, int out_zero, int IN, int OUT)\n"
    "{\n"
    "    int o, i;\n"
    "    for (o = 0; o < OUT; o++) {\n"
    "        int32_t sum = bias[o];\n"
    "        int code;\n"
    "        for (i = 0; i < IN; i++) sum += (x[i] - in_zero) * weight[o * IN + i];\n"
    "        code = out_zero + @_requantize(sum, multiplier[o], shift[o]);\n"
    "        y[o] = (signed char)(code < -128 ? -128 : code > 127 ? 127 : code);\n"
    "    }\n"
    "}\n\n",
    /* 4 pools: the largest code inside the window, or the mean over its area
       in the padded input (padding holds zero, the code of 0), rounded half
       away from zero */
    "static void @_pool(const signed char *x, signed char *y, int max, int zero, int C, int H, int W, int K, int S, int P,\n"
    "                    int OH, int OW)\n"
    "{\n"
    "    int c, oy, ox, u, v;\n"
    "    for (c = 0; c < C; c++)\n"
    "        for (oy = 0; oy < OH; oy++)\n"
    "            for (ox = 0; ox < OW; ox++) {\n"
    "                int top = oy * S - P, left = ox * S - P, u0 = top < 0 ? 0 : top, v0 = left < 0 ? 0 : left;\n"
    "                int area = ((top + K < H + P ? top + K : H + P) - top) * ((left + K < W + P ? left + K : W + P) - left);\n"
    "                int best = -128, sum = 0, cells = 0;\n"
    "                for (u = u0; u < top + K && u < H; u++)\n"
    "                    for (v = v0; v < left + K && v < W; v++) {\n"
    "                        int code = x[(c * H + u) * W + v];\n"
    "                        best = code > best ? code : best;\n"
    "                        sum += code;\n"
    "                        cells++;\n"
    "                    }\n"
    "                sum += (area - cells) * zero;\n"
    "                y[(c * OH + oy) * OW + ox] = (signed char)(max ? best : (sum + (sum > 0 ? area / 2 : -(area / 2))) / area);\n"
    "            }\n"
    "}\n\n",
    /* 5 relu: codes below the code of 0 become it */
    "static void @_relu(signed char *x, int count, int zero)\n"
    "{\n"
    "    int i;\n"
    "    for (i = 0; i < count; i++) x[i] = x[i] < zero ? (signed char)zero : x[i];\n"
    "}\n\n",
    /* 6 tables: leaky relu, sigmoid, tanh */
    "static void @_lookup(signed char *x, int count, const signed char *table)\n"
    "{\n"
    "    int i;\n"
    "    for (i = 0; i < count; i++) x[i] = table[x[i] + 128];\n"
    "}\n\n",
    /* 7 softmax, in place */
    CNN__C_SOFTMAX_KERNEL,
    /* 8 global average pooling: each plane's sum of (x - in_zero), requantized */
    "static void @_mean(const signed char *x, signed char *y, int C, int plane, int in_zero, int out_zero, int32_t multiplier,\n"
    "                    int shift)\n"
    "{\n"
    "    int c, k;\n"
    "    for (c = 0; c < C; c++) {\n"
    "        int32_t sum = 0;\n"
    "        int code;\n"
    "        for (k = 0; k < plane; k++) sum += x[c * plane + k] - in_zero;\n"
    "        code = out_zero + @_requantize(sum, multiplier, shift);\n"
    "        y[c] = (signed char)(code < -128 ? -128 : code > 127 ? 127 : code);\n"
    "    }\n"
    "}\n\n"};

/* Writes text with '@' as the name and '$' as the name in capitals. */
CNN__PRIVATE void cnn__emit(FILE *out, const char *name, const char *text)
{
    for (; *text; text++) {
        if (*text == '@') fputs(name, out);
        else if (*text == '$') {
            const char *c;
            for (c = name; *c; c++) fputc(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c, out);
        } else fputc(*text, out);
    }
}

/* A float as a C literal that reads back as the same float ("0.5f", "3.0f"). */
CNN__PRIVATE void cnn__c_float(char text[48], float value)
{
    cnn__format_float(text, 40, value);
    if (!strchr(text, '.') && !strchr(text, 'e')) strcat(text, ".0");
    strcat(text, "f");
}

/* "static const TYPE NAME_WHAT_L[COUNT] = {...};": values from a function
   of the index, 12 a line. Returns the bytes the array takes. */
typedef struct cnn__array {
    const cnn_layer *layer;        /* float weights and biases in PyTorch's order (a batch
                                      norm's: its evaluation scale and shift) */
    int bias;
    const signed char *bytes;      /* or int8 codes */
    const int32_t *words;          /* or int32 values */
    const int *small;              /* or shifts, written as signed char */
} cnn__array;

CNN__PRIVATE size_t cnn__emit_array(FILE *out, const char *name, const char *what, int l, const cnn__array *a, size_t count)
{
    const char *type = a->layer ? "float" : a->words ? "int32_t" : "signed char";
    size_t i, size = a->layer || a->words ? 4 : 1;
    fprintf(out, "static const %s %s_%s_%d[%lu] = {", type, name, what, l, (unsigned long)count);
    for (i = 0; i < count; i++) {
        char text[48];
        if (a->layer && a->layer->desc.type == CNN_LAYER_BATCH_NORM) cnn__c_float(text, cnn__batch_norm_eval(a->layer, (int)i, a->bias));
        else if (a->layer) cnn__c_float(text, (a->bias ? a->layer->bias : a->layer->weight)[cnn__torch_index(a->layer, a->bias, i)]);
        else snprintf(text, sizeof text, "%ld", a->bytes ? (long)a->bytes[i] : a->words ? (long)a->words[i] : (long)a->small[i]);
        fprintf(out, "%s%s%s", i ? "," : "", i % 12 ? " " : "\n    ", text);
    }
    fprintf(out, "};\n");
    return count * size;
}

/* "conv2d 5x5 s1 p2: (1, 28, 28) -> (6, 28, 28)" */
CNN__PRIVATE void cnn__describe_layer(const cnn_layer *layer, char *text, size_t size)
{
    char what[64];
    cnn__layer_label(&layer->desc, what, sizeof what);
    snprintf(text, size, "%s: (%d, %d, %d) -> (%d, %d, %d)", what, layer->in.c, layer->in.h, layer->in.w, layer->out.c, layer->out.h, layer->out.w);
}

/* 1 for a C identifier of at most 40 characters */
CNN__PRIVATE int cnn__is_identifier(const char *name)
{
    size_t i;
    if (!name[0] || (name[0] >= '0' && name[0] <= '9') || name[0] == '_') return 0;  /* _X and __x are the C library's */
    for (i = 0; name[i]; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_') || i >= 40)
            return 0;
    return 1;
}

/* The buffers of residual blocks: skip[d] values keep the input of the open
   block at nesting depth d (the largest of such inputs) until its end adds
   it. Returns the number of depths. */
CNN__PRIVATE int cnn__export_skips(const cnn_model *model, size_t skip[CNN_MAX_LAYERS])
{
    int l, depth = 0, depths = 0;
    for (l = 0; l < model->layer_count; l++) {
        const cnn_layer *layer = &model->layers[l];
        if (layer->desc.type == CNN_LAYER_RESIDUAL_BEGIN) {
            if (depth == depths) skip[depths++] = 0;
            if (cnn_shape_count(layer->in) > skip[depth]) skip[depth] = cnn_shape_count(layer->in);
            depth++;
        }
        if (layer->desc.type == CNN_LAYER_RESIDUAL_END) depth--;
    }
    return depths;
}

/* The bytes of the arrays cnn__export_body writes (flash) and of its
   buffers (RAM: the two buffers of activations, and skip_ram of it the
   residual blocks' inputs). */
CNN__PRIVATE void cnn__export_sizes(const cnn_model *model, const cnn_quantized *q, size_t *flash, size_t *ram, size_t *skip_ram)
{
    size_t largest = cnn_shape_count(model->input), skip[CNN_MAX_LAYERS];
    int l, d, depths = cnn__export_skips(model, skip);
    *flash = 0;
    for (l = 0; l < model->layer_count; l++) {
        const cnn_layer *layer = &model->layers[l];
        if (cnn_shape_count(layer->out) > largest) largest = cnn_shape_count(layer->out);
        if (!q) *flash += 4 * (layer->weight_count + layer->bias_count);  /* a batch norm's: its scale and shift */
        else if (q->quant[l].weight) *flash += layer->weight_count + layer->bias_count * (4 + 4 + 1);
        if (q && q->quant[l].table) *flash += 256;
    }
    *skip_ram = 0;
    for (d = 0; d < depths; d++) *skip_ram += skip[d] * (q ? 1 : sizeof(float));
    *ram = 2 * largest * (q ? 1 : sizeof(float)) + *skip_ram;
}

/* Kernels of the float file: 0 conv2d, 1 dense, 2 pools, 3 activations, 4
   softmax, 5 batch norm, 6 global average pooling, 7 copy and add; of the
   int8 file: 0 quantize, 1 requantize, 2 conv2d, 3 dense, 4 pools, 5 relu,
   6 tables, 7 softmax, 8 global average pooling. -1: none. */
CNN__PRIVATE int cnn__export_kernel(const cnn_layer *layer, int int8)
{
    switch (layer->desc.type) {
    case CNN_LAYER_CONV2D: return int8 ? 2 : 0;
    case CNN_LAYER_DENSE: return int8 ? 3 : 1;
    case CNN_LAYER_MAX_POOL: case CNN_LAYER_AVG_POOL: return int8 ? 4 : 2;
    case CNN_LAYER_RELU: return int8 ? 5 : 3;
    case CNN_LAYER_LEAKY_RELU: case CNN_LAYER_SIGMOID: case CNN_LAYER_TANH: return int8 ? 6 : 3;
    case CNN_LAYER_SOFTMAX: return int8 ? 7 : 4;
    case CNN_LAYER_BATCH_NORM: return int8 ? -1 : 5;  /* int8: folded into the layer before it */
    case CNN_LAYER_GLOBAL_AVG_POOL: return int8 ? 8 : 6;
    case CNN_LAYER_RESIDUAL_BEGIN: case CNN_LAYER_RESIDUAL_END: return int8 ? -1 : 7;  /* float only */
    default: return -1;                                                                /* flatten, dropout */
    }
}

/* The body of the file: arrays, kernels, and NAME_predict. */
CNN__PRIVATE void cnn__export_body(FILE *out, const cnn_model *model, const cnn_quantized *q, const char *name,
                                   size_t flash, size_t ram)
{
    int l, used[16] = {0}, last = model->layer_count - 1, softmax = model->layers[last].desc.type == CNN_LAYER_SOFTMAX, swaps = 0;
    int depth = 0, depths, d;
    size_t largest = cnn_shape_count(model->input), classes = cnn_shape_count(model->layers[last].out), written = 0, skip[CNN_MAX_LAYERS];
    char text[160];
    for (l = 0; l < model->layer_count; l++)
        if (cnn_shape_count(model->layers[l].out) > largest) largest = cnn_shape_count(model->layers[l].out);
    depths = cnn__export_skips(model, skip);
    /* the arrays */
    for (l = 0; l < model->layer_count; l++) {
        const cnn_layer *layer = &model->layers[l];
        cnn__array a;
        memset(&a, 0, sizeof a);
        if (!q && layer->weight_count) {
            const int batch_norm = layer->desc.type == CNN_LAYER_BATCH_NORM;
            cnn__describe_layer(layer, text, sizeof text);
            fprintf(out, "\n/* layer %d, %s%s */\n", l, text, batch_norm ? ": y = x * scale + shift, a channel each" : "");
            a.layer = layer;
            written += cnn__emit_array(out, name, batch_norm ? "scale" : "weight", l, &a, layer->weight_count);
            a.bias = 1;
            written += cnn__emit_array(out, name, batch_norm ? "shift" : "bias", l, &a, layer->bias_count);
        }
        if (q && q->quant[l].weight) {
            size_t outputs = layer->bias_count;
            cnn__describe_layer(layer, text, sizeof text);
            fprintf(out, "\n/* layer %d, %s%s */\n", l, text, cnn__folded_batch_norm(model, l) ? ", with the batch norm after it folded in" : "");
            a.bytes = q->quant[l].weight;
            written += cnn__emit_array(out, name, "weight", l, &a, layer->weight_count);
            a.bytes = NULL; a.words = q->quant[l].bias;
            written += cnn__emit_array(out, name, "bias", l, &a, outputs);
            a.words = q->quant[l].multiplier;
            written += cnn__emit_array(out, name, "multiplier", l, &a, outputs);
            a.words = NULL; a.small = q->quant[l].shift;
            written += cnn__emit_array(out, name, "shift", l, &a, outputs);
        }
        if (q && q->quant[l].table) {
            cnn__describe_layer(layer, text, sizeof text);
            fprintf(out, "\n/* layer %d, %s: the output code of each input code, from -128 */\n", l, text);
            memset(&a, 0, sizeof a);
            a.bytes = q->quant[l].table;
            written += cnn__emit_array(out, name, "table", l, &a, 256);
        }
    }
    CNN_ASSERT(written == flash);
    (void)written, (void)flash; /* for the assert alone: unused under NDEBUG */
    fprintf(out, "\n/* the activations of one sample, in turn: %lu bytes in all */\nstatic %s %s_buffer[2][%lu];\n", (unsigned long)ram,
            q ? "signed char" : "float", name, (unsigned long)largest);
    for (d = 0; d < depths; d++)
        fprintf(out, "static float %s_skip_%d[%lu];  /* the input of a residual block %d deep, for its end */\n", name, d,
                (unsigned long)skip[d], d + 1);
    fprintf(out, "\n");
    /* the kernels it needs */
    if (q && !used[0]++) cnn__emit(out, name, cnn__c_int8_kernels[0]);
    for (l = 0; l < model->layer_count; l++) {
        const cnn_layer *layer = &model->layers[l];
        int k = cnn__export_kernel(layer, q != NULL);
        if (!q && layer->desc.type == CNN_LAYER_RESIDUAL_END && layer->weight_count && !used[0]++)  /* the projection */
            cnn__emit(out, name, cnn__c_float_kernels[0]);
        if (q && (k == 2 || k == 3 || k == 8) && !used[1]++) cnn__emit(out, name, cnn__c_int8_kernels[1]);
        if (k >= 0 && !used[k]++) cnn__emit(out, name, q ? cnn__c_int8_kernels[k] : cnn__c_float_kernels[k]);
        swaps += layer->desc.type == CNN_LAYER_CONV2D || layer->desc.type == CNN_LAYER_DENSE || layer->desc.type == CNN_LAYER_MAX_POOL ||
                 layer->desc.type == CNN_LAYER_AVG_POOL || layer->desc.type == CNN_LAYER_GLOBAL_AVG_POOL ||
                 (layer->desc.type == CNN_LAYER_RESIDUAL_END && layer->weight_count);
    }
    /* NAME_predict: the layers in order, each writing the other buffer or its own */
    fprintf(out, "int %s_predict(const float *input, float *probabilities)\n{\n", name);
    if (swaps) fprintf(out, "    %s *x = %s_buffer[0], *y = %s_buffer[1], *swap;\n", q ? "signed char" : "float", name, name);
    else fprintf(out, "    %s *x = %s_buffer[0];\n", q ? "signed char" : "float", name);
    fprintf(out, "    int i, best = 0;\n");
    if (!q) fprintf(out, "    for (i = 0; i < %lu; i++) x[i] = input[i];\n", (unsigned long)cnn_shape_count(model->input));
    else {
        cnn__c_float(text, q->input_scale);
        fprintf(out, "    for (i = 0; i < %lu; i++) x[i] = %s_quantize(input[i], %s, %d);\n", (unsigned long)cnn_shape_count(model->input), name,
                text, q->input_zero);
    }
    for (l = 0; l < model->layer_count; l++) {
        const cnn_layer *layer = &model->layers[l];
        const cnn_layer_desc *d = &layer->desc;
        const int count = (int)cnn_shape_count(layer->out), in_zero = q ? (l ? q->quant[l - 1].out_zero : q->input_zero) : 0;
        int swaps = 1;
        cnn__describe_layer(layer, text, sizeof text);
        fprintf(out, "    /* %d %s */\n", l, text);
        switch (d->type) {
        case CNN_LAYER_CONV2D:
            if (!q) fprintf(out, "    %s_conv2d(x, y, %s_weight_%d, %s_bias_%d,", name, name, l, name, l);
            else fprintf(out, "    %s_conv2d(x, y, %s_weight_%d, %s_bias_%d, %s_multiplier_%d, %s_shift_%d, %d, %d,", name, name, l, name, l, name, l,
                         name, l, in_zero, q->quant[l].out_zero);
            fprintf(out, " %d, %d, %d, %d, %d, %d, %d, %d, %d);\n", layer->in.c, layer->in.h, layer->in.w, d->units, d->kernel, d->stride,
                    d->padding, layer->out.h, layer->out.w);
            break;
        case CNN_LAYER_DENSE:
            if (!q) fprintf(out, "    %s_dense(x, y, %s_weight_%d, %s_bias_%d,", name, name, l, name, l);
            else fprintf(out, "    %s_dense(x, y, %s_weight_%d, %s_bias_%d, %s_multiplier_%d, %s_shift_%d, %d, %d,", name, name, l, name, l, name, l,
                         name, l, in_zero, q->quant[l].out_zero);
            fprintf(out, " %lu, %d);\n", (unsigned long)cnn_shape_count(layer->in), d->units);
            break;
        case CNN_LAYER_MAX_POOL: case CNN_LAYER_AVG_POOL:
            fprintf(out, "    %s_pool(x, y, %d,", name, d->type == CNN_LAYER_MAX_POOL);
            if (q) fprintf(out, " %d,", in_zero);
            fprintf(out, " %d, %d, %d, %d, %d, %d, %d, %d);\n", layer->in.c, layer->in.h, layer->in.w, d->kernel, d->stride, d->padding,
                    layer->out.h, layer->out.w);
            break;
        case CNN_LAYER_GLOBAL_AVG_POOL:
            fprintf(out, "    %s_mean(x, y, %d, %d", name, layer->in.c, layer->in.h * layer->in.w);
            if (q) fprintf(out, ", %d, %d, %ld, %d", in_zero, q->quant[l].out_zero, (long)q->quant[l].multiplier[0], q->quant[l].shift[0]);
            fprintf(out, ");\n");
            break;
        case CNN_LAYER_BATCH_NORM:
            swaps = 0;
            if (q) fprintf(out, "    /* (folded into layer %d) */\n", l - 1);
            else fprintf(out, "    %s_batch_norm(x, %s_scale_%d, %s_shift_%d, %d, %d);\n", name, name, l, name, l, layer->in.c,
                         layer->in.h * layer->in.w);
            break;
        case CNN_LAYER_RESIDUAL_BEGIN:  /* float only: cnn_quantize refuses residual blocks */
            swaps = 0;
            fprintf(out, "    %s_copy(%s_skip_%d, x, %d);\n", name, name, depth++, count);
            break;
        case CNN_LAYER_RESIDUAL_END:
            depth--;
            if (!layer->weight_count) {
                swaps = 0;
                fprintf(out, "    %s_add(x, %s_skip_%d, %d);\n", name, name, depth, count);
            } else {  /* y = the 1x1 projection of the block's input, + x */
                const cnn_shape in = model->layers[layer->block_begin].in;
                fprintf(out, "    %s_conv2d(%s_skip_%d, y, %s_weight_%d, %s_bias_%d, %d, %d, %d, %d, 1, %d, 0, %d, %d);\n", name, name, depth,
                        name, l, name, l, in.c, in.h, in.w, layer->out.c, d->stride, layer->out.h, layer->out.w);
                fprintf(out, "    %s_add(y, x, %d);\n", name, count);
            }
            break;
        case CNN_LAYER_SOFTMAX: swaps = 0; break;  /* below, after the class */
        case CNN_LAYER_FLATTEN: case CNN_LAYER_DROPOUT: swaps = 0; break;
        default:
            swaps = 0;
            if (q && d->type == CNN_LAYER_RELU) fprintf(out, "    %s_relu(x, %d, %d);\n", name, count, in_zero);
            else if (q) fprintf(out, "    %s_lookup(x, %d, %s_table_%d);\n", name, count, name, l);
            else {
                char alpha[48];
                cnn__c_float(alpha, d->type == CNN_LAYER_LEAKY_RELU ? d->alpha : 0.0f);
                fprintf(out, "    %s_activate(x, %d, %d, %s);\n", name, count,
                        d->type == CNN_LAYER_RELU ? 0 : d->type == CNN_LAYER_LEAKY_RELU ? 1 : d->type == CNN_LAYER_SIGMOID ? 2 : 3, alpha);
            }
            break;
        }
        if (swaps) fprintf(out, "    swap = x, x = y, y = swap;\n");
    }
    /* float: the class is the first largest probability, as cnn_model_predict's; int8: the first largest code */
    if (!q && softmax) fprintf(out, "    %s_softmax(x, %lu);\n", name, (unsigned long)classes);
    fprintf(out, "    for (i = 1; i < %lu; i++)\n        if (x[i] > x[best]) best = i;\n", (unsigned long)classes);
    fprintf(out, "    if (probabilities) {\n");
    if (!q) fprintf(out, "        for (i = 0; i < %lu; i++) probabilities[i] = x[i];\n", (unsigned long)classes);
    else {
        cnn__c_float(text, q->quant[last].out_scale);
        fprintf(out, "        for (i = 0; i < %lu; i++) probabilities[i] = %s * (float)(x[i] - %d);\n", (unsigned long)classes, text,
                q->quant[last].out_zero);
        if (softmax) fprintf(out, "        %s_softmax(probabilities, %lu);\n", name, (unsigned long)classes);
    }
    fprintf(out, "    }\n    return best;\n}\n");
}

CNNDEF cnn_result cnn_model_export_c(cnn_model *model, const char *path, const cnn_export_desc *desc)
{
    cnn_export_desc d;
    cnn_quantized q;
    cnn__atomic_file out;
    char text[160], upper[48];
    size_t flash = 0, ram = 0, skip_ram = 0, i;
    int l, ok = 1;
    cnn_result result;
    if ((result = cnn__check_built(model, "cnn_model_export_c")) != CNN_OK) return result;
    if (!path || !*path) return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_model_export_c: no file name given");
    if (desc) d = *desc;
    else memset(&d, 0, sizeof d);
    if (!d.name) d.name = "model";  /* the defaults, in one place */
    if (d.int8 && d.calibration_rows == 0) d.calibration_rows = 1000;
    if (!cnn__is_identifier(d.name))
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "cnn_model_export_c: name '%.40s' is not a C identifier (letters, digits and _, starting with a letter, at most 40)", d.name);
    if (d.int8 && !d.calibration)
        return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_model_export_c: an int8 export needs calibration images");
    for (l = 0; l < model->layer_count; l++) {
        cnn_layer_type type = model->layers[l].desc.type;
        if (type <= CNN_LAYER_NONE || type >= CNN_LAYER_TYPE_COUNT)  /* a layer type this writer does not know */
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_model_export_c: layer %d (%s) cannot be exported",
                             l, cnn_layer_type_name(type));
        if (type == CNN_LAYER_SOFTMAX && l + 1 < model->layer_count)
            return cnn__fail(&model->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "cnn_model_export_c: layer %d is a softmax; the export has one only as the last layer", l);
    }
    for (i = 0; i < model->param_count; i++)
        if (!cnn__is_finite(model->params[i]))
            return cnn__fail(&model->error, CNN_ERROR_NOT_FINITE, 0, 0, -1, "cnn_model_export_c: parameter %lu is not a finite number",
                             (unsigned long)i);
    for (l = 0; l < model->layer_count; l++)  /* a batch norm's running estimates, and the scale and shift they give */
        for (i = 0; model->layers[l].desc.type == CNN_LAYER_BATCH_NORM && i < (size_t)model->layers[l].in.c; i++)
            if (!cnn__is_finite(model->layers[l].running_mean[i]) || !cnn__is_finite(model->layers[l].running_var[i]) ||
                !cnn__is_finite(cnn__batch_norm_eval(&model->layers[l], (int)i, 0)) ||
                !cnn__is_finite(cnn__batch_norm_eval(&model->layers[l], (int)i, 1)))
                return cnn__fail(&model->error, CNN_ERROR_NOT_FINITE, 0, 0, -1,
                                 "cnn_model_export_c: layer %d (batch_norm), channel %lu: its running mean %g and variance %g give no "
                                 "finite scale and shift", l, (unsigned long)i, (double)model->layers[l].running_mean[i],
                                 (double)model->layers[l].running_var[i]);
    memset(&q, 0, sizeof q);
    if (d.int8 && (result = cnn_quantize(&q, model, d.calibration, d.calibration_rows)) != CNN_OK) {
        model->error = q.error;
        return result;
    }
    for (i = 0; d.name[i]; i++) upper[i] = d.name[i] >= 'a' && d.name[i] <= 'z' ? (char)(d.name[i] - 'a' + 'A') : d.name[i];
    upper[i] = '\0';
    if ((result = cnn__atomic_open(&out, path, &model->error)) != CNN_OK) {
        cnn_quantized_free(&q);
        return result;
    }
    fprintf(out.file, "/* %s.c - a neural network exported by cnn.h %d.%d.%d (cnn_model_export_c), %s.\n\n", d.name, CNN_VERSION_MAJOR,
            CNN_VERSION_MINOR, CNN_VERSION_PATCH, d.int8 ? "int8 (the TensorFlow Lite scheme)" : "float32");
    fprintf(out.file, "   input (%d, %d, %d)\n", model->input.c, model->input.h, model->input.w);
    for (l = 0; l < model->layer_count; l++) {
        cnn__describe_layer(&model->layers[l], text, sizeof text);
        fprintf(out.file, "   %2d %s\n", l, text);
    }
    cnn__export_sizes(model, d.int8 ? &q : NULL, &flash, &ram, &skip_ram);
    fprintf(out.file, "\n   flash: %lu bytes of weights%s; RAM: %lu bytes (two buffers of activations", (unsigned long)flash,
            d.int8 ? ", scales and tables" : "", (unsigned long)ram);
    if (skip_ram) fprintf(out.file, ",\n   and %lu of them the inputs residual blocks keep for their ends", (unsigned long)skip_ram);
    fprintf(out.file, ").\n\n");
    fprintf(out.file,
            "   int %s_predict(const float *input, float *probabilities) takes one input of\n"
            "   %s_INPUT_SIZE floats, (C, H, W) with pixels in [0, 1] as cnn_model_predict\n"
            "   takes it, returns the most probable class and, unless probabilities is NULL,\n"
            "   writes %s_CLASSES values there. It works in static buffers: not reentrant.\n"
            "   It allocates nothing and prints nothing; it needs expf only (define\n"
            "   %s_EXPF to use another) and a 32-bit int. Compiles as C99 or C++,\n"
            "   freestanding. */\n",
            d.name, upper, upper, upper);
    if (d.int8)
        fprintf(out.file, "\n/* Codes: an int8 q stands for scale x (q - zero). Calibrated on %d images. */\n", q.calibration_rows);
    fprintf(out.file, "#include <stdint.h>\n\n#define %s_INPUT_SIZE %lu\n#define %s_CLASSES %lu\n\n", upper,
            (unsigned long)cnn_shape_count(model->input), upper, (unsigned long)cnn_shape_count(model->layers[model->layer_count - 1].out));
    cnn__emit(out.file, d.name,
              "#ifdef __cplusplus\nextern \"C\" {\n#endif\n"
              "int @_predict(const float *input, float *probabilities);\n"
              "#ifndef $_EXPF\n#define $_EXPF expf\nfloat expf(float);\n#endif\n"
              "#ifdef __cplusplus\n}\n#endif\n");
    cnn__export_body(out.file, model, d.int8 ? &q : NULL, d.name, flash, ram);
    cnn_quantized_free(&q);
    ok &= !ferror(out.file);
    return cnn__atomic_close(&out, path, ok, &model->error);
}

/* ========================================================================
   FAST
   ========================================================================

   Everything above is the whole library, each layer the plain loops of its
   formula. This section makes it fast without changing the formulas: it
   holds a fast twin of the layers that take the time (conv2d, dense, the
   four activations - ReLU and LeakyReLU in vectors, sigmoid and tanh on
   threads only - max pooling, batch normalization, a residual block's
   projection, dropout in training, the optimisers), and
   the model runs a twin where there is one (cnn__layer_forward_fast and
   its companions, at the end of this section). CNN_NO_FAST leaves it out.

   How it is fast:
   - Lowering. A convolution becomes one matrix multiply per sample
     (im2col): every K x K window of x is copied into a column of a matrix
     col (C*K*K, OH*OW); then y = w (OC, C*K*K) @ col, dw += dy @ col^T,
     dcol = w^T @ dy, and dcol is folded back onto the windows it came
     from (col2im). A dense layer is a multiply as it stands.
   - One multiply, written as BLAS libraries write theirs (below): operands
     packed into panels that a 6 x 16 register kernel reads front to back,
     built three times (see "instruction sets"): with fused multiply-adds
     in AVX-512's 16-float registers (6 x 32 tiles) or AVX2's 8-float ones,
     and without, for any other CPU; the model picks one at build.
   - Vectors of 8 floats for the elementwise loops (ReLU, LeakyReLU, max
     pooling, Adam's check; Adam's update 4 at a time, for _mm_sqrt_ps),
     stated in the code through GCC's and clang's vector extensions
     rather than left to the auto-vectoriser; on x86-64 Linux the hot
     functions are compiled twice, for SSE2 and for AVX2, and the loader
     picks the one the CPU runs.
   - Threads (OpenMP, when compiled with -fopenmp) over samples, tiles,
     panels, planes or blocks of values.

   What it keeps: every sum is added in one fixed order, whatever the
   tiling or the number of threads, so results are bit-identical for any
   number of threads. The twins of dense, the activations, max pooling,
   dropout and the optimisers even add in the plain loops' order, and give
   their bits; so does conv2d's forward pass, but its gradients add in
   other orders (samples in chunks, windows through col2im), and batch
   normalization sums each plane in vector lanes: those agree with the
   plain loops to rounding. With the fused multiply-add kernels (avx2,
   avx512) the multiplies of conv2d and dense round once per product where
   the plain loops round twice, so their forward passes too agree to
   rounding only. tests/test_fast_paths.c compares every twin with its
   plain twin on many shapes, under each kernel the machine has. The
   AVX2 copies of the other hot loops (CNN__HOT) are wider vectors only,
   never fused multiply-add, so both compiled versions round alike. */
#ifndef CNN_NO_FAST

#ifdef _OPENMP
#include <omp.h>
#endif
#if (defined(__GNUC__) || defined(__clang__)) && defined(__SSE__)
#include <xmmintrin.h> /* _mm_sqrt_ps, for Adam */
#endif
#include <stdlib.h> /* getenv: CNN_MAX_ISA */

/* CNN__INLINE marks small helpers of the hot loops: GCC will not inline a
   plain function into one compiled for another target (see CNN__HOT)
   unless told to, and a call per short row costs more than the row. */
#if defined(__GNUC__) || defined(__clang__)
#define CNN__INLINE static inline __attribute__((always_inline, unused))
#define CNN__RESTRICT __restrict__
#elif defined(_MSC_VER)
#define CNN__INLINE static
#define CNN__RESTRICT __restrict
#else
#define CNN__INLINE static
#define CNN__RESTRICT
#endif

/* The hot loops are compiled twice on x86-64 with GCC or clang: once for the
   baseline (SSE2) and once for AVX2, and the loader picks the one the CPU
   runs (function multi-versioning). Define CNN_NO_CLONES to build one
   version. */
#if !defined(CNN_NO_CLONES) && defined(__x86_64__) && defined(__linux__) && \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8) || (defined(__clang__) && __clang_major__ >= 14))
#define CNN__HOT __attribute__((target_clones("avx2", "default")))
#else
#define CNN__HOT
#endif

/* ---------------------------------------------------------------- instruction sets

   The multiply's kernel (below) comes in three builds, and a model picks
   one at cnn_model_build, the widest the CPU runs:
   - avx512: AVX-512F with fused multiply-add, tiles of 6 x 32 in 12
     registers of 16 floats;
   - avx2: AVX2 with fused multiply-add, tiles of 6 x 16 in 12 registers of
     8 floats;
   - sse2 (on other CPUs "generic"): the vector code below as the compiler
     builds it for the baseline, a multiply and then an add.
   The environment variable CNN_MAX_ISA (sse2, avx2 or avx512) caps the
   choice, so that the tests can run every kernel the machine has and a
   user can compare them; another value makes cnn_model_build fail.
   A fused multiply-add rounds a * b + c once where a multiply and an add
   round twice, so the sse2 kernel's sums differ from the other two (and
   from the plain loops) in their last bits. The avx2 and avx512 kernels
   add the same products in the same order with the same rounding: their
   results are the same bits. The choice is the model's, fixed at build,
   so results stay bit-identical for any number of threads.
   The dispatch needs GCC 8 or clang 14 on x86-64 (their target attribute
   and __builtin_cpu_supports); other compilers and CPUs use the generic
   build. */
enum { CNN__ISA_GENERIC, CNN__ISA_AVX2, CNN__ISA_AVX512 };

#if defined(__x86_64__) && \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8) || (defined(__clang__) && __clang_major__ >= 14))
#define CNN__DISPATCH 1
#include <immintrin.h>
#define CNN__TARGET_AVX2 __attribute__((target("avx2,fma")))
#define CNN__TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define CNN__GENERIC_NAME "sse2"
#else
#define CNN__DISPATCH 0
#define CNN__GENERIC_NAME "generic"
#endif

CNN__PRIVATE const char *cnn__isa_name(int isa)
{
    return isa == CNN__ISA_AVX512 ? "avx512" : isa == CNN__ISA_AVX2 ? "avx2" : CNN__GENERIC_NAME;
}

/* The widest instruction set the CPU runs, capped by CNN_MAX_ISA. */
CNN__PRIVATE cnn_result cnn__choose_isa(cnn_error *error, int *isa)
{
    const char *cap = getenv("CNN_MAX_ISA");
    int best = CNN__ISA_GENERIC, limit = CNN__ISA_AVX512;
#if CNN__DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = CNN__ISA_AVX2;
    if (best == CNN__ISA_AVX2 && __builtin_cpu_supports("avx512f")) best = CNN__ISA_AVX512;
#endif
    if (cap && *cap) {
        if (!strcmp(cap, "avx512")) limit = CNN__ISA_AVX512;
        else if (!strcmp(cap, "avx2")) limit = CNN__ISA_AVX2;
        else if (!strcmp(cap, "sse2") || !strcmp(cap, "generic")) limit = CNN__ISA_GENERIC;
        else
            return cnn__fail(error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                             "the environment variable CNN_MAX_ISA is '%.40s': expected sse2, avx2 or avx512", cap);
    }
    *isa = best < limit ? best : limit;
    return CNN_OK;
}

/* Vectors of 8 floats that GCC and clang treat as one value: one AVX
   register, or two SSE ones. Arithmetic works lane by lane (v * a with a
   scalar a multiplies every lane by a), and a comparison gives a vector of
   ints, -1 where it holds and 0 where not. The hot loops use them to state
   the vector code themselves instead of hoping the compiler finds it: at
   -O2, GCC 12 vectorises only loops it needs no extra code for, and an
   activation like "x < 0 ? alpha * x : x" never qualifies (it may not
   compute alpha * x for lanes that do not need it, in case that traps).
   Other compilers do without: each vector loop hands what it leaves to the
   plain loop, which then does it all. */
#if defined(__GNUC__) || defined(__clang__)
#define CNN__VECTORS 1
typedef float cnn__f8 __attribute__((vector_size(32)));
typedef int cnn__i8 __attribute__((vector_size(32)));

/* Macros rather than functions: passing a vector by value to a function
   compiled without AVX changes the ABI, and GCC warns about it. */
#define CNN__LOAD8(v, from) memcpy(&(v), (from), sizeof(cnn__f8)) /* any alignment */
#define CNN__STORE8(to, v) memcpy((to), &(v), sizeof(cnn__f8))
/* the lanes of a where mask is -1, of b where it is 0 */
#define CNN__SELECT8(mask, a, b) ((cnn__f8)(((mask) & (cnn__i8)(a)) | (~(mask) & (cnn__i8)(b))))
#else
#define CNN__VECTORS 0
#endif

/* __builtin_shufflevector(a, b, i0, .., i7) picks lanes of a (0..7) and b
   (8..15): the 2 x 2 max pool and the transposing pack use it. */
#if CNN__VECTORS && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define CNN__SHUFFLES 1
#endif
#endif

/* Threads, when compiled with OpenMP. Work is split so that every sum is
   still added in one fixed order: results do not depend on the number of
   threads, nor on which thread takes which piece. So the pieces (tiles of
   a multiply, samples, chunks of samples, planes, blocks of values) are
   handed out as threads come free, in runs that shrink towards the end
   of the loop (schedule(guided)), rather than cut into one equal share
   per thread: on a machine where another program holds a core, the
   thread that shares it takes fewer pieces instead of holding the others
   up at the end of every loop. CNN__PARALLEL_FOR uses
   a variable named threads from its scope. */
#ifdef _OPENMP
#define CNN__PARALLEL_FOR _Pragma("omp parallel for num_threads(threads) schedule(guided)")
#define CNN__THREAD_ID() omp_get_thread_num()
#define CNN__MAX_THREADS() omp_get_max_threads()
#else
#define CNN__PARALLEL_FOR (void)threads;
#define CNN__THREAD_ID() 0
#define CNN__MAX_THREADS() 1
#endif

/* Working memory of the fast conv2d and dense layers, one block cut in two:
   shared (one layer at a time: packed weights, per-chunk gradient sums) and
   one slice of per_thread floats for each thread (im2col and packed
   buffers). */
typedef struct cnn__workspace {
    float *shared;
    float *per_thread;
    size_t per_thread_size;
    int threads;
    int isa;      /* the multiply's kernel: CNN__ISA_GENERIC, _AVX2 or _AVX512 */
} cnn__workspace;

/* The thread tuner's record (see "the thread tuner"), and its step counts. */
enum { CNN__TUNER_TRIAL = 2, CNN__TUNER_FIRST_PERIOD = 4, CNN__TUNER_LAST_PERIOD = 1024, CNN__TUNER_GROWTH = 4,
       CNN__TUNER_BUDGET_PERCENT = 2, CNN__TUNER_GAIN_PERCENT = 10 };
typedef struct cnn__thread_tuner {
    long step;             /* training steps, counted from the start of the period */
    long period;           /* steps in this period, of which the last CNN__TUNER_TRIAL are the trial */
    int chosen;            /* the thread count of the period's other steps */
    int last_threads;      /* the threads of the step before (0: no step yet) */
    double seconds[2];     /* this period's timed steps, seconds per sample summed: on one thread, on all */
    int timed[2];          /* and how many of them */
} cnn__thread_tuner;

/* What a built model keeps for this section (model->fast), in one
   allocation made by cnn__fast_build. */
struct cnn__fast {
    cnn__workspace work;       /* work.threads: this step's threads (see the thread tuner) */
    cnn__thread_tuner tuner;
    int *shifts[CNN_MAX_LAYERS]; /* conv2d with stride 1: (C*K*K) where each window
                                    row starts in the padded input; else NULL */
};

/* ---------------------------------------------------------------- matrix multiply

   C (M x N) += A (M x K) @ B (K x N). This one routine carries the conv and
   dense layers. It works as GotoBLAS and BLIS do, in three steps:
   1. pack: A is copied into panels of CNN__MR rows and B into panels of
      CNN__NR columns, each laid out in the order the kernel reads it, so
      that the kernel walks memory front to back. A panel at an edge is
      padded with zeros. Packing reads through a row and a column stride, so
      a transposed operand (x^T, w^T, dy^T in the layers) needs no
      transpose of its own. An operand stored row by row can also be read
      where it lies: B 16 floats of a row at a time (only a last, narrower
      panel is packed), A one float from each of 6 rows at a time. That
      saves a copy where the operand is used only a few times, as col and
      dy in conv2d and the weights of a dense layer at inference.
   2. kernel: one A panel times one B panel is a CNN__MR x CNN__NR tile of C
      (6 x 16), summed over k in 12 vector registers of 8 floats: each value
      of B loaded serves 6 rows, each value of A 16 columns.
   3. the tile is added to C (or stored in it, where C is not yet summed
      into), only the part that lies inside C.
   Every element of C sums its K products in the order k = 0, 1, ..., K-1,
   starting from zero, and that sum is then added to C: results never
   depend on the tiling or on the number of threads. */
enum { CNN__MR = 6, CNN__NR = 16 };

/* Floats of a packed A (M x K), and of a packed B (K x N). */
CNN__PRIVATE size_t cnn__packed_a_size(int M, int K)
{
    return (size_t)((M + CNN__MR - 1) / CNN__MR) * CNN__MR * (size_t)K;
}

CNN__PRIVATE size_t cnn__packed_b_size(int K, int N)
{
    return (size_t)((N + CNN__NR - 1) / CNN__NR) * CNN__NR * (size_t)K;
}

/* packed = the M x K matrix X, where X[i][k] is x[i * row_stride +
   k * col_stride], as panels of `width` rows, each stored (K, width): row
   p*width + r, column k goes to packed[(p*K + k) * width + r], and rows past
   M are zeros. A is packed with width MR; B (K x N) is packed as its
   transpose (N x K) with width NR, which gives panels of NR columns. */
#ifdef CNN__SHUFFLES
/* to[j * NR + i] = w[i][j] for i, j < 8: an 8 x 8 block transposed in three
   rounds of shuffles. t pairs rows 2m and 2m+1 lane by lane; u gathers
   lanes j and j + 4 of 4 rows; the last round joins the halves of 8 rows. */
CNN__INLINE void cnn__transpose8(const cnn__f8 *w, float *to)
{
    cnn__f8 t0, t1, t2, t3, t4, t5, t6, t7, u0, u1, u2, u3, u4, u5, u6, u7, column;
    t0 = __builtin_shufflevector(w[0], w[1], 0, 8, 1, 9, 4, 12, 5, 13);
    t1 = __builtin_shufflevector(w[0], w[1], 2, 10, 3, 11, 6, 14, 7, 15);
    t2 = __builtin_shufflevector(w[2], w[3], 0, 8, 1, 9, 4, 12, 5, 13);
    t3 = __builtin_shufflevector(w[2], w[3], 2, 10, 3, 11, 6, 14, 7, 15);
    t4 = __builtin_shufflevector(w[4], w[5], 0, 8, 1, 9, 4, 12, 5, 13);
    t5 = __builtin_shufflevector(w[4], w[5], 2, 10, 3, 11, 6, 14, 7, 15);
    t6 = __builtin_shufflevector(w[6], w[7], 0, 8, 1, 9, 4, 12, 5, 13);
    t7 = __builtin_shufflevector(w[6], w[7], 2, 10, 3, 11, 6, 14, 7, 15);
    u0 = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);   /* lanes 0 and 4 of rows 0..3 */
    u1 = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15); /* lanes 1 and 5 */
    u2 = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);   /* lanes 2 and 6 */
    u3 = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15); /* lanes 3 and 7 */
    u4 = __builtin_shufflevector(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13);   /* the same of rows 4..7 */
    u5 = __builtin_shufflevector(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
    u6 = __builtin_shufflevector(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13);
    u7 = __builtin_shufflevector(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
    column = __builtin_shufflevector(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11); CNN__STORE8(to, column);
    column = __builtin_shufflevector(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11); CNN__STORE8(to + CNN__NR, column);
    column = __builtin_shufflevector(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11); CNN__STORE8(to + 2 * CNN__NR, column);
    column = __builtin_shufflevector(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11); CNN__STORE8(to + 3 * CNN__NR, column);
    column = __builtin_shufflevector(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15); CNN__STORE8(to + 4 * CNN__NR, column);
    column = __builtin_shufflevector(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15); CNN__STORE8(to + 5 * CNN__NR, column);
    column = __builtin_shufflevector(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15); CNN__STORE8(to + 6 * CNN__NR, column);
    column = __builtin_shufflevector(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15); CNN__STORE8(to + 7 * CNN__NR, column);
}

/* One panel of NR rows of X whose rows are runs (col_stride 1), columns
   k0 .. k0 + 7: the rows are read 8 floats at a time and transposed, instead
   of gathering each column's 16 values one at a time from rows far apart.
   Rows past `rows` are zeros. */
CNN__INLINE void cnn__pack_transposed8(int rows, int k0, const float *x, size_t row_stride, float *packed)
{
    const cnn__f8 zero = {0};
    cnn__f8 v[CNN__NR];
    int r;
    for (r = 0; r < CNN__NR; r++) {
        if (r < rows) CNN__LOAD8(v[r], x + (size_t)r * row_stride + k0);
        else v[r] = zero;
    }
    cnn__transpose8(v, packed + (size_t)k0 * CNN__NR);
    if (rows > 8) {
        cnn__transpose8(v + 8, packed + (size_t)k0 * CNN__NR + 8);
        return;
    }
    for (r = 0; r < 8; r++) CNN__STORE8(packed + (size_t)(k0 + r) * CNN__NR + 8, zero);
}
#endif

/* one panel: rows i0 .. i0 + width - 1 of X */
CNN__HOT static void cnn__pack_panel(int M, int K, int width, int i0, const float *x, size_t row_stride, size_t col_stride,
                                     float *packed)
{
    const int rows = M - i0 < width ? M - i0 : width;
    int k = 0, r;
#ifdef CNN__SHUFFLES
    if (width == CNN__NR && col_stride == 1 && row_stride != 1) {
        for (; k + 8 <= K; k += 8) cnn__pack_transposed8(rows, k, x + (size_t)i0 * row_stride, row_stride, packed);
        packed += (size_t)k * CNN__NR;
    }
#endif
    for (; k < K; k++) {
        const float *column = x + (size_t)i0 * row_stride + (size_t)k * col_stride;
        if (row_stride == 1 && rows == width) {
            /* a size the compiler knows turns the copy into a few vector
               moves instead of a call to memcpy for 24 or 64 bytes */
            if (width == CNN__NR) memcpy(packed, column, CNN__NR * sizeof(float));
            else memcpy(packed, column, (size_t)width * sizeof(float));
        } else {
            for (r = 0; r < rows; r++) packed[r] = column[(size_t)r * row_stride];
            for (; r < width; r++) packed[r] = 0.0f;
        }
        packed += width;
    }
}

/* Threads take whole panels, when there are enough floats to share (a
   dense layer's weights, every step). On one thread there is no OpenMP
   region at all: even a region of one thread costs about a microsecond,
   and the conv layers pack for every sample. */
CNN__PRIVATE void cnn__pack(int M, int K, int width, const float *x, size_t row_stride, size_t col_stride, float *packed,
                            int threads)
{
    const int panels = (M + width - 1) / width;
    int panel;
    if (threads > 1 && (double)M * K >= 32768.0) {
        CNN__PARALLEL_FOR
        for (panel = 0; panel < panels; panel++)
            cnn__pack_panel(M, K, width, panel * width, x, row_stride, col_stride, packed + (size_t)panel * width * (size_t)K);
        return;
    }
    for (panel = 0; panel < panels; panel++)
        cnn__pack_panel(M, K, width, panel * width, x, row_stride, col_stride, packed + (size_t)panel * width * (size_t)K);
}

/* A (M x K), A[i][k] at a[i * row_stride + k * col_stride], in panels of MR rows */
CNN__PRIVATE void cnn__pack_a(int M, int K, const float *a, size_t row_stride, size_t col_stride, float *packed, int threads)
{
    cnn__pack(M, K, CNN__MR, a, row_stride, col_stride, packed, threads);
}

/* B (K x N), B[k][j] at b[k * row_stride + j * col_stride], in panels of NR columns */
CNN__PRIVATE void cnn__pack_b(int K, int N, const float *b, size_t row_stride, size_t col_stride, float *packed, int threads)
{
    cnn__pack(N, K, CNN__NR, b, col_stride, row_stride, packed, threads);
}

/* C (rows x cols, at most MR x NR) += one A panel (MR x K) @ one B panel
   (K x NR), or = when accumulate is 0 (then C need not be zeroed first:
   the sum starts from +0, so it is never -0, and 0 + sum is sum to the
   bit). A[r][k] is at a[r * a_row + k * a_step] (a_row = 1 and
   a_step = MR for a packed panel); row k of B is 16 floats at
   b + k * b_step, or at b + b_rows[k] when b_rows is not NULL. (Plain
   static: clang refuses target_clones together with the unused attribute,
   and the multiply always uses this function.) */
/* The part of a kernel's finished tile (width floats a row) that lies
   inside C, rows x cols of it, stored into C or added to it: the edge
   tiles of every kernel below, whose full tiles take vector stores. */
CNN__INLINE void cnn__tile_to_c(const float *tile, int width, float *C, int ldc, int rows, int cols, int accumulate)
{
    int r, c;
    for (r = 0; r < rows; r++, tile += width, C += ldc)
        for (c = 0; c < cols; c++) C[c] = accumulate ? C[c] + tile[c] : tile[c];
}

#if CNN__VECTORS
CNN__HOT static void cnn__gemm_kernel(int K, const float *a, size_t a_row, size_t a_step, const float *b, size_t b_step,
                                      const int *b_rows, float *C, int ldc, int rows, int cols, int accumulate)
{
    const float *a0 = a, *a1 = a0 + a_row, *a2 = a1 + a_row, *a3 = a2 + a_row, *a4 = a3 + a_row, *a5 = a4 + a_row;
    const cnn__f8 zero = {0};
    cnn__f8 acc[CNN__MR][2], b0, b1, c0, c1;
    float tile[CNN__MR][CNN__NR];
    int k, r;
    size_t at = 0;
    for (r = 0; r < CNN__MR; r++) acc[r][0] = acc[r][1] = zero; /* not memset: GCC would clear memory first */
    for (k = 0; k < K; k++, at += a_step) {
        const float *b_row = b_rows ? b + b_rows[k] : b + (size_t)k * b_step;
        CNN__LOAD8(b0, b_row);       /* B[k][0..7] */
        CNN__LOAD8(b1, b_row + 8);   /* B[k][8..15] */
        acc[0][0] += b0 * a0[at]; acc[0][1] += b1 * a0[at];
        acc[1][0] += b0 * a1[at]; acc[1][1] += b1 * a1[at];
        acc[2][0] += b0 * a2[at]; acc[2][1] += b1 * a2[at];
        acc[3][0] += b0 * a3[at]; acc[3][1] += b1 * a3[at];
        acc[4][0] += b0 * a4[at]; acc[4][1] += b1 * a4[at];
        acc[5][0] += b0 * a5[at]; acc[5][1] += b1 * a5[at];
    }
    if (rows == CNN__MR && cols == CNN__NR) {
        for (r = 0; r < CNN__MR; r++, C += ldc) {
            c0 = acc[r][0];
            c1 = acc[r][1];
            if (accumulate) {
                CNN__LOAD8(b0, C);
                CNN__LOAD8(b1, C + 8);
                c0 += b0;
                c1 += b1;
            }
            CNN__STORE8(C, c0);
            CNN__STORE8(C + 8, c1);
        }
        return;
    }
    memcpy(tile, acc, sizeof tile);
    cnn__tile_to_c(tile[0], CNN__NR, C, ldc, rows, cols, accumulate);
}
#else
/* The same with plain floats, for other compilers. */
static void cnn__gemm_kernel(int K, const float *a, size_t a_row, size_t a_step, const float *b, size_t b_step,
                             const int *b_rows, float *C, int ldc, int rows, int cols, int accumulate)
{
    float acc[CNN__MR][CNN__NR];
    int k, r, c;
    memset(acc, 0, sizeof acc);
    for (k = 0; k < K; k++, a += a_step) {
        const float *b_row = b_rows ? b + b_rows[k] : b + (size_t)k * b_step;
        for (r = 0; r < CNN__MR; r++)
            for (c = 0; c < CNN__NR; c++) acc[r][c] += b_row[c] * a[r * a_row];
    }
    cnn__tile_to_c(acc[0], CNN__NR, C, ldc, rows, cols, accumulate);
}
#endif

#if CNN__DISPATCH
/* The same tile with fused multiply-adds, in AVX2's 8-float registers:
   acc = a * b + acc rounded once. Written out row by row, as above, so that
   the 12 sums stay in registers. */
CNN__TARGET_AVX2 static void cnn__gemm_kernel_avx2(int K, const float *a, size_t a_row, size_t a_step, const float *b,
                                                   size_t b_step, const int *b_rows, float *C, int ldc, int rows, int cols,
                                                   int accumulate)
{
    const float *a0 = a, *a1 = a0 + a_row, *a2 = a1 + a_row, *a3 = a2 + a_row, *a4 = a3 + a_row, *a5 = a4 + a_row;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, b0, b1, ak;
    float tile[CNN__MR][CNN__NR];
    int k, r;
    size_t at = 0;
    for (k = 0; k < K; k++, at += a_step) {
        const float *b_row = b_rows ? b + b_rows[k] : b + (size_t)k * b_step;
        b0 = _mm256_loadu_ps(b_row);
        b1 = _mm256_loadu_ps(b_row + 8);
        ak = _mm256_broadcast_ss(a0 + at); c00 = _mm256_fmadd_ps(ak, b0, c00); c01 = _mm256_fmadd_ps(ak, b1, c01);
        ak = _mm256_broadcast_ss(a1 + at); c10 = _mm256_fmadd_ps(ak, b0, c10); c11 = _mm256_fmadd_ps(ak, b1, c11);
        ak = _mm256_broadcast_ss(a2 + at); c20 = _mm256_fmadd_ps(ak, b0, c20); c21 = _mm256_fmadd_ps(ak, b1, c21);
        ak = _mm256_broadcast_ss(a3 + at); c30 = _mm256_fmadd_ps(ak, b0, c30); c31 = _mm256_fmadd_ps(ak, b1, c31);
        ak = _mm256_broadcast_ss(a4 + at); c40 = _mm256_fmadd_ps(ak, b0, c40); c41 = _mm256_fmadd_ps(ak, b1, c41);
        ak = _mm256_broadcast_ss(a5 + at); c50 = _mm256_fmadd_ps(ak, b0, c50); c51 = _mm256_fmadd_ps(ak, b1, c51);
    }
    _mm256_storeu_ps(tile[0], c00); _mm256_storeu_ps(tile[0] + 8, c01);
    _mm256_storeu_ps(tile[1], c10); _mm256_storeu_ps(tile[1] + 8, c11);
    _mm256_storeu_ps(tile[2], c20); _mm256_storeu_ps(tile[2] + 8, c21);
    _mm256_storeu_ps(tile[3], c30); _mm256_storeu_ps(tile[3] + 8, c31);
    _mm256_storeu_ps(tile[4], c40); _mm256_storeu_ps(tile[4] + 8, c41);
    _mm256_storeu_ps(tile[5], c50); _mm256_storeu_ps(tile[5] + 8, c51);
    if (cols < CNN__NR) {
        cnn__tile_to_c(tile[0], CNN__NR, C, ldc, rows, cols, accumulate);
        return;
    }
    for (r = 0; r < rows; r++, C += ldc) {
        __m256 t0 = _mm256_loadu_ps(tile[r]), t1 = _mm256_loadu_ps(tile[r] + 8);
        if (accumulate) {
            t0 = _mm256_add_ps(t0, _mm256_loadu_ps(C));
            t1 = _mm256_add_ps(t1, _mm256_loadu_ps(C + 8));
        }
        _mm256_storeu_ps(C, t0);
        _mm256_storeu_ps(C + 8, t1);
    }
}

/* Two panels of B side by side, a 6 x 32 tile, in AVX-512's 16-float
   registers: 12 sums, and per k two loads of B and six broadcasts of A for
   12 fused multiply-adds of 16 lanes each. Row k of the second panel is at
   b_next + k * b_next_step, or b_next + b_next_rows[k]. cols counts both
   panels' columns (17 to 32). Each element sums the same products in the
   same order as the avx2 kernel, rounded the same way: the same bits. */
CNN__TARGET_AVX512 static void cnn__gemm_kernel_avx512(int K, const float *a, size_t a_row, size_t a_step, const float *b,
                                                       size_t b_step, const int *b_rows, const float *b_next,
                                                       size_t b_next_step, const int *b_next_rows, float *C, int ldc, int rows,
                                                       int cols, int accumulate)
{
    const float *a0 = a, *a1 = a0 + a_row, *a2 = a1 + a_row, *a3 = a2 + a_row, *a4 = a3 + a_row, *a5 = a4 + a_row;
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, b0, b1, ak;
    float tile[CNN__MR][2 * CNN__NR];
    int k, r;
    size_t at = 0;
    for (k = 0; k < K; k++, at += a_step) {
        b0 = _mm512_loadu_ps(b_rows ? b + b_rows[k] : b + (size_t)k * b_step);
        b1 = _mm512_loadu_ps(b_next_rows ? b_next + b_next_rows[k] : b_next + (size_t)k * b_next_step);
        ak = _mm512_set1_ps(a0[at]); c00 = _mm512_fmadd_ps(ak, b0, c00); c01 = _mm512_fmadd_ps(ak, b1, c01);
        ak = _mm512_set1_ps(a1[at]); c10 = _mm512_fmadd_ps(ak, b0, c10); c11 = _mm512_fmadd_ps(ak, b1, c11);
        ak = _mm512_set1_ps(a2[at]); c20 = _mm512_fmadd_ps(ak, b0, c20); c21 = _mm512_fmadd_ps(ak, b1, c21);
        ak = _mm512_set1_ps(a3[at]); c30 = _mm512_fmadd_ps(ak, b0, c30); c31 = _mm512_fmadd_ps(ak, b1, c31);
        ak = _mm512_set1_ps(a4[at]); c40 = _mm512_fmadd_ps(ak, b0, c40); c41 = _mm512_fmadd_ps(ak, b1, c41);
        ak = _mm512_set1_ps(a5[at]); c50 = _mm512_fmadd_ps(ak, b0, c50); c51 = _mm512_fmadd_ps(ak, b1, c51);
    }
    _mm512_storeu_ps(tile[0], c00); _mm512_storeu_ps(tile[0] + 16, c01);
    _mm512_storeu_ps(tile[1], c10); _mm512_storeu_ps(tile[1] + 16, c11);
    _mm512_storeu_ps(tile[2], c20); _mm512_storeu_ps(tile[2] + 16, c21);
    _mm512_storeu_ps(tile[3], c30); _mm512_storeu_ps(tile[3] + 16, c31);
    _mm512_storeu_ps(tile[4], c40); _mm512_storeu_ps(tile[4] + 16, c41);
    _mm512_storeu_ps(tile[5], c50); _mm512_storeu_ps(tile[5] + 16, c51);
    if (cols < 2 * CNN__NR) {
        cnn__tile_to_c(tile[0], 2 * CNN__NR, C, ldc, rows, cols, accumulate);
        return;
    }
    for (r = 0; r < rows; r++, C += ldc) {
        __m512 t0 = _mm512_loadu_ps(tile[r]), t1 = _mm512_loadu_ps(tile[r] + 16);
        if (accumulate) {
            t0 = _mm512_add_ps(t0, _mm512_loadu_ps(C));
            t1 = _mm512_add_ps(t1, _mm512_loadu_ps(C + 16));
        }
        _mm512_storeu_ps(C, t0);
        _mm512_storeu_ps(C + 16, t1);
    }
}
#endif

/* B as the kernel reads it: panel q (columns q*NR ..) starts at
   data + q * panel_step and its rows are row_step floats apart, or, when
   rows is not NULL, row k starts rows[k] floats after the panel's start;
   when edge is not NULL, the last panel is read from there instead, packed. */
typedef struct {
    const float *data, *edge;
    const int *rows;
    size_t panel_step, row_step;
} cnn__matrix_b;

/* B (K x N) packed whole by cnn__pack_b */
CNN__PRIVATE cnn__matrix_b cnn__b_packed(int K, const float *packed)
{
    cnn__matrix_b b;
    b.data = packed;
    b.edge = NULL;
    b.rows = NULL;
    b.panel_step = (size_t)CNN__NR * (size_t)K;
    b.row_step = CNN__NR;
    return b;
}

/* B (K x N) read where it lies: B[k][j] at data[k * row_stride + j]. A last
   panel narrower than NR is packed into edge (K * NR floats). */
CNN__PRIVATE cnn__matrix_b cnn__b_in_place(int K, int N, const float *data, size_t row_stride, float *edge)
{
    cnn__matrix_b b;
    const int last = N % CNN__NR;
    b.data = data;
    b.edge = NULL;
    b.rows = NULL;
    b.panel_step = CNN__NR;
    b.row_step = row_stride;
    if (last) {
        cnn__pack_b(K, last, data + (N - last), row_stride, 1, edge, 1);
        b.edge = edge;
    }
    return b;
}

/* B (K x N) as rows that start at data + rows[k], each read 16 floats at a
   time, the last panel too: its columns past N are read but not kept, so
   NR - 1 floats past the end of the last row must be readable. */
CNN__PRIVATE cnn__matrix_b cnn__b_shifted(const float *data, const int *rows)
{
    cnn__matrix_b b;
    b.data = data;
    b.edge = NULL;
    b.rows = rows;
    b.panel_step = CNN__NR;
    b.row_step = 0;
    return b;
}

/* A as the kernel reads it: panel p (rows p*MR ..) starts at
   data + p * panel_step, A[r][k] of it at r * row_step + k * k_step. */
typedef struct {
    const float *data;
    size_t panel_step, row_step, k_step;
} cnn__matrix_a;

/* A (M x K) packed whole by cnn__pack_a */
CNN__PRIVATE cnn__matrix_a cnn__a_packed(int K, const float *packed)
{
    cnn__matrix_a a;
    a.data = packed;
    a.panel_step = (size_t)CNN__MR * (size_t)K;
    a.row_step = 1;
    a.k_step = CNN__MR;
    return a;
}

/* A read where it lies, A[i][k] at data[i * row_stride + k]: each of the
   kernel's 6 rows is then a stream of its own, which the CPU prefetches as
   well as one packed stream. The kernel reads whole panels, so the caller
   must provide rows up to a multiple of MR (their values do not matter for
   the rows of C kept, but they must be readable). */
CNN__PRIVATE cnn__matrix_a cnn__a_in_place(const float *data, size_t row_stride)
{
    cnn__matrix_a a;
    a.data = data;
    a.panel_step = (size_t)CNN__MR * row_stride;
    a.row_step = row_stride;
    a.k_step = 1;
    return a;
}

/* Where row k of column panel q of B starts: *row_step floats apart from
   *panel, or *rows[k] after it. */
CNN__INLINE void cnn__b_panel(const cnn__matrix_b *b, int q, int col_panels, const float **panel, size_t *row_step,
                              const int **rows)
{
    const int packed_edge = b->edge && q == col_panels - 1;
    *panel = packed_edge ? b->edge : b->data + (size_t)q * b->panel_step;
    *row_step = packed_edge ? (size_t)CNN__NR : b->row_step;
    *rows = packed_edge ? NULL : b->rows;
}

/* Columns of C one tile covers: two panels of B for the avx512 kernel. */
CNN__PRIVATE int cnn__tile_width(int isa)
{
    return isa == CNN__ISA_AVX512 ? 2 * CNN__NR : CNN__NR;
}

/* Tile `tile` of C += A @ B (or =), with the kernel of instruction set isa.
   When A is the smaller operand, each B panel meets every A panel in turn,
   so A is read again and again from the cache while each B panel is read
   once; when B is smaller, the other way round. */
CNN__PRIVATE void cnn__gemm_tile(int M, int N, int K, const cnn__matrix_a *a, const cnn__matrix_b *b, float *C, int ldc,
                                 int accumulate, int tile, int isa)
{
    const int width = cnn__tile_width(isa), col_panels = (N + CNN__NR - 1) / CNN__NR;
    const int row_tiles = (M + CNN__MR - 1) / CNN__MR, col_tiles = (N + width - 1) / width, a_smaller = M <= N;
    const int p = a_smaller ? tile % row_tiles : tile / col_tiles;   /* row panel */
    const int t = a_smaller ? tile / row_tiles : tile % col_tiles;   /* column tile */
    const int q = t * width / CNN__NR;                               /* its first column panel */
    const int rows = M - p * CNN__MR < CNN__MR ? M - p * CNN__MR : CNN__MR;
    const int cols = N - t * width < width ? N - t * width : width;
    const float *a_panel = a->data + (size_t)p * a->panel_step, *b_panel;
    const int *b_rows;
    size_t b_step;
    float *c_tile = C + (size_t)p * CNN__MR * ldc + (size_t)t * width;
    cnn__b_panel(b, q, col_panels, &b_panel, &b_step, &b_rows);
#if CNN__DISPATCH
    if (isa == CNN__ISA_AVX512 && cols > CNN__NR) {
        const float *next_panel;
        const int *next_rows;
        size_t next_step;
        cnn__b_panel(b, q + 1, col_panels, &next_panel, &next_step, &next_rows);
        cnn__gemm_kernel_avx512(K, a_panel, a->row_step, a->k_step, b_panel, b_step, b_rows, next_panel, next_step, next_rows,
                                c_tile, ldc, rows, cols, accumulate);
        return;
    }
    if (isa != CNN__ISA_GENERIC) { /* avx2, or a last single panel of avx512: the same bits */
        cnn__gemm_kernel_avx2(K, a_panel, a->row_step, a->k_step, b_panel, b_step, b_rows, c_tile, ldc, rows, cols, accumulate);
        return;
    }
#endif
    cnn__gemm_kernel(K, a_panel, a->row_step, a->k_step, b_panel, b_step, b_rows, c_tile, ldc, rows, cols, accumulate);
}

/* C += A @ B, or C = A @ B when accumulate is 0. Threads take whole tiles;
   on one thread there is no OpenMP region (see cnn__pack). */
CNN__PRIVATE void cnn__gemm(int M, int N, int K, cnn__matrix_a a, cnn__matrix_b b, float *C, int ldc, int accumulate, int threads,
                            int isa)
{
    const int width = cnn__tile_width(isa), tiles = ((M + CNN__MR - 1) / CNN__MR) * ((N + width - 1) / width);
    int tile;
    if (threads > 1 && (double)M * N * K >= 65536.0) { /* else too little work to share */
        CNN__PARALLEL_FOR
        for (tile = 0; tile < tiles; tile++) cnn__gemm_tile(M, N, K, &a, &b, C, ldc, accumulate, tile, isa);
        return;
    }
    for (tile = 0; tile < tiles; tile++) cnn__gemm_tile(M, N, K, &a, &b, C, ldc, accumulate, tile, isa);
}

/* ---------------------------------------------------------------- lowering: im2col and col2im */

/* to[j] = from[j] and to[j] += from[j] for j < count, 8 at a time. The
   runs im2col and col2im move are short (a row of the image, often 10 to
   30 floats), where calling memcpy costs more than the copy. The last 8 of
   a copy may overlap the ones before, which is why a copy of 8 or more
   needs no loop of single floats; that the start of each 8 is not simply
   j also keeps GCC from turning the loop back into a call to memcpy. */
CNN__INLINE void cnn__copy_run(float *CNN__RESTRICT to, const float *CNN__RESTRICT from, int count)
{
    int j;
#if CNN__VECTORS
    cnn__f8 v;
    if (count >= 8) {
        for (j = 0; j < count; j += 8) {
            const int at = j + 8 <= count ? j : count - 8;
            CNN__LOAD8(v, from + at);
            CNN__STORE8(to + at, v);
        }
        return;
    }
#endif
    for (j = 0; j < count; j++) to[j] = from[j];
}

CNN__INLINE void cnn__add_run(float *CNN__RESTRICT to, const float *CNN__RESTRICT from, int count)
{
    int j = 0;
#if CNN__VECTORS
    cnn__f8 v, sum;
    for (; j + 8 <= count; j += 8) {
        CNN__LOAD8(v, from + j);
        CNN__LOAD8(sum, to + j);
        sum += v;
        CNN__STORE8(to + j, sum);
    }
#endif
    for (; j < count; j++) to[j] += from[j];
}

/* to[j] = value for j < count, 8 at a time (the last 8 may overlap) */
CNN__INLINE void cnn__fill_run(float *to, float value, int count)
{
    int j;
#if CNN__VECTORS
    const cnn__f8 v = {value, value, value, value, value, value, value, value};
    if (count >= 8) {
        for (j = 0; j < count; j += 8) CNN__STORE8(to + (j + 8 <= count ? j : count - 8), v);
        return;
    }
#endif
    for (j = 0; j < count; j++) to[j] = value;
}

/* Floats of x with its zero padding: (C, H + 2P, W + 2P). */
CNN__PRIVATE size_t cnn__padded_size(const cnn_layer *layer)
{
    const int P = layer->desc.padding;
    return (size_t)layer->in.c * (size_t)(layer->in.h + 2 * P) * (size_t)(layer->in.w + 2 * P);
}

/* padded (C, H + 2P, W + 2P) = x (C, H, W) with P zeros on every side */
CNN__HOT static void cnn__pad(const cnn_layer *layer, const float *x, float *padded)
{
    const int C = layer->in.c, H = layer->in.h, W = layer->in.w, P = layer->desc.padding;
    const int Hp = H + 2 * P, Wp = W + 2 * P;
    int c, i;
    if (P > 0) memset(padded, 0, cnn__padded_size(layer) * sizeof(float)); /* else the rows cover it all */
    for (c = 0; c < C; c++)
        for (i = 0; i < H; i++) cnn__copy_run(padded + ((size_t)c * Hp + i + P) * Wp + P, x + ((size_t)c * H + i) * W, W);
}

/* col (C*K*K, OH*OW): row (c, u, v) holds x[c, i*S+u-P, j*S+v-P] for every
   output position (i, j), zero where that falls in the padding. x is one
   sample (C, H, W). It is first copied into padded, zeros around it, so
   that every window lies inside and the copies need no bounds checks; with
   no padding x is read as it is. With stride 1 a window row is a run of
   an input row. */
CNN__HOT static void cnn__im2col(const cnn_layer *layer, const float *x, float *padded, float *col)
{
    const int C = layer->in.c, H = layer->in.h, W = layer->in.w;
    const int OH = layer->out.h, OW = layer->out.w;
    const int K = layer->desc.kernel, S = layer->desc.stride, P = layer->desc.padding;
    const int Hp = H + 2 * P, Wp = W + 2 * P;
    const float *in;
    float *out = col;
    int c, u, v, i, j;
    if (P > 0) {
        cnn__pad(layer, x, padded);
        x = padded;
    }
    for (c = 0; c < C; c++)
        for (u = 0; u < K; u++)
            for (v = 0; v < K; v++) {
                for (i = 0; i < OH; i++, out += OW) {
                    in = x + ((size_t)c * Hp + i * S + u) * Wp + v; /* the window at (i, 0), its (u, v) */
                    if (S == 1) cnn__copy_run(out, in, OW);
                    else for (j = 0; j < OW; j++) out[j] = in[j * S];
                }
            }
}

/* The adjoint of im2col: dx (C, H, W) = sum of every window's gradient in
   dcol put back where im2col took it from, summed in padded (with padding)
   and then cropped. */
CNN__HOT static void cnn__col2im(const cnn_layer *layer, const float *dcol, float *padded, float *dx)
{
    const int C = layer->in.c, H = layer->in.h, W = layer->in.w;
    const int OH = layer->out.h, OW = layer->out.w;
    const int K = layer->desc.kernel, S = layer->desc.stride, P = layer->desc.padding;
    const int Hp = H + 2 * P, Wp = W + 2 * P;
    float *sum = P > 0 ? padded : dx, *to;
    const float *in = dcol;
    int c, u, v, i, j;
    memset(sum, 0, cnn__padded_size(layer) * sizeof(float));
    for (c = 0; c < C; c++)
        for (u = 0; u < K; u++)
            for (v = 0; v < K; v++) {
                for (i = 0; i < OH; i++, in += OW) {
                    to = sum + ((size_t)c * Hp + i * S + u) * Wp + v;
                    if (S == 1) cnn__add_run(to, in, OW);
                    else for (j = 0; j < OW; j++) to[j * S] += in[j];
                }
            }
    if (P > 0)
        for (c = 0; c < C; c++)
            for (i = 0; i < H; i++) cnn__copy_run(dx + ((size_t)c * H + i) * W, padded + ((size_t)c * Hp + i + P) * Wp + P, W);
}

/* ---------------------------------------------------------------- conv2d

   Per sample: y (OC, OH*OW) = b + w (OC, C*K*K) @ col; backward
   dw += dy @ col^T, dcol = w^T @ dy, dx = col2im(dcol). y sums a window's
   products in the plain loop's order, (c, u, v), from zero, and adds the
   bias last, as the plain loop does. The gradients sum in other orders
   (the weight gradient sample by sample in chunks, dx window by window
   through col2im): they agree with the plain pair to rounding, not to the
   bit. */

/* Samples are taken in fixed chunks of this many for the weight gradient of
   conv2d: each chunk sums its samples into a partial of its own, in any
   thread, and the partials are added in chunk order. The result is the same
   for any number of threads. */
#define CNN__CHUNK 8

/* Rows of col as the backward multiply reads it in place: the C*K*K rows
   of im2col, a row of ones (see below), and rows of zeros up to a whole
   number of panels of MR rows, which the kernel reads. */
CNN__PRIVATE int cnn__conv2d_col_rows(const cnn_layer *layer)
{
    const int window = layer->in.c * layer->desc.kernel * layer->desc.kernel;
    return (window + 1 + CNN__MR - 1) / CNN__MR * CNN__MR;
}

/* Whether the forward pass goes without col (stride 1, see
   cnn__conv2d_forward_shifted): then the layer has shifts (see
   cnn__fast_build). */
CNN__PRIVATE int cnn__conv2d_shifted(const cnn_layer *layer)
{
    return layer->desc.stride == 1 && cnn__padded_size(layer) + CNN__NR <= (size_t)INT_MAX;
}

/* Columns of the wide output of the stride-1 forward pass (see there): the
   OH rows of the output, each W + 2P wide, but the last only OW. */
CNN__PRIVATE int cnn__conv2d_wide_count(const cnn_layer *layer)
{
    return (layer->out.h - 1) * (layer->in.w + 2 * layer->desc.padding) + layer->out.w;
}

/* Whether the backward pass sums the weight gradient as dw (OC, C*K*K)
   = dy @ col^T, OC rows of C, rather than as its transpose col @ dy^T, OC
   columns: whichever leaves less of the kernel's tiles empty. The first
   layer of LeNet-5 is the case: OC = 6 fills one panel of 6 rows, and
   would fill 6 of 16 columns. Both sum the same products in the same
   order. */
CNN__PRIVATE int cnn__conv2d_grad_by_rows(const cnn_layer *layer)
{
    const int OC = layer->out.c, rows = layer->in.c * layer->desc.kernel * layer->desc.kernel + 1; /* col and ones */
    const double tiles_by_rows = (double)((OC + CNN__MR - 1) / CNN__MR) * ((rows + CNN__NR - 1) / CNN__NR);
    const double tiles_by_columns = (double)((rows + CNN__MR - 1) / CNN__MR) * ((OC + CNN__NR - 1) / CNN__NR);
    return tiles_by_rows < tiles_by_columns;
}

/* Floats of the packed operands of the backward pass's weight gradient:
   dy^T as B; or, by rows, dy as A and [col; ones]^T as B. */
CNN__PRIVATE size_t cnn__conv2d_grad_operands(const cnn_layer *layer)
{
    const int OC = layer->out.c, rows = layer->in.c * layer->desc.kernel * layer->desc.kernel + 1;
    const int positions = layer->out.h * layer->out.w;
    return cnn__conv2d_grad_by_rows(layer) ? cnn__packed_a_size(OC, positions) + cnn__packed_b_size(positions, rows)
                                           : cnn__packed_b_size(positions, OC);
}

/* Floats of workspace conv2d needs. Shared: w packed as A for the forward
   multiply, w^T packed as A for dcol, the chunk partials. Per thread, for
   the forward with stride 1: the padded sample and NR floats more, the
   wide output; else col, the padded sample, and the last, narrower panel
   of col packed as B. For the backward: col, the padded sample, the
   weight gradient's packed operands, the last panel of dy packed as B, and
   dcol. */
CNN__PRIVATE size_t cnn__conv2d_shared(const cnn_layer *layer, int max_batch)
{
    const int OC = layer->out.c, window = layer->in.c * layer->desc.kernel * layer->desc.kernel;
    size_t chunks = ((size_t)max_batch + CNN__CHUNK - 1) / CNN__CHUNK;
    return cnn__packed_a_size(OC, window) + cnn__packed_a_size(window, OC) +
           chunks * (layer->weight_count + layer->bias_count);
}

CNN__PRIVATE size_t cnn__conv2d_per_thread(const cnn_layer *layer)
{
    const int OC = layer->out.c, window = layer->in.c * layer->desc.kernel * layer->desc.kernel;
    const int positions = layer->out.h * layer->out.w;
    const size_t col = (size_t)cnn__conv2d_col_rows(layer) * positions + cnn__padded_size(layer);
    const size_t forward = cnn__conv2d_shifted(layer)
                               ? cnn__padded_size(layer) + CNN__NR + (size_t)OC * cnn__conv2d_wide_count(layer)
                               : col + (size_t)window * CNN__NR;
    const size_t backward = col + cnn__conv2d_grad_operands(layer) + (size_t)OC * CNN__NR + (size_t)window * positions;
    return forward > backward ? forward : backward;
}

/* Forward with stride 1, one sample, without col: the row (c, u, v) of col
   is, for each output row i, OW floats of the padded input's row c, i + u
   from column v, and the next output row starts W + 2P floats further on.
   So from padded + shifts[(c, u, v)], with rows W + 2P wide, the padded
   input read as it lies is the whole row of col, only with K - 1 more
   columns after each output row (the windows that would hang over the
   right edge). The multiply reads B so, computes those columns too, into
   a wide output, and they are left out when it is copied to y. That costs
   (K - 1) / (W + 2P) more multiply-adds and saves writing and reading col.
   The sums are the same, in the same order, as through col. */
CNN__PRIVATE void cnn__conv2d_forward_shifted(const cnn_layer *layer, const int *shifts, const float *packed_weight,
                                              const float *x, float *padded, float *y, int threads, int isa)
{
    const int OC = layer->out.c, OH = layer->out.h, OW = layer->out.w, window = layer->in.c * layer->desc.kernel * layer->desc.kernel;
    const int Wp = layer->in.w + 2 * layer->desc.padding, wide_count = cnn__conv2d_wide_count(layer);
    float *wide = padded + cnn__padded_size(layer) + CNN__NR; /* (OC, wide_count) */
    int o, i;
    cnn__pad(layer, x, padded);
    memset(padded + cnn__padded_size(layer), 0, CNN__NR * sizeof(float)); /* read by the last panel, not kept */
    for (o = 0; o < OC; o++) cnn__fill_run(wide + (size_t)o * wide_count, layer->bias[o], wide_count);
    cnn__gemm(OC, wide_count, window, cnn__a_packed(window, packed_weight), cnn__b_shifted(padded, shifts), wide, wide_count, 1,
              threads, isa);
    for (o = 0; o < OC; o++)
        for (i = 0; i < OH; i++) cnn__copy_run(y + ((size_t)o * OH + i) * OW, wide + (size_t)o * wide_count + (size_t)i * Wp, OW);
}

/* Fast forward: per sample, y (OC, OH*OW) = b + w (OC, C*K*K) @ col. The
   few panels of w are packed once; col is read where im2col put it, since
   each of its panels meets those few panels of w only, right after each
   other. With stride 1 (shifts not NULL), col is not even written (above).
   One sample, with its multiply on `threads` threads, in the working
   memory `mine`: */
CNN__PRIVATE void cnn__conv2d_forward_sample(const cnn_layer *layer, const int *shifts, const float *packed_weight,
                                             const float *x, float *mine, float *out, int threads, int isa)
{
    const int OC = layer->out.c, window = layer->in.c * layer->desc.kernel * layer->desc.kernel;
    const int positions = layer->out.h * layer->out.w;
    float *col = mine;                                                     /* (C*K*K, OH*OW) */
    float *padded = col + (size_t)cnn__conv2d_col_rows(layer) * positions; /* (C, H+2P, W+2P) */
    float *edge = padded + cnn__padded_size(layer);
    int o;
    if (shifts) {
        cnn__conv2d_forward_shifted(layer, shifts, packed_weight, x, mine, out, threads, isa);
        return;
    }
    cnn__im2col(layer, x, padded, col);
    for (o = 0; o < OC; o++) cnn__fill_run(out + (size_t)o * positions, layer->bias[o], positions);
    cnn__gemm(OC, positions, window, cnn__a_packed(window, packed_weight),
              cnn__b_in_place(window, positions, col, (size_t)positions, edge), out, positions, 1, threads, isa);
}

/* Samples are independent, so threads take whole samples; a batch smaller
   than the thread count (one sample, at inference) goes sample by sample
   instead, each multiply shared by the threads. */
CNN__PRIVATE void cnn__conv2d_forward_fast(const cnn_layer *layer, const int *shifts, int N, const float *x, float *y,
                                           const cnn__workspace *work)
{
    const int OC = layer->out.c, window = layer->in.c * layer->desc.kernel * layer->desc.kernel;
    const size_t in_size = cnn_shape_count(layer->in), out_size = cnn_shape_count(layer->out);
    const int threads = work->threads;
    float *packed_weight = work->shared;
    int n;
    cnn__pack_a(OC, window, layer->weight, (size_t)window, 1, packed_weight, threads);
    if (N < threads) {
        for (n = 0; n < N; n++)
            cnn__conv2d_forward_sample(layer, shifts, packed_weight, x + (size_t)n * in_size, work->per_thread,
                                       y + (size_t)n * out_size, threads, work->isa);
        return;
    }
    CNN__PARALLEL_FOR
    for (n = 0; n < N; n++) {
        float *mine = work->per_thread + work->per_thread_size * (size_t)CNN__THREAD_ID(); /* this thread's part */
        cnn__conv2d_forward_sample(layer, shifts, packed_weight, x + (size_t)n * in_size, mine, y + (size_t)n * out_size, 1,
                                   work->isa);
    }
}

/* Fast backward, per sample:
   dw^T (C*K*K, OC) += col @ dy^T;  db += row sums of dy (OC, OH*OW);
   dcol (C*K*K, OH*OW) = w^T @ dy;  dx = col2im(dcol).
   The bias is a weight whose input is always 1: with a row of ones under
   col, the same multiply gives db as a last row under dw^T, where the chunk
   partials keep it. When that fills the kernel's tiles badly, the partials
   are the transpose, (dw | db) (OC, C*K*K + 1) += dy @ [col; ones]^T
   (see cnn__conv2d_grad_by_rows). dx may be NULL when nobody needs it (the
   first layer in training), which skips the last two. Threads take whole
   chunks of samples (see CNN__CHUNK). */
CNN__PRIVATE void cnn__conv2d_backward_fast(const cnn_layer *layer, int N, const float *x, const float *dy, float *dx,
                                            const cnn__workspace *work)
{
    const int OC = layer->out.c, window = layer->in.c * layer->desc.kernel * layer->desc.kernel;
    const int positions = layer->out.h * layer->out.w, col_rows = cnn__conv2d_col_rows(layer);
    const size_t in_size = cnn_shape_count(layer->in), out_size = cnn_shape_count(layer->out);
    const size_t partial_size = layer->weight_count + layer->bias_count;
    const int chunks = (N + CNN__CHUNK - 1) / CNN__CHUNK, threads = work->threads;
    const int by_rows = cnn__conv2d_grad_by_rows(layer);
    float *packed_weight_t = work->shared + cnn__packed_a_size(OC, window);    /* w^T (C*K*K, OC) as A */
    float *partials = packed_weight_t + cnn__packed_a_size(window, OC);        /* (chunks, (C*K*K + 1) * OC) */
    int chunk;
    cnn__pack_a(window, OC, layer->weight, 1, (size_t)window, packed_weight_t, threads);
    memset(partials, 0, (size_t)chunks * partial_size * sizeof(float));
    CNN__PARALLEL_FOR
    for (chunk = 0; chunk < chunks; chunk++) {
        float *col = work->per_thread + work->per_thread_size * (size_t)CNN__THREAD_ID(); /* (col_rows, OH*OW) */
        float *padded = col + (size_t)col_rows * positions;                        /* (C, H+2P, W+2P) */
        float *packed_grad = padded + cnn__padded_size(layer);                      /* dy^T as B, or dy as A */
        float *packed_col_t = packed_grad + cnn__packed_a_size(OC, positions);      /* by rows: [col; ones]^T as B */
        float *edge = packed_grad + cnn__conv2d_grad_operands(layer);               /* last panel of dy as B */
        float *dcol = edge + (size_t)OC * CNN__NR;                                  /* (C*K*K, OH*OW) */
        float *weight_grad = partials + (size_t)chunk * partial_size;               /* dw^T, then db; or (dw | db) */
        int n, p, last = (chunk + 1) * CNN__CHUNK < N ? (chunk + 1) * CNN__CHUNK : N;
        float *ones = col + (size_t)window * positions;
        for (p = 0; p < positions; p++) ones[p] = 1.0f;
        memset(ones + positions, 0, (size_t)(col_rows - window - 1) * positions * sizeof(float));
        for (n = chunk * CNN__CHUNK; n < last; n++) {
            const float *grad = dy + (size_t)n * out_size;
            cnn__im2col(layer, x + (size_t)n * in_size, padded, col);
            if (by_rows) {
                /* dy is read where it lies when its rows make whole panels */
                cnn__matrix_a grad_rows = cnn__a_in_place(grad, (size_t)positions);
                if (OC % CNN__MR) {
                    cnn__pack_a(OC, positions, grad, (size_t)positions, 1, packed_grad, 1);
                    grad_rows = cnn__a_packed(positions, packed_grad);
                }
                cnn__pack_b(positions, window + 1, col, 1, (size_t)positions, packed_col_t, 1);
                cnn__gemm(OC, window + 1, positions, grad_rows, cnn__b_packed(positions, packed_col_t), weight_grad,
                          window + 1, 1, 1, work->isa);
            } else {
                cnn__pack_b(positions, OC, grad, 1, (size_t)positions, packed_grad, 1);
                cnn__gemm(window + 1, OC, positions, cnn__a_in_place(col, (size_t)positions), cnn__b_packed(positions, packed_grad),
                          weight_grad, OC, 1, 1, work->isa);
            }
            if (!dx) continue;
            cnn__gemm(window, positions, OC, cnn__a_packed(OC, packed_weight_t),
                      cnn__b_in_place(OC, positions, grad, (size_t)positions, edge), dcol, positions, 0, 1, work->isa);
            cnn__col2im(layer, dcol, padded, dx + (size_t)n * in_size);
        }
    }
    for (chunk = 0; chunk < chunks; chunk++) {
        const float *partial = partials + (size_t)chunk * partial_size;
        int o, k;
        for (o = 0; o < OC; o++) {
            const float *row = partial + (size_t)o * (window + 1); /* by rows: (dw | db)[o] */
            for (k = 0; k < window; k++)
                layer->weight_grad[(size_t)o * window + k] += by_rows ? row[k] : partial[(size_t)k * OC + o];
            layer->bias_grad[o] += by_rows ? row[window] : partial[(size_t)window * OC + o];
        }
    }
}

/* ---------------------------------------------------------------- dense

   The forward pass is x (N, IN) @ w (IN, OUT) plus the bias, the backward
   pass x^T @ dy and dy @ w^T: every sum in the plain loops' order, from
   zero, so the bits are the plain pair's. */

/* Floats of shared workspace dense needs: the two packed operands of the
   largest of its three multiplies. */
CNN__PRIVATE size_t cnn__dense_shared(const cnn_layer *layer, int max_batch)
{
    const int IN = (int)cnn_shape_count(layer->in), OUT = (int)cnn_shape_count(layer->out), N = max_batch;
    size_t forward = cnn__packed_a_size(N, IN) + cnn__packed_b_size(IN, OUT);
    size_t weight_grad = cnn__packed_a_size(IN, N) + cnn__packed_b_size(N, OUT);
    size_t input_grad = cnn__packed_a_size(N, OUT) + cnn__packed_b_size(OUT, IN);
    size_t most = forward > weight_grad ? forward : weight_grad;
    return most > input_grad ? most : input_grad;
}

#if CNN__VECTORS
/* y (OUT) = b + x (IN) @ w (IN, OUT) for one sample, OUT >= 8, outputs
   block .. block + 63 of it: the rows of w, each scaled by its x, summed in
   8 vectors of 8 outputs. Every output sums its IN products in the order
   i = 0, 1, ... from zero and then adds its bias, as the matrix multiply
   does, so a sample gets the same bits alone as in a batch. The 8 vectors
   start at most at OUT - 8: in the last block some overlap and compute the
   same outputs twice, with the same result, instead of reading past a row. */
CNN__HOT static void cnn__dense_forward_one(int IN, int OUT, int block, const float *x, const float *w, const float *bias, float *y)
{
    const float *w_row = w;
    cnn__f8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0}, acc[8], row, sum;
    int i, j, start[8];
    for (j = 0; j < 8; j++) start[j] = block + 8 * j < OUT - 8 ? block + 8 * j : OUT - 8;
    /* written out, so that the 8 sums stay in registers */
    for (i = 0; i < IN; i++, w_row += OUT) {
        CNN__LOAD8(row, w_row + start[0]); a0 += row * x[i];
        CNN__LOAD8(row, w_row + start[1]); a1 += row * x[i];
        CNN__LOAD8(row, w_row + start[2]); a2 += row * x[i];
        CNN__LOAD8(row, w_row + start[3]); a3 += row * x[i];
        CNN__LOAD8(row, w_row + start[4]); a4 += row * x[i];
        CNN__LOAD8(row, w_row + start[5]); a5 += row * x[i];
        CNN__LOAD8(row, w_row + start[6]); a6 += row * x[i];
        CNN__LOAD8(row, w_row + start[7]); a7 += row * x[i];
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
    for (j = 0; j < 8; j++) {
        CNN__LOAD8(sum, bias + start[j]);
        sum += acc[j];
        CNN__STORE8(y + start[j], sum);
    }
}
#endif

#if CNN__DISPATCH
/* The same with fused multiply-adds, for the avx2 and avx512 kernels: the
   bits those give for the sample in a batch. */
CNN__TARGET_AVX2 static void cnn__dense_forward_one_fma(int IN, int OUT, int block, const float *x, const float *w,
                                                        const float *bias, float *y)
{
    const float *w_row = w;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, xi, acc[8];
    int i, j, start[8];
    for (j = 0; j < 8; j++) start[j] = block + 8 * j < OUT - 8 ? block + 8 * j : OUT - 8;
    for (i = 0; i < IN; i++, w_row += OUT) {
        xi = _mm256_set1_ps(x[i]);
        a0 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(w_row + start[0]), a0);
        a1 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(w_row + start[1]), a1);
        a2 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(w_row + start[2]), a2);
        a3 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(w_row + start[3]), a3);
        a4 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(w_row + start[4]), a4);
        a5 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(w_row + start[5]), a5);
        a6 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(w_row + start[6]), a6);
        a7 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(w_row + start[7]), a7);
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
    for (j = 0; j < 8; j++) _mm256_storeu_ps(y + start[j], _mm256_add_ps(_mm256_loadu_ps(bias + start[j]), acc[j]));
}
#endif

CNN__PRIVATE void cnn__dense_forward_fast(const cnn_layer *layer, int N, const float *x, float *y, const cnn__workspace *work)
{
    const int IN = (int)cnn_shape_count(layer->in), OUT = (int)cnn_shape_count(layer->out);
    float *packed_x = work->shared, *packed_weight = packed_x + cnn__packed_a_size(N, IN);
    cnn__matrix_b weight;
    int n, o;
#if CNN__VECTORS
    /* Fewer samples than a panel of MR rows (one at inference) would leave
       most of the multiply's rows empty: each sample goes through w alone,
       in blocks of 64 outputs, which threads share when w is large (then
       reading w is most of the time, and each thread reads its part). */
    if (N < CNN__MR && OUT >= 8) {
        const int blocks = (OUT + 63) / 64;
        int task, threads = (double)IN * OUT < 65536.0 ? 1 : work->threads;
        CNN__PARALLEL_FOR
        for (task = 0; task < N * blocks; task++) {
            const int block = task % blocks * 64, n = task / blocks;
#if CNN__DISPATCH
            if (work->isa != CNN__ISA_GENERIC) {
                cnn__dense_forward_one_fma(IN, OUT, block, x + (size_t)n * IN, layer->weight, layer->bias, y + (size_t)n * OUT);
                continue;
            }
#endif
            cnn__dense_forward_one(IN, OUT, block, x + (size_t)n * IN, layer->weight, layer->bias, y + (size_t)n * OUT);
        }
        return;
    }
#endif
    for (n = 0; n < N; n++)
        for (o = 0; o < OUT; o++) y[(size_t)n * OUT + o] = layer->bias[o];
    cnn__pack_a(N, IN, x, (size_t)IN, 1, packed_x, work->threads);
    /* A batch of one panel of x (up to MR samples) meets each panel of w
       once, so w is read in place: packing it would cost more than the
       multiply. A larger batch reads each panel of w once per panel of x,
       and a packed, contiguous panel stays in the cache better than 16
       floats from each of IN rows. */
    if (N <= CNN__MR) {
        weight = cnn__b_in_place(IN, OUT, layer->weight, (size_t)OUT, packed_weight);
    } else {
        cnn__pack_b(IN, OUT, layer->weight, (size_t)OUT, 1, packed_weight, work->threads);
        weight = cnn__b_packed(IN, packed_weight);
    }
    cnn__gemm(N, OUT, IN, cnn__a_packed(IN, packed_x), weight, y, OUT, 1, work->threads, work->isa);
}

/* db[o] += sum_n dy[n,o];  dw (IN, OUT) += x^T @ dy;  dx (N, IN) = dy @ w^T
   (dx may be NULL when nobody needs it) */
CNN__PRIVATE void cnn__dense_backward_fast(const cnn_layer *layer, int N, const float *x, const float *dy, float *dx,
                                           const cnn__workspace *work)
{
    const int IN = (int)cnn_shape_count(layer->in), OUT = (int)cnn_shape_count(layer->out);
    float *packed_a = work->shared, *packed_b;
    int n, o;
    for (n = 0; n < N; n++)
        for (o = 0; o < OUT; o++) layer->bias_grad[o] += dy[(size_t)n * OUT + o];
    packed_b = packed_a + cnn__packed_a_size(IN, N);
    cnn__pack_a(IN, N, x, 1, (size_t)IN, packed_a, work->threads);                 /* x^T (IN, N) */
    cnn__pack_b(N, OUT, dy, (size_t)OUT, 1, packed_b, work->threads);              /* dy (N, OUT) */
    cnn__gemm(IN, OUT, N, cnn__a_packed(N, packed_a), cnn__b_packed(N, packed_b), layer->weight_grad, OUT, 1, work->threads,
              work->isa);
    if (!dx) return;
    packed_b = packed_a + cnn__packed_a_size(N, OUT);
    cnn__pack_a(N, OUT, dy, (size_t)OUT, 1, packed_a, work->threads);              /* dy (N, OUT) */
    cnn__pack_b(OUT, IN, layer->weight, 1, (size_t)OUT, packed_b, work->threads); /* w^T (OUT, IN) */
    cnn__gemm(N, IN, OUT, cnn__a_packed(OUT, packed_a), cnn__b_packed(OUT, packed_b), dx, IN, 0, work->threads, work->isa);
}

/* ---------------------------------------------------------------- activations

   Elementwise over count = N * size values. The vector loop does 8 values
   at a time exactly as the plain loop does one, and hands the last
   count % 8 (all of them, for compilers without vectors) to the plain
   loop: both give the same bits. */
CNN__HOT static void cnn__relu_forward_fast(size_t count, const float *x, float *y)
{
    size_t i = 0;
#if CNN__VECTORS
    const cnn__f8 zero = {0};
    cnn__f8 v, out;
    for (; i + 8 <= count; i += 8) {
        CNN__LOAD8(v, x + i);
        out = CNN__SELECT8(v < zero, zero, v);
        CNN__STORE8(y + i, out);
    }
#endif
    cnn__relu_forward(count - i, x + i, y + i);
}

CNN__HOT static void cnn__relu_backward_fast(size_t count, const float *y, const float *dy, float *dx)
{
    size_t i = 0;
#if CNN__VECTORS
    const cnn__f8 zero = {0};
    cnn__f8 v, g, out;
    for (; i + 8 <= count; i += 8) {
        CNN__LOAD8(v, y + i);
        CNN__LOAD8(g, dy + i);
        out = CNN__SELECT8(v > zero, g, zero);
        CNN__STORE8(dx + i, out);
    }
#endif
    cnn__relu_backward(count - i, y + i, dy + i, dx + i);
}

CNN__HOT static void cnn__leaky_relu_forward_fast(size_t count, float alpha, const float *x, float *y)
{
    size_t i = 0;
#if CNN__VECTORS
    const cnn__f8 zero = {0};
    cnn__f8 v, out;
    for (; i + 8 <= count; i += 8) {
        CNN__LOAD8(v, x + i);
        out = CNN__SELECT8(v < zero, v * alpha, v);
        CNN__STORE8(y + i, out);
    }
#endif
    cnn__leaky_relu_forward(count - i, alpha, x + i, y + i);
}

CNN__HOT static void cnn__leaky_relu_backward_fast(size_t count, float alpha, const float *v_in, const float *dy, float *dx)
{
    size_t i = 0;
#if CNN__VECTORS
    const cnn__f8 zero = {0};
    cnn__f8 v, g, out;
    for (; i + 8 <= count; i += 8) {
        CNN__LOAD8(v, v_in + i);
        CNN__LOAD8(g, dy + i);
        out = CNN__SELECT8(v > zero, g, g * alpha);
        CNN__STORE8(dx + i, out);
    }
#endif
    cnn__leaky_relu_backward(count - i, alpha, v_in + i, dy + i, dx + i);
}

/* A large batch of values is cut into one block per thread, of whole
   vectors of 8. Each value depends on its own inputs only, so the blocks
   change nothing in the result. */
#define CNN__ELEMENTWISE_BLOCK 32768 /* fewer values than this are not worth a second thread */

/* Blocks of about CNN__ELEMENTWISE_BLOCK values, which threads take as they
   come free (see CNN__PARALLEL_FOR), or one block for a small count. */
CNN__PRIVATE int cnn__elementwise_blocks(size_t count, int threads)
{
    return count < 2 * CNN__ELEMENTWISE_BLOCK || threads == 1
               ? 1
               : (int)((count + CNN__ELEMENTWISE_BLOCK - 1) / CNN__ELEMENTWISE_BLOCK);
}

/* The first value of block `block` of `blocks`, and in *n how many it has */
CNN__PRIVATE size_t cnn__elementwise_block(size_t count, int blocks, int block, size_t *n)
{
    const size_t size = ((count + (size_t)blocks - 1) / (size_t)blocks + 7) / 8 * 8;
    const size_t begin = (size_t)block * size < count ? (size_t)block * size : count;
    *n = count - begin < size ? count - begin : size;
    return begin;
}

/* Sigmoid and tanh have no vector loop (expf and tanhf are most of their
   cost): their blocks run the plain loops. */
CNN__PRIVATE void cnn__activation_forward_fast(const cnn_layer *layer, size_t count, const float *x, float *y, int threads)
{
    const int blocks = cnn__elementwise_blocks(count, threads);
    int block;
    if (blocks < threads) threads = blocks; /* one block: no region (CNN__PARALLEL_FOR reads threads) */
    CNN__PARALLEL_FOR
    for (block = 0; block < blocks; block++) {
        size_t n, at = cnn__elementwise_block(count, blocks, block, &n);
        switch (layer->desc.type) {
        case CNN_LAYER_RELU: cnn__relu_forward_fast(n, x + at, y + at); break;
        case CNN_LAYER_LEAKY_RELU: cnn__leaky_relu_forward_fast(n, layer->desc.alpha, x + at, y + at); break;
        default: cnn__activation_forward(layer, n, x + at, y + at); break;
        }
    }
}

CNN__PRIVATE void cnn__activation_backward_fast(const cnn_layer *layer, size_t count, const float *x, const float *y,
                                                const float *dy, float *dx, int threads)
{
    const int blocks = cnn__elementwise_blocks(count, threads);
    int block;
    if (blocks < threads) threads = blocks;
    CNN__PARALLEL_FOR
    for (block = 0; block < blocks; block++) {
        size_t n, at = cnn__elementwise_block(count, blocks, block, &n);
        switch (layer->desc.type) {
        case CNN_LAYER_RELU: cnn__relu_backward_fast(n, y + at, dy + at, dx + at); break;
        case CNN_LAYER_LEAKY_RELU:
            cnn__leaky_relu_backward_fast(n, layer->desc.alpha, (layer->desc.alpha > 0.0f ? y : x) + at, dy + at, dx + at);
            break;
        default: cnn__activation_backward(layer, n, x + at, y + at, dy + at, dx + at); break;
        }
    }
}

/* ---------------------------------------------------------------- max pooling

   Planes are independent, so threads take whole planes; the usual 2 x 2
   pool with stride 2 has a vector kernel. */
#ifdef CNN__SHUFFLES
/* One plane, 2 x 2 windows moved by 2 (the usual pool), 8 windows at a
   time: the even and odd columns of the window's two input rows are the
   four candidates of 8 windows, taken in the same order and by the same
   rule as cnn__max_pool_plane takes them, only with selects instead of
   branches. (The branches of the plain loop guess wrong about half the
   time on real data.) */
CNN__HOT static void cnn__max_pool_plane_2x2(int W, int OH, int OW, const float *in, float *out, int *argmax)
{
    const cnn__i8 even = {0, 2, 4, 6, 8, 10, 12, 14};
    int i, j;
    for (i = 0; i < OH; i++)
        for (j = 0; j < OW; j += 8) {
            /* A last group of fewer than 8 windows moves back to end at the
               row's last window, when the row has 8: the windows it does
               again come out the same. In a narrower row it works on
               copies padded with zeros and keeps only its own windows. */
            const int start = j + 8 <= OW || OW < 8 ? j : OW - 8;
            const int windows = OW - start < 8 ? OW - start : 8, first = 2 * i * W + 2 * start;
            float top[16], bottom[16], best_values[8];
            int best_indices[8], k;
            cnn__f8 top0, top1, bottom0, bottom1, best, value;
            cnn__i8 best_at, take;
            const float *top_row = in + first, *bottom_row = in + first + W;
            if (windows < 8) {
                for (k = 0; k < 16; k++) top[k] = k < 2 * windows ? top_row[k] : 0.0f;
                for (k = 0; k < 16; k++) bottom[k] = k < 2 * windows ? bottom_row[k] : 0.0f;
                top_row = top;
                bottom_row = bottom;
            }
            CNN__LOAD8(top0, top_row);
            CNN__LOAD8(top1, top_row + 8);
            CNN__LOAD8(bottom0, bottom_row);
            CNN__LOAD8(bottom1, bottom_row + 8);
            best = __builtin_shufflevector(top0, top1, 0, 2, 4, 6, 8, 10, 12, 14); /* (0, 0) of each window */
            best_at = even + first;
            value = __builtin_shufflevector(top0, top1, 1, 3, 5, 7, 9, 11, 13, 15); /* (0, 1) */
            take = (value > best) | (value != value);
            best = CNN__SELECT8(take, value, best);
            best_at = (take & (even + first + 1)) | (~take & best_at);
            value = __builtin_shufflevector(bottom0, bottom1, 0, 2, 4, 6, 8, 10, 12, 14); /* (1, 0) */
            take = (value > best) | (value != value);
            best = CNN__SELECT8(take, value, best);
            best_at = (take & (even + first + W)) | (~take & best_at);
            value = __builtin_shufflevector(bottom0, bottom1, 1, 3, 5, 7, 9, 11, 13, 15); /* (1, 1) */
            take = (value > best) | (value != value);
            best = CNN__SELECT8(take, value, best);
            best_at = (take & (even + first + W + 1)) | (~take & best_at);
            if (windows == 8) {
                CNN__STORE8(out + i * OW + start, best);
                memcpy(argmax + i * OW + start, &best_at, sizeof best_at);
                continue;
            }
            CNN__STORE8(best_values, best);
            memcpy(best_indices, &best_at, sizeof best_indices);
            for (k = 0; k < windows; k++) {
                out[i * OW + start + k] = best_values[k];
                argmax[i * OW + start + k] = best_indices[k];
            }
        }
}
#endif

CNN__PRIVATE void cnn__max_pool_forward_fast(const cnn_layer *layer, int N, const float *x, float *y, int *argmax, int threads)
{
    const int H = layer->in.h, W = layer->in.w, OH = layer->out.h, OW = layer->out.w;
    const int K = layer->desc.kernel, S = layer->desc.stride;
    const int planes = N * layer->in.c;
    const int whole_2x2 = K == 2 && S == 2 && layer->desc.padding == 0 && 2 * OH <= H && 2 * OW <= W; /* no ceil-mode edge */
    int plane;
    (void)whole_2x2;
    if ((size_t)planes * OH * OW < 16384) threads = 1; /* too little work to share */
    CNN__PARALLEL_FOR
    for (plane = 0; plane < planes; plane++) {
        const float *in = x + (size_t)plane * H * W;
        float *out = y + (size_t)plane * OH * OW;
        int *plane_argmax = argmax + (size_t)plane * OH * OW;
#ifdef CNN__SHUFFLES
        if (whole_2x2) {
            cnn__max_pool_plane_2x2(W, OH, OW, in, out, plane_argmax);
            continue;
        }
#endif
        cnn__max_pool_plane(layer, in, out, plane_argmax);
    }
}

CNN__PRIVATE void cnn__max_pool_backward_fast(const cnn_layer *layer, int N, const float *dy, const int *argmax, float *dx,
                                              int threads)
{
    const size_t in_plane = (size_t)layer->in.h * layer->in.w;
    const size_t out_plane = (size_t)layer->out.h * layer->out.w;
    const int planes = N * layer->in.c;
    int plane;
    if ((size_t)planes * in_plane < 2 * CNN__ELEMENTWISE_BLOCK) threads = 1;
    CNN__PARALLEL_FOR
    for (plane = 0; plane < planes; plane++) { /* each plane of dx is its own */
        float *plane_dx = dx + (size_t)plane * in_plane;
        size_t k;
        memset(plane_dx, 0, in_plane * sizeof(float));
        for (k = 0; k < out_plane; k++) plane_dx[argmax[(size_t)plane * out_plane + k]] += dy[(size_t)plane * out_plane + k];
    }
}

/* ---------------------------------------------------------------- dropout

   Value i of the mask takes draw i of the model's random stream: threads
   take blocks of values, each running the plain loop from its own copy of
   the stream moved on to the block's first draw, so the mask is the same
   for any number of threads. */
/* rng as after `steps` calls of cnn_rng_next, in O(log steps): n LCG steps
   are one affine map, s -> A s + C with A = a^n and C = c (a^(n-1) + ... +
   1), built up by squaring (F. Brown, "Random number generation with
   arbitrary strides", 1994). It lets threads draw disjoint parts of one
   stream: the numbers are the same as drawn one after another. */
CNN__PRIVATE void cnn__rng_advance(cnn_rng *rng, uint64_t steps)
{
    uint64_t multiplier = 6364136223846793005ULL, increment = rng->increment; /* one step */
    uint64_t total_multiplier = 1, total_increment = 0;                          /* no step */
    for (; steps > 0; steps >>= 1) {
        if (steps & 1) {
            total_multiplier *= multiplier;
            total_increment = total_increment * multiplier + increment;
        }
        increment *= multiplier + 1; /* the map applied twice */
        multiplier *= multiplier;
    }
    rng->state = total_multiplier * rng->state + total_increment;
}

CNN__PRIVATE void cnn__dropout_forward_fast(size_t count, float rate, const float *x, float *y, unsigned char *mask, cnn_rng *rng,
                                            int threads)
{
    const int blocks = cnn__elementwise_blocks(count, threads);
    int block;
    if (blocks < threads) threads = blocks; /* one block: no region (CNN__PARALLEL_FOR reads threads) */
    CNN__PARALLEL_FOR
    for (block = 0; block < blocks; block++) {
        cnn_rng mine = *rng;
        size_t n, at = cnn__elementwise_block(count, blocks, block, &n);
        cnn__rng_advance(&mine, at);
        cnn__dropout_forward(n, rate, x + at, y + at, mask + at, &mine);
    }
    cnn__rng_advance(rng, count);
}

/* ---------------------------------------------------------------- optimisers

   Each thread takes one fixed block of parameters: every update is
   independent of the others, so the result does not depend on the number
   of threads, and the dry pass reports the first bad index of the first
   block that has one, which is the first overall. SGD's blocks run the
   plain loop; Adam's real pass has a vector loop, and its dry pass a
   quick test that clears 8 parameters at a time. */
#if CNN__VECTORS && defined(__SSE__)
#define CNN__SQRT4 1
typedef float cnn__f4 __attribute__((vector_size(16)));
#endif

/* Adam's real pass over parameters begin .. end-1. Its square root and
   division take most of its time; the vector loop does 4 values at a time
   with the same operations in the same order as the plain loop (x86's
   sqrtps rounds exactly as sqrtf does), so both give the same bits. */
CNN__HOT static void cnn__adam_update_fast(const cnn_optimizer *optimizer, cnn_model *model, const cnn__adam_step *adam,
                                           size_t begin, size_t end)
{
    size_t i = begin;
#ifdef CNN__SQRT4
    float *params = model->params, *m = optimizer->first_moment, *v = optimizer->second_moment;
    const float *grads = model->grads;
    const float b1 = optimizer->desc.beta1, b2 = optimizer->desc.beta2, eps = optimizer->desc.epsilon;
    cnn__f4 g, new_m, new_v, p;
    for (; i + 4 <= end; i += 4) {
        memcpy(&g, grads + i, sizeof g);
        memcpy(&new_m, m + i, sizeof new_m);
        memcpy(&new_v, v + i, sizeof new_v);
        memcpy(&p, params + i, sizeof p);
        new_m = b1 * new_m + (1.0f - b1) * g;
        new_v = b2 * new_v + (1.0f - b2) * g * g;
        p = p - adam->step_size * new_m / ((cnn__f4)_mm_sqrt_ps(new_v) / adam->root_correction2 + eps);
        memcpy(m + i, &new_m, sizeof new_m);
        memcpy(v + i, &new_v, sizeof new_v);
        memcpy(params + i, &p, sizeof p);
    }
#endif
    cnn__optimizer_range(optimizer, model, adam, 1, i, end);
}

/* Adam's dry pass over parameters begin .. end-1: the first whose gradient,
   new moments or new value would not be finite, or end. The plain loop
   computes the new value of every parameter, square root and division
   included. Here 8 parameters are cleared at once without them when all is
   ordinary: g, m, v finite, |p| <= FLT_MAX / 4 and |m| <= max_moment (see
   cnn__optimizer_pass_fast), for then the new value is provably finite. A
   group with anything else goes to the plain loop, which alone decides. */
CNN__HOT static size_t cnn__adam_check_fast(const cnn_optimizer *optimizer, cnn_model *model, const cnn__adam_step *adam,
                                            float max_moment, size_t begin, size_t end)
{
    size_t i = begin;
#if CNN__VECTORS
    const float *params = model->params, *m = optimizer->first_moment, *v = optimizer->second_moment;
    const float *grads = model->grads;
    const float b1 = optimizer->desc.beta1, b2 = optimizer->desc.beta2;
    const cnn__i8 magnitude = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
    cnn__f8 g, new_m, new_v, p;
    cnn__i8 ok;
    int lane, all;
    size_t bad;
    for (; i + 8 <= end; i += 8) {
        CNN__LOAD8(g, grads + i);
        CNN__LOAD8(new_m, m + i);
        CNN__LOAD8(new_v, v + i);
        CNN__LOAD8(p, params + i);
        new_m = b1 * new_m + (1.0f - b1) * g;
        new_v = b2 * new_v + (1.0f - b2) * g * g;
        /* |x| is x's bits with the sign cleared; NaN compares false */
        g = (cnn__f8)((cnn__i8)g & magnitude);
        new_m = (cnn__f8)((cnn__i8)new_m & magnitude);
        p = (cnn__f8)((cnn__i8)p & magnitude);
        ok = (g <= FLT_MAX) & (new_m <= max_moment) & (new_v <= FLT_MAX) & (p <= FLT_MAX / 4.0f);
        for (all = -1, lane = 0; lane < 8; lane++) all &= ok[lane];
        if (all) continue;
        bad = cnn__optimizer_range(optimizer, model, adam, 0, i, i + 8);
        if (bad < i + 8) return bad;
    }
#else
    (void)max_moment;
#endif
    return cnn__optimizer_range(optimizer, model, adam, 0, i, end);
}

CNN__PRIVATE size_t cnn__optimizer_pass_fast(const cnn_optimizer *optimizer, cnn_model *model, long step, int write)
{
    const size_t count = model->param_count;
    const cnn__adam_step adam = cnn__adam_constants(optimizer, step);
    size_t first_bad[256]; /* one per thread: model->threads is at most 256 */
    int threads = count < 16384 ? 1 : model->fast->work.threads, block; /* fewer are not worth a second thread */
    const size_t block_size = (count + (size_t)threads - 1) / (size_t)threads;
    /* With v >= 0 finite, sqrt(v) / sqrt(1 - b2^t) + eps is finite and at
       least eps, so |step_size * m / (...)| <= step_size * |m| / eps, which
       max_moment keeps below FLT_MAX / 4 (with room for rounding); and
       |p| <= FLT_MAX / 4 as well, so p minus it is finite. */
    const double eps = optimizer->desc.epsilon;
    const double step_size = optimizer->desc.learning_rate / (1.0 - pow(optimizer->desc.beta1, (double)step));
    const float max_moment = (float)(FLT_MAX / 8.0 * eps / (step_size > 1.0 ? step_size : 1.0));
    CNN__PARALLEL_FOR
    for (block = 0; block < threads; block++) {
        const size_t begin = (size_t)block * block_size < count ? (size_t)block * block_size : count;
        const size_t end = begin + block_size < count ? begin + block_size : count;
        if (optimizer->desc.type == CNN_OPTIMIZER_SGD) {
            first_bad[block] = cnn__optimizer_range(optimizer, model, &adam, write, begin, end);
        } else if (write) {
            cnn__adam_update_fast(optimizer, model, &adam, begin, end);
            first_bad[block] = end;
        } else {
            first_bad[block] = cnn__adam_check_fast(optimizer, model, &adam, max_moment, begin, end);
        }
        if (first_bad[block] == end) first_bad[block] = count;
    }
    for (block = 0; block < threads; block++)
        if (first_bad[block] < count) return first_bad[block];
    return count;
}

/* ---------------------------------------------------------------- batch normalization

   The plain formulas, with two changes. Each plane of a channel (one
   sample's H x W values) is summed in 8 float lanes, and the plane's total
   is then added into the channel's double sum: the plain loop's one long
   chain of double additions waits on itself, this does not. And threads
   take whole channels, so every channel is summed in one order whatever
   the thread count. The sums' order differs from the plain loops', so the
   results agree with them to rounding, not bit for bit. */

/* The 8 lanes added in a fixed order. */
#if CNN__VECTORS
CNN__INLINE float cnn__lanes_sum(const cnn__f8 *v)
{
    float lanes[8];
    CNN__STORE8(lanes, *v);
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}
#endif

/* sum of x, or with square set, sum of (x - center)^2 */
CNN__HOT static float cnn__plane_sum(size_t count, const float *CNN__RESTRICT x, float center, int square)
{
    float total = 0.0f;
    size_t i = 0;
#if CNN__VECTORS
    cnn__f8 lanes = {0}, v, c = {0};
    c += center;
    for (; i + 8 <= count; i += 8) {
        CNN__LOAD8(v, x + i);
        lanes += square ? (v - c) * (v - c) : v;
    }
    total = cnn__lanes_sum(&lanes);
#endif
    for (; i < count; i++) total += square ? (x[i] - center) * (x[i] - center) : x[i];
    return total;
}

/* sum of dy, and of dy * (x - mean) */
CNN__HOT static void cnn__plane_grad_sums(size_t count, const float *CNN__RESTRICT x, const float *CNN__RESTRICT dy, float mean,
                                          double *dy_sum, double *dy_centered_sum)
{
    float total = 0.0f, total_centered = 0.0f;
    size_t i = 0;
#if CNN__VECTORS
    cnn__f8 lanes = {0}, lanes_centered = {0}, v, g, m = {0};
    m += mean;
    for (; i + 8 <= count; i += 8) {
        CNN__LOAD8(v, x + i);
        CNN__LOAD8(g, dy + i);
        lanes += g;
        lanes_centered += g * (v - m);
    }
    total = cnn__lanes_sum(&lanes);
    total_centered = cnn__lanes_sum(&lanes_centered);
#endif
    for (; i < count; i++) {
        total += dy[i];
        total_centered += dy[i] * (x[i] - mean);
    }
    *dy_sum += total;
    *dy_centered_sum += total_centered;
}

/* out = a * x + b (+ c * extra, when extra is not NULL) */
CNN__HOT static void cnn__plane_affine(size_t count, const float *CNN__RESTRICT x, float a, float b, const float *CNN__RESTRICT extra,
                                       float c, float *CNN__RESTRICT out)
{
    size_t i = 0;
#if CNN__VECTORS
    cnn__f8 va = {0}, vb = {0}, vc = {0}, v, e;
    va += a, vb += b, vc += c;
    for (; i + 8 <= count; i += 8) {
        CNN__LOAD8(v, x + i);
        v = v * va + vb;
        if (extra) {
            CNN__LOAD8(e, extra + i);
            v += e * vc;
        }
        CNN__STORE8(out + i, v);
    }
#endif
    for (; i < count; i++) out[i] = x[i] * a + b + (extra ? extra[i] * c : 0.0f);
}

CNN__PRIVATE void cnn__batch_norm_forward_fast(cnn_layer *layer, int N, cnn_mode mode, const float *x, float *y, int threads)
{
    const int C = layer->in.c;
    const size_t plane_size = (size_t)layer->in.h * layer->in.w, m = (size_t)N * plane_size;
    int c;
    if (m * C < CNN__ELEMENTWISE_BLOCK) threads = 1;
    CNN__PARALLEL_FOR
    for (c = 0; c < C; c++) {
        double mean = 0.0, sum = 0.0, squares = 0.0;
        float scale;
        int n;
        if (mode == CNN_MODE_TRAIN) {
            for (n = 0; n < N; n++) sum += cnn__plane_sum(plane_size, x + ((size_t)n * C + c) * plane_size, 0.0f, 0);
            mean = sum / (double)m;
            for (n = 0; n < N; n++) squares += cnn__plane_sum(plane_size, x + ((size_t)n * C + c) * plane_size, (float)mean, 1);
        }
        scale = cnn__batch_norm_channel(layer, c, mode, mean, squares, m);
        for (n = 0; n < N; n++) {
            const size_t at = ((size_t)n * C + c) * plane_size;
            cnn__plane_affine(plane_size, x + at, scale, layer->bias[c] - layer->batch_mean[c] * scale, NULL, 0.0f, y + at);
        }
    }
    if (mode == CNN_MODE_TRAIN) layer->batches_tracked++;
}

/* dx = gamma inv_std (dy - mean_dy - xhat mean_dy_xhat), xhat = (x - mean) inv_std,
   as k dy + (-k inv_std mean_dy_xhat) x + k (mean inv_std mean_dy_xhat - mean_dy), k = gamma inv_std */
CNN__PRIVATE void cnn__batch_norm_backward_fast(const cnn_layer *layer, int N, cnn_mode mode, const float *x, const float *dy,
                                                float *dx, int threads)
{
    const int C = layer->in.c;
    const size_t plane_size = (size_t)layer->in.h * layer->in.w, m = (size_t)N * plane_size;
    int c;
    if (m * C < CNN__ELEMENTWISE_BLOCK) threads = 1;
    CNN__PARALLEL_FOR
    for (c = 0; c < C; c++) {
        const float mean = layer->batch_mean[c], inv_std = layer->batch_inv_std[c], k = layer->weight[c] * inv_std;
        double dy_sum = 0.0, dy_centered_sum = 0.0, dy_xhat_sum, mean_dy, mean_dy_xhat;
        int n;
        for (n = 0; n < N; n++) {
            const size_t at = ((size_t)n * C + c) * plane_size;
            cnn__plane_grad_sums(plane_size, x + at, dy + at, mean, &dy_sum, &dy_centered_sum);
        }
        dy_xhat_sum = dy_centered_sum * inv_std;
        layer->bias_grad[c] += (float)dy_sum;
        layer->weight_grad[c] += (float)dy_xhat_sum;
        mean_dy = mode == CNN_MODE_TRAIN ? dy_sum / (double)m : 0.0;
        mean_dy_xhat = mode == CNN_MODE_TRAIN ? dy_xhat_sum / (double)m : 0.0;
        for (n = 0; n < N; n++) {
            const size_t at = ((size_t)n * C + c) * plane_size;
            cnn__plane_affine(plane_size, x + at, (float)(-k * inv_std * mean_dy_xhat),
                              (float)(k * (mean * inv_std * mean_dy_xhat - mean_dy)), dy + at, k, dx + at);
        }
    }
}

/* ---------------------------------------------------------------- the model's fast state, and the entry points

   cnn_model_build calls cnn__fast_build, cnn_model_free cnn__fast_free;
   the model's passes call the twins through cnn__layer_forward_fast and
   _backward_fast, which answer 0 for a layer without a twin (average
   pooling, softmax, flatten, dropout outside training and backward): the
   plain loops do those. */

/* Threads (OpenMP's count at the build, at most 256), the workspace that
   conv2d and dense need at max_batch, and the shifts of stride-1 conv2d
   layers, in one allocation. */
CNN__PRIVATE cnn_result cnn__fast_build(cnn_model *model, int max_batch)
{
    size_t shared = 0, per_thread = 0, shift_count = 0, floats = 0, bytes = sizeof(struct cnn__fast);
    struct cnn__fast *fast;
    float *floats_at;
    int *shift_at;
    int i, isa = CNN__ISA_GENERIC, ok = 1, threads = CNN__MAX_THREADS() < 1 ? 1 : CNN__MAX_THREADS() > 256 ? 256 : CNN__MAX_THREADS();
    const cnn_result chosen = cnn__choose_isa(&model->error, &isa);
    if (chosen != CNN_OK) return chosen;
    for (i = 0; i < model->layer_count; i++) {
        const cnn_layer *layer = &model->layers[i];
        size_t need = 0, need_per_thread = 0;
        if (layer->desc.type == CNN_LAYER_CONV2D) {
            need = cnn__conv2d_shared(layer, max_batch);
            need_per_thread = cnn__conv2d_per_thread(layer);
            if (cnn__conv2d_shifted(layer)) shift_count += (size_t)layer->in.c * layer->desc.kernel * layer->desc.kernel;
        }
        if (layer->desc.type == CNN_LAYER_DENSE) need = cnn__dense_shared(layer, max_batch);
        if (layer->desc.type == CNN_LAYER_RESIDUAL_END && layer->weight_count) { /* the projection, run without shifts */
            const cnn_layer projection = cnn__projection(model, layer);
            const size_t col = (size_t)cnn__conv2d_col_rows(&projection) * projection.out.h * projection.out.w +
                               cnn__padded_size(&projection) + (size_t)projection.in.c * CNN__NR;
            need = cnn__conv2d_shared(&projection, max_batch);
            need_per_thread = cnn__conv2d_per_thread(&projection);
            if (col > need_per_thread) need_per_thread = col;
        }
        if (need > shared) shared = need;
        if (need_per_thread > per_thread) per_thread = need_per_thread;
    }
    ok &= cnn__add_size(&floats, shared);
    ok &= cnn__add_product(&floats, per_thread, (size_t)threads);
    ok &= cnn__add_product(&bytes, floats, sizeof(float));
    ok &= cnn__add_product(&bytes, shift_count, sizeof(int));
    if (!ok) return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "the model is too large for this machine's address space");
    fast = (struct cnn__fast *)CNN_MALLOC(bytes);
    if (!fast)
        return cnn__fail(&model->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1,
                         "out of memory allocating %.1f MB for the model's working memory", (double)bytes / 1e6);
    memset(fast, 0, bytes);
    fast->work.isa = isa;
    fast->tuner.period = CNN__TUNER_FIRST_PERIOD;
    fast->tuner.chosen = threads;
    floats_at = (float *)(fast + 1); /* the struct holds pointers: what follows is aligned for floats */
    fast->work.shared = floats_at;
    fast->work.per_thread = floats_at + shared;
    fast->work.per_thread_size = per_thread;
    fast->work.threads = threads;
    shift_at = (int *)(floats_at + floats);
    for (i = 0; i < model->layer_count; i++) {
        const cnn_layer *layer = &model->layers[i];
        int c, u, v, K, Hp, Wp;
        /* only a conv2d's padding is checked: another layer's may hold anything */
        if (layer->desc.type != CNN_LAYER_CONV2D || !cnn__conv2d_shifted(layer)) continue;
        K = layer->desc.kernel;
        Hp = layer->in.h + 2 * layer->desc.padding;
        Wp = layer->in.w + 2 * layer->desc.padding;
        fast->shifts[i] = shift_at;
        for (c = 0; c < layer->in.c; c++)
            for (u = 0; u < K; u++)
                for (v = 0; v < K; v++) *shift_at++ = (c * Hp + u) * Wp + v;
    }
    model->fast = fast;
    model->threads = threads;
    return CNN_OK;
}

/* ---------------------------------------------------------------- the thread tuner

   More threads are not always faster. On a machine where another program
   holds a core, a thread that shares that core keeps the others waiting
   at the end of every parallel loop, and 2 threads can train at half the
   speed of one; a small model may gain nothing from a second thread even
   on a quiet machine. So training steps time themselves. They come in
   periods: a period's steps run on the chosen count (one thread, or all
   of the model's), but its last CNN__TUNER_TRIAL steps, the trial, run on
   the other; at its end, the count that was faster per sample is chosen,
   all threads only when they gain more than CNN__TUNER_GAIN_PERCENT: on a
   busy core a thread stalls every few steps for several steps' time, more
   often than a short trial can tell, and a second thread that gains less
   on a quiet machine is not worth taking a core from other programs.
   The trial is weighed against the steps just run rather than against
   trials of its own, so it costs as few steps on the slower count as can
   be. Every step is timed but a model's first, which touches fresh memory.
   The first step after a change of count is timed too: on a busy machine
   it is the costly one, which wakes threads that must wait for their turn
   on the shared core (up to ten times a step), and waking them recurs on
   such a core while they train. While the choice stays the same, periods grow
   CNN__TUNER_GROWTH-fold, from CNN__TUNER_FIRST_PERIOD to
   CNN__TUNER_LAST_PERIOD steps; when it changes, they start again from the
   first. And a period is long enough for its trial to cost at most
   CNN__TUNER_BUDGET_PERCENT of its time, judged by what the last trial
   cost over the faster count, so on a busy machine trials soon become
   rare. A model starts on all its threads, so the first choice comes
   after 4 steps.
   Results do not depend on the number of threads, so nothing but the speed
   changes. Timing needs a wall clock: elsewhere (cnn__seconds is then
   processor time) every step runs on all threads. */
#if defined(__unix__) || defined(__APPLE__)
#define CNN__TUNER 1
#else
#define CNN__TUNER 0
#endif

/* The threads of the step the tuner is at: the other count in the trial,
   else the chosen one. */
CNN__PRIVATE int cnn__tuner_threads(const cnn_model *model)
{
    const cnn__thread_tuner *tuner = &model->fast->tuner;
    const int other = tuner->chosen == 1 ? model->threads : 1;
    return tuner->step >= tuner->period - CNN__TUNER_TRIAL ? other : tuner->chosen;
}

/* Sets the threads of the step about to run, and returns its start time. */
CNN__PRIVATE double cnn__fast_step_begin(cnn_model *model)
{
    if (!CNN__TUNER || model->threads < 2) return 0.0;
    model->fast->work.threads = cnn__tuner_threads(model);
    return cnn__seconds();
}

/* Adds the step's time per sample (an epoch's last batch may be smaller)
   unless it is the model's first, chooses at the end of the period, and
   gives the model back all its threads for whatever runs between steps. */
CNN__PRIVATE void cnn__fast_step_end(cnn_model *model, double started, int batch)
{
    cnn__thread_tuner *tuner = &model->fast->tuner;
    const int threads = model->fast->work.threads, which = threads == 1 ? 0 : 1;
    if (!CNN__TUNER || model->threads < 2) return;
    if (tuner->last_threads) {
        tuner->seconds[which] += (cnn__seconds() - started) / (batch > 0 ? batch : 1);
        tuner->timed[which]++;
    }
    tuner->last_threads = threads;
    if (++tuner->step == tuner->period) {
        if (tuner->timed[0] && tuner->timed[1]) {
            /* the trial's steps are the period's only steps on the other count, all of them timed */
            const double one = tuner->seconds[0] / tuner->timed[0], all = tuner->seconds[1] / tuner->timed[1];
            const double trial = tuner->seconds[tuner->chosen == 1 ? 1 : 0];
            const double best = one < all ? one : all, over = trial - CNN__TUNER_TRIAL * best;
            const double affordable = over / best * (100.0 / CNN__TUNER_BUDGET_PERCENT); /* steps whose 2% is the trial's cost */
            const int faster = all * (100 + CNN__TUNER_GAIN_PERCENT) < one * 100 ? model->threads : 1;
            if (faster != tuner->chosen) tuner->period = CNN__TUNER_FIRST_PERIOD;
            else tuner->period = tuner->period * CNN__TUNER_GROWTH < CNN__TUNER_LAST_PERIOD ? tuner->period * CNN__TUNER_GROWTH
                                                                                           : (long)CNN__TUNER_LAST_PERIOD;
            if (affordable > tuner->period)
                tuner->period = affordable < CNN__TUNER_LAST_PERIOD ? (long)affordable : (long)CNN__TUNER_LAST_PERIOD;
            tuner->chosen = faster;
        }
        tuner->step = 0;
        tuner->seconds[0] = tuner->seconds[1] = 0.0;
        tuner->timed[0] = tuner->timed[1] = 0;
    }
    model->fast->work.threads = model->threads;
}

CNN__PRIVATE const char *cnn__fast_instruction_set(const cnn_model *model)
{
    return cnn__isa_name(model->fast->work.isa);
}

CNN__PRIVATE void cnn__fast_free(cnn_model *model)
{
    CNN_FREE(model->fast);
    model->fast = NULL;
}

CNN__PRIVATE int cnn__layer_forward_fast(cnn_model *model, int i)
{
    cnn_layer *layer = &model->layers[i];
    const cnn__workspace *work = &model->fast->work;
    const int N = model->batch;
    const float *x = model->activations[i].data;
    float *y = model->activations[i + 1].data;
    const size_t count = (size_t)N * cnn_shape_count(layer->out);
    switch (layer->desc.type) {
    case CNN_LAYER_CONV2D: cnn__conv2d_forward_fast(layer, model->fast->shifts[i], N, x, y, work); return 1;
    case CNN_LAYER_DENSE: cnn__dense_forward_fast(layer, N, x, y, work); return 1;
    case CNN_LAYER_RELU: case CNN_LAYER_LEAKY_RELU: case CNN_LAYER_SIGMOID: case CNN_LAYER_TANH:
        cnn__activation_forward_fast(layer, count, x, y, work->threads);
        return 1;
    case CNN_LAYER_MAX_POOL: cnn__max_pool_forward_fast(layer, N, x, y, layer->argmax, work->threads); return 1;
    case CNN_LAYER_BATCH_NORM: cnn__batch_norm_forward_fast(layer, N, model->mode, x, y, work->threads); return 1;
    case CNN_LAYER_RESIDUAL_END: {
        const cnn_layer projection = cnn__projection(model, layer);
        size_t k;
        if (!layer->weight_count) return 0;
        cnn__conv2d_forward_fast(&projection, NULL, N, model->activations[layer->block_begin].data, y, work);
        for (k = 0; k < count; k++) y[k] += x[k];
        return 1;
    }
    case CNN_LAYER_DROPOUT:
        if (model->mode != CNN_MODE_TRAIN) return 0;
        cnn__dropout_forward_fast(count, layer->desc.rate, x, y, layer->mask, &model->rng, work->threads);
        return 1;
    default: return 0;
    }
}

CNN__PRIVATE int cnn__layer_backward_fast(cnn_model *model, int i, int want_input_grad)
{
    cnn_layer *layer = &model->layers[i];
    const cnn__workspace *work = &model->fast->work;
    const int N = model->batch;
    const float *x = model->activations[i].data, *y = model->activations[i + 1].data;
    const float *dy = model->activation_grads[i + 1].data;
    float *dx = model->activation_grads[i].data;
    const size_t count = (size_t)N * cnn_shape_count(layer->out);
    switch (layer->desc.type) {
    case CNN_LAYER_CONV2D: cnn__conv2d_backward_fast(layer, N, x, dy, want_input_grad ? dx : NULL, work); return 1;
    case CNN_LAYER_DENSE: cnn__dense_backward_fast(layer, N, x, dy, want_input_grad ? dx : NULL, work); return 1;
    case CNN_LAYER_RELU: case CNN_LAYER_LEAKY_RELU: case CNN_LAYER_SIGMOID: case CNN_LAYER_TANH:
        cnn__activation_backward_fast(layer, count, x, y, dy, dx, work->threads);
        return 1;
    case CNN_LAYER_MAX_POOL: cnn__max_pool_backward_fast(layer, N, dy, layer->argmax, dx, work->threads); return 1;
    case CNN_LAYER_BATCH_NORM: cnn__batch_norm_backward_fast(layer, N, model->mode, x, dy, dx, work->threads); return 1;
    case CNN_LAYER_RESIDUAL_END: {
        const cnn_layer projection = cnn__projection(model, layer);
        if (!layer->weight_count) return 0;
        cnn__conv2d_backward_fast(&projection, N, model->activations[layer->block_begin].data, dy, layer->skip_grad, work);
        memcpy(dx, dy, count * sizeof(float));
        return 1;
    }
    default: return 0;
    }
}

#endif /* CNN_NO_FAST */

/* ======================================================================== images (optional: CNN_IMAGES)

   Plain C except for four calls into stb_image (stbi_load_from_memory,
   stbi_image_free, stbi_failure_reason, stbi_is_16_bit_from_memory) and
   one into stb_image_write (stbi_write_png_to_func), declared by the
   headers the including file brings in. cnn.h reads and writes the files itself, so every I/O error is
   its own, and stb's pixel buffers never outlive the call that got them.

   stb_image says why a decode failed through stbi_failure_reason(): one
   variable for the whole program, thread-local only where stb_image.h finds
   a way (C11, C++11, GCC, MSVC; never with STBI_NO_THREAD_LOCALS). cnn.h
   copies the reason into the image's cnn_error at once, but where it is a
   plain global two threads decoding at the same moment may read each other's
   reason - and so even report CNN_ERROR_MALFORMED_DATA for what was out of
   memory, or the reverse. No thread-safety claim is made for those messages;
   pixels never mix. stb's flip-on-load setting is global too: leave it off. */
#ifdef CNN_IMAGES

#ifndef STBI_INCLUDE_STB_IMAGE_H
#error "cnn.h: CNN_IMAGES needs stb_image.h: include it before the cnn.h that defines CNN_IMPLEMENTATION (see OPTIONAL: IMAGES at the top of cnn.h)"
#endif

#include <stdlib.h> /* qsort */
#ifdef _WIN32
#include <io.h>     /* _findfirst */
#else
#include <dirent.h> /* opendir: POSIX, not C99 */
#endif

CNN__PRIVATE void cnn__image_reset(cnn_image *image)
{
    memset(image, 0, sizeof *image);
    cnn__clear_error(&image->error);
}

CNN__PRIVATE int cnn__image_ok(const cnn_image *image)
{
    return image && image->data && image->c >= 1 && image->h >= 1 && image->w >= 1;
}

CNNDEF cnn_result cnn_image_alloc(cnn_image *image, int channels, int height, int width)
{
    size_t count;
    if (!image) return CNN_ERROR_INVALID_ARGUMENT;
    cnn__image_reset(image);
    if (channels < 1 || height < 1 || width < 1)
        return cnn__fail(&image->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "an image needs channels, height and width >= 1 (got %d, %d, %d)", channels, height, width);
    count = cnn__mul_size(cnn__mul_size((size_t)channels, (size_t)height), (size_t)width);
    image->data = cnn__alloc_floats(count);
    if (!image->data)
        return cnn__fail(&image->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory for a %dx%d image of %d channels",
                         width, height, channels);
    memset(image->data, 0, count * sizeof(float));
    image->c = channels;
    image->h = height;
    image->w = width;
    return CNN_OK;
}

CNNDEF void cnn_image_free(cnn_image *image)
{
    if (!image) return;
    CNN_FREE(image->data);
    cnn__image_reset(image);
}

/* What is wrong with a JPEG that stb_image up to v2.27 (Debian 12's) would
   decode unsafely, or NULL when bytes are not a JPEG or none of it is found.
   Fuzzing (tests/fuzz/fuzz_image.c) and valgrind found these faults, so
   cnn.h refuses them before stb_image sees them:
   - a Huffman table (DHT segment) that declares more than 256 codes, or
     more codes of some length than that length holds: v2.27 writes past
     its table's size array, or decodes with a table that reads outside it;
   - a scan (SOS) that decodes with a Huffman table no DHT segment defined:
     v2.27 decodes with uninitialised memory (its assert, or a SEGV);
   - a frame whose components name a quantisation table no DQT segment
     defined before the scan: uninitialised memory again.
   The walk goes from marker to marker: 0xFF, a marker byte, and for most
   markers a big-endian length that counts itself; after a scan header the
   entropy-coded data runs to the next 0xFF that is not 0xFF 0x00 or a
   restart marker. stb_image reads zeros past the end of its input, so a
   table cut short counts only the bytes that are there, and a header cut
   short reads as zeros. Anything else odd is left to stb_image to judge. */
CNN__PRIVATE unsigned cnn__byte_or_zero(const unsigned char *bytes, size_t size, size_t at)
{
    return at < size ? bytes[at] : 0u;
}

CNN__PRIVATE const char *cnn__jpeg_problem(const unsigned char *bytes, size_t size)
{
    size_t at = 2, end, q;
    unsigned huffman_defined = 0; /* bit id: DC tables 0-3; bit 4 + id: AC tables 0-3 */
    unsigned quant_defined = 0, quant_used = 0; /* bit id, tables 0-3 */
    int progressive = 0;
    if (size < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8) return NULL;
    while (at + 4 <= size) {
        int marker;
        if (bytes[at] != 0xFF) return NULL;
        while (at < size && bytes[at] == 0xFF) at++; /* fill bytes */
        if (at + 3 > size) return NULL;
        marker = bytes[at++];
        if (marker == 0xD9) return NULL;                                 /* end of image */
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue; /* no length */
        end = at + ((size_t)bytes[at] << 8 | bytes[at + 1]);
        if (end < at + 2) return NULL;
        if (end > size) end = size;
        if (marker == 0xC4) /* DHT: each table is class and id, 16 counts, the codes */
            for (q = at + 2; q < end;) {
                size_t codes = 0, k, code = 0;
                unsigned table_class = bytes[q] >> 4, id = bytes[q] & 15u;
                for (k = 1; k <= 16 && q + k < end; k++) {
                    codes += bytes[q + k];
                    /* canonical Huffman codes: more codes of length k than
                       fit in k bits (after the shorter ones) cannot be */
                    code += bytes[q + k];
                    if (code > ((size_t)1 << k)) return "a Huffman table declares more codes than fit";
                    code <<= 1;
                }
                if (codes > 256) return "a Huffman table declares more codes than fit";
                if (table_class <= 1 && id <= 3) huffman_defined |= 1u << (table_class * 4 + id);
                q += 17 + codes;
            }
        if (marker == 0xDB) /* DQT: each table is precision and id, then 64 values of 8 or 16 bits */
            for (q = at + 2; q < end; q += (bytes[q] >> 4) ? 129 : 65)
                if ((bytes[q] & 15u) <= 3) quant_defined |= 1u << (bytes[q] & 15u);
        if (marker >= 0xC0 && marker <= 0xC2) { /* SOF: baseline, extended, progressive */
            unsigned components = cnn__byte_or_zero(bytes, size, at + 7), i, table;
            progressive = marker == 0xC2;
            quant_used = 0;
            for (i = 0; i < components && i < 4; i++) /* each: id, sampling, quantisation table */
                if ((table = cnn__byte_or_zero(bytes, size, at + 10 + 3 * i)) <= 3) quant_used |= 1u << table;
        }
        if (marker == 0xDA) { /* SOS: components, each with its DC and AC table ids; then the spectral range */
            unsigned components = cnn__byte_or_zero(bytes, size, at + 2), i;
            unsigned spectral_start = cnn__byte_or_zero(bytes, size, at + 3 + 2 * components);
            unsigned refining = cnn__byte_or_zero(bytes, size, at + 5 + 2 * components) >> 4;
            /* a progressive scan decodes either the first pass of DC
               coefficients (DC tables) or AC coefficients (AC tables) */
            int uses_dc = !progressive || (spectral_start == 0 && refining == 0);
            int uses_ac = !progressive || spectral_start > 0;
            for (i = 0; i < components && i < 4; i++) {
                unsigned tables = cnn__byte_or_zero(bytes, size, at + 4 + 2 * i);
                unsigned dc = tables >> 4, ac = tables & 15u;
                if ((uses_dc && dc <= 3 && !(huffman_defined >> dc & 1u)) ||
                    (uses_ac && ac <= 3 && !(huffman_defined >> (4 + ac) & 1u)))
                    return "a scan uses a Huffman table that was never defined";
            }
            if (quant_used & ~quant_defined) return "a component uses a quantisation table that was never defined";
        }
        at = end;
        if (marker == 0xDA) /* skip the entropy-coded data */
            while (at + 1 < size && !(bytes[at] == 0xFF && bytes[at + 1] != 0x00 && !(bytes[at + 1] >= 0xD0 && bytes[at + 1] <= 0xD7)))
                at++;
    }
    return NULL;
}

/* Decodes with stb_image into image; name is the file's for messages, or
   NULL for a buffer. stb always gives 8-bit RGBA here (it converts), so
   there is one code path. */
CNN__PRIVATE cnn_result cnn__image_decode(cnn_image *image, const unsigned char *bytes, size_t size, int channels, const char *name)
{
    int width = 0, height = 0, file_channels = 0;
    unsigned char *pixels;
    size_t plane, i;
    cnn_result result;
    const char *quote = name ? "'" : "", *jpeg_problem;
    if (!name) name = "the image in memory";
    if (size > (size_t)INT_MAX)
        return cnn__fail(&image->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1, "%s%s%s is too large for stb_image", quote, name, quote);
    if ((jpeg_problem = cnn__jpeg_problem(bytes, size)) != NULL)
        return cnn__fail(&image->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1, "%s%s%s is a damaged JPEG: %s", quote, name, quote,
                         jpeg_problem);
    /* stb_image up to v2.27 turns a 16-bit PNM (maximum value above 255) into
       the 4 channels asked for below as if it were 8-bit, and then reads
       past the end of that buffer (found by fuzzing); so cnn.h refuses them */
    if (size >= 2 && bytes[0] == 'P' && (bytes[1] == '5' || bytes[1] == '6') && stbi_is_16_bit_from_memory(bytes, (int)size))
        return cnn__fail(&image->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1,
                         "%s%s%s is a 16-bit PNM file, which stb_image (v2.27 and older) cannot convert safely", quote, name, quote);
    pixels = stbi_load_from_memory(bytes, (int)size, &width, &height, &file_channels, 4);
    if (!pixels) {
        const char *reason = stbi_failure_reason(); /* see the note above on threads */
        if (!reason) reason = "no reason given";
        if (!strcmp(reason, "outofmem") || !strcmp(reason, "Out of memory"))
            return cnn__fail(&image->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory decoding %s%s%s", quote, name, quote);
        return cnn__fail(&image->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1,
                         "%s%s%s is not an image stb_image can read, or it is damaged (stb_image: %s)", quote, name, quote, reason);
    }
    if (channels == 0) channels = file_channels <= 2 ? 1 : 3;
    result = cnn_image_alloc(image, channels, height, width);
    if (result == CNN_OK) {
        plane = (size_t)width * (size_t)height;
        for (i = 0; i < plane; i++) {
            const unsigned char *p = pixels + 4 * i;
            /* over white: value = alpha * colour + (1 - alpha) * 1 */
            const float alpha = (float)p[3] / 255.0f, white = 1.0f - alpha;
            const float r = alpha * ((float)p[0] / 255.0f) + white;
            const float g = alpha * ((float)p[1] / 255.0f) + white;
            const float b = alpha * ((float)p[2] / 255.0f) + white;
            if (channels == 3) {
                image->data[i] = r;
                image->data[plane + i] = g;
                image->data[2 * plane + i] = b;
            } else {
                /* a grey file gives R = G = B: keep it exactly */
                image->data[i] = file_channels <= 2 ? r : 0.299f * r + 0.587f * g + 0.114f * b;
            }
        }
    }
    stbi_image_free(pixels);
    return result;
}

CNN__PRIVATE cnn_result cnn__image_check_channels(cnn_image *image, int channels)
{
    if (channels == 0 || channels == 1 || channels == 3) return CNN_OK;
    return cnn__fail(&image->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                     "channels must be 0 (as in the file), 1 (grey) or 3 (RGB), not %d", channels);
}

CNNDEF cnn_result cnn_image_load_memory(cnn_image *image, const void *bytes, size_t size, int channels)
{
    cnn_result result;
    if (!image) return CNN_ERROR_INVALID_ARGUMENT;
    cnn__image_reset(image);
    if ((result = cnn__image_check_channels(image, channels)) != CNN_OK) return result;
    if (!bytes || size == 0) return cnn__fail(&image->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1, "no image bytes given");
    return cnn__image_decode(image, (const unsigned char *)bytes, size, channels, NULL);
}

CNNDEF cnn_result cnn_image_load(cnn_image *image, const char *path, int channels)
{
    FILE *file;
    unsigned char *bytes;
    long size;
    int first;
    cnn_result result;
    if (!image) return CNN_ERROR_INVALID_ARGUMENT;
    cnn__image_reset(image);
    if (!path) return cnn__fail(&image->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "no path given");
    if ((result = cnn__image_check_channels(image, channels)) != CNN_OK) return result;
    file = fopen(path, "rb");
    if (!file) return cnn__fail(&image->error, CNN_ERROR_IO, 0, 0, -1, "cannot open '%s' for reading", path);
    first = fgetc(file); /* a folder opens on some systems but cannot be read */
    if (first == EOF) {
        result = ferror(file) ? cnn__fail(&image->error, CNN_ERROR_IO, 0, 0, -1, "cannot read '%s' (is it a folder?)", path)
                              : cnn__fail(&image->error, CNN_ERROR_MALFORMED_DATA, 0, 0, 0, "'%s' is empty", path);
        fclose(file);
        return result;
    }
    if (fseek(file, 0, SEEK_END) != 0 || (size = ftell(file)) <= 0 || fseek(file, 0, SEEK_SET) != 0) {
        fclose(file);
        return cnn__fail(&image->error, CNN_ERROR_IO, 0, 0, -1, "cannot find the size of '%s'", path);
    }
    bytes = (unsigned char *)CNN_MALLOC((size_t)size);
    if (!bytes) {
        fclose(file);
        return cnn__fail(&image->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory reading '%s' (%ld bytes)", path, size);
    }
    if (fread(bytes, 1, (size_t)size, file) != (size_t)size)
        result = cnn__fail(&image->error, CNN_ERROR_IO, 0, 0, -1, "read error in '%s'", path);
    else
        result = cnn__image_decode(image, bytes, (size_t)size, channels, path);
    fclose(file);
    CNN_FREE(bytes);
    return result;
}

/* ---- PNG output through stb_image_write, into a file cnn.h opened */

typedef struct cnn__png_sink {
    FILE *file;
    int failed;
} cnn__png_sink;

CNN__PRIVATE void cnn__png_write(void *context, void *data, int size)
{
    cnn__png_sink *sink = (cnn__png_sink *)context;
    if (size > 0 && fwrite(data, 1, (size_t)size, sink->file) != (size_t)size) sink->failed = 1;
}

CNNDEF cnn_result cnn_image_save_png(cnn_image *image, const char *path)
{
#ifdef INCLUDE_STB_IMAGE_WRITE_H
    cnn__png_sink sink;
    unsigned char *bytes;
    size_t plane, i;
    int k, written;
    if (!image) return CNN_ERROR_INVALID_ARGUMENT;
    if (!cnn__image_ok(image) || (image->c != 1 && image->c != 3) || !path)
        return cnn__fail(&image->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_image_save_png needs a path and an image of 1 or 3 channels");
    plane = (size_t)image->h * (size_t)image->w;
    bytes = (unsigned char *)CNN_MALLOC(cnn__mul_size(plane, (size_t)image->c));
    if (!bytes) return cnn__fail(&image->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory writing '%s'", path);
    for (i = 0; i < plane; i++) /* planar floats to interleaved bytes */
        for (k = 0; k < image->c; k++) {
            float v = image->data[(size_t)k * plane + i];
            v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; /* NaN fails v > 0: 0 */
            bytes[i * (size_t)image->c + (size_t)k] = (unsigned char)(v * 255.0f + 0.5f);
        }
    sink.failed = 0;
    sink.file = fopen(path, "wb");
    if (!sink.file) {
        CNN_FREE(bytes);
        return cnn__fail(&image->error, CNN_ERROR_IO, 0, 0, -1, "cannot create '%s'", path);
    }
    written = stbi_write_png_to_func(cnn__png_write, &sink, image->w, image->h, image->c, bytes, image->w * image->c);
    CNN_FREE(bytes);
    if (fclose(sink.file) != 0) sink.failed = 1;
    if (!written) return cnn__fail(&image->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "stb_image_write could not encode '%s'", path);
    if (sink.failed) return cnn__fail(&image->error, CNN_ERROR_IO, 0, 0, -1, "cannot write '%s' (disk full?)", path);
    return CNN_OK;
#else
    if (!image) return CNN_ERROR_INVALID_ARGUMENT;
    (void)path;
    return cnn__fail(&image->error, CNN_ERROR_STATE, 0, 0, -1,
                     "cnn_image_save_png needs stb_image_write.h included before the implementation of cnn.h");
#endif
}

/* ---- resizing

   Both methods are separable: a 1-D resampling of every row, then of every
   column. A 1-D plan from n_in to n_out samples gives each output o a few
   taps: output[o] = sum over t of weight[o * taps + t] * input[index[o * taps + t]]. */

CNN__PRIVATE cnn_resize cnn__resize_method(cnn_resize method, int n_in, int n_out)
{
    if (method != CNN_RESIZE_DEFAULT) return method;
    return n_out < n_in ? CNN_RESIZE_AREA : CNN_RESIZE_BILINEAR;
}

CNN__PRIVATE int cnn__resize_taps(cnn_resize method, int n_in, int n_out)
{
    /* an area of in / out input pixels overlaps at most ceil(in / out) + 1 */
    if (method == CNN_RESIZE_AREA) return (n_in + n_out - 1) / n_out + 1;
    return 2;
}

CNN__PRIVATE void cnn__resize_plan(cnn_resize method, int n_in, int n_out, int taps, int *index, float *weight)
{
    const double scale = (double)n_in / (double)n_out;
    int o, t;
    for (o = 0; o < n_out; o++) {
        int *ix = index + (size_t)o * (size_t)taps;
        float *wt = weight + (size_t)o * (size_t)taps;
        for (t = 0; t < taps; t++) {
            ix[t] = 0;
            wt[t] = 0.0f;
        }
        if (method == CNN_RESIZE_AREA) {
            /* output o covers input [lo, hi); input pixel j covers [j, j + 1):
               weight = overlap / scale, so the weights add up to 1 */
            const double lo = o * scale, hi = (o + 1) * scale;
            const int first = (int)lo;
            for (t = 0; t < taps && first + t < n_in; t++) {
                const int j = first + t;
                const double overlap = (hi < j + 1 ? hi : j + 1) - (lo > j ? lo : j);
                ix[t] = j;
                wt[t] = overlap > 0.0 ? (float)(overlap / scale) : 0.0f;
            }
        } else {
            /* output o samples input at (o + 0.5) * scale - 0.5, clamped */
            double at = (o + 0.5) * scale - 0.5;
            int j;
            if (at < 0.0) at = 0.0;
            if (at > n_in - 1) at = n_in - 1;
            j = (int)at;
            ix[0] = j;
            ix[1] = j + 1 < n_in ? j + 1 : j;
            wt[1] = (float)(at - j);
            wt[0] = (float)(1.0 - (at - j));
        }
    }
}

CNNDEF cnn_result cnn_image_resize(const cnn_image *in, cnn_image *out, int height, int width, cnn_resize method)
{
    cnn_resize mx, my;
    int tx, ty, c, x, y, t, *index;
    float *weight, *rows;
    size_t plan, ints, floats;
    cnn_result result;
    if (!out || out == in) return CNN_ERROR_INVALID_ARGUMENT;
    cnn__image_reset(out);
    if (!cnn__image_ok(in) || height < 1 || width < 1 || method < CNN_RESIZE_DEFAULT || method > CNN_RESIZE_BILINEAR)
        return cnn__fail(&out->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "cnn_image_resize needs an image, a size >= 1x1 (got %dx%d) and a known method", width, height);
    mx = cnn__resize_method(method, in->w, width);
    my = cnn__resize_method(method, in->h, height);
    tx = cnn__resize_taps(mx, in->w, width);
    ty = cnn__resize_taps(my, in->h, height);
    plan = (size_t)width * (size_t)tx + (size_t)height * (size_t)ty;
    ints = plan;
    floats = plan + cnn__mul_size(cnn__mul_size((size_t)in->c, (size_t)in->h), (size_t)width);
    index = (int *)CNN_MALLOC(cnn__mul_size(ints, sizeof(int)));
    weight = cnn__alloc_floats(floats);
    if (!index || !weight || (result = cnn_image_alloc(out, in->c, height, width)) != CNN_OK) {
        CNN_FREE(index);
        CNN_FREE(weight);
        cnn_image_free(out);
        return cnn__fail(&out->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory resizing to %dx%d", width, height);
    }
    rows = weight + plan; /* (C, in H, width): every row resized */
    cnn__resize_plan(mx, in->w, width, tx, index, weight);
    cnn__resize_plan(my, in->h, height, ty, index + (size_t)width * tx, weight + (size_t)width * tx);
    for (c = 0; c < in->c; c++)
        for (y = 0; y < in->h; y++) {
            const float *src = in->data + ((size_t)c * in->h + y) * in->w;
            float *dst = rows + ((size_t)c * in->h + y) * width;
            for (x = 0; x < width; x++) {
                float sum = 0.0f;
                for (t = 0; t < tx; t++) sum += weight[(size_t)x * tx + t] * src[index[(size_t)x * tx + t]];
                dst[x] = sum;
            }
        }
    for (c = 0; c < in->c; c++)
        for (y = 0; y < height; y++) {
            const int *iy = index + (size_t)width * tx + (size_t)y * ty;
            const float *wy = weight + (size_t)width * tx + (size_t)y * ty;
            float *dst = out->data + ((size_t)c * height + y) * width;
            for (x = 0; x < width; x++) {
                float sum = 0.0f;
                for (t = 0; t < ty; t++) sum += wy[t] * rows[((size_t)c * in->h + iy[t]) * width + x];
                dst[x] = sum;
            }
        }
    CNN_FREE(index);
    CNN_FREE(weight);
    return CNN_OK;
}

CNNDEF cnn_result cnn_image_convert(const cnn_image *in, cnn_image *out, int channels)
{
    size_t plane, i;
    cnn_result result;
    if (!out || out == in) return CNN_ERROR_INVALID_ARGUMENT;
    cnn__image_reset(out);
    if (!cnn__image_ok(in) || (channels != 1 && channels != 3) || (in->c != channels && in->c != 1 && in->c != 3))
        return cnn__fail(&out->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_image_convert goes between 1 and 3 channels");
    if ((result = cnn_image_alloc(out, channels, in->h, in->w)) != CNN_OK) return result;
    plane = (size_t)in->h * (size_t)in->w;
    if (in->c == channels)
        memcpy(out->data, in->data, plane * (size_t)channels * sizeof(float));
    else if (channels == 1)
        for (i = 0; i < plane; i++) out->data[i] = 0.299f * in->data[i] + 0.587f * in->data[plane + i] + 0.114f * in->data[2 * plane + i];
    else
        for (i = 0; i < 3 * plane; i++) out->data[i] = in->data[i % plane];
    return CNN_OK;
}

CNNDEF cnn_result cnn_image_load_resized(cnn_image *image, const char *path, int channels, int height, int width)
{
    cnn_image original;
    cnn_result result;
    if (!image) return CNN_ERROR_INVALID_ARGUMENT;
    if ((result = cnn_image_load(&original, path, channels)) != CNN_OK) {
        cnn__image_reset(image);
        image->error = original.error;
        return result;
    }
    if ((result = cnn_image_resize(&original, image, height, width, CNN_RESIZE_DEFAULT)) != CNN_OK) {
        char reason[sizeof image->error.message];
        memcpy(reason, image->error.message, sizeof reason);
        cnn__fail(&image->error, result, 0, 0, -1, "'%s': %s", path, reason);
    }
    cnn_image_free(&original);
    return result;
}

/* ---- characters */

CNNDEF cnn_result cnn_image_to_character(const cnn_image *in, cnn_image *out, const cnn_character_desc *desc)
{
    cnn_character_desc d;
    cnn_image grey, crop, fitted;
    size_t plane, i;
    double border = 0.0, mass = 0.0, mx = 0.0, my = 0.0, ox, oy;
    float background, peak, fx, fy;
    long border_count = 0;
    int x, y, x0, x1, y0, y1, ix, iy, longest, fw, fh, size;
    cnn_result result;
    if (!out || out == in) return CNN_ERROR_INVALID_ARGUMENT;
    cnn__image_reset(out);
    if (desc) d = *desc;
    else memset(&d, 0, sizeof d);
    if (d.size == 0) d.size = 28;
    if (d.box == 0) d.box = 22;
    if (d.threshold == 0.0f) d.threshold = 0.2f;
    if (!cnn__image_ok(in) || (in->c != 1 && in->c != 3))
        return cnn__fail(&out->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_image_to_character needs a grey or RGB image");
    if (d.size < 1 || d.size > 4096 || d.box < 1 || d.box > d.size || !(d.threshold > 0.0f && d.threshold < 1.0f) ||
        d.invert < CNN_INVERT_AUTO || d.invert > CNN_INVERT_NEVER || d.orientation < CNN_ORIENTATION_DEFAULT ||
        d.orientation > CNN_ORIENTATION_TRANSPOSE || d.resize < CNN_RESIZE_DEFAULT || d.resize > CNN_RESIZE_BILINEAR ||
        d.centre < CNN_CENTRE_DEFAULT || d.centre > CNN_CENTRE_MASS)
        return cnn__fail(&out->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "character settings out of range: need 1 <= box (%d) <= size (%d) <= 4096, 0 < threshold (%g) < 1, known enums",
                         d.box, d.size, (double)d.threshold);
    size = d.size;
    memset(&crop, 0, sizeof crop);
    memset(&fitted, 0, sizeof fitted);

    /* 1. grey, and ink made light on dark */
    if ((result = cnn_image_convert(in, &grey, 1)) != CNN_OK) {
        out->error = grey.error;
        return result;
    }
    plane = (size_t)grey.h * (size_t)grey.w;
    for (y = 0; y < grey.h; y++)
        for (x = 0; x < grey.w; x++)
            if (y == 0 || y == grey.h - 1 || x == 0 || x == grey.w - 1) {
                border += grey.data[(size_t)y * grey.w + x];
                border_count++;
            }
    border /= (double)border_count;
    if (d.invert == CNN_INVERT_ALWAYS || (d.invert == CNN_INVERT_AUTO && border > 0.5)) {
        for (i = 0; i < plane; i++) grey.data[i] = 1.0f - grey.data[i];
        border = 1.0 - border;
    }
    /* 2. background 0, brightest 1 */
    background = (float)border;
    peak = grey.data[0];
    for (i = 1; i < plane; i++)
        if (grey.data[i] > peak) peak = grey.data[i];
    if (!(peak - background >= 0.05f)) {
        cnn_image_free(&grey);
        return cnn__fail(&out->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1,
                         "no character found: the image is blank (ink %.3f against background %.3f)", (double)peak, (double)background);
    }
    for (i = 0; i < plane; i++) {
        float v = (grey.data[i] - background) / (peak - background);
        grey.data[i] = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
    }
    /* 3. the ink's bounding box (the brightest pixel is 1 > threshold, so
       there is one) */
    x0 = grey.w; x1 = -1; y0 = grey.h; y1 = -1;
    for (y = 0; y < grey.h; y++)
        for (x = 0; x < grey.w; x++)
            if (grey.data[(size_t)y * grey.w + x] > d.threshold) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    result = cnn_image_alloc(&crop, 1, y1 - y0 + 1, x1 - x0 + 1);
    if (result == CNN_OK)
        for (y = 0; y < crop.h; y++)
            memcpy(crop.data + (size_t)y * crop.w, grey.data + (size_t)(y0 + y) * grey.w + x0, (size_t)crop.w * sizeof(float));
    cnn_image_free(&grey);
    /* 4. fit into box x box, aspect kept */
    if (result == CNN_OK) {
        longest = crop.w > crop.h ? crop.w : crop.h;
        fw = (int)((double)crop.w * d.box / longest + 0.5);
        fh = (int)((double)crop.h * d.box / longest + 0.5);
        result = cnn_image_resize(&crop, &fitted, fh < 1 ? 1 : fh, fw < 1 ? 1 : fw, d.resize);
        if (result != CNN_OK) out->error = fitted.error;
    } else {
        out->error = crop.error;
    }
    cnn_image_free(&crop);
    if (result != CNN_OK) return result;
    /* 5. the box's middle or the centre of mass to the centre of the field.
       Pixel x spans [x, x + 1), so its mass sits at x + 0.5, the middle of
       the box is at w / 2 and the field's centre at size / 2. Moving by
       o = ix + fx (ix whole, 0 <= fx < 1) puts (1 - fx) of each pixel at
       x + ix and fx at x + ix + 1: box and centre of mass move by exactly o. */
    for (y = 0; y < fitted.h; y++)
        for (x = 0; x < fitted.w; x++) {
            const double v = fitted.data[(size_t)y * fitted.w + x];
            mass += v;
            mx += v * (x + 0.5);
            my += v * (y + 0.5);
        }
    if (!(mass > 0.0)) {
        cnn_image_free(&fitted);
        return cnn__fail(&out->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1, "no character found: no ink left after resizing");
    }
    if (d.centre == CNN_CENTRE_MASS) {
        ox = size / 2.0 - mx / mass;
        oy = size / 2.0 - my / mass;
    } else {
        ox = (size - fitted.w) / 2.0;
        oy = (size - fitted.h) / 2.0;
    }
    ix = (int)floor(ox);
    iy = (int)floor(oy);
    fx = (float)(ox - ix);
    fy = (float)(oy - iy);
    if ((result = cnn_image_alloc(out, 1, size, size)) != CNN_OK) {
        cnn_image_free(&fitted);
        return result;
    }
    peak = 0.0f;
    for (y = 0; y < size; y++)
        for (x = 0; x < size; x++) {
            float v = 0.0f;
            int dy, dx;
            for (dy = 0; dy < 2; dy++)
                for (dx = 0; dx < 2; dx++) {
                    const int sy = y - iy - dy, sx = x - ix - dx;
                    if (sy >= 0 && sy < fitted.h && sx >= 0 && sx < fitted.w)
                        v += (dy ? fy : 1.0f - fy) * (dx ? fx : 1.0f - fx) * fitted.data[(size_t)sy * fitted.w + sx];
                }
            /* 6. EMNIST's orientation if asked: (row, column) swapped */
            if (d.orientation == CNN_ORIENTATION_TRANSPOSE) out->data[(size_t)x * size + y] = v;
            else out->data[(size_t)y * size + x] = v;
            if (v > peak) peak = v;
        }
    cnn_image_free(&fitted);
    if (peak > 0.0f)
        for (i = 0; i < (size_t)size * size; i++) out->data[i] /= peak;
    return CNN_OK;
}

CNNDEF cnn_result cnn_image_prepare(const cnn_image *in, cnn_image *out, cnn_shape input, const cnn_character_desc *desc)
{
    cnn_character_desc character;
    cnn_image converted;
    cnn_result result;
    if (!out || out == in) return CNN_ERROR_INVALID_ARGUMENT;
    cnn__image_reset(out);
    if (!cnn__image_ok(in)) return cnn__fail(&out->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_image_prepare: no picture");
    if (input.c == 1 && input.h == input.w && input.h > 0) {
        if (desc) character = *desc;
        else memset(&character, 0, sizeof character);
        character.size = input.h;
        if (character.box == 0) character.box = (input.h * 22 + 14) / 28 > 0 ? (input.h * 22 + 14) / 28 : 1; /* 22 of 28, as EMNIST */
        return cnn_image_to_character(in, out, &character);
    }
    if ((input.c != 1 && input.c != 3) || input.h <= 0 || input.w <= 0)
        return cnn__fail(&out->error, CNN_ERROR_BAD_SHAPE, 0, 0, -1,
                         "a model with input (%d, %d, %d) takes no pictures: pictures have 1 or 3 channels", input.c, input.h, input.w);
    if (in->c == input.c) return cnn_image_resize(in, out, input.h, input.w, CNN_RESIZE_DEFAULT);
    if ((result = cnn_image_convert(in, &converted, input.c)) != CNN_OK) {
        out->error = converted.error;
        return result;
    }
    result = cnn_image_resize(&converted, out, input.h, input.w, CNN_RESIZE_DEFAULT);
    cnn_image_free(&converted);
    return result;
}

/* ---- image folders */

/* Names in a folder, each its own allocation. */
typedef struct cnn__names {
    char **names;
    int count, capacity;
} cnn__names;

CNN__PRIVATE void cnn__names_free(cnn__names *list)
{
    int i;
    for (i = 0; i < list->count; i++) CNN_FREE(list->names[i]);
    CNN_FREE(list->names);
    memset(list, 0, sizeof *list);
}

CNN__PRIVATE int cnn__names_add(cnn__names *list, const char *name)
{
    size_t length = strlen(name);
    if (list->count == INT_MAX / 2) return 0;
    if (list->count == list->capacity) { /* no realloc: CNN_MALLOC/CNN_FREE are the allocator */
        int capacity = list->capacity ? 2 * list->capacity : 16;
        char **grown = (char **)CNN_MALLOC((size_t)capacity * sizeof(char *));
        if (!grown) return 0;
        if (list->count) memcpy(grown, list->names, (size_t)list->count * sizeof(char *));
        CNN_FREE(list->names);
        list->names = grown;
        list->capacity = capacity;
    }
    list->names[list->count] = (char *)CNN_MALLOC(length + 1);
    if (!list->names[list->count]) return 0;
    memcpy(list->names[list->count], name, length + 1);
    list->count++;
    return 1;
}

CNN__PRIVATE int cnn__compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "dir/name" in a new allocation, or NULL. */
CNN__PRIVATE char *cnn__join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/' && dir[a - 1] != '\\';
    char *path = (char *)CNN_MALLOC(a + (size_t)slash + b + 1);
    if (!path) return NULL;
    memcpy(path, dir, a);
    if (slash) path[a] = '/';
    memcpy(path + a + slash, name, b + 1);
    return path;
}

CNN__PRIVATE int cnn__is_image_name(const char *name)
{
    static const char *const extensions[] = {"png", "jpg", "jpeg", "bmp", "gif", "tga", "psd", "hdr", "pgm", "ppm", "pnm"};
    const char *dot = strrchr(name, '.');
    size_t e, k;
    if (!dot) return 0;
    dot++;
    for (e = 0; e < sizeof extensions / sizeof extensions[0]; e++) {
        const char *x = extensions[e];
        for (k = 0; x[k] && dot[k]; k++) {
            int c = dot[k] >= 'A' && dot[k] <= 'Z' ? dot[k] - 'A' + 'a' : dot[k];
            if (c != x[k]) break;
        }
        if (!x[k] && !dot[k]) return 1;
    }
    return 0;
}

/* The sub-folders (folders != 0) or the image files of dir, sorted. */
CNN__PRIVATE cnn_result cnn__list_folder(const char *dir, int folders, cnn__names *list, cnn_error *error)
{
    int ok = 1;
    memset(list, 0, sizeof *list);
#ifdef _WIN32
    {
        struct _finddata_t found;
        intptr_t handle;
        char *pattern = cnn__join_path(dir, "*");
        if (!pattern) return cnn__fail(error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory");
        handle = _findfirst(pattern, &found);
        CNN_FREE(pattern);
        if (handle == -1) return cnn__fail(error, CNN_ERROR_IO, 0, 0, -1, "cannot open the folder '%s'", dir);
        do {
            const int is_folder = (found.attrib & _A_SUBDIR) != 0;
            if (found.name[0] == '.') continue;
            if (folders ? is_folder : !is_folder && cnn__is_image_name(found.name)) ok = cnn__names_add(list, found.name);
        } while (ok && _findnext(handle, &found) == 0);
        _findclose(handle);
    }
#else
    {
        DIR *folder = opendir(dir);
        struct dirent *entry;
        if (!folder) return cnn__fail(error, CNN_ERROR_IO, 0, 0, -1, "cannot open the folder '%s'", dir);
        while (ok && (entry = readdir(folder)) != NULL) {
            const char *name = entry->d_name;
            if (name[0] == '.') continue;
            if (folders) { /* d_type is not POSIX: a folder is what opens as one */
                char *path = cnn__join_path(dir, name);
                DIR *inner = path ? opendir(path) : NULL;
                CNN_FREE(path);
                if (!inner) continue;
                closedir(inner);
            } else if (!cnn__is_image_name(name)) {
                continue;
            }
            ok = cnn__names_add(list, name);
        }
        closedir(folder);
    }
#endif
    if (!ok) {
        cnn__names_free(list);
        return cnn__fail(error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory listing '%s'", dir);
    }
    if (list->count > 1) qsort(list->names, (size_t)list->count, sizeof(char *), cnn__compare_names);
    return CNN_OK;
}

CNNDEF void cnn_image_folders_free(cnn_image_folders *folders)
{
    if (!folders) return;
    cnn_dataset_free(&folders->train);
    cnn_dataset_free(&folders->validation);
    CNN_FREE(folders->class_names);
    memset(folders, 0, sizeof *folders);
    cnn__clear_error(&folders->error);
    cnn__clear_error(&folders->train.error);
    cnn__clear_error(&folders->validation.error);
}

CNN__PRIVATE cnn_result cnn__folders_alloc(cnn_dataset *data, int count, int classes, const cnn_folder_desc *d)
{
    memset(data, 0, sizeof *data);
    cnn__clear_error(&data->error);
    data->num_classes = classes;
    if (count == 0) return CNN_OK;
    if (cnn_tensor_alloc(&data->images, count, d->channels, d->height, d->width) != CNN_OK) return CNN_ERROR_OUT_OF_MEMORY;
    data->labels = (int *)CNN_MALLOC((size_t)count * sizeof(int));
    if (!data->labels) return CNN_ERROR_OUT_OF_MEMORY;
    data->count = count;
    return CNN_OK;
}

CNNDEF cnn_result cnn_image_folders_load(cnn_image_folders *folders, const char *root, const cnn_folder_desc *desc)
{
    cnn_folder_desc d;
    cnn__names classes, *files = NULL;
    int *held_out = NULL, k, i, n_train = 0, n_val = 0;
    size_t sample, name_bytes = 0;
    cnn_rng rng;
    cnn_result result = CNN_OK;
    if (!folders) return CNN_ERROR_INVALID_ARGUMENT;
    memset(folders, 0, sizeof *folders);
    cnn__clear_error(&folders->error);
    cnn__clear_error(&folders->train.error);
    cnn__clear_error(&folders->validation.error);
    if (desc) d = *desc;
    else memset(&d, 0, sizeof d);
    if (d.channels == 0) d.channels = 3;
    if (d.width == 0) d.width = 32;
    if (d.height == 0) d.height = 32;
    if (d.validation == 0.0f) d.validation = 0.3f;
    if (d.validation < 0.0f) d.validation = 0.0f;
    if (!root || (d.channels != 1 && d.channels != 3) || d.width < 1 || d.height < 1 || d.width > 65536 || d.height > 65536 ||
        !(d.validation < 1.0f))
        return cnn__fail(&folders->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1,
                         "cnn_image_folders_load needs a root, channels 1 or 3, a size of at least 1x1 and a validation fraction below 1");
    if ((result = cnn__list_folder(root, 1, &classes, &folders->error)) != CNN_OK) return result;
    if (classes.count == 0 || classes.count > CNN_MAX_CLASSES) {
        if (classes.count == 0)
            result = cnn__fail(&folders->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1,
                               "'%s' has no sub-folders: put the images of each class in a sub-folder named after it", root);
        else
            result = cnn__fail(&folders->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1,
                               "'%s' has %d sub-folders; at most %d classes are allowed", root, classes.count, CNN_MAX_CLASSES);
        cnn__names_free(&classes);
        return result;
    }
    files = (cnn__names *)CNN_MALLOC((size_t)classes.count * sizeof(cnn__names));
    held_out = (int *)CNN_MALLOC((size_t)classes.count * sizeof(int));
    if (!files || !held_out) result = cnn__fail(&folders->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory");
    else memset(files, 0, (size_t)classes.count * sizeof(cnn__names));

    /* the files of each class, sorted, then shuffled by the seed: the first
       held_out[k] of them are the validation images */
    cnn_rng_seed(&rng, d.seed);
    for (k = 0; result == CNN_OK && k < classes.count; k++) {
        char *path = cnn__join_path(root, classes.names[k]);
        if (!path) {
            result = cnn__fail(&folders->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory");
            break;
        }
        result = cnn__list_folder(path, 0, &files[k], &folders->error);
        if (result == CNN_OK && files[k].count == 0)
            result = cnn__fail(&folders->error, CNN_ERROR_MALFORMED_DATA, 0, 0, -1,
                               "class folder '%s' holds no images (png, jpg, bmp, gif, tga, psd, hdr, pnm)", path);
        CNN_FREE(path);
        if (result != CNN_OK) break;
        for (i = files[k].count - 1; i > 0; i--) {
            int j = (int)cnn_rng_below(&rng, (uint32_t)i + 1u);
            char *swap = files[k].names[i];
            files[k].names[i] = files[k].names[j];
            files[k].names[j] = swap;
        }
        held_out[k] = (int)((double)files[k].count * d.validation + 0.5);
        if (held_out[k] > files[k].count - 1) held_out[k] = files[k].count - 1;
        if (files[k].count > INT_MAX / 2 - n_train - n_val) {
            result = cnn__fail(&folders->error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "too many images under '%s'", root);
            break;
        }
        n_val += held_out[k];
        n_train += files[k].count - held_out[k];
        name_bytes += strlen(classes.names[k]) + 1;
    }

    /* the datasets and the class names: pointers, then the strings */
    if (result == CNN_OK) {
        if (cnn__folders_alloc(&folders->train, n_train, classes.count, &d) != CNN_OK ||
            cnn__folders_alloc(&folders->validation, n_val, classes.count, &d) != CNN_OK ||
            !(folders->class_names = (char **)CNN_MALLOC((size_t)classes.count * sizeof(char *) + name_bytes)))
            result = cnn__fail(&folders->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1,
                               "out of memory for %d images of %dx%dx%d", n_train + n_val, d.channels, d.height, d.width);
    }
    if (result == CNN_OK) {
        char *at = (char *)(folders->class_names + classes.count);
        folders->class_count = classes.count;
        for (k = 0; k < classes.count; k++) {
            size_t length = strlen(classes.names[k]) + 1;
            memcpy(at, classes.names[k], length);
            folders->class_names[k] = at;
            at += length;
        }
    }

    /* every image, resized, into its slot */
    sample = (size_t)d.channels * (size_t)d.height * (size_t)d.width;
    n_train = n_val = 0;
    for (k = 0; result == CNN_OK && k < classes.count; k++) {
        char *folder = cnn__join_path(root, classes.names[k]);
        for (i = 0; result == CNN_OK && i < files[k].count; i++) {
            cnn_dataset *into = i < held_out[k] ? &folders->validation : &folders->train;
            int *slot = i < held_out[k] ? &n_val : &n_train;
            char *path = folder ? cnn__join_path(folder, files[k].names[i]) : NULL;
            cnn_image image;
            if (!path) {
                result = cnn__fail(&folders->error, CNN_ERROR_OUT_OF_MEMORY, 0, 0, -1, "out of memory");
                break;
            }
            result = cnn_image_load_resized(&image, path, d.channels, d.height, d.width);
            if (result == CNN_OK) {
                memcpy(into->images.data + (size_t)*slot * sample, image.data, sample * sizeof(float));
                into->labels[*slot] = k;
                (*slot)++;
                cnn_image_free(&image);
            } else {
                folders->error = image.error;
            }
            CNN_FREE(path);
        }
        CNN_FREE(folder);
    }

    for (k = 0; files && k < classes.count; k++) cnn__names_free(&files[k]);
    CNN_FREE(files);
    CNN_FREE(held_out);
    cnn__names_free(&classes);
    if (result != CNN_OK) {
        cnn_error error = folders->error;
        cnn_image_folders_free(folders);
        folders->error = error;
    }
    return result;
}

/* ---- augmentation */

CNNDEF cnn_result cnn_augment_images(float *images, int count, cnn_shape shape, const cnn_augment_desc *desc, cnn_rng *rng)
{
    const int C = shape.c, H = shape.h, W = shape.w;
    size_t plane, sample;
    float *copy = NULL;
    int n, c, x, y;
    if (!images || !desc || !rng || count < 0 || cnn_shape_count(shape) == 0 || !(desc->rotate >= 0.0f && desc->rotate <= 180.0f) ||
        !(desc->shift >= 0.0f && desc->shift <= 1.0f))
        return CNN_ERROR_INVALID_ARGUMENT;
    plane = (size_t)H * (size_t)W;
    sample = (size_t)C * plane;
    if (desc->rotate > 0.0f || desc->shift > 0.0f) {
        copy = cnn__alloc_floats(sample);
        if (!copy) return CNN_ERROR_OUT_OF_MEMORY;
    }
    for (n = 0; n < count; n++) {
        float *image = images + (size_t)n * sample;
        const int flip = desc->flip && cnn_rng_below(rng, 2) == 1;
        const double angle = desc->rotate > 0.0f ? (2.0 * cnn_rng_uniform(rng) - 1.0) * desc->rotate * CNN__PI / 180.0 : 0.0;
        const double tx = desc->shift > 0.0f ? (2.0 * cnn_rng_uniform(rng) - 1.0) * desc->shift * W : 0.0;
        const double ty = desc->shift > 0.0f ? (2.0 * cnn_rng_uniform(rng) - 1.0) * desc->shift * H : 0.0;
        if (flip)
            for (c = 0; c < C; c++)
                for (y = 0; y < H; y++) {
                    float *row = image + (size_t)c * plane + (size_t)y * W;
                    for (x = 0; x < W / 2; x++) {
                        float swap = row[x];
                        row[x] = row[W - 1 - x];
                        row[W - 1 - x] = swap;
                    }
                }
        if (copy && (angle != 0.0 || tx != 0.0 || ty != 0.0)) {
            /* each output pixel takes the input at the inverse of (rotate by
               angle about the centre, then move by (tx, ty)), bilinearly */
            const double cosine = cos(angle), sine = sin(angle), cx = (W - 1) / 2.0, cy = (H - 1) / 2.0;
            memcpy(copy, image, sample * sizeof(float));
            for (y = 0; y < H; y++)
                for (x = 0; x < W; x++) {
                    const double dx = x - cx - tx, dy = y - cy - ty;
                    double sx = cosine * dx + sine * dy + cx, sy = -sine * dx + cosine * dy + cy;
                    int x0, y0, x1, y1;
                    float fx, fy;
                    sx = sx < 0.0 ? 0.0 : (sx > W - 1 ? W - 1 : sx); /* outside: the nearest edge */
                    sy = sy < 0.0 ? 0.0 : (sy > H - 1 ? H - 1 : sy);
                    x0 = (int)sx;
                    y0 = (int)sy;
                    x1 = x0 + 1 < W ? x0 + 1 : x0;
                    y1 = y0 + 1 < H ? y0 + 1 : y0;
                    fx = (float)(sx - x0);
                    fy = (float)(sy - y0);
                    for (c = 0; c < C; c++) {
                        const float *p = copy + (size_t)c * plane;
                        const float top = (1.0f - fx) * p[(size_t)y0 * W + x0] + fx * p[(size_t)y0 * W + x1];
                        const float bottom = (1.0f - fx) * p[(size_t)y1 * W + x0] + fx * p[(size_t)y1 * W + x1];
                        image[(size_t)c * plane + (size_t)y * W + x] = (1.0f - fy) * top + fy * bottom;
                    }
                }
        }
    }
    CNN_FREE(copy);
    return CNN_OK;
}

CNNDEF cnn_result cnn_augment_batch(cnn_model *model, float *images, int *labels, int batch, void *augmenter)
{
    cnn_augmenter *a = (cnn_augmenter *)augmenter;
    (void)labels;
    if (!model || !a) return CNN_ERROR_INVALID_ARGUMENT;
    return cnn_augment_images(images, batch, model->input, &a->desc, &a->rng);
}

/* ---- pictures of training

   Everything is drawn by hand into a planar RGB cnn_image (floats in
   [0, 1], white to start with) and written by cnn_image_save_png: filled
   rectangles, lines made of square dabs, and text in a bitmap font. Drawing
   outside the image is clipped, so callers need not check. */

typedef struct cnn__plot_colour {
    float r, g, b;
} cnn__plot_colour;

CNN__PRIVATE cnn__plot_colour cnn__plot_rgb(float r, float g, float b)
{
    cnn__plot_colour c;
    c.r = r, c.g = g, c.b = b;
    return c;
}
#define CNN__WHITE cnn__plot_rgb(1.0f, 1.0f, 1.0f)
#define CNN__BLACK cnn__plot_rgb(0.0f, 0.0f, 0.0f)
#define CNN__GREY cnn__plot_rgb(0.45f, 0.45f, 0.45f)
#define CNN__LIGHT_GREY cnn__plot_rgb(0.88f, 0.88f, 0.88f)
#define CNN__BLUE cnn__plot_rgb(0.12f, 0.47f, 0.71f)   /* training */
#define CNN__ORANGE cnn__plot_rgb(1.00f, 0.50f, 0.05f) /* validation */
#define CNN__GREEN cnn__plot_rgb(0.10f, 0.50f, 0.15f)  /* the true class */
#define CNN__RED cnn__plot_rgb(0.80f, 0.10f, 0.10f)    /* a wrong prediction */

CNN__PRIVATE void cnn__plot_pixel(cnn_image *image, int x, int y, cnn__plot_colour colour)
{
    size_t plane = (size_t)image->h * (size_t)image->w, at;
    if (x < 0 || y < 0 || x >= image->w || y >= image->h) return; /* clip */
    at = (size_t)y * (size_t)image->w + (size_t)x;
    image->data[at] = colour.r;
    image->data[plane + at] = colour.g;
    image->data[2 * plane + at] = colour.b;
}

CNN__PRIVATE void cnn__plot_fill(cnn_image *image, int x, int y, int width, int height, cnn__plot_colour colour)
{
    int i, j;
    for (j = y; j < y + height; j++)
        for (i = x; i < x + width; i++) cnn__plot_pixel(image, i, j, colour);
}

/* A one-pixel outline of the rectangle. */
CNN__PRIVATE void cnn__plot_frame(cnn_image *image, int x, int y, int width, int height, cnn__plot_colour colour)
{
    cnn__plot_fill(image, x, y, width, 1, colour);
    cnn__plot_fill(image, x, y + height - 1, width, 1, colour);
    cnn__plot_fill(image, x, y, 1, height, colour);
    cnn__plot_fill(image, x + width - 1, y, 1, height, colour);
}

/* A line `thickness` pixels wide: a square dab at every pixel step along
   the longer axis. */
CNN__PRIVATE void cnn__plot_line(cnn_image *image, float x0, float y0, float x1, float y1, int thickness, cnn__plot_colour colour)
{
    float dx = x1 - x0, dy = y1 - y0;
    int steps = (int)ceil(fabs(dx) > fabs(dy) ? fabs(dx) : fabs(dy)), i;
    if (steps < 1) steps = 1;
    for (i = 0; i <= steps; i++) {
        float t = (float)i / (float)steps;
        int x = (int)floor(x0 + t * dx + 0.5f) - thickness / 2, y = (int)floor(y0 + t * dy + 0.5f) - thickness / 2;
        cnn__plot_fill(image, x, y, thickness, thickness, colour);
    }
}

/* The font: 5 x 9 pixels a glyph, drawn for these pictures. Rows 0-6 hold
   capitals and digits, rows 7-8 the descenders of g, j, p, q, y and the
   comma. A glyph is its rows, top first, separated by spaces ('#' ink, '.'
   paper); rows left out are blank. The zero is slashed so it never reads as
   the letter O, and I, l and 1 differ: EMNIST's mistakes are often between
   exactly those. CNN__ARROW is a right arrow, for "true -> predicted". */
#define CNN__GLYPH_WIDTH 5
#define CNN__GLYPH_HEIGHT 9
#define CNN__ADVANCE 6 /* the glyph and one column of space */
#define CNN__ARROW '\x1a'

CNN__PRIVATE const char *cnn__plot_glyph(char character)
{
    static const struct { char character; const char *rows; } font[] = {
        {' ', ""},
        {CNN__ARROW, "..... ..#.. ...#. ##### ...#. ..#.. ....."},
        {'!', "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.."},
        {'%', "##... ##..# ...#. ..#.. .#... #..## ...##"},
        {'\'', "..#.. ..#.. ..... ..... ..... ..... ....."},
        {'(', "...#. ..#.. .#... .#... .#... ..#.. ...#."},
        {')', ".#... ..#.. ...#. ...#. ...#. ..#.. .#..."},
        {'+', "..... ..#.. ..#.. ##### ..#.. ..#.. ....."},
        {',', "..... ..... ..... ..... ..... ..#.. ..#.. .#..."},
        {'-', "..... ..... ..... ##### ..... ..... ....."},
        {'.', "..... ..... ..... ..... ..... ..... ..#.."},
        {'/', "....# ....# ...#. ..#.. .#... #.... #...."},
        {':', "..... ..#.. ..#.. ..... ..#.. ..#.. ....."},
        {'=', "..... ..... ##### ..... ##### ..... ....."},
        {'<', "...#. ..#.. .#... #.... .#... ..#.. ...#."},
        {'>', ".#... ..#.. ...#. ....# ...#. ..#.. .#..."},
        {'?', ".###. #...# ....# ...#. ..#.. ..... ..#.."},
        {'_', "..... ..... ..... ..... ..... ..... #####"},
        {'0', ".###. #...# #..## #.#.# ##..# #...# .###."},
        {'1', "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###."},
        {'2', ".###. #...# ....# ...#. ..#.. .#... #####"},
        {'3', "##### ...#. ..#.. ...#. ....# #...# .###."},
        {'4', "...#. ..##. .#.#. #..#. ##### ...#. ...#."},
        {'5', "##### #.... ####. ....# ....# #...# .###."},
        {'6', "..##. .#... #.... ####. #...# #...# .###."},
        {'7', "##### ....# ...#. ..#.. .#... .#... .#..."},
        {'8', ".###. #...# #...# .###. #...# #...# .###."},
        {'9', ".###. #...# #...# .#### ....# ...#. .##.."},
        {'A', ".###. #...# #...# ##### #...# #...# #...#"},
        {'B', "####. #...# #...# ####. #...# #...# ####."},
        {'C', ".###. #...# #.... #.... #.... #...# .###."},
        {'D', "###.. #..#. #...# #...# #...# #..#. ###.."},
        {'E', "##### #.... #.... ####. #.... #.... #####"},
        {'F', "##### #.... #.... ####. #.... #.... #...."},
        {'G', ".###. #...# #.... #.### #...# #...# .####"},
        {'H', "#...# #...# #...# ##### #...# #...# #...#"},
        {'I', ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###."},
        {'J', "..### ...#. ...#. ...#. ...#. #..#. .##.."},
        {'K', "#...# #..#. #.#.. ##... #.#.. #..#. #...#"},
        {'L', "#.... #.... #.... #.... #.... #.... #####"},
        {'M', "#...# ##.## #.#.# #.#.# #...# #...# #...#"},
        {'N', "#...# #...# ##..# #.#.# #..## #...# #...#"},
        {'O', ".###. #...# #...# #...# #...# #...# .###."},
        {'P', "####. #...# #...# ####. #.... #.... #...."},
        {'Q', ".###. #...# #...# #...# #.#.# #..#. .##.#"},
        {'R', "####. #...# #...# ####. #.#.. #..#. #...#"},
        {'S', ".###. #...# #.... .###. ....# #...# .###."},
        {'T', "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."},
        {'U', "#...# #...# #...# #...# #...# #...# .###."},
        {'V', "#...# #...# #...# #...# #...# .#.#. ..#.."},
        {'W', "#...# #...# #...# #.#.# #.#.# #.#.# .#.#."},
        {'X', "#...# #...# .#.#. ..#.. .#.#. #...# #...#"},
        {'Y', "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.."},
        {'Z', "##### ....# ...#. ..#.. .#... #.... #####"},
        {'a', "..... ..... .###. ....# .#### #...# .####"},
        {'b', "#.... #.... #.##. ##..# #...# #...# ####."},
        {'c', "..... ..... .###. #.... #.... #...# .###."},
        {'d', "....# ....# .##.# #..## #...# #...# .####"},
        {'e', "..... ..... .###. #...# ##### #.... .###."},
        {'f', "..##. .#..# .#... ###.. .#... .#... .#..."},
        {'g', "..... ..... .#### #...# #...# .#### ....# ....# .###."},
        {'h', "#.... #.... #.##. ##..# #...# #...# #...#"},
        {'i', "..#.. ..... .##.. ..#.. ..#.. ..#.. .###."},
        {'j', "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##.."},
        {'k', "#.... #.... #..#. #.#.. ##... #.#.. #..#."},
        {'l', ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. ..##."},
        {'m', "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#"},
        {'n', "..... ..... #.##. ##..# #...# #...# #...#"},
        {'o', "..... ..... .###. #...# #...# #...# .###."},
        {'p', "..... ..... ####. #...# #...# #...# ####. #.... #...."},
        {'q', "..... ..... .#### #...# #...# #...# .#### ....# ....#"},
        {'r', "..... ..... #.##. ##..# #.... #.... #...."},
        {'s', "..... ..... .###. #.... .###. ....# ####."},
        {'t', ".#... .#... ###.. .#... .#... .#..# ..##."},
        {'u', "..... ..... #...# #...# #...# #..## .##.#"},
        {'v', "..... ..... #...# #...# #...# .#.#. ..#.."},
        {'w', "..... ..... #...# #...# #.#.# #.#.# .#.#."},
        {'x', "..... ..... #...# .#.#. ..#.. .#.#. #...#"},
        {'y', "..... ..... #...# #...# #...# .#### ....# #...# .###."},
        {'z', "..... ..... ##### ...#. ..#.. .#... #####"},
    };
    size_t i;
    for (i = 0; i < sizeof font / sizeof font[0]; i++)
        if (font[i].character == character) return font[i].rows;
    return "##### #...# #...# #...# #...# #...# #####"; /* a box for what the font lacks */
}

/* Width in pixels of text drawn at the given scale. */
CNN__PRIVATE int cnn__plot_text_width(const char *text, int scale)
{
    int n = (int)strlen(text);
    return n > 0 ? (n * CNN__ADVANCE - 1) * scale : 0;
}

/* Text with its top-left corner at (x, y), each font pixel a scale x scale
   square. */
CNN__PRIVATE void cnn__plot_text(cnn_image *image, int x, int y, int scale, const char *text, cnn__plot_colour colour)
{
    for (; *text; text++, x += CNN__ADVANCE * scale) {
        const char *rows = cnn__plot_glyph(*text);
        size_t length = strlen(rows);
        int row, column;
        for (row = 0; row < CNN__GLYPH_HEIGHT; row++)
            for (column = 0; column < CNN__GLYPH_WIDTH; column++) {
                size_t at = (size_t)(row * (CNN__GLYPH_WIDTH + 1) + column); /* +1: the space between rows */
                if (at < length && rows[at] == '#') cnn__plot_fill(image, x + column * scale, y + row * scale, scale, scale, colour);
            }
    }
}

CNN__PRIVATE void cnn__plot_text_centred(cnn_image *image, int centre_x, int y, int scale, const char *text, cnn__plot_colour colour)
{
    cnn__plot_text(image, centre_x - cnn__plot_text_width(text, scale) / 2, y, scale, text, colour);
}

/* A class's name: its character from the map, else its number. */
CNN__PRIVATE void cnn__plot_class_name(const cnn_label_map *map, int label, char *name, size_t size)
{
    if (map) snprintf(name, size, "%c", cnn_label_map_char(map, label));
    else snprintf(name, size, "%d", label);
}

/* A white RGB canvas. */
CNN__PRIVATE cnn_result cnn__plot_canvas(cnn_image *image, int width, int height, cnn_error *error)
{
    cnn_result result = cnn_image_alloc(image, 3, height, width);
    if (result != CNN_OK) {
        if (error) *error = image->error;
        return result;
    }
    cnn__plot_fill(image, 0, 0, width, height, CNN__WHITE);
    return CNN_OK;
}

/* Writes the canvas and frees it, whatever happens. */
CNN__PRIVATE cnn_result cnn__plot_save(cnn_image *image, const char *path, cnn_error *error)
{
    cnn_result result = cnn_image_save_png(image, path);
    if (result != CNN_OK && error) *error = image->error;
    cnn_image_free(image);
    return result;
}

/* -- learning curves */

/* A tick spacing of 1, 2 or 5 times a power of ten that cuts range into
   about `ticks` intervals. */
CNN__PRIVATE double cnn__plot_tick_step(double range, int ticks)
{
    double raw = range / ticks, power = pow(10.0, floor(log10(raw)));
    if (raw <= power) return power;
    if (raw <= 2 * power) return 2 * power;
    if (raw <= 5 * power) return 5 * power;
    return 10 * power;
}

typedef enum cnn__curve {
    CNN__TRAIN_LOSS, CNN__VALIDATION_LOSS, CNN__TRAIN_ACCURACY, CNN__VALIDATION_ACCURACY
} cnn__curve;

/* One point of a curve; 0 when the epoch has no such value (not validated,
   or not finite), which is then skipped. Accuracies in percent. */
CNN__PRIVATE int cnn__plot_curve_value(const cnn_epoch_record *r, cnn__curve curve, double *value)
{
    switch (curve) {
    case CNN__TRAIN_LOSS: *value = r->loss; break;
    case CNN__TRAIN_ACCURACY: *value = 100.0 * r->accuracy; break;
    case CNN__VALIDATION_LOSS: *value = r->validation_loss; break;
    default: *value = 100.0 * r->validation_accuracy; break;
    }
    if ((curve == CNN__VALIDATION_LOSS || curve == CNN__VALIDATION_ACCURACY) && !r->validated) return 0;
    return cnn__is_finite((float)*value);
}

/* One panel in the box (x, y, width, height): the training curve and the
   validation curve (`first` and first + 1) over epochs 1 .. count, with
   gridlines at round values, the title above and a legend in a corner
   (legend_top: top right, else bottom right, where curves seldom go). */
CNN__PRIVATE void cnn__plot_curve_panel(cnn_image *image, int x, int y, int width, int height, const char *title,
                                   const cnn_history *history, cnn__curve first, int legend_top)
{
    const int scale = 2, count = history->count;
    static const char *const names[2] = {"train", "validation"};
    const cnn__plot_colour colours[2] = {CNN__BLUE, CNN__ORANGE};
    double low = HUGE_VAL, high = -HUGE_VAL, step, value, x_step, x_low = 1.0, x_high = count;
    int s, i, decimals, shown = 0;
    char label[32];

    /* the value axis: round ticks just covering every finite point */
    for (s = 0; s < 2; s++)
        for (i = 0; i < count; i++)
            if (cnn__plot_curve_value(&history->epochs[i], (cnn__curve)(first + s), &value)) {
                if (value < low) low = value;
                if (value > high) high = value;
                shown |= 1 << s;
            }
    if (!(low <= high)) low = 0.0, high = 1.0; /* nothing to draw */
    if (high - low < 1e-6) low -= 0.5, high += 0.5;
    step = cnn__plot_tick_step(high - low, 5);
    low = floor(low / step) * step;
    high = ceil(high / step) * step;
    decimals = step >= 1.0 ? 0 : (int)ceil(-log10(step) - 1e-9);
    /* the epoch axis; a single epoch is a point in the middle */
    if (count == 1) x_low = 0.0, x_high = 2.0;
    x_step = count <= 10 ? 1.0 : cnn__plot_tick_step(count - 1, 8);
    if (x_step < 1.0) x_step = 1.0;

#define CNN__PX(epoch) ((float)x + (float)(((epoch) - x_low) / (x_high - x_low)) * (float)(width - 1))
#define CNN__PY(v) ((float)(y + height - 1) - (float)(((v) - low) / (high - low)) * (float)(height - 1))
    for (value = low; value <= high + step * 0.5; value += step) {
        int py = (int)floor(CNN__PY(value) + 0.5f);
        cnn__plot_fill(image, x, py, width, 1, CNN__LIGHT_GREY);
        snprintf(label, sizeof label, "%.*f", decimals, value);
        cnn__plot_text(image, x - 8 - cnn__plot_text_width(label, scale), py - CNN__GLYPH_HEIGHT * scale / 2 + 2, scale, label, CNN__BLACK);
    }
    for (value = 1.0; value <= count + 1e-9; value += x_step) {
        int px = (int)floor(CNN__PX(value) + 0.5f);
        cnn__plot_fill(image, px, y, 1, height, CNN__LIGHT_GREY);
        snprintf(label, sizeof label, "%d", (int)value);
        cnn__plot_text_centred(image, px, y + height + 8, scale, label, CNN__BLACK);
    }
    cnn__plot_frame(image, x, y, width, height, CNN__BLACK);
    cnn__plot_text_centred(image, x + width / 2, y - 30, scale, title, CNN__BLACK);
    cnn__plot_text_centred(image, x + width / 2, y + height + 34, scale, "epoch", CNN__BLACK);

    /* the curves: lines between consecutive epochs, a square on every point */
    for (s = 0; s < 2; s++) {
        float last_x = 0.0f, last_y = 0.0f;
        int have_last = 0;
        for (i = 0; i < count; i++) {
            float px, py;
            if (!cnn__plot_curve_value(&history->epochs[i], (cnn__curve)(first + s), &value)) {
                have_last = 0;
                continue;
            }
            px = CNN__PX(i + 1.0), py = CNN__PY(value);
            if (have_last) cnn__plot_line(image, last_x, last_y, px, py, 3, colours[s]);
            cnn__plot_fill(image, (int)floor(px + 0.5f) - 3, (int)floor(py + 0.5f) - 3, 7, 7, colours[s]);
            last_x = px, last_y = py, have_last = 1;
        }
    }
#undef CNN__PX
#undef CNN__PY

    /* the legend: a short line of each colour and its name, framed, for
       the curves that have points */
    {
        int entries = (shown & 1) + ((shown >> 1) & 1), row = 0;
        int box_w = cnn__plot_text_width(entries == 2 || shown == 2 ? "validation" : "train", scale) + 56;
        int box_h = (entries > 0 ? entries : 1) * 24 + 10;
        int bx = x + width - box_w - 10, by = legend_top ? y + 10 : y + height - box_h - 10;
        cnn__plot_fill(image, bx, by, box_w, box_h, CNN__WHITE);
        cnn__plot_frame(image, bx, by, box_w, box_h, CNN__GREY);
        for (s = 0; s < 2; s++) {
            if (!(shown & (1 << s))) continue;
            cnn__plot_fill(image, bx + 8, by + 8 + row * 24 + CNN__GLYPH_HEIGHT - 1, 30, 3, colours[s]);
            cnn__plot_text(image, bx + 46, by + 10 + row * 24, scale, names[s], CNN__BLACK);
            row++;
        }
    }
}

CNNDEF cnn_result cnn_curves_save_png(const cnn_history *history, const char *path, cnn_error *error)
{
    enum { WIDTH = 1200, HEIGHT = 500, PANEL_W = 470, PANEL_H = 370, LEFT = 100, TOP = 50, GAP = 120 };
    cnn_image image;
    cnn_result result;
    if (!history || history->count < 1 || !history->epochs || !path)
        return cnn__fail(error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_curves_save_png needs a history of at least one epoch and a path");
    if ((result = cnn__plot_canvas(&image, WIDTH, HEIGHT, error)) != CNN_OK) return result;
    cnn__plot_curve_panel(&image, LEFT, TOP, PANEL_W, PANEL_H, "loss (cross-entropy)", history, CNN__TRAIN_LOSS, 1);
    cnn__plot_curve_panel(&image, LEFT + PANEL_W + GAP, TOP, PANEL_W, PANEL_H, "accuracy (%)", history, CNN__TRAIN_ACCURACY, 0);
    return cnn__plot_save(&image, path, error);
}

/* -- confusion matrix */

/* The heat map's colours: white at 0, mid blue at 0.5, dark navy at 1. */
CNN__PRIVATE cnn__plot_colour cnn__plot_heat(float t)
{
    static const float stops[3][3] = {{1.0f, 1.0f, 1.0f}, {0.35f, 0.60f, 0.85f}, {0.03f, 0.12f, 0.38f}};
    int k;
    float f;
    t = t > 0.0f ? (t < 1.0f ? t : 1.0f) : 0.0f;
    k = t < 0.5f ? 0 : 1;
    f = (t - 0.5f * (float)k) * 2.0f; /* position between stops k and k + 1 */
    return cnn__plot_rgb(stops[k][0] + f * (stops[k + 1][0] - stops[k][0]), stops[k][1] + f * (stops[k + 1][1] - stops[k][1]),
                    stops[k][2] + f * (stops[k + 1][2] - stops[k][2]));
}

CNNDEF cnn_result cnn_confusion_save_png(const int *matrix, int classes, const cnn_label_map *map, const char *path, cnn_error *error)
{
    enum { LEFT = 60, TOP = 110 };
    static const float bar_ticks[6] = {0.0f, 0.01f, 0.05f, 0.2f, 0.5f, 1.0f};
    int cell, grid, bar_x, width, height, name_scale = 2, t, p, i;
    cnn_image image;
    cnn_result result;
    char label[32];
    if (!matrix || classes < 1 || classes > CNN_MAX_CLASSES || !path)
        return cnn__fail(error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_confusion_save_png needs a matrix of 1 to %d classes and a path",
                         CNN_MAX_CLASSES);
    cell = classes <= 20 ? 32 : classes <= 50 ? 20 : (1000 / classes > 2 ? 1000 / classes : 2);
    grid = cell * classes;
    bar_x = LEFT + grid + 40;
    width = grid + 220 > 720 ? grid + 220 : 720;
    height = TOP + grid + 60;
    for (i = 0; i < classes; i++) { /* names at scale 2 when they fit a cell, else 1 */
        cnn__plot_class_name(map, i, label, sizeof label);
        if (cnn__plot_text_width(label, 2) > cell - 2) name_scale = 1;
    }
    if ((result = cnn__plot_canvas(&image, width, height, error)) != CNN_OK) return result;
    cnn__plot_text(&image, LEFT, 16, 2, "confusion matrix: rows true class, columns predicted", CNN__BLACK);
    cnn__plot_text(&image, LEFT, 44, 2, "colour: share of the true class (square-root scale)", CNN__GREY);
    for (t = 0; t < classes; t++) {
        long row = 0;
        for (p = 0; p < classes; p++) row += matrix[t * classes + p];
        for (p = 0; p < classes; p++) {
            float share = row > 0 ? (float)matrix[t * classes + p] / (float)row : 0.0f;
            cnn__plot_fill(&image, LEFT + p * cell, TOP + t * cell, cell, cell, cnn__plot_heat(sqrtf(share)));
        }
        if (cell >= 10) { /* true classes down the left, predictions along the top */
            cnn__plot_class_name(map, t, label, sizeof label);
            cnn__plot_text(&image, LEFT - 8 - cnn__plot_text_width(label, name_scale), TOP + t * cell + (cell - CNN__GLYPH_HEIGHT * name_scale) / 2 + 1,
                           name_scale, label, CNN__BLACK);
            cnn__plot_text_centred(&image, LEFT + t * cell + cell / 2, TOP - 8 - CNN__GLYPH_HEIGHT * name_scale, name_scale, label, CNN__BLACK);
        }
    }
    if (cell >= 6)
        for (i = 0; i <= classes; i++) { /* faint cell borders */
            cnn__plot_fill(&image, LEFT + i * cell, TOP, 1, grid, CNN__LIGHT_GREY);
            cnn__plot_fill(&image, LEFT, TOP + i * cell, grid, 1, CNN__LIGHT_GREY);
        }
    cnn__plot_frame(&image, LEFT, TOP, grid + 1, grid + 1, CNN__BLACK);

    /* the colour bar, 1 at the top, ticked in percent on the same square-root scale */
    for (i = 0; i < grid; i++) cnn__plot_fill(&image, bar_x, TOP + i, 24, 1, cnn__plot_heat(1.0f - (float)i / (float)(grid > 1 ? grid - 1 : 1)));
    cnn__plot_frame(&image, bar_x, TOP, 24, grid, CNN__BLACK);
    for (i = 0; i < 6; i++) {
        int y = TOP + (int)((1.0f - sqrtf(bar_ticks[i])) * (float)(grid - 1) + 0.5f);
        snprintf(label, sizeof label, "%g%%", 100.0 * bar_ticks[i]);
        cnn__plot_fill(&image, bar_x + 24, y, 6, 1, CNN__BLACK);
        cnn__plot_text(&image, bar_x + 34, y - 8, 2, label, CNN__BLACK);
    }
    return cnn__plot_save(&image, path, error);
}

/* -- misclassified samples */

CNNDEF cnn_result cnn_mistakes_save_png(const cnn_dataset *dataset, const int *predicted, const cnn_label_map *map, const char *path,
                                        cnn_error *error)
{
    enum { COLUMNS = 10, MAX_SHOWN = 100, ZOOM = 2, SCALE = 2, PAD = 12, TOP = 60 };
    int ih, iw, cell_w, cell_h, i, wrong = 0, shown = 0, rows;
    size_t sample, plane;
    cnn_image image;
    cnn_result result;
    char text[128], truth[16], guess[16];
    if (!dataset || !dataset->images.data || !dataset->labels || dataset->count < 0 || !predicted || !path)
        return cnn__fail(error, CNN_ERROR_INVALID_ARGUMENT, 0, 0, -1, "cnn_mistakes_save_png needs a dataset, its predictions and a path");
    ih = dataset->images.h, iw = dataset->images.w;
    cell_w = iw * ZOOM + PAD > 60 ? iw * ZOOM + PAD : 60, cell_h = ih * ZOOM + 30;
    plane = (size_t)ih * (size_t)iw;
    sample = (size_t)dataset->images.c * plane;
    for (i = 0; i < dataset->count; i++) wrong += predicted[i] != dataset->labels[i];
    rows = ((wrong < MAX_SHOWN ? wrong : MAX_SHOWN) + COLUMNS - 1) / COLUMNS;
    if (rows < 1) rows = 1;
    if ((result = cnn__plot_canvas(&image, COLUMNS * cell_w + 2 * PAD, TOP + rows * cell_h + PAD, error)) != CNN_OK) return result;
    snprintf(text, sizeof text, "misclassified: %d of %d images", wrong, dataset->count);
    cnn__plot_text(&image, PAD, 10, SCALE, text, CNN__BLACK);
    snprintf(text, sizeof text, "true %c predicted, the first %d", CNN__ARROW, wrong < MAX_SHOWN ? wrong : MAX_SHOWN);
    cnn__plot_text(&image, PAD, 34, SCALE, text, CNN__GREY);
    for (i = 0; i < dataset->count && shown < MAX_SHOWN; i++) {
        const float *pixels = dataset->images.data + (size_t)i * sample;
        int x0 = PAD + (shown % COLUMNS) * cell_w, y0 = TOP + (shown / COLUMNS) * cell_h, x, y;
        if (predicted[i] == dataset->labels[i]) continue;
        for (y = 0; y < ih * ZOOM; y++) /* each pixel a ZOOM x ZOOM square: grey, or RGB */
            for (x = 0; x < iw * ZOOM; x++) {
                size_t at = (size_t)(y / ZOOM) * (size_t)iw + (size_t)(x / ZOOM);
                float grey = pixels[at];
                cnn__plot_pixel(&image, x0 + x, y0 + y,
                               dataset->images.c == 3 ? cnn__plot_rgb(grey, pixels[plane + at], pixels[2 * plane + at]) : cnn__plot_rgb(grey, grey, grey));
            }
        /* "true -> predicted" centred under the image */
        cnn__plot_class_name(map, dataset->labels[i], truth, sizeof truth);
        cnn__plot_class_name(map, predicted[i], guess, sizeof guess);
        snprintf(text, sizeof text, "%s%c%s", truth, CNN__ARROW, guess);
        x = x0 + iw * ZOOM / 2 - cnn__plot_text_width(text, SCALE) / 2;
        y = y0 + ih * ZOOM + 4;
        cnn__plot_text(&image, x, y, SCALE, truth, CNN__GREEN);
        x += (int)strlen(truth) * CNN__ADVANCE * SCALE;
        snprintf(text, sizeof text, "%c", CNN__ARROW);
        cnn__plot_text(&image, x, y, SCALE, text, CNN__GREY);
        cnn__plot_text(&image, x + CNN__ADVANCE * SCALE, y, SCALE, guess, CNN__RED);
        shown++;
    }
    return cnn__plot_save(&image, path, error);
}

#endif /* CNN_IMAGES */

#endif /* CNN_IMPLEMENTATION_DONE */
#endif /* CNN_IMPLEMENTATION */

/*
   HISTORY
     0.1.0 (2026-11)  first release: layers, Adam and SGD, sequential models,
                      CSV / IDX / mapping loaders, model files version 1.

   LICENSE
   This software is available under two licenses; choose whichever you like.

   ALTERNATIVE A - MIT License
   Copyright (c) 2026 the cnn.h authors
   Permission is hereby granted, free of charge, to any person obtaining a copy
   of this software and associated documentation files (the "Software"), to
   deal in the Software without restriction, including without limitation the
   rights to use, copy, modify, merge, publish, distribute, sublicense, and/or
   sell copies of the Software, and to permit persons to whom the Software is
   furnished to do so, subject to the following conditions:
   The above copyright notice and this permission notice shall be included in
   all copies or substantial portions of the Software.
   THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
   IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
   FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
   AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
   LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
   FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
   DEALINGS IN THE SOFTWARE.

   ALTERNATIVE B - Public Domain (www.unlicense.org)
   This is free and unencumbered software released into the public domain.
   Anyone is free to copy, modify, publish, use, compile, sell, or distribute
   this software, either in source code form or as a compiled binary, for any
   purpose, commercial or non-commercial, and by any means.
*/
