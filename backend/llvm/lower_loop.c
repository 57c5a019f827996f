// placeholder
#include "nn_llvm.h"

bool llvm_loop(NnCg *cg, NnId id) { return nnrt_fail(NN_ERR_RUNTIME, "jit: loops not yet"), false; }
bool llvm_loop_out(NnCg *cg, NnId id) { return nnrt_fail(NN_ERR_RUNTIME, "jit: loops not yet"), false; }
