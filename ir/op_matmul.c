// Shape rule and VJP for MATMUL: [M, K] @ [K, N] -> [M, N], where attr.ta /
// attr.tb read an operand transposed ([K, M] / [N, K] stored). The VJP uses
// the ta/tb flags instead of TRANSPOSE nodes, so no copies are made.
//
// Leading dims: A may be [L..., K] (not transposed), its leading dims all
// rows: [L..., K] @ op(B) -> [L..., N], B rank 2. Its weight gradient is the
// other form, A^T B with A [L..., K] and B [L..., N] of the same leading dims
// (ta, not tb): [K, N], summed over all of them. Both are one matrix product
// of the contiguous rows, so a recurrent layer projects a whole time-major
// sequence [T, N, I] with one product instead of T small ones (stdlib/rnn.nn).
#include "op_common.h"

bool shape_matmul(NnGraph *g, NnNode *n)
{
    const NnNode *a = &g->nodes[n->in[0]], *b = &g->nodes[n->in[1]];
    char ta[NN_TYPE_BUF], tb[NN_TYPE_BUF];
    nn_rule_in_type(g, n, 0, ta);
    nn_rule_in_type(g, n, 1, tb);
    const char *tra = n->attr.ta ? "^T" : "", *trb = n->attr.tb ? "^T" : "";
    int ra = a->shape.rank, rb = b->shape.rank;
    bool lead = ra > 2 && ra <= NN_MAX_RANK;
    if (lead && n->attr.ta) { // A^T B over the leading dims of both
        bool same = rb == ra && !n->attr.tb;
        for (int d = 0; same && d + 1 < ra; d++)
            same = a->shape.dim[d] == b->shape.dim[d];
        if (!same) {
            nn_set_err(g, "matmul: %s%s @ %s%s: with leading dims, A^T B needs B of A's "
                       "leading dims, not transposed", ta, tra, tb, trb);
            return false;
        }
    } else if ((ra != 2 && !lead) || rb != 2) {
        nn_set_err(g, "matmul: expects rank-2 operands (or A with leading dims): %s%s @ %s%s",
                   ta, tra, tb, trb);
        return false;
    }
    if (a->dtype != b->dtype || !nn_rule_is_float(a->dtype)) {
        nn_set_err(g, "matmul: operands must be float tensors of one dtype: %s%s @ %s%s", ta,
                   tra, tb, trb);
        return false;
    }
    if (lead && n->attr.ta) {
        n->dtype = a->dtype;
        n->shape = (NnShape){.rank = 2, .dim = {a->shape.dim[ra - 1], b->shape.dim[rb - 1]}};
        return true;
    }
    int64_t m = a->shape.dim[n->attr.ta ? 1 : 0], ka = a->shape.dim[n->attr.ta ? 0 : ra - 1];
    int64_t kb = b->shape.dim[n->attr.tb ? 1 : 0], nn = b->shape.dim[n->attr.tb ? 0 : 1];
    if (ka != kb) {
        nn_set_err(g, "matmul: inner dimensions differ: %s%s @ %s%s", ta, tra, tb, trb);
        return false;
    }
    n->dtype = a->dtype;
    n->shape = a->shape; // the leading dims, if any, stay rows
    n->shape.dim[0] = n->shape.rank == 2 ? m : n->shape.dim[0];
    n->shape.dim[ra - 1] = nn;
    return true;
}

void nn_matmul_dims(const int64_t *da, int ra, const int64_t *db, int rb, bool ta, bool tb,
                    int64_t *m, int64_t *n, int64_t *k)
{
    int64_t lead = 1;
    for (int d = 0; d + 1 < ra; d++)
        lead *= da[d];
    if (ra > 2 && ta) { // A^T B, contracting every leading dim
        *m = da[ra - 1];
        *k = lead;
        *n = db[rb - 1];
        return;
    }
    *m = ta ? da[1] : lead;
    *k = ta ? da[0] : da[ra - 1];
    *n = tb ? db[0] : db[1];
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
