// Helpers shared by the per-op rule files: type strings for messages and the
// IR-building steps several VJPs repeat. Every builder here goes through
// nn_ir_add, so the nodes it makes are shaped and checked like any other.
#include "op_common.h"

#include <stdio.h>

const char *nn_rule_in_type(const NnGraph *g, const NnNode *n, int k, char *buf)
{
    const NnNode *x = &g->nodes[n->in[k]];
    return nn_type_str(g, x->dtype, &x->shape, buf, NN_TYPE_BUF);
}

bool nn_rule_shape_ok(const NnGraph *g, const NnShape *s)
{
    if (s->rank < 0 || s->rank > NN_MAX_RANK)
        return false;
    for (int i = 0; i < s->rank; i++)
        if (s->dim[i] < 0 && -s->dim[i] - 1 >= g->nsyms)
            return false;
    return true;
}

const char *nn_rule_numel_str(const NnGraph *g, const NnShape *s, char *buf, size_t n)
{
    int64_t num = 1;
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < s->rank; i++) {
        int64_t d = s->dim[i];
        if (d >= 0) {
            num *= d;
            continue;
        }
        const char *name = -d - 1 < g->nsyms ? g->syms[-d - 1] : "?";
        if (len < n)
            len += (size_t)snprintf(buf + len, n - len, "%s*", name);
    }
    if (len < n)
        snprintf(buf + len, n - len, "%lld", (long long)num);
    return buf;
}

NnId nn_rule_sumto(NnGraph *g, NnId x, const NnShape *s, NnLoc loc)
{
    if (x < 0 || nn_shape_eq(&g->nodes[x].shape, s))
        return x;
    return nn_ir_sumto(g, x, s, loc);
}

NnId nn_rule_broadcast(NnGraph *g, NnId x, const NnShape *s, NnLoc loc)
{
    if (x < 0 || nn_shape_eq(&g->nodes[x].shape, s))
        return x;
    return nn_ir_broadcast(g, x, s, loc);
}

NnId nn_rule_fill(NnGraph *g, double v, NnDType dt, const NnShape *s, NnLoc loc)
{
    NnAttr a = {0};
    a.value = v;
    a.dtype = dt;
    if (s)
        a.shape = *s;
    return nn_ir_add(g, NN_OP_CONST, NULL, 0, &a, loc);
}

NnShape nn_rule_keep_shape(const NnShape *s, uint32_t axes)
{
    NnShape k = *s;
    for (int i = 0; i < s->rank; i++)
        if (axes & (1u << i))
            k.dim[i] = 1;
    return k;
}

NnId nn_rule_expand(NnGraph *g, NnId y, const NnShape *full, uint32_t axes, NnLoc loc)
{
    NnShape keep = nn_rule_keep_shape(full, axes);
    if (!nn_shape_eq(&g->nodes[y].shape, &keep))
        y = nn_ir_reshape(g, y, &keep, loc);
    return nn_rule_broadcast(g, y, full, loc);
}

_Noreturn void nn_rule_no_vjp(const NnGraph *g, NnId id)
{
    (void)g;
    (void)id;
    nn_internal_error(__FILE__, __LINE__, "vjp of an op that is not differentiable");
}
