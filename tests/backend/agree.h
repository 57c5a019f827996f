// Helpers for the backend agreement tests: small graph builders, seeded random
// tensors, and run_agree(), which runs one graph on the interpreter and on the
// JIT with identical inputs and variables and compares every output and every
// updated variable within a relative tolerance. Header-only (static).
#ifndef NN_TEST_AGREE_H
#define NN_TEST_AGREE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "backend.h"
#include "graph.h"

#define AG_MAXIN 8

static const NnLoc ag_loc;

static inline NnShape ag_shape(int rank, const int64_t *d)
{
    NnShape s = {.rank = rank};
    for (int i = 0; i < rank; i++)
        s.dim[i] = d[i];
    return s;
}
#define AG_SCALAR ((NnShape){.rank = 0})
#define AG_SHAPE(...)                                                                              \
    ag_shape(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t), (int64_t[]){__VA_ARGS__})

static inline NnId ag_input(NnGraph *g, const char *name, NnDType dt, NnShape s)
{
    return nn_ir_source(g, NN_OP_INPUT, name, dt, &s, ag_loc);
}

static inline NnId ag_param(NnGraph *g, const char *name, NnShape s)
{
    return nn_ir_source(g, NN_OP_PARAM, name, NN_DT_F32, &s, ag_loc);
}

// A training step's tail: the gradients of loss for the n parameters w and a
// plain SGD update w -= lr * grad for each. grads (if not NULL) receives them.
static inline void ag_sgd(NnGraph *g, NnId loss, const NnId *w, int n, double lr, NnId *grads)
{
    NnId gs[AG_MAXIN * 2];
    cr_assert(n <= AG_MAXIN * 2, "ag_sgd: at most %d parameters", AG_MAXIN * 2);
    cr_assert(nn_ad_grad(g, loss, w, n, gs), "autodiff: %s", g->err);
    NnId r = nn_ir_const(g, lr, NN_DT_F32, ag_loc);
    for (int k = 0; k < n; k++) {
        NnId step = nn_ir_binary(g, NN_OP_MUL, gs[k], r, ag_loc);
        nn_graph_add_update(g, w[k], nn_ir_binary(g, NN_OP_SUB, w[k], step, ag_loc));
        if (grads)
            grads[k] = gs[k];
    }
}

// Deterministic values: uniform in [lo, hi) (integers for i32).
static inline void ag_fill(NnTensor *t, uint64_t seed, double lo, double hi)
{
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < t->numel; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(z >> 11) * 0x1p-53;
        double v = lo + (hi - lo) * u;
        nnrt_tensor_set(t, i, t->dtype == NN_DT_I32 ? floor(v) : v);
    }
}

static inline NnTensor *ag_tensor(NnDType dt, NnShape s, uint64_t seed, double lo, double hi)
{
    NnTensor *t = nnrt_tensor_new(dt, s.rank, s.dim);
    ag_fill(t, seed, lo, hi);
    return t;
}

// The largest difference between a and b relative to b's largest magnitude.
static inline double ag_rel_diff(const NnTensor *a, const NnTensor *b)
{
    double d = 0, m = 0;
    for (int64_t i = 0; i < b->numel; i++) {
        double x = nnrt_tensor_get(a, i), y = nnrt_tensor_get(b, i);
        d = fabs(x - y) > d ? fabs(x - y) : d;
        m = fabs(y) > m ? fabs(y) : m;
    }
    return m > 0 ? d / m : d;
}

// |a - b| <= tol * (|b| + scale), scale = largest |b| of the tensor / 100 (so a
// sum that cancels is judged against its terms' size, not its own).
static inline bool ag_close(const NnTensor *a, const NnTensor *b, double tol, char *why, size_t n)
{
    if (a->dtype != b->dtype || !nnrt_tensor_same_shape(a, b)) {
        snprintf(why, n, "type differs");
        return false;
    }
    double scale = 0;
    for (int64_t i = 0; i < b->numel; i++)
        if (isfinite(nnrt_tensor_get(b, i)))
            scale = fmax(scale, fabs(nnrt_tensor_get(b, i)));
    scale = fmax(scale / 100, 1e-30);
    for (int64_t i = 0; i < b->numel; i++) {
        double x = nnrt_tensor_get(a, i), y = nnrt_tensor_get(b, i);
        if (isnan(x) && isnan(y))
            continue;
        if (x == y)
            continue;
        if (!(fabs(x - y) <= tol * (fabs(y) + scale))) {
            snprintf(why, n, "element %lld: jit %.9g, interp %.9g", (long long)i, x, y);
            return false;
        }
    }
    return true;
}

static inline void ag_vars_copy(NnVars *dst, const NnVars *src)
{
    nnrt_vars_init(dst);
    for (int i = 0; i < src->count; i++)
        nnrt_vars_put(dst, src->names[i], nnrt_tensor_clone(src->tensors[i]));
}

// Runs g on both backends; returns false (and says why in why) on any disagreement.
static inline bool ag_run(const NnGraph *g, NnTensor *const *ins, const NnVars *vars, double tol,
                          char *why, size_t n)
{
#ifdef NN_WITH_LLVM
    NnVars vi, vj;
    ag_vars_copy(&vi, vars);
    ag_vars_copy(&vj, vars);
    NnExecOptions opt = {.threads = 2, .verbose = getenv("AG_VERBOSE") != NULL};
    NnExec *xi = nn_backend_interp.prepare(g, &opt), *xj = nn_backend_jit.prepare(g, &opt);
    bool ok = xi && xj;
    if (!ok)
        snprintf(why, n, "prepare failed: %s", nnrt_errmsg());
    NnTensor *oi[16] = {0}, *oj[16] = {0};
    if (ok && nn_backend_interp.run(xi, &vi, ins, oi) != NN_OK) {
        snprintf(why, n, "interp failed: %s", nnrt_errmsg());
        ok = false;
    }
    if (ok && nn_backend_jit.run(xj, &vj, ins, oj) != NN_OK) {
        snprintf(why, n, "jit failed: %s", nnrt_errmsg());
        ok = false;
    }
    char w[256];
    for (int k = 0; ok && k < g->noutputs; k++)
        if (!ag_close(oj[k], oi[k], tol, w, sizeof w)) {
            snprintf(why, n, "output %s: %s", g->outputs[k].name, w);
            ok = false;
        }
    for (int k = 0; ok && k < vi.count; k++)
        if (!ag_close(vj.tensors[k], vi.tensors[k], tol, w, sizeof w)) {
            snprintf(why, n, "var %s: %s", vi.names[k], w);
            ok = false;
        }
    if (xi)
        nn_backend_interp.free(xi);
    if (xj)
        nn_backend_jit.free(xj);
    nnrt_vars_fini(&vi);
    nnrt_vars_fini(&vj);
    return ok;
#else
    (void)g, (void)ins, (void)vars, (void)tol, (void)why, (void)n;
    return true;
#endif
}

#endif
