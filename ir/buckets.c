// Splits a large weight gradient computed by one matmul (dW = A^T B: the
// first layer's in an MLP, the last thing the backward pass computes and most
// of the bytes) into column blocks dW[:, c0:c1] = A^T B[:, c0:c1], each with
// its own GRAD_START / GRAD_WAIT, joined by a CONCAT of the waits that stands
// for the old wait: once the overlap pass has scheduled them, a block's sum
// over ranks runs while the next blocks compute, instead of all of it after
// the backward pass. Costs a copy of B's columns and of dW (the CONCAT).
// Off unless NNC_MPI_BUCKETS=1: on the idle 2-core machine it hid more of the
// all-reduce (51% against 30% of the time inside MPI) but the copies cost
// more than that saved: 2 ranks trained the MLP 13% slower with it.
// requires: a verified graph, fused (the matmul stands alone). provides: no
// GRAD_START of SPLIT_MIN or more elements reads an A^T B matmul read by
// nothing else; the graph is unchanged where there is no GRAD_START.
#include "pass.h"

#include <stdlib.h>
#include <string.h>

// A gradient of at least SPLIT_MIN elements is all-reduced in blocks of
// about BLOCK elements (at most MAX_BLOCKS): large enough that a block's
// MPI_Iallreduce start costs little against its bytes, small enough that the
// last block, the one nothing hides, is a fraction of the gradient.
enum { SPLIT_MIN = 1 << 17, BLOCK = 1 << 15, MAX_BLOCKS = 8 };

// The number of column blocks GRAD_START s's gradient splits into (1: none):
// it must be a matmul A^T B of rank-2 operands that only s reads.
static int blocks_of(const NnGraph *g, NnId s, const int *uses)
{
    NnId m = g->nodes[s].in[0];
    const NnNode *mm = &g->nodes[m];
    if (mm->op != NN_OP_MATMUL || !mm->attr.ta || mm->attr.tb || uses[m] != 1 ||
        mm->shape.rank != 2 || g->nodes[mm->in[0]].shape.rank != 2 ||
        g->nodes[mm->in[1]].shape.rank != 2 || uses[s] != 1)
        return 1;
    int64_t numel = mm->shape.dim[0] * mm->shape.dim[1], cols = mm->shape.dim[1];
    if (mm->shape.dim[0] <= 0 || cols <= 0 || numel < SPLIT_MIN)
        return 1;
    int64_t nb = numel / BLOCK;
    nb = nb > MAX_BLOCKS ? MAX_BLOCKS : nb;
    return (int)(nb > cols ? cols : nb);
}

NnGraph *nn_pass_buckets(NnGraph *g)
{
    const char *on = getenv("NNC_MPI_BUCKETS");
    if (!on || strcmp(on, "1") != 0)
        return g;
    int *uses = calloc((size_t)g->count + 1, sizeof *uses);
    int *nb = calloc((size_t)g->count + 1, sizeof *nb);
    NN_ASSERT(uses && nb);
    for (NnId i = 0; i < g->count; i++)
        for (int k = 0; k < g->nodes[i].nin; k++)
            uses[g->nodes[i].in[k]]++;
    for (int k = 0; k < g->noutputs; k++)
        uses[g->outputs[k].id]++;
    bool any = false;
    for (NnId i = 0; i < g->count; i++)
        if (g->nodes[i].op == NN_OP_GRAD_START && (nb[i] = blocks_of(g, i, uses)) > 1)
            any = true;
    if (!any) {
        free(uses);
        free(nb);
        return g;
    }
    NnRewrite rw;
    nn_rewrite_begin(&rw, g);
    rw.changed = true;
    NnId *start_of = malloc(((size_t)g->count + 1) * sizeof *start_of); // by its matmul
    NnId (*blk)[MAX_BLOCKS] = calloc((size_t)g->count + 1, sizeof *blk); // blocks' starts
    NN_ASSERT(start_of && blk);
    for (NnId i = 0; i < g->count; i++)
        start_of[i] = -1;
    for (NnId i = 0; i < g->count; i++)
        if (nb[i] > 1)
            start_of[g->nodes[i].in[0]] = i;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        NnId s = start_of[i];
        if (s >= 0) {
            // The blocks: a slice of B, its matmul, its start, one after another.
            NnId a = rw.map[n->in[0]], b = rw.map[n->in[1]];
            int64_t cols = n->shape.dim[1];
            for (int k = 0; k < nb[s]; k++) {
                int64_t c0 = cols * k / nb[s], c1 = cols * (k + 1) / nb[s];
                NnId bk = nn_ir_slice(rw.g, b, 1, c0, c1, 1, n->loc);
                NnId mk = bk >= 0 ? nn_ir_matmul(rw.g, a, bk, true, false, n->loc) : -1;
                blk[s][k] = mk >= 0 ? nn_ir_unary(rw.g, NN_OP_GRAD_START, mk, g->nodes[s].loc)
                                    : -1;
                NN_ASSERT(blk[s][k] >= 0);
            }
        } else if (n->op == NN_OP_GRAD_WAIT && nb[n->in[0]] > 1) {
            NnId s0 = n->in[0], waits[MAX_BLOCKS];
            for (int k = 0; k < nb[s0]; k++) {
                waits[k] = nn_ir_unary(rw.g, NN_OP_GRAD_WAIT, blk[s0][k], n->loc);
                NN_ASSERT(waits[k] >= 0);
            }
            rw.map[i] = nn_ir_concat(rw.g, waits, nb[s0], 1, n->loc);
            NN_ASSERT(rw.map[i] >= 0);
        } else if (!(n->op == NN_OP_GRAD_START && nb[i] > 1)) {
            nn_rewrite_copy(&rw, i);
        }
    }
    free(start_of);
    free(blk);
    free(uses);
    free(nb);
    return nn_rewrite_end(&rw);
}

