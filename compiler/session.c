// The session behind nnc train, nnc eval and nnc repl (see session.h). The
// definitions are one PROGRAM node rebuilt as lines arrive (a name appears
// once: a redefinition replaces the item in place) and checked again by
// nn_sema; a line that fails to check is taken back out, so the session goes
// on as before. Weights live in one NnVars table shared by training and
// expressions, so `mlp(x)` at the prompt uses what `train` just learned.
#include "session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "init.h"

#define MAX_DATA 8

// A data block read for expressions (fashion.test.x), with the seed its
// splits were drawn with.
typedef struct DataSet {
    const NnAst *ast;
    NnSplits splits;
} DataSet;

struct NnSession {
    NnCtx own;          // used when the session made its context
    NnCtx *c;
    bool owns_ctx;
    NnOptions o;        // backend, threads, passes, quiet, verbose, metrics (no sets)
    NnOptions *cmdline; // nnc train / eval: the command line's options, sets and all
    FILE *out;
    NnAst *defs;        // PROGRAM: every definition, one item per name (several train blocks)
    const NnProgram *prog; // nn_sema of defs (or the caller's program); NULL: nothing loaded
    int lines;          // lines run so far: "<repl>:N" counts over the session
    NnVars vars;        // weights and optimizer state
    NnVars values;      // `name = expr` at the prompt
    NnTrainer *trainer; // the latest train block, prepared
    const char *opt_ident;   // optimizers that made the optimizer state in vars; NULL:
                             // unknown (none yet, or loaded from a checkpoint)
    const char **opt_state;  // that state's names
    int nopt_state;
    char *trainer_key;  // what it was prepared from (block, settings)
    // What runs expressions typed at the prompt: the interpreter unless
    // :backend chose otherwise (it prepares in microseconds; a JIT compiles
    // each expression anew, tens of milliseconds or more).
    const NnBackend *expr_be;
    DataSet data[MAX_DATA];
    int ndata;
    const char **names; // nn_session_names' storage
    int nnames;
};

static void session_init(NnSession *s, const NnOptions *o, FILE *out)
{
    if (o)
        s->o = *o;
    s->o.nsets = 0;
    s->o.file = NULL;
    s->o.weights = NULL;
    s->o.resume = false;
    s->out = out ? out : stdout;
    nnrt_vars_init(&s->vars);
    nnrt_vars_init(&s->values);
}

NnSession *nn_session_new(const NnOptions *o, FILE *out, FILE *diag)
{
    NnSession *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    session_init(s, o, out);
    nn_ctx_init(&s->own, diag ? diag : stderr);
    s->c = &s->own;
    s->owns_ctx = true;
    NnPaths paths; // an installed nnc's REPL imports the installed stdlib
    nn_driver_paths(s->c, &paths);
    s->c->stdlib_dir = paths.stdlib;
    return s;
}

NnSession *nn_session_open(NnCtx *c, const NnProgram *p, NnOptions *o)
{
    NnSession *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    session_init(s, o, stdout);
    s->cmdline = o;
    s->c = c;
    s->prog = p;
    return s;
}

static void drop_data(NnSession *s)
{
    for (int i = 0; i < s->ndata; i++)
        nn_splits_fini(&s->data[i].splits);
    s->ndata = 0;
}

static void drop_trainer(NnSession *s)
{
    nn_trainer_free(s->trainer);
    s->trainer = NULL;
    free(s->trainer_key);
    s->trainer_key = NULL;
}

void nn_session_free(NnSession *s)
{
    if (!s)
        return;
    drop_trainer(s);
    drop_data(s);
    nnrt_vars_fini(&s->vars);
    nnrt_vars_fini(&s->values);
    free(s->names);
    if (s->owns_ctx)
        nn_ctx_fini(&s->own);
    free(s);
}

NnCtx *nn_session_ctx(NnSession *s) { return s->c; }

int nn_session_compiles(const NnSession *s)
{
    (void)s;
    return nn_compiles;
}

// Each call reports its own errors: the count starts again, so the limit on
// printed errors applies per line, not per session.
static void fresh_diags(NnSession *s)
{
    s->c->diags.nerrors = 0;
    s->c->diags.count = 0;
}

// ---- definitions -----------------------------------------------------------

static bool is_definition(const NnAst *a)
{
    switch (a->kind) {
    case NN_AST_FN: case NN_AST_LAYER: case NN_AST_MODEL: case NN_AST_LOSS:
    case NN_AST_OPTIMIZER: case NN_AST_DATA: case NN_AST_EXTERN:
        return true;
    default:
        return false;
    }
}

static const char *kind_word(const NnAst *a)
{
    switch (a->kind) {
    case NN_AST_FN: return "fn";
    case NN_AST_LAYER: return "layer";
    case NN_AST_MODEL: return "model";
    case NN_AST_LOSS: return "loss";
    case NN_AST_OPTIMIZER: return "optimizer";
    case NN_AST_DATA: return "data";
    case NN_AST_EXTERN: return "extern fn";
    case NN_AST_TRAIN: return "train";
    default: return "item";
    }
}

// Whether two items define the same thing: the same name, or for train
// blocks the same model and data.
static bool same_item(const NnAst *a, const NnAst *b)
{
    if (a->kind == NN_AST_TRAIN || b->kind == NN_AST_TRAIN)
        return a->kind == b->kind && !strcmp(a->name, b->name) && !strcmp(a->name2, b->name2);
    if (a->kind == NN_AST_IMPORT || b->kind == NN_AST_IMPORT)
        return a->kind == b->kind && !a->name == !b->name &&
               !strcmp(a->name ? a->name : a->str, b->name ? b->name : b->str);
    return a->name && b->name && !strcmp(a->name, b->name);
}

static int find_item(const NnAst *defs, const NnAst *item)
{
    for (int i = 0; defs && i < defs->kids.count; i++)
        if (same_item(defs->kids.items[i], item))
            return i;
    return -1;
}

// Checks defs with `items` added (replacing items of the same name when
// replace is set); keeps the result only when it checks.
static bool add_items(NnSession *s, NnAst *const *items, int n, bool replace, NnLoc at)
{
    NnCtx *c = s->c;
    NnAst *defs = nn_ast_new(c, NN_AST_PROGRAM, s->defs ? s->defs->loc : at);
    bool *replaced = calloc((size_t)n + 1, sizeof *replaced);
    if (!replaced) {
        nn_error(&c->diags, at, "out of memory");
        return false;
    }
    for (int i = 0; s->defs && i < s->defs->kids.count; i++)
        nn_ast_push(c, &defs->kids, s->defs->kids.items[i]);
    if (!s->defs) {
        // A session starts with the standard library, as most files do.
        NnAst *std = nn_ast_new(c, NN_AST_IMPORT, (NnLoc){0});
        std->name = "std";
        nn_ast_push(c, &defs->kids, std);
    }
    for (int i = 0; i < n; i++) {
        int k = find_item(defs, items[i]);
        if (k >= 0 && items[i]->kind == NN_AST_IMPORT)
            continue; // imported already
        if (!replace)
            k = -1;
        if (k >= 0) {
            defs->kids.items[k] = items[i];
            replaced[i] = true;
        } else {
            nn_ast_push(c, &defs->kids, items[i]);
        }
    }
    // A name the program knew already (a redefinition, or one that shadows
    // the standard library) may change what compiled steps and read data
    // were made from; new names cannot.
    bool changes = false;
    for (int i = 0; i < n && s->prog; i++)
        changes = changes || replaced[i] ||
                  (items[i]->name && items[i]->kind != NN_AST_TRAIN &&
                   nn_sema_find(s->prog, items[i]->name));
    // nn_sema attaches each `grad f` to its extern f (as f's `a`); checking
    // the same externs again must start without the last check's.
    NnAst **grads = calloc((size_t)defs->kids.count + 1, sizeof *grads);
    if (!grads) {
        free(replaced);
        nn_error(&c->diags, at, "out of memory");
        return false;
    }
    for (int i = 0; i < defs->kids.count; i++)
        if (defs->kids.items[i]->kind == NN_AST_EXTERN) {
            grads[i] = defs->kids.items[i]->a;
            defs->kids.items[i]->a = NULL;
        }
    int errors = c->diags.nerrors;
    const NnProgram *p = nn_sema(c, defs);
    bool ok = p && c->diags.nerrors == errors;
    for (int i = 0; !ok && i < defs->kids.count; i++)
        if (defs->kids.items[i]->kind == NN_AST_EXTERN)
            defs->kids.items[i]->a = grads[i];
    free(grads);
    if (ok) {
        s->defs = defs;
        s->prog = p;
        for (int i = 0; i < n; i++)
            if (replaced[i] && items[i]->kind == NN_AST_TRAIN)
                fprintf(s->out, "redefined train %s on %s\n", items[i]->name, items[i]->name2);
            else if (replaced[i])
                fprintf(s->out, "redefined %s %s\n", kind_word(items[i]), items[i]->name);
        if (changes) {
            drop_trainer(s);
            drop_data(s);
        }
    }
    free(replaced);
    return ok;
}

bool nn_session_load_file(NnSession *s, const char *path)
{
    fresh_diags(s);
    NnSource *src = nn_source_load(s->c->arena, &s->c->diags, path);
    if (!src)
        return false;
    NnAst *ast = nn_parse(s->c, src);
    if (s->c->diags.nerrors)
        return false;
    return add_items(s, ast->kids.items, ast->kids.count, false, ast->loc);
}

// ---- values ----------------------------------------------------------------

static DataSet *data_set(NnSession *s, const NnAst *d)
{
    for (int i = 0; i < s->ndata; i++)
        if (s->data[i].ast == d)
            return &s->data[i];
    if (s->ndata == MAX_DATA) {
        nn_splits_fini(&s->data[0].splits);
        memmove(s->data, s->data + 1, sizeof s->data[0] * (MAX_DATA - 1));
        s->ndata--;
    }
    DataSet *ds = &s->data[s->ndata];
    memset(ds, 0, sizeof *ds);
    // Splits drawn as a run with the block's default seed draws them.
    if (!nn_driver_load_data(s->c, s->prog, d, nn_backend_find("interp"), 1, false, &ds->splits)) {
        nn_splits_fini(&ds->splits);
        return NULL;
    }
    ds->ast = d;
    s->ndata++;
    return ds;
}

typedef struct Resolve {
    NnSession *s;
    bool failed; // a data block failed to load (reported)
} Resolve;

// A kept value, or a data field by its path (fashion.test.x).
static const NnTensor *resolve(void *ctx, const char *name)
{
    Resolve *R = ctx;
    NnSession *s = R->s;
    const NnTensor *t = nnrt_vars_get(&s->values, name);
    if (t)
        return t;
    const char *dot = strchr(name, '.');
    if (!dot)
        return NULL;
    char dname[128];
    snprintf(dname, sizeof dname, "%.*s", (int)(dot - name), name);
    const NnDecl *d = nn_sema_find(s->prog, dname);
    if (!d || d->ast->kind != NN_AST_DATA)
        return NULL;
    const char *split = dot + 1, *dot2 = strchr(split, '.');
    if (!dot2)
        return NULL;
    char sname[64];
    snprintf(sname, sizeof sname, "%.*s", (int)(dot2 - split), split);
    DataSet *ds = data_set(s, d->ast);
    if (!ds) {
        R->failed = true;
        return NULL;
    }
    NnrtDataset *set = nn_splits_get(&ds->splits, sname);
    const char *field = dot2 + 1;
    if (!set)
        return NULL;
    if (!strcmp(field, "x"))
        return set->x;
    if (!strcmp(field, "label") || !strcmp(field, "y") ||
        (ds->splits.label && !strcmp(field, ds->splits.label)))
        return set->y;
    return NULL;
}


// Parses a line typed at the prompt (possibly several lines of a block).
static NnAst *parse_line(NnSession *s, const char *text)
{
    s->lines++;
    // Blank lines before the text make its locations read "<repl>:N".
    size_t len = strlen(text);
    char *buf = nn_arena_alloc(s->c->arena, len + (size_t)s->lines + 1);
    memset(buf, '\n', (size_t)s->lines - 1);
    memcpy(buf + s->lines - 1, text, len + 1);
    for (const char *p = text; *p; p++)
        s->lines += *p == '\n' && p[1];
    NnSource *src = nn_source_from_string(s->c->arena, "<repl>", buf);
    return nn_parse(s->c, src);
}

// Lowers an EXPR's expression and runs it on the interpreter (quick to
// prepare; a prompt's expressions are small).
static bool eval_ast(NnSession *s, NnAst *e, NnTensor **out, bool run, char *type, size_t n)
{
    NnCtx *c = s->c;
    if (!s->prog && !add_items(s, NULL, 0, false, e->loc))
        return false;
    Resolve R = {.s = s};
    NnQuery q;
    if (!nn_lower_query(c, s->prog, e, resolve, &R, &q) || R.failed) {
        nn_query_fini(&q);
        return false;
    }
    if (q.is_num) {
        NnDType dt = q.is_int || q.is_bool ? NN_DT_I32 : NN_DT_F32;
        double num = q.num;
        nn_query_fini(&q);
        NnTensor *t = nnrt_tensor_new(dt, 0, NULL);
        if (!t) {
            nn_error(&c->diags, e->loc, "out of memory");
            return false;
        }
        nnrt_tensor_set(t, 0, num);
        if (type)
            snprintf(type, n, "%s", nnrt_dtype_name(dt));
        if (out && run)
            *out = t;
        else
            nnrt_tensor_free(t);
        return true;
    }
    // The passes may hand back another graph; g is the one to free.
    NnGraph *g = q.graph;
    q.graph = NULL;
    if (type) {
        const NnNode *v = nn_node(g, nn_graph_output(g, "value"));
        nn_type_str(g, v->dtype, &v->shape, type, n);
    }
    bool ok = run && nn_driver_init_vars(c, q.vars, q.nvars, 1, &s->vars);
    NnPassOptions po = s->o.passes;
    po.stop = "opt";
    po.dump = NULL;
    if (ok)
        g = nn_passes_run(g, &po);
    const NnBackend *be = s->expr_be ? s->expr_be : &nn_backend_interp;
    NnExecOptions eo = {.threads = s->o.threads};
    NnExec *x = ok ? be->prepare(g, &eo) : NULL;
    if (x && be != &nn_backend_interp)
        nn_compiles++;
    NnTensor *res[8] = {0};
    if (ok && (!x || be->run(x, &s->vars, (NnTensor *const *)q.feeds, res) != NN_OK)) {
        nn_error(&c->diags, e->loc, "%s", nnrt_errmsg());
        ok = false;
    }
    if (ok && !(*out = nnrt_tensor_clone(res[0]))) {
        nn_error(&c->diags, e->loc, "out of memory");
        ok = false;
    }
    if (x)
        be->free(x);
    nn_graph_free(g);
    nn_query_fini(&q);
    return ok || (!run && c->diags.nerrors == 0);
}

// One expression statement from text, or NULL after reporting why not.
static NnAst *one_expr(NnSession *s, const char *text)
{
    NnAst *prog = parse_line(s, text);
    if (s->c->diags.nerrors)
        return NULL;
    if (prog->kids.count != 1 || prog->kids.items[0]->kind != NN_AST_EXPR) {
        nn_error(&s->c->diags, prog->kids.count ? prog->kids.items[0]->loc : prog->loc,
                 "expected one expression");
        return NULL;
    }
    return prog->kids.items[0]->a;
}

bool nn_session_eval(NnSession *s, const char *expr, NnTensor **out)
{
    fresh_diags(s);
    *out = NULL;
    NnAst *e = one_expr(s, expr);
    return e && eval_ast(s, e, out, true, NULL, 0);
}

bool nn_session_type(NnSession *s, const char *expr, char *buf, size_t n)
{
    fresh_diags(s);
    NnAst *e = one_expr(s, expr);
    return e && eval_ast(s, e, NULL, false, buf, n);
}

// ---- training --------------------------------------------------------------

static const NnAst *find_block(const NnSession *s, const char *model, const char *data)
{
    const NnAst *found = NULL;
    for (int i = 0; s->prog && i < s->prog->ntrains; i++) {
        const NnAst *t = s->prog->trains[i];
        if (!strcmp(t->name, model) && !strcmp(t->name2, data))
            found = t;
    }
    return found;
}

// Which optimizers a block runs ("adam", "sgd", "disc:adam,gen:adam"): state
// made by one (Adam's moments) is meaningless to another under the same
// names (net.dense1.w/v).
static const char *optimizer_ident(NnSession *s, const NnAst *block)
{
    const char *id = "";
    for (int i = 0; i < block->kids.count; i++) {
        const NnAst *k = block->kids.items[i];
        const NnAst *list = k->kind == NN_AST_STEP ? k : NULL;
        for (int j = 0; j < (list ? list->kids.count : 1); j++) {
            const NnAst *a = list ? list->kids.items[j] : k;
            if (a->kind != NN_AST_ARG || strcmp(a->name, "optimizer"))
                continue;
            const NnAst *v = a->a->kind == NN_AST_CALL ? a->a->a : a->a;
            id = nn_arena_printf(s->c->arena, "%s%s%s:%s", id, *id ? "," : "",
                                 list ? list->name : "", v->kind == NN_AST_NAME ? v->name : "?");
        }
    }
    return id;
}

// Drops the optimizer state of the last run (its step counter included),
// keeping weights and layer state.
static void drop_optimizer_state(NnSession *s)
{
    NnVars keep;
    nnrt_vars_init(&keep);
    for (int i = 0; i < s->vars.count; i++) {
        bool drop = false;
        for (int k = 0; k < s->nopt_state && !drop; k++)
            drop = !strcmp(s->opt_state[k], s->vars.names[i]);
        if (!drop && nnrt_vars_append(&keep, s->vars.names[i], s->vars.tensors[i]) == NN_OK)
            s->vars.tensors[i] = NULL; // moved
    }
    nnrt_vars_fini(&s->vars);
    s->vars = keep;
}

// Remembers which variables the trainer's optimizers own.
static void note_optimizer_state(NnSession *s, const char *ident)
{
    s->opt_ident = ident;
    s->nopt_state = 0;
    const NnTrainSpec *sp = s->trainer ? nn_trainer_spec(s->trainer) : NULL;
    if (!sp)
        return;
    s->opt_state = nn_arena_alloc(s->c->arena, (size_t)(sp->nvars + 1) * sizeof *s->opt_state);
    for (int i = 0; i < sp->nvars; i++)
        if (!sp->vars[i].trainable && !sp->vars[i].model_state && !sp->vars[i].hyper)
            s->opt_state[s->nopt_state++] = sp->vars[i].name;
}

static int train_block(NnSession *s, const NnAst *block, const NnSetting *sets, int nsets,
                       bool eval_only)
{
    const char *ident = optimizer_ident(s, block);
    if (!eval_only && s->opt_ident && strcmp(s->opt_ident, ident))
        drop_optimizer_state(s);
    NnOptions o = s->o;
    for (int i = 0; i < nsets && i < 31; i++)
        o.sets[i] = (NnSetting){strdup(sets[i].key), sets[i].value, false, sets[i].loc};
    o.nsets = nsets < 31 ? nsets : 31;
    // The trainer is kept while the block and the settings that shape its
    // graphs stay the same (see nn_train_run_setting).
    size_t klen = 64;
    for (int i = 0; i < o.nsets; i++)
        klen += strlen(o.sets[i].key) + strlen(o.sets[i].value) + 2;
    char *key = malloc(klen);
    if (!key) {
        nn_error(&s->c->diags, block->loc, "out of memory");
        for (int i = 0; i < o.nsets; i++)
            free((char *)o.sets[i].key);
        return 1;
    }
    int at = snprintf(key, klen, "%p", (const void *)block);
    for (int i = 0; i < o.nsets; i++)
        if (!nn_train_run_setting(o.sets[i].key) && !nn_train_hyper_setting(o.sets[i].key))
            at += snprintf(key + at, klen - (size_t)at, ";%s=%s", o.sets[i].key, o.sets[i].value);
    if (s->trainer_key && strcmp(s->trainer_key, key) != 0)
        drop_trainer(s);
    free(s->trainer_key);
    s->trainer_key = key;
    nn_interrupted = 0;
    int rc = nn_train_run(s->c, s->prog, block, &o, eval_only, &s->vars, &s->trainer);
    nn_interrupted = 0;
    if (!eval_only && s->trainer)
        note_optimizer_state(s, ident);
    for (int i = 0; i < o.nsets; i++)
        free((char *)o.sets[i].key);
    return rc;
}

bool nn_session_train(NnSession *s, const char *model, const char *data, const NnSetting *sets,
                      int nsets)
{
    fresh_diags(s);
    const NnAst *b = find_block(s, model, data);
    if (!b) {
        nn_error(&s->c->diags, (NnLoc){0}, "no train block for '%s' on '%s'", model, data);
        return false;
    }
    return train_block(s, b, sets, nsets, false) == 0;
}

bool nn_session_evaluate(NnSession *s, const char *model, const char *data)
{
    fresh_diags(s);
    const NnAst *b = find_block(s, model, data);
    if (!b) {
        nn_error(&s->c->diags, (NnLoc){0}, "no train block for '%s' on '%s'", model, data);
        return false;
    }
    return train_block(s, b, NULL, 0, true) == 0;
}

int nn_session_run_block(NnSession *s, int i, bool eval_only)
{
    NnOptions *o = s->cmdline ? s->cmdline : &s->o;
    if (!s->prog || i >= s->prog->ntrains) {
        nn_error(&s->c->diags, (NnLoc){0}, "%s has no train block",
                 o->file ? o->file : "the program");
        return 1;
    }
    // nnc train / eval: the command line's settings, --resume and --weights as given.
    return nn_train_run(s->c, s->prog, s->prog->trains[i], o, eval_only, &s->vars, NULL);
}

static bool is_block_setting(const char *k)
{
    static const char *const plain[] = {"loss", "optimizer", "metrics", "stop", "augment"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (!strcmp(plain[i], k))
            return true;
    return false;
}

void nn_session_count_lines(NnSession *s, int n) { s->lines += n; }

// Formats a `with` value as --set would take it.
static const char *setting_text(NnSession *s, const NnAst *v)
{
    if (v->kind == NN_AST_NUM)
        return nn_arena_printf(s->c->arena, "%.17g", v->num);
    if (v->kind == NN_AST_UNARY && v->op == NN_AOP_NEG && v->a->kind == NN_AST_NUM)
        return nn_arena_printf(s->c->arena, "%.17g", -v->a->num);
    if (v->kind == NN_AST_STR)
        return v->str;
    if (v->kind == NN_AST_BOOL)
        return v->num ? "true" : "false";
    return NULL;
}

// `train m on d ...` at the prompt. A block with a body replaces the
// session's block for m on d. `with k = v` runs that block once with
// overrides: numbers and strings as --set takes them (epochs, lr, ...), so the
// block and its compiled step stay; an expression (loss, optimizer, metrics,
// stop, augment) in a copy of the block, which compiles anew.
static bool train_stmt(NnSession *s, NnAst *t)
{
    NnCtx *c = s->c;
    const NnAst *base = find_block(s, t->name, t->name2);
    if (t->with_form && !base) {
        nn_error(&c->diags, t->loc, "no train block for '%s' on '%s' to run with these settings; "
                 "write one first: train %s on %s { loss = ..., optimizer = ... }", t->name,
                 t->name2, t->name, t->name2);
        return false;
    }
    // A block typed at the prompt (braces) replaces the session's block for
    // m on d, even when its body holds only settings.
    if (!t->with_form) {
        NnAst *items[1] = {t};
        NnAst *defs = s->defs;
        const NnProgram *prog = s->prog;
        if (!add_items(s, items, 1, true, t->loc))
            return false;
        if (train_block(s, find_block(s, t->name, t->name2), NULL, 0, false) == 0)
            return true;
        // A block that cannot even be prepared (unknown data, a bad setting)
        // is taken back out.
        if (!s->trainer) {
            s->defs = defs;
            s->prog = prog;
        }
        return false;
    }
    NnSetting sets[32];
    int nsets = 0;
    NnAst *copy = NULL;
    for (int j = 0; j < t->kids.count; j++) {
        NnAst *a = t->kids.items[j];
        const char *v = setting_text(s, a->a);
        int site;
        double rate = v ? strtod(v, NULL) : -1;
        if (nn_train_dropout_key(a->name, &site) &&
            !(v && a->a->kind != NN_AST_STR && rate >= 0 && rate < 1)) {
            nn_error(&c->diags, a->a->loc, "a dropout rate is a number in [0, 1)");
            return false;
        }
        if (!v && !is_block_setting(a->name)) {
            nn_error(&c->diags, a->a->loc, "'%s' is no train setting; as an optimizer argument "
                     "it takes a number", a->name);
            return false;
        }
        if (v) {
            if (nsets == 31) {
                nn_error(&c->diags, a->loc, "too many settings (at most 31)");
                return false;
            }
            sets[nsets++] = (NnSetting){a->name, v, false, a->loc};
            continue;
        }
        if (!copy) {
            copy = nn_ast_new(c, NN_AST_TRAIN, t->loc);
            *copy = *base;
            copy->kids = (NnAstList){0};
            for (int i = 0; i < base->kids.count; i++)
                nn_ast_push(c, &copy->kids, base->kids.items[i]);
        }
        int k = 0;
        while (k < copy->kids.count && !(copy->kids.items[k]->kind == NN_AST_ARG &&
                                         !strcmp(copy->kids.items[k]->name, a->name)))
            k++;
        if (k < copy->kids.count)
            copy->kids.items[k] = a;
        else
            nn_ast_push(c, &copy->kids, a);
    }
    return train_block(s, copy ? copy : base, sets, nsets, false) == 0;
}

// ---- prompt lines ----------------------------------------------------------

static bool assign_stmt(NnSession *s, NnAst *st)
{
    NnCtx *c = s->c;
    if (st->kids.count != 1 || st->kids.items[0]->kind != NN_AST_NAME) {
        nn_error(&c->diags, st->loc, "at the prompt, assign to one name: x = expr");
        return false;
    }
    const char *name = st->kids.items[0]->name;
    NnTensor *t = NULL;
    char type[96];
    if (!eval_ast(s, st->a, &t, true, type, sizeof type))
        return false;
    if (nnrt_vars_put(&s->values, name, t) != NN_OK) {
        nn_error(&c->diags, st->loc, "%s", nnrt_errmsg());
        return false;
    }
    fprintf(s->out, "%s: %s\n", name, type);
    return true;
}

bool nn_session_run(NnSession *s, const char *text)
{
    fresh_diags(s);
    NnAst *prog = parse_line(s, text);
    if (s->c->diags.nerrors)
        return false;
    bool ok = true;
    for (int i = 0; i < prog->kids.count && ok; i++) {
        NnAst *item = prog->kids.items[i];
        if (is_definition(item) || item->kind == NN_AST_IMPORT) {
            // Consecutive definitions check together (they may refer to each other).
            int j = i;
            while (j + 1 < prog->kids.count && (is_definition(prog->kids.items[j + 1]) ||
                                                prog->kids.items[j + 1]->kind == NN_AST_IMPORT))
                j++;
            ok = add_items(s, prog->kids.items + i, j - i + 1, true, item->loc);
            i = j;
        } else if (item->kind == NN_AST_TRAIN) {
            ok = train_stmt(s, item);
        } else if (item->kind == NN_AST_EXPR) {
            NnTensor *t = NULL;
            ok = eval_ast(s, item->a, &t, true, NULL, 0);
            if (ok)
                nn_value_print(s->out, t);
            nnrt_tensor_free(t);
        } else if (item->kind == NN_AST_ASSIGN) {
            ok = assign_stmt(s, item);
        } else if (item->kind != NN_AST_ERROR) {
            nn_error(&s->c->diags, item->loc, "%s is not allowed at the prompt",
                     nn_ast_kind_name(item->kind));
            ok = false;
        }
    }
    return ok && s->c->diags.nerrors == 0;
}

bool nn_session_backend(NnSession *s, const char *name)
{
    fresh_diags(s);
    if (name) {
        const NnBackend *be = nn_backend_find(name);
        if (!be) {
            nn_error(&s->c->diags, (NnLoc){0}, "unknown or unavailable backend '%s' (have: "
                     "interp%s)", name, nn_backend_find("jit") ? ", jit" : "");
            return false;
        }
        s->expr_be = be;
        s->o.backend = be->name; // the next train compiles for it (a static string)
    }
    const NnBackend *train = nn_driver_backend(&s->o);
    fprintf(s->out, "expressions on %s, training on %s\n",
            s->expr_be ? s->expr_be->name : nn_backend_interp.name, train ? train->name : "?");
    return true;
}

// ---- checkpoints -----------------------------------------------------------

bool nn_session_save(NnSession *s, const char *path)
{
    fresh_diags(s);
    if (s->vars.count == 0) {
        nn_error(&s->c->diags, (NnLoc){0}, "no weights to save yet: train, or call a model");
        return false;
    }
    // Run-time hyperparameters ("hyper/lr", "disc/hyper/lr") belong to a run,
    // not the model: checkpoints leave them out, as nnc train's do.
    NnVars keep;
    nnrt_vars_init(&keep);
    bool ok = true;
    for (int i = 0; i < s->vars.count && ok; i++) {
        const char *name = s->vars.names[i];
        if (!strncmp(name, "hyper/", 6) || strstr(name, "/hyper/"))
            continue;
        NnTensor *t = nnrt_tensor_clone(s->vars.tensors[i]);
        ok = t && nnrt_vars_put(&keep, name, t) == NN_OK;
    }
    ok = ok && nnrt_safetensors_save(path, &keep, NULL) == NN_OK;
    if (!ok)
        nn_error(&s->c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
    nnrt_vars_fini(&keep);
    return ok;
}

// Every tensor of the checkpoint replaces the session's tensor of that name,
// all or nothing: one whose type differs from the session's refuses the file.
bool nn_session_load_weights(NnSession *s, const char *path)
{
    fresh_diags(s);
    NnVars in;
    if (nnrt_safetensors_load(path, &in, NULL) != NN_OK) {
        nn_error(&s->c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        return false;
    }
    for (int i = 0; i < in.count; i++) {
        const NnTensor *old = nnrt_vars_get(&s->vars, in.names[i]), *t = in.tensors[i];
        if (old && (old->dtype != t->dtype || !nnrt_tensor_same_shape(old, t))) {
            char a[64], b[64];
            NnShape sa = {.rank = t->rank}, sb = {.rank = old->rank};
            memcpy(sa.dim, t->shape, sizeof(int64_t) * (size_t)t->rank);
            memcpy(sb.dim, old->shape, sizeof(int64_t) * (size_t)old->rank);
            nn_error(&s->c->diags, (NnLoc){0}, "checkpoint '%s' does not match the session: "
                     "tensor '%s' is %s there, %s here", path, in.names[i],
                     nn_type_str(NULL, t->dtype, &sa, a, sizeof a),
                     nn_type_str(NULL, old->dtype, &sb, b, sizeof b));
            nnrt_vars_fini(&in);
            return false;
        }
    }
    bool ok = true;
    for (int i = 0; i < in.count && ok; i++) {
        NnTensor *t = nnrt_tensor_clone(in.tensors[i]);
        ok = t && nnrt_vars_put(&s->vars, in.names[i], t) == NN_OK;
    }
    if (!ok)
        nn_error(&s->c->diags, (NnLoc){0}, "out of memory");
    nnrt_vars_fini(&in);
    // Whatever optimizer made the checkpoint's state, training continues it.
    s->opt_ident = NULL;
    return ok;
}

void nn_session_reset(NnSession *s)
{
    fresh_diags(s);
    drop_trainer(s);
    nnrt_vars_fini(&s->vars);
    nnrt_vars_fini(&s->values);
    nnrt_vars_init(&s->vars);
    nnrt_vars_init(&s->values);
    s->opt_ident = NULL;
    s->nopt_state = 0;
}

// ---- introspection ---------------------------------------------------------

bool nn_session_ir(NnSession *s, const char *name, const char *stage)
{
    fresh_diags(s);
    NnCtx *c = s->c;
    const NnDecl *d = s->prog ? nn_sema_find(s->prog, name) : NULL;
    const NnAst *block = NULL;
    for (int i = 0; s->prog && i < s->prog->ntrains; i++)
        if (!strcmp(s->prog->trains[i]->name, name))
            block = s->prog->trains[i];
    if (!d || d->ast->kind != NN_AST_MODEL) {
        nn_error(&c->diags, (NnLoc){0}, "'%s' is not a model", name);
        return false;
    }
    if (!strcmp(stage, "ast")) {
        nn_ast_print(s->out, d->ast);
        return true;
    }
    if (!strcmp(stage, "ir") || !block) {
        if (strcmp(stage, "ir")) {
            nn_error(&c->diags, (NnLoc){0}, "stage '%s' needs a train block for '%s' (only ast "
                     "and ir show a model alone)", stage, name);
            return false;
        }
        NnGraph *g = nn_lower_model(c, s->prog, d->ast, false);
        if (g)
            nn_ir_print(s->out, g);
        nn_graph_free(g);
        return g != NULL;
    }
    static const char *const stages[] = {"grad", "opt", "fused", "llvm", "asm"};
    bool known = false;
    for (int i = 0; i < 5; i++)
        known = known || !strcmp(stages[i], stage);
    if (!known) {
        nn_error(&c->diags, (NnLoc){0}, "unknown stage '%s' (ast, ir, grad, opt, fused, llvm, asm)",
                 stage);
        return false;
    }
    bool code = !strcmp(stage, "llvm") || !strcmp(stage, "asm");
#ifndef NN_WITH_LLVM
    if (code) {
        nn_error(&c->diags, (NnLoc){0}, "this nnc was built without LLVM; stage %s is "
                 "unavailable", stage);
        return false;
    }
#endif
    NnOptions o = s->o;
    NnTrainSpec spec = {0};
    NnSplits splits = {0};
    bool ok = nn_driver_setup_block(c, s->prog, block, &o, true, &spec, &splits);
    if (ok && strcmp(stage, "grad")) {
        NnPassOptions po = o.passes;
        po.stop = code ? "fused" : stage;
        spec.step = nn_passes_run(spec.step, &po);
    }
    if (ok && !code)
        nn_ir_print(s->out, spec.step);
#ifdef NN_WITH_LLVM
    if (ok && code) {
        // N as a training batch has it: the batch, or all of a smaller split (as nnc ir).
        const NnrtDataset *tr = nn_splits_get(&splits, "train");
        int64_t n = tr ? tr->count : 0, symv[NN_MAX_SYMS];
        for (int k = 0; k < NN_MAX_SYMS; k++)
            symv[k] = n > 0 && n < spec.batch ? n : spec.batch;
        fflush(s->out);
        if (!(ok = nn_llvm_dump(spec.step, symv, !strcmp(stage, "asm"), s->out)))
            nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
    }
#endif
    for (int i = 0; i < o.nsets; i++)
        free((char *)o.sets[i].key);
    nn_splits_fini(&splits);
    nn_train_spec_fini(&spec);
    return ok;
}

// fashion.train.x, fashion.test.label, ...: the splits a data block names
// (assigned from a loader, or made by `split`; else the one `train` split)
// and its fields, read from the block without running it.
static int data_paths(NnSession *s, const NnAst *d, const char **names, int n, int max)
{
    const char *splits[NN_MAX_SPLITS * 2];
    int ns = 0;
    const char *label = "label";
    for (int i = 0; i < d->kids.count; i++) {
        const NnAst *st = d->kids.items[i];
        if (st->kind == NN_AST_ASSIGN && st->kids.count == 1 &&
            st->kids.items[0]->kind == NN_AST_NAME) {
            const char *t = st->kids.items[0]->name;
            if (!strcmp(t, "y"))
                label = "y";
            else if (strcmp(t, "x") && strcmp(t, "label") && strcmp(t, "classes") &&
                     ns < NN_MAX_SPLITS * 2)
                splits[ns++] = t;
        } else if (st->kind == NN_AST_SPLIT) {
            for (int k = 0; k < st->kids.count && ns < NN_MAX_SPLITS * 2; k++)
                splits[ns++] = st->kids.items[k]->name;
        }
    }
    if (ns == 0)
        splits[ns++] = "train";
    for (int i = 0; i < ns; i++) {
        bool dup = false;
        for (int k = 0; k < i; k++)
            dup = dup || !strcmp(splits[k], splits[i]);
        for (int f = 0; f < 2 && !dup && n < max; f++)
            names[n++] = nn_arena_printf(s->c->arena, "%s.%s.%s", d->name, splits[i],
                                         f ? label : "x");
    }
    return n;
}

int nn_session_names(NnSession *s, const char **names, int max)
{
    int n = 0;
    for (int i = 0; s->prog && i < s->prog->ndecls && n < max; i++) {
        const NnDecl *d = &s->prog->decls[i];
        bool dup = false;
        for (int k = 0; k < n && !dup; k++)
            dup = !strcmp(names[k], d->name);
        if (!dup)
            names[n++] = d->name;
        if (d->ast->kind == NN_AST_DATA)
            n = data_paths(s, d->ast, names, n, max);
    }
    for (int i = 0; i < s->values.count && n < max; i++)
        names[n++] = s->values.names[i];
    return n;
}

// ---- input -----------------------------------------------------------------

bool nn_session_incomplete(const char *text)
{
    int depth = 0;
    char quote = 0;
    for (const char *p = text; *p; p++) {
        if (quote) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == quote || *p == '\n')
                quote = 0;
            continue;
        }
        if (*p == '#') {
            while (p[1] && p[1] != '\n')
                p++;
        } else if (*p == '"') {
            quote = '"';
        } else if (*p == '(' || *p == '[' || *p == '{') {
            depth++;
        } else if (*p == ')' || *p == ']' || *p == '}') {
            depth--;
        }
    }
    // A closer too many is an error for the parser to report, not more input.
    return depth > 0;
}
