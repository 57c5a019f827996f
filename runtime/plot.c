// Scatter plots and mode coverage for 2-D generators (see plot.h). The plot is
// rasterized here (filled squares for points, a one-pixel frame) and written
// through the PNG writer of image export, so nothing beyond zlib is needed.
#include "plot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

static void bounds(const float *p, int64_t n, double *lo, double *hi)
{
    lo[0] = lo[1] = INFINITY;
    hi[0] = hi[1] = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++)
            if (isfinite(p[2 * i + k])) {
                lo[k] = fmin(lo[k], p[2 * i + k]);
                hi[k] = fmax(hi[k], p[2 * i + k]);
            }
    for (int k = 0; k < 2; k++)
        if (!(lo[k] < hi[k])) { // no finite points, or all equal
            double c = isfinite(lo[k]) ? lo[k] : 0;
            lo[k] = c - 1;
            hi[k] = c + 1;
        }
}

static void dot(unsigned char *px, int size, int cx, int cy, int r, const unsigned char *rgb)
{
    for (int y = cy - r; y <= cy + r; y++)
        for (int x = cx - r; x <= cx + r; x++)
            if (x >= 0 && y >= 0 && x < size && y < size)
                memcpy(px + 3 * ((size_t)y * (size_t)size + (size_t)x), rgb, 3);
}

NnStatus nnrt_plot_scatter(const char *path, const float *real, int64_t n_real, const float *gen,
                           int64_t n_gen, int size)
{
    if (size < 32 || size > 8192)
        return nnrt_fail(NN_ERR_RUNTIME, "plot size %d is outside 32..8192", size);
    unsigned char *px = malloc((size_t)size * (size_t)size * 3);
    if (!px)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    memset(px, 255, (size_t)size * (size_t)size * 3);
    double lo[2], hi[2];
    bounds(real, n_real, lo, hi);
    // A square view around the data, 15% larger, so shapes are not distorted.
    double cx = (lo[0] + hi[0]) / 2, cy = (lo[1] + hi[1]) / 2;
    double half = 0.575 * fmax(hi[0] - lo[0], hi[1] - lo[1]);
    int m = size / 32; // frame margin in pixels
    double scale = (size - 2 * m - 1) / (2 * half);
    static const unsigned char frame[3] = {64, 64, 64}, blue[3] = {120, 160, 230},
                               red[3] = {220, 40, 30};
    for (int i = m; i < size - m; i++) {
        dot(px, size, i, m, 0, frame);
        dot(px, size, i, size - m - 1, 0, frame);
        dot(px, size, m, i, 0, frame);
        dot(px, size, size - m - 1, i, 0, frame);
    }
    int r = size >= 400 ? 1 : 0;
    for (int pass = 0; pass < 2; pass++) {
        const float *p = pass ? gen : real;
        int64_t n = pass ? n_gen : n_real;
        for (int64_t i = 0; i < n; i++) {
            double x = (p[2 * i] - (cx - half)) * scale + m;
            double y = (cy + half - p[2 * i + 1]) * scale + m; // y grows upwards
            if (!(x >= m + r + 1 && y >= m + r + 1 && x < size - m - r - 1 &&
                  y < size - m - r - 1))
                continue;
            dot(px, size, (int)x, (int)y, r, pass ? red : blue);
        }
    }
    NnStatus st = nnrt_image_write_rgb_png(path, px, size, size);
    free(px);
    return st;
}

void nnrt_modes_find(NnrtModes *m, const float *real, int64_t n)
{
    memset(m, 0, sizeof *m);
    double lo[2], hi[2];
    bounds(real, n, lo, hi);
    double d = 0.05 * hypot(hi[0] - lo[0], hi[1] - lo[1]);
    // Leader clustering: a point joins the first cluster whose first point is
    // within d, else starts one. Too many clusters means no clear modes.
    enum { MAXC = 4 * NNRT_MAX_MODES };
    double lx[MAXC], ly[MAXC], sx[MAXC] = {0}, sy[MAXC] = {0}, ss[MAXC] = {0};
    int64_t cnt[MAXC] = {0};
    int nc = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = real[2 * i], y = real[2 * i + 1];
        if (!isfinite(x) || !isfinite(y))
            continue;
        int k = 0;
        while (k < nc && hypot(x - lx[k], y - ly[k]) > d)
            k++;
        if (k == nc) {
            if (nc == MAXC)
                return;
            lx[k] = x;
            ly[k] = y;
            nc++;
        }
        cnt[k]++;
        sx[k] += x;
        sy[k] += y;
    }
    // Centres are the means; spreads come from a second pass.
    for (int k = 0; k < nc; k++) {
        sx[k] /= (double)cnt[k];
        sy[k] /= (double)cnt[k];
    }
    for (int64_t i = 0; i < n; i++) {
        double x = real[2 * i], y = real[2 * i + 1];
        int k = 0;
        while (k < nc && hypot(x - lx[k], y - ly[k]) > d)
            k++;
        if (k < nc)
            ss[k] += (x - sx[k]) * (x - sx[k]) + (y - sy[k]) * (y - sy[k]);
    }
    for (int k = 0; k < nc; k++) {
        if ((double)cnt[k] < 0.01 * (double)n)
            continue;
        if (m->count == NNRT_MAX_MODES) {
            m->count = 0;
            return;
        }
        m->x[m->count] = sx[k];
        m->y[m->count] = sy[k];
        m->sd[m->count++] = sqrt(ss[k] / (2.0 * (double)cnt[k]));
    }
}

void nnrt_modes_score(NnrtModes *m, const float *gen, int64_t n)
{
    memset(m->hits, 0, sizeof m->hits);
    m->scored = n;
    int64_t good = 0;
    for (int64_t i = 0; i < n; i++) {
        int best = -1;
        double bd = INFINITY;
        for (int k = 0; k < m->count; k++) {
            double dist = hypot(gen[2 * i] - m->x[k], gen[2 * i + 1] - m->y[k]);
            if (dist <= 3 * m->sd[k] && dist < bd) {
                bd = dist;
                best = k;
            }
        }
        if (best >= 0) {
            m->hits[best]++;
            good++;
        }
    }
    m->covered = 0;
    for (int k = 0; k < m->count; k++)
        m->covered += (double)m->hits[k] >= 0.01 * (double)n && m->hits[k] > 0;
    m->high_quality = n ? (double)good / (double)n : 0;
}
