// Matrix multiply c[m, n] = op(a) @ op(b). f32 is the hot path: B is packed into
// zero-padded column panels of NR floats (phase 0), then each thread runs a
// register-blocked MR x NR micro-kernel over its rows (phase 1), blocked by
// KC (B micro-panel stays in L1) and MC (rows of A stay in L2). The micro-kernel
// exists for AVX-512, AVX2+FMA and plain SSE2, picked at run time; all share one
// pack layout. f64 is a straightforward cache-friendly loop nest.
#include <pthread.h>
#include <string.h>

#include "kernels.h"
#include "kiter.h"

enum { NR_MAX = 32, MC = 120 };

typedef void (*Ukernel)(int64_t kc, const float *a, int64_t rs, int64_t cs, const float *bp,
                        float *c, int64_t ldc, int64_t mr, int64_t nr, bool acc);

// One micro-kernel: acc[MR][NR] += a[MR rows, kc] * bp[kc, NR] in vector
// registers (NR / W vectors of W floats per row), then stored to c (m x n tile
// at most MR x NR; rows past mr re-read row mr - 1 and are discarded).
#define DEF_UKERNEL(name, ATTR, W, MR, NR)                                                         \
    typedef float name##_v __attribute__((vector_size(W * 4)));                                    \
    ATTR static void name(int64_t kc, const float *a, int64_t rs, int64_t cs, const float *bp,     \
                          float *c, int64_t ldc, int64_t mr, int64_t nr, bool acc)                 \
    {                                                                                              \
        name##_v sum[MR][NR / W];                                                                  \
        const float *arow[MR];                                                                     \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                      \
        {                                                                                          \
            arow[i] = a + (i < mr ? i : mr - 1) * rs;                                              \
            _Pragma("GCC unroll 16") for (int j = 0; j < NR / W; j++) sum[i][j] = (name##_v){0};   \
        }                                                                                          \
        for (int64_t p = 0; p < kc; p++) {                                                         \
            name##_v b[NR / W];                                                                    \
            _Pragma("GCC unroll 16") for (int j = 0; j < NR / W; j++)                              \
                memcpy(&b[j], bp + p * NR + j * W, sizeof b[j]);                                   \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                  \
            {                                                                                      \
                float av = arow[i][p * cs];                                                        \
                _Pragma("GCC unroll 16") for (int j = 0; j < NR / W; j++) sum[i][j] += av * b[j]; \
            }                                                                                      \
        }                                                                                          \
        if (mr == MR && nr == NR) {                                                                \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                  \
                _Pragma("GCC unroll 16") for (int j = 0; j < NR / W; j++)                          \
            {                                                                                      \
                float *cp = c + i * ldc + j * W;                                                   \
                name##_v old = {0};                                                                \
                if (acc)                                                                           \
                    memcpy(&old, cp, sizeof old);                                                  \
                old += sum[i][j];                                                                  \
                memcpy(cp, &old, sizeof old);                                                      \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        float tile[MR][NR];                                                                        \
        memcpy(tile, sum, sizeof tile);                                                            \
        for (int64_t i = 0; i < mr; i++)                                                           \
            for (int64_t j = 0; j < nr; j++)                                                       \
                c[i * ldc + j] = (acc ? c[i * ldc + j] : 0.0f) + tile[i][j];                       \
    }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
DEF_UKERNEL(ukernel_avx512, __attribute__((target("avx512f,fma"))), 16, 8, 32)
DEF_UKERNEL(ukernel_avx2, __attribute__((target("avx2,fma"))), 8, 6, 16)
#define HAVE_X86_VARIANTS 1
#endif
DEF_UKERNEL(ukernel_generic, , 4, 4, 8)

typedef struct Variant {
    Ukernel fn;
    int mr, nr, kc;
} Variant;

static Variant pick_variant(void)
{
#ifdef HAVE_X86_VARIANTS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
        return (Variant){ukernel_avx512, 8, 32, 128};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (Variant){ukernel_avx2, 6, 16, 256};
#endif
    return (Variant){ukernel_generic, 4, 8, 512};
}

static Variant chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;
static void choose(void) { chosen = pick_variant(); }

static Variant variant(void)
{
    pthread_once(&chosen_once, choose);
    return chosen;
}

size_t nnrt_matmul_pack_size(NnDType dt, int64_t n, int64_t k)
{
    if (dt != NN_DT_F32)
        return 0;
    return (size_t)((n + NR_MAX - 1) / NR_MAX * NR_MAX) * (size_t)k * sizeof(float);
}

// Panel j holds B[0..k, j*NR .. j*NR + NR) row by row, zero-padded past n.
void nnrt_matmul_pack(const NnrtMatmul *a, int ith, int nth)
{
    if (a->dt != NN_DT_F32)
        return;
    Variant v = variant();
    int64_t nr = v.nr, k = a->k, n = a->n, npanel = (n + nr - 1) / nr, lo, hi;
    const float *b = a->b;
    nnrt_split(npanel, 1, ith, nth, &lo, &hi);
    for (int64_t j = lo; j < hi; j++) {
        float *dst = (float *)a->pack + j * nr * k;
        int64_t cols = n - j * nr < nr ? n - j * nr : nr;
        if (a->tb) {
            // B is [n, k]: read each of its rows once, write a panel column.
            for (int64_t q = 0; q < cols; q++) {
                const float *src = b + (j * nr + q) * k;
                for (int64_t p = 0; p < k; p++)
                    dst[p * nr + q] = src[p];
            }
            for (int64_t p = 0; p < k; p++)
                for (int64_t q = cols; q < nr; q++)
                    dst[p * nr + q] = 0.0f;
            continue;
        }
        for (int64_t p = 0; p < k; p++, dst += nr) {
            memcpy(dst, b + p * n + j * nr, (size_t)cols * sizeof(float));
            for (int64_t q = cols; q < nr; q++)
                dst[q] = 0.0f;
        }
    }
}

// Threads split rows when there are enough of them, else column panels.
static void thread_box(const NnrtMatmul *a, Variant v, int ith, int nth, int64_t *r0, int64_t *r1,
                       int64_t *p0, int64_t *p1)
{
    int64_t npanel = (a->n + v.nr - 1) / v.nr;
    if (a->m >= (int64_t)nth * v.mr * 2 || npanel < nth) {
        nnrt_split(a->m, v.mr, ith, nth, r0, r1);
        *p0 = 0;
        *p1 = npanel;
    } else {
        *r0 = 0;
        *r1 = a->m;
        nnrt_split(npanel, 1, ith, nth, p0, p1);
    }
}

static void compute_f32(const NnrtMatmul *a, int ith, int nth)
{
    Variant v = variant();
    int64_t m = a->m, n = a->n, k = a->k, r0, r1, p0, p1;
    int64_t rs = a->ta ? 1 : k, cs = a->ta ? m : 1;
    const float *A = a->a, *bp = a->pack;
    float *C = a->c;
    thread_box(a, v, ith, nth, &r0, &r1, &p0, &p1);
    if (k == 0) {
        for (int64_t i = r0; i < r1; i++)
            for (int64_t j = p0 * v.nr; j < n && j < p1 * v.nr; j++)
                C[i * n + j] = 0.0f;
        return;
    }
    for (int64_t ic = r0; ic < r1; ic += MC) {
        int64_t iend = ic + MC < r1 ? ic + MC : r1;
        for (int64_t pc = 0; pc < k; pc += v.kc) {
            int64_t kc = k - pc < v.kc ? k - pc : v.kc;
            for (int64_t j = p0; j < p1; j++) {
                int64_t nr = n - j * v.nr < v.nr ? n - j * v.nr : v.nr;
                const float *bpanel = bp + j * v.nr * k + pc * v.nr;
                for (int64_t i = ic; i < iend; i += v.mr) {
                    int64_t mr = iend - i < v.mr ? iend - i : v.mr;
                    v.fn(kc, A + i * rs + pc * cs, rs, cs, bpanel, C + i * n + j * v.nr, n, mr, nr,
                         pc > 0);
                }
            }
        }
    }
}

// f64: c row i = sum_p a(i, p) * b row p, or dot products when b is transposed.
static void compute_f64(const NnrtMatmul *a, int ith, int nth)
{
    int64_t m = a->m, n = a->n, k = a->k, lo, hi;
    const double *A = a->a, *B = a->b;
    double *C = a->c;
    nnrt_split(m, 4, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        double *c = C + i * n;
        if (a->tb) {
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++)
                    s += (a->ta ? A[p * m + i] : A[i * k + p]) * B[j * k + p];
                c[j] = s;
            }
            continue;
        }
        for (int64_t j = 0; j < n; j++)
            c[j] = 0;
        for (int64_t p = 0; p < k; p++) {
            double av = a->ta ? A[p * m + i] : A[i * k + p];
            const double *b = B + p * n;
            for (int64_t j = 0; j < n; j++)
                c[j] += av * b[j];
        }
    }
}

void nnrt_matmul_compute(const NnrtMatmul *a, int ith, int nth)
{
    if (a->dt == NN_DT_F32)
        compute_f32(a, ith, nth);
    else
        compute_f64(a, ith, nth);
}

static void pack_task(void *a, int ith, int nth) { nnrt_matmul_pack(a, ith, nth); }
static void compute_task(void *a, int ith, int nth) { nnrt_matmul_compute(a, ith, nth); }

void nnrt_matmul_par(NnrtPool *p, const NnrtMatmul *a)
{
    int64_t flops = a->m * a->n * a->k;
    if (!p || p->nthreads <= 1 || flops < (1 << 16)) {
        nnrt_matmul_pack(a, 0, 1);
        nnrt_matmul_compute(a, 0, 1);
        return;
    }
    if (a->n * a->k >= PAR_MIN_ELEMS)
        nnrt_pool_run(p, pack_task, (void *)a);
    else
        nnrt_matmul_pack(a, 0, 1);
    nnrt_pool_run(p, compute_task, (void *)a);
}
