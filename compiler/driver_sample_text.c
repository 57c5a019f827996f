// `nnc sample FILE --weights W [--count 20] [--temperature 0.8] [--seed 1]`
// for language models: the train block's data come from text(...), and its
// model maps a window of byte ids (i32 [N, seq]) to scores over the
// vocabulary ([N, V], logits as cross_entropy takes them). Starting from a
// window of newlines, it draws one byte at a time from softmax(scores / T),
// slides the window, and prints `count` lines (words, for a word list;
// runtime/sample.h, which built programs' `sample` shares). The output
// depends only on the weights, the seed and the temperature.
#include "driver.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "sample.h"

bool nn_sample_wants_text(const NnProgram *p)
{
    const NnDecl *d = p->ntrains ? nn_sema_find(p, p->trains[0]->name2) : NULL;
    for (int k = 0; d && d->ast->kind == NN_AST_DATA && k < d->ast->kids.count; k++) {
        const NnAst *st = d->ast->kids.items[k];
        if (st->kind == NN_AST_ASSIGN && st->a && st->a->kind == NN_AST_CALL &&
            st->a->a->kind == NN_AST_NAME && !strcmp(st->a->a->name, "text"))
            return true;
    }
    return false;
}

// Runs the model on one window (the batch of one that x was prepared for).
typedef struct TextRun {
    const NnBackend *be;
    NnExec *x;
    NnVars *vars;
    NnTensor *win;
} TextRun;

static NnStatus score_window(void *ctx, const int32_t *window, const float **scores)
{
    TextRun *r = ctx;
    memcpy(r->win->data, window, (size_t)r->win->numel * sizeof(int32_t));
    NnTensor *res[1];
    NnStatus st = r->be->run(r->x, r->vars, &r->win, res);
    if (st == NN_OK)
        *scores = res[0]->data;
    return st;
}

// The model's first input must take the windows and its output score each
// byte of the vocabulary; anything else cannot be sampled as text.
static bool fits_text(NnCtx *c, const NnGraph *g, const NnAst *model, int64_t seq, int vocab,
                      NnId *in_id)
{
    const NnAst *f = model->params.items[0];
    const NnNode *in = NULL;
    for (int k = 0; k < g->count && !in; k++)
        if (g->nodes[k].op == NN_OP_INPUT && !strcmp(g->nodes[k].attr.name, f->name))
            in = &g->nodes[k], *in_id = k;
    const NnNode *out = nn_node(g, g->outputs[0].id);
    char ti[128] = "nothing", to[128];
    if (in)
        nn_type_str(g, in->dtype, &in->shape, ti, sizeof ti);
    nn_type_str(g, out->dtype, &out->shape, to, sizeof to);
    if (!in || in->dtype != NN_DT_I32 || in->shape.rank != 2 || in->shape.dim[1] != seq) {
        nn_error(&c->diags, f->loc, "to sample text, '%s' must take windows i32[N, %lld] of the "
                 "text's byte ids; it takes %s", model->name, (long long)seq, ti);
        return false;
    }
    if (out->dtype != NN_DT_F32 || out->shape.rank != 2 || out->shape.dim[1] < vocab) {
        nn_error(&c->diags, model->loc, "to sample text, '%s' must score the %d characters of "
                 "the vocabulary (f32[N, %d]); it returns %s", model->name, vocab, vocab, to);
        return false;
    }
    return true;
}

int nn_cmd_sample_text(NnCtx *c, const NnProgram *p, NnOptions *o)
{
    const NnBackend *be = nn_driver_backend(o);
    if (!be)
        return 1;
    NnTrainSpec spec = {0};
    NnSplits splits = {0};
    NnVars vars;
    nnrt_vars_init(&vars);
    NnGraph *g = NULL;
    NnExec *x = NULL;
    NnTensor *win = NULL;
    int rc = 1;
    if (!nn_driver_setup(c, p, o, false, &spec, &splits))
        goto done;
    const NnrtDataset *train = nn_splits_get(&splits, "train");
    if (!train->vocab) {
        nn_error(&c->diags, spec.ast->loc, "sampling text needs a train split made by text()");
        goto done;
    }
    const NnAst *model = nn_sema_find(p, spec.model)->ast;
    int64_t seq = train->x->shape[1];
    int vocab = train->num_classes;
    NnId in_id = -1;
    if (model->params.count != 1) {
        nn_error(&c->diags, model->loc, "to sample text, '%s' must take one input (the window)",
                 spec.model);
        goto done;
    }
    if (!(g = nn_lower_model(c, p, model, false)) || !fits_text(c, g, model, seq, vocab, &in_id))
        goto done;
    if (nnrt_safetensors_load(o->weights, &vars, NULL) != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        goto done;
    }
    NnPassOptions po = o->passes;
    if (!po.stop)
        po.stop = strcmp(be->name, "interp") == 0 ? "opt" : "fused";
    g = nn_passes_run(g, &po);
    NnExecOptions eo = {.threads = o->threads, .verbose = o->verbose};
    win = nnrt_tensor_new(NN_DT_I32, 2, (int64_t[]){1, seq});
    if (!g || !win || !(x = be->prepare(g, &eo))) {
        nn_error(&c->diags, model->loc, "cannot prepare '%s': %s", spec.model, nnrt_errmsg());
        goto done;
    }
    TextRun run = {be, x, &vars, win};
    if (nnrt_sample_text(train, o->count > 0 ? o->count : 20,
                         o->has_temperature ? o->temperature : 1.0,
                         o->has_seed ? o->seed : spec.seed, score_window, &run,
                         stdout) != NN_OK) {
        nn_error(&c->diags, model->loc, "cannot run '%s': %s", spec.model, nnrt_errmsg());
        goto done;
    }
    rc = 0;
done:
    nnrt_tensor_free(win);
    if (x)
        be->free(x);
    nn_graph_free(g);
    nnrt_vars_fini(&vars);
    nn_splits_fini(&splits);
    nn_train_spec_fini(&spec);
    return rc;
}
