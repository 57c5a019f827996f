// Indexing, indexed assignment, tuples and `for` loops in the elaborator.
// Indices are compile-time integers, so every index is checked against its
// dimension before anything runs and becomes SLICE / RESHAPE / CONCAT nodes.
// `x[i, a:b] = v` rebuilds x from slices around v; inside a loop, `out[:, t] =
// h` into a name not bound before the loop collects one value per step and
// binds `out` to their stack when the loop ends. Errors inside library layers
// point at the user's call (user_loc).
//
// A loop becomes one LOOP node (ir/loop.h) when its body allows: the body is
// elaborated once, with placeholders for the carried names and for `xs[..., t,
// ...]` slices; the nodes that depend on them become the loop's body graph,
// everything else stays outside as loop invariants. The loop variable may
// only appear as a whole index of a tensor defined before the loop, or in
// `out[:, t] = h`. Any other use (arithmetic on t, nested loops, parameters
// or random numbers made inside, ...) falls back to unrolling: the body is
// elaborated once per step with t a number. That attempt is silent and
// leaves no trace, so the unrolled pass reports any error itself.
#include "elab.h"

#include <string.h>

#include "loop.h"
#include "op_common.h"
#include "pass.h"
#include "rules.h"

// Unrolled loops are refused past this many steps in all (nested loops
// multiply): each step is a copy of the body.
#define MAX_UNROLL 10000

// One axis of an index: [start, stop) of the axis, or `pick` (an integer
// index, the axis disappears from the result).
typedef struct Range {
    int64_t start, stop;
    bool full, pick;
} Range;

// Reads a compile-time integer index; symbolic dims and tensors are refused.
static bool index_int(Lower *L, Env *env, const NnAst *e, int64_t *out)
{
    Val v = eval(L, env, e);
    if (v.kind == V_NONE)
        return false;
    if (v.kind != V_NUM || !v.is_int || v.sym) {
        char b[64];
        nn_error(&L->c->diags, user_loc(L, e->loc),
                 "an index must be a compile-time integer, got %s", val_desc(L, v, b, 64));
        return false;
    }
    *out = v.dim;
    return true;
}

// A name built step by step inside a loop (`out[:, t] = h`).
typedef struct Collect {
    const char *name;
    int axis;
    NnId *ids; // one per step so far
    int n;
    NnLoc loc;
    struct Collect *next;
} Collect;

// A sequence sliced by the loop variable: `src` (outside, [trips, ...]) and
// the placeholder standing for its slice t.
typedef struct Seq {
    NnId x; // the indexed tensor
    int axis;
    NnId src, ph;
    struct Seq *next;
} Seq;

struct LoopCtx {
    const char *var;
    int64_t lo, hi;
    int64_t t; // the step being elaborated (unrolled loops)
    Collect *collect;
    struct LoopCtx *outer;
    // A loop being made a node: the body is elaborated once.
    bool node;
    bool bad;   // the body does something a loop node cannot hold
    NnId mark;  // first node made for the loop
    Seq *seqs;
};

static bool is_node_loop_var(const Lower *L, const NnAst *e);
static NnId seq_slice(Lower *L, NnId x, int axis, NnLoc loc);

// Resolves the indices of `x[kids]` against x's shape into one Range per axis.
// In a loop becoming a node, an index that is the loop variable sets *tax to
// its axis (taken whole in r); without tax it makes the attempt fail.
static bool resolve(Lower *L, Env *env, NnNode *x, const NnAstList *kids, NnLoc loc, Range *r,
                    int *tax)
{
    const NnShape *s = &x->shape;
    char t[NN_TYPE_BUF];
    if (kids->count > s->rank) {
        nn_error(&L->c->diags, user_loc(L, loc), "too many indices: %d for %s", kids->count,
                 nn_type_str(L->g, x->dtype, s, t, sizeof t));
        return false;
    }
    for (int k = 0; k < s->rank; k++) {
        r[k] = (Range){0, s->dim[k], true, false};
        if (k >= kids->count)
            continue;
        const NnAst *e = kids->items[k];
        bool slice = e->kind == NN_AST_SLICE;
        if (slice && !e->a && !e->b)
            continue;
        int64_t d = s->dim[k];
        if (is_node_loop_var(L, e)) {
            LoopCtx *lp = L->loop;
            if (!tax || *tax >= 0 || d < 0 || lp->lo < 0 || lp->hi > d) {
                lp->bad = true;
                return false;
            }
            *tax = k;
            continue;
        }
        if (d < 0) {
            nn_error(&L->c->diags, user_loc(L, e->loc),
                     "dimension %s of %s can only be taken whole (':')", L->g->syms[-d - 1],
                     nn_type_str(L->g, x->dtype, s, t, sizeof t));
            return false;
        }
        r[k].full = false;
        if (!slice) {
            int64_t i;
            if (!index_int(L, env, e, &i))
                return false;
            if (i < -d || i >= d) {
                nn_error(&L->c->diags, user_loc(L, e->loc),
                         "index %lld is out of range for axis %d of %s (size %lld)",
                         (long long)i, k, nn_type_str(L->g, x->dtype, s, t, sizeof t),
                         (long long)d);
                return false;
            }
            i = i < 0 ? i + d : i;
            r[k] = (Range){i, i + 1, false, true};
            continue;
        }
        int64_t b[2] = {0, d};
        const NnAst *be[2] = {e->a, e->b};
        for (int j = 0; j < 2; j++) {
            if (!be[j])
                continue;
            if (!index_int(L, env, be[j], &b[j]))
                return false;
            if (b[j] < -d || b[j] > d) {
                nn_error(&L->c->diags, user_loc(L, be[j]->loc),
                         "slice bound %lld is out of range for axis %d of %s (size %lld)",
                         (long long)b[j], k, nn_type_str(L->g, x->dtype, s, t, sizeof t),
                         (long long)d);
                return false;
            }
            b[j] = b[j] < 0 ? b[j] + d : b[j];
        }
        if (b[0] >= b[1]) {
            nn_error(&L->c->diags, user_loc(L, e->loc),
                     "empty slice %lld:%lld of axis %d (size %lld)", (long long)b[0],
                     (long long)b[1], k, (long long)d);
            return false;
        }
        r[k].start = b[0];
        r[k].stop = b[1];
        r[k].full = b[0] == 0 && b[1] == d;
    }
    return true;
}

// The shape of x[r] without and with the picked axes.
static void region_shapes(const NnShape *s, const Range *r, NnShape *kept, NnShape *region)
{
    kept->rank = 0;
    region->rank = s->rank;
    for (int k = 0; k < s->rank; k++) {
        region->dim[k] = r[k].full ? s->dim[k] : r[k].stop - r[k].start;
        if (!r[k].pick)
            kept->dim[kept->rank++] = region->dim[k];
    }
}

Val eval_index(Lower *L, Env *env, const NnAst *e)
{
    Val x = eval(L, env, e->a);
    if (x.kind == V_NONE)
        return x;
    if (x.kind == V_LIST && e->kids.count == 1 && e->kids.items[0]->kind != NN_AST_SLICE) {
        int64_t i, n = x.list->count;
        if (!index_int(L, env, e->kids.items[0], &i))
            return v_none();
        if (i < -n || i >= n) {
            nn_error(&L->c->diags, user_loc(L, e->kids.items[0]->loc),
                     "index %lld is out of range for a list of %lld", (long long)i, (long long)n);
            return v_none();
        }
        return x.list->items[i < 0 ? i + n : i];
    }
    if (x.kind != V_TENSOR) {
        char b[64];
        nn_error(&L->c->diags, user_loc(L, e->loc), "cannot index %s", val_desc(L, x, b, 64));
        return v_none();
    }
    NnNode *xn = vnode(L, x);
    Range r[NN_MAX_RANK];
    int tax = -1;
    if (!resolve(L, env, xn, &e->kids, e->loc, r, &tax))
        return v_none();
    NnShape s = xn->shape, kept, region;
    NnId id = x.id;
    if (tax >= 0) {
        // Step t's slice: a body input; the remaining indices apply to it.
        if ((id = seq_slice(L, x.id, tax, e->loc)) < 0)
            return v_none();
        for (int k = tax; k + 1 < s.rank; k++) {
            s.dim[k] = s.dim[k + 1];
            r[k] = r[k + 1];
        }
        s.rank--;
    }
    region_shapes(&s, r, &kept, &region);
    for (int k = 0; k < s.rank && id >= 0; k++)
        if (!r[k].full)
            id = checked(L, nn_ir_slice(L->g, id, k, r[k].start, r[k].stop, 1, e->loc), e->loc);
    if (id >= 0 && kept.rank != region.rank)
        id = checked(L, nn_ir_reshape(L->g, id, &kept, e->loc), e->loc);
    return v_tensor(id);
}

// x with its region r (axes from k on) replaced by v, which has the region's shape.
static NnId set_region(Lower *L, NnId x, const Range *r, int k, NnId v, NnLoc loc)
{
    int rank = nn_node(L->g, x)->shape.rank;
    while (k < rank && r[k].full)
        k++;
    if (k == rank || x < 0 || v < 0)
        return v;
    int64_t d = nn_node(L->g, x)->shape.dim[k];
    NnId mid = nn_ir_slice(L->g, x, k, r[k].start, r[k].stop, 1, loc);
    NnId parts[3];
    int n = 0;
    if (r[k].start > 0)
        parts[n++] = nn_ir_slice(L->g, x, k, 0, r[k].start, 1, loc);
    parts[n++] = set_region(L, mid, r, k + 1, v, loc);
    if (r[k].stop < d)
        parts[n++] = nn_ir_slice(L->g, x, k, r[k].stop, d, 1, loc);
    for (int i = 0; i < n; i++)
        if (parts[i] < 0)
            return -1;
    return n == 1 ? parts[0] : nn_ir_concat(L->g, parts, n, k, loc);
}

NnId stack_ids(Lower *L, const NnId *ids, int n, int axis, NnLoc loc)
{
    NnId *parts = nn_arena_alloc(L->c->arena, (size_t)n * sizeof *parts);
    for (int i = 0; i < n; i++) {
        NnShape s = nn_node(L->g, ids[i])->shape;
        if (s.rank >= NN_MAX_RANK) {
            nn_error(&L->c->diags, user_loc(L, loc),
                     "stacking rank-%d tensors exceeds the maximum rank %d", s.rank, NN_MAX_RANK);
            return -1;
        }
        for (int k = s.rank; k > axis; k--)
            s.dim[k] = s.dim[k - 1];
        s.dim[axis] = 1;
        s.rank++;
        if ((parts[i] = checked(L, nn_ir_reshape(L->g, ids[i], &s, loc), loc)) < 0)
            return -1;
    }
    return checked(L, nn_ir_concat(L->g, parts, n, axis, loc), loc);
}


static bool is_node_loop_var(const Lower *L, const NnAst *e)
{
    return L->loop && L->loop->node && e->kind == NN_AST_NAME && strcmp(e->name, L->loop->var) == 0;
}

// The placeholder for slice t of x along axis (made once per x and axis).
static NnId seq_slice(Lower *L, NnId x, int axis, NnLoc loc)
{
    LoopCtx *lp = L->loop;
    for (Seq *q = lp->seqs; q; q = q->next)
        if (q->x == x && q->axis == axis)
            return q->ph;
    if (x >= lp->mark) { // a value of the body itself: not a sequence
        lp->bad = true;
        return -1;
    }
    NnGraph *g = L->g;
    NnId src = x;
    if (lp->lo != 0 || lp->hi != g->nodes[x].shape.dim[axis])
        src = nn_ir_slice(g, src, axis, lp->lo, lp->hi, 1, loc);
    if (src >= 0 && axis != 0) {
        int perm[NN_MAX_RANK], rank = g->nodes[x].shape.rank;
        perm[0] = axis;
        for (int k = 0, j = 1; k < rank; k++)
            if (k != axis)
                perm[j++] = k;
        src = nn_ir_transpose(g, src, perm, loc);
    }
    if (src < 0) {
        lp->bad = true;
        return -1;
    }
    NnShape sh = g->nodes[src].shape;
    for (int k = 0; k + 1 < sh.rank; k++)
        sh.dim[k] = sh.dim[k + 1];
    sh.rank--;
    NnId ph = nn_ir_source(g, NN_OP_INPUT, "loop.slice", g->nodes[src].dtype, &sh, loc);
    Seq *q = nn_arena_alloc(L->c->arena, sizeof *q);
    *q = (Seq){x, axis, src, ph, lp->seqs};
    lp->seqs = q;
    return ph;
}

// `name[:, t] = v` for a name not bound yet: one step of a stacked output.
static bool collect_step(Lower *L, const NnAst *target, Val v, NnLoc loc)
{
    const char *name = target->a->name;
    LoopCtx *lp = L->loop;
    int axis = -1, nidx = target->kids.count;
    bool ok = lp != NULL;
    for (int k = 0; ok && k < nidx; k++) {
        const NnAst *e = target->kids.items[k];
        if (e->kind == NN_AST_NAME && strcmp(e->name, lp->var) == 0 && axis < 0)
            axis = k;
        else if (e->kind != NN_AST_SLICE || e->a || e->b)
            ok = false;
    }
    if (!ok || axis < 0) {
        nn_error(&L->c->diags, user_loc(L, target->loc),
                 "'%s' is not defined; to build it step by step, index it by the loop variable "
                 "inside the loop, like %s[:, t] = h", name, name);
        return false;
    }
    NnDType dt = v.kind == V_TENSOR ? vnode(L, v)->dtype : NN_DT_F32;
    NnId id = as_tensor(L, v, dt, loc);
    if (id < 0)
        return false;
    NnNode *nd = nn_node(L->g, id);
    if (axis > nd->shape.rank) {
        char t[NN_TYPE_BUF];
        nn_error(&L->c->diags, user_loc(L, target->loc), "%d indices for a step value of type %s",
                 nidx, nn_type_str(L->g, nd->dtype, &nd->shape, t, sizeof t));
        return false;
    }
    Collect *c = lp->collect;
    while (c && strcmp(c->name, name) != 0)
        c = c->next;
    if (lp->node) { // one value, stacked by the loop node
        if (c) {
            lp->bad = true;
            return false;
        }
        c = nn_arena_alloc(L->c->arena, sizeof *c);
        *c = (Collect){name, axis, nn_arena_alloc(L->c->arena, sizeof *c->ids), 1, target->loc,
                       lp->collect};
        c->ids[0] = id;
        lp->collect = c;
        return true;
    }
    if (!c) {
        c = nn_arena_alloc(L->c->arena, sizeof *c);
        c->name = name;
        c->axis = axis;
        c->ids = nn_arena_alloc(L->c->arena, (size_t)(lp->hi - lp->lo) * sizeof *c->ids);
        c->loc = target->loc;
        c->next = lp->collect;
        lp->collect = c;
    }
    NnNode *first = c->n ? nn_node(L->g, c->ids[0]) : nd;
    if (c->axis != axis || first->dtype != nd->dtype || !nn_shape_eq(&first->shape, &nd->shape)) {
        char a[NN_TYPE_BUF], b[NN_TYPE_BUF];
        nn_error(&L->c->diags, user_loc(L, loc), "'%s' gets %s at this step but %s at the first",
                 name, nn_type_str(L->g, nd->dtype, &nd->shape, a, sizeof a),
                 nn_type_str(L->g, first->dtype, &first->shape, b, sizeof b));
        return false;
    }
    if (c->n != lp->t - lp->lo) {
        nn_error(&L->c->diags, user_loc(L, loc),
                 c->n > lp->t - lp->lo ? "'%s' is assigned twice in one step"
                                       : "'%s' is assigned in only some steps of the loop",
                 name);
        return false;
    }
    c->ids[c->n++] = id;
    return true;
}

bool assign_index(Lower *L, Env *env, const NnAst *target, Val v, NnLoc loc)
{
    if (target->a->kind != NN_AST_NAME) {
        nn_error(&L->c->diags, user_loc(L, target->a->loc),
                 "only a name can be indexed on the left of '='");
        return false;
    }
    const char *name = target->a->name;
    Val x;
    if (!env_lookup(env, name, &x))
        return collect_step(L, target, v, loc);
    if (x.kind != V_TENSOR) {
        char b[64];
        nn_error(&L->c->diags, user_loc(L, target->loc), "cannot assign into part of %s",
                 val_desc(L, x, b, 64));
        return false;
    }
    NnNode *xn = vnode(L, x);
    Range r[NN_MAX_RANK];
    if (!resolve(L, env, xn, &target->kids, target->loc, r, NULL))
        return false;
    NnShape s = xn->shape, kept, region;
    NnDType dt = xn->dtype;
    region_shapes(&s, r, &kept, &region);
    NnId id = as_tensor(L, v, dt, loc);
    if (id < 0)
        return false;
    NnNode *vn = nn_node(L->g, id);
    if (vn->dtype != dt || !nn_shape_eq(&vn->shape, &kept)) {
        NnShape bs;
        if (vn->dtype != dt || !nn_broadcast_shapes(&vn->shape, &kept, &bs) ||
            !nn_shape_eq(&bs, &kept)) {
            char a[NN_TYPE_BUF], b[NN_TYPE_BUF];
            nn_error(&L->c->diags, user_loc(L, loc),
                     "cannot assign %s to a part of '%s' of type %s",
                     nn_type_str(L->g, vn->dtype, &vn->shape, a, sizeof a), name,
                     nn_type_str(L->g, dt, &kept, b, sizeof b));
            return false;
        }
        id = checked(L, nn_ir_broadcast(L->g, id, &kept, loc), loc);
    }
    if (id >= 0 && kept.rank != region.rank)
        id = checked(L, nn_ir_reshape(L->g, id, &region, loc), loc);
    id = checked(L, set_region(L, x.id, r, 0, id, loc), loc);
    if (id < 0)
        return false;
    env_set(L, env, name, v_tensor(id));
    return true;
}

bool assign_stmt(Lower *L, Env *env, const NnAst *s)
{
    int n = s->kids.count;
    const NnAst *t0 = s->kids.items[0];
    L->bind_name = n == 1 && t0->kind == NN_AST_NAME && s->a->kind == NN_AST_CALL ? t0->name : NULL;
    Val v = eval(L, env, s->a);
    L->bind_name = NULL;
    if (v.kind == V_NONE)
        return false;
    Val *parts = &v;
    if (n > 1) {
        if (v.kind != V_LIST || v.list->count != n) {
            char b[64];
            if (v.kind == V_LIST)
                snprintf(b, sizeof b, "%d values", v.list->count);
            nn_error(&L->c->diags, user_loc(L, s->a->loc),
                     "%d names on the left of '=' but %s on the right", n,
                     v.kind == V_LIST ? b : val_desc(L, v, b, 64));
            return false;
        }
        parts = v.list->items;
    }
    for (int i = 0; i < n; i++) {
        const NnAst *t = s->kids.items[i];
        if (t->kind == NN_AST_ERROR)
            return false;
        if (t->kind == NN_AST_INDEX) {
            if (!assign_index(L, env, t, parts[i], s->a->loc))
                return false;
        } else
            env_set(L, env, t->name, parts[i]);
    }
    return true;
}

// Names assigned anywhere in a loop body (targets and bases of indexed targets).
typedef struct Carried {
    const char *name;
    Val before;
    NnLoc loc;
    struct Carried *next;
} Carried;

static void find_carried(Lower *L, Env *env, const NnAstList *body, Carried **out)
{
    for (int i = 0; i < body->count; i++) {
        const NnAst *s = body->items[i];
        if (s->kind == NN_AST_FOR)
            find_carried(L, env, &s->kids, out);
        if (s->kind != NN_AST_ASSIGN)
            continue;
        for (int k = 0; k < s->kids.count; k++) {
            const NnAst *t = s->kids.items[k];
            if (t->kind == NN_AST_INDEX)
                t = t->a;
            if (t->kind != NN_AST_NAME)
                continue;
            Carried *c = *out;
            while (c && strcmp(c->name, t->name) != 0)
                c = c->next;
            Val v;
            if (c || !env_lookup(env, t->name, &v) || v.kind != V_TENSOR)
                continue;
            c = nn_arena_alloc(L->c->arena, sizeof *c);
            *c = (Carried){t->name, v, s->a->loc, *out};
            *out = c;
        }
    }
}

static bool loop_bound(Lower *L, Env *env, const NnAst *e, int64_t *out)
{
    Val v = eval(L, env, e);
    if (v.kind == V_NONE)
        return false;
    if (v.kind != V_NUM || !v.is_int || v.sym) {
        char b[64];
        nn_error(&L->c->diags, user_loc(L, e->loc),
                 "a loop bound must be a compile-time size, got %s", val_desc(L, v, b, 64));
        return false;
    }
    *out = v.dim;
    return true;
}

// ---- loops as nodes ----

// Whether a statement list holds a `for` or a `param` (at any depth): such a
// body is unrolled.
static bool has_nested(const NnAstList *body)
{
    for (int i = 0; i < body->count; i++) {
        const NnAst *s = body->items[i];
        if (s->kind == NN_AST_FOR || s->kind == NN_AST_PARAM || s->kind == NN_AST_STATE)
            return true;
    }
    return false;
}

// Names resolved while the body is elaborated may make nodes the resolver
// remembers (the train block's lazy values); those must survive the attempt.
typedef struct Watch {
    Resolver inner;
    void *ctx;
    Lower *L;
    bool grew;
} Watch;

static bool watch_resolve(void *ctx, const char *name, NnLoc loc, Val *out)
{
    Watch *w = ctx;
    int before = w->L->g->count;
    bool ok = w->inner(w->ctx, name, loc, out);
    w->grew |= w->L->g->count != before;
    return ok;
}

static int counters_sum(const Lower *L)
{
    int n = 0;
    for (const Counter *c = L->counters; c; c = c->next)
        n += c->n + 1;
    return n;
}

// A result the loop gives back to a name after it ends.
typedef struct Exit {
    const char *name;
    NnId value;  // the body's value (old numbering)
    NnId before; // carries: the value entering the loop; locals: -1 (zeros)
    NnId ph;     // carries: the placeholder; locals: -1
    int axis;    // stacked outputs: axis of the step in the result
} Exit;

typedef struct Build {
    Lower *L;
    NnGraph *g, *body;
    NnId mark, end;
    bool *dep;         // [mark, end): depends on a placeholder
    NnId *bmap;        // old id -> body id (-1 none)
    NnId *inv, ninv;   // invariants (old ids) in body input order
    NnId *invcap;
} Build;

// The body node for old node x: its copy (dep), a CONST copied in, or an
// invariant body input fed from outside.
static NnId body_ref(Build *b, NnId x)
{
    if (b->bmap[x] >= 0)
        return b->bmap[x];
    const NnNode *n = &b->g->nodes[x];
    NnId id;
    if (n->op == NN_OP_CONST) {
        NnAttr a = n->attr;
        id = nn_ir_add(b->body, NN_OP_CONST, NULL, 0, &a, n->loc);
    } else {
        id = nn_ir_source(b->body, NN_OP_INPUT, "loop.inv", n->dtype, &n->shape, n->loc);
        b->inv[b->ninv++] = x;
    }
    return b->bmap[x] = id;
}

// Elaborates the body once into a LOOP node. False (having undone everything
// it did) when the body needs unrolling; errors are left to the unrolled pass.
static bool loop_node(Lower *L, Env *env, const NnAst *s, const NnAst *owner, int64_t lo,
                      int64_t hi)
{
    if (hi - lo < 2 || has_nested(&s->kids))
        return false;
    NnGraph *g = L->g;
    NnDiags *d = &L->c->diags;
    int dcount = d->count, derr = d->nerrors;
    FILE *dout = d->out;
    int nvars = L->nvars, nupd = L->nupd, nrandom = L->nrandom, ncount = counters_sum(L);
    Resolver res = L->resolve;
    void *rctx = L->resolve_ctx;
    Watch w = {res, rctx, L, false};
    if (res) {
        L->resolve = watch_resolve;
        L->resolve_ctx = &w;
    }
    d->out = NULL;
    NnId mark = g->count;

    Carried *carried = NULL;
    find_carried(L, env, &s->kids, &carried);
    Env inner = {.parent = env};
    LoopCtx lp = {s->name, lo, hi, lo, NULL, L->loop, true, false, mark, NULL};
    L->loop = &lp;
    int ncar = 0;
    bool ok = true;
    for (Carried *c = carried; c && ok; c = c->next, ncar++) {
        NnNode *b = vnode(L, c->before);
        NnId ph = nn_ir_source(g, NN_OP_INPUT, "loop.carry", b->dtype, &b->shape, s->loc);
        ok = ph >= 0;
        env_set(L, &inner, c->name, v_tensor(ph));
    }
    env_set(L, &inner, s->name, v_none());
    for (int i = 0; ok && i < s->kids.count; i++)
        ok = exec_stmt(L, &inner, s->kids.items[i], owner);
    L->loop = lp.outer;
    L->resolve = res;
    L->resolve_ctx = rctx;
    ok = ok && !lp.bad && !w.grew && d->count == dcount && d->nerrors == derr &&
         L->nvars == nvars && L->nupd == nupd && L->nrandom == nrandom &&
         counters_sum(L) == ncount;
    d->count = dcount;
    d->nerrors = derr;
    d->out = dout;

    // What leaves the loop: carries (placeholders first, in `carried` order),
    // then body-local tensors (as carries starting at zero), then collects.
    NnId end = g->count;
    int nloc = 0, ncol = 0;
    for (Bind *b = inner.head; b; b = b->next)
        nloc++;
    for (Collect *c = lp.collect; c; c = c->next)
        ncol++;
    Exit *ex = nn_arena_alloc(L->c->arena, (size_t)(ncar + nloc + ncol + 1) * sizeof *ex);
    int nc = 0, ny = 0;
    for (Carried *c = carried; ok && c; c = c->next) {
        Val now;
        env_lookup(&inner, c->name, &now);
        NnNode *a = vnode(L, c->before);
        ok = now.kind == V_TENSOR && a->dtype == vnode(L, now)->dtype &&
             nn_shape_eq(&a->shape, &vnode(L, now)->shape);
        ex[nc] = (Exit){c->name, now.id, c->before.id, mark + nc, 0};
        nc++;
    }
    for (Bind *b = inner.head; ok && b; b = b->next) {
        bool is_carried = strcmp(b->name, s->name) == 0;
        for (Carried *c = carried; c && !is_carried; c = c->next)
            is_carried = strcmp(c->name, b->name) == 0;
        if (is_carried)
            continue;
        if (b->v.kind == V_TENSOR)
            ex[nc++] = (Exit){b->name, b->v.id, -1, -1, 0};
        else if (b->v.kind == V_LIST || b->v.kind == V_BOUND || b->v.kind == V_NONE)
            ok = false; // may hold values of the body
    }
    for (Collect *c = lp.collect; ok && c; c = c->next) {
        ex[nc + ny] = (Exit){c->name, c->ids[0], -1, -1, c->axis};
        ny++;
    }
    // Nodes made for the loop: which depend on the placeholders; nothing
    // made may be a source other than a CONST, or random.
    bool *dep = nn_arena_alloc(L->c->arena, (size_t)(end - mark) + 1);
    for (NnId i = mark; ok && i < end; i++) {
        const NnNode *n = &g->nodes[i];
        bool ph = i < mark + ncar;
        for (Seq *q = lp.seqs; q && !ph; q = q->next)
            ph = q->ph == i;
        if (nn_op_has(n->op, NN_OPF_RANDOM) || n->op == NN_OP_DROPOUT ||
            n->op == NN_OP_EXTERN || // its derivative may be missing: unrolled, autodiff says so
            (nn_op_has(n->op, NN_OPF_SOURCE) && n->op != NN_OP_CONST && !ph))
            ok = false;
        dep[i - mark] = ph;
        for (int k = 0; k < n->nin; k++)
            dep[i - mark] |= n->in[k] >= mark && dep[n->in[k] - mark];
    }
    if (!ok) {
        if (!w.grew)
            g->count = mark;
        else // the resolver remembers nodes made here: keep them, unused
            for (NnId i = mark; i < end; i++)
                if (g->nodes[i].op == NN_OP_INPUT) {
                    g->nodes[i].op = NN_OP_CONST;
                    g->nodes[i].attr.name = NULL;
                }
        return false;
    }

    // The body graph: inputs (carries, sequences, invariants as found), the
    // dependent nodes, and outputs (new carries, collects, saved carries).
    int nseq = 0;
    for (Seq *q = lp.seqs; q; q = q->next)
        nseq++;
    Seq **seqs = nn_arena_alloc(L->c->arena, (size_t)(nseq + 1) * sizeof *seqs);
    int qi = nseq;
    for (Seq *q = lp.seqs; q; q = q->next) // oldest first
        seqs[--qi] = q;
    Build b = {L, g, nn_graph_new_child(g), mark, end, dep, NULL, NULL, 0, NULL};
    b.bmap = nn_arena_alloc(L->c->arena, (size_t)end * sizeof *b.bmap);
    b.inv = nn_arena_alloc(L->c->arena, (size_t)end * sizeof *b.inv);
    for (NnId i = 0; i < end; i++)
        b.bmap[i] = -1;
    NnId *cin = nn_arena_alloc(L->c->arena, (size_t)(nc + 1) * sizeof *cin);
    for (int k = 0; k < nc; k++) {
        NnNode *v = &g->nodes[ex[k].value];
        NnNode *t = ex[k].before >= 0 ? &g->nodes[ex[k].before] : v;
        cin[k] = nn_ir_source(b.body, NN_OP_INPUT, "loop.carry", t->dtype, &t->shape, s->loc);
        if (ex[k].ph >= 0)
            b.bmap[ex[k].ph] = cin[k];
    }
    for (int q = 0; q < nseq; q++) {
        NnNode *p = &g->nodes[seqs[q]->ph];
        b.bmap[seqs[q]->ph] =
            nn_ir_source(b.body, NN_OP_INPUT, "loop.slice", p->dtype, &p->shape, p->loc);
    }
    for (NnId i = mark; i < end; i++) {
        const NnNode *n = &g->nodes[i];
        if (!dep[i - mark] || b.bmap[i] >= 0)
            continue;
        NnId small[16];
        NnId *ins =
            n->nin <= 16 ? small : nn_arena_alloc(L->c->arena, (size_t)n->nin * sizeof *ins);
        for (int k = 0; k < n->nin; k++)
            ins[k] = body_ref(&b, n->in[k]);
        NnAttr a = n->attr;
        b.bmap[i] = nn_ir_add(b.body, n->op, ins, n->nin, &a, n->loc);
        NN_ASSERT(b.bmap[i] >= 0);
    }
    for (int k = 0; k < nc; k++)
        nn_graph_add_output(b.body, "carry", body_ref(&b, ex[k].value));
    for (int j = 0; j < ny; j++)
        nn_graph_add_output(b.body, "step", body_ref(&b, ex[nc + j].value));
    for (int k = 0; k < ncar; k++) // the gradient recomputes each step from these
        nn_graph_add_output(b.body, "saved", cin[k]);

    // Outside: the nodes that do not depend on the placeholders, again in
    // order, then the loop and its results.
    NnId *map = nn_arena_alloc(L->c->arena, (size_t)end * sizeof *map);
    for (NnId i = 0; i < end; i++)
        map[i] = i < mark ? i : -1;
    g->count = mark;
    for (NnId i = mark; i < end; i++) {
        NnNode n = g->nodes[i];
        if (dep[i - mark])
            continue;
        NnId small[16];
        NnId *ins = n.nin <= 16 ? small : nn_arena_alloc(L->c->arena, (size_t)n.nin * sizeof *ins);
        for (int k = 0; k < n.nin; k++)
            ins[k] = map[n.in[k]];
        map[i] = nn_ir_add(g, n.op, ins, n.nin, &n.attr, n.loc);
        NN_ASSERT(map[i] >= 0);
    }
    int nin = nc + nseq + b.ninv;
    NnId *in = nn_arena_alloc(L->c->arena, (size_t)(nin + 1) * sizeof *in);
    for (int k = 0; k < nc; k++) {
        const NnNode *bo = &b.body->nodes[cin[k]];
        in[k] = ex[k].before >= 0 ? ex[k].before
                                  : nn_rule_fill(g, 0, bo->dtype, &bo->shape, s->loc);
    }
    for (int q = 0; q < nseq; q++)
        in[nc + q] = map[seqs[q]->src];
    for (int v = 0; v < b.ninv; v++)
        in[nc + nseq + v] = map[b.inv[v]];
    NnId loop = nn_ir_loop(g, in, nin, nc, nseq, hi - lo, false, b.body, s->loc);
    if (loop < 0)
        nn_internal_error(__FILE__, __LINE__, g->err);
    for (int k = 0; k < nc; k++)
        env_set(L, env, ex[k].name, v_tensor(nn_ir_loop_out(g, loop, k, s->loc)));
    for (Bind *bd = inner.head; bd; bd = bd->next) // numbers, names of layers, ...
        if (bd->v.kind != V_TENSOR && strcmp(bd->name, s->name) != 0)
            env_set(L, env, bd->name, bd->v);
    for (int j = 0; j < ny; j++) {
        // Stacked on axis 0; the step goes where `out[:, t]` put it.
        NnId id = nn_ir_loop_out(g, loop, nc + j, s->loc);
        int axis = ex[nc + j].axis, rank = g->nodes[id].shape.rank, perm[NN_MAX_RANK];
        for (int k = 0; k < rank; k++)
            perm[k] = k < axis ? k + 1 : k == axis ? 0 : k;
        if (axis > 0)
            id = nn_ir_transpose(g, id, perm, s->loc);
        NN_ASSERT(id >= 0);
        env_set(L, env, ex[nc + j].name, v_tensor(id));
    }
    return true;
}

bool exec_for(Lower *L, Env *env, const NnAst *s, const NnAst *owner)
{
    int64_t lo, hi;
    if (!loop_bound(L, env, s->a, &lo) || !loop_bound(L, env, s->b, &hi))
        return false;
    if (hi <= lo) {
        nn_error(&L->c->diags, user_loc(L, s->loc), "the loop %lld..%lld runs no steps",
                 (long long)lo, (long long)hi);
        return false;
    }
    if (loop_node(L, env, s, owner, lo, hi))
        return true;
    if (hi - lo > MAX_UNROLL - L->unrolled) {
        nn_error(&L->c->diags, user_loc(L, s->loc),
                 "the loop has %lld steps; loops are unrolled, and at most "
                 "%d steps in all are supported",
                 (long long)(hi - lo), MAX_UNROLL);
        return false;
    }
    Carried *carried = NULL;
    find_carried(L, env, &s->kids, &carried);
    // The body runs in its own scope so the loop variable stays inside;
    // everything else it assigns is copied out when the loop ends.
    Env inner = {.parent = env};
    LoopCtx lp = {s->name, lo, hi, lo, NULL, L->loop, false, false, 0, NULL};
    L->loop = &lp;
    bool ok = true;
    for (int64_t t = lo; ok && t < hi; t++) {
        lp.t = t;
        if (++L->unrolled > MAX_UNROLL) {
            nn_error(&L->c->diags, user_loc(L, s->loc),
                     "loops are unrolled, and these nested loops take more "
                     "than %d steps in all",
                     MAX_UNROLL);
            ok = false;
            break;
        }
        env_set(L, &inner, s->name, v_int(t));
        for (int i = 0; ok && i < s->kids.count; i++)
            ok = exec_stmt(L, &inner, s->kids.items[i], owner);
        for (Carried *c = carried; ok && c && t == lo; c = c->next) {
            Val now;
            env_lookup(&inner, c->name, &now);
            NnNode *a = vnode(L, c->before), *b = now.kind == V_TENSOR ? vnode(L, now) : NULL;
            if (b && a->dtype == b->dtype && nn_shape_eq(&a->shape, &b->shape))
                continue;
            char x[NN_TYPE_BUF], y[64];
            nn_error(&L->c->diags, user_loc(L, c->loc),
                     "'%s' is %s before the loop and %s after one iteration", c->name,
                     nn_type_str(L->g, a->dtype, &a->shape, x, sizeof x),
                     val_desc(L, now, y, sizeof y));
            ok = false;
        }
    }
    L->loop = lp.outer;
    if (!ok)
        return false;
    for (Bind *b = inner.head; b; b = b->next)
        if (strcmp(b->name, s->name) != 0)
            env_set(L, env, b->name, b->v);
    for (Collect *c = lp.collect; c; c = c->next) {
        if (c->n != hi - lo) {
            nn_error(&L->c->diags, user_loc(L, c->loc),
                     "'%s' is assigned in only some steps of the loop", c->name);
            return false;
        }
        NnId id = stack_ids(L, c->ids, c->n, c->axis, c->loc);
        if (id < 0)
            return false;
        env_set(L, env, c->name, v_tensor(id));
    }
    return true;
}
