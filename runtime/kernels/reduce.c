// Reductions (sum, mean, max, logsumexp) over an axes bitmask, and argmax.
// The input is first seen as [O, R, I] (kept outer, reduced, kept inner dims)
// after dropping size-1 dims and merging neighbours; that covers row, column and
// whole-tensor reductions with contiguous loops. Other axis sets (reduced dims
// interleaved with kept ones) take a generic per-output walk. Sums and the
// exp-sum of logsumexp accumulate in double; logsumexp subtracts the max first.
#include <string.h>

#include "kernels.h"
#include "kiter.h"

enum { ICHUNK = 256 }; // inner outputs accumulated at once on the stack

static inline double load(const void *x, NnDType dt, int64_t i)
{
    return dt == NN_DT_F32   ? ((const float *)x)[i]
           : dt == NN_DT_F64 ? ((const double *)x)[i]
                             : ((const int32_t *)x)[i];
}

// i32 results (sums of counts, say) saturate instead of overflowing.
static inline void store(void *y, NnDType dt, int64_t i, double v)
{
    if (dt == NN_DT_F32)
        ((float *)y)[i] = (float)v;
    else if (dt == NN_DT_F64)
        ((double *)y)[i] = v;
    else
        ((int32_t *)y)[i] = !(v == v)         ? 0
                            : v >= INT32_MAX ? INT32_MAX
                            : v <= INT32_MIN ? INT32_MIN
                                             : (int32_t)v;
}

static inline double max_nan(double acc, double v) { return v > acc || v != v ? v : acc; }

static double finish(NnrtRedOp op, double acc, double mx, int64_t r)
{
    switch (op) {
    case NNRT_RSUM: return acc;
    case NNRT_RMEAN: return r ? acc / (double)r : NAN;
    case NNRT_RMAX: return acc;
    case NNRT_RLSE:
        // An all -inf (or +inf, or NaN) max would give NaN through x - max.
        return isfinite(mx) ? mx + log(acc) : mx;
    }
    return 0;
}

// Rows: y[o] = reduce(x[o*r .. o*r + r)).
static void reduce_rows(const NnrtReduce *a, int64_t r, int64_t o0, int64_t o1)
{
    for (int64_t o = o0; o < o1; o++) {
        double mx = -INFINITY, acc = 0;
        if (a->op == NNRT_RMAX || a->op == NNRT_RLSE) {
            if (a->dt == NN_DT_F32) {
                const float *x = (const float *)a->x + o * r;
                for (int64_t i = 0; i < r; i++)
                    mx = max_nan(mx, x[i]);
            } else {
                for (int64_t i = 0; i < r; i++)
                    mx = max_nan(mx, load(a->x, a->dt, o * r + i));
            }
            acc = mx;
        }
        if (a->op != NNRT_RMAX && (a->op != NNRT_RLSE || isfinite(mx))) {
            double sh = a->op == NNRT_RLSE ? mx : 0;
            bool e = a->op == NNRT_RLSE;
            acc = 0;
            if (a->dt == NN_DT_F32) {
                const float *x = (const float *)a->x + o * r;
                for (int64_t i = 0; i < r; i++)
                    acc += e ? exp(x[i] - sh) : x[i];
            } else {
                for (int64_t i = 0; i < r; i++) {
                    double v = load(a->x, a->dt, o * r + i);
                    acc += e ? exp(v - sh) : v;
                }
            }
        }
        store(a->y, a->dt, o, finish(a->op, acc, mx, r));
    }
}

// Columns: y[o, i] = reduce over q of x[o, q, i], for flat outputs [lo, hi).
static void reduce_cols(const NnrtReduce *a, int64_t r, int64_t in, int64_t lo, int64_t hi)
{
    double acc[ICHUNK], mx[ICHUNK];
    for (int64_t pos = lo; pos < hi;) {
        int64_t o = pos / in, i0 = pos % in;
        int64_t len = in - i0 < hi - pos ? in - i0 : hi - pos;
        len = len < ICHUNK ? len : ICHUNK;
        int64_t base = o * r * in + i0;
        for (int64_t i = 0; i < len; i++) {
            acc[i] = 0;
            mx[i] = -INFINITY;
        }
        if (a->op == NNRT_RMAX || a->op == NNRT_RLSE)
            for (int64_t q = 0; q < r; q++)
                for (int64_t i = 0; i < len; i++)
                    mx[i] = max_nan(mx[i], load(a->x, a->dt, base + q * in + i));
        if (a->op != NNRT_RMAX) {
            bool e = a->op == NNRT_RLSE;
            for (int64_t q = 0; q < r; q++)
                for (int64_t i = 0; i < len; i++) {
                    double v = load(a->x, a->dt, base + q * in + i);
                    acc[i] += e ? exp(v - mx[i]) : v;
                }
        }
        for (int64_t i = 0; i < len; i++) {
            double v = a->op == NNRT_RMAX ? mx[i] : acc[i];
            store(a->y, a->dt, pos + i, finish(a->op, v, mx[i], r));
        }
        pos += len;
    }
}

// Any axes: each output walks its reduced sub-box with an odometer.
static void reduce_generic(const NnrtReduce *a, int64_t lo, int64_t hi)
{
    int nk = 0, nr = 0;
    int64_t kshape[NN_MAX_RANK], kstride[NN_MAX_RANK], rshape[NN_MAX_RANK], rstride[NN_MAX_RANK];
    int64_t st = 1, rcount = 1;
    for (int d = a->rank - 1; d >= 0; d--) {
        if (a->axes >> d & 1) {
            rshape[nr] = a->shape[d];
            rstride[nr++] = st;
            rcount *= a->shape[d];
        } else {
            kshape[nk] = a->shape[d];
            kstride[nk++] = st;
        }
        st *= a->shape[d];
    }
    for (int64_t o = lo; o < hi; o++) {
        int64_t base = 0, rem = o;
        for (int j = 0; j < nk; j++) {
            base += rem % kshape[j] * kstride[j];
            rem /= kshape[j];
        }
        double mx = -INFINITY, acc = 0;
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 0 && a->op != NNRT_RMAX && a->op != NNRT_RLSE)
                continue;
            if (pass == 1 && (a->op == NNRT_RMAX || (a->op == NNRT_RLSE && !isfinite(mx))))
                break;
            int64_t idx[NN_MAX_RANK] = {0}, off = base;
            for (int64_t q = 0; q < rcount; q++) {
                double v = load(a->x, a->dt, off);
                if (pass == 0)
                    mx = max_nan(mx, v);
                else
                    acc += a->op == NNRT_RLSE ? exp(v - mx) : v;
                for (int j = 0; j < nr; j++) {
                    off += rstride[j];
                    if (++idx[j] < rshape[j])
                        break;
                    off -= idx[j] * rstride[j];
                    idx[j] = 0;
                }
            }
        }
        store(a->y, a->dt, o, finish(a->op, a->op == NNRT_RMAX ? mx : acc, mx, rcount));
    }
}

// Sizes of the [O, R, I] view, or false when the reduced dims are not one block.
static bool oir_view(const NnrtReduce *a, int64_t *o, int64_t *r, int64_t *in)
{
    int stage = 0; // 0: outer kept dims, 1: reduced block, 2: inner kept dims
    *o = *r = *in = 1;
    for (int d = 0; d < a->rank; d++) {
        int64_t n = a->shape[d];
        bool red = a->axes >> d & 1;
        if (n == 1)
            continue;
        if (red && stage == 2)
            return false;
        if (red)
            stage = 1;
        else if (stage == 1)
            stage = 2;
        *(stage == 0 ? o : stage == 1 ? r : in) *= n;
    }
    return true;
}

static int64_t out_numel(const NnrtReduce *a)
{
    int64_t n = 1;
    for (int d = 0; d < a->rank; d++)
        if (!(a->axes >> d & 1))
            n *= a->shape[d];
    return n;
}

void nnrt_reduce(const NnrtReduce *a, int ith, int nth)
{
    int64_t o, r, in, lo, hi, nout = out_numel(a);
    if (!oir_view(a, &o, &r, &in)) {
        nnrt_split(nout, 16, ith, nth, &lo, &hi);
        reduce_generic(a, lo, hi);
        return;
    }
    if (in == 1) {
        nnrt_split(o, 16, ith, nth, &lo, &hi);
        reduce_rows(a, r, lo, hi);
    } else {
        nnrt_split(nout, 16, ith, nth, &lo, &hi);
        reduce_cols(a, r, in, lo, hi);
    }
}

static void reduce_task(void *a, int ith, int nth) { nnrt_reduce(a, ith, nth); }

void nnrt_reduce_par(NnrtPool *p, const NnrtReduce *a)
{
    int64_t n = 1;
    for (int d = 0; d < a->rank; d++)
        n *= a->shape[d];
    if (want_par(p, n * (a->op == NNRT_RLSE ? 8 : 1)) && out_numel(a) >= 2)
        nnrt_pool_run(p, reduce_task, (void *)a);
    else
        nnrt_reduce(a, 0, 1);
}

void nnrt_argmax(const NnrtArgmax *a, int ith, int nth)
{
    int64_t o = 1, r = a->shape[a->axis], in = 1, lo, hi;
    for (int d = 0; d < a->axis; d++)
        o *= a->shape[d];
    for (int d = a->axis + 1; d < a->rank; d++)
        in *= a->shape[d];
    nnrt_split(o * in, 16, ith, nth, &lo, &hi);
    for (int64_t pos = lo; pos < hi; pos++) {
        int64_t base = pos / in * r * in + pos % in;
        int32_t best = 0;
        double bv = r ? load(a->x, a->dt, base) : 0;
        for (int64_t q = 1; q < r; q++) {
            double v = load(a->x, a->dt, base + q * in);
            if (v > bv) {
                bv = v;
                best = (int32_t)q;
            }
        }
        a->y[pos] = best;
    }
}
