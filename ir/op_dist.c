// Shape rules and VJPs of the data-parallel ops GRAD_START and GRAD_WAIT
// (ops.def): both keep their input's f32 type. They sit between a finished
// gradient and its optimizer update, so nothing differentiates through them.
#include "op_common.h"

static bool f32_like_input(NnGraph *g, NnNode *n, const char *op)
{
    const NnNode *x = &g->nodes[n->in[0]];
    if (x->dtype != NN_DT_F32) {
        char t[NN_TYPE_BUF];
        nn_set_err(g, "%s: expects an f32 gradient, got %s", op, nn_rule_in_type(g, n, 0, t));
        return false;
    }
    n->dtype = x->dtype;
    n->shape = x->shape;
    return true;
}

bool shape_grad_start(NnGraph *g, NnNode *n) { return f32_like_input(g, n, "grad_start"); }

bool shape_grad_wait(NnGraph *g, NnNode *n)
{
    if (g->nodes[n->in[0]].op != NN_OP_GRAD_START) {
        nn_set_err(g, "grad_wait: its input must be a grad_start");
        return false;
    }
    return f32_like_input(g, n, "grad_wait");
}

void vjp_grad_start(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_grad_wait(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
