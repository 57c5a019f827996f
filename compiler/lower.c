// The elaborator: evaluates AST expressions into IR nodes (tensors) or
// compile-time values (numbers, dims, lists, declarations), inlining every
// fn/layer/loss/model call. Shape rules run as nodes are built, so a shape
// error is reported at the expression that caused it, with both types.
// Invariant: a function returning V_NONE has already reported an error.
#include "elab.h"

#include <math.h>
#include <string.h>

void lower_init(Lower *L, NnCtx *c, const NnProgram *p, NnGraph *g)
{
    memset(L, 0, sizeof *L);
    L->c = c;
    L->prog = p;
    L->g = g;
    L->step = -1;
}

Val v_none(void) { return (Val){.kind = V_NONE, .id = -1}; }
Val v_tensor(NnId id) { return id < 0 ? v_none() : (Val){.kind = V_TENSOR, .id = id}; }
Val v_num(double x) { return v_real(x, (float)x); }
Val v_real(double x, float f) { return (Val){.kind = V_NUM, .id = -1, .num = x, .fnum = f}; }

Val v_int(int64_t x)
{
    Val v = v_num((double)x);
    v.is_int = true;
    v.dim = x;
    return v;
}


NnNode *vnode(Lower *L, Val v) { return nn_node(L->g, v.id); }

static Bind **env_slot(const Env *env, const char *name)
{
    unsigned mask = (unsigned)env->nslots - 1;
    for (unsigned i = nn_sema_hash(name) & mask;; i = (i + 1) & mask)
        if (!env->slots[i] || strcmp(env->slots[i]->name, name) == 0)
            return &env->slots[i];
}

// Rebuilds the hash from the list, oldest binding first so the newest wins.
static void env_rehash(Lower *L, Env *env, int nslots)
{
    env->slots = nn_arena_alloc(L->c->arena, (size_t)nslots * sizeof *env->slots);
    memset(env->slots, 0, (size_t)nslots * sizeof *env->slots);
    env->nslots = nslots;
    Bind **all = nn_arena_alloc(L->c->arena, (size_t)env->nbinds * sizeof *all);
    int n = 0;
    for (Bind *b = env->head; b && n < env->nbinds; b = b->next)
        all[n++] = b;
    while (n > 0) {
        Bind *b = all[--n];
        *env_slot(env, b->name) = b;
    }
}

void env_bind(Lower *L, Env *env, const char *name, Val v)
{
    Bind *b = nn_arena_alloc(L->c->arena, sizeof *b);
    b->name = name;
    b->v = v;
    b->next = env->head;
    env->head = b;
    env->nbinds++;
    if (env->slots && 2 * env->nbinds <= env->nslots)
        *env_slot(env, name) = b;
    else if (env->nbinds > 8)
        env_rehash(L, env, env->nslots ? env->nslots * 2 : 32);
}

void env_set(Lower *L, Env *env, const char *name, Val v)
{
    Bind *b = env->slots ? *env_slot(env, name) : env->head;
    while (!env->slots && b && strcmp(b->name, name) != 0)
        b = b->next;
    if (b)
        b->v = v;
    else
        env_bind(L, env, name, v);
}

bool env_lookup(Env *env, const char *name, Val *out)
{
    for (; env; env = env->parent) {
        Bind *b = env->head;
        if (env->slots)
            b = *env_slot(env, name);
        else
            while (b && strcmp(b->name, name) != 0)
                b = b->next;
        if (b) {
            *out = b->v;
            return true;
        }
    }
    return false;
}

NnId checked(Lower *L, NnId id, NnLoc loc)
{
    if (id < 0 && strcmp(L->g->err, "operand failed") != 0)
        nn_error(&L->c->diags, loc, "%s", L->g->err);
    return id;
}

const char *val_desc(Lower *L, Val v, char *buf, size_t n)
{
    switch (v.kind) {
    case V_TENSOR: {
        NnNode *nd = vnode(L, v);
        return nn_type_str(L->g, nd->dtype, &nd->shape, buf, n);
    }
    case V_NUM:
        if (v.sym)
            snprintf(buf, n, "dimension %s", L->g->syms[-v.dim - 1]);
        else
            snprintf(buf, n, "number %g", v.num);
        return buf;
    case V_BOOL: return "a bool";
    case V_STR: return "a string";
    case V_DECL: snprintf(buf, n, "'%s'", v.decl->name); return buf;
    case V_BUILTIN: snprintf(buf, n, "builtin '%s'", v.str); return buf;
    case V_BOUND: snprintf(buf, n, "bound layer '%s'", v.bound->decl->name); return buf;
    case V_LIST: return "a list";
    default: return "nothing";
    }
}

NnId as_tensor(Lower *L, Val v, NnDType dt, NnLoc loc)
{
    if (v.kind == V_TENSOR)
        return v.id;
    // An f32 CONST holds (float)num at run time; it needs fnum only where f32
    // arithmetic came out differently (keeps printed constants short: 1e-07).
    if (v.kind == V_NUM && !v.sym)
        return nn_ir_const(L->g, dt == NN_DT_F32 && (float)v.num != v.fnum ? v.fnum : v.num, dt,
                           loc);
    if (v.kind == V_BOOL)
        return nn_ir_const(L->g, v.num, dt, loc);
    if (v.kind != V_NONE) {
        char b[64];
        nn_error(&L->c->diags, loc, "expected a tensor or a number, got %s", val_desc(L, v, b, 64));
    }
    return -1;
}

NnId make_var(Lower *L, NnOp op, const char *name, NnDType dt, const NnShape *s, const char *init,
              const double *args, int nargs, NnLoc loc)
{
    for (int i = 0; i < L->nvars; i++)
        if (strcmp(L->vars[i].name, name) == 0) {
            if (!nn_shape_eq(&L->vars[i].shape, s)) {
                char a[64], b[64];
                nn_error(&L->c->diags, user_loc(L, loc), "'%s' is declared again with a "
                         "different shape: %s here, %s before", name,
                         nn_type_str(L->g, dt, s, a, 64),
                         nn_type_str(L->g, L->vars[i].dtype, &L->vars[i].shape, b, 64));
                return -1;
            }
            return L->var_ids[i];
        }
    if (L->nvars == L->varcap) {
        int cap = L->varcap ? L->varcap * 2 : 32;
        NnParamInit *v = nn_arena_alloc(L->c->arena, (size_t)cap * sizeof *v);
        NnId *ids = nn_arena_alloc(L->c->arena, (size_t)cap * sizeof *ids);
        if (L->nvars) {
            memcpy(v, L->vars, (size_t)L->nvars * sizeof *v);
            memcpy(ids, L->var_ids, (size_t)L->nvars * sizeof *ids);
        }
        L->vars = v;
        L->var_ids = ids;
        L->varcap = cap;
    }
    NnId id = checked(L, nn_ir_source(L->g, op, name, dt, s, loc), loc);
    if (id < 0)
        return -1;
    NnParamInit *pi = &L->vars[L->nvars];
    pi->name = nn_arena_strdup(L->c->arena, name);
    pi->init = init;
    for (int i = 0; i < nargs && i < 4; i++)
        pi->args[i] = args[i];
    pi->nargs = nargs < 4 ? nargs : 4;
    pi->dtype = dt;
    pi->shape = *s;
    pi->trainable = op == NN_OP_PARAM;
    pi->loc = loc;
    L->var_ids[L->nvars++] = id;
    return id;
}

static bool lookup(Lower *L, Env *env, const char *name, NnLoc loc, Val *out)
{
    if (env_lookup(env, name, out))
        return true;
    const NnDecl *d = nn_sema_find(L->prog, name);
    if (d) {
        *out = (Val){.kind = V_DECL, .id = -1, .decl = d->ast};
        return true;
    }
    if (nn_sema_is_builtin(name)) {
        *out = (Val){.kind = V_BUILTIN, .id = -1, .str = name};
        return true;
    }
    if (L->resolve && L->resolve(L->resolve_ctx, name, loc, out))
        return true;
    const char *near = nn_diags_full(&L->c->diags)
                     ? NULL : nn_sema_suggest(L->prog, name, L->resolve_names, L->nresolve_names);
    nn_error(&L->c->diags, loc, "unknown name '%s'%s", name, nn_sema_hint(L->c, near));
    *out = v_none();
    return false;
}

static NnOp binop(NnAstOp op)
{
    switch (op) {
    case NN_AOP_ADD: return NN_OP_ADD;
    case NN_AOP_SUB: return NN_OP_SUB;
    case NN_AOP_MUL: return NN_OP_MUL;
    case NN_AOP_DIV: return NN_OP_DIV;
    case NN_AOP_POW: return NN_OP_POW;
    case NN_AOP_MATMUL: return NN_OP_MATMUL;
    case NN_AOP_EQ: return NN_OP_EQ;
    case NN_AOP_NE: return NN_OP_NE;
    case NN_AOP_LT: return NN_OP_LT;
    case NN_AOP_LE: return NN_OP_LE;
    case NN_AOP_GT: return NN_OP_GT;
    case NN_AOP_GE: return NN_OP_GE;
    default: return NN_OP_COUNT;
    }
}

// The f32 result of an arithmetic operator, as the run time would compute it
// on f32 operands: + - * / are exact in double then rounded once; pow is powf.
static float fold_f32(NnAstOp op, float x, float y)
{
    switch (op) {
    case NN_AOP_ADD: return (float)((double)x + y);
    case NN_AOP_SUB: return (float)((double)x - y);
    case NN_AOP_MUL: return (float)((double)x * y);
    case NN_AOP_DIV: return (float)((double)x / y);
    default: return powf(x, y);
    }
}

// Folds an operator on two compile-time numbers. Symbolic dims only compare.
// Each result also carries its f32 evaluation, so that `1 - beta2` in an f32
// graph equals 1 - beta2 computed in f32 at run time (Adam's bias correction
// mixes both forms).
static Val fold_nums(Lower *L, const NnAst *e, Val a, Val b)
{
    if ((a.sym || b.sym) && e->op != NN_AOP_EQ && e->op != NN_AOP_NE) {
        nn_error(&L->c->diags, e->loc, "arithmetic on the batch dimension is not supported");
        return v_none();
    }
    bool ints = a.is_int && b.is_int;
    double x = a.num, y = b.num, r;
    switch (e->op) {
    case NN_AOP_ADD: r = x + y; break;
    case NN_AOP_SUB: r = x - y; break;
    case NN_AOP_MUL: r = x * y; break;
    case NN_AOP_DIV: r = x / y; ints = ints && y != 0 && a.dim % b.dim == 0; break;
    case NN_AOP_POW: r = pow(x, y); ints = ints && y >= 0; break;
    case NN_AOP_EQ: return (Val){.kind = V_BOOL, .num = a.sym || b.sym ? a.dim == b.dim : x == y};
    case NN_AOP_NE: return (Val){.kind = V_BOOL, .num = a.sym || b.sym ? a.dim != b.dim : x != y};
    case NN_AOP_LT: return (Val){.kind = V_BOOL, .num = x < y};
    case NN_AOP_LE: return (Val){.kind = V_BOOL, .num = x <= y};
    case NN_AOP_GT: return (Val){.kind = V_BOOL, .num = x > y};
    case NN_AOP_GE: return (Val){.kind = V_BOOL, .num = x >= y};
    case NN_AOP_MATMUL:
        nn_error(&L->c->diags, e->loc, "'@' needs two tensors, got two numbers");
        return v_none();
    default:
        nn_error(&L->c->diags, e->loc, "'%s' needs bools", nn_ast_op_str(e->op));
        return v_none();
    }
    if (ints && fabs(r) < 9e15)
        return v_int((int64_t)r);
    return v_real(r, fold_f32(e->op, a.fnum, b.fnum));
}

static Val binary(Lower *L, Env *env, const NnAst *e)
{
    Val a = eval(L, env, e->a), b = eval(L, env, e->b);
    if (a.kind == V_NONE || b.kind == V_NONE)
        return v_none();
    if ((e->op == NN_AOP_AND || e->op == NN_AOP_OR) && a.kind == V_BOOL && b.kind == V_BOOL)
        return (Val){.kind = V_BOOL, .num = e->op == NN_AOP_AND ? (a.num && b.num) : (a.num || b.num)};
    if (a.kind == V_NUM && b.kind == V_NUM)
        return fold_nums(L, e, a, b);
    NnOp op = binop(e->op);
    if (op == NN_OP_COUNT) {
        nn_error(&L->c->diags, e->loc, "'%s' is not defined on tensors", nn_ast_op_str(e->op));
        return v_none();
    }
    NnDType dt = a.kind == V_TENSOR ? vnode(L, a)->dtype
               : b.kind == V_TENSOR ? vnode(L, b)->dtype : NN_DT_F32;
    NnId x = as_tensor(L, a, dt, e->a->loc), y = as_tensor(L, b, dt, e->b->loc);
    if (x < 0 || y < 0)
        return v_none();
    if (op == NN_OP_MATMUL)
        return v_tensor(checked(L, nn_ir_matmul(L->g, x, y, false, false, e->loc), e->loc));
    return v_tensor(checked(L, nn_ir_binary(L->g, op, x, y, e->loc), e->loc));
}

static Val unary(Lower *L, Env *env, const NnAst *e)
{
    Val a = eval(L, env, e->a);
    if (a.kind == V_NONE)
        return a;
    if (e->op == NN_AOP_NOT) {
        if (a.kind == V_BOOL)
            return (Val){.kind = V_BOOL, .num = !a.num};
        nn_error(&L->c->diags, e->loc, "'!' needs a bool");
        return v_none();
    }
    if (a.kind == V_NUM && !a.sym)
        return a.is_int ? v_int(-a.dim) : v_real(-a.num, -a.fnum);
    if (a.kind != V_TENSOR) {
        char b[64];
        nn_error(&L->c->diags, e->loc, "cannot negate %s", val_desc(L, a, b, 64));
        return v_none();
    }
    return v_tensor(checked(L, nn_ir_unary(L->g, NN_OP_NEG, a.id, e->loc), e->loc));
}

bool eval_args(Lower *L, Env *env, const NnAstList *kids, const Val *first, Arg **out, int *n)
{
    int cap = kids->count + 1, k = 0;
    Arg *args = nn_arena_alloc(L->c->arena, (size_t)cap * sizeof *args);
    bool ok = true;
    if (first)
        args[k++] = (Arg){.v = *first};
    for (int i = 0; i < kids->count; i++) {
        const NnAst *a = kids->items[i];
        if (a->kind == NN_AST_ARG)
            args[k] = (Arg){.name = a->name, .v = eval(L, env, a->a), .loc = a->loc};
        else
            args[k] = (Arg){.v = eval(L, env, a), .loc = a->loc};
        // A bare data field as an argument: a type error notes where it is made.
        const NnAst *e = a->kind == NN_AST_ARG ? a->a : a;
        Val shadow;
        if (L->origin && e && e->kind == NN_AST_NAME && !env_lookup(env, e->name, &shadow)) {
            args[k].from = L->origin(L->resolve_ctx, e->name);
            args[k].field = e->name;
        }
        ok = ok && args[k].v.kind != V_NONE;
        k++;
    }
    *out = args;
    *n = k;
    return ok;
}

static Val list(Lower *L, Env *env, const NnAst *e)
{
    VList *l = nn_arena_alloc(L->c->arena, sizeof *l);
    l->items = nn_arena_alloc(L->c->arena, (size_t)(e->kids.count + 1) * sizeof(Val));
    for (int i = 0; i < e->kids.count; i++) {
        l->items[i] = eval(L, env, e->kids.items[i]);
        if (l->items[i].kind == V_NONE)
            return v_none();
    }
    l->count = e->kids.count;
    return (Val){.kind = V_LIST, .id = -1, .list = l};
}

static Val call(Lower *L, Env *env, const NnAst *callee_ast, const NnAstList *kids, const Val *first,
                NnLoc loc)
{
    const char *bind_name = L->bind_name;
    L->bind_name = NULL;
    Val callee = eval(L, env, callee_ast);
    if (callee.kind == V_NONE)
        return callee;
    Arg *args;
    int n;
    if (!eval_args(L, env, kids, first, &args, &n))
        return v_none();
    return call_value(L, callee, args, n, loc, bind_name);
}

Val eval(Lower *L, Env *env, const NnAst *e)
{
    switch (e->kind) {
    case NN_AST_NUM: {
        if (e->is_int && fabs(e->num) < 9e15)
            return v_int((int64_t)e->num);
        return v_num(e->num);
    }
    case NN_AST_BOOL: return (Val){.kind = V_BOOL, .id = -1, .num = e->num};
    case NN_AST_STR: return (Val){.kind = V_STR, .id = -1, .str = e->str};
    case NN_AST_NAME: {
        Val v;
        lookup(L, env, e->name, e->loc, &v);
        return v;
    }
    case NN_AST_UNARY: return unary(L, env, e);
    case NN_AST_BINARY: return binary(L, env, e);
    case NN_AST_LIST: return list(L, env, e);
    case NN_AST_CALL: return call(L, env, e->a, &e->kids, NULL, e->loc);
    case NN_AST_PIPE: {
        L->bind_name = NULL;
        Val first = eval(L, env, e->a);
        if (first.kind == V_NONE)
            return first;
        if (e->b->kind == NN_AST_CALL)
            return call(L, env, e->b->a, &e->b->kids, &first, e->b->loc);
        NnAstList none = {0};
        return call(L, env, e->b, &none, &first, e->b->loc);
    }
    case NN_AST_INDEX: return eval_index(L, env, e);
    case NN_AST_FIELD:
        nn_error(&L->c->diags, e->loc, "'.%s': fields are only valid in train settings", e->name);
        return v_none();
    case NN_AST_ERROR: return v_none();
    default:
        nn_error(&L->c->diags, e->loc, "%s is not an expression", nn_ast_kind_name(e->kind));
        return v_none();
    }
}

NnLoc user_loc(Lower *L, NnLoc loc)
{
    return L->user_call && loc.src != L->prog->main->loc.src ? L->user_loc : loc;
}

// `param w: f32[I, units] = glorot_uniform()` inside a layer or model, and
// `state running_mean: f32[C] = zeros()` (op STATE: not trained, kept with
// the weights). Returns the variable's node, or -1 after reporting.
static NnId var_stmt(Lower *L, Env *env, const NnAst *s, NnOp op)
{
    const NnAst *t = s->type;
    NnShape shape = {0};
    NnDType dt = NN_DT_F32;
    if (t && strcmp(t->name, "f64") == 0)
        dt = NN_DT_F64;
    else if (t && strcmp(t->name, "f32") != 0) {
        nn_error(&L->c->diags, t->loc, "%s must be f32 or f64, not %s",
                 op == NN_OP_PARAM ? "parameters" : "layer states", t->name);
        return -1;
    }
    shape.rank = t ? t->kids.count : 0;
    if (shape.rank > NN_MAX_RANK) {
        nn_error(&L->c->diags, t->loc, "rank %d exceeds the maximum %d", shape.rank, NN_MAX_RANK);
        return -1;
    }
    for (int i = 0; i < shape.rank; i++) {
        Val d = eval(L, env, t->kids.items[i]);
        if (d.kind == V_NONE)
            return -1;
        if (d.kind != V_NUM || !d.is_int || d.sym || d.dim <= 0) {
            char b[64];
            nn_error(&L->c->diags, user_loc(L, t->kids.items[i]->loc),
                     "%s dimensions must be fixed positive integers, got %s",
                     op == NN_OP_PARAM ? "parameter" : "state",
                     val_desc(L, d, b, 64));
            return -1;
        }
        shape.dim[i] = d.dim;
    }
    // Sizes are int64 byte counts downstream; an element count that overflows
    // them would wrap, not fail.
    int64_t count = 1;
    for (int i = 0; i < shape.rank; i++)
        if (__builtin_mul_overflow(count, shape.dim[i], &count) || count > (INT64_MAX >> 4)) {
            nn_error(&L->c->diags, t->loc, "parameter '%s' has too many elements", s->name);
            return -1;
        }
    const char *init = "zeros";
    double args[4] = {0};
    int nargs = 0;
    const NnAst *ie = s->a;
    if (ie) {
        const NnAst *callee = ie->kind == NN_AST_CALL ? ie->a : ie;
        int maxargs = 0;
        if (callee->kind != NN_AST_NAME || !init_known(callee->name, &maxargs)) {
            nn_error(&L->c->diags, ie->loc,
                     "unknown initializer; use zeros(), ones(), normal(std), uniform(lo, hi), "
                     "glorot_uniform(), glorot_normal(), he_uniform(), he_normal() or orthogonal()");
            return -1;
        }
        init = callee->name;
        if (ie->kind == NN_AST_CALL) {
            if (ie->kids.count > maxargs) {
                nn_error(&L->c->diags, ie->loc, "%s() takes at most %d arguments", init, maxargs);
                return -1;
            }
            for (int i = 0; i < ie->kids.count; i++) {
                const NnAst *ae = ie->kids.items[i];
                Val v = eval(L, env, ae->kind == NN_AST_ARG ? ae->a : ae);
                if (v.kind != V_NUM || v.sym) {
                    nn_error(&L->c->diags, ae->loc, "initializer arguments must be numbers");
                    return -1;
                }
                args[nargs++] = v.num;
            }
        }
    }
    const char *name = L->scope ? nn_arena_printf(L->c->arena, "%s.%s", L->scope, s->name) : s->name;
    NnId id = make_var(L, op, name, dt, &shape, init, args, nargs, s->loc);
    if (id < 0)
        return -1;
    for (int i = 0; i < L->nvars; i++)
        if (L->var_ids[i] == id)
            L->vars[i].model_state = op == NN_OP_STATE;
    env_bind(L, env, s->name, v_tensor(id));
    return id;
}

// The value v given to state `decl` (node var) as a tensor of the state's
// type, or -1 after reporting at `at`.
static NnId state_value(Lower *L, const NnAst *decl, NnId var, Val v, NnLoc at,
                        const NnAst *owner)
{
    NnNode *vr = nn_node(L->g, var);
    NnId val = as_tensor(L, v, vr->dtype, at);
    if (val < 0)
        return -1;
    NnNode *vn = nn_node(L->g, val);
    if (vn->dtype != vr->dtype || !nn_shape_eq(&vn->shape, &vr->shape)) {
        char a[64], b[64];
        nn_error(&L->c->diags, user_loc(L, at), "'%s' sets state '%s' of %s to a value of type %s",
                 owner->name, decl->name, nn_type_str(L->g, vr->dtype, &vr->shape, a, 64),
                 nn_type_str(L->g, vn->dtype, &vn->shape, b, 64));
        return -1;
    }
    return val;
}

// At a layer's return: the final value of each of its states becomes that
// state's update (the last call wins when a bound layer runs twice).
static bool state_updates(Lower *L, Env *env, const NnAst *const *decls, const NnId *vars, int n,
                          const NnAst *owner)
{
    for (int i = 0; i < n; i++) {
        Val v;
        env_lookup(env, decls[i]->name, &v);
        NnId val = state_value(L, decls[i], vars[i], v, decls[i]->loc, owner);
        if (val < 0)
            return false;
        if (val == vars[i])
            continue;
        int k = 0;
        while (k < L->nupd && L->upd_var[k] != vars[i])
            k++;
        if (k == L->updcap) {
            int cap = L->updcap ? 2 * L->updcap : 8;
            NnId *a = nn_arena_alloc(L->c->arena, (size_t)cap * sizeof *a);
            NnId *b = nn_arena_alloc(L->c->arena, (size_t)cap * sizeof *b);
            if (L->nupd) {
                memcpy(a, L->upd_var, (size_t)L->nupd * sizeof *a);
                memcpy(b, L->upd_val, (size_t)L->nupd * sizeof *b);
            }
            L->upd_var = a, L->upd_val = b, L->updcap = cap;
        }
        L->upd_var[k] = vars[i];
        L->upd_val[k] = val;
        if (k == L->nupd)
            L->nupd++;
    }
    return true;
}

bool exec_stmt(Lower *L, Env *env, const NnAst *s, const NnAst *owner)
{
    switch (s->kind) {
    case NN_AST_ASSIGN: return assign_stmt(L, env, s);
    case NN_AST_PARAM: return var_stmt(L, env, s, NN_OP_PARAM) >= 0;
    case NN_AST_EXPR: return eval(L, env, s->a).kind != V_NONE;
    case NN_AST_FOR: return exec_for(L, env, s, owner);
    case NN_AST_ERROR: return false;
    case NN_AST_RETURN:
        nn_error(&L->c->diags, s->loc, "'return' inside a loop is not supported");
        return false;
    default:
        nn_error(&L->c->diags, s->loc, "%s statements are not supported here",
                 nn_ast_kind_name(s->kind));
        return false;
    }
}

Val eval_block(Lower *L, Env *env, const NnAstList *stmts, const NnAst *owner)
{
    const NnAst *sdecls[32];
    NnId svars[32];
    int nstates = 0;
    for (int i = 0; i < stmts->count; i++) {
        const NnAst *s = stmts->items[i];
        if (s->kind == NN_AST_RETURN) {
            if (!s->a) {
                nn_error(&L->c->diags, s->loc, "'%s' must return a value", owner->name);
                return v_none();
            }
            Val r = eval(L, env, s->a);
            if (r.kind == V_NONE || !state_updates(L, env, sdecls, svars, nstates, owner))
                return v_none();
            return r;
        }
        if (s->kind == NN_AST_STATE) {
            if (nstates == 32) {
                nn_error(&L->c->diags, s->loc, "a layer may declare at most 32 states");
                return v_none();
            }
            if ((svars[nstates] = var_stmt(L, env, s, NN_OP_STATE)) < 0)
                return v_none();
            sdecls[nstates++] = s;
            continue;
        }
        if (!exec_stmt(L, env, s, owner))
            return v_none();
        // A state set here is checked at the assignment, not only at the return.
        for (int t = 0; s->kind == NN_AST_ASSIGN && t < s->kids.count; t++) {
            const NnAst *tg = s->kids.items[t];
            for (int k = 0; tg->kind == NN_AST_NAME && k < nstates; k++) {
                Val v;
                if (strcmp(sdecls[k]->name, tg->name) == 0 && env_lookup(env, tg->name, &v) &&
                    state_value(L, sdecls[k], svars[k], v, s->a->loc, owner) < 0)
                    return v_none();
            }
        }
    }
    nn_error(&L->c->diags, owner->loc, "'%s' ends without a return statement", owner->name);
    return v_none();
}
