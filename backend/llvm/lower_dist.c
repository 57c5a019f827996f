// GRAD_START and GRAD_WAIT in generated code: one kernel each that calls the
// runtime (nnrt_dist_grad_start / _wait, runtime/dist.h) with its buffers. The
// work estimate is 0, so the kernel runs on the thread running the step, the
// one thread that makes MPI calls.
#include "nn_llvm.h"

static bool dist_call(NnCg *cg, NnId id, const char *what, const char *fn)
{
    const NnNode *n = &cg->g->nodes[id];
    int64_t numel = nn_cg_numel(cg, cg->g, id);
    nn_cg_kernel_begin(cg, what, 0);
    LLVMValueRef args[3] = {nn_cg_buf(cg, n->in[0]), nn_cg_buf(cg, id), nn_cg_i64(cg, numel)};
    nn_cg_call(cg, fn, cg->t_void, args, 3);
    nn_cg_kernel_end(cg);
    return true;
}

bool llvm_grad_start(NnCg *cg, NnId id)
{
    return dist_call(cg, id, "grad_start", "nnrt_dist_grad_start");
}

bool llvm_grad_wait(NnCg *cg, NnId id)
{
    return dist_call(cg, id, "grad_wait", "nnrt_dist_grad_wait");
}
