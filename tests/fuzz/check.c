// Fuzz target: a .nn script through what `nnc check` runs (parse, names, every
// model lowered, every train block lowered), plus the optimization passes
// `nnc train` would run on the step graph. Data blocks are not loaded (their
// files are the other targets' business): literals and field expressions are
// lowered, and train blocks get data fields made up from the model's declared
// input and result types.
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "lower.h"
#include "pass.h"

// A field of one sample shaped like a declared type, batch dim first dropped:
// numbers stay (when small), names become 3.
static NnField field_like(const char *name, const NnAst *type, NnDType dt)
{
    NnField f = {name, dt, {.rank = 1, .dim = {3}}};
    if (!type || !type->has_dims || type->kids.count < 1 || type->kids.count > NN_MAX_RANK)
        return f;
    f.sample.rank = type->kids.count - 1;
    for (int k = 1; k < type->kids.count; k++) {
        const NnAst *d = type->kids.items[k];
        bool small = d->kind == NN_AST_NUM && d->num >= 1 && d->num <= 64;
        f.sample.dim[k - 1] = small ? (int64_t)d->num : 3;
    }
    return f;
}

static void lower_train(NnCtx *c, const NnProgram *p, const NnAst *t)
{
    const NnDecl *md = nn_sema_find(p, t->name);
    const NnAst *m = md && md->ast->kind == NN_AST_MODEL ? md->ast : NULL;
    const NnAst *in = m && m->params.count ? m->params.items[0]->type : NULL;
    // Two label kinds: class indices, and targets shaped like the model's result.
    NnField fields[2][2] = {
        {field_like("x", in, NN_DT_F32), {"y", NN_DT_I32, {0}}},
        {field_like("x", in, NN_DT_F32), field_like("y", m ? m->type : NULL, NN_DT_F32)},
    };
    for (int i = 0; i < 2; i++) {
        NnTrainSpec spec;
        if (nn_lower_train(c, p, t, fields[i], 2, NULL, 0, &spec) && spec.step)
            spec.step = nn_passes_run(spec.step, NULL);
        nn_train_spec_fini(&spec);
    }
}

// A data block statement: a literal becomes a tensor; an expression over the
// fields (x = flatten(x) / 255) is lowered against made-up full-size fields.
static void lower_data_stmt(NnCtx *c, const NnProgram *p, const NnAst *s)
{
    if (s->kind != NN_AST_ASSIGN || !s->a)
        return;
    bool literal = false;
    NnTensor *t = nn_lower_literal(c, s->a, &literal);
    nnrt_tensor_free(t);
    if (literal)
        return;
    NnField fields[2] = {{"x", NN_DT_F32, {.rank = 3, .dim = {4, 2, 3}}},
                         {"y", NN_DT_I32, {.rank = 1, .dim = {4}}}};
    nn_graph_free(nn_lower_expr(c, p, s->a, fields, 2, 1));
}

int nn_fuzz_check(const uint8_t *data, size_t size)
{
    NnCtx c;
    nn_ctx_init(&c, NULL);
    NnSource *src = nn_arena_alloc(c.arena, sizeof *src);
    src->name = "fuzz.nn";
    src->text = nn_arena_strndup(c.arena, (const char *)data, size);
    src->len = size;
    NnAst *ast = nn_parse(&c, src);
    NnProgram *p = c.diags.nerrors ? NULL : nn_sema(&c, ast);
    if (p && !c.diags.nerrors) {
        for (int i = 0; i < ast->kids.count; i++) {
            const NnAst *d = ast->kids.items[i];
            if (d->kind == NN_AST_MODEL)
                nn_graph_free(nn_lower_model(&c, p, d, false));
            for (int k = 0; d->kind == NN_AST_DATA && k < d->kids.count; k++)
                lower_data_stmt(&c, p, d->kids.items[k]);
        }
        for (int i = 0; i < p->ntrains; i++)
            lower_train(&c, p, p->trains[i]);
    }
    nn_ctx_fini(&c);
    return 0;
}

#ifdef NN_FUZZ_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return nn_fuzz_check(data, size); }
#endif
