// The main program of every `nnc build` executable: `PROG train`, `PROG eval`
// and `PROG predict`, on libnnrt alone. It replays the data block from the
// generated tables (app.h), initializes the variables as `nnc train` does and
// hands the runtime's training loop callbacks that run the compiled step
// descriptors, so its results equal those of `nnc train` / `nnc eval`.
// Exit status: 0 success, 1 a diagnostic (bad data, weights, input), 2 bad usage.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
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

// ---- the data block, replayed ----

typedef struct Splits {
    const char *names[8];
    NnrtDataset ds[8];
    int count;
} Splits;

static NnrtDataset *split_get(Splits *s, const char *name)
{
    for (int i = 0; i < s->count; i++)
        if (!strcmp(s->names[i], name))
            return &s->ds[i];
    return NULL;
}

static NnrtDataset *split_add(Splits *s, const char *name)
{
    NnrtDataset *d = split_get(s, name);
    if (d) {
        nnrt_dataset_fini(d);
        nnrt_dataset_init(d);
        return d;
    }
    if (s->count == 8) {
        nnrt_fail(NN_ERR_RUNTIME, "too many splits");
        return NULL;
    }
    s->names[s->count] = name;
    nnrt_dataset_init(&s->ds[s->count]);
    return &s->ds[s->count++];
}

static bool is_label(const char *name) { return !strcmp(name, "label") || !strcmp(name, "y"); }

static void count_classes(NnrtDataset *d)
{
    if (!d->y || d->y->dtype != NN_DT_I32 || d->class_names)
        return;
    int32_t mx = -1;
    for (int64_t i = 0; i < d->y->numel; i++)
        mx = ((int32_t *)d->y->data)[i] > mx ? ((int32_t *)d->y->data)[i] : mx;
    d->num_classes = mx + 1;
}

// field := t on split d (takes t), as the compiler's data driver sets it.
static NnStatus set_field(Splits *s, NnrtDataset *d, const char *field, NnTensor *t)
{
    if (!d && !(d = split_get(s, "train")) && !(d = split_add(s, "train"))) {
        nnrt_tensor_free(t);
        return NN_ERR_RUNTIME;
    }
    int64_t n = t->rank ? t->shape[0] : 0;
    if (t->rank == 0 || (d->count && n != d->count)) {
        nnrt_tensor_free(t);
        return nnrt_fail(NN_ERR_SHAPE, "field '%s' has %lld samples, the data has %lld", field,
                         (long long)n, (long long)d->count);
    }
    NnTensor **slot = is_label(field) ? &d->y : &d->x;
    if (is_label(field)) {
        free(d->y_at);
        d->y_at = NULL;
    }
    nnrt_tensor_free(*slot);
    *slot = t;
    d->count = n;
    count_classes(d);
    return NN_OK;
}

static NnStatus run_transform(Splits *s, const NnrtDataOp *op)
{
    int n = s->count ? s->count : 1;
    if (op->nsteps != n)
        return nnrt_fail(NN_ERR_SHAPE, "the data block had %d splits when this program was built, "
                         "%d now", op->nsteps, n);
    for (int k = 0; k < n; k++) {
        NnrtDataset *d = s->count ? &s->ds[k] : NULL;
        NnTensor *in[2] = {0}, *out[1];
        int ni = 0;
        if (d && d->x)
            in[ni++] = d->x;
        if (d && d->y)
            in[ni++] = d->y;
        NnrtStepRun r;
        NnStatus st = nnrt_step_open(&r, op->steps[k]);
        if (st == NN_OK && op->steps[k]->ninputs != ni)
            st = nnrt_fail(NN_ERR_SHAPE, "split '%s' has %d fields, %d when this program was built",
                           s->names[k], ni, op->steps[k]->ninputs);
        if (st == NN_OK && (st = nnrt_step_run(&r, NULL, NULL, in, out)) != NN_OK)
            st = nnrt_fail(st, "split '%s' is not the data this program was built for: %s",
                           d ? s->names[k] : "train", nnrt_errmsg());
        NnTensor *t = st == NN_OK ? nnrt_tensor_clone(out[0]) : NULL;
        nnrt_step_close(&r);
        if (st != NN_OK)
            return st;
        if (!t || (st = set_field(s, d, op->name, t)) != NN_OK)
            return t ? st : NN_ERR_NOMEM;
    }
    return NN_OK;
}

static NnStatus run_split(Splits *s, const NnrtDataOp *op)
{
    NnrtDataset *src = split_get(s, op->name), parts[8];
    if (!src)
        return nnrt_fail(NN_ERR_RUNTIME, "no split named '%s' to divide", op->name);
    NnStatus st = nnrt_dataset_split(src, op->fracs, op->nparts, op->seed, parts);
    if (st != NN_OK)
        return st;
    for (int i = 0; i < op->nparts; i++) {
        NnrtDataset *d = parts[i].count > 0 ? split_add(s, op->parts[i]) : NULL;
        if (!d) {
            for (int k = i; k < op->nparts; k++)
                nnrt_dataset_fini(&parts[k]);
            return nnrt_fail(NN_ERR_SHAPE, "split '%s' gets no samples", op->parts[i]);
        }
        *d = parts[i];
    }
    return NN_OK;
}

static NnStatus run_classes(Splits *s, const NnrtDataOp *op)
{
    for (int k = 0; k < s->count; k++) {
        NnrtDataset *d = &s->ds[k];
        if (d->num_classes > op->nnames)
            return nnrt_fail(NN_ERR_SHAPE, "%d class names given, but split '%s' has %d classes",
                             op->nnames, s->names[k], d->num_classes);
        if (d->class_names)
            for (int i = 0; i < d->num_classes; i++)
                free(d->class_names[i]);
        free(d->class_names);
        d->num_classes = op->nnames;
        if (!(d->class_names = calloc((size_t)op->nnames, sizeof(char *))))
            return nnrt_fail(NN_ERR_NOMEM, "out of memory");
        for (int i = 0; i < op->nnames; i++)
            if (!(d->class_names[i] = strdup(op->names[i])))
                return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    return NN_OK;
}

static NnStatus run_op(Splits *s, const NnrtDataOp *op)
{
    NnrtDataset *d;
    switch (op->kind) {
    case NNRT_DATA_IDX:
        return (d = split_add(s, op->name)) ? nnrt_dataset_load_idx(d, op->path, op->path2)
                                            : NN_ERR_RUNTIME;
    case NNRT_DATA_CSV:
        return (d = split_add(s, op->name)) ? nnrt_dataset_load_csv(d, op->path, &op->csv)
                                            : NN_ERR_RUNTIME;
    case NNRT_DATA_TEXT:
        return (d = split_add(s, op->name)) ? nnrt_dataset_load_text(d, op->path, &op->text)
                                            : NN_ERR_RUNTIME;
    case NNRT_DATA_LITERAL: {
        NnTensor *t = nnrt_tensor_new((NnDType)op->dtype, op->rank, op->dims);
        if (!t)
            return NN_ERR_NOMEM;
        memcpy(t->data, op->data, nnrt_tensor_nbytes(t));
        return set_field(s, NULL, op->name, t);
    }
    case NNRT_DATA_TRANSFORM: return run_transform(s, op);
    case NNRT_DATA_SPLIT: return run_split(s, op);
    case NNRT_DATA_CLASSES: return run_classes(s, op);
    case NNRT_DATA_NORMALIZE: {
        NnrtNorm norm = {0};
        NnStatus st = nnrt_norm_fit(&norm, split_get(s, "train"), op->per_feature);
        for (int k = 0; st == NN_OK && k < s->count; k++)
            st = nnrt_norm_apply(&norm, &s->ds[k]);
        nnrt_norm_fini(&norm);
        return st;
    }
    default: return nnrt_fail(NN_ERR_RUNTIME, "unknown data operation %d", op->kind);
    }
}

static void splits_fini(Splits *s)
{
    for (int i = 0; i < s->count; i++)
        nnrt_dataset_fini(&s->ds[i]);
    s->count = 0;
}

static NnStatus load_data(const NnrtApp *a, Splits *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < a->ndata; i++) {
        NnStatus st = run_op(s, &a->data[i]);
        if (st != NN_OK)
            return st;
    }
    if (!split_get(s, "train"))
        return nnrt_fail(NN_ERR_RUNTIME, "the data has no 'train' split");
    return NN_OK;
}

static NnStatus keep_head(NnrtDataset *ds, int64_t n)
{
    if (!ds || n <= 0 || n >= ds->count)
        return NN_OK;
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    if (!idx)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    NnrtDataset sub;
    NnStatus st = nnrt_dataset_subset(ds, idx, n, &sub);
    free(idx);
    if (st == NN_OK) {
        nnrt_dataset_fini(ds);
        *ds = sub;
    }
    return st;
}

// ---- the compiled steps ----

typedef struct Runner {
    const NnrtApp *a;
    NnVars vars;
    NnrtStepRun *train, *eval; // opened on first use (run.d != NULL)
    NnTensor *xrow, *yrow;     // one-row views for evaluating row by row
    NnTensor *zero_y;          // labels of zeros for predict (no labels)
} Runner;

static int find_step(const NnrtAppStep *list, int n, int64_t rows)
{
    for (int i = 0; i < n; i++)
        if (list[i].rows == rows)
            return i;
    return -1;
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
    return st;
}

// A view of rows [i, i + n) of t.
static void rows_view(NnTensor *v, const NnTensor *t, int64_t i, int64_t n)
{
    *v = *t;
    v->owned = false;
    v->shape[0] = n;
    int64_t w = t->shape[0] ? t->numel / t->shape[0] : 0;
    v->numel = n * w;
    v->data = (char *)t->data + (size_t)(i * w) * nnrt_dtype_size(t->dtype);
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
        rows_view(&xv, x, r, rows);
        if (y)
            rows_view(&yv, y, r, rows);
        else
            rows_view(&yv, R->zero_y, 0, rows);
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
        if ((model_only && !v->model) || !src)
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
// and layer state, zero, to be loaded.
static NnStatus init_vars(Runner *R, bool model_only)
{
    nnrt_vars_init(&R->vars);
    for (int i = 0; i < R->a->nvars; i++) {
        const NnrtAppVar *v = &R->a->vars[i];
        if (model_only && !v->model)
            continue;
        NnTensor *t = nnrt_tensor_new((NnDType)v->dtype, v->rank, v->dims);
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
    if (path)
        st = nnrt_safetensors_load(path, &loaded, NULL);
    else
        st = nnrt_safetensors_load_mem(name, a->weights, (size_t)(a->weights_end - a->weights),
                                       &loaded, NULL);
    if (st == NN_OK)
        st = nnrt_checkpoint_assign(name, &R->vars, &loaded);
    nnrt_vars_fini(&loaded);
    return st;
}

static NnStatus runner_init(Runner *R, const NnrtApp *a, bool model_only)
{
    memset(R, 0, sizeof *R);
    R->a = a;
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
    if (eval_only && !g->weights && !a->weights) {
        rc = usage("'eval' needs --weights FILE (this program has no embedded weights)%s", "");
        goto out;
    }
    if (runner_init(&R, a, eval_only) != NN_OK) {
        fail_rt(NULL);
        goto done;
    }
    if (!eval_only && g->resume && access(g->resume, F_OK) != 0) {
        fail("cannot resume from '%s': %s", g->resume, strerror(errno));
        goto done;
    }
    if (!eval_only && a->save && nnrt_savefile_check(a->save) != NN_OK) {
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
    if (load_data(a, &s) != NN_OK) {
        fail_rt("data");
        goto done;
    }
    NnrtDataset *train = split_get(&s, "train"), *val = split_get(&s, "val");
    NnrtDataset *test = split_get(&s, "test");
    if (keep_head(train, a->limit) != NN_OK || keep_head(val, a->eval_limit) != NN_OK ||
        keep_head(test, a->eval_limit) != NN_OK) {
        fail_rt(NULL);
        goto done;
    }
    NnrtTrainCallbacks cb = {.ctx = &R, .step = cb_step, .predict = cb_predict,
                             .snapshot = cb_snapshot, .restore = cb_restore,
                             .checkpoint_vars = cb_checkpoint_vars};
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
            evaluate(&cb, test ? test : train, test ? "test" : "train", &to, false) != NN_OK) {
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
    if (!test && evaluate(&cb, train, "train", &to, false) != NN_OK) {
        fail_rt(NULL);
        goto done;
    }
    if (res.saved && !g->quiet)
        printf("saved %s\n", a->save);
    rc = 0;
done:
    runner_fini(&R);
out:
    splits_fini(&s);
    return rc;
}

// ---- predict ----

static int64_t numel_of(int rank, const int64_t *dims)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    return n;
}

static const char *dims_str(int rank, const int64_t *dims, char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (len < n)
        snprintf(buf + len, n - len, "]");
    return buf;
}

// Raw f32 samples of the model's input from standard input.
static NnTensor *read_stdin(const NnrtApp *a)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    int64_t per = numel_of(a->x_rank, a->x_dims) * 4;
    char d[96];
    if (!buf) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (len == 0 || per == 0 || len % (size_t)per) {
        nnrt_fail(NN_ERR_FORMAT, "standard input: %zu bytes is not a whole number of samples of "
                  "f32%s (%lld bytes each)", len, dims_str(a->x_rank, a->x_dims, d, sizeof d),
                  (long long)per);
        free(buf);
        return NULL;
    }
    int64_t dims[NN_MAX_RANK + 1] = {(int64_t)(len / (size_t)per)};
    memcpy(dims + 1, a->x_dims, sizeof(int64_t) * (size_t)a->x_rank);
    NnTensor *t = nnrt_tensor_new(NN_DT_F32, a->x_rank + 1, dims);
    if (t)
        memcpy(t->data, buf, len);
    free(buf);
    return t;
}

// The column of a row of ncols values that holds the label, as the data
// block's csv() reads it (header: the first line, or NULL); -1: none.
static int label_column(const NnrtApp *a, const char *header, int ncols)
{
    const NnrtDataOp *csv = NULL;
    for (int i = 0; i < a->ndata && !csv; i++)
        if (a->data[i].kind == NNRT_DATA_CSV)
            csv = &a->data[i];
    if (!csv)
        return -1;
    if (csv->csv.label_name && header) {
        int col = 0;
        size_t len = strlen(csv->csv.label_name);
        for (const char *p = header; p; p = strchr(p, ','), p = p ? p + 1 : NULL, col++) {
            while (*p == ' ')
                p++;
            if (!strncmp(p, csv->csv.label_name, len) && strchr(",\r\n", p[len]))
                return col;
        }
        return -1;
    }
    int k = csv->csv.label_index_set ? csv->csv.label_index : -1;
    return k < 0 ? ncols + k : k;
}

// Rows of numbers, one sample each. A header line of names is skipped; a
// row with one value more than a sample drops the label column as the data
// block's csv() names it, so the data's own files can be given.
static NnTensor *read_csv(const NnrtApp *a, const char *path, int rank, const int64_t *sample)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        nnrt_fail(NN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    int64_t per = numel_of(rank, sample), n = 0, cap = 64;
    float *v = malloc((size_t)(cap * per) * sizeof(float));
    char *line = NULL, *header = NULL;
    size_t lcap = 0;
    long lineno = 0;
    NnStatus st = NN_OK;
    char d[96];
    while (st == NN_OK && v && getline(&line, &lcap, f) > 0) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\n' || *p == '\r' || !*p)
            continue;
        if (lineno == 1 && !(*p == '-' || *p == '+' || *p == '.' || (*p >= '0' && *p <= '9'))) {
            header = strdup(p);
            continue;
        }
        if (n == cap) {
            float *nv = realloc(v, (size_t)(2 * cap * per) * sizeof(float));
            if (!nv)
                break;
            v = nv;
            cap *= 2;
        }
        int64_t k = 0, ncols = 1, skip;
        for (const char *q = p; (q = strchr(q, ',')); q++)
            ncols++;
        skip = ncols == per + 1 ? label_column(a, header, (int)ncols) : -1;
        for (int64_t col = 0;; col++) {
            char *end;
            double x = strtod(p, &end);
            if (end == p) {
                st = nnrt_fail(NN_ERR_FORMAT, "%s:%ld: expected a number at column %ld", path,
                               lineno, (long)(p - line) + 1);
                break;
            }
            if (col != skip && k < per)
                v[n * per + k] = (float)x;
            k += col != skip;
            p = end;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p != ',')
                break;
            p++;
        }
        if (st == NN_OK && k != per)
            st = nnrt_fail(NN_ERR_SHAPE, "%s:%ld: %lld values, expected %lld (one sample of "
                           "f32%s)", path, lineno, (long long)k, (long long)per,
                           dims_str(rank, sample, d, sizeof d));
        n++;
    }
    free(line);
    free(header);
    fclose(f);
    if (st == NN_OK && (!v || n == 0))
        st = nnrt_fail(v ? NN_ERR_FORMAT : NN_ERR_NOMEM, "%s: no samples", path);
    NnTensor *t = NULL;
    if (st == NN_OK) {
        int64_t dims[NN_MAX_RANK + 1] = {n};
        memcpy(dims + 1, sample, sizeof(int64_t) * (size_t)rank);
        if ((t = nnrt_tensor_new(NN_DT_F32, rank + 1, dims)))
            memcpy(t->data, v, (size_t)(n * per) * sizeof(float));
    }
    free(v);
    return t;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

// The input samples as the model reads them: raw samples of the data's x go
// through the data block's x transforms one sample at a time.
static NnTensor *read_input(const NnrtApp *a, const char *path)
{
    if (!strcmp(path, "-"))
        return read_stdin(a);
    bool raw = a->nxform > 0;
    int rank = raw ? a->x_raw_rank : a->x_rank;
    const int64_t *sample = raw ? a->x_raw_dims : a->x_dims;
    NnTensor *t = NULL;
    char d1[96], d2[96];
    if (ends_with(path, ".csv")) {
        t = read_csv(a, path, rank, sample);
    } else {
        if (nnrt_idx_load(path, &t) != NN_OK)
            return NULL;
        // An IDX file of images reads as [count, h, w]; the data's x has the
        // channel too ([count, 1, h, w]): the same samples.
        int64_t per = t->rank ? numel_of(t->rank - 1, t->shape + 1) : 0;
        if (t->dtype != NN_DT_F32 || t->rank < 2 || per != numel_of(rank, sample)) {
            nnrt_fail(NN_ERR_SHAPE, "%s holds samples of shape %s; this model reads f32%s (%s)",
                      path, dims_str(t->rank - 1, t->shape + 1, d1, sizeof d1),
                      dims_str(rank, sample, d2, sizeof d2),
                      raw ? "as the data block's x" : "its input");
            nnrt_tensor_free(t);
            return NULL;
        }
        t->rank = rank + 1;
        memcpy(t->shape + 1, sample, sizeof(int64_t) * (size_t)rank);
    }
    if (!t || !raw)
        return t;
    int64_t n = t->shape[0];
    int64_t dims[NN_MAX_RANK + 1] = {n};
    memcpy(dims + 1, a->x_dims, sizeof(int64_t) * (size_t)a->x_rank);
    NnTensor *x = nnrt_tensor_new((NnDType)a->x_dtype, a->x_rank + 1, dims);
    NnrtStepRun *runs = calloc((size_t)a->nxform, sizeof *runs);
    NnTensor *cur = NULL;
    NnStatus st = x && runs ? NN_OK : NN_ERR_NOMEM;
    for (int k = 0; st == NN_OK && k < a->nxform; k++)
        st = nnrt_step_open(&runs[k], a->xform[k].step);
    for (int64_t i = 0; st == NN_OK && i < n; i++) {
        NnTensor row, *in[1] = {&row}, *out[1];
        rows_view(&row, t, i, 1);
        for (int k = 0; st == NN_OK && k < a->nxform; k++) {
            st = nnrt_step_run(&runs[k], NULL, NULL, in, out);
            cur = out[0];
            in[0] = cur;
        }
        if (st == NN_OK) {
            size_t nb = nnrt_tensor_nbytes(cur);
            memcpy((char *)x->data + (size_t)i * nb, cur->data, nb);
        }
    }
    for (int k = 0; runs && k < a->nxform; k++)
        nnrt_step_close(&runs[k]);
    free(runs);
    nnrt_tensor_free(t);
    if (st != NN_OK) {
        nnrt_tensor_free(x);
        return NULL;
    }
    return x;
}

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
    if (runner_init(&R, a, true) != NN_OK || load_weights(&R, g->weights) != NN_OK) {
        fail_rt(NULL);
        goto done;
    }
    if (!(x = read_input(a, g->input))) {
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
        rows_view(&xv, x, i, m);
        rows_view(&ov, out, i, m);
        if (cb_predict(&R, &xv, NULL, m, &ov, &loss) != NN_OK) {
            fail_rt(NULL);
            goto done;
        }
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
           "\n"
           "Model '%s' from %s, built by nnc for %s%s.\n"
           "INPUT: an idx or csv file of samples as the data block reads them, or - for raw\n"
           "f32 model inputs on standard input. OUT: CSV of scores (and the class), - for stdout.\n"
           "--set: epochs, patience, save (other settings are compiled in).\n"
           "--threads N: worker threads (default: all cores).\n",
           prog, prog, prog, a->program, a->script, a->target,
           a->weights ? ", with embedded weights" : "");
}

static int parse_args(int argc, char **argv, Args *g)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        bool val = !strcmp(arg, "--weights") || !strcmp(arg, "--resume") ||
                   !strcmp(arg, "--metrics") || !strcmp(arg, "-o") || !strcmp(arg, "--set") ||
                   !strcmp(arg, "--threads");
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
         predict = !strcmp(g->cmd, "predict");
    if (!train && !eval && !predict)
        return usage("unknown command '%s' (commands: train, eval, predict)", g->cmd);
    if (g->resume && !train)
        return usage("--resume is for 'train'%s", "");
    if (g->weights && train)
        return usage("--weights is for 'eval' and 'predict' (train takes --resume W)%s", "");
    if ((g->output || g->input) && !predict)
        return usage("-o and INPUT are for 'predict'%s", "");
    if (g->nsets && !train)
        return usage("--set is for 'train'%s", "");
    if (g->metrics && predict)
        return usage("--metrics is for 'train' and 'eval'%s", "");
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
    if (rc == 0 && g.threads && nnrt_pool_set_threads(g.threads) != NN_OK)
        rc = fail_rt(NULL);
    if (rc == 0)
        rc = !strcmp(g.cmd, "predict") ? cmd_predict(&a, &g)
                                       : cmd_train(&a, &g, !strcmp(g.cmd, "eval"));
    for (int i = 0; i < g.nsets; i++)
        free((char *)g.set_key[i]);
    fflush(stdout);
    return rc < 0 ? 0 : rc;
}
