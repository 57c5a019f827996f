// Internal to the nnc driver (main.c, driver_*.c, repl.c): the one place that
// picks a backend and runs graphs. Commands share these options.
#ifndef NN_DRIVER_H
#define NN_DRIVER_H

#include <signal.h>

#include "ast.h"
#include "backend.h"
#include "data.h"
#include "lower.h"
#include "pass.h"
#include "sema.h"

typedef struct NnOptions {
    const char *file;
    const char *backend;     // "jit" | "interp" (NULL: jit when built with LLVM)
    const char *stage;       // nnc ir --stage
    const char *metrics;     // --metrics FILE
    const char *weights;     // eval --weights / train --resume
    const char *output;      // -o
    int64_t count;           // sample --count (0: the default)
    double temperature;      // sample --temperature, >= 0 (0: always the likeliest)
    bool has_temperature;
    const char *judge;       // sample --judge: a classifier's .nn file
    const char *judge_weights; // sample --judge-weights: its checkpoint
    bool resume, quiet, verbose, has_seed;
    uint64_t seed;
    int threads;
    NnSetting sets[32];
    int nsets;
    NnPassOptions passes;
} NnOptions;

#define NN_MAX_SPLITS 8

// The splits a data block produced ("train", "val", "test", ...).
typedef struct NnSplits {
    const char *names[NN_MAX_SPLITS];
    NnrtDataset ds[NN_MAX_SPLITS];
    int count;
    const char *label;       // the label field's name ("label" or "y")
    // Where each split's labels came from, for diagnostics about their values:
    // the file (NULL for labels written or computed in the script) and the
    // statement that made them.
    const char *label_file[NN_MAX_SPLITS];
    NnLoc label_loc[NN_MAX_SPLITS];
    // Shapes only (check, ir): generators and transforms are lowered, never
    // run. Such a field is virtual: its full shape (count first) is in vx/vy
    // (name != NULL) and ds[k].x/.y are NULL. Files are still read, so check
    // reports bad files as train would.
    bool shapes_only;
    NnField vx[NN_MAX_SPLITS], vy[NN_MAX_SPLITS];
} NnSplits;

const NnBackend *nn_driver_backend(const NnOptions *o);
// Runs a graph once on a backend (outputs cloned into owned tensors).
bool nn_driver_eval_graph(NnCtx *c, const NnBackend *be, NnGraph *g, NnTensor *const *inputs,
                          NnTensor **outs, NnLoc loc);
bool nn_driver_load_data(NnCtx *c, const NnProgram *p, const NnAst *data, const NnBackend *be,
                         uint64_t seed, bool shapes_only, NnSplits *out);
// The full shape (count first) and dtype of split k's x (which = 0) or label
// (1), real or virtual; false when the split lacks that field.
bool nn_splits_field(const NnSplits *s, int k, int which, NnField *f);
void nn_splits_fini(NnSplits *s);
NnrtDataset *nn_splits_get(NnSplits *s, const char *name);

// Loads the first train block's data and lowers it (spec graphs are the
// caller's to free, also on failure; splits likewise). shapes_only: see NnSplits.
bool nn_driver_setup(NnCtx *c, const NnProgram *p, NnOptions *o, bool shapes_only,
                     NnTrainSpec *spec, NnSplits *splits);

// Reads a train block's `augment = [...]` list.
bool nn_driver_augment_opts(NnCtx *c, const NnAst *list, NnrtAugment *a);

bool nn_driver_setup_block(NnCtx *c, const NnProgram *p, const NnAst *train, NnOptions *o,
                           bool shapes_only, NnTrainSpec *spec, NnSplits *splits);
// Initializes the variables of vs that vars lacks or holds with another type.
bool nn_driver_init_vars(NnCtx *c, const NnParamInit *vs, int n, uint64_t seed, NnVars *vars);

// A train block lowered against its data and prepared on a backend, kept by a
// session so that training again compiles nothing (driver_train.c).
typedef struct NnTrainer NnTrainer;
// Trains (or, eval_only, evaluates) `train` with the weights in vars, which
// it updates in place. cache: NULL to prepare afresh and free after, else a
// trainer kept from an earlier run of the same block (dropped and remade when
// block, mode or backend differ; left NULL when preparing fails). Returns an
// exit status (0 also after Ctrl-C stopped training: see nn_interrupted).
int nn_train_run(NnCtx *c, const NnProgram *p, const NnAst *train, NnOptions *o, bool eval_only,
                 NnVars *vars, NnTrainer **cache);
void nn_trainer_free(NnTrainer *t);
// Settings that steer only the training loop (epochs, batch, save,
// patience): a kept trainer takes new values without compiling again.
bool nn_train_run_setting(const char *key);
// Optimizer arguments given as settings (lr, beta1, ...): a kept trainer sets
// them as run-time hyperparameters of its step, compiling nothing.
bool nn_train_hyper_setting(const char *key);
const NnTrainSpec *nn_trainer_spec(const NnTrainer *t);
// Set by a SIGINT handler (the REPL): training stops before its next batch.
extern volatile sig_atomic_t nn_interrupted;
// Step and eval graph sets prepared so far in this process (tests count them).
extern int nn_compiles;

int nn_cmd_train(NnCtx *c, const NnProgram *p, NnOptions *o, bool eval_only);
// `nnc repl [FILE]` (repl.c).
int nn_cmd_repl(NnOptions *o);
int nn_cmd_ir(NnCtx *c, const NnProgram *p, NnAst *ast, NnOptions *o);
int nn_cmd_augment(NnCtx *c, const NnProgram *p, NnOptions *o);
// `nnc sample` for language models (driver_sample_text.c): true when the
// first train block's data come from text(...).
bool nn_sample_wants_text(const NnProgram *p);
int nn_cmd_sample_text(NnCtx *c, const NnProgram *p, NnOptions *o);
// `nnc sample`: pictures of what a trained generator makes (driver_sample.c).
int nn_cmd_sample(NnCtx *c, const NnProgram *p, NnOptions *o);

#endif
