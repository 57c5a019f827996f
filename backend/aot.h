// Ahead-of-time compilation (backend/llvm/aot.c), for `nnc build` and the
// library builds on top of it: a graph compiled for one binding of its dims
// into an object file for a chosen target, plus the step descriptor
// (runtime/step.h) that runs it. The descriptor is written out as C tables
// (nn_aot_step_write_c) whose kernel entries name the object's symbols, so a
// program linking both with libnnrt runs the step with nnrt_step_run and no
// compiler. Nothing in either depends on addresses of the compiling process.
#ifndef NN_AOT_H
#define NN_AOT_H

#include <stdio.h>

#include "graph.h"
#include "step.h"

// Where the code runs: --target native (the default: this machine's CPU and
// features), a portable x86-64 level (x86-64, x86-64-v2, -v3, -v4) or an LLVM
// triple ("aarch64-linux-gnu": generic CPU of that architecture).
typedef struct NnAotTarget {
    char triple[96];
    char cpu[64];
    char features[1024]; // "+avx2,..." or empty (implied by cpu)
    bool host;           // code for this machine's triple (so it can be linked and run here)
} NnAotTarget;

// Parses a --target value (NULL means native). false with nnrt_errmsg set
// naming the accepted forms, or LLVM's reason the triple is unknown.
bool nn_aot_target_parse(const char *spec, NnAotTarget *t);

// Compiles g (fused first, as the JIT does, unless it holds FUSED nodes) for
// symbol values symv into the object file at obj_path for target t. Every
// symbol of the object starts with prefix (unique per step of one program).
// On success *desc is the step's descriptor, named `name` in messages, kernel
// addresses NULL (nn_aot_step_write_c names them instead); free it with
// nn_aot_step_free. NN_ERR_* with nnrt_errmsg set on failure.
// Thread-safe: `nnc build` compiles its steps in parallel.
NnStatus nn_aot_compile(const NnGraph *g, const int64_t *symv, const char *prefix,
                        const char *name, const NnAotTarget *t, const char *obj_path,
                        NnrtStep **desc);
void nn_aot_step_free(NnrtStep *d);

// The batch symbol g (fused or not) can leave to run time, or -1 when some op
// on it still needs it bound (the reason in why[n]).
int nn_aot_batch_sym(const NnGraph *g, char *why, size_t n);
// nn_aot_compile for every value of symbol batch_sym (nn_aot_batch_sym): one
// object runs any batch size; symv[batch_sym] is the batch the code is tuned
// for (the training batch). The descriptor's batch dims are NNRT_DIM_BATCH.
NnStatus nn_aot_compile_any_batch(const NnGraph *g, const int64_t *symv, int batch_sym,
                                  const char *prefix, const char *name, const NnAotTarget *t,
                                  const char *obj_path, NnrtStep **desc);

// d as C source defining `const NnrtStep <cname>` (and static tables named
// after it), preceded by declarations of its kernels. The file includes
// "step.h" itself only if the caller wrote that include first.
void nn_aot_step_write_c(const NnrtStep *d, const char *cname, FILE *out);

// s as a C string literal (names come from the user's script), or NULL.
void nn_aot_write_c_string(FILE *f, const char *s);

#endif
