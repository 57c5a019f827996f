// Compiles counted from `nnc -v` (each JIT compile prints one "jit: compiled
// step" line): a training run whose epochs end in a partial batch, evaluated
// on splits with their own partial batches, compiles the training step once
// and the evaluation once; `nnc predict` on 11 rows compiles once. With
// NN_JIT_FIXED_BATCH=1 (every batch size its own compile, as before) the same
// run compiles more, so the counts are the feature's doing. The same for
// recurrent models, whose results also agree with the interpreter's and the
// bound batch's. Skipped in builds without the LLVM backend.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static char dir[256];

// Batch 8 over 30 training rows (a last batch of 6; 27 after the 0.9 split:
// 3), a validation split of 3 rows and 11 test rows (a last batch of 3).
static const char script[] =
    "import std\n"
    "data d {\n"
    "    train = csv(\"train.csv\", label = \"label\")\n"
    "    test  = csv(\"test.csv\", label = \"label\")\n"
    "    x     = x / 10\n"
    "    split train -> train 0.9, val 0.1 (seed = 1)\n"
    "}\n"
    "model net(x: f32[N, 4]) -> f32[N, 3] {\n"
    "    return x |> dense(8) |> relu |> dense(3)\n"
    "}\n"
    "train net on d {\n"
    "    loss      = cross_entropy(output, label)\n"
    "    optimizer = adam(lr = 0.02)\n"
    "    batch     = 8\n"
    "    epochs    = 2\n"
    "    seed      = 2\n"
    "    save      = \"w.safetensors\"\n"
    "}\n";

static void write_csv(const char *name, int n, int start)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    tu_write_abcd_csv(path, n, start);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/nnc_rtbatch_%d_XXXXXX", (int)getpid());
    cr_assert(mkdtemp(dir));
    char path[512];
    snprintf(path, sizeof path, "%s/net.nn", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(script, f);
    fclose(f);
    write_csv("train.csv", 30, 0);
    write_csv("test.csv", 11, 100);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(rtbatch_cli, .init = setup, .fini = teardown, .timeout = 300);

static bool have_jit(void)
{
#ifdef NN_WITH_LLVM
    return true;
#else
    return false;
#endif
}

static int count(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

// Runs nnc in dir with env prefix `env`; asserts exit 0 and returns the output.
static char *run(const char *env, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s' %s", dir, env, tu_nnc(), args);
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    cr_assert_eq(rc, 0, "%s: exit %d:\n%s", args, rc, out);
    return out;
}

Test(rtbatch_cli, partial_batches_and_evaluation_compile_once)
{
    if (!have_jit())
        cr_skip_test("built without LLVM");
    char *out = run("", "train net.nn --backend jit -v");
    cr_expect_eq(count(out, "jit: compiled step"), 2, "one step, one evaluation:\n%s", out);
    cr_expect_eq(count(out, "for any batch size"), 2, "%s", out);
    free(out);
    out = run("NN_JIT_FIXED_BATCH=1", "train net.nn --backend jit -v --set save=w2.safetensors");
    cr_expect_geq(count(out, "jit: compiled step"), 4, "per size, as before:\n%s", out);
    free(out);
}

Test(rtbatch_cli, predict_compiles_once)
{
    if (!have_jit())
        cr_skip_test("built without LLVM");
    free(run("", "train net.nn --backend jit -q"));
    char *out = run("", "predict net.nn --weights w.safetensors test.csv -o out.csv -v");
    cr_expect_eq(count(out, "jit: compiled step"), 1, "%s", out);
    free(out);
    char path[512];
    snprintf(path, sizeof path, "%s/out.csv", dir);
    char *csv = tu_read_file(path);
    cr_assert(csv, "no predictions written");
    cr_expect_eq(count(csv, "\n"), 12, "a header and 11 rows:\n%s", csv);
    free(csv);
}

// Recurrent models (stdlib rnn, lstm, gru: LOOP nodes over time-major values)
// at batch 32 over 71 rows: 63 training rows (batches of 32 and 31, so the
// loops run as two parts of 16 rows on 2 threads, then as one), 7
// validation rows and 1 test row. One compile for the step and one for the
// evaluation; every printed loss and mse agrees with the interpreter's and
// with NN_JIT_FIXED_BATCH=1's (a compile per size) to 3e-4 (the losses are
// printed to 4 decimals).
static const char rnn_script[] =
    "import std\n"
    "data d {\n"
    "    x = normal([71, 5, 3], 0, 1)\n"
    "    y = normal([71, 2], 0, 1)\n"
    "    split train -> train 0.887, val 0.099, test 0.014 (seed = 1)\n"
    "}\n"
    "model net(x: f32[N, 5, 3]) -> f32[N, 2] {\n"
    "    return x |> %s(6) |> %s_last(5) |> dense(2)\n"
    "}\n"
    "train net on d {\n"
    "    loss      = mse(output, y)\n"
    "    optimizer = adam(lr = 0.01)\n"
    "    batch     = 32\n"
    "    epochs    = 2\n"
    "    seed      = 3\n"
    "}\n";

// The numbers after "loss " and "mse " in text, in order (at most max).
static int metrics(const char *text, double *v, int max)
{
    int n = 0;
    for (const char *p = text; *p && n < max; p++)
        if (!strncmp(p, "loss ", 5) || !strncmp(p, "mse ", 4)) {
            p = strchr(p, ' ') + 1;
            v[n++] = strtod(p, NULL);
        }
    return n;
}

static void same_metrics(const char *a, const char *b, const char *what)
{
    double va[64], vb[64];
    int na = metrics(a, va, 64), nb = metrics(b, vb, 64);
    cr_expect_eq(na, nb, "%s: %d and %d numbers", what, na, nb);
    cr_expect_geq(na, 2 * 2 + 3 * 2, "%s: epochs, validation and test: %d numbers", what, na);
    for (int k = 0; k < na && k < nb; k++)
        cr_expect(va[k] - vb[k] < 3e-4 && vb[k] - va[k] < 3e-4, "%s: number %d: %g vs %g", what,
                  k, va[k], vb[k]);
}

static void recurrent(const char *layer)
{
    if (!have_jit())
        cr_skip_test("built without LLVM");
    char path[512];
    snprintf(path, sizeof path, "%s/%s.nn", dir, layer);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, rnn_script, layer, layer);
    fclose(f);
    char args[256];
    snprintf(args, sizeof args, "train %s.nn --backend jit --threads 2 -v", layer);
    char *jit = run("", args);
    cr_expect_eq(count(jit, "jit: compiled step"), 2, "%s: one step, one evaluation:\n%s", layer,
                 jit);
    cr_expect_eq(count(jit, "for any batch size"), 2, "%s", jit);
    cr_expect(strstr(jit, "(7 samples)") && strstr(jit, "(1 samples)"), "%s", jit);
    char *fixed = run("NN_JIT_FIXED_BATCH=1", args);
    cr_expect_geq(count(fixed, "jit: compiled step"), 4, "per size:\n%s", fixed);
    snprintf(args, sizeof args, "train %s.nn --backend interp --threads 2", layer);
    char *interp = run("", args);
    same_metrics(jit, interp, "jit vs interp");
    same_metrics(jit, fixed, "jit vs NN_JIT_FIXED_BATCH=1");
    free(jit);
    free(fixed);
    free(interp);
}

Test(rtbatch_cli, rnn_any_batch_one_compile) { recurrent("rnn"); }
Test(rtbatch_cli, lstm_any_batch_one_compile) { recurrent("lstm"); }
Test(rtbatch_cli, gru_any_batch_one_compile) { recurrent("gru"); }
