// The one place that picks a backend for the driver (main.c, repl.c, the
// session): the name from --backend, else the JIT when built with LLVM; and
// running a graph once, its outputs cloned into owned tensors.
#include "driver.h"

const NnBackend *nn_driver_backend(const NnOptions *o)
{
    const char *name = o->backend;
#ifdef NN_WITH_LLVM
    if (!name)
        name = "jit";
#else
    if (!name)
        name = "interp";
#endif
    const NnBackend *be = nn_backend_find(name);
    if (!be)
        fprintf(stderr, "nnc: error: unknown or unavailable backend '%s' (have: interp%s)\n", name,
                nn_backend_find("jit") ? ", jit" : "");
    return be;
}

bool nn_driver_eval_graph(NnCtx *c, const NnBackend *be, NnGraph *g, NnTensor *const *inputs,
                          NnTensor **outs, NnLoc loc)
{
    NnExecOptions eo = {0};
    NnExec *x = be->prepare(g, &eo);
    NnTensor *res[8] = {0};
    if (!x || be->run(x, NULL, inputs, res) != NN_OK) {
        nn_error(&c->diags, loc, "%s", nnrt_errmsg());
        if (x)
            be->free(x);
        return false;
    }
    bool ok = true;
    for (int i = 0; i < g->noutputs && i < 8; i++)
        ok = (outs[i] = nnrt_tensor_clone(res[i])) != NULL && ok;
    be->free(x);
    if (!ok)
        nn_error(&c->diags, loc, "out of memory");
    return ok;
}
