// The interpreter backend: walks a graph in order and calls runtime kernels.
// prepare() only records the graph; run() binds symbolic dims from the inputs'
// shapes, finds (or builds) the Binding for those values (planned workspace,
// tensor headers, FUSED and LOOP body frames, matmul scratch), points sources at the
// caller's data, runs every node through the interp_<name> table, returns
// outputs as views it owns and applies updates last, from pre-update values.
// The steps the JIT takes the same way (setup, the binding cache, symbol
// binding, checks on the caller's tensors with their messages, outputs,
// updates) live in backend/common.c.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "interp.h"

typedef struct Binding {
    NnArena *arena;     // plans, headers and frames of this binding
    Frame top;
    void *pack;         // matmul scratch shared by all frames (nnrt_alloc)
    NnBackendSide side; // output headers, their copies, update snapshots
} Binding;

struct NnExec {
    NnBackendExec base; // graph, options, pool, cache of Binding
};

typedef NnStatus (*InterpFn)(Ictx *, const NnNode *, NnTensor *);
static const InterpFn table[NN_OP_COUNT] = {
#define NN_OP(tag, name, arity, flags, attrs) [NN_OP_##tag] = interp_##name,
#include "ops.def"
#undef NN_OP
};

static void frame_fini(Frame *f)
{
    if (!f->g)
        return;
    for (NnId i = 0; i < f->g->count; i++)
        if (f->sub[i])
            frame_fini(f->sub[i]);
    nnrt_free(f->ws);
    f->ws = NULL;
}

static NnStatus frame_init(Frame *f, const NnGraph *g, const int64_t *symv, NnArena *a,
                           size_t *packmax);

// A FUSED body's symbols: same-named symbols of the parent first, then its inputs.
static NnStatus body_frame(Frame *parent, const NnNode *n, Frame *sub, NnArena *a,
                           size_t *packmax)
{
    const NnGraph *body = n->attr.body, *g = parent->g;
    int64_t symv[NN_MAX_SYMS];
    for (int s = 0; s < NN_MAX_SYMS; s++)
        symv[s] = -1;
    for (int s = 0; s < body->nsyms; s++)
        for (int t = 0; t < g->nsyms; t++)
            if (strcmp(body->syms[s], g->syms[t]) == 0)
                symv[s] = parent->symv[t];
    const NnTensor **ins = nn_arena_alloc(a, ((size_t)n->nin + 1) * sizeof *ins);
    for (int k = 0; k < n->nin; k++)
        ins[k] = &parent->vals[n->in[k]];
    NnStatus st = nn_backend_bind_syms(body, ins, NULL, symv);
    if (st != NN_OK)
        return nnrt_fail(st, "fused body: %s", nnrt_errmsg());
    return frame_init(sub, body, symv, a, packmax);
}

// A LOOP body has its graph's symbols (ir/loop.h), so it binds the same way.
static NnStatus loop_frame(Frame *parent, const NnNode *n, Frame *sub, NnArena *a,
                           size_t *packmax)
{
    const NnGraph *body = n->attr.body, *g = parent->g;
    int64_t symv[NN_MAX_SYMS];
    for (int s = 0; s < NN_MAX_SYMS; s++)
        symv[s] = -1;
    for (int s = 0; s < body->nsyms; s++)
        for (int t = 0; t < g->nsyms; t++)
            if (strcmp(body->syms[s], g->syms[t]) == 0)
                symv[s] = parent->symv[t];
    return frame_init(sub, body, symv, a, packmax);
}

static NnStatus frame_init(Frame *f, const NnGraph *g, const int64_t *symv, NnArena *a,
                           size_t *packmax)
{
    f->g = g;
    memcpy(f->symv, symv, sizeof f->symv);
    NnPlanOptions po = {.const_buffers = true};
    f->plan = nn_plan_build_ex(g, symv, a, &po);
    f->vals = nn_arena_alloc(a, ((size_t)g->count + 1) * sizeof(NnTensor));
    f->sub = nn_arena_alloc(a, ((size_t)g->count + 1) * sizeof(Frame *));
    if (f->plan->workspace > 0 && !(f->ws = nnrt_alloc((size_t)f->plan->workspace)))
        return NN_ERR_NOMEM;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        NnTensor *t = &f->vals[i];
        t->dtype = n->dtype;
        t->rank = n->shape.rank;
        nn_shape_bind(&n->shape, symv, t->shape);
        t->numel = 1;
        for (int d = 0; d < t->rank; d++)
            t->numel *= t->shape[d];
        int64_t off = f->plan->slots[i].offset;
        t->data = off >= 0 ? f->ws + off : NULL;
        if (n->op == NN_OP_MATMUL) {
            const NnTensor *x = &f->vals[n->in[0]], *y = &f->vals[n->in[1]];
            int64_t m, nn, k;
            nn_matmul_dims(x->shape, x->rank, y->shape, y->rank, n->attr.ta, n->attr.tb, &m,
                           &nn, &k);
            size_t ps = nnrt_matmul_pack_size(n->dtype, nn, k);
            *packmax = ps > *packmax ? ps : *packmax;
        }
        size_t cs = interp_conv_scratch(f, n, t);
        *packmax = cs > *packmax ? cs : *packmax;
        if (n->op == NN_OP_FUSED) {
            f->sub[i] = nn_arena_alloc(a, sizeof(Frame));
            NnStatus st = body_frame(f, n, f->sub[i], a, packmax);
            if (st != NN_OK)
                return st;
            // The body computes its result straight into this node's buffer.
            const NnGraph *body = n->attr.body;
            NnId out = body->outputs[0].id;
            if (!nn_backend_is_source(body->nodes[out].op) && t->data)
                f->sub[i]->vals[out].data = t->data;
        } else if (n->op == NN_OP_LOOP) {
            f->sub[i] = nn_arena_alloc(a, sizeof(Frame));
            NnStatus st = loop_frame(f, n, f->sub[i], a, packmax);
            if (st != NN_OK)
                return st;
            if (!t->data)
                return nnrt_fail(NN_ERR_RUNTIME, "internal: loop %d has no buffer", i);
        } else if (!nn_backend_is_source(n->op) && !t->data) {
            return nnrt_fail(NN_ERR_RUNTIME, "internal: node %d has no buffer", i);
        }
    }
    return NN_OK;
}

static void binding_free(const NnGraph *g, Binding *b)
{
    if (!b)
        return;
    frame_fini(&b->top);
    nnrt_free(b->pack);
    nn_backend_side_fini(&b->side, g);
    nn_arena_free(b->arena);
}

static void **frame_ptr(void *ctx, NnId id) { return &((Frame *)ctx)->vals[id].data; }

// The top frame of binding b as the shared code in backend/common.c sees it
// (x is not needed: a frame knows its graph).
static NnBackendView view(NnExec *x, void *b)
{
    (void)x;
    Frame *top = &((Binding *)b)->top;
    return (NnBackendView){.g = top->g, .symv = top->symv, .ptr = frame_ptr, .ctx = top};
}

static Binding *binding_new(const NnGraph *g, const int64_t *symv)
{
    Binding *b = calloc(1, sizeof *b);
    if (!b) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    b->arena = nn_arena_new();
    size_t packmax = 0;
    NnStatus st = frame_init(&b->top, g, symv, b->arena, &packmax);
    if (st == NN_OK && packmax && !(b->pack = nnrt_alloc(packmax)))
        st = NN_ERR_NOMEM;
    if (st == NN_OK) {
        NnBackendView v = view(NULL, b);
        st = nn_backend_side_init(&b->side, &v);
    }
    if (st != NN_OK) {
        binding_free(g, b);
        free(b);
        return NULL;
    }
    return b;
}

NnStatus nn_interp_run_frame(Ictx *c)
{
    const NnGraph *g = c->f->g;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (nn_backend_is_source(n->op))
            continue;
        NnStatus st = table[n->op](c, n, &c->f->vals[i]);
        if (st != NN_OK)
            return st;
    }
    return NN_OK;
}

static NnStatus make_binding(NnExec *x, const int64_t *symv, void **bind)
{
    Binding *b = binding_new(x->base.g, symv);
    if (!b)
        return NN_ERR_NOMEM;
    if (x->base.opt.verbose)
        fprintf(stderr, "interp: new binding, workspace %lld bytes\n",
                (long long)b->top.plan->workspace);
    *bind = b;
    return NN_OK;
}

static void drop_binding(NnExec *x, void *b)
{
    binding_free(x->base.g, b);
    free(b);
}

static const NnBackendOps interp_ops = {make_binding, drop_binding, view};

static NnExec *interp_prepare(const NnGraph *g, const NnExecOptions *opt)
{
    return nn_backend_exec_new(sizeof(NnExec), g, opt, &interp_ops);
}

static NnStatus interp_run(NnExec *x, NnVars *vars, NnTensor *const *inputs, NnTensor **outputs)
{
    void *bind;
    NnBackendView v;
    NnStatus st = nn_backend_begin(x, vars, inputs, outputs, &bind, &v);
    if (st != NN_OK)
        return st;
    Binding *b = bind;
    Ictx c = {.pool = x->base.pool, .f = &b->top, .pack = b->pack};
    if ((st = nn_interp_run_frame(&c)) != NN_OK)
        return st;
    nn_backend_finish(&v, &b->side, outputs);
    return NN_OK;
}

const NnBackend nn_backend_interp = {
    .name = "interp",
    .prepare = interp_prepare,
    .run = interp_run,
    .free = nn_backend_exec_free,
};
