// Whole epochs through `nnc train` with the next batch assembled three ways:
// by the pool's workers between the step's kernels (NN_PREFETCH=pool), on
// the helper thread, and inline before each step. All three give the same
// checkpoint bit for bit, on one process with 2 threads (a partial last
// batch) and under `mpirun -np 3` with 2 threads per rank (each rank gathers
// its slice of every batch; the last batch of one row leaves two ranks
// without rows). The MPI part is skipped without MPI or mpirun.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"
#include "testutil.h"

#ifdef __SANITIZE_ADDRESS__
#define MPIRUN "timeout -s KILL 900 mpirun --allow-run-as-root --oversubscribe"
#else
#define MPIRUN "timeout -s KILL 120 mpirun --allow-run-as-root --oversubscribe"
#endif

static void setup(void)
{
    cr_assert_eq(chdir(NN_SOURCE_DIR), 0);
    tu_scratch_make("epoch");
    tu_mpi_sanitizer_env();
}

static void teardown(void)
{
    tu_scratch_remove();
}

TestSuite(epoch_cli, .init = setup, .fini = teardown, .timeout = 1800);

static const char *const MODES[] = {"pool", "thread", "inline"};

// Trains examples/flowers.nn once per mode (prefix: "" or an mpirun line
// that passes NN_PREFETCH on) and expects the three checkpoints equal.
static void expect_same_checkpoints(const char *prefix, const char *settings)
{
    char *ck[3];
    size_t len[3];
    for (int m = 0; m < 3; m++) {
        char path[512];
        snprintf(path, sizeof path, "%s", tu_in_dir(MODES[m]));
        free(tu_sh_rc(0, "NN_PREFETCH=%s %s %s train examples/flowers.nn --threads 2 --quiet "
                      "--set epochs=3 %s --set save=%s.safetensors", MODES[m], prefix,
                      tu_nnc(), settings, path));
        strcat(path, ".safetensors");
        ck[m] = tu_slurp(path, &len[m]);
    }
    for (int m = 1; m < 3; m++) {
        cr_expect_eq(len[m], len[0], "%s: checkpoint of %zu bytes, %s's %zu", MODES[m],
                     len[m], MODES[0], len[0]);
        cr_expect(len[m] == len[0] && memcmp(ck[m], ck[0], len[0]) == 0,
                  "batches assembled %s trained other weights than %s", MODES[m], MODES[0]);
    }
    for (int m = 0; m < 3; m++)
        free(ck[m]);
}

Test(epoch_cli, batch_assembly_does_not_change_training)
{
    // 180 training rows in batches of 17: the last has 10.
    expect_same_checkpoints("", "--set batch=17");
}

Test(epoch_cli, batch_assembly_does_not_change_mpi_training)
{
    if (!nnrt_dist_built())
        cr_skip_test("this nnc is built without MPI: skipped");
    if (system("command -v mpirun >/dev/null 2>&1") != 0)
        cr_skip_test("mpirun is not installed: skipped");
    // Batches of 179 and 1 row: two of the three ranks get none of the last.
    expect_same_checkpoints(MPIRUN " -np 3 -x NN_PREFETCH", "--set batch=179");
}
