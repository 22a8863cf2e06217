/* mlp.c - a multilayer perceptron on EMNIST, and what you want to see of it.

     mlp --train emnist47-train.csv --test emnist47-test.csv \
         [--mapping emnist-balanced-mapping.txt] [--out mlp-out] [--epochs 10]
     mlp --eval mlp-out/model.cnn --test emnist47-test.csv

   784 -> dense 512 ReLU -> dropout 0.2 -> dense 512 ReLU -> dropout 0.2 ->
   dense 47 softmax; Adam lr 1e-3, batch 256, seed 1, 10% of the training
   file held out for validation. Prints a progress bar (one line per epoch
   when stdout is not a terminal), the test accuracy and each class's
   precision and recall; writes history.csv, curves.png, confusion.png,
   mistakes.png and model.cnn into the output folder. --eval MODEL
   evaluates a saved model on the test file instead of training. With -fopenmp it uses
   OMP_NUM_THREADS threads (default: all); the results do not depend on it.
   The program around the model is seed_main in seed.h, shared with cnn.c.
   Build: cc -std=c99 -O2 [-fopenmp] -I/usr/include/stb mlp.c -o mlp -lm */
#include "seed.h"        /* cnn.h, stb_image_write.h and seed_main */
#include "seed_models.h" /* seed_add_mlp: the model, shared with the benchmark */

int main(int argc, char **argv)
{
    static const seed_program mlp = {"mlp", seed_add_mlp, 0, NULL}; /* 0, NULL: no tuning options, no --batch-norm */
    return seed_main(argc, argv, &mlp);
}
