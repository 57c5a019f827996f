// Structured loops (NN_OP_LOOP, ir/ops.def): builders, the layout of a loop
// node's buffer that both backends share, and the loop's gradient. A loop's
// body names its symbolic dims like the graph holding it (same symbols, same
// order), so one binding serves both.
#ifndef NN_LOOP_H
#define NN_LOOP_H

#include "graph.h"

// A LOOP node over body (a child graph of g, see nn_graph_new_child); inputs as
// ops.def says. Same error convention as nn_ir_add.
NnId nn_ir_loop(NnGraph *g, const NnId *in, int nin, int ncarry, int nseq, int64_t trips,
                bool reverse, NnGraph *body, NnLoc loc);
// Result k of a LOOP node (a LOOP_OUT node).
NnId nn_ir_loop_out(NnGraph *g, NnId loop, int k, NnLoc loc);

// Results of a loop: final carries, then stacked per-step outputs.
static inline int nn_loop_nresults(const NnNode *loop) { return loop->attr.body->noutputs; }
// The body node standing for input k of the loop (its k-th INPUT), or -1.
NnId nn_loop_body_input(const NnGraph *body, int k);
// Type of result k (stacked outputs get a leading [trips] axis).
void nn_loop_result_type(const NnNode *loop, int k, NnDType *dt, NnShape *s);

// Byte layout of the loop node's buffer for symbol values symv: off[k] for
// result k (k < nresults), then off[nresults + c] for a staging copy of carry
// c (new carries land there before replacing the old, so a carry may take
// another's old value), and off[nresults + ncarry] is the total size. Every
// region starts at a multiple of 64. off has nresults + ncarry + 1 entries.
void nn_loop_layout(const NnNode *loop, const int64_t *symv, int64_t *off);
int64_t nn_loop_bytes(const NnNode *loop, const int64_t *symv);
// The layout for a batch left to run time (symbol sym, bound to 1 in symv):
// the regions whose type has the batch (rows[k]) are laid out per row, region
// k at off[k] * batch of the node's buffer (off[nresults + ncarry]: bytes per
// row in all), and the others (a reverse loop's summed weight gradients) at
// off[k] of a fixed-size buffer of their own, whose size is returned. The
// memory plan sizes a loop with nn_loop_has_rows(loop, sym) so (ir/plan.c).
int64_t nn_loop_layout_rows(const NnNode *loop, const int64_t *symv, int sym, int64_t *off,
                            bool *rows);
bool nn_loop_has_rows(const NnNode *loop, int sym);

// Whether LOOP_OUT node id of g takes a stacked result that the JIT's loop
// writes straight into id's own buffer, step by step, instead of the loop's
// (so the result is never copied): the first LOOP_OUT of each stacked result.
// The memory plan gives such a node its buffer from the loop's step on.
bool nn_loop_out_direct(const NnGraph *g, NnId id);

// The gradient of LOOP node id (called by autodiff, which gathers the
// gradients of its LOOP_OUT results): dres[k] is the gradient of result k or
// -1; need[k] says whether input k wants one. Stores input k's gradient in
// gin[k] (-1 for none). Builds the reverse loop, whose body recomputes the
// forward step from the carries saved at each step and applies its VJP.
void nn_loop_vjp(NnGraph *g, NnId id, const NnId *dres, const bool *need, NnId *gin);

#endif
