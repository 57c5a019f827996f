// Test helpers for the pass, fusion and planner tests: running a graph on the
// interpreter with deterministic inputs and parameters, comparing two graphs'
// results (outputs and updated variables), dumping a graph to a string, and
// golden files under tests/golden/passes/ (rewritten when NN_UPDATE_GOLDEN=1).
#ifndef NN_TEST_PASS_HELPERS_H
#define NN_TEST_PASS_HELPERS_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "ir_helpers.h"
#include "pass.h"

// Applies a pass and frees the input when a new graph came back.
static inline NnGraph *apply(NnPassFn pass, NnGraph *g)
{
    NnGraph *h = pass(g);
    if (h != g)
        nn_graph_free(g);
    cr_assert(nn_ir_verify(h), "after pass: %s", h->err);
    return h;
}

static inline char *dump(const NnGraph *g)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nn_ir_print(f, g);
    fclose(f);
    return buf;
}

// A deterministic value in [-1, 1) for element i of tensor number `which`.
static inline double fill_value(int which, int64_t i)
{
    uint64_t x = (uint64_t)(which + 1) * 0x9e3779b97f4a7c15ull + (uint64_t)i * 0xbf58476d1ce4e5b9ull;
    x ^= x >> 31;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 29;
    return (double)(x >> 11) / (double)(1ull << 52) - 1.0;
}

static inline NnTensor *make_tensor(const NnGraph *g, NnId id, const int64_t *symv, int which)
{
    const NnNode *n = &g->nodes[id];
    int64_t dims[NN_MAX_RANK];
    nn_shape_bind(&n->shape, symv, dims);
    NnTensor *t = nnrt_tensor_new(n->dtype, n->shape.rank, dims);
    cr_assert(t);
    for (int64_t i = 0; i < t->numel; i++) {
        double v = fill_value(which, i);
        // Integer inputs are labels: small and non-negative.
        nnrt_tensor_set(t, i, n->dtype == NN_DT_I32 ? (double)((int64_t)(v * 1000 + 1000) % 3) : v);
    }
    return t;
}

// Everything one run needs: inputs by position and variables by name.
typedef struct RunEnv {
    NnTensor *inputs[16];
    int ninputs;
    NnVars vars;
} RunEnv;

static inline void env_init(RunEnv *e, const NnGraph *g, const int64_t *symv)
{
    memset(e, 0, sizeof *e);
    nnrt_vars_init(&e->vars);
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op == NN_OP_INPUT) {
            cr_assert_lt(e->ninputs, 16);
            e->inputs[e->ninputs] = make_tensor(g, i, symv, e->ninputs);
            e->ninputs++;
        } else if ((n->op == NN_OP_PARAM || n->op == NN_OP_STATE) &&
                   !nnrt_vars_get(&e->vars, n->attr.name)) {
            nnrt_vars_put(&e->vars, n->attr.name, make_tensor(g, i, symv, 100 + i));
        }
    }
}

static inline void env_fini(RunEnv *e)
{
    for (int k = 0; k < e->ninputs; k++)
        nnrt_tensor_free(e->inputs[k]);
    nnrt_vars_fini(&e->vars);
}

// Runs g on the interpreter; returns clones of its outputs (caller frees).
static inline NnTensor **run_interp(const NnGraph *g, RunEnv *e)
{
    NnExecOptions opt = {.threads = 1};
    NnExec *x = nn_backend_interp.prepare(g, &opt);
    cr_assert(x, "prepare: %s", nnrt_errmsg());
    NnTensor **outs = calloc((size_t)g->noutputs + 1, sizeof *outs);
    NnTensor **res = calloc((size_t)g->noutputs + 1, sizeof *res);
    NnStatus st = nn_backend_interp.run(x, &e->vars, e->inputs, outs);
    cr_assert_eq(st, NN_OK, "run: %s", nnrt_errmsg());
    for (int k = 0; k < g->noutputs; k++)
        res[k] = nnrt_tensor_clone(outs[k]);
    nn_backend_interp.free(x);
    free(outs);
    return res;
}

static inline void assert_close(const NnTensor *a, const NnTensor *b, const char *what)
{
    cr_assert(nnrt_tensor_same_shape(a, b), "%s: shapes differ", what);
    for (int64_t i = 0; i < a->numel; i++) {
        double x = nnrt_tensor_get(a, i), y = nnrt_tensor_get(b, i);
        cr_assert(fabs(x - y) <= 1e-5 + 1e-4 * fabs(y), "%s[%lld]: %g vs %g", what,
                  (long long)i, x, y);
    }
}

// Runs `before` and `after` on the same inputs and variables and asserts the
// outputs and updated variables agree.
static inline void assert_same_results(const NnGraph *before, const NnGraph *after,
                                       const int64_t *symv)
{
    cr_assert_eq(before->noutputs, after->noutputs);
    RunEnv e1, e2;
    env_init(&e1, before, symv);
    env_init(&e2, before, symv);
    NnTensor **r1 = run_interp(before, &e1);
    NnTensor **r2 = run_interp(after, &e2);
    for (int k = 0; k < before->noutputs; k++) {
        assert_close(r2[k], r1[k], before->outputs[k].name);
        nnrt_tensor_free(r1[k]);
        nnrt_tensor_free(r2[k]);
    }
    for (int k = 0; k < e1.vars.count; k++)
        assert_close(nnrt_vars_get(&e2.vars, e1.vars.names[k]), e1.vars.tensors[k],
                     e1.vars.names[k]);
    free(r1);
    free(r2);
    env_fini(&e1);
    env_fini(&e2);
}

// Compares text with tests/golden/passes/<name>.ir, or rewrites the file when
// NN_UPDATE_GOLDEN=1.
static inline void golden(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/golden/passes/%s.ir", NN_SOURCE_DIR, name);
    const char *upd = getenv("NN_UPDATE_GOLDEN");
    if (upd && strcmp(upd, "1") == 0) {
        FILE *f = fopen(path, "w");
        cr_assert(f, "cannot write %s", path);
        fputs(text, f);
        fclose(f);
        return;
    }
    FILE *f = fopen(path, "r");
    cr_assert(f, "missing golden %s (run with NN_UPDATE_GOLDEN=1)", path);
    char *want = NULL;
    size_t cap = 0;
    ssize_t len = getdelim(&want, &cap, '\0', f);
    fclose(f);
    cr_assert(len >= 0);
    cr_expect_str_eq(text, want, "golden %s differs; got:\n%s", name, text);
    free(want);
}

// "// before\n<dump>// after <pass>\n<dump>" for a pass applied to g; frees g.
static inline char *before_after(NnGraph *g, const char *pass)
{
    char *a = dump(g);
    g = apply(nn_pass_find(pass)->fn, g);
    char *b = dump(g);
    nn_graph_free(g);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    fprintf(f, "// before\n%s// after %s\n%s", a, pass, b);
    fclose(f);
    free(a);
    free(b);
    return out;
}

#endif
