// Batch-norm folding: a per-channel affine chain after a convolution,
//     y = ((conv(x, w) + b - mean) / sqrt(var + eps)) * gamma + beta
// (what batch_norm is in evaluation, once fold has chosen the running
// statistics), becomes
//     y = conv(x, w / s * gamma) + ((b - mean) / s * gamma + beta)
// so the scaling happens once on the weights (F*C*KH*KW elements) instead of
// on every output element, and the convolution's epilogue is one bias add.
// Decided by flags and shapes, never names: the contraction must be CHANLIN
// (ops.def: row f of input 1 makes output channel f), and each chain step an
// ADD, SUB, MUL or DIV of the running value and a per-channel operand (shape
// 1 everywhere but the channel axis, where it is 1 or F; concrete dims, same
// dtype). Every value of the chain but its last must have the next step as
// its only reader and be no output or update, so the old values die, and the
// operands cannot depend on the chain. A chain without a MUL or DIV is left
// alone (nothing to fold into the weights). In training, batch statistics read
// the convolution's output, so the chain never starts there.
// requires: a verified graph. provides: no such chain with a scaling step
// remains (the folded one has only a bias add left).
#include "pass.h"

#include <stdlib.h>

typedef struct Chain {
    NnId conv, end; // the contraction and the chain's last step
} Chain;

// Operand c scales or shifts the channels of a value of shape s (rank 4).
static bool per_channel(const NnNode *c, const NnNode *h)
{
    if (c->dtype != h->dtype || c->shape.rank > h->shape.rank)
        return false;
    for (int k = 0; k < c->shape.rank; k++) {
        int axis = h->shape.rank - c->shape.rank + k;
        int64_t d = c->shape.dim[k];
        if (!(d == 1 || (axis == 1 && d == h->shape.dim[1] && d > 0)))
            return false;
    }
    return true;
}

static bool affine_step(NnOp op)
{
    return op == NN_OP_ADD || op == NN_OP_SUB || op == NN_OP_MUL || op == NN_OP_DIV;
}

// reader[i]: the only reader of node i, -1 for none, -2 for several (or an
// output or update value).
static NnId *sole_readers(const NnGraph *g)
{
    NnId *reader = malloc(((size_t)g->count + 1) * sizeof *reader);
    NN_ASSERT(reader);
    for (int i = 0; i < g->count; i++)
        reader[i] = -1;
    for (int i = 0; i < g->count; i++)
        for (int k = 0; k < g->nodes[i].nin; k++) {
            NnId x = g->nodes[i].in[k];
            reader[x] = reader[x] == -1 ? i : -2;
        }
    for (int i = 0; i < g->noutputs; i++)
        reader[g->outputs[i].id] = -2;
    for (int i = 0; i < g->nupdates; i++)
        reader[g->updates[i].var] = reader[g->updates[i].value] = -2;
    return reader;
}

// The chain starting at contraction c, or end = -1.
static Chain find_chain(const NnGraph *g, const NnId *reader, NnId c)
{
    Chain ch = {c, -1};
    const NnNode *h = &g->nodes[c];
    if (h->shape.rank != 4)
        return ch;
    bool scales = false;
    NnId cur = c;
    while (reader[cur] >= 0) {
        const NnNode *n = &g->nodes[reader[cur]];
        if (!affine_step(n->op) || n->nin != 2 || n->in[0] == n->in[1])
            break;
        NnId other = n->in[0] == cur ? n->in[1] : n->in[0];
        if (!per_channel(&g->nodes[other], h) || !nn_shape_eq(&n->shape, &h->shape) ||
            n->dtype != h->dtype)
            break;
        if (n->op == NN_OP_DIV && n->in[1] == cur)
            break; // c / h is not affine in h
        scales |= n->op == NN_OP_MUL || n->op == NN_OP_DIV;
        cur = reader[cur];
    }
    if (scales)
        ch.end = cur;
    return ch;
}

static NnId reshaped(NnRewrite *rw, NnId x, int rank, int64_t n, int at, NnLoc loc)
{
    NnAttr a = {.shape = {.rank = rank}};
    for (int k = 0; k < rank; k++)
        a.shape.dim[k] = k == at ? n : 1;
    return nn_rewrite_add(rw, NN_OP_RESHAPE, &x, 1, &a, loc);
}

static NnId binary(NnRewrite *rw, NnOp op, NnId a, NnId b, NnLoc loc)
{
    NnId in[2] = {a, b};
    return nn_rewrite_add(rw, op, in, 2, &(NnAttr){0}, loc);
}

// The new node for chain ch's end: the contraction on scaled weights plus a
// bias. The bias is computed on rank-1 values and reshaped to [1, F, 1, 1]
// last: a RESHAPE is a kernel boundary for fusion, so the per-channel
// arithmetic runs once per channel in its own small kernel instead of once
// per output element in the convolution's epilogue.
static NnId emit_chain(NnRewrite *rw, const NnGraph *g, const NnId *reader, Chain ch)
{
    const NnNode *cv = &g->nodes[ch.conv];
    NnId w = rw->map[cv->in[1]], bias = -1;
    NnLoc loc = g->nodes[ch.end].loc;
    for (NnId cur = ch.conv; cur != ch.end; cur = reader[cur]) {
        const NnNode *n = &g->nodes[reader[cur]];
        bool left = n->in[0] == cur;
        NnId c = rw->map[left ? n->in[1] : n->in[0]];
        NN_ASSERT(c >= 0);
        const NnNode *cn = &rw->g->nodes[c];
        int64_t numel = 1;
        for (int k = 0; k < cn->shape.rank; k++)
            numel *= cn->shape.dim[k];
        NnId c1 = reshaped(rw, c, 1, numel, 0, loc);
        if (n->op == NN_OP_MUL || n->op == NN_OP_DIV) {
            w = binary(rw, n->op, w, reshaped(rw, c, 4, numel, 0, loc), loc); // rows of w
            if (bias >= 0)
                bias = binary(rw, n->op, bias, c1, loc);
        } else if (n->op == NN_OP_ADD) {
            bias = bias < 0 ? c1 : binary(rw, NN_OP_ADD, bias, c1, loc);
        } else if (left) { // h - c
            bias = bias < 0 ? nn_rewrite_add(rw, NN_OP_NEG, &c1, 1, &(NnAttr){0}, loc)
                            : binary(rw, NN_OP_SUB, bias, c1, loc);
        } else { // c - h
            w = nn_rewrite_add(rw, NN_OP_NEG, &w, 1, &(NnAttr){0}, loc);
            bias = bias < 0 ? c1 : binary(rw, NN_OP_SUB, c1, bias, loc);
        }
    }
    NnAttr a = cv->attr;
    NnId in[2] = {rw->map[cv->in[0]], w};
    NnId y = nn_rewrite_add(rw, cv->op, in, 2, &a, cv->loc);
    if (bias >= 0) {
        int64_t nb = rw->g->nodes[bias].shape.dim[0];
        y = binary(rw, NN_OP_ADD, y, reshaped(rw, bias, 4, nb, 1, loc), loc);
    }
    return y;
}

NnGraph *nn_pass_bnfold(NnGraph *g)
{
    NnId *reader = sole_readers(g);
    NnId *conv_of = malloc(((size_t)g->count + 1) * sizeof *conv_of); // chain end -> contraction
    bool *gone = calloc((size_t)g->count + 1, sizeof *gone);          // replaced chain values
    NN_ASSERT(conv_of && gone);
    bool any = false;
    for (NnId i = 0; i < g->count; i++)
        conv_of[i] = -1;
    for (NnId i = 0; i < g->count; i++) {
        if (!nn_op_has(g->nodes[i].op, NN_OPF_CHANLIN))
            continue;
        Chain ch = find_chain(g, reader, i);
        if (ch.end < 0)
            continue;
        conv_of[ch.end] = i;
        for (NnId cur = i; cur != ch.end; cur = reader[cur])
            gone[cur] = true;
        any = true;
    }
    NnGraph *out = g;
    if (any) {
        NnRewrite rw;
        nn_rewrite_begin(&rw, g);
        rw.changed = true;
        for (NnId i = 0; i < g->count; i++) {
            if (conv_of[i] >= 0)
                rw.map[i] = emit_chain(&rw, g, reader, (Chain){conv_of[i], i});
            else if (!gone[i])
                nn_rewrite_copy(&rw, i);
        }
        out = nn_rewrite_end(&rw);
    }
    free(reader);
    free(conv_of);
    free(gone);
    return out;
}
