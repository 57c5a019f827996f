// One interface over every way of running a graph: the interpreter, the LLVM
// JIT (and later GPU). Only the driver (compiler/main.c, repl.c) picks one.
//
// A graph's INPUT nodes, in ascending id order, are fed `inputs[k]`; its
// PARAM/STATE nodes are read from `vars` by name; its outputs (graph->outputs
// order) are returned in `outputs[k]` as tensors the executable owns, valid
// until the next run or free. Symbolic dims (N) are bound from the input
// tensors' shapes; a backend compiles once per distinct binding and caches.
// After computing everything, updates are applied to the tensors in `vars`.
#ifndef NN_BACKEND_H
#define NN_BACKEND_H

#include "graph.h"
#include "nnrt.h"

typedef struct NnExec NnExec;

struct NnPassOptions; // pass.h

typedef struct NnExecOptions {
    int threads;  // worker threads; 0 = all cores
    bool verbose; // report compile times and kernel counts on stderr
    // The JIT's pass options for a graph it fuses itself (NULL: all passes);
    // read during prepare only.
    const struct NnPassOptions *passes;
    // The batch a training step mostly runs with (0: unknown). The JIT splits
    // the batch across threads for the whole step only when this batch gives
    // each of 2 or more threads nnrt_lane_rows() rows (runtime/step.h).
    int64_t batch;
} NnExecOptions;

typedef struct NnBackend {
    const char *name; // "interp", "jit"
    // Prepares g (which must stay alive as long as the executable). NULL with
    // nnrt_errmsg() set on failure.
    NnExec *(*prepare)(const NnGraph *g, const NnExecOptions *opt);
    NnStatus (*run)(NnExec *x, NnVars *vars, NnTensor *const *inputs, NnTensor **outputs);
    void (*free)(NnExec *x);
} NnBackend;

extern const NnBackend nn_backend_interp;
#ifdef NN_WITH_LLVM
extern const NnBackend nn_backend_jit;
#endif

#ifdef NN_WITH_LLVM
// --stage llvm / asm: g lowered for symbol values symv (may be NULL when g has
// no symbols), optimized, printed as textual IR or host assembly. false with
// nnrt_errmsg() set on failure.
bool nn_llvm_dump(const NnGraph *g, const int64_t *symv, bool asm_, FILE *out);
// Kernels in the most recently compiled binding of a JIT executable (0 before
// the first run): tests use it to see fusion happen.
int nn_llvm_kernel_count(const NnExec *x);
// Modules compiled so far (each costs 100+ ms): with a run-time batch
// (nn_llvm_runtime_batch), a new batch size adds none.
int nn_llvm_compile_count(const NnExec *x);
// Kernels of that binding that call another kernel's identical code instead
// of being compiled themselves (backend/llvm/dedupe.c).
int nn_llvm_shared_count(const NnExec *x);
// Pool dispatches of the latest run, and (*splits, if splits) its kernels
// split over the pool's threads: a run of a few rows is one dispatch
// (runtime/step.c, "few rows").
int nn_llvm_dispatches(const NnExec *x, int *splits);
// Updates the latest run wrote straight into their variables' buffers
// (runtime/step.c, "in place").
int nn_llvm_in_place(const NnExec *x);
bool nn_llvm_runtime_batch(const NnExec *x);
// 0 when the step was not cut so that the batch splits across threads for
// the whole step (ir/shard.c; *why, if why, says why not), else the threads
// the batch of the latest run split across (1: too few rows to split).
int nn_llvm_lanes(const NnExec *x, const char **why);
#endif

// Backend by name, or NULL ("jit" is NULL in builds without LLVM).
const NnBackend *nn_backend_find(const char *name);

#endif
