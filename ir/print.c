// nn_ir_print: the textual dump golden tests compare, one node per line:
//   %3 = matmul(%1, %2) tb : f32[N, 10]  # mnist.nn:12:7
// Sources show their name, attrs (ir/attr.c, from the op table) follow the
// operands, the type follows ':' and the source file:line:col follows '#'.
// FUSED and LOOP nodes print their body indented inside braces (a loop's
// return line marks where its stacked per-step values start). Outputs and updates
// close the dump. Output depends only on the graph, so nn_ir_hash (FNV-1a of
// the dump) tells ranks whether they compiled the same step.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attr.h"
#include "dist.h"

// The file's last path component, so dumps do not depend on where a model lives.
static const char *base_name(const char *path)
{
    if (!path)
        return "?";
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
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
        nn_attr_print(out, n);
        fprintf(out, " : %s", nn_type_str(g, n->dtype, &n->shape, type, sizeof type));
        if (n->loc.src)
            fprintf(out, "  # %s:%d:%d", base_name(n->loc.src->name), n->loc.line, n->loc.col);
        if ((n->op == NN_OP_FUSED || n->op == NN_OP_LOOP) && n->attr.body) {
            const NnGraph *b = n->attr.body;
            fprintf(out, " {\n");
            print_nodes(out, b, indent + 4);
            if (n->op == NN_OP_FUSED) {
                for (int k = 0; k < b->noutputs; k++)
                    fprintf(out, "%*sreturn %%%d\n", indent + 4, "", b->outputs[k].id);
            } else {
                // Carries first, then the per-step values the loop stacks.
                fprintf(out, "%*sreturn", indent + 4, "");
                for (int k = 0; k < b->noutputs; k++)
                    fprintf(out, "%s%s%%%d", k ? ", " : " ", k == n->attr.ncarry ? "stack " : "",
                            b->outputs[k].id);
                fputc('\n', out);
            }
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

uint64_t nn_ir_hash(uint64_t h, const NnGraph *g)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = g ? open_memstream(&text, &len) : NULL;
    if (f) {
        nn_ir_print(f, g);
        fclose(f);
        h = nnrt_fnv1a(h, text, len);
    }
    free(text);
    return h;
}
