// Compiles counted from `nnc -v` (each JIT compile prints one "jit: compiled
// step" line): a training run whose epochs end in a partial batch, evaluated
// on splits with their own partial batches, compiles the training step once
// and the evaluation once; `nnc predict` on 11 rows compiles once. With
// NN_JIT_FIXED_BATCH=1 (every batch size its own compile, as before) the same
// run compiles more, so the counts are the feature's doing. Skipped in builds
// without the LLVM backend.
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
