// Algebraic simplification: local rewrites that remove work without changing
// any value (up to the sign of a zero in x + 0 and summation order): x*1, 1*x, x+0,
// 0+x, x-0, 0-x -> -x, x*-1 -> -x, x/1, x^1, x^2 -> x*x, -(-x), transpose chains
// (composed, or dropped when the identity), reshape chains and no-op reshapes,
// broadcast/sumto chains, broadcast(reshape adding leading 1s), no-op
// broadcasts/sumtos/casts/reductions, and
// sumto(broadcast(x)) back to x's shape -> x * count, SUMTO -> REDUCE_SUM where
// one reduction says the same, and relu masks x > k -> max(x, k) > k when
// max(x, k) exists (so x dies early and max fuses). An identity only applies
// when the node's type equals the operand's (x + zeros[N, 4] for x[4] stays).
// x*0 is NOT folded to 0: 0 * inf and 0 * NaN are NaN, and a NaN loss must stay
// visible rather than turn into a silent zero gradient.
// requires: a verified graph. provides: none of these patterns remains.
#include "pass.h"

#include <string.h>

typedef struct Ctx {
    NnRewrite *rw;
    const NnNode *n; // the old node being rebuilt
    NnId a, b;       // its first two operands, in new ids (-1 if absent)
} Ctx;

static const NnNode *node(const Ctx *c, NnId id) { return &c->rw->g->nodes[id]; }

static bool is_const(const Ctx *c, NnId id, double v)
{
    return id >= 0 && node(c, id)->op == NN_OP_CONST && node(c, id)->attr.value == v;
}

// Whether new node x has exactly the old node's type, so x can stand for it.
static bool fits(const Ctx *c, NnId x)
{
    return node(c, x)->dtype == c->n->dtype && nn_shape_eq(&node(c, x)->shape, &c->n->shape);
}

static NnId add1(const Ctx *c, NnOp op, NnId x, const NnAttr *attr)
{
    return nn_rewrite_add(c->rw, op, &x, 1, attr, c->n->loc);
}

static NnId arith(const Ctx *c)
{
    NnOp op = c->n->op;
    NnId a = c->a, b = c->b;
    if ((op == NN_OP_ADD || op == NN_OP_SUB) && is_const(c, b, 0) && fits(c, a))
        return a;
    if ((op == NN_OP_MUL || op == NN_OP_DIV || op == NN_OP_POW) && is_const(c, b, 1) && fits(c, a))
        return a;
    if ((op == NN_OP_ADD && is_const(c, a, 0)) || (op == NN_OP_MUL && is_const(c, a, 1)))
        return fits(c, b) ? b : -1;
    if (op == NN_OP_SUB && is_const(c, a, 0) && fits(c, b))
        return add1(c, NN_OP_NEG, b, NULL);
    if (op == NN_OP_MUL && is_const(c, b, -1) && fits(c, a))
        return add1(c, NN_OP_NEG, a, NULL);
    if (op == NN_OP_MUL && is_const(c, a, -1) && fits(c, b))
        return add1(c, NN_OP_NEG, b, NULL);
    if (op == NN_OP_POW && is_const(c, b, 2) && fits(c, a)) {
        NnId in[2] = {a, a};
        return nn_rewrite_add(c->rw, NN_OP_MUL, in, 2, NULL, c->n->loc);
    }
    if (op == NN_OP_NEG && node(c, a)->op == NN_OP_NEG)
        return node(c, a)->in[0];
    return -1;
}

static NnId transpose(const Ctx *c)
{
    int rank = c->n->shape.rank;
    const NnNode *x = node(c, c->a);
    NnAttr attr = c->n->attr;
    NnId src = c->a;
    if (x->op == NN_OP_TRANSPOSE) {
        // y = T(x, p1): y[i] = x[p1[i]]; z = T(y, p2): z[i] = x[p1[p2[i]]].
        for (int i = 0; i < rank; i++)
            attr.perm[i] = x->attr.perm[c->n->attr.perm[i]];
        src = x->in[0];
    }
    bool ident = true;
    for (int i = 0; i < rank; i++)
        ident &= attr.perm[i] == i;
    if (ident)
        return src;
    return src == c->a ? -1 : add1(c, NN_OP_TRANSPOSE, src, &attr);
}

// Whether reshape node r only puts size-1 dims in front of its input's shape.
static bool only_adds_leading_ones(const Ctx *c, const NnNode *r)
{
    const NnShape *in = &node(c, r->in[0])->shape, *out = &r->shape;
    int lead = out->rank - in->rank;
    if (lead < 0)
        return false;
    for (int i = 0; i < out->rank; i++)
        if (out->dim[i] != (i < lead ? 1 : in->dim[i - lead]))
            return false;
    return true;
}

// RESHAPE, BROADCAST and SUMTO: a no-op when the type is unchanged, and a chain
// of two of the same kind is one (reshape: same count; broadcast and sumto:
// numpy broadcasting is transitive).
static NnId layout(const Ctx *c)
{
    NnOp op = c->n->op;
    const NnNode *x = node(c, c->a);
    if (fits(c, c->a))
        return c->a;
    if (x->op == op) {
        NnId src = x->in[0];
        if (fits(c, src))
            return src;
        return add1(c, op, src, &c->n->attr);
    }
    if (op == NN_OP_BROADCAST && x->op == NN_OP_RESHAPE && only_adds_leading_ones(c, x))
        return add1(c, op, x->in[0], &c->n->attr); // broadcasting adds those dims anyway
    if (op == NN_OP_SUMTO && x->op == NN_OP_BROADCAST && fits(c, x->in[0])) {
        // Each element of x was repeated count times, and summing adds them back.
        int64_t big = 1, small = 1;
        for (int i = 0; i < x->shape.rank; i++)
            big *= x->shape.dim[i] < 0 ? -1 : x->shape.dim[i];
        for (int i = 0; i < c->n->shape.rank; i++)
            small *= c->n->shape.dim[i] < 0 ? -1 : c->n->shape.dim[i];
        bool concrete = big > 0 && small > 0;
        for (int i = 0; i < x->shape.rank; i++)
            concrete &= x->shape.dim[i] >= 0;
        if (!concrete)
            return -1;
        if (big == small)
            return x->in[0];
        NnAttr k = {0};
        k.value = (double)(big / small);
        k.dtype = c->n->dtype;
        NnId in[2] = {x->in[0], -1}; // read x before adding nodes moves the array
        in[1] = nn_rewrite_add(c->rw, NN_OP_CONST, NULL, 0, &k, c->n->loc);
        return nn_rewrite_add(c->rw, NN_OP_MUL, in, 2, NULL, c->n->loc);
    }
    return -1;
}

// SUMTO that one REDUCE_SUM can express: it drops leading dims only (keep =
// false), or keeps the rank and sums dims down to 1 (keep = true). Reductions
// fuse (form R) and SUMTO does not, so the reduction is the canonical form.
static NnId sumto_as_reduce(const Ctx *c)
{
    const NnShape *x = &node(c, c->a)->shape, *t = &c->n->shape;
    int lead = x->rank - t->rank;
    uint32_t axes = 0;
    for (int i = 0; i < lead; i++)
        axes |= 1u << i;
    bool keep = false;
    for (int i = 0; i < t->rank; i++) {
        if (t->dim[i] == x->dim[lead + i])
            continue;
        if (lead > 0)
            return -1; // both kinds at once: leave it to SUMTO
        axes |= 1u << i;
        keep = true;
    }
    NnAttr a = {0};
    a.axes = axes;
    a.keep = keep;
    return add1(c, NN_OP_REDUCE_SUM, c->a, &a);
}

// The backward pass of max(x, k) masks with x > k, which would keep x alive
// next to max(x, k) and stop the activation fusing into x's kernel. But
// x > k exactly when max(x, k) > k (and x < k when min(x, k) < k; NaN compares
// false both ways), so the mask can read the activation instead.
static NnId mask_from_extreme(const Ctx *c)
{
    NnOp want = c->n->op == NN_OP_GT ? NN_OP_MAX : NN_OP_MIN;
    const NnGraph *g = c->rw->g;
    for (NnId i = g->count - 1; i >= 0; i--) {
        const NnNode *m = &g->nodes[i];
        if (m->op == want && m->in[0] == c->a && m->in[1] == c->b && fits(c, i)) {
            NnId in[2] = {i, c->b};
            return nn_rewrite_add(c->rw, c->n->op, in, 2, NULL, c->n->loc);
        }
    }
    return -1;
}

// A replacement (new id) for the old node, or -1 when no rule applies.
static NnId rewrite(const Ctx *c)
{
    switch (c->n->op) {
    case NN_OP_ADD:
    case NN_OP_SUB:
    case NN_OP_MUL:
    case NN_OP_DIV:
    case NN_OP_POW:
    case NN_OP_NEG: return arith(c);
    case NN_OP_TRANSPOSE: return transpose(c);
    case NN_OP_RESHAPE:
    case NN_OP_BROADCAST: return layout(c);
    case NN_OP_SUMTO: {
        NnId r = layout(c);
        return r >= 0 ? r : sumto_as_reduce(c);
    }
    case NN_OP_GT:
    case NN_OP_LT: return mask_from_extreme(c);
    case NN_OP_CAST: return node(c, c->a)->dtype == c->n->attr.dtype ? c->a : -1;
    // Reducing only size-1 axes (keeping them) changes nothing.
    case NN_OP_REDUCE_SUM:
    case NN_OP_REDUCE_MEAN:
    case NN_OP_REDUCE_MAX:
    case NN_OP_LOGSUMEXP: return fits(c, c->a) ? c->a : -1;
    // A pad, slice or concatenation whose result has its first operand's type
    // adds nothing (no padding; the whole axis; the other operands are empty).
    case NN_OP_PAD:
    case NN_OP_SLICE:
    case NN_OP_SLICE_BWD:
    case NN_OP_CONCAT: return fits(c, c->a) ? c->a : -1;
    default: return -1;
    }
}

NnGraph *nn_pass_simplify(NnGraph *g)
{
    NnRewrite rw;
    nn_rewrite_begin(&rw, g);
    for (int i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        Ctx c = {&rw, n, -1, -1};
        if (n->nin >= 1)
            c.a = rw.map[n->in[0]];
        if (n->nin >= 2)
            c.b = rw.map[n->in[1]];
        NnId r = n->nin >= 1 && n->op != NN_OP_FUSED ? rewrite(&c) : -1;
        if (r < 0) {
            nn_rewrite_copy(&rw, i);
            continue;
        }
        rw.map[i] = r;
        rw.changed = true;
    }
    return nn_rewrite_end(&rw);
}
