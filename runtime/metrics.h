// Evaluation metrics for classification (confusion matrix, accuracy, per-class
// and macro precision/recall/F1) and regression (mse), a readable printout,
// and a JSON-lines writer with one object per evaluation. Part of libnnrt.
//
// Degenerate classes: a class never predicted has precision 0, a class with
// no true samples (support 0) has recall 0, and F1 is 0 when precision +
// recall is 0. Macro averages run over the classes that occur in the labels
// or in the predictions (as scikit-learn does); classes absent from both are
// left out. Accuracy of an empty evaluation is 0.
#ifndef NNRT_METRICS_H
#define NNRT_METRICS_H

#include "nnrt.h"
#include "progress.h"

#include <stdio.h>

typedef struct NnrtConfusion {
    int classes;
    int64_t *m;    // classes*classes counts; row = true label, column = prediction
    int64_t total; // samples added
} NnrtConfusion;

NnStatus nnrt_confusion_init(NnrtConfusion *c, int classes);
void nnrt_confusion_fini(NnrtConfusion *c);
void nnrt_confusion_reset(NnrtConfusion *c);
// Adds n (prediction, label) pairs; a value outside 0..classes-1 is a data
// error (NN_ERR_FORMAT) and nothing is added.
NnStatus nnrt_confusion_add(NnrtConfusion *c, const int32_t *pred, const int32_t *label,
                            int64_t n);
// Adds the first n rows of model outputs [n, C] (argmax, first max wins)
// against labels: i32 [n] class indices or one-hot/probability rows [n, C]
// (argmax). Any dtype for the outputs.
NnStatus nnrt_confusion_add_outputs(NnrtConfusion *c, const NnTensor *out, const NnTensor *y,
                                    int64_t n);

// Per-class scores from the matrix (see the rules above).
typedef struct NnrtClassScore {
    double precision, recall, f1;
    int64_t support;   // true samples of the class (row sum)
    int64_t predicted; // samples predicted as the class (column sum)
} NnrtClassScore;

NnrtClassScore nnrt_confusion_class(const NnrtConfusion *c, int k);

// Which metrics an evaluation reports (bit set).
enum {
    NNRT_METRIC_ACCURACY = 1,
    NNRT_METRIC_PRECISION = 2,
    NNRT_METRIC_RECALL = 4,
    NNRT_METRIC_F1 = 8,
    NNRT_METRIC_MSE = 16,
    NNRT_METRIC_CONFUSION = 32, // print the confusion matrix (no value of its own)
    NNRT_METRIC_CLASSIFY = 15, // accuracy, precision, recall, f1
};

// Parses "accuracy"/"acc", "precision", "recall", "f1", "mse", "confusion";
// 0 if unknown.
unsigned nnrt_metric_bit(const char *name);
// Whether a classifier's report includes the confusion matrix: when the
// metrics (NNRT_METRIC_* bits) name it, or when none were chosen.
bool nnrt_metrics_want_confusion(unsigned metrics);

// The result of one evaluation pass; the unit of one JSON line.
typedef struct NnrtEval {
    int epoch;          // 1-based epoch; 0 when not tied to an epoch (final test)
    const char *split;  // "train", "val", "test"
    int64_t samples;
    double loss;        // mean loss over samples; NaN when not computed
    unsigned fields;    // NNRT_METRIC_* reported besides the loss
    double accuracy, precision, recall, f1; // macro averages
    double mse;
    int nstats;         // named values besides the loss (a GAN's d.loss, d.real); train only
    const char *const *stat_names;
    double stats[NNRT_MAX_STATS];
    bool has_lr;        // train only: lr is the learning rate of the epoch's last step
    double lr;
} NnrtEval;

// Fills accuracy and the macro precision/recall/F1 of e from c.
void nnrt_eval_from_confusion(NnrtEval *e, const NnrtConfusion *c);
// Sum of squared differences between the first n rows of out and y (same
// per-row size), and the number of elements it covers (added to *count).
double nnrt_sq_err_sum(const NnTensor *out, const NnTensor *y, int64_t n, int64_t *count);

// Looks up "loss", "accuracy"/"acc", "precision", "recall", "f1" or "mse".
bool nnrt_eval_get(const NnrtEval *e, const char *metric, double *v);
// True for metrics where larger is better (accuracy, precision, recall, f1).
bool nnrt_metric_higher_is_better(const char *metric);

// {"epoch": 3, "split": "val", "loss": 0.31, "accuracy": 0.887, ...} with no
// newline. Non-finite numbers are written as null. Returns the length, as
// snprintf does (the text is cut when it exceeds cap).
int nnrt_eval_json(const NnrtEval *e, char *buf, size_t cap);
// "val   loss 0.3100  accuracy 0.8870  precision 0.8890 ..." and a newline.
void nnrt_eval_print(FILE *f, const NnrtEval *e);
// Per-class table (precision, recall, f1, support) and the confusion matrix,
// rows = true class. class_names may be NULL (indices are printed).
void nnrt_confusion_print(FILE *f, const NnrtConfusion *c, char *const *class_names);

// A JSON-lines metrics file: one nnrt_eval_json object per line, flushed
// after each line so a crashed run keeps what it logged.
typedef struct NnrtJsonl {
    FILE *f;
    char path[512];
} NnrtJsonl;

// append false truncates path; the training loop and the CLI always append.
NnStatus nnrt_jsonl_open(NnrtJsonl *j, const char *path, bool append);
NnStatus nnrt_jsonl_write(NnrtJsonl *j, const NnrtEval *e);
NnStatus nnrt_jsonl_close(NnrtJsonl *j);

#endif
