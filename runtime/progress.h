// Training progress display. On a terminal: a live bar per epoch, redrawn in
// place with \r at most ~10 times a second:
//   epoch 3/10 ━━━━━━━━━━━━━━━━──── 41472/54000  loss 0.412  61.2k samples/s  ETA 0:03
// Fast epochs keep at most one bar a second; the others are overwritten.
// Not on a terminal: one plain line per epoch when it ends. Quiet: nothing.
#ifndef NNRT_PROGRESS_H
#define NNRT_PROGRESS_H

#include "nnrt.h"

#include <stdio.h>

// Named per-batch values a step reports besides its loss (a GAN's d.loss,
// g.loss, d.real, d.fake): shown in progress lines and written to metrics.
#define NNRT_MAX_STATS 8

typedef enum NnrtProgressMode {
    NNRT_PROGRESS_AUTO,  // BAR when the stream is a terminal, else LINES
    NNRT_PROGRESS_BAR,
    NNRT_PROGRESS_LINES,
    NNRT_PROGRESS_QUIET,
} NnrtProgressMode;

typedef struct NnrtProgress {
    NnrtProgressMode mode; // resolved: never AUTO after nnrt_progress_init
    FILE *out;
    int epoch, epochs;     // 1-based epoch of the bar being drawn
    int64_t total, done;   // samples this epoch
    double loss_sum;       // sum of per-batch loss * batch size
    int64_t loss_n;
    int nstats;                       // 0: the line shows the loss; else these values
    const char *const *stat_names;
    double stat_sum[NNRT_MAX_STATS];  // sum of per-batch value * batch size
    bool has_lr;           // the step reports its learning rate: lines show lr
    double lr;             // the learning rate of the latest step
    double t0, last_draw;  // seconds (monotonic clock)
    double last_line;      // when the last finished-epoch line was kept (0: never)
    bool open;             // a bar is on screen without its newline
    int width;             // bar cells
} NnrtProgress;

double nnrt_now(void); // monotonic seconds

// out NULL means stderr.
void nnrt_progress_init(NnrtProgress *p, NnrtProgressMode mode, FILE *out);
void nnrt_progress_begin(NnrtProgress *p, int epoch, int epochs, int64_t total);
// Records that `n` more samples were processed with mean batch loss `loss`.
void nnrt_progress_step(NnrtProgress *p, int64_t n, double loss);
// Finishes the epoch's line; extra (may be NULL) is appended, e.g. "val.acc 0.842".
// A bar may stay open (see `open`) for the next epoch's bar to overwrite.
void nnrt_progress_end(NnrtProgress *p, const char *extra);
// Ends an open bar with its newline; call before anything else is printed.
void nnrt_progress_finish(NnrtProgress *p);
double nnrt_progress_mean_loss(const NnrtProgress *p);
// Adds a batch of n samples' named values (p->nstats of them); call before
// nnrt_progress_step for the same batch. Means: sum / loss_n.
void nnrt_progress_stats(NnrtProgress *p, int64_t n, const double *v);
// Formats the bar line for the current state into buf (no \r or newline).
void nnrt_progress_format(const NnrtProgress *p, double now, char *buf, size_t cap);

#endif
