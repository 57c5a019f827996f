// Private helpers of the kernels: walking a broadcast (NnrtBcast) in runs of
// the innermost dim, starting from any flat output position, so each thread can
// start at its own slice. Invariant: off[k] is operand k's element offset of
// output position idx; a run never crosses the end of the innermost dim.
#ifndef NNRT_KITER_H
#define NNRT_KITER_H

#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"

// Our bug, not the user's: libnnrt cannot see ir/diag.h, so it has its own.
#define KASSERT(c) ((c) ? (void)0 : kassert_fail(__FILE__, __LINE__, #c))

static inline void kassert_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "internal error: %s:%d: %s\n", file, line, what);
    abort();
}

typedef struct KIter {
    int64_t idx[NN_MAX_RANK];
    int64_t off[3];
} KIter;

static inline void kiter_start(const NnrtBcast *b, int64_t pos, KIter *it)
{
    it->off[0] = it->off[1] = it->off[2] = 0;
    for (int d = b->rank - 1; d >= 0; d--) {
        it->idx[d] = pos % b->shape[d];
        pos /= b->shape[d];
        for (int k = 0; k < b->nin; k++)
            it->off[k] += it->idx[d] * b->stride[k][d];
    }
}

// Length of the run starting at the current position, at most `left`.
static inline int64_t kiter_run(const NnrtBcast *b, const KIter *it, int64_t left)
{
    int64_t room = b->shape[b->rank - 1] - it->idx[b->rank - 1];
    return room < left ? room : left;
}

static inline void kiter_advance(const NnrtBcast *b, KIter *it, int64_t len)
{
    int d = b->rank - 1;
    it->idx[d] += len;
    for (int k = 0; k < b->nin; k++)
        it->off[k] += len * b->stride[k][d];
    while (d > 0 && it->idx[d] == b->shape[d]) {
        for (int k = 0; k < b->nin; k++)
            it->off[k] -= it->idx[d] * b->stride[k][d] - b->stride[k][d - 1];
        it->idx[d] = 0;
        d--;
        it->idx[d]++;
    }
}

// Below this many elements a kernel runs on the calling thread only.
enum { PAR_MIN_ELEMS = 1 << 15 };

static inline bool want_par(NnrtPool *p, int64_t work)
{
    return p && p->nthreads > 1 && work >= PAR_MIN_ELEMS;
}

#endif
