// Data-block expressions: literal tensors written as nested lists, and
// field transforms or generators (x = flatten(x) / 255, y = sin(x) + ...)
// lowered to small graphs that the driver runs once per split.
#include "elab.h"

#include <math.h>
#include <string.h>

typedef struct FieldEnv {
    const NnField *fields;
    int nfields;
    NnId *ids;
} FieldEnv;

static bool resolve_field(void *ctx, const char *name, NnLoc loc, Val *out)
{
    FieldEnv *F = ctx;
    for (int i = 0; i < F->nfields; i++)
        if (strcmp(F->fields[i].name, name) == 0) {
            *out = v_tensor(F->ids[i]);
            return true;
        }
    return false;
}

NnGraph *nn_lower_expr(NnCtx *c, const NnProgram *p, const NnAst *e, const NnField *fields,
                       int nfields, uint64_t seed)
{
    NnGraph *g = nn_graph_new();
    Lower L;
    lower_init(&L, c, p, g);
    L.seed = seed;
    FieldEnv F = {fields, nfields, nn_arena_alloc(c->arena, (size_t)(nfields + 1) * sizeof(NnId))};
    for (int i = 0; i < nfields; i++)
        F.ids[i] = nn_ir_source(g, NN_OP_INPUT, fields[i].name, fields[i].dtype, &fields[i].sample,
                                e->loc);
    L.resolve = resolve_field;
    L.resolve_ctx = &F;
    Env env = {0};
    Val v = eval(&L, &env, e);
    NnId id = v.kind == V_NUM ? as_tensor(&L, v, NN_DT_F32, e->loc) : v.id;
    if (v.kind == V_NONE || id < 0 || (v.kind != V_TENSOR && v.kind != V_NUM)) {
        if (v.kind != V_NONE)
            nn_error(&c->diags, e->loc, "a data field must be a tensor");
        nn_graph_free(g);
        return NULL;
    }
    nn_graph_add_output(g, "value", id);
    return g;
}

// Walks a nested list, recording the shape on first visit and checking it after.
// i32 data (class labels) must be whole numbers that fit: 1.5 would otherwise
// be truncated to class 1 without a word.
static bool walk(NnCtx *c, const NnAst *e, int depth, NnShape *shape, bool *shaped, double *vals,
                 int64_t *n, int64_t cap, NnDType dt)
{
    if (e->kind == NN_AST_LIST) {
        if (depth >= NN_MAX_RANK) {
            nn_error(&c->diags, e->loc, "list nested deeper than %d levels", NN_MAX_RANK);
            return false;
        }
        if (!*shaped || depth >= shape->rank) {
            if (*shaped) {
                nn_error(&c->diags, e->loc, "ragged list: expected a number here");
                return false;
            }
            shape->rank = depth + 1;
            shape->dim[depth] = e->kids.count;
        } else if (shape->dim[depth] != e->kids.count) {
            nn_error(&c->diags, e->loc, "ragged list: %d elements here, %lld before",
                     e->kids.count, (long long)shape->dim[depth]);
            return false;
        }
        for (int i = 0; i < e->kids.count; i++)
            if (!walk(c, e->kids.items[i], depth + 1, shape, shaped, vals, n, cap, dt))
                return false;
        if (e->kids.count == 0)
            *shaped = true;
        return true;
    }
    double sign = 1;
    if (e->kind == NN_AST_UNARY && e->op == NN_AOP_NEG) {
        sign = -1;
        e = e->a;
    }
    if (e->kind != NN_AST_NUM) {
        nn_error(&c->diags, e->loc, "data lists may hold numbers only");
        return false;
    }
    double v = sign * e->num;
    if (dt == NN_DT_I32 && (v != floor(v) || v < -2147483648.0 || v > 2147483647.0)) {
        nn_error(&c->diags, e->loc, "i32 data must be whole numbers from -2147483648 to "
                 "2147483647, got %.17g", v);
        return false;
    }
    if (!*shaped)
        shape->rank = depth;
    *shaped = true;
    if (depth != shape->rank) {
        nn_error(&c->diags, e->loc, "ragged list: expected a list here");
        return false;
    }
    if (*n < cap && vals)
        vals[*n] = v;
    (*n)++;
    return true;
}

NnTensor *nn_lower_literal(NnCtx *c, const NnAst *e, bool *is_literal)
{
    NnDType dt = NN_DT_F32;
    if (e->kind == NN_AST_CALL && e->a->kind == NN_AST_NAME && e->kids.count == 1 &&
        e->kids.items[0]->kind == NN_AST_LIST &&
        (strcmp(e->a->name, "i32") == 0 || strcmp(e->a->name, "f32") == 0)) {
        dt = e->a->name[0] == 'i' ? NN_DT_I32 : NN_DT_F32;
        e = e->kids.items[0];
    }
    *is_literal = e->kind == NN_AST_LIST;
    if (!*is_literal)
        return NULL;
    NnShape shape = {0};
    bool shaped = false;
    int64_t n = 0;
    if (!walk(c, e, 0, &shape, &shaped, NULL, &n, 0, dt))
        return NULL;
    double *vals = nn_arena_alloc(c->arena, (size_t)(n + 1) * sizeof *vals);
    int64_t m = 0;
    shaped = false;
    walk(c, e, 0, &shape, &shaped, vals, &m, n, dt);
    NnTensor *t = nnrt_tensor_new(dt, shape.rank, shape.dim);
    if (!t) {
        nn_error(&c->diags, e->loc, "%s", nnrt_errmsg());
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        nnrt_tensor_set(t, i, vals[i]);
    return t;
}
