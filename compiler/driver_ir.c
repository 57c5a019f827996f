// `nnc check`, `nnc ir --stage S` and `nnc augment`. check lowers everything
// a run would (so shape errors surface) and prints nothing on success; ir
// prints one stage of the pipeline; augment writes what the model would see.
#include "driver.h"

#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "flops.h"

#ifdef NN_WITH_LLVM
bool nn_llvm_dump(const NnGraph *g, const int64_t *symv, bool asm_, FILE *out);
#endif

void nn_driver_print_flops(FILE *out, const char *what, const NnGraph *g, int64_t batch)
{
    int64_t symv[NN_MAX_SYMS];
    for (int k = 0; k < NN_MAX_SYMS; k++)
        symv[k] = batch;
    NnFlops f = nn_graph_flops(g, symv);
    double b = batch > 0 ? (double)batch : 1;
    fprintf(out, "%s: %d nodes, %.4g MFLOP per step at batch %lld (%.4g MFLOP per sample: "
            "%.4g in matmuls and convolutions, %.4g elementwise, %.4g in reductions)\n",
            what, f.nodes, f.total * 1e-6, (long long)batch, f.total * 1e-6 / b,
            f.contract * 1e-6 / b, f.elem * 1e-6 / b, f.reduce * 1e-6 / b);
}

// Prints g, or with --stats its size and FLOPs at the training batch.
static void show(const NnOptions *o, const NnGraph *g, int64_t batch)
{
    if (o->stats)
        nn_driver_print_flops(stdout, o->stage, g, batch);
    else
        nn_ir_print(stdout, g);
}

// Models of a file without a train block: each lowered on its own.
static int models_only(NnCtx *c, const NnProgram *p, const NnAst *ast, NnOptions *o)
{
    NnGraph *last = NULL;
    for (int i = 0; i < ast->kids.count; i++) {
        const NnAst *d = ast->kids.items[i];
        if (d->kind != NN_AST_MODEL)
            continue;
        nn_graph_free(last);
        last = nn_lower_model(c, p, d, false);
    }
    int rc = c->diags.nerrors ? 1 : 0;
    if (!rc && o->stage && strcmp(o->stage, "ir") == 0 && last)
        show(o, last, 1);
    else if (!rc && o->stage) {
        if (!last)
            nn_error(&c->diags, (NnLoc){0}, "%s has no model to show", o->file);
        else
            nn_error(&c->diags, (NnLoc){0}, "--stage %s needs a train block (only 'ast' and 'ir' "
                     "work on a file with models alone)", o->stage);
        rc = 1;
    }
    nn_graph_free(last);
    return rc;
}

int nn_cmd_ir(NnCtx *c, const NnProgram *p, NnAst *ast, NnOptions *o)
{
    static const char *const stages[] = {"ast", "ir", "grad", "opt", "fused", "llvm", "asm"};
    bool known = !o->stage;
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++)
        known = known || !strcmp(o->stage, stages[i]);
    if (!known) {
        fprintf(stderr, "nnc: error: unknown stage '%s' (tokens, ast, ir, grad, opt, fused, llvm, "
                "asm)\n", o->stage);
        return 2;
    }
    if (o->stats && (!o->stage || !strcmp(o->stage, "ast") || !strcmp(o->stage, "llvm") ||
                     !strcmp(o->stage, "asm"))) {
        fprintf(stderr, "nnc: error: --stats counts a graph: use it with --stage ir, grad, opt "
                "or fused\n");
        return 2;
    }
    if (o->stage && !strcmp(o->stage, "ast")) {
        nn_ast_print(stdout, ast);
        return 0;
    }
    if (p->ntrains == 0)
        return models_only(c, p, ast, o);
    NnTrainSpec spec = {0};
    NnSplits splits = {0};
    int rc = 1;
    // check and ir need shapes, not data: nothing is generated or transformed.
    if (!nn_driver_setup(c, p, o, true, &spec, &splits))
        goto done;
    // check reports what train would, so also the augment list.
    NnrtAugment aug = {0};
    if (!nn_driver_augment_opts(c, spec.augment, &aug))
        goto done;
    rc = 0;
    if (!o->stage)
        goto done;
    // N as a training batch has it: the batch, or all of a smaller split.
    int64_t n = nn_splits_get(&splits, "train")->count;
    int64_t batch = n > 0 && n < spec.batch ? n : spec.batch;
    if (!strcmp(o->stage, "ir")) {
        show(o, spec.forward, batch);
    } else if (!strcmp(o->stage, "grad")) {
        show(o, spec.step, batch);
    } else {
        NnPassOptions po = o->passes;
        po.stop = strcmp(o->stage, "opt") == 0 ? "opt" : "fused";
        spec.step = nn_passes_run(spec.step, &po);
        if (!strcmp(o->stage, "opt") || !strcmp(o->stage, "fused")) {
            show(o, spec.step, batch);
        } else {
#ifdef NN_WITH_LLVM
            int64_t symv[NN_MAX_SYMS];
            for (int k = 0; k < NN_MAX_SYMS; k++)
                symv[k] = batch;
            if (!nn_llvm_dump(spec.step, symv, !strcmp(o->stage, "asm"), stdout)) {
                nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
                rc = 1;
            }
#else
            nn_error(&c->diags, (NnLoc){0}, "this nnc was built without LLVM; --stage %s is "
                     "unavailable", o->stage);
            rc = 1;
#endif
        }
    }
done:
    nn_splits_fini(&splits);
    nn_train_spec_fini(&spec);
    return rc;
}

int nn_cmd_augment(NnCtx *c, const NnProgram *p, NnOptions *o)
{
    NnTrainSpec spec = {0};
    NnSplits splits = {0};
    int rc = 1;
    if (!nn_driver_setup(c, p, o, false, &spec, &splits))
        goto done;
    NnrtDataset *tr = nn_splits_get(&splits, "train");
    int64_t h = tr->img_h, w = tr->img_w;
    if (h <= 0 || w <= 0 || tr->x->dtype != NN_DT_F32) {
        nn_error(&c->diags, spec.ast->loc, "the training data are not images (no height/width)");
        goto done;
    }
    NnrtAugment a = {0};
    if (!nn_driver_augment_opts(c, spec.augment, &a))
        goto done;
    a.fill = nnrt_augment_fill(tr);
    int64_t n = tr->count < 32 ? tr->count : 32, feat = tr->x->numel / tr->count;
    float *buf = malloc((size_t)(n * feat) * sizeof *buf);
    if (!buf) {
        nn_error(&c->diags, (NnLoc){0}, "out of memory");
        goto done;
    }
    memcpy(buf, tr->x->data, (size_t)(n * feat) * sizeof *buf);
    NnrtDataRng rng;
    nnrt_data_rng_seed(&rng, spec.seed, 0);
    NnStatus st = nnrt_augment_batch(&a, buf, n, feat, h, w, &rng);
    size_t len = strlen(o->output);
    bool pgm = len > 4 && !strcmp(o->output + len - 4, ".pgm");
    if (st == NN_OK)
        st = pgm ? nnrt_image_write_pgm(o->output, buf, n * (feat / (h * w)), h, w, 8, 0, 0)
                 : nnrt_image_write_png(o->output, buf, n * (feat / (h * w)), h, w, 8, 0, 0);
    free(buf);
    if (st != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        goto done;
    }
    if (!o->quiet)
        printf("wrote %lld augmented samples to %s\n", (long long)n, o->output);
    rc = 0;
done:
    nn_splits_fini(&splits);
    nn_train_spec_fini(&spec);
    return rc;
}
