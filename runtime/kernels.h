// The compute kernels of libnnrt, shared by the interpreter and generated code.
// Every kernel takes a const argument struct plus (ith, nth) and computes only
// its own slice of the output, so nnrt_pool_run can spread it over threads; the
// nnrt_*_par helpers do that dispatch (pool may be NULL: serial), skipping the
// pool for small sizes. Kernels never allocate: scratch comes from the caller.
// Tensors are dense, row-major; f32/f64 everywhere, i32 where the op needs it.
// The counter-based random functions at the end are an ABI: generated code must
// reproduce them bit for bit, so their formulas are spelled out here.
#ifndef NNRT_KERNELS_H
#define NNRT_KERNELS_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "nnrt.h"
#include "pool.h"

// ---- broadcasting ---------------------------------------------------------

// Up to 3 operands read with numpy broadcasting into an output of `shape`.
// stride[k][d] is operand k's element stride along output dim d (0 where the
// operand is broadcast). nnrt_bcast_init merges dims that are contiguous for
// every operand, so a same-shape op becomes rank 1 and a scalar op has stride 0.
typedef struct NnrtBcast {
    int rank;                       // after merging; >= 1
    int nin;                        // 1..3
    int64_t numel;                  // output elements
    int64_t shape[NN_MAX_RANK];
    int64_t stride[3][NN_MAX_RANK];
} NnrtBcast;

// false (with nnrt_errmsg set, NN_ERR_SHAPE) when the shapes do not broadcast to
// `oshape`. ishape[k] has irank[k] dims, right-aligned against oshape.
bool nnrt_bcast_init(NnrtBcast *b, int orank, const int64_t *oshape, int nin, const int *irank,
                     const int64_t *const *ishape);

// ---- elementwise ----------------------------------------------------------

typedef enum NnrtUnOp {
    NNRT_NEG, NNRT_EXP, NNRT_LOG, NNRT_SQRT, NNRT_TANH, NNRT_SIGMOID, NNRT_ABS, NNRT_SIN,
    NNRT_COS, NNRT_COPY
} NnrtUnOp;

// Comparisons give 1 or 0 in the operands' dtype.
typedef enum NnrtBinOp {
    NNRT_ADD, NNRT_SUB, NNRT_MUL, NNRT_DIV, NNRT_POW, NNRT_MAX, NNRT_MIN,
    NNRT_GT, NNRT_GE, NNRT_LT, NNRT_LE, NNRT_EQ, NNRT_NE
} NnrtBinOp;

// y = op(x) over b (nin 1; x read with b.stride[0]; y dense). i32 supports
// NEG, ABS and COPY only (integer arithmetic wraps, never traps).
typedef struct NnrtUnary {
    NnrtUnOp op;
    NnDType dt;
    const NnrtBcast *b;
    const void *x;
    void *y;
} NnrtUnary;
void nnrt_unary(const NnrtUnary *a, int ith, int nth);
void nnrt_unary_par(NnrtPool *p, const NnrtUnary *a);
// false if (op, dt) is not supported.
bool nnrt_unary_ok(NnrtUnOp op, NnDType dt);

// z = x op y over b (nin 2). i32: integer semantics; x / 0 gives 0; pow rounds
// toward zero. Float MAX/MIN propagate NaN from either operand.
typedef struct NnrtBinary {
    NnrtBinOp op;
    NnDType dt;
    const NnrtBcast *b;
    const void *x, *y;
    void *z;
} NnrtBinary;
void nnrt_binary(const NnrtBinary *a, int ith, int nth);
void nnrt_binary_par(NnrtPool *p, const NnrtBinary *a);

// out = c != 0 ? x : y over b (nin 3: c, x, y); c has dtype cdt, x/y/out dt.
typedef struct NnrtSelect {
    NnDType dt, cdt;
    const NnrtBcast *b;
    const void *c, *x, *y;
    void *out;
} NnrtSelect;
void nnrt_select(const NnrtSelect *a, int ith, int nth);
void nnrt_select_par(NnrtPool *p, const NnrtSelect *a);

// y[i] = (to) x[i], n elements, dense. Float -> i32 truncates toward zero,
// saturates at the i32 range and maps NaN to 0.
typedef struct NnrtCast {
    NnDType from, to;
    int64_t n;
    const void *x;
    void *y;
} NnrtCast;
void nnrt_cast(const NnrtCast *a, int ith, int nth);
void nnrt_cast_par(NnrtPool *p, const NnrtCast *a);

// y[i] = v (converted to dt), n elements.
void nnrt_fill(NnDType dt, void *y, int64_t n, double v);

// ---- matmul ---------------------------------------------------------------

// c[m, n] = op(a) @ op(b), op(a) is [m, k] (a is [k, m] when ta), op(b) is
// [k, n] (b is [n, k] when tb). f32 packs B into `pack` (nnrt_matmul_pack_size
// bytes, 64-byte aligned) in phase 0, then computes in phase 1; the two phases
// must be separate dispatches (nnrt_matmul_par does both). f64 ignores pack.
typedef struct NnrtMatmul {
    NnDType dt;
    int64_t m, n, k;
    bool ta, tb;
    const void *a, *b;
    void *c;
    void *pack;
} NnrtMatmul;
size_t nnrt_matmul_pack_size(NnDType dt, int64_t n, int64_t k);
void nnrt_matmul_pack(const NnrtMatmul *a, int ith, int nth);
void nnrt_matmul_compute(const NnrtMatmul *a, int ith, int nth);
void nnrt_matmul_par(NnrtPool *p, const NnrtMatmul *a);

// ---- reductions -----------------------------------------------------------

typedef enum NnrtRedOp { NNRT_RSUM, NNRT_RMEAN, NNRT_RMAX, NNRT_RLSE } NnrtRedOp;

// y = reduce(x) over the dims in `axes` (bit d = dim d). y is dense with the
// reduced dims removed (same layout as keeping them as 1). Sums accumulate in
// double. LSE is max + log(sum(exp(x - max))); an all -inf slice gives -inf.
// An empty slice gives 0 (sum), NaN (mean), -inf (max, lse).
typedef struct NnrtReduce {
    NnrtRedOp op;
    NnDType dt;               // f32, f64; i32 too (results saturate)
    int rank;
    int64_t shape[NN_MAX_RANK];
    uint32_t axes;
    const void *x;
    void *y;
} NnrtReduce;
void nnrt_reduce(const NnrtReduce *a, int ith, int nth);
void nnrt_reduce_par(NnrtPool *p, const NnrtReduce *a);

// y (i32) = index of the first maximum of x along `axis` (dim removed). NaN
// compares like C (never greater), so an all-NaN slice gives 0.
typedef struct NnrtArgmax {
    NnDType dt;
    int rank;
    int64_t shape[NN_MAX_RANK];
    int axis;
    const void *x;
    int32_t *y;
} NnrtArgmax;
void nnrt_argmax(const NnrtArgmax *a, int ith, int nth);

// ---- layout ---------------------------------------------------------------

// y = x transposed: y dim i = x dim perm[i]. Any dtype (by element size).
typedef struct NnrtTranspose {
    size_t esize;
    int rank;
    int64_t shape[NN_MAX_RANK]; // of x
    int perm[NN_MAX_RANK];
    const void *x;
    void *y;
} NnrtTranspose;
void nnrt_transpose(const NnrtTranspose *a, int ith, int nth);
void nnrt_transpose_par(NnrtPool *p, const NnrtTranspose *a);

// y = x broadcast to b's shape (b from nnrt_bcast_init with nin 1), any dtype.
typedef struct NnrtBroadcast {
    size_t esize;
    const NnrtBcast *b;
    const void *x;
    void *y;
} NnrtBroadcast;
void nnrt_broadcast(const NnrtBroadcast *a, int ith, int nth);
void nnrt_broadcast_par(NnrtPool *p, const NnrtBroadcast *a);

// The reduce_sum axes that take x (xrank dims) to `shape` (rank <= xrank,
// right-aligned): leading extra dims, and dims where shape is 1 and x is not.
// false (nnrt_errmsg set) if x cannot have been broadcast from shape.
bool nnrt_sumto_axes(int xrank, const int64_t *xshape, int rank, const int64_t *shape,
                     uint32_t *axes);

// ---- indexing and losses --------------------------------------------------

// y[i] = x[i, idx[i]], x is [n, c] of dt. Returns the first i with idx[i]
// outside [0, c), or -1 when all are valid (invalid ones give 0).
typedef struct NnrtTake {
    NnDType dt;
    int64_t n, c;
    const void *x;
    const int32_t *idx;
    void *y;
} NnrtTake;
int64_t nnrt_take(const NnrtTake *a);

// y[i, j] = (idx[i] == j), y is [n, depth] of dt. Returns the first i with an
// index outside [0, depth), or -1 (an invalid index gives an all-zero row).
typedef struct NnrtOnehot {
    NnDType dt;
    int64_t n, depth;
    const int32_t *idx;
    void *y;
} NnrtOnehot;
int64_t nnrt_onehot(const NnrtOnehot *a);

// Rows of a table: y[i, :] = x[idx[i], :] for i < n, x is [v, d] of dt.
// Returns the first i with idx[i] outside [0, v), or -1 (such rows give 0).
typedef struct NnrtGather {
    NnDType dt;
    int64_t n, v, d;
    const void *x;
    const int32_t *idx;
    void *y;
} NnrtGather;
int64_t nnrt_gather(const NnrtGather *a);

// The adjoint of gather: y [v, d] = 0, then y[idx[i], :] += x[i, :] for i < n
// in order (so the sums are reproducible). Out-of-range ids are skipped.
typedef struct NnrtScatterAdd {
    NnDType dt;
    int64_t n, v, d;
    const void *x;
    const int32_t *idx;
    void *y;
} NnrtScatterAdd;
void nnrt_scatter_add(const NnrtScatterAdd *a);

// ---- random numbers (ABI) -------------------------------------------------
//
// Counter-based: element i of a draw with (seed, step) depends on nothing else.
//   mix64(z):  z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
//              z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31   (splitmix64)
//   key(seed, step) = mix64(seed ^ mix64(step * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019))
//   bits(seed, step, i) = mix64(key + i * 0x9E3779B97F4A7C15)     (all mod 2^64)
//   uniform_f64 = (bits >> 11) * 2^-53           in [0, 1)
//   uniform_f32 = (float)((bits >> 40) * 2^-24)  in [0, 1), exact
//   normal(i): u1 = uniform_f64(2i), u2 = uniform_f64(2i + 1);
//              sqrt(-2 log(1 - u1)) * cos(2 pi u2), computed in double, then
//              rounded to the output dtype
//   dropout: element i is kept iff uniform_f64(seed, step, i) >= rate; kept
//            elements become x * (1 / (1 - rate)), multiplied in double and
//            rounded to the dtype; dropped ones 0 (rate >= 1 drops all).
// The step counter comes from a scalar tensor: step = (uint64_t)llround(value)
// (nnrt_rand_step).

static inline uint64_t nnrt_mix64(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z;
}

static inline uint64_t nnrt_rand_key(uint64_t seed, uint64_t step)
{
    return nnrt_mix64(seed ^ nnrt_mix64(step * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull));
}

static inline uint64_t nnrt_rand_bits(uint64_t key, uint64_t i)
{
    return nnrt_mix64(key + i * 0x9E3779B97F4A7C15ull);
}

static inline double nnrt_rand_uniform(uint64_t seed, uint64_t step, uint64_t i)
{
    return (double)(nnrt_rand_bits(nnrt_rand_key(seed, step), i) >> 11) * 0x1p-53;
}

static inline float nnrt_rand_uniform_f32(uint64_t seed, uint64_t step, uint64_t i)
{
    return (float)(nnrt_rand_bits(nnrt_rand_key(seed, step), i) >> 40) * 0x1p-24f;
}

static inline double nnrt_rand_normal(uint64_t seed, uint64_t step, uint64_t i)
{
    uint64_t key = nnrt_rand_key(seed, step);
    double u1 = (double)(nnrt_rand_bits(key, 2 * i) >> 11) * 0x1p-53;
    double u2 = (double)(nnrt_rand_bits(key, 2 * i + 1) >> 11) * 0x1p-53;
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

static inline uint64_t nnrt_rand_step(double v)
{
    // llround of NaN or of huge values is unspecified: clamp first.
    if (!(v > -9.2e18 && v < 9.2e18))
        return 0;
    return (uint64_t)llround(v);
}

typedef enum NnrtRandKind { NNRT_UNIFORM, NNRT_NORMAL } NnrtRandKind;

// y[i] = uniform/normal(seed, step, i), n elements of dt (f32/f64).
typedef struct NnrtRand {
    NnrtRandKind kind;
    NnDType dt;
    uint64_t seed, step;
    int64_t n;
    void *y;
} NnrtRand;
void nnrt_rand(const NnrtRand *a, int ith, int nth);
void nnrt_rand_par(NnrtPool *p, const NnrtRand *a);

// y[i] = keep(i) ? x[i] / (1 - rate) : 0, n dense elements of dt (f32/f64).
typedef struct NnrtDropout {
    NnDType dt;
    uint64_t seed, step;
    double rate;
    int64_t n;
    const void *x;
    void *y;
} NnrtDropout;
void nnrt_dropout(const NnrtDropout *a, int ith, int nth);
void nnrt_dropout_par(NnrtPool *p, const NnrtDropout *a);

// ---- convolution and pooling (kernels/conv.c) -------------------------------

// NCHW, f32 or f64. The image is [n, c, h, w], filters [f, c/groups, kh, kw],
// the forward result [n, f, oh, ow] (pooling: f = c). Padding bottom/right is
// implied by oh, ow: a window position outside the image reads zero (max
// pooling skips it). Each op writes every element of y:
//   CONV:        y = conv(x, wt)                    [n, f, oh, ow]
//   BWD_DATA:    y = d conv / d x applied to dy     [n, c, h, w] (also the
//                transposed convolution, with dy as its input)
//   BWD_FILTER:  y = d conv / d wt applied to dy    [f, c/groups, kh, kw]
//   MAXPOOL:     y = max over each window           [n, c, oh, ow]
//   MAXPOOL_BWD: y = dy routed to the first maximum of each window of x (row-
//                major), summed where windows overlap [n, c, h, w]
//   AVGPOOL:     y = window sum / (kh*kw)           [n, c, oh, ow]
//   AVGPOOL_BWD: y = its adjoint applied to dy      [n, c, h, w]
// A max window with no element inside the image gives 0 (shape rules keep
// padding within half the window, so only tiny images with large dilation can
// have one).
typedef enum NnrtConvOp {
    NNRT_CONV,
    NNRT_CONV_BWD_DATA,
    NNRT_CONV_BWD_FILTER,
    NNRT_MAXPOOL,
    NNRT_MAXPOOL_BWD,
    NNRT_AVGPOOL,
    NNRT_AVGPOOL_BWD,
} NnrtConvOp;

typedef struct NnrtConv2d {
    NnrtConvOp op;
    NnDType dt;                 // f32 or f64
    int64_t n, c, h, w;         // the image (the forward op's input)
    int64_t f, oh, ow;          // the forward op's result [n, f, oh, ow]
    int kh, kw, sh, sw, dh, dw; // kernel, stride >= 1, dilation >= 1
    int pt, pl;                 // padding top and left
    int groups;                 // divides c and f; 1 for pooling
    const void *x;              // the image: CONV, BWD_FILTER and the pools
    const void *wt;             // the filters: CONV, BWD_DATA
    const void *dy;             // [n, f, oh, ow]: the *_BWD ops
    void *y;
    void *scratch; // nnrt_conv2d_scratch_size bytes, 64-byte aligned, or NULL
} NnrtConv2d;
// The direct kernel: one dispatch, no scratch.
void nnrt_conv2d(const NnrtConv2d *a, int ith, int nth);
// Scratch that lets nnrt_conv2d_par run the three convolution ops as im2col
// and the packed matmul (per image and group); 0 where it keeps to the direct
// kernel (pooling, depthwise).
size_t nnrt_conv2d_scratch_size(const NnrtConv2d *a);
// Runs op a over the pool: im2col + matmul when a->scratch is set and the op
// uses it, else the direct kernel. Same results either way up to rounding.
void nnrt_conv2d_par(NnrtPool *p, const NnrtConv2d *a);

// ---- pad, slice, concat (kernels/layout.c), any dtype ---------------------

// y = x with lo[d] / hi[d] elements of `value` added before / after dim d.
typedef struct NnrtPad {
    NnDType dt;
    int rank;
    int64_t shape[NN_MAX_RANK]; // of x
    int64_t lo[NN_MAX_RANK], hi[NN_MAX_RANK];
    double value;
    const void *x;
    void *y;
} NnrtPad;
void nnrt_pad(const NnrtPad *a, int ith, int nth);
void nnrt_pad_par(NnrtPool *p, const NnrtPad *a);

// A tensor seen as [outer, dim, inner]; its rows start, start+step, ... (len
// of them) along dim correspond to the rows of a [outer, len, inner] tensor.
//   GET:   y [outer, len, inner] = those rows of x [outer, dim, inner]
//   PUT:   y [outer, dim, inner] = x placed at those rows, zero elsewhere
//   PLACE: like PUT, but rows elsewhere are left as they are (concat)
typedef enum NnrtSliceOp { NNRT_SLICE_GET, NNRT_SLICE_PUT, NNRT_SLICE_PLACE } NnrtSliceOp;
typedef struct NnrtSlice {
    NnrtSliceOp op;
    size_t esize;
    int64_t outer, dim, inner;
    int64_t start, step, len;
    const void *x;
    void *y;
} NnrtSlice;
void nnrt_slice(const NnrtSlice *a, int ith, int nth);
void nnrt_slice_par(NnrtPool *p, const NnrtSlice *a);

// [lo, hi) of n items for thread ith of nth, in chunks that are multiples of
// `align` (except the last), so threads never share a cache line of output.
static inline void nnrt_split(int64_t n, int64_t align, int ith, int nth, int64_t *lo, int64_t *hi)
{
    int64_t chunks = (n + align - 1) / align;
    int64_t c0 = chunks * ith / nth, c1 = chunks * (ith + 1) / nth;
    *lo = c0 * align < n ? c0 * align : n;
    *hi = c1 * align < n ? c1 * align : n;
}

#endif
