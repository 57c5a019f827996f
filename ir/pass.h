// IR-to-IR passes and the pipeline that runs them (ir/pass.c holds the ordered
// table). A pass takes a graph and returns either a NEW graph (own arena) when
// it changed something, or the very same pointer when it changed nothing; it
// never frees its argument. So the caller writes
//     NnGraph *h = nn_pass_cse(g); if (h != g) nn_graph_free(g); g = h;
// Every pass keeps: INPUT nodes (all of them, dead or not) in their relative
// order, PARAM/STATE nodes named by updates, outputs and updates (remapped),
// node locations, and the symbol table (same symbols at the same indices).
#ifndef NN_PASS_H
#define NN_PASS_H

#include <stdbool.h>
#include <stdio.h>

#include "graph.h"

typedef NnGraph *(*NnPassFn)(NnGraph *g);

typedef struct NnPass {
    const char *name; // "fold", as --no-pass= and --dump= spell it
    NnPassFn fn;
    char stage;       // 'C' cleanup (stage opt, iterated to a fixpoint), 'F' fused stage
} NnPass;

// The ordered table; ends with an entry whose name is NULL.
extern const NnPass nn_passes[];

NnGraph *nn_pass_fold(NnGraph *g);     // ir/fold.c
NnGraph *nn_pass_cse(NnGraph *g);      // ir/cse.c
NnGraph *nn_pass_dce(NnGraph *g);      // ir/dce.c
NnGraph *nn_pass_simplify(NnGraph *g); // ir/simplify.c
NnGraph *nn_pass_bnfold(NnGraph *g);   // ir/bnfold.c
NnGraph *nn_pass_fuse(NnGraph *g);     // ir/fuse.c
NnGraph *nn_pass_loops(NnGraph *g);    // ir/loops.c
NnGraph *nn_pass_overlap(NnGraph *g);  // ir/overlap.c

// The batch split across threads for the whole step (ir/shard.c). shard: g
// (unfused; batch symbol sym) with a GRAD_START/GRAD_WAIT pair on every value
// the update part reads from the per-row part, as a new graph (g is kept), or
// NULL with why set when the step cannot be split. lanes: the same graph with
// every node that descends from a GRAD_WAIT after all others (a new graph, g
// kept). lanes_check: on that graph, the first node of the update part, and
// per output how lanes combine it (rule[k]: 0 lane 0's, 1 rows concatenated,
// 2 summed weighted by rows); -1 with why set if the order does not hold.
NnGraph *nn_pass_shard(NnGraph *g, int sym, char *why, size_t whyn);
NnGraph *nn_pass_lanes(NnGraph *g);
NnId nn_lanes_check(const NnGraph *g, int sym, int *rule, char *why, size_t whyn);
// The most operand uses (sum of member arities) one fused group may have, so a
// FUSED body has at most this many INPUTs: backends size their per-kernel leaf
// tables by it (backend/llvm NN_EXPR_MAXLEAF). Long chains, such as a gradient
// summed over the steps of an unrolled loop, split into several kernels.
#define NN_FUSE_MAXUSES 32

#define NN_PASS_MAX_DISABLED 16

typedef struct NnPassOptions {
    const char *stop;                              // "opt" or "fused" (NULL = "fused")
    const char *disabled[NN_PASS_MAX_DISABLED];    // pass names to skip (--no-pass=)
    int ndisabled;
    const char *dump;      // pass name to print the graph after (--dump=), or NULL
    FILE *dump_out;        // where dumps go (NULL = stderr)
    bool verify;           // nn_ir_verify after every pass (always on in NN_DEBUG builds)
} NnPassOptions;

// Runs the pipeline. Takes ownership of g and returns the graph the caller now
// owns (possibly g itself); every graph in between is freed. opt may be NULL
// (all passes, stop at "fused"). A graph that fails verification after a pass
// is our bug: NN_ASSERT-level (prints the pass name and g->err, aborts).
NnGraph *nn_passes_run(NnGraph *g, const NnPassOptions *opt);

bool nn_pass_exists(const char *name);
// "fold, simplify, bnfold, cse, dce, fuse" for --help and error messages (static storage).
const char *nn_pass_names(void);
// The pass table entry by name, or NULL.
const NnPass *nn_pass_find(const char *name);

// A deep copy of g in a fresh arena (FUSED bodies included). Tests use it to keep
// a "before" graph, since passes and nn_passes_run may hand g back or consume it.
NnGraph *nn_graph_clone(const NnGraph *g);

// ---- Fusion facts (ir/fuse.c) ----

// The three body forms a FUSED node can have (see ir/fuse.c).
typedef enum NnFuseForm {
    NN_FUSE_NONE = 0,   // not a valid body
    NN_FUSE_ELEMWISE = 'E', // elementwise DAG, output of the node's shape
    NN_FUSE_REDUCE = 'R',   // elementwise DAG under one reduction (the output)
    NN_FUSE_MATMUL = 'M',   // one contraction or pooling op of body INPUTs, then an
                            // elementwise epilogue
} NnFuseForm;

NnFuseForm nn_fuse_form(const NnGraph *body);
// The convolution node whose kernel computes pooling node `pool` too, or -1
// (see ir/fuse.c).
NnId nn_fuse_pool_host(const NnGraph *g, NnId pool);
// Multi-output elementwise kernels (see ir/fuse.c): lead[i] := the node at
// whose place node i is computed, in one loop with the others of its group
// (each result stored once, shared operands loaded once), or -1 when node i
// is in no such group. A group may hold one product (an M-form FUSED node,
// a weight's gradient) in whose epilogue the others are computed
// (NN_JIT_NOEPI=1: never). lead has g->count entries.
#define NN_FUSE_MULTI_MAX 8 // members of one multi-output kernel, at most
void nn_fuse_multi(const NnGraph *g, NnId *lead);
// Nodes that launch work: everything but INPUT/PARAM/STATE/CONST, pools
// that ride in a convolution's kernel, and members of a multi-output kernel
// but its lead.
int nn_fuse_count_kernels(const NnGraph *g);
// Nodes of op `op` in g (top level only).
int nn_graph_count_op(const NnGraph *g, NnOp op);

// ---- Shared rewriting scaffold for passes (ir/pass.c) ----

// A rewrite copies `old` node by node, in order, into `g` (a fresh graph with
// the same symbols); map[i] is the new id standing for old node i (-1 = dropped).
typedef struct NnRewrite {
    NnGraph *old; // the input graph; returned as is when nothing changed
    NnGraph *g;
    NnId *map; // old->count entries, in g's arena
    bool changed;
} NnRewrite;

void nn_rewrite_begin(NnRewrite *rw, NnGraph *old);
// Copies old node i with its inputs remapped through map (all must be mapped);
// strings and FUSED bodies are copied into the new arena. Returns the new id.
NnId nn_rewrite_copy(NnRewrite *rw, NnId i);
// Adds a node to rw->g with inputs already in new ids; asserts success (a pass
// that builds an ill-shaped node is our bug).
NnId nn_rewrite_add(NnRewrite *rw, NnOp op, const NnId *in, int nin, const NnAttr *attr, NnLoc loc);
// Remaps outputs and updates; if nothing changed, frees the new graph and returns
// old, else returns the new graph.
NnGraph *nn_rewrite_end(NnRewrite *rw);

// Copies src's nodes, outputs and updates into dst (which must be empty) without
// re-running shape rules; strings and bodies land in dst's arena.
void nn_graph_copy_into(NnGraph *dst, const NnGraph *src);
// A new empty graph living in parent's arena (freed with parent, never on its
// own) with parent's symbols: what FUSED bodies are.
NnGraph *nn_graph_new_child(NnGraph *parent);

#endif
