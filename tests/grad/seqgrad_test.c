// Gradients of the language's sequence pieces, checked against central finite
// differences in f64: slicing, indexed assignment, concat, stack, split and
// `for` loops (backpropagation through time) on a small LSTM and GRU. Each
// case is .nn source compiled by the real front end (nn_lower_model); the loss
// is sum(output * W) for a fixed random W, differentiated with nn_ad_grad with
// respect to every parameter and the model input, and run by the interpreter.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ast.h"
#include "autodiff.h"
#include "backend.h"
#include "lower.h"
#include "sema.h"

static const NnLoc L = {0};

static double next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

static NnTensor *random_tensor(const NnNode *n, uint64_t *rng, double scale)
{
    NnTensor *t = nnrt_tensor_new(n->dtype, n->shape.rank, n->shape.dim);
    for (int64_t i = 0; i < t->numel; i++)
        nnrt_tensor_set(t, i, scale * next(rng));
    return t;
}

// Compiles model `net` of `src` and checks d loss / d (params, input); returns
// the number of mismatching elements.
static int check_source(const char *what, const char *src)
{
    NnCtx c;
    nn_ctx_init(&c, stderr);
    c.stdlib_dir = NN_SOURCE_DIR "/stdlib";
    NnAst *ast = nn_parse(&c, nn_source_from_string(c.arena, what, src));
    cr_assert_eq(c.diags.nerrors, 0, "%s: parse failed", what);
    NnProgram *p = nn_sema(&c, ast);
    cr_assert_eq(c.diags.nerrors, 0, "%s: sema failed", what);
    NnGraph *g = nn_lower_model(&c, p, nn_sema_find(p, "net")->ast, false);
    cr_assert(g && c.diags.nerrors == 0, "%s: lowering failed", what);

    uint64_t rng = 42;
    NnVars vars;
    nnrt_vars_init(&vars);
    NnId wrt[16], grads[16];
    NnTensor *vals[16], *input = NULL;
    int n = 0;
    int nnodes = g->count;
    for (NnId id = 0; id < nnodes; id++) {
        NnNode *nd = &g->nodes[id];
        if (nd->op != NN_OP_PARAM && nd->op != NN_OP_INPUT)
            continue;
        cr_assert(n < 15);
        NnTensor *t = random_tensor(nd, &rng, 0.7);
        if (nd->op == NN_OP_PARAM)
            nnrt_vars_put(&vars, nd->attr.name, t);
        else
            input = t;
        vals[n] = t;
        wrt[n++] = id;
    }
    cr_assert(input, "%s: no input", what);
    NnId y = nn_graph_output(g, "output");
    NnNode *yn = &g->nodes[y];
    NnId w = nn_ir_source(g, NN_OP_PARAM, "loss_weights", yn->dtype, &yn->shape, L);
    nnrt_vars_put(&vars, "loss_weights", random_tensor(&g->nodes[w], &rng, 1));
    NnId yw = nn_ir_binary(g, NN_OP_MUL, y, w, L);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_SUM, yw, (1u << g->nodes[y].shape.rank) - 1, false, L);
    cr_assert(nn_ad_grad(g, loss, wrt, n, grads), "%s: %s", what, g->err);
    nn_graph_add_output(g, "loss", loss);
    for (int k = 0; k < n; k++)
        nn_graph_add_output(g, "grad", grads[k]);
    cr_assert(nn_ir_verify(g), "%s: %s", what, g->err);

    NnExecOptions opt = {.threads = 1};
    NnExec *x = nn_backend_interp.prepare(g, &opt);
    cr_assert(x, "%s: prepare failed: %s", what, nnrt_errmsg());
    NnTensor *outs[18];
    cr_assert_eq(nn_backend_interp.run(x, &vars, &input, outs), NN_OK, "%s", nnrt_errmsg());
    NnTensor *analytic[16];
    for (int k = 0; k < n; k++)
        analytic[k] = nnrt_tensor_clone(outs[2 + k]);
    int bad = 0;
    double eps = 1e-6;
    for (int k = 0; k < n; k++) {
        bool reported = false;
        for (int64_t j = 0; j < vals[k]->numel; j++) {
            double x0 = nnrt_tensor_get(vals[k], j), l[2];
            for (int s = 0; s < 2; s++) {
                nnrt_tensor_set(vals[k], j, x0 + (s ? -eps : eps));
                cr_assert_eq(nn_backend_interp.run(x, &vars, &input, outs), NN_OK);
                l[s] = nnrt_tensor_get(outs[1], 0);
            }
            nnrt_tensor_set(vals[k], j, x0);
            double fd = (l[0] - l[1]) / (2 * eps), an = nnrt_tensor_get(analytic[k], j);
            if (fabs(fd - an) > 1e-6 * fmax(1.0, fmax(fabs(fd), fabs(an)))) {
                bad++;
                if (!reported)
                    cr_log_error("%s: d loss / d %s [%lld]: analytic %.10g, numeric %.10g", what,
                                 g->nodes[wrt[k]].attr.name, (long long)j, an, fd);
                reported = true;
            }
        }
        nnrt_tensor_free(analytic[k]);
    }
    nn_backend_interp.free(x);
    nnrt_tensor_free(input);
    nnrt_vars_fini(&vars);
    nn_graph_free(g);
    nn_ctx_fini(&c);
    return bad;
}

Test(seqgrad, slicing_and_indexed_assignment)
{
    cr_expect_eq(check_source("slicing",
        "model net(x: f64[2, 3, 4]) -> f64[2, 5] {\n"
        "    param w: f64[4, 5] = normal(1)\n"
        "    a = x[:, -1] @ w\n"
        "    b = x[1, 1:, :2]\n"
        "    return a + sum(b) * x[:, 0, 1:2]\n"
        "}\n"), 0);
    cr_expect_eq(check_source("indexed assignment",
        "model net(x: f64[2, 3, 4]) -> f64[2, 3, 4] {\n"
        "    param w: f64[4, 4] = normal(1)\n"
        "    y = x * 2\n"
        "    y[:, 1] = tanh(x[:, 0] @ w)\n"
        "    y[0, 2:, 1:3] = sin(x[1, :1, 2:])\n"
        "    y[1, 0, -1] = 3\n"
        "    return y * x\n"
        "}\n"), 0);
}

Test(seqgrad, concat_stack_split)
{
    cr_expect_eq(check_source("concat, stack, split",
        "model net(x: f64[2, 6]) -> f64[3, 2, 4] {\n"
        "    param w: f64[6, 4] = normal(1)\n"
        "    a, b, c = split(x @ w @ transpose(w), [1, 2, 3], axis = 1)\n"
        "    j = concat([c, tanh(b) * a], axis = 1)\n"
        "    k = concat([x[:, :2], b], axis = -1)\n"
        "    return stack([j[:, :4], k, sin(j[:, 1:])], axis = 0)\n"
        "}\n"), 0);
}

Test(seqgrad, loop_with_stacked_output)
{
    cr_expect_eq(check_source("loop",
        "model net(x: f64[2, 4, 3]) -> f64[2, 4, 3] {\n"
        "    param wh: f64[3, 3] = normal(1)\n"
        "    h = x[:, 0] * 0\n"
        "    for t in 0..4 {\n"
        "        h = tanh(x[:, t] + h @ wh)\n"
        "        out[:, t] = h * h\n"
        "    }\n"
        "    return out + stack([h, h, h, h], axis = 1)\n"
        "}\n"), 0);
}

Test(seqgrad, lstm_bptt)
{
    cr_expect_eq(check_source("lstm",
        "layer lstm(xs: f64[N, T, I], units: int) -> f64[N, T, units] {\n"
        "    param wx: f64[I, 4 * units]     = normal(1)\n"
        "    param wh: f64[units, 4 * units] = normal(1)\n"
        "    param b:  f64[4 * units]        = normal(1)\n"
        "    h = f64(zeros([N, units])); c = f64(zeros([N, units]))\n"
        "    for t in 0..T {\n"
        "        i, f, g, o = split(xs[:, t] @ wx + h @ wh + b, 4, axis = 1)\n"
        "        c = sigmoid(f) * c + sigmoid(i) * tanh(g)\n"
        "        h = sigmoid(o) * tanh(c)\n"
        "        out[:, t] = h\n"
        "    }\n"
        "    return out\n"
        "}\n"
        "model net(x: f64[2, 4, 3]) -> f64[2, 4, 3] {\n"
        "    return lstm(x, 3)\n"
        "}\n"), 0);
}

Test(seqgrad, gru_bptt)
{
    cr_expect_eq(check_source("gru",
        "layer gru(xs: f64[N, T, I], units: int) -> f64[N, units] {\n"
        "    param wx: f64[I, 3 * units]     = normal(1)\n"
        "    param wh: f64[units, 2 * units] = normal(1)\n"
        "    param wn: f64[units, units]     = normal(1)\n"
        "    h = f64(zeros([N, units]))\n"
        "    for t in 0..T {\n"
        "        xz, xr, xn = split(xs[:, t] @ wx, 3, axis = 1)\n"
        "        hz, hr = split(h @ wh, 2, axis = 1)\n"
        "        z = sigmoid(xz + hz)\n"
        "        r = sigmoid(xr + hr)\n"
        "        n = tanh(xn + (r * h) @ wn)\n"
        "        h = (1 - z) * n + z * h\n"
        "    }\n"
        "    return h\n"
        "}\n"
        "model net(x: f64[2, 5, 3]) -> f64[2, 4] {\n"
        "    return gru(x, 4)\n"
        "}\n"), 0);
}

// stdlib/rnn.nn's form: the input projection of every step as one product of
// the time-major sequence before the loop (a matmul with leading dims), the
// loop reading step t of it; so the gradient of wx is one product after the
// reverse loop.
Test(seqgrad, gru_projected_before_the_loop)
{
    cr_expect_eq(check_source("gru, projected",
        "layer gru(xs: f64[N, T, I], units: int) -> f64[N, T, units] {\n"
        "    param wx: f64[I, 3 * units]     = normal(1)\n"
        "    param wh: f64[units, 3 * units] = normal(1)\n"
        "    param bx: f64[3 * units]        = normal(1)\n"
        "    param bh: f64[3 * units]        = normal(1)\n"
        "    h = f64(zeros([N, units]))\n"
        "    xp = transpose(xs, [1, 0, 2]) @ wx + bx\n"
        "    for t in 0..T {\n"
        "        xr, xz, xn = split(xp[t], 3, axis = 1)\n"
        "        hr, hz, hn = split(h @ wh + bh, 3, axis = 1)\n"
        "        z = sigmoid(xz + hz)\n"
        "        h = (1 - z) * tanh(xn + sigmoid(xr + hr) * hn) + z * h\n"
        "        out[:, t] = h\n"
        "    }\n"
        "    return out\n"
        "}\n"
        "model net(x: f64[2, 5, 3]) -> f64[2, 5, 4] {\n"
        "    return gru(x, 4)\n"
        "}\n"), 0);
}
