// A train block becomes one step graph: the model's forward pass and the
// loss, the gradient of the loss w.r.t. every parameter (ir/autodiff.c), and
// the optimizer's update rule instantiated once per parameter, all in one
// graph. Also an eval graph (no dropout, no updates) and a forward graph
// (stage "ir"). Settings (batch, epochs, ...) are read here, with --set
// overrides applied. A block with `step` blocks (two-player training, GANs)
// becomes one such graph per step instead: each differentiates its own loss
// but updates only the parameters of the models it names, with its own
// optimizer state and step counter; `noise` declarations are random inputs
// drawn afresh on every run of a step.
#include "elab.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "dist.h"

typedef struct TrainEnv {
    Lower *L;
    const NnField *fields;
    int nfields;
    NnId *inputs;        // INPUT node per field
    const NnAst *model;
    const NnAst *data;   // the data block, or NULL
    Val output;          // model output, computed on first use of `output`
    bool have_output;
    const NnId *grads;   // every parameter's gradient, once the optimizer runs
    int ngrads;
    NnId grad_norm;      // their global L2 norm, built on first use of `grad_norm`; -1 before
    NnAst *const *noise; // NOISE declarations of the block
    int nnoise;
    NnId *noise_ids;     // RAND node per noise, made on first use; -1 before
    int step_index;      // which step the graph is for (noise streams differ per step)
    const char *hprefix; // run-time hyperparameters' name prefix: "" or "disc/"
    bool optimizing;     // evaluating the optimizer: `step` and `total_steps` exist
} TrainEnv;

// A run-time hyperparameter: a scalar f32 STATE named "hyper/NAME" ("disc/hyper/NAME"
// in a block of steps) that the step reads and never updates, starting at v. The
// caller may set it before any run, so changing it compiles nothing.
NnId hyper_var(Lower *L, const char *prefix, const char *name, double v, NnLoc loc)
{
    NnShape scalar = {0};
    const char *vname = nn_arena_printf(L->c->arena, "%shyper/%s", prefix, name);
    NnId id = make_var(L, NN_OP_STATE, vname, NN_DT_F32, &scalar, "constant", &v, 1, loc);
    for (int i = 0; id >= 0 && i < L->nvars; i++)
        if (L->var_ids[i] == id)
            L->vars[i].hyper = true;
    return id;
}

// The L2 norm of all gradients together (f32), for clipping by global norm.
static NnId global_norm(Lower *L, const NnId *grads, int n, NnLoc loc)
{
    NnGraph *g = L->g;
    NnId norm = nn_ir_const(g, 0, NN_DT_F32, loc);
    for (int i = 0; i < n; i++) {
        NnId sq = nn_ir_binary(g, NN_OP_MUL, grads[i], grads[i], loc);
        int rank = nn_node(g, sq)->shape.rank;
        NnId ss = rank ? nn_ir_reduce(g, NN_OP_REDUCE_SUM, sq, (1u << rank) - 1, false, loc) : sq;
        if (nn_node(g, ss)->dtype != NN_DT_F32)
            ss = nn_ir_cast(g, ss, NN_DT_F32, loc);
        norm = nn_ir_binary(g, NN_OP_ADD, norm, ss, loc);
    }
    return nn_ir_unary(g, NN_OP_SQRT, norm, loc);
}

// The number argument `name` (or position k) of a noise initializer call.
static double noise_arg(const NnAst *call, const char *name, int k, double dflt)
{
    for (int i = 0; i < call->kids.count; i++) {
        const NnAst *a = call->kids.items[i];
        const NnAst *v = a->kind == NN_AST_ARG ? a->a : a;
        if ((a->kind == NN_AST_ARG && !strcmp(a->name, name)) || (a->kind != NN_AST_ARG && i == k))
            return v->kind == NN_AST_UNARY ? -v->a->num : v->num;
    }
    return dflt;
}

// A noise input: a [N, ...] RAND node whose counter is the step's own, so
// every run of the step (each `repeat` included) draws afresh, and whose seed
// mixes the run's seed, the noise's name and the step: reproducible by seed.
static Val noise_value(TrainEnv *T, int i, NnLoc loc)
{
    if (T->noise_ids[i] >= 0)
        return v_tensor(T->noise_ids[i]);
    Lower *L = T->L;
    const NnAst *nz = T->noise[i], *t = nz->type, *init = nz->a;
    NnAttr a = {0};
    a.dtype = NN_DT_F32;
    a.shape.rank = t->kids.count;
    a.shape.dim[0] = nn_sym_dim(L->g, "N");
    for (int k = 1; k < a.shape.rank; k++)
        a.shape.dim[k] = (int64_t)t->kids.items[k]->num;
    uint64_t h = 1469598103934665603ull;
    for (const char *q = nz->name; *q; q++)
        h = (h ^ (unsigned char)*q) * 1099511628211ull;
    a.seed = L->seed * 1000003u + h + (uint64_t)T->step_index * 0x9e3779b97f4a7c15ull;
    bool normal = !strcmp(init->a->name, "normal");
    NnId step = L->step >= 0 ? L->step : nn_ir_const(L->g, 0, NN_DT_F32, loc);
    NnId r = checked(L, nn_ir_add(L->g, normal ? NN_OP_RAND_NORMAL : NN_OP_RAND_UNIFORM, &step,
                                  1, &a, nz->loc), nz->loc);
    double p = noise_arg(init, normal ? "mean" : "lo", 0, 0);
    double q = noise_arg(init, normal ? "std" : "hi", 1, 1);
    double scale = normal ? q : q - p;
    if (r >= 0 && scale != 1)
        r = nn_ir_binary(L->g, NN_OP_MUL, r, nn_ir_const(L->g, scale, NN_DT_F32, loc), loc);
    if (r >= 0 && p != 0)
        r = nn_ir_binary(L->g, NN_OP_ADD, r, nn_ir_const(L->g, p, NN_DT_F32, loc), loc);
    T->noise_ids[i] = r;
    return r >= 0 ? v_tensor(r) : v_none();
}

// Where a data field gets its value: the last `name = ...` of the data block,
// else the block's first statement (a loader such as `train = idx(...)`).
static NnLoc field_loc(const NnAst *data, const char *name)
{
    if (!data)
        return (NnLoc){0};
    const NnAst *at = data->kids.count ? data->kids.items[0] : data;
    for (int i = 0; i < data->kids.count; i++) {
        const NnAst *s = data->kids.items[i];
        if (s->kind == NN_AST_ASSIGN && s->kids.count == 1 && s->kids.items[0]->name &&
            strcmp(s->kids.items[0]->name, name) == 0)
            at = s;
    }
    return at->loc;
}

static Val model_output(TrainEnv *T)
{
    const NnAst *m = T->model;
    Arg *args = nn_arena_alloc(T->L->c->arena, (size_t)(m->params.count + 1) * sizeof *args);
    for (int i = 0; i < m->params.count; i++) {
        const char *name = m->params.items[i]->name;
        int k = -1;
        for (int j = 0; j < T->nfields; j++)
            if (strcmp(T->fields[j].name, name) == 0)
                k = j;
        if (k < 0 && i == 0)
            k = 0; // the model's first input is the data's x, whatever its name
        if (k < 0) {
            nn_error(&T->L->c->diags, m->params.items[i]->loc,
                     "model '%s' takes '%s', but the data has no field '%s'", m->name, name, name);
            return v_none();
        }
        // A wrong input type is the model header's or the data's mistake, not
        // the line that first used `output`.
        const NnAst *f = m->params.items[i];
        args[i] = (Arg){name, v_tensor(T->inputs[k]), f->type ? f->type->loc : f->loc,
                        field_loc(T->data, T->fields[k].name), T->fields[k].name};
    }
    return call_decl(T->L, m, args, m->params.count, m->loc, m->name);
}

// Where data field `name` is made, for notes (resolve's names only).
static NnLoc origin(void *ctx, const char *name)
{
    TrainEnv *T = ctx;
    for (int i = 0; i < T->nfields; i++)
        if (strcmp(T->fields[i].name, name) == 0 || (i == 1 && strcmp(name, "y") == 0))
            return field_loc(T->data, T->fields[i].name);
    return (NnLoc){0};
}

static bool resolve(void *ctx, const char *name, NnLoc loc, Val *out)
{
    TrainEnv *T = ctx;
    if (strcmp(name, "output") == 0) {
        if (!T->have_output) {
            T->output = model_output(T);
            T->have_output = true;
        }
        *out = T->output;
        return true;
    }
    // Learning-rate schedules (stdlib/schedules.nn) are functions of the
    // step (counting from 1) and of the run's length in steps.
    if (strcmp(name, "step") == 0 && T->optimizing) {
        *out = v_tensor(T->L->step);
        return true;
    }
    if (strcmp(name, "total_steps") == 0 && T->optimizing) {
        NnId id = hyper_var(T->L, T->hprefix, "total_steps", 1, loc);
        *out = id >= 0 ? v_tensor(id) : v_none();
        return true;
    }
    if (strcmp(name, "grad_norm") == 0 && T->ngrads > 0) {
        if (T->grad_norm < 0)
            T->grad_norm = global_norm(T->L, T->grads, T->ngrads, loc);
        *out = v_tensor(T->grad_norm);
        return true;
    }
    for (int i = 0; i < T->nfields; i++)
        if (strcmp(T->fields[i].name, name) == 0 || (i == 1 && strcmp(name, "y") == 0)) {
            *out = v_tensor(T->inputs[i]);
            return true;
        }
    for (int i = 0; i < T->nnoise; i++)
        if (strcmp(T->noise[i]->name, name) == 0) {
            *out = noise_value(T, i, loc);
            return true;
        }
    return false;
}

typedef struct Settings {
    const NnAst *loss, *optimizer;
    int64_t batch, epochs, limit, eval_limit, patience;
    uint64_t seed;
    const char *save, *stop;
    const char **metrics;
    const NnAst **metric_asts; // where each metric is named, for diagnostics
    int nmetrics;
    const NnAst *stop_ast;
    const NnAst *augment;
    NnAst **noise; // NOISE declarations
    int nnoise;
    const bool *plain; // block of steps: which --set options were plain settings
    const NnAst *data; // the data block named by the train block, or NULL
} Settings;

// One step of a train block: the loss it differentiates and the parameters
// it updates. A plain block is one step with no name that updates them all.
typedef struct StepCfg {
    const NnAst *ast;       // the STEP node; NULL for a plain block
    const char *name;       // NULL for a plain block
    const NnAst *loss, *optimizer, *params;
    int64_t repeat;
    const char **models;    // the step updates the parameters of these models
    const NnAst **model_at; // where each is named
    int nmodels;
    int index;              // declaration order
} StepCfg;

static const char *const setting_names[] = {"loss", "optimizer", "batch", "epochs", "seed",
                                            "limit", "metrics", "stop", "save", "augment",
                                            "eval_limit"};
#define NSETTINGS (int)(sizeof setting_names / sizeof setting_names[0])

// Largest values of the integer settings. Batch, epochs and patience end up in
// int-sized runtime fields; limit and seed, written as numbers in a script,
// are exact only up to 2^53.
#define MAX_INT32 2147483647LL
#define MAX_EXACT 9007199254740992LL

static bool int_setting(NnCtx *c, const NnAst *v, int64_t *out, int64_t min, int64_t max)
{
    if (v->kind != NN_AST_NUM || !v->is_int || v->num < (double)min || v->num > (double)max) {
        nn_error(&c->diags, v->loc, "expected an integer from %lld to %lld", (long long)min,
                 (long long)max);
        return false;
    }
    *out = (int64_t)v->num;
    return true;
}

static bool read_setting(NnCtx *c, Settings *s, const NnAst *a)
{
    const NnAst *v = a->a;
    const char *k = a->name;
    if (strcmp(k, "loss") == 0)
        s->loss = v;
    else if (strcmp(k, "optimizer") == 0)
        s->optimizer = v;
    else if (strcmp(k, "batch") == 0)
        return int_setting(c, v, &s->batch, 1, MAX_INT32);
    else if (strcmp(k, "epochs") == 0)
        return int_setting(c, v, &s->epochs, 0, MAX_INT32);
    else if (strcmp(k, "limit") == 0)
        return int_setting(c, v, &s->limit, 0, MAX_EXACT);
    else if (strcmp(k, "eval_limit") == 0)
        return int_setting(c, v, &s->eval_limit, 0, MAX_EXACT);
    else if (strcmp(k, "seed") == 0) {
        int64_t seed;
        if (!int_setting(c, v, &seed, 0, MAX_EXACT))
            return false;
        s->seed = (uint64_t)seed;
    } else if (strcmp(k, "save") == 0) {
        if (v->kind != NN_AST_STR || !*v->str) {
            nn_error(&c->diags, v->loc, "save expects a file name in quotes");
            return false;
        }
        s->save = v->str;
    } else if (strcmp(k, "metrics") == 0) {
        if (v->kind != NN_AST_LIST) {
            nn_error(&c->diags, v->loc, "metrics expects a list such as [accuracy, f1]");
            return false;
        }
        s->metrics = nn_arena_alloc(c->arena, (size_t)(v->kids.count + 1) * sizeof(char *));
        s->metric_asts = nn_arena_alloc(c->arena, (size_t)(v->kids.count + 1) * sizeof(NnAst *));
        for (int i = 0; i < v->kids.count; i++) {
            const NnAst *m = v->kids.items[i];
            static const char *known[] = {"loss", "accuracy", "precision", "recall", "f1",
                                          "confusion", "mse"};
            bool ok = m->kind == NN_AST_NAME;
            for (size_t j = 0; ok && j < sizeof known / sizeof known[0]; j++)
                if (strcmp(m->name, known[j]) == 0)
                    goto found;
            nn_error(&c->diags, m->loc, "unknown metric; known metrics are loss, accuracy, "
                     "precision, recall, f1, confusion and mse");
            return false;
        found:
            s->metric_asts[s->nmetrics] = m;
            s->metrics[s->nmetrics++] = m->name;
        }
    } else if (strcmp(k, "stop") == 0) {
        // stop = early(val.accuracy, patience = 3)
        if (v->kind != NN_AST_CALL || v->a->kind != NN_AST_NAME || strcmp(v->a->name, "early") ||
            v->kids.count < 1 || v->kids.items[0]->kind != NN_AST_FIELD ||
            v->kids.items[0]->a->kind != NN_AST_NAME) {
            nn_error(&c->diags, v->loc, "stop expects early(val.METRIC, patience = K)");
            return false;
        }
        const NnAst *f = v->kids.items[0];
        static const char *const splits[] = {"val", "train"};
        static const char *const metrics[] = {"loss", "accuracy", "acc", "precision", "recall",
                                              "f1", "mse"};
        bool split_ok = false, metric_ok = false;
        for (int i = 0; i < 2; i++)
            split_ok = split_ok || !strcmp(f->a->name, splits[i]);
        for (int i = 0; i < 7; i++)
            metric_ok = metric_ok || !strcmp(f->name, metrics[i]);
        if (!split_ok || !metric_ok) {
            const char *near = split_ok ? nn_sema_suggest(NULL, f->name, metrics, 7)
                                        : nn_sema_suggest(NULL, f->a->name, splits, 2);
            nn_error(&c->diags, f->loc, "early stopping watches val.METRIC or train.loss; "
                     "'%s' is not a %s%s", split_ok ? f->name : f->a->name,
                     split_ok ? "metric (loss, accuracy, precision, recall, f1, mse)" : "split",
                     nn_sema_hint(c, near));
            return false;
        }
        s->stop = nn_arena_printf(c->arena, "%s.%s", f->a->name, f->name);
        s->stop_ast = f;
        s->patience = 3;
        for (int i = 1; i < v->kids.count; i++) {
            const NnAst *o = v->kids.items[i];
            if (o->kind != NN_AST_ARG || strcmp(o->name, "patience") != 0) {
                nn_error(&c->diags, o->loc, "early() takes patience = K");
                return false;
            }
            if (!int_setting(c, o->a, &s->patience, 1, MAX_INT32))
                return false;
        }
    } else if (strcmp(k, "augment") == 0) {
        if (v->kind != NN_AST_LIST) {
            nn_error(&c->diags, v->loc, "augment expects a list such as [random_shift(2)]");
            return false;
        }
        s->augment = v;
    } else {
        const char *near = nn_sema_suggest(NULL, k, setting_names, NSETTINGS);
        nn_error(&c->diags, a->loc, "unknown train setting '%s'%s", k,
                 nn_sema_hint(c, near));
        return false;
    }
    return true;
}

// One --set value for a plain setting, checked like the same setting in a
// script. Returns 0 when key is no plain setting (an optimizer argument),
// 1 when it was applied to s, -1 after a diagnostic.
static int set_value(NnCtx *c, Settings *s, const NnSetting *st)
{
    const char *k = st->key, *val = st->value;
    NnLoc at = st->loc;
    if (strcmp(k, "save") == 0) {
        if (!*val) {
            nn_error(&c->diags, at, "%s: expected a file name", nn_setting_text(c, st));
            return -1;
        }
        s->save = val;
        return 1;
    }
    if (strcmp(k, "seed") == 0) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(val, &end, 10);
        if (*val < '0' || *val > '9' || *end || errno == ERANGE) {
            nn_error(&c->diags, at, "%s: expected an integer from 0 to %llu",
                     nn_setting_text(c, st), (unsigned long long)UINT64_MAX);
            return -1;
        }
        s->seed = v;
        return 1;
    }
    int64_t *target = strcmp(k, "batch") == 0    ? &s->batch
                    : strcmp(k, "epochs") == 0   ? &s->epochs
                    : strcmp(k, "limit") == 0    ? &s->limit
                    : strcmp(k, "eval_limit") == 0 ? &s->eval_limit
                    : strcmp(k, "patience") == 0 ? &s->patience : NULL;
    if (!target)
        return 0;
    int64_t min = target == &s->batch || target == &s->patience ? 1 : 0;
    int64_t max = target == &s->limit || target == &s->eval_limit ? MAX_EXACT : MAX_INT32;
    char *end;
    double v = strtod(val, &end);
    // Compared as doubles before the cast, so no value overflows int64_t.
    if (!*val || *end || !(v >= (double)min && v <= (double)max) ||
        v != (double)(int64_t)v) {
        nn_error(&c->diags, at, "%s: expected an integer from %lld to %lld",
                 nn_setting_text(c, st), (long long)min, (long long)max);
        return -1;
    }
    *target = (int64_t)v;
    return 1;
}

const char *nn_setting_text(NnCtx *c, const NnSetting *s)
{
    return s->loc.line ? nn_arena_printf(c->arena, "%s = %s", s->key, s->value)
                       : nn_arena_printf(c->arena, "--set %s=%s", s->key, s->value);
}

NnLoc nn_setting_loc(const NnSetting *s, NnLoc fallback) { return s->loc.line ? s->loc : fallback; }

// --set key=value for plain settings; other keys are optimizer arguments.
static bool apply_sets(NnCtx *c, Settings *s, NnSetting *sets, int nsets)
{
    bool ok = true;
    for (int i = 0; i < nsets; i++) {
        int r = set_value(c, s, &sets[i]);
        ok = r >= 0 && ok;
        if (r > 0)
            sets[i].used = true;
    }
    return ok;
}

// --set dropout=R: a rate in [0, 1), checked once before any site reads it.
static bool check_dropout_sets(NnCtx *c, const NnSetting *sets, int nsets)
{
    bool ok = true;
    for (int i = 0; i < nsets; i++) {
        int site;
        char *end;
        if (!nn_train_dropout_key(sets[i].key, &site))
            continue;
        double v = strtod(sets[i].value, &end);
        if (!*sets[i].value || *end || !(v >= 0 && v < 1)) {
            nn_error(&c->diags, sets[i].loc, "%s: a dropout rate is a number in [0, 1)",
                     nn_setting_text(c, &sets[i]));
            ok = false;
        }
    }
    return ok;
}

bool nn_train_check_sets(NnCtx *c, NnSetting *sets, int nsets)
{
    Settings s = {0};
    bool ok = true;
    for (int i = 0; i < nsets; i++)
        ok = set_value(c, &s, &sets[i]) >= 0 && ok;
    return ok;
}

// Metrics and early stopping that only a classifier (or only a regression)
// can compute are diagnosed instead of reported as NaN or ignored.
static bool check_task(NnCtx *c, const Settings *s, bool classify, const char *model)
{
    static const char *const cls_only[] = {"accuracy", "acc", "precision", "recall", "f1",
                                           "confusion"};
    bool ok = true;
    for (int i = 0; i <= s->nmetrics; i++) {
        const NnAst *at = i < s->nmetrics ? s->metric_asts[i] : s->stop_ast;
        const char *m = i < s->nmetrics ? s->metrics[i] : at ? at->name : NULL;
        if (!m)
            continue;
        bool needs_cls = false;
        for (size_t k = 0; k < sizeof cls_only / sizeof cls_only[0]; k++)
            needs_cls = needs_cls || !strcmp(m, cls_only[k]);
        if (needs_cls && !classify) {
            nn_error(&c->diags, at->loc, "'%s' needs a classifier (i32 labels, output [N, classes])"
                     "; model '%s' is trained as a regression (use loss or mse)", m, model);
            ok = false;
        } else if (!strcmp(m, "mse") && classify) {
            nn_error(&c->diags, at->loc, "'mse' is for regression; model '%s' is a classifier "
                     "(use loss, accuracy, precision, recall, f1 or confusion)", model);
            ok = false;
        }
    }
    return ok;
}

// Under mpirun (runtime/dist.c) every gradient is averaged over the ranks
// between the backward pass and the updates: GRAD_START, which the overlap
// pass moves to right after the gradient is computed, and GRAD_WAIT, which
// the updates read. One process compiles exactly the step it always did.
static bool average_grads(Lower *L, NnId *grads, const char **names, int n, NnLoc loc)
{
    for (int i = 0; i < n; i++) {
        if (nn_node(L->g, grads[i])->dtype != NN_DT_F32) {
            nn_error(&L->c->diags, loc, "data-parallel training averages f32 gradients; "
                     "parameter '%s' is not f32", names[i]);
            return false;
        }
        NnId s = nn_ir_unary(L->g, NN_OP_GRAD_START, grads[i], loc);
        grads[i] = nn_ir_unary(L->g, NN_OP_GRAD_WAIT, s, loc);
    }
    return true;
}

// Instantiates the optimizer's update rule for parameter p with gradient gr.
// Named arguments must name a hyperparameter; positional ones must fit.
static bool check_optimizer_args(Lower *L, const NnAst *opt, const Arg *args, int nargs)
{
    int npos = 0;
    for (int i = 0; i < nargs; i++) {
        NnLoc at = args[i].loc;
        if (!args[i].name) {
            if (++npos > opt->params.count) {
                nn_error(&L->c->diags, at, "optimizer '%s' takes %d arguments, got more",
                         opt->name, opt->params.count);
                return false;
            }
            continue;
        }
        const char *names[32];
        int n = 0;
        bool found = false;
        for (int k = 0; k < opt->params.count; k++) {
            found = found || !strcmp(opt->params.items[k]->name, args[i].name);
            if (n < 32)
                names[n++] = opt->params.items[k]->name;
        }
        if (!found) {
            const char *near = nn_sema_suggest(NULL, args[i].name, names, n);
            nn_error(&L->c->diags, at, "optimizer '%s' has no parameter '%s'%s", opt->name,
                     args[i].name, nn_sema_hint(L->c, near));
            return false;
        }
    }
    return true;
}

// Whether optimizer formal f takes its number at run time: all do but those
// declared `float`, `int` or `bool`, which the body needs at compile time
// (clip_by_norm's threshold decides whether the gradient norm is built).
static bool runtime_formal(const NnAst *f)
{
    const char *t = f->type ? f->type->name : NULL;
    return !t || (strcmp(t, "float") && strcmp(t, "int") && strcmp(t, "bool"));
}

static bool optimize_param(Lower *L, const NnAst *opt, Arg *args, int nargs, NnId p, NnId gr,
                           const char *pname, const char *hprefix, NnId *lr, NnLoc loc)
{
    // Bind hyperparameters like a call, then run the body statements.
    Env *env = nn_arena_alloc(L->c->arena, sizeof *env);
    for (int k = 0; k < opt->params.count; k++) {
        const NnAst *f = opt->params.items[k];
        Val v = v_none();
        bool set = false;
        for (int i = 0; i < nargs; i++)
            if (args[i].name && strcmp(args[i].name, f->name) == 0)
                v = args[i].v, set = true;
        if (!set && k < nargs && !args[k].name)
            v = args[k].v, set = true;
        if (!set && f->a)
            v = eval(L, env, f->a), set = true;
        if (!set) {
            nn_error(&L->c->diags, loc, "optimizer '%s' is missing argument '%s'", opt->name,
                     f->name);
            return false;
        }
        if (v.kind == V_NONE)
            return false;
        if (v.kind == V_NUM && runtime_formal(f)) {
            NnId h = hyper_var(L, hprefix, f->name, v.num, loc);
            if (h < 0)
                return false;
            NnDType dt = nn_node(L->g, p)->dtype;
            v = v_tensor(dt == NN_DT_F32 ? h : nn_ir_cast(L->g, h, dt, loc));
        }
        if (strcmp(f->name, "lr") == 0 && v.kind == V_TENSOR && vnode(L, v)->shape.rank == 0)
            *lr = v.id;
        env_bind(L, env, f->name, v);
    }
    NnNode *pn = nn_node(L->g, p);
    env_bind(L, env, "p", v_tensor(p));
    env_bind(L, env, "grad", v_tensor(gr));
    env_bind(L, env, "step", v_tensor(L->step));
    NnId states[32];
    const char *snames[32];
    int nstates = 0;
    for (int i = 0; i < opt->kids.count; i++) {
        const NnAst *s = opt->kids.items[i];
        if (s->kind == NN_AST_STATE) {
            bool zl = s->a->kind == NN_AST_CALL && s->a->a->kind == NN_AST_NAME &&
                      (strcmp(s->a->a->name, "zeros_like") == 0 ||
                       strcmp(s->a->a->name, "ones_like") == 0);
            if (!zl || nstates == 32) {
                nn_error(&L->c->diags, s->a->loc, "a state starts as zeros_like(p) or ones_like(p)");
                return false;
            }
            const char *init = s->a->a->name[0] == 'z' ? "zeros" : "ones";
            const char *name = nn_arena_printf(L->c->arena, "%s/%s", pname, s->name);
            NnId id = make_var(L, NN_OP_STATE, name, pn->dtype, &pn->shape, init, NULL, 0, s->loc);
            if (id < 0)
                return false;
            states[nstates] = id;
            snames[nstates++] = s->name;
            env_bind(L, env, s->name, v_tensor(id));
        } else if (s->kind == NN_AST_ASSIGN && s->kids.count == 1 &&
                   s->kids.items[0]->kind == NN_AST_NAME) {
            Val v = eval(L, env, s->a);
            if (v.kind == V_NONE)
                return false;
            env_bind(L, env, s->kids.items[0]->name, v);
        } else if (s->kind == NN_AST_EXPR) {
            if (eval(L, env, s->a).kind == V_NONE)
                return false;
        } else if (s->kind != NN_AST_ERROR) {
            nn_error(&L->c->diags, s->loc, "optimizers may only hold 'state' and assignments");
            return false;
        }
    }
    // The final values of p and each state are the updates.
    for (int i = -1; i < nstates; i++) {
        const char *name = i < 0 ? "p" : snames[i];
        NnId var = i < 0 ? p : states[i];
        Val v;
        env_lookup(env, name, &v);
        NnId val = as_tensor(L, v, pn->dtype, loc);
        if (val < 0)
            return false;
        NnNode *vn = nn_node(L->g, val), *varn = nn_node(L->g, var);
        if (vn->dtype != varn->dtype || !nn_shape_eq(&vn->shape, &varn->shape)) {
            char a[64], b[64];
            nn_error(&L->c->diags, loc, "optimizer '%s' sets '%s' of %s to a value of type %s",
                     opt->name, name, nn_type_str(L->g, varn->dtype, &varn->shape, a, 64),
                     nn_type_str(L->g, vn->dtype, &vn->shape, b, 64));
            return false;
        }
        if (val != var)
            nn_graph_add_update(L->g, var, val);
    }
    return true;
}

// Whether node root depends on any of ids (inputs always have smaller ids).
static bool depends_on(const NnGraph *g, NnId root, const NnId *ids, int n)
{
    bool *mark = calloc((size_t)root + 1, 1), any = false;
    if (!mark)
        return true; // no memory to tell: the gradient will say the rest
    mark[root] = true;
    for (NnId id = root; id >= 0; id--) {
        const NnNode *nd = &g->nodes[id];
        for (int k = 0; mark[id] && k < nd->nin; k++)
            mark[nd->in[k]] = true;
    }
    for (int i = 0; i < n && !any; i++)
        any = ids[i] <= root && mark[ids[i]];
    free(mark);
    return any;
}

// Whether parameter `name` ("gen.dense1.w") belongs to one of the step's models.
static bool step_owns(const StepCfg *cfg, const char *name)
{
    if (!cfg->name)
        return true;
    size_t len = strcspn(name, ".");
    for (int i = 0; i < cfg->nmodels; i++)
        if (strlen(cfg->models[i]) == len && !strncmp(cfg->models[i], name, len))
            return true;
    return false;
}

// The first call `model(ARG)` in e whose ARG is the data field x (real) or a
// call of another model (fake): how a discriminator's step scores real and
// generated samples.
static void find_scored(const NnProgram *p, const NnAst *e, const char *model,
                        const NnAst **real, const NnAst **fake)
{
    if (!e)
        return;
    if (e->kind == NN_AST_CALL && e->a && e->a->kind == NN_AST_NAME &&
        !strcmp(e->a->name, model) && e->kids.count == 1) {
        const NnAst *arg = e->kids.items[0];
        if (arg->kind == NN_AST_NAME && !strcmp(arg->name, "x") && !*real)
            *real = e;
        const NnDecl *d = arg->kind == NN_AST_CALL && arg->a->kind == NN_AST_NAME
                              ? nn_sema_find(p, arg->a->name) : NULL;
        if (d && d->ast->kind == NN_AST_MODEL && strcmp(arg->a->name, model) && !*fake)
            *fake = e;
    }
    find_scored(p, e->a, model, real, fake);
    find_scored(p, e->b, model, real, fake);
    for (int i = 0; i < e->kids.count; i++)
        find_scored(p, e->kids.items[i], model, real, fake);
}

// Adds graph output `name`: the mean of the model call `call`. Evaluated again,
// the call shares the loss's weights and noise, and CSE merges the copies.
static void add_mean_output(Lower *L, Env *env, const NnAst *call, const char *name)
{
    if (!call)
        return;
    Val v = eval(L, env, call);
    if (v.kind != V_TENSOR)
        return;
    Arg a = {.v = v, .loc = call->loc};
    Val m = call_builtin(L, "mean", &a, 1, call->loc);
    if (m.kind == V_TENSOR)
        nn_graph_add_output(L->g, name, m.id);
}

// Builds one graph of step cfg; mode 0 = forward only, 1 = full step, 2 = eval.
static NnGraph *build(NnCtx *c, const NnProgram *p, const NnAst *model, const Settings *s,
                      const StepCfg *cfg, const NnField *fields, int nfields, NnSetting *sets,
                      int nsets, int mode, Lower *L)
{
    NnGraph *g = nn_graph_new();
    lower_init(L, c, p, g);
    L->training = mode != 2;
    L->seed = s->seed;
    L->drop_sets = sets;
    L->ndrop_sets = nsets;
    int64_t N = nn_sym_dim(g, "N");
    TrainEnv T = {.L = L, .fields = fields, .nfields = nfields, .model = model, .data = s->data,
                  .noise = s->noise, .nnoise = s->nnoise, .step_index = cfg->index,
                  .grad_norm = -1,
                  .hprefix = cfg->name ? nn_arena_printf(c->arena, "%s/", cfg->name) : ""};
    L->hprefix = T.hprefix;
    T.inputs = nn_arena_alloc(c->arena, (size_t)nfields * sizeof(NnId));
    T.noise_ids = nn_arena_alloc(c->arena, (size_t)(s->nnoise + 1) * sizeof(NnId));
    for (int i = 0; i < s->nnoise; i++)
        T.noise_ids[i] = -1;
    for (int i = 0; i < nfields; i++) {
        NnShape sh = {.rank = fields[i].sample.rank + 1};
        sh.dim[0] = N;
        for (int k = 0; k < fields[i].sample.rank; k++)
            sh.dim[k + 1] = fields[i].sample.dim[k];
        T.inputs[i] = nn_ir_source(g, NN_OP_INPUT, fields[i].name, fields[i].dtype, &sh, model->loc);
    }
    L->resolve = resolve;
    L->origin = origin;
    L->resolve_ctx = &T;
    const char **known =
        nn_arena_alloc(c->arena, (size_t)(nfields + s->nnoise + 2) * sizeof(char *));
    known[0] = "output";
    for (int i = 0; i < nfields; i++)
        known[i + 1] = fields[i].name;
    for (int i = 0; i < s->nnoise; i++)
        known[nfields + 1 + i] = s->noise[i]->name;
    L->resolve_names = known;
    L->nresolve_names = nfields + s->nnoise + 1;
    NnId s0 = -1;
    if (mode != 2) {
        NnShape scalar = {0};
        const char *sname = cfg->name ? nn_arena_printf(c->arena, "%s/step", cfg->name) : "step";
        s0 = make_var(L, NN_OP_STATE, sname, NN_DT_F32, &scalar, "zeros", NULL, 0, model->loc);
        L->step = nn_ir_binary(g, NN_OP_ADD, s0, nn_ir_const(g, 1, NN_DT_F32, model->loc),
                               model->loc);
    }
    Env env = {0};
    Val loss = eval(L, &env, cfg->loss);
    if (loss.kind == V_NONE)
        goto fail;
    if (loss.kind != V_TENSOR || vnode(L, loss)->shape.rank != 0) {
        char b[64];
        nn_error(&c->diags, cfg->loss->loc, "the loss must be a scalar, got %s",
                 val_desc(L, loss, b, 64));
        goto fail;
    }
    nn_graph_add_output(g, "loss", loss.id);
    if (mode == 2) {
        Val out;
        if (!resolve(&T, "output", model->loc, &out) || out.kind != V_TENSOR)
            goto fail;
        nn_graph_add_output(g, "output", out.id);
        return g;
    }
    if (mode == 0)
        return g;
    int nparams = 0;
    NnId *wrt = nn_arena_alloc(c->arena, (size_t)(L->nvars + 1) * sizeof(NnId));
    NnId *grads = nn_arena_alloc(c->arena, (size_t)(L->nvars + 1) * sizeof(NnId));
    const char **names = nn_arena_alloc(c->arena, (size_t)(L->nvars + 1) * sizeof(char *));
    for (int i = 0; i < L->nvars; i++)
        if (L->vars[i].trainable && step_owns(cfg, L->vars[i].name)) {
            names[nparams] = L->vars[i].name;
            wrt[nparams++] = L->var_ids[i];
        }
    if (cfg->name && (nparams == 0 || !depends_on(g, loss.id, wrt, nparams))) {
        char list[256] = "";
        size_t k = 0;
        for (int i = 0; i < cfg->nmodels && k < sizeof list; i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s'%s'",
                                  i == 0 ? "" : i + 1 == cfg->nmodels ? " or " : ", ",
                                  cfg->models[i]);
        nn_error(&c->diags, cfg->loss->loc, "loss of step '%s' does not depend on any parameter "
                 "of %s", cfg->name, list);
        goto fail;
    }
    if (nparams == 0) {
        nn_error(&c->diags, model->loc, "model '%s' has no parameters to train", model->name);
        goto fail;
    }
    if (!nn_ad_grad(g, loss.id, wrt, nparams, grads)) {
        if (g->err_loc.src) {
            nn_error(&c->diags, g->err_loc, "%s", g->err);
            nn_note(&c->diags, cfg->loss->loc, "training differentiates this loss");
        } else
            nn_error(&c->diags, cfg->loss->loc, "cannot differentiate the loss: %s", g->err);
        goto fail;
    }
    // Under mpirun the updates go in the order the gradients are finished
    // (later layers first), so each waits for the sum that completes first.
    int *order = nn_arena_alloc(c->arena, (size_t)(nparams + 1) * sizeof *order);
    for (int i = 0; i < nparams; i++)
        order[i] = i;
    for (int i = 1; nnrt_dist_size() > 1 && i < nparams; i++)
        for (int k = i; k > 0 && grads[order[k]] < grads[order[k - 1]]; k--) {
            int t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    if (nnrt_dist_size() > 1 && !average_grads(L, grads, names, nparams, cfg->loss->loc))
        goto fail;
    const NnAst *oc = cfg->optimizer;
    T.optimizing = true;
    Val ov = oc->kind == NN_AST_CALL ? eval(L, &env, oc->a) : eval(L, &env, oc);
    if (ov.kind != V_DECL || ov.decl->kind != NN_AST_OPTIMIZER) {
        if (ov.kind != V_NONE)
            nn_error(&c->diags, oc->loc, "'optimizer' must name an optimizer such as adam(...)");
        goto fail;
    }
    Arg *args = NULL;
    int nargs = 0;
    if (oc->kind == NN_AST_CALL && (!eval_args(L, &env, &oc->kids, NULL, &args, &nargs) ||
                                    !check_optimizer_args(L, ov.decl, args, nargs)))
        goto fail;
    Arg *all = nn_arena_alloc(c->arena, (size_t)(nargs + nsets + 1) * sizeof *all);
    memcpy(all, args, (size_t)nargs * sizeof *all);
    for (int i = 0; i < nsets; i++) {
        if (s->plain ? s->plain[i] : sets[i].used)
            continue;
        bool known = false;
        for (int k = 0; k < ov.decl->params.count; k++)
            known = known || strcmp(ov.decl->params.items[k]->name, sets[i].key) == 0;
        char *end;
        double v = strtod(sets[i].value, &end);
        // In a block of steps, --set lr=0.01 applies to every step whose
        // optimizer takes lr; nn_lower_train reports keys that none takes.
        if (!known && !*end && cfg->name)
            continue;
        int site;
        if (nn_train_dropout_key(sets[i].key, &site)) {
            nn_error(&c->diags, (NnLoc){0}, "--set %s=%s: model '%s' has no dropout%s%s",
                     sets[i].key, sets[i].value, model->name, site ? " call number " : "",
                     site ? sets[i].key + 7 : "");
            goto fail;
        }
        if (!known || *end) {
            nn_error(&c->diags, (NnLoc){0}, "--set %s=%s: not a train setting nor a numeric "
                     "argument of optimizer '%s'", sets[i].key, sets[i].value, ov.decl->name);
            goto fail;
        }
        all[nargs++] = (Arg){.name = sets[i].key, .v = v_num(v), .loc = oc->loc};
        if (mode == 1)
            sets[i].used = true;
    }
    // grad_norm (through resolve) is built only if the optimizer uses it.
    T.grads = grads;
    T.ngrads = nparams;
    NnId lr = -1;
    for (int j = 0; j < nparams; j++) {
        int i = order[j];
        const char *pname = cfg->name ? nn_arena_printf(c->arena, "%s/%s", cfg->name, names[i])
                                      : names[i];
        if (!optimize_param(L, ov.decl, all, nargs, wrt[i], grads[i], pname, T.hprefix, &lr,
                            oc->loc)) {
            call_note(L, ov.decl, oc->loc);
            goto fail;
        }
    }
    // The learning rate each run used (a schedule's value at its step), to show.
    if (lr >= 0)
        nn_graph_add_output(g, "lr", lr);
    nn_graph_add_update(g, s0, L->step);
    for (int i = 0; i < L->nupd; i++)
        nn_graph_add_update(g, L->upd_var[i], L->upd_val[i]);
    if (cfg->name && cfg->nmodels == 1) {
        const NnAst *real = NULL, *fake = NULL;
        find_scored(p, cfg->loss, cfg->models[0], &real, &fake);
        if (real && fake) {
            add_mean_output(L, &env, real, "real");
            add_mean_output(L, &env, fake, "fake");
        }
    }
    return g;
fail:
    nn_graph_free(g);
    return NULL;
}

// `noise z: f32[N, 16] = normal()`: the batch first, then fixed sizes, drawn
// from normal(mean, std) or uniform(lo, hi) with number arguments.
static bool check_noise(NnCtx *c, const NnAst *nz)
{
    const NnAst *t = nz->type;
    bool ok = t && t->has_dims && !strcmp(t->name, "f32") && t->kids.count >= 1 &&
              t->kids.count <= NN_MAX_RANK && t->kids.items[0]->kind == NN_AST_NAME &&
              !strcmp(t->kids.items[0]->name, "N");
    for (int k = 1; ok && k < t->kids.count; k++) {
        const NnAst *d = t->kids.items[k];
        ok = d->kind == NN_AST_NUM && d->is_int && d->num >= 1 && d->num <= MAX_INT32;
    }
    if (!ok) {
        nn_error(&c->diags, t ? t->loc : nz->loc, "noise '%s' needs a batch shape: f32[N, ...] "
                 "with the batch N first and fixed sizes after it, as in f32[N, 16]", nz->name);
        return false;
    }
    const NnAst *init = nz->a;
    bool normal = false;
    ok = init->kind == NN_AST_CALL && init->a->kind == NN_AST_NAME &&
         ((normal = !strcmp(init->a->name, "normal")) || !strcmp(init->a->name, "uniform")) &&
         init->kids.count <= 2;
    for (int i = 0; ok && i < init->kids.count; i++) {
        const NnAst *a = init->kids.items[i];
        const NnAst *v = a->kind == NN_AST_ARG ? a->a : a;
        if (v->kind == NN_AST_UNARY && v->op == NN_AOP_NEG)
            v = v->a;
        ok = v->kind == NN_AST_NUM &&
             (a->kind != NN_AST_ARG || !strcmp(a->name, normal ? "mean" : "lo") ||
              !strcmp(a->name, normal ? "std" : "hi"));
    }
    if (!ok)
        nn_error(&c->diags, init->loc, "noise '%s' is drawn by normal(mean = 0, std = 1) or "
                 "uniform(lo = 0, hi = 1), with numbers as arguments", nz->name);
    return ok;
}

static const char *const step_setting_names[] = {"loss", "optimizer", "params", "repeat"};

// Reads `step NAME { loss = ...; optimizer = ...; params = [...]; repeat = k }`.
static bool read_step(NnCtx *c, const NnProgram *p, const NnAst *st, int index, StepCfg *cfg)
{
    *cfg = (StepCfg){.ast = st, .name = st->name, .repeat = 1, .index = index};
    bool ok = true;
    for (int i = 0; i < st->kids.count; i++) {
        const NnAst *a = st->kids.items[i];
        if (a->kind != NN_AST_ARG)
            continue; // syntax errors were reported by the parser
        if (!strcmp(a->name, "loss"))
            cfg->loss = a->a;
        else if (!strcmp(a->name, "optimizer"))
            cfg->optimizer = a->a;
        else if (!strcmp(a->name, "repeat"))
            ok = int_setting(c, a->a, &cfg->repeat, 1, 1000000) && ok;
        else if (!strcmp(a->name, "params")) {
            if (a->a->kind != NN_AST_LIST || a->a->kids.count == 0) {
                nn_error(&c->diags, a->a->loc, "params expects a list of models such as [gen]");
                ok = false;
            } else
                cfg->params = a->a;
        } else {
            const char *near = nn_sema_suggest(NULL, a->name, step_setting_names, 4);
            nn_error(&c->diags, a->loc, "unknown step setting '%s' (a step takes loss, "
                     "optimizer, params and repeat)%s", a->name, nn_sema_hint(c, near));
            ok = false;
        }
    }
    if (!cfg->loss) {
        nn_error(&c->diags, st->loc, "step '%s' needs 'loss = ...'", st->name);
        ok = false;
    }
    if (!cfg->optimizer) {
        nn_error(&c->diags, st->loc, "step '%s' needs 'optimizer = ...', e.g. adam()", st->name);
        ok = false;
    }
    int n = cfg->params ? cfg->params->kids.count : 1;
    cfg->models = nn_arena_alloc(c->arena, (size_t)n * sizeof(char *));
    cfg->model_at = nn_arena_alloc(c->arena, (size_t)n * sizeof(NnAst *));
    for (int i = 0; i < n; i++) {
        const NnAst *m = cfg->params ? cfg->params->kids.items[i] : st;
        const NnDecl *d = m->kind == NN_AST_NAME || m == st ? nn_sema_find(p, m->name) : NULL;
        if (!d || d->ast->kind != NN_AST_MODEL) {
            const char *near = m->name ? nn_sema_suggest(p, m->name, NULL, 0) : NULL;
            if (m == st)
                nn_error(&c->diags, m->loc, "step '%s' names an unknown model (a step updates "
                         "the model it names, or those in params = [...])%s", m->name,
                         nn_sema_hint(c, near));
            else
                nn_error(&c->diags, m->loc, "params lists models; '%s' is not a model%s",
                         m->name ? m->name : "this", nn_sema_hint(c, near));
            ok = false;
            continue;
        }
        cfg->model_at[cfg->nmodels] = m;
        cfg->models[cfg->nmodels++] = m->name;
    }
    return ok;
}

// Two steps may update the same model only when the later one says so by
// listing it in its params.
static bool check_overlap(NnCtx *c, const StepCfg *steps, int nsteps)
{
    bool ok = true;
    for (int i = 1; i < nsteps; i++)
        for (int k = 0; k < steps[i].nmodels; k++)
            for (int j = 0; j < i; j++) {
                bool shared = false;
                for (int m = 0; m < steps[j].nmodels; m++)
                    shared = shared || !strcmp(steps[j].models[m], steps[i].models[k]);
                if (!shared || steps[i].params)
                    continue;
                nn_error(&c->diags, steps[i].model_at[k]->loc, "steps '%s' and '%s' both update "
                         "the parameters of '%s'; to mean it, list them in step '%s' as "
                         "params = [%s]", steps[j].name, steps[i].name, steps[i].models[k],
                         steps[i].name, steps[i].models[k]);
                nn_note(&c->diags, steps[j].ast->loc, "step '%s' is here", steps[j].name);
                ok = false;
                break;
            }
    return ok;
}

// Lowers a block of steps: one step graph each, their variables merged by
// name (a model used in several steps has one set of weights).
static bool lower_steps(NnCtx *c, const NnProgram *p, const NnAst *model, Settings *s,
                        StepCfg *steps, int nsteps, const NnField *fields, int nfields,
                        NnSetting *sets, int nsets, NnTrainSpec *out)
{
    bool *plain = nn_arena_alloc(c->arena, (size_t)(nsets + 1) * sizeof(bool));
    for (int i = 0; i < nsets; i++)
        plain[i] = sets[i].used;
    s->plain = plain;
    Lower L;
    out->forward = build(c, p, model, s, &steps[0], fields, nfields, sets, nsets, 0, &L);
    if (!out->forward)
        return false;
    out->steps = nn_arena_alloc(c->arena, (size_t)nsteps * sizeof *out->steps);
    int cap = 0;
    bool ok = true;
    for (int i = 0; i < nsteps; i++) {
        NnGraph *g = build(c, p, model, s, &steps[i], fields, nfields, sets, nsets, 1, &L);
        out->steps[i] = (NnTrainStep){steps[i].name, i == 0 ? NULL : g, (int)steps[i].repeat,
                                      steps[i].ast};
        if (i == 0)
            out->step = g;
        out->nsteps = i + 1;
        if (!g) {
            ok = false;
            break; // one step's mistake (a bad --set) would repeat for the next
        }
        if (out->nvars + L.nvars > cap) {
            cap = 2 * (out->nvars + L.nvars);
            NnParamInit *v = nn_arena_alloc(c->arena, (size_t)cap * sizeof *v);
            if (out->nvars)
                memcpy(v, out->vars, (size_t)out->nvars * sizeof *v);
            out->vars = v;
        }
        for (int k = 0; k < L.nvars; k++) {
            bool seen = false;
            for (int j = 0; j < out->nvars && !seen; j++)
                seen = !strcmp(out->vars[j].name, L.vars[k].name);
            if (!seen)
                out->vars[out->nvars++] = L.vars[k];
        }
    }
    for (int i = 0; ok && i < nsets; i++)
        if (!plain[i] && !sets[i].used) {
            int site;
            if (nn_train_dropout_key(sets[i].key, &site)) {
                nn_error(&c->diags, (NnLoc){0}, "--set %s=%s: no step's models have dropout%s%s",
                         sets[i].key, sets[i].value, site ? " call number " : "",
                         site ? sets[i].key + 7 : "");
                ok = false;
                break;
            }
            nn_error(&c->diags, (NnLoc){0}, "--set %s=%s: not a train setting nor a numeric "
                     "argument of any step's optimizer", sets[i].key, sets[i].value);
            ok = false;
        }
    return ok;
}

bool nn_lower_train(NnCtx *c, const NnProgram *p, const NnAst *train, const NnField *fields,
                    int nfields, NnSetting *sets, int nsets, NnTrainSpec *out)
{
    memset(out, 0, sizeof *out);
    out->ast = train;
    const NnDecl *md = nn_sema_find(p, train->name);
    if (!md || md->ast->kind != NN_AST_MODEL) {
        const char *near = nn_sema_suggest(p, train->name, NULL, 0);
        nn_error(&c->diags, train->loc, "'%s' is not a model%s", train->name,
                 nn_sema_hint(c, near));
        return false;
    }
    Settings s = {.batch = 32, .epochs = 1, .seed = 1};
    const NnDecl *dd = train->name2 ? nn_sema_find(p, train->name2) : NULL;
    s.data = dd && dd->ast->kind == NN_AST_DATA ? dd->ast : NULL;
    bool ok = true;
    int nsteps = 0;
    for (int i = 0; i < train->kids.count; i++)
        nsteps += train->kids.items[i]->kind == NN_AST_STEP;
    StepCfg *steps = nn_arena_alloc(c->arena, (size_t)(nsteps + 1) * sizeof *steps);
    s.noise = nn_arena_alloc(c->arena, (size_t)(train->kids.count + 1) * sizeof(NnAst *));
    nsteps = 0;
    for (int i = 0; i < train->kids.count; i++) {
        NnAst *a = train->kids.items[i];
        if (a->kind == NN_AST_ARG)
            ok = read_setting(c, &s, a) && ok;
        else if (a->kind == NN_AST_STEP) {
            for (int k = 0; k < nsteps; k++)
                if (!strcmp(steps[k].name, a->name)) {
                    nn_error(&c->diags, a->loc, "step '%s' is declared twice", a->name);
                    ok = false;
                }
            ok = read_step(c, p, a, nsteps, &steps[nsteps]) && ok;
            nsteps++;
        } else if (a->kind == NN_AST_NOISE) {
            bool taken = !strcmp(a->name, "output");
            for (int k = 0; k < nfields; k++)
                taken = taken || !strcmp(a->name, fields[k].name);
            for (int k = 0; k < s.nnoise; k++)
                taken = taken || !strcmp(a->name, s.noise[k]->name);
            if (taken) {
                nn_error(&c->diags, a->loc, "noise '%s' takes a name the train block already "
                         "has (a data field, 'output' or another noise)", a->name);
                ok = false;
            }
            ok = check_noise(c, a) && ok;
            s.noise[s.nnoise++] = a;
        }
    }
    if (nsteps > 0) {
        const NnAst *stray = s.loss ? s.loss : s.optimizer;
        if (stray) {
            nn_error(&c->diags, stray->loc, "with step blocks, '%s' goes inside each step",
                     s.loss ? "loss" : "optimizer");
            ok = false;
        }
        ok = ok && check_overlap(c, steps, nsteps);
    } else {
        if (!s.loss) {
            nn_error(&c->diags, train->loc, "train block needs 'loss = ...'");
            ok = false;
        }
        if (!s.optimizer) {
            nn_error(&c->diags, train->loc, "train block needs 'optimizer = ...', e.g. adam()");
            ok = false;
        }
    }
    if (!ok || !apply_sets(c, &s, sets, nsets) || !check_dropout_sets(c, sets, nsets))
        return false;
    out->model = train->name;
    out->data = train->name2;
    out->batch = s.batch;
    out->epochs = s.epochs;
    out->seed = s.seed;
    out->limit = s.limit;
    out->eval_limit = s.eval_limit;
    out->save = s.save;
    out->stop_metric = s.stop;
    out->patience = (int)s.patience;
    out->metrics = s.metrics;
    out->nmetrics = s.nmetrics;
    out->augment = s.augment;
    out->noise = s.noise;
    out->nnoise = s.nnoise;
    if (nsteps > 0) {
        if (!lower_steps(c, p, md->ast, &s, steps, nsteps, fields, nfields, sets, nsets, out))
            return false;
        if (s.stop) {
            nn_error(&c->diags, s.stop_ast->loc, "early stopping needs an evaluation; a block of "
                     "steps has none");
            return false;
        }
        return check_task(c, &s, false, out->model);
    }
    StepCfg one = {.loss = s.loss, .optimizer = s.optimizer};
    Lower L;
    out->forward = build(c, p, md->ast, &s, &one, fields, nfields, sets, nsets, 0, &L);
    if (!out->forward)
        return false;
    out->step = build(c, p, md->ast, &s, &one, fields, nfields, sets, nsets, 1, &L);
    if (!out->step)
        return false;
    out->vars = L.vars;
    out->nvars = L.nvars;
    Lower E;
    out->eval = build(c, p, md->ast, &s, &one, fields, nfields, sets, nsets, 2, &E);
    if (!out->eval)
        return false;
    NnId o = nn_graph_output(out->eval, "output");
    out->classify = nfields > 1 && fields[1].dtype == NN_DT_I32 &&
                    nn_node(out->eval, o)->shape.rank == 2;
    return check_task(c, &s, out->classify, out->model);
}

// The steps' repeat counts by the name prefix of their variables ("disc/").
static int step_repeat(const NnTrainSpec *s, const char *var)
{
    for (int i = 0; i < s->nsteps; i++) {
        size_t n = strlen(s->steps[i].name);
        if (!strncmp(var, s->steps[i].name, n) && var[n] == '/')
            return s->steps[i].repeat;
    }
    return 1;
}

bool nn_train_dropout_key(const char *key, int *site)
{
    if (strncmp(key, "dropout", 7))
        return false;
    const char *d = key + 7;
    *site = 0;
    if (!*d)
        return true;
    if (*d < '1' || *d > '9' || strlen(d) > 6 || strspn(d, "0123456789") != strlen(d))
        return false;
    *site = atoi(d);
    return true;
}

// Whether var is hyperparameter key: "hyper/KEY" or "STEP/hyper/KEY"; key
// "dropout" also names every "hyper/dropoutK".
static bool hyper_named(const char *var, const char *key)
{
    const char *h = strstr(var, "hyper/");
    if (!h || (h != var && h[-1] != '/'))
        return false;
    int site;
    return !strcmp(h + 6, key) ||
           (!strcmp(key, "dropout") && nn_train_dropout_key(h + 6, &site) && site > 0);
}

int nn_train_set_hyper(const NnTrainSpec *s, NnVars *vars, const char *key, double value)
{
    int n = 0;
    for (int i = 0; i < s->nvars; i++) {
        NnTensor *t = s->vars[i].hyper && hyper_named(s->vars[i].name, key)
                          ? nnrt_vars_get(vars, s->vars[i].name) : NULL;
        if (t) {
            nnrt_tensor_set(t, 0, value);
            n++;
        }
    }
    return n;
}

void nn_train_set_total_steps(const NnTrainSpec *s, NnVars *vars, int64_t batches)
{
    for (int i = 0; i < s->nvars; i++) {
        NnTensor *t = s->vars[i].hyper && hyper_named(s->vars[i].name, "total_steps")
                          ? nnrt_vars_get(vars, s->vars[i].name) : NULL;
        if (t)
            nnrt_tensor_set(t, 0, (double)(s->epochs * batches * step_repeat(s, s->vars[i].name)));
    }
}

void nn_train_spec_fini(NnTrainSpec *s)
{
    nn_graph_free(s->forward);
    nn_graph_free(s->step);
    nn_graph_free(s->eval);
    for (int i = 1; i < s->nsteps; i++)
        nn_graph_free(s->steps[i].graph);
    s->nsteps = 0;
    s->forward = s->step = s->eval = NULL;
}

NnGraph *nn_lower_model(NnCtx *c, const NnProgram *p, const NnAst *model, bool training)
{
    NnGraph *g = nn_graph_new();
    Lower L;
    lower_init(&L, c, p, g);
    L.training = training;
    Arg *args = nn_arena_alloc(c->arena, (size_t)(model->params.count + 1) * sizeof *args);
    for (int i = 0; i < model->params.count; i++) {
        const NnAst *f = model->params.items[i];
        const NnAst *t = f->type;
        if (!t || !t->has_dims) {
            nn_error(&c->diags, f->loc, "model input '%s' needs a tensor type such as f32[N, 784]",
                     f->name);
            nn_graph_free(g);
            return NULL;
        }
        NnShape sh = {.rank = t->kids.count};
        if (sh.rank > NN_MAX_RANK) {
            nn_error(&c->diags, t->loc, "rank %d exceeds the maximum %d", sh.rank, NN_MAX_RANK);
            nn_graph_free(g);
            return NULL;
        }
        for (int k = 0; k < sh.rank; k++) {
            const NnAst *d = t->kids.items[k];
            if (d->kind == NN_AST_NUM && !(d->is_int && d->num >= 1 && d->num <= INT32_MAX)) {
                nn_error(&c->diags, d->loc, "a dimension must be a positive integer, got %g",
                         d->num);
                nn_graph_free(g);
                return NULL;
            }
            sh.dim[k] = d->kind == NN_AST_NUM ? (int64_t)d->num
                      : d->kind == NN_AST_NAME ? nn_sym_dim(g, d->name) : 1;
            if (sh.dim[k] == 0 && d->kind == NN_AST_NAME) {
                nn_error(&c->diags, d->loc, "%s", g->err);
                nn_graph_free(g);
                return NULL;
            }
        }
        NnDType dt = strcmp(t->name, "i32") == 0 ? NN_DT_I32
                   : strcmp(t->name, "f64") == 0 ? NN_DT_F64 : NN_DT_F32;
        NnId in = checked(&L, nn_ir_source(g, NN_OP_INPUT, f->name, dt, &sh, f->loc), t->loc);
        args[i] = (Arg){.name = f->name, .v = v_tensor(in), .loc = f->loc};
    }
    Val out = call_decl(&L, model, args, model->params.count, model->loc, model->name);
    if (out.kind != V_TENSOR) {
        nn_graph_free(g);
        return NULL;
    }
    nn_graph_add_output(g, "output", out.id);
    return g;
}
