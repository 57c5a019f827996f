// What both backends do the same way around a run (see common.h): setting up
// an executable and caching its bindings; symbol binding and the type checks
// on the caller's tensors, with their messages; output headers and update
// snapshots per binding; returning outputs and applying updates. A backend's
// buffers are reached only through NnBackendView, so the same code serves the
// interpreter's tensor headers and the JIT's bufs[].
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- symbols and the caller's tensors ----

bool nn_backend_is_source(NnOp op)
{
    return op == NN_OP_INPUT || op == NN_OP_PARAM || op == NN_OP_STATE;
}

// "f32[32, 784]" for a runtime tensor.
static char *tensor_str(const NnTensor *t, char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n, "%s", nnrt_dtype_name(t->dtype));
    for (int i = 0; i < t->rank && len < n; i++)
        len +=
            (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "[", (long long)t->shape[i]);
    if (t->rank && len < n)
        snprintf(buf + len, n - len, "]");
    return buf;
}

// Matches tensor t against node n's type, binding unbound symbols (symv -1).
static bool match_type(const NnNode *n, const NnTensor *t, int64_t *symv)
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

// NN_ERR_SHAPE: "<what> '<name>' expects <type>, got <type>" ("<what> #k" for
// an unnamed node).
static NnStatus mismatch(const NnGraph *g, const NnNode *n, const NnTensor *t, const char *what,
                         int k)
{
    char want[128], got[128];
    nn_type_str(g, n->dtype, &n->shape, want, sizeof want);
    tensor_str(t, got, sizeof got);
    if (n->attr.name)
        return nnrt_fail(NN_ERR_SHAPE, "%s '%s' expects %s, got %s", what, n->attr.name, want, got);
    return nnrt_fail(NN_ERR_SHAPE, "%s #%d expects %s, got %s", what, k, want, got);
}

NnStatus nn_backend_bind_syms(const NnGraph *g, const NnTensor *const *ins, const NnVars *vars,
                              int64_t *symv)
{
    int k = 0;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op != NN_OP_INPUT)
            continue;
        if (!ins[k])
            return nnrt_fail(NN_ERR_SHAPE, "input #%d is missing", k);
        if (!match_type(n, ins[k], symv))
            return mismatch(g, n, ins[k], "input", k);
        k++;
    }
    // Variables bind only what no input does (usually nothing: skip their lookups).
    bool bound = true;
    for (int s = 0; s < g->nsyms; s++)
        bound = bound && symv[s] >= 0;
    for (NnId i = 0; vars && !bound && i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        const NnTensor *t = n->op == NN_OP_PARAM || n->op == NN_OP_STATE
                                ? nnrt_vars_get(vars, n->attr.name ? n->attr.name : "")
                                : NULL;
        int64_t save[NN_MAX_SYMS];
        memcpy(save, symv, sizeof save);
        if (t && !match_type(n, t, symv))
            memcpy(symv, save, sizeof save); // reported by attach() later
    }
    for (int s = 0; s < g->nsyms; s++)
        if (symv[s] < 0)
            return nnrt_fail(NN_ERR_SHAPE, "dimension '%s' is not fixed by any input", g->syms[s]);
    return NN_OK;
}

// Node id's header in v's binding (shape bound to v->symv, data where v keeps it).
static NnTensor header(const NnBackendView *v, NnId id)
{
    const NnNode *n = &v->g->nodes[id];
    NnTensor t = {.dtype = n->dtype, .rank = n->shape.rank, .numel = 1};
    nn_shape_bind(&n->shape, v->symv, t.shape);
    for (int d = 0; d < t.rank; d++)
        t.numel *= t.shape[d];
    t.data = *v->ptr(v->ctx, id);
    return t;
}

static size_t node_bytes(const NnBackendView *v, NnId id)
{
    NnTensor t = header(v, id);
    return nnrt_tensor_nbytes(&t);
}

NnStatus nn_backend_side_init(NnBackendSide *s, const NnBackendView *v)
{
    const NnGraph *g = v->g;
    s->outs = calloc((size_t)g->noutputs + 1, sizeof(NnTensor));
    s->outcopy = calloc((size_t)g->noutputs + 1, sizeof(void *));
    s->snap = calloc((size_t)g->nupdates + 1, sizeof(void *));
    if (!s->outs || !s->outcopy || !s->snap)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    for (int k = 0; k < g->noutputs; k++) {
        NnId id = g->outputs[k].id;
        s->outs[k] = header(v, id);
        if (nn_backend_is_source(g->nodes[id].op)) {
            if (!(s->outcopy[k] = nnrt_alloc(nnrt_tensor_nbytes(&s->outs[k]))))
                return NN_ERR_NOMEM;
            s->outs[k].data = s->outcopy[k];
        }
    }
    for (int k = 0; k < g->nupdates; k++) {
        NnId val = g->updates[k].value;
        if (nn_backend_is_source(g->nodes[val].op) &&
            !(s->snap[k] = nnrt_alloc(node_bytes(v, val))))
            return NN_ERR_NOMEM;
    }
    return NN_OK;
}

void nn_backend_side_fini(NnBackendSide *s, const NnGraph *g)
{
    for (int k = 0; s->outcopy && k < g->noutputs; k++)
        nnrt_free(s->outcopy[k]);
    for (int k = 0; s->snap && k < g->nupdates; k++)
        nnrt_free(s->snap[k]);
    free(s->outs);
    free(s->outcopy);
    free(s->snap);
    *s = (NnBackendSide){0};
}

// The PARAM/STATE tensor of node n, checked against n's type bound to v->symv.
static NnStatus find_var(const NnBackendView *v, const NnNode *n, NnVars *vars, NnTensor **out)
{
    const char *what = n->op == NN_OP_PARAM ? "parameter" : "state";
    NnTensor *t = vars ? nnrt_vars_get(vars, n->attr.name) : NULL;
    if (!t)
        return nnrt_fail(NN_ERR_SHAPE, "%s '%s' is missing", what, n->attr.name);
    NnTensor want = header(v, (NnId)(n - v->g->nodes));
    if (t->dtype != want.dtype || !nnrt_tensor_same_shape(t, &want))
        return mismatch(v->g, n, t, what, 0);
    *out = t;
    return NN_OK;
}

// Whether t has node n's type with its symbols bound to symv (no message).
static bool has_type(const NnNode *n, const NnTensor *t, const int64_t *symv)
{
    if (t->dtype != n->dtype || t->rank != n->shape.rank)
        return false;
    for (int d = 0; d < t->rank; d++) {
        int64_t want = n->shape.dim[d];
        if (t->shape[d] != (want >= 0 ? want : symv[-want - 1]))
            return false;
    }
    return true;
}

// Points sources at the caller's tensors, checking vars and updates (see
// nn_backend_begin). Variables come from e's cache while vars keeps its stamp
// (a name lookup per variable per step is most of a tiny step's time); their
// types are checked every time. Update types depend on the binding alone, so
// each binding checks them once.
static NnStatus attach(NnBackendExec *e, int bk, const NnBackendView *v, NnVars *vars,
                       NnTensor *const *inputs)
{
    const NnGraph *g = v->g;
    if (e->ncvar != g->count) {
        free(e->cvar);
        e->cvars = NULL;
        e->ncvar = (e->cvar = calloc((size_t)g->count + 1, sizeof *e->cvar)) ? g->count : 0;
    }
    bool cached = vars && vars->gen && e->cvars == vars && e->cgen == vars->gen && e->cvar;
    e->cvars = NULL; // until every variable below is found
    int k = 0;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        NnTensor *t = NULL;
        if (n->op == NN_OP_INPUT) {
            t = inputs[k++];
        } else if (n->op == NN_OP_PARAM || n->op == NN_OP_STATE) {
            if (!cached || !(t = e->cvar[i]) || !has_type(n, t, v->symv)) {
                NnStatus st = find_var(v, n, vars, &t);
                if (st != NN_OK)
                    return st;
                if (e->cvar)
                    e->cvar[i] = t;
            }
        } else {
            continue;
        }
        void **slot = v->ptr(v->ctx, i);
        if (*slot != t->data) // unchanged, the slot's line stays in the pool workers' caches
            *slot = t->data;
    }
    if (vars && e->cvar) {
        e->cvars = vars;
        e->cgen = vars->gen;
    }
    if (e->updates_ok[bk])
        return NN_OK;
    for (int u = 0; u < g->nupdates; u++) {
        NnTensor var = header(v, g->updates[u].var), val = header(v, g->updates[u].value);
        if (var.dtype != val.dtype || !nnrt_tensor_same_shape(&var, &val))
            return nnrt_fail(NN_ERR_SHAPE, "update of '%s' has the wrong type",
                             g->nodes[g->updates[u].var].attr.name);
    }
    e->updates_ok[bk] = true;
    return NN_OK;
}

// ---- the executable and its bindings ----

NnExec *nn_backend_exec_new(size_t size, const NnGraph *g, const NnExecOptions *opt,
                            const NnBackendOps *ops)
{
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if ((n->op == NN_OP_PARAM || n->op == NN_OP_STATE) && !n->attr.name) {
            nnrt_fail(NN_ERR_RUNTIME, "%s node %d has no name", nn_op_name(n->op), i);
            return NULL;
        }
    }
    NnBackendExec *e = calloc(1, size);
    if (!e) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    e->g = g;
    e->ops = ops;
    if (opt)
        e->opt = *opt;
    e->pool = nnrt_pool_default();
    if (e->opt.threads > 0 && e->opt.threads != nnrt_pool_size(e->pool)) {
        if (nnrt_pool_init(&e->own, e->opt.threads) != NN_OK) {
            free(e);
            return NULL;
        }
        e->pool = &e->own;
    }
    return (NnExec *)e;
}

void nn_backend_exec_clear(NnExec *x)
{
    NnBackendExec *e = (NnBackendExec *)x;
    for (int k = 0; k < e->nbind; k++)
        e->ops->drop(x, e->bind[k]);
    e->nbind = 0;
}

void nn_backend_exec_free(NnExec *x)
{
    if (!x)
        return;
    NnBackendExec *e = (NnBackendExec *)x;
    nn_backend_exec_clear(x);
    if (e->pool == &e->own)
        nnrt_pool_fini(&e->own);
    free(e->cvar);
    free(e);
}

// The binding for symv, made on first use; the least recently used one goes
// when the cache is full.
static NnStatus get_binding(NnExec *x, const int64_t *symv, void **bind, int *index)
{
    NnBackendExec *e = (NnBackendExec *)x;
    size_t keylen = (size_t)e->g->nsyms * sizeof *symv;
    int k = 0;
    while (k < e->nbind && memcmp(e->symv[k], symv, keylen) != 0)
        k++;
    if (k == e->nbind) {
        void *b = NULL;
        NnStatus st = e->ops->make(x, symv, &b);
        if (st != NN_OK)
            return st;
        if (e->nbind == NN_BACKEND_MAX_BINDINGS) {
            int old = 0;
            for (int j = 1; j < e->nbind; j++)
                if (e->used[j] < e->used[old])
                    old = j;
            e->ops->drop(x, e->bind[old]);
            int last = --e->nbind;
            e->bind[old] = e->bind[last];
            e->used[old] = e->used[last];
            e->updates_ok[old] = e->updates_ok[last];
            memcpy(e->symv[old], e->symv[last], sizeof e->symv[last]);
        }
        k = e->nbind++;
        e->bind[k] = b;
        e->updates_ok[k] = false;
        memcpy(e->symv[k], symv, sizeof e->symv[k]);
    }
    e->used[k] = ++e->runs;
    *bind = e->bind[k];
    *index = k;
    return NN_OK;
}

NnStatus nn_backend_begin(NnExec *x, NnVars *vars, NnTensor *const *inputs, NnTensor **outputs,
                          void **bind, NnBackendView *v)
{
    NnBackendExec *e = (NnBackendExec *)x;
    for (int k = 0; k < e->g->noutputs; k++)
        outputs[k] = NULL;
    int64_t symv[NN_MAX_SYMS];
    for (int s = 0; s < NN_MAX_SYMS; s++)
        symv[s] = -1;
    NnStatus st = nn_backend_bind_syms(e->g, (const NnTensor *const *)inputs, vars, symv);
    int k = 0;
    if (st == NN_OK)
        st = get_binding(x, symv, bind, &k);
    if (st != NN_OK)
        return st;
    *v = e->ops->view(x, *bind);
    return attach(e, k, v, vars, inputs);
}

// ---- after a run ----

static void copy_bytes(void *dst, const void *src, size_t n)
{
    if (n && dst != src)
        memcpy(dst, src, n);
}

void nn_backend_finish(const NnBackendView *v, const NnBackendSide *s, NnTensor **outputs)
{
    const NnGraph *g = v->g;
    for (int k = 0; k < g->noutputs; k++) {
        if (s->outcopy[k])
            copy_bytes(s->outcopy[k], *v->ptr(v->ctx, g->outputs[k].id),
                       nnrt_tensor_nbytes(&s->outs[k]));
        outputs[k] = &s->outs[k];
    }
    // Updates read pre-update values: snapshot those that are sources, then copy.
    for (int k = 0; k < g->nupdates; k++)
        if (s->snap[k])
            copy_bytes(s->snap[k], *v->ptr(v->ctx, g->updates[k].value),
                       node_bytes(v, g->updates[k].value));
    for (int k = 0; k < g->nupdates; k++) {
        NnId var = g->updates[k].var, val = g->updates[k].value;
        void *src = s->snap[k] ? s->snap[k] : *v->ptr(v->ctx, val);
        copy_bytes(*v->ptr(v->ctx, var), src, node_bytes(v, var));
    }
}
