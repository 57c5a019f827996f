// Structured loops: LOOP's and LOOP_OUT's shape rules, the buffer layout both
// backends use, and the loop's gradient. The gradient follows JAX's scan: the
// reverse of a loop is another LOOP running the other way (backpropagation
// through time). The forward loop saves the carries entering each step as
// stacked outputs (compiler/index.c adds them; otherwise a copy of the loop
// that adds them is built here); the reverse body recomputes the forward step
// from them and applies that step's VJP, carrying the gradients of the
// carries and accumulating the gradients of the invariants (weights) as
// carries too. So the IR stays one body per loop, whatever the trip count,
// and the memory kept across steps is one carry per step.
//
// Save or recompute: recomputing costs the whole forward step again, and
// nearly all of it is the matrix products (a GRU step: h @ wh and x @ wx,
// 15 of its 15.4 MFLOP at batch 128, 128 units); the elementwise rest is
// cheap to recompute but would cost as much memory to save. So the forward
// body also saves each product of two body inputs per step, and the reverse
// body reads them (its VJP goes through the product's rule separately: a
// saved value is an input there). Measured on bench/gru.nn, one thread, CPU
// time per epoch (perf stat task-clock, 3 epochs less 1): 0.90 s saving
// against 1.07 s recomputing in one back-to-back pair, 1.09 against 1.14 in
// another (load average near 30 on 2 cores, so noisy); one epoch of
// examples/names_lstm.nn took 73 s of CPU against 100 s (with the JIT's
// loops no longer copying carries and outputs too). Past SAVE_PRODUCTS_MAX
// floats per sample (an LSTM of 64 units at T = 1000 would save 512K)
// everything is recomputed, so the memory stays one carry per step there.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attr.h"
#include "autodiff.h"
#include "loop.h"
#include "op_common.h"
#include "pass.h"

NnId nn_ir_loop(NnGraph *g, const NnId *in, int nin, int ncarry, int nseq, int64_t trips,
                bool reverse, NnGraph *body, NnLoc loc)
{
    NnAttr a = {0};
    a.ncarry = ncarry;
    a.nseq = nseq;
    a.trips = trips;
    a.reverse = reverse;
    a.body = body;
    return nn_ir_add(g, NN_OP_LOOP, in, nin, &a, loc);
}

NnId nn_ir_loop_out(NnGraph *g, NnId loop, int k, NnLoc loc)
{
    NnAttr a = {0};
    a.result = k;
    return nn_ir_add(g, NN_OP_LOOP_OUT, &loop, 1, &a, loc);
}

NnId nn_loop_body_input(const NnGraph *body, int k)
{
    for (NnId i = 0; i < body->count; i++)
        if (body->nodes[i].op == NN_OP_INPUT && k-- == 0)
            return i;
    return -1;
}

void nn_loop_result_type(const NnNode *loop, int k, NnDType *dt, NnShape *s)
{
    const NnGraph *b = loop->attr.body;
    const NnNode *o = &b->nodes[b->outputs[k].id];
    *dt = o->dtype;
    *s = o->shape;
    if (k < loop->attr.ncarry)
        return;
    for (int d = s->rank; d > 0; d--)
        s->dim[d] = s->dim[d - 1];
    s->dim[0] = loop->attr.trips;
    s->rank++;
}

static int64_t padded_bytes(NnDType dt, const NnShape *s, const int64_t *symv)
{
    int64_t d[NN_MAX_RANK], n = (int64_t)nnrt_dtype_size(dt);
    nn_shape_bind(s, symv, d);
    for (int i = 0; i < s->rank; i++)
        n *= d[i];
    return (n + 63) / 64 * 64;
}

void nn_loop_layout(const NnNode *loop, const int64_t *symv, int64_t *off)
{
    int nres = nn_loop_nresults(loop), c = loop->attr.ncarry;
    int64_t at = 0;
    for (int k = 0; k < nres + c; k++) {
        NnDType dt;
        NnShape s;
        nn_loop_result_type(loop, k < nres ? k : k - nres, &dt, &s);
        off[k] = at;
        at += padded_bytes(dt, &s, symv);
    }
    off[nres + c] = at;
}

int64_t nn_loop_layout_rows(const NnNode *loop, const int64_t *symv, int sym, int64_t *off,
                            bool *rows)
{
    int nres = nn_loop_nresults(loop), c = loop->attr.ncarry;
    int64_t at[2] = {0, 0}; // [0] fixed regions, [1] per-row regions
    for (int k = 0; k < nres + c; k++) {
        NnDType dt;
        NnShape s;
        nn_loop_result_type(loop, k < nres ? k : k - nres, &dt, &s);
        int r = 0;
        for (int d = 0; sym >= 0 && d < s.rank; d++)
            r |= s.dim[d] == -sym - 1;
        rows[k] = r;
        off[k] = at[r];
        at[r] += padded_bytes(dt, &s, symv);
    }
    off[nres + c] = at[1];
    return at[0];
}

bool nn_loop_has_rows(const NnNode *loop, int sym)
{
    if (sym < 0)
        return false;
    int nres = nn_loop_nresults(loop);
    for (int k = 0; k < nres; k++) {
        NnDType dt;
        NnShape s;
        nn_loop_result_type(loop, k, &dt, &s);
        for (int d = 0; d < s.rank; d++)
            if (s.dim[d] == -sym - 1)
                return true;
    }
    return false;
}

int64_t nn_loop_bytes(const NnNode *loop, const int64_t *symv)
{
    int64_t small[64];
    int n = nn_loop_nresults(loop) + loop->attr.ncarry + 1;
    int64_t *off = n <= 64 ? small : malloc((size_t)n * sizeof *off);
    NN_ASSERT(off);
    nn_loop_layout(loop, symv, off);
    int64_t total = off[n - 1];
    if (off != small)
        free(off);
    return total;
}

bool nn_loop_out_direct(const NnGraph *g, NnId id)
{
    const NnNode *n = &g->nodes[id];
    if (n->op != NN_OP_LOOP_OUT || n->attr.result < g->nodes[n->in[0]].attr.ncarry)
        return false;
    for (NnId j = n->in[0] + 1; j < id; j++)
        if (g->nodes[j].op == NN_OP_LOOP_OUT && g->nodes[j].in[0] == n->in[0] &&
            g->nodes[j].attr.result == n->attr.result)
            return false;
    return true;
}

// ---- shape rules ----

static bool same_type(const NnNode *a, NnDType dt, const NnShape *s)
{
    return a->dtype == dt && nn_shape_eq(&a->shape, s);
}

static bool loop_fail(NnGraph *g, const char *what, int k, const NnNode *want, const NnNode *got)
{
    char a[NN_TYPE_BUF], b[NN_TYPE_BUF];
    nn_set_err(g, "loop: %s %d is %s in the body but %s outside", what, k,
               nn_type_str(g, got->dtype, &got->shape, a, sizeof a),
               nn_type_str(g, want->dtype, &want->shape, b, sizeof b));
    return false;
}

bool shape_loop(NnGraph *g, NnNode *n)
{
    const NnGraph *b = n->attr.body;
    int c = n->attr.ncarry, s = n->attr.nseq;
    if (!b || c < 0 || s < 0 || c + s > n->nin || n->attr.trips < 1 || b->noutputs < c) {
        nn_set_err(g, "loop: needs a body, 1 or more steps and ncarry + nseq <= inputs");
        return false;
    }
    if (b->nsyms > g->nsyms) {
        nn_set_err(g, "loop: the body has symbols its graph lacks");
        return false;
    }
    for (int k = 0; k < b->nsyms; k++)
        if (strcmp(b->syms[k], g->syms[k]) != 0) {
            nn_set_err(g, "loop: body symbol %d is %s, not %s", k, b->syms[k], g->syms[k]);
            return false;
        }
    int k = 0;
    for (NnId i = 0; i < b->count; i++) {
        const NnNode *bi = &b->nodes[i];
        if (bi->op != NN_OP_INPUT)
            continue;
        if (k >= n->nin) {
            nn_set_err(g, "loop: the body has more inputs than the node's %d", n->nin);
            return false;
        }
        const NnNode *x = &g->nodes[n->in[k]];
        NnShape want = x->shape;
        if (k >= c && k < c + s) {
            if (x->shape.rank < 1 || x->shape.dim[0] != n->attr.trips) {
                nn_set_err(g, "loop: sequence %d must have %lld steps on axis 0", k - c,
                           (long long)n->attr.trips);
                return false;
            }
            want.rank--;
            for (int d = 0; d < want.rank; d++)
                want.dim[d] = x->shape.dim[d + 1];
        }
        if (!same_type(bi, x->dtype, &want)) {
            NnNode w = *x;
            w.shape = want;
            return loop_fail(g, "input", k, &w, bi);
        }
        k++;
    }
    if (k != n->nin) {
        nn_set_err(g, "loop: the body has %d inputs, the node %d", k, n->nin);
        return false;
    }
    for (int j = 0; j < b->noutputs; j++) {
        NnId o = b->outputs[j].id;
        if (o < 0 || o >= b->count) {
            nn_set_err(g, "loop: body output %d is not a node", j);
            return false;
        }
        const NnNode *on = &b->nodes[o];
        if (j < c && !same_type(on, g->nodes[n->in[j]].dtype, &g->nodes[n->in[j]].shape))
            return loop_fail(g, "carry", j, &g->nodes[n->in[j]], on);
        if (j >= c && on->shape.rank >= NN_MAX_RANK) {
            nn_set_err(g, "loop: stacking output %d exceeds the maximum rank", j);
            return false;
        }
    }
    n->dtype = NN_DT_F32;
    n->shape.rank = 0;
    return true;
}

bool shape_loop_out(NnGraph *g, NnNode *n)
{
    const NnNode *l = &g->nodes[n->in[0]];
    if (l->op != NN_OP_LOOP || n->attr.result < 0 || n->attr.result >= nn_loop_nresults(l)) {
        nn_set_err(g, "loop_out: input is not a loop with result %d", n->attr.result);
        return false;
    }
    nn_loop_result_type(l, n->attr.result, &n->dtype, &n->shape);
    return true;
}

// Autodiff differentiates a LOOP as a whole (nn_loop_vjp), having summed the
// gradients of its LOOP_OUT results, so neither table entry is called.
void vjp_loop(NnGraph *g, NnId id, NnId gout, NnId *gin) { nn_rule_no_vjp(g, id); }
void vjp_loop_out(NnGraph *g, NnId id, NnId gout, NnId *gin) { gin[0] = -1; }

// ---- the gradient ----

static NnId add_input(NnGraph *b, const char *name, int k, NnDType dt, const NnShape *s, NnLoc loc)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%s%d", name, k);
    return nn_ir_source(b, NN_OP_INPUT, buf, dt, s, loc);
}

// Output index of body b that is exactly the body input of carry k, or -1;
// -2 when nothing in the body reads that input (a value the loop only sets,
// whose old value the gradient never needs).
static int saved_output(const NnGraph *b, int ncarry, int k)
{
    NnId in = nn_loop_body_input(b, k);
    for (int j = ncarry; j < b->noutputs; j++)
        if (b->outputs[j].id == in)
            return j;
    for (int j = 0; j < b->noutputs; j++)
        if (b->outputs[j].id == in)
            return -1;
    for (NnId i = in + 1; i < b->count; i++)
        for (int q = 0; q < b->nodes[i].nin; q++)
            if (b->nodes[i].in[q] == in)
                return -1;
    return -2;
}

// The loop itself when its body saves every carry, else a copy whose body also
// outputs the missing ones; save[k] is the result holding carry k per step.
static NnId with_saved_carries(NnGraph *g, NnId id, int *save)
{
    const NnNode *n = &g->nodes[id];
    const NnGraph *b = n->attr.body;
    int c = n->attr.ncarry;
    bool all = true;
    for (int k = 0; k < c; k++)
        all &= (save[k] = saved_output(b, c, k)) != -1;
    if (all)
        return id;
    NnGraph *b2 = nn_graph_new_child(g);
    nn_graph_copy_into(b2, b);
    for (int k = 0; k < c; k++)
        if (save[k] == -1) {
            save[k] = b2->noutputs;
            nn_graph_add_output(b2, "saved", nn_loop_body_input(b2, k));
        }
    NnNode copy = *n;
    return nn_ir_loop(g, copy.in, copy.nin, c, copy.attr.nseq, copy.attr.trips, copy.attr.reverse,
                      b2, copy.loc);
}

// Per-sample floats the saved products of a loop may take (T steps times
// their columns): 64K, a quarter of a MB per sample. Past that (an LSTM at
// T = 1000) the reverse body recomputes them as it recomputes the rest.
#define SAVE_PRODUCTS_MAX 65536

// Body nodes whose per-step values the forward loop saves so that the reverse
// body reads them instead of recomputing them: the matrix products of body
// inputs (h @ wh, x @ wx), the bulk of a recurrent step's work. Marks them in
// prod and returns how many; none when they would take more than
// SAVE_PRODUCTS_MAX floats per sample.
static int saved_products(const NnGraph *b, int64_t trips, bool *prod)
{
    int n = 0;
    int64_t per = 0;
    for (NnId i = 0; i < b->count; i++) {
        const NnNode *bn = &b->nodes[i];
        prod[i] = bn->op == NN_OP_MATMUL && b->nodes[bn->in[0]].op == NN_OP_INPUT &&
                  b->nodes[bn->in[1]].op == NN_OP_INPUT && nn_rule_is_float(bn->dtype);
        if (!prod[i])
            continue;
        int64_t e = 1;
        for (int d = 0; d < bn->shape.rank; d++)
            e *= nn_dim_is_sym(bn->shape.dim[d]) ? 1 : bn->shape.dim[d];
        per += e * trips;
        n++;
    }
    if (per > SAVE_PRODUCTS_MAX)
        for (NnId i = 0; i < b->count; i++)
            prod[i] = false;
    return per > SAVE_PRODUCTS_MAX ? 0 : n;
}

static NnId zeros_like(NnGraph *g, NnId x, NnLoc loc)
{
    NnNode *n = &g->nodes[x];
    return nn_rule_fill(g, 0, n->dtype, &n->shape, loc);
}

void nn_loop_vjp(NnGraph *g, NnId id, const NnId *dres, const bool *need, NnId *gin)
{
    const NnNode *n0 = &g->nodes[id];
    int C = n0->attr.ncarry, S = n0->attr.nseq, V = n0->nin - C - S;
    int Y = n0->attr.body->noutputs - C;
    int64_t T = n0->attr.trips;
    bool rev = n0->attr.reverse;
    NnLoc loc = n0->loc;
    int nin = n0->nin;
    NnId *in = nn_arena_alloc(g->arena, (size_t)nin * sizeof *in);
    memcpy(in, n0->in, (size_t)nin * sizeof *in);
    for (int k = 0; k < nin; k++)
        gin[k] = -1;
    int *save = nn_arena_alloc(g->arena, (size_t)(C + 1) * sizeof *save);
    NnId src = with_saved_carries(g, id, save);
    NnGraph *B = g->nodes[src].attr.body;
    NnId *saved = nn_arena_alloc(g->arena, (size_t)(C + 1) * sizeof *saved);
    for (int k = 0; k < C; k++)
        saved[k] = save[k] >= 0 ? nn_ir_loop_out(g, src, save[k], loc) : -1;
    // The products saved per step: extra stacked outputs of the forward body
    // (appended, so the results already read keep their index).
    bool *prod = nn_arena_alloc(g->arena, (size_t)B->count + 1);
    int P = saved_products(B, T, prod);
    NnId *pstack = nn_arena_alloc(g->arena, (size_t)B->count * sizeof *pstack);
    for (NnId i = 0; i < B->count; i++)
        if (prod[i]) {
            nn_graph_add_output(B, "product", i);
            pstack[i] = nn_ir_loop_out(g, src, B->noutputs - 1, loc);
        }

    // Which values take part: float carries always (their gradient flows
    // through every step), invariants and sequences when asked for, stacked
    // outputs when they have a gradient.
    bool *fc = nn_arena_alloc(g->arena, (size_t)C + 1);
    bool *nw = nn_arena_alloc(g->arena, (size_t)V + 1);
    bool *nx = nn_arena_alloc(g->arena, (size_t)S + 1);
    bool *dy = nn_arena_alloc(g->arena, (size_t)Y + 1);
    // A carry the body never reads gets a gradient only at the last step, and
    // none at all when its final value has none: then it takes no part.
    for (int k = 0; k < C; k++)
        fc[k] = nn_rule_is_float(g->nodes[in[k]].dtype) && (save[k] != -2 || dres[k] >= 0);
    for (int s = 0; s < S; s++)
        nx[s] = need[C + s] && nn_rule_is_float(g->nodes[in[C + s]].dtype);
    for (int v = 0; v < V; v++)
        nw[v] = need[C + S + v] && nn_rule_is_float(g->nodes[in[C + S + v]].dtype);
    for (int j = 0; j < Y; j++)
        dy[j] = dres[C + j] >= 0;

    // The reverse body. Inputs: carries (dc per float carry, dw per invariant
    // wanted), sequences (saved carry, forward slices, output gradients),
    // invariants (the forward ones).
    NnGraph *R = nn_graph_new_child(g);
    int nb = B->count;
    NnId *map = nn_arena_alloc(g->arena, (size_t)nb * sizeof *map);
    int cap = 2 * C + 2 * V + S + Y + P + 1;
    NnId *rin = nn_arena_alloc(g->arena, (size_t)cap * sizeof *rin); // outer operands
    int nr = 0, ncarry = 0, nseq = 0;
    NnId *dcin = nn_arena_alloc(g->arena, (size_t)(C + V + 1) * sizeof *dcin);
    NnId *dwin = dcin + C;
    for (int k = 0; k < C; k++) {
        if (!fc[k])
            continue;
        const NnNode *x = &g->nodes[in[k]];
        dcin[k] = add_input(R, "dc", k, x->dtype, &x->shape, loc);
        rin[nr++] = dres[k] >= 0 ? dres[k] : zeros_like(g, in[k], loc);
        ncarry++;
    }
    for (int v = 0; v < V; v++) {
        if (!nw[v])
            continue;
        const NnNode *x = &g->nodes[in[C + S + v]];
        dwin[v] = add_input(R, "dw", v, x->dtype, &x->shape, loc);
        rin[nr++] = zeros_like(g, in[C + S + v], loc);
        ncarry++;
    }
    for (int k = 0; k < C; k++) {
        if (saved[k] < 0)
            continue;
        const NnNode *bi = &B->nodes[nn_loop_body_input(B, k)];
        map[nn_loop_body_input(B, k)] = add_input(R, "c", k, bi->dtype, &bi->shape, loc);
        rin[nr++] = saved[k];
        nseq++;
    }
    for (int s = 0; s < S; s++) {
        const NnNode *bi = &B->nodes[nn_loop_body_input(B, C + s)];
        map[nn_loop_body_input(B, C + s)] = add_input(R, "x", s, bi->dtype, &bi->shape, loc);
        rin[nr++] = in[C + s];
        nseq++;
    }
    NnId *dyin = nn_arena_alloc(g->arena, (size_t)(Y + 1) * sizeof *dyin);
    for (int j = 0; j < Y; j++) {
        if (!dy[j])
            continue;
        const NnNode *o = &B->nodes[B->outputs[C + j].id];
        dyin[j] = add_input(R, "dy", j, o->dtype, &o->shape, loc);
        rin[nr++] = dres[C + j];
        nseq++;
    }
    for (NnId i = 0; i < nb; i++)
        if (prod[i]) {
            map[i] = add_input(R, "m", i, B->nodes[i].dtype, &B->nodes[i].shape, loc);
            rin[nr++] = pstack[i];
            nseq++;
        }
    for (int v = 0; v < V; v++) {
        const NnNode *bi = &B->nodes[nn_loop_body_input(B, C + S + v)];
        map[nn_loop_body_input(B, C + S + v)] = add_input(R, "w", v, bi->dtype, &bi->shape, loc);
        rin[nr++] = in[C + S + v];
    }
    // Carries the body never reads: an unread stand-in (their gradient is zero).
    for (int k = 0; k < C; k++) {
        if (saved[k] >= 0 || !fc[k])
            continue;
        const NnNode *bi = &B->nodes[nn_loop_body_input(B, k)];
        map[nn_loop_body_input(B, k)] = add_input(R, "c", k, bi->dtype, &bi->shape, loc);
        rin[nr++] = zeros_like(g, in[k], loc);
    }
    // The forward step, recomputed but for the saved products.
    for (NnId i = 0; i < nb; i++) {
        const NnNode *bn = &B->nodes[i];
        if (bn->op == NN_OP_INPUT || prod[i])
            continue;
        NnId small[16];
        NnId *ins = bn->nin <= 16 ? small
                                  : nn_arena_alloc(g->arena, (size_t)bn->nin * sizeof(NnId));
        for (int k = 0; k < bn->nin; k++)
            ins[k] = map[bn->in[k]];
        NnAttr a = nn_attr_copy(R, bn->op, &bn->attr);
        map[i] = nn_ir_add(R, bn->op, ins, bn->nin, &a, bn->loc);
        NN_ASSERT(map[i] >= 0);
    }
    // Its VJP, seeded with the incoming carry and output gradients.
    NnId *outs = nn_arena_alloc(g->arena, (size_t)(C + Y + 1) * sizeof *outs);
    NnId *seeds = nn_arena_alloc(g->arena, (size_t)(C + Y + 1) * sizeof *seeds);
    int nout = 0;
    for (int k = 0; k < C; k++)
        if (fc[k]) {
            outs[nout] = map[B->outputs[k].id];
            seeds[nout++] = dcin[k];
        }
    for (int j = 0; j < Y; j++)
        if (dy[j]) {
            outs[nout] = map[B->outputs[C + j].id];
            seeds[nout++] = dyin[j];
        }
    NnId *wrt = nn_arena_alloc(g->arena, (size_t)cap * sizeof *wrt);
    NnId *gr = nn_arena_alloc(g->arena, (size_t)cap * sizeof *gr);
    int nwrt = 0;
    for (int k = 0; k < C; k++)
        if (fc[k])
            wrt[nwrt++] = map[nn_loop_body_input(B, k)];
    for (int v = 0; v < V; v++)
        if (nw[v])
            wrt[nwrt++] = map[nn_loop_body_input(B, C + S + v)];
    for (int s = 0; s < S; s++)
        if (nx[s])
            wrt[nwrt++] = map[nn_loop_body_input(B, C + s)];
    // compiler/index.c unrolls bodies with extern calls, whose derivative
    // may be missing, so this cannot fail on a loop it made. A saved product
    // is an input of R: the VJP stops there, so its gradient is taken too
    // and sent through the product's own rule (a product of R's inputs, never
    // evaluated: a MATMUL's VJP reads only its operands) in a second VJP.
    int np = 0;
    for (NnId i = 0; i < nb; i++)
        if (prod[i])
            wrt[nwrt + np++] = map[i];
    if (!nn_ad_vjp(R, outs, seeds, nout, wrt, nwrt + np, gr))
        nn_internal_error(__FILE__, __LINE__, R->err);
    if (np > 0) {
        NnId *pr = nn_arena_alloc(g->arena, (size_t)np * sizeof *pr);
        NnId *gr2 = nn_arena_alloc(g->arena, (size_t)cap * sizeof *gr2);
        np = 0;
        for (NnId i = 0; i < nb; i++)
            if (prod[i]) {
                const NnNode *bn = &B->nodes[i];
                NnId ab[2] = {map[bn->in[0]], map[bn->in[1]]};
                NnAttr a = nn_attr_copy(R, bn->op, &bn->attr);
                pr[np++] = nn_ir_add(R, bn->op, ab, 2, &a, bn->loc);
                NN_ASSERT(pr[np - 1] >= 0);
            }
        if (!nn_ad_vjp(R, pr, gr + nwrt, np, wrt, nwrt, gr2))
            nn_internal_error(__FILE__, __LINE__, R->err);
        for (int q = 0; q < nwrt; q++)
            gr[q] = nn_ir_binary(R, NN_OP_ADD, gr[q], gr2[q], loc);
    }
    int w = 0;
    for (int k = 0; k < C; k++)
        if (fc[k])
            nn_graph_add_output(R, "dc", gr[w++]);
    for (int v = 0; v < V; v++)
        if (nw[v]) {
            nn_graph_add_output(R, "dw", nn_ir_binary(R, NN_OP_ADD, dwin[v], gr[w], loc));
            w++;
        }
    for (int s = 0; s < S; s++)
        if (nx[s])
            nn_graph_add_output(R, "dx", gr[w++]);
    NnId r = nn_ir_loop(g, rin, nr, ncarry, nseq, T, !rev, R, loc);
    if (r < 0)
        nn_internal_error(__FILE__, __LINE__, g->err);
    int k = 0;
    for (int c = 0; c < C; c++)
        if (fc[c])
            gin[c] = nn_ir_loop_out(g, r, k++, loc);
    for (int v = 0; v < V; v++)
        if (nw[v])
            gin[C + S + v] = nn_ir_loop_out(g, r, k++, loc);
    for (int s = 0; s < S; s++)
        if (nx[s])
            gin[C + s] = nn_ir_loop_out(g, r, k++, loc);
}
