/* summary.c - describe three classic networks, and the small ResNet that
   examples/resnet.c trains, and print their summaries, without allocating
   a single activation: cnn_model_init and the adds infer every shape and
   count every parameter; only cnn_model_build allocates.

     LeNet-5  (LeCun et al., 1998)          32x32x1,   10 classes      61,706
     AlexNet  (Krizhevsky et al., 2012)     227x227x3, 1000 classes    62,378,344
     VGG16    (Simonyan & Zisserman, 2014)  224x224x3, 1000 classes    138,357,544
     resnet   (examples/seed_models.h)      28x28x1,   47 classes

   usage: summary [lenet5 | alexnet | vgg16 | resnet]   (default: all four) */
#define CNN_IMPLEMENTATION
#include "../cnn.h"

#include <stdio.h>
#include <string.h>

#include "classics.h"    /* describe_lenet5, describe_alexnet, describe_vgg16 */
#include "seed_models.h" /* seed_add_resnet */

/* The ResNet of examples/resnet.c, for EMNIST's 47 classes. */
static void describe_resnet(cnn_model *m)
{
    cnn_model_init(m, 1, 28, 28, 1);
    seed_add_resnet(m, 47);
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
    static const char *names[4] = {"lenet5", "alexnet", "vgg16", "resnet"};
    static void (*const describe[4])(cnn_model *) = {describe_lenet5, describe_alexnet, describe_vgg16, describe_resnet};
    static cnn_model model; /* large (it holds every layer): static, not on the stack */
    int i, ok = 1, shown = 0;
    for (i = 0; i < 4; i++) {
        if (argc > 1 && strcmp(argv[1], names[i]) != 0) continue;
        describe[i](&model);
        ok &= print_summary(names[i], &model);
        cnn_model_free(&model); /* nothing was allocated; this just resets it */
        shown++;
    }
    if (!shown) {
        fprintf(stderr, "usage: summary [lenet5 | alexnet | vgg16 | resnet]\n");
        return 2;
    }
    return ok ? 0 : 1;
}
