// Dead code elimination: drops every node no output or update reaches.
// requires: a verified graph. provides: every node is an INPUT, or an ancestor
// of an output, an update value, or an updated PARAM/STATE. INPUT nodes always
// stay, dead or not, because backends feed inputs by position (ascending id).
#include "pass.h"

#include <stdlib.h>

NnGraph *nn_pass_dce(NnGraph *g)
{
    bool *live = calloc((size_t)g->count + 1, sizeof *live);
    NN_ASSERT(live);
    for (int i = 0; i < g->noutputs; i++)
        live[g->outputs[i].id] = true;
    for (int i = 0; i < g->nupdates; i++)
        live[g->updates[i].var] = live[g->updates[i].value] = true;
    int dead = 0;
    // Inputs precede their users, so one backward sweep marks all ancestors.
    for (int i = g->count - 1; i >= 0; i--) {
        const NnNode *n = &g->nodes[i];
        if (n->op == NN_OP_INPUT)
            live[i] = true;
        if (!live[i]) {
            dead++;
            continue;
        }
        for (int k = 0; k < n->nin; k++)
            live[n->in[k]] = true;
    }
    if (!dead) {
        free(live);
        return g;
    }
    NnRewrite rw;
    nn_rewrite_begin(&rw, g);
    rw.changed = true;
    for (int i = 0; i < g->count; i++)
        if (live[i])
            nn_rewrite_copy(&rw, i);
    free(live);
    return nn_rewrite_end(&rw);
}
