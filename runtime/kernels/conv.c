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

// ---- im2col + matmul ----
//
// For image n and group g, col is the [cg*kh*kw, oh*ow] matrix whose row
// (cc, i, j) holds, for each output position, the input element that filter
// tap (i, j) of channel cc meets there (zero in the padding). Then
//   CONV:        y[n, g]  = w[g] @ col                   [fg, oh*ow]
//   BWD_DATA:    col      = w[g]^T @ dy[n, g], scattered back onto x's shape
//   BWD_FILTER:  dw[g]   += dy[n, g] @ col^T             [fg, cg*kh*kw]
// Scratch: the matmul's packed panel, then col, then (filter gradient) the
// per-image product before it is added.

typedef struct Gemm {
    const NnrtConv2d *a;
    int64_t n, g;
    char *col, *tmp;
    const void *acc; // BWD_FILTER: tmp is added into y[g]
} Gemm;

static bool uses_gemm(const NnrtConv2d *a)
{
    if (a->op != NNRT_CONV && a->op != NNRT_CONV_BWD_DATA && a->op != NNRT_CONV_BWD_FILTER)
        return false;
    int64_t cg = a->c / a->groups, fg = a->f / a->groups;
    // Depthwise stays direct, and so do empty products.
    return (cg > 1 || fg > 1) && cg > 0 && fg > 0 && a->oh * a->ow > 0;
}

static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

// The matmul of op a for one image and group (b, c filled in by the caller).
static NnrtMatmul gemm_shape(const NnrtConv2d *a)
{
    int64_t cg = a->c / a->groups, fg = a->f / a->groups, kk = cg * a->kh * a->kw;
    int64_t s = a->oh * a->ow;
    NnrtMatmul m = {.dt = a->dt};
    if (a->op == NNRT_CONV)
        m.m = fg, m.k = kk, m.n = s;
    else if (a->op == NNRT_CONV_BWD_DATA)
        m.m = kk, m.k = fg, m.n = s, m.ta = true;
    else
        m.m = fg, m.k = s, m.n = kk, m.tb = true;
    return m;
}

size_t nnrt_conv2d_scratch_size(const NnrtConv2d *a)
{
    if (!uses_gemm(a))
        return 0;
    size_t es = nnrt_dtype_size(a->dt);
    int64_t cg = a->c / a->groups, fg = a->f / a->groups, kk = cg * a->kh * a->kw;
    NnrtMatmul m = gemm_shape(a);
    size_t pack = round64(nnrt_matmul_pack_size(a->dt, m.n, m.k));
    size_t col = round64((size_t)(kk * a->oh * a->ow) * es);
    size_t tmp = a->op == NNRT_CONV_BWD_FILTER ? (size_t)(fg * kk) * es : 0;
    return pack + col + tmp;
}

// Rows [lo, hi) of col for image n, group g.
static void im2col(void *arg, int ith, int nth)
{
    const Gemm *t = arg;
    const NnrtConv2d *a = t->a;
    size_t es = nnrt_dtype_size(a->dt);
    int64_t cg = a->c / a->groups, kk = a->kh * a->kw, s = a->oh * a->ow, lo, hi;
    nnrt_split(cg * kk, 1, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t cc = r / kk, i = r % kk / a->kw, j = r % a->kw;
        const char *x = (const char *)a->x + ((t->n * a->c + t->g * cg + cc) * a->h * a->w) * es;
        char *row = t->col + r * s * (int64_t)es;
        int64_t oh0, oh1, ow0, ow1, off = j * a->dw - a->pl;
        valid(a->oh, a->h, a->sh, a->pt, i * a->dh, &oh0, &oh1);
        valid(a->ow, a->w, a->sw, a->pl, j * a->dw, &ow0, &ow1);
        memset(row, 0, (size_t)s * es);
        for (int64_t o = oh0; o < oh1 && ow0 < ow1; o++) {
            int64_t ih = o * a->sh - a->pt + i * a->dh;
            const char *src = x + (ih * a->w + ow0 * a->sw + off) * (int64_t)es;
            char *dst = row + (o * a->ow + ow0) * (int64_t)es;
            if (a->sw == 1)
                memcpy(dst, src, (size_t)(ow1 - ow0) * es);
            else if (es == 8)
                for (int64_t p = 0; p < ow1 - ow0; p++)
                    ((double *)dst)[p] = ((const double *)src)[p * a->sw];
            else
                for (int64_t p = 0; p < ow1 - ow0; p++)
                    ((float *)dst)[p] = ((const float *)src)[p * a->sw];
        }
    }
}

// The adjoint of im2col: channel planes of dx[n, g] from col, by channel.
static void col2im(void *arg, int ith, int nth)
{
    const Gemm *t = arg;
    const NnrtConv2d *a = t->a;
    size_t es = nnrt_dtype_size(a->dt);
    int64_t cg = a->c / a->groups, kk = a->kh * a->kw, s = a->oh * a->ow, lo, hi;
    nnrt_split(cg, 1, ith, nth, &lo, &hi);
    for (int64_t cc = lo; cc < hi; cc++) {
        char *x = (char *)a->y + ((t->n * a->c + t->g * cg + cc) * a->h * a->w) * es;
        memset(x, 0, (size_t)(a->h * a->w) * es);
        for (int64_t q = 0; q < kk; q++) {
            int64_t i = q / a->kw, j = q % a->kw;
            const char *row = t->col + (cc * kk + q) * s * (int64_t)es;
            int64_t oh0, oh1, ow0, ow1, off = j * a->dw - a->pl;
            valid(a->oh, a->h, a->sh, a->pt, i * a->dh, &oh0, &oh1);
            valid(a->ow, a->w, a->sw, a->pl, j * a->dw, &ow0, &ow1);
            for (int64_t o = oh0; o < oh1 && ow0 < ow1; o++) {
                int64_t ih = o * a->sh - a->pt + i * a->dh;
                int64_t xi = ih * a->w + ow0 * a->sw + off, ri = o * a->ow + ow0;
                if (es == 8)
                    scatter_f64((double *)x + xi, a->sw, (const double *)row + ri, 1, ow1 - ow0);
                else
                    scatter_f32((float *)x + xi, a->sw, (const float *)row + ri, 1, ow1 - ow0);
            }
        }
    }
}

// y[g] += tmp for the filter gradient, split by elements.
static void add_tmp(void *arg, int ith, int nth)
{
    const Gemm *t = arg;
    const NnrtConv2d *a = t->a;
    int64_t fg = a->f / a->groups, kk = a->c / a->groups * a->kh * a->kw, lo, hi;
    nnrt_split(fg * kk, 16, ith, nth, &lo, &hi);
    if (a->dt == NN_DT_F64) {
        double *y = (double *)a->y + t->g * fg * kk;
        for (int64_t i = lo; i < hi; i++)
            y[i] += ((const double *)t->tmp)[i];
    } else {
        float *y = (float *)a->y + t->g * fg * kk;
        for (int64_t i = lo; i < hi; i++)
            y[i] += ((const float *)t->tmp)[i];
    }
}

static void run_task(NnrtPool *p, NnrtTask fn, void *arg, int64_t work)
{
    if (want_par(p, work))
        nnrt_pool_run(p, fn, arg);
    else
        fn(arg, 0, 1);
}

static void conv_gemm(NnrtPool *p, const NnrtConv2d *a)
{
    size_t es = nnrt_dtype_size(a->dt);
    int64_t cg = a->c / a->groups, fg = a->f / a->groups, kk = cg * a->kh * a->kw;
    int64_t s = a->oh * a->ow;
    NnrtMatmul m = gemm_shape(a);
    size_t pack = round64(nnrt_matmul_pack_size(a->dt, m.n, m.k));
    Gemm t = {.a = a, .col = (char *)a->scratch + pack};
    t.tmp = t.col + round64((size_t)(kk * s) * es);
    m.pack = pack ? a->scratch : NULL;
    for (t.g = 0; t.g < a->groups; t.g++) {
        const char *wg = (const char *)a->wt + t.g * fg * kk * (int64_t)es;
        char *dwg = (char *)a->y + t.g * fg * kk * (int64_t)es;
        for (t.n = 0; t.n < a->n; t.n++) {
            const char *dy = (const char *)a->dy + ((t.n * a->f + t.g * fg) * s) * (int64_t)es;
            switch (a->op) {
            case NNRT_CONV:
                run_task(p, im2col, &t, kk * s);
                m.a = wg, m.b = t.col;
                m.c = (char *)a->y + ((t.n * a->f + t.g * fg) * s) * (int64_t)es;
                nnrt_matmul_par(p, &m);
                break;
            case NNRT_CONV_BWD_DATA:
                m.a = wg, m.b = dy, m.c = t.col;
                nnrt_matmul_par(p, &m);
                run_task(p, col2im, &t, kk * s);
                break;
            default:
                run_task(p, im2col, &t, kk * s);
                m.a = dy, m.b = t.col, m.c = t.n ? t.tmp : dwg;
                nnrt_matmul_par(p, &m);
                if (t.n)
                    run_task(p, add_tmp, &t, fg * kk);
                break;
            }
        }
        if (a->op == NNRT_CONV_BWD_FILTER && a->n == 0)
            memset(dwg, 0, (size_t)(fg * kk) * es);
    }
}

void nnrt_conv2d_par(NnrtPool *p, const NnrtConv2d *a)
{
    if (a->scratch && uses_gemm(a)) {
        conv_gemm(p, a);
        return;
    }
    // Work is about one multiply-add per output element and kernel tap.
    int64_t taps = (int64_t)a->kh * a->kw, work = a->n * a->f * a->oh * a->ow * taps;
    if (a->op == NNRT_CONV || a->op == NNRT_CONV_BWD_DATA || a->op == NNRT_CONV_BWD_FILTER)
        work *= a->c / a->groups;
    if (want_par(p, work))
        nnrt_pool_run(p, conv_task, (void *)a);
    else
        nnrt_conv2d(a, 0, 1);
}
