// IR goldens: `nnc ir FILE --stage S` for every tests/golden/ir/*.nn must equal
// FILE.S (stages ir, grad, opt, fused). NN_UPDATE_GOLDEN=1 rewrites the
// expected files instead; review the diff before committing.
#include <criterion/criterion.h>
#include <dirent.h>
#include <string.h>

#include "testutil.h"

static const char *const stages[] = {"ir", "grad", "opt", "fused"};

static void check_file(const char *nn)
{
    bool update = getenv("NN_UPDATE_GOLDEN") && strcmp(getenv("NN_UPDATE_GOLDEN"), "1") == 0;
    for (size_t s = 0; s < sizeof stages / sizeof stages[0]; s++) {
        char *out = NULL, golden[512];
        int rc = tu_nnc_run(&out, "ir %s --stage %s --backend interp", nn, stages[s]);
        cr_assert_eq(rc, 0, "%s --stage %s failed:\n%s", nn, stages[s], out);
        snprintf(golden, sizeof golden, "%.*s.%s", (int)(strlen(nn) - 3), nn, stages[s]);
        if (update) {
            FILE *f = fopen(golden, "w");
            cr_assert(f, "cannot write %s", golden);
            fputs(out, f);
            fclose(f);
        } else {
            char *want = tu_read_file(golden);
            cr_assert(want, "missing golden %s (run with NN_UPDATE_GOLDEN=1)", golden);
            cr_assert_str_eq(out, want, "%s differs from `nnc ir %s --stage %s`", golden, nn,
                             stages[s]);
            free(want);
        }
        free(out);
    }
}

Test(irgolden, every_stage_of_every_file)
{
    DIR *d = opendir("tests/golden/ir");
    cr_assert(d, "run from the repository root");
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".nn") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "tests/golden/ir/%s", e->d_name);
        check_file(path);
        n++;
    }
    closedir(d);
    cr_assert_geq(n, 3, "expected the golden corpus");
}

// The step graph is ONE graph: every parameter and state has an update, and
// the backward pass and optimizer live next to the forward pass.
Test(irgolden, step_graph_updates_every_variable)
{
    char *out = NULL;
    cr_assert_eq(tu_nnc_run(&out, "ir tests/golden/ir/softmax_ce_adam.nn --stage grad"), 0, "%s",
                 out);
    const char *need[] = {"update m.dense1.w <-", "update m.dense1.w/m <-", "update m.dense1.w/v <-",
                          "update m.dense2.b <-", "update step <-", "output loss =", "matmul("};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        cr_assert(strstr(out, need[i]), "missing '%s' in:\n%s", need[i], out);
    free(out);
}
