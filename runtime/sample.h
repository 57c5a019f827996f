// Drawing from trained models, shared by `nnc sample` (compiler/driver_sample*.c)
// and the `sample` command of built programs (runtime/app/sample.c), so both
// print and write the same bytes for the same weights and seed: a generator's
// noise and the picture of what it makes (an image grid, or a scatter plot
// over the real 2-D points with the modes report), and a language model's
// lines drawn byte by byte from softmax(scores / temperature).
#ifndef NNRT_SAMPLE_H
#define NNRT_SAMPLE_H

#include <stdio.h>

#include "data.h"

#define NNRT_SAMPLE_POINTS 2000 // points of a 2-D scatter plot (and of the modes report)
#define NNRT_SAMPLE_IMAGES 64   // an 8 x 8 image grid
#define NNRT_SAMPLE_PLOT 512    // pixels of the scatter plot

// A noise declaration: normal(a = mean, b = std) or uniform(a = lo, b = hi).
typedef struct NnrtNoise {
    int normal; // 1: normal, 0: uniform
    double a, b;
} NnrtNoise;

// Fills p[n] from the noise with rng (the generator's input k draws from a
// generator seeded (seed, k)).
void nnrt_noise_fill(const NnrtNoise *nz, float *p, int64_t n, NnrtDataRng *rng);

// Samples a generator makes for data like `real`: 2000 points when the data
// are 2-D points, else 64 images.
int64_t nnrt_sample_count(const NnrtDataset *real);

// Writes the picture of gen (n samples of feat values each) to path: a
// scatter plot over real's first points and the modes report on stdout when
// the data are 2-D points, an 8 x 8 grid in the data's value range when they
// are images of feat values; else NN_ERR_SHAPE saying what `model` makes.
// Unless quiet, says what it wrote.
NnStatus nnrt_sample_picture(const char *path, const NnrtDataset *real, const float *gen,
                             int64_t n, int64_t feat, const char *model, bool quiet);

// Scores of the vocabulary for one window of seq byte ids: *scores (valid
// until the next call) gets at least vocab values.
typedef NnStatus (*NnrtScoreFn)(void *ctx, const int32_t *window, const float **scores);

// Prints count lines to out, each drawn byte by byte from softmax(scores /
// temp) (temp 0: the likeliest byte) with a generator seeded (seed, 0),
// starting from a window of newlines (id 0 when the vocabulary has none) and
// sliding it; a line longer than 200 bytes is cut. train is the text split
// (vocab, num_classes, x's window length).
NnStatus nnrt_sample_text(const NnrtDataset *train, int64_t count, double temp, uint64_t seed,
                          NnrtScoreFn score, void *ctx, FILE *out);

#endif
