// `nnc sample FILE --weights W -o OUT.png`: draws from a trained generator.
// The train block's model is the generator and its `noise` declarations are
// the inputs; the generated samples become a picture: an image grid when the
// data are images, a scatter plot over the real data (with the modes-covered
// and high-quality report of plot.h) when the data are 2-D points
// (runtime/sample.h, which built programs' `sample` shares). The samples
// depend only on the weights and the seed (--seed, else the block's); the
// real data pictured are the training data (the block's seed).
// Language models are sampled by driver_sample_text.c; nn_cmd_sample is the
// one entry point and dispatches on the train block.
#include "driver.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "sample.h"

#define JUDGED_IMAGES 1000 // images the --judge classifier labels (the grid shows the first)

NnrtNoise nn_sample_noise(const NnAst *nz)
{
    const NnAst *init = nz->a;
    NnrtNoise r = {.normal = !strcmp(init->a->name, "normal"), .a = 0, .b = 1};
    double arg[2] = {0, 1};
    for (int i = 0; i < init->kids.count && i < 2; i++) {
        const NnAst *a = init->kids.items[i];
        const NnAst *v = a->kind == NN_AST_ARG ? a->a : a;
        double x = v->kind == NN_AST_UNARY ? -v->a->num : v->num;
        int k = a->kind != NN_AST_ARG ? i
              : !strcmp(a->name, "std") || !strcmp(a->name, "hi") ? 1 : 0;
        arg[k] = x;
    }
    r.a = arg[0];
    r.b = arg[1];
    return r;
}

// The noise that feeds generator input `f`: the one of the same name, else
// the declaration in the same position.
const NnAst *nn_sample_noise_for(const NnTrainSpec *spec, const NnAst *f, int i)
{
    for (int k = 0; k < spec->nnoise; k++)
        if (!strcmp(spec->noise[k]->name, f->name))
            return spec->noise[k];
    return i < spec->nnoise ? spec->noise[i] : NULL;
}

static bool run_generator(NnCtx *c, const NnBackend *be, NnGraph **g, NnVars *vars,
                          NnTensor **in, NnTensor **out, NnOptions *o, NnLoc loc);

// Has the classifier of o->judge (the model of its first train block, with
// the weights o->judge_weights) label the n generated samples: the mean
// top-class probability (softmax of its scores) and how many fall in each class.
static bool judge(NnCtx *c, NnOptions *o, const NnBackend *be, const NnTensor *gen, int64_t n,
                  char *const *class_names, int nnames)
{
    NnSource *src = nn_source_load(c->arena, &c->diags, o->judge);
    NnAst *ast = src ? nn_parse(c, src) : NULL;
    NnProgram *jp = ast && !c->diags.nerrors ? nn_sema(c, ast) : NULL;
    if (!jp || c->diags.nerrors)
        return false;
    const NnDecl *md = jp->ntrains ? nn_sema_find(jp, jp->trains[0]->name) : NULL;
    if (!md || md->ast->kind != NN_AST_MODEL) {
        nn_error(&c->diags, (NnLoc){0}, "--judge %s: no train block naming a classifier model",
                 o->judge);
        return false;
    }
    NnGraph *g = nn_lower_model(c, jp, md->ast, false);
    if (!g)
        return false;
    const NnNode *xin = NULL;
    for (int k = 0; k < g->count && !xin; k++)
        if (g->nodes[k].op == NN_OP_INPUT)
            xin = &g->nodes[k];
    int64_t feat = gen->numel / n, want = 1, shape[NN_MAX_RANK] = {n};
    for (int k = 1; xin && k < xin->shape.rank; k++)
        want *= shape[k] = xin->shape.dim[k];
    NnVars vars;
    nnrt_vars_init(&vars);
    NnTensor *in = NULL, *out = NULL;
    bool ok = false;
    if (!xin || xin->dtype != NN_DT_F32 || want != feat || md->ast->params.count != 1) {
        nn_error(&c->diags, md->ast->loc, "classifier '%s' should take one f32 input of %lld "
                 "values per sample, as the generator makes", md->ast->name, (long long)feat);
        goto done;
    }
    if (!(in = nnrt_tensor_new(NN_DT_F32, xin->shape.rank, shape))) {
        nn_error(&c->diags, (NnLoc){0}, "out of memory");
        goto done;
    }
    memcpy(in->data, gen->data, (size_t)gen->numel * sizeof(float));
    if (nnrt_safetensors_load(o->judge_weights, &vars, NULL) != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        goto done;
    }
    if (!run_generator(c, be, &g, &vars, &in, &out, o, md->ast->loc))
        goto done;
    int64_t classes = out->numel / n;
    int64_t *hist = calloc((size_t)classes, sizeof *hist);
    if (!hist) {
        nn_error(&c->diags, (NnLoc){0}, "out of memory");
        goto done;
    }
    double top_sum = 0;
    const float *s = out->data;
    for (int64_t i = 0; i < n; i++) {
        const float *r = s + i * classes;
        int64_t best = 0;
        for (int64_t k = 1; k < classes; k++)
            best = r[k] > r[best] ? k : best;
        double z = 0;
        for (int64_t k = 0; k < classes; k++)
            z += exp((double)r[k] - r[best]);
        top_sum += 1 / z;
        hist[best]++;
    }
    int used = 0;
    for (int64_t k = 0; k < classes; k++)
        used += hist[k] > 0;
    printf("judge %s: mean top-class probability %.3f; %d of %lld classes used\n", o->judge,
           top_sum / (double)n, used, (long long)classes);
    for (int64_t k = 0; k < classes; k++) {
        if (k < nnames && class_names)
            printf("  %-12s %lld\n", class_names[k], (long long)hist[k]);
        else
            printf("  class %-6lld %lld\n", (long long)k, (long long)hist[k]);
    }
    free(hist);
    ok = true;
done:
    nnrt_tensor_free(in);
    nnrt_tensor_free(out);
    nn_graph_free(g);
    nnrt_vars_fini(&vars);
    return ok;
}

static bool run_generator(NnCtx *c, const NnBackend *be, NnGraph **g, NnVars *vars,
                          NnTensor **in, NnTensor **out, NnOptions *o, NnLoc loc)
{
    NnPassOptions po = o->passes;
    if (!po.stop)
        po.stop = strcmp(be->name, "interp") == 0 ? "opt" : "fused";
    *g = nn_passes_run(*g, &po);
    NnExecOptions eo = {.threads = o->threads, .verbose = o->verbose};
    NnExec *x = be->prepare(*g, &eo);
    NnTensor *res[1];
    NnStatus st = x ? be->run(x, vars, in, res) : NN_ERR_RUNTIME;
    if (st == NN_OK && !(*out = nnrt_tensor_clone(res[0])))
        st = nnrt_fail(NN_ERR_NOMEM, "out of memory");
    if (st != NN_OK)
        nn_error(&c->diags, loc, "cannot run the generator: %s", nnrt_errmsg());
    if (x)
        be->free(x);
    return st == NN_OK;
}

int nn_cmd_sample(NnCtx *c, const NnProgram *p, NnOptions *o)
{
    const NnBackend *be = nn_driver_backend(o);
    if (!be)
        return 1;
    NnTrainSpec spec = {0};
    NnSplits splits = {0};
    NnVars vars;
    nnrt_vars_init(&vars);
    NnGraph *g = NULL;
    NnTensor *in[8] = {0}, *out = NULL;
    int rc = 1, nin = 0;
    // --seed draws other noise; the real data pictured are those the
    // generator was trained on (made with the block's seed), as a built
    // program has them.
    bool has_seed = o->has_seed;
    o->has_seed = false;
    bool set = nn_driver_setup(c, p, o, false, &spec, &splits);
    o->has_seed = has_seed;
    if (!set)
        goto done;
    NnLoc loc = spec.ast->loc;
    if (spec.nnoise == 0) {
        nn_error(&c->diags, loc, "nnc sample draws from a generator, but the train block of '%s' "
                 "declares no noise input (noise z: f32[N, 16] = normal())", spec.model);
        goto done;
    }
    const NnAst *model = nn_sema_find(p, spec.model)->ast;
    const NnrtDataset *real = nn_splits_get(&splits, "train");
    int64_t dfeat = real->count ? real->x->numel / real->count : 0;
    bool points = dfeat == 2;
    int64_t n = o->judge && !points ? JUDGED_IMAGES : nnrt_sample_count(real);
    if (model->params.count > 8) {
        nn_error(&c->diags, model->loc, "a generator takes at most 8 inputs");
        goto done;
    }
    if (!(g = nn_lower_model(c, p, model, false)))
        goto done;
    uint64_t seed = o->has_seed ? o->seed : spec.seed;
    for (int i = 0; i < model->params.count; i++, nin++) {
        const NnAst *f = model->params.items[i];
        const NnAst *nz = nn_sample_noise_for(&spec, f, i);
        const NnNode *fn = NULL;
        for (int k = 0; k < g->count && !fn; k++)
            if (g->nodes[k].op == NN_OP_INPUT && !strcmp(g->nodes[k].attr.name, f->name))
                fn = &g->nodes[k];
        bool fits = nz && fn && fn->dtype == NN_DT_F32 && fn->shape.rank == nz->type->kids.count;
        for (int k = 1; fits && k < fn->shape.rank; k++)
            fits = fn->shape.dim[k] == (int64_t)nz->type->kids.items[k]->num;
        if (!fits) {
            nn_error(&c->diags, f->loc, "generator input '%s' has no noise of its shape "
                     "to draw from (declare noise %s: f32[N, ...] in the train block)", f->name,
                     f->name);
            goto done;
        }
        int64_t shape[NN_MAX_RANK];
        shape[0] = n;
        for (int k = 1; k < fn->shape.rank; k++)
            shape[k] = fn->shape.dim[k];
        if (!(in[i] = nnrt_tensor_new(NN_DT_F32, fn->shape.rank, shape))) {
            nn_error(&c->diags, loc, "out of memory");
            goto done;
        }
        NnrtDataRng rng;
        nnrt_data_rng_seed(&rng, seed, (uint64_t)i);
        NnrtNoise noise = nn_sample_noise(nz);
        nnrt_noise_fill(&noise, in[i]->data, in[i]->numel, &rng);
    }
    if (nnrt_safetensors_load(o->weights, &vars, NULL) != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        goto done;
    }
    if (!run_generator(c, be, &g, &vars, in, &out, o, loc))
        goto done;
    int64_t feat = out->numel / n;
    NnStatus st;
    if (o->judge && (points || real->img_h <= 0)) {
        nn_error(&c->diags, loc, "--judge classifies generated images; '%s' makes %s",
                 spec.model, points ? "2-D points" : "samples that are not images");
        goto done;
    }
    st = nnrt_sample_picture(o->output, real, out->data, n, feat, spec.model, o->quiet);
    if (st == NN_ERR_SHAPE) {
        nn_error(&c->diags, loc, "%s", nnrt_errmsg());
        goto done;
    }
    if (st == NN_OK && o->judge &&
        !judge(c, o, be, out, n, real->class_names, real->num_classes))
        goto done;
    if (st != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < nin; i++)
        nnrt_tensor_free(in[i]);
    nnrt_tensor_free(out);
    nn_graph_free(g);
    nnrt_vars_fini(&vars);
    nn_splits_fini(&splits);
    nn_train_spec_fini(&spec);
    return rc;
}
