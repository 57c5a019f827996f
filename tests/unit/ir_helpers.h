// Test helpers shared by the ir tests: shapes from short specs ("N,256"),
// sources in one call, and the type string of a node.
#ifndef NN_TEST_IR_HELPERS_H
#define NN_TEST_IR_HELPERS_H

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

// "N,256" -> [N, 256]; "" -> scalar. Names become the graph's symbols.
static inline NnShape shp(NnGraph *g, const char *spec)
{
    NnShape s = {0};
    const char *p = spec;
    while (*p) {
        char tok[32];
        size_t n = strcspn(p, ",");
        memcpy(tok, p, n);
        tok[n] = 0;
        s.dim[s.rank++] = isdigit((unsigned char)tok[0]) ? atoll(tok) : nn_sym_dim(g, tok);
        p += n;
        if (*p == ',')
            p++;
    }
    return s;
}

static inline NnId src(NnGraph *g, NnOp op, const char *name, NnDType dt, const char *spec)
{
    NnShape s = shp(g, spec);
    NnLoc loc = {0};
    return nn_ir_source(g, op, name, dt, &s, loc);
}

static inline NnId par(NnGraph *g, const char *name, NnDType dt, const char *spec)
{
    return src(g, NN_OP_PARAM, name, dt, spec);
}

static inline const char *type_of(NnGraph *g, NnId id)
{
    static char buf[128];
    NN_ASSERT(id >= 0);
    return nn_type_str(g, g->nodes[id].dtype, &g->nodes[id].shape, buf, sizeof buf);
}

#endif
