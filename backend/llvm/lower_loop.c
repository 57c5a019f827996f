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
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "loop.h"
#include "nn_llvm.h"
#include "plan.h"

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

bool llvm_loop(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    const NnGraph *body = n->attr.body;
    int C = n->attr.ncarry, S = n->attr.nseq, nres = body->noutputs;
    int64_t T = n->attr.trips;

    // The body, lowered once into this module.
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%sL%d_", cg->prefix, id);
    NnCg bc;
    nn_cg_init(&bc, cg->ctx, body, cg->symv, prefix);
    LLVMDisposeModule(bc.mod);
    bc.mod = cg->mod;
    bool ok = nn_cg_lower_graph(&bc);
    NnArena *arena = nn_arena_new();
    NnPlanOptions po = {.const_buffers = true};
    NnPlan *plan = ok ? nn_plan_build_ex(body, cg->symv, arena, &po) : NULL;
    int *slot_of = calloc((size_t)bc.nslots + 1, sizeof(int));
    int64_t *off = malloc(((size_t)nres + (size_t)C + 1) * sizeof *off);
    NnId *bin = malloc(((size_t)n->nin + 1) * sizeof *bin);
    int *chk = NULL;
    NN_ASSERT(slot_of && off && bin);
    if (!ok)
        goto done;
    // Memory the body keeps: its buffer table, workspace, scratch, label
    // errors and bad indices, and the slots of loops nested in it.
    int64_t scratch = 0;
    for (int s = body->count; s < bc.nslots; s++)
        if (bc.slot_owned[s])
            slot_of[s] = nn_cg_add_owned(cg, bc.slot_bytes[s]);
        else if (s != bc.err_slot && bc.slot_bytes[s] > scratch)
            scratch = bc.slot_bytes[s];
    int s_table = nn_cg_add_owned(cg, 8 * (int64_t)bc.nslots);
    int s_ws = nn_cg_add_owned(cg, plan->workspace);
    int s_scr = nn_cg_add_owned(cg, scratch);
    int s_err = nn_cg_add_owned(cg, bc.slot_bytes[bc.err_slot]);
    // Per body check, the outer entry it reports through.
    chk = malloc(((size_t)bc.nerr + 1) * sizeof *chk);
    NN_ASSERT(chk);
    for (int k = 0; k < bc.nerr; k++)
        chk[k] = nn_cg_add_check(cg, bc.checks[k].kind, bc.checks[k].bound,
                                 bc.slot_bytes[bc.checks[k].slot] / 4);
    for (int k = 0; k < n->nin; k++)
        bin[k] = nn_loop_body_input(body, k);
    nn_loop_layout(n, cg->symv, off);

    nn_cg_kernel_begin(cg, "loop", 0);
    LLVMValueRef table = nn_cg_buf(cg, s_table), ws = nn_cg_buf(cg, s_ws);
    LLVMValueRef lbuf = nn_cg_buf(cg, id);
    for (int k = 0; k < bc.nerr; k++)
        LLVMBuildStore(cg->b, nn_cg_i64(cg, -1), err_at(cg, nn_cg_buf(cg, cg->err_slot), chk[k]));
    for (NnId i = 0; i < body->count; i++) {
        int64_t o = plan->slots[i].offset;
        if (o >= 0 && !nn_backend_is_source(body->nodes[i].op))
            LLVMBuildStore(cg->b, byte_at(cg, ws, nn_cg_i64(cg, o)), table_at(cg, table, i));
    }
    for (int s = body->count; s < bc.nslots; s++) {
        int from = bc.slot_owned[s] ? slot_of[s] : s == bc.err_slot ? s_err : s_scr;
        LLVMBuildStore(cg->b, nn_cg_buf(cg, from), table_at(cg, table, s));
    }
    for (int k = 0; k < n->nin; k++) {
        LLVMValueRef x = nn_cg_buf(cg, n->in[k]);
        if (k < C) {
            LLVMValueRef c = byte_at(cg, lbuf, nn_cg_i64(cg, off[k]));
            memcpy_bytes(cg, c, x, node_bytes(cg, cg->g, n->in[k]));
            LLVMBuildStore(cg->b, c, table_at(cg, table, bin[k]));
        } else if (k >= C + S) {
            LLVMBuildStore(cg->b, x, table_at(cg, table, bin[k]));
        }
    }
    char name[96];
    snprintf(name, sizeof name, "%sstep", prefix);
    LLVMValueRef step = LLVMGetNamedFunction(cg->mod, name);
    LLVMTypeRef params[2] = {cg->t_ptr, cg->t_ptr};
    LLVMTypeRef st = LLVMFunctionType(cg->t_void, params, 2, 0);
    // A step descriptor's kernels get no pool: the body's kernels with the
    // work for it run on the process-wide one (the one nnrt_step_exec uses
    // by default), and run inline when it is busy (this loop itself running
    // as a task of it).
    LLVMValueRef pool = nn_cg_call(cg, "nnrt_pool_default", cg->t_ptr, NULL, 0);
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
        stack[j] = byte_at(cg, lbuf, nn_cg_i64(cg, off[j]));
    for (NnId o = id + 1; o < cg->g->count; o++)
        if (nn_loop_out_direct(cg->g, o) && cg->g->nodes[o].in[0] == id)
            stack[cg->g->nodes[o].attr.result] = nn_cg_buf(cg, o);
    NnLoop lp;
    nn_cg_loop_begin(cg, &lp, nn_cg_i64(cg, 0), nn_cg_i64(cg, T), 1);
    LLVMValueRef t = lp.iv;
    if (n->attr.reverse)
        t = LLVMBuildSub(cg->b, nn_cg_i64(cg, T - 1), lp.iv, "t");
    for (int s = 0; s < S; s++) {
        int64_t nb = node_bytes(cg, body, bin[C + s]);
        LLVMValueRef o = LLVMBuildMul(cg->b, t, nn_cg_i64(cg, nb), "");
        LLVMBuildStore(cg->b, byte_at(cg, nn_cg_buf(cg, n->in[C + s]), o),
                       table_at(cg, table, bin[C + s]));
    }
    for (int j = 0; j < nres; j++) {
        if (!direct[j])
            continue;
        LLVMValueRef to;
        if (j >= C) {
            int64_t nb = node_bytes(cg, body, body->outputs[j].id);
            to = byte_at(cg, stack[j], LLVMBuildMul(cg->b, t, nn_cg_i64(cg, nb), ""));
        } else {
            LLVMValueRef a = byte_at(cg, lbuf, nn_cg_i64(cg, off[j]));
            LLVMValueRef b = byte_at(cg, lbuf, nn_cg_i64(cg, off[nres + j]));
            LLVMValueRef cur = table_get(cg, table, bin[j]);
            to = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, cur, a, ""), b, a, "");
        }
        LLVMBuildStore(cg->b, to, table_at(cg, table, body->outputs[j].id));
    }
    LLVMValueRef args[2] = {pool, table};
    LLVMBuildCall2(cg->b, st, step, args, 2, "");
    for (int k = 0; k < bc.nerr; k++)
        forward_error(cg, table, &bc, k, chk[k]);
    for (int j = C; j < nres; j++) {
        if (direct[j])
            continue;
        int64_t nb = node_bytes(cg, body, body->outputs[j].id);
        LLVMValueRef o = LLVMBuildMul(cg->b, t, nn_cg_i64(cg, nb), "");
        memcpy_bytes(cg, byte_at(cg, stack[j], o), table_get(cg, table, body->outputs[j].id), nb);
    }
    // Copied carries go through staging, so one may take another's old value
    // (which a swapped carry still holds until the swap).
    for (int k = 0; k < C; k++)
        if (!direct[k])
            memcpy_bytes(cg, byte_at(cg, lbuf, nn_cg_i64(cg, off[nres + k])),
                         table_get(cg, table, body->outputs[k].id),
                         node_bytes(cg, body, body->outputs[k].id));
    for (int k = 0; k < C; k++)
        if (direct[k])
            LLVMBuildStore(cg->b, table_get(cg, table, body->outputs[k].id),
                           table_at(cg, table, bin[k]));
    for (int k = 0; k < C; k++)
        if (!direct[k])
            memcpy_bytes(cg, table_get(cg, table, bin[k]),
                         byte_at(cg, lbuf, nn_cg_i64(cg, off[nres + k])),
                         node_bytes(cg, body, body->outputs[k].id));
    nn_cg_loop_end(cg, &lp);
    // A swapped carry may end in its staging region: its result is read at
    // its own.
    for (int k = 0; k < C; k++) {
        if (!direct[k])
            continue;
        LLVMValueRef a = byte_at(cg, lbuf, nn_cg_i64(cg, off[k]));
        LLVMValueRef cur = table_get(cg, table, bin[k]);
        LLVMBasicBlockRef cp = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "swap");
        LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "swapped");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, cur, a, ""), next, cp);
        LLVMPositionBuilderAtEnd(cg->b, cp);
        memcpy_bytes(cg, a, cur, node_bytes(cg, body, body->outputs[k].id));
        LLVMBuildBr(cg->b, next);
        LLVMPositionBuilderAtEnd(cg->b, next);
    }
    free(direct);
    free(stack);
    nn_cg_kernel_end(cg);
done:
    nn_cg_fini(&bc);
    nn_arena_free(arena);
    free(chk);
    free(slot_of);
    free(off);
    free(bin);
    return ok;
}

bool llvm_loop_out(NnCg *cg, NnId id)
{
    const NnNode *n = &cg->g->nodes[id];
    const NnNode *l = &cg->g->nodes[n->in[0]];
    if (nn_loop_out_direct(cg->g, id))
        return true; // the loop wrote it here
    int64_t *off = malloc(((size_t)nn_loop_nresults(l) + (size_t)l->attr.ncarry + 1) * sizeof *off);
    NN_ASSERT(off);
    nn_loop_layout(l, cg->symv, off);
    nn_cg_kernel_begin(cg, "loop_out", 0);
    LLVMValueRef src = byte_at(cg, nn_cg_buf(cg, n->in[0]), nn_cg_i64(cg, off[n->attr.result]));
    memcpy_bytes(cg, nn_cg_buf(cg, id), src, node_bytes(cg, cg->g, id));
    nn_cg_kernel_end(cg);
    free(off);
    return true;
}
