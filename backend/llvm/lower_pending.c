// Placeholder lowerings for the convolution, pooling and axis-layout ops of
// ops.def until their LLVM code generation lands (branch cnn-llvm, which
// deletes this file): the JIT refuses a graph using them with a clear message,
// and the interpreter runs it.
#include "nn_llvm.h"

static bool pending(NnCg *cg, NnId id)
{
    nnrt_fail(NN_ERR_RUNTIME, "llvm backend: no code generation for %s yet (use the interpreter)",
              nn_op_name(cg->g->nodes[id].op));
    return false;
}

bool llvm_pad(NnCg *cg, NnId id) { return pending(cg, id); }
bool llvm_slice(NnCg *cg, NnId id) { return pending(cg, id); }
bool llvm_slice_bwd(NnCg *cg, NnId id) { return pending(cg, id); }
bool llvm_concat(NnCg *cg, NnId id) { return pending(cg, id); }
bool llvm_conv2d(NnCg *cg, NnId id) { return pending(cg, id); }
bool llvm_conv2d_bwd_data(NnCg *cg, NnId id) { return pending(cg, id); }
bool llvm_conv2d_bwd_filter(NnCg *cg, NnId id) { return pending(cg, id); }
bool llvm_max_pool2d(NnCg *cg, NnId id) { return pending(cg, id); }
bool llvm_max_pool2d_bwd(NnCg *cg, NnId id) { return pending(cg, id); }
bool llvm_avg_pool2d(NnCg *cg, NnId id) { return pending(cg, id); }
bool llvm_avg_pool2d_bwd(NnCg *cg, NnId id) { return pending(cg, id); }
