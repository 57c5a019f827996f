// Indexing with i32 labels, the building blocks of classification losses:
// take picks one entry per row (x[i, idx[i]]), onehot expands labels to rows,
// gather picks rows of a table (embeddings) and scatter_add is its adjoint.
// Labels come from user data, so out-of-range ones are reported, never read.
#include <string.h>

#include "kernels.h"

int64_t nnrt_take(const NnrtTake *a)
{
    int64_t bad = -1;
    for (int64_t i = 0; i < a->n; i++) {
        int32_t j = a->idx[i];
        bool ok = j >= 0 && j < a->c;
        if (!ok && bad < 0)
            bad = i;
        if (a->dt == NN_DT_F32)
            ((float *)a->y)[i] = ok ? ((const float *)a->x)[i * a->c + j] : 0.0f;
        else
            ((double *)a->y)[i] = ok ? ((const double *)a->x)[i * a->c + j] : 0.0;
    }
    return bad;
}

int64_t nnrt_onehot(const NnrtOnehot *a)
{
    int64_t bad = -1;
    size_t es = nnrt_dtype_size(a->dt);
    memset(a->y, 0, (size_t)(a->n * a->depth) * es);
    for (int64_t i = 0; i < a->n; i++) {
        int32_t j = a->idx[i];
        if (j < 0 || j >= a->depth) {
            if (bad < 0)
                bad = i;
            continue;
        }
        if (a->dt == NN_DT_F32)
            ((float *)a->y)[i * a->depth + j] = 1.0f;
        else if (a->dt == NN_DT_F64)
            ((double *)a->y)[i * a->depth + j] = 1.0;
        else
            ((int32_t *)a->y)[i * a->depth + j] = 1;
    }
    return bad;
}

int64_t nnrt_gather(const NnrtGather *a)
{
    int64_t bad = -1;
    size_t row = (size_t)a->d * nnrt_dtype_size(a->dt);
    for (int64_t i = 0; i < a->n; i++) {
        int32_t j = a->idx[i];
        char *y = (char *)a->y + (size_t)i * row;
        if (j < 0 || j >= a->v) {
            if (bad < 0)
                bad = i;
            memset(y, 0, row);
            continue;
        }
        memcpy(y, (const char *)a->x + (size_t)j * row, row);
    }
    return bad;
}

void nnrt_scatter_add(const NnrtScatterAdd *a)
{
    memset(a->y, 0, (size_t)(a->v * a->d) * nnrt_dtype_size(a->dt));
    for (int64_t i = 0; i < a->n; i++) {
        int32_t j = a->idx[i];
        if (j < 0 || j >= a->v)
            continue;
        if (a->dt == NN_DT_F32) {
            const float *x = (const float *)a->x + i * a->d;
            float *y = (float *)a->y + j * a->d;
            for (int64_t k = 0; k < a->d; k++)
                y[k] += x[k];
        } else {
            const double *x = (const double *)a->x + i * a->d;
            double *y = (double *)a->y + j * a->d;
            for (int64_t k = 0; k < a->d; k++)
                y[k] += x[k];
        }
    }
}
