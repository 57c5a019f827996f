// libnnrt: the runtime that ships inside users' AOT binaries. Tensors, dtypes,
// status codes and the error message slot. Everything here is prefixed nnrt_
// (types Nn*) and depends on libc, pthreads and zlib only. The symbols that
// generated code calls are declared here or in kernels.h and form an ABI.
#ifndef NNRT_H
#define NNRT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NN_MAX_RANK 6

typedef enum NnDType { NN_DT_F32, NN_DT_F64, NN_DT_I32, NN_DT_COUNT } NnDType;

// Every nnrt_ function that can fail for reasons outside the program (I/O,
// memory, bad data) returns one of these and leaves a message in nnrt_errmsg().
typedef enum NnStatus {
    NN_OK = 0,
    NN_ERR_IO,     // file missing, unreadable, or a write/rename failed
    NN_ERR_FORMAT, // a data or checkpoint file is malformed; message has offset
    NN_ERR_NOMEM,
    NN_ERR_SHAPE,  // tensors handed to the runtime disagree in shape or dtype
    NN_ERR_RUNTIME // anything else (a failed kernel precondition, a thread error)
} NnStatus;

typedef struct NnTensor {
    NnDType dtype;
    int rank;                    // 0..NN_MAX_RANK; 0 is a scalar with numel 1
    int64_t shape[NN_MAX_RANK];  // all >= 0
    int64_t numel;               // product of shape
    void *data;                  // 64-byte aligned, row-major, contiguous
    bool owned;                  // false for views: data belongs to someone else
} NnTensor;

// Thread-local message of the last failure; never NULL.
const char *nnrt_errmsg(void);
// Sets the message (printf-style) and returns st, so callers can `return nnrt_fail(...)`.
// The arguments may include nnrt_errmsg() itself, to prefix where a failure came from.
NnStatus nnrt_fail(NnStatus st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

size_t nnrt_dtype_size(NnDType dt);
const char *nnrt_dtype_name(NnDType dt); // "f32", "f64", "i32"

// 64-byte aligned allocation, zero-filled; NULL (with nnrt_errmsg set) on failure.
void *nnrt_alloc(size_t nbytes);
void nnrt_free(void *p);

// A new zero-filled owned tensor, or NULL with a message that names the shape:
// NN_ERR_SHAPE when a dimension is negative or the size overflows, NN_ERR_NOMEM
// when it does not fit in memory. Callers prefix where the shape came from.
NnTensor *nnrt_tensor_new(NnDType dt, int rank, const int64_t *shape);
// A tensor header over caller-owned data (owned = false).
NnTensor *nnrt_tensor_view(NnDType dt, int rank, const int64_t *shape, void *data);
NnTensor *nnrt_tensor_clone(const NnTensor *t);
void nnrt_tensor_free(NnTensor *t);
size_t nnrt_tensor_nbytes(const NnTensor *t);
bool nnrt_tensor_same_shape(const NnTensor *a, const NnTensor *b);
// Element i as a double, whatever the dtype.
double nnrt_tensor_get(const NnTensor *t, int64_t i);
void nnrt_tensor_set(NnTensor *t, int64_t i, double v);

// A table of named tensors: parameters, optimizer state, anything saved in a
// checkpoint. Names are copied. Insertion order is kept (checkpoints and dumps
// list tensors in that order). The table owns its tensors. Lookups are hashed
// once the table is large, so n puts or gets cost O(n), not O(n^2).
typedef struct NnVars {
    char **names;
    NnTensor **tensors;
    int count, cap;
    int *slots;  // hash index: nslots entries (a power of 2), each position + 1, 0 empty
    int nslots;  // 0 until the table holds enough names to be worth hashing
    // A stamp, unique over the process, renewed by every init, put, append and
    // fini: an executable that found a step's tensors in this table at stamp
    // gen finds the same ones while it holds (the per-step fast path).
    uint64_t gen;
} NnVars;

void nnrt_vars_init(NnVars *v);
void nnrt_vars_fini(NnVars *v);
// Takes ownership of t; replaces (and frees) an existing tensor of that name.
NnStatus nnrt_vars_put(NnVars *v, const char *name, NnTensor *t);
// nnrt_vars_put for a name the caller knows is not in v yet (no lookup).
NnStatus nnrt_vars_append(NnVars *v, const char *name, NnTensor *t);
NnTensor *nnrt_vars_get(const NnVars *v, const char *name); // NULL when absent
int nnrt_vars_find(const NnVars *v, const char *name);      // index or -1

#endif
