// The cleanup passes one by one on small hand-built graphs: node counts and ops
// after each, the invariants every pass keeps (inputs, locations, symbols,
// outputs, updates), the pipeline options, golden before/after dumps, and the
// interpreter's results before and after.
#include "pass_helpers.h"

static const NnLoc L = {0};

static double const_value(const NnGraph *g, NnId id)
{
    cr_assert_eq(g->nodes[id].op, NN_OP_CONST, "%%%d is %s", id, nn_op_name(g->nodes[id].op));
    return g->nodes[id].attr.value;
}

static NnId out(const NnGraph *g, const char *name) { return nn_graph_output(g, name); }

static NnId c(NnGraph *g, double v) { return nn_ir_const(g, v, NN_DT_F32, L); }

// ---- fold ----

static NnGraph *fold_graph(void)
{
    NnGraph *g = nn_graph_new();
    // One call per statement: golden dumps must not depend on the compiler's
    // order of evaluating arguments.
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    NnId c2 = c(g, 2), c3 = c(g, 3);
    NnId five = nn_ir_binary(g, NN_OP_ADD, c2, c3, L);
    NnId c0 = c(g, 0);
    NnId e = nn_ir_unary(g, NN_OP_NEG, c0, L);
    e = nn_ir_unary(g, NN_OP_EXP, e, L);
    NnShape s34 = shp(g, "3,4");
    NnId half = c(g, 0.5);
    NnId big = nn_ir_broadcast(g, half, &s34, L);
    NnId sum = nn_ir_reduce(g, NN_OP_REDUCE_SUM, big, 3, false, L); // 12 * 0.5
    NnId six = nn_ir_binary(g, NN_OP_ADD, five, e, L);
    NnId y = nn_ir_binary(g, NN_OP_MUL, x, six, L);
    nn_graph_add_output(g, "y", nn_ir_binary(g, NN_OP_ADD, y, sum, L));
    nn_graph_add_output(g, "sum", sum);
    // Sums over a symbolic dim have no known count: they stay.
    NnShape sn = shp(g, "N");
    NnId one = c(g, 1);
    NnId ones = nn_ir_broadcast(g, one, &sn, L);
    nn_graph_add_output(g, "n", nn_ir_reduce(g, NN_OP_REDUCE_SUM, ones, 1, false, L));
    return g;
}

Test(passes, fold_computes_constants)
{
    NnGraph *g = apply(nn_pass_fold, fold_graph());
    g = apply(nn_pass_dce, g);
    cr_assert_float_eq(const_value(g, out(g, "sum")), 6.0, 1e-12);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_EXP), 0);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_MUL), 1);
    NnId y = g->nodes[out(g, "y")].in[0];
    cr_assert_float_eq(const_value(g, g->nodes[y].in[1]), 6.0, 1e-12); // 2 + 3 + exp(-0)
    NnId n = out(g, "n");
    cr_assert_eq(g->nodes[n].op, NN_OP_REDUCE_SUM);
    // The symbolic broadcast of a constant is itself a CONST of shape [N].
    cr_assert_eq(g->nodes[g->nodes[n].in[0]].op, NN_OP_CONST);
    cr_assert_eq(g->nodes[g->nodes[n].in[0]].shape.dim[0], nn_sym_dim(g, "N"));
    nn_graph_free(g);
}

Test(passes, fold_rounds_to_dtype_and_keeps_nan_and_int_div)
{
    NnGraph *g = nn_graph_new();
    nn_graph_add_output(g, "third", nn_ir_binary(g, NN_OP_DIV, c(g, 1), c(g, 3), L));
    NnId i7 = nn_ir_const(g, 7, NN_DT_I32, L), i2 = nn_ir_const(g, 2, NN_DT_I32, L);
    nn_graph_add_output(g, "idiv", nn_ir_binary(g, NN_OP_DIV, i7, i2, L));
    nn_graph_add_output(g, "imul", nn_ir_binary(g, NN_OP_MUL, i7, i2, L));
    nn_graph_add_output(g, "nan", nn_ir_unary(g, NN_OP_EXP, c(g, NAN), L));
    nn_graph_add_output(g, "cast", nn_ir_cast(g, c(g, -2.75), NN_DT_I32, L));
    g = apply(nn_pass_fold, g);
    cr_assert_eq(const_value(g, out(g, "third")), (double)(1.0f / 3.0f));
    cr_assert_eq(g->nodes[out(g, "idiv")].op, NN_OP_DIV);
    cr_assert_eq(const_value(g, out(g, "imul")), 14.0);
    cr_assert_eq(g->nodes[out(g, "nan")].op, NN_OP_EXP);
    cr_assert_eq(const_value(g, out(g, "cast")), -2.0);
    cr_assert_eq(nn_pass_fold(g), g, "a second fold changes nothing");
    nn_graph_free(g);
}

Test(passes, fold_same_results)
{
    NnGraph *g = fold_graph();
    NnGraph *before = nn_graph_clone(g);
    g = apply(nn_pass_dce, apply(nn_pass_fold, g));
    int64_t n = 5;
    assert_same_results(before, g, &n);
    nn_graph_free(before);
    nn_graph_free(g);
}

// ---- cse ----

static NnGraph *cse_graph(void)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    NnId y = src(g, NN_OP_INPUT, "y", NN_DT_F32, "N,4");
    NnId x2 = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4"); // same name: still a separate input
    NnId a = nn_ir_unary(g, NN_OP_EXP, x, L), b = nn_ir_unary(g, NN_OP_EXP, x, L);
    NnId s1 = nn_ir_binary(g, NN_OP_ADD, a, y, L), s2 = nn_ir_binary(g, NN_OP_ADD, y, b, L);
    NnId d1 = nn_ir_binary(g, NN_OP_SUB, a, y, L), d2 = nn_ir_binary(g, NN_OP_SUB, y, b, L);
    NnId w1 = par(g, "w", NN_DT_F32, "4"), w2 = par(g, "w", NN_DT_F32, "4");
    NnId step = src(g, NN_OP_INPUT, "step", NN_DT_F32, "");
    NnAttr da = {.seed = 1}, db = {.seed = 2};
    NnId in[3] = {x2, step, src(g, NN_OP_INPUT, "rate", NN_DT_F32, "")};
    NnId drop1 = nn_ir_add(g, NN_OP_DROPOUT, in, 3, &da, L);
    NnId drop2 = nn_ir_add(g, NN_OP_DROPOUT, in, 3, &db, L);
    NnId drop3 = nn_ir_add(g, NN_OP_DROPOUT, in, 3, &da, L);
    NnId t = nn_ir_binary(g, NN_OP_MUL, s1, s2, L);
    NnId u = nn_ir_binary(g, NN_OP_MUL, d1, d2, L);
    t = nn_ir_binary(g, NN_OP_MUL, t, u, L);
    u = nn_ir_binary(g, NN_OP_ADD, w1, w2, L);
    t = nn_ir_binary(g, NN_OP_ADD, t, u, L);
    u = nn_ir_binary(g, NN_OP_ADD, drop1, drop2, L);
    t = nn_ir_binary(g, NN_OP_ADD, t, u, L);
    nn_graph_add_output(g, "t", nn_ir_binary(g, NN_OP_ADD, t, drop3, L));
    NnId one = c(g, 1), one2 = c(g, 1);
    nn_graph_add_output(g, "c", nn_ir_binary(g, NN_OP_ADD, one, one2, L));
    return g;
}

Test(passes, cse_merges_duplicates)
{
    NnGraph *g = apply(nn_pass_cse, cse_graph());
    cr_assert_eq(nn_graph_count_op(g, NN_OP_EXP), 1);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_INPUT), 5, "inputs are never merged");
    cr_assert_eq(nn_graph_count_op(g, NN_OP_PARAM), 1, "the same variable read twice");
    cr_assert_eq(nn_graph_count_op(g, NN_OP_SUB), 2, "sub does not commute");
    cr_assert_eq(nn_graph_count_op(g, NN_OP_DROPOUT), 2, "different seeds stay apart");
    cr_assert_eq(nn_graph_count_op(g, NN_OP_CONST), 1);
    // add(a, y) and add(y, a) are one node: the product s1 * s2 squares it.
    NnId t = g->nodes[out(g, "t")].in[0];
    for (int k = 0; k < 3; k++)
        t = g->nodes[t].in[0];
    cr_assert_eq(g->nodes[t].op, NN_OP_MUL);
    cr_assert_eq(g->nodes[t].in[0], g->nodes[t].in[1]);
    cr_assert_eq(nn_pass_cse(g), g);
    nn_graph_free(g);
}

Test(passes, cse_same_results)
{
    NnGraph *g = cse_graph();
    NnGraph *before = nn_graph_clone(g);
    g = apply(nn_pass_cse, g);
    int64_t n = 3;
    assert_same_results(before, g, &n);
    nn_graph_free(before);
    nn_graph_free(g);
}

// ---- dce ----

Test(passes, dce_keeps_inputs_updates_and_order)
{
    NnGraph *g = nn_graph_new();
    NnId a = src(g, NN_OP_INPUT, "a", NN_DT_F32, "3");
    nn_ir_unary(g, NN_OP_EXP, a, L); // dead
    NnId dead_in = src(g, NN_OP_INPUT, "unused", NN_DT_F32, "2");
    NnId w = par(g, "w", NN_DT_F32, "3");
    NnId s = src(g, NN_OP_STATE, "count", NN_DT_F32, "");
    par(g, "dead_param", NN_DT_F32, "3");
    NnId b = src(g, NN_OP_INPUT, "b", NN_DT_F32, "3");
    nn_graph_add_output(g, "y", nn_ir_binary(g, NN_OP_MUL, a, b, L));
    nn_graph_add_update(g, w, nn_ir_binary(g, NN_OP_SUB, w, b, L));
    nn_graph_add_update(g, s, nn_ir_binary(g, NN_OP_ADD, s, c(g, 1), L));
    (void)dead_in;
    g = apply(nn_pass_dce, g);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_EXP), 0);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_PARAM), 1);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_STATE), 1);
    const char *want[] = {"a", "unused", "b"};
    int k = 0;
    for (NnId i = 0; i < g->count; i++)
        if (g->nodes[i].op == NN_OP_INPUT)
            cr_assert_str_eq(g->nodes[i].attr.name, want[k++]);
    cr_assert_eq(k, 3);
    cr_assert_eq(g->nupdates, 2);
    cr_assert_str_eq(g->nodes[g->updates[0].var].attr.name, "w");
    cr_assert_eq(g->nodes[g->updates[0].value].op, NN_OP_SUB);
    cr_assert_str_eq(g->nodes[g->updates[1].var].attr.name, "count");
    cr_assert_eq(nn_pass_dce(g), g);
    nn_graph_free(g);
}

// ---- simplify ----

Test(passes, simplify_identities)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    NnOp ops[] = {NN_OP_MUL, NN_OP_ADD, NN_OP_SUB, NN_OP_DIV, NN_OP_POW};
    double ks[] = {1, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++)
        nn_graph_add_output(g, nn_op_name(ops[i]), nn_ir_binary(g, ops[i], x, c(g, ks[i]), L));
    nn_graph_add_output(g, "1x", nn_ir_binary(g, NN_OP_MUL, c(g, 1), x, L));
    nn_graph_add_output(g, "0x", nn_ir_binary(g, NN_OP_ADD, c(g, 0), x, L));
    NnId nn = nn_ir_unary(g, NN_OP_NEG, nn_ir_unary(g, NN_OP_NEG, x, L), L);
    nn_graph_add_output(g, "negneg", nn);
    nn_graph_add_output(g, "cast", nn_ir_cast(g, x, NN_DT_F32, L));
    NnShape same = shp(g, "N,4");
    nn_graph_add_output(g, "bcast", nn_ir_broadcast(g, x, &same, L));
    nn_graph_add_output(g, "sumto", nn_ir_sumto(g, x, &same, L));
    nn_graph_add_output(g, "reshape", nn_ir_reshape(g, x, &same, L));
    int perm[NN_MAX_RANK] = {1, 0};
    nn_graph_add_output(g, "tt", nn_ir_transpose(g, nn_ir_transpose(g, x, perm, L), perm, L));
    g = apply(nn_pass_simplify, g);
    g = apply(nn_pass_dce, g);
    for (int k = 0; k < g->noutputs; k++)
        cr_assert_eq(g->outputs[k].id, x, "%s was not simplified to x", g->outputs[k].name);
    cr_assert_eq(g->count, 1, "everything else is dead");
    nn_graph_free(g);
}

Test(passes, simplify_rewrites)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "2,3,4");
    nn_graph_add_output(g, "sq", nn_ir_binary(g, NN_OP_POW, x, c(g, 2), L));
    nn_graph_add_output(g, "neg", nn_ir_binary(g, NN_OP_SUB, c(g, 0), x, L));
    nn_graph_add_output(g, "x0", nn_ir_binary(g, NN_OP_MUL, x, c(g, 0), L));
    // Widening identities must keep the wider type: x[2,3,4] + zeros[5,2,3,4].
    NnAttr za = {.dtype = NN_DT_F32, .shape = shp(g, "5,2,3,4")};
    NnId zeros = nn_ir_add(g, NN_OP_CONST, NULL, 0, &za, L);
    nn_graph_add_output(g, "wide", nn_ir_binary(g, NN_OP_ADD, x, zeros, L));
    int p1[NN_MAX_RANK] = {1, 2, 0}, p2[NN_MAX_RANK] = {0, 2, 1};
    nn_graph_add_output(g, "tt", nn_ir_transpose(g, nn_ir_transpose(g, x, p1, L), p2, L));
    NnShape s6 = shp(g, "6,4"), s24 = shp(g, "24");
    nn_graph_add_output(g, "rr", nn_ir_reshape(g, nn_ir_reshape(g, x, &s6, L), &s24, L));
    NnShape s534 = shp(g, "5,3,4"), s34 = shp(g, "3,4"), s1x = shp(g, "1,3,4");
    NnId small = nn_ir_sumto(g, x, &s34, L); // [3, 4]
    nn_graph_add_output(g, "bs", nn_ir_sumto(g, nn_ir_broadcast(g, small, &s534, L), &s34, L));
    nn_graph_add_output(g, "bb", nn_ir_broadcast(g, nn_ir_broadcast(g, small, &s1x, L), &s534, L));
    NnShape s11 = shp(g, "1,1,3,4"), s434 = shp(g, "2,5,3,4"), s341 = shp(g, "3,4,1");
    nn_graph_add_output(g, "rb", nn_ir_broadcast(g, nn_ir_reshape(g, small, &s11, L), &s434, L));
    NnShape s3x4x2 = shp(g, "3,4,2");
    nn_graph_add_output(g, "rb2",
                        nn_ir_broadcast(g, nn_ir_reshape(g, small, &s341, L), &s3x4x2, L));
    g = apply(nn_pass_dce, apply(nn_pass_simplify, g));
    NnId sq = out(g, "sq");
    cr_assert_eq(g->nodes[sq].op, NN_OP_MUL);
    cr_assert(g->nodes[sq].in[0] == x && g->nodes[sq].in[1] == x);
    cr_assert_eq(g->nodes[out(g, "neg")].op, NN_OP_NEG);
    cr_assert_eq(g->nodes[out(g, "x0")].op, NN_OP_MUL, "x*0 must stay (NaN/inf)");
    cr_assert_eq(g->nodes[out(g, "wide")].op, NN_OP_ADD);
    NnId tt = out(g, "tt");
    cr_assert_eq(g->nodes[tt].op, NN_OP_TRANSPOSE);
    cr_assert_eq(g->nodes[tt].in[0], x, "two transposes compose into one");
    // out[i] = x dim p1[p2[i]]: [x1, x2, x0] then swap the last two: [x1, x0, x2].
    cr_assert(g->nodes[tt].attr.perm[0] == 1 && g->nodes[tt].attr.perm[1] == 0 &&
              g->nodes[tt].attr.perm[2] == 2);
    cr_assert_eq(g->nodes[out(g, "rr")].in[0], x, "reshape chain collapses");
    NnId bs = out(g, "bs");
    cr_assert_eq(g->nodes[bs].op, NN_OP_MUL);
    cr_assert_float_eq(const_value(g, g->nodes[bs].in[1]), 5.0, 1e-12);
    NnId bb = out(g, "bb");
    cr_assert_eq(g->nodes[bb].op, NN_OP_BROADCAST);
    cr_assert_eq(g->nodes[g->nodes[bb].in[0]].op, NN_OP_REDUCE_SUM);
    cr_assert_eq(g->nodes[out(g, "rb")].in[0], g->nodes[bb].in[0], "leading 1s are implied");
    cr_assert_eq(g->nodes[g->nodes[out(g, "rb2")].in[0]].op, NN_OP_RESHAPE, "trailing 1s are not");
    nn_graph_free(g);
}

Test(passes, simplify_canonical_reductions_and_masks)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,3,4");
    NnShape s4 = shp(g, "4"), s134 = shp(g, "1,3,1"), s31 = shp(g, "3,1");
    nn_graph_add_output(g, "lead", nn_ir_sumto(g, x, &s4, L));
    nn_graph_add_output(g, "keep", nn_ir_sumto(g, x, &s134, L));
    nn_graph_add_output(g, "mixed", nn_ir_sumto(g, x, &s31, L));
    NnId zero = c(g, 0);
    NnId relu = nn_ir_binary(g, NN_OP_MAX, x, zero, L);
    nn_graph_add_output(g, "relu", relu);
    nn_graph_add_output(g, "mask", nn_ir_binary(g, NN_OP_GT, x, zero, L));
    NnId lo = nn_ir_binary(g, NN_OP_MIN, x, zero, L);
    nn_graph_add_output(g, "lo", lo);
    nn_graph_add_output(g, "lomask", nn_ir_binary(g, NN_OP_LT, x, zero, L));
    nn_graph_add_output(g, "ge", nn_ir_binary(g, NN_OP_GE, x, zero, L));
    NnGraph *before = nn_graph_clone(g);
    g = apply(nn_pass_dce, apply(nn_pass_simplify, g));
    const NnNode *lead = &g->nodes[out(g, "lead")], *keep = &g->nodes[out(g, "keep")];
    cr_assert(lead->op == NN_OP_REDUCE_SUM && lead->attr.axes == 3 && !lead->attr.keep);
    cr_assert(keep->op == NN_OP_REDUCE_SUM && keep->attr.axes == 5 && keep->attr.keep);
    cr_assert_eq(g->nodes[out(g, "mixed")].op, NN_OP_SUMTO);
    cr_assert_eq(g->nodes[out(g, "mask")].in[0], out(g, "relu"));
    cr_assert_eq(g->nodes[out(g, "lomask")].in[0], out(g, "lo"));
    cr_assert_eq(g->nodes[out(g, "ge")].in[0], x, "x >= 0 differs from max(x, 0) >= 0");
    int64_t n = 3;
    assert_same_results(before, g, &n);
    nn_graph_free(before);
    nn_graph_free(g);
}

Test(passes, simplify_same_results)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,3");
    int perm[NN_MAX_RANK] = {1, 0};
    NnId t = nn_ir_transpose(g, nn_ir_transpose(g, x, perm, L), perm, L);
    NnId y = nn_ir_binary(g, NN_OP_POW, nn_ir_binary(g, NN_OP_ADD, t, c(g, 0), L), c(g, 2), L);
    NnShape s = shp(g, "4,N,3"), s3 = shp(g, "3");
    NnId z = nn_ir_sumto(g, nn_ir_broadcast(g, nn_ir_sumto(g, y, &s3, L), &s, L), &s3, L);
    nn_graph_add_output(g, "y", nn_ir_unary(g, NN_OP_NEG, nn_ir_unary(g, NN_OP_NEG, y, L), L));
    nn_graph_add_output(g, "z", z);
    NnGraph *before = nn_graph_clone(g);
    g = apply(nn_pass_dce, apply(nn_pass_simplify, g));
    cr_assert_lt(g->count, before->count);
    int64_t n = 4;
    assert_same_results(before, g, &n);
    nn_graph_free(before);
    nn_graph_free(g);
}

// ---- invariants and the pipeline ----

Test(passes, every_pass_keeps_locations_symbols_and_inputs)
{
    NnGraph *g = nn_graph_new();
    NnSource *srcf = nn_source_from_string(g->arena, "m.nn", "y = exp(x) * 1\n");
    NnLoc at = {srcf, 1, 5, 6};
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "B,N");
    src(g, NN_OP_INPUT, "z", NN_DT_F32, "T");
    NnId e = nn_ir_unary(g, NN_OP_EXP, x, at);
    NnId y = nn_ir_binary(g, NN_OP_MUL, e, c(g, 1), L);
    nn_graph_add_output(g, "y", nn_ir_unary(g, NN_OP_TANH, y, at));
    for (const NnPass *p = nn_passes; p->name; p++) {
        NnGraph *h = nn_graph_clone(g);
        h = apply(p->fn, h);
        cr_assert_eq(h->nsyms, 3, "%s", p->name);
        cr_assert_str_eq(h->syms[0], "B");
        cr_assert_str_eq(h->syms[2], "T");
        cr_assert_str_eq(h->nodes[0].attr.name, "x", "%s", p->name);
        cr_assert_str_eq(h->nodes[1].attr.name, "z", "%s", p->name);
        const NnNode *o = &h->nodes[out(h, "y")];
        cr_assert_eq(o->loc.src, srcf, "%s dropped the location", p->name);
        cr_assert_eq(o->loc.col, 5);
        nn_graph_free(h);
    }
    nn_graph_free(g);
}

Test(passes, pipeline_options)
{
    cr_assert(nn_pass_exists("fuse") && nn_pass_exists("cse") && !nn_pass_exists("nope"));
    cr_assert_str_eq(nn_pass_names(), "fold, simplify, bnfold, cse, dce, loops, fuse, overlap");
    NnGraph *g = cse_graph();
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    NnPassOptions opt = {.stop = "opt", .dump = "cse", .dump_out = f, .verify = true};
    g = nn_passes_run(g, &opt);
    fclose(f);
    cr_assert(strstr(text, "// after cse\n"), "%s", text);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_FUSED), 0, "stage opt stops before fusion");
    cr_assert_eq(nn_graph_count_op(g, NN_OP_EXP), 1);
    free(text);
    nn_graph_free(g);

    NnPassOptions nocse = {.disabled = {"cse", "fuse"}, .ndisabled = 2};
    g = nn_passes_run(cse_graph(), &nocse);
    cr_assert_eq(nn_graph_count_op(g, NN_OP_EXP), 2, "--no-pass=cse keeps duplicates");
    cr_assert_eq(nn_graph_count_op(g, NN_OP_FUSED), 0);
    nn_graph_free(g);

    g = nn_passes_run(cse_graph(), NULL);
    cr_assert_gt(nn_graph_count_op(g, NN_OP_FUSED), 0);
    nn_graph_free(g);
}

Test(passes, pipeline_same_results)
{
    NnGraph *g = cse_graph();
    NnGraph *before = nn_graph_clone(g);
    g = nn_passes_run(g, NULL);
    int64_t n = 2;
    assert_same_results(before, g, &n);
    nn_graph_free(before);
    nn_graph_free(g);
}

// ---- golden dumps ----

Test(passes, golden_dumps)
{
    struct {
        const char *pass;
        NnGraph *(*build)(void);
    } cases[] = {{"fold", fold_graph}, {"cse", cse_graph}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = before_after(cases[i].build(), cases[i].pass);
        golden(cases[i].pass, text);
        free(text);
    }
    char *text = before_after(apply(nn_pass_fold, fold_graph()), "dce");
    golden("dce", text);
    free(text);
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    int perm[NN_MAX_RANK] = {1, 0};
    NnId t = nn_ir_transpose(g, x, perm, L);
    t = nn_ir_transpose(g, t, perm, L);
    NnId zero = c(g, 0), one = c(g, 1), two = c(g, 2);
    NnId y = nn_ir_binary(g, NN_OP_SUB, t, zero, L);
    y = nn_ir_binary(g, NN_OP_MUL, y, one, L);
    nn_graph_add_output(g, "y", nn_ir_binary(g, NN_OP_POW, y, two, L));
    text = before_after(g, "simplify");
    golden("simplify", text);
    free(text);
}

// Simplification can make an output an INPUT and folding can make one a CONST;
// backends must still return them (and the planner must not lose them).
Test(passes, outputs_that_become_sources)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,2");
    NnId one = c(g, 1), two = c(g, 2);
    nn_graph_add_output(g, "x", nn_ir_binary(g, NN_OP_MUL, x, one, L));
    nn_graph_add_output(g, "three", nn_ir_binary(g, NN_OP_ADD, one, two, L));
    NnId w = par(g, "w", NN_DT_F32, "2");
    nn_graph_add_update(g, w, nn_ir_binary(g, NN_OP_DIV, w, one, L));
    NnGraph *before = nn_graph_clone(g);
    g = nn_passes_run(g, NULL);
    cr_assert_eq(out(g, "x"), 0);
    cr_assert_float_eq(const_value(g, out(g, "three")), 3.0, 0);
    cr_assert_eq(g->updates[0].value, g->updates[0].var);
    int64_t n = 3;
    assert_same_results(before, g, &n);
    nn_graph_free(before);
    nn_graph_free(g);
}
