// Loops, indexing and tuples in the elaborator: result types of stacked
// outputs and loop-assigned names, scoping of the loop variable, and the
// diagnostics for misuse (exact text and location), through nn_lower_model.
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ast.h"
#include "autodiff.h"
#include "lower.h"
#include "pass.h"
#include "sema.h"

typedef struct Compiled {
    NnCtx c;
    NnGraph *g;
} Compiled;

static void compile(Compiled *k, const char *src)
{
    memset(k, 0, sizeof *k);
    nn_ctx_init(&k->c, NULL);
    k->c.stdlib_dir = NN_SOURCE_DIR "/stdlib";
    NnAst *ast = nn_parse(&k->c, nn_source_from_string(k->c.arena, "t.nn", src));
    cr_assert_eq(k->c.diags.nerrors, 0, "%s", nn_diags_text(&k->c.diags));
    NnProgram *p = nn_sema(&k->c, ast);
    if (k->c.diags.nerrors == 0)
        k->g = nn_lower_model(&k->c, p, nn_sema_find(p, "m")->ast, false);
}

static void release(Compiled *k)
{
    if (k->g)
        nn_graph_free(k->g);
    nn_ctx_fini(&k->c);
}

static const char *diags(Compiled *k) { return nn_diags_text(&k->c.diags); }

static void expect_type(Compiled *k, const char *want)
{
    cr_assert(k->g, "%s", diags(k));
    NnNode *n = &k->g->nodes[nn_graph_output(k->g, "output")];
    char t[128];
    cr_expect_str_eq(nn_type_str(k->g, n->dtype, &n->shape, t, sizeof t), want);
}

static void expect_error(Compiled *k, const char *want)
{
    cr_assert_null(k->g, "lowering should fail with %s", want);
    cr_expect(strstr(diags(k), want), "want '%s' in:\n%s", want, diags(k));
    cr_expect_eq(k->c.diags.nerrors, 1, "one error only:\n%s", diags(k));
}

Test(loop, stacked_output_takes_the_loop_axis)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 7, 3]) -> f32[N, 3, 5] {\n"
                "    h = x[:, 0]\n"
                "    for t in 2..7 {\n"
                "        h = tanh(h + x[:, t])\n"
                "        out[:, :, t] = h\n"
                "    }\n"
                "    return out\n"
                "}\n");
    expect_type(&k, "f32[N, 3, 5]");
    release(&k);
}

Test(loop, nested_loops_and_names_assigned_inside)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 4, 3]) -> f32[N, 6] {\n"
                "    s = x[:, 0] * 0\n"
                "    for i in 0..2 {\n"
                "        for j in 0..4 {\n"
                "            s = s + x[:, j] * i\n"
                "            last = x[:, j]\n"
                "        }\n"
                "    }\n"
                "    return concat([s, last], axis = 1)\n"
                "}\n");
    expect_type(&k, "f32[N, 6]");
    release(&k);
}

Test(loop, loop_variable_is_not_visible_after_the_loop)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 4]) -> f32[N] {\n"
                "    for t in 0..4 {\n"
                "        y = x[:, t]\n"
                "    }\n"
                "    return x[:, t]\n"
                "}\n");
    expect_error(&k, "t.nn:5:17: error: unknown name 't'");
    release(&k);
}

Test(loop, return_inside_a_loop)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 4]) -> f32[N, 4] {\n"
                "    for t in 0..4 {\n"
                "        return x\n"
                "    }\n"
                "    return x\n"
                "}\n");
    expect_error(&k, "t.nn:3:9: error: 'return' inside a loop is not supported");
    release(&k);
}

Test(loop, unrolling_budget_counts_nested_loops)
{
    // Arithmetic on the loop variable keeps the inner loop unrolled.
    Compiled k;
    compile(&k, "model m(x: f32[N, 4]) -> f32[N, 4] {\n"
                "    for i in 0..200 {\n"
                "        for j in 0..200 {\n"
                "            x = x * j\n"
                "        }\n"
                "    }\n"
                "    return x\n"
                "}\n");
    expect_error(&k, "t.nn:3:9: error: the loop has 200 steps; loops are unrolled");
    release(&k);
}

Test(loop, list_index_and_split_sizes)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 6]) -> f32[N, 3] {\n"
                "    return split(x, [1, 2, 3], axis = -1)[-1]\n"
                "}\n");
    expect_type(&k, "f32[N, 3]");
    release(&k);
}

Test(loop, split_must_divide)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 6]) -> f32[N, 3] {\n"
                "    a, b, c, d = split(x, 4, axis = 1)\n"
                "    return a\n"
                "}\n");
    expect_error(&k, "t.nn:2:18: error: split: axis 1 of f32[N, 6] (size 6) does not divide");
    release(&k);
}

Test(loop, stack_needs_one_type)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 6]) -> f32[N, 2, 6] {\n"
                "    return stack([x, x[:, 1:]], axis = 1)\n"
                "}\n");
    expect_error(&k, "stack: item 1 is f32[N, 5] but item 0 is f32[N, 6]");
    release(&k);
}

Test(loop, indexed_assignment_checks_the_value_type)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 6]) -> f32[N, 6] {\n"
                "    x[:, 1:3] = x[:, :3]\n"
                "    return x\n"
                "}\n");
    expect_error(&k, "t.nn:2:17: error: cannot assign f32[N, 3] to a part of 'x' of type f32[N, 2]");
    release(&k);
}

Test(loop, the_batch_dimension_is_taken_whole)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 6]) -> f32[6] {\n"
                "    return x[0]\n"
                "}\n");
    expect_error(&k, "t.nn:2:14: error: dimension N of f32[N, 6] can only be taken whole (':')");
    release(&k);
}

// Nodes of g and of every body inside it.
static int count_all(const NnGraph *g)
{
    int n = g->count;
    for (int i = 0; i < g->count; i++)
        if (g->nodes[i].attr.body)
            n += count_all(g->nodes[i].attr.body);
    return n;
}

static const char *lstm_src(char *buf, size_t len, int steps)
{
    snprintf(buf, len,
             "import std\n"
             "model m(x: f32[N, %d, 3]) -> f32[N, 5] {\n"
             "    return lstm_last(x, 5)\n"
             "}\n",
             steps);
    return buf;
}

Test(loop, a_loop_is_one_node_whatever_its_length)
{
    char src[256];
    Compiled a, b;
    compile(&a, lstm_src(src, sizeof src, 10));
    compile(&b, lstm_src(src, sizeof src, 1000));
    cr_assert(a.g && b.g, "%s%s", diags(&a), diags(&b));
    cr_expect_eq(nn_graph_count_op(a.g, NN_OP_LOOP), 1);
    cr_expect_eq(count_all(a.g), count_all(b.g), "IR grows with the steps: %d vs %d",
                 count_all(a.g), count_all(b.g));
    // So does its gradient: one reverse loop.
    NnId loss = nn_ir_reduce(b.g, NN_OP_REDUCE_SUM, nn_graph_output(b.g, "output"), 3, false,
                             (NnLoc){0});
    NnId wrt[4], grads[4];
    int n = 0;
    for (NnId i = 0; i < b.g->count && n < 4; i++)
        if (b.g->nodes[i].op == NN_OP_PARAM)
            wrt[n++] = i;
    cr_assert(nn_ad_grad(b.g, loss, wrt, n, grads));
    cr_expect_eq(nn_graph_count_op(b.g, NN_OP_LOOP), 2);
    cr_expect(count_all(b.g) < 400, "gradient IR has %d nodes", count_all(b.g));
    release(&a);
    release(&b);
}

Test(loop, arithmetic_on_the_loop_variable_unrolls)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 4]) -> f32[N, 4] {\n"
                "    h = x\n"
                "    for t in 0..3 {\n"
                "        h = h * t + x[:, t + 1:t + 2]\n"
                "    }\n"
                "    return h\n"
                "}\n");
    expect_type(&k, "f32[N, 4]");
    cr_expect_eq(nn_graph_count_op(k.g, NN_OP_LOOP), 0);
    cr_expect_eq(nn_graph_count_op(k.g, NN_OP_INPUT), 1, "no placeholder left behind");
    release(&k);
}

Test(loop, unread_results_are_dropped_before_the_body_is_optimized)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 6, 3]) -> f32[N, 5] {\n"
                "    param wx: f32[3, 20] = glorot_uniform()\n"
                "    param wh: f32[5, 20] = orthogonal()\n"
                "    h = zeros([N, 5]); c = zeros([N, 5])\n"
                "    for t in 0..6 {\n"
                "        i, f, g, o = split(x[:, t] @ wx + h @ wh, 4, axis = 1)\n"
                "        c = sigmoid(f) * c + sigmoid(i) * tanh(g)\n"
                "        h = sigmoid(o) * tanh(c)\n"
                "    }\n"
                "    return h\n"
                "}\n");
    cr_assert(k.g, "%s", diags(&k));
    // The body also binds i, f, g, o: carried out of the loop as built,
    // dropped by the loops pass since nothing reads them.
    NnId lp = -1;
    for (NnId i = 0; i < k.g->count; i++)
        if (k.g->nodes[i].op == NN_OP_LOOP)
            lp = i;
    cr_assert(lp >= 0);
    cr_expect_gt(k.g->nodes[lp].attr.ncarry, 2);
    NnGraph *g = nn_passes_run(k.g, NULL);
    k.g = g;
    for (NnId i = 0; i < g->count; i++)
        if (g->nodes[i].op == NN_OP_LOOP) {
            cr_expect_eq(g->nodes[i].attr.ncarry, 2, "h and c only");
            cr_expect_gt(nn_graph_count_op(g->nodes[i].attr.body, NN_OP_FUSED), 0,
                         "the body is fused");
        }
    release(&k);
}

Test(loop, numbers_set_in_the_body_stay_visible)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 4, 3]) -> f32[N, 3] {\n"
                "    h = x[:, 0]\n"
                "    for t in 0..4 {\n"
                "        scale = 2\n"
                "        h = tanh(h + x[:, t])\n"
                "    }\n"
                "    return h * scale\n"
                "}\n");
    expect_type(&k, "f32[N, 3]");
    cr_expect_eq(nn_graph_count_op(k.g, NN_OP_LOOP), 1);
    release(&k);
}

Test(loop, the_dump_shows_the_body)
{
    char src[256];
    Compiled k;
    compile(&k, lstm_src(src, sizeof src, 4));
    cr_assert(k.g, "%s", diags(&k));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nn_ir_print(f, k.g);
    fclose(f);
    cr_expect(strstr(buf, "loop(") && strstr(buf, "trips=4") && strstr(buf, ", stack %") &&
                  strstr(buf, "    %0 = input loop.carry : f32[N, 5]"),
              "%s", buf);
    free(buf);
    release(&k);
}
