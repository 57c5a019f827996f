// `nnc train` and `nnc eval`: loads the data block, lowers the train block to
// its step and eval graphs, optimizes them, prepares them on the chosen
// backend and hands the runtime's training loop callbacks that run them.
// Parameters and optimizer state live in one NnVars table that the compiled
// step updates in place; checkpoints are that table.
#include "driver.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init.h"
#include "progress.h"
#include "train.h"

typedef struct Runner {
    const NnBackend *be;
    NnExec *step, *eval;
    NnVars vars;
    const NnTrainSpec *spec;
} Runner;

static NnStatus cb_step(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, double *loss)
{
    Runner *R = ctx;
    NnTensor *in[2] = {(NnTensor *)x, (NnTensor *)y}, *out[1];
    NnStatus st = R->be->run(R->step, &R->vars, in, out);
    if (st == NN_OK)
        *loss = nnrt_tensor_get(out[0], 0);
    return st;
}

static NnStatus cb_predict(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n,
                           NnTensor *out, double *loss)
{
    Runner *R = ctx;
    NnTensor *in[2] = {(NnTensor *)x, (NnTensor *)y}, *res[2];
    NnStatus st = R->be->run(R->eval, &R->vars, in, res);
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

static NnStatus copy_vars(const NnVars *src, NnVars *dst, bool params_only, const NnTrainSpec *s)
{
    for (int i = 0; i < src->count; i++) {
        if (params_only) {
            bool model = false; // weights and layer state, not optimizer state
            for (int k = 0; k < s->nvars; k++)
                if (strcmp(s->vars[k].name, src->names[i]) == 0)
                    model = s->vars[k].trainable || s->vars[k].model_state;
            if (!model)
                continue;
        }
        NnTensor *t = nnrt_tensor_clone(src->tensors[i]);
        if (!t || nnrt_vars_put(dst, src->names[i], t) != NN_OK)
            return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    return NN_OK;
}

static NnStatus cb_snapshot(void *ctx, NnVars *out)
{
    Runner *R = ctx;
    return copy_vars(&R->vars, out, true, R->spec);
}

static NnStatus cb_checkpoint_vars(void *ctx, NnVars *out)
{
    Runner *R = ctx;
    return copy_vars(&R->vars, out, false, R->spec);
}

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

static bool init_vars(NnCtx *c, const NnTrainSpec *s, NnVars *vars)
{
    nnrt_vars_init(vars);
    for (int i = 0; i < s->nvars; i++) {
        const NnParamInit *v = &s->vars[i];
        NnTensor *t = nnrt_tensor_new(v->dtype, v->shape.rank, v->shape.dim);
        if (!t || nnrt_init_fill(t, v->init, v->args, v->nargs, s->seed, v->name) != NN_OK ||
            nnrt_vars_put(vars, v->name, t) != NN_OK) {
            nn_error(&c->diags, v->loc, "cannot initialize '%s': %s", v->name, nnrt_errmsg());
            return false;
        }
    }
    return true;
}

static NnExec *prepare(NnCtx *c, const NnBackend *be, NnGraph **g, NnOptions *o, NnLoc loc)
{
    NnPassOptions po = o->passes;
    if (!po.stop)
        po.stop = strcmp(be->name, "interp") == 0 ? "opt" : "fused";
    *g = nn_passes_run(*g, &po);
    NnExecOptions eo = {.threads = o->threads, .verbose = o->verbose};
    NnExec *x = be->prepare(*g, &eo);
    if (!x)
        nn_error(&c->diags, loc, "backend '%s' cannot prepare the graph: %s", be->name,
                 nnrt_errmsg());
    return x;
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
        if (strcmp(fn, "random_rotation") == 0 && v > 0)
            a->rotate_deg = v;
        else if (strcmp(fn, "random_shift") == 0 && v >= 1)
            a->shift_px = (int)v;
        else if (strcmp(fn, "random_flip") == 0 || strcmp(fn, "hflip") == 0)
            a->hflip = true;
        else if (strcmp(fn, "gaussian_noise") == 0 && v > 0)
            a->noise_std = v;
        else {
            nn_error(&c->diags, e->loc, "unknown augmentation; use random_rotation(DEG), "
                     "random_shift(PIXELS), random_flip or gaussian_noise(STD)");
            return false;
        }
    }
    return true;
}

// Lowers the first train block against its data. Fills spec and splits.
// A classifier must score every class its labels name.
static bool check_classes(NnCtx *c, const NnTrainSpec *spec, NnSplits *splits)
{
    if (!spec->classify)
        return true;
    const NnNode *o = nn_node(spec->eval, nn_graph_output(spec->eval, "output"));
    int64_t scored = o->shape.dim[o->shape.rank - 1];
    NnLoc at = spec->ast->loc;
    for (int i = 0; i < spec->ast->kids.count; i++) {
        const NnAst *a = spec->ast->kids.items[i];
        if (a->kind == NN_AST_ARG && !strcmp(a->name, "loss"))
            at = a->a->loc;
    }
    for (int k = 0; k < splits->count; k++)
        if (splits->ds[k].num_classes > scored) {
            nn_error(&c->diags, at, "model '%s' scores %lld classes, but the labels of split '%s' "
                     "name %d classes", spec->model, (long long)scored, splits->names[k],
                     splits->ds[k].num_classes);
            return false;
        }
    return true;
}

bool nn_driver_setup(NnCtx *c, const NnProgram *p, NnOptions *o, NnTrainSpec *spec,
                     NnSplits *splits)
{
    if (p->ntrains == 0) {
        nn_error(&c->diags, (NnLoc){0}, "%s has no train block", o->file);
        return false;
    }
    const NnAst *t = p->trains[0];
    const NnDecl *dd = nn_sema_find(p, t->name2);
    if (!dd || dd->ast->kind != NN_AST_DATA) {
        const char *near = nn_sema_suggest(p, t->name2, NULL, 0);
        nn_error(&c->diags, t->loc, "'%s' is not a data block%s", t->name2,
                 nn_sema_hint(c, near));
        return false;
    }
    if (o->has_seed && o->nsets < 32) {
        static char buf[32];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->seed);
        o->sets[o->nsets++] = (NnSetting){strdup("seed"), buf, false};
    }
    // Data generation and splits follow the run's seed: --seed, --set seed=,
    // else the train block's `seed = N`, else 1.
    uint64_t seed = 1;
    for (int i = 0; i < t->kids.count; i++) {
        const NnAst *a = t->kids.items[i];
        if (a->kind == NN_AST_ARG && !strcmp(a->name, "seed") && a->a->kind == NN_AST_NUM)
            seed = (uint64_t)a->a->num;
    }
    for (int i = 0; i < o->nsets; i++)
        if (!strcmp(o->sets[i].key, "seed"))
            seed = strtoull(o->sets[i].value, NULL, 10);
    if (!nn_driver_load_data(c, p, dd->ast, nn_backend_find("interp"), seed, splits))
        return false;
    NnrtDataset *tr = nn_splits_get(splits, "train");
    NnField f[2] = {{"x", tr->x->dtype, {.rank = tr->x->rank - 1}},
                    {splits->label, tr->y->dtype, {.rank = tr->y->rank - 1}}};
    memcpy(f[0].sample.dim, tr->x->shape + 1, sizeof(int64_t) * (size_t)f[0].sample.rank);
    memcpy(f[1].sample.dim, tr->y->shape + 1, sizeof(int64_t) * (size_t)f[1].sample.rank);
    if (!nn_lower_train(c, p, t, f, 2, o->sets, o->nsets, spec))
        return false;
    return check_classes(c, spec, splits);
}

// Finds an unusable checkpoint path before any training time is spent.
static bool check_writable(NnCtx *c, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    bool ok = dir && access(dir, W_OK | X_OK) == 0;
    if (!ok)
        nn_error(&c->diags, (NnLoc){0}, "cannot save checkpoints to '%s': directory '%s' %s", path,
                 dir ? dir : "?", errno == ENOENT ? "does not exist" : "is not writable");
    free(dir);
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

int nn_cmd_train(NnCtx *c, const NnProgram *p, NnOptions *o, bool eval_only)
{
    const NnBackend *be = nn_driver_backend(o);
    if (!be)
        return 1;
    NnTrainSpec spec = {0};
    NnSplits splits = {0};
    int rc = 1;
    Runner R = {.be = be, .spec = &spec};
    nnrt_vars_init(&R.vars);
    if (!nn_driver_setup(c, p, o, &spec, &splits) || !init_vars(c, &spec, &R.vars))
        goto done;
    NnLoc loc = spec.ast->loc;
    double t0 = nnrt_now();
    if (!(R.step = prepare(c, be, &spec.step, o, loc)) || !(R.eval = prepare(c, be, &spec.eval, o, loc)))
        goto done;
    if (o->verbose)
        fprintf(stderr, "nnc: prepared step and eval graphs on %s in %.0f ms\n", be->name,
                (nnrt_now() - t0) * 1000);
    NnrtDataset *train = nn_splits_get(&splits, "train");
    NnrtDataset *val = nn_splits_get(&splits, "val"), *test = nn_splits_get(&splits, "test");
    if (!keep_head(c, train, spec.limit, loc) || !keep_head(c, val, spec.eval_limit, loc) ||
        !keep_head(c, test, spec.eval_limit, loc))
        goto done;
    NnrtTrainCallbacks cb = {&R, cb_step, cb_predict, cb_snapshot, cb_restore, cb_checkpoint_vars};
    NnrtTrainOptions to = {0};
    to.epochs = (int)spec.epochs;
    to.batch = spec.batch;
    to.seed = spec.seed;
    to.val = nn_splits_get(&splits, "val");
    to.test = nn_splits_get(&splits, "test");
    to.task = spec.classify ? NNRT_TASK_CLASSIFY : NNRT_TASK_REGRESS;
    to.num_classes = train->num_classes;
    NnNode *on = nn_node(spec.eval, nn_graph_output(spec.eval, "output"));
    to.out_features = on->shape.rank >= 2 ? on->shape.dim[on->shape.rank - 1] : 1;
    for (int i = 0; i < spec.nmetrics; i++)
        to.metrics |= nnrt_metric_bit(spec.metrics[i]);
    to.early_stop = spec.stop_metric;
    to.patience = spec.patience;
    to.metrics_path = o->metrics;
    to.progress = o->quiet ? NNRT_PROGRESS_QUIET : NNRT_PROGRESS_AUTO;
    to.quiet = o->quiet;
    to.checkpoint = o->resume ? o->weights : spec.save;
    to.resume = o->resume;
    to.class_names = train->class_names;
    if (!nn_driver_augment_opts(c, spec.augment, &to.augment))
        goto done;
    if (eval_only) {
        NnVars loaded;
        // load initializes `loaded` and empties it on failure, so one fini fits all paths.
        bool ok = nnrt_safetensors_load(o->weights, &loaded, NULL) == NN_OK &&
                  nnrt_checkpoint_assign(o->weights, &R.vars, &loaded) == NN_OK;
        if (!ok)
            nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        nnrt_vars_fini(&loaded);
        if (!ok)
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
            if (cls)
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
    if (to.checkpoint && !check_writable(c, to.checkpoint))
        goto done;
    NnrtTrainResult res;
    if (spec.epochs == 0) {
        // --set epochs=0: no training, only the report on the initial model.
        if (!final_eval(c, &cb, to.test ? to.test : train, to.test ? "test" : "train", &to))
            goto done;
        rc = 0;
        goto done;
    }
    if (nnrt_train(&cb, train, &to, &res) != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "training failed: %s", nnrt_errmsg());
        goto done;
    }
    // Without a test split, report the final model on the training data.
    if (!to.test && !final_eval(c, &cb, train, "train", &to))
        goto done;
    if (spec.save && !o->quiet)
        printf("saved %s\n", spec.save);
    rc = 0;
done:
    if (R.step)
        be->free(R.step);
    if (R.eval)
        be->free(R.eval);
    nnrt_vars_fini(&R.vars);
    nn_splits_fini(&splits);
    nn_train_spec_fini(&spec);
    return rc;
}
