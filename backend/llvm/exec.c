// The JIT backend (nn_backend_jit). prepare() fuses a copy of the graph with
// the pass pipeline (unless it is fused already) and starts an LLJIT session;
// run() binds symbolic dims from the inputs exactly like the interpreter (same
// messages), compiles one module per binding (cached; the least recently used
// is dropped past MAX_BINDINGS), points bufs[] at the planned workspace and the
// caller's tensors, calls the generated step, reports bad labels, returns
// outputs as views it owns and applies updates last, from pre-update values.
// NN_JIT_NOFUSE=1 compiles the graph unfused; NN_JIT_PROFILE=1 times each kernel.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn_llvm.h"
#include "pass.h"
#include "plan.h"
#include "pool.h"

enum { MAX_BINDINGS = 8 };

// NN_JIT_PROFILE=1: kernels run one by one from C, timed; totals print at free.
typedef struct KProf {
    char name[48];
    NnrtTask fn;
    bool par;
    double ms;
} KProf;

typedef struct JBind {
    KProf *prof; // per kernel when profiling, else NULL
    int64_t runs;
    int64_t symv[NN_MAX_SYMS];
    void (*step)(void *pool, void **bufs);
    void *tracker;  // the binding's code in the JIT
    NnArena *arena; // plan
    NnPlan *plan;
    void **bufs; // nslots pointers: node values, then scratch slots
    int nslots;
    char *ws;      // workspace (plan)
    void *scratch; // shared by all matmul packing slots
    int64_t *err;  // per TAKE/ONEHOT node: first bad row or -1
    NnId *err_node;
    int nerr, nkernels;
    NnTensor *outs; // output headers handed to the caller
    void **outcopy; // per output: own copy when the value is a source
    void **snap;    // per update: snapshot when the value is a source
    uint64_t used;
} JBind;

struct NnExec {
    const NnGraph *user; // as given to prepare
    NnGraph *g;          // what is compiled: user, or a fused copy we own
    NnExecOptions opt;
    NnrtPool own, *pool;
    NnLlvmJit *jit;
    JBind *bind[MAX_BINDINGS];
    int nbind, serial, last_kernels;
    uint64_t runs;
};

static bool is_external(NnOp op)
{
    return op == NN_OP_INPUT || op == NN_OP_PARAM || op == NN_OP_STATE;
}

// ---- symbol binding, as in backend/interp/interp.c ----

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

static NnStatus bind_syms(const NnGraph *g, NnTensor *const *ins, const NnVars *vars, int64_t *symv)
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
    for (NnId i = 0; vars && i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        const NnTensor *t = n->op == NN_OP_PARAM || n->op == NN_OP_STATE
                                ? nnrt_vars_get(vars, n->attr.name ? n->attr.name : "")
                                : NULL;
        int64_t save[NN_MAX_SYMS];
        memcpy(save, symv, sizeof save);
        if (t && !match_type(n, t, symv))
            memcpy(symv, save, sizeof save); // reported with the var check later
    }
    for (int s = 0; s < g->nsyms; s++)
        if (symv[s] < 0)
            return nnrt_fail(NN_ERR_SHAPE, "dimension '%s' is not fixed by any input", g->syms[s]);
    return NN_OK;
}

// ---- bindings ----

static void bind_free(NnExec *x, JBind *b)
{
    if (!b)
        return;
    for (int k = 0; b->prof && k < b->nkernels; k++)
        fprintf(stderr, "jit profile: %-28s %s %9.3f ms/run\n", b->prof[k].name,
                b->prof[k].par ? "par" : "ser", b->prof[k].ms / (double)(b->runs ? b->runs : 1));
    free(b->prof);
    nn_llvm_jit_remove(x->jit, b->tracker);
    nnrt_free(b->ws);
    nnrt_free(b->scratch);
    nnrt_free(b->err);
    for (int k = 0; b->outcopy && k < x->g->noutputs; k++)
        nnrt_free(b->outcopy[k]);
    for (int k = 0; b->snap && k < x->g->nupdates; k++)
        nnrt_free(b->snap[k]);
    free(b->bufs);
    free(b->err_node);
    free(b->outs);
    free(b->outcopy);
    free(b->snap);
    if (b->arena)
        nn_arena_free(b->arena);
    free(b);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

// Lowers, optimizes and links the module; fills the slot layout of b.
static NnStatus compile(NnExec *x, JBind *b)
{
    char prefix[24], name[48];
    double t0 = now_ms();
    snprintf(prefix, sizeof prefix, "b%d_", x->serial++);
    NnCg cg;
    nn_cg_init(&cg, nn_llvm_jit_context(x->jit), x->g, b->symv, prefix);
    if (!nn_cg_lower_graph(&cg)) {
        LLVMDisposeModule(cg.mod);
        nn_cg_fini(&cg);
        return NN_ERR_RUNTIME;
    }
    if (getenv("NN_JIT_PROFILE")) {
        b->prof = calloc((size_t)cg.nkernels + 1, sizeof(KProf));
        for (int k = 0; b->prof && k < cg.nkernels; k++) {
            snprintf(b->prof[k].name, sizeof b->prof[k].name, "%s", cg.kernels[k].name);
            b->prof[k].par = cg.kernels[k].work >= NN_PAR_WORK;
        }
    }
    b->nslots = cg.nslots;
    b->nkernels = cg.nkernels;
    b->nerr = cg.nerr;
    b->bufs = calloc((size_t)cg.nslots + 1, sizeof(void *));
    b->err_node = calloc((size_t)cg.nerr + 1, sizeof(NnId));
    int64_t scratch = 0;
    for (int s = x->g->count; s < cg.nslots; s++)
        if (s != cg.err_slot && cg.slot_bytes[s] > scratch)
            scratch = cg.slot_bytes[s];
    if (cg.nerr)
        memcpy(b->err_node, cg.err_node, (size_t)cg.nerr * sizeof(NnId));
    double t1 = now_ms();
    NnStatus st = nn_llvm_jit_add_parallel(x->jit, cg.mod, &b->tracker);
    double t2 = now_ms();
    int err_slot = cg.err_slot;
    nn_cg_fini(&cg);
    if (st != NN_OK)
        return st;
    if (!b->bufs || !b->err_node)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    if (scratch && !(b->scratch = nnrt_alloc((size_t)scratch)))
        return NN_ERR_NOMEM;
    if (!(b->err = nnrt_alloc(8 * ((size_t)b->nerr + 1))))
        return NN_ERR_NOMEM;
    for (int s = x->g->count; s < b->nslots; s++)
        b->bufs[s] = s == err_slot ? (void *)b->err : b->scratch;
    snprintf(name, sizeof name, "%sstep", prefix);
    void *fp = nn_llvm_jit_lookup(x->jit, name);
    if (getenv("NN_JIT_TIMES"))
        fprintf(stderr, "jit: lower %.0f ms, optimize %.0f ms, codegen %.0f ms\n", t1 - t0, t2 - t1,
                now_ms() - t2);
    memcpy(&b->step, &fp, sizeof fp); // object to function pointer, as dlsym does
    for (int k = 0; b->prof && k < b->nkernels; k++) {
        fp = nn_llvm_jit_lookup(x->jit, b->prof[k].name);
        memcpy(&b->prof[k].fn, &fp, sizeof fp);
    }
    return b->step ? NN_OK : NN_ERR_RUNTIME;
}

// Workspace, node slots, output headers and snapshot buffers.
static NnStatus layout(NnExec *x, JBind *b)
{
    const NnGraph *g = x->g;
    NnPlanOptions po = {.const_buffers = true};
    b->arena = nn_arena_new();
    b->plan = nn_plan_build_ex(g, b->symv, b->arena, &po);
    if (b->plan->workspace && !(b->ws = nnrt_alloc((size_t)b->plan->workspace)))
        return NN_ERR_NOMEM;
    for (NnId i = 0; i < g->count; i++) {
        int64_t off = b->plan->slots[i].offset;
        b->bufs[i] = off >= 0 && !is_external(g->nodes[i].op) ? b->ws + off : NULL;
    }
    b->outs = calloc((size_t)g->noutputs + 1, sizeof(NnTensor));
    b->outcopy = calloc((size_t)g->noutputs + 1, sizeof(void *));
    b->snap = calloc((size_t)g->nupdates + 1, sizeof(void *));
    if (!b->outs || !b->outcopy || !b->snap)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    for (int k = 0; k < g->noutputs; k++) {
        const NnNode *n = &g->nodes[g->outputs[k].id];
        NnTensor *t = &b->outs[k];
        t->dtype = n->dtype;
        t->rank = n->shape.rank;
        nn_shape_bind(&n->shape, b->symv, t->shape);
        t->numel = 1;
        for (int d = 0; d < t->rank; d++)
            t->numel *= t->shape[d];
        t->data = b->bufs[g->outputs[k].id];
        if (is_external(n->op)) {
            if (!(b->outcopy[k] = nnrt_alloc(nnrt_tensor_nbytes(t) + 1)))
                return NN_ERR_NOMEM;
            t->data = b->outcopy[k];
        }
    }
    for (int k = 0; k < g->nupdates; k++) {
        NnId v = g->updates[k].value;
        if (is_external(g->nodes[v].op) &&
            !(b->snap[k] = nnrt_alloc((size_t)b->plan->slots[v].nbytes + 1)))
            return NN_ERR_NOMEM;
    }
    return NN_OK;
}

static JBind *bind_new(NnExec *x, const int64_t *symv)
{
    JBind *b = calloc(1, sizeof *b);
    if (!b) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(b->symv, symv, sizeof b->symv);
    double t0 = now_ms();
    NnStatus st = compile(x, b);
    if (st == NN_OK)
        st = layout(x, b);
    if (st != NN_OK) {
        bind_free(x, b);
        return NULL;
    }
    if (x->opt.verbose)
        fprintf(stderr, "jit: compiled step in %.0f ms (%d kernels), workspace %lld bytes\n",
                now_ms() - t0, b->nkernels, (long long)b->plan->workspace);
    return b;
}

static JBind *get_binding(NnExec *x, const int64_t *symv)
{
    int ns = x->g->nsyms;
    for (int k = 0; k < x->nbind; k++)
        if (memcmp(x->bind[k]->symv, symv, (size_t)ns * sizeof *symv) == 0)
            return x->bind[k];
    JBind *b = bind_new(x, symv);
    if (!b)
        return NULL;
    if (x->nbind == MAX_BINDINGS) {
        int old = 0;
        for (int k = 1; k < x->nbind; k++)
            if (x->bind[k]->used < x->bind[old]->used)
                old = k;
        bind_free(x, x->bind[old]);
        x->bind[old] = x->bind[--x->nbind];
    }
    x->bind[x->nbind++] = b;
    x->last_kernels = b->nkernels;
    return b;
}

// ---- run ----

static NnStatus attach_sources(NnExec *x, JBind *b, NnVars *vars, NnTensor *const *inputs)
{
    const NnGraph *g = x->g;
    int k = 0;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op == NN_OP_INPUT) {
            b->bufs[i] = inputs[k++]->data;
            continue;
        }
        if (n->op != NN_OP_PARAM && n->op != NN_OP_STATE)
            continue;
        const char *what = n->op == NN_OP_PARAM ? "parameter" : "state";
        NnTensor *t = vars ? nnrt_vars_get(vars, n->attr.name) : NULL;
        if (!t)
            return nnrt_fail(NN_ERR_SHAPE, "%s '%s' is missing", what, n->attr.name);
        int64_t want[NN_MAX_RANK];
        nn_shape_bind(&n->shape, b->symv, want);
        bool same = t->dtype == n->dtype && t->rank == n->shape.rank;
        for (int d = 0; same && d < t->rank; d++)
            same = t->shape[d] == want[d];
        if (!same)
            return mismatch(g, n, t, what, 0);
        b->bufs[i] = t->data;
    }
    return NN_OK;
}

// The first out-of-range label seen by a TAKE/ONEHOT kernel, as the interpreter words it.
static NnStatus check_labels(NnExec *x, JBind *b)
{
    for (int k = 0; k < b->nerr; k++) {
        int64_t bad = b->err[k];
        if (bad < 0)
            continue;
        const NnNode *n = &x->g->nodes[b->err_node[k]];
        if (n->op == NN_OP_TAKE) {
            int32_t v = ((const int32_t *)b->bufs[n->in[1]])[bad];
            int64_t d[NN_MAX_RANK];
            nn_shape_bind(&x->g->nodes[n->in[0]].shape, b->symv, d);
            return nnrt_fail(NN_ERR_RUNTIME, "take: index %d at row %lld is outside [0, %lld)", v,
                             (long long)bad, (long long)d[1]);
        }
        int32_t v = ((const int32_t *)b->bufs[n->in[0]])[bad];
        return nnrt_fail(NN_ERR_RUNTIME, "onehot: label %d at %lld is outside [0, %lld)", v,
                         (long long)bad, (long long)n->attr.depth);
    }
    return NN_OK;
}

static size_t node_bytes(const JBind *b, NnId id) { return (size_t)b->plan->slots[id].nbytes; }

static void copy_bytes(void *dst, const void *src, size_t n)
{
    if (n && dst != src)
        memcpy(dst, src, n);
}

static void apply_updates(NnExec *x, JBind *b)
{
    const NnGraph *g = x->g;
    for (int k = 0; k < g->nupdates; k++)
        if (b->snap[k])
            copy_bytes(b->snap[k], b->bufs[g->updates[k].value],
                       node_bytes(b, g->updates[k].value));
    for (int k = 0; k < g->nupdates; k++) {
        NnId var = g->updates[k].var, v = g->updates[k].value;
        copy_bytes(b->bufs[var], b->snap[k] ? b->snap[k] : b->bufs[v], node_bytes(b, var));
    }
}

static NnStatus jit_run(NnExec *x, NnVars *vars, NnTensor *const *inputs, NnTensor **outputs)
{
    const NnGraph *g = x->g;
    for (int k = 0; k < g->noutputs; k++)
        outputs[k] = NULL;
    int64_t symv[NN_MAX_SYMS];
    for (int s = 0; s < NN_MAX_SYMS; s++)
        symv[s] = -1;
    NnStatus st = bind_syms(g, inputs, vars, symv);
    if (st != NN_OK)
        return st;
    JBind *b = get_binding(x, symv);
    if (!b)
        return NN_ERR_RUNTIME;
    b->used = ++x->runs;
    if ((st = attach_sources(x, b, vars, inputs)) != NN_OK)
        return st;
    for (int k = 0; k < g->nupdates; k++) {
        const NnNode *var = &g->nodes[g->updates[k].var], *v = &g->nodes[g->updates[k].value];
        if (var->dtype != v->dtype ||
            node_bytes(b, g->updates[k].var) != node_bytes(b, g->updates[k].value))
            return nnrt_fail(NN_ERR_SHAPE, "update of '%s' has the wrong type", var->attr.name);
    }
    if (b->prof) {
        b->runs++;
        for (int k = 0; k < b->nkernels; k++) {
            double t0 = now_ms();
            if (b->prof[k].par)
                nnrt_pool_run(x->pool, b->prof[k].fn, b->bufs);
            else
                b->prof[k].fn(b->bufs, 0, 1);
            b->prof[k].ms += now_ms() - t0;
        }
    } else {
        b->step(x->pool, b->bufs);
    }
    if ((st = check_labels(x, b)) != NN_OK)
        return st;
    for (int k = 0; k < g->noutputs; k++) {
        if (b->outcopy[k])
            copy_bytes(b->outcopy[k], b->bufs[g->outputs[k].id], node_bytes(b, g->outputs[k].id));
        outputs[k] = &b->outs[k];
    }
    apply_updates(x, b);
    return NN_OK;
}

// ---- prepare / free ----

static bool has_fused(const NnGraph *g)
{
    for (NnId i = 0; i < g->count; i++)
        if (g->nodes[i].op == NN_OP_FUSED)
            return true;
    return false;
}

static void jit_free(NnExec *x)
{
    if (!x)
        return;
    for (int k = 0; k < x->nbind; k++)
        bind_free(x, x->bind[k]);
    nn_llvm_jit_free(x->jit);
    if (x->g && x->g != x->user)
        nn_graph_free(x->g);
    if (x->pool == &x->own)
        nnrt_pool_fini(&x->own);
    free(x);
}

static NnExec *jit_prepare(const NnGraph *g, const NnExecOptions *opt)
{
    NnExec *x = calloc(1, sizeof *x);
    if (!x) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    x->user = x->g = (NnGraph *)g;
    if (opt)
        x->opt = *opt;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if ((n->op == NN_OP_PARAM || n->op == NN_OP_STATE) && !n->attr.name) {
            nnrt_fail(NN_ERR_RUNTIME, "%s node %d has no name", nn_op_name(n->op), i);
            free(x);
            return NULL;
        }
    }
    x->pool = nnrt_pool_default();
    if (x->opt.threads > 0 && x->opt.threads != nnrt_pool_size(x->pool)) {
        if (nnrt_pool_init(&x->own, x->opt.threads) != NN_OK) {
            free(x);
            return NULL;
        }
        x->pool = &x->own;
    }
    // Fusion is what makes the JIT fast; NN_JIT_NOFUSE=1 compiles the graph as given.
    const char *nofuse = getenv("NN_JIT_NOFUSE");
    if (!has_fused(g) && !(nofuse && *nofuse == '1'))
        x->g = nn_passes_run(nn_graph_clone(g), NULL);
    if (!(x->jit = nn_llvm_jit_new())) {
        jit_free(x);
        return NULL;
    }
    return x;
}

int nn_llvm_kernel_count(const NnExec *x) { return x ? x->last_kernels : 0; }

const NnBackend nn_backend_jit = {
    .name = "jit",
    .prepare = jit_prepare,
    .run = jit_run,
    .free = jit_free,
};
