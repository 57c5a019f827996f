// FLOP counting over the IR (see flops.h for what counts). One switch over the
// op families, recursing into FUSED and LOOP bodies, which share the symbols
// of the graph holding them.
#include "flops.h"

// Dim k of s, a symbol bound by symv (or 1 without symv).
static double dim(const NnShape *s, int k, const int64_t *symv)
{
    int64_t d = s->dim[k];
    return (double)(d >= 0 ? d : symv ? symv[-d - 1] : 1);
}

static double numel(const NnShape *s, const int64_t *symv)
{
    double n = 1;
    for (int k = 0; k < s->rank; k++)
        n *= dim(s, k, symv);
    return n;
}

static void count(const NnGraph *g, const int64_t *symv, double times, NnFlops *f)
{
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        const NnShape *in0 = n->nin > 0 ? &g->nodes[n->in[0]].shape : NULL;
        const NnShape *in1 = n->nin > 1 ? &g->nodes[n->in[1]].shape : NULL;
        double out = numel(&n->shape, symv);
        f->nodes++;
        switch (n->op) {
        case NN_OP_MATMUL: { // [M, K] @ [K, N]: out is M x N, K from operand a
            // (A's last dim, or transposed all its others: ir/op_matmul.c)
            double last = dim(in0, in0->rank - 1, symv);
            double k = !n->attr.ta ? last : last > 0 ? numel(in0, symv) / last : 0;
            f->contract += times * 2 * out * k;
            break;
        }
        case NN_OP_CONV2D: // each output element: C/groups * KH * KW multiply-adds
            f->contract += times * 2 * out * numel(in1, symv) / dim(in1, 0, symv);
            break;
        case NN_OP_CONV2D_BWD_DATA: // each dy element (each x element, transposed) likewise
            f->contract += times * 2 * numel(in0, symv) * numel(in1, symv) / dim(in1, 0, symv);
            break;
        case NN_OP_CONV2D_BWD_FILTER: // each dy element meets one filter row
            f->contract += times * 2 * numel(in1, symv) * out / dim(&n->shape, 0, symv);
            break;
        case NN_OP_MAX_POOL2D:
        case NN_OP_AVG_POOL2D:
            f->elem += times * out * n->attr.conv.kernel[0] * n->attr.conv.kernel[1];
            break;
        case NN_OP_MAX_POOL2D_BWD: // a window per dy element
            f->elem += times * numel(in1, symv) * n->attr.conv.kernel[0] *
                       n->attr.conv.kernel[1];
            break;
        case NN_OP_AVG_POOL2D_BWD:
            f->elem += times * numel(in0, symv) * n->attr.conv.kernel[0] *
                       n->attr.conv.kernel[1];
            break;
        case NN_OP_FUSED:
            count(n->attr.body, symv, times, f);
            break;
        case NN_OP_LOOP:
            count(n->attr.body, symv, times * (double)n->attr.trips, f);
            break;
        case NN_OP_LOGSUMEXP: // max, exp, add per input element
            f->reduce += times * 3 * numel(in0, symv);
            break;
        case NN_OP_SUMTO:
        case NN_OP_ARGMAX:
        case NN_OP_SCATTER_ADD:
            f->reduce += times * numel(in0, symv);
            break;
        default:
            if (nn_op_has(n->op, NN_OPF_REDUCE))
                f->reduce += times * numel(in0, symv);
            else if (nn_op_has(n->op, NN_OPF_ELEMWISE))
                f->elem += times * out;
            break; // sources, layout, indexing, random numbers: no arithmetic
        }
    }
}

NnFlops nn_graph_flops(const NnGraph *g, const int64_t *symv)
{
    NnFlops f = {0};
    count(g, symv, 1, &f);
    f.total = f.contract + f.elem + f.reduce;
    return f;
}
