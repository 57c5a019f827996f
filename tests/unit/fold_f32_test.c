// Constant folding of f32 values computes what the run time computes: the
// operands as f32, f32 library functions, and every result rounded to f32. A
// fold in double (1 - 0.999 = 0.001 exactly, then rounded) differs from the
// f32 subtraction (0.00099998713) by 1.3e-5 relative, which is what made one
// Adam step disagree with the reference formula.
#include <criterion/criterion.h>
#include <math.h>

#include "pass.h"

static const NnLoc L;

static NnId k(NnGraph *g, double v) { return nn_ir_const(g, v, NN_DT_F32, L); }

// The folded value of output `name`, which must have become a CONST.
static double folded(NnGraph **g, const char *name)
{
    NnGraph *h = nn_pass_fold(*g);
    if (h != *g)
        nn_graph_free(*g);
    *g = h;
    NnId id = nn_graph_output(h, name);
    cr_assert(id >= 0);
    cr_assert_eq(h->nodes[id].op, NN_OP_CONST, "'%s' was not folded", name);
    return h->nodes[id].attr.value;
}

Test(fold_f32, subtraction_rounds_operands_first)
{
    NnGraph *g = nn_graph_new();
    nn_graph_add_output(g, "r", nn_ir_binary(g, NN_OP_SUB, k(g, 1), k(g, 0.999), L));
    double r = folded(&g, "r");
    cr_assert_eq(r, (double)(1.0f - 0.999f), "folded %.12g, f32 %.12g", r, 1.0f - 0.999f);
    nn_graph_free(g);
}

Test(fold_f32, library_functions_are_the_f32_ones)
{
    NnGraph *g = nn_graph_new();
    nn_graph_add_output(g, "pow", nn_ir_binary(g, NN_OP_POW, k(g, 0.999), k(g, 3), L));
    nn_graph_add_output(g, "exp", nn_ir_unary(g, NN_OP_EXP, k(g, 0.7), L));
    nn_graph_add_output(g, "sig", nn_ir_unary(g, NN_OP_SIGMOID, k(g, -0.3), L));
    float e = expf(-0.3f);
    cr_assert_eq(folded(&g, "pow"), (double)powf(0.999f, 3.0f));
    cr_assert_eq(folded(&g, "exp"), (double)expf(0.7f));
    cr_assert_eq(folded(&g, "sig"), (double)(e / (1.0f + e)));
    nn_graph_free(g);
}

// Adam's bias correction, 1 - beta2 ^ step, folded when step is a constant.
Test(fold_f32, every_intermediate_is_rounded)
{
    NnGraph *g = nn_graph_new();
    NnId p = nn_ir_binary(g, NN_OP_POW, k(g, 0.999), k(g, 2), L);
    nn_graph_add_output(g, "r", nn_ir_binary(g, NN_OP_SUB, k(g, 1), p, L));
    float want = 1.0f - powf(0.999f, 2.0f);
    double r = folded(&g, "r");
    cr_assert_eq(r, (double)want, "folded %.12g, f32 %.12g", r, want);
    nn_graph_free(g);
}

// f64 keeps double precision throughout.
Test(fold_f32, f64_stays_double)
{
    NnGraph *g = nn_graph_new();
    NnId a = nn_ir_const(g, 1, NN_DT_F64, L), b = nn_ir_const(g, 0.999, NN_DT_F64, L);
    nn_graph_add_output(g, "r", nn_ir_binary(g, NN_OP_SUB, a, b, L));
    cr_assert_eq(folded(&g, "r"), 1.0 - 0.999);
    nn_graph_free(g);
}
