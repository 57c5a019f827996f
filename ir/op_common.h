// Helpers shared by the per-op rule files (ir/op_*.c): dtype tests, type
// strings for error messages, and small IR-building steps that several VJPs
// need (summing a gradient back to an operand's shape, filled constants).
// Private to ir/op_*.c and ir/autodiff.c; not part of the ir/ contract.
#ifndef NN_OP_COMMON_H
#define NN_OP_COMMON_H

#include "rules.h"

#define NN_TYPE_BUF 128

static inline bool nn_rule_is_float(NnDType dt) { return dt == NN_DT_F32 || dt == NN_DT_F64; }

// "f32[N, 256]" for input k of n.
const char *nn_rule_in_type(const NnGraph *g, const NnNode *n, int k, char *buf);
// Checks a shape's rank and that every symbolic dim names a known symbol.
bool nn_rule_shape_ok(const NnGraph *g, const NnShape *s);
// Elements of s as "24" or "N*6" into buf.
const char *nn_rule_numel_str(const NnGraph *g, const NnShape *s, char *buf, size_t n);

// x itself when its shape already is s, else SUMTO(x, s).
NnId nn_rule_sumto(NnGraph *g, NnId x, const NnShape *s, NnLoc loc);
// x itself when its shape already is s, else BROADCAST(x, s).
NnId nn_rule_broadcast(NnGraph *g, NnId x, const NnShape *s, NnLoc loc);
// A CONST of value v, dtype dt and shape s (rank 0 when s is NULL).
NnId nn_rule_fill(NnGraph *g, double v, NnDType dt, const NnShape *s, NnLoc loc);
// Undoes a reduction's shape: y (the reduction's shape under `axes`/`keep`)
// reshaped to keep-dims and broadcast back to `full`.
NnId nn_rule_expand(NnGraph *g, NnId y, const NnShape *full, uint32_t axes, NnLoc loc);
// The keep-dims shape of reducing `s` over `axes`.
NnShape nn_rule_keep_shape(const NnShape *s, uint32_t axes);
// VJP of an op without a gradient rule: autodiff never calls it.
_Noreturn void nn_rule_no_vjp(const NnGraph *g, NnId id);

#endif
