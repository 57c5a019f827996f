// The per-step fast path (backend/common.c, runtime/step.c): an executable
// remembers which tensors it found in a variable table while the table keeps
// its stamp (NnVars.gen), so a step does no name lookups. These tests change
// the table between steps in every way the API allows: a tensor replaced by
// nnrt_vars_put (same shape, then a wrong one), another table passed, a table
// freed and a new one made in the same place; each step must see what the
// table holds then, on both backends, with the same messages as without the
// cache. Under ASan a stale tensor pointer would be a use after free.
#include "agree.h"

// logits = x @ w + b, x[N, 3], w[3, 2], b[2].
static NnGraph *affine(void)
{
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, 3));
    NnId w = ag_param(g, "w", AG_SHAPE(3, 2));
    NnId b = ag_param(g, "b", AG_SHAPE(2));
    NnId y = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, x, w, false, false, ag_loc), b, ag_loc);
    nn_graph_add_output(g, "y", y);
    return g;
}

static NnTensor *filled(NnShape s, double v)
{
    NnTensor *t = nnrt_tensor_new(NN_DT_F32, s.rank, s.dim);
    for (int64_t i = 0; i < t->numel; i++)
        nnrt_tensor_set(t, i, v);
    return t;
}

static void make_vars(NnVars *v, double w, double b)
{
    nnrt_vars_init(v);
    nnrt_vars_put(v, "w", filled(AG_SHAPE(3, 2), w));
    nnrt_vars_put(v, "b", filled(AG_SHAPE(2), b));
}

// Runs x (all ones, 2 rows) through each backend and checks y[0] == want on both.
static void expect_y(NnExec *const *xs, NnVars *v, double want, const char *when)
{
    const NnBackend *bes[2] = {&nn_backend_interp, nn_backend_find("jit")};
    NnTensor *x = filled(AG_SHAPE(2, 3), 1);
    for (int k = 0; k < 2; k++) {
        if (!bes[k])
            continue;
        NnTensor *out[1];
        cr_assert_eq(bes[k]->run(xs[k], v, &x, out), NN_OK, "%s, %s: %s", bes[k]->name, when,
                     nnrt_errmsg());
        cr_expect_float_eq(nnrt_tensor_get(out[0], 0), want, 1e-6, "%s, %s: y = %g, want %g",
                           bes[k]->name, when, nnrt_tensor_get(out[0], 0), want);
    }
    nnrt_tensor_free(x);
}

static void prepare_both(const NnGraph *g, NnExec **xs)
{
    NnExecOptions o = {.threads = 1};
    xs[0] = nn_backend_interp.prepare(g, &o);
    const NnBackend *jit = nn_backend_find("jit");
    xs[1] = jit ? jit->prepare(g, &o) : NULL;
    cr_assert(xs[0] && (!jit || xs[1]), "%s", nnrt_errmsg());
}

static void free_both(NnExec **xs)
{
    nn_backend_interp.free(xs[0]);
    const NnBackend *jit = nn_backend_find("jit");
    if (jit && xs[1])
        jit->free(xs[1]);
}

Test(varcache, replaced_tensor_is_seen)
{
    NnGraph *g = affine();
    NnExec *xs[2];
    prepare_both(g, xs);
    NnVars v;
    make_vars(&v, 1, 0.5);
    expect_y(xs, &v, 3 * 1 + 0.5, "first step");
    expect_y(xs, &v, 3.5, "same table, unchanged");
    nnrt_vars_put(&v, "w", filled(AG_SHAPE(3, 2), 2)); // frees the old w
    expect_y(xs, &v, 3 * 2 + 0.5, "after w was replaced");
    nnrt_vars_put(&v, "b", filled(AG_SHAPE(2), -1));
    expect_y(xs, &v, 6 - 1, "after b was replaced");
    nnrt_vars_fini(&v);
    free_both(xs);
    nn_graph_free(g);
}

Test(varcache, replaced_with_wrong_shape_is_refused)
{
    NnGraph *g = affine();
    NnExec *xs[2];
    prepare_both(g, xs);
    NnVars v;
    make_vars(&v, 1, 0);
    expect_y(xs, &v, 3, "first step");
    nnrt_vars_put(&v, "w", filled(AG_SHAPE(2, 3), 1));
    const NnBackend *bes[2] = {&nn_backend_interp, nn_backend_find("jit")};
    NnTensor *x = filled(AG_SHAPE(2, 3), 1);
    for (int k = 0; k < 2; k++) {
        if (!bes[k])
            continue;
        NnTensor *out[1];
        cr_expect_eq(bes[k]->run(xs[k], &v, &x, out), NN_ERR_SHAPE, "%s ran a wrong w",
                     bes[k]->name);
        cr_expect_str_eq(nnrt_errmsg(), "parameter 'w' expects f32[3, 2], got f32[2, 3]");
    }
    nnrt_tensor_free(x);
    nnrt_vars_put(&v, "w", filled(AG_SHAPE(3, 2), 1));
    expect_y(xs, &v, 3, "w put right again");
    nnrt_vars_fini(&v);
    free_both(xs);
    nn_graph_free(g);
}

Test(varcache, tables_alternate_and_are_remade_in_place)
{
    NnGraph *g = affine();
    NnExec *xs[2];
    prepare_both(g, xs);
    NnVars a, b;
    make_vars(&a, 1, 0);
    make_vars(&b, 2, 0);
    for (int r = 0; r < 3; r++) {
        expect_y(xs, &a, 3, "table a");
        expect_y(xs, &b, 6, "table b");
    }
    // A new table in the old one's place (same address, new tensors).
    for (int r = 0; r < 4; r++) {
        nnrt_vars_fini(&a);
        make_vars(&a, r, 1);
        expect_y(xs, &a, 3 * r + 1, "table a remade");
    }
    nnrt_vars_fini(&a);
    nnrt_vars_fini(&b);
    free_both(xs);
    nn_graph_free(g);
}

// Stamps are unique: two tables never share one, and every change renews it.
Test(varcache, stamps_change_with_the_table)
{
    NnVars a, b;
    make_vars(&a, 1, 0);
    make_vars(&b, 1, 0);
    cr_expect_neq(a.gen, b.gen);
    uint64_t g0 = a.gen;
    cr_expect_not_null(nnrt_vars_get(&a, "w"));
    cr_expect_eq(a.gen, g0, "a lookup is no change");
    nnrt_vars_put(&a, "w", filled(AG_SHAPE(3, 2), 0));
    cr_expect_neq(a.gen, g0);
    uint64_t g1 = a.gen;
    nnrt_vars_append(&a, "c", filled(AG_SHAPE(1), 0));
    cr_expect_neq(a.gen, g1);
    uint64_t g2 = a.gen;
    nnrt_vars_fini(&a);
    cr_expect_neq(a.gen, g2);
    cr_expect_neq(a.gen, 0);
    nnrt_vars_fini(&b);
}
