// Convolution, pooling and axis-layout ops against naive references written
// from the definitions (independent of runtime/kernels/conv.c: no valid-range
// arithmetic, one multiply-add per term), in f32 and f64, split over several
// threads; shape-rule diagnostics; CSE keeps convolutions that differ in any
// one attribute apart; the printer shows every attribute an op declares; the
// verifier rejects an attribute the op does not declare.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "attr.h"
#include "backend.h"
#include "ir_helpers.h"
#include "kernels.h"
#include "pass.h"

static const NnLoc L = {0};

static double val(int which, int64_t i) { return sin(1.3 * which + 0.37 * (double)i + 0.1); }

static void fill(NnDType dt, void *p, int64_t n, int which)
{
    for (int64_t i = 0; i < n; i++)
        if (dt == NN_DT_F64)
            ((double *)p)[i] = val(which, i);
        else
            ((float *)p)[i] = (float)val(which, i);
}

static double get(NnDType dt, const void *p, int64_t i)
{
    return dt == NN_DT_F64 ? ((const double *)p)[i] : ((const float *)p)[i];
}

typedef struct Geo {
    int64_t n, c, h, w, f;
    int kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, groups;
} Geo;

static int64_t olen(int64_t in, int k, int s, int d, int p0, int p1)
{
    return (in + p0 + p1 - (int64_t)d * (k - 1) - 1) / s + 1;
}

// The definition: y[n,f,i,j] = sum over c in f's group, a, b of
// x[n, c, i*sh - pt + a*dh, j*sw - pl + b*dw] * w[f, c - group start, a, b],
// terms outside the image being zero.
static void ref_conv(const Geo *g, const double *x, const double *w, double *y)
{
    int64_t oh = olen(g->h, g->kh, g->sh, g->dh, g->pt, g->pb);
    int64_t ow = olen(g->w, g->kw, g->sw, g->dw, g->pl, g->pr);
    int64_t cg = g->c / g->groups, fg = g->f / g->groups;
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t f = 0; f < g->f; f++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double s = 0;
                    for (int64_t cc = 0; cc < cg; cc++)
                        for (int a = 0; a < g->kh; a++)
                            for (int b = 0; b < g->kw; b++) {
                                int64_t r = i * g->sh - g->pt + a * g->dh;
                                int64_t q = j * g->sw - g->pl + b * g->dw;
                                if (r < 0 || r >= g->h || q < 0 || q >= g->w)
                                    continue;
                                int64_t c = f / fg * cg + cc;
                                s += x[((n * g->c + c) * g->h + r) * g->w + q] *
                                     w[((f * cg + cc) * g->kh + a) * g->kw + b];
                            }
                    y[((n * g->f + f) * oh + i) * ow + j] = s;
                }
}

static NnrtConv2d args(const Geo *g, NnrtConvOp op, NnDType dt)
{
    return (NnrtConv2d){.op = op, .dt = dt, .n = g->n, .c = g->c, .h = g->h, .w = g->w,
                        .f = g->f, .oh = olen(g->h, g->kh, g->sh, g->dh, g->pt, g->pb),
                        .ow = olen(g->w, g->kw, g->sw, g->dw, g->pl, g->pr), .kh = g->kh,
                        .kw = g->kw, .sh = g->sh, .sw = g->sw, .dh = g->dh, .dw = g->dw,
                        .pt = g->pt, .pl = g->pl, .groups = g->groups};
}

// Runs the kernel as nth threads would, slice by slice.
static void run_split(const NnrtConv2d *a, int nth)
{
    for (int t = 0; t < nth; t++)
        nnrt_conv2d(a, t, nth);
}

// mode 0, 1: the direct kernel as 1 or 4 threads would run it; 2, 3: the
// im2col path (where the op has one) serially and on a 3-thread pool.
static void run_mode(NnrtConv2d *a, int mode)
{
    static NnrtPool pool;
    static bool started;
    if (mode < 2) {
        run_split(a, mode ? 4 : 1);
        return;
    }
    if (!started) {
        cr_assert_eq(nnrt_pool_init(&pool, 3), NN_OK);
        started = true;
    }
    size_t n = nnrt_conv2d_scratch_size(a);
    a->scratch = n ? nnrt_alloc(n) : NULL;
    nnrt_conv2d_par(mode == 3 ? &pool : NULL, a);
    nnrt_free(a->scratch);
    a->scratch = NULL;
}

static const Geo geos[] = {
    {2, 3, 6, 7, 4, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1},
    {1, 2, 7, 7, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 8, 6, 2, 2, 3, 1, 2, 2, 1, 0, 2, 1, 0, 1},
    {1, 4, 5, 6, 6, 3, 2, 2, 1, 1, 2, 1, 0, 1, 1, 2},
    {2, 3, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},
    {1, 2, 9, 4, 2, 1, 1, 3, 2, 1, 1, 0, 0, 0, 0, 1},
    {1, 1, 3, 3, 1, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, 1},
    {2, 0, 4, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}, // no input channels: zeros
};

// The forward kernel and both gradients against the reference: the data and
// filter gradients are checked through <dy, conv(x, w)> = <x, bwd_data(dy)>
// = <w, bwd_filter(x, dy)> with the reference conv, element by element (unit
// dy at each output picks one row of the Jacobian).
static void check_geo(const Geo *g, NnDType dt, int mode)
{
    NnrtConv2d a = args(g, NNRT_CONV, dt);
    int64_t nx = g->n * g->c * g->h * g->w, nw = g->f * (g->c / g->groups) * g->kh * g->kw;
    int64_t ny = g->n * g->f * a.oh * a.ow;
    double *x = malloc(nx * 8), *w = malloc(nw * 8), *y = malloc(ny * 8);
    char *xb = malloc(nx * 8), *wb = malloc(nw * 8), *yb = malloc(ny * 8), *db = malloc(ny * 8);
    char *gx = malloc(nx * 8), *gw = malloc(nw * 8);
    fill(dt, xb, nx, 1);
    fill(dt, wb, nw, 2);
    fill(dt, db, ny, 3);
    for (int64_t i = 0; i < nx; i++)
        x[i] = get(dt, xb, i);
    for (int64_t i = 0; i < nw; i++)
        w[i] = get(dt, wb, i);
    ref_conv(g, x, w, y);
    a.x = xb;
    a.wt = wb;
    a.y = yb;
    run_mode(&a, mode);
    double tol = dt == NN_DT_F64 ? 1e-12 : 1e-4;
    for (int64_t i = 0; i < ny; i++)
        cr_assert(fabs(get(dt, yb, i) - y[i]) <= tol * (1 + fabs(y[i])),
                  "conv geo kh=%d sh=%d groups=%d mode %d: y[%lld] = %g, reference %g", g->kh,
                  g->sh, g->groups, mode, (long long)i, get(dt, yb, i), y[i]);

    // <dy, conv(x, w)> is bilinear: d/dx and d/dw by finite sums of the
    // reference over unit vectors would be slow, so compare inner products
    // with random x, w (exact for linear maps up to rounding).
    NnrtConv2d b = args(g, NNRT_CONV_BWD_DATA, dt);
    b.dy = db;
    b.wt = wb;
    b.y = gx;
    run_mode(&b, mode);
    NnrtConv2d f = args(g, NNRT_CONV_BWD_FILTER, dt);
    f.x = xb;
    f.dy = db;
    f.y = gw;
    run_mode(&f, mode);
    double lhs = 0, rx = 0, rw = 0;
    for (int64_t i = 0; i < ny; i++)
        lhs += get(dt, db, i) * y[i];
    for (int64_t i = 0; i < nx; i++)
        rx += get(dt, gx, i) * x[i];
    for (int64_t i = 0; i < nw; i++)
        rw += get(dt, gw, i) * w[i];
    double s = 1 + fabs(lhs);
    cr_assert(fabs(lhs - rx) <= tol * 10 * s, "mode %d: data gradient: %g vs %g", mode, lhs, rx);
    cr_assert(fabs(lhs - rw) <= tol * 10 * s, "mode %d: filter gradient: %g vs %g", mode, lhs,
              rw);
    free(x), free(w), free(y), free(xb), free(wb), free(yb), free(db), free(gx), free(gw);
}

Test(conv, forward_and_adjoints_match_reference)
{
    for (size_t k = 0; k < sizeof geos / sizeof geos[0]; k++)
        for (int mode = 0; mode < 4; mode++) {
            check_geo(&geos[k], NN_DT_F64, mode);
            check_geo(&geos[k], NN_DT_F32, mode);
        }
}

// The adjoint identity checks one random direction; this checks every
// element of the data gradient for one geometry with stride, dilation and
// groups, against the transposed definition (a scatter).
Test(conv, data_gradient_elementwise)
{
    Geo g = {1, 4, 7, 6, 4, 3, 2, 2, 1, 1, 2, 1, 0, 2, 1, 2};
    NnrtConv2d a = args(&g, NNRT_CONV_BWD_DATA, NN_DT_F64);
    int64_t nx = g.n * g.c * g.h * g.w, nw = g.f * (g.c / g.groups) * g.kh * g.kw;
    int64_t ny = g.n * g.f * a.oh * a.ow, cg = g.c / g.groups, fg = g.f / g.groups;
    double *w = malloc(nw * 8), *dy = malloc(ny * 8), *dx = malloc(nx * 8),
           *ref = calloc(nx, 8);
    fill(NN_DT_F64, w, nw, 4);
    fill(NN_DT_F64, dy, ny, 5);
    for (int64_t f = 0; f < g.f; f++)
        for (int64_t i = 0; i < a.oh; i++)
            for (int64_t j = 0; j < a.ow; j++)
                for (int64_t cc = 0; cc < cg; cc++)
                    for (int p = 0; p < g.kh; p++)
                        for (int q = 0; q < g.kw; q++) {
                            int64_t r = i * g.sh - g.pt + p * g.dh, s = j * g.sw - g.pl + q * g.dw;
                            if (r >= 0 && r < g.h && s >= 0 && s < g.w)
                                ref[((f / fg * cg + cc) * g.h + r) * g.w + s] +=
                                    dy[(f * a.oh + i) * a.ow + j] *
                                    w[((f * cg + cc) * g.kh + p) * g.kw + q];
                        }
    a.dy = dy;
    a.wt = w;
    a.y = dx;
    for (int mode = 1; mode < 4; mode += 2) {
        run_mode(&a, mode);
        for (int64_t i = 0; i < nx; i++)
            cr_assert(fabs(dx[i] - ref[i]) < 1e-12, "mode %d: dx[%lld] = %g, reference %g", mode,
                      (long long)i, dx[i], ref[i]);
    }
    free(w), free(dy), free(dx), free(ref);
}

// Max and average pooling and their gradients on a hand-checked input.
Test(conv, pooling_by_hand)
{
    // 1x1x4x4, 2x2 windows, stride 2; ties in the top-left window.
    double x[16] = {1, 3, 0, 0, 3, 2, 5, 4, 9, 8, 1, 1, 7, 6, 1, 2};
    double y[4], dx[16], dy[4] = {10, 20, 30, 40};
    Geo g = {1, 1, 4, 4, 1, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 1};
    NnrtConv2d a = args(&g, NNRT_MAXPOOL, NN_DT_F64);
    a.x = x;
    a.y = y;
    run_split(&a, 2);
    cr_assert(y[0] == 3 && y[1] == 5 && y[2] == 9 && y[3] == 2);
    a.op = NNRT_MAXPOOL_BWD;
    a.dy = dy;
    a.y = dx;
    run_split(&a, 2);
    // The first maximum in row-major window order gets the gradient.
    double want[16] = {0, 10, 0, 0, 0, 0, 20, 0, 30, 0, 0, 0, 0, 0, 0, 40};
    for (int i = 0; i < 16; i++)
        cr_assert_eq(dx[i], want[i], "max pool dx[%d] = %g, want %g", i, dx[i], want[i]);
    a.op = NNRT_AVGPOOL;
    a.y = y;
    run_split(&a, 1);
    cr_assert(y[0] == 9.0 / 4 && y[1] == 9.0 / 4 && y[2] == 30.0 / 4 && y[3] == 5.0 / 4);

    // 3x3 windows, stride 1, padding 1: overlapping windows sum their
    // gradients; average pooling counts padding in the divisor.
    Geo h = {1, 1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    double y2[16], d2[16], dx2[16];
    for (int i = 0; i < 16; i++)
        d2[i] = 1;
    NnrtConv2d b = args(&h, NNRT_AVGPOOL, NN_DT_F64);
    b.x = x;
    b.y = y2;
    run_split(&b, 3);
    cr_assert(fabs(y2[0] - (1 + 3 + 3 + 2) / 9.0) < 1e-15, "corner %g", y2[0]);
    b.op = NNRT_AVGPOOL_BWD;
    b.dy = d2;
    b.x = NULL;
    b.y = dx2;
    run_split(&b, 3);
    cr_assert(fabs(dx2[0] - 4 / 9.0) < 1e-15 && fabs(dx2[5] - 1.0) < 1e-15, "%g %g", dx2[0],
              dx2[5]);
    b.op = NNRT_MAXPOOL_BWD;
    b.x = x;
    run_split(&b, 3);
    // x[8] = 9 is the maximum of the six windows that contain it.
    cr_assert_eq(dx2[8], 6, "dx[8] = %g", dx2[8]);
}

// ---- through the interpreter: transposed convolution, pad, slice, concat ----

static NnTensor *run1(NnGraph *g, NnId y, NnTensor **in, int nin)
{
    nn_graph_add_output(g, "y", y);
    cr_assert(nn_ir_verify(g), "%s", g->err);
    NnExecOptions opt = {.threads = 3};
    NnExec *x = nn_backend_interp.prepare(g, &opt);
    cr_assert(x);
    NnVars v;
    nnrt_vars_init(&v);
    NnTensor *out[1];
    cr_assert_eq(nn_backend_interp.run(x, &v, in, out), NN_OK, "%s", nnrt_errmsg());
    NnTensor *r = nnrt_tensor_clone(out[0]);
    nn_backend_interp.free(x);
    nnrt_vars_fini(&v);
    return r;
}

static NnTensor *ramp(NnDType dt, int rank, const int64_t *shape, int which)
{
    NnTensor *t = nnrt_tensor_new(dt, rank, shape);
    for (int64_t i = 0; i < t->numel; i++)
        nnrt_tensor_set(t, i, dt == NN_DT_I32 ? (double)i : val(which, i));
    return t;
}

// PyTorch's ConvTranspose2d by its definition: every input element scatters
// x[n, c, i, j] * w[c, f, a, b] to y[n, g*F/groups + f, i*s - p + a*d, ...].
Test(conv, transposed_matches_definition)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F64, "N,4,3,4");
    NnId w = src(g, NN_OP_INPUT, "w", NN_DT_F64, "4,3,3,2");
    NnConv2d c = {.stride = {2, 3}, .pad = {1, 0, 1, 0}, .dilation = {1, 2}, .groups = 2,
                  .outpad = {1, 2}};
    NnId y = nn_ir_conv_transpose2d(g, x, w, &c, L);
    cr_assert(y >= 0, "%s", g->err);
    // H = (3-1)*2 - 2 + 1*(3-1) + 1 + 1 = 6, W = (4-1)*3 - 0 + 2*(2-1) + 2 + 1 = 14.
    cr_assert_str_eq(type_of(g, y), "f64[N, 6, 6, 14]");
    NnTensor *tx = ramp(NN_DT_F64, 4, (int64_t[]){2, 4, 3, 4}, 1);
    NnTensor *tw = ramp(NN_DT_F64, 4, (int64_t[]){4, 3, 3, 2}, 2);
    NnTensor *in[2] = {tx, tw};
    NnTensor *r = run1(g, y, in, 2);
    double ref[2 * 6 * 6 * 14] = {0};
    const double *xd = tx->data, *wd = tw->data;
    for (int n = 0; n < 2; n++)
        for (int ci = 0; ci < 4; ci++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 4; j++)
                    for (int f = 0; f < 3; f++)
                        for (int a = 0; a < 3; a++)
                            for (int b = 0; b < 2; b++) {
                                int oy = i * 2 - 1 + a, ox = j * 3 + b * 2, fo = ci / 2 * 3 + f;
                                if (oy < 0 || oy >= 6 || ox < 0 || ox >= 14)
                                    continue;
                                ref[((n * 6 + fo) * 6 + oy) * 14 + ox] +=
                                    xd[((n * 4 + ci) * 3 + i) * 4 + j] *
                                    wd[((ci * 3 + f) * 3 + a) * 2 + b];
                            }
    for (int64_t i = 0; i < r->numel; i++)
        cr_assert(fabs(nnrt_tensor_get(r, i) - ref[i]) < 1e-12, "y[%lld] = %g, want %g",
                  (long long)i, nnrt_tensor_get(r, i), ref[i]);
    nnrt_tensor_free(r), nnrt_tensor_free(tx), nnrt_tensor_free(tw);
    nn_graph_free(g);
}

Test(conv, pad_slice_concat_values)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_I32, "2,3");
    int64_t lo[2] = {1, 0}, hi[2] = {0, 2};
    NnId p = nn_ir_pad(g, x, lo, hi, -1, L);
    cr_assert_str_eq(type_of(g, p), "i32[3, 5]");
    NnId s = nn_ir_slice(g, p, 1, 1, 5, 2, L); // columns 1 and 3
    NnId xs[3] = {s, x, s};
    NnId c = nn_ir_concat(g, xs, 3, 1, L); // [3, 2] and [2, 3]: rows differ
    cr_assert(c < 0, "concat of [3, 2] and [2, 3] along axis 1 must fail");
    cr_assert(strstr(g->err, "does not match"), "%s", g->err);
    NnId ys[2] = {p, nn_ir_slice(g, p, 0, 0, 3, 1, L)};
    c = nn_ir_concat(g, ys, 2, 0, L);
    NnId t = nn_ir_concat(g, (NnId[]){c, s}, 2, 1, L);
    cr_assert(t < 0);
    NnId yy[2] = {s, nn_ir_slice(g, c, 0, 1, 4, 1, L)};
    NnId out = nn_ir_concat(g, yy, 2, 1, L);
    cr_assert(out >= 0, "%s", g->err);
    cr_assert_str_eq(type_of(g, out), "i32[3, 7]");
    NnTensor *tx = ramp(NN_DT_I32, 2, (int64_t[]){2, 3}, 0);
    NnTensor *r = run1(g, out, &tx, 1);
    // p = [[-1 -1 -1 -1 -1], [0 1 2 -1 -1], [3 4 5 -1 -1]]; s = p[:, 1:5:2];
    // c = p ++ p along rows; c[1:4] = p[1], p[2], p[0].
    int want[21] = {-1, -1, 0, 1, 2, -1, -1, 1, -1, 3, 4, 5, -1, -1,
                    4,  -1, -1, -1, -1, -1, -1};
    for (int i = 0; i < 21; i++)
        cr_assert_eq(((int32_t *)r->data)[i], want[i], "out[%d] = %d, want %d", i,
                     ((int32_t *)r->data)[i], want[i]);
    nnrt_tensor_free(r), nnrt_tensor_free(tx);
    nn_graph_free(g);
}

// ---- shape rules ----

static void expect_err(NnGraph *g, NnId id, const char *msg)
{
    cr_assert(id < 0, "expected an error containing '%s'", msg);
    cr_assert(strstr(g->err, msg), "message '%s' lacks '%s'", g->err, msg);
}

Test(conv, shape_rules)
{
    NnGraph *g = nn_graph_new();
    NnConv2d c = {.stride = {1, 1}};
    NnId flat = src(g, NN_OP_INPUT, "flat", NN_DT_F32, "N,784");
    NnId img = src(g, NN_OP_INPUT, "img", NN_DT_F32, "N,3,8,8");
    NnId w = par(g, "w", NN_DT_F32, "16,3,3,3"), w4 = par(g, "w4", NN_DT_F32, "16,4,3,3");
    NnId big = par(g, "big", NN_DT_F32, "4,3,9,9");
    expect_err(g, nn_ir_conv2d(g, flat, w, &c, L),
               "conv2d expects f32[N, C, H, W], got f32[N, 784]");
    expect_err(g, nn_ir_conv2d(g, img, w4, &c, L), "3 input channels do not match filters "
                                                   "f32[16, 4, 3, 3]");
    expect_err(g, nn_ir_conv2d(g, img, big, &c, L),
               "kernel 9x9 (dilation [1, 1]) is larger than the padded input 8x8");
    c.pad[0] = c.pad[1] = c.pad[2] = c.pad[3] = 1;
    NnId ok = nn_ir_conv2d(g, img, big, &c, L);
    cr_assert(ok >= 0, "%s", g->err);
    cr_assert_str_eq(type_of(g, ok), "f32[N, 4, 2, 2]");
    c.groups = 2;
    expect_err(g, nn_ir_conv2d(g, img, w, &c, L), "groups = 2 must divide");
    c.groups = 1;
    c.stride[0] = 0;
    expect_err(g, nn_ir_conv2d(g, img, w, &c, L), "stride, dilation and kernel must be >= 1");
    c.stride[0] = 1;
    c.pad[0] = -1;
    expect_err(g, nn_ir_conv2d(g, img, w, &c, L), "padding [-1, 1, 1, 1] must be >= 0");

    NnConv2d p = {.kernel = {2, 2}, .stride = {2, 2}, .pad = {2, 0, 0, 0}};
    expect_err(g, nn_ir_pool2d(g, NN_OP_MAX_POOL2D, img, &p, L), "at most half the window");
    p.pad[0] = 0;
    p.kernel[0] = 9;
    expect_err(g, nn_ir_pool2d(g, NN_OP_AVG_POOL2D, img, &p, L), "larger than the padded");
    p.kernel[0] = 3;
    NnId mp = nn_ir_pool2d(g, NN_OP_MAX_POOL2D, img, &p, L);
    cr_assert_str_eq(type_of(g, mp), "f32[N, 3, 3, 4]");
    expect_err(g, nn_ir_pool2d(g, NN_OP_MAX_POOL2D, flat, &p, L),
               "max_pool2d expects f32[N, C, H, W], got f32[N, 784]");

    NnConv2d t = {.stride = {2, 2}, .outpad = {2, 0}};
    NnId wt = par(g, "wt", NN_DT_F32, "3,5,3,3");
    expect_err(g, nn_ir_conv_transpose2d(g, img, wt, &t, L), "below the stride");
    expect_err(g, nn_ir_conv_transpose2d(g, img, w, &t, L), "does not match filters");

    int64_t lo[4] = {1, 0, 0, 0}, hi[4] = {0};
    expect_err(g, nn_ir_pad(g, img, lo, hi, 0, L), "axis 0 of f32[N, 3, 8, 8] is symbolic");
    expect_err(g, nn_ir_slice(g, img, 2, 3, 3, 1, L), "3:3:1 is not a non-empty slice");
    expect_err(g, nn_ir_slice(g, img, 4, 0, 1, 1, L), "axis 4 is out of range");
    expect_err(g, nn_ir_slice(g, img, 1, 0, 4, 1, L), "not a non-empty slice of axis 1");
    NnId two[2] = {img, w};
    expect_err(g, nn_ir_concat(g, two, 2, 1, L), "does not match");
    nn_graph_free(g);
}

// ---- attributes declared once ----

// Two convolutions differing in exactly one attribute, with equal result
// types, stay apart; identical ones merge.
Test(conv, cse_keeps_different_attributes_apart)
{
    static const struct {
        const char *x;
        NnConv2d a, b;
    } cases[] = {
        {"N,4,2,2", {.stride = {2, 1}, .pad = {1, 1, 1, 1}},
         {.stride = {3, 1}, .pad = {1, 1, 1, 1}}},
        {"N,4,2,2", {.stride = {1, 2}, .pad = {1, 1, 1, 1}},
         {.stride = {1, 3}, .pad = {1, 1, 1, 1}}},
        {"N,4,9,9", {.stride = {1, 1}, .pad = {1, 1, 1, 1}},
         {.stride = {1, 1}, .pad = {0, 1, 2, 1}}},
        {"N,4,9,9", {.stride = {1, 1}, .pad = {1, 1, 1, 1}},
         {.stride = {1, 1}, .pad = {1, 2, 1, 0}}},
        {"N,4,10,10", {.stride = {3, 1}, .pad = {2, 1, 2, 1}, .dilation = {1, 1}},
         {.stride = {3, 1}, .pad = {2, 1, 2, 1}, .dilation = {2, 1}}},
        {"N,4,10,10", {.stride = {1, 3}, .pad = {1, 2, 1, 2}, .dilation = {1, 1}},
         {.stride = {1, 3}, .pad = {1, 2, 1, 2}, .dilation = {1, 2}}},
        {"N,4,9,9", {.stride = {1, 1}, .pad = {1, 1, 1, 1}},
         {.stride = {1, 1}, .pad = {1, 1, 1, 1}}},
    };
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    for (int k = 0; k < ncases; k++) {
        NnGraph *g = nn_graph_new();
        NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, cases[k].x);
        NnId w = par(g, "w", NN_DT_F32, "4,4,3,3");
        NnId a = nn_ir_conv2d(g, x, w, &cases[k].a, L), b = nn_ir_conv2d(g, x, w, &cases[k].b, L);
        cr_assert(a >= 0 && b >= 0, "case %d: %s", k, g->err);
        char ta[64];
        snprintf(ta, sizeof ta, "%s", type_of(g, a));
        cr_assert_str_eq(ta, type_of(g, b), "case %d: types differ", k);
        nn_graph_add_output(g, "y", nn_ir_binary(g, NN_OP_ADD, a, b, L));
        NnGraph *h = nn_pass_cse(g);
        int convs = nn_graph_count_op(h, NN_OP_CONV2D), want = k == ncases - 1 ? 1 : 2;
        cr_assert_eq(convs, want, "case %d: %d convolutions after cse", k, convs);
        if (h != g)
            nn_graph_free(h);
        nn_graph_free(g);
    }
    // Pools differing only in their window, and pads only in the fill value.
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "2,3,8,8");
    NnConv2d p = {.kernel = {2, 2}, .stride = {2, 2}}, q = p;
    q.kernel[1] = 3;
    q.pad[1] = 1;
    NnId a = nn_ir_pool2d(g, NN_OP_MAX_POOL2D, x, &p, L);
    NnId b = nn_ir_pool2d(g, NN_OP_MAX_POOL2D, x, &q, L);
    int64_t lo[4] = {0, 0, 1, 1}, hi[4] = {0};
    NnId c = nn_ir_pad(g, x, lo, hi, 0, L), d = nn_ir_pad(g, x, lo, hi, 1, L);
    nn_graph_add_output(g, "a", nn_ir_binary(g, NN_OP_ADD, a, b, L));
    nn_graph_add_output(g, "c", nn_ir_binary(g, NN_OP_ADD, c, d, L));
    NnGraph *h = nn_pass_cse(g);
    cr_assert_eq(nn_graph_count_op(h, NN_OP_MAX_POOL2D), 2);
    cr_assert_eq(nn_graph_count_op(h, NN_OP_PAD), 2);
    if (h != g)
        nn_graph_free(h);
    nn_graph_free(g);
}

// Every op, with every attribute it declares set to a non-zero value: the dump
// names each labelled one (the table in ir/attrs.def, read here the same way).
Test(conv, printer_shows_every_declared_attribute)
{
    static const char *const labels[NN_ATI_COUNT] = {
#define NN_ATTR(tag, field, kind, label) [NN_ATI_##tag] = label,
#include "attrs.def"
#undef NN_ATTR
    };
    for (NnOp op = 0; op < NN_OP_COUNT; op++) {
        NnGraph *g = nn_graph_new();
        NnNode n = {.op = op, .dtype = NN_DT_F32, .shape = {2, {3, 4}}};
        NnAttr *a = &n.attr;
        a->value = 0.25, a->perm[0] = 1, a->axes = 2, a->keep = true, a->axis = 1;
        a->ta = a->tb = true, a->depth = 7, a->seed = 9, a->start = 1, a->stop = 3, a->step = 2;
        a->lo[0] = 1, a->hi[1] = 2, a->reverse = true;
        a->conv = (NnConv2d){{3, 2}, {2, 1}, {1, 2}, {1, 0, 1, 0}, 1, {1, 0}};
        g->nodes = &n;
        g->count = 1;
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        nn_ir_print(f, g);
        fclose(f);
        unsigned used = nn_op_attrs(op);
        for (int k = 0; k < NN_ATI_COUNT; k++) {
            if (!(used & (1u << k)) || !labels[k])
                continue;
            const char *want = k == NN_ATI_CONV    ? "kernel=[3, 2] stride=[2, 1] dilation=[1, 2] "
                                                     "pad=[1, 0, 1, 0] groups=1 outpad=[1, 0]"
                               : k == NN_ATI_VALUE ? " 0.25"
                                                   : labels[k];
            cr_expect(strstr(buf, want), "%s: dump '%s' lacks '%s'", nn_op_name(op), buf, want);
        }
        free(buf);
        g->nodes = NULL;
        g->count = 0;
        nn_graph_free(g);
    }
}

Test(conv, verifier_rejects_undeclared_attribute)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "2,3");
    NnId y = nn_ir_unary(g, NN_OP_NEG, x, L);
    cr_assert(nn_ir_verify(g), "%s", g->err);
    g->nodes[y].attr.conv.groups = 2;
    cr_assert(!nn_ir_verify(g));
    cr_assert(strstr(g->err, "attribute 'conv' is set but neg does not use it"), "%s", g->err);
    nn_graph_free(g);
}

// Identity pads, slices and concatenations disappear; real ones stay.
Test(conv, simplify_drops_identity_layout)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,3,4");
    int64_t zero[3] = {0}, one[3] = {0, 1, 0};
    NnId a = nn_ir_pad(g, x, zero, zero, 5, L);
    NnId b = nn_ir_slice(g, a, 2, 0, 4, 1, L);
    NnId d = nn_ir_concat(g, &b, 1, 1, L);
    NnId e = nn_ir_slice(g, nn_ir_pad(g, d, one, zero, 0, L), 1, 1, 4, 1, L);
    cr_assert(e >= 0, "%s", g->err);
    nn_graph_add_output(g, "y", e);
    NnGraph *h = nn_pass_simplify(g);
    cr_assert(nn_ir_verify(h), "%s", h->err);
    cr_assert_eq(nn_graph_count_op(h, NN_OP_PAD), 1);
    cr_assert_eq(nn_graph_count_op(h, NN_OP_SLICE), 1);
    cr_assert_eq(nn_graph_count_op(h, NN_OP_CONCAT), 0);
    if (h != g)
        nn_graph_free(h);
    nn_graph_free(g);
}
