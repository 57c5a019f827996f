// The batch as a run-time value of the JIT's compiled step: one executable
// runs training and evaluation graphs at batch sizes 1, 7, B-1, B and larger
// (the workspace grows) with exactly one compile, and every run agrees with
// the interpreter: outputs, and the variables after each SGD update. Matmuls
// with the batch as M (a short last row tile, with and without an epilogue)
// and as K (dW = x^T dy, longer than one K block), reductions over the batch
// (mean, logsumexp, bias gradients), dropout, convolutions and pooling,
// embeddings (GATHER, and SCATTER_ADD in their gradient) and a recurrent
// layer (LOOP nodes over time-major values, forward and reverse) all take it
// at run time.
#include "agree.h"

#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "loop.h"
#include "pass.h"

#ifndef NN_WITH_LLVM
#define NEED_LLVM() cr_skip_test("built without LLVM")
#else
#define NEED_LLVM() (void)0
#endif

#define IN 37
#define HID 45
#define OUT 10

// x[N, IN] -> dense(HID) -> relu -> dropout -> dense(OUT); mean cross-entropy
// with i32 labels, argmax predictions; with train, SGD w -= 0.1 * grad.
static NnGraph *mlp(bool train, bool dropout)
{
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, IN));
    NnId labels = ag_input(g, "labels", NN_DT_I32, AG_SHAPE(n));
    NnId w[4] = {ag_param(g, "w1", AG_SHAPE(IN, HID)), ag_param(g, "b1", AG_SHAPE(HID)),
                 ag_param(g, "w2", AG_SHAPE(HID, OUT)), ag_param(g, "b2", AG_SHAPE(OUT))};
    NnId h = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, x, w[0], false, false, ag_loc), w[1], ag_loc);
    h = nn_ir_binary(g, NN_OP_MAX, h, nn_ir_const(g, 0, NN_DT_F32, ag_loc), ag_loc);
    if (dropout) {
        NnId st = ag_input(g, "step", NN_DT_F32, AG_SCALAR);
        NnId ins[3] = {h, st, nn_ir_const(g, 0.25, NN_DT_F32, ag_loc)};
        NnAttr a = {.seed = 9};
        h = nn_ir_add(g, NN_OP_DROPOUT, ins, 3, &a, ag_loc);
    }
    NnId logits =
        nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, h, w[2], false, false, ag_loc), w[3], ag_loc);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, logits, 2, false, ag_loc);
    NnId ins[2] = {logits, labels};
    NnAttr ta = {.axis = 1};
    NnId ce = nn_ir_binary(g, NN_OP_SUB, lse, nn_ir_add(g, NN_OP_TAKE, ins, 2, &ta, ag_loc), ag_loc);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, ce, 1, false, ag_loc);
    nn_graph_add_output(g, "loss", loss);
    NnAttr am = {.axis = 1};
    nn_graph_add_output(g, "pred", nn_ir_add(g, NN_OP_ARGMAX, &logits, 1, &am, ag_loc));
    nn_graph_add_output(g, "logits", logits);
    if (train) {
        ag_sgd(g, loss, w, 4, 0.1, NULL);
    }
    return g;
}

static void mlp_vars(NnVars *v)
{
    nnrt_vars_init(v);
    nnrt_vars_put(v, "w1", ag_tensor(NN_DT_F32, AG_SHAPE(IN, HID), 1, -0.2, 0.2));
    nnrt_vars_put(v, "b1", ag_tensor(NN_DT_F32, AG_SHAPE(HID), 2, -0.1, 0.1));
    nnrt_vars_put(v, "w2", ag_tensor(NN_DT_F32, AG_SHAPE(HID, OUT), 3, -0.3, 0.3));
    nnrt_vars_put(v, "b2", ag_tensor(NN_DT_F32, AG_SHAPE(OUT), 4, -0.1, 0.1));
}

// Runs g (fused by the JIT itself, or given fused) on both backends at each
// batch size in turn, with inputs made by mk; compares outputs and variables
// after every run. Returns the JIT's compile count.
typedef int (*MakeInputs)(int64_t n, uint64_t seed, NnTensor **ins);

static int run_sizes(const NnGraph *g, NnVars *init, const int64_t *sizes, int nsizes,
                     MakeInputs mk, double tol, bool *rt)
{
    int compiles = -1;
#ifdef NN_WITH_LLVM
    NnVars vi, vj;
    ag_vars_copy(&vi, init);
    ag_vars_copy(&vj, init);
    NnExecOptions opt = {.threads = 2};
    NnExec *xi = nn_backend_interp.prepare(g, &opt), *xj = nn_backend_jit.prepare(g, &opt);
    cr_assert(xi && xj, "prepare: %s", nnrt_errmsg());
    for (int r = 0; r < nsizes; r++) {
        int64_t n = sizes[r];
        NnTensor *ins[AG_MAXIN] = {0};
        int nin = mk(n, 40 + (uint64_t)r, ins);
        NnTensor *oi[8] = {0}, *oj[8] = {0};
        cr_assert_eq(nn_backend_interp.run(xi, &vi, ins, oi), NN_OK, "interp N=%lld: %s",
                     (long long)n, nnrt_errmsg());
        cr_assert_eq(nn_backend_jit.run(xj, &vj, ins, oj), NN_OK, "jit N=%lld: %s", (long long)n,
                     nnrt_errmsg());
        char why[256];
        for (int k = 0; k < g->noutputs; k++)
            cr_expect(ag_close(oj[k], oi[k], tol, why, sizeof why), "N=%lld output %s: %s",
                      (long long)n, g->outputs[k].name, why);
        for (int k = 0; k < vi.count; k++)
            cr_expect(ag_close(nnrt_vars_get(&vj, vi.names[k]), vi.tensors[k], tol, why, sizeof why),
                      "N=%lld variable %s after the update: %s", (long long)n, vi.names[k], why);
        for (int k = 0; k < nin; k++)
            nnrt_tensor_free(ins[k]);
    }
    compiles = nn_llvm_compile_count(xj);
    *rt = nn_llvm_runtime_batch(xj);
    nn_backend_interp.free(xi);
    nn_backend_jit.free(xj);
    nnrt_vars_fini(&vi);
    nnrt_vars_fini(&vj);
#else
    (void)g, (void)init, (void)sizes, (void)nsizes, (void)mk, (void)tol, (void)rt;
#endif
    return compiles;
}

static int mlp_inputs(int64_t n, uint64_t seed, NnTensor **ins)
{
    ins[0] = ag_tensor(NN_DT_F32, AG_SHAPE(n, IN), seed, -1, 1);
    ins[1] = ag_tensor(NN_DT_I32, AG_SHAPE(n), seed + 1, 0, OUT);
    return 2;
}

static int mlp_inputs_step(int64_t n, uint64_t seed, NnTensor **ins)
{
    mlp_inputs(n, seed, ins);
    ins[2] = ag_tensor(NN_DT_F32, AG_SCALAR, seed + 2, 1, 50);
    return 3;
}

// The training batch first (B = 64), then a partial last batch, evaluation-
// sized and batch-1 runs, B again, and a batch larger than any before.
static const int64_t epoch_sizes[] = {64, 64, 63, 7, 1, 64, 200, 1, 64};
#define NSIZES ((int)(sizeof epoch_sizes / sizeof epoch_sizes[0]))

Test(rtbatch, train_step_any_batch_one_compile)
{
    NEED_LLVM();
    NnGraph *g = mlp(true, false);
    NnVars v;
    mlp_vars(&v);
    bool rt = false;
    int compiles = run_sizes(g, &v, epoch_sizes, NSIZES, mlp_inputs, 2e-5, &rt);
    cr_expect(rt, "the MLP step should take its batch at run time");
    cr_expect_eq(compiles, 1, "compiled %d times for %d batch sizes", compiles, NSIZES);
    nnrt_vars_fini(&v);
    nn_graph_free(g);
}

Test(rtbatch, dropout_step_any_batch_one_compile)
{
    NEED_LLVM();
    NnGraph *g = mlp(true, true);
    NnVars v;
    mlp_vars(&v);
    bool rt = false;
    int compiles = run_sizes(g, &v, epoch_sizes, NSIZES, mlp_inputs_step, 2e-5, &rt);
    cr_expect(rt);
    cr_expect_eq(compiles, 1, "compiled %d times", compiles);
    nnrt_vars_fini(&v);
    nn_graph_free(g);
}

Test(rtbatch, eval_any_batch_one_compile)
{
    NEED_LLVM();
    NnGraph *g = mlp(false, false);
    NnVars v;
    mlp_vars(&v);
    bool rt = false;
    int64_t sizes[] = {1, 2, 3, 4, 5, 8, 9, 15, 16, 17, 100, 1};
    // One row sums K in 4 interleaved chains (lower_matmul.c's rows path): a
    // logit whose terms cancel differs from the interpreter's order by ~1e-4.
    int compiles = run_sizes(g, &v, sizes, (int)(sizeof sizes / sizeof sizes[0]), mlp_inputs, 1e-4,
                             &rt);
    cr_expect(rt);
    cr_expect_eq(compiles, 1, "compiled %d times", compiles);
    nnrt_vars_fini(&v);
    nn_graph_free(g);
}

// x[N, 300] @ w[300, 70] + b, relu (a fused matmul with its epilogue; the
// batch is M: row tiles of 8 with a run-time last tile), and the product's
// gradients: dW = x^T @ dy has the batch as K, past one K block at N = 1100.
static NnGraph *wide(void)
{
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, 300));
    NnId w[2] = {ag_param(g, "w", AG_SHAPE(300, 70)), ag_param(g, "b", AG_SHAPE(70))};
    NnId h = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, x, w[0], false, false, ag_loc), w[1], ag_loc);
    h = nn_ir_binary(g, NN_OP_MAX, h, nn_ir_const(g, 0, NN_DT_F32, ag_loc), ag_loc);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, nn_ir_binary(g, NN_OP_MUL, h, h, ag_loc), 3,
                             false, ag_loc);
    nn_graph_add_output(g, "h", h);
    nn_graph_add_output(g, "loss", loss);
    NnId grads[2];
    cr_assert(nn_ad_grad(g, loss, w, 2, grads), "autodiff: %s", g->err);
    nn_graph_add_output(g, "dw", grads[0]);
    nn_graph_add_output(g, "db", grads[1]);
    return nn_passes_run(g, NULL);
}

static int wide_inputs(int64_t n, uint64_t seed, NnTensor **ins)
{
    ins[0] = ag_tensor(NN_DT_F32, AG_SHAPE(n, 300), seed, -1, 1);
    return 1;
}

Test(rtbatch, matmul_batch_as_m_and_k)
{
    NEED_LLVM();
    NnGraph *g = wide();
    cr_expect(nn_graph_count_op(g, NN_OP_FUSED) >= 1, "expected a fused matmul");
    NnVars v;
    nnrt_vars_init(&v);
    nnrt_vars_put(&v, "w", ag_tensor(NN_DT_F32, AG_SHAPE(300, 70), 5, -0.1, 0.1));
    nnrt_vars_put(&v, "b", ag_tensor(NN_DT_F32, AG_SHAPE(70), 6, -0.1, 0.1));
    // Every remainder of the 8-row tile, a batch of one, one past a K block.
    int64_t sizes[] = {64, 1, 2, 3, 4, 5, 6, 7, 9, 17, 31, 1100, 1027};
    bool rt = false;
    int compiles = run_sizes(g, &v, sizes, (int)(sizeof sizes / sizeof sizes[0]), wide_inputs,
                             1e-5 * sqrt(1100.0 / 64), &rt);
    cr_expect(rt);
    cr_expect_eq(compiles, 1, "compiled %d times", compiles);
    nnrt_vars_fini(&v);
    nn_graph_free(g);
}

// Reductions over the batch in every loop form: a mean and a max over it, a
// logsumexp over it kept as a row, a sum over everything, f64 too.
static NnGraph *reductions(NnDType dt)
{
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", dt, AG_SHAPE(n, 3, 41));
    nn_graph_add_output(g, "mean0", nn_ir_reduce(g, NN_OP_REDUCE_MEAN, x, 1, false, ag_loc));
    nn_graph_add_output(g, "max0", nn_ir_reduce(g, NN_OP_REDUCE_MAX, x, 1, true, ag_loc));
    nn_graph_add_output(g, "lse0", nn_ir_reduce(g, NN_OP_LOGSUMEXP, x, 5, true, ag_loc));
    nn_graph_add_output(g, "sum", nn_ir_reduce(g, NN_OP_REDUCE_SUM, x, 7, false, ag_loc));
    nn_graph_add_output(g, "mean2", nn_ir_reduce(g, NN_OP_REDUCE_MEAN, x, 4, false, ag_loc));
    NnShape flat = AG_SHAPE(n, 123);
    NnId t = nn_ir_reshape(g, x, &flat, ag_loc);
    nn_graph_add_output(g, "rows", nn_ir_reduce(g, NN_OP_REDUCE_SUM, t, 2, false, ag_loc));
    return g;
}

static NnDType red_dt;
static int red_inputs(int64_t n, uint64_t seed, NnTensor **ins)
{
    ins[0] = ag_tensor(red_dt, AG_SHAPE(n, 3, 41), seed, -3, 3);
    return 1;
}

Test(rtbatch, reductions_over_the_batch)
{
    NEED_LLVM();
    for (int dt = NN_DT_F32; dt <= NN_DT_F64; dt++) {
        red_dt = (NnDType)dt;
        NnGraph *g = reductions(red_dt);
        NnVars v;
        nnrt_vars_init(&v);
        int64_t sizes[] = {16, 1, 7, 15, 40, 3};
        bool rt = false;
        int compiles = run_sizes(g, &v, sizes, 6, red_inputs, 1e-5, &rt);
        cr_expect(rt, "%s", nnrt_dtype_name(red_dt));
        cr_expect_eq(compiles, 1, "%s: compiled %d times", nnrt_dtype_name(red_dt), compiles);
        nnrt_vars_fini(&v);
        nn_graph_free(g);
    }
}

// A small CNN training step: conv (padded) + bias + relu fused, max pool,
// a channel concat with an average pool's slice, a valid convolution (its
// data gradient reads dy re-strided to the input's rows), flatten, dense,
// mean cross-entropy; SGD on the filters and the dense weights. Every
// convolution form (forward, data and filter gradients, the last summed over
// chunks of images) and pooling form takes the batch at run time.
static NnGraph *cnn(void)
{
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, 2, 8, 8));
    NnId labels = ag_input(g, "labels", NN_DT_I32, AG_SHAPE(n));
    NnId w[5] = {ag_param(g, "k", AG_SHAPE(4, 2, 3, 3)), ag_param(g, "kb", AG_SHAPE(4, 1, 1)),
                 ag_param(g, "w", AG_SHAPE(6 * 4, 5)), ag_param(g, "b", AG_SHAPE(5)),
                 ag_param(g, "k2", AG_SHAPE(6, 6, 3, 3))};
    NnConv2d cv = {.kernel = {3, 3}, .stride = {1, 1}, .dilation = {1, 1}, .pad = {1, 1, 1, 1},
                   .groups = 1};
    NnId h = nn_ir_binary(g, NN_OP_ADD, nn_ir_conv2d(g, x, w[0], &cv, ag_loc), w[1], ag_loc);
    h = nn_ir_binary(g, NN_OP_MAX, h, nn_ir_const(g, 0, NN_DT_F32, ag_loc), ag_loc);
    NnConv2d pool = {.kernel = {2, 2}, .stride = {2, 2}, .dilation = {1, 1}};
    NnId mp = nn_ir_pool2d(g, NN_OP_MAX_POOL2D, h, &pool, ag_loc);  // [N, 4, 4, 4]
    NnId ap = nn_ir_pool2d(g, NN_OP_AVG_POOL2D, h, &pool, ag_loc);  // [N, 4, 4, 4]
    NnId two = nn_ir_slice(g, ap, 1, 1, 3, 1, ag_loc);              // [N, 2, 4, 4]
    NnId cat[2] = {mp, two};
    NnAttr ca = {.axis = 1};
    NnId c = nn_ir_add(g, NN_OP_CONCAT, cat, 2, &ca, ag_loc);       // [N, 6, 4, 4]
    NnConv2d valid = {.kernel = {3, 3}, .stride = {1, 1}, .dilation = {1, 1}, .groups = 1};
    c = nn_ir_conv2d(g, c, w[4], &valid, ag_loc);                   // [N, 6, 2, 2]
    NnShape flat = AG_SHAPE(n, 6 * 4);
    NnId f = nn_ir_reshape(g, c, &flat, ag_loc);
    NnId logits =
        nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, f, w[2], false, false, ag_loc), w[3], ag_loc);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, logits, 2, false, ag_loc);
    NnId ins[2] = {logits, labels};
    NnAttr ta = {.axis = 1};
    NnId ce = nn_ir_binary(g, NN_OP_SUB, lse, nn_ir_add(g, NN_OP_TAKE, ins, 2, &ta, ag_loc), ag_loc);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, ce, 1, false, ag_loc);
    nn_graph_add_output(g, "loss", loss);
    nn_graph_add_output(g, "logits", logits);
    ag_sgd(g, loss, w, 5, 0.1, NULL);
    return g;
}

static int cnn_inputs(int64_t n, uint64_t seed, NnTensor **ins)
{
    ins[0] = ag_tensor(NN_DT_F32, AG_SHAPE(n, 2, 8, 8), seed, -1, 1);
    ins[1] = ag_tensor(NN_DT_I32, AG_SHAPE(n), seed + 1, 0, 5);
    return 2;
}

Test(rtbatch, cnn_step_any_batch_one_compile)
{
    NEED_LLVM();
    NnGraph *g = cnn();
    NnVars v;
    nnrt_vars_init(&v);
    nnrt_vars_put(&v, "k", ag_tensor(NN_DT_F32, AG_SHAPE(4, 2, 3, 3), 1, -0.3, 0.3));
    nnrt_vars_put(&v, "kb", ag_tensor(NN_DT_F32, AG_SHAPE(4, 1, 1), 2, -0.1, 0.1));
    nnrt_vars_put(&v, "w", ag_tensor(NN_DT_F32, AG_SHAPE(24, 5), 3, -0.2, 0.2));
    nnrt_vars_put(&v, "b", ag_tensor(NN_DT_F32, AG_SHAPE(5), 4, -0.1, 0.1));
    nnrt_vars_put(&v, "k2", ag_tensor(NN_DT_F32, AG_SHAPE(6, 6, 3, 3), 5, -0.3, 0.3));
    // Fewer images than the filter gradient's chunks (1, 3), and more.
    int64_t sizes[] = {32, 1, 3, 7, 31, 32, 70, 2};
    bool rt = false;
    int compiles = run_sizes(g, &v, sizes, (int)(sizeof sizes / sizeof sizes[0]), cnn_inputs,
                             5e-5, &rt);
    cr_expect(rt);
    cr_expect_eq(compiles, 1, "compiled %d times", compiles);
    nnrt_vars_fini(&v);
    nn_graph_free(g);
}

// An embedding classifier's training step: ids[N, 3] -> rows of a table
// (GATHER), flattened, dense, mean cross-entropy; SGD on the table through
// its gradient (SCATTER_ADD of each row's gradient at its id) and on the
// dense weights. Gathers and scatters as many rows as the run's batch has.
#define VOCAB 11
#define EDIM 4
static NnGraph *embed(void)
{
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId ids = ag_input(g, "ids", NN_DT_I32, AG_SHAPE(n, 3));
    NnId labels = ag_input(g, "labels", NN_DT_I32, AG_SHAPE(n));
    NnId w[3] = {ag_param(g, "table", AG_SHAPE(VOCAB, EDIM)),
                 ag_param(g, "w", AG_SHAPE(3 * EDIM, 5)), ag_param(g, "b", AG_SHAPE(5))};
    NnId gi[2] = {w[0], ids};
    NnId rows = nn_ir_add(g, NN_OP_GATHER, gi, 2, NULL, ag_loc); // [N, 3, EDIM]
    NnShape flat = AG_SHAPE(n, 3 * EDIM);
    NnId f = nn_ir_reshape(g, rows, &flat, ag_loc);
    NnId logits =
        nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, f, w[1], false, false, ag_loc), w[2], ag_loc);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, logits, 2, false, ag_loc);
    NnId ins[2] = {logits, labels};
    NnAttr ta = {.axis = 1};
    NnId ce = nn_ir_binary(g, NN_OP_SUB, lse, nn_ir_add(g, NN_OP_TAKE, ins, 2, &ta, ag_loc), ag_loc);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, ce, 1, false, ag_loc);
    nn_graph_add_output(g, "loss", loss);
    nn_graph_add_output(g, "rows", rows);
    ag_sgd(g, loss, w, 3, 0.5, NULL);
    cr_assert(nn_graph_count_op(g, NN_OP_SCATTER_ADD) >= 1, "the table's gradient is a scatter");
    return g;
}

static void embed_vars(NnVars *v)
{
    nnrt_vars_init(v);
    nnrt_vars_put(v, "table", ag_tensor(NN_DT_F32, AG_SHAPE(VOCAB, EDIM), 5, -1, 1));
    nnrt_vars_put(v, "w", ag_tensor(NN_DT_F32, AG_SHAPE(3 * EDIM, 5), 6, -0.3, 0.3));
    nnrt_vars_put(v, "b", ag_tensor(NN_DT_F32, AG_SHAPE(5), 7, -0.1, 0.1));
}

static int embed_inputs(int64_t n, uint64_t seed, NnTensor **ins)
{
    ins[0] = ag_tensor(NN_DT_I32, AG_SHAPE(n, 3), seed, 0, VOCAB);
    ins[1] = ag_tensor(NN_DT_I32, AG_SHAPE(n), seed + 1, 0, 5);
    return 2;
}

Test(rtbatch, embedding_step_any_batch_one_compile)
{
    NEED_LLVM();
    NnGraph *g = embed();
    NnVars v;
    embed_vars(&v);
    bool rt = false;
    int compiles = run_sizes(g, &v, epoch_sizes, NSIZES, embed_inputs, 2e-5, &rt);
    cr_expect(rt, "GATHER and SCATTER_ADD should take the batch at run time");
    cr_expect_eq(compiles, 1, "compiled %d times for %d batch sizes", compiles, NSIZES);
    nnrt_vars_fini(&v);
    nn_graph_free(g);
}

// A bad id in a batch larger than the one the step was first run with (its
// index copy has a place for every row of any batch): both backends refuse
// it with the same message, and neither writes outside its memory (ASan).
Test(rtbatch, embedding_bad_id_in_a_larger_batch)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    NnGraph *g = embed();
    NnVars vi, vj;
    embed_vars(&vi);
    embed_vars(&vj);
    NnExec *xi = nn_backend_interp.prepare(g, NULL), *xj = nn_backend_jit.prepare(g, NULL);
    cr_assert(xi && xj, "prepare: %s", nnrt_errmsg());
    int64_t sizes[] = {40, 300};
    for (int r = 0; r < 2; r++) {
        NnTensor *ins[2];
        embed_inputs(sizes[r], 50 + (uint64_t)r, ins);
        if (r == 1)
            ((int32_t *)ins[0]->data)[3 * 250 + 2] = VOCAB + 4;
        NnTensor *oi[4], *oj[4];
        NnStatus si = nn_backend_interp.run(xi, &vi, ins, oi);
        char mi[512];
        snprintf(mi, sizeof mi, "%s", nnrt_errmsg());
        NnStatus sj = nn_backend_jit.run(xj, &vj, ins, oj);
        if (r == 0) {
            cr_expect(si == NN_OK && sj == NN_OK, "N=40: %s", nnrt_errmsg());
        } else {
            cr_expect(si != NN_OK && sj != NN_OK, "a bad id at row 250 should be refused");
            cr_expect_str_eq(nnrt_errmsg(), mi);
            cr_expect(strstr(mi, "15"), "the message names the bad id: %s", mi);
        }
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
    }
    cr_expect_eq(nn_llvm_compile_count(xj), 1);
    nn_backend_interp.free(xi);
    nn_backend_jit.free(xj);
    nnrt_vars_fini(&vi);
    nnrt_vars_fini(&vj);
    nn_graph_free(g);
#endif
}

// ---- a recurrent step: LOOP nodes over time-major values ----

#define RT 6  // steps
#define RI 5  // features per step
#define RH 12 // units

// An Elman RNN as stdlib/rnn.nn builds it: x[N, RT, RI] made time-major
// ([RT, N, RI]: the batch is dim 1) and projected in one product (xp = x @ wx
// + b), then h = tanh(xp[t] + h @ wh) from h0 over RT steps, every step's h
// stacked ([RT, N, RH]) and made batch-major again. Loss: the mean square of
// the stacked states plus the mean square error of h_T @ wo against y; SGD
// on wx, wh, b, wo through the reverse loop autodiff builds. Fused by the
// pipeline, as nnc runs it.
static NnGraph *rnn(void)
{
    static const int perm[NN_MAX_RANK] = {1, 0, 2};
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, RT, RI));
    NnId h0 = ag_input(g, "h0", NN_DT_F32, AG_SHAPE(n, RH));
    NnId y = ag_input(g, "y", NN_DT_F32, AG_SHAPE(n, 1));
    NnId w[4] = {ag_param(g, "wx", AG_SHAPE(RI, RH)), ag_param(g, "wh", AG_SHAPE(RH, RH)),
                 ag_param(g, "b", AG_SHAPE(RH)), ag_param(g, "wo", AG_SHAPE(RH, 1))};
    NnId xp = nn_ir_binary(
        g, NN_OP_ADD,
        nn_ir_matmul(g, nn_ir_transpose(g, x, perm, ag_loc), w[0], false, false, ag_loc), w[2],
        ag_loc);
    NnGraph *b = nn_graph_new_child(g);
    NnId bh = ag_input(b, "h", NN_DT_F32, AG_SHAPE(n, RH));
    NnId bx = ag_input(b, "xp", NN_DT_F32, AG_SHAPE(n, RH));
    NnId bw = ag_input(b, "wh", NN_DT_F32, AG_SHAPE(RH, RH));
    NnId hn = nn_ir_unary(
        b, NN_OP_TANH,
        nn_ir_binary(b, NN_OP_ADD, bx, nn_ir_matmul(b, bh, bw, false, false, ag_loc), ag_loc),
        ag_loc);
    nn_graph_add_output(b, "h", hn);
    nn_graph_add_output(b, "out", hn);
    NnId ins[3] = {h0, xp, w[1]};
    NnId lp = nn_ir_loop(g, ins, 3, 1, 1, RT, false, b, ag_loc);
    cr_assert(lp >= 0, "loop: %s", g->err);
    NnId hT = nn_ir_loop_out(g, lp, 0, ag_loc);
    NnId out = nn_ir_transpose(g, nn_ir_loop_out(g, lp, 1, ag_loc), perm, ag_loc);
    NnId sq = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, nn_ir_binary(g, NN_OP_MUL, out, out, ag_loc), 7,
                           false, ag_loc);
    NnId e = nn_ir_binary(g, NN_OP_SUB, nn_ir_matmul(g, hT, w[3], false, false, ag_loc), y, ag_loc);
    NnId mse = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, nn_ir_binary(g, NN_OP_MUL, e, e, ag_loc), 3,
                            false, ag_loc);
    NnId loss = nn_ir_binary(g, NN_OP_ADD, sq, mse, ag_loc);
    nn_graph_add_output(g, "loss", loss);
    nn_graph_add_output(g, "out", out);
    nn_graph_add_output(g, "h", hT);
    ag_sgd(g, loss, w, 4, 0.1, NULL);
    return nn_passes_run(g, NULL);
}

static int rnn_inputs(int64_t n, uint64_t seed, NnTensor **ins)
{
    ins[0] = ag_tensor(NN_DT_F32, AG_SHAPE(n, RT, RI), seed, -1, 1);
    ins[1] = ag_tensor(NN_DT_F32, AG_SHAPE(n, RH), seed + 1, -0.5, 0.5);
    ins[2] = ag_tensor(NN_DT_F32, AG_SHAPE(n, 1), seed + 2, -1, 1);
    return 3;
}

// B = 32 first (on 2 threads the loops run as two parts of 16 rows), then
// B - 1, 7 and 1 (one part), 33 (parts of 16 and 17), B again and 70 (parts
// of 35, the workspace grown): one compile, every output and every variable
// after each update equal to the interpreter's.
Test(rtbatch, rnn_step_any_batch_one_compile)
{
    NEED_LLVM();
    NnGraph *g = rnn();
    cr_assert(nn_graph_count_op(g, NN_OP_LOOP) >= 2, "a forward and a reverse loop: %d",
              nn_graph_count_op(g, NN_OP_LOOP));
    NnVars v;
    nnrt_vars_init(&v);
    nnrt_vars_put(&v, "wx", ag_tensor(NN_DT_F32, AG_SHAPE(RI, RH), 1, -0.4, 0.4));
    nnrt_vars_put(&v, "wh", ag_tensor(NN_DT_F32, AG_SHAPE(RH, RH), 2, -0.3, 0.3));
    nnrt_vars_put(&v, "b", ag_tensor(NN_DT_F32, AG_SHAPE(RH), 3, -0.1, 0.1));
    nnrt_vars_put(&v, "wo", ag_tensor(NN_DT_F32, AG_SHAPE(RH, 1), 4, -0.5, 0.5));
    int64_t sizes[] = {32, 31, 7, 1, 33, 32, 70};
    bool rt = false;
    int compiles = run_sizes(g, &v, sizes, (int)(sizeof sizes / sizeof sizes[0]), rnn_inputs, 2e-5,
                             &rt);
    cr_expect(rt, "the RNN step should take its batch at run time");
    cr_expect_eq(compiles, 1, "compiled %d times", compiles);
    nnrt_vars_fini(&v);
    nn_graph_free(g);
}
