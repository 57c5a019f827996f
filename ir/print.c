// nn_ir_print: the textual dump golden tests compare, one node per line:
//   %3 = matmul(%1, %2) tb : f32[N, 10]  # mnist.nn:12:7
// Sources show their name, attrs follow the operands compactly, the type follows
// ':' and the source file:line:col follows '#'. FUSED nodes print their body indented
// inside braces. Outputs and updates close the dump. Output depends only on the graph.
#include <stdio.h>
#include <string.h>

#include "graph.h"

// The file's last path component, so dumps do not depend on where a model lives.
static const char *base_name(const char *path)
{
    if (!path)
        return "?";
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static void print_axes(FILE *out, const char *label, uint32_t axes)
{
    fprintf(out, " %s=[", label);
    const char *sep = "";
    for (int i = 0; i < 32; i++) {
        if ((axes >> i) & 1) {
            fprintf(out, "%s%d", sep, i);
            sep = ", ";
        }
    }
    fputc(']', out);
}

// Attributes the type after ':' does not already show.
static void print_attrs(FILE *out, const NnNode *n)
{
    const NnAttr *a = &n->attr;
    switch (n->op) {
    case NN_OP_CONST: fprintf(out, " %.9g", a->value); break;
    case NN_OP_RAND_UNIFORM:
    case NN_OP_RAND_NORMAL: fprintf(out, " seed=%llu", (unsigned long long)a->seed); break;
    case NN_OP_DROPOUT:
        fprintf(out, " rate=%.9g seed=%llu", a->value, (unsigned long long)a->seed);
        break;
    case NN_OP_TRANSPOSE:
        fprintf(out, " perm=[");
        for (int i = 0; i < n->shape.rank; i++)
            fprintf(out, "%s%d", i ? ", " : "", a->perm[i]);
        fputc(']', out);
        break;
    case NN_OP_TAKE:
    case NN_OP_ARGMAX: fprintf(out, " axis=%d", a->axis); break;
    case NN_OP_MATMUL: fprintf(out, "%s%s", a->ta ? " ta" : "", a->tb ? " tb" : ""); break;
    case NN_OP_ONEHOT: fprintf(out, " depth=%lld", (long long)a->depth); break;
    default:
        if (nn_op_has(n->op, NN_OPF_REDUCE)) {
            print_axes(out, "axes", a->axes);
            if (a->keep)
                fprintf(out, " keep");
        }
        break;
    }
}

static void print_nodes(FILE *out, const NnGraph *g, int indent)
{
    char type[160];
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        fprintf(out, "%*s%%%d = %s", indent, "", i, nn_op_name(n->op));
        if (nn_op_has(n->op, NN_OPF_SOURCE) && n->attr.name)
            fprintf(out, " %s", n->attr.name);
        if (n->nin > 0) {
            fputc('(', out);
            for (int k = 0; k < n->nin; k++)
                fprintf(out, "%s%%%d", k ? ", " : "", n->in[k]);
            fputc(')', out);
        }
        print_attrs(out, n);
        fprintf(out, " : %s", nn_type_str(g, n->dtype, &n->shape, type, sizeof type));
        if (n->loc.src)
            fprintf(out, "  # %s:%d:%d", base_name(n->loc.src->name), n->loc.line, n->loc.col);
        if (n->op == NN_OP_FUSED && n->attr.body) {
            fprintf(out, " {\n");
            print_nodes(out, n->attr.body, indent + 4);
            for (int k = 0; k < n->attr.body->noutputs; k++)
                fprintf(out, "%*sreturn %%%d\n", indent + 4, "", n->attr.body->outputs[k].id);
            fprintf(out, "%*s}", indent, "");
        }
        fputc('\n', out);
    }
}

void nn_ir_print(FILE *out, const NnGraph *g)
{
    print_nodes(out, g, 0);
    for (int k = 0; k < g->noutputs; k++)
        fprintf(out, "output %s = %%%d\n", g->outputs[k].name, g->outputs[k].id);
    for (int k = 0; k < g->nupdates; k++) {
        const NnUpdate *u = &g->updates[k];
        const char *name = u->var >= 0 && u->var < g->count ? g->nodes[u->var].attr.name : NULL;
        fprintf(out, "update %s <- %%%d\n", name ? name : "?", u->value);
    }
}
