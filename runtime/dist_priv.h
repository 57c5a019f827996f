// Between runtime/dist.c (rank state, no MPI) and runtime/dist_mpi.c (the
// MPI calls): the operations dist_mpi.c hands over once MPI runs.
#ifndef NNRT_DIST_PRIV_H
#define NNRT_DIST_PRIV_H

#include "dist.h"

typedef struct NnrtDistOps {
    void (*grad_start)(float *acc, int64_t n); // acc already weighted
    void (*grad_wait)(const float *acc);       // acc then holds the sum
    void (*progress)(void);
    // The sharded update (dist.h): reduce-scatter of acc (weighted but for
    // this rank's [lo, hi), which the sum weights by own_w) keeping [lo, hi);
    // in-place all-gather of buf's ranges.
    void (*grad_scatter)(float *acc, int64_t n, int64_t align, float own_w);
    void (*gather_start)(float *buf, int64_t n, int64_t align);
    void (*gather_wait)(void);
    NnStatus (*gather_now)(float *buf, int64_t n, int64_t align, const char *what);
    NnStatus (*sum_f64)(double *v, int n, const char *what);
    NnStatus (*sum_i64)(int64_t *v, int n, const char *what);
    NnStatus (*check_hash)(uint64_t h, const char *what);
    void (*abort)(const char *msg);
    void (*finalize)(void);
} NnrtDistOps;

// ops NULL: one rank (MPI started by a one-process mpirun; fini still ends
// it). Returns the statistics dist_mpi.c adds to.
NnrtDistStats *nnrt_dist_attach(const NnrtDistOps *ops, int rank, int size, void (*fini)(void));

#endif
