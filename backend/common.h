// Private to backend/: the part of the run contract in backend.h that does not
// depend on how a backend computes, written once so the interpreter and the
// JIT accept the same tensors and fail with the same messages: binding symbolic
// dims from the caller's tensors, caching one binding per symbol values,
// finding PARAM/STATE tensors in NnVars and checking their types, handing
// outputs back and applying updates last. A backend's NnExec starts with an
// NnBackendExec; it shows one binding to this code as an NnBackendView.
#ifndef NN_BACKEND_COMMON_H
#define NN_BACKEND_COMMON_H

#include "backend.h"
#include "pool.h"

// One binding of a graph as a backend holds it: g bound to symbol values symv,
// and ptr(ctx, id), the address where the backend keeps the data pointer of
// node id's value (the interpreter in its tensor headers, the JIT in bufs[]),
// so shared code can both read and set it.
typedef struct NnBackendView {
    const NnGraph *g;
    const int64_t *symv;
    void **(*ptr)(void *ctx, NnId id);
    void *ctx;
} NnBackendView;

// Per binding: what is handed back to the caller and kept across runs.
typedef struct NnBackendSide {
    NnTensor *outs; // g->noutputs headers handed to the caller
    void **outcopy; // per output: own copy when the value is a source
    void **snap;    // per update: snapshot when the value is a source
} NnBackendSide;

enum { NN_BACKEND_MAX_BINDINGS = 8 };

// What a backend builds per distinct symbol values (plans, compiled code): its
// "bindings", opaque here.
typedef struct NnBackendOps {
    // A new binding of x for symv in *bind, or the status to fail the run with
    // (nnrt_errmsg() set).
    NnStatus (*make)(NnExec *x, const int64_t *symv, void **bind);
    void (*drop)(NnExec *x, void *bind);
    NnBackendView (*view)(NnExec *x, void *bind);
} NnBackendOps;

// The first member of every backend's NnExec: what prepare() sets up the same
// way everywhere, and the binding cache (least recently used dropped first).
typedef struct NnBackendExec {
    const NnGraph *g; // the graph run (the JIT's may be a fused copy it owns)
    NnExecOptions opt;
    NnrtPool own, *pool; // pool is the default pool or &own
    const NnBackendOps *ops;
    int nbind;
    uint64_t runs; // lookups so far: the clock of used[]
    void *bind[NN_BACKEND_MAX_BINDINGS];
    int64_t symv[NN_BACKEND_MAX_BINDINGS][NN_MAX_SYMS];
    uint64_t used[NN_BACKEND_MAX_BINDINGS];
    bool updates_ok[NN_BACKEND_MAX_BINDINGS]; // the binding's update types were checked
    // The per-step fast path: the PARAM/STATE tensors found by name in table
    // cvars at its stamp cgen (see NnVars.gen), per node id of g (ncvar
    // entries). While the stamp holds only their types are checked again.
    const NnVars *cvars;
    uint64_t cgen;
    NnTensor **cvar;
    int ncvar;
} NnBackendExec;

// prepare()'s start: a zeroed executable of `size` bytes (an NnExec whose
// first member is an NnBackendExec) for g, with opt copied and the pool open.
// NULL with nnrt_errmsg() set when a PARAM/STATE node of g has no name, or
// memory or threads run out.
NnExec *nn_backend_exec_new(size_t size, const NnGraph *g, const NnExecOptions *opt,
                            const NnBackendOps *ops);
// Drops every binding (free() does it too; the JIT first, while its code lives).
void nn_backend_exec_clear(NnExec *x);
// free()'s end: drops the bindings, closes an own pool and frees x (may be NULL).
void nn_backend_exec_free(NnExec *x);

// run()'s start: clears outputs[] (nothing stale is read after a failure),
// binds the symbols of x's graph from inputs and vars, finds or makes the
// binding for them (*bind) and attaches the caller's tensors to it through
// *v, its view: INPUT nodes point at inputs[k], PARAM/STATE nodes at their
// tensors in vars, each checked against its node's bound type, and every
// update's value must have its var's type.
NnStatus nn_backend_begin(NnExec *x, NnVars *vars, NnTensor *const *inputs, NnTensor **outputs,
                          void **bind, NnBackendView *v);

// INPUT, PARAM and STATE: values that live outside the workspace.
bool nn_backend_is_source(NnOp op);

// Binds g's symbols from its INPUT nodes (ins[k] for the k-th), then from
// PARAM/STATE tensors in vars (may be NULL) for symbols no input fixes. symv
// comes in with -1 for every symbol not known yet.
NnStatus nn_backend_bind_syms(const NnGraph *g, const NnTensor *const *ins, const NnVars *vars,
                              int64_t *symv);

// Allocates s for v's binding: output headers (data in the binding, or in an
// own copy for outputs that are sources) and snapshots for update values that
// are sources. On failure the caller still calls nn_backend_side_fini.
NnStatus nn_backend_side_init(NnBackendSide *s, const NnBackendView *v);
void nn_backend_side_fini(NnBackendSide *s, const NnGraph *g);

// After a run: fills outputs[] from s (copying values that are sources) and
// applies the updates, every one reading pre-update values.
void nn_backend_finish(const NnBackendView *v, const NnBackendSide *s, NnTensor **outputs);

#endif
