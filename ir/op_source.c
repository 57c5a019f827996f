// Shape rules for the ops whose values come from outside the graph or from
// attributes (INPUT, PARAM, STATE, CONST, RAND_*) and for FUSED, whose type is
// its body's output. None of them has a gradient rule: sources are where
// gradients end, and FUSED only exists after autodiff has run.
#include "op_common.h"

// Sources carry their type in attr; reject types no backend could allocate.
static bool source_type(NnGraph *g, NnNode *n)
{
    if (n->attr.dtype >= NN_DT_COUNT) {
        nn_set_err(g, "%s: unknown dtype", nn_op_name(n->op));
        return false;
    }
    if (!nn_rule_shape_ok(g, &n->attr.shape)) {
        nn_set_err(g, "%s: bad shape (rank %d)", nn_op_name(n->op), n->attr.shape.rank);
        return false;
    }
    n->dtype = n->attr.dtype;
    n->shape = n->attr.shape;
    return true;
}

bool shape_input(NnGraph *g, NnNode *n) { return source_type(g, n); }
bool shape_param(NnGraph *g, NnNode *n) { return source_type(g, n); }
bool shape_state(NnGraph *g, NnNode *n) { return source_type(g, n); }
// A CONST is rank 0 unless attr.shape says otherwise (then every element is attr.value).
bool shape_const(NnGraph *g, NnNode *n) { return source_type(g, n); }

static bool shape_rand(NnGraph *g, NnNode *n)
{
    char t[NN_TYPE_BUF];
    if (g->nodes[n->in[0]].shape.rank != 0) {
        nn_set_err(g, "%s: the step counter must be a scalar, got %s", nn_op_name(n->op),
                   nn_rule_in_type(g, n, 0, t));
        return false;
    }
    if (!nn_rule_is_float(n->attr.dtype)) {
        nn_set_err(g, "%s: random numbers must be f32 or f64", nn_op_name(n->op));
        return false;
    }
    return source_type(g, n);
}

bool shape_rand_uniform(NnGraph *g, NnNode *n) { return shape_rand(g, n); }
bool shape_rand_normal(NnGraph *g, NnNode *n) { return shape_rand(g, n); }

// FUSED: attr.body is a graph whose INPUT nodes, in id order, stand for this
// node's inputs, and whose single output is the value.
bool shape_fused(NnGraph *g, NnNode *n)
{
    const NnGraph *b = n->attr.body;
    if (!b || b->noutputs != 1 || b->outputs[0].id < 0 || b->outputs[0].id >= b->count) {
        nn_set_err(g, "fused: body must have exactly one output");
        return false;
    }
    int ninputs = 0;
    for (int i = 0; i < b->count; i++)
        ninputs += b->nodes[i].op == NN_OP_INPUT;
    if (ninputs != n->nin) {
        nn_set_err(g, "fused: body has %d inputs, node has %d", ninputs, n->nin);
        return false;
    }
    const NnNode *out = &b->nodes[b->outputs[0].id];
    n->dtype = out->dtype;
    n->shape = out->shape;
    return true;
}

void vjp_input(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_param(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_state(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_const(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_rand_uniform(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_rand_normal(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_fused(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
