// LOOP and LOOP_OUT in the JIT. A loop's body is lowered once, into the same
// module, as a graph of its own ("<prefix>L<id>_step(pool, bufs)" and its
// kernels), whatever the trip count; so the code and the compile time do not
// grow with the sequence length. The loop node becomes a serial kernel that
// points the body's buffer table at the body's planned workspace (a slot of
// its own), then for each step points the body's INPUTs at the carries, slice
// t of each sequence (contiguous: sequences are [trips, ...]) and the
// invariants, and calls the body's step, whose kernels get the process-wide
// pool. A per-step output the body computes is pointed at row t of its stack
// and a new carry at the other of the carry's two buffers (its result and
// staging regions of the node's buffer, ir/loop.h has the layout), swapped
// after the step; so nothing is copied. A stacked output goes straight into
// the buffer of its first LOOP_OUT (nn_loop_out_direct; the plan places that
// buffer from the loop's step on), so LOOP_OUT copies nothing either. Outputs
// that are body inputs (a saved carry, a carry passed on) are copied, carries
// through staging.
// Label checks (TAKE, ONEHOT, GATHER) inside a body write the body's own
// error slot, which each step resets; after each step the loop copies the
// first failure (its row, and the body's indices that held it, into a slot
// of their own) to entries of the enclosing graph's error slot, so the step
// reports it as the interpreter does: the first bad row of the first step
// that had one.
// With the batch at run time the body is compiled for any batch as well: its
// batch slot points at its part's row count, its plan is per row, and every
// offset above that has the batch (a carry's rows, step t of a sequence or a
// stack) is a row count times bytes per row; the loop's buffer is laid out
// per row (nn_loop_layout_rows), its regions without the batch in an owned
// slot of their own (NnCg.loop_fixed).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "loop.h"
#include "nn_llvm.h"
#include "plan.h"
#include "pool.h"

static LLVMValueRef byte_at(NnCg *cg, LLVMValueRef base, LLVMValueRef off)
{
    return LLVMBuildGEP2(cg->b, cg->t_i8, base, &off, 1, "");
}

static void memcpy_bytes(NnCg *cg, LLVMValueRef dst, LLVMValueRef src, int64_t n)
{
    if (n <= 0)
        return;
    LLVMTypeRef ovl[3] = {cg->t_ptr, cg->t_ptr, cg->t_i64};
    LLVMValueRef args[4] = {dst, src, nn_cg_i64(cg, n), LLVMConstInt(cg->t_i1, 0, 0)};
    nn_cg_intrinsic(cg, "llvm.memmove", ovl, 3, args, 4);
}

// &table[slot] and table[slot] for a body buffer table.
static LLVMValueRef table_at(NnCg *cg, LLVMValueRef table, int slot)
{
    LLVMValueRef idx = nn_cg_i64(cg, slot);
    return LLVMBuildGEP2(cg->b, cg->t_ptr, table, &idx, 1, "");
}

static LLVMValueRef table_get(NnCg *cg, LLVMValueRef table, int slot)
{
    return LLVMBuildLoad2(cg->b, cg->t_ptr, table_at(cg, table, slot), "");
}

static LLVMValueRef err_at(NnCg *cg, LLVMValueRef errs, int k)
{
    LLVMValueRef idx = nn_cg_i64(cg, k);
    return LLVMBuildInBoundsGEP2(cg->b, cg->t_i64, errs, &idx, 1, "");
}

// After a step: when body check k failed and outer entry e has nothing yet,
// e takes the bad row and its copy the bad index (the body's copy is
// rewritten by later steps).
static void forward_error(NnCg *cg, LLVMValueRef table, const NnCg *bc, int k, int e)
{
    LLVMValueRef bad =
        LLVMBuildLoad2(cg->b, cg->t_i64, err_at(cg, table_get(cg, table, bc->err_slot), k), "");
    LLVMValueRef out = err_at(cg, nn_cg_buf(cg, cg->err_slot), e);
    LLVMValueRef cur = LLVMBuildLoad2(cg->b, cg->t_i64, out, "");
    LLVMValueRef first =
        LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, bad, nn_cg_i64(cg, 0), ""),
                     LLVMBuildICmp(cg->b, LLVMIntEQ, cur, nn_cg_i64(cg, -1), ""), "");
    LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "bad");
    LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "ok");
    LLVMBuildCondBr(cg->b, first, yes, next);
    LLVMPositionBuilderAtEnd(cg->b, yes);
    LLVMBuildStore(cg->b, bad, out);
    LLVMValueRef from = table_get(cg, table, bc->checks[k].slot);
    LLVMValueRef v =
        LLVMBuildLoad2(cg->b, cg->t_i32, LLVMBuildInBoundsGEP2(cg->b, cg->t_i32, from, &bad, 1, ""), "");
    LLVMValueRef to = nn_cg_buf(cg, cg->checks[e].slot);
    LLVMBuildStore(cg->b, v, LLVMBuildInBoundsGEP2(cg->b, cg->t_i32, to, &bad, 1, ""));
    LLVMBuildBr(cg->b, next);
    LLVMPositionBuilderAtEnd(cg->b, next);
}

static int64_t node_bytes(const NnCg *cg, const NnGraph *g, NnId id)
{
    return nn_cg_numel(cg, g, id) * (int64_t)nnrt_dtype_size(g->nodes[id].dtype);
}

// ---- splitting a loop by rows of the batch ----
//
// A body whose every value either has the batch as its leading dim and is
// computed row by row (elementwise, products of those rows by invariants,
// slices across columns), or is an invariant, or sums over the rows only to
// add them to a carried value that nothing else reads (the weight gradients
// of a reverse loop), runs as P independent parts of N / P rows each: each
// part is the whole loop over its rows, with its own workspace, and the
// summed carries' parts are added after. One kernel with P parts runs them on
// the pool's threads, so a second core takes half of every step, where
// splitting each of the body's small kernels across threads gained nothing.
// P is chosen for the compile's batch; with the batch at run time part p
// takes rows [p * N / P, (p + 1) * N / P), and a batch of fewer than 16 rows
// per part runs as one part.

enum { R_INV, R_ROW, R_PART, R_SUMC, R_UPD };

static bool row_shape(const NnShape *s, int64_t sd)
{
    if (s->rank < 1 || s->dim[0] != sd)
        return false;
    for (int d = 1; d < s->rank; d++)
        if (s->dim[d] == sd)
            return false;
    return true;
}

static bool has_dim(const NnShape *s, int64_t sd)
{
    for (int d = 0; d < s->rank; d++)
        if (s->dim[d] == sd)
            return true;
    return false;
}

// Classes of b's values (cls) from its INPUTs' (in_cls; owner: the summed
// carry each R_SUMC input stands for); false when a value breaks the rules.
static bool row_classes(const NnGraph *b, const int *in_cls, const int *in_owner, int64_t sd,
                        int *cls, int *owner)
{
    int q = 0;
    for (NnId i = 0; i < b->count; i++) {
        const NnNode *n = &b->nodes[i];
        owner[i] = -1;
        if (n->op == NN_OP_INPUT) {
            cls[i] = in_cls[q];
            owner[i] = in_owner[q++];
            continue;
        }
        int nrow = 0, npart = 0, nsumc = 0, nupd = 0, c = -1;
        for (int k = 0; k < n->nin; k++) {
            int ck = cls[n->in[k]];
            nrow += ck == R_ROW;
            npart += ck == R_PART;
            nupd += ck == R_UPD;
            if (ck == R_SUMC) {
                nsumc++;
                c = owner[n->in[k]];
            }
        }
        bool row = row_shape(&n->shape, sd), sym = has_dim(&n->shape, sd);
        if (nupd)
            return false; // an update is only ever a carry's new value
        if (n->op == NN_OP_FUSED) {
            const NnGraph *fb = n->attr.body;
            int *ic = malloc(((size_t)n->nin + 1) * sizeof(int) * 2);
            int *fc = malloc(((size_t)fb->count + 1) * sizeof(int) * 2);
            NN_ASSERT(ic && fc);
            for (int k = 0; k < n->nin; k++) {
                ic[k] = cls[n->in[k]];
                ic[n->nin + k] = owner[n->in[k]];
            }
            bool ok = row_classes(fb, ic, ic + n->nin, sd, fc, fc + fb->count);
            NnId o = fb->outputs[0].id;
            if (ok) {
                cls[i] = fc[o];
                owner[i] = fc[fb->count + o];
            }
            free(ic);
            free(fc);
            if (!ok || (cls[i] == R_ROW) != row || (cls[i] != R_ROW && sym))
                return false;
            continue;
        }
        if (nsumc) { // carry + partial sum
            if (n->op != NN_OP_ADD || nsumc != 1 || npart != 1 || sym)
                return false;
            cls[i] = R_UPD;
            owner[i] = c;
            continue;
        }
        if (npart) { // partial sums only add up
            if (n->op != NN_OP_ADD || npart != n->nin || sym)
                return false;
            cls[i] = R_PART;
            continue;
        }
        if (!nrow) { // invariant, or an invariant broadcast to rows
            if (sym && !(row && n->op == NN_OP_BROADCAST))
                return false;
            cls[i] = row ? R_ROW : R_INV;
            continue;
        }
        const NnNode *a = &b->nodes[n->in[0]];
        const NnNode *w = n->nin > 1 ? &b->nodes[n->in[1]] : NULL;
        if (row) {
            bool ok = nn_op_has(n->op, NN_OPF_ELEMWISE) || n->op == NN_OP_BROADCAST;
            ok |= (n->op == NN_OP_SLICE || n->op == NN_OP_SLICE_BWD || n->op == NN_OP_CONCAT) &&
                  n->attr.axis != 0;
            ok |= n->op == NN_OP_MATMUL && !n->attr.ta && cls[n->in[0]] == R_ROW &&
                  cls[n->in[1]] == R_INV && a->shape.rank == 2;
            if (!ok)
                return false;
            cls[i] = R_ROW;
            continue;
        }
        if (sym)
            return false;
        // Sums over the rows: h^T d, or a reduction over the batch axis.
        bool ok = n->op == NN_OP_MATMUL && n->attr.ta && !n->attr.tb && a->shape.rank == 2 &&
                  cls[n->in[0]] == R_ROW && w && cls[n->in[1]] == R_ROW;
        ok |= n->op == NN_OP_REDUCE_SUM && n->nin == 1 && (n->attr.axes & 1u) &&
              !n->attr.keep;
        if (!ok)
            return false;
        cls[i] = R_PART;
    }
    return true;
}

// How many parts loop n runs as (1: whole), the batch's symbol dim in *sd and
// each input's class in in_cls. Parts keep at least 16 rows.
static int row_parts(const NnCg *cg, const NnNode *n, int64_t *sd, int *in_cls)
{
    const NnGraph *b = n->attr.body;
    int C = n->attr.ncarry, S = n->attr.nseq;
    int P = nnrt_pool_size(nnrt_pool_default());
    *sd = 0;
    for (int k = 0; k < C && !*sd; k++) {
        const NnNode *x = &cg->g->nodes[n->in[k]];
        if (x->shape.rank > 0 && nn_dim_is_sym(x->shape.dim[0]))
            *sd = x->shape.dim[0];
    }
    if (P < 2 || !*sd || n->nin > 64)
        return 1;
    int64_t rows = cg->symv[-*sd - 1];
    while (P > 1 && (rows % P || rows / P < 16))
        P--;
    if (P < 2)
        return 1;
    int owner[64];
    for (int k = 0; k < n->nin; k++) {
        const NnShape *s = &b->nodes[nn_loop_body_input(b, k)].shape;
        owner[k] = -1;
        if (row_shape(s, *sd))
            in_cls[k] = R_ROW;
        else if (has_dim(s, *sd))
            return 1;
        else if (k < C && (b->nodes[nn_loop_body_input(b, k)].dtype == NN_DT_F32 ||
                             b->nodes[nn_loop_body_input(b, k)].dtype == NN_DT_F64)) {
            in_cls[k] = R_SUMC;
            owner[k] = k;
        } else if (k >= C + S)
            in_cls[k] = R_INV;
        else
            return 1;
    }
    int *cls = malloc(((size_t)b->count + 1) * 2 * sizeof(int));
    NN_ASSERT(cls);
    bool ok = row_classes(b, in_cls, owner, *sd, cls, cls + b->count);
    // Carries: a row carry stays rows, a summed one takes its own update;
    // stacked outputs are rows. An input read only by its update is summed.
    for (int j = 0; ok && j < b->noutputs; j++) {
        NnId o = b->outputs[j].id;
        if (j < C && in_cls[j] == R_SUMC)
            ok = cls[o] == R_UPD && cls[b->count + o] == j;
        else
            ok = cls[o] == R_ROW;
    }
    free(cls);
    return ok ? P : 1;
}

static LLVMValueRef i64_mul(NnCg *cg, LLVMValueRef a, int64_t b)
{
    return LLVMBuildMul(cg->b, a, nn_cg_i64(cg, b), "");
}

static LLVMValueRef i64_add(NnCg *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildAdd(cg->b, a, b, "");
}

static int64_t align64(int64_t n) { return (n + 63) / 64 * 64; }

static void memcpy_v(NnCg *cg, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef n)
{
    LLVMTypeRef ovl[3] = {cg->t_ptr, cg->t_ptr, cg->t_i64};
    LLVMValueRef args[4] = {dst, src, n, LLVMConstInt(cg->t_i1, 0, 0)};
    nn_cg_intrinsic(cg, "llvm.memmove", ovl, 3, args, 4);
}

// A body value's bytes for r rows of the batch: fix + row * r (row is 0 for
// a value without the batch).
typedef struct Sz {
    int64_t fix, row;
} Sz;

static Sz body_sz(const NnCg *bc, NnId id, int64_t sd, int64_t rows)
{
    int64_t nb = node_bytes(bc, bc->g, id);
    if (!sd || !has_dim(&bc->g->nodes[id].shape, sd))
        return (Sz){nb, 0};
    return (Sz){0, nb / rows};
}

static LLVMValueRef sz_at(NnCg *cg, Sz z, LLVMValueRef rows)
{
    return z.row ? i64_add(cg, nn_cg_i64(cg, z.fix), i64_mul(cg, rows, z.row))
                 : nn_cg_i64(cg, z.fix);
}

// The parts a loop of P parts runs as for this run's batch: P, or with the
// batch at run time one when the batch is too small for P parts of 16 rows.
static LLVMValueRef run_parts(NnCg *cg, int P, bool rt, LLVMValueRef batch)
{
    if (P == 1 || !rt)
        return nn_cg_i64(cg, P);
    LLVMValueRef big = LLVMBuildICmp(cg->b, LLVMIntSGE, batch, nn_cg_i64(cg, 16 * (int64_t)P), "");
    return LLVMBuildSelect(cg->b, big, nn_cg_i64(cg, P), nn_cg_i64(cg, 1), "");
}

// After the parts: each summed carry's parts 1..P-1 (at part[p - 1]) added
// into part 0's result (at dst), n elements of dt.
static void sum_parts(NnCg *cg, NnDType dt, LLVMValueRef dst, LLVMValueRef base, int64_t stride,
                      int P, int64_t n)
{
    NnLoop e;
    nn_cg_loop_begin(cg, &e, nn_cg_i64(cg, 0), nn_cg_i64(cg, n), 1);
    LLVMValueRef acc = nn_cg_load(cg, dt, dst, e.iv, 1, NULL);
    for (int p = 1; p < P; p++) {
        LLVMValueRef src = byte_at(cg, base, nn_cg_i64(cg, (int64_t)(p - 1) * 2 * stride));
        acc = LLVMBuildFAdd(cg->b, acc, nn_cg_load(cg, dt, src, e.iv, 1, NULL), "");
    }
    nn_cg_store(cg, dt, acc, dst, e.iv, 1, NULL);
    nn_cg_loop_end(cg, &e);
}

// Whether loop n has the run-time batch in an input (the loop then runs its
// body compiled for any batch too).
static bool loop_rt(const NnCg *cg, const NnNode *n)
{
    for (int k = 0; cg->rt_sym >= 0 && k < n->nin; k++)
        if (has_dim(&cg->g->nodes[n->in[k]].shape, -cg->rt_sym - 1))
            return true;
    return false;
}

// Where region k of loop id's buffer starts (ir/loop.h): with the batch at run
// time, a region with it at off[k] per row of the buffer, the others in the
// loop's fixed slot.
typedef struct Layout {
    int64_t *off;
    bool *rows; // NULL: one fixed layout
    int fixed;  // the slot of the regions without the batch, or -1
} Layout;

static void layout_new(NnCg *cg, NnId id, Layout *L)
{
    const NnNode *n = &cg->g->nodes[id];
    int nreg = nn_loop_nresults(n) + n->attr.ncarry;
    L->off = malloc(((size_t)nreg + 1) * sizeof *L->off);
    L->rows = NULL;
    L->fixed = -1;
    NN_ASSERT(L->off);
    if (!nn_loop_has_rows(n, cg->rt_sym)) {
        nn_loop_layout(n, cg->symv, L->off);
        return;
    }
    int64_t one[NN_MAX_SYMS];
    for (int k = 0; k < cg->g->nsyms; k++)
        one[k] = cg->symv[k];
    one[cg->rt_sym] = 1;
    L->rows = malloc(((size_t)nreg + 1) * sizeof *L->rows);
    NN_ASSERT(L->rows);
    int64_t fixed = nn_loop_layout_rows(n, one, cg->rt_sym, L->off, L->rows);
    if (cg->loop_fixed[id] < 0 && fixed > 0)
        cg->loop_fixed[id] = nn_cg_add_owned(cg, fixed);
    L->fixed = cg->loop_fixed[id];
}

static LLVMValueRef region(NnCg *cg, NnId id, const Layout *L, int k)
{
    if (!L->rows)
        return byte_at(cg, nn_cg_buf(cg, id), nn_cg_i64(cg, L->off[k]));
    if (!L->rows[k])
        return byte_at(cg, nn_cg_buf(cg, L->fixed), nn_cg_i64(cg, L->off[k]));
    return byte_at(cg, nn_cg_buf(cg, id), i64_mul(cg, nn_cg_batch(cg), L->off[k]));
}

static void layout_free(Layout *L)
{
    free(L->off);
    free(L->rows);
}

// What both compiled forms of a loop share: the node, its parts, the
// layout of its buffer and the summed carries' parts.
typedef struct Shared {
    const NnNode *n;
    int C, S, nres, P;
    int64_t sd, brows; // the batch's symbol dim (0: none), rows the body is compiled for
    int *in_cls;
    NnId *bin;
    Layout L;
    bool *summed;
    int *sum_slot;
} Shared;

// The loop's body compiled one way (for its part's rows, or with rt for any
// batch): its lowering, plan and the slots its memory takes.
typedef struct Variant {
    bool rt, ok;
    char prefix[64];
    NnCg bc;
    NnArena *arena;
    NnPlan *plan;
    int *slot_of, *chk;
    int s_table, s_ws, s_scr, s_err, s_wsr, s_scrr;
    int64_t tbytes, scr, ebytes, scratch_rows;
} Variant;

static bool variant_prepare(NnCg *cg, NnId id, const Shared *sh, Variant *v, bool rt,
                            const int64_t *bsymv, const int64_t *prow)
{
    const NnGraph *body = sh->n->attr.body;
    int P = sh->P;
    v->rt = rt;
    snprintf(v->prefix, sizeof v->prefix, "%sL%d%s_", cg->prefix, id, rt ? "r" : "");
    nn_cg_init_rt(&v->bc, cg->ctx, body, bsymv, v->prefix, rt ? cg->rt_sym : -1);
    LLVMDisposeModule(v->bc.mod);
    v->bc.mod = cg->mod;
    NnCg *bc = &v->bc;
    v->arena = nn_arena_new();
    v->slot_of = calloc((size_t)bc->nslots + 1, sizeof(int));
    NN_ASSERT(v->slot_of);
    v->ok = nn_cg_lower_graph(bc);
    if (!v->ok)
        return false;
    NnPlanOptions po = {.const_buffers = true, .rows = rt, .rows_sym = rt ? cg->rt_sym : 0};
    v->plan = nn_plan_build_ex(body, rt ? prow : bsymv, v->arena, &po);
    v->slot_of = realloc(v->slot_of, ((size_t)bc->nslots + 1) * sizeof(int));
    NN_ASSERT(v->slot_of);
    NN_ASSERT(P == 1 || bc->nerr == 0); // row_parts admits no op with checks
    // Memory the body keeps, one copy per part (or per row of the batch,
    // the parts' rows together): its buffer table, workspace, scratch, label
    // errors and bad indices, and the slots of loops nested in it.
    int64_t scratch = 0;
    v->scratch_rows = 0;
    for (int s = body->count; s < bc->nslots; s++) {
        if (s == bc->batch_slot || s == bc->err_slot)
            continue;
        if (bc->slot_owned[s]) {
            v->slot_of[s] = nn_cg_add_owned(
                cg, bc->slot_rows[s] ? bc->slot_bytes[s] : P * align64(bc->slot_bytes[s]));
            cg->slot_rows[v->slot_of[s]] = bc->slot_rows[s];
        } else if (bc->slot_rows[s] && bc->slot_bytes[s] > v->scratch_rows) {
            v->scratch_rows = bc->slot_bytes[s];
        } else if (!bc->slot_rows[s] && bc->slot_bytes[s] > scratch) {
            scratch = bc->slot_bytes[s];
        }
    }
    v->tbytes = align64(8 * (int64_t)bc->nslots);
    v->scr = align64(scratch);
    v->ebytes = align64(bc->slot_bytes[bc->err_slot]);
    v->s_table = nn_cg_add_owned(cg, P * v->tbytes);
    v->s_ws = nn_cg_add_owned(cg, P * v->plan->workspace);
    v->s_scr = nn_cg_add_owned(cg, P * v->scr);
    v->s_err = nn_cg_add_owned(cg, P * v->ebytes);
    v->s_wsr = v->s_scrr = -1;
    if (rt) {
        v->s_wsr = nn_cg_add_owned(cg, v->plan->workspace_rows);
        v->s_scrr = nn_cg_add_owned(cg, v->scratch_rows);
        cg->slot_rows[v->s_wsr] = cg->slot_rows[v->s_scrr] = true;
    }
    // Per body check, the outer entry it reports through.
    v->chk = malloc(((size_t)bc->nerr + 1) * sizeof *v->chk);
    NN_ASSERT(v->chk);
    for (int k = 0; k < bc->nerr; k++) {
        v->chk[k] = nn_cg_add_check(cg, bc->checks[k].kind, bc->checks[k].bound,
                                    bc->slot_bytes[bc->checks[k].slot] / 4);
        cg->slot_rows[cg->checks[v->chk[k]].slot] = bc->slot_rows[bc->checks[k].slot];
    }
    return true;
}

static void variant_free(Variant *v)
{
    nn_cg_fini(&v->bc);
    nn_arena_free(v->arena);
    free(v->slot_of);
    free(v->chk);
}

// The parts of a run (np of them; batch rows in all) with variant v's body.
static void variant_emit(NnCg *cg, NnId id, const Shared *sh, Variant *v, LLVMValueRef batch,
                         LLVMValueRef np)
{
    const NnNode *n = sh->n;
    const NnGraph *body = n->attr.body;
    const NnCg *bc = &v->bc;
    const NnPlan *plan = v->plan;
    int C = sh->C, S = sh->S, nres = sh->nres, P = sh->P;
    int64_t T = n->attr.trips, sd = sh->sd, brows = sh->brows;
    const NnId *bin = sh->bin;
    LLVMValueRef nrows = nn_cg_alloca(cg, cg->t_i64); // the body's batch
    // Part p (rows [lo, lo + nr) of the batch) runs on thread p mod nth.
    NnLoop pl;
    nn_cg_loop_begin(cg, &pl, nn_cg_i64(cg, 0), np, 1);
    LLVMValueRef pv = pl.iv;
    LLVMValueRef mine = LLVMBuildICmp(
        cg->b, LLVMIntEQ,
        LLVMBuildSRem(cg->b, pv, LLVMBuildSExt(cg->b, cg->nth, cg->t_i64, ""), ""),
        LLVMBuildSExt(cg->b, cg->ith, cg->t_i64, ""), "");
    LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "part");
    LLVMBasicBlockRef skip = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "next_part");
    LLVMBuildCondBr(cg->b, mine, run, skip);
    LLVMPositionBuilderAtEnd(cg->b, run);
    LLVMValueRef lo = LLVMBuildSDiv(cg->b, LLVMBuildMul(cg->b, pv, batch, ""), np, "lo");
    LLVMValueRef hi = LLVMBuildSDiv(
        cg->b, LLVMBuildMul(cg->b, i64_add(cg, pv, nn_cg_i64(cg, 1)), batch, ""), np, "hi");
    LLVMValueRef nr = LLVMBuildSub(cg->b, hi, lo, "rows");
    LLVMBuildStore(cg->b, nr, nrows);
    LLVMValueRef table = byte_at(cg, nn_cg_buf(cg, v->s_table), i64_mul(cg, pv, v->tbytes));
    LLVMValueRef ws = byte_at(cg, nn_cg_buf(cg, v->s_ws), i64_mul(cg, pv, plan->workspace));
    LLVMValueRef wsr =
        v->rt ? byte_at(cg, nn_cg_buf(cg, v->s_wsr), i64_mul(cg, lo, plan->workspace_rows)) : NULL;
    for (NnId i = 0; i < body->count; i++) {
        int64_t o = plan->slots[i].offset;
        if (o < 0 || nn_backend_is_source(body->nodes[i].op))
            continue;
        LLVMValueRef at = plan->slots[i].flags & NN_PLAN_ROWS ? byte_at(cg, wsr, i64_mul(cg, nr, o))
                                                              : byte_at(cg, ws, nn_cg_i64(cg, o));
        LLVMBuildStore(cg->b, at, table_at(cg, table, i));
    }
    for (int s = body->count; s < bc->nslots; s++) {
        LLVMValueRef at;
        if (s == bc->batch_slot)
            at = nrows;
        else if (bc->slot_owned[s] && bc->slot_rows[s])
            at = byte_at(cg, nn_cg_buf(cg, v->slot_of[s]), i64_mul(cg, lo, bc->slot_bytes[s]));
        else if (bc->slot_owned[s])
            at = byte_at(cg, nn_cg_buf(cg, v->slot_of[s]),
                         i64_mul(cg, pv, align64(bc->slot_bytes[s])));
        else if (s == bc->err_slot)
            at = byte_at(cg, nn_cg_buf(cg, v->s_err), i64_mul(cg, pv, v->ebytes));
        else if (bc->slot_rows[s])
            at = byte_at(cg, nn_cg_buf(cg, v->s_scrr), i64_mul(cg, lo, v->scratch_rows));
        else
            at = byte_at(cg, nn_cg_buf(cg, v->s_scr), i64_mul(cg, pv, v->scr));
        LLVMBuildStore(cg->b, at, table_at(cg, table, s));
    }
    // Each carry's two buffers (ca: where it starts and ends, cb: the other):
    // rows of the loop's regions, or a summed carry's part of its own.
    LLVMValueRef *ca = calloc((size_t)C + 1, sizeof *ca), *cb = calloc((size_t)C + 1, sizeof *cb);
    LLVMValueRef *cn = calloc((size_t)C + 1, sizeof *cn); // this part's bytes of each carry
    NN_ASSERT(ca && cb && cn);
    for (int k = 0; k < n->nin; k++) {
        LLVMValueRef x = nn_cg_buf(cg, n->in[k]);
        Sz z = body_sz(bc, bin[k], sd, brows);
        LLVMValueRef rows = i64_mul(cg, lo, z.row); // this part's first row of it
        if (k >= C + S) { // an invariant, with the batch: this part's rows of it
            LLVMBuildStore(cg->b, byte_at(cg, x, rows), table_at(cg, table, bin[k]));
            continue;
        }
        if (k >= C)
            continue;
        int64_t nb = node_bytes(bc, body, bin[k]);
        cn[k] = sz_at(cg, z, nr);
        if (sh->summed[k])
            rows = nn_cg_i64(cg, 0);
        ca[k] = byte_at(cg, region(cg, id, &sh->L, k), rows);
        cb[k] = byte_at(cg, region(cg, id, &sh->L, nres + k), rows);
        if (!sh->summed[k]) {
            memcpy_v(cg, ca[k], byte_at(cg, x, rows), cn[k]);
        } else {
            // Part 0 starts from the carry, the others from zero.
            LLVMValueRef own = byte_at(cg, nn_cg_buf(cg, sh->sum_slot[k]),
                                       i64_mul(cg, LLVMBuildSub(cg->b, pv, nn_cg_i64(cg, 1), ""),
                                               2 * align64(nb)));
            LLVMValueRef first = LLVMBuildICmp(cg->b, LLVMIntEQ, pv, nn_cg_i64(cg, 0), "");
            ca[k] = LLVMBuildSelect(cg->b, first, ca[k], own, "");
            cb[k] = LLVMBuildSelect(cg->b, first, cb[k],
                                    byte_at(cg, own, nn_cg_i64(cg, align64(nb))), "");
            LLVMBasicBlockRef cp = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "from_carry");
            LLVMBasicBlockRef zero = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "from_zero");
            LLVMBasicBlockRef go = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "started");
            LLVMBuildCondBr(cg->b, first, cp, zero);
            LLVMPositionBuilderAtEnd(cg->b, cp);
            memcpy_bytes(cg, ca[k], x, nb);
            LLVMBuildBr(cg->b, go);
            LLVMPositionBuilderAtEnd(cg->b, zero);
            LLVMTypeRef ovl[2] = {cg->t_ptr, cg->t_i64};
            LLVMValueRef args[4] = {ca[k], LLVMConstInt(cg->t_i8, 0, 0), nn_cg_i64(cg, nb),
                                    LLVMConstInt(cg->t_i1, 0, 0)};
            nn_cg_intrinsic(cg, "llvm.memset", ovl, 2, args, 4);
            LLVMBuildBr(cg->b, go);
            LLVMPositionBuilderAtEnd(cg->b, go);
        }
        LLVMBuildStore(cg->b, ca[k], table_at(cg, table, bin[k]));
    }
    char name[96];
    snprintf(name, sizeof name, "%sstep", v->prefix);
    LLVMValueRef step = LLVMGetNamedFunction(cg->mod, name);
    LLVMTypeRef params[2] = {cg->t_ptr, cg->t_ptr};
    LLVMTypeRef st = LLVMFunctionType(cg->t_void, params, 2, 0);
    // A step descriptor's kernels get no pool: a whole loop's body's kernels
    // with the work for it run on the process-wide one (the one
    // nnrt_step_exec uses by default), and run inline when it is busy (this
    // loop itself running as a task of it). A part's run inline.
    LLVMValueRef pool = P > 1 ? LLVMConstNull(cg->t_ptr)
                              : nn_cg_call(cg, "nnrt_pool_default", cg->t_ptr, NULL, 0);
    // Results the body writes in place (direct): a stacked output into its
    // row, a carry into the other of its two buffers (its result region and
    // its staging region, swapped after each step), so neither is copied.
    // Only a value of the body's own workspace can be redirected so, once.
    bool *direct = calloc((size_t)nres + 1, sizeof(bool));
    NN_ASSERT(direct);
    for (int j = 0; j < nres; j++) {
        NnId o = body->outputs[j].id;
        direct[j] = plan->slots[o].offset >= 0 && !nn_backend_is_source(body->nodes[o].op);
        for (int q = 0; q < j && direct[j]; q++)
            direct[j] = !(direct[q] && body->outputs[q].id == o);
    }
    // Where each stacked output's rows go: its first LOOP_OUT's buffer, else
    // the loop's own region.
    LLVMValueRef *stack = calloc((size_t)nres + 1, sizeof *stack);
    NN_ASSERT(stack);
    for (int j = C; j < nres; j++)
        stack[j] = region(cg, id, &sh->L, j);
    for (NnId o = id + 1; o < cg->g->count; o++)
        if (nn_loop_out_direct(cg->g, o) && cg->g->nodes[o].in[0] == id)
            stack[cg->g->nodes[o].attr.result] = nn_cg_buf(cg, o);
    // Step t's rows of a [trips, N, ...] value (sz_at(z, batch) bytes per
    // step): this part's share of them.
    LLVMValueRef *soff = calloc((size_t)nres + 1, sizeof *soff);
    NN_ASSERT(soff);
    NnLoop lp;
    nn_cg_loop_begin(cg, &lp, nn_cg_i64(cg, 0), nn_cg_i64(cg, T), 1);
    LLVMValueRef t = lp.iv;
    if (n->attr.reverse)
        t = LLVMBuildSub(cg->b, nn_cg_i64(cg, T - 1), lp.iv, "t");
    for (int s = 0; s < S; s++) {
        Sz z = body_sz(bc, bin[C + s], sd, brows);
        LLVMValueRef o = i64_add(cg, LLVMBuildMul(cg->b, t, sz_at(cg, z, batch), ""),
                                 i64_mul(cg, lo, z.row));
        LLVMBuildStore(cg->b, byte_at(cg, nn_cg_buf(cg, n->in[C + s]), o),
                       table_at(cg, table, bin[C + s]));
    }
    for (int j = C; j < nres; j++) {
        Sz z = body_sz(bc, body->outputs[j].id, sd, brows);
        soff[j] = i64_add(cg, LLVMBuildMul(cg->b, t, sz_at(cg, z, batch), ""),
                          i64_mul(cg, lo, z.row));
    }
    for (int j = 0; j < nres; j++) {
        if (!direct[j])
            continue;
        LLVMValueRef to;
        if (j >= C) {
            to = byte_at(cg, stack[j], soff[j]);
        } else {
            LLVMValueRef cur = table_get(cg, table, bin[j]);
            to = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, cur, ca[j], ""), cb[j],
                                 ca[j], "");
        }
        LLVMBuildStore(cg->b, to, table_at(cg, table, body->outputs[j].id));
    }
    LLVMValueRef args[2] = {pool, table};
    LLVMBuildCall2(cg->b, st, step, args, 2, "");
    for (int k = 0; k < bc->nerr; k++)
        forward_error(cg, table, bc, k, v->chk[k]);
    for (int j = C; j < nres; j++) {
        if (direct[j])
            continue;
        Sz z = body_sz(bc, body->outputs[j].id, sd, brows);
        memcpy_v(cg, byte_at(cg, stack[j], soff[j]), table_get(cg, table, body->outputs[j].id),
                 sz_at(cg, z, nr));
    }
    // Copied carries go through staging, so one may take another's old value
    // (which a swapped carry still holds until the swap).
    for (int k = 0; k < C; k++)
        if (!direct[k])
            memcpy_v(cg, cb[k], table_get(cg, table, body->outputs[k].id), cn[k]);
    for (int k = 0; k < C; k++)
        if (direct[k])
            LLVMBuildStore(cg->b, table_get(cg, table, body->outputs[k].id),
                           table_at(cg, table, bin[k]));
    for (int k = 0; k < C; k++)
        if (!direct[k])
            memcpy_v(cg, table_get(cg, table, bin[k]), cb[k], cn[k]);
    nn_cg_loop_end(cg, &lp);
    // A swapped carry may end in its staging region: its result is read at
    // its own.
    for (int k = 0; k < C; k++) {
        if (!direct[k])
            continue;
        LLVMValueRef cur = table_get(cg, table, bin[k]);
        LLVMBasicBlockRef cp = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "swap");
        LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "swapped");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, cur, ca[k], ""), next, cp);
        LLVMPositionBuilderAtEnd(cg->b, cp);
        memcpy_v(cg, ca[k], cur, cn[k]);
        LLVMBuildBr(cg->b, next);
        LLVMPositionBuilderAtEnd(cg->b, next);
    }
    LLVMBuildBr(cg->b, skip);
    LLVMPositionBuilderAtEnd(cg->b, skip);
    nn_cg_loop_end(cg, &pl);
    free(direct);
    free(stack);
    free(soff);
    free(ca);
    free(cb);
    free(cn);
}

bool llvm_loop(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    const NnGraph *body = n->attr.body;
    Shared sh = {.n = n, .C = n->attr.ncarry, .S = n->attr.nseq, .nres = body->noutputs};
    int C = sh.C;
    // With the batch at run time (rt) the body takes it at run time too: its
    // buffer table's batch slot points at its part's row count, its memory
    // plan is per row, and every offset below that has the batch is a count
    // of rows times the bytes per row. In a training step the body is also
    // compiled for the batch of the compile (the training batch), which a run
    // of that batch takes: bound sizes make its kernels about 10% faster. An
    // evaluation runs a few batches an epoch: there the second compile would
    // cost more than it saves.
    bool rt = loop_rt(cg, n), spec = !rt || cg->g->nupdates > 0;

    // Parts by rows of the batch (each with the body compiled for its rows),
    // or one.
    int in_cls[64];
    int64_t bsymv[NN_MAX_SYMS], prow[NN_MAX_SYMS];
    sh.P = row_parts(cg, n, &sh.sd, in_cls);
    sh.in_cls = in_cls;
    if (rt && sh.sd != -cg->rt_sym - 1)
        sh.P = 1; // its carries' rows are not the batch
    if (rt)
        sh.sd = -cg->rt_sym - 1;
    int P = sh.P;
    for (int k = 0; k < cg->g->nsyms; k++)
        bsymv[k] = prow[k] = cg->symv[k];
    if (P > 1)
        bsymv[-sh.sd - 1] /= P;
    sh.brows = sh.sd ? bsymv[-sh.sd - 1] : 1;
    if (rt)
        prow[cg->rt_sym] = 1;

    // The body, lowered once (or twice: bound and for any batch) into this
    // module: va[0] bound, va[1] for any batch.
    Variant va[2];
    memset(va, 0, sizeof va);
    sh.bin = malloc(((size_t)n->nin + 1) * sizeof *sh.bin);
    sh.sum_slot = calloc((size_t)C + 1, sizeof(int));
    sh.summed = calloc((size_t)C + 1, sizeof(bool));
    NN_ASSERT(sh.bin && sh.sum_slot && sh.summed);
    bool ok = true;
    for (int i = 0; i < 2 && ok; i++)
        if (i == 0 ? spec : rt)
            ok = variant_prepare(cg, id, &sh, &va[i], i == 1, bsymv, prow);
    if (!ok)
        goto done;
    for (int k = 0; k < n->nin; k++)
        sh.bin[k] = nn_loop_body_input(body, k);
    // A summed carry's parts but the first: its two buffers each.
    for (int k = 0; k < C; k++) {
        sh.summed[k] = P > 1 && in_cls[k] == R_SUMC;
        if (sh.summed[k])
            sh.sum_slot[k] = nn_cg_add_owned(
                cg, (P - 1) * 2 * align64(node_bytes(&va[rt].bc, body, sh.bin[k])));
    }

    nn_cg_kernel_begin(cg, "loop", P > 1 ? 4 * NN_PAR_WORK : 0);
    layout_new(cg, id, &sh.L);
    for (int i = 0; i < 2; i++)
        for (int k = 0; va[i].arena && k < va[i].bc.nerr; k++)
            LLVMBuildStore(cg->b, nn_cg_i64(cg, -1),
                           err_at(cg, nn_cg_buf(cg, cg->err_slot), va[i].chk[k]));
    int64_t ref = sh.sd ? cg->symv[-sh.sd - 1] : 1; // the batch of the compile
    if (!rt) {
        variant_emit(cg, id, &sh, &va[0], nn_cg_i64(cg, ref), nn_cg_i64(cg, P));
    } else if (!spec) {
        LLVMValueRef batch = nn_cg_batch(cg);
        variant_emit(cg, id, &sh, &va[1], batch, run_parts(cg, P, true, batch));
    } else {
        LLVMValueRef batch = nn_cg_batch(cg);
        LLVMBasicBlockRef bound = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "bound");
        LLVMBasicBlockRef any = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "any_batch");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "ran");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, batch, nn_cg_i64(cg, ref), ""),
                        bound, any);
        LLVMPositionBuilderAtEnd(cg->b, bound);
        variant_emit(cg, id, &sh, &va[0], nn_cg_i64(cg, ref), nn_cg_i64(cg, P));
        LLVMBuildBr(cg->b, join);
        LLVMPositionBuilderAtEnd(cg->b, any);
        variant_emit(cg, id, &sh, &va[1], batch, run_parts(cg, P, true, batch));
        LLVMBuildBr(cg->b, join);
        LLVMPositionBuilderAtEnd(cg->b, join);
    }
    nn_cg_kernel_end(cg);
    // The summed carries' parts, added once all parts are done (when the
    // run's batch had them).
    bool any = false;
    for (int k = 0; k < C; k++)
        any |= sh.summed[k];
    if (any) {
        nn_cg_kernel_begin(cg, "loop_sum", 0);
        LLVMValueRef b2 = rt ? nn_cg_batch(cg) : nn_cg_i64(cg, ref);
        LLVMValueRef parted = LLVMBuildICmp(cg->b, LLVMIntSGT, run_parts(cg, P, rt, b2),
                                            nn_cg_i64(cg, 1), "");
        LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "parted");
        LLVMBasicBlockRef end = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "summed");
        LLVMBuildCondBr(cg->b, parted, yes, end);
        LLVMPositionBuilderAtEnd(cg->b, yes);
        for (int k = 0; k < C; k++)
            if (sh.summed[k]) {
                int64_t nb = node_bytes(&va[rt].bc, body, sh.bin[k]);
                NnDType dt = body->nodes[sh.bin[k]].dtype;
                sum_parts(cg, dt, region(cg, id, &sh.L, k), nn_cg_buf(cg, sh.sum_slot[k]),
                          align64(nb), P, nb / (int64_t)nnrt_dtype_size(dt));
            }
        LLVMBuildBr(cg->b, end);
        LLVMPositionBuilderAtEnd(cg->b, end);
        nn_cg_kernel_end(cg);
    }
done:
    for (int i = 0; i < 2; i++)
        if (va[i].arena)
            variant_free(&va[i]);
    layout_free(&sh.L);
    free(sh.bin);
    free(sh.sum_slot);
    free(sh.summed);
    return ok;
}

bool llvm_loop_out(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    if (nn_loop_out_direct(cg->g, id))
        return true; // the loop wrote it here
    Layout L;
    nn_cg_kernel_begin(cg, "loop_out", 0);
    layout_new(cg, n->in[0], &L);
    LLVMValueRef src = region(cg, n->in[0], &L, n->attr.result);
    int64_t nb = node_bytes(cg, cg->g, id);
    bool rt = nn_cg_rt(cg, cg->g, id);
    memcpy_v(cg, nn_cg_buf(cg, id), src, nn_cg_extent(cg, nb, rt));
    nn_cg_kernel_end(cg);
    layout_free(&L);
    return true;
}
