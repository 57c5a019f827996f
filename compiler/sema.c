// Semantic analysis before any shape is known: loads imports (the stdlib for
// `import std`), builds the declaration table, and checks every name in every
// body, suggesting the closest known name for a typo. Also enforces where
// statements may appear (param in layers and models, state in optimizers and,
// typed, in layers).
// Declarations in the user's file override imported ones of the same name.
#include "sema.h"
#include "graph.h"
#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Names visible in one declaration's body; `slots` hashes them (NULL = empty)
// so a body with many statements is checked in linear time.
typedef struct Scope {
    const char **names;
    int count, cap;
    const char **slots;
    int nslots; // power of two, at least twice count
} Scope;

typedef struct Sema {
    NnCtx *c;
    NnProgram *p;
    int declcap, traincap;
    const char **loaded;
    int nloaded;
    bool in_main;
    NnAst **grads; // `grad f(x) = ...` items, attached to their externs after collecting
    int ngrads, gradcap;
} Sema;

static const char **scope_slot(const Scope *s, const char *name)
{
    unsigned mask = (unsigned)s->nslots - 1;
    for (unsigned i = nn_sema_hash(name) & mask;; i = (i + 1) & mask)
        if (!s->slots[i] || strcmp(s->slots[i], name) == 0)
            return &s->slots[i];
}

static bool scope_has(const Scope *s, const char *name)
{
    return s->nslots && *scope_slot(s, name);
}

static void scope_add(NnCtx *c, Scope *s, const char *name)
{
    if (scope_has(s, name))
        return;
    if (2 * (s->count + 1) > s->nslots) {
        s->nslots = s->nslots ? s->nslots * 2 : 32;
        s->slots = nn_arena_alloc(c->arena, (size_t)s->nslots * sizeof *s->slots);
        memset(s->slots, 0, (size_t)s->nslots * sizeof *s->slots);
        for (int i = 0; i < s->count; i++)
            *scope_slot(s, s->names[i]) = s->names[i];
    }
    *scope_slot(s, name) = name;
    if (s->count == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        const char **n = nn_arena_alloc(c->arena, (size_t)cap * sizeof *n);
        if (s->count)
            memcpy(n, s->names, (size_t)s->count * sizeof *n);
        s->names = n;
        s->cap = cap;
    }
    s->names[s->count++] = name;
}

// Lookups go through a hash of names so that checking a file with many
// declarations stays linear (each add and find is O(1) on average).
unsigned nn_sema_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

// The slot holding `name`, or the empty slot where it would go.
static int *find_slot(const NnProgram *p, const char *name)
{
    unsigned mask = (unsigned)p->nslots - 1;
    for (unsigned i = nn_sema_hash(name) & mask;; i = (i + 1) & mask) {
        int *s = &p->slots[i];
        if (*s < 0 || strcmp(p->decls[*s].name, name) == 0)
            return s;
    }
}

const NnDecl *nn_sema_find(const NnProgram *p, const char *name)
{
    if (!p || !p->nslots)
        return NULL;
    int k = *find_slot(p, name);
    return k < 0 ? NULL : &p->decls[k];
}

static void rehash(NnCtx *c, NnProgram *p, int nslots)
{
    p->slots = nn_arena_alloc(c->arena, (size_t)nslots * sizeof *p->slots);
    p->nslots = nslots;
    for (int i = 0; i < nslots; i++)
        p->slots[i] = -1;
    for (int i = 0; i < p->ndecls; i++)
        *find_slot(p, p->decls[i].name) = i;
}

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    int d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

const char *nn_builtin_name(int i);

const char *nn_sema_suggest(const NnProgram *p, const char *name, const char *const *extra,
                            int nextra)
{
    const char *best = NULL;
    int bestd = (int)strlen(name) / 3 + 1;
    if (bestd > 3)
        bestd = 3;
    bestd++;
#define TRY(cand)                                                                                  \
    do {                                                                                           \
        int dd = edit_distance(name, (cand));                                                      \
        if (dd < bestd && strcmp(name, (cand)) != 0) {                                             \
            bestd = dd;                                                                            \
            best = (cand);                                                                         \
        }                                                                                          \
    } while (0)
    for (int i = 0; i < nextra; i++)
        TRY(extra[i]);
    for (int i = 0; p && i < p->ndecls; i++)
        TRY(p->decls[i].name);
    for (int i = 0; nn_builtin_name(i); i++)
        TRY(nn_builtin_name(i));
#undef TRY
    return best;
}

const char *nn_sema_hint(NnCtx *c, const char *near)
{
    return near ? nn_arena_printf(c->arena, "; did you mean '%s'?", near) : "";
}

static void add_decl(Sema *S, const NnAst *item)
{
    NnProgram *p = S->p;
    const NnDecl *same = nn_sema_find(p, item->name);
    for (int i = same ? (int)(same - p->decls) : -1; i >= 0; i = p->decls[i].prev) {
        const NnAst *old = p->decls[i].ast;
        if (old->loc.src == item->loc.src) {
            nn_error(&S->c->diags, item->loc, "'%s' is already defined", item->name);
            nn_note(&S->c->diags, old->loc, "previous definition of '%s' is here", item->name);
            return;
        }
    }
    if (p->ndecls == S->declcap) {
        S->declcap = S->declcap ? S->declcap * 2 : 64;
        NnDecl *d = nn_arena_alloc(S->c->arena, (size_t)S->declcap * sizeof *d);
        if (p->ndecls)
            memcpy(d, p->decls, (size_t)p->ndecls * sizeof *d);
        p->decls = d;
    }
    if (2 * (p->ndecls + 1) > p->nslots)
        rehash(S->c, p, p->nslots ? p->nslots * 2 : 128);
    int *slot = find_slot(p, item->name);
    p->decls[p->ndecls] = (NnDecl){.name = item->name, .ast = item, .prev = *slot};
    *slot = p->ndecls++;
}

static void collect(Sema *S, NnAst *prog);

static bool already_loaded(Sema *S, const char *path)
{
    for (int i = 0; i < S->nloaded; i++)
        if (strcmp(S->loaded[i], path) == 0)
            return true;
    if (S->nloaded % 64 == 0) {
        const char **l = nn_arena_alloc(S->c->arena, (size_t)(S->nloaded + 64) * sizeof *l);
        if (S->nloaded)
            memcpy(l, S->loaded, (size_t)S->nloaded * sizeof *l);
        S->loaded = l;
    }
    S->loaded[S->nloaded++] = nn_arena_strdup(S->c->arena, path);
    return false;
}

static void load_file(Sema *S, const char *path, NnLoc at)
{
    char *real = realpath(path, NULL);
    const char *key = real ? real : path;
    bool seen = already_loaded(S, key);
    free(real);
    if (seen)
        return;
    // A missing import is reported at the import, not as a bare file error.
    // The probe never blocks on a FIFO and refuses what is not a regular file.
    int fd;
    int64_t size;
    if (nnrt_file_open(path, NULL, &fd, &size) != NN_OK) {
        if (at.src) {
            nn_error(&S->c->diags, at, "cannot import '%s': %s", path,
                     errno ? strerror(errno) : nnrt_errmsg());
            return;
        }
    } else {
        close(fd);
    }
    NnSource *src = nn_source_load(S->c->arena, &S->c->diags, path);
    if (!src)
        return;
    bool saved = S->in_main;
    S->in_main = false;
    collect(S, nn_parse(S->c, src));
    S->in_main = saved;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void import_std(Sema *S, NnLoc at)
{
    DIR *d = opendir(S->c->stdlib_dir);
    if (!d) {
        nn_error(&S->c->diags, at, "cannot open the standard library at '%s'", S->c->stdlib_dir);
        return;
    }
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        size_t len = strlen(e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".nn") == 0)
            names[n++] = nn_arena_printf(S->c->arena, "%s/%s", S->c->stdlib_dir, e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n; i++)
        load_file(S, names[i], at);
}

static void import_item(Sema *S, const NnAst *item)
{
    if (item->name && strcmp(item->name, "std") == 0) {
        import_std(S, item->loc);
        return;
    }
    if (!item->str) {
        nn_error(&S->c->diags, item->loc, "unknown module '%s'; write 'import std' or "
                 "'import \"file.nn\"'", item->name ? item->name : "?");
        return;
    }
    const char *path = item->str;
    const char *from = item->loc.src ? item->loc.src->name : "";
    const char *slash = strrchr(from, '/');
    if (path[0] != '/' && slash) {
        const char *rel = nn_arena_printf(S->c->arena, "%.*s/%s", (int)(slash - from), from, path);
        if (access(rel, F_OK) == 0)
            path = rel;
    }
    load_file(S, path, item->loc);
}

static void collect(Sema *S, NnAst *prog)
{
    for (int i = 0; i < prog->kids.count; i++) {
        NnAst *item = prog->kids.items[i];
        switch (item->kind) {
        case NN_AST_IMPORT: import_item(S, item); break;
        case NN_AST_FN:
            if (item->name2 && !strcmp(item->name2, "grad")) {
                if (S->ngrads == S->gradcap) {
                    S->gradcap = S->gradcap ? S->gradcap * 2 : 8;
                    NnAst **g = nn_arena_alloc(S->c->arena, (size_t)S->gradcap * sizeof *g);
                    if (S->ngrads)
                        memcpy(g, S->grads, (size_t)S->ngrads * sizeof *g);
                    S->grads = g;
                }
                S->grads[S->ngrads++] = item;
                break;
            }
            add_decl(S, item);
            break;
        case NN_AST_LAYER: case NN_AST_MODEL: case NN_AST_LOSS:
        case NN_AST_OPTIMIZER: case NN_AST_DATA: case NN_AST_EXTERN:
            add_decl(S, item);
            break;
        case NN_AST_TRAIN:
            if (!S->in_main)
                break;
            if (S->p->ntrains == S->traincap) {
                S->traincap = S->traincap ? S->traincap * 2 : 8;
                const NnAst **t = nn_arena_alloc(S->c->arena, (size_t)S->traincap * sizeof *t);
                if (S->p->ntrains)
                    memcpy(t, S->p->trains, (size_t)S->p->ntrains * sizeof *t);
                S->p->trains = t;
            }
            S->p->trains[S->p->ntrains++] = item;
            break;
        case NN_AST_ERROR: break;
        default:
            nn_error(&S->c->diags, item->loc,
                     "statements must be inside a model, layer, fn, loss or optimizer");
            break;
        }
    }
}

// ---- name checks -----------------------------------------------------------

static void check_expr(Sema *S, Scope *sc, const NnAst *e);

static void unknown(Sema *S, Scope *sc, const NnAst *e)
{
    const char *near = nn_diags_full(&S->c->diags)
                     ? NULL : nn_sema_suggest(S->p, e->name, sc->names, sc->count);
    nn_error(&S->c->diags, e->loc, "unknown name '%s'%s", e->name, nn_sema_hint(S->c, near));
}

static bool known(Sema *S, Scope *sc, const char *name)
{
    return scope_has(sc, name) || nn_sema_find(S->p, name) || nn_sema_is_builtin(name);
}

static void check_list(Sema *S, Scope *sc, const NnAstList *l)
{
    for (int i = 0; i < l->count; i++)
        check_expr(S, sc, l->items[i]);
}

static void check_expr(Sema *S, Scope *sc, const NnAst *e)
{
    if (!e)
        return;
    switch (e->kind) {
    case NN_AST_NAME:
        if (!known(S, sc, e->name))
            unknown(S, sc, e);
        break;
    case NN_AST_ARG: check_expr(S, sc, e->a); break;
    case NN_AST_FIELD: check_expr(S, sc, e->a); break;
    case NN_AST_UNARY: case NN_AST_BINARY: case NN_AST_PIPE: case NN_AST_SLICE:
        check_expr(S, sc, e->a);
        check_expr(S, sc, e->b);
        break;
    case NN_AST_CALL: case NN_AST_INDEX:
        check_expr(S, sc, e->a);
        check_list(S, sc, &e->kids);
        break;
    case NN_AST_LIST: check_list(S, sc, &e->kids); break;
    default: break;
    }
}

static void add_type_dims(Sema *S, Scope *sc, const NnAst *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->kids.count; i++) {
        const NnAst *d = t->kids.items[i];
        if (d->kind == NN_AST_NAME)
            scope_add(S->c, sc, d->name);
    }
}

static void check_body(Sema *S, Scope *sc, const NnAst *decl, const NnAstList *body)
{
    for (int i = 0; i < body->count; i++) {
        const NnAst *s = body->items[i];
        switch (s->kind) {
        case NN_AST_ASSIGN:
            check_expr(S, sc, s->a);
            for (int k = 0; k < s->kids.count; k++) {
                const NnAst *t = s->kids.items[k];
                if (t->kind == NN_AST_INDEX) {
                    // out[:, t] = h may define out (a loop's stacked output).
                    check_list(S, sc, &t->kids);
                    t = t->a;
                }
                if (t->kind == NN_AST_NAME)
                    scope_add(S->c, sc, t->name);
            }
            break;
        case NN_AST_PARAM:
            if (decl->kind != NN_AST_LAYER && decl->kind != NN_AST_MODEL)
                nn_error(&S->c->diags, s->loc, "'param' is only allowed in a layer or model");
            if (s->type)
                check_list(S, sc, &s->type->kids);
            scope_add(S->c, sc, s->name);
            break;
        case NN_AST_STATE:
            // Optimizer state is shaped like p; layer state (batch-norm
            // statistics) declares its type like a param.
            if (decl->kind == NN_AST_OPTIMIZER && s->type)
                nn_error(&S->c->diags, s->type->loc, "optimizer state has the type of 'p'; "
                         "write 'state %s = zeros_like(p)'", s->name);
            else if (decl->kind == NN_AST_LAYER || decl->kind == NN_AST_MODEL) {
                if (!s->type)
                    nn_error(&S->c->diags, s->loc, "layer state needs a type and an initializer, "
                             "e.g. 'state %s: f32[C] = zeros()'", s->name);
                else
                    check_list(S, sc, &s->type->kids);
            } else if (decl->kind != NN_AST_OPTIMIZER)
                nn_error(&S->c->diags, s->loc,
                         "'state' is only allowed in a layer, model or optimizer");
            if (!s->type)
                check_expr(S, sc, s->a);
            scope_add(S->c, sc, s->name);
            break;
        case NN_AST_RETURN:
            if (decl->kind == NN_AST_OPTIMIZER)
                nn_error(&S->c->diags, s->loc, "an optimizer updates 'p'; it does not return");
            check_expr(S, sc, s->a);
            break;
        case NN_AST_EXPR: check_expr(S, sc, s->a); break;
        case NN_AST_FOR:
            check_expr(S, sc, s->a);
            check_expr(S, sc, s->b);
            scope_add(S->c, sc, s->name);
            check_body(S, sc, decl, &s->kids);
            break;
        default: break;
        }
    }
}

// An extern's signature must be one libffi and generated code both call the
// same way: 1 to 3 scalar f32/f64/i32 arguments and such a result. Its library
// and symbol are found now, so a missing one is reported at the declaration.
static void check_extern(Sema *S, const NnAst *d)
{
    const char *bad = NULL;
    NnLoc at = d->loc;
    if (d->params.count < 1 || d->params.count > 3)
        bad = "it takes 1 to 3 arguments";
    for (int i = 0; !bad && i <= d->params.count; i++) {
        const NnAst *t = i < d->params.count ? d->params.items[i]->type : d->type;
        if (!t) {
            bad = i < d->params.count ? "every argument needs a type (f32, f64 or i32)"
                                      : "it needs a result type (-> f32, f64 or i32)";
            if (i < d->params.count)
                at = d->params.items[i]->loc;
        } else if (t->has_dims || (strcmp(t->name, "f32") && strcmp(t->name, "f64") &&
                                   strcmp(t->name, "i32"))) {
            bad = "arguments and result must be scalars: f32 (float), f64 (double) or i32 (int)";
            at = t->loc;
        }
    }
    if (bad) {
        nn_error(&S->c->diags, at, "unsupported signature for extern function '%s': %s",
                 d->name, bad);
        return;
    }
    char why[512];
    if (!nn_extern_open(d->str, d->name, why, sizeof why))
        nn_error(&S->c->diags, d->loc, "extern function '%s': %s", d->name, why);
}

static void check_decl(Sema *S, const NnAst *d);

// Attaches each `grad f(x) = ...` to extern f (as its `a`) and checks its body.
static void attach_grads(Sema *S)
{
    for (int i = 0; i < S->ngrads; i++) {
        NnAst *g = S->grads[i];
        const NnDecl *d = nn_sema_find(S->p, g->name);
        NnAst *ext = d && d->ast->kind == NN_AST_EXTERN ? (NnAst *)d->ast : NULL;
        if (!ext) {
            nn_error(&S->c->diags, g->loc, "'grad %s' declares the derivative of an extern "
                     "function; '%s' is %s", g->name, g->name,
                     d ? "not one (the compiler differentiates .nn code itself)" : "unknown");
            continue;
        }
        if (ext->a) {
            nn_error(&S->c->diags, g->loc, "the derivative of '%s' is declared twice", g->name);
            nn_note(&S->c->diags, ext->a->loc, "first declared here");
            continue;
        }
        if (g->params.count != ext->params.count) {
            nn_error(&S->c->diags, g->loc, "'grad %s' takes %d argument%s, like '%s'; got %d",
                     g->name, ext->params.count, ext->params.count == 1 ? "" : "s", g->name,
                     g->params.count);
            continue;
        }
        ext->a = g;
        check_decl(S, g);
    }
}

static void check_decl(Sema *S, const NnAst *d)
{
    if (d->kind == NN_AST_EXTERN)
        check_extern(S, d);
    if (d->kind == NN_AST_DATA || d->kind == NN_AST_EXTERN)
        return;
    Scope sc = {0};
    if (d->kind == NN_AST_OPTIMIZER) {
        scope_add(S->c, &sc, "p");
        scope_add(S->c, &sc, "grad");
        scope_add(S->c, &sc, "grad_norm");
        scope_add(S->c, &sc, "step");
    }
    // Learning-rate schedules are functions of these; the train block binds
    // them while it evaluates an optimizer's arguments (elsewhere lowering
    // reports them unknown).
    if (d->kind == NN_AST_FN) {
        scope_add(S->c, &sc, "step");
        scope_add(S->c, &sc, "total_steps");
    }
    for (int i = 0; i < d->params.count; i++) {
        const NnAst *f = d->params.items[i];
        add_type_dims(S, &sc, f->type);
        check_expr(S, &sc, f->a);
        scope_add(S->c, &sc, f->name);
    }
    if (d->a)
        check_expr(S, &sc, d->a);
    else
        check_body(S, &sc, d, &d->kids);
}

NnProgram *nn_sema(NnCtx *c, NnAst *main)
{
    Sema S = {.c = c, .in_main = true};
    S.p = nn_arena_alloc(c->arena, sizeof *S.p);
    S.p->main = main;
    if (main->loc.src)
        already_loaded(&S, main->loc.src->name);
    collect(&S, main);
    attach_grads(&S);
    for (int i = 0; i < S.p->ndecls; i++)
        check_decl(&S, S.p->decls[i].ast);
    return S.p;
}
