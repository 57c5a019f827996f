// Shape rules and VJPs for the elementwise ops: unary math, binary arithmetic
// with numpy broadcasting, comparisons, SELECT, CAST and DROPOUT. Broadcasting
// matches dims that are equal (equal symbols too) or 1; a VJP sums its gradient
// back to each operand's own shape with SUMTO, so gin[k] always has in[k]'s shape.
#include "op_common.h"

bool nn_broadcast_shapes(const NnShape *a, const NnShape *b, NnShape *out)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    NnShape s = {.rank = r};
    for (int i = 0; i < r; i++) {
        int ia = a->rank - r + i, ib = b->rank - r + i;
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        if (da == db || db == 1)
            s.dim[i] = da;
        else if (da == 1)
            s.dim[i] = db;
        else
            return false;
    }
    *out = s;
    return true;
}

// ---- unary ----

static bool unary(NnGraph *g, NnNode *n, bool float_only)
{
    const NnNode *x = &g->nodes[n->in[0]];
    if (float_only && !nn_rule_is_float(x->dtype)) {
        char t[NN_TYPE_BUF];
        nn_set_err(g, "%s expects a float tensor, got %s", nn_op_name(n->op),
                   nn_rule_in_type(g, n, 0, t));
        return false;
    }
    n->dtype = x->dtype;
    n->shape = x->shape;
    return true;
}

bool shape_neg(NnGraph *g, NnNode *n) { return unary(g, n, false); }
bool shape_abs(NnGraph *g, NnNode *n) { return unary(g, n, false); }
bool shape_exp(NnGraph *g, NnNode *n) { return unary(g, n, true); }
bool shape_log(NnGraph *g, NnNode *n) { return unary(g, n, true); }
bool shape_sqrt(NnGraph *g, NnNode *n) { return unary(g, n, true); }
bool shape_tanh(NnGraph *g, NnNode *n) { return unary(g, n, true); }
bool shape_sigmoid(NnGraph *g, NnNode *n) { return unary(g, n, true); }
bool shape_sin(NnGraph *g, NnNode *n) { return unary(g, n, true); }
bool shape_cos(NnGraph *g, NnNode *n) { return unary(g, n, true); }

bool shape_cast(NnGraph *g, NnNode *n)
{
    if (n->attr.dtype >= NN_DT_COUNT) {
        nn_set_err(g, "cast: unknown dtype");
        return false;
    }
    n->dtype = n->attr.dtype;
    n->shape = g->nodes[n->in[0]].shape;
    return true;
}

// Facts about node id that VJPs read before they append (appending may move g->nodes).
typedef struct Fwd {
    NnLoc loc;
    NnId a, b, c;
    NnDType dt;
    NnShape sa, sb, sc;
} Fwd;

static Fwd fwd(const NnGraph *g, NnId id)
{
    const NnNode *n = &g->nodes[id];
    Fwd f = {.loc = n->loc, .a = -1, .b = -1, .c = -1, .dt = n->dtype};
    NnId *ids[3] = {&f.a, &f.b, &f.c};
    NnShape *ss[3] = {&f.sa, &f.sb, &f.sc};
    for (int k = 0; k < n->nin && k < 3; k++) {
        *ids[k] = n->in[k];
        *ss[k] = g->nodes[n->in[k]].shape;
    }
    return f;
}

static NnId bin(NnGraph *g, NnOp op, NnId a, NnId b, NnLoc loc)
{
    return nn_ir_binary(g, op, a, b, loc);
}

static NnId scalar(NnGraph *g, double v, const Fwd *f) { return nn_ir_const(g, v, f->dt, f->loc); }

void vjp_neg(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    gin[0] = nn_ir_unary(g, NN_OP_NEG, gout, g->nodes[id].loc);
}

void vjp_exp(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    gin[0] = bin(g, NN_OP_MUL, gout, id, g->nodes[id].loc);
}

void vjp_log(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    gin[0] = bin(g, NN_OP_DIV, gout, f.a, f.loc);
}

// d sqrt(x) = 1 / (2 sqrt(x)): reuse the output.
void vjp_sqrt(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    NnId half = bin(g, NN_OP_MUL, gout, scalar(g, 0.5, &f), f.loc);
    gin[0] = bin(g, NN_OP_DIV, half, id, f.loc);
}

// d tanh = 1 - tanh^2, from the output.
void vjp_tanh(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    NnId sq = bin(g, NN_OP_MUL, id, id, f.loc);
    NnId d = bin(g, NN_OP_SUB, scalar(g, 1, &f), sq, f.loc);
    gin[0] = bin(g, NN_OP_MUL, gout, d, f.loc);
}

// d sigmoid = s (1 - s), from the output.
void vjp_sigmoid(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    NnId one_minus = bin(g, NN_OP_SUB, scalar(g, 1, &f), id, f.loc);
    NnId d = bin(g, NN_OP_MUL, id, one_minus, f.loc);
    gin[0] = bin(g, NN_OP_MUL, gout, d, f.loc);
}

// d |x| = sign(x) = (x > 0) - (x < 0); 0 at 0.
void vjp_abs(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    NnId zero = scalar(g, 0, &f);
    NnId sign = bin(g, NN_OP_SUB, bin(g, NN_OP_GT, f.a, zero, f.loc),
                    bin(g, NN_OP_LT, f.a, zero, f.loc), f.loc);
    gin[0] = bin(g, NN_OP_MUL, gout, sign, f.loc);
}

void vjp_sin(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    gin[0] = bin(g, NN_OP_MUL, gout, nn_ir_unary(g, NN_OP_COS, f.a, f.loc), f.loc);
}

void vjp_cos(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    NnId s = nn_ir_unary(g, NN_OP_SIN, f.a, f.loc);
    gin[0] = nn_ir_unary(g, NN_OP_NEG, bin(g, NN_OP_MUL, gout, s, f.loc), f.loc);
}

// Only float-to-float casts pass gradients; integers have none.
void vjp_cast(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    NnDType from = g->nodes[g->nodes[id].in[0]].dtype;
    bool ok = nn_rule_is_float(from) && nn_rule_is_float(g->nodes[id].dtype);
    gin[0] = ok ? nn_ir_cast(g, gout, from, g->nodes[id].loc) : -1;
}

// ---- binary ----

// How each binary op reads in an error message: "cannot <verb> A <joint> B".
static void binary_err(NnGraph *g, const NnNode *n, const char *why)
{
    char a[NN_TYPE_BUF], b[NN_TYPE_BUF];
    nn_rule_in_type(g, n, 0, a);
    nn_rule_in_type(g, n, 1, b);
    const char *l = a, *r = b, *verb = "compare", *joint = "and";
    switch (n->op) {
    case NN_OP_ADD: verb = "add"; break;
    case NN_OP_SUB: verb = "subtract", joint = "from", l = b, r = a; break;
    case NN_OP_MUL: verb = "multiply"; break;
    case NN_OP_DIV: verb = "divide", joint = "by"; break;
    case NN_OP_POW: verb = "raise", joint = "to the power"; break;
    case NN_OP_MAX: verb = "take the max of"; break;
    case NN_OP_MIN: verb = "take the min of"; break;
    default: break;
    }
    nn_set_err(g, "cannot %s %s %s %s%s", verb, l, joint, r, why);
}

static bool binary(NnGraph *g, NnNode *n, bool float_only)
{
    const NnNode *a = &g->nodes[n->in[0]], *b = &g->nodes[n->in[1]];
    if (a->dtype != b->dtype) {
        binary_err(g, n, ": dtypes differ");
        return false;
    }
    if (float_only && !nn_rule_is_float(a->dtype)) {
        binary_err(g, n, ": needs float tensors");
        return false;
    }
    if (!nn_broadcast_shapes(&a->shape, &b->shape, &n->shape)) {
        binary_err(g, n, "");
        return false;
    }
    n->dtype = a->dtype;
    return true;
}

bool shape_add(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_sub(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_mul(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_div(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_pow(NnGraph *g, NnNode *n) { return binary(g, n, true); }
bool shape_max(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_min(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_gt(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_ge(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_lt(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_le(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_eq(NnGraph *g, NnNode *n) { return binary(g, n, false); }
bool shape_ne(NnGraph *g, NnNode *n) { return binary(g, n, false); }

void vjp_add(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    gin[0] = nn_rule_sumto(g, gout, &f.sa, f.loc);
    gin[1] = nn_rule_sumto(g, gout, &f.sb, f.loc);
}

void vjp_sub(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    gin[0] = nn_rule_sumto(g, gout, &f.sa, f.loc);
    gin[1] = nn_rule_sumto(g, nn_ir_unary(g, NN_OP_NEG, gout, f.loc), &f.sb, f.loc);
}

void vjp_mul(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    gin[0] = nn_rule_sumto(g, bin(g, NN_OP_MUL, gout, f.b, f.loc), &f.sa, f.loc);
    gin[1] = nn_rule_sumto(g, bin(g, NN_OP_MUL, gout, f.a, f.loc), &f.sb, f.loc);
}

// d(a/b)/db = -a/b^2 = -out/b.
void vjp_div(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    gin[0] = nn_rule_sumto(g, bin(g, NN_OP_DIV, gout, f.b, f.loc), &f.sa, f.loc);
    NnId q = bin(g, NN_OP_DIV, bin(g, NN_OP_MUL, gout, id, f.loc), f.b, f.loc);
    gin[1] = nn_rule_sumto(g, nn_ir_unary(g, NN_OP_NEG, q, f.loc), &f.sb, f.loc);
}

// d(a^b)/da = b a^(b-1); d(a^b)/db = log(a) a^b, built only when b can vary
// (a CONST exponent, as in x^2, would otherwise drag a log(x) into the graph).
void vjp_pow(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    NnId bm1 = bin(g, NN_OP_SUB, f.b, scalar(g, 1, &f), f.loc);
    NnId da = bin(g, NN_OP_MUL, f.b, bin(g, NN_OP_POW, f.a, bm1, f.loc), f.loc);
    gin[0] = nn_rule_sumto(g, bin(g, NN_OP_MUL, gout, da, f.loc), &f.sa, f.loc);
    gin[1] = -1;
    if (g->nodes[f.b].op != NN_OP_CONST) {
        NnId db = bin(g, NN_OP_MUL, nn_ir_unary(g, NN_OP_LOG, f.a, f.loc), id, f.loc);
        gin[1] = nn_rule_sumto(g, bin(g, NN_OP_MUL, gout, db, f.loc), &f.sb, f.loc);
    }
}

// MAX/MIN: the gradient goes to a where the mask (a > b, or a < b) holds and
// to b elsewhere, ties included, so relu(x) = max(x, 0) has gradient 0 at 0.
static void vjp_extreme(NnGraph *g, NnId id, NnId gout, NnId *gin, NnOp cmp)
{
    Fwd f = fwd(g, id);
    NnId mask = bin(g, cmp, f.a, f.b, f.loc);
    NnId ga = bin(g, NN_OP_MUL, gout, mask, f.loc);
    gin[0] = nn_rule_sumto(g, ga, &f.sa, f.loc);
    gin[1] = nn_rule_sumto(g, bin(g, NN_OP_SUB, gout, ga, f.loc), &f.sb, f.loc);
}

void vjp_max(NnGraph *g, NnId id, NnId gout, NnId *gin) { vjp_extreme(g, id, gout, gin, NN_OP_GT); }
void vjp_min(NnGraph *g, NnId id, NnId gout, NnId *gin) { vjp_extreme(g, id, gout, gin, NN_OP_LT); }
void vjp_gt(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_ge(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_lt(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_le(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_eq(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_ne(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }

// ---- select, dropout ----

// SELECT(c, a, b): c may have any dtype (nonzero = true); a and b agree; all
// three broadcast together.
bool shape_select(NnGraph *g, NnNode *n)
{
    const NnNode *c = &g->nodes[n->in[0]], *a = &g->nodes[n->in[1]], *b = &g->nodes[n->in[2]];
    char tc[NN_TYPE_BUF], ta[NN_TYPE_BUF], tb[NN_TYPE_BUF];
    nn_rule_in_type(g, n, 0, tc);
    nn_rule_in_type(g, n, 1, ta);
    nn_rule_in_type(g, n, 2, tb);
    NnShape ab;
    if (a->dtype != b->dtype || !nn_broadcast_shapes(&a->shape, &b->shape, &ab)) {
        nn_set_err(g, "cannot select between %s and %s%s", ta, tb,
                   a->dtype != b->dtype ? ": dtypes differ" : "");
        return false;
    }
    if (!nn_broadcast_shapes(&c->shape, &ab, &n->shape)) {
        nn_set_err(g, "select: condition %s does not broadcast with %s and %s", tc, ta, tb);
        return false;
    }
    n->dtype = a->dtype;
    return true;
}

void vjp_select(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Fwd f = fwd(g, id);
    NnId zero = scalar(g, 0, &f);
    gin[0] = -1;
    gin[1] = nn_rule_sumto(g, nn_ir_select(g, f.a, gout, zero, f.loc), &f.sb, f.loc);
    gin[2] = nn_rule_sumto(g, nn_ir_select(g, f.a, zero, gout, f.loc), &f.sc, f.loc);
}

// DROPOUT(x, step, rate): step and rate are scalars; the rate is a float read at
// run time (a run-time hyperparameter), so its range is the setter's to check.
bool shape_dropout(NnGraph *g, NnNode *n)
{
    char t[NN_TYPE_BUF];
    if (!unary(g, n, true))
        return false;
    if (g->nodes[n->in[1]].shape.rank != 0) {
        nn_set_err(g, "dropout: the step counter must be a scalar, got %s",
                   nn_rule_in_type(g, n, 1, t));
        return false;
    }
    const NnNode *r = &g->nodes[n->in[2]];
    if (r->shape.rank != 0 || (r->dtype != NN_DT_F32 && r->dtype != NN_DT_F64)) {
        nn_set_err(g, "dropout: the rate must be a float scalar, got %s",
                   nn_rule_in_type(g, n, 2, t));
        return false;
    }
    return true;
}

// The same (seed, step, rate) redraws the same mask over the same indices.
void vjp_dropout(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    NnNode *n = &g->nodes[id];
    NnAttr a = n->attr;
    NnId in[3] = {gout, n->in[1], n->in[2]};
    gin[0] = nn_ir_add(g, NN_OP_DROPOUT, in, 3, &a, n->loc);
    gin[1] = gin[2] = -1;
}
