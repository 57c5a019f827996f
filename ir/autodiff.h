// Reverse-mode automatic differentiation as an IR-to-IR transform: the
// gradient nodes are appended to the same graph, built from each op's VJP rule
// (vjp_<name> in ir/op_<family>.c), so forward, backward and optimizer update
// stay one graph that the passes optimize together.
#ifndef NN_AUTODIFF_H
#define NN_AUTODIFF_H

#include "graph.h"

// Appends IR for d loss / d wrt[k] and stores its id in grads[k] (same dtype
// and shape as wrt[k]). loss must be a float scalar (rank 0). A wrt node the
// loss does not depend on gets a zero CONST of its shape. Ops without
// NN_OPF_DIFF (comparisons, ARGMAX, ONEHOT, ...) and integer values stop the
// gradient. Returns false with g->err set when loss is not a float scalar.
bool nn_ad_grad(NnGraph *g, NnId loss, const NnId *wrt, int n, NnId *grads);

// General reverse mode: seeds[k] (-1: none) is the gradient flowing into
// outs[k]; grads[k] as above. Loop bodies use it for their step's VJP. False
// with g->err set (and g->err_loc) as nn_ad_grad says.
bool nn_ad_vjp(NnGraph *g, const NnId *outs, const NnId *seeds, int nout, const NnId *wrt, int n,
               NnId *grads);

#endif
