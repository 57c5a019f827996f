// Counter-based random draws and dropout. Element i depends only on (seed,
// step, i) through the inline functions in kernels.h, so any thread split, and
// generated code, gives the same numbers.
#include "kernels.h"
#include "kiter.h"

void nnrt_rand(const NnrtRand *a, int ith, int nth)
{
    int64_t lo, hi;
    nnrt_split(a->n, 16, ith, nth, &lo, &hi);
    uint64_t key = nnrt_rand_key(a->seed, a->step);
    for (int64_t i = lo; i < hi; i++) {
        double v;
        if (a->kind == NNRT_NORMAL) {
            v = nnrt_rand_normal(a->seed, a->step, (uint64_t)i);
        } else if (a->dt == NN_DT_F32) {
            ((float *)a->y)[i] = (float)(nnrt_rand_bits(key, (uint64_t)i) >> 40) * 0x1p-24f;
            continue;
        } else {
            v = (double)(nnrt_rand_bits(key, (uint64_t)i) >> 11) * 0x1p-53;
        }
        if (a->dt == NN_DT_F32)
            ((float *)a->y)[i] = (float)v;
        else
            ((double *)a->y)[i] = v;
    }
}

static void rand_task(void *a, int ith, int nth) { nnrt_rand(a, ith, nth); }

void nnrt_rand_par(NnrtPool *p, const NnrtRand *a)
{
    if (want_par(p, a->n * 4))
        nnrt_pool_run(p, rand_task, (void *)a);
    else
        nnrt_rand(a, 0, 1);
}

void nnrt_dropout(const NnrtDropout *a, int ith, int nth)
{
    int64_t lo, hi;
    nnrt_split(a->n, 16, ith, nth, &lo, &hi);
    uint64_t key = nnrt_rand_key(a->seed, a->step);
    double scale = a->rate < 1.0 ? 1.0 / (1.0 - a->rate) : 0.0;
    for (int64_t i = lo; i < hi; i++) {
        double u = (double)(nnrt_rand_bits(key, (uint64_t)i) >> 11) * 0x1p-53;
        bool keep = u >= a->rate && a->rate < 1.0;
        if (a->dt == NN_DT_F32)
            ((float *)a->y)[i] = keep ? (float)(((const float *)a->x)[i] * scale) : 0.0f;
        else
            ((double *)a->y)[i] = keep ? ((const double *)a->x)[i] * scale : 0.0;
    }
}

static void dropout_task(void *a, int ith, int nth) { nnrt_dropout(a, ith, nth); }

void nnrt_dropout_par(NnrtPool *p, const NnrtDropout *a)
{
    if (want_par(p, a->n * 2))
        nnrt_pool_run(p, dropout_task, (void *)a);
    else
        nnrt_dropout(a, 0, 1);
}
