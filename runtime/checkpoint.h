// Checkpoints in the safetensors format: an 8-byte little-endian header
// length, a JSON header {"__metadata__": {str: str}, "name": {"dtype": "F32",
// "shape": [..], "data_offsets": [begin, end]}, ...} padded with spaces to a
// multiple of 8, then the raw little-endian tensor data in header order.
// Dtypes F32, F64 and I32 map to NnDType. Saving is atomic: the file is
// written to "<path>.tmp.<pid>", flushed and fsync'ed, then renamed over the
// target, so a failed save leaves the previous checkpoint untouched and no
// temporary file behind (runtime/savefile.h: a target that is not a regular
// file is refused, and SIGINT/SIGTERM during a save remove the temporary).
// Loading validates everything and names the file and offset of the first problem.
#ifndef NNRT_CHECKPOINT_H
#define NNRT_CHECKPOINT_H

#include "nnrt.h"

// String metadata saved with a checkpoint (e.g. "epoch", "step", "format").
typedef struct NnrtMeta {
    char **keys, **vals;
    int count, cap;
} NnrtMeta;

void nnrt_meta_init(NnrtMeta *m);
void nnrt_meta_fini(NnrtMeta *m);
NnStatus nnrt_meta_set(NnrtMeta *m, const char *key, const char *val); // copies; replaces
NnStatus nnrt_meta_set_int(NnrtMeta *m, const char *key, long long val);
const char *nnrt_meta_get(const NnrtMeta *m, const char *key); // NULL when absent
// Parses an integer value; false when absent or not an integer.
bool nnrt_meta_get_int(const NnrtMeta *m, const char *key, long long *val);

// The format version written as __metadata__["format"].
#define NNRT_CHECKPOINT_FORMAT "nnc-safetensors-1"

// Writes all tensors of vars in insertion order, with meta (may be NULL).
NnStatus nnrt_safetensors_save(const char *path, const NnVars *vars, const NnrtMeta *meta);
// Reads a checkpoint into out (initialized by this call; emptied on failure)
// and, when meta is non-NULL, its metadata (also initialized here).
NnStatus nnrt_safetensors_load(const char *path, NnVars *out, NnrtMeta *meta);
// The same for a checkpoint held in memory (weights embedded in a built
// program); name stands for the file in messages.
NnStatus nnrt_safetensors_load_mem(const char *name, const void *buf, size_t len, NnVars *out,
                                   NnrtMeta *meta);
// The same as views into buf, which must outlive them: a tensor whose data
// is aligned to its element size points there (its header alone is freed),
// others are copied; no value is checked for NaN or Inf. For bytes checked
// before (nnc build loads what it embeds), used where nothing writes them.
NnStatus nnrt_safetensors_view_mem(const char *name, const void *buf, size_t len, NnVars *out);
// Checks that every tensor of expected is in loaded with the same dtype and
// shape; extra tensors in loaded (e.g. optimizer state) are allowed. The first
// mismatch gives NN_ERR_SHAPE and a message such as
// "checkpoint 'mlp.safetensors' does not match the model: tensor 'mlp.dense1.w'
// has shape [784, 128], the model expects [784, 256]".
NnStatus nnrt_checkpoint_check(const char *path, const NnVars *loaded, const NnVars *expected);
// Copies the data of every tensor of dst from the same-named tensor of src
// after nnrt_checkpoint_check(path, src, dst) passes.
NnStatus nnrt_checkpoint_assign(const char *path, NnVars *dst, const NnVars *src);

#endif
