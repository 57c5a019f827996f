// Constant folding: a node whose inputs are all CONST becomes one CONST of the
// node's type. A CONST holds one scalar broadcast to its shape, so every
// foldable op maps scalars to a scalar: elementwise math, layout (reshape,
// transpose, broadcast: value unchanged), and reductions/matmul where the
// element count is a known number (sum = v * count). requires: a verified
// graph. provides: no foldable op has only CONST inputs. An f32 node is folded
// the way the run time computes it: operands rounded to f32, f32 libm
// functions, and every intermediate result rounded to f32, so a folded
// constant equals what the interpreter would produce. f64 nodes use double
// throughout. NaN operands and integer division are left to the runtime, whose
// exact semantics we do not duplicate here.
#include "pass.h"

#include <math.h>

// Elements reduced away from `in` to make `out` (both concrete), or -1 when a
// symbolic dim is involved.
static int64_t reduced_count(const NnShape *in, uint32_t axes, bool all)
{
    int64_t c = 1;
    for (int i = 0; i < in->rank; i++) {
        if (!all && !(axes & (1u << i)))
            continue;
        if (in->dim[i] < 0)
            return -1;
        c *= in->dim[i];
    }
    return c;
}

static int64_t numel(const NnShape *s) { return reduced_count(s, 0, true); }

// x in the precision of the value being folded: f32 rounds, others keep double.
static double rnd(bool f32, double x) { return f32 ? (double)(float)x : x; }

// The runtime's sigmoid (runtime/kernels/elemwise.c), in either precision.
static double sigmoid(bool f32, double x)
{
    if (f32) {
        float v = (float)x;
        float e = expf(v >= 0 ? -v : v);
        return v >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
    double e = exp(x >= 0 ? -x : x);
    return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

static bool eval_unary(NnOp op, bool f32, double x, double *r)
{
    float v = (float)x;
    switch (op) {
    case NN_OP_NEG: *r = -x; return true;
    case NN_OP_EXP: *r = f32 ? expf(v) : exp(x); return true;
    case NN_OP_LOG: *r = f32 ? logf(v) : log(x); return true;
    case NN_OP_SQRT: *r = f32 ? sqrtf(v) : sqrt(x); return true;
    case NN_OP_TANH: *r = f32 ? tanhf(v) : tanh(x); return true;
    case NN_OP_SIGMOID: *r = sigmoid(f32, x); return true;
    case NN_OP_ABS: *r = fabs(x); return true;
    case NN_OP_SIN: *r = f32 ? sinf(v) : sin(x); return true;
    case NN_OP_COS: *r = f32 ? cosf(v) : cos(x); return true;
    case NN_OP_CAST: *r = x; return true; // rounded to the target dtype below
    case NN_OP_RESHAPE:
    case NN_OP_TRANSPOSE:
    case NN_OP_BROADCAST:
    case NN_OP_REDUCE_MEAN:
    case NN_OP_REDUCE_MAX: *r = x; return true;
    default: return false;
    }
}

// + - * / in double, then rounded, equal the f32 operation exactly (double has
// more than twice f32's precision), so only pow needs the f32 function.
static bool eval_binary(NnOp op, bool f32, double a, double b, double *r)
{
    switch (op) {
    case NN_OP_ADD: *r = a + b; return true;
    case NN_OP_SUB: *r = a - b; return true;
    case NN_OP_MUL: *r = a * b; return true;
    case NN_OP_DIV: *r = a / b; return true;
    case NN_OP_POW: *r = f32 ? powf((float)a, (float)b) : pow(a, b); return true;
    case NN_OP_MAX: *r = a > b ? a : b; return true;
    case NN_OP_MIN: *r = a < b ? a : b; return true;
    case NN_OP_GT: *r = a > b; return true;
    case NN_OP_GE: *r = a >= b; return true;
    case NN_OP_LT: *r = a < b; return true;
    case NN_OP_LE: *r = a <= b; return true;
    case NN_OP_EQ: *r = a == b; return true;
    case NN_OP_NE: *r = a != b; return true;
    default: return false;
    }
}

// Ops whose value depends on how many elements they combine. The run time adds
// c equal terms one by one, which v * c matches only up to rounding; f32 at
// least rounds each step here as there.
static bool eval_counted(const NnGraph *g, const NnNode *n, bool f32, const double *v, double *r)
{
    const NnShape *in = &g->nodes[n->in[0]].shape;
    int64_t c;
    switch (n->op) {
    case NN_OP_REDUCE_SUM:
        c = reduced_count(in, n->attr.axes, false);
        *r = v[0] * (double)c;
        return c > 0;
    case NN_OP_LOGSUMEXP:
        c = reduced_count(in, n->attr.axes, false);
        *r = v[0] + rnd(f32, log((double)c));
        return c > 0;
    case NN_OP_SUMTO: {
        int64_t a = numel(in), b = numel(&n->shape);
        *r = b > 0 ? v[0] * (double)(a / b) : 0;
        return a > 0 && b > 0;
    }
    case NN_OP_MATMUL: {
        // Inner dimension K: A is [M, K], or [K, M] when read transposed
        // (with leading dims, [L..., K] or, transposed, every dim but the last).
        const NnShape *sa = &g->nodes[n->in[0]].shape;
        c = sa->dim[n->attr.ta ? sa->rank - 2 : sa->rank - 1];
        for (int d = 0; n->attr.ta && d + 2 < sa->rank; d++)
            c *= sa->dim[d];
        *r = rnd(f32, v[0] * v[1]) * (double)c;
        return c > 0;
    }
    default: return false;
    }
}

// The folded value of old node n, or false when n must stay. Operands are
// looked up in the graph being built, where earlier folds already are CONSTs.
static bool eval(const NnRewrite *rw, const NnNode *n, double *r)
{
    const NnGraph *g = rw->old;
    double v[3];
    if (n->nin == 0 || n->nin > 3 || nn_op_has(n->op, NN_OPF_RANDOM) || n->op == NN_OP_DROPOUT)
        return false;
    for (int k = 0; k < n->nin; k++) {
        const NnNode *x = &rw->g->nodes[rw->map[n->in[k]]];
        if (x->op != NN_OP_CONST || isnan(x->attr.value))
            return false;
        // The value the run time holds: a CONST made from a double is stored in its dtype.
        v[k] = rnd(x->dtype == NN_DT_F32, x->attr.value);
    }
    bool isint = n->dtype == NN_DT_I32;
    // Comparisons yield the node's dtype but compute in the operands'.
    bool f32 = n->nin && rw->g->nodes[rw->map[n->in[n->nin - 1]]].dtype == NN_DT_F32;
    bool ok = true;
    if (n->op == NN_OP_SELECT)
        *r = v[0] != 0 ? v[1] : v[2];
    else if (eval_counted(g, n, f32, v, r))
        ok = true;
    else if (n->nin == 1)
        ok = eval_unary(n->op, f32, v[0], r);
    else
        ok = eval_binary(n->op, f32, v[0], v[1], r) && !(isint && n->op == NN_OP_DIV);
    if (!ok)
        return false;
    if (isint) {
        // Keep only results the runtime would produce exactly (casts truncate).
        double t = trunc(*r);
        if (!(t >= INT32_MIN && t <= INT32_MAX) || (n->op != NN_OP_CAST && t != *r))
            return false;
        *r = t;
    } else if (n->dtype == NN_DT_F32) {
        *r = (double)(float)*r;
    }
    return true;
}

NnGraph *nn_pass_fold(NnGraph *g)
{
    NnRewrite rw;
    nn_rewrite_begin(&rw, g);
    for (int i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        double r;
        if (n->op == NN_OP_CONST || !eval(&rw, n, &r)) {
            nn_rewrite_copy(&rw, i);
            continue;
        }
        NnAttr a = {0};
        a.value = r;
        a.dtype = n->dtype;
        a.shape = n->shape;
        rw.map[i] = nn_rewrite_add(&rw, NN_OP_CONST, NULL, 0, &a, n->loc);
        rw.changed = true;
    }
    return nn_rewrite_end(&rw);
}
