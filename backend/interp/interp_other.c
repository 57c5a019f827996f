// interp_<name> for layout, reductions, matmul, indexing and FUSED. RESHAPE is
// a copy (values never alias: the memory planner decides reuse). FUSED binds
// its body frame's INPUTs to this node's operands, runs the body, and copies
// the body's output into this node's buffer.
#include <string.h>

#include "interp.h"

NnStatus interp_reshape(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0);
    if (x->numel != out->numel)
        return nnrt_fail(NN_ERR_SHAPE, "reshape: %lld elements into %lld", (long long)x->numel,
                         (long long)out->numel);
    if (out->numel && out->data != x->data)
        memcpy(out->data, x->data, nnrt_tensor_nbytes(out));
    return NN_OK;
}

NnStatus interp_transpose(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0);
    NnrtTranspose a = {.esize = nnrt_dtype_size(x->dtype), .rank = x->rank, .x = x->data,
                       .y = out->data};
    memcpy(a.shape, x->shape, sizeof a.shape);
    memcpy(a.perm, n->attr.perm, sizeof a.perm);
    nnrt_transpose_par(c->pool, &a);
    return NN_OK;
}

NnStatus interp_broadcast(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0);
    const int64_t *shape = x->shape;
    NnrtBcast b;
    if (!nnrt_bcast_init(&b, out->rank, out->shape, 1, &x->rank, &shape))
        return nnrt_fail(NN_ERR_SHAPE, "broadcast: operand does not broadcast");
    NnrtBroadcast a = {.esize = nnrt_dtype_size(x->dtype), .b = &b, .x = x->data,
                       .y = out->data};
    nnrt_broadcast_par(c->pool, &a);
    return NN_OK;
}

static NnStatus reduce(Ictx *c, const NnTensor *x, uint32_t axes, NnTensor *out, NnrtRedOp op)
{
    NnrtReduce a = {.op = op, .dt = x->dtype, .rank = x->rank, .axes = axes, .x = x->data,
                    .y = out->data};
    memcpy(a.shape, x->shape, sizeof a.shape);
    nnrt_reduce_par(c->pool, &a);
    return NN_OK;
}

NnStatus interp_sumto(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0);
    uint32_t axes;
    if (!nnrt_sumto_axes(x->rank, x->shape, out->rank, out->shape, &axes))
        return NN_ERR_SHAPE;
    return reduce(c, x, axes, out, NNRT_RSUM);
}

NnStatus interp_reduce_sum(Ictx *c, const NnNode *n, NnTensor *out)
{
    return reduce(c, interp_in(c, n, 0), n->attr.axes, out, NNRT_RSUM);
}

NnStatus interp_reduce_mean(Ictx *c, const NnNode *n, NnTensor *out)
{
    return reduce(c, interp_in(c, n, 0), n->attr.axes, out, NNRT_RMEAN);
}

NnStatus interp_reduce_max(Ictx *c, const NnNode *n, NnTensor *out)
{
    return reduce(c, interp_in(c, n, 0), n->attr.axes, out, NNRT_RMAX);
}

NnStatus interp_logsumexp(Ictx *c, const NnNode *n, NnTensor *out)
{
    return reduce(c, interp_in(c, n, 0), n->attr.axes, out, NNRT_RLSE);
}

NnStatus interp_matmul(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0), *y = interp_in(c, n, 1);
    int64_t m, nn, k;
    nn_matmul_dims(x->shape, x->rank, y->shape, y->rank, n->attr.ta, n->attr.tb, &m, &nn, &k);
    NnrtMatmul a = {.dt = out->dtype, .m = m, .n = nn, .k = k, .ta = n->attr.ta,
                    .tb = n->attr.tb, .a = x->data, .b = y->data, .c = out->data,
                    .pack = c->pack};
    nnrt_matmul_par(c->pool, &a);
    return NN_OK;
}

NnStatus interp_take(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0), *idx = interp_in(c, n, 1);
    NnrtTake a = {.dt = x->dtype, .n = x->shape[0], .c = x->shape[1], .x = x->data,
                  .idx = idx->data, .y = out->data};
    int64_t bad = nnrt_take(&a);
    if (bad >= 0)
        return nnrt_fail(NN_ERR_RUNTIME, "take: index %d at row %lld is outside [0, %lld)",
                         ((const int32_t *)idx->data)[bad], (long long)bad, (long long)a.c);
    return NN_OK;
}

NnStatus interp_onehot(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *idx = interp_in(c, n, 0);
    NnrtOnehot a = {.dt = out->dtype, .n = idx->numel, .depth = n->attr.depth, .idx = idx->data,
                    .y = out->data};
    int64_t bad = nnrt_onehot(&a);
    if (bad >= 0)
        return nnrt_fail(NN_ERR_RUNTIME, "onehot: label %d at %lld is outside [0, %lld)",
                         ((const int32_t *)idx->data)[bad], (long long)bad, (long long)a.depth);
    return NN_OK;
}

NnStatus interp_gather(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *w = interp_in(c, n, 0), *idx = interp_in(c, n, 1);
    NnrtGather a = {.dt = w->dtype, .n = idx->numel, .v = w->shape[0], .d = w->shape[1],
                    .x = w->data, .idx = idx->data, .y = out->data};
    int64_t bad = nnrt_gather(&a);
    if (bad >= 0)
        return nnrt_fail(NN_ERR_RUNTIME, "gather: id %d at %lld is outside [0, %lld)",
                         ((const int32_t *)idx->data)[bad], (long long)bad, (long long)a.v);
    return NN_OK;
}

NnStatus interp_scatter_add(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0), *idx = interp_in(c, n, 1);
    NnrtScatterAdd a = {.dt = out->dtype, .n = idx->numel, .v = out->shape[0],
                        .d = out->shape[1], .x = x->data, .idx = idx->data, .y = out->data};
    nnrt_scatter_add(&a);
    return NN_OK;
}

NnStatus interp_argmax(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0);
    NnrtArgmax a = {.dt = x->dtype, .rank = x->rank, .axis = n->attr.axis, .x = x->data,
                    .y = out->data};
    memcpy(a.shape, x->shape, sizeof a.shape);
    nnrt_argmax(&a, 0, 1);
    return NN_OK;
}

NnStatus interp_fused(Ictx *c, const NnNode *n, NnTensor *out)
{
    Frame *parent = c->f, *body = parent->sub[n - parent->g->nodes];
    const NnGraph *bg = body->g;
    int k = 0;
    for (NnId i = 0; i < bg->count && k < n->nin; i++)
        if (bg->nodes[i].op == NN_OP_INPUT)
            body->vals[i].data = parent->vals[n->in[k++]].data;
    c->f = body;
    NnStatus st = nn_interp_run_frame(c);
    c->f = parent;
    if (st != NN_OK)
        return st;
    const NnTensor *res = &body->vals[bg->outputs[0].id];
    if (res->numel != out->numel || res->dtype != out->dtype)
        return nnrt_fail(NN_ERR_RUNTIME, "fused: body output does not match the node");
    if (out->numel && out->data != res->data)
        memcpy(out->data, res->data, nnrt_tensor_nbytes(out));
    return NN_OK;
}
