// `nnc build` end to end: a small classifier (CSV data, a transform, class
// names, partial batches) and XOR built into programs whose train, eval and
// predict output equals `nnc train` / `nnc eval`; predict on any number of
// rows with no compiler in the program; embedded weights; no LLVM and nothing
// of ours in `ldd`; a portable target; an aarch64 object's ELF header; and the
// diagnostics for bad input to built programs; a recurrent model built with
// one training step and one evaluation for every batch size. Each test works
// in a fresh directory under /tmp.
#define _GNU_SOURCE // asprintf
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static const char *dir; // the scratch directory (tu_dir())

static const char script[] =
    "import std\n"
    "data d {\n"
    "    train = csv(\"train.csv\", label = \"label\")\n"
    "    test  = csv(\"test.csv\", label = \"label\")\n"
    "    x     = x / 10\n"
    "    classes = [\"red\", \"green\", \"blue\"]\n"
    "}\n"
    "model net(x: f32[N, 4]) -> f32[N, 3] {\n"
    "    return x |> dense(8) |> relu |> dense(3)\n"
    "}\n"
    "train net on d {\n"
    "    loss      = cross_entropy(output, label)\n"
    "    optimizer = adam(lr = 0.02)\n"
    "    batch     = 8\n"
    "    epochs    = 4\n"
    "    seed      = 2\n"
    "    metrics   = [accuracy, confusion]\n"
    "    save      = \"w.safetensors\"\n"
    "}\n";

// The same model with a wider hidden layer: its weights do not fit net's.
static const char wide[] =
    "import std\n"
    "data d {\n"
    "    train = csv(\"train.csv\", label = \"label\")\n"
    "    x     = x / 10\n"
    "}\n"
    "model net(x: f32[N, 4]) -> f32[N, 3] {\n"
    "    return x |> dense(16) |> relu |> dense(3)\n"
    "}\n"
    "train net on d {\n"
    "    loss      = cross_entropy(output, label)\n"
    "    optimizer = adam(lr = 0.02)\n"
    "    batch     = 8\n"
    "    epochs    = 1\n"
    "    save      = \"wide.safetensors\"\n"
    "}\n";

static void write_csv(const char *name, int n, int start)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    tu_write_abcd_csv(path, n, start);
}

static void setup(void)
{
    dir = tu_scratch_make("build");
    tu_write_in_dir("net.nn", script);
    tu_write_in_dir("wide.nn", wide);
    write_csv("train.csv", 30, 0);
    write_csv("test.csv", 11, 100);
}

static void teardown(void) { tu_scratch_remove(); }

TestSuite(build_cli, .init = setup, .fini = teardown, .timeout = 600);

// Runs a shell command in dir; returns its output, asserting the exit status.
static char *sh(int want, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *sh(int want, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return tu_sh_rc(want, "cd '%s' && %s", dir, args);
}

// stdout only (progress and diagnostics go to stderr).
static char *sh_stdout(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh_stdout(const char *fmt, ...)
{
    char args[4096], cmd[4608];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && %s 2>/dev/null", dir, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    char *buf = NULL;
    size_t cap = 0;
    FILE *m = open_memstream(&buf, &cap);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(m);
    int st = pclose(p);
    cr_assert_eq(st, 0, "%s failed:\n%s", args, buf);
    return buf;
}

static char *slurp(const char *name) { return tu_slurp(tu_in_dir(name), NULL); }

static void build(const char *args) { free(sh(0, "%s build %s", tu_nnc(), args)); }

Test(build_cli, train_and_eval_equal_the_jit)
{
    build("net.nn -o net");
    char *jit = sh_stdout("%s train net.nn --metrics j.jsonl", tu_nnc());
    char *aot = sh_stdout("./net train --metrics a.jsonl");
    cr_assert_str_eq(aot, jit);
    cr_assert(strstr(aot, "test  loss") && strstr(aot, "saved w.safetensors"), "%s", aot);
    char *jl = slurp("j.jsonl"), *al = slurp("a.jsonl");
    cr_assert_str_eq(al, jl);
    char *je = sh_stdout("%s eval net.nn --weights w.safetensors", tu_nnc());
    char *ae = sh_stdout("./net eval --weights w.safetensors");
    cr_assert_str_eq(ae, je);
    cr_assert(strstr(ae, "red"), "class names in the report:\n%s", ae);
    free(jit), free(aot), free(jl), free(al), free(je), free(ae);
}

Test(build_cli, xor_regression_equals_the_jit)
{
    char *out = sh(0, "cp '%s/examples/xor.nn' . && %s build xor.nn -o xor", NN_SOURCE_DIR,
                   tu_nnc());
    free(out);
    char *jit = sh_stdout("%s train xor.nn --set epochs=40", tu_nnc());
    char *aot = sh_stdout("./xor train --set epochs=40");
    cr_assert_str_eq(aot, jit);
    cr_assert(strstr(aot, "mse"), "%s", aot);
    free(jit), free(aot);
    // Checkpoints hold no run-time hyperparameters (hyper/lr), in either
    // program: each resumes from the other's, the same way.
    free(sh(0, "%s train xor.nn -q --set save=n.st && ./xor train -q --set save=a.st", tu_nnc()));
    jit = sh_stdout("%s train xor.nn --set epochs=0 --resume a.st", tu_nnc());
    aot = sh_stdout("./xor train --set epochs=0 --resume n.st");
    cr_assert_str_eq(aot, jit);
    cr_assert(strstr(aot, "mse"), "%s", aot);
    free(jit), free(aot);
}

Test(build_cli, standalone_links_no_llvm_and_nothing_of_ours)
{
    build("net.nn -o net");
    char *out = sh(0, "ldd ./net");
    cr_assert_null(strstr(out, "LLVM"), "%s", out);
    cr_assert_null(strstr(out, "libnn"), "%s", out);
    cr_assert(strstr(out, "libc"), "%s", out);
    free(out);
}

// Class and scores of each row of a predict CSV (the header skipped).
static int parse_rows(const char *csv, char cls[][16], double sc[][3], int cap)
{
    const char *p = strchr(csv, '\n');
    int n = 0;
    while (p && p[1] && n < cap) {
        p++;
        cr_assert_eq(sscanf(p, "%15[^,],%lf,%lf,%lf", cls[n], &sc[n][0], &sc[n][1], &sc[n][2]),
                     4, "bad row: %.40s", p);
        n++;
        p = strchr(p, '\n');
    }
    return n;
}

Test(build_cli, predict_any_batch_size_and_embedded_weights)
{
    build("net.nn -o net");
    free(sh(0, "./net train -q"));
    free(sh(0, "./net predict --weights w.safetensors test.csv -o all.csv"));
    char *all = slurp("all.csv");
    cr_assert(!strncmp(all, "class,red,green,blue\n", 21), "%s", all);
    char cls[16][16], one_cls[1][16];
    double sc[16][3], one[1][3];
    int n = parse_rows(all, cls, sc, 16);
    cr_assert_eq(n, 11);
    // Rows one at a time (batch 1) and all 11 (a batch of 8 and 3 more) agree.
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "row%d.csv", i);
        write_csv(name, 1, 100 + i);
        char *o = sh(0, "./net predict --weights w.safetensors %s -o -", name);
        cr_assert_eq(parse_rows(o, one_cls, one, 1), 1);
        cr_assert_str_eq(one_cls[0], cls[i], "row %d", i);
        for (int k = 0; k < 3; k++)
            cr_assert(fabs(one[0][k] - sc[i][k]) < 1e-4, "row %d score %d: %g vs %g", i, k,
                      one[0][k], sc[i][k]);
        free(o);
    }
    // Raw f32 model inputs (after the data block's x / 10) on standard input.
    FILE *f = fopen("/dev/null", "r");
    fclose(f);
    char path[512];
    snprintf(path, sizeof path, "%s/raw.f32", dir);
    f = fopen(path, "wb");
    cr_assert(f);
    for (int i = 100; i < 111; i++) {
        float v[4] = {(float)((i * 7) % 10) / 10, (float)((i * 3) % 10) / 10,
                      (float)((i * 5 + 1) % 10) / 10, (float)(i % 10) / 10};
        fwrite(v, sizeof v, 1, f);
    }
    fclose(f);
    char *raw = sh(0, "./net predict --weights w.safetensors - -o - < raw.f32");
    char rcls[16][16];
    double rsc[16][3];
    cr_assert_eq(parse_rows(raw, rcls, rsc, 16), 11);
    for (int i = 0; i < 11; i++)
        cr_assert_str_eq(rcls[i], cls[i], "raw row %d", i);
    // Weights embedded at build time: predict needs no other file.
    build("net.nn -o netw --weights w.safetensors");
    free(sh(0, "mv w.safetensors elsewhere.safetensors"));
    free(sh(0, "./netw predict test.csv -o emb.csv"));
    char *emb = slurp("emb.csv");
    cr_assert_str_eq(emb, all);
    // eval and predict use the embedded bytes where they lie (read-only):
    // the same report as from the file, and predict twice in a row agrees.
    char *ee = sh_stdout("./netw eval"), *fe = sh_stdout("./net eval --weights "
                                                         "elsewhere.safetensors");
    cr_assert_str_eq(ee, fe);
    free(sh(0, "./netw predict test.csv -o emb2.csv"));
    char *emb2 = slurp("emb2.csv");
    cr_assert_str_eq(emb2, all);
    free(all), free(raw), free(emb), free(ee), free(fe), free(emb2);
}

Test(build_cli, portable_target_trains)
{
    build("net.nn -o netv2 --target x86-64-v2");
    char *out = sh_stdout("./netv2 train");
    cr_assert(strstr(out, "test  loss") && !strstr(out, "nan"), "%s", out);
    free(out);
}

Test(build_cli, aarch64_object_header)
{
    char *out = sh(0, "%s build net.nn --target aarch64-linux-gnu -o arm", tu_nnc());
    cr_assert(strstr(out, "aarch64"), "%s", out);
    free(out);
    char path[512];
    snprintf(path, sizeof path, "%s/arm-0.o", dir);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "no object %s", path);
    unsigned char h[20];
    cr_assert_eq(fread(h, 1, sizeof h, f), sizeof h);
    fclose(f);
    cr_assert(!memcmp(h, "\x7f" "ELF", 4));
    cr_assert_eq(h[4], 2, "ELFCLASS64");
    cr_assert_eq(h[5], 1, "little-endian");
    cr_assert_eq(h[16] | h[17] << 8, 1, "ET_REL");
    cr_assert_eq(h[18] | h[19] << 8, 183, "EM_AARCH64");
    struct stat st;
    snprintf(path, sizeof path, "%s/arm.c", dir);
    cr_assert_eq(stat(path, &st), 0, "the tables come with the objects");
}

Test(build_cli, bad_weights_name_the_tensor)
{
    build("net.nn -o net");
    free(sh(0, "%s train wide.nn -q", tu_nnc()));
    char *out = sh(1, "./net predict --weights wide.safetensors test.csv -o p.csv");
    cr_assert(strstr(out, "wide.safetensors") && strstr(out, "net.") && strstr(out, "[4, 16]"),
              "%s", out);
    free(out);
    out = sh(1, "./net eval --weights wide.safetensors");
    cr_assert(strstr(out, "wide.safetensors") && strstr(out, "[4, 16]"), "%s", out);
    free(out);
    out = sh(1, "./net predict --weights missing.safetensors test.csv -o p.csv");
    cr_assert(strstr(out, "missing.safetensors"), "%s", out);
    free(out);
    out = sh(1, "%s build net.nn -o netw --weights wide.safetensors", tu_nnc());
    cr_assert(strstr(out, "wide.safetensors") && strstr(out, "[4, 16]"), "%s", out);
    free(out);
}

Test(build_cli, bad_input_names_the_file_and_the_expectation)
{
    build("net.nn -o net");
    free(sh(0, "./net train -q"));
    tu_write_in_dir("short.csv", "1,2,3,4\n5,6,7\n");
    char *out = sh(1, "./net predict --weights w.safetensors short.csv -o p.csv");
    cr_assert(strstr(out, "short.csv:2") && strstr(out, "expected 4"), "%s", out);
    free(out);
    tu_write_in_dir("junk.csv", "1,2,x,4\n");
    out = sh(1, "./net predict --weights w.safetensors junk.csv -o p.csv");
    cr_assert(strstr(out, "junk.csv:1") && strstr(out, "column 5"), "%s", out);
    free(out);
    out = sh(1, "printf 'abcdef' | ./net predict --weights w.safetensors - -o -");
    cr_assert(strstr(out, "standard input") && strstr(out, "16 bytes each"), "%s", out);
    free(out);
    // An IDX file of the wrong sample shape: 2 samples of 3 values.
    char path[512];
    snprintf(path, sizeof path, "%s/bad.idx", dir);
    FILE *f = fopen(path, "wb");
    const unsigned char idx[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6};
    fwrite(idx, 1, sizeof idx, f);
    fclose(f);
    out = sh(1, "./net predict --weights w.safetensors bad.idx -o p.csv");
    cr_assert(strstr(out, "bad.idx") && strstr(out, "[3]") && strstr(out, "f32[4]"), "%s", out);
    free(out);
    // The data changed since the build: the compiled transform says what it expected.
    write_csv("train.csv", 29, 0);
    out = sh(1, "./net train -q");
    cr_assert(strstr(out, "train") && strstr(out, "[30, 4]") && strstr(out, "[29, 4]"), "%s",
              out);
    free(out);
}

// A block of steps (the GAN on a ring of Gaussians, 2 epochs): the built
// program trains it as nnc train does, the same progress values, metrics
// lines and saved weights; it has no evaluation or outputs to predict, and
// says so.
Test(build_cli, gan_steps_equal_the_jit)
{
    free(sh(0, "cp '%s/examples/gan_ring.nn' . && %s build gan_ring.nn -o gan --set epochs=2",
            NN_SOURCE_DIR, tu_nnc()));
    char *jit = sh(0, "%s train gan_ring.nn --set epochs=2 --set save=w.st --metrics j.jsonl "
                   "2>&1 | sed 's/  [0-9.]*k* samples\\/s.*//' && mv w.st j.st", tu_nnc());
    char *aot = sh(0, "./gan train --set save=w.st --metrics a.jsonl 2>&1 | "
                   "sed 's/  [0-9.]*k* samples\\/s.*//' && mv w.st a.st");
    cr_assert(strstr(jit, "disc.real") && strstr(jit, "gen.loss"), "%s", jit);
    char *j = strstr(jit, "epoch 2/2"), *a = strstr(aot, "epoch 2/2");
    cr_assert(j && a, "%s\n%s", jit, aot);
    cr_assert_str_eq(a, j);
    char *jl = slurp("j.jsonl"), *al = slurp("a.jsonl");
    cr_assert(strstr(jl, "disc.fake"), "%s", jl);
    cr_assert_str_eq(al, jl);
    free(sh(0, "cmp a.st j.st"));
    // `./gan sample` pictures the generator as `nnc sample` does: the same
    // PNG bytes and modes report, at the block's seed and at another.
    for (int seed = 0; seed < 2; seed++) {
        const char *opt = seed ? "--seed 5" : "";
        char *js = sh_stdout("%s sample gan_ring.nn --weights a.st -o j.png %s", tu_nnc(), opt);
        char *as = sh_stdout("./gan sample --weights a.st -o a.png %s", opt);
        cr_assert(strstr(js, "to j.png") && strstr(js, "modes covered"), "%s", js);
        cr_assert_str_eq(strstr(as, "modes covered"), strstr(js, "modes covered"));
        free(sh(0, "cmp a.png j.png"));
        free(js), free(as);
    }
    // Bad sample arguments get nnc's diagnostics.
    char *bad = sh(2, "./gan sample --weights a.st");
    cr_assert(strstr(bad, "needs -o FILE.png"), "%s", bad);
    free(bad);
    bad = sh(2, "./gan sample --weights a.st -o a.jpg");
    cr_assert(strstr(bad, "writes .png images") && strstr(bad, "a.jpg"), "%s", bad);
    free(bad);
    bad = sh(1, "./gan sample --weights absent.st -o a.png");
    cr_assert(strstr(bad, "absent.st"), "%s", bad);
    free(bad);
    char *out = sh(1, "./gan eval --weights a.st");
    cr_assert(strstr(out, "block of steps") && strstr(out, "nnc sample"), "%s", out);
    free(out);
    out = sh(1, "./gan predict --weights a.st x.csv -o -");
    cr_assert(strstr(out, "block of steps"), "%s", out);
    free(out), free(jit), free(aot), free(jl), free(al);
}

// A learning-rate schedule over total_steps (cosine): the program sets
// total_steps from its epochs and batches as nnc train does, so the rates
// (in the metrics log) and the results are the same.
Test(build_cli, schedule_total_steps_equal_the_jit)
{
    char *text = strdup(script), *at = strstr(text, "adam(lr = 0.02)");
    cr_assert(at);
    char sched[2048];
    snprintf(sched, sizeof sched, "%.*sadam(lr = cosine(0.02))%s", (int)(at - text), text,
             at + strlen("adam(lr = 0.02)"));
    tu_write_in_dir("sched.nn", sched);
    free(text);
    build("sched.nn -o sched");
    char *jit = sh_stdout("%s train sched.nn --metrics j.jsonl", tu_nnc());
    char *aot = sh_stdout("./sched train --metrics a.jsonl");
    cr_assert_str_eq(aot, jit);
    char *jl = slurp("j.jsonl"), *al = slurp("a.jsonl");
    cr_assert(strstr(jl, "\"lr\""), "%s", jl);
    cr_assert_str_eq(al, jl);
    free(jit), free(aot), free(jl), free(al);
}

// nnc build reads an IDX images file's header only (its sample count and
// shape): the elements are the built program's to read, so a file cut short
// after its header builds, and the program's train reports it with the
// file and where the data ends.
Test(build_cli, idx_images_read_by_the_program)
{
    tu_write_in_dir("img.nn", "import std\n"
                         "data d {\n"
                         "    train = idx(\"img.idx\", \"lbl.idx\")\n"
                         "    x     = flatten(x) / 255\n"
                         "}\n"
                         "model net(x: f32[N, 4]) -> f32[N, 2] {\n"
                         "    return x |> dense(2)\n"
                         "}\n"
                         "train net on d {\n"
                         "    loss      = cross_entropy(output, label)\n"
                         "    optimizer = sgd(lr = 0.1)\n"
                         "    batch     = 2\n"
                         "    epochs    = 1\n"
                         "}\n");
    // 4 images of 2x2 bytes, only 3 of them present; 4 labels.
    const unsigned char img[] = {0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2,
                                 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const unsigned char lbl[] = {0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 0, 1};
    const unsigned char *bytes[2] = {img, lbl};
    size_t sizes[2] = {sizeof img, sizeof lbl};
    const char *names[2] = {"img.idx", "lbl.idx"};
    for (int i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "wb");
        cr_assert(f && fwrite(bytes[i], 1, sizes[i], f) == sizes[i]);
        fclose(f);
    }
    char *out = sh(1, "%s train img.nn -q", tu_nnc());
    cr_assert(strstr(out, "img.idx") && strstr(out, "truncated"), "%s", out);
    free(out);
    build("img.nn -o img");
    char *aot = sh(1, "./img train -q");
    cr_assert(strstr(aot, "img.idx") && strstr(aot, "truncated"), "%s", aot);
    free(aot);
}

Test(build_cli, bad_usage)
{
    build("net.nn -o net");
    char *out = sh(2, "./net train --set batch=4");
    cr_assert(strstr(out, "compiled into the program"), "%s", out);
    free(out);
    out = sh(2, "./net eval");
    cr_assert(strstr(out, "--weights"), "%s", out);
    free(out);
    out = sh(2, "./net predict --weights w.safetensors");
    cr_assert(strstr(out, "INPUT"), "%s", out);
    free(out);
    out = sh(2, "./net fly");
    cr_assert(strstr(out, "unknown command"), "%s", out);
    free(out);
    out = sh(2, "%s build net.nn", tu_nnc());
    cr_assert(strstr(out, "-o"), "%s", out);
    free(out);
    out = sh(2, "%s build net.nn -o x --target frobnicator-linux-gnu", tu_nnc());
    cr_assert(strstr(out, "--target"), "%s", out);
    free(out);
    out = sh(2, "%s train net.nn --target native", tu_nnc());
    cr_assert(strstr(out, "--target"), "%s", out);
    free(out);
}

// Example models of other kinds (an image MLP on IDX files with a split and
// class names, a generated regression), on a few samples: the built program's
// metrics file equals the JIT's. (By hand, one epoch of names_lstm, flowers
// and lenet5 compare equal too; they take minutes here.)
Test(build_cli, examples_equal_the_jit)
{
    static const char *const models[][2] = {
        {"fashion_mlp", "--set epochs=1 --set limit=700 --set eval_limit=300"},
        {"sine", "--set epochs=3"},
    };
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("Fashion-MNIST is not installed");
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        const char *m = models[i][0], *set = models[i][1];
        free(sh(0, "%s build '%s/examples/%s.nn' -o %s %s", tu_nnc(), NN_SOURCE_DIR, m, m, set));
        free(sh(0, "%s train '%s/examples/%s.nn' %s --set save=j.st -q --metrics j_%s.jsonl",
                tu_nnc(), NN_SOURCE_DIR, m, set, m));
        free(sh(0, "./%s train --set save=a.st -q --metrics a_%s.jsonl", m, m));
        char jn[64], an[64];
        snprintf(jn, sizeof jn, "j_%s.jsonl", m);
        snprintf(an, sizeof an, "a_%s.jsonl", m);
        char *j = slurp(jn), *a = slurp(an);
        cr_assert(strstr(j, "\"test\"") || strstr(j, "\"train\""), "%s: %s", m, j);
        cr_assert_str_eq(a, j, "%s", m);
        free(j), free(a);
    }
}

// A recurrent model (an LSTM's loops over time-major values) at batch 16
// over 31 training rows (16 and 15), 7 validation rows and 1 test row: the
// build compiles one training step and one evaluation, each for any batch
// size (it compiled one per size the data needs), and the program's output
// equals `nnc train`'s.
static const char lstm[] =
    "import std\n"
    "data d {\n"
    "    x = normal([39, 5, 3], 0, 1)\n"
    "    y = normal([39, 2], 0, 1)\n"
    "    split train -> train 0.795, val 0.18, test 0.025 (seed = 1)\n"
    "}\n"
    "model net(x: f32[N, 5, 3]) -> f32[N, 2] {\n"
    "    return x |> lstm(6) |> gru_last(5) |> dense(2)\n"
    "}\n"
    "train net on d {\n"
    "    loss      = mse(output, y)\n"
    "    optimizer = adam(lr = 0.01)\n"
    "    batch     = 16\n"
    "    epochs    = 2\n"
    "    seed      = 3\n"
    "}\n";

static int occurrences(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

Test(build_cli, recurrent_builds_one_step_and_one_evaluation)
{
    tu_write_in_dir("lstm.nn", lstm);
    char *out = sh(0, "%s build lstm.nn -o lstm -v", tu_nnc());
    cr_expect_eq(occurrences(out, "compiled the training step for any batch size"), 1, "%s", out);
    cr_expect_eq(occurrences(out, "compiled the evaluation for any batch size"), 1, "%s", out);
    cr_expect_eq(occurrences(out, "rows\n"), 0, "no step for one batch size:\n%s", out);
    free(out);
    char *jit = sh_stdout("%s train lstm.nn", tu_nnc());
    char *aot = sh_stdout("./lstm train");
    cr_assert_str_eq(aot, jit);
    cr_assert(strstr(aot, "(7 samples)") && strstr(aot, "(1 samples)"), "%s", aot);
    free(jit), free(aot);
}

// A text model's program samples words as `nnc sample` does (the same lines
// for the same weights, seed and temperature), from weights given or
// embedded; bad sample arguments get nnc's diagnostics, and a model with
// nothing to sample says why.
static const char lm[] =
    "import std\n"
    "data words {\n"
    "    train = text(\"words.txt\", seq = 4, to = 0.8)\n"
    "    val   = text(\"words.txt\", seq = 4, from = 0.8)\n"
    "}\n"
    "model lm(x: i32[N, 4]) -> f32[N, 25] {\n"
    "    return x |> embedding(25, 8) |> flatten |> dense(64) |> tanh |> dense(25)\n"
    "}\n"
    "train lm on words {\n"
    "    loss      = cross_entropy(output, label)\n"
    "    optimizer = adam(lr = 0.02, clip = 5)\n"
    "    epochs    = 30\n"
    "    save      = \"lm.st\"\n"
    "}\n";

Test(build_cli, sample_equals_nnc_sample)
{
    tu_write_in_dir("words.txt", "apple\nbanana\ncherry\ndate\nelder\nfig\ngrape\nhazel\nkiwi\n"
                                 "lemon\nmango\nnectar\nolive\npeach\nquince\nraisin\n");
    tu_write_in_dir("lm.nn", lm);
    build("lm.nn -o lm");
    free(sh(0, "./lm train -q"));
    build("lm.nn -o lm_w --weights lm.st");
    const char *opts[] = {"--count 12 --temperature 0.8 --seed 1", "--seed 2", "--temperature 0"};
    for (int i = 0; i < 3; i++) {
        char *j = sh_stdout("%s sample lm.nn --weights lm.st %s", tu_nnc(), opts[i]);
        char *a = sh_stdout("./lm sample --weights lm.st %s", opts[i]);
        char *w = sh_stdout("./lm_w sample %s", opts[i]);
        int lines = 0;
        for (const char *q = j; *q; q++)
            lines += *q == '\n';
        cr_assert_eq(lines, i ? 20 : 12, "%s", j);
        cr_assert_str_eq(a, j, "%s", opts[i]);
        cr_assert_str_eq(w, j, "%s (embedded weights)", opts[i]);
        free(j), free(a), free(w);
    }
    static const char *const bad[][3] = {
        {"2", "./lm sample", "needs --weights"},
        {"2", "./lm sample --weights lm.st -o x.png", "-o is for generators"},
        {"2", "./lm sample --weights lm.st --count 0", "--count expects"},
        {"2", "./lm sample --weights lm.st --temperature -1", "--temperature expects"},
        {"2", "./lm sample --weights lm.st --seed -3", "--seed expects"},
        {"2", "./lm sample --weights lm.st --count", "needs a value"},
        {"2", "./lm train --count 3", "are for 'sample'"},
        {"2", "./lm sample --weights lm.st --metrics m.jsonl", "--metrics is for"},
        {"1", "./lm sample --weights absent.st", "absent.st"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = sh(atoi(bad[i][0]), "%s", bad[i][1]);
        cr_assert(strstr(out, bad[i][2]), "%s: %s", bad[i][1], out);
        free(out);
    }
    // Weights of another model name the tensor that does not fit.
    build("net.nn -o net");
    free(sh(0, "./net train -q --set save=net.st"));
    char *out = sh(1, "./lm sample --weights net.st");
    cr_assert(strstr(out, "lm."), "%s", out);
    free(out);
    // A classifier has nothing to sample.
    out = sh(1, "./net sample --weights net.st");
    cr_assert(strstr(out, "declares no noise input"), "%s", out);
    free(out);
}
