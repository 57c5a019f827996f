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

// Geometry of a 2-D convolution or pooling window (NCHW). Filters are
// [F, C/groups, KH, KW]; transposed-convolution filters [C_in, F/groups, KH, KW].
// OH = (H + pad[0] + pad[2] - dilation[0]*(KH-1) - 1) / stride[0] + 1, floored;
// likewise OW with pad[1], pad[3].
typedef struct NnConv2d {
    int kernel[2];   // KH, KW (pooling window; for conv taken from the filter shape)
    int stride[2];   // >= 1
    int dilation[2]; // >= 1 (pooling: 1)
    int pad[4];      // top, left, bottom, right; >= 0 (asymmetric allowed, for "same")
    int groups;      // >= 1; divides C and F (pooling: 1)
    int outpad[2];   // transposed convolution only: extra rows/cols at the end, < stride
} NnConv2d;

// The fields an op uses are its ops.def attrs column (rows of ir/attrs.def);
// every other field stays zero (the verifier checks), so printing, CSE,
// copying and verification can follow the table.
typedef struct NnAttr {
    const char *name;      // INPUT/PARAM/STATE: "mlp.dense1.w" (arena string)
    double value;          // CONST value; DROPOUT rate; PAD fill value
    NnShape shape;         // CONST/RAND_*/RESHAPE/BROADCAST/SUMTO target; *_BWD result
    int perm[NN_MAX_RANK]; // TRANSPOSE: out dim i = in dim perm[i]
    uint32_t axes;         // reductions: bit k set = reduce axis k
    bool keep;             // reductions: keep reduced axes as size 1
    int axis;              // TAKE, ARGMAX, SLICE, SLICE_BWD, CONCAT
    bool ta, tb;           // MATMUL: use A^T / B^T
    NnDType dtype;         // CAST target
    int64_t depth;         // ONEHOT classes
    uint64_t seed;         // RAND_*, DROPOUT
    int64_t start, stop, step; // SLICE(_BWD): 0 <= start < stop <= dim, step >= 1
    int64_t lo[NN_MAX_RANK];   // PAD: elements added before axis k, >= 0
    int64_t hi[NN_MAX_RANK];   // PAD: elements added after axis k, >= 0
    NnConv2d conv;         // CONV2D*, *_POOL2D*
    int ncarry, nseq;      // LOOP: carries, then sequences, then invariants (inputs)
    int64_t trips;         // LOOP: steps
    bool reverse;          // LOOP: steps run from trips-1 down to 0
    int result;            // LOOP_OUT: index of the loop result
    NnGraph *body;         // FUSED, LOOP; EXTERN: its declared derivative, or NULL
    const char *sym, *lib; // EXTERN: the C function and its shared library (arena strings)
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
    NnLoc err_loc; // where err points when a call the user wrote caused it; else no src
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
// A MATMUL's M, N, K from its operands' bound dims (da rank ra, db rank rb):
// A's leading dims are rows, or with ta contracted (ir/op_matmul.c).
void nn_matmul_dims(const int64_t *da, int ra, const int64_t *db, int rb, bool ta, bool tb,
                    int64_t *m, int64_t *n, int64_t *k);
NnId nn_ir_reshape(NnGraph *g, NnId a, const NnShape *s, NnLoc loc);
NnId nn_ir_transpose(NnGraph *g, NnId a, const int *perm, NnLoc loc);
NnId nn_ir_broadcast(NnGraph *g, NnId a, const NnShape *s, NnLoc loc);
NnId nn_ir_sumto(NnGraph *g, NnId a, const NnShape *s, NnLoc loc);
NnId nn_ir_cast(NnGraph *g, NnId a, NnDType dt, NnLoc loc);

// Convolution and pooling (ir/op_conv.c). The builders fill what the operands
// fix (conv kernel from the filter shape; the data gradient's and transposed
// convolution's output shape), then nn_ir_add checks the rest: wrong rank,
// channels that do not match the filters, a kernel larger than the padded
// input, groups that do not divide the channels. C, H, W must be numbers.
NnId nn_ir_conv2d(NnGraph *g, NnId x, NnId w, const NnConv2d *c, NnLoc loc);
// Filters [C_in, F/groups, KH, KW]; H_out = (H-1)*stride - pad_top - pad_bottom
// + dilation*(KH-1) + outpad + 1, likewise W. A CONV2D_BWD_DATA node.
NnId nn_ir_conv_transpose2d(NnGraph *g, NnId x, NnId w, const NnConv2d *c, NnLoc loc);
// op is NN_OP_MAX_POOL2D or NN_OP_AVG_POOL2D; the window is c->kernel. Average
// pooling divides by KH*KW, counting padding as zeros (PyTorch's default).
NnId nn_ir_pool2d(NnGraph *g, NnOp op, NnId x, const NnConv2d *c, NnLoc loc);
// Gradients, also usable directly: the data gradient of CONV2D with filters w
// for an input of shape *xs, and the filter gradient for filters of shape *ws.
NnId nn_ir_conv2d_bwd_data(NnGraph *g, NnId dy, NnId w, const NnShape *xs, const NnConv2d *c,
                           NnLoc loc);
NnId nn_ir_conv2d_bwd_filter(NnGraph *g, NnId x, NnId dy, const NnShape *ws, const NnConv2d *c,
                             NnLoc loc);

// Layout along any axis (ir/op_layout.c). pad: lo[k], hi[k] >= 0 elements of
// `value` before / after axis k (rank entries each; a symbolic axis takes 0).
// slice: one axis, 0 <= start < stop <= dim, step >= 1, the axis a number.
// concat: n >= 1 operands of one dtype, equal except along `axis`, which must
// be a number in each.
NnId nn_ir_pad(NnGraph *g, NnId x, const int64_t *lo, const int64_t *hi, double value,
               NnLoc loc);
NnId nn_ir_slice(NnGraph *g, NnId x, int axis, int64_t start, int64_t stop, int64_t step,
                 NnLoc loc);
NnId nn_ir_concat(NnGraph *g, const NnId *xs, int n, int axis, NnLoc loc);

void nn_graph_add_output(NnGraph *g, const char *name, NnId id);
NnId nn_graph_output(const NnGraph *g, const char *name); // -1 if absent
// The function `sym` of shared library `lib` (an EXTERN node's; ir/op_extern.c),
// or NULL with the reason in why.
void *nn_extern_open(const char *lib, const char *sym, char *why, size_t cap);
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
// FNV-1a of that dump, continuing from h (NNRT_FNV_SEED to start): ranks
// compare it to check they compiled the same step. g NULL leaves h.
uint64_t nn_ir_hash(uint64_t h, const NnGraph *g);

#endif
