// MATMUL and the M form of FUSED nodes: C = op(A) @ op(B), then an optional
// elementwise epilogue applied to each register tile before it is stored.
// Two kernels: "pack" copies op(B) into zero-padded column panels of NR = 2
// vectors (a scratch slot), transposing when tb (vw x vw blocks through
// registers); "mm" runs MR x NR register
// tiles (2*MR vector accumulators, one FMA per A element broadcast) over K in
// blocks of KC, panels in the outer loop so a B panel stays in L1 while the
// thread's A rows stream from L2 (a panel too large for L1 is prefetched a
// few k ahead); a transposed A (weight gradients) is first
// packed per block of rows, all of K, on the stack (pack_a). Threads split M
// tiles, or N panels if M is short or A small (emit_compute). NN_MM_SPLIT=m|n
// forces one, for experiments.
#include <stdlib.h>
#include <string.h>

#include "nn_llvm.h"

// Rows per register tile. 12 (24 accumulators, fewer loads and loop
// instructions per FMA) ran the 1024-row forward product about 5% faster, 1
// thread, but made the MLP step's compile 15-20% slower (the 150 ms target).
#define MM_MR 8
#define MM_KC 1024  // K block
// Vectors of an update's epilogue per MM_PIPE_K steps of K (pipe_begin); 0:
// off. Which wins depends on the core, so the default does (pipe_default).
// On the idle Intel Xeon (session 9) the pipelined schedule lost to the
// epilogue run at once once updates were written in place (x^T @ g1 + Adam,
// batch 128: p50 0.42-0.43 against 0.40-0.41 ms on 1 thread, 0.226-0.233
// against 0.215-0.218 on 2) and cost ~30 ms of compile: off there. On an
// AMD Zen 5 (session 11) it won in every one of 13 alternated pairs of runs
// (fastest run of each kernel): x^T @ g1 + Adam at batch 128 0.125-0.128
// against 0.130-0.134 ms on 2 threads and 0.240-0.246 against 0.255-0.257
// on 1, at batch 1024 0.926-0.964 against 0.985-1.03 on 2; h1^T @ g2 + Adam
// 0.0212-0.0214 against 0.0221-0.0225 (batch 128, 2 threads); no compile
// cost seen. There 1 or 4 vectors per chunk, chunks of 32 steps, or no
// prefetch lost to 2 per 16. NN_MM_PIPE=0|1|2|4|8 overrides either way.
#define MM_PIPE 2
#define MM_PIPE_K 16
#define MM_KCA 256  // K block of a packed op(A) whose K is past MM_APK_BYTES (pack_a)
#define MM_MC 128   // rows per L2 block of A (packed on the stack when ta)
#define MM_APK_BYTES (256 << 10) // the stack buffer of a packed op(A) (pack_a)
#define MM_PACK_K 64 // k per step of pack_a
// Kernels below this many FMAs (or the equivalent in reads of B) run on the
// calling thread alone: on 2 cores a pool dispatch costs a few microseconds,
// more than splitting saves below it. Measured: 128x10x128 and 128x128x10
// (164K FMAs, ~3 us) ran 1.4-2.7x slower on 2 threads than on 1, while
// 1x256x784 (200K FMAs, but each one a read of B from L2/L3, ~13 us) ran 2x faster.
#define MM_PAR_FMAS (1 << 19)
#define MM_NSPLIT_PANELS 8   // panels from which a product with a small A splits N (emit_compute)
#define MM_L2_BYTES (1 << 19) // what of one core's L2 (half) op(A) may fill for that
#define MM_NSPLIT_K 64        // and the shortest K for it
#define MM_READ_FMAS 4 // FMAs one element of B read from memory costs (unpacked paths)

typedef struct Mm {
    NnDType dt;
    bool ta, tb;
    int64_t m, n, k; // m or k stands for the run-time batch when rt_m or rt_k
    bool rt_m, rt_k;
    bool rt_rows; // rt_m, and a run-time M <= MM_ROWS takes the unpacked rows path
    LLVMValueRef mv, kv; // M and K in the current kernel (constants unless run-time)
    int vw, nr;      // lanes per vector, columns per panel (2 vectors)
    int nv;          // vectors of a panel the tiles compute: 1 when N fits one (tile)
    int64_t np;      // panels
    int64_t kblocks; // K blocks of KC (1 when K fits one block)
    int a_slot, b_slot, pack_slot, out_slot;
    bool split_m;     // threads split the M tiles, else the N panels
    bool inline_pack; // the compute kernel packs its own panels (no pack kernel)
    NnExpr *epi; // NULL: plain product
    NnDType out_dt;
    LLVMValueRef a, bp, c; // pointers in the current kernel
    // The block of op(A) packed by pack_a (NULL: the tiles read A in place):
    // the tiles from row apk_row0 on, each [k][MM_MR] over the K block (apk_ld
    // = its length, kc, or all of K). apk_pk: NULL when every run packs, else
    // whether this one does (a run-time K too long for the buffer reads A in
    // place instead).
    LLVMValueRef apk, apk_row0, apk_ld, apk_pk;
    LLVMValueRef acc[MM_MR][2];
    LLVMValueRef tbuf;    // stack copy of a tile for the epilogue loop
    // Pipelined update epilogue (pipe_begin): vectors per chunk of pipe_k
    // steps of K (0: the epilogue runs at once), and the parked tile's i0,
    // j0 and vectors (0: none parked).
    int pipe, pipe_k;
    bool pipe_pf; // and prefetches the next tile's operands (pend_vec)
    LLVMValueRef pend_i0, pend_j0, pend_nv;
    LLVMValueRef mask[2]; // column masks of the current panel, NULL when N % NR == 0
} Mm;

// The kernel's work in the units of NN_PAR_WORK (elements), so that exec and
// step dispatch it to the pool exactly when it costs MM_PAR_FMAS or more;
// `reads`: elements of B read from memory rather than from a packed panel.
static double mm_work(const Mm *m, int64_t reads)
{
    double fmas = (double)(m->m * m->n * m->k) + (double)reads * MM_READ_FMAS;
    return fmas * (NN_PAR_WORK / (double)MM_PAR_FMAS);
}

static LLVMValueRef mul(NnCg *cg, LLVMValueRef a, int64_t b)
{
    return LLVMBuildNSWMul(cg->b, a, nn_cg_i64(cg, b), "");
}

static LLVMValueRef add(NnCg *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWAdd(cg->b, a, b, "");
}

// Lanes (j0 + lane < n) of one vector, or NULL when every panel is full.
static LLVMValueRef col_mask(NnCg *cg, const Mm *m, LLVMValueRef j0)
{
    if (m->n % m->nr == 0)
        return NULL;
    LLVMValueRef lanes[64];
    for (int i = 0; i < m->vw; i++)
        lanes[i] = nn_cg_i64(cg, i);
    LLVMValueRef j = LLVMBuildAdd(cg->b, nn_cg_splat(cg, j0, m->vw),
                                  LLVMConstVector(lanes, (unsigned)m->vw), "");
    return LLVMBuildICmp(cg->b, LLVMIntSLT, j, nn_cg_splat(cg, nn_cg_i64(cg, m->n), m->vw), "");
}

// M and K as values in the kernel being emitted.
static void mm_dims(NnCg *cg, Mm *m)
{
    m->mv = nn_cg_extent(cg, m->m, m->rt_m);
    m->kv = nn_cg_extent(cg, m->k, m->rt_k);
}

static LLVMValueRef mulv(NnCg *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWMul(cg->b, a, b, "");
}

// Rows a product takes unpacked (emit_rows), defined below: the few rows of
// a step run as one dispatch (runtime/step.h).
#define MM_ROWS NNRT_FEW_ROWS
// The least of B a product with few rows reads for its columns to be split
// over the threads inside that one dispatch: 64 KB take one core about 0.36
// us from L2 (180 GB/s), so two threads save about what the spin barrier
// after them costs (0.15 us measured); the MLP's w2 (128 KB) gains, w3 (5
// KB) would lose.
#define MM_FEW_SPLIT_BYTES (64 << 10)

// Whether the run-time M is at most MM_ROWS.
static LLVMValueRef few_rows(NnCg *cg, const Mm *m)
{
    return LLVMBuildICmp(cg->b, LLVMIntSLE, m->mv, nn_cg_i64(cg, MM_ROWS), "");
}

static void rows_body(NnCg *cg, Mm *m, LLVMValueRef b, int rows, LLVMValueRef nrows);

// Whether a run of the step at a few rows runs this product unpacked: M is
// constant and short, or exactly the run-time batch (not rows per sample
// times it).
static bool few_unpacked(const NnCg *cg, const Mm *m)
{
    return m->rt_m ? m->rt_rows && m->m == cg->rt_ref : m->m <= MM_ROWS;
}

// Marks the kernel being emitted, an unpacked few-rows product (its threads
// split the columns), to be split at a few rows when it reads enough of B.
static void few_split(NnCg *cg, const Mm *m)
{
    int64_t bytes = m->k * m->n * (int64_t)nnrt_dtype_size(m->dt);
    if (few_unpacked(cg, m) && bytes >= MM_FEW_SPLIT_BYTES)
        cg->kernels[cg->nkernels - 1].few = NNRT_FEW_SPLIT;
}

// Returns from the kernel when the run-time M takes the rows path.
static void short_exit(NnCg *cg, Mm *m)
{
    LLVMBasicBlockRef xb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "fewrows");
    LLVMBasicBlockRef gb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "pack");
    LLVMBuildCondBr(cg->b, few_rows(cg, m), xb, gb);
    LLVMPositionBuilderAtEnd(cg->b, xb);
    LLVMBuildRetVoid(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, gb);
}

// ---- packing: Bp[(p*K + k)*NR + j] = op(B)[k, p*NR + j], 0 past N ----

// Without a transpose the packing is a vector copy, cheaper per element
// than the elementwise kernels NN_PAR_WORK is sized for: 32K elements (the
// MLP's w2) took 0.005 ms on 1 thread and 0.008 ms dispatched to 2.
static double pack_work(const Mm *m) { return (double)(m->k * m->n) / (m->tb ? 1 : 4); }

// Transposes the w x w block in r (r[i] = row i) in registers: log2(w)
// stages, each exchanging the off-diagonal halves of every 2h x 2h block
// (one two-source shuffle per row, vpermt2ps).
static void transpose_block(NnCg *cg, LLVMValueRef *r, int w)
{
    for (int h = w / 2; h >= 1; h /= 2)
        for (int i = 0; i < w; i++) {
            if (i & h)
                continue;
            LLVMValueRef lo[64], hi[64];
            for (int l = 0; l < w; l++) {
                lo[l] = nn_cg_i32(cg, (l & h) ? w + l - h : l);
                hi[l] = nn_cg_i32(cg, (l & h) ? w + l : l + h);
            }
            LLVMValueRef a = r[i], b = r[i + h];
            r[i] = LLVMBuildShuffleVector(cg->b, a, b, LLVMConstVector(lo, (unsigned)w), "");
            r[i + h] = LLVMBuildShuffleVector(cg->b, a, b, LLVMConstVector(hi, (unsigned)w), "");
        }
}

// The vectorized part of packing a transposed B for panel p: for each of
// the panel's two groups of vw columns that lies wholly below N, the k in
// [0, kfull), kfull = K rounded down to vw, as vw x vw blocks: vw row loads
// of B, a transpose in registers, vw vector stores. Element by element this
// packing cost 29% of g @ w^T at 128 x 256 x 128 (1 thread: 149 against 208
// GFLOP/s untransposed). Returns kfull, or NULL when no block is emitted (a
// fixed K under vw).
static LLVMValueRef pack_tb_blocks(NnCg *cg, Mm *m, LLVMValueRef b, LLVMValueRef bp,
                                   LLVMValueRef p, LLVMValueRef pbase)
{
    int w = m->vw;
    if (!m->rt_k && m->k < w)
        return NULL;
    LLVMValueRef kfull = LLVMBuildAnd(cg->b, m->kv, nn_cg_i64(cg, -(int64_t)w), "");
    LLVMValueRef j0 = mul(cg, p, m->nr);
    NnLoop g, k;
    nn_cg_loop_begin(cg, &g, nn_cg_i64(cg, 0), nn_cg_i64(cg, 2), 1);
    LLVMValueRef c0 = add(cg, j0, mul(cg, g.iv, w));
    LLVMValueRef full =
        LLVMBuildICmp(cg->b, LLVMIntSLE, add(cg, c0, nn_cg_i64(cg, w)), nn_cg_i64(cg, m->n), "");
    // a group past N transposes nothing (its loop runs to 0)
    LLVMValueRef kend = LLVMBuildSelect(cg->b, full, kfull, nn_cg_i64(cg, 0), "");
    nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), kend, w);
    LLVMValueRef r[64];
    for (int i = 0; i < w; i++)
        r[i] = nn_cg_load(cg, m->dt, b, add(cg, mulv(cg, add(cg, c0, nn_cg_i64(cg, i)), m->kv), k.iv),
                          w, NULL);
    transpose_block(cg, r, w);
    LLVMValueRef dst = add(cg, add(cg, pbase, mulv(cg, k.iv, nn_cg_i64(cg, m->nr))), mul(cg, g.iv, w));
    for (int i = 0; i < w; i++)
        nn_cg_store(cg, m->dt, r[i], bp, add(cg, dst, nn_cg_i64(cg, (int64_t)i * m->nr)), w, NULL);
    nn_cg_loop_end(cg, &k);
    nn_cg_loop_end(cg, &g);
    return kfull;
}

// Packs panels [lo, hi) in the kernel being emitted (mm_dims done).
static void pack_panels(NnCg *cg, Mm *m, LLVMValueRef lo, LLVMValueRef hi)
{
    LLVMValueRef b = nn_cg_buf(cg, m->b_slot), bp = nn_cg_buf(cg, m->pack_slot);
    NnLoop p;
    nn_cg_loop_begin(cg, &p, lo, hi, 1);
    LLVMValueRef j0 = mul(cg, p.iv, m->nr);
    LLVMValueRef pbase = mul(cg, mulv(cg, p.iv, m->kv), m->nr);
    if (!m->tb) {
        LLVMValueRef mk[2];
        for (int v = 0; v < 2; v++)
            mk[v] = col_mask(cg, m, add(cg, j0, nn_cg_i64(cg, v * m->vw)));
        NnLoop k;
        nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), m->kv, 1);
        for (int v = 0; v < 2; v++) {
            LLVMValueRef src = add(cg, add(cg, mul(cg, k.iv, m->n), j0), nn_cg_i64(cg, v * m->vw));
            LLVMValueRef x = nn_cg_load(cg, m->dt, b, src, m->vw, mk[v]);
            LLVMValueRef dst =
                add(cg, add(cg, pbase, mul(cg, k.iv, m->nr)), nn_cg_i64(cg, v * m->vw));
            nn_cg_store(cg, m->dt, x, bp, dst, m->vw, NULL);
        }
        nn_cg_loop_end(cg, &k);
    } else {
        // op(B)[k, j] = B[j, k]: read rows of B, write panel columns. Each
        // full group of vw columns, whole vw x vw blocks of it, goes through
        // registers (transpose_block); the rest, and columns past N, one
        // element at a time from kfull on.
        LLVMValueRef kfull = pack_tb_blocks(cg, m, b, bp, p.iv, pbase);
        NnLoop j;
        nn_cg_loop_begin(cg, &j, nn_cg_i64(cg, 0), nn_cg_i64(cg, m->nr), 1);
        LLVMValueRef col = add(cg, j0, j.iv);
        LLVMValueRef in = LLVMBuildICmp(cg->b, LLVMIntSLT, col, nn_cg_i64(cg, m->n), "");
        LLVMValueRef safe = LLVMBuildSelect(cg->b, in, col, nn_cg_i64(cg, 0), "");
        LLVMValueRef kstart = nn_cg_i64(cg, 0);
        if (kfull) { // the column's group was transposed up to kfull
            LLVMValueRef g = LLVMBuildSDiv(cg->b, j.iv, nn_cg_i64(cg, m->vw), "");
            LLVMValueRef gend = add(cg, j0, mul(cg, add(cg, g, nn_cg_i64(cg, 1)), m->vw));
            LLVMValueRef full =
                LLVMBuildICmp(cg->b, LLVMIntSLE, gend, nn_cg_i64(cg, m->n), "");
            kstart = LLVMBuildSelect(cg->b, full, kfull, kstart, "");
        }
        NnLoop k;
        nn_cg_loop_begin(cg, &k, kstart, m->kv, 1);
        LLVMValueRef x = nn_cg_load(cg, m->dt, b, add(cg, mulv(cg, safe, m->kv), k.iv), 1, NULL);
        x = LLVMBuildSelect(cg->b, in, x, nn_cg_const(cg, m->dt, 0, 1), "");
        LLVMValueRef dst = add(cg, add(cg, pbase, mul(cg, k.iv, m->nr)), j.iv);
        nn_cg_store(cg, m->dt, x, bp, dst, 1, NULL);
        nn_cg_loop_end(cg, &k);
        nn_cg_loop_end(cg, &j);
    }
    nn_cg_loop_end(cg, &p);
}

static void emit_pack(NnCg *cg, Mm *m)
{
    nn_cg_kernel_begin(cg, "mm_pack", pack_work(m));
    mm_dims(cg, m);
    if (m->rt_rows) {
        if (few_unpacked(cg, m))
            cg->kernels[cg->nkernels - 1].few = NNRT_FEW_NOOP;
        short_exit(cg, m);
    }
    LLVMValueRef lo, hi;
    nn_cg_split(cg, m->np, 1, &lo, &hi);
    pack_panels(cg, m, lo, hi);
    nn_cg_kernel_end(cg);
}

// ---- the register tile ----

// A tile prefetches its B panel MM_PFB k ahead when the panel is past
// MM_PF_BYTES (it then streams from L2) or K is the run-time batch. 1
// thread, thread CPU time, load 6-7: 1024x256x784 189 -> 210-224 GFLOP/s,
// 128x256x784 191 -> 204, 784x256x1024 (A^T) 179-181 -> 182-198; panels
// that fit L1 gained nothing and 1024x256x128 (B^T) lost 4-9%
// (docs/threads.md, session 9).
#define MM_PFB 8
#define MM_PF_BYTES (32 << 10)

// Asks for the cache line of base[off] ahead of its use (llvm.prefetch:
// read, into L1). Never faults, so off may run past the buffer (a plain
// GEP, not inbounds).
static void prefetch(NnCg *cg, NnDType dt, LLVMValueRef base, LLVMValueRef off)
{
    LLVMValueRef args[4] = {LLVMBuildGEP2(cg->b, nn_cg_type(cg, dt), base, &off, 1, ""),
                            nn_cg_i32(cg, 0), nn_cg_i32(cg, 3), nn_cg_i32(cg, 1)};
    nn_cg_intrinsic(cg, "llvm.prefetch", &cg->t_ptr, 1, args, 4);
}

static LLVMValueRef a_elem(NnCg *cg, const Mm *m, LLVMValueRef i, LLVMValueRef k)
{
    LLVMValueRef off = m->ta ? add(cg, mulv(cg, k, m->mv), i) : add(cg, mulv(cg, i, m->kv), k);
    return nn_cg_load(cg, m->dt, m->a, off, 1, NULL);
}

static LLVMValueRef c_off(NnCg *cg, const Mm *m, LLVMValueRef i0, int r, LLVMValueRef j0, int v)
{
    LLVMValueRef i = add(cg, i0, nn_cg_i64(cg, r));
    return add(cg, add(cg, mul(cg, i, m->n), j0), nn_cg_i64(cg, v * m->vw));
}

// Vector q (row q / 2, half q % 2) of the tile parked in tbuf at (i0, j0)
// through the epilogue; mask0, mask1: its halves' column masks, or NULL.
static void epi_vec(NnCg *cg, Mm *m, LLVMValueRef i0, LLVMValueRef j0, LLVMValueRef q,
                    LLVMValueRef mask0, LLVMValueRef mask1)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    LLVMValueRef r = LLVMBuildLShr(cg->b, q, nn_cg_i64(cg, 1), "");
    LLVMValueRef v = LLVMBuildAnd(cg->b, q, nn_cg_i64(cg, 1), "");
    LLVMValueRef slot = LLVMBuildInBoundsGEP2(cg->b, vt, m->tbuf, &q, 1, "");
    LLVMValueRef acc = LLVMBuildLoad2(cg->b, vt, slot, "");
    LLVMValueRef idx[2] = {add(cg, i0, r), add(cg, j0, mul(cg, v, m->vw))};
    LLVMValueRef mask = NULL;
    if (mask0) {
        LLVMValueRef second = LLVMBuildICmp(cg->b, LLVMIntNE, v, nn_cg_i64(cg, 0), "");
        mask = LLVMBuildSelect(cg->b, second, mask1, mask0, "");
    }
    LLVMValueRef off = add(cg, mul(cg, idx[0], m->n), idx[1]);
    nn_expr_epilogue(cg, m->epi, idx, m->vw, mask, acc, m->out_dt, m->c, off);
}

// Stores the tile: raw partial sums, or (last K block) through the epilogue.
// nrows: of the tile's rows, how many are real (the run-time last tile), or NULL.
static void tile_store(NnCg *cg, Mm *m, LLVMValueRef i0, LLVMValueRef j0, int rows, bool final,
                       LLVMValueRef nrows)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    if (final && m->epi) {
        // Through the stack and one loop: one copy of the epilogue, not 2*MR
        // (every other vector when a panel's second one holds no column).
        for (int q = 0; q < 2 * rows; q += 3 - m->nv) {
            LLVMValueRef qi = nn_cg_i64(cg, q);
            LLVMValueRef slot = LLVMBuildInBoundsGEP2(cg->b, vt, m->tbuf, &qi, 1, "");
            LLVMBuildStore(cg->b, LLVMBuildLoad2(cg->b, vt, m->acc[q / 2][q % 2], ""), slot);
        }
        NnLoop l;
        nn_cg_loop_begin(cg, &l, nn_cg_i64(cg, 0),
                         nrows ? LLVMBuildShl(cg->b, nrows, nn_cg_i64(cg, 1), "")
                               : nn_cg_i64(cg, 2 * rows),
                         3 - m->nv);
        epi_vec(cg, m, i0, j0, l.iv, m->mask[0], m->mask[1]);
        nn_cg_loop_end(cg, &l);
        return;
    }
    for (int r = 0; r < rows; r++) {
        LLVMBasicBlockRef skip = NULL;
        if (nrows && r > 0) { // rows past the batch are not stored
            LLVMBasicBlockRef st = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "row");
            skip = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "rowdone");
            LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, nn_cg_i64(cg, r), nrows, ""),
                            st, skip);
            LLVMPositionBuilderAtEnd(cg->b, st);
        }
        for (int v = 0; v < m->nv; v++) {
            LLVMValueRef acc = LLVMBuildLoad2(cg->b, vt, m->acc[r][v], "");
            LLVMValueRef off = c_off(cg, m, i0, r, j0, v);
            if (final && m->epi) {
                LLVMValueRef idx[2] = {add(cg, i0, nn_cg_i64(cg, r)),
                                       add(cg, j0, nn_cg_i64(cg, v * m->vw))};
                nn_expr_at(cg, m->epi, idx);
                acc = nn_expr_eval(cg, m->epi, m->vw, 1, m->mask[v], acc);
            }
            nn_cg_store(cg, final ? m->out_dt : m->dt, acc, m->c, off, m->vw, m->mask[v]);
        }
        if (skip) {
            LLVMBuildBr(cg->b, skip);
            LLVMPositionBuilderAtEnd(cg->b, skip);
        }
    }
}

// The row i0 + r of a tile, or i0 when that row is past the nrows real ones
// (its loads then stay inside the buffers; the row is not stored).
static LLVMValueRef tile_row(NnCg *cg, LLVMValueRef i0, int r, LLVMValueRef nrows)
{
    LLVMValueRef i = add(cg, i0, nn_cg_i64(cg, r));
    if (!nrows || r == 0)
        return i;
    return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, nn_cg_i64(cg, r), nrows, ""),
                           i, i0, "");
}

// The previous tile's vector q through the epilogue when q < pnv (the
// vectors parked), and what the same vector of this tile (i0, j0) will read
// and write prefetched: a tile's K loop later, when its turn comes, its rows
// of w, m, v are in L1. Without the prefetch they came from L3 (7 streams
// of 0.8 MB for w1 do not stay in L2), one vector at a time, and each miss
// stalled the K loop behind it: the interleaved epilogue was 35% slower
// than the one run at once.
static void pend_vec(NnCg *cg, Mm *m, LLVMValueRef q, LLVMValueRef pnv, LLVMValueRef pi0,
                     LLVMValueRef pj0, LLVMValueRef mk0, LLVMValueRef mk1, LLVMValueRef i0,
                     LLVMValueRef j0, LLVMValueRef nrows)
{
    LLVMBasicBlockRef eb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "epi");
    LLVMBasicBlockRef db = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "epidone");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, q, pnv, ""), eb, db);
    LLVMPositionBuilderAtEnd(cg->b, eb);
    if (m->pipe_pf) {
        LLVMValueRef r = LLVMBuildLShr(cg->b, q, nn_cg_i64(cg, 1), "");
        LLVMValueRef v = LLVMBuildAnd(cg->b, q, nn_cg_i64(cg, 1), "");
        if (nrows) // rows past the real ones: the first row again
            r = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, r, nrows, ""), r,
                                nn_cg_i64(cg, 0), "");
        LLVMValueRef idx[2] = {add(cg, i0, r), add(cg, j0, mul(cg, v, m->vw))};
        nn_expr_prefetch(cg, m->epi, idx, add(cg, mul(cg, idx[0], m->n), idx[1]));
    }
    epi_vec(cg, m, pi0, pj0, q, mk0, mk1);
    LLVMBuildBr(cg->b, db);
    LLVMPositionBuilderAtEnd(cg->b, db);
}

// The update's epilogue under the FMAs: the tile's K loop runs in chunks of
// m->pipe_k steps, the last one to the end of K, and before each chunk the
// previous tile, parked in tbuf, sends its next m->pipe vectors through the
// epilogue; those left (K under 2 * MM_MR * pipe_k / pipe) follow the loop;
// this tile is parked in turn, and the kernel's last one is finished after
// the loops (pipe_flush). Each vector goes through the same
// nn_expr_epilogue as at once, so the results are the same bits; only the
// order of independent elements changes. A whole tile's divisions and
// square roots at once (~350 divider cycles) were more than the
// out-of-order window could overlap with the next tile's FMAs; two vectors'
// few dozen instructions among 16 steps' FMAs fit in it (docs/threads.md,
// session 9).
typedef struct Pipe {
    NnLoop c; // over the chunks
    LLVMValueRef nch, pi0, pj0, pnv, mk0, mk1;
} Pipe;

// Opens the chunk loop and finishes the parked vectors due before this
// chunk; [*lo, *hi): the chunk's k.
static void pipe_begin(NnCg *cg, Mm *m, Pipe *pp, LLVMValueRef i0, LLVMValueRef j0,
                       LLVMValueRef kc0, LLVMValueRef kcn, LLVMValueRef nrows, LLVMValueRef *lo,
                       LLVMValueRef *hi)
{
    int u = m->pipe_k;
    LLVMValueRef uv = nn_cg_i64(cg, u);
    // As many chunks as finish a whole tile (2 * MM_MR / pipe), or fewer
    // when K is short; the last one runs to the end of K in one loop.
    LLVMValueRef nch = LLVMBuildSDiv(cg->b, add(cg, kcn, nn_cg_i64(cg, u - 1)), uv, "");
    LLVMValueRef most = nn_cg_i64(cg, 2 * MM_MR / m->pipe);
    nch = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, nch, most, ""), nch, most, "");
    pp->nch = nch;
    pp->pi0 = LLVMBuildLoad2(cg->b, cg->t_i64, m->pend_i0, "");
    pp->pj0 = LLVMBuildLoad2(cg->b, cg->t_i64, m->pend_j0, "");
    pp->pnv = LLVMBuildLoad2(cg->b, cg->t_i64, m->pend_nv, "");
    pp->mk0 = col_mask(cg, m, pp->pj0);
    pp->mk1 = col_mask(cg, m, add(cg, pp->pj0, nn_cg_i64(cg, m->vw)));
    nn_cg_loop_begin(cg, &pp->c, nn_cg_i64(cg, 0), nch, 1);
    NnLoop x; // a loop, not m->pipe copies of the epilogue (compile time)
    LLVMValueRef q0 = mul(cg, pp->c.iv, m->pipe);
    nn_cg_loop_begin(cg, &x, q0, add(cg, q0, nn_cg_i64(cg, m->pipe)), 1);
    pend_vec(cg, m, x.iv, pp->pnv, pp->pi0, pp->pj0, pp->mk0, pp->mk1, i0, j0, nrows);
    nn_cg_loop_end(cg, &x);
    *lo = add(cg, kc0, mul(cg, pp->c.iv, u));
    LLVMValueRef last =
        LLVMBuildICmp(cg->b, LLVMIntEQ, add(cg, pp->c.iv, nn_cg_i64(cg, 1)), nch, "");
    *hi = LLVMBuildSelect(cg->b, last, add(cg, kc0, kcn), add(cg, *lo, uv), "");
}

// Closes the chunk loop, finishes the parked vectors still left, and parks
// this tile.
static void pipe_end(NnCg *cg, Mm *m, Pipe *pp, LLVMValueRef i0, LLVMValueRef j0, int rows,
                     LLVMValueRef nrows)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    nn_cg_loop_end(cg, &pp->c);
    NnLoop l; // vectors left when K is short
    nn_cg_loop_begin(cg, &l, mul(cg, pp->nch, m->pipe), pp->pnv, 1);
    epi_vec(cg, m, pp->pi0, pp->pj0, l.iv, pp->mk0, pp->mk1);
    nn_cg_loop_end(cg, &l);
    for (int q = 0; q < 2 * rows; q++) {
        LLVMValueRef qi = nn_cg_i64(cg, q);
        LLVMValueRef slot = LLVMBuildInBoundsGEP2(cg->b, vt, m->tbuf, &qi, 1, "");
        LLVMBuildStore(cg->b, LLVMBuildLoad2(cg->b, vt, m->acc[q / 2][q % 2], ""), slot);
    }
    LLVMBuildStore(cg->b, i0, m->pend_i0);
    LLVMBuildStore(cg->b, j0, m->pend_j0);
    LLVMBuildStore(cg->b,
                   nrows ? LLVMBuildShl(cg->b, nrows, nn_cg_i64(cg, 1), "")
                         : nn_cg_i64(cg, 2 * rows),
                   m->pend_nv);
}

// The last tile parked by pipe_end, through the epilogue.
static void pipe_flush(NnCg *cg, Mm *m)
{
    LLVMValueRef pi0 = LLVMBuildLoad2(cg->b, cg->t_i64, m->pend_i0, "");
    LLVMValueRef pj0 = LLVMBuildLoad2(cg->b, cg->t_i64, m->pend_j0, "");
    LLVMValueRef pnv = LLVMBuildLoad2(cg->b, cg->t_i64, m->pend_nv, "");
    LLVMValueRef mk0 = col_mask(cg, m, pj0);
    LLVMValueRef mk1 = col_mask(cg, m, add(cg, pj0, nn_cg_i64(cg, m->vw)));
    NnLoop l;
    nn_cg_loop_begin(cg, &l, nn_cg_i64(cg, 0), pnv, 1);
    epi_vec(cg, m, pi0, pj0, l.iv, mk0, mk1);
    nn_cg_loop_end(cg, &l);
}

static void tile(NnCg *cg, Mm *m, LLVMValueRef i0, LLVMValueRef p, LLVMValueRef kc0,
                 LLVMValueRef kcn, int rows, LLVMValueRef nrows)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    LLVMValueRef j0 = mul(cg, p, m->nr);
    // Accumulators start at 0 in the first K block, else from C's partial sums.
    if (m->kblocks == 1) {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < m->nv; v++)
                LLVMBuildStore(cg->b, LLVMConstNull(vt), m->acc[r][v]);
    } else {
        LLVMBasicBlockRef zb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "zero");
        LLVMBasicBlockRef lb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "reload");
        LLVMBasicBlockRef kb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "kloop");
        LLVMValueRef first = LLVMBuildICmp(cg->b, LLVMIntEQ, kc0, nn_cg_i64(cg, 0), "");
        LLVMBuildCondBr(cg->b, first, zb, lb);
        LLVMPositionBuilderAtEnd(cg->b, zb);
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < m->nv; v++)
                LLVMBuildStore(cg->b, LLVMConstNull(vt), m->acc[r][v]);
        LLVMBuildBr(cg->b, kb);
        LLVMPositionBuilderAtEnd(cg->b, lb);
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < m->nv; v++) {
                LLVMValueRef i = tile_row(cg, i0, r, nrows);
                LLVMValueRef off = c_off(cg, m, i, 0, j0, v);
                LLVMBuildStore(cg->b, nn_cg_load(cg, m->dt, m->c, off, m->vw, m->mask[v]),
                               m->acc[r][v]);
            }
        LLVMBuildBr(cg->b, kb);
        LLVMPositionBuilderAtEnd(cg->b, kb);
    }

    // The tile's packed rows, when op(A) is packed: element (r, k) at abase
    // + k * aks + r of apt; read in place (apk_pk false), A^T's at i0 + k * M + r.
    LLVMValueRef abase = NULL, aks = nn_cg_i64(cg, MM_MR), apt = m->apk;
    if (m->apk) {
        abase = mulv(cg, LLVMBuildSub(cg->b, i0, m->apk_row0, ""), m->apk_ld);
        if (m->apk_pk) {
            abase = LLVMBuildSelect(cg->b, m->apk_pk, abase, i0, "");
            aks = LLVMBuildSelect(cg->b, m->apk_pk, aks, m->mv, "");
            apt = LLVMBuildSelect(cg->b, m->apk_pk, m->apk, m->a, "");
        }
    }
    LLVMValueRef klo = kc0, khi = add(cg, kc0, kcn);
    Pipe pp;
    if (m->pipe)
        pipe_begin(cg, m, &pp, i0, j0, kc0, kcn, nrows, &klo, &khi);
    NnLoop k;
    nn_cg_loop_begin(cg, &k, klo, khi, 1);
    LLVMValueRef boff = mul(cg, add(cg, mulv(cg, p, m->kv), k.iv), m->nr);
    LLVMValueRef krel = m->apk ? LLVMBuildSub(cg->b, k.iv, kc0, "") : NULL;
    LLVMValueRef bv[2];
    for (int v = 0; v < m->nv; v++) {
        bv[v] = nn_cg_load(cg, m->dt, m->bp, add(cg, boff, nn_cg_i64(cg, v * m->vw)), m->vw, NULL);
        LLVMSetAlignment(bv[v], 64);
        if (m->rt_k || m->k * m->nr * (int64_t)nnrt_dtype_size(m->dt) > MM_PF_BYTES)
            prefetch(cg, m->dt, m->bp, add(cg, boff, nn_cg_i64(cg, MM_PFB * m->nr + v * m->vw)));
    }
    for (int r = 0; r < rows; r++) {
        LLVMValueRef ae;
        if (m->apk) { // rows past M were packed as zeros, or are not read in place
            LLVMValueRef rr = nn_cg_i64(cg, r);
            if (m->apk_pk && nrows && r > 0)
                rr = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, rr, nrows, ""), rr,
                                     nn_cg_i64(cg, 0), "");
            LLVMValueRef off = add(cg, mulv(cg, krel, aks), rr);
            ae = nn_cg_load(cg, m->dt, apt, add(cg, abase, off), 1, NULL);
        } else {
            ae = a_elem(cg, m, tile_row(cg, i0, r, nrows), k.iv);
        }
        LLVMValueRef s = nn_cg_splat(cg, ae, m->vw);
        for (int v = 0; v < m->nv; v++) {
            LLVMValueRef args[3] = {s, bv[v], LLVMBuildLoad2(cg->b, vt, m->acc[r][v], "")};
            LLVMValueRef f = nn_cg_intrinsic(cg, "llvm.fma", &vt, 1, args, 3);
            LLVMBuildStore(cg->b, f, m->acc[r][v]);
        }
    }
    k.unroll = true;
    nn_cg_loop_end(cg, &k);
    if (m->pipe) {
        pipe_end(cg, m, &pp, i0, j0, rows, nrows);
        return;
    }

    if (m->kblocks == 1) {
        tile_store(cg, m, i0, j0, rows, true, nrows);
        return;
    }
    LLVMBasicBlockRef fb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "final");
    LLVMBasicBlockRef pb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "partial");
    LLVMBasicBlockRef db = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "stored");
    LLVMValueRef last =
        LLVMBuildICmp(cg->b, LLVMIntSGE, add(cg, kc0, kcn), m->kv, "");
    LLVMBuildCondBr(cg->b, last, fb, pb);
    LLVMPositionBuilderAtEnd(cg->b, fb);
    tile_store(cg, m, i0, j0, rows, true, nrows);
    LLVMBuildBr(cg->b, db);
    LLVMPositionBuilderAtEnd(cg->b, pb);
    tile_store(cg, m, i0, j0, rows, false, nrows);
    LLVMBuildBr(cg->b, db);
    LLVMPositionBuilderAtEnd(cg->b, db);
}

// ---- packing op(A) ----

// Lanes below n (a run-time count) of a w-lane vector.
static LLVMValueRef lanes_below(NnCg *cg, int w, LLVMValueRef n)
{
    LLVMValueRef lanes[64];
    for (int i = 0; i < w; i++)
        lanes[i] = nn_cg_i64(cg, i);
    return LLVMBuildICmp(cg->b, LLVMIntSLT, LLVMConstVector(lanes, (unsigned)w),
                         nn_cg_splat(cg, n, w), "");
}

// Copies rows [tb0, tb1) * MM_MR of op(A) = A^T, K block [kc0, kc0 + kcn),
// into m->apk, rows past M as zeros. Unpacked, each k of a tile is a row of
// A, a new cache line and (past K of a few hundred rows at M = 784) a new
// page, for MM_MR elements; packed, a tile is one compact run that streams
// from L1 while its panel of B stays there too.
static void pack_a(NnCg *cg, Mm *m, LLVMValueRef tb0, LLVMValueRef tb1, LLVMValueRef kc0,
                   LLVMValueRef kcn)
{
    // Steps of MM_PACK_K k, each over the tiles: a tile reads a cache line
    // per k, which the next tile reads again. Over all of K at once (1024)
    // those lines had left L1 before the next tile came (10% of x^T @ g1's
    // time at batch 1024, perf); one k at a time over all tiles lost at
    // batch 128 (64 tiles: as many store streams).
    NnLoop t, k, ks;
    LLVMValueRef nks = LLVMBuildSDiv(cg->b, add(cg, kcn, nn_cg_i64(cg, MM_PACK_K - 1)),
                                     nn_cg_i64(cg, MM_PACK_K), "");
    nn_cg_loop_begin(cg, &ks, nn_cg_i64(cg, 0), nks, 1);
    LLVMValueRef k0 = mul(cg, ks.iv, MM_PACK_K);
    LLVMValueRef kend = add(cg, k0, nn_cg_i64(cg, MM_PACK_K));
    kend = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, kend, kcn, ""), kend, kcn, "");
    nn_cg_loop_begin(cg, &t, tb0, tb1, 1);
    LLVMValueRef i0 = mul(cg, t.iv, MM_MR);
    LLVMValueRef base = mulv(cg, LLVMBuildSub(cg->b, i0, m->apk_row0, ""), m->apk_ld);
    LLVMValueRef left = LLVMBuildSub(cg->b, m->mv, i0, "");
    LLVMValueRef mr = nn_cg_i64(cg, MM_MR);
    LLVMValueRef nvalid =
        LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, left, mr, ""), left, mr, "");
    // op(A)[i0 + r, k] = A[k, i0 + r]: each k's MM_MR rows are contiguous.
    nn_cg_loop_begin(cg, &k, k0, kend, 1);
    LLVMValueRef src = add(cg, mulv(cg, add(cg, kc0, k.iv), m->mv), i0);
    LLVMValueRef dst = add(cg, base, mul(cg, k.iv, MM_MR));
    for (int c = 0; c < MM_MR; c += m->vw) {
        LLVMValueRef cv = nn_cg_i64(cg, c);
        LLVMValueRef ld = lanes_below(cg, m->vw, LLVMBuildSub(cg->b, nvalid, cv, ""));
        LLVMValueRef x = nn_cg_load(cg, m->dt, m->a, add(cg, src, cv), m->vw, ld);
        LLVMValueRef st = MM_MR - c < m->vw ? nn_cg_mask(cg, m->vw, MM_MR - c) : NULL;
        nn_cg_store(cg, m->dt, x, m->apk, add(cg, dst, cv), m->vw, st);
    }
    nn_cg_loop_end(cg, &k);
    nn_cg_loop_end(cg, &t);
    nn_cg_loop_end(cg, &ks);
}

// ---- the compute kernel ----

// Whether threads split the M tiles, else the N panels: the panels when
// there are few tiles, or when there are many panels and all of op(A) fits half of one core's L2:
// each thread then reads only the panels it packed itself (the packing
// splits the panels the same way), from its own L2, instead of every
// panel, half of them from the other core, while A, read by both, stays
// resident in each L2. Measured on the MLP's steps, 2 threads, fastest
// run per kernel: x @ w1 (128x256x784) 0.162 -> 0.139-0.147 ms, the
// weight gradient x^T @ g1 0.177 -> 0.157-0.169 ms; with 4 panels (N =
// 128) it lost, so it needs 8, and with a short K (a tile is then mostly
// its stores and epilogue) it lost too: g @ w^T with K = 10 and 8
// panels, 0.013 -> 0.019 ms.
static bool split_rows(const Mm *m)
{
    int64_t mt = (m->m + MM_MR - 1) / MM_MR;
    const char *sp = getenv("NN_MM_SPLIT");
    if (sp && (*sp == 'm' || *sp == 'n')) // for experiments
        return *sp == 'm';
    if (m->np >= MM_NSPLIT_PANELS && m->k >= MM_NSPLIT_K &&
        m->m * m->k * (int64_t)nnrt_dtype_size(m->dt) <= MM_L2_BYTES)
        return false;
    return mt >= 8 || mt >= m->np;
}

// The default NN_MM_PIPE for code compiled for `cpu` (MM_PIPE's note): the
// pipelined epilogue for AMD Zen 5 and later (LLVM's znver5...), where it
// was measured to win; the epilogue at once for every other core, as
// measured on an Intel Xeon (Sapphire Rapids class); Zen 4, whose 512-bit
// FMAs are two 256-bit halves, was not measured and keeps it at once.
static int pipe_default(const char *cpu)
{
    return cpu && !strncmp(cpu, "znver", 5) && cpu[5] >= '5' && cpu[5] <= '9' && !cpu[6]
               ? MM_PIPE
               : 0;
}

static void emit_compute(NnCg *cg, Mm *m, int64_t kc)
{
    // With few run-time rows the reads of B, not the FMAs, are the work.
    double reads = m->rt_rows ? mm_work(m, m->k * m->n) - mm_work(m, 0) : 0;
    // An inline packing's work grows with the rows only when they are K.
    double pack = m->inline_pack ? pack_work(m) : 0;
    nn_cg_kernel_begin(cg, m->epi ? m->epi->more ? "mm_update" : "mm_fused" : "mm",
                       mm_work(m, 0) + reads + pack);
    cg->kernels[cg->nkernels - 1].work_fixed = reads + (m->rt_k ? 0 : pack);
    mm_dims(cg, m);
    m->a = nn_cg_buf(cg, m->a_slot);
    m->bp = nn_cg_buf(cg, m->pack_slot);
    m->c = nn_cg_buf(cg, m->out_slot);
    if (m->epi)
        nn_expr_bind(cg, m->epi);
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    for (int r = 0; r < MM_MR; r++)
        for (int v = 0; v < 2; v++)
            m->acc[r][v] = nn_cg_alloca(cg, vt);
    m->tbuf = nn_cg_alloca(cg, LLVMArrayType2(vt, 2 * MM_MR));
    LLVMSetAlignment(m->tbuf, 64);
    if (m->rt_rows) {
        // A run-time M of at most MM_ROWS: B in place, no packing (see emit_rows).
        // One row (batch-1 prediction) has a loop nest of its own.
        few_split(cg, m);
        LLVMBasicBlockRef rb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "fewrows");
        LLVMBasicBlockRef r1 = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "onerow");
        LLVMBasicBlockRef r4 = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "rows");
        LLVMBasicBlockRef tb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "tiles");
        LLVMBuildCondBr(cg->b, few_rows(cg, m), rb, tb);
        LLVMPositionBuilderAtEnd(cg->b, rb);
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, m->mv, nn_cg_i64(cg, 1), ""), r1, r4);
        m->kblocks = 1;
        LLVMValueRef b = nn_cg_buf(cg, m->b_slot), bp = m->bp, acc[MM_MR][2];
        memcpy(acc, m->acc, sizeof acc);
        LLVMPositionBuilderAtEnd(cg->b, r1);
        rows_body(cg, m, b, 1, NULL);
        LLVMBuildRetVoid(cg->b);
        LLVMPositionBuilderAtEnd(cg->b, r4);
        rows_body(cg, m, b, MM_ROWS, m->mv);
        LLVMBuildRetVoid(cg->b);
        LLVMPositionBuilderAtEnd(cg->b, tb);
        m->bp = bp; // the tiles read the packed panels
        memcpy(m->acc, acc, sizeof acc);
    }
    int64_t mt = (m->m + MM_MR - 1) / MM_MR;
    bool split_m = m->split_m;
    // With a run-time M, or one that is not a multiple of MM_MR, one last
    // tile of MM_MR rows of which only the first are real (counted at run time).
    bool short_last = m->rt_m || m->m % MM_MR;
    LLVMValueRef mtv = nn_cg_i64(cg, mt);
    if (m->rt_m)
        mtv = LLVMBuildSDiv(cg->b, add(cg, m->mv, nn_cg_i64(cg, MM_MR - 1)), nn_cg_i64(cg, MM_MR),
                            "");
    LLVMValueRef t0, t1, p0, p1;
    if (split_m) {
        nn_cg_split_v(cg, mtv, 1, &t0, &t1);
        p0 = nn_cg_i64(cg, 0);
        p1 = nn_cg_i64(cg, m->np);
    } else {
        nn_cg_split(cg, m->np, 1, &p0, &p1);
        t0 = nn_cg_i64(cg, 0);
        t1 = mtv;
        if (m->inline_pack) // this thread's panels, the ones it computes
            pack_panels(cg, m, p0, p1);
    }
    // A run-time K (kc 0) is one block of K rows (nn_cg_emit_matmul); with
    // a kc, its blocks are counted at run time and the tiles compile the
    // partial-sum path as for several.
    int64_t kblocks = m->kblocks = m->k > 0 && kc ? (m->k + kc - 1) / kc : 1;
    LLVMValueRef kcv = kc ? nn_cg_i64(cg, kc) : m->kv;
    LLVMValueRef kblocksv = nn_cg_i64(cg, kblocks);
    if (m->rt_k && kc) {
        kblocksv = LLVMBuildSDiv(cg->b, add(cg, m->kv, nn_cg_i64(cg, kc - 1)), kcv, "");
        m->kblocks = 2;
    }
    // With NN_MM_PIPE=1|2|4|8 (pipe_default: on Zen 5 only) an update's
    // epilogue runs under the next tile's FMAs (pipe_begin), that many
    // vectors before each chunk of MM_PIPE_K steps of K; NN_MM_PIPE=0 runs
    // it after each tile's K loop, NN_MM_PIPE_K=N sets the chunk,
    // NN_MM_PIPE_PF=0 drops the prefetch.
    m->pipe = 0;
    if (m->epi && m->epi->more && m->kblocks == 1 && m->nv == 2) {
        const char *pv = getenv("NN_MM_PIPE");
        int dflt = pipe_default(cg->cpu), n = pv && *pv ? atoi(pv) : dflt;
        m->pipe = n == 1 || n == 2 || n == 4 || n == 8 ? n : n == 0 ? 0 : dflt;
        const char *pk = getenv("NN_MM_PIPE_K");
        n = pk && *pk ? atoi(pk) : MM_PIPE_K;
        m->pipe_k = n >= 1 && n <= 1024 ? n : MM_PIPE_K;
        const char *pf = getenv("NN_MM_PIPE_PF");
        m->pipe_pf = !(pf && *pf == '0');
    }
    if (m->pipe) {
        m->pend_i0 = nn_cg_alloca(cg, cg->t_i64);
        m->pend_j0 = nn_cg_alloca(cg, cg->t_i64);
        m->pend_nv = nn_cg_alloca(cg, cg->t_i64);
        LLVMBuildStore(cg->b, nn_cg_i64(cg, 0), m->pend_i0);
        LLVMBuildStore(cg->b, nn_cg_i64(cg, 0), m->pend_j0);
        LLVMBuildStore(cg->b, nn_cg_i64(cg, 0), m->pend_nv);
    }
    int64_t mc = MM_MC / MM_MR; // tiles per L2 block
    // A transposed op(A) is packed one block of tiles at a time, on the
    // stack (pack_a). Measured, 1 thread, thread CPU time (load 2.5-4.5):
    // 784x256x1024 with ta 125-136 -> 159-161 GFLOP/s. Packing A without
    // the transpose too (rows padded by a vector) lost: 1024x256x784 168-180
    // -> 142-160, so those tiles still read A in place. Since session 8 the
    // whole K is packed when it fits MM_APK_BYTES (K up to 8192 in f32),
    // not blocks of MM_KCA: the weight gradients' run-time K then compiles
    // no partial-sum path, and they ran as fast at batch 1024 (the B panel
    // streams from L2 instead of L1, the packed block is wider) and 3-8%
    // faster at batch 128 (docs/threads.md, session 8).
    m->apk = m->apk_pk = m->apk_ld = NULL;
    LLVMValueRef mcv = nn_cg_i64(cg, mc);
    int64_t esize = (int64_t)nnrt_dtype_size(m->dt), apk_k = MM_APK_BYTES / esize / MM_MR;
    if (m->ta && kblocks == 1 && (m->rt_k || m->k <= apk_k)) {
        // All of K at once (no partial sums in C, so the tiles compile no
        // reload and no second store), as many tiles per block as the
        // buffer holds; a run-time K past it reads A in place.
        m->apk_ld = m->kv;
        LLVMValueRef kk = LLVMBuildSelect(
            cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, m->kv, nn_cg_i64(cg, 1), ""), m->kv,
            nn_cg_i64(cg, 1), "");
        LLVMValueRef fit = LLVMBuildSDiv(cg->b, nn_cg_i64(cg, apk_k), kk, "");
        if (m->rt_k) {
            m->apk_pk = LLVMBuildICmp(cg->b, LLVMIntSGT, fit, nn_cg_i64(cg, 0), "");
            mcv = LLVMBuildSelect(cg->b, m->apk_pk, fit, mcv, "");
        } else {
            mcv = fit;
        }
    } else if (m->ta && kc && kc <= MM_KCA) { // a fixed K too long for that: blocks of kc
        m->apk_ld = nn_cg_i64(cg, kc);
        mcv = nn_cg_i64(cg, apk_k / kc < mc ? apk_k / kc : mc);
    }
    if (m->apk_ld && m->ta) {
        m->apk = nn_cg_alloca(
            cg, LLVMArrayType2(nn_cg_type(cg, m->dt), (uint64_t)(MM_APK_BYTES / esize)));
        LLVMSetAlignment(m->apk, 64);
    }
    NnLoop kb, mb, p, t;
    nn_cg_loop_begin(cg, &kb, nn_cg_i64(cg, 0), kblocksv, 1);
    LLVMValueRef kc0 = mulv(cg, kb.iv, kcv);
    LLVMValueRef krest = LLVMBuildSub(cg->b, m->kv, kc0, "");
    LLVMValueRef kcn = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, krest, kcv, ""),
                                       krest, kcv, "kcn");
    // for each block of mc tiles, each panel, each tile of the block
    LLVMValueRef span = add(cg, LLVMBuildSub(cg->b, t1, t0, ""), mcv);
    LLVMValueRef nblk =
        LLVMBuildSDiv(cg->b, LLVMBuildSub(cg->b, span, nn_cg_i64(cg, 1), ""), mcv, "");
    nn_cg_loop_begin(cg, &mb, nn_cg_i64(cg, 0), nblk, 1);
    LLVMValueRef tb0 = add(cg, t0, mulv(cg, mb.iv, mcv));
    LLVMValueRef tb1 = add(cg, tb0, mcv);
    tb1 = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, tb1, t1, ""), tb1, t1, "");
    if (m->apk) {
        m->apk_row0 = mul(cg, tb0, MM_MR);
        if (m->apk_pk) {
            LLVMBasicBlockRef yb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "packa");
            LLVMBasicBlockRef nb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "packed");
            LLVMBuildCondBr(cg->b, m->apk_pk, yb, nb);
            LLVMPositionBuilderAtEnd(cg->b, yb);
            pack_a(cg, m, tb0, tb1, kc0, kcn);
            LLVMBuildBr(cg->b, nb);
            LLVMPositionBuilderAtEnd(cg->b, nb);
        } else {
            pack_a(cg, m, tb0, tb1, kc0, kcn);
        }
    }
    nn_cg_loop_begin(cg, &p, p0, p1, 1);
    for (int v = 0; v < 2; v++)
        m->mask[v] = col_mask(cg, m, add(cg, mul(cg, p.iv, m->nr), nn_cg_i64(cg, v * m->vw)));
    if (short_last) {
        // A run-time M, or one that leaves a short last tile: every tile of
        // the block, the last one's real rows counted at run time. One copy
        // of the tile, not a full one and a short one: the K loop is the
        // same, the rows' selects leave it, and a second copy was a sixth of
        // the MLP step's compile time.
        nn_cg_loop_begin(cg, &t, tb0, tb1, 1);
        LLVMValueRef i0 = mul(cg, t.iv, MM_MR);
        LLVMValueRef left = LLVMBuildSub(cg->b, m->mv, i0, "");
        LLVMValueRef mr = nn_cg_i64(cg, MM_MR);
        LLVMValueRef nrows =
            LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, left, mr, ""), left, mr, "");
        tile(cg, m, i0, p.iv, kc0, kcn, MM_MR, nrows);
        nn_cg_loop_end(cg, &t);
    } else {
        nn_cg_loop_begin(cg, &t, tb0, tb1, 1);
        tile(cg, m, mul(cg, t.iv, MM_MR), p.iv, kc0, kcn, MM_MR, NULL);
        nn_cg_loop_end(cg, &t);
    }
    nn_cg_loop_end(cg, &p);
    nn_cg_loop_end(cg, &mb);
    nn_cg_loop_end(cg, &kb);
    if (m->pipe)
        pipe_flush(cg, m);
    nn_cg_kernel_end(cg);
}

// Tiny products (small layers, their gradients) as plain loops: one short
// kernel instead of a packing pass and a register-tiled nest, which cost far
// more to compile than they could save at run time.
#define MM_SMALL 32768

static void emit_small(NnCg *cg, Mm *m)
{
    nn_cg_kernel_begin(cg, "mm_small", mm_work(m, 0));
    mm_dims(cg, m);
    m->a = nn_cg_buf(cg, m->a_slot);
    m->c = nn_cg_buf(cg, m->out_slot);
    LLVMValueRef b = nn_cg_buf(cg, m->b_slot);
    if (m->epi)
        nn_expr_bind(cg, m->epi);
    LLVMValueRef acc = nn_cg_alloca(cg, nn_cg_type(cg, m->dt));
    NnLoop i, j, k;
    nn_cg_loop_begin(cg, &i, nn_cg_i64(cg, 0), m->mv, 1);
    nn_cg_loop_begin(cg, &j, nn_cg_i64(cg, 0), nn_cg_i64(cg, m->n), 1);
    LLVMBuildStore(cg->b, nn_cg_const(cg, m->dt, 0, 1), acc);
    nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), m->kv, 1);
    LLVMValueRef boff =
        m->tb ? add(cg, mulv(cg, j.iv, m->kv), k.iv) : add(cg, mul(cg, k.iv, m->n), j.iv);
    LLVMValueRef args[3] = {a_elem(cg, m, i.iv, k.iv), nn_cg_load(cg, m->dt, b, boff, 1, NULL),
                            LLVMBuildLoad2(cg->b, nn_cg_type(cg, m->dt), acc, "")};
    LLVMTypeRef t = nn_cg_type(cg, m->dt);
    LLVMBuildStore(cg->b, nn_cg_intrinsic(cg, "llvm.fma", &t, 1, args, 3), acc);
    nn_cg_loop_end(cg, &k);
    LLVMValueRef v = LLVMBuildLoad2(cg->b, t, acc, "");
    LLVMValueRef off = add(cg, mul(cg, i.iv, m->n), j.iv);
    if (m->epi) {
        LLVMValueRef idx[2] = {i.iv, j.iv};
        nn_expr_epilogue(cg, m->epi, idx, 1, NULL, v, m->out_dt, m->c, off);
    } else {
        nn_cg_store(cg, m->out_dt, v, m->c, off, 1, NULL);
    }
    nn_cg_loop_end(cg, &j);
    nn_cg_loop_end(cg, &i);
    nn_cg_kernel_end(cg);
}

// ---- short products (M <= MM_ROWS): B read in place, no packing ----

// Packing costs K*N per call whatever M is; with a few rows it is most of the
// work (batch-1 inference). Rows of op(A) times B's rows straight from memory:
// per panel of NR columns, the M x 2 accumulator vectors of a tile, one
// broadcast of A[i,k] per row and two (masked at the edge) loads of B row k.
// Each accumulator is a chain of dependent FMAs, so with fewer than
// MM_CHAINS of them the FMA latency, not the loads, sets the pace: K is then
// split KS ways (k, k+1, ... of each step of KS into separate accumulators,
// summed at the end). One row takes several panels at once instead
// (row_groups).
// Threads split the panels. A run-time M (at most MM_ROWS, nrows of the
// `rows` real) and a run-time K (one chain per accumulator) use it too.
#define MM_CHAINS 8

// One step of the K loop at k: row r's products into accumulator set s.
static void rows_fma(NnCg *cg, Mm *m, LLVMValueRef (*acc)[2][4], int rows, LLVMValueRef nrows,
                     int s, LLVMValueRef k, LLVMValueRef j0)
{
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    LLVMValueRef bv[2];
    for (int v = 0; v < 2; v++) {
        LLVMValueRef off = add(cg, add(cg, mul(cg, k, m->n), j0), nn_cg_i64(cg, v * m->vw));
        bv[v] = nn_cg_load(cg, m->dt, m->bp, off, m->vw, m->mask[v]);
    }
    for (int r = 0; r < rows; r++) {
        LLVMValueRef i = tile_row(cg, nn_cg_i64(cg, 0), r, nrows);
        LLVMValueRef sp = nn_cg_splat(cg, a_elem(cg, m, i, k), m->vw);
        for (int v = 0; v < 2; v++) {
            LLVMValueRef args[3] = {sp, bv[v], LLVMBuildLoad2(cg->b, vt, acc[r][v][s], "")};
            LLVMBuildStore(cg->b, nn_cg_intrinsic(cg, "llvm.fma", &vt, 1, args, 3),
                           acc[r][v][s]);
        }
    }
}

// One row (batch-1 prediction): this thread's panels [p0, p1) in groups of
// MM_ROW_GROUP, each group's vectors fed by one contiguous stretch of B's row
// k per step of K (512 bytes of f32) rather than two vectors of each panel
// in turn (1.2x faster on the MLP's first layer), then a pair and a single
// panel. All of a product's groups sum every column the same way, K split
// into row_ks interleaved chains added at the end, so results do not depend
// on which thread or group computes it.
#define MM_ROW_GROUP (MM_CHAINS / 2)

// Chains per column: two, so that a single panel is not held up by the FMA
// latency; four when no group is wider than a pair (the MLP's last layer,
// 10 columns: its one vector of them has 4 chains instead of 2).
static int row_ks(const Mm *m)
{
    return m->rt_k || m->k < 16 ? 1 : m->np <= 2 ? 4 : 2;
}

// `panels` panels from column j0 (whole panels, masked at N's edge only).
static void row_group(NnCg *cg, Mm *m, LLVMValueRef b, LLVMValueRef j0, int panels,
                      LLVMValueRef (*acc)[4])
{
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    int nv = 2 * panels, ks = row_ks(m);
    LLVMValueRef mask[2 * MM_ROW_GROUP];
    for (int v = 0; v < nv; v++) {
        mask[v] = col_mask(cg, m, add(cg, j0, nn_cg_i64(cg, v * m->vw)));
        for (int s = 0; s < ks; s++)
            LLVMBuildStore(cg->b, LLVMConstNull(vt), acc[v][s]);
    }
    int64_t kfull = m->k - m->k % ks;
    // Whole steps of ks, then the last K % ks steps (step k into chain k % ks).
    for (int part = 0; part < 2; part++) {
        if (part == 1 && (m->rt_k || kfull == m->k))
            break;
        NnLoop k;
        if (part == 0)
            nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), m->rt_k ? m->kv : nn_cg_i64(cg, kfull), ks);
        for (int s = 0; s < (part ? (int)(m->k - kfull) : ks); s++) {
            LLVMValueRef kk = add(cg, part ? nn_cg_i64(cg, kfull) : k.iv, nn_cg_i64(cg, s));
            LLVMValueRef sp = nn_cg_splat(cg, a_elem(cg, m, nn_cg_i64(cg, 0), kk), m->vw);
            LLVMValueRef row = add(cg, mul(cg, kk, m->n), j0);
            for (int v = 0; v < nv; v++) {
                LLVMValueRef bv = nn_cg_load(cg, m->dt, b, add(cg, row, nn_cg_i64(cg, v * m->vw)),
                                             m->vw, mask[v]);
                LLVMValueRef args[3] = {sp, bv, LLVMBuildLoad2(cg->b, vt, acc[v][s], "")};
                LLVMBuildStore(cg->b, nn_cg_intrinsic(cg, "llvm.fma", &vt, 1, args, 3),
                               acc[v][s]);
            }
        }
        if (part == 0)
            nn_cg_loop_end(cg, &k);
    }
    for (int v = 0; v < nv; v++)
        for (int s = 1; s < ks; s++) {
            LLVMValueRef sum = LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, vt, acc[v][0], ""),
                                             LLVMBuildLoad2(cg->b, vt, acc[v][s], ""), "");
            LLVMBuildStore(cg->b, sum, acc[v][0]);
        }
    for (int g = 0; g < panels; g++) { // each panel's two vectors through the epilogue
        m->acc[0][0] = acc[2 * g][0];
        m->acc[0][1] = acc[2 * g + 1][0];
        m->mask[0] = mask[2 * g];
        m->mask[1] = mask[2 * g + 1];
        tile_store(cg, m, nn_cg_i64(cg, 0), add(cg, j0, nn_cg_i64(cg, g * m->nr)), 1, true, NULL);
    }
}

static void row_groups(NnCg *cg, Mm *m, LLVMValueRef b, LLVMValueRef p0, LLVMValueRef p1)
{
    enum { G = MM_ROW_GROUP };
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    LLVMValueRef acc[2 * G][4];
    for (int v = 0; v < 2 * G; v++)
        for (int s = 0; s < row_ks(m); s++)
            acc[v][s] = nn_cg_alloca(cg, vt);
    LLVMValueRef full = LLVMBuildSDiv(cg->b, LLVMBuildSub(cg->b, p1, p0, ""), nn_cg_i64(cg, G), "");
    NnLoop q;
    nn_cg_loop_begin(cg, &q, nn_cg_i64(cg, 0), full, 1);
    row_group(cg, m, b, mul(cg, add(cg, p0, mul(cg, q.iv, G)), m->nr), G, acc);
    nn_cg_loop_end(cg, &q);
    // Fewer than G left (all of a thread's share of w2 in the MLP on 2
    // threads): a pair of panels, then a single one, each only if there.
    LLVMValueRef p = add(cg, p0, mul(cg, full, G));
    for (int w = G / 2; w >= 1; w /= 2) {
        LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "rowpanels");
        LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "rowpanelsdone");
        LLVMBasicBlockRef from = LLVMGetInsertBlock(cg->b);
        LLVMValueRef left = LLVMBuildSub(cg->b, p1, p, "");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, left, nn_cg_i64(cg, w), ""), yes,
                        done);
        LLVMPositionBuilderAtEnd(cg->b, yes);
        row_group(cg, m, b, mul(cg, p, m->nr), w, acc);
        LLVMValueRef next = add(cg, p, nn_cg_i64(cg, w));
        LLVMBasicBlockRef end = LLVMGetInsertBlock(cg->b);
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, done);
        LLVMValueRef phi = LLVMBuildPhi(cg->b, cg->t_i64, "");
        LLVMValueRef vals[2] = {p, next};
        LLVMBasicBlockRef blocks[2] = {from, end};
        LLVMAddIncoming(phi, vals, blocks, 2);
        p = phi;
    }
}

// The rows loop nest: B (in place, pointer b) times `rows` rows of op(A), of
// which the first nrows are real when nrows is not NULL (a run-time M).
static void rows_body(NnCg *cg, Mm *m, LLVMValueRef b, int rows, LLVMValueRef nrows)
{
    if (rows == 1 && !nrows) {
        LLVMValueRef p0, p1;
        nn_cg_split(cg, m->np, 1, &p0, &p1);
        row_groups(cg, m, b, p0, p1);
        return;
    }
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    int ks = MM_CHAINS / (2 * (rows > 0 ? rows : 1));
    ks = ks < 1 ? 1 : ks > 4 ? 4 : ks;
    if (m->k < 4 * ks || m->rt_k)
        ks = 1;
    LLVMValueRef acc[MM_ROWS][2][4];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < 2; v++)
            for (int s = 0; s < ks; s++)
                acc[r][v][s] = nn_cg_alloca(cg, vt);
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < 2; v++)
            m->acc[r][v] = acc[r][v][0];
    m->bp = b;
    LLVMValueRef p0, p1;
    nn_cg_split(cg, m->np, 1, &p0, &p1);
    NnLoop p, k, kt;
    nn_cg_loop_begin(cg, &p, p0, p1, 1);
    LLVMValueRef j0 = mul(cg, p.iv, m->nr);
    for (int v = 0; v < 2; v++)
        m->mask[v] = col_mask(cg, m, add(cg, j0, nn_cg_i64(cg, v * m->vw)));
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < 2; v++)
            for (int s = 0; s < ks; s++)
                LLVMBuildStore(cg->b, LLVMConstNull(vt), acc[r][v][s]);
    int64_t kfull = m->k - m->k % ks;
    nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), m->rt_k ? m->kv : nn_cg_i64(cg, kfull), ks);
    for (int s = 0; s < ks; s++)
        rows_fma(cg, m, acc, rows, nrows, s, add(cg, k.iv, nn_cg_i64(cg, s)), j0);
    k.unroll = ks == 1;
    nn_cg_loop_end(cg, &k);
    if (!m->rt_k && kfull < m->k) {
        nn_cg_loop_begin(cg, &kt, nn_cg_i64(cg, kfull), nn_cg_i64(cg, m->k), 1);
        rows_fma(cg, m, acc, rows, nrows, 0, kt.iv, j0);
        nn_cg_loop_end(cg, &kt);
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < 2; v++)
            for (int s = 1; s < ks; s++) {
                LLVMValueRef sum = LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, vt, acc[r][v][0], ""),
                                                 LLVMBuildLoad2(cg->b, vt, acc[r][v][s], ""), "");
                LLVMBuildStore(cg->b, sum, acc[r][v][0]);
            }
    tile_store(cg, m, nn_cg_i64(cg, 0), j0, rows, true, nrows);
    nn_cg_loop_end(cg, &p);
}

static void emit_rows(NnCg *cg, Mm *m)
{
    nn_cg_kernel_begin(cg, m->epi ? "mm_rows_fused" : "mm_rows", mm_work(m, m->k * m->n));
    few_split(cg, m);
    mm_dims(cg, m);
    m->a = nn_cg_buf(cg, m->a_slot);
    m->c = nn_cg_buf(cg, m->out_slot);
    if (m->epi)
        nn_expr_bind(cg, m->epi);
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    m->tbuf = nn_cg_alloca(cg, LLVMArrayType2(vt, 2 * MM_MR));
    LLVMSetAlignment(m->tbuf, 64);
    m->kblocks = 1;
    rows_body(cg, m, nn_cg_buf(cg, m->b_slot), (int)m->m, NULL);
    nn_cg_kernel_end(cg);
}

// The same with B transposed (B is N x K) and A not: C[i,j] is the dot product
// of two contiguous rows, vectorized over K with a masked last step, reduced
// across lanes, then the epilogue on the scalar. Threads split the columns.
static void emit_dots(NnCg *cg, Mm *m)
{
    nn_cg_kernel_begin(cg, m->epi ? "mm_dots_fused" : "mm_dots", mm_work(m, m->k * m->n));
    few_split(cg, m);
    mm_dims(cg, m);
    m->a = nn_cg_buf(cg, m->a_slot);
    LLVMValueRef b = nn_cg_buf(cg, m->b_slot);
    m->c = nn_cg_buf(cg, m->out_slot);
    if (m->epi)
        nn_expr_bind(cg, m->epi);
    LLVMTypeRef vt = nn_cg_vtype(cg, m->dt, m->vw);
    LLVMValueRef acc = nn_cg_alloca(cg, vt);
    int64_t kfull = m->k - m->k % m->vw;
    LLVMValueRef j0, j1;
    nn_cg_split(cg, m->n, 1, &j0, &j1);
    NnLoop j, i, k;
    nn_cg_loop_begin(cg, &j, j0, j1, 1);
    nn_cg_loop_begin(cg, &i, nn_cg_i64(cg, 0), nn_cg_i64(cg, m->m), 1);
    LLVMBuildStore(cg->b, LLVMConstNull(vt), acc);
    LLVMValueRef arow = mul(cg, i.iv, m->k), brow = mul(cg, j.iv, m->k);
    nn_cg_loop_begin(cg, &k, nn_cg_i64(cg, 0), nn_cg_i64(cg, kfull), m->vw);
    LLVMValueRef args[3] = {nn_cg_load(cg, m->dt, m->a, add(cg, arow, k.iv), m->vw, NULL),
                            nn_cg_load(cg, m->dt, b, add(cg, brow, k.iv), m->vw, NULL),
                            LLVMBuildLoad2(cg->b, vt, acc, "")};
    LLVMBuildStore(cg->b, nn_cg_intrinsic(cg, "llvm.fma", &vt, 1, args, 3), acc);
    k.unroll = true;
    nn_cg_loop_end(cg, &k);
    if (kfull < m->k) {
        LLVMValueRef mk = nn_cg_mask(cg, m->vw, (int)(m->k - kfull));
        LLVMValueRef kt = nn_cg_i64(cg, kfull);
        LLVMValueRef targs[3] = {nn_cg_load(cg, m->dt, m->a, add(cg, arow, kt), m->vw, mk),
                                 nn_cg_load(cg, m->dt, b, add(cg, brow, kt), m->vw, mk),
                                 LLVMBuildLoad2(cg->b, vt, acc, "")};
        LLVMBuildStore(cg->b, nn_cg_intrinsic(cg, "llvm.fma", &vt, 1, targs, 3), acc);
    }
    LLVMValueRef s = nn_cg_hreduce(cg, NN_OP_ADD, m->dt, LLVMBuildLoad2(cg->b, vt, acc, ""), m->vw);
    LLVMValueRef off = add(cg, mul(cg, i.iv, m->n), j.iv);
    if (m->epi) {
        LLVMValueRef idx[2] = {i.iv, j.iv};
        nn_expr_epilogue(cg, m->epi, idx, 1, NULL, s, m->out_dt, m->c, off);
    } else {
        nn_cg_store(cg, m->out_dt, s, m->c, off, 1, NULL);
    }
    nn_cg_loop_end(cg, &i);
    nn_cg_loop_end(cg, &j);
    nn_cg_kernel_end(cg);
}

void nn_cg_emit_matmul(NnCg *cg, NnDType dt, int a_slot, int b_slot, bool ta, bool tb, int64_t m,
                       int64_t n, int64_t k, NnExpr *epi, int out_slot, bool rt_m, bool rt_k)
{
    Mm mm = {.dt = dt,
             .ta = ta,
             .tb = tb,
             .m = m,
             .n = n,
             .k = k,
             .rt_m = rt_m,
             .rt_k = rt_k,
             .a_slot = a_slot,
             .b_slot = b_slot,
             .out_slot = out_slot,
             .epi = epi,
             .out_dt = cg->g->nodes[out_slot].dtype};
    mm.vw = dt == NN_DT_F64 ? 8 : 16;
    mm.nr = 2 * mm.vw;
    // A product of at most one vector of columns (a classifier's 10
    // outputs) computes only a panel's first vector: the second one's lanes
    // are all padding. Same FMAs in the same order for every live column.
    mm.nv = n <= mm.vw ? 1 : 2;
    mm.np = (n + mm.nr - 1) / mm.nr;
    // Short products first: the tiny path's scalar loops read B with stride N.
    if (m <= MM_ROWS && !tb && !rt_m) {
        emit_rows(cg, &mm);
        return;
    }
    if (m <= MM_ROWS && !ta && !rt_m && !rt_k) {
        emit_dots(cg, &mm);
        return;
    }
    if (m * n * k <= MM_SMALL) {
        emit_small(cg, &mm);
        return;
    }
    // Batch-1 prediction and other short run-time batches skip the packing.
    // Not in a step that updates variables (training): there a batch of a
    // few rows is at most a short last batch, which the tiles handle, and
    // the two extra loop nests were a tenth of the MLP step's compile time.
    mm.rt_rows = rt_m && !tb && cg->g->nupdates == 0;
    int64_t esize = (int64_t)nnrt_dtype_size(dt);
    mm.pack_slot = rt_k ? nn_cg_add_scratch_rows(cg, mm.np * (k / cg->rt_ref) * mm.nr * esize)
                        : nn_cg_add_scratch(cg, mm.np * k * mm.nr * esize);
    // Partial sums live in C between K blocks, so they need C's dtype (else
    // one block of K; kc 0 for a run-time K). A transposed A whose K fits
    // the packing buffer takes all of K in one block too (emit_compute). A
    // fixed K splits into equal blocks (10000 = 40 x 250 under MM_KCA, not
    // 39 x 256 + 16, whose last block would be mostly the tiles' loads and
    // stores of C).
    int64_t kc = rt_k ? 0 : (k > 0 ? k : 1), kmax = ta ? MM_KCA : MM_KC;
    bool ta_whole = ta && k * MM_MR * esize <= MM_APK_BYTES; // all of K packed (emit_compute)
    if (mm.out_dt == dt && !rt_k && !ta_whole)
        kc = (k + (k + kmax - 1) / kmax - 1) / ((k + kmax - 1) / kmax);
    mm.split_m = split_rows(&mm);
    // Split by panels, each thread reads only the panels it packed, so the
    // packing runs in the compute kernel: no kernel, dispatch and barrier
    // of its own, and the panels are still in the thread's cache.
    mm.inline_pack = !mm.split_m;
    if (!mm.inline_pack)
        emit_pack(cg, &mm);
    emit_compute(cg, &mm, kc);
}

bool llvm_matmul(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    int ra, rb;
    int64_t da[NN_MAX_RANK], db[NN_MAX_RANK], m, nn, k;
    nn_cg_shape(cg, cg->g, n->in[0], &ra, da);
    nn_cg_shape(cg, cg->g, n->in[1], &rb, db);
    nn_matmul_dims(da, ra, db, rb, n->attr.ta, n->attr.tb, &m, &nn, &k);
    bool rt_m = !n->attr.ta && nn_cg_rt(cg, cg->g, n->in[0]);
    bool rt_k = (n->attr.ta && nn_cg_rt(cg, cg->g, n->in[0])) ||
                (!n->attr.tb && nn_cg_rt(cg, cg->g, n->in[1]));
    nn_cg_emit_matmul(cg, n->dtype, n->in[0], n->in[1], n->attr.ta, n->attr.tb, m, nn, k, NULL, id,
                      rt_m, rt_k);
    return true;
}
