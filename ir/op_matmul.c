// Shape rule and VJP for MATMUL: [M, K] @ [K, N] -> [M, N], where attr.ta /
// attr.tb read an operand transposed ([K, M] / [N, K] stored). The VJP uses
// the ta/tb flags instead of TRANSPOSE nodes, so no copies are made.
#include "op_common.h"

bool shape_matmul(NnGraph *g, NnNode *n)
{
    const NnNode *a = &g->nodes[n->in[0]], *b = &g->nodes[n->in[1]];
    char ta[NN_TYPE_BUF], tb[NN_TYPE_BUF];
    nn_rule_in_type(g, n, 0, ta);
    nn_rule_in_type(g, n, 1, tb);
    const char *tra = n->attr.ta ? "^T" : "", *trb = n->attr.tb ? "^T" : "";
    if (a->shape.rank != 2 || b->shape.rank != 2) {
        nn_set_err(g, "matmul: expects rank-2 operands: %s%s @ %s%s", ta, tra, tb, trb);
        return false;
    }
    if (a->dtype != b->dtype || !nn_rule_is_float(a->dtype)) {
        nn_set_err(g, "matmul: operands must be float tensors of one dtype: %s%s @ %s%s", ta,
                   tra, tb, trb);
        return false;
    }
    int64_t m = a->shape.dim[n->attr.ta ? 1 : 0], ka = a->shape.dim[n->attr.ta ? 0 : 1];
    int64_t kb = b->shape.dim[n->attr.tb ? 1 : 0], nn = b->shape.dim[n->attr.tb ? 0 : 1];
    if (ka != kb) {
        nn_set_err(g, "matmul: inner dimensions differ: %s%s @ %s%s", ta, tra, tb, trb);
        return false;
    }
    n->dtype = a->dtype;
    n->shape = (NnShape){.rank = 2, .dim = {m, nn}};
    return true;
}

// With op(X) = X or X^T and C = op(A) op(B):
//   dop(A) = G op(B)^T, dop(B) = op(A)^T G, then transposed back when flagged.
void vjp_matmul(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnId a = n->in[0], b = n->in[1];
    bool ta = n->attr.ta, tb = n->attr.tb;
    NnLoc loc = n->loc;
    if (!ta)
        gin[0] = nn_ir_matmul(g, gout, b, false, !tb, loc); // G op(B)^T
    else
        gin[0] = nn_ir_matmul(g, b, gout, tb, true, loc); // (G op(B)^T)^T = op(B) G^T
    if (!tb)
        gin[1] = nn_ir_matmul(g, a, gout, !ta, false, loc); // op(A)^T G
    else
        gin[1] = nn_ir_matmul(g, gout, a, true, ta, loc); // (op(A)^T G)^T = G^T op(A)
}
