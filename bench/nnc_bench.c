// The benchmark driver: takes bench/mlp.nn, bench/mlp_nodrop.nn and
// bench/xor.nn through the real pipeline (parse, sema, nn_lower_train,
// nn_passes_run, backend prepare/run) and times, on the interpreter and the
// JIT, the bare MLP training step at batch 128 (with and without dropout; its
// FLOPs per sample counted from the fused graph), the XOR step at batch 4,
// batch-1 inference, and the JIT compile time;
// then gemm_bench.c times generated matmul against OpenBLAS and the FMA peak.
// Prints one flat JSON object on stdout; bench/report.py turns it into the
// table. Data is synthetic (uniform inputs, random labels): speed only.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ast.h"
#include "backend.h"
#include "bench.h"
#include "flops.h"
#include "init.h"
#include "lower.h"
#include "pass.h"
#include "sema.h"

static const char *src_dir = ".";
static bool quick;

// ---- timing helpers ----

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

long bench_calibrate(bool (*fn)(void *), void *ctx, double min_s)
{
    if (quick)
        min_s /= 4;
    if (!fn(ctx))
        return -1;
    // Grow the count until one repetition takes min_s.
    long n = 1;
    for (;;) {
        double dt = bench_rep(fn, ctx, n) * (double)n;
        if (dt < 0)
            return -1;
        if (dt >= min_s || n > (1L << 24))
            return n;
        n = dt > 0 ? (long)(n * 1.2 * min_s / dt) + 1 : n * 2;
        if (n < 2)
            n = 2;
    }
}

// With cpu_clock, repetitions are timed by the calling thread's CPU time: for
// one-thread overhead figures (XOR, batch-1 inference) on a busy machine.
static bool cpu_clock;

double bench_rep(bool (*fn)(void *), void *ctx, long n)
{
    double (*clock)(void) = cpu_clock ? bench_cpu_now : bench_now;
    double t0 = clock();
    for (long i = 0; i < n; i++)
        if (!fn(ctx))
            return -1;
    return (clock() - t0) / (double)n;
}

double bench_time(bool (*fn)(void *), void *ctx, double min_s, int reps)
{
    long n = bench_calibrate(fn, ctx, min_s);
    if (n < 0)
        return -1;
    double v[32];
    reps = quick && reps > 3 ? 3 : reps > 32 ? 32 : reps;
    for (int r = 0; r < reps; r++)
        if ((v[r] = bench_rep(fn, ctx, n)) < 0)
            return -1;
    return bench_median(v, reps);
}

void bench_emit(const char *key, double value) { printf("  \"%s\": %.6g,\n", key, value); }

// ---- models ----

typedef struct Model {
    NnCtx c;
    NnProgram *p;
    NnTrainSpec spec;
    NnGraph *infer; // the model alone, inference mode (output "output")
    NnVars vars;
    NnVars init; // the variables' initial values (time_steps restores them)
} Model;

static bool init_vars(Model *m)
{
    nnrt_vars_init(&m->vars);
    nnrt_vars_init(&m->init);
    for (int i = 0; i < m->spec.nvars; i++) {
        const NnParamInit *v = &m->spec.vars[i];
        NnTensor *t = nnrt_tensor_new(v->dtype, v->shape.rank, v->shape.dim);
        if (!t || nnrt_init_fill(t, v->init, v->args, v->nargs, m->spec.seed, v->name) != NN_OK ||
            nnrt_vars_put(&m->vars, v->name, t) != NN_OK ||
            nnrt_vars_put(&m->init, v->name, nnrt_tensor_clone(t)) != NN_OK) {
            fprintf(stderr, "bench: cannot initialize %s: %s\n", v->name, nnrt_errmsg());
            return false;
        }
    }
    return true;
}

// Whether every PARAM/STATE of g is in vars (so g can run on the step's variables).
static bool vars_cover(const NnGraph *g, const NnVars *vars)
{
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if ((n->op == NN_OP_PARAM || n->op == NN_OP_STATE) && !nnrt_vars_get(vars, n->attr.name))
            return false;
    }
    return true;
}

// Parse, sema and lower `name` (in bench/) against fields. Sets *secs to the
// front end's time (source text to step, eval and inference graphs).
static bool model_load(Model *m, const char *name, const NnField *f, int nf, double *secs)
{
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/bench/%s", src_dir, name);
    double t0 = bench_now();
    nn_ctx_init(&m->c, stderr);
    static char stdlib[4096];
    snprintf(stdlib, sizeof stdlib, "%s/stdlib", src_dir);
    m->c.stdlib_dir = stdlib;
    NnSource *src = nn_source_load(m->c.arena, &m->c.diags, path);
    NnAst *ast = src ? nn_parse(&m->c, src) : NULL;
    if (!ast || m->c.diags.nerrors || !(m->p = nn_sema(&m->c, ast)) || m->c.diags.nerrors ||
        m->p->ntrains < 1 ||
        !nn_lower_train(&m->c, m->p, m->p->trains[0], f, nf, NULL, 0, &m->spec)) {
        fprintf(stderr, "bench: cannot compile %s\n", path);
        return false;
    }
    const NnDecl *d = nn_sema_find(m->p, m->spec.model);
    m->infer = d ? nn_lower_model(&m->c, m->p, d->ast, false) : NULL;
    *secs = bench_now() - t0;
    if (!init_vars(m))
        return false;
    if (m->infer && !vars_cover(m->infer, &m->vars)) {
        fprintf(stderr, "bench: model graph names its parameters differently; using eval\n");
        nn_graph_free(m->infer);
        m->infer = NULL;
    }
    return true;
}

static void model_free(Model *m)
{
    nnrt_vars_fini(&m->vars);
    nnrt_vars_fini(&m->init);
    nn_graph_free(m->spec.forward);
    nn_graph_free(m->spec.step);
    nn_graph_free(m->spec.eval);
    nn_graph_free(m->infer);
    nn_ctx_fini(&m->c);
}

// ---- one graph on one backend ----

typedef struct Job {
    const NnBackend *be;
    NnGraph *g; // optimized copy, ours
    NnExec *x;
    NnVars *vars;
    NnTensor *in[2];
    NnTensor *out[4];
} Job;

// Optimizes a copy of g as the nnc driver does (interp: stage opt; JIT: fused).
static bool job_prepare(Job *j, const NnBackend *be, const NnGraph *g, NnVars *vars, int threads)
{
    j->be = be;
    j->vars = vars;
    NnPassOptions po = {.stop = strcmp(be->name, "interp") == 0 ? "opt" : "fused"};
    j->g = nn_passes_run(nn_graph_clone(g), &po);
    NnExecOptions eo = {.threads = threads};
    if (!(j->x = be->prepare(j->g, &eo))) {
        fprintf(stderr, "bench: %s cannot prepare: %s\n", be->name, nnrt_errmsg());
        return false;
    }
    return true;
}

static void job_free(Job *j)
{
    if (j->x)
        j->be->free(j->x);
    nn_graph_free(j->g);
    j->x = NULL;
    j->g = NULL;
}

static bool job_run(void *ctx)
{
    Job *j = ctx;
    if (j->be->run(j->x, j->vars, j->in, j->out) != NN_OK) {
        fprintf(stderr, "bench: %s run failed: %s\n", j->be->name, nnrt_errmsg());
        return false;
    }
    return true;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double urand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0;
}

// A tensor of n rows of the field's sample shape, uniform in [0, 1), or
// integers in [0, classes) for i32.
static NnTensor *field_tensor(const NnField *f, int64_t n, int classes)
{
    int64_t shape[NN_MAX_RANK] = {n};
    memcpy(shape + 1, f->sample.dim, sizeof(int64_t) * (size_t)f->sample.rank);
    NnTensor *t = nnrt_tensor_new(f->dtype, f->sample.rank + 1, shape);
    for (int64_t i = 0; t && i < t->numel; i++)
        nnrt_tensor_set(t, i, f->dtype == NN_DT_I32 ? (double)(int)(urand() * classes) : urand());
    return t;
}

// ---- the measurements ----

static const NnBackend *backend(const char *name)
{
    const NnBackend *be = nn_backend_find(name);
    if (!be)
        fprintf(stderr, "bench: no '%s' backend in this build\n", name);
    return be;
}

// The variables back to their initial values (m->init), in place: a step
// swaps a variable's buffer with its update's, so the tensors stay and only
// their contents are restored.
static void vars_restore(Model *m)
{
    for (int k = 0; k < m->init.count; k++) {
        NnTensor *t = nnrt_vars_get(&m->vars, m->init.names[k]);
        if (t && nnrt_tensor_nbytes(t) == nnrt_tensor_nbytes(m->init.tensors[k]))
            memcpy(t->data, m->init.tensors[k]->data, nnrt_tensor_nbytes(t));
    }
}

// A training step, timed as bench_time does, but every repetition starts
// from the initial variables. Trained on one resident batch for thousands of
// steps, the MLP memorizes it, units die, and the Adam first moments of their
// weights (m *= 0.9 each step, gradient 0) sink into subnormal floats after
// about 700 steps and stay there (0.9 times the smallest subnormal rounds
// back to it): every update then takes microcode assists and the step costs
// 2.7x (bench/README.md). A repetition of a few hundred steps from the start
// times what a user's first epochs run.
static double time_steps(Job *j, Model *m, double min_s, int reps)
{
    vars_restore(m);
    long n = bench_calibrate(job_run, j, min_s);
    if (n < 0)
        return -1;
    double v[32];
    reps = quick && reps > 3 ? 3 : reps > 32 ? 32 : reps;
    for (int r = 0; r < reps; r++) {
        vars_restore(m);
        if (!job_run(j) || (v[r] = bench_rep(job_run, j, n)) < 0)
            return -1;
    }
    return bench_median(v, reps);
}

// Seconds per step of graph g at batch n; negative on failure.
static double time_graph(const char *be_name, const NnGraph *g, Model *m, const NnField *f,
                         int nf, int64_t n, int classes, int threads, double min_s)
{
    const NnBackend *be = backend(be_name);
    Job j = {0};
    double s = -1;
    for (int k = 0; k < nf; k++)
        j.in[k] = field_tensor(&f[k], n, classes);
    if (be && j.in[0] && (nf < 2 || j.in[1]) && job_prepare(&j, be, g, &m->vars, threads))
        s = g->nupdates ? time_steps(&j, m, min_s, 7) : bench_time(job_run, &j, min_s, 7);
    job_free(&j);
    for (int k = 0; k < nf; k++)
        nnrt_tensor_free(j.in[k]);
    return s;
}

static void emit_time(const char *key, double secs, double scale)
{
    if (secs > 0)
        bench_emit(key, secs * scale);
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// JIT compile time of the step on one thread: optimize, prepare, first run,
// less the second (steady) run. LLVM compiles on the calling thread, so its
// CPU time is the compile's cost even when other work shares the core; the
// wall time is reported too. Median of 5; wall_s gets the wall figure.
static double compile_secs(Model *m, const NnField *f, int64_t n, int classes, double *wall_s)
{
    const NnBackend *be = backend("jit");
    if (!be)
        return -1;
    double cpu[5], wall[5];
    int reps = quick ? 1 : 5;
    for (int r = 0; r < reps; r++) {
        Job j = {0};
        j.in[0] = field_tensor(&f[0], n, classes);
        j.in[1] = field_tensor(&f[1], n, classes);
        double w0 = bench_now(), c0 = thread_cpu();
        bool ok = job_prepare(&j, be, m->spec.step, &m->vars, 1) && job_run(&j);
        double w1 = bench_now(), c1 = thread_cpu();
        ok = ok && job_run(&j);
        double w2 = bench_now(), c2 = thread_cpu();
        cpu[r] = (c1 - c0) - (c2 - c1);
        wall[r] = (w1 - w0) - (w2 - w1);
#ifdef NN_WITH_LLVM
        if (ok && r == 0)
            bench_emit("mlp_jit_kernels", nn_llvm_kernel_count(j.x));
#endif
        job_free(&j);
        nnrt_tensor_free(j.in[0]);
        nnrt_tensor_free(j.in[1]);
        if (!ok)
            return -1;
    }
    *wall_s = bench_median(wall, reps);
    return bench_median(cpu, reps);
}

// --overheads: only the JIT's XOR step, batch-1 inference and compile time,
// on 1 thread (quick, and what perf should look at for per-step costs).
static bool xor_only;
static bool infer_only; // --infer1: only batch-1 inference (with xor_only set)

// FLOPs per sample of g's training step at batch n, counted from the graph as
// the JIT runs it (optimized and fused).
static double flops_per_sample(const NnGraph *g, int64_t n)
{
    NnPassOptions po = {.stop = "fused"};
    NnGraph *h = nn_passes_run(nn_graph_clone(g), &po);
    int64_t symv[NN_MAX_SYMS];
    for (int k = 0; k < NN_MAX_SYMS; k++)
        symv[k] = n;
    double f = nn_graph_flops(h, symv).total / (double)n;
    nn_graph_free(h);
    return f;
}

// Seconds per call of graph g at batch 1 on the JIT with `threads` threads,
// the best of `windows` windows of 16 back-to-back calls by wall time: on a
// machine shared with other work, the windows in which every thread of ours
// kept its core (a window is ~0.1 ms, a scheduler slice several ms).
static double best_window(const NnGraph *g, Model *m, const NnField *f, int nf, int threads,
                          int windows)
{
    const NnBackend *be = backend("jit");
    Job j = {0};
    double best = -1;
    for (int k = 0; k < nf; k++)
        j.in[k] = field_tensor(&f[k], 1, 10);
    if (be && j.in[0] && (nf < 2 || j.in[1]) && job_prepare(&j, be, g, &m->vars, threads)) {
        double t = bench_rep(job_run, &j, 2000); // warm: compile, caches, spinning workers
        for (int w = 0; w < windows && t >= 0; w++) {
            t = bench_rep(job_run, &j, 16);
            best = best < 0 || (t >= 0 && t < best) ? t : best;
        }
    }
    job_free(&j);
    for (int k = 0; k < nf; k++)
        nnrt_tensor_free(j.in[k]);
    return best;
}

// The distribution of single calls of graph g at batch 1 on the JIT with
// `threads` threads (after 2000 warm calls): 20,000 calls timed one by one,
// keys infer1_jit_t<T>_p10/p50/p90/p99_us and _mean_us. What separates the
// median of the averaged runs (infer1_jit_t<T>_us) from the best window:
// a shift of every call, or a tail of a few slow ones.
static void call_spread(const NnGraph *g, Model *m, const NnField *f, int nf, int threads)
{
    enum { CALLS = 20000 };
    const NnBackend *be = backend("jit");
    Job j = {0};
    double *v = malloc(CALLS * sizeof *v);
    for (int k = 0; k < nf; k++)
        j.in[k] = field_tensor(&f[k], 1, 10);
    if (v && be && j.in[0] && (nf < 2 || j.in[1]) && job_prepare(&j, be, g, &m->vars, threads) &&
        bench_rep(job_run, &j, 2000) >= 0) {
        double sum = 0, t0 = bench_now();
        int n = 0;
        for (; n < CALLS; n++) {
            if (!job_run(&j))
                break;
            double t1 = bench_now();
            sum += v[n] = t1 - t0;
            t0 = t1;
        }
        if (n == CALLS) {
            static const int pct[] = {10, 50, 90, 99};
            char key[64];
            snprintf(key, sizeof key, "infer1_jit_t%d_mean_us", threads);
            emit_time(key, sum / CALLS, 1e6);
            qsort(v, CALLS, sizeof *v, cmp_double);
            for (int i = 0; i < 4; i++) {
                snprintf(key, sizeof key, "infer1_jit_t%d_p%d_us", threads, pct[i]);
                emit_time(key, v[CALLS / 100 * pct[i]], 1e6);
            }
        }
    }
    free(v);
    job_free(&j);
    for (int k = 0; k < nf; k++)
        nnrt_tensor_free(j.in[k]);
}

// Batch-1 inference of the MLP (the model alone when it runs on the step's
// variables, else eval): interpreter (not under --overheads) and JIT, 1 and 2
// threads, wall time; the 1-thread JIT also by CPU time; the JIT's best
// window (best_window) on 1 and 2 threads.
static void bench_infer1(Model *m, const NnField *f)
{
    bool alone = m->infer != NULL;
    const NnGraph *ig = alone ? m->infer : m->spec.eval;
    char key[64];
    bench_emit("infer_model_only", alone);
    for (int t = 1; t <= 2; t++) {
        snprintf(key, sizeof key, "infer1_jit_t%d_best_us", t);
        emit_time(key, best_window(ig, m, f, alone ? 1 : 2, t, quick ? 300 : 3000), 1e6);
        if (infer_only)
            call_spread(ig, m, f, alone ? 1 : 2, t);
    }
    for (int t = 1; t <= 2; t++) {
        snprintf(key, sizeof key, "infer1_interp_t%d_us", t);
        if (!xor_only)
            emit_time(key, time_graph("interp", ig, m, f, alone ? 1 : 2, 1, 10, t, 0.1), 1e6);
        snprintf(key, sizeof key, "infer1_jit_t%d_us", t);
        emit_time(key, time_graph("jit", ig, m, f, alone ? 1 : 2, 1, 10, t, 0.1), 1e6);
        if (t == 1) {
            cpu_clock = true;
            emit_time("infer1_jit_t1_cpu_us",
                      time_graph("jit", ig, m, f, alone ? 1 : 2, 1, 10, t, 0.1), 1e6);
            cpu_clock = false;
        }
    }
}

// The MLP training step at batch 128 (bench/mlp.nn, dropout 0.2, as key
// prefix "mlp"; bench/mlp_nodrop.nn as "mlpnd"), then, for the first, batch-1
// inference and the compile time.
static void bench_mlp(const char *file, const char *prefix, bool all)
{
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 1, .dim = {784}}}, {"label", NN_DT_I32, {.rank = 0}}};
    Model m;
    double front[3];
    for (int r = 0; r < 3; r++) {
        if (r)
            model_free(&m);
        if (!model_load(&m, file, f, 2, &front[r]))
            return;
    }
    const int64_t batch = 128;
    char key[64];
    snprintf(key, sizeof key, "%s_flops_per_sample", prefix);
    bench_emit(key, flops_per_sample(m.spec.step, batch));
    for (int t = 1; t <= 2 && !xor_only; t++) {
        double s = time_graph("interp", m.spec.step, &m, f, 2, batch, 10, t, 0.2);
        snprintf(key, sizeof key, "%s_train_interp_t%d_sps", prefix, t);
        emit_time(key, 1 / s, batch);
        s = time_graph("jit", m.spec.step, &m, f, 2, batch, 10, t, 0.2);
        snprintf(key, sizeof key, "%s_train_jit_t%d_sps", prefix, t);
        emit_time(key, 1 / s, batch);
    }
    if (xor_only) {
        cpu_clock = true;
        double s = time_graph("jit", m.spec.step, &m, f, 2, batch, 10, 1, 0.2);
        snprintf(key, sizeof key, "%s_train_jit_t1_cpu_sps", prefix);
        emit_time(key, 1 / s, batch);
        cpu_clock = false;
    }
    if (!all) {
        model_free(&m);
        return;
    }
    bench_infer1(&m, f);
    double wall = -1, c = compile_secs(&m, f, batch, 10, &wall);
    bench_emit("mlp_front_ms", bench_median(front, 3) * 1e3);
    emit_time("mlp_compile_ms", c, 1e3);
    emit_time("mlp_compile_wall_ms", wall, 1e3);
    model_free(&m);
}


// --bare-trace: the bare step's cost as the same resident batch trains on,
// in chunks of 100 steps (1 thread, thread CPU time), with the loss and the
// share of subnormal values among the Adam second moments: what separates
// the bare step from whole epochs.
static void bare_trace(void)
{
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 1, .dim = {784}}}, {"label", NN_DT_I32, {.rank = 0}}};
    Model m;
    double front;
    if (!model_load(&m, "mlp_nodrop.nn", f, 2, &front))
        return;
    const NnBackend *be = backend("jit");
    Job j = {0};
    j.in[0] = field_tensor(&f[0], 128, 10);
    j.in[1] = field_tensor(&f[1], 128, 10);
    if (!be || !job_prepare(&j, be, m.spec.step, &m.vars, 1))
        return;
    for (int c = 0; c < 10; c++) {
        double t0 = bench_cpu_now();
        for (int i = 0; i < 100; i++)
            if (!job_run(&j))
                return;
        double ms = (bench_cpu_now() - t0) * 10;
        long sub = 0, all = 0;
        for (int k = 0; k < m.vars.count; k++) {
            const NnTensor *t = m.vars.tensors[k];
            if (t->dtype != NN_DT_F32)
                continue;
            for (int64_t i = 0; i < t->numel; i++) {
                float x = ((const float *)t->data)[i];
                sub += x != 0 && fabsf(x) < 1.17549435e-38f;
                all++;
            }
        }
        fprintf(stderr, "steps %5d: %.3f ms/step  loss %.6g  subnormal %.4f%%\n", (c + 1) * 100,
                ms, nnrt_tensor_get(j.out[0], 0), 100.0 * (double)sub / (double)all);
    }
    for (int k = 0; k < m.vars.count; k++) {
        const NnTensor *t = m.vars.tensors[k];
        long sub = 0, zero = 0;
        for (int64_t i = 0; t->dtype == NN_DT_F32 && i < t->numel; i++) {
            float x = ((const float *)t->data)[i];
            sub += x != 0 && fabsf(x) < 1.17549435e-38f;
            zero += x == 0;
        }
        if (sub || zero)
            fprintf(stderr, "  %s: %ld subnormal, %ld zero of %lld\n", m.vars.names[k], sub, zero,
                    (long long)t->numel);
    }
    job_free(&j);
    nnrt_tensor_free(j.in[0]);
    nnrt_tensor_free(j.in[1]);
    model_free(&m);
}

// ---- the read bandwidth that bounds batch-1 inference ----

// Batch-1 inference reads the first layer's 784 x 256 f32 weights (802,816
// bytes) once per prediction and does 2 FLOPs per 4 bytes read, so its floor
// is the rate one core reads a block of that size that stays in its L2, not
// the FMA peak. Sums it with 8 independent chains of full-width vector adds
// (the widest the CPU has), which keeps the loads, not the adds, the limit.
// The chains are 8 named variables: as an array indexed in an inner loop,
// gcc -O2 kept them on the stack, one store-to-load round trip per add, and
// the "L2 rate" was the adds' (97 GB/s; the JIT's product reads 164).
typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));

// One summing function per vector width, each compiled for its target.
#define SUM_CHAINS(name, vt, lanes, isa)                                                       \
    __attribute__((target(isa), noinline)) static float name(const float *p, size_t n)         \
    {                                                                                          \
        vt a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};     \
        const vt *v = (const vt *)p;                                                           \
        for (size_t i = 0; i + 8 <= n / (lanes); i += 8) {                                     \
            a0 += v[i];                                                                        \
            a1 += v[i + 1];                                                                    \
            a2 += v[i + 2];                                                                    \
            a3 += v[i + 3];                                                                    \
            a4 += v[i + 4];                                                                    \
            a5 += v[i + 5];                                                                    \
            a6 += v[i + 6];                                                                    \
            a7 += v[i + 7];                                                                    \
        }                                                                                      \
        vt t = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));                              \
        float s = 0;                                                                           \
        for (int l = 0; l < (lanes); l++)                                                      \
            s += t[l];                                                                         \
        return s;                                                                              \
    }
SUM_CHAINS(sum512, v16f, 16, "avx512f")
SUM_CHAINS(sum256, v8f, 8, "avx2")

// GB/s reading `bytes` that stay resident, best of 15 trials by thread CPU
// time (a trial is several passes over the block after one warm pass).
static double read_gbs(size_t bytes)
{
    bool wide = __builtin_cpu_supports("avx512f");
    if (!wide && !__builtin_cpu_supports("avx2"))
        return -1;
    size_t n = bytes / sizeof(float) / 128 * 128;
    float *p = nnrt_alloc(n * sizeof(float));
    if (!p)
        return -1;
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(i & 7);
    volatile float sink = 0;
    int passes = (int)(((size_t)64 << 20) / (n * sizeof(float))) + 1;
    double best = 1e30;
    for (int t = 0; t < 15; t++) {
        sink += wide ? sum512(p, n) : sum256(p, n);
        double t0 = bench_cpu_now();
        for (int r = 0; r < passes; r++)
            sink += wide ? sum512(p, n) : sum256(p, n);
        double dt = (bench_cpu_now() - t0) / passes;
        best = dt < best ? dt : best;
    }
    nnrt_free(p);
    return (double)(n * sizeof(float)) / best * 1e-9;
}

static void bench_read_bw(void)
{
    bench_emit("read_l1_32k_gbs", read_gbs(32 << 10));
    double l2 = read_gbs(802816);
    bench_emit("read_l2_784x256_gbs", l2);
    bench_emit("read_big_64m_gbs", read_gbs(64 << 20));
    if (l2 > 0)
        bench_emit("infer1_l2_floor_us", 802816 / (l2 * 1e9) * 1e6);
}

static void bench_xor(void)
{
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 1, .dim = {2}}},
                    {"y", NN_DT_F32, {.rank = 1, .dim = {1}}}};
    Model m;
    double front;
    if (!model_load(&m, "xor.nn", f, 2, &front))
        return;
    for (int t = 1; t <= (xor_only ? 1 : 2); t++) {
        char key[64];
        snprintf(key, sizeof key, "xor_interp_t%d_us", t);
        if (!xor_only)
            emit_time(key, time_graph("interp", m.spec.step, &m, f, 2, 4, 2, t, 0.1), 1e6);
        snprintf(key, sizeof key, "xor_jit_t%d_us", t);
        emit_time(key, time_graph("jit", m.spec.step, &m, f, 2, 4, 2, t, 0.1), 1e6);
        if (t == 1) {
            cpu_clock = true;
            emit_time("xor_jit_t1_cpu_us", time_graph("jit", m.spec.step, &m, f, 2, 4, 2, t, 0.1),
                      1e6);
            cpu_clock = false;
        }
    }
    model_free(&m);
}

// The CNN training steps of bench/lenet5.nn and bench/cnn2.nn (the models of
// examples/lenet5.nn and examples/fashion_cnn.nn) at their batch of 64:
// interpreter and JIT, 1 and 2 threads. Keys cnn_<model>_<backend>_t<T>_sps.
static void bench_cnn(void)
{
    static const char *const models[] = {"lenet5", "cnn2"};
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 3, .dim = {1, 28, 28}}},
                    {"label", NN_DT_I32, {.rank = 0}}};
    for (int k = 0; k < 2; k++) {
        char file[32];
        snprintf(file, sizeof file, "%s.nn", models[k]);
        Model m;
        double front;
        if (!model_load(&m, file, f, 2, &front))
            continue;
        const int64_t batch = 64;
        for (int t = 1; t <= 2; t++) {
            char key[64];
            snprintf(key, sizeof key, "cnn_%s_interp_t%d_sps", models[k], t);
            emit_time(key, 1 / time_graph("interp", m.spec.step, &m, f, 2, batch, 10, t, 0.3),
                      batch);
            snprintf(key, sizeof key, "cnn_%s_jit_t%d_sps", models[k], t);
            emit_time(key, 1 / time_graph("jit", m.spec.step, &m, f, 2, batch, 10, t, 0.3), batch);
        }
        model_free(&m);
    }
}

int main(int argc, char **argv)
{
    bool models = true, gemm = true, conv = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--models"))
            gemm = conv = false;
        else if (!strcmp(argv[i], "--gemm"))
            models = conv = false;
        else if (!strcmp(argv[i], "--conv"))
            models = gemm = false;
        else if (!strcmp(argv[i], "--bare-trace"))
            return bare_trace(), 0;
        else if (!strcmp(argv[i], "--infer1"))
            infer_only = xor_only = true, models = gemm = conv = false;
        else if (!strcmp(argv[i], "--overheads"))
            xor_only = true, models = gemm = conv = false;
        else if (!strcmp(argv[i], "--peak")) { // the FMA peak alone (bench/run.sh, around the epochs)
            printf("{\n");
            bench_peak(true);
            printf("  \"quick\": %d\n}\n", quick);
            return 0;
        }
        else
            src_dir = argv[i];
    }
    printf("{\n");
    if (models) {
        bench_mlp("mlp.nn", "mlp", true);
        bench_mlp("mlp_nodrop.nn", "mlpnd", false);
        bench_xor();
        bench_cnn();
    }
    if (infer_only) {
        NnField f[2] = {{"x", NN_DT_F32, {.rank = 1, .dim = {784}}},
                        {"label", NN_DT_I32, {.rank = 0}}};
        Model m;
        double front;
        if (model_load(&m, "mlp.nn", f, 2, &front)) {
            bench_infer1(&m, f);
            model_free(&m);
        }
    } else if (xor_only) {
        bench_mlp("mlp.nn", "mlp", true);
        bench_xor();
        bench_read_bw();
    }
    if (gemm) {
        bench_peak(false);
        bench_gemm();
    }
    if (conv)
        bench_conv();
    if (gemm || conv)
        bench_peak(true);
    printf("  \"quick\": %d\n}\n", quick);
    return 0;
}
