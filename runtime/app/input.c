// predict's input for a built program: raw f32 model inputs from standard
// input, or samples as the data block reads them (an IDX file of images, a
// CSV file of numbers, the label column dropped) put through the data block's
// x transforms one sample at a time. Every failure names the file and what
// was expected.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_priv.h"
#include "fileio.h"

// A view of rows [i, i + n) of t.
void app_rows_view(NnTensor *v, const NnTensor *t, int64_t i, int64_t n)
{
    *v = *t;
    v->owned = false;
    v->shape[0] = n;
    int64_t w = t->shape[0] ? t->numel / t->shape[0] : 0;
    v->numel = n * w;
    v->data = (char *)t->data + (size_t)(i * w) * nnrt_dtype_size(t->dtype);
}


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
    FILE *f = NULL;
    if (nnrt_file_fopen_stream(path, "input", &f) != NN_OK)
        return NULL;
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
NnTensor *app_read_input(const NnrtApp *a, const char *path)
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
        app_rows_view(&row, t, i, 1);
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

