// Two-player training through the nnc binary: train blocks with `step` and
// `noise`. Checks that a step changes only its own parameters, that steps run
// in declared order with their `repeat` counts, that noise is fresh on every
// run of a step and reproducible by seed, that resuming a two-step run is
// bit-identical, that progress and metrics carry each step's values, and that
// the ring GAN covers its modes (`nnc sample`), in a CI-sized run.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "testutil.h"

static void to_root(void) { cr_assert_eq(chdir(NN_SOURCE_DIR), 0); }

TestSuite(gan, .init = to_root, .timeout = 900);

static char *tmp_path(const char *suffix)
{
    static int n;
    char *p;
    cr_assert(asprintf(&p, "/tmp/nnc_gan_%d_%d%s", (int)getpid(), n++, suffix) > 0);
    unlink(p);
    return p;
}

// The checkpoint at path (the test fails when it cannot be read).
static NnVars load(const char *path)
{
    NnVars v;
    cr_assert_eq(nnrt_safetensors_load(path, &v, NULL), NN_OK, "cannot load %s", path);
    return v;
}

static float value(const NnVars *v, const char *name, int64_t i)
{
    NnTensor *t = nnrt_vars_get(v, name);
    cr_assert(t, "checkpoint lacks '%s'", name);
    cr_assert(i < t->numel);
    return ((const float *)t->data)[i];
}

static bool same_tensor(const NnVars *a, const NnVars *b, const char *name)
{
    NnTensor *x = nnrt_vars_get(a, name), *y = nnrt_vars_get(b, name);
    cr_assert(x && y, "'%s' missing", name);
    return nnrt_tensor_same_shape(x, y) &&
           memcmp(x->data, y->data, nnrt_tensor_nbytes(x)) == 0;
}

static char *train(const char *script, const char *extra, const char *save)
{
    char *out;
    int rc = tu_nnc_run(&out, "train %s --backend interp --set save=%s %s", script, save, extra);
    cr_assert_eq(rc, 0, "nnc train failed:\n%s", out);
    return out;
}

// A tiny GAN: 2-D Gaussian data, linear generator, small discriminator.
static const char tiny_gan[] =
    "import std\n"
    "data pts {\n"
    "    x = normal([64, 2], 1, 0.5)\n"
    "}\n"
    "model gen(z: f32[N, 3]) -> f32[N, 2] {\n"
    "    return dense(z, 2)\n"
    "}\n"
    "model disc(x: f32[N, 2]) -> f32[N, 1] {\n"
    "    return x |> dense(8) |> tanh |> dense(1) |> sigmoid\n"
    "}\n"
    "train gen on pts {\n"
    "    noise z: f32[N, 3] = normal()\n"
    "    step disc {\n"
    "        loss      = bce(disc(x), 1) + bce(disc(gen(z)), 0)\n"
    "        optimizer = adam(lr = 0.01)\n"
    "        repeat    = 2\n"
    "    }\n"
    "    step gen {\n"
    "        loss      = bce(disc(gen(z)), 1)\n"
    "        optimizer = adam(lr = 0.01)\n"
    "    }\n"
    "    batch  = 16\n"
    "    epochs = 2\n"
    "}\n";

// Only the discriminator's step: the generator must stay as initialized.
static const char disc_only[] =
    "import std\n"
    "data pts {\n"
    "    x = normal([64, 2], 1, 0.5)\n"
    "}\n"
    "model gen(z: f32[N, 3]) -> f32[N, 2] {\n"
    "    return dense(z, 2)\n"
    "}\n"
    "model disc(x: f32[N, 2]) -> f32[N, 1] {\n"
    "    return x |> dense(8) |> tanh |> dense(1) |> sigmoid\n"
    "}\n"
    "train gen on pts {\n"
    "    noise z: f32[N, 3] = normal()\n"
    "    step disc {\n"
    "        loss      = bce(disc(x), 1) + bce(disc(gen(z)), 0)\n"
    "        optimizer = sgd(lr = 0.1)\n"
    "    }\n"
    "    batch = 16\n"
    "}\n";

Test(gan, step_changes_only_its_own_parameters)
{
    char *s = tu_write_temp(".nn", disc_only);
    char *a = tmp_path(".safetensors"), *b = tmp_path(".safetensors");
    free(train(s, "--set epochs=1", a));
    free(train(s, "--set epochs=3", b));
    NnVars va = load(a), vb = load(b);
    // The generator is never updated: bit-identical after 1 and 3 epochs
    // (both are its initialization); the discriminator moved.
    cr_assert(same_tensor(&va, &vb, "gen.dense1.w"));
    cr_assert(same_tensor(&va, &vb, "gen.dense1.b"));
    cr_assert(!same_tensor(&va, &vb, "disc.dense1.w"));
    cr_assert(!same_tensor(&va, &vb, "disc.dense2.b"));
    // Only the discriminator's step has optimizer state and a counter, under
    // the step's name: 3 epochs of 4 batches.
    cr_assert(nnrt_vars_get(&vb, "disc/disc.dense1.w/v") != NULL);
    cr_assert(nnrt_vars_get(&vb, "gen/gen.dense1.w/v") == NULL);
    cr_assert(nnrt_vars_get(&vb, "gen/step") == NULL);
    cr_assert_eq(value(&vb, "disc/step", 0), 12);
    nnrt_vars_fini(&va);
    nnrt_vars_fini(&vb);
    unlink(a);
    unlink(b);
    unlink(s);
    free(a);
    free(b);
    free(s);
}

// Steps a and b update the same weight w (both say so in params): a takes
// w -= 1 (lr 1, gradient 1), b halves it (lr 0.5, gradient w). From w = 1,
// "a three times, then b" gives (1 - 3) / 2 = -1; "b, then a three times"
// gives 0.5 - 3 = -2.5. The results are exact in binary.
static const char order_fmt[] =
    "import std\n"
    "data ones {\n"
    "    x = [[1], [1], [1], [1]]\n"
    "}\n"
    "model m(x: f32[N, 1]) -> f32[N, 1] {\n"
    "    param w: f32[1, 1] = ones()\n"
    "    return x @ w\n"
    "}\n"
    "train m on ones {\n"
    "    %s\n"
    "    %s\n"
    "    batch = 4\n"
    "}\n";
static const char step_a[] =
    "step a { params = [m]; loss = mean(m(x)); optimizer = sgd(lr = 1); repeat = 3 }";
static const char step_b[] =
    "step b { params = [m]; loss = mean(m(x) ^ 2) / 2; optimizer = sgd(lr = 0.5) }";

static float order_result(const char *first, const char *second, float *a_steps, float *b_steps)
{
    char *text;
    cr_assert(asprintf(&text, order_fmt, first, second) > 0);
    char *s = tu_write_temp(".nn", text), *w = tmp_path(".safetensors");
    free(train(s, "--set epochs=1", w));
    NnVars v = load(w);
    float r = value(&v, "m.w", 0);
    *a_steps = value(&v, "a/step", 0);
    *b_steps = value(&v, "b/step", 0);
    nnrt_vars_fini(&v);
    unlink(w);
    unlink(s);
    free(text);
    free(w);
    free(s);
    return r;
}

Test(gan, steps_run_in_declared_order_with_repeat)
{
    float na, nb;
    cr_assert_eq(order_result(step_a, step_b, &na, &nb), -1.0f);
    cr_assert_eq(na, 3);
    cr_assert_eq(nb, 1);
    cr_assert_eq(order_result(step_b, step_a, &na, &nb), -2.5f);
    cr_assert_eq(na, 3);
    cr_assert_eq(nb, 1);
}

// With loss = mean(z @ w) and sgd(lr = 1), each run of the step lowers w by
// the mean of that run's noise: equal decrements would mean stale noise.
static const char noise_script[] =
    "import std\n"
    "data ones {\n"
    "    x = [[1], [1], [1], [1]]\n"
    "}\n"
    "model m(x: f32[N, 1]) -> f32[N, 1] {\n"
    "    param w: f32[1, 1] = ones()\n"
    "    return x @ w\n"
    "}\n"
    "train m on ones {\n"
    "    noise z: f32[N, 1] = normal(0, 1)\n"
    "    step m { loss = mean(m(z)); optimizer = sgd(lr = 1) }\n"
    "    batch = 4\n"
    "}\n";

static float noise_w(const char *script, int epochs, const char *seed)
{
    char *w = tmp_path(".safetensors"), extra[128];
    snprintf(extra, sizeof extra, "--set epochs=%d %s", epochs, seed);
    free(train(script, extra, w));
    NnVars v = load(w);
    float r = value(&v, "m.w", 0);
    nnrt_vars_fini(&v);
    unlink(w);
    free(w);
    return r;
}

Test(gan, noise_is_fresh_per_step_and_reproducible)
{
    char *s = tu_write_temp(".nn", noise_script);
    float w1 = noise_w(s, 1, ""), w2 = noise_w(s, 2, ""), w3 = noise_w(s, 3, "");
    cr_assert(isfinite(w1) && isfinite(w2) && isfinite(w3));
    cr_assert_neq(1 - w1, w1 - w2, "the same noise on two runs of the step");
    cr_assert_neq(w1 - w2, w2 - w3, "the same noise on two runs of the step");
    cr_assert_eq(noise_w(s, 2, ""), w2, "not reproducible with the same seed");
    cr_assert_eq(noise_w(s, 2, "--seed 1"), w2, "the block's default seed is 1");
    cr_assert_neq(noise_w(s, 2, "--seed 7"), w2, "another seed draws the same noise");
    unlink(s);
    free(s);
}

Test(gan, resume_of_two_step_run_is_bit_identical)
{
    char *s = tu_write_temp(".nn", tiny_gan);
    char *full = tmp_path(".safetensors"), *half = tmp_path(".safetensors");
    char *resumed = tmp_path(".safetensors");
    free(train(s, "--set epochs=3", full));
    free(train(s, "--set epochs=1", half));
    char extra[512];
    snprintf(extra, sizeof extra, "--set epochs=3 --resume %s", half);
    char *out = train(s, extra, resumed);
    cr_assert(strstr(out, "resumed from"), "%s", out);
    free(out);
    NnVars a = load(full), b = load(resumed);
    cr_assert_eq(a.count, b.count);
    for (int i = 0; i < a.count; i++)
        cr_assert(same_tensor(&a, &b, a.names[i]), "'%s' differs after resuming", a.names[i]);
    // Every step's optimizer state and counter is in the checkpoint:
    // 3 epochs of 4 batches, the discriminator twice per batch.
    cr_assert_eq(value(&a, "disc/step", 0), 24);
    cr_assert_eq(value(&a, "gen/step", 0), 12);
    cr_assert(nnrt_vars_get(&a, "gen/gen.dense1.w/m") && nnrt_vars_get(&a, "disc/disc.dense2.w/v"));
    nnrt_vars_fini(&a);
    nnrt_vars_fini(&b);
    unlink(full);
    unlink(half);
    unlink(resumed);
    unlink(s);
    free(full);
    free(half);
    free(resumed);
    free(s);
}

Test(gan, progress_and_metrics_show_each_step)
{
    char *s = tu_write_temp(".nn", tiny_gan);
    char *w = tmp_path(".safetensors"), *m = tmp_path(".jsonl"), extra[512];
    snprintf(extra, sizeof extra, "--metrics %s", m);
    char *out = train(s, extra, w);
    cr_assert(strstr(out, "epoch 2/2") && strstr(out, "disc.loss ") && strstr(out, "gen.loss ") &&
              strstr(out, "disc.real ") && strstr(out, "disc.fake "), "%s", out);
    char *log = tu_read_file(m);
    cr_assert(log);
    const char *keys[] = {"loss", "disc.loss", "gen.loss", "disc.real", "disc.fake"};
    for (int i = 0; i < 5; i++) {
        double v = tu_jsonl_last(log, "train", keys[i]);
        cr_assert(isfinite(v), "no %s in %s", keys[i], log);
    }
    double real = tu_jsonl_last(log, "train", "disc.real");
    double fake = tu_jsonl_last(log, "train", "disc.fake");
    cr_assert(real > 0 && real < 1 && fake > 0 && fake < 1, "%s", log); // sigmoid outputs
    free(log);
    free(out);
    unlink(w);
    unlink(m);
    unlink(s);
    free(w);
    free(m);
    free(s);
}

// Why the ring GAN used to end differently on the two backends: not a JIT
// numerics bug. Both steps of the tiny GAN (noise, sigmoid, bce, Adam, a
// repeated step), trained on the default backend (the JIT where built) and on
// the interpreter from the same seed, leave every parameter and Adam moment
// within 1e-5 of the tensor's largest value (measured: below 1e-6; a wrong
// kernel, noise stream or update shows as 1e-3 or more). The tiny GAN is
// smooth (tanh, no ReLU): in a ReLU network a pre-activation that rounding
// puts on the other side of 0 changes a gradient by a whole sample's share
// (the ring example's backends part by 7e-3 within ten steps that way, and a
// 1-ulp change of one weight on either backend does the same), which over
// thousands of steps makes a GAN's final score a matter of the recipe across
// seeds, not of the backend.
Test(gan, jit_steps_track_the_interpreter)
{
    char *s = tu_write_temp(".nn", tiny_gan), *out;
    char *wi = tmp_path(".safetensors"), *wj = tmp_path(".safetensors");
    int rc = tu_nnc_run(&out, "train %s --backend interp -q --set save=%s", s, wi);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    rc = tu_nnc_run(&out, "train %s -q --set save=%s", s, wj);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    NnVars a = load(wi), b = load(wj);
    cr_assert_eq(a.count, b.count);
    int moments = 0;
    for (int k = 0; k < a.count; k++) {
        NnTensor *x = a.tensors[k], *y = nnrt_vars_get(&b, a.names[k]);
        cr_assert(y && nnrt_tensor_same_shape(x, y), "'%s' differs in shape", a.names[k]);
        double top = 0, diff = 0;
        for (int64_t i = 0; i < x->numel; i++) {
            double u = nnrt_tensor_get(x, i), v = nnrt_tensor_get(y, i);
            top = fmax(top, fabs(u));
            diff = fmax(diff, fabs(u - v));
        }
        cr_assert_leq(diff, 1e-5 * top, "'%s': interpreter and JIT differ by %g (largest %g)",
                      a.names[k], diff, top);
        moments += strstr(a.names[k], "/m") != NULL;
    }
    cr_assert_geq(moments, 6, "both steps' Adam moments are compared");
    nnrt_vars_fini(&a);
    nnrt_vars_fini(&b);
    unlink(s);
    unlink(wi);
    unlink(wj);
    free(s);
    free(wi);
    free(wj);
}

// The ring example, CI-sized: batches of 128 instead of 256 for 50 epochs
// instead of 100 (as many steps, so the learning rate decays as in the full
// run; half the samples and compute), the same targets (8 of 8 modes, at least
// 80% high-quality samples), checked from `nnc sample`'s report; the scatter
// plot must be a PNG. It trains on the default backend (the JIT where built),
// whose result the README reports: 91.9% on this build, 92.1% on the
// interpreter. GAN training amplifies rounding (see the test above), so a host
// with another vector width follows another trajectory; the decaying
// learning rate keeps every trajectory tried above the target (86-92% over
// seeds 1-4 of the full run).
#define RING_EPOCHS 50

Test(gan, ring_covers_all_modes, .timeout = 900)
{
    char *w = tmp_path(".safetensors"), *png = tmp_path(".png"), extra[64];
    snprintf(extra, sizeof extra, "-q --set batch=128 --set epochs=%d", RING_EPOCHS);
    char *out;
    int rc = tu_nnc_run(&out, "train examples/gan_ring.nn --set save=%s %s", w, extra);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    rc = tu_nnc_run(&out, "sample examples/gan_ring.nn --weights %s -o %s", w, png);
    cr_assert_eq(rc, 0, "%s", out);
    int covered = -1, modes = -1;
    double hq = -1;
    const char *p = strstr(out, "modes covered: ");
    cr_assert(p && sscanf(p, "modes covered: %d of %d", &covered, &modes) == 2, "%s", out);
    p = strstr(out, "high-quality samples: ");
    cr_assert(p && sscanf(p, "high-quality samples: %lf%%", &hq) == 1, "%s", out);
    cr_assert_eq(modes, 8, "the ring has 8 modes:\n%s", out);
    cr_assert_eq(covered, 8, "%s", out);
    cr_assert_geq(hq, 80.0, "%s", out);
    char *img = tu_read_file(png);
    cr_assert(img && !memcmp(img, "\x89PNG", 4), "%s is no PNG", png);
    free(img);
    free(out);
    unlink(w);
    unlink(png);
    free(w);
    free(png);
}

Test(gan, sample_refuses_what_it_cannot_picture)
{
    char *out;
    // A plain classifier block has no noise to draw from.
    int rc = tu_nnc_run(&out, "sample examples/xor.nn --weights /nonexistent -o /tmp/x.png");
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, "declares no noise input"), "%s", out);
    free(out);
    rc = tu_nnc_run(&out, "sample examples/gan_ring.nn --weights W -o out.jpg");
    cr_assert_eq(rc, 2, "%s", out);
    free(out);
    rc = tu_nnc_run(&out, "sample examples/gan_ring.nn -o out.png");
    cr_assert_eq(rc, 2, "%s", out);
    free(out);
    rc = tu_nnc_run(&out, "eval examples/gan_ring.nn --weights W");
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, "has steps and no evaluation"), "%s", out);
    free(out);
}
