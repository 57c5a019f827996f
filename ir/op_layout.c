// Shape rules and VJPs for the layout ops: RESHAPE (same element count, with
// symbolic dims counted as factors), TRANSPOSE (attr.perm), BROADCAST (numpy,
// to attr.shape) and SUMTO (its adjoint: sums broadcast dims away). The VJP of
// each is another layout op, so gradients keep exact input shapes.
#include "op_common.h"

// Element counts are products of numbers and symbols; they are equal when the
// numeric parts and the multisets of symbols are.
static bool same_numel(const NnShape *a, const NnShape *b)
{
    int64_t na = 1, nb = 1;
    int syms[NN_MAX_SYMS] = {0};
    for (int i = 0; i < a->rank; i++) {
        if (a->dim[i] >= 0)
            na *= a->dim[i];
        else if (-a->dim[i] - 1 < NN_MAX_SYMS)
            syms[-a->dim[i] - 1]++;
    }
    for (int i = 0; i < b->rank; i++) {
        if (b->dim[i] >= 0)
            nb *= b->dim[i];
        else if (-b->dim[i] - 1 < NN_MAX_SYMS)
            syms[-b->dim[i] - 1]--;
    }
    for (int k = 0; k < NN_MAX_SYMS; k++)
        if (syms[k] != 0)
            return false;
    return na == nb;
}

bool shape_reshape(NnGraph *g, NnNode *n)
{
    const NnNode *x = &g->nodes[n->in[0]];
    char t[NN_TYPE_BUF], u[NN_TYPE_BUF], e[64];
    if (!nn_rule_shape_ok(g, &n->attr.shape)) {
        nn_set_err(g, "reshape: bad target shape (rank %d)", n->attr.shape.rank);
        return false;
    }
    if (!same_numel(&x->shape, &n->attr.shape)) {
        nn_set_err(g, "cannot reshape %s (%s elements) to %s", nn_rule_in_type(g, n, 0, t),
                   nn_rule_numel_str(g, &x->shape, e, sizeof e),
                   nn_type_str(g, x->dtype, &n->attr.shape, u, sizeof u));
        return false;
    }
    n->dtype = x->dtype;
    n->shape = n->attr.shape;
    return true;
}

void vjp_reshape(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    NnShape s = g->nodes[g->nodes[id].in[0]].shape;
    gin[0] = nn_ir_reshape(g, gout, &s, g->nodes[id].loc);
}

bool shape_transpose(NnGraph *g, NnNode *n)
{
    const NnNode *x = &g->nodes[n->in[0]];
    bool seen[NN_MAX_RANK] = {false};
    for (int i = 0; i < x->shape.rank; i++) {
        int p = n->attr.perm[i];
        if (p < 0 || p >= x->shape.rank || seen[p]) {
            char t[NN_TYPE_BUF];
            nn_set_err(g, "transpose: perm is not a permutation of the axes of %s",
                       nn_rule_in_type(g, n, 0, t));
            return false;
        }
        seen[p] = true;
    }
    n->dtype = x->dtype;
    n->shape.rank = x->shape.rank;
    for (int i = 0; i < x->shape.rank; i++)
        n->shape.dim[i] = x->shape.dim[n->attr.perm[i]];
    return true;
}

// Out dim i is in dim perm[i], so the inverse sends in dim perm[i] back to i.
void vjp_transpose(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    int inv[NN_MAX_RANK] = {0};
    for (int i = 0; i < n->shape.rank; i++)
        inv[n->attr.perm[i]] = i;
    gin[0] = nn_ir_transpose(g, gout, inv, n->loc);
}

// True when `small` broadcasts to `big` under numpy rules (aligned right; a
// dim must equal or be 1).
static bool broadcasts_to(const NnShape *small, const NnShape *big)
{
    if (small->rank > big->rank)
        return false;
    for (int i = 0; i < small->rank; i++) {
        int64_t d = small->dim[i], e = big->dim[big->rank - small->rank + i];
        if (d != e && d != 1)
            return false;
    }
    return true;
}

bool shape_broadcast(NnGraph *g, NnNode *n)
{
    const NnNode *x = &g->nodes[n->in[0]];
    if (!nn_rule_shape_ok(g, &n->attr.shape) || !broadcasts_to(&x->shape, &n->attr.shape)) {
        char t[NN_TYPE_BUF], u[NN_TYPE_BUF];
        nn_set_err(g, "cannot broadcast %s to %s", nn_rule_in_type(g, n, 0, t),
                   nn_type_str(g, x->dtype, &n->attr.shape, u, sizeof u));
        return false;
    }
    n->dtype = x->dtype;
    n->shape = n->attr.shape;
    return true;
}

void vjp_broadcast(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    NnShape s = g->nodes[g->nodes[id].in[0]].shape;
    gin[0] = nn_rule_sumto(g, gout, &s, g->nodes[id].loc);
}

bool shape_sumto(NnGraph *g, NnNode *n)
{
    const NnNode *x = &g->nodes[n->in[0]];
    if (!nn_rule_shape_ok(g, &n->attr.shape) || !broadcasts_to(&n->attr.shape, &x->shape)) {
        char t[NN_TYPE_BUF], u[NN_TYPE_BUF];
        nn_set_err(g, "cannot sum %s down to %s", nn_rule_in_type(g, n, 0, t),
                   nn_type_str(g, x->dtype, &n->attr.shape, u, sizeof u));
        return false;
    }
    n->dtype = x->dtype;
    n->shape = n->attr.shape;
    return true;
}

void vjp_sumto(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    NnShape s = g->nodes[g->nodes[id].in[0]].shape;
    gin[0] = nn_rule_broadcast(g, gout, &s, g->nodes[id].loc);
}
