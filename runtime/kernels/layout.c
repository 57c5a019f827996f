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
