/* seed.h - what the two seed programs, mlp.c and cnn.c, share: everything
   but their models. Each program writes a function that adds its layers
   after the input (1, 28, 28) and hands it to seed_main with its name:

     static cnn_result add_mlp(cnn_model *model, int classes) { ... }
     int main(int argc, char **argv)
     {
         static const seed_program mlp = {"mlp", add_mlp, 0};
         return seed_main(argc, argv, &mlp);
     }

   seed_main reads the options, splits the training file 90/10 (seed 1) for
   validation, builds the model (seed 1, batches of up to 256), names its
   classes from EMNIST's mapping file (training.h says where it looks),
   trains it with Adam (lr 1e-3, batch 256) and cnn.h's progress reporter,
   saving checkpoint.cnn in the output folder after every epoch (--resume
   continues from it: the checkpoint holds the weights, Adam, the rate the
   schedule has reached and the generators; the other options must be those
   of the run it continues), prints the test accuracy and each class's
   precision and recall, and writes history.csv, curves.png, confusion.png,
   mistakes.png and model.cnn into the output folder. It includes cnn.h
   with its implementation and the CNN_IMAGES section (the pictures of
   training), and stb_image_write.h, which writes them: the program
   includes this file alone. */
#ifndef SEED_H
#define SEED_H

#define STB_IMAGE_IMPLEMENTATION        /* stb is header-only: its code goes here */
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define CNN_IMAGES                      /* the pictures of training */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "make_dirs.h"                  /* make_dirs: mkdir -p */
#include "training.h"                   /* class names, checkpoints, --resume */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct seed_program {
    const char *name;  /* in messages and the usage line; the output folder is NAME-out */
    cnn_result (*add_layers)(cnn_model *model, int classes); /* after the input (1, 28, 28) */
    int tuning;        /* 1: it also takes --lr-decay, --decay-after, --shift and --rotate */
    cnn_result (*add_layers_batch_norm)(cnn_model *model, int classes); /* the model with batch
                          norm, for --batch-norm; NULL: no such option */
} seed_program;

#define SEED_FAIL(message) do { fprintf(stderr, "%s: %s\n", program->name, message); goto done; } while (0)

static const char *seed_in_folder(char *path, size_t size, const char *folder, const char *name)
{
    snprintf(path, size, "%s/%s", folder, name);
    return path;
}

/* The model on the test set: each image's predicted class into *predicted
   (test.count) and the confusion matrix into *matrix (classes x classes),
   both allocated here, and the per-class table printed. 0, with the reason
   printed, on failure. */
static int seed_test(const seed_program *program, cnn_model *model, cnn_dataset *test, int classes, const cnn_label_map *names,
                     int **predicted, int **matrix)
{
    static char text[8192];
    *predicted = (int *)malloc((size_t)test->count * sizeof(int));
    *matrix = (int *)malloc((size_t)classes * classes * sizeof(int));
    if (!*predicted || !*matrix) {
        fprintf(stderr, "%s: out of memory\n", program->name);
        return 0;
    }
    if (cnn_model_predict(model, test->images.data, test->count, *predicted, NULL) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", program->name, model->error.message);
        return 0;
    }
    cnn_confusion_count(test->labels, *predicted, test->count, classes, *matrix);
    cnn_confusion_report(*matrix, classes, names, text, sizeof text);
    fputs(text, stdout);
    return 1;
}

/* --eval MODEL --test CSV: the saved model on the test file, no training:
   the per-class table, its classes named by the mapping file (given, or
   found as training.h says) when it has the model's class count, and the
   accuracy. */
static int seed_evaluate(const seed_program *program, const char *model_path, const char *test_csv, const char *mapping)
{
    static cnn_model model;
    static cnn_label_map map;
    static char text[8192], found[4096];
    cnn_dataset test = {0};
    const cnn_label_map *names = NULL;
    int *predicted = NULL, *matrix = NULL, classes, status = 1;
    if (cnn_model_load(&model, model_path, 256) != CNN_OK) SEED_FAIL(model.error.message);
    if (cnn_dataset_load_csv(&test, test_csv, NULL) != CNN_OK) SEED_FAIL(test.error.message);
    classes = (int)cnn_shape_count(cnn_model_output_shape(&model));
    if (model.input.c != test.images.c || model.input.h != test.images.h || model.input.w != test.images.w) {
        fprintf(stderr, "%s: '%s' takes inputs of (%d, %d, %d), but the images of '%s' are (%d, %d, %d)\n", program->name,
                model_path, model.input.c, model.input.h, model.input.w, test_csv, test.images.c, test.images.h, test.images.w);
        goto done;
    }
    if (test.num_classes > classes) SEED_FAIL("the test file has labels the model has no class for");
    mapping = training_find_mapping(mapping, test_csv, found, sizeof found);
    if (mapping) {
        if (cnn_label_map_load(&map, mapping) != CNN_OK) SEED_FAIL(map.error.message);
        if (map.count == classes) names = &map;
    }
    cnn_model_summary(&model, text, sizeof text);
    fputs(text, stdout);
    if (!seed_test(program, &model, &test, classes, names, &predicted, &matrix)) goto done;
    printf("test accuracy: %.2f%%\n", 100.0 * cnn_confusion_accuracy(matrix, classes));
    status = 0;
done:
    free(predicted), free(matrix);
    cnn_model_free(&model), cnn_dataset_free(&test);
    return status;
}

static int seed_main(int argc, char **argv, const seed_program *program)
{
    static cnn_model model, wanted; /* large (they hold every layer): static, not on the stack */
    static cnn_label_map map;
    static char text[8192], path[4096], found[4096], checkpoint[4096], default_out[64];
    const char *train_csv = NULL, *test_csv = NULL, *mapping = NULL, *resume = NULL, *eval = NULL, *out = default_out;
    cnn_dataset full = {0}, train = {0}, validation = {0}, test = {0};
    cnn_optimizer adam = {0};
    cnn_fit_desc fit = {0};
    cnn_augmenter augmenter = {0};        /* shifts and rotations of training batches; zero: none */
    cnn_progress_desc progress_desc = {0};
    training_hooks hooks = {0};           /* the progress reporter and the checkpoints */
    cnn_fit_state state = {0};            /* where training stands, for checkpoints */
    cnn_history history = {0};            /* every epoch's numbers */
    cnn_error error;
    const cnn_label_map *names = NULL;  /* class characters; NULL: numbers */
    int *predicted = NULL, *matrix = NULL, classes = 47, i, status = 1, batch_norm = 0;
    double seconds = 0.0;

    snprintf(default_out, sizeof default_out, "%s-out", program->name);
    fit.epochs = 10;
    for (i = 1; i < argc; i += 2) { /* every option but --batch-norm takes a value */
        if (program->add_layers_batch_norm && !strcmp(argv[i], "--batch-norm")) {
            batch_norm = 1;
            i--;
            continue;
        }
        if (i + 1 >= argc) break;
        if (!strcmp(argv[i], "--train")) train_csv = argv[i + 1];
        else if (!strcmp(argv[i], "--eval")) eval = argv[i + 1];
        else if (!strcmp(argv[i], "--test")) test_csv = argv[i + 1];
        else if (!strcmp(argv[i], "--mapping")) mapping = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--epochs")) fit.epochs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--resume")) resume = argv[i + 1];
        else if (!program->tuning) break;
        else if (!strcmp(argv[i], "--lr-decay")) fit.lr_decay = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--decay-after")) fit.lr_decay_after = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--shift")) augmenter.desc.shift = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--rotate")) augmenter.desc.rotate = (float)atof(argv[i + 1]);
        else break;
    }
    if (i < argc || !(train_csv || eval) || (train_csv && eval) || !test_csv || fit.epochs < 1) {
        const int indent = (int)(strlen("usage: ") + strlen(program->name) + 1); /* under "--train" */
        fprintf(stderr, "usage: %s --train CSV --test CSV [--mapping FILE] [--out FOLDER] [--epochs N] [--resume CHECKPOINT]\n",
                program->name);
        if (program->tuning) fprintf(stderr, "%*s[--lr-decay F --decay-after N] [--shift F] [--rotate DEGREES]\n", indent, "");
        if (program->add_layers_batch_norm) fprintf(stderr, "%*s[--batch-norm]\n", indent, "");
        fprintf(stderr, "   or: %s --eval MODEL --test CSV [--mapping FILE]\n", program->name);
        return 2;
    }
    if (eval) return seed_evaluate(program, eval, test_csv, mapping);

    /* data: the training file split 90/10 (seeded), the test file, class characters */
    if (cnn_dataset_load_csv(&full, train_csv, NULL) != CNN_OK) SEED_FAIL(full.error.message);
    if (cnn_dataset_load_csv(&test, test_csv, NULL) != CNN_OK) SEED_FAIL(test.error.message);
    if (cnn_dataset_split(&full, 0.1f, 1, &train, &validation) != CNN_OK) SEED_FAIL(train.error.message);
    cnn_dataset_free(&full);
    mapping = training_find_mapping(mapping, train_csv, found, sizeof found);
    if (mapping && cnn_label_map_load(&map, mapping) != CNN_OK) SEED_FAIL(map.error.message);
    names = mapping ? &map : NULL;
    if (train.num_classes > classes || test.num_classes > classes) SEED_FAIL("labels above 46: this is not EMNIST balanced");
    printf("train %d, validation %d, test %d images\n", train.count, validation.count, test.count);

    /* the model named by the mapping's characters, Adam (or both from a
       checkpoint), and training with validation, a progress reporter and a
       checkpoint after every epoch */
    if (!make_dirs(out)) SEED_FAIL("cannot create the output folder");
    cnn_model_init(&wanted, 1, 28, 28, 1); /* input (1, 28, 28), seed 1 */
    (batch_norm ? program->add_layers_batch_norm : program->add_layers)(&wanted, classes);
    cnn_rng_seed(&augmenter.rng, 2);
    state.augment_rng = &augmenter.rng;
    state.history = &history;
    if (resume) {
        if (cnn_checkpoint_load(&model, &adam, &state, resume, 256) != CNN_OK) SEED_FAIL(model.error.message);
        if (!training_same_layers(&model, &wanted)) SEED_FAIL("the checkpoint to resume is of another model");
        printf("resuming from %s after epoch %d\n", resume, state.epoch);
    } else {
        model = wanted;
        memset(&wanted, 0, sizeof wanted); /* model has it now */
        if (cnn_model_build(&model, 256) != CNN_OK) SEED_FAIL(model.error.message); /* largest batch; the first error of the adds */
        if (mapping && !training_name_classes(&model, &map, mapping, program->name)) goto done;
        if (cnn_optimizer_init(&adam, &model, NULL) != CNN_OK) SEED_FAIL(model.error.message); /* NULL: Adam, lr 1e-3 */
    }
    cnn_model_summary(&model, text, sizeof text);
    fputs(text, stdout);
    progress_desc.history = &history;
    hooks.program = program->name;
    hooks.checkpoint_path = seed_in_folder(checkpoint, sizeof checkpoint, out, "checkpoint.cnn");
    hooks.optimizer = &adam;
    hooks.state = &state;
    fit.batch_size = 256;
    fit.validation = &validation;
    training_use_hooks(&fit, &hooks);
    if (augmenter.desc.shift > 0.0f || augmenter.desc.rotate > 0.0f) {
        fit.augment = cnn_augment_batch;
        fit.augment_user = &augmenter;
    }
    cnn_progress_init(&hooks.progress, stdout, &progress_desc);
    if (cnn_model_fit(&model, &adam, &train, &fit) != CNN_OK) SEED_FAIL(model.error.message);
    if (hooks.failed) goto done; /* the checkpoint's error is printed */

    /* the test set: predictions, confusion matrix, per-class table */
    if (!seed_test(program, &model, &test, classes, names, &predicted, &matrix)) goto done;
    for (i = 0; i < history.count; i++) seconds += history.epochs[i].seconds;

    /* the output folder */
    if (cnn_history_save_csv(&history, seed_in_folder(path, sizeof path, out, "history.csv")) != CNN_OK)
        SEED_FAIL(history.error.message);
    if (cnn_curves_save_png(&history, seed_in_folder(path, sizeof path, out, "curves.png"), &error) != CNN_OK ||
        cnn_confusion_save_png(matrix, classes, names, seed_in_folder(path, sizeof path, out, "confusion.png"), &error) != CNN_OK ||
        cnn_mistakes_save_png(&test, predicted, names, seed_in_folder(path, sizeof path, out, "mistakes.png"), &error) != CNN_OK)
        SEED_FAIL(error.message);
    if (cnn_model_save(&model, seed_in_folder(path, sizeof path, out, "model.cnn")) != CNN_OK) SEED_FAIL(model.error.message);
    printf("output folder: %s\n", out);
    printf("trained %d epochs in %.1f s\n", history.count, seconds);
    printf("test accuracy: %.2f%%\n", 100.0 * cnn_confusion_accuracy(matrix, classes)); /* last: scripts read it there */
    status = 0;
done:
    free(predicted), free(matrix);
    cnn_history_free(&history);
    cnn_optimizer_free(&adam), cnn_model_free(&model), cnn_model_free(&wanted), cnn_fit_state_free(&state);
    cnn_dataset_free(&full), cnn_dataset_free(&train), cnn_dataset_free(&validation), cnn_dataset_free(&test);
    return status;
}

#endif
