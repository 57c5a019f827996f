// Sequence data and the layers around it, through the nnc binary: text()
// windows train a small language model in seconds and report bits per
// character against the unigram baseline; `nnc sample` prints words that
// depend only on the seed; clip = c scales gradients by min(1, c / norm), as
// computed by hand; the embedding's gradient matches finite differences
// (checkpoints before and after one sgd step, losses from --metrics); and
// bad text sources and sample options get diagnostics, not crashes.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "testutil.h"

static char dir[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/nnc_seq_%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(chdir(dir), 0);
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(chdir("/"), 0);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(sequence_cli, .init = setup, .fini = teardown, .timeout = 240);

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "wb");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

// A word list and a small next-character model over windows of 4 bytes.
static const char words[] = "apple\nbanana\ncherry\ndate\nelder\nfig\ngrape\nhazel\nkiwi\nlemon\n"
                            "mango\nnectar\nolive\npeach\nquince\nraisin\n";
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
    "    epochs    = 40\n"
    "    metrics   = [accuracy, loss]\n"
    "    save      = \"lm.safetensors\"\n"
    "}\n";

Test(sequence_cli, text_model_trains_and_reports_bits_per_character)
{
    write_file("words.txt", words);
    write_file("lm.nn", lm);
    char *out;
    int rc = tu_nnc_run(&out, "train lm.nn --backend interp");
    cr_assert_eq(rc, 0, "%s", out);
    const char *at = strstr(out, "val: ");
    cr_assert(at, "no bits-per-character line:\n%s", out);
    double bits, base;
    int chars;
    cr_assert_eq(sscanf(at, "val: %lf bits per character, unigram baseline %lf (%d characters)",
                        &bits, &base, &chars), 3, "%s", at);
    // 25 distinct bytes: the 24 letters used plus the newline.
    cr_assert_eq(chars, 25, "%s", out);
    cr_assert(base > 3.5 && base < 5, "unigram baseline %g", base);
    // On the training part itself the model must beat the unigram guess.
    const char *tr = strstr(out, "train loss ");
    cr_assert(tr);
    cr_assert_lt(strtod(tr + 11, NULL) / log(2.0), base, "%s", out);
    free(out);
}

Test(sequence_cli, sample_depends_only_on_the_seed)
{
    write_file("words.txt", words);
    write_file("lm.nn", lm);
    char *out, *a, *b, *c, *g1, *g2;
    cr_assert_eq(tu_nnc_run(&out, "train lm.nn -q --backend interp"), 0, "%s", out);
    free(out);
    const char *args = "sample lm.nn --weights lm.safetensors --count 12 --temperature 0.8";
    cr_assert_eq(tu_nnc_run(&a, "%s --seed 1", args), 0, "%s", a);
    cr_assert_eq(tu_nnc_run(&b, "%s --seed 1 --backend interp", args), 0, "%s", b);
    cr_assert_eq(tu_nnc_run(&c, "%s --seed 2", args), 0, "%s", c);
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
    int lines = 0;
    for (const char *p = a; *p; p++) {
        lines += *p == '\n';
        cr_assert(*p == '\n' || (*p >= 'a' && *p <= 'z'), "byte %d in\n%s", *p, a);
    }
    cr_assert_eq(lines, 12, "%s", a);
    // Temperature 0 always takes the likeliest byte: the seed does not matter.
    cr_assert_eq(tu_nnc_run(&g1, "%s --temperature 0 --seed 1", args), 0, "%s", g1);
    cr_assert_eq(tu_nnc_run(&g2, "%s --temperature 0 --seed 7", args), 0, "%s", g2);
    cr_assert_str_eq(g1, g2);
    free(a), free(b), free(c), free(g1), free(g2);
}

Test(sequence_cli, sample_refuses_bad_options_and_models)
{
    write_file("words.txt", words);
    write_file("lm.nn", lm);
    char *out;
    cr_assert_eq(tu_nnc_run(&out, "sample lm.nn --count 0 --weights w"), 2, "%s", out);
    cr_assert(strstr(out, "--count expects"), "%s", out);
    free(out);
    cr_assert_eq(tu_nnc_run(&out, "sample lm.nn --weights w --temperature -1"), 2, "%s", out);
    free(out);
    // One sample command serves generators too: their -o means nothing here.
    cr_assert_eq(tu_nnc_run(&out, "sample lm.nn --weights w -o x.png"), 2, "%s", out);
    cr_assert(strstr(out, "-o is for generators"), "%s", out);
    free(out);
    cr_assert_eq(tu_nnc_run(&out, "sample lm.nn"), 2, "%s", out);
    cr_assert(strstr(out, "needs --weights"), "%s", out);
    free(out);
    cr_assert_eq(tu_nnc_run(&out, "sample lm.nn --weights missing.safetensors"), 1, "%s", out);
    cr_assert(strstr(out, "missing.safetensors"), "%s", out);
    free(out);
    cr_assert_eq(tu_nnc_run(&out, "train --count 3 lm.nn"), 2, "%s", out);
    free(out);
    // A model that does not score the whole vocabulary can neither be
    // trained nor sampled.
    char *small = strdup(lm);
    for (char *p; (p = strstr(small, "25"));)
        p[0] = '1', p[1] = '0';
    write_file("small.nn", small);
    free(small);
    cr_assert_eq(tu_nnc_run(&out, "train small.nn -q --set epochs=1"), 1, "%s", out);
    cr_assert(strstr(out, "outside 0..9"), "%s", out);
    free(out);
    cr_assert_eq(tu_nnc_run(&out, "sample small.nn --weights lm.safetensors"), 1, "%s", out);
    cr_assert(strstr(out, "outside 0..9"), "%s", out);
    free(out);
}

Test(sequence_cli, bad_text_sources_are_diagnosed)
{
    write_file("words.txt", words);
    write_file("short.txt", "abc");
    static const struct {
        const char *call, *msg;
    } cases[] = {
        {"text(\"words.txt\")", "needs seq = N"},
        {"text(\"words.txt\", seq = 0)", "seq = 1..65536"},
        {"text(\"words.txt\", seq = 2.5)", "seq = 1..65536"},
        {"text(\"words.txt\", seq = 4, step = 2)", "text() takes"},
        {"text(\"words.txt\", seq = 4, from = 0.5, to = 0.5)", "must be less than"},
        {"text(\"nope.txt\", seq = 4)", "nope.txt: cannot open"},
        {"text(\"short.txt\", seq = 4)", "short.txt: 3 bytes of text"},
        {"text(\"words.txt\", seq = 4, to = 0.01)", "window of seq = 4"},
        {"text(42, seq = 4)", "expected the file name"},
        {"text(\"/dev/null\", seq = 4)", "not a regular file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *src;
        cr_assert(asprintf(&src, "import std\ndata d {\n    train = %s\n}\n"
                           "model m(x: i32[N, 4]) -> f32[N, 25] {\n"
                           "    return x |> embedding(25, 2) |> flatten |> dense(25)\n}\n"
                           "train m on d {\n    loss = cross_entropy(output, label)\n"
                           "    optimizer = sgd()\n}\n", cases[i].call) > 0);
        write_file("bad.nn", src);
        free(src);
        char *out;
        int rc = tu_nnc_run(&out, "check bad.nn");
        cr_assert_eq(rc, 1, "%s: rc %d\n%s", cases[i].call, rc, out);
        cr_assert(strstr(out, cases[i].msg), "%s: wanted '%s' in\n%s", cases[i].call,
                  cases[i].msg, out);
        cr_assert(strstr(out, "bad.nn:3:"), "%s: no location in\n%s", cases[i].call, out);
        free(out);
    }
}

// One parameter, no bias: w = [0, 0], x = [3, 4], target 10. The gradient of
// (x.w - 10)^2 is [-60, -80], norm 100; clip = 1 scales it to [-0.6, -0.8],
// so sgd(lr = 1) makes w = [0.6, 0.8] and the new loss (5 - 10)^2 = 25.
// Unclipped, w = [60, 80] and the loss is (500 - 10)^2 = 240100.
static const char clip_src[] =
    "import std\n"
    "layer lin(x: f32[N, I]) -> f32[N, 1] {\n"
    "    param w: f32[I, 1] = zeros()\n"
    "    return x @ w\n"
    "}\n"
    "data d {\n    x = [[3, 4]]\n    y = [[10]]\n}\n"
    "model m(x: f32[N, 2]) -> f32[N, 1] {\n    return lin(x)\n}\n"
    "train m on d {\n"
    "    loss      = mse(output, y)\n"
    "    optimizer = sgd(lr = 1, clip = 1)\n"
    "    metrics   = [loss]\n"
    "}\n";

Test(sequence_cli, clip_scales_by_the_global_norm)
{
    write_file("clip.nn", clip_src);
    char *out;
    cr_assert_eq(tu_nnc_run(&out, "train clip.nn --metrics m.jsonl"), 0, "%s", out);
    free(out);
    char *log = tu_read_file("m.jsonl");
    cr_assert(log);
    cr_assert_float_eq(tu_jsonl_last(log, "train", "loss"), 25.0, 1e-3, "%s", log);
    free(log);
    unlink("m.jsonl");
    cr_assert_eq(tu_nnc_run(&out, "train clip.nn --set clip=0 --metrics m.jsonl"), 0, "%s", out);
    free(out);
    log = tu_read_file("m.jsonl");
    cr_assert_float_eq(tu_jsonl_last(log, "train", "loss"), 240100.0, 1.0, "%s", log);
    free(log);
    unlink("m.jsonl");
    // A clip above the norm leaves the step alone.
    cr_assert_eq(tu_nnc_run(&out, "train clip.nn --set clip=1000 --metrics m.jsonl"), 0, "%s",
                 out);
    free(out);
    log = tu_read_file("m.jsonl");
    cr_assert_float_eq(tu_jsonl_last(log, "train", "loss"), 240100.0, 1.0, "%s", log);
    free(log);
}

// The embedding's gradient against central differences of the loss. Ids
// use rows 0, 2 and 3 of a 4-row table: row 1 must get exactly no gradient.
static const char emb_src[] =
    "import std\n"
    "data d {\n"
    "    x = i32([[0, 2, 3], [3, 0, 0]])\n"
    "    y = [[0.5, -1, 2, 0.25, 1, -0.5], [1.5, 0, -2, 1, 0.5, 0.75]]\n"
    "}\n"
    "model m(x: i32[N, 3]) -> f32[N, 6] {\n"
    "    return x |> embedding(4, 2) |> flatten\n"
    "}\n"
    "train m on d {\n"
    "    loss      = mse(output, y) + mean(output ^ 3) * 0.1\n"
    "    optimizer = sgd()\n"
    "    metrics   = [loss]\n"
    "}\n";

static NnTensor *table(NnVars *v)
{
    for (int i = 0; i < v->count; i++)
        if (strstr(v->names[i], "embedding") && !strchr(v->names[i], '/'))
            return v->tensors[i];
    cr_assert_fail("no parameter in the checkpoint");
    return NULL;
}

static double eval_loss(const char *weights)
{
    char *out;
    unlink("e.jsonl");
    cr_assert_eq(tu_nnc_run(&out, "eval emb.nn -q --backend interp --weights %s --metrics e.jsonl",
                            weights), 0, "%s", out);
    free(out);
    char *log = tu_read_file("e.jsonl");
    cr_assert(log);
    double v = tu_jsonl_last(log, "train", "loss");
    free(log);
    return v;
}

Test(sequence_cli, embedding_gradient_matches_finite_differences)
{
    write_file("emb.nn", emb_src);
    char *out;
    cr_assert_eq(tu_nnc_run(&out, "train emb.nn -q --backend interp --set lr=0 --set "
                            "save=w0.safetensors"), 0, "%s", out);
    free(out);
    cr_assert_eq(tu_nnc_run(&out, "train emb.nn -q --backend interp --set lr=1 --set "
                            "save=w1.safetensors"), 0, "%s", out);
    free(out);
    NnVars v0, v1;
    NnrtMeta meta;
    nnrt_meta_init(&meta);
    cr_assert_eq(nnrt_safetensors_load("w0.safetensors", &v0, &meta), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(nnrt_safetensors_load("w1.safetensors", &v1, NULL), NN_OK, "%s", nnrt_errmsg());
    NnTensor *w0 = table(&v0), *w1 = table(&v1);
    cr_assert_eq(w0->numel, 8);
    const double eps = 0.01;
    for (int64_t i = 0; i < w0->numel; i++) {
        // One sgd step with lr = 1 and no momentum: w1 = w0 - grad.
        double grad = (double)((float *)w0->data)[i] - ((float *)w1->data)[i];
        float keep = ((float *)w0->data)[i];
        double l[2];
        for (int s = 0; s < 2; s++) {
            ((float *)w0->data)[i] = keep + (float)(s ? -eps : eps);
            cr_assert_eq(nnrt_safetensors_save("wp.safetensors", &v0, &meta), NN_OK);
            l[s] = eval_loss("wp.safetensors");
        }
        ((float *)w0->data)[i] = keep;
        double fd = (l[0] - l[1]) / (2 * eps);
        cr_assert(fabs(fd - grad) <= 2e-3 + 1e-2 * fabs(grad), "w[%lld]: autodiff %g, finite "
                  "differences %g", (long long)i, grad, fd);
        if (i / 2 == 1)
            cr_assert_eq(grad, 0.0, "row 1 is never looked up, yet w[%lld] moved", (long long)i);
    }
    nnrt_vars_fini(&v0);
    nnrt_vars_fini(&v1);
    nnrt_meta_fini(&meta);
}

// The layer's shapes: [N, T] ids give [N, T, dim], checked against a declared
// result, and ids must be i32 of rank 2.
Test(sequence_cli, embedding_shapes)
{
    char *src, *out;
    cr_assert(asprintf(&src, "%s", emb_src) > 0);
    write_file("ok.nn", src);
    cr_assert_eq(tu_nnc_run(&out, "check ok.nn"), 0, "%s", out);
    free(out);
    char *p = strstr(src, "-> f32[N, 6]");
    memcpy(p, "-> f32[N, 7]", 12);
    write_file("wrong.nn", src);
    cr_assert_eq(tu_nnc_run(&out, "check wrong.nn"), 1, "%s", out);
    cr_assert(strstr(out, "must be f32[N, 7], got f32[N, 6]"), "%s", out);
    free(out);
    free(src);
    write_file("f.nn", "import std\nmodel m(x: f32[N, 3]) -> f32[N, 3, 2] {\n"
                       "    return embedding(x, 4, 2)\n}\n"
                       "data d {\n    x = [[0, 1, 2]]\n    y = [[1]]\n}\n"
                       "train m on d {\n    loss = mean(output)\n    optimizer = sgd()\n}\n");
    cr_assert_eq(tu_nnc_run(&out, "check f.nn"), 1, "%s", out);
    cr_assert(strstr(out, "argument 'ids' of 'embedding' must be i32[N, T], got f32[N, 3]"), "%s",
              out);
    free(out);
}

// A recurrent model over 64 random sequences of 5 steps; BODY is the model's body.
static double rnn_loss(const char *name, const char *body)
{
    char *src, *out, file[64], log[64];
    snprintf(file, sizeof file, "%s.nn", name);
    snprintf(log, sizeof log, "%s.jsonl", name);
    cr_assert(asprintf(&src, "import std\n"
                       "data d {\n    x = uniform([64, 5, 3], -1, 1)\n"
                       "    y = sum(x, axis = 2)[:, 0:1]\n}\n"
                       "model m(x: f32[N, 5, 3]) -> f32[N, 1] {\n%s\n}\n"
                       "train m on d {\n    loss = mse(output, y)\n"
                       "    optimizer = adam(lr = 0.01)\n    epochs = 2\n    batch = 16\n}\n",
                       body) > 0);
    write_file(file, src);
    free(src);
    cr_assert_eq(tu_nnc_run(&out, "train %s -q --backend interp --metrics %s", file, log), 0,
                 "%s", out);
    free(out);
    char *text = tu_read_file(log);
    cr_assert(text);
    double v = tu_jsonl_last(text, "train", "loss");
    free(text);
    return v;
}

// The last state of a whole run equals a run over the first steps continued
// from its state through h0 (one bound layer, so the weights are the same),
// and the *_last layers equal the last step of the sequence versions.
Test(sequence_cli, recurrent_last_state_and_initial_state)
{
    static const char *const layers[] = {"rnn", "gru"};
    for (int i = 0; i < 2; i++) {
        char *whole, *parts, *seq;
        const char *l = layers[i];
        cr_assert(asprintf(&whole, "    r = %s_last(units: 8)\n    return r(x) |> dense(1)", l) > 0);
        cr_assert(asprintf(&parts, "    r = %s_last(units: 8)\n    h = r(x[:, 0:3])\n"
                           "    return r(x[:, 3:5], h0 = h) |> dense(1)", l) > 0);
        // Bound as `r`, both forms name their weights m.r.*: the same start.
        cr_assert(asprintf(&seq, "    r = %s(units: 8)\n    h = r(x)\n"
                           "    return h[:, -1] |> dense(1)", l) > 0);
        double a = rnn_loss("whole", whole), b = rnn_loss("parts", parts);
        double c = rnn_loss("seq", seq);
        cr_assert(isfinite(a) && a > 0, "%s: loss %g", l, a);
        cr_assert_float_eq(a, b, 1e-5 * a, "%s: whole %g, continued %g", l, a, b);
        cr_assert_float_eq(a, c, 1e-5 * a, "%s: last state %g, last of sequence %g", l, a, c);
        free(whole), free(parts), free(seq);
    }
    // Default initial states are zeros: giving them explicitly changes nothing,
    // and a nonzero one changes the result.
    double z = rnn_loss("lz", "    return lstm_last(x, 8) |> dense(1)");
    double e = rnn_loss("le", "    return lstm_last(x, 8, h0 = zeros([N, 8]), c0 = 0) |> dense(1)");
    double o = rnn_loss("lo", "    return lstm_last(x, 8, c0 = ones([N, 8])) |> dense(1)");
    cr_assert_float_eq(z, e, 1e-6 * z, "lstm: %g vs %g", z, e);
    cr_assert(fabs(z - o) > 1e-4, "lstm: c0 = 1 gave the same loss %g", o);
}

// Evaluating a recurrent classifier gives the same loss on the JIT as on the
// interpreter. The zero initial state is a constant that only the first
// step's fused matmul reads; the JIT once never wrote it, so evaluation (not
// training, where the backward pass also read it) used whatever memory held.
// The last training loss of `nnc train file` on the interpreter (loss[0])
// and the JIT (loss[1]), from their metrics logs.
static void train_loss_both_backends(const char *file, double loss[2])
{
    static const char *const be[2] = {"interp", "jit"};
    for (int i = 0; i < 2; i++) {
        char *out, log[32];
        snprintf(log, sizeof log, "%s.jsonl", be[i]);
        cr_assert_eq(tu_nnc_run(&out, "train %s -q --backend %s --metrics %s", file, be[i], log),
                     0, "%s", out);
        free(out);
        char *text = tu_read_file(log);
        cr_assert(text);
        loss[i] = tu_jsonl_last(text, "train", "loss");
        free(text);
    }
}

Test(sequence_cli, recurrent_evaluation_agrees_across_backends)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    write_file("ev.nn", "import std\n"
                        "data d {\n    x = uniform([64, 4, 5], 0, 1)\n"
                        "    label = i32(uniform([64], 0, 3))\n}\n"
                        "model m(x: f32[N, 4, 5]) -> f32[N, 3] {\n"
                        "    return x |> gru_last(8) |> dense(3)\n}\n"
                        "train m on d {\n    loss = cross_entropy(output, label)\n"
                        "    optimizer = adam()\n    batch = 16\n    epochs = 0\n"
                        "    metrics = [accuracy]\n}\n");
    double loss[2];
    train_loss_both_backends("ev.nn", loss);
    cr_assert(isfinite(loss[0]) && loss[0] > 0, "interp loss %g", loss[0]);
    cr_assert_float_eq(loss[1], loss[0], 1e-5 * loss[0], "jit %g, interp %g", loss[1], loss[0]);
}

// rnn, lstm and gru return [N, T, units]; the _last forms [N, units].
Test(sequence_cli, recurrent_shapes)
{
    static const struct {
        const char *expr, *type;
        bool ok;
    } cases[] = {
        {"gru(x, 8)", "f32[N, 5, 8]", true},   {"lstm(x, 6)", "f32[N, 5, 6]", true},
        {"rnn(x, 4)", "f32[N, 5, 4]", true},   {"gru_last(x, 8)", "f32[N, 8]", true},
        {"lstm_last(x, 6)", "f32[N, 6]", true}, {"rnn_last(x, 4)", "f32[N, 4]", true},
        {"gru(x, 8)", "f32[N, 8]", false},      {"lstm_last(x, 6)", "f32[N, 5, 6]", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *src, *out;
        cr_assert(asprintf(&src, "import std\ndata d {\n    x = uniform([4, 5, 3], -1, 1)\n"
                           "    y = [[1], [0], [1], [0]]\n}\n"
                           "model m(x: f32[N, 5, 3]) -> %s {\n    return %s\n}\n"
                           "train m on d {\n    loss = mean(output)\n    optimizer = sgd()\n}\n",
                           cases[i].type, cases[i].expr) > 0);
        write_file("shape.nn", src);
        free(src);
        int rc = tu_nnc_run(&out, "check shape.nn");
        cr_assert_eq(rc, cases[i].ok ? 0 : 1, "%s -> %s:\n%s", cases[i].expr, cases[i].type, out);
        if (!cases[i].ok)
            cr_assert(strstr(out, "the result of 'm' must be"), "%s", out);
        free(out);
    }
}

// A label or id out of range inside a loop body, at step 2 of 4 (sample 2
// holds it; evaluation reads the batch in order): both backends stop with the
// same message and exit 1. The JIT once never read a body's checks, so it
// went on with a zero row; and it read the bad index after the step, from a
// buffer the planner had reused by then (a garbage id in the message).
Test(sequence_cli, checks_inside_loop_bodies_are_reported_by_both_backends)
{
    static const struct {
        const char *step, *want;
    } cases[] = {
        {"h = tanh(h + gather(w, ids[:, t]))", "gather: id 9 at 2 is outside [0, 4)"},
        {"h = tanh(h + onehot(ids[:, t], 4) @ w)", "onehot: label 9 at 2 is outside [0, 4)"},
        // Nested loops unroll the outer one: the gather of the computed slice
        // ids[:, t] runs in the step itself, its indices in reused memory.
        {"for k in 0..2 {\n            h = tanh(h + gather(w, ids[:, t]) * 0.5)\n        }",
         "gather: id 9 at 2 is outside [0, 4)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *src;
        cr_assert(asprintf(&src,
                           "import std\n"
                           "data d {\n"
                           "    x = i32([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 9, 1], [3, 0, 1, 2]])\n"
                           "    label = i32([0, 1, 0, 1])\n}\n"
                           "layer seq(ids: i32[N, T], vocab: int, dim: int) -> f32[N, dim] {\n"
                           "    param w: f32[vocab, dim] = normal(std = 0.1)\n"
                           "    h = zeros([N, dim])\n"
                           "    for t in 0..T {\n        %s\n    }\n"
                           "    return h\n}\n"
                           "model m(x: i32[N, 4]) -> f32[N, 2] {\n"
                           "    return x |> seq(4, 3) |> dense(2)\n}\n"
                           "train m on d {\n    loss = cross_entropy(output, label)\n"
                           "    optimizer = sgd()\n    batch = 4\n    epochs = 0\n}\n",
                           cases[i].step) > 0);
        write_file("bad_id.nn", src);
        free(src);
        char *out[2];
        static const char *const be[2] = {"interp", "jit"};
        for (int b = 0; b < 2; b++) {
#ifndef NN_WITH_LLVM
            if (b == 1) {
                out[1] = strdup(out[0]);
                continue;
            }
#endif
            int rc = tu_nnc_run(&out[b], "train bad_id.nn -q --backend %s", be[b]);
            cr_assert_eq(rc, 1, "case %zu, %s: exit %d:\n%s", i, be[b], rc, out[b]);
            cr_assert(strstr(out[b], cases[i].want), "case %zu, %s:\n%s", i, be[b], out[b]);
        }
        cr_assert_str_eq(out[1], out[0]);
        free(out[0]);
        free(out[1]);
    }
}

// Loop results the JIT writes in place (a new carry into the other of its
// two buffers, a stacked value into its row) next to ones it copies (a carry
// taking another carry's old value, the stack of a carry): training losses
// agree with the interpreter's after two epochs.
Test(sequence_cli, carries_swapped_and_copied_agree_across_backends)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    write_file("sw.nn", "import std\n"
                        "data d {\n    x = uniform([32, 5, 4], -1, 1)\n"
                        "    label = i32(uniform([32], 0, 3))\n}\n"
                        "layer mix(xs: f32[N, T, I]) -> f32[N, T, I] {\n"
                        "    param w: f32[I, I] = orthogonal()\n"
                        "    h = zeros([N, I])\n    prev = zeros([N, I])\n    old = zeros([N, I])\n"
                        "    for t in 0..T {\n"
                        "        old = prev\n        prev = h\n"
                        "        h = tanh(xs[:, t] + h @ w + 0.5 * old)\n"
                        "        out[:, t] = h * prev\n    }\n"
                        "    return out\n}\n"
                        "model m(x: f32[N, 5, 4]) -> f32[N, 3] {\n"
                        "    return x |> mix |> flatten |> dense(3)\n}\n"
                        "train m on d {\n    loss = cross_entropy(output, label)\n"
                        "    optimizer = adam(lr = 0.01)\n    batch = 8\n    epochs = 2\n"
                        "    metrics = [loss]\n}\n");
    double loss[2];
    train_loss_both_backends("sw.nn", loss);
    cr_assert(isfinite(loss[0]) && loss[0] > 0, "interp loss %g", loss[0]);
    cr_assert_float_eq(loss[1], loss[0], 1e-4 * loss[0], "jit %g, interp %g", loss[1], loss[0]);
}
