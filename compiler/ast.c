// AST support: the compiler context, node builders, names of kinds and
// operators, and the stable S-expression printer behind `--stage ast` and the
// tests/golden/parse goldens. One node per line, children indented by two,
// closing parens on the last line of a node. Slice bounds and loop bounds
// always print (an absent one as `_`); other absent fields are left out.
#include "ast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Hidden: libnanomsg (pulled in by Criterion) has its own global nn_ctx_init,
// and an exported one here would replace it inside that library and hang it.
__attribute__((visibility("hidden"))) void nn_ctx_init(NnCtx *c, FILE *diag_out)
{
    memset(c, 0, sizeof *c);
    c->arena = nn_arena_new();
    nn_diags_init(&c->diags, c->arena, diag_out);
    c->stdlib_dir = NN_SOURCE_DIR "/stdlib";
}

void nn_ctx_fini(NnCtx *c)
{
    nn_arena_free(c->arena);
    c->arena = NULL;
}

NnAst *nn_ast_new(NnCtx *c, NnAstKind kind, NnLoc loc)
{
    NnAst *n = nn_arena_alloc(c->arena, sizeof *n);
    n->kind = kind;
    n->loc = loc;
    return n;
}

// Capacity is implicit: arrays hold 4, 8, 16, ... items, so a list must only
// ever grow through this function (or be replaced whole).
void nn_ast_push(NnCtx *c, NnAstList *l, NnAst *item)
{
    int n = l->count;
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
        size_t cap = n == 0 ? 4 : (size_t)n * 2;
        NnAst **items = nn_arena_alloc(c->arena, cap * sizeof *items);
        if (n)
            memcpy(items, l->items, (size_t)n * sizeof *items);
        l->items = items;
    }
    l->items[l->count++] = item;
}

static const char *const kind_names[NN_AST_KIND_COUNT] = {
    [NN_AST_NUM] = "num",       [NN_AST_STR] = "str",         [NN_AST_BOOL] = "bool",
    [NN_AST_NAME] = "name",     [NN_AST_UNARY] = "unary",     [NN_AST_BINARY] = "binary",
    [NN_AST_PIPE] = "pipe",     [NN_AST_CALL] = "call",       [NN_AST_ARG] = "arg",
    [NN_AST_FIELD] = "field",   [NN_AST_INDEX] = "index",     [NN_AST_SLICE] = "slice",
    [NN_AST_LIST] = "list",     [NN_AST_TYPE] = "type",       [NN_AST_ASSIGN] = "assign",
    [NN_AST_RETURN] = "return", [NN_AST_PARAM] = "param",     [NN_AST_STATE] = "state",
    [NN_AST_EXPR] = "expr",     [NN_AST_FOR] = "for",         [NN_AST_SPLIT] = "split",
    [NN_AST_STEP] = "step",     [NN_AST_NOISE] = "noise",     [NN_AST_FN] = "fn",
    [NN_AST_LAYER] = "layer",   [NN_AST_MODEL] = "model",     [NN_AST_LOSS] = "loss",
    [NN_AST_OPTIMIZER] = "optimizer", [NN_AST_FORMAL] = "formal", [NN_AST_DATA] = "data",
    [NN_AST_TRAIN] = "train",   [NN_AST_IMPORT] = "import",   [NN_AST_EXTERN] = "extern",
    [NN_AST_PROGRAM] = "program", [NN_AST_ERROR] = "error",
};

const char *nn_ast_kind_name(NnAstKind k)
{
    return (unsigned)k < NN_AST_KIND_COUNT && kind_names[k] ? kind_names[k] : "?";
}

const char *nn_ast_op_str(NnAstOp op)
{
    static const char *const ops[] = {
        [NN_AOP_ADD] = "+", [NN_AOP_SUB] = "-", [NN_AOP_MUL] = "*",  [NN_AOP_DIV] = "/",
        [NN_AOP_POW] = "^", [NN_AOP_MATMUL] = "@", [NN_AOP_EQ] = "==", [NN_AOP_NE] = "!=",
        [NN_AOP_LT] = "<",  [NN_AOP_LE] = "<=", [NN_AOP_GT] = ">",   [NN_AOP_GE] = ">=",
        [NN_AOP_AND] = "&&", [NN_AOP_OR] = "||", [NN_AOP_NEG] = "-", [NN_AOP_NOT] = "!",
    };
    return (unsigned)op < sizeof ops / sizeof *ops ? ops[op] : "?";
}

// Shortest decimal form that reads back as the same double.
static void print_num(FILE *out, double v, bool is_int)
{
    if (is_int && fabs(v) < 1e18) {
        fprintf(out, "%.0f", v);
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    // Keep floats recognizable: 2 stays "2.0" when it was written 2.0.
    if (!strpbrk(buf, ".eEni"))
        strcat(buf, ".0");
    fputs(buf, out);
}

static void print_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", out);
        else if (ch == '\t')
            fputs("\\t", out);
        else if (ch < 32 || ch == 127)
            fprintf(out, "\\x%02x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

static void print_node(FILE *out, const NnAst *n, int indent);

static void child(FILE *out, const NnAst *n, int indent)
{
    fprintf(out, "\n%*s", indent, "");
    print_node(out, n, indent);
}

static void children(FILE *out, const NnAstList *l, int indent)
{
    for (int i = 0; i < l->count; i++)
        child(out, l->items[i], indent);
}

// A labelled group, e.g. (params ...), printed only when non-empty.
static void group(FILE *out, const char *label, const NnAstList *l, int indent)
{
    if (l->count == 0)
        return;
    fprintf(out, "\n%*s(%s", indent, "", label);
    children(out, l, indent + 2);
    fputc(')', out);
}

// The part of a node's first line after its kind.
static void print_head(FILE *out, const NnAst *n)
{
    switch (n->kind) {
    case NN_AST_NUM:
        fputc(' ', out);
        print_num(out, n->num, n->is_int);
        break;
    case NN_AST_STR:
        fputc(' ', out);
        print_str(out, n->str ? n->str : "");
        break;
    case NN_AST_BOOL:
        fputs(n->num != 0 ? " true" : " false", out);
        break;
    case NN_AST_UNARY: case NN_AST_BINARY:
        fprintf(out, " %s", nn_ast_op_str(n->op));
        break;
    case NN_AST_IMPORT:
        fputc(' ', out);
        if (n->str)
            print_str(out, n->str);
        else
            fputs(n->name ? n->name : "_", out);
        break;
    case NN_AST_EXTERN:
        fputc(' ', out);
        print_str(out, n->str ? n->str : "");
        fprintf(out, " %s", n->name ? n->name : "_");
        break;
    case NN_AST_TRAIN:
        fprintf(out, " %s on %s", n->name ? n->name : "_", n->name2 ? n->name2 : "_");
        break;
    default:
        if (n->name)
            fprintf(out, " %s", n->name);
        break;
    }
}

static void print_node(FILE *out, const NnAst *n, int indent)
{
    if (!n) {
        fputc('_', out);
        return;
    }
    fprintf(out, "(%s", nn_ast_kind_name(n->kind));
    print_head(out, n);
    int in = indent + 2;
    switch (n->kind) {
    case NN_AST_SLICE: case NN_AST_FOR:
        child(out, n->a, in);
        child(out, n->b, in);
        children(out, &n->kids, in);
        break;
    case NN_AST_ASSIGN: case NN_AST_INDEX: case NN_AST_CALL:
        if (n->kind == NN_AST_ASSIGN) {
            children(out, &n->kids, in); // targets, then the value
            child(out, n->a, in);
        } else {
            child(out, n->a, in); // callee or indexed value, then args/indices
            children(out, &n->kids, in);
        }
        break;
    case NN_AST_SPLIT:
        children(out, &n->kids, in);
        group(out, "options", &n->params, in);
        break;
    case NN_AST_FN: case NN_AST_LAYER: case NN_AST_MODEL: case NN_AST_LOSS:
    case NN_AST_OPTIMIZER: case NN_AST_EXTERN:
        group(out, "params", &n->params, in);
        if (n->type) {
            fprintf(out, "\n%*s(returns", in, "");
            child(out, n->type, in + 2);
            fputc(')', out);
        }
        if (n->a)
            child(out, n->a, in);
        children(out, &n->kids, in);
        break;
    default:
        // Fields in a fixed order; absent ones are simply skipped because for
        // these kinds each is either always or never present.
        if (n->type)
            child(out, n->type, in);
        if (n->a)
            child(out, n->a, in);
        if (n->b)
            child(out, n->b, in);
        group(out, "params", &n->params, in);
        children(out, &n->kids, in);
        break;
    }
    fputc(')', out);
}

void nn_ast_print(FILE *out, const NnAst *n)
{
    print_node(out, n, 0);
    fputc('\n', out);
}
