// The JIT backend (nn_backend_jit). prepare() fuses a copy of the graph with
// the pass pipeline (unless it is fused already) and starts an LLJIT session;
// run() binds symbolic dims from the inputs with the interpreter's own code
// (backend/common.c: same checks, same messages), compiles one module per
// binding (cached; the least recently used is dropped past 8 bindings),
// points bufs[] at the planned workspace and the caller's tensors, calls the
// generated step, reports bad labels, returns outputs as views it owns and
// applies updates last, from pre-update values (backend/common.c again).
// NN_JIT_NOFUSE=1 compiles the graph unfused; NN_JIT_PROFILE=1 times each kernel.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "nn_llvm.h"
#include "pass.h"
#include "plan.h"
#include "pool.h"

// NN_JIT_PROFILE=1: kernels run one by one from C, timed; totals print at free.
typedef struct KProf {
    char name[48];
    NnrtTask fn;
    bool par;
    bool direct; // fn is really void (*)(void *pool, void **bufs)
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
    void **owned;  // per slot that has memory of its own (loop bodies), else NULL
    int64_t *err;  // per TAKE/ONEHOT node: first bad row or -1
    NnId *err_node;
    int nerr, nkernels;
    NnBackendSide side; // output headers, their copies, update snapshots
} JBind;

struct NnExec {
    NnBackendExec base; // base.g is what is compiled: the graph given, or `fused`
    NnGraph *fused;     // a fused copy of the graph given, which we own, or NULL
    NnLlvmJit *jit;
    int serial, last_kernels;
};

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
    for (int s = 0; b->owned && s < b->nslots; s++)
        nnrt_free(b->owned[s]);
    free(b->owned);
    nnrt_free(b->err);
    nn_backend_side_fini(&b->side, x->base.g);
    free(b->bufs);
    free(b->err_node);
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
    nn_cg_init(&cg, nn_llvm_jit_context(x->jit), x->base.g, b->symv, prefix);
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
            b->prof[k].direct = cg.kernels[k].direct;
        }
    }
    b->nslots = cg.nslots;
    b->nkernels = cg.nkernels;
    b->nerr = cg.nerr;
    b->bufs = calloc((size_t)cg.nslots + 1, sizeof(void *));
    b->err_node = calloc((size_t)cg.nerr + 1, sizeof(NnId));
    b->owned = calloc((size_t)cg.nslots + 1, sizeof(void *));
    int64_t scratch = 0;
    bool owned_ok = b->owned != NULL;
    for (int s = x->base.g->count; s < cg.nslots && owned_ok; s++) {
        if (cg.slot_owned[s])
            owned_ok = (b->owned[s] = nnrt_alloc((size_t)cg.slot_bytes[s] + 64)) != NULL;
        else if (s != cg.err_slot && cg.slot_bytes[s] > scratch)
            scratch = cg.slot_bytes[s];
    }
    if (cg.nerr)
        memcpy(b->err_node, cg.err_node, (size_t)cg.nerr * sizeof(NnId));
    double t1 = now_ms();
    NnStatus st = nn_llvm_jit_add_parallel(x->jit, cg.mod, &b->tracker);
    double t2 = now_ms();
    int err_slot = cg.err_slot;
    nn_cg_fini(&cg);
    if (st != NN_OK)
        return st;
    if (!b->bufs || !b->err_node || !owned_ok)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    if (scratch && !(b->scratch = nnrt_alloc((size_t)scratch)))
        return NN_ERR_NOMEM;
    if (!(b->err = nnrt_alloc(8 * ((size_t)b->nerr + 1))))
        return NN_ERR_NOMEM;
    for (int s = x->base.g->count; s < b->nslots; s++)
        b->bufs[s] = b->owned[s] ? b->owned[s] : s == err_slot ? (void *)b->err : b->scratch;
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

static void **bind_ptr(void *ctx, NnId id) { return &((JBind *)ctx)->bufs[id]; }

// b as the shared code in backend/common.c sees it.
static NnBackendView view(NnExec *x, void *bind)
{
    JBind *b = bind;
    return (NnBackendView){.g = x->base.g, .symv = b->symv, .ptr = bind_ptr, .ctx = b};
}

// Workspace, node slots, output headers and snapshot buffers.
static NnStatus layout(NnExec *x, JBind *b)
{
    const NnGraph *g = x->base.g;
    NnPlanOptions po = {.const_buffers = true};
    b->arena = nn_arena_new();
    b->plan = nn_plan_build_ex(g, b->symv, b->arena, &po);
    if (b->plan->workspace && !(b->ws = nnrt_alloc((size_t)b->plan->workspace)))
        return NN_ERR_NOMEM;
    for (NnId i = 0; i < g->count; i++) {
        int64_t off = b->plan->slots[i].offset;
        b->bufs[i] = off >= 0 && !nn_backend_is_source(g->nodes[i].op) ? b->ws + off : NULL;
    }
    NnBackendView v = view(x, b);
    return nn_backend_side_init(&b->side, &v);
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
    if (x->base.opt.verbose)
        fprintf(stderr, "jit: compiled step in %.0f ms (%d kernels), workspace %lld bytes\n",
                now_ms() - t0, b->nkernels, (long long)b->plan->workspace);
    return b;
}

static NnStatus make_binding(NnExec *x, const int64_t *symv, void **bind)
{
    JBind *b = bind_new(x, symv);
    if (!b)
        return NN_ERR_RUNTIME;
    x->last_kernels = b->nkernels;
    *bind = b;
    return NN_OK;
}

static void drop_binding(NnExec *x, void *b) { bind_free(x, b); }

static const NnBackendOps jit_ops = {make_binding, drop_binding, view};

// ---- run ----

// The first out-of-range label seen by a TAKE/ONEHOT kernel, as the interpreter words it.
static NnStatus check_labels(NnExec *x, JBind *b)
{
    for (int k = 0; k < b->nerr; k++) {
        int64_t bad = b->err[k];
        if (bad < 0)
            continue;
        const NnNode *n = &x->base.g->nodes[b->err_node[k]];
        if (n->op == NN_OP_TAKE) {
            int32_t v = ((const int32_t *)b->bufs[n->in[1]])[bad];
            int64_t d[NN_MAX_RANK];
            nn_shape_bind(&x->base.g->nodes[n->in[0]].shape, b->symv, d);
            return nnrt_fail(NN_ERR_RUNTIME, "take: index %d at row %lld is outside [0, %lld)", v,
                             (long long)bad, (long long)d[1]);
        }
        int32_t v = ((const int32_t *)b->bufs[n->in[0]])[bad];
        return nnrt_fail(NN_ERR_RUNTIME, "onehot: label %d at %lld is outside [0, %lld)", v,
                         (long long)bad, (long long)n->attr.depth);
    }
    return NN_OK;
}

static NnStatus jit_run(NnExec *x, NnVars *vars, NnTensor *const *inputs, NnTensor **outputs)
{
    void *bind;
    NnBackendView v;
    NnStatus st = nn_backend_begin(x, vars, inputs, outputs, &bind, &v);
    if (st != NN_OK)
        return st;
    JBind *b = bind;
    if (b->prof) {
        b->runs++;
        for (int k = 0; k < b->nkernels; k++) {
            double t0 = now_ms();
            if (b->prof[k].direct) {
                void (*fn)(void *, void **);
                memcpy(&fn, &b->prof[k].fn, sizeof fn);
                fn(x->base.pool, b->bufs);
            } else if (b->prof[k].par)
                nnrt_pool_run(x->base.pool, b->prof[k].fn, b->bufs);
            else
                b->prof[k].fn(b->bufs, 0, 1);
            b->prof[k].ms += now_ms() - t0;
        }
    } else {
        b->step(x->base.pool, b->bufs);
    }
    if ((st = check_labels(x, b)) != NN_OK)
        return st;
    nn_backend_finish(&v, &b->side, outputs);
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
    nn_backend_exec_clear(x); // while the bindings' code is still in the JIT
    nn_llvm_jit_free(x->jit);
    nn_graph_free(x->fused);
    nn_backend_exec_free(x);
}

static NnExec *jit_prepare(const NnGraph *g, const NnExecOptions *opt)
{
    NnExec *x = nn_backend_exec_new(sizeof(NnExec), g, opt, &jit_ops);
    if (!x)
        return NULL;
    // Fusion is what makes the JIT fast; NN_JIT_NOFUSE=1 compiles the graph as given.
    const char *nofuse = getenv("NN_JIT_NOFUSE");
    if (!has_fused(g) && !(nofuse && *nofuse == '1'))
        x->base.g = x->fused = nn_passes_run(nn_graph_clone(g), NULL);
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
