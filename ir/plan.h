// Memory planning: for one binding of a graph's symbolic dims, every value gets
// a byte offset in one workspace, so a whole run (a training step) needs one
// allocation. Intermediates share memory once dead; sources and results never do.
#ifndef NN_PLAN_H
#define NN_PLAN_H

#include <stdint.h>

#include "graph.h"

#define NN_PLAN_ALIGN 64

enum {
    // INPUT/PARAM/STATE: the value lives outside the workspace (fed by the
    // caller or read from NnVars); offset is -1.
    NN_PLAN_EXTERNAL = 1 << 0,
    // An output, an update value or an updated var: when it is in the workspace
    // (not EXTERNAL) it has a slot of its own that lives to the end of the run,
    // so outputs can be returned as views and updates applied after everything.
    NN_PLAN_PINNED = 1 << 1,
    // A CONST: one scalar a backend can materialize itself. Without
    // NnPlanOptions.const_buffers it gets no workspace (offset -1).
    NN_PLAN_CONST = 1 << 2,
    // Sized by the batch (NnPlanOptions.rows): offset and nbytes are per row,
    // and the value lives at offset * batch in the workspace.
    NN_PLAN_ROWS = 1 << 3,
};

typedef struct NnPlanSlot {
    int64_t offset; // bytes into the workspace, a multiple of NN_PLAN_ALIGN; -1 = none
    int64_t nbytes; // size of the value (numel * dtype size); 0 for a zero-size tensor
    int first;      // live from the step that computes it (its id) ...
    int last;       // ... through the last step that reads it (count - 1 if PINNED)
    unsigned flags; // NN_PLAN_*
    // The value whose buffer this one is computed in (in place), or -1: a
    // gradient sum over ranks or lanes (GRAD_START, GRAD_WAIT) scales and sums
    // its last reader's buffer where it lies instead of copying it. The root
    // value lives until the last alias's last reader.
    int alias;
} NnPlanSlot;

typedef struct NnPlan {
    int count;            // = graph's node count
    NnPlanSlot *slots;    // one per node
    int64_t workspace;    // bytes, a multiple of NN_PLAN_ALIGN
    int64_t total;        // sum of the padded sizes placed (workspace without reuse)
    // With NnPlanOptions.rows: the rows region takes workspace_rows * batch
    // bytes at the start, and the other values (and `workspace`) follow it.
    int64_t workspace_rows;
} NnPlan;

typedef struct NnPlanOptions {
    bool const_buffers; // give CONSTs workspace too (a backend that fills them)
    // Plan for any value of symbol rows_sym (the batch, wherever in a shape;
    // a LOOP holding results with it takes its per-row layout, ir/loop.h):
    // values whose shape has it are planned per row (symv binds it to 1) in a
    // region of their own that scales with the batch; the rest after it. One
    // plan then serves every batch size.
    bool rows;
    int rows_sym;
} NnPlanOptions;

// Plans g for symbol values symv[k] (k < g->nsyms; may be NULL if none). The
// plan lives in `arena`. FUSED bodies need no buffers: their values stay in
// registers inside one loop nest. Greedy best fit over topological order.
NnPlan *nn_plan_build(const NnGraph *g, const int64_t *symv, NnArena *arena);
NnPlan *nn_plan_build_ex(const NnGraph *g, const int64_t *symv, NnArena *arena,
                         const NnPlanOptions *opt);

// Checks that no two values live at the same time share a byte (tests and debug
// builds). Returns false and names the pair in err when they do.
bool nn_plan_check(const NnPlan *p, char *err, size_t errlen);

#endif
