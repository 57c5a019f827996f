// The (x, y) dataset pair: building it from loaded tensors (with the sample
// count check), seeded splits into disjoint covering parts, subsets, and the
// per-sample transforms (scale, flatten, one-hot, normalization fitted on one
// dataset and applied to others). x is f32 or i32 (text windows) with samples along dim 0.
#include "data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void nnrt_dataset_init(NnrtDataset *ds) { memset(ds, 0, sizeof *ds); }

void nnrt_dataset_fini(NnrtDataset *ds)
{
    nnrt_tensor_free(ds->x);
    nnrt_tensor_free(ds->y);
    if (ds->class_names) {
        for (int i = 0; i < ds->num_classes; i++)
            free(ds->class_names[i]);
        free(ds->class_names);
    }
    free(ds->vocab);
    free(ds->y_file);
    free(ds->y_at);
    memset(ds, 0, sizeof *ds);
}

// Largest label + 1 for i32 labels; 0 when y is absent or not class indices.
static int count_classes(const NnTensor *y)
{
    if (!y || y->dtype != NN_DT_I32 || y->rank != 1)
        return 0;
    int32_t mx = -1;
    const int32_t *p = y->data;
    for (int64_t i = 0; i < y->numel; i++)
        if (p[i] > mx)
            mx = p[i];
    return mx + 1;
}

NnStatus nnrt_dataset_set(NnrtDataset *ds, NnTensor *x, NnTensor *y, const char *x_name,
                          const char *y_name)
{
    const char *xn = x_name ? x_name : "inputs", *yn = y_name ? y_name : "labels";
    NnStatus st = NN_OK;
    if (!x || x->rank < 1 || x->dtype != NN_DT_F32)
        st = nnrt_fail(NN_ERR_SHAPE, "%s: inputs must be an f32 tensor of rank >= 1", xn);
    else if (y && (y->rank < 1 || y->shape[0] != x->shape[0]))
        st = nnrt_fail(NN_ERR_FORMAT, "%s has %lld samples but %s has %lld labels", xn,
                       (long long)x->shape[0], yn, (long long)(y->rank ? y->shape[0] : 0));
    if (st != NN_OK) {
        nnrt_tensor_free(x);
        nnrt_tensor_free(y);
        return st;
    }
    nnrt_dataset_fini(ds);
    ds->x = x;
    ds->y = y;
    ds->count = x->shape[0];
    ds->num_classes = count_classes(y);
    if (x->rank == 3 || x->rank == 4) { // [N, H, W] or [N, C, H, W]
        ds->img_h = x->shape[x->rank - 2];
        ds->img_w = x->shape[x->rank - 1];
    }
    return NN_OK;
}

// Records where the labels came from (file NULL: nowhere known); at[i] locates
// sample i (taken, may be NULL).
static NnStatus set_origin(NnrtDataset *ds, const char *file, int64_t *at, bool line)
{
    ds->y_file = file ? strdup(file) : NULL;
    ds->y_at = at;
    ds->y_at_line = line;
    return ds->y_file || !file ? NN_OK : nnrt_fail(NN_ERR_NOMEM, "out of memory");
}

NnStatus nnrt_dataset_set_label_origin(NnrtDataset *ds, const char *file, int64_t *at, bool line)
{
    free(ds->y_file);
    free(ds->y_at);
    return set_origin(ds, file, at, line);
}

static NnStatus load_idx(NnrtDataset *ds, const char *images, const char *labels, bool shape)
{
    NnTensor *x = NULL, *y = NULL;
    NnrtIdxInfo li = {0};
    NnStatus st = shape ? nnrt_idx_load_header(images, &x) : nnrt_idx_load(images, &x);
    if (st != NN_OK)
        return st;
    if (x->dtype != NN_DT_F32 || x->rank < 2) {
        int rank = x->rank;
        nnrt_tensor_free(x);
        return nnrt_fail(NN_ERR_FORMAT, "%s: expected an image file (rank >= 2), got rank %d",
                         images, rank);
    }
    if (x->rank == 3) {
        // Gray images keep their channel axis: [N, 1, H, W] (NCHW, as models
        // and checkpoints see images).
        x->shape[3] = x->shape[2];
        x->shape[2] = x->shape[1];
        x->shape[1] = 1;
        x->rank = 4;
    }
    if (labels) {
        st = nnrt_idx_load_info(labels, &y, &li);
        if (st != NN_OK) {
            nnrt_tensor_free(x);
            return st;
        }
        if (y->rank != 1 || y->dtype != NN_DT_I32) {
            int rank = y->rank;
            nnrt_tensor_free(x);
            nnrt_tensor_free(y);
            if (rank == 1)
                return nnrt_fail(NN_ERR_FORMAT, "%s: a label file must hold integers (IDX "
                                 "type ubyte, byte, short or int), this one holds %s (type "
                                 "0x%02X at byte 2)", labels, li.type == 0x0D ? "float" : "double",
                                 li.type);
            return nnrt_fail(NN_ERR_FORMAT,
                             "%s: expected a label file (rank 1, integer type), got rank %d",
                             labels, rank);
        }
        const int32_t *lab = y->data;
        for (int64_t i = 0; i < y->numel; i++)
            if (lab[i] < 0) {
                long long at = li.header_bytes + i * li.elem_size, v = lab[i];
                nnrt_tensor_free(x);
                nnrt_tensor_free(y);
                return nnrt_fail(NN_ERR_FORMAT, "%s: byte %lld: label %lld is negative (class "
                                 "labels count from 0)", labels, at, v);
            }
    }
    st = nnrt_dataset_set(ds, x, y, images, labels);
    if (st != NN_OK || !y)
        return st;
    int64_t *at = malloc((size_t)(ds->count ? ds->count : 1) * sizeof *at);
    for (int64_t i = 0; at && i < ds->count; i++)
        at[i] = li.header_bytes + i * li.elem_size;
    if (!at || set_origin(ds, labels, at, false) != NN_OK) {
        nnrt_dataset_fini(ds);
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    return NN_OK;
}

NnStatus nnrt_dataset_load_idx(NnrtDataset *ds, const char *images, const char *labels)
{
    return load_idx(ds, images, labels, false);
}

NnStatus nnrt_dataset_load_idx_shape(NnrtDataset *ds, const char *images, const char *labels)
{
    return load_idx(ds, images, labels, true);
}

NnStatus nnrt_dataset_check_labels(const NnrtDataset *ds, int classes)
{
    const NnTensor *y = ds->y;
    if (!y || y->dtype != NN_DT_I32 || y->rank != 1)
        return NN_OK;
    const int32_t *lab = y->data;
    for (int64_t i = 0; i < y->numel; i++) {
        if (lab[i] >= 0 && lab[i] < classes)
            continue;
        const char *file = ds->y_file ? ds->y_file : "labels";
        if (ds->y_at && ds->y_at_line)
            return nnrt_fail(NN_ERR_FORMAT, "%s:%lld: label %d is outside 0..%d (%d classes)",
                             file, (long long)ds->y_at[i], lab[i], classes - 1, classes);
        if (ds->y_at)
            return nnrt_fail(NN_ERR_FORMAT, "%s: byte %lld: label %d is outside 0..%d (%d "
                             "classes)", file, (long long)ds->y_at[i], lab[i], classes - 1,
                             classes);
        return nnrt_fail(NN_ERR_FORMAT, "%s: label %d of sample %lld is outside 0..%d (%d "
                         "classes)", file, lab[i], (long long)i, classes - 1, classes);
    }
    return NN_OK;
}

// Copies rows idx[] of src into a new tensor with n rows.
static NnTensor *gather_rows(const NnTensor *src, const int64_t *idx, int64_t n)
{
    int64_t shape[NN_MAX_RANK];
    memcpy(shape, src->shape, sizeof shape);
    shape[0] = n;
    NnTensor *t = nnrt_tensor_new(src->dtype, src->rank, shape);
    if (!t)
        return NULL;
    size_t row = src->shape[0] ? nnrt_tensor_nbytes(src) / (size_t)src->shape[0] : 0;
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)t->data + (size_t)i * row, (const char *)src->data + (size_t)idx[i] * row,
               row);
    return t;
}

NnStatus nnrt_dataset_subset(const NnrtDataset *src, const int64_t *idx, int64_t n,
                             NnrtDataset *out)
{
    nnrt_dataset_init(out);
    out->x = gather_rows(src->x, idx, n);
    out->y = src->y ? gather_rows(src->y, idx, n) : NULL;
    if (!out->x || (src->y && !out->y)) {
        nnrt_dataset_fini(out);
        return nnrt_fail(NN_ERR_NOMEM, "out of memory copying %lld samples", (long long)n);
    }
    out->count = n;
    out->num_classes = src->num_classes;
    out->img_h = src->img_h;
    out->img_w = src->img_w;
    if (src->y_file && out->y) {
        int64_t *at = NULL;
        if (src->y_at && (at = malloc((size_t)(n ? n : 1) * sizeof *at)))
            for (int64_t i = 0; i < n; i++)
                at[i] = src->y_at[idx[i]];
        if ((src->y_at && !at) || set_origin(out, src->y_file, at, src->y_at_line) != NN_OK) {
            nnrt_dataset_fini(out);
            return nnrt_fail(NN_ERR_NOMEM, "out of memory copying %lld samples", (long long)n);
        }
    }
    if (src->class_names) {
        out->class_names = calloc((size_t)src->num_classes, sizeof(char *));
        for (int i = 0; out->class_names && i < src->num_classes; i++)
            out->class_names[i] = strdup(src->class_names[i]);
    }
    if (src->vocab) {
        if (!(out->vocab = malloc((size_t)src->num_classes))) {
            nnrt_dataset_fini(out);
            return nnrt_fail(NN_ERR_NOMEM, "out of memory copying a vocabulary");
        }
        memcpy(out->vocab, src->vocab, (size_t)src->num_classes);
    }
    return NN_OK;
}

NnStatus nnrt_dataset_split(const NnrtDataset *src, const double *fracs, int n, uint64_t seed,
                            NnrtDataset *out)
{
    for (int i = 0; i < n; i++)
        nnrt_dataset_init(&out[i]);
    double total = 0;
    for (int i = 0; i < n; i++) {
        if (!(fracs[i] >= 0))
            return nnrt_fail(NN_ERR_RUNTIME, "split fraction %d is negative (%g)", i, fracs[i]);
        total += fracs[i];
    }
    if (n < 1 || total <= 0)
        return nnrt_fail(NN_ERR_RUNTIME, "split fractions must have a positive sum");
    int64_t *perm = malloc((size_t)(src->count ? src->count : 1) * sizeof *perm);
    if (!perm)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    nnrt_shuffle(perm, src->count, seed, -1);
    double cum = 0;
    int64_t start = 0;
    NnStatus st = NN_OK;
    for (int i = 0; i < n && st == NN_OK; i++) {
        cum += fracs[i];
        int64_t end = i == n - 1 ? src->count : (int64_t)llround(cum / total * (double)src->count);
        if (end < start)
            end = start;
        st = nnrt_dataset_subset(src, perm + start, end - start, &out[i]);
        start = end;
    }
    free(perm);
    if (st != NN_OK)
        for (int i = 0; i < n; i++)
            nnrt_dataset_fini(&out[i]);
    return st;
}

void nnrt_dataset_scale(NnrtDataset *ds, double k)
{
    float *p = ds->x->data;
    for (int64_t i = 0; i < ds->x->numel; i++)
        p[i] = (float)(p[i] * k);
}

void nnrt_dataset_flatten(NnrtDataset *ds)
{
    NnTensor *x = ds->x;
    int64_t f = 1;
    for (int i = 1; i < x->rank; i++)
        f *= x->shape[i];
    x->rank = 2;
    x->shape[1] = f;
}

NnStatus nnrt_dataset_one_hot(NnrtDataset *ds, int classes)
{
    if (classes <= 0)
        classes = ds->num_classes;
    NnTensor *y = ds->y;
    if (!y || y->dtype != NN_DT_I32 || y->rank != 1)
        return nnrt_fail(NN_ERR_SHAPE, "one_hot needs i32 [count] class labels");
    NnTensor *oh = nnrt_tensor_new(NN_DT_F32, 2, (int64_t[]){ds->count, classes});
    if (!oh)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    const int32_t *lab = y->data;
    float *o = oh->data;
    for (int64_t i = 0; i < ds->count; i++) {
        if (lab[i] < 0 || lab[i] >= classes) {
            nnrt_tensor_free(oh);
            return nnrt_fail(NN_ERR_FORMAT, "label %d of sample %lld is outside 0..%d", lab[i],
                             (long long)i, classes - 1);
        }
        o[i * classes + lab[i]] = 1.0f;
    }
    nnrt_tensor_free(y);
    ds->y = oh;
    ds->num_classes = classes;
    return NN_OK;
}

NnStatus nnrt_norm_fit(NnrtNorm *n, const NnrtDataset *train, bool per_feature)
{
    memset(n, 0, sizeof *n);
    int64_t feat = train->count ? train->x->numel / train->count : 0;
    int64_t nf = per_feature ? feat : 1;
    if (train->count == 0 || feat == 0)
        return nnrt_fail(NN_ERR_RUNTIME, "cannot compute normalization on an empty dataset");
    if (train->x->dtype != NN_DT_F32)
        return nnrt_fail(NN_ERR_RUNTIME, "normalize needs f32 x (this x holds integer ids)");
    double *sum = calloc((size_t)nf * 2, sizeof *sum);
    n->mean = malloc((size_t)nf * sizeof(float));
    n->std = malloc((size_t)nf * sizeof(float));
    if (!sum || !n->mean || !n->std) {
        free(sum);
        nnrt_norm_fini(n);
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    n->features = nf;
    const float *x = train->x->data;
    // Two passes (mean, then squared deviations) in double for accuracy.
    for (int64_t i = 0; i < train->x->numel; i++)
        sum[per_feature ? i % feat : 0] += x[i];
    int64_t per = train->x->numel / nf;
    for (int64_t j = 0; j < nf; j++)
        n->mean[j] = (float)(sum[j] / (double)per);
    for (int64_t i = 0; i < train->x->numel; i++) {
        int64_t j = per_feature ? i % feat : 0;
        double d = x[i] - (double)n->mean[j];
        sum[nf + j] += d * d;
    }
    for (int64_t j = 0; j < nf; j++) {
        double sd = sqrt(sum[nf + j] / (double)per);
        n->std[j] = sd > 1e-12 ? (float)sd : 1.0f;
    }
    free(sum);
    return NN_OK;
}

NnStatus nnrt_norm_apply(const NnrtNorm *n, NnrtDataset *ds)
{
    int64_t feat = ds->count ? ds->x->numel / ds->count : 0;
    if (n->features != 1 && n->features != feat)
        return nnrt_fail(NN_ERR_SHAPE,
                         "normalization was computed for %lld features, the dataset has %lld",
                         (long long)n->features, (long long)feat);
    if (ds->x->dtype != NN_DT_F32)
        return nnrt_fail(NN_ERR_RUNTIME, "normalize needs f32 x (this x holds integer ids)");
    float *x = ds->x->data;
    for (int64_t i = 0; i < ds->x->numel; i++) {
        int64_t j = n->features == 1 ? 0 : i % feat;
        x[i] = (x[i] - n->mean[j]) / n->std[j];
    }
    return NN_OK;
}

void nnrt_norm_fini(NnrtNorm *n)
{
    free(n->mean);
    free(n->std);
    memset(n, 0, sizeof *n);
}
