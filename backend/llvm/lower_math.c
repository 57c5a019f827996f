// The value of one elementwise op on w-lane operands, with exactly the
// runtime kernels' semantics (runtime/kernels.h): NaN-propagating MAX/MIN, i32
// division by zero giving 0, saturating float -> i32 casts, the sigmoid split
// at 0, and the counter-based random numbers of the RNG ABI bit for bit.
// Transcendentals call libm per lane (the same functions the runtime calls).
#include <math.h>
#include <string.h>

#include "nn_llvm.h"

static LLVMTypeRef elem_type(LLVMValueRef v)
{
    LLVMTypeRef t = LLVMTypeOf(v);
    return LLVMGetTypeKind(t) == LLVMVectorTypeKind ? LLVMGetElementType(t) : t;
}

static LLVMValueRef lane(NnCg *cg, LLVMValueRef v, int i, int w)
{
    return w == 1 ? v : LLVMBuildExtractElement(cg->b, v, nn_cg_i32(cg, i), "");
}

// f(args) per lane through a libm function.
static LLVMValueRef lanewise(NnCg *cg, const char *fname, LLVMValueRef *a, int nargs, int w)
{
    LLVMTypeRef st = elem_type(a[0]);
    if (w == 1)
        return nn_cg_call(cg, fname, st, a, nargs);
    LLVMValueRef out = LLVMGetPoison(LLVMVectorType(st, (unsigned)w));
    for (int i = 0; i < w; i++) {
        LLVMValueRef s[3];
        for (int k = 0; k < nargs; k++)
            s[k] = lane(cg, a[k], i, w);
        LLVMValueRef r = nn_cg_call(cg, fname, st, s, nargs);
        out = LLVMBuildInsertElement(cg->b, out, r, nn_cg_i32(cg, i), "");
    }
    return out;
}

static LLVMValueRef intrin1(NnCg *cg, const char *name, LLVMValueRef x);

static LLVMValueRef fma3(NnCg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMTypeRef t = LLVMTypeOf(a);
    LLVMValueRef args[3] = {a, b, c};
    return nn_cg_intrinsic(cg, "llvm.fma", &t, 1, args, 3);
}

// Horner's rule: c[0] * x^(n-1) + ... + c[n-1].
static LLVMValueRef poly(NnCg *cg, LLVMValueRef x, const double *c, int n, int w)
{
    LLVMValueRef y = nn_cg_const(cg, NN_DT_F32, c[0], w);
    for (int i = 1; i < n; i++)
        y = fma3(cg, y, x, nn_cg_const(cg, NN_DT_F32, c[i], w));
    return y;
}

// 2^n for i32 lanes n in [-126, 127], as float bits.
static LLVMValueRef pow2i(NnCg *cg, LLVMValueRef n, int w)
{
    LLVMValueRef e = LLVMBuildAdd(cg->b, n, nn_cg_const(cg, NN_DT_I32, 127, w), "");
    e = LLVMBuildShl(cg->b, e, nn_cg_const(cg, NN_DT_I32, 23, w), "");
    return LLVMBuildBitCast(cg->b, e, nn_cg_vtype(cg, NN_DT_F32, w), "");
}

// expf in vector form (Cephes): x = n ln2 + r, |r| <= ln2/2, e^r by a degree-7
// polynomial, times 2^n split in two factors so results down to denormals round
// right. About 1 ulp; NaN stays NaN, +-inf give inf and 0.
static LLVMValueRef vexp_f32(NnCg *cg, LLVMValueRef x, int w)
{
    static const double p[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                               4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
    LLVMBuilderRef b = cg->b;
    LLVMValueRef hi = nn_cg_const(cg, NN_DT_F32, 89, w), lo = nn_cg_const(cg, NN_DT_F32, -104, w);
    x = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, x, hi, ""), hi, x, "");
    x = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, x, lo, ""), lo, x, "");
    LLVMValueRef n =
        intrin1(cg, "llvm.rint",
                LLVMBuildFMul(b, x, nn_cg_const(cg, NN_DT_F32, 1.44269504088896341, w), ""));
    LLVMValueRef r = fma3(cg, n, nn_cg_const(cg, NN_DT_F32, -0.693359375, w), x);
    r = fma3(cg, n, nn_cg_const(cg, NN_DT_F32, 2.12194440e-4, w), r);
    LLVMValueRef z = LLVMBuildFMul(b, r, r, "");
    LLVMValueRef y = fma3(cg, poly(cg, r, p, 6, w), z, r);
    y = LLVMBuildFAdd(b, y, nn_cg_const(cg, NN_DT_F32, 1, w), "");
    // n is a whole number in [-150, 129] or NaN (then 0: y is NaN already), so a
    // plain conversion is exact: one vector instruction, where the saturating
    // one became a scalar conversion and two branches per lane.
    n = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealUNO, n, n, ""),
                        nn_cg_const(cg, NN_DT_F32, 0, w), n, "");
    LLVMValueRef ni = LLVMBuildFPToSI(b, n, nn_cg_vtype(cg, NN_DT_I32, w), "");
    LLVMValueRef n1 = LLVMBuildAShr(b, ni, nn_cg_const(cg, NN_DT_I32, 1, w), "");
    LLVMValueRef n2 = LLVMBuildSub(b, ni, n1, "");
    y = LLVMBuildFMul(b, y, pow2i(cg, n1, w), "");
    return LLVMBuildFMul(b, y, pow2i(cg, n2, w), "");
}

// tanhf (Cephes): an odd polynomial below |x| = 0.625, else 1 - 2 / (e^2|x| + 1)
// with x's sign. About 2 ulp.
static LLVMValueRef vtanh_f32(NnCg *cg, LLVMValueRef x, int w)
{
    static const double p[] = {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2,
                               1.33314422036E-1, -3.33332819422E-1};
    LLVMBuilderRef b = cg->b;
    LLVMValueRef ax = intrin1(cg, "llvm.fabs", x);
    LLVMValueRef z = LLVMBuildFMul(b, x, x, "");
    LLVMValueRef small = fma3(cg, LLVMBuildFMul(b, poly(cg, z, p, 5, w), z, ""), x, x);
    LLVMValueRef one = nn_cg_const(cg, NN_DT_F32, 1, w);
    LLVMValueRef e = vexp_f32(cg, LLVMBuildFAdd(b, ax, ax, ""), w);
    LLVMValueRef big = LLVMBuildFSub(
        b, one,
        LLVMBuildFDiv(b, nn_cg_const(cg, NN_DT_F32, 2, w), LLVMBuildFAdd(b, e, one, ""), ""), "");
    LLVMTypeRef t = LLVMTypeOf(x);
    LLVMValueRef cs[2] = {big, x};
    big = nn_cg_intrinsic(cg, "llvm.copysign", &t, 1, cs, 2);
    LLVMValueRef lt = LLVMBuildFCmp(b, LLVMRealOLT, ax, nn_cg_const(cg, NN_DT_F32, 0.625, w), "");
    return LLVMBuildSelect(b, lt, small, big, "");
}

// logf (Cephes): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a polynomial
// in m - 1, plus e ln2 in two parts. Denormals are scaled up first. About 1 ulp;
// log(0) = -inf, log(x < 0) = NaN, log(inf) = inf.
static LLVMValueRef vlog_f32(NnCg *cg, LLVMValueRef x, int w)
{
    static const double p[] = {7.0376836292E-2,  -1.1514610310E-1, 1.1676998740E-1,
                               -1.2420140846E-1, 1.4249322787E-1,  -1.6668057665E-1,
                               2.0000714765E-1,  -2.4999993993E-1, 3.3333331174E-1};
    LLVMBuilderRef b = cg->b;
    LLVMTypeRef it = nn_cg_vtype(cg, NN_DT_I32, w), ft = nn_cg_vtype(cg, NN_DT_F32, w);
    LLVMValueRef fmin = nn_cg_const(cg, NN_DT_F32, 0x1p-126, w);
    LLVMValueRef tiny = LLVMBuildFCmp(b, LLVMRealOLT, x, fmin, "");
    LLVMValueRef xs = LLVMBuildSelect(
        b, tiny, LLVMBuildFMul(b, x, nn_cg_const(cg, NN_DT_F32, 0x1p23, w), ""), x, "");
    LLVMValueRef bits = LLVMBuildBitCast(b, xs, it, "");
    LLVMValueRef e =
        LLVMBuildSub(b,
                     LLVMBuildAnd(b, LLVMBuildLShr(b, bits, nn_cg_const(cg, NN_DT_I32, 23, w), ""),
                                  nn_cg_const(cg, NN_DT_I32, 255, w), ""),
                     nn_cg_const(cg, NN_DT_I32, 126, w), "");
    e = LLVMBuildSelect(b, tiny, LLVMBuildSub(b, e, nn_cg_const(cg, NN_DT_I32, 23, w), ""), e, "");
    // Keep sign and mantissa (0x807fffff as an i32), exponent of 0.5.
    LLVMValueRef keep = nn_cg_const(cg, NN_DT_I32, -2139095041.0, w);
    LLVMValueRef mb = LLVMBuildOr(b, LLVMBuildAnd(b, bits, keep, ""),
                                  nn_cg_const(cg, NN_DT_I32, 0x3f000000, w), "");
    LLVMValueRef m = LLVMBuildBitCast(b, mb, ft, "");
    LLVMValueRef one = nn_cg_const(cg, NN_DT_F32, 1, w);
    LLVMValueRef half = nn_cg_const(cg, NN_DT_F32, 0.707106781186547524, w);
    LLVMValueRef lo = LLVMBuildFCmp(b, LLVMRealOLT, m, half, "");
    e = LLVMBuildSelect(b, lo, LLVMBuildSub(b, e, nn_cg_const(cg, NN_DT_I32, 1, w), ""), e, "");
    m = LLVMBuildSelect(b, lo, LLVMBuildFAdd(b, m, m, ""), m, "");
    m = LLVMBuildFSub(b, m, one, "");
    LLVMValueRef z = LLVMBuildFMul(b, m, m, "");
    LLVMValueRef y = LLVMBuildFMul(b, LLVMBuildFMul(b, poly(cg, m, p, 9, w), m, ""), z, "");
    LLVMValueRef ef = LLVMBuildSIToFP(b, e, ft, "");
    y = fma3(cg, ef, nn_cg_const(cg, NN_DT_F32, -2.12194440e-4, w), y);
    y = fma3(cg, z, nn_cg_const(cg, NN_DT_F32, -0.5, w), y);
    LLVMValueRef r = LLVMBuildFAdd(b, m, y, "");
    r = fma3(cg, ef, nn_cg_const(cg, NN_DT_F32, 0.693359375, w), r);
    // Special values, in the order libm gives them.
    LLVMValueRef inf = nn_cg_const(cg, NN_DT_F32, INFINITY, w);
    r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOEQ, x, inf, ""), inf, r, "");
    r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOEQ, x, nn_cg_const(cg, NN_DT_F32, 0, w), ""),
                        nn_cg_const(cg, NN_DT_F32, -INFINITY, w), r, "");
    return LLVMBuildSelect(b,
                           LLVMBuildFCmp(b, LLVMRealOGE, x, nn_cg_const(cg, NN_DT_F32, 0, w), ""),
                           r, nn_cg_const(cg, NN_DT_F32, NAN, w), "");
}

static LLVMValueRef libm1(NnCg *cg, NnDType dt, const char *f64name, LLVMValueRef x, int w)
{
    if (dt == NN_DT_F32 && strcmp(f64name, "log") == 0)
        return vlog_f32(cg, x, w);
    if (dt == NN_DT_F32 && strcmp(f64name, "exp") == 0)
        return vexp_f32(cg, x, w);
    if (dt == NN_DT_F32 && strcmp(f64name, "tanh") == 0)
        return vtanh_f32(cg, x, w);
    char name[16];
    snprintf(name, sizeof name, "%s%s", f64name, dt == NN_DT_F32 ? "f" : "");
    return lanewise(cg, name, &x, 1, w);
}

static LLVMValueRef intrin1(NnCg *cg, const char *name, LLVMValueRef x)
{
    LLVMTypeRef t = LLVMTypeOf(x);
    return nn_cg_intrinsic(cg, name, &t, 1, &x, 1);
}

static LLVMValueRef sigmoid(NnCg *cg, NnDType dt, LLVMValueRef x, int w)
{
    // x >= 0 ? 1 / (1 + e^-x) : e^x / (1 + e^x), with one exp of -|x| and one
    // division (of the numerator chosen first: the same values).
    LLVMValueRef one = nn_cg_const(cg, dt, 1, w), zero = nn_cg_const(cg, dt, 0, w);
    LLVMValueRef e = libm1(cg, dt, "exp", LLVMBuildFNeg(cg->b, intrin1(cg, "llvm.fabs", x), ""), w);
    LLVMValueRef d = LLVMBuildFAdd(cg->b, one, e, "");
    LLVMValueRef num =
        LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGE, x, zero, ""), one, e, "");
    return LLVMBuildFDiv(cg->b, num, d, "");
}

static LLVMValueRef cast(NnCg *cg, NnDType from, NnDType to, LLVMValueRef x, int w)
{
    LLVMTypeRef t = nn_cg_vtype(cg, to, w);
    if (from == to)
        return x;
    if (to == NN_DT_I32) {
        // Truncates, saturates and maps NaN to 0, like the runtime's cast.
        LLVMTypeRef ovl[2] = {t, LLVMTypeOf(x)};
        return nn_cg_intrinsic(cg, "llvm.fptosi.sat", ovl, 2, &x, 1);
    }
    if (from == NN_DT_I32)
        return LLVMBuildSIToFP(cg->b, x, t, "");
    return to == NN_DT_F64 ? LLVMBuildFPExt(cg->b, x, t, "") : LLVMBuildFPTrunc(cg->b, x, t, "");
}

static LLVMValueRef idiv(NnCg *cg, LLVMValueRef a, LLVMValueRef b, int w)
{
    // x / 0 = 0 and INT_MIN / -1 = INT_MIN, never a trap.
    LLVMValueRef zero = nn_cg_const(cg, NN_DT_I32, 0, w), one = nn_cg_const(cg, NN_DT_I32, 1, w);
    LLVMValueRef bz = LLVMBuildICmp(cg->b, LLVMIntEQ, b, zero, "");
    LLVMValueRef ovf = LLVMBuildAnd(
        cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, a, nn_cg_const(cg, NN_DT_I32, INT32_MIN, w), ""),
        LLVMBuildICmp(cg->b, LLVMIntEQ, b, nn_cg_const(cg, NN_DT_I32, -1, w), ""), "");
    LLVMValueRef sb = LLVMBuildSelect(cg->b, LLVMBuildOr(cg->b, bz, ovf, ""), one, b, "");
    return LLVMBuildSelect(cg->b, bz, zero, LLVMBuildSDiv(cg->b, a, sb, ""), "");
}

static LLVMValueRef compare(NnCg *cg, NnOp op, NnDType dt, LLVMValueRef a, LLVMValueRef b, int w)
{
    static const LLVMRealPredicate fp[] = {LLVMRealOGT, LLVMRealOGE, LLVMRealOLT,
                                           LLVMRealOLE, LLVMRealOEQ, LLVMRealUNE};
    static const LLVMIntPredicate ip[] = {LLVMIntSGT, LLVMIntSGE, LLVMIntSLT,
                                          LLVMIntSLE, LLVMIntEQ,  LLVMIntNE};
    int k = (int)(op - NN_OP_GT);
    LLVMValueRef c = dt == NN_DT_I32 ? LLVMBuildICmp(cg->b, ip[k], a, b, "")
                                     : LLVMBuildFCmp(cg->b, fp[k], a, b, "");
    LLVMTypeRef t = nn_cg_vtype(cg, dt, w);
    return dt == NN_DT_I32 ? LLVMBuildZExt(cg->b, c, t, "") : LLVMBuildUIToFP(cg->b, c, t, "");
}

// ---- random numbers (runtime/kernels.h, "random numbers (ABI)") ----

static LLVMValueRef k64(NnCg *cg, uint64_t v, int w)
{
    LLVMValueRef c = LLVMConstInt(cg->t_i64, v, 0);
    if (w == 1)
        return c;
    LLVMValueRef l[64];
    for (int i = 0; i < w; i++)
        l[i] = c;
    return LLVMConstVector(l, (unsigned)w);
}

static LLVMValueRef mix64(NnCg *cg, LLVMValueRef z, int w)
{
    z = LLVMBuildXor(cg->b, z, LLVMBuildLShr(cg->b, z, k64(cg, 30, w), ""), "");
    z = LLVMBuildMul(cg->b, z, k64(cg, 0xBF58476D1CE4E5B9ull, w), "");
    z = LLVMBuildXor(cg->b, z, LLVMBuildLShr(cg->b, z, k64(cg, 27, w), ""), "");
    z = LLVMBuildMul(cg->b, z, k64(cg, 0x94D049BB133111EBull, w), "");
    return LLVMBuildXor(cg->b, z, LLVMBuildLShr(cg->b, z, k64(cg, 31, w), ""), "");
}

LLVMValueRef nn_cg_rand_step(NnCg *cg, LLVMValueRef v)
{
    // nnrt_rand_step: llround of the value, 0 when out of range or NaN.
    LLVMTypeRef t = LLVMTypeOf(v);
    if (LLVMGetTypeKind(t) == LLVMIntegerTypeKind)
        return LLVMBuildSExt(cg->b, v, cg->t_i64, "");
    if (LLVMGetTypeKind(t) == LLVMFloatTypeKind)
        v = LLVMBuildFPExt(cg->b, v, cg->t_f64, "");
    LLVMValueRef ok = LLVMBuildAnd(
        cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGT, v, LLVMConstReal(cg->t_f64, -9.2e18), ""),
        LLVMBuildFCmp(cg->b, LLVMRealOLT, v, LLVMConstReal(cg->t_f64, 9.2e18), ""), "");
    LLVMValueRef safe = LLVMBuildSelect(cg->b, ok, v, LLVMConstReal(cg->t_f64, 0), "");
    // The intrinsic, unlike a call of llround (which may set errno), lets
    // LLVM hoist the key out of an elementwise loop (see dropout).
    LLVMTypeRef ovl[2] = {cg->t_i64, cg->t_f64};
    LLVMValueRef r = nn_cg_intrinsic(cg, "llvm.llround", ovl, 2, &safe, 1);
    return LLVMBuildSelect(cg->b, ok, r, nn_cg_i64(cg, 0), "");
}

LLVMValueRef nn_cg_rand_key(NnCg *cg, uint64_t seed, LLVMValueRef step)
{
    LLVMValueRef t = LLVMBuildMul(cg->b, step, k64(cg, 0x9E3779B97F4A7C15ull, 1), "");
    t = mix64(cg, LLVMBuildAdd(cg->b, t, k64(cg, 0x632BE59BD9B4E019ull, 1), ""), 1);
    return mix64(cg, LLVMBuildXor(cg->b, t, k64(cg, seed, 1), ""), 1);
}

LLVMValueRef nn_cg_rand_bits(NnCg *cg, LLVMValueRef key, LLVMValueRef idx, int w)
{
    LLVMValueRef t = LLVMBuildMul(cg->b, idx, k64(cg, 0x9E3779B97F4A7C15ull, w), "");
    return mix64(cg, LLVMBuildAdd(cg->b, nn_cg_splat(cg, key, w), t, ""), w);
}

// uniform_f64 of the bits: (bits >> 11) * 2^-53.
LLVMValueRef nn_cg_bits_f64(NnCg *cg, LLVMValueRef bits, int w)
{
    LLVMValueRef h = LLVMBuildLShr(cg->b, bits, k64(cg, 11, w), "");
    LLVMValueRef d = LLVMBuildUIToFP(cg->b, h, nn_cg_vtype(cg, NN_DT_F64, w), "");
    return LLVMBuildFMul(cg->b, d, nn_cg_const(cg, NN_DT_F64, 0x1p-53, w), "");
}

// The scalar load under a splat (extractelement, shufflevector and
// insertelement peeled off), or NULL.
static LLVMValueRef splat_load(LLVMValueRef v)
{
    for (int i = 0; i < 4 && v; i++) {
        if (LLVMIsALoadInst(v))
            return v;
        if (LLVMIsAExtractElementInst(v) || LLVMIsAShuffleVectorInst(v))
            v = LLVMGetOperand(v, 0);
        else if (LLVMIsAInsertElementInst(v))
            v = LLVMGetOperand(v, 1);
        else
            return NULL;
    }
    return NULL;
}

// The rate is a run-time scalar (input 2): the threshold and the keep-scale
// 1 / (1 - rate) are computed per kernel run, not baked in.
static LLVMValueRef dropout(NnCg *cg, const NnNode *n, NnDType dt, LLVMValueRef *a, int w,
                            LLVMValueRef idx)
{
    LLVMValueRef s = lane(cg, a[1], 0, w), rate = lane(cg, a[2], 0, w);
    // The step counter and the rate are kernel inputs, which no kernel writes
    // while it runs: marked invariant, their loads, the key and the scale
    // derived from them leave the loop instead of costing a scalar hash and a
    // division per vector (half of dropout's time).
    LLVMValueRef ld[2] = {splat_load(s), splat_load(rate)};
    for (int k = 0; k < 2; k++)
        if (ld[k])
            LLVMSetMetadata(ld[k], LLVMGetMDKindIDInContext(cg->ctx, "invariant.load", 14),
                            LLVMMetadataAsValue(cg->ctx, LLVMMDNodeInContext2(cg->ctx, NULL, 0)));
    LLVMValueRef step = nn_cg_rand_step(cg, s);
    LLVMValueRef key = nn_cg_rand_key(cg, n->attr.seed, step);
    LLVMValueRef u = nn_cg_bits_f64(cg, nn_cg_rand_bits(cg, key, idx, w), w);
    if (LLVMTypeOf(rate) != cg->t_f64)
        rate = LLVMBuildFPExt(cg->b, rate, cg->t_f64, "");
    LLVMValueRef one = LLVMConstReal(cg->t_f64, 1.0);
    LLVMValueRef scale = LLVMBuildFDiv(cg->b, one, LLVMBuildFSub(cg->b, one, rate, ""), "");
    LLVMValueRef keep = LLVMBuildFCmp(cg->b, LLVMRealOGE, u, nn_cg_splat(cg, rate, w), "");
    LLVMValueRef x = cast(cg, dt, NN_DT_F64, a[0], w);
    x = LLVMBuildFMul(cg->b, x, nn_cg_splat(cg, scale, w), "");
    x = cast(cg, NN_DT_F64, dt, x, w);
    return LLVMBuildSelect(cg->b, keep, x, nn_cg_const(cg, dt, 0, w), "");
}

LLVMValueRef nn_cg_elem_op(NnCg *cg, const NnNode *n, NnDType dt, LLVMValueRef *a, int w,
                           LLVMValueRef idx)
{
    bool f = dt != NN_DT_I32;
    LLVMBuilderRef b = cg->b;
    switch (n->op) {
    case NN_OP_CONST: return nn_cg_const(cg, n->dtype, n->attr.value, w);
    case NN_OP_NEG: return f ? LLVMBuildFNeg(b, a[0], "") : LLVMBuildNeg(b, a[0], "");
    case NN_OP_EXP: return libm1(cg, dt, "exp", a[0], w);
    case NN_OP_LOG: return libm1(cg, dt, "log", a[0], w);
    case NN_OP_SQRT: return intrin1(cg, "llvm.sqrt", a[0]);
    case NN_OP_TANH: return libm1(cg, dt, "tanh", a[0], w);
    case NN_OP_SIGMOID: return sigmoid(cg, dt, a[0], w);
    case NN_OP_SIN: return libm1(cg, dt, "sin", a[0], w);
    case NN_OP_COS: return libm1(cg, dt, "cos", a[0], w);
    case NN_OP_ABS:
        if (f)
            return intrin1(cg, "llvm.fabs", a[0]);
        else {
            LLVMTypeRef t = LLVMTypeOf(a[0]);
            LLVMValueRef args[2] = {a[0], LLVMConstInt(cg->t_i1, 0, 0)};
            return nn_cg_intrinsic(cg, "llvm.abs", &t, 1, args, 2);
        }
    case NN_OP_CAST: return cast(cg, dt, n->dtype, a[0], w);
    case NN_OP_ADD: return f ? LLVMBuildFAdd(b, a[0], a[1], "") : LLVMBuildAdd(b, a[0], a[1], "");
    case NN_OP_SUB: return f ? LLVMBuildFSub(b, a[0], a[1], "") : LLVMBuildSub(b, a[0], a[1], "");
    case NN_OP_MUL: return f ? LLVMBuildFMul(b, a[0], a[1], "") : LLVMBuildMul(b, a[0], a[1], "");
    case NN_OP_DIV: return f ? LLVMBuildFDiv(b, a[0], a[1], "") : idiv(cg, a[0], a[1], w);
    case NN_OP_POW: {
        char name[8];
        snprintf(name, sizeof name, "pow%s", dt == NN_DT_F32 ? "f" : "");
        return lanewise(cg, name, a, 2, w);
    }
    case NN_OP_MAX:
    case NN_OP_MIN: return nn_cg_binop(cg, n->op, dt, a[0], a[1]);
    case NN_OP_GT:
    case NN_OP_GE:
    case NN_OP_LT:
    case NN_OP_LE:
    case NN_OP_EQ:
    case NN_OP_NE: return compare(cg, n->op, dt, a[0], a[1], w);
    case NN_OP_SELECT: return LLVMBuildSelect(b, a[0], a[1], a[2], "");
    case NN_OP_DROPOUT: return dropout(cg, n, dt, a, w, idx);
    case NN_OP_EXTERN: return nn_cg_extern_call(cg, n, a, w);
    default: NN_UNREACHABLE();
    }
}
