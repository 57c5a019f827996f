// nn_ad_grad structure: gradients have their variables' types, unreachable
// variables get zeros, non-differentiable ops stop the gradient, and forward,
// backward and update stay one graph that verifies.
#include <criterion/criterion.h>

#include "autodiff.h"
#include "ir_helpers.h"

static NnGraph *g;
static const NnLoc L = {0};

static void setup(void) { g = nn_graph_new(); }
static void teardown(void) { nn_graph_free(g); }

TestSuite(autodiff, .init = setup, .fini = teardown);

static int count_op(NnId from, NnOp op)
{
    int n = 0;
    for (NnId i = from; i < g->count; i++)
        n += g->nodes[i].op == op;
    return n;
}

// relu(x @ w1 + b1) @ w2 -> logsumexp - take, mean over N: a small classifier.
static NnId mlp_loss(NnId *params)
{
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    NnId y = src(g, NN_OP_INPUT, "y", NN_DT_I32, "N");
    params[0] = par(g, "w1", NN_DT_F32, "4,8");
    params[1] = par(g, "b1", NN_DT_F32, "8");
    params[2] = par(g, "w2", NN_DT_F32, "8,3");
    NnId h = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, x, params[0], false, false, L),
                          params[1], L);
    h = nn_ir_binary(g, NN_OP_MAX, h, nn_ir_const(g, 0, NN_DT_F32, L), L);
    NnId logits = nn_ir_matmul(g, h, params[2], false, false, L);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, logits, 2, false, L);
    NnAttr a = {.axis = 1};
    NnId in[2] = {logits, y};
    NnId picked = nn_ir_add(g, NN_OP_TAKE, in, 2, &a, L);
    NnId ce = nn_ir_binary(g, NN_OP_SUB, lse, picked, L);
    return nn_ir_reduce(g, NN_OP_REDUCE_MEAN, ce, 1, false, L);
}

Test(autodiff, grads_have_variable_types)
{
    NnId p[3], grads[3];
    NnId loss = mlp_loss(p);
    cr_assert(loss >= 0, "%s", g->err);
    int before = g->count;
    cr_assert(nn_ad_grad(g, loss, p, 3, grads), "%s", g->err);
    cr_assert_gt(g->count, before);
    for (int k = 0; k < 3; k++) {
        cr_assert_geq(grads[k], before);
        cr_assert_eq(g->nodes[grads[k]].dtype, g->nodes[p[k]].dtype);
        cr_assert(nn_shape_eq(&g->nodes[grads[k]].shape, &g->nodes[p[k]].shape),
                  "grad %d is %s", k, type_of(g, grads[k]));
    }
    cr_assert(nn_ir_verify(g), "%s", g->err);
    // MATMUL VJPs read operands transposed through flags, not TRANSPOSE nodes.
    cr_assert_eq(count_op(before, NN_OP_TRANSPOSE), 0);
    // dw2, dh, dw1, and dx: a VJP builds every input gradient; DCE drops unused ones.
    cr_assert_eq(count_op(before, NN_OP_MATMUL), 4);
    // The symbolic batch makes mean's count a graph value: a sum of ones.
    cr_assert_geq(count_op(before, NN_OP_REDUCE_SUM), 1);
}

Test(autodiff, unreachable_gets_zeros)
{
    NnId a = par(g, "a", NN_DT_F32, "N,3");
    NnId unused = par(g, "unused", NN_DT_F32, "2,5");
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_SUM, nn_ir_unary(g, NN_OP_EXP, a, L), 3, false, L);
    NnId wrt[2] = {a, unused}, grads[2];
    cr_assert(nn_ad_grad(g, loss, wrt, 2, grads));
    const NnNode *z = &g->nodes[grads[1]];
    cr_assert_eq(z->op, NN_OP_CONST);
    cr_assert_eq(z->attr.value, 0.0);
    cr_assert_str_eq(type_of(g, grads[1]), "f32[2, 5]");
    cr_assert_str_eq(type_of(g, grads[0]), "f32[N, 3]");
}

Test(autodiff, comparisons_stop_gradient)
{
    NnId a = par(g, "a", NN_DT_F32, "4");
    NnId mask = nn_ir_binary(g, NN_OP_GT, a, nn_ir_const(g, 0, NN_DT_F32, L), L);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_SUM, mask, 1, false, L);
    NnId grad;
    int before = g->count;
    cr_assert(nn_ad_grad(g, loss, &a, 1, &grad));
    cr_assert_eq(g->nodes[grad].op, NN_OP_CONST);
    cr_assert_eq(g->count, before + 1); // only the zero: no VJP was built
}

Test(autodiff, integer_path_stops_gradient)
{
    NnId a = par(g, "a", NN_DT_F32, "4,3");
    NnAttr m = {.axis = 1};
    NnId am = nn_ir_add(g, NN_OP_ARGMAX, &a, 1, &m, L);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_SUM, nn_ir_cast(g, am, NN_DT_F32, L), 1, false, L);
    NnId grad;
    cr_assert(nn_ad_grad(g, loss, &a, 1, &grad));
    cr_assert_eq(g->nodes[grad].op, NN_OP_CONST);
}

Test(autodiff, loss_must_be_scalar)
{
    NnId a = par(g, "a", NN_DT_F32, "4");
    NnId e = nn_ir_unary(g, NN_OP_EXP, a, L);
    NnId grad = -1;
    cr_assert_not(nn_ad_grad(g, e, &a, 1, &grad));
    cr_assert_str_eq(g->err, "the loss must be a float scalar, got f32[4]");
}

Test(autodiff, shared_use_accumulates_with_add)
{
    NnId a = par(g, "a", NN_DT_F32, "3");
    NnId sq = nn_ir_binary(g, NN_OP_MUL, a, a, L);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_SUM, sq, 1, false, L);
    NnId grad;
    cr_assert(nn_ad_grad(g, loss, &a, 1, &grad));
    cr_assert_eq(g->nodes[grad].op, NN_OP_ADD); // both operands of a*a contribute
}

Test(autodiff, const_exponent_builds_no_log)
{
    NnId a = par(g, "a", NN_DT_F32, "3");
    NnId p = nn_ir_binary(g, NN_OP_POW, a, nn_ir_const(g, 2, NN_DT_F32, L), L);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_SUM, p, 1, false, L);
    NnId grad;
    int before = g->count;
    cr_assert(nn_ad_grad(g, loss, &a, 1, &grad));
    cr_assert_eq(count_op(before, NN_OP_LOG), 0);
}

Test(autodiff, step_graph_stays_one_graph)
{
    NnId p[3], grads[3];
    NnId loss = mlp_loss(p);
    nn_graph_add_output(g, "loss", loss);
    cr_assert(nn_ad_grad(g, loss, p, 3, grads));
    NnId lr = nn_ir_const(g, 0.1, NN_DT_F32, L);
    for (int k = 0; k < 3; k++) {
        NnId step = nn_ir_binary(g, NN_OP_MUL, grads[k], lr, L);
        nn_graph_add_update(g, p[k], nn_ir_binary(g, NN_OP_SUB, p[k], step, L));
    }
    cr_assert(nn_ir_verify(g), "%s", g->err);
    cr_assert_eq(g->nupdates, 3);
    cr_assert_eq(nn_graph_output(g, "loss"), loss);
}
