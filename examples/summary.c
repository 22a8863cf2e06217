/* summary.c - describe three classic networks and print their summaries,
   without allocating a single activation: cnn_model_init and the adds infer
   every shape and count every parameter; only cnn_model_build allocates.

     LeNet-5  (LeCun et al., 1998)          32x32x1,   10 classes      61,706
     AlexNet  (Krizhevsky et al., 2012)     227x227x3, 1000 classes    62,378,344
     VGG16    (Simonyan & Zisserman, 2014)  224x224x3, 1000 classes    138,357,544

   usage: summary [lenet5 | alexnet | vgg16]   (default: all three) */
#define CNN_IMPLEMENTATION
#include "../cnn.h"

#include <stdio.h>
#include <string.h>

/* The original LeNet-5: 5x5 convolutions without padding, tanh, average
   pooling ("subsampling"), fully connected 120 - 84 - 10. */
static void describe_lenet5(cnn_model *m)
{
    cnn_model_init(m, 1, 32, 32, 1);
    cnn_add_conv2d(m, 6, 5, 1, 0);   /* (6, 28, 28) */
    cnn_add_tanh(m);
    cnn_add_avg_pool(m, 2, 2);       /* (6, 14, 14) */
    cnn_add_conv2d(m, 16, 5, 1, 0);  /* (16, 10, 10) */
    cnn_add_tanh(m);
    cnn_add_avg_pool(m, 2, 2);       /* (16, 5, 5) */
    cnn_add_flatten(m);
    cnn_add_dense(m, 120);
    cnn_add_tanh(m);
    cnn_add_dense(m, 84);
    cnn_add_tanh(m);
    cnn_add_dense(m, 10);
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
    cnn_add_max_pool(m, 3, 2);        /* (256, 6, 6) = 9216 */
    cnn_add_flatten(m);
    cnn_add_dense(m, 4096);
    cnn_add_relu(m);
    cnn_add_dropout(m, 0.5f);
    cnn_add_dense(m, 4096);
    cnn_add_relu(m);
    cnn_add_dropout(m, 0.5f);
    cnn_add_dense(m, 1000);
    cnn_add_softmax(m);
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
    cnn_add_flatten(m);
    cnn_add_dense(m, 4096);
    cnn_add_relu(m);
    cnn_add_dropout(m, 0.5f);
    cnn_add_dense(m, 4096);
    cnn_add_relu(m);
    cnn_add_dropout(m, 0.5f);
    cnn_add_dense(m, 1000);
    cnn_add_softmax(m);
}

/* Prints the summary, or the first error met while describing the model
   (errors are sticky, so one check after the adds is enough). */
static int print_summary(const char *name, cnn_model *m)
{
    char text[8192];
    if (m->definition_error != CNN_OK) {
        fprintf(stderr, "summary: %s: %s\n", name, m->error.message);
        return 0;
    }
    cnn_model_summary(m, text, sizeof text);
    printf("%s\n%s\n", name, text);
    return 1;
}

int main(int argc, char **argv)
{
    static const char *names[3] = {"lenet5", "alexnet", "vgg16"};
    static void (*const describe[3])(cnn_model *) = {describe_lenet5, describe_alexnet, describe_vgg16};
    static cnn_model model; /* large (it holds every layer): static, not on the stack */
    int i, ok = 1, shown = 0;
    for (i = 0; i < 3; i++) {
        if (argc > 1 && strcmp(argv[1], names[i]) != 0) continue;
        describe[i](&model);
        ok &= print_summary(names[i], &model);
        cnn_model_free(&model); /* nothing was allocated; this just resets it */
        shown++;
    }
    if (!shown) {
        fprintf(stderr, "usage: summary [lenet5 | alexnet | vgg16]\n");
        return 2;
    }
    return ok ? 0 : 1;
}
