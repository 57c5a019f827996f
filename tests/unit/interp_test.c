// The interpreter backend on small graphs built with the nn_ir_* builders: an
// MLP forward and loss against hand-written C, symbolic batch sizes bound from
// inputs (and buffers reused per binding), update semantics, FUSED bodies,
// random ops, thread counts, and the errors for bad inputs and missing vars.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "backend.h"
#include "ir_helpers.h"
#include "kernels.h"
#include "pass.h"

static const NnLoc L = {0};

static NnTensor *tensor(NnDType dt, int rank, const int64_t *shape, double seed)
{
    NnTensor *t = nnrt_tensor_new(dt, rank, shape);
    for (int64_t i = 0; i < t->numel; i++)
        nnrt_tensor_set(t, i, sin(seed + 0.7 * (double)i));
    return t;
}

static NnTensor *t2(int64_t a, int64_t b, double seed)
{
    return tensor(NN_DT_F32, 2, (int64_t[]){a, b}, seed);
}

// y = tanh(x @ w1 + b1) @ w2 + b2; loss = mean(logsumexp(y, 1) - y[i, label[i]]).
static NnGraph *mlp(void)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,4");
    NnId lab = src(g, NN_OP_INPUT, "label", NN_DT_I32, "N");
    NnId w1 = par(g, "w1", NN_DT_F32, "4,8"), b1 = par(g, "b1", NN_DT_F32, "8");
    NnId w2 = par(g, "w2", NN_DT_F32, "8,3"), b2 = par(g, "b2", NN_DT_F32, "3");
    NnId h = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, x, w1, false, false, L), b1, L);
    h = nn_ir_unary(g, NN_OP_TANH, h, L);
    NnId y = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, h, w2, false, false, L), b2, L);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, y, 1u << 1, false, L);
    NnAttr ta = {0};
    ta.axis = 1;
    NnId in[2] = {y, lab};
    NnId picked = nn_ir_add(g, NN_OP_TAKE, in, 2, &ta, L);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN,
                             nn_ir_binary(g, NN_OP_SUB, lse, picked, L), 1u, false, L);
    cr_assert(loss >= 0, "building the mlp: %s", g->err);
    nn_graph_add_output(g, "y", y);
    nn_graph_add_output(g, "loss", loss);
    return g;
}

static void mlp_vars(NnVars *v)
{
    nnrt_vars_init(v);
    nnrt_vars_put(v, "w1", t2(4, 8, 1));
    nnrt_vars_put(v, "b1", tensor(NN_DT_F32, 1, (int64_t[]){8}, 2));
    nnrt_vars_put(v, "w2", t2(8, 3, 3));
    nnrt_vars_put(v, "b2", tensor(NN_DT_F32, 1, (int64_t[]){3}, 4));
}

static NnTensor *labels(int64_t n)
{
    NnTensor *t = nnrt_tensor_new(NN_DT_I32, 1, (int64_t[]){n});
    for (int64_t i = 0; i < n; i++)
        ((int32_t *)t->data)[i] = (int32_t)((i * 2 + 1) % 3);
    return t;
}

// The same model written out by hand, in double.
static void mlp_by_hand(const NnVars *v, const NnTensor *x, const NnTensor *lab, double *y,
                        double *loss)
{
    const float *w1 = nnrt_vars_get(v, "w1")->data, *b1 = nnrt_vars_get(v, "b1")->data;
    const float *w2 = nnrt_vars_get(v, "w2")->data, *b2 = nnrt_vars_get(v, "b2")->data;
    const float *xs = x->data;
    int64_t n = x->shape[0];
    *loss = 0;
    for (int64_t i = 0; i < n; i++) {
        double h[8];
        for (int j = 0; j < 8; j++) {
            double s = b1[j];
            for (int k = 0; k < 4; k++)
                s += xs[i * 4 + k] * w1[k * 8 + j];
            h[j] = tanh(s);
        }
        double mx = -INFINITY, e = 0;
        for (int j = 0; j < 3; j++) {
            double s = b2[j];
            for (int k = 0; k < 8; k++)
                s += h[k] * w2[k * 3 + j];
            y[i * 3 + j] = s;
            mx = fmax(mx, s);
        }
        for (int j = 0; j < 3; j++)
            e += exp(y[i * 3 + j] - mx);
        *loss += (mx + log(e) - y[i * 3 + ((const int32_t *)lab->data)[i]]) / (double)n;
    }
}

static void check_mlp_run(const NnBackend *be, NnExec *x, NnVars *v, int64_t n, NnTensor **out)
{
    NnTensor *in[2] = {t2(n, 4, (double)n), labels(n)};
    NnStatus st = be->run(x, v, in, out);
    cr_assert_eq(st, NN_OK, "run: %s", nnrt_errmsg());
    cr_assert_eq(out[0]->rank, 2);
    cr_assert_eq(out[0]->shape[0], n);
    cr_assert_eq(out[0]->shape[1], 3);
    cr_assert_eq(out[1]->rank, 0);
    double *y = malloc((size_t)n * 3 * sizeof *y), loss;
    mlp_by_hand(v, in[0], in[1], y, &loss);
    for (int64_t i = 0; i < n * 3; i++)
        cr_assert(fabs(nnrt_tensor_get(out[0], i) - y[i]) < 1e-5, "y[%lld] %g vs %g",
                  (long long)i, nnrt_tensor_get(out[0], i), y[i]);
    cr_assert(fabs(nnrt_tensor_get(out[1], 0) - loss) < 1e-5, "loss %g vs %g",
              nnrt_tensor_get(out[1], 0), loss);
    free(y);
    nnrt_tensor_free(in[0]);
    nnrt_tensor_free(in[1]);
}

Test(interp, mlp_forward_matches_hand_written)
{
    NnGraph *g = mlp();
    NnVars v;
    mlp_vars(&v);
    const NnBackend *be = nn_backend_find("interp");
    cr_assert_not_null(be);
    NnExec *x = be->prepare(g, &(NnExecOptions){0});
    cr_assert_not_null(x, "%s", nnrt_errmsg());
    NnTensor *out[2];
    check_mlp_run(be, x, &v, 5, out);
    be->free(x);
    nnrt_vars_fini(&v);
    nn_graph_free(g);
}

Test(interp, symbolic_batch_rebinds_and_reuses)
{
    NnGraph *g = mlp();
    NnVars v;
    mlp_vars(&v);
    NnExec *x = nn_backend_interp.prepare(g, NULL);
    NnTensor *out[2];
    check_mlp_run(&nn_backend_interp, x, &v, 5, out);
    NnTensor *first = out[0];
    void *first_data = out[0]->data;
    check_mlp_run(&nn_backend_interp, x, &v, 2, out);
    cr_assert_eq(out[0]->shape[0], 2);
    check_mlp_run(&nn_backend_interp, x, &v, 300, out); // big enough for threads
    check_mlp_run(&nn_backend_interp, x, &v, 5, out);
    cr_assert_eq(out[0], first, "the N=5 binding is reused");
    cr_assert_eq(out[0]->data, first_data);
    nn_backend_interp.free(x);
    nnrt_vars_fini(&v);
    nn_graph_free(g);
}

Test(interp, fused_graph_agrees)
{
    NnGraph *g = mlp();
    NnGraph *f = nn_pass_fuse(g);
    int fused = 0;
    for (NnId i = 0; i < f->count; i++)
        fused += f->nodes[i].op == NN_OP_FUSED;
    cr_assert_gt(fused, 0, "the fuse pass made no FUSED node");
    NnVars v;
    mlp_vars(&v);
    NnExec *x = nn_backend_interp.prepare(f, NULL);
    NnTensor *out[2];
    check_mlp_run(&nn_backend_interp, x, &v, 7, out);
    check_mlp_run(&nn_backend_interp, x, &v, 1, out);
    nn_backend_interp.free(x);
    nnrt_vars_fini(&v);
    if (f != g)
        nn_graph_free(f);
    nn_graph_free(g);
}

// a <- b, b <- a + 1, c <- c * 2: all read pre-update values; outputs too.
Test(interp, updates_apply_after_everything)
{
    NnGraph *g = nn_graph_new();
    NnId a = par(g, "a", NN_DT_F64, "3"), b = par(g, "b", NN_DT_F64, "3");
    NnId c = src(g, NN_OP_STATE, "c", NN_DT_F64, "");
    NnId one = nn_ir_const(g, 1, NN_DT_F64, L);
    NnId a1 = nn_ir_binary(g, NN_OP_ADD, a, one, L);
    NnId c2 = nn_ir_binary(g, NN_OP_MUL, c, nn_ir_const(g, 2, NN_DT_F64, L), L);
    nn_graph_add_update(g, a, b);
    nn_graph_add_update(g, b, a1);
    nn_graph_add_update(g, c, c2);
    nn_graph_add_output(g, "a", a);
    nn_graph_add_output(g, "sum", nn_ir_reduce(g, NN_OP_REDUCE_SUM, b, 1, false, L));
    NnVars v;
    nnrt_vars_init(&v);
    nnrt_vars_put(&v, "a", tensor(NN_DT_F64, 1, (int64_t[]){3}, 0));
    nnrt_vars_put(&v, "b", tensor(NN_DT_F64, 1, (int64_t[]){3}, 5));
    NnTensor *c0 = nnrt_tensor_new(NN_DT_F64, 0, NULL);
    nnrt_tensor_set(c0, 0, 1.5);
    nnrt_vars_put(&v, "c", c0);
    double a0[3], b0[3];
    for (int i = 0; i < 3; i++) {
        a0[i] = nnrt_tensor_get(nnrt_vars_get(&v, "a"), i);
        b0[i] = nnrt_tensor_get(nnrt_vars_get(&v, "b"), i);
    }
    NnExec *x = nn_backend_interp.prepare(g, NULL);
    NnTensor *out[2];
    for (int run = 0; run < 2; run++) {
        cr_assert_eq(nn_backend_interp.run(x, &v, NULL, out), NN_OK, "%s", nnrt_errmsg());
        const double *na = nnrt_vars_get(&v, "a")->data, *nb = nnrt_vars_get(&v, "b")->data;
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(nnrt_tensor_get(out[0], i), a0[i], "output shows the pre-update a");
            cr_assert_eq(na[i], b0[i]);
            cr_assert_eq(nb[i], a0[i] + 1);
        }
        cr_assert_eq(nnrt_tensor_get(out[1], 0), b0[0] + b0[1] + b0[2]);
        for (int i = 0; i < 3; i++) {
            double t = a0[i];
            a0[i] = b0[i];
            b0[i] = t + 1;
        }
    }
    cr_assert_eq(nnrt_tensor_get(nnrt_vars_get(&v, "c"), 0), 6.0);
    nn_backend_interp.free(x);
    nnrt_vars_fini(&v);
    nn_graph_free(g);
}

Test(interp, errors_name_the_culprit)
{
    NnGraph *g = mlp();
    NnVars v;
    mlp_vars(&v);
    NnExec *x = nn_backend_interp.prepare(g, NULL);
    NnTensor *out[2];
    NnTensor *good[2] = {t2(3, 4, 0), labels(3)};
    NnTensor *bad_x[2] = {t2(3, 5, 0), good[1]};
    cr_assert_eq(nn_backend_interp.run(x, &v, bad_x, out), NN_ERR_SHAPE);
    cr_assert_str_eq(nnrt_errmsg(), "input 'x' expects f32[N, 4], got f32[3, 5]");
    cr_assert_null(out[0]);
    NnTensor *bad_n[2] = {good[0], labels(4)};
    cr_assert_eq(nn_backend_interp.run(x, &v, bad_n, out), NN_ERR_SHAPE);
    cr_assert_str_eq(nnrt_errmsg(), "input 'label' expects i32[N], got i32[4]");

    nnrt_vars_put(&v, "w2", t2(8, 4, 0));
    cr_assert_eq(nn_backend_interp.run(x, &v, good, out), NN_ERR_SHAPE);
    cr_assert_str_eq(nnrt_errmsg(), "parameter 'w2' expects f32[8, 3], got f32[8, 4]");
    NnVars empty;
    nnrt_vars_init(&empty);
    cr_assert_eq(nn_backend_interp.run(x, &empty, good, out), NN_ERR_SHAPE);
    cr_assert(strstr(nnrt_errmsg(), "'w1' is missing"), "%s", nnrt_errmsg());

    // A label out of range is bad data, reported and not read.
    nnrt_vars_put(&v, "w2", t2(8, 3, 3));
    ((int32_t *)good[1]->data)[2] = 7;
    cr_assert_eq(nn_backend_interp.run(x, &v, good, out), NN_ERR_RUNTIME);
    cr_assert(strstr(nnrt_errmsg(), "index 7"), "%s", nnrt_errmsg());

    nnrt_tensor_free(good[0]);
    nnrt_tensor_free(good[1]);
    nnrt_tensor_free(bad_x[0]);
    nnrt_tensor_free(bad_n[1]);
    nnrt_vars_fini(&empty);
    nnrt_vars_fini(&v);
    nn_backend_interp.free(x);
    nn_graph_free(g);
}

// dropout(x, step, rate) and rand_normal draw afresh per step, reproducibly;
// the rate is read on every run.
Test(interp, random_ops_follow_the_step)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,64");
    NnId step = src(g, NN_OP_INPUT, "step", NN_DT_F32, "");
    NnId rate = src(g, NN_OP_INPUT, "rate", NN_DT_F32, "");
    NnAttr da = {0};
    da.seed = 77;
    NnId din[3] = {x, step, rate};
    NnId d = nn_ir_add(g, NN_OP_DROPOUT, din, 3, &da, L);
    NnAttr ra = {0};
    ra.seed = 5;
    ra.dtype = NN_DT_F64;
    ra.shape = shp(g, "N,2");
    NnId r = nn_ir_add(g, NN_OP_RAND_NORMAL, &step, 1, &ra, L);
    cr_assert(d >= 0 && r >= 0, "%s", g->err);
    nn_graph_add_output(g, "d", d);
    nn_graph_add_output(g, "r", r);
    NnExec *ex = nn_backend_interp.prepare(g, NULL);
    NnTensor *in[3] = {tensor(NN_DT_F32, 2, (int64_t[]){10, 64}, 1),
                       nnrt_tensor_new(NN_DT_F32, 0, NULL), nnrt_tensor_new(NN_DT_F32, 0, NULL)};
    nnrt_tensor_set(in[1], 0, 3);
    NnTensor *out[2];
    for (int k = 0; k < 2; k++) {
        double p = k == 0 ? 0.25 : 0.5;
        nnrt_tensor_set(in[2], 0, p);
        cr_assert_eq(nn_backend_interp.run(ex, NULL, in, out), NN_OK, "%s", nnrt_errmsg());
        for (int64_t i = 0; i < 640; i++) {
            bool keep = nnrt_rand_uniform(77, 3, (uint64_t)i) >= p;
            double want = keep ? (float)(nnrt_tensor_get(in[0], i) * (1 / (1 - p))) : 0;
            cr_assert_eq(nnrt_tensor_get(out[0], i), want, "rate %g: dropout elem %lld", p,
                         (long long)i);
        }
    }
    for (int64_t i = 0; i < 20; i++)
        cr_assert_eq(nnrt_tensor_get(out[1], i), nnrt_rand_normal(5, 3, (uint64_t)i));
    double first = nnrt_tensor_get(out[1], 0);
    nnrt_tensor_set(in[1], 0, 4);
    cr_assert_eq(nn_backend_interp.run(ex, NULL, in, out), NN_OK);
    cr_assert_neq(nnrt_tensor_get(out[1], 0), first);
    for (int k = 0; k < 3; k++)
        nnrt_tensor_free(in[k]);
    nn_backend_interp.free(ex);
    nn_graph_free(g);
}

// Layout ops and a comparison chain: transpose, reshape, broadcast, sumto,
// select, cast, argmax, onehot, against direct index arithmetic.
Test(interp, layout_and_indexing_ops)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "2,3");
    int perm[NN_MAX_RANK] = {1, 0};
    NnId t = nn_ir_transpose(g, x, perm, L);                   // [3, 2]
    NnShape s6 = shp(g, "6"), s423 = shp(g, "4,2,3"), s13 = shp(g, "1,3");
    NnId r = nn_ir_reshape(g, x, &s6, L);                      // [6]
    NnId b = nn_ir_broadcast(g, x, &s423, L);                  // [4, 2, 3]
    NnId st = nn_ir_sumto(g, b, &s13, L);                      // [1, 3] = 8 * colsum
    NnId pos = nn_ir_binary(g, NN_OP_GT, x, nn_ir_const(g, 0, NN_DT_F32, L), L);
    NnId sel = nn_ir_select(g, pos, x, nn_ir_const(g, -9, NN_DT_F32, L), L);
    NnAttr am = {0};
    am.axis = 1;
    NnId arg = nn_ir_add(g, NN_OP_ARGMAX, &x, 1, &am, L);     // i32[2]
    NnAttr oh = {0};
    oh.depth = 3;
    oh.dtype = NN_DT_F64;
    NnId hot = nn_ir_add(g, NN_OP_ONEHOT, &arg, 1, &oh, L);  // f64[2, 3]
    NnId cst = nn_ir_cast(g, arg, NN_DT_F32, L);
    NnId ids[] = {t, r, st, sel, hot, cst};
    const char *names[] = {"t", "r", "st", "sel", "hot", "cst"};
    for (int i = 0; i < 6; i++) {
        cr_assert(ids[i] >= 0, "%s: %s", names[i], g->err);
        nn_graph_add_output(g, names[i], ids[i]);
    }
    float xv[6] = {0.5f, -2, 3, -1, 4, 0.25f};
    NnTensor *in = nnrt_tensor_view(NN_DT_F32, 2, (int64_t[]){2, 3}, xv);
    NnExec *ex = nn_backend_interp.prepare(g, &(NnExecOptions){.threads = 2});
    NnTensor *out[6];
    cr_assert_eq(nn_backend_interp.run(ex, NULL, &in, out), NN_OK, "%s", nnrt_errmsg());
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            cr_assert_eq(nnrt_tensor_get(out[0], i * 2 + j), xv[j * 3 + i]);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(nnrt_tensor_get(out[1], i), xv[i]);
        cr_assert_eq(nnrt_tensor_get(out[3], i), xv[i] > 0 ? xv[i] : -9);
    }
    for (int j = 0; j < 3; j++)
        cr_assert_eq(nnrt_tensor_get(out[2], j), 4 * (xv[j] + xv[3 + j]));
    double hot_want[6] = {0, 0, 1, 0, 1, 0};
    for (int i = 0; i < 6; i++)
        cr_assert_eq(nnrt_tensor_get(out[4], i), hot_want[i]);
    cr_assert(nnrt_tensor_get(out[5], 0) == 2 && nnrt_tensor_get(out[5], 1) == 1);
    nn_backend_interp.free(ex);
    nnrt_tensor_free(in);
    nn_graph_free(g);
}

Test(interp, backend_lookup)
{
    cr_assert_eq(nn_backend_find("interp"), &nn_backend_interp);
    cr_assert_str_eq(nn_backend_find("interp")->name, "interp");
    cr_assert_null(nn_backend_find("nope"));
    cr_assert_null(nn_backend_find(NULL));
#ifndef NN_WITH_LLVM
    cr_assert_null(nn_backend_find("jit"));
#endif
}
