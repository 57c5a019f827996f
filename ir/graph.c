// Graph storage and the builders. nn_ir_add is the one door through which nodes
// enter a graph: it checks arity and runs the op's shape rule (from ops.def).
#include "graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rules.h"

typedef bool (*ShapeFn)(NnGraph *, NnNode *);
static const ShapeFn shape_rules[NN_OP_COUNT] = {
#define NN_OP(tag, name, arity, flags, attrs) [NN_OP_##tag] = shape_##name,
#include "ops.def"
#undef NN_OP
};

NnGraph *nn_graph_new(void)
{
    NnArena *a = nn_arena_new();
    NnGraph *g = nn_arena_alloc(a, sizeof *g);
    g->arena = a;
    return g;
}

void nn_graph_free(NnGraph *g)
{
    if (g)
        nn_arena_free(g->arena);
}

void nn_set_err(NnGraph *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
}

int64_t nn_sym_dim(NnGraph *g, const char *name)
{
    for (int k = 0; k < g->nsyms; k++)
        if (strcmp(g->syms[k], name) == 0)
            return -(int64_t)k - 1;
    if (g->nsyms >= NN_MAX_SYMS) {
        nn_set_err(g, "too many named dimensions: '%s' would be the %dth, the most is %d", name,
                   g->nsyms + 1, NN_MAX_SYMS);
        return 0;
    }
    g->syms[g->nsyms] = nn_arena_strdup(g->arena, name);
    return -(int64_t)(g->nsyms++) - 1;
}

// Grows an arena array: arenas never free, so growth copies (amortized 2x).
static void *grow(NnArena *a, void *old, int count, int *cap, size_t elem)
{
    int ncap = *cap ? *cap * 2 : 64;
    void *p = nn_arena_alloc(a, (size_t)ncap * elem);
    if (count)
        memcpy(p, old, (size_t)count * elem);
    *cap = ncap;
    return p;
}

NnId nn_ir_add(NnGraph *g, NnOp op, const NnId *in, int nin, const NnAttr *attr, NnLoc loc)
{
    NN_ASSERT(op < NN_OP_COUNT);
    int arity = nn_op_arity(op);
    NN_ASSERT(arity < 0 || arity == nin);
    for (int i = 0; i < nin; i++) {
        if (in[i] < 0) {
            // An operand already failed; its error was reported. Stay quiet.
            nn_set_err(g, "operand failed");
            return -1;
        }
        NN_ASSERT(in[i] < g->count);
    }
    if (g->count == g->cap)
        g->nodes = grow(g->arena, g->nodes, g->count, &g->cap, sizeof(NnNode));
    NnNode *n = &g->nodes[g->count];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->nin = nin;
    n->in = nin ? nn_arena_alloc(g->arena, (size_t)nin * sizeof(NnId)) : NULL;
    if (nin)
        memcpy(n->in, in, (size_t)nin * sizeof(NnId));
    if (attr)
        n->attr = *attr;
    n->loc = loc;
    if (!shape_rules[op](g, n))
        return -1;
    return g->count++;
}

NnId nn_ir_source(NnGraph *g, NnOp op, const char *name, NnDType dt, const NnShape *s, NnLoc loc)
{
    NnAttr a = {0};
    a.name = name ? nn_arena_strdup(g->arena, name) : NULL;
    a.dtype = dt;
    if (s)
        a.shape = *s;
    return nn_ir_add(g, op, NULL, 0, &a, loc);
}

NnId nn_ir_const(NnGraph *g, double v, NnDType dt, NnLoc loc)
{
    NnAttr a = {0};
    a.value = v;
    a.dtype = dt;
    return nn_ir_add(g, NN_OP_CONST, NULL, 0, &a, loc);
}

NnId nn_ir_unary(NnGraph *g, NnOp op, NnId x, NnLoc loc) { return nn_ir_add(g, op, &x, 1, NULL, loc); }

NnId nn_ir_binary(NnGraph *g, NnOp op, NnId a, NnId b, NnLoc loc)
{
    NnId in[2] = {a, b};
    return nn_ir_add(g, op, in, 2, NULL, loc);
}

NnId nn_ir_select(NnGraph *g, NnId c, NnId a, NnId b, NnLoc loc)
{
    NnId in[3] = {c, a, b};
    return nn_ir_add(g, NN_OP_SELECT, in, 3, NULL, loc);
}

NnId nn_ir_reduce(NnGraph *g, NnOp op, NnId x, uint32_t axes, bool keep, NnLoc loc)
{
    NnAttr a = {0};
    a.axes = axes;
    a.keep = keep;
    return nn_ir_add(g, op, &x, 1, &a, loc);
}

NnId nn_ir_matmul(NnGraph *g, NnId x, NnId y, bool ta, bool tb, NnLoc loc)
{
    NnAttr a = {0};
    a.ta = ta;
    a.tb = tb;
    NnId in[2] = {x, y};
    return nn_ir_add(g, NN_OP_MATMUL, in, 2, &a, loc);
}

static NnId shaped(NnGraph *g, NnOp op, NnId x, const NnShape *s, NnLoc loc)
{
    NnAttr a = {0};
    a.shape = *s;
    return nn_ir_add(g, op, &x, 1, &a, loc);
}

NnId nn_ir_reshape(NnGraph *g, NnId x, const NnShape *s, NnLoc loc)
{
    return shaped(g, NN_OP_RESHAPE, x, s, loc);
}

NnId nn_ir_broadcast(NnGraph *g, NnId x, const NnShape *s, NnLoc loc)
{
    return shaped(g, NN_OP_BROADCAST, x, s, loc);
}

NnId nn_ir_sumto(NnGraph *g, NnId x, const NnShape *s, NnLoc loc)
{
    return shaped(g, NN_OP_SUMTO, x, s, loc);
}

NnId nn_ir_transpose(NnGraph *g, NnId x, const int *perm, NnLoc loc)
{
    NnAttr a = {0};
    memcpy(a.perm, perm, sizeof a.perm);
    return nn_ir_add(g, NN_OP_TRANSPOSE, &x, 1, &a, loc);
}

NnId nn_ir_cast(NnGraph *g, NnId x, NnDType dt, NnLoc loc)
{
    NnAttr a = {0};
    a.dtype = dt;
    return nn_ir_add(g, NN_OP_CAST, &x, 1, &a, loc);
}

void nn_graph_add_output(NnGraph *g, const char *name, NnId id)
{
    if (g->noutputs == g->outcap)
        g->outputs = grow(g->arena, g->outputs, g->noutputs, &g->outcap, sizeof(NnOutput));
    g->outputs[g->noutputs].name = nn_arena_strdup(g->arena, name);
    g->outputs[g->noutputs++].id = id;
}

NnId nn_graph_output(const NnGraph *g, const char *name)
{
    for (int i = 0; i < g->noutputs; i++)
        if (strcmp(g->outputs[i].name, name) == 0)
            return g->outputs[i].id;
    return -1;
}

void nn_graph_add_update(NnGraph *g, NnId var, NnId value)
{
    if (g->nupdates == g->updcap)
        g->updates = grow(g->arena, g->updates, g->nupdates, &g->updcap, sizeof(NnUpdate));
    g->updates[g->nupdates].var = var;
    g->updates[g->nupdates++].value = value;
}

char *nn_type_str(const NnGraph *g, NnDType dt, const NnShape *s, char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n, "%s", nnrt_dtype_name(dt));
    if (s->rank == 0)
        return buf;
    for (int i = 0; i < s->rank && len < n; i++) {
        const char *sep = i == 0 ? "[" : ", ";
        int64_t d = s->dim[i];
        if (d < 0 && g && -d - 1 < g->nsyms)
            len += (size_t)snprintf(buf + len, n - len, "%s%s", sep, g->syms[-d - 1]);
        else if (d < 0)
            len += (size_t)snprintf(buf + len, n - len, "%s?%lld", sep, (long long)(-d - 1));
        else
            len += (size_t)snprintf(buf + len, n - len, "%s%lld", sep, (long long)d);
    }
    if (len < n)
        snprintf(buf + len, n - len, "]");
    return buf;
}

bool nn_shape_eq(const NnShape *a, const NnShape *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    return true;
}

void nn_shape_bind(const NnShape *s, const int64_t *symv, int64_t *out)
{
    for (int i = 0; i < s->rank; i++)
        out[i] = s->dim[i] < 0 ? symv[-s->dim[i] - 1] : s->dim[i];
}
