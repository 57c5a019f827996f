// Small IR-building helpers shared by the lower_*.c files: types, constants,
// typed loads and stores (optionally masked), calls to intrinsics and libm,
// counted loops and the per-thread split of an index range. They build at the
// builder's current position and keep no state besides the NnCg they are given.
#include <llvm-c/DebugInfo.h>
#include <string.h>

#include "nn_llvm.h"

LLVMTypeRef nn_cg_type(const NnCg *cg, NnDType dt)
{
    switch (dt) {
    case NN_DT_F32: return cg->t_f32;
    case NN_DT_F64: return cg->t_f64;
    case NN_DT_I32: return cg->t_i32;
    default: NN_UNREACHABLE();
    }
}

LLVMTypeRef nn_cg_vtype(const NnCg *cg, NnDType dt, int w)
{
    LLVMTypeRef t = nn_cg_type(cg, dt);
    return w == 1 ? t : LLVMVectorType(t, (unsigned)w);
}

LLVMValueRef nn_cg_i64(const NnCg *cg, int64_t v)
{
    return LLVMConstInt(cg->t_i64, (unsigned long long)v, 1);
}
LLVMValueRef nn_cg_i32(const NnCg *cg, int32_t v)
{
    return LLVMConstInt(cg->t_i32, (unsigned long long)(int64_t)v, 1);
}

LLVMValueRef nn_cg_const(const NnCg *cg, NnDType dt, double v, int w)
{
    LLVMTypeRef t = nn_cg_type(cg, dt);
    LLVMValueRef c;
    if (dt == NN_DT_I32)
        c = LLVMConstInt(t, (unsigned long long)(int64_t)(int32_t)v, 1);
    else
        c = LLVMConstReal(t, dt == NN_DT_F32 ? (double)(float)v : v);
    if (w == 1)
        return c;
    LLVMValueRef lanes[64];
    NN_ASSERT(w <= 64);
    for (int i = 0; i < w; i++)
        lanes[i] = c;
    return LLVMConstVector(lanes, (unsigned)w);
}

LLVMValueRef nn_cg_splat(NnCg *cg, LLVMValueRef s, int w)
{
    if (w == 1)
        return s;
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), (unsigned)w);
    LLVMValueRef v = LLVMBuildInsertElement(cg->b, LLVMGetPoison(vt), s, nn_cg_i32(cg, 0), "");
    LLVMValueRef zero = LLVMConstNull(LLVMVectorType(cg->t_i32, (unsigned)w));
    return LLVMBuildShuffleVector(cg->b, v, LLVMGetPoison(vt), zero, "splat");
}

LLVMValueRef nn_cg_gep(NnCg *cg, NnDType dt, LLVMValueRef base, LLVMValueRef off)
{
    return LLVMBuildInBoundsGEP2(cg->b, nn_cg_type(cg, dt), base, &off, 1, "");
}

LLVMValueRef nn_cg_mask(NnCg *cg, int w, int nlive)
{
    LLVMValueRef lanes[64];
    for (int i = 0; i < w; i++)
        lanes[i] = LLVMConstInt(cg->t_i1, i < nlive, 0);
    return LLVMConstVector(lanes, (unsigned)w);
}

LLVMValueRef nn_cg_load(NnCg *cg, NnDType dt, LLVMValueRef base, LLVMValueRef off, int w,
                        LLVMValueRef mask)
{
    LLVMValueRef p = nn_cg_gep(cg, dt, base, off);
    unsigned align = (unsigned)nnrt_dtype_size(dt);
    LLVMTypeRef vt = nn_cg_vtype(cg, dt, w);
    if (w > 1 && mask) {
        LLVMTypeRef ovl[2] = {vt, cg->t_ptr};
        LLVMValueRef args[4] = {p, nn_cg_i32(cg, (int32_t)align), mask, LLVMConstNull(vt)};
        return nn_cg_intrinsic(cg, "llvm.masked.load", ovl, 2, args, 4);
    }
    LLVMValueRef v = LLVMBuildLoad2(cg->b, vt, p, "");
    LLVMSetAlignment(v, align);
    return v;
}

void nn_cg_store(NnCg *cg, NnDType dt, LLVMValueRef v, LLVMValueRef base, LLVMValueRef off, int w,
                 LLVMValueRef mask)
{
    LLVMValueRef p = nn_cg_gep(cg, dt, base, off);
    unsigned align = (unsigned)nnrt_dtype_size(dt);
    if (w > 1 && mask) {
        LLVMTypeRef ovl[2] = {nn_cg_vtype(cg, dt, w), cg->t_ptr};
        LLVMValueRef args[4] = {v, p, nn_cg_i32(cg, (int32_t)align), mask};
        nn_cg_intrinsic(cg, "llvm.masked.store", ovl, 2, args, 4);
        return;
    }
    LLVMValueRef s = LLVMBuildStore(cg->b, v, p);
    LLVMSetAlignment(s, align);
}

LLVMValueRef nn_cg_call(NnCg *cg, const char *name, LLVMTypeRef ret, LLVMValueRef *args, int nargs)
{
    LLVMTypeRef at[16];
    NN_ASSERT(nargs <= 16);
    for (int i = 0; i < nargs; i++)
        at[i] = LLVMTypeOf(args[i]);
    LLVMTypeRef ft = LLVMFunctionType(ret, at, (unsigned)nargs, 0);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (!f) {
        f = LLVMAddFunction(cg->mod, name, ft);
        LLVMAddAttributeAtIndex(
            f, LLVMAttributeFunctionIndex,
            LLVMCreateEnumAttribute(cg->ctx, LLVMGetEnumAttributeKindForName("nounwind", 8), 0));
    }
    return LLVMBuildCall2(cg->b, ft, f, args, (unsigned)nargs, "");
}

LLVMValueRef nn_cg_intrinsic(NnCg *cg, const char *name, LLVMTypeRef *ovl, int novl,
                             LLVMValueRef *args, int nargs)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    NN_ASSERT(id != 0);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, ovl, (size_t)novl);
    LLVMTypeRef ft = LLVMIntrinsicGetType(cg->ctx, id, ovl, (size_t)novl);
    return LLVMBuildCall2(cg->b, ft, f, args, (unsigned)nargs, "");
}

static bool is_float(NnDType dt) { return dt != NN_DT_I32; }

// Reassociation is allowed in reductions and matmul sums (house tolerance rule).
static LLVMValueRef fast(LLVMValueRef v)
{
    if (LLVMCanValueUseFastMathFlags(v))
        LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract);
    return v;
}

LLVMValueRef nn_cg_binop(NnCg *cg, NnOp op, NnDType dt, LLVMValueRef a, LLVMValueRef b)
{
    bool f = is_float(dt);
    switch (op) {
    case NN_OP_ADD: return f ? fast(LLVMBuildFAdd(cg->b, a, b, "")) : LLVMBuildAdd(cg->b, a, b, "");
    case NN_OP_MUL: return f ? fast(LLVMBuildFMul(cg->b, a, b, "")) : LLVMBuildMul(cg->b, a, b, "");
    case NN_OP_MAX:
    case NN_OP_MIN: {
        if (f) {
            // NaN from either side wins, as in the runtime's kernels.
            LLVMTypeRef t = LLVMTypeOf(a);
            LLVMValueRef args[2] = {a, b};
            return nn_cg_intrinsic(cg, op == NN_OP_MAX ? "llvm.maximum" : "llvm.minimum", &t, 1,
                                   args, 2);
        }
        LLVMValueRef c = LLVMBuildICmp(cg->b, op == NN_OP_MAX ? LLVMIntSGT : LLVMIntSLT, a, b, "");
        return LLVMBuildSelect(cg->b, c, a, b, "");
    }
    default: NN_UNREACHABLE();
    }
}

LLVMValueRef nn_cg_hreduce(NnCg *cg, NnOp op, NnDType dt, LLVMValueRef v, int w)
{
    if (w == 1)
        return v;
    // A halving tree of shuffles: reassociates like any vector reduction.
    while (w > 1) {
        int h = w / 2;
        LLVMValueRef lo[32], hi[32];
        for (int i = 0; i < h; i++) {
            lo[i] = nn_cg_i32(cg, i);
            hi[i] = nn_cg_i32(cg, i + h);
        }
        LLVMValueRef pv = LLVMGetPoison(LLVMTypeOf(v));
        LLVMValueRef a = LLVMBuildShuffleVector(cg->b, v, pv, LLVMConstVector(lo, (unsigned)h), "");
        LLVMValueRef b = LLVMBuildShuffleVector(cg->b, v, pv, LLVMConstVector(hi, (unsigned)h), "");
        v = nn_cg_binop(cg, op, dt, a, b);
        w = h;
    }
    return LLVMBuildExtractElement(cg->b, v, nn_cg_i32(cg, 0), "");
}

void nn_cg_loop_begin(NnCg *cg, NnLoop *l, LLVMValueRef lo, LLVMValueRef hi, int64_t step)
{
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
    l->head = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "loop");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "done");
    l->step = step;
    l->unroll = false;
    LLVMBuildBr(cg->b, l->head);
    LLVMPositionBuilderAtEnd(cg->b, l->head);
    l->iv = LLVMBuildPhi(cg->b, cg->t_i64, "i");
    LLVMAddIncoming(l->iv, &lo, &pre, 1);
    LLVMValueRef end = LLVMBuildNSWAdd(cg->b, l->iv, nn_cg_i64(cg, step), "");
    LLVMValueRef c = LLVMBuildICmp(cg->b, LLVMIntSLE, end, hi, "");
    LLVMBuildCondBr(cg->b, c, body, l->exit);
    LLVMPositionBuilderAtEnd(cg->b, body);
}

static LLVMMetadataRef md_str(NnCg *cg, const char *s)
{
    return LLVMMDStringInContext2(cg->ctx, s, strlen(s));
}

// A self-referential loop id: !{!self, !{"llvm.loop.vectorize.enable", false}, ...}.
static LLVMMetadataRef loop_id(NnCg *cg, bool unroll)
{
    LLVMMetadataRef off = LLVMValueAsMetadata(LLVMConstInt(cg->t_i1, 0, 0));
    LLVMMetadataRef vec[2] = {md_str(cg, "llvm.loop.vectorize.enable"), off};
    LLVMMetadataRef nou = md_str(cg, "llvm.loop.unroll.disable");
    LLVMMetadataRef tmp = LLVMTemporaryMDNode(cg->ctx, NULL, 0);
    LLVMMetadataRef ops[3] = {tmp, LLVMMDNodeInContext2(cg->ctx, vec, 2),
                              LLVMMDNodeInContext2(cg->ctx, &nou, 1)};
    LLVMMetadataRef id = LLVMMDNodeInContext2(cg->ctx, ops, unroll ? 2 : 3);
    LLVMMetadataReplaceAllUsesWith(tmp, id);
    return id;
}

void nn_cg_loop_end(NnCg *cg, NnLoop *l)
{
    LLVMValueRef next = LLVMBuildNSWAdd(cg->b, l->iv, nn_cg_i64(cg, l->step), "");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(cg->b);
    LLVMValueRef br = LLVMBuildBr(cg->b, l->head);
    unsigned kind = LLVMGetMDKindIDInContext(cg->ctx, "llvm.loop", 9);
    LLVMSetMetadata(br, kind, LLVMMetadataAsValue(cg->ctx, loop_id(cg, l->unroll)));
    LLVMAddIncoming(l->iv, &next, &from, 1);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

void nn_cg_split(NnCg *cg, int64_t total, int64_t align, LLVMValueRef *lo, LLVMValueRef *hi)
{
    int64_t chunks = (total + align - 1) / align;
    LLVMValueRef ith = LLVMBuildSExt(cg->b, cg->ith, cg->t_i64, "");
    LLVMValueRef nth = LLVMBuildSExt(cg->b, cg->nth, cg->t_i64, "");
    LLVMValueRef c = nn_cg_i64(cg, chunks), a = nn_cg_i64(cg, align), t = nn_cg_i64(cg, total);
    LLVMValueRef l = LLVMBuildSDiv(cg->b, LLVMBuildMul(cg->b, c, ith, ""), nth, "");
    LLVMValueRef ith1 = LLVMBuildAdd(cg->b, ith, nn_cg_i64(cg, 1), "");
    LLVMValueRef h = LLVMBuildSDiv(cg->b, LLVMBuildMul(cg->b, c, ith1, ""), nth, "");
    l = LLVMBuildMul(cg->b, l, a, "");
    h = LLVMBuildMul(cg->b, h, a, "");
    LLVMValueRef lt = LLVMBuildICmp(cg->b, LLVMIntSLT, l, t, "");
    *lo = LLVMBuildSelect(cg->b, lt, l, t, "lo");
    LLVMValueRef ht = LLVMBuildICmp(cg->b, LLVMIntSLT, h, t, "");
    *hi = LLVMBuildSelect(cg->b, ht, h, t, "hi");
}

void nn_cg_split_v(NnCg *cg, LLVMValueRef total, int64_t align, LLVMValueRef *lo,
                   LLVMValueRef *hi)
{
    LLVMValueRef a = nn_cg_i64(cg, align);
    LLVMValueRef c = LLVMBuildSDiv(cg->b, LLVMBuildAdd(cg->b, total, nn_cg_i64(cg, align - 1), ""),
                                   a, "");
    LLVMValueRef ith = LLVMBuildSExt(cg->b, cg->ith, cg->t_i64, "");
    LLVMValueRef nth = LLVMBuildSExt(cg->b, cg->nth, cg->t_i64, "");
    LLVMValueRef l = LLVMBuildSDiv(cg->b, LLVMBuildMul(cg->b, c, ith, ""), nth, "");
    LLVMValueRef ith1 = LLVMBuildAdd(cg->b, ith, nn_cg_i64(cg, 1), "");
    LLVMValueRef h = LLVMBuildSDiv(cg->b, LLVMBuildMul(cg->b, c, ith1, ""), nth, "");
    l = LLVMBuildMul(cg->b, l, a, "");
    h = LLVMBuildMul(cg->b, h, a, "");
    *lo = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, l, total, ""), l, total, "lo");
    *hi = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, h, total, ""), h, total, "hi");
}

void nn_cg_vloop(NnCg *cg, LLVMValueRef lo, LLVMValueRef hi, int w, NnPointFn fn, void *ctx)
{
    LLVMValueRef start = lo;
    if (w > 1) {
        NnLoop l;
        nn_cg_loop_begin(cg, &l, lo, hi, w);
        fn(cg, ctx, l.iv, w);
        nn_cg_loop_end(cg, &l);
        start = l.iv;
    }
    NnLoop t;
    nn_cg_loop_begin(cg, &t, start, hi, 1);
    fn(cg, ctx, t.iv, 1);
    nn_cg_loop_end(cg, &t);
}
