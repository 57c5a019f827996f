// `nnc sample FILE --weights W [--count 20] [--temperature 0.8] [--seed 1]`
// for language models: the train block's data come from text(...), and its
// model maps a window of byte ids (i32 [N, seq]) to scores over the
// vocabulary ([N, V], logits as cross_entropy takes them). Starting from a
// window of newlines, it draws one byte at a time from softmax(scores / T),
// slides the window, and prints `count` lines (words, for a word list). The
// output depends only on the weights, the seed and the temperature.
#include "driver.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

#define SAMPLE_MAX_LINE 200 // bytes; a model that never ends a line is cut here

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

// Draws an id below v from softmax(s / temp); temp 0 takes the largest score.
static int draw(const float *s, int v, double temp, NnrtDataRng *rng, double *p)
{
    int best = 0;
    for (int i = 1; i < v; i++)
        best = s[i] > s[best] ? i : best;
    if (temp == 0)
        return best;
    double total = 0;
    for (int i = 0; i < v; i++)
        total += p[i] = exp(((double)s[i] - s[best]) / temp);
    double u = nnrt_data_rng_uniform(rng) * total;
    for (int i = 0; i < v; i++)
        if ((u -= p[i]) < 0)
            return i;
    return best;
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
    double *prob = NULL;
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
    prob = malloc((size_t)vocab * sizeof *prob);
    if (!g || !win || !prob || !(x = be->prepare(g, &eo))) {
        nn_error(&c->diags, model->loc, "cannot prepare '%s': %s", spec.model, nnrt_errmsg());
        goto done;
    }
    // Lines start after a newline; a text without one starts from id 0.
    const char *nl = memchr(train->vocab, '\n', (size_t)vocab);
    int32_t start = nl ? (int32_t)(nl - train->vocab) : 0, *w = win->data;
    for (int64_t t = 0; t < seq; t++)
        w[t] = start;
    NnrtDataRng rng;
    nnrt_data_rng_seed(&rng, o->has_seed ? o->seed : spec.seed, 0);
    double temp = o->has_temperature ? o->temperature : 1.0;
    int64_t count = o->count > 0 ? o->count : 20;
    char line[SAMPLE_MAX_LINE + 1];
    int empty = 0; // empty lines drawn in a row
    for (int64_t made = 0; made < count;) {
        int len = 0;
        for (;;) {
            NnTensor *res[1];
            if (be->run(x, &vars, &win, res) != NN_OK) {
                nn_error(&c->diags, model->loc, "cannot run '%s': %s", spec.model,
                         nnrt_errmsg());
                goto done;
            }
            int id = draw(res[0]->data, vocab, temp, &rng, prob);
            memmove(w, w + 1, (size_t)(seq - 1) * sizeof *w);
            w[seq - 1] = id;
            if (train->vocab[id] == '\n' || len == SAMPLE_MAX_LINE)
                break;
            line[len++] = train->vocab[id];
        }
        // A newline right after a newline would print an empty word: draw
        // on, but not forever for a model that only ends lines.
        if (len == 0 && nl && ++empty < SAMPLE_MAX_LINE)
            continue;
        empty = 0;
        fwrite(line, 1, (size_t)len, stdout);
        putchar('\n');
        made++;
    }
    rc = 0;
done:
    free(prob);
    nnrt_tensor_free(win);
    if (x)
        be->free(x);
    nn_graph_free(g);
    nnrt_vars_fini(&vars);
    nn_splits_fini(&splits);
    nn_train_spec_fini(&spec);
    return rc;
}
