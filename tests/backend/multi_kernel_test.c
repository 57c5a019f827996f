// Multi-output elementwise kernels (nn_fuse_multi, ir/fuse.c): fused
// elementwise kernels of one shape that read each other or share operands
// run as one loop. The MLP training step under Adam has 18 fewer kernels
// (each parameter's m, v and w updates, and a bias's decayed gradient, in one
// kernel; a weight's in its gradient product's epilogue), so lost fusion
// fails here; a group with broadcast operands and the
// run-time batch computes what the interpreter computes; and the memory plan
// keeps every member's operands alive through the lead's step.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <string.h>

#include "ast.h"
#include "backend/agree.h"
#include "lower.h"
#include "pass.h"
#include "plan.h"
#include "sema.h"
#include "testutil.h"

#ifndef NN_WITH_LLVM
#define NEED_LLVM() cr_skip_test("built without LLVM")
#else
#define NEED_LLVM() (void)0
#endif


// The training step of `model` under Adam (weight decay on, so every
// parameter's gradient is decayed first), after the whole pass pipeline.
static NnGraph *adam_step(NnCtx *c, NnTrainSpec *spec, const char *model, int feat)
{
    nn_ctx_init(c, NULL);
    c->stdlib_dir = NN_SOURCE_DIR "/stdlib";
    char *text = NULL;
    cr_assert(asprintf(&text,
                       "import std\n%s\n"
                       "data d { x = [[1]]\n label = [1] }\n"
                       "train net on d {\n loss = cross_entropy(output, label)\n"
                       " optimizer = adam(lr = 1e-3, weight_decay = 1e-4)\n}\n",
                       model) > 0);
    NnSource *src = nn_source_from_string(c->arena, "t.nn", text);
    NnAst *ast = nn_parse(c, src);
    cr_assert_eq(c->diags.nerrors, 0, "%s", nn_diags_text(&c->diags));
    NnProgram *p = nn_sema(c, ast);
    cr_assert(p && c->diags.nerrors == 0, "%s", nn_diags_text(&c->diags));
    NnField f[2] = {{"x", NN_DT_F32, {.rank = 1, .dim = {feat}}},
                    {"label", NN_DT_I32, {.rank = 0}}};
    cr_assert(nn_lower_train(c, p, p->trains[0], f, 2, NULL, 0, spec), "%s",
              nn_diags_text(&c->diags));
    free(text);
    return nn_passes_run(nn_graph_clone(spec->step), &(NnPassOptions){0});
}

static NnId update_of(const NnGraph *g, const char *var)
{
    for (int k = 0; k < g->nupdates; k++)
        if (strcmp(g->nodes[g->updates[k].var].attr.name, var) == 0)
            return g->updates[k].value;
    cr_assert_fail("no update of %s", var);
    return -1;
}

static const char *mlp = "model net(x: f32[N, 784]) -> f32[N, 10] {\n"
                         "    h = x |> dense(256) |> relu\n"
                         "    h = h |> dense(128) |> relu\n"
                         "    return dense(h, 10)\n"
                         "}\n";

// Measured: 39 kernels (57 before multi-output kernels, 42 before the
// products joined them); 6 groups, one per parameter: a weight's m, v, w and
// the product computing its (decayed) gradient, in whose epilogue they run
// (3 kernels saved), and a bias's decayed gradient, m, v, b (3 saved; its
// gradient is a reduction, which stays apart).
Test(multi_kernel, adam_mlp_step_has_one_update_kernel_per_parameter)
{
    NnCtx c;
    NnTrainSpec spec;
    NnGraph *g = adam_step(&c, &spec, mlp, 784);
    NnId *lead = malloc((size_t)g->count * sizeof *lead);
    nn_fuse_multi(g, lead);
    int leads = 0, riders = 0, launching = 0;
    for (NnId i = 0; i < g->count; i++) {
        leads += lead[i] == i;
        riders += lead[i] >= 0 && lead[i] != i;
        launching += !nn_op_has(g->nodes[i].op, NN_OPF_SOURCE);
    }
    cr_expect_eq(leads, 6, "%d multi-output kernels", leads);
    cr_expect_eq(riders, 18, "%d kernels folded into them", riders);
    cr_expect_eq(nn_fuse_count_kernels(g), launching - 18, "%d kernels of %d",
                 nn_fuse_count_kernels(g), launching);
    cr_expect_leq(nn_fuse_count_kernels(g), 39);
    static const char *const params[] = {"net.dense1.w", "net.dense1.b", "net.dense2.w",
                                         "net.dense2.b", "net.dense3.w", "net.dense3.b"};
    for (int k = 0; k < 6; k++) {
        char m[64], v[64];
        snprintf(m, sizeof m, "%s/m", params[k]);
        snprintf(v, sizeof v, "%s/v", params[k]);
        NnId w = update_of(g, params[k]);
        cr_expect(lead[w] == w, "%s's update leads its kernel", params[k]);
        cr_expect(lead[update_of(g, m)] == w && lead[update_of(g, v)] == w,
                  "%s: m and v are computed in w's kernel", params[k]);
        // A weight's gradient product (what m' reads) hosts the group; a
        // bias's decayed gradient is an elementwise member, after a
        // reduction that stays apart.
        NnId grad = -1, mn = update_of(g, m);
        for (int j = 0; j < g->nodes[mn].nin; j++) {
            const NnNode *x = &g->nodes[g->nodes[mn].in[j]];
            if (x->op == NN_OP_FUSED && nn_shape_eq(&x->shape, &g->nodes[w].shape))
                grad = g->nodes[mn].in[j];
        }
        cr_assert_geq(grad, 0, "%s: m' reads no gradient", params[k]);
        bool product = nn_fuse_form(g->nodes[grad].attr.body) == NN_FUSE_MATMUL;
        cr_expect_eq(product, k % 2 == 0, "%s's gradient", params[k]);
        cr_expect(lead[grad] == w, "%s: gradient not in w's kernel", params[k]);
    }
    // NN_JIT_NOEPI=1: the products stay apart (the 15 elementwise riders).
    setenv("NN_JIT_NOEPI", "1", 1);
    NnId *apart = malloc((size_t)g->count * sizeof *apart);
    nn_fuse_multi(g, apart);
    unsetenv("NN_JIT_NOEPI");
    int ar = 0;
    for (NnId i = 0; i < g->count; i++) {
        ar += apart[i] >= 0 && apart[i] != i;
        if (apart[i] >= 0)
            cr_expect_neq(nn_fuse_form(g->nodes[i].attr.body), NN_FUSE_MATMUL);
    }
    cr_expect_eq(ar, 15);
    free(apart);
    // Without fusion there are no kernels to merge.
    NnGraph *u = nn_passes_run(nn_graph_clone(spec.step),
                               &(NnPassOptions){.disabled = {"fuse"}, .ndisabled = 1});
    NnId *ul = malloc((size_t)u->count * sizeof *ul);
    nn_fuse_multi(u, ul);
    for (NnId i = 0; i < u->count; i++)
        cr_expect_eq(ul[i], -1);
    free(ul);
    nn_graph_free(u);
    // Every member's operands and result live through its lead's step.
    NnArena *a = nn_arena_new();
    int64_t n = 128;
    NnPlan *p = nn_plan_build(g, &n, a);
    char err[128];
    cr_expect(nn_plan_check(p, err, sizeof err), "%s", err);
    for (NnId i = 0; i < g->count; i++) {
        if (lead[i] < 0 || lead[i] == i)
            continue;
        cr_expect_geq(p->slots[i].last, lead[i]);
        for (int k = 0; k < g->nodes[i].nin; k++)
            cr_expect_geq(p->slots[g->nodes[i].in[k]].last, lead[i], "%%%d's operand %%%d", i,
                          g->nodes[i].in[k]);
    }
    nn_arena_free(a);
    free(lead);
    nn_graph_free(g);
    nn_train_spec_fini(&spec);
    nn_ctx_fini(&c);
}

#ifdef NN_WITH_LLVM
// Runs g on the JIT (2 threads); the outputs go to out, the kernel count back.
static int jit_run(const NnGraph *g, NnTensor *const *ins, NnTensor **out)
{
    NnExecOptions opt = {.threads = 2};
    NnExec *x = nn_backend_jit.prepare(g, &opt);
    cr_assert(x, "%s", nnrt_errmsg());
    NnTensor *o[4] = {0};
    NnVars v;
    nnrt_vars_init(&v);
    cr_assert_eq(nn_backend_jit.run(x, &v, ins, o), NN_OK, "%s", nnrt_errmsg());
    for (int k = 0; k < g->noutputs; k++)
        out[k] = nnrt_tensor_clone(o[k]);
    int n = nn_llvm_kernel_count(x);
    nn_backend_jit.free(x);
    nnrt_vars_fini(&v);
    return n;
}
#endif

// Three outputs of shape [N, 40]: u and v both read x and the broadcast row b,
// w reads u and v. One kernel, bit for bit the values of one kernel per op
// (NN_JIT_NOFUSE: each value stored, then loaded again), and the
// interpreter's within its libm's tanh and exp; at batch sizes that leave
// vector tails (40 columns: two vectors of 16 and 8 scalars), on two threads.
Test(multi_kernel, outputs_of_one_shape_share_a_kernel)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    NnGraph *g = nn_graph_new();
    NnShape xs = AG_SHAPE(-1, 40);
    xs.dim[0] = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, xs);
    NnId b = ag_input(g, "b", NN_DT_F32, AG_SHAPE(40));
    NnId one = nn_ir_const(g, 1, NN_DT_F32, ag_loc);
    NnId two = nn_ir_const(g, 2, NN_DT_F32, ag_loc);
    NnId xb = nn_ir_binary(g, NN_OP_MUL, x, b, ag_loc);
    NnId u = nn_ir_unary(g, NN_OP_TANH, nn_ir_binary(g, NN_OP_ADD, xb, one, ag_loc), ag_loc);
    NnId s = nn_ir_unary(g, NN_OP_SIGMOID, nn_ir_binary(g, NN_OP_SUB, x, b, ag_loc), ag_loc);
    NnId v = nn_ir_binary(g, NN_OP_MUL, s, two, ag_loc);
    NnId w = nn_ir_binary(g, NN_OP_ADD, nn_ir_binary(g, NN_OP_MUL, u, v, ag_loc), x, ag_loc);
    cr_assert(w >= 0, "%s", g->err);
    nn_graph_add_output(g, "u", u);
    nn_graph_add_output(g, "v", v);
    nn_graph_add_output(g, "w", w);
    int64_t rows[] = {5, 37, 128};
    for (int r = 0; r < 3; r++) {
        NnTensor *ins[2] = {ag_tensor(NN_DT_F32, AG_SHAPE(rows[r], 40), 10 + r, -2, 2),
                            ag_tensor(NN_DT_F32, AG_SHAPE(40), 20 + r, -1, 1)};
        NnTensor *multi[3], *apart[3];
        cr_expect_eq(jit_run(g, ins, multi), 1, "u, v and w in one kernel");
        setenv("NN_JIT_NOFUSE", "1", 1);
        int unfused = jit_run(g, ins, apart);
        unsetenv("NN_JIT_NOFUSE");
        cr_expect_gt(unfused, 3);
        for (int k = 0; k < 3; k++) {
            char why[512];
            cr_expect(ag_close(multi[k], apart[k], 0, why, sizeof why), "batch %lld, %s: %s",
                      (long long)rows[r], g->outputs[k].name, why);
            nnrt_tensor_free(multi[k]);
            nnrt_tensor_free(apart[k]);
        }
        NnVars vars;
        nnrt_vars_init(&vars);
        char why[512];
        cr_expect(ag_run(g, ins, &vars, 1e-5, why, sizeof why), "batch %lld: %s",
                  (long long)rows[r], why);
        nnrt_vars_fini(&vars);
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
    }
    nn_graph_free(g);
#endif
}
