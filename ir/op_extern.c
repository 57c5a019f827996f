// EXTERN: a C function called elementwise. Its shape rule broadcasts the
// arguments like ADD does; its VJP instantiates the declared derivative
// (attr.body) on the node's own inputs: gin[k] = sumto(gout * d_k). A node
// without a derivative never reaches the VJP: nn_ad_grad reports it first.
// nn_extern_open is where the declaration's library and symbol are found.
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "attr.h"
#include "op_common.h"
#include "rules.h"

bool shape_extern(NnGraph *g, NnNode *n)
{
    NnShape s = {0};
    for (int k = 0; k < n->nin; k++) {
        const NnNode *x = &g->nodes[n->in[k]];
        if (!nn_broadcast_shapes(&s, &x->shape, &s)) {
            char a[64];
            nn_set_err(g, "%s: argument %d of type %s does not broadcast with the others",
                       n->attr.sym ? n->attr.sym : "extern", k + 1, nn_rule_in_type(g, n, k, a));
            return false;
        }
    }
    n->dtype = n->attr.dtype;
    n->shape = s;
    return true;
}

// Copies body into g with its INPUT nodes standing for ins; returns the ids
// of body's outputs in outs.
static void inline_body(NnGraph *g, const NnGraph *body, const NnId *ins, NnId *outs, NnLoc loc)
{
    NnId *map = nn_arena_alloc(g->arena, (size_t)(body->count + 1) * sizeof(NnId));
    int k = 0;
    for (NnId i = 0; i < body->count; i++) {
        const NnNode *n = &body->nodes[i];
        if (n->op == NN_OP_INPUT) {
            map[i] = ins[k++];
            continue;
        }
        NnId in[16];
        NnId *inp = n->nin <= 16 ? in : nn_arena_alloc(g->arena, (size_t)n->nin * sizeof(NnId));
        for (int j = 0; j < n->nin; j++)
            inp[j] = map[n->in[j]];
        NnAttr a = nn_attr_copy(g, n->op, &n->attr);
        map[i] = nn_ir_add(g, n->op, inp, n->nin, &a, loc);
    }
    for (int j = 0; j < body->noutputs; j++)
        outs[j] = map[body->outputs[j].id];
}

void vjp_extern(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnLoc loc = n->loc;
    const NnGraph *body = n->attr.body;
    NN_ASSERT(body && body->noutputs == n->nin);
    int nin = n->nin;
    NnId ins[3], d[3];
    NN_ASSERT(nin <= 3);
    memcpy(ins, n->in, (size_t)nin * sizeof(NnId));
    inline_body(g, body, ins, d, loc);
    for (int k = 0; k < nin; k++) {
        const NnNode *x = &g->nodes[ins[k]];
        if (!nn_rule_is_float(x->dtype) || d[k] < 0) {
            gin[k] = -1;
            continue;
        }
        NnId dk = d[k];
        if (g->nodes[dk].dtype != g->nodes[gout].dtype)
            dk = nn_ir_cast(g, dk, g->nodes[gout].dtype, loc);
        NnId t = nn_ir_binary(g, NN_OP_MUL, gout, dk, loc);
        if (g->nodes[t].dtype != x->dtype)
            t = nn_ir_cast(g, t, x->dtype, loc);
        NnShape xs = x->shape;
        gin[k] = nn_rule_sumto(g, t, &xs, loc);
    }
}

void *nn_extern_open(const char *lib, const char *sym, char *why, size_t cap)
{
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, cap, "cannot load library '%s': %s", lib, e ? e : "not found");
        return NULL;
    }
    dlerror();
    void *f = dlsym(h, sym);
    if (!f) {
        const char *e = dlerror();
        snprintf(why, cap, "library '%s' has no function '%s'%s%s", lib, sym, e ? ": " : "",
                 e ? e : "");
        // The handle stays open: dlopen counts references, and a later
        // successful lookup in the same library shares it.
        return NULL;
    }
    return f;
}
