// The data block of a built program, replayed from its tables: loaders,
// literal fields, compiled field transforms (each checks that the data has
// the shapes it was built for), splits, class names and normalization, with
// the compiler's data driver's semantics (compiler/driver_data.c).
#include <stdlib.h>
#include <string.h>

#include "app_priv.h"



NnrtDataset *app_split_get(Splits *s, const char *name)
{
    for (int i = 0; i < s->count; i++)
        if (!strcmp(s->names[i], name))
            return &s->ds[i];
    return NULL;
}

static NnrtDataset *split_add(Splits *s, const char *name)
{
    NnrtDataset *d = app_split_get(s, name);
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
    if (!d && !(d = app_split_get(s, "train")) && !(d = split_add(s, "train"))) {
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
    NnrtDataset *src = app_split_get(s, op->name), parts[8];
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
        NnStatus st = nnrt_norm_fit(&norm, app_split_get(s, "train"), op->per_feature);
        for (int k = 0; st == NN_OK && k < s->count; k++)
            st = nnrt_norm_apply(&norm, &s->ds[k]);
        nnrt_norm_fini(&norm);
        return st;
    }
    default: return nnrt_fail(NN_ERR_RUNTIME, "unknown data operation %d", op->kind);
    }
}

void app_splits_fini(Splits *s)
{
    for (int i = 0; i < s->count; i++)
        nnrt_dataset_fini(&s->ds[i]);
    s->count = 0;
}

NnStatus app_load_data(const NnrtApp *a, Splits *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < a->ndata; i++) {
        NnStatus st = run_op(s, &a->data[i]);
        if (st != NN_OK)
            return st;
    }
    if (!app_split_get(s, "train"))
        return nnrt_fail(NN_ERR_RUNTIME, "the data has no 'train' split");
    return NN_OK;
}

NnStatus app_keep_head(NnrtDataset *ds, int64_t n)
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

