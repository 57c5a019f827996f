// `nnc build --lib` end to end: examples/embed/classify.c, built against the
// Fashion-MNIST MLP's libmlp.a, prints the classes `nnc predict` prints for
// the same weights (300 images: two full batches and a partial one) and links
// nothing of nnc dynamically; small C programs check the API's contract on
// the XOR model (training steps learn it, save writes what `nnc predict`
// reads) and on the MLP (every bad argument, file or label is a status with a
// message, never an exit or abort; two contexts predict at once from two
// threads; a training step on any number of samples, and a partial batch
// stepped through the library equals `nnc train`'s partial last batch, for
// the MLP and for a GRU); and
// for every other model type among the examples (a CNN with
// batch normalization, a GRU, a sequence regression) the library's fresh
// weights, saved, give through `nnc predict` the outputs the library gives.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "testutil.h"

#define FASHION "/usr/share/datasets/fashion-mnist/"

static const char *dir; // the scratch directory (tu_dir())

static void setup(void)
{
    cr_assert_eq(chdir(NN_SOURCE_DIR), 0);
    dir = tu_scratch_make("embed");
}

static void teardown(void) { tu_scratch_remove(); }

TestSuite(embed, .init = setup, .fini = teardown, .timeout = 600);

static void build_mlp(void)
{
    free(tu_sh_rc(0, "%s train examples/fashion_mlp.nn -q --set epochs=1 --set limit=3000 "
                  "--set save=%s/mlp.st", tu_nnc(), dir));
    char *out = tu_sh_rc(0, "%s build examples/fashion_mlp.nn --lib -o %s/libmlp", tu_nnc(), dir);
    cr_assert(strstr(out, "libmlp.a and") && strstr(out, "mlp.h"), "%s", out);
    free(out);
    // predict runs the model alone (no loss on zero labels): its step is in the archive.
    out = tu_sh_rc(0, "nm %s/libmlp.a | grep -c ' D nnm_mlp_pred$'", dir);
    cr_assert_eq(atoi(out), 1, "no prediction step in the library: %s", out);
    free(out);
}

Test(embed, classify_example_matches_predict)
{
    if (access(FASHION "t10k-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("Fashion-MNIST not installed");
    build_mlp();
    free(tu_sh_rc(0, "cc -O1 -Wall -Wextra -Werror %s -I%s examples/embed/classify.c %s/libmlp.a "
                  "-lz -lm -lpthread -o %s/classify", TU_SAN_FLAGS, dir, dir, dir));
    char *ldd = tu_sh_rc(0, "ldd %s/classify", dir);
    cr_assert(!strstr(ldd, "LLVM") && !strstr(ldd, "nnrt") && !strstr(ldd, "nnc"), "%s", ldd);
    free(ldd);
    char *got = tu_sh_rc(0, "%s/classify %s/mlp.st " FASHION "t10k-images-idx3-ubyte.gz 300", dir,
                      dir);
    // The same 300 images through nnc predict, as raw f32 model inputs
    // (pixels / 255) on standard input; the class is the first column.
    char *want = tu_sh_rc(0, "python3 -c \"import gzip,struct,sys; d=gzip.open('"
                          FASHION "t10k-images-idx3-ubyte.gz').read()[16:16+300*784]; "
                          "sys.stdout.buffer.write(struct.pack('%%df' %% len(d), "
                          "*[v / 255 for v in d]))\" | "
                          "%s predict examples/fashion_mlp.nn --weights %s/mlp.st - | "
                          "tail -n +2 | cut -d, -f1", tu_nnc(), dir);
    cr_assert_str_eq(got, want);
    int lines = 0;
    for (const char *p = got; (p = strchr(p, '\n')); p++)
        lines++;
    cr_assert_eq(lines, 300);
    cr_assert(strstr(got, "Trouser\n"), "%s", got); // names, not indices
    free(got);
    free(want);
    // Bad weights: the example's message comes from the library, with status 1.
    char *bad = tu_sh_rc(1, "%s/classify %s/none.st " FASHION "t10k-images-idx3-ubyte.gz 3", dir,
                      dir);
    cr_assert(strstr(bad, "classify: ") && strstr(bad, "none.st"), "%s", bad);
    free(bad);
}

// The MLP's API on bad input, and two contexts on two threads.
static const char mlp_errors_c[] =
    "#include <pthread.h>\n#include <stdio.h>\n#include <string.h>\n#include \"mlp.h\"\n"
    "static float x[300 * MLP_INPUT_SIZE], a[300 * 10], b[300 * 10], c[300 * 10];\n"
    "static const char *w;\n"
    "static void *run(void *out) {\n"
    "    mlp_model *m;\n"
    "    if (mlp_create(&m, 2) || mlp_load(m, w) || mlp_predict(m, x, 300, out)) return m;\n"
    "    mlp_free(m);\n    return 0;\n}\n"
    "#define EXPECT(call, st, text) do { int rc_ = (call); const char *e_ = mlp_errmsg(m); \\\n"
    "    if (rc_ != (st) || !strstr(e_, text)) { printf(\"%s: %d '%s'\\n\", #call, rc_, e_); \\\n"
    "        return 1; } } while (0)\n"
    "int main(int argc, char **argv) {\n"
    "    w = argv[1];\n"
    "    mlp_model *m = 0;\n"
    "    for (int i = 0; i < 300 * MLP_INPUT_SIZE; i++) x[i] = (float)(i % 251) / 251;\n"
    "    EXPECT(mlp_create(&m, -1), MLP_ERR_SHAPE, \"threads\");\n"
    "    if (m) return 2;\n"
    "    EXPECT(mlp_create(&m, 1), MLP_OK, \"\");\n"
    "    EXPECT(mlp_load(m, argv[2]), MLP_ERR_IO, argv[2]);\n"
    "    EXPECT(mlp_load(m, argv[3]), MLP_ERR_SHAPE, \"tensor 'mlp.dense\");\n"
    "    EXPECT(mlp_load(m, 0), MLP_ERR_SHAPE, \"NULL\");\n"
    "    EXPECT(mlp_predict(m, x, 0, a), MLP_ERR_SHAPE, \"at least 1\");\n"
    "    EXPECT(mlp_predict(m, 0, 1, a), MLP_ERR_SHAPE, \"NULL\");\n"
    "    EXPECT(mlp_predict(0, x, 1, a), MLP_ERR_SHAPE, \"NULL\");\n"
    "    int32_t lab[MLP_BATCH] = {0};\n"
    "    float loss = 0;\n"
    "    EXPECT(mlp_train_step(m, x, lab, 0, &loss), MLP_ERR_SHAPE, \"at least 1\");\n"
    "    EXPECT(mlp_train_step(m, x, lab, -5, &loss), MLP_ERR_SHAPE, \"at least 1\");\n"
    "    EXPECT(mlp_train_step(m, x, lab, 3, &loss), MLP_OK, \"\");\n"
    "    lab[2] = -1;\n"
    "    EXPECT(mlp_train_step(m, x, lab, 3, &loss), MLP_ERR_RUNTIME, \"-1\");\n"
    "    lab[2] = 0;\n"
    "    lab[5] = 12;\n"
    "    EXPECT(mlp_train_step(m, x, lab, MLP_BATCH, &loss), MLP_ERR_RUNTIME, \"12\");\n"
    "    lab[5] = 9;\n"
    "    EXPECT(mlp_train_step(m, x, lab, MLP_BATCH, &loss), MLP_OK, \"\");\n"
    "    if (!(loss > 0 && loss < 100)) return 3;\n"
    "    EXPECT(mlp_save(m, argv[4]), MLP_ERR_IO, argv[4]);\n"
    "    if (strcmp(mlp_class_name(0), \"T-shirt/top\") || mlp_class_name(10) ||\n"
    "        mlp_class_name(-1)) return 4;\n"
    "    mlp_free(m);\n"
    "    pthread_t t1, t2;\n"
    "    if (run(a)) return 5;\n"
    "    pthread_create(&t1, 0, run, b);\n"
    "    pthread_create(&t2, 0, run, c);\n"
    "    void *r1, *r2;\n"
    "    pthread_join(t1, &r1);\n    pthread_join(t2, &r2);\n"
    "    if (r1 || r2 || memcmp(a, b, sizeof a) || memcmp(a, c, sizeof a)) return 6;\n"
    "    puts(\"ok\");\n    return 0;\n}\n";

Test(embed, mlp_api_errors_and_threads)
{
    if (access(FASHION "t10k-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("Fashion-MNIST not installed");
    build_mlp();
    free(tu_sh_rc(0, "%s train examples/xor.nn -q --set epochs=1 --set save=%s/xor.st", tu_nnc(),
               dir));
    tu_write_in_dir("errors.c", mlp_errors_c);
    free(tu_sh_rc(0, "cc -O1 -Wall %s -I%s %s/errors.c %s/libmlp.a -lz -lm -lpthread -o %s/errors",
               TU_SAN_FLAGS, dir, dir, dir, dir));
    char *out = tu_sh_rc(0, "%s/errors %s/mlp.st %s/absent.st %s/xor.st %s", dir, dir, dir, dir,
                      dir);
    cr_assert(strstr(out, "ok"), "%s", out);
    free(out);
}

// XOR through the library: training steps learn it; save writes a checkpoint
// `nnc predict` reads and agrees with.
static const char xor_c[] =
    "#include <stdio.h>\n#include \"xor.h\"\n"
    "int main(int argc, char **argv) {\n"
    "    float x[8] = {0, 0, 0, 1, 1, 0, 1, 1}, y[4] = {0, 1, 1, 0}, out[4], first = 0, loss;\n"
    "    xor_model *m;\n"
    "    if (xor_create(&m, 1)) return 1;\n"
    "    for (int i = 0; i < 400; i++) {\n"
    "        if (xor_train_step(m, x, y, XOR_BATCH, &loss)) return 2;\n"
    "        if (i == 0) first = loss;\n    }\n"
    "    if (xor_predict(m, x, 4, out) || xor_save(m, argv[1])) return 3;\n"
    "    printf(\"%g %g\\n\", first, loss);\n"
    "    for (int i = 0; i < 4; i++) printf(\"%.6f\\n\", out[i]);\n"
    "    xor_free(m);\n    return 0;\n}\n";

// The outputs of --lib are checked before anything is built: a directory or
// FIFO at libNAME.a or NAME.h is refused, and so is a NAME.h that this
// command did not write (the user's own header, kept as it was); a library
// built before is replaced.
Test(embed, lib_outputs_checked)
{
    free(tu_sh_rc(0, "mkdir %s/libd.a && mkfifo %s/f.h && printf 'int mine;\\n' > %s/user.h",
               dir, dir, dir));
    char *out = tu_sh_rc(1, "%s build examples/xor.nn --lib -o %s/libd", tu_nnc(), dir);
    cr_assert(strstr(out, "libd.a") && strstr(out, "a directory"), "%s", out);
    free(out);
    out = tu_sh_rc(1, "%s build examples/xor.nn --lib -o %s/libf", tu_nnc(), dir);
    cr_assert(strstr(out, "f.h") && strstr(out, "FIFO"), "%s", out);
    free(out);
    out = tu_sh_rc(1, "%s build examples/xor.nn --lib -o %s/libuser", tu_nnc(), dir);
    cr_assert(strstr(out, "user.h exists") && strstr(out, "not replacing"), "%s", out);
    free(out);
    char path[512];
    snprintf(path, sizeof path, "%s/user.h", dir);
    char *kept = tu_read_file(path);
    cr_assert(kept && !strcmp(kept, "int mine;\n"), "user.h changed: %s", kept);
    free(kept);
    snprintf(path, sizeof path, "%s/libuser.a", dir);
    cr_assert_neq(access(path, F_OK), 0, "nothing written when refused");
    // A file at libNAME.a that is not an archive is not replaced either.
    free(tu_sh_rc(0, "printf 'notes\\n' > %s/libnotes.a", dir));
    out = tu_sh_rc(1, "%s build examples/xor.nn --lib -o %s/libnotes", tu_nnc(), dir);
    cr_assert(strstr(out, "libnotes.a exists"), "%s", out);
    free(out);
    // Its own earlier output is replaced.
    free(tu_sh_rc(0, "%s build examples/xor.nn --lib -o %s/libxor -q", tu_nnc(), dir));
    free(tu_sh_rc(0, "%s build examples/xor.nn --lib -o %s/libxor -q", tu_nnc(), dir));
    snprintf(path, sizeof path, "%s/xor.h", dir);
    kept = tu_read_file(path);
    cr_assert(kept && strstr(kept, "xor_predict"), "%s", kept);
    free(kept);
}

Test(embed, xor_trains_through_the_library)
{
    char *out = tu_sh_rc(0, "%s build examples/xor.nn --lib -o %s/xor.a -q", tu_nnc(), dir);
    free(out);
    tu_write_in_dir("xor.c", xor_c);
    free(tu_sh_rc(0, "cc -O1 -Wall %s -I%s %s/xor.c %s/libxor.a -lz -lm -lpthread -o %s/xor",
               TU_SAN_FLAGS, dir, dir, dir, dir));
    char *got = tu_sh_rc(0, "%s/xor %s/w.st", dir, dir);
    free(tu_sh_rc(0, "mkdir %s/v2", dir));
    double first, last;
    cr_assert_eq(sscanf(got, "%lf %lf", &first, &last), 2, "%s", got);
    cr_assert(last < 0.02 && last < first / 5, "loss %g -> %g", first, last);
    double v[4];
    const char *p = strchr(got, '\n') + 1;
    for (int i = 0; i < 4; i++) {
        v[i] = strtod(p, (char **)&p);
        p++;
    }
    cr_assert(v[0] < 0.2 && v[1] > 0.8 && v[2] > 0.8 && v[3] < 0.2, "%s", got);
    tu_write_in_dir("in.csv", "0,0\n0,1\n1,0\n1,1\n");
    char *pred = tu_sh_rc(0, "%s predict examples/xor.nn --weights %s/w.st %s/in.csv", tu_nnc(),
                       dir, dir);
    double q[4];
    p = strchr(pred, '\n') + 1;
    for (int i = 0; i < 4; i++) {
        q[i] = strtod(p, (char **)&p);
        p++;
        cr_assert(q[i] > v[i] - 1e-5 && q[i] < v[i] + 1e-5, "library %g, nnc predict %g", v[i],
                  q[i]);
    }
    free(pred);
    free(got);
    // A portable target links and runs the same; another machine's is refused.
    free(tu_sh_rc(0, "%s build examples/xor.nn --lib --target x86-64-v2 -o %s/v2/libxor -q && "
                  "cc -O1 %s -I%s/v2 %s/xor.c %s/v2/libxor.a -lz -lm -lpthread -o %s/xorv2",
               tu_nnc(), dir, TU_SAN_FLAGS, dir, dir, dir, dir));
    char *v2 = tu_sh_rc(0, "%s/xorv2 %s/w2.st", dir, dir);
    double w[6];
    cr_assert_eq(sscanf(v2, "%lf %lf %lf %lf %lf %lf", &w[0], &w[1], &w[2], &w[3], &w[4], &w[5]),
                 6, "%s", v2);
    for (int i = 0; i < 4; i++)
        cr_assert(w[i + 2] > v[i] - 1e-3 && w[i + 2] < v[i] + 1e-3, "x86-64-v2 %g, native %g",
                  w[i + 2], v[i]);
    free(v2);
    char *arm = tu_sh_rc(1, "%s build examples/xor.nn --lib --target aarch64-linux-gnu -o %s/liba",
                      tu_nnc(), dir);
    cr_assert(strstr(arm, "--lib builds for this machine"), "%s", arm);
    free(arm);
    char *emb = tu_sh_rc(1, "%s build examples/xor.nn --lib --weights %s/w.st -o %s/libe", tu_nnc(),
                      dir, dir);
    cr_assert(strstr(emb, "a library loads its weights at run time"), "%s", emb);
    free(emb);
    // A library name that is no C identifier is refused.
    char *bad = tu_sh_rc(1, "%s build examples/xor.nn --lib -o %s/lib9x", tu_nnc(), dir);
    cr_assert(strstr(bad, "must be a C identifier"), "%s", bad);
    free(bad);
}

// Any model through its library: fresh weights saved, then the outputs for
// the raw f32 samples in argv[2] (argv[3] of them) printed as %.7g; then a
// training step on 3 of them (zero labels), its status and message written
// to argv[4].
static const char any_c[] =
    "#include <stdio.h>\n#include <stdlib.h>\n#include HDR\n"
    "#define CAT2(a, b) a##b\n#define CAT(a, b) CAT2(a, b)\n#define F(x) CAT(NAME, x)\n"
    "int main(int argc, char **argv) {\n"
    "    int n = atoi(argv[3]);\n"
    "    float *x = malloc(sizeof(float) * n * IN), *out = malloc(sizeof(float) * n * OUT);\n"
    "    FILE *f = fopen(argv[2], \"rb\");\n"
    "    if (!f || fread(x, sizeof(float) * IN, n, f) != (size_t)n) return 2;\n"
    "    F(_model) *m;\n"
    "    if (F(_create)(&m, 0) || F(_save)(m, argv[1]) || F(_predict)(m, x, n, out)) {\n"
    "        fprintf(stderr, \"%s\\n\", F(_errmsg)(m));\n        return 1;\n    }\n"
    "    for (int i = 0; i < n; i++)\n"
    "        for (int k = 0; k < OUT; k++)\n"
    "            printf(\"%.7g%c\", out[i * OUT + k], k + 1 < OUT ? ',' : '\\n');\n"
    "    static float lab[1 << 16];\n"
    "    float loss;\n"
    "    int st = F(_train_step)(m, x, (const void *)lab, 3, &loss);\n"
    "    FILE *s = fopen(argv[4], \"w\");\n"
    "    if (!s || fprintf(s, \"%d %s\\n\", st, F(_errmsg)(m)) < 0 || fclose(s)) return 3;\n"
    "    F(_free)(m);\n    free(x);\n    free(out);\n    fclose(f);\n    return 0;\n}\n";

// The scores of a predict CSV (header dropped, a classifier's class column too).
static char *scores_of(char *csv, bool classify)
{
    char *body = strchr(csv, '\n') + 1;
    if (!classify)
        return body;
    char *w = body;
    for (char *line = body; *line;) {
        char *comma = strchr(line, ','), *nl = strchr(line, '\n');
        size_t len = (size_t)(nl - comma - 1);
        memmove(w, comma + 1, len);
        w += len;
        *w++ = '\n';
        line = nl + 1;
    }
    *w = 0;
    return body;
}

// step: what a training step on 3 samples reports ("0 " where the step takes
// any batch, else the message naming the batch it takes).
static void model_matches_predict(const char *example, const char *name, int in, bool classify,
                                  const char *step)
{
    const int n = 70; // a full batch and a partial one where the batch is 64
    free(tu_sh_rc(0, "%s build examples/%s.nn --lib -o %s/lib%s -q", tu_nnc(), example, dir, name));
    tu_write_in_dir("any.c", any_c);
    char up[32];
    for (int i = 0; (up[i] = (char)toupper((unsigned char)name[i])); i++)
        ;
    free(tu_sh_rc(0, "cc -O1 %s -I%s -DHDR='\"%s.h\"' -DNAME=%s -DIN=%s_INPUT_SIZE "
                  "-DOUT=%s_OUTPUT_SIZE %s/any.c %s/lib%s.a -lz -lm -lpthread -o %s/any_%s",
               TU_SAN_FLAGS, dir, name, name, up, up, dir, dir, name, dir, name));
    char path[512];
    snprintf(path, sizeof path, "%s/in_%s.f32", dir, name);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < n * in; i++) {
        float v = (float)((i * 7919) % 1000) / 1000.0f;
        fwrite(&v, sizeof v, 1, f);
    }
    fclose(f);
    char *lib = tu_sh_rc(0, "%s/any_%s %s/w_%s.st %s %d %s/step_%s.txt", dir, name, dir, name,
                         path, n, dir, name);
    char spath[512];
    snprintf(spath, sizeof spath, "%s/step_%s.txt", dir, name);
    char *said = tu_read_file(spath);
    cr_assert(said && strstr(said, step), "%s: a training step on 3 samples said '%s', "
              "expected '%s'", name, said, step);
    free(said);
    char *pred = tu_sh_rc(0, "%s predict examples/%s.nn --weights %s/w_%s.st - < %s", tu_nnc(),
                       example, dir, name, path);
    char *a = lib, *b = scores_of(pred, classify);
    int count = 0;
    while (*a && *b) {
        double x = strtod(a, &a), y = strtod(b, &b);
        cr_assert(x > y - 1e-4 * (1 + (y < 0 ? -y : y)) && x < y + 1e-4 * (1 + (y < 0 ? -y : y)),
                  "%s: value %d: library %g, nnc predict %g", name, count, x, y);
        a += *a == ',' || *a == '\n';
        b += *b == ',' || *b == '\n';
        count++;
    }
    cr_assert(!*a && !*b && count >= n, "%s: %d values", name, count);
    free(lib);
    free(pred);
}

Test(embed, every_model_type_matches_predict)
{
    if (access(FASHION "t10k-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("Fashion-MNIST not installed");
    // A CNN's step and a recurrent model's (loops over time-major values)
    // take any batch.
    model_matches_predict("fashion_cnn_bn", "cnnbn", 784, true, "0 ");
    model_matches_predict("fashion_gru", "gru", 784, true, "0 ");
    model_matches_predict("forecast", "forecast", 24, false, "0 ");
}

// `nnc train` on 11 rows at batch 8 takes a full batch and a partial one of
// 3 rows; the library, given the same rows in the same order (the training
// loop's shuffle of seed 2, epoch 0), steps on 8 then on 3 samples of the
// one compiled step and ends with the same weights and optimizer state,
// bit for bit.
static const char partial_nn[] =
    "import std\n"
    "data d {\n"
    "    train = csv(\"rows.csv\", label = \"label\")\n"
    "}\n"
    "model net(x: f32[N, 4]) -> f32[N, 3] {\n"
    "    return x |> dense(8) |> relu |> dense(3)\n"
    "}\n"
    "train net on d {\n"
    "    loss      = cross_entropy(output, label)\n"
    "    optimizer = adam(lr = 0.02)\n"
    "    batch     = 8\n"
    "    epochs    = 1\n"
    "    seed      = 2\n"
    "    save      = \"jit.st\"\n"
    "}\n";

// The same with a recurrent model (a GRU's loops over time-major values):
// each row's 4 values are 2 steps of 2 features.
static const char partial_rnn_nn[] =
    "import std\n"
    "data d {\n"
    "    train = csv(\"rows.csv\", label = \"label\")\n"
    "    x     = reshape(x, [11, 2, 2])\n"
    "}\n"
    "model net(x: f32[N, 2, 2]) -> f32[N, 3] {\n"
    "    return x |> gru_last(5) |> dense(3)\n"
    "}\n"
    "train net on d {\n"
    "    loss      = cross_entropy(output, label)\n"
    "    optimizer = adam(lr = 0.02)\n"
    "    batch     = 8\n"
    "    epochs    = 1\n"
    "    seed      = 2\n"
    "    save      = \"jit.st\"\n"
    "}\n";

static const char partial_c[] =
    "#include <stdio.h>\n#include \"net.h\"\n"
    "void nnrt_shuffle(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch);\n"
    "int main(int argc, char **argv) {\n"
    "    float x[11 * 4], bx[8 * 4], loss[2];\n"
    "    int32_t y[11], by[8];\n"
    "    int64_t perm[11];\n"
    "    for (int i = 0; i < 11; i++) {\n"
    "        int a = (i * 7) % 10, b = (i * 3) % 10, c = (i * 5 + 1) % 10, d = i % 10;\n"
    "        x[4 * i] = a, x[4 * i + 1] = b, x[4 * i + 2] = c, x[4 * i + 3] = d;\n"
    "        y[i] = (a + b) % 3;\n    }\n"
    "    nnrt_shuffle(perm, 11, 2, 0);\n"
    "    net_model *m;\n"
    "    if (net_create(&m, 1)) return 1;\n"
    "    for (int s = 0, at = 0; s < 2; s++) {\n"
    "        int n = s ? 3 : NET_BATCH;\n"
    "        for (int i = 0; i < n; i++, at++) {\n"
    "            for (int k = 0; k < 4; k++) bx[4 * i + k] = x[4 * perm[at] + k];\n"
    "            by[i] = y[perm[at]];\n        }\n"
    "        if (net_train_step(m, bx, by, n, &loss[s])) {\n"
    "            printf(\"step %d: %s\\n\", s, net_errmsg(m));\n            return 2;\n        }\n"
    "    }\n"
    "    if (net_save(m, argv[1])) return 3;\n"
    "    printf(\"loss %.9g %.9g\\n\", loss[0], loss[1]);\n"
    "    net_free(m);\n    return 0;\n}\n";

static void partial_batch(const char *script, int min_tensors)
{
    char path[512];
    snprintf(path, sizeof path, "%s/rows.csv", dir);
    tu_write_abcd_csv(path, 11, 0);
    tu_write_in_dir("partial.nn", script);
    free(tu_sh_rc(0, "%s train %s/partial.nn -q --set save=%s/jit.st", tu_nnc(), dir, dir));
    char *out = tu_sh_rc(0, "%s build %s/partial.nn --lib -o %s/libnet -q && cat %s/net.h",
                         tu_nnc(), dir, dir, dir);
    cr_assert(strstr(out, "any n >= 1"), "the header should say a step takes any n:\n%s", out);
    free(out);
    tu_write_in_dir("partial.c", partial_c);
    free(tu_sh_rc(0, "cc -O1 -Wall %s -I%s %s/partial.c %s/libnet.a -lz -lm -lpthread -o %s/partial",
                  TU_SAN_FLAGS, dir, dir, dir, dir));
    out = tu_sh_rc(0, "%s/partial %s/lib.st", dir, dir);
    cr_assert(strstr(out, "loss "), "%s", out);
    free(out);
    NnVars a, b;
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/jit.st", dir);
    snprintf(pb, sizeof pb, "%s/lib.st", dir);
    cr_assert_eq(nnrt_safetensors_load(pa, &a, NULL), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(nnrt_safetensors_load(pb, &b, NULL), NN_OK, "%s", nnrt_errmsg());
    int compared = 0;
    for (int k = 0; k < b.count; k++) {
        const NnTensor *t = nnrt_vars_get(&a, b.names[k]);
        if (!t) // the library's own (hyperparameters as variables)
            continue;
        cr_assert_eq(nnrt_tensor_nbytes(t), nnrt_tensor_nbytes(b.tensors[k]), "%s", b.names[k]);
        cr_expect(!memcmp(t->data, b.tensors[k]->data, nnrt_tensor_nbytes(t)),
                  "'%s' differs: nnc train %g, library %g (element 0)", b.names[k],
                  nnrt_tensor_get(t, 0), nnrt_tensor_get(b.tensors[k], 0));
        compared++;
    }
    cr_expect_geq(compared, min_tensors, "weights and Adam's two moments: %d tensors", compared);
    nnrt_vars_fini(&a);
    nnrt_vars_fini(&b);
}

Test(embed, partial_batch_equals_nnc_train) { partial_batch(partial_nn, 4 * 3); }

// A GRU's wx, wh, b and the dense layer's w, b, each with two moments.
Test(embed, recurrent_partial_batch_equals_nnc_train) { partial_batch(partial_rnn_nn, 5 * 3); }
