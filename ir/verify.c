// nn_ir_verify: checks the invariants every pass must keep. Nodes are in
// topological order with valid input ids and the arity ops.def gives; re-running
// each node's shape rule reproduces its dtype and shape; FUSED and LOOP bodies
// verify too; no node sets an attribute its op does not declare; outputs name nodes;
// updates write a PARAM/STATE with a value of its type.
// The first violation goes into g->err; a failure after a pass is our bug.
#include <string.h>

#include "attr.h"
#include "rules.h"

typedef bool (*ShapeFn)(NnGraph *, NnNode *);
static const ShapeFn shape_rules[NN_OP_COUNT] = {
#define NN_OP(tag, name, arity, flags, attrs) [NN_OP_##tag] = shape_##name,
#include "ops.def"
#undef NN_OP
};

static bool check_inputs(NnGraph *g, NnId i)
{
    const NnNode *n = &g->nodes[i];
    int arity = nn_op_arity(n->op);
    if (arity >= 0 && n->nin != arity) {
        nn_set_err(g, "node %%%d (%s): %d inputs, expected %d", i, nn_op_name(n->op), n->nin,
                   arity);
        return false;
    }
    if (n->nin < 0 || (n->nin > 0 && !n->in)) {
        nn_set_err(g, "node %%%d (%s): bad input list", i, nn_op_name(n->op));
        return false;
    }
    for (int k = 0; k < n->nin; k++) {
        if (n->in[k] < 0 || n->in[k] >= i) {
            nn_set_err(g, "node %%%d (%s): input %d is %%%d, not an earlier node", i,
                       nn_op_name(n->op), k, n->in[k]);
            return false;
        }
    }
    char msg[200];
    if (!nn_attr_check(n, msg, sizeof msg)) {
        nn_set_err(g, "node %%%d (%s): %s", i, nn_op_name(n->op), msg);
        return false;
    }
    return true;
}

// Re-runs the shape rule on a copy, so the graph is never modified.
static bool check_type(NnGraph *g, NnId i)
{
    const NnNode *n = &g->nodes[i];
    if ((n->op == NN_OP_FUSED || n->op == NN_OP_LOOP) && n->attr.body &&
        !nn_ir_verify(n->attr.body)) {
        nn_set_err(g, "node %%%d (%s): body: %s", i, nn_op_name(n->op), n->attr.body->err);
        return false;
    }
    NnNode copy = *n;
    copy.dtype = NN_DT_COUNT;
    memset(&copy.shape, 0, sizeof copy.shape);
    if (!shape_rules[n->op](g, &copy)) {
        char msg[sizeof g->err];
        memcpy(msg, g->err, sizeof msg);
        nn_set_err(g, "node %%%d (%s): shape rule fails: %s", i, nn_op_name(n->op), msg);
        return false;
    }
    if (copy.dtype != n->dtype || !nn_shape_eq(&copy.shape, &n->shape)) {
        char want[128], have[128];
        nn_type_str(g, copy.dtype, &copy.shape, want, sizeof want);
        nn_type_str(g, n->dtype, &n->shape, have, sizeof have);
        nn_set_err(g, "node %%%d (%s): type %s, but its shape rule gives %s", i,
                   nn_op_name(n->op), have, want);
        return false;
    }
    return true;
}

static bool check_ends(NnGraph *g)
{
    for (int k = 0; k < g->noutputs; k++) {
        NnId id = g->outputs[k].id;
        if (id < 0 || id >= g->count) {
            nn_set_err(g, "output %s is %%%d, not a node", g->outputs[k].name, id);
            return false;
        }
    }
    for (int k = 0; k < g->nupdates; k++) {
        NnId v = g->updates[k].var, x = g->updates[k].value;
        if (v < 0 || v >= g->count || x < 0 || x >= g->count) {
            nn_set_err(g, "update %d: %%%d <- %%%d names no node", k, v, x);
            return false;
        }
        const NnNode *var = &g->nodes[v], *val = &g->nodes[x];
        if (var->op != NN_OP_PARAM && var->op != NN_OP_STATE) {
            nn_set_err(g, "update %d: target %%%d is a %s, not a param or state", k, v,
                       nn_op_name(var->op));
            return false;
        }
        if (var->dtype != val->dtype || !nn_shape_eq(&var->shape, &val->shape)) {
            char a[128], b[128];
            nn_set_err(g, "update %d: %s is %s but its new value %%%d is %s", k,
                       var->attr.name ? var->attr.name : "?",
                       nn_type_str(g, var->dtype, &var->shape, a, sizeof a), x,
                       nn_type_str(g, val->dtype, &val->shape, b, sizeof b));
            return false;
        }
    }
    return true;
}

bool nn_ir_verify(NnGraph *g)
{
    if (g->count < 0 || (g->count > 0 && !g->nodes)) {
        nn_set_err(g, "graph has a bad node array");
        return false;
    }
    for (NnId i = 0; i < g->count; i++) {
        if ((unsigned)g->nodes[i].op >= NN_OP_COUNT) {
            nn_set_err(g, "node %%%d: unknown op %d", i, (int)g->nodes[i].op);
            return false;
        }
        if (!check_inputs(g, i) || !check_type(g, i))
            return false;
    }
    return check_ends(g);
}
