// Which graphs the JIT compiles for any batch size: nn_cg_batch_sym finds
// the batch symbol (the leading dim of an input) and checks every node for
// an op or shape whose lowering needs it bound, naming the first such node
// and the reason (`nnc train -v` prints it). The batch may be a value's
// leading dim, or a later one (the time-major values of recurrent layers) in
// the forms whose loop nests merge it with the dims before it; a LOOP takes
// it when its body does. backend/llvm/lower_loop.c and lower_misc.c hold the
// kernels these rules admit.
#include <stdio.h>

#include "nn_llvm.h"
#include "pass.h"

// Ops whose lowering takes a run-time batch (the rest need it bound).
static bool rt_op(NnOp op)
{
    switch (op) {
    case NN_OP_INPUT:
    case NN_OP_CONST:
    case NN_OP_BROADCAST:
    case NN_OP_RESHAPE:
    case NN_OP_TRANSPOSE:
    case NN_OP_SUMTO:
    case NN_OP_REDUCE_SUM:
    case NN_OP_REDUCE_MEAN:
    case NN_OP_REDUCE_MAX:
    case NN_OP_LOGSUMEXP:
    case NN_OP_MATMUL:
    case NN_OP_TAKE:
    case NN_OP_ONEHOT:
    case NN_OP_ARGMAX:
    case NN_OP_GATHER:
    case NN_OP_SCATTER_ADD:
    case NN_OP_RAND_UNIFORM:
    case NN_OP_RAND_NORMAL:
    case NN_OP_CONV2D:
    case NN_OP_CONV2D_BWD_DATA:
    case NN_OP_CONV2D_BWD_FILTER:
    case NN_OP_MAX_POOL2D:
    case NN_OP_MAX_POOL2D_BWD:
    case NN_OP_AVG_POOL2D:
    case NN_OP_AVG_POOL2D_BWD:
    case NN_OP_SLICE:
    case NN_OP_SLICE_BWD:
    case NN_OP_CONCAT:
    case NN_OP_PAD:
    case NN_OP_LOOP:
    case NN_OP_LOOP_OUT:
    case NN_OP_FUSED: return true;
    default: return nn_op_has(op, NN_OPF_ELEMWISE);
    }
}

// The dim of s that is symbol sym, or -1.
static int sym_dim(const NnShape *s, int sym)
{
    for (int d = 0; d < s->rank; d++)
        if (s->dim[d] == -sym - 1)
            return d;
    return -1;
}

// Whether operand x, broadcast against out (whose batch is dim d), is whole
// over out's dims 0..d or broadcast over all of them: loop nests then merge
// dims 0..d into one run-time leading extent for every operand (the batch
// times the dims before it), so no stride or extent inside it is the batch.
static bool prefix_fits(const NnShape *x, const NnShape *out, int d)
{
    int shift = out->rank - x->rank, whole = 0, bcast = 0;
    for (int i = 0; i <= d; i++) {
        int j = i - shift;
        if (j < 0 || x->dim[j] == 1)
            bcast++;
        else if (x->dim[j] == out->dim[i])
            whole++;
    }
    return whole == d + 1 || bcast == d + 1;
}

static const char *rt_blocker(const NnGraph *g, const NnNode *n, int sym);
static const char *body_blocker(const NnGraph *b, int sym);

// Why node n, which has or reads a value whose batch is not its leading dim
// (a time-major [T, N, ...] value of a recurrent layer), cannot take the
// batch at run time, or NULL: the forms below keep the batch and every dim
// before it one leading extent of their loop nests (the dims after it give
// its stride per row), or have kernels of their own (TRANSPOSE, LOOP).
static const char *mid_blocker(const NnGraph *g, const NnNode *n, int sym)
{
    int d = sym_dim(&n->shape, sym);
    if (n->op == NN_OP_INPUT || n->op == NN_OP_CONST || n->op == NN_OP_LOOP_OUT)
        return NULL;
    if (n->op == NN_OP_RESHAPE) // a flat copy
        return d >= 0 ? NULL : "the batch is not its leading dim";
    if (nn_op_has(n->op, NN_OPF_ELEMWISE) || n->op == NN_OP_BROADCAST) {
        if (d < 0)
            return "the batch is not its leading dim";
        for (int k = 0; k < n->nin; k++)
            if (!prefix_fits(&g->nodes[n->in[k]].shape, &n->shape, d))
                return "an operand broadcasts across the batch's leading dims";
        return NULL;
    }
    if (n->op == NN_OP_TRANSPOSE) {
        // [A, B, rest] <-> [B, A, rest], the batch A or B: a kernel of rows.
        const NnShape *x = &g->nodes[n->in[0]].shape;
        bool swap = x->rank >= 2 && n->attr.perm[0] == 1 && n->attr.perm[1] == 0;
        for (int i = 2; swap && i < x->rank; i++)
            swap = n->attr.perm[i] == i;
        if (!swap || d > 1 || sym_dim(x, sym) > 1)
            return "it moves the batch other than between the two leading dims";
        return NULL;
    }
    if (n->op == NN_OP_MATMUL) {
        // The batch among A's leading dims, which are all rows (or with ta
        // all contracted, and B's with them): M or K is the batch times them.
        const NnShape *a = &g->nodes[n->in[0]].shape, *b = &g->nodes[n->in[1]].shape;
        int da = sym_dim(a, sym), db = sym_dim(b, sym);
        bool ok = !n->attr.ta ? da >= 0 && da <= a->rank - 2 && db < 0
                              : a->rank > 2 && da >= 0 && da <= a->rank - 2 && !n->attr.tb &&
                                    b->rank == a->rank && db == da;
        return ok ? NULL : "the batch is not among the product's leading rows";
    }
    if (n->op == NN_OP_REDUCE_SUM || n->op == NN_OP_REDUCE_MEAN || n->op == NN_OP_REDUCE_MAX ||
        n->op == NN_OP_LOGSUMEXP) {
        int dx = sym_dim(&g->nodes[n->in[0]].shape, sym);
        uint32_t lead = (2u << dx) - 1;
        return (n->attr.axes & lead) == lead && d < 0 ? NULL
                                                      : "it keeps the batch's leading dims";
    }
    if (n->op == NN_OP_SUMTO) {
        const NnShape *x = &g->nodes[n->in[0]].shape;
        return d < 0 && n->shape.rank < x->rank - sym_dim(x, sym)
                   ? NULL
                   : "it keeps the batch's leading dims";
    }
    if (n->op == NN_OP_FUSED) {
        // The body's nodes are checked one by one; its loop nest runs over
        // its root (or a reduction's operand, or a product's [M, N]), whose
        // every operand must merge with it.
        const NnGraph *b = n->attr.body;
        NnFuseForm form = nn_fuse_form(b);
        NnId root = b->outputs[0].id;
        if (form == NN_FUSE_REDUCE)
            root = b->nodes[root].in[0];
        const NnShape *over = &b->nodes[root].shape;
        if (form == NN_FUSE_MATMUL) {
            for (NnId i = 0; i < b->count; i++)
                if (nn_op_has(b->nodes[i].op, NN_OPF_CONTRACT))
                    over = &b->nodes[i].shape;
        }
        int dr = sym_dim(over, sym);
        for (NnId i = 0; i < b->count; i++) {
            const NnNode *x = &b->nodes[i];
            if (x->op != NN_OP_INPUT)
                continue;
            bool operand = false;
            for (NnId j = 0; form == NN_FUSE_MATMUL && j < b->count; j++)
                if (nn_op_has(b->nodes[j].op, NN_OPF_CONTRACT))
                    operand |= b->nodes[j].in[0] == i || b->nodes[j].in[1] == i;
            if (operand)
                continue;
            int dx = sym_dim(&x->shape, sym);
            if (dr < 0 && dx < 0)
                continue; // a product that contracts the batch: its epilogue has none
            if (dr < 0 || (form == NN_FUSE_MATMUL && dx >= 0 && x->shape.rank != over->rank) ||
                !prefix_fits(&x->shape, over, dr))
                return "an operand broadcasts across the batch's leading dims";
        }
        return NULL;
    }
    if (n->op == NN_OP_LOOP)
        return NULL; // rt_blocker checks its inputs and body
    return "the batch is not its leading dim";
}

// What keeps LOOP n from taking batch symbol sym at run time, or NULL: its
// sequences are [trips, N, ...], its carries and invariants have the batch
// leading (or not at all), and its body takes it.
static const char *loop_blocker(const NnGraph *g, const NnNode *n, int sym)
{
    int C = n->attr.ncarry, S = n->attr.nseq;
    for (int k = 0; k < n->nin; k++) {
        int d = sym_dim(&g->nodes[n->in[k]].shape, sym);
        if (d >= 0 && d != (k >= C && k < C + S ? 1 : 0))
            return "an input of the loop has the batch elsewhere";
    }
    return body_blocker(n->attr.body, sym);
}

// What keeps node n of g (the main graph, a FUSED body or a loop's body)
// from taking batch symbol sym at run time, or NULL.
static const char *rt_blocker(const NnGraph *g, const NnNode *n, int sym)
{
    if ((n->op == NN_OP_PARAM || n->op == NN_OP_STATE) && sym_dim(&n->shape, sym) >= 0)
        return "a variable's shape has the batch";
    bool touches = sym_dim(&n->shape, sym) >= 0, mid = sym_dim(&n->shape, sym) > 0;
    for (int k = 0; k < n->nin; k++) {
        int d = sym_dim(&g->nodes[n->in[k]].shape, sym);
        touches |= d >= 0;
        mid |= d > 0;
    }
    if (!touches)
        return NULL;
    if (!rt_op(n->op))
        return "its lowering needs the batch bound";
    if (mid) {
        const char *why = mid_blocker(g, n, sym);
        if (why)
            return why;
    }
    if (n->op == NN_OP_LOOP)
        return loop_blocker(g, n, sym);
    if (n->op == NN_OP_MATMUL && n->attr.tb && sym_dim(&g->nodes[n->in[1]].shape, sym) == 0)
        return "the batch is the product's column count";
    if (n->op == NN_OP_MATMUL && !mid && g->nodes[n->in[0]].shape.rank > 2)
        return "the product's rows are more than the batch";
    if ((n->op == NN_OP_ARGMAX || n->op == NN_OP_SLICE || n->op == NN_OP_SLICE_BWD ||
         n->op == NN_OP_CONCAT) &&
        n->attr.axis == 0)
        return "it works along the batch";
    if ((n->op == NN_OP_GATHER && sym_dim(&g->nodes[n->in[0]].shape, sym) == 0) ||
        (n->op == NN_OP_SCATTER_ADD && sym_dim(&n->shape, sym) == 0))
        return "the batch is the table's row count";
    if (n->op == NN_OP_PAD && (n->shape.rank < 2 || n->attr.lo[0] != 0 || n->attr.hi[0] != 0))
        return "it pads the batch";
    if (n->op == NN_OP_FUSED)
        return body_blocker(n->attr.body, sym);
    return NULL;
}

// The first node of body b (a FUSED or LOOP body) that keeps sym bound, or NULL.
static const char *body_blocker(const NnGraph *b, int sym)
{
    for (NnId i = 0; i < b->count; i++) {
        const char *why = rt_blocker(b, &b->nodes[i], sym);
        if (why)
            return why;
    }
    return NULL;
}

int nn_cg_batch_sym(const NnGraph *g, char *why, size_t n)
{
    int sym = -1;
    snprintf(why, n, "no input has a symbolic leading dim");
    for (NnId i = 0; i < g->count && sym < 0; i++) {
        const NnNode *x = &g->nodes[i];
        if (x->op == NN_OP_INPUT && x->shape.rank > 0 && x->shape.dim[0] < 0)
            sym = -x->shape.dim[0] - 1;
    }
    for (NnId i = 0; i < g->count && sym >= 0; i++) {
        const char *b = rt_blocker(g, &g->nodes[i], sym);
        if (b) {
            snprintf(why, n, "node %d (%s): %s", i, nn_op_name(g->nodes[i].op), b);
            return -1;
        }
    }
    return sym;
}

