// Lowering: name and shape diagnostics (exact text and location), parameter
// naming and sharing, the structure of the one-graph training step, and the
// stdlib optimizers' updates checked against hand-computed steps.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ast.h"
#include "backend.h"
#include "lower.h"
#include "sema.h"

typedef struct Compiled {
    NnCtx c;
    NnProgram *p;
    NnTrainSpec spec;
    bool ok;
} Compiled;

static const char *prelude = "import std\n";

// Compiles `body` (after `import std`) and lowers its train block against a
// one-feature x and a label field of the given dtype/width.
static void compile(Compiled *k, const char *body, int xw, NnDType ydt, int yw)
{
    memset(k, 0, sizeof *k);
    nn_ctx_init(&k->c, NULL);
    k->c.stdlib_dir = NN_SOURCE_DIR "/stdlib";
    char *text = malloc(strlen(prelude) + strlen(body) + 1);
    strcpy(text, prelude);
    strcat(text, body);
    NnSource *src = nn_source_from_string(k->c.arena, "t.nn", text);
    free(text);
    NnAst *ast = nn_parse(&k->c, src);
    if (k->c.diags.nerrors)
        return;
    k->p = nn_sema(&k->c, ast);
    if (k->c.diags.nerrors || !k->p || k->p->ntrains == 0)
        return;
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 1, .dim = {xw}}},
                    {"label", ydt, {.rank = yw ? 1 : 0, .dim = {yw}}}};
    k->ok = nn_lower_train(&k->c, k->p, k->p->trains[0], f, 2, NULL, 0, &k->spec);
}

static void release(Compiled *k)
{
    nn_train_spec_fini(&k->spec);
    nn_ctx_fini(&k->c);
}

static const char *diags(Compiled *k) { return nn_diags_text(&k->c.diags); }

#define TRAIN_TAIL                                                                                 \
    "data d { x = [[1]]\n y = [[1]] }\n"                                                           \
    "train m on d {\n loss = mse(output, y)\n optimizer = sgd(lr = 0.1)\n}\n"

Test(lower, shape_mismatch_names_both_types_at_the_operator)
{
    Compiled k;
    compile(&k,
            "model m(x: f32[N, 784]) -> f32[N, 256] {\n"
            "    param b: f32[128] = zeros()\n"
            "    h = x |> dense(256)\n"
            "    return h + b\n"
            "}\n" TRAIN_TAIL,
            784, NN_DT_F32, 1);
    cr_assert(!k.ok);
    const char *t = diags(&k);
    cr_assert(strstr(t, "t.nn:5:14: error: cannot add f32[N, 256] and f32[128]"), "%s", t);
    cr_assert(strstr(t, "    return h + b"), "source line shown: %s", t);
    release(&k);
}

Test(lower, unknown_name_suggests_closest)
{
    Compiled k;
    compile(&k,
            "model m(x: f32[N, 1]) -> f32[N, 1] {\n"
            "    return x |> desne(1)\n"
            "}\n" TRAIN_TAIL,
            1, NN_DT_F32, 1);
    cr_assert(!k.ok);
    cr_assert(strstr(diags(&k), "t.nn:3:17: error: unknown name 'desne'; did you mean 'dense'?"),
              "%s", diags(&k));
    release(&k);
}

Test(lower, too_many_arguments)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 1]) -> f32[N, 1] {\n    return dense(x, 1, 2)\n}\n" TRAIN_TAIL,
            1, NN_DT_F32, 1);
    cr_assert(!k.ok);
    cr_assert(strstr(diags(&k), "layer 'dense' takes 2 arguments, got more"), "%s", diags(&k));
    release(&k);
}

Test(lower, unknown_named_argument_suggests)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 1]) -> f32[N, 1] {\n    return dense(x, unit = 1)\n}\n" TRAIN_TAIL,
            1, NN_DT_F32, 1);
    cr_assert(!k.ok);
    cr_assert(strstr(diags(&k), "layer 'dense' has no parameter 'unit'; did you mean 'units'?"),
              "%s", diags(&k));
    release(&k);
}

Test(lower, wrong_rank_into_dense)
{
    Compiled k;
    compile(&k,
            "model m(x: f32[N, 1]) -> f32[N, 1] {\n"
            "    y = reshape(x, [N, 1, 1])\n"
            "    return dense(y, 1)\n}\n" TRAIN_TAIL,
            1, NN_DT_F32, 1);
    cr_assert(!k.ok);
    cr_assert(strstr(diags(&k), "argument 'x' of 'dense' must be f32[N, I], got f32[N, 1, 1]"),
              "%s", diags(&k));
    release(&k);
}

Test(lower, result_type_checked)
{
    Compiled k;
    compile(&k, "model m(x: f32[N, 1]) -> f32[N, 3] {\n    return dense(x, 2)\n}\n" TRAIN_TAIL, 1,
            NN_DT_F32, 1);
    cr_assert(!k.ok);
    cr_assert(strstr(diags(&k), "the result of 'm' must be f32[N, 3], got f32[N, 2]"), "%s",
              diags(&k));
    release(&k);
}

Test(lower, loss_must_be_scalar)
{
    Compiled k;
    compile(&k,
            "model m(x: f32[N, 1]) -> f32[N, 1] {\n    return dense(x, 1)\n}\n"
            "data d { x = [[1]]\n y = [[1]] }\n"
            "train m on d {\n loss = (output - y) ^ 2\n optimizer = sgd()\n}\n",
            1, NN_DT_F32, 1);
    cr_assert(!k.ok);
    cr_assert(strstr(diags(&k), "the loss must be a scalar, got f32[N, 1]"), "%s", diags(&k));
    release(&k);
}

Test(lower, unknown_train_setting_suggests)
{
    Compiled k;
    compile(&k,
            "model m(x: f32[N, 1]) -> f32[N, 1] {\n    return dense(x, 1)\n}\n"
            "data d { x = [[1]]\n y = [[1]] }\n"
            "train m on d {\n loss = mse(output, y)\n optimizer = sgd()\n epoch = 3\n}\n",
            1, NN_DT_F32, 1);
    cr_assert(!k.ok);
    cr_assert(strstr(diags(&k), "unknown train setting 'epoch'; did you mean 'epochs'?"), "%s",
              diags(&k));
    release(&k);
}

static bool has_var(const NnTrainSpec *s, const char *name)
{
    for (int i = 0; i < s->nvars; i++)
        if (strcmp(s->vars[i].name, name) == 0)
            return true;
    return false;
}

Test(lower, parameters_named_by_call_site)
{
    Compiled k;
    compile(&k,
            "model mlp(x: f32[N, 4]) -> f32[N, 1] {\n"
            "    h = x |> dense(3) |> relu\n"
            "    return dense(h, 1)\n}\n"
            "data d { x = [[1, 2, 3, 4]]\n y = [[1]] }\n"
            "train mlp on d {\n loss = mse(output, y)\n optimizer = adam()\n}\n",
            4, NN_DT_F32, 1);
    cr_assert(k.ok, "%s", diags(&k));
    cr_assert(has_var(&k.spec, "mlp.dense1.w") && has_var(&k.spec, "mlp.dense1.b"));
    cr_assert(has_var(&k.spec, "mlp.dense2.w") && has_var(&k.spec, "mlp.dense2.b"));
    cr_assert(has_var(&k.spec, "mlp.dense1.w/m") && has_var(&k.spec, "mlp.dense1.w/v"));
    cr_assert(has_var(&k.spec, "step"));
    // adam: p, m, v per parameter, plus the step counter.
    cr_assert_eq(k.spec.step->nupdates, 4 * 3 + 1);
    cr_assert(nn_ir_verify(k.spec.step), "%s", k.spec.step->err);
    // The eval graph has no updates and both outputs.
    cr_assert_eq(k.spec.eval->nupdates, 0);
    cr_assert(nn_graph_output(k.spec.eval, "output") >= 0);
    cr_assert(nn_graph_output(k.spec.eval, "loss") >= 0);
    release(&k);
}

Test(lower, bound_layer_shares_parameters)
{
    Compiled k;
    compile(&k,
            "model m(x: f32[N, 2]) -> f32[N, 2] {\n"
            "    enc = dense(units: 2)\n"
            "    return enc(enc(x))\n}\n"
            "data d { x = [[1, 2]]\n y = [[1, 0]] }\n"
            "train m on d {\n loss = mse(output, y)\n optimizer = sgd()\n}\n",
            2, NN_DT_F32, 2);
    cr_assert(k.ok, "%s", diags(&k));
    int params = 0;
    for (int i = 0; i < k.spec.nvars; i++)
        params += k.spec.vars[i].trainable;
    cr_assert_eq(params, 2, "one w and one b for both calls");
    cr_assert(has_var(&k.spec, "m.enc.w"));
    release(&k);
}

// Runs `steps` training steps of the one-weight model y = x @ w on x = 2,
// y = 1 from w = 1, returning w after each step.
static void run_steps(const char *optimizer, int steps, double *w_after)
{
    char body[1024];
    snprintf(body, sizeof body,
             "model lin(x: f32[N, 1]) -> f32[N, 1] {\n"
             "    param w: f32[1, 1] = ones()\n"
             "    return x @ w\n}\n"
             "data d { x = [[2]]\n y = [[1]] }\n"
             "train lin on d {\n loss = mse(output, y)\n optimizer = %s\n}\n",
             optimizer);
    Compiled k;
    compile(&k, body, 1, NN_DT_F32, 1);
    cr_assert(k.ok, "%s", diags(&k));
    NnVars vars;
    nnrt_vars_init(&vars);
    for (int i = 0; i < k.spec.nvars; i++) {
        const NnParamInit *v = &k.spec.vars[i];
        NnTensor *t = nnrt_tensor_new(v->dtype, v->shape.rank, v->shape.dim);
        if (strcmp(v->init, "ones") == 0 || strcmp(v->init, "constant") == 0)
            for (int64_t j = 0; j < t->numel; j++)
                nnrt_tensor_set(t, j, v->init[0] == 'o' ? 1 : v->args[0]);
        nnrt_vars_put(&vars, v->name, t);
    }
    const NnBackend *be = &nn_backend_interp;
    NnExecOptions eo = {.threads = 1};
    NnExec *x = be->prepare(k.spec.step, &eo);
    cr_assert(x, "%s", nnrt_errmsg());
    int64_t shape[2] = {1, 1};
    NnTensor *xi = nnrt_tensor_new(NN_DT_F32, 2, shape), *yi = nnrt_tensor_new(NN_DT_F32, 2, shape);
    nnrt_tensor_set(xi, 0, 2);
    nnrt_tensor_set(yi, 0, 1);
    NnTensor *in[2] = {xi, yi}, *out[2];
    for (int s = 0; s < steps; s++) {
        cr_assert_eq(be->run(x, &vars, in, out), NN_OK, "%s", nnrt_errmsg());
        w_after[s] = nnrt_tensor_get(nnrt_vars_get(&vars, "lin.w"), 0);
    }
    be->free(x);
    nnrt_tensor_free(xi);
    nnrt_tensor_free(yi);
    nnrt_vars_fini(&vars);
    release(&k);
}

// d/dw (2w - 1)^2 = 4 (2w - 1)
static double grad_at(double w) { return 4 * (2 * w - 1); }

Test(lower, sgd_momentum_matches_hand_computed_steps)
{
    double w[3];
    run_steps("sgd(lr = 0.1, momentum = 0.9)", 3, w);
    double ref = 1, v = 0;
    for (int s = 0; s < 3; s++) {
        v = 0.9 * v + grad_at(ref);
        ref -= 0.1 * v;
        cr_assert_float_eq(w[s], ref, 1e-5, "step %d: %g vs %g", s + 1, w[s], ref);
    }
    cr_assert_float_eq(w[0], 0.6, 1e-6); // 1 - 0.1 * 4
}

Test(lower, sgd_weight_decay_adds_l2)
{
    double w[2];
    run_steps("sgd(lr = 0.1, weight_decay = 0.5)", 2, w);
    double ref = 1;
    for (int s = 0; s < 2; s++) {
        ref -= 0.1 * (grad_at(ref) + 0.5 * ref);
        cr_assert_float_eq(w[s], ref, 1e-5, "step %d", s + 1);
    }
}

Test(lower, adam_matches_hand_computed_steps)
{
    double w[4];
    run_steps("adam(lr = 0.01)", 4, w);
    double ref = 1, m = 0, v = 0, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (int s = 1; s <= 4; s++) {
        double g = grad_at(ref);
        m = b1 * m + (1 - b1) * g;
        v = b2 * v + (1 - b2) * g * g;
        double mh = m / (1 - pow(b1, s)), vh = v / (1 - pow(b2, s));
        ref -= 0.01 * mh / (sqrt(vh) + eps);
        cr_assert_float_eq(w[s - 1], ref, 1e-5, "step %d: %g vs %g", s, w[s - 1], ref);
    }
}
