/* classics.h - LeNet-5, AlexNet and VGG16 described layer by layer, for
   examples/summary.c, which prints their summaries, and tests/test_summary.c,
   which checks their shapes and parameter counts against the papers'.
   Each function starts the model (cnn_model_init, seed 1) and adds every
   layer; none builds it, so nothing is allocated. Errors are sticky: check
   model->definition_error once at the end. Include after cnn.h. */
#ifndef CLASSICS_H
#define CLASSICS_H

/* The original LeNet-5: 5x5 convolutions without padding, tanh, average
   pooling ("subsampling"), fully connected 120 - 84 - 10. (cnn_add_lenet5
   is the one trained today: ReLU, max-pooling, 28x28 padded by 2.) */
static void describe_lenet5(cnn_model *m)
{
    cnn_model_init(m, 1, 32, 32, 1);
    cnn_add_conv2d(m, 6, 5, 1, 0);   /* (6, 28, 28) */
    cnn_add_tanh(m);
    cnn_add_avg_pool(m, 2, 2);       /* (6, 14, 14) */
    cnn_add_conv2d(m, 16, 5, 1, 0);  /* (16, 10, 10) */
    cnn_add_tanh(m);
    cnn_add_avg_pool(m, 2, 2);       /* (16, 5, 5) */
    cnn_add_flatten(m);              /* (400) */
    cnn_add_dense(m, 120);
    cnn_add_tanh(m);
    cnn_add_dense(m, 84);
    cnn_add_tanh(m);
    cnn_add_dense(m, 10);
    cnn_add_softmax(m);
}

/* The classifier AlexNet ends with and VGG16 kept: dense 4096 - 4096 - 1000,
   ReLU and dropout 0.5 after each hidden layer. */
static void add_classifier_4096(cnn_model *m)
{
    int i;
    for (i = 0; i < 2; i++) {
        cnn_add_dense(m, 4096);
        cnn_add_relu(m);
        cnn_add_dropout(m, 0.5f);
    }
    cnn_add_dense(m, 1000);
    cnn_add_softmax(m);
}

/* AlexNet as one tower (no grouped convolutions, no local response
   normalisation), the usual 227x227 input. */
static void describe_alexnet(cnn_model *m)
{
    cnn_model_init(m, 3, 227, 227, 1);
    cnn_add_conv2d(m, 96, 11, 4, 0);  /* (96, 55, 55) */
    cnn_add_relu(m);
    cnn_add_max_pool(m, 3, 2);        /* (96, 27, 27) */
    cnn_add_conv2d(m, 256, 5, 1, 2);  /* (256, 27, 27) */
    cnn_add_relu(m);
    cnn_add_max_pool(m, 3, 2);        /* (256, 13, 13) */
    cnn_add_conv2d(m, 384, 3, 1, 1);
    cnn_add_relu(m);
    cnn_add_conv2d(m, 384, 3, 1, 1);
    cnn_add_relu(m);
    cnn_add_conv2d(m, 256, 3, 1, 1);
    cnn_add_relu(m);
    cnn_add_max_pool(m, 3, 2);        /* (256, 6, 6) */
    cnn_add_flatten(m);               /* (9216) */
    add_classifier_4096(m);
}

/* VGG16, configuration D: 13 convolutions 3x3 "same" in five blocks, each
   block ending in a 2x2 max-pool, then 25088 - 4096 - 4096 - 1000. */
static void describe_vgg16(cnn_model *m)
{
    static const int filters[5] = {64, 128, 256, 512, 512};
    static const int convs[5] = {2, 2, 3, 3, 3};
    int block, i;
    cnn_model_init(m, 3, 224, 224, 1);
    for (block = 0; block < 5; block++) {
        for (i = 0; i < convs[block]; i++) {
            cnn_add_conv2d(m, filters[block], 3, 1, 1);
            cnn_add_relu(m);
        }
        cnn_add_max_pool(m, 2, 2);    /* 224 -> 112 -> 56 -> 28 -> 14 -> 7 */
    }
    cnn_add_flatten(m);               /* (25088) */
    add_classifier_4096(m);
}

#endif
