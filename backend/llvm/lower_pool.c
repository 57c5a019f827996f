// Pooling (MAX_POOL2D, AVG_POOL2D and their gradients) and the copying layout
// ops PAD, SLICE, SLICE_BWD and CONCAT. Pooling walks NCHW planes: forward
// kernels split output rows over threads; the gradients split whole planes,
// since a window's scatter stays inside its plane (no two threads write the
// same element). Max pooling keeps the first maximum of a window in row-major
// order and never picks padding; average pooling divides by KH*KW, padding
// counted as zeros. The layout ops copy rows of the innermost contiguous run.
#include <math.h>
#include <stdlib.h>

#include "nn_llvm.h"

#define PL_VW 16

static LLVMValueRef mul(NnCg *cg, LLVMValueRef a, int64_t b)
{
    return LLVMBuildNSWMul(cg->b, a, nn_cg_i64(cg, b), "");
}
static LLVMValueRef add(NnCg *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWAdd(cg->b, a, b, "");
}
static LLVMValueRef addc(NnCg *cg, LLVMValueRef a, int64_t b)
{
    return LLVMBuildNSWAdd(cg->b, a, nn_cg_i64(cg, b), "");
}
static LLVMValueRef in_range(NnCg *cg, LLVMValueRef x, int64_t hi)
{
    return LLVMBuildICmp(cg->b, LLVMIntULT, x, nn_cg_i64(cg, hi), "");
}

// Opens an if: the builder sits in the "then" block; if_end joins.
static LLVMBasicBlockRef if_begin(NnCg *cg, LLVMValueRef c)
{
    LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "then");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "endif");
    LLVMBuildCondBr(cg->b, c, yes, done);
    LLVMPositionBuilderAtEnd(cg->b, yes);
    return done;
}
static void if_end(NnCg *cg, LLVMBasicBlockRef done)
{
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
}

// ---- pooling ----

typedef struct Pool {
    NnDType dt;
    int64_t planes, H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl;
    LLVMValueRef x, y;
} Pool;

static void pool_geom(NnCg *cg, Pool *p, const NnNode *n, NnId xid, NnId yid)
{
    int r;
    int64_t xd[NN_MAX_RANK], yd[NN_MAX_RANK];
    nn_cg_shape(cg, cg->g, xid, &r, xd);
    nn_cg_shape(cg, cg->g, yid, &r, yd);
    const NnConv2d *a = &n->attr.conv;
    p->dt = n->dtype;
    p->planes = xd[0] * xd[1];
    p->H = xd[2], p->W = xd[3], p->OH = yd[2], p->OW = yd[3];
    p->KH = a->kernel[0], p->KW = a->kernel[1], p->sh = a->stride[0], p->sw = a->stride[1];
    p->dh = a->dilation[0] > 0 ? a->dilation[0] : 1, p->dw = a->dilation[1] > 0 ? a->dilation[1] : 1;
    p->pt = a->pad[0], p->pl = a->pad[1];
}

// Calls fn for every in-image element of the window of output (oh, ow) of
// plane base `xb` (element offset), in row-major window order.
typedef void (*WinFn)(NnCg *cg, void *ctx, LLVMValueRef xoff);

static void window(NnCg *cg, const Pool *p, LLVMValueRef xb, LLVMValueRef oh, LLVMValueRef ow,
                   WinFn fn, void *ctx)
{
    NnLoop kh, kw;
    nn_cg_loop_begin(cg, &kh, nn_cg_i64(cg, 0), nn_cg_i64(cg, p->KH), 1);
    LLVMValueRef h = add(cg, addc(cg, mul(cg, oh, p->sh), -p->pt), mul(cg, kh.iv, p->dh));
    LLVMBasicBlockRef hd = if_begin(cg, in_range(cg, h, p->H));
    nn_cg_loop_begin(cg, &kw, nn_cg_i64(cg, 0), nn_cg_i64(cg, p->KW), 1);
    LLVMValueRef w = add(cg, addc(cg, mul(cg, ow, p->sw), -p->pl), mul(cg, kw.iv, p->dw));
    LLVMBasicBlockRef wd = if_begin(cg, in_range(cg, w, p->W));
    fn(cg, ctx, add(cg, xb, add(cg, mul(cg, h, p->W), w)));
    if_end(cg, wd);
    kw.unroll = true;
    nn_cg_loop_end(cg, &kw);
    if_end(cg, hd);
    nn_cg_loop_end(cg, &kh);
}

typedef struct Win {
    const Pool *p;
    LLVMValueRef best, at, sum; // allocas
} Win;

static void max_point(NnCg *cg, void *ctx, LLVMValueRef off)
{
    Win *c = ctx;
    LLVMTypeRef t = nn_cg_type(cg, c->p->dt);
    LLVMValueRef v = nn_cg_load(cg, c->p->dt, c->p->x, off, 1, NULL);
    LLVMValueRef at = LLVMBuildLoad2(cg->b, cg->t_i64, c->at, "");
    LLVMValueRef best = LLVMBuildLoad2(cg->b, t, c->best, "");
    LLVMValueRef gt = c->p->dt == NN_DT_I32 ? LLVMBuildICmp(cg->b, LLVMIntSGT, v, best, "")
                                            : LLVMBuildFCmp(cg->b, LLVMRealOGT, v, best, "");
    LLVMValueRef take =
        LLVMBuildOr(cg->b, gt, LLVMBuildICmp(cg->b, LLVMIntSLT, at, nn_cg_i64(cg, 0), ""), "");
    LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, take, v, best, ""), c->best);
    LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, take, off, at, ""), c->at);
}

static void sum_point(NnCg *cg, void *ctx, LLVMValueRef off)
{
    Win *c = ctx;
    LLVMTypeRef t = nn_cg_type(cg, c->p->dt);
    LLVMValueRef v = nn_cg_load(cg, c->p->dt, c->p->x, off, 1, NULL);
    LLVMValueRef s = LLVMBuildLoad2(cg->b, t, c->sum, "");
    LLVMBuildStore(cg->b, c->p->dt == NN_DT_I32 ? LLVMBuildAdd(cg->b, s, v, "")
                                                : LLVMBuildFAdd(cg->b, s, v, ""),
                   c->sum);
}

// Max: the first maximum's offset into c->at (-1 when the window is all padding).
static void max_window(NnCg *cg, Win *c, LLVMValueRef xb, LLVMValueRef oh, LLVMValueRef ow)
{
    LLVMBuildStore(cg->b, nn_cg_i64(cg, -1), c->at);
    LLVMBuildStore(cg->b, nn_cg_const(cg, c->p->dt, -INFINITY, 1), c->best);
    window(cg, c->p, xb, oh, ow, max_point, c);
}

static bool pool_fwd(NnCg *cg, NnId id, bool max)
{
    const NnNode *n = &cg->g->nodes[id];
    Pool p;
    pool_geom(cg, &p, n, n->in[0], id);
    int64_t rows = p.planes * p.OH;
    nn_cg_kernel_begin(cg, max ? "max_pool" : "avg_pool",
                       (double)(rows * p.OW * p.KH * p.KW));
    p.x = nn_cg_buf(cg, n->in[0]);
    p.y = nn_cg_buf(cg, id);
    LLVMTypeRef t = nn_cg_type(cg, p.dt);
    Win c = {.p = &p, .best = nn_cg_alloca(cg, t), .at = nn_cg_alloca(cg, cg->t_i64),
             .sum = nn_cg_alloca(cg, t)};
    LLVMValueRef lo, hi;
    nn_cg_split(cg, rows, 1, &lo, &hi);
    NnLoop r, ow;
    nn_cg_loop_begin(cg, &r, lo, hi, 1);
    LLVMValueRef plane = LLVMBuildUDiv(cg->b, r.iv, nn_cg_i64(cg, p.OH), "");
    LLVMValueRef oh = LLVMBuildURem(cg->b, r.iv, nn_cg_i64(cg, p.OH), "");
    LLVMValueRef xb = mul(cg, plane, p.H * p.W);
    nn_cg_loop_begin(cg, &ow, nn_cg_i64(cg, 0), nn_cg_i64(cg, p.OW), 1);
    LLVMValueRef v;
    if (max) {
        max_window(cg, &c, xb, oh, ow.iv);
        v = LLVMBuildLoad2(cg->b, t, c.best, "");
    } else {
        LLVMBuildStore(cg->b, nn_cg_const(cg, p.dt, 0, 1), c.sum);
        window(cg, &p, xb, oh, ow.iv, sum_point, &c);
        v = LLVMBuildLoad2(cg->b, t, c.sum, "");
        v = p.dt == NN_DT_I32 ? LLVMBuildSDiv(cg->b, v, nn_cg_const(cg, p.dt, p.KH * p.KW, 1), "")
                              : LLVMBuildFDiv(cg->b, v, nn_cg_const(cg, p.dt, p.KH * p.KW, 1), "");
    }
    nn_cg_store(cg, p.dt, v, p.y, add(cg, mul(cg, r.iv, p.OW), ow.iv), 1, NULL);
    nn_cg_loop_end(cg, &ow);
    nn_cg_loop_end(cg, &r);
    nn_cg_kernel_end(cg);
    return true;
}

bool llvm_max_pool2d(NnCg *cg, NnId id) { return pool_fwd(cg, id, true); }
bool llvm_avg_pool2d(NnCg *cg, NnId id) { return pool_fwd(cg, id, false); }

// Zeroes plane `plane` of y (H*W elements), vectorized.
static void zero_plane(NnCg *cg, NnDType dt, LLVMValueRef y, LLVMValueRef base, int64_t len)
{
    int64_t full = len - len % PL_VW;
    NnLoop i;
    if (full > 0) {
        nn_cg_loop_begin(cg, &i, nn_cg_i64(cg, 0), nn_cg_i64(cg, full), PL_VW);
        nn_cg_store(cg, dt, nn_cg_const(cg, dt, 0, PL_VW), y, add(cg, base, i.iv), PL_VW, NULL);
        nn_cg_loop_end(cg, &i);
    }
    if (full < len)
        nn_cg_store(cg, dt, nn_cg_const(cg, dt, 0, PL_VW), y, addc(cg, base, full), PL_VW,
                    nn_cg_mask(cg, PL_VW, (int)(len - full)));
}

typedef struct Scatter {
    const Pool *p;
    LLVMValueRef dx, g; // output base pointer, value to add
} Scatter;

static void add_to(NnCg *cg, NnDType dt, LLVMValueRef base, LLVMValueRef off, LLVMValueRef g)
{
    LLVMValueRef cur = nn_cg_load(cg, dt, base, off, 1, NULL);
    LLVMValueRef s = dt == NN_DT_I32 ? LLVMBuildAdd(cg->b, cur, g, "") : LLVMBuildFAdd(cg->b, cur, g, "");
    nn_cg_store(cg, dt, s, base, off, 1, NULL);
}

static void scatter_point(NnCg *cg, void *ctx, LLVMValueRef off)
{
    Scatter *s = ctx;
    add_to(cg, s->p->dt, s->dx, off, s->g);
}

// Gradients: per plane, dx = 0, then every output's dy goes back to its window.
static bool pool_bwd(NnCg *cg, NnId id, bool max)
{
    const NnNode *n = &cg->g->nodes[id];
    Pool p;
    NnId dy = max ? n->in[1] : n->in[0];
    pool_geom(cg, &p, n, id, dy);
    nn_cg_kernel_begin(cg, max ? "max_pool_bwd" : "avg_pool_bwd",
                       (double)(p.planes * p.OH * p.OW * p.KH * p.KW));
    p.x = max ? nn_cg_buf(cg, n->in[0]) : NULL;
    LLVMValueRef dyp = nn_cg_buf(cg, dy), dx = nn_cg_buf(cg, id);
    LLVMTypeRef t = nn_cg_type(cg, p.dt);
    Win c = {.p = &p, .best = nn_cg_alloca(cg, t), .at = nn_cg_alloca(cg, cg->t_i64)};
    LLVMValueRef lo, hi;
    nn_cg_split(cg, p.planes, 1, &lo, &hi);
    NnLoop pl, oh, ow;
    nn_cg_loop_begin(cg, &pl, lo, hi, 1);
    LLVMValueRef xb = mul(cg, pl.iv, p.H * p.W);
    zero_plane(cg, p.dt, dx, xb, p.H * p.W);
    nn_cg_loop_begin(cg, &oh, nn_cg_i64(cg, 0), nn_cg_i64(cg, p.OH), 1);
    nn_cg_loop_begin(cg, &ow, nn_cg_i64(cg, 0), nn_cg_i64(cg, p.OW), 1);
    LLVMValueRef yoff = add(cg, mul(cg, add(cg, mul(cg, pl.iv, p.OH), oh.iv), p.OW), ow.iv);
    LLVMValueRef g = nn_cg_load(cg, p.dt, dyp, yoff, 1, NULL);
    if (max) {
        max_window(cg, &c, xb, oh.iv, ow.iv);
        LLVMValueRef at = LLVMBuildLoad2(cg->b, cg->t_i64, c.at, "");
        LLVMBasicBlockRef d =
            if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntSGE, at, nn_cg_i64(cg, 0), ""));
        add_to(cg, p.dt, dx, at, g);
        if_end(cg, d);
    } else {
        g = p.dt == NN_DT_I32 ? LLVMBuildSDiv(cg->b, g, nn_cg_const(cg, p.dt, p.KH * p.KW, 1), "")
                              : LLVMBuildFDiv(cg->b, g, nn_cg_const(cg, p.dt, p.KH * p.KW, 1), "");
        Scatter s = {.p = &p, .dx = dx, .g = g};
        window(cg, &p, xb, oh.iv, ow.iv, scatter_point, &s);
    }
    nn_cg_loop_end(cg, &ow);
    nn_cg_loop_end(cg, &oh);
    nn_cg_loop_end(cg, &pl);
    nn_cg_kernel_end(cg);
    return true;
}

bool llvm_max_pool2d_bwd(NnCg *cg, NnId id) { return pool_bwd(cg, id, true); }
bool llvm_avg_pool2d_bwd(NnCg *cg, NnId id) { return pool_bwd(cg, id, false); }

// ---- copies of contiguous runs ----

typedef struct Copy {
    NnDType dt;
    LLVMValueRef dst, src, doff, soff; // soff NULL: fill with `fill`
    LLVMValueRef fill;
} Copy;

static void copy_point(NnCg *cg, void *ctx, LLVMValueRef j, int w)
{
    Copy *c = ctx;
    LLVMValueRef v = c->soff ? nn_cg_load(cg, c->dt, c->src, add(cg, c->soff, j), w, NULL)
                             : nn_cg_splat(cg, c->fill, w);
    nn_cg_store(cg, c->dt, v, c->dst, add(cg, c->doff, j), w, NULL);
}

// dst[doff + j] = src[soff + j] (or fill) for j in [0, n).
static void copy_run(NnCg *cg, NnDType dt, LLVMValueRef dst, LLVMValueRef doff, LLVMValueRef src,
                     LLVMValueRef soff, LLVMValueRef fill, LLVMValueRef n)
{
    Copy c = {dt, dst, src, doff, soff, fill};
    nn_cg_vloop(cg, nn_cg_i64(cg, 0), n, PL_VW, copy_point, &c);
}

// Splits a shape at `axis` into (before, the axis, after) element counts.
static void around(const int64_t *d, int rank, int axis, int64_t *pre, int64_t *post)
{
    *pre = *post = 1;
    for (int i = 0; i < axis; i++)
        *pre *= d[i];
    for (int i = axis + 1; i < rank; i++)
        *post *= d[i];
}

bool llvm_slice(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    int r;
    int64_t xd[NN_MAX_RANK], yd[NN_MAX_RANK], pre, post;
    nn_cg_shape(cg, cg->g, n->in[0], &r, xd);
    nn_cg_shape(cg, cg->g, id, &r, yd);
    int ax = n->attr.axis;
    around(yd, r, ax, &pre, &post);
    int64_t rows = pre * yd[ax];
    nn_cg_kernel_begin(cg, "slice", (double)(rows * post));
    LLVMValueRef x = nn_cg_buf(cg, n->in[0]), y = nn_cg_buf(cg, id), lo, hi;
    nn_cg_split(cg, rows, 1, &lo, &hi);
    NnLoop i;
    nn_cg_loop_begin(cg, &i, lo, hi, 1);
    LLVMValueRef a = LLVMBuildUDiv(cg->b, i.iv, nn_cg_i64(cg, yd[ax]), "");
    LLVMValueRef k = LLVMBuildURem(cg->b, i.iv, nn_cg_i64(cg, yd[ax]), "");
    LLVMValueRef src = addc(cg, add(cg, mul(cg, a, xd[ax]), mul(cg, k, n->attr.step)), n->attr.start);
    copy_run(cg, n->dtype, y, mul(cg, i.iv, post), x, mul(cg, src, post), NULL,
             nn_cg_i64(cg, post));
    nn_cg_loop_end(cg, &i);
    nn_cg_kernel_end(cg);
    return true;
}

bool llvm_slice_bwd(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    int r;
    int64_t dd[NN_MAX_RANK], xd[NN_MAX_RANK], pre, post;
    nn_cg_shape(cg, cg->g, n->in[0], &r, dd);
    nn_cg_shape(cg, cg->g, id, &r, xd);
    int ax = n->attr.axis;
    around(xd, r, ax, &pre, &post);
    int64_t rows = pre * xd[ax], start = n->attr.start, step = n->attr.step;
    nn_cg_kernel_begin(cg, "slice_bwd", (double)(rows * post));
    LLVMValueRef dy = nn_cg_buf(cg, n->in[0]), dx = nn_cg_buf(cg, id), lo, hi;
    nn_cg_split(cg, rows, 1, &lo, &hi);
    NnLoop i;
    nn_cg_loop_begin(cg, &i, lo, hi, 1);
    LLVMValueRef a = LLVMBuildUDiv(cg->b, i.iv, nn_cg_i64(cg, xd[ax]), "");
    LLVMValueRef k = LLVMBuildURem(cg->b, i.iv, nn_cg_i64(cg, xd[ax]), "");
    LLVMValueRef t = addc(cg, k, -start); // row k takes dy row t/step when step divides t
    LLVMValueRef q = LLVMBuildSDiv(cg->b, t, nn_cg_i64(cg, step), "");
    LLVMValueRef hit = LLVMBuildAnd(
        cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, t, nn_cg_i64(cg, 0), ""),
        LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, q, nn_cg_i64(cg, dd[ax]), ""),
                     LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildSRem(cg->b, t, nn_cg_i64(cg, step), ""),
                                   nn_cg_i64(cg, 0), ""),
                     ""),
        "");
    LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "copy");
    LLVMBasicBlockRef no = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "zero");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "row_done");
    LLVMBuildCondBr(cg->b, hit, yes, no);
    LLVMPositionBuilderAtEnd(cg->b, yes);
    LLVMValueRef src = mul(cg, add(cg, mul(cg, a, dd[ax]), q), post);
    copy_run(cg, n->dtype, dx, mul(cg, i.iv, post), dy, src, NULL, nn_cg_i64(cg, post));
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, no);
    copy_run(cg, n->dtype, dx, mul(cg, i.iv, post), NULL, NULL, nn_cg_const(cg, n->dtype, 0, 1),
             nn_cg_i64(cg, post));
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    nn_cg_loop_end(cg, &i);
    nn_cg_kernel_end(cg);
    return true;
}

bool llvm_concat(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    int r;
    int64_t yd[NN_MAX_RANK], pre, post;
    nn_cg_shape(cg, cg->g, id, &r, yd);
    int ax = n->attr.axis;
    around(yd, r, ax, &pre, &post);
    nn_cg_kernel_begin(cg, "concat", (double)nn_cg_numel(cg, cg->g, id));
    LLVMValueRef y = nn_cg_buf(cg, id);
    int64_t at = 0; // first row of input k along the axis
    for (int k = 0; k < n->nin; k++) {
        int64_t xd[NN_MAX_RANK];
        nn_cg_shape(cg, cg->g, n->in[k], &r, xd);
        int64_t len = xd[ax], rows = pre * len;
        LLVMValueRef x = nn_cg_buf(cg, n->in[k]), lo, hi;
        nn_cg_split(cg, rows, 1, &lo, &hi);
        NnLoop i;
        nn_cg_loop_begin(cg, &i, lo, hi, 1);
        LLVMValueRef a = LLVMBuildUDiv(cg->b, i.iv, nn_cg_i64(cg, len), "");
        LLVMValueRef j = LLVMBuildURem(cg->b, i.iv, nn_cg_i64(cg, len), "");
        LLVMValueRef dst = addc(cg, add(cg, mul(cg, a, yd[ax]), j), at);
        copy_run(cg, n->dtype, y, mul(cg, dst, post), x, mul(cg, i.iv, post), NULL,
                 nn_cg_i64(cg, post));
        nn_cg_loop_end(cg, &i);
        at += len;
    }
    nn_cg_kernel_end(cg);
    return true;
}

// Rows of the last axis: a row inside the source in every outer axis copies
// its middle and fills its ends; any other row is all fill.
bool llvm_pad(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    int r;
    int64_t xd[NN_MAX_RANK], yd[NN_MAX_RANK];
    nn_cg_shape(cg, cg->g, n->in[0], &r, xd);
    nn_cg_shape(cg, cg->g, id, &r, yd);
    if (r == 0) {
        xd[0] = yd[0] = 1;
        r = 1;
    }
    int64_t rows = 1, L = yd[r - 1], lo_l = r > 0 ? n->attr.lo[r - 1] : 0, xl = xd[r - 1];
    for (int d = 0; d < r - 1; d++)
        rows *= yd[d];
    nn_cg_kernel_begin(cg, "pad", (double)nn_cg_numel(cg, cg->g, id));
    LLVMValueRef x = nn_cg_buf(cg, n->in[0]), y = nn_cg_buf(cg, id), lo, hi;
    LLVMValueRef fill = nn_cg_const(cg, n->dtype, n->attr.value, 1);
    nn_cg_split(cg, rows, 1, &lo, &hi);
    NnLoop i;
    nn_cg_loop_begin(cg, &i, lo, hi, 1);
    LLVMValueRef idx[NN_MAX_RANK];
    nn_cg_decode(cg, i.iv, yd, r - 1, idx);
    LLVMValueRef inside = LLVMConstInt(cg->t_i1, 1, 0), src = nn_cg_i64(cg, 0);
    for (int d = 0; d < r - 1; d++) {
        LLVMValueRef s = addc(cg, idx[d], -n->attr.lo[d]);
        inside = LLVMBuildAnd(cg->b, inside, in_range(cg, s, xd[d]), "");
        src = add(cg, mul(cg, src, xd[d]), s);
    }
    LLVMValueRef yrow = mul(cg, i.iv, L);
    LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "inside");
    LLVMBasicBlockRef no = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "outside");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "row_done");
    LLVMBuildCondBr(cg->b, inside, yes, no);
    LLVMPositionBuilderAtEnd(cg->b, yes);
    copy_run(cg, n->dtype, y, yrow, NULL, NULL, fill, nn_cg_i64(cg, lo_l));
    copy_run(cg, n->dtype, y, addc(cg, yrow, lo_l), x, mul(cg, src, xl), NULL, nn_cg_i64(cg, xl));
    copy_run(cg, n->dtype, y, addc(cg, yrow, lo_l + xl), NULL, NULL, fill,
             nn_cg_i64(cg, L - lo_l - xl));
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, no);
    copy_run(cg, n->dtype, y, yrow, NULL, NULL, fill, nn_cg_i64(cg, L));
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    nn_cg_loop_end(cg, &i);
    nn_cg_kernel_end(cg);
    return true;
}
