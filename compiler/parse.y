// Grammar of .nn files: tokens from lex.l (newlines already filtered into
// statement separators) in, one PROGRAM node (compiler/ast.h) out. Items and
// statements recover from syntax errors with bison `error` rules, so each
// mistake gives one diagnostic and parsing goes on. All nodes live in the
// NnCtx arena; nothing is freed here. Expression depth is capped
// (NN_MAX_EXPR_DEPTH) so later recursive walks cannot overflow the stack.
%code requires {
#include "ast.h"

typedef struct NnLexer NnLexer;

typedef struct NnNum {
    double v;
    bool is_int; // written without '.' or exponent
} NnNum;

// State of one nn_parse call, passed to every action and to the lexer.
typedef struct NnParser {
    NnCtx *c;
    const NnSource *src;
    NnLexer *lx;
    NnAst *program;     // items are pushed here as they complete
    bool deep_reported; // "nested too deeply" already said for this statement
} NnParser;
}

%code provides {
NnLexer *nn_lex_open(NnCtx *c, const NnSource *src);
void nn_lex_close(NnLexer *lx);
// Next token for the parser: newlines become NL (inside braces) or TOPSEP
// (at top level) only where they can end a statement; see lex.l.
int nn_lex_next(NnLexer *lx, YYSTYPE *val, NnLoc *loc);
// Source text of the token nn_lex_next returned last (for messages).
const char *nn_lex_last_text(NnLexer *lx, int *len);
// Where the innermost unclosed ( or [ is, and which; false when none is.
bool nn_lex_open_bracket(NnLexer *lx, NnLoc *loc, char *bracket);
// The identifier before the last token when it started a statement (as in
// `modle m(x)`), else NULL.
const char *nn_lex_stray_word(NnLexer *lx, int *len);
}

%code {
#include <string.h>

// Bison calls yylex(&yylval, &yylloc, ps); the token stream comes from lex.l.
#define yylex(val, loc, ps) nn_lex_next((ps)->lx, (val), (loc))

// A node's location spans its tokens when they share a line (for the caret);
// otherwise it is the first token's.
#define YYLLOC_DEFAULT(Cur, Rhs, N)                                                     \
    do {                                                                                \
        if (N) {                                                                        \
            (Cur) = YYRHSLOC(Rhs, 1);                                                   \
            NnLoc last_ = YYRHSLOC(Rhs, N);                                             \
            if (last_.src && last_.line == (Cur).line &&                                \
                last_.col + last_.len > (Cur).col + (Cur).len)                          \
                (Cur).len = last_.col + last_.len - (Cur).col;                          \
        } else {                                                                        \
            (Cur) = YYRHSLOC(Rhs, 0);                                                   \
            (Cur).col += (Cur).len;                                                     \
            (Cur).len = 1;                                                              \
        }                                                                               \
    } while (0)

#define NN_MAX_EXPR_DEPTH 1000

static void yyerror(NnLoc *loc, NnParser *ps, const char *msg);
static NnAst *mk(NnParser *ps, NnAstKind kind, NnLoc loc);
static NnAst *fin(NnParser *ps, NnAst *n);
static NnAst *mk1(NnParser *ps, NnAstKind kind, NnLoc loc, NnAst *a);
static NnAst *unary(NnParser *ps, NnAstOp op, NnLoc loc, NnAst *a);
static NnAst *binary(NnParser *ps, NnAstOp op, NnLoc loc, NnAst *a, NnAst *b);
static NnAst *named(NnParser *ps, NnAstKind kind, NnLoc loc, const char *name);
static NnAst *type_node(NnParser *ps, NnLoc loc, const char *name, NnAstList *dims);
static NnAst *func(NnParser *ps, int kind, NnLoc loc, const char *name, NnAstList formals,
                   NnAst *ret);
static NnAst *check_callee(NnParser *ps, NnAst *callee);
static NnAst *check_target(NnParser *ps, NnAst *t);
static NnAst *check_pipe(NnParser *ps, NnAst *rhs);
static NnAst *check_step(NnParser *ps, NnAst *step);
static NnAst *error_node(NnParser *ps, NnLoc loc);
static NnAstList one(NnParser *ps, NnAst *n);
}

%define api.pure full
%locations
%define api.location.type {NnLoc}
%define parse.error custom
%define parse.lac full
%define lr.default-reduction consistent
%parse-param {NnParser *ps}
%lex-param {NnParser *ps}
%expect 0

%initial-action {
    @$ = (NnLoc){ps->src, 1, 1, 1};
}

%union {
    NnAst *node;
    NnAstList list;
    const char *str;
    NnNum num;
    int kind;
}

%token <str> IDENT "identifier"
%token <num> NUMBER "number"
%token <str> STRING "string"
%token NL "newline"
%token TOPSEP "end of item"
%token FN "'fn'" LAYER "'layer'" MODEL "'model'" LOSS "'loss'" OPTIMIZER "'optimizer'"
%token DATA "'data'" TRAIN "'train'" IMPORT "'import'" EXTERN "'extern'"
%token PARAM "'param'" STATE "'state'" RETURN "'return'" FOR "'for'" IN "'in'" ON "'on'"
%token STEP "'step'" NOISE "'noise'" SPLIT "'split'" TRUE "'true'" FALSE "'false'"
%token WITH "'with'"
%token PIPE "'|>'" OR "'||'" AND "'&&'" EQ "'=='" NE "'!='" LE "'<='" GE "'>='"
%token ARROW "'->'" DOTDOT "'..'"

%left PIPE
%left OR
%left AND
%nonassoc EQ NE '<' LE '>' GE
%left '+' '-'
%left '*' '/' '@'
%precedence UNARY
%right '^'

%type <node> item stmt simple_stmt dstmt tset expr postfix atom arg index formal type dim
%type <node> ret_opt annot_opt default_opt fbody
%type <list> body stmts dbody dstmts tbody tsets exprs args arglist indices formals
%type <list> formal_list dims split_parts split_opts with_list
%type <str> ident
%type <kind> fkind

%%

program:
    top
    ;

top:
    %empty
  | top TOPSEP
  | top item TOPSEP     { nn_ast_push(ps->c, &ps->program->kids, $2); ps->deep_reported = false; }
  | top error TOPSEP    { nn_ast_push(ps->c, &ps->program->kids, error_node(ps, @2)); }
  | top error nl_opt '{' junk '}'
                        { nn_ast_push(ps->c, &ps->program->kids, error_node(ps, @2)); }
  ;

nl_opt:
    %empty
  | NL
  | TOPSEP
  ;

item:
    IMPORT ident        { $$ = named(ps, NN_AST_IMPORT, @1, $2); }
  | IMPORT STRING       { $$ = mk(ps, NN_AST_IMPORT, @1); $$->str = $2; }
  | EXTERN STRING FN ident '(' formals ')' ret_opt
                        { $$ = func(ps, NN_AST_EXTERN, @1, $4, $6, $8); $$->str = $2; }
  | IDENT ident '(' formals ')' ret_opt fbody
                        {
                            // grad erff(x) = ...: the derivative of an extern
                            // function; `grad` is a name everywhere else. Any
                            // other word here is a misspelled keyword.
                            if (strcmp($1, "grad") != 0 || $6 || $7->kind == NN_AST_PROGRAM) {
                                if (strcmp($1, "grad") != 0)
                                    nn_error(&ps->c->diags, @2, "unexpected identifier '%s' "
                                             "after '%s', which is not a keyword", $2, $1);
                                else
                                    nn_error(&ps->c->diags, @1, "a derivative is declared as "
                                             "grad %s(...) = EXPR", $2);
                                $$ = error_node(ps, @1);
                            } else {
                                $$ = func(ps, NN_AST_FN, @1, $2, $4, NULL);
                                $$->name2 = "grad";
                                $$->a = $7;
                            }
                        }
  | fkind ident '(' formals ')' ret_opt fbody
                        {
                            $$ = func(ps, $1, @1, $2, $4, $6);
                            if ($7->kind == NN_AST_PROGRAM)
                                $$->kids = $7->kids; // block body
                            else
                                $$->a = $7;
                        }
  | DATA ident nl_opt '{' dbody '}'
                        { $$ = named(ps, NN_AST_DATA, @1, $2); $$->kids = $5; }
  | TRAIN ident ON ident nl_opt '{' tbody '}'
                        {
                            $$ = named(ps, NN_AST_TRAIN, @1, $2);
                            $$->name2 = $4;
                            $$->kids = $7;
                        }
  | TRAIN ident ON ident WITH with_list
                        {
                            $$ = named(ps, NN_AST_TRAIN, @1, $2);
                            $$->name2 = $4;
                            $$->kids = $6;
                            $$->with_form = true;
                        }
  | simple_stmt
  ;

fkind:
    FN                  { $$ = NN_AST_FN; }
  | LAYER               { $$ = NN_AST_LAYER; }
  | MODEL               { $$ = NN_AST_MODEL; }
  | LOSS                { $$ = NN_AST_LOSS; }
  | OPTIMIZER           { $$ = NN_AST_OPTIMIZER; }
  ;

fbody:
    '=' expr            { $$ = $2; }
  | nl_opt '{' body '}' { $$ = mk(ps, NN_AST_PROGRAM, @2); $$->kids = $3; } // a block holder
  ;

ret_opt:
    %empty              { $$ = NULL; }
  | ARROW type          { $$ = $2; }
  ;

formals:
    %empty              { $$ = (NnAstList){0}; }
  | formal_list
  | formal_list ','
  ;

formal_list:
    formal                  { $$ = one(ps, $1); }
  | formal_list ',' formal  { $$ = $1; nn_ast_push(ps->c, &$$, $3); }
  ;

formal:
    ident annot_opt default_opt
                        { $$ = named(ps, NN_AST_FORMAL, @1, $1); $$->type = $2; $$->a = $3; }
  ;

annot_opt:
    %empty              { $$ = NULL; }
  | ':' type            { $$ = $2; }
  ;

default_opt:
    %empty              { $$ = NULL; }
  | '=' expr            { $$ = $2; }
  ;

type:
    IDENT               { $$ = type_node(ps, @1, $1, NULL); }
  | IDENT '[' dims ']'  { $$ = type_node(ps, @$, $1, &$3); }
  ;

dims:
    dim                 { $$ = one(ps, $1); }
  | dims ',' dim        { $$ = $1; nn_ast_push(ps->c, &$$, $3); }
  ;

dim:
    IDENT               { $$ = named(ps, NN_AST_NAME, @1, $1); }
  | NUMBER              {
                            $$ = mk(ps, NN_AST_NUM, @1);
                            $$->num = $1.v;
                            $$->is_int = $1.is_int;
                            if (!$1.is_int)
                                nn_error(&ps->c->diags, @1, "a dimension must be an integer");
                        }
  | dim '+' dim         { $$ = binary(ps, NN_AOP_ADD, @2, $1, $3); }
  | dim '-' dim         { $$ = binary(ps, NN_AOP_SUB, @2, $1, $3); }
  | dim '*' dim         { $$ = binary(ps, NN_AOP_MUL, @2, $1, $3); }
  | dim '/' dim         { $$ = binary(ps, NN_AOP_DIV, @2, $1, $3); }
  | '(' dim ')'         { $$ = $2; }
  ;

// Blocks of statements: `stmts` holds the terminated ones, `body` allows a
// last one right before '}'. Error recovery skips to the end of the line, or
// over a whole {...} when the error was in a header such as `for`.
body:
    stmts
  | stmts stmt          { $$ = $1; nn_ast_push(ps->c, &$$, $2); }
  | stmts error         { $$ = $1; nn_ast_push(ps->c, &$$, error_node(ps, @2)); }
  ;

stmts:
    %empty              { $$ = (NnAstList){0}; }
  | stmts NL
  | stmts stmt NL       { $$ = $1; nn_ast_push(ps->c, &$$, $2); ps->deep_reported = false; }
  | stmts error NL      { $$ = $1; nn_ast_push(ps->c, &$$, error_node(ps, @2)); }
  | stmts error nl_opt '{' junk '}'
                        { $$ = $1; nn_ast_push(ps->c, &$$, error_node(ps, @2)); }
  ;

stmt:
    PARAM ident ':' type '=' expr
                        { $$ = named(ps, NN_AST_PARAM, @1, $2); $$->type = $4; $$->a = $6; }
  | STATE ident '=' expr
                        { $$ = named(ps, NN_AST_STATE, @1, $2); $$->a = $4; }
  | STATE ident ':' type '=' expr
                        { $$ = named(ps, NN_AST_STATE, @1, $2); $$->type = $4; $$->a = $6; }
  | RETURN              { $$ = mk(ps, NN_AST_RETURN, @1); }
  | RETURN expr         { $$ = mk1(ps, NN_AST_RETURN, @1, $2); }
  | FOR ident IN expr DOTDOT expr nl_opt '{' body '}'
                        {
                            $$ = named(ps, NN_AST_FOR, @1, $2);
                            $$->a = $4;
                            $$->b = $6;
                            $$->kids = $9;
                        }
  | simple_stmt
  ;

simple_stmt:
    exprs '=' expr      {
                            $$ = mk(ps, NN_AST_ASSIGN, @1);
                            for (int i = 0; i < $1.count; i++)
                                $1.items[i] = check_target(ps, $1.items[i]);
                            $$->kids = $1;
                            $$->a = $3;
                        }
  | expr                { $$ = mk1(ps, NN_AST_EXPR, @1, $1); }
  ;

// data NAME { ... }: assignments and split statements only.
dbody:
    dstmts
  | dstmts dstmt        { $$ = $1; nn_ast_push(ps->c, &$$, $2); }
  | dstmts error        { $$ = $1; nn_ast_push(ps->c, &$$, error_node(ps, @2)); }
  ;

dstmts:
    %empty              { $$ = (NnAstList){0}; }
  | dstmts NL
  | dstmts dstmt NL     { $$ = $1; nn_ast_push(ps->c, &$$, $2); ps->deep_reported = false; }
  | dstmts error NL     { $$ = $1; nn_ast_push(ps->c, &$$, error_node(ps, @2)); }
  | dstmts error nl_opt '{' junk '}'
                        { $$ = $1; nn_ast_push(ps->c, &$$, error_node(ps, @2)); }
  ;

dstmt:
    exprs '=' expr      {
                            $$ = mk(ps, NN_AST_ASSIGN, @1);
                            for (int i = 0; i < $1.count; i++)
                                $1.items[i] = check_target(ps, $1.items[i]);
                            $$->kids = $1;
                            $$->a = $3;
                        }
  | SPLIT ident ARROW split_parts split_opts
                        { $$ = named(ps, NN_AST_SPLIT, @1, $2); $$->kids = $4; $$->params = $5; }
  ;

split_parts:
    ident NUMBER        {
                            NnAst *arg = named(ps, NN_AST_ARG, @1, $1);
                            arg->a = mk(ps, NN_AST_NUM, @2);
                            arg->a->num = $2.v;
                            arg->a->is_int = $2.is_int;
                            $$ = one(ps, arg);
                        }
  | split_parts ',' ident NUMBER
                        {
                            NnAst *arg = named(ps, NN_AST_ARG, @3, $3);
                            arg->a = mk(ps, NN_AST_NUM, @4);
                            arg->a->num = $4.v;
                            arg->a->is_int = $4.is_int;
                            $$ = $1;
                            nn_ast_push(ps->c, &$$, arg);
                        }
  ;

split_opts:
    %empty              { $$ = (NnAstList){0}; }
  | '(' args ')'        { $$ = $2; }
  ;

// train M on D { ... }: settings, step blocks and noise declarations.
tbody:
    tsets
  | tsets tset          { $$ = $1; nn_ast_push(ps->c, &$$, $2); }
  | tsets error         { $$ = $1; nn_ast_push(ps->c, &$$, error_node(ps, @2)); }
  ;

tsets:
    %empty              { $$ = (NnAstList){0}; }
  | tsets NL
  | tsets tset NL       { $$ = $1; nn_ast_push(ps->c, &$$, $2); ps->deep_reported = false; }
  | tsets error NL      { $$ = $1; nn_ast_push(ps->c, &$$, error_node(ps, @2)); }
  | tsets error nl_opt '{' junk '}'
                        { $$ = $1; nn_ast_push(ps->c, &$$, error_node(ps, @2)); }
  ;

tset:
    ident '=' expr      { $$ = named(ps, NN_AST_ARG, @1, $1); $$->a = $3; }
  | STEP ident nl_opt '{' tbody '}'
                        { $$ = named(ps, NN_AST_STEP, @1, $2); $$->kids = $5; $$ = check_step(ps, $$); }
  | NOISE ident ':' type '=' expr
                        { $$ = named(ps, NN_AST_NOISE, @1, $2); $$->type = $4; $$->a = $6; }
  ;

with_list:
    ident '=' expr      { NnAst *s = named(ps, NN_AST_ARG, @1, $1); s->a = $3; $$ = one(ps, s); }
  | with_list ',' ident '=' expr
                        {
                            NnAst *s = named(ps, NN_AST_ARG, @3, $3);
                            s->a = $5;
                            $$ = $1;
                            nn_ast_push(ps->c, &$$, s);
                        }
  ;

// Tokens skipped, braces balanced, while recovering from an error in a
// header such as `model m(x y) {`.
junk:
    %empty
  | junk anytok
  | junk '{' junk '}'
  ;

anytok:
    IDENT | NUMBER | STRING | NL | TOPSEP | FN | LAYER | MODEL | LOSS | OPTIMIZER | DATA
  | TRAIN | IMPORT | EXTERN | PARAM | STATE | RETURN | FOR | IN | ON | STEP | NOISE | SPLIT
  | TRUE | FALSE | WITH | PIPE | OR | AND | EQ | NE | LE | GE | ARROW | DOTDOT
  | '+' | '-' | '*' | '/' | '@' | '^' | '<' | '>' | '!' | '=' | '(' | ')' | '[' | ']'
  | ',' | ':' | '.'
  ;

exprs:
    expr                { $$ = one(ps, $1); }
  | exprs ',' expr      { $$ = $1; nn_ast_push(ps->c, &$$, $3); }
  ;

expr:
    expr PIPE expr      { $$ = mk(ps, NN_AST_PIPE, @2); $$->a = $1; $$->b = check_pipe(ps, $3);
                          $$ = fin(ps, $$); }
  | expr OR expr        { $$ = binary(ps, NN_AOP_OR, @2, $1, $3); }
  | expr AND expr       { $$ = binary(ps, NN_AOP_AND, @2, $1, $3); }
  | expr EQ expr        { $$ = binary(ps, NN_AOP_EQ, @2, $1, $3); }
  | expr NE expr        { $$ = binary(ps, NN_AOP_NE, @2, $1, $3); }
  | expr '<' expr       { $$ = binary(ps, NN_AOP_LT, @2, $1, $3); }
  | expr LE expr        { $$ = binary(ps, NN_AOP_LE, @2, $1, $3); }
  | expr '>' expr       { $$ = binary(ps, NN_AOP_GT, @2, $1, $3); }
  | expr GE expr        { $$ = binary(ps, NN_AOP_GE, @2, $1, $3); }
  | expr '+' expr       { $$ = binary(ps, NN_AOP_ADD, @2, $1, $3); }
  | expr '-' expr       { $$ = binary(ps, NN_AOP_SUB, @2, $1, $3); }
  | expr '*' expr       { $$ = binary(ps, NN_AOP_MUL, @2, $1, $3); }
  | expr '/' expr       { $$ = binary(ps, NN_AOP_DIV, @2, $1, $3); }
  | expr '@' expr       { $$ = binary(ps, NN_AOP_MATMUL, @2, $1, $3); }
  | expr '^' expr       { $$ = binary(ps, NN_AOP_POW, @2, $1, $3); }
  | '-' expr %prec UNARY
                        { $$ = unary(ps, NN_AOP_NEG, @$, $2); }
  | '!' expr %prec UNARY
                        { $$ = unary(ps, NN_AOP_NOT, @$, $2); }
  | postfix
  ;

postfix:
    atom
  | postfix '(' args ')'
                        {
                            $$ = mk(ps, NN_AST_CALL, @$);
                            $$->a = check_callee(ps, $1);
                            $$->kids = $3;
                            $$ = fin(ps, $$);
                        }
  | postfix '.' ident   { $$ = mk(ps, NN_AST_FIELD, @$); $$->a = $1; $$->name = $3; $$ = fin(ps, $$); }
  | postfix '[' indices ']'
                        { $$ = mk(ps, NN_AST_INDEX, @$); $$->a = $1; $$->kids = $3; $$ = fin(ps, $$); }
  ;

atom:
    NUMBER              { $$ = mk(ps, NN_AST_NUM, @1); $$->num = $1.v; $$->is_int = $1.is_int; }
  | STRING              { $$ = mk(ps, NN_AST_STR, @1); $$->str = $1; }
  | TRUE                { $$ = mk(ps, NN_AST_BOOL, @1); $$->num = 1; }
  | FALSE               { $$ = mk(ps, NN_AST_BOOL, @1); $$->num = 0; }
  | ident               { $$ = named(ps, NN_AST_NAME, @1, $1); }
  | '(' expr ')'        { $$ = $2; }
  | '[' ']'             { $$ = mk(ps, NN_AST_LIST, @$); }
  | '[' exprs ']'       { $$ = mk(ps, NN_AST_LIST, @$); $$->kids = $2; $$ = fin(ps, $$); }
  | '[' exprs ',' ']'   { $$ = mk(ps, NN_AST_LIST, @$); $$->kids = $2; $$ = fin(ps, $$); }
  ;

args:
    %empty              { $$ = (NnAstList){0}; }
  | arglist
  | arglist ','
  ;

arglist:
    arg                 { $$ = one(ps, $1); }
  | arglist ',' arg     { $$ = $1; nn_ast_push(ps->c, &$$, $3); }
  ;

arg:
    expr
  | ident '=' expr      { $$ = named(ps, NN_AST_ARG, @1, $1); $$->a = $3; $$ = fin(ps, $$); }
  | ident ':' expr      { $$ = named(ps, NN_AST_ARG, @1, $1); $$->a = $3; $$ = fin(ps, $$); }
  ;

indices:
    index               { $$ = one(ps, $1); }
  | indices ',' index   { $$ = $1; nn_ast_push(ps->c, &$$, $3); }
  ;

index:
    expr
  | ':'                 { $$ = mk(ps, NN_AST_SLICE, @1); }
  | expr ':'            { $$ = mk1(ps, NN_AST_SLICE, @$, $1); }
  | ':' expr            { $$ = mk(ps, NN_AST_SLICE, @$); $$->b = $2; $$ = fin(ps, $$); }
  | expr ':' expr       { $$ = mk(ps, NN_AST_SLICE, @$); $$->a = $1; $$->b = $3; $$ = fin(ps, $$); }
  ;

// Words that are keywords in one place and ordinary names elsewhere:
// `train = idx(...)` in a data block, `beta1 ^ step`, `split(x, 4)`.
ident:
    IDENT
  | DATA                { $$ = "data"; }
  | TRAIN               { $$ = "train"; }
  | LOSS                { $$ = "loss"; }
  | OPTIMIZER           { $$ = "optimizer"; }
  | MODEL               { $$ = "model"; }
  | LAYER               { $$ = "layer"; }
  | STEP                { $$ = "step"; }
  | NOISE               { $$ = "noise"; }
  | SPLIT               { $$ = "split"; }
  | WITH                { $$ = "with"; }
  ;

%%

// Parser nodes carry their expression depth just behind the public struct;
// only this file reads it, and only on nodes it made.
typedef struct Box {
    NnAst n;
    int depth;
} Box;

static int depth_of(const NnAst *n)
{
    return n ? ((const Box *)n)->depth : 0;
}

static NnAst *mk(NnParser *ps, NnAstKind kind, NnLoc loc)
{
    Box *b = nn_arena_alloc(ps->c->arena, sizeof *b);
    b->n.kind = kind;
    b->n.loc = loc;
    b->depth = 1;
    return &b->n;
}

static int list_depth(const NnAstList *l)
{
    int d = 0;
    for (int i = 0; i < l->count; i++)
        if (depth_of(l->items[i]) > d)
            d = depth_of(l->items[i]);
    return d;
}

// Completes a node: records its depth, and replaces a too-deep expression by
// an ERROR node (one diagnostic per statement) so nothing downstream recurses
// without bound.
static NnAst *fin(NnParser *ps, NnAst *n)
{
    int d = depth_of(n->a);
    if (depth_of(n->b) > d)
        d = depth_of(n->b);
    if (depth_of(n->type) > d)
        d = depth_of(n->type);
    if (list_depth(&n->kids) > d)
        d = list_depth(&n->kids);
    if (list_depth(&n->params) > d)
        d = list_depth(&n->params);
    if (d + 1 <= NN_MAX_EXPR_DEPTH) {
        ((Box *)n)->depth = d + 1;
        return n;
    }
    if (!ps->deep_reported)
        nn_error(&ps->c->diags, n->loc, "expression nested too deeply (more than %d levels)",
                 NN_MAX_EXPR_DEPTH);
    ps->deep_reported = true;
    return mk(ps, NN_AST_ERROR, n->loc);
}

static NnAst *mk1(NnParser *ps, NnAstKind kind, NnLoc loc, NnAst *a)
{
    NnAst *n = mk(ps, kind, loc);
    n->a = a;
    return fin(ps, n);
}

static NnAst *unary(NnParser *ps, NnAstOp op, NnLoc loc, NnAst *a)
{
    NnAst *n = mk(ps, NN_AST_UNARY, loc);
    n->op = op;
    n->a = a;
    return fin(ps, n);
}

static NnAst *binary(NnParser *ps, NnAstOp op, NnLoc loc, NnAst *a, NnAst *b)
{
    NnAst *n = mk(ps, NN_AST_BINARY, loc);
    n->op = op;
    n->a = a;
    n->b = b;
    return fin(ps, n);
}

static NnAst *named(NnParser *ps, NnAstKind kind, NnLoc loc, const char *name)
{
    NnAst *n = mk(ps, kind, loc);
    n->name = name;
    return n;
}

static NnAstList one(NnParser *ps, NnAst *n)
{
    NnAstList l = {0};
    nn_ast_push(ps->c, &l, n);
    return l;
}

static NnAst *error_node(NnParser *ps, NnLoc loc)
{
    return mk(ps, NN_AST_ERROR, loc);
}

static NnAst *type_node(NnParser *ps, NnLoc loc, const char *name, NnAstList *dims)
{
    static const char *known[] = {"f32", "f64", "i32", "int", "bool", "float"};
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        ok = ok || strcmp(name, known[i]) == 0;
    NnLoc name_loc = loc;
    name_loc.len = (int)strlen(name);
    if (!ok)
        nn_error(&ps->c->diags, name_loc,
                 "unknown type '%s' (expected f32, f64, i32, int, bool or float)", name);
    NnAst *t = named(ps, NN_AST_TYPE, loc, name);
    if (dims) {
        t->has_dims = true;
        t->kids = *dims;
    }
    return fin(ps, t);
}

static NnAst *func(NnParser *ps, int kind, NnLoc loc, const char *name, NnAstList formals,
                   NnAst *ret)
{
    NnAst *f = named(ps, (NnAstKind)kind, loc, name);
    f->params = formals;
    f->type = ret;
    return f;
}

static NnAst *check_callee(NnParser *ps, NnAst *callee)
{
    if (callee->kind != NN_AST_NAME && callee->kind != NN_AST_FIELD &&
        callee->kind != NN_AST_ERROR)
        nn_error(&ps->c->diags, callee->loc, "only a name can be called, like f(x) or m.f(x)");
    return callee;
}

static NnAst *check_target(NnParser *ps, NnAst *t)
{
    if (t->kind != NN_AST_NAME && t->kind != NN_AST_INDEX && t->kind != NN_AST_ERROR) {
        nn_error(&ps->c->diags, t->loc, "cannot assign to this expression (expected a name "
                                        "or an indexed name like x[:, t])");
        return error_node(ps, t->loc);
    }
    return t;
}

static NnAst *check_pipe(NnParser *ps, NnAst *rhs)
{
    if (rhs->kind != NN_AST_NAME && rhs->kind != NN_AST_CALL && rhs->kind != NN_AST_ERROR)
        nn_error(&ps->c->diags, rhs->loc,
                 "the right side of '|>' must be a function name or a call, like f or f(y)");
    return rhs;
}

static NnAst *check_step(NnParser *ps, NnAst *step)
{
    for (int i = 0; i < step->kids.count; i++) {
        NnAst *k = step->kids.items[i];
        if (k->kind == NN_AST_STEP || k->kind == NN_AST_NOISE) {
            nn_error(&ps->c->diags, k->loc, "'%s' is not allowed inside a step block",
                     k->kind == NN_AST_STEP ? "step" : "noise");
            step->kids.items[i] = error_node(ps, k->loc);
        }
    }
    return step;
}

// Bison's own failures: the only one we can reach is its stack limit, hit by
// absurdly deep nesting such as 100000 unary minus signs.
static void yyerror(NnLoc *loc, NnParser *ps, const char *msg)
{
    if (strcmp(msg, "memory exhausted") == 0)
        nn_error(&ps->c->diags, *loc, "expression nested too deeply");
    else
        nn_error(&ps->c->diags, *loc, "%s", msg);
}

// Syntax error messages: "unexpected ')', expected expression". The expected
// set (exact, thanks to LAC) is summarized: expression-start tokens become
// "expression", operators after an operand are left out, and long lists are
// dropped rather than shown.
static bool is_name_tok(yysymbol_kind_t k)
{
    switch (k) {
    case YYSYMBOL_IDENT: case YYSYMBOL_DATA: case YYSYMBOL_TRAIN: case YYSYMBOL_LOSS:
    case YYSYMBOL_OPTIMIZER: case YYSYMBOL_MODEL: case YYSYMBOL_LAYER: case YYSYMBOL_STEP:
    case YYSYMBOL_NOISE: case YYSYMBOL_SPLIT: case YYSYMBOL_WITH:
        return true;
    default:
        return false;
    }
}

// The character of a one-character token ('(' ...), or 0.
static int tok_char(yysymbol_kind_t k)
{
    const char *s = yysymbol_name(k);
    return s[0] == '\'' && s[1] && s[2] == '\'' && !s[3] ? s[1] : 0;
}

static bool is_operator_tok(yysymbol_kind_t k)
{
    switch (k) {
    case YYSYMBOL_PIPE: case YYSYMBOL_OR: case YYSYMBOL_AND: case YYSYMBOL_EQ: case YYSYMBOL_NE:
    case YYSYMBOL_LE: case YYSYMBOL_GE:
        return true;
    default:
        return tok_char(k) && strchr("+-*/@^<>([.", tok_char(k));
    }
}

static bool is_comparison_tok(yysymbol_kind_t k)
{
    return k == YYSYMBOL_EQ || k == YYSYMBOL_NE || k == YYSYMBOL_LE || k == YYSYMBOL_GE ||
           (tok_char(k) && strchr("<>", tok_char(k)));
}

static bool is_expr_start(yysymbol_kind_t k)
{
    return is_name_tok(k) || k == YYSYMBOL_NUMBER || k == YYSYMBOL_STRING ||
           k == YYSYMBOL_TRUE || k == YYSYMBOL_FALSE || (tok_char(k) && strchr("([-!", tok_char(k)));
}

static bool is_stmt_start(yysymbol_kind_t k)
{
    return is_expr_start(k) || k == YYSYMBOL_PARAM || k == YYSYMBOL_STATE ||
           k == YYSYMBOL_RETURN || k == YYSYMBOL_FOR || k == YYSYMBOL_NL || k == YYSYMBOL_TOPSEP;
}

static bool is_item_start(yysymbol_kind_t k)
{
    return is_expr_start(k) || k == YYSYMBOL_FN || k == YYSYMBOL_IMPORT ||
           k == YYSYMBOL_EXTERN || k == YYSYMBOL_NL || k == YYSYMBOL_TOPSEP;
}

// Describes the lookahead: "')'", "identifier 'x'", "end of line".
static const char *describe(NnParser *ps, yysymbol_kind_t k)
{
    int len = 0;
    const char *text = nn_lex_last_text(ps->lx, &len);
    int shown = len > 32 ? 32 : len;
    const char *more = len > 32 ? "..." : "";
    switch (k) {
    case YYSYMBOL_YYEOF:
        return "end of file";
    case YYSYMBOL_NL: case YYSYMBOL_TOPSEP:
        return len == 1 && text[0] == ';' ? "';'" : "end of line";
    case YYSYMBOL_IDENT:
        return nn_arena_printf(ps->c->arena, "identifier '%.*s%s'", shown, text, more);
    case YYSYMBOL_NUMBER:
        return nn_arena_printf(ps->c->arena, "number '%.*s%s'", shown, text, more);
    case YYSYMBOL_STRING:
        return nn_arena_printf(ps->c->arena, "string %.*s%s", shown, text, more);
    default:
        return yysymbol_name(k);
    }
}

static bool is_closer(yysymbol_kind_t k)
{
    return tok_char(k) && strchr(")]}", tok_char(k));
}

// What a set of expected tokens is called as a whole, or NULL.
static const char *category(const bool *has, bool at_eof, bool closers)
{
    if (at_eof && closers)
        return NULL; // only the missing closer matters at the end of the file
    if (has[YYSYMBOL_FN] && has[YYSYMBOL_IMPORT])
        return "declaration or statement";
    if (has[YYSYMBOL_RETURN])
        return "statement";
    if (has[YYSYMBOL_NUMBER] && has[YYSYMBOL_STRING])
        return "expression";
    if (has[YYSYMBOL_NUMBER] && has[YYSYMBOL_IDENT])
        return "dimension";
    if (has[YYSYMBOL_IDENT])
        return "identifier";
    return NULL;
}

// Whether token k is already covered by the category (or not worth naming).
static bool covered(yysymbol_kind_t k, const char *cat, const bool *has)
{
    if (k == YYSYMBOL_YYerror || k == YYSYMBOL_YYUNDEF || k == YYSYMBOL_YYEOF)
        return true;
    if (has[YYSYMBOL_AND] && is_operator_tok(k)) // any operator may follow an operand
        return true;
    if (!cat)
        return false;
    switch (cat[0]) {
    case 'd':
        return cat[1] == 'e' ? is_item_start(k) : is_expr_start(k);
    case 's':
        return is_stmt_start(k);
    case 'e':
        return is_expr_start(k);
    default:
        return is_name_tok(k);
    }
}

static int yyreport_syntax_error(const yypcontext_t *ctx, NnParser *ps)
{
    yysymbol_kind_t look = yypcontext_token(ctx);
    NnLoc loc = *yypcontext_location(ctx);
    NnDiags *d = &ps->c->diags;
    const char *what = describe(ps, look);
    yysymbol_kind_t exp[YYNTOKENS];
    int n = yypcontext_expected_tokens(ctx, exp, YYNTOKENS);
    bool has[YYNTOKENS] = {0}, closers = false;
    for (int i = 0; i < n; i++) {
        has[exp[i]] = true;
        closers = closers || is_closer(exp[i]);
    }
    if (is_comparison_tok(look) && has[YYSYMBOL_AND] && !has[look]) {
        nn_error(d, loc, "unexpected %s: comparisons cannot be chained (combine them with '&&')",
                 what);
        return 0;
    }
    int wlen = 0;
    const char *word = is_name_tok(look) ? nn_lex_stray_word(ps->lx, &wlen) : NULL;
    if (word) {
        nn_error(d, loc, "unexpected %s after '%.*s', which is not a keyword", what, wlen, word);
        return 0;
    }
    bool at_eof = look == YYSYMBOL_YYEOF;
    const char *cat = category(has, at_eof, closers);
    const char *names[6];
    int m = 0;
    if (cat)
        names[m++] = cat;
    bool brace = false, sep = false;
    for (int i = 0; i < n; i++)
        brace = brace || tok_char(exp[i]) == '{';
    for (int i = 0; i < n && m < 6; i++) {
        yysymbol_kind_t k = exp[i];
        if (at_eof && closers) {
            if (is_closer(k))
                names[m++] = yysymbol_name(k);
        } else if (k == YYSYMBOL_NL || k == YYSYMBOL_TOPSEP) {
            // A newline that may only precede '{' is not worth naming.
            if (!sep && !brace && !covered(k, cat, has))
                names[m++] = "end of line";
            sep = true;
        } else if (!covered(k, cat, has)) {
            names[m++] = yysymbol_name(k);
        }
    }
    if (m == 0 || m > 4) {
        nn_error(d, loc, "unexpected %s", what);
        return 0;
    }
    char buf[256] = "";
    for (int i = 0; i < m; i++) {
        if (i > 0)
            strcat(buf, i == m - 1 ? " or " : ", ");
        strncat(buf, names[i], 40);
    }
    nn_error(d, loc, "unexpected %s, expected %s", what, buf);
    // A closer expected on a later line: show where the bracket opened.
    NnLoc open;
    char bracket;
    if (closers && nn_lex_open_bracket(ps->lx, &open, &bracket) && (at_eof || open.line != loc.line))
        nn_note(d, open, "to match this '%c'", bracket);
    return 0;
}

NnAst *nn_parse(NnCtx *c, const NnSource *src)
{
    NnParser ps = {.c = c, .src = src};
    ps.program = mk(&ps, NN_AST_PROGRAM, (NnLoc){src, 1, 1, 1});
    ps.lx = nn_lex_open(c, src);
    yyparse(&ps);
    nn_lex_close(ps.lx);
    return ps.program;
}
