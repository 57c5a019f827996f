// Interpreter vs JIT, op by op: for every op in ops.def a few small graphs
// (odd sizes, broadcasting, f32/f64/i32, transposed matmuls, reductions over
// every kind of axis set) run on both backends and must agree within 1e-5
// relative. The table below has one builder per op; a new op without one
// fails the `every_op` test.
#include "agree.h"

#include "autodiff.h"
#include "loop.h"
#include "pass.h"

typedef struct Case {
    NnGraph *g;
    NnTensor *in[AG_MAXIN];
    int nin;
    NnVars vars;
} Case;

static void start(Case *c)
{
    memset(c, 0, sizeof *c);
    c->g = nn_graph_new();
    nnrt_vars_init(&c->vars);
}

// Adds an INPUT fed with random values in [lo, hi).
static NnId in(Case *c, NnDType dt, NnShape s, double lo, double hi)
{
    char name[8];
    snprintf(name, sizeof name, "x%d", c->nin);
    NnId id = ag_input(c->g, name, dt, s);
    c->in[c->nin] = ag_tensor(dt, s, 100 + (uint64_t)c->nin, lo, hi);
    c->nin++;
    return id;
}

// An input whose values are small integers (so EQ/NE and SELECT see ties).
static NnId in_int(Case *c, NnDType dt, NnShape s, double lo, double hi)
{
    NnId id = in(c, dt, s, lo, hi);
    NnTensor *t = c->in[c->nin - 1];
    for (int64_t i = 0; i < t->numel; i++)
        nnrt_tensor_set(t, i, round(nnrt_tensor_get(t, i)));
    return id;
}

// Long f32 dot products summed in different orders differ by ~sqrt(K) ulps of
// their terms' size, so matmul cases with a large K get a looser tolerance.
static double tol = 1e-5;

static void finish(Case *c, NnId out, const char *what)
{
    cr_assert(out >= 0, "%s: building failed: %s", what, c->g->err);
    nn_graph_add_output(c->g, "out", out);
    char why[512] = "";
    bool ok = ag_run(c->g, c->in, &c->vars, tol, why, sizeof why);
    cr_expect(ok, "%s: %s", what, why);
    for (int k = 0; k < c->nin; k++)
        nnrt_tensor_free(c->in[k]);
    nnrt_vars_fini(&c->vars);
    nn_graph_free(c->g);
}

static NnId step_input(Case *c) { return in_int(c, NN_DT_F32, AG_SCALAR, 3, 4); }

// ---- builders, one per op ----

static void b_source(NnOp op)
{
    Case c;
    start(&c);
    NnShape s = AG_SHAPE(3, 5);
    NnId x;
    if (op == NN_OP_INPUT) {
        x = in(&c, NN_DT_F32, s, -1, 1);
    } else {
        x = nn_ir_source(c.g, op, "w", NN_DT_F32, &s, ag_loc);
        nnrt_vars_put(&c.vars, "w", ag_tensor(NN_DT_F32, s, 7, -1, 1));
        NnId y = in(&c, NN_DT_F32, s, -1, 1);
        nn_graph_add_update(c.g, x, nn_ir_binary(c.g, NN_OP_ADD, x, y, ag_loc));
    }
    finish(&c, x, nn_op_name(op));
}

static void b_const(NnOp op)
{
    Case c;
    start(&c);
    NnAttr a = {.value = 2.5, .dtype = NN_DT_F32, .shape = AG_SHAPE(3, 4)};
    finish(&c, nn_ir_add(c.g, NN_OP_CONST, NULL, 0, &a, ag_loc), "const alone");
    start(&c);
    NnId x = in(&c, NN_DT_F32, AG_SHAPE(3, 4), -1, 1);
    NnId k = nn_ir_const(c.g, 0.5, NN_DT_F32, ag_loc);
    finish(&c, nn_ir_binary(c.g, NN_OP_MUL, x, k, ag_loc), "const inlined");
}

static void b_rand(NnOp op)
{
    for (int dt = NN_DT_F32; dt <= NN_DT_F64; dt++) {
        Case c;
        start(&c);
        NnId st = step_input(&c);
        NnAttr a = {.dtype = (NnDType)dt, .shape = AG_SHAPE(7, 13), .seed = 42};
        finish(&c, nn_ir_add(c.g, op, &st, 1, &a, ag_loc), nn_op_name(op));
    }
}

static void b_unary(NnOp op)
{
    bool pos = op == NN_OP_LOG || op == NN_OP_SQRT;
    for (int dt = NN_DT_F32; dt <= NN_DT_I32; dt++) {
        if (dt == NN_DT_I32 && op != NN_OP_NEG && op != NN_OP_ABS)
            continue;
        Case c;
        start(&c);
        NnId x = in(&c, (NnDType)dt, AG_SHAPE(7, 13), pos ? 0.1 : -4, 4);
        char what[64];
        snprintf(what, sizeof what, "%s %s", nn_op_name(op), nnrt_dtype_name((NnDType)dt));
        finish(&c, nn_ir_unary(c.g, op, x, ag_loc), what);
    }
}

static void b_cast(NnOp op)
{
    static const NnDType pairs[][2] = {{NN_DT_F32, NN_DT_I32},
                                       {NN_DT_I32, NN_DT_F32},
                                       {NN_DT_F32, NN_DT_F64},
                                       {NN_DT_F64, NN_DT_F32}};
    for (int k = 0; k < 4; k++) {
        Case c;
        start(&c);
        NnId x = in(&c, pairs[k][0], AG_SHAPE(5, 17), -100, 100);
        finish(&c, nn_ir_cast(c.g, x, pairs[k][1], ag_loc), "cast");
    }
}

static void b_binary(NnOp op)
{
    NnShape bs[] = {AG_SHAPE(7, 13), AG_SHAPE(13), AG_SHAPE(7, 1), AG_SCALAR};
    bool cmp = op >= NN_OP_GT && op <= NN_OP_NE;
    for (int dt = NN_DT_F32; dt <= NN_DT_I32; dt++) {
        if (dt == NN_DT_I32 && op == NN_OP_POW)
            continue;
        for (int k = 0; k < 4; k++) {
            Case c;
            start(&c);
            NnId a, b;
            if (op == NN_OP_POW) {
                a = in(&c, (NnDType)dt, AG_SHAPE(7, 13), 0.1, 3);
                b = in(&c, (NnDType)dt, bs[k], -2, 2);
            } else if (cmp || dt == NN_DT_I32) {
                a = in_int(&c, (NnDType)dt, AG_SHAPE(7, 13), -4, 4);
                b = in_int(&c, (NnDType)dt, bs[k], -3, 3);
            } else {
                a = in(&c, (NnDType)dt, AG_SHAPE(7, 13), -4, 4);
                b = in(&c, (NnDType)dt, bs[k], 0.5, 3);
            }
            char what[64];
            snprintf(what, sizeof what, "%s %s case %d", nn_op_name(op),
                     nnrt_dtype_name((NnDType)dt), k);
            // Broadcasting from either side.
            NnId y =
                k % 2 ? nn_ir_binary(c.g, op, b, a, ag_loc) : nn_ir_binary(c.g, op, a, b, ag_loc);
            finish(&c, y, what);
        }
    }
}

static void b_select(NnOp op)
{
    Case c;
    start(&c);
    NnId cond = in_int(&c, NN_DT_F32, AG_SHAPE(7, 13), 0, 1);
    NnId a = in(&c, NN_DT_F32, AG_SHAPE(7, 13), -1, 1);
    NnId b = in(&c, NN_DT_F32, AG_SHAPE(13), -1, 1);
    finish(&c, nn_ir_select(c.g, cond, a, b, ag_loc), "select");
    start(&c);
    cond = in_int(&c, NN_DT_I32, AG_SHAPE(7, 1), 0, 2);
    a = in(&c, NN_DT_F64, AG_SHAPE(7, 13), -1, 1);
    b = in(&c, NN_DT_F64, AG_SCALAR, -1, 1);
    finish(&c, nn_ir_select(c.g, cond, a, b, ag_loc), "select i32 cond");
}

static void b_dropout(NnOp op)
{
    for (int dt = NN_DT_F32; dt <= NN_DT_F64; dt++) {
        Case c;
        start(&c);
        NnId x = in(&c, (NnDType)dt, AG_SHAPE(9, 37), -1, 1);
        // The rate is a run-time input (of either float dtype) or a constant.
        NnId rate = in(&c, (NnDType)dt, AG_SCALAR, 0.1, 0.6);
        NnId ins[3] = {x, step_input(&c), rate};
        NnAttr a = {.seed = 7};
        finish(&c, nn_ir_add(c.g, NN_OP_DROPOUT, ins, 3, &a, ag_loc), "dropout");
        start(&c);
        x = in(&c, (NnDType)dt, AG_SHAPE(9, 37), -1, 1);
        NnId cins[3] = {x, step_input(&c), nn_ir_const(c.g, 0.3, NN_DT_F32, ag_loc)};
        finish(&c, nn_ir_add(c.g, NN_OP_DROPOUT, cins, 3, &a, ag_loc), "dropout const rate");
    }
}

// EXTERN: libm through libffi vs a direct call: f32 over a vector body and a
// tail, f64 with two broadcast operands, and a mixed (float, int) signature.
static void b_extern(NnOp op)
{
    Case c;
    start(&c);
    NnId x = in(&c, NN_DT_F32, AG_SHAPE(9, 37), -2, 2);
    NnAttr a = {.dtype = NN_DT_F32, .sym = "erff", .lib = "libm.so.6"};
    finish(&c, nn_ir_add(c.g, op, &x, 1, &a, ag_loc), "extern erff");
    start(&c);
    NnId yx[2] = {in(&c, NN_DT_F64, AG_SHAPE(7, 13), -1, 1), in(&c, NN_DT_F64, AG_SCALAR, 0.5, 1)};
    NnAttr b = {.dtype = NN_DT_F64, .sym = "atan2", .lib = "libm.so.6"};
    finish(&c, nn_ir_add(c.g, op, yx, 2, &b, ag_loc), "extern atan2, broadcast");
    start(&c);
    NnId xe[2] = {in(&c, NN_DT_F32, AG_SHAPE(5, 19), -1, 1),
                  in_int(&c, NN_DT_I32, AG_SHAPE(19), -3, 4)};
    NnAttr l = {.dtype = NN_DT_F32, .sym = "ldexpf", .lib = "libm.so.6"};
    finish(&c, nn_ir_add(c.g, op, xe, 2, &l, ag_loc), "extern ldexpf(float, int)");
}

static void b_reshape(NnOp op)
{
    Case c;
    start(&c);
    NnId x = in(&c, NN_DT_F32, AG_SHAPE(7, 13), -1, 1);
    NnShape s = AG_SHAPE(13, 7);
    finish(&c, nn_ir_reshape(c.g, x, &s, ag_loc), "reshape");
}

static void b_transpose(NnOp op)
{
    static const int p3[NN_MAX_RANK] = {2, 0, 1}, p2[NN_MAX_RANK] = {1, 0};
    Case c;
    start(&c);
    NnId x = in(&c, NN_DT_F32, AG_SHAPE(3, 4, 5), -1, 1);
    finish(&c, nn_ir_transpose(c.g, x, p3, ag_loc), "transpose 3d");
    start(&c);
    x = in(&c, NN_DT_I32, AG_SHAPE(7, 33), -9, 9);
    finish(&c, nn_ir_transpose(c.g, x, p2, ag_loc), "transpose 2d");
}

static void b_broadcast(NnOp op)
{
    NnShape from[] = {AG_SHAPE(13), AG_SHAPE(7, 1), AG_SCALAR, AG_SHAPE(3, 1, 5)};
    NnShape to[] = {AG_SHAPE(7, 13), AG_SHAPE(7, 13), AG_SHAPE(3, 4), AG_SHAPE(2, 3, 4, 5)};
    for (int k = 0; k < 4; k++) {
        Case c;
        start(&c);
        NnId x = in(&c, NN_DT_F32, from[k], -1, 1);
        finish(&c, nn_ir_broadcast(c.g, x, &to[k], ag_loc), "broadcast");
    }
}

static void b_sumto(NnOp op)
{
    NnShape from[] = {AG_SHAPE(7, 13), AG_SHAPE(7, 13), AG_SHAPE(7, 13), AG_SHAPE(2, 3, 4, 5),
                      AG_SHAPE(300, 37)};
    NnShape to[] = {AG_SHAPE(13), AG_SHAPE(7, 1), AG_SCALAR, AG_SHAPE(3, 1, 5), AG_SHAPE(37)};
    for (int k = 0; k < 5; k++) {
        Case c;
        start(&c);
        NnId x = in(&c, NN_DT_F32, from[k], -1, 1);
        char what[32];
        snprintf(what, sizeof what, "sumto case %d", k);
        finish(&c, nn_ir_sumto(c.g, x, &to[k], ag_loc), what);
    }
}

static void b_reduce(NnOp op)
{
    struct {
        NnShape s;
        uint32_t axes;
        bool keep;
    } cs[] = {
        {AG_SHAPE(7, 13), 2, false},  {AG_SHAPE(7, 13), 1, false},   {AG_SHAPE(7, 13), 3, true},
        {AG_SHAPE(3, 4, 5), 2, true}, {AG_SHAPE(3, 4, 5), 5, false}, {AG_SHAPE(4, 1000), 2, false},
        {AG_SHAPE(300, 37), 1, true}, {AG_SHAPE(2, 1300), 1, false}, {AG_SHAPE(6, 1), 2, false},
        // The JIT's register chunks of 64 kept columns (all full, one full and
        // a partial one, several kept dims), and rows shorter than a vector
        // or with a tail, which reduce through one masked vector.
        {AG_SHAPE(129, 256), 1, false}, {AG_SHAPE(33, 70), 1, true}, {AG_SHAPE(3, 5, 128), 2, false},
        {AG_SHAPE(130, 10), 2, false},  {AG_SHAPE(5, 17), 2, true},  {AG_SHAPE(4, 3, 33), 6, false},
    };
    for (int k = 0; k < (int)(sizeof cs / sizeof cs[0]); k++)
        for (int dt = NN_DT_F32; dt <= NN_DT_F64; dt++) {
            Case c;
            start(&c);
            NnId x = in(&c, (NnDType)dt, cs[k].s, -3, 3);
            char what[64];
            snprintf(what, sizeof what, "%s case %d %s", nn_op_name(op), k,
                     nnrt_dtype_name((NnDType)dt));
            finish(&c, nn_ir_reduce(c.g, op, x, cs[k].axes, cs[k].keep, ag_loc), what);
        }
}

static void b_matmul(NnOp op)
{
    // {9, 1100, 37} has K above the JIT's K block, so partial sums round-trip
    // through C; the last two are short products the JIT does without packing
    // (odd N and K: masked column panels and a masked last K step). The
    // last three have at most one vector of columns in f32 (the tiles then
    // compute one vector per row), 16 being exactly one, and 17 one more.
    int64_t sizes[][3] = {{7, 13, 5},    {130, 70, 50},  {1, 9, 33},   {17, 1, 64},
                          {9, 1100, 37}, {1, 300, 130},  {3, 200, 70}, {130, 128, 10},
                          {77, 300, 16}, {40, 1100, 9},  {64, 100, 17}};
    for (int k = 0; k < (int)(sizeof sizes / sizeof sizes[0]); k++)
        for (int t = 0; t < 4; t++)
            for (int dt = NN_DT_F32; dt <= NN_DT_F64; dt++) {
                bool ta = t & 1, tb = t & 2;
                int64_t m = sizes[k][0], kk = sizes[k][1], n = sizes[k][2];
                tol = 1e-5 * fmax(1, sqrt((double)kk / 64));
                Case c;
                start(&c);
                NnId a = in(&c, (NnDType)dt, ta ? AG_SHAPE(kk, m) : AG_SHAPE(m, kk), -1, 1);
                NnId b = in(&c, (NnDType)dt, tb ? AG_SHAPE(n, kk) : AG_SHAPE(kk, n), -1, 1);
                char what[64];
                snprintf(what, sizeof what, "matmul %lldx%lldx%lld ta %d tb %d %s", (long long)m,
                         (long long)kk, (long long)n, ta, tb, nnrt_dtype_name((NnDType)dt));
                finish(&c, nn_ir_matmul(c.g, a, b, ta, tb, ag_loc), what);
                tol = 1e-5;
            }
    // Leading dims of A (rows), and A^T B contracting them (a weight gradient
    // over a time-major sequence): {T, N, K} with N rows per step.
    int64_t lead[][4] = {{3, 5, 13, 7}, {28, 16, 28, 96}, {2, 130, 70, 50}};
    for (int k = 0; k < 3; k++)
        for (int form = 0; form < 3; form++)
            for (int dt = NN_DT_F32; dt <= NN_DT_F64; dt++) {
                int64_t T = lead[k][0], N = lead[k][1], kk = lead[k][2], n = lead[k][3];
                tol = 1e-5 * fmax(1, sqrt((double)(form == 2 ? T * N : kk) / 64));
                Case c;
                start(&c);
                NnId a = in(&c, (NnDType)dt, AG_SHAPE(T, N, kk), -1, 1);
                NnId b = in(&c, (NnDType)dt, form == 2   ? AG_SHAPE(T, N, n)
                                             : form == 1 ? AG_SHAPE(n, kk)
                                                         : AG_SHAPE(kk, n), -1, 1);
                char what[80];
                snprintf(what, sizeof what, "matmul %lldx%lldx%lld @ %lld form %d %s",
                         (long long)T, (long long)N, (long long)kk, (long long)n, form,
                         nnrt_dtype_name((NnDType)dt));
                finish(&c, nn_ir_matmul(c.g, a, b, form == 2, form == 1, ag_loc), what);
                tol = 1e-5;
            }
}

static void b_take(NnOp op)
{
    Case c;
    start(&c);
    NnId x = in(&c, NN_DT_F32, AG_SHAPE(6, 5), -1, 1);
    NnId idx = in(&c, NN_DT_I32, AG_SHAPE(6), 0, 5);
    NnId ins[2] = {x, idx};
    NnAttr a = {.axis = 1};
    finish(&c, nn_ir_add(c.g, NN_OP_TAKE, ins, 2, &a, ag_loc), "take");
}

static void b_onehot(NnOp op)
{
    Case c;
    start(&c);
    NnId idx = in(&c, NN_DT_I32, AG_SHAPE(9), 0, 4);
    NnAttr a = {.depth = 4, .dtype = NN_DT_F32};
    finish(&c, nn_ir_add(c.g, NN_OP_ONEHOT, &idx, 1, &a, ag_loc), "onehot");
}

// Rows of a 7-row table by 12 ids (f32 and f64), and the adjoint adding 12
// rows back into the table.
static void b_gather(NnOp op)
{
    for (int dt = NN_DT_F32; dt <= NN_DT_F64; dt++) {
        Case c;
        start(&c);
        NnId x = op == NN_OP_GATHER ? in(&c, (NnDType)dt, AG_SHAPE(7, 5), -1, 1)
                                    : in(&c, (NnDType)dt, AG_SHAPE(3, 4, 5), -1, 1);
        NnId ids = in_int(&c, NN_DT_I32, AG_SHAPE(3, 4), 0, 6);
        NnAttr a = {.shape = AG_SHAPE(7, 5)};
        NnId ins[2] = {x, ids};
        char what[64];
        snprintf(what, sizeof what, "%s %s", nn_op_name(op), nnrt_dtype_name((NnDType)dt));
        finish(&c, nn_ir_add(c.g, op, ins, 2, op == NN_OP_GATHER ? NULL : &a, ag_loc), what);
    }
}

static void b_argmax(NnOp op)
{
    for (int axis = 0; axis < 3; axis++) {
        Case c;
        start(&c);
        NnId x = in_int(&c, NN_DT_F32, AG_SHAPE(3, 4, 5), -3, 3); // ties: first max wins
        NnAttr a = {.axis = axis};
        finish(&c, nn_ir_add(c.g, NN_OP_ARGMAX, &x, 1, &a, ag_loc), "argmax");
    }
}

// GRAD_START then GRAD_WAIT: with one rank the sum over ranks is this
// rank's gradient times its weight (1 outside a data-parallel step).
static void b_grad(NnOp op)
{
    Case c;
    start(&c);
    NnId x = in(&c, NN_DT_F32, AG_SHAPE(3, 4), -1, 1);
    NnId s = nn_ir_unary(c.g, NN_OP_GRAD_START, x, ag_loc);
    finish(&c, nn_ir_unary(c.g, NN_OP_GRAD_WAIT, s, ag_loc), "grad_start, grad_wait");
}

// FUSED nodes come from the pass pipeline; both backends run the fused graph.
static void b_fused(NnOp op)
{
    Case c;
    start(&c);
    // Positive terms: no cancellation, so the checks below stay well conditioned.
    NnId x = in(&c, NN_DT_F32, AG_SHAPE(33, 1100), 0, 1);
    NnId w = in(&c, NN_DT_F32, AG_SHAPE(1100, 19), 0, 0.01);
    NnId bias = in(&c, NN_DT_F32, AG_SHAPE(19), -1, 1);
    NnId h = nn_ir_matmul(c.g, x, w, false, false, ag_loc);
    h = nn_ir_binary(c.g, NN_OP_ADD, h, bias, ag_loc);
    h = nn_ir_binary(c.g, NN_OP_MAX, h, nn_ir_const(c.g, 0, NN_DT_F32, ag_loc), ag_loc); // M
    NnId e = nn_ir_unary(c.g, NN_OP_EXP, nn_ir_unary(c.g, NN_OP_NEG, h, ag_loc), ag_loc);
    NnId s = nn_ir_reduce(c.g, NN_OP_REDUCE_SUM, e, 2, true, ag_loc); // R
    NnId y = nn_ir_binary(c.g, NN_OP_DIV, nn_ir_unary(c.g, NN_OP_TANH, h, ag_loc), s, ag_loc);
    nn_graph_add_output(
        c.g, "y", nn_ir_unary(c.g, NN_OP_SQRT, nn_ir_unary(c.g, NN_OP_ABS, y, ag_loc), ag_loc));
    c.g = nn_passes_run(c.g, NULL);
    cr_expect(nn_graph_count_op(c.g, NN_OP_FUSED) >= 2, "expected fused nodes");
    char why[512] = "";
    cr_expect(ag_run(c.g, c.in, &c.vars, 1e-5 * sqrt(1100.0 / 64), why, sizeof why), "fused: %s",
              why);
    for (int k = 0; k < c.nin; k++)
        nnrt_tensor_free(c.in[k]);
    nnrt_vars_fini(&c.vars);
    nn_graph_free(c.g);
}

// Short products (M = 1 and 3, every transpose) with a bias + ReLU epilogue
// fused into the matmul kernel: the JIT's unpacked path with its epilogue.
static void fused_short(int64_t m, bool ta, bool tb)
{
    const int64_t k = 600, n = 70; // M = 1 too is above the tiny-product path
    Case c;
    start(&c);
    NnId x = in(&c, NN_DT_F32, ta ? AG_SHAPE(k, m) : AG_SHAPE(m, k), -1, 1);
    NnId w = in(&c, NN_DT_F32, tb ? AG_SHAPE(n, k) : AG_SHAPE(k, n), -1, 1);
    NnId bias = in(&c, NN_DT_F32, AG_SHAPE(n), -1, 1);
    NnId h = nn_ir_matmul(c.g, x, w, ta, tb, ag_loc);
    h = nn_ir_binary(c.g, NN_OP_ADD, h, bias, ag_loc);
    h = nn_ir_binary(c.g, NN_OP_MAX, h, nn_ir_const(c.g, 0, NN_DT_F32, ag_loc), ag_loc);
    nn_graph_add_output(c.g, "y", h);
    c.g = nn_passes_run(c.g, NULL);
    cr_expect(nn_graph_count_op(c.g, NN_OP_FUSED) >= 1, "expected a fused matmul");
    char why[512] = "";
    cr_expect(ag_run(c.g, c.in, &c.vars, 1e-5 * sqrt(600.0 / 64), why, sizeof why),
              "short fused matmul m %lld ta %d tb %d: %s", (long long)m, ta, tb, why);
    for (int i = 0; i < c.nin; i++)
        nnrt_tensor_free(c.in[i]);
    nnrt_vars_fini(&c.vars);
    nn_graph_free(c.g);
}


// ---- convolution, pooling, layout along an axis ----

typedef struct ConvCase {
    int64_t n, c, h, w, f, kh, kw;
    int sh, sw, dh, dw, pad[4], groups;
    NnDType dt;
} ConvCase;

// Same padding; stride + asymmetric padding + groups; depthwise + dilation in
// f64; K over one gather block (630 and 576) with a short row tile and masked
// panels; a 5x5 window over whole panels; one input channel and few pixels
// (one-vector panels, 16-row tiles); no images (the filter grad is 0);
// stride 1 with output rows shorter than the input's (LeNet-5's valid second
// layer; dilation, asymmetric padding and groups in f64), where the data grad
// reads a copy of dy re-strided to the input's rows; few taps (the filter
// grad over a zero-padded grid: 7 filters, one block of 6 and one short, 25
// taps; f64 with dilation and asymmetric padding, one short block).
static const ConvCase conv_cases[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 1, NN_DT_F32},
    {2, 4, 9, 8, 6, 3, 2, 2, 2, 1, 1, {1, 0, 2, 1}, 2, NN_DT_F32},
    {1, 3, 10, 9, 3, 3, 3, 1, 2, 2, 1, {2, 1, 2, 1}, 3, NN_DT_F64},
    {3, 70, 6, 5, 64, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 1, NN_DT_F32},
    {2, 8, 16, 20, 20, 5, 5, 1, 1, 1, 1, {2, 2, 2, 2}, 1, NN_DT_F32},
    {2, 1, 5, 3, 20, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 1, NN_DT_F32},
    {0, 3, 5, 5, 4, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 1, NN_DT_F32},
    {3, 6, 14, 14, 16, 5, 5, 1, 1, 1, 1, {0, 0, 0, 0}, 1, NN_DT_F32},
    {2, 4, 9, 11, 6, 3, 3, 1, 1, 2, 1, {1, 0, 0, 1}, 2, NN_DT_F64},
    {3, 1, 12, 10, 7, 5, 5, 1, 1, 1, 1, {2, 2, 2, 2}, 1, NN_DT_F32},
    {2, 1, 9, 11, 5, 3, 3, 1, 1, 2, 1, {1, 0, 2, 1}, 1, NN_DT_F64},
};

static NnConv2d conv_geom(const ConvCase *k)
{
    NnConv2d c = {.kernel = {(int)k->kh, (int)k->kw}, .stride = {k->sh, k->sw},
                  .dilation = {k->dh, k->dw}, .groups = k->groups};
    memcpy(c.pad, k->pad, sizeof c.pad);
    return c;
}

static int64_t conv_out(int64_t h, int p0, int p1, int d, int64_t k, int s)
{
    return (h + p0 + p1 - d * (k - 1) - 1) / s + 1;
}

static void b_conv(NnOp op)
{
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        const ConvCase *k = &conv_cases[i];
        NnConv2d cv = conv_geom(k);
        int64_t oh = conv_out(k->h, k->pad[0], k->pad[2], k->dh, k->kh, k->sh);
        int64_t ow = conv_out(k->w, k->pad[1], k->pad[3], k->dw, k->kw, k->sw);
        NnShape xs = AG_SHAPE(k->n, k->c, k->h, k->w);
        NnShape ws = AG_SHAPE(k->f, k->c / k->groups, k->kh, k->kw);
        NnShape ys = AG_SHAPE(k->n, k->f, oh, ow);
        Case c;
        start(&c);
        NnId out;
        int64_t terms;
        if (op == NN_OP_CONV2D) {
            NnId x = in(&c, k->dt, xs, -1, 1), w = in(&c, k->dt, ws, -1, 1);
            out = nn_ir_conv2d(c.g, x, w, &cv, ag_loc);
            terms = k->c / k->groups * k->kh * k->kw;
        } else if (op == NN_OP_CONV2D_BWD_DATA) {
            NnId dy = in(&c, k->dt, ys, -1, 1), w = in(&c, k->dt, ws, -1, 1);
            out = nn_ir_conv2d_bwd_data(c.g, dy, w, &xs, &cv, ag_loc);
            terms = k->f / k->groups * k->kh * k->kw;
        } else {
            NnId x = in(&c, k->dt, xs, -1, 1), dy = in(&c, k->dt, ys, -1, 1);
            out = nn_ir_conv2d_bwd_filter(c.g, x, dy, &ws, &cv, ag_loc);
            terms = k->n * oh * ow;
        }
        char what[96];
        snprintf(what, sizeof what, "%s case %zu %s", nn_op_name(op), i,
                 nnrt_dtype_name(k->dt));
        tol = 1e-5 * fmax(1, sqrt((double)terms / 64));
        finish(&c, out, what);
        tol = 1e-5;
    }
    if (op != NN_OP_CONV2D_BWD_DATA)
        return;
    // Transposed convolution: the same op forward, with an output padding.
    Case c;
    start(&c);
    NnConv2d cv = {.kernel = {3, 3}, .stride = {2, 2}, .dilation = {1, 1}, .pad = {1, 1, 1, 1},
                   .groups = 1, .outpad = {1, 1}};
    NnId x = in(&c, NN_DT_F32, AG_SHAPE(2, 5, 4, 6), -1, 1);
    NnId w = in(&c, NN_DT_F32, AG_SHAPE(5, 3, 3, 3), -1, 1);
    finish(&c, nn_ir_conv_transpose2d(c.g, x, w, &cv, ag_loc), "conv_transpose2d");
}

typedef struct PoolCase {
    int64_t n, c, h, w;
    int kh, kw, sh, sw, pad[4];
    NnDType dt;
} PoolCase;

// Tiling windows, overlapping windows with padding, an uneven f64 one;
// 2x2 at stride 2 (loads and shuffles instead of gathers) over several
// chunks of a row, and over odd heights and widths in f64 (the last input
// row and column in no window).
static const PoolCase pool_cases[] = {
    {2, 3, 8, 8, 2, 2, 2, 2, {0, 0, 0, 0}, NN_DT_F32},
    {2, 3, 9, 7, 3, 3, 2, 2, {1, 1, 1, 1}, NN_DT_F32},
    {1, 2, 5, 6, 3, 2, 1, 2, {1, 0, 1, 0}, NN_DT_F64},
    {1, 2, 6, 70, 2, 2, 2, 2, {0, 0, 0, 0}, NN_DT_F32},
    {2, 3, 9, 37, 2, 2, 2, 2, {0, 0, 0, 0}, NN_DT_F64},
};

static void b_pool(NnOp op)
{
    for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++) {
        const PoolCase *k = &pool_cases[i];
        NnConv2d cv = {.kernel = {k->kh, k->kw}, .stride = {k->sh, k->sw},
                       .dilation = {1, 1}, .groups = 1};
        memcpy(cv.pad, k->pad, sizeof cv.pad);
        NnShape xs = AG_SHAPE(k->n, k->c, k->h, k->w);
        NnShape ys = AG_SHAPE(k->n, k->c, conv_out(k->h, k->pad[0], k->pad[2], 1, k->kh, k->sh),
                              conv_out(k->w, k->pad[1], k->pad[3], 1, k->kw, k->sw));
        Case c;
        start(&c);
        NnId out;
        if (op == NN_OP_MAX_POOL2D || op == NN_OP_AVG_POOL2D) {
            out = nn_ir_pool2d(c.g, op, in(&c, k->dt, xs, -1, 1), &cv, ag_loc);
        } else if (op == NN_OP_MAX_POOL2D_BWD) {
            NnId ins[2] = {in(&c, k->dt, xs, -1, 1), in(&c, k->dt, ys, -1, 1)};
            NnAttr a = {.conv = cv};
            out = nn_ir_add(c.g, op, ins, 2, &a, ag_loc);
        } else {
            NnId dy = in(&c, k->dt, ys, -1, 1);
            NnAttr a = {.conv = cv, .shape = xs};
            out = nn_ir_add(c.g, op, &dy, 1, &a, ag_loc);
        }
        char what[96];
        snprintf(what, sizeof what, "%s case %zu", nn_op_name(op), i);
        finish(&c, out, what);
    }
}

static void b_pad(NnOp op)
{
    for (int dt = NN_DT_F32; dt <= NN_DT_I32; dt++) {
        Case c;
        start(&c);
        NnId x = in(&c, (NnDType)dt, AG_SHAPE(3, 4, 5), -9, 9);
        int64_t lo[3] = {1, 0, 2}, hi[3] = {0, 2, 17};
        char what[64];
        snprintf(what, sizeof what, "pad %s", nnrt_dtype_name((NnDType)dt));
        finish(&c, nn_ir_pad(c.g, x, lo, hi, 3, ag_loc), what);
    }
}

// (axis, start, stop, step) over x [4, 7, 21].
static const int64_t slices[][4] = {{1, 1, 7, 2}, {2, 3, 21, 1}, {0, 2, 3, 1}, {2, 0, 20, 3}};

static void b_slice(NnOp op)
{
    for (size_t i = 0; i < sizeof slices / sizeof slices[0]; i++) {
        const int64_t *s = slices[i];
        Case c;
        start(&c);
        NnShape xs = AG_SHAPE(4, 7, 21);
        NnId out;
        if (op == NN_OP_SLICE) {
            out = nn_ir_slice(c.g, in(&c, NN_DT_F32, xs, -1, 1), (int)s[0], s[1], s[2], s[3],
                              ag_loc);
        } else {
            NnShape ds = xs;
            ds.dim[s[0]] = (s[2] - s[1] + s[3] - 1) / s[3];
            NnId dy = in(&c, NN_DT_F32, ds, -1, 1);
            NnAttr a = {.shape = xs, .axis = (int)s[0], .start = s[1], .stop = s[2], .step = s[3]};
            out = nn_ir_add(c.g, op, &dy, 1, &a, ag_loc);
        }
        char what[64];
        snprintf(what, sizeof what, "%s case %zu", nn_op_name(op), i);
        finish(&c, out, what);
    }
}

static void b_concat(NnOp op)
{
    for (int axis = 0; axis < 3; axis++) {
        Case c;
        start(&c);
        NnId xs[3];
        for (int k = 0; k < 3; k++) {
            int64_t d[3] = {2, 3, 19};
            d[axis] += k;
            xs[k] = in(&c, NN_DT_F32, ag_shape(3, d), -1, 1);
        }
        char what[64];
        snprintf(what, sizeof what, "concat axis %d", axis);
        finish(&c, nn_ir_concat(c.g, xs, 3, axis, ag_loc), what);
    }
}

// conv + bias (+ batch norm in evaluation) + relu through the pass pipeline:
// the epilogue rides on the convolution's tiles (flat: per-channel values) or
// goes element by element (a leaf that varies along W only).
static void conv_fused(bool flat)
{
    Case c;
    start(&c);
    NnConv2d cv = {.kernel = {3, 3}, .stride = {1, 1}, .dilation = {1, 1}, .pad = {1, 1, 1, 1},
                   .groups = 1};
    NnId x = in(&c, NN_DT_F32, AG_SHAPE(3, 5, 9, 11), -1, 1);
    NnId w = in(&c, NN_DT_F32, AG_SHAPE(10, 5, 3, 3), -1, 1);
    NnId b = in(&c, NN_DT_F32, flat ? AG_SHAPE(10, 1, 1) : AG_SHAPE(11), -1, 1);
    NnId h = nn_ir_conv2d(c.g, x, w, &cv, ag_loc);
    h = nn_ir_binary(c.g, NN_OP_ADD, h, b, ag_loc);
    if (flat) {
        // Batch norm in evaluation: per-channel statistics and affine, elementwise.
        NnId mean = in(&c, NN_DT_F32, AG_SHAPE(10, 1, 1), -1, 1);
        NnId var = in(&c, NN_DT_F32, AG_SHAPE(10, 1, 1), 0.5, 2);
        NnId gamma = in(&c, NN_DT_F32, AG_SHAPE(10, 1, 1), 0.5, 1.5);
        NnId eps = nn_ir_const(c.g, 1e-5, NN_DT_F32, ag_loc);
        NnId sd = nn_ir_unary(c.g, NN_OP_SQRT, nn_ir_binary(c.g, NN_OP_ADD, var, eps, ag_loc), ag_loc);
        h = nn_ir_binary(c.g, NN_OP_SUB, h, mean, ag_loc);
        h = nn_ir_binary(c.g, NN_OP_MUL, h, nn_ir_binary(c.g, NN_OP_DIV, gamma, sd, ag_loc), ag_loc);
    }
    h = nn_ir_binary(c.g, NN_OP_MAX, h, nn_ir_const(c.g, 0, NN_DT_F32, ag_loc), ag_loc);
    nn_graph_add_output(c.g, "y", h);
    c.g = nn_passes_run(c.g, NULL);
    // One kernel holds the convolution and its epilogue; with batch norm the
    // scaling is folded into the weights (ir/bnfold.c), so only the bias add
    // and the relu are left on each output element.
    int convs = 0, epi_ops = -1;
    for (NnId i = 0; i < c.g->count; i++) {
        const NnGraph *b = c.g->nodes[i].attr.body;
        if (c.g->nodes[i].op != NN_OP_FUSED || nn_graph_count_op(b, NN_OP_CONV2D) != 1)
            continue;
        convs++;
        epi_ops = nn_fuse_count_kernels(b) - 1; // sources (consts) do not count
    }
    cr_expect(convs == 1 && nn_graph_count_op(c.g, NN_OP_CONV2D) == 0,
              "expected the convolution fused with its epilogue");
    cr_expect_eq(epi_ops, 2, "epilogue ops per element: %d (bias add and relu)", epi_ops);
    char why[512] = "";
    cr_expect(ag_run(c.g, c.in, &c.vars, 1e-5, why, sizeof why), "fused conv (flat %d): %s", flat,
              why);
    for (int i = 0; i < c.nin; i++)
        nnrt_tensor_free(c.in[i]);
    nnrt_vars_fini(&c.vars);
    nn_graph_free(c.g);
}

// The gradients' epilogues: a relu mask and a residual on the data grad, an
// SGD step on the filter grad, for c input channels (3: partial sums per image
// chunk, then the epilogue in the summing kernel; 32: no chunks, the epilogue
// on the register tiles).
static void conv_fused_grads(int64_t ch)
{
    Case c;
    start(&c);
    NnConv2d cv = {.kernel = {3, 3}, .stride = {1, 1}, .dilation = {1, 1}, .pad = {1, 1, 1, 1},
                   .groups = 1};
    NnShape xs = AG_SHAPE(2, ch, 6, 7), ws = AG_SHAPE(5, ch, 3, 3);
    NnId x = in(&c, NN_DT_F32, xs, -1, 1), w = in(&c, NN_DT_F32, ws, -1, 1);
    NnId dy = in(&c, NN_DT_F32, AG_SHAPE(2, 5, 6, 7), -1, 1);
    NnId res = in(&c, NN_DT_F32, xs, -1, 1);
    NnId zero = nn_ir_const(c.g, 0, NN_DT_F32, ag_loc);
    NnId dx = nn_ir_conv2d_bwd_data(c.g, dy, w, &xs, &cv, ag_loc);
    dx = nn_ir_select(c.g, nn_ir_binary(c.g, NN_OP_GT, x, zero, ag_loc), dx, zero, ag_loc);
    nn_graph_add_output(c.g, "dx", nn_ir_binary(c.g, NN_OP_ADD, dx, res, ag_loc));
    NnId dw = nn_ir_conv2d_bwd_filter(c.g, x, dy, &ws, &cv, ag_loc);
    NnId lr = nn_ir_const(c.g, 0.1, NN_DT_F32, ag_loc);
    nn_graph_add_output(c.g, "w1",
                        nn_ir_binary(c.g, NN_OP_SUB, w, nn_ir_binary(c.g, NN_OP_MUL, dw, lr, ag_loc),
                                     ag_loc));
    c.g = nn_passes_run(c.g, NULL);
    cr_expect(nn_graph_count_op(c.g, NN_OP_FUSED) == 2 &&
                  nn_graph_count_op(c.g, NN_OP_CONV2D_BWD_DATA) == 0 &&
                  nn_graph_count_op(c.g, NN_OP_CONV2D_BWD_FILTER) == 0,
              "expected both gradients fused with their epilogues");
    char why[512] = "";
    cr_expect(ag_run(c.g, c.in, &c.vars, 1e-5 * sqrt(84.0 / 64), why, sizeof why),
              "fused conv grads (c %lld): %s", (long long)ch, why);
    for (int i = 0; i < c.nin; i++)
        nnrt_tensor_free(c.in[i]);
    nnrt_vars_fini(&c.vars);
    nn_graph_free(c.g);
}

// Pooling with an elementwise epilogue in one kernel (the epilogue runs over
// each finished row or plane in place): a max-pool gradient with its relu
// mask and a residual (flat: per-element leaves), an average-pool gradient
// scaled by a leaf that varies along W only (element by element), a forward
// max pool with a per-channel affine and relu, and an f64 average pool.
static void pool_fused(int which)
{
    Case c;
    start(&c);
    bool overlap = which == 1 || which == 3;
    NnDType dt = which == 3 ? NN_DT_F64 : NN_DT_F32;
    NnConv2d cv = {.kernel = {overlap ? 3 : 2, overlap ? 3 : 2}, .stride = {2, 2},
                   .dilation = {1, 1}, .groups = 1};
    if (overlap)
        cv.pad[0] = cv.pad[1] = cv.pad[2] = cv.pad[3] = 1;
    NnShape xs = AG_SHAPE(2, 3, overlap ? 9 : 10, overlap ? 7 : 10);
    NnShape ys = AG_SHAPE(2, 3, 5, overlap ? 4 : 5);
    NnId zero = nn_ir_const(c.g, 0, dt, ag_loc), out;
    NnOp host;
    if (which == 0) {
        host = NN_OP_MAX_POOL2D_BWD;
        NnId ins[2] = {in(&c, dt, xs, -1, 1), in(&c, dt, ys, -1, 1)};
        NnId res = in(&c, dt, xs, -1, 1);
        NnAttr a = {.conv = cv};
        NnId dx = nn_ir_add(c.g, host, ins, 2, &a, ag_loc);
        out = nn_ir_select(c.g, nn_ir_binary(c.g, NN_OP_GT, ins[0], zero, ag_loc), dx, zero, ag_loc);
        out = nn_ir_binary(c.g, NN_OP_ADD, out, res, ag_loc);
    } else if (which == 1) {
        host = NN_OP_AVG_POOL2D_BWD;
        NnId dy = in(&c, dt, ys, -1, 1), s = in(&c, dt, AG_SHAPE(7), -2, 2);
        NnAttr a = {.conv = cv, .shape = xs};
        out = nn_ir_binary(c.g, NN_OP_MUL, nn_ir_add(c.g, host, &dy, 1, &a, ag_loc), s, ag_loc);
    } else {
        host = which == 2 ? NN_OP_MAX_POOL2D : NN_OP_AVG_POOL2D;
        NnId x = in(&c, dt, xs, -1, 1);
        NnId g = in(&c, dt, AG_SHAPE(3, 1, 1), 0.5, 2), b = in(&c, dt, AG_SHAPE(3, 1, 1), -1, 1);
        out = nn_ir_pool2d(c.g, host, x, &cv, ag_loc);
        out = nn_ir_binary(c.g, NN_OP_ADD, nn_ir_binary(c.g, NN_OP_MUL, out, g, ag_loc), b, ag_loc);
        out = nn_ir_binary(c.g, NN_OP_MAX, out, zero, ag_loc);
    }
    cr_assert(out >= 0, "%s", c.g->err);
    nn_graph_add_output(c.g, "y", out);
    c.g = nn_passes_run(c.g, NULL);
    cr_expect(nn_graph_count_op(c.g, NN_OP_FUSED) == 1 && nn_graph_count_op(c.g, host) == 0,
              "expected %s fused with its epilogue", nn_op_name(host));
    char why[512] = "";
    cr_expect(ag_run(c.g, c.in, &c.vars, 1e-5, why, sizeof why), "fused %s: %s", nn_op_name(host),
              why);
    for (int i = 0; i < c.nin; i++)
        nnrt_tensor_free(c.in[i]);
    nnrt_vars_fini(&c.vars);
    nn_graph_free(c.g);
}

Test(llvm, pool_fused_epilogue)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    for (int which = 0; which < 4; which++)
        pool_fused(which);
}

// A pool computed inside its convolution's kernel (nn_fuse_pool_host): bands
// of whole windows' rows pooled once stored. 0: f32 conv + bias + relu, max
// pool 2 over an odd height (the last conv row is in no window; the last band
// is short), the conv result an output too (as in a training step); 1: f64
// bare conv, 28 wide (bands of 8 rows, 3.5 bands), average pool 2; 2: f32
// strided grouped conv, max pool 3; 3: f32 with NaN inputs (a NaN wins).
static void conv_pool(int which)
{
    Case c;
    start(&c);
    NnDType dt = which == 1 ? NN_DT_F64 : NN_DT_F32;
    int k = which == 1 ? 5 : 3, p = k / 2, pk = which == 2 ? 3 : 2;
    NnConv2d cv = {.kernel = {k, k}, .stride = {which == 2 ? 2 : 1, which == 2 ? 2 : 1},
                   .dilation = {1, 1}, .pad = {p, p, p, p}, .groups = which == 2 ? 2 : 1};
    NnConv2d pv = {.kernel = {pk, pk}, .stride = {pk, pk}, .dilation = {1, 1}, .groups = 1};
    NnShape xs = which == 1   ? AG_SHAPE(2, 3, 28, 28)
                 : which == 2 ? AG_SHAPE(2, 4, 20, 19)
                              : AG_SHAPE(3, 4, 13, 11);
    int64_t f = which == 1 ? 16 : 6;
    NnId x = in(&c, dt, xs, -1, 1);
    NnId w = in(&c, dt, AG_SHAPE(f, xs.dim[1] / cv.groups, k, k), -1, 1);
    if (which == 3) // NaNs in the input: the windows that see one give NaN
        for (int i = 0; i < 7; i++)
            ((float *)c.in[0]->data)[37 * i * i + 5] = NAN;
    NnId h = nn_ir_conv2d(c.g, x, w, &cv, ag_loc);
    if (which != 1) {
        NnId b = in(&c, dt, AG_SHAPE(f, 1, 1), -1, 1);
        h = nn_ir_binary(c.g, NN_OP_ADD, h, b, ag_loc);
        h = nn_ir_binary(c.g, NN_OP_MAX, h, nn_ir_const(c.g, 0, dt, ag_loc), ag_loc);
    }
    NnId y = nn_ir_pool2d(c.g, which == 1 ? NN_OP_AVG_POOL2D : NN_OP_MAX_POOL2D, h, &pv, ag_loc);
    nn_graph_add_output(c.g, "y", y);
    if (which == 0)
        nn_graph_add_output(c.g, "h", h);
    c.g = nn_passes_run(c.g, NULL);
    int pools = 0, inside = 0;
    for (NnId i = 0; i < c.g->count; i++) {
        NnOp op = c.g->nodes[i].op;
        pools += op == NN_OP_MAX_POOL2D || op == NN_OP_AVG_POOL2D;
        inside += nn_fuse_pool_host(c.g, i) >= 0;
    }
    cr_expect(pools == 1 && inside == 1, "case %d: the pool rides in the conv kernel", which);
    char why[512] = "";
    cr_expect(ag_run(c.g, c.in, &c.vars, 1e-5, why, sizeof why), "conv + pool %d: %s", which,
              why);
    for (int i = 0; i < c.nin; i++)
        nnrt_tensor_free(c.in[i]);
    nnrt_vars_fini(&c.vars);
    nn_graph_free(c.g);
}

Test(llvm, conv_pool_in_one_kernel)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    for (int which = 0; which < 4; which++)
        conv_pool(which);
}

// One recurrent step h' = tanh(h @ w + x), y = h' * x in body b; nested adds
// an inner loop of 3 trips (h <- sin(h) * x) over h' inside it.
static NnGraph *step_body(NnGraph *g, NnShape hs, NnShape ws, bool nested, bool saved)
{
    NnGraph *b = nn_graph_new_child(g);
    NnId h = ag_input(b, "h", NN_DT_F32, hs), x = ag_input(b, "x", NN_DT_F32, hs);
    NnId w = ag_input(b, "w", NN_DT_F32, ws);
    NnId hn = nn_ir_binary(b, NN_OP_ADD, nn_ir_matmul(b, h, w, false, false, ag_loc), x, ag_loc);
    hn = nn_ir_unary(b, NN_OP_TANH, hn, ag_loc);
    if (nested) {
        NnGraph *ib = nn_graph_new_child(b);
        NnId ih = ag_input(ib, "h", NN_DT_F32, hs), ix = ag_input(ib, "x", NN_DT_F32, hs);
        nn_graph_add_output(ib, "h", nn_ir_binary(ib, NN_OP_MUL, nn_ir_unary(ib, NN_OP_SIN, ih,
                                                                            ag_loc), ix, ag_loc));
        NnId in[2] = {hn, x};
        NnId il = nn_ir_loop(b, in, 2, 1, 0, 3, false, ib, ag_loc);
        hn = nn_ir_loop_out(b, il, 0, ag_loc);
    }
    nn_graph_add_output(b, "h", hn);
    nn_graph_add_output(b, "y", nn_ir_binary(b, NN_OP_MUL, hn, x, ag_loc));
    if (saved)
        nn_graph_add_output(b, "saved", h);
    return b;
}

// Loops forward and reverse, nested, and a loop's gradient (the reverse loop
// autodiff builds), over a symbolic batch bound to 5; both backends run the
// pipeline's result (loop bodies optimized and fused).
static void b_loop(NnOp op)
{
    for (int v = 0; v < 3; v++) {
        Case c;
        start(&c);
        int64_t n = nn_sym_dim(c.g, "N");
        NnShape hs = {2, {n, 6}}, ws = AG_SHAPE(6, 6);
        NnId h0 = ag_input(c.g, "h0", NN_DT_F32, hs), w = in(&c, NN_DT_F32, ws, -0.5, 0.5);
        NnId xs = ag_input(c.g, "xs", NN_DT_F32, (NnShape){3, {7, n, 6}});
        c.in[1] = c.in[0]; // inputs go by id: h0, w, xs
        c.in[0] = ag_tensor(NN_DT_F32, AG_SHAPE(5, 6), 100, -1, 1);
        c.in[2] = ag_tensor(NN_DT_F32, AG_SHAPE(7, 5, 6), 102, -1, 1);
        c.nin = 3;
        NnId ins[3] = {h0, xs, w};
        NnId lp = nn_ir_loop(c.g, ins, 3, 1, 1, 7, v == 1, step_body(c.g, hs, ws, v == 2, v == 0),
                             ag_loc);
        cr_assert(lp >= 0, "loop variant %d: %s", v, c.g->err);
        NnId y = nn_ir_binary(c.g, NN_OP_ADD, nn_ir_loop_out(c.g, lp, 1, ag_loc),
                              nn_ir_loop_out(c.g, lp, 0, ag_loc), ag_loc);
        if (v == 0) {
            NnId loss = nn_ir_reduce(c.g, NN_OP_REDUCE_SUM, y, 7, false, ag_loc), g[2];
            NnId wrt[2] = {w, h0};
            cr_assert(nn_ad_grad(c.g, loss, wrt, 2, g));
            nn_graph_add_output(c.g, "dw", g[0]);
            nn_graph_add_output(c.g, "dh0", g[1]);
        }
        nn_graph_add_output(c.g, "y", y);
        c.g = nn_passes_run(c.g, NULL);
        char why[512] = "";
        cr_expect(ag_run(c.g, c.in, &c.vars, tol, why, sizeof why), "loop variant %d: %s", v, why);
        for (int k = 0; k < c.nin; k++)
            nnrt_tensor_free(c.in[k]);
        nnrt_vars_fini(&c.vars);
        nn_graph_free(c.g);
    }
}

typedef void (*Builder)(NnOp);
static const Builder builders[NN_OP_COUNT] = {
    [NN_OP_INPUT] = b_source,        [NN_OP_PARAM] = b_source,      [NN_OP_STATE] = b_source,
    [NN_OP_CONST] = b_const,         [NN_OP_RAND_UNIFORM] = b_rand, [NN_OP_RAND_NORMAL] = b_rand,
    [NN_OP_NEG] = b_unary,           [NN_OP_EXP] = b_unary,         [NN_OP_LOG] = b_unary,
    [NN_OP_SQRT] = b_unary,          [NN_OP_TANH] = b_unary,        [NN_OP_SIGMOID] = b_unary,
    [NN_OP_ABS] = b_unary,           [NN_OP_SIN] = b_unary,         [NN_OP_COS] = b_unary,
    [NN_OP_CAST] = b_cast,           [NN_OP_ADD] = b_binary,        [NN_OP_SUB] = b_binary,
    [NN_OP_MUL] = b_binary,          [NN_OP_DIV] = b_binary,        [NN_OP_POW] = b_binary,
    [NN_OP_MAX] = b_binary,          [NN_OP_MIN] = b_binary,        [NN_OP_GT] = b_binary,
    [NN_OP_GE] = b_binary,           [NN_OP_LT] = b_binary,         [NN_OP_LE] = b_binary,
    [NN_OP_EQ] = b_binary,           [NN_OP_NE] = b_binary,         [NN_OP_SELECT] = b_select,
    [NN_OP_DROPOUT] = b_dropout,     [NN_OP_RESHAPE] = b_reshape,   [NN_OP_TRANSPOSE] = b_transpose,
    [NN_OP_BROADCAST] = b_broadcast, [NN_OP_SUMTO] = b_sumto,       [NN_OP_REDUCE_SUM] = b_reduce,
    [NN_OP_REDUCE_MEAN] = b_reduce,  [NN_OP_REDUCE_MAX] = b_reduce, [NN_OP_LOGSUMEXP] = b_reduce,
    [NN_OP_MATMUL] = b_matmul,       [NN_OP_TAKE] = b_take,         [NN_OP_ONEHOT] = b_onehot,
    [NN_OP_ARGMAX] = b_argmax,       [NN_OP_FUSED] = b_fused,
    [NN_OP_GATHER] = b_gather,       [NN_OP_SCATTER_ADD] = b_gather,
    [NN_OP_CONV2D] = b_conv,         [NN_OP_CONV2D_BWD_DATA] = b_conv,
    [NN_OP_CONV2D_BWD_FILTER] = b_conv,
    [NN_OP_MAX_POOL2D] = b_pool,     [NN_OP_MAX_POOL2D_BWD] = b_pool,
    [NN_OP_AVG_POOL2D] = b_pool,     [NN_OP_AVG_POOL2D_BWD] = b_pool,
    [NN_OP_PAD] = b_pad,             [NN_OP_SLICE] = b_slice,       [NN_OP_SLICE_BWD] = b_slice,
    [NN_OP_CONCAT] = b_concat,       [NN_OP_LOOP] = b_loop,         [NN_OP_LOOP_OUT] = b_loop,
    [NN_OP_EXTERN] = b_extern,
    [NN_OP_GRAD_START] = b_grad,     [NN_OP_GRAD_WAIT] = b_grad,
};

static void run_ops(int lo, int hi)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    for (int op = lo; op < hi && op < NN_OP_COUNT; op++) {
        cr_expect(builders[op] != NULL, "no agreement case for op %s", nn_op_name((NnOp)op));
        if (builders[op])
            builders[op]((NnOp)op);
    }
}

// Split in chunks so Criterion runs them in parallel.
Test(llvm, ops_sources) { run_ops(0, NN_OP_NEG); }
Test(llvm, ops_unary) { run_ops(NN_OP_NEG, NN_OP_ADD); }
Test(llvm, ops_binary) { run_ops(NN_OP_ADD, NN_OP_RESHAPE); }
Test(llvm, ops_layout_reduce) { run_ops(NN_OP_RESHAPE, NN_OP_MATMUL); }
Test(llvm, ops_matmul_index) { run_ops(NN_OP_MATMUL, NN_OP_ARGMAX + 1); }
Test(llvm, ops_conv_layout) { run_ops(NN_OP_ARGMAX + 1, NN_OP_FUSED); }
Test(llvm, ops_fused) { run_ops(NN_OP_FUSED, NN_OP_COUNT); }

Test(llvm, conv_fused_epilogue)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    conv_fused(true);
    conv_fused(false);
    conv_fused_grads(3);
    conv_fused_grads(32);
}

Test(llvm, matmul_short_fused)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    for (int m = 1; m <= 3; m += 2)
        for (int t = 0; t < 4; t++)
            fused_short(m, t & 1, t & 2);
}

// Rows shorter than a vector, or with a tail past whole vectors: the JIT
// maps and reduces them through one masked vector per row (a classifier's
// [N, 10] logits: the loss's logsumexp and the softmax gradient, whose
// broadcast [N, 1] operands read one value per row).
Test(llvm, short_rows)
{
    int64_t cols[] = {1, 2, 10, 15, 17, 33};
    for (int k = 0; k < (int)(sizeof cols / sizeof cols[0]); k++)
        for (int dt = NN_DT_F32; dt <= NN_DT_F64; dt++) {
            Case c;
            start(&c);
            NnId x = in(&c, (NnDType)dt, AG_SHAPE(37, cols[k]), -4, 4);
            NnId g = in(&c, (NnDType)dt, AG_SHAPE(37, 1), -1, 1);
            NnId l = nn_ir_reduce(c.g, NN_OP_LOGSUMEXP, x, 2, true, ag_loc);
            NnId p = nn_ir_unary(c.g, NN_OP_EXP, nn_ir_binary(c.g, NN_OP_SUB, x, l, ag_loc), ag_loc);
            NnId y = nn_ir_binary(c.g, NN_OP_MUL, p, g, ag_loc);
            nn_graph_add_output(c.g, "lse", l);
            nn_graph_add_output(c.g, "y", y);
            c.g = nn_passes_run(c.g, NULL);
            char why[512] = "";
            cr_expect(ag_run(c.g, c.in, &c.vars, 1e-5, why, sizeof why), "rows of %lld %s: %s",
                      (long long)cols[k], nnrt_dtype_name((NnDType)dt), why);
            for (int i = 0; i < c.nin; i++)
                nnrt_tensor_free(c.in[i]);
            nnrt_vars_fini(&c.vars);
            nn_graph_free(c.g);
        }
}
