// The memory planner: values alive at the same time never share bytes (every
// pair checked by interval overlap), memory is reused along chains, sources
// stay outside the workspace, results are pinned, offsets are aligned, and
// symbolic dims are bound (or, for any batch, a loop's buffer is per row).
// Random DAGs exercise the free list.
#include <criterion/criterion.h>

#include "ir_helpers.h"
#include "loop.h"
#include "pass.h"
#include "plan.h"

static const NnLoc L = {0};

// Independent overlap check: two placed values overlap in time and in bytes.
static void assert_no_overlap(const NnPlan *p)
{
    for (int i = 0; i < p->count; i++) {
        const NnPlanSlot *a = &p->slots[i];
        if (a->offset < 0)
            continue;
        cr_assert_eq(a->offset % 64, 0);
        cr_assert_leq(a->offset + a->nbytes, p->workspace);
        for (int j = i + 1; j < p->count; j++) {
            const NnPlanSlot *b = &p->slots[j];
            if (b->offset < 0 || (a->alias >= 0 ? a->alias : i) == (b->alias >= 0 ? b->alias : j))
                continue; // one buffer, computed in place
            bool time = a->first <= b->last && b->first <= a->last;
            int64_t ea = a->offset + (a->nbytes ? a->nbytes : 1);
            int64_t eb = b->offset + (b->nbytes ? b->nbytes : 1);
            bool space = a->offset < eb && b->offset < ea;
            cr_assert(!(time && space), "%%%d [%d,%d]@%lld+%lld and %%%d [%d,%d]@%lld+%lld", i,
                      a->first, a->last, (long long)a->offset, (long long)a->nbytes, j, b->first,
                      b->last, (long long)b->offset, (long long)b->nbytes);
        }
    }
    char err[128];
    cr_assert(nn_plan_check(p, err, sizeof err), "%s", err);
}

Test(plan, chain_reuses_memory)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "N,100");
    NnId t = x;
    for (int i = 0; i < 10; i++)
        t = nn_ir_unary(g, i % 2 ? NN_OP_EXP : NN_OP_TANH, t, L);
    nn_graph_add_output(g, "y", t);
    NnArena *a = nn_arena_new();
    int64_t n = 7;
    NnPlan *p = nn_plan_build(g, &n, a);
    assert_no_overlap(p);
    cr_assert_eq(p->slots[x].offset, -1);
    cr_assert(p->slots[x].flags & NN_PLAN_EXTERNAL);
    cr_assert_eq(p->slots[1].nbytes, 7 * 100 * 4);
    cr_assert(p->slots[t].flags & NN_PLAN_PINNED);
    cr_assert_eq(p->slots[t].last, g->count - 1);
    // Ten values of 2800 bytes (2816 padded) in a chain need two buffers, not ten.
    cr_assert_eq(p->total, 10 * 2816);
    cr_assert_eq(p->workspace, 2 * 2816, "workspace %lld", (long long)p->workspace);
    nn_arena_free(a);
    nn_graph_free(g);
}

Test(plan, sources_consts_and_updates)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "4");
    NnId w = par(g, "w", NN_DT_F32, "4");
    NnId s = src(g, NN_OP_STATE, "s", NN_DT_F64, "");
    NnId k = nn_ir_const(g, 2, NN_DT_F32, L);
    NnId y = nn_ir_binary(g, NN_OP_MUL, x, k, L);
    NnId wn = nn_ir_binary(g, NN_OP_SUB, w, y, L);
    NnId one = nn_ir_const(g, 1, NN_DT_F64, L);
    NnId sn = nn_ir_binary(g, NN_OP_ADD, s, one, L);
    NnId dead = nn_ir_unary(g, NN_OP_EXP, wn, L);
    nn_graph_add_update(g, w, wn);
    nn_graph_add_update(g, s, sn);
    nn_graph_add_output(g, "y", y);
    NnArena *a = nn_arena_new();
    NnPlan *p = nn_plan_build(g, NULL, a);
    assert_no_overlap(p);
    NnId ext[] = {x, w, s};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(p->slots[ext[i]].offset, -1);
        cr_assert(p->slots[ext[i]].flags & NN_PLAN_EXTERNAL);
    }
    cr_assert(p->slots[k].flags & NN_PLAN_CONST);
    cr_assert_eq(p->slots[k].offset, -1);
    cr_assert_eq(p->slots[sn].nbytes, 8);
    for (NnId id = y; id <= sn; id++)
        if (id != one)
            cr_assert(p->slots[id].flags & NN_PLAN_PINNED, "%%%d", id);
    cr_assert_geq(p->slots[dead].offset, 0, "a dead value still has somewhere to go");
    cr_assert_eq(p->slots[dead].last, dead);
    NnPlanOptions o = {.const_buffers = true};
    NnPlan *q = nn_plan_build_ex(g, NULL, a, &o);
    assert_no_overlap(q);
    cr_assert_geq(q->slots[k].offset, 0);
    cr_assert_geq(q->workspace, p->workspace);
    nn_arena_free(a);
    nn_graph_free(g);
}

// A random DAG of elementwise ops over a few shapes with random fan-in.
static NnGraph *random_dag(unsigned seed, int nodes)
{
    NnGraph *g = nn_graph_new();
    srand(seed);
    const char *shapes[] = {"N,8", "8", "N,1", "1"};
    NnId ids[512];
    int n = 0;
    for (int i = 0; i < 4; i++)
        ids[n++] = src(g, NN_OP_INPUT, shapes[i], NN_DT_F32, shapes[i]);
    NnOp bin[] = {NN_OP_ADD, NN_OP_MUL, NN_OP_SUB, NN_OP_MAX};
    while (n < nodes) {
        NnId a = ids[rand() % n], b = ids[n - 1 - rand() % (n < 6 ? n : 6)];
        NnId id = rand() % 3 ? nn_ir_binary(g, bin[rand() % 4], a, b, L)
                             : nn_ir_unary(g, NN_OP_EXP, a, L);
        cr_assert_geq(id, 0, "%s", g->err);
        ids[n++] = id;
        if (rand() % 17 == 0)
            nn_graph_add_output(g, "o", id);
    }
    nn_graph_add_output(g, "last", ids[n - 1]);
    return g;
}

Test(plan, random_dags_never_overlap)
{
    NnArena *a = nn_arena_new();
    for (unsigned seed = 1; seed <= 60; seed++) {
        NnGraph *g = random_dag(seed, 30 + (int)seed * 3);
        int64_t n = 1 + seed % 9;
        NnPlan *p = nn_plan_build(g, &n, a);
        assert_no_overlap(p);
        cr_assert_leq(p->workspace, p->total);
        // The fused graph plans too (fewer, bigger values).
        NnGraph *f = nn_pass_fuse(g);
        assert_no_overlap(nn_plan_build(f, &n, a));
        if (f != g)
            nn_graph_free(f);
        nn_graph_free(g);
    }
    nn_arena_free(a);
}

Test(plan, freed_blocks_merge_and_fit_larger_values)
{
    // Two small values die side by side; a value of twice their size reuses
    // their merged space instead of growing the workspace.
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "16");
    NnId a1 = nn_ir_unary(g, NN_OP_EXP, x, L);
    NnId a2 = nn_ir_unary(g, NN_OP_TANH, x, L);
    NnId s = nn_ir_binary(g, NN_OP_ADD, a1, a2, L); // [16]: needs a third buffer
    NnShape big = shp(g, "2,16");
    NnId b = nn_ir_broadcast(g, s, &big, L); // 128 bytes: a1 and a2's space
    nn_graph_add_output(g, "y", nn_ir_unary(g, NN_OP_NEG, b, L));
    NnArena *ar = nn_arena_new();
    NnPlan *p = nn_plan_build(g, NULL, ar);
    assert_no_overlap(p);
    cr_assert_eq(p->slots[b].offset, 0, "b takes a1+a2's merged block");
    // The output (128 bytes) then grows the freed tail block where s was.
    cr_assert_eq(p->slots[b + 1].offset, 128);
    cr_assert_eq(p->workspace, 256, "workspace %lld", (long long)p->workspace);
    nn_arena_free(ar);
    nn_graph_free(g);
}

// A loop's stacked result is written by the JIT straight into its first
// LOOP_OUT's buffer (ir/loop.h): that buffer is placed at the loop's step, so
// nothing read by the loop, nor freed before it, shares its bytes.
Test(plan, a_loops_direct_results_live_from_the_loop)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "5,N,8");
    NnId h0 = nn_ir_unary(g, NN_OP_TANH, src(g, NN_OP_INPUT, "h", NN_DT_F32, "N,8"), L);
    NnGraph *b = nn_graph_new_child(g);
    NnId bh = src(b, NN_OP_INPUT, "h", NN_DT_F32, "N,8");
    NnId bx = src(b, NN_OP_INPUT, "x", NN_DT_F32, "N,8");
    NnId hn = nn_ir_binary(b, NN_OP_ADD, bh, bx, L);
    nn_graph_add_output(b, "h", hn);
    nn_graph_add_output(b, "y", nn_ir_unary(b, NN_OP_EXP, hn, L));
    NnId in[2] = {h0, x};
    NnId lp = nn_ir_loop(g, in, 2, 1, 1, 5, false, b, L);
    NnId hl = nn_ir_loop_out(g, lp, 0, L);
    NnId y1 = nn_ir_loop_out(g, lp, 1, L);
    NnId y2 = nn_ir_loop_out(g, lp, 1, L);
    nn_graph_add_output(g, "h", hl);
    nn_graph_add_output(g, "y", nn_ir_binary(g, NN_OP_ADD, y1, y2, L));
    cr_assert(!nn_loop_out_direct(g, hl), "a final carry is copied");
    cr_assert(nn_loop_out_direct(g, y1));
    cr_assert(!nn_loop_out_direct(g, y2), "only the first LOOP_OUT of a result");
    NnArena *a = nn_arena_new();
    int64_t n = 3;
    NnPlan *p = nn_plan_build(g, &n, a);
    assert_no_overlap(p);
    cr_assert_eq(p->slots[y1].first, lp);
    cr_assert_eq(p->slots[y2].first, y2);
    nn_arena_free(a);
    nn_graph_free(g);
}

// A gradient sum is computed where its gradient lies: GRAD_START scales the
// buffer its input was computed in, GRAD_WAIT completes the sum there, and
// that buffer lives until the wait's last reader. A gradient still read after
// its GRAD_START (or a result) keeps a buffer of its own.
Test(plan, gradient_sums_are_computed_in_place)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "64");
    NnId d = nn_ir_unary(g, NN_OP_EXP, x, L);
    NnId s = nn_ir_unary(g, NN_OP_GRAD_START, d, L);
    NnId t = nn_ir_unary(g, NN_OP_TANH, x, L); // computed while the sum runs
    NnId w = nn_ir_unary(g, NN_OP_GRAD_WAIT, s, L);
    NnId u = nn_ir_binary(g, NN_OP_ADD, w, t, L);
    NnId d2 = nn_ir_unary(g, NN_OP_EXP, t, L);
    NnId s2 = nn_ir_unary(g, NN_OP_GRAD_START, d2, L);
    NnId w2 = nn_ir_unary(g, NN_OP_GRAD_WAIT, s2, L);
    NnId v = nn_ir_binary(g, NN_OP_MUL, d2, w2, L); // d2 read after its start
    nn_graph_add_output(g, "u", u);
    nn_graph_add_output(g, "v", v);
    NnArena *a = nn_arena_new();
    NnPlan *p = nn_plan_build(g, NULL, a);
    assert_no_overlap(p);
    cr_assert_eq(p->slots[s].alias, d);
    cr_assert_eq(p->slots[w].alias, d);
    cr_assert_eq(p->slots[s].offset, p->slots[d].offset);
    cr_assert_eq(p->slots[w].offset, p->slots[d].offset);
    cr_assert_eq(p->slots[d].last, u, "the gradient's buffer lives until the sum is read");
    cr_assert_neq(p->slots[t].offset, p->slots[d].offset);
    cr_assert_eq(p->slots[s2].alias, -1, "d2 is read after its start: copied");
    cr_assert_eq(p->slots[w2].alias, s2);
    cr_assert_eq(p->slots[x].alias, -1);
    nn_arena_free(a);
    nn_graph_free(g);
}

// Planned for any batch (NnPlanOptions.rows), a loop whose results have the
// batch is a per-row value: its buffer holds the regions with the batch, at
// offsets per row (nn_loop_layout_rows), and the fixed-size ones (a summed
// [8, 8] carry here, and its staging copy) are laid out apart, for the
// backend to place.
Test(plan, a_loop_with_the_batch_is_planned_per_row)
{
    NnGraph *g = nn_graph_new();
    NnId x = src(g, NN_OP_INPUT, "x", NN_DT_F32, "5,N,8");
    NnId h0 = nn_ir_unary(g, NN_OP_TANH, src(g, NN_OP_INPUT, "h", NN_DT_F32, "N,8"), L);
    NnId w0 = src(g, NN_OP_INPUT, "w", NN_DT_F32, "8,8");
    NnGraph *b = nn_graph_new_child(g);
    NnId bh = src(b, NN_OP_INPUT, "h", NN_DT_F32, "N,8");
    NnId bw = src(b, NN_OP_INPUT, "w", NN_DT_F32, "8,8");
    NnId bx = src(b, NN_OP_INPUT, "x", NN_DT_F32, "N,8");
    NnId hn = nn_ir_binary(b, NN_OP_ADD, bh, bx, L);
    nn_graph_add_output(b, "h", hn);
    nn_graph_add_output(b, "w", nn_ir_binary(b, NN_OP_ADD, bw,
                                             nn_ir_matmul(b, bh, hn, true, false, L), L));
    nn_graph_add_output(b, "y", nn_ir_unary(b, NN_OP_EXP, hn, L));
    NnId in[3] = {h0, w0, x};
    NnId lp = nn_ir_loop(g, in, 3, 2, 1, 5, false, b, L);
    cr_assert(lp >= 0, "%s", g->err);
    nn_graph_add_output(g, "h", nn_ir_loop_out(g, lp, 0, L));
    nn_graph_add_output(g, "w", nn_ir_loop_out(g, lp, 1, L));
    nn_graph_add_output(g, "y", nn_ir_loop_out(g, lp, 2, L));
    int64_t one = 1, off[6];
    bool rows[6];
    cr_assert(nn_loop_has_rows(&g->nodes[lp], 0));
    // Results h [N, 8], w [8, 8], y [5, N, 8]; staging for h and w.
    int64_t fixed = nn_loop_layout_rows(&g->nodes[lp], &one, 0, off, rows);
    cr_expect(rows[0] && !rows[1] && rows[2] && rows[3] && !rows[4]);
    cr_expect_eq(off[0], 0);
    cr_expect_eq(off[2], 64, "h's row of 32 bytes padded to 64");
    cr_expect_eq(off[3], 64 + 192, "y's 5 rows of 32 bytes, padded");
    cr_expect_eq(off[5], 64 + 192 + 64, "bytes per row in all");
    cr_expect_eq(off[1], 0);
    cr_expect_eq(off[4], 256);
    cr_expect_eq(fixed, 512, "w and its staging copy, 256 bytes each");
    NnArena *a = nn_arena_new();
    NnPlanOptions po = {.rows = true, .rows_sym = 0};
    NnPlan *p = nn_plan_build_ex(g, &one, a, &po);
    cr_expect(p->slots[lp].flags & NN_PLAN_ROWS);
    cr_expect_eq(p->slots[lp].nbytes, off[5]);
    nn_arena_free(a);
    nn_graph_free(g);
}
