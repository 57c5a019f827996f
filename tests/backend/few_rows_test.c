// A step run with a few rows (batch-1 prediction; runtime/step.c, "few
// rows"): the whole step is one pool dispatch in which every thread computes
// a fixed column slice of each large product and the threads meet at spin
// barriers between kernels. Its results are bit-identical to the same step
// on one thread (every element is still one dot product summed in K order),
// on 2 and 3 threads and at every batch from 1 to 4, and it agrees with the
// interpreter to 1e-5 of each output's largest entry.
#define _GNU_SOURCE // sched_getcpu, sched_setaffinity
#include <sched.h>

#include "agree.h"

#ifndef NN_WITH_LLVM
#define NEED_LLVM() cr_skip_test("built without LLVM")
#else
#define NEED_LLVM() (void)0
#endif

// x[N, 300] -> relu(x @ w1[300, 200]) -> minus its mean over the features
// (a reduction and a subtraction that stay on the calling thread) -> relu(.
// @ w2[200, 302]) -> @ w3[302, 60] -> the output y, then y * y summed over
// the features as a second output (a serial tail). Each weight is at least
// 64 KB, so each product is split over the threads at a few rows: the step
// has a split kernel after a split one, serial kernels between split ones,
// and serial kernels after the last one. 302 columns end in a short panel;
// w3's 2 panels and K = 302 take the one-row path's 4 chains with 2 steps
// of K left over.
static NnGraph *few_model(void)
{
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, 300));
    NnId w1 = ag_param(g, "w1", AG_SHAPE(300, 200));
    NnId w2 = ag_param(g, "w2", AG_SHAPE(200, 302));
    NnId w3 = ag_param(g, "w3", AG_SHAPE(302, 60));
    NnId zero = nn_ir_const(g, 0, NN_DT_F32, ag_loc);
    NnId h = nn_ir_binary(g, NN_OP_MAX, nn_ir_matmul(g, x, w1, false, false, ag_loc), zero, ag_loc);
    h = nn_ir_binary(g, NN_OP_SUB, h, nn_ir_reduce(g, NN_OP_REDUCE_MEAN, h, 1, true, ag_loc),
                     ag_loc);
    h = nn_ir_binary(g, NN_OP_MAX, nn_ir_matmul(g, h, w2, false, false, ag_loc), zero, ag_loc);
    NnId y = nn_ir_matmul(g, h, w3, false, false, ag_loc);
    nn_graph_add_output(g, "y", y);
    nn_graph_add_output(g, "sq",
                        nn_ir_reduce(g, NN_OP_REDUCE_SUM, nn_ir_binary(g, NN_OP_MUL, y, y, ag_loc),
                                     1, false, ag_loc));
    return g;
}

static void few_vars(NnVars *v)
{
    nnrt_vars_init(v);
    nnrt_vars_put(v, "w1", ag_tensor(NN_DT_F32, AG_SHAPE(300, 200), 21, -0.1, 0.1));
    nnrt_vars_put(v, "w2", ag_tensor(NN_DT_F32, AG_SHAPE(200, 302), 22, -0.1, 0.1));
    nnrt_vars_put(v, "w3", ag_tensor(NN_DT_F32, AG_SHAPE(302, 60), 23, -0.1, 0.1));
}

// Runs g at batches 1..5 on `be` with `threads` threads (one executable, so
// one compiled module serves every batch), three times each; outputs into
// got[batch - 1][0..1] (copies). The dispatches and split kernels of the
// last run at each batch into disp[] and splits[] (JIT only).
static void few_runs(const NnBackend *be, const NnGraph *g, int threads, NnTensor *got[5][2],
                     int *disp, int *splits)
{
    NnVars v;
    few_vars(&v);
    NnExecOptions opt = {.threads = threads};
    NnExec *x = be->prepare(g, &opt);
    cr_assert(x, "%s", nnrt_errmsg());
    for (int b = 1; b <= 5; b++) {
        NnTensor *ins[1] = {ag_tensor(NN_DT_F32, AG_SHAPE(b, 300), 30 + b, -1, 1)}, *out[2];
        for (int rep = 0; rep < 3; rep++) {
            cr_assert_eq(be->run(x, &v, ins, out), NN_OK, "%s", nnrt_errmsg());
            for (int k = 0; k < 2; k++) {
                if (rep == 0) {
                    got[b - 1][k] = nnrt_tensor_clone(out[k]);
                    continue;
                }
                cr_expect(memcmp(got[b - 1][k]->data, out[k]->data,
                                 nnrt_tensor_nbytes(out[k])) == 0,
                          "%s at batch %d on %d threads differs from run to run", k ? "sq" : "y",
                          b, threads);
            }
        }
#ifdef NN_WITH_LLVM
        if (disp)
            disp[b - 1] = nn_llvm_dispatches(x, &splits[b - 1]);
#endif
        nnrt_tensor_free(ins[0]);
    }
    be->free(x);
    nnrt_vars_fini(&v);
}

static void free_runs(NnTensor *t[5][2])
{
    for (int b = 0; b < 5; b++)
        for (int k = 0; k < 2; k++)
            nnrt_tensor_free(t[b][k]);
}

Test(few_rows, one_dispatch_is_bit_identical_to_one_thread)
{
    NEED_LLVM();
    setenv("NN_STEP_FEW_SHARED", "1", 1); // one dispatch even where the scheduler puts both on one core
    NnGraph *g = few_model();
    NnTensor *ref[5][2], *interp[5][2];
    int disp[5], splits[5];
    few_runs(&nn_backend_jit, g, 1, ref, disp, splits);
    for (int b = 0; b < 5; b++)
        cr_expect_eq(disp[b], 0, "batch %d on 1 thread: %d dispatches", b + 1, disp[b]);
    few_runs(&nn_backend_interp, g, 1, interp, NULL, NULL);
    for (int b = 0; b < 5; b++)
        for (int k = 0; k < 2; k++) // the interpreter sums in another order
            cr_expect(ag_rel_diff(ref[b][k], interp[b][k]) < 1e-5, "%s at batch %d vs interp: %g",
                      k ? "sq" : "y", b + 1, ag_rel_diff(ref[b][k], interp[b][k]));
    for (int threads = 2; threads <= 3; threads++) {
        NnTensor *got[5][2];
        few_runs(&nn_backend_jit, g, threads, got, disp, splits);
        for (int b = 0; b < 5; b++)
            for (int k = 0; k < 2; k++)
                cr_expect(memcmp(got[b][k]->data, ref[b][k]->data,
                                 nnrt_tensor_nbytes(ref[b][k])) == 0,
                          "%s at batch %d on %d threads differs from 1 thread (by %g)",
                          k ? "sq" : "y", b + 1, threads, ag_rel_diff(got[b][k], ref[b][k]));
        // A few rows: one dispatch, the three products split in it (before,
        // only the first product was worth a dispatch of its own).
        for (int b = 0; b < 4; b++) {
            cr_expect_eq(disp[b], 1, "batch %d on %d threads: %d dispatches", b + 1, threads,
                         disp[b]);
            cr_expect_eq(splits[b], 3, "batch %d on %d threads: %d split kernels", b + 1,
                         threads, splits[b]);
        }
        free_runs(got);
    }
    free_runs(ref);
    free_runs(interp);
    nn_graph_free(g);
}

// NN_STEP_FEW=0 runs a few rows kernel by kernel, as before: the same bits,
// with a dispatch per split kernel.
Test(few_rows, kernel_by_kernel_gives_the_same_bits)
{
    NEED_LLVM();
    setenv("NN_STEP_FEW_SHARED", "1", 1);
    NnGraph *g = few_model();
    NnTensor *one[5][2], *per[5][2];
    int disp[5], splits[5];
    few_runs(&nn_backend_jit, g, 2, one, disp, splits);
    setenv("NN_STEP_FEW", "0", 1);
    few_runs(&nn_backend_jit, g, 2, per, disp, splits);
    unsetenv("NN_STEP_FEW");
    for (int b = 0; b < 5; b++)
        for (int k = 0; k < 2; k++)
            cr_expect(memcmp(per[b][k]->data, one[b][k]->data, nnrt_tensor_nbytes(one[b][k])) == 0,
                      "%s at batch %d: kernel by kernel differs from one dispatch", k ? "sq" : "y",
                      b + 1);
    cr_expect_eq(disp[0], splits[0], "batch 1 kernel by kernel: %d dispatches, %d split",
                 disp[0], splits[0]);
    free_runs(one);
    free_runs(per);
    nn_graph_free(g);
}

// With the process held to one CPU, the pool's threads share its core: a
// few-rows run samples both threads' CPUs, finds them equal and runs the next
// ones on the caller alone (no dispatch, every kernel whole), with the bits
// of one thread; NN_STEP_FEW_SHARED=1 keeps the one dispatch.
Test(few_rows, threads_on_one_core_run_on_the_caller_alone)
{
    NEED_LLVM();
#ifdef __linux__
    cpu_set_t one, all;
    cr_assert_eq(sched_getaffinity(0, sizeof all, &all), 0);
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0); // the pool's threads inherit it
    NnGraph *g = few_model();
    NnTensor *ref[5][2], *got[5][2];
    int disp[5], splits[5];
    few_runs(&nn_backend_jit, g, 1, ref, disp, splits);
    for (int shared = 0; shared <= 1; shared++) {
        if (shared)
            setenv("NN_STEP_FEW_SHARED", "1", 1);
        few_runs(&nn_backend_jit, g, 2, got, disp, splits);
        for (int b = 0; b < 5; b++)
            for (int k = 0; k < 2; k++)
                cr_expect(memcmp(got[b][k]->data, ref[b][k]->data,
                                 nnrt_tensor_nbytes(ref[b][k])) == 0,
                          "%s at batch %d differs from 1 thread (shared %d)", k ? "sq" : "y",
                          b + 1, shared);
        // The first run at batch 1 samples; the next ones (and every later
        // batch's, one step run and one few-rows task for all) go alone.
        for (int b = 0; b < 4; b++)
            cr_expect_eq(disp[b], shared, "batch %d, shared %d: %d dispatches", b + 1, shared,
                         disp[b]);
        free_runs(got);
    }
    unsetenv("NN_STEP_FEW_SHARED");
    sched_setaffinity(0, sizeof all, &all);
    free_runs(ref);
    nn_graph_free(g);
#else
    cr_skip_test("CPU affinity is Linux's");
#endif
}
