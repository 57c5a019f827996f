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
// Big enough that its matmuls and reductions run split over the pool.
typedef struct Net {
    NnGraph *g;
    NnId w[4], m[4];
} Net;

static const int64_t IN = 96, HID = 160, OUT = 10, BATCH = 120;

static Net net(void)
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
    h = nn_ir_binary(g, NN_OP_MAX, h, nn_ir_const(g, 0, NN_DT_F32, ag_loc), ag_loc);
    NnId logits = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, h, t.w[2], false, false, ag_loc),
                               t.w[3], ag_loc);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, logits, 2, false, ag_loc);
    NnId ins[2] = {logits, labels};
    NnAttr ta = {.axis = 1};
    NnId ce = nn_ir_binary(g, NN_OP_SUB, lse, nn_ir_add(g, NN_OP_TAKE, ins, 2, &ta, ag_loc),
                           ag_loc);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, ce, 1, false, ag_loc);
    nn_graph_add_output(g, "loss", loss);
    NnId grads[4];
    cr_assert(nn_ad_grad(g, loss, t.w, 4, grads), "autodiff: %s", g->err);
    NnId lr = nn_ir_const(g, 0.05, NN_DT_F32, ag_loc), mu = nn_ir_const(g, 0.9, NN_DT_F32, ag_loc);
    for (int k = 0; k < 4; k++) {
        NnId m = nn_ir_binary(g, NN_OP_ADD, nn_ir_binary(g, NN_OP_MUL, t.m[k], mu, ag_loc),
                              grads[k], ag_loc);
        nn_graph_add_update(g, t.m[k], m);
        nn_graph_add_update(g, t.w[k], nn_ir_binary(g, NN_OP_SUB, t.w[k],
                                                    nn_ir_binary(g, NN_OP_MUL, m, lr, ag_loc),
                                                    ag_loc));
    }
    return t;
}

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

static NnTensor *batch_x(int step)
{
    return ag_tensor(NN_DT_F32, AG_SHAPE(BATCH, IN), 100 + (uint64_t)step, -1, 1);
}

static NnTensor *batch_y(int step)
{
    return ag_tensor(NN_DT_I32, AG_SHAPE(BATCH), 200 + (uint64_t)step, 0, OUT);
}

// Trains `steps` steps of g on the JIT with `threads` threads into v, on two
// batches in turn; the losses go to loss[].
static void train(const NnGraph *g, NnVars *v, int threads, int steps, double *loss)
{
    NnExecOptions opt = {.threads = threads};
    NnExec *x = nn_backend_jit.prepare(g, &opt);
    cr_assert(x, "%s", nnrt_errmsg());
    for (int s = 0; s < steps; s++) {
        NnTensor *ins[2] = {batch_x(s % 2), batch_y(s % 2)}, *out[1];
        cr_assert_eq(nn_backend_jit.run(x, v, ins, out), NN_OK, "%s", nnrt_errmsg());
        loss[s] = nnrt_tensor_get(out[0], 0);
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
    }
    nn_backend_jit.free(x);
}

// The largest difference between a and b relative to b's largest magnitude.
static double rel_diff(const NnTensor *a, const NnTensor *b)
{
    double d = 0, m = 0;
    for (int64_t i = 0; i < b->numel; i++) {
        double x = nnrt_tensor_get(a, i), y = nnrt_tensor_get(b, i);
        d = fabs(x - y) > d ? fabs(x - y) : d;
        m = fabs(y) > m ? fabs(y) : m;
    }
    return m > 0 ? d / m : d;
}

// Splitting the batch's rows and the matmuls' blocks over more threads only
// reorders float sums. After 10 steps of momentum SGD the parameters of 1, 2
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
        train(t.g, &v[r], threads[r], STEPS, loss[r]);
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
            cr_expect(rel_diff(a, v[0].tensors[k]) <= 1e-4, "%s with %d threads: off by %g",
                      v[0].names[k], threads[r], rel_diff(a, v[0].tensors[k]));
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
// copies), step after step.
Test(threads, updates_swap_without_copying)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    Net t = net();
    NnVars vi, vj;
    net_vars(&vi);
    net_vars(&vj);
    NnExecOptions opt = {.threads = 2};
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
// on 1 thread or 2.
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
        NnExecOptions opt = {.threads = threads};
        NnExec *x = nn_backend_jit.prepare(t.g, &opt);
        cr_assert(x, "%s", nnrt_errmsg());
        NnTensor *ins[2] = {batch_x(0), batch_y(0)}, *out[1];
        for (int s = 0; s < 3; s++)
            cr_assert_eq(nn_backend_jit.run(x, &v, ins, out), NN_OK, "%s", nnrt_errmsg());
        long before = atomic_load(&n_allocs);
        for (int s = 0; s < 50; s++)
            nn_backend_jit.run(x, &v, ins, out);
        long during = atomic_load(&n_allocs) - before;
        cr_expect_eq(during, 0, "%d thread(s): %ld allocations in 50 steps", threads, during);
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
        nn_backend_jit.free(x);
        nnrt_vars_fini(&v);
    }
    nn_graph_free(t.g);
#endif
}
