// One Adam step of nnc against a straightforward f32 implementation of the
// stdlib's update rule, on each backend. Compile-time arithmetic such as
// `1 - beta2` must come out as f32 computes it, or the bias correction divides
// by a slightly different number than `1 - beta2 ^ step` (about 1e-5 relative).
// The weights start at zero, so the new weights are the update itself and the
// 1e-6 tolerance applies to the update, not to a large weight.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "checkpoint.h"
#include "testutil.h"

enum { N = 4, F = 3 };
static const float xs[N][F] = {{1, 2, 3}, {0.5f, -1, 2}, {-2, 0.25f, 1}, {3, 1, -0.5f}};
static const float ts[N] = {1, -2, 0.5f, 3};

static const char script[] = "import std\n"
                             "data d {\n"
                             "    x = [[1, 2, 3], [0.5, -1, 2], [-2, 0.25, 1], [3, 1, -0.5]]\n"
                             "    y = [[1], [-2], [0.5], [3]]\n"
                             "}\n"
                             "model lin(x: f32[N, 3]) -> f32[N, 1] {\n"
                             "    param w: f32[3, 1] = zeros()\n"
                             "    param b: f32[1] = zeros()\n"
                             "    return x @ w + b\n"
                             "}\n"
                             "train lin on d {\n"
                             "    loss = mse(output, y)\n"
                             "    optimizer = adam(lr = 0.01, beta1 = 0.9, beta2 = 0.999)\n"
                             "    batch = 4\n"
                             "    epochs = 1\n"
                             "}\n";

typedef struct Adam {
    float p, m, v;
} Adam;

// Adam's first step from p = m = v = 0, in f32 as one would write it in C.
static Adam adam_step(float g)
{
    const float lr = 0.01f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, step = 1;
    Adam a = {0};
    a.m = beta1 * a.m + (1 - beta1) * g;
    a.v = beta2 * a.v + (1 - beta2) * g * g;
    float mhat = a.m / (1 - powf(beta1, step)), vhat = a.v / (1 - powf(beta2, step));
    a.p = a.p - lr * mhat / (sqrtf(vhat) + eps);
    return a;
}

static void check(const NnVars *vars, const char *name, const float *want, int n)
{
    NnTensor *t = nnrt_vars_get(vars, name);
    cr_assert(t, "checkpoint lacks '%s'", name);
    cr_assert_eq(t->dtype, NN_DT_F32);
    const float *got = t->data;
    for (int i = 0; i < n; i++)
        cr_assert(fabsf(got[i] - want[i]) <= 1e-6f * fabsf(want[i]),
                  "%s[%d]: nnc %.9g, f32 reference %.9g (relative %.2g)", name, i, got[i],
                  want[i], fabs((double)got[i] - want[i]) / fabs((double)want[i]));
}

static void one_step(const char *backend)
{
    // The loss gradient at w = b = 0, output 0: d/d out of mean((out - t)^2).
    float gw[F] = {0}, gb = 0;
    for (int i = 0; i < N; i++) {
        float d = 2 * (0 - ts[i]) / N;
        gb += d;
        for (int j = 0; j < F; j++)
            gw[j] += xs[i][j] * d;
    }
    float w[F], wm[F], wv[F];
    for (int j = 0; j < F; j++) {
        Adam a = adam_step(gw[j]);
        w[j] = a.p, wm[j] = a.m, wv[j] = a.v;
    }
    Adam b = adam_step(gb);

    char *path = tu_write_temp(".nn", script), *out = NULL;
    char ckpt[256];
    snprintf(ckpt, sizeof ckpt, "/tmp/nnc_adam_%d_%s.safetensors", (int)getpid(), backend);
    int rc = tu_nnc_run(&out, "train %s --backend %s -q --set save=%s", path, backend, ckpt);
    cr_assert_eq(rc, 0, "%s", out);
    NnVars vars;
    cr_assert_eq(nnrt_safetensors_load(ckpt, &vars, NULL), NN_OK, "%s", nnrt_errmsg());
    check(&vars, "lin.w/m", wm, F);
    check(&vars, "lin.w/v", wv, F);
    check(&vars, "lin.w", w, F);
    check(&vars, "lin.b/m", &b.m, 1);
    check(&vars, "lin.b/v", &b.v, 1);
    check(&vars, "lin.b", &b.p, 1);
    nnrt_vars_fini(&vars);
    unlink(ckpt);
    unlink(path);
    free(path);
    free(out);
}

Test(adam_step, interp_matches_f32_reference) { one_step("interp"); }

Test(adam_step, jit_matches_f32_reference)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    one_step("jit");
}
