// Loop bodies: runs the whole pass pipeline (cleanup and fusion) on the body
// of every LOOP node, so a body is optimized and fused like a graph of its
// own (nested loops included, through this same pass). It runs in the fusion
// stage, before fuse, so `--stage opt` shows bodies as built and `--stage
// fused` shows them optimized. Loops are never unrolled here: one trip of a
// fused body costs a few kernel calls, and unrolling would make the compile
// time grow with the trip count again.
// requires: a verified graph. provides: every LOOP body has been through the
// pipeline; body INPUTs and outputs keep their order and types.
#include "pass.h"

NnGraph *nn_pass_loops(NnGraph *g)
{
    bool any = false;
    for (NnId i = 0; i < g->count; i++)
        any |= g->nodes[i].op == NN_OP_LOOP;
    if (!any)
        return g;
    NnRewrite rw;
    nn_rewrite_begin(&rw, g);
    rw.changed = true;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op != NN_OP_LOOP) {
            nn_rewrite_copy(&rw, i);
            continue;
        }
        NnGraph *opt = nn_passes_run(nn_graph_clone(n->attr.body), NULL);
        NnAttr a = n->attr;
        a.body = nn_graph_new_child(rw.g);
        nn_graph_copy_into(a.body, opt);
        nn_graph_free(opt);
        NnId *in = nn_arena_alloc(rw.g->arena, ((size_t)n->nin + 1) * sizeof(NnId));
        for (int k = 0; k < n->nin; k++)
            in[k] = rw.map[n->in[k]];
        rw.map[i] = nn_rewrite_add(&rw, n->op, in, n->nin, &a, n->loc);
    }
    return nn_rewrite_end(&rw);
}
