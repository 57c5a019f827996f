// Settings and options from the command line, run through the nnc binary:
// every numeric --set value is range-checked before anything is loaded or
// allocated, options take the --name=value form and are refused where they
// mean nothing, a classifier's classes come from its output, metrics fit the
// task, `confusion` controls the matrix, and augment refuses image types it
// cannot write. Runs from the repository root; $NNC names the binary.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static void to_root(void) { cr_assert_eq(chdir(NN_SOURCE_DIR), 0); }

TestSuite(settings_cli, .init = to_root, .timeout = 120);

static void expect_fail(int rc, const char *args, const char *msg)
{
    char *out = tu_nnc_rc(rc, "%s", args);
    tu_expect_in(out, msg, args);
    free(out);
}

// Sizes and counts far beyond any machine: a diagnostic, never a crash.
Test(settings_cli, huge_numeric_settings)
{
    expect_fail(1, "train examples/xor.nn -q --set batch=4611686018427387904",
                "--set batch=4611686018427387904: expected an integer from 1 to 2147483647");
    expect_fail(1, "train examples/xor.nn -q --set epochs=2147483648",
                "--set epochs=2147483648: expected an integer from 0 to 2147483647");
    expect_fail(1, "train examples/xor.nn -q --set patience=1e300", "--set patience=1e300");
    expect_fail(1, "train examples/xor.nn -q --set limit=1e30", "--set limit=1e30");
    expect_fail(1, "train examples/xor.nn -q --set batch=2.5", "--set batch=2.5");
    expect_fail(1, "train examples/xor.nn -q --set epochs=nan", "--set epochs=nan");
}

Test(settings_cli, seed_values)
{
    expect_fail(1, "train examples/xor.nn -q --set seed=99999999999999999999",
                "--set seed=99999999999999999999: expected an integer from 0 to");
    // A negative seed is a bad seed, not an unknown setting.
    char *out = tu_nnc_rc(1, "%s", "train examples/xor.nn -q --set seed=-1");
    tu_expect_in(out, "--set seed=-1: expected an integer", "--set seed=-1");
    cr_assert(!strstr(out, "not a train setting"), "%s", out);
    free(out);
    free(tu_nnc_rc(0, "%s", "check examples/xor.nn --set seed=18446744073709551615"));
    expect_fail(2, "check examples/xor.nn --seed 18446744073709551616", "--seed expects");
}

// A batch larger than the data is one batch of all of it, with buffers of
// the data's size (the batch itself would not fit in memory).
Test(settings_cli, batch_larger_than_data)
{
    char *out = tu_nnc_rc(0, "%s", "train examples/xor.nn --backend interp --set batch=2147483647 "
                             "--set epochs=2");
    tu_expect_in(out, "epoch 2/2", "batch=2147483647");
    free(out);
}

// epochs beyond an int used to wrap and train one epoch, exit 0.
Test(settings_cli, epochs_overflow_does_not_train)
{
    char m[64];
    snprintf(m, sizeof m, "/tmp/nnc_settings_%d.jsonl", (int)getpid());
    unlink(m);
    char args[160];
    snprintf(args, sizeof args, "train examples/xor.nn -q --set epochs=4294967297 --metrics %s",
             m);
    free(tu_nnc_rc(1, "%s", args));
    cr_assert(access(m, F_OK) != 0, "metrics were written: training ran");
}

Test(settings_cli, save_path_checked_before_training)
{
    char m[64];
    snprintf(m, sizeof m, "/tmp/nnc_settings_%d.jsonl", (int)getpid());
    unlink(m);
    char args[200];
    expect_fail(1, "train examples/xor.nn -q --set save=", "--set save=: expected a file name");
    snprintf(args, sizeof args, "train examples/xor.nn -q --set save=/tmp --metrics %s", m);
    expect_fail(1, args, "'/tmp' is a directory, not a regular file");
    cr_assert(access(m, F_OK) != 0, "an epoch ran before the save path was refused");
}

Test(settings_cli, long_options_take_equals)
{
    char *out = tu_nnc_rc(0, "%s", "train examples/xor.nn --quiet --backend=interp --set=epochs=1 "
                             "--seed=3 --threads=1 --no-pass=fuse --dump=fuse");
    free(out);
    out = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage=ir");
    tu_expect_in(out, "input x", "--stage=ir");
    free(out);
    expect_fail(2, "check examples/xor.nn --quiet=yes", "option '--quiet' takes no value");
    expect_fail(2, "check examples/xor.nn --set=", "--set expects KEY=VALUE");
    expect_fail(2, "train examples/xor.nn --threads=0", "--threads expects a number");
}

Test(settings_cli, unknown_backend_is_usage)
{
    char *out = tu_nnc_rc(2, "%s", "train examples/xor.nn --backend foo");
    tu_expect_in(out, "backend 'foo'", "--backend foo");
    tu_expect_in(out, "nnc --help", "--backend foo");
    free(out);
    free(tu_nnc_rc(2, "%s", "train examples/xor.nn --backend=foo"));
}

Test(settings_cli, options_that_mean_nothing_are_refused)
{
    expect_fail(2, "check --weights x examples/xor.nn", "'--weights' means nothing to 'check'");
    expect_fail(2, "check examples/xor.nn --resume w", "'--resume' means nothing to 'check'");
    expect_fail(2, "eval examples/xor.nn --resume w", "'--resume' means nothing to 'eval'");
    expect_fail(2, "check examples/xor.nn --stage ir", "'--stage' means nothing to 'check'");
    expect_fail(2, "train examples/xor.nn -o x.png", "'-o' means nothing to 'train'");
    expect_fail(2, "check examples/xor.nn --metrics m.jsonl", "'--metrics' means nothing");
    expect_fail(2, "augment examples/xor.nn -o g.png --threads 2", "'--threads' means nothing");
}

// A usage error after --set frees the key (LeakSanitizer in sanitizer builds
// turns a leak into a different exit status).
Test(settings_cli, usage_error_after_set)
{
    expect_fail(2, "train examples/xor.nn --set epochs=1 --set lr=0.1 --frobnicate",
                "unknown option '--frobnicate'");
    expect_fail(2, "--set epochs=1 frob examples/xor.nn", "unknown command 'frob'");
}

Test(settings_cli, augment_refuses_unknown_extension)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/nnc_settings_%d.jpg", (int)getpid());
    unlink(path);
    char args[160];
    snprintf(args, sizeof args, "augment examples/xor.nn -o %s", path);
    expect_fail(2, args, "cannot write");
    cr_assert(access(path, F_OK) != 0, "%s was written", path);
}

static char *script(const char *text)
{
    char *p = tu_write_temp(".nn", text);
    cr_assert(p);
    return p;
}

// Labels that are all 0 on a 3-class model: 3 classes, not 1.
Test(settings_cli, classes_come_from_the_output)
{
    char *nn = script("import std\n"
                      "data d {\n"
                      "    x = [[0, 0], [0, 1], [1, 0], [1, 1]]\n"
                      "    label = i32([0, 0, 0, 0])\n"
                      "    split train -> train 0.5, test 0.5\n"
                      "}\n"
                      "model net(x: f32[N, 2]) -> f32[N, 3] {\n"
                      "    return x |> dense(3)\n"
                      "}\n"
                      "train net on d {\n"
                      "    loss = cross_entropy(output, label)\n"
                      "    optimizer = adam()\n"
                      "    epochs = 2\n"
                      "}\n");
    char args[300];
    snprintf(args, sizeof args, "train %s --backend interp", nn);
    char *out = tu_nnc_rc(0, "%s", args);
    tu_expect_in(out, "accuracy", args);
    // The matrix has a row and column per class the model scores.
    tu_expect_in(out, "confusion matrix", args);
    tu_expect_in(out, "     2", args);
    free(out);
    unlink(nn);
    free(nn);
}

// A label the model cannot score is a data error naming where it came from.
Test(settings_cli, label_outside_classes_names_the_file)
{
    char csv[64];
    snprintf(csv, sizeof csv, "/tmp/nnc_settings_%d.csv", (int)getpid());
    FILE *f = fopen(csv, "w");
    cr_assert(f);
    fputs("a,b,label\n0,0,0\n0,1,1\n1,0,4\n1,1,0\n", f);
    fclose(f);
    char *text;
    cr_assert(asprintf(&text,
                       "import std\n"
                       "data d {\n"
                       "    train = csv(\"%s\", label = \"label\")\n"
                       "}\n"
                       "model net(x: f32[N, 2]) -> f32[N, 3] {\n"
                       "    return x |> dense(3)\n"
                       "}\n"
                       "train net on d {\n"
                       "    loss = cross_entropy(output, label)\n"
                       "    optimizer = adam()\n"
                       "}\n",
                       csv) > 0);
    char *nn = script(text);
    free(text);
    char args[300];
    snprintf(args, sizeof args, "train %s -q", nn);
    char *out = tu_nnc_rc(1, "%s", args);
    tu_expect_in(out, ":3:13: error: ", args);
    char where[300];
    snprintf(where, sizeof where, "%s:4: label 4 is outside 0..2 (3 classes)", csv);
    tu_expect_in(out, where, args);
    free(out);
    unlink(csv);
    unlink(nn);
    free(nn);
}

// `metrics` without `confusion` leaves the matrix out; with it, it is printed.
Test(settings_cli, confusion_metric_controls_the_matrix)
{
    const char *base = "import std\n"
                       "data d {\n"
                       "    x = [[0, 0], [0, 1], [1, 0], [1, 1]]\n"
                       "    label = i32([0, 1, 1, 0])\n"
                       "    split train -> train 0.5, test 0.5\n"
                       "}\n"
                       "model net(x: f32[N, 2]) -> f32[N, 2] {\n"
                       "    return x |> dense(2)\n"
                       "}\n"
                       "train net on d {\n"
                       "    loss = cross_entropy(output, label)\n"
                       "    optimizer = adam()\n"
                       "    metrics = [accuracy%s]\n"
                       "}\n";
    for (int with = 0; with < 2; with++) {
        char *text;
        cr_assert(asprintf(&text, base, with ? ", confusion" : "") > 0);
        char *nn = script(text);
        free(text);
        char args[300];
        snprintf(args, sizeof args, "train %s --backend interp", nn);
        char *out = tu_nnc_rc(0, "%s", args);
        tu_expect_in(out, "test", args);
        cr_assert_eq(strstr(out, "confusion matrix") != NULL, with, "confusion %s:\n%s",
                     with ? "listed" : "not listed", out);
        free(out);
        unlink(nn);
        free(nn);
    }
}

Test(settings_cli, classification_metrics_on_regression)
{
    expect_fail(1, "check tests/golden/diag/regression_metrics.nn",
                "'f1' needs a classifier");
}

static char *waves(const char *count, const char *width)
{
    char *text;
    cr_assert(asprintf(&text,
                       "import std\n"
                       "data waves {\n"
                       "    x = uniform([%s, 1], -3, 3)\n"
                       "    y = sin(x) + normal([%s, 1], 0, 0.1)\n"
                       "    split train -> train 0.8, val 0.2\n"
                       "}\n"
                       "model net(x: f32[N, %s]) -> f32[N, 1] {\n"
                       "    return x |> dense(1)\n"
                       "}\n"
                       "train net on waves {\n"
                       "    loss = mse(output, y)\n"
                       "    optimizer = adam()\n"
                       "}\n",
                       count, count, width) > 0);
    char *p = script(text);
    free(text);
    return p;
}

// check derives the data's shapes from the declarations: a billion generated
// samples (4 GB each field) cost nothing, and the shape error the
// declarations determine is reported at once. `timeout` bounds the old
// behaviour (half a minute and 11 GB).
Test(settings_cli, check_never_materializes_data)
{
    char *nn = waves("1000000000", "2");
    char args[300];
    snprintf(args, sizeof args, "timeout 20 %s check %s", tu_nnc(), nn);
    char *out = NULL;
    int rc = tu_run(args, &out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    tu_expect_in(out, "must be f32[N, 2], got f32[N, 1]", args);
    free(out);
    unlink(nn);
    free(nn);
    // Without the mistake, check and ir succeed, just as fast.
    nn = waves("1000000000", "1");
    snprintf(args, sizeof args, "timeout 20 %s check %s", tu_nnc(), nn);
    rc = tu_run(args, &out);
    cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
    free(out);
    snprintf(args, sizeof args, "timeout 20 %s ir %s --stage grad", tu_nnc(), nn);
    rc = tu_run(args, &out);
    cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
    tu_expect_in(out, "input x : f32[N, 1]", args);
    free(out);
    unlink(nn);
    free(nn);
}

// Generated data that cannot fit is a diagnostic at its expression, before
// anything is allocated, in train as in check.
Test(settings_cli, generated_data_too_large)
{
    char *nn = waves("1000000000000", "1");
    for (int train = 0; train < 2; train++) {
        char args[300];
        snprintf(args, sizeof args, "%s %s -q", train ? "train" : "check", nn);
        char *out = tu_nnc_rc(1, "%s", args);
        tu_expect_in(out, ":3:9: error: this data would be f32[1000000000000, 1]: 4000000000000 "
                       "bytes", args);
        free(out);
    }
    unlink(nn);
    free(nn);
}

Test(settings_cli, augment_values_in_range)
{
    char *text;
    cr_assert(asprintf(&text,
                       "import std\n"
                       "data d {\n"
                       "    x = [[0, 0], [0, 1], [1, 0], [1, 1]]\n"
                       "    y = [[0], [1], [1], [0]]\n"
                       "}\n"
                       "model net(x: f32[N, 2]) -> f32[N, 1] {\n"
                       "    return x |> dense(1)\n"
                       "}\n"
                       "train net on d {\n"
                       "    loss = mse(output, y)\n"
                       "    optimizer = adam()\n"
                       "    augment = [random_shift(1e300)]\n"
                       "}\n") > 0);
    char *nn = script(text);
    free(text);
    char args[300];
    snprintf(args, sizeof args, "check %s", nn);
    char *out = tu_nnc_rc(1, "%s", args);
    tu_expect_in(out, ":12:16: error: unknown augmentation or value out of range", args);
    free(out);
    unlink(nn);
    free(nn);
}
