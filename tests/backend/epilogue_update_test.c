// The optimizer's update in the weight-gradient product's epilogue
// (nn_fuse_multi takes the product into the update's multi-output kernel,
// backend/llvm/lower.c computes the members on each finished tile): training
// with it gives the same weights and optimizer moments, bit for bit, as the
// update in kernels of its own (NN_JIT_NOEPI=1) and as one kernel per fused
// node (NN_JIT_NOMULTI=1), on 2 threads, for an MLP under Adam (widths that
// leave masked panel edges, batches that leave short tiles, and a batch of
// 300 rows, a K longer than the old 256-row blocks), momentum SGD, a small
// CNN and a GRU; and the fused kernels are really there (NN_JIT_PROFILE
// lists fewer kernels). The epilogue finished under the next tile's FMAs
// (session 9) gives the same bits as the one run at once and as other
// chunkings of it, in f32 and f64.
#define _GNU_SOURCE // asprintf
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "testutil.h"

#ifndef NN_WITH_LLVM
#define NEED_LLVM() cr_skip_test("built without LLVM")
#else
#define NEED_LLVM() (void)0
#endif

// Trains script (a temp file) under env: NULL, one variable set to 1
// ("NN_JIT_NOEPI"), or space-separated NAME=VALUE settings; 2 threads, the
// given extra options. Returns the checkpoint's path (malloc'd) and, in
// *out, nnc's output.
static char *train(const char *script, const char *env, const char *opts, const char *tag,
                   char **out)
{
    static int serial;
    char *ckpt = NULL;
    cr_assert(asprintf(&ckpt, "/tmp/nnc_epi_%d_%s_%d.safetensors", (int)getpid(), tag,
                       serial++) > 0);
    char names[8][64];
    int nset = 0;
    if (env) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", env);
        for (char *save, *t = strtok_r(buf, " ", &save); t && nset < 8;
             t = strtok_r(NULL, " ", &save)) {
            char *eq = strchr(t, '=');
            if (eq)
                *eq = 0;
            snprintf(names[nset++], sizeof names[0], "%s", t);
            setenv(t, eq ? eq + 1 : "1", 1);
        }
    }
    setenv("NN_JIT_PROFILE", "1", 1);
    int rc = tu_nnc_run(out, "train %s --backend jit --threads 2 -q --set save=%s %s", script,
                        ckpt, opts);
    unsetenv("NN_JIT_PROFILE");
    for (int i = 0; i < nset; i++)
        unsetenv(names[i]);
    cr_assert_eq(rc, 0, "%s", *out);
    return ckpt;
}

// Every tensor of checkpoint a equals b's of the same name, bit for bit;
// returns how many there are.
static int same_vars(const char *a, const char *b, const char *what)
{
    NnVars va, vb;
    cr_assert_eq(nnrt_safetensors_load(a, &va, NULL), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(nnrt_safetensors_load(b, &vb, NULL), NN_OK, "%s", nnrt_errmsg());
    cr_expect_eq(va.count, vb.count, "%s: %d vs %d tensors", what, va.count, vb.count);
    for (int k = 0; k < va.count; k++) {
        const NnTensor *x = va.tensors[k], *y = nnrt_vars_get(&vb, va.names[k]);
        cr_assert(y, "%s: '%s' missing", what, va.names[k]);
        size_t n = nnrt_tensor_nbytes(x);
        cr_assert_eq(n, nnrt_tensor_nbytes(y), "%s: '%s' sizes differ", what, va.names[k]);
        if (memcmp(x->data, y->data, n) == 0)
            continue;
        const float *fx = x->data, *fy = y->data;
        size_t i = 0;
        while (x->dtype == NN_DT_F32 && i + 1 < n / 4 && fx[i] == fy[i])
            i++;
        cr_expect_fail("%s: '%s' differs (first at element %zu: %.9g vs %.9g)", what,
                       va.names[k], i, x->dtype == NN_DT_F32 ? (double)fx[i] : 0.0,
                       x->dtype == NN_DT_F32 ? (double)fy[i] : 0.0);
    }
    int n = va.count;
    nnrt_vars_fini(&va);
    nnrt_vars_fini(&vb);
    return n;
}

static int kernels(const char *profile)
{
    int n = 0;
    for (const char *p = profile; (p = strstr(p, "jit profile: ")); p++)
        n++;
    return n;
}

// Trains script fused, with NN_JIT_NOEPI and with NN_JIT_NOMULTI, and
// compares; the fused run must have at least `fused` kernels fewer than the
// NN_JIT_NOEPI one (its products' updates), which has fewer than one kernel
// per fused node.
static void agree(const char *text, const char *opts, const char *tag, int fused)
{
    char *path = tu_write_temp(".nn", text);
    char *o0, *o1, *o2;
    char *c0 = train(path, NULL, opts, tag, &o0);
    char *c1 = train(path, "NN_JIT_NOEPI", opts, tag, &o1);
    char *c2 = train(path, "NN_JIT_NOMULTI", opts, tag, &o2);
    int k0 = kernels(o0), k1 = kernels(o1), k2 = kernels(o2);
    cr_expect_geq(k1 - k0, fused, "%s: %d kernels fused, %d with NN_JIT_NOEPI", tag, k0, k1);
    cr_expect_gt(k2, k1, "%s: %d kernels with NN_JIT_NOMULTI", tag, k2);
    cr_expect_gt(same_vars(c0, c1, "fused vs NN_JIT_NOEPI"), 0);
    same_vars(c0, c2, "fused vs NN_JIT_NOMULTI");
    unlink(c0), unlink(c1), unlink(c2), unlink(path);
    free(c0), free(c1), free(c2), free(o0), free(o1), free(o2), free(path);
}

// 50 -> 40 -> 20 -> 3: panels of 32 columns leave masked edges (40, 20),
// and no width is a multiple of the 8-row tiles' 32 columns.
static const char mlp[] = "import std\n"
                          "data d {\n"
                          "    x     = uniform([600, 50], -1, 1)\n"
                          "    label = i32(uniform([600], 0, 2.999))\n"
                          "}\n"
                          "model net(x: f32[N, 50]) -> f32[N, 3] {\n"
                          "    h = x |> dense(40) |> relu\n"
                          "    h = h |> dense(20) |> tanh\n"
                          "    return dense(h, 3)\n"
                          "}\n"
                          "train net on d {\n"
                          "    loss      = cross_entropy(output, label)\n"
                          "    optimizer = %s\n"
                          "    batch     = 37\n"
                          "    epochs    = 2\n"
                          "    seed      = 3\n"
                          "}\n";

static char *with_optimizer(const char *opt)
{
    char *s = NULL;
    cr_assert(asprintf(&s, mlp, opt) > 0);
    return s;
}

Test(epilogue_update, mlp_adam_is_bit_identical, .timeout = 120)
{
    NEED_LLVM();
    char *s = with_optimizer("adam(lr = 1e-2, weight_decay = 1e-3)");
    agree(s, "", "adam", 3); // batch 37: a short last tile, 17 steps
    // K = 300 rows (one block since A^T is packed over all of K; before,
    // two blocks of 256 with partial sums stored between them).
    agree(s, "--set batch=300", "adam300", 3);
    free(s);
}

Test(epilogue_update, mlp_momentum_sgd_is_bit_identical, .timeout = 120)
{
    NEED_LLVM();
    char *s = with_optimizer("sgd(lr = 0.05, momentum = 0.9)");
    agree(s, "", "sgd", 3);
    free(s);
}

static const char cnn[] = "import std\n"
                          "data d {\n"
                          "    x     = uniform([96, 1, 12, 12], 0, 1)\n"
                          "    label = i32(uniform([96], 0, 3.999))\n"
                          "}\n"
                          "model net(x: f32[N, 1, 12, 12]) -> f32[N, 4] {\n"
                          "    h = x |> conv2d(6, 3) |> relu |> max_pool(2)\n"
                          "    h = h |> flatten |> dense(24) |> relu\n"
                          "    return dense(h, 4)\n"
                          "}\n"
                          "train net on d {\n"
                          "    loss      = cross_entropy(output, label)\n"
                          "    optimizer = adam(lr = 1e-2)\n"
                          "    batch     = 32\n"
                          "    epochs    = 2\n"
                          "    seed      = 5\n"
                          "}\n";

// The convolution's weight gradient keeps its update apart (only 2-D
// products host one); the dense layers' products take theirs.
Test(epilogue_update, cnn_adam_is_bit_identical, .timeout = 120)
{
    NEED_LLVM();
    agree(cnn, "", "cnn", 2);
}

static const char gru[] = "import std\n"
                          "data d {\n"
                          "    x     = normal([64, 6, 5], 0, 1)\n"
                          "    label = i32(uniform([64], 0, 2.999))\n"
                          "}\n"
                          "model net(x: f32[N, 6, 5]) -> f32[N, 3] {\n"
                          "    return x |> gru_last(12) |> dense(3)\n"
                          "}\n"
                          "train net on d {\n"
                          "    loss      = cross_entropy(output, label)\n"
                          "    optimizer = adam(lr = 1e-2, clip = 1)\n"
                          "    batch     = 16\n"
                          "    epochs    = 2\n"
                          "    seed      = 7\n"
                          "}\n";

// Global-norm clipping reads every gradient before any update: the
// gradients are stored, the updates run after the norm. Whatever fuses
// must still agree.
Test(epilogue_update, gru_clipped_adam_is_bit_identical, .timeout = 120)
{
    NEED_LLVM();
    agree(gru, "", "gru", 0);
}

// The update's epilogue under the next tile's FMAs (tile_pipe in
// lower_matmul.c: a tile parked while the next one's K loop runs, a few
// of its vectors finished every few K steps, the rest after the loop when
// K is short, the kernel's last tile after all; on by default for Zen 5
// only, set with NN_MM_PIPE): the same bits as the default, as the epilogue
// run at once (NN_MM_PIPE=0), as
// two vectors per 16 K steps (NN_MM_PIPE=2), as other chunkings (one vector per
// 3 K steps: a K remainder every time; 8 vectors per step), without the
// prefetch, and as the update apart (NN_JIT_NOEPI). 100 -> 70 -> 3: 100
// rows leave a short last tile (4 of 8 rows), 70 columns a masked third
// panel, 2 threads split the panels; batch 37 is a run-time K that leaves
// most vectors for after the loop, 300 one that interleaves them all.
static const char wide[] = "import std\n"
                           "data d {\n"
                           "    x     = uniform([600, 100], -1, 1)\n"
                           "    label = i32(uniform([600], 0, 2.999))\n"
                           "}\n"
                           "model net(x: f32[N, 100]) -> f32[N, 3] {\n"
                           "    h = x |> dense(70) |> relu\n"
                           "    return dense(h, 3)\n"
                           "}\n"
                           "train net on d {\n"
                           "    loss      = cross_entropy(output, label)\n"
                           "    optimizer = %s\n"
                           "    batch     = 37\n"
                           "    epochs    = 2\n"
                           "    seed      = 11\n"
                           "}\n";

static const char *const schedules[] = {
    "NN_MM_PIPE=0",
    "NN_MM_PIPE=2",
    "NN_MM_PIPE=1 NN_MM_PIPE_K=3",
    "NN_MM_PIPE=8 NN_MM_PIPE_K=1",
    "NN_MM_PIPE=2 NN_MM_PIPE_PF=0",
    "NN_JIT_NOEPI",
};

static void schedules_agree(const char *text, const char *opts, const char *tag)
{
    char *path = tu_write_temp(".nn", text);
    char *o0;
    char *c0 = train(path, NULL, opts, tag, &o0);
    cr_expect(strstr(o0, "mm_update"), "%s: no update in a product's epilogue:\n%s", tag, o0);
    for (size_t i = 0; i < sizeof schedules / sizeof *schedules; i++) {
        char *o1, *c1 = train(path, schedules[i], opts, tag, &o1);
        char what[128];
        snprintf(what, sizeof what, "%s: default vs %s", tag, schedules[i]);
        cr_expect_gt(same_vars(c0, c1, what), 0);
        unlink(c1), free(c1), free(o1);
    }
    unlink(c0), unlink(path);
    free(c0), free(o0), free(path);
}

Test(epilogue_update, pipelined_schedules_are_bit_identical, .timeout = 240)
{
    NEED_LLVM();
    char *s = NULL;
    cr_assert(asprintf(&s, wide, "adam(lr = 1e-2, weight_decay = 1e-3)") > 0);
    schedules_agree(s, "", "pipe_adam");
    schedules_agree(s, "--set batch=300", "pipe_adam300");
    free(s);
    cr_assert(asprintf(&s, wide, "sgd(lr = 0.05, momentum = 0.9)") > 0);
    schedules_agree(s, "", "pipe_sgd");
    free(s);
}

// The same in f64: 8 lanes a vector, panels of 16 columns (70: a masked
// fifth panel); only the products and the update are f64.
static const char wide64[] = "import std\n"
                             "data d {\n"
                             "    x     = uniform([300, 100], -1, 1)\n"
                             "    label = i32(uniform([300], 0, 2.999))\n"
                             "}\n"
                             "model net(x: f32[N, 100]) -> f32[N, 3] {\n"
                             "    param w1: f64[100, 70] = glorot_uniform()\n"
                             "    param w2: f64[70, 3] = glorot_uniform()\n"
                             "    h = relu(f64(x) @ w1)\n"
                             "    return f32(h @ w2)\n"
                             "}\n"
                             "train net on d {\n"
                             "    loss      = cross_entropy(output, label)\n"
                             "    optimizer = sgd(lr = 0.05, momentum = 0.9, weight_decay = 1e-3)\n"
                             "    batch     = 45\n"
                             "    epochs    = 2\n"
                             "    seed      = 13\n"
                             "}\n";

Test(epilogue_update, pipelined_f64_is_bit_identical, .timeout = 120)
{
    NEED_LLVM();
    schedules_agree(wide64, "", "pipe_f64");
}
