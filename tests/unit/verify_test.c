// nn_ir_verify catches each broken invariant (and accepts a good graph);
// nn_ir_print gives the documented one-line-per-node dump.
#include <criterion/criterion.h>
#include <stdio.h>

#include "ir_helpers.h"

static NnGraph *g;
static const NnLoc L = {0};
static NnId x, w, b, h, loss;

// x[N,4] @ w[4,3] + b[3] -> sum, with an SGD-like update of w.
static void setup(void)
{
    g = nn_graph_new();
    x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    w = par(g, "w", NN_DT_F32, "4,3");
    b = par(g, "b", NN_DT_F32, "3");
    h = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, x, w, false, false, L), b, L);
    loss = nn_ir_reduce(g, NN_OP_REDUCE_SUM, h, 3, false, L);
    nn_graph_add_output(g, "loss", loss);
    nn_graph_add_update(g, w, nn_ir_binary(g, NN_OP_MUL, w, nn_ir_const(g, 0.5, NN_DT_F32, L), L));
}

static void teardown(void) { nn_graph_free(g); }

TestSuite(verify, .init = setup, .fini = teardown);

#define EXPECT_BROKEN(substr)                                                                      \
    do {                                                                                           \
        cr_assert_not(nn_ir_verify(g));                                                            \
        cr_assert(strstr(g->err, substr), "message was: %s", g->err);                              \
    } while (0)

Test(verify, accepts_built_graph) { cr_assert(nn_ir_verify(g), "%s", g->err); }

Test(verify, input_not_earlier)
{
    g->nodes[h].in[1] = h;
    EXPECT_BROKEN("not an earlier node");
}

Test(verify, negative_input)
{
    g->nodes[h].in[0] = -1;
    EXPECT_BROKEN("not an earlier node");
}

Test(verify, wrong_arity)
{
    g->nodes[h].nin = 1;
    EXPECT_BROKEN("1 inputs, expected 2");
}

Test(verify, unknown_op)
{
    g->nodes[h].op = NN_OP_COUNT;
    EXPECT_BROKEN("unknown op");
}

Test(verify, stale_shape)
{
    g->nodes[h].shape.dim[1] = 5;
    EXPECT_BROKEN("type f32[N, 5], but its shape rule gives f32[N, 3]");
}

Test(verify, stale_dtype)
{
    g->nodes[loss].dtype = NN_DT_F64;
    EXPECT_BROKEN("but its shape rule gives f32");
}

Test(verify, shape_rule_now_fails)
{
    g->nodes[b].shape.dim[0] = 7; // a source must keep the type its attrs give
    EXPECT_BROKEN("type f32[7], but its shape rule gives f32[3]");
}

Test(verify, inputs_changed_under_a_node)
{
    NnId mm = g->nodes[h].in[0];
    g->nodes[mm].in[1] = x; // x[N,4] @ x[N,4] no longer type-checks
    EXPECT_BROKEN("shape rule fails: matmul: inner dimensions differ");
}

Test(verify, output_id_invalid)
{
    g->outputs[0].id = g->count;
    EXPECT_BROKEN("output loss");
}

Test(verify, update_target_not_param)
{
    g->updates[0].var = h;
    EXPECT_BROKEN("not a param or state");
}

Test(verify, update_type_differs)
{
    g->updates[0].value = b;
    EXPECT_BROKEN("w is f32[4, 3] but its new value");
}

Test(verify, update_id_invalid)
{
    g->updates[0].value = 1000;
    EXPECT_BROKEN("names no node");
}

Test(verify, fused_body_checked)
{
    NnGraph *body = nn_graph_new();
    NnShape s = {.rank = 1, .dim = {3}};
    NnId a = nn_ir_source(body, NN_OP_INPUT, NULL, NN_DT_F32, &s, L);
    nn_graph_add_output(body, "out", nn_ir_unary(body, NN_OP_EXP, a, L));
    NnAttr at = {.body = body};
    NnId f = nn_ir_add(g, NN_OP_FUSED, &b, 1, &at, L);
    cr_assert(f >= 0, "%s", g->err);
    cr_assert(nn_ir_verify(g), "%s", g->err);
    body->nodes[1].shape.dim[0] = 4;
    EXPECT_BROKEN("body:");
    nn_graph_free(body);
}

// The printer: one node per line with attrs and types, then outputs and updates.
Test(print, dump_is_stable)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nn_ir_print(f, g);
    fclose(f);
    const char *want = "%0 = input x : f32[N, 4]\n"
                       "%1 = param w : f32[4, 3]\n"
                       "%2 = param b : f32[3]\n"
                       "%3 = matmul(%0, %1) : f32[N, 3]\n"
                       "%4 = add(%3, %2) : f32[N, 3]\n"
                       "%5 = reduce_sum(%4) axes=[0, 1] : f32\n"
                       "%6 = const 0.5 : f32\n"
                       "%7 = mul(%1, %6) : f32[4, 3]\n"
                       "output loss = %5\n"
                       "update w <- %7\n";
    cr_assert_str_eq(buf, want);
    free(buf);
}

TestSuite(print, .init = setup, .fini = teardown);

static char *dump(const NnGraph *gr)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nn_ir_print(f, gr);
    fclose(f);
    return buf;
}

// Attributes print compactly; a FUSED body prints indented inside braces; a
// node with a source location ends in "# file:line:col".
Test(print, attrs_fused_and_locations)
{
    NnGraph *q = nn_graph_new();
    NnSource s = {.name = "models/m.nn", .text = "", .len = 0};
    NnLoc at = {.src = &s, .line = 12, .col = 7, .len = 1};
    NnId a = src(q, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    NnId w = par(q, "w", NN_DT_F32, "3,4");
    NnId m = nn_ir_matmul(q, a, w, false, true, at);
    nn_ir_reduce(q, NN_OP_LOGSUMEXP, m, 2, true, L);
    nn_ir_transpose(q, m, (int[NN_MAX_RANK]){1, 0}, L);
    NnGraph *body = nn_graph_new();
    NnShape s3 = {.rank = 1, .dim = {3}};
    NnId bi = nn_ir_source(body, NN_OP_INPUT, NULL, NN_DT_F32, &s3, L);
    nn_graph_add_output(body, "out", nn_ir_unary(body, NN_OP_EXP, bi, L));
    NnId b3 = par(q, "b", NN_DT_F32, "3");
    NnAttr fa = {.body = body};
    cr_assert(nn_ir_add(q, NN_OP_FUSED, &b3, 1, &fa, L) >= 0, "%s", q->err);
    char *got = dump(q);
    const char *want = "%0 = input x : f32[N, 4]\n"
                       "%1 = param w : f32[3, 4]\n"
                       "%2 = matmul(%0, %1) tb : f32[N, 3]  # m.nn:12:7\n"
                       "%3 = logsumexp(%2) axes=[1] keep : f32[N, 1]\n"
                       "%4 = transpose(%2) perm=[1, 0] : f32[3, N]\n"
                       "%5 = param b : f32[3]\n"
                       "%6 = fused(%5) : f32[3] {\n"
                       "    %0 = input : f32[3]\n"
                       "    %1 = exp(%0) : f32[3]\n"
                       "    return %1\n"
                       "}\n";
    cr_assert_str_eq(got, want);
    free(got);
    nn_graph_free(body);
    nn_graph_free(q);
}
