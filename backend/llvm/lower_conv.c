// CONV2D, CONV2D_BWD_DATA and CONV2D_BWD_FILTER (and FUSED nodes whose body
// is one of them plus an elementwise epilogue) as implicit GEMMs, one per
// image and group: C[M, cols] = A[M, K] B[K, cols], with B never stored whole.
//   forward:     rows f,  K (c,kh,kw), cols output pixels; A = w, B gathered from x
//   data grad:   rows c,  K (f,kh,kw), cols input pixels;  A = w regrouped, B from dy
//   filter grad: rows f,  K output pixels (summed over images), cols (c,kh,kw);
//                A = dy, B gathered from x
// A work item is one panel of NR = 2 vectors of columns (1 when there are few):
// its K x NR slice of B is gathered (masked, zero outside the image or off the
// stride; a masked load where a row is contiguous) into a stack buffer of at
// most CV_KC rows, then MR x NR register tiles (16 accumulators, one FMA per
// broadcast A element) run over it; threads split the items. The filter grad
// sums over images: with few panels, chunks of images sum into partial slices
// that a last kernel adds up. The epilogue is applied at the final store.
// Padding, stride, dilation and groups only change the gather's index maps.
// Two shapes take other routes: a stride-1 data grad whose dy rows are
// shorter than dx's reads dy re-strided to dx's row length (emit_restride),
// and a filter grad with few taps runs over a zero-padded pixel grid with the
// pixels as lanes (emit_grid).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn_llvm.h"
#include "pass.h"

#define CV_ACC 16  // accumulator vectors of a register tile (rows x vectors)
#define CV_KC 256  // rows of B gathered at once: 32 KB, in L1 beside the A rows
#define CV_ITEMS 8 // filter gradient: split images into chunks until this many items
#define CV_FT 6    // grid filter grad: filters x taps of a register tile
#define CV_TT 4
#define CV_GRID_BYTES (128 << 10) // its stack buffers at most
// Work units as in lower_matmul.c: 2^19 FMAs are worth a pool dispatch.
#define CV_WORK(fmas) ((double)(fmas) * (NN_PAR_WORK / (double)(1 << 19)))

typedef enum CvKind { CV_FWD, CV_DATA, CV_FILTER } CvKind;

typedef struct Cv {
    CvKind kind;
    NnDType dt, out_dt;
    int vw, nr; // lanes per vector; columns per panel: nv vectors
    int nv, mr; // vectors per panel row (2, or 1 for few columns); rows per tile
    // Forward geometry: x [N, C, H, W], w [F, Cg, KH, KW], y [N, F, OH, OW].
    int64_t N, C, H, W, F, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl, G, Cg, Fg;
    int64_t M, K, cols, np; // the GEMM of one (image, group); panels of NR columns
    int64_t bw;             // row length of B's source planes: W (forward), else OW or W
    int64_t kc, nkb;        // K block rows, blocks
    int64_t S;              // filter grad: image chunks (partial sums)
    bool rt;                // N is the run-time batch (cg->rt_ref in N)
    // Grid filter grad (emit_grid): rows of wp elements, x and dy planes of
    // px and pd elements (multiples of vw); nfb blocks of CV_FT filters.
    bool grid;
    int64_t wp, px, pd, nfb;
    // Forward with a pool in the kernel (nn_fuse_pool_host): items are bands of
    // rb output rows (whole pooling windows), band = rb * OW columns, nb per
    // image; each item pools its band once the band is stored. Else pool < 0
    // and band = cols.
    NnId pool;
    int64_t rb, band, nb;
    int a_slot, b_slot, c_slot, out_slot;
    int64_t b_off; // elements into b_slot where B's source starts
    NnExpr *epi;   // NULL: plain result
    bool epi_flat; // epi's iteration space is [N, F', pixels] (else per element, rank 4)
    // Kernel state.
    LLVMValueRef a, b, c, pk, tbuf;
    LLVMValueRef acc[CV_ACC][2];
    LLVMValueRef mask[2]; // live columns of the current panel, NULL when all are
    LLVMValueRef abase, cbase; // element offsets of the (image, group) in A and C
    LLVMValueRef n, g;         // current image, group (for the epilogue)
    LLVMValueRef lv[2][4];     // per-lane index vectors of the panel (gather)
    LLVMValueRef live[2];      // lanes inside the columns
    LLVMValueRef jend;         // end of the current item's columns (i64)
} Cv;

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
static LLVMValueRef imin(NnCg *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, ""), a, b, "");
}

// ---- i32 lane vectors for the gathers ----

static LLVMValueRef v32(NnCg *cg, const Cv *v, int64_t c)
{
    return nn_cg_splat(cg, nn_cg_i32(cg, (int32_t)c), v->vw);
}
static LLVMValueRef vs32(NnCg *cg, const Cv *v, LLVMValueRef s64)
{
    return nn_cg_splat(cg, LLVMBuildTrunc(cg->b, s64, cg->t_i32, ""), v->vw);
}
static LLVMValueRef in_range(NnCg *cg, const Cv *v, LLVMValueRef x, int64_t hi)
{
    return LLVMBuildICmp(cg->b, LLVMIntULT, x, v32(cg, v, hi), "");
}

// The panel's column numbers j0 + lane for vector q, and their index maps.
static void lanes(NnCg *cg, Cv *v, LLVMValueRef j0)
{
    for (int q = 0; q < v->nv; q++) {
        LLVMValueRef l[64];
        for (int i = 0; i < v->vw; i++)
            l[i] = nn_cg_i32(cg, q * v->vw + i);
        LLVMValueRef j =
            LLVMBuildAdd(cg->b, vs32(cg, v, j0), LLVMConstVector(l, (unsigned)v->vw), "");
        v->live[q] = LLVMBuildICmp(cg->b, LLVMIntULT, j, vs32(cg, v, v->jend), "");
        if (v->kind == CV_FWD) { // j = output pixel: top-left input row/col of its window
            LLVMValueRef oh = LLVMBuildUDiv(cg->b, j, v32(cg, v, v->OW), "");
            LLVMValueRef ow = LLVMBuildURem(cg->b, j, v32(cg, v, v->OW), "");
            v->lv[q][0] = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, oh, v32(cg, v, v->sh), ""),
                                       v32(cg, v, v->pt), "");
            v->lv[q][1] = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, ow, v32(cg, v, v->sw), ""),
                                       v32(cg, v, v->pl), "");
        } else if (v->kind == CV_DATA) { // j = input pixel, shifted by the padding
            v->lv[q][0] = LLVMBuildAdd(cg->b, LLVMBuildUDiv(cg->b, j, v32(cg, v, v->W), ""),
                                       v32(cg, v, v->pt), "");
            v->lv[q][1] = LLVMBuildAdd(cg->b, LLVMBuildURem(cg->b, j, v32(cg, v, v->W), ""),
                                       v32(cg, v, v->pl), "");
        } else { // j = (c, kh, kw): channel plane offset and window offsets
            int64_t kk = v->KH * v->KW;
            LLVMValueRef c = LLVMBuildUDiv(cg->b, j, v32(cg, v, kk), "");
            LLVMValueRef r = LLVMBuildURem(cg->b, j, v32(cg, v, kk), "");
            LLVMValueRef kh = LLVMBuildUDiv(cg->b, r, v32(cg, v, v->KW), "");
            LLVMValueRef kw = LLVMBuildURem(cg->b, r, v32(cg, v, v->KW), "");
            v->lv[q][0] = LLVMBuildMul(cg->b, c, v32(cg, v, v->H * v->W), "");
            v->lv[q][1] = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, kh, v32(cg, v, v->dh), ""),
                                       v32(cg, v, v->pt), "");
            v->lv[q][2] = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, kw, v32(cg, v, v->dw), ""),
                                       v32(cg, v, v->pl), "");
        }
    }
}

// Masked gather of base[off] (i32 lane offsets), zero where masked off.
// Masked-off lanes read nothing, so their offsets need no clamping.
static LLVMValueRef gather(NnCg *cg, const Cv *v, LLVMValueRef base, LLVMValueRef off,
                           LLVMValueRef m)
{
    LLVMTypeRef et = nn_cg_type(cg, v->dt), vt = nn_cg_vtype(cg, v->dt, v->vw);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, et, base, &off, 1, "");
    LLVMTypeRef ovl[2] = {vt, LLVMTypeOf(p)};
    LLVMValueRef args[4] = {p, nn_cg_i32(cg, (int32_t)nnrt_dtype_size(v->dt)), m,
                            LLVMConstNull(vt)};
    return nn_cg_intrinsic(cg, "llvm.masked.gather", ovl, 2, args, 4);
}

// base[off .. off + vw) on the lanes of m. Masked-off lanes are not read, and
// may lie outside the tensor: the address is formed without inbounds.
static LLVMValueRef masked_run(NnCg *cg, const Cv *v, LLVMValueRef base, LLVMValueRef off,
                               LLVMValueRef m)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, v->dt, v->vw);
    LLVMValueRef p = LLVMBuildGEP2(cg->b, nn_cg_type(cg, v->dt), base, &off, 1, "");
    LLVMTypeRef ovl[2] = {vt, cg->t_ptr};
    LLVMValueRef args[4] = {p, nn_cg_i32(cg, (int32_t)nnrt_dtype_size(v->dt)), m,
                            LLVMConstNull(vt)};
    return nn_cg_intrinsic(cg, "llvm.masked.load", ovl, 2, args, 4);
}

static LLVMValueRef and3(NnCg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    return LLVMBuildAnd(cg->b, a, LLVMBuildAnd(cg->b, b, c, ""), "");
}

// Forward and data grad: the in-plane offsets and mask of vector q for window
// position (kh, kw); every channel's row of B shares them.
static void plane_index(NnCg *cg, Cv *v, LLVMValueRef kh, LLVMValueRef kw, int q,
                        LLVMValueRef *off, LLVMValueRef *m)
{
    LLVMValueRef dh = vs32(cg, v, mul(cg, kh, v->dh)), dw = vs32(cg, v, mul(cg, kw, v->dw));
    if (v->kind == CV_FWD) {
        LLVMValueRef h = LLVMBuildAdd(cg->b, v->lv[q][0], dh, "");
        LLVMValueRef w = LLVMBuildAdd(cg->b, v->lv[q][1], dw, "");
        *m = and3(cg, v->live[q], in_range(cg, v, h, v->H), in_range(cg, v, w, v->W));
        *off = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, h, v32(cg, v, v->W), ""), w, "");
        return;
    }
    // Output row oh feeds input row h when oh*sh = h + pt - kh*dh.
    LLVMValueRef th = LLVMBuildSub(cg->b, v->lv[q][0], dh, "");
    LLVMValueRef tw = LLVMBuildSub(cg->b, v->lv[q][1], dw, "");
    LLVMValueRef ok = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, th, v32(cg, v, 0), ""),
                                   LLVMBuildICmp(cg->b, LLVMIntSGE, tw, v32(cg, v, 0), ""), "");
    ok = LLVMBuildAnd(cg->b, ok, v->live[q], "");
    if (v->sh > 1) {
        LLVMValueRef rem = LLVMBuildSRem(cg->b, th, v32(cg, v, v->sh), "");
        ok = LLVMBuildAnd(cg->b, ok, LLVMBuildICmp(cg->b, LLVMIntEQ, rem, v32(cg, v, 0), ""), "");
        th = LLVMBuildSDiv(cg->b, th, v32(cg, v, v->sh), "");
    }
    if (v->sw > 1) {
        LLVMValueRef rem = LLVMBuildSRem(cg->b, tw, v32(cg, v, v->sw), "");
        ok = LLVMBuildAnd(cg->b, ok, LLVMBuildICmp(cg->b, LLVMIntEQ, rem, v32(cg, v, 0), ""), "");
        tw = LLVMBuildSDiv(cg->b, tw, v32(cg, v, v->sw), "");
    }
    *m = and3(cg, ok, in_range(cg, v, th, v->OH), in_range(cg, v, tw, v->OW));
    *off = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, th, v32(cg, v, v->bw), ""), tw, "");
}

// pk[(k - k0) * NR + j] = B[k, j0 + j] for k in [k0, k0 + kn). Forward and
// data grad: k = (channel, kh, kw) and blocks hold whole channels, so the
// index maps are made once per window position and reused down the channels;
// a row is a masked load where it is contiguous, else a gather.
static void pack(NnCg *cg, Cv *v, LLVMValueRef src, LLVMValueRef k0, LLVMValueRef kn)
{
    if (v->kind != CV_FILTER) {
        int64_t kk = v->KH * v->KW;
        int64_t plane = v->kind == CV_FWD ? v->H * v->W : v->OH * v->bw;
        // Stride 1 with the columns' rows as long as the source's ("same"
        // padding, or the data grad's dy re-strided to rows of W): a window
        // position shifts the whole pixel index by a constant, so a row of B
        // is a contiguous run of the plane, a masked load.
        bool contig = v->sh == 1 && v->sw == 1 && (v->kind == CV_FWD ? v->OW : v->W) == v->bw;
        LLVMValueRef ch0 = LLVMBuildUDiv(cg->b, k0, nn_cg_i64(cg, kk), "");
        LLVMValueRef nch = LLVMBuildUDiv(cg->b, kn, nn_cg_i64(cg, kk), "");
        LLVMValueRef base = nn_cg_gep(cg, v->dt, src, mul(cg, ch0, plane));
        NnLoop p, c;
        nn_cg_loop_begin(cg, &p, nn_cg_i64(cg, 0), nn_cg_i64(cg, kk), 1);
        LLVMValueRef kh = LLVMBuildUDiv(cg->b, p.iv, nn_cg_i64(cg, v->KW), "");
        LLVMValueRef kw = LLVMBuildURem(cg->b, p.iv, nn_cg_i64(cg, v->KW), "");
        LLVMValueRef off[2], m[2], off0[2];
        for (int q = 0; q < v->nv; q++) {
            plane_index(cg, v, kh, kw, q, &off[q], &m[q]);
            off0[q] = LLVMBuildSExt(
                cg->b, LLVMBuildExtractElement(cg->b, off[q], nn_cg_i32(cg, 0), ""), cg->t_i64, "");
        }
        nn_cg_loop_begin(cg, &c, nn_cg_i64(cg, 0), nch, 1);
        // The channel goes into the 32-bit lane offsets, not the base: offsets
        // computed in the loop keep the gather's indices 32-bit (vgatherdps).
        LLVMValueRef cofs = vs32(cg, v, mul(cg, c.iv, plane));
        LLVMValueRef row = mul(cg, add(cg, mul(cg, c.iv, kk), p.iv), v->nr);
        for (int q = 0; q < v->nv; q++) {
            LLVMValueRef x;
            if (contig) {
                LLVMValueRef o = add(cg, off0[q], mul(cg, c.iv, plane));
                x = masked_run(cg, v, base, o, m[q]);
            } else {
                LLVMValueRef o = LLVMBuildNSWAdd(cg->b, off[q], cofs, "");
                x = gather(cg, v, base, o, m[q]);
            }
            nn_cg_store(cg, v->dt, x, v->pk, addc(cg, row, (int64_t)q * v->vw), v->vw, NULL);
        }
        nn_cg_loop_end(cg, &c);
        nn_cg_loop_end(cg, &p);
        return;
    }
    // Filter grad: k is an output pixel (oh, ow); lanes are (c, kh, kw).
    NnLoop k;
    nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), kn, 1);
    LLVMValueRef kk = add(cg, k0, k.iv);
    LLVMValueRef oh = LLVMBuildUDiv(cg->b, kk, nn_cg_i64(cg, v->OW), "");
    LLVMValueRef ow = LLVMBuildURem(cg->b, kk, nn_cg_i64(cg, v->OW), "");
    LLVMValueRef hs = vs32(cg, v, mul(cg, oh, v->sh)), ws = vs32(cg, v, mul(cg, ow, v->sw));
    for (int q = 0; q < v->nv; q++) {
        LLVMValueRef h = LLVMBuildAdd(cg->b, v->lv[q][1], hs, "");
        LLVMValueRef w = LLVMBuildAdd(cg->b, v->lv[q][2], ws, "");
        LLVMValueRef m = and3(cg, v->live[q], in_range(cg, v, h, v->H), in_range(cg, v, w, v->W));
        LLVMValueRef off = LLVMBuildAdd(
            cg->b, v->lv[q][0],
            LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, h, v32(cg, v, v->W), ""), w, ""), "");
        nn_cg_store(cg, v->dt, gather(cg, v, src, off, m), v->pk,
                    addc(cg, mul(cg, k.iv, v->nr), (int64_t)q * v->vw), v->vw, NULL);
    }
    nn_cg_loop_end(cg, &k);
}

// ---- the register tile ----

// Element offset in C (and index for the epilogue) of row i, column j.
static LLVMValueRef c_off(NnCg *cg, const Cv *v, LLVMValueRef i, LLVMValueRef j)
{
    return add(cg, add(cg, v->cbase, mul(cg, i, v->cols)), j);
}

// Epilogue on x (w lanes along columns, or w == 1) at row i, column j of the
// current (image, group). Its iteration space is the output's dims with the
// pixel (or (c, kh, kw)) dims merged when epi_flat, else the output's own.
static LLVMValueRef epilogue(NnCg *cg, Cv *v, LLVMValueRef i, LLVMValueRef j, LLVMValueRef x,
                             int w, LLVMValueRef mask)
{
    LLVMValueRef row = add(cg, mul(cg, v->g, v->M), i); // channel of the full output
    LLVMValueRef idx[4];
    int r = 0;
    if (v->kind != CV_FILTER)
        idx[r++] = v->n;
    idx[r++] = row;
    if (v->epi_flat) {
        idx[r++] = j;
    } else if (v->kind == CV_FILTER) {
        int64_t kk = v->KH * v->KW;
        LLVMValueRef rem = LLVMBuildURem(cg->b, j, nn_cg_i64(cg, kk), "");
        idx[r++] = LLVMBuildUDiv(cg->b, j, nn_cg_i64(cg, kk), "");
        idx[r++] = LLVMBuildUDiv(cg->b, rem, nn_cg_i64(cg, v->KW), "");
        idx[r++] = LLVMBuildURem(cg->b, rem, nn_cg_i64(cg, v->KW), "");
    } else {
        int64_t wd = v->kind == CV_FWD ? v->OW : v->W;
        idx[r++] = LLVMBuildUDiv(cg->b, j, nn_cg_i64(cg, wd), "");
        idx[r++] = LLVMBuildURem(cg->b, j, nn_cg_i64(cg, wd), "");
    }
    nn_expr_at(cg, v->epi, idx);
    return nn_expr_eval(cg, v->epi, w, r - 1, w > 1 ? mask : NULL, x);
}

static void tile_store(NnCg *cg, Cv *v, LLVMValueRef i0, LLVMValueRef j0, int rows, bool final)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, v->dt, v->vw);
    if (!(final && v->epi)) {
        for (int r = 0; r < rows; r++)
            for (int q = 0; q < v->nv; q++) {
                LLVMValueRef x = LLVMBuildLoad2(cg->b, vt, v->acc[r][q], "");
                LLVMValueRef off =
                    c_off(cg, v, addc(cg, i0, r), addc(cg, j0, (int64_t)q * v->vw));
                nn_cg_store(cg, v->dt, x, v->c, off, v->vw, v->mask[q]);
            }
        return;
    }
    // Through the stack and one loop: one copy of the epilogue, not 2*MR.
    for (int q = 0; q < v->nv * rows; q++) {
        LLVMValueRef qi = nn_cg_i64(cg, q);
        LLVMValueRef slot = LLVMBuildInBoundsGEP2(cg->b, vt, v->tbuf, &qi, 1, "");
        LLVMBuildStore(cg->b, LLVMBuildLoad2(cg->b, vt, v->acc[q / v->nv][q % v->nv], ""), slot);
    }
    NnLoop l;
    nn_cg_loop_begin(cg, &l, nn_cg_i64(cg, 0), nn_cg_i64(cg, v->nv * rows), 1);
    LLVMValueRef r = LLVMBuildUDiv(cg->b, l.iv, nn_cg_i64(cg, v->nv), "");
    LLVMValueRef q = LLVMBuildURem(cg->b, l.iv, nn_cg_i64(cg, v->nv), "");
    LLVMValueRef i = add(cg, i0, r), j = add(cg, j0, mul(cg, q, v->vw));
    LLVMValueRef slot = LLVMBuildInBoundsGEP2(cg->b, vt, v->tbuf, &l.iv, 1, "");
    LLVMValueRef mask = v->nv == 1 ? v->mask[0] : NULL;
    if (v->nv == 2 && v->mask[0]) {
        LLVMValueRef second = LLVMBuildICmp(cg->b, LLVMIntNE, q, nn_cg_i64(cg, 0), "");
        mask = LLVMBuildSelect(cg->b, second, v->mask[1], v->mask[0], "");
    }
    if (v->epi_flat) {
        LLVMValueRef x = epilogue(cg, v, i, j, LLVMBuildLoad2(cg->b, vt, slot, ""), v->vw, mask);
        nn_cg_store(cg, v->out_dt, x, v->c, c_off(cg, v, i, j), v->vw, mask);
    } else {
        // Leaves that a pixel row cannot walk with unit stride: one lane at a time.
        LLVMTypeRef et = nn_cg_type(cg, v->dt);
        NnLoop e;
        LLVMValueRef n = imin(cg, nn_cg_i64(cg, v->vw), LLVMBuildSub(cg->b, v->jend, j, ""));
        nn_cg_loop_begin(cg, &e, nn_cg_i64(cg, 0), n, 1);
        LLVMValueRef ep = LLVMBuildInBoundsGEP2(cg->b, et, slot, &e.iv, 1, "");
        LLVMValueRef je = add(cg, j, e.iv);
        LLVMValueRef x = epilogue(cg, v, i, je, LLVMBuildLoad2(cg->b, et, ep, ""), 1, NULL);
        nn_cg_store(cg, v->out_dt, x, v->c, c_off(cg, v, i, je), 1, NULL);
        nn_cg_loop_end(cg, &e);
    }
    nn_cg_loop_end(cg, &l);
}

// rows x NR of C (+)= A[i0.., k0..k0+kn) pk. `first`: start from zero, else
// from C; `last`: the final store (epilogue). Both i1 values, or NULL for true.
static void tile(NnCg *cg, Cv *v, LLVMValueRef i0, LLVMValueRef j0, LLVMValueRef k0,
                 LLVMValueRef kn, int rows, LLVMValueRef first, LLVMValueRef last)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, v->dt, v->vw);
    LLVMBasicBlockRef kb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "kloop");
    LLVMBasicBlockRef zb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "zero");
    LLVMBasicBlockRef lb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "reload");
    LLVMBuildCondBr(cg->b, first ? first : LLVMConstInt(cg->t_i1, 1, 0), zb, lb);
    LLVMPositionBuilderAtEnd(cg->b, zb);
    for (int r = 0; r < rows; r++)
        for (int q = 0; q < v->nv; q++)
            LLVMBuildStore(cg->b, LLVMConstNull(vt), v->acc[r][q]);
    LLVMBuildBr(cg->b, kb);
    LLVMPositionBuilderAtEnd(cg->b, lb);
    for (int r = 0; r < rows; r++)
        for (int q = 0; q < v->nv; q++) {
            LLVMValueRef off = c_off(cg, v, addc(cg, i0, r), addc(cg, j0, (int64_t)q * v->vw));
            LLVMBuildStore(cg->b, nn_cg_load(cg, v->dt, v->c, off, v->vw, v->mask[q]),
                           v->acc[r][q]);
        }
    LLVMBuildBr(cg->b, kb);
    LLVMPositionBuilderAtEnd(cg->b, kb);

    NnLoop k;
    nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), kn, 1);
    LLVMValueRef bv[2];
    for (int q = 0; q < v->nv; q++) {
        bv[q] = nn_cg_load(cg, v->dt, v->pk, addc(cg, mul(cg, k.iv, v->nr), (int64_t)q * v->vw),
                           v->vw, NULL);
        LLVMSetAlignment(bv[q], 64);
    }
    LLVMValueRef ak = add(cg, add(cg, v->abase, k0), k.iv);
    for (int r = 0; r < rows; r++) {
        LLVMValueRef aoff = add(cg, ak, mul(cg, addc(cg, i0, r), v->K));
        LLVMValueRef s = nn_cg_splat(cg, nn_cg_load(cg, v->dt, v->a, aoff, 1, NULL), v->vw);
        for (int q = 0; q < v->nv; q++) {
            LLVMValueRef args[3] = {s, bv[q], LLVMBuildLoad2(cg->b, vt, v->acc[r][q], "")};
            LLVMBuildStore(cg->b, nn_cg_intrinsic(cg, "llvm.fma", &vt, 1, args, 3), v->acc[r][q]);
        }
    }
    k.unroll = true;
    nn_cg_loop_end(cg, &k);

    if (!last) {
        tile_store(cg, v, i0, j0, rows, true);
        return;
    }
    LLVMBasicBlockRef fb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "final");
    LLVMBasicBlockRef pb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "partial");
    LLVMBasicBlockRef db = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "stored");
    LLVMBuildCondBr(cg->b, last, fb, pb);
    LLVMPositionBuilderAtEnd(cg->b, fb);
    tile_store(cg, v, i0, j0, rows, true);
    LLVMBuildBr(cg->b, db);
    LLVMPositionBuilderAtEnd(cg->b, pb);
    tile_store(cg, v, i0, j0, rows, false);
    LLVMBuildBr(cg->b, db);
    LLVMPositionBuilderAtEnd(cg->b, db);
}

// Every row tile of the current panel for rows of B [k0, k0 + kn).
static void row_tiles(NnCg *cg, Cv *v, LLVMValueRef j0, LLVMValueRef k0, LLVMValueRef kn,
                      LLVMValueRef first, LLVMValueRef last)
{
    int64_t full = v->M / v->mr;
    int rem = (int)(v->M % v->mr);
    if (full > 0) {
        NnLoop t;
        nn_cg_loop_begin(cg, &t, nn_cg_i64(cg, 0), nn_cg_i64(cg, full), 1);
        tile(cg, v, mul(cg, t.iv, v->mr), j0, k0, kn, v->mr, first, last);
        nn_cg_loop_end(cg, &t);
    }
    if (rem)
        tile(cg, v, nn_cg_i64(cg, full * v->mr), j0, k0, kn, rem, first, last);
}

static void kernel_state(NnCg *cg, Cv *v)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, v->dt, v->vw);
    for (int r = 0; r < v->mr; r++)
        for (int q = 0; q < v->nv; q++)
            v->acc[r][q] = nn_cg_alloca(cg, vt);
    v->tbuf = nn_cg_alloca(cg, LLVMArrayType2(vt, CV_ACC));
    LLVMSetAlignment(v->tbuf, 64);
    v->pk = nn_cg_alloca(cg, LLVMArrayType2(nn_cg_type(cg, v->dt), (uint64_t)(v->kc * v->nr)));
    LLVMSetAlignment(v->pk, 64);
    v->a = nn_cg_buf(cg, v->a_slot);
    v->b = nn_cg_gep(cg, v->dt, nn_cg_buf(cg, v->b_slot), nn_cg_i64(cg, v->b_off));
    v->c = nn_cg_buf(cg, v->c_slot);
    if (v->epi)
        nn_expr_bind(cg, v->epi);
}

// Columns of the panel at j0 that exist (before jend, which is the end of
// the columns unless set by the caller).
static void panel_masks(NnCg *cg, Cv *v, LLVMValueRef j0, LLVMValueRef jend)
{
    v->jend = jend ? jend : nn_cg_i64(cg, v->cols);
    lanes(cg, v, j0);
    bool ragged = v->band % v->nr || v->cols % v->band;
    for (int q = 0; q < v->nv; q++)
        v->mask[q] = ragged ? v->live[q] : NULL;
}

// The panel of columns [j0, j0 + NR) of the current (image, group) over all of K.
static void panel(NnCg *cg, Cv *v, LLVMValueRef src, LLVMValueRef j0, LLVMValueRef jend)
{
    NnLoop kb;
    panel_masks(cg, v, j0, jend);
    nn_cg_loop_begin(cg, &kb, nn_cg_i64(cg, 0), nn_cg_i64(cg, v->nkb), 1);
    LLVMValueRef k0 = mul(cg, kb.iv, v->kc);
    LLVMValueRef kn = imin(cg, nn_cg_i64(cg, v->kc), LLVMBuildSub(cg->b, nn_cg_i64(cg, v->K), k0, ""));
    pack(cg, v, src, k0, kn);
    LLVMValueRef first = NULL, last = NULL;
    if (v->nkb > 1) {
        first = LLVMBuildICmp(cg->b, LLVMIntEQ, kb.iv, nn_cg_i64(cg, 0), "");
        last = LLVMBuildICmp(cg->b, LLVMIntEQ, kb.iv, nn_cg_i64(cg, v->nkb - 1), "");
    }
    row_tiles(cg, v, j0, k0, kn, first, last);
    nn_cg_loop_end(cg, &kb);
}

// Forward and data grad: items (image, group, panel), each over all of K; or
// with a pool, items (image, group, band): the band's panels, then its pooling
// windows, read back from cache.
static void emit_direct(NnCg *cg, Cv *v)
{
    int64_t fmas = v->N * v->G * v->M * v->K * v->cols;
    const char *name = v->kind == CV_FWD ? (v->pool >= 0 ? "conv_pool_fused"
                                            : v->epi ? "conv_fused" : "conv")
                                         : (v->epi ? "conv_bwd_data_fused" : "conv_bwd_data");
    nn_cg_kernel_begin(cg, name, CV_WORK(fmas));
    kernel_state(cg, v);
    int64_t per = v->pool >= 0 ? v->nb : v->np; // items per (image, group)
    int64_t gp = v->G * per;
    LLVMValueRef lo, hi;
    nn_cg_split_v(cg, nn_cg_extent(cg, v->N * gp, v->rt), 1, &lo, &hi);
    NnLoop it;
    nn_cg_loop_begin(cg, &it, lo, hi, 1);
    v->n = LLVMBuildUDiv(cg->b, it.iv, nn_cg_i64(cg, gp), "");
    LLVMValueRef r = LLVMBuildURem(cg->b, it.iv, nn_cg_i64(cg, gp), "");
    v->g = LLVMBuildUDiv(cg->b, r, nn_cg_i64(cg, per), "");
    LLVMValueRef u = LLVMBuildURem(cg->b, r, nn_cg_i64(cg, per), "");
    // C rows: channels g*M.. of image n; B source: group g's planes of image n.
    int64_t cplanes = v->kind == CV_FWD ? v->F : v->C;
    int64_t bplanes = v->kind == CV_FWD ? v->C : v->F;
    int64_t bgroup = v->kind == CV_FWD ? v->Cg : v->Fg;
    int64_t bpix = v->kind == CV_FWD ? v->H * v->W : v->OH * v->bw;
    v->cbase = mul(cg, add(cg, mul(cg, v->n, cplanes), mul(cg, v->g, v->M)), v->cols);
    v->abase = mul(cg, v->g, v->M * v->K);
    LLVMValueRef src = nn_cg_gep(
        cg, v->dt, v->b, mul(cg, add(cg, mul(cg, v->n, bplanes), mul(cg, v->g, bgroup)), bpix));
    if (v->pool < 0) {
        panel(cg, v, src, mul(cg, u, v->nr), NULL);
    } else {
        LLVMValueRef jb = mul(cg, u, v->band);
        LLVMValueRef jend = imin(cg, addc(cg, jb, v->band), nn_cg_i64(cg, v->cols));
        LLVMValueRef npan = LLVMBuildUDiv(
            cg->b, addc(cg, LLVMBuildSub(cg->b, jend, jb, ""), v->nr - 1), nn_cg_i64(cg, v->nr), "");
        NnLoop pn, ch;
        nn_cg_loop_begin(cg, &pn, nn_cg_i64(cg, 0), npan, 1);
        panel(cg, v, src, add(cg, jb, mul(cg, pn.iv, v->nr)), jend);
        nn_cg_loop_end(cg, &pn);
        // The band's pooling windows: output rows [u * rb/KH, ..) of each channel.
        const NnNode *pn_node = &cg->g->nodes[v->pool];
        int64_t kh = pn_node->attr.conv.kernel[0], pd[NN_MAX_RANK];
        int pr;
        nn_cg_shape(cg, cg->g, v->pool, &pr, pd);
        LLVMValueRef ph0 = mul(cg, u, v->rb / kh);
        LLVMValueRef ph1 = imin(cg, addc(cg, ph0, v->rb / kh), nn_cg_i64(cg, pd[2]));
        nn_cg_loop_begin(cg, &ch, nn_cg_i64(cg, 0), nn_cg_i64(cg, v->M), 1);
        LLVMValueRef plane = add(cg, mul(cg, v->n, v->F), add(cg, mul(cg, v->g, v->M), ch.iv));
        nn_cg_pool_rows(cg, v->pool, plane, ph0, ph1);
        nn_cg_loop_end(cg, &ch);
    }
    nn_cg_loop_end(cg, &it);
    nn_cg_kernel_end(cg);
}

// Images per chunk of the filter grad with a run-time batch: ceil(N / S), at least 1.
static LLVMValueRef chunk_images(NnCg *cg, const Cv *v)
{
    LLVMValueRef nv = nn_cg_extent(cg, v->N, true);
    LLVMValueRef per = LLVMBuildSDiv(cg->b, addc(cg, nv, v->S - 1), nn_cg_i64(cg, v->S), "");
    return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, per, nn_cg_i64(cg, 0), ""), per,
                           nn_cg_i64(cg, 1), "");
}

// Filter grad: items (image chunk, group, panel); each sums its chunk's images
// into slice s of the partial sums (or the output, when there is one chunk).
static void emit_filter(NnCg *cg, Cv *v)
{
    int64_t fmas = v->N * v->G * v->M * v->K * v->cols;
    nn_cg_kernel_begin(cg, v->S == 1 && v->epi ? "conv_bwd_filter_fused" : "conv_bwd_filter",
                       CV_WORK(fmas));
    kernel_state(cg, v);
    int64_t gp = v->G * v->np;
    LLVMValueRef lo, hi;
    nn_cg_split(cg, v->S * gp, 1, &lo, &hi);
    NnLoop it, n, kb;
    nn_cg_loop_begin(cg, &it, lo, hi, 1);
    LLVMValueRef s = LLVMBuildUDiv(cg->b, it.iv, nn_cg_i64(cg, gp), "");
    LLVMValueRef r = LLVMBuildURem(cg->b, it.iv, nn_cg_i64(cg, gp), "");
    v->g = LLVMBuildUDiv(cg->b, r, nn_cg_i64(cg, v->np), "");
    LLVMValueRef j0 = mul(cg, LLVMBuildURem(cg->b, r, nn_cg_i64(cg, v->np), ""), v->nr);
    LLVMValueRef n0, n1;
    if (v->rt) {
        // Chunks of ceil(N / S) images: with fewer images than chunks only
        // the last ones are empty (emit_filter_sum sums the others).
        LLVMValueRef nv = nn_cg_extent(cg, v->N, true), per = chunk_images(cg, v);
        n0 = imin(cg, LLVMBuildNSWMul(cg->b, s, per, ""), nv);
        n1 = imin(cg, LLVMBuildNSWMul(cg->b, addc(cg, s, 1), per, ""), nv);
    } else {
        n0 = LLVMBuildSDiv(cg->b, mul(cg, s, v->N), nn_cg_i64(cg, v->S), "");
        n1 = LLVMBuildSDiv(cg->b, mul(cg, addc(cg, s, 1), v->N), nn_cg_i64(cg, v->S), "");
    }
    v->cbase = mul(cg, add(cg, mul(cg, s, v->F), mul(cg, v->g, v->M)), v->cols);
    v->n = nn_cg_i64(cg, 0);
    panel_masks(cg, v, j0, NULL);
    nn_cg_loop_begin(cg, &n, n0, n1, 1);
    v->abase = mul(cg, add(cg, mul(cg, n.iv, v->F), mul(cg, v->g, v->M)), v->K);
    LLVMValueRef src =
        nn_cg_gep(cg, v->dt, v->b, mul(cg, add(cg, mul(cg, n.iv, v->C), mul(cg, v->g, v->Cg)),
                                       v->H * v->W));
    nn_cg_loop_begin(cg, &kb, nn_cg_i64(cg, 0), nn_cg_i64(cg, v->nkb), 1);
    LLVMValueRef k0 = mul(cg, kb.iv, v->kc);
    LLVMValueRef kn = imin(cg, nn_cg_i64(cg, v->kc), LLVMBuildSub(cg->b, nn_cg_i64(cg, v->K), k0, ""));
    pack(cg, v, src, k0, kn);
    LLVMValueRef first = LLVMBuildAnd(
        cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, n.iv, n0, ""),
        LLVMBuildICmp(cg->b, LLVMIntEQ, kb.iv, nn_cg_i64(cg, 0), ""), "");
    LLVMValueRef last = LLVMBuildAnd(
        cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, n.iv, addc(cg, n1, -1), ""),
        LLVMBuildICmp(cg->b, LLVMIntEQ, kb.iv, nn_cg_i64(cg, v->nkb - 1), ""), "");
    row_tiles(cg, v, j0, k0, kn, first, last);
    nn_cg_loop_end(cg, &kb);
    nn_cg_loop_end(cg, &n);
    nn_cg_loop_end(cg, &it);
    nn_cg_kernel_end(cg);
}

// out = epi(sum of the S partial slices), vectors along a row of the output
// (single elements when the epilogue cannot take vectors there).
static void emit_filter_sum(NnCg *cg, Cv *v)
{
    int64_t total = v->F * v->cols;
    int w = v->epi && !v->epi_flat ? 1 : v->vw;
    LLVMTypeRef vt = nn_cg_vtype(cg, v->dt, w);
    nn_cg_kernel_begin(cg, v->epi ? "conv_wsum_fused" : "conv_wsum", (double)(total * v->S));
    LLVMValueRef part = nn_cg_buf(cg, v->c_slot), out = nn_cg_buf(cg, v->out_slot);
    LLVMValueRef acc = nn_cg_alloca(cg, vt);
    if (v->epi)
        nn_expr_bind(cg, v->epi);
    v->g = nn_cg_i64(cg, 0); // rows are channels of the whole output
    // The slices written: all S, or with a run-time batch ceil(N / per).
    LLVMValueRef nslices = nn_cg_i64(cg, v->S);
    if (v->rt) {
        LLVMValueRef per = chunk_images(cg, v);
        nslices = LLVMBuildSDiv(cg->b, LLVMBuildSub(cg->b, add(cg, nn_cg_extent(cg, v->N, true), per),
                                                    nn_cg_i64(cg, 1), ""),
                                per, "");
    }
    LLVMValueRef lo, hi;
    nn_cg_split(cg, v->F, 1, &lo, &hi);
    NnLoop f, j, s;
    nn_cg_loop_begin(cg, &f, lo, hi, 1);
    int64_t jfull = v->cols - v->cols % w;
    for (int tail = 0; tail < 2; tail++) {
        int64_t j_lo = tail ? jfull : 0, j_hi = tail ? v->cols : jfull;
        if (j_lo == j_hi)
            continue;
        LLVMValueRef mask = tail ? nn_cg_mask(cg, w, (int)(v->cols - jfull)) : NULL;
        nn_cg_loop_begin(cg, &j, nn_cg_i64(cg, j_lo), nn_cg_i64(cg, j_hi), tail ? j_hi - j_lo : w);
        LLVMValueRef off = add(cg, mul(cg, f.iv, v->cols), j.iv);
        LLVMBuildStore(cg->b, nn_cg_const(cg, v->dt, 0, w), acc);
        nn_cg_loop_begin(cg, &s, nn_cg_i64(cg, 0), nslices, 1);
        LLVMValueRef x = nn_cg_load(cg, v->dt, part, add(cg, mul(cg, s.iv, total), off), w, mask);
        LLVMValueRef sum = LLVMBuildLoad2(cg->b, vt, acc, "");
        LLVMBuildStore(cg->b, nn_cg_binop(cg, NN_OP_ADD, v->dt, sum, x), acc);
        nn_cg_loop_end(cg, &s);
        LLVMValueRef y = LLVMBuildLoad2(cg->b, vt, acc, "");
        if (v->epi)
            y = epilogue(cg, v, f.iv, j.iv, y, w, mask);
        nn_cg_store(cg, v->out_dt, y, out, off, w, mask);
        nn_cg_loop_end(cg, &j);
    }
    nn_cg_loop_end(cg, &f);
    nn_cg_kernel_end(cg);
}

// ---- filter grad over a zero-padded pixel grid ----
// With few taps (one input channel: 25 at 5x5) the panel above gathers its
// taps as lanes at a cost above the FMAs'. Here the pixels are the lanes: an
// image's x is copied into zero-padded planes of rows wp = OW + (KW-1)dw long,
// and dy onto the same grid (zero past OW and past the plane), so that tap
// (c, kh, kw) reads the x planes at a constant shift from the pixel:
//   partial[s][f][tap] = sum over the chunk's images and grid pixels p of
//                        dyp[f][p] * xp[c][p + kh*dh*wp + kw*dw],
// plain vector loads. An item is (image chunk, block of CV_FT filters); per
// image it copies the grid (in L1, on the stack) and runs tiles of CV_FT
// filters x CV_TT taps whose vector sums carry over images in a stack
// buffer; their lanes are added up once at the end. emit_filter_sum adds the
// chunks and applies the epilogue. The pad lanes' zero dy cancels whatever x
// they meet (finite: zeros or the image's own pixels).

// Image n's x planes and the dy planes of filters [f0, f0 + ft) into the grid
// buffer xb.
static void grid_copy(NnCg *cg, Cv *v, LLVMValueRef xb, LLVMValueRef x, LLVMValueRef dy,
                      LLVMValueRef n, LLVMValueRef f0, int ft)
{
    LLVMValueRef zero = nn_cg_const(cg, v->dt, 0, v->vw);
    NnLoop e, r;
    nn_cg_loop_begin(cg, &e, nn_cg_i64(cg, 0), nn_cg_i64(cg, v->C * v->px), v->vw);
    nn_cg_store(cg, v->dt, zero, xb, e.iv, v->vw, NULL);
    nn_cg_loop_end(cg, &e);
    int64_t tail = v->pd - v->OH * v->wp;
    for (int i = 0; i < ft && tail > 0; i++)
        nn_cg_store(cg, v->dt, zero, xb, nn_cg_i64(cg, v->C * v->px + i * v->pd + v->OH * v->wp),
                    v->vw, nn_cg_mask(cg, v->vw, (int)tail));
    // x's rows at (h + pt) * wp + pl of their plane; dy's rows at oh * wp,
    // written whole (zeros past OW).
    for (int t = 0; t < 2; t++) {
        int64_t rows = t ? ft * v->OH : v->C * v->H, per = t ? v->OH : v->H;
        int64_t len = t ? v->OW : v->W, plane = t ? v->pd : v->px;
        // First source row: image n's (x), or filter f0's of image n (dy).
        LLVMValueRef first = t ? mul(cg, add(cg, mul(cg, n, v->F), f0), v->OH * v->OW)
                               : mul(cg, n, v->C * v->H * v->W);
        nn_cg_loop_begin(cg, &r, nn_cg_i64(cg, 0), nn_cg_i64(cg, rows), 1);
        LLVMValueRef pl = LLVMBuildUDiv(cg->b, r.iv, nn_cg_i64(cg, per), "");
        LLVMValueRef row = LLVMBuildURem(cg->b, r.iv, nn_cg_i64(cg, per), "");
        LLVMValueRef at = add(cg, mul(cg, pl, plane), mul(cg, row, v->wp));
        at = addc(cg, at, t ? v->C * v->px : v->pt * v->wp + v->pl);
        LLVMValueRef from = add(cg, first, mul(cg, r.iv, len));
        for (int64_t c = 0; c < (t ? v->wp : len); c += v->vw) {
            int64_t k = len - c < v->vw ? len - c : v->vw, ks = t ? v->wp - c : k;
            LLVMValueRef val = zero;
            if (k > 0)
                val = nn_cg_load(cg, v->dt, t ? dy : x, addc(cg, from, c), v->vw,
                                 k < v->vw ? nn_cg_mask(cg, v->vw, (int)k) : NULL);
            nn_cg_store(cg, v->dt, val, xb, addc(cg, at, c), v->vw,
                        ks < v->vw ? nn_cg_mask(cg, v->vw, (int)ks) : NULL);
        }
        nn_cg_loop_end(cg, &r);
    }
}

// ft filters x tt taps from t0 over the grid in xb, added to their vector sums
// in vacc ([filter][tap] vectors).
static void grid_tile(NnCg *cg, Cv *v, LLVMValueRef *acc, LLVMValueRef xb, LLVMValueRef vacc,
                      LLVMValueRef t0, int ft, int tt)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, v->dt, v->vw);
    int64_t kk = v->KH * v->KW;
    LLVMValueRef shift[CV_TT], slot[CV_FT * CV_TT];
    for (int t = 0; t < tt; t++) {
        LLVMValueRef tap = addc(cg, t0, t);
        LLVMValueRef c = LLVMBuildUDiv(cg->b, tap, nn_cg_i64(cg, kk), "");
        LLVMValueRef r = LLVMBuildURem(cg->b, tap, nn_cg_i64(cg, kk), "");
        LLVMValueRef kh = LLVMBuildUDiv(cg->b, r, nn_cg_i64(cg, v->KW), "");
        LLVMValueRef kw = LLVMBuildURem(cg->b, r, nn_cg_i64(cg, v->KW), "");
        LLVMValueRef in = add(cg, mul(cg, kh, v->dh * v->wp), mul(cg, kw, v->dw));
        shift[t] = add(cg, mul(cg, c, v->px), in);
        for (int i = 0; i < ft; i++) {
            LLVMValueRef at = mul(cg, addc(cg, tap, (int64_t)i * v->cols), v->vw);
            slot[i * tt + t] = at;
            LLVMBuildStore(cg->b, nn_cg_load(cg, v->dt, vacc, at, v->vw, NULL), acc[i * tt + t]);
        }
    }
    NnLoop p;
    nn_cg_loop_begin(cg, &p, nn_cg_i64(cg, 0), nn_cg_i64(cg, v->pd), v->vw);
    LLVMValueRef d[CV_FT];
    for (int i = 0; i < ft; i++)
        d[i] = nn_cg_load(cg, v->dt, xb, addc(cg, p.iv, v->C * v->px + (int64_t)i * v->pd), v->vw,
                          NULL);
    for (int t = 0; t < tt; t++) {
        LLVMValueRef xv = nn_cg_load(cg, v->dt, xb, add(cg, p.iv, shift[t]), v->vw, NULL);
        for (int i = 0; i < ft; i++) {
            LLVMValueRef a = acc[i * tt + t];
            LLVMValueRef args[3] = {d[i], xv, LLVMBuildLoad2(cg->b, vt, a, "")};
            LLVMBuildStore(cg->b, nn_cg_intrinsic(cg, "llvm.fma", &vt, 1, args, 3), a);
        }
    }
    nn_cg_loop_end(cg, &p);
    for (int i = 0; i < ft * tt; i++)
        nn_cg_store(cg, v->dt, LLVMBuildLoad2(cg->b, vt, acc[i], ""), vacc, slot[i], v->vw, NULL);
}

// Items (image chunk, block of filters), each over every tap.
static void emit_grid(NnCg *cg, Cv *v, int x_slot, int dy_slot)
{
    int64_t fmas = v->N * v->F * v->cols * v->pd;
    nn_cg_kernel_begin(cg, "conv_bwd_filter_grid", CV_WORK(fmas));
    LLVMTypeRef vt = nn_cg_vtype(cg, v->dt, v->vw), et = nn_cg_type(cg, v->dt);
    LLVMValueRef acc[CV_FT * CV_TT];
    for (int i = 0; i < CV_FT * CV_TT; i++)
        acc[i] = nn_cg_alloca(cg, vt);
    uint64_t grid = (uint64_t)(v->C * v->px + CV_FT * v->pd);
    LLVMValueRef xb = nn_cg_alloca(cg, LLVMArrayType2(et, grid));
    LLVMValueRef vacc = nn_cg_alloca(cg, LLVMArrayType2(et, (uint64_t)(CV_FT * v->cols * v->vw)));
    LLVMSetAlignment(xb, 64);
    LLVMSetAlignment(vacc, 64);
    LLVMValueRef x = nn_cg_buf(cg, x_slot), dy = nn_cg_buf(cg, dy_slot);
    LLVMValueRef part = nn_cg_buf(cg, v->c_slot);
    LLVMValueRef lo, hi;
    nn_cg_split(cg, v->S * v->nfb, 1, &lo, &hi);
    NnLoop it, n, tb, e;
    nn_cg_loop_begin(cg, &it, lo, hi, 1);
    LLVMValueRef s = LLVMBuildUDiv(cg->b, it.iv, nn_cg_i64(cg, v->nfb), "");
    LLVMValueRef fb = LLVMBuildURem(cg->b, it.iv, nn_cg_i64(cg, v->nfb), "");
    LLVMValueRef f0 = mul(cg, fb, CV_FT), n0, n1;
    if (v->rt) {
        LLVMValueRef nv = nn_cg_extent(cg, v->N, true), per = chunk_images(cg, v);
        n0 = imin(cg, LLVMBuildNSWMul(cg->b, s, per, ""), nv);
        n1 = imin(cg, LLVMBuildNSWMul(cg->b, addc(cg, s, 1), per, ""), nv);
    } else {
        n0 = LLVMBuildSDiv(cg->b, mul(cg, s, v->N), nn_cg_i64(cg, v->S), "");
        n1 = LLVMBuildSDiv(cg->b, mul(cg, addc(cg, s, 1), v->N), nn_cg_i64(cg, v->S), "");
    }
    // Full blocks of filters and taps in loops, the short last ones once.
    int64_t ffull = v->F / CV_FT, tfull = v->cols / CV_TT;
    int frem = (int)(v->F % CV_FT), trem = (int)(v->cols % CV_TT);
    for (int fr = 0; fr < 2; fr++) {
        int ft = fr ? frem : CV_FT;
        if (ft == 0 || (!fr && ffull == 0))
            continue;
        LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "fblock");
        LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "fdone");
        LLVMIntPredicate pr = fr ? LLVMIntEQ : LLVMIntULT;
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, pr, fb, nn_cg_i64(cg, ffull), ""), yes, done);
        LLVMPositionBuilderAtEnd(cg->b, yes);
        LLVMValueRef zero = nn_cg_const(cg, v->dt, 0, v->vw);
        nn_cg_loop_begin(cg, &e, nn_cg_i64(cg, 0), nn_cg_i64(cg, ft * v->cols * v->vw), v->vw);
        nn_cg_store(cg, v->dt, zero, vacc, e.iv, v->vw, NULL);
        nn_cg_loop_end(cg, &e);
        nn_cg_loop_begin(cg, &n, n0, n1, 1);
        grid_copy(cg, v, xb, x, dy, n.iv, f0, ft);
        if (tfull > 0) {
            nn_cg_loop_begin(cg, &tb, nn_cg_i64(cg, 0), nn_cg_i64(cg, tfull), 1);
            grid_tile(cg, v, acc, xb, vacc, mul(cg, tb.iv, CV_TT), ft, CV_TT);
            nn_cg_loop_end(cg, &tb);
        }
        if (trem)
            grid_tile(cg, v, acc, xb, vacc, nn_cg_i64(cg, tfull * CV_TT), ft, trem);
        nn_cg_loop_end(cg, &n);
        // Each sum's lanes into slice s: rows f0.., all taps.
        nn_cg_loop_begin(cg, &e, nn_cg_i64(cg, 0), nn_cg_i64(cg, ft * v->cols), 1);
        LLVMValueRef args[2] = {LLVMConstNull(et),
                                nn_cg_load(cg, v->dt, vacc, mul(cg, e.iv, v->vw), v->vw, NULL)};
        LLVMValueRef sum = nn_cg_intrinsic(cg, "llvm.vector.reduce.fadd", &vt, 1, args, 2);
        LLVMValueRef off = add(cg, mul(cg, add(cg, mul(cg, s, v->F), f0), v->cols), e.iv);
        nn_cg_store(cg, v->dt, sum, part, off, 1, NULL);
        nn_cg_loop_end(cg, &e);
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, done);
    }
    nn_cg_loop_end(cg, &it);
    nn_cg_kernel_end(cg);
}

// Data grad's A: wt[g][c][f*KK + k] = w[g*Fg + f][c][k], so that a row of A is
// contiguous like the forward's.
static void emit_regroup(NnCg *cg, Cv *v, int w_slot)
{
    int64_t kk = v->KH * v->KW;
    nn_cg_kernel_begin(cg, "conv_wt", 0);
    LLVMValueRef w = nn_cg_buf(cg, w_slot), wt = nn_cg_buf(cg, v->a_slot);
    NnLoop f, c, k;
    nn_cg_loop_begin(cg, &f, nn_cg_i64(cg, 0), nn_cg_i64(cg, v->F), 1);
    LLVMValueRef g = LLVMBuildUDiv(cg->b, f.iv, nn_cg_i64(cg, v->Fg), "");
    LLVMValueRef fl = LLVMBuildURem(cg->b, f.iv, nn_cg_i64(cg, v->Fg), "");
    nn_cg_loop_begin(cg, &c, nn_cg_i64(cg, 0), nn_cg_i64(cg, v->Cg), 1);
    LLVMValueRef src = mul(cg, add(cg, mul(cg, f.iv, v->Cg), c.iv), kk);
    LLVMValueRef dst = add(cg, mul(cg, add(cg, mul(cg, g, v->Cg), c.iv), v->K), mul(cg, fl, kk));
    nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), nn_cg_i64(cg, kk), 1);
    LLVMValueRef x = nn_cg_load(cg, v->dt, w, add(cg, src, k.iv), 1, NULL);
    nn_cg_store(cg, v->dt, x, wt, add(cg, dst, k.iv), 1, NULL);
    nn_cg_loop_end(cg, &k);
    nn_cg_loop_end(cg, &c);
    nn_cg_loop_end(cg, &f);
    nn_cg_kernel_end(cg);
}

// Data grad at stride 1 with dy's rows shorter than dx's (a "valid"
// convolution): dy copied into rows of W elements (the last W - OW unset and
// never read), so that every row of B becomes a masked load like the forward's
// instead of a gather per vector.
static void emit_restride(NnCg *cg, Cv *v, int dy_slot)
{
    int64_t rows = v->N * v->F * v->OH;
    nn_cg_kernel_begin(cg, "conv_dy_rows", (double)(rows * v->OW));
    LLVMValueRef src = nn_cg_buf(cg, dy_slot);
    LLVMValueRef dst = nn_cg_gep(cg, v->dt, nn_cg_buf(cg, v->b_slot), nn_cg_i64(cg, v->b_off));
    LLVMValueRef lo, hi;
    nn_cg_split_v(cg, nn_cg_extent(cg, rows, v->rt), 1, &lo, &hi);
    NnLoop r;
    nn_cg_loop_begin(cg, &r, lo, hi, 1);
    for (int64_t c = 0; c < v->OW; c += v->vw) {
        int n = (int)(v->OW - c < v->vw ? v->OW - c : v->vw);
        LLVMValueRef m = n < v->vw ? nn_cg_mask(cg, v->vw, n) : NULL;
        LLVMValueRef x = nn_cg_load(cg, v->dt, src, addc(cg, mul(cg, r.iv, v->OW), c), v->vw, m);
        nn_cg_store(cg, v->dt, x, dst, addc(cg, mul(cg, r.iv, v->W), c), v->vw, m);
    }
    nn_cg_loop_end(cg, &r);
    nn_cg_kernel_end(cg);
}

// The epilogue's iteration space: the output's dims with the trailing ones
// that a register tile's columns walk (pixels; (c, kh, kw) for the filter
// grad) merged into one, when every leaf walks them contiguously or not at
// all (bias, residual, mask, the weights being updated). Otherwise the
// output's own dims, and the epilogue runs one element at a time.
static void epi_space(NnCg *cg, Cv *v, const int64_t *od)
{
    NnExpr *e = v->epi;
    int first = v->kind == CV_FILTER ? 1 : 2; // first merged dim
    nn_expr_iter(cg, e, 4, od);
    bool flat = true;
    for (int i = 0; i < e->nleaf && flat; i++) {
        const NnLeaf *l = &e->leaf[i];
        flat = !l->index && l->stride[3] <= 1;
        for (int d = first; d < 3 && flat; d++)
            flat = l->stride[d] == l->stride[d + 1] * od[d + 1];
    }
    v->epi_flat = flat;
    if (!flat)
        return;
    int64_t m = 1;
    for (int d = first; d < 4; d++)
        m *= od[d];
    e->rank = first + 1;
    e->dims[first] = m;
    for (int i = 0; i < e->nleaf; i++)
        e->leaf[i].stride[first] = e->leaf[i].stride[3];
}

// Emits node `conv` of graph cg->g's body or main graph: inputs in slots
// in0/in1, result (through epi, if any) in out_slot.
static bool emit_conv(NnCg *cg, const NnNode *cn, int in0, int in1, NnExpr *epi, int out_slot)
{
    const NnConv2d *a = &cn->attr.conv;
    int r;
    int64_t d0[NN_MAX_RANK], d1[NN_MAX_RANK], od[NN_MAX_RANK];
    nn_cg_shape(cg, cg->g, in0, &r, d0);
    nn_cg_shape(cg, cg->g, in1, &r, d1);
    nn_cg_shape(cg, cg->g, out_slot, &r, od);
    Cv v = {.dt = cn->dtype, .out_dt = cg->g->nodes[out_slot].dtype, .epi = epi,
            .out_slot = out_slot};
    v.vw = v.dt == NN_DT_F64 ? 8 : 16;
    v.sh = a->stride[0], v.sw = a->stride[1], v.dh = a->dilation[0], v.dw = a->dilation[1];
    v.pt = a->pad[0], v.pl = a->pad[1], v.G = a->groups;
    const int64_t *x, *w, *y;
    if (cn->op == NN_OP_CONV2D) {
        v.kind = CV_FWD, x = d0, w = d1, y = od;
    } else if (cn->op == NN_OP_CONV2D_BWD_DATA) {
        v.kind = CV_DATA, x = od, w = d1, y = d0;
    } else {
        v.kind = CV_FILTER, x = d0, w = od, y = d1;
    }
    v.N = x[0], v.C = x[1], v.H = x[2], v.W = x[3];
    v.rt = nn_cg_rt(cg, cg->g, cn->op == NN_OP_CONV2D_BWD_DATA ? out_slot : in0);
    v.F = w[0], v.Cg = w[1], v.KH = w[2], v.KW = w[3];
    v.OH = y[2], v.OW = y[3], v.Fg = v.F / v.G;
    int64_t kk = v.KH * v.KW;
    // A data grad at stride 1 whose dy rows are shorter reads a re-strided
    // copy (emit_restride).
    v.bw = v.kind == CV_FWD ? v.W : v.OW;
    bool restride = v.kind == CV_DATA && v.sh == 1 && v.sw == 1 && v.OW < v.W;
    if (restride)
        v.bw = v.W;
    // Gathers index one image's group of planes with 32-bit lane offsets.
    if ((v.kind == CV_DATA ? v.Fg * v.OH * v.bw : v.Cg * v.H * v.W) > INT32_MAX) {
        nnrt_fail(NN_ERR_RUNTIME, "jit: %s: an image's planes exceed 2^31 elements",
                  nn_op_name(cn->op));
        return false;
    }
    if (v.kind == CV_FWD) {
        v.M = v.Fg, v.K = v.Cg * kk, v.cols = v.OH * v.OW;
        v.a_slot = in1, v.b_slot = in0, v.c_slot = out_slot;
    } else if (v.kind == CV_DATA) {
        v.M = v.Cg, v.K = v.Fg * kk, v.cols = v.H * v.W;
        int64_t es = (int64_t)nnrt_dtype_size(v.dt), abytes = (v.F * v.Cg * kk * es + 63) / 64 * 64;
        v.a_slot = nn_cg_add_scratch(cg, abytes);
        v.b_slot = in0, v.c_slot = out_slot;
        if (restride) {
            // Every scratch slot starts at the same block (runtime/step.c),
            // so the copy goes after the regrouped weights: a slot of
            // abytes + the copy (per row of the batch: the block has room for
            // the largest fixed slot plus the largest per-row one).
            int64_t per = v.F * v.OH * v.W * es;
            v.b_slot = v.rt ? nn_cg_add_scratch_rows(cg, per)
                            : nn_cg_add_scratch(cg, abytes + v.N * per);
            v.b_off = abytes / es;
        }
    } else {
        v.M = v.Fg, v.K = v.OH * v.OW, v.cols = v.Cg * kk;
        v.a_slot = in1, v.b_slot = in0;
    }
    v.pool = -1;
    v.band = v.cols;
    if (v.kind == CV_FWD && v.cols > 0 && out_slot + 1 < cg->g->count &&
        nn_fuse_pool_host(cg->g, out_slot + 1) == out_slot) {
        // Bands of whole pooling windows' rows: the height that wastes the
        // fewest lanes of its panels (the lowest such, for more items).
        int64_t kh = cg->g->nodes[out_slot + 1].attr.conv.kernel[0];
        double best = -1;
        for (int64_t rb = kh;; rb += kh) {
            int64_t band = rb * v.OW, nr = band <= v.vw ? v.vw : 2 * v.vw;
            double used = (double)band / (double)((band + nr - 1) / nr * nr);
            if (used > best + 1e-9)
                best = used, v.rb = rb;
            if (rb >= v.OH || band >= 16 * nr)
                break;
        }
        v.pool = out_slot + 1;
        v.band = v.rb * v.OW;
        v.nb = (v.cols + v.band - 1) / v.band;
    }
    // Few columns (a filter grad with one input channel): one vector per
    // panel row and taller tiles, rather than a half-dead second vector.
    v.nv = (v.band < v.cols ? v.band : v.cols) <= v.vw ? 1 : 2;
    v.nr = v.nv * v.vw;
    v.mr = CV_ACC / v.nv;
    v.np = (v.cols + v.nr - 1) / v.nr;
    if (v.kind == CV_FILTER) {
        v.nkb = v.K > 0 ? (v.K + CV_KC - 1) / CV_KC : 1;
        v.kc = v.K > 0 ? (v.K + v.nkb - 1) / v.nkb : 1;
    } else { // blocks of whole channels (the gather reuses a window position's maps)
        int64_t nch = v.K / kk, per = CV_KC / kk > 0 ? CV_KC / kk : 1;
        v.nkb = nch > 0 ? (nch + per - 1) / per : 1;
        v.kc = (nch > 0 ? (nch + v.nkb - 1) / v.nkb : 1) * kk;
    }
    if (epi)
        epi_space(cg, &v, od);
    if (v.kind == CV_DATA)
        emit_regroup(cg, &v, in1);
    if (restride)
        emit_restride(cg, &v, in0);
    if (v.kind != CV_FILTER) {
        emit_direct(cg, &v);
        return true;
    }
    // Few taps at stride 1, one group, an image's grid small enough for the
    // stack (in L1 or L2): the grid kernel (emit_grid).
    v.grid = v.G == 1 && v.sh == 1 && v.sw == 1 && v.cols <= 2 * v.vw;
    if (v.grid) {
        v.wp = v.OW + (v.KW - 1) * v.dw;
        v.pd = (v.OH * v.wp + v.vw - 1) / v.vw * v.vw;
        int64_t need = v.pd + (v.KH - 1) * v.dh * v.wp + (v.KW - 1) * v.dw;
        int64_t rows = (v.H + a->pad[0] + a->pad[2]) * v.wp;
        v.px = ((need > rows ? need : rows) + v.vw - 1) / v.vw * v.vw;
        v.nfb = (v.F + CV_FT - 1) / CV_FT;
        int64_t bytes = (v.C * v.px + CV_FT * v.pd + CV_FT * v.cols * v.vw) *
                        (int64_t)nnrt_dtype_size(v.dt);
        v.grid = bytes <= CV_GRID_BYTES;
    }
    int64_t items = v.grid ? v.nfb : v.G * v.np;
    v.S = items >= CV_ITEMS ? 1 : (CV_ITEMS + items - 1) / items;
    if (v.S > v.N)
        v.S = v.N; // no images (N bound to 0): no slices, the sum is 0
    // A run-time batch may be 0: the sum of no slices, not an unwritten output.
    // The grid kernel always writes partial sums.
    bool direct = v.S == 1 && (!epi || v.out_dt == v.dt) && !v.rt && !v.grid;
    v.c_slot = direct ? out_slot
                      : nn_cg_add_scratch(cg, v.S * v.F * v.cols * (int64_t)nnrt_dtype_size(v.dt));
    NnExpr *keep = v.epi;
    if (!direct)
        v.epi = NULL;
    if (v.S > 0 && v.grid) {
        emit_grid(cg, &v, in0, in1);
    } else if (v.S > 0) {
        emit_filter(cg, &v);
    }
    if (!direct) {
        v.epi = keep;
        emit_filter_sum(cg, &v);
    }
    return true;
}

bool llvm_conv2d(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    return emit_conv(cg, n, n->in[0], n->in[1], NULL, id);
}
bool llvm_conv2d_bwd_data(NnCg *cg, NnId id) { return llvm_conv2d(cg, id); }
bool llvm_conv2d_bwd_filter(NnCg *cg, NnId id) { return llvm_conv2d(cg, id); }

bool nn_cg_is_conv(NnOp op)
{
    return op == NN_OP_CONV2D || op == NN_OP_CONV2D_BWD_DATA || op == NN_OP_CONV2D_BWD_FILTER;
}

bool nn_cg_emit_conv(NnCg *cg, const NnNode *cn, int in0, int in1, NnExpr *epi, int out_slot)
{
    return emit_conv(cg, cn, in0, in1, epi, out_slot);
}
