// Schedules gradient all-reduces early. First splits a large weight gradient
// computed by one matmul (dW = A^T B, the first layer's, the last thing the
// backward pass computes and most of the bytes) into column blocks
// dW[:, c0:c1] = A^T B[:, c0:c1], each with its own GRAD_START / GRAD_WAIT,
// joined by a CONCAT that the update reads: a block's sum then runs while the
// next blocks compute. Then moves every GRAD_START to right after the node
// computing its input, so the sum over ranks runs while the rest of the
// backward pass computes (backends run nodes in id order), and every GRAD_WAIT
// (and a CONCAT of waits) to right before its first reader, so a sum that
// finishes early is waited for (and its update done) while later ones still run.
// requires: a verified graph. provides: each GRAD_START directly follows its
// input (or another GRAD_START of it), each GRAD_WAIT directly precedes its
// first reader (or the CONCAT of waits that is); the relative order of all
// other nodes holds.
#include "pass.h"

#include <stdlib.h>

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

// Rewrites each splittable GRAD_START / GRAD_WAIT pair into nb of them on
// column blocks of its matmul, in place of the matmul (the CONCAT of the
// waits stands for the old wait).
static NnGraph *split_buckets(NnGraph *g)
{
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

// Waits, and CONCATs of nothing but waits (split_buckets'): placed where first read.
static bool deferred(const NnGraph *g, NnId i)
{
    const NnNode *n = &g->nodes[i];
    if (n->op == NN_OP_GRAD_WAIT)
        return true;
    if (n->op != NN_OP_CONCAT)
        return false;
    for (int k = 0; k < n->nin; k++)
        if (g->nodes[n->in[k]].op != NN_OP_GRAD_WAIT)
            return false;
    return true;
}

static void place_deferred(NnRewrite *rw, NnId i)
{
    const NnGraph *g = rw->old;
    if (rw->map[i] >= 0)
        return;
    for (int k = 0; k < g->nodes[i].nin; k++)
        if (deferred(g, g->nodes[i].in[k]))
            place_deferred(rw, g->nodes[i].in[k]);
    nn_rewrite_copy(rw, i);
}

// force: the graph is new (split_buckets), so rewrite it even if in order.
static NnGraph *schedule(NnGraph *g, bool force)
{
    NnId *first = malloc(((size_t)g->count + 1) * sizeof *first); // GRAD_STARTs by input
    NnId *next = malloc(((size_t)g->count + 1) * sizeof *next);
    NN_ASSERT(first && next);
    bool any = force;
    for (NnId i = 0; i < g->count; i++)
        first[i] = next[i] = -1;
    for (NnId i = g->count - 1; i >= 0; i--) {
        const NnNode *n = &g->nodes[i];
        if (n->op != NN_OP_GRAD_START)
            continue;
        next[i] = first[n->in[0]];
        first[n->in[0]] = i;
        any = any || n->in[0] != i - 1;
    }
    if (!any) {
        free(first);
        free(next);
        return g;
    }
    NnRewrite rw;
    nn_rewrite_begin(&rw, g);
    rw.changed = true;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op == NN_OP_GRAD_START || deferred(g, i))
            continue;
        for (int k = 0; k < n->nin; k++)
            if (deferred(g, n->in[k]))
                place_deferred(&rw, n->in[k]);
        nn_rewrite_copy(&rw, i);
        for (NnId s = first[i]; s >= 0; s = next[s])
            nn_rewrite_copy(&rw, s);
    }
    for (NnId i = 0; i < g->count; i++) // what no node reads (outputs, updates)
        if (deferred(g, i))
            place_deferred(&rw, i);
    free(first);
    free(next);
    return nn_rewrite_end(&rw);
}

NnGraph *nn_pass_overlap(NnGraph *g)
{
    NnGraph *s = split_buckets(g);
    NnGraph *out = schedule(s, s != g);
    if (s != g && out != s)
        nn_graph_free(s);
    return out;
}
