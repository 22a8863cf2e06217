/* resnet.c - a small ResNet on EMNIST: batch normalization, residual
   blocks and global average pooling, trained like the seed models.

     resnet --train emnist47-train.csv --test emnist47-test.csv \
            [--mapping emnist-balanced-mapping.txt] [--out resnet-out] [--epochs 10] \
            [--lr-decay 0.5 --decay-after 5] [--shift 0.1] [--rotate 10]
     resnet --eval resnet-out/model.cnn --test emnist47-test.csv

   conv 3x3 32 -> batch norm -> ReLU -> max pool 3x3 stride 2 padding 1
   (28x28 -> 14x14); three stages of two basic blocks [conv 3x3 -> batch
   norm -> ReLU -> conv 3x3 -> batch norm, plus the block's input, -> ReLU]
   with 32, 64 and 128 filters at 14x14, 7x7 and 4x4, the first block of
   the second and third stage with stride 2 and a 1x1 projection of its
   input; global average pooling; dense 47 softmax. The model is
   seed_add_resnet in seed_models.h. Everything around it - the options,
   Adam lr 1e-3, batch 256, seed 1, the 90/10 validation split, the
   progress, the test report, the pictures and model.cnn in the output
   folder, checkpoints and --resume - is seed_main in seed.h, as for mlp.c
   and cnn.c. `make emnist-all MODELS=resnet` trains it with the cnn's
   schedule and augmentation.
   Build: cc -std=c99 -O2 [-fopenmp] -I/usr/include/stb resnet.c -o resnet -lm */
#include "seed.h"        /* cnn.h, stb_image_write.h and seed_main */
#include "seed_models.h" /* seed_add_resnet */

int main(int argc, char **argv)
{
    static const seed_program resnet = {"resnet", seed_add_resnet, 1, NULL}; /* 1: the tuning options */
    return seed_main(argc, argv, &resnet);
}
