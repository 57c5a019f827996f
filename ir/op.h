// The NnOp enum and per-op facts, all derived from ops.def.
#ifndef NN_OP_H
#define NN_OP_H

#include <stdbool.h>

enum {
    NN_OPF_ELEMWISE = 1 << 0, // out[i] depends on in[k][i] only (after broadcasting)
    NN_OPF_COMMUTE = 1 << 1,  // binary and commutative
    NN_OPF_FUSIBLE = 1 << 2,  // may go inside a FUSED body
    NN_OPF_DIFF = 1 << 3,     // has a gradient rule
    NN_OPF_SOURCE = 1 << 4,   // no inputs; value comes from outside or attrs
    NN_OPF_REDUCE = 1 << 5,   // reduction over attr.axes
    NN_OPF_RANDOM = 1 << 6,   // depends on (seed, step)
    NN_OPF_CONTRACT = 1 << 7, // a contraction (matmul, convolutions): fusion may hang an
                              // elementwise epilogue on its result
    NN_OPF_EPILOGUE = 1 << 8, // not a contraction, but its kernel can apply an elementwise
                              // epilogue at its final store (pooling), same dtype
    NN_OPF_CHANLIN = 1 << 9,  // linear in input 1, whose row f makes output channel f
                              // (axis 1): scaling that row scales that channel (conv2d)
};

// Attribute indices and bits, from attrs.def (ops.def's attrs column).
enum {
#define NN_ATTR(tag, field, kind, label) NN_ATI_##tag,
#include "attrs.def"
#undef NN_ATTR
    NN_ATI_COUNT
};
enum {
#define NN_ATTR(tag, field, kind, label) NN_AT_##tag = 1u << NN_ATI_##tag,
#include "attrs.def"
#undef NN_ATTR
};

typedef enum NnOp {
#define NN_OP(tag, name, arity, flags, attrs) NN_OP_##tag,
#include "ops.def"
#undef NN_OP
    NN_OP_COUNT
} NnOp;

const char *nn_op_name(NnOp op);  // "matmul"
int nn_op_arity(NnOp op);         // -1 for variadic
unsigned nn_op_flags(NnOp op);
unsigned nn_op_attrs(NnOp op);    // NN_AT_* bits of the attributes it uses
bool nn_op_has(NnOp op, unsigned flag);
NnOp nn_op_lookup(const char *name); // NN_OP_COUNT if unknown

#endif
