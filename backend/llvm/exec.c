// The JIT backend (nn_backend_jit). prepare() fuses a copy of the graph with
// the pass pipeline (unless it is fused already) and starts an LLJIT session;
// run() binds symbolic dims from the inputs with the interpreter's own code
// (backend/common.c: same checks, same messages; bindings are cached, the
// least recently used dropped past 8) and runs a compiled module described as
// a step descriptor, which the runtime runs (runtime/step.c: slots, kernels,
// label checks, outputs, updates), as in built programs. The batch (the
// leading dim of the inputs) stays a run-time value when every op on it can
// take one (nn_cg_batch_sym): one module then serves all batch sizes (the
// last partial batch, evaluation, batch-1 prediction) and bindings that
// differ only in the batch share it. Otherwise each binding compiles its own.
// A training step given unfused, with a run-time batch, a pool of 2 threads or
// more and a training batch (NnExecOptions.batch) of at least 2 *
// nnrt_lane_rows() rows (off by default: NN_SPLIT_ROWS), is first cut for lanes (ir/shard.c): its batch is
// then split across threads for the whole step (runtime/step.c;
// docs/threads.md); NN_SPLIT=0 keeps it uncut, each kernel split over the pool. NN_JIT_NOFUSE=1 compiles the graph
// unfused; NN_JIT_PROFILE=1 times each kernel.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "nn_llvm.h"
#include "dist.h"
#include "pass.h"
#include "plan.h"
#include "pool.h"

// NN_JIT_PROFILE=1: kernels run one by one, timed; totals print at free.
// min: the fastest run, what a kernel costs when it keeps its core (the
// mean includes every preemption on a shared machine). The median and the
// 90th and 99th percentiles of the first KPROF_RUNS runs tell a smooth
// spread from a slow mode (a late worker, a preemption now and then).
enum { KPROF_RUNS = 4096 };
typedef struct KProf {
    double ms, min;
    float t[KPROF_RUNS];
} KProf;

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// The q-quantile of p's recorded runs (sorted in place).
static double kprof_quantile(KProf *p, int64_t runs, double q)
{
    int n = runs < KPROF_RUNS ? (int)runs : KPROF_RUNS;
    if (n <= 0)
        return 0;
    qsort(p->t, (size_t)n, sizeof *p->t, cmp_float);
    return p->t[(int)(q * (n - 1))];
}

// One compiled module: its code in the JIT and the step descriptor
// (runtime/step.h) that runs it, the same kind of descriptor a built program
// runs. With a run-time batch, every binding that differs only in it shares one.
typedef struct JMod {
    KProf *prof; // per kernel when profiling, else NULL
    char shard_why[160]; // why the update is not sharded under mpirun
    int64_t runs;
    int64_t key[NN_MAX_SYMS]; // the binding, the batch symbol (if run-time) -1
    int refs;                 // bindings using it
    void *tracker;            // the module's code in the JIT
    int shared;               // kernels calling another's identical code
    NnrtStep *desc;           // kernel addresses filled in from the JIT
    NnrtStepRun run;
    struct JMod *next;
} JMod;

typedef struct JBind {
    JMod *m;
    int64_t symv[NN_MAX_SYMS];
} JBind;

struct NnExec {
    NnBackendExec base; // base.g is what is compiled: the graph given, or `fused`
    NnGraph *fused;     // a fused copy of the graph given, which we own, or NULL
    NnLlvmJit *jit;
    int serial, last_kernels, last_shared, compiles;
    int rt_sym;       // the batch symbol left to run time, or -1
    char rt_why[160]; // why not, when -1
    bool lanes;       // cut for lanes (ir/shard.c)
    int last_lanes;   // lanes of the latest run
    int last_dispatches, last_splits; // pool dispatches and split kernels of it
    int last_in_place;                // updates it wrote in place
    char lanes_why[160]; // why not, when false
    JMod *mods;       // modules with a run-time batch, kept until free
};

// ---- modules ----

static void mod_free(NnExec *x, JMod *b)
{
    if (!b)
        return;
    for (int k = 0; b->prof && k < b->desc->nkernels; k++)
        fprintf(stderr, "jit profile: %-28s %s %9.3f ms/run (min %.4f) par from %lld rows"
                "  p50 %.4f p90 %.4f p99 %.4f\n",
                b->desc->kernels[k].name, b->desc->kernels[k].par ? "par" : "ser",
                b->prof[k].ms / (double)(b->runs ? b->runs : 1), b->prof[k].min,
                (long long)b->desc->kernels[k].par_rows, kprof_quantile(&b->prof[k], b->runs, 0.5),
                kprof_quantile(&b->prof[k], b->runs, 0.9),
                kprof_quantile(&b->prof[k], b->runs, 0.99));
    free(b->prof);
    nnrt_step_close(&b->run);
    nn_llvm_jit_remove(x->jit, b->tracker);
    nn_llvm_step_free(b->desc);
    free(b);
}

static double clock_ms(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

// Rows a run-time batch stands for in shapes while compiling: sizes the cost
// estimates that pick loop forms and threading (at least 32 rows, so that
// the forms for one row are not chosen for every batch).
#define RT_REF_MIN 32

// Lowers, plans, optimizes and links the module for binding symv; b->desc
// describes the result.
static NnStatus compile(NnExec *x, JMod *b, const int64_t *symv)
{
    char prefix[24];
    // NN_JIT_TIMES: this thread's CPU time, as the bench counts it.
    double t0 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
    snprintf(prefix, sizeof prefix, "b%d_", x->serial++);
    x->compiles++;
    int64_t cv[NN_MAX_SYMS], pv[NN_MAX_SYMS]; // the binding compiled, and planned
    memcpy(cv, symv, sizeof cv);
    memcpy(pv, symv, sizeof pv);
    NnPlanOptions po = {.const_buffers = true};
    if (x->rt_sym >= 0) {
        cv[x->rt_sym] = symv[x->rt_sym] > RT_REF_MIN ? symv[x->rt_sym] : RT_REF_MIN;
        pv[x->rt_sym] = 1;
        po.rows = true;
        po.rows_sym = x->rt_sym;
    }
    NnCg cg;
    nn_cg_init_rt(&cg, nn_llvm_jit_context(x->jit), x->base.g, cv, prefix, x->rt_sym);
    if (!nn_cg_lower_graph(&cg)) {
        LLVMDisposeModule(cg.mod);
        nn_cg_fini(&cg);
        return NN_ERR_RUNTIME;
    }
    NnArena *arena = nn_arena_new();
    b->desc = nn_llvm_step_new(&cg, nn_plan_build_ex(x->base.g, pv, arena, &po), "step");
    nn_arena_free(arena);
    if (b->desc && x->lanes && !nn_llvm_step_lanes(b->desc, &cg, x->lanes_why, sizeof x->lanes_why))
        x->lanes = false;
    // Under mpirun each rank updates its share of the parameters (step.h);
    // the profiler runs kernels itself, so it times the whole update.
    b->shard_why[0] = 0;
    if (b->desc && !x->lanes && nnrt_dist_sharding() && !getenv("NN_JIT_PROFILE"))
        nn_llvm_step_shard(b->desc, &cg, b->shard_why, sizeof b->shard_why);
    if (!b->desc) {
        LLVMDisposeModule(cg.mod);
        nn_cg_fini(&cg);
        return NN_ERR_NOMEM;
    }
    double t1 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
    NnStatus st = nn_llvm_jit_add_parallel(x->jit, cg.mod, &b->tracker, &b->shared);
    double t2 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
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
        fprintf(stderr,
                "jit: this thread's CPU: lower and plan %.1f ms, compile %.1f ms, link %.1f ms\n",
                t1 - t0, t2 - t1, clock_ms(CLOCK_THREAD_CPUTIME_ID) - t2);
    return nnrt_step_open(&b->run, b->desc);
}

static void **bind_ptr(void *ctx, NnId id) { return &((JBind *)ctx)->m->run.bufs[id]; }

// b as the shared code in backend/common.c sees it.
static NnBackendView view(NnExec *x, void *bind)
{
    JBind *b = bind;
    return (NnBackendView){.g = x->base.g, .symv = b->symv, .ptr = bind_ptr, .ctx = b};
}

static JMod *mod_new(NnExec *x, const int64_t *symv, const int64_t *key)
{
    JMod *b = calloc(1, sizeof *b);
    if (!b) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(b->key, key, sizeof b->key);
    double t0 = now_ms();
    if (compile(x, b, symv) != NN_OK) {
        mod_free(x, b);
        return NULL;
    }
    if (x->base.opt.verbose && x->rt_sym >= 0)
        fprintf(stderr,
                "jit: compiled step in %.0f ms (%d kernels, %d sharing another's code) for any "
                "batch size, workspace %lld bytes + %lld per row\n",
                now_ms() - t0, b->desc->nkernels, b->shared, (long long)b->desc->workspace,
                (long long)b->desc->workspace_rows);
    else if (x->base.opt.verbose)
        fprintf(stderr,
                "jit: compiled step in %.0f ms (%d kernels, %d sharing another's code), workspace "
                "%lld bytes (batch size fixed: %s)\n",
                now_ms() - t0, b->desc->nkernels, b->shared, (long long)b->desc->workspace,
                x->rt_why);
    if (x->base.opt.verbose && x->lanes)
        fprintf(stderr, "jit: the batch splits across threads for the whole step (%d of %d "
                "kernels run per thread on its rows, %d gradients summed)\n", b->desc->nlane,
                b->desc->nkernels, b->desc->ncuts);
    else if (x->base.opt.verbose)
        fprintf(stderr, "jit: each kernel splits over the threads (%s)\n", x->lanes_why);
    if (x->base.opt.verbose && b->desc->nshards)
        fprintf(stderr, "jit: the update is sharded over %d ranks (%d entries)\n",
                nnrt_dist_size(), b->desc->nshards);
    else if (x->base.opt.verbose && b->shard_why[0])
        fprintf(stderr, "jit: every rank runs the whole update (%s)\n", b->shard_why);
    return b;
}

// A binding uses the module compiled for its key: symv with the run-time
// batch (if any) masked, so a new batch size compiles nothing.
static NnStatus make_binding(NnExec *x, const int64_t *symv, void **bind)
{
    int64_t key[NN_MAX_SYMS];
    memcpy(key, symv, sizeof key);
    if (x->rt_sym >= 0)
        key[x->rt_sym] = -1;
    size_t keylen = (size_t)x->base.g->nsyms * sizeof *key;
    JMod *m = NULL;
    for (m = x->mods; m && memcmp(m->key, key, keylen) != 0;)
        m = m->next;
    JBind *b = calloc(1, sizeof *b);
    if (!b)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    if (!m && !(m = mod_new(x, symv, key))) {
        free(b);
        return NN_ERR_RUNTIME;
    }
    if (x->rt_sym >= 0 && m->refs == 0 && m != x->mods) {
        m->next = x->mods;
        x->mods = m;
        m->refs = 1; // the list's: it outlives its bindings
    }
    m->refs++;
    memcpy(b->symv, symv, sizeof b->symv);
    b->m = m;
    x->last_kernels = m->desc->nkernels;
    x->last_shared = m->shared;
    *bind = b;
    return NN_OK;
}

static void drop_binding(NnExec *x, void *bind)
{
    JBind *b = bind;
    if (--b->m->refs == 0)
        mod_free(x, b->m);
    free(b);
}

static const NnBackendOps jit_ops = {make_binding, drop_binding, view};

// ---- run ----

// Kernels one at a time from C, timed (NN_JIT_PROFILE=1).
static void run_profiled(NnExec *x, JMod *b)
{
    b->runs++;
    for (int k = 0; k < b->desc->nkernels; k++) {
        const NnrtStepKernel *kn = &b->desc->kernels[k];
        if (k == b->run.ip_first && nnrt_step_check(&b->run) != NN_OK)
            return; // before an update in place (runtime/step.c): the caller reports it
        double t0 = now_ms();
        if (kn->par && b->run.batch >= kn->par_rows)
            nnrt_pool_run(x->base.pool, kn->fn, b->run.bufs);
        else
            kn->fn(b->run.bufs, 0, 1);
        double dt = now_ms() - t0;
        b->prof[k].ms += dt;
        if (b->runs <= KPROF_RUNS)
            b->prof[k].t[b->runs - 1] = (float)dt;
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
    JMod *b = ((JBind *)bind)->m;
    if ((st = nnrt_step_attach(&b->run, vars, inputs)) != NN_OK)
        return st;
    if (b->prof) {
        run_profiled(x, b);
        st = nnrt_step_check(&b->run);
    } else {
        st = nnrt_step_exec(&b->run, x->base.pool);
        x->last_lanes = b->run.lanes;
        x->last_dispatches = b->run.dispatches;
        x->last_splits = b->run.splits;
        x->last_in_place = b->run.in_place;
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

// The fused graph to compile: cut for lanes first when the batch can be split
// across threads (a run-time batch, a pool of 2 or more), else as it was.
static NnGraph *cut_and_fuse(NnExec *x, const NnGraph *g, const NnPassOptions *passes,
                             int64_t batch)
{
    NnPassOptions po = passes ? *passes : (NnPassOptions){0};
    po.stop = NULL;
    const char *off = getenv("NN_SPLIT");
    char why[160];
    int sym = nn_cg_batch_sym(g, why, sizeof why);
    if (off && *off == '0')
        snprintf(x->lanes_why, sizeof x->lanes_why, "NN_SPLIT=0");
    else if (nnrt_pool_size(x->base.pool) < 2)
        snprintf(x->lanes_why, sizeof x->lanes_why, "one thread");
    else if (nnrt_lane_rows() <= 0)
        snprintf(x->lanes_why, sizeof x->lanes_why,
                 "the batch split is off (NN_SPLIT_ROWS=R turns it on from R rows per thread)");
    else if (batch < 2 * nnrt_lane_rows()) // the cut costs a copy of each gradient
        snprintf(x->lanes_why, sizeof x->lanes_why,
                 "batch %lld: splitting pays from %lld rows per thread", (long long)batch,
                 (long long)nnrt_lane_rows());
    else if (sym < 0)
        snprintf(x->lanes_why, sizeof x->lanes_why, "the batch is fixed: %.120s", why);
    if (x->lanes_why[0])
        return nn_passes_run(nn_graph_clone(g), &po);
    NnGraph *c = nn_graph_clone(g);
    NnGraph *cut = nn_pass_shard(c, sym, x->lanes_why, sizeof x->lanes_why);
    if (!cut)
        return nn_passes_run(c, &po);
    nn_graph_free(c);
    NnGraph *f = nn_passes_run(cut, &po);
    NnGraph *o = nn_pass_lanes(f);
    if (o != f)
        nn_graph_free(f);
    int *rule = calloc((size_t)o->noutputs + 1, sizeof *rule);
    x->lanes = rule && nn_cg_batch_sym(o, why, sizeof why) == sym &&
               nn_lanes_check(o, sym, rule, x->lanes_why, sizeof x->lanes_why) >= 0;
    free(rule);
    if (x->lanes)
        return o;
    nn_graph_free(o);
    return nn_passes_run(nn_graph_clone(g), &po);
}

static void jit_free(NnExec *x)
{
    if (!x)
        return;
    nn_backend_exec_clear(x); // while the bindings' code is still in the JIT
    while (x->mods) {
        JMod *m = x->mods;
        x->mods = m->next;
        if (--m->refs == 0)
            mod_free(x, m);
    }
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
        x->base.g = x->fused = cut_and_fuse(x, g, opt ? opt->passes : NULL, opt ? opt->batch : 0);
    else
        snprintf(x->lanes_why, sizeof x->lanes_why, "fused before the JIT: not cut");
    // NN_JIT_FIXED_BATCH=1 compiles every batch size on its own (to compare).
    const char *fixed = getenv("NN_JIT_FIXED_BATCH");
    x->rt_sym = nn_cg_batch_sym(x->base.g, x->rt_why, sizeof x->rt_why);
    if (fixed && *fixed == '1') {
        x->rt_sym = -1;
        snprintf(x->rt_why, sizeof x->rt_why, "NN_JIT_FIXED_BATCH=1");
    }
    if (!(x->jit = nn_llvm_jit_new())) {
        jit_free(x);
        return NULL;
    }
    return x;
}

int nn_llvm_kernel_count(const NnExec *x) { return x ? x->last_kernels : 0; }

int nn_llvm_compile_count(const NnExec *x) { return x ? x->compiles : 0; }

int nn_llvm_shared_count(const NnExec *x) { return x ? x->last_shared : 0; }

int nn_llvm_dispatches(const NnExec *x, int *splits)
{
    if (splits)
        *splits = x ? x->last_splits : 0;
    return x ? x->last_dispatches : 0;
}

int nn_llvm_in_place(const NnExec *x) { return x ? x->last_in_place : 0; }

bool nn_llvm_runtime_batch(const NnExec *x) { return x && x->rt_sym >= 0; }

int nn_llvm_lanes(const NnExec *x, const char **why)
{
    if (why)
        *why = x ? x->lanes_why : "";
    return x && x->lanes ? (x->last_lanes > 0 ? x->last_lanes : 1) : 0;
}

const NnBackend nn_backend_jit = {
    .name = "jit",
    .prepare = jit_prepare,
    .run = jit_run,
    .free = jit_free,
};
