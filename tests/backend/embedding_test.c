// The embedding gradient is sparse: the gradient of GATHER (rows of a table by
// id) is a SCATTER_ADD of the output's gradient rows, built without one-hot
// rows or products over the whole vocabulary, and an SGD step on it leaves the
// rows of ids not in the batch bit-identical on both backends, while the rows
// used move by the sum of their gradients (repeated ids accumulate).
#include "agree.h"

#include "autodiff.h"

enum { V = 6, D = 3 };
static const int32_t ids[4] = {1, 4, 1, 4}; // rows 0, 2, 3 and 5 are never read

// Builds loss = sum(gather(w, ids) * c) with the update w -= 0.5 * dloss/dw.
static NnGraph *build(NnId *grad)
{
    NnGraph *g = nn_graph_new();
    NnId w = ag_param(g, "w", AG_SHAPE(V, D));
    NnId in[2] = {w, ag_input(g, "ids", NN_DT_I32, AG_SHAPE(2, 2))};
    NnId c = ag_input(g, "c", NN_DT_F32, AG_SHAPE(2, 2, D));
    NnId e = nn_ir_add(g, NN_OP_GATHER, in, 2, NULL, ag_loc);
    cr_assert(e >= 0, "%s", g->err);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_SUM, nn_ir_binary(g, NN_OP_MUL, e, c, ag_loc), 7,
                             false, ag_loc);
    cr_assert(nn_ad_grad(g, loss, &w, 1, grad), "%s", g->err);
    NnId lr = nn_ir_const(g, 0.5, NN_DT_F32, ag_loc);
    nn_graph_add_update(g, w, nn_ir_binary(g, NN_OP_SUB, w,
                                           nn_ir_binary(g, NN_OP_MUL, lr, *grad, ag_loc), ag_loc));
    nn_graph_add_output(g, "loss", loss);
    return g;
}

Test(embedding, gradient_is_a_scatter)
{
    NnId grad;
    NnGraph *g = build(&grad);
    cr_expect_eq(g->nodes[grad].op, NN_OP_SCATTER_ADD, "dloss/dw is %s",
                 nn_op_name(g->nodes[grad].op));
    for (NnId i = 0; i < g->count; i++)
        cr_expect(g->nodes[i].op != NN_OP_ONEHOT && g->nodes[i].op != NN_OP_MATMUL,
                  "node %d is a dense %s", i, nn_op_name(g->nodes[i].op));
    nn_graph_free(g);
}

static void sgd_step(const NnBackend *be)
{
    NnId grad;
    NnGraph *g = build(&grad);
    NnVars vars;
    nnrt_vars_init(&vars);
    NnTensor *w0 = ag_tensor(NN_DT_F32, AG_SHAPE(V, D), 3, -1, 1);
    nnrt_vars_put(&vars, "w", nnrt_tensor_clone(w0));
    NnTensor *t[2] = {nnrt_tensor_new(NN_DT_I32, 2, (int64_t[]){2, 2}),
                      ag_tensor(NN_DT_F32, AG_SHAPE(2, 2, D), 4, -1, 1)};
    memcpy(t[0]->data, ids, sizeof ids);
    NnExec *x = be->prepare(g, NULL);
    cr_assert(x, "%s: %s", be->name, nnrt_errmsg());
    NnTensor *out[1];
    cr_assert_eq(be->run(x, &vars, t, out), NN_OK, "%s: %s", be->name, nnrt_errmsg());
    const float *w = nnrt_vars_get(&vars, "w")->data, *before = w0->data, *c = t[1]->data;
    for (int r = 0; r < V; r++) {
        if (r != 1 && r != 4) {
            cr_expect(memcmp(w + r * D, before + r * D, D * sizeof *w) == 0,
                      "%s: row %d (not in the batch) changed", be->name, r);
            continue;
        }
        int k = r == 1 ? 0 : 1; // ids k and k + 2 name row r
        for (int j = 0; j < D; j++) {
            float want = before[r * D + j] - 0.5f * (c[k * D + j] + c[(k + 2) * D + j]);
            cr_expect(fabsf(w[r * D + j] - want) <= 1e-6f, "%s: w[%d, %d] = %g, want %g",
                      be->name, r, j, w[r * D + j], want);
        }
    }
    be->free(x);
    nnrt_tensor_free(t[0]);
    nnrt_tensor_free(t[1]);
    nnrt_tensor_free(w0);
    nnrt_vars_fini(&vars);
    nn_graph_free(g);
}

Test(embedding, sgd_leaves_other_rows_interp) { sgd_step(&nn_backend_interp); }

Test(embedding, sgd_leaves_other_rows_jit)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#else
    sgd_step(&nn_backend_jit);
#endif
}
