// The interpreter backend: walks a graph in order and calls runtime kernels.
// prepare() only records the graph; run() binds symbolic dims from the inputs'
// shapes, finds (or builds) the Binding for those values (planned workspace,
// tensor headers, FUSED body frames, matmul scratch), points sources at the
// caller's data, runs every node through the interp_<name> table, returns
// outputs as views it owns and applies updates last, from pre-update values.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"

enum { MAX_BINDINGS = 8 };

typedef struct Binding {
    NnArena *arena;   // plans, headers and frames of this binding
    Frame top;
    void *pack;       // matmul scratch shared by all frames (nnrt_alloc)
    NnTensor *outs;   // g->noutputs headers handed to the caller
    void **outcopy;   // per output: own copy when the value lives outside ws
    void **snap;      // per update: snapshot when the value is a source node
    uint64_t used;    // run counter at last use, for eviction
} Binding;

struct NnExec {
    const NnGraph *g;
    NnExecOptions opt;
    NnrtPool own;     // when opt.threads != 0
    NnrtPool *pool;
    Binding *bind[MAX_BINDINGS];
    int nbind;
    uint64_t runs;
};

typedef NnStatus (*InterpFn)(Ictx *, const NnNode *, NnTensor *);
static const InterpFn table[NN_OP_COUNT] = {
#define NN_OP(tag, name, arity, flags) [NN_OP_##tag] = interp_##name,
#include "ops.def"
#undef NN_OP
};

static bool is_external(NnOp op)
{
    return op == NN_OP_INPUT || op == NN_OP_PARAM || op == NN_OP_STATE;
}

// "f32[32, 784]" for a runtime tensor.
static char *tensor_str(const NnTensor *t, char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n, "%s", nnrt_dtype_name(t->dtype));
    for (int i = 0; i < t->rank && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "[",
                                (long long)t->shape[i]);
    if (t->rank && len < n)
        snprintf(buf + len, n - len, "]");
    return buf;
}

// Matches tensor t against node n's type, binding unbound symbols (symv -1).
static bool match_type(const NnGraph *g, const NnNode *n, const NnTensor *t, int64_t *symv)
{
    if (t->dtype != n->dtype || t->rank != n->shape.rank)
        return false;
    for (int d = 0; d < t->rank; d++) {
        int64_t want = n->shape.dim[d];
        if (want >= 0 && want != t->shape[d])
            return false;
        if (want < 0) {
            int64_t *v = &symv[-want - 1];
            if (*v >= 0 && *v != t->shape[d])
                return false;
            *v = t->shape[d];
        }
    }
    return true;
}

static NnStatus mismatch(const NnGraph *g, const NnNode *n, const NnTensor *t, const char *what,
                         int k)
{
    char want[128], got[128];
    nn_type_str(g, n->dtype, &n->shape, want, sizeof want);
    tensor_str(t, got, sizeof got);
    if (n->attr.name)
        return nnrt_fail(NN_ERR_SHAPE, "%s '%s' expects %s, got %s", what, n->attr.name, want,
                         got);
    return nnrt_fail(NN_ERR_SHAPE, "%s #%d expects %s, got %s", what, k, want, got);
}

// Binds g's symbols from its INPUT nodes (ins[k] for the k-th), then from
// PARAM/STATE tensors in vars for symbols no input fixes.
static NnStatus bind_syms(const NnGraph *g, const NnTensor *const *ins, const NnVars *vars,
                          int64_t *symv)
{
    int k = 0;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op != NN_OP_INPUT)
            continue;
        if (!ins[k])
            return nnrt_fail(NN_ERR_SHAPE, "input #%d is missing", k);
        if (!match_type(g, n, ins[k], symv))
            return mismatch(g, n, ins[k], "input", k);
        k++;
    }
    for (NnId i = 0; vars && i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        const NnTensor *t = n->op == NN_OP_PARAM || n->op == NN_OP_STATE
                                ? nnrt_vars_get(vars, n->attr.name ? n->attr.name : "")
                                : NULL;
        int64_t save[NN_MAX_SYMS];
        memcpy(save, symv, sizeof save);
        if (t && !match_type(g, n, t, symv))
            memcpy(symv, save, sizeof save); // reported with the var check later
    }
    for (int s = 0; s < g->nsyms; s++)
        if (symv[s] < 0)
            return nnrt_fail(NN_ERR_SHAPE, "dimension '%s' is not fixed by any input", g->syms[s]);
    return NN_OK;
}

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
    NnStatus st = bind_syms(body, ins, NULL, symv);
    if (st != NN_OK)
        return nnrt_fail(st, "fused body: %s", nnrt_errmsg());
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
            size_t ps = nnrt_matmul_pack_size(n->dtype, t->shape[1],
                                              f->vals[n->in[1]].shape[n->attr.tb ? 1 : 0]);
            *packmax = ps > *packmax ? ps : *packmax;
        }
        if (n->op == NN_OP_FUSED) {
            f->sub[i] = nn_arena_alloc(a, sizeof(Frame));
            NnStatus st = body_frame(f, n, f->sub[i], a, packmax);
            if (st != NN_OK)
                return st;
            // The body computes its result straight into this node's buffer.
            const NnGraph *body = n->attr.body;
            NnId out = body->outputs[0].id;
            if (!is_external(body->nodes[out].op) && t->data)
                f->sub[i]->vals[out].data = t->data;
        } else if (!is_external(n->op) && !t->data) {
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
    for (int k = 0; b->outcopy && k < g->noutputs; k++)
        nnrt_free(b->outcopy[k]);
    for (int k = 0; b->snap && k < g->nupdates; k++)
        nnrt_free(b->snap[k]);
    nn_arena_free(b->arena);
}

// Per-output and per-update buffers for values that live outside the workspace.
static NnStatus side_buffers(const NnGraph *g, Binding *b)
{
    Frame *f = &b->top;
    b->outs = nn_arena_alloc(b->arena, ((size_t)g->noutputs + 1) * sizeof(NnTensor));
    b->outcopy = nn_arena_alloc(b->arena, ((size_t)g->noutputs + 1) * sizeof(void *));
    b->snap = nn_arena_alloc(b->arena, ((size_t)g->nupdates + 1) * sizeof(void *));
    for (int k = 0; k < g->noutputs; k++) {
        NnId id = g->outputs[k].id;
        b->outs[k] = f->vals[id];
        if (is_external(g->nodes[id].op)) {
            b->outcopy[k] = nnrt_alloc(nnrt_tensor_nbytes(&f->vals[id]));
            if (!b->outcopy[k])
                return NN_ERR_NOMEM;
            b->outs[k].data = b->outcopy[k];
        }
    }
    for (int k = 0; k < g->nupdates; k++) {
        NnId v = g->updates[k].value;
        if (!is_external(g->nodes[v].op))
            continue;
        if (!(b->snap[k] = nnrt_alloc(nnrt_tensor_nbytes(&f->vals[v]))))
            return NN_ERR_NOMEM;
    }
    return NN_OK;
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
    if (st == NN_OK)
        st = side_buffers(g, b);
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
        if (is_external(n->op))
            continue;
        NnStatus st = table[n->op](c, n, &c->f->vals[i]);
        if (st != NN_OK)
            return st;
    }
    return NN_OK;
}

static NnExec *interp_prepare(const NnGraph *g, const NnExecOptions *opt)
{
    NnExec *x = calloc(1, sizeof *x);
    if (!x) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    x->g = g;
    if (opt)
        x->opt = *opt;
    x->pool = nnrt_pool_default();
    if (x->opt.threads > 0 && x->opt.threads != nnrt_pool_size(x->pool)) {
        if (nnrt_pool_init(&x->own, x->opt.threads) != NN_OK) {
            free(x);
            return NULL;
        }
        x->pool = &x->own;
    }
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if ((n->op == NN_OP_PARAM || n->op == NN_OP_STATE) && !n->attr.name) {
            nnrt_fail(NN_ERR_RUNTIME, "%s node %d has no name", nn_op_name(n->op), i);
            if (x->pool == &x->own)
                nnrt_pool_fini(&x->own);
            free(x);
            return NULL;
        }
    }
    return x;
}

static void interp_free(NnExec *x)
{
    if (!x)
        return;
    for (int k = 0; k < x->nbind; k++) {
        binding_free(x->g, x->bind[k]);
        free(x->bind[k]);
    }
    if (x->pool == &x->own)
        nnrt_pool_fini(&x->own);
    free(x);
}

// The binding for symv, built on first use; the least recently used one goes
// when the cache is full.
static Binding *get_binding(NnExec *x, const int64_t *symv)
{
    int ns = x->g->nsyms;
    for (int k = 0; k < x->nbind; k++)
        if (memcmp(x->bind[k]->top.symv, symv, (size_t)ns * sizeof *symv) == 0)
            return x->bind[k];
    Binding *b = binding_new(x->g, symv);
    if (!b)
        return NULL;
    if (x->nbind == MAX_BINDINGS) {
        int old = 0;
        for (int k = 1; k < x->nbind; k++)
            if (x->bind[k]->used < x->bind[old]->used)
                old = k;
        binding_free(x->g, x->bind[old]);
        free(x->bind[old]);
        x->bind[old] = x->bind[--x->nbind];
    }
    if (x->opt.verbose)
        fprintf(stderr, "interp: new binding, workspace %lld bytes\n",
                (long long)b->top.plan->workspace);
    x->bind[x->nbind++] = b;
    return b;
}

// Points INPUT/PARAM/STATE headers at the caller's tensors, checking vars.
static NnStatus attach_sources(const NnGraph *g, Frame *f, NnVars *vars,
                               NnTensor *const *inputs)
{
    int k = 0;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op == NN_OP_INPUT) {
            f->vals[i].data = inputs[k++]->data;
            continue;
        }
        if (n->op != NN_OP_PARAM && n->op != NN_OP_STATE)
            continue;
        const char *what = n->op == NN_OP_PARAM ? "parameter" : "state";
        NnTensor *t = vars ? nnrt_vars_get(vars, n->attr.name) : NULL;
        if (!t)
            return nnrt_fail(NN_ERR_SHAPE, "%s '%s' is missing", what, n->attr.name);
        if (t->dtype != f->vals[i].dtype || !nnrt_tensor_same_shape(t, &f->vals[i]))
            return mismatch(g, n, t, what, 0);
        f->vals[i].data = t->data;
    }
    return NN_OK;
}

static void copy_bytes(void *dst, const void *src, size_t n)
{
    if (n && dst != src)
        memcpy(dst, src, n);
}

// Updates read pre-update values: snapshot those that are sources, then copy.
static void apply_updates(const NnGraph *g, Binding *b)
{
    Frame *f = &b->top;
    for (int k = 0; k < g->nupdates; k++)
        if (b->snap[k]) {
            const NnTensor *v = &f->vals[g->updates[k].value];
            copy_bytes(b->snap[k], v->data, nnrt_tensor_nbytes(v));
        }
    for (int k = 0; k < g->nupdates; k++) {
        NnTensor *var = &f->vals[g->updates[k].var];
        const NnTensor *v = &f->vals[g->updates[k].value];
        copy_bytes(var->data, b->snap[k] ? b->snap[k] : v->data, nnrt_tensor_nbytes(var));
    }
}

static NnStatus interp_run(NnExec *x, NnVars *vars, NnTensor *const *inputs, NnTensor **outputs)
{
    const NnGraph *g = x->g;
    for (int k = 0; k < g->noutputs; k++)
        outputs[k] = NULL;
    int64_t symv[NN_MAX_SYMS];
    for (int s = 0; s < NN_MAX_SYMS; s++)
        symv[s] = -1;
    NnStatus st = bind_syms(g, (const NnTensor *const *)inputs, vars, symv);
    if (st != NN_OK)
        return st;
    Binding *b = get_binding(x, symv);
    if (!b)
        return NN_ERR_NOMEM;
    b->used = ++x->runs;
    if ((st = attach_sources(g, &b->top, vars, inputs)) != NN_OK)
        return st;
    for (int k = 0; k < g->nupdates; k++) {
        const NnTensor *var = &b->top.vals[g->updates[k].var];
        const NnTensor *v = &b->top.vals[g->updates[k].value];
        if (var->dtype != v->dtype || !nnrt_tensor_same_shape(var, v))
            return nnrt_fail(NN_ERR_SHAPE, "update of '%s' has the wrong type",
                             g->nodes[g->updates[k].var].attr.name);
    }
    Ictx c = {.pool = x->pool, .f = &b->top, .pack = b->pack};
    if ((st = nn_interp_run_frame(&c)) != NN_OK)
        return st;
    for (int k = 0; k < g->noutputs; k++) {
        if (b->outcopy[k])
            copy_bytes(b->outcopy[k], b->top.vals[g->outputs[k].id].data,
                       nnrt_tensor_nbytes(&b->outs[k]));
        outputs[k] = &b->outs[k];
    }
    apply_updates(g, b);
    return NN_OK;
}

const NnBackend nn_backend_interp = {
    .name = "interp",
    .prepare = interp_prepare,
    .run = interp_run,
    .free = interp_free,
};
