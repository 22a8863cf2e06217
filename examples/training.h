/* training.h - what the training examples share (lenet5.c, and mlp.c and
   cnn.c through seed.h): the class names they store in their models, the
   checkpoint they save after every epoch, and --resume, which continues
   from one so that 10 epochs straight and 5 + 5 resumed give the same
   weights, bit for bit. Include after cnn.h. */
#ifndef TRAINING_H
#define TRAINING_H

#include <stdio.h>
#include <string.h>

/* The mapping file to name EMNIST's classes with: the one given, else
   emnist-balanced-mapping.txt beside the training file, else data/'s, else
   NULL (no names). The found path goes into buffer. */
static const char *training_find_mapping(const char *given, const char *train_path, char *buffer, size_t size)
{
    const char *slash = train_path ? strrchr(train_path, '/') : NULL;
    FILE *file;
    if (given) return given;
    snprintf(buffer, size, "%.*semnist-balanced-mapping.txt", slash ? (int)(slash - train_path + 1) : 0, train_path ? train_path : "");
    if ((file = fopen(buffer, "rb")) != NULL || (file = fopen(strcpy(buffer, "data/emnist-balanced-mapping.txt"), "rb")) != NULL) {
        fclose(file);
        return buffer;
    }
    return NULL;
}

/* Names the model's classes by the characters of map, loaded from the
   file at path. 0, with the reason printed, when it maps another number of
   classes than the model has. */
static int training_name_classes(cnn_model *model, const cnn_label_map *map, const char *path, const char *program)
{
    if (cnn_model_set_class_names_from_map(model, map) != CNN_OK) {
        fprintf(stderr, "%s: '%s': %s\n", program, path, model->error.message);
        return 0;
    }
    return 1;
}

/* 1 when a and b have the same input and layers (a checkpoint to resume
   must be of the program's own model). */
static int training_same_layers(const cnn_model *a, const cnn_model *b)
{
    int i;
    if (a->layer_count != b->layer_count || a->input.c != b->input.c || a->input.h != b->input.h || a->input.w != b->input.w)
        return 0;
    for (i = 0; i < a->layer_count; i++) {
        const cnn_layer_desc *x = &a->layers[i].desc, *y = &b->layers[i].desc;
        if (x->type != y->type || x->units != y->units || x->kernel != y->kernel || x->stride != y->stride ||
            x->padding != y->padding || x->alpha != y->alpha || x->rate != y->rate)
            return 0;
    }
    return 1;
}

/* The callbacks a training example gives cnn_model_fit: the progress
   reporter's, its own epoch callback (optional), then a checkpoint. They
   share cnn_fit_desc.user, so all they need travels in this struct. */
typedef struct training_hooks {
    const char *program;
    cnn_progress progress;         /* the bar and the epoch lines */
    cnn_epoch_callback on_epoch;   /* optional: the program's own, after the progress line */
    void *on_epoch_user;
    const char *checkpoint_path;   /* written after every epoch; NULL: none */
    cnn_optimizer *optimizer;
    cnn_fit_state *state;
    int failed;                    /* 1: a checkpoint could not be saved (training stopped; the program must fail) */
} training_hooks;

static int training_on_batch(cnn_model *model, const cnn_batch_stats *stats, void *user)
{
    return cnn_progress_batch(model, stats, &((training_hooks *)user)->progress);
}

static int training_on_epoch(cnn_model *model, const cnn_epoch_stats *stats, void *user)
{
    training_hooks *hooks = (training_hooks *)user;
    int stop = cnn_progress_epoch(model, stats, &hooks->progress);
    if (!stop && hooks->on_epoch) stop = hooks->on_epoch(model, stats, hooks->on_epoch_user);
    if (hooks->checkpoint_path && cnn_checkpoint_save(model, hooks->optimizer, hooks->state, hooks->checkpoint_path) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", hooks->program, model->error.message);
        hooks->failed = 1; /* cnn_model_fit takes a non-zero return for a stop asked for: say it failed */
        return 1;
    }
    return stop;
}

/* Points fit's callbacks at hooks (filled by the caller first). */
static void training_use_hooks(cnn_fit_desc *fit, training_hooks *hooks)
{
    fit->on_batch = training_on_batch;
    fit->on_epoch = training_on_epoch;
    fit->user = hooks;
    fit->state = hooks->state;
}

#endif
