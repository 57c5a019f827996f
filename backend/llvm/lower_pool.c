// Pooling (MAX_POOL2D, AVG_POOL2D and their gradients) and the copying layout
// ops PAD, SLICE, SLICE_BWD and CONCAT. Pooling walks NCHW planes: forward
// kernels split output rows over threads; the gradients split whole planes,
// since a window's scatter stays inside its plane (no two threads write the
// same element). Max pooling keeps the first maximum of a window in row-major
// order (a NaN wins) and never picks padding; average pooling divides by
// KH*KW, padding counted as zeros; both as the interpreter does. Max pooling
// 2x2 at stride 2 without padding reads rows with loads and shuffles instead
// (pair_max, pair_grad). The layout ops copy rows of the innermost
// contiguous run.
#include <math.h>
#include <stdlib.h>

#include "nn_llvm.h"
#include "pass.h"

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

// Vectors run along an output row: lane l is output column ow0 + l, and each
// window position is one masked gather (lanes outside the image or past the
// row read nothing). Within one window position the lanes' addresses differ,
// so average pooling's gradient scatters whole vectors; max pooling's does
// too when neighbouring windows cannot overlap, else lane by lane.
typedef struct Pool {
    NnDType dt;
    int vw;
    int64_t planes, H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl;
    bool rt; // the batch (in planes) is a run-time value
    LLVMValueRef x;              // the plane's input (forward, max gradient)
    LLVMValueRef live, ow;       // i1 and i32 lane vectors of the current chunk
    LLVMValueRef best, at, sum;  // vector allocas
} Pool;

static void pool_geom(NnCg *cg, Pool *p, const NnNode *n, NnId xid, NnId yid)
{
    int r;
    int64_t xd[NN_MAX_RANK], yd[NN_MAX_RANK];
    nn_cg_shape(cg, cg->g, xid, &r, xd);
    nn_cg_shape(cg, cg->g, yid, &r, yd);
    const NnConv2d *a = &n->attr.conv;
    p->dt = n->dtype;
    p->vw = p->dt == NN_DT_F64 ? 8 : 16;
    p->planes = xd[0] * xd[1];
    p->rt = nn_cg_rt(cg, cg->g, xid);
    p->H = xd[2], p->W = xd[3], p->OH = yd[2], p->OW = yd[3];
    p->KH = a->kernel[0], p->KW = a->kernel[1], p->sh = a->stride[0], p->sw = a->stride[1];
    p->dh = a->dilation[0] > 0 ? a->dilation[0] : 1, p->dw = a->dilation[1] > 0 ? a->dilation[1] : 1;
    p->pt = a->pad[0], p->pl = a->pad[1];
}

// The kernel's accumulators (call after nn_cg_kernel_begin).
static void pool_state(NnCg *cg, Pool *p)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, p->dt, p->vw);
    p->best = nn_cg_alloca(cg, vt);
    p->sum = nn_cg_alloca(cg, vt);
    p->at = nn_cg_alloca(cg, LLVMVectorType(cg->t_i32, (unsigned)p->vw));
}

static LLVMValueRef iv32(NnCg *cg, const Pool *p, int64_t c)
{
    return nn_cg_splat(cg, nn_cg_i32(cg, (int32_t)c), p->vw);
}

// Lanes ow0 + l of the output row and which of them exist.
static void chunk_lanes(NnCg *cg, Pool *p, LLVMValueRef ow0)
{
    LLVMValueRef l[64];
    for (int i = 0; i < p->vw; i++)
        l[i] = nn_cg_i32(cg, i);
    LLVMValueRef o = nn_cg_splat(cg, LLVMBuildTrunc(cg->b, ow0, cg->t_i32, ""), p->vw);
    p->ow = LLVMBuildAdd(cg->b, o, LLVMConstVector(l, (unsigned)p->vw), "");
    p->live = LLVMBuildICmp(cg->b, LLVMIntSLT, p->ow, iv32(cg, p, p->OW), "");
}

static LLVMValueRef vgather(NnCg *cg, const Pool *p, LLVMValueRef base, LLVMValueRef off,
                            LLVMValueRef m)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, p->dt, p->vw);
    LLVMValueRef safe = LLVMBuildSelect(cg->b, m, off, iv32(cg, p, 0), "");
    LLVMValueRef ptrs = LLVMBuildInBoundsGEP2(cg->b, nn_cg_type(cg, p->dt), base, &safe, 1, "");
    LLVMTypeRef ovl[2] = {vt, LLVMTypeOf(ptrs)};
    LLVMValueRef args[4] = {ptrs, nn_cg_i32(cg, (int32_t)nnrt_dtype_size(p->dt)), m,
                            LLVMConstNull(vt)};
    return nn_cg_intrinsic(cg, "llvm.masked.gather", ovl, 2, args, 4);
}

static void vscatter(NnCg *cg, const Pool *p, LLVMValueRef v, LLVMValueRef base, LLVMValueRef off,
                     LLVMValueRef m)
{
    LLVMValueRef safe = LLVMBuildSelect(cg->b, m, off, iv32(cg, p, 0), "");
    LLVMValueRef ptrs = LLVMBuildInBoundsGEP2(cg->b, nn_cg_type(cg, p->dt), base, &safe, 1, "");
    LLVMTypeRef ovl[2] = {LLVMTypeOf(v), LLVMTypeOf(ptrs)};
    LLVMValueRef args[4] = {v, ptrs, nn_cg_i32(cg, (int32_t)nnrt_dtype_size(p->dt)), m};
    nn_cg_intrinsic(cg, "llvm.masked.scatter", ovl, 2, args, 4);
}

// Called per window position with the lanes' plane offsets and mask.
typedef void (*WinFn)(NnCg *cg, Pool *p, void *ctx, LLVMValueRef off, LLVMValueRef m);

static void window(NnCg *cg, Pool *p, LLVMValueRef oh, WinFn fn, void *ctx)
{
    NnLoop kh, kw;
    nn_cg_loop_begin(cg, &kh, nn_cg_i64(cg, 0), nn_cg_i64(cg, p->KH), 1);
    LLVMValueRef h = add(cg, addc(cg, mul(cg, oh, p->sh), -p->pt), mul(cg, kh.iv, p->dh));
    LLVMBasicBlockRef hd = if_begin(cg, in_range(cg, h, p->H));
    LLVMValueRef row = nn_cg_splat(cg, LLVMBuildTrunc(cg->b, mul(cg, h, p->W), cg->t_i32, ""), p->vw);
    LLVMValueRef w0 = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, p->ow, iv32(cg, p, p->sw), ""),
                                   iv32(cg, p, p->pl), "");
    nn_cg_loop_begin(cg, &kw, nn_cg_i64(cg, 0), nn_cg_i64(cg, p->KW), 1);
    LLVMValueRef dwv = nn_cg_splat(
        cg, LLVMBuildTrunc(cg->b, mul(cg, kw.iv, p->dw), cg->t_i32, ""), p->vw);
    LLVMValueRef w = LLVMBuildAdd(cg->b, w0, dwv, "");
    LLVMValueRef m = LLVMBuildAnd(
        cg->b, p->live, LLVMBuildICmp(cg->b, LLVMIntULT, w, iv32(cg, p, p->W), ""), "");
    fn(cg, p, ctx, LLVMBuildAdd(cg->b, row, w, ""), m);
    kw.unroll = true;
    nn_cg_loop_end(cg, &kw);
    if_end(cg, hd);
    nn_cg_loop_end(cg, &kh);
}

// The interpreter's rule: the first maximum in window order wins, a NaN wins
// over everything after it, and an all-padding window has none (at = -1).
static void max_point(NnCg *cg, Pool *p, void *ctx, LLVMValueRef off, LLVMValueRef m)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, p->dt, p->vw);
    LLVMTypeRef it = LLVMVectorType(cg->t_i32, (unsigned)p->vw);
    LLVMValueRef v = vgather(cg, p, p->x, off, m);
    LLVMValueRef best = LLVMBuildLoad2(cg->b, vt, p->best, "");
    LLVMValueRef at = LLVMBuildLoad2(cg->b, it, p->at, "");
    LLVMValueRef none = LLVMBuildICmp(cg->b, LLVMIntSLT, at, iv32(cg, p, 0), "");
    LLVMValueRef beats = LLVMBuildAnd(cg->b, LLVMBuildFCmp(cg->b, LLVMRealUGT, v, best, ""),
                                      LLVMBuildFCmp(cg->b, LLVMRealORD, best, best, ""), "");
    LLVMValueRef take = LLVMBuildAnd(cg->b, m, LLVMBuildOr(cg->b, none, beats, ""), "");
    LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, take, v, best, ""), p->best);
    LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, take, off, at, ""), p->at);
}

static void sum_point(NnCg *cg, Pool *p, void *ctx, LLVMValueRef off, LLVMValueRef m)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, p->dt, p->vw);
    LLVMValueRef v = vgather(cg, p, p->x, off, m);
    LLVMValueRef s = LLVMBuildLoad2(cg->b, vt, p->sum, "");
    LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, s, v, ""), p->sum);
}

static void max_window(NnCg *cg, Pool *p, LLVMValueRef oh)
{
    LLVMBuildStore(cg->b, nn_cg_const(cg, p->dt, 0, p->vw), p->best);
    LLVMBuildStore(cg->b, iv32(cg, p, -1), p->at);
    window(cg, p, oh, max_point, NULL);
}

static LLVMValueRef chunks(const Pool *p, NnCg *cg)
{
    return nn_cg_i64(cg, (p->OW + p->vw - 1) / p->vw);
}

// ---- 2x2 windows at stride 2 ----
// Without padding or dilation (the usual max pool), a chunk's windows cover
// two contiguous runs of 2*vw input elements, one per input row: two masked
// loads per row, split into even and odd columns by shuffles, replace the
// four gathers; the gradient goes back the same way, interleaved, as plain
// stores that cover the rows (no scatter).
static bool pairs(const Pool *p)
{
    return p->KH == 2 && p->KW == 2 && p->sh == 2 && p->sw == 2 && p->dh == 1 && p->dw == 1 &&
           p->pt == 0 && p->pl == 0 && 2 * p->OH <= p->H && 2 * p->OW <= p->W;
}

// Shuffle mask: lane i takes lane 2i + odd (deinterleave), or the
// interleaving of two vectors' half `odd` (interleave).
static LLVMValueRef pair_shuffle(NnCg *cg, const Pool *p, bool deinterleave, int odd)
{
    LLVMValueRef l[64];
    for (int i = 0; i < p->vw; i++)
        l[i] = nn_cg_i32(cg, deinterleave ? 2 * i + odd : (i % 2) * p->vw + odd * p->vw / 2 + i / 2);
    return LLVMConstVector(l, (unsigned)p->vw);
}

// The input columns 2*ow0 + (q*vw + lane) that lie in windows of the row.
static void pair_cols(NnCg *cg, const Pool *p, LLVMValueRef ow0, LLVMValueRef cm[2])
{
    LLVMValueRef l[64];
    for (int q = 0; q < 2; q++) {
        for (int i = 0; i < p->vw; i++)
            l[i] = nn_cg_i32(cg, q * p->vw + i);
        LLVMValueRef c0 = nn_cg_splat(cg, LLVMBuildTrunc(cg->b, mul(cg, ow0, 2), cg->t_i32, ""), p->vw);
        LLVMValueRef c = LLVMBuildAdd(cg->b, c0, LLVMConstVector(l, (unsigned)p->vw), "");
        cm[q] = LLVMBuildICmp(cg->b, LLVMIntULT, c, iv32(cg, p, 2 * p->OW), "");
    }
}

// base[off .. + vw) on the lanes of m; masked-off lanes may lie past the
// plane, so the address is formed without inbounds.
static LLVMValueRef pair_load(NnCg *cg, const Pool *p, LLVMValueRef base, LLVMValueRef off,
                              LLVMValueRef m)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, p->dt, p->vw);
    LLVMValueRef ptr = LLVMBuildGEP2(cg->b, nn_cg_type(cg, p->dt), base, &off, 1, "");
    LLVMTypeRef ovl[2] = {vt, cg->t_ptr};
    LLVMValueRef args[4] = {ptr, nn_cg_i32(cg, (int32_t)nnrt_dtype_size(p->dt)), m,
                            LLVMConstNull(vt)};
    return nn_cg_intrinsic(cg, "llvm.masked.load", ovl, 2, args, 4);
}

static void pair_store(NnCg *cg, const Pool *p, LLVMValueRef v, LLVMValueRef base,
                       LLVMValueRef off, LLVMValueRef m)
{
    LLVMValueRef ptr = LLVMBuildGEP2(cg->b, nn_cg_type(cg, p->dt), base, &off, 1, "");
    LLVMTypeRef ovl[2] = {nn_cg_vtype(cg, p->dt, p->vw), cg->t_ptr};
    LLVMValueRef args[4] = {v, ptr, nn_cg_i32(cg, (int32_t)nnrt_dtype_size(p->dt)), m};
    nn_cg_intrinsic(cg, "llvm.masked.store", ovl, 2, args, 4);
}

// The maximum of output row oh's chunk at ow0 in the plane p->x, and in *at
// which window position (0..3, row-major) holds it, by max_point's rule.
static LLVMValueRef pair_max(NnCg *cg, Pool *p, LLVMValueRef oh, LLVMValueRef ow0,
                             LLVMValueRef cm[2], LLVMValueRef *at)
{
    LLVMValueRef v[4];
    pair_cols(cg, p, ow0, cm);
    for (int r = 0; r < 2; r++) {
        LLVMValueRef off = add(cg, mul(cg, addc(cg, mul(cg, oh, 2), r), p->W), mul(cg, ow0, 2));
        LLVMValueRef a = pair_load(cg, p, p->x, off, cm[0]);
        LLVMValueRef b = pair_load(cg, p, p->x, addc(cg, off, p->vw), cm[1]);
        v[2 * r] = LLVMBuildShuffleVector(cg->b, a, b, pair_shuffle(cg, p, true, 0), "");
        v[2 * r + 1] = LLVMBuildShuffleVector(cg->b, a, b, pair_shuffle(cg, p, true, 1), "");
    }
    LLVMValueRef best = v[0];
    *at = iv32(cg, p, 0);
    for (int k = 1; k < 4; k++) {
        LLVMValueRef take = LLVMBuildAnd(cg->b, LLVMBuildFCmp(cg->b, LLVMRealUGT, v[k], best, ""),
                                         LLVMBuildFCmp(cg->b, LLVMRealORD, best, best, ""), "");
        best = LLVMBuildSelect(cg->b, take, v[k], best, "");
        *at = LLVMBuildSelect(cg->b, take, iv32(cg, p, k), *at, "");
    }
    return best;
}

// dx rows 2*oh and 2*oh + 1 of the chunk at ow0: g where the window's
// maximum was (at), else 0.
static void pair_grad(NnCg *cg, Pool *p, LLVMValueRef dx, LLVMValueRef oh, LLVMValueRef ow0,
                      LLVMValueRef g)
{
    LLVMValueRef cm[2], at;
    pair_max(cg, p, oh, ow0, cm, &at);
    LLVMValueRef zero = nn_cg_const(cg, p->dt, 0, p->vw), gk[4];
    for (int k = 0; k < 4; k++)
        gk[k] = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, at, iv32(cg, p, k), ""), g,
                                zero, "");
    for (int r = 0; r < 2; r++) {
        LLVMValueRef off = add(cg, mul(cg, addc(cg, mul(cg, oh, 2), r), p->W), mul(cg, ow0, 2));
        for (int q = 0; q < 2; q++) {
            LLVMValueRef v = LLVMBuildShuffleVector(cg->b, gk[2 * r], gk[2 * r + 1],
                                                    pair_shuffle(cg, p, false, q), "");
            pair_store(cg, p, v, dx, addc(cg, off, (int64_t)q * p->vw), cm[q]);
        }
    }
}

// ---- epilogues (FUSED bodies with a pooling host) ----

// An epilogue applied in place to finished runs of the output: iteration
// space [N, C, H*W] when every leaf walks a plane contiguously or not at all
// (vectors along the plane), else [N, C, H, W] one element at a time.
typedef struct PoolEpi {
    NnExpr *e;
    bool flat;
    int64_t C, H, W;
} PoolEpi;

static void epi_space(NnCg *cg, PoolEpi *pe, int out_slot)
{
    int r;
    int64_t od[NN_MAX_RANK];
    nn_cg_shape(cg, cg->g, out_slot, &r, od);
    NN_ASSERT(r == 4);
    NnExpr *e = pe->e;
    pe->C = od[1], pe->H = od[2], pe->W = od[3];
    nn_expr_iter(cg, e, 4, od);
    pe->flat = true;
    for (int i = 0; i < e->nleaf && pe->flat; i++) {
        const NnLeaf *l = &e->leaf[i];
        pe->flat = !l->index && l->stride[3] <= 1 && l->stride[2] == l->stride[3] * od[3];
    }
    if (!pe->flat)
        return;
    e->rank = 3;
    e->dims[2] = od[2] * od[3];
    for (int i = 0; i < e->nleaf; i++)
        e->leaf[i].stride[2] = e->leaf[i].stride[3];
}

// out[plane, at .. at + len) = epilogue(itself); len is a compile-time count.
static void run_epi(NnCg *cg, const Pool *p, PoolEpi *pe, LLVMValueRef out, LLVMValueRef plane,
                    LLVMValueRef at, int64_t len)
{
    LLVMValueRef idx[4] = {LLVMBuildUDiv(cg->b, plane, nn_cg_i64(cg, pe->C), ""),
                           LLVMBuildURem(cg->b, plane, nn_cg_i64(cg, pe->C), "")};
    LLVMValueRef base = add(cg, mul(cg, plane, pe->H * pe->W), at);
    NnLoop i;
    if (!pe->flat) {
        nn_cg_loop_begin(cg, &i, nn_cg_i64(cg, 0), nn_cg_i64(cg, len), 1);
        LLVMValueRef j = add(cg, at, i.iv);
        idx[2] = LLVMBuildUDiv(cg->b, j, nn_cg_i64(cg, pe->W), "");
        idx[3] = LLVMBuildURem(cg->b, j, nn_cg_i64(cg, pe->W), "");
        nn_expr_at(cg, pe->e, idx);
        LLVMValueRef o = add(cg, base, i.iv);
        LLVMValueRef y = nn_expr_eval(cg, pe->e, 1, 3, NULL, nn_cg_load(cg, p->dt, out, o, 1, NULL));
        nn_cg_store(cg, p->dt, y, out, o, 1, NULL);
        nn_cg_loop_end(cg, &i);
        return;
    }
    int w = p->vw;
    int64_t full = len - len % w;
    for (int tail = 0; tail < 2; tail++) {
        if (tail ? full == len : full == 0)
            continue;
        LLVMValueRef m = tail ? nn_cg_mask(cg, w, (int)(len - full)) : NULL, off;
        if (!tail) {
            nn_cg_loop_begin(cg, &i, nn_cg_i64(cg, 0), nn_cg_i64(cg, full), w);
            off = i.iv;
        } else {
            off = nn_cg_i64(cg, full);
        }
        idx[2] = add(cg, at, off);
        nn_expr_at(cg, pe->e, idx);
        LLVMValueRef o = add(cg, base, off);
        LLVMValueRef y = nn_expr_eval(cg, pe->e, w, 2, m, nn_cg_load(cg, p->dt, out, o, w, m));
        nn_cg_store(cg, p->dt, y, out, o, w, m);
        if (!tail)
            nn_cg_loop_end(cg, &i);
    }
}

// Output row oh of plane `plane` (vectors along the row) from x into y.
static void pool_row(NnCg *cg, Pool *p, bool max, LLVMValueRef x, LLVMValueRef y,
                     LLVMValueRef plane, LLVMValueRef oh)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, p->dt, p->vw);
    p->x = nn_cg_gep(cg, p->dt, x, mul(cg, plane, p->H * p->W));
    LLVMValueRef row = add(cg, mul(cg, plane, p->OH), oh);
    NnLoop c;
    nn_cg_loop_begin(cg, &c, nn_cg_i64(cg, 0), chunks(p, cg), 1);
    LLVMValueRef ow0 = mul(cg, c.iv, p->vw);
    chunk_lanes(cg, p, ow0);
    LLVMValueRef v;
    if (max && pairs(p)) {
        LLVMValueRef cm[2], at;
        v = pair_max(cg, p, oh, ow0, cm, &at);
    } else if (max) {
        max_window(cg, p, oh);
        LLVMTypeRef it = LLVMVectorType(cg->t_i32, (unsigned)p->vw);
        LLVMValueRef some = LLVMBuildICmp(cg->b, LLVMIntSGE, LLVMBuildLoad2(cg->b, it, p->at, ""),
                                          iv32(cg, p, 0), "");
        v = LLVMBuildSelect(cg->b, some, LLVMBuildLoad2(cg->b, vt, p->best, ""),
                            nn_cg_const(cg, p->dt, 0, p->vw), "");
    } else {
        LLVMBuildStore(cg->b, nn_cg_const(cg, p->dt, 0, p->vw), p->sum);
        window(cg, p, oh, sum_point, NULL);
        v = LLVMBuildFDiv(cg->b, LLVMBuildLoad2(cg->b, vt, p->sum, ""),
                          nn_cg_const(cg, p->dt, (double)(p->KH * p->KW), p->vw), "");
    }
    nn_cg_store(cg, p->dt, v, y, add(cg, mul(cg, row, p->OW), ow0), p->vw, p->live);
    nn_cg_loop_end(cg, &c);
}

// Pooling node n reading slot x_slot, into out_slot through epi (or plain).
static bool pool_fwd(NnCg *cg, const NnNode *n, int x_slot, NnExpr *epi, int out_slot)
{
    bool max = n->op == NN_OP_MAX_POOL2D;
    Pool p;
    pool_geom(cg, &p, n, x_slot, out_slot);
    PoolEpi pe = {.e = epi};
    if (epi)
        epi_space(cg, &pe, out_slot);
    nn_cg_kernel_begin(cg, max ? (epi ? "max_pool_fused" : "max_pool")
                               : (epi ? "avg_pool_fused" : "avg_pool"),
                       (double)(p.planes * p.OH * p.OW * p.KH * p.KW));
    pool_state(cg, &p);
    if (epi)
        nn_expr_bind(cg, epi);
    LLVMValueRef x = nn_cg_buf(cg, x_slot), y = nn_cg_buf(cg, out_slot), lo, hi;
    nn_cg_split_v(cg, nn_cg_extent(cg, p.planes * p.OH, p.rt), 1, &lo, &hi);
    NnLoop r;
    nn_cg_loop_begin(cg, &r, lo, hi, 1);
    LLVMValueRef plane = LLVMBuildUDiv(cg->b, r.iv, nn_cg_i64(cg, p.OH), "");
    LLVMValueRef oh = LLVMBuildURem(cg->b, r.iv, nn_cg_i64(cg, p.OH), "");
    pool_row(cg, &p, max, x, y, plane, oh);
    if (epi) // the row is finished and in cache
        run_epi(cg, &p, &pe, y, plane, mul(cg, oh, p.OW), p.OW);
    nn_cg_loop_end(cg, &r);
    nn_cg_kernel_end(cg);
    return true;
}

void nn_cg_pool_rows(NnCg *cg, NnId pool, LLVMValueRef plane, LLVMValueRef oh0, LLVMValueRef oh1)
{
    const NnNode *n = &cg->g->nodes[pool];
    Pool p;
    pool_geom(cg, &p, n, n->in[0], pool);
    pool_state(cg, &p);
    LLVMValueRef x = nn_cg_buf(cg, n->in[0]), y = nn_cg_buf(cg, pool);
    NnLoop r;
    nn_cg_loop_begin(cg, &r, oh0, oh1, 1);
    pool_row(cg, &p, n->op == NN_OP_MAX_POOL2D, x, y, plane, r.iv);
    nn_cg_loop_end(cg, &r);
}

// A pool that rides in its convolution's kernel (nn_fuse_pool_host) was
// computed there.
bool llvm_max_pool2d(NnCg *cg, NnId id)
{
    if (nn_fuse_pool_host(cg->g, id) >= 0)
        return true;
    return pool_fwd(cg, &cg->g->nodes[id], cg->g->nodes[id].in[0], NULL, id);
}
bool llvm_avg_pool2d(NnCg *cg, NnId id)
{
    if (nn_fuse_pool_host(cg->g, id) >= 0)
        return true;
    return pool_fwd(cg, &cg->g->nodes[id], cg->g->nodes[id].in[0], NULL, id);
}

// Zeroes dx[base .. base + len), vectorized.
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
    LLVMValueRef dx, g; // the plane's gradient, the lanes' values to add
} Scatter;

// dx[off] += g on the lanes of m; the lanes' offsets must differ.
static void scatter_add(NnCg *cg, Pool *p, void *ctx, LLVMValueRef off, LLVMValueRef m)
{
    Scatter *s = ctx;
    LLVMValueRef cur = vgather(cg, p, s->dx, off, m);
    vscatter(cg, p, LLVMBuildFAdd(cg->b, cur, s->g, ""), s->dx, off, m);
}

// The same one lane at a time, for offsets that may repeat.
static void scatter_lanes(NnCg *cg, Pool *p, LLVMValueRef dx, LLVMValueRef off, LLVMValueRef m,
                          LLVMValueRef g)
{
    NnLoop l;
    nn_cg_loop_begin(cg, &l, nn_cg_i64(cg, 0), nn_cg_i64(cg, p->vw), 1);
    LLVMValueRef li = LLVMBuildTrunc(cg->b, l.iv, cg->t_i32, "");
    LLVMBasicBlockRef d = if_begin(cg, LLVMBuildExtractElement(cg->b, m, li, ""));
    LLVMValueRef o = LLVMBuildSExt(cg->b, LLVMBuildExtractElement(cg->b, off, li, ""), cg->t_i64, "");
    LLVMValueRef cur = nn_cg_load(cg, p->dt, dx, o, 1, NULL);
    nn_cg_store(cg, p->dt, LLVMBuildFAdd(cg->b, cur, LLVMBuildExtractElement(cg->b, g, li, ""), ""),
                dx, o, 1, NULL);
    if_end(cg, d);
    nn_cg_loop_end(cg, &l);
}

// Gradients: per plane, dx = 0, then every output's dy goes back to its
// window; an epilogue then runs over the finished plane. x_slot is -1 for
// average pooling.
static bool pool_bwd(NnCg *cg, const NnNode *n, int x_slot, int dy, NnExpr *epi, int out_slot)
{
    bool max = n->op == NN_OP_MAX_POOL2D_BWD;
    Pool p;
    pool_geom(cg, &p, n, out_slot, dy);
    PoolEpi pe = {.e = epi};
    if (epi)
        epi_space(cg, &pe, out_slot);
    nn_cg_kernel_begin(cg, max ? (epi ? "max_pool_bwd_fused" : "max_pool_bwd")
                               : (epi ? "avg_pool_bwd_fused" : "avg_pool_bwd"),
                       (double)(p.planes * p.OH * p.OW * p.KH * p.KW));
    pool_state(cg, &p);
    if (epi)
        nn_expr_bind(cg, epi);
    LLVMValueRef x = max ? nn_cg_buf(cg, x_slot) : NULL;
    LLVMValueRef dyp = nn_cg_buf(cg, dy), dx = nn_cg_buf(cg, out_slot), lo, hi;
    LLVMTypeRef it = LLVMVectorType(cg->t_i32, (unsigned)p.vw);
    // Neighbouring lanes' windows are disjoint: their maxima differ.
    bool disjoint = p.sw >= (p.KW - 1) * p.dw + 1;
    nn_cg_split_v(cg, nn_cg_extent(cg, p.planes, p.rt), 1, &lo, &hi);
    NnLoop pl, oh, c;
    nn_cg_loop_begin(cg, &pl, lo, hi, 1);
    LLVMValueRef xb = mul(cg, pl.iv, p.H * p.W);
    // pair_grad writes every element inside windows; the rest are zero.
    bool pair = max && pairs(&p);
    if (!pair || 2 * p.OH < p.H || 2 * p.OW < p.W)
        zero_plane(cg, p.dt, dx, xb, p.H * p.W);
    Scatter s = {.dx = nn_cg_gep(cg, p.dt, dx, xb)};
    if (max)
        p.x = nn_cg_gep(cg, p.dt, x, xb);
    nn_cg_loop_begin(cg, &oh, nn_cg_i64(cg, 0), nn_cg_i64(cg, p.OH), 1);
    nn_cg_loop_begin(cg, &c, nn_cg_i64(cg, 0), chunks(&p, cg), 1);
    LLVMValueRef ow0 = mul(cg, c.iv, p.vw);
    chunk_lanes(cg, &p, ow0);
    LLVMValueRef yoff = add(cg, mul(cg, add(cg, mul(cg, pl.iv, p.OH), oh.iv), p.OW), ow0);
    s.g = nn_cg_load(cg, p.dt, dyp, yoff, p.vw, p.live);
    if (pair) {
        pair_grad(cg, &p, s.dx, oh.iv, ow0, s.g);
    } else if (max) {
        max_window(cg, &p, oh.iv);
        LLVMValueRef at = LLVMBuildLoad2(cg->b, it, p.at, "");
        LLVMValueRef m = LLVMBuildICmp(cg->b, LLVMIntSGE, at, iv32(cg, &p, 0), "");
        if (disjoint)
            scatter_add(cg, &p, &s, at, m);
        else
            scatter_lanes(cg, &p, s.dx, at, m, s.g);
    } else {
        s.g = LLVMBuildFDiv(cg->b, s.g, nn_cg_const(cg, p.dt, (double)(p.KH * p.KW), p.vw), "");
        window(cg, &p, oh.iv, scatter_add, &s);
    }
    nn_cg_loop_end(cg, &c);
    nn_cg_loop_end(cg, &oh);
    if (epi) // the plane is finished and in cache
        run_epi(cg, &p, &pe, dx, pl.iv, nn_cg_i64(cg, 0), p.H * p.W);
    nn_cg_loop_end(cg, &pl);
    nn_cg_kernel_end(cg);
    return true;
}

bool llvm_max_pool2d_bwd(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    return pool_bwd(cg, n, n->in[0], n->in[1], NULL, id);
}
bool llvm_avg_pool2d_bwd(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    return pool_bwd(cg, n, -1, n->in[0], NULL, id);
}

bool nn_cg_emit_pool(NnCg *cg, const NnNode *n, const int *in_slots, NnExpr *epi, int out_slot)
{
    switch (n->op) {
    case NN_OP_MAX_POOL2D:
    case NN_OP_AVG_POOL2D:
        return pool_fwd(cg, n, in_slots[0], epi, out_slot);
    case NN_OP_MAX_POOL2D_BWD:
        return pool_bwd(cg, n, in_slots[0], in_slots[1], epi, out_slot);
    case NN_OP_AVG_POOL2D_BWD:
        return pool_bwd(cg, n, -1, in_slots[0], epi, out_slot);
    default:
        nnrt_fail(NN_ERR_RUNTIME, "jit: %s carries no epilogue", nn_op_name(n->op));
        return false;
    }
}

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
    nn_cg_split_v(cg, nn_cg_extent(cg, rows, nn_cg_rt(cg, cg->g, id)), 1, &lo, &hi);
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
    nn_cg_split_v(cg, nn_cg_extent(cg, rows, nn_cg_rt(cg, cg->g, id)), 1, &lo, &hi);
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
        nn_cg_split_v(cg, nn_cg_extent(cg, rows, nn_cg_rt(cg, cg->g, id)), 1, &lo, &hi);
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
    // A run-time batch is never padded (nn_cg_batch_sym): its rows are all inside.
    bool rt = nn_cg_rt(cg, cg->g, id) && r > 1;
    nn_cg_split_v(cg, nn_cg_extent(cg, rows, rt), 1, &lo, &hi);
    NnLoop i;
    nn_cg_loop_begin(cg, &i, lo, hi, 1);
    LLVMValueRef idx[NN_MAX_RANK];
    nn_cg_decode(cg, i.iv, yd, r - 1, idx);
    LLVMValueRef inside = LLVMConstInt(cg->t_i1, 1, 0), src = nn_cg_i64(cg, 0);
    for (int d = 0; d < r - 1; d++) {
        LLVMValueRef s = addc(cg, idx[d], -n->attr.lo[d]);
        if (!(rt && d == 0))
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
