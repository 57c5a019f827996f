// The main program of every `nnc build` executable: `PROG train`, `PROG eval`,
// `PROG predict` and `PROG sample` (sample.c), on libnnrt alone. It replays
// the data block from the generated tables (app.h), initializes the variables as `nnc train` does and
// hands the runtime's training loop callbacks that run the compiled step
// descriptors (every step of a block of steps in turn, for a GAN), so its
// results equal those of `nnc train` / `nnc eval`, also under mpirun (one
// data-parallel rank, start_ranks). eval and predict on embedded weights use
// them in place, read-only.
// Exit status: 0 success, 1 a diagnostic (bad data, weights, input), 2 bad usage.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "app_priv.h"
#include "dist.h"
#include "checkpoint.h"
#include "init.h"
#include "metrics.h"
#include "progress.h"
#include "savefile.h"
#include "train.h"

// From pool.h, whose NnrtTask clashes with train.h's.
NnStatus nnrt_pool_set_threads(int n);

static const char *prog = "program";

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "%s: error: ", prog);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 1;
}

static int fail_rt(const char *what)
{
    fprintf(stderr, "%s: error: %s%s%s\n", prog, what ? what : "", what ? ": " : "",
            nnrt_errmsg());
    return 1;
}

static int usage(const char *fmt, const char *a)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    return 2;
}

// ---- the compiled steps ----

typedef struct Runner {
    const NnrtApp *a;
    NnVars vars;
    NnrtStepRun *train, *eval; // opened on first use (run.d != NULL)
    NnTensor *xrow, *yrow;     // one-row views for evaluating row by row
    NnTensor *zero_y;          // labels of zeros for predict (no labels)
    double lr;                 // the learning rate of the last training step
    bool in_place;             // variables point into the embedded weights (read-only)
    // A block of steps: where each step's values go in stats (-1: not shown).
    int stat[NNRT_MAX_STATS];
    int nstats;
    const char *stat_names[NNRT_MAX_STATS];
    char stat_buf[NNRT_MAX_STATS][80];
    double stats[NNRT_MAX_STATS];
} Runner;

// The step of part `part` for `rows` rows: compiled for exactly that many,
// or for any number (rows 0: its batch is a run-time value).
static int find_part(const NnrtAppStep *list, int n, int64_t rows, int part)
{
    for (int i = 0; i < n; i++)
        if ((list[i].rows == rows || list[i].rows == 0) && list[i].part == part)
            return i;
    return -1;
}

static int find_step(const NnrtAppStep *list, int n, int64_t rows)
{
    return find_part(list, n, rows, 0);
}

static NnStatus open_run(NnrtStepRun *runs, const NnrtAppStep *list, int i)
{
    return runs[i].d ? NN_OK : nnrt_step_open(&runs[i], list[i].step);
}

static NnStatus cb_step(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, double *loss)
{
    Runner *R = ctx;
    int i = find_step(R->a->train, R->a->ntrain, n);
    if (i < 0)
        return nnrt_fail(NN_ERR_SHAPE, "this program trains on batches of %lld rows and the "
                         "last partial batch of the data it was built with; got a batch of %lld "
                         "rows (rebuild it for this data or batch size)",
                         (long long)R->a->batch, (long long)n);
    NnStatus st = open_run(R->train, R->a->train, i);
    NnTensor *in[2] = {(NnTensor *)x, (NnTensor *)y}, *out[4];
    if (st == NN_OK)
        st = nnrt_step_run(&R->train[i], NULL, &R->vars, in, out);
    if (st == NN_OK)
        *loss = nnrt_tensor_get(out[0], 0);
    // The learning rate the step ran with (a schedule's value), for progress and the log.
    for (int k = 1; st == NN_OK && k < R->a->train[i].step->noutputs; k++)
        if (!strcmp(R->a->train[i].step->outputs[k].name, "lr"))
            R->lr = nnrt_tensor_get(out[k], 0);
    return st;
}

// A block of steps, as nnc train runs it: every step on the batch in
// declared order, each `repeat` times. Stats: each step's mean loss over its
// repeats ("disc.loss") and, where the step reports them, the mean model
// output on real and generated data ("disc.real", "disc.fake"); *loss is the
// sum of the steps' losses.
static NnStatus cb_steps(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, double *loss)
{
    Runner *R = ctx;
    const NnrtApp *a = R->a;
    NnTensor *in[2] = {(NnTensor *)x, (NnTensor *)y}, *out[8];
    double total = 0;
    for (int p = 0; p < a->nparts; p++) {
        int i = find_part(a->train, a->ntrain, n, p);
        if (i < 0)
            return nnrt_fail(NN_ERR_SHAPE, "this program trains on batches of %lld rows and the "
                             "last partial batch of the data it was built with; got a batch of "
                             "%lld rows (rebuild it for this data or batch size)",
                             (long long)a->batch, (long long)n);
        const NnrtStep *d = a->train[i].step;
        int real = -1, fake = -1;
        for (int k = 1; k < d->noutputs && k < 8; k++) {
            real = !strcmp(d->outputs[k].name, "real") ? k : real;
            fake = !strcmp(d->outputs[k].name, "fake") ? k : fake;
        }
        double sum = 0, rs = 0, fs = 0;
        NnStatus st = open_run(R->train, a->train, i);
        for (int r = 0; st == NN_OK && r < a->parts[p].repeat; r++) {
            if ((st = nnrt_step_run(&R->train[i], NULL, &R->vars, in, out)) != NN_OK)
                break;
            sum += nnrt_tensor_get(out[0], 0);
            for (int k = 1; p == 0 && k < d->noutputs; k++)
                if (!strcmp(d->outputs[k].name, "lr"))
                    R->lr = nnrt_tensor_get(out[k], 0);
            rs += real > 0 && fake > 0 ? nnrt_tensor_get(out[real], 0) : 0;
            fs += real > 0 && fake > 0 ? nnrt_tensor_get(out[fake], 0) : 0;
        }
        if (st != NN_OK)
            return st;
        int rep = a->parts[p].repeat;
        total += sum / rep;
        if (R->stat[p] >= 0)
            R->stats[R->stat[p]] = sum / rep;
        if (R->stat[p] >= 0 && real > 0 && fake > 0) {
            R->stats[R->stat[p] + 1] = rs / rep;
            R->stats[R->stat[p] + 2] = fs / rep;
        }
    }
    *loss = total;
    return NN_OK;
}

// The values a block of steps reports per batch, named as nnc train names
// them: a step's values are all shown or none.
static void name_stats(Runner *R)
{
    static const char *const kinds[] = {"loss", "real", "fake"};
    const NnrtApp *a = R->a;
    for (int p = 0; p < a->nparts && p < NNRT_MAX_STATS; p++) {
        int i = find_part(a->train, a->ntrain, a->train[0].rows, p), want = 1;
        const NnrtStep *d = i >= 0 ? a->train[i].step : NULL;
        bool real = false, fake = false;
        for (int k = 1; d && k < d->noutputs && k < 8; k++) {
            real = real || !strcmp(d->outputs[k].name, "real");
            fake = fake || !strcmp(d->outputs[k].name, "fake");
        }
        want = real && fake ? 3 : 1;
        R->stat[p] = R->nstats + want <= NNRT_MAX_STATS ? R->nstats : -1;
        for (int k = 0; R->stat[p] >= 0 && k < want; k++) {
            snprintf(R->stat_buf[R->nstats], sizeof R->stat_buf[0], "%s.%s", a->parts[p].name,
                     kinds[k]);
            R->stat_names[R->nstats] = R->stat_buf[R->nstats];
            R->nstats++;
        }
    }
}

static bool has_lr(const NnrtApp *a)
{
    for (int k = 0; a->ntrain && k < a->train[0].step->noutputs; k++)
        if (!strcmp(a->train[0].step->outputs[k].name, "lr"))
            return true;
    return false;
}


// Evaluates n rows with the step compiled for exactly n, else one row at a
// time with the batch-1 step (the mean of the rows' losses).
static NnStatus cb_predict(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n,
                           NnTensor *out, double *loss)
{
    Runner *R = ctx;
    int i = find_step(R->a->eval, R->a->neval, n);
    int64_t rows = i >= 0 ? n : 1, ow = out->shape[0] ? out->numel / out->shape[0] : 0;
    if (i < 0 && (i = find_step(R->a->eval, R->a->neval, 1)) < 0)
        return nnrt_fail(NN_ERR_RUNTIME, "no evaluation step for %lld rows", (long long)n);
    NnStatus st = open_run(R->eval, R->a->eval, i);
    const NnrtStep *d = R->a->eval[i].step;
    double sum = 0;
    for (int64_t r = 0; st == NN_OK && r < n; r += rows) {
        NnTensor xv, yv, *in[2] = {&xv, &yv}, *res[4];
        app_rows_view(&xv, x, r, rows);
        if (y)
            app_rows_view(&yv, y, r, rows);
        else
            app_rows_view(&yv, R->zero_y, 0, rows);
        if ((st = nnrt_step_run(&R->eval[i], NULL, &R->vars, in, res)) != NN_OK)
            break;
        sum += nnrt_tensor_get(res[0], 0) * (double)rows;
        const NnTensor *o = res[1];
        int64_t w = o->numel / (o->shape[0] ? o->shape[0] : 1);
        if (w != ow)
            return nnrt_fail(NN_ERR_SHAPE, "model output has %lld values per sample, expected "
                             "%lld", (long long)w, (long long)ow);
        for (int64_t k = 0; k < rows * w; k++)
            nnrt_tensor_set(out, r * w + k, nnrt_tensor_get(o, k));
    }
    (void)d;
    *loss = y ? (rows == n ? sum / (double)n : sum / (double)n) : NAN;
    return st;
}

static NnStatus copy_vars(const Runner *R, NnVars *dst, bool model_only)
{
    for (int i = 0; i < R->a->nvars; i++) {
        const NnrtAppVar *v = &R->a->vars[i];
        NnTensor *src = nnrt_vars_get(&R->vars, v->name);
        // Run-time hyperparameters belong to the run: no checkpoint holds them.
        if ((model_only && !v->model) || v->hyper || !src)
            continue;
        NnTensor *t = nnrt_tensor_clone(src);
        if (!t || nnrt_vars_put(dst, v->name, t) != NN_OK)
            return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    return NN_OK;
}

static NnStatus cb_snapshot(void *ctx, NnVars *out) { return copy_vars(ctx, out, true); }
static NnStatus cb_checkpoint_vars(void *ctx, NnVars *out) { return copy_vars(ctx, out, false); }

static NnStatus cb_restore(void *ctx, const NnVars *in)
{
    Runner *R = ctx;
    for (int i = 0; i < in->count; i++) {
        NnTensor *t = nnrt_vars_get(&R->vars, in->names[i]);
        if (t && t->dtype == in->tensors[i]->dtype && nnrt_tensor_same_shape(t, in->tensors[i]))
            memcpy(t->data, in->tensors[i]->data, nnrt_tensor_nbytes(t));
    }
    return NN_OK;
}

// Every variable as `nnc train` initializes it, or (model_only) the weights
// and layer state, zero, to be loaded (R->in_place: headers only, with no
// storage, to point into the embedded weights).
static NnStatus init_vars(Runner *R, bool model_only)
{
    nnrt_vars_init(&R->vars);
    for (int i = 0; i < R->a->nvars; i++) {
        const NnrtAppVar *v = &R->a->vars[i];
        if (model_only && !v->model)
            continue;
        NnTensor *t = R->in_place ? nnrt_tensor_view((NnDType)v->dtype, v->rank, v->dims, NULL)
                                  : nnrt_tensor_new((NnDType)v->dtype, v->rank, v->dims);
        if (!t)
            return NN_ERR_NOMEM;
        // Loaded weights replace the initial values (eval, predict).
        NnStatus st = model_only ? NN_OK
                                 : nnrt_init_fill(t, v->init, v->args, v->nargs, R->a->seed,
                                                  v->name);
        if (st == NN_OK)
            st = nnrt_vars_put(&R->vars, v->name, t);
        else
            nnrt_tensor_free(t);
        if (st != NN_OK)
            return nnrt_fail(st, "cannot initialize '%s': %s", v->name, nnrt_errmsg());
    }
    return NN_OK;
}

// Sets the variables from W (a file) or, with W NULL, the embedded weights.
static NnStatus load_weights(Runner *R, const char *path)
{
    NnVars loaded;
    const NnrtApp *a = R->a;
    NnStatus st;
    const char *name = path ? path : "the embedded weights";
    if (!path && R->in_place) {
        st = nnrt_safetensors_view_mem(name, a->weights, (size_t)(a->weights_end - a->weights),
                                       &loaded);
        if (st == NN_OK)
            st = nnrt_checkpoint_check(name, &loaded, &R->vars);
        // The headers take the loaded tensors' data, and their ownership.
        for (int i = 0; st == NN_OK && i < R->vars.count; i++) {
            NnTensor *t = R->vars.tensors[i], *src = nnrt_vars_get(&loaded, R->vars.names[i]);
            t->data = src->data;
            t->owned = src->owned;
            src->owned = false;
        }
        nnrt_vars_fini(&loaded);
        return st;
    }
    if (path)
        st = nnrt_safetensors_load(path, &loaded, NULL);
    else
        st = nnrt_safetensors_load_mem(name, a->weights, (size_t)(a->weights_end - a->weights),
                                       &loaded, NULL);
    // No checkpoint holds run-time hyperparameters: they keep their values.
    for (int i = 0; st == NN_OK && i < a->nvars; i++) {
        NnTensor *t = a->vars[i].hyper ? nnrt_vars_get(&R->vars, a->vars[i].name) : NULL;
        NnTensor *keep = t && !nnrt_vars_get(&loaded, a->vars[i].name) ? nnrt_tensor_clone(t)
                                                                       : NULL;
        if (keep && (st = nnrt_vars_put(&loaded, a->vars[i].name, keep)) != NN_OK)
            nnrt_tensor_free(keep);
    }
    if (st == NN_OK)
        st = nnrt_checkpoint_assign(name, &R->vars, &loaded);
    nnrt_vars_fini(&loaded);
    return st;
}

// A schedule's total_steps: the run's epochs times its batches per epoch
// (times the step's repeats), as nnc train sets it before training.
static void set_total_steps(Runner *R, const NnrtDataset *train)
{
    const NnrtApp *a = R->a;
    int64_t b = train->count < a->batch ? train->count : a->batch;
    int64_t batches = b > 0 ? nnrt_batch_count(train->count, b) : 0;
    for (int i = 0; i < a->nvars; i++) {
        NnTensor *t = a->vars[i].total_steps > 0 ? nnrt_vars_get(&R->vars, a->vars[i].name)
                                                 : NULL;
        if (t)
            nnrt_tensor_set(t, 0, (double)(a->epochs * batches * a->vars[i].total_steps));
    }
}

// in_place (eval and predict on the embedded weights): the variables are the
// embedded bytes where they lie, not a copy; nnc build checked them, and no
// evaluation step writes a variable (checked here).
static NnStatus runner_init(Runner *R, const NnrtApp *a, bool model_only, bool in_place)
{
    memset(R, 0, sizeof *R);
    R->a = a;
    R->in_place = in_place && model_only && a->weights;
    for (int i = 0; i < a->neval; i++)
        R->in_place = R->in_place && a->eval[i].step->nupdates == 0;
    R->train = calloc((size_t)a->ntrain + 1, sizeof *R->train);
    R->eval = calloc((size_t)a->neval + 1, sizeof *R->eval);
    if (!R->train || !R->eval)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    int i = find_step(a->eval, a->neval, 1);
    const NnrtStep *d = i >= 0 ? a->eval[i].step : NULL;
    if (d && d->ninputs > 1) {
        int64_t dims[NN_MAX_RANK];
        memcpy(dims, d->inputs[1].dims, sizeof dims);
        dims[0] = a->batch > 1 ? a->batch : 1;
        if (!(R->zero_y = nnrt_tensor_new((NnDType)d->inputs[1].dtype, d->inputs[1].rank, dims)))
            return NN_ERR_NOMEM;
    }
    return init_vars(R, model_only);
}

static void runner_fini(Runner *R)
{
    for (int i = 0; R->train && i < R->a->ntrain; i++)
        nnrt_step_close(&R->train[i]);
    for (int i = 0; R->eval && i < R->a->neval; i++)
        nnrt_step_close(&R->eval[i]);
    free(R->train);
    free(R->eval);
    nnrt_tensor_free(R->zero_y);
    nnrt_vars_fini(&R->vars);
}

// ---- train and eval ----

typedef struct Args {
    const char *cmd, *weights, *resume, *metrics, *output, *input;
    bool quiet;
    AppSampleArgs sample; // --seed, --count, --temperature (for 'sample')
    int threads;
    const char *set_key[32], *set_val[32];
    int nsets;
} Args;

// Run-time settings: those that do not change what was compiled.
static int apply_sets(const Args *g, NnrtApp *a)
{
    for (int i = 0; i < g->nsets; i++) {
        const char *k = g->set_key[i], *v = g->set_val[i];
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        bool num = *v && !*end && errno == 0;
        if (!strcmp(k, "epochs") && num && n >= 0 && n <= 1000000)
            a->epochs = n;
        else if (!strcmp(k, "patience") && num && n >= 1 && n <= 1000000)
            a->patience = (int)n;
        else if (!strcmp(k, "save"))
            a->save = *v ? v : NULL;
        else if (!strcmp(k, "epochs") || !strcmp(k, "patience"))
            return usage("--set %s: expected a whole number in range", k);
        else
            return usage("--set %s: this setting is compiled into the program; set it when "
                         "building (nnc build --set KEY=VALUE); here: epochs, patience, save", k);
    }
    return 0;
}

// Every rank must run the same steps on the same data with the same loop
// settings, or their sums would mix different things (or hang when their
// step counts differ): compare a hash of all of it, as nnc train does.
static NnStatus same_on_all_ranks(const NnrtApp *a, const Args *g, const NnrtDataset *train,
                                  bool eval_only)
{
    int64_t v[] = {a->epochs, a->batch, (int64_t)a->seed, a->patience, g->resume != NULL,
                   eval_only, train ? train->count : -1, a->limit, a->eval_limit,
                   nnrt_dist_sharding()};
    return nnrt_dist_check_hash(nnrt_fnv1a(a->dist_hash, v, sizeof v), "train step or settings");
}

static void fill_options(const NnrtApp *a, const Args *g, const NnrtDataset *train,
                         const NnrtDataset *val, const NnrtDataset *test, NnrtTrainOptions *to)
{
    memset(to, 0, sizeof *to);
    to->epochs = (int)a->epochs;
    to->batch = a->batch;
    to->seed = a->seed;
    to->val = val;
    to->test = test;
    to->task = a->classify ? NNRT_TASK_CLASSIFY : NNRT_TASK_REGRESS;
    to->out_features = a->out_features;
    to->num_classes = a->classify ? (int)a->out_features : 0;
    to->metrics = a->metrics;
    to->early_stop = a->stop_metric;
    to->patience = a->patience;
    to->metrics_path = g->metrics;
    to->progress = g->quiet ? NNRT_PROGRESS_QUIET : NNRT_PROGRESS_AUTO;
    to->quiet = g->quiet;
    to->checkpoint = a->save;
    to->resume_from = g->resume;
    to->augment = a->augment;
    to->class_names = train->num_classes >= to->num_classes ? train->class_names : NULL;
}

static NnStatus write_eval(const char *metrics, const NnrtEval *e)
{
    NnrtJsonl log = {0};
    if (!metrics)
        return NN_OK;
    NnStatus st = nnrt_jsonl_open(&log, metrics, true);
    if (st == NN_OK)
        st = nnrt_jsonl_write(&log, e);
    NnStatus st2 = nnrt_jsonl_close(&log);
    return st != NN_OK ? st : st2;
}

static NnStatus evaluate(const NnrtTrainCallbacks *cb, const NnrtDataset *ds, const char *split,
                         const NnrtTrainOptions *to, bool confusion)
{
    NnrtEval e;
    NnrtConfusion conf = {0};
    bool cls = to->task == NNRT_TASK_CLASSIFY;
    NnStatus st = cls ? nnrt_confusion_init(&conf, to->num_classes) : NN_OK;
    if (st == NN_OK)
        st = nnrt_evaluate(cb, ds, to, split, 0, &e, cls ? &conf : NULL);
    if (st == NN_OK && !to->quiet) {
        nnrt_eval_print(stdout, &e);
        if (confusion && cls && nnrt_metrics_want_confusion(to->metrics))
            nnrt_confusion_print(stdout, &conf, to->class_names);
    }
    if (st == NN_OK)
        st = write_eval(to->metrics_path, &e);
    nnrt_confusion_fini(&conf);
    return st;
}

static int cmd_train(const NnrtApp *a, const Args *g, bool eval_only)
{
    Runner R;
    Splits s = {0};
    int rc = 1;
    if (eval_only && a->nparts) {
        rc = fail("model '%s' is trained by a block of steps and has no evaluation%s; `nnc "
                  "sample` shows what a generator makes", a->program, "");
        goto out;
    }
    if (eval_only && !g->weights && !a->weights) {
        rc = usage("'eval' needs --weights FILE (this program has no embedded weights)%s", "");
        goto out;
    }
    if (runner_init(&R, a, eval_only, !g->weights) != NN_OK) {
        fail_rt(NULL);
        goto done;
    }
    if (!eval_only && g->resume && access(g->resume, F_OK) != 0) {
        fail("cannot resume from '%s': %s", g->resume, strerror(errno));
        goto done;
    }
    bool writer = nnrt_dist_rank() == 0; // under mpirun rank 0 alone writes
    if (!eval_only && a->save && writer && nnrt_savefile_check(a->save) != NN_OK) {
        fail_rt("cannot save checkpoints");
        goto done;
    }
    if (g->metrics) {
        NnrtJsonl probe;
        if (nnrt_jsonl_open(&probe, g->metrics, true) != NN_OK ||
            nnrt_jsonl_close(&probe) != NN_OK) {
            fail_rt(NULL);
            goto done;
        }
    }
    if (app_load_data(a, &s) != NN_OK) {
        fail_rt("data");
        goto done;
    }
    NnrtDataset *train = app_split_get(&s, "train"), *val = app_split_get(&s, "val");
    NnrtDataset *test = app_split_get(&s, "test");
    if (app_keep_head(train, a->limit) != NN_OK || app_keep_head(val, a->eval_limit) != NN_OK ||
        app_keep_head(test, a->eval_limit) != NN_OK) {
        fail_rt(NULL);
        goto done;
    }
    if (nnrt_dist_size() > 1 && same_on_all_ranks(a, g, train, eval_only) != NN_OK) {
        fail_rt(NULL);
        goto done;
    }
    NnrtTrainCallbacks cb = {.ctx = &R, .step = cb_step, .predict = cb_predict,
                             .snapshot = cb_snapshot, .restore = cb_restore,
                             .checkpoint_vars = cb_checkpoint_vars,
                             .lr = has_lr(a) ? &R.lr : NULL};
    if (a->nparts) {
        // A block of steps has nothing to evaluate: its losses are the report.
        name_stats(&R);
        cb.step = cb_steps;
        cb.predict = NULL;
        cb.nstats = R.nstats;
        cb.stat_names = R.stat_names;
        cb.stats = R.stats;
        val = test = NULL;
    }
    set_total_steps(&R, train);
    NnrtTrainOptions to;
    fill_options(a, g, train, val, test, &to);
    if (eval_only) {
        if (load_weights(&R, g->weights) != NN_OK) {
            fail_rt(NULL);
            goto done;
        }
        const NnrtDataset *ds = test ? test : val ? val : train;
        if (evaluate(&cb, ds, test ? "test" : val ? "val" : "train", &to, true) != NN_OK) {
            fail_rt(NULL);
            goto done;
        }
        rc = 0;
        goto done;
    }
    if (a->epochs == 0) {
        if ((g->resume && load_weights(&R, g->resume) != NN_OK) ||
            (!a->nparts &&
             evaluate(&cb, test ? test : train, test ? "test" : "train", &to, false) != NN_OK)) {
            fail_rt(NULL);
            goto done;
        }
        rc = 0;
        goto done;
    }
    NnrtTrainResult res;
    if (nnrt_train(&cb, train, &to, &res) != NN_OK) {
        fail_rt("training failed");
        goto done;
    }
    if (!a->nparts && !test && evaluate(&cb, train, "train", &to, false) != NN_OK) {
        fail_rt(NULL);
        goto done;
    }
    if (res.saved && !g->quiet)
        printf("saved %s\n", a->save);
    rc = 0;
done:
    runner_fini(&R);
out:
    app_splits_fini(&s);
    return rc;
}

// ---- predict ----
static const NnrtDataOp *class_names(const NnrtApp *a)
{
    const NnrtDataOp *c = NULL;
    for (int i = 0; i < a->ndata; i++)
        if (a->data[i].kind == NNRT_DATA_CLASSES)
            c = &a->data[i];
    return c;
}

static int cmd_predict(const NnrtApp *a, const Args *g)
{
    if (a->nparts)
        return fail("model '%s' is trained by a block of steps and has no outputs to predict%s; "
                    "`nnc sample` shows what a generator makes", a->program, "");
    if (!g->input)
        return usage("'predict' needs an INPUT file (idx or csv samples, or - for raw f32 on "
                     "standard input)%s", "");
    if (!g->output)
        return usage("'predict' needs -o OUT (a .csv file, or - for standard output)%s", "");
    if (!g->weights && !a->weights)
        return usage("'predict' needs --weights FILE (this program has no embedded weights)%s",
                     "");
    Runner R;
    int rc = 1;
    NnTensor *x = NULL, *out = NULL;
    FILE *f = NULL;
    if (runner_init(&R, a, true, !g->weights) != NN_OK || load_weights(&R, g->weights) != NN_OK) {
        fail_rt(NULL);
        goto done;
    }
    if (!(x = app_read_input(a, g->input))) {
        fail_rt(NULL);
        goto done;
    }
    int64_t n = x->shape[0], dims[2] = {n, a->out_features};
    if (!(out = nnrt_tensor_new(NN_DT_F32, 2, dims))) {
        fail_rt(NULL);
        goto done;
    }
    double loss;
    for (int64_t i = 0; i < n; i += a->batch) {
        int64_t m = n - i < a->batch ? n - i : a->batch;
        NnTensor xv, ov;
        app_rows_view(&xv, x, i, m);
        app_rows_view(&ov, out, i, m);
        if (cb_predict(&R, &xv, NULL, m, &ov, &loss) != NN_OK) {
            fail_rt(NULL);
            goto done;
        }
    }
    if (strcmp(g->output, "-") && nnrt_savefile_check(g->output) != NN_OK) {
        fail("%s%s", nnrt_errmsg(), "");
        goto done;
    }
    f = strcmp(g->output, "-") ? fopen(g->output, "w") : stdout;
    if (!f) {
        fail("cannot write '%s': %s", g->output, strerror(errno));
        goto done;
    }
    const NnrtDataOp *cn = a->classify ? class_names(a) : NULL;
    const float *o = out->data;
    int64_t w = a->out_features;
    fputs(a->classify ? "class" : "", f);
    for (int64_t k = 0; k < w; k++) {
        if (cn && k < cn->nnames)
            fprintf(f, "%s%s", a->classify || k ? "," : "", cn->names[k]);
        else
            fprintf(f, "%s%s%lld", a->classify || k ? "," : "", a->classify ? "score" : "y",
                    (long long)k);
    }
    fputc('\n', f);
    for (int64_t i = 0; i < n; i++) {
        if (a->classify) {
            int64_t best = 0;
            for (int64_t k = 1; k < w; k++)
                best = o[i * w + k] > o[i * w + best] ? k : best;
            if (cn && best < cn->nnames)
                fputs(cn->names[best], f);
            else
                fprintf(f, "%lld", (long long)best);
        }
        for (int64_t k = 0; k < w; k++)
            fprintf(f, "%s%.7g", a->classify || k ? "," : "", (double)o[i * w + k]);
        fputc('\n', f);
    }
    if ((f != stdout && fclose(f) != 0) || (f == stdout && fflush(f) != 0)) {
        f = NULL;
        fail("cannot write '%s': %s", g->output, strerror(errno));
        goto done;
    }
    f = NULL;
    rc = 0;
done:
    if (f && f != stdout)
        fclose(f);
    nnrt_tensor_free(x);
    nnrt_tensor_free(out);
    runner_fini(&R);
    return rc;
}

// ---- the command line ----

static void help(const NnrtApp *a)
{
    printf("usage: %s train [--set KEY=VALUE] [--resume W] [--metrics F] [-q]\n"
           "       %s eval [--weights W] [--metrics F] [-q]\n"
           "       %s predict [--weights W] INPUT -o OUT\n"
           "       %s sample [--weights W] [-o OUT.png] [--seed S] [--count N] "
           "[--temperature T]\n"
           "\n"
           "Model '%s' from %s, built by nnc for %s%s.\n"
           "INPUT: an idx or csv file of samples as the data block reads them, or - for raw\n"
           "f32 model inputs on standard input. OUT: CSV of scores (and the class), - for stdout.\n"
           "--set: epochs, patience, save (other settings are compiled in).\n"
           "--threads N: worker threads (default: all cores).\n",
           prog, prog, prog, prog, a->program, a->script, a->target,
           a->weights ? ", with embedded weights" : "");
}

static int parse_args(int argc, char **argv, Args *g)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        bool val = !strcmp(arg, "--weights") || !strcmp(arg, "--resume") ||
                   !strcmp(arg, "--metrics") || !strcmp(arg, "-o") || !strcmp(arg, "--set") ||
                   !strcmp(arg, "--threads") || !strcmp(arg, "--seed") ||
                   !strcmp(arg, "--count") || !strcmp(arg, "--temperature");
        if (val && (!next || !*next))
            return usage("option '%s' needs a value", arg);
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            help(&nnrt_app);
            return -1;
        } else if (!strcmp(arg, "--weights")) {
            g->weights = argv[++i];
        } else if (!strcmp(arg, "--resume")) {
            g->resume = argv[++i];
        } else if (!strcmp(arg, "--metrics")) {
            g->metrics = argv[++i];
        } else if (!strcmp(arg, "-o")) {
            g->output = argv[++i];
        } else if (!strcmp(arg, "--threads")) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 256)
                return usage("--threads expects a number from 1 to 256, got '%s'", argv[i]);
            g->threads = (int)v;
        } else if (!strcmp(arg, "--set")) {
            const char *kv = argv[++i], *eq = strchr(kv, '=');
            if (!eq || eq == kv || g->nsets == 32)
                return usage("--set expects KEY=VALUE, got '%s'", kv);
            g->set_key[g->nsets] = strndup(kv, (size_t)(eq - kv));
            g->set_val[g->nsets++] = eq + 1;
        } else if (!strcmp(arg, "--seed") || !strcmp(arg, "--count") ||
                   !strcmp(arg, "--temperature")) {
            if (app_sample_option(&g->sample, arg, argv[++i]) != 0)
                return usage(!strcmp(arg, "--seed")
                                 ? "--seed expects a non-negative integer below 2^64, got '%s'"
                             : !strcmp(arg, "--count")
                                 ? "--count expects a number from 1 to 1000000, got '%s'"
                                 : "--temperature expects a number from 0 to 100, got '%s'",
                             argv[i]);
        } else if (!strcmp(arg, "-q") || !strcmp(arg, "--quiet")) {
            g->quiet = true;
        } else if (arg[0] == '-' && arg[1]) {
            return usage("unknown option '%s'", arg);
        } else if (!g->cmd) {
            g->cmd = arg;
        } else if (!g->input && !strcmp(g->cmd, "predict")) {
            g->input = arg;
        } else {
            return usage("unexpected argument '%s'", arg);
        }
    }
    if (!g->cmd) {
        help(&nnrt_app);
        return 2;
    }
    bool train = !strcmp(g->cmd, "train"), eval = !strcmp(g->cmd, "eval"),
         predict = !strcmp(g->cmd, "predict"), sample = !strcmp(g->cmd, "sample");
    if (!train && !eval && !predict && !sample)
        return usage("unknown command '%s' (commands: train, eval, predict, sample)", g->cmd);
    bool sample_opts = g->sample.has_seed || g->sample.has_temperature || g->sample.count;
    if (sample_opts && !sample)
        return usage("--seed, --count and --temperature are for 'sample'%s", "");
    if (g->resume && !train)
        return usage("--resume is for 'train'%s", "");
    if (g->weights && train)
        return usage("--weights is for 'eval' and 'predict' (train takes --resume W)%s", "");
    if ((g->output && !predict && !sample) || (g->input && !predict))
        return usage("-o and INPUT are for 'predict' (and -o for 'sample')%s", "");
    if (g->nsets && !train)
        return usage("--set is for 'train'%s", "");
    if (g->metrics && (predict || sample))
        return usage("--metrics is for 'train' and 'eval'%s", "");
    return 0;
}

// Under mpirun, train and eval run as one rank of a data-parallel run, as
// `nnc train` does (runtime/dist.h): the training steps with averaged
// gradients, rank 0 alone printing and writing. K copies of a one-process
// program would each train alone and write the same files: refused.
static int start_ranks(Args *g, NnrtApp *a)
{
    int k = nnrt_dist_launched_ranks();
    const char *script = a->script ? a->script : "MODEL.nn";
    if (!nnrt_dist_built() || (!a->ndist_train && !strcmp(g->cmd, "train"))) {
        fprintf(stderr, "%s: error: this program %s, so it cannot %s as %d MPI ranks; run "
                "`mpirun -np %d nnc train %s` instead\n", prog, !nnrt_dist_built() ?
                "was built without MPI" : "has training steps compiled for fixed batch sizes "
                "(a rank trains on its slice of each batch)", g->cmd, k, k, script);
        return 1;
    }
    if (nnrt_dist_init() != NN_OK)
        return fail_rt(NULL);
    a->train = a->dist_train;
    a->ntrain = a->ndist_train;
    if (nnrt_dist_rank() != 0) {
        g->quiet = true;
        g->metrics = NULL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    prog = argc > 0 ? (slash ? slash + 1 : argv[0]) : "program";
    setvbuf(stdout, NULL, _IOLBF, 0);
    Args g = {0};
    int rc = parse_args(argc, argv, &g);
    NnrtApp a = nnrt_app;
    if (rc == 0)
        rc = apply_sets(&g, &a);
    if (rc == 0 && strcmp(g.cmd, "predict") != 0 && nnrt_dist_launched_ranks() > 1)
        rc = start_ranks(&g, &a);
    if (rc == 0 && g.threads && nnrt_pool_set_threads(g.threads) != NN_OK)
        rc = fail_rt(NULL);
    if (rc == 0 && !strcmp(g.cmd, "sample")) {
        g.sample.weights = g.weights;
        g.sample.output = g.output;
        g.sample.quiet = g.quiet;
        rc = app_cmd_sample(&a, &g.sample, prog);
    } else if (rc == 0) {
        rc = !strcmp(g.cmd, "predict") ? cmd_predict(&a, &g)
                                       : cmd_train(&a, &g, !strcmp(g.cmd, "eval"));
    }
    for (int i = 0; i < g.nsets; i++)
        free((char *)g.set_key[i]);
    fflush(stdout);
    // A rank that fails alone would leave the others waiting for it.
    if (rc > 0 && nnrt_dist_size() > 1 && !nnrt_dist_failed_together())
        nnrt_dist_abort("failed (see the messages above); ending every rank");
    nnrt_dist_finalize();
    return rc < 0 ? 0 : rc;
}
