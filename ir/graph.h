// The dataflow IR. A graph is an array of nodes in topological order: every
// input id of node i is < i. Nodes are values (one result each) with a dtype and
// a shape whose dims may be symbolic (N, T), bound to numbers only when a
// backend runs the graph. The graph owns an arena; nodes are never freed singly.
// Builders (nn_ir_*) run the op's shape rule, so a graph is shaped as it is built.
#ifndef NN_GRAPH_H
#define NN_GRAPH_H

#include <stdint.h>

#include "arena.h"
#include "diag.h"
#include "nnrt.h"
#include "op.h"

#define NN_MAX_SYMS 8

typedef int32_t NnId; // index into NnGraph.nodes; -1 means none/failed

// dim >= 0 is a size; dim < 0 is symbol -(dim + 1) of the graph (see nn_sym_dim).
typedef struct NnShape {
    int rank;
    int64_t dim[NN_MAX_RANK];
} NnShape;

typedef struct NnGraph NnGraph;

typedef struct NnAttr {
    const char *name;      // INPUT/PARAM/STATE: "mlp.dense1.w" (arena string)
    double value;          // CONST value; DROPOUT rate
    NnShape shape;         // CONST/RAND_*/RESHAPE/BROADCAST/SUMTO target
    int perm[NN_MAX_RANK]; // TRANSPOSE: out dim i = in dim perm[i]
    uint32_t axes;         // reductions: bit k set = reduce axis k
    bool keep;             // reductions: keep reduced axes as size 1
    int axis;              // TAKE, ARGMAX
    bool ta, tb;           // MATMUL: use A^T / B^T
    NnDType dtype;         // CAST target
    int64_t depth;         // ONEHOT classes
    uint64_t seed;         // RAND_*, DROPOUT
    NnGraph *body;         // FUSED
} NnAttr;

typedef struct NnNode {
    NnOp op;
    NnDType dtype;
    NnShape shape;
    int nin;
    NnId *in;  // nin ids, all < this node's id
    NnAttr attr;
    NnLoc loc; // the .nn expression (or layer call) this node came from
} NnNode;

typedef struct NnOutput {
    const char *name; // "loss", "output", ...
    NnId id;
} NnOutput;

// After a run, the PARAM/STATE node `var` takes the value of node `value`.
// All updates of a run read pre-update values (they apply at the end).
typedef struct NnUpdate {
    NnId var, value;
} NnUpdate;

struct NnGraph {
    NnArena *arena;
    NnNode *nodes;
    int count, cap;
    NnOutput *outputs;
    int noutputs, outcap;
    NnUpdate *updates;
    int nupdates, updcap;
    const char *syms[NN_MAX_SYMS]; // symbolic dim names; dim -(k+1) is syms[k]
    int nsyms;
    char err[512]; // message of the last failed nn_ir_add (a shape error)
};

NnGraph *nn_graph_new(void);
void nn_graph_free(NnGraph *g);

// Symbolic dims. nn_sym_dim returns the (negative) dim for a name, adding it;
// when the graph already has NN_MAX_SYMS names it returns 0 and sets g->err
// (a user's model can name that many dims, so callers report it).
int64_t nn_sym_dim(NnGraph *g, const char *name);
static inline bool nn_dim_is_sym(int64_t d) { return d < 0; }

// Adds a node after running its shape rule. Copies `in` and `attr`. On a shape
// or dtype error returns -1 and leaves the message in g->err (no location: the
// caller owns the location and reports it). Sources take dtype/shape from
// `attr` fields: INPUT/PARAM/STATE/CONST/RAND_* use attr->shape and attr->dtype.
NnId nn_ir_add(NnGraph *g, NnOp op, const NnId *in, int nin, const NnAttr *attr, NnLoc loc);

// Convenience builders over nn_ir_add (same error convention).
NnId nn_ir_source(NnGraph *g, NnOp op, const char *name, NnDType dt, const NnShape *s, NnLoc loc);
NnId nn_ir_const(NnGraph *g, double v, NnDType dt, NnLoc loc); // rank-0 scalar
NnId nn_ir_unary(NnGraph *g, NnOp op, NnId a, NnLoc loc);
NnId nn_ir_binary(NnGraph *g, NnOp op, NnId a, NnId b, NnLoc loc);
NnId nn_ir_select(NnGraph *g, NnId c, NnId a, NnId b, NnLoc loc);
NnId nn_ir_reduce(NnGraph *g, NnOp op, NnId a, uint32_t axes, bool keep, NnLoc loc);
NnId nn_ir_matmul(NnGraph *g, NnId a, NnId b, bool ta, bool tb, NnLoc loc);
NnId nn_ir_reshape(NnGraph *g, NnId a, const NnShape *s, NnLoc loc);
NnId nn_ir_transpose(NnGraph *g, NnId a, const int *perm, NnLoc loc);
NnId nn_ir_broadcast(NnGraph *g, NnId a, const NnShape *s, NnLoc loc);
NnId nn_ir_sumto(NnGraph *g, NnId a, const NnShape *s, NnLoc loc);
NnId nn_ir_cast(NnGraph *g, NnId a, NnDType dt, NnLoc loc);

void nn_graph_add_output(NnGraph *g, const char *name, NnId id);
NnId nn_graph_output(const NnGraph *g, const char *name); // -1 if absent
void nn_graph_add_update(NnGraph *g, NnId var, NnId value);

static inline NnNode *nn_node(const NnGraph *g, NnId id) { return &g->nodes[id]; }

// "f32[N, 256]" (or "f32" for a scalar) into buf; returns buf.
char *nn_type_str(const NnGraph *g, NnDType dt, const NnShape *s, char *buf, size_t n);
bool nn_shape_eq(const NnShape *a, const NnShape *b);
// Concrete dims for symbol values symv[k] (all symbols must be bound).
void nn_shape_bind(const NnShape *s, const int64_t *symv, int64_t *out);

// Checks the invariants (topological order, arities, shapes agree with shape
// rules, updates name PARAM/STATE nodes). Returns false and fills g->err on the
// first violation. Debug builds run it after every pass.
bool nn_ir_verify(NnGraph *g);

// Textual dump, stable across runs (golden tests compare it).
void nn_ir_print(FILE *out, const NnGraph *g);

#endif
