// Runtime kernels against naive double-precision loops written here: broadcast
// elementwise ops, casts, matmul in every transpose mode and odd sizes, each
// reduction over every axis set, layout, indexing and the counter-based random
// numbers (re-derived from the formulas documented in kernels.h).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static uint64_t lcg = 12345;
static double urand(void)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg >> 11) * 0x1p-53;
}

static void fill_rand(NnDType dt, void *p, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++) {
        double v = lo + (hi - lo) * urand();
        if (dt == NN_DT_F32)
            ((float *)p)[i] = (float)v;
        else if (dt == NN_DT_F64)
            ((double *)p)[i] = v;
        else
            ((int32_t *)p)[i] = (int32_t)floor(v);
    }
}

static double at(NnDType dt, const void *p, int64_t i)
{
    return dt == NN_DT_F32 ? ((const float *)p)[i]
         : dt == NN_DT_F64 ? ((const double *)p)[i]
                           : ((const int32_t *)p)[i];
}

static int64_t numel(int r, const int64_t *s)
{
    int64_t n = 1;
    for (int i = 0; i < r; i++)
        n *= s[i];
    return n;
}

// Flat index into an operand of rank ir (right-aligned, 1 = broadcast) for
// output multi-index idx of rank r.
static int64_t src_index(int r, const int64_t *idx, int ir, const int64_t *is)
{
    int64_t off = 0;
    for (int d = 0; d < ir; d++) {
        int64_t i = idx[r - ir + d];
        off = off * is[d] + (is[d] == 1 ? 0 : i);
    }
    return off;
}

static void unflat(int64_t pos, int r, const int64_t *s, int64_t *idx)
{
    for (int d = r - 1; d >= 0; d--) {
        idx[d] = pos % s[d];
        pos /= s[d];
    }
}

static double ref_bin(NnrtBinOp op, double a, double b)
{
    switch (op) {
    case NNRT_ADD: return a + b;
    case NNRT_SUB: return a - b;
    case NNRT_MUL: return a * b;
    case NNRT_DIV: return a / b;
    case NNRT_POW: return pow(a, b);
    case NNRT_MAX: return a > b ? a : b;
    case NNRT_MIN: return a < b ? a : b;
    case NNRT_GT: return a > b;
    case NNRT_GE: return a >= b;
    case NNRT_LT: return a < b;
    case NNRT_LE: return a <= b;
    case NNRT_EQ: return a == b;
    case NNRT_NE: return a != b;
    }
    return 0;
}

static void close_to(double got, double want, double rtol, const char *what, int64_t i)
{
    double tol = rtol * (1 + fabs(want));
    cr_assert(fabs(got - want) <= tol || (isnan(got) && isnan(want)),
              "%s [%lld]: got %.9g want %.9g", what, (long long)i, got, want);
}

typedef struct Case {
    int ra, rb, ro;
    int64_t sa[4], sb[4], so[4];
} Case;

static const Case bcases[] = {
    {2, 2, 2, {3, 4}, {3, 4}, {3, 4}},
    {2, 1, 2, {3, 4}, {4}, {3, 4}},
    {2, 2, 2, {3, 1}, {1, 4}, {3, 4}},
    {3, 2, 3, {2, 3, 4}, {3, 1}, {2, 3, 4}},
    {0, 2, 2, {0}, {5, 6}, {5, 6}},
    {3, 3, 3, {5, 1, 7}, {1, 6, 1}, {5, 6, 7}},
    {2, 2, 2, {1, 1}, {1, 1}, {1, 1}},
    {2, 1, 2, {300, 257}, {257}, {300, 257}}, // big enough to go parallel
};

static void check_binary(NnrtPool *pool, NnDType dt, NnrtBinOp op, const Case *k)
{
    int64_t na = numel(k->ra, k->sa), nb = numel(k->rb, k->sb), no = numel(k->ro, k->so);
    size_t es = nnrt_dtype_size(dt);
    void *x = nnrt_alloc(na * es), *y = nnrt_alloc(nb * es), *z = nnrt_alloc(no * es);
    bool pw = op == NNRT_POW;
    fill_rand(dt, x, na, pw ? 0.1 : -3, 3);
    fill_rand(dt, y, nb, pw ? -2 : -3, dt == NN_DT_I32 ? 3 : 3);
    if (op == NNRT_DIV && dt != NN_DT_I32)
        for (int64_t i = 0; i < nb; i++)
            if (fabs(at(dt, y, i)) < 0.1)
                dt == NN_DT_F32 ? (((float *)y)[i] = 0.5f) : (((double *)y)[i] = 0.5);
    if (op != NNRT_POW && op != NNRT_DIV && op != NNRT_ADD) // exercise ties in comparisons
        memcpy(y, x, (size_t)(na < nb ? na : nb) * es);
    NnrtBcast b;
    int ir[2] = {k->ra, k->rb};
    const int64_t *is[2] = {k->sa, k->sb};
    cr_assert(nnrt_bcast_init(&b, k->ro, k->so, 2, ir, is));
    NnrtBinary a = {op, dt, &b, x, y, z};
    nnrt_binary_par(pool, &a);
    for (int64_t i = 0; i < no; i++) {
        int64_t idx[4];
        unflat(i, k->ro, k->so, idx);
        double av = at(dt, x, src_index(k->ro, idx, k->ra, k->sa));
        double bv = at(dt, y, src_index(k->ro, idx, k->rb, k->sb));
        double want = ref_bin(op, av, bv);
        if (dt == NN_DT_I32 && op == NNRT_DIV)
            want = bv == 0 ? 0 : trunc(av / bv);
        if (dt == NN_DT_I32 && op == NNRT_POW)
            want = trunc(pow(av, bv));
        close_to(at(dt, z, i), want, dt == NN_DT_F32 ? 1e-6 : 1e-14, "binary", i);
    }
    nnrt_free(x);
    nnrt_free(y);
    nnrt_free(z);
}

Test(kernels, binary_broadcast_all_ops)
{
    NnrtPool pool;
    cr_assert_eq(nnrt_pool_init(&pool, 2), NN_OK);
    for (size_t c = 0; c < sizeof bcases / sizeof *bcases; c++)
        for (int op = NNRT_ADD; op <= NNRT_NE; op++) {
            check_binary(&pool, NN_DT_F32, op, &bcases[c]);
            check_binary(&pool, NN_DT_F64, op, &bcases[c]);
            check_binary(NULL, NN_DT_I32, op, &bcases[c]);
        }
    nnrt_pool_fini(&pool);
}

Test(kernels, bcast_rejects_mismatch)
{
    NnrtBcast b;
    int64_t so[2] = {3, 4}, sa[2] = {3, 5};
    int ir[1] = {2};
    const int64_t *is[1] = {sa};
    cr_assert_not(nnrt_bcast_init(&b, 2, so, 1, ir, is));
}

Test(kernels, bcast_merges_same_shape)
{
    NnrtBcast b;
    int64_t s[3] = {2, 3, 4};
    int ir[2] = {3, 0};
    const int64_t *is[2] = {s, s};
    cr_assert(nnrt_bcast_init(&b, 3, s, 2, ir, is));
    cr_assert_eq(b.rank, 1);
    cr_assert_eq(b.shape[0], 24);
    cr_assert_eq(b.stride[0][0], 1);
    cr_assert_eq(b.stride[1][0], 0); // the scalar
}

static double ref_un(NnrtUnOp op, double v)
{
    switch (op) {
    case NNRT_NEG: return -v;
    case NNRT_EXP: return exp(v);
    case NNRT_LOG: return log(v);
    case NNRT_SQRT: return sqrt(v);
    case NNRT_TANH: return tanh(v);
    case NNRT_SIGMOID: return 1 / (1 + exp(-v));
    case NNRT_ABS: return fabs(v);
    case NNRT_SIN: return sin(v);
    case NNRT_COS: return cos(v);
    case NNRT_COPY: return v;
    }
    return 0;
}

Test(kernels, unary_all_ops)
{
    int64_t so[2] = {37, 41}, sx[2] = {1, 41};
    NnDType dts[2] = {NN_DT_F32, NN_DT_F64};
    for (int t = 0; t < 2; t++) {
        NnDType dt = dts[t];
        size_t es = nnrt_dtype_size(dt);
        void *x = nnrt_alloc(41 * es), *y = nnrt_alloc(37 * 41 * es);
        for (int op = NNRT_NEG; op <= NNRT_COPY; op++) {
            bool pos = op == NNRT_LOG || op == NNRT_SQRT;
            fill_rand(dt, x, 41, pos ? 0.01 : -30, 30);
            NnrtBcast b;
            int ir = 2;
            const int64_t *is = sx;
            cr_assert(nnrt_bcast_init(&b, 2, so, 1, &ir, &is));
            NnrtUnary a = {op, dt, &b, x, y};
            nnrt_unary(&a, 0, 1);
            for (int64_t i = 0; i < 37 * 41; i++)
                close_to(at(dt, y, i), ref_un(op, at(dt, x, i % 41)),
                         dt == NN_DT_F32 ? 2e-6 : 1e-14, "unary", i);
        }
        nnrt_free(x);
        nnrt_free(y);
    }
}

Test(kernels, unary_i32_and_sigmoid_extremes)
{
    int32_t x[4] = {5, -7, 0, INT32_MIN}, y[4];
    int64_t s = 4;
    NnrtBcast b;
    int ir = 1;
    const int64_t *is = &s;
    cr_assert(nnrt_bcast_init(&b, 1, &s, 1, &ir, &is));
    cr_assert(nnrt_unary_ok(NNRT_ABS, NN_DT_I32));
    cr_assert_not(nnrt_unary_ok(NNRT_EXP, NN_DT_I32));
    NnrtUnary a = {NNRT_ABS, NN_DT_I32, &b, x, y};
    nnrt_unary(&a, 0, 1);
    cr_assert(y[0] == 5 && y[1] == 7 && y[2] == 0 && y[3] == INT32_MIN); // wraps
    float fx[4] = {-1000, 1000, 0, -90}, fy[4];
    NnrtUnary s2 = {NNRT_SIGMOID, NN_DT_F32, &b, fx, fy};
    nnrt_unary(&s2, 0, 1);
    cr_assert(fy[0] == 0 && fy[1] == 1 && fy[2] == 0.5f && fy[3] > 0 && !isnan(fy[3]));
}

Test(kernels, select_and_cast)
{
    int64_t so[2] = {2, 3}, sc[1] = {3}, sx[2] = {2, 3}, sy[1] = {1};
    int32_t c[3] = {0, 2, 0};
    double x[6] = {1, 2, 3, 4, 5, 6}, y[1] = {-1}, z[6];
    NnrtBcast b;
    int ir[3] = {1, 2, 0};
    const int64_t *is[3] = {sc, sx, sy};
    cr_assert(nnrt_bcast_init(&b, 2, so, 3, ir, is));
    NnrtSelect a = {NN_DT_F64, NN_DT_I32, &b, c, x, y, z};
    nnrt_select(&a, 0, 1);
    double want[6] = {-1, 2, -1, -1, 5, -1};
    for (int i = 0; i < 6; i++)
        cr_assert_eq(z[i], want[i], "select %d", i);

    float f[5] = {1.9f, -1.9f, NAN, 3e9f, -3e9f};
    int32_t k[5];
    NnrtCast ca = {NN_DT_F32, NN_DT_I32, 5, f, k};
    nnrt_cast(&ca, 0, 1);
    cr_assert(k[0] == 1 && k[1] == -1 && k[2] == 0 && k[3] == INT32_MAX && k[4] == INT32_MIN);
    double d[5];
    NnrtCast cb = {NN_DT_I32, NN_DT_F64, 5, k, d};
    nnrt_cast(&cb, 0, 1);
    cr_assert(d[0] == 1 && d[3] == 2147483647.0);
}

// ---- matmul ----

static void check_matmul(NnrtPool *pool, NnDType dt, int64_t m, int64_t n, int64_t k, bool ta,
                         bool tb)
{
    size_t es = nnrt_dtype_size(dt);
    void *a = nnrt_alloc(m * k * es), *b = nnrt_alloc(k * n * es), *c = nnrt_alloc(m * n * es);
    void *pack = nnrt_alloc(nnrt_matmul_pack_size(dt, n, k) + 1);
    fill_rand(dt, a, m * k, -1, 1);
    fill_rand(dt, b, k * n, -1, 1);
    fill_rand(dt, c, m * n, 100, 101); // garbage the kernel must overwrite
    NnrtMatmul mm = {dt, m, n, k, ta, tb, a, b, c, pack};
    nnrt_matmul_par(pool, &mm);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (int64_t p = 0; p < k; p++) {
                double av = at(dt, a, ta ? p * m + i : i * k + p);
                double bv = at(dt, b, tb ? j * k + p : p * n + j);
                s += av * bv;
                mag += fabs(av * bv);
            }
            double got = at(dt, c, i * n + j);
            double tol = (dt == NN_DT_F32 ? 1e-6 : 1e-14) * (mag + 1) * 4;
            cr_assert(fabs(got - s) <= tol, "%lldx%lldx%lld ta=%d tb=%d [%lld,%lld]: %g vs %g",
                      (long long)m, (long long)n, (long long)k, ta, tb, (long long)i,
                      (long long)j, got, s);
        }
    nnrt_free(a);
    nnrt_free(b);
    nnrt_free(c);
    nnrt_free(pack);
}

Test(kernels, matmul_sizes_and_transposes)
{
    NnrtPool pool;
    cr_assert_eq(nnrt_pool_init(&pool, 2), NN_OK);
    int64_t sizes[][3] = {{1, 1, 1}, {7, 5, 13}, {130, 129, 257}, {3, 70, 2}, {1, 33, 40},
                          {64, 64, 0}, {50, 1, 9}};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int t = 0; t < 4; t++) {
            check_matmul(&pool, NN_DT_F32, sizes[s][0], sizes[s][1], sizes[s][2], t & 1, t >> 1);
            check_matmul(&pool, NN_DT_F64, sizes[s][0], sizes[s][1], sizes[s][2], t & 1, t >> 1);
        }
    nnrt_pool_fini(&pool);
}

Test(kernels, matmul_large_parallel)
{
    NnrtPool pool;
    cr_assert_eq(nnrt_pool_init(&pool, 3), NN_OK);
    check_matmul(&pool, NN_DT_F32, 200, 300, 260, false, false);
    check_matmul(&pool, NN_DT_F32, 200, 300, 260, true, true);
    check_matmul(&pool, NN_DT_F32, 8, 700, 100, false, true); // few rows: split columns
    nnrt_pool_fini(&pool);
}

// ---- reductions ----

// Output index of input element i when the dims in axes are reduced away.
static int64_t out_index(int r, const int64_t *s, uint32_t axes, int64_t i)
{
    int64_t idx[4], o = 0;
    unflat(i, r, s, idx);
    for (int d = 0; d < r; d++)
        if (!(axes >> d & 1))
            o = o * s[d] + idx[d];
    return o;
}

// Reference reduction of every output at once, in double, into ref[].
static void ref_reduce(NnrtRedOp op, NnDType dt, const void *x, int r, const int64_t *s,
                       uint32_t axes, double *ref, int64_t no)
{
    int64_t total = numel(r, s);
    double *mx = calloc((size_t)no, sizeof *mx), *sum = calloc((size_t)no, sizeof *sum);
    int64_t *cnt = calloc((size_t)no, sizeof *cnt);
    for (int64_t o = 0; o < no; o++)
        mx[o] = -INFINITY;
    for (int64_t i = 0; i < total; i++) {
        int64_t o = out_index(r, s, axes, i);
        double v = at(dt, x, i);
        mx[o] = v > mx[o] ? v : mx[o];
        sum[o] += v;
        cnt[o]++;
    }
    for (int64_t o = 0; o < no; o++)
        ref[o] = op == NNRT_RSUM ? sum[o] : op == NNRT_RMEAN ? sum[o] / (double)cnt[o] : mx[o];
    if (op == NNRT_RLSE) {
        for (int64_t o = 0; o < no; o++)
            sum[o] = 0;
        for (int64_t i = 0; i < total; i++) {
            int64_t o = out_index(r, s, axes, i);
            sum[o] += exp(at(dt, x, i) - mx[o]);
        }
        for (int64_t o = 0; o < no; o++)
            ref[o] = mx[o] + log(sum[o]);
    }
    free(mx);
    free(sum);
    free(cnt);
}

static void check_reduce(NnDType dt, int r, const int64_t *s, NnrtPool *pool)
{
    int64_t n = numel(r, s);
    size_t es = nnrt_dtype_size(dt);
    void *x = nnrt_alloc(n * es), *y = nnrt_alloc(n * es);
    fill_rand(dt, x, n, -5, 5);
    for (uint32_t axes = 0; axes < (1u << r); axes++)
        for (int op = NNRT_RSUM; op <= NNRT_RLSE; op++) {
            NnrtReduce a = {op, dt, r, {0}, axes, x, y};
            memcpy(a.shape, s, (size_t)r * sizeof *s);
            nnrt_reduce_par(pool, &a);
            int64_t no = 1;
            for (int d = 0; d < r; d++)
                if (!(axes >> d & 1))
                    no *= s[d];
            double *ref = malloc((size_t)no * sizeof *ref);
            ref_reduce(op, dt, x, r, s, axes, ref, no);
            for (int64_t o = 0; o < no; o++)
                close_to(at(dt, y, o), ref[o], dt == NN_DT_F32 ? 1e-5 : 1e-12, "reduce", o);
            free(ref);
        }
    nnrt_free(x);
    nnrt_free(y);
}

Test(kernels, reduce_every_axis_set)
{
    int64_t s3[3] = {4, 5, 6}, s4[4] = {3, 1, 4, 5}, s2[2] = {300, 130};
    NnrtPool pool;
    cr_assert_eq(nnrt_pool_init(&pool, 2), NN_OK);
    check_reduce(NN_DT_F32, 3, s3, NULL);
    check_reduce(NN_DT_F64, 3, s3, NULL);
    check_reduce(NN_DT_F32, 4, s4, &pool);
    check_reduce(NN_DT_F32, 2, s2, &pool);
    check_reduce(NN_DT_F64, 2, s2, &pool);
    nnrt_pool_fini(&pool);
}

Test(kernels, logsumexp_stable)
{
    float x[6] = {1000, 1001, 999, -INFINITY, -INFINITY, -INFINITY};
    float y[2];
    NnrtReduce a = {NNRT_RLSE, NN_DT_F32, 2, {2, 3}, 2, x, y};
    nnrt_reduce(&a, 0, 1);
    double want = 1001 + log(exp(-1.0) + 1 + exp(-2.0));
    cr_assert(fabs(y[0] - want) < 1e-3, "lse %g want %g", y[0], want);
    cr_assert(isinf(y[1]) && y[1] < 0);
    double xd[3] = {-1e300, -1e300, -1e300}, yd;
    NnrtReduce b = {NNRT_RLSE, NN_DT_F64, 1, {3}, 1, xd, &yd};
    nnrt_reduce(&b, 0, 1);
    cr_assert(fabs(yd - (-1e300 + log(3.0))) <= 1e286, "%g", yd);
    // Column form too (reduce axis 0).
    NnrtReduce c = {NNRT_RLSE, NN_DT_F32, 2, {3, 2}, 1, x, y};
    nnrt_reduce(&c, 0, 1);
    cr_assert(isfinite(y[0]) && y[0] > 1000 && isfinite(y[1]) && y[1] > 999);
}

Test(kernels, argmax_axes)
{
    int64_t s[3] = {3, 4, 5};
    double x[60];
    int32_t y[20];
    fill_rand(NN_DT_F64, x, 60, -1, 1);
    for (int axis = 0; axis < 3; axis++) {
        NnrtArgmax a = {NN_DT_F64, 3, {3, 4, 5}, axis, x, y};
        nnrt_argmax(&a, 0, 1);
        int64_t st[3] = {20, 5, 1}, o = 0;
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 4; j++)
                for (int64_t k = 0; k < 5; k++) {
                    int64_t idx[3] = {i, j, k};
                    if (idx[axis] != 0)
                        continue;
                    int best = 0;
                    for (int q = 1; q < s[axis]; q++)
                        if (x[(i * 20 + j * 5 + k) + q * st[axis]] >
                            x[(i * 20 + j * 5 + k) + best * st[axis]])
                            best = q;
                    cr_assert_eq(y[o], best, "axis %d out %lld", axis, (long long)o);
                    o++;
                }
    }
}

// ---- layout ----

Test(kernels, transpose_perms)
{
    int64_t s[4] = {2, 3, 4, 5};
    int perms[][4] = {{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 0, 2, 3}, {0, 2, 3, 1}, {2, 0, 3, 1}};
    float x[120], y[120];
    for (int i = 0; i < 120; i++)
        x[i] = (float)i;
    for (size_t p = 0; p < sizeof perms / sizeof *perms; p++) {
        NnrtTranspose a = {4, 4, {2, 3, 4, 5}, {0}, x, y};
        memcpy(a.perm, perms[p], sizeof perms[p]);
        nnrt_transpose(&a, 0, 1);
        int64_t os[4], xst[4] = {60, 20, 5, 1};
        for (int d = 0; d < 4; d++)
            os[d] = s[perms[p][d]];
        for (int64_t i = 0; i < 120; i++) {
            int64_t idx[4], src = 0;
            unflat(i, 4, os, idx);
            for (int d = 0; d < 4; d++)
                src += idx[d] * xst[perms[p][d]];
            cr_assert_eq(y[i], x[src], "perm %zu elem %lld", p, (long long)i);
        }
    }
}

Test(kernels, broadcast_and_sumto_axes)
{
    int64_t xs[2] = {3, 1}, os[3] = {2, 3, 4};
    double x[3] = {1, 2, 3}, y[24];
    NnrtBcast b;
    int ir = 2;
    const int64_t *is = xs;
    cr_assert(nnrt_bcast_init(&b, 3, os, 1, &ir, &is));
    NnrtBroadcast a = {8, &b, x, y};
    nnrt_broadcast(&a, 0, 1);
    for (int i = 0; i < 24; i++)
        cr_assert_eq(y[i], x[(i / 4) % 3]);
    uint32_t axes;
    cr_assert(nnrt_sumto_axes(3, os, 2, xs, &axes));
    cr_assert_eq(axes, (1u << 0) | (1u << 2));
    int64_t bad[2] = {2, 4};
    cr_assert_not(nnrt_sumto_axes(3, os, 2, bad, &axes));
}

Test(kernels, take_and_onehot)
{
    float x[6] = {1, 2, 3, 4, 5, 6}, y[2];
    int32_t idx[2] = {2, 0};
    NnrtTake t = {NN_DT_F32, 2, 3, x, idx, y};
    cr_assert_eq(nnrt_take(&t), -1);
    cr_assert(y[0] == 3 && y[1] == 4);
    idx[1] = 3;
    cr_assert_eq(nnrt_take(&t), 1);
    float h[6];
    int32_t lab[2] = {1, 2};
    NnrtOnehot o = {NN_DT_F32, 2, 3, lab, h};
    cr_assert_eq(nnrt_onehot(&o), -1);
    float want[6] = {0, 1, 0, 0, 0, 1};
    cr_assert_arr_eq(h, want, sizeof want);
    lab[0] = -1;
    cr_assert_eq(nnrt_onehot(&o), 0);
}

// ---- random ----

// The documented formula, written out again independently.
static uint64_t doc_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t doc_bits(uint64_t seed, uint64_t step, uint64_t i)
{
    uint64_t key = doc_mix(seed ^ doc_mix(step * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull));
    return doc_mix(key + i * 0x9E3779B97F4A7C15ull);
}

Test(kernels, random_matches_documented_formula)
{
    for (uint64_t i = 0; i < 100; i++) {
        uint64_t bits = doc_bits(42, 7, i);
        cr_assert_eq(nnrt_rand_uniform(42, 7, i), (double)(bits >> 11) / 9007199254740992.0);
        cr_assert_eq(nnrt_rand_uniform_f32(42, 7, i), (float)((double)(bits >> 40) / 16777216.0));
    }
    cr_assert_eq(nnrt_rand_step(2.9999), 3u);
    cr_assert_eq(nnrt_rand_step(NAN), 0u);
}

Test(kernels, random_reproducible_and_distributed)
{
    enum { N = 200000 };
    NnrtPool pool;
    cr_assert_eq(nnrt_pool_init(&pool, 2), NN_OK);
    float *u = nnrt_alloc(N * 4), *u2 = nnrt_alloc(N * 4);
    double *z = nnrt_alloc(N * 8);
    NnrtRand a = {NNRT_UNIFORM, NN_DT_F32, 9, 3, N, u};
    nnrt_rand_par(&pool, &a);
    a.y = u2;
    nnrt_rand(&a, 0, 1); // serial gives the same numbers
    cr_assert_arr_eq(u, u2, N * 4);
    a.step = 4;
    nnrt_rand(&a, 0, 1);
    int same = 0;
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) {
        same += u[i] == u2[i];
        cr_assert(u[i] >= 0 && u[i] < 1);
        m += u[i];
    }
    cr_assert_lt(same, 100, "a new step must draw afresh");
    m /= N;
    for (int i = 0; i < N; i++)
        v += (u[i] - m) * (u[i] - m);
    v /= N;
    cr_assert(fabs(m - 0.5) < 0.005 && fabs(v - 1.0 / 12) < 0.002, "mean %g var %g", m, v);

    NnrtRand b = {NNRT_NORMAL, NN_DT_F64, 9, 3, N, z};
    nnrt_rand_par(&pool, &b);
    m = v = 0;
    for (int i = 0; i < N; i++)
        m += z[i];
    m /= N;
    for (int i = 0; i < N; i++)
        v += (z[i] - m) * (z[i] - m);
    v /= N;
    cr_assert(fabs(m) < 0.01 && fabs(v - 1) < 0.02, "normal mean %g var %g", m, v);
    for (int i = 0; i < 10; i++) {
        double u1 = (double)(doc_bits(9, 3, 2 * (uint64_t)i) >> 11) * 0x1p-53;
        double u2v = (double)(doc_bits(9, 3, 2 * (uint64_t)i + 1) >> 11) * 0x1p-53;
        double want = sqrt(-2 * log(1 - u1)) * cos(2 * M_PI * u2v);
        cr_assert(fabs(z[i] - want) < 1e-12);
    }
    nnrt_free(u);
    nnrt_free(u2);
    nnrt_free(z);
    nnrt_pool_fini(&pool);
}

Test(kernels, dropout_keep_fraction)
{
    enum { N = 100000 };
    float *x = nnrt_alloc(N * 4), *y = nnrt_alloc(N * 4);
    for (int i = 0; i < N; i++)
        x[i] = 1.0f + (float)(i % 3);
    NnrtDropout d = {NN_DT_F32, 5, 11, 0.3, N, x, y};
    nnrt_dropout_par(nnrt_pool_default(), &d);
    int kept = 0;
    for (int i = 0; i < N; i++) {
        bool keep = nnrt_rand_uniform(5, 11, (uint64_t)i) >= 0.3;
        kept += keep;
        cr_assert_eq(y[i], keep ? (float)((double)x[i] * (1.0 / (1.0 - 0.3))) : 0.0f, "elem %d", i);
    }
    cr_assert(fabs(kept / (double)N - 0.7) < 0.01, "kept %d", kept);
    nnrt_free(x);
    nnrt_free(y);
}

Test(kernels, reduce_and_argmax_i32)
{
    int32_t x[6] = {3, -1, 7, INT32_MAX, 1, -5}, y[3];
    NnrtReduce s = {NNRT_RSUM, NN_DT_I32, 2, {2, 3}, 1, x, y}; // over rows: column sums
    nnrt_reduce(&s, 0, 1);
    cr_assert(y[0] == INT32_MAX && y[1] == 0 && y[2] == 2, "%d %d %d", y[0], y[1], y[2]);
    NnrtReduce m = {NNRT_RMAX, NN_DT_I32, 2, {2, 3}, 2, x, y};
    nnrt_reduce(&m, 0, 1);
    cr_assert(y[0] == 7 && y[1] == INT32_MAX);
    NnrtArgmax a = {NN_DT_I32, 2, {2, 3}, 1, x, y};
    nnrt_argmax(&a, 0, 1);
    cr_assert(y[0] == 2 && y[1] == 0);
}
