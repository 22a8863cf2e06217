/* lenet5.c - train LeNet-5 on EMNIST (Kaggle CSV) or any IDX data set,
   save the model with its class names, and report test accuracy.

     lenet5 --train emnist-balanced-train.csv --test emnist-balanced-test.csv
     lenet5 --train-idx train-images-idx3-ubyte train-labels-idx1-ubyte \
            --test-idx t10k-images-idx3-ubyte t10k-labels-idx1-ubyte \
            --names "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
     lenet5 --eval lenet5.cnn --test emnist-balanced-test.csv
     lenet5 --resume lenet5-checkpoint.cnn --train ... --test ...

   The model, cnn_add_lenet5 (LeCun et al., 1998, with ReLU and max-pooling
   as is usual now):
     conv 6@5x5 pad 2 - ReLU - max-pool 2 - conv 16@5x5 - ReLU - max-pool 2
     - dense 120 - ReLU - dense 84 - ReLU - dense classes - softmax

   After every epoch it saves a checkpoint (model, Adam's state, where
   training stands); --resume continues from one to the same weights that
   training straight through would give. */
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "training.h" /* class names, checkpoints, --resume */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct options {
    const char *train_csv, *test_csv;
    const char *train_images, *train_labels, *test_images, *test_labels;
    const char *model_path, *eval_path, *mapping, *names, *resume, *checkpoint;
    int epochs, batch, classes, transpose_idx;
    float learning_rate;
    unsigned long seed;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: lenet5 [options]\n"
            "  --train FILE            training images, Kaggle EMNIST CSV\n"
            "  --test FILE             test images, Kaggle EMNIST CSV\n"
            "  --train-idx IMAGES LABELS   training images as IDX files instead\n"
            "  --test-idx IMAGES LABELS    test images as IDX files instead\n"
            "  --idx-transposed        IDX images are stored transposed (NIST's EMNIST release)\n"
            "  --classes N             number of classes (default: from the training labels)\n"
            "  --epochs N              default 10\n"
            "  --batch N               default 256\n"
            "  --lr X                  Adam learning rate, default 0.001\n"
            "  --seed N                default 1\n"
            "  --model PATH            where to save the trained model (default lenet5.cnn)\n"
            "  --mapping FILE          EMNIST mapping whose characters name the classes in the model\n"
            "                          (default: emnist-balanced-mapping.txt beside the training file,\n"
            "                          else data/'s, if it maps as many classes as the data has)\n"
            "  --names A,B,...         the class names instead, comma-separated\n"
            "  --checkpoint PATH       saved after every epoch (default: the model's path with\n"
            "                          -checkpoint before .cnn)\n"
            "  --resume CHECKPOINT     continue training from a checkpoint, up to --epochs in all\n"
            "                          (the same data and --batch as the run it continues)\n"
            "  --eval MODEL            load MODEL and evaluate it on the test set; no training\n"
            "  --help                  this text\n");
}

static int parse_options(int argc, char **argv, options *o)
{
    int i;
    memset(o, 0, sizeof *o);
    o->epochs = 10;
    o->batch = 256;
    o->learning_rate = 1e-3f;
    o->seed = 1;
    o->model_path = "lenet5.cnn";
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = argc - i - 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        else if (!strcmp(a, "--train") && more >= 1) o->train_csv = argv[++i];
        else if (!strcmp(a, "--test") && more >= 1) o->test_csv = argv[++i];
        else if (!strcmp(a, "--train-idx") && more >= 2) { o->train_images = argv[++i]; o->train_labels = argv[++i]; }
        else if (!strcmp(a, "--test-idx") && more >= 2) { o->test_images = argv[++i]; o->test_labels = argv[++i]; }
        else if (!strcmp(a, "--idx-transposed")) o->transpose_idx = 1;
        else if (!strcmp(a, "--classes") && more >= 1) o->classes = atoi(argv[++i]);
        else if (!strcmp(a, "--epochs") && more >= 1) o->epochs = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && more >= 1) o->batch = atoi(argv[++i]);
        else if (!strcmp(a, "--lr") && more >= 1) o->learning_rate = (float)atof(argv[++i]);
        else if (!strcmp(a, "--seed") && more >= 1) o->seed = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--model") && more >= 1) o->model_path = argv[++i];
        else if (!strcmp(a, "--eval") && more >= 1) o->eval_path = argv[++i];
        else if (!strcmp(a, "--mapping") && more >= 1) o->mapping = argv[++i];
        else if (!strcmp(a, "--names") && more >= 1) o->names = argv[++i];
        else if (!strcmp(a, "--resume") && more >= 1) o->resume = argv[++i];
        else if (!strcmp(a, "--checkpoint") && more >= 1) o->checkpoint = argv[++i];
        else {
            fprintf(stderr, "lenet5: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 0;
        }
    }
    if (o->epochs < 1 || o->batch < 1 || o->classes < 0 || !(o->learning_rate > 0.0f)) {
        fprintf(stderr, "lenet5: --epochs, --batch and --lr must be positive\n");
        return 0;
    }
    if (!o->test_csv && !o->test_images) {
        fprintf(stderr, "lenet5: give a test set (--test or --test-idx)\n");
        return 0;
    }
    if (!o->eval_path && !o->train_csv && !o->train_images) {
        fprintf(stderr, "lenet5: give a training set (--train or --train-idx), or --eval MODEL\n");
        return 0;
    }
    return 1;
}

/* Loads CSV or IDX as the options say; prints the reason on failure. */
static int load(cnn_dataset *data, const char *csv, const char *images, const char *labels, const options *o)
{
    cnn_data_desc desc;
    cnn_result result;
    memset(&desc, 0, sizeof desc);
    desc.num_classes = o->classes;
    if (csv) {
        result = cnn_dataset_load_csv(data, csv, &desc);
    } else {
        desc.orientation = o->transpose_idx ? CNN_ORIENTATION_TRANSPOSE : CNN_ORIENTATION_AS_STORED;
        result = cnn_dataset_load_idx(data, images, labels, &desc);
    }
    if (result != CNN_OK) {
        fprintf(stderr, "lenet5: %s\n", data->error.message);
        return 0;
    }
    printf("loaded %d images of %dx%d from %s\n", data->count, data->images.h, data->images.w, csv ? csv : images);
    return 1;
}

static cnn_result build_lenet5(cnn_model *model, int height, int width, int classes, int max_batch, unsigned long seed)
{
    cnn_model_init(model, 1, height, width, seed);
    cnn_add_lenet5(model, classes);
    return cnn_model_build(model, max_batch); /* errors are sticky: this reports the first */
}

/* Names the classes: --names, else the mapping found as training.h says,
   used only when it maps the model's class count unless it was given. */
static int name_classes(cnn_model *model, const options *o)
{
    static char found[4096];
    static char list[CNN_MAX_CLASSES * 256];
    static cnn_label_map map; /* large: not on the stack */
    const char *names[CNN_MAX_CLASSES], *mapping;
    int count = 0;
    if (o->names) { /* split a copy at the commas */
        char *at = strncpy(list, o->names, sizeof list - 1);
        while (count < CNN_MAX_CLASSES) {
            char *comma = strchr(at, ',');
            names[count++] = at;
            if (!comma) break;
            *comma = '\0';
            at = comma + 1;
        }
        if (cnn_model_set_class_names(model, names, count) != CNN_OK) {
            fprintf(stderr, "lenet5: --names: %s\n", model->error.message);
            return 0;
        }
        return 1;
    }
    mapping = training_find_mapping(o->mapping, o->train_csv ? o->train_csv : o->train_images, found, sizeof found);
    if (!mapping) return 1;
    if (cnn_label_map_load(&map, mapping) != CNN_OK) {
        fprintf(stderr, "lenet5: %s\n", map.error.message);
        return 0;
    }
    if (!o->mapping && map.count != (int)cnn_shape_count(cnn_model_output_shape(model))) return 1; /* found, not given: only if it fits */
    return training_name_classes(model, &map, mapping, "lenet5");
}

int main(int argc, char **argv)
{
    static cnn_model model, wanted; /* large: not on the stack */
    options o;
    cnn_dataset train, test;
    cnn_optimizer adam;
    cnn_optimizer_desc adam_desc;
    cnn_fit_desc fit;
    cnn_fit_state state;
    cnn_history history;
    cnn_progress_desc progress_desc;
    training_hooks hooks;
    char summary[4096], checkpoint[4096];
    float loss, accuracy;
    double seconds = 0.0;
    int status = 1, i;

    if (!parse_options(argc, argv, &o)) return 2;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    memset(&adam, 0, sizeof adam);
    memset(&state, 0, sizeof state);
    memset(&history, 0, sizeof history);
    if (!load(&test, o.test_csv, o.test_images, o.test_labels, &o)) return 1;

    if (o.eval_path) {
        if (cnn_model_load(&model, o.eval_path, o.batch) != CNN_OK) {
            fprintf(stderr, "lenet5: %s\n", model.error.message);
            goto done;
        }
    } else {
        if (!load(&train, o.train_csv, o.train_images, o.train_labels, &o)) goto done;
        if (o.resume) { /* the checkpoint holds the model, Adam and where training stands */
            state.history = &history;
            if (cnn_checkpoint_load(&model, &adam, &state, o.resume, o.batch) != CNN_OK) {
                fprintf(stderr, "lenet5: %s\n", model.error.message);
                goto done;
            }
            cnn_model_init(&wanted, 1, train.images.h, train.images.w, o.seed); /* described, not built */
            cnn_add_lenet5(&wanted, o.classes ? o.classes : train.num_classes);
            if (!training_same_layers(&model, &wanted)) {
                fprintf(stderr, "lenet5: '%s' is a checkpoint of another model than LeNet-5 for this data\n", o.resume);
                goto done;
            }
            printf("resuming from %s after epoch %d\n", o.resume, state.epoch);
        } else {
            int classes = o.classes ? o.classes : train.num_classes;
            if (build_lenet5(&model, train.images.h, train.images.w, classes, o.batch, o.seed) != CNN_OK) {
                fprintf(stderr, "lenet5: %s\n", model.error.message);
                goto done;
            }
            if (!name_classes(&model, &o)) goto done;
            memset(&adam_desc, 0, sizeof adam_desc);
            adam_desc.learning_rate = o.learning_rate;
            if (cnn_optimizer_init(&adam, &model, &adam_desc) != CNN_OK) {
                fprintf(stderr, "lenet5: %s\n", model.error.message);
                goto done;
            }
        }
    }
    cnn_model_summary(&model, summary, sizeof summary);
    fputs(summary, stdout);

    if (!o.eval_path) {
        if (o.checkpoint) snprintf(checkpoint, sizeof checkpoint, "%s", o.checkpoint);
        else { /* build/lenet5.cnn -> build/lenet5-checkpoint.cnn */
            size_t n = strlen(o.model_path);
            if (n >= 4 && !strcmp(o.model_path + n - 4, ".cnn")) n -= 4;
            snprintf(checkpoint, sizeof checkpoint, "%.*s-checkpoint.cnn", (int)n, o.model_path);
        }
        memset(&hooks, 0, sizeof hooks);
        memset(&progress_desc, 0, sizeof progress_desc);
        progress_desc.history = &history;
        hooks.program = "lenet5";
        hooks.checkpoint_path = checkpoint;
        hooks.optimizer = &adam;
        hooks.state = &state;
        state.history = &history;
        memset(&fit, 0, sizeof fit);
        fit.epochs = o.epochs;
        fit.batch_size = o.batch;
        training_use_hooks(&fit, &hooks);
        printf("training: %d epochs, batch %d, Adam lr %g, seed %lu; checkpoints in %s\n", o.epochs, o.batch,
               (double)adam.desc.learning_rate, o.seed, checkpoint);
        fflush(stdout);
        cnn_progress_init(&hooks.progress, stdout, &progress_desc);
        if (cnn_model_fit(&model, &adam, &train, &fit) != CNN_OK) {
            fprintf(stderr, "lenet5: training stopped: %s\n", model.error.message);
            goto done;
        }
        if (hooks.failed) goto done; /* the checkpoint's error is printed */
        for (i = 0; i < history.count; i++) seconds += history.epochs[i].seconds;
        printf("trained %d epochs in %.1f s\n", history.count, seconds);
        if (cnn_model_save(&model, o.model_path) != CNN_OK) {
            fprintf(stderr, "lenet5: %s\n", model.error.message);
            goto done;
        }
        printf("saved %s\n", o.model_path);
    }
    if (cnn_model_evaluate(&model, &test, &loss, &accuracy) != CNN_OK) {
        fprintf(stderr, "lenet5: %s\n", model.error.message);
        goto done;
    }
    printf("test loss: %.4f\n", (double)loss);
    printf("test accuracy: %.2f%%\n", 100.0 * accuracy);
    status = 0;
done:
    cnn_optimizer_free(&adam);
    cnn_fit_state_free(&state);
    cnn_history_free(&history);
    cnn_model_free(&model);
    cnn_model_free(&wanted);
    cnn_dataset_free(&train);
    cnn_dataset_free(&test);
    return status;
}
