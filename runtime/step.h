// A compiled step as plain data: the buffer table, memory plan, kernel list,
// inputs, variables, outputs, updates and label checks of one graph compiled
// for one binding of its dims, or for every value of one of them, the batch
// (the leading dim of inputs and values; NNRT_DIM_BATCH in tensor types,
// workspace offsets that grow per row of it, kernels that read it from a
// NNRT_SLOT_BATCH slot). The JIT (backend/llvm/exec.c) builds one per
// binding around the code it just compiled; `nnc build` writes the same tables
// as C next to the object file of the kernels. nnrt_step_run, one loop, runs
// either, so a built program computes exactly what `nnc train` computes.
// Nothing in a descriptor is an address of the compiling process: kernels are
// referred to by symbol (the linker or the JIT resolves them), buffers by slot.
#ifndef NNRT_STEP_H
#define NNRT_STEP_H

#include "nnrt.h"

struct NnrtPool; // pool.h (not included: its NnrtTask clashes with train.h's)

// What bufs[slot] points at while a step runs.
typedef enum NnrtSlotKind {
    NNRT_SLOT_NONE,      // nothing (a value no kernel reads from memory)
    NNRT_SLOT_WORKSPACE, // workspace + offset
    NNRT_SLOT_INPUT,     // the data of inputs[index]
    NNRT_SLOT_VAR,       // the data of the variable vars[index] (looked up by name)
    NNRT_SLOT_SCRATCH,   // the scratch block shared by all such slots (matmul packing)
    NNRT_SLOT_ERRORS,    // int64 per label check: first bad row, or -1
    NNRT_SLOT_BATCH,     // int64: the batch the step runs with
} NnrtSlotKind;

typedef struct NnrtStepSlot {
    int kind;       // NnrtSlotKind
    int index;      // INPUT / VAR: which one
    int64_t offset; // WORKSPACE: bytes from its start ...
    int64_t row_offset; // ... plus this many per row of the batch
} NnrtStepSlot;

// In NnrtStepTensor.dims (leading dim only): the batch, any size at run time.
#define NNRT_DIM_BATCH (-1)

// A kernel computes its own share (ith of nth) of one node: a pool task whose
// argument is the bufs[] array. par: dispatched over the pool, else run on the
// calling thread (too little work to pay for a dispatch); with a batch, only
// when it has par_rows rows or more (its work grows with them). few: what it
// does in a run of at most NNRT_FEW_ROWS rows, where the whole step is one
// dispatch with spin barriers between kernels (step.c, "few rows").
typedef struct NnrtStepKernel {
    const char *name;
    void (*fn)(void *bufs, int ith, int nth);
    int par;
    int64_t par_rows;
    int few; // NNRT_FEW_*
} NnrtStepKernel;

// Batch-1 (up to 4 rows) prediction reads every weight once per call, so its
// time is reading them, from L2 when they stay there. Run as one pool task,
// each thread computes a fixed column slice of each large product, so its
// slice of the weights stays in its own core's L2 from call to call.
#define NNRT_FEW_ROWS 4
enum {
    NNRT_FEW_SERIAL, // on the calling thread (unless par says split at this batch)
    NNRT_FEW_SPLIT,  // split over the threads: large enough to pay a spin barrier, and
                     // split by output columns, so every element's sum is the same
    NNRT_FEW_NOOP,   // does nothing at a few rows (a packing the product skips)
};

// The type of an input, variable or output, concrete (dims bound), and the
// slot holding its data. `type` is how the model's source writes it
// ("f32[N, 784]"), for messages.
typedef struct NnrtStepTensor {
    const char *name;
    int dtype; // NnDType
    int rank;
    int64_t dims[NN_MAX_RANK];
    int slot;
    const char *type;
} NnrtStepTensor;

// After the kernels: vars[var] := the value in slot (every update reads
// values from before any update).
typedef struct NnrtStepUpdate {
    int var;
    int slot;
    // 1 + the kernel computing the value when that kernel may write it into
    // the variable's own buffer (step.c, "in place"), else 0.
    int in_place;
} NnrtStepUpdate;

// A TAKE (kind 0: rows of a table of `bound` rows, indices in slot), ONEHOT
// (kind 1: labels below `bound`, in slot) or GATHER (kind 2: ids of a table's
// `bound` rows, in slot) whose kernel records the first out-of-range position
// in the errors slot.
typedef struct NnrtStepCheck {
    int kind;
    int slot; // the i32 indices or labels
    int64_t bound;
} NnrtStepCheck;

// The batch split across threads for the whole step (docs/threads.md): a
// step cut by nn_pass_shard runs kernels [0, nlane) once per lane (thread), on
// the lane's own rows with its own memory, then the rest once. Cut k carries
// a gradient across: at kernel `start` each lane writes its value of slot src
// times its share of the rows (n_i / N) into slot acc; at kernel `wait` the
// sum of the lanes' acc goes into slot dst (f32, numel elements). The kernels
// at start and wait (MPI calls) never run: the runner does what they stand for.
typedef struct NnrtStepCut {
    int start, wait;
    int src, acc, dst;
    int64_t numel;
} NnrtStepCut;

// How the lanes' values of an output become the step's (NnrtStep.out_rule).
enum { NNRT_OUT_LANE0, NNRT_OUT_ROWS, NNRT_OUT_WEIGHTED };

// Fewest rows a lane gets: below, the step runs each kernel split over the
// pool instead. 0, the default, never splits the batch: on the idle 2-core
// machine the kernel split was faster at every batch measured, 1024
// included (docs/threads.md). The environment's NN_SPLIT_ROWS (a positive
// count) turns the split on from that many rows per thread.
#define NNRT_LANE_ROWS 0
int64_t nnrt_lane_rows(void);

// The sharded update under MPI (dist.h, docs/scaling.md): entries sorted by
// kernel. SUM: kernel `kernel` is a GRAD_START whose sum is a reduce-scatter
// (its gradient's elements split by `align`); RUN: an update kernel, run as
// thread (rank) of (ranks), so it computes this rank's elements only; GATHER:
// after kernel `kernel`, the parameter update in slot `slot` is all-gathered;
// STATE: variable `slot` (optimizer state) stays owned in part.
enum { NNRT_SHARD_SUM, NNRT_SHARD_RUN, NNRT_SHARD_GATHER, NNRT_SHARD_STATE };
typedef struct NnrtStepShard {
    int kernel, kind, slot;
    int64_t total, align;
} NnrtStepShard;

typedef struct NnrtStep {
    const char *name;   // for messages: "train step, batch 128"
    int nslots;
    const NnrtStepSlot *slots;
    int64_t workspace;  // bytes
    int64_t scratch;    // bytes of the shared scratch block
    int nkernels;
    const NnrtStepKernel *kernels;
    int ninputs, nvars, noutputs, nupdates, nchecks;
    const NnrtStepTensor *inputs, *vars, *outputs;
    const NnrtStepUpdate *updates;
    const NnrtStepCheck *checks;
    // With a batch: bytes per row of it, on top of workspace and scratch.
    int64_t workspace_rows, scratch_rows;
    // Lanes (above): nlane 0 = the step is not split; out_rule per output.
    int nlane, ncuts;
    const NnrtStepCut *cuts;
    const int *out_rule;
    // The sharded update (above): nshards 0 = every rank runs the whole update.
    int nshards;
    const NnrtStepShard *shards;
} NnrtStep;

// A descriptor made ready to run: its memory, output headers and update
// snapshots. Made once, run many times; not for two threads at once.
typedef struct NnrtStepRun {
    const NnrtStep *d;
    void **bufs;    // nslots pointers
    char *ws;       // workspace
    void *scratch;
    int64_t *err;   // nchecks entries
    NnTensor *outs; // noutputs headers handed to the caller
    void **outcopy; // per output: own copy when its slot is an input or variable
    void **snap;    // per update: snapshot when its slot is an input or variable
    void **swap;    // per update: the buffer its kernel writes next (see step.c)
    NnTensor **var; // per variable: the tensor found in the last run's table
    const NnVars *cvars; // that table, while its stamp (NnVars.gen) is still cgen:
    uint64_t cgen;       // var[] holds, so a step skips the name lookups
    int64_t batch;  // the batch of the last run (what a NNRT_SLOT_BATCH slot reads)
    int64_t cap;    // the largest batch the memory is sized for so far
    // Split runs (lanes): this run is lane 0, lane[] the others, each with its
    // own memory; opened at the first split run and grown, never per step.
    struct NnrtStepRun *lane;
    int nlane_runs;      // entries of lane[]
    int lanes;           // lanes of the last run, 1 when not split
    int64_t total;       // the batch of the last split run (batch is lane 0's rows)
    int64_t *lo;         // lanes + 1 row bounds
    int64_t min_rows;    // rows a lane needs (NNRT_LANE_ROWS, or NN_SPLIT_ROWS)
    NnTensor *const *in; // the inputs attached
    void **lout;         // per output: the combined value of a split run
    int64_t lcap;        // rows lout is sized for
    int *role;           // per kernel: k + 1 at cut k's start, -(k + 1) at its wait
    double *prof, crit;  // NN_STEP_PROFILE=1: per step, its critical path (step.c)
    int nprof;
    bool few_off;        // NN_STEP_FEW=0: no one-dispatch runs at a few rows (step.c)
    bool few_shared;     // NN_STEP_FEW_SHARED=1: keep dispatching on a shared core (step.c)
    struct NnrtFewTask *few; // the few-rows task, kept from run to run (step.c)
    int ip_first;        // the first kernel writing an update in place this run, or -1
    bool ip_off;         // NN_STEP_INPLACE=0: every update into its swap buffer (step.c)
    int in_place;        // updates the last run wrote in place
    int dispatches;      // pool dispatches of the last run ...
    int splits;          // ... and kernels split over its threads (not counting lanes)
} NnrtStepRun;

// Allocates r for d (which must outlive r). NN_ERR_NOMEM on failure; r is
// then safe to close. A step with a batch sizes its memory at the first run
// and grows it when a run brings a larger batch (no other cost per size).
NnStatus nnrt_step_open(NnrtStepRun *r, const NnrtStep *d);
void nnrt_step_close(NnrtStepRun *r);

// Runs the step: checks inputs[k] (ninputs of them) and the variables in vars
// against the descriptor's types (a message names the tensor and both types),
// runs every kernel in order on pool (NULL: the default pool; a step with
// lanes and a batch of at least 2 * nnrt_lane_rows() rows splits the batch
// across the pool's threads for the whole per-row part), reports the
// first out-of-range label or index, then sets outputs[k] to headers r owns
// (valid until the next run or close) and applies the updates to vars. An
// update computed in the workspace is applied without a copy: the variable's
// tensor (when it owns its data) takes the buffer the kernel wrote, and r keeps
// the old one for the next run to write, so a variable's data pointer changes
// from run to run (look it up again; never keep it across runs).
NnStatus nnrt_step_run(NnrtStepRun *r, struct NnrtPool *pool, NnVars *vars, NnTensor *const *inputs,
                       NnTensor **outputs);

// The same, in parts, for a caller that has checked and attached the tensors
// itself (the JIT, whose messages name symbolic dims): nnrt_step_attach points
// the slots at the caller's tensors without checking shapes, nnrt_step_exec
// runs the kernels and the label checks, nnrt_step_finish hands back outputs
// and applies updates.
NnStatus nnrt_step_attach(NnrtStepRun *r, NnVars *vars, NnTensor *const *inputs);
NnStatus nnrt_step_exec(NnrtStepRun *r, struct NnrtPool *pool);
void nnrt_step_finish(NnrtStepRun *r, NnTensor **outputs);
// The label checks alone (nnrt_step_exec ends with them), for a caller that
// ran the kernels itself (the JIT's profiler).
NnStatus nnrt_step_check(const NnrtStepRun *r);

// "f32[128, 784]" for a tensor (buf of n bytes), for messages.
const char *nnrt_tensor_type_str(const NnTensor *t, char *buf, size_t n);

#endif
