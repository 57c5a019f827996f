// `cmake --install` and a relocated installation: the build is installed to
// a temporary prefix, which is then moved elsewhere (so no path compiled
// into nnc can point at it). The moved nnc must take `import std` from its
// own share/nnc/stdlib (a layer added only there resolves; the installed
// copy that lacks it fails), train and predict from a temporary directory,
// and build a model library and a standalone program there from its own
// lib/ and include/nnc, which give the same predictions.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static const char *dir; // the scratch directory (tu_dir())

static void setup(void)
{
    cr_assert_eq(chdir(NN_SOURCE_DIR), 0);
    dir = tu_scratch_make("install");
}

static void teardown(void) { tu_scratch_remove(); }

TestSuite(install, .init = setup, .fini = teardown, .timeout = 600);

static const char xor_twice[] =
    "import std\n"
    "data xor {\n"
    "    x = [[0, 0], [0, 1], [1, 0], [1, 1]]\n"
    "    y = [[0], [1], [1], [0]]\n"
    "}\n"
    "model net(x: f32[N, 2]) -> f32[N, 1] {\n"
    "    h = x |> dense(8) |> twice_it |> tanh\n"
    "    return h |> dense(1) |> sigmoid\n"
    "}\n"
    "train net on xor {\n"
    "    loss      = mse(output, y)\n"
    "    optimizer = adam(lr = 0.05)\n"
    "    batch     = 4\n"
    "    epochs    = 300\n"
    "    seed      = 1\n"
    "}\n";

static const char use_lib_c[] =
    "#include <stdio.h>\n#include \"net.h\"\n"
    "int main(int argc, char **argv) {\n"
    "    float x[8] = {0, 0, 0, 1, 1, 0, 1, 1}, out[4];\n"
    "    net_model *m;\n"
    "    if (net_create(&m, 1) || net_load(m, argv[1]) || net_predict(m, x, 4, out)) {\n"
    "        fprintf(stderr, \"%s\\n\", net_errmsg(m));\n        return 1;\n    }\n"
    "    for (int i = 0; i < 4; i++) printf(\"%.4f\\n\", out[i]);\n"
    "    net_free(m);\n    return 0;\n}\n";

Test(install, relocated_prefix_finds_its_files)
{
    const char *build = getenv("NN_BUILD_DIR");
    cr_assert(build, "NN_BUILD_DIR unset (ctest sets it)");
    free(tu_sh_rc(0, "cmake --install '%s' --prefix %s/first", build, dir));
    // Everything the installation promises is there.
    free(tu_sh_rc(0, "test -x %s/first/bin/nnc && test -f %s/first/lib/libnnrt.a && "
                  "test -f %s/first/share/nnc/stdlib/dense.nn && "
                  "test -f %s/first/include/nnc/model_api.h && test -f %s/first/include/nnc/step.h",
               dir, dir, dir, dir, dir));
    free(tu_sh_rc(0, "cp -r %s/first %s/moved && echo 'fn twice_it(x) = 2 * x' > "
                  "%s/moved/share/nnc/stdlib/zz_twice.nn && mkdir %s/work", dir, dir, dir, dir));
    char path[512];
    snprintf(path, sizeof path, "%s/work/m.nn", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(xor_twice, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/work/use.c", dir);
    f = fopen(path, "w");
    cr_assert(f);
    fputs(use_lib_c, f);
    fclose(f);
    // The first prefix's stdlib lacks the layer: the moved copy uses its own.
    char *out = tu_sh_rc(1, "cd %s/work && ../first/bin/nnc check m.nn", dir);
    cr_assert(strstr(out, "unknown name 'twice_it'"), "%s", out);
    free(out);
    free(tu_sh_rc(0, "cd %s/work && ../moved/bin/nnc check m.nn", dir));
    free(tu_sh_rc(0, "rm -rf %s/first", dir));
    free(tu_sh_rc(0, "cd %s/work && ../moved/bin/nnc train m.nn -q --set save=w.st", dir));
    char *pred = tu_sh_rc(0, "cd %s/work && printf '0,0\\n0,1\\n1,0\\n1,1\\n' | "
                          "../moved/bin/nnc predict m.nn --weights w.st /dev/stdin", dir);
    cr_assert(!strncmp(pred, "y0\n", 3), "%s", pred);
    // A library built by the moved nnc, from its own runtime and headers.
    free(tu_sh_rc(0, "cd %s/work && ../moved/bin/nnc build m.nn --lib -o libnet -q && "
                  "cc -O1 %s -I. use.c libnet.a -lz -lm -lpthread -o use", dir, TU_SAN_FLAGS));
    char *lib = tu_sh_rc(0, "cd %s/work && ./use w.st", dir);
    double a[4], b[4];
    const char *p = pred + 3, *q = lib;
    for (int i = 0; i < 4; i++) {
        a[i] = strtod(p, (char **)&p);
        b[i] = strtod(q, (char **)&q);
        cr_assert(a[i] > b[i] - 1e-4 && a[i] < b[i] + 1e-4, "predict %g, library %g", a[i], b[i]);
    }
    cr_assert(a[0] < 0.2 && a[1] > 0.8 && a[2] > 0.8 && a[3] < 0.2, "%s", pred);
    free(lib);
    // A standalone program built by the moved nnc predicts the same.
    free(tu_sh_rc(0, "cd %s/work && ../moved/bin/nnc build m.nn -o prog -q", dir));
    char *prog = tu_sh_rc(0, "cd %s/work && printf '0,0\n0,1\n1,0\n1,1\n' > in.csv && "
                          "./prog predict --weights w.st in.csv -o -", dir);
    cr_assert_str_eq(prog, pred);
    free(prog);
    free(pred);
}
