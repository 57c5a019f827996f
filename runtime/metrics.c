// Confusion matrices, classification and regression metrics, their printout
// and the JSON-lines writer. Takes predictions/outputs and labels batch by
// batch; produces NnrtEval records. The rules for classes with no support or
// no predictions are in metrics.h; every score is a finite number in [0, 1].
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

NnStatus nnrt_confusion_init(NnrtConfusion *c, int classes)
{
    memset(c, 0, sizeof *c);
    if (classes < 1)
        return nnrt_fail(NN_ERR_RUNTIME, "a confusion matrix needs at least 1 class, got %d",
                         classes);
    c->m = calloc((size_t)classes * (size_t)classes, sizeof *c->m);
    if (!c->m)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    c->classes = classes;
    return NN_OK;
}

void nnrt_confusion_fini(NnrtConfusion *c)
{
    free(c->m);
    memset(c, 0, sizeof *c);
}

void nnrt_confusion_reset(NnrtConfusion *c)
{
    memset(c->m, 0, (size_t)c->classes * (size_t)c->classes * sizeof *c->m);
    c->total = 0;
}

NnStatus nnrt_confusion_add(NnrtConfusion *c, const int32_t *pred, const int32_t *label,
                            int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (label[i] < 0 || label[i] >= c->classes)
            return nnrt_fail(NN_ERR_FORMAT, "label %d of sample %lld is outside 0..%d", label[i],
                             (long long)i, c->classes - 1);
        if (pred[i] < 0 || pred[i] >= c->classes)
            return nnrt_fail(NN_ERR_FORMAT, "prediction %d of sample %lld is outside 0..%d",
                             pred[i], (long long)i, c->classes - 1);
    }
    for (int64_t i = 0; i < n; i++)
        c->m[(int64_t)label[i] * c->classes + pred[i]]++;
    c->total += n;
    return NN_OK;
}

static int32_t argmax_row(const NnTensor *t, int64_t row, int64_t width)
{
    int32_t best = 0;
    double bv = nnrt_tensor_get(t, row * width);
    for (int64_t j = 1; j < width; j++) {
        double v = nnrt_tensor_get(t, row * width + j);
        if (v > bv) {
            bv = v;
            best = (int32_t)j;
        }
    }
    return best;
}

NnStatus nnrt_confusion_add_outputs(NnrtConfusion *c, const NnTensor *out, const NnTensor *y,
                                    int64_t n)
{
    if (n == 0)
        return NN_OK;
    int64_t ow = out->shape[0] ? out->numel / out->shape[0] : 0;
    int64_t yw = y->shape[0] ? y->numel / y->shape[0] : 0;
    if (ow < 1 || out->shape[0] < n || y->shape[0] < n)
        return nnrt_fail(NN_ERR_SHAPE, "outputs/labels have fewer than %lld rows", (long long)n);
    bool y_index = y->dtype == NN_DT_I32 && yw == 1;
    if (!y_index && yw != ow)
        return nnrt_fail(NN_ERR_SHAPE, "outputs have %lld columns but labels have %lld",
                         (long long)ow, (long long)yw);
    int32_t pred[256], lab[256];
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t k = n - i0 < 256 ? n - i0 : 256;
        for (int64_t i = 0; i < k; i++) {
            pred[i] = ow == 1 ? (nnrt_tensor_get(out, i0 + i) > 0.5) : argmax_row(out, i0 + i, ow);
            lab[i] = y_index ? (int32_t)nnrt_tensor_get(y, i0 + i) : argmax_row(y, i0 + i, yw);
        }
        NnStatus st = nnrt_confusion_add(c, pred, lab, k);
        if (st != NN_OK)
            return st;
    }
    return NN_OK;
}

NnrtClassScore nnrt_confusion_class(const NnrtConfusion *c, int k)
{
    NnrtClassScore s = {0};
    for (int j = 0; j < c->classes; j++) {
        s.support += c->m[(int64_t)k * c->classes + j];
        s.predicted += c->m[(int64_t)j * c->classes + k];
    }
    int64_t tp = c->m[(int64_t)k * c->classes + k];
    s.precision = s.predicted ? (double)tp / (double)s.predicted : 0.0;
    s.recall = s.support ? (double)tp / (double)s.support : 0.0;
    double pr = s.precision + s.recall;
    s.f1 = pr > 0 ? 2 * s.precision * s.recall / pr : 0.0;
    return s;
}

void nnrt_eval_from_confusion(NnrtEval *e, const NnrtConfusion *c)
{
    int64_t diag = 0;
    double p = 0, r = 0, f = 0;
    int present = 0;
    for (int k = 0; k < c->classes; k++) {
        diag += c->m[(int64_t)k * c->classes + k];
        NnrtClassScore s = nnrt_confusion_class(c, k);
        if (s.support == 0 && s.predicted == 0)
            continue;
        present++;
        p += s.precision;
        r += s.recall;
        f += s.f1;
    }
    e->samples = c->total;
    e->accuracy = c->total ? (double)diag / (double)c->total : 0.0;
    e->precision = present ? p / present : 0.0;
    e->recall = present ? r / present : 0.0;
    e->f1 = present ? f / present : 0.0;
}

double nnrt_sq_err_sum(const NnTensor *out, const NnTensor *y, int64_t n, int64_t *count)
{
    int64_t w = y->shape[0] ? y->numel / y->shape[0] : 0;
    double s = 0;
    for (int64_t i = 0; i < n * w; i++) {
        double d = nnrt_tensor_get(out, i) - nnrt_tensor_get(y, i);
        s += d * d;
    }
    *count += n * w;
    return s;
}

static const struct {
    const char *name;
    unsigned bit;
} metric_names[] = {
    {"accuracy", NNRT_METRIC_ACCURACY}, {"acc", NNRT_METRIC_ACCURACY},
    {"precision", NNRT_METRIC_PRECISION}, {"recall", NNRT_METRIC_RECALL},
    {"f1", NNRT_METRIC_F1}, {"mse", NNRT_METRIC_MSE}, {"confusion", NNRT_METRIC_CONFUSION},
};

unsigned nnrt_metric_bit(const char *name)
{
    for (size_t i = 0; i < sizeof metric_names / sizeof metric_names[0]; i++)
        if (strcmp(name, metric_names[i].name) == 0)
            return metric_names[i].bit;
    return 0;
}

bool nnrt_metrics_want_confusion(unsigned metrics)
{
    return metrics == 0 || (metrics & NNRT_METRIC_CONFUSION);
}

bool nnrt_eval_get(const NnrtEval *e, const char *metric, double *v)
{
    if (strcmp(metric, "loss") == 0) {
        *v = e->loss;
        return true;
    }
    switch (nnrt_metric_bit(metric)) {
    case NNRT_METRIC_ACCURACY: *v = e->accuracy; return true;
    case NNRT_METRIC_PRECISION: *v = e->precision; return true;
    case NNRT_METRIC_RECALL: *v = e->recall; return true;
    case NNRT_METRIC_F1: *v = e->f1; return true;
    case NNRT_METRIC_MSE: *v = e->mse; return true;
    default: return false;
    }
}

bool nnrt_metric_higher_is_better(const char *metric)
{
    unsigned b = nnrt_metric_bit(metric);
    return b != 0 && b != NNRT_METRIC_MSE && b != NNRT_METRIC_CONFUSION;
}

// Appends ", \"key\": value" (null when not finite) at buf+*len.
static void json_num(char *buf, size_t cap, int *len, const char *key, double v)
{
    size_t at = (size_t)*len < cap ? (size_t)*len : cap;
    if (isfinite(v))
        *len += snprintf(buf + at, cap - at, ", \"%s\": %.6g", key, v);
    else
        *len += snprintf(buf + at, cap - at, ", \"%s\": null", key);
}

int nnrt_eval_json(const NnrtEval *e, char *buf, size_t cap)
{
    int len = e->epoch > 0 ? snprintf(buf, cap, "{\"epoch\": %d, \"split\": \"%s\"", e->epoch,
                                      e->split ? e->split : "")
                           : snprintf(buf, cap, "{\"split\": \"%s\"", e->split ? e->split : "");
    json_num(buf, cap, &len, "loss", e->loss);
    if (e->fields & NNRT_METRIC_ACCURACY)
        json_num(buf, cap, &len, "accuracy", e->accuracy);
    if (e->fields & NNRT_METRIC_PRECISION)
        json_num(buf, cap, &len, "precision", e->precision);
    if (e->fields & NNRT_METRIC_RECALL)
        json_num(buf, cap, &len, "recall", e->recall);
    if (e->fields & NNRT_METRIC_F1)
        json_num(buf, cap, &len, "f1", e->f1);
    if (e->fields & NNRT_METRIC_MSE)
        json_num(buf, cap, &len, "mse", e->mse);
    for (int i = 0; i < e->nstats && i < NNRT_MAX_STATS; i++)
        json_num(buf, cap, &len, e->stat_names[i], e->stats[i]);
    if (e->has_lr)
        json_num(buf, cap, &len, "lr", e->lr);
    size_t at = (size_t)len < cap ? (size_t)len : cap;
    len += snprintf(buf + at, cap - at, "}");
    return len;
}

void nnrt_eval_print(FILE *f, const NnrtEval *e)
{
    fprintf(f, "%-5s loss %.4f", e->split ? e->split : "", e->loss);
    if (e->fields & NNRT_METRIC_ACCURACY)
        fprintf(f, "  accuracy %.4f", e->accuracy);
    if (e->fields & NNRT_METRIC_PRECISION)
        fprintf(f, "  precision %.4f", e->precision);
    if (e->fields & NNRT_METRIC_RECALL)
        fprintf(f, "  recall %.4f", e->recall);
    if (e->fields & NNRT_METRIC_F1)
        fprintf(f, "  f1 %.4f", e->f1);
    if (e->fields & NNRT_METRIC_MSE)
        fprintf(f, "  mse %.6g", e->mse);
    fprintf(f, "  (%lld samples)\n", (long long)e->samples);
}

void nnrt_confusion_print(FILE *f, const NnrtConfusion *c, char *const *class_names)
{
    char name[32];
    fprintf(f, "%-14s %9s %9s %9s %9s\n", "class", "precision", "recall", "f1", "support");
    for (int k = 0; k < c->classes; k++) {
        NnrtClassScore s = nnrt_confusion_class(c, k);
        if (class_names)
            snprintf(name, sizeof name, "%s", class_names[k]);
        else
            snprintf(name, sizeof name, "%d", k);
        fprintf(f, "%-14s %9.4f %9.4f %9.4f %9lld\n", name, s.precision, s.recall, s.f1,
                (long long)s.support);
    }
    fprintf(f, "confusion matrix (rows = true class, columns = predicted):\n%6s", "");
    for (int j = 0; j < c->classes; j++)
        fprintf(f, " %6d", j);
    fputc('\n', f);
    for (int k = 0; k < c->classes; k++) {
        fprintf(f, "%6d", k);
        for (int j = 0; j < c->classes; j++)
            fprintf(f, " %6lld", (long long)c->m[(int64_t)k * c->classes + j]);
        fputc('\n', f);
    }
}

NnStatus nnrt_jsonl_open(NnrtJsonl *j, const char *path, bool append)
{
    memset(j, 0, sizeof *j);
    snprintf(j->path, sizeof j->path, "%s", path);
    // O_NONBLOCK: a FIFO nobody reads would block the open forever (ENXIO
    // instead). A FIFO with a reader (`--metrics >(jq .)`) or a character
    // device is fine to append to; writes block again once it is open.
    int fd = open(path, O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC | (append ? O_APPEND : O_TRUNC),
                  0666);
    if (fd < 0) {
        if (errno == ENXIO)
            return nnrt_fail(NN_ERR_IO, "%s: cannot open metrics file: it is a FIFO that nothing reads",
                             path);
        return nnrt_fail(NN_ERR_IO, "%s: cannot open metrics file: %s", path, strerror(errno));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    j->f = fdopen(fd, append ? "a" : "w");
    if (!j->f) {
        int e = errno;
        close(fd);
        return nnrt_fail(NN_ERR_IO, "%s: cannot open metrics file: %s", path, strerror(e));
    }
    return NN_OK;
}

NnStatus nnrt_jsonl_write(NnrtJsonl *j, const NnrtEval *e)
{
    char line[1024];
    nnrt_eval_json(e, line, sizeof line);
    if (!j->f || fprintf(j->f, "%s\n", line) < 0 || fflush(j->f) != 0)
        return nnrt_fail(NN_ERR_IO, "%s: cannot write metrics: %s", j->path, strerror(errno));
    return NN_OK;
}

NnStatus nnrt_jsonl_close(NnrtJsonl *j)
{
    NnStatus st = NN_OK;
    if (j->f && fclose(j->f) != 0)
        st = nnrt_fail(NN_ERR_IO, "%s: cannot close metrics file: %s", j->path, strerror(errno));
    j->f = NULL;
    return st;
}
