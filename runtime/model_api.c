// A model library's context (model_api.h): the variables, a private thread
// pool and the two step runs of one compiled model (training, and prediction:
// the model alone where the build compiled it, else the evaluation step on
// labels of zeros). Callers' buffers are
// copied into 64-byte aligned batch buffers before a run (generated kernels
// may assume that alignment). A prediction runs in chunks of the batch size:
// the last one short when the evaluation step takes its batch at run time,
// else padded with zeros, so one compiled step serves any n. A training step
// that takes its batch at run time runs on any number of samples (the batch
// buffers grow to the largest n seen); one compiled for the training batch
// takes exactly that many. Every failure is a status plus a message kept in
// the context; nothing exits or aborts.
#include "model_api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fileio.h"
#include "init.h"
#include "pool.h"

struct NnrtModel {
    const NnrtModelDesc *d;
    NnVars vars;
    NnrtPool pool;
    bool pool_ok;
    NnrtStepRun eval, step;    // eval: what predict runs (the model alone, or eval)
    bool eval_open, step_open; // the training step's memory is made on first use
    float *x;                  // cap * in_size, aligned
    void *y;                   // cap * label_size labels, aligned (zeros to predict)
    int64_t cap;               // rows x and y hold: the batch, or more after a larger step
    bool y_zero;               // y's first `batch` rows are zeros (a training step writes labels)
    char err[1024];
};

// Keeps the thread's message in m, for nnrt_model_errmsg.
static NnStatus fail(NnrtModel *m, NnStatus st)
{
    if (m)
        snprintf(m->err, sizeof m->err, "%s", nnrt_errmsg());
    return st;
}

static NnStatus bad_arg(NnrtModel *m, const char *what)
{
    return fail(m, nnrt_fail(NN_ERR_SHAPE, "%s", what));
}

// A header for t's type over data, its batch dim (if it has one) `rows`.
static NnTensor header(const NnrtStepTensor *t, void *data, int64_t rows)
{
    NnTensor h = {.dtype = (NnDType)t->dtype, .rank = t->rank, .numel = 1, .data = data};
    for (int i = 0; i < t->rank; i++) {
        h.shape[i] = t->dims[i] == NNRT_DIM_BATCH ? rows : t->dims[i];
        h.numel *= h.shape[i];
    }
    return h;
}

void nnrt_model_free(NnrtModel *m)
{
    if (!m)
        return;
    if (m->eval_open)
        nnrt_step_close(&m->eval);
    if (m->step_open)
        nnrt_step_close(&m->step);
    if (m->pool_ok)
        nnrt_pool_fini(&m->pool);
    nnrt_vars_fini(&m->vars);
    nnrt_free(m->x);
    nnrt_free(m->y);
    free(m);
}

NnStatus nnrt_model_create(const NnrtModelDesc *d, int threads, NnrtModel **out)
{
    if (!out)
        return nnrt_fail(NN_ERR_SHAPE, "create: no place for the model (out is NULL)");
    *out = NULL;
    if (!d || d->eval->noutputs > 16 || d->step->noutputs > 16 || d->eval->ninputs != 2 ||
        d->step->ninputs != 2 ||
        (d->predict && (d->predict->ninputs != 1 || d->predict->noutputs != 1)))
        return nnrt_fail(NN_ERR_SHAPE, "create: no model description, or not one this runtime "
                         "runs (two inputs, at most 16 outputs)");
    if (threads < 0 || threads > 1024)
        return nnrt_fail(NN_ERR_SHAPE, "create: threads must be 0 (all cores) to 1024, got %d",
                         threads);
    NnrtModel *m = calloc(1, sizeof *m);
    if (!m)
        return nnrt_fail(NN_ERR_NOMEM, "create: out of memory");
    m->d = d;
    nnrt_vars_init(&m->vars);
    NnStatus st = NN_OK;
    for (int i = 0; st == NN_OK && i < d->nvars; i++) {
        const NnrtModelVar *v = &d->vars[i];
        NnTensor *t = nnrt_tensor_new((NnDType)v->dtype, v->rank, v->dims);
        st = t ? nnrt_init_fill(t, v->init, v->args, v->nargs, d->seed, v->name) : NN_ERR_NOMEM;
        if (st == NN_OK)
            st = nnrt_vars_append(&m->vars, v->name, t);
        else
            nnrt_tensor_free(t);
    }
    size_t label_bytes = (size_t)(d->batch * d->label_size) * nnrt_dtype_size(d->label_dtype);
    if (st == NN_OK && (!(m->x = nnrt_alloc((size_t)(d->batch * d->in_size) * sizeof(float))) ||
                        !(m->y = nnrt_alloc(label_bytes))))
        st = NN_ERR_NOMEM;
    m->cap = d->batch;
    if (st == NN_OK && (st = nnrt_pool_init(&m->pool, threads)) == NN_OK)
        m->pool_ok = true;
    if (st == NN_OK && (st = nnrt_step_open(&m->eval, d->predict ? d->predict : d->eval)) == NN_OK)
        m->eval_open = true;
    if (st != NN_OK) {
        nnrt_fail(st, "create: %s", nnrt_errmsg());
        nnrt_model_free(m);
        return st;
    }
    *out = m;
    return NN_OK;
}

const char *nnrt_model_errmsg(const NnrtModel *m) { return m ? m->err : nnrt_errmsg(); }

NnStatus nnrt_model_predict(NnrtModel *m, const float *x, int64_t n, float *out)
{
    if (!m)
        return nnrt_fail(NN_ERR_SHAPE, "predict: no model (NULL)");
    m->err[0] = 0;
    if (!x || !out)
        return bad_arg(m, "predict: x and out must not be NULL");
    if (n < 1)
        return fail(m, nnrt_fail(NN_ERR_SHAPE, "predict: n must be at least 1, got %lld",
                                 (long long)n));
    const NnrtModelDesc *d = m->d;
    const NnrtStep *e = d->predict ? d->predict : d->eval;
    // Predictions need no label: zeros are in range for every check. Zeroed
    // once, not per call (a batch-1 prediction is a few microseconds).
    if (!d->predict && !m->y_zero)
        memset(m->y, 0, (size_t)(d->batch * d->label_size) * nnrt_dtype_size(d->label_dtype));
    m->y_zero = true;
    bool any = e->inputs[0].rank > 0 && e->inputs[0].dims[0] == NNRT_DIM_BATCH;
    for (int64_t at = 0; at < n; at += d->batch) {
        int64_t k = n - at < d->batch ? n - at : d->batch;
        memcpy(m->x, x + at * d->in_size, (size_t)(k * d->in_size) * sizeof(float));
        if (!any)
            memset(m->x + k * d->in_size, 0,
                   (size_t)((d->batch - k) * d->in_size) * sizeof(float));
        NnTensor in[2] = {header(&e->inputs[0], m->x, k)};
        if (e->ninputs > 1)
            in[1] = header(&e->inputs[1], m->y, k);
        NnTensor *ins[2] = {&in[0], &in[1]};
        NnTensor *outs[16] = {0};
        NnStatus st = nnrt_step_run(&m->eval, &m->pool, &m->vars, ins, outs);
        if (st != NN_OK)
            return fail(m, nnrt_fail(st, "predict: %s", nnrt_errmsg()));
        const NnTensor *o = outs[d->predict ? 0 : d->eval_output];
        if (o->dtype == NN_DT_F32)
            memcpy(out + at * d->out_size, o->data, (size_t)(k * d->out_size) * sizeof(float));
        else
            for (int64_t i = 0; i < k * d->out_size; i++)
                out[at * d->out_size + i] = (float)nnrt_tensor_get(o, i);
    }
    return NN_OK;
}

// Batch buffers for n rows (grown, never shrunk; the old ones kept on failure).
static NnStatus reserve(NnrtModel *m, int64_t n)
{
    const NnrtModelDesc *d = m->d;
    if (n <= m->cap)
        return NN_OK;
    size_t xb, yb;
    float *x = NULL;
    void *y = NULL;
    if (!nnrt_size_mul((size_t)n, (size_t)d->in_size * sizeof(float), &xb) ||
        !nnrt_size_mul((size_t)n, (size_t)d->label_size * nnrt_dtype_size(d->label_dtype), &yb) ||
        !(x = nnrt_alloc(xb)) || !(y = nnrt_alloc(yb))) {
        nnrt_free(x);
        return nnrt_fail(NN_ERR_NOMEM, "out of memory for a batch of %lld samples",
                         (long long)n);
    }
    nnrt_free(m->x);
    nnrt_free(m->y);
    m->x = x;
    m->y = y;
    m->y_zero = false;
    m->cap = n;
    return NN_OK;
}

NnStatus nnrt_model_train_step(NnrtModel *m, const float *x, const void *labels, int64_t n,
                               float *loss)
{
    if (!m)
        return nnrt_fail(NN_ERR_SHAPE, "train_step: no model (NULL)");
    m->err[0] = 0;
    const NnrtModelDesc *d = m->d;
    if (!x || !labels)
        return bad_arg(m, "train_step: x and labels must not be NULL");
    bool any = d->step->inputs[0].rank > 0 && d->step->inputs[0].dims[0] == NNRT_DIM_BATCH;
    if (any && n < 1)
        return fail(m, nnrt_fail(NN_ERR_SHAPE, "train_step: n must be at least 1, got %lld",
                                 (long long)n));
    if (!any && n != d->batch)
        return fail(m, nnrt_fail(NN_ERR_SHAPE, "train_step: takes exactly %lld samples (this "
                                 "model's step is compiled for the batch size the library was "
                                 "built for), got %lld",
                                 (long long)d->batch, (long long)n));
    if (reserve(m, n) != NN_OK)
        return fail(m, nnrt_fail(NN_ERR_NOMEM, "train_step: %s", nnrt_errmsg()));
    if (!m->step_open) {
        if (nnrt_step_open(&m->step, d->step) != NN_OK)
            return fail(m, nnrt_fail(NN_ERR_NOMEM, "train_step: %s", nnrt_errmsg()));
        m->step_open = true;
    }
    memcpy(m->x, x, (size_t)(n * d->in_size) * sizeof(float));
    memcpy(m->y, labels, (size_t)(n * d->label_size) * nnrt_dtype_size(d->label_dtype));
    m->y_zero = false;
    const NnrtStep *s = d->step;
    NnTensor in[2] = {header(&s->inputs[0], m->x, n), header(&s->inputs[1], m->y, n)};
    NnTensor *ins[2] = {&in[0], &in[1]}, *outs[16] = {0};
    NnStatus st = nnrt_step_run(&m->step, &m->pool, &m->vars, ins, outs);
    if (st != NN_OK)
        return fail(m, nnrt_fail(st, "train_step: %s", nnrt_errmsg()));
    double v = nnrt_tensor_get(outs[0], 0);
    if (loss)
        *loss = (float)v;
    if (!isfinite(v))
        return fail(m, nnrt_fail(NN_ERR_RUNTIME, "train_step: the loss is %g (training "
                                 "diverged; lower the learning rate)", v));
    return NN_OK;
}

static bool is_model_var(const NnrtModelDesc *d, const char *name)
{
    for (int i = 0; i < d->nvars; i++)
        if (!strcmp(d->vars[i].name, name))
            return d->vars[i].model;
    return false;
}

NnStatus nnrt_model_load(NnrtModel *m, const char *path)
{
    if (!m)
        return nnrt_fail(NN_ERR_SHAPE, "load: no model (NULL)");
    m->err[0] = 0;
    if (!path)
        return bad_arg(m, "load: path must not be NULL");
    NnVars loaded, want;
    nnrt_vars_init(&want);
    NnStatus st = nnrt_safetensors_load(path, &loaded, NULL);
    if (st != NN_OK)
        return fail(m, st);
    // Weights and layer state must be there; optimizer state is taken when present.
    for (int i = 0; st == NN_OK && i < m->vars.count; i++) {
        const NnTensor *t = m->vars.tensors[i];
        if (!is_model_var(m->d, m->vars.names[i]) && !nnrt_vars_get(&loaded, m->vars.names[i]))
            continue;
        NnTensor *v = nnrt_tensor_view(t->dtype, t->rank, t->shape, t->data);
        st = v ? nnrt_vars_append(&want, m->vars.names[i], v) : NN_ERR_NOMEM;
    }
    if (st == NN_OK)
        st = nnrt_checkpoint_check(path, &loaded, &want);
    for (int i = 0; st == NN_OK && i < want.count; i++)
        memcpy(want.tensors[i]->data, nnrt_vars_get(&loaded, want.names[i])->data,
               nnrt_tensor_nbytes(want.tensors[i]));
    nnrt_vars_fini(&want);
    nnrt_vars_fini(&loaded);
    return st == NN_OK ? NN_OK : fail(m, st);
}

NnStatus nnrt_model_save(NnrtModel *m, const char *path)
{
    if (!m)
        return nnrt_fail(NN_ERR_SHAPE, "save: no model (NULL)");
    m->err[0] = 0;
    if (!path)
        return bad_arg(m, "save: path must not be NULL");
    NnrtMeta meta;
    nnrt_meta_init(&meta);
    NnStatus st = nnrt_meta_set(&meta, "format", NNRT_CHECKPOINT_FORMAT);
    if (st == NN_OK)
        st = nnrt_safetensors_save(path, &m->vars, &meta);
    nnrt_meta_fini(&meta);
    return st == NN_OK ? NN_OK : fail(m, st);
}
