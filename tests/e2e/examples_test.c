// The examples train to known quality through the real command line, and the
// run-level promises hold: --seed reproducibility, checkpoints that eval reads
// back to the same test metrics, resume equal to an uninterrupted run,
// refusal of a checkpoint for another model or a damaged file, and augment
// writing a PNG. Metrics are read from --metrics JSON lines. Runs from the
// repository root; $NNC names the binary.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static void to_root(void) { cr_assert_eq(chdir(NN_SOURCE_DIR), 0); }

// The suite's timeout is the largest of its tests': Criterion 2.4 leaks its
// timeout record (LeakSanitizer fails the run) when a test asks for more.
TestSuite(examples, .init = to_root, .timeout = 900);

#define FASHION "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

// Fashion-MNIST comes from Debian's dataset-fashion-mnist package.
static void need_fashion(void)
{
    if (access(FASHION, R_OK) != 0)
        cr_skip_test("Fashion-MNIST is not installed (%s)", FASHION);
}

// A fresh path under /tmp (nothing created).
static char *tmp_path(const char *suffix)
{
    static int counter;
    char *p = NULL;
    cr_assert(asprintf(&p, "/tmp/nnc_e2e_%d_%d%s", (int)getpid(), counter++, suffix) > 0);
    unlink(p);
    return p;
}

// Trains (quietly) with extra arguments; returns the metrics file's text.
static char *train_metrics(const char *file, const char *extra)
{
    char *m = tmp_path(".jsonl");
    free(tu_nnc_rc(0, "train %s -q --metrics %s %s", file, m, extra));
    char *text = tu_read_file(m);
    cr_assert(text, "no metrics file %s", m);
    unlink(m);
    free(m);
    return text;
}

// The last line of `text` containing `key` (malloc'd), or NULL.
static char *last_line_with(const char *text, const char *key)
{
    char *best = NULL;
    for (const char *l = text; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        char *line = strndup(l, len);
        if (strstr(line, key)) {
            free(best);
            best = line;
        } else {
            free(line);
        }
        l = e ? e + 1 : NULL;
    }
    return best;
}

Test(examples, xor_learns)
{
    char *m = train_metrics("examples/xor.nn", "");
    double loss = tu_jsonl_last(m, "train", "loss");
    cr_assert(loss < 0.01, "xor final train loss %g (want < 0.01)\n%s", loss, m);
    // The first epoch is near the 0.25 of a constant 0.5 prediction.
    const char *first = strstr(m, "{\"epoch\": 1, \"split\": \"train\", \"loss\": ");
    cr_assert(first, "no epoch-1 line:\n%.500s", m);
    double l1 = strtod(first + strlen("{\"epoch\": 1, \"split\": \"train\", \"loss\": "), NULL);
    cr_assert(l1 > 0.1, "epoch 1 loss %g already small: did training run?", l1);
    free(m);
}

Test(examples, xor_learns_on_interp)
{
    char *m = train_metrics("examples/xor.nn", "--backend interp");
    double loss = tu_jsonl_last(m, "train", "loss");
    cr_assert(loss < 0.01, "xor (interp) final train loss %g\n%s", loss, m);
    free(m);
}

Test(examples, sine_beats_mean_baseline)
{
    char *m = train_metrics("examples/sine.nn", "");
    double mse = tu_jsonl_last(m, "test", "mse");
    cr_assert(mse < 0.05, "sine test mse %g (baseline 0.5, want < 0.05)\n%s", mse, m);
    cr_assert(mse > 0.005, "sine test mse %g is below the noise floor 0.01: suspicious", mse);
    free(m);
}

Test(examples, flowers_csv_classifies)
{
    char *m = train_metrics("examples/flowers.nn", "");
    double acc = tu_jsonl_last(m, "test", "accuracy");
    cr_assert(acc > 0.9, "flowers test accuracy %g (want > 0.9)\n%s", acc, m);
    const char *keys[] = {"precision", "recall", "f1"};
    for (int i = 0; i < 3; i++) {
        double v = tu_jsonl_last(m, "test", keys[i]);
        cr_assert(v > 0.8 && v <= 1.0, "flowers test %s = %g", keys[i], v);
    }
    cr_assert(!isnan(tu_jsonl_last(m, "val", "accuracy")), "no val line:\n%s", m);
    free(m);
    // The report names the classes from the CSV's string column.
    char *out = tu_nnc_rc(0, "train examples/flowers.nn --set epochs=1");
    cr_assert(strstr(out, "setosa") && strstr(out, "versicolor") && strstr(out, "virginica"),
              "class names missing from the report:\n%s", out);
    free(out);
}

// One short training per example (fashion_mlp runs in fashion_short_run; the
// recurrent examples on large data in their own tests below).
Test(examples, every_example_trains_briefly)
{
    DIR *d = opendir("examples");
    cr_assert(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".nn") || !strcmp(e->d_name, "fashion_mlp.nn") ||
            !strcmp(e->d_name, "fashion_gru.nn") || !strcmp(e->d_name, "names_lstm.nn"))
            continue;
        char *path = NULL;
        cr_assert(asprintf(&path, "examples/%s", e->d_name) > 0);
        // eval_limit keeps the image examples' val/test passes short too;
        // their checkpoints go to /tmp, not the source tree.
        char *w = tmp_path(".safetensors"), *extra = NULL;
        cr_assert(asprintf(&extra, "--set epochs=1 --set limit=512 --set eval_limit=256 "
                           "--set save=%s", w) > 0);
        char *m = train_metrics(path, extra);
        unlink(w);
        free(w);
        free(extra);
        double loss = tu_jsonl_last(m, "train", "loss");
        cr_assert(isfinite(loss), "%s: no finite train loss:\n%s", path, m);
        free(m);
        free(path);
        n++;
    }
    closedir(d);
    cr_assert_geq(n, 3);
}

Test(examples, fashion_short_run_and_eval)
{
    need_fashion();
    char *w = tmp_path(".safetensors");
    char *m = tmp_path(".jsonl");
    char *out = tu_nnc_rc(0, "train examples/fashion_mlp.nn --set epochs=1 --set limit=6000 "
                          "--set save=%s --metrics %s", w, m);
    char *text = tu_read_file(m);
    cr_assert(text);
    double acc = tu_jsonl_last(text, "test", "accuracy");
    cr_assert(acc > 0.70 && acc <= 1.0, "fashion test accuracy %g (chance 0.1, want > 0.70)", acc);
    double vacc = tu_jsonl_last(text, "val", "accuracy");
    cr_assert(vacc > 0.70, "fashion val accuracy %g", vacc);
    char *train_test = last_line_with(out, "test  loss");
    cr_assert(train_test, "training printed no test line:\n%s", out);
    cr_assert(access(w, R_OK) == 0, "no checkpoint written at %s", w);

    // eval on the saved weights prints the same test line as the training.
    char *ev = tu_nnc_rc(0, "eval examples/fashion_mlp.nn --weights %s", w);
    char *eval_test = last_line_with(ev, "test  loss");
    cr_assert(eval_test, "eval printed no test line:\n%s", ev);
    cr_assert_str_eq(eval_test, train_test);
    cr_assert(strstr(ev, "Ankle boot"), "eval report lacks class names:\n%s", ev);
    unlink(w);
    unlink(m);
    free(train_test);
    free(eval_test);
    free(ev);
    free(text);
    free(out);
    free(w);
    free(m);
}

Test(examples, seed_reproducible)
{
    char *a = train_metrics("examples/sine.nn", "--set epochs=3 --seed 7");
    char *b = train_metrics("examples/sine.nn", "--set epochs=3 --seed 7");
    char *c = train_metrics("examples/sine.nn", "--set epochs=3 --seed 8");
    cr_assert_str_eq(a, b, "same seed, different metrics");
    cr_assert_str_neq(a, c, "different seeds, identical metrics:\n%s", a);
    free(a);
    free(b);
    free(c);
}

Test(examples, set_seed_reproducible)
{
    char *a = train_metrics("examples/sine.nn", "--set epochs=3 --set seed=7");
    char *b = train_metrics("examples/sine.nn", "--set epochs=3 --set seed=7");
    char *c = train_metrics("examples/sine.nn", "--set epochs=3 --set seed=8");
    cr_assert_str_eq(a, b, "same seed, different metrics");
    cr_assert_str_neq(a, c, "different seeds, identical metrics:\n%s", a);
    free(a);
    free(b);
    free(c);
}

// The interpreter is the reference: the default backend (the JIT when built
// with LLVM) must train to the same numbers within float rounding.
Test(examples, backends_agree)
{
    char *a = train_metrics("examples/sine.nn", "--set epochs=2 --backend interp");
    char *b = train_metrics("examples/sine.nn", "--set epochs=2");
    double la = tu_jsonl_last(a, "test", "mse"), lb = tu_jsonl_last(b, "test", "mse");
    cr_assert(isfinite(la) && isfinite(lb));
    cr_assert(fabs(la - lb) <= 1e-3 * la, "interp test mse %g, default backend %g", la, lb);
    free(a);
    free(b);
}

// Optimization passes preserve meaning: training with them all switched off
// reaches the same numbers (within rounding; folding may reorder arithmetic).
Test(examples, passes_do_not_change_results)
{
    char *a = train_metrics("examples/sine.nn", "--set epochs=2");
    char *b = train_metrics("examples/sine.nn", "--set epochs=2 --no-pass=fold --no-pass=simplify "
                                                "--no-pass=cse --no-pass=dce --no-pass=fuse");
    const char *keys[][2] = {{"train", "loss"}, {"test", "mse"}};
    for (int i = 0; i < 2; i++) {
        double x = tu_jsonl_last(a, keys[i][0], keys[i][1]);
        double y = tu_jsonl_last(b, keys[i][0], keys[i][1]);
        cr_assert(isfinite(x) && fabs(x - y) <= 1e-4 * fabs(x), "%s %s: %g with passes, %g without",
                  keys[i][0], keys[i][1], x, y);
    }
    free(a);
    free(b);
}

// The thread count does not change the results (kernels divide their output
// among threads; each value is computed by one thread in a fixed order).
Test(examples, threads_do_not_change_results)
{
    char *a = train_metrics("examples/sine.nn", "--set epochs=2 --threads 1");
    char *b = train_metrics("examples/sine.nn", "--set epochs=2 --threads 3");
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
}

// The final test line of a training run (JSONL), and the same weights through
// eval: equal numbers.
Test(examples, checkpoint_round_trip)
{
    char *w = tmp_path(".safetensors");
    char extra[512];
    snprintf(extra, sizeof extra, "--set epochs=3 --set save=%s", w);
    char *m = train_metrics("examples/sine.nn", extra);
    double mse = tu_jsonl_last(m, "test", "mse"), loss = tu_jsonl_last(m, "test", "loss");
    cr_assert(isfinite(mse));
    char *ev = tu_nnc_rc(0, "eval examples/sine.nn --weights %s", w);
    const char *t = strstr(ev, "test  loss ");
    cr_assert(t, "eval printed no test line:\n%s", ev);
    double eloss = strtod(t + strlen("test  loss "), NULL);
    const char *mm = strstr(t, "mse ");
    cr_assert(mm, "%s", ev);
    double emse = strtod(mm + 4, NULL);
    // eval prints 4 significant digits or decimals; the JSONL keeps 6.
    cr_assert(fabs(eloss - loss) <= 1e-4 + 1e-3 * loss, "eval loss %g, training %g", eloss, loss);
    cr_assert(fabs(emse - mse) <= 1e-4 + 1e-3 * mse, "eval mse %g, training %g", emse, mse);
    // A freshly initialized model is far worse: the weights really were loaded.
    cr_assert(mse < 0.2, "3 epochs reached test mse %g only", mse);
    unlink(w);
    free(ev);
    free(m);
    free(w);
}

// eval honours --metrics like train does ("append evaluations to FILE").
Test(examples, eval_writes_metrics)
{
    char *w = tmp_path(".safetensors");
    char extra[512];
    snprintf(extra, sizeof extra, "--set epochs=2 --set save=%s", w);
    char *m = train_metrics("examples/sine.nn", extra);
    char *em = tmp_path(".jsonl");
    free(tu_nnc_rc(0, "eval examples/sine.nn -q --weights %s --metrics %s", w, em));
    char *text = tu_read_file(em);
    cr_assert(text, "eval wrote no metrics file");
    char *a = last_line_with(m, "\"split\": \"test\"");
    char *b = last_line_with(text, "\"split\": \"test\"");
    cr_assert(a && b, "missing test lines:\n%s\n---\n%s", m, text);
    cr_assert_str_eq(b, a);
    unlink(w);
    unlink(em);
    free(a);
    free(b);
    free(text);
    free(m);
    free(em);
    free(w);
}

// The "__metadata__" value of `key` in a safetensors file, or NULL.
static char *st_meta(const char *path, const char *key)
{
    char *text = tu_read_file(path);
    if (!text)
        return NULL;
    char want[64];
    snprintf(want, sizeof want, "\"%s\":", key);
    char *p = strstr(text + 8, want);
    char *v = NULL;
    if (p) {
        p += strlen(want);
        while (*p == ' ' || *p == '"')
            p++;
        v = strndup(p, strcspn(p, "\","));
    }
    free(text);
    return v;
}

Test(examples, resume_equals_uninterrupted)
{
    char *full = train_metrics("examples/sine.nn", "--set epochs=2");
    char *w = tmp_path(".safetensors");
    char extra[512];
    snprintf(extra, sizeof extra, "--set epochs=1 --set save=%s", w);
    free(train_metrics("examples/sine.nn", extra));
    char *ep = st_meta(w, "epoch");
    cr_assert(ep && !strcmp(ep, "1"), "checkpoint epoch '%s', expected 1", ep ? ep : "(none)");
    free(ep);

    // --resume only reads W; saving back to it is the save setting's job.
    snprintf(extra, sizeof extra, "--set epochs=2 --resume %s --set save=%s", w, w);
    char *resumed = train_metrics("examples/sine.nn", extra);
    // The resumed run starts at epoch 2, and ends where the full run ended.
    cr_assert(!strstr(resumed, "\"epoch\": 1,"), "resume repeated epoch 1:\n%s", resumed);
    char *a = last_line_with(full, "\"epoch\": 2,"), *b = last_line_with(resumed, "\"epoch\": 2,");
    cr_assert(a && b, "no epoch-2 lines:\n%s\n---\n%s", full, resumed);
    cr_assert_str_eq(b, a);
    free(a);
    free(b);
    a = last_line_with(full, "\"split\": \"test\"");
    b = last_line_with(resumed, "\"split\": \"test\"");
    cr_assert(a && b);
    cr_assert_str_eq(b, a);
    ep = st_meta(w, "epoch");
    cr_assert(ep && !strcmp(ep, "2"), "checkpoint epoch after resume '%s', expected 2",
              ep ? ep : "(none)");
    free(ep);
    unlink(w);
    free(a);
    free(b);
    free(full);
    free(resumed);
    free(w);
}

// Writes examples/sine.nn with its hidden width changed to 16.
static char *narrow_sine(void)
{
    char *src = tu_read_file("examples/sine.nn");
    cr_assert(src);
    char *p = strstr(src, "dense(32)");
    cr_assert(p, "examples/sine.nn no longer has dense(32)");
    memcpy(p, "dense(16)", 9);
    char *path = tu_write_temp(".nn", src);
    free(src);
    return path;
}

Test(examples, checkpoint_for_other_model_refused)
{
    char *w = tmp_path(".safetensors");
    char extra[512];
    snprintf(extra, sizeof extra, "--set epochs=1 --set save=%s", w);
    free(train_metrics("examples/sine.nn", extra));
    char *other = narrow_sine();
    char *out = tu_nnc_rc(1, "eval %s --weights %s", other, w);
    cr_assert(strstr(out, "error:") && strstr(out, "fit.dense1.w") && strstr(out, w),
              "message should name the tensor and file:\n%s", out);
    free(out);
    out = tu_nnc_rc(1, "train %s -q --resume %s", other, w);
    cr_assert(strstr(out, "fit.dense1.w"), "resume mismatch message:\n%s", out);
    free(out);
    unlink(other);
    unlink(w);
    free(other);
    free(w);
}

// Copies the first `n` bytes of `from` into a fresh file.
static char *truncated_copy(const char *from, long n)
{
    FILE *f = fopen(from, "rb");
    cr_assert(f);
    char *buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    char *p = tmp_path(".safetensors");
    FILE *o = fopen(p, "wb");
    cr_assert(o);
    fwrite(buf, 1, (size_t)n, o);
    fclose(o);
    free(buf);
    return p;
}

static void expect_ckpt_error(const char *w, const char *what)
{
    char *out = NULL;
    int rc = tu_nnc_run(&out, "eval examples/sine.nn --weights %s", w);
    cr_assert_eq(rc, 1, "%s: exit %d\n%s", what, rc, out);
    cr_assert(strstr(out, "error:") && strstr(out, w), "%s: no error naming the file:\n%s", what,
              out);
    cr_assert(strstr(out, "byte"), "%s: no byte offset:\n%s", what, out);
    free(out);
}

Test(examples, damaged_checkpoint_refused)
{
    char *w = tmp_path(".safetensors");
    char extra[512];
    snprintf(extra, sizeof extra, "--set epochs=1 --set save=%s", w);
    free(train_metrics("examples/sine.nn", extra));
    char *text = tu_read_file(w);
    cr_assert(text);
    free(text);
    FILE *f = fopen(w, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert_gt(size, 2000);
    long cuts[] = {5, 100, size / 2, size - 1};
    for (int i = 0; i < 4; i++) {
        char *t = truncated_copy(w, cuts[i]);
        char what[64];
        snprintf(what, sizeof what, "cut at %ld of %ld bytes", cuts[i], size);
        expect_ckpt_error(t, what);
        unlink(t);
        free(t);
    }
    char *junk = tu_write_temp(".safetensors", "this is not a safetensors file at all");
    expect_ckpt_error(junk, "text file");
    unlink(junk);
    free(junk);
    unlink(w);
    free(w);
}

// A temp copy of fashion_mlp.nn that trains on the 10000 test images (a
// quarter of the I/O), with an augment list when `augment`.
static char *fashion_copy(bool augment)
{
    char *src = tu_read_file("examples/fashion_mlp.nn");
    cr_assert(src);
    char *p = strstr(src, "    save");
    cr_assert(p, "fashion_mlp.nn has no save line");
    char *text = NULL;
    cr_assert(asprintf(&text, "%.*s%s%s", (int)(p - src), src,
                       augment ? "    augment   = [random_shift(2), random_rotation(10)]\n" : "",
                       p) > 0);
    for (char *q; (q = strstr(text, "train-images")) || (q = strstr(text, "train-labels"));) {
        memcpy(q + 1, "t10k", 4); // "train-" -> "tt10k-" -> "t10k-"
        memmove(q, q + 1, strlen(q + 1) + 1);
    }
    char *nn = tu_write_temp(".nn", text);
    free(text);
    free(src);
    return nn;
}

// fashion_cnn_aug.nn normalizes its images, so black is -mean/std there.
// Pixels that a shift or rotation brings in from outside the frame must be
// that black: on the grid (scaled from the data's minimum to its maximum) the
// outermost ring of each 28x28 image is mostly black, as in the data, and
// not lined with the mid-gray bands a fill of 0 drew (64% of the ring).
Test(examples, augment_fills_with_the_black_of_normalized_images)
{
    need_fashion();
    char *pgm = tmp_path(".pgm");
    free(tu_nnc_rc(0, "augment examples/fashion_cnn_aug.nn -o %s -q", pgm));
    char *img = tu_read_file(pgm);
    cr_assert(img && !strncmp(img, "P5\n", 3), "no PGM at %s", pgm);
    int w = 0, h = 0, maxv = 0, off = 0;
    cr_assert_eq(sscanf(img + 3, "%d %d %d%n", &w, &h, &maxv, &off), 3);
    const unsigned char *px = (const unsigned char *)img + 3 + off + 1;
    cr_assert(w >= 8 * 29 && h >= 4 * 29 && maxv == 255, "grid %dx%d", w, h);
    int ring = 0, lit = 0;
    for (int k = 0; k < 32; k++) {
        int oy = (k / 8) * 29 + 1, ox = (k % 8) * 29 + 1;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++)
                if (y == 0 || y == 27 || x == 0 || x == 27) {
                    ring++;
                    lit += px[(oy + y) * w + ox + x] > 10;
                }
    }
    cr_assert_lt(lit, ring / 4, "%d of %d ring pixels are not black", lit, ring);
    free(img);
    unlink(pgm);
    free(pgm);
}

Test(examples, augment_writes_png)
{
    need_fashion();
    char *nn = fashion_copy(true);
    char *png = tmp_path(".png");
    char *out = tu_nnc_rc(0, "augment %s -o %s", nn, png);
    cr_assert(strstr(out, png), "augment did not say where it wrote:\n%s", out);
    FILE *f = fopen(png, "rb");
    cr_assert(f, "no PNG written");
    unsigned char h[24];
    cr_assert_eq(fread(h, 1, 24, f), 24u);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert_arr_eq(h, "\x89PNG\r\n\x1a\n", 8, "bad PNG signature");
    cr_assert_arr_eq(h + 12, "IHDR", 4);
    unsigned w = (unsigned)h[16] << 24 | h[17] << 16 | h[18] << 8 | h[19];
    unsigned ht = (unsigned)h[20] << 24 | h[21] << 16 | h[22] << 8 | h[23];
    // A grid of 32 28x28 images: room for all of them.
    cr_assert(w >= 28 && ht >= 28 && (long)w * ht >= 32L * 28 * 28, "PNG is %ux%u", w, ht);
    cr_assert_gt(size, 1000);
    free(out);
    // Without the augment list the same images come out unchanged: a different file.
    char *plain = fashion_copy(false);
    char *png2 = tmp_path(".png");
    free(tu_nnc_rc(0, "augment %s -o %s -q", plain, png2));
    char *a = tu_read_file(png), *b = tu_read_file(png2);
    cr_assert(a && b);
    FILE *g = fopen(png2, "rb");
    fseek(g, 0, SEEK_END);
    long size2 = ftell(g);
    fclose(g);
    cr_assert(size != size2 || memcmp(a, b, (size_t)size), "augmentation changed nothing");
    free(a);
    free(b);
    unlink(nn);
    unlink(png);
    unlink(plain);
    unlink(png2);
    free(nn);
    free(png);
    free(plain);
    free(png2);
}

// The recurrent examples on real data: one short epoch each, evaluated on the
// first samples of val and test (compiling the unrolled steps dominates).
Test(examples, fashion_gru_trains_briefly, .timeout = 900)
{
    need_fashion();
    char *w = tmp_path(".safetensors"), *extra = NULL;
    cr_assert(asprintf(&extra, "--set epochs=1 --set limit=256 --set eval_limit=1000 "
                       "--set save=%s", w) > 0);
    char *m = train_metrics("examples/fashion_gru.nn", extra);
    unlink(w);
    free(w), free(extra);
    double acc = tu_jsonl_last(m, "test", "accuracy");
    cr_assert(acc > 0.15 && acc <= 1, "fashion_gru: test accuracy %g after 256 samples:\n%s", acc,
              m);
    free(m);
}

Test(examples, names_lstm_trains_and_samples, .timeout = 900)
{
    if (access("/usr/share/dict/words", R_OK) != 0)
        cr_skip_test("the word list is not installed (Debian package wamerican)");
    char *w = tmp_path(".safetensors");
    char *extra = NULL;
    cr_assert(asprintf(&extra, "--set epochs=1 --set limit=2048 --set eval_limit=2000 "
                       "--set save=%s", w) > 0);
    char *m = train_metrics("examples/names_lstm.nn", extra);
    cr_assert(isfinite(tu_jsonl_last(m, "val", "loss")), "%s", m);
    free(m);
    char *a = tu_nnc_rc(0, "sample examples/names_lstm.nn --weights %s --count 5 --temperature 0.8 "
                     "--seed 1", w);
    char *b = tu_nnc_rc(0, "sample examples/names_lstm.nn --weights %s --count 5 --temperature 0.8 "
                     "--seed 1", w);
    cr_assert_str_eq(a, b);
    int lines = 0;
    for (const char *p = a; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 5, "%s", a);
    free(a), free(b), free(extra);
    unlink(w);
    free(w);
}
