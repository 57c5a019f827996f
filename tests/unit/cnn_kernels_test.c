// Kernel counts of known CNN graphs after the pass pipeline, so that lost
// fusion fails a test: a training step (the 2-conv shape of
// examples/fashion_cnn.nn, small) and evaluation with batch norm (the shape
// of examples/fashion_cnn_bn.nn). And batch-norm folding (ir/bnfold.c) leaves
// evaluation results unchanged on both backends.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ast.h"
#include "backend/agree.h"
#include "lower.h"
#include "pass.h"
#include "sema.h"
#include "testutil.h"

typedef struct Compiled {
    NnCtx c;
    NnProgram *p;
    NnTrainSpec spec;
} Compiled;

static void compile(Compiled *k, const char *model)
{
    memset(k, 0, sizeof *k);
    nn_ctx_init(&k->c, NULL);
    k->c.stdlib_dir = NN_SOURCE_DIR "/stdlib";
    char *body = NULL;
    cr_assert(asprintf(&body,
                       "import std\n%s\n"
                       "data d { x = [[1]]\n label = [1] }\n"
                       "train net on d {\n loss = cross_entropy(output, label)\n"
                       " optimizer = adam(lr = 1e-3)\n}\n",
                       model) > 0);
    NnSource *src = nn_source_from_string(k->c.arena, "t.nn", body);
    NnAst *ast = nn_parse(&k->c, src);
    cr_assert_eq(k->c.diags.nerrors, 0, "%s", nn_diags_text(&k->c.diags));
    k->p = nn_sema(&k->c, ast);
    cr_assert(k->p && k->c.diags.nerrors == 0, "%s", nn_diags_text(&k->c.diags));
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 3, .dim = {1, 12, 12}}},
                    {"label", NN_DT_I32, {.rank = 0}}};
    cr_assert(nn_lower_train(&k->c, k->p, k->p->trains[0], f, 2, NULL, 0, &k->spec), "%s",
              nn_diags_text(&k->c.diags));
    free(body);
}

static void release(Compiled *k)
{
    nn_train_spec_fini(&k->spec);
    nn_ctx_fini(&k->c);
}

static const char *cnn =
    "model net(x: f32[N, 1, 12, 12]) -> f32[N, 10] {\n"
    "    h = x |> conv2d(8, 5) |> relu |> max_pool(2)\n"
    "    h = h |> conv2d(16, 5) |> relu |> max_pool(2)\n"
    "    return h |> flatten |> dense(32) |> relu |> dense(10)\n"
    "}\n";

static const char *cnn_bn =
    "model net(x: f32[N, 1, 12, 12]) -> f32[N, 10] {\n"
    "    h = x |> conv2d(8, 3) |> batch_norm |> relu |> max_pool(2)\n"
    "    h = h |> conv2d(16, 3) |> batch_norm |> relu |> max_pool(2)\n"
    "    return h |> flatten |> dense(10)\n"
    "}\n";

// The pipeline on a copy of g, optionally without one pass.
static NnGraph *optimized(const NnGraph *g, const char *without)
{
    NnPassOptions po = {0};
    if (without)
        po.disabled[po.ndisabled++] = without;
    return nn_passes_run(nn_graph_clone(g), &po);
}

// FUSED nodes whose body's host (contraction or pooling op) is `op`.
static int fused_on(const NnGraph *g, NnOp op)
{
    int n = 0;
    for (NnId i = 0; i < g->count; i++)
        if (g->nodes[i].op == NN_OP_FUSED && nn_graph_count_op(g->nodes[i].attr.body, op) == 1)
            n++;
    return n;
}

// Elementwise ops applied to each element of values shaped like the
// convolution outputs (rank 4, N first): what evaluation pays per activation.
static int activation_ops(const NnGraph *g)
{
    int n = 0;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *x = &g->nodes[i];
        if (x->op == NN_OP_FUSED)
            n += activation_ops(x->attr.body);
        else if (nn_op_has(x->op, NN_OPF_ELEMWISE) && x->shape.rank == 4 && x->shape.dim[0] < 0)
            n++;
    }
    return n;
}

// Kernels whose result is activation-sized (rank 4, batch first): the ones
// that stream whole feature maps through memory. A pool computed in its
// convolution's kernel is no kernel of its own.
static int activation_kernels(const NnGraph *g)
{
    int n = 0;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *x = &g->nodes[i];
        n += !nn_op_has(x->op, NN_OPF_SOURCE) && x->op != NN_OP_RESHAPE && x->shape.rank == 4 &&
             x->shape.dim[0] < 0 && nn_fuse_pool_host(g, i) < 0;
    }
    return n;
}

// Pooling nodes computed inside their convolution's kernel.
static int pools_in_conv(const NnGraph *g)
{
    int n = 0;
    for (NnId i = 0; i < g->count; i++)
        n += nn_fuse_pool_host(g, i) >= 0;
    return n;
}

// Elementwise ops in the body of the FUSED node hosting a convolution.
static int conv_epilogue_ops(const NnGraph *g, int which)
{
    for (NnId i = 0; i < g->count; i++) {
        const NnGraph *b = g->nodes[i].attr.body;
        if (g->nodes[i].op != NN_OP_FUSED || nn_graph_count_op(b, NN_OP_CONV2D) != 1 || which--)
            continue;
        return nn_fuse_count_kernels(b) - 1; // sources (consts) do not count
    }
    return -1;
}

// The step of a 2-conv network: forward conv + bias + relu + max pool in one
// kernel per layer, each max-pool gradient with the relu mask that follows
// it, the filter gradients with their Adam updates. Measured: 67 kernels, 44
// of them fused (2 are scalar run-time hyperparameter ops); the bound fails
// when any of that fusion is lost.
Test(cnn_kernels, training_step)
{
    Compiled k;
    compile(&k, cnn);
    NnGraph *s = optimized(k.spec.step, NULL);
    NnGraph *u = optimized(k.spec.step, "fuse");
    int kernels = nn_fuse_count_kernels(s);
    cr_expect_leq(kernels, 67, "%d kernels in the CNN step (was 67)", kernels);
    cr_expect_lt(kernels, nn_fuse_count_kernels(u) - 40, "unfused: %d", nn_fuse_count_kernels(u));
    cr_expect_eq(fused_on(s, NN_OP_CONV2D), 2, "conv + bias + relu, per layer");
    cr_expect_eq(fused_on(s, NN_OP_MAX_POOL2D_BWD), 2, "max-pool gradient + relu mask");
    cr_expect_eq(nn_graph_count_op(s, NN_OP_MAX_POOL2D_BWD), 0);
    cr_expect_eq(nn_graph_count_op(s, NN_OP_CONV2D), 0);
    cr_expect_eq(nn_graph_count_op(s, NN_OP_CONV2D_BWD_FILTER), 0, "filter grads carry Adam");
    cr_expect_eq(pools_in_conv(s), 2, "each max pool in its convolution's kernel");
    // Feature-map kernels: 2 conv (+pool); 2 pool grad (+mask), 1 data grad.
    cr_expect_eq(activation_kernels(s), 5, "activation-sized kernels: %d", activation_kernels(s));
    // No batch norm here, and bnfold changes nothing in training.
    NnGraph *nb = optimized(k.spec.step, "bnfold");
    cr_expect_eq(nn_fuse_count_kernels(nb), kernels);
    nn_graph_free(nb);
    nn_graph_free(u);
    nn_graph_free(s);
    release(&k);
}

Test(cnn_kernels, evaluation)
{
    Compiled k;
    compile(&k, cnn);
    NnGraph *e = optimized(k.spec.eval, NULL);
    int kernels = nn_fuse_count_kernels(e);
    cr_expect_leq(kernels, 10, "%d kernels in CNN evaluation (was 10)", kernels);
    cr_expect_eq(fused_on(e, NN_OP_CONV2D), 2);
    cr_expect_eq(conv_epilogue_ops(e, 0), 2, "bias add and relu");
    cr_expect_eq(pools_in_conv(e), 2);
    cr_expect_eq(activation_kernels(e), 2, "2 conv + epilogue + pool");
    nn_graph_free(e);
    release(&k);
}

// In evaluation batch norm is per-channel arithmetic after the convolution;
// folded into the weights it leaves each output element a bias add and the
// relu (2 ops instead of 8, a sqrt and a div among them), at the price of small per-channel kernels.
Test(cnn_kernels, batch_norm_folded_in_evaluation)
{
    Compiled k;
    compile(&k, cnn_bn);
    NnGraph *e = optimized(k.spec.eval, NULL), *e0 = optimized(k.spec.eval, "bnfold");
    for (int l = 0; l < 2; l++) {
        cr_expect_eq(conv_epilogue_ops(e, l), 2, "layer %d: %d ops per element", l,
                     conv_epilogue_ops(e, l));
        cr_expect_eq(conv_epilogue_ops(e0, l), 8, "layer %d unfolded: %d", l,
                     conv_epilogue_ops(e0, l));
    }
    cr_expect_eq(activation_ops(e), 4, "per-element ops on feature maps: %d", activation_ops(e));
    cr_expect_eq(activation_ops(e0), 12);
    cr_expect_eq(activation_kernels(e), activation_kernels(e0));
    cr_expect_eq(nn_graph_count_op(e, NN_OP_SQRT) + nn_graph_count_op(e, NN_OP_DIV), 0,
                 "no sqrt or div at the top level: they moved into per-channel kernels");
    // In training the statistics read the convolution's output: nothing folds.
    NnGraph *s = optimized(k.spec.step, NULL), *s0 = optimized(k.spec.step, "bnfold");
    cr_expect_eq(nn_fuse_count_kernels(s), nn_fuse_count_kernels(s0));
    cr_expect_eq(conv_epilogue_ops(s, 0), conv_epilogue_ops(s0, 0));
    nn_graph_free(s);
    nn_graph_free(s0);
    nn_graph_free(e);
    nn_graph_free(e0);
    release(&k);
}

// Random weights and statistics (variances in [0.5, 2), gamma in [0.5, 1.5)),
// a batch of 5 images: the folded evaluation graph gives the unfolded one's
// logits within 1e-5 relative (ag_close: against |value| + 1% of the largest)
// on the interpreter, and the JIT's folded kernels agree with both.
Test(cnn_kernels, batch_norm_folding_keeps_evaluation_results)
{
    Compiled k;
    compile(&k, cnn_bn);
    NnVars vars;
    nnrt_vars_init(&vars);
    for (int i = 0; i < k.spec.nvars; i++) {
        const NnParamInit *v = &k.spec.vars[i];
        bool var = strstr(v->name, "running_var") != NULL, gamma = strstr(v->name, "gamma");
        NnShape s = v->shape;
        nnrt_vars_put(&vars, v->name,
                      ag_tensor(v->dtype, s, 7 + (uint64_t)i, var ? 0.5 : gamma ? 0.5 : -0.5,
                                var ? 2 : gamma ? 1.5 : 0.5));
    }
    NnTensor *in[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(5, 1, 12, 12), 3, 0, 1),
                       ag_tensor(NN_DT_I32, AG_SHAPE(5), 4, 0, 10)};
    NnGraph *e = optimized(k.spec.eval, NULL), *e0 = optimized(k.spec.eval, "bnfold");
    cr_assert_str_eq(e->outputs[1].name, "output");
    NnExecOptions eo = {.threads = 2};
    const NnBackend *bes[2] = {&nn_backend_interp, NULL};
#ifdef NN_WITH_LLVM
    bes[1] = &nn_backend_jit;
#endif
    NnTensor *ref[2] = {0};
    NnExec *x0 = nn_backend_interp.prepare(e0, &eo);
    cr_assert(x0, "%s", nnrt_errmsg());
    cr_assert_eq(nn_backend_interp.run(x0, &vars, in, ref), NN_OK, "%s", nnrt_errmsg());
    for (int b = 0; b < 2 && bes[b]; b++) {
        NnExec *x = bes[b]->prepare(e, &eo);
        cr_assert(x, "%s", nnrt_errmsg());
        NnTensor *out[2] = {0};
        cr_assert_eq(bes[b]->run(x, &vars, in, out), NN_OK, "%s", nnrt_errmsg());
        char why[256] = "";
        cr_expect(ag_close(out[1], ref[1], 1e-5, why, sizeof why), "%s: %s", bes[b]->name, why);
        cr_expect(ag_close(out[0], ref[0], 1e-5, why, sizeof why), "loss, %s: %s", bes[b]->name,
                  why);
        bes[b]->free(x); // owns out
    }
    nn_backend_interp.free(x0); // owns ref
    nnrt_tensor_free(in[0]);
    nnrt_tensor_free(in[1]);
    nnrt_vars_fini(&vars);
    nn_graph_free(e);
    nn_graph_free(e0);
    release(&k);
}

// The JIT's kernels for the step of examples/fashion_cnn.nn: each forward
// convolution, its epilogue and its max pool are one kernel, and no max-pool
// kernel of its own is left (nnc ir --stage llvm names each kernel function).
Test(cnn_kernels, jit_pools_inside_the_convolution_kernels)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    char *out = NULL;
    int rc = tu_nnc_run(&out, "ir %s/examples/fashion_cnn.nn --stage llvm", NN_SOURCE_DIR);
    cr_expect_eq(rc, 0, "%.2000s", out ? out : "");
    int fused = 0, pools = 0;
    for (const char *p = out ? out : ""; (p = strstr(p, "\ndefine ")); p++) {
        const char *e = strchr(p, '(');
        char name[128] = "";
        snprintf(name, sizeof name, "%.*s", e ? (int)(e - p) : 0, p);
        fused += strstr(name, "_conv_pool_fused") != NULL;
        pools += strstr(name, "_max_pool") && !strstr(name, "_bwd");
    }
    cr_expect_eq(fused, 2, "conv + bias + relu + pool kernels: %d", fused);
    cr_expect_eq(pools, 0, "max-pool forward kernels of their own: %d", pools);
    free(out);
}
