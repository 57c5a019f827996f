// GRAD_START and GRAD_WAIT in the interpreter: the runtime's all-reduce calls
// (runtime/dist.c), on the thread running the graph like every MPI call.
#include "interp.h"

#include "dist.h"

NnStatus interp_grad_start(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *g = interp_in(c, n, 0);
    nnrt_dist_grad_start(g->data, out->data, out->numel);
    return NN_OK;
}

NnStatus interp_grad_wait(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnTensor *acc = interp_in(c, n, 0);
    nnrt_dist_grad_wait(acc->data, out->data, out->numel);
    return NN_OK;
}
