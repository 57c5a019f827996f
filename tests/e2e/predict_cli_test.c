// `nnc predict FILE --weights W INPUT [-o OUT]` end to end: the classes it
// writes for the Fashion-MNIST test images score exactly the accuracy
// `nnc eval` reports for the same weights, and its CSV is byte for byte what
// the program `nnc build` makes writes for the same input; IDX and CSV
// samples go through the data block's transforms, raw f32 on standard input
// is model inputs; bad input (a file of the wrong sample shape, a byte count
// that is no whole number of samples, a CSV cell that is no number, a
// checkpoint of another model, a missing INPUT or --weights) gets a
// diagnostic naming the file and what was expected, and exit status 1 (2 for
// usage).
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "testutil.h"

#define FASHION "/usr/share/datasets/fashion-mnist/"

static const char *dir; // the scratch directory (tu_dir())

static void setup(void)
{
    cr_assert_eq(chdir(NN_SOURCE_DIR), 0);
    dir = tu_scratch_make("predict");
}

static void teardown(void) { tu_scratch_remove(); }

TestSuite(predict_cli, .init = setup, .fini = teardown, .timeout = 600);

// Lines of text (modified in place); returns how many.
static int lines(char *text, char **out, int max)
{
    int n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < max;
         l = strtok_r(NULL, "\n", &save))
        out[n++] = l;
    return n;
}

Test(predict_cli, xor_csv_and_raw_stdin_agree)
{
    free(tu_nnc_rc(0, "train examples/xor.nn -q --set save=%s", tu_in_dir("xor.st")));
    FILE *f = fopen(tu_in_dir("in.csv"), "w");
    fputs("a,b\n0,0\n0,1\n1,0\n1,1\n", f);
    fclose(f);
    char *csv = tu_nnc_rc(0, "predict examples/xor.nn --weights %s %s", tu_in_dir("xor.st"),
                       tu_in_dir("in.csv"));
    char *l[8];
    cr_assert_eq(lines(csv, l, 8), 5, "%s", csv);
    cr_assert_str_eq(l[0], "y0");
    // XOR learned: 0 1 1 0.
    double v[4];
    for (int i = 0; i < 4; i++)
        v[i] = strtod(l[i + 1], NULL);
    cr_assert(v[0] < 0.2 && v[1] > 0.8 && v[2] > 0.8 && v[3] < 0.2, "%s", l[1]);
    // The same samples as raw f32 on standard input, in another order, to a file.
    float raw[8] = {1, 1, 0, 1, 0, 0, 1, 0};
    f = fopen(tu_in_dir("in.f32"), "wb");
    cr_assert_eq(fwrite(raw, sizeof raw, 1, f), 1);
    fclose(f);
    free(tu_nnc_rc(0, "predict examples/xor.nn --weights %s -o %s - < %s", tu_in_dir("xor.st"),
                tu_in_dir("out.csv"), tu_in_dir("in.f32")));
    char *out = tu_read_file(tu_in_dir("out.csv"));
    char *m[8];
    cr_assert_eq(lines(out, m, 8), 5, "%s", out);
    cr_assert_str_eq(m[1], l[4]);
    cr_assert_str_eq(m[2], l[2]);
    cr_assert_str_eq(m[3], l[1]);
    cr_assert_str_eq(m[4], l[3]);
    free(out);
    free(csv);
    // The built program's predict writes the same file.
    free(tu_nnc_rc(0, "build examples/xor.nn -o %s", tu_in_dir("xorprog")));
    char *cmd = NULL, *prog = NULL;
    cr_assert(asprintf(&cmd, "%s predict --weights %s %s -o -", tu_in_dir("xorprog"),
                       tu_in_dir("xor.st"), tu_in_dir("in.csv")) > 0);
    cr_assert_eq(tu_run(cmd, &prog), 0, "%s", prog);
    free(cmd);
    char *again = tu_nnc_rc(0, "predict examples/xor.nn --weights %s %s", tu_in_dir("xor.st"),
                         tu_in_dir("in.csv"));
    cr_assert_str_eq(again, prog);
    free(again);
    free(prog);
}

// The labels of the Fashion-MNIST test set (i32), via the runtime's loader.
static NnTensor *test_labels(void)
{
    NnTensor *y = NULL;
    cr_assert_eq(nnrt_idx_load(FASHION "t10k-labels-idx1-ubyte.gz", &y), NN_OK, "%s",
                 nnrt_errmsg());
    return y;
}

static const char *const names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

Test(predict_cli, fashion_classes_match_eval)
{
    if (access(FASHION "t10k-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("Fashion-MNIST not installed");
    char w[512]; // in_dir's buffers rotate
    snprintf(w, sizeof w, "%s", tu_in_dir("mlp.st"));
    free(tu_nnc_rc(0, "train examples/fashion_mlp.nn -q --set epochs=1 --set limit=3000 "
                   "--set save=%s", w));
    free(tu_nnc_rc(0, "eval examples/fashion_mlp.nn -q --weights %s --metrics %s", w,
                tu_in_dir("m.jsonl")));
    char *jl = tu_read_file(tu_in_dir("m.jsonl"));
    double acc = tu_jsonl_last(jl, "test", "accuracy");
    free(jl);
    cr_assert(acc > 0.5 && acc < 1, "eval accuracy %g", acc);

    free(tu_nnc_rc(0, "predict examples/fashion_mlp.nn --weights %s %s -o %s", w,
                FASHION "t10k-images-idx3-ubyte.gz", tu_in_dir("p.csv")));
    char *csv = tu_read_file(tu_in_dir("p.csv"));
    static char *l[10002];
    // The built program's predict writes the same bytes.
    free(tu_nnc_rc(0, "build examples/fashion_mlp.nn -o %s", tu_in_dir("mlpprog")));
    char *cmd = NULL, *prog = NULL;
    cr_assert(asprintf(&cmd, "%s predict --weights %s %s -o -", tu_in_dir("mlpprog"), w,
                       FASHION "t10k-images-idx3-ubyte.gz") > 0);
    cr_assert_eq(tu_run(cmd, &prog), 0, "%s", prog);
    free(cmd);
    cr_assert(!strcmp(prog, csv), "nnc predict and the built program's predict differ");
    free(prog);

    cr_assert_eq(lines(csv, l, 10002), 10001);
    cr_assert_str_eq(l[0], "class,T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,"
                           "Sneaker,Bag,Ankle boot");
    NnTensor *y = test_labels();
    int right = 0;
    for (int i = 0; i < 10000; i++) {
        const char *name = names[((int32_t *)y->data)[i]];
        right += !strncmp(l[i + 1], name, strlen(name)) && l[i + 1][strlen(name)] == ',';
    }
    cr_assert(fabs(right / 10000.0 - acc) < 1e-9, "predict: %d of 10000 right, eval %g", right,
              acc);
    // Each row's class is its largest score.
    for (int i = 1; i <= 100; i++) {
        char *p = strchr(l[i], ',');
        int best = 0;
        double bv = -INFINITY;
        for (int k = 0; k < 10; k++) {
            double v = strtod(p + 1, &p);
            if (v > bv)
                bv = v, best = k;
        }
        cr_assert(!strncmp(l[i], names[best], strlen(names[best])), "%s", l[i]);
    }

    // Three images as raw f32 model inputs (x / 255) on standard input.
    NnTensor *x = NULL;
    cr_assert_eq(nnrt_idx_load(FASHION "t10k-images-idx3-ubyte.gz", &x), NN_OK);
    for (int i = 0; i < 3 * 784; i++)
        ((float *)x->data)[i] /= 255;
    FILE *f = fopen(tu_in_dir("three.f32"), "wb");
    cr_assert_eq(fwrite(x->data, sizeof(float), 3 * 784, f), 3 * 784);
    fclose(f);
    nnrt_tensor_free(x);
    char *three = tu_nnc_rc(0, "predict examples/fashion_mlp.nn --weights %s - < %s", w,
                         tu_in_dir("three.f32"));
    char *t[8];
    cr_assert_eq(lines(three, t, 8), 4, "%s", three);
    for (int i = 1; i <= 3; i++)
        cr_assert_str_eq(t[i], l[i]);
    free(three);
    nnrt_tensor_free(y);
    free(csv);
}

Test(predict_cli, wrong_sample_shape_names_the_file)
{
    if (access(FASHION "t10k-labels-idx1-ubyte.gz", R_OK) != 0)
        cr_skip_test("Fashion-MNIST not installed");
    char *out = tu_nnc_rc(1, "predict examples/fashion_mlp.nn --weights %s %s",
                          tu_in_dir("none.st"), FASHION "t10k-labels-idx1-ubyte.gz");
    cr_assert(strstr(out, "t10k-labels-idx1-ubyte.gz' holds 10000 samples of [] (1 values each)"
                          "; expected samples of [1, 28, 28] (784 values each), as idx() reads "
                          "this data"), "%s", out);
    free(out);
}

Test(predict_cli, bad_input_diagnostics)
{
    char w[512]; // in_dir's buffers rotate
    snprintf(w, sizeof w, "%s", tu_in_dir("x.st"));
    free(tu_nnc_rc(0, "train examples/xor.nn -q --set epochs=1 --set save=%s", w));
    // 5 floats are not samples of 2.
    FILE *f = fopen(tu_in_dir("five.f32"), "wb");
    float five[5] = {0};
    fwrite(five, sizeof five, 1, f);
    fclose(f);
    char *out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s - < %s", w,
                          tu_in_dir("five.f32"));
    cr_assert(strstr(out, "'-': 5 values are not a whole number of samples: expected samples "
                          "of [2] (2 f32 values each)"), "%s", out);
    free(out);
    out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s - < /dev/null", w);
    cr_assert(strstr(out, "'-' holds no samples; expected samples of [2]"), "%s", out);
    free(out);
    // 6 bytes are not whole floats.
    f = fopen(tu_in_dir("six.bin"), "wb");
    fwrite("abcdef", 6, 1, f);
    fclose(f);
    out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s - < %s", w, tu_in_dir("six.bin"));
    cr_assert(strstr(out, "6 bytes are not whole f32 values"), "%s", out);
    free(out);
    // CSV: a row of the wrong width, a cell that is no number.
    f = fopen(tu_in_dir("wide.csv"), "w");
    fputs("0,1,2\n1,1,1\n", f);
    fclose(f);
    out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s %s", w, tu_in_dir("wide.csv"));
    cr_assert(strstr(out, "wide.csv' holds 2 samples of [3] (3 values each); expected samples "
                          "of [2] (2 values each)"), "%s", out);
    free(out);
    f = fopen(tu_in_dir("nan.csv"), "w");
    fputs("0,1\n1,zero\n", f);
    fclose(f);
    out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s %s", w, tu_in_dir("nan.csv"));
    cr_assert(strstr(out, "nan.csv:2: 'zero' is not a number"), "%s", out);
    free(out);
    f = fopen(tu_in_dir("ragged.csv"), "w");
    fputs("0,1\n1\n", f);
    fclose(f);
    out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s %s", w, tu_in_dir("ragged.csv"));
    cr_assert(strstr(out, "ragged.csv:2: 1 fields, the first row has 2"), "%s", out);
    free(out);
    // Missing INPUT file, missing or mismatched weights.
    out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s %s", w, tu_in_dir("absent.csv"));
    cr_assert(strstr(out, "absent.csv': No such file"), "%s", out);
    free(out);
    f = fopen(tu_in_dir("two.csv"), "w");
    fputs("0,1\n", f);
    fclose(f);
    out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s %s", tu_in_dir("absent.st"),
                 tu_in_dir("two.csv"));
    cr_assert(strstr(out, "absent.st"), "%s", out);
    free(out);
    f = fopen(tu_in_dir("one.csv"), "w");
    fputs("0.5\n", f);
    fclose(f);
    out = tu_nnc_rc(1, "predict examples/sine.nn --weights %s %s", w, tu_in_dir("one.csv"));
    cr_assert(strstr(out, "tensor 'fit."), "%s", out);
    free(out);
    // Usage.
    out = tu_nnc_rc(2, "predict examples/xor.nn %s", tu_in_dir("one.csv"));
    cr_assert(strstr(out, "'predict' needs --weights FILE"), "%s", out);
    free(out);
    out = tu_nnc_rc(2, "predict examples/xor.nn --weights %s", w);
    cr_assert(strstr(out, "'predict' needs INPUT"), "%s", out);
    free(out);
    out = tu_nnc_rc(2, "predict examples/xor.nn --weights %s a.csv b.csv", w);
    cr_assert(strstr(out, "unexpected argument 'b.csv'"), "%s", out);
    free(out);
    out = tu_nnc_rc(2, "eval examples/xor.nn --weights %s -o x.csv", w);
    cr_assert(strstr(out, "option '-o' means nothing to 'eval'"), "%s", out);
    free(out);
    // OUT that cannot be written is found before any work.
    out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s -o %s %s", w, dir,
                    tu_in_dir("one.csv"));
    cr_assert(strstr(out, "not a regular file"), "%s", out);
    free(out);
}

Test(predict_cli, generator_has_nothing_to_predict)
{
    FILE *f = fopen(tu_in_dir("two.csv"), "w");
    fputs("0.5,0.5\n", f);
    fclose(f);
    char *out = tu_nnc_rc(1, "predict examples/gan_ring.nn --weights %s %s", tu_in_dir("g.st"),
                       tu_in_dir("two.csv"));
    cr_assert(strstr(out, "nnc sample"), "%s", out);
    free(out);
}

// normalize(x) needs the training split's statistics: CSV rows of raw
// measurements are normalized as the data are, and classified by name.
Test(predict_cli, flowers_csv_normalized_as_the_data)
{
    char w[512];
    snprintf(w, sizeof w, "%s", tu_in_dir("fl.st"));
    free(tu_nnc_rc(0, "train examples/flowers.nn -q --set save=%s", w));
    FILE *f = fopen(tu_in_dir("fl.csv"), "w");
    fputs("sepal_length,sepal_width,petal_length,petal_width\n"
          "7.7,3.0,5.5,1.8\n5.1,3.4,1.5,0.2\n7.0,2.5,5.2,1.9\n5.0,3.5,1.4,0.3\n", f);
    fclose(f);
    char *out = tu_nnc_rc(0, "predict examples/flowers.nn --weights %s %s", w, tu_in_dir("fl.csv"));
    char *l[8];
    cr_assert_eq(lines(out, l, 8), 5, "%s", out);
    cr_assert(!strncmp(l[0], "class,", 6), "%s", l[0]);
    cr_assert(!strncmp(l[1], "virginica,", 10) && !strncmp(l[2], "setosa,", 7) &&
              !strncmp(l[3], "virginica,", 10) && !strncmp(l[4], "setosa,", 7), "%s\n%s\n%s\n%s",
              l[1], l[2], l[3], l[4]);
    free(out);
    // The data's own file: its label column of names is dropped; most rows
    // get their own species back.
    out = tu_nnc_rc(0, "predict examples/flowers.nn --weights %s examples/data/flowers.csv", w);
    char *data = tu_read_file("examples/data/flowers.csv");
    static char *p[400], *d[400];
    cr_assert_eq(lines(out, p, 400), 301);
    cr_assert_eq(lines(data, d, 400), 301);
    int right = 0;
    for (int i = 1; i <= 300; i++) {
        const char *species = strrchr(d[i], ',') + 1;
        right += !strncmp(p[i], species, strlen(species)) && p[i][strlen(species)] == ',';
    }
    cr_assert(right > 240, "%d of 300 right", right);
    free(data);
    free(out);
    // A column of names that is not the label is still an error.
    f = fopen(tu_in_dir("names.csv"), "w");
    fputs("1,2,3,4\n5,6,seven,8\n", f);
    fclose(f);
    out = tu_nnc_rc(1, "predict examples/flowers.nn --weights %s %s", w, tu_in_dir("names.csv"));
    cr_assert(strstr(out, "names.csv:2: 'seven' is not a number"), "%s", out);
    free(out);
}

// A FIFO as INPUT with no writer reads as empty (it used to wait for a
// writer forever); a directory, FIFO or device at `nnc build -o` is refused before
// the build (the linker used to fail on it or write into it).
Test(predict_cli, special_files_refused)
{
    char w[512];
    snprintf(w, sizeof w, "%s", tu_in_dir("xf.st"));
    free(tu_nnc_rc(0, "train examples/xor.nn -q --set save=%s", w));
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s", tu_in_dir("in.fifo"));
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    char *out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s %s", w, fifo);
    cr_assert(strstr(out, "no rows") || strstr(out, "no samples"), "%s", out);
    free(out);
    out = tu_nnc_rc(1, "build examples/xor.nn -o %s", fifo);
    cr_assert(strstr(out, "refusing to replace"), "%s", out);
    free(out);
    struct stat st;
    cr_assert(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO is kept");
    out = tu_nnc_rc(1, "build examples/xor.nn -o %s", tu_in_dir(""));
    cr_assert(strstr(out, "a directory"), "%s", out);
    free(out);
    // INPUT a directory: said so, not "no rows of numbers".
    out = tu_nnc_rc(1, "predict examples/xor.nn --weights %s %s", w, tu_in_dir(""));
    cr_assert(strstr(out, "is a directory") && !strstr(out, "no rows"), "%s", out);
    free(out);
}
