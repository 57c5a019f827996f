// Parameter initializers: fill a tensor from a seeded generator, so a model's
// first weights are a function of (seed, parameter name) alone, whatever the
// order parameters are created in.
#ifndef NNRT_INIT_H
#define NNRT_INIT_H

#include "nnrt.h"

// kind: zeros, ones, constant(v), normal(std = 0.01), uniform(lo = -0.05, hi = 0.05),
// glorot_uniform, glorot_normal, he_uniform, he_normal, orthogonal(gain = 1).
// Fan-in is shape[0] and fan-out shape[1] for rank >= 2 (x @ w layout);
// for rank 1 both are shape[0]. f32 and f64 tensors.
NnStatus nnrt_init_fill(NnTensor *t, const char *kind, const double *args, int nargs,
                        uint64_t seed, const char *name);

#endif
