// What `nnc build` writes into a standalone program, as plain data: the data
// block replayed as a list of operations (loaders, literals, compiled field
// transforms, splits, class names, normalization), the train block's settings
// and variable initializers, and its step and evaluation descriptors compiled
// for every batch size the program runs (and the model alone, for `sample`). runtime/app/main.c runs it with
// libnnrt alone. The generated file defines `const NnrtApp nnrt_app`.
#ifndef NNRT_APP_H
#define NNRT_APP_H

#include "data.h"
#include "sample.h"
#include "step.h"

typedef enum NnrtDataOpKind {
    NNRT_DATA_IDX,       // split `name` = idx(path, path2)
    NNRT_DATA_CSV,       // split `name` = csv(path, csv options)
    NNRT_DATA_TEXT,      // split `name` = text(path, text options)
    NNRT_DATA_LITERAL,   // field `name` (x or the label) = a literal tensor, on split train
    NNRT_DATA_TRANSFORM, // field `name` = steps[k] run on split k's fields (x, then the label)
    NNRT_DATA_SPLIT,     // split `name` -> parts[i] by fracs[i], shuffled by seed
    NNRT_DATA_CLASSES,   // class names for every split
    NNRT_DATA_NORMALIZE, // x = (x - mean) / std, statistics from the train split
} NnrtDataOpKind;

typedef struct NnrtDataOp {
    int kind;
    const char *name;
    const char *path, *path2; // absolute, as resolved when the program was built
    NnrtCsvOptions csv;
    NnrtTextOptions text;
    // LITERAL
    int dtype, rank;
    int64_t dims[NN_MAX_RANK];
    const void *data;
    // TRANSFORM: one step per split present then, in order (one step, with
    // no inputs, when the statement made the train split); each names the
    // count of samples it was compiled for in its input and output types.
    int nsteps;
    const NnrtStep *const *steps;
    // SPLIT
    int nparts;
    const char *const *parts;
    const double *fracs;
    uint64_t seed;
    // CLASSES
    int nnames;
    const char *const *names;
    bool per_feature; // NORMALIZE
} NnrtDataOp;

typedef struct NnrtAppVar {
    const char *name;
    const char *init; // "glorot_uniform", "zeros", ...
    double args[4];
    int nargs;
    int dtype, rank;
    int64_t dims[NN_MAX_RANK];
    bool model; // weights or layer state (saved in snapshots), not optimizer state
    bool hyper; // a run-time hyperparameter ("hyper/lr"): in no checkpoint
    int total_steps; // > 0: a schedule's total_steps, set to epochs x batches per epoch x this
} NnrtAppVar;

// A step compiled for one batch size (rows of its inputs), or for any (rows 0).
typedef struct NnrtAppStep {
    int64_t rows;
    const NnrtStep *step;
    int part; // which step of a block of steps (0 for a plain train block)
} NnrtAppStep;

// One step of a block of steps (a GAN's `step disc { ... }`).
typedef struct NnrtAppPart {
    const char *name;
    int repeat; // runs per batch, >= 1
} NnrtAppPart;

typedef struct NnrtApp {
    const char *program; // the model's name
    const char *script;  // the .nn file it was built from, for messages
    const char *target;  // --target it was built for
    int ndata;
    const NnrtDataOp *data;
    const char *label;   // the label field's name ("label" or "y")
    int nvars;
    const NnrtAppVar *vars;
    // The train block's settings (after the build's --set).
    uint64_t seed;
    int64_t epochs, batch, limit, eval_limit;
    const char *save;
    const char *stop_metric;
    int patience;
    bool classify;
    unsigned metrics; // NNRT_METRIC_* bits
    NnrtAugment augment;
    int64_t out_features;
    // x and label of one sample as the model reads them.
    int x_dtype, x_rank;
    int64_t x_dims[NN_MAX_RANK];
    int ntrain, neval, nxform;
    const NnrtAppStep *train; // training steps by batch size (and part)
    const NnrtAppStep *eval;  // evaluation (outputs "loss", "output"); inputs x, label
    const NnrtAppStep *xform; // the x transforms of one raw sample, for predict; may be 0
    int x_raw_rank;           // rank of one raw sample of the first split's x (predict input)
    int64_t x_raw_dims[NN_MAX_RANK];
    // A block of steps (nparts > 0): its steps run in order on every batch,
    // and there is no evaluation (neval 0).
    int nparts;
    const NnrtAppPart *parts;
    const unsigned char *weights; // embedded safetensors (nnc build --weights), or NULL
    const unsigned char *weights_end;
    // `PROG sample`, as `nnc sample` draws: the model alone (its inputs only,
    // outputs[0] what it makes), compiled for sample->rows rows (0: any).
    // NNRT_APP_SAMPLE_GEN: a generator, input k drawing from noise[k] with a
    // generator seeded (seed, noise_stream[k]); NNRT_APP_SAMPLE_TEXT: a text
    // model scoring windows of byte ids; NNRT_APP_SAMPLE_NONE: sample_why
    // says why there is nothing to sample.
    int sample_kind;
    const NnrtAppStep *sample;
    const NnrtNoise *noise;
    const int *noise_stream;
    const char *sample_why;
} NnrtApp;

enum { NNRT_APP_SAMPLE_NONE, NNRT_APP_SAMPLE_GEN, NNRT_APP_SAMPLE_TEXT };

extern const NnrtApp nnrt_app;

#endif
