// Run-time hyperparameters and learning-rate schedules: optimizer numbers are
// scalars the compiled step reads ("hyper/lr"), so a new learning rate takes
// effect in the same prepared step with no compile; the stdlib schedules give
// the learning rates computed here by hand, step by step, on both backends.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ast.h"
#include "backend.h"
#include "init.h"
#include "lower.h"
#include "sema.h"

typedef struct Compiled {
    NnCtx c;
    NnProgram *p;
    NnTrainSpec spec;
    bool ok;
} Compiled;

// The one-weight model y = x @ w on x = 2, y = 1 from w = 1, trained by `optimizer`.
static void compile(Compiled *k, const char *optimizer, int epochs)
{
    char body[1024];
    snprintf(body, sizeof body,
             "import std\n"
             "model lin(x: f32[N, 1]) -> f32[N, 1] {\n"
             "    param w: f32[1, 1] = ones()\n"
             "    return x @ w\n}\n"
             "data d { x = [[2]]\n y = [[1]] }\n"
             "train lin on d {\n loss = mse(output, y)\n optimizer = %s\n epochs = %d\n}\n",
             optimizer, epochs);
    memset(k, 0, sizeof *k);
    nn_ctx_init(&k->c, NULL);
    k->c.stdlib_dir = NN_SOURCE_DIR "/stdlib";
    NnSource *src = nn_source_from_string(k->c.arena, "t.nn", body);
    NnAst *ast = nn_parse(&k->c, src);
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

static void init_vars(const NnTrainSpec *s, NnVars *vars)
{
    nnrt_vars_init(vars);
    for (int i = 0; i < s->nvars; i++) {
        const NnParamInit *v = &s->vars[i];
        NnTensor *t = nnrt_tensor_new(v->dtype, v->shape.rank, v->shape.dim);
        cr_assert_eq(nnrt_init_fill(t, v->init, v->args, v->nargs, 1, v->name), NN_OK);
        nnrt_vars_put(vars, v->name, t);
    }
}

static int nprepared;

static NnExec *counting_prepare(const NnGraph *g, const NnExecOptions *o, const NnBackend *be)
{
    nprepared++;
    return be->prepare(g, o);
}

// d/dw (2w - 1)^2
static double grad_at(double w) { return 4 * (2 * w - 1); }

// One sgd step at a time on `be`: the learning rate changes between steps
// through nn_train_set_hyper, and the one prepared step follows it.
static void lr_changes_without_compiling(const NnBackend *be)
{
    Compiled k;
    compile(&k, "sgd(lr = 0.1)", 1);
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    bool found = false;
    for (int i = 0; i < k.spec.nvars; i++)
        found = found || (k.spec.vars[i].hyper && !strcmp(k.spec.vars[i].name, "hyper/lr") &&
                          !k.spec.vars[i].trainable);
    cr_assert(found, "the learning rate is the run-time scalar hyper/lr");
    NnVars vars;
    init_vars(&k.spec, &vars);
    nprepared = 0;
    NnExecOptions eo = {.threads = 1};
    NnExec *x = counting_prepare(k.spec.step, &eo, be);
    cr_assert(x, "%s", nnrt_errmsg());
    int64_t shape[2] = {1, 1};
    NnTensor *xi = nnrt_tensor_new(NN_DT_F32, 2, shape), *yi = nnrt_tensor_new(NN_DT_F32, 2, shape);
    nnrt_tensor_set(xi, 0, 2);
    nnrt_tensor_set(yi, 0, 1);
    NnTensor *in[2] = {xi, yi}, *out[2];
    int lr_out = -1;
    for (int i = 0; i < k.spec.step->noutputs; i++)
        if (!strcmp(k.spec.step->outputs[i].name, "lr"))
            lr_out = i;
    cr_assert(lr_out >= 0, "the step reports the learning rate it used");
    const double lrs[] = {0.1, 0.25, 0.01, 0.1};
    double ref = 1;
    for (int s = 0; s < 4; s++) {
        if (s > 0)
            cr_assert_eq(nn_train_set_hyper(&k.spec, &vars, "lr", lrs[s]), 1);
        cr_assert_eq(be->run(x, &vars, in, out), NN_OK, "%s", nnrt_errmsg());
        ref -= lrs[s] * grad_at(ref);
        double w = nnrt_tensor_get(nnrt_vars_get(&vars, "lin.w"), 0);
        cr_assert_float_eq(w, ref, 1e-5, "%s step %d: w %g, want %g", be->name, s + 1, w, ref);
        cr_assert_float_eq(nnrt_tensor_get(out[lr_out], 0), lrs[s], 1e-7);
    }
    cr_assert_eq(nprepared, 1, "no step was compiled again");
    cr_assert_eq(nn_train_set_hyper(&k.spec, &vars, "no_such", 1), 0);
    be->free(x);
    nnrt_tensor_free(xi);
    nnrt_tensor_free(yi);
    nnrt_vars_fini(&vars);
    release(&k);
}

Test(hyper, lr_changes_without_compiling_interp)
{
    lr_changes_without_compiling(&nn_backend_interp);
}

Test(hyper, lr_changes_without_compiling_jit)
{
#ifdef NN_WITH_LLVM
    lr_changes_without_compiling(&nn_backend_jit);
#else
    cr_skip_test("built without LLVM");
#endif
}

Test(hyper, every_adam_number_is_run_time_but_clip)
{
    Compiled k;
    compile(&k, "adam(lr = 0.01, beta1 = 0.8, clip = 1)", 1);
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    const char *want[] = {"hyper/lr", "hyper/beta1", "hyper/beta2", "hyper/eps",
                          "hyper/weight_decay"};
    for (int j = 0; j < 5; j++) {
        bool found = false;
        for (int i = 0; i < k.spec.nvars; i++)
            if (!strcmp(k.spec.vars[i].name, want[j])) {
                found = k.spec.vars[i].hyper;
                cr_assert_str_eq(k.spec.vars[i].init, "constant");
                if (j == 1)
                    cr_assert_float_eq(k.spec.vars[i].args[0], 0.8, 1e-12);
            }
        cr_assert(found, "%s is a run-time hyperparameter", want[j]);
    }
    for (int i = 0; i < k.spec.nvars; i++)
        cr_assert(strcmp(k.spec.vars[i].name, "hyper/clip"),
                  "clip (declared float) decides at compile time whether to clip");
    release(&k);
}

// The learning rates that `optimizer` (a schedule) gives over `steps` steps of
// a run of `epochs` one-batch epochs, read from the step's "lr" output.
static void schedule_lrs(const NnBackend *be, const char *optimizer, int epochs, double *lr)
{
    Compiled k;
    compile(&k, optimizer, epochs);
    cr_assert(k.ok, "%s: %s", optimizer, nn_diags_text(&k.c.diags));
    NnVars vars;
    init_vars(&k.spec, &vars);
    nn_train_set_total_steps(&k.spec, &vars, 1);
    NnExecOptions eo = {.threads = 1};
    NnExec *x = be->prepare(k.spec.step, &eo);
    cr_assert(x, "%s", nnrt_errmsg());
    int64_t shape[2] = {1, 1};
    NnTensor *xi = nnrt_tensor_new(NN_DT_F32, 2, shape), *yi = nnrt_tensor_new(NN_DT_F32, 2, shape);
    NnTensor *in[2] = {xi, yi}, *out[2];
    int lr_out = -1;
    for (int i = 0; i < k.spec.step->noutputs; i++)
        if (!strcmp(k.spec.step->outputs[i].name, "lr"))
            lr_out = i;
    cr_assert(lr_out >= 0);
    for (int s = 0; s < epochs; s++) {
        cr_assert_eq(be->run(x, &vars, in, out), NN_OK, "%s", nnrt_errmsg());
        lr[s] = nnrt_tensor_get(out[lr_out], 0);
    }
    be->free(x);
    nnrt_tensor_free(xi);
    nnrt_tensor_free(yi);
    nnrt_vars_fini(&vars);
    release(&k);
}

#define PI 3.141592653589793

static void check_schedules(const NnBackend *be)
{
    enum { T = 10 };
    double lr[T];
    // constant(0.3): 0.3 at every step.
    schedule_lrs(be, "sgd(lr = constant(0.3))", T, lr);
    for (int s = 0; s < T; s++)
        cr_assert_float_eq(lr[s], 0.3, 1e-7, "constant, step %d: %g", s + 1, lr[s]);
    // step_decay(0.1, every = 3, factor = 0.5): 0.1 0.1 0.1 0.05 0.05 0.05 0.025 ...
    schedule_lrs(be, "sgd(lr = step_decay(0.1, every = 3, factor = 0.5))", T, lr);
    const double decay[T] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125};
    for (int s = 0; s < T; s++)
        cr_assert_float_eq(lr[s], decay[s], 1e-7, "step_decay, step %d: %g", s + 1, lr[s]);
    // exponential(0.1, 0.5, every = 2): 0.1 * 0.5^((s - 1) / 2).
    schedule_lrs(be, "sgd(lr = exponential(0.1, 0.5, every = 2))", T, lr);
    for (int s = 1; s <= T; s++)
        cr_assert_float_eq(lr[s - 1], 0.1 * pow(0.5, (s - 1) / 2.0), 1e-7,
                           "exponential, step %d: %g", s, lr[s - 1]);
    // cosine(0.1, warmup = 2) over 10 steps: 0.05, 0.1, then a half cosine
    // reaching 0 at step 10: 0.05 * (1 + cos(pi * (s - 2) / 8)).
    schedule_lrs(be, "adam(lr = cosine(0.1, warmup = 2))", T, lr);
    cr_assert_float_eq(lr[0], 0.05, 1e-7);
    cr_assert_float_eq(lr[1], 0.1, 1e-7);
    for (int s = 3; s <= T; s++)
        cr_assert_float_eq(lr[s - 1], 0.05 * (1 + cos(PI * (s - 2) / 8.0)), 1e-6,
                           "cosine, step %d: %g", s, lr[s - 1]);
    cr_assert_float_eq(lr[T - 1], 0, 1e-7);
    // cosine with a floor and an explicit length.
    schedule_lrs(be, "sgd(lr = cosine(1.0, total = 5, floor = 0.2))", T, lr);
    for (int s = 1; s <= T; s++) {
        double t = s >= 5 ? 1 : s / 5.0;
        cr_assert_float_eq(lr[s - 1], 0.2 + 0.8 * 0.5 * (1 + cos(PI * t)), 1e-6,
                           "cosine floor, step %d: %g", s, lr[s - 1]);
    }
    // one_cycle(0.1) over 10 steps, as torch.optim.lr_scheduler.OneCycleLR
    // (pct_start 0.3, div_factor 25, final_div_factor 1e4, cos annealing):
    // up from 0.004 to 0.1 over steps 1..3 (end_step = 3 - 1 = 2), then down
    // to 4e-7 over the remaining 7.
    schedule_lrs(be, "sgd(lr = one_cycle(0.1))", T, lr);
    double lo = 0.1 / 25, fin = lo / 1e4;
    for (int s = 1; s <= T; s++) {
        double i = s - 1, want;
        if (i <= 2)
            want = 0.1 + (lo - 0.1) / 2 * (1 + cos(PI * i / 2));
        else
            want = fin + (0.1 - fin) / 2 * (1 + cos(PI * (i - 2) / 7));
        cr_assert_float_eq(lr[s - 1], want, 1e-6, "one_cycle, step %d: %g, want %g", s,
                           lr[s - 1], want);
    }
    cr_assert_float_eq(lr[0], 0.004, 1e-7);
    cr_assert_float_eq(lr[T - 1], 4e-7, 1e-9);
}

Test(hyper, schedules_match_hand_computed_rates_interp)
{
    check_schedules(&nn_backend_interp);
}

Test(hyper, schedules_match_hand_computed_rates_jit)
{
#ifdef NN_WITH_LLVM
    check_schedules(&nn_backend_jit);
#else
    cr_skip_test("built without LLVM");
#endif
}

Test(hyper, schedule_names_outside_an_optimizer_are_unknown)
{
    Compiled k;
    memset(&k, 0, sizeof k);
    nn_ctx_init(&k.c, NULL);
    k.c.stdlib_dir = NN_SOURCE_DIR "/stdlib";
    const char *text = "import std\n"
                       "model m(x: f32[N, 1]) -> f32[N, 1] = x * cosine(1.0)\n"
                       "data d { x = [[2]]\n y = [[1]] }\n"
                       "train m on d {\n loss = mse(output, y)\n optimizer = sgd()\n}\n";
    NnAst *ast = nn_parse(&k.c, nn_source_from_string(k.c.arena, "t.nn", text));
    k.p = nn_sema(&k.c, ast);
    cr_assert_eq(k.c.diags.nerrors, 0, "%s", nn_diags_text(&k.c.diags));
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 1, .dim = {1}}},
                    {"y", NN_DT_F32, {.rank = 1, .dim = {1}}}};
    cr_assert_not(nn_lower_train(&k.c, k.p, k.p->trains[0], f, 2, NULL, 0, &k.spec));
    cr_assert(strstr(nn_diags_text(&k.c.diags), "unknown name 'step'") ||
                  strstr(nn_diags_text(&k.c.diags), "unknown name 'total_steps'"),
              "%s", nn_diags_text(&k.c.diags));
    release(&k);
}

// Dropout rates are run-time scalars too: a two-site model whose rates are
// r1 and r2 in the script ("" leaves that dropout call out), with --set sets.
static void compile_dropout(Compiled *k, const char *r1, const char *r2, NnSetting *sets,
                            int nsets)
{
    char body[1024], d1[64], d2[64];
    snprintf(d1, sizeof d1, *r1 ? "dropout(h, %s)" : "h", r1);
    snprintf(d2, sizeof d2, *r2 ? "dropout(g, %s)" : "g", r2);
    snprintf(body, sizeof body,
             "import std\n"
             "model m(x: f32[N, 8]) -> f32[N, 1] {\n"
             "    param w1: f32[8, 8] = normal(0.5)\n"
             "    param w2: f32[8, 1] = normal(0.5)\n"
             "    h = tanh(x @ w1)\n"
             "    g = %s\n"
             "    return %s @ w2\n}\n"
             "data d { x = [[1, 2, 3, 4, 5, 6, 7, 8]]\n y = [[1]] }\n"
             "train m on d {\n loss = mse(output, y)\n optimizer = sgd(lr = 0.05)\n}\n",
             d1, d2);
    memset(k, 0, sizeof *k);
    nn_ctx_init(&k->c, NULL);
    k->c.stdlib_dir = NN_SOURCE_DIR "/stdlib";
    NnAst *ast = nn_parse(&k->c, nn_source_from_string(k->c.arena, "t.nn", body));
    k->p = nn_sema(&k->c, ast);
    cr_assert_eq(k->c.diags.nerrors, 0, "%s", nn_diags_text(&k->c.diags));
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 1, .dim = {8}}},
                    {"y", NN_DT_F32, {.rank = 1, .dim = {1}}}};
    k->ok = nn_lower_train(&k->c, k->p, k->p->trains[0], f, 2, sets, nsets, &k->spec);
}

// The initial value of run-time hyperparameter `name`, or -1 if there is none.
static double hyper_init(const Compiled *k, const char *name)
{
    for (int i = 0; i < k->spec.nvars; i++)
        if (!strcmp(k->spec.vars[i].name, name))
            return k->spec.vars[i].hyper && !k->spec.vars[i].trainable ? k->spec.vars[i].args[0]
                                                                       : -2;
    return -1;
}

// Three steps of k's prepared step x on a batch of 16, then w1 and w2 into w.
static void three_steps(const Compiled *k, const NnBackend *be, NnExec *x, NnVars *vars,
                        double *w)
{
    int64_t xs[2] = {16, 8}, ys[2] = {16, 1};
    NnTensor *xi = nnrt_tensor_new(NN_DT_F32, 2, xs), *yi = nnrt_tensor_new(NN_DT_F32, 2, ys);
    for (int i = 0; i < 128; i++)
        nnrt_tensor_set(xi, i, sin(i * 0.37));
    for (int i = 0; i < 16; i++)
        nnrt_tensor_set(yi, i, cos(i * 0.9));
    NnTensor *in[2] = {xi, yi}, *out[4];
    for (int s = 0; s < 3; s++)
        cr_assert_eq(be->run(x, vars, in, out), NN_OK, "%s", nnrt_errmsg());
    for (int i = 0; i < 64; i++)
        w[i] = nnrt_tensor_get(nnrt_vars_get(vars, "m.w1"), i);
    for (int i = 0; i < 8; i++)
        w[64 + i] = nnrt_tensor_get(nnrt_vars_get(vars, "m.w2"), i);
    nnrt_tensor_free(xi);
    nnrt_tensor_free(yi);
    (void)k;
}

// The weights after three steps of the script with rates r1, r2 compiled in.
static void compiled_with(const NnBackend *be, const char *r1, const char *r2, double *w)
{
    Compiled k;
    compile_dropout(&k, r1, r2, NULL, 0);
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    NnVars vars;
    init_vars(&k.spec, &vars);
    NnExecOptions eo = {.threads = 1};
    NnExec *x = be->prepare(k.spec.step, &eo);
    cr_assert(x, "%s", nnrt_errmsg());
    three_steps(&k, be, x, &vars, w);
    be->free(x);
    nnrt_vars_fini(&vars);
    release(&k);
}

// One prepared step, its rates set between runs, against scripts compiled
// with those rates: equal weights, and rate 0 is no dropout at all.
static void dropout_changes_without_compiling(const NnBackend *be)
{
    Compiled k;
    compile_dropout(&k, "0.5", "0.2", NULL, 0);
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    cr_assert_float_eq(hyper_init(&k, "hyper/dropout1"), 0.5, 1e-12);
    cr_assert_float_eq(hyper_init(&k, "hyper/dropout2"), 0.2, 1e-12);
    NnExecOptions eo = {.threads = 1};
    nprepared = 0;
    NnExec *x = counting_prepare(k.spec.step, &eo, be);
    cr_assert(x, "%s", nnrt_errmsg());
    double got[72], want[72], first[72];
    struct { const char *key; double v; const char *r1, *r2; } runs[] = {
        {"dropout", 0.5, "0.5", "0.2"}, // the script's own rates (dropout2 reset below)
        {"dropout", 0.3, "0.3", "0.3"},
        {"dropout2", 0.7, "0.3", "0.7"},
        {"dropout", 0, "", ""},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        NnVars vars;
        init_vars(&k.spec, &vars);
        if (r > 0) {
            int want_n = strcmp(runs[r].key, "dropout") ? 1 : 2;
            if (want_n == 1)
                cr_assert_eq(nn_train_set_hyper(&k.spec, &vars, "dropout", 0.3), 2);
            cr_assert_eq(nn_train_set_hyper(&k.spec, &vars, runs[r].key, runs[r].v), want_n);
        }
        three_steps(&k, be, x, &vars, got);
        nnrt_vars_fini(&vars);
        compiled_with(be, runs[r].r1, runs[r].r2, want);
        for (int i = 0; i < 72; i++)
            cr_assert_float_eq(got[i], want[i], 1e-6, "%s, %s=%g: weight %d is %.9g, compiled "
                               "with the rate %.9g", be->name, runs[r].key, runs[r].v, i, got[i],
                               want[i]);
        if (r == 0)
            memcpy(first, got, sizeof first);
    }
    bool differs = false;
    for (int i = 0; i < 72; i++)
        differs = differs || got[i] != first[i];
    cr_assert(differs, "the rates changed what the steps did");
    cr_assert_eq(nprepared, 1, "no step was compiled again");
    cr_assert_eq(nn_train_set_hyper(&k.spec, NULL, "dropout3", 0.1), 0, "two sites, not three");
    be->free(x);
    release(&k);
}

Test(hyper, dropout_changes_without_compiling_interp)
{
    dropout_changes_without_compiling(&nn_backend_interp);
}

Test(hyper, dropout_changes_without_compiling_jit)
{
#ifdef NN_WITH_LLVM
    dropout_changes_without_compiling(&nn_backend_jit);
#else
    cr_skip_test("built without LLVM");
#endif
}

// --set dropout=R sets every site's starting rate, dropoutK one site's; a bad
// rate or a site the model lacks is a diagnostic.
Test(hyper, dropout_rates_from_set)
{
    Compiled k;
    NnSetting all[1] = {{"dropout", "0.25", false, {0}}};
    compile_dropout(&k, "0.5", "0.2", all, 1);
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    cr_assert_float_eq(hyper_init(&k, "hyper/dropout1"), 0.25, 1e-12);
    cr_assert_float_eq(hyper_init(&k, "hyper/dropout2"), 0.25, 1e-12);
    release(&k);
    NnSetting one[1] = {{"dropout2", "0", false, {0}}};
    compile_dropout(&k, "0.5", "0.2", one, 1);
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    cr_assert_float_eq(hyper_init(&k, "hyper/dropout1"), 0.5, 1e-12);
    cr_assert_float_eq(hyper_init(&k, "hyper/dropout2"), 0, 1e-12);
    release(&k);
    // A site written with rate 0 is still a site, to raise later.
    compile_dropout(&k, "0", "", NULL, 0);
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    cr_assert_float_eq(hyper_init(&k, "hyper/dropout1"), 0, 1e-12);
    cr_assert_eq(hyper_init(&k, "hyper/dropout2"), -1);
    release(&k);
    struct { const char *key, *value, *msg; } bad[] = {
        {"dropout", "1", "--set dropout=1: a dropout rate is a number in [0, 1)"},
        {"dropout1", "-0.1", "--set dropout1=-0.1: a dropout rate is a number in [0, 1)"},
        {"dropout", "x", "--set dropout=x: a dropout rate is a number in [0, 1)"},
        {"dropout3", "0.1", "--set dropout3=0.1: model 'm' has no dropout call number 3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        NnSetting s[1] = {{bad[i].key, bad[i].value, false, {0}}};
        compile_dropout(&k, "0.5", "0.2", s, 1);
        cr_assert_not(k.ok, "%s=%s", bad[i].key, bad[i].value);
        cr_assert(strstr(nn_diags_text(&k.c.diags), bad[i].msg), "%s",
                  nn_diags_text(&k.c.diags));
        release(&k);
    }
    NnSetting s[1] = {{"dropout", "0.1", false, {0}}};
    compile_dropout(&k, "", "", s, 1);
    cr_assert_not(k.ok);
    cr_assert(strstr(nn_diags_text(&k.c.diags), "--set dropout=0.1: model 'm' has no dropout"),
              "%s", nn_diags_text(&k.c.diags));
    release(&k);
}
