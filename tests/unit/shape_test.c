// Shape rules (ir/op_*.c) through the builders: valid inputs, symbolic dims,
// and the exact user-facing messages for mismatches.
#include <criterion/criterion.h>

#include "ir_helpers.h"
#include "rules.h"

static NnGraph *g;
static const NnLoc L = {0};

static void setup(void) { g = nn_graph_new(); }
static void teardown(void) { nn_graph_free(g); }

TestSuite(shape, .init = setup, .fini = teardown);

#define EXPECT_TYPE(id, str)                                                                       \
    do {                                                                                           \
        NnId id_ = (id);                                                                           \
        cr_assert(id_ >= 0, "unexpected error: %s", g->err);                                       \
        cr_assert_str_eq(type_of(g, id_), str);                                                    \
    } while (0)

#define EXPECT_ERR(id, msg)                                                                        \
    do {                                                                                           \
        cr_assert_eq((id), -1);                                                                    \
        cr_assert_str_eq(g->err, msg);                                                             \
    } while (0)

Test(shape, sources_take_attr_type)
{
    EXPECT_TYPE(src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,784"), "f32[N, 784]");
    EXPECT_TYPE(par(g, "w", NN_DT_F64, "784,10"), "f64[784, 10]");
    EXPECT_TYPE(src(g, NN_OP_STATE, "step", NN_DT_I32, ""), "i32");
    EXPECT_TYPE(nn_ir_const(g, 2.5, NN_DT_F32, L), "f32");
    NnAttr a = {.value = 1, .dtype = NN_DT_F32, .shape = shp(g, "N,3")};
    EXPECT_TYPE(nn_ir_add(g, NN_OP_CONST, NULL, 0, &a, L), "f32[N, 3]");
}

Test(shape, random_needs_scalar_step)
{
    NnId step = src(g, NN_OP_STATE, "step", NN_DT_I32, "");
    NnAttr a = {.dtype = NN_DT_F32, .shape = shp(g, "N,4"), .seed = 3};
    EXPECT_TYPE(nn_ir_add(g, NN_OP_RAND_UNIFORM, &step, 1, &a, L), "f32[N, 4]");
    EXPECT_TYPE(nn_ir_add(g, NN_OP_RAND_NORMAL, &step, 1, &a, L), "f32[N, 4]");
    NnId v = par(g, "v", NN_DT_I32, "2");
    EXPECT_ERR(nn_ir_add(g, NN_OP_RAND_NORMAL, &v, 1, &a, L),
               "rand_normal: the step counter must be a scalar, got i32[2]");
}

Test(shape, unary_keeps_type)
{
    NnId x = par(g, "x", NN_DT_F32, "N,5");
    for (NnOp op = 0; op < NN_OP_COUNT; op++)
        if (nn_op_has(op, NN_OPF_ELEMWISE) && nn_op_arity(op) == 1 && op != NN_OP_CAST)
            EXPECT_TYPE(nn_ir_unary(g, op, x, L), "f32[N, 5]");
}

Test(shape, float_only_unary_rejects_i32)
{
    NnId i = par(g, "i", NN_DT_I32, "4");
    EXPECT_ERR(nn_ir_unary(g, NN_OP_EXP, i, L), "exp expects a float tensor, got i32[4]");
    EXPECT_ERR(nn_ir_unary(g, NN_OP_LOG, i, L), "log expects a float tensor, got i32[4]");
    EXPECT_TYPE(nn_ir_unary(g, NN_OP_NEG, i, L), "i32[4]");
    EXPECT_TYPE(nn_ir_unary(g, NN_OP_ABS, i, L), "i32[4]");
}

Test(shape, cast_changes_dtype)
{
    NnId x = par(g, "x", NN_DT_F32, "N,5");
    EXPECT_TYPE(nn_ir_cast(g, x, NN_DT_F64, L), "f64[N, 5]");
    EXPECT_TYPE(nn_ir_cast(g, x, NN_DT_I32, L), "i32[N, 5]");
}

Test(shape, binary_broadcasts)
{
    NnId a = src(g, NN_OP_INPUT, "a", NN_DT_F32, "N,256");
    NnId b = par(g, "b", NN_DT_F32, "256");
    NnId c = par(g, "c", NN_DT_F32, "N,1");
    NnId d = par(g, "d", NN_DT_F32, "1,256");
    NnId s = nn_ir_const(g, 2, NN_DT_F32, L);
    EXPECT_TYPE(nn_ir_binary(g, NN_OP_ADD, a, b, L), "f32[N, 256]");
    EXPECT_TYPE(nn_ir_binary(g, NN_OP_MUL, b, a, L), "f32[N, 256]");
    EXPECT_TYPE(nn_ir_binary(g, NN_OP_SUB, c, d, L), "f32[N, 256]");
    EXPECT_TYPE(nn_ir_binary(g, NN_OP_DIV, a, s, L), "f32[N, 256]");
    EXPECT_TYPE(nn_ir_binary(g, NN_OP_POW, s, c, L), "f32[N, 1]");
    EXPECT_TYPE(nn_ir_binary(g, NN_OP_MAX, a, a, L), "f32[N, 256]");
}

Test(shape, comparisons_keep_input_dtype)
{
    NnId a = par(g, "a", NN_DT_F64, "N,3");
    NnId b = par(g, "b", NN_DT_F64, "3");
    for (NnOp op = NN_OP_GT; op <= NN_OP_NE; op++)
        EXPECT_TYPE(nn_ir_binary(g, op, a, b, L), "f64[N, 3]");
}

Test(shape, binary_mismatch_messages)
{
    NnId a = src(g, NN_OP_INPUT, "a", NN_DT_F32, "N,256");
    NnId b = par(g, "b", NN_DT_F32, "128");
    EXPECT_ERR(nn_ir_binary(g, NN_OP_ADD, a, b, L), "cannot add f32[N, 256] and f32[128]");
    EXPECT_ERR(nn_ir_binary(g, NN_OP_SUB, a, b, L), "cannot subtract f32[128] from f32[N, 256]");
    EXPECT_ERR(nn_ir_binary(g, NN_OP_MUL, a, b, L), "cannot multiply f32[N, 256] and f32[128]");
    EXPECT_ERR(nn_ir_binary(g, NN_OP_DIV, a, b, L), "cannot divide f32[N, 256] by f32[128]");
    EXPECT_ERR(nn_ir_binary(g, NN_OP_POW, a, b, L),
               "cannot raise f32[N, 256] to the power f32[128]");
    EXPECT_ERR(nn_ir_binary(g, NN_OP_GT, a, b, L), "cannot compare f32[N, 256] and f32[128]");
}

Test(shape, symbols_match_only_themselves)
{
    NnId n = par(g, "n", NN_DT_F32, "N,4");
    NnId t = par(g, "t", NN_DT_F32, "T,4");
    NnId k = par(g, "k", NN_DT_F32, "8,4");
    NnId one = par(g, "one", NN_DT_F32, "1,4");
    EXPECT_ERR(nn_ir_binary(g, NN_OP_ADD, n, t, L), "cannot add f32[N, 4] and f32[T, 4]");
    EXPECT_ERR(nn_ir_binary(g, NN_OP_ADD, n, k, L), "cannot add f32[N, 4] and f32[8, 4]");
    EXPECT_TYPE(nn_ir_binary(g, NN_OP_ADD, one, n, L), "f32[N, 4]");
    EXPECT_TYPE(nn_ir_binary(g, NN_OP_ADD, n, n, L), "f32[N, 4]");
}

Test(shape, binary_dtype_mismatch)
{
    NnId a = par(g, "a", NN_DT_F32, "4");
    NnId b = par(g, "b", NN_DT_F64, "4");
    NnId i = par(g, "i", NN_DT_I32, "4");
    EXPECT_ERR(nn_ir_binary(g, NN_OP_ADD, a, b, L),
               "cannot add f32[4] and f64[4]: dtypes differ");
    EXPECT_ERR(nn_ir_binary(g, NN_OP_POW, i, i, L),
               "cannot raise i32[4] to the power i32[4]: needs float tensors");
    EXPECT_TYPE(nn_ir_binary(g, NN_OP_ADD, i, i, L), "i32[4]");
}

Test(shape, broadcast_shapes_helper)
{
    NnShape a = shp(g, "N,1,3"), b = shp(g, "5,1"), out;
    cr_assert(nn_broadcast_shapes(&a, &b, &out));
    cr_assert_str_eq(nn_type_str(g, NN_DT_F32, &out, (char[64]){0}, 64), "f32[N, 5, 3]");
    NnShape c = shp(g, "2,4");
    cr_assert_not(nn_broadcast_shapes(&a, &c, &out));
}

Test(shape, select_broadcasts_three)
{
    NnId c = par(g, "c", NN_DT_F32, "N,1");
    NnId a = par(g, "a", NN_DT_F32, "4");
    NnId z = nn_ir_const(g, 0, NN_DT_F32, L);
    EXPECT_TYPE(nn_ir_select(g, c, a, z, L), "f32[N, 4]");
    NnId bad = par(g, "bad", NN_DT_F32, "3");
    EXPECT_ERR(nn_ir_select(g, c, a, bad, L), "cannot select between f32[4] and f32[3]");
    NnId d = par(g, "d", NN_DT_F64, "4");
    EXPECT_ERR(nn_ir_select(g, c, a, d, L),
               "cannot select between f32[4] and f64[4]: dtypes differ");
    NnId cc = par(g, "cc", NN_DT_I32, "5,2");
    EXPECT_ERR(nn_ir_select(g, cc, a, z, L),
               "select: condition i32[5, 2] does not broadcast with f32[4] and f32");
}

Test(shape, dropout_checks_rate_and_step)
{
    NnId x = par(g, "x", NN_DT_F32, "N,8");
    NnId step = src(g, NN_OP_STATE, "step", NN_DT_I32, "");
    NnId rate = src(g, NN_OP_STATE, "hyper/dropout1", NN_DT_F32, "");
    NnAttr a = {.seed = 1};
    NnId in[3] = {x, step, rate};
    EXPECT_TYPE(nn_ir_add(g, NN_OP_DROPOUT, in, 3, &a, L), "f32[N, 8]");
    in[2] = src(g, NN_OP_STATE, "r", NN_DT_I32, "");
    EXPECT_ERR(nn_ir_add(g, NN_OP_DROPOUT, in, 3, &a, L),
               "dropout: the rate must be a float scalar, got i32");
    in[2] = x;
    EXPECT_ERR(nn_ir_add(g, NN_OP_DROPOUT, in, 3, &a, L),
               "dropout: the rate must be a float scalar, got f32[N, 8]");
    in[2] = rate;
    in[1] = x;
    EXPECT_ERR(nn_ir_add(g, NN_OP_DROPOUT, in, 3, &a, L),
               "dropout: the step counter must be a scalar, got f32[N, 8]");
}

Test(shape, reshape_counts_elements)
{
    NnId x = par(g, "x", NN_DT_F32, "4,6");
    NnShape s = shp(g, "2,12");
    EXPECT_TYPE(nn_ir_reshape(g, x, &s, L), "f32[2, 12]");
    s = shp(g, "5,5");
    EXPECT_ERR(nn_ir_reshape(g, x, &s, L), "cannot reshape f32[4, 6] (24 elements) to f32[5, 5]");
    NnId y = par(g, "y", NN_DT_F32, "N,6");
    s = shp(g, "N,2,3");
    EXPECT_TYPE(nn_ir_reshape(g, y, &s, L), "f32[N, 2, 3]");
    s = shp(g, "3,N,2");
    EXPECT_TYPE(nn_ir_reshape(g, y, &s, L), "f32[3, N, 2]");
    s = shp(g, "T,6");
    EXPECT_ERR(nn_ir_reshape(g, y, &s, L), "cannot reshape f32[N, 6] (N*6 elements) to f32[T, 6]");
    s = shp(g, "36");
    EXPECT_ERR(nn_ir_reshape(g, y, &s, L), "cannot reshape f32[N, 6] (N*6 elements) to f32[36]");
}

Test(shape, transpose_permutes)
{
    NnId x = par(g, "x", NN_DT_F32, "N,3,5");
    EXPECT_TYPE(nn_ir_transpose(g, x, (int[NN_MAX_RANK]){2, 0, 1}, L), "f32[5, N, 3]");
    EXPECT_ERR(nn_ir_transpose(g, x, (int[NN_MAX_RANK]){0, 0, 1}, L),
               "transpose: perm is not a permutation of the axes of f32[N, 3, 5]");
    EXPECT_ERR(nn_ir_transpose(g, x, (int[NN_MAX_RANK]){0, 1, 3}, L),
               "transpose: perm is not a permutation of the axes of f32[N, 3, 5]");
}

Test(shape, broadcast_and_sumto)
{
    NnId b = par(g, "b", NN_DT_F32, "3");
    NnShape s = shp(g, "N,3");
    NnId big = nn_ir_broadcast(g, b, &s, L);
    EXPECT_TYPE(big, "f32[N, 3]");
    NnShape t = shp(g, "1,3");
    EXPECT_TYPE(nn_ir_sumto(g, big, &t, L), "f32[1, 3]");
    t = shp(g, "3");
    EXPECT_TYPE(nn_ir_sumto(g, big, &t, L), "f32[3]");
    t = shp(g, "4,5");
    EXPECT_ERR(nn_ir_broadcast(g, b, &t, L), "cannot broadcast f32[3] to f32[4, 5]");
    t = shp(g, "2,3");
    EXPECT_ERR(nn_ir_sumto(g, big, &t, L), "cannot sum f32[N, 3] down to f32[2, 3]");
    t = shp(g, "3,N,3");
    EXPECT_ERR(nn_ir_sumto(g, big, &t, L), "cannot sum f32[N, 3] down to f32[3, N, 3]");
}

Test(shape, reductions)
{
    NnId x = par(g, "x", NN_DT_F32, "N,4,5");
    EXPECT_TYPE(nn_ir_reduce(g, NN_OP_REDUCE_SUM, x, 1u << 1, false, L), "f32[N, 5]");
    EXPECT_TYPE(nn_ir_reduce(g, NN_OP_REDUCE_MEAN, x, 1u << 0, true, L), "f32[1, 4, 5]");
    EXPECT_TYPE(nn_ir_reduce(g, NN_OP_REDUCE_MAX, x, 7, false, L), "f32");
    EXPECT_TYPE(nn_ir_reduce(g, NN_OP_LOGSUMEXP, x, 4, true, L), "f32[N, 4, 1]");
    EXPECT_ERR(nn_ir_reduce(g, NN_OP_REDUCE_SUM, x, 1u << 3, false, L),
               "reduce_sum: axis out of range for f32[N, 4, 5]");
    NnId i = par(g, "i", NN_DT_I32, "3");
    EXPECT_TYPE(nn_ir_reduce(g, NN_OP_REDUCE_SUM, i, 1, false, L), "i32");
    EXPECT_ERR(nn_ir_reduce(g, NN_OP_REDUCE_MEAN, i, 1, false, L),
               "reduce_mean expects a float tensor, got i32[3]");
}

Test(shape, matmul)
{
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,784");
    NnId w = par(g, "w", NN_DT_F32, "784,256");
    NnId v = par(g, "v", NN_DT_F32, "256,10");
    EXPECT_TYPE(nn_ir_matmul(g, x, w, false, false, L), "f32[N, 256]");
    EXPECT_TYPE(nn_ir_matmul(g, x, x, true, false, L), "f32[784, 784]");
    EXPECT_TYPE(nn_ir_matmul(g, x, x, false, true, L), "f32[N, N]");
    EXPECT_TYPE(nn_ir_matmul(g, v, w, true, true, L), "f32[10, 784]");
    EXPECT_ERR(nn_ir_matmul(g, x, v, false, false, L),
               "matmul: inner dimensions differ: f32[N, 784] @ f32[256, 10]");
    EXPECT_ERR(nn_ir_matmul(g, x, w, false, true, L),
               "matmul: inner dimensions differ: f32[N, 784] @ f32[784, 256]^T");
    NnId r1 = par(g, "r1", NN_DT_F32, "784");
    EXPECT_ERR(nn_ir_matmul(g, x, r1, false, false, L),
               "matmul: expects rank-2 operands (or A with leading dims): f32[N, 784] @ f32[784]");
    NnId d = par(g, "d", NN_DT_F64, "784,2");
    EXPECT_ERR(nn_ir_matmul(g, x, d, false, false, L),
               "matmul: operands must be float tensors of one dtype: f32[N, 784] @ f64[784, 2]");
}

// Leading dims of A are rows; A^T B contracts them all (ir/op_matmul.c).
Test(shape, matmul_leading_dims)
{
    NnId xs = src(g, NN_OP_INPUT, "xs", NN_DT_F32, "28,N,28");
    NnId w = par(g, "w", NN_DT_F32, "28,384");
    NnId wt = par(g, "wt", NN_DT_F32, "384,28");
    NnId d = src(g, NN_OP_INPUT, "d", NN_DT_F32, "28,N,384");
    EXPECT_TYPE(nn_ir_matmul(g, xs, w, false, false, L), "f32[28, N, 384]");
    EXPECT_TYPE(nn_ir_matmul(g, xs, wt, false, true, L), "f32[28, N, 384]");
    EXPECT_TYPE(nn_ir_matmul(g, xs, d, true, false, L), "f32[28, 384]");
    EXPECT_TYPE(nn_ir_matmul(g, d, w, false, true, L), "f32[28, N, 28]");
    EXPECT_ERR(nn_ir_matmul(g, xs, wt, false, false, L),
               "matmul: inner dimensions differ: f32[28, N, 28] @ f32[384, 28]");
    EXPECT_ERR(nn_ir_matmul(g, w, xs, false, false, L),
               "matmul: expects rank-2 operands (or A with leading dims): f32[28, 384] @ "
               "f32[28, N, 28]");
    NnId e = src(g, NN_OP_INPUT, "e", NN_DT_F32, "27,N,384");
    EXPECT_ERR(nn_ir_matmul(g, xs, e, true, false, L),
               "matmul: f32[28, N, 28]^T @ f32[27, N, 384]: with leading dims, A^T B needs B "
               "of A's leading dims, not transposed");
    EXPECT_ERR(nn_ir_matmul(g, xs, d, true, true, L),
               "matmul: f32[28, N, 28]^T @ f32[28, N, 384]^T: with leading dims, A^T B needs B "
               "of A's leading dims, not transposed");
}

Test(shape, take_onehot_argmax)
{
    NnId x = par(g, "x", NN_DT_F32, "N,10");
    NnId y = src(g, NN_OP_INPUT, "y", NN_DT_I32, "N");
    NnId in[2] = {x, y};
    NnAttr a = {.axis = 1};
    EXPECT_TYPE(nn_ir_add(g, NN_OP_TAKE, in, 2, &a, L), "f32[N]");
    NnId t = src(g, NN_OP_INPUT, "t", NN_DT_I32, "T");
    in[1] = t;
    EXPECT_ERR(nn_ir_add(g, NN_OP_TAKE, in, 2, &a, L),
               "take: f32[N, 10] and indices i32[T] differ in the first dimension");
    in[1] = x;
    EXPECT_ERR(nn_ir_add(g, NN_OP_TAKE, in, 2, &a, L),
               "take: expects x[N, C], indices[N] and axis 1, got f32[N, 10], f32[N, 10], axis 1");
    NnAttr h = {.depth = 10};
    EXPECT_TYPE(nn_ir_add(g, NN_OP_ONEHOT, &y, 1, &h, L), "f32[N, 10]");
    h.dtype = NN_DT_F64;
    EXPECT_TYPE(nn_ir_add(g, NN_OP_ONEHOT, &y, 1, &h, L), "f64[N, 10]");
    EXPECT_ERR(nn_ir_add(g, NN_OP_ONEHOT, &x, 1, &h, L),
               "onehot: expects i32 labels, got f32[N, 10]");
    NnAttr m = {.axis = 1};
    EXPECT_TYPE(nn_ir_add(g, NN_OP_ARGMAX, &x, 1, &m, L), "i32[N]");
    m.axis = 2;
    EXPECT_ERR(nn_ir_add(g, NN_OP_ARGMAX, &x, 1, &m, L),
               "argmax: axis 2 out of range for f32[N, 10]");
}

Test(shape, fused_takes_body_output)
{
    NnGraph *body = nn_graph_new();
    NnShape s = {.rank = 1, .dim = {7}};
    NnId a = nn_ir_source(body, NN_OP_INPUT, NULL, NN_DT_F64, &s, L);
    NnId b = nn_ir_source(body, NN_OP_INPUT, NULL, NN_DT_F64, &s, L);
    nn_graph_add_output(body, "out", nn_ir_binary(body, NN_OP_MUL, a, b, L));
    NnId x = par(g, "x", NN_DT_F64, "7");
    NnAttr at = {.body = body};
    NnId in[2] = {x, x};
    EXPECT_TYPE(nn_ir_add(g, NN_OP_FUSED, in, 2, &at, L), "f64[7]");
    EXPECT_ERR(nn_ir_add(g, NN_OP_FUSED, in, 1, &at, L), "fused: body has 2 inputs, node has 1");
    nn_graph_free(body);
}
