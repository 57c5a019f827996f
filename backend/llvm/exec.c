// The JIT backend (nn_backend_jit). prepare() fuses a copy of the graph with
// the pass pipeline (unless it is fused already) and starts an LLJIT session;
// run() binds symbolic dims from the inputs with the interpreter's own code
// (backend/common.c: same checks, same messages), compiles one module per
// binding (cached; the least recently used is dropped past 8 bindings) and
// describes it as a step descriptor, which the runtime runs (runtime/step.c:
// slots, kernels, label checks, outputs, updates), as in built programs.
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

// NN_JIT_PROFILE=1: kernels run one by one, timed; totals print at free.
// min: the fastest run, what a kernel costs when it keeps its core (the
// mean includes every preemption on a shared machine).
typedef struct KProf {
    double ms, min;
} KProf;

// One binding: its code in the JIT and the step descriptor (runtime/step.h)
// that runs it, the same kind of descriptor a built program runs.
typedef struct JBind {
    KProf *prof; // per kernel when profiling, else NULL
    int64_t runs;
    int64_t symv[NN_MAX_SYMS];
    void *tracker;  // the binding's code in the JIT
    NnrtStep *desc; // kernel addresses filled in from the JIT
    NnrtStepRun run;
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
    for (int k = 0; b->prof && k < b->desc->nkernels; k++)
        fprintf(stderr, "jit profile: %-28s %s %9.3f ms/run (min %.3f)\n",
                b->desc->kernels[k].name, b->desc->kernels[k].par ? "par" : "ser",
                b->prof[k].ms / (double)(b->runs ? b->runs : 1), b->prof[k].min);
    free(b->prof);
    nnrt_step_close(&b->run);
    nn_llvm_jit_remove(x->jit, b->tracker);
    nn_llvm_step_free(b->desc);
    free(b);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

// Lowers, plans, optimizes and links the module; b->desc describes the result.
static NnStatus compile(NnExec *x, JBind *b)
{
    char prefix[24];
    double t0 = now_ms();
    snprintf(prefix, sizeof prefix, "b%d_", x->serial++);
    NnCg cg;
    nn_cg_init(&cg, nn_llvm_jit_context(x->jit), x->base.g, b->symv, prefix);
    if (!nn_cg_lower_graph(&cg)) {
        LLVMDisposeModule(cg.mod);
        nn_cg_fini(&cg);
        return NN_ERR_RUNTIME;
    }
    NnPlanOptions po = {.const_buffers = true};
    NnArena *arena = nn_arena_new();
    b->desc = nn_llvm_step_new(&cg, nn_plan_build_ex(x->base.g, b->symv, arena, &po), "step");
    nn_arena_free(arena);
    if (!b->desc) {
        LLVMDisposeModule(cg.mod);
        nn_cg_fini(&cg);
        return NN_ERR_NOMEM;
    }
    double t1 = now_ms();
    NnStatus st = nn_llvm_jit_add_parallel(x->jit, cg.mod, &b->tracker);
    double t2 = now_ms();
    nn_cg_fini(&cg);
    if (st != NN_OK)
        return st;
    if (getenv("NN_JIT_PROFILE") && !(b->prof = calloc((size_t)b->desc->nkernels + 1,
                                                       sizeof(KProf))))
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    for (int k = 0; k < b->desc->nkernels; k++) {
        NnrtStepKernel *kn = (NnrtStepKernel *)&b->desc->kernels[k];
        void *fp = nn_llvm_jit_lookup(x->jit, kn->name);
        if (!fp)
            return NN_ERR_RUNTIME;
        memcpy(&kn->fn, &fp, sizeof fp); // object to function pointer, as dlsym does
    }
    if (getenv("NN_JIT_TIMES"))
        fprintf(stderr, "jit: lower %.0f ms, optimize %.0f ms, codegen %.0f ms\n", t1 - t0, t2 - t1,
                now_ms() - t2);
    return nnrt_step_open(&b->run, b->desc);
}

static void **bind_ptr(void *ctx, NnId id) { return &((JBind *)ctx)->run.bufs[id]; }

// b as the shared code in backend/common.c sees it.
static NnBackendView view(NnExec *x, void *bind)
{
    JBind *b = bind;
    return (NnBackendView){.g = x->base.g, .symv = b->symv, .ptr = bind_ptr, .ctx = b};
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
    if (compile(x, b) != NN_OK) {
        bind_free(x, b);
        return NULL;
    }
    if (x->base.opt.verbose)
        fprintf(stderr, "jit: compiled step in %.0f ms (%d kernels), workspace %lld bytes\n",
                now_ms() - t0, b->desc->nkernels, (long long)b->desc->workspace);
    return b;
}

static NnStatus make_binding(NnExec *x, const int64_t *symv, void **bind)
{
    JBind *b = bind_new(x, symv);
    if (!b)
        return NN_ERR_RUNTIME;
    x->last_kernels = b->desc->nkernels;
    *bind = b;
    return NN_OK;
}

static void drop_binding(NnExec *x, void *b) { bind_free(x, b); }

static const NnBackendOps jit_ops = {make_binding, drop_binding, view};

// ---- run ----

// Kernels one at a time from C, timed (NN_JIT_PROFILE=1).
static void run_profiled(NnExec *x, JBind *b)
{
    b->runs++;
    for (int k = 0; k < b->desc->nkernels; k++) {
        const NnrtStepKernel *kn = &b->desc->kernels[k];
        double t0 = now_ms();
        if (kn->par)
            nnrt_pool_run(x->base.pool, kn->fn, b->run.bufs);
        else
            kn->fn(b->run.bufs, 0, 1);
        double dt = now_ms() - t0;
        b->prof[k].ms += dt;
        if (b->runs == 1 || dt < b->prof[k].min)
            b->prof[k].min = dt;
    }
}

// The shared code checks the caller's tensors (its messages name symbolic
// dims) and picks the binding; the runtime runs the binding's descriptor.
static NnStatus jit_run(NnExec *x, NnVars *vars, NnTensor *const *inputs, NnTensor **outputs)
{
    void *bind;
    NnBackendView v;
    NnStatus st = nn_backend_begin(x, vars, inputs, outputs, &bind, &v);
    if (st != NN_OK)
        return st;
    JBind *b = bind;
    if ((st = nnrt_step_attach(&b->run, vars, inputs)) != NN_OK)
        return st;
    if (b->prof) {
        run_profiled(x, b);
        st = nnrt_step_check(&b->run);
    } else {
        st = nnrt_step_exec(&b->run, x->base.pool);
    }
    if (st != NN_OK)
        return st;
    nnrt_step_finish(&b->run, outputs);
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
