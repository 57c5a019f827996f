// FLOP counting (ir/flops.c) on hand-built graphs with known counts: matmul
// 2MNK with either operand transposed, a convolution and its two gradients
// from their attributes, elementwise ops and reductions, symbolic dims bound
// per call, and fusion not changing the count.
#include "flops.h"
#include "pass_helpers.h"

static const NnLoc L = {0};

Test(flops, matmul_is_2mnk_with_batch_bound)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,784");
    NnId w = par(g, "w", NN_DT_F32, "784,256");
    NnId y = nn_ir_matmul(g, x, w, false, false, L);       // N x 256 x 784
    NnId dw = nn_ir_matmul(g, x, y, true, false, L);       // 784 x 256 x N
    NnId dx = nn_ir_matmul(g, y, w, false, true, L);       // N x 784 x 256
    nn_graph_add_output(g, "dw", dw);
    nn_graph_add_output(g, "dx", dx);
    int64_t n = 128;
    NnFlops f = nn_graph_flops(g, &n);
    cr_assert_float_eq(f.contract, 3 * 2.0 * 128 * 256 * 784, 1);
    cr_assert_float_eq(f.elem + f.reduce, 0, 0);
    cr_assert_float_eq(f.total, f.contract, 0);
    cr_assert_eq(f.nodes, 5);
    NnFlops one = nn_graph_flops(g, NULL);
    cr_assert_float_eq(one.total, 3 * 2.0 * 256 * 784, 1, "no binding: N counts as 1");
    nn_graph_free(g);
}

Test(flops, conv_and_gradients_from_attributes)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,32,14,14");
    NnId w = par(g, "w", NN_DT_F32, "64,32,5,5");
    NnConv2d c = {.stride = {1, 1}, .dilation = {1, 1}, .pad = {2, 2, 2, 2}, .groups = 1};
    NnId y = nn_ir_conv2d(g, x, w, &c, L);
    cr_assert(y >= 0, "%s", g->err);
    NnShape xs = g->nodes[x].shape, ws = g->nodes[w].shape;
    NnId dx = nn_ir_conv2d_bwd_data(g, y, w, &xs, &c, L);
    NnId dw = nn_ir_conv2d_bwd_filter(g, x, y, &ws, &c, L);
    cr_assert(dx >= 0 && dw >= 0, "%s", g->err);
    nn_graph_add_output(g, "dx", dx);
    nn_graph_add_output(g, "dw", dw);
    int64_t n = 2;
    NnFlops f = nn_graph_flops(g, &n);
    double one = 2.0 * 2 * 64 * 14 * 14 * 32 * 5 * 5; // 2 per multiply-add of the definition
    cr_assert_float_eq(f.contract, 3 * one, 1);
    nn_graph_free(g);
}

Test(flops, grouped_conv_counts_its_groups_channels)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "1,8,6,6");
    NnId w = par(g, "w", NN_DT_F32, "4,2,3,3"); // 4 groups of 2 channels
    NnConv2d c = {.stride = {1, 1}, .dilation = {1, 1}, .groups = 4};
    NnId y = nn_ir_conv2d(g, x, w, &c, L);
    cr_assert(y >= 0, "%s", g->err);
    nn_graph_add_output(g, "y", y);
    cr_assert_float_eq(nn_graph_flops(g, NULL).contract, 2.0 * 4 * 4 * 4 * 2 * 3 * 3, 1e-9);
    nn_graph_free(g);
}

Test(flops, elementwise_and_reductions)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,10");
    NnId b = par(g, "b", NN_DT_F32, "10");
    NnId h = nn_ir_binary(g, NN_OP_ADD, x, b, L); // 10N
    NnId e = nn_ir_unary(g, NN_OP_EXP, h, L);     // 10N
    NnId s = nn_ir_reduce(g, NN_OP_REDUCE_SUM, e, 2, false, L); // 10N inputs
    NnShape t = shp(g, "N,10");
    NnId r = nn_ir_reshape(g, e, &t, L); // layout: free
    nn_graph_add_output(g, "s", s);
    nn_graph_add_output(g, "r", r);
    int64_t n = 3;
    NnFlops f = nn_graph_flops(g, &n);
    cr_assert_float_eq(f.elem, 60, 0);
    cr_assert_float_eq(f.reduce, 30, 0);
    cr_assert_float_eq(f.contract, 0, 0);
    cr_assert_float_eq(f.total, 90, 0);
    nn_graph_free(g);
}

// Fusion moves nodes into bodies; the work the graph asks for stays the same.
Test(flops, fusion_keeps_the_count)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    NnId w = par(g, "w", NN_DT_F32, "4,8");
    NnId b = par(g, "b", NN_DT_F32, "8");
    NnId h = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, x, w, false, false, L), b, L);
    NnId y = nn_ir_unary(g, NN_OP_TANH, h, L);
    nn_graph_add_output(g, "y", y);
    int64_t n = 16;
    NnFlops before = nn_graph_flops(g, &n);
    cr_assert_float_eq(before.total, 2.0 * 16 * 8 * 4 + 2 * 16 * 8, 0);
    g = apply(nn_pass_fuse, g);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_FUSED), 1);
    NnFlops after = nn_graph_flops(g, &n);
    cr_assert_float_eq(after.total, before.total, 0);
    cr_assert_float_eq(after.contract, before.contract, 0);
    nn_graph_free(g);
}
