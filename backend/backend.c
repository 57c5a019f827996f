// Backend lookup by name, for the driver's --backend flag. The JIT exists only
// in builds with LLVM; asking for it elsewhere gives NULL, and the driver says so.
#include "backend.h"

#include <string.h>

const NnBackend *nn_backend_find(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, "interp") == 0)
        return &nn_backend_interp;
#ifdef NN_WITH_LLVM
    if (strcmp(name, "jit") == 0)
        return &nn_backend_jit;
#endif
    return NULL;
}
