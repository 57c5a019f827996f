// Private to backend/llvm: the JIT session (jit.c), the code generator state
// shared by the lower_*.c files, and the loop/expression helpers they use.
// A graph is lowered for one binding of its symbolic dims, so every shape seen
// here is concrete, except that one symbol, the batch (NnCg.rt_sym), may stay
// a run-time value: shapes then hold the reference value rt_ref in its place
// (for sizes and cost estimates only) and code that loops over it multiplies
// by the value the step is run with (nn_cg_batch), so one module runs every
// batch size. The batch is the leading dim, or (time-major values of
// recurrent layers) a later one in forms whose loop nests merge it with the
// dims before it (nn_cg_batch_sym decides which). Buffers are numbered
// slots: generated kernels receive `void **bufs` and load bufs[slot]; exec.c
// decides what each slot points at.
#ifndef NN_LLVM_PRIV_H
#define NN_LLVM_PRIV_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <stdio.h>

#include "backend.h"
#include "graph.h"
#include "nnrt.h"
#include "pass.h"
#include "plan.h"
#include "step.h"

// ---- jit.c: one LLJIT session per executable ----
typedef struct NnLlvmJit NnLlvmJit;

// Host CPU name and features (owned by jit.c, live for the process).
const char *nn_llvm_host_cpu(void);
const char *nn_llvm_host_features(void);
// A target machine for the host (code generator at NN_JIT_CODEGEN_LEVEL);
// NULL with nnrt_errmsg set.
LLVMTargetMachineRef nn_llvm_host_tm(void);
// Sets triple and data layout, verifies m, shares equal kernels' code
// (nn_llvm_dedupe), runs O1 on its functions and the short pipeline on
// those marked NN_LLVM_LIGHT. NN_OK or NN_ERR_RUNTIME.
NnStatus nn_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm);

NnLlvmJit *nn_llvm_jit_new(void); // NULL with nnrt_errmsg set
void nn_llvm_jit_free(NnLlvmJit *j);
LLVMContextRef nn_llvm_jit_context(NnLlvmJit *j);
LLVMTargetMachineRef nn_llvm_jit_tm(NnLlvmJit *j);
// Optimizes m and hands it to the JIT (which takes ownership, even on failure);
// *tracker identifies the module's code for nn_llvm_jit_remove.
NnStatus nn_llvm_jit_add(NnLlvmJit *j, LLVMModuleRef m, void **tracker);
void nn_llvm_jit_remove(NnLlvmJit *j, void *tracker);
// Same, with optimization and code generation split over one thread per CPU
// (up to 4): each thread compiles some of the functions in its own context,
// those marked NN_LLVM_LIGHT with a short pipeline (nn_llvm_optimize_light).
// *shared (if not NULL): kernels that call another's identical code (nn_llvm_dedupe).
NnStatus nn_llvm_jit_add_parallel(NnLlvmJit *j, LLVMModuleRef m, void **tracker, int *shared);
// dedupe.c: kernels whose code differs only in the bufs slots they load
// become calls of the first of them with their buffers laid out in its
// slots; returns how many. NN_JIT_DEDUPE=0 turns it off (experiments, tests).
int nn_llvm_dedupe(LLVMModuleRef m);
// Instructions in f's body (the size that decides how a kernel compiles).
int64_t nn_llvm_fn_insts(LLVMValueRef f);
// The string attribute lower.c puts on kernels that are simple loops (maps,
// reductions, gathers, copies, the step's list of calls): no product,
// convolution, pooling or loop.
#define NN_LLVM_LIGHT "nnc-light"
// Runs the short pipeline on m (triple and data layout set, not verified).
NnStatus nn_llvm_optimize_light(LLVMModuleRef m, LLVMTargetMachineRef tm);
// Address of a function added earlier; NULL with nnrt_errmsg set.
void *nn_llvm_jit_lookup(NnLlvmJit *j, const char *name);

// ---- rtbatch.c: the symbol a graph can leave to run time (its batch), or
// -1 with the reason in why[n]: some op or shape that still needs every dim
// bound. ----
int nn_cg_batch_sym(const NnGraph *g, char *why, size_t n);

// ---- lower.c: graph -> module ----
typedef struct NnCgKernel {
    char name[48];
    double work; // rough flop/element count: small kernels run on the caller only
    bool direct; // void k(ptr pool, ptr bufs), run on the caller: it uses the pool
                 // itself (a LOOP running its body's step)
    bool batch;  // reads the run-time batch: `work` is for rt_ref rows, of which
                 // work_fixed does not grow with the rows
    double work_fixed;
    int few;     // at a few rows (NNRT_FEW_ROWS): NnrtStepKernel.few
    NnId node;   // the node it computes
    // An elementwise map over a fixed number of elements (emit_maps): thread
    // i of n computes the elements nn_cg_split(map_total, map_align) gives it,
    // in the output's row-major order. 0 for any other kernel.
    int64_t map_total, map_align;
} NnCgKernel;

// Kernels below this much work run on the calling thread: a pool dispatch
// costs a few microseconds.
#define NN_PAR_WORK 32768.0

// The code generator's level for every kernel, JIT and AOT alike ("less":
// no kernel ran faster at "aggressive"; see nn_llvm_optimize).
#define NN_JIT_CODEGEN_LEVEL LLVMCodeGenLevelLess

typedef struct NnCg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef t_void, t_i1, t_i8, t_i32, t_i64, t_f32, t_f64, t_ptr;
    const NnGraph *g;
    const int64_t *symv;
    const char *prefix;  // prepended to every symbol of this binding: "b0_"
    const char *cpu, *features; // the target's (the host's unless an AOT build sets them)
    bool vec512;         // prefer 512-bit vectors (AVX-512 in features)
    int *slot;           // node id -> bufs slot, -1 for none
    int64_t *slot_bytes; // per slot; scratch slots are added by kernels
    bool *slot_rows;     // per slot: slot_bytes is per row of the batch
    bool *slot_owned;    // per slot: memory of its own (else scratch slots share one)
    int nslots, slotcap;
    int err_slot;   // int64 per label check: first out-of-range row, or -1
    // What each entry checks (the step descriptor's checks). Its slot is an
    // owned copy of the indices where the kernel writes the bad one at its
    // row: the indices' own buffer may be reused before the step ends.
    NnrtStepCheck *checks;
    int nerr;
    int checks_end; // no kernel from this index on records a check
    NnCgKernel *kernels;
    int nkernels, kcap;
    // The kernel being emitted: void k(ptr bufs, i32 ith, i32 nth).
    LLVMValueRef fn, bufs, ith, nth;
    LLVMValueRef pool; // a direct kernel's pool argument, else NULL
    LLVMBasicBlockRef entry; // allocas and buffer loads go here
    LLVMBasicBlockRef body0; // first block after the entry
    NnId node;               // the node whose kernel is being emitted
    bool failed;
    // The run-time batch: symbol rt_sym (-1: every dim is bound) stands for
    // rt_ref in shapes; its value is the int64 at bufs[batch_slot].
    int rt_sym;
    int64_t rt_ref;
    int batch_slot;
    LLVMValueRef batch_v; // the current kernel's load of it, or NULL
    // Per node: a LOOP's slot of its regions without the batch when its
    // buffer is laid out per row (nn_loop_layout_rows), else -1.
    int *loop_fixed;
} NnCg;

void nn_cg_init(NnCg *cg, LLVMContextRef ctx, const NnGraph *g, const int64_t *symv,
                const char *prefix);
// The same with symbol rt_sym (bound to rt_ref >= 2 in symv) left to run time.
void nn_cg_init_rt(NnCg *cg, LLVMContextRef ctx, const NnGraph *g, const int64_t *symv,
                   const char *prefix, int rt_sym);
void nn_cg_fini(NnCg *cg); // disposes the builder; the module is handed on or disposed by caller
// Lowers every node of cg->g into kernels plus "<prefix>step(ptr pool, ptr bufs)".
bool nn_cg_lower_graph(NnCg *cg);

// Concrete shape of a node (bound symbols).
void nn_cg_shape(const NnCg *cg, const NnGraph *g, NnId id, int *rank, int64_t *dims);
int64_t nn_cg_numel(const NnCg *cg, const NnGraph *g, NnId id);
int nn_cg_add_scratch(NnCg *cg, int64_t nbytes); // new slot, returns its index
// A scratch slot of nbytes per row of the batch.
int nn_cg_add_scratch_rows(NnCg *cg, int64_t nbytes);
// A slot with nbytes of its own, kept between runs (a loop body's workspace).
int nn_cg_add_owned(NnCg *cg, int64_t nbytes);
// New error entry for node id, returns its index; *copy is the slot of its
// indices' copy.
int nn_cg_add_error(NnCg *cg, NnId id, int *copy);
// An entry for a check met elsewhere (a loop body's, copied out by the loop),
// with a copy of `rows` indices; returns its index.
int nn_cg_add_check(NnCg *cg, int kind, int64_t bound, int64_t rows);

// Whether node id's leading dim is the run-time batch.
bool nn_cg_rt(const NnCg *cg, const NnGraph *g, NnId id);
// The batch the kernel runs with (i64), loaded once in its entry block.
LLVMValueRef nn_cg_batch(NnCg *cg);
// Extent v as a run-time value: with rt, v is a multiple of rt_ref standing
// for (v / rt_ref) * batch; else the constant v.
LLVMValueRef nn_cg_extent(NnCg *cg, int64_t v, bool rt);

// Kernel frame.
void nn_cg_kernel_begin(NnCg *cg, const char *what, double work);
void nn_cg_kernel_end(NnCg *cg);
// A direct kernel (NnCgKernel.direct): void k(ptr pool, ptr bufs); end it with
// nn_cg_kernel_end. cg->pool is its pool argument until then.
void nn_cg_direct_begin(NnCg *cg, const char *what);
LLVMValueRef nn_cg_buf(NnCg *cg, int slot); // pointer loaded from bufs[slot] in the entry
LLVMValueRef nn_cg_alloca(NnCg *cg, LLVMTypeRef t);

// Types and constants.
LLVMTypeRef nn_cg_type(const NnCg *cg, NnDType dt);
LLVMTypeRef nn_cg_vtype(const NnCg *cg, NnDType dt, int w); // scalar when w == 1
LLVMValueRef nn_cg_i64(const NnCg *cg, int64_t v);
LLVMValueRef nn_cg_i32(const NnCg *cg, int32_t v);
LLVMValueRef nn_cg_const(const NnCg *cg, NnDType dt, double v, int w); // splat
LLVMValueRef nn_cg_splat(NnCg *cg, LLVMValueRef scalar, int w);
LLVMValueRef nn_cg_gep(NnCg *cg, NnDType dt, LLVMValueRef base, LLVMValueRef off);
LLVMValueRef nn_cg_load(NnCg *cg, NnDType dt, LLVMValueRef base, LLVMValueRef off, int w,
                        LLVMValueRef mask);
void nn_cg_store(NnCg *cg, NnDType dt, LLVMValueRef v, LLVMValueRef base, LLVMValueRef off, int w,
                 LLVMValueRef mask);
LLVMValueRef nn_cg_mask(NnCg *cg, int w, int nlive); // <w x i1>, first nlive lanes on
LLVMValueRef nn_cg_call(NnCg *cg, const char *name, LLVMTypeRef ret, LLVMValueRef *args, int nargs);
// An EXTERN node's C function on w-lane operands a (lower_extern.c).
LLVMValueRef nn_cg_extern_call(NnCg *cg, const NnNode *n, LLVMValueRef *a, int w);
LLVMValueRef nn_cg_intrinsic(NnCg *cg, const char *name, LLVMTypeRef *ovl, int novl,
                             LLVMValueRef *args, int nargs);
// Horizontal reduction of a vector with `op` (NN_OP_ADD or NN_OP_MAX).
LLVMValueRef nn_cg_hreduce(NnCg *cg, NnOp op, NnDType dt, LLVMValueRef v, int w);
LLVMValueRef nn_cg_binop(NnCg *cg, NnOp op, NnDType dt, LLVMValueRef a, LLVMValueRef b);

// Counted loops: for (iv = lo; iv + step <= hi; iv += step). After end, the
// builder sits in the exit block and `iv` holds the first index not visited.
// Loops carry "do not vectorize" metadata (their bodies are vector code or
// short tails already) and "do not unroll" unless `unroll` is set before end.
typedef struct NnLoop {
    LLVMValueRef iv;
    LLVMBasicBlockRef head, exit;
    int64_t step;
    bool unroll;
} NnLoop;
void nn_cg_loop_begin(NnCg *cg, NnLoop *l, LLVMValueRef lo, LLVMValueRef hi, int64_t step);
void nn_cg_loop_end(NnCg *cg, NnLoop *l);
// idx[0..n) := the multi-index of flat r over dims[0..n).
void nn_cg_decode(NnCg *cg, LLVMValueRef r, const int64_t *dims, int n, LLVMValueRef *idx);
// This thread's share [lo, hi) of [0, total) in multiples of `align`.
void nn_cg_split(NnCg *cg, int64_t total, int64_t align, LLVMValueRef *lo, LLVMValueRef *hi);
// The same for a run-time total (i64).
void nn_cg_split_v(NnCg *cg, LLVMValueRef total, int64_t align, LLVMValueRef *lo,
                   LLVMValueRef *hi);

// One lowering function per op (ops.def), spread over the lower_*.c files.
#define NN_OP(tag, name, arity, flags, attrs) bool llvm_##name(NnCg *cg, NnId id);
#include "ops.def"
#undef NN_OP

// ---- stepdesc.c: the runtime's step descriptor (runtime/step.h) ----
// The descriptor of cg's lowering (after nn_cg_lower_graph) with the memory
// plan of the same binding; kernel addresses are left NULL. NULL with
// nnrt_errmsg set when memory runs out. Freed with nn_llvm_step_free.
NnrtStep *nn_llvm_step_new(const NnCg *cg, const NnPlan *plan, const char *name);
void nn_llvm_step_free(NnrtStep *d);
// Marks d as splittable across threads (runtime/step.h, lanes): cg's graph was
// cut by nn_pass_shard and ordered by nn_pass_lanes. False (d unchanged, why
// set) when the order does not hold.
bool nn_llvm_step_lanes(NnrtStep *d, const NnCg *cg, char *why, size_t whyn);
// The sharded update over `ranks` MPI ranks (step.h, NnrtStepShard): every
// gradient of at least NN_SHARD_MIN values (NNC_MPI_SHARD_MIN, for tests of
// small models, sets another minimum) whose readers, transitively, are
// elementwise update kernels gets a reduce-scatter, those kernels run on the
// rank's elements, updated parameters are all-gathered and optimizer state
// stays owned in part. False (d unchanged, why says which node) when a
// gradient's update is not elementwise over its elements, or nothing is.
#define NN_SHARD_MIN 16384
bool nn_llvm_step_shard(NnrtStep *d, const NnCg *cg, char *why, size_t whyn);
// d as C source: the kernels' declarations and `const NnrtStep <cname>`.
void nn_llvm_step_write_c(const NnrtStep *d, const char *cname, FILE *out);

// ---- lower_elem.c: elementwise expressions over a small DAG ----
#define NN_EXPR_MAXLEAF 48
#define NN_EXPR_MAXMEMO 128

typedef struct NnLeaf {
    NnId id;    // node in expr->g
    bool index; // value is the element's flat index in the node's own shape (RNG)
    bool is_const;
    double value; // is_const: every element
    int slot;     // bufs slot (loads)
    NnDType dt;
    int rank;
    int64_t dims[NN_MAX_RANK];
    int64_t stride[NN_MAX_RANK]; // per iteration dim (0 where broadcast)
    LLVMValueRef base;           // pointer, set when a kernel starts
    LLVMValueRef off;            // i64 element offset at the current position
    int64_t inner;               // stride along the vectorized dim
} NnLeaf;

// Values of one evaluation point that several expressions share (a
// multi-output kernel): by bufs slot, each loaded or computed once.
#define NN_SHARE_MAX 256
typedef struct NnShare {
    int n;
    int slot[NN_SHARE_MAX];
    LLVMValueRef val[NN_SHARE_MAX];
} NnShare;

typedef struct NnExpr NnExpr;

// The other outputs of a product's epilogue: the members of a multi-output
// kernel that holds the product (nn_fuse_multi), evaluated at each point of
// a finished tile after the product's own expression, reading its value and
// every operand loaded there through `share`; each is stored in its slot.
// The product's value is stored only when `keep` (something outside the
// kernel reads it).
typedef struct NnEpiMore {
    int n;
    NnExpr *e[NN_FUSE_MULTI_MAX];
    int slot[NN_FUSE_MULTI_MAX];
    NnDType dt[NN_FUSE_MULTI_MAX];
    LLVMValueRef out[NN_FUSE_MULTI_MAX]; // set by nn_expr_bind
    int host; // the product's slot (its value, as the members read it)
    bool keep;
    NnShare *share;
} NnEpiMore;

struct NnExpr {
    const NnGraph *g; // graph holding root and leaves (the main graph or a FUSED body)
    NnId root;
    NnId hole; // node whose value the caller supplies (a matmul tile), or -1
    int nleaf;
    NnLeaf leaf[NN_EXPR_MAXLEAF];
    int rank; // iteration space, concrete
    int64_t dims[NN_MAX_RANK];
    bool rt; // dims[0] is the run-time batch (nn_cg_extent), also after coalescing
    // Memo for one evaluation point.
    int nmemo;
    NnId memo_id[NN_EXPR_MAXMEMO];
    LLVMValueRef memo_val[NN_EXPR_MAXMEMO];
    NnShare *share; // NULL, or shared with the other members of a multi-output kernel
    NnEpiMore *more; // a product's epilogue: the outputs computed after it, or NULL
};

// The expression for a single elementwise node of the main graph (inputs are leaves).
bool nn_expr_node(NnCg *cg, NnExpr *e, NnId id);
// The expression for a FUSED node's body rooted at `root` (a body node id);
// body INPUT k reads the FUSED node's input k.
bool nn_expr_body(NnCg *cg, NnExpr *e, NnId fused, NnId root);
// Iteration space := dims; computes leaf strides by right-aligned broadcasting.
void nn_expr_iter(NnCg *cg, NnExpr *e, int rank, const int64_t *dims);
// The expression that just reads main-graph node id (a leaf as the root).
void nn_expr_read(NnCg *cg, NnExpr *e, NnId id);
// Loads leaf base pointers (kernel entry), also of e->more's expressions and outputs.
void nn_expr_bind(NnCg *cg, NnExpr *e);
// Sets leaf offsets to sum_d idx[d] * stride[d] (+ extra for the innermost dim).
void nn_expr_at(NnCg *cg, NnExpr *e, LLVMValueRef *idx);
// Value of the root at the current offsets, w lanes along iteration dim `vdim`.
LLVMValueRef nn_expr_eval(NnCg *cg, NnExpr *e, int w, int vdim, LLVMValueRef mask,
                          LLVMValueRef hole);
// A product's epilogue at point idx of its 2-D output (row-major, element
// offset off): e (hole = the product's value `acc`, w lanes along dim 1
// under mask) stored in out_slot's buffer `out` as out_dt, then e->more's
// outputs. Returns e's value.
LLVMValueRef nn_expr_epilogue(NnCg *cg, NnExpr *e, LLVMValueRef *idx, int w, LLVMValueRef mask,
                              LLVMValueRef acc, NnDType out_dt, LLVMValueRef out, LLVMValueRef off);
// Whether every leaf has stride 0 or 1 along dim (so w > 1 works there).
bool nn_expr_vectorizable(const NnExpr *e, int dim);
// out[...] = e over its iteration space (== out shape), threaded and vectorized.
void nn_expr_emit_map(NnCg *cg, NnExpr *e, int out_slot, NnDType out_dt);
// Members ids[0..n) of a multi-output kernel (nn_fuse_multi, lead last) as one
// loop nest that stores each member's result.
bool nn_cg_emit_multi(NnCg *cg, const NnId *ids, int n);
// One elementwise op on values (w lanes).
LLVMValueRef nn_cg_elem_op(NnCg *cg, const NnNode *n, NnDType in_dt, LLVMValueRef *a, int w,
                           LLVMValueRef idx);

// ---- lower_reduce.c ----
// out = reduce(e) over `axes` of e's iteration space; op is REDUCE_* or LOGSUMEXP.
void nn_cg_emit_reduce(NnCg *cg, NnExpr *e, NnOp op, uint32_t axes, int out_slot, NnDType dt);

// ---- lower_matmul.c ----
// C = op(A) @ op(B), with an optional epilogue expression (hole = the product).
// rt_m, rt_k: M or K is the run-time batch (m or k then holds cg->rt_ref).
void nn_cg_emit_matmul(NnCg *cg, NnDType dt, int a_slot, int b_slot, bool ta, bool tb, int64_t m,
                       int64_t n, int64_t k, NnExpr *epi, int out_slot, bool rt_m, bool rt_k);

// ---- lower_conv.c ----
bool nn_cg_is_conv(NnOp op); // CONV2D or one of its gradients
// Node cn (of the main graph or a FUSED body) reading slots in0, in1, with an
// optional epilogue expression (hole = the convolution), result in out_slot.
// false with nnrt_errmsg set when the shapes are beyond its 32-bit gathers.
bool nn_cg_emit_conv(NnCg *cg, const NnNode *cn, int in0, int in1, NnExpr *epi, int out_slot);

// ---- lower_pool.c ----
// Pooling node n (a FUSED body's host) with its inputs in in_slots, result
// through epi (hole = n; same dtype) in out_slot.
bool nn_cg_emit_pool(NnCg *cg, const NnNode *n, const int *in_slots, NnExpr *epi, int out_slot);
// Inside a kernel: rows [oh0, oh1) of plane `plane` (n * C + c) of pooling
// node `pool` of cg->g, read from its input's slot into its own.
void nn_cg_pool_rows(NnCg *cg, NnId pool, LLVMValueRef plane, LLVMValueRef oh0, LLVMValueRef oh1);

// ---- lower_math.c: counter-based random numbers (the runtime's formulas) ----
LLVMValueRef nn_cg_rand_step(NnCg *cg, LLVMValueRef v); // step tensor value -> i64
LLVMValueRef nn_cg_rand_key(NnCg *cg, uint64_t seed, LLVMValueRef step);
LLVMValueRef nn_cg_rand_bits(NnCg *cg, LLVMValueRef key, LLVMValueRef idx, int w);
LLVMValueRef nn_cg_bits_f64(NnCg *cg, LLVMValueRef bits, int w); // [0, 1)

// A loop over [lo, hi) in w-lane steps, then a scalar tail; fn emits one point.
typedef void (*NnPointFn)(NnCg *cg, void *ctx, LLVMValueRef j, int w);
void nn_cg_vloop(NnCg *cg, LLVMValueRef lo, LLVMValueRef hi, int w, NnPointFn fn, void *ctx);

#endif
