// The training loop with a fake compiled step: softmax regression with
// momentum, written in plain C here. Checks that the loss goes down and the
// model learns, that early stopping restores exactly the weights of the best
// epoch (compared with a separate run stopped there), that resuming from a
// checkpoint ends bit-identical to an uninterrupted run, the logs, that
// batches assembled ahead (on the helper thread or by the pool's workers)
// are the shuffled batches, and that training flushes denormals.
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train.h"
#include "testutil.h"

enum { F = 2, C = 3 };

typedef struct Model {
    float w[F * C], b[C], vw[F * C], vb[C];
    double lr, mu;
    int sabotage_after; // epochs of honest steps before the steps go uphill; 0: never
    int64_t steps, steps_per_epoch;
} Model;

static void init_model(Model *m)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < F * C; i++)
        m->w[i] = 0.01f * (float)(i % 5) - 0.02f;
    m->lr = 0.1;
    m->mu = 0.5;
}

// Logits into out rows; returns the mean cross-entropy over n rows.
static double forward(const Model *m, const float *x, const int32_t *y, int64_t n, float *out)
{
    double loss = 0;
    for (int64_t i = 0; i < n; i++) {
        float *z = out + i * C;
        float mx = -INFINITY;
        for (int c = 0; c < C; c++) {
            z[c] = m->b[c];
            for (int f = 0; f < F; f++)
                z[c] += x[i * F + f] * m->w[f * C + c];
            mx = z[c] > mx ? z[c] : mx;
        }
        double se = 0;
        for (int c = 0; c < C; c++)
            se += exp(z[c] - mx);
        if (y)
            loss += log(se) + mx - z[y[i]];
    }
    return n ? loss / (double)n : 0;
}

static NnStatus step(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, double *loss)
{
    Model *m = ctx;
    cr_assert_eq(x->shape[0], n);
    float z[512 * C], gw[F * C] = {0}, gb[C] = {0};
    cr_assert_leq(n, 512);
    const float *xs = x->data;
    const int32_t *ys = y->data;
    *loss = forward(m, xs, ys, n, z);
    for (int64_t i = 0; i < n; i++) {
        float mx = -INFINITY, se = 0;
        for (int c = 0; c < C; c++)
            mx = z[i * C + c] > mx ? z[i * C + c] : mx;
        for (int c = 0; c < C; c++)
            se += expf(z[i * C + c] - mx);
        for (int c = 0; c < C; c++) {
            float g = (expf(z[i * C + c] - mx) / se - (c == ys[i])) / (float)n;
            gb[c] += g;
            for (int f = 0; f < F; f++)
                gw[f * C + c] += g * xs[i * F + f];
        }
    }
    bool uphill = m->sabotage_after && m->steps >= m->sabotage_after * m->steps_per_epoch;
    float lr = (float)(uphill ? -m->lr : m->lr);
    for (int i = 0; i < F * C; i++) {
        m->vw[i] = (float)m->mu * m->vw[i] + gw[i];
        m->w[i] -= lr * m->vw[i];
    }
    for (int c = 0; c < C; c++) {
        m->vb[c] = (float)m->mu * m->vb[c] + gb[c];
        m->b[c] -= lr * m->vb[c];
    }
    m->steps++;
    return NN_OK;
}

static NnStatus predict(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, NnTensor *out,
                        double *loss)
{
    double l = forward(ctx, x->data, y ? y->data : NULL, n, out->data);
    if (loss)
        *loss = y ? l : NAN;
    return NN_OK;
}

static void put(NnVars *v, const char *name, const float *p, int64_t n)
{
    NnTensor *t = nnrt_tensor_new(NN_DT_F32, 1, &n);
    memcpy(t->data, p, (size_t)n * sizeof *p);
    nnrt_vars_put(v, name, t);
}

static NnStatus snapshot(void *ctx, NnVars *out)
{
    Model *m = ctx;
    put(out, "w", m->w, F * C);
    put(out, "b", m->b, C);
    return NN_OK;
}

static NnStatus ckpt_vars(void *ctx, NnVars *out)
{
    Model *m = ctx;
    snapshot(ctx, out);
    put(out, "opt.vw", m->vw, F * C);
    put(out, "opt.vb", m->vb, C);
    float s = (float)m->steps;
    put(out, "opt.steps", &s, 1);
    return NN_OK;
}

static void take(const NnVars *in, const char *name, float *p)
{
    NnTensor *t = nnrt_vars_get(in, name);
    if (t)
        memcpy(p, t->data, nnrt_tensor_nbytes(t));
}

static NnStatus restore(void *ctx, const NnVars *in)
{
    Model *m = ctx;
    take(in, "w", m->w);
    take(in, "b", m->b);
    take(in, "opt.vw", m->vw);
    take(in, "opt.vb", m->vb);
    float s = -1;
    take(in, "opt.steps", &s);
    if (s >= 0)
        m->steps = (int64_t)s;
    return NN_OK;
}

static NnrtTrainCallbacks callbacks(Model *m)
{
    return (NnrtTrainCallbacks){.ctx = m, .step = step, .predict = predict, .snapshot = snapshot,
                                .restore = restore, .checkpoint_vars = ckpt_vars};
}

// Three gaussian blobs; labels follow the blob.
static NnrtDataset blobs(int64_t n, uint64_t seed)
{
    static const float centre[C][F] = {{-2, 0}, {2, 0}, {0, 2.5f}};
    NnTensor *x = nnrt_tensor_new(NN_DT_F32, 2, (int64_t[]){n, F});
    NnTensor *y = nnrt_tensor_new(NN_DT_I32, 1, &n);
    NnrtDataRng r;
    nnrt_data_rng_seed(&r, seed, 99);
    for (int64_t i = 0; i < n; i++) {
        int c = (int)(i % C);
        ((int32_t *)y->data)[i] = c;
        for (int f = 0; f < F; f++)
            ((float *)x->data)[i * F + f] = centre[c][f] + 0.7f * (float)nnrt_data_rng_normal(&r);
    }
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_set(&ds, x, y, NULL, NULL), NN_OK);
    return ds;
}

static void setup(void)
{
    tu_scratch_make("train");
}

static void teardown(void)
{
    tu_scratch_remove();
}

TestSuite(train, .init = setup, .fini = teardown);

static NnrtTrainOptions quiet_opts(void)
{
    return (NnrtTrainOptions){.epochs = 6, .batch = 16, .seed = 3,
                              .progress = NNRT_PROGRESS_QUIET, .quiet = true};
}

Test(train, loss_decreases_and_model_learns)
{
    NnrtDataset tr = blobs(240, 1), val = blobs(60, 2);
    Model m;
    init_model(&m);
    NnrtTrainCallbacks cb = callbacks(&m);
    NnrtTrainOptions o = quiet_opts();
    o.val = &val;
    o.test = &val;
    o.metrics = NNRT_METRIC_CLASSIFY;
    char log[256];
    snprintf(log, sizeof log, "%s", tu_in_dir("m.jsonl"));
    o.metrics_path = log;
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(res.epochs_done, 6);
    cr_assert_eq(res.steps, 6 * 15);
    cr_assert_gt(res.val.accuracy, 0.9);
    cr_assert(res.has_test);
    cr_assert_gt(res.test.f1, 0.9);
    // Per-epoch training losses from the JSON lines: decreasing overall, and
    // the first epoch (random start) clearly above the last.
    FILE *f = fopen(log, "r");
    char line[512];
    double losses[6];
    int nl = 0, nval = 0, ntest = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "\"loss\": ");
        cr_assert_not_null(p);
        if (strstr(line, "\"split\": \"train\""))
            losses[nl++] = strtod(p + 8, NULL);
        nval += strstr(line, "\"split\": \"val\"") != NULL;
        ntest += strstr(line, "\"split\": \"test\"") != NULL;
    }
    fclose(f);
    cr_assert_eq(nl, 6);
    cr_assert_eq(nval, 6);
    cr_assert_eq(ntest, 1);
    cr_assert_lt(losses[5], 0.5 * losses[0], "%g -> %g", losses[0], losses[5]);
    for (int i = 1; i < 6; i++)
        cr_assert_leq(losses[i], losses[i - 1] * 1.05, "epoch %d: %g after %g", i + 1, losses[i],
                      losses[i - 1]);
    // The eval loss is the independent forward pass over the val set.
    float z[60 * C];
    double vl = forward(&m, val.x->data, val.y->data, 60, z);
    cr_assert_float_eq(res.test.loss, vl, 1e-9);
    nnrt_dataset_fini(&tr);
    nnrt_dataset_fini(&val);
}

Test(train, early_stopping_restores_the_best_weights)
{
    NnrtDataset tr = blobs(240, 1), val = blobs(60, 2);
    Model m;
    init_model(&m);
    m.sabotage_after = 3; // epochs 4.. climb the loss
    m.steps_per_epoch = 15;
    NnrtTrainCallbacks cb = callbacks(&m);
    NnrtTrainOptions o = quiet_opts();
    o.epochs = 20;
    o.val = &val;
    o.early_stop = "val.loss";
    o.patience = 2;
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    cr_assert(res.stopped_early);
    cr_assert_eq(res.best_epoch, 3);
    cr_assert_eq(res.epochs_done, 5, "stopped after 2 epochs without improvement");
    // Reference: an honest run of exactly 3 epochs with the same seed.
    Model ref;
    init_model(&ref);
    NnrtTrainCallbacks cr = callbacks(&ref);
    NnrtTrainOptions o3 = quiet_opts();
    o3.epochs = 3;
    NnrtTrainResult r3;
    cr_assert_eq(nnrt_train(&cr, &tr, &o3, &r3), NN_OK);
    cr_assert_eq(memcmp(m.w, ref.w, sizeof m.w), 0, "weights of epoch 3 restored");
    cr_assert_eq(memcmp(m.b, ref.b, sizeof m.b), 0);
    float z[60 * C];
    cr_assert_float_eq(forward(&m, val.x->data, val.y->data, 60, z), res.best_value, 1e-9);
    nnrt_dataset_fini(&tr);
    nnrt_dataset_fini(&val);
}

Test(train, early_stopping_on_accuracy_needs_val)
{
    NnrtDataset tr = blobs(30, 1);
    Model m;
    init_model(&m);
    NnrtTrainCallbacks cb = callbacks(&m);
    NnrtTrainOptions o = quiet_opts();
    o.early_stop = "val.accuracy";
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_ERR_RUNTIME);
    cr_assert(strstr(nnrt_errmsg(), "needs a validation dataset"));
    o.early_stop = "val.auc";
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_ERR_RUNTIME);
    cr_assert(strstr(nnrt_errmsg(), "unknown metric 'val.auc'"));
    nnrt_dataset_fini(&tr);
}

static void run(Model *m, const NnrtDataset *tr, const NnrtDataset *val, int epochs,
                const char *ckpt, bool resume, NnrtTrainResult *res)
{
    NnrtTrainCallbacks cb = callbacks(m);
    NnrtTrainOptions o = quiet_opts();
    o.epochs = epochs;
    o.val = val;
    o.checkpoint = ckpt;
    o.resume = resume;
    o.early_stop = "val.accuracy";
    o.patience = 100;
    o.augment.noise_std = 0.3; // augmentation randomness must resume too
    cr_assert_eq(nnrt_train(&cb, tr, &o, res), NN_OK, "%s", nnrt_errmsg());
}

Test(train, resume_continues_identically)
{
    NnrtDataset tr = blobs(200, 1), val = blobs(60, 2);
    char a[256], b[256];
    snprintf(a, sizeof a, "%s", tu_in_dir("a.safetensors"));
    snprintf(b, sizeof b, "%s", tu_in_dir("b.safetensors"));
    Model full, part, resumed;
    NnrtTrainResult rf, rp, rr;
    init_model(&full);
    run(&full, &tr, &val, 5, a, false, &rf);
    init_model(&part);
    run(&part, &tr, &val, 2, b, false, &rp);
    cr_assert_eq(rp.epochs_done, 2);
    // A fresh process would start from new weights and read the checkpoint.
    init_model(&resumed);
    run(&resumed, &tr, &val, 5, b, true, &rr);
    cr_assert_eq(rr.start_epoch, 2);
    cr_assert_eq(rr.epochs_done, 5);
    cr_assert_eq(rr.steps, rf.steps);
    cr_assert_eq(resumed.steps, full.steps);
    cr_assert_eq(memcmp(resumed.w, full.w, sizeof full.w), 0, "bit-identical weights");
    cr_assert_eq(memcmp(resumed.b, full.b, sizeof full.b), 0);
    cr_assert_eq(memcmp(resumed.vw, full.vw, sizeof full.vw), 0, "optimizer state too");
    cr_assert_eq(rr.best_epoch, rf.best_epoch);
    cr_assert_float_eq(rr.val.accuracy, rf.val.accuracy, 0);
    // The checkpoints hold the same tensors and metadata.
    NnVars va, vb;
    NnrtMeta ma, mb;
    cr_assert_eq(nnrt_safetensors_load(a, &va, &ma), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(nnrt_safetensors_load(b, &vb, &mb), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(va.count, vb.count);
    cr_assert_str_eq(nnrt_meta_get(&ma, "epoch"), "5");
    cr_assert_str_eq(nnrt_meta_get(&mb, "step"), nnrt_meta_get(&ma, "step"));
    nnrt_vars_fini(&va);
    nnrt_vars_fini(&vb);
    nnrt_meta_fini(&ma);
    nnrt_meta_fini(&mb);
    nnrt_dataset_fini(&tr);
    nnrt_dataset_fini(&val);
}

Test(train, resume_rejects_a_checkpoint_of_another_model)
{
    NnrtDataset tr = blobs(30, 1);
    NnVars v;
    nnrt_vars_init(&v);
    nnrt_vars_put(&v, "w", nnrt_tensor_new(NN_DT_F32, 1, (int64_t[]){5}));
    char p[256];
    snprintf(p, sizeof p, "%s", tu_in_dir("other.safetensors"));
    cr_assert_eq(nnrt_safetensors_save(p, &v, NULL), NN_OK);
    Model m;
    init_model(&m);
    NnrtTrainCallbacks cb = callbacks(&m);
    NnrtTrainOptions o = quiet_opts();
    o.checkpoint = p;
    o.resume = true;
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_ERR_SHAPE);
    cr_assert(strstr(nnrt_errmsg(), "tensor 'w' has shape [5], the model expects [6]"), "%s",
              nnrt_errmsg());
    nnrt_vars_fini(&v);
    nnrt_dataset_fini(&tr);
}

Test(train, plain_progress_lines_and_test_report)
{
    NnrtDataset tr = blobs(90, 1), te = blobs(30, 2);
    Model m;
    init_model(&m);
    NnrtTrainCallbacks cb = callbacks(&m);
    char *pbuf = NULL, *lbuf = NULL;
    size_t plen = 0, llen = 0;
    FILE *pf = open_memstream(&pbuf, &plen), *lf = open_memstream(&lbuf, &llen);
    NnrtTrainOptions o = {.epochs = 3, .batch = 32, .progress = NNRT_PROGRESS_AUTO,
                          .progress_out = pf, .log = lf, .test = &te, .val = &te};
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    fclose(pf);
    fclose(lf);
    // Not a terminal: one plain line per epoch, no carriage returns.
    int lines = 0;
    for (char *p = pbuf; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 3, "%s", pbuf);
    cr_assert_null(strchr(pbuf, '\r'));
    cr_assert(strstr(pbuf, "epoch 3/3"));
    cr_assert(strstr(pbuf, "val.acc"));
    cr_assert(strstr(lbuf, "test  loss"), "%s", lbuf);
    cr_assert(strstr(lbuf, "confusion matrix"));
    free(pbuf);
    free(lbuf);
    nnrt_dataset_fini(&tr);
    nnrt_dataset_fini(&te);
}

Test(train, progress_bar_format)
{
    NnrtProgress p;
    nnrt_progress_init(&p, NNRT_PROGRESS_BAR, stderr);
    nnrt_progress_begin(&p, 3, 10, 54000);
    p.done = 41472;
    p.loss_sum = 0.412 * 41472;
    p.loss_n = 41472;
    char line[512];
    nnrt_progress_format(&p, p.t0 + 41472 / 61200.0, line, sizeof line);
    cr_assert(strstr(line, "epoch 3/10 \u2501\u2501\u2501"), "%s", line);
    cr_assert(strstr(line, " 41472/54000  loss 0.412  61.2k samples/s  ETA 0:00"), "%s", line);
    // 15 of 20 cells filled (41472/54000 = 0.77).
    int thick = 0;
    for (char *s = line; (s = strstr(s, "\u2501")); s += 3)
        thick++;
    cr_assert_eq(thick, 15);
}

// y = 2x + 1 with one weight and a bias, plain SGD on the mean squared error.
typedef struct Lin {
    float w, b;
} Lin;

static NnStatus lin_step(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, double *loss)
{
    Lin *m = ctx;
    const float *xs = x->data, *ys = y->data;
    double gw = 0, gb = 0, l = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = m->w * xs[i] + m->b - ys[i];
        l += e * e;
        gw += 2 * e * xs[i] / (double)n;
        gb += 2 * e / (double)n;
    }
    m->w -= (float)(0.1 * gw);
    m->b -= (float)(0.1 * gb);
    *loss = l / (double)n;
    return NN_OK;
}

static NnStatus lin_predict(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n,
                            NnTensor *out, double *loss)
{
    Lin *m = ctx;
    double l = 0;
    for (int64_t i = 0; i < n; i++) {
        float p = m->w * ((float *)x->data)[i] + m->b;
        ((float *)out->data)[i] = p;
        if (y)
            l += (p - ((float *)y->data)[i]) * (p - ((float *)y->data)[i]);
    }
    *loss = l / (double)n;
    return NN_OK;
}

static NnStatus lin_snapshot(void *ctx, NnVars *out)
{
    put(out, "w", &((Lin *)ctx)->w, 1);
    put(out, "b", &((Lin *)ctx)->b, 1);
    return NN_OK;
}

static NnStatus lin_restore(void *ctx, const NnVars *in)
{
    take(in, "w", &((Lin *)ctx)->w);
    take(in, "b", &((Lin *)ctx)->b);
    return NN_OK;
}

Test(train, regression_reports_mse)
{
    int64_t n = 64;
    NnTensor *x = nnrt_tensor_new(NN_DT_F32, 2, (int64_t[]){n, 1});
    NnTensor *y = nnrt_tensor_new(NN_DT_F32, 2, (int64_t[]){n, 1});
    for (int64_t i = 0; i < n; i++) {
        ((float *)x->data)[i] = (float)i / (float)n * 2 - 1;
        ((float *)y->data)[i] = 2 * ((float *)x->data)[i] + 1;
    }
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_set(&ds, x, y, NULL, NULL), NN_OK);
    Lin m = {0, 0};
    NnrtTrainCallbacks cb = {.ctx = &m, .step = lin_step, .predict = lin_predict,
                             .snapshot = lin_snapshot, .restore = lin_restore};
    NnrtTrainOptions o = quiet_opts();
    o.epochs = 40;
    o.batch = 8;
    o.task = NNRT_TASK_REGRESS;
    o.val = &ds;
    o.test = &ds;
    o.early_stop = "val.mse";
    o.patience = 3;
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &ds, &o, &res), NN_OK, "%s", nnrt_errmsg());
    cr_assert_lt(res.test.mse, 1e-3);
    cr_assert_float_eq(res.test.mse, res.test.loss, 1e-9, "mse equals the callback's loss here");
    cr_assert_float_eq(m.w, 2.0f, 0.05);
    cr_assert_float_eq(m.b, 1.0f, 0.05);
    char line[256];
    nnrt_eval_json(&res.test, line, sizeof line);
    cr_assert(strstr(line, "\"mse\": ") && !strstr(line, "accuracy"), "%s", line);
    nnrt_dataset_fini(&ds);
}

Test(train, progress_bar_redraws_in_place)
{
    NnrtDataset tr = blobs(90, 1);
    Model m;
    init_model(&m);
    NnrtTrainCallbacks cb = callbacks(&m);
    char *pbuf = NULL;
    size_t plen = 0;
    FILE *pf = open_memstream(&pbuf, &plen);
    NnrtTrainOptions o = {.epochs = 2, .batch = 30, .progress = NNRT_PROGRESS_BAR,
                          .progress_out = pf, .quiet = true};
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    fclose(pf);
    cr_assert(strchr(pbuf, '\r'));
    cr_assert(strstr(pbuf, "90/90"), "%s", pbuf);
    cr_assert(strstr(pbuf, "epoch 2/2"));
    int lines = 0;
    for (char *p = pbuf; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 2, "one finished line per epoch");
    free(pbuf);
    // Quiet prints nothing at all.
    pf = open_memstream(&pbuf, &plen);
    o.progress = NNRT_PROGRESS_QUIET;
    o.progress_out = pf;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK);
    fclose(pf);
    cr_assert_eq(plen, 0);
    free(pbuf);
    nnrt_dataset_fini(&tr);
}

static int nan_calls;

// A step whose loss is fine four times, then NaN: training must stop there.
static NnStatus nan_step(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, double *loss)
{
    *loss = ++nan_calls <= 4 ? 1.0 : NAN;
    return NN_OK;
}

Test(train, diverged_loss_stops_with_a_message)
{
    NnrtDataset tr = blobs(240, 1);
    Model m;
    init_model(&m);
    NnrtTrainCallbacks cb = callbacks(&m);
    cb.step = nan_step;
    nan_calls = 0;
    NnrtTrainOptions o = quiet_opts();
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_ERR_RUNTIME);
    cr_assert(strstr(nnrt_errmsg(), "the loss became NaN at epoch 1, batch 5 (step 5)"), "%s",
              nnrt_errmsg());
    cr_assert(strstr(nnrt_errmsg(), "training diverged"), "%s", nnrt_errmsg());
    cr_assert_eq(nan_calls, 5, "no step after the NaN");
    nnrt_dataset_fini(&tr);
}

static size_t file_bytes(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

// resume_from is only read, must exist, and result.saved tells whether the
// checkpoint was written.
Test(train, resume_from_only_reads_and_must_exist)
{
    NnrtDataset tr = blobs(60, 1);
    char a[256], b[256];
    snprintf(a, sizeof a, "%s", tu_in_dir("a.safetensors"));
    snprintf(b, sizeof b, "%s", tu_in_dir("b.safetensors"));
    Model m;
    init_model(&m);
    NnrtTrainCallbacks cb = callbacks(&m);
    NnrtTrainOptions o = quiet_opts();
    o.epochs = 2;
    o.checkpoint = a;
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    cr_assert(res.saved);
    static unsigned char before[1 << 16], after[1 << 16];
    size_t nb = file_bytes(a, before, sizeof before);
    o.epochs = 4;
    o.checkpoint = b;
    o.resume_from = a;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(res.start_epoch, 2);
    cr_assert(res.saved);
    cr_assert(file_bytes(a, after, sizeof after) == nb && !memcmp(before, after, nb),
              "resume_from was written");
    NnVars v;
    NnrtMeta meta;
    cr_assert_eq(nnrt_safetensors_load(b, &v, &meta), NN_OK, "%s", nnrt_errmsg());
    cr_assert_str_eq(nnrt_meta_get(&meta, "epoch"), "4");
    nnrt_vars_fini(&v);
    nnrt_meta_fini(&meta);
    // Nothing left to train: nothing saved.
    unlink(b);
    o.epochs = 2;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    cr_assert(!res.saved);
    cr_assert_eq(access(b, F_OK), -1);
    // A missing file is an error, not a fresh start.
    o.resume_from = tu_in_dir("missing.safetensors");
    o.epochs = 4;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_ERR_IO);
    cr_assert(strstr(nnrt_errmsg(), "cannot resume from"), "%s", nnrt_errmsg());
    cr_assert_eq(access(b, F_OK), -1);
    nnrt_dataset_fini(&tr);
}

// Many fast epochs on a bar: each redraw ends at its clear-to-end-of-line, and
// the output ends with a newline even when training stops early at an epoch
// whose bar was left open.
Test(train, fast_bar_epochs_end_whole)
{
    NnrtDataset tr = blobs(60, 1), val = blobs(30, 2);
    Model m;
    init_model(&m);
    NnrtTrainCallbacks cb = callbacks(&m);
    char *pbuf = NULL;
    size_t plen = 0;
    FILE *pf = open_memstream(&pbuf, &plen);
    NnrtTrainOptions o = {.epochs = 400, .batch = 30, .progress = NNRT_PROGRESS_BAR,
                          .progress_out = pf, .quiet = true, .val = &val,
                          .early_stop = "val.loss", .patience = 2};
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    fclose(pf);
    cr_assert(res.stopped_early && res.epochs_done < 400, "needs a run that stops early");
    cr_assert(plen > 0 && pbuf[plen - 1] == '\n', "the last bar is left open");
    for (char *k = pbuf; (k = strstr(k, "\033[K")); k += 3)
        cr_assert(k[3] == '\r' || k[3] == '\n' || !k[3], "text after a bar: %.40s", k + 3);
    free(pbuf);
    nnrt_dataset_fini(&tr);
    nnrt_dataset_fini(&val);
}

// Not a terminal: every epoch prints its line, however fast.
Test(train, plain_lines_for_every_fast_epoch)
{
    NnrtDataset tr = blobs(30, 1);
    Model m;
    init_model(&m);
    NnrtTrainCallbacks cb = callbacks(&m);
    char *pbuf = NULL;
    size_t plen = 0;
    FILE *pf = open_memstream(&pbuf, &plen);
    NnrtTrainOptions o = {.epochs = 100, .batch = 30, .progress = NNRT_PROGRESS_LINES,
                          .progress_out = pf, .quiet = true};
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    fclose(pf);
    int lines = 0;
    for (char *p = pbuf; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 100, "%s", pbuf);
    free(pbuf);
    nnrt_dataset_fini(&tr);
}

// Named per-batch values (a GAN's d.loss, d.real): progress lines show their
// sample-weighted epoch means instead of the loss, and the train line of the
// metrics log adds them.
typedef struct StatModel {
    Model m;
    double stats[2];
} StatModel;

static NnStatus stat_step(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, double *loss)
{
    StatModel *s = ctx;
    s->stats[0] = 1.5;
    s->stats[1] = (double)n;
    return step(&s->m, x, y, n, loss);
}

Test(train, step_stats_in_progress_and_metrics)
{
    NnrtDataset tr = blobs(30, 1);
    StatModel s;
    init_model(&s.m);
    static const char *const names[] = {"d.one", "d.n"};
    NnrtTrainCallbacks cb = {.ctx = &s, .step = stat_step, .nstats = 2, .stat_names = names,
                             .stats = s.stats};
    char *pbuf = NULL;
    size_t plen = 0;
    FILE *pf = open_memstream(&pbuf, &plen);
    const char *log = tu_in_dir("stats.jsonl");
    NnrtTrainOptions o = {.epochs = 2, .batch = 16, .progress = NNRT_PROGRESS_LINES,
                          .progress_out = pf, .quiet = true, .metrics_path = log};
    NnrtTrainResult res;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    fclose(pf);
    // Batches of 16 and 14 samples: the mean of n weighted by n is (256 + 196) / 30.
    cr_assert(strstr(pbuf, "epoch 2/2  30 samples  d.one 1.5000  d.n 15.0667"), "%s", pbuf);
    cr_assert(!strstr(pbuf, " loss "), "%s", pbuf);
    FILE *f = fopen(log, "r");
    cr_assert(f);
    char line[512];
    cr_assert(fgets(line, sizeof line, f));
    cr_assert(strstr(line, "\"d.one\": 1.5, \"d.n\": 15.0667"), "%s", line);
    fclose(f);
    free(pbuf);
    nnrt_dataset_fini(&tr);
}

// Records what each step receives: the rows' checksums, in order.
typedef struct Seen {
    int64_t steps;
    double sum[64];
    int64_t n[64];
    const void *buf[64];
} Seen;

static NnStatus record_step(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n,
                            double *loss)
{
    Seen *s = ctx;
    double sum = 0;
    for (int64_t i = 0; i < n * F; i++)
        sum += ((const float *)x->data)[i] * (double)(i + 1);
    for (int64_t i = 0; i < n; i++)
        sum += ((const int32_t *)y->data)[i] * 1e3 * (double)(i + 1);
    cr_assert_lt(s->steps, 64);
    s->sum[s->steps] = sum;
    s->n[s->steps] = n;
    s->buf[s->steps++] = x->data;
    *loss = 1;
    return NN_OK;
}

// The pool's side of it (pool.h, included by no file that includes train.h:
// both name a type NnrtTask).
struct NnrtPool *nnrt_pool_default(void);
NnStatus nnrt_pool_set_threads(int n);
void nnrt_pool_run(struct NnrtPool *p, void (*fn)(void *, int, int), void *arg);

// Each step of s got exactly the rows an inline gather of the epoch's shuffle
// gives (the partial last batch too), alternating between two buffers.
static void expect_shuffled_batches(const Seen *s, NnrtDataset *tr, const NnrtTrainOptions *o)
{
    cr_assert_eq(s->steps, 2 * 7);
    int64_t perm[100];
    NnTensor *xb, *yb;
    cr_assert_eq(nnrt_batch_alloc(tr, 16, &xb, &yb), NN_OK);
    for (int e = 0; e < 2; e++) {
        nnrt_shuffle(perm, 100, o->seed, e);
        for (int64_t b = 0; b < 7; b++) {
            int64_t k = e * 7 + b, n = nnrt_batch_gather(tr, perm, 16, b, xb, yb);
            double sum = 0;
            for (int64_t i = 0; i < n * F; i++)
                sum += ((const float *)xb->data)[i] * (double)(i + 1);
            for (int64_t i = 0; i < n; i++)
                sum += ((const int32_t *)yb->data)[i] * 1e3 * (double)(i + 1);
            cr_expect_eq(s->n[k], n, "epoch %d batch %lld: %lld rows", e, (long long)b,
                         (long long)s->n[k]);
            cr_expect_eq(s->sum[k], sum, "epoch %d batch %lld: other rows", e, (long long)b);
        }
    }
    cr_expect(s->buf[0] != s->buf[1] && s->buf[2] == s->buf[0],
              "batches should alternate between two buffers");
    nnrt_tensor_free(xb);
    nnrt_tensor_free(yb);
}

// The next batch is assembled on a helper thread while the step runs.
Test(train, prefetched_batches_are_the_shuffled_batches)
{
    NnrtDataset tr = blobs(100, 5);
    Seen s = {0};
    NnrtTrainCallbacks cb = {.ctx = &s, .step = record_step};
    NnrtTrainOptions o = quiet_opts();
    o.epochs = 2;
    NnrtTrainResult res;
    setenv("NN_PREFETCH", "thread", 1);
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    expect_shuffled_batches(&s, &tr, &o);
    nnrt_dataset_fini(&tr);
}

static void spin_task(void *arg, int ith, int nth)
{
    (void)arg;
    (void)nth;
    volatile double x = 0;
    for (int k = 0; k < 20000 * (ith + 1); k++)
        x += k;
}

// A step that runs pool tasks (as a compiled step's kernels do), between
// which the workers spin and gather the next batch's rows.
static NnStatus pool_step(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n,
                          double *loss)
{
    nnrt_pool_run(nnrt_pool_default(), spin_task, NULL);
    NnStatus st = record_step(ctx, x, y, n, loss);
    nnrt_pool_run(nnrt_pool_default(), spin_task, NULL);
    return st;
}

// The same rows when the pool's workers gather them between kernels (the
// default when the pool's threads fill the cores), on 2 and 3 threads.
Test(train, pool_gathered_batches_are_the_shuffled_batches)
{
    for (int t = 2; t <= 3; t++) {
        cr_assert_eq(nnrt_pool_set_threads(t), NN_OK);
        NnrtDataset tr = blobs(100, 5);
        Seen s = {0};
        NnrtTrainCallbacks cb = {.ctx = &s, .step = pool_step};
        NnrtTrainOptions o = quiet_opts();
        o.epochs = 2;
        NnrtTrainResult res;
        setenv("NN_PREFETCH", "pool", 1);
        cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
        expect_shuffled_batches(&s, &tr, &o);
        nnrt_dataset_fini(&tr);
    }
}

#if defined(__x86_64__) || defined(__i386__)
// 1e-30 * 1e-10 is a denormal, or zero with denormals flushed.
static bool flushes(void)
{
    volatile float a = 1e-30f, b = 1e-10f;
    volatile float c = a * b;
    return c == 0;
}

typedef struct FtzSeen {
    atomic_int steps, flushed; // on every thread of the pool
} FtzSeen;

static void ftz_task(void *arg, int ith, int nth)
{
    (void)ith;
    (void)nth;
    FtzSeen *f = arg;
    atomic_fetch_add(&f->steps, 1);
    if (flushes())
        atomic_fetch_add(&f->flushed, 1);
}

static NnStatus ftz_step(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n,
                         double *loss)
{
    (void)x;
    (void)y;
    (void)n;
    nnrt_pool_run(nnrt_pool_default(), ftz_task, ctx);
    *loss = 1;
    return NN_OK;
}

// Training flushes denormals to zero on the caller and on every pool thread
// (Adam's moments decay into denormals, which made steps 40% slower), and
// gives the previous mode back when it returns; NN_KEEP_DENORMALS=1 keeps them.
Test(train, training_flushes_denormals_and_restores)
{
    cr_assert_eq(nnrt_pool_set_threads(2), NN_OK);
    nnrt_pool_run(nnrt_pool_default(), ftz_task, &(FtzSeen){0}); // workers started before
    cr_assert(!flushes());
    NnrtDataset tr = blobs(100, 5);
    NnrtTrainOptions o = quiet_opts();
    o.epochs = 1;
    NnrtTrainResult res;
    FtzSeen f = {0};
    NnrtTrainCallbacks cb = {.ctx = &f, .step = ftz_step};
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(atomic_load(&f.steps), 7 * 2); // 7 steps, a task on 2 threads each
    cr_expect_eq(atomic_load(&f.flushed), 7 * 2, "%d of %d runs flushed denormals",
                 atomic_load(&f.flushed), 7 * 2);
    cr_expect(!flushes(), "the caller's mode was not restored");
    FtzSeen after = {0};
    nnrt_pool_run(nnrt_pool_default(), ftz_task, &after);
    cr_expect_eq(atomic_load(&after.flushed), 0, "a worker's mode was not restored");

    setenv("NN_KEEP_DENORMALS", "1", 1);
    FtzSeen kept = {0};
    cb.ctx = &kept;
    cr_assert_eq(nnrt_train(&cb, &tr, &o, &res), NN_OK, "%s", nnrt_errmsg());
    cr_expect_eq(atomic_load(&kept.flushed), 0);
    nnrt_dataset_fini(&tr);
}
#endif
