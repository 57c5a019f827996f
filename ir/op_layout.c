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

// ---- PAD, SLICE, SLICE_BWD, CONCAT: general layout along any axis ----

bool shape_pad(NnGraph *g, NnNode *n)
{
    const NnNode *x = &g->nodes[n->in[0]];
    char t[NN_TYPE_BUF];
    n->dtype = x->dtype;
    n->shape = x->shape;
    for (int k = 0; k < x->shape.rank; k++) {
        int64_t lo = n->attr.lo[k], hi = n->attr.hi[k];
        if (lo < 0 || hi < 0 || lo > INT32_MAX || hi > INT32_MAX) {
            nn_set_err(g, "pad: amounts must be >= 0, got %lld and %lld on axis %d of %s",
                       (long long)lo, (long long)hi, k, nn_rule_in_type(g, n, 0, t));
            return false;
        }
        if ((lo || hi) && x->shape.dim[k] < 0) {
            nn_set_err(g, "pad: axis %d of %s is symbolic and cannot be padded", k,
                       nn_rule_in_type(g, n, 0, t));
            return false;
        }
        if (x->shape.dim[k] >= 0)
            n->shape.dim[k] += lo + hi;
    }
    for (int k = x->shape.rank; k < NN_MAX_RANK; k++) {
        if (n->attr.lo[k] || n->attr.hi[k]) {
            nn_set_err(g, "pad: amounts given for axis %d, but %s has rank %d", k,
                       nn_rule_in_type(g, n, 0, t), x->shape.rank);
            return false;
        }
    }
    return true;
}

// The padded input is the output's slice [lo, lo + dim) on every padded axis.
void vjp_pad(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    const NnShape xs = g->nodes[n->in[0]].shape;
    const NnAttr a = n->attr;
    NnLoc loc = n->loc;
    NnId d = gout;
    for (int k = 0; k < xs.rank; k++)
        if (a.lo[k] || a.hi[k])
            d = nn_ir_slice(g, d, k, a.lo[k], a.lo[k] + xs.dim[k], 1, loc);
    gin[0] = d;
}

// The slice of axis `axis` of shape s, or false with a message naming `what`.
static bool slice_dims(NnGraph *g, const NnNode *n, const NnShape *s, NnDType dt,
                       const char *what, int64_t *len)
{
    const NnAttr *a = &n->attr;
    char t[NN_TYPE_BUF];
    nn_type_str(g, dt, s, t, sizeof t);
    if (a->axis < 0 || a->axis >= s->rank) {
        nn_set_err(g, "%s: axis %d is out of range for %s", what, a->axis, t);
        return false;
    }
    int64_t dim = s->dim[a->axis];
    if (dim < 0) {
        nn_set_err(g, "%s: axis %d of %s is symbolic and cannot be sliced", what, a->axis, t);
        return false;
    }
    if (a->start < 0 || a->start >= a->stop || a->stop > dim || a->step < 1) {
        nn_set_err(g, "%s: %lld:%lld:%lld is not a non-empty slice of axis %d of %s", what,
                   (long long)a->start, (long long)a->stop, (long long)a->step, a->axis, t);
        return false;
    }
    *len = (a->stop - a->start + a->step - 1) / a->step;
    return true;
}

bool shape_slice(NnGraph *g, NnNode *n)
{
    const NnNode *x = &g->nodes[n->in[0]];
    int64_t len;
    if (!slice_dims(g, n, &x->shape, x->dtype, "slice", &len))
        return false;
    n->dtype = x->dtype;
    n->shape = x->shape;
    n->shape.dim[n->attr.axis] = len;
    return true;
}

static NnId slice_op(NnGraph *g, NnOp op, NnId x, const NnAttr *from, const NnShape *s,
                     NnLoc loc)
{
    NnAttr a = {0};
    a.axis = from->axis;
    a.start = from->start;
    a.stop = from->stop;
    a.step = from->step;
    if (s)
        a.shape = *s;
    return nn_ir_add(g, op, &x, 1, &a, loc);
}

void vjp_slice(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnShape xs = g->nodes[n->in[0]].shape;
    gin[0] = slice_op(g, NN_OP_SLICE_BWD, gout, &n->attr, &xs, n->loc);
}

// dy must be the slice of attr.shape the attributes describe.
bool shape_slice_bwd(NnGraph *g, NnNode *n)
{
    const NnNode *dy = &g->nodes[n->in[0]];
    const NnShape *s = &n->attr.shape;
    int64_t len;
    if (!nn_rule_shape_ok(g, s) || !slice_dims(g, n, s, dy->dtype, "slice gradient", &len))
        return false;
    NnShape want = *s;
    want.dim[n->attr.axis] = len;
    if (!nn_shape_eq(&want, &dy->shape)) {
        char t[NN_TYPE_BUF], u[NN_TYPE_BUF];
        nn_set_err(g, "slice gradient: %s should be %s", nn_rule_in_type(g, n, 0, t),
                   nn_type_str(g, dy->dtype, &want, u, sizeof u));
        return false;
    }
    n->dtype = dy->dtype;
    n->shape = *s;
    return true;
}

void vjp_slice_bwd(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    gin[0] = slice_op(g, NN_OP_SLICE, gout, &n->attr, NULL, n->loc);
}

bool shape_concat(NnGraph *g, NnNode *n)
{
    char t[NN_TYPE_BUF], u[NN_TYPE_BUF];
    if (n->nin < 1) {
        nn_set_err(g, "concat needs at least one operand");
        return false;
    }
    const NnNode *x0 = &g->nodes[n->in[0]];
    int axis = n->attr.axis;
    if (axis < 0 || axis >= x0->shape.rank) {
        nn_set_err(g, "concat: axis %d is out of range for %s", axis,
                   nn_rule_in_type(g, n, 0, t));
        return false;
    }
    n->dtype = x0->dtype;
    n->shape = x0->shape;
    n->shape.dim[axis] = 0;
    for (int k = 0; k < n->nin; k++) {
        const NnNode *x = &g->nodes[n->in[k]];
        bool ok = x->dtype == x0->dtype && x->shape.rank == x0->shape.rank;
        for (int i = 0; ok && i < x0->shape.rank; i++)
            ok = i == axis || x->shape.dim[i] == x0->shape.dim[i];
        if (!ok) {
            nn_set_err(g, "concat along axis %d: %s does not match %s", axis,
                       nn_rule_in_type(g, n, k, t), nn_rule_in_type(g, n, 0, u));
            return false;
        }
        if (x->shape.dim[axis] < 0) {
            nn_set_err(g, "concat: axis %d of %s is symbolic", axis, nn_rule_in_type(g, n, k, t));
            return false;
        }
        n->shape.dim[axis] += x->shape.dim[axis];
    }
    return true;
}

void vjp_concat(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    int axis = n->attr.axis, nin = n->nin;
    NnLoc loc = n->loc;
    int64_t off = 0;
    for (int k = 0; k < nin; k++) {
        int64_t d = g->nodes[g->nodes[id].in[k]].shape.dim[axis];
        gin[k] = d > 0 ? nn_ir_slice(g, gout, axis, off, off + d, 1, loc) : -1;
        off += d;
    }
}

NnId nn_ir_pad(NnGraph *g, NnId x, const int64_t *lo, const int64_t *hi, double value, NnLoc loc)
{
    NnAttr a = {0};
    a.value = value;
    int rank = x >= 0 ? g->nodes[x].shape.rank : 0;
    for (int k = 0; k < rank; k++) {
        a.lo[k] = lo[k];
        a.hi[k] = hi[k];
    }
    return nn_ir_add(g, NN_OP_PAD, &x, 1, &a, loc);
}

NnId nn_ir_slice(NnGraph *g, NnId x, int axis, int64_t start, int64_t stop, int64_t step,
                 NnLoc loc)
{
    NnAttr a = {0};
    a.axis = axis;
    a.start = start;
    a.stop = stop;
    a.step = step;
    return nn_ir_add(g, NN_OP_SLICE, &x, 1, &a, loc);
}

NnId nn_ir_concat(NnGraph *g, const NnId *xs, int n, int axis, NnLoc loc)
{
    NnAttr a = {0};
    a.axis = axis;
    return nn_ir_add(g, NN_OP_CONCAT, xs, n, &a, loc);
}
