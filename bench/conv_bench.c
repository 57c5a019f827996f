// Generated convolution kernels against the machine's FMA peak. Each case is
// a one-node graph (CONV2D, CONV2D_BWD_DATA or CONV2D_BWD_FILTER) run through
// nn_backend_jit, so it is exactly the code the compiler emits for that op.
// The shapes are the two convolutions of the 2-conv model at batch 128 (the
// second, 32->64 channels at 14x14, is the one the issue sets a target for)
// and LeNet-5's two. GFLOP/s count 2 flops per multiply-add of the direct
// definition (no skipped padding); keys conv_<case>_<op>_t<threads>_gflops.
// fwd_pool is the forward with a max pool 2 after it, which runs inside the
// convolution's kernel (flops: the convolution's only).
// On one thread the kernel's CPU time is measured too (best of 20 runs), with
// the FMA peak measured the same way: on a shared machine that share of the
// peak holds steady where wall-clock figures do not (conv_*_t1_cpu_gflops,
// peak_cpu_gflops).
#include <immintrin.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "bench.h"

// 12 independent FMA chains, as gemm_bench.c's peak, on the calling thread.
__attribute__((target("avx512f,fma"))) static float peak_chains(long iters)
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

// GFLOP/s per CPU second of the calling thread, best of 20 short trials; 0
// without AVX-512.
static double peak_cpu(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f"))
        return 0;
    const long iters = 200000;
    double best = 0;
    for (int r = 0; r < 20; r++) {
        double t0 = bench_cpu_now();
        volatile float sink = peak_chains(iters);
        (void)sink;
        double g = 2.0 * 12 * 16 * (double)iters / (bench_cpu_now() - t0) * 1e-9;
        best = g > best ? g : best;
    }
    return best;
}

typedef struct ConvShape {
    const char *name;
    int64_t n, c, h, w, f, k; // square k x k kernel, stride 1
    int pad;                  // each side
} ConvShape;

static const ConvShape shapes[] = {
    {"c2l2", 64, 32, 14, 14, 64, 5, 2}, // examples/fashion_cnn.nn, layer 2 (the target)
    {"c2l1", 64, 1, 28, 28, 32, 5, 2},  // 2-conv model, layer 1
    {"lenet1", 64, 1, 28, 28, 6, 5, 2}, // LeNet-5, layer 1 (padded 28x28)
    {"lenet2", 64, 6, 14, 14, 16, 5, 0}, // LeNet-5, layer 2 (valid: 10x10 out)
};

typedef struct ConvJob {
    NnExec *x;
    NnTensor *in[2], *out[1];
} ConvJob;

static bool run_conv(void *p)
{
    ConvJob *j = p;
    return nn_backend_jit.run(j->x, NULL, j->in, j->out) == NN_OK;
}

static NnTensor *rand_tensor(const NnShape *s, unsigned seed)
{
    NnTensor *t = nnrt_tensor_new(NN_DT_F32, s->rank, s->dim);
    float *d = t ? t->data : NULL;
    for (int64_t i = 0; d && i < t->numel; i++) {
        seed = seed * 1103515245u + 12345u;
        d[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    return t;
}

static void conv_one(const ConvShape *s, NnOp op, bool pool, int threads, double min_s)
{
    NnGraph *g = nn_graph_new();
    NnLoc loc = {0};
    NnConv2d cv = {.kernel = {(int)s->k, (int)s->k}, .stride = {1, 1}, .dilation = {1, 1},
                   .pad = {s->pad, s->pad, s->pad, s->pad}, .groups = 1};
    int64_t oh = s->h + 2 * s->pad - s->k + 1, ow = s->w + 2 * s->pad - s->k + 1;
    NnShape xs = {4, {s->n, s->c, s->h, s->w}}, ws = {4, {s->f, s->c, s->k, s->k}};
    NnShape ys = {4, {s->n, s->f, oh, ow}};
    const NnShape *a = op == NN_OP_CONV2D_BWD_DATA ? &ys : &xs;
    const NnShape *b = op == NN_OP_CONV2D_BWD_FILTER ? &ys : &ws;
    NnId ia = nn_ir_source(g, NN_OP_INPUT, "a", NN_DT_F32, a, loc);
    NnId ib = nn_ir_source(g, NN_OP_INPUT, "b", NN_DT_F32, b, loc);
    NnId y = op == NN_OP_CONV2D            ? nn_ir_conv2d(g, ia, ib, &cv, loc)
             : op == NN_OP_CONV2D_BWD_DATA ? nn_ir_conv2d_bwd_data(g, ia, ib, &xs, &cv, loc)
                                           : nn_ir_conv2d_bwd_filter(g, ia, ib, &ws, &cv, loc);
    NnConv2d pv = {.kernel = {2, 2}, .stride = {2, 2}, .dilation = {1, 1}, .groups = 1};
    if (pool && y >= 0)
        y = nn_ir_pool2d(g, NN_OP_MAX_POOL2D, y, &pv, loc);
    ConvJob j = {0};
    char key[80];
    const char *opn = op == NN_OP_CONV2D ? (pool ? "fwd_pool" : "fwd") : op == NN_OP_CONV2D_BWD_DATA ? "bwd_data"
                                                                               : "bwd_filter";
    if (y >= 0) {
        nn_graph_add_output(g, "y", y);
        j.in[0] = rand_tensor(a, 1);
        j.in[1] = rand_tensor(b, 2);
        NnExecOptions eo = {.threads = threads};
        j.x = nn_backend_jit.prepare(g, &eo);
    }
    double flop = 2.0 * (double)(s->n * s->f * oh * ow) * (double)(s->c * s->k * s->k);
    double t = j.x && j.in[0] && j.in[1] ? bench_time(run_conv, &j, min_s, 9) : -1;
    if (t > 0) {
        snprintf(key, sizeof key, "conv_%s_%s_t%d_gflops", s->name, opn, threads);
        bench_emit(key, flop / t * 1e-9);
        double cpu = 1e30;
        for (int r = 0; r < 20 && threads == 1; r++) {
            double t0 = bench_cpu_now();
            run_conv(&j);
            double dt = bench_cpu_now() - t0;
            cpu = dt < cpu ? dt : cpu;
        }
        snprintf(key, sizeof key, "conv_%s_%s_t1_cpu_gflops", s->name, opn);
        if (threads == 1)
            bench_emit(key, flop / cpu * 1e-9);
    } else {
        fprintf(stderr, "bench: conv %s %s: %s\n", s->name, opn, y < 0 ? g->err : nnrt_errmsg());
    }
    if (j.x)
        nn_backend_jit.free(j.x);
    nn_graph_free(g);
    nnrt_tensor_free(j.in[0]);
    nnrt_tensor_free(j.in[1]);
}

void bench_conv(void)
{
    static const NnOp ops[4] = {NN_OP_CONV2D, NN_OP_CONV2D, NN_OP_CONV2D_BWD_DATA,
                                NN_OP_CONV2D_BWD_FILTER};
    bench_emit("peak_cpu_gflops", peak_cpu());
    for (int t = 1; t <= 2; t++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int k = 0; k < 4; k++)
                conv_one(&shapes[i], ops[k], k == 1, t, 0.05);
}
