// Per-op rules, named by convention from ops.def (see STYLE.md section 4).
// Kept together by op family in ir/op_<family>.c.
//
// shape_<name>(g, n): n->op, n->in, n->nin, n->attr are set; the rule sets
//   n->dtype and n->shape, or writes a user-facing message into g->err (e.g.
//   "cannot add f32[N, 256] and f32[128]") and returns false.
// vjp_<name>(g, id, gout, gin): appends IR computing the vector-Jacobian
//   product of node id for output gradient gout (same shape as the node) and
//   stores the gradient for input k in gin[k], already summed back to input
//   k's shape, or -1 where input k gets no gradient. Built with the nn_ir_*
//   builders, so passes see backward nodes like any other.
#ifndef NN_RULES_H
#define NN_RULES_H

#include "graph.h"

#define NN_OP(tag, name, arity, flags, attrs)                                                      \
    bool shape_##name(NnGraph *g, NnNode *n);                                                      \
    void vjp_##name(NnGraph *g, NnId id, NnId gout, NnId *gin);
#include "ops.def"
#undef NN_OP

// Shared helpers for rules.
bool nn_broadcast_shapes(const NnShape *a, const NnShape *b, NnShape *out);
void nn_set_err(NnGraph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
