// Loop bodies: drops the results of every LOOP node that nothing reads (a
// stacked output no LOOP_OUT takes; a carry whose final value nobody takes and
// whose old value the body does not need), then runs the whole pass pipeline
// (cleanup and fusion) on each body, so a body is optimized and fused like a
// graph of its own (nested loops included, through this same pass). It runs
// in the fusion stage, before fuse: `--stage opt` shows bodies as built and
// `--stage fused` shows them pruned and optimized. Loops are never unrolled
// here: one trip of a fused body costs a few kernel calls, and unrolling
// would make the compile time grow with the trip count again.
// requires: a verified graph. provides: every LOOP body has been through the
// pipeline, and every LOOP result is read by some LOOP_OUT or carried.
#include "pass.h"

#include <stdlib.h>

#include "attr.h"

// live[i]: body node i is an output or feeds one that is kept.
static void body_live(const NnGraph *b, const bool *keep_out, bool *live)
{
    for (NnId i = 0; i < b->count; i++)
        live[i] = false;
    for (int j = 0; j < b->noutputs; j++)
        if (keep_out[j])
            live[b->outputs[j].id] = true;
    for (NnId i = b->count - 1; i >= 0; i--)
        for (int k = 0; live[i] && k < b->nodes[i].nin; k++)
            live[b->nodes[i].in[k]] = true;
}

// The pruned copy of loop n (in the new graph) and, in newidx, where each of
// its results went (-1: dropped). Inputs are already mapped (in).
static NnId prune(NnRewrite *rw, const NnNode *n, const bool *used, NnId *in, int *newidx)
{
    const NnGraph *b = n->attr.body;
    int C = n->attr.ncarry, nres = b->noutputs;
    bool *keep_out = calloc((size_t)nres + 1, sizeof(bool));
    bool *live = calloc((size_t)b->count + 1, sizeof(bool));
    NnId *inputs = calloc((size_t)n->nin + 1, sizeof(NnId));
    NN_ASSERT(keep_out && live && inputs);
    for (int j = 0; j < nres; j++)
        keep_out[j] = j < C || used[j];
    for (int k = 0, q = 0; k < b->count && q < n->nin; k++)
        if (b->nodes[k].op == NN_OP_INPUT)
            inputs[q++] = k;
    // Dropping a carry can leave another's old value unread: repeat.
    for (bool changed = true; changed;) {
        changed = false;
        body_live(b, keep_out, live);
        for (int k = 0; k < C; k++) {
            bool read = false;
            for (NnId i = inputs[k] + 1; i < b->count && !read; i++)
                for (int q = 0; live[i] && q < b->nodes[i].nin; q++)
                    read |= b->nodes[i].in[q] == inputs[k];
            for (int j = 0; j < nres && !read; j++)
                read = keep_out[j] && j != k && b->outputs[j].id == inputs[k];
            if (keep_out[k] && !used[k] && !read) {
                keep_out[k] = false;
                changed = true;
            }
        }
    }
    body_live(b, keep_out, live);
    NnGraph *nb = nn_graph_new_child(rw->g);
    NnId *map = calloc((size_t)b->count + 1, sizeof(NnId));
    NN_ASSERT(map);
    int nin = 0, ncarry = 0, q = 0;
    for (NnId i = 0; i < b->count; i++) {
        const NnNode *bn = &b->nodes[i];
        map[i] = -1;
        if (bn->op == NN_OP_INPUT) {
            bool drop = q < C && !keep_out[q];
            if (!drop) {
                in[nin++] = in[q];
                ncarry += q < C;
                NnAttr a = nn_attr_copy(nb, NN_OP_INPUT, &bn->attr);
                map[i] = nn_ir_add(nb, NN_OP_INPUT, NULL, 0, &a, bn->loc);
            }
            q++;
            continue;
        }
        if (!live[i])
            continue;
        NnId small[16];
        NnId *ins = bn->nin <= 16 ? small
                                  : nn_arena_alloc(nb->arena, (size_t)bn->nin * sizeof(NnId));
        for (int k = 0; k < bn->nin; k++)
            ins[k] = map[bn->in[k]];
        NnAttr a = nn_attr_copy(nb, bn->op, &bn->attr);
        map[i] = nn_ir_add(nb, bn->op, ins, bn->nin, &a, bn->loc);
        NN_ASSERT(map[i] >= 0);
    }
    int r = 0;
    for (int j = 0; j < nres; j++) {
        newidx[j] = keep_out[j] ? r++ : -1;
        if (keep_out[j])
            nn_graph_add_output(nb, b->outputs[j].name, map[b->outputs[j].id]);
    }
    NnAttr a = n->attr;
    a.ncarry = ncarry;
    a.body = nb;
    NnId id = nn_rewrite_add(rw, NN_OP_LOOP, in, nin, &a, n->loc);
    free(keep_out);
    free(live);
    free(inputs);
    free(map);
    return id;
}

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
    int **newidx = calloc((size_t)g->count + 1, sizeof(int *));
    NN_ASSERT(newidx);
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op == NN_OP_LOOP_OUT) {
            NnAttr a = n->attr;
            a.result = newidx[n->in[0]][a.result];
            NN_ASSERT(a.result >= 0);
            rw.map[i] = nn_rewrite_add(&rw, n->op, &rw.map[n->in[0]], 1, &a, n->loc);
            continue;
        }
        if (n->op != NN_OP_LOOP) {
            nn_rewrite_copy(&rw, i);
            continue;
        }
        int nres = n->attr.body->noutputs;
        bool *used = calloc((size_t)nres + 1, sizeof(bool));
        NnId *in = nn_arena_alloc(rw.g->arena, ((size_t)n->nin + 1) * sizeof(NnId));
        newidx[i] = nn_arena_alloc(rw.g->arena, ((size_t)nres + 1) * sizeof(int));
        NN_ASSERT(used);
        for (NnId j = i + 1; j < g->count; j++)
            if (g->nodes[j].op == NN_OP_LOOP_OUT && g->nodes[j].in[0] == i)
                used[g->nodes[j].attr.result] = true;
        for (int k = 0; k < n->nin; k++)
            in[k] = rw.map[n->in[k]];
        NnId pruned = prune(&rw, n, used, in, newidx[i]);
        free(used);
        // The pipeline on the pruned body; its result replaces the body.
        NnNode *pn = &rw.g->nodes[pruned];
        NnGraph *opt = nn_passes_run(nn_graph_clone(pn->attr.body), NULL);
        pn->attr.body = nn_graph_new_child(rw.g);
        nn_graph_copy_into(pn->attr.body, opt);
        nn_graph_free(opt);
        rw.map[i] = pruned;
    }
    free(newidx);
    return nn_rewrite_end(&rw);
}
