// Text files as next-character training pairs. The vocabulary is the set of
// distinct bytes in the file, sorted, so id i is the i-th smallest byte and
// the same file always gives the same ids. Sample k is the window of `seq`
// ids starting at byte k * stride (x, i32 [seq]) and the id of the byte that
// follows it (label, i32). `from` and `to` take a contiguous part of the file
// (fractions of its bytes), so a validation part shares no window with the
// training part. Any byte is allowed; a part no longer than a window is an
// error naming the file.
#include "data.h"
#include "fileio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Bound on the file size (a longer file is refused by nnrt_file_read_all), so
// the window count and the tensors stay far from size_t overflow.
#define TEXT_MAX_BYTES ((int64_t)1 << 31)
#define TEXT_MAX_SEQ 65536

NnStatus nnrt_dataset_load_text(NnrtDataset *ds, const char *path, const NnrtTextOptions *o)
{
    nnrt_dataset_init(ds);
    int64_t seq = o->seq, stride = o->stride ? o->stride : 1;
    double from = o->from, to = o->to_set ? o->to : 1;
    if (seq < 1 || seq > TEXT_MAX_SEQ || stride < 1 || stride > TEXT_MAX_BYTES)
        return nnrt_fail(NN_ERR_FORMAT, "%s: seq must be 1 to %d and stride at least 1", path,
                         TEXT_MAX_SEQ);
    if (!(from >= 0 && from < to && to <= 1))
        return nnrt_fail(NN_ERR_FORMAT, "%s: need 0 <= from < to <= 1, got from = %g, to = %g",
                         path, from, to);
    char *buf = NULL;
    size_t n = 0;
    NnStatus st = nnrt_file_read_all(path, "text file", (size_t)TEXT_MAX_BYTES, &buf, &n);
    if (st != NN_OK)
        return st;
    unsigned char *all = (unsigned char *)buf;
    int64_t len = (int64_t)n;
    // The vocabulary comes from the whole file, so every part shares its ids.
    int id[256], v = 0;
    bool seen[256] = {0};
    for (int64_t i = 0; i < len; i++)
        seen[all[i]] = true;
    for (int c = 0; c < 256; c++)
        id[c] = seen[c] ? v++ : -1;
    int64_t lo = (int64_t)llround(from * (double)len), hi = (int64_t)llround(to * (double)len);
    const unsigned char *b = all + lo;
    if (hi - lo <= seq) {
        free(all);
        return nnrt_fail(NN_ERR_FORMAT, "%s: %lld bytes of text (bytes %lld to %lld), but a "
                         "window of seq = %lld needs at least %lld", path, (long long)(hi - lo),
                         (long long)lo, (long long)hi, (long long)seq, (long long)seq + 1);
    }
    len = hi - lo;
    int64_t count = (len - seq - 1) / stride + 1;
    NnTensor *x = nnrt_tensor_new(NN_DT_I32, 2, (int64_t[]){count, seq});
    NnTensor *y = nnrt_tensor_new(NN_DT_I32, 1, (int64_t[]){count});
    ds->vocab = malloc((size_t)v);
    if (!x || !y || !ds->vocab) {
        nnrt_tensor_free(x);
        nnrt_tensor_free(y);
        free(all);
        nnrt_dataset_fini(ds);
        return nnrt_fail(NN_ERR_NOMEM, "%s: out of memory for %lld windows of %lld", path,
                         (long long)count, (long long)seq);
    }
    for (int c = 0; c < 256; c++)
        if (id[c] >= 0)
            ds->vocab[id[c]] = (char)c;
    int32_t *xd = x->data, *yd = y->data;
    for (int64_t k = 0; k < count; k++) {
        const unsigned char *w = b + k * stride;
        for (int64_t t = 0; t < seq; t++)
            xd[k * seq + t] = id[w[t]];
        yd[k] = id[w[seq]];
    }
    free(all);
    ds->x = x;
    ds->y = y;
    ds->count = count;
    ds->num_classes = v;
    return nnrt_dataset_set_label_origin(ds, path, NULL, false);
}

double nnrt_text_unigram_bits(const NnrtDataset *fit, const NnrtDataset *eval)
{
    int v = fit->num_classes;
    if (!fit->y || !eval->y || fit->y->dtype != NN_DT_I32 || eval->y->dtype != NN_DT_I32 ||
        v <= 0 || eval->y->numel == 0)
        return NAN;
    double *p = calloc((size_t)v, sizeof *p);
    if (!p)
        return NAN;
    const int32_t *y = fit->y->data;
    for (int64_t i = 0; i < fit->y->numel; i++)
        if (y[i] >= 0 && y[i] < v)
            p[y[i]] += 1;
    // Add-one smoothing, so a byte unseen in training costs bits, not infinity.
    for (int c = 0; c < v; c++)
        p[c] = (p[c] + 1) / ((double)fit->y->numel + v);
    double bits = 0;
    y = eval->y->data;
    for (int64_t i = 0; i < eval->y->numel; i++)
        bits -= y[i] >= 0 && y[i] < v ? log2(p[y[i]]) : log2(1.0 / ((double)fit->y->numel + v));
    free(p);
    return bits / (double)eval->y->numel;
}
