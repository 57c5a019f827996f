// Expressions typed at the REPL (or passed to nn_session_eval): one expression
// becomes a graph with output "value". Data fields written as paths
// (fashion.test.x), session variables and list literals ([1, 2]) are INPUTs,
// each with the tensor that feeds it; the models it calls bring their
// PARAM/STATE nodes, named as in training (mlp.dense1.w), so the session's
// weights table feeds them. Nothing here runs a graph; the session does.
#include "elab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct QueryEnv {
    NnGraph *g;
    NnQueryResolve resolve;
    void *ctx;
    const char **names; // INPUTs made so far, in id order
    NnId *ids;
    const NnTensor **feeds;
    int count, cap;
    NnCtx *c;
    NnTensor **literals; // list literals met, owned until nn_query_fini
    int nliterals;
} QueryEnv;

#define LITERAL_MAX 64

// fashion.test.x -> one NAME "fashion.test.x" (in place), so the elaborator
// asks the resolver for it like any other unknown name.
// Also turns each list literal (optionally in i32(...) or f32(...)) into a
// NAME "[literal K]" whose tensor Q keeps.
static void flatten_paths(QueryEnv *Q, NnAst *e, int depth)
{
    NnCtx *c = Q->c;
    if (!e || depth > 2000)
        return;
    bool wrapped = e->kind == NN_AST_CALL && e->a->kind == NN_AST_NAME && e->kids.count == 1 &&
                   e->kids.items[0]->kind == NN_AST_LIST &&
                   (!strcmp(e->a->name, "i32") || !strcmp(e->a->name, "f32"));
    if ((e->kind == NN_AST_LIST || wrapped) && Q->nliterals < LITERAL_MAX) {
        bool literal;
        int errors = c->diags.nerrors;
        NnTensor *t = nn_lower_literal(c, e, &literal);
        if (t) {
            Q->literals[Q->nliterals] = t;
            e->kind = NN_AST_NAME;
            e->name = nn_arena_printf(c->arena, "[literal %d]", Q->nliterals++);
            e->kids = (NnAstList){0};
            e->a = NULL;
            return;
        }
        if (literal || c->diags.nerrors > errors)
            return; // a ragged or non-numeric list: reported
    }
    if (e->kind == NN_AST_FIELD) {
        const NnAst *root = e;
        while (root->kind == NN_AST_FIELD)
            root = root->a;
        if (root->kind == NN_AST_NAME) {
            const char *path = root->name;
            const NnAst *parts[64];
            int k = 0;
            for (const NnAst *f = e; f->kind == NN_AST_FIELD && k < 64; f = f->a)
                parts[k++] = f;
            while (k > 0)
                path = nn_arena_printf(c->arena, "%s.%s", path, parts[--k]->name);
            e->kind = NN_AST_NAME;
            e->name = path;
            e->a = NULL;
            return;
        }
    }
    flatten_paths(Q, e->a, depth + 1);
    flatten_paths(Q, e->b, depth + 1);
    flatten_paths(Q, e->type, depth + 1);
    for (int i = 0; i < e->kids.count; i++)
        flatten_paths(Q, e->kids.items[i], depth + 1);
    for (int i = 0; i < e->params.count; i++)
        flatten_paths(Q, e->params.items[i], depth + 1);
}

static bool resolve_input(void *ctx, const char *name, NnLoc loc, Val *out)
{
    QueryEnv *Q = ctx;
    for (int i = 0; i < Q->count; i++)
        if (!strcmp(Q->names[i], name)) {
            *out = v_tensor(Q->ids[i]);
            return true;
        }
    const NnTensor *t = NULL;
    int k;
    if (sscanf(name, "[literal %d]", &k) == 1 && k >= 0 && k < Q->nliterals)
        t = Q->literals[k];
    else
        t = Q->resolve(Q->ctx, name);
    if (!t)
        return false;
    if (Q->count == Q->cap) {
        int cap = Q->cap ? Q->cap * 2 : 8;
        const char **names = nn_arena_alloc(Q->c->arena, (size_t)cap * sizeof *names);
        NnId *ids = nn_arena_alloc(Q->c->arena, (size_t)cap * sizeof *ids);
        const NnTensor **feeds = nn_arena_alloc(Q->c->arena, (size_t)cap * sizeof *feeds);
        if (Q->count) {
            memcpy(names, Q->names, (size_t)Q->count * sizeof *names);
            memcpy(ids, Q->ids, (size_t)Q->count * sizeof *ids);
            memcpy(feeds, Q->feeds, (size_t)Q->count * sizeof *feeds);
        }
        Q->names = names;
        Q->ids = ids;
        Q->feeds = feeds;
        Q->cap = cap;
    }
    NnShape shape = {.rank = t->rank};
    memcpy(shape.dim, t->shape, sizeof(int64_t) * (size_t)t->rank);
    NnId id = nn_ir_source(Q->g, NN_OP_INPUT, nn_arena_strdup(Q->c->arena, name), t->dtype,
                           &shape, loc);
    if (id < 0) {
        nn_error(&Q->c->diags, loc, "'%s' cannot be used here: %s", name, nnrt_errmsg());
        *out = v_none();
        return true;
    }
    Q->names[Q->count] = name;
    Q->feeds[Q->count] = t;
    Q->ids[Q->count++] = id;
    *out = v_tensor(id);
    return true;
}

bool nn_lower_query(NnCtx *c, const NnProgram *p, NnAst *e, NnQueryResolve resolve, void *ctx,
                    NnQuery *out)
{
    memset(out, 0, sizeof *out);
    int errors = c->diags.nerrors;
    NnGraph *g = nn_graph_new();
    QueryEnv Q = {.g = g, .resolve = resolve, .ctx = ctx, .c = c};
    Q.literals = calloc(LITERAL_MAX, sizeof *Q.literals);
    out->literals = Q.literals;
    if (!Q.literals) {
        nn_error(&c->diags, e->loc, "out of memory");
        nn_graph_free(g);
        return false;
    }
    flatten_paths(&Q, e, 0);
    out->nliterals = Q.nliterals;
    if (c->diags.nerrors > errors) {
        nn_graph_free(g);
        return false;
    }
    Lower L;
    lower_init(&L, c, p, g);
    L.seed = 1;
    L.resolve = resolve_input;
    L.resolve_ctx = &Q;
    Env env = {0};
    Val v = eval(&L, &env, e);
    if (v.kind == V_NUM || v.kind == V_BOOL) {
        out->is_num = true;
        out->is_bool = v.kind == V_BOOL;
        out->is_int = v.kind == V_NUM && v.is_int;
        out->num = v.num;
        nn_graph_free(g);
        return true;
    }
    if (v.kind != V_TENSOR) {
        if (v.kind != V_NONE) {
            char b[64];
            nn_error(&c->diags, e->loc, "%s has no value to show", val_desc(&L, v, b, sizeof b));
        }
        nn_graph_free(g);
        return false;
    }
    if (c->diags.nerrors > errors) {
        nn_graph_free(g);
        return false;
    }
    nn_graph_add_output(g, "value", v.id);
    out->graph = g;
    out->inputs = Q.names;
    out->feeds = Q.feeds;
    out->ninputs = Q.count;
    out->vars = L.vars;
    out->nvars = L.nvars;
    return true;
}

void nn_query_fini(NnQuery *q)
{
    for (int i = 0; i < q->nliterals; i++)
        nnrt_tensor_free(q->literals[i]);
    free(q->literals);
    nn_graph_free(q->graph);
    memset(q, 0, sizeof *q);
}
