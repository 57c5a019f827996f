// Shape rules and VJPs for reductions over the attr.axes bitmask (bit k =
// axis k); attr.keep keeps reduced axes as size 1. A VJP expands the output
// gradient back to the input's shape (reshape to keep-dims, then broadcast).
#include "op_common.h"

static bool reduce(NnGraph *g, NnNode *n, bool float_only)
{
    const NnNode *x = &g->nodes[n->in[0]];
    char t[NN_TYPE_BUF];
    if (float_only && !nn_rule_is_float(x->dtype)) {
        nn_set_err(g, "%s expects a float tensor, got %s", nn_op_name(n->op),
                   nn_rule_in_type(g, n, 0, t));
        return false;
    }
    if (x->shape.rank < 32 && (n->attr.axes >> x->shape.rank) != 0) {
        nn_set_err(g, "%s: axis out of range for %s", nn_op_name(n->op),
                   nn_rule_in_type(g, n, 0, t));
        return false;
    }
    n->dtype = x->dtype;
    n->shape.rank = 0;
    for (int i = 0; i < x->shape.rank; i++) {
        bool red = (n->attr.axes >> i) & 1;
        if (red && !n->attr.keep)
            continue;
        n->shape.dim[n->shape.rank++] = red ? 1 : x->shape.dim[i];
    }
    return true;
}

bool shape_reduce_sum(NnGraph *g, NnNode *n) { return reduce(g, n, false); }
bool shape_reduce_mean(NnGraph *g, NnNode *n) { return reduce(g, n, true); }
bool shape_reduce_max(NnGraph *g, NnNode *n) { return reduce(g, n, false); }
bool shape_logsumexp(NnGraph *g, NnNode *n) { return reduce(g, n, true); }

typedef struct Red {
    NnLoc loc;
    NnId x;
    NnShape sx;
    uint32_t axes;
    NnDType dt;
} Red;

static Red red(const NnGraph *g, NnId id)
{
    const NnNode *n = &g->nodes[id];
    return (Red){n->loc, n->in[0], g->nodes[n->in[0]].shape, n->attr.axes, n->dtype};
}

void vjp_reduce_sum(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Red r = red(g, id);
    gin[0] = nn_rule_expand(g, gout, &r.sx, r.axes, r.loc);
}

// The count of reduced elements is a number when the reduced dims are; with a
// symbolic dim (N) it is computed in the graph as a sum of ones, which folding
// turns back into a number once N is bound.
void vjp_reduce_mean(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Red r = red(g, id);
    int64_t count = 1;
    bool symbolic = false;
    for (int i = 0; i < r.sx.rank; i++) {
        if (!((r.axes >> i) & 1))
            continue;
        if (r.sx.dim[i] < 0)
            symbolic = true;
        else
            count *= r.sx.dim[i];
    }
    NnId scaled;
    if (!symbolic) {
        NnId inv = nn_ir_const(g, count ? 1.0 / (double)count : 0.0, r.dt, r.loc);
        scaled = nn_ir_binary(g, NN_OP_MUL, gout, inv, r.loc);
    } else {
        NnId ones = nn_rule_fill(g, 1, r.dt, &r.sx, r.loc);
        NnId n = nn_ir_reduce(g, NN_OP_REDUCE_SUM, ones, r.axes, g->nodes[id].attr.keep, r.loc);
        scaled = nn_ir_binary(g, NN_OP_DIV, gout, n, r.loc);
    }
    gin[0] = nn_rule_expand(g, scaled, &r.sx, r.axes, r.loc);
}

// The gradient goes to the positions equal to the max; tied positions split
// it evenly, so the input gradient still sums to the output gradient.
void vjp_reduce_max(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Red r = red(g, id);
    bool keep = g->nodes[id].attr.keep;
    NnId big = nn_rule_expand(g, id, &r.sx, r.axes, r.loc);
    NnId mask = nn_ir_binary(g, NN_OP_EQ, r.x, big, r.loc);
    NnId ties = nn_ir_reduce(g, NN_OP_REDUCE_SUM, mask, r.axes, keep, r.loc);
    NnId share = nn_ir_binary(g, NN_OP_DIV, gout, ties, r.loc);
    NnId gx = nn_rule_expand(g, share, &r.sx, r.axes, r.loc);
    gin[0] = nn_ir_binary(g, NN_OP_MUL, gx, mask, r.loc);
}

// d logsumexp(x) / dx = softmax(x) = exp(x - out).
void vjp_logsumexp(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    Red r = red(g, id);
    NnId big = nn_rule_expand(g, id, &r.sx, r.axes, r.loc);
    NnId sm = nn_ir_unary(g, NN_OP_EXP, nn_ir_binary(g, NN_OP_SUB, r.x, big, r.loc), r.loc);
    NnId gx = nn_rule_expand(g, gout, &r.sx, r.axes, r.loc);
    gin[0] = nn_ir_binary(g, NN_OP_MUL, gx, sm, r.loc);
}
