// Indexing with i32 labels, the building blocks of classification losses:
// take picks one entry per row (x[i, idx[i]]), onehot expands labels to rows.
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
