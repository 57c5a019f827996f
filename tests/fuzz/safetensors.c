// Fuzz target: a checkpoint file through the safetensors reader, then the
// check against a small model's expected tensors that `nnc eval` and
// `--resume` make.
#include <unistd.h>

#include "checkpoint.h"
#include "fuzz.h"

int nn_fuzz_safetensors(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = nn_fuzz_file(data, size, path);
    if (fd < 0)
        return 0;
    NnVars vars, want;
    NnrtMeta meta;
    if (nnrt_safetensors_load(path, &vars, &meta) == NN_OK) {
        nnrt_vars_init(&want);
        int64_t shape[2] = {2, 3};
        NnTensor *t = nnrt_tensor_new(NN_DT_F32, 2, shape);
        if (t)
            nnrt_vars_put(&want, "mlp.dense1.w", t);
        if (nnrt_checkpoint_check(path, &vars, &want) == NN_OK)
            nnrt_checkpoint_assign(path, &want, &vars);
        nnrt_vars_fini(&want);
    }
    // Emptied on failure, so finishing them is right either way.
    nnrt_vars_fini(&vars);
    nnrt_meta_fini(&meta);
    close(fd);
    return 0;
}

#ifdef NN_FUZZ_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return nn_fuzz_safetensors(data, size);
}
#endif
