// The gradient check. Loops over ops.def: every NN_OPF_DIFF op must have at
// least one recipe below (a new op without one fails the test). A recipe builds
// op(...) in f64 on small random inputs (PARAMs, or INPUTs when a dim is
// symbolic), the loss is reduce_sum(op(...) * W) for fixed random W, and
// nn_ad_grad's gradients, run by the interpreter, are compared with central
// finite differences of the same loss. Failures name the op and the recipe.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autodiff.h"
#include "backend.h"
#include "loop.h"
#include "pass.h"
#include "unit/ir_helpers.h"

static const NnLoc L = {0};

// How a variable's values are drawn, to keep inputs inside each op's domain
// (log, sqrt and pow need positives; abs needs no value near its kink).
typedef enum Range { R_ANY, R_POS, R_AWAY0, R_BOOL, R_LABEL } Range;

typedef struct Var {
    NnId id;
    bool diff;   // a gradient is checked for it
    NnTensor *t; // INPUTs: owned here; PARAMs: owned by vars
    char name[16];
} Var;

typedef struct Ctx {
    NnGraph *g;
    NnVars vars;
    Var v[8];
    int nv;
    uint64_t rng;
    int64_t symv[NN_MAX_SYMS];
    int64_t depth; // R_LABEL values lie in [0, depth)
} Ctx;

static double uniform(Ctx *c)
{
    c->rng = c->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(c->rng >> 11) / 9007199254740992.0;
}

static void fill(Ctx *c, NnTensor *t, Range r)
{
    for (int64_t i = 0; i < t->numel; i++) {
        double u = uniform(c), v = 2 * u - 1;
        switch (r) {
        case R_POS: v = 0.5 + 1.5 * u; break;
        case R_AWAY0: v = (v < 0 ? -1 : 1) * (0.3 + 0.7 * fabs(v)); break;
        case R_BOOL: v = u < 0.5; break;
        case R_LABEL: v = (double)(int64_t)(u * (double)c->depth); break;
        default: break;
        }
        nnrt_tensor_set(t, i, v);
    }
}

// A variable of shape s: a PARAM, or an INPUT when s has a symbolic dim.
static NnId var_shape(Ctx *c, const NnShape *s, NnDType dt, Range r, bool diff)
{
    NN_ASSERT(c->nv < 8);
    Var *v = &c->v[c->nv];
    snprintf(v->name, sizeof v->name, "v%d", c->nv);
    bool sym = false;
    for (int i = 0; i < s->rank; i++)
        sym |= s->dim[i] < 0;
    v->id = nn_ir_source(c->g, sym ? NN_OP_INPUT : NN_OP_PARAM, v->name, dt, s, L);
    int64_t dims[NN_MAX_RANK];
    nn_shape_bind(s, c->symv, dims);
    NnTensor *t = nnrt_tensor_new(dt, s->rank, dims);
    fill(c, t, r);
    v->diff = diff;
    v->t = t;
    if (!sym) {
        nnrt_vars_put(&c->vars, v->name, t);
        v->t = NULL;
    }
    c->nv++;
    return v->id;
}

// "3,4" or "N=3,4" (symbol N, bound to 3 when run).
static NnId var(Ctx *c, const char *spec, Range r, bool diff)
{
    NnShape s = {0};
    for (const char *p = spec; *p;) {
        char tok[16];
        size_t n = strcspn(p, ",");
        snprintf(tok, sizeof tok, "%.*s", (int)n, p);
        char *eq = strchr(tok, '=');
        if (eq) {
            *eq = 0;
            int64_t d = nn_sym_dim(c->g, tok);
            c->symv[-d - 1] = atoll(eq + 1);
            s.dim[s.rank++] = d;
        } else {
            s.dim[s.rank++] = atoll(tok);
        }
        p += n + (p[n] == ',');
    }
    return var_shape(c, &s, r == R_LABEL ? NN_DT_I32 : NN_DT_F64, r, diff);
}

static NnShape shape_of(Ctx *c, const char *spec)
{
    return shp(c->g, spec);
}

// ---- recipes ----

typedef struct Recipe {
    NnOp op;
    const char *what;
    NnId (*build)(Ctx *c, NnOp op, int variant);
    int variant;
    double eps, tol; // 0: the defaults (1e-6, 1e-6)
} Recipe;

static NnId unary_any(Ctx *c, NnOp op, int v)
{
    return nn_ir_unary(c->g, op, var(c, "3,4", R_ANY, true), L);
}

static NnId unary_pos(Ctx *c, NnOp op, int v)
{
    return nn_ir_unary(c->g, op, var(c, "3,4", R_POS, true), L);
}

static NnId unary_away0(Ctx *c, NnOp op, int v)
{
    return nn_ir_unary(c->g, op, var(c, "3,4", R_AWAY0, true), L);
}

static NnId cast(Ctx *c, NnOp op, int v)
{
    NnId x = var(c, "3,4", R_ANY, true);
    if (v == 0)
        return nn_ir_cast(c->g, x, NN_DT_F64, L);
    return nn_ir_cast(c->g, nn_ir_cast(c->g, x, NN_DT_F32, L), NN_DT_F64, L);
}

// Binary variants: same shape, trailing broadcast, both broadcast, symbolic
// batch, scalar with matrix; 5 is a CONST right operand.
static NnId binary(Ctx *c, NnOp op, int v)
{
    static const char *specs[5][2] = {
        {"3,4", "3,4"}, {"3,4", "4"}, {"3,1", "1,4"}, {"N=3,4", "4"}, {"", "2,3"}};
    Range ra = op == NN_OP_POW ? R_POS : R_ANY;
    Range rb = op == NN_OP_DIV ? R_POS : R_ANY;
    if (v == 5) {
        NnId a = var(c, "3,4", op == NN_OP_POW ? R_POS : R_AWAY0, true);
        NnId k = nn_ir_const(c->g, op == NN_OP_POW ? 2 : 0, NN_DT_F64, L);
        return nn_ir_binary(c->g, op, a, k, L);
    }
    NnId a = var(c, specs[v][0], ra, true);
    NnId b = var(c, specs[v][1], rb, true);
    return nn_ir_binary(c->g, op, a, b, L);
}

static NnId select3(Ctx *c, NnOp op, int v)
{
    NnId cond = var(c, "3,1", R_BOOL, false);
    NnId a = var(c, "3,4", R_ANY, true);
    NnId b = var(c, "4", R_ANY, true);
    return nn_ir_select(c->g, cond, a, b, L);
}

static NnId dropout(Ctx *c, NnOp op, int v)
{
    NnId x = var(c, "4,6", R_ANY, true);
    NnId step = nn_ir_const(c->g, 3, NN_DT_I32, L);
    NnAttr a = {.seed = 42};
    NnId rate = nn_ir_const(c->g, 0.5, NN_DT_F32, L);
    if (v) {
        // A run-time rate (a variable, as hyper/dropoutK is), not differentiated.
        rate = var(c, "", R_POS, false);
        nnrt_tensor_set(nnrt_vars_get(&c->vars, c->v[c->nv - 1].name), 0, 0.3);
    }
    NnId in[3] = {x, step, rate};
    return nn_ir_add(c->g, NN_OP_DROPOUT, in, 3, &a, L);
}

static NnId reshape(Ctx *c, NnOp op, int v)
{
    NnId x = var(c, v ? "N=3,4" : "3,4", R_ANY, true);
    NnShape s = shape_of(c, v ? "N,2,2" : "2,6");
    return nn_ir_reshape(c->g, x, &s, L);
}

static NnId transpose(Ctx *c, NnOp op, int v)
{
    NnId x = var(c, v ? "3,4" : "2,3,4", R_ANY, true);
    int perm3[NN_MAX_RANK] = {2, 0, 1}, perm2[NN_MAX_RANK] = {1, 0};
    return nn_ir_transpose(c->g, x, v ? perm2 : perm3, L);
}

static NnId broadcast(Ctx *c, NnOp op, int v)
{
    NnId x = var(c, v ? "2,1" : "3", R_ANY, true);
    NnShape s = shape_of(c, v ? "2,3" : "2,3");
    return nn_ir_broadcast(c->g, x, &s, L);
}

static NnId sumto(Ctx *c, NnOp op, int v)
{
    NnId x = var(c, v ? "2,3" : "2,3,4", R_ANY, true);
    NnShape s = shape_of(c, v ? "3" : "3,1");
    return nn_ir_sumto(c->g, x, &s, L);
}

// Reduction variants: middle axis; outer axes kept; all; symbolic batch axis.
static NnId reduce(Ctx *c, NnOp op, int v)
{
    static const uint32_t axes[4] = {2, 5, 7, 1};
    NnId x = var(c, v == 3 ? "N=3,4" : "3,4,2", R_ANY, true);
    return nn_ir_reduce(c->g, op, x, axes[v], v == 1, L);
}

// Variants: ta = v & 1, tb = v & 2; 4 has a symbolic batch. Leading dims of
// A (rows): 5 [2, 3, 4] @ [4, 5], 6 the same @ [5, 4]^T, 7 [T, N, 4] @ [4, 5]
// with N symbolic; 8 A^T B over leading dims, [2, 3, 4]^T [2, 3, 5] -> [4, 5].
static NnId matmul(Ctx *c, NnOp op, int v)
{
    if (v >= 5) {
        NnId a = var(c, v == 7 ? "2,N=3,4" : "2,3,4", R_ANY, true);
        NnId b = var(c, v == 6 ? "5,4" : v == 8 ? "2,3,5" : "4,5", R_ANY, true);
        return nn_ir_matmul(c->g, a, b, v == 8, v == 6, L);
    }
    bool ta = v & 1, tb = v & 2;
    NnId a = var(c, v == 4 ? "N=3,4" : ta ? "4,3" : "3,4", R_ANY, true);
    NnId b = var(c, tb ? "5,4" : "4,5", R_ANY, true);
    return nn_ir_matmul(c->g, a, b, ta, tb, L);
}

static NnId take(Ctx *c, NnOp op, int v)
{
    c->depth = 5;
    NnId x = var(c, v ? "N=4,5" : "4,5", R_ANY, true);
    NnId idx = var(c, v ? "N=4" : "4", R_LABEL, false);
    NnAttr a = {.axis = 1};
    NnId in[2] = {x, idx};
    return nn_ir_add(c->g, NN_OP_TAKE, in, 2, &a, L);
}

// Embedding rows: a table of 5 rows read by 8 ids (so rows repeat and some
// are never read); variant 1 has a symbolic batch of ids.
static NnId gather(Ctx *c, NnOp op, int v)
{
    c->depth = 5;
    NnId w = var(c, "5,3", R_ANY, true);
    NnId ids = var(c, v ? "N=4,2" : "2,4", R_LABEL, false);
    NnId in[2] = {w, ids};
    return nn_ir_add(c->g, NN_OP_GATHER, in, 2, NULL, L);
}

static NnId scatter_add(Ctx *c, NnOp op, int v)
{
    c->depth = 5;
    NnId x = var(c, v ? "N=4,2,3" : "2,4,3", R_ANY, true);
    NnId ids = var(c, v ? "N=4,2" : "2,4", R_LABEL, false);
    NnAttr a = {.shape = shape_of(c, "5,3")};
    NnId in[2] = {x, ids};
    return nn_ir_add(c->g, NN_OP_SCATTER_ADD, in, 2, &a, L);
}

// ---- convolution, pooling and axis layout ----

// Convolution variants, as {x, w, stride h, w, pad t, l, b, r, dilation h, w,
// groups}: plain; stride 2 with padding; dilation with asymmetric padding;
// groups; depthwise with "same" padding; symbolic batch; a stride that leaves
// a remainder (the data gradient's output padding).
static const struct ConvCase {
    const char *x, *w;
    int stride[2], pad[4], dil[2], groups;
} conv_cases[] = {
    {"1,2,5,5", "3,2,3,3", {1, 1}, {0, 0, 0, 0}, {1, 1}, 1},
    {"2,2,5,6", "2,2,3,3", {2, 2}, {1, 1, 1, 1}, {1, 1}, 1},
    {"1,2,6,6", "2,2,2,3", {1, 2}, {0, 1, 1, 0}, {2, 2}, 1},
    {"1,4,5,5", "4,2,3,3", {2, 1}, {1, 1, 1, 1}, {1, 1}, 2},
    {"1,3,5,5", "3,1,3,3", {1, 1}, {1, 1, 1, 1}, {1, 1}, 3},
    {"N=2,2,4,4", "3,2,3,3", {1, 1}, {1, 1, 1, 1}, {1, 1}, 1},
    {"1,2,6,7", "2,2,3,3", {2, 3}, {0, 0, 0, 0}, {1, 1}, 1},
};

static NnConv2d conv_geom(const struct ConvCase *k)
{
    NnConv2d c = {.groups = k->groups};
    memcpy(c.stride, k->stride, sizeof c.stride);
    memcpy(c.pad, k->pad, sizeof c.pad);
    memcpy(c.dilation, k->dil, sizeof c.dilation);
    return c;
}

static NnId conv2d(Ctx *c, NnOp op, int v)
{
    const struct ConvCase *k = &conv_cases[v];
    NnConv2d geom = conv_geom(k);
    NnId x = var(c, k->x, R_ANY, true), w = var(c, k->w, R_ANY, true);
    return nn_ir_conv2d(c->g, x, w, &geom, L);
}

// The data gradient as the forward op: dy and w vary, the image shape is the
// case's x (variants as conv_cases); variant 7 is a transposed convolution
// with output padding, 8 a grouped one.
static NnId conv2d_bwd_data(Ctx *c, NnOp op, int v)
{
    if (v >= 7) {
        NnConv2d geom = {.stride = {2, 2}, .pad = {1, 0, 1, 0}, .outpad = {1, 0},
                         .groups = v == 8 ? 2 : 1};
        NnId x = var(c, "1,4,3,3", R_ANY, true);
        NnId w = var(c, v == 8 ? "4,1,3,2" : "4,2,3,2", R_ANY, true);
        return nn_ir_conv_transpose2d(c->g, x, w, &geom, L);
    }
    const struct ConvCase *k = &conv_cases[v];
    NnConv2d geom = conv_geom(k);
    NnGraph *g = c->g;
    // Shapes from a forward node that stays unused.
    NnId x0 = var(c, k->x, R_ANY, false), w = var(c, k->w, R_ANY, true);
    NnId y0 = nn_ir_conv2d(g, x0, w, &geom, L);
    cr_assert(y0 >= 0, "%s", g->err);
    NnShape ys = g->nodes[y0].shape, xs = g->nodes[x0].shape;
    NnId dy = var_shape(c, &ys, NN_DT_F64, R_ANY, true);
    return nn_ir_conv2d_bwd_data(g, dy, w, &xs, &geom, L);
}

static NnId conv2d_bwd_filter(Ctx *c, NnOp op, int v)
{
    const struct ConvCase *k = &conv_cases[v];
    NnConv2d geom = conv_geom(k);
    NnGraph *g = c->g;
    NnId x = var(c, k->x, R_ANY, true), w0 = var(c, k->w, R_ANY, false);
    NnId y0 = nn_ir_conv2d(g, x, w0, &geom, L);
    cr_assert(y0 >= 0, "%s", g->err);
    NnShape ys = g->nodes[y0].shape, ws = g->nodes[w0].shape;
    NnId dy = var_shape(c, &ys, NN_DT_F64, R_ANY, true);
    return nn_ir_conv2d_bwd_filter(g, x, dy, &ws, &geom, L);
}

// Pooling variants: 2x2 stride 2; 3x3 stride 2 padded (windows overlap);
// 2x3 stride 1 dilated, symbolic batch.
static const struct PoolCase {
    const char *x;
    int kernel[2], stride[2], pad[4], dil[2];
} pool_cases[] = {
    {"2,2,4,6", {2, 2}, {2, 2}, {0, 0, 0, 0}, {1, 1}},
    {"1,2,5,5", {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}},
    {"N=2,1,5,6", {2, 3}, {1, 1}, {0, 1, 1, 0}, {2, 1}},
};

static NnConv2d pool_geom(const struct PoolCase *k)
{
    NnConv2d c = {.groups = 1};
    memcpy(c.kernel, k->kernel, sizeof c.kernel);
    memcpy(c.stride, k->stride, sizeof c.stride);
    memcpy(c.pad, k->pad, sizeof c.pad);
    memcpy(c.dilation, k->dil, sizeof c.dilation);
    return c;
}

static NnId pool2d(Ctx *c, NnOp op, int v)
{
    NnConv2d geom = pool_geom(&pool_cases[v]);
    return nn_ir_pool2d(c->g, op, var(c, pool_cases[v].x, R_ANY, true), &geom, L);
}

static NnId avg_pool2d_bwd(Ctx *c, NnOp op, int v)
{
    NnConv2d geom = pool_geom(&pool_cases[v]);
    NnId x0 = var(c, pool_cases[v].x, R_ANY, false);
    NnId y0 = nn_ir_pool2d(c->g, NN_OP_AVG_POOL2D, x0, &geom, L);
    cr_assert(y0 >= 0, "%s", c->g->err);
    NnShape ys = c->g->nodes[y0].shape;
    NnAttr a = {.conv = c->g->nodes[y0].attr.conv, .shape = c->g->nodes[x0].shape};
    NnId dy = var_shape(c, &ys, NN_DT_F64, R_ANY, true);
    return nn_ir_add(c->g, NN_OP_AVG_POOL2D_BWD, &dy, 1, &a, L);
}

// Variants: three axes padded unevenly; a symbolic batch left unpadded.
static NnId pad(Ctx *c, NnOp op, int v)
{
    int64_t lo[2][NN_MAX_RANK] = {{1, 0, 2}, {0, 1, 1}};
    int64_t hi[2][NN_MAX_RANK] = {{0, 2, 1}, {0, 0, 2}};
    NnId x = var(c, v ? "N=2,3,2" : "2,3,2", R_ANY, true);
    return nn_ir_pad(c->g, x, lo[v], hi[v], v ? 0.5 : 0, L);
}

// Variants as {spec, axis, start, stop, step}.
static const struct SliceCase {
    const char *x;
    int axis;
    int64_t start, stop, step;
} slice_cases[] = {
    {"3,7,2", 1, 1, 7, 2},
    {"4,3", 0, 0, 3, 1},
    {"N=2,5", 1, 2, 3, 1},
};

static NnId slice(Ctx *c, NnOp op, int v)
{
    const struct SliceCase *k = &slice_cases[v];
    NnId x = var(c, k->x, R_ANY, true);
    return nn_ir_slice(c->g, x, k->axis, k->start, k->stop, k->step, L);
}

static NnId slice_bwd(Ctx *c, NnOp op, int v)
{
    const struct SliceCase *k = &slice_cases[v];
    NnId x0 = var(c, k->x, R_ANY, false);
    NnId y0 = nn_ir_slice(c->g, x0, k->axis, k->start, k->stop, k->step, L);
    cr_assert(y0 >= 0, "%s", c->g->err);
    NnShape ys = c->g->nodes[y0].shape;
    NnAttr a = {.shape = c->g->nodes[x0].shape, .axis = k->axis, .start = k->start,
                .stop = k->stop, .step = k->step};
    NnId dy = var_shape(c, &ys, NN_DT_F64, R_ANY, true);
    return nn_ir_add(c->g, NN_OP_SLICE_BWD, &dy, 1, &a, L);
}

// Variants: three operands along the middle axis; two along axis 0; one
// operand used twice with a symbolic batch.
static NnId concat(Ctx *c, NnOp op, int v)
{
    if (v == 0) {
        NnId xs[3] = {var(c, "2,1,3", R_ANY, true), var(c, "2,4,3", R_ANY, true),
                      var(c, "2,2,3", R_ANY, true)};
        return nn_ir_concat(c->g, xs, 3, 1, L);
    }
    if (v == 1) {
        NnId xs[2] = {var(c, "3,2", R_ANY, true), var(c, "1,2", R_ANY, true)};
        return nn_ir_concat(c->g, xs, 2, 0, L);
    }
    NnId x = var(c, "N=2,3", R_ANY, true);
    NnId xs[2] = {x, x};
    return nn_ir_concat(c->g, xs, 2, 1, L);
}

// Variants: a forward loop whose body does not save its carry (the gradient
// builds a copy of the loop that does); a reverse loop over a symbolic batch
// whose body saves it and also sets a second carry it never reads. The result
// reads the stacked per-step values and every final carry.
static NnId loop(Ctx *c, NnOp op, int v)
{
    NnId c0 = var(c, v ? "N=2,3" : "2,3", R_ANY, true);
    NnId xs = var(c, v ? "4,N=2,3" : "4,2,3", R_ANY, true);
    NnId w = var(c, "3,3", R_ANY, true);
    NnShape hs = c->g->nodes[c0].shape, ws = c->g->nodes[w].shape;
    NnGraph *b = nn_graph_new_child(c->g);
    NnId h = nn_ir_source(b, NN_OP_INPUT, "h", NN_DT_F64, &hs, L);
    if (v)
        nn_ir_source(b, NN_OP_INPUT, "z", NN_DT_F64, &hs, L);
    NnId x = nn_ir_source(b, NN_OP_INPUT, "x", NN_DT_F64, &hs, L);
    NnId wi = nn_ir_source(b, NN_OP_INPUT, "w", NN_DT_F64, &ws, L);
    NnId pre = nn_ir_binary(b, NN_OP_ADD, nn_ir_matmul(b, h, wi, false, false, L), x, L);
    NnId hn = nn_ir_unary(b, NN_OP_TANH, pre, L);
    NnId y = nn_ir_binary(b, NN_OP_MUL, hn, x, L);
    nn_graph_add_output(b, "h", hn);
    if (v)
        nn_graph_add_output(b, "z", nn_ir_unary(b, NN_OP_SIN, pre, L));
    nn_graph_add_output(b, "y", y);
    if (v)
        nn_graph_add_output(b, "saved", h);
    NnId in[4] = {c0, c0, xs, w};
    NnId lp = v ? nn_ir_loop(c->g, in, 4, 2, 1, 4, true, b, L)
                : nn_ir_loop(c->g, (NnId[]){c0, xs, w}, 3, 1, 1, 4, false, b, L);
    if (lp < 0)
        return -1;
    NnId r = nn_ir_binary(c->g, NN_OP_ADD, nn_ir_loop_out(c->g, lp, v ? 2 : 1, L),
                          nn_ir_loop_out(c->g, lp, 0, L), L);
    return v ? nn_ir_binary(c->g, NN_OP_ADD, r, nn_ir_loop_out(c->g, lp, 1, L), L) : r;
}

// EXTERN: libm's atan (double), its declared derivative 1 / (1 + x^2) as the
// body, called on a [3, 4] tensor and, broadcast, with a scalar.
static NnId extern_atan(Ctx *c, NnOp op, int v)
{
    (void)op;
    NnId x = var(c, v == 0 ? "3,4" : "N=2,3", R_ANY, true);
    NnGraph *body = nn_graph_new_child(c->g);
    NnShape s = c->g->nodes[x].shape;
    NnId bx = nn_ir_source(body, NN_OP_INPUT, "x", NN_DT_F64, &s, L);
    NnId one = nn_ir_const(body, 1, NN_DT_F64, L);
    NnId sq = nn_ir_binary(body, NN_OP_MUL, bx, bx, L);
    nn_graph_add_output(body, "d",
                        nn_ir_binary(body, NN_OP_DIV, one, nn_ir_binary(body, NN_OP_ADD, one, sq,
                                                                      L), L));
    NnAttr a = {.dtype = NN_DT_F64, .sym = "atan", .lib = "libm.so.6", .body = body};
    return nn_ir_add(c->g, NN_OP_EXTERN, &x, 1, &a, L);
}

#define BIN(OP)                                                                                    \
    {OP, "same shape", binary, 0, 0, 0}, {OP, "trailing broadcast", binary, 1, 0, 0},             \
        {OP, "both broadcast", binary, 2, 0, 0}, {OP, "symbolic batch", binary, 3, 0, 0},          \
        {OP, "scalar and matrix", binary, 4, 0, 0}, {OP, "const operand", binary, 5, 0, 0}
#define RED(OP)                                                                                    \
    {OP, "one axis", reduce, 0, 0, 0}, {OP, "two axes kept", reduce, 1, 0, 0},                     \
        {OP, "all axes", reduce, 2, 0, 0}, {OP, "symbolic axis", reduce, 3, 0, 0}

#define CONV(OP, FN)                                                                               \
    {OP, "plain", FN, 0, 0, 0}, {OP, "stride 2, padded", FN, 1, 0, 0},                             \
        {OP, "dilated, asymmetric padding", FN, 2, 0, 0}, {OP, "groups 2", FN, 3, 0, 0},           \
        {OP, "depthwise, same padding", FN, 4, 0, 0}, {OP, "symbolic batch", FN, 5, 0, 0},         \
        {OP, "stride remainder", FN, 6, 0, 0}
#define POOL(OP, FN)                                                                               \
    {OP, "2x2 stride 2", FN, 0, 0, 0}, {OP, "3x3 stride 2 padded", FN, 1, 0, 0},                   \
        {OP, "dilated, symbolic batch", FN, 2, 0, 0}

static const Recipe recipes[] = {
    {NN_OP_NEG, "3x4", unary_any, 0, 0, 0},
    {NN_OP_EXP, "3x4", unary_any, 0, 0, 0},
    {NN_OP_LOG, "positive", unary_pos, 0, 0, 0},
    {NN_OP_SQRT, "positive", unary_pos, 0, 0, 0},
    {NN_OP_TANH, "3x4", unary_any, 0, 0, 0},
    {NN_OP_SIGMOID, "3x4", unary_any, 0, 0, 0},
    {NN_OP_ABS, "away from 0", unary_away0, 0, 0, 0},
    {NN_OP_SIN, "3x4", unary_any, 0, 0, 0},
    {NN_OP_COS, "3x4", unary_any, 0, 0, 0},
    {NN_OP_CAST, "f64 to f64", cast, 0, 0, 0},
    // Through f32 the loss is rounded to ~1e-7, so the step and tolerance grow.
    {NN_OP_CAST, "f64 to f32 to f64", cast, 1, 1e-2, 1e-4},
    BIN(NN_OP_ADD), BIN(NN_OP_SUB), BIN(NN_OP_MUL), BIN(NN_OP_DIV),
    BIN(NN_OP_POW), BIN(NN_OP_MAX), BIN(NN_OP_MIN),
    {NN_OP_SELECT, "broadcast condition", select3, 0, 0, 0},
    {NN_OP_DROPOUT, "rate 0.5", dropout, 0, 0, 0},
    {NN_OP_DROPOUT, "run-time rate 0.3", dropout, 1, 0, 0},
    {NN_OP_RESHAPE, "3x4 to 2x6", reshape, 0, 0, 0},
    {NN_OP_RESHAPE, "symbolic", reshape, 1, 0, 0},
    {NN_OP_TRANSPOSE, "rank 3", transpose, 0, 0, 0},
    {NN_OP_TRANSPOSE, "rank 2", transpose, 1, 0, 0},
    {NN_OP_BROADCAST, "prepend axis", broadcast, 0, 0, 0},
    {NN_OP_BROADCAST, "stretch axis", broadcast, 1, 0, 0},
    {NN_OP_SUMTO, "to keep-dims", sumto, 0, 0, 0},
    {NN_OP_SUMTO, "drop axis", sumto, 1, 0, 0},
    RED(NN_OP_REDUCE_SUM), RED(NN_OP_REDUCE_MEAN), RED(NN_OP_REDUCE_MAX), RED(NN_OP_LOGSUMEXP),
    {NN_OP_MATMUL, "plain", matmul, 0, 0, 0},
    {NN_OP_MATMUL, "ta", matmul, 1, 0, 0},
    {NN_OP_MATMUL, "tb", matmul, 2, 0, 0},
    {NN_OP_MATMUL, "ta tb", matmul, 3, 0, 0},
    {NN_OP_MATMUL, "symbolic batch", matmul, 4, 0, 0},
    {NN_OP_MATMUL, "leading dims", matmul, 5, 0, 0},
    {NN_OP_MATMUL, "leading dims, tb", matmul, 6, 0, 0},
    {NN_OP_MATMUL, "leading dims, symbolic batch", matmul, 7, 0, 0},
    {NN_OP_MATMUL, "ta over leading dims", matmul, 8, 0, 0},
    {NN_OP_TAKE, "labels", take, 0, 0, 0},
    {NN_OP_TAKE, "symbolic batch", take, 1, 0, 0},
    {NN_OP_GATHER, "repeated ids", gather, 0, 0, 0},
    {NN_OP_GATHER, "symbolic batch", gather, 1, 0, 0},
    {NN_OP_SCATTER_ADD, "repeated ids", scatter_add, 0, 0, 0},
    {NN_OP_SCATTER_ADD, "symbolic batch", scatter_add, 1, 0, 0},
    CONV(NN_OP_CONV2D, conv2d), CONV(NN_OP_CONV2D_BWD_DATA, conv2d_bwd_data),
    CONV(NN_OP_CONV2D_BWD_FILTER, conv2d_bwd_filter),
    {NN_OP_CONV2D_BWD_DATA, "transposed, output padding", conv2d_bwd_data, 7, 0, 0},
    {NN_OP_CONV2D_BWD_DATA, "transposed, groups", conv2d_bwd_data, 8, 0, 0},
    POOL(NN_OP_MAX_POOL2D, pool2d), POOL(NN_OP_AVG_POOL2D, pool2d),
    POOL(NN_OP_AVG_POOL2D_BWD, avg_pool2d_bwd),
    {NN_OP_PAD, "three axes", pad, 0, 0, 0},
    {NN_OP_PAD, "symbolic batch", pad, 1, 0, 0},
    {NN_OP_SLICE, "step 2", slice, 0, 0, 0},
    {NN_OP_SLICE, "axis 0", slice, 1, 0, 0},
    {NN_OP_SLICE, "symbolic batch", slice, 2, 0, 0},
    {NN_OP_SLICE_BWD, "step 2", slice_bwd, 0, 0, 0},
    {NN_OP_SLICE_BWD, "axis 0", slice_bwd, 1, 0, 0},
    {NN_OP_SLICE_BWD, "symbolic batch", slice_bwd, 2, 0, 0},
    {NN_OP_CONCAT, "three operands", concat, 0, 0, 0},
    {NN_OP_CONCAT, "axis 0", concat, 1, 0, 0},
    {NN_OP_CONCAT, "same operand twice", concat, 2, 0, 0},
    {NN_OP_LOOP, "forward, carry not saved", loop, 0, 0, 0},
    {NN_OP_LOOP, "reverse, symbolic batch, unread carry", loop, 1, 0, 0},
    {NN_OP_LOOP_OUT, "forward", loop, 0, 0, 0},
    {NN_OP_EXTERN, "atan, declared derivative", extern_atan, 0, 0, 0},
    {NN_OP_EXTERN, "atan, symbolic batch", extern_atan, 1, 0, 0},
};
#define NRECIPES ((int)(sizeof recipes / sizeof recipes[0]))

// ---- running ----

typedef struct Run {
    const NnBackend *be;
    NnExec *x;
    NnTensor *inputs[8];
    int ninputs;
    NnTensor *outputs[8];
} Run;

static double run_loss(Ctx *c, Run *r)
{
    NnStatus st = r->be->run(r->x, &c->vars, r->inputs, r->outputs);
    cr_assert_eq(st, NN_OK, "run failed: %s", nnrt_errmsg());
    return nnrt_tensor_get(r->outputs[0], 0);
}

// The element of variable v that finite differences perturb.
static NnTensor *storage(Ctx *c, const Var *v)
{
    return v->t ? v->t : nnrt_vars_get(&c->vars, v->name);
}

// Returns the number of mismatching elements (each reported once per variable).
static int compare_grads(Ctx *c, Run *r, const Recipe *rc, NnTensor **analytic, const int *vi,
                         int n)
{
    double eps = rc->eps ? rc->eps : 1e-6, tol = rc->tol ? rc->tol : 1e-6;
    int bad = 0;
    for (int k = 0; k < n; k++) {
        NnTensor *t = storage(c, &c->v[vi[k]]);
        bool reported = false;
        for (int64_t j = 0; j < t->numel; j++) {
            double x0 = nnrt_tensor_get(t, j);
            nnrt_tensor_set(t, j, x0 + eps);
            double lp = run_loss(c, r);
            nnrt_tensor_set(t, j, x0 - eps);
            double lm = run_loss(c, r);
            nnrt_tensor_set(t, j, x0);
            double fd = (lp - lm) / (2 * eps), an = nnrt_tensor_get(analytic[k], j);
            double scale = fmax(1.0, fmax(fabs(fd), fabs(an)));
            if (fabs(fd - an) > tol * scale) {
                bad++;
                if (!reported)
                    cr_log_error("%s (%s): d loss / d input %d [%lld]: analytic %.10g, "
                                 "numeric %.10g",
                                 nn_op_name(rc->op), rc->what, k, (long long)j, an, fd);
                reported = true;
            }
        }
    }
    return bad;
}

// Builds, differentiates and checks one recipe; returns false on any mismatch.
static bool check_recipe(const Recipe *rc)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull + (uint64_t)rc->op * 7919u + (uint64_t)rc->variant;
    Ctx c = {.g = nn_graph_new(), .rng = seed};
    nnrt_vars_init(&c.vars);
    NnId y = rc->build(&c, rc->op, rc->variant);
    cr_assert(y >= 0, "%s (%s): build failed: %s", nn_op_name(rc->op), rc->what, c.g->err);
    NnShape ys = c.g->nodes[y].shape;
    NnId w = var_shape(&c, &ys, NN_DT_F64, R_ANY, false);
    uint32_t all = (1u << ys.rank) - 1;
    NnId yw = nn_ir_binary(c.g, NN_OP_MUL, y, w, L);
    NnId loss = nn_ir_reduce(c.g, NN_OP_REDUCE_SUM, yw, all, false, L);
    NnId wrt[8], grads[8];
    int vi[8], n = 0;
    for (int k = 0; k < c.nv; k++)
        if (c.v[k].diff) {
            vi[n] = k;
            wrt[n++] = c.v[k].id;
        }
    cr_assert(nn_ad_grad(c.g, loss, wrt, n, grads), "%s: %s", nn_op_name(rc->op), c.g->err);
    nn_graph_add_output(c.g, "loss", loss);
    for (int k = 0; k < n; k++)
        nn_graph_add_output(c.g, "grad", grads[k]);
    cr_assert(nn_ir_verify(c.g), "%s (%s): %s", nn_op_name(rc->op), rc->what, c.g->err);

    Run r = {.be = &nn_backend_interp};
    for (int k = 0; k < c.nv; k++)
        if (c.v[k].t)
            r.inputs[r.ninputs++] = c.v[k].t;
    NnExecOptions opt = {.threads = 1};
    r.x = r.be->prepare(c.g, &opt);
    cr_assert(r.x, "%s (%s): prepare failed: %s", nn_op_name(rc->op), rc->what, nnrt_errmsg());
    run_loss(&c, &r);
    NnTensor *analytic[8];
    for (int k = 0; k < n; k++)
        analytic[k] = nnrt_tensor_clone(r.outputs[1 + k]);
    int bad = compare_grads(&c, &r, rc, analytic, vi, n);
    for (int k = 0; k < n; k++)
        nnrt_tensor_free(analytic[k]);
    r.be->free(r.x);
    for (int k = 0; k < c.nv; k++)
        nnrt_tensor_free(c.v[k].t);
    nnrt_vars_fini(&c.vars);
    nn_graph_free(c.g);
    return bad == 0;
}

Test(gradcheck, every_diff_op_has_a_recipe)
{
    for (NnOp op = 0; op < NN_OP_COUNT; op++) {
        if (!nn_op_has(op, NN_OPF_DIFF))
            continue;
        bool found = false;
        for (int k = 0; k < NRECIPES; k++)
            found |= recipes[k].op == op;
        cr_expect(found, "op %s is differentiable but has no gradcheck recipe", nn_op_name(op));
    }
}

Test(gradcheck, analytic_matches_finite_differences, .timeout = 120)
{
    for (NnOp op = 0; op < NN_OP_COUNT; op++) {
        if (!nn_op_has(op, NN_OPF_DIFF))
            continue;
        for (int k = 0; k < NRECIPES; k++)
            if (recipes[k].op == op)
                cr_expect(check_recipe(&recipes[k]), "gradient of %s (%s) is wrong",
                          nn_op_name(op), recipes[k].what);
    }
}

// DROPOUT's VJP redraws the forward mask: an element is dropped in the
// forward value exactly where its gradient is zero, and about half are.
Test(gradcheck, dropout_mask_matches)
{
    Ctx c = {.g = nn_graph_new(), .rng = 12345};
    nnrt_vars_init(&c.vars);
    NnId x = var(&c, "64", R_AWAY0, true);
    NnId in[3] = {x, nn_ir_const(c.g, 7, NN_DT_I32, L), nn_ir_const(c.g, 0.5, NN_DT_F32, L)};
    NnAttr a = {.seed = 99};
    NnId y = nn_ir_add(c.g, NN_OP_DROPOUT, in, 3, &a, L);
    NnId loss = nn_ir_reduce(c.g, NN_OP_REDUCE_SUM, y, 1, false, L);
    NnId grad;
    cr_assert(nn_ad_grad(c.g, loss, &x, 1, &grad));
    nn_graph_add_output(c.g, "y", y);
    nn_graph_add_output(c.g, "grad", grad);
    NnExecOptions opt = {.threads = 1};
    NnExec *ex = nn_backend_interp.prepare(c.g, &opt);
    cr_assert(ex, "%s", nnrt_errmsg());
    NnTensor *outs[2];
    cr_assert_eq(nn_backend_interp.run(ex, &c.vars, NULL, outs), NN_OK, "%s", nnrt_errmsg());
    int dropped = 0;
    for (int64_t i = 0; i < 64; i++) {
        double yv = nnrt_tensor_get(outs[0], i), gv = nnrt_tensor_get(outs[1], i);
        cr_expect_eq(yv == 0, gv == 0, "element %lld: y %g, grad %g", (long long)i, yv, gv);
        if (gv != 0)
            cr_expect(fabs(gv - 2.0) < 1e-12, "kept element %lld scaled by %g, not 2",
                      (long long)i, gv);
        dropped += yv == 0;
    }
    cr_expect(dropped > 16 && dropped < 48, "%d of 64 dropped at rate 0.5", dropped);
    nn_backend_interp.free(ex);
    nnrt_vars_fini(&c.vars);
    nn_graph_free(c.g);
}

// relu(x) = max(x, 0): the gradient is 1 where x > 0 and 0 at and below 0.
Test(gradcheck, relu_gradient_at_zero)
{
    Ctx c = {.g = nn_graph_new(), .rng = 1};
    nnrt_vars_init(&c.vars);
    NnId x = var(&c, "3", R_ANY, true);
    NnTensor *xt = nnrt_vars_get(&c.vars, "v0");
    double xs[3] = {-1, 0, 2};
    for (int i = 0; i < 3; i++)
        nnrt_tensor_set(xt, i, xs[i]);
    NnId y = nn_ir_binary(c.g, NN_OP_MAX, x, nn_ir_const(c.g, 0, NN_DT_F64, L), L);
    NnId loss = nn_ir_reduce(c.g, NN_OP_REDUCE_SUM, y, 1, false, L);
    NnId grad;
    cr_assert(nn_ad_grad(c.g, loss, &x, 1, &grad));
    nn_graph_add_output(c.g, "grad", grad);
    NnExecOptions opt = {.threads = 1};
    NnExec *ex = nn_backend_interp.prepare(c.g, &opt);
    cr_assert(ex, "%s", nnrt_errmsg());
    NnTensor *out;
    cr_assert_eq(nn_backend_interp.run(ex, &c.vars, NULL, &out), NN_OK, "%s", nnrt_errmsg());
    double want[3] = {0, 0, 1};
    for (int i = 0; i < 3; i++)
        cr_expect_eq(nnrt_tensor_get(out, i), want[i], "relu'(%g)", xs[i]);
    nn_backend_interp.free(ex);
    nnrt_vars_fini(&c.vars);
    nn_graph_free(c.g);
}

// Finite differences cannot see ties; REDUCE_MAX splits its gradient evenly
// between tied maxima, so the input gradient still sums to 1 per output.
Test(gradcheck, reduce_max_ties_split)
{
    Ctx c = {.g = nn_graph_new(), .rng = 1};
    nnrt_vars_init(&c.vars);
    NnId x = var(&c, "2,3", R_ANY, true);
    NnTensor *xt = nnrt_vars_get(&c.vars, "v0");
    double xs[6] = {1, 2, 2, 5, 5, 5}, want[6] = {0, 0.5, 0.5, 1.0 / 3, 1.0 / 3, 1.0 / 3};
    for (int i = 0; i < 6; i++)
        nnrt_tensor_set(xt, i, xs[i]);
    NnId m = nn_ir_reduce(c.g, NN_OP_REDUCE_MAX, x, 2, false, L);
    NnId loss = nn_ir_reduce(c.g, NN_OP_REDUCE_SUM, m, 1, false, L);
    NnId grad;
    cr_assert(nn_ad_grad(c.g, loss, &x, 1, &grad));
    nn_graph_add_output(c.g, "grad", grad);
    NnExecOptions opt = {.threads = 1};
    NnExec *ex = nn_backend_interp.prepare(c.g, &opt);
    cr_assert(ex, "%s", nnrt_errmsg());
    NnTensor *out;
    cr_assert_eq(nn_backend_interp.run(ex, &c.vars, NULL, &out), NN_OK, "%s", nnrt_errmsg());
    for (int i = 0; i < 6; i++)
        cr_expect(fabs(nnrt_tensor_get(out, i) - want[i]) < 1e-12, "element %d: %g, want %g", i,
                  nnrt_tensor_get(out, i), want[i]);
    nn_backend_interp.free(ex);
    nnrt_vars_fini(&c.vars);
    nn_graph_free(c.g);
}
