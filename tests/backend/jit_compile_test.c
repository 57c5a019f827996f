// The JIT's compile-time savings keep results unchanged: kernels whose code
// differs only in the buffers they use share one compiled body
// (backend/llvm/dedupe.c), and a step run that way gives bit-identical
// outputs and updated variables to the same step compiled kernel by kernel
// (NN_JIT_DEDUPE=0), and agrees with the interpreter.
#include "agree.h"

#include <stdlib.h>
#include <string.h>

#ifndef NN_WITH_LLVM
#define NEED_LLVM() cr_skip_test("built without LLVM")
#else
#define NEED_LLVM() (void)0
#endif

#define ROWS 48
#define H 40

static bool same_bits(const NnTensor *a, const NnTensor *b)
{
    return a && b && a->dtype == b->dtype && a->numel == b->numel &&
           !memcmp(a->data, b->data, nnrt_tensor_nbytes(a));
}

// Runs g `steps` times on the JIT (dedupe on or off) from variables init;
// copies of the last run's outputs in out, the variables after it in v. Returns the
// count of kernels that shared another's code.
static int run_jit(const NnGraph *g, const NnVars *init, NnTensor *const *ins, int steps,
                   bool dedupe, NnTensor **out, NnVars *v)
{
    int shared = -1;
#ifdef NN_WITH_LLVM
    if (dedupe)
        unsetenv("NN_JIT_DEDUPE");
    else
        setenv("NN_JIT_DEDUPE", "0", 1);
    ag_vars_copy(v, init);
    NnExecOptions opt = {.threads = 2};
    NnExec *x = nn_backend_jit.prepare(g, &opt);
    cr_assert(x, "prepare: %s", nnrt_errmsg());
    NnTensor *o[8] = {0}; // the executable's
    for (int s = 0; s < steps; s++)
        cr_assert_eq(nn_backend_jit.run(x, v, ins, o), NN_OK, "%s", nnrt_errmsg());
    for (int k = 0; k < g->noutputs; k++)
        out[k] = nnrt_tensor_clone(o[k]);
    shared = nn_llvm_shared_count(x);
    nn_backend_jit.free(x);
    unsetenv("NN_JIT_DEDUPE");
#else
    (void)g, (void)init, (void)ins, (void)steps, (void)dedupe, (void)out, (void)v;
#endif
    return shared;
}

// Two products of the same shape on different inputs and weights.
Test(jit_compile, equal_products_share_one_body)
{
    NEED_LLVM();
    NnGraph *g = nn_graph_new();
    NnId a = ag_input(g, "a", NN_DT_F32, AG_SHAPE(ROWS, H));
    NnId b = ag_input(g, "b", NN_DT_F32, AG_SHAPE(ROWS, H));
    NnId wa = ag_param(g, "wa", AG_SHAPE(H, H)), wb = ag_param(g, "wb", AG_SHAPE(H, H));
    nn_graph_add_output(g, "ya", nn_ir_matmul(g, a, wa, false, false, ag_loc));
    nn_graph_add_output(g, "yb", nn_ir_matmul(g, b, wb, false, false, ag_loc));
    NnVars init;
    nnrt_vars_init(&init);
    nnrt_vars_put(&init, "wa", ag_tensor(NN_DT_F32, AG_SHAPE(H, H), 1, -0.5, 0.5));
    nnrt_vars_put(&init, "wb", ag_tensor(NN_DT_F32, AG_SHAPE(H, H), 2, -0.5, 0.5));
    NnTensor *ins[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(ROWS, H), 3, -1, 1),
                        ag_tensor(NN_DT_F32, AG_SHAPE(ROWS, H), 4, -1, 1)};
    NnTensor *on[2] = {0}, *off[2] = {0};
    NnVars von, voff;
    int s_on = run_jit(g, &init, ins, 1, true, on, &von);
    int s_off = run_jit(g, &init, ins, 1, false, off, &voff);
    cr_expect_geq(s_on, 1, "%d kernels shared code: the two products should", s_on);
    cr_expect_eq(s_off, 0, "NN_JIT_DEDUPE=0 still shared %d", s_off);
    for (int k = 0; k < 2; k++)
        cr_expect(same_bits(on[k], off[k]), "output %s differs with shared code",
                  g->outputs[k].name);
    char why[512];
    cr_expect(ag_run(g, ins, &init, 1e-5, why, sizeof why), "JIT and interpreter: %s", why);
    for (int k = 0; k < 2; k++) {
        nnrt_tensor_free(on[k]);
        nnrt_tensor_free(off[k]);
        nnrt_tensor_free(ins[k]);
    }
    nnrt_vars_fini(&von);
    nnrt_vars_fini(&voff);
    nnrt_vars_fini(&init);
    nn_graph_free(g);
}

// A training step with two hidden layers of equal shape: their products,
// gradient products and updates are kernels of equal code on different
// buffers. Three SGD steps with and without sharing end bit-identical.
Test(jit_compile, training_step_with_shared_kernels_is_bit_identical)
{
    NEED_LLVM();
    NnGraph *g = nn_graph_new();
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(ROWS, H));
    NnId y = ag_input(g, "y", NN_DT_F32, AG_SHAPE(ROWS, H));
    NnId w[3] = {ag_param(g, "w1", AG_SHAPE(H, H)), ag_param(g, "w2", AG_SHAPE(H, H)),
                 ag_param(g, "w3", AG_SHAPE(H, H))};
    NnId h = x;
    for (int l = 0; l < 3; l++) {
        h = nn_ir_matmul(g, h, w[l], false, false, ag_loc);
        if (l < 2)
            h = nn_ir_unary(g, NN_OP_TANH, h, ag_loc);
    }
    NnId d = nn_ir_binary(g, NN_OP_SUB, h, y, ag_loc);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, nn_ir_binary(g, NN_OP_MUL, d, d, ag_loc), 3u,
                             false, ag_loc);
    nn_graph_add_output(g, "loss", loss);
    ag_sgd(g, loss, w, 3, 0.05, NULL);
    NnVars init;
    nnrt_vars_init(&init);
    for (int l = 0; l < 3; l++) {
        char name[8];
        snprintf(name, sizeof name, "w%d", l + 1);
        nnrt_vars_put(&init, name, ag_tensor(NN_DT_F32, AG_SHAPE(H, H), 10 + (uint64_t)l, -0.3, 0.3));
    }
    NnTensor *ins[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(ROWS, H), 5, -1, 1),
                        ag_tensor(NN_DT_F32, AG_SHAPE(ROWS, H), 6, -1, 1)};
    NnTensor *on[1] = {0}, *off[1] = {0};
    NnVars von, voff;
    int s_on = run_jit(g, &init, ins, 3, true, on, &von);
    int s_off = run_jit(g, &init, ins, 3, false, off, &voff);
    cr_expect_geq(s_on, 2, "%d kernels shared code in the step", s_on);
    cr_expect_eq(s_off, 0, "NN_JIT_DEDUPE=0 still shared %d", s_off);
    cr_expect(same_bits(on[0], off[0]), "the loss differs with shared code");
    for (int k = 0; k < von.count; k++)
        cr_expect(same_bits(von.tensors[k], nnrt_vars_get(&voff, von.names[k])),
                  "%s after three steps differs with shared code", von.names[k]);
    char why[512];
    cr_expect(ag_run(g, ins, &init, 1e-4, why, sizeof why), "JIT and interpreter: %s", why);
    nnrt_tensor_free(on[0]);
    nnrt_tensor_free(off[0]);
    for (int k = 0; k < 2; k++)
        nnrt_tensor_free(ins[k]);
    nnrt_vars_fini(&von);
    nnrt_vars_fini(&voff);
    nnrt_vars_fini(&init);
    nn_graph_free(g);
}
