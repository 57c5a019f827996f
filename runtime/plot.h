// Pictures and checks for generators of 2-D points: a scatter plot of
// generated points over the real data (RGB PNG), and the standard
// mode-coverage report of GAN papers. Modes are found in the real data (tight
// clusters, such as a ring of Gaussians); a generated point is high-quality
// when it lies within 3 standard deviations of a mode, and a mode is covered
// when at least 1% of the generated points are high-quality points of it.
#ifndef NNRT_PLOT_H
#define NNRT_PLOT_H

#include "nnrt.h"

#define NNRT_MAX_MODES 64

typedef struct NnrtModes {
    int count;                 // modes found in the real data; 0: no clear clusters
    double x[NNRT_MAX_MODES], y[NNRT_MAX_MODES];
    double sd[NNRT_MAX_MODES]; // per-coordinate standard deviation of the mode's points
    int64_t hits[NNRT_MAX_MODES]; // generated points within 3 sd of the mode
    int64_t scored;            // generated points scored
    int covered;               // modes with hits >= 1% of scored
    double high_quality;       // share of scored points within 3 sd of some mode
} NnrtModes;

// Writes a size x size RGB PNG: the real points (n_real pairs x, y) in blue,
// the generated ones in red on top, inside a frame around the real data's
// range (with a margin); points outside it are left out.
NnStatus nnrt_plot_scatter(const char *path, const float *real, int64_t n_real, const float *gen,
                           int64_t n_gen, int size);

// Finds the modes of n real points: clusters of points closer than 5% of the
// data's extent, each holding at least 1% of the points.
void nnrt_modes_find(NnrtModes *m, const float *real, int64_t n);
// Scores n generated points against the modes found.
void nnrt_modes_score(NnrtModes *m, const float *gen, int64_t n);

#endif
