/* test_kill_save.c - a save killed at any moment never damages the file.

   cnn_model_save writes PATH.tmp, flushes it to the disk and renames it over
   PATH. Here a child process saves a 4 MB model over PATH again and again,
   alternating two sets of weights, and is killed with SIGKILL (which cannot
   be caught or cleaned up after) at a random moment, 100 times. After each
   kill PATH must load, and hold exactly one of the two sets of weights.
   POSIX only (fork, kill); elsewhere the test says it is skipped. */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L /* fork, kill, waitpid, nanosleep under -std=c99 */
#endif
#define CNN_IMPLEMENTATION
#include "../cnn.h"
#include "test.h"

#if defined(__unix__) || defined(__APPLE__)
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KILLS 100

/* 1024 inputs -> dense 1000: 1,025,000 parameters, a file of 4.1 MB. */
static int big_model(cnn_model *model, uint64_t seed)
{
    return cnn_model_init(model, 1024, 1, 1, seed) == CNN_OK && cnn_add_dense(model, 1000) == CNN_OK &&
           cnn_add_softmax(model) == CNN_OK && cnn_model_build(model, 1) == CNN_OK;
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void sleep_seconds(double seconds)
{
    struct timespec t;
    t.tv_sec = (time_t)seconds;
    t.tv_nsec = (long)((seconds - (double)t.tv_sec) * 1e9);
    nanosleep(&t, NULL);
}

TEST(killed_saves_leave_old_or_new_model)
{
    cnn_model a, b, loaded;
    cnn_rng rng;
    char path[1024], temp_path[1100];
    double start, save_time;
    int save, kill_number, intact = 0, was_a = 0, was_b = 0, mid_write = 0;
    CHECK(big_model(&a, 1) && big_model(&b, 2), "build");
    CHECK(memcmp(a.params, b.params, a.param_count * sizeof(float)) != 0, "the two weight sets must differ");
    snprintf(path, sizeof path, "%s", test_path("kill-save.cnn"));
    snprintf(temp_path, sizeof temp_path, "%s.tmp", path);
    /* the slowest of three saves: on a busy machine saves vary, and a kill
       that always lands in the child's first two saves never sees set A */
    save_time = 0.0;
    for (save = 0; save < 3; save++) { /* a, b, a: PATH ends with set A */
        cnn_model *saved = save % 2 ? &b : &a;
        double took;
        start = now_seconds();
        CHECK(cnn_model_save(saved, path) == CNN_OK, "save: %s", saved->error.message);
        took = now_seconds() - start;
        if (took > save_time) save_time = took;
    }
    printf("    one save of %lu parameters takes up to %.1f ms\n", (unsigned long)a.param_count, 1e3 * save_time);
    cnn_rng_seed(&rng, 2024);
    for (kill_number = 0; kill_number < KILLS; kill_number++) {
        /* kill after a random time within the first four saves */
        double delay = cnn_rng_uniform(&rng) * 4.0 * save_time;
        pid_t child;
        int status = 0, ok;
        fflush(stdout);
        child = fork();
        if (child == 0) {
            int i;
            for (i = 0;; i++) cnn_model_save(i % 2 ? &a : &b, path);
        }
        CHECK(child > 0, "fork failed");
        if (child <= 0) break;
        sleep_seconds(delay);
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child was not killed (status %d)", status);
        mid_write += access(temp_path, F_OK) == 0;
        ok = cnn_model_load(&loaded, path, 1) == CNN_OK;
        CHECK(ok, "kill %d after %.2f ms: the file does not load: %s", kill_number + 1, 1e3 * delay, loaded.error.message);
        if (ok && loaded.param_count == a.param_count) {
            int is_a = memcmp(loaded.params, a.params, a.param_count * sizeof(float)) == 0;
            int is_b = memcmp(loaded.params, b.params, b.param_count * sizeof(float)) == 0;
            CHECK(is_a || is_b, "kill %d: the file holds neither weight set", kill_number + 1);
            was_a += is_a;
            was_b += is_b;
            intact += is_a || is_b;
        }
        cnn_model_free(&loaded);
    }
    printf("    %d/%d kills left the file intact (weight set A %d times, B %d); %d kills left a PATH.tmp behind "
           "(the child was inside a save)\n", intact, KILLS, was_a, was_b, mid_write);
    CHECK(intact == KILLS, "%d of %d", intact, KILLS);
    /* the kills must have landed inside saves, or the test proves nothing */
    CHECK(mid_write >= KILLS / 4, "only %d kills interrupted a save", mid_write);
    CHECK(was_a > 0 && was_b > 0, "the child never finished a save of one of the sets (%d, %d)", was_a, was_b);
    remove(path);
    remove(temp_path);
    cnn_model_free(&a);
    cnn_model_free(&b);
}
#else
TEST(killed_saves_leave_old_or_new_model)
{
    SKIP("needs POSIX fork and kill");
}
#endif

int main(void)
{
    RUN(killed_saves_leave_old_or_new_model);
    return test_report();
}
