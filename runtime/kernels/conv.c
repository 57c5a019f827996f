// Direct 2-D convolution and pooling, NCHW, f32/f64 (see NnrtConv2d in
// kernels.h). Each thread owns whole output planes (or, for the filter
// gradient, whole filter slices), so no two threads write the same element and
// nothing is allocated. Inner loops run along a row over the output positions
// whose input column lies inside the image, so padding costs no per-element
// test; those rows are typed helpers, the only place the dtype matters.
#include <string.h>

#include "kernels.h"
#include "kiter.h"

// y[j] += v * x[j * sx], j < n.
#define AXPY(sfx, T)                                                                               \
    static void axpy_##sfx(T *y, const T *x, int64_t sx, T v, int64_t n)                           \
    {                                                                                              \
        if (sx == 1)                                                                               \
            for (int64_t j = 0; j < n; j++)                                                        \
                y[j] += v * x[j];                                                                  \
        else                                                                                       \
            for (int64_t j = 0; j < n; j++)                                                        \
                y[j] += v * x[j * sx];                                                             \
    }                                                                                              \
    static void scatter_##sfx(T *y, int64_t sy, const T *x, T v, int64_t n)                        \
    {                                                                                              \
        for (int64_t j = 0; j < n; j++)                                                            \
            y[j * sy] += v * x[j];                                                                 \
    }                                                                                              \
    static double dot_##sfx(const T *a, const T *b, int64_t sb, int64_t n)                         \
    {                                                                                              \
        T acc = 0;                                                                                 \
        for (int64_t j = 0; j < n; j++)                                                            \
            acc += a[j] * b[j * sb];                                                               \
        return (double)acc;                                                                        \
    }
AXPY(f32, float)
AXPY(f64, double)
#undef AXPY

static inline double load(NnDType dt, const void *p, int64_t i)
{
    return dt == NN_DT_F64 ? ((const double *)p)[i] : ((const float *)p)[i];
}

static inline void store(NnDType dt, void *p, int64_t i, double v)
{
    if (dt == NN_DT_F64)
        ((double *)p)[i] = v;
    else
        ((float *)p)[i] = (float)v;
}

static inline void add_at(NnDType dt, void *p, int64_t i, double v)
{
    if (dt == NN_DT_F64)
        ((double *)p)[i] += v;
    else
        ((float *)p)[i] += (float)v;
}

static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The output positions o in [0, on) whose input position o*s - p + k*d lies in
// [0, in): [*lo, *hi), possibly empty.
static void valid(int64_t on, int64_t in, int s, int p, int64_t kd, int64_t *lo, int64_t *hi)
{
    int64_t off = kd - p; // input position of output 0
    int64_t l = off >= 0 ? 0 : floor_div(-off + s - 1, s);
    int64_t h = floor_div(in - 1 - off, s) + 1;
    *lo = l;
    *hi = h < on ? h : on;
    if (*hi < *lo)
        *hi = *lo;
}

// One output plane y[n, f] of the convolution.
static void conv_plane(const NnrtConv2d *a, int64_t n, int64_t f, char *y)
{
    size_t es = nnrt_dtype_size(a->dt);
    int64_t cg = a->c / a->groups, fg = a->f / a->groups, c0 = f / fg * cg;
    memset(y, 0, (size_t)(a->oh * a->ow) * es);
    for (int64_t cc = 0; cc < cg; cc++) {
        const char *xp = (const char *)a->x + ((n * a->c + c0 + cc) * a->h * a->w) * es;
        const char *wp = (const char *)a->wt + ((f * cg + cc) * a->kh * a->kw) * es;
        for (int i = 0; i < a->kh; i++) {
            int64_t oh0, oh1;
            valid(a->oh, a->h, a->sh, a->pt, (int64_t)i * a->dh, &oh0, &oh1);
            for (int j = 0; j < a->kw; j++) {
                int64_t ow0, ow1, off = (int64_t)j * a->dw - a->pl;
                valid(a->ow, a->w, a->sw, a->pl, (int64_t)j * a->dw, &ow0, &ow1);
                double v = load(a->dt, wp, i * a->kw + j);
                if (ow0 >= ow1 || v == 0)
                    continue;
                for (int64_t o = oh0; o < oh1; o++) {
                    int64_t ih = o * a->sh - a->pt + (int64_t)i * a->dh;
                    int64_t yi = o * a->ow + ow0, xi = ih * a->w + ow0 * a->sw + off;
                    if (a->dt == NN_DT_F64)
                        axpy_f64((double *)y + yi, (const double *)xp + xi, a->sw, v, ow1 - ow0);
                    else
                        axpy_f32((float *)y + yi, (const float *)xp + xi, a->sw, (float)v,
                                 ow1 - ow0);
                }
            }
        }
    }
}

// One input-gradient plane y[n, c]: every filter of c's group scatters dy back.
static void bwd_data_plane(const NnrtConv2d *a, int64_t n, int64_t c, char *y)
{
    size_t es = nnrt_dtype_size(a->dt);
    int64_t cg = a->c / a->groups, fg = a->f / a->groups, f0 = c / cg * fg, cc = c % cg;
    memset(y, 0, (size_t)(a->h * a->w) * es);
    for (int64_t f = f0; f < f0 + fg; f++) {
        const char *dp = (const char *)a->dy + ((n * a->f + f) * a->oh * a->ow) * es;
        const char *wp = (const char *)a->wt + ((f * cg + cc) * a->kh * a->kw) * es;
        for (int i = 0; i < a->kh; i++) {
            int64_t oh0, oh1;
            valid(a->oh, a->h, a->sh, a->pt, (int64_t)i * a->dh, &oh0, &oh1);
            for (int j = 0; j < a->kw; j++) {
                int64_t ow0, ow1, off = (int64_t)j * a->dw - a->pl;
                valid(a->ow, a->w, a->sw, a->pl, (int64_t)j * a->dw, &ow0, &ow1);
                double v = load(a->dt, wp, i * a->kw + j);
                if (ow0 >= ow1 || v == 0)
                    continue;
                for (int64_t o = oh0; o < oh1; o++) {
                    int64_t ih = o * a->sh - a->pt + (int64_t)i * a->dh;
                    int64_t di = o * a->ow + ow0, yi = ih * a->w + ow0 * a->sw + off;
                    if (a->dt == NN_DT_F64)
                        scatter_f64((double *)y + yi, a->sw, (const double *)dp + di, v,
                                    ow1 - ow0);
                    else
                        scatter_f32((float *)y + yi, a->sw, (const float *)dp + di, (float)v,
                                    ow1 - ow0);
                }
            }
        }
    }
}

// The filter-gradient slice y[f, cc] (kh*kw values), summed over the batch.
static void bwd_filter_slice(const NnrtConv2d *a, int64_t f, int64_t cc, char *y)
{
    int64_t cg = a->c / a->groups, fg = a->f / a->groups, c = f / fg * cg + cc;
    size_t es = nnrt_dtype_size(a->dt);
    for (int i = 0; i < a->kh; i++) {
        int64_t oh0, oh1;
        valid(a->oh, a->h, a->sh, a->pt, (int64_t)i * a->dh, &oh0, &oh1);
        for (int j = 0; j < a->kw; j++) {
            int64_t ow0, ow1, off = (int64_t)j * a->dw - a->pl;
            valid(a->ow, a->w, a->sw, a->pl, (int64_t)j * a->dw, &ow0, &ow1);
            double acc = 0;
            for (int64_t n = 0; n < a->n && ow0 < ow1; n++) {
                const char *dp = (const char *)a->dy + ((n * a->f + f) * a->oh * a->ow) * es;
                const char *xp = (const char *)a->x + ((n * a->c + c) * a->h * a->w) * es;
                for (int64_t o = oh0; o < oh1; o++) {
                    int64_t ih = o * a->sh - a->pt + (int64_t)i * a->dh;
                    int64_t di = o * a->ow + ow0, xi = ih * a->w + ow0 * a->sw + off;
                    acc += a->dt == NN_DT_F64
                               ? dot_f64((const double *)dp + di, (const double *)xp + xi, a->sw,
                                         ow1 - ow0)
                               : dot_f32((const float *)dp + di, (const float *)xp + xi, a->sw,
                                         ow1 - ow0);
                }
            }
            store(a->dt, y, i * a->kw + j, acc);
        }
    }
}

// One pooled plane y[n, c] (MAXPOOL, AVGPOOL).
static void pool_plane(const NnrtConv2d *a, const char *x, char *y)
{
    for (int64_t o = 0; o < a->oh; o++) {
        for (int64_t p = 0; p < a->ow; p++) {
            double best = 0, sum = 0;
            bool any = false;
            for (int i = 0; i < a->kh; i++) {
                int64_t ih = o * a->sh - a->pt + (int64_t)i * a->dh;
                if (ih < 0 || ih >= a->h)
                    continue;
                for (int j = 0; j < a->kw; j++) {
                    int64_t iw = p * a->sw - a->pl + (int64_t)j * a->dw;
                    if (iw < 0 || iw >= a->w)
                        continue;
                    double v = load(a->dt, x, ih * a->w + iw);
                    sum += v;
                    // NaN propagates, as in reduce_max.
                    if (!any || v > best || v != v)
                        best = best != best ? best : v;
                    any = true;
                }
            }
            double r = a->op == NNRT_MAXPOOL ? (any ? best : 0) : sum / (a->kh * a->kw);
            store(a->dt, y, o * a->ow + p, r);
        }
    }
}

// One input-gradient plane of a pooling op: dx[n, c] from dy[n, c].
static void pool_bwd_plane(const NnrtConv2d *a, const char *x, const char *dy, char *y)
{
    memset(y, 0, (size_t)(a->h * a->w) * nnrt_dtype_size(a->dt));
    double inv = 1.0 / (a->kh * a->kw);
    for (int64_t o = 0; o < a->oh; o++) {
        for (int64_t p = 0; p < a->ow; p++) {
            double g = load(a->dt, dy, o * a->ow + p), best = 0;
            int64_t at = -1;
            for (int i = 0; i < a->kh; i++) {
                int64_t ih = o * a->sh - a->pt + (int64_t)i * a->dh;
                if (ih < 0 || ih >= a->h)
                    continue;
                for (int j = 0; j < a->kw; j++) {
                    int64_t iw = p * a->sw - a->pl + (int64_t)j * a->dw;
                    if (iw < 0 || iw >= a->w)
                        continue;
                    int64_t k = ih * a->w + iw;
                    if (a->op == NNRT_AVGPOOL_BWD) {
                        add_at(a->dt, y, k, g * inv);
                        continue;
                    }
                    double v = load(a->dt, x, k);
                    if (at < 0 || (v > best && best == best) || (v != v && best == best)) {
                        best = v;
                        at = k;
                    }
                }
            }
            if (a->op == NNRT_MAXPOOL_BWD && at >= 0)
                add_at(a->dt, y, at, g);
        }
    }
}

void nnrt_conv2d(const NnrtConv2d *a, int ith, int nth)
{
    size_t es = nnrt_dtype_size(a->dt);
    int64_t lo, hi, in_plane = a->h * a->w, out_plane = a->oh * a->ow;
    switch (a->op) {
    case NNRT_CONV:
        nnrt_split(a->n * a->f, 1, ith, nth, &lo, &hi);
        for (int64_t t = lo; t < hi; t++)
            conv_plane(a, t / a->f, t % a->f, (char *)a->y + t * out_plane * (int64_t)es);
        break;
    case NNRT_CONV_BWD_DATA:
        nnrt_split(a->n * a->c, 1, ith, nth, &lo, &hi);
        for (int64_t t = lo; t < hi; t++)
            bwd_data_plane(a, t / a->c, t % a->c, (char *)a->y + t * in_plane * (int64_t)es);
        break;
    case NNRT_CONV_BWD_FILTER: {
        int64_t cg = a->c / a->groups, k = a->kh * a->kw;
        nnrt_split(a->f * cg, 1, ith, nth, &lo, &hi);
        for (int64_t t = lo; t < hi; t++)
            bwd_filter_slice(a, t / cg, t % cg, (char *)a->y + t * k * (int64_t)es);
        break;
    }
    case NNRT_MAXPOOL:
    case NNRT_AVGPOOL:
        nnrt_split(a->n * a->c, 1, ith, nth, &lo, &hi);
        for (int64_t t = lo; t < hi; t++)
            pool_plane(a, (const char *)a->x + t * in_plane * (int64_t)es,
                       (char *)a->y + t * out_plane * (int64_t)es);
        break;
    case NNRT_MAXPOOL_BWD:
    case NNRT_AVGPOOL_BWD:
        nnrt_split(a->n * a->c, 1, ith, nth, &lo, &hi);
        for (int64_t t = lo; t < hi; t++)
            pool_bwd_plane(a, a->x ? (const char *)a->x + t * in_plane * (int64_t)es : NULL,
                           (const char *)a->dy + t * out_plane * (int64_t)es,
                           (char *)a->y + t * in_plane * (int64_t)es);
        break;
    }
}

static void conv_task(void *a, int ith, int nth) { nnrt_conv2d(a, ith, nth); }

void nnrt_conv2d_par(NnrtPool *p, const NnrtConv2d *a)
{
    // Work is about one multiply-add per output element and kernel tap.
    int64_t taps = (int64_t)a->kh * a->kw, work = a->n * a->f * a->oh * a->ow * taps;
    if (a->op == NNRT_CONV || a->op == NNRT_CONV_BWD_DATA || a->op == NNRT_CONV_BWD_FILTER)
        work *= a->c / a->groups;
    if (want_par(p, work))
        nnrt_pool_run(p, conv_task, (void *)a);
    else
        nnrt_conv2d(a, 0, 1);
}
