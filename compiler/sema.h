// Semantic analysis: the program's declarations (with `import`s and the stdlib
// loaded), name resolution with "did you mean" suggestions, argument-count and
// named-argument checks, and declaration-kind rules (param only in layers,
// state only in optimizers, ...). Shapes are checked later, when lower.c
// instantiates a model, because layers are generic in their dims.
#ifndef NN_SEMA_H
#define NN_SEMA_H

#include "ast.h"

typedef struct NnDecl {
    const char *name;
    const NnAst *ast; // FN, LAYER, MODEL, LOSS, OPTIMIZER, DATA, TRAIN, EXTERN
    int prev;         // index of the previous decl of the same name, or -1
} NnDecl;

typedef struct NnProgram {
    NnAst *main;    // the user's file
    NnDecl *decls;  // every named top-level item, imports included
    int ndecls;
    int *slots;     // hash of names: -1 or the index of the latest decl of that name
    int nslots;     // power of two, at least twice ndecls
    const NnAst **trains; // TRAIN items of the main file, in order
    int ntrains;
} NnProgram;

// Resolves imports (relative to the importing file, `std` = c->stdlib_dir) and
// checks names. Returns NULL only if nothing usable could be built; errors are
// in c->diags either way (check c->diags.nerrors).
NnProgram *nn_sema(NnCtx *c, NnAst *main);
const NnDecl *nn_sema_find(const NnProgram *p, const char *name);
// The closest name (edit distance) among decls, builtins and `extra`, or NULL.
const char *nn_sema_suggest(const NnProgram *p, const char *name, const char *const *extra,
                            int nextra);
// "; did you mean 'near'?" (in c's arena), or "" when near is NULL: the tail
// every unknown-name message shares.
const char *nn_sema_hint(NnCtx *c, const char *near);
// The hash of a name behind the declaration and scope tables.
unsigned nn_sema_hash(const char *s);
// Names the lowering implements in C (exp, sum, dropout, ...).
bool nn_sema_is_builtin(const char *name);

#endif
