// Calls: binds arguments to a declaration's formals (positional, named,
// defaults), checks declared types and shapes (binding dimension names such as
// N and I on first use), inlines the body, and checks the declared result.
// Each layer call site gets its own parameter scope (mlp.dense2); a layer
// called without its input becomes a bound layer whose calls share one scope.
#include "elab.h"

#include <string.h>

// A formal's type rendered with the dims known so far ("f32[N, 784]").
static const char *type_desc(Lower *L, Env *env, const NnAst *t, char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n, "%s", t->name);
    if (!t->has_dims)
        return buf;
    for (int i = 0; i < t->kids.count && len < n; i++) {
        const NnAst *d = t->kids.items[i];
        Val v;
        const char *sep = i ? ", " : "[";
        if (d->kind == NN_AST_NAME && env_lookup(env, d->name, &v) && v.kind == V_NUM && !v.sym)
            len += (size_t)snprintf(buf + len, n - len, "%s%lld", sep, (long long)v.dim);
        else if (d->kind == NN_AST_NAME)
            len += (size_t)snprintf(buf + len, n - len, "%s%s", sep, d->name);
        else if (d->kind == NN_AST_NUM)
            len += (size_t)snprintf(buf + len, n - len, "%s%g", sep, d->num);
        else
            len += (size_t)snprintf(buf + len, n - len, "%s...", sep);
    }
    if (len < n)
        snprintf(buf + len, n - len, "]");
    return buf;
}

static bool dtype_of(const char *name, NnDType *dt)
{
    if (strcmp(name, "f32") == 0)
        *dt = NN_DT_F32;
    else if (strcmp(name, "f64") == 0)
        *dt = NN_DT_F64;
    else if (strcmp(name, "i32") == 0)
        *dt = NN_DT_I32;
    else
        return false;
    return true;
}

// Checks v against type t, binding unbound dim names in env. `what` names the
// value for messages ("argument 'x' of 'dense'").
static bool check_type(Lower *L, Env *env, const NnAst *t, Val v, const char *what, NnLoc loc)
{
    char want[128], got[128];
    NnDType dt;
    if (strcmp(t->name, "int") == 0 || strcmp(t->name, "float") == 0) {
        bool ok = v.kind == V_NUM && (t->name[0] == 'f' || v.is_int);
        if (!ok)
            nn_error(&L->c->diags, loc, "%s must be %s %s, got %s", what,
                     t->name[0] == 'i' ? "an" : "a", t->name, val_desc(L, v, got, sizeof got));
        return ok;
    }
    if (strcmp(t->name, "bool") == 0) {
        if (v.kind != V_BOOL)
            nn_error(&L->c->diags, loc, "%s must be a bool, got %s", what,
                     val_desc(L, v, got, sizeof got));
        return v.kind == V_BOOL;
    }
    if (!dtype_of(t->name, &dt)) {
        nn_error(&L->c->diags, t->loc, "unknown type '%s'", t->name);
        return false;
    }
    if (!t->has_dims && v.kind == V_NUM)
        return true;
    if (v.kind != V_TENSOR) {
        nn_error(&L->c->diags, loc, "%s must be a tensor %s, got %s", what,
                 type_desc(L, env, t, want, sizeof want), val_desc(L, v, got, sizeof got));
        return false;
    }
    NnNode *n = vnode(L, v);
    int rank = t->has_dims ? t->kids.count : 0;
    if (n->dtype != dt || n->shape.rank != rank) {
        nn_error(&L->c->diags, loc, "%s must be %s, got %s", what,
                 type_desc(L, env, t, want, sizeof want), val_desc(L, v, got, sizeof got));
        return false;
    }
    for (int i = 0; i < rank; i++) {
        const NnAst *d = t->kids.items[i];
        int64_t actual = n->shape.dim[i];
        Val known;
        if (d->kind == NN_AST_NAME && !env_lookup(env, d->name, &known)) {
            Val dv = v_int(actual);
            dv.sym = actual < 0;
            env_bind(L, env, d->name, dv);
            continue;
        }
        Val e = eval(L, env, d);
        if (e.kind == V_NONE)
            return false;
        if (e.kind != V_NUM || !e.is_int || e.dim != actual) {
            nn_error(&L->c->diags, loc, "%s must be %s, got %s", what,
                     type_desc(L, env, t, want, sizeof want), val_desc(L, v, got, sizeof got));
            return false;
        }
    }
    return true;
}

static const char *kind_word(const NnAst *d)
{
    switch (d->kind) {
    case NN_AST_LAYER: return "layer";
    case NN_AST_MODEL: return "model";
    case NN_AST_LOSS: return "loss";
    case NN_AST_OPTIMIZER: return "optimizer";
    default: return "function";
    }
}

static int find_formal(const NnAst *decl, const char *name)
{
    for (int i = 0; i < decl->params.count; i++)
        if (strcmp(decl->params.items[i]->name, name) == 0)
            return i;
    return -1;
}

// Binds args to formals into env. Returns false after reporting.
static bool bind_formals(Lower *L, Env *env, const NnAst *decl, Arg *args, int nargs, NnLoc loc)
{
    int nf = decl->params.count;
    Val *vals = nn_arena_alloc(L->c->arena, (size_t)(nf + 1) * sizeof *vals);
    bool *set = nn_arena_alloc(L->c->arena, (size_t)(nf + 1));
    NnLoc *locs = nn_arena_alloc(L->c->arena, (size_t)(nf + 1) * sizeof *locs);
    NnLoc *froms = nn_arena_alloc(L->c->arena, (size_t)(nf + 1) * sizeof *froms);
    const char **fields = nn_arena_alloc(L->c->arena, (size_t)(nf + 1) * sizeof *fields);
    int pos = 0;
    for (int i = 0; i < nargs; i++) {
        NnLoc al = args[i].loc.src ? args[i].loc : loc;
        int k;
        if (!args[i].name) {
            k = pos++;
            if (k >= nf) {
                nn_error(&L->c->diags, al, "%s '%s' takes %d argument%s, got more", kind_word(decl),
                         decl->name, nf, nf == 1 ? "" : "s");
                return false;
            }
        } else if ((k = find_formal(decl, args[i].name)) < 0) {
            const char *names[32];
            int nn = 0;
            for (int j = 0; j < nf && nn < 32; j++)
                names[nn++] = decl->params.items[j]->name;
            const char *near = nn_sema_suggest(NULL, args[i].name, names, nn);
            nn_error(&L->c->diags, al, "%s '%s' has no parameter '%s'%s", kind_word(decl),
                     decl->name, args[i].name, nn_sema_hint(L->c, near));
            return false;
        }
        if (set[k]) {
            nn_error(&L->c->diags, al, "argument '%s' of '%s' is given twice",
                     decl->params.items[k]->name, decl->name);
            return false;
        }
        set[k] = true;
        vals[k] = args[i].v;
        locs[k] = al;
        froms[k] = args[i].from;
        fields[k] = args[i].field;
    }
    for (int k = 0; k < nf; k++) {
        const NnAst *f = decl->params.items[k];
        if (!set[k]) {
            if (!f->a) {
                nn_error(&L->c->diags, loc, "%s '%s' is missing argument '%s'", kind_word(decl),
                         decl->name, f->name);
                return false;
            }
            vals[k] = eval(L, env, f->a);
            locs[k] = loc;
            if (vals[k].kind == V_NONE)
                return false;
        }
        if (f->type) {
            char what[160];
            snprintf(what, sizeof what, "argument '%s' of '%s'", f->name, decl->name);
            if (!check_type(L, env, f->type, vals[k], what, locs[k])) {
                if (froms[k].src)
                    nn_note(&L->c->diags, froms[k], "the data's '%s' is defined here",
                            fields[k] ? fields[k] : f->name);
                return false;
            }
        }
        env_bind(L, env, f->name, vals[k]);
    }
    return true;
}

void call_note(Lower *L, const NnAst *decl, NnLoc loc)
{
    NnDiags *d = &L->c->diags;
    const NnSource *user = L->prog && L->prog->main ? L->prog->main->loc.src : NULL;
    if (!loc.src || !d->count || nn_diags_full(d))
        return;
    const NnSource *last = d->items[d->count - 1].loc.src;
    if (last && last != user)
        nn_note(d, loc, "in call to '%s' from here", decl->name);
}

Val call_decl(Lower *L, const NnAst *decl, Arg *args, int nargs, NnLoc loc, const char *scope)
{
    if (L->depth >= 100) {
        nn_error(&L->c->diags, loc, "calls nested too deeply (is '%s' recursive?)", decl->name);
        return v_none();
    }
    Env *env = nn_arena_alloc(L->c->arena, sizeof *env);
    if (!bind_formals(L, env, decl, args, nargs, loc))
        return v_none();
    const char *saved = L->scope, *saved_call = L->user_call;
    NnLoc saved_loc = L->user_loc;
    const NnSource *user = L->prog->main->loc.src;
    if (!L->user_call && decl->loc.src != user && loc.src == user) {
        L->user_call = decl->name;
        L->user_loc = loc;
    }
    L->scope = scope;
    L->depth++;
    int errors = L->c->diags.nerrors;
    Val r = decl->a ? eval(L, env, decl->a) : eval_block(L, env, &decl->kids, decl);
    L->depth--;
    L->scope = saved;
    if (L->c->diags.nerrors > errors)
        call_note(L, decl, loc);
    L->user_call = saved_call;
    L->user_loc = saved_loc;
    if (r.kind != V_NONE && decl->type) {
        char what[160];
        snprintf(what, sizeof what, "the result of '%s'", decl->name);
        if (!check_type(L, env, decl->type, r, what, loc))
            return v_none();
    }
    return r;
}

// "mlp.dense2": the next call site of layer `name` in the current scope.
static const char *next_scope(Lower *L, const char *name)
{
    const char *key = nn_arena_printf(L->c->arena, "%s/%s", L->scope ? L->scope : "", name);
    Counter *c = L->counters;
    while (c && strcmp(c->key, key) != 0)
        c = c->next;
    if (!c) {
        c = nn_arena_alloc(L->c->arena, sizeof *c);
        c->key = key;
        c->next = L->counters;
        L->counters = c;
    }
    c->n++;
    return L->scope ? nn_arena_printf(L->c->arena, "%s.%s%d", L->scope, name, c->n)
                    : nn_arena_printf(L->c->arena, "%s%d", name, c->n);
}

static Val call_layer(Lower *L, const NnAst *decl, Arg *args, int nargs, NnLoc loc,
                      const char *bind_name)
{
    bool has_input = false;
    const char *first = decl->params.count ? decl->params.items[0]->name : "";
    for (int i = 0; i < nargs; i++)
        if ((!args[i].name && args[i].v.kind == V_TENSOR) ||
            (args[i].name && strcmp(args[i].name, first) == 0))
            has_input = true;
    if (has_input)
        return call_decl(L, decl, args, nargs, loc, next_scope(L, decl->name));
    Bound *b = nn_arena_alloc(L->c->arena, sizeof *b);
    b->decl = decl;
    b->args = args;
    b->nargs = nargs;
    b->scope = bind_name ? (L->scope ? nn_arena_printf(L->c->arena, "%s.%s", L->scope, bind_name)
                                     : bind_name)
                         : next_scope(L, decl->name);
    return (Val){.kind = V_BOUND, .id = -1, .bound = b};
}

Val call_value(Lower *L, Val callee, Arg *args, int nargs, NnLoc loc, const char *bind_name)
{
    char b[64];
    switch (callee.kind) {
    case V_BUILTIN: return call_builtin(L, callee.str, args, nargs, loc);
    case V_BOUND: {
        // New positional inputs go first, then the bound arguments.
        Bound *bd = callee.bound;
        Arg *all = nn_arena_alloc(L->c->arena, (size_t)(nargs + bd->nargs + 1) * sizeof *all);
        int k = 0;
        for (int i = 0; i < nargs; i++)
            all[k++] = args[i];
        for (int i = 0; i < bd->nargs; i++)
            all[k++] = bd->args[i];
        return call_decl(L, bd->decl, all, k, loc, bd->scope);
    }
    case V_DECL: break;
    case V_NONE: return callee;
    default:
        nn_error(&L->c->diags, loc, "%s is not callable", val_desc(L, callee, b, sizeof b));
        return v_none();
    }
    const NnAst *d = callee.decl;
    switch (d->kind) {
    case NN_AST_FN:
    case NN_AST_LOSS: return call_decl(L, d, args, nargs, loc, L->scope);
    case NN_AST_LAYER: return call_layer(L, d, args, nargs, loc, bind_name);
    case NN_AST_MODEL: {
        // Every call of a model numbers its layers afresh (gen.dense1, ...), so
        // calling it twice (a GAN's disc(x) and disc(gen(z))) shares its weights.
        Counter *saved = L->counters;
        L->counters = NULL;
        Val r = call_decl(L, d, args, nargs, loc, d->name);
        L->counters = saved;
        return r;
    }
    case NN_AST_OPTIMIZER:
        nn_error(&L->c->diags, loc,
                 "optimizer '%s' can only be used as 'optimizer = %s(...)' in a train block",
                 d->name, d->name);
        return v_none();
    case NN_AST_EXTERN: return call_extern(L, d, args, nargs, loc);
    default:
        nn_error(&L->c->diags, loc, "'%s' is a %s block, not a function", d->name,
                 d->kind == NN_AST_DATA ? "data" : "train");
        return v_none();
    }
}
