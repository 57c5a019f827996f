// interp_<name> for convolution, pooling and the layout ops along an axis
// (pad, slice, concat): each fills a runtime argument struct from the node's
// attributes and its operands' bound shapes, and runs the kernel on the pool.
// Shapes were checked by the shape rules; nothing here allocates: the
// convolutions' im2col scratch is the exec's shared scratch (Ictx.pack).
#include <string.h>

#include "interp.h"

// The argument struct shared by every convolution and pooling op: the image
// shape (ximg) and the forward result's shape (yfwd), both [N, C|F, H, W].
static NnrtConv2d conv_args(NnrtConvOp op, const NnNode *n, const NnTensor *ximg,
                            const int64_t *yfwd)
{
    const NnConv2d *c = &n->attr.conv;
    return (NnrtConv2d){
        .op = op, .dt = n->dtype, .n = ximg->shape[0], .c = ximg->shape[1],
        .h = ximg->shape[2], .w = ximg->shape[3], .f = yfwd[1], .oh = yfwd[2], .ow = yfwd[3],
        .kh = c->kernel[0], .kw = c->kernel[1], .sh = c->stride[0], .sw = c->stride[1],
        .dh = c->dilation[0], .dw = c->dilation[1], .pt = c->pad[0], .pl = c->pad[1],
        .groups = c->groups,
    };
}

static NnStatus run(Ictx *c, NnrtConv2d *a, NnTensor *out)
{
    a->y = out->data;
    a->scratch = c->pack;
    if (out->numel)
        nnrt_conv2d_par(c->pool, a);
    return NN_OK;
}

// Sized like the matching interp_<name> below fills its arguments.
size_t interp_conv_scratch(const Frame *f, const NnNode *n, const NnTensor *out)
{
    NnrtConv2d a;
    switch (n->op) {
    case NN_OP_CONV2D: a = conv_args(NNRT_CONV, n, &f->vals[n->in[0]], out->shape); break;
    case NN_OP_CONV2D_BWD_DATA:
        a = conv_args(NNRT_CONV_BWD_DATA, n, out, f->vals[n->in[0]].shape);
        break;
    case NN_OP_CONV2D_BWD_FILTER:
        a = conv_args(NNRT_CONV_BWD_FILTER, n, &f->vals[n->in[0]], f->vals[n->in[1]].shape);
        break;
    default: return 0;
    }
    return nnrt_conv2d_scratch_size(&a);
}

NnStatus interp_conv2d(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0), *w = interp_in(c, n, 1);
    NnrtConv2d a = conv_args(NNRT_CONV, n, x, out->shape);
    a.x = x->data;
    a.wt = w->data;
    return run(c, &a, out);
}

NnStatus interp_conv2d_bwd_data(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *dy = interp_in(c, n, 0), *w = interp_in(c, n, 1);
    NnrtConv2d a = conv_args(NNRT_CONV_BWD_DATA, n, out, dy->shape);
    a.dy = dy->data;
    a.wt = w->data;
    return run(c, &a, out);
}

NnStatus interp_conv2d_bwd_filter(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0), *dy = interp_in(c, n, 1);
    NnrtConv2d a = conv_args(NNRT_CONV_BWD_FILTER, n, x, dy->shape);
    a.x = x->data;
    a.dy = dy->data;
    return run(c, &a, out);
}

NnStatus interp_max_pool2d(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0);
    NnrtConv2d a = conv_args(NNRT_MAXPOOL, n, x, out->shape);
    a.x = x->data;
    return run(c, &a, out);
}

NnStatus interp_max_pool2d_bwd(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0), *dy = interp_in(c, n, 1);
    NnrtConv2d a = conv_args(NNRT_MAXPOOL_BWD, n, x, dy->shape);
    a.x = x->data;
    a.dy = dy->data;
    return run(c, &a, out);
}

NnStatus interp_avg_pool2d(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0);
    NnrtConv2d a = conv_args(NNRT_AVGPOOL, n, x, out->shape);
    a.x = x->data;
    return run(c, &a, out);
}

NnStatus interp_avg_pool2d_bwd(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *dy = interp_in(c, n, 0);
    NnrtConv2d a = conv_args(NNRT_AVGPOOL_BWD, n, out, dy->shape);
    a.dy = dy->data;
    return run(c, &a, out);
}

NnStatus interp_pad(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0);
    NnrtPad a = {.dt = x->dtype, .rank = x->rank, .value = n->attr.value, .x = x->data,
                 .y = out->data};
    memcpy(a.shape, x->shape, sizeof a.shape);
    memcpy(a.lo, n->attr.lo, sizeof a.lo);
    memcpy(a.hi, n->attr.hi, sizeof a.hi);
    if (out->numel)
        nnrt_pad_par(c->pool, &a);
    return NN_OK;
}

// The [outer, dim, inner] view of t around `axis`, for nnrt_slice.
static NnrtSlice slice_view(const NnTensor *full, int axis, NnrtSliceOp op)
{
    NnrtSlice a = {.op = op, .esize = nnrt_dtype_size(full->dtype), .outer = 1, .inner = 1,
                   .dim = full->shape[axis]};
    for (int d = 0; d < axis; d++)
        a.outer *= full->shape[d];
    for (int d = axis + 1; d < full->rank; d++)
        a.inner *= full->shape[d];
    return a;
}

static NnStatus run_slice(Ictx *c, NnrtSlice *a, const NnTensor *x, NnTensor *out, int64_t len,
                          int64_t start, int64_t step)
{
    a->x = x->data;
    a->y = out->data;
    a->len = len;
    a->start = start;
    a->step = step;
    if (out->numel)
        nnrt_slice_par(c->pool, a);
    return NN_OK;
}

NnStatus interp_slice(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0);
    NnrtSlice a = slice_view(x, n->attr.axis, NNRT_SLICE_GET);
    return run_slice(c, &a, x, out, out->shape[n->attr.axis], n->attr.start, n->attr.step);
}

NnStatus interp_slice_bwd(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *dy = interp_in(c, n, 0);
    NnrtSlice a = slice_view(out, n->attr.axis, NNRT_SLICE_PUT);
    return run_slice(c, &a, dy, out, dy->shape[n->attr.axis], n->attr.start, n->attr.step);
}

NnStatus interp_concat(Ictx *c, const NnNode *n, NnTensor *out)
{
    int axis = n->attr.axis;
    int64_t off = 0;
    for (int k = 0; k < n->nin; k++) {
        const NnTensor *x = interp_in(c, n, k);
        int64_t d = x->shape[axis];
        if (d == 0)
            continue;
        NnrtSlice a = slice_view(out, axis, NNRT_SLICE_PLACE);
        NnStatus st = run_slice(c, &a, x, out, d, off, 1);
        if (st != NN_OK)
            return st;
        off += d;
    }
    return NN_OK;
}
