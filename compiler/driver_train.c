// `nnc train` and `nnc eval`: loads the data block, lowers the train block to
// its step and eval graphs, optimizes them, prepares them on the chosen
// backend and hands the runtime's training loop callbacks that run them.
// Parameters and optimizer state live in one NnVars table that the compiled
// step updates in place; checkpoints are that table.
#include "driver.h"

#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dist.h"
#include "init.h"
#include "progress.h"
#include "savefile.h"
#include "session.h"
#include "train.h"

volatile sig_atomic_t nn_interrupted;
int nn_compiles;

typedef struct Runner {
    const NnBackend *be;
    NnExec *step, *eval;
    NnVars *vars;                // the caller's table (a session's weights)
    const NnTrainSpec *spec;
    NnExec **steps;              // a block of steps: one executable each (steps[0] is step)
    int *real, *fake;            // output index of each step's "real"/"fake"; -1: none
    int *stat;                   // index of each step's first value in stats; -1: none
    int nstats;
    const char *stat_names[NNRT_MAX_STATS];
    double stats[NNRT_MAX_STATS];
    int lr_out;                  // index of step 0's output "lr"; -1: none
    double lr;                   // the learning rate step 0 last ran with
} Runner;

// Index of graph output `name`, or -1.
static int output_index(const NnGraph *g, const char *name)
{
    for (int k = 0; k < g->noutputs; k++)
        if (!strcmp(g->outputs[k].name, name))
            return k;
    return -1;
}

// Runs every step of a block on the batch in declared order, each `repeat`
// times. Stats: each step's mean loss over its repeats ("disc.loss"), and the
// discriminator's mean output on real and generated data ("disc.real",
// "disc.fake"); *loss is the sum of the steps' losses, so divergence anywhere
// stops training.
static NnStatus cb_steps(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, double *loss)
{
    Runner *R = ctx;
    NnTensor *in[2] = {(NnTensor *)x, (NnTensor *)y}, *out[4];
    double total = 0;
    if (nn_interrupted)
        return nnrt_fail(NN_ERR_RUNTIME, "interrupted");
    for (int i = 0; i < R->spec->nsteps; i++) {
        int rep = R->spec->steps[i].repeat;
        double sum = 0, real = 0, fake = 0;
        for (int r = 0; r < rep; r++) {
            NnStatus st = R->be->run(R->steps[i], R->vars, in, out);
            if (st != NN_OK)
                return st;
            sum += nnrt_tensor_get(out[0], 0);
            if (i == 0 && R->lr_out >= 0)
                R->lr = nnrt_tensor_get(out[R->lr_out], 0);
            real += R->real[i] > 0 ? nnrt_tensor_get(out[R->real[i]], 0) : 0;
            fake += R->fake[i] > 0 ? nnrt_tensor_get(out[R->fake[i]], 0) : 0;
        }
        total += sum / rep;
        if (R->stat[i] >= 0)
            R->stats[R->stat[i]] = sum / rep;
        if (R->stat[i] >= 0 && R->real[i] > 0) {
            R->stats[R->stat[i] + 1] = real / rep;
            R->stats[R->stat[i] + 2] = fake / rep;
        }
    }
    (void)n;
    *loss = total;
    return NN_OK;
}

static NnStatus cb_step(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, double *loss)
{
    Runner *R = ctx;
    NnTensor *in[2] = {(NnTensor *)x, (NnTensor *)y}, *out[2];
    // Ctrl-C in the REPL: stop before the next batch, weights as they are.
    if (nn_interrupted)
        return nnrt_fail(NN_ERR_RUNTIME, "interrupted");
    NnStatus st = R->be->run(R->step, R->vars, in, out);
    if (st == NN_OK)
        *loss = nnrt_tensor_get(out[0], 0);
    if (st == NN_OK && R->lr_out >= 0)
        R->lr = nnrt_tensor_get(out[R->lr_out], 0);
    return st;
}

static NnStatus cb_predict(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n,
                           NnTensor *out, double *loss)
{
    Runner *R = ctx;
    NnTensor *in[2] = {(NnTensor *)x, (NnTensor *)y}, *res[2];
    NnStatus st = R->be->run(R->eval, R->vars, in, res);
    if (st != NN_OK)
        return st;
    *loss = y ? nnrt_tensor_get(res[0], 0) : NAN;
    const NnTensor *o = res[1];
    int64_t w = o->numel / (o->shape[0] ? o->shape[0] : 1);
    int64_t ow = out->numel / (out->shape[0] ? out->shape[0] : 1);
    if (w != ow)
        return nnrt_fail(NN_ERR_SHAPE, "model output has %lld values per sample, expected %lld",
                         (long long)w, (long long)ow);
    for (int64_t i = 0; i < n * w; i++)
        nnrt_tensor_set(out, i, nnrt_tensor_get(o, i));
    return NN_OK;
}

// Run-time hyperparameters belong to the run, not the model: no snapshot or
// checkpoint holds them, so resuming with another learning rate takes it.
static NnStatus copy_vars(const NnVars *src, NnVars *dst, bool params_only, const NnTrainSpec *s)
{
    for (int i = 0; i < src->count; i++) {
        bool model = false, hyper = false; // weights and layer state, not optimizer state
        for (int k = 0; k < s->nvars; k++)
            if (strcmp(s->vars[k].name, src->names[i]) == 0) {
                model = s->vars[k].trainable || s->vars[k].model_state;
                hyper = s->vars[k].hyper;
            }
        if ((params_only && !model) || hyper)
            continue;
        NnTensor *t = nnrt_tensor_clone(src->tensors[i]);
        if (!t || nnrt_vars_put(dst, src->names[i], t) != NN_OK)
            return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    return NN_OK;
}

static NnStatus cb_snapshot(void *ctx, NnVars *out)
{
    Runner *R = ctx;
    return copy_vars(R->vars, out, true, R->spec);
}

static NnStatus cb_checkpoint_vars(void *ctx, NnVars *out)
{
    Runner *R = ctx;
    return copy_vars(R->vars, out, false, R->spec);
}

static NnStatus cb_restore(void *ctx, const NnVars *in)
{
    Runner *R = ctx;
    for (int i = 0; i < in->count; i++) {
        NnTensor *t = nnrt_vars_get(R->vars, in->names[i]);
        if (t && t->dtype == in->tensors[i]->dtype && nnrt_tensor_same_shape(t, in->tensors[i]))
            memcpy(t->data, in->tensors[i]->data, nnrt_tensor_nbytes(t));
    }
    return NN_OK;
}

// Initializes the variables vars lacks (all of them for a fresh table) and
// those it holds with another type; a session's trained weights stay.
bool nn_driver_init_vars(NnCtx *c, const NnParamInit *vs, int n, uint64_t seed, NnVars *vars)
{
    for (int i = 0; i < n; i++) {
        const NnParamInit *v = &vs[i];
        const NnTensor *old = nnrt_vars_get(vars, v->name);
        // Run-time hyperparameters start every run at the spec's values.
        if (old && !v->hyper && old->dtype == v->dtype && old->rank == v->shape.rank &&
            !memcmp(old->shape, v->shape.dim, sizeof(int64_t) * (size_t)old->rank))
            continue;
        NnTensor *t = nnrt_tensor_new(v->dtype, v->shape.rank, v->shape.dim);
        if (!t || nnrt_init_fill(t, v->init, v->args, v->nargs, seed, v->name) != NN_OK ||
            nnrt_vars_put(vars, v->name, t) != NN_OK) {
            nn_error(&c->diags, v->loc, "cannot initialize '%s': %s", v->name, nnrt_errmsg());
            return false;
        }
    }
    return true;
}

static NnExec *prepare(NnCtx *c, const NnBackend *be, NnGraph **g, NnOptions *o, int64_t batch,
                       NnLoc loc)
{
    NnPassOptions po = o->passes;
    // The JIT fuses a training step itself, after cutting it so that the batch
    // can split across threads for the whole step (ir/shard.c).
    bool cut = strcmp(be->name, "jit") == 0 && (*g)->nupdates > 0;
    if (!po.stop)
        po.stop = strcmp(be->name, "interp") == 0 || cut ? "opt" : "fused";
    *g = nn_passes_run(*g, &po);
    NnExecOptions eo = {.threads = o->threads, .verbose = o->verbose, .passes = &o->passes,
                        .batch = batch};
    NnExec *x = be->prepare(*g, &eo);
    if (!x)
        nn_error(&c->diags, loc, "backend '%s' cannot prepare the graph: %s", be->name,
                 nnrt_errmsg());
    return x;
}

// Prepares every step of a block and names the values each batch reports.
static bool prepare_steps(NnCtx *c, const NnBackend *be, NnTrainSpec *spec, NnOptions *o,
                          Runner *R)
{
    int n = spec->nsteps;
    R->steps = calloc((size_t)n, sizeof *R->steps);
    R->real = calloc((size_t)n, sizeof *R->real);
    R->fake = calloc((size_t)n, sizeof *R->fake);
    R->stat = calloc((size_t)n, sizeof *R->stat);
    if (!R->steps || !R->real || !R->fake || !R->stat) {
        nn_error(&c->diags, spec->ast->loc, "out of memory");
        return false;
    }
    for (int i = 0; i < n; i++) {
        NnGraph **g = nn_train_step_graph(spec, i);
        if (!(R->steps[i] = prepare(c, be, g, o, spec->batch, spec->steps[i].ast->loc)))
            return false;
        if (i == 0)
            R->step = R->steps[0];
        R->real[i] = R->fake[i] = -1;
        for (int k = 0; k < (*g)->noutputs; k++) {
            if (!strcmp((*g)->outputs[k].name, "real"))
                R->real[i] = k;
            if (!strcmp((*g)->outputs[k].name, "fake"))
                R->fake[i] = k;
        }
        if (R->fake[i] < 0)
            R->real[i] = -1;
    }
    // A step's values are all shown or none, so the table never splits them.
    static const char *const kinds[] = {"loss", "real", "fake"};
    for (int i = 0; i < n; i++) {
        int want = R->real[i] > 0 ? 3 : 1;
        R->stat[i] = R->nstats + want <= NNRT_MAX_STATS ? R->nstats : -1;
        for (int k = 0; R->stat[i] >= 0 && k < want; k++)
            R->stat_names[R->nstats++] = nn_arena_printf(c->arena, "%s.%s",
                                                         spec->steps[i].name, kinds[k]);
    }
    return true;
}

bool nn_driver_augment_opts(NnCtx *c, const NnAst *list, NnrtAugment *a)
{
    if (!list)
        return true;
    for (int i = 0; i < list->kids.count; i++) {
        const NnAst *e = list->kids.items[i];
        const char *fn = e->kind == NN_AST_CALL && e->a->kind == NN_AST_NAME ? e->a->name
                       : e->kind == NN_AST_NAME ? e->name : "";
        double v = 0;
        if (e->kind == NN_AST_CALL && e->kids.count == 1 && e->kids.items[0]->kind == NN_AST_NUM)
            v = e->kids.items[0]->num;
        // Ranges keep every value meaningful and the pixel shift within an int.
        if (strcmp(fn, "random_rotation") == 0 && v > 0 && v <= 180)
            a->rotate_deg = v;
        else if (strcmp(fn, "random_shift") == 0 && v >= 1 && v <= 65536 && v == (int)v)
            a->shift_px = (int)v;
        else if (strcmp(fn, "random_flip") == 0 || strcmp(fn, "hflip") == 0)
            a->hflip = true;
        else if (strcmp(fn, "gaussian_noise") == 0 && v > 0 && v <= 1e6)
            a->noise_std = v;
        else {
            nn_error(&c->diags, e->loc, "unknown augmentation or value out of range; use "
                     "random_rotation(DEG, 0 < DEG <= 180), random_shift(PIXELS, 1 to 65536), "
                     "random_flip or gaussian_noise(STD, 0 < STD <= 1e6)");
            return false;
        }
    }
    return true;
}

// A classifier has as many classes as its output scores (not as its labels
// happen to name); every label must be one of them.
static bool check_labels(NnCtx *c, const NnTrainSpec *spec, NnSplits *splits)
{
    if (!spec->classify)
        return true;
    const NnNode *o = nn_node(spec->eval, nn_graph_output(spec->eval, "output"));
    int64_t classes = o->shape.dim[o->shape.rank - 1];
    for (int k = 0; k < splits->count; k++) {
        // Labels read from a file know their byte offset or line there.
        if (splits->ds[k].y_at) {
            if (nnrt_dataset_check_labels(&splits->ds[k], (int)classes) == NN_OK)
                continue;
            nn_error(&c->diags, splits->label_loc[k].src ? splits->label_loc[k] : spec->ast->loc,
                     "%s (the outputs of model '%s')", nnrt_errmsg(), spec->model);
            return false;
        }
        const NnTensor *y = splits->ds[k].y;
        for (int64_t i = 0; y && y->dtype == NN_DT_I32 && i < y->numel; i++) {
            int32_t v = ((const int32_t *)y->data)[i];
            if (v >= 0 && v < classes)
                continue;
            const char *file = splits->ds[k].y_file;
            char *const *names = v >= 0 && v < splits->ds[k].num_classes
                                     ? splits->ds[k].class_names : NULL;
            nn_error(&c->diags, file || splits->label_loc[k].src ? splits->label_loc[k]
                                                                 : spec->ast->loc,
                     "label %d%s%s%s of sample %lld in %s%s%s is outside 0..%lld: model '%s' "
                     "scores %lld classes", v, names ? " ('" : "", names ? names[v] : "",
                     names ? "')" : "", (long long)i, file ? "'" : "split '",
                     file ? file : splits->names[k], "'", (long long)classes - 1, spec->model,
                     (long long)classes);
            return false;
        }
    }
    return true;
}

// Lowers the first train block against its data. Fills spec and splits.
bool nn_driver_setup(NnCtx *c, const NnProgram *p, NnOptions *o, bool shapes_only,
                     NnTrainSpec *spec, NnSplits *splits)
{
    if (p->ntrains == 0) {
        nn_error(&c->diags, (NnLoc){0}, "%s has no train block", o->file);
        return false;
    }
    return nn_driver_setup_block(c, p, p->trains[0], o, shapes_only, spec, splits);
}

bool nn_driver_setup_block(NnCtx *c, const NnProgram *p, const NnAst *t, NnOptions *o,
                           bool shapes_only, NnTrainSpec *spec, NnSplits *splits)
{
    const NnDecl *dd = nn_sema_find(p, t->name2);
    if (!dd || dd->ast->kind != NN_AST_DATA) {
        const char *near = nn_sema_suggest(p, t->name2, NULL, 0);
        nn_error(&c->diags, t->loc, "'%s' is not a data block%s", t->name2,
                 nn_sema_hint(c, near));
        return false;
    }
    if (!nn_train_check_sets(c, o->sets, o->nsets))
        return false;
    if (o->has_seed && o->nsets < 32) {
        static char buf[32];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->seed);
        o->sets[o->nsets++] = (NnSetting){strdup("seed"), buf, false, {0}};
    }
    // Data generation and splits follow the run's seed: --seed, --set seed=,
    // else the train block's `seed = N`, else 1.
    uint64_t seed = 1;
    for (int i = 0; i < t->kids.count; i++) {
        const NnAst *a = t->kids.items[i];
        if (a->kind == NN_AST_ARG && !strcmp(a->name, "seed") && a->a->kind == NN_AST_NUM &&
            a->a->num >= 0 && a->a->num <= 9007199254740992.0)
            seed = (uint64_t)a->a->num; // other values get their diagnostic with the settings
    }
    for (int i = 0; i < o->nsets; i++)
        if (!strcmp(o->sets[i].key, "seed"))
            seed = strtoull(o->sets[i].value, NULL, 10);
    if (!nn_driver_load_data(c, p, dd->ast, nn_backend_find("interp"), seed, shapes_only, splits))
        return false;
    // The model sees one sample of each field: the full shapes less the count.
    int k = (int)(nn_splits_get(splits, "train") - splits->ds);
    NnField f[2];
    int nfields = 0;
    for (int i = 0; i < 2; i++) {
        NnField full;
        // Data for a generator may have no label: x is the only field then.
        if (!nn_splits_field(splits, k, i, &full))
            break;
        nfields++;
        f[i] = (NnField){full.name, full.dtype, {.rank = full.sample.rank - 1}};
        memcpy(f[i].sample.dim, full.sample.dim + 1, sizeof(int64_t) * (size_t)f[i].sample.rank);
    }
    if (!nn_lower_train(c, p, t, f, nfields, o->sets, o->nsets, spec))
        return false;
    return check_labels(c, spec, splits);
}

// Finds an unusable checkpoint path before any training time is spent: a
// missing or unwritable directory, or something that is not a regular file
// (a device, a directory) that saving would replace.
static bool check_writable(NnCtx *c, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    bool ok = dir && access(dir, W_OK | X_OK) == 0;
    if (!ok)
        nn_error(&c->diags, (NnLoc){0}, "cannot save checkpoints to '%s': directory '%s' %s", path,
                 dir ? dir : "?", errno == ENOENT ? "does not exist" : "is not writable");
    else if (nnrt_savefile_check(path) != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "cannot save checkpoints: %s", nnrt_errmsg());
        ok = false;
    }
    free(dir);
    return ok;
}

// Sets every variable of vars (weights and optimizer state, not the run-time
// hyperparameters) from the checkpoint at path.
static bool load_vars(NnCtx *c, const char *path, Runner *R)
{
    NnVars loaded, expected;
    nnrt_vars_init(&expected);
    // load initializes `loaded` and empties it on failure, so one fini fits all paths.
    bool ok = nnrt_safetensors_load(path, &loaded, NULL) == NN_OK &&
              copy_vars(R->vars, &expected, false, R->spec) == NN_OK &&
              nnrt_checkpoint_check(path, &loaded, &expected) == NN_OK &&
              cb_restore(R, &loaded) == NN_OK;
    if (!ok)
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
    nnrt_vars_fini(&loaded);
    nnrt_vars_fini(&expected);
    return ok;
}

static bool final_eval(NnCtx *c, const NnrtTrainCallbacks *cb, const NnrtDataset *ds,
                       const char *split, const NnrtTrainOptions *to)
{
    NnrtEval e;
    NnrtConfusion conf = {0};
    bool cls = to->task == NNRT_TASK_CLASSIFY;
    NnrtJsonl log = {0};
    bool ok = (!cls || nnrt_confusion_init(&conf, to->num_classes) == NN_OK) &&
              nnrt_evaluate(cb, ds, to, split, 0, &e, cls ? &conf : NULL) == NN_OK &&
              (!to->metrics_path || (nnrt_jsonl_open(&log, to->metrics_path, true) == NN_OK &&
                                     nnrt_jsonl_write(&log, &e) == NN_OK &&
                                     nnrt_jsonl_close(&log) == NN_OK));
    if (!ok)
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
    else if (!to->quiet)
        nnrt_eval_print(stdout, &e);
    nnrt_confusion_fini(&conf);
    return ok;
}

// A language model on text(): its cross-entropy in bits per character next
// to the unigram baseline (byte frequencies of the training text).
static void report_bits(const NnrtDataset *train, const NnrtTrainOptions *to,
                        const NnrtTrainResult *res)
{
    const NnrtEval *e = res->has_test ? &res->test : res->has_val ? &res->val : NULL;
    const NnrtDataset *ds = res->has_test ? to->test : to->val;
    if (!e || !ds || isnan(e->loss))
        return;
    printf("%s: %.3f bits per character, unigram baseline %.3f (%d characters)\n", e->split,
           e->loss / log(2.0), nnrt_text_unigram_bits(train, ds), train->num_classes);
}

// Keeps the first n samples of ds (the `limit` and `eval_limit` settings);
// n = 0 or a missing split keeps everything.
static bool keep_head(NnCtx *c, NnrtDataset *ds, int64_t n, NnLoc loc)
{
    if (!ds || n <= 0 || n >= ds->count)
        return true;
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    NnrtDataset sub;
    for (int64_t i = 0; idx && i < n; i++)
        idx[i] = i;
    if (!idx || nnrt_dataset_subset(ds, idx, n, &sub) != NN_OK) {
        free(idx);
        nn_error(&c->diags, loc, "%s", nnrt_errmsg());
        return false;
    }
    free(idx);
    nnrt_dataset_fini(ds);
    *ds = sub;
    return true;
}

struct NnTrainer {
    const NnAst *block;
    NnTrainSpec spec;
    int64_t epochs, batch;       // the block's own run settings, before a run's --set
    int patience;
    const char *save;
    NnSplits splits;
    Runner R;
    bool prepared, eval_only;
};

void nn_trainer_free(NnTrainer *t)
{
    if (!t)
        return;
    const NnBackend *be = t->R.be;
    if (t->R.step)
        be->free(t->R.step);
    if (t->R.eval)
        be->free(t->R.eval);
    for (int i = 1; t->R.steps && i < t->spec.nsteps; i++)
        if (t->R.steps[i])
            be->free(t->R.steps[i]);
    free(t->R.steps);
    free(t->R.real);
    free(t->R.fake);
    free(t->R.stat);
    nn_splits_fini(&t->splits);
    nn_train_spec_fini(&t->spec);
    free(t);
}

const NnTrainSpec *nn_trainer_spec(const NnTrainer *t) { return &t->spec; }

static bool trainer_prepare(NnCtx *c, NnTrainer *t, NnOptions *o, bool eval_only)
{
    NnTrainSpec *spec = &t->spec;
    Runner *R = &t->R;
    NnLoc loc = spec->ast->loc;
    double t0 = nnrt_now();
    if (spec->nsteps > 0) {
        if (eval_only) {
            nn_error(&c->diags, loc, "train block of '%s' has steps and no evaluation; "
                     "`nnc sample` shows what a generator makes", spec->model);
            return false;
        }
        if (!prepare_steps(c, R->be, spec, o, R))
            return false;
    } else if (!(R->step = prepare(c, R->be, &spec->step, o, spec->batch, loc)) ||
               !(R->eval = prepare(c, R->be, &spec->eval, o, spec->batch, loc)))
        return false;
    if (o->verbose) {
        fprintf(stderr, "nnc: prepared step and eval graphs on %s in %.0f ms\n", R->be->name,
                (nnrt_now() - t0) * 1000);
        nn_driver_print_flops(stderr, "step", *nn_train_step_graph(spec, 0), spec->batch);
    }
    NnrtDataset *train = nn_splits_get(&t->splits, "train");
    NnrtDataset *val = nn_splits_get(&t->splits, "val"), *test = nn_splits_get(&t->splits, "test");
    if (!keep_head(c, train, spec->limit, loc) || !keep_head(c, val, spec->eval_limit, loc) ||
        !keep_head(c, test, spec->eval_limit, loc))
        return false;
    t->prepared = true;
    nn_compiles++;
    return true;
}


// Under mpirun, every rank must run the same compiled step on the same data
// with the same loop settings, or their sums would mix different things (or
// hang when their step counts differ): compare a hash of all of it.
static bool same_on_all_ranks(NnCtx *c, const NnTrainer *T, const NnOptions *o, bool eval_only)
{
    const NnTrainSpec *sp = &T->spec;
    uint64_t h = NNRT_FNV_SEED;
    for (int i = 0; i < sp->nsteps; i++)
        h = nn_ir_hash(h, *nn_train_step_graph((NnTrainSpec *)sp, i));
    if (!sp->nsteps)
        h = nn_ir_hash(nn_ir_hash(h, sp->step), sp->eval);
    const NnrtDataset *train = nn_splits_get((NnSplits *)&T->splits, "train");
    // Whether and from what size the update is sharded decides which MPI
    // calls each step makes: ranks that differ would wait on each other.
    const char *smin = getenv("NNC_MPI_SHARD_MIN");
    int64_t v[] = {sp->epochs, sp->batch, (int64_t)sp->seed, sp->patience, o->resume, eval_only,
                   train ? train->count : -1, nnrt_dist_sharding(), smin ? atoll(smin) : 0,
                   getenv("NN_JIT_PROFILE") != NULL};
    h = nnrt_fnv1a(nnrt_fnv1a(h, v, sizeof v), T->R.be->name, strlen(T->R.be->name));
    if (nnrt_dist_check_hash(h, "train step or settings") == NN_OK)
        return true;
    nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
    return false;
}

bool nn_train_hyper_setting(const char *key)
{
    static const char *const plain[] = {"epochs", "batch", "save", "patience", "seed", "limit",
                                        "eval_limit", "total_steps"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (!strcmp(plain[i], key))
            return false;
    return true;
}

bool nn_train_run_setting(const char *key)
{
    return !strcmp(key, "epochs") || !strcmp(key, "batch") || !strcmp(key, "save") ||
           !strcmp(key, "patience");
}

// A kept trainer's run settings: the block's, then this run's overrides.
static bool apply_run_settings(NnCtx *c, NnTrainer *T, NnSetting *run, int n)
{
    if (!nn_train_check_sets(c, run, n))
        return false;
    NnTrainSpec *sp = &T->spec;
    sp->epochs = T->epochs;
    sp->batch = T->batch;
    sp->patience = T->patience;
    sp->save = T->save;
    for (int i = 0; i < n; i++) {
        const char *k = run[i].key, *v = run[i].value;
        if (!strcmp(k, "save"))
            sp->save = v;
        else if (!strcmp(k, "epochs"))
            sp->epochs = strtoll(v, NULL, 10);
        else if (!strcmp(k, "batch"))
            sp->batch = strtoll(v, NULL, 10);
        else
            sp->patience = (int)strtol(v, NULL, 10);
    }
    return true;
}

int nn_train_run(NnCtx *c, const NnProgram *p, const NnAst *block, NnOptions *o, bool eval_only,
                 NnVars *vars, NnTrainer **cache)
{
    const NnBackend *be = nn_driver_backend(o);
    if (!be)
        return 1;
    int rc = 1;
    // A kept trainer lowers without the settings that only steer the loop
    // (epochs, batch, save, patience) and without optimizer arguments, which
    // are run-time hyperparameters of the step: changing them compiles nothing.
    NnOptions kept;
    NnSetting run[32], hyper[32];
    int nrun = 0, nkept = 0, nhyper = 0;
    if (cache) {
        kept = *o;
        kept.nsets = 0;
        for (int i = 0; i < o->nsets; i++) {
            if (nn_train_run_setting(o->sets[i].key))
                run[nrun++] = o->sets[i];
            else if (nn_train_hyper_setting(o->sets[i].key))
                hyper[nhyper++] = o->sets[i];
            else
                kept.sets[kept.nsets++] = o->sets[i];
        }
        nkept = kept.nsets;
        o = &kept;
    }
    NnTrainer *T = cache ? *cache : NULL;
    // What a cached trainer was made from (block, settings, data) is the
    // caller's to compare: it drops the cache when any of them changes.
    if (T && (T->block != block || T->eval_only != eval_only || T->R.be != be)) {
        nn_trainer_free(T);
        T = NULL;
    }
    bool fresh = !T;
    if (fresh) {
        if (!(T = calloc(1, sizeof *T))) {
            nn_error(&c->diags, block->loc, "out of memory");
            return 1;
        }
        T->block = block;
        T->eval_only = eval_only;
        T->R.be = be;
        T->R.spec = &T->spec;
        T->R.lr_out = -1;
    }
    if (cache)
        *cache = T;
    NnTrainSpec *sp = &T->spec;
    NnSplits *splits = &T->splits;
    T->R.vars = vars;
    if (fresh) {
        if (!nn_driver_setup_block(c, p, block, o, false, sp, splits))
            goto done;
        T->epochs = sp->epochs;
        T->batch = sp->batch;
        T->patience = sp->patience;
        T->save = sp->save;
    }
    if (cache && !apply_run_settings(c, T, run, nrun))
        goto done;
    if (!nn_driver_init_vars(c, sp->vars, sp->nvars, sp->seed, vars))
        goto done;
    for (int i = 0; i < nhyper; i++) {
        char *end;
        double v = strtod(hyper[i].value, &end);
        int site;
        bool drop = nn_train_dropout_key(hyper[i].key, &site);
        if (!*hyper[i].value || *end || !isfinite(v) || (drop && !(v >= 0 && v < 1))) {
            nn_error(&c->diags, nn_setting_loc(&hyper[i], block->loc),
                     drop ? "%s = %s: a dropout rate is a number in [0, 1)"
                          : "%s = %s: the optimizer argument takes a number",
                     hyper[i].key, hyper[i].value);
            goto done;
        }
        if (nn_train_set_hyper(sp, vars, hyper[i].key, v) == 0) {
            if (drop)
                nn_error(&c->diags, nn_setting_loc(&hyper[i], block->loc),
                         "model '%s' has no dropout%s%s to set",
                         sp->model, site ? " call number " : "", site ? hyper[i].key + 7 : "");
            else
                nn_error(&c->diags, nn_setting_loc(&hyper[i], block->loc),
                         "no optimizer of this train block takes a "
                         "run-time '%s' (a number argument such as lr, momentum, beta1, "
                         "weight_decay)", hyper[i].key);
            goto done;
        }
    }
    // --resume W only reads W; checkpoints go to the save path.
    if (!eval_only && o->resume && access(o->weights, F_OK) != 0) {
        nn_error(&c->diags, (NnLoc){0}, "cannot resume from '%s': %s", o->weights,
                 strerror(errno));
        goto done;
    }
    // Under mpirun rank 0 alone prints and writes (runtime/train.c).
    bool writer = nnrt_dist_rank() == 0;
    if (!writer)
        o->quiet = true;
    if (!eval_only && sp->save && writer && !check_writable(c, sp->save))
        goto done;
    // An unusable --metrics file is found now, not after the first epoch.
    if (o->metrics && writer) {
        NnrtJsonl probe;
        if (nnrt_jsonl_open(&probe, o->metrics, true) != NN_OK || nnrt_jsonl_close(&probe) != NN_OK) {
            nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
            goto done;
        }
    }
    if (!T->prepared) {
        if (!trainer_prepare(c, T, o, eval_only))
            goto done;
    } else if (o->verbose) {
        fprintf(stderr, "nnc: reusing the compiled step and eval graphs (no compile)\n");
    }
    if (nnrt_dist_size() > 1 && !same_on_all_ranks(c, T, o, eval_only))
        goto done;
    NnTrainSpec spec = *sp;
    Runner *R = &T->R;
    NnrtDataset *train = nn_splits_get(splits, "train");
    NnrtDataset *val = nn_splits_get(splits, "val"), *test = nn_splits_get(splits, "test");
    int64_t b = train->count < spec.batch ? train->count : spec.batch;
    nn_train_set_total_steps(&spec, vars, b > 0 ? nnrt_batch_count(train->count, b) : 0);
    R->lr_out = output_index(spec.step, "lr");
    NnrtTrainCallbacks cb = {.ctx = R, .step = cb_step, .predict = cb_predict,
                             .snapshot = cb_snapshot, .restore = cb_restore,
                             .checkpoint_vars = cb_checkpoint_vars,
                             .lr = R->lr_out >= 0 ? &R->lr : NULL};
    NnrtTrainOptions to = {0};
    to.epochs = (int)spec.epochs;
    to.batch = spec.batch;
    to.seed = spec.seed;
    // A block of steps has nothing to evaluate: its losses are the report.
    to.val = spec.nsteps ? NULL : val;
    to.test = spec.nsteps ? NULL : test;
    to.task = spec.classify ? NNRT_TASK_CLASSIFY : NNRT_TASK_REGRESS;
    if (spec.nsteps) {
        cb.step = cb_steps;
        cb.predict = NULL;
        cb.nstats = R->nstats;
        cb.stat_names = R->stat_names;
        cb.stats = R->stats;
    } else {
        NnNode *on = nn_node(spec.eval, nn_graph_output(spec.eval, "output"));
        to.out_features = on->shape.rank >= 2 ? on->shape.dim[on->shape.rank - 1] : 1;
    }
    to.num_classes = spec.classify ? (int)to.out_features : 0;
    for (int i = 0; i < spec.nmetrics; i++)
        to.metrics |= nnrt_metric_bit(spec.metrics[i]);
    to.early_stop = spec.stop_metric;
    to.patience = spec.patience;
    to.metrics_path = writer ? o->metrics : NULL;
    to.progress = o->quiet ? NNRT_PROGRESS_QUIET : NNRT_PROGRESS_AUTO;
    to.quiet = o->quiet;
    to.checkpoint = spec.save;
    to.resume_from = o->resume ? o->weights : NULL;
    // Names only where they cover every class the model scores.
    to.class_names = train->num_classes >= to.num_classes ? train->class_names : NULL;
    if (!nn_driver_augment_opts(c, spec.augment, &to.augment))
        goto done;
    if (nnrt_augment_active(&to.augment) && train->x && train->x->dtype != NN_DT_F32) {
        nn_error(&c->diags, spec.augment->loc, "augment transforms f32 images; this x holds "
                 "integer ids");
        goto done;
    }
    if (eval_only) {
        // A session evaluates the weights it holds; nnc eval those of --weights.
        if (o->weights && !load_vars(c, o->weights, R))
            goto done;
        const NnrtDataset *ds = to.test ? to.test : to.val ? to.val : train;
        const char *name = to.test ? "test" : to.val ? "val" : "train";
        NnrtEval e;
        NnrtConfusion conf = {0};
        bool cls = to.task == NNRT_TASK_CLASSIFY;
        if ((cls && nnrt_confusion_init(&conf, to.num_classes) != NN_OK) ||
            nnrt_evaluate(&cb, ds, &to, name, 0, &e, cls ? &conf : NULL) != NN_OK) {
            nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
            nnrt_confusion_fini(&conf);
            goto done;
        }
        if (!o->quiet) {
            nnrt_eval_print(stdout, &e);
            if (cls && nnrt_metrics_want_confusion(to.metrics))
                nnrt_confusion_print(stdout, &conf, to.class_names);
        }
        nnrt_confusion_fini(&conf);
        NnrtJsonl log = {0};
        if (o->metrics && (nnrt_jsonl_open(&log, o->metrics, true) != NN_OK ||
                           nnrt_jsonl_write(&log, &e) != NN_OK || nnrt_jsonl_close(&log) != NN_OK)) {
            nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
            goto done;
        }
        rc = 0;
        goto done;
    }
    NnrtTrainResult res;
    if (spec.epochs == 0) {
        // --set epochs=0: no training, only the report on the initial (or resumed) model.
        if (o->resume && !load_vars(c, o->weights, R))
            goto done;
        if (!spec.nsteps && !final_eval(c, &cb, to.test ? to.test : train, to.test ? "test" : "train", &to))
            goto done;
        rc = 0;
        goto done;
    }
    if (nnrt_train(&cb, train, &to, &res) != NN_OK) {
        if (nn_interrupted) {
            // The weights are those after the last whole batch.
            fprintf(stderr, "\ninterrupted: weights kept as of the last batch\n");
            rc = 0;
            goto done;
        }
        nn_error(&c->diags, (NnLoc){0}, "training failed: %s", nnrt_errmsg());
        goto done;
    }
    // Without a test split, report the final model on the training data.
    if (!spec.nsteps && !to.test && !final_eval(c, &cb, train, "train", &to))
        goto done;
    if (train->vocab && !o->quiet)
        report_bits(train, &to, &res);
    if (res.saved && !o->quiet)
        printf("saved %s\n", spec.save);
    rc = 0;
done:
    // nn_driver_setup_block may have added a seed setting to the copy.
    for (int i = nkept; cache && i < kept.nsets; i++)
        free((char *)kept.sets[i].key);
    if (!cache || (rc && !T->prepared)) {
        nn_trainer_free(T);
        if (cache)
            *cache = NULL;
    }
    return rc;
}

int nn_cmd_train(NnCtx *c, const NnProgram *p, NnOptions *o, bool eval_only)
{
    NnSession *s = nn_session_open(c, p, o);
    if (!s) {
        nn_error(&c->diags, (NnLoc){0}, "out of memory");
        return 1;
    }
    int rc = nn_session_run_block(s, 0, eval_only);
    nn_session_free(s);
    return rc;
}
