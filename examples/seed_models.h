/* seed_models.h - the two seed models of the EMNIST write-up, written once
   for the programs that train them: examples/mlp.c and examples/cnn.c (through
   seed.h) and tests/bench/bench.c, which times them against PyTorch. Include
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
   dense 256 ReLU -> dense 128 ReLU -> dense classes softmax */
static inline cnn_result seed_add_cnn(cnn_model *model, int classes)
{
    static const int filters[2] = {32, 64};
    int block;
    for (block = 0; block < 2; block++) { /* out: (32, 14, 14), then (64, 7, 7) */
        cnn_add_conv2d(model, filters[block], 3, 1, 1);  /* 3x3, stride 1, pad 1: "same" */
        cnn_add_leaky_relu(model, 0.3f);
        cnn_add_conv2d(model, filters[block], 3, 1, 1);
        cnn_add_leaky_relu(model, 0.3f);
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

#endif
