// Layout kernels: transpose by a permutation and broadcast to a larger shape.
// Both are a strided gather into a dense output, walked in runs of the output's
// innermost dim; elements are moved as 4- or 8-byte words, so any dtype works.
// sumto is a reduce_sum; nnrt_sumto_axes finds its axes.
#include <string.h>

#include "kernels.h"
#include "kiter.h"

static void gather(const NnrtBcast *b, size_t esize, const void *x, void *y, int ith, int nth)
{
    int64_t lo, hi, sx = b->stride[0][b->rank - 1];
    nnrt_split(b->numel, 16, ith, nth, &lo, &hi);
    if (lo >= hi)
        return; // also keeps kiter_start away from size-0 dims
    KIter it;
    kiter_start(b, lo, &it);
    for (int64_t pos = lo; pos < hi;) {
        int64_t len = kiter_run(b, &it, hi - pos);
        if (esize == 8) {
            const uint64_t *src = (const uint64_t *)x + it.off[0];
            uint64_t *dst = (uint64_t *)y + pos;
            for (int64_t i = 0; i < len; i++)
                dst[i] = src[i * sx];
        } else {
            const uint32_t *src = (const uint32_t *)x + it.off[0];
            uint32_t *dst = (uint32_t *)y + pos;
            if (sx == 1)
                memcpy(dst, src, (size_t)len * 4);
            else
                for (int64_t i = 0; i < len; i++)
                    dst[i] = src[i * sx];
        }
        kiter_advance(b, &it, len);
        pos += len;
    }
}

// The gather that reads x transposed: output dim i steps x by x's stride of
// dim perm[i]. Size-1 dims are dropped and runs contiguous in x are merged.
static void transpose_view(const NnrtTranspose *a, NnrtBcast *b)
{
    int64_t xstride[NN_MAX_RANK], st = 1;
    for (int d = a->rank - 1; d >= 0; d--) {
        xstride[d] = st;
        st *= a->shape[d];
    }
    memset(b, 0, sizeof *b);
    b->nin = 1;
    b->numel = 1;
    int r = 0;
    for (int i = 0; i < a->rank; i++) {
        int64_t n = a->shape[a->perm[i]], s = xstride[a->perm[i]];
        b->numel *= n;
        if (n == 1)
            continue;
        if (r > 0 && b->stride[0][r - 1] == s * n) {
            b->shape[r - 1] *= n;
            b->stride[0][r - 1] = s;
            continue;
        }
        b->shape[r] = n;
        b->stride[0][r++] = s;
    }
    if (r == 0) {
        b->shape[0] = 1;
        r = 1;
    }
    b->rank = r;
}

void nnrt_transpose(const NnrtTranspose *a, int ith, int nth)
{
    NnrtBcast b;
    transpose_view(a, &b);
    gather(&b, a->esize, a->x, a->y, ith, nth);
}

static void transpose_task(void *a, int ith, int nth) { nnrt_transpose(a, ith, nth); }

void nnrt_transpose_par(NnrtPool *p, const NnrtTranspose *a)
{
    int64_t n = 1;
    for (int d = 0; d < a->rank; d++)
        n *= a->shape[d];
    if (want_par(p, n))
        nnrt_pool_run(p, transpose_task, (void *)a);
    else
        nnrt_transpose(a, 0, 1);
}

void nnrt_broadcast(const NnrtBroadcast *a, int ith, int nth)
{
    gather(a->b, a->esize, a->x, a->y, ith, nth);
}

static void broadcast_task(void *a, int ith, int nth) { nnrt_broadcast(a, ith, nth); }

void nnrt_broadcast_par(NnrtPool *p, const NnrtBroadcast *a)
{
    if (want_par(p, a->b->numel))
        nnrt_pool_run(p, broadcast_task, (void *)a);
    else
        nnrt_broadcast(a, 0, 1);
}

bool nnrt_sumto_axes(int xrank, const int64_t *xshape, int rank, const int64_t *shape,
                     uint32_t *axes)
{
    *axes = 0;
    if (rank > xrank)
        return nnrt_fail(NN_ERR_SHAPE, "sumto: target rank %d exceeds rank %d", rank, xrank),
               false;
    int lead = xrank - rank;
    for (int d = 0; d < xrank; d++) {
        if (d < lead) {
            *axes |= 1u << d;
            continue;
        }
        int64_t t = shape[d - lead];
        if (t == xshape[d])
            continue;
        if (t != 1)
            return nnrt_fail(NN_ERR_SHAPE, "sumto: dim %d is %lld, target %lld", d,
                             (long long)xshape[d], (long long)t),
                   false;
        *axes |= 1u << d;
    }
    return true;
}

// Fills n elements of dt with v.
static void fill(NnDType dt, void *y, int64_t n, double v)
{
    if (dt == NN_DT_F64)
        for (int64_t i = 0; i < n; i++)
            ((double *)y)[i] = v;
    else if (dt == NN_DT_F32)
        for (int64_t i = 0; i < n; i++)
            ((float *)y)[i] = (float)v;
    else
        for (int64_t i = 0; i < n; i++)
            ((int32_t *)y)[i] = (int32_t)v;
}

// Rows of y (all dims but the last) are split over threads; a row inside x's
// region copies x's row between its fills, any other row is all fill.
void nnrt_pad(const NnrtPad *a, int ith, int nth)
{
    size_t es = nnrt_dtype_size(a->dt);
    int r = a->rank;
    if (r == 0) {
        if (ith == 0)
            memcpy(a->y, a->x, es);
        return;
    }
    int64_t yshape[NN_MAX_RANK], rows = 1;
    for (int d = 0; d < r; d++) {
        yshape[d] = a->shape[d] + a->lo[d] + a->hi[d];
        if (d < r - 1)
            rows *= yshape[d];
    }
    int64_t xw = a->shape[r - 1], yw = yshape[r - 1], lo, hi;
    nnrt_split(rows, 1, ith, nth, &lo, &hi);
    for (int64_t row = lo; row < hi; row++) {
        char *y = (char *)a->y + row * yw * (int64_t)es;
        int64_t rest = row, xrow = 0, scale = 1;
        bool inside = true;
        for (int d = r - 2; d >= 0; d--) {
            int64_t i = rest % yshape[d] - a->lo[d];
            rest /= yshape[d];
            inside = inside && i >= 0 && i < a->shape[d];
            xrow += i * scale;
            scale *= a->shape[d];
        }
        if (!inside || xw == 0) {
            fill(a->dt, y, yw, a->value);
            continue;
        }
        fill(a->dt, y, a->lo[r - 1], a->value);
        memcpy(y + a->lo[r - 1] * (int64_t)es, (const char *)a->x + xrow * xw * (int64_t)es,
               (size_t)xw * es);
        fill(a->dt, y + (a->lo[r - 1] + xw) * (int64_t)es, a->hi[r - 1], a->value);
    }
}

static void pad_task(void *a, int ith, int nth) { nnrt_pad(a, ith, nth); }

void nnrt_pad_par(NnrtPool *p, const NnrtPad *a)
{
    int64_t n = 1;
    for (int d = 0; d < a->rank; d++)
        n *= a->shape[d] + a->lo[d] + a->hi[d];
    if (want_par(p, n) && a->rank > 1)
        nnrt_pool_run(p, pad_task, (void *)a);
    else
        nnrt_pad(a, 0, 1);
}

// Threads split the [outer, dim] rows of the long side (y for GET, the full
// tensor otherwise); each row is one memcpy of `inner` elements (or zeros).
void nnrt_slice(const NnrtSlice *a, int ith, int nth)
{
    int64_t run = a->inner * (int64_t)a->esize, lo, hi;
    if (a->op == NNRT_SLICE_GET) {
        nnrt_split(a->outer * a->len, 1, ith, nth, &lo, &hi);
        for (int64_t t = lo; t < hi; t++) {
            int64_t o = t / a->len, j = t % a->len;
            memcpy((char *)a->y + t * run,
                   (const char *)a->x + (o * a->dim + a->start + j * a->step) * run, (size_t)run);
        }
        return;
    }
    nnrt_split(a->outer * a->dim, 1, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        int64_t o = t / a->dim, i = t % a->dim - a->start;
        char *y = (char *)a->y + t * run;
        if (i >= 0 && i % a->step == 0 && i / a->step < a->len)
            memcpy(y, (const char *)a->x + (o * a->len + i / a->step) * run, (size_t)run);
        else if (a->op == NNRT_SLICE_PUT)
            memset(y, 0, (size_t)run);
    }
}

static void slice_task(void *a, int ith, int nth) { nnrt_slice(a, ith, nth); }

void nnrt_slice_par(NnrtPool *p, const NnrtSlice *a)
{
    if (want_par(p, a->outer * a->dim * a->inner))
        nnrt_pool_run(p, slice_task, (void *)a);
    else
        nnrt_slice(a, 0, 1);
}
