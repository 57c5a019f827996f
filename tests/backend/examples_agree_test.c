// Every example trains on both backends and ends with the same model: the
// interpreter is the reference, the JIT must agree on the final metrics (the
// step graphs are identical, so only float rounding differs). Skipped in
// builds without the LLVM backend.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "testutil.h"

static bool have_jit(void)
{
#ifdef NN_WITH_LLVM
    return true;
#else
    return false;
#endif
}

// Trains `file` with `extra` settings on one backend; returns the final value
// of `key` on `split` from the metrics log.
static double final_metric(const char *file, const char *extra, const char *backend,
                           const char *split, const char *key)
{
    char log[256], *out = NULL;
    snprintf(log, sizeof log, "/tmp/nnc_agree_%d_%s.jsonl", (int)getpid(), backend);
    remove(log);
    int rc = tu_nnc_run(&out, "train %s %s --backend %s -q --metrics %s --set save=/tmp/nnc_agree_%d.st",
                        file, extra, backend, log, (int)getpid());
    cr_assert_eq(rc, 0, "%s on %s failed:\n%s", file, backend, out);
    free(out);
    char *text = tu_read_file(log);
    cr_assert(text, "no metrics log from %s on %s", file, backend);
    double v = tu_jsonl_last(text, split, key);
    free(text);
    remove(log);
    cr_assert(!isnan(v), "%s on %s logged no %s.%s", file, backend, split, key);
    return v;
}

static void agree(const char *file, const char *extra, const char *split, const char *key,
                  double abs_tol, double rel_tol)
{
    if (!have_jit())
        cr_skip_test("built without LLVM");
    double a = final_metric(file, extra, "interp", split, key);
    double b = final_metric(file, extra, "jit", split, key);
    cr_assert(fabs(a - b) <= abs_tol + rel_tol * fabs(a), "%s: %s.%s interp %.8g vs jit %.8g",
              file, split, key, a, b);
}

Test(examples_agree, xor) { agree("examples/xor.nn", "", "train", "loss", 1e-4, 1e-2); }

Test(examples_agree, sine) { agree("examples/sine.nn", "", "test", "loss", 1e-4, 1e-2); }

Test(examples_agree, fashion_subset, .timeout = 300)
{
    agree("examples/fashion_mlp.nn", "--set epochs=1 --set limit=3000", "test", "accuracy", 0.01,
          0);
}

Test(examples_agree, golden_steps)
{
    agree("tests/golden/ir/softmax_ce_adam.nn", "--set epochs=50", "train", "loss", 1e-4, 1e-2);
    agree("tests/golden/ir/bce_dropout.nn", "--set epochs=50", "train", "loss", 1e-4, 1e-2);
}

// A recurrent training step (loop, split, slices, stacked output, concat).
// Until the LLVM backend generates SLICE and CONCAT it refuses the step with
// "no code generation for ...", and only then is this skipped.
Test(examples_agree, recurrent_step)
{
    if (have_jit()) {
        char *out = NULL;
        int rc = tu_nnc_run(&out, "train tests/backend/recurrent.nn --backend jit -q "
                            "--set epochs=1 --set save=/tmp/nnc_agree_rec_%d.st", (int)getpid());
        bool missing = rc != 0 && out && strstr(out, "no code generation for");
        free(out);
        if (missing)
            cr_skip_test("the LLVM backend does not generate slice/concat yet");
    }
    agree("tests/backend/recurrent.nn", "", "train", "loss", 1e-4, 1e-2);
}

// The JIT runs a loop whose body works row by row as parts of the batch on
// the pool's threads (each part the whole loop over its rows, the weight
// gradients summed after): the same training as the interpreter's.
Test(examples_agree, recurrent_loops_split_by_rows)
{
    if (!have_jit())
        cr_skip_test("built without LLVM");
    char *out = NULL;
    setenv("NN_JIT_PROFILE", "1", 1);
    int rc = tu_nnc_run(&out, "train tests/backend/recurrent_rows.nn --backend jit --threads 2 "
                        "-q --set epochs=1 --set save=/tmp/nnc_agree_rows_%d.st", (int)getpid());
    unsetenv("NN_JIT_PROFILE");
    cr_assert_eq(rc, 0, "%s", out);
    int par = 0;
    for (const char *l = out; (l = strstr(l, "_loop ")); l++) {
        const char *eol = strchr(l, '\n');
        const char *p = strstr(l, " par ");
        par += p && (!eol || p < eol);
    }
    cr_expect_geq(par, 4, "expected the GRU's and the LSTM's loops, both ways, in parts:\n%s", out);
    free(out);
    agree("tests/backend/recurrent_rows.nn", "--threads 2", "train", "loss", 1e-6, 1e-4);
}
