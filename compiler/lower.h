// Lowering: instantiates models, layers, losses and optimizers from the AST
// into IR graphs, checking shapes at each expression (errors point at the .nn
// source). A train block becomes ONE step graph (forward, loss, the gradient
// derived by ir/autodiff.c, and the optimizer update) plus an eval graph.
#ifndef NN_LOWER_H
#define NN_LOWER_H

#include "graph.h"
#include "sema.h"

// How a parameter gets its first value (runtime/init.h does the drawing).
typedef struct NnParamInit {
    const char *name;  // "mlp.dense1.w"
    const char *init;  // "glorot_uniform", "zeros", ...
    double args[4];
    int nargs;
    NnDType dtype;
    NnShape shape;     // concrete (params have no symbolic dims)
    bool trainable;    // false for optimizer state and counters
    bool model_state;  // layer state (batch-norm statistics): not trained, but
                       // part of the model like its weights (early-stopping snapshots)
    bool hyper;        // a run-time hyperparameter ("hyper/lr"): a scalar the step reads
                       // and never updates, set by the caller; not in checkpoints
    NnLoc loc;
} NnParamInit;

typedef struct NnSetting {
    const char *key, *value; // from --set key=value, or `with key = value` at the REPL
    bool used;
    NnLoc loc;               // the REPL's `key = value`; zero for --set
} NnSetting;

// A setting as its diagnostics name it ("--set k=v", or "k = v" for the
// REPL's `with`), and where they point (its `with` argument, or nowhere).
const char *nn_setting_text(NnCtx *c, const NnSetting *s);
NnLoc nn_setting_loc(const NnSetting *s, NnLoc fallback);

// One `step` of a block of steps (two-player training).
typedef struct NnTrainStep {
    const char *name;
    NnGraph *graph;   // outputs "loss", then "real" and "fake" (the mean model output on
                      // data and on another model's output) when the loss scores both;
                      // NULL for step 0, whose graph is the spec's `step`
    int repeat;       // runs per batch, >= 1
    const NnAst *ast;
} NnTrainStep;

typedef struct NnTrainSpec {
    const char *model, *data; // names
    NnGraph *forward; // stage "ir": model + loss, no gradient
    NnGraph *step;    // stage "grad": forward, loss, backward, updates; output "loss"
    NnGraph *eval;    // no dropout, no updates; outputs "loss", "output"
    NnParamInit *vars;   // every PARAM and STATE of the step graph
    int nvars;
    int64_t batch, epochs;
    uint64_t seed;
    int64_t limit;            // use only the first `limit` training samples (0 = all)
    int64_t eval_limit;       // evaluate on the first `eval_limit` val/test samples (0 = all)
    const char *save;         // checkpoint path or NULL
    const char *stop_metric;  // "val.accuracy" or NULL
    int patience;
    bool classify;            // output is class scores and the label is i32
    const char **metrics;     // names from `metrics = [...]`
    int nmetrics;
    const NnAst *augment;     // LIST of augmentation calls, or NULL
    const NnAst *ast;
    NnTrainStep *steps;       // a block of steps, in declared order; 0 for a plain block
    int nsteps;               // (then eval is NULL and classify false)
    NnAst *const *noise;      // `noise` declarations
    int nnoise;
} NnTrainSpec;

// The graph of step i (step 0's is spec->step).
static inline NnGraph **nn_train_step_graph(NnTrainSpec *s, int i)
{
    return i == 0 ? &s->step : &s->steps[i].graph;
}

// A data field as the model sees it: dtype and the shape of ONE sample (the
// batch dim N is added in front).
typedef struct NnField {
    const char *name; // "x", "label"
    NnDType dtype;
    NnShape sample;
} NnField;

// Lowers the train block `train` against data fields (x first, then the
// label; both graphs get one INPUT per field, in this order, named after it;
// the label also answers to the name `y`). `sets` overrides settings and optimizer
// hyperparameters (epochs, batch, lr, seed, ...); unknown keys are errors.
bool nn_lower_train(NnCtx *c, const NnProgram *p, const NnAst *train, const NnField *fields,
                    int nfields, NnSetting *sets, int nsets, NnTrainSpec *out);
// Checks the values of --set options that name plain settings (batch,
// epochs, seed, ...) without lowering anything, so a bad value is reported
// before any data are loaded.
bool nn_train_check_sets(NnCtx *c, NnSetting *sets, int nsets);
// Sets the run-time hyperparameter `key` ("lr", "beta1", "total_steps") of
// every step that has one to value, in vars (the table the steps run on),
// with no compiling. Returns how many were set: 0 when no step has `key`.
// Key "dropout" sets every dropout site's rate, "dropoutK" the K-th site's.
int nn_train_set_hyper(const NnTrainSpec *s, NnVars *vars, const char *key, double value);
// Whether key names dropout rates: "dropout" (every site; *site = 0) or
// "dropoutK" (the K-th dropout call of the model's forward pass, from 1).
bool nn_train_dropout_key(const char *key, int *site);
// Sets each step's total_steps (what schedules anneal over) for a run of the
// spec's epochs with `batches` batches an epoch.
void nn_train_set_total_steps(const NnTrainSpec *s, NnVars *vars, int64_t batches);
// Frees the spec's graphs (safe on a zeroed or partly filled spec).
void nn_train_spec_fini(NnTrainSpec *s);
// Lowers a model alone (for `nnc ir` on a file without a train block).
NnGraph *nn_lower_model(NnCtx *c, const NnProgram *p, const NnAst *model, bool training);



// Data blocks. An expression over data fields (each an INPUT of the field's
// FULL shape, e.g. f32[60000, 28, 28]) becomes a graph with output "value";
// random builtins draw from `seed`.
NnGraph *nn_lower_expr(NnCtx *c, const NnProgram *p, const NnAst *e, const NnField *fields,
                       int nfields, uint64_t seed);
// A list literal ([[0, 1], [1, 0]], optionally wrapped in i32(...) or f32(...))
// as a new tensor. Returns NULL and sets *is_literal = false when e is not a
// literal; reports ragged or non-numeric lists (*is_literal stays true).
NnTensor *nn_lower_literal(NnCtx *c, const NnAst *e, bool *is_literal);

// An expression typed at the REPL (query.c). A name no scope knows, or a path
// such as fashion.test.x, goes to the resolver, which returns the tensor it
// stands for (NULL: unknown); that and each list literal becomes an INPUT,
// fed feeds[k] in id order. A compile-time number or bool yields no graph
// (is_num). nn_query_fini frees the graph and the literals, also on failure.
typedef const NnTensor *(*NnQueryResolve)(void *ctx, const char *name);
typedef struct NnQuery {
    NnGraph *graph;         // output "value"; NULL when is_num
    const char **inputs;    // names of the INPUTs in id order (in c's arena)
    const NnTensor **feeds; // what feeds each
    int ninputs;
    NnTensor **literals;    // owned
    int nliterals;
    NnParamInit *vars;      // the PARAM/STATE nodes of the models it calls
    int nvars;
    bool is_num, is_int, is_bool;
    double num;
} NnQuery;
bool nn_lower_query(NnCtx *c, const NnProgram *p, NnAst *e, NnQueryResolve resolve, void *ctx,
                    NnQuery *out);
void nn_query_fini(NnQuery *q);
#endif
