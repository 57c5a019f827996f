// The training loop behind nnrt_train: takes step/predict/snapshot/restore
// callbacks and datasets, runs epochs of shuffled (and optionally augmented)
// batches, evaluates, logs JSON lines, stops early keeping the best weights,
// and saves an atomic checkpoint after every epoch. Everything random derives
// from (seed, epoch, batch), and the loop's own state (epoch, steps, early
// stopping, best weights as "best/<name>") lives in the checkpoint, so resuming
// repeats exactly what an uninterrupted run would have done. The next batch
// is assembled while the step runs on the current one, two batch buffers in
// turn: by the thread pool's workers between the step's kernels when its
// threads fill the cores, else (and when augmented) on a helper thread.
// Denormals are flushed to zero while training (fpenv.h). Under mpirun
// (dist.h) each rank steps on its slice of every global batch, losses and
// evaluation counts are summed over ranks, and rank 0 alone writes.
#include "train.h"

#include "dist.h"
#include "fpenv.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BEST_PREFIX "best/"
#define LAST_PREFIX "last/"
#define AUG_SEED 0x5bd1e9955bd1e995ull

// Per batch, seconds (NN_EPOCH_PROFILE, below); NULL: off.
typedef struct EpochProfile {
    double *wait, *step, *iter;
} EpochProfile;

typedef struct Run {
    const NnrtTrainCallbacks *cb;
    const NnrtDataset *train;
    const NnrtTrainOptions *opt;
    int epochs;
    int64_t batch;
    FILE *log;
    const char *es_metric; // metric name after the "split." prefix; NULL: off
    bool es_on_val, es_higher;
    int patience;
    NnVars best;           // weights at best_epoch
    bool have_best;
    double best_value;
    int best_epoch, bad_epochs;
    bool stopped;
    int64_t steps;
    NnrtJsonl jsonl;
    bool have_jsonl;
    bool saved;            // save_checkpoint succeeded at least once
    bool writer;           // rank 0 (or the only process): writes checkpoints
    NnrtSideGather *side;  // the pool's workers gather batches; NULL: not (yet)
    EpochProfile prof;
} Run;

static int64_t opt_batch(const NnrtTrainOptions *o) { return o->batch > 0 ? o->batch : 32; }

// Batch buffers hold the smaller of the batch and the split: a batch larger
// than the data gives the same one batch, and its size may come from the user.
static int64_t split_batch(const NnrtTrainOptions *o, const NnrtDataset *ds)
{
    int64_t b = opt_batch(o);
    return ds->count > 0 && ds->count < b ? ds->count : b;
}

static int opt_classes(const NnrtTrainOptions *o, const NnrtDataset *ds)
{
    return o->num_classes > 0 ? o->num_classes : ds->num_classes;
}

static int64_t y_width(const NnrtDataset *ds)
{
    return ds->y && ds->y->shape[0] ? ds->y->numel / ds->y->shape[0] : 1;
}

static unsigned opt_metrics(const NnrtTrainOptions *o)
{
    if (o->metrics)
        return o->metrics;
    return o->task == NNRT_TASK_CLASSIFY ? NNRT_METRIC_ACCURACY : NNRT_METRIC_MSE;
}

// Sums one rank's evaluation counts with every other rank's.
static NnStatus reduce_eval(double *loss_sum, double *sq, int64_t *sq_n, NnrtConfusion *conf,
                            const char *split)
{
    double d[2] = {*loss_sum, *sq};
    NnStatus st = nnrt_dist_sum_f64(d, 2, "the evaluation sums");
    *loss_sum = d[0];
    *sq = d[1];
    if (st == NN_OK)
        st = nnrt_dist_sum_i64(sq_n, 1, "the evaluation sums");
    if (st == NN_OK && conf) {
        int64_t k = (int64_t)conf->classes * conf->classes;
        st = nnrt_dist_sum_i64(conf->m, (int)k, "the confusion matrix");
        if (st == NN_OK)
            st = nnrt_dist_sum_i64(&conf->total, 1, "the confusion matrix");
    }
    (void)split;
    return st;
}

NnStatus nnrt_evaluate(const NnrtTrainCallbacks *cb, const NnrtDataset *ds,
                       const NnrtTrainOptions *opt, const char *split, int epoch, NnrtEval *e,
                       NnrtConfusion *conf)
{
    memset(e, 0, sizeof *e);
    e->split = split;
    e->epoch = epoch;
    e->fields = opt_metrics(opt);
    bool cls = opt->task == NNRT_TASK_CLASSIFY;
    int classes = opt_classes(opt, ds);
    int64_t outf = opt->out_features > 0 ? opt->out_features : cls ? classes : y_width(ds);
    if (!ds->y || !cb->predict || (cls && classes < 1) || outf < 1)
        return nnrt_fail(NN_ERR_RUNTIME, "cannot evaluate the %s split: it needs labels, a "
                         "predict callback and a known number of classes/outputs", split);
    int64_t batch = split_batch(opt, ds);
    NnTensor *xb = NULL, *yb = NULL;
    NnTensor *out = nnrt_tensor_new(NN_DT_F32, 2, (int64_t[]){batch, outf});
    int64_t *perm = malloc((size_t)(ds->count ? ds->count : 1) * sizeof *perm);
    NnrtConfusion local = {0};
    NnStatus st = out && perm ? nnrt_batch_alloc(ds, batch, &xb, &yb)
                              : nnrt_fail(NN_ERR_NOMEM, "out of memory");
    if (st == NN_OK && cls && !conf && (st = nnrt_confusion_init(&local, classes)) == NN_OK)
        conf = &local;
    // Each rank evaluates its contiguous share; the sums are then combined.
    int64_t lo, hi;
    nnrt_dist_slice(ds->count, &lo, &hi);
    NnrtDataset mine = *ds;
    mine.count = hi - lo;
    if (st == NN_OK) {
        for (int64_t i = 0; i < hi - lo; i++)
            perm[i] = lo + i;
        double loss_sum = 0, sq = 0;
        int64_t sq_n = 0;
        for (int64_t b = 0; st == NN_OK && b < nnrt_batch_count(mine.count, batch); b++) {
            int64_t n = nnrt_batch_gather(&mine, perm, batch, b, xb, yb);
            double loss = NAN;
            out->shape[0] = n; // like the batch tensors: the true row count
            out->numel = n * outf;
            st = cb->predict(cb->ctx, xb, yb, n, out, &loss);
            loss_sum += loss * (double)n;
            if (st == NN_OK && cls)
                st = nnrt_confusion_add_outputs(conf, out, yb, n);
            else if (st == NN_OK)
                sq += nnrt_sq_err_sum(out, yb, n, &sq_n);
        }
        if (st == NN_OK && nnrt_dist_size() > 1)
            st = reduce_eval(&loss_sum, &sq, &sq_n, cls ? conf : NULL, split);
        e->samples = ds->count;
        e->loss = ds->count ? loss_sum / (double)ds->count : NAN;
        e->mse = sq_n ? sq / (double)sq_n : NAN;
        if (st == NN_OK && cls)
            nnrt_eval_from_confusion(e, conf);
        if (!cls)
            e->fields &= NNRT_METRIC_MSE;
    }
    nnrt_confusion_fini(&local);
    nnrt_tensor_free(xb);
    nnrt_tensor_free(yb);
    nnrt_tensor_free(out);
    free(perm);
    return st;
}

// ---- early stopping --------------------------------------------------------

static NnStatus parse_early(Run *r)
{
    const char *m = r->opt->early_stop;
    if (!m)
        return NN_OK;
    r->es_on_val = true;
    if (strncmp(m, "val.", 4) == 0) {
        m += 4;
    } else if (strncmp(m, "train.", 6) == 0) {
        m += 6;
        r->es_on_val = false;
    }
    double dummy;
    NnrtEval probe = {0};
    if (!nnrt_eval_get(&probe, m, &dummy) || (!r->es_on_val && strcmp(m, "loss") != 0))
        return nnrt_fail(NN_ERR_RUNTIME, "early stopping: unknown metric '%s' (use val.loss, "
                         "val.accuracy, val.precision, val.recall, val.f1, val.mse or "
                         "train.loss)", r->opt->early_stop);
    if (r->es_on_val && !r->opt->val)
        return nnrt_fail(NN_ERR_RUNTIME, "early stopping on %s needs a validation dataset",
                         r->opt->early_stop);
    if (!r->cb->snapshot || !r->cb->restore)
        return nnrt_fail(NN_ERR_RUNTIME, "early stopping needs snapshot and restore callbacks");
    r->es_metric = m;
    r->es_higher = nnrt_metric_higher_is_better(m);
    r->patience = r->opt->patience > 0 ? r->opt->patience : 1;
    r->best_value = r->es_higher ? -INFINITY : INFINITY;
    return NN_OK;
}

// Updates the best value and snapshot after epoch (1-based) with value v.
static NnStatus early_update(Run *r, int epoch, double v)
{
    bool better = r->es_higher ? v > r->best_value : v < r->best_value;
    if (!better || isnan(v)) {
        r->stopped = ++r->bad_epochs >= r->patience;
        return NN_OK;
    }
    r->best_value = v;
    r->best_epoch = epoch;
    r->bad_epochs = 0;
    nnrt_vars_fini(&r->best);
    nnrt_vars_init(&r->best);
    r->have_best = true;
    return r->cb->snapshot(r->cb->ctx, &r->best);
}

// ---- checkpoints -------------------------------------------------------------

static NnStatus collect_vars(const Run *r, NnVars *v)
{
    nnrt_vars_init(v);
    NnStatus (*get)(void *, NnVars *) = r->cb->checkpoint_vars ? r->cb->checkpoint_vars
                                                                : r->cb->snapshot;
    if (!get)
        return nnrt_fail(NN_ERR_RUNTIME, "checkpoints need a checkpoint_vars or snapshot callback");
    return get(r->cb->ctx, v);
}

// Adds copies of src's tensors to dst under prefix + name.
static NnStatus put_prefixed(NnVars *dst, const char *prefix, const NnVars *src)
{
    NnStatus st = NN_OK;
    for (int i = 0; st == NN_OK && i < src->count; i++) {
        char name[1024];
        snprintf(name, sizeof name, "%s%s", prefix, src->names[i]);
        NnTensor *t = nnrt_tensor_clone(src->tensors[i]);
        st = t ? nnrt_vars_put(dst, name, t) : nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    return st;
}

// The current state under its own names, the best weights as "best/<name>",
// and, in the final file whose main tensors are the restored best weights,
// the state training ended with as "last/<name>" so a resume continues it.
static NnStatus save_checkpoint(Run *r, int epochs_done, const NnVars *last)
{
    NnVars v;
    NnrtMeta meta;
    nnrt_meta_init(&meta);
    NnStatus st = collect_vars(r, &v);
    char buf[64];
    if (st == NN_OK && r->have_best)
        st = put_prefixed(&v, BEST_PREFIX, &r->best);
    if (st == NN_OK && last)
        st = put_prefixed(&v, LAST_PREFIX, last);
    snprintf(buf, sizeof buf, "%.17g", r->best_value);
    if (st == NN_OK)
        st = nnrt_meta_set(&meta, "format", NNRT_CHECKPOINT_FORMAT);
    if (st == NN_OK)
        st = nnrt_meta_set_int(&meta, "epoch", epochs_done);
    if (st == NN_OK)
        st = nnrt_meta_set_int(&meta, "step", r->steps);
    if (st == NN_OK)
        st = nnrt_meta_set_int(&meta, "seed", (long long)r->opt->seed);
    if (st == NN_OK && r->es_metric) {
        st = nnrt_meta_set(&meta, "early_stop", r->opt->early_stop);
        if (st == NN_OK)
            st = nnrt_meta_set(&meta, "best_value", buf);
        if (st == NN_OK)
            st = nnrt_meta_set_int(&meta, "best_epoch", r->best_epoch);
        if (st == NN_OK)
            st = nnrt_meta_set_int(&meta, "bad_epochs", r->bad_epochs);
    }
    if (st == NN_OK)
        st = nnrt_meta_set(&meta, "stopped_early", r->stopped ? "1" : "0");
    if (st == NN_OK)
        st = nnrt_safetensors_save(r->opt->checkpoint, &v, &meta);
    if (st == NN_OK)
        r->saved = true;
    nnrt_vars_fini(&v);
    nnrt_meta_fini(&meta);
    return st;
}

// Restores weights and loop state from an existing checkpoint; returns the
// number of epochs it had completed in *start.
static NnStatus resume(Run *r, int *start)
{
    const char *path = r->opt->resume_from;
    *start = 0;
    if (!path && r->opt->resume && r->opt->checkpoint && access(r->opt->checkpoint, F_OK) == 0)
        path = r->opt->checkpoint;
    if (!path)
        return NN_OK;
    // A missing file is not a fresh start: the user asked to continue something.
    if (access(path, F_OK) != 0)
        return nnrt_fail(NN_ERR_IO, "cannot resume from '%s': %s", path, strerror(errno));
    if (!r->cb->restore)
        return nnrt_fail(NN_ERR_RUNTIME, "resuming needs a restore callback");
    NnVars loaded, expected, last;
    NnrtMeta meta;
    nnrt_vars_init(&last);
    NnStatus st = nnrt_safetensors_load(path, &loaded, &meta);
    if (st != NN_OK)
        return st;
    st = collect_vars(r, &expected);
    size_t ll = strlen(LAST_PREFIX);
    for (int i = 0; st == NN_OK && i < loaded.count; i++) {
        if (strncmp(loaded.names[i], LAST_PREFIX, ll) != 0)
            continue;
        NnTensor *t = nnrt_tensor_clone(loaded.tensors[i]);
        st = t ? nnrt_vars_put(&last, loaded.names[i] + ll, t)
               : nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    const NnVars *state = last.count ? &last : &loaded;
    if (st == NN_OK)
        st = nnrt_checkpoint_check(path, state, &expected);
    if (st == NN_OK)
        st = r->cb->restore(r->cb->ctx, state);
    long long v = 0;
    if (st == NN_OK && !nnrt_meta_get_int(&meta, "epoch", &v))
        st = nnrt_fail(NN_ERR_FORMAT, "%s: checkpoint metadata lacks an integer 'epoch'", path);
    *start = (int)v;
    if (nnrt_meta_get_int(&meta, "step", &v))
        r->steps = v;
    if (r->es_metric && nnrt_meta_get(&meta, "best_value")) {
        r->best_value = strtod(nnrt_meta_get(&meta, "best_value"), NULL);
        if (nnrt_meta_get_int(&meta, "best_epoch", &v))
            r->best_epoch = (int)v;
        if (nnrt_meta_get_int(&meta, "bad_epochs", &v))
            r->bad_epochs = (int)v;
    }
    r->stopped = nnrt_meta_get_int(&meta, "stopped_early", &v) && v == 1;
    size_t pl = strlen(BEST_PREFIX);
    for (int i = 0; st == NN_OK && i < loaded.count; i++) {
        if (strncmp(loaded.names[i], BEST_PREFIX, pl) != 0 || !r->es_metric)
            continue;
        NnTensor *t = nnrt_tensor_clone(loaded.tensors[i]);
        st = t ? nnrt_vars_put(&r->best, loaded.names[i] + pl, t)
               : nnrt_fail(NN_ERR_NOMEM, "out of memory");
        r->have_best = true;
    }
    nnrt_vars_fini(&loaded);
    nnrt_vars_fini(&expected);
    nnrt_vars_fini(&last);
    nnrt_meta_fini(&meta);
    if (st == NN_OK && !r->opt->quiet) {
        fprintf(r->log, "resumed from %s: %d of %d epochs done", path, *start, r->epochs);
        if (r->stopped)
            fprintf(r->log, ", stopped early; nothing left to train\n");
        else
            fprintf(r->log, "%s\n", *start >= r->epochs ? "; nothing left to train" : "");
    }
    return st;
}

// ---- the loop ----------------------------------------------------------------

static NnStatus log_eval(Run *r, const NnrtEval *e)
{
    return r->have_jsonl ? nnrt_jsonl_write(&r->jsonl, e) : NN_OK;
}

// Rows [lo, hi) of the batch in x and y (when not NULL) move to its front.
static void keep_rows(NnTensor *x, NnTensor *y, int64_t lo, int64_t hi)
{
    NnTensor *t[2] = {x, y};
    for (int k = 0; k < 2 && t[k]; k++) {
        size_t row = t[k]->shape[0] ? nnrt_tensor_nbytes(t[k]) / (size_t)t[k]->shape[0] : 0;
        memmove(t[k]->data, (char *)t[k]->data + (size_t)lo * row, (size_t)(hi - lo) * row);
        t[k]->numel = t[k]->shape[0] ? t[k]->numel / t[k]->shape[0] * (hi - lo) : 0;
        t[k]->shape[0] = hi - lo;
    }
}

// The global batch's loss (and step statistics) from every rank's, each
// weighted by its share of the rows: what one process would have computed.
static NnStatus sum_losses(Run *r, double share, double *loss)
{
    double v[1 + NNRT_MAX_STATS];
    int n = 1 + (r->cb->nstats < NNRT_MAX_STATS ? r->cb->nstats : NNRT_MAX_STATS);
    v[0] = share > 0 ? share * *loss : 0;
    for (int i = 1; i < n; i++)
        v[i] = share > 0 ? share * r->cb->stats[i - 1] : 0;
    NnStatus st = nnrt_dist_sum_f64(v, n, "the step's loss");
    *loss = v[0];
    for (int i = 1; st == NN_OK && i < n; i++)
        r->cb->stats[i - 1] = v[i];
    return st;
}

// Global batch b of the epoch has *n rows; this rank's are [*lo, *hi) of
// them (all with one process); *share: this rank's rows over n. A rank left
// without rows (a last batch smaller than the ranks) still takes part in the
// sums, with one row and no weight.
static void batch_slice(const Run *r, int64_t b, int64_t *n, int64_t *lo, int64_t *hi,
                        double *share)
{
    int64_t start = b * r->batch;
    *n = r->train->count - start < r->batch ? r->train->count - start : r->batch;
    nnrt_dist_slice(*n, lo, hi);
    *share = *hi > *lo ? (double)(*hi - *lo) / (double)*n : 0;
    if (*hi == *lo)
        *hi = *lo + 1;
}

// Global batch b of the epoch (*n rows), or under mpirun this rank's slice
// of it, into xb/yb; *share as batch_slice's. Augmentation draws per row in
// batch order, so then the whole batch is made as one process makes it and
// this rank's rows move to the front. Calls no MPI.
static NnStatus gather_mine(const Run *r, int epoch, const int64_t *perm, int64_t b,
                            NnTensor *xb, NnTensor *yb, int64_t *n, double *share)
{
    const NnrtDataset *ds = r->train;
    const NnrtAugment *aug = &r->opt->augment;
    bool dist = nnrt_dist_size() > 1;
    int64_t lo, hi;
    batch_slice(r, b, n, &lo, &hi, share);
    if (dist && !nnrt_augment_active(aug)) {
        NnrtDataset mine = *ds;
        mine.count = hi - lo;
        nnrt_batch_gather(&mine, perm + b * r->batch + lo, hi - lo, 0, xb, yb);
        return NN_OK;
    }
    nnrt_batch_gather(ds, perm, r->batch, b, xb, yb);
    if (nnrt_augment_active(aug)) {
        NnrtDataRng rng;
        nnrt_data_rng_seed(&rng, r->opt->seed ^ AUG_SEED, (uint64_t)epoch << 32 | (uint64_t)b);
        int64_t features = ds->count ? ds->x->numel / ds->count : 0;
        NnStatus st = nnrt_augment_batch(aug, xb->data, *n, features, ds->img_h, ds->img_w, &rng);
        if (st != NN_OK)
            return st;
    }
    if (dist)
        keep_rows(xb, yb, lo, hi);
    return NN_OK;
}

// Batch b's rows (this rank's, as gather_mine's) offered to the pool's
// workers, gathered while step b - 1 runs. Unaugmented batches only.
static void side_post(const Run *r, NnrtSideGather *g, const int64_t *perm, int64_t b,
                      NnTensor *xb, NnTensor *yb)
{
    int64_t n, lo, hi;
    double share;
    batch_slice(r, b, &n, &lo, &hi, &share);
    nnrt_side_gather_post(g, r->train, perm + b * r->batch + lo, hi - lo, xb, yb);
}

// The helper that assembles batch `want` into buffer want & 1 while the
// caller's step reads the other buffer. Gathering 128 shuffled Fashion-MNIST
// rows takes ~60 us (random rows miss the caches): 5-8% of an MLP step.
typedef struct Prefetch {
    const Run *r;
    int epoch;
    const int64_t *perm;
    NnTensor *xb[2], *yb[2];
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t want; // batch asked for, -1 none; the helper sets it back to -1
    int64_t done; // last batch assembled, -1 none
    int64_t n;    // its rows
    double share; // this rank's share of them
    NnStatus st;  // and how it went (msg: nnrt_errmsg is per thread)
    char msg[512];
    bool quit;
} Prefetch;

static void *prefetch_main(void *vp)
{
    Prefetch *p = vp;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->want < 0 && !p->quit)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->quit)
            break;
        int64_t b = p->want, n = 0;
        double share = 1;
        pthread_mutex_unlock(&p->mu);
        NnStatus st = gather_mine(p->r, p->epoch, p->perm, b, p->xb[b & 1], p->yb[b & 1], &n,
                                  &share);
        pthread_mutex_lock(&p->mu);
        if (st != NN_OK)
            snprintf(p->msg, sizeof p->msg, "%s", nnrt_errmsg());
        p->n = n;
        p->share = share;
        p->st = st;
        p->done = b;
        p->want = -1;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void prefetch_ask(Prefetch *p, int64_t b)
{
    pthread_mutex_lock(&p->mu);
    p->want = b;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static NnStatus prefetch_take(Prefetch *p, int64_t b, int64_t *n, double *share)
{
    pthread_mutex_lock(&p->mu);
    while (p->done != b)
        pthread_cond_wait(&p->cv, &p->mu);
    NnStatus st = p->st;
    *n = p->n;
    *share = p->share;
    pthread_mutex_unlock(&p->mu);
    return st == NN_OK ? NN_OK : nnrt_fail(st, "%s", p->msg);
}

// Starts the helper; false (and the caller assembles inline) when it cannot.
static bool prefetch_start(Prefetch *p, const Run *r, int epoch, const int64_t *perm,
                           NnTensor *const *xb, NnTensor *const *yb)
{
    *p = (Prefetch){.r = r, .epoch = epoch, .perm = perm, .want = -1, .done = -1,
                    .xb = {xb[0], xb[1]}, .yb = {yb[0], yb[1]}};
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->th, NULL, prefetch_main, p) == 0)
        return true;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    return false;
}

// Waits for a batch in progress (its buffer is about to be freed), then stops.
static void prefetch_stop(Prefetch *p)
{
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

// NN_EPOCH_PROFILE=1: per epoch, on stderr, quantiles over its batches of
// the time from one batch's step to the next one's, split into waiting for
// the batch, the step callback and the rest of the loop. A low quantile is
// what a batch costs when nothing else takes the cores, so it compares ways
// of assembling batches on a shared machine, where whole-epoch rates do not.

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(double *v, int64_t n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[(int64_t)(q * (double)(n - 1))];
}

static void profile_print(EpochProfile *p, int epoch, int64_t n, const char *how)
{
    if (!p->iter || n < 1)
        return;
    fprintf(stderr, "epoch %d profile (%s, %lld batches), ms p10/p50/p90:", epoch, how,
            (long long)n);
    const char *name[3] = {"batch", "wait", "step"};
    double *v[3] = {p->iter, p->wait, p->step};
    for (int k = 0; k < 3; k++)
        fprintf(stderr, "  %s %.4f/%.4f/%.4f", name[k], 1e3 * quantile(v[k], n, 0.1),
                1e3 * quantile(v[k], n, 0.5), 1e3 * quantile(v[k], n, 0.9));
    fprintf(stderr, "\n");
}

// How the next batch is assembled while the current one steps.
typedef enum Ahead {
    AHEAD_INLINE, // not ahead: each batch before its step, on the caller
    AHEAD_THREAD, // on a helper thread (Prefetch)
    AHEAD_POOL,   // by the pool's workers between the step's kernels (side work)
} Ahead;

// A helper thread is a third runnable thread when the pool's threads fill
// the cores: it preempts one of them, and the step waits for that one at the
// next barrier. There the pool's own workers gather the rows instead, in the
// moments they would spin. With a core to spare (fewer threads than CPUs),
// the helper has it to itself. Augmentation draws per row in batch order, so
// an augmented batch is made in one piece, by the helper. NN_PREFETCH=inline,
// thread or pool forces one (for comparisons).
static Ahead ahead_mode(const Run *r, NnrtSideGather *side)
{
    const char *env = getenv("NN_PREFETCH");
    bool aug = nnrt_augment_active(&r->opt->augment);
    if (env && strcmp(env, "inline") == 0)
        return AHEAD_INLINE;
    if (env && strcmp(env, "thread") == 0)
        return AHEAD_THREAD;
    if (side && !aug && env && strcmp(env, "pool") == 0)
        return AHEAD_POOL;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (side && !aug && nnrt_side_gather_threads(side) >= cpus)
        return AHEAD_POOL;
    return AHEAD_THREAD;
}

// One pass over the shuffled training set; *mean_loss is the sample-weighted
// loss. xb[1]/yb[1] NULL: no second buffer, every batch assembled inline.
static NnStatus run_epoch(Run *r, int epoch, int64_t *perm, NnTensor *const *xb,
                          NnTensor *const *yb, NnrtProgress *prog)
{
    const NnrtDataset *ds = r->train;
    // A built program's pool starts with its first step: ask at each epoch.
    if (!r->side && xb[1])
        r->side = nnrt_side_gather_new();
    NnrtSideGather *side = r->side;
    EpochProfile *pr = &r->prof;
    if (r->opt->no_shuffle)
        nnrt_identity_perm(perm, ds->count);
    else
        nnrt_shuffle(perm, ds->count, r->opt->seed, epoch);
    nnrt_progress_begin(prog, epoch + 1, r->epochs, ds->count);
    int64_t nb = nnrt_batch_count(ds->count, r->batch), n = 0, lo, hi;
    bool dist = nnrt_dist_size() > 1;
    double share = 1;
    bool posted = false; // a batch is offered to the pool's workers
    Prefetch pf;
    Ahead ahead = nb > 1 && xb[1] ? ahead_mode(r, side) : AHEAD_INLINE;
    if (ahead == AHEAD_THREAD && !prefetch_start(&pf, r, epoch, perm, xb, yb))
        ahead = AHEAD_INLINE;
    NnStatus st = gather_mine(r, epoch, perm, 0, xb[0], yb[0], &n, &share);
    double t0 = pr->iter ? nnrt_now() : 0, t1 = 0, t2 = 0;
    for (int64_t b = 0; st == NN_OK && b < nb; b++) {
        int cur = ahead != AHEAD_INLINE ? (int)(b & 1) : 0;
        if (pr->iter && b > 0) {
            t2 = nnrt_now();
            pr->iter[b - 1] = t2 - t0;
            t0 = t2;
        }
        if (b > 0 && ahead == AHEAD_THREAD) {
            st = prefetch_take(&pf, b, &n, &share);
        } else if (b > 0 && ahead == AHEAD_POOL) {
            nnrt_side_gather_wait(side);
            posted = false;
            batch_slice(r, b, &n, &lo, &hi, &share);
        } else if (b > 0) {
            st = gather_mine(r, epoch, perm, b, xb[0], yb[0], &n, &share);
        }
        if (st != NN_OK)
            break;
        if (ahead == AHEAD_THREAD && b + 1 < nb)
            prefetch_ask(&pf, b + 1);
        if (ahead == AHEAD_POOL && b + 1 < nb) {
            side_post(r, side, perm, b + 1, xb[(b + 1) & 1], yb[(b + 1) & 1]);
            posted = true;
        }
        nnrt_dist_set_weight(share);
        double loss = NAN;
        if (pr->iter)
            t1 = nnrt_now();
        st = r->cb->step(r->cb->ctx, xb[cur], yb[cur], xb[cur]->shape[0], &loss);
        if (pr->iter && b + 1 < nb) {
            t2 = nnrt_now();
            pr->wait[b] = t1 - t0;
            pr->step[b] = t2 - t1;
        }
        if (st == NN_OK && dist)
            st = sum_losses(r, share, &loss);
        if (st != NN_OK)
            break;
        nnrt_dist_step_done();
        r->steps++;
        if (r->cb->nstats > 0 && isfinite(loss))
            nnrt_progress_stats(prog, n, r->cb->stats);
        if (r->cb->lr) {
            prog->has_lr = true;
            prog->lr = *r->cb->lr;
        }
        // Going on after the loss overflows only spreads NaN through the weights.
        if (!isfinite(loss)) {
            if (dist)
                nnrt_dist_fail_together(); // the loss is summed over ranks: all see it
            nnrt_progress_end(prog, NULL);
            st = nnrt_fail(NN_ERR_RUNTIME, "the loss became %s at epoch %d, batch %lld "
                           "(step %lld): training diverged; try a lower learning rate",
                           isnan(loss) ? "NaN" : "infinite", epoch + 1, (long long)b + 1,
                           (long long)r->steps);
            break;
        }
        nnrt_progress_step(prog, n, loss);
    }
    if (ahead == AHEAD_THREAD)
        prefetch_stop(&pf);
    // A batch still posted (the loop broke off) is finished before its buffers go.
    if (posted)
        nnrt_side_gather_wait(side);
    static const char *const how[] = {"inline", "helper thread", "pool workers"};
    if (st == NN_OK)
        profile_print(pr, epoch + 1, nb - 1, how[ahead]);
    return st;
}

// Validation, logging and early stopping after epoch (0-based).
static NnStatus after_epoch(Run *r, int epoch, NnrtProgress *prog, NnrtTrainResult *res)
{
    NnrtEval tr = {.epoch = epoch + 1, .split = "train", .samples = prog->done,
                   .loss = nnrt_progress_mean_loss(prog)};
    res->train_loss = tr.loss;
    tr.nstats = prog->nstats;
    tr.stat_names = prog->stat_names;
    tr.has_lr = prog->has_lr;
    tr.lr = prog->lr;
    for (int i = 0; i < tr.nstats; i++)
        tr.stats[i] = prog->loss_n ? prog->stat_sum[i] / (double)prog->loss_n : NAN;
    NnStatus st = log_eval(r, &tr);
    char extra[160] = "";
    if (st == NN_OK && r->opt->val) {
        st = nnrt_evaluate(r->cb, r->opt->val, r->opt, "val", epoch + 1, &res->val, NULL);
        res->has_val = st == NN_OK;
        if (st == NN_OK)
            st = log_eval(r, &res->val);
        int k = snprintf(extra, sizeof extra, "val.loss %.4f", res->val.loss);
        if (res->val.fields & NNRT_METRIC_ACCURACY)
            snprintf(extra + k, sizeof extra - (size_t)k, "  val.acc %.4f", res->val.accuracy);
        else if (res->val.fields & NNRT_METRIC_MSE)
            snprintf(extra + k, sizeof extra - (size_t)k, "  val.mse %.4g", res->val.mse);
    }
    nnrt_progress_end(prog, r->opt->val ? extra : NULL);
    // An epoch whose bar stays open for the next one to overwrite shows its
    // validation numbers in the bar; a summary line would be glued onto it.
    bool glued = prog->open && isatty(fileno(r->log));
    if (st == NN_OK && r->opt->val && !r->opt->quiet && !glued)
        nnrt_eval_print(r->log, &res->val);
    if (st == NN_OK && r->es_metric) {
        double v = tr.loss;
        if (r->es_on_val)
            nnrt_eval_get(&res->val, r->es_metric, &v);
        st = early_update(r, epoch + 1, v);
    }
    return st;
}

static NnStatus final_test(Run *r, NnrtTrainResult *res)
{
    const NnrtTrainOptions *o = r->opt;
    NnrtConfusion conf = {0};
    bool cls = o->task == NNRT_TASK_CLASSIFY;
    NnStatus st = cls ? nnrt_confusion_init(&conf, opt_classes(o, o->test)) : NN_OK;
    if (st == NN_OK)
        st = nnrt_evaluate(r->cb, o->test, o, "test", 0, &res->test, cls ? &conf : NULL);
    res->has_test = st == NN_OK;
    if (st == NN_OK)
        st = log_eval(r, &res->test);
    if (st == NN_OK && !o->quiet) {
        nnrt_eval_print(r->log, &res->test);
        if (cls && nnrt_metrics_want_confusion(o->metrics))
            nnrt_confusion_print(r->log, &conf, o->class_names);
    }
    nnrt_confusion_fini(&conf);
    return st;
}

// Says why the weights training ends with are not those of its last epoch.
static void early_report(const Run *r, const NnrtTrainResult *res)
{
    const char *m = r->opt->early_stop;
    if (r->stopped)
        fprintf(r->log, "early stop after epoch %d of %d: %s did not improve for %d epoch%s "
                "(patience %d); restored the weights of epoch %d (%s %.4f)\n",
                res->epochs_done, r->epochs, m, r->bad_epochs, r->bad_epochs == 1 ? "" : "s",
                r->patience, r->best_epoch, m, r->best_value);
    else if (r->best_epoch < res->epochs_done)
        fprintf(r->log, "early stopping: restored the weights of epoch %d, the best %s (%.4f); "
                "epochs %d to %d did not improve on it\n", r->best_epoch, m, r->best_value,
                r->best_epoch + 1, res->epochs_done);
}

static NnStatus train_epochs(Run *r, int start, NnrtTrainResult *res)
{
    NnTensor *xb[2] = {NULL, NULL}, *yb[2] = {NULL, NULL};
    int64_t *perm = malloc((size_t)(r->train->count ? r->train->count : 1) * sizeof *perm);
    NnStatus st = perm ? nnrt_batch_alloc(r->train, r->batch, &xb[0], &yb[0])
                       : nnrt_fail(NN_ERR_NOMEM, "out of memory");
    // The second buffer only when it fits: without it batches are assembled inline.
    if (st == NN_OK && r->train->count > r->batch &&
        nnrt_batch_alloc(r->train, r->batch, &xb[1], &yb[1]) != NN_OK) {
        nnrt_tensor_free(xb[1]);
        nnrt_tensor_free(yb[1]);
        xb[1] = yb[1] = NULL;
    }
    int64_t nb = nnrt_batch_count(r->train->count, r->batch);
    const char *env = getenv("NN_EPOCH_PROFILE");
    EpochProfile *pr = &r->prof;
    if (st == NN_OK && env && *env && strcmp(env, "0") != 0) {
        pr->wait = malloc(3 * (size_t)nb * sizeof *pr->wait);
        pr->step = pr->wait ? pr->wait + nb : NULL;
        pr->iter = pr->wait ? pr->wait + 2 * nb : NULL;
    }
    NnrtProgress prog;
    nnrt_progress_init(&prog, r->opt->progress, r->opt->progress_out);
    prog.nstats = r->cb->nstats < NNRT_MAX_STATS ? r->cb->nstats : NNRT_MAX_STATS;
    prog.stat_names = r->cb->stat_names;
    for (int epoch = start; st == NN_OK && !r->stopped && epoch < r->epochs; epoch++) {
        st = run_epoch(r, epoch, perm, xb, yb, &prog);
        // Under the sharded update each rank holds its part of the optimizer
        // state: made whole on every rank before snapshots and checkpoints.
        if (st == NN_OK)
            st = nnrt_dist_gather_state();
        if (st == NN_OK)
            st = after_epoch(r, epoch, &prog, res);
        if (st == NN_OK)
            res->epochs_done = epoch + 1;
        if (st == NN_OK && r->opt->checkpoint && r->writer)
            st = save_checkpoint(r, epoch + 1, NULL);
    }
    nnrt_progress_finish(&prog);
    nnrt_side_gather_free(r->side);
    r->side = NULL;
    free(pr->wait);
    *pr = (EpochProfile){0};
    for (int k = 0; k < 2; k++) {
        nnrt_tensor_free(xb[k]);
        nnrt_tensor_free(yb[k]);
    }
    free(perm);
    return st;
}

NnStatus nnrt_train(const NnrtTrainCallbacks *cb, const NnrtDataset *train,
                    const NnrtTrainOptions *options, NnrtTrainResult *res)
{
    memset(res, 0, sizeof *res);
    // Validation and test sets may lack the rarest classes; the training
    // set's count applies to all of them.
    NnrtTrainOptions o = *options;
    if (o.num_classes <= 0)
        o.num_classes = train->num_classes;
    if (!o.class_names && train->num_classes == o.num_classes)
        o.class_names = train->class_names;
    // Other ranks print nothing and write nothing: rank 0 speaks for all.
    bool writer = nnrt_dist_rank() == 0;
    if (!writer) {
        o.quiet = true;
        o.progress = NNRT_PROGRESS_QUIET;
        o.metrics_path = NULL;
    }
    if (nnrt_augment_active(&o.augment))
        o.augment.fill = nnrt_augment_fill(train);
    const NnrtTrainOptions *opt = &o;
    Run r = {.cb = cb, .train = train, .opt = opt, .batch = split_batch(opt, train),
             .writer = writer};
    r.epochs = opt->epochs > 0 ? opt->epochs : 1;
    r.log = opt->log ? opt->log : stdout;
    nnrt_vars_init(&r.best);
    if (!cb->step)
        return nnrt_fail(NN_ERR_RUNTIME, "training needs a step callback");
    nnrt_dist_state_reset(); // variables noted by an earlier run's steps
    if (train->count == 0)
        return nnrt_fail(NN_ERR_RUNTIME, "the training set is empty");
    NnStatus st = parse_early(&r);
    int start = 0;
    if (st == NN_OK)
        st = resume(&r, &start);
    res->start_epoch = res->epochs_done = start;
    if (st == NN_OK && opt->metrics_path) {
        // Appended to, never truncated: earlier runs' lines are the user's.
        st = nnrt_jsonl_open(&r.jsonl, opt->metrics_path, true);
        r.have_jsonl = st == NN_OK;
    }
    NnrtFpMode fp = nnrt_fp_flush_denormals();
    if (st == NN_OK)
        st = train_epochs(&r, start, res);
    res->stopped_early = r.stopped;
    res->steps = r.steps;
    res->best_epoch = r.best_epoch;
    res->best_value = r.best_value;
    // The best weights replace the last ones, in the model and in the file.
    if (st == NN_OK && r.have_best) {
        NnVars last;
        nnrt_vars_init(&last);
        if (opt->checkpoint)
            st = collect_vars(&r, &last);
        if (st == NN_OK)
            st = cb->restore(cb->ctx, &r.best);
        if (st == NN_OK && opt->checkpoint && r.writer)
            st = save_checkpoint(&r, res->epochs_done, &last);
        nnrt_vars_fini(&last);
        if (st == NN_OK && !opt->quiet)
            early_report(&r, res);
    }
    res->saved = r.saved;
    if (st == NN_OK && opt->test)
        st = final_test(&r, res);
    nnrt_fp_restore(fp);
    if (r.have_jsonl) {
        NnStatus cst = nnrt_jsonl_close(&r.jsonl);
        st = st == NN_OK ? cst : st;
    }
    nnrt_vars_fini(&r.best);
    return st;
}
