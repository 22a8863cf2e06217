/* cnn.c - a convolutional network on EMNIST, and what you want to see of it.

     cnn --train emnist47-train.csv --test emnist47-test.csv \
         [--mapping emnist-balanced-mapping.txt] [--out cnn-out] [--epochs 10] \
         [--lr-decay 0.5 --decay-after 5] [--shift 0.1] [--rotate 10] [--batch-norm]
     cnn --eval cnn-out/model.cnn --test emnist47-test.csv

   Two blocks of [conv 3x3 "same" -> LeakyReLU 0.3 -> conv 3x3 "same" ->
   LeakyReLU 0.3 -> max-pool 2 -> dropout 0.25], 32 then 64 filters, then
   dense 256 ReLU -> dense 128 ReLU -> dense 47 softmax; Adam lr 1e-3, batch
   256, seed 1, 10% of the training file held out for validation. Prints a
   progress bar (one line per epoch when stdout is not a terminal), the test
   accuracy and each class's precision and recall; writes history.csv,
   curves.png, confusion.png, mistakes.png and model.cnn into the output
   folder. --lr-decay F multiplies the learning rate by F after each epoch
   once --decay-after N epochs have run at 1e-3 (cnn_fit_desc.lr_decay); the
   README's table says what it gains. --shift F and --rotate D move each
   training image by up to F of its size and turn it by up to D degrees,
   anew every epoch (cnn_augment_batch); validation and test images are
   never changed. --batch-norm puts batch norm after each conv, before its
   activation. --eval MODEL evaluates a saved model on the test file
   instead of training. With -fopenmp it uses OMP_NUM_THREADS threads (default: all); the
   results do not depend on it. The program around the model is seed_main
   in seed.h, shared with mlp.c.
   Build: cc -std=c99 -O2 [-fopenmp] -I/usr/include/stb cnn.c -o cnn -lm */
#include "seed.h"        /* cnn.h, stb_image_write.h and seed_main */
#include "seed_models.h" /* seed_add_cnn: the model, shared with the benchmark */

int main(int argc, char **argv)
{
    /* 1: --lr-decay, --decay-after, --shift, --rotate; and --batch-norm */
    static const seed_program cnn = {"cnn", seed_add_cnn, 1, seed_add_cnn_batch_norm};
    return seed_main(argc, argv, &cnn);
}
