// Run-time hyperparameters and schedules from the command line: progress and
// the metrics log show the learning rate a step used (a schedule's value at
// that step), --set lr replaces it, and checkpoints keep no hyperparameter,
// so a run resumed with another learning rate takes the new one.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static void to_root(void) { cr_assert_eq(chdir(NN_SOURCE_DIR), 0); }

TestSuite(hyper_cli, .init = to_root, .timeout = 120);

// XOR with 4 samples in batches of 2: two steps an epoch.
static const char *xor_with(const char *optimizer)
{
    static char text[1024];
    snprintf(text, sizeof text,
             "import std\n"
             "data xor {\n x = [[0, 0], [0, 1], [1, 0], [1, 1]]\n y = [[0], [1], [1], [0]]\n}\n"
             "model net(x: f32[N, 2]) -> f32[N, 1] = x |> dense(4) |> tanh |> dense(1)\n"
             "train net on xor {\n loss = mse(output, y)\n optimizer = %s\n batch = 2\n"
             " epochs = 4\n}\n",
             optimizer);
    return text;
}

// The "lr" of the train line of epoch e in a metrics log; NaN when absent.
static double lr_at(const char *log, int e)
{
    char key[64];
    snprintf(key, sizeof key, "{\"epoch\": %d, \"split\": \"train\"", e);
    const char *line = strstr(log, key);
    const char *lr = line ? strstr(line, "\"lr\": ") : NULL;
    const char *end = line ? strchr(line, '\n') : NULL;
    return lr && (!end || lr < end) ? strtod(lr + 6, NULL) : NAN;
}

Test(hyper_cli, progress_and_metrics_show_a_schedules_rate)
{
    char *path = tu_write_temp(".nn", xor_with("sgd(lr = step_decay(0.4, every = 2, factor = 0.5))"));
    char metrics[] = "/tmp/nnc_hyper_XXXXXX";
    int fd = mkstemp(metrics);
    cr_assert(fd >= 0);
    close(fd);
    unlink(metrics);
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train %s --metrics %s", path, metrics);
    cr_assert_eq(rc, 0, "%s", out);
    // The last step of epoch e is step 2e: 0.4 * 0.5^floor((2e - 1) / 2).
    cr_assert(strstr(out, "epoch 1/4") && strstr(out, "lr 0.4"), "%s", out);
    cr_assert(strstr(out, "lr 0.2") && strstr(out, "lr 0.1") && strstr(out, "lr 0.05"), "%s", out);
    char *log = tu_read_file(metrics);
    cr_assert(log);
    const double want[] = {0.4, 0.2, 0.1, 0.05};
    for (int e = 1; e <= 4; e++)
        cr_assert_float_eq(lr_at(log, e), want[e - 1], 1e-6, "epoch %d:\n%s", e, log);
    free(log);
    free(out);
    // --set lr replaces the schedule by a constant.
    rc = tu_nnc_run(&out, "train %s --set lr=0.03", path);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "epoch 4/4") && strstr(out, "lr 0.03") && !strstr(out, "lr 0.4"),
              "%s", out);
    free(out);
    unlink(metrics);
    unlink(path);
    free(path);
}

Test(hyper_cli, checkpoints_hold_no_hyperparameters)
{
    char *path = tu_write_temp(".nn", xor_with("adam(lr = 0.01)"));
    char ck[] = "/tmp/nnc_hyper_ck_XXXXXX";
    int fd = mkstemp(ck);
    cr_assert(fd >= 0);
    close(fd);
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train %s -q --set epochs=2 --set save=%s", path, ck);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    char *bytes = tu_read_file(ck);
    cr_assert(bytes);
    const char *header = bytes + 8; // after the little-endian header length
    cr_assert(strstr(header, "net.dense1.w/m") && !strstr(header, "hyper/"),
              "the checkpoint holds the optimizer state, not the learning rate");
    free(bytes);
    // eval reads it, and a resumed run trains on with the learning rate it is given.
    rc = tu_nnc_run(&out, "eval %s --weights %s", path, ck);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    rc = tu_nnc_run(&out, "train %s --resume %s --set lr=0.125 --set save=%s", path, ck, ck);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "resumed from") && strstr(out, "epoch 3/4") && strstr(out, "lr 0.125"),
              "%s", out);
    free(out);
    unlink(ck);
    unlink(path);
    free(path);
}

Test(hyper_cli, a_schedule_in_a_model_is_an_unknown_name)
{
    char *path = tu_write_temp(".nn",
                               "import std\n"
                               "data d {\n x = [[0], [1]]\n y = [[0], [1]]\n}\n"
                               "model m(x: f32[N, 1]) -> f32[N, 1] = dense(x, 1) * step\n"
                               "train m on d {\n loss = mse(output, y)\n optimizer = sgd()\n}\n");
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train %s -q", path);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, ":6:52: error: unknown name 'step'"), "%s", out);
    free(out);
    unlink(path);
    free(path);
}

// XOR through two dropout calls with rates r1 and r2 written in the script.
static const char *xor_dropout(const char *r1, const char *r2)
{
    static char text[1024];
    snprintf(text, sizeof text,
             "import std\n"
             "data xor {\n x = [[0, 0], [0, 1], [1, 0], [1, 1]]\n y = [[0], [1], [1], [0]]\n}\n"
             "model net(x: f32[N, 2]) -> f32[N, 1] = x |> dense(8) |> tanh |> dropout(%s) "
             "|> dense(8) |> tanh |> dropout(%s) |> dense(1)\n"
             "train net on xor {\n loss = mse(output, y)\n optimizer = adam(lr = 0.05)\n"
             " batch = 2\n epochs = 6\n}\n",
             r1, r2);
    return text;
}

// The final "train loss ..." report line of a run's output.
static char *final_report(const char *out)
{
    const char *l = strstr(out, "\ntrain loss");
    cr_assert(l, "%s", out);
    return strndup(l, strcspn(l + 1, "\n") + 1);
}

// --set dropout=R trains exactly as the script written with rate R;
// dropoutK sets one call; bad rates and missing calls are diagnostics.
Test(hyper_cli, dropout_rates_from_set)
{
    char *path = tu_write_temp(".nn", xor_dropout("0.5", "0.2"));
    char *same = tu_write_temp(".nn", xor_dropout("0.3", "0.3"));
    char *second = tu_write_temp(".nn", xor_dropout("0.5", "0.1"));
    char *none = tu_write_temp(".nn", xor_dropout("0", "0"));
    cr_assert(path && same && second && none);
    char *out = NULL, *want = NULL;
    int rc = tu_nnc_run(&want, "train %s", same);
    cr_assert_eq(rc, 0, "%s", want);
    rc = tu_nnc_run(&out, "train %s --set dropout=0.3", path);
    cr_assert_eq(rc, 0, "%s", out);
    char *a = final_report(out), *b = final_report(want);
    cr_assert_str_eq(a, b, "--set dropout=0.3 vs the script with 0.3");
    free(a), free(b), free(out), free(want);
    rc = tu_nnc_run(&want, "train %s", second);
    cr_assert_eq(rc, 0, "%s", want);
    rc = tu_nnc_run(&out, "train %s --set dropout2=0.1", path);
    cr_assert_eq(rc, 0, "%s", out);
    a = final_report(out), b = final_report(want);
    cr_assert_str_eq(a, b, "--set dropout2=0.1 vs the script with 0.5, 0.1");
    free(a), free(b), free(out), free(want);
    // Rate 0 is no dropout: the same as the script with both rates 0.
    rc = tu_nnc_run(&want, "train %s", none);
    cr_assert_eq(rc, 0, "%s", want);
    rc = tu_nnc_run(&out, "train %s --set dropout=0", path);
    cr_assert_eq(rc, 0, "%s", out);
    a = final_report(out), b = final_report(want);
    cr_assert_str_eq(a, b, "--set dropout=0 vs rates 0");
    free(a), free(b), free(out), free(want);
    rc = tu_nnc_run(&out, "train %s --set dropout=1", path);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, "error: --set dropout=1: a dropout rate is a number in [0, 1)"), "%s",
              out);
    free(out);
    rc = tu_nnc_run(&out, "train %s --set dropout3=0.1", path);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, "error: --set dropout3=0.1: model 'net' has no dropout call number 3"),
              "%s", out);
    free(out);
    const char *paths[] = {path, same, second, none};
    for (int i = 0; i < 4; i++) {
        unlink(paths[i]);
        free((char *)paths[i]);
    }
}
