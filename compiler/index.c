// Indexing, indexed assignment, tuples and `for` loops in the elaborator.
// Indices are compile-time integers (a loop variable is one: loops are
// unrolled here, one copy of the body per step), so every index is checked
// against its dimension before anything runs and becomes SLICE / RESHAPE /
// CONCAT nodes. `x[i, a:b] = v` rebuilds x from slices around v; inside a loop,
// `out[:, t] = h` into a name not bound before the loop collects one value per
// step and binds `out` to their stack when the loop ends. Errors inside
// library layers point at the user's call (user_loc).
#include "elab.h"

#include <string.h>

#include "op_common.h"
#include "rules.h"

// Loops are refused past this many steps in all (nested loops multiply):
// each step is a copy of the body.
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

// Resolves the indices of `x[kids]` against x's shape into one Range per axis.
static bool resolve(Lower *L, Env *env, NnNode *x, const NnAstList *kids, NnLoc loc, Range *r)
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
    if (!resolve(L, env, xn, &e->kids, e->loc, r))
        return v_none();
    NnShape s = xn->shape, kept, region;
    region_shapes(&s, r, &kept, &region);
    NnId id = x.id;
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

// A name built step by step inside a loop (`out[:, t] = h`).
typedef struct Collect {
    const char *name;
    int axis;
    NnId *ids; // one per step so far
    int n;
    NnLoc loc;
    struct Collect *next;
} Collect;

struct LoopCtx {
    const char *var;
    int64_t lo, hi;
    int64_t t; // the step being elaborated
    Collect *collect;
    struct LoopCtx *outer;
};

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
    if (!resolve(L, env, xn, &target->kids, target->loc, r))
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
    LoopCtx lp = {s->name, lo, hi, lo, NULL, L->loop};
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
