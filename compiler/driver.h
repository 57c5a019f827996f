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
#include "sample.h"
#include "sema.h"

typedef struct NnOptions {
    const char *file;
    const char *backend;     // "jit" | "interp" (NULL: jit when built with LLVM)
    const char *stage;       // nnc ir --stage
    const char *metrics;     // --metrics FILE
    const char *weights;     // eval --weights / train --resume
    const char *output;      // -o
    const char *input;       // predict INPUT ("-": raw f32 on standard input)
    const char *target;      // build --target
    bool lib;                // build --lib: a static library and its header
    bool stats;              // ir --stats: node count and FLOPs instead of the graph
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
    // The statement that made each split's labels, for diagnostics about their
    // values; the file they came from (none for labels written or computed in
    // the script) is the dataset's own label origin, ds[k].y_file.
    NnLoc label_loc[NN_MAX_SPLITS];
    // Shapes only (check, ir): generators and transforms are lowered, never
    // run. Such a field is virtual: its full shape (count first) is in vx/vy
    // (name != NULL) and ds[k].x/.y are NULL. Files are still read, so check
    // reports bad files as train would.
    bool shapes_only;
    NnField vx[NN_MAX_SPLITS], vy[NN_MAX_SPLITS];
    // nnc predict: samples read from its INPUT (x alone), set by the caller
    // before loading. They become split "predict" where the data block's
    // first file loader makes its split, after a check against that loader's
    // sample shape, so every later x statement transforms them as it
    // transforms the data. predict_flat: raw f32 values with no sample shape,
    // taken at the end as model inputs (as are samples for data with no file
    // loader), cut into samples of the model's input size. With shapes_only
    // the other splits stay virtual while these are transformed for real.
    NnTensor *predict_x;      // owned until taken in
    const char *predict_file; // its name in messages
    const char *predict_header; // a CSV input's header line, or NULL
    int predict_text_col;       // the CSV column with cells that are not numbers; -1: none
    const char *predict_text;   // the error for its first such cell
    bool predict_flat;
} NnSplits;

// Where this nnc finds its files (driver_paths.c): beside the executable
// when installed, else in the source and build trees it was built from.
typedef struct NnPaths {
    bool installed;         // running from an installation prefix
    const char *stdlib;     // directory of the stdlib .nn files (`import std`)
    const char *libdir;     // directory holding libnnrt.a
    const char *includedir; // directory holding the runtime's headers
} NnPaths;
void nn_driver_paths(NnCtx *c, NnPaths *out);

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

// What `nnc build` learns while a data block runs, to replay it in a built
// program: each file loaded into split `split` (kind "idx", "csv" or "text";
// path2 is idx's labels file; the options of csv or text), and each field
// transform's graph g for split k (-1: the statement made the train split),
// just before it runs (or, with shapes_only, instead of running).
typedef struct NnDataHook {
    void *ctx;
    void (*load)(void *ctx, const char *split, const char *kind, const char *path,
                 const char *path2, const NnrtCsvOptions *csv, const NnrtTextOptions *text);
    void (*transform)(void *ctx, const NnAst *st, int k, const NnGraph *g);
    // IDX image files are read for their headers only (count and sample
    // shape), and their split turns virtual: nnc build, whose program or
    // library reads the data itself. load and transform may be NULL.
    bool headers_only;
} NnDataHook;
// Sets the observer of nn_driver_load_data (NULL: none).
void nn_driver_data_hook(const NnDataHook *h);

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
// `nnc build`: a standalone program (driver_build.c).
int nn_cmd_build(NnCtx *c, const NnProgram *p, NnOptions *o);
// "what: K nodes, X MFLOP per step at batch B (Y MFLOP per sample: ...)" with
// every symbolic dim of g bound to batch (driver_ir.c; ir/flops.h counts).
void nn_driver_print_flops(FILE *out, const char *what, const NnGraph *g, int64_t batch);
int nn_cmd_ir(NnCtx *c, const NnProgram *p, NnAst *ast, NnOptions *o);
#ifdef NN_WITH_LLVM
// A fused step graph as LLVM IR (asm_ false) or assembly, its symbolic dims
// bound to symv (backend/llvm; for `nnc ir` and the REPL's :ir).
bool nn_llvm_dump(const NnGraph *g, const int64_t *symv, bool asm_, FILE *out);
#endif
int nn_cmd_augment(NnCtx *c, const NnProgram *p, NnOptions *o);
// `nnc sample` for language models (driver_sample_text.c): true when the
// first train block's data come from text(...).
bool nn_sample_wants_text(const NnProgram *p);
int nn_cmd_sample_text(NnCtx *c, const NnProgram *p, NnOptions *o);
// `nnc sample`: pictures of what a trained generator makes (driver_sample.c).
int nn_cmd_sample(NnCtx *c, const NnProgram *p, NnOptions *o);
// A train block's noise declaration as data, and the one that feeds
// generator input f (the i-th): the one of the same name, else the i-th.
NnrtNoise nn_sample_noise(const NnAst *nz);
const NnAst *nn_sample_noise_for(const NnTrainSpec *spec, const NnAst *f, int i);
// `nnc predict`: a trained model's outputs on new samples (driver_predict.c).
int nn_cmd_predict(NnCtx *c, const NnProgram *p, NnOptions *o);
// `nnc build --lib`: libNAME.a and NAME.h (driver_lib.c).
int nn_cmd_build_lib(NnCtx *c, const NnProgram *p, NnOptions *o);

#endif
