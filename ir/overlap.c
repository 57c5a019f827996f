// Schedules gradient all-reduces early: moves every GRAD_START to right after
// the node computing its input, so the sum over ranks runs while the rest of
// the backward pass computes (backends run nodes in id order), and every
// GRAD_WAIT to right before its first reader, so a sum that finishes early is
// waited for (and its update done) while later ones still run.
// requires: a verified graph. provides: each GRAD_START directly follows its
// input (or another GRAD_START of it), each GRAD_WAIT directly precedes its
// first reader; the relative order of all other nodes holds.
#include "pass.h"

#include <stdlib.h>

// Waits: placed where first read (their GRAD_START, placed after its input,
// is in place by then).
static bool deferred(const NnGraph *g, NnId i)
{
    return g->nodes[i].op == NN_OP_GRAD_WAIT;
}

static void place_deferred(NnRewrite *rw, NnId i)
{
    if (rw->map[i] < 0)
        nn_rewrite_copy(rw, i);
}

static NnGraph *schedule(NnGraph *g)
{
    NnId *first = malloc(((size_t)g->count + 1) * sizeof *first); // GRAD_STARTs by input
    NnId *next = malloc(((size_t)g->count + 1) * sizeof *next);
    NN_ASSERT(first && next);
    bool any = false;
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
    return schedule(g);
}
