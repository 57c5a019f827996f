// The JIT on whole programs: an MLP forward pass and training steps (autodiff
// + SGD updates) agree with the interpreter step after step; fusion really
// reduces the kernel count; a 1024^3 matmul matches a naive double-precision
// reference on sampled entries; symbolic batch sizes agree with one compile; bad
// labels and bad inputs give the interpreter's exact messages.
#include "agree.h"

#include <stdlib.h>

#include "autodiff.h"

#ifndef NN_WITH_LLVM
#define NEED_LLVM() cr_skip_test("built without LLVM")
#else
#define NEED_LLVM() (void)0
#endif

typedef struct Mlp {
    NnGraph *g;
    NnId x, labels, loss, logits;
    NnId w[4];
} Mlp;

// x[N, in] -> dense(hid) -> relu -> dense(out); cross-entropy loss with
// i32 labels; with train, SGD updates w -= 0.1 * grad.
static Mlp mlp(int64_t in, int64_t hid, int64_t out, bool train)
{
    Mlp m = {.g = nn_graph_new()};
    NnGraph *g = m.g;
    int64_t n = nn_sym_dim(g, "N");
    m.x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, in));
    m.labels = ag_input(g, "labels", NN_DT_I32, AG_SHAPE(n));
    m.w[0] = ag_param(g, "w1", AG_SHAPE(in, hid));
    m.w[1] = ag_param(g, "b1", AG_SHAPE(hid));
    m.w[2] = ag_param(g, "w2", AG_SHAPE(hid, out));
    m.w[3] = ag_param(g, "b2", AG_SHAPE(out));
    NnId h = nn_ir_matmul(g, m.x, m.w[0], false, false, ag_loc);
    h = nn_ir_binary(g, NN_OP_ADD, h, m.w[1], ag_loc);
    h = nn_ir_binary(g, NN_OP_MAX, h, nn_ir_const(g, 0, NN_DT_F32, ag_loc), ag_loc);
    m.logits = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, h, m.w[2], false, false, ag_loc), m.w[3],
                            ag_loc);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, m.logits, 2, false, ag_loc);
    NnId ins[2] = {m.logits, m.labels};
    NnAttr ta = {.axis = 1};
    NnId picked = nn_ir_add(g, NN_OP_TAKE, ins, 2, &ta, ag_loc);
    NnId ce = nn_ir_binary(g, NN_OP_SUB, lse, picked, ag_loc);
    m.loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, ce, 1, false, ag_loc);
    nn_graph_add_output(g, "loss", m.loss);
    nn_graph_add_output(g, "logits", m.logits);
    if (train) {
        NnId grads[4];
        cr_assert(nn_ad_grad(g, m.loss, m.w, 4, grads), "autodiff: %s", g->err);
        NnId lr = nn_ir_const(g, 0.1, NN_DT_F32, ag_loc);
        for (int k = 0; k < 4; k++) {
            NnId step = nn_ir_binary(g, NN_OP_MUL, grads[k], lr, ag_loc);
            nn_graph_add_update(g, m.w[k], nn_ir_binary(g, NN_OP_SUB, m.w[k], step, ag_loc));
        }
    }
    return m;
}

static void mlp_vars(NnVars *v, int64_t in, int64_t hid, int64_t out)
{
    nnrt_vars_init(v);
    nnrt_vars_put(v, "w1", ag_tensor(NN_DT_F32, AG_SHAPE(in, hid), 1, -0.1, 0.1));
    nnrt_vars_put(v, "b1", ag_tensor(NN_DT_F32, AG_SHAPE(hid), 2, -0.1, 0.1));
    nnrt_vars_put(v, "w2", ag_tensor(NN_DT_F32, AG_SHAPE(hid, out), 3, -0.3, 0.3));
    nnrt_vars_put(v, "b2", ag_tensor(NN_DT_F32, AG_SHAPE(out), 4, -0.1, 0.1));
}

Test(llvm, mlp_forward_and_train_agree)
{
    NEED_LLVM();
    for (int train = 0; train < 2; train++) {
        Mlp m = mlp(50, 37, 10, train);
        NnVars v;
        mlp_vars(&v, 50, 37, 10);
        for (int64_t n = 16; n <= 33; n += 17) {
            NnTensor *ins[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(n, 50), 5 + n, -1, 1),
                                ag_tensor(NN_DT_I32, AG_SHAPE(n), 6 + n, 0, 10)};
            char why[512] = "";
            bool ok = ag_run(m.g, ins, &v, 1e-5, why, sizeof why);
            cr_expect(ok, "mlp train=%d N=%lld: %s", train, (long long)n, why);
            nnrt_tensor_free(ins[0]);
            nnrt_tensor_free(ins[1]);
        }
        nnrt_vars_fini(&v);
        nn_graph_free(m.g);
    }
}

// Several consecutive SGD steps on each backend: the parameters stay together.
Test(llvm, training_steps_track_interp)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    Mlp m = mlp(30, 20, 5, true);
    NnVars vi, vj;
    mlp_vars(&vi, 30, 20, 5);
    mlp_vars(&vj, 30, 20, 5);
    NnExecOptions opt = {.threads = 2};
    NnExec *xi = nn_backend_interp.prepare(m.g, &opt), *xj = nn_backend_jit.prepare(m.g, &opt);
    cr_assert(xi && xj, "%s", nnrt_errmsg());
    double first = 0, last = 0;
    for (int step = 0; step < 20; step++) {
        NnTensor *ins[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(24, 30), 9, -1, 1),
                            ag_tensor(NN_DT_I32, AG_SHAPE(24), 10, 0, 5)};
        NnTensor *oi[2], *oj[2];
        cr_assert_eq(nn_backend_interp.run(xi, &vi, ins, oi), NN_OK, "%s", nnrt_errmsg());
        cr_assert_eq(nn_backend_jit.run(xj, &vj, ins, oj), NN_OK, "%s", nnrt_errmsg());
        double li = nnrt_tensor_get(oi[0], 0), lj = nnrt_tensor_get(oj[0], 0);
        cr_expect(fabs(li - lj) <= 1e-4 * fabs(li), "step %d: loss jit %g interp %g", step, lj, li);
        if (step == 0)
            first = lj;
        last = lj;
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
    }
    cr_expect(last < first * 0.9, "the JIT-trained loss should fall: %g -> %g", first, last);
    char why[256];
    for (int k = 0; k < vi.count; k++)
        cr_expect(ag_close(vj.tensors[k], vi.tensors[k], 1e-4, why, sizeof why), "%s: %s",
                  vi.names[k], why);
    nn_backend_interp.free(xi);
    nn_backend_jit.free(xj);
    nnrt_vars_fini(&vi);
    nnrt_vars_fini(&vj);
    nn_graph_free(m.g);
#endif
}

#ifdef NN_WITH_LLVM
// Kernels the JIT compiles for g after one run.
static int kernels_of(const NnGraph *g, NnTensor *const *ins)
{
    NnExecOptions opt = {.threads = 1};
    NnExec *x = nn_backend_jit.prepare(g, &opt);
    cr_assert(x, "%s", nnrt_errmsg());
    NnTensor *out[4];
    NnVars v;
    nnrt_vars_init(&v);
    cr_assert_eq(nn_backend_jit.run(x, &v, ins, out), NN_OK, "%s", nnrt_errmsg());
    int k = nn_llvm_kernel_count(x);
    nn_backend_jit.free(x);
    nnrt_vars_fini(&v);
    return k;
}
#endif

Test(llvm, fusion_makes_one_kernel_per_group)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    NnGraph *g = nn_graph_new();
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(64, 100));
    NnId b = ag_input(g, "b", NN_DT_F32, AG_SHAPE(100));
    NnId y = nn_ir_unary(g, NN_OP_EXP, x, ag_loc);
    y = nn_ir_binary(g, NN_OP_MUL, y, b, ag_loc);
    y = nn_ir_binary(g, NN_OP_ADD, y, x, ag_loc);
    y = nn_ir_unary(g, NN_OP_TANH, y, ag_loc);
    nn_graph_add_output(g, "y", y);
    NnTensor *ins[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(64, 100), 1, -1, 1),
                        ag_tensor(NN_DT_F32, AG_SHAPE(100), 2, -1, 1)};
    cr_expect_eq(kernels_of(g, ins), 1, "four elementwise ops should fuse into one kernel");
    setenv("NN_JIT_NOFUSE", "1", 1);
    int unfused = kernels_of(g, ins);
    unsetenv("NN_JIT_NOFUSE");
    cr_expect_eq(unfused, 4, "one kernel per op without fusion");
    nnrt_tensor_free(ins[0]);
    nnrt_tensor_free(ins[1]);
    nn_graph_free(g);

    // dense + bias + relu: the epilogue rides on the matmul tile (pack + mm).
    Mlp m = mlp(40, 24, 8, false);
    NnTensor *mi[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(8, 40), 3, -1, 1),
                       ag_tensor(NN_DT_I32, AG_SHAPE(8), 4, 0, 8)};
    NnExecOptions opt = {.threads = 1};
    NnExec *xj = nn_backend_jit.prepare(m.g, &opt);
    NnVars v;
    mlp_vars(&v, 40, 24, 8);
    NnTensor *out[2];
    cr_assert_eq(nn_backend_jit.run(xj, &v, mi, out), NN_OK, "%s", nnrt_errmsg());
    // 2 x (pack + fused mm) + logsumexp/take/sub/mean groups: far fewer than the 13 ops.
    cr_expect_leq(nn_llvm_kernel_count(xj), 8, "got %d kernels", nn_llvm_kernel_count(xj));
    nn_backend_jit.free(xj);
    nnrt_vars_fini(&v);
    nnrt_tensor_free(mi[0]);
    nnrt_tensor_free(mi[1]);
    nn_graph_free(m.g);
#endif
}

// A small CNN: x[N,1,10,10] -> conv 3x3 pad 1 (4) + bias + relu -> max pool 2
// -> conv 3x3 (6) + bias + relu -> avg pool 3 -> dense 5; cross-entropy, and
// with train, SGD updates of all six parameters.
typedef struct Cnn {
    NnGraph *g;
    NnId w[6];
} Cnn;

static const int64_t cnn_shapes[6][4] = {{4, 1, 3, 3}, {4, 1, 1}, {6, 4, 3, 3},
                                         {6, 1, 1},    {6, 5},    {5}};
static const int cnn_ranks[6] = {4, 3, 4, 3, 2, 1};

static Cnn cnn(bool train)
{
    Cnn m = {.g = nn_graph_new()};
    NnGraph *g = m.g;
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, 1, 10, 10));
    NnId labels = ag_input(g, "labels", NN_DT_I32, AG_SHAPE(n));
    const char *names[6] = {"c1.w", "c1.b", "c2.w", "c2.b", "d.w", "d.b"};
    for (int k = 0; k < 6; k++)
        m.w[k] = ag_param(g, names[k], ag_shape(cnn_ranks[k], cnn_shapes[k]));
    NnConv2d same = {.stride = {1, 1}, .dilation = {1, 1}, .pad = {1, 1, 1, 1}, .groups = 1};
    NnConv2d valid = {.stride = {1, 1}, .dilation = {1, 1}, .groups = 1};
    NnConv2d pool2 = {.kernel = {2, 2}, .stride = {2, 2}, .dilation = {1, 1}, .groups = 1};
    NnConv2d pool3 = {.kernel = {3, 3}, .stride = {3, 3}, .dilation = {1, 1}, .groups = 1};
    NnId zero = nn_ir_const(g, 0, NN_DT_F32, ag_loc);
    NnId h = nn_ir_binary(g, NN_OP_ADD, nn_ir_conv2d(g, x, m.w[0], &same, ag_loc), m.w[1], ag_loc);
    h = nn_ir_pool2d(g, NN_OP_MAX_POOL2D, nn_ir_binary(g, NN_OP_MAX, h, zero, ag_loc), &pool2,
                     ag_loc); // [N, 4, 5, 5]
    h = nn_ir_binary(g, NN_OP_ADD, nn_ir_conv2d(g, h, m.w[2], &valid, ag_loc), m.w[3], ag_loc);
    h = nn_ir_pool2d(g, NN_OP_AVG_POOL2D, nn_ir_binary(g, NN_OP_MAX, h, zero, ag_loc), &pool3,
                     ag_loc); // [N, 6, 1, 1]
    NnShape flat = AG_SHAPE(n, 6);
    h = nn_ir_reshape(g, h, &flat, ag_loc);
    NnId logits = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, h, m.w[4], false, false, ag_loc),
                               m.w[5], ag_loc);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, logits, 2, false, ag_loc);
    NnId ins[2] = {logits, labels};
    NnAttr ta = {.axis = 1};
    NnId ce = nn_ir_binary(g, NN_OP_SUB, lse, nn_ir_add(g, NN_OP_TAKE, ins, 2, &ta, ag_loc), ag_loc);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, ce, 1, false, ag_loc);
    cr_assert(loss >= 0, "building the CNN: %s", g->err);
    nn_graph_add_output(g, "loss", loss);
    if (train) {
        NnId grads[6];
        cr_assert(nn_ad_grad(g, loss, m.w, 6, grads), "autodiff: %s", g->err);
        NnId lr = nn_ir_const(g, 0.2, NN_DT_F32, ag_loc);
        for (int k = 0; k < 6; k++) {
            NnId step = nn_ir_binary(g, NN_OP_MUL, grads[k], lr, ag_loc);
            nn_graph_add_update(g, m.w[k], nn_ir_binary(g, NN_OP_SUB, m.w[k], step, ag_loc));
        }
    }
    return m;
}

static void cnn_vars(NnVars *v)
{
    const char *names[6] = {"c1.w", "c1.b", "c2.w", "c2.b", "d.w", "d.b"};
    nnrt_vars_init(v);
    for (int k = 0; k < 6; k++)
        nnrt_vars_put(v, names[k],
                      ag_tensor(NN_DT_F32, ag_shape(cnn_ranks[k], cnn_shapes[k]),
                                20 + (uint64_t)k, -0.5, 0.5));
}

Test(llvm, cnn_training_steps_track_interp)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    Cnn m = cnn(true);
    NnVars vi, vj;
    cnn_vars(&vi);
    cnn_vars(&vj);
    NnExecOptions opt = {.threads = 2};
    NnExec *xi = nn_backend_interp.prepare(m.g, &opt), *xj = nn_backend_jit.prepare(m.g, &opt);
    cr_assert(xi && xj, "%s", nnrt_errmsg());
    double first = 0, last = 0;
    for (int step = 0; step < 15; step++) {
        NnTensor *ins[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(16, 1, 10, 10), 9, -1, 1),
                            ag_tensor(NN_DT_I32, AG_SHAPE(16), 10, 0, 5)};
        NnTensor *oi[1], *oj[1];
        cr_assert_eq(nn_backend_interp.run(xi, &vi, ins, oi), NN_OK, "%s", nnrt_errmsg());
        cr_assert_eq(nn_backend_jit.run(xj, &vj, ins, oj), NN_OK, "%s", nnrt_errmsg());
        double li = nnrt_tensor_get(oi[0], 0), lj = nnrt_tensor_get(oj[0], 0);
        cr_expect(fabs(li - lj) <= 1e-4 * fabs(li), "step %d: loss jit %g interp %g", step, lj, li);
        if (step == 0)
            first = lj;
        last = lj;
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
    }
    cr_expect(last < first * 0.9, "the JIT-trained loss should fall: %g -> %g", first, last);
    char why[256];
    for (int k = 0; k < vi.count; k++)
        cr_expect(ag_close(vj.tensors[k], vi.tensors[k], 1e-4, why, sizeof why), "%s: %s",
                  vi.names[k], why);
    nn_backend_interp.free(xi);
    nn_backend_jit.free(xj);
    nnrt_vars_fini(&vi);
    nnrt_vars_fini(&vj);
    nn_graph_free(m.g);
#endif
}

// The CNN step's kernels: bias + relu ride on each forward convolution, the
// relu masks and SGD updates on the gradient convolutions; losing any of
// that fusion adds kernels and fails here.
#define CNN_STEP_KERNELS 37 // 69 without fusion
Test(llvm, cnn_step_kernel_count)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    Cnn m = cnn(true);
    NnVars v;
    cnn_vars(&v);
    NnTensor *ins[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(8, 1, 10, 10), 9, -1, 1),
                        ag_tensor(NN_DT_I32, AG_SHAPE(8), 10, 0, 5)};
    NnExecOptions opt = {.threads = 1};
    NnExec *x = nn_backend_jit.prepare(m.g, &opt);
    cr_assert(x, "%s", nnrt_errmsg());
    NnTensor *out[1];
    cr_assert_eq(nn_backend_jit.run(x, &v, ins, out), NN_OK, "%s", nnrt_errmsg());
    int fused = nn_llvm_kernel_count(x);
    nn_backend_jit.free(x);
    setenv("NN_JIT_NOFUSE", "1", 1);
    x = nn_backend_jit.prepare(m.g, &opt);
    cr_assert_eq(nn_backend_jit.run(x, &v, ins, out), NN_OK, "%s", nnrt_errmsg());
    int unfused = nn_llvm_kernel_count(x);
    unsetenv("NN_JIT_NOFUSE");
    nn_backend_jit.free(x);
    cr_expect_leq(fused, CNN_STEP_KERNELS, "got %d kernels (unfused %d)", fused, unfused);
    cr_expect_gt(unfused, fused + 20, "fusion should save kernels: %d vs %d", fused, unfused);
    nnrt_tensor_free(ins[0]);
    nnrt_tensor_free(ins[1]);
    nnrt_vars_fini(&v);
    nn_graph_free(m.g);
#endif
}

Test(llvm, matmul_1024_matches_naive_reference)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    const int64_t n = 1024;
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        NnGraph *g = nn_graph_new();
        NnId a = ag_input(g, "a", NN_DT_F32, AG_SHAPE(n, n));
        NnId b = ag_input(g, "b", NN_DT_F32, AG_SHAPE(n, n));
        nn_graph_add_output(g, "c", nn_ir_matmul(g, a, b, ta, tb, ag_loc));
        NnTensor *ins[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(n, n), 11, -1, 1),
                            ag_tensor(NN_DT_F32, AG_SHAPE(n, n), 12, -1, 1)};
        NnExecOptions opt = {.threads = 2};
        NnExec *x = nn_backend_jit.prepare(g, &opt);
        NnVars v;
        nnrt_vars_init(&v);
        NnTensor *out[1];
        cr_assert_eq(nn_backend_jit.run(x, &v, ins, out), NN_OK, "%s", nnrt_errmsg());
        const float *A = ins[0]->data, *B = ins[1]->data, *C = out[0]->data;
        uint64_t z = 99;
        for (int s = 0; s < 300; s++) {
            z = z * 6364136223846793005ull + 1442695040888963407ull;
            int64_t i = (int64_t)(z >> 33) % n, j = (int64_t)(z >> 13) % n;
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < n; k++) {
                double p = (double)(ta ? A[k * n + i] : A[i * n + k]) *
                           (double)(tb ? B[j * n + k] : B[k * n + j]);
                ref += p;
                mag += fabs(p);
            }
            cr_assert(fabs(C[i * n + j] - ref) <= 1e-5 * mag,
                      "ta %d tb %d C[%lld,%lld] = %g, want %g", ta, tb, (long long)i, (long long)j,
                      C[i * n + j], ref);
        }
        nn_backend_jit.free(x);
        nnrt_vars_fini(&v);
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
        nn_graph_free(g);
    }
#endif
}

#ifdef NN_WITH_LLVM
// Runs g on a backend and returns its error message (malloc'd), NULL on success.
static char *error_of(const NnBackend *be, const NnGraph *g, NnTensor *const *ins)
{
    NnExec *x = be->prepare(g, NULL);
    cr_assert(x, "%s", nnrt_errmsg());
    NnVars v;
    nnrt_vars_init(&v);
    NnTensor *out[2];
    NnStatus st = be->run(x, &v, ins, out);
    char *msg = st == NN_OK ? NULL : strdup(nnrt_errmsg());
    be->free(x);
    nnrt_vars_fini(&v);
    return msg;
}
#endif

Test(llvm, errors_match_interp)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, 5));
    NnId l = ag_input(g, "l", NN_DT_I32, AG_SHAPE(n));
    NnId ins[2] = {x, l};
    NnAttr ta = {.axis = 1};
    nn_graph_add_output(g, "t", nn_ir_add(g, NN_OP_TAKE, ins, 2, &ta, ag_loc));
    NnAttr oa = {.depth = 5, .dtype = NN_DT_F32};
    nn_graph_add_output(g, "o", nn_ir_add(g, NN_OP_ONEHOT, &l, 1, &oa, ag_loc));
    NnTensor *t[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(4, 5), 1, -1, 1),
                      ag_tensor(NN_DT_I32, AG_SHAPE(4), 2, 0, 5)};
    nnrt_tensor_set(t[1], 2, 7);
    char *mi = error_of(&nn_backend_interp, g, t), *mj = error_of(&nn_backend_jit, g, t);
    cr_assert(mi && mj, "both should fail on label 7");
    cr_expect_str_eq(mj, mi);
    free(mi);
    free(mj);
    NnTensor *bad[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(4, 6), 1, -1, 1), t[1]};
    mi = error_of(&nn_backend_interp, g, bad);
    mj = error_of(&nn_backend_jit, g, bad);
    cr_assert(mi && mj, "both should reject x[4, 6]");
    cr_expect_str_eq(mj, mi);
    free(mi);
    free(mj);
    nnrt_tensor_free(bad[0]);
    nnrt_tensor_free(t[0]);
    nnrt_tensor_free(t[1]);
    nn_graph_free(g);
#endif
}

// An embedding id outside the table is reported alike by both backends.
Test(llvm, gather_errors_match_interp)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId w = ag_input(g, "w", NN_DT_F32, AG_SHAPE(5, 3));
    NnId ids = ag_input(g, "ids", NN_DT_I32, AG_SHAPE(n, 2));
    NnId ins[2] = {w, ids};
    nn_graph_add_output(g, "e", nn_ir_add(g, NN_OP_GATHER, ins, 2, NULL, ag_loc));
    NnTensor *t[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(5, 3), 1, -1, 1),
                      ag_tensor(NN_DT_I32, AG_SHAPE(4, 2), 2, 0, 5)};
    nnrt_tensor_set(t[1], 5, 5);
    char *mi = error_of(&nn_backend_interp, g, t), *mj = error_of(&nn_backend_jit, g, t);
    cr_assert(mi && mj, "both should fail on id 5");
    cr_expect_str_eq(mj, mi);
    cr_expect(strstr(mi, "gather: id 5 at 5 is outside [0, 5)"), "got: %s", mi);
    free(mi);
    free(mj);
    nnrt_tensor_free(t[0]);
    nnrt_tensor_free(t[1]);
    nn_graph_free(g);
#endif
}

// The JIT's vector exp/tanh/sigmoid against libm in double, over their whole
// range: within 1e-6 relative (results below FLT_MIN: within 2e-45).
Test(llvm, transcendentals_accurate)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    const int64_t n = 6001;
    NnTensor *x = nnrt_tensor_new(NN_DT_F32, 1, &n);
    float *xv = x->data;
    for (int64_t i = 0; i < n; i++)
        xv[i] = (float)(-104.0 + 194.0 * (double)i / (double)(n - 1));
    float special[] = {0.0f,     -0.0f,  1e-7f,  -1e-7f,   1e-30f,    0.6249f, 0.6251f,
                       -0.6251f, 88.72f, -87.4f, INFINITY, -INFINITY, NAN};
    for (int i = 0; i < 13; i++)
        xv[i] = special[i];
    NnOp ops[4] = {NN_OP_EXP, NN_OP_TANH, NN_OP_SIGMOID, NN_OP_LOG};
    for (int k = 0; k < 4; k++) {
        if (k == 3) { // log: x^2 |x| spans [0, 1e6]; negatives, denormals and specials too
            for (int64_t i = 13; i < n; i++)
                xv[i] = xv[i] * xv[i] * fabsf(xv[i]) * (i % 7 == 0 ? -1.0f : 1.0f);
            xv[13] = 1e-40f;
            xv[14] = 1.0f;
            xv[15] = 0.99999994f;
        }
        NnGraph *g = nn_graph_new();
        NnId in = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n));
        nn_graph_add_output(g, "y", nn_ir_unary(g, ops[k], in, ag_loc));
        NnExec *e = nn_backend_jit.prepare(g, NULL);
        NnVars v;
        nnrt_vars_init(&v);
        NnTensor *out[1];
        cr_assert_eq(nn_backend_jit.run(e, &v, &x, out), NN_OK, "%s", nnrt_errmsg());
        const float *y = out[0]->data;
        for (int64_t i = 0; i < n; i++) {
            double t = xv[i], ref = k == 0   ? exp(t)
                                    : k == 1 ? tanh(t)
                                    : k == 2 ? 1 / (1 + exp(-t))
                                             : log(t);
            if (isnan(ref)) {
                cr_expect(isnan(y[i]), "%s(NaN) = %g", nn_op_name(ops[k]), y[i]);
                continue;
            }
            double err = fabs(y[i] - ref), ok = fabs(ref) < 1.2e-38 ? 2e-45 : 1e-6 * fabs(ref);
            if (isinf((float)ref))
                cr_expect(y[i] == (float)ref, "%s(%g) = %g", nn_op_name(ops[k]), t, y[i]);
            else
                cr_expect(err <= ok, "%s(%.9g) = %.9g, want %.9g", nn_op_name(ops[k]), t, y[i],
                          ref);
        }
        nn_backend_jit.free(e);
        nnrt_vars_fini(&v);
        nn_graph_free(g);
    }
    nnrt_tensor_free(x);
#endif
}

// One executable, batch sizes 5, 9, 5, 9: one compile (the batch is a
// run-time value of the step), and every run agrees with the interpreter.
Test(llvm, rebinding_symbolic_batch)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    Mlp m = mlp(12, 7, 3, false);
    NnVars v;
    mlp_vars(&v, 12, 7, 3);
    NnExec *xi = nn_backend_interp.prepare(m.g, NULL), *xj = nn_backend_jit.prepare(m.g, NULL);
    cr_assert(xi && xj, "%s", nnrt_errmsg());
    int64_t sizes[4] = {5, 9, 5, 9};
    for (int r = 0; r < 4; r++) {
        int64_t n = sizes[r];
        NnTensor *ins[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(n, 12), 20 + (uint64_t)r, -1, 1),
                            ag_tensor(NN_DT_I32, AG_SHAPE(n), 30 + (uint64_t)r, 0, 3)};
        NnTensor *oi[2], *oj[2];
        cr_assert_eq(nn_backend_interp.run(xi, &v, ins, oi), NN_OK, "%s", nnrt_errmsg());
        cr_assert_eq(nn_backend_jit.run(xj, &v, ins, oj), NN_OK, "%s", nnrt_errmsg());
        char why[256];
        for (int k = 0; k < 2; k++)
            cr_expect(ag_close(oj[k], oi[k], 1e-5, why, sizeof why), "N=%lld output %d: %s",
                      (long long)n, k, why);
        cr_expect_eq(oj[1]->shape[0], n);
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
    }
    cr_expect_eq(nn_llvm_compile_count(xj), 1);
    nn_backend_interp.free(xi);
    nn_backend_jit.free(xj);
    nnrt_vars_fini(&v);
    nn_graph_free(m.g);
#endif
}
