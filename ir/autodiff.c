// nn_ad_grad / nn_ad_vjp: reverse mode over the graph. Marks the nodes that lie
// on a path from some wrt node to a seeded output, then walks ids from the
// highest output down, calling each marked node's VJP (from the ops.def
// table) with its summed output gradient and adding the input gradients it
// returns (ADD nodes); a LOOP gets the gradients of all its results at once.
// Only ids up to the highest output are walked; everything built here is appended after them.
#include "autodiff.h"

#include <string.h>

#include "loop.h"
#include "op_common.h"

// A seed of ones (d loss / d loss), made only when the loss depends on wrt.
#define UNIT_SEED (-2)

typedef void (*VjpFn)(NnGraph *, NnId, NnId, NnId *);
static const VjpFn vjp_rules[NN_OP_COUNT] = {
#define NN_OP(tag, name, arity, flags, attrs) [NN_OP_##tag] = vjp_##name,
#include "ops.def"
#undef NN_OP
};

// A gradient can flow through node i: a float value whose op has a VJP.
static bool passes_grad(const NnNode *n)
{
    return nn_rule_is_float(n->dtype) && nn_op_has(n->op, NN_OPF_DIFF);
}

// on[i]: i is a wrt node, or a differentiable node with an input that is
// reachable from a wrt node; and some seeded output depends on i.
static bool *mark_path(NnGraph *g, NnId top, const NnId *outs, const NnId *seeds, int nout,
                       const NnId *wrt, int n)
{
    bool *from = nn_arena_alloc(g->arena, (size_t)(top + 1));
    bool *to = nn_arena_alloc(g->arena, (size_t)(top + 1));
    for (int k = 0; k < n; k++)
        if (wrt[k] <= top && nn_rule_is_float(g->nodes[wrt[k]].dtype))
            from[wrt[k]] = true;
    for (NnId i = 0; i <= top; i++) {
        const NnNode *nd = &g->nodes[i];
        if (!passes_grad(nd))
            continue;
        for (int k = 0; k < nd->nin; k++)
            from[i] |= from[nd->in[k]];
    }
    for (int k = 0; k < nout; k++)
        if (seeds[k] != -1)
            to[outs[k]] = true;
    for (NnId i = top; i >= 0; i--) {
        const NnNode *nd = &g->nodes[i];
        if (!to[i] || !from[i])
            continue;
        for (int k = 0; k < nd->nin; k++)
            to[nd->in[k]] = true;
    }
    for (NnId i = 0; i <= top; i++)
        from[i] = from[i] && to[i];
    return from;
}

static void accumulate(NnGraph *g, NnId i, const bool *on, NnId *acc, const NnId *gin)
{
    for (int k = 0; k < g->nodes[i].nin; k++) {
        NnId x = g->nodes[i].in[k];
        if (gin[k] < 0 || !on[x])
            continue;
        NN_ASSERT(nn_shape_eq(&g->nodes[gin[k]].shape, &g->nodes[x].shape));
        acc[x] = acc[x] < 0 ? gin[k] : nn_ir_binary(g, NN_OP_ADD, acc[x], gin[k], g->nodes[i].loc);
    }
}

// Runs node i's VJP and adds each input's gradient into acc.
static void backprop_node(NnGraph *g, NnId i, const bool *on, NnId *acc)
{
    NnId small[16];
    int nin = g->nodes[i].nin;
    // Variadic ops (CONCAT) may have any number of operands.
    NnId *gin = nin <= 16 ? small : nn_arena_alloc(g->arena, (size_t)nin * sizeof(NnId));
    for (int k = 0; k < nin; k++)
        gin[k] = -1;
    g->err[0] = 0;
    vjp_rules[g->nodes[i].op](g, i, acc[i], gin);
    if (g->err[0]) // a VJP built ill-typed IR: the rule is wrong, not the user
        nn_internal_error(__FILE__, __LINE__, g->err);
    accumulate(g, i, on, acc, gin);
}

// A LOOP has several results, each read by LOOP_OUT nodes (later ids, so
// already walked): their summed gradients go to the loop's own VJP.
static void backprop_loop(NnGraph *g, NnId i, NnId top, const bool *on, NnId *acc)
{
    int nres = nn_loop_nresults(&g->nodes[i]), nin = g->nodes[i].nin;
    NnId *dres = nn_arena_alloc(g->arena, (size_t)(nres + nin + 1) * sizeof(NnId));
    NnId *gin = dres + nres;
    bool any = false;
    for (int k = 0; k < nres; k++)
        dres[k] = -1;
    for (NnId j = i + 1; j <= top; j++) {
        const NnNode *p = &g->nodes[j];
        if (p->op != NN_OP_LOOP_OUT || p->in[0] != i || acc[j] < 0 || !on[j])
            continue;
        int k = p->attr.result;
        dres[k] = dres[k] < 0 ? acc[j] : nn_ir_binary(g, NN_OP_ADD, dres[k], acc[j], p->loc);
        any = true;
    }
    if (!any)
        return;
    bool *need = nn_arena_alloc(g->arena, (size_t)nin + 1);
    for (int k = 0; k < nin; k++)
        need[k] = on[g->nodes[i].in[k]];
    g->err[0] = 0;
    nn_loop_vjp(g, i, dres, need, gin);
    accumulate(g, i, on, acc, gin);
}

bool nn_ad_vjp(NnGraph *g, const NnId *outs, const NnId *seeds, int nout, const NnId *wrt, int n,
               NnId *grads)
{
    NnId top = -1;
    for (int k = 0; k < nout; k++) {
        NN_ASSERT(outs[k] >= 0 && outs[k] < g->count);
        top = outs[k] > top ? outs[k] : top;
    }
    for (int k = 0; k < n; k++)
        NN_ASSERT(wrt[k] >= 0 && wrt[k] < g->count);
    bool *on = top >= 0 ? mark_path(g, top, outs, seeds, nout, wrt, n) : NULL;
    // A C function is differentiable only through the derivative the program
    // declares for it: the user's mistake, so a message, not a failed rule.
    for (NnId i = 0; i <= top; i++)
        if (on[i] && g->nodes[i].op == NN_OP_EXTERN && !g->nodes[i].attr.body) {
            g->err_loc = g->nodes[i].loc;
            nn_set_err(g, "cannot differentiate through extern function '%s': it has no "
                       "declared derivative (declare one with `grad %s(...) = ...`)",
                       g->nodes[i].attr.sym, g->nodes[i].attr.sym);
            return false;
        }
    NnId *acc = nn_arena_alloc(g->arena, (size_t)(top + 2) * sizeof *acc);
    for (NnId i = 0; i <= top; i++)
        acc[i] = -1;
    for (int k = 0; k < nout; k++) {
        NnId o = outs[k];
        if (seeds[k] == -1 || !on[o])
            continue;
        NnId sd = seeds[k] == UNIT_SEED ? nn_ir_const(g, 1, g->nodes[o].dtype, g->nodes[o].loc)
                                        : seeds[k];
        acc[o] = acc[o] < 0 ? sd : nn_ir_binary(g, NN_OP_ADD, acc[o], sd, g->nodes[o].loc);
    }
    for (NnId i = top; i >= 0; i--) {
        if (!on[i])
            continue;
        if (g->nodes[i].op == NN_OP_LOOP)
            backprop_loop(g, i, top, on, acc);
        else if (acc[i] >= 0 && passes_grad(&g->nodes[i]) && g->nodes[i].op != NN_OP_LOOP_OUT)
            backprop_node(g, i, on, acc);
    }
    for (int k = 0; k < n; k++) {
        NnId w = wrt[k];
        grads[k] = w <= top ? acc[w] : -1;
        if (grads[k] < 0) {
            const NnNode *x = &g->nodes[w];
            grads[k] = nn_rule_fill(g, 0, x->dtype, &x->shape, x->loc);
        }
    }
    return true;
}

bool nn_ad_grad(NnGraph *g, NnId loss, const NnId *wrt, int n, NnId *grads)
{
    NN_ASSERT(loss >= 0 && loss < g->count);
    const NnNode *l = &g->nodes[loss];
    if (l->shape.rank != 0 || !nn_rule_is_float(l->dtype)) {
        char t[128];
        nn_set_err(g, "the loss must be a float scalar, got %s",
                   nn_type_str(g, l->dtype, &l->shape, t, sizeof t));
        return false;
    }
    NnId seed = UNIT_SEED;
    return nn_ad_vjp(g, &loss, &seed, 1, wrt, n, grads);
    return true;
}
