// stdlib batch_norm: batch statistics while training, running statistics in
// evaluation, the running statistics as layer state updated by the step (and
// only by the step), named by the layer path, and their round trip through a
// checkpoint, `nnc eval` and `--resume`.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ast.h"
#include "backend.h"
#include "checkpoint.h"
#include "lower.h"
#include "sema.h"
#include "testutil.h"

typedef struct Compiled {
    NnCtx c;
    NnProgram *p;
    NnTrainSpec spec;
    bool ok;
} Compiled;

// x: f32[N, 2, 2, 2] images and an f32 target of the same shape.
static void compile(Compiled *k, const char *body)
{
    memset(k, 0, sizeof *k);
    nn_ctx_init(&k->c, NULL);
    k->c.stdlib_dir = NN_SOURCE_DIR "/stdlib";
    NnSource *src = nn_source_from_string(k->c.arena, "t.nn", body);
    NnAst *ast = nn_parse(&k->c, src);
    cr_assert_eq(k->c.diags.nerrors, 0, "%s", nn_diags_text(&k->c.diags));
    k->p = nn_sema(&k->c, ast);
    cr_assert(k->p && k->c.diags.nerrors == 0, "%s", nn_diags_text(&k->c.diags));
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 3, .dim = {2, 2, 2}}},
                    {"y", NN_DT_F32, {.rank = 3, .dim = {2, 2, 2}}}};
    k->ok = nn_lower_train(&k->c, k->p, k->p->trains[0], f, 2, NULL, 0, &k->spec);
}

static const char *bn_model =
    "import std\n"
    "model net(x: f32[N, 2, 2, 2]) -> f32[N, 2, 2, 2] {\n"
    "    return batch_norm(x, momentum = 0.25)\n"
    "}\n"
    "data d { x = [[1]]\n y = [[1]] }\n"
    "train net on d {\n loss = mse(output, y)\n optimizer = sgd(lr = 0)\n}\n";

static const NnParamInit *var(const Compiled *k, const char *name)
{
    for (int i = 0; i < k->spec.nvars; i++)
        if (strcmp(k->spec.vars[i].name, name) == 0)
            return &k->spec.vars[i];
    return NULL;
}

Test(batchnorm, running_statistics_are_named_non_trainable_layer_state)
{
    Compiled k;
    compile(&k, bn_model);
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    const NnParamInit *m = var(&k, "net.batch_norm1.running_mean");
    const NnParamInit *v = var(&k, "net.batch_norm1.running_var");
    const NnParamInit *g = var(&k, "net.batch_norm1.gamma");
    cr_assert(m && v && g, "state and params named by the layer path");
    cr_assert(!m->trainable && m->model_state && !v->trainable && v->model_state);
    cr_assert(g->trainable && !g->model_state);
    cr_assert_str_eq(m->init, "zeros");
    cr_assert_str_eq(v->init, "ones");
    cr_assert(m->shape.rank == 1 && m->shape.dim[0] == 2);
    // No optimizer state for the running statistics: they are not trained.
    cr_assert_null(var(&k, "net.batch_norm1.running_mean/v"));
    // Only the step graph updates them; the eval graph has no updates at all.
    cr_assert_eq(k.spec.eval->nupdates, 0);
    int stat_updates = 0;
    for (int i = 0; i < k.spec.step->nupdates; i++) {
        const char *n = nn_node(k.spec.step, k.spec.step->updates[i].var)->attr.name;
        stat_updates += strstr(n, "running_") != NULL;
    }
    cr_assert_eq(stat_updates, 2);
    nn_train_spec_fini(&k.spec);
    nn_ctx_fini(&k.c);
}

// One step on a fixed batch: the step normalizes with the batch statistics
// (loss = mean(normalized^2) = var / (var + eps) ~ 1 against a zero target),
// moves the running statistics by `momentum`; evaluation then uses them.
Test(batchnorm, training_uses_batch_statistics_and_evaluation_running_ones)
{
    Compiled k;
    compile(&k, bn_model);
    cr_assert(k.ok, "%s", nn_diags_text(&k.c.diags));
    NnVars vars;
    nnrt_vars_init(&vars);
    for (int i = 0; i < k.spec.nvars; i++) {
        const NnParamInit *v = &k.spec.vars[i];
        NnTensor *t = nnrt_tensor_new(v->dtype, v->shape.rank, v->shape.dim);
        for (int64_t j = 0; j < t->numel; j++)
            nnrt_tensor_set(t, j, strcmp(v->init, "ones") == 0);
        nnrt_vars_put(&vars, v->name, t);
    }
    // 4 samples, channel 0 around 3, channel 1 around -1.
    int64_t shape[4] = {4, 2, 2, 2};
    NnTensor *x = nnrt_tensor_new(NN_DT_F32, 4, shape), *y = nnrt_tensor_new(NN_DT_F32, 4, shape);
    double sum[2] = {0}, sq[2] = {0}, all_sq = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        int c = (int)(i / 4 % 2);
        double v = (c ? -1 : 3) + 0.5 * sin(1.7 * (double)i) * (c + 1);
        nnrt_tensor_set(x, i, v);
        sum[c] += v;
        sq[c] += v * v;
        all_sq += v * v;
    }
    double mean[2], var_[2];
    for (int c = 0; c < 2; c++) {
        mean[c] = sum[c] / 16;
        var_[c] = sq[c] / 16 - mean[c] * mean[c];
    }
    const NnBackend *be = &nn_backend_interp;
    NnExecOptions eo = {.threads = 1};
    NnExec *step = be->prepare(k.spec.step, &eo), *eval = be->prepare(k.spec.eval, &eo);
    cr_assert(step && eval, "%s", nnrt_errmsg());
    NnTensor *in[2] = {x, y}, *out[2];
    cr_assert_eq(be->run(step, &vars, in, out), NN_OK, "%s", nnrt_errmsg());
    double want = (var_[0] / (var_[0] + 1e-5) + var_[1] / (var_[1] + 1e-5)) / 2;
    cr_assert_float_eq(nnrt_tensor_get(out[0], 0), want, 1e-4, "training loss %g, want %g",
                       nnrt_tensor_get(out[0], 0), want);
    NnTensor *rm = nnrt_vars_get(&vars, "net.batch_norm1.running_mean");
    NnTensor *rv = nnrt_vars_get(&vars, "net.batch_norm1.running_var");
    for (int c = 0; c < 2; c++) {
        cr_assert_float_eq(nnrt_tensor_get(rm, c), 0.25 * mean[c], 1e-5);
        cr_assert_float_eq(nnrt_tensor_get(rv, c), 0.75 + 0.25 * var_[c], 1e-5);
    }
    // Evaluation with the initial running statistics (0, 1) is the identity up
    // to eps, so the loss is mean(x^2); and it leaves the statistics alone.
    nnrt_tensor_set(rm, 0, 0);
    nnrt_tensor_set(rm, 1, 0);
    nnrt_tensor_set(rv, 0, 1);
    nnrt_tensor_set(rv, 1, 1);
    cr_assert_eq(be->run(eval, &vars, in, out), NN_OK, "%s", nnrt_errmsg());
    cr_assert_float_eq(nnrt_tensor_get(out[0], 0), all_sq / 32 / (1 + 1e-5), 1e-3);
    cr_assert_float_eq(nnrt_tensor_get(out[1], 0), nnrt_tensor_get(x, 0) / sqrt(1 + 1e-5), 1e-5);
    cr_assert_eq(nnrt_tensor_get(rm, 0), 0);
    // With running statistics equal to the batch's, evaluation reproduces the
    // training output.
    for (int c = 0; c < 2; c++) {
        nnrt_tensor_set(rm, c, mean[c]);
        nnrt_tensor_set(rv, c, var_[c]);
    }
    cr_assert_eq(be->run(eval, &vars, in, out), NN_OK, "%s", nnrt_errmsg());
    cr_assert_float_eq(nnrt_tensor_get(out[0], 0), want, 1e-4);
    be->free(step);
    be->free(eval);
    nnrt_tensor_free(x);
    nnrt_tensor_free(y);
    nnrt_vars_fini(&vars);
    nn_train_spec_fini(&k.spec);
    nn_ctx_fini(&k.c);
}

static void setup(void)
{
    tu_scratch_make("bn");
    cr_assert_eq(chdir(NN_SOURCE_DIR), 0);
}

static void teardown(void)
{
    tu_scratch_remove();
}

static const char *script =
    "import std\n"
    "data d {\n"
    "    x = normal([96, 2, 3, 3], 2, 3)\n"
    "    label = i32(sum(flatten(x), axis = 1) > 18)\n"
    "}\n"
    "model net(x: f32[N, 2, 3, 3]) -> f32[N, 2] {\n"
    "    return x |> batch_norm |> flatten |> dense(2)\n"
    "}\n"
    "train net on d {\n"
    "    loss = cross_entropy(output, label)\n"
    "    optimizer = adam(lr = 0.01)\n"
    "    batch = 16\n"
    "    epochs = 4\n"
    "}\n";

static float stat(const NnVars *v, const char *name, int i)
{
    NnTensor *t = nnrt_vars_get((NnVars *)v, name);
    cr_assert(t, "checkpoint holds %s", name);
    return ((float *)t->data)[i];
}

// The running statistics are saved, restored by --resume (4 epochs straight
// and 2 + 2 resumed give bit-identical checkpoints) and used by `nnc eval`.
Test(batchnorm, running_statistics_round_trip_through_checkpoint_and_resume, .init = setup,
     .fini = teardown, .timeout = 120)
{
    char *path, *a, *b, *out;
    cr_assert(asprintf(&path, "%s/bn.nn", tu_dir()) > 0 && asprintf(&a, "%s/a.st", tu_dir()) > 0 &&
              asprintf(&b, "%s/b.st", tu_dir()) > 0);
    FILE *f = fopen(path, "w");
    fputs(script, f);
    fclose(f);
    const char *be = "--backend interp";
    cr_assert_eq(tu_nnc_run(&out, "train %s %s -q --set save=%s", path, be, a), 0, "%s", out);
    free(out);
    cr_assert_eq(tu_nnc_run(&out, "train %s %s -q --set save=%s --set epochs=2", path, be, b), 0,
                 "%s", out);
    free(out);
    NnVars half;
    cr_assert_eq(nnrt_safetensors_load(b, &half, NULL), NN_OK, "%s", nnrt_errmsg());
    // --resume only reads b; the continued run saves to the save path.
    cr_assert_eq(tu_nnc_run(&out, "train %s %s -q --resume %s --set save=%s", path, be, b, b), 0,
                 "%s", out);
    free(out);
    NnVars va, vb;
    cr_assert_eq(nnrt_safetensors_load(a, &va, NULL), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(nnrt_safetensors_load(b, &vb, NULL), NN_OK, "%s", nnrt_errmsg());
    const char *rm = "net.batch_norm1.running_mean", *rv = "net.batch_norm1.running_var";
    for (int c = 0; c < 2; c++) {
        // Data mean 2, variance 9: after 24 steps of momentum 0.1 the running
        // statistics are most of the way there.
        cr_assert(stat(&va, rm, c) > 1.5f && stat(&va, rm, c) < 2.5f, "mean %g",
                  stat(&va, rm, c));
        cr_assert(stat(&va, rv, c) > 6 && stat(&va, rv, c) < 11, "var %g", stat(&va, rv, c));
        cr_assert(stat(&half, rm, c) != stat(&va, rm, c), "the resumed run moved them on");
        cr_assert_eq(stat(&va, rm, c), stat(&vb, rm, c), "resumed running mean is bit-identical");
        cr_assert_eq(stat(&va, rv, c), stat(&vb, rv, c), "resumed running var is bit-identical");
    }
    cr_assert_eq(stat(&va, "net.dense1.w", 3), stat(&vb, "net.dense1.w", 3));
    nnrt_vars_fini(&half);
    nnrt_vars_fini(&va);
    nnrt_vars_fini(&vb);
    // eval reads the running statistics from the checkpoint: a model whose
    // statistics are reset to (0, 1) scores differently.
    char *e1, *e2;
    cr_assert_eq(tu_nnc_run(&e1, "eval %s %s --weights %s", path, be, a), 0, "%s", e1);
    cr_assert(strstr(e1, "loss"), "%s", e1);
    NnVars reset;
    cr_assert_eq(nnrt_safetensors_load(a, &reset, NULL), NN_OK);
    NnTensor *t = nnrt_vars_get(&reset, rm);
    memset(t->data, 0, nnrt_tensor_nbytes(t));
    cr_assert_eq(nnrt_safetensors_save(b, &reset, NULL), NN_OK, "%s", nnrt_errmsg());
    nnrt_vars_fini(&reset);
    cr_assert_eq(tu_nnc_run(&e2, "eval %s %s --weights %s", path, be, b), 0, "%s", e2);
    cr_assert_str_neq(e1, e2, "evaluation depends on the running mean");
    free(e1);
    free(e2);
    free(path);
    free(a);
    free(b);
}
