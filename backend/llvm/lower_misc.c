// Layout, indexing and random-number ops: RESHAPE (a flat copy), TRANSPOSE
// (a copy with permuted strides through the expression path), TAKE, ONEHOT,
// ARGMAX, GATHER and SCATTER_ADD (scalar loops: they touch one row of labels
// or the rows of the ids given, as many as the run's batch brings),
// RAND_UNIFORM/NORMAL (the runtime's counter-based formulas, bit for bit).
// TAKE, ONEHOT and GATHER record the first out-of-range label in the error
// slot; exec.c reports it after the run.
#include <stdlib.h>
#include <string.h>

#include "nn_llvm.h"

bool llvm_reshape(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    NnExpr *e = malloc(sizeof *e);
    NN_ASSERT(e);
    int64_t numel = nn_cg_numel(cg, cg->g, id);
    nn_expr_read(cg, e, n->in[0]);
    e->leaf[0].rank = 1;
    e->leaf[0].dims[0] = numel;
    nn_expr_iter(cg, e, 1, &numel);
    e->rt = nn_cg_rt(cg, cg->g, id);
    nn_cg_kernel_begin(cg, "reshape", (double)numel);
    nn_expr_emit_map(cg, e, id, n->dtype);
    nn_cg_kernel_end(cg);
    free(e);
    return true;
}

// A swap of the two leading dims, [A, B, Z...] -> [B, A, Z...], where A or B
// is the run-time batch (a recurrent layer's batch-major sequence made
// time-major, and back): each output row of Z elements is one copy, and the
// strides that hold the batch are multiplied at run time.
static bool transpose_rows(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    const NnNode *x = &cg->g->nodes[n->in[0]];
    int r;
    int64_t d[NN_MAX_RANK], z = 1;
    nn_cg_shape(cg, cg->g, n->in[0], &r, d);
    for (int i = 2; i < r; i++)
        z *= d[i];
    int64_t es = (int64_t)nnrt_dtype_size(n->dtype);
    bool rt_a = x->shape.dim[0] == -cg->rt_sym - 1;
    nn_cg_kernel_begin(cg, "transpose", (double)nn_cg_numel(cg, cg->g, id));
    LLVMValueRef a = nn_cg_extent(cg, d[0], rt_a), b = nn_cg_extent(cg, d[1], !rt_a);
    LLVMValueRef src = nn_cg_buf(cg, n->in[0]), dst = nn_cg_buf(cg, id), lo, hi;
    nn_cg_split_v(cg, LLVMBuildNSWMul(cg->b, a, b, ""), 1, &lo, &hi);
    NnLoop l;
    nn_cg_loop_begin(cg, &l, lo, hi, 1);
    // Output row q = j * A + i is input row i * B + j.
    LLVMValueRef j = LLVMBuildUDiv(cg->b, l.iv, a, ""), i = LLVMBuildURem(cg->b, l.iv, a, "");
    LLVMValueRef q = LLVMBuildNSWAdd(cg->b, LLVMBuildNSWMul(cg->b, i, b, ""), j, "");
    LLVMValueRef so = LLVMBuildNSWMul(cg->b, q, nn_cg_i64(cg, z * es), "");
    LLVMValueRef dof = LLVMBuildNSWMul(cg->b, l.iv, nn_cg_i64(cg, z * es), "");
    LLVMValueRef sp = LLVMBuildGEP2(cg->b, cg->t_i8, src, &so, 1, "");
    LLVMValueRef dp = LLVMBuildGEP2(cg->b, cg->t_i8, dst, &dof, 1, "");
    LLVMTypeRef ovl[3] = {cg->t_ptr, cg->t_ptr, cg->t_i64};
    LLVMValueRef args[4] = {dp, sp, nn_cg_i64(cg, z * es), LLVMConstInt(cg->t_i1, 0, 0)};
    nn_cg_intrinsic(cg, "llvm.memcpy", ovl, 3, args, 4);
    nn_cg_loop_end(cg, &l);
    nn_cg_kernel_end(cg);
    return true;
}

bool llvm_transpose(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    if (cg->rt_sym >= 0 && n->attr.perm[0] == 1 &&
        (n->shape.dim[0] == -cg->rt_sym - 1 || n->shape.dim[1] == -cg->rt_sym - 1))
        return transpose_rows(cg, id);
    NnExpr *e = malloc(sizeof *e);
    NN_ASSERT(e);
    nn_expr_read(cg, e, n->in[0]);
    int r;
    int64_t d[NN_MAX_RANK], xs[NN_MAX_RANK], s = 1;
    NnLeaf *l = &e->leaf[0];
    for (int i = l->rank - 1; i >= 0; i--) {
        xs[i] = s;
        s *= l->dims[i];
    }
    nn_cg_shape(cg, cg->g, id, &r, d);
    nn_expr_iter(cg, e, r, d);
    for (int i = 0; i < r; i++)
        l->stride[i] = d[i] == 1 ? 0 : xs[n->attr.perm[i]];
    e->rt = nn_cg_rt(cg, cg->g, id);
    nn_cg_kernel_begin(cg, "transpose", (double)nn_cg_numel(cg, cg->g, id));
    nn_expr_emit_map(cg, e, id, n->dtype);
    nn_cg_kernel_end(cg);
    free(e);
    return true;
}

// Entry k of the error slot: the first bad row of node id, or -1; *copy is
// the buffer where the bad index is kept at its row (nnrt_step_check reads it
// there after the run, when the indices' own buffer may hold something else).
static LLVMValueRef err_entry(NnCg *cg, NnId id, LLVMValueRef *copy)
{
    int slot, k = nn_cg_add_error(cg, id, &slot);
    LLVMValueRef off = nn_cg_i64(cg, k);
    *copy = nn_cg_buf(cg, slot);
    return LLVMBuildInBoundsGEP2(cg->b, cg->t_i64, nn_cg_buf(cg, cg->err_slot), &off, 1, "");
}

// Remembers row i, and index j at row i of copy, when *err is still -1.
static void note_bad(NnCg *cg, LLVMValueRef err, LLVMValueRef copy, LLVMValueRef bad,
                     LLVMValueRef i, LLVMValueRef j)
{
    LLVMValueRef cur = LLVMBuildLoad2(cg->b, cg->t_i64, err, "");
    LLVMValueRef first =
        LLVMBuildAnd(cg->b, bad, LLVMBuildICmp(cg->b, LLVMIntEQ, cur, nn_cg_i64(cg, -1), ""), "");
    LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, first, i, cur, ""), err);
    LLVMValueRef at = LLVMBuildInBoundsGEP2(cg->b, cg->t_i32, copy, &i, 1, "");
    LLVMValueRef was = LLVMBuildLoad2(cg->b, cg->t_i32, at, "");
    LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, first, j, was, ""), at);
}

static LLVMValueRef in_range(NnCg *cg, LLVMValueRef j, int64_t n)
{
    LLVMValueRef j64 = LLVMBuildSExt(cg->b, j, cg->t_i64, "");
    return LLVMBuildICmp(cg->b, LLVMIntULT, j64, nn_cg_i64(cg, n), "");
}

bool llvm_take(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    int r;
    int64_t d[NN_MAX_RANK];
    nn_cg_shape(cg, cg->g, n->in[0], &r, d);
    nn_cg_kernel_begin(cg, "take", 0);
    LLVMValueRef x = nn_cg_buf(cg, n->in[0]), idx = nn_cg_buf(cg, n->in[1]);
    LLVMValueRef val, y = nn_cg_buf(cg, id), err = err_entry(cg, id, &val);
    LLVMBuildStore(cg->b, nn_cg_i64(cg, -1), err);
    NnLoop i;
    nn_cg_loop_begin(cg, &i, nn_cg_i64(cg, 0), nn_cg_extent(cg, d[0], nn_cg_rt(cg, cg->g, id)), 1);
    LLVMValueRef j = nn_cg_load(cg, NN_DT_I32, idx, i.iv, 1, NULL);
    LLVMValueRef ok = in_range(cg, j, d[1]);
    LLVMValueRef js =
        LLVMBuildSelect(cg->b, ok, LLVMBuildSExt(cg->b, j, cg->t_i64, ""), nn_cg_i64(cg, 0), "");
    LLVMValueRef off =
        LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, i.iv, nn_cg_i64(cg, d[1]), ""), js, "");
    LLVMValueRef v =
        d[1] > 0 ? nn_cg_load(cg, n->dtype, x, off, 1, NULL) : nn_cg_const(cg, n->dtype, 0, 1);
    v = LLVMBuildSelect(cg->b, ok, v, nn_cg_const(cg, n->dtype, 0, 1), "");
    nn_cg_store(cg, n->dtype, v, y, i.iv, 1, NULL);
    note_bad(cg, err, val, LLVMBuildNot(cg->b, ok, ""), i.iv, j);
    nn_cg_loop_end(cg, &i);
    nn_cg_kernel_end(cg);
    return true;
}

bool llvm_onehot(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    int64_t rows = nn_cg_numel(cg, cg->g, n->in[0]), depth = n->attr.depth;
    nn_cg_kernel_begin(cg, "onehot", 0);
    LLVMValueRef val, idx = nn_cg_buf(cg, n->in[0]), y = nn_cg_buf(cg, id);
    LLVMValueRef err = err_entry(cg, id, &val);
    LLVMBuildStore(cg->b, nn_cg_i64(cg, -1), err);
    NnLoop i, j;
    nn_cg_loop_begin(cg, &i, nn_cg_i64(cg, 0),
                     nn_cg_extent(cg, rows, nn_cg_rt(cg, cg->g, n->in[0])), 1);
    LLVMValueRef lab =  nn_cg_load(cg, NN_DT_I32, idx, i.iv, 1, NULL);
    LLVMValueRef lab64 = LLVMBuildSExt(cg->b, lab, cg->t_i64, "");
    note_bad(cg, err, val, LLVMBuildNot(cg->b, in_range(cg, lab, depth), ""), i.iv, lab);
    LLVMValueRef row = LLVMBuildMul(cg->b, i.iv, nn_cg_i64(cg, depth), "");
    nn_cg_loop_begin(cg, &j, nn_cg_i64(cg, 0), nn_cg_i64(cg, depth), 1);
    LLVMValueRef hit = LLVMBuildICmp(cg->b, LLVMIntEQ, j.iv, lab64, "");
    LLVMValueRef v = LLVMBuildSelect(cg->b, hit, nn_cg_const(cg, n->dtype, 1, 1),
                                     nn_cg_const(cg, n->dtype, 0, 1), "");
    nn_cg_store(cg, n->dtype, v, y, LLVMBuildAdd(cg->b, row, j.iv, ""), 1, NULL);
    nn_cg_loop_end(cg, &j);
    nn_cg_loop_end(cg, &i);
    nn_cg_kernel_end(cg);
    return true;
}

// y[i, :] = w[ids[i], :]: one row copy per id; a bad id gives a zero row.
bool llvm_gather(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    int r;
    int64_t d[NN_MAX_RANK];
    nn_cg_shape(cg, cg->g, n->in[0], &r, d);
    int64_t rows = nn_cg_numel(cg, cg->g, n->in[1]), dim = d[1];
    nn_cg_kernel_begin(cg, "gather", 0);
    LLVMValueRef w = nn_cg_buf(cg, n->in[0]), idx = nn_cg_buf(cg, n->in[1]);
    LLVMValueRef val, y = nn_cg_buf(cg, id), err = err_entry(cg, id, &val);
    LLVMBuildStore(cg->b, nn_cg_i64(cg, -1), err);
    NnLoop i, k;
    nn_cg_loop_begin(cg, &i, nn_cg_i64(cg, 0),
                     nn_cg_extent(cg, rows, nn_cg_rt(cg, cg->g, n->in[1])), 1);
    LLVMValueRef j = nn_cg_load(cg, NN_DT_I32, idx, i.iv, 1, NULL);
    LLVMValueRef ok = in_range(cg, j, d[0]);
    note_bad(cg, err, val, LLVMBuildNot(cg->b, ok, ""), i.iv, j);
    LLVMValueRef js =
        LLVMBuildSelect(cg->b, ok, LLVMBuildSExt(cg->b, j, cg->t_i64, ""), nn_cg_i64(cg, 0), "");
    LLVMValueRef src = LLVMBuildMul(cg->b, js, nn_cg_i64(cg, dim), "");
    LLVMValueRef dst = LLVMBuildMul(cg->b, i.iv, nn_cg_i64(cg, dim), "");
    nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), nn_cg_i64(cg, dim), 1);
    LLVMValueRef zero = nn_cg_const(cg, n->dtype, 0, 1), v = zero;
    if (d[0] > 0)
        v = nn_cg_load(cg, n->dtype, w, LLVMBuildAdd(cg->b, src, k.iv, ""), 1, NULL);
    v = LLVMBuildSelect(cg->b, ok, v, zero, "");
    nn_cg_store(cg, n->dtype, v, y, LLVMBuildAdd(cg->b, dst, k.iv, ""), 1, NULL);
    nn_cg_loop_end(cg, &k);
    nn_cg_loop_end(cg, &i);
    nn_cg_kernel_end(cg);
    return true;
}

// y = 0, then y[ids[i], :] += x[i, :] in the order of i, as the runtime kernel
// does; a bad id adds nothing. Only the rows of the ids given are read back.
bool llvm_scatter_add(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    int64_t rows = nn_cg_numel(cg, cg->g, n->in[1]), v = n->attr.shape.dim[0];
    int64_t dim = n->attr.shape.dim[1];
    nn_cg_kernel_begin(cg, "scatter_add", 0);
    LLVMValueRef x = nn_cg_buf(cg, n->in[0]), idx = nn_cg_buf(cg, n->in[1]);
    LLVMValueRef y = nn_cg_buf(cg, id);
    NnLoop e, i, k;
    nn_cg_loop_begin(cg, &e, nn_cg_i64(cg, 0), nn_cg_i64(cg, v * dim), 1);
    nn_cg_store(cg, n->dtype, nn_cg_const(cg, n->dtype, 0, 1), y, e.iv, 1, NULL);
    nn_cg_loop_end(cg, &e);
    if (v * dim > 0) {
        nn_cg_loop_begin(cg, &i, nn_cg_i64(cg, 0),
                         nn_cg_extent(cg, rows, nn_cg_rt(cg, cg->g, n->in[1])), 1);
        LLVMValueRef j = nn_cg_load(cg, NN_DT_I32, idx, i.iv, 1, NULL);
        LLVMValueRef ok = in_range(cg, j, v);
        LLVMValueRef js = LLVMBuildSelect(cg->b, ok, LLVMBuildSExt(cg->b, j, cg->t_i64, ""),
                                          nn_cg_i64(cg, 0), "");
        LLVMValueRef dst = LLVMBuildMul(cg->b, js, nn_cg_i64(cg, dim), "");
        LLVMValueRef src = LLVMBuildMul(cg->b, i.iv, nn_cg_i64(cg, dim), "");
        nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), nn_cg_i64(cg, dim), 1);
        LLVMValueRef at = LLVMBuildAdd(cg->b, dst, k.iv, "");
        LLVMValueRef cur = nn_cg_load(cg, n->dtype, y, at, 1, NULL);
        LLVMValueRef add = nn_cg_load(cg, n->dtype, x, LLVMBuildAdd(cg->b, src, k.iv, ""), 1, NULL);
        LLVMValueRef sum = nn_cg_binop(cg, NN_OP_ADD, n->dtype, cur, add);
        nn_cg_store(cg, n->dtype, LLVMBuildSelect(cg->b, ok, sum, cur, ""), y, at, 1, NULL);
        nn_cg_loop_end(cg, &k);
        nn_cg_loop_end(cg, &i);
    }
    nn_cg_kernel_end(cg);
    return true;
}

bool llvm_argmax(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    NnDType dt = cg->g->nodes[n->in[0]].dtype;
    int r;
    int64_t d[NN_MAX_RANK], pre = 1, post = 1;
    nn_cg_shape(cg, cg->g, n->in[0], &r, d);
    int ax = n->attr.axis;
    for (int i = 0; i < ax; i++)
        pre *= d[i];
    for (int i = ax + 1; i < r; i++)
        post *= d[i];
    int64_t len = d[ax];
    nn_cg_kernel_begin(cg, "argmax", (double)(pre * post * len));
    LLVMValueRef x = nn_cg_buf(cg, n->in[0]), y = nn_cg_buf(cg, id);
    LLVMValueRef best = nn_cg_alloca(cg, nn_cg_type(cg, dt)), bi = nn_cg_alloca(cg, cg->t_i32);
    LLVMValueRef lo, hi;
    nn_cg_split_v(cg, nn_cg_extent(cg, pre * post, nn_cg_rt(cg, cg->g, id)), 16, &lo, &hi);
    NnLoop o, j;
    nn_cg_loop_begin(cg, &o, lo, hi, 1);
    LLVMValueRef a = LLVMBuildUDiv(cg->b, o.iv, nn_cg_i64(cg, post), "");
    LLVMValueRef c = LLVMBuildURem(cg->b, o.iv, nn_cg_i64(cg, post), "");
    LLVMValueRef base =
        LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, a, nn_cg_i64(cg, len * post), ""), c, "");
    LLVMBuildStore(cg->b, nn_cg_i32(cg, 0), bi);
    if (len > 0) {
        LLVMBuildStore(cg->b, nn_cg_load(cg, dt, x, base, 1, NULL), best);
        nn_cg_loop_begin(cg, &j, nn_cg_i64(cg, 1), nn_cg_i64(cg, len), 1);
        LLVMValueRef v = nn_cg_load(
            cg, dt, x,
            LLVMBuildAdd(cg->b, base, LLVMBuildMul(cg->b, j.iv, nn_cg_i64(cg, post), ""), ""), 1,
            NULL);
        LLVMValueRef cur = LLVMBuildLoad2(cg->b, nn_cg_type(cg, dt), best, "");
        LLVMValueRef gt = dt == NN_DT_I32 ? LLVMBuildICmp(cg->b, LLVMIntSGT, v, cur, "")
                                          : LLVMBuildFCmp(cg->b, LLVMRealOGT, v, cur, "");
        LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, gt, v, cur, ""), best);
        LLVMValueRef ji = LLVMBuildTrunc(cg->b, j.iv, cg->t_i32, "");
        LLVMBuildStore(cg->b,
                       LLVMBuildSelect(cg->b, gt, ji, LLVMBuildLoad2(cg->b, cg->t_i32, bi, ""), ""),
                       bi);
        nn_cg_loop_end(cg, &j);
    }
    nn_cg_store(cg, NN_DT_I32, LLVMBuildLoad2(cg->b, cg->t_i32, bi, ""), y, o.iv, 1, NULL);
    nn_cg_loop_end(cg, &o);
    nn_cg_kernel_end(cg);
    return true;
}

// ---- random sources ----

typedef struct Rand {
    const NnNode *n;
    LLVMValueRef key, y;
} Rand;

static LLVMValueRef lanes_of(NnCg *cg, LLVMValueRef i, int w, int64_t scale, int64_t plus)
{
    LLVMValueRef v =
        nn_cg_splat(cg,
                    LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, i, nn_cg_i64(cg, scale), ""),
                                 nn_cg_i64(cg, plus), ""),
                    w);
    if (w == 1)
        return v;
    LLVMValueRef l[64];
    for (int k = 0; k < w; k++)
        l[k] = nn_cg_i64(cg, k * scale);
    return LLVMBuildAdd(cg->b, v, LLVMConstVector(l, (unsigned)w), "");
}

static void uniform_point(NnCg *cg, void *ctx, LLVMValueRef i, int w)
{
    Rand *r = ctx;
    NnDType dt = r->n->dtype;
    LLVMValueRef bits = nn_cg_rand_bits(cg, r->key, lanes_of(cg, i, w, 1, 0), w);
    LLVMValueRef v;
    if (dt == NN_DT_F32) {
        LLVMValueRef sh = nn_cg_splat(cg, LLVMConstInt(cg->t_i64, 40, 0), w);
        LLVMValueRef h = LLVMBuildLShr(cg->b, bits, sh, "");
        v = LLVMBuildUIToFP(cg->b, h, nn_cg_vtype(cg, NN_DT_F32, w), "");
        v = LLVMBuildFMul(cg->b, v, nn_cg_const(cg, NN_DT_F32, 0x1p-24, w), "");
    } else {
        v = nn_cg_bits_f64(cg, bits, w);
    }
    nn_cg_store(cg, dt, v, r->y, i, w, NULL);
}

static void normal_point(NnCg *cg, void *ctx, LLVMValueRef i, int w)
{
    Rand *r = ctx;
    LLVMValueRef u1 =
        nn_cg_bits_f64(cg, nn_cg_rand_bits(cg, r->key, lanes_of(cg, i, 1, 2, 0), 1), 1);
    LLVMValueRef u2 =
        nn_cg_bits_f64(cg, nn_cg_rand_bits(cg, r->key, lanes_of(cg, i, 1, 2, 1), 1), 1);
    LLVMValueRef t = LLVMBuildFSub(cg->b, LLVMConstReal(cg->t_f64, 1.0), u1, "");
    t = nn_cg_call(cg, "log", cg->t_f64, &t, 1);
    t = LLVMBuildFMul(cg->b, LLVMConstReal(cg->t_f64, -2.0), t, "");
    LLVMTypeRef ft = cg->t_f64;
    t = nn_cg_intrinsic(cg, "llvm.sqrt", &ft, 1, &t, 1);
    LLVMValueRef c = LLVMBuildFMul(cg->b, LLVMConstReal(cg->t_f64, 6.283185307179586), u2, "");
    c = nn_cg_call(cg, "cos", cg->t_f64, &c, 1);
    LLVMValueRef v = LLVMBuildFMul(cg->b, t, c, "");
    if (r->n->dtype == NN_DT_F32)
        v = LLVMBuildFPTrunc(cg->b, v, cg->t_f32, "");
    nn_cg_store(cg, r->n->dtype, v, r->y, i, 1, NULL);
}

static bool rand_node(NnCg *cg, NnId id, bool normal)
{
    const NnNode *n = &cg->g->nodes[id];
    int64_t numel = nn_cg_numel(cg, cg->g, id);
    nn_cg_kernel_begin(cg, normal ? "rand_normal" : "rand_uniform", (double)numel * 8);
    NnDType sdt = cg->g->nodes[n->in[0]].dtype;
    LLVMValueRef sv = nn_cg_load(cg, sdt, nn_cg_buf(cg, n->in[0]), nn_cg_i64(cg, 0), 1, NULL);
    Rand r = {.n = n, .y = nn_cg_buf(cg, id)};
    r.key = nn_cg_rand_key(cg, n->attr.seed, nn_cg_rand_step(cg, sv));
    LLVMValueRef lo, hi;
    nn_cg_split_v(cg, nn_cg_extent(cg, numel, nn_cg_rt(cg, cg->g, id)), 64, &lo, &hi);
    nn_cg_vloop(cg, lo, hi, normal ? 1 : 8, normal ? normal_point : uniform_point, &r);
    nn_cg_kernel_end(cg);
    return true;
}

bool llvm_rand_uniform(NnCg *cg, NnId id) { return rand_node(cg, id, false); }
bool llvm_rand_normal(NnCg *cg, NnId id) { return rand_node(cg, id, true); }
