// Shape rules and VJPs for the indexing ops used by losses and metrics:
// TAKE (out[i] = x[i, idx[i]], differentiable in x), ONEHOT (i32 labels to
// rows of 0/1 in attr.dtype, f32 by default) and ARGMAX (i32, axis removed);
// GATHER (rows of a table by id) and its adjoint SCATTER_ADD, which together
// make an embedding whose gradient touches only the rows of the ids used.
#include "op_common.h"

bool shape_take(NnGraph *g, NnNode *n)
{
    const NnNode *x = &g->nodes[n->in[0]], *idx = &g->nodes[n->in[1]];
    char tx[NN_TYPE_BUF], ti[NN_TYPE_BUF];
    nn_rule_in_type(g, n, 0, tx);
    nn_rule_in_type(g, n, 1, ti);
    if (n->attr.axis != 1 || x->shape.rank != 2 || idx->shape.rank != 1) {
        nn_set_err(g, "take: expects x[N, C], indices[N] and axis 1, got %s, %s, axis %d", tx,
                   ti, n->attr.axis);
        return false;
    }
    if (idx->dtype != NN_DT_I32) {
        nn_set_err(g, "take: indices must be i32, got %s", ti);
        return false;
    }
    if (x->shape.dim[0] != idx->shape.dim[0]) {
        nn_set_err(g, "take: %s and indices %s differ in the first dimension", tx, ti);
        return false;
    }
    n->dtype = x->dtype;
    n->shape = idx->shape;
    return true;
}

// d out[i] / d x[i, c] = (c == idx[i]): a one-hot row scaled by g[i].
void vjp_take(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnId idx = n->in[1];
    NnShape sx = g->nodes[n->in[0]].shape;
    NnLoc loc = n->loc;
    NnAttr a = {0};
    a.depth = sx.dim[1];
    a.dtype = n->dtype;
    NnId hot = nn_ir_add(g, NN_OP_ONEHOT, &idx, 1, &a, loc);
    NnId rows = nn_rule_expand(g, gout, &sx, 1u << 1, loc);
    gin[0] = nn_ir_binary(g, NN_OP_MUL, rows, hot, loc);
    gin[1] = -1;
}

// ONEHOT depth must be a number: the class count is part of the model.
bool shape_onehot(NnGraph *g, NnNode *n)
{
    const NnNode *x = &g->nodes[n->in[0]];
    char t[NN_TYPE_BUF];
    if (x->dtype != NN_DT_I32 || x->shape.rank >= NN_MAX_RANK) {
        nn_set_err(g, "onehot: expects i32 labels, got %s", nn_rule_in_type(g, n, 0, t));
        return false;
    }
    if (n->attr.depth <= 0 || n->attr.dtype >= NN_DT_COUNT) {
        nn_set_err(g, "onehot: depth must be positive, got %lld", (long long)n->attr.depth);
        return false;
    }
    n->dtype = n->attr.dtype;
    n->shape = x->shape;
    n->shape.dim[n->shape.rank++] = n->attr.depth;
    return true;
}

bool shape_argmax(NnGraph *g, NnNode *n)
{
    const NnNode *x = &g->nodes[n->in[0]];
    int axis = n->attr.axis;
    if (axis < 0 || axis >= x->shape.rank) {
        char t[NN_TYPE_BUF];
        nn_set_err(g, "argmax: axis %d out of range for %s", axis, nn_rule_in_type(g, n, 0, t));
        return false;
    }
    n->dtype = NN_DT_I32;
    n->shape.rank = 0;
    for (int i = 0; i < x->shape.rank; i++)
        if (i != axis)
            n->shape.dim[n->shape.rank++] = x->shape.dim[i];
    return true;
}

void vjp_onehot(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_argmax(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }

// The ids of GATHER / SCATTER_ADD: i32, one rank below the rows they index.
static bool ids_ok(NnGraph *g, NnNode *n, const char *op, int rows_rank)
{
    const NnNode *ids = &g->nodes[n->in[1]];
    char t[NN_TYPE_BUF];
    if (ids->dtype != NN_DT_I32) {
        nn_set_err(g, "%s: ids must be i32, got %s", op, nn_rule_in_type(g, n, 1, t));
        return false;
    }
    if (ids->shape.rank + 1 != rows_rank || rows_rank > NN_MAX_RANK) {
        nn_set_err(g, "%s: ids %s must have one dimension fewer than the rows (rank %d)", op,
                   nn_rule_in_type(g, n, 1, t), rows_rank);
        return false;
    }
    return true;
}

bool shape_gather(NnGraph *g, NnNode *n)
{
    const NnNode *w = &g->nodes[n->in[0]], *ids = &g->nodes[n->in[1]];
    char tw[NN_TYPE_BUF];
    if (w->shape.rank != 2) {
        nn_set_err(g, "gather: expects a table w[V, D], got %s", nn_rule_in_type(g, n, 0, tw));
        return false;
    }
    if (!ids_ok(g, n, "gather", ids->shape.rank + 1))
        return false;
    n->dtype = w->dtype;
    n->shape = ids->shape;
    n->shape.dim[n->shape.rank++] = w->shape.dim[1];
    return true;
}

// The table's gradient: the output's rows added into the rows they came from.
void vjp_gather(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnAttr a = {0};
    a.shape = g->nodes[n->in[0]].shape;
    NnId in[2] = {gout, n->in[1]};
    NnLoc loc = n->loc;
    gin[0] = nn_ir_add(g, NN_OP_SCATTER_ADD, in, 2, &a, loc);
    gin[1] = -1;
}

bool shape_scatter_add(NnGraph *g, NnNode *n)
{
    const NnNode *x = &g->nodes[n->in[0]], *ids = &g->nodes[n->in[1]];
    const NnShape *s = &n->attr.shape;
    char tx[NN_TYPE_BUF], ti[NN_TYPE_BUF];
    if (s->rank != 2 || !nn_rule_shape_ok(g, s) || x->shape.rank < 1) {
        nn_set_err(g, "scatter_add: expects rows x[..., D] and a table shape [V, D], got %s",
                   nn_rule_in_type(g, n, 0, tx));
        return false;
    }
    if (!ids_ok(g, n, "scatter_add", x->shape.rank))
        return false;
    bool same = x->shape.dim[x->shape.rank - 1] == s->dim[1];
    for (int i = 0; i < ids->shape.rank; i++)
        same &= x->shape.dim[i] == ids->shape.dim[i];
    if (!same) {
        nn_set_err(g, "scatter_add: rows %s do not match ids %s and row length %lld",
                   nn_rule_in_type(g, n, 0, tx), nn_rule_in_type(g, n, 1, ti),
                   (long long)s->dim[1]);
        return false;
    }
    n->dtype = x->dtype;
    n->shape = *s;
    return true;
}

void vjp_scatter_add(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnId in[2] = {gout, n->in[1]};
    NnLoc loc = n->loc;
    gin[0] = nn_ir_add(g, NN_OP_GATHER, in, 2, NULL, loc);
    gin[1] = -1;
}
