/* roundtrip.c - the cnn.h side of `make interop` (tests/interop/roundtrip.py
   is the PyTorch side): LeNet-5, the seed MLP, the seed CNN (without and
   with batch norm) and the seed ResNet cross between cnn.h and PyTorch
   through safetensors files, both ways.

     roundtrip c-to-torch DIR   for each model NAME, trains it a few steps in
                                cnn.h and writes DIR/NAME.safetensors and
                                DIR/NAME.io (a batch of 4 inputs and cnn.h's
                                outputs), for roundtrip.py c-to-torch to check
     roundtrip torch-to-c DIR   reads the DIR/NAME.safetensors and DIR/NAME.io
                                that roundtrip.py torch-to-c wrote, builds each
                                model from the file's metadata and also by hand
                                (filled with cnn_model_load_safetensors), runs
                                the inputs and compares with PyTorch's outputs:
                                exit 1 when a difference exceeds 1e-5 */
#define CNN_IMPLEMENTATION
#include "../../cnn.h"
#include "../test.h"
#include "../../examples/seed_models.h"

#define BATCH 4
#define TOLERANCE 1e-5

#define MODELS 5
static const char *const names[MODELS] = {"lenet5", "mlp", "cnn", "cnn_bn", "resnet"};

static cnn_result build(cnn_model *model, int which, uint64_t seed)
{
    cnn_model_init(model, 1, 28, 28, seed);
    if (which == 0) cnn_add_lenet5(model, 47);
    if (which == 1) seed_add_mlp(model, 47);
    if (which == 2) seed_add_cnn(model, 47);
    if (which == 3) seed_add_cnn_batch_norm(model, 47);
    if (which == 4) seed_add_resnet(model, 47);
    return cnn_model_build(model, BATCH);
}

/* Far-from-initial weights (and batch norm statistics), then three Adam
   steps on random data: weights cnn.h has trained, whose outputs depend on
   every one of them. */
static int c_to_torch(const char *dir)
{
    int which;
    for (which = 0; which < MODELS; which++) {
        static cnn_model model;
        cnn_optimizer adam;
        cnn_dataset data;
        char path[1024];
        int step;
        if (build(&model, which, 10 + (uint64_t)which) != CNN_OK || !make_random_dataset(&data, BATCH, 28, 47, 20 + (uint64_t)which)) {
            fprintf(stderr, "roundtrip: %s: %s\n", names[which], model.error.message);
            return 1;
        }
        test_randomise_weights(&model, 30 + (uint64_t)which);
        test_randomise_statistics(&model, 40 + (uint64_t)which);
        cnn_optimizer_init(&adam, &model, NULL);
        for (step = 0; step < 3; step++)
            if (cnn_model_train_step(&model, &adam, data.images.data, data.labels, BATCH, NULL, NULL) != CNN_OK) {
                fprintf(stderr, "roundtrip: %s: %s\n", names[which], model.error.message);
                return 1;
            }
        cnn_model_forward(&model, data.images.data, BATCH, CNN_MODE_EVAL);
        snprintf(path, sizeof path, "%s/%s.io", dir, names[which]);
        if (!test_io_write(path, &model, BATCH, data.images.data, cnn_model_output(&model))) return 1;
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, names[which]);
        if (cnn_model_save_safetensors(&model, path) != CNN_OK) {
            fprintf(stderr, "roundtrip: %s\n", model.error.message);
            return 1;
        }
        printf("%s: trained 3 steps in cnn.h, written to %s\n", names[which], path);
        cnn_optimizer_free(&adam);
        cnn_dataset_free(&data);
        cnn_model_free(&model);
    }
    return 0;
}

static int torch_to_c(const char *dir)
{
    int which, failed = 0;
    for (which = 0; which < MODELS; which++) {
        static cnn_model from_metadata, by_hand;
        char path[1024];
        test_io io;
        double worst[2];
        int way;
        snprintf(path, sizeof path, "%s/%s.io", dir, names[which]);
        if (!test_io_read(&io, path)) return 1;
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, names[which]);
        if (cnn_model_from_safetensors(&from_metadata, path, BATCH) != CNN_OK) {
            fprintf(stderr, "roundtrip: %s\n", from_metadata.error.message);
            return 1;
        }
        if (build(&by_hand, which, 1) != CNN_OK || cnn_model_load_safetensors(&by_hand, path) != CNN_OK) {
            fprintf(stderr, "roundtrip: %s\n", by_hand.error.message);
            return 1;
        }
        for (way = 0; way < 2; way++) {
            cnn_model *model = way ? &by_hand : &from_metadata;
            size_t outputs = cnn_shape_count(cnn_model_output_shape(model));
            if (outputs != io.outputs || cnn_model_forward(model, io.input, (int)io.batch, CNN_MODE_EVAL) != CNN_OK) {
                fprintf(stderr, "roundtrip: %s: %lu outputs, PyTorch wrote %u\n", names[which], (unsigned long)outputs, io.outputs);
                return 1;
            }
            worst[way] = test_max_abs_diff(cnn_model_output(model), io.output, io.batch * outputs);
        }
        printf("%s: PyTorch's file in cnn.h, built from its metadata: max |difference| = %.2g; built by hand: %.2g\n",
               names[which], worst[0], worst[1]);
        if (!(worst[0] <= TOLERANCE && worst[1] <= TOLERANCE)) {
            printf("%s: FAIL, more than %g\n", names[which], TOLERANCE);
            failed = 1;
        }
        cnn_model_free(&from_metadata);
        cnn_model_free(&by_hand);
        test_io_free(&io);
    }
    return failed;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "c-to-torch") == 0) return c_to_torch(argv[2]);
    if (argc == 3 && strcmp(argv[1], "torch-to-c") == 0) return torch_to_c(argv[2]);
    fprintf(stderr, "usage: roundtrip c-to-torch|torch-to-c DIR\n");
    return 2;
}
