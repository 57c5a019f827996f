// The runtime side of a model library (`nnc build --lib`): one model's
// compiled training step and evaluation step (step.h descriptors, each for
// any batch size where the model's ops allow, else for the training batch),
// the table of its variables with their initializers, and what a caller
// needs to know about its inputs and outputs.
// `nnc build --lib` writes an NnrtModelDesc as C and thin wrappers named
// after the model (NAME_create, NAME_predict, ...) that call these functions;
// the generated NAME.h is the documented user API. Every function returns an
// NnStatus and leaves a message in the model's last-error text (and in
// nnrt_errmsg() of the calling thread); none exits or aborts on bad input.
// A model context owns its thread pool, so distinct contexts may be used
// from different threads at once; one context is not for two threads at once.
#ifndef NNRT_MODEL_API_H
#define NNRT_MODEL_API_H

#include "nnrt.h"
#include "step.h"

// A variable of the model: a weight or layer state (saved and loaded), or
// optimizer state (saved so training can resume; optional when loading).
typedef struct NnrtModelVar {
    const char *name; // "mlp.dense1.w"
    const char *init; // nnrt_init_fill kind: "glorot_uniform", "zeros", ...
    double args[4];
    int nargs;
    int dtype; // NnDType
    int rank;
    int64_t dims[NN_MAX_RANK];
    int model; // 1: a weight or layer state; 0: optimizer state
} NnrtModelVar;

typedef struct NnrtModelDesc {
    const char *name;     // the model's name in the source ("mlp")
    int64_t batch;        // the training batch size: samples per run of a step compiled
                          // for one size, the chunk of a prediction
    const NnrtStep *step; // inputs x, label; output 0 the loss; updates the variables
    const NnrtStep *eval; // inputs x, label; outputs include "output"; no updates
    int eval_output;      // index of "output" among eval's outputs
    int nvars;
    const NnrtModelVar *vars;
    uint64_t seed;            // of the initializers
    int64_t in_size;          // f32 values per sample of x
    int64_t out_size;         // f32 values per sample of the output
    int label_dtype;          // NnDType of the label: i32 class indices or f32 targets
    int64_t label_size;       // values per sample of the label
    int classes;              // classes a classifier scores (0: not a classifier)
    const char *const *class_names; // classes entries, or NULL
    // The model alone (input x; output 0 the model's output; any batch), what
    // predict runs when the build made one; else NULL and predict runs eval.
    const NnrtStep *predict;
} NnrtModelDesc;

typedef struct NnrtModel NnrtModel;

// A new context with freshly initialized variables (as `nnc train` starts)
// and a pool of `threads` threads (0: all cores). On failure *out is NULL and
// the message is in nnrt_errmsg().
NnStatus nnrt_model_create(const NnrtModelDesc *d, int threads, NnrtModel **out);
void nnrt_model_free(NnrtModel *m); // NULL is fine
// Sets the weights and layer state (required) and optimizer state (when the
// file has it) from a safetensors checkpoint, e.g. one `nnc train` saved. A
// missing or mismatched tensor is an error naming it; m is then unchanged.
NnStatus nnrt_model_load(NnrtModel *m, const char *path);
// Writes every variable to a safetensors checkpoint (atomically), which
// `nnc eval --weights`, `nnc predict` and nnrt_model_load read.
NnStatus nnrt_model_save(NnrtModel *m, const char *path);
// out[n * out_size] = the model's outputs for x[n * in_size], any n >= 1.
NnStatus nnrt_model_predict(NnrtModel *m, const float *x, int64_t n, float *out);
// One optimizer step on n samples: any n >= 1 when the step takes its batch
// at run time (NNRT_DIM_BATCH in step->inputs[0]), else exactly `batch`;
// labels are i32 or f32 as label_dtype says (label_size values per sample).
// *loss (may be NULL) gets the batch's loss before the update.
NnStatus nnrt_model_train_step(NnrtModel *m, const float *x, const void *labels, int64_t n,
                               float *loss);
// The message of m's last failure ("" when none); with m NULL, that of the
// calling thread (for a failed create).
const char *nnrt_model_errmsg(const NnrtModel *m);

#endif
