// Generated matmul against OpenBLAS, and the machine's FMA peak. A matmul is
// a one-node graph (C = op(A) @ op(B)) run through nn_backend_jit, so it is
// exactly the code the compiler emits for a MATMUL; OpenBLAS runs the same
// shapes with cblas_sgemm. Both use the same thread count (1, then 2). The
// peak is many independent vector FMAs per thread, on 1 and 2 threads.
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "backend.h"
#include "bench.h"

// ---- FMA peak ----

enum { PEAK_ITERS = 1 << 22 };

// 12 independent accumulators hide the FMA latency on any current x86 core.
__attribute__((target("avx512f,fma"))) static float peak_avx512(long iters)
{
    __m512 a[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm512_set1_ps((float)i);
    for (long n = 0; n < iters; n++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm512_fmadd_ps(a[i], m, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++)
        s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float peak_avx2(long iters)
{
    __m256 a[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    for (long n = 0; n < iters; n++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_fmadd_ps(a[i], m, c);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++)
        s = _mm256_add_ps(s, a[i]);
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[7];
}

typedef struct PeakArg {
    bool wide;
    long iters;
    volatile float sink;
} PeakArg;

static void *peak_thread(void *p)
{
    PeakArg *a = p;
    a->sink = a->wide ? peak_avx512(a->iters) : peak_avx2(a->iters);
    return NULL;
}

// GFLOP/s of `threads` threads each doing iters x 12 vector FMAs: the best of
// many short trials, since a peak is what the core can do when nothing else
// runs (on a shared machine some trials lose their core for a while).
static double peak_gflops(bool wide, int threads)
{
    pthread_t th[2];
    PeakArg arg[2];
    long iters = PEAK_ITERS / 64;
    double flops = 2.0 * 12 * (wide ? 16 : 8), best = 0;
    for (int r = 0; r < 16; r++) {
        double t0 = bench_now();
        for (int i = 0; i < threads; i++) {
            arg[i] = (PeakArg){wide, iters, 0};
            pthread_create(&th[i], NULL, peak_thread, &arg[i]);
        }
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
        double dt = bench_now() - t0, g = flops * (double)iters * threads / dt * 1e-9;
        if (r == 0)
            iters = (long)((double)iters * 0.02 / dt) + 1; // trials of about 20 ms
        else if (g > best)
            best = g;
    }
    return best;
}

// Best GFLOP/s seen so far per thread count: bench_peak runs before and after
// the matmuls and reports the higher, so one busy moment does not set it.
static double peak_seen[3];

void bench_peak(bool emit)
{
    __builtin_cpu_init();
    bool avx512 = __builtin_cpu_supports("avx512f");
    for (int t = 1; t <= 2; t++) {
        double g = __builtin_cpu_supports("avx2") ? peak_gflops(false, t) : 0;
        if (avx512) {
            double w = peak_gflops(true, t);
            g = w > g ? w : g;
        }
        peak_seen[t] = g > peak_seen[t] ? g : peak_seen[t];
        char key[32];
        snprintf(key, sizeof key, "peak_t%d_gflops", t);
        if (emit)
            bench_emit(key, peak_seen[t]);
    }
}

// ---- matmul ----

typedef struct Gemm {
    const char *name; // key stem
    int64_t m, n, k;
    bool ta, tb;
} Gemm;

// Square sizes, then the MLP step's matmuls at batch 128 (forward, then the
// weight and input gradients of the backward pass).
static const Gemm gemms[] = {
    {"sq256", 256, 256, 256, false, false},
    {"sq512", 512, 512, 512, false, false},
    {"sq1024", 1024, 1024, 1024, false, false},
    {"fwd1", 128, 256, 784, false, false},  // x[128,784] @ w1[784,256]
    {"fwd2", 128, 128, 256, false, false},  // h1 @ w2
    {"fwd3", 128, 10, 128, false, false},   // h2 @ w3
    {"dw1", 784, 256, 128, true, false},    // x^T @ dh1
    {"dw2", 256, 128, 128, true, false},    // h1^T @ dh2
    {"dh1", 128, 256, 128, false, true},    // dh2 @ w2^T
    {"dh2", 128, 128, 10, false, true},     // dlogits @ w3^T
    {"inf1", 1, 256, 784, false, false},    // batch-1 inference: x[1,784] @ w1
    // The same step at batch 1024, where it is compute bound.
    {"fwd1_b1024", 1024, 256, 784, false, false},
    {"fwd2_b1024", 1024, 128, 256, false, false},
    {"dw1_b1024", 784, 256, 1024, true, false},
    {"dw2_b1024", 256, 128, 1024, true, false},
    {"dh1_b1024", 1024, 256, 128, false, true},
};

typedef struct GemmJob {
    const Gemm *s;
    NnExec *x;
    NnTensor *in[2], *out[1];
    float *c;
} GemmJob;

static bool run_jit(void *p)
{
    GemmJob *j = p;
    return nn_backend_jit.run(j->x, NULL, j->in, j->out) == NN_OK;
}

static bool run_blas(void *p)
{
    GemmJob *j = p;
    const Gemm *s = j->s;
    const float *a = j->in[0]->data, *b = j->in[1]->data;
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                (int)s->m, (int)s->n, (int)s->k, 1.0f, a, s->ta ? (int)s->m : (int)s->k, b,
                s->tb ? (int)s->k : (int)s->n, 0.0f, j->c, (int)s->n);
    return true;
}

static NnTensor *rand_matrix(int64_t r, int64_t c, unsigned seed)
{
    int64_t shape[2] = {r, c};
    NnTensor *t = nnrt_tensor_new(NN_DT_F32, 2, shape);
    float *d = t ? t->data : NULL;
    for (int64_t i = 0; d && i < t->numel; i++) {
        seed = seed * 1103515245u + 12345u;
        d[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    return t;
}

// Largest relative difference between the JIT's and OpenBLAS's results.
static double max_rel_diff(const float *x, const float *y, int64_t n)
{
    double worst = 0, scale = 1e-6;
    for (int64_t i = 0; i < n; i++)
        scale = fabsf(y[i]) > scale ? fabsf(y[i]) : scale;
    for (int64_t i = 0; i < n; i++) {
        double d = fabsf(x[i] - y[i]) / scale;
        worst = d > worst ? d : worst;
    }
    return worst;
}

// After a call on 2 threads each side's idle workers keep spinning a while
// (nnc's pool 1 ms, runtime/pool.c; OpenBLAS's about 100 ms, measured: the
// process burned a core's worth of CPU for 100 ms after a 2-thread sgemm,
// none after 150), so a repetition started at once shares the 2 cores with
// the other side's spinner: the 2-thread figures of the idle run of
// 2026-12-01 (bench/results.md) had nnc's 128-row products slower on 2
// threads than on 1. Each side's repetitions start after the other's
// workers have gone to sleep.
enum { NNC_SPIN_MS = 5, BLAS_SPIN_MS = 150 };

static void idle(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void gemm_one(const Gemm *s, int threads, double min_s)
{
    GemmJob j = {.s = s};
    NnGraph *g = nn_graph_new();
    NnLoc loc = {0};
    NnShape sa = {2, {s->ta ? s->k : s->m, s->ta ? s->m : s->k}};
    NnShape sb = {2, {s->tb ? s->n : s->k, s->tb ? s->k : s->n}};
    NnId a = nn_ir_source(g, NN_OP_INPUT, "a", NN_DT_F32, &sa, loc);
    NnId b = nn_ir_source(g, NN_OP_INPUT, "b", NN_DT_F32, &sb, loc);
    nn_graph_add_output(g, "c", nn_ir_matmul(g, a, b, s->ta, s->tb, loc));
    j.in[0] = rand_matrix(sa.dim[0], sa.dim[1], 1);
    j.in[1] = rand_matrix(sb.dim[0], sb.dim[1], 2);
    j.c = nnrt_alloc((size_t)(s->m * s->n) * sizeof(float));
    NnExecOptions eo = {.threads = threads};
    j.x = nn_backend_jit.prepare(g, &eo);
    openblas_set_num_threads(threads);
    double flop = 2.0 * (double)s->m * (double)s->n * (double)s->k;
    char key[64];
    if (j.x && j.in[0] && j.in[1] && j.c) {
        // Repetitions alternate between the two, so both see the same machine.
        // NN_BENCH_GEMM_BLAS=0: nnc alone, 15 repetitions, each timed by the
        // wall clock and by the calling thread's CPU time (on 1 thread the
        // kernel's own cost, however many processes share the core); the
        // best of each is printed too, for A/B runs on a shared machine.
        const char *bl = getenv("NN_BENCH_GEMM_BLAS");
        bool blas = !bl || *bl != '0';
        enum { REPS = 15 };
        long nj = bench_calibrate(run_jit, &j, min_s);
        long nb = blas ? bench_calibrate(run_blas, &j, min_s) : 0;
        if (blas && threads > 1)
            idle(BLAS_SPIN_MS);
        double vj[REPS], vb[REPS], tj = -1, tb = -1, best = -1, cbest = -1;
        int reps = blas ? 9 : REPS;
        for (int r = 0; r < reps; r++) {
            double c0 = bench_cpu_now();
            vj[r] = nj > 0 ? bench_rep(run_jit, &j, nj) : -1;
            double c = (bench_cpu_now() - c0) / (double)(nj > 0 ? nj : 1);
            if (blas && threads > 1)
                idle(NNC_SPIN_MS);
            vb[r] = blas ? bench_rep(run_blas, &j, nb) : -1;
            if (blas && threads > 1)
                idle(BLAS_SPIN_MS);
            best = best < 0 || vj[r] < best ? vj[r] : best;
            cbest = cbest < 0 || c < cbest ? c : cbest;
        }
        if (nj > 0)
            tj = bench_median(vj, reps);
        if (blas)
            tb = bench_median(vb, reps);
        snprintf(key, sizeof key, "gemm_%s_t%d_nnc_gflops", s->name, threads);
        if (tj > 0)
            bench_emit(key, flop / tj * 1e-9);
        if (tj > 0 && !blas) {
            snprintf(key, sizeof key, "gemm_%s_t%d_nnc_best_gflops", s->name, threads);
            bench_emit(key, flop / best * 1e-9);
            snprintf(key, sizeof key, "gemm_%s_t%d_nnc_cpubest_gflops", s->name, threads);
            bench_emit(key, flop / cbest * 1e-9);
        }
        snprintf(key, sizeof key, "gemm_%s_t%d_blas_gflops", s->name, threads);
        if (blas)
            bench_emit(key, flop / tb * 1e-9);
        if (tj > 0 && threads == 2 && blas) {
            snprintf(key, sizeof key, "gemm_%s_maxreldiff", s->name);
            bench_emit(key, max_rel_diff(j.out[0]->data, j.c, s->m * s->n));
        }
    } else {
        fprintf(stderr, "bench: matmul %s: %s\n", s->name, nnrt_errmsg());
    }
    if (j.x)
        nn_backend_jit.free(j.x);
    nn_graph_free(g);
    nnrt_tensor_free(j.in[0]);
    nnrt_tensor_free(j.in[1]);
    nnrt_free(j.c);
}

// NN_BENCH_GEMM=name,name... runs only those shapes, NN_BENCH_GEMM_THREADS=t
// only that thread count (for measuring one change at a time).
static bool gemm_wanted(const char *name)
{
    const char *sel = getenv("NN_BENCH_GEMM");
    if (!sel || !*sel)
        return true;
    size_t n = strlen(name);
    for (const char *p = sel; (p = strstr(p, name)); p += n)
        if ((p == sel || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
            return true;
    return false;
}

// NN_BENCH_GEMM_SHAPES=MxNxK[a][b],... runs those shapes instead (a: A
// transposed, b: B transposed), named by their spelling: halves of a product
// on one thread against the whole on two tell a split's own cost from the
// threads' interference.
static void gemm_custom(const char *list, int only)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    static char names[32][32];
    int nn = 0;
    for (char *tok = strtok(buf, ","); tok && nn < 32; tok = strtok(NULL, ",")) {
        long long m, n, k;
        int used = 0;
        // Each matrix at most 2^28 floats (1 GB): larger ones overflow the
        // size arithmetic or the memory long before they say anything.
        const long long lim = 1LL << 28;
        if (sscanf(tok, "%lldx%lldx%lld%n", &m, &n, &k, &used) != 3 || m < 1 || n < 1 || k < 1 ||
            m > lim || n > lim || k > lim || m * k > lim || k * n > lim || m * n > lim) {
            fprintf(stderr, "bench: NN_BENCH_GEMM_SHAPES: bad shape '%s' (MxNxK, each matrix "
                            "at most 2^28 elements)\n", tok);
            continue;
        }
        snprintf(names[nn], sizeof names[nn], "%s", tok);
        Gemm g = {names[nn], m, n, k, strchr(tok + used, 'a') != NULL,
                  strchr(tok + used, 'b') != NULL};
        nn++;
        for (int t = 1; t <= 2; t++)
            if (!only || only == t)
                gemm_one(&g, t, 0.05);
    }
}

void bench_gemm(void)
{
    // OpenBLAS picks its kernels by core type (OPENBLAS_CORETYPE overrides it).
    printf("  \"blas_core\": \"%s\",\n", openblas_get_corename());
    const char *ts = getenv("NN_BENCH_GEMM_THREADS");
    int only = ts ? atoi(ts) : 0;
    const char *shapes = getenv("NN_BENCH_GEMM_SHAPES");
    if (shapes && *shapes) {
        gemm_custom(shapes, only);
        return;
    }
    for (int t = 1; t <= 2; t++)
        for (size_t i = 0; i < sizeof gemms / sizeof gemms[0]; i++)
            if ((!only || only == t) && gemm_wanted(gemms[i].name))
                gemm_one(&gemms[i], t, 0.05);
}
