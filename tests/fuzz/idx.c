// Fuzz target: an IDX file (plain or gzipped) through the IDX reader.
#include <unistd.h>

#include "data.h"
#include "fuzz.h"

int nn_fuzz_idx(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = nn_fuzz_file(data, size, path);
    if (fd < 0)
        return 0;
    NnTensor *t = NULL;
    if (nnrt_idx_load(path, &t) == NN_OK)
        nnrt_tensor_free(t);
    close(fd);
    return 0;
}

#ifdef NN_FUZZ_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return nn_fuzz_idx(data, size); }
#endif
