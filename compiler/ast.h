// The AST of a .nn file, produced by parse.y and consumed by sema.c/lower.c.
// Nodes live in the NnCtx arena. One struct for all kinds; the table below
// says which fields each kind uses (unused fields are zero/NULL).
//
// kind        fields
// ----------  -------------------------------------------------------------
// NUM         num, is_int (no '.', no exponent)
// STR         str (escapes decoded)
// BOOL        num (0 or 1)
// NAME        name
// UNARY       op (NN_AOP_NEG / NN_AOP_NOT), a
// BINARY      op, a, b
// PIPE        a |> b          (b is a NAME or a CALL; sema inserts a as first arg)
// CALL        a = callee (NAME or FIELD), kids = args (exprs or ARG)
// ARG         name = value, a            (named argument / setting "k = v")
// FIELD       a.name                     (val.accuracy, fashion.test.x)
// INDEX       a[kids]                    (kids are exprs or SLICE)
// SLICE       a:b, either may be NULL
// LIST        [kids]
// TYPE        name = "f32"|"f64"|"i32"|"int"|"bool"|"float", has_dims, kids = dims
//             (each NAME, NUM or BINARY of those: f32[N, 4 * units])
// ASSIGN      kids = targets (NAME or INDEX), a = value
// RETURN      a
// PARAM       name, type, a = initializer call       (layer: param w: f32[I, U] = zeros())
// STATE       name, a = initializer                  (optimizer: state m = zeros_like(p))
// EXPR        a                                      (expression statement)
// FOR         name = loop variable, a = lo, b = hi, kids = body
// SPLIT       name = source split, kids = ARGs (name = new split, a = fraction),
//             params = ARGs of options (seed = 1)    (split train -> train 0.9, val 0.1)
// STEP        name = model updated, kids = settings (ARG)   (train: step disc { ... })
// NOISE       name, type, a = initializer            (train: noise z: f32[N, 16] = normal())
// FN LAYER MODEL LOSS OPTIMIZER
//             name, params = FORMALs, type = return TYPE or NULL,
//             either a = expression body (fn f(x) = ...) or kids = block statements
// FORMAL      name, type or NULL, a = default or NULL
// DATA        name, kids = ASSIGN / SPLIT statements
// TRAIN       name = model, name2 = data, kids = settings (ARG), STEP, NOISE
// IMPORT      name = module ("std") or str = path ("examples/layers.nn")
// EXTERN      str = library, name, params, type
// PROGRAM     kids = top-level items (a REPL line may also hold ASSIGN / EXPR)
// ERROR       placeholder where a syntax error was recovered
#ifndef NN_AST_H
#define NN_AST_H

#include <stdio.h>

#include "arena.h"
#include "diag.h"

typedef enum NnAstKind {
    NN_AST_NUM, NN_AST_STR, NN_AST_BOOL, NN_AST_NAME, NN_AST_UNARY, NN_AST_BINARY, NN_AST_PIPE,
    NN_AST_CALL, NN_AST_ARG, NN_AST_FIELD, NN_AST_INDEX, NN_AST_SLICE, NN_AST_LIST, NN_AST_TYPE,
    NN_AST_ASSIGN, NN_AST_RETURN, NN_AST_PARAM, NN_AST_STATE, NN_AST_EXPR, NN_AST_FOR,
    NN_AST_SPLIT, NN_AST_STEP, NN_AST_NOISE,
    NN_AST_FN, NN_AST_LAYER, NN_AST_MODEL, NN_AST_LOSS, NN_AST_OPTIMIZER, NN_AST_FORMAL,
    NN_AST_DATA, NN_AST_TRAIN, NN_AST_IMPORT, NN_AST_EXTERN, NN_AST_PROGRAM, NN_AST_ERROR,
    NN_AST_KIND_COUNT
} NnAstKind;

typedef enum NnAstOp {
    NN_AOP_ADD, NN_AOP_SUB, NN_AOP_MUL, NN_AOP_DIV, NN_AOP_POW, NN_AOP_MATMUL,
    NN_AOP_EQ, NN_AOP_NE, NN_AOP_LT, NN_AOP_LE, NN_AOP_GT, NN_AOP_GE,
    NN_AOP_AND, NN_AOP_OR, NN_AOP_NEG, NN_AOP_NOT
} NnAstOp;

typedef struct NnAst NnAst;

typedef struct NnAstList {
    NnAst **items;
    int count;
} NnAstList;

struct NnAst {
    NnAstKind kind;
    NnLoc loc; // the construct's first token; BINARY points at the operator
    const char *name;
    const char *name2;
    const char *str;
    double num;
    bool is_int;
    bool has_dims;
    bool with_form; // TRAIN: written `train m on d with k = v, ...` (overrides, not a block)
    NnAstOp op;
    NnAst *a, *b;
    NnAst *type;
    NnAstList kids;
    NnAstList params;
};

// Compiler-wide state for one run: the arena holding AST and strings, the
// diagnostics, and where `import std` looks.
typedef struct NnCtx {
    NnArena *arena;
    NnDiags diags;
    const char *stdlib_dir; // directory of the stdlib .nn files
} NnCtx;

void nn_ctx_init(NnCtx *c, FILE *diag_out);
void nn_ctx_fini(NnCtx *c);

// Parses one source into a PROGRAM node (never NULL). Syntax errors go to
// c->diags with recovery per statement and per top-level item.
NnAst *nn_parse(NnCtx *c, const NnSource *src);
// `nnc ir --stage tokens`: one token per line, "line:col KIND text".
void nn_lex_dump(NnCtx *c, const NnSource *src, FILE *out);
// `nnc ir --stage ast`: an indented, stable S-expression dump.
void nn_ast_print(FILE *out, const NnAst *n);
const char *nn_ast_kind_name(NnAstKind k);
const char *nn_ast_op_str(NnAstOp op); // "+", "@", "-" (NEG), "!" ...

// Builders used by the parser.
NnAst *nn_ast_new(NnCtx *c, NnAstKind kind, NnLoc loc);
void nn_ast_push(NnCtx *c, NnAstList *l, NnAst *item);

#endif
