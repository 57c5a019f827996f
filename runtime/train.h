// The training loop, independent of how a step is computed: the caller
// supplies callbacks (a compiled graph, an interpreter, or plain C in tests)
// and the loop does epochs, seeded shuffling, batching, augmentation,
// evaluation and metrics, early stopping, JSON-lines logging, progress
// display, atomic per-epoch checkpoints and resuming. Batches come from
// (seed, epoch) alone, so a resumed run repeats an uninterrupted one exactly.
#ifndef NNRT_TRAIN_H
#define NNRT_TRAIN_H

#include "checkpoint.h"
#include "data.h"
#include "metrics.h"
#include "progress.h"

typedef struct NnrtTrainCallbacks {
    void *ctx;
    // One optimizer step on the first n rows of x and y (n is below the batch
    // size on the last batch; x->shape[0] == n). *loss: the batch's mean loss.
    NnStatus (*step)(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, double *loss);
    // Forward pass without updating anything: outputs go to out, f32
    // [n, out_features] (its storage holds a full batch). When y is non-NULL,
    // *loss gets the batch's mean loss (leave it NaN if not computed).
    NnStatus (*predict)(void *ctx, const NnTensor *x, const NnTensor *y, int64_t n, NnTensor *out,
                        double *loss);
    // Copies the current weights into out (an initialized, empty table).
    NnStatus (*snapshot)(void *ctx, NnVars *out);
    // Sets the weights (and whatever state the table holds) from in; tensors
    // the caller does not know may be ignored.
    NnStatus (*restore)(void *ctx, const NnVars *in);
    // What a checkpoint holds (weights, optimizer state); NULL uses snapshot.
    NnStatus (*checkpoint_vars)(void *ctx, NnVars *out);
    // Named values step leaves in stats[0..nstats-1] for each batch (a GAN's
    // d.loss, g.loss, d.real, d.fake): progress shows their epoch means
    // instead of the loss, and the train line of the metrics log adds them.
    int nstats; // 0 to NNRT_MAX_STATS
    const char *const *stat_names;
    double *stats;
    // Where step leaves the learning rate it used (a schedule's value at that
    // step), shown in progress and the metrics log; NULL: none.
    const double *lr;
} NnrtTrainCallbacks;

typedef enum NnrtTask { NNRT_TASK_CLASSIFY, NNRT_TASK_REGRESS } NnrtTask;

// Zero-initialized options are sensible: 1 epoch, batch 32, seed 0,
// shuffling on, no augmentation, classification, progress AUTO.
typedef struct NnrtTrainOptions {
    int epochs;               // 0 means 1
    int64_t batch;            // 0 means 32
    uint64_t seed;
    bool no_shuffle;          // keep dataset order every epoch
    NnrtAugment augment;      // geometry from the train set's img_h/img_w
    const NnrtDataset *val;   // evaluated after every epoch; may be NULL
    const NnrtDataset *test;  // evaluated once at the end; may be NULL
    NnrtTask task;
    int num_classes;          // 0: the train set's num_classes
    int64_t out_features;     // predict's output width; 0: classes, or y's width
    unsigned metrics;         // NNRT_METRIC_* bits; 0: accuracy / mse by task
    const char *early_stop;   // "val.accuracy", "val.loss", "train.loss"...; NULL: off
    int patience;             // epochs without improvement before stopping; 0 means 1
    const char *metrics_path; // JSON-lines log; NULL: none
    NnrtProgressMode progress;
    FILE *progress_out;       // NULL: stderr
    FILE *log;                // summaries and the test report; NULL: stdout
    bool quiet;               // print no summaries (progress has its own mode)
    const char *checkpoint;   // saved atomically after every epoch; NULL: none
    const char *resume_from;  // checkpoint to continue from, only read; must exist
    bool resume;              // without resume_from: continue from checkpoint when it exists
    char *const *class_names; // for the confusion report; NULL: the train set's, or indices
} NnrtTrainOptions;

typedef struct NnrtTrainResult {
    int start_epoch;       // 0-based epoch this call started at (> 0 when resumed)
    int epochs_done;       // epochs completed in total, resumed ones included
    int64_t steps;         // optimizer steps in total, resumed ones included
    double train_loss;     // mean loss of the last epoch run
    bool stopped_early;
    bool saved;            // the checkpoint was written at least once by this call
    int best_epoch;        // 1-based epoch of the best early-stopping value; 0: none
    double best_value;
    bool has_val, has_test;
    NnrtEval val, test;    // last validation and the final test evaluation
} NnrtTrainResult;

NnStatus nnrt_train(const NnrtTrainCallbacks *cb, const NnrtDataset *train,
                    const NnrtTrainOptions *opt, NnrtTrainResult *res);

// One evaluation pass over ds in order: loss, and the metrics of the task.
// conf (may be NULL) receives the confusion matrix for classification; it
// must be initialized with the number of classes.
NnStatus nnrt_evaluate(const NnrtTrainCallbacks *cb, const NnrtDataset *ds,
                       const NnrtTrainOptions *opt, const char *split, int epoch, NnrtEval *e,
                       NnrtConfusion *conf);

#endif
