// How a compiled training step runs on the pool (runtime/step.c, pool.c):
// results do not depend on how the work is split across 1, 2 or 3 threads
// beyond floating-point summation order, and are bit-identical run to run
// for a fixed count; an update is applied by trading buffers with its
// variable, never by copying, and never into a buffer two variables share;
// after the first run a step allocates nothing (a malloc counter linked into
// this test; skipped under sanitizers, which own malloc).
#include "agree.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "autodiff.h"

#ifndef NN_WITH_LLVM
#define NEED_LLVM() cr_skip_test("built without LLVM")
#else
#define NEED_LLVM() (void)0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNT_ALLOCS 0
#endif
#endif
#ifndef COUNT_ALLOCS
#define COUNT_ALLOCS 1
#endif

// ---- a malloc counter: every allocation of the process, any thread ----

static atomic_long n_allocs;

#if COUNT_ALLOCS
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void __libc_free(void *);

void *malloc(size_t n)
{
    atomic_fetch_add(&n_allocs, 1);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    atomic_fetch_add(&n_allocs, 1);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    atomic_fetch_add(&n_allocs, 1);
    return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n)
{
    atomic_fetch_add(&n_allocs, 1);
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void **p, size_t align, size_t n)
{
    *p = memalign(align, n);
    return *p ? 0 : ENOMEM;
}

void free(void *p) { __libc_free(p); }
#endif

// x[N, in] -> dense(hid) -> relu -> dense(out), cross-entropy with i32
// labels, SGD with momentum (a state per parameter, like Adam's moments).
// Big enough that its matmuls and reductions run split over the pool. The
// options add weight decay in the update (m := mu m + g + wd w), an L2 term
// in the loss (wd * sum(w1^2)), batch statistics after the first layer
// (h - mean over the rows: batch norm's centering, which mixes rows), dropout
// after it, and the logits as a second output.
typedef struct NetOpts {
    double wd, l2;
    bool center, dropout, logits;
} NetOpts;

typedef struct Net {
    NnGraph *g;
    NnId w[4], m[4];
} Net;

static const int64_t IN = 96, HID = 160, OUT = 10, BATCH = 120;

static Net net_with(NetOpts o)
{
    Net t = {.g = nn_graph_new()};
    NnGraph *g = t.g;
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, IN));
    NnId labels = ag_input(g, "labels", NN_DT_I32, AG_SHAPE(n));
    const char *names[4] = {"w1", "b1", "w2", "b2"}, *mom[4] = {"w1/m", "b1/m", "w2/m", "b2/m"};
    NnShape shapes[4] = {AG_SHAPE(IN, HID), AG_SHAPE(HID), AG_SHAPE(HID, OUT), AG_SHAPE(OUT)};
    for (int k = 0; k < 4; k++) {
        t.w[k] = ag_param(g, names[k], shapes[k]);
        t.m[k] = nn_ir_source(g, NN_OP_STATE, mom[k], NN_DT_F32, &shapes[k], ag_loc);
    }
    NnId h = nn_ir_matmul(g, x, t.w[0], false, false, ag_loc);
    h = nn_ir_binary(g, NN_OP_ADD, h, t.w[1], ag_loc);
    if (o.center)
        h = nn_ir_binary(g, NN_OP_SUB, h, nn_ir_reduce(g, NN_OP_REDUCE_MEAN, h, 1, true, ag_loc),
                         ag_loc);
    h = nn_ir_binary(g, NN_OP_MAX, h, nn_ir_const(g, 0, NN_DT_F32, ag_loc), ag_loc);
    if (o.dropout) {
        NnId step = nn_ir_source(g, NN_OP_STATE, "step", NN_DT_F32, &AG_SCALAR, ag_loc);
        NnId in[3] = {h, step, nn_ir_const(g, 0.2, NN_DT_F32, ag_loc)};
        h = nn_ir_add(g, NN_OP_DROPOUT, in, 3, &(NnAttr){.seed = 7}, ag_loc);
    }
    NnId logits = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, h, t.w[2], false, false, ag_loc),
                               t.w[3], ag_loc);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, logits, 2, false, ag_loc);
    NnId ins[2] = {logits, labels};
    NnAttr ta = {.axis = 1};
    NnId ce = nn_ir_binary(g, NN_OP_SUB, lse, nn_ir_add(g, NN_OP_TAKE, ins, 2, &ta, ag_loc),
                           ag_loc);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, ce, 1, false, ag_loc);
    if (o.l2) {
        NnId sq = nn_ir_binary(g, NN_OP_MUL, t.w[0], t.w[0], ag_loc);
        NnId l2 = nn_ir_reduce(g, NN_OP_REDUCE_SUM, sq, 3, false, ag_loc);
        loss = nn_ir_binary(g, NN_OP_ADD, loss,
                            nn_ir_binary(g, NN_OP_MUL, l2, nn_ir_const(g, o.l2, NN_DT_F32, ag_loc),
                                         ag_loc),
                            ag_loc);
    }
    nn_graph_add_output(g, "loss", loss);
    if (o.logits)
        nn_graph_add_output(g, "logits", logits);
    NnId grads[4];
    cr_assert(nn_ad_grad(g, loss, t.w, 4, grads), "autodiff: %s", g->err);
    NnId lr = nn_ir_const(g, 0.05, NN_DT_F32, ag_loc), mu = nn_ir_const(g, 0.9, NN_DT_F32, ag_loc);
    for (int k = 0; k < 4; k++) {
        NnId gr = grads[k];
        if (o.wd)
            gr = nn_ir_binary(g, NN_OP_ADD, gr,
                              nn_ir_binary(g, NN_OP_MUL, t.w[k],
                                           nn_ir_const(g, o.wd, NN_DT_F32, ag_loc), ag_loc),
                              ag_loc);
        NnId m = nn_ir_binary(g, NN_OP_ADD, nn_ir_binary(g, NN_OP_MUL, t.m[k], mu, ag_loc), gr,
                              ag_loc);
        nn_graph_add_update(g, t.m[k], m);
        nn_graph_add_update(g, t.w[k], nn_ir_binary(g, NN_OP_SUB, t.w[k],
                                                    nn_ir_binary(g, NN_OP_MUL, m, lr, ag_loc),
                                                    ag_loc));
    }
    return t;
}

static Net net(void) { return net_with((NetOpts){0}); }

static void net_vars(NnVars *v)
{
    nnrt_vars_init(v);
    nnrt_vars_put(v, "w1", ag_tensor(NN_DT_F32, AG_SHAPE(IN, HID), 1, -0.15, 0.15));
    nnrt_vars_put(v, "b1", ag_tensor(NN_DT_F32, AG_SHAPE(HID), 2, -0.1, 0.1));
    nnrt_vars_put(v, "w2", ag_tensor(NN_DT_F32, AG_SHAPE(HID, OUT), 3, -0.2, 0.2));
    nnrt_vars_put(v, "b2", ag_tensor(NN_DT_F32, AG_SHAPE(OUT), 4, -0.1, 0.1));
    const char *mom[4] = {"w1/m", "b1/m", "w2/m", "b2/m"};
    NnShape shapes[4] = {AG_SHAPE(IN, HID), AG_SHAPE(HID), AG_SHAPE(HID, OUT), AG_SHAPE(OUT)};
    for (int k = 0; k < 4; k++)
        nnrt_vars_put(v, mom[k], ag_tensor(NN_DT_F32, shapes[k], 0, 0, 0));
}

// The split is off by default (NNRT_LANE_ROWS); these small steps split from
// 32 rows per thread so that the split path runs at batch 120.
static void split_from_32_rows(void) { setenv("NN_SPLIT_ROWS", "32", 1); }

TestSuite(threads, .init = split_from_32_rows);

static NnTensor *batch_x_rows(int step, int64_t rows)
{
    return ag_tensor(NN_DT_F32, AG_SHAPE(rows, IN), 100 + (uint64_t)step, -1, 1);
}

static NnTensor *batch_y_rows(int step, int64_t rows)
{
    return ag_tensor(NN_DT_I32, AG_SHAPE(rows), 200 + (uint64_t)step, 0, OUT);
}

static NnTensor *batch_x(int step) { return batch_x_rows(step, BATCH); }
static NnTensor *batch_y(int step) { return batch_y_rows(step, BATCH); }

// Trains `steps` steps of g on the JIT with `threads` threads into v, on two
// batches of `rows` rows in turn; the losses go to loss[], the last step's
// second output (if g has one) to *out2 (a copy). *lanes: the threads the
// last step's batch split across for the whole step, 0 if the step was not
// cut for that (ir/shard.c).
static void train_rows(const NnGraph *g, NnVars *v, int threads, int steps, int64_t rows,
                       double *loss, NnTensor **out2, int *lanes)
{
    NnExecOptions opt = {.threads = threads, .batch = rows};
    NnExec *x = nn_backend_jit.prepare(g, &opt);
    cr_assert(x, "%s", nnrt_errmsg());
    for (int s = 0; s < steps; s++) {
        NnTensor *ins[2] = {batch_x_rows(s % 2, rows), batch_y_rows(s % 2, rows)}, *out[2];
        cr_assert_eq(nn_backend_jit.run(x, v, ins, out), NN_OK, "%s", nnrt_errmsg());
        loss[s] = nnrt_tensor_get(out[0], 0);
        if (out2 && s == steps - 1) {
            *out2 = nnrt_tensor_new(out[1]->dtype, out[1]->rank, out[1]->shape);
            memcpy((*out2)->data, out[1]->data, nnrt_tensor_nbytes(out[1]));
        }
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
    }
    if (lanes)
        *lanes = nn_llvm_lanes(x, NULL);
    nn_backend_jit.free(x);
}

// Splitting the batch's rows across threads for the whole step (each thread
// runs forward and backward on its rows, the gradients summed once; 2 lanes of
// 60 rows, 3 of 40) only reorders float sums. After 10 steps of momentum SGD the parameters of 1, 2
// and 3 threads agree to 1e-4 of each tensor's largest entry: f32 sums of
// ~100 terms reordered differ by a few ulps (~1e-6 relative) per step, and
// 10 steps of a convergent descent do not amplify that past 1e-4. The same
// thread count twice gives the same bits.
Test(threads, split_changes_only_summation_order)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    enum { STEPS = 10 };
    Net t = net();
    NnVars v[4];
    double loss[4][STEPS];
    const int threads[4] = {1, 2, 3, 2};
    for (int r = 0; r < 4; r++) {
        net_vars(&v[r]);
        int lanes;
        train_rows(t.g, &v[r], threads[r], STEPS, BATCH, loss[r], NULL, &lanes);
        cr_expect_eq(lanes, threads[r] > 1 ? threads[r] : 0,
                     "%d threads: the batch split across %d for the whole step", threads[r],
                     lanes);
    }
    cr_expect(loss[0][STEPS - 1] < loss[0][0] * 0.9, "the loss should fall: %g -> %g", loss[0][0],
              loss[0][STEPS - 1]);
    for (int r = 1; r < 3; r++) {
        for (int s = 0; s < STEPS; s++)
            cr_expect(fabs(loss[r][s] - loss[0][s]) <= 1e-4 * fabs(loss[0][s]),
                      "step %d: loss with %d threads %.9g, with 1 %.9g", s, threads[r], loss[r][s],
                      loss[0][s]);
        for (int k = 0; k < v[0].count; k++) {
            const NnTensor *a = nnrt_vars_get(&v[r], v[0].names[k]);
            cr_expect(ag_rel_diff(a, v[0].tensors[k]) <= 1e-4, "%s with %d threads: off by %g",
                      v[0].names[k], threads[r], ag_rel_diff(a, v[0].tensors[k]));
        }
    }
    for (int k = 0; k < v[1].count; k++) {
        const NnTensor *a = nnrt_vars_get(&v[3], v[1].names[k]);
        cr_expect(memcmp(a->data, v[1].tensors[k]->data, nnrt_tensor_nbytes(a)) == 0,
                  "%s: two runs on 2 threads differ", v[1].names[k]);
    }
    for (int r = 0; r < 4; r++)
        nnrt_vars_fini(&v[r]);
    nn_graph_free(t.g);
#endif
}

// An update trades buffers with its variable: the data pointer alternates
// between two buffers and the values still match the interpreter's (which
// copies), step after step. (With NN_STEP_INPLACE=0: by default these updates
// are written in place, inplace_update_test.c.)
Test(threads, updates_swap_without_copying)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    setenv("NN_STEP_INPLACE", "0", 1);
    Net t = net();
    NnVars vi, vj;
    net_vars(&vi);
    net_vars(&vj);
    NnExecOptions opt = {.threads = 2, .batch = BATCH};
    NnExec *xi = nn_backend_interp.prepare(t.g, &opt), *xj = nn_backend_jit.prepare(t.g, &opt);
    cr_assert(xi && xj, "%s", nnrt_errmsg());
    void *seen[4];
    for (int s = 0; s < 4; s++) {
        NnTensor *ins[2] = {batch_x(s), batch_y(s)}, *oi[1], *oj[1];
        cr_assert_eq(nn_backend_interp.run(xi, &vi, ins, oi), NN_OK, "%s", nnrt_errmsg());
        cr_assert_eq(nn_backend_jit.run(xj, &vj, ins, oj), NN_OK, "%s", nnrt_errmsg());
        seen[s] = nnrt_vars_get(&vj, "w1")->data;
        char why[256];
        for (int k = 0; k < vi.count; k++)
            cr_expect(ag_close(nnrt_vars_get(&vj, vi.names[k]), vi.tensors[k], 1e-4, why,
                               sizeof why), "step %d, %s: %s", s, vi.names[k], why);
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
    }
    cr_expect_eq(nn_llvm_lanes(xj, NULL), 2, "2 threads at batch 120 should split the batch");
    cr_expect(seen[0] != seen[1] && seen[2] == seen[0] && seen[3] == seen[1],
              "w1's buffer should alternate: %p %p %p %p", seen[0], seen[1], seen[2], seen[3]);
    nn_backend_interp.free(xi);
    nn_backend_jit.free(xj);
    nnrt_vars_fini(&vi);
    nnrt_vars_fini(&vj);
    nn_graph_free(t.g);
#endif
}

// Two variables updated to the same value must not end up sharing one
// buffer (a swap would hand both the same memory): they keep their own.
Test(threads, shared_update_value_is_copied)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    NnGraph *g = nn_graph_new();
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(64, 64));
    NnId a = ag_param(g, "a", AG_SHAPE(64, 64)), b = ag_param(g, "b", AG_SHAPE(64, 64));
    NnId v = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, x, a, false, false, ag_loc), b, ag_loc);
    nn_graph_add_output(g, "y", v);
    nn_graph_add_update(g, a, v);
    nn_graph_add_update(g, b, v);
    NnVars vars;
    nnrt_vars_init(&vars);
    nnrt_vars_put(&vars, "a", ag_tensor(NN_DT_F32, AG_SHAPE(64, 64), 1, -0.1, 0.1));
    nnrt_vars_put(&vars, "b", ag_tensor(NN_DT_F32, AG_SHAPE(64, 64), 2, -0.1, 0.1));
    NnExecOptions opt = {.threads = 2};
    NnExec *xj = nn_backend_jit.prepare(g, &opt);
    cr_assert(xj, "%s", nnrt_errmsg());
    NnTensor *in[1] = {ag_tensor(NN_DT_F32, AG_SHAPE(64, 64), 3, -1, 1)}, *out[1];
    for (int s = 0; s < 3; s++) {
        cr_assert_eq(nn_backend_jit.run(xj, &vars, in, out), NN_OK, "%s", nnrt_errmsg());
        NnTensor *ta = nnrt_vars_get(&vars, "a"), *tb = nnrt_vars_get(&vars, "b");
        cr_assert(ta->data != tb->data, "step %d: a and b share a buffer", s);
        cr_expect(memcmp(ta->data, tb->data, nnrt_tensor_nbytes(ta)) == 0,
                  "step %d: a and b should both hold the update", s);
        cr_expect(memcmp(out[0]->data, ta->data, nnrt_tensor_nbytes(ta)) == 0,
                  "step %d: the output should be the value the update applied", s);
    }
    nnrt_tensor_free(in[0]);
    nn_backend_jit.free(xj);
    nnrt_vars_fini(&vars);
    nn_graph_free(g);
#endif
}

// After the first run (compile, memory), a training step allocates nothing,
// on 1 thread or 2 (the batch split across threads), full batches or partial.
Test(threads, steady_step_allocates_nothing)
{
    NEED_LLVM();
    if (!COUNT_ALLOCS)
        cr_skip_test("sanitizers own malloc");
#ifdef NN_WITH_LLVM
    Net t = net();
    for (int threads = 1; threads <= 2; threads++) {
        NnVars v;
        net_vars(&v);
        NnExecOptions opt = {.threads = threads, .batch = BATCH};
        NnExec *x = nn_backend_jit.prepare(t.g, &opt);
        cr_assert(x, "%s", nnrt_errmsg());
        // A full batch and a partial last one (lanes of other sizes) in turn.
        NnTensor *ins[2][2] = {{batch_x(0), batch_y(0)},
                               {batch_x_rows(1, BATCH - 7), batch_y_rows(1, BATCH - 7)}};
        NnTensor *out[1];
        for (int s = 0; s < 4; s++)
            cr_assert_eq(nn_backend_jit.run(x, &v, ins[s % 2], out), NN_OK, "%s", nnrt_errmsg());
        cr_expect_eq(nn_llvm_lanes(x, NULL), threads > 1 ? 2 : 0, "%d thread(s): split %d",
                     threads, nn_llvm_lanes(x, NULL));
        long before = atomic_load(&n_allocs);
        for (int s = 0; s < 50; s++)
            nn_backend_jit.run(x, &v, ins[s % 2], out);
        long during = atomic_load(&n_allocs) - before;
        cr_expect_eq(during, 0, "%d thread(s): %ld allocations in 50 steps", threads, during);
        for (int k = 0; k < 4; k++)
            nnrt_tensor_free(ins[k / 2][k % 2]);
        nn_backend_jit.free(x);
        nnrt_vars_fini(&v);
    }
    nn_graph_free(t.g);
#endif
}

// 10 steps of net o on `rows` rows with 1 thread (the step not cut) and with
// each count in threads[] (the batch split across them when want_lanes):
// losses, every parameter and the logits output (when o has it) agree to
// 1e-4, the tolerance of split_changes_only_summation_order.
static void expect_split_matches(NetOpts o, int64_t rows, const int *threads, int nt,
                                 bool want_lanes)
{
    enum { STEPS = 10 };
    Net t = net_with(o);
    NnVars ref, v;
    double lref[STEPS], loss[STEPS];
    NnTensor *oref = NULL, *out = NULL;
    net_vars(&ref);
    if (o.dropout)
        nnrt_vars_put(&ref, "step", ag_tensor(NN_DT_F32, AG_SCALAR, 0, 3, 3));
    train_rows(t.g, &ref, 1, STEPS, rows, lref, o.logits ? &oref : NULL, NULL);
    for (int r = 0; r < nt; r++) {
        net_vars(&v);
        if (o.dropout)
            nnrt_vars_put(&v, "step", ag_tensor(NN_DT_F32, AG_SCALAR, 0, 3, 3));
        int lanes;
        train_rows(t.g, &v, threads[r], STEPS, rows, loss, o.logits ? &out : NULL, &lanes);
        cr_expect_eq(lanes, want_lanes ? threads[r] : 0, "%d threads: split across %d",
                     threads[r], lanes);
        for (int s = 0; s < STEPS; s++)
            cr_expect(fabs(loss[s] - lref[s]) <= 1e-4 * fabs(lref[s]),
                      "step %d: loss with %d threads %.9g, with 1 %.9g", s, threads[r], loss[s],
                      lref[s]);
        for (int k = 0; k < ref.count; k++) {
            const NnTensor *a = nnrt_vars_get(&v, ref.names[k]);
            cr_expect(ag_rel_diff(a, ref.tensors[k]) <= 1e-4, "%s with %d threads: off by %g",
                      ref.names[k], threads[r], ag_rel_diff(a, ref.tensors[k]));
        }
        if (out) {
            cr_expect(out->shape[0] == rows && ag_rel_diff(out, oref) <= 1e-4,
                      "logits with %d threads: %lld rows, off by %g", threads[r],
                      (long long)out->shape[0], ag_rel_diff(out, oref));
            nnrt_tensor_free(out);
            out = NULL;
        }
        nnrt_vars_fini(&v);
    }
    nnrt_tensor_free(oref);
    nnrt_vars_fini(&ref);
    nn_graph_free(t.g);
}

// Rows not divisible by the thread count: lanes of 60 and 61 rows, or 40, 40
// and 41, weighted by their rows; the per-row output comes back whole, in order.
Test(threads, partial_batch_splits_unevenly)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    const int threads[2] = {2, 3};
    expect_split_matches((NetOpts){.logits = true}, BATCH + 1, threads, 2, true);
#endif
}

// Weight decay in the update and an L2 term in the loss are counted once,
// not once per thread: both lie after the cut, or are weighted by the lanes'
// shares, which sum to 1. (Counted twice, wd = 0.5 moves every weight by
// about lr * wd * w = 2.5% a step: far outside the tolerance.)
Test(threads, weight_decay_counted_once)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    const int threads[2] = {2, 3};
    expect_split_matches((NetOpts){.wd = 0.5}, BATCH, threads, 2, true);
    expect_split_matches((NetOpts){.l2 = 0.25}, BATCH, threads, 2, true);
#endif
}

// A forward that mixes rows (batch statistics: batch norm in training) or
// draws dropout masks over the whole batch keeps each kernel split over the
// threads, and still matches one thread.
Test(threads, row_mixing_steps_keep_the_kernel_split)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    const int threads[2] = {2, 3};
    expect_split_matches((NetOpts){.center = true}, BATCH, threads, 2, false);
    expect_split_matches((NetOpts){.dropout = true}, BATCH, threads, 2, false);
    Net t = net_with((NetOpts){.center = true});
    NnExecOptions opt = {.threads = 2, .batch = BATCH};
    NnExec *x = nn_backend_jit.prepare(t.g, &opt);
    cr_assert(x, "%s", nnrt_errmsg());
    const char *why;
    cr_expect(!nn_llvm_lanes(x, &why) && strstr(why, "statistic over the batch"),
              "why not split: %s", why);
    nn_backend_jit.free(x);
    nn_graph_free(t.g);
#endif
}

// A bad label in the second thread's rows is reported at its row in the
// batch, as one thread reports it.
Test(threads, bad_label_in_a_later_lane_names_its_row)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    Net t = net();
    for (int threads = 1; threads <= 2; threads++) {
        NnVars v;
        net_vars(&v);
        NnExecOptions opt = {.threads = threads, .batch = BATCH};
        NnExec *x = nn_backend_jit.prepare(t.g, &opt);
        cr_assert(x, "%s", nnrt_errmsg());
        NnTensor *ins[2] = {batch_x(0), batch_y(0)}, *out[1];
        ((int32_t *)ins[1]->data)[100] = (int32_t)OUT + 3;
        cr_expect_neq(nn_backend_jit.run(x, &v, ins, out), NN_OK, "%d thread(s)", threads);
        cr_expect(strstr(nnrt_errmsg(), "at row 100 ") || strstr(nnrt_errmsg(), "at 100 "),
                  "%d thread(s): %s", threads, nnrt_errmsg());
        cr_expect_eq(nn_llvm_lanes(x, NULL), threads > 1 ? 2 : 0, "%d thread(s)", threads);
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
        nn_backend_jit.free(x);
        nnrt_vars_fini(&v);
    }
    nn_graph_free(t.g);
#endif
}

// A split run leaves lane 0's memory placed for its rows; a following run of
// exactly those rows (too few to split) must still get its own output shapes
// and values: batch 120 split into 60 + 60, then batch 60 on one lane.
Test(threads, unsplit_run_after_a_split_one)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    Net t = net_with((NetOpts){.logits = true});
    NnVars v, ref;
    net_vars(&v);
    net_vars(&ref);
    NnExecOptions o2 = {.threads = 2, .batch = BATCH}, o1 = {.threads = 1};
    NnExec *x = nn_backend_jit.prepare(t.g, &o2), *x1 = nn_backend_jit.prepare(t.g, &o1);
    cr_assert(x && x1, "%s", nnrt_errmsg());
    NnTensor *big[2] = {batch_x(0), batch_y(0)};
    NnTensor *small[2] = {batch_x_rows(1, BATCH / 2), batch_y_rows(1, BATCH / 2)}, *out[2], *o[2];
    cr_assert_eq(nn_backend_jit.run(x, &v, big, out), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(nn_backend_jit.run(x1, &ref, big, o), NN_OK, "%s", nnrt_errmsg());
    cr_expect_eq(nn_llvm_lanes(x, NULL), 2, "batch 120 should split");
    cr_assert_eq(nn_backend_jit.run(x, &v, small, out), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(nn_backend_jit.run(x1, &ref, small, o), NN_OK, "%s", nnrt_errmsg());
    cr_expect_eq(nn_llvm_lanes(x, NULL), 1, "batch 60 should run on one lane");
    cr_expect(out[1]->shape[0] == BATCH / 2 && out[1]->numel == BATCH / 2 * OUT,
              "logits of batch 60: %lld rows, %lld elements", (long long)out[1]->shape[0],
              (long long)out[1]->numel);
    cr_expect(out[1]->numel == o[1]->numel && ag_rel_diff(out[1], o[1]) <= 1e-4,
              "logits of batch 60 off by %g", ag_rel_diff(out[1], o[1]));
    cr_expect(fabs(nnrt_tensor_get(out[0], 0) - nnrt_tensor_get(o[0], 0)) <=
                  1e-4 * fabs(nnrt_tensor_get(o[0], 0)),
              "loss %g, one thread %g", nnrt_tensor_get(out[0], 0), nnrt_tensor_get(o[0], 0));
    for (int k = 0; k < 2; k++) {
        nnrt_tensor_free(big[k]);
        nnrt_tensor_free(small[k]);
    }
    nn_backend_jit.free(x);
    nn_backend_jit.free(x1);
    nnrt_vars_fini(&v);
    nnrt_vars_fini(&ref);
    nn_graph_free(t.g);
#endif
}

// ---- matmuls split by N panels (backend/llvm/lower_matmul.c) ----

// A product with many column panels and a small A splits its panels, not its
// row tiles, across threads (each thread packs and reads only its panels).
// Every element of C is still one dot product summed in K order, so the
// split changes no bit: the step's outputs and updated parameters on 1, 2
// and 3 threads, and with the row split forced (NN_MM_SPLIT=m), are
// bit-identical, and match the interpreter to 1e-5 of each tensor's largest
// entry (its sums run in another order). N = 300 (10 panels, the
// last one masked), K = 200, batch 120 (a run-time M with a short last tile):
// the forward product, the input gradient (B transposed) and the weight
// gradient (the batch as K) all take the N split.
static NnGraph *wide_step(void)
{
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, 200));
    NnId w[2] = {ag_param(g, "w1", AG_SHAPE(200, 300)), ag_param(g, "w2", AG_SHAPE(300, 300))};
    NnId h = nn_ir_binary(g, NN_OP_MAX, nn_ir_matmul(g, x, w[0], false, false, ag_loc),
                          nn_ir_const(g, 0, NN_DT_F32, ag_loc), ag_loc);
    NnId y = nn_ir_matmul(g, h, w[1], false, false, ag_loc);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, nn_ir_binary(g, NN_OP_MUL, y, y, ag_loc), 3,
                             false, ag_loc);
    nn_graph_add_output(g, "loss", loss);
    nn_graph_add_output(g, "y", y);
    ag_sgd(g, loss, w, 2, 0.1, NULL);
    return g;
}

// One step of g on `be` with `threads` threads from fresh parameters; the
// outputs and the updated parameters into got[0..3] (copies).
static void wide_run(const NnBackend *be, const NnGraph *g, int threads, NnTensor **got)
{
    NnVars v;
    nnrt_vars_init(&v);
    nnrt_vars_put(&v, "w1", ag_tensor(NN_DT_F32, AG_SHAPE(200, 300), 11, -0.1, 0.1));
    nnrt_vars_put(&v, "w2", ag_tensor(NN_DT_F32, AG_SHAPE(300, 300), 12, -0.1, 0.1));
    NnExecOptions opt = {.threads = threads};
    NnExec *x = be->prepare(g, &opt);
    cr_assert(x, "%s", nnrt_errmsg());
    NnTensor *ins[1] = {ag_tensor(NN_DT_F32, AG_SHAPE(120, 200), 13, -1, 1)}, *out[2];
    cr_assert_eq(be->run(x, &v, ins, out), NN_OK, "%s", nnrt_errmsg());
    NnTensor *src[4] = {out[0], out[1], nnrt_vars_get(&v, "w1"), nnrt_vars_get(&v, "w2")};
    for (int k = 0; k < 4; k++) {
        got[k] = nnrt_tensor_new(src[k]->dtype, src[k]->rank, src[k]->shape);
        memcpy(got[k]->data, src[k]->data, nnrt_tensor_nbytes(src[k]));
    }
    nnrt_tensor_free(ins[0]);
    be->free(x);
    nnrt_vars_fini(&v);
}

Test(threads, panel_split_matmuls_are_bit_identical)
{
    NEED_LLVM();
    NnGraph *g = wide_step();
    const char *what[4] = {"loss", "y", "w1", "w2"};
    NnTensor *ref[4], *interp[4];
    wide_run(&nn_backend_jit, g, 1, ref);
    wide_run(&nn_backend_interp, g, 1, interp);
    for (int k = 0; k < 4; k++) // different summation order: relative to the largest entry
        cr_expect(ag_rel_diff(ref[k], interp[k]) < 1e-5, "%s vs interp: %g", what[k],
                  ag_rel_diff(ref[k], interp[k]));
    for (int run = 0; run < 3; run++) {
        int threads = run == 2 ? 2 : 2 + run; // 2, 3, then 2 with the row split forced
        if (run == 2)
            setenv("NN_MM_SPLIT", "m", 1);
        NnTensor *got[4];
        wide_run(&nn_backend_jit, g, threads, got);
        unsetenv("NN_MM_SPLIT");
        for (int k = 0; k < 4; k++) {
            cr_expect(memcmp(got[k]->data, ref[k]->data, nnrt_tensor_nbytes(ref[k])) == 0,
                      "%s on %d threads%s differs from 1 thread (largest difference %g)",
                      what[k], threads, run == 2 ? " (row split)" : "", ag_rel_diff(got[k], ref[k]));
            nnrt_tensor_free(got[k]);
        }
    }
    for (int k = 0; k < 4; k++) {
        nnrt_tensor_free(ref[k]);
        nnrt_tensor_free(interp[k]);
    }
    nn_graph_free(g);
}

// C = op(A)^T-form products whose op(A) the tiles pack (backend/llvm/
// lower_matmul.c, pack_a): A transposed, its rows not a multiple of the
// 8-row tile, K fixed (600: all of it packed at once; 8500: too long for
// the buffer, so in blocks with partial sums in C) or the run-time batch
// (1 to 700 rows: all of K packed, from one block of tiles to many; 8200:
// too long for the buffer, so A read in place), columns not a multiple of
// the 32-column panel, split by rows or by panels over 1 to 3 threads. Each
// element matches a double-precision product, and the bits do not depend
// on the threads or the split (every element is one sum in K order).
static void packed_check(const NnGraph *g, int64_t rows, int threads, const char *split,
                         NnTensor **ref)
{
    NnTensor *ins[4] = {ag_tensor(NN_DT_F32, AG_SHAPE(rows, 37), 21, -1, 1),
                        ag_tensor(NN_DT_F32, AG_SHAPE(rows, 270), 22, -1, 1),
                        ag_tensor(NN_DT_F32, AG_SHAPE(600, 45), 23, -1, 1),
                        ag_tensor(NN_DT_F32, AG_SHAPE(8500, 20), 24, -1, 1)};
    if (split)
        setenv("NN_MM_SPLIT", split, 1);
    NnExecOptions opt = {.threads = threads};
    NnExec *x = nn_backend_jit.prepare(g, &opt);
    unsetenv("NN_MM_SPLIT");
    cr_assert(x, "%s", nnrt_errmsg());
    NnVars v;
    nnrt_vars_init(&v);
    NnTensor *out[3];
    cr_assert_eq(nn_backend_jit.run(x, &v, ins, out), NN_OK, "%s", nnrt_errmsg());
    // out[0] = a^T b (37 x 270, K = rows), out[1] = c^T c (45 x 45, K = 600),
    // out[2] = d^T d (20 x 20, K = 8500)
    for (int o = 0; o < 3; o++) {
        const float *A = ins[o ? o + 1 : 0]->data, *B = ins[o ? o + 1 : 1]->data;
        const float *C = out[o]->data;
        int64_t m = o == 2 ? 20 : o ? 45 : 37, n = o == 2 ? 20 : o ? 45 : 270;
        int64_t k = o == 2 ? 8500 : o ? 600 : rows;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0, mag = 0;
                for (int64_t q = 0; q < k; q++) {
                    double p = (double)A[q * m + i] * (double)B[q * n + j];
                    s += p;
                    mag += fabs(p);
                }
                cr_assert(fabs(C[i * n + j] - s) <= 1e-5 * mag + 1e-30,
                          "output %d, %lld rows, %d threads, split %s: [%lld,%lld] = %g, want %g", o,
                          (long long)rows, threads, split ? split : "default", (long long)i,
                          (long long)j, C[i * n + j], s);
            }
        if (!ref[o]) {
            ref[o] = nnrt_tensor_new(out[o]->dtype, out[o]->rank, out[o]->shape);
            memcpy(ref[o]->data, out[o]->data, nnrt_tensor_nbytes(out[o]));
        } else {
            cr_expect(memcmp(ref[o]->data, out[o]->data, nnrt_tensor_nbytes(out[o])) == 0,
                      "output %d, %lld rows: %d threads, split %s differ from 1 thread", o,
                      (long long)rows, threads, split ? split : "default");
        }
    }
    nn_backend_jit.free(x);
    nnrt_vars_fini(&v);
    for (int i = 0; i < 4; i++)
        nnrt_tensor_free(ins[i]);
}

Test(threads, packed_transposed_products_match_reference)
{
    NEED_LLVM();
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId a = ag_input(g, "a", NN_DT_F32, AG_SHAPE(n, 37));
    NnId b = ag_input(g, "b", NN_DT_F32, AG_SHAPE(n, 270));
    NnId c = ag_input(g, "c", NN_DT_F32, AG_SHAPE(600, 45));
    NnId d = ag_input(g, "d", NN_DT_F32, AG_SHAPE(8500, 20));
    nn_graph_add_output(g, "ab", nn_ir_matmul(g, a, b, true, false, ag_loc));
    nn_graph_add_output(g, "cc", nn_ir_matmul(g, c, c, true, false, ag_loc));
    nn_graph_add_output(g, "dd", nn_ir_matmul(g, d, d, true, false, ag_loc));
    const int64_t rows[] = {1, 7, 256, 257, 700, 8200};
    const char *splits[] = {NULL, "m", "n"};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        NnTensor *ref[3] = {NULL, NULL, NULL};
        for (int t = 1; t <= 3; t++)
            for (int s = 0; s < 3; s++)
                packed_check(g, rows[r], t, splits[s], ref);
        for (int o = 0; o < 3; o++)
            nnrt_tensor_free(ref[o]);
    }
    nn_graph_free(g);
}

// ---- transposed B packed through registers (lower_matmul.c, pack_tb_blocks) ----

// C = op(A) @ B^T with B^T packed in vw x vw blocks transposed in registers
// (vw = 16 in f32, 8 in f64), the columns of a panel past N and the k past
// the last whole block element by element. Every element of C is one chain
// of FMAs in K order from zero, so it equals, to the bit, the scalar fma
// chain computed here, whatever the split: K and N around the block and
// panel edges (K 1 to 40, N 1 to 70), a fixed and a run-time M (150 and 3
// rows), A transposed with K the run-time batch (17 and 40), f32 and f64,
// 1 to 3 threads, both splits.
static const int64_t tb_ks[] = {1, 7, 8, 9, 15, 16, 17, 31, 33, 40};
static const int64_t tb_ns[] = {1, 7, 16, 17, 33, 47, 70};
#define TB_NK (sizeof tb_ks / sizeof tb_ks[0])
#define TB_NN (sizeof tb_ns / sizeof tb_ns[0])

// One graph: for each (K, N) an output op(A_K) @ B_KN^T. form 0: A [150, K]
// fixed; 1: A [rows, K], rows the batch; 2: A [K, 150] transposed, K the
// batch (only K = the batch, so one A and one output per N). 150 rows keep
// most shapes off the plain-loop path (emit_small).
static NnGraph *tb_graph(NnDType dt, int form)
{
    NnGraph *g = nn_graph_new();
    int64_t r = form ? nn_sym_dim(g, "N") : 0;
    char name[32];
    for (size_t ki = 0; ki < (form == 2 ? 1 : TB_NK); ki++) {
        int64_t k = tb_ks[ki];
        snprintf(name, sizeof name, "a%zu", ki);
        NnId a = ag_input(g, name, dt,
                          form == 0 ? AG_SHAPE(150, k) : form == 1 ? AG_SHAPE(r, k) : AG_SHAPE(r, 150));
        for (size_t ni = 0; ni < TB_NN; ni++) {
            snprintf(name, sizeof name, "b%zu_%zu", ki, ni);
            NnId b = ag_input(g, name, dt, form == 2 ? AG_SHAPE(tb_ns[ni], r) : AG_SHAPE(tb_ns[ni], k));
            snprintf(name, sizeof name, "c%zu_%zu", ki, ni);
            nn_graph_add_output(g, name, nn_ir_matmul(g, a, b, form == 2, true, ag_loc));
        }
    }
    return g;
}

static void tb_check(NnDType dt, int form, int64_t rows, int threads, const char *split)
{
    NnGraph *g = tb_graph(dt, form);
    // the inputs in the order they were made, the run-time dim as `rows`
    NnTensor *ins[TB_NK * (TB_NN + 1)], *out[TB_NK * TB_NN];
    int nin = 0;
    for (NnId id = 0; id < g->count; id++) {
        const NnNode *nd = &g->nodes[id];
        if (nd->op != NN_OP_INPUT)
            continue;
        int i = nin++;
        NnShape s = {nd->shape.rank, {0}};
        for (int d = 0; d < s.rank; d++)
            s.dim[d] = nd->shape.dim[d] < 0 ? rows : nd->shape.dim[d];
        ins[i] = ag_tensor(dt, s, 31 + (uint64_t)i, -1, 1);
    }
    if (split)
        setenv("NN_MM_SPLIT", split, 1);
    NnExecOptions opt = {.threads = threads};
    NnExec *x = nn_backend_jit.prepare(g, &opt);
    unsetenv("NN_MM_SPLIT");
    cr_assert(x, "%s", nnrt_errmsg());
    NnVars v;
    nnrt_vars_init(&v);
    cr_assert_eq(nn_backend_jit.run(x, &v, ins, out), NN_OK, "%s", nnrt_errmsg());
    int o = 0;
    for (size_t ki = 0; ki < (form == 2 ? 1 : TB_NK); ki++) {
        const NnTensor *a = ins[ki * (TB_NN + 1)];
        int64_t m = form == 2 ? 150 : a->shape[0], k = form == 2 ? rows : tb_ks[ki];
        for (size_t ni = 0; ni < TB_NN; ni++, o++) {
            const NnTensor *b = ins[ki * (TB_NN + 1) + 1 + ni];
            int64_t n = tb_ns[ni];
            cr_assert(out[o]->numel == m * n, "output %d: %lld elements", o, (long long)out[o]->numel);
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    double want, got;
                    if (dt == NN_DT_F32) {
                        const float *A = a->data, *B = b->data;
                        float s = 0;
                        for (int64_t q = 0; q < k; q++)
                            s = fmaf(form == 2 ? A[q * m + i] : A[i * k + q], B[j * k + q], s);
                        want = s;
                        got = ((const float *)out[o]->data)[i * n + j];
                    } else {
                        const double *A = a->data, *B = b->data;
                        double s = 0;
                        for (int64_t q = 0; q < k; q++)
                            s = fma(form == 2 ? A[q * m + i] : A[i * k + q], B[j * k + q], s);
                        want = s;
                        got = ((const double *)out[o]->data)[i * n + j];
                    }
                    cr_assert(got == want,
                              "%s form %d, M %lld N %lld K %lld, %d threads, split %s: [%lld,%lld] "
                              "= %.17g, want %.17g",
                              dt == NN_DT_F32 ? "f32" : "f64", form, (long long)m, (long long)n,
                              (long long)k, threads, split ? split : "default", (long long)i,
                              (long long)j, got, want);
                }
        }
    }
    nn_backend_jit.free(x);
    nnrt_vars_fini(&v);
    for (int i = 0; i < nin; i++)
        nnrt_tensor_free(ins[i]);
    nn_graph_free(g);
}

Test(threads, transposed_b_packing_is_bit_identical)
{
    NEED_LLVM();
    const NnDType dts[] = {NN_DT_F32, NN_DT_F64};
    // threads and split: 1 (default), 2 with rows split, 3 with panels split
    const int threads[] = {1, 2, 3};
    const char *splits[] = {NULL, "m", "n"};
    for (int d = 0; d < 2; d++)
        for (int t = 0; t < 3; t++) {
            tb_check(dts[d], 0, 150, threads[t], splits[t]);
            tb_check(dts[d], 1, 150, threads[t], splits[t]);
            tb_check(dts[d], 1, 3, threads[t], splits[t]);
            tb_check(dts[d], 2, 17, threads[t], splits[t]);
            tb_check(dts[d], 2, 40, threads[t], splits[t]);
        }
}
