/* seed_models.h - the seed models of the EMNIST write-up and a small
   ResNet, written once for the programs that train them: examples/mlp.c,
   cnn.c and resnet.c (through seed.h) and tests/bench/bench.c, which times
   them against PyTorch. Include
   it after cnn.h. Each adds its layers after the input (1, 28, 28); errors
   are sticky, so the build reports the first. (static inline: a program
   that uses one of the two is not warned about the other.) */
#ifndef SEED_MODELS_H
#define SEED_MODELS_H

/* 784 -> dense 512 ReLU -> dropout 0.2 -> dense 512 ReLU -> dropout 0.2 ->
   dense classes softmax */
static inline cnn_result seed_add_mlp(cnn_model *model, int classes)
{
    cnn_add_flatten(model);               /* (784) */
    cnn_add_dense(model, 512);
    cnn_add_relu(model);
    cnn_add_dropout(model, 0.2f);
    cnn_add_dense(model, 512);
    cnn_add_relu(model);
    cnn_add_dropout(model, 0.2f);
    cnn_add_dense(model, classes);
    return cnn_add_softmax(model);
}

/* Two blocks of [conv 3x3 "same" -> LeakyReLU 0.3 -> conv 3x3 "same" ->
   LeakyReLU 0.3 -> max-pool 2 -> dropout 0.25], 32 then 64 filters, then
   dense 256 ReLU -> dense 128 ReLU -> dense classes softmax. With
   batch_norm, each conv is followed by batch norm, before its activation. */
static inline cnn_result seed_add_cnn_with(cnn_model *model, int classes, int batch_norm)
{
    static const int filters[2] = {32, 64};
    int block, conv;
    for (block = 0; block < 2; block++) { /* out: (32, 14, 14), then (64, 7, 7) */
        for (conv = 0; conv < 2; conv++) {
            cnn_add_conv2d(model, filters[block], 3, 1, 1);  /* 3x3, stride 1, pad 1: "same" */
            if (batch_norm) cnn_add_batch_norm(model);
            cnn_add_leaky_relu(model, 0.3f);
        }
        cnn_add_max_pool(model, 2, 2);
        cnn_add_dropout(model, 0.25f);
    }
    cnn_add_flatten(model);               /* (3136) */
    cnn_add_dense(model, 256);
    cnn_add_relu(model);
    cnn_add_dense(model, 128);
    cnn_add_relu(model);
    cnn_add_dense(model, classes);
    return cnn_add_softmax(model);
}

static inline cnn_result seed_add_cnn(cnn_model *model, int classes) { return seed_add_cnn_with(model, classes, 0); }
static inline cnn_result seed_add_cnn_batch_norm(cnn_model *model, int classes) { return seed_add_cnn_with(model, classes, 1); }

/* A basic residual block (He et al., 2015): conv 3x3 (stride) -> batch norm
   -> ReLU -> conv 3x3 -> batch norm, plus the block's input (through a 1x1
   projection where the stride or the channels change), then ReLU. */
/* conv 3x3 with padding 1, He-initialised, as ReLU nets want */
static inline cnn_result seed_add_conv3x3(cnn_model *model, int filters, int stride)
{
    cnn_layer_desc conv = {0};
    conv.type = CNN_LAYER_CONV2D;
    conv.units = filters; conv.kernel = 3; conv.stride = stride; conv.padding = 1;
    conv.init = CNN_INIT_HE_NORMAL;
    return cnn_model_add(model, &conv);
}

static inline cnn_result seed_add_basic_block(cnn_model *model, int filters, int stride)
{
    cnn_add_residual_begin(model);
    seed_add_conv3x3(model, filters, stride);
    cnn_add_batch_norm(model);
    cnn_add_relu(model);
    seed_add_conv3x3(model, filters, 1);
    cnn_add_batch_norm(model);
    cnn_add_residual_end(model, CNN_INIT_HE_NORMAL);
    return cnn_add_relu(model);
}

/* A small ResNet for 28x28 characters: a stem of conv 3x3 32 -> batch norm
   -> ReLU -> max pool 3x3 stride 2 padding 1 (28 -> 14, ResNet's stem pool),
   then three stages of two basic blocks, 32, 64 and 128 filters at 14x14,
   7x7 and 4x4 (the first block of stages 2 and 3 has stride 2), global
   average pooling and dense classes softmax. */
static inline cnn_result seed_add_resnet(cnn_model *model, int classes)
{
    static const int filters[3] = {32, 64, 128};
    cnn_layer_desc stem_pool = {0};
    int stage, block;
    seed_add_conv3x3(model, 32, 1);       /* (32, 28, 28) */
    cnn_add_batch_norm(model);
    cnn_add_relu(model);
    stem_pool.type = CNN_LAYER_MAX_POOL;
    stem_pool.kernel = 3; stem_pool.stride = 2; stem_pool.padding = 1;
    cnn_model_add(model, &stem_pool);     /* (32, 14, 14) */
    for (stage = 0; stage < 3; stage++)   /* (32, 14, 14), (64, 7, 7), (128, 4, 4) */
        for (block = 0; block < 2; block++)
            seed_add_basic_block(model, filters[stage], stage > 0 && block == 0 ? 2 : 1);
    cnn_add_global_avg_pool(model);       /* (128) */
    cnn_add_dense(model, classes);
    return cnn_add_softmax(model);
}

#endif
