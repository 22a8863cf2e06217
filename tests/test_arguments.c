/* test_arguments.c - every public function, called with arguments that are
   wrong (NULL pointers, zero or negative sizes, shapes that do not fit, a
   batch larger than max_batch, labels out of range, a model not built),
   returns an error - with a message wherever there is a cnn_error to hold
   one - and never crashes (run it under `make sanitize` to see that no
   wrong call reads or writes out of bounds). Functions that return no
   cnn_result answer with a neutral value instead (0, NULL, '?'). */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#define NO_ERROR_STRUCT ((const cnn_error *)NULL)

/* A small built model: (1, 6, 6) -> conv 2@3x3 -> relu -> flatten -> dense 3 -> softmax. */
static int small_model(cnn_model *model, int max_batch)
{
    return cnn_model_init(model, 1, 6, 6, 1) == CNN_OK && cnn_add_conv2d(model, 2, 3, 1, 0) == CNN_OK &&
           cnn_add_relu(model) == CNN_OK && cnn_add_flatten(model) == CNN_OK && cnn_add_dense(model, 3) == CNN_OK &&
           cnn_add_softmax(model) == CNN_OK && cnn_model_build(model, max_batch) == CNN_OK;
}

static void small_dataset(cnn_dataset *data, int count, int side)
{
    int i;
    memset(data, 0, sizeof *data);
    cnn_tensor_alloc(&data->images, count, 1, side, side);
    data->labels = (int *)calloc((size_t)count, sizeof(int));
    for (i = 0; i < count; i++) data->labels[i] = i % 3;
    data->count = count;
    data->num_classes = 3;
}

TEST(results_rng_and_tensors)
{
    cnn_tensor tensor;
    cnn_shape shape;
    int i;
    /* every code has a sentence, and so does a code that does not exist */
    for (i = CNN_ERROR_STATE; i <= CNN_OK; i++) CHECK(strlen(cnn_result_string((cnn_result)i)) > 0, "code %d", i);
    CHECK(strcmp(cnn_result_string((cnn_result)12345), "unknown result code") == 0, "unknown code");
    CHECK(strcmp(cnn_layer_type_name((cnn_layer_type)999), "unknown") == 0, "unknown layer type");
    /* a NULL rng */
    cnn_rng_seed(NULL, 1);
    CHECK(cnn_rng_next(NULL) == 0 && cnn_rng_uniform(NULL) == 0.0f && cnn_rng_normal(NULL) == 0.0f && cnn_rng_below(NULL, 5) == 0,
          "NULL rng");
    /* tensors */
    EXPECT(cnn_tensor_alloc(NULL, 1, 1, 1, 1), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_tensor_alloc(&tensor, 0, 1, 1, 1), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    CHECK(tensor.data == NULL, "data left after a refused alloc");
    EXPECT(cnn_tensor_alloc(&tensor, 2, -1, 3, 3), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_tensor_alloc(&tensor, INT_MAX, INT_MAX, INT_MAX, INT_MAX), CNN_ERROR_OUT_OF_MEMORY, NO_ERROR_STRUCT);
    CHECK(tensor.data == NULL && tensor.n == 0, "tensor left set after a refused alloc");
    cnn_tensor_free(NULL);
    CHECK(cnn_tensor_count(NULL) == 0, "count of NULL");
    EXPECT(cnn_tensor_alloc(&tensor, 2, 1, 3, 4), CNN_OK, NO_ERROR_STRUCT);
    CHECK(cnn_tensor_at(&tensor, 1, 0, 2, 3) == tensor.data + 23, "last element");
    CHECK(cnn_tensor_at(&tensor, 2, 0, 0, 0) == NULL && cnn_tensor_at(&tensor, 0, 1, 0, 0) == NULL &&
          cnn_tensor_at(&tensor, 0, 0, 3, 0) == NULL && cnn_tensor_at(&tensor, 0, 0, 0, 4) == NULL &&
          cnn_tensor_at(&tensor, -1, 0, 0, 0) == NULL && cnn_tensor_at(NULL, 0, 0, 0, 0) == NULL, "out of range gives NULL");
    cnn_tensor_free(&tensor);
    CHECK(tensor.data == NULL, "freed");
    cnn_tensor_free(&tensor); /* twice is harmless */
    shape.c = 3; shape.h = -2; shape.w = 4;
    CHECK(cnn_shape_count(shape) == 0, "negative shape counts 0");
}

TEST(model_definition)
{
    cnn_model model;
    cnn_layer_desc desc;
    char buffer[8];
    EXPECT(cnn_model_init(NULL, 1, 2, 2, 0), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_init(&model, 0, 28, 28, 0), CNN_ERROR_BAD_SHAPE, &model.error);
    EXPECT(cnn_model_init(&model, 1, -28, 28, 0), CNN_ERROR_BAD_SHAPE, &model.error);
    EXPECT(cnn_model_init(&model, 65536, 65536, 65536, 0), CNN_ERROR_BAD_SHAPE, &model.error);
    /* layers on a model whose init failed keep the first error */
    EXPECT(cnn_add_relu(&model), CNN_ERROR_BAD_SHAPE, &model.error);
    EXPECT(cnn_model_build(&model, 4), CNN_ERROR_BAD_SHAPE, &model.error);
    /* every add with a NULL model */
    EXPECT(cnn_model_add(NULL, &desc), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_conv2d(NULL, 1, 1, 1, 0), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_dense(NULL, 1), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_relu(NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_leaky_relu(NULL, 0.1f), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_sigmoid(NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_tanh(NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_max_pool(NULL, 2, 2), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_avg_pool(NULL, 2, 2), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_flatten(NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_dropout(NULL, 0.5f), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_softmax(NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_build(NULL, 1), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_keep_outputs(NULL, 1), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    cnn_model_free(NULL);
    CHECK(cnn_model_summary(NULL, buffer, sizeof buffer) == 0, "summary of NULL");
    CHECK(cnn_model_output_shape(NULL).c == 0, "output shape of NULL");
    /* each wrong setting, each on a fresh model (errors are sticky) */
#define FRESH() cnn_model_init(&model, 1, 8, 8, 0)
    FRESH(); EXPECT(cnn_model_add(&model, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    FRESH(); EXPECT(cnn_add_conv2d(&model, 0, 3, 1, 0), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_add_conv2d(&model, 4, -3, 1, 0), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_add_conv2d(&model, 4, 3, 0, 0), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_add_conv2d(&model, 4, 3, 1, -1), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_add_conv2d(&model, 4, 9, 1, 0), CNN_ERROR_BAD_SHAPE, &model.error);     /* kernel > input */
    FRESH(); EXPECT(cnn_add_conv2d(&model, 4, 3, 2, 0), CNN_OK, NO_ERROR_STRUCT);               /* 8 - 3 = 5: floored, as PyTorch */
    CHECK(model.layers[0].out.h == 3 && model.layers[0].out.w == 3, "conv 3/2 on 8x8 gives %dx%d, expected 3x3",
          model.layers[0].out.h, model.layers[0].out.w);
    FRESH(); EXPECT(cnn_add_conv2d(&model, INT_MAX, 3, 1, 0), CNN_ERROR_BAD_SHAPE, &model.error); /* output too large */
    FRESH(); EXPECT(cnn_add_dense(&model, 10), CNN_ERROR_BAD_SHAPE, &model.error);              /* not flat */
    FRESH(); cnn_add_flatten(&model); EXPECT(cnn_add_dense(&model, 0), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); cnn_add_flatten(&model); EXPECT(cnn_add_dense(&model, -5), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_add_max_pool(&model, 0, 2), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_add_avg_pool(&model, 2, -1), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_add_max_pool(&model, 9, 1), CNN_ERROR_BAD_SHAPE, &model.error);         /* window > input */
    FRESH(); EXPECT(cnn_add_dropout(&model, 1.0f), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_add_dropout(&model, -0.5f), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_add_leaky_relu(&model, (float)INFINITY), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_add_softmax(&model), CNN_ERROR_BAD_SHAPE, &model.error);                /* not flat */
    /* a conv or pool on the flat output of dense or flatten, even after an activation */
    FRESH(); cnn_add_flatten(&model); cnn_add_dense(&model, 4); cnn_add_relu(&model);
    EXPECT(cnn_add_conv2d(&model, 4, 1, 1, 0), CNN_ERROR_BAD_SHAPE, &model.error);
    CHECK(strstr(model.error.message, "layer 2 (dense)") && strstr(model.error.message, "flat"), "message: %s", model.error.message);
    FRESH(); cnn_add_flatten(&model); EXPECT(cnn_add_max_pool(&model, 1, 1), CNN_ERROR_BAD_SHAPE, &model.error);
    FRESH();
    memset(&desc, 0, sizeof desc);
    desc.type = (cnn_layer_type)77;
    EXPECT(cnn_model_add(&model, &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH();
    desc.type = CNN_LAYER_RELU;
    desc.init = (cnn_init)9;
    EXPECT(cnn_model_add(&model, &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); EXPECT(cnn_model_build(&model, 4), CNN_ERROR_STATE, &model.error);                 /* no layers */
    FRESH(); cnn_add_relu(&model); EXPECT(cnn_model_build(&model, 0), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    FRESH(); cnn_add_relu(&model); EXPECT(cnn_model_build(&model, -3), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    /* too many layers */
    {
        int i;
        cnn_result r = CNN_OK;
        FRESH();
        for (i = 0; i <= CNN_MAX_LAYERS && r == CNN_OK; i++) r = cnn_add_relu(&model);
        CHECK(r == CNN_ERROR_BAD_SHAPE && i == CNN_MAX_LAYERS + 1, "layer %d: %d", i, (int)r);
    }
    /* a built model takes no more layers, no second build, and no change of its memory's plan */
    CHECK(small_model(&model, 2), "build");
    EXPECT(cnn_add_relu(&model), CNN_ERROR_STATE, &model.error);
    EXPECT(cnn_model_build(&model, 2), CNN_ERROR_STATE, &model.error);
    EXPECT(cnn_model_keep_outputs(&model, 1), CNN_ERROR_STATE, &model.error);
    cnn_model_free(&model);
    cnn_model_free(&model); /* twice is harmless */
#undef FRESH
}

/* Residual blocks, batch norm, global average pooling and the pools'
   padding and ceil mode: each wrong description refused with a message
   that says what is wrong. */
TEST(blocks_batch_norm_and_pools)
{
    cnn_model model;
    cnn_layer_desc pool;
    EXPECT(cnn_add_batch_norm(NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_global_avg_pool(NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_residual_begin(NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_add_residual_end(NULL, CNN_INIT_DEFAULT), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
#define FRESH() cnn_model_init(&model, 1, 7, 7, 0)
#define MESSAGE_HAS(text) CHECK(strstr(model.error.message, text) != NULL, "message: %s", model.error.message)
    /* an end without a begin, also after a block that is closed */
    FRESH(); EXPECT(cnn_add_residual_end(&model, CNN_INIT_DEFAULT), CNN_ERROR_BAD_SHAPE, &model.error);
    MESSAGE_HAS("without a residual_begin");
    FRESH(); cnn_add_residual_begin(&model); cnn_add_relu(&model); cnn_add_residual_end(&model, CNN_INIT_DEFAULT);
    EXPECT(cnn_add_residual_end(&model, CNN_INIT_DEFAULT), CNN_ERROR_BAD_SHAPE, &model.error);
    MESSAGE_HAS("without a residual_begin");
    /* an empty block, also inside another */
    FRESH(); cnn_add_residual_begin(&model);
    EXPECT(cnn_add_residual_end(&model, CNN_INIT_DEFAULT), CNN_ERROR_BAD_SHAPE, &model.error);
    MESSAGE_HAS("has no layers");
    FRESH(); cnn_add_residual_begin(&model); cnn_add_relu(&model); cnn_add_residual_begin(&model);
    EXPECT(cnn_add_residual_end(&model, CNN_INIT_DEFAULT), CNN_ERROR_BAD_SHAPE, &model.error);
    MESSAGE_HAS("layer 3 has no layers");
    /* 7x7 into 5x5 (conv 3x3, no padding): no 1x1 stride maps 7 onto 5 */
    FRESH(); cnn_add_residual_begin(&model); cnn_add_conv2d(&model, 2, 3, 1, 0);
    EXPECT(cnn_add_residual_end(&model, CNN_INIT_DEFAULT), CNN_ERROR_BAD_SHAPE, &model.error);
    MESSAGE_HAS("no 1x1 convolution");
    MESSAGE_HAS("(1, 7, 7) into (2, 5, 5)");
    /* but 7x7 into 4x4 (conv 3x3 stride 2 padding 1) is a 1x1 stride 2 projection */
    FRESH(); cnn_add_residual_begin(&model); cnn_add_conv2d(&model, 2, 3, 2, 1);
    EXPECT(cnn_add_residual_end(&model, CNN_INIT_DEFAULT), CNN_OK, NO_ERROR_STRUCT);
    CHECK(model.layers[2].desc.kernel == 1 && model.layers[2].desc.stride == 2 && model.layers[2].weight_count == 2,
          "projection %d/%d with %lu weights", model.layers[2].desc.kernel, model.layers[2].desc.stride,
          (unsigned long)model.layers[2].weight_count);
    /* an unknown initialiser for the projection */
    FRESH(); cnn_add_residual_begin(&model); cnn_add_conv2d(&model, 2, 3, 2, 1);
    EXPECT(cnn_add_residual_end(&model, (cnn_init)9), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    /* softmax inside an open block, nested or not */
    FRESH(); cnn_add_residual_begin(&model); cnn_add_flatten(&model); cnn_add_dense(&model, 3);
    EXPECT(cnn_add_softmax(&model), CNN_ERROR_BAD_SHAPE, &model.error);
    MESSAGE_HAS("softmax inside a residual block");
    FRESH(); cnn_add_residual_begin(&model); cnn_add_residual_begin(&model); cnn_add_relu(&model);
    cnn_add_residual_end(&model, CNN_INIT_DEFAULT); cnn_add_flatten(&model);
    EXPECT(cnn_add_softmax(&model), CNN_ERROR_BAD_SHAPE, &model.error);
    MESSAGE_HAS("softmax inside a residual block");
    /* a block left open at the build: its begin would have no skip path */
    FRESH(); cnn_add_residual_begin(&model); cnn_add_conv2d(&model, 2, 3, 1, 1);
    EXPECT(cnn_model_build(&model, 2), CNN_ERROR_BAD_SHAPE, &model.error);
    MESSAGE_HAS("layer 1 has no end");
    CHECK(model.memory == NULL, "a refused build left memory");
    cnn_model_free(&model);
    /* global average pooling needs an image */
    FRESH(); cnn_add_flatten(&model);
    EXPECT(cnn_add_global_avg_pool(&model), CNN_ERROR_BAD_SHAPE, &model.error);
    MESSAGE_HAS("flat");
    /* pools: padding more than half the window, negative, ceil_mode 2 */
    memset(&pool, 0, sizeof pool);
    pool.type = CNN_LAYER_MAX_POOL; pool.kernel = 3; pool.stride = 2; pool.padding = 2;
    FRESH(); EXPECT(cnn_model_add(&model, &pool), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    MESSAGE_HAS("more than half");
    pool.type = CNN_LAYER_AVG_POOL; pool.kernel = 2; pool.padding = 2;
    FRESH(); EXPECT(cnn_model_add(&model, &pool), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    MESSAGE_HAS("more than half");
    pool.padding = -1;
    FRESH(); EXPECT(cnn_model_add(&model, &pool), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    pool.padding = 1; pool.ceil_mode = 2;
    FRESH(); EXPECT(cnn_model_add(&model, &pool), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    MESSAGE_HAS("ceil_mode 0 or 1");
    pool.ceil_mode = -1;
    FRESH(); EXPECT(cnn_model_add(&model, &pool), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    pool.ceil_mode = 1; /* 2/2, padding 1, ceil on 7: 4 windows */
    FRESH(); EXPECT(cnn_model_add(&model, &pool), CNN_OK, NO_ERROR_STRUCT);
    CHECK(model.layers[0].out.h == 4 && model.layers[0].out.w == 4, "output %dx%d", model.layers[0].out.h, model.layers[0].out.w);
    /* conv2d floors a stride that does not tile, as PyTorch: (7 - 3) / 3 + 1 = 2 */
    FRESH(); EXPECT(cnn_add_conv2d(&model, 1, 3, 3, 0), CNN_OK, NO_ERROR_STRUCT);
    CHECK(model.layers[0].out.h == 2, "output side %d", model.layers[0].out.h);
#undef FRESH
#undef MESSAGE_HAS
}

/* Batch norm in training needs more than one value per channel: after a
   dense layer a batch of one has one, and forward in training mode and
   train_step refuse it, while evaluation takes it; after a conv layer a
   batch of one image has H * W values, and is fine. cnn_model_fit leaves a
   last batch of one out of the epoch (5 samples in batches of 4), and
   trains. */
TEST(batch_norm_batch_of_one)
{
    cnn_model flat, image;
    cnn_optimizer adam;
    cnn_dataset data, one;
    cnn_fit_desc fit;
    float input[4 * 36];
    int labels[4] = {0, 1, 2, 0}, i;
    size_t k, bad = 0;
    for (i = 0; i < 4 * 36; i++) input[i] = (float)(i % 11) / 10.0f;
    CHECK(cnn_model_init(&flat, 1, 6, 6, 3) == CNN_OK && cnn_add_flatten(&flat) == CNN_OK && cnn_add_dense(&flat, 4) == CNN_OK &&
          cnn_add_batch_norm(&flat) == CNN_OK && cnn_add_relu(&flat) == CNN_OK && cnn_add_dense(&flat, 3) == CNN_OK &&
          cnn_add_softmax(&flat) == CNN_OK && cnn_model_build(&flat, 4) == CNN_OK,
          "build: %s", flat.error.message);
    CHECK(cnn_optimizer_init(&adam, &flat, NULL) == CNN_OK, "optimiser: %s", flat.error.message);
    EXPECT(cnn_model_forward(&flat, input, 1, CNN_MODE_TRAIN), CNN_ERROR_INVALID_ARGUMENT, &flat.error);
    CHECK(strstr(flat.error.message, "batch_norm (layer 3)") && strstr(flat.error.message, "batch of 1"), "message: %s",
          flat.error.message);
    EXPECT(cnn_model_train_step(&flat, &adam, input, labels, 1, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &flat.error);
    CHECK(strstr(flat.error.message, "batch_norm (layer 3)") != NULL, "message: %s", flat.error.message);
    CHECK(adam.step == 0 && flat.layers[2].batches_tracked == 0, "a refused batch trained");
    EXPECT(cnn_model_forward(&flat, input, 1, CNN_MODE_EVAL), CNN_OK, NO_ERROR_STRUCT);
    EXPECT(cnn_model_forward(&flat, input, 2, CNN_MODE_TRAIN), CNN_OK, NO_ERROR_STRUCT);
    EXPECT(cnn_model_train_step(&flat, &adam, input, labels, 2, NULL, NULL), CNN_OK, NO_ERROR_STRUCT);

    /* fit: 5 samples in batches of 4 -> a batch of 4, then one of 1, left out */
    small_dataset(&data, 5, 6);
    for (k = 0; k < cnn_tensor_count(&data.images); k++) data.images.data[k] = (float)(k % 13) / 12.0f;
    memset(&fit, 0, sizeof fit);
    fit.epochs = 3;
    fit.batch_size = 4;
    flat.layers[2].batches_tracked = 0;
    EXPECT(cnn_model_fit(&flat, &adam, &data, &fit), CNN_OK, NO_ERROR_STRUCT);
    CHECK(flat.layers[2].batches_tracked == 3, "batch norm trained on %lu batches in 3 epochs, expected 3 (one of 4 each)",
          (unsigned long)flat.layers[2].batches_tracked);
    for (k = 0; k < flat.param_count + flat.state_count; k++) bad += !(fabsf(flat.params[k]) <= 1e30f);
    CHECK(bad == 0, "%lu parameters or running statistics are not finite after fit", (unsigned long)bad);
    /* a dataset of one sample has no batch batch norm can train on */
    small_dataset(&one, 1, 6);
    EXPECT(cnn_model_fit(&flat, &adam, &one, &fit), CNN_ERROR_INVALID_ARGUMENT, &flat.error);
    cnn_dataset_free(&one);
    cnn_dataset_free(&data);
    cnn_optimizer_free(&adam);
    cnn_model_free(&flat);

    /* after a conv: a batch of one image gives each channel 16 values */
    CHECK(cnn_model_init(&image, 1, 6, 6, 3) == CNN_OK && cnn_add_conv2d(&image, 2, 3, 1, 0) == CNN_OK &&
          cnn_add_batch_norm(&image) == CNN_OK && cnn_add_flatten(&image) == CNN_OK && cnn_add_dense(&image, 3) == CNN_OK &&
          cnn_add_softmax(&image) == CNN_OK && cnn_model_build(&image, 2) == CNN_OK,
          "build: %s", image.error.message);
    CHECK(cnn_optimizer_init(&adam, &image, NULL) == CNN_OK, "optimiser: %s", image.error.message);
    EXPECT(cnn_model_forward(&image, input, 1, CNN_MODE_TRAIN), CNN_OK, NO_ERROR_STRUCT);
    EXPECT(cnn_model_train_step(&image, &adam, input, labels, 1, NULL, NULL), CNN_OK, NO_ERROR_STRUCT);
    cnn_optimizer_free(&adam);
    cnn_model_free(&image);
}

TEST(forward_backward_and_loss)
{
    cnn_model model, unbuilt, no_softmax;
    float input[3 * 36], grad[3 * 3];
    int labels[3] = {0, 1, 2}, bad_labels[3] = {0, 3, 1}, negative_labels[3] = {-1, 0, 0}, classes[3];
    memset(input, 0, sizeof input);
    memset(grad, 0, sizeof grad);
    CHECK(small_model(&model, 3), "build");
    cnn_model_init(&unbuilt, 1, 6, 6, 0);
    cnn_add_flatten(&unbuilt);
    cnn_add_softmax(&unbuilt);
    /* NULL model */
    EXPECT(cnn_model_forward(NULL, input, 1, CNN_MODE_EVAL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_loss(NULL, labels, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_backward(NULL, labels), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_backward_from(NULL, grad), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_predict(NULL, input, 1, classes, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    CHECK(cnn_model_output(NULL) == NULL, "output of NULL");
    cnn_model_zero_grad(NULL);
    /* not built */
    EXPECT(cnn_model_forward(&unbuilt, input, 1, CNN_MODE_EVAL), CNN_ERROR_STATE, &unbuilt.error);
    EXPECT(cnn_model_loss(&unbuilt, labels, NULL, NULL), CNN_ERROR_STATE, &unbuilt.error);
    EXPECT(cnn_model_backward(&unbuilt, labels), CNN_ERROR_STATE, &unbuilt.error);
    EXPECT(cnn_model_backward_from(&unbuilt, grad), CNN_ERROR_STATE, &unbuilt.error);
    EXPECT(cnn_model_predict(&unbuilt, input, 1, classes, NULL), CNN_ERROR_STATE, &unbuilt.error);
    CHECK(cnn_model_output(&unbuilt) == NULL, "output of an unbuilt model");
    cnn_model_zero_grad(&unbuilt);
    /* built, but no forward pass yet */
    EXPECT(cnn_model_loss(&model, labels, NULL, NULL), CNN_ERROR_STATE, &model.error);
    EXPECT(cnn_model_backward(&model, labels), CNN_ERROR_STATE, &model.error);
    EXPECT(cnn_model_backward_from(&model, grad), CNN_ERROR_STATE, &model.error);
    /* NULL data, bad batch sizes, bad mode */
    EXPECT(cnn_model_forward(&model, NULL, 1, CNN_MODE_EVAL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_forward(&model, input, 0, CNN_MODE_EVAL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_forward(&model, input, -1, CNN_MODE_EVAL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_forward(&model, input, 4, CNN_MODE_EVAL), CNN_ERROR_INVALID_ARGUMENT, &model.error); /* > max_batch 3 */
    EXPECT(cnn_model_forward(&model, input, 1, (cnn_mode)7), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_forward(&model, input, 3, CNN_MODE_TRAIN), CNN_OK, NO_ERROR_STRUCT);
    /* labels: NULL, too large, negative */
    EXPECT(cnn_model_loss(&model, NULL, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_loss(&model, bad_labels, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    CHECK(strstr(model.error.message, "label 3 of sample 1") != NULL, "message: %s", model.error.message);
    EXPECT(cnn_model_loss(&model, negative_labels, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_backward(&model, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_backward(&model, bad_labels), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_backward_from(&model, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_loss(&model, labels, NULL, NULL), CNN_OK, NO_ERROR_STRUCT); /* NULL outputs are allowed */
    /* predict */
    EXPECT(cnn_model_predict(&model, NULL, 1, classes, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_predict(&model, input, 1, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_predict(&model, input, 0, classes, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_predict(&model, input, -2, classes, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    /* a model without softmax has no cross-entropy */
    cnn_model_init(&no_softmax, 1, 6, 6, 0);
    cnn_add_flatten(&no_softmax);
    cnn_add_dense(&no_softmax, 3);
    CHECK(cnn_model_build(&no_softmax, 1) == CNN_OK, "build");
    EXPECT(cnn_model_forward(&no_softmax, input, 1, CNN_MODE_EVAL), CNN_OK, NO_ERROR_STRUCT);
    EXPECT(cnn_model_loss(&no_softmax, labels, NULL, NULL), CNN_ERROR_STATE, &no_softmax.error);
    EXPECT(cnn_model_backward(&no_softmax, labels), CNN_ERROR_STATE, &no_softmax.error);
    cnn_model_free(&no_softmax);
    cnn_model_free(&unbuilt);
    cnn_model_free(&model);
}

TEST(optimizers_and_training)
{
    cnn_model model, other, unbuilt, no_weights;
    cnn_optimizer adam, other_adam;
    cnn_optimizer_desc desc;
    cnn_dataset data, wrong_shape, short_data, bad_labels;
    cnn_fit_desc fit;
    float input[2 * 36], loss, accuracy;
    int labels[2] = {0, 1}, out_of_range[2] = {0, 5}, correct, matrix[9];
    memset(input, 0, sizeof input);
    CHECK(small_model(&model, 2), "build");
    /* a model of another size, whose optimiser does not fit model */
    CHECK(cnn_model_init(&other, 1, 6, 6, 0) == CNN_OK && cnn_add_flatten(&other) == CNN_OK && cnn_add_dense(&other, 4) == CNN_OK &&
          cnn_add_softmax(&other) == CNN_OK && cnn_model_build(&other, 2) == CNN_OK, "build other");
    cnn_model_init(&unbuilt, 1, 6, 6, 0);
    cnn_add_relu(&unbuilt);
    cnn_model_init(&no_weights, 1, 6, 6, 0);
    cnn_add_relu(&no_weights);
    cnn_model_build(&no_weights, 1);
    /* optimiser init: NULLs, unbuilt, no weights, bad settings */
    EXPECT(cnn_optimizer_init(NULL, &model, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_optimizer_init(&adam, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_optimizer_init(&adam, &unbuilt, NULL), CNN_ERROR_STATE, &unbuilt.error);
    EXPECT(cnn_optimizer_init(&adam, &no_weights, NULL), CNN_ERROR_STATE, &no_weights.error);
    memset(&desc, 0, sizeof desc);
    desc.type = (cnn_optimizer_type)5;
    EXPECT(cnn_optimizer_init(&adam, &model, &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    desc.type = CNN_OPTIMIZER_SGD;
    desc.learning_rate = -1.0f;
    EXPECT(cnn_optimizer_init(&adam, &model, &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    desc.learning_rate = (float)NAN;
    EXPECT(cnn_optimizer_init(&adam, &model, &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    desc.learning_rate = 0.1f;
    desc.momentum = 1.0f;
    EXPECT(cnn_optimizer_init(&adam, &model, &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    memset(&desc, 0, sizeof desc);
    desc.beta2 = 1.5f;
    EXPECT(cnn_optimizer_init(&adam, &model, &desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    CHECK(adam.first_moment == NULL, "state left after a refused init");
    /* step: NULLs, an optimiser never initialised, one made for another model */
    EXPECT(cnn_optimizer_init(&adam, &model, NULL), CNN_OK, NO_ERROR_STRUCT);
    EXPECT(cnn_optimizer_init(&other_adam, &other, NULL), CNN_OK, NO_ERROR_STRUCT);
    EXPECT(cnn_optimizer_step(NULL, &model), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_optimizer_step(&adam, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    {
        cnn_optimizer zeroed;
        memset(&zeroed, 0, sizeof zeroed);
        EXPECT(cnn_optimizer_step(&zeroed, &model), CNN_ERROR_STATE, &model.error);
    }
    EXPECT(cnn_optimizer_step(&adam, &unbuilt), CNN_ERROR_STATE, &unbuilt.error);
    cnn_optimizer_free(NULL);
    /* train step */
    EXPECT(cnn_model_train_step(NULL, &adam, input, labels, 2, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_train_step(&model, NULL, input, labels, 2, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_train_step(&model, &adam, NULL, labels, 2, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_train_step(&model, &adam, input, NULL, 2, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_train_step(&model, &adam, input, labels, 0, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_train_step(&model, &adam, input, labels, 3, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_train_step(&model, &adam, input, out_of_range, 2, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_train_step(&unbuilt, &adam, input, labels, 1, NULL, NULL), CNN_ERROR_STATE, &unbuilt.error);
    EXPECT(cnn_model_train_step(&model, &other_adam, input, labels, 2, NULL, NULL), CNN_ERROR_STATE, &model.error);
    CHECK(other_adam.step == 0 && adam.step == 0, "an optimiser stepped on a refused call");
    EXPECT(cnn_model_train_step(&model, &adam, input, labels, 2, &loss, &correct), CNN_OK, NO_ERROR_STRUCT);
    /* fit and evaluate: NULLs, empty, wrong shapes, short tensors, labels out of range, bad settings */
    small_dataset(&data, 4, 6);
    small_dataset(&wrong_shape, 4, 5);
    small_dataset(&short_data, 4, 6);
    short_data.count = 9; /* more samples than images */
    small_dataset(&bad_labels, 4, 6);
    bad_labels.labels[2] = 7;
    memset(&fit, 0, sizeof fit);
    fit.epochs = 1;
    EXPECT(cnn_model_fit(NULL, &adam, &data, &fit), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_fit(&model, NULL, &data, &fit), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_fit(&model, &adam, NULL, &fit), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_fit(&unbuilt, &adam, &data, &fit), CNN_ERROR_STATE, &unbuilt.error);
    EXPECT(cnn_model_fit(&model, &adam, &wrong_shape, &fit), CNN_ERROR_BAD_SHAPE, &model.error);
    EXPECT(cnn_model_fit(&model, &adam, &short_data, &fit), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_fit(&model, &adam, &bad_labels, &fit), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    /* checked before any step, and named by its place in the dataset */
    CHECK(strstr(model.error.message, "image 3 of the training set has label 7") != NULL, "message: %s", model.error.message);
    fit.batch_size = 3; /* > max_batch 2 */
    EXPECT(cnn_model_fit(&model, &adam, &data, &fit), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    fit.batch_size = -1;
    EXPECT(cnn_model_fit(&model, &adam, &data, &fit), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    fit.batch_size = 0;
    fit.epochs = -2;
    EXPECT(cnn_model_fit(&model, &adam, &data, &fit), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    fit.epochs = 1;
    fit.patience = 2; /* without validation */
    EXPECT(cnn_model_fit(&model, &adam, &data, &fit), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    fit.patience = -1;
    fit.validation = &data;
    EXPECT(cnn_model_fit(&model, &adam, &data, &fit), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    fit.patience = 0;
    fit.validation = &wrong_shape;
    EXPECT(cnn_model_fit(&model, &adam, &data, &fit), CNN_ERROR_BAD_SHAPE, &model.error);
    fit.validation = &data;
    EXPECT(cnn_model_fit(&model, &adam, &data, &fit), CNN_OK, NO_ERROR_STRUCT);
    EXPECT(cnn_model_evaluate(NULL, &data, &loss, &accuracy), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_evaluate(&model, NULL, &loss, &accuracy), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_evaluate(&unbuilt, &data, &loss, &accuracy), CNN_ERROR_STATE, &unbuilt.error);
    EXPECT(cnn_model_evaluate(&model, &wrong_shape, &loss, &accuracy), CNN_ERROR_BAD_SHAPE, &model.error);
    EXPECT(cnn_model_evaluate(&model, &short_data, &loss, &accuracy), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_evaluate(&model, &bad_labels, &loss, &accuracy), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_evaluate(&model, &data, NULL, NULL), CNN_OK, NO_ERROR_STRUCT);
    /* confusion */
    EXPECT(cnn_model_confusion(NULL, &data, matrix), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_confusion(&model, NULL, matrix), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_confusion(&model, &data, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_confusion(&unbuilt, &data, matrix), CNN_ERROR_STATE, &unbuilt.error);
    EXPECT(cnn_model_confusion(&model, &bad_labels, matrix), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_confusion(&model, &short_data, matrix), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    cnn_dataset_free(&data);
    cnn_dataset_free(&wrong_shape);
    short_data.count = 4;
    cnn_dataset_free(&short_data);
    cnn_dataset_free(&bad_labels);
    cnn_optimizer_free(&adam);
    cnn_optimizer_free(&adam); /* twice is harmless */
    cnn_optimizer_free(&other_adam);
    cnn_model_free(&unbuilt);
    cnn_model_free(&no_weights);
    cnn_model_free(&other);
    cnn_model_free(&model);
}

TEST(metrics_and_split)
{
    cnn_dataset data, train, validation, short_data;
    cnn_class_metrics metrics[3];
    int labels[3] = {0, 1, 2}, predicted[3] = {0, 2, 1}, bad[3] = {0, 3, 1}, matrix[9];
    small_dataset(&data, 10, 4);
    EXPECT(cnn_dataset_split(NULL, 0.2f, 1, &train, &validation), CNN_ERROR_INVALID_ARGUMENT, &train.error);
    EXPECT(cnn_dataset_split(&data, 0.2f, 1, NULL, &validation), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_dataset_split(&data, 0.2f, 1, &train, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_dataset_split(&data, 1.0f, 1, &train, &validation), CNN_ERROR_INVALID_ARGUMENT, &train.error);
    EXPECT(cnn_dataset_split(&data, -0.5f, 1, &train, &validation), CNN_ERROR_INVALID_ARGUMENT, &train.error);
    EXPECT(cnn_dataset_split(&data, (float)NAN, 1, &train, &validation), CNN_ERROR_INVALID_ARGUMENT, &train.error);
    CHECK(train.images.data == NULL && validation.images.data == NULL, "left allocated after a refused split");
    small_dataset(&short_data, 3, 4);
    short_data.count = 30;
    EXPECT(cnn_dataset_split(&short_data, 0.2f, 1, &train, &validation), CNN_ERROR_INVALID_ARGUMENT, &train.error);
    short_data.count = 1;
    EXPECT(cnn_dataset_split(&short_data, 0.2f, 1, &train, &validation), CNN_ERROR_INVALID_ARGUMENT, &train.error);
    short_data.count = 3;
    cnn_dataset_free(&short_data);
    EXPECT(cnn_confusion_count(NULL, predicted, 3, 3, matrix), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_count(labels, NULL, 3, 3, matrix), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_count(labels, predicted, 3, 3, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_count(labels, predicted, -1, 3, matrix), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_count(labels, predicted, 3, 0, matrix), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_count(labels, predicted, 3, CNN_MAX_CLASSES + 1, matrix), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_count(bad, predicted, 3, 3, matrix), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_count(labels, bad, 3, 3, matrix), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_count(labels, predicted, 3, 3, matrix), CNN_OK, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_metrics(NULL, 3, metrics), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_metrics(matrix, 3, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_metrics(matrix, 0, metrics), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_confusion_metrics(matrix, -3, metrics), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    CHECK(cnn_confusion_accuracy(NULL, 3) == 0.0f && cnn_confusion_accuracy(matrix, 0) == 0.0f, "accuracy of nothing");
    cnn_dataset_free(&data);
}

TEST(files_and_loaders)
{
    cnn_model model, loaded;
    cnn_dataset data;
    cnn_data_desc desc;
    static cnn_label_map map;
    const char *csv = "1,0,255,0,255\n";
    const char *missing = test_path("no-such-file");
    CHECK(small_model(&model, 1), "build");
    /* save: NULL or empty path, unbuilt model, a folder that does not exist */
    EXPECT(cnn_model_save(NULL, "x.cnn"), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_save(&model, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_save(&model, ""), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_save(&model, test_path("no-such-folder/model.cnn")), CNN_ERROR_IO, &model.error);
    {
        cnn_model unbuilt;
        cnn_model_init(&unbuilt, 1, 2, 2, 0);
        EXPECT(cnn_model_save(&unbuilt, test_path("unbuilt.cnn")), CNN_ERROR_STATE, &unbuilt.error);
    }
    /* load */
    EXPECT(cnn_model_load(NULL, "x.cnn", 1), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_load(&loaded, NULL, 1), CNN_ERROR_INVALID_ARGUMENT, &loaded.error);
    EXPECT(cnn_model_load(&loaded, missing, 1), CNN_ERROR_IO, &loaded.error);
    CHECK(cnn_model_save(&model, test_path("arguments.cnn")) == CNN_OK, "save: %s", model.error.message);
    EXPECT(cnn_model_load(&loaded, test_path("arguments.cnn"), 0), CNN_ERROR_INVALID_ARGUMENT, &loaded.error);
    EXPECT(cnn_model_load(&loaded, test_path("arguments.cnn"), -1), CNN_ERROR_INVALID_ARGUMENT, &loaded.error);
    EXPECT(cnn_model_load_memory(NULL, "x", 1, 1), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_load_memory(&loaded, NULL, 10, 1), CNN_ERROR_INVALID_ARGUMENT, &loaded.error);
    EXPECT(cnn_model_load_memory(&loaded, "x", 0, 1), CNN_ERROR_BAD_MODEL_FILE, &loaded.error);
    EXPECT(cnn_model_load_memory(&loaded, "x", 1, 0), CNN_ERROR_INVALID_ARGUMENT, &loaded.error);
    CHECK(loaded.memory == NULL, "a refused load left memory");
    remove(test_path("arguments.cnn"));
    /* safetensors and ONNX: the same, and loading into a model needs it built */
    EXPECT(cnn_model_save_safetensors(NULL, "x.safetensors"), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_save_safetensors(&model, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_save_safetensors(&model, ""), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_export_onnx(NULL, "x.onnx"), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_export_onnx(&model, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_export_onnx(&model, ""), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_load_safetensors(NULL, "x.safetensors"), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_load_safetensors(&model, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_load_safetensors(&model, missing), CNN_ERROR_IO, &model.error);
    EXPECT(cnn_model_load_safetensors_memory(NULL, "x", 1), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_load_safetensors_memory(&model, NULL, 10), CNN_ERROR_INVALID_ARGUMENT, &model.error);
    EXPECT(cnn_model_load_safetensors_memory(&model, "x", 0), CNN_ERROR_BAD_MODEL_FILE, &model.error);
    {
        cnn_model unbuilt;
        cnn_model_init(&unbuilt, 1, 2, 2, 0);
        EXPECT(cnn_model_load_safetensors_memory(&unbuilt, "x", 1), CNN_ERROR_STATE, &unbuilt.error);
        EXPECT(cnn_model_export_onnx(&unbuilt, test_path("unbuilt.onnx")), CNN_ERROR_STATE, &unbuilt.error);
    }
    EXPECT(cnn_model_from_safetensors(NULL, "x.safetensors", 1), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_from_safetensors(&loaded, NULL, 1), CNN_ERROR_INVALID_ARGUMENT, &loaded.error);
    EXPECT(cnn_model_from_safetensors(&loaded, missing, 1), CNN_ERROR_IO, &loaded.error);
    CHECK(cnn_model_save_safetensors(&model, test_path("arguments.safetensors")) == CNN_OK, "save: %s", model.error.message);
    EXPECT(cnn_model_from_safetensors(&loaded, test_path("arguments.safetensors"), 0), CNN_ERROR_INVALID_ARGUMENT, &loaded.error);
    EXPECT(cnn_model_from_safetensors_memory(NULL, "x", 1, 1), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_model_from_safetensors_memory(&loaded, NULL, 10, 1), CNN_ERROR_INVALID_ARGUMENT, &loaded.error);
    EXPECT(cnn_model_from_safetensors_memory(&loaded, "x", 1, -1), CNN_ERROR_INVALID_ARGUMENT, &loaded.error);
    CHECK(loaded.memory == NULL, "a refused load left memory");
    remove(test_path("arguments.safetensors"));
    /* int8 and the C export */
    {
        static cnn_quantized q;
        cnn_dataset images;
        cnn_export_desc export_desc;
        int classes[1];
        float x[36] = {0};
        CHECK(make_random_dataset(&images, 4, 6, 3, 1), "dataset");
        EXPECT(cnn_quantize(NULL, &model, &images, 0), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
        EXPECT(cnn_quantize(&q, NULL, &images, 0), CNN_ERROR_INVALID_ARGUMENT, &q.error);
        EXPECT(cnn_quantize(&q, &model, NULL, 0), CNN_ERROR_INVALID_ARGUMENT, &q.error);
        EXPECT(cnn_quantize(&q, &model, &images, -1), CNN_ERROR_INVALID_ARGUMENT, &q.error);
        EXPECT(cnn_quantized_predict(NULL, x, 1, classes, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
        EXPECT(cnn_quantized_predict(&q, x, 1, classes, NULL), CNN_ERROR_STATE, &q.error);
        EXPECT(cnn_quantized_predict(&q, NULL, 1, classes, NULL), CNN_ERROR_INVALID_ARGUMENT, &q.error);
        EXPECT(cnn_quantized_predict(&q, x, 1, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &q.error);
        cnn_quantized_free(NULL);
        cnn_quantized_free(&q);
        EXPECT(cnn_model_export_c(NULL, "x.c", NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
        EXPECT(cnn_model_export_c(&model, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
        EXPECT(cnn_model_export_c(&model, "", NULL), CNN_ERROR_INVALID_ARGUMENT, &model.error);
        EXPECT(cnn_model_export_c(&model, test_path("no-such-folder/x.c"), NULL), CNN_ERROR_IO, &model.error);
        memset(&export_desc, 0, sizeof export_desc);
        export_desc.name = "";
        EXPECT(cnn_model_export_c(&model, test_path("x.c"), &export_desc), CNN_ERROR_INVALID_ARGUMENT, &model.error);
        cnn_dataset_free(&images);
        missing = test_path("no-such-file");  /* test_path's buffer was reused above */
    }
    /* datasets */
    memset(&desc, 0, sizeof desc);
    EXPECT(cnn_dataset_load_csv(NULL, "x.csv", NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_dataset_load_csv(&data, NULL, NULL), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    EXPECT(cnn_dataset_load_csv(&data, "", NULL), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    EXPECT(cnn_dataset_load_csv(&data, missing, NULL), CNN_ERROR_IO, &data.error);
    EXPECT(cnn_dataset_load_csv_memory(NULL, csv, strlen(csv), NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_dataset_load_csv_memory(&data, NULL, 5, NULL), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    EXPECT(cnn_dataset_load_csv_memory(&data, csv, 0, NULL), CNN_ERROR_MALFORMED_DATA, &data.error);
    desc.width = -2;
    EXPECT(cnn_dataset_load_csv_memory(&data, csv, strlen(csv), &desc), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    desc.width = 2; desc.height = 2; desc.num_classes = -1;
    EXPECT(cnn_dataset_load_csv_memory(&data, csv, strlen(csv), &desc), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    desc.num_classes = CNN_MAX_CLASSES + 1;
    EXPECT(cnn_dataset_load_csv_memory(&data, csv, strlen(csv), &desc), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    desc.num_classes = 0; desc.max_rows = -1;
    EXPECT(cnn_dataset_load_csv_memory(&data, csv, strlen(csv), &desc), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    desc.max_rows = 0; desc.orientation = (cnn_orientation)9;
    EXPECT(cnn_dataset_load_csv_memory(&data, csv, strlen(csv), &desc), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    desc.orientation = CNN_ORIENTATION_DEFAULT; desc.width = 4; desc.height = 1; /* transposing needs a square */
    EXPECT(cnn_dataset_load_csv_memory(&data, csv, strlen(csv), &desc), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    desc.width = desc.height = 2; desc.num_classes = 1; /* label 1 is out of range */
    EXPECT(cnn_dataset_load_csv_memory(&data, csv, strlen(csv), &desc), CNN_ERROR_MALFORMED_DATA, &data.error);
    desc.num_classes = 0;
    EXPECT(cnn_dataset_load_csv_memory(&data, csv, strlen(csv), &desc), CNN_OK, NO_ERROR_STRUCT);
    cnn_dataset_free(&data);
    cnn_dataset_free(NULL);
    EXPECT(cnn_dataset_load_idx(NULL, "a", "b", NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_dataset_load_idx(&data, NULL, "b", NULL), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    EXPECT(cnn_dataset_load_idx(&data, missing, NULL, NULL), CNN_ERROR_IO, &data.error);
    EXPECT(cnn_dataset_load_idx_memory(NULL, "a", 1, "b", 1, NULL), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_dataset_load_idx_memory(&data, NULL, 1, "b", 1, NULL), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    EXPECT(cnn_dataset_load_idx_memory(&data, "a", 1, NULL, 1, NULL), CNN_ERROR_INVALID_ARGUMENT, &data.error);
    EXPECT(cnn_dataset_load_idx_memory(&data, "a", 0, "b", 0, NULL), CNN_ERROR_MALFORMED_DATA, &data.error);
    CHECK(data.images.data == NULL && data.labels == NULL, "left allocated");
    /* label maps */
    EXPECT(cnn_label_map_load(NULL, "x"), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_label_map_load(&map, NULL), CNN_ERROR_INVALID_ARGUMENT, &map.error);
    EXPECT(cnn_label_map_load(&map, missing), CNN_ERROR_IO, &map.error);
    EXPECT(cnn_label_map_load_memory(NULL, "0 48\n", 5), CNN_ERROR_INVALID_ARGUMENT, NO_ERROR_STRUCT);
    EXPECT(cnn_label_map_load_memory(&map, NULL, 5), CNN_ERROR_INVALID_ARGUMENT, &map.error);
    EXPECT(cnn_label_map_load_memory(&map, "0 48\n", 0), CNN_ERROR_MALFORMED_DATA, &map.error);
    EXPECT(cnn_label_map_load_memory(&map, "0 48\n", 5), CNN_OK, NO_ERROR_STRUCT);
    CHECK(cnn_label_map_char(NULL, 0) == '?' && cnn_label_map_char(&map, -1) == '?' && cnn_label_map_char(&map, 1) == '?' &&
          cnn_label_map_char(&map, CNN_MAX_CLASSES + 5) == '?' && cnn_label_map_char(&map, 0) == '0', "label_map_char");
    cnn_model_free(&model);
}

int main(void)
{
    RUN(results_rng_and_tensors);
    RUN(model_definition);
    RUN(blocks_batch_norm_and_pools);
    RUN(batch_norm_batch_of_one);
    RUN(forward_backward_and_loss);
    RUN(optimizers_and_training);
    RUN(metrics_and_split);
    RUN(files_and_loaders);
    return test_report();
}
