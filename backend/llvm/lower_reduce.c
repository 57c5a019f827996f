// Reductions (REDUCE_SUM/MEAN/MAX, LOGSUMEXP, SUMTO, and the R form of FUSED
// nodes) of an elementwise expression over some axes of its iteration space.
// Two loop nests cover the common cases: "inner" (the last dim is reduced, as in
// softmax sums: a vector accumulator in registers per output element) and
// "outer" (the last dim is kept, as in bias gradients: a row of accumulators
// in a stack array, updated with vectors). Float sums accumulate in double and
// MAX propagates NaN, LOGSUMEXP subtracts the max first: the runtime's rules.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_llvm.h"

#define NN_VW 16
#define NN_RED_CHUNK 512
// Kept columns per register chunk of the outer form (outer_regs): 4 vectors,
// 8 zmm accumulators of double.
#define NN_RED_REG_COLS 64
#define NN_LSE_WORK 8 // LOGSUMEXP's work per element in a sum's units (reduce_node)

typedef struct Red {
    NnExpr *e;
    NnOp op;        // REDUCE_SUM/MEAN/MAX or LOGSUMEXP
    NnDType dt, at; // value and accumulator dtypes
    int rank;
    bool red[NN_MAX_RANK];
    int64_t ostride[NN_MAX_RANK];
    int64_t count; // elements per output
    // Pass state.
    bool max_pass;      // this pass takes the max (else the sum)
    LLVMValueRef mx;    // LOGSUMEXP sum pass: the max (scalar, inner form)
    LLVMValueRef mxarr; // ... or a row of maxima (outer form)
    LLVMValueRef acc;   // inner: vector alloca; outer: array alloca
    LLVMValueRef sacc;  // inner: scalar alloca
    LLVMValueRef idx[NN_MAX_RANK];
    LLVMValueRef j0; // outer: first index of the chunk along the last dim
    LLVMValueRef mask; // inner: the lanes of a masked tail, else NULL
} Red;

// Drops extent-1 dims and merges neighbours of one class whose strides allow.
static void coalesce(Red *r)
{
    NnExpr *e = r->e;
    int nd = 0;
    int64_t dims[NN_MAX_RANK], os[NN_MAX_RANK], ls[NN_EXPR_MAXLEAF][NN_MAX_RANK];
    bool red[NN_MAX_RANK];
    for (int d = 0; d < e->rank; d++) {
        if (e->dims[d] == 1)
            continue;
        bool merge = nd > 0 && red[nd - 1] == r->red[d] && os[nd - 1] == r->ostride[d] * e->dims[d];
        for (int i = 0; merge && i < e->nleaf; i++)
            merge = ls[i][nd - 1] == e->leaf[i].stride[d] * e->dims[d];
        int k = merge ? nd - 1 : nd++;
        dims[k] = merge ? dims[k] * e->dims[d] : e->dims[d];
        os[k] = r->ostride[d];
        red[k] = r->red[d];
        for (int i = 0; i < e->nleaf; i++)
            ls[i][k] = e->leaf[i].stride[d];
    }
    r->rank = e->rank = nd;
    memcpy(e->dims, dims, (size_t)nd * sizeof(int64_t));
    memcpy(r->ostride, os, (size_t)nd * sizeof(int64_t));
    memcpy(r->red, red, (size_t)nd * sizeof(bool));
    for (int i = 0; i < e->nleaf; i++)
        memcpy(e->leaf[i].stride, ls[i], (size_t)nd * sizeof(int64_t));
}

// Extent of dim d: the batch's at run time for dim 0 of a batch expression.
static LLVMValueRef dim_extent(NnCg *cg, const Red *r, int d)
{
    return nn_cg_extent(cg, r->e->dims[d], d == 0 && r->e->rt);
}

// The elements per output as a double: MEAN divides by it.
static LLVMValueRef count_value(NnCg *cg, const Red *r)
{
    if (!(r->e->rt && r->red[0]))
        return LLVMConstReal(cg->t_f64, (double)r->count);
    return LLVMBuildSIToFP(cg->b, nn_cg_extent(cg, r->count, true), cg->t_f64, "");
}

static LLVMValueRef init_value(NnCg *cg, const Red *r, int w)
{
    if (!r->max_pass)
        return nn_cg_const(cg, r->at, 0, w);
    if (r->at == NN_DT_I32)
        return nn_cg_const(cg, NN_DT_I32, INT32_MIN, w);
    return nn_cg_const(cg, r->at, -INFINITY, w);
}

static LLVMValueRef convert(NnCg *cg, LLVMValueRef v, NnDType from, NnDType to, int w)
{
    if (from == to)
        return v;
    return LLVMBuildFPExt(cg->b, v, nn_cg_vtype(cg, to, w), "");
}

static LLVMValueRef vexp_f64(NnCg *cg, LLVMValueRef x, int w)
{
    if (w == 1)
        return nn_cg_call(cg, "exp", cg->t_f64, &x, 1);
    LLVMValueRef out = LLVMGetPoison(LLVMTypeOf(x));
    for (int i = 0; i < w; i++) {
        LLVMValueRef s = LLVMBuildExtractElement(cg->b, x, nn_cg_i32(cg, i), "");
        s = nn_cg_call(cg, "exp", cg->t_f64, &s, 1);
        out = LLVMBuildInsertElement(cg->b, out, s, nn_cg_i32(cg, i), "");
    }
    return out;
}

// The value to fold at the current offsets, in the accumulator's dtype.
static LLVMValueRef term(NnCg *cg, Red *r, int w, LLVMValueRef mx)
{
    LLVMValueRef v = nn_expr_eval(cg, r->e, w, r->rank - 1, r->mask, NULL);
    if (r->op == NN_OP_LOGSUMEXP && !r->max_pass && r->dt == NN_DT_F32) {
        // exp(x - max) <= 1 in f32 (vector exp), summed in double.
        LLVMValueRef m32 = LLVMBuildFPTrunc(cg->b, mx, nn_cg_vtype(cg, NN_DT_F32, w), "");
        NnNode e = {.op = NN_OP_EXP};
        LLVMValueRef d = LLVMBuildFSub(cg->b, v, m32, "");
        return convert(cg, nn_cg_elem_op(cg, &e, NN_DT_F32, &d, w, NULL), r->dt, r->at, w);
    }
    v = convert(cg, v, r->dt, r->at, w);
    if (r->op == NN_OP_LOGSUMEXP && !r->max_pass)
        v = vexp_f64(cg, LLVMBuildFSub(cg->b, v, mx, ""), w);
    return v;
}

static LLVMValueRef fold(NnCg *cg, const Red *r, LLVMValueRef acc, LLVMValueRef v)
{
    return nn_cg_binop(cg, r->max_pass ? NN_OP_MAX : NN_OP_ADD, r->at, acc, v);
}

// ---- inner form: for each output, a register accumulator over the reduced dims ----

static void inner_point(NnCg *cg, void *ctx, LLVMValueRef j, int w)
{
    Red *r = ctx;
    r->idx[r->rank - 1] = j;
    nn_expr_at(cg, r->e, r->idx);
    LLVMValueRef slot = w > 1 ? r->acc : r->sacc;
    LLVMTypeRef t = nn_cg_vtype(cg, r->at, w);
    LLVMValueRef mx = r->mx ? nn_cg_splat(cg, r->mx, w) : NULL;
    LLVMValueRef v = term(cg, r, w, mx);
    if (r->mask) // lanes past the row fold the identity
        v = LLVMBuildSelect(cg->b, r->mask, v, init_value(cg, r, w), "");
    LLVMBuildStore(cg->b, fold(cg, r, LLVMBuildLoad2(cg->b, t, slot, ""), v), slot);
}

// The reduced last dim [0, n): vectors, then the tail. A constant n's tail is
// one masked vector (a row of 10 logits was 10 scalar points, each with its
// own exp: logsumexp over [1024, 10] took 88 us), else scalars. The masked
// tail folds into the vector accumulator, so a row's terms are summed in a
// different order than with a scalar tail; sums are in double, where the
// terms of a float reduction (24-bit mantissas) add exactly unless their
// exponents lie 29 or more apart.
static void inner_row(NnCg *cg, Red *r, LLVMValueRef n, int w)
{
    int64_t c = 0;
    bool known = w > 1 && LLVMIsAConstantInt(n) && (c = LLVMConstIntGetSExtValue(n)) % w != 0;
    if (!known) {
        nn_cg_vloop(cg, nn_cg_i64(cg, 0), n, w, inner_point, r);
        return;
    }
    int64_t full = c / w * w;
    if (full > 0) {
        NnLoop l;
        nn_cg_loop_begin(cg, &l, nn_cg_i64(cg, 0), nn_cg_i64(cg, full), w);
        inner_point(cg, r, l.iv, w);
        nn_cg_loop_end(cg, &l);
    }
    r->mask = nn_cg_mask(cg, w, (int)(c - full));
    inner_point(cg, r, nn_cg_i64(cg, full), w);
    r->mask = NULL;
}

// One pass over the reduced dims at the current kept index; returns the scalar.
static LLVMValueRef inner_pass(NnCg *cg, Red *r, int w)
{
    r->acc = nn_cg_alloca(cg, nn_cg_vtype(cg, r->at, w));
    r->sacc = nn_cg_alloca(cg, nn_cg_type(cg, r->at));
    LLVMBuildStore(cg->b, init_value(cg, r, w), r->acc);
    LLVMBuildStore(cg->b, init_value(cg, r, 1), r->sacc);
    NnLoop loops[NN_MAX_RANK];
    int nl = 0, last = r->rank - 1;
    for (int d = 0; d < last; d++) {
        if (!r->red[d])
            continue;
        nn_cg_loop_begin(cg, &loops[nl], nn_cg_i64(cg, 0), dim_extent(cg, r, d), 1);
        r->idx[d] = loops[nl++].iv;
    }
    inner_row(cg, r, dim_extent(cg, r, last), w);
    while (nl > 0)
        nn_cg_loop_end(cg, &loops[--nl]);
    LLVMValueRef v = LLVMBuildLoad2(cg->b, nn_cg_vtype(cg, r->at, w), r->acc, "");
    v = nn_cg_hreduce(cg, r->max_pass ? NN_OP_MAX : NN_OP_ADD, r->at, v, w);
    return fold(cg, r, v, LLVMBuildLoad2(cg->b, nn_cg_type(cg, r->at), r->sacc, ""));
}

static LLVMValueRef is_finite(NnCg *cg, LLVMValueRef x)
{
    LLVMTypeRef t = LLVMTypeOf(x);
    LLVMValueRef ax = nn_cg_intrinsic(cg, "llvm.fabs", &t, 1, &x, 1);
    return LLVMBuildFCmp(cg->b, LLVMRealOLT, ax, LLVMConstReal(t, INFINITY), "");
}

// mx + log(sum) when the max is finite, else the max (runtime's finish()).
static LLVMValueRef lse_finish(NnCg *cg, LLVMValueRef mx, LLVMValueRef sum)
{
    LLVMValueRef l = nn_cg_call(cg, "log", cg->t_f64, &sum, 1);
    return LLVMBuildSelect(cg->b, is_finite(cg, mx), LLVMBuildFAdd(cg->b, mx, l, ""), mx, "");
}

static void emit_inner(NnCg *cg, Red *r, LLVMValueRef out)
{
    int last = r->rank - 1;
    int w = nn_expr_vectorizable(r->e, last) ? NN_VW : 1;
    int64_t kdims[NN_MAX_RANK], nkeep = 1;
    int kd[NN_MAX_RANK], nk = 0;
    for (int d = 0; d < r->rank; d++)
        if (!r->red[d]) {
            kd[nk] = d;
            kdims[nk++] = r->e->dims[d];
            nkeep *= r->e->dims[d];
        }
    LLVMValueRef lo, hi;
    nn_cg_split_v(cg, nn_cg_extent(cg, nkeep, r->e->rt && !r->red[0]), 1, &lo, &hi);
    NnLoop o;
    nn_cg_loop_begin(cg, &o, lo, hi, 1);
    LLVMValueRef kidx[NN_MAX_RANK];
    nn_cg_decode(cg, o.iv, kdims, nk, kidx);
    for (int d = 0; d < r->rank; d++)
        r->idx[d] = NULL;
    for (int k = 0; k < nk; k++)
        r->idx[kd[k]] = kidx[k];
    LLVMValueRef res;
    r->mx = NULL;
    if (r->op == NN_OP_LOGSUMEXP) {
        // Max in the value dtype, then sums of exp(x - max) in double.
        NnDType at = r->at;
        r->at = r->dt;
        r->max_pass = true;
        LLVMValueRef mx = convert(cg, inner_pass(cg, r, w), r->dt, NN_DT_F64, 1);
        r->at = at;
        r->max_pass = false;
        r->mx = mx;
        res = lse_finish(cg, mx, inner_pass(cg, r, w));
    } else {
        r->max_pass = r->op == NN_OP_REDUCE_MAX;
        res = inner_pass(cg, r, w);
        if (r->op == NN_OP_REDUCE_MEAN)
            res = LLVMBuildFDiv(cg->b, res, count_value(cg, r), "");
    }
    if (r->at != r->dt)
        res = LLVMBuildFPTrunc(cg->b, res, nn_cg_type(cg, r->dt), "");
    LLVMValueRef off = nn_cg_i64(cg, 0);
    for (int k = 0; k < nk; k++)
        off = LLVMBuildAdd(cg->b, off,
                           LLVMBuildMul(cg->b, kidx[k], nn_cg_i64(cg, r->ostride[kd[k]]), ""), "");
    nn_cg_store(cg, r->dt, res, out, off, 1, NULL);
    nn_cg_loop_end(cg, &o);
}

// ---- outer form: a row of accumulators along the kept last dim ----

static LLVMValueRef row_ptr(NnCg *cg, LLVMValueRef arr, NnDType dt, LLVMValueRef j)
{
    return nn_cg_gep(cg, dt, arr, j);
}

static void outer_init(NnCg *cg, void *ctx, LLVMValueRef j, int w)
{
    Red *r = ctx;
    LLVMBuildStore(cg->b, init_value(cg, r, w), row_ptr(cg, r->acc, r->at, j));
}

static void outer_point(NnCg *cg, void *ctx, LLVMValueRef j, int w)
{
    Red *r = ctx;
    r->idx[r->rank - 1] = LLVMBuildAdd(cg->b, r->j0, j, "");
    nn_expr_at(cg, r->e, r->idx);
    LLVMValueRef mx = NULL;
    if (r->op == NN_OP_LOGSUMEXP && !r->max_pass)
        mx = LLVMBuildLoad2(cg->b, nn_cg_vtype(cg, NN_DT_F64, w),
                            row_ptr(cg, r->mxarr, NN_DT_F64, j), "");
    LLVMValueRef v = term(cg, r, w, mx);
    LLVMValueRef p = row_ptr(cg, r->acc, r->at, j);
    LLVMTypeRef t = nn_cg_vtype(cg, r->at, w);
    LLVMBuildStore(cg->b, fold(cg, r, LLVMBuildLoad2(cg->b, t, p, ""), v), p);
}

// Emits one pass of loops over the reduced dims, accumulating into r->acc.
static void outer_pass(NnCg *cg, Red *r, LLVMValueRef jn, int w)
{
    nn_cg_vloop(cg, nn_cg_i64(cg, 0), jn, w, outer_init, r);
    NnLoop loops[NN_MAX_RANK];
    int nl = 0;
    for (int d = 0; d < r->rank - 1; d++) {
        if (!r->red[d])
            continue;
        nn_cg_loop_begin(cg, &loops[nl], nn_cg_i64(cg, 0), dim_extent(cg, r, d), 1);
        r->idx[d] = loops[nl++].iv;
    }
    nn_cg_vloop(cg, nn_cg_i64(cg, 0), jn, w, outer_point, r);
    while (nl > 0)
        nn_cg_loop_end(cg, &loops[--nl]);
}

// A full chunk of NN_RED_REG_COLS kept columns (not LOGSUMEXP): one
// accumulator vector per NN_VW columns, promoted to registers, over all the
// reduced dims, then stored. Each column folds its rows in the same order as
// the array form (bit-identical), but the accumulators never go to memory.
static void outer_regs(NnCg *cg, Red *r, LLVMValueRef out, LLVMValueRef ooff, int w)
{
    enum { V = NN_RED_REG_COLS / NN_VW };
    int last = r->rank - 1;
    LLVMTypeRef t = nn_cg_vtype(cg, r->at, w);
    LLVMValueRef acc[V];
    for (int v = 0; v < V; v++) {
        acc[v] = nn_cg_alloca(cg, t);
        LLVMBuildStore(cg->b, init_value(cg, r, w), acc[v]);
    }
    NnLoop loops[NN_MAX_RANK];
    int nl = 0;
    for (int d = 0; d < last; d++) {
        if (!r->red[d])
            continue;
        nn_cg_loop_begin(cg, &loops[nl], nn_cg_i64(cg, 0), dim_extent(cg, r, d), 1);
        r->idx[d] = loops[nl++].iv;
    }
    for (int v = 0; v < V; v++) {
        r->idx[last] = LLVMBuildAdd(cg->b, r->j0, nn_cg_i64(cg, (int64_t)v * w), "");
        nn_expr_at(cg, r->e, r->idx);
        LLVMValueRef x = term(cg, r, w, NULL);
        LLVMBuildStore(cg->b, fold(cg, r, LLVMBuildLoad2(cg->b, t, acc[v], ""), x), acc[v]);
    }
    while (nl > 0)
        nn_cg_loop_end(cg, &loops[--nl]);
    for (int v = 0; v < V; v++) {
        LLVMValueRef x = LLVMBuildLoad2(cg->b, t, acc[v], "");
        if (r->op == NN_OP_REDUCE_MEAN)
            x = LLVMBuildFDiv(cg->b, x, nn_cg_splat(cg, count_value(cg, r), w), "");
        if (r->at != r->dt)
            x = LLVMBuildFPTrunc(cg->b, x, nn_cg_vtype(cg, r->dt, w), "");
        nn_cg_store(cg, r->dt, x, out,
                    LLVMBuildAdd(cg->b, ooff, nn_cg_i64(cg, (int64_t)v * w), ""), w, NULL);
    }
}

static void emit_outer(NnCg *cg, Red *r, LLVMValueRef out)
{
    int last = r->rank - 1;
    int w = nn_expr_vectorizable(r->e, last) ? NN_VW : 1;
    int64_t L = r->e->dims[last], ch = L <= 2 * NN_RED_CHUNK ? L : NN_RED_CHUNK;
    // Register chunks where they fit: more, shorter chunks, so that a bias
    // gradient of 256 columns gives both threads work.
    bool regs = w > 1 && r->op != NN_OP_LOGSUMEXP && L >= NN_RED_REG_COLS;
    if (regs)
        ch = NN_RED_REG_COLS;
    int64_t nch = (L + ch - 1) / ch;
    int64_t kdims[NN_MAX_RANK], nouter = 1;
    int kd[NN_MAX_RANK], nk = 0;
    for (int d = 0; d < last; d++)
        if (!r->red[d]) {
            kd[nk] = d;
            kdims[nk++] = r->e->dims[d];
            nouter *= r->e->dims[d];
        }
    LLVMTypeRef arrt = LLVMArrayType2(nn_cg_type(cg, r->at), (uint64_t)ch);
    r->acc = nn_cg_alloca(cg, arrt);
    LLVMSetAlignment(r->acc, 64);
    if (r->op == NN_OP_LOGSUMEXP) {
        r->mxarr = nn_cg_alloca(cg, LLVMArrayType2(cg->t_f64, (uint64_t)ch));
        LLVMSetAlignment(r->mxarr, 64);
    }
    LLVMValueRef lo, hi;
    nn_cg_split_v(cg, nn_cg_extent(cg, nouter * nch, r->e->rt && !r->red[0]), 1, &lo, &hi);
    NnLoop p;
    nn_cg_loop_begin(cg, &p, lo, hi, 1);
    LLVMValueRef c = LLVMBuildURem(cg->b, p.iv, nn_cg_i64(cg, nch), "");
    LLVMValueRef o = LLVMBuildUDiv(cg->b, p.iv, nn_cg_i64(cg, nch), "");
    LLVMValueRef kidx[NN_MAX_RANK];
    nn_cg_decode(cg, o, kdims, nk, kidx);
    for (int d = 0; d < r->rank; d++)
        r->idx[d] = NULL;
    for (int k = 0; k < nk; k++)
        r->idx[kd[k]] = kidx[k];
    r->j0 = LLVMBuildMul(cg->b, c, nn_cg_i64(cg, ch), "");
    LLVMValueRef rest = LLVMBuildSub(cg->b, nn_cg_i64(cg, L), r->j0, "");
    LLVMValueRef jn =
        LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, rest, nn_cg_i64(cg, ch), ""), rest,
                        nn_cg_i64(cg, ch), "jn");
    LLVMValueRef ooff = nn_cg_i64(cg, 0);
    for (int k = 0; k < nk; k++)
        ooff = LLVMBuildAdd(cg->b, ooff,
                            LLVMBuildMul(cg->b, kidx[k], nn_cg_i64(cg, r->ostride[kd[k]]), ""), "");
    ooff = LLVMBuildAdd(cg->b, ooff, r->j0, "");
    LLVMBasicBlockRef after = NULL;
    if (regs) {
        // A full chunk in registers; the last, partial one below.
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(cg->b));
        LLVMBasicBlockRef full = LLVMAppendBasicBlock(fn, "red.regs");
        LLVMBasicBlockRef part = LLVMAppendBasicBlock(fn, "red.part");
        after = LLVMAppendBasicBlock(fn, "red.next");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, jn, nn_cg_i64(cg, ch), ""), full,
                        part);
        LLVMPositionBuilderAtEnd(cg->b, full);
        r->max_pass = r->op == NN_OP_REDUCE_MAX;
        outer_regs(cg, r, out, ooff, w);
        LLVMBuildBr(cg->b, after);
        LLVMPositionBuilderAtEnd(cg->b, part);
    }
    if (r->op == NN_OP_LOGSUMEXP) {
        // Maxima first (into mxarr, as double), then the exp sums.
        LLVMValueRef acc = r->acc;
        NnDType at = r->at;
        r->acc = r->mxarr;
        r->at = NN_DT_F64;
        r->max_pass = true;
        outer_pass(cg, r, jn, w); // widening to double keeps the max exact
        r->acc = acc;
        r->at = at;
    }
    r->max_pass = r->op == NN_OP_REDUCE_MAX;
    outer_pass(cg, r, jn, w);
    NnLoop f;
    nn_cg_loop_begin(cg, &f, nn_cg_i64(cg, 0), jn, 1);
    LLVMValueRef v =
        LLVMBuildLoad2(cg->b, nn_cg_type(cg, r->at), row_ptr(cg, r->acc, r->at, f.iv), "");
    if (r->op == NN_OP_LOGSUMEXP) {
        LLVMValueRef mx =
            LLVMBuildLoad2(cg->b, cg->t_f64, row_ptr(cg, r->mxarr, NN_DT_F64, f.iv), "");
        v = lse_finish(cg, mx, v);
    } else if (r->op == NN_OP_REDUCE_MEAN) {
        v = LLVMBuildFDiv(cg->b, v, count_value(cg, r), "");
    }
    if (r->at != r->dt)
        v = LLVMBuildFPTrunc(cg->b, v, nn_cg_type(cg, r->dt), "");
    nn_cg_store(cg, r->dt, v, out, LLVMBuildAdd(cg->b, ooff, f.iv, ""), 1, NULL);
    nn_cg_loop_end(cg, &f);
    if (after) {
        LLVMBuildBr(cg->b, after);
        LLVMPositionBuilderAtEnd(cg->b, after);
    }
    nn_cg_loop_end(cg, &p);
}

void nn_cg_emit_reduce(NnCg *cg, NnExpr *e, NnOp op, uint32_t axes, int out_slot, NnDType dt)
{
    Red r = {.e = e, .op = op, .dt = dt, .rank = e->rank, .count = 1};
    bool any = false;
    int64_t s = 1;
    for (int d = e->rank - 1; d >= 0; d--) {
        r.red[d] = (axes >> d) & 1;
        r.ostride[d] = r.red[d] ? 0 : s;
        if (r.red[d])
            r.count *= e->dims[d];
        else
            s *= e->dims[d];
    }
    r.at = dt == NN_DT_I32 || op == NN_OP_REDUCE_MAX ? dt : NN_DT_F64;
    coalesce(&r);
    for (int d = 0; d < r.rank; d++)
        any |= r.red[d];
    if (!any) {
        // Only extent-1 axes are reduced: every op is the identity.
        nn_expr_emit_map(cg, e, out_slot, dt);
        return;
    }
    nn_expr_bind(cg, e);
    LLVMValueRef out = nn_cg_buf(cg, out_slot);
    if (r.red[r.rank - 1])
        emit_inner(cg, &r, out);
    else
        emit_outer(cg, &r, out);
}

// ---- the reduction ops of ops.def, and SUMTO (a sum over broadcast axes) ----

static bool reduce_node(NnCg *cg, NnId id, uint32_t axes, NnOp op)
{
    const NnNode *n = &cg->g->nodes[id];
    NnExpr *e = malloc(sizeof *e);
    NN_ASSERT(e);
    nn_expr_read(cg, e, n->in[0]);
    // An exp per element and a log per output cost as much as several adds:
    // LOGSUMEXP over [1024, 10] took 40 us on one thread, 2x an element's
    // share of a sum's work, so it splits from 410 rows instead of 3277.
    double work = (double)nn_cg_numel(cg, cg->g, n->in[0]);
    if (op == NN_OP_LOGSUMEXP)
        work *= NN_LSE_WORK;
    nn_cg_kernel_begin(cg, nn_op_name(n->op), work);
    nn_cg_emit_reduce(cg, e, op, axes, id, n->dtype);
    nn_cg_kernel_end(cg);
    free(e);
    return true;
}

bool llvm_reduce_sum(NnCg *cg, NnId id)
{
    return reduce_node(cg, id, cg->g->nodes[id].attr.axes, NN_OP_REDUCE_SUM);
}
bool llvm_reduce_mean(NnCg *cg, NnId id)
{
    return reduce_node(cg, id, cg->g->nodes[id].attr.axes, NN_OP_REDUCE_MEAN);
}
bool llvm_reduce_max(NnCg *cg, NnId id)
{
    return reduce_node(cg, id, cg->g->nodes[id].attr.axes, NN_OP_REDUCE_MAX);
}
bool llvm_logsumexp(NnCg *cg, NnId id)
{
    return reduce_node(cg, id, cg->g->nodes[id].attr.axes, NN_OP_LOGSUMEXP);
}

bool llvm_sumto(NnCg *cg, NnId id)
{
    int xr, r;
    int64_t xd[NN_MAX_RANK], d[NN_MAX_RANK];
    nn_cg_shape(cg, cg->g, cg->g->nodes[id].in[0], &xr, xd);
    nn_cg_shape(cg, cg->g, id, &r, d);
    uint32_t axes = 0;
    for (int i = 0; i < xr; i++) {
        int j = i - (xr - r);
        if (j < 0 || (d[j] == 1 && xd[i] != 1))
            axes |= 1u << i;
    }
    return reduce_node(cg, id, axes, NN_OP_REDUCE_SUM);
}
