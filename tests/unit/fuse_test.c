// Fusion on known graphs: how many kernels come out, which body forms, that
// nothing is computed twice or absorbed from outside a group, and that the
// interpreter gives the same outputs and updates before and after.
#include "autodiff.h"
#include "pass_helpers.h"

static const NnLoc L = {0};

static NnId c(NnGraph *g, double v) { return nn_ir_const(g, v, NN_DT_F32, L); }

// The FUSED nodes of g, in order, into ids (at most max); returns how many.
static int fused_nodes(const NnGraph *g, NnId *ids, int max)
{
    int n = 0;
    for (NnId i = 0; i < g->count; i++)
        if (g->nodes[i].op == NN_OP_FUSED && n < max)
            ids[n++] = i;
    return n;
}

static int body_count(const NnGraph *g, NnId id, NnOp op)
{
    return nn_graph_count_op(g->nodes[id].attr.body, op);
}

// relu(x @ w + b)
static NnGraph *dense_relu(void)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    NnId w = par(g, "w", NN_DT_F32, "4,8");
    NnId b = par(g, "b", NN_DT_F32, "8");
    NnId mm = nn_ir_matmul(g, x, w, false, false, L);
    NnId h = nn_ir_binary(g, NN_OP_ADD, mm, b, L);
    NnId zero = c(g, 0);
    nn_graph_add_output(g, "y", nn_ir_binary(g, NN_OP_MAX, h, zero, L));
    return g;
}

Test(fuse, dense_relu_is_one_matmul_kernel)
{
    NnGraph *g = dense_relu();
    NnGraph *before = nn_graph_clone(g);
    cr_assert_eq(nn_fuse_count_kernels(g), 3);
    g = apply(nn_pass_fuse, g);
    cr_assert_eq(nn_fuse_count_kernels(g), 1);
    NnId f[4];
    cr_assert_eq(fused_nodes(g, f, 4), 1);
    const NnNode *n = &g->nodes[f[0]];
    cr_assert_eq(nn_fuse_form(n->attr.body), NN_FUSE_MATMUL);
    cr_assert_eq(n->nin, 3, "x, w and b come in; the 0 stays inside");
    cr_assert_eq(body_count(g, f[0], NN_OP_CONST), 1);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_CONST), 0, "the outer CONST is dead");
    cr_assert_eq(nn_graph_output(g, "y"), f[0]);
    int64_t nv = 5;
    assert_same_results(before, g, &nv);
    char *text = before_after(before, "fuse");
    golden("fuse_dense_relu", text);
    free(text);
    nn_graph_free(g);
}

Test(fuse, elementwise_chain_is_one_kernel)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,3");
    NnId y = src(g, NN_OP_INPUT, "y", NN_DT_F32, "3");
    NnId t = nn_ir_unary(g, NN_OP_EXP, x, L);
    NnId two = c(g, 2);
    t = nn_ir_binary(g, NN_OP_MUL, t, two, L);
    t = nn_ir_binary(g, NN_OP_ADD, t, y, L);
    NnId s = nn_ir_unary(g, NN_OP_SIGMOID, y, L); // a smaller shape, broadcast inside
    t = nn_ir_binary(g, NN_OP_SUB, t, s, L);
    nn_graph_add_output(g, "t", nn_ir_unary(g, NN_OP_TANH, t, L));
    NnGraph *before = nn_graph_clone(g);
    g = apply(nn_pass_fuse, g);
    NnId f[4];
    cr_assert_eq(fused_nodes(g, f, 4), 1);
    cr_assert_eq(nn_fuse_count_kernels(g), 1);
    cr_assert_eq(nn_fuse_form(g->nodes[f[0]].attr.body), NN_FUSE_ELEMWISE);
    cr_assert_eq(g->nodes[f[0]].nin, 2);
    cr_assert_eq(body_count(g, f[0], NN_OP_INPUT), 2);
    int64_t nv = 4;
    assert_same_results(before, g, &nv);
    nn_graph_free(before);
    nn_graph_free(g);
}

Test(fuse, reduction_closes_a_kernel)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,5");
    NnId one = c(g, 1);
    NnId t = nn_ir_binary(g, NN_OP_SUB, x, one, L);
    t = nn_ir_unary(g, NN_OP_EXP, t, L);
    NnId s = nn_ir_reduce(g, NN_OP_REDUCE_SUM, t, 2, false, L);
    // The reduction's result feeds more elementwise work: a second kernel.
    NnId l = nn_ir_unary(g, NN_OP_LOG, s, L);
    nn_graph_add_output(g, "y", nn_ir_binary(g, NN_OP_MUL, l, l, L));
    NnGraph *before = nn_graph_clone(g);
    g = apply(nn_pass_fuse, g);
    NnId f[4];
    cr_assert_eq(fused_nodes(g, f, 4), 2);
    cr_assert_eq(nn_fuse_count_kernels(g), 2);
    cr_assert_eq(nn_fuse_form(g->nodes[f[0]].attr.body), NN_FUSE_REDUCE);
    cr_assert_eq(nn_fuse_form(g->nodes[f[1]].attr.body), NN_FUSE_ELEMWISE);
    cr_assert_eq(g->nodes[f[1]].in[0], f[0]);
    int64_t nv = 3;
    assert_same_results(before, g, &nv);
    nn_graph_free(before);
    nn_graph_free(g);
}

Test(fuse, shared_values_and_outputs_are_not_absorbed)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,3");
    NnId w = par(g, "w", NN_DT_F32, "3,3");
    NnId e = nn_ir_unary(g, NN_OP_EXP, x, L);        // two consumers
    NnId mm = nn_ir_matmul(g, e, w, false, false, L); // a MATMUL reads e
    NnId two = c(g, 2);
    NnId m = nn_ir_binary(g, NN_OP_MUL, e, two, L);   // an output, read again below
    NnId sum = nn_ir_binary(g, NN_OP_ADD, m, mm, L);
    nn_graph_add_output(g, "m", m);
    nn_graph_add_output(g, "y", nn_ir_unary(g, NN_OP_NEG, sum, L));
    NnGraph *before = nn_graph_clone(g);
    g = apply(nn_pass_fuse, g);
    // exp stays alone (a matmul operand), mul stays alone (an output), and
    // neg(add(m, matmul)) is one matmul-epilogue kernel.
    cr_assert_eq(nn_graph_count_op(g, NN_OP_EXP), 1);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_MUL), 1);
    NnId f[4];
    cr_assert_eq(fused_nodes(g, f, 4), 1);
    cr_assert_eq(nn_fuse_form(g->nodes[f[0]].attr.body), NN_FUSE_MATMUL);
    cr_assert_eq(nn_fuse_count_kernels(g), 3);
    int64_t nv = 2;
    assert_same_results(before, g, &nv);
    nn_graph_free(before);
    nn_graph_free(g);
}

Test(fuse, forms_of_bodies)
{
    NnGraph *b = nn_graph_new();
    NnId x = src(b, NN_OP_INPUT, NULL, NN_DT_F32, "4,4");
    NnId w = src(b, NN_OP_INPUT, NULL, NN_DT_F32, "4,4");
    NnId e = nn_ir_unary(b, NN_OP_EXP, x, L);
    nn_graph_add_output(b, "out", e);
    cr_assert_eq(nn_fuse_form(b), NN_FUSE_ELEMWISE);
    b->outputs[0].id = nn_ir_reduce(b, NN_OP_REDUCE_MAX, e, 1, false, L);
    cr_assert_eq(nn_fuse_form(b), NN_FUSE_REDUCE);
    NnId mm = nn_ir_matmul(b, x, w, false, false, L);
    b->outputs[0].id = nn_ir_binary(b, NN_OP_ADD, mm, e, L);
    cr_assert_eq(nn_fuse_form(b), NN_FUSE_NONE, "a reduction that is not the output");
    nn_graph_free(b);

    b = nn_graph_new();
    x = src(b, NN_OP_INPUT, NULL, NN_DT_F32, "4,4");
    e = nn_ir_unary(b, NN_OP_EXP, x, L);
    mm = nn_ir_matmul(b, e, x, false, false, L);
    nn_graph_add_output(b, "out", mm);
    cr_assert_eq(nn_fuse_form(b), NN_FUSE_NONE, "matmul operands must be body inputs");
    nn_graph_free(b);
}

// A two-layer classifier, its gradients and SGD updates: one training step.
static NnGraph *mlp_step(void)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    NnId y = src(g, NN_OP_INPUT, "y", NN_DT_I32, "N");
    NnId p[4] = {par(g, "w1", NN_DT_F32, "4,8"), par(g, "b1", NN_DT_F32, "8"),
                 par(g, "w2", NN_DT_F32, "8,3"), par(g, "b2", NN_DT_F32, "3")};
    NnId h = nn_ir_matmul(g, x, p[0], false, false, L);
    h = nn_ir_binary(g, NN_OP_ADD, h, p[1], L);
    NnId zero = c(g, 0);
    h = nn_ir_binary(g, NN_OP_MAX, h, zero, L);
    NnId logits = nn_ir_matmul(g, h, p[2], false, false, L);
    logits = nn_ir_binary(g, NN_OP_ADD, logits, p[3], L);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, logits, 2, false, L);
    NnAttr ta = {.axis = 1};
    NnId in[2] = {logits, y};
    NnId picked = nn_ir_add(g, NN_OP_TAKE, in, 2, &ta, L);
    NnId ce = nn_ir_binary(g, NN_OP_SUB, lse, picked, L);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, ce, 1, false, L);
    cr_assert(loss >= 0, "%s", g->err);
    nn_graph_add_output(g, "loss", loss);
    NnId grads[4];
    cr_assert(nn_ad_grad(g, loss, p, 4, grads), "%s", g->err);
    NnId lr = c(g, 0.1);
    for (int k = 0; k < 4; k++) {
        NnId step = nn_ir_binary(g, NN_OP_MUL, grads[k], lr, L);
        nn_graph_add_update(g, p[k], nn_ir_binary(g, NN_OP_SUB, p[k], step, L));
    }
    return g;
}

static bool fusible_root(NnOp op)
{
    return op == NN_OP_BROADCAST || op == NN_OP_REDUCE_SUM || op == NN_OP_REDUCE_MEAN ||
           op == NN_OP_REDUCE_MAX || op == NN_OP_LOGSUMEXP ||
           (nn_op_has(op, NN_OPF_ELEMWISE) && nn_op_has(op, NN_OPF_FUSIBLE));
}

Test(fuse, mlp_training_step)
{
    NnGraph *g = nn_passes_run(mlp_step(), &(NnPassOptions){.stop = "opt"});
    NnGraph *before = nn_graph_clone(g);
    int unfused = nn_fuse_count_kernels(g);
    g = apply(nn_pass_fuse, g);
    int kernels = nn_fuse_count_kernels(g);
    cr_assert_lt(kernels, unfused - 5, "%d kernels from %d", kernels, unfused);
    // Every elementwise value whose only reader is another fusible op (and
    // that no output or update needs) went into that reader's kernel.
    int readers[4096] = {0};
    NnId reader[4096];
    cr_assert_lt(g->count, 4096);
    for (NnId i = 0; i < g->count; i++)
        for (int k = 0; k < g->nodes[i].nin; k++) {
            readers[g->nodes[i].in[k]]++;
            reader[g->nodes[i].in[k]] = i;
        }
    for (int k = 0; k < g->noutputs; k++)
        readers[g->outputs[k].id] += 2;
    for (int k = 0; k < g->nupdates; k++)
        readers[g->updates[k].value] += 2;
    for (NnId i = 0; i < g->count; i++) {
        NnOp op = g->nodes[i].op;
        if (op == NN_OP_CONST || nn_op_has(op, NN_OPF_REDUCE) || !fusible_root(op) ||
            readers[i] != 1)
            continue;
        NnOp rop = g->nodes[reader[i]].op;
        cr_assert(!fusible_root(rop), "%%%d (%s) was left outside its only reader %%%d (%s)", i,
                  nn_op_name(op), reader[i], nn_op_name(rop));
    }
    // Forward: matmul + bias (+ relu) kernels; backward: the relu mask rides
    // on a matmul epilogue or an elementwise kernel.
    int forms[128] = {0};
    for (NnId i = 0; i < g->count; i++)
        if (g->nodes[i].op == NN_OP_FUSED)
            forms[nn_fuse_form(g->nodes[i].attr.body)]++;
    cr_assert_geq(forms['M'], 2, "matmul epilogues: %d", forms['M']);
    cr_assert_geq(forms['E'], 1);
    cr_assert_eq(forms[0], 0, "every body has a valid form");
    int64_t nv = 6;
    assert_same_results(before, g, &nv);
    nn_graph_free(before);
    nn_graph_free(g);
}

// A sum of many separate values (a gradient summed over the steps of an
// unrolled loop) splits into kernels of at most NN_FUSE_MAXUSES operand uses,
// so no FUSED body has more INPUTs than a backend's leaf table holds.
Test(fuse, long_sums_split_into_bounded_kernels)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,3");
    NnId acc = -1;
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        NnId t = nn_ir_binary(g, NN_OP_MUL, x, par(g, name, NN_DT_F32, "3"), L);
        acc = acc < 0 ? t : nn_ir_binary(g, NN_OP_ADD, acc, t, L);
    }
    nn_graph_add_output(g, "y", acc);
    NnGraph *before = nn_graph_clone(g);
    g = apply(nn_pass_fuse, g);
    NnId f[64];
    int n = fused_nodes(g, f, 64);
    cr_assert_gt(n, 1, "one body would need 101 inputs");
    for (int i = 0; i < n; i++)
        cr_expect_leq(g->nodes[f[i]].nin, NN_FUSE_MAXUSES, "kernel %d has %d inputs", i,
                      g->nodes[f[i]].nin);
    int64_t nv = 2;
    assert_same_results(before, g, &nv);
    nn_graph_free(before);
    nn_graph_free(g);
}
