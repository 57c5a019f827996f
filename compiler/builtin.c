// Builtins: the names the lowering implements in C, each turning into one or a
// few primitive IR ops (exp, sum, matmul helpers, dropout, random tensors...).
// Everything else (relu, softmax, dense, losses, optimizers) is .nn code in
// stdlib/. Arguments bind like .nn calls: positional, then by name.
#include "elab.h"

#include <stdlib.h>
#include <string.h>

typedef enum Kind { B_UNARY, B_BINARY, B_WHERE, B_REDUCE, B_ARGMAX, B_TAKE, B_ONEHOT,
                    B_RESHAPE, B_FLATTEN, B_TRANSPOSE, B_CAST, B_DROPOUT, B_RANDOM,
                    B_ZEROS_LIKE, B_TRAINING, B_CHECK, B_DIVIDES, B_IMAGE, B_FILL, B_SPLIT,
                    B_STACK, B_CLIP, B_GATHER } Kind;

typedef struct Builtin {
    const char *name;
    Kind kind;
    NnOp op;
    const char *formals[8]; // NULL-terminated
    int nreq;               // required leading formals
} Builtin;

static const Builtin builtins[] = {
    {"exp", B_UNARY, NN_OP_EXP, {"x"}, 1},
    {"log", B_UNARY, NN_OP_LOG, {"x"}, 1},
    {"sqrt", B_UNARY, NN_OP_SQRT, {"x"}, 1},
    {"tanh", B_UNARY, NN_OP_TANH, {"x"}, 1},
    {"sigmoid", B_UNARY, NN_OP_SIGMOID, {"x"}, 1},
    {"abs", B_UNARY, NN_OP_ABS, {"x"}, 1},
    {"sin", B_UNARY, NN_OP_SIN, {"x"}, 1},
    {"cos", B_UNARY, NN_OP_COS, {"x"}, 1},
    {"max", B_BINARY, NN_OP_MAX, {"a", "b"}, 2},
    {"min", B_BINARY, NN_OP_MIN, {"a", "b"}, 2},
    {"where", B_WHERE, NN_OP_SELECT, {"cond", "a", "b"}, 3},
    {"sum", B_REDUCE, NN_OP_REDUCE_SUM, {"x", "axis", "keep"}, 1},
    {"mean", B_REDUCE, NN_OP_REDUCE_MEAN, {"x", "axis", "keep"}, 1},
    {"amax", B_REDUCE, NN_OP_REDUCE_MAX, {"x", "axis", "keep"}, 1},
    {"logsumexp", B_REDUCE, NN_OP_LOGSUMEXP, {"x", "axis", "keep"}, 1},
    {"argmax", B_ARGMAX, NN_OP_ARGMAX, {"x", "axis"}, 1},
    {"take", B_TAKE, NN_OP_TAKE, {"x", "index", "axis"}, 2},
    {"onehot", B_ONEHOT, NN_OP_ONEHOT, {"index", "depth"}, 2},
    {"gather", B_GATHER, NN_OP_GATHER, {"table", "ids"}, 2},
    {"reshape", B_RESHAPE, NN_OP_RESHAPE, {"x", "shape"}, 2},
    {"flatten", B_FLATTEN, NN_OP_RESHAPE, {"x"}, 1},
    {"transpose", B_TRANSPOSE, NN_OP_TRANSPOSE, {"x", "perm"}, 1},
    {"f32", B_CAST, NN_OP_CAST, {"x"}, 1},
    {"f64", B_CAST, NN_OP_CAST, {"x"}, 1},
    {"i32", B_CAST, NN_OP_CAST, {"x"}, 1},
    {"float", B_CAST, NN_OP_CAST, {"x"}, 1},
    {"dropout", B_DROPOUT, NN_OP_DROPOUT, {"x", "rate"}, 2},
    {"uniform", B_RANDOM, NN_OP_RAND_UNIFORM, {"shape", "lo", "hi"}, 1},
    {"normal", B_RANDOM, NN_OP_RAND_NORMAL, {"shape", "mean", "std"}, 1},
    {"zeros_like", B_ZEROS_LIKE, NN_OP_BROADCAST, {"x"}, 1},
    {"zeros", B_FILL, NN_OP_BROADCAST, {"shape"}, 1},
    {"ones", B_FILL, NN_OP_BROADCAST, {"shape"}, 1},
    {"split", B_SPLIT, NN_OP_SLICE, {"x", "parts", "axis"}, 2},
    {"stack", B_STACK, NN_OP_CONCAT, {"xs", "axis"}, 1},
    {"training", B_TRAINING, NN_OP_COUNT, {NULL}, 0},
    {"conv", B_IMAGE, NN_OP_CONV2D, {"x", "w", "stride", "padding", "dilation", "groups"}, 2},
    {"conv_transpose", B_IMAGE, NN_OP_CONV2D_BWD_DATA,
     {"x", "w", "stride", "padding", "dilation", "groups", "outpad"}, 2},
    {"pool_max", B_IMAGE, NN_OP_MAX_POOL2D, {"x", "window", "stride", "padding"}, 2},
    {"pool_avg", B_IMAGE, NN_OP_AVG_POOL2D, {"x", "window", "stride", "padding"}, 2},
    {"pad", B_IMAGE, NN_OP_PAD, {"x", "lo", "hi", "value"}, 3},
    {"concat", B_IMAGE, NN_OP_CONCAT, {"xs", "axis"}, 1},
    {"check", B_CHECK, NN_OP_COUNT, {"cond", "message", "a", "b"}, 2},
    {"divides", B_DIVIDES, NN_OP_COUNT, {"a", "b"}, 2},
    {"clip_by_norm", B_CLIP, NN_OP_MIN, {"x", "max"}, 2},
};
#define NBUILTINS (int)(sizeof builtins / sizeof builtins[0])

static const char *inits[][2] = {
    {"zeros", "0"}, {"ones", "0"}, {"normal", "2"}, {"uniform", "2"}, {"glorot_uniform", "0"},
    {"glorot_normal", "0"}, {"he_uniform", "0"}, {"he_normal", "0"}, {"orthogonal", "1"},
};

bool init_known(const char *name, int *maxargs)
{
    for (size_t i = 0; i < sizeof inits / sizeof inits[0]; i++)
        if (strcmp(inits[i][0], name) == 0) {
            *maxargs = inits[i][1][0] - '0';
            return true;
        }
    return false;
}

bool nn_sema_is_builtin(const char *name)
{
    for (int i = 0; i < NBUILTINS; i++)
        if (strcmp(builtins[i].name, name) == 0)
            return true;
    return false;
}

const char *nn_builtin_name(int i) { return i < NBUILTINS ? builtins[i].name : NULL; }

static bool bind(Lower *L, const Builtin *b, Arg *args, int nargs, NnLoc loc, Val *v, bool *set)
{
    int nf = 0, pos = 0;
    while (nf < 8 && b->formals[nf])
        nf++;
    for (int i = 0; i < nargs; i++) {
        int k = -1;
        if (!args[i].name)
            k = pos++;
        else
            for (int j = 0; j < nf; j++)
                if (strcmp(b->formals[j], args[i].name) == 0)
                    k = j;
        if (k < 0 || k >= nf) {
            if (args[i].name)
                nn_error(&L->c->diags, args[i].loc.src ? args[i].loc : loc,
                         "'%s' has no parameter '%s'", b->name, args[i].name);
            else
                nn_error(&L->c->diags, loc, "'%s' takes at most %d argument%s", b->name, nf,
                         nf == 1 ? "" : "s");
            return false;
        }
        v[k] = args[i].v;
        set[k] = true;
    }
    for (int k = 0; k < b->nreq; k++)
        if (!set[k]) {
            nn_error(&L->c->diags, loc, "'%s' is missing argument '%s'", b->name, b->formals[k]);
            return false;
        }
    return true;
}

static bool need_tensor(Lower *L, const Builtin *b, Val v, NnLoc loc)
{
    if (v.kind == V_TENSOR)
        return true;
    char d[64];
    nn_error(&L->c->diags, loc, "'%s' needs a tensor, got %s", b->name, val_desc(L, v, d, 64));
    return false;
}

// Axis argument: int or list of ints, negative counts from the end.
static bool axes_of(Lower *L, Val v, bool set, int rank, uint32_t *axes, NnLoc loc)
{
    if (!set) {
        *axes = rank ? (1u << rank) - 1 : 0;
        return true;
    }
    int n = v.kind == V_LIST ? v.list->count : 1;
    *axes = 0;
    for (int i = 0; i < n; i++) {
        Val a = v.kind == V_LIST ? v.list->items[i] : v;
        if (a.kind != V_NUM || !a.is_int || a.dim < -rank || a.dim >= rank) {
            nn_error(&L->c->diags, loc, "axis must be an integer in [-%d, %d)", rank, rank);
            return false;
        }
        *axes |= 1u << (a.dim < 0 ? a.dim + rank : a.dim);
    }
    return true;
}

static bool shape_of(Lower *L, Val v, NnShape *s, NnLoc loc)
{
    if (v.kind != V_LIST || v.list->count > NN_MAX_RANK) {
        nn_error(&L->c->diags, loc, "expected a shape such as [N, 784]");
        return false;
    }
    s->rank = v.list->count;
    for (int i = 0; i < s->rank; i++) {
        Val d = v.list->items[i];
        if (d.kind != V_NUM || !d.is_int || (!d.sym && d.dim < 0)) {
            nn_error(&L->c->diags, loc, "shape dimensions must be integers");
            return false;
        }
        s->dim[i] = d.dim;
    }
    return true;
}

static double num_or(Val v, bool set, double dflt) { return set && v.kind == V_NUM ? v.num : dflt; }

static Val random_tensor(Lower *L, const Builtin *b, Val *v, bool *set, NnLoc loc)
{
    NnAttr a = {0};
    if (!shape_of(L, v[0], &a.shape, loc))
        return v_none();
    a.dtype = NN_DT_F32;
    a.seed = L->seed * 1000003u + (uint64_t)++L->nrandom;
    NnId step = L->step >= 0 ? L->step : nn_ir_const(L->g, 0, NN_DT_F32, loc);
    NnId r = checked(L, nn_ir_add(L->g, b->op, &step, 1, &a, loc), loc);
    bool unif = b->op == NN_OP_RAND_UNIFORM;
    double p = num_or(v[1], set[1], 0), q = num_or(v[2], set[2], 1);
    double scale = unif ? q - p : q, shift = p;
    if (r >= 0 && scale != 1)
        r = nn_ir_binary(L->g, NN_OP_MUL, r, nn_ir_const(L->g, scale, NN_DT_F32, loc), loc);
    if (r >= 0 && shift != 0)
        r = nn_ir_binary(L->g, NN_OP_ADD, r, nn_ir_const(L->g, shift, NN_DT_F32, loc), loc);
    return v_tensor(r);
}

// The axis argument of split/stack: an integer in [-rank, rank), 0 if absent.
static bool one_axis(Lower *L, Val v, bool set, int rank, int *axis, NnLoc loc)
{
    uint32_t ax;
    if (!axes_of(L, set ? v : v_int(0), true, rank, &ax, loc))
        return false;
    if (ax & (ax - 1)) {
        nn_error(&L->c->diags, loc, "axis must be one integer");
        return false;
    }
    *axis = __builtin_ctz(ax);
    return true;
}

// split(x, n | [sizes], axis = 0): a tuple of slices along one axis.
static Val split_tensor(Lower *L, Val *v, bool *set, NnLoc loc)
{
    NnNode *x = vnode(L, v[0]);
    int axis;
    if (!one_axis(L, v[2], set[2], x->shape.rank, &axis, loc))
        return v_none();
    int64_t d = x->shape.dim[axis], sizes[64];
    int n = 0;
    char t[128];
    if (d < 0) {
        nn_error(&L->c->diags, loc, "split: axis %d of %s is not a fixed size", axis,
                 nn_type_str(L->g, x->dtype, &x->shape, t, sizeof t));
        return v_none();
    }
    if (v[1].kind == V_NUM && v[1].is_int && !v[1].sym && v[1].dim > 0 && v[1].dim <= 64) {
        n = (int)v[1].dim;
        if (d % n) {
            nn_error(&L->c->diags, loc, "split: axis %d of %s (size %lld) does not divide into %d "
                     "equal parts", axis, nn_type_str(L->g, x->dtype, &x->shape, t, sizeof t),
                     (long long)d, n);
            return v_none();
        }
        for (int i = 0; i < n; i++)
            sizes[i] = d / n;
    } else if (v[1].kind == V_LIST && v[1].list->count > 0 && v[1].list->count <= 64) {
        int64_t sum = 0;
        for (n = 0; n < v[1].list->count; n++) {
            Val p = v[1].list->items[n];
            if (p.kind != V_NUM || !p.is_int || p.sym || p.dim <= 0) {
                nn_error(&L->c->diags, loc, "split: part sizes must be positive integers");
                return v_none();
            }
            sum += sizes[n] = p.dim;
        }
        if (sum != d) {
            nn_error(&L->c->diags, loc, "split: parts add up to %lld but axis %d of %s has %lld",
                     (long long)sum, axis, nn_type_str(L->g, x->dtype, &x->shape, t, sizeof t),
                     (long long)d);
            return v_none();
        }
    } else {
        nn_error(&L->c->diags, loc, "split: parts must be a count from 1 to 64 or a list of sizes");
        return v_none();
    }
    VList *l = nn_arena_alloc(L->c->arena, sizeof *l);
    l->items = nn_arena_alloc(L->c->arena, (size_t)n * sizeof *l->items);
    l->count = n;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        NnId id = checked(L, nn_ir_slice(L->g, v[0].id, axis, at, at + sizes[i], 1, loc), loc);
        if (id < 0)
            return v_none();
        l->items[i] = v_tensor(id);
        at += sizes[i];
    }
    return (Val){.kind = V_LIST, .id = -1, .list = l};
}

// stack(xs, axis = 0): same-typed tensors joined along a new axis.
static Val stack(Lower *L, const Builtin *b, Val *v, bool *set, NnLoc loc)
{
    if (v[0].kind != V_LIST || v[0].list->count == 0) {
        nn_error(&L->c->diags, loc, "'%s' needs a non-empty list of tensors, like [a, b]", b->name);
        return v_none();
    }
    int n = v[0].list->count;
    NnId *ids = nn_arena_alloc(L->c->arena, (size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) {
        if (!need_tensor(L, b, v[0].list->items[i], loc))
            return v_none();
        ids[i] = v[0].list->items[i].id;
    }
    NnNode *x = nn_node(L->g, ids[0]);
    int axis;
    if (!one_axis(L, v[1], set[1], x->shape.rank + 1, &axis, loc))
        return v_none();
    for (int i = 1; i < n; i++) {
        NnNode *y = nn_node(L->g, ids[i]);
        if (y->dtype != x->dtype || !nn_shape_eq(&y->shape, &x->shape)) {
            char s[128], t[128];
            nn_error(&L->c->diags, loc, "stack: item %d is %s but item 0 is %s", i,
                     nn_type_str(L->g, y->dtype, &y->shape, s, sizeof s),
                     nn_type_str(L->g, x->dtype, &x->shape, t, sizeof t));
            return v_none();
        }
    }
    return v_tensor(stack_ids(L, ids, n, axis, loc));
}

// check(cond, "message {} {}", a, b): a library layer's own precondition. A
// false cond is reported at the user's call of the layer, naming it, with each
// {} replaced by a and b ("conv2d needs groups = 4 to divide ...").
static Val check(Lower *L, Val *v, bool *set, NnLoc loc)
{
    if (v[0].kind != V_BOOL || v[1].kind != V_STR) {
        nn_error(&L->c->diags, loc, "check takes a compile-time condition and a message");
        return v_none();
    }
    if (v[0].num)
        return v[0];
    char msg[512], d[96];
    size_t len = 0;
    int next = 2;
    for (const char *p = v[1].str; *p && len + 1 < sizeof msg; p++) {
        if (p[0] == '{' && p[1] == '}' && next < 4 && set[next]) {
            Val a = v[next++];
            const char *s = a.kind == V_NUM && !a.sym ? (snprintf(d, sizeof d, "%g", a.num), d)
                                                     : val_desc(L, a, d, sizeof d);
            len += (size_t)snprintf(msg + len, sizeof msg - len, "%s", s);
            p++;
        } else
            msg[len++] = *p;
        if (len >= sizeof msg)
            len = sizeof msg - 1;
    }
    msg[len] = 0;
    nn_error(&L->c->diags, user_loc(L, loc), "%s %s", L->user_call ? L->user_call : "check", msg);
    return v_none();
}

Val call_builtin(Lower *L, const char *name, Arg *args, int nargs, NnLoc loc)
{
    const Builtin *b = NULL;
    for (int i = 0; i < NBUILTINS && !b; i++)
        if (strcmp(builtins[i].name, name) == 0)
            b = &builtins[i];
    NN_ASSERT(b);
    Val v[8] = {0};
    bool set[8] = {0};
    if (!bind(L, b, args, nargs, loc, v, set))
        return v_none();
    if (b->kind == B_IMAGE)
        return conv_builtin(L, name, v, set, loc);
    NnGraph *g = L->g;
    NnAttr a = {0};
    if (b->kind == B_RANDOM)
        return random_tensor(L, b, v, set, loc);
    if (b->kind == B_STACK)
        return stack(L, b, v, set, loc);
    if (b->kind == B_FILL) {
        if (!shape_of(L, v[0], &a.shape, loc))
            return v_none();
        NnId k = nn_ir_const(g, name[0] == 'o' ? 1 : 0, NN_DT_F32, loc);
        return v_tensor(checked(L, nn_ir_broadcast(g, k, &a.shape, loc), loc));
    }
    if (b->kind == B_TRAINING)
        return (Val){.kind = V_BOOL, .id = -1, .num = L->training};
    if (b->kind == B_CHECK)
        return check(L, v, set, loc);
    if (b->kind == B_DIVIDES) {
        for (int i = 0; i < 2; i++)
            if (v[i].kind != V_NUM || !v[i].is_int || v[i].sym) {
                char d[64];
                nn_error(&L->c->diags, loc, "'divides' needs two integers, got %s",
                         val_desc(L, v[i], d, 64));
                return v_none();
            }
        return (Val){.kind = V_BOOL, .id = -1, .num = v[0].dim != 0 && v[1].dim % v[0].dim == 0};
    }
    if (b->kind == B_WHERE && v[0].kind == V_BOOL)
        return v[0].num ? v[1] : v[2]; // a compile-time choice: where(training(), a, b)
    if (b->kind == B_BINARY || b->kind == B_WHERE) {
        int n = b->kind == B_WHERE ? 3 : 2;
        NnDType dt = NN_DT_F32;
        for (int i = n - 1; i >= 0; i--)
            if (v[i].kind == V_TENSOR)
                dt = vnode(L, v[i])->dtype;
        NnId in[3];
        for (int i = 0; i < n; i++)
            if ((in[i] = as_tensor(L, v[i], dt, loc)) < 0)
                return v_none();
        return v_tensor(checked(L, nn_ir_add(g, b->op, in, n, NULL, loc), loc));
    }
    if (b->kind == B_CLIP) {
        // x * min(1, max / grad_norm). max = 0 turns clipping off at compile
        // time, and grad_norm (and the work of computing it) is never built.
        if (v[1].kind != V_NUM || v[1].num < 0) {
            nn_error(&L->c->diags, loc, "clip_by_norm: max must be a number >= 0 (0: no clipping)");
            return v_none();
        }
        if (v[1].num == 0 || !need_tensor(L, b, v[0], loc))
            return v[1].num == 0 ? v[0] : v_none();
        Val nv;
        if (!L->resolve || !L->resolve(L->resolve_ctx, "grad_norm", loc, &nv)) {
            nn_error(&L->c->diags, loc, "clip_by_norm works in optimizer bodies only");
            return v_none();
        }
        NnDType dt = vnode(L, v[0])->dtype;
        NnId norm = as_tensor(L, nv, dt, loc), one = nn_ir_const(g, 1, dt, loc);
        if (norm < 0)
            return v_none();
        NnId r = nn_ir_binary(g, NN_OP_DIV, nn_ir_const(g, v[1].num, dt, loc), norm, loc);
        NnId k = checked(L, nn_ir_binary(g, NN_OP_MIN, one, r, loc), loc);
        return k < 0 ? v_none() : v_tensor(checked(L, nn_ir_binary(g, NN_OP_MUL, v[0].id, k,
                                                                    loc), loc));
    }
    if (b->kind == B_UNARY && v[0].kind == V_NUM)
        v[0] = v_tensor(as_tensor(L, v[0], NN_DT_F32, loc));
    if (!need_tensor(L, b, v[0], loc))
        return v_none();
    NnNode *x = vnode(L, v[0]);
    int rank = x->shape.rank;
    switch (b->kind) {
    case B_UNARY: return v_tensor(checked(L, nn_ir_unary(g, b->op, v[0].id, loc), loc));
    case B_SPLIT: return split_tensor(L, v, set, loc);
    case B_REDUCE: {
        if (!axes_of(L, v[1], set[1], rank, &a.axes, loc))
            return v_none();
        a.keep = set[2] && v[2].num != 0;
        return v_tensor(checked(L, nn_ir_add(g, b->op, &v[0].id, 1, &a, loc), loc));
    }
    case B_ARGMAX:
    case B_TAKE: {
        uint32_t ax;
        Val axv = b->kind == B_TAKE ? v[2] : v[1];
        bool axset = b->kind == B_TAKE ? set[2] : set[1];
        if (!axset)
            axv = v_int(b->kind == B_TAKE ? 1 : -1), axset = true;
        if (!axes_of(L, axv, axset, rank, &ax, loc))
            return v_none();
        a.axis = __builtin_ctz(ax);
        if (b->kind == B_ARGMAX)
            return v_tensor(checked(L, nn_ir_add(g, b->op, &v[0].id, 1, &a, loc), loc));
        if (!need_tensor(L, b, v[1], loc))
            return v_none();
        NnId in[2] = {v[0].id, v[1].id};
        return v_tensor(checked(L, nn_ir_add(g, b->op, in, 2, &a, loc), loc));
    }
    case B_GATHER: {
        if (!need_tensor(L, b, v[1], loc))
            return v_none();
        NnId in[2] = {v[0].id, v[1].id};
        return v_tensor(checked(L, nn_ir_add(g, b->op, in, 2, NULL, loc), loc));
    }
    case B_ONEHOT:
        if (v[1].kind != V_NUM || !v[1].is_int || v[1].dim <= 0) {
            nn_error(&L->c->diags, loc, "onehot depth must be a positive integer");
            return v_none();
        }
        a.depth = v[1].dim;
        return v_tensor(checked(L, nn_ir_add(g, b->op, &v[0].id, 1, &a, loc), loc));
    case B_RESHAPE:
        if (!shape_of(L, v[1], &a.shape, loc))
            return v_none();
        return v_tensor(checked(L, nn_ir_reshape(g, v[0].id, &a.shape, loc), loc));
    case B_FLATTEN: {
        a.shape.rank = rank < 2 ? rank : 2;
        a.shape.dim[0] = rank ? x->shape.dim[0] : 1;
        if (rank >= 2) {
            a.shape.dim[1] = 1;
            for (int i = 1; i < rank; i++) {
                if (x->shape.dim[i] < 0) {
                    nn_error(&L->c->diags, loc, "flatten: only the first dimension may be symbolic");
                    return v_none();
                }
                a.shape.dim[1] *= x->shape.dim[i];
            }
        }
        return v_tensor(checked(L, nn_ir_reshape(g, v[0].id, &a.shape, loc), loc));
    }
    case B_TRANSPOSE: {
        int perm[NN_MAX_RANK] = {0};
        for (int i = 0; i < rank; i++)
            perm[i] = rank - 1 - i;
        if (set[1]) {
            if (v[1].kind != V_LIST || v[1].list->count != rank) {
                nn_error(&L->c->diags, loc, "transpose: perm must list all %d axes", rank);
                return v_none();
            }
            for (int i = 0; i < rank; i++)
                perm[i] = (int)v[1].list->items[i].dim;
        }
        return v_tensor(checked(L, nn_ir_transpose(g, v[0].id, perm, loc), loc));
    }
    case B_CAST: {
        NnDType dt = name[0] == 'i' ? NN_DT_I32 : strcmp(name, "f64") == 0 ? NN_DT_F64 : NN_DT_F32;
        return v_tensor(checked(L, nn_ir_cast(g, v[0].id, dt, loc), loc));
    }
    case B_DROPOUT: {
        if (v[1].kind != V_NUM || v[1].num < 0 || v[1].num >= 1) {
            nn_error(&L->c->diags, loc, "dropout rate must be a number in [0, 1)");
            return v_none();
        }
        if (!L->training || L->step < 0)
            return v[0];
        // Each site's rate is a run-time hyperparameter starting at the
        // script's number (or --set's), so changing it compiles nothing; a
        // site written with rate 0 exists too, to be raised later.
        int site = ++L->ndropout, k;
        double rate = v[1].num;
        for (int i = 0; i < L->ndrop_sets; i++)
            if (nn_train_dropout_key(L->drop_sets[i].key, &k) && (k == 0 || k == site)) {
                rate = strtod(L->drop_sets[i].value, NULL);
                L->drop_sets[i].used = true;
            }
        const char *hname = nn_arena_printf(L->c->arena, "dropout%d", site);
        NnId r = hyper_var(L, L->hprefix ? L->hprefix : "", hname, rate, loc);
        if (r < 0)
            return v_none();
        a.seed = L->seed * 1000003u + (uint64_t)++L->nrandom;
        NnId in[3] = {v[0].id, L->step, r};
        return v_tensor(checked(L, nn_ir_add(g, NN_OP_DROPOUT, in, 3, &a, loc), loc));
    }
    case B_ZEROS_LIKE: {
        NnId z = nn_ir_const(g, 0, x->dtype, loc);
        return v_tensor(checked(L, nn_ir_broadcast(g, z, &x->shape, loc), loc));
    }
    default: NN_UNREACHABLE();
    }
}
