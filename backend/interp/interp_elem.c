// interp_<name> for sources, random draws and elementwise ops: each sets up the
// runtime kernel's argument struct from the node and its bound input headers
// and runs it on the pool. Broadcasting goes through nnrt_bcast_init, so every
// op accepts any shapes its shape rule accepted.
#include "interp.h"

NnStatus interp_input(Ictx *c, const NnNode *n, NnTensor *out) { return NN_OK; }
NnStatus interp_param(Ictx *c, const NnNode *n, NnTensor *out) { return NN_OK; }
NnStatus interp_state(Ictx *c, const NnNode *n, NnTensor *out) { return NN_OK; }

// CONST buffers are shared with other values between uses, so fill every run.
NnStatus interp_const(Ictx *c, const NnNode *n, NnTensor *out)
{
    nnrt_fill(out->dtype, out->data, out->numel, n->attr.value);
    return NN_OK;
}

static uint64_t step_of(const NnTensor *t) { return nnrt_rand_step(nnrt_tensor_get(t, 0)); }

static NnStatus rand_node(Ictx *c, const NnNode *n, NnTensor *out, NnrtRandKind kind)
{
    NnrtRand a = {.kind = kind, .dt = out->dtype, .seed = n->attr.seed,
                  .step = step_of(interp_in(c, n, 0)), .n = out->numel, .y = out->data};
    nnrt_rand_par(c->pool, &a);
    return NN_OK;
}

NnStatus interp_rand_uniform(Ictx *c, const NnNode *n, NnTensor *out)
{
    return rand_node(c, n, out, NNRT_UNIFORM);
}

NnStatus interp_rand_normal(Ictx *c, const NnNode *n, NnTensor *out)
{
    return rand_node(c, n, out, NNRT_NORMAL);
}

NnStatus interp_dropout(Ictx *c, const NnNode *n, NnTensor *out)
{
    NnrtDropout a = {.dt = out->dtype, .seed = n->attr.seed, .step = step_of(interp_in(c, n, 1)),
                     .rate = nnrt_tensor_get(interp_in(c, n, 2), 0), .n = out->numel, .x = interp_in(c, n, 0)->data,
                     .y = out->data};
    nnrt_dropout_par(c->pool, &a);
    return NN_OK;
}

// The broadcast of nin inputs of n to out's shape.
static NnStatus bcast_of(Ictx *c, const NnNode *n, const NnTensor *out, int nin, NnrtBcast *b)
{
    int rank[3];
    const int64_t *shape[3];
    for (int k = 0; k < nin; k++) {
        rank[k] = interp_in(c, n, k)->rank;
        shape[k] = interp_in(c, n, k)->shape;
    }
    if (!nnrt_bcast_init(b, out->rank, out->shape, nin, rank, shape))
        return nnrt_fail(NN_ERR_SHAPE, "%s: operands do not broadcast", nn_op_name(n->op));
    return NN_OK;
}

static NnStatus unary(Ictx *c, const NnNode *n, NnTensor *out, NnrtUnOp op)
{
    if (!nnrt_unary_ok(op, out->dtype))
        return nnrt_fail(NN_ERR_RUNTIME, "%s is not supported for %s", nn_op_name(n->op),
                         nnrt_dtype_name(out->dtype));
    NnrtBcast b;
    NnStatus st = bcast_of(c, n, out, 1, &b);
    if (st != NN_OK)
        return st;
    NnrtUnary a = {.op = op, .dt = out->dtype, .b = &b, .x = interp_in(c, n, 0)->data,
                   .y = out->data};
    nnrt_unary_par(c->pool, &a);
    return NN_OK;
}

NnStatus interp_neg(Ictx *c, const NnNode *n, NnTensor *out) { return unary(c, n, out, NNRT_NEG); }
NnStatus interp_exp(Ictx *c, const NnNode *n, NnTensor *out) { return unary(c, n, out, NNRT_EXP); }
NnStatus interp_log(Ictx *c, const NnNode *n, NnTensor *out) { return unary(c, n, out, NNRT_LOG); }
NnStatus interp_sqrt(Ictx *c, const NnNode *n, NnTensor *out)
{
    return unary(c, n, out, NNRT_SQRT);
}
NnStatus interp_tanh(Ictx *c, const NnNode *n, NnTensor *out)
{
    return unary(c, n, out, NNRT_TANH);
}
NnStatus interp_sigmoid(Ictx *c, const NnNode *n, NnTensor *out)
{
    return unary(c, n, out, NNRT_SIGMOID);
}
NnStatus interp_abs(Ictx *c, const NnNode *n, NnTensor *out) { return unary(c, n, out, NNRT_ABS); }
NnStatus interp_sin(Ictx *c, const NnNode *n, NnTensor *out) { return unary(c, n, out, NNRT_SIN); }
NnStatus interp_cos(Ictx *c, const NnNode *n, NnTensor *out) { return unary(c, n, out, NNRT_COS); }

NnStatus interp_cast(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *x = interp_in(c, n, 0);
    NnrtCast a = {.from = x->dtype, .to = out->dtype, .n = out->numel, .x = x->data,
                  .y = out->data};
    nnrt_cast_par(c->pool, &a);
    return NN_OK;
}

static NnStatus binary(Ictx *c, const NnNode *n, NnTensor *out, NnrtBinOp op)
{
    NnrtBcast b;
    NnStatus st = bcast_of(c, n, out, 2, &b);
    if (st != NN_OK)
        return st;
    NnrtBinary a = {.op = op, .dt = interp_in(c, n, 0)->dtype, .b = &b,
                    .x = interp_in(c, n, 0)->data, .y = interp_in(c, n, 1)->data, .z = out->data};
    nnrt_binary_par(c->pool, &a);
    return NN_OK;
}

NnStatus interp_add(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_ADD); }
NnStatus interp_sub(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_SUB); }
NnStatus interp_mul(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_MUL); }
NnStatus interp_div(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_DIV); }
NnStatus interp_pow(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_POW); }
NnStatus interp_max(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_MAX); }
NnStatus interp_min(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_MIN); }
NnStatus interp_gt(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_GT); }
NnStatus interp_ge(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_GE); }
NnStatus interp_lt(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_LT); }
NnStatus interp_le(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_LE); }
NnStatus interp_eq(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_EQ); }
NnStatus interp_ne(Ictx *c, const NnNode *n, NnTensor *out) { return binary(c, n, out, NNRT_NE); }

NnStatus interp_select(Ictx *c, const NnNode *n, NnTensor *out)
{
    NnrtBcast b;
    NnStatus st = bcast_of(c, n, out, 3, &b);
    if (st != NN_OK)
        return st;
    NnrtSelect a = {.dt = out->dtype, .cdt = interp_in(c, n, 0)->dtype, .b = &b,
                    .c = interp_in(c, n, 0)->data, .x = interp_in(c, n, 1)->data,
                    .y = interp_in(c, n, 2)->data, .out = out->data};
    nnrt_select_par(c->pool, &a);
    return NN_OK;
}
