// Elementwise kernels: unary, binary, select with numpy broadcasting, casts and
// fills, for f32/f64 (and i32 where integer data flows: labels, comparisons).
// Each thread takes a contiguous slice of the output and walks it in runs of the
// innermost dim (kiter.h); runs with unit or zero strides get loops simple
// enough for the compiler to vectorize. Integer arithmetic wraps, never traps.
#include <limits.h>
#include <string.h>

#include "kernels.h"
#include "kiter.h"

bool nnrt_bcast_init(NnrtBcast *b, int orank, const int64_t *oshape, int nin, const int *irank,
                     const int64_t *const *ishape)
{
    KASSERT(nin >= 1 && nin <= 3 && orank <= NN_MAX_RANK);
    memset(b, 0, sizeof *b);
    b->nin = nin;
    b->numel = 1;
    int64_t full[3][NN_MAX_RANK] = {{0}};
    for (int k = 0; k < nin; k++) {
        if (irank[k] > orank)
            goto bad;
        int64_t st = 1;
        for (int d = orank - 1, e = irank[k] - 1; d >= 0; d--, e--) {
            int64_t n = e >= 0 ? ishape[k][e] : 1;
            if (n != oshape[d] && n != 1)
                goto bad;
            full[k][d] = n == 1 ? 0 : st;
            st *= n;
        }
    }
    // Drop size-1 dims, then merge neighbours that are contiguous for everyone.
    int r = 0;
    for (int d = 0; d < orank; d++) {
        b->numel *= oshape[d];
        if (oshape[d] == 1)
            continue;
        bool merge = r > 0;
        for (int k = 0; k < nin && merge; k++)
            merge = b->stride[k][r - 1] == full[k][d] * oshape[d];
        if (merge) {
            b->shape[r - 1] *= oshape[d];
            for (int k = 0; k < nin; k++)
                b->stride[k][r - 1] = full[k][d];
            continue;
        }
        b->shape[r] = oshape[d];
        for (int k = 0; k < nin; k++)
            b->stride[k][r] = full[k][d];
        r++;
    }
    if (r == 0) {
        b->shape[0] = 1;
        r = 1;
    }
    b->rank = r;
    return true;
bad:
    nnrt_fail(NN_ERR_SHAPE, "operand %d does not broadcast to the output shape", nin);
    return false;
}

// ---- unary ----------------------------------------------------------------

static inline float sigmoidf(float v)
{
    if (v >= 0)
        return 1.0f / (1.0f + expf(-v));
    float e = expf(v);
    return e / (1.0f + e);
}

static inline double sigmoid(double v)
{
    if (v >= 0)
        return 1.0 / (1.0 + exp(-v));
    double e = exp(v);
    return e / (1.0 + e);
}

static inline int32_t wrap_neg(int32_t v) { return (int32_t)(0u - (uint32_t)v); }
static inline int32_t wrap_abs(int32_t v) { return v < 0 ? wrap_neg(v) : v; }

#define UN_LOOP(E)                                                                                 \
    do {                                                                                           \
        if (sx == 1)                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T v = x[i];                                                                        \
                y[i] = (E);                                                                        \
            }                                                                                      \
        else                                                                                       \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T v = x[i * sx];                                                                   \
                y[i] = (E);                                                                        \
            }                                                                                      \
    } while (0)

#define T float
static void un_row_f32(NnrtUnOp op, const T *x, int64_t sx, T *y, int64_t n)
{
    switch (op) {
    case NNRT_NEG: UN_LOOP(-v); break;
    case NNRT_EXP: UN_LOOP(expf(v)); break;
    case NNRT_LOG: UN_LOOP(logf(v)); break;
    case NNRT_SQRT: UN_LOOP(sqrtf(v)); break;
    case NNRT_TANH: UN_LOOP(tanhf(v)); break;
    case NNRT_SIGMOID: UN_LOOP(sigmoidf(v)); break;
    case NNRT_ABS: UN_LOOP(fabsf(v)); break;
    case NNRT_SIN: UN_LOOP(sinf(v)); break;
    case NNRT_COS: UN_LOOP(cosf(v)); break;
    case NNRT_COPY: UN_LOOP(v); break;
    }
}
#undef T
#define T double
static void un_row_f64(NnrtUnOp op, const T *x, int64_t sx, T *y, int64_t n)
{
    switch (op) {
    case NNRT_NEG: UN_LOOP(-v); break;
    case NNRT_EXP: UN_LOOP(exp(v)); break;
    case NNRT_LOG: UN_LOOP(log(v)); break;
    case NNRT_SQRT: UN_LOOP(sqrt(v)); break;
    case NNRT_TANH: UN_LOOP(tanh(v)); break;
    case NNRT_SIGMOID: UN_LOOP(sigmoid(v)); break;
    case NNRT_ABS: UN_LOOP(fabs(v)); break;
    case NNRT_SIN: UN_LOOP(sin(v)); break;
    case NNRT_COS: UN_LOOP(cos(v)); break;
    case NNRT_COPY: UN_LOOP(v); break;
    }
}
#undef T
#define T int32_t
static void un_row_i32(NnrtUnOp op, const T *x, int64_t sx, T *y, int64_t n)
{
    switch (op) {
    case NNRT_NEG: UN_LOOP(wrap_neg(v)); break;
    case NNRT_ABS: UN_LOOP(wrap_abs(v)); break;
    case NNRT_COPY: UN_LOOP(v); break;
    default: KASSERT(!"unsupported i32 unary op"); break;
    }
}
#undef T

bool nnrt_unary_ok(NnrtUnOp op, NnDType dt)
{
    if (dt == NN_DT_I32)
        return op == NNRT_NEG || op == NNRT_ABS || op == NNRT_COPY;
    return dt == NN_DT_F32 || dt == NN_DT_F64;
}

void nnrt_unary(const NnrtUnary *a, int ith, int nth)
{
    const NnrtBcast *b = a->b;
    int64_t lo, hi, last = b->rank - 1;
    nnrt_split(b->numel, 16, ith, nth, &lo, &hi);
    if (lo >= hi)
        return; // also keeps kiter_start away from size-0 dims
    KIter it;
    kiter_start(b, lo, &it);
    for (int64_t pos = lo; pos < hi;) {
        int64_t len = kiter_run(b, &it, hi - pos), sx = b->stride[0][last];
        switch (a->dt) {
        case NN_DT_F32:
            un_row_f32(a->op, (const float *)a->x + it.off[0], sx, (float *)a->y + pos, len);
            break;
        case NN_DT_F64:
            un_row_f64(a->op, (const double *)a->x + it.off[0], sx, (double *)a->y + pos, len);
            break;
        default:
            un_row_i32(a->op, (const int32_t *)a->x + it.off[0], sx, (int32_t *)a->y + pos, len);
            break;
        }
        kiter_advance(b, &it, len);
        pos += len;
    }
}

static void unary_task(void *a, int ith, int nth) { nnrt_unary(a, ith, nth); }

void nnrt_unary_par(NnrtPool *p, const NnrtUnary *a)
{
    // Transcendentals cost ~10x a copy: parallelize them sooner.
    int64_t work = a->b->numel * (a->op == NNRT_COPY || a->op == NNRT_NEG ? 1 : 8);
    if (want_par(p, work))
        nnrt_pool_run(p, unary_task, (void *)a);
    else
        nnrt_unary(a, 0, 1);
}

// ---- binary ---------------------------------------------------------------

// Integer arithmetic goes through uint32_t, where overflow wraps instead of being UB.
static inline int32_t wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + b); }
static inline int32_t wrap_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - b); }
static inline int32_t wrap_mul(int32_t a, int32_t b) { return (int32_t)((uint32_t)a * b); }

static inline int32_t sat_i32(double v)
{
    if (!(v == v))
        return 0;
    if (v >= 2147483647.0)
        return INT32_MAX;
    if (v <= -2147483648.0)
        return INT32_MIN;
    return (int32_t)v;
}

static inline int32_t idiv(int32_t a, int32_t b)
{
    if (b == 0)
        return 0;
    if (a == INT32_MIN && b == -1)
        return INT32_MIN;
    return a / b;
}

#define BIN_LOOP(E)                                                                                \
    do {                                                                                           \
        if (sx == 1 && sy == 1)                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T a = x[i], b = y[i];                                                              \
                z[i] = (E);                                                                        \
            }                                                                                      \
        else if (sx == 0 && sy == 1) {                                                             \
            T a = x[0];                                                                            \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T b = y[i];                                                                        \
                z[i] = (E);                                                                        \
            }                                                                                      \
        } else if (sx == 1 && sy == 0) {                                                           \
            T b = y[0];                                                                            \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T a = x[i];                                                                        \
                z[i] = (E);                                                                        \
            }                                                                                      \
        } else                                                                                     \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T a = x[i * sx], b = y[i * sy];                                                    \
                z[i] = (E);                                                                        \
            }                                                                                      \
    } while (0)

// Float rows. MAX/MIN pick the NaN when there is one (a != a tests for NaN).
#define FLOAT_BIN_ROW(sfx, POW)                                                                    \
    static void bin_row_##sfx(NnrtBinOp op, const T *x, int64_t sx, const T *y, int64_t sy, T *z, \
                              int64_t n)                                                           \
    {                                                                                              \
        switch (op) {                                                                              \
        case NNRT_ADD: BIN_LOOP(a + b); break;                                                     \
        case NNRT_SUB: BIN_LOOP(a - b); break;                                                     \
        case NNRT_MUL: BIN_LOOP(a * b); break;                                                     \
        case NNRT_DIV: BIN_LOOP(a / b); break;                                                     \
        case NNRT_POW: BIN_LOOP(POW(a, b)); break;                                                 \
        case NNRT_MAX: BIN_LOOP(a != a || a > b ? a : b); break;                                   \
        case NNRT_MIN: BIN_LOOP(a != a || a < b ? a : b); break;                                   \
        case NNRT_GT: BIN_LOOP((T)(a > b)); break;                                                 \
        case NNRT_GE: BIN_LOOP((T)(a >= b)); break;                                                \
        case NNRT_LT: BIN_LOOP((T)(a < b)); break;                                                 \
        case NNRT_LE: BIN_LOOP((T)(a <= b)); break;                                                \
        case NNRT_EQ: BIN_LOOP((T)(a == b)); break;                                                \
        case NNRT_NE: BIN_LOOP((T)(a != b)); break;                                                \
        }                                                                                          \
    }

#define T float
FLOAT_BIN_ROW(f32, powf)
#undef T
#define T double
FLOAT_BIN_ROW(f64, pow)
#undef T

#define T int32_t
static void bin_row_i32(NnrtBinOp op, const T *x, int64_t sx, const T *y, int64_t sy, T *z,
                        int64_t n)
{
    switch (op) {
    case NNRT_ADD: BIN_LOOP(wrap_add(a, b)); break;
    case NNRT_SUB: BIN_LOOP(wrap_sub(a, b)); break;
    case NNRT_MUL: BIN_LOOP(wrap_mul(a, b)); break;
    case NNRT_DIV: BIN_LOOP(idiv(a, b)); break;
    case NNRT_POW: BIN_LOOP(sat_i32(pow(a, b))); break;
    case NNRT_MAX: BIN_LOOP(a > b ? a : b); break;
    case NNRT_MIN: BIN_LOOP(a < b ? a : b); break;
    case NNRT_GT: BIN_LOOP(a > b); break;
    case NNRT_GE: BIN_LOOP(a >= b); break;
    case NNRT_LT: BIN_LOOP(a < b); break;
    case NNRT_LE: BIN_LOOP(a <= b); break;
    case NNRT_EQ: BIN_LOOP(a == b); break;
    case NNRT_NE: BIN_LOOP(a != b); break;
    }
}
#undef T

void nnrt_binary(const NnrtBinary *a, int ith, int nth)
{
    const NnrtBcast *b = a->b;
    int64_t lo, hi, last = b->rank - 1;
    int64_t sx = b->stride[0][last], sy = b->stride[1][last];
    nnrt_split(b->numel, 16, ith, nth, &lo, &hi);
    if (lo >= hi)
        return; // also keeps kiter_start away from size-0 dims
    KIter it;
    kiter_start(b, lo, &it);
    for (int64_t pos = lo; pos < hi;) {
        int64_t len = kiter_run(b, &it, hi - pos);
        switch (a->dt) {
        case NN_DT_F32:
            bin_row_f32(a->op, (const float *)a->x + it.off[0], sx, (const float *)a->y + it.off[1],
                        sy, (float *)a->z + pos, len);
            break;
        case NN_DT_F64:
            bin_row_f64(a->op, (const double *)a->x + it.off[0], sx,
                        (const double *)a->y + it.off[1], sy, (double *)a->z + pos, len);
            break;
        default:
            bin_row_i32(a->op, (const int32_t *)a->x + it.off[0], sx,
                        (const int32_t *)a->y + it.off[1], sy, (int32_t *)a->z + pos, len);
            break;
        }
        kiter_advance(b, &it, len);
        pos += len;
    }
}

static void binary_task(void *a, int ith, int nth) { nnrt_binary(a, ith, nth); }

void nnrt_binary_par(NnrtPool *p, const NnrtBinary *a)
{
    int64_t work = a->b->numel * (a->op == NNRT_POW ? 8 : 1);
    if (want_par(p, work))
        nnrt_pool_run(p, binary_task, (void *)a);
    else
        nnrt_binary(a, 0, 1);
}

// ---- select ---------------------------------------------------------------

#define SEL_ROW(sfx, T, C)                                                                         \
    static void sel_row_##sfx(const C *c, int64_t sc, const T *x, int64_t sx, const T *y,          \
                              int64_t sy, T *z, int64_t n)                                         \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++)                                                            \
            z[i] = c[i * sc] != 0 ? x[i * sx] : y[i * sy];                                         \
    }

// Select only moves values, so any element type of the same size will do.
SEL_ROW(u32_f32, uint32_t, float)
SEL_ROW(u32_f64, uint32_t, double)
SEL_ROW(u32_i32, uint32_t, int32_t)
SEL_ROW(u64_f32, uint64_t, float)
SEL_ROW(u64_f64, uint64_t, double)
SEL_ROW(u64_i32, uint64_t, int32_t)

void nnrt_select(const NnrtSelect *a, int ith, int nth)
{
    const NnrtBcast *b = a->b;
    int64_t lo, hi, last = b->rank - 1;
    int64_t sc = b->stride[0][last], sx = b->stride[1][last], sy = b->stride[2][last];
    bool wide = nnrt_dtype_size(a->dt) == 8;
    nnrt_split(b->numel, 16, ith, nth, &lo, &hi);
    if (lo >= hi)
        return; // also keeps kiter_start away from size-0 dims
    KIter it;
    kiter_start(b, lo, &it);
    for (int64_t pos = lo; pos < hi;) {
        int64_t len = kiter_run(b, &it, hi - pos);
        const void *c = (const char *)a->c + it.off[0] * (int64_t)nnrt_dtype_size(a->cdt);
        if (wide) {
            const uint64_t *x = (const uint64_t *)a->x + it.off[1];
            const uint64_t *y = (const uint64_t *)a->y + it.off[2];
            uint64_t *z = (uint64_t *)a->out + pos;
            if (a->cdt == NN_DT_F32)
                sel_row_u64_f32(c, sc, x, sx, y, sy, z, len);
            else if (a->cdt == NN_DT_F64)
                sel_row_u64_f64(c, sc, x, sx, y, sy, z, len);
            else
                sel_row_u64_i32(c, sc, x, sx, y, sy, z, len);
        } else {
            const uint32_t *x = (const uint32_t *)a->x + it.off[1];
            const uint32_t *y = (const uint32_t *)a->y + it.off[2];
            uint32_t *z = (uint32_t *)a->out + pos;
            if (a->cdt == NN_DT_F32)
                sel_row_u32_f32(c, sc, x, sx, y, sy, z, len);
            else if (a->cdt == NN_DT_F64)
                sel_row_u32_f64(c, sc, x, sx, y, sy, z, len);
            else
                sel_row_u32_i32(c, sc, x, sx, y, sy, z, len);
        }
        kiter_advance(b, &it, len);
        pos += len;
    }
}

static void select_task(void *a, int ith, int nth) { nnrt_select(a, ith, nth); }

void nnrt_select_par(NnrtPool *p, const NnrtSelect *a)
{
    if (want_par(p, a->b->numel))
        nnrt_pool_run(p, select_task, (void *)a);
    else
        nnrt_select(a, 0, 1);
}

// ---- cast and fill --------------------------------------------------------

#define CAST_LOOP(TI, TO, CONV)                                                                    \
    do {                                                                                           \
        const TI *x = (const TI *)a->x;                                                            \
        TO *y = (TO *)a->y;                                                                        \
        for (int64_t i = lo; i < hi; i++)                                                          \
            y[i] = CONV(x[i]);                                                                     \
    } while (0)

#define PLAIN(v) (v)

void nnrt_cast(const NnrtCast *a, int ith, int nth)
{
    int64_t lo, hi;
    nnrt_split(a->n, 16, ith, nth, &lo, &hi);
    switch (a->from * NN_DT_COUNT + a->to) {
    case NN_DT_F32 * NN_DT_COUNT + NN_DT_F32: CAST_LOOP(float, float, PLAIN); break;
    case NN_DT_F32 * NN_DT_COUNT + NN_DT_F64: CAST_LOOP(float, double, PLAIN); break;
    case NN_DT_F32 * NN_DT_COUNT + NN_DT_I32: CAST_LOOP(float, int32_t, sat_i32); break;
    case NN_DT_F64 * NN_DT_COUNT + NN_DT_F32: CAST_LOOP(double, float, PLAIN); break;
    case NN_DT_F64 * NN_DT_COUNT + NN_DT_F64: CAST_LOOP(double, double, PLAIN); break;
    case NN_DT_F64 * NN_DT_COUNT + NN_DT_I32: CAST_LOOP(double, int32_t, sat_i32); break;
    case NN_DT_I32 * NN_DT_COUNT + NN_DT_F32: CAST_LOOP(int32_t, float, PLAIN); break;
    case NN_DT_I32 * NN_DT_COUNT + NN_DT_F64: CAST_LOOP(int32_t, double, PLAIN); break;
    case NN_DT_I32 * NN_DT_COUNT + NN_DT_I32: CAST_LOOP(int32_t, int32_t, PLAIN); break;
    default: KASSERT(!"bad cast dtypes"); break;
    }
}

static void cast_task(void *a, int ith, int nth) { nnrt_cast(a, ith, nth); }

void nnrt_cast_par(NnrtPool *p, const NnrtCast *a)
{
    if (want_par(p, a->n))
        nnrt_pool_run(p, cast_task, (void *)a);
    else
        nnrt_cast(a, 0, 1);
}

void nnrt_fill(NnDType dt, void *y, int64_t n, double v)
{
    if (dt == NN_DT_F32) {
        float f = (float)v, *p = y;
        for (int64_t i = 0; i < n; i++)
            p[i] = f;
    } else if (dt == NN_DT_F64) {
        double *p = y;
        for (int64_t i = 0; i < n; i++)
            p[i] = v;
    } else {
        int32_t k = sat_i32(v), *p = y;
        for (int64_t i = 0; i < n; i++)
            p[i] = k;
    }
}
