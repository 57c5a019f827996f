// `nnc train` with the batch split across threads for the whole step
// (docs/threads.md): the driver hands the JIT the training batch, the JIT cuts
// the step, and the run trains what the kernel split trains, its losses equal
// as printed (summation order only; see tests/backend/threads_test.c),
// on 2 and 3 threads, a partial last batch included. NN_SPLIT_ROWS=16 lets
// this small batch split; NN_SPLIT=0 is the reference. Skipped in builds
// without the LLVM backend.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

// Batch 64 over 200 rows (180 after the split: two full batches and one of 52).
static const char script[] =
    "import std\n"
    "data d {\n"
    "    train = csv(\"train.csv\", label = \"label\")\n"
    "    x     = x / 10\n"
    "    split train -> train 0.9, val 0.1 (seed = 1)\n"
    "}\n"
    "model net(x: f32[N, 4]) -> f32[N, 3] {\n"
    "    return x |> dense(32) |> relu |> dense(3)\n"
    "}\n"
    "train net on d {\n"
    "    loss      = cross_entropy(output, label)\n"
    "    optimizer = adam(lr = 0.02)\n"
    "    batch     = 64\n"
    "    epochs    = 3\n"
    "    seed      = 2\n"
    "}\n";

static void setup(void)
{
    tu_scratch_make("split");
    tu_write_in_dir("net.nn", script);
    tu_write_abcd_csv(tu_in_dir("train.csv"), 200, 0);
}

TestSuite(split_cli, .init = setup, .fini = tu_scratch_remove, .timeout = 300);

static bool have_jit(void)
{
#ifdef NN_WITH_LLVM
    return true;
#else
    return false;
#endif
}

// `nnc train net.nn -v` in the scratch directory with env prefix `env`.
static char *train(const char *env, int threads)
{
    return tu_sh_rc(0, "cd '%s' && %s '%s' train net.nn --backend jit -v --threads %d", tu_dir(),
                    env, tu_nnc(), threads);
}

// The number after `key` on the line starting with `line`; NaN when absent.
static double value_after(const char *out, const char *line, const char *key)
{
    const char *l = strstr(out, line), *k = l ? strstr(l, key) : NULL;
    const char *nl = l ? strchr(l, '\n') : NULL;
    return k && (!nl || k < nl) ? strtod(k + strlen(key), NULL) : 0.0 / 0.0;
}

Test(split_cli, split_training_matches_the_kernel_split)
{
    if (!have_jit())
        cr_skip_test("built without LLVM");
    char *ref = train("NN_SPLIT=0", 2);
    tu_expect_in(ref, "each kernel splits over the threads (NN_SPLIT=0)", "train (NN_SPLIT=0)");
    // The last epoch's mean training loss, then the trained weights' loss.
    double want[2] = {value_after(ref, "epoch 3/3", " loss "), value_after(ref, "train loss", "loss ")};
    cr_assert(isfinite(want[0]) && isfinite(want[1]), "no losses:\n%s", ref);
    for (int threads = 2; threads <= 3; threads++) {
        char *out = train("NN_SPLIT_ROWS=16", threads);
        tu_expect_in(out, "the batch splits across threads for the whole step", "train");
        double got[2] = {value_after(out, "epoch 3/3", " loss "),
                         value_after(out, "train loss", "loss ")};
        for (int k = 0; k < 2; k++) // printed to 4 digits: equal, or 1 in the last
            cr_expect(fabs(got[k] - want[k]) <= 1.5e-4, "%d threads: loss %.4f, kernel split %.4f",
                      threads, got[k], want[k]);
        free(out);
    }
    free(ref);
}

// By default the split is off (it measured slower than the kernel split at
// every batch size); below a threshold set with NN_SPLIT_ROWS the step is not
// cut either. -v says why in both cases.
Test(split_cli, small_batches_keep_the_kernel_split)
{
    if (!have_jit())
        cr_skip_test("built without LLVM");
    char *out = train("", 2);
    tu_expect_in(out, "the batch split is off (NN_SPLIT_ROWS=R turns it on", "train");
    free(out);
    out = train("NN_SPLIT_ROWS=384", 2);
    tu_expect_in(out, "batch 64: splitting pays from 384 rows per thread", "train");
    free(out);
}
