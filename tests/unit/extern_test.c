// `extern` C functions: every error a declaration or a call can have (missing
// library, missing symbol, unsupported signatures, misplaced or mismatched
// derivatives, differentiating without one), calls through libffi in the
// interpreter and directly in JIT code, the gradient through a declared
// derivative against finite differences, and the stdlib gelu against its
// closed form.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ast.h"
#include "backend.h"
#include "init.h"
#include "lower.h"
#include "pass.h"
#include "sema.h"

typedef struct Compiled {
    NnCtx c;
    NnProgram *p;
    NnTrainSpec spec;
    bool ok;
} Compiled;

// Compiles `text` against data x: f32[N, 1], y: f32[N, 1]; lowers its train block if any.
static void compile(Compiled *k, const char *text)
{
    memset(k, 0, sizeof *k);
    nn_ctx_init(&k->c, NULL);
    k->c.stdlib_dir = NN_SOURCE_DIR "/stdlib";
    NnAst *ast = nn_parse(&k->c, nn_source_from_string(k->c.arena, "t.nn", text));
    if (k->c.diags.nerrors)
        return;
    k->p = nn_sema(&k->c, ast);
    if (k->c.diags.nerrors || !k->p || k->p->ntrains == 0)
        return;
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 1, .dim = {1}}},
                    {"y", NN_DT_F32, {.rank = 1, .dim = {1}}}};
    k->ok = nn_lower_train(&k->c, k->p, k->p->trains[0], f, 2, NULL, 0, &k->spec);
}

static void release(Compiled *k)
{
    nn_train_spec_fini(&k->spec);
    nn_ctx_fini(&k->c);
}

// Asserts that `text` fails with `msg` in its diagnostics (at "t.nn:LINE:COL").
static void expect_error(const char *text, const char *where, const char *msg)
{
    Compiled k;
    compile(&k, text);
    const char *d = nn_diags_text(&k.c.diags);
    cr_assert(k.c.diags.nerrors > 0, "no error for:\n%s", text);
    cr_assert(strstr(d, msg), "expected '%s' in:\n%s", msg, d);
    cr_assert(strstr(d, where), "expected the error at %s:\n%s", where, d);
    release(&k);
}

#define TAIL                                                                                       \
    "data d { x = [[1]]\n y = [[1]] }\n"                                                           \
    "model m(x: f32[N, 1]) -> f32[N, 1] = dense(x, 1)\n"                                           \
    "train m on d {\n loss = mse(output, y)\n optimizer = sgd()\n}\n"

Test(extern, a_missing_library_is_an_error_at_the_declaration)
{
    expect_error("import std\nextern \"libnnc_no_such_lib.so.7\" fn f(x: f32) -> f32\n" TAIL,
                 "t.nn:2:1: error", "extern function 'f': cannot load library "
                 "'libnnc_no_such_lib.so.7'");
}

Test(extern, a_missing_symbol_is_an_error_at_the_declaration)
{
    expect_error("import std\nextern \"libm.so.6\" fn nnc_no_such_fn(x: f32) -> f32\n" TAIL,
                 "t.nn:2:1: error", "library 'libm.so.6' has no function 'nnc_no_such_fn'");
}

Test(extern, unsupported_signatures_are_errors_at_the_declaration)
{
    expect_error("import std\nextern \"libm.so.6\" fn erff(x: f32[N]) -> f32\n" TAIL,
                 "t.nn:2:31: error", "unsupported signature for extern function 'erff': "
                 "arguments and result must be scalars");
    expect_error("import std\nextern \"libm.so.6\" fn erff(x: f32)\n" TAIL, "t.nn:2:1: error",
                 "it needs a result type");
    expect_error("import std\nextern \"libm.so.6\" fn erff(x) -> f32\n" TAIL, "t.nn:2:28: error",
                 "every argument needs a type");
    expect_error("import std\nextern \"libm.so.6\" fn erff(x: bool) -> f32\n" TAIL,
                 "t.nn:2:31: error", "must be scalars: f32 (float), f64 (double) or i32 (int)");
    expect_error("import std\nextern \"libm.so.6\" fn fmaf(a: f32, b: f32, c: f32, d: f32) -> "
                 "f32\n" TAIL, "t.nn:2:1: error", "it takes 1 to 3 arguments");
    expect_error("import std\nextern \"libm.so.6\" fn rand() -> i32\n" TAIL, "t.nn:2:1: error",
                 "it takes 1 to 3 arguments");
}

Test(extern, misplaced_derivatives_are_errors)
{
    expect_error("import std\ngrad relu(x) = 1\n" TAIL, "t.nn:2:1: error",
                 "'grad relu' declares the derivative of an extern function; 'relu' is not one");
    expect_error("import std\ngrad nope(x) = 1\n" TAIL, "t.nn:2:1: error", "'nope' is unknown");
    expect_error("import std\nextern \"libm.so.6\" fn expf(x: f32) -> f32\ngrad expf(x, y) = 1\n"
                 TAIL, "t.nn:3:1: error", "'grad expf' takes 1 argument, like 'expf'; got 2");
    expect_error("import std\nextern \"libm.so.6\" fn expf(x: f32) -> f32\ngrad expf(x) = 1\n"
                 "grad expf(x) = 2\n" TAIL, "t.nn:4:1: error",
                 "the derivative of 'expf' is declared twice");
    expect_error("import std\nextern \"libm.so.6\" fn expf(x: f32) -> f32\nderiv expf(x) = 1\n"
                 TAIL, "t.nn:3:7: error", "unexpected identifier 'expf' after 'deriv', which is "
                 "not a keyword");
    expect_error("import std\nextern \"libm.so.6\" fn expf(x: f32) -> f32\n"
                 "grad expf(x) { return 1 }\n" TAIL, "t.nn:3:1: error",
                 "a derivative is declared as grad expf(...) = EXPR");
}

Test(extern, bad_calls_are_errors_at_the_call)
{
    const char *head = "import std\nextern \"libm.so.6\" fn expf(x: f32) -> f32\n"
                       "grad expf(x) = expf(x)\n"
                       "data d { x = [[1]]\n y = [[1]] }\n";
    char text[1024];
    snprintf(text, sizeof text, "%smodel m(x: f32[N, 1]) -> f32[N, 1] = expf(dense(x, 1), 2)\n"
             "train m on d {\n loss = mse(output, y)\n optimizer = sgd()\n}\n", head);
    expect_error(text, "t.nn:6:", "extern function 'expf' takes 1 argument, got more");
    snprintf(text, sizeof text, "%smodel m(x: f32[N, 1]) -> f32[N, 1] = expf(f64(dense(x, 1)))\n"
             "train m on d {\n loss = mse(output, y)\n optimizer = sgd()\n}\n", head);
    expect_error(text, "t.nn:6:38: error", "argument 'x' of extern function 'expf' must be f32 "
                 "(a C float) or a tensor of them, got f64[N, 1]");
    snprintf(text, sizeof text, "%smodel m(x: f32[N, 1]) -> f32[N, 1] = expf(y = dense(x, 1))\n"
             "train m on d {\n loss = mse(output, y)\n optimizer = sgd()\n}\n", head);
    expect_error(text, "t.nn:6:", "extern function 'expf' has no argument 'y'");
}

Test(extern, differentiating_without_a_derivative_is_an_error_at_the_call)
{
    expect_error("import std\nextern \"libm.so.6\" fn expf(x: f32) -> f32\n"
                 "data d { x = [[1]]\n y = [[1]] }\n"
                 "model m(x: f32[N, 1]) -> f32[N, 1] = expf(dense(x, 1))\n"
                 "train m on d {\n loss = mse(output, y)\n optimizer = sgd()\n}\n",
                 "t.nn:5:38: error",
                 "cannot differentiate through extern function 'expf': it has no declared "
                 "derivative");
}

static void init_vars(const NnTrainSpec *s, NnVars *vars, uint64_t seed)
{
    nnrt_vars_init(vars);
    for (int i = 0; i < s->nvars; i++) {
        const NnParamInit *v = &s->vars[i];
        NnTensor *t = nnrt_tensor_new(v->dtype, v->shape.rank, v->shape.dim);
        cr_assert_eq(nnrt_init_fill(t, v->init, v->args, v->nargs, seed, v->name), NN_OK);
        nnrt_vars_put(vars, v->name, t);
    }
}

enum { NS = 5 };
static const float xs[NS] = {-1.5f, -0.4f, 0.1f, 0.7f, 1.9f};
static const float ys[NS] = {0.3f, -0.2f, 0.5f, 0.1f, -0.6f};

// The eval graph's loss at the current weights.
static double eval_loss(const NnBackend *be, NnExec *ev, NnVars *vars, NnTensor **in)
{
    NnTensor *out[2];
    cr_assert_eq(be->run(ev, vars, in, out), NN_OK, "%s", nnrt_errmsg());
    return nnrt_tensor_get(out[0], 0);
}

// Loss mse(f(x * w + b), y) through extern f with a declared derivative: the
// step's gradient (sgd with lr = 1: the change of each weight) against central
// differences of the eval graph's loss.
static void gradient_matches_differences(const NnBackend *be, const char *decls,
                                         const char *call)
{
    char text[2048];
    snprintf(text, sizeof text,
             "import std\n%s\n"
             "data d { x = [[1]]\n y = [[1]] }\n"
             "model m(x: f32[N, 1]) -> f32[N, 1] {\n"
             "    param w: f32[1, 1] = uniform(0.5, 1.5)\n"
             "    param b: f32[1] = uniform(-0.5, 0.5)\n"
             "    return %s\n}\n"
             "train m on d {\n loss = mse(output, y)\n optimizer = sgd(lr = 1)\n}\n",
             decls, call);
    Compiled k;
    compile(&k, text);
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    NnVars vars;
    init_vars(&k.spec, &vars, 7);
    // As nnc runs them: optimized, and on the JIT fused (an EXTERN in a
    // matmul epilogue, whose strings must outlive the pre-fusion graph).
    NnPassOptions po = {.stop = strcmp(be->name, "interp") == 0 ? "opt" : "fused"};
    k.spec.step = nn_passes_run(k.spec.step, &po);
    k.spec.eval = nn_passes_run(k.spec.eval, &po);
    NnExecOptions eo = {.threads = 1};
    NnExec *st = be->prepare(k.spec.step, &eo), *ev = be->prepare(k.spec.eval, &eo);
    cr_assert(st && ev, "%s", nnrt_errmsg());
    int64_t shape[2] = {NS, 1};
    NnTensor *x = nnrt_tensor_new(NN_DT_F32, 2, shape), *y = nnrt_tensor_new(NN_DT_F32, 2, shape);
    for (int i = 0; i < NS; i++) {
        nnrt_tensor_set(x, i, xs[i]);
        nnrt_tensor_set(y, i, ys[i]);
    }
    NnTensor *in[2] = {x, y}, *out[2];
    const char *names[2] = {"m.w", "m.b"};
    double numeric[2], before[2];
    for (int p = 0; p < 2; p++) {
        NnTensor *t = nnrt_vars_get(&vars, names[p]);
        double w0 = before[p] = nnrt_tensor_get(t, 0), h = 1e-3;
        nnrt_tensor_set(t, 0, w0 + h);
        double lp = eval_loss(be, ev, &vars, in);
        nnrt_tensor_set(t, 0, w0 - h);
        double lm = eval_loss(be, ev, &vars, in);
        nnrt_tensor_set(t, 0, w0);
        numeric[p] = (lp - lm) / (2 * h);
    }
    cr_assert_eq(be->run(st, &vars, in, out), NN_OK, "%s", nnrt_errmsg());
    for (int p = 0; p < 2; p++) {
        double analytic = before[p] - nnrt_tensor_get(nnrt_vars_get(&vars, names[p]), 0);
        cr_assert(fabs(analytic - numeric[p]) <= 2e-3 * (1 + fabs(numeric[p])),
                  "%s on %s: d loss / d %s = %g, finite differences %g", call, be->name,
                  names[p], analytic, numeric[p]);
        cr_assert(fabs(numeric[p]) > 1e-3, "a gradient that could be wrong: %g", numeric[p]);
    }
    be->free(st);
    be->free(ev);
    nnrt_tensor_free(x);
    nnrt_tensor_free(y);
    nnrt_vars_fini(&vars);
    release(&k);
}

static void gradients(const NnBackend *be)
{
    gradient_matches_differences(be, "", "erff(x @ w + b)");
    gradient_matches_differences(be,
                                 "extern \"libm.so.6\" fn atanf(x: f32) -> f32\n"
                                 "grad atanf(x) = 1 / (1 + x * x)",
                                 "atanf(x @ w + b) * 2");
    // Two arguments, a list of partial derivatives, broadcasting a [1] bias.
    gradient_matches_differences(be,
                                 "extern \"libm.so.6\" fn atan2f(y: f32, x: f32) -> f32\n"
                                 "grad atan2f(y, x) = [x / (x * x + y * y), -y / (x * x + y * y)]",
                                 "atan2f(x @ w, b + 2)");
}

Test(extern, gradients_through_declared_derivatives_match_differences_interp)
{
    gradients(&nn_backend_interp);
}

Test(extern, gradients_through_declared_derivatives_match_differences_jit)
{
#ifdef NN_WITH_LLVM
    gradients(&nn_backend_jit);
#else
    cr_skip_test("built without LLVM");
#endif
}

// gelu(x) from the stdlib (through erff) against 0.5 x (1 + erf(x / sqrt 2)).
static void gelu_closed_form(const NnBackend *be)
{
    Compiled k;
    compile(&k, "import std\n"
                "data d { x = [[1]]\n y = [[1]] }\n"
                "model m(x: f32[N, 1]) -> f32[N, 1] = gelu(x) + 0 * dense(x, 1)\n"
                "train m on d {\n loss = mse(output, y)\n optimizer = sgd()\n}\n");
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    NnVars vars;
    init_vars(&k.spec, &vars, 1);
    NnExecOptions eo = {.threads = 1};
    NnExec *ev = be->prepare(k.spec.eval, &eo);
    cr_assert(ev, "%s", nnrt_errmsg());
    enum { N = 9 };
    const float v[N] = {-4, -2.5f, -1, -0.3f, 0, 0.2f, 1, 2.2f, 5};
    int64_t shape[2] = {N, 1};
    NnTensor *x = nnrt_tensor_new(NN_DT_F32, 2, shape), *y = nnrt_tensor_new(NN_DT_F32, 2, shape);
    for (int i = 0; i < N; i++)
        nnrt_tensor_set(x, i, v[i]);
    NnTensor *in[2] = {x, y}, *out[2];
    cr_assert_eq(be->run(ev, &vars, in, out), NN_OK, "%s", nnrt_errmsg());
    for (int i = 0; i < N; i++) {
        double want = 0.5 * v[i] * (1 + erf(v[i] / sqrt(2.0)));
        double got = nnrt_tensor_get(out[1], i);
        cr_assert(fabs(got - want) <= 1e-6 * (1 + fabs(want)), "%s: gelu(%g) = %.9g, want %.9g",
                  be->name, v[i], got, want);
    }
    be->free(ev);
    nnrt_tensor_free(x);
    nnrt_tensor_free(y);
    nnrt_vars_fini(&vars);
    release(&k);
}

Test(extern, gelu_matches_its_closed_form_interp) { gelu_closed_form(&nn_backend_interp); }

Test(extern, gelu_matches_its_closed_form_jit)
{
#ifdef NN_WITH_LLVM
    gelu_closed_form(&nn_backend_jit);
#else
    cr_skip_test("built without LLVM");
#endif
}
