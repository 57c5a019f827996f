// Private to the interpreter: a Frame is one graph bound to concrete symbol
// values, with a planned workspace (ir/plan.h) and a tensor header per node;
// FUSED and LOOP nodes own a Frame for their body. interp_<name> (one per op)
// computes node n of the running frame into `out`, whose data is already set.
// Invariant: headers and buffers are made when a binding is first seen and
// reused by every later run with the same symbol values.
#ifndef NN_INTERP_H
#define NN_INTERP_H

#include "backend.h"
#include "kernels.h"
#include "plan.h"

typedef struct Frame Frame;

struct Frame {
    const NnGraph *g;
    int64_t symv[NN_MAX_SYMS]; // value of each symbol of g
    NnPlan *plan;              // in the exec's arena
    char *ws;                  // plan->workspace bytes (nnrt_alloc), or NULL
    NnTensor *vals;            // g->count headers: bound shapes; data in ws or external
    Frame **sub;               // g->count entries: a FUSED or LOOP node's body frame, else NULL
};

typedef struct Ictx {
    NnrtPool *pool;
    Frame *f;   // the frame being run
    void *pack; // matmul packing / im2col scratch, big enough for every node of the exec
} Ictx;

static inline const NnTensor *interp_in(const Ictx *c, const NnNode *n, int k)
{
    return &c->f->vals[n->in[k]];
}

// Scratch bytes node n needs in Ictx.pack beyond its own buffer (im2col for
// the convolution ops), its operands and result bound in f->vals.
size_t interp_conv_scratch(const Frame *f, const NnNode *n, const NnTensor *out);

// Runs every node of c->f in order (sources must already point at their data).
NnStatus nn_interp_run_frame(Ictx *c);

#define NN_OP(tag, name, arity, flags, attrs)                                                      \
    NnStatus interp_##name(Ictx *c, const NnNode *n, NnTensor *out);
#include "ops.def"
#undef NN_OP

#endif
