// The ordered pass table and the pipeline: cleanup passes (stage "opt") run in
// table order, repeatedly, until none changes the graph (bounded), then the
// fused-stage passes run once. Also the scaffold passes share to rebuild a graph
// node by node (NnRewrite) and deep copies. Ownership: a pass returns its input
// when it changed nothing, else a new graph; nn_passes_run frees what it drops.
#include "pass.h"

#include "attr.h"

#include <stdlib.h>
#include <string.h>

const NnPass nn_passes[] = {
    {"fold", nn_pass_fold, 'C'},
    {"simplify", nn_pass_simplify, 'C'},
    {"bnfold", nn_pass_bnfold, 'C'},
    {"cse", nn_pass_cse, 'C'},
    {"dce", nn_pass_dce, 'C'},
    {"loops", nn_pass_loops, 'F'},
    {"fuse", nn_pass_fuse, 'F'},
    {"overlap", nn_pass_overlap, 'F'},
    {NULL, NULL, 0},
};

// Rounds of the cleanup passes. Each round that changes something removes or
// merges nodes, so real graphs settle in two or three; the bound is a backstop.
#define MAX_ROUNDS 8

const NnPass *nn_pass_find(const char *name)
{
    for (const NnPass *p = nn_passes; name && p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

bool nn_pass_exists(const char *name) { return nn_pass_find(name) != NULL; }

const char *nn_pass_names(void)
{
    static char buf[256];
    if (buf[0])
        return buf;
    size_t len = 0;
    for (const NnPass *p = nn_passes; p->name; p++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", len ? ", " : "", p->name);
    return buf;
}

static bool disabled(const NnPassOptions *opt, const char *name)
{
    for (int i = 0; i < opt->ndisabled; i++)
        if (opt->disabled[i] && strcmp(opt->disabled[i], name) == 0)
            return true;
    return false;
}

// Runs one pass, verifies and dumps. Returns the graph now current; *changed
// is set when the pass made a new one (the old one is freed).
static NnGraph *run_one(NnGraph *g, const NnPass *p, const NnPassOptions *opt, bool *changed)
{
    NnGraph *h = p->fn(g);
    if (h != g) {
        nn_graph_free(g);
        *changed = true;
    }
    bool verify = opt->verify;
#ifdef NN_DEBUG
    verify = true;
#endif
    if (verify && h != g && !nn_ir_verify(h)) {
        fprintf(stderr, "internal error: after pass %s: %s\n", p->name, h->err);
        nn_ir_print(stderr, h);
        NN_ASSERT(!"graph verifies after every pass");
    }
    if (opt->dump && strcmp(opt->dump, p->name) == 0) {
        FILE *out = opt->dump_out ? opt->dump_out : stderr;
        fprintf(out, "// after %s%s\n", p->name, h == g ? " (unchanged)" : "");
        nn_ir_print(out, h);
    }
    return h;
}

NnGraph *nn_passes_run(NnGraph *g, const NnPassOptions *opt)
{
    static const NnPassOptions defaults = {0};
    if (!opt)
        opt = &defaults;
    bool verify = opt->verify;
#ifdef NN_DEBUG
    verify = true;
#endif
    // The first rewrite copies only the attributes each op declares, so a
    // stray one must be caught here, before it silently disappears.
    if (verify && !nn_ir_verify(g)) {
        fprintf(stderr, "internal error: graph before the passes: %s\n", g->err);
        nn_ir_print(stderr, g);
        NN_ASSERT(!"graph verifies before the passes");
    }
    bool fused = !opt->stop || strcmp(opt->stop, "opt") != 0;
    bool changed = true;
    for (int round = 0; changed && round < MAX_ROUNDS; round++) {
        changed = false;
        for (const NnPass *p = nn_passes; p->name; p++)
            if (p->stage == 'C' && !disabled(opt, p->name))
                g = run_one(g, p, opt, &changed);
    }
    if (!fused)
        return g;
    for (const NnPass *p = nn_passes; p->name; p++)
        if (p->stage == 'F' && !disabled(opt, p->name))
            g = run_one(g, p, opt, &changed);
    return g;
}

// ---- copies ----

static const char *dup(NnArena *a, const char *s) { return s ? nn_arena_strdup(a, s) : NULL; }

NnGraph *nn_graph_new_child(NnGraph *parent)
{
    NnGraph *b = nn_arena_alloc(parent->arena, sizeof *b);
    b->arena = parent->arena;
    for (int k = 0; k < parent->nsyms; k++)
        b->syms[k] = parent->syms[k];
    b->nsyms = parent->nsyms;
    return b;
}

void nn_graph_copy_into(NnGraph *dst, const NnGraph *src)
{
    NN_ASSERT(dst->count == 0 && dst->noutputs == 0 && dst->nupdates == 0);
    for (int k = dst->nsyms; k < src->nsyms; k++)
        dst->syms[k] = dup(dst->arena, src->syms[k]);
    dst->nsyms = src->nsyms;
    if (src->count) {
        dst->cap = src->count;
        dst->nodes = nn_arena_alloc(dst->arena, (size_t)src->count * sizeof(NnNode));
    }
    for (int i = 0; i < src->count; i++) {
        const NnNode *s = &src->nodes[i];
        NnNode *d = &dst->nodes[i];
        *d = *s;
        d->attr = nn_attr_copy(dst, s->op, &s->attr);
        if (s->nin) {
            d->in = nn_arena_alloc(dst->arena, (size_t)s->nin * sizeof(NnId));
            memcpy(d->in, s->in, (size_t)s->nin * sizeof(NnId));
        }
    }
    dst->count = src->count;
    for (int i = 0; i < src->noutputs; i++)
        nn_graph_add_output(dst, src->outputs[i].name, src->outputs[i].id);
    for (int i = 0; i < src->nupdates; i++)
        nn_graph_add_update(dst, src->updates[i].var, src->updates[i].value);
}

NnGraph *nn_graph_clone(const NnGraph *g)
{
    NnGraph *c = nn_graph_new();
    nn_graph_copy_into(c, g);
    return c;
}

// ---- rewriting ----

void nn_rewrite_begin(NnRewrite *rw, NnGraph *old)
{
    rw->old = old;
    rw->g = nn_graph_new();
    for (int k = 0; k < old->nsyms; k++)
        nn_sym_dim(rw->g, old->syms[k]);
    rw->map = nn_arena_alloc(rw->g->arena, (size_t)(old->count + 1) * sizeof(NnId));
    for (int i = 0; i < old->count; i++)
        rw->map[i] = -1;
    rw->changed = false;
}

NnId nn_rewrite_add(NnRewrite *rw, NnOp op, const NnId *in, int nin, const NnAttr *attr, NnLoc loc)
{
    NnId id = nn_ir_add(rw->g, op, in, nin, attr, loc);
    if (id < 0)
        fprintf(stderr, "internal error: rebuilding %s: %s\n", nn_op_name(op), rw->g->err);
    NN_ASSERT(id >= 0);
    return id;
}

NnId nn_rewrite_copy(NnRewrite *rw, NnId i)
{
    const NnNode *n = &rw->old->nodes[i];
    NnId in[16];
    NnId *ins = n->nin <= 16 ? in : nn_arena_alloc(rw->g->arena, (size_t)n->nin * sizeof(NnId));
    for (int k = 0; k < n->nin; k++) {
        ins[k] = rw->map[n->in[k]];
        NN_ASSERT(ins[k] >= 0);
    }
    NnAttr a = nn_attr_copy(rw->g, n->op, &n->attr);
    NnId id = nn_rewrite_add(rw, n->op, ins, n->nin, &a, n->loc);
    rw->map[i] = id;
    return id;
}

NnGraph *nn_rewrite_end(NnRewrite *rw)
{
    if (!rw->changed) {
        nn_graph_free(rw->g);
        rw->g = NULL;
        return rw->old;
    }
    const NnGraph *old = rw->old;
    for (int i = 0; i < old->noutputs; i++) {
        NN_ASSERT(rw->map[old->outputs[i].id] >= 0);
        nn_graph_add_output(rw->g, old->outputs[i].name, rw->map[old->outputs[i].id]);
    }
    for (int i = 0; i < old->nupdates; i++) {
        NnId var = rw->map[old->updates[i].var], value = rw->map[old->updates[i].value];
        NN_ASSERT(var >= 0 && value >= 0);
        nn_graph_add_update(rw->g, var, value);
    }
    return rw->g;
}

// ---- counting ----

int nn_fuse_count_kernels(const NnGraph *g)
{
    NnId *lead = malloc(((size_t)g->count + 1) * sizeof(NnId));
    NN_ASSERT(lead);
    nn_fuse_multi(g, lead);
    int n = 0;
    for (int i = 0; i < g->count; i++)
        n += !nn_op_has(g->nodes[i].op, NN_OPF_SOURCE) && nn_fuse_pool_host(g, i) < 0 &&
             (lead[i] < 0 || lead[i] == i);
    free(lead);
    return n;
}

int nn_graph_count_op(const NnGraph *g, NnOp op)
{
    int n = 0;
    for (int i = 0; i < g->count; i++)
        n += g->nodes[i].op == op;
    return n;
}
