// The parser: goldens (tests/golden/parse/*.nn against their .ast dumps;
// NN_UPDATE_GOLDEN=1 rewrites them), precedence, pipes and named arguments,
// the exact text of syntax diagnostics, and error recovery (one diagnostic
// per mistake, several for several mistakes).
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "testutil.h"

static NnCtx ctx;

static void setup(void) { nn_ctx_init(&ctx, NULL); }
static void teardown(void) { nn_ctx_fini(&ctx); }

TestSuite(parse, .init = setup, .fini = teardown);

static NnAst *parse(const char *text)
{
    return nn_parse(&ctx, nn_source_from_string(ctx.arena, "t.nn", text));
}

// Parses and requires a clean parse.
static NnAst *parse_ok(const char *text)
{
    NnAst *p = parse(text);
    cr_assert_eq(ctx.diags.nerrors, 0, "unexpected errors for:\n%s\n%s", text,
                 nn_diags_text(&ctx.diags));
    return p;
}

// Fully parenthesized infix rendering of an expression, for precedence tests.
static void render(char *buf, size_t cap, const NnAst *n)
{
    char a[512] = "", b[512] = "";
    switch (n->kind) {
    case NN_AST_NUM:
        snprintf(buf, cap, "%g", n->num);
        break;
    case NN_AST_NAME:
        snprintf(buf, cap, "%s", n->name);
        break;
    case NN_AST_BOOL:
        snprintf(buf, cap, "%s", n->num ? "true" : "false");
        break;
    case NN_AST_UNARY:
        render(a, sizeof a, n->a);
        snprintf(buf, cap, "(%s%s)", nn_ast_op_str(n->op), a);
        break;
    case NN_AST_BINARY:
        render(a, sizeof a, n->a);
        render(b, sizeof b, n->b);
        snprintf(buf, cap, "(%s %s %s)", a, nn_ast_op_str(n->op), b);
        break;
    case NN_AST_PIPE:
        render(a, sizeof a, n->a);
        render(b, sizeof b, n->b);
        snprintf(buf, cap, "(%s |> %s)", a, b);
        break;
    case NN_AST_FIELD:
        render(a, sizeof a, n->a);
        snprintf(buf, cap, "%s.%s", a, n->name);
        break;
    case NN_AST_CALL: case NN_AST_INDEX: {
        render(a, sizeof a, n->a);
        size_t len = (size_t)snprintf(buf, cap, "%s%c", a, n->kind == NN_AST_CALL ? '(' : '[');
        for (int i = 0; i < n->kids.count && len < cap; i++) {
            const NnAst *k = n->kids.items[i];
            if (k->kind == NN_AST_ARG) {
                render(b, sizeof b, k->a);
                len += (size_t)snprintf(buf + len, cap - len, "%s%s=%s", i ? ", " : "", k->name, b);
            } else if (k->kind == NN_AST_SLICE) {
                char lo[128] = "", hi[128] = "";
                if (k->a)
                    render(lo, sizeof lo, k->a);
                if (k->b)
                    render(hi, sizeof hi, k->b);
                len += (size_t)snprintf(buf + len, cap - len, "%s%s:%s", i ? ", " : "", lo, hi);
            } else {
                render(b, sizeof b, k);
                len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", b);
            }
        }
        if (len < cap)
            snprintf(buf + len, cap - len, "%c", n->kind == NN_AST_CALL ? ')' : ']');
        break;
    }
    default:
        snprintf(buf, cap, "<%s>", nn_ast_kind_name(n->kind));
    }
}

// "y = EXPR" parsed and rendered.
static const char *expr(const char *src)
{
    static char out[1024];
    char text[512];
    snprintf(text, sizeof text, "y = %s\n", src);
    NnAst *p = parse_ok(text);
    cr_assert_eq(p->kids.count, 1);
    cr_assert_eq(p->kids.items[0]->kind, NN_AST_ASSIGN);
    render(out, sizeof out, p->kids.items[0]->a);
    return out;
}

#define EXPECT_EXPR(src, want) cr_expect_str_eq(expr(src), want, "for %s", src)

Test(parse, precedence)
{
    EXPECT_EXPR("-x ^ 2", "(-(x ^ 2))");
    EXPECT_EXPR("x ^ y ^ z", "(x ^ (y ^ z))");
    EXPECT_EXPR("2 ^ -1", "(2 ^ (-1))");
    EXPECT_EXPR("a + b * c", "(a + (b * c))");
    EXPECT_EXPR("a - b - c", "((a - b) - c)");
    EXPECT_EXPR("a / b @ c", "((a / b) @ c)");
    EXPECT_EXPR("a @ b + c", "((a @ b) + c)");
    EXPECT_EXPR("a < b + 1", "(a < (b + 1))");
    EXPECT_EXPR("a < b && c == d", "((a < b) && (c == d))");
    EXPECT_EXPR("a || b && c", "(a || (b && c))");
    EXPECT_EXPR("!a && b", "((!a) && b)");
    EXPECT_EXPR("-a * b", "((-a) * b)");
    EXPECT_EXPR("-a.b[1] ^ 2", "(-(a.b[1] ^ 2))");
    EXPECT_EXPR("(a + b) * c", "((a + b) * c)");
    EXPECT_EXPR("1 - -1", "(1 - (-1))");
    EXPECT_EXPR("a >= (b != true)", "(a >= (b != true))");
}

Test(parse, pipes_and_postfix)
{
    EXPECT_EXPR("x |> f", "(x |> f)");
    EXPECT_EXPR("x + 1 |> f |> g(2)", "(((x + 1) |> f) |> g(2))");
    EXPECT_EXPR("a || b |> f", "((a || b) |> f)");
    EXPECT_EXPR("m.f(x).y[0, :, 1:3, 2:, :n]", "m.f(x).y[0, :, 1:3, 2:, :n]");
    EXPECT_EXPR("f(a, k = 1, s: 2)", "f(a, k=1, s=2)");
    EXPECT_EXPR("f(step, data = train, loss = split)", "f(step, data=train, loss=split)");
}

Test(parse, pipe_continues_on_next_line)
{
    NnAst *p = parse_ok("y = x\n    |> f\n\n    # note\n    |> g\nz = 1\n");
    cr_assert_eq(p->kids.count, 2);
    char buf[256];
    render(buf, sizeof buf, p->kids.items[0]->a);
    cr_assert_str_eq(buf, "((x |> f) |> g)");
}

Test(parse, named_args_are_arg_nodes)
{
    NnAst *p = parse_ok("f(1, axis = -1, keep = true)\n");
    NnAst *call = p->kids.items[0]->a;
    cr_assert_eq(call->kind, NN_AST_CALL);
    cr_assert_eq(call->kids.count, 3);
    cr_assert_eq(call->kids.items[0]->kind, NN_AST_NUM);
    NnAst *axis = call->kids.items[1];
    cr_assert_eq(axis->kind, NN_AST_ARG);
    cr_assert_str_eq(axis->name, "axis");
    cr_assert_eq(axis->a->kind, NN_AST_UNARY);
    cr_assert_eq(axis->loc.line, 1);
    cr_assert_eq(axis->loc.col, 6);
    cr_assert_eq(call->kids.items[2]->a->kind, NN_AST_BOOL);
    cr_assert_eq(call->kids.items[2]->a->num, 1);
}

Test(parse, items_and_fields)
{
    NnAst *p = parse_ok("layer d(x: f32[N, 4 * u], u: int = 3) -> f32[N, u] {\n"
                        "  param w: f32[N, u] = zeros()\n  return x @ w\n}\n"
                        "extern \"libm.so.6\" fn erff(x: f32) -> f32\n"
                        "import std\nimport \"a/b.nn\"\n"
                        "train m on d with epochs = 2\n");
    cr_assert_eq(p->kids.count, 5);
    NnAst *d = p->kids.items[0];
    cr_assert_eq(d->kind, NN_AST_LAYER);
    cr_assert_str_eq(d->name, "d");
    cr_assert_eq(d->params.count, 2);
    NnAst *x = d->params.items[0];
    cr_assert_eq(x->kind, NN_AST_FORMAL);
    cr_assert(x->type->has_dims);
    cr_assert_str_eq(x->type->name, "f32");
    cr_assert_eq(x->type->kids.count, 2);
    cr_assert_eq(x->type->kids.items[1]->kind, NN_AST_BINARY);
    cr_assert_eq(x->type->kids.items[1]->op, NN_AOP_MUL);
    NnAst *u = d->params.items[1];
    cr_assert_not(u->type->has_dims);
    cr_assert_eq(u->a->num, 3);
    cr_assert(u->a->is_int);
    cr_assert_eq(d->kids.count, 2);
    cr_assert_null(d->a);
    cr_assert_eq(d->kids.items[0]->kind, NN_AST_PARAM);
    cr_assert_eq(d->kids.items[1]->kind, NN_AST_RETURN);
    NnAst *e = p->kids.items[1];
    cr_assert_eq(e->kind, NN_AST_EXTERN);
    cr_assert_str_eq(e->str, "libm.so.6");
    cr_assert_str_eq(e->name, "erff");
    cr_assert_str_eq(e->type->name, "f32");
    cr_assert_str_eq(p->kids.items[2]->name, "std");
    cr_assert_null(p->kids.items[2]->str);
    cr_assert_str_eq(p->kids.items[3]->str, "a/b.nn");
    NnAst *t = p->kids.items[4];
    cr_assert_eq(t->kind, NN_AST_TRAIN);
    cr_assert_str_eq(t->name, "m");
    cr_assert_str_eq(t->name2, "d");
    cr_assert_eq(t->kids.items[0]->kind, NN_AST_ARG);
}

Test(parse, statements)
{
    NnAst *p = parse_ok("fn f(x) {\n  a, b = g(x); c[:, 1] = a\n  state s = 0\n"
                        "  for t in 0..n - 1 { s = s + t }\n  return\n}\n");
    NnAst *f = p->kids.items[0];
    cr_assert_eq(f->kids.count, 5);
    NnAst *as = f->kids.items[0];
    cr_assert_eq(as->kind, NN_AST_ASSIGN);
    cr_assert_eq(as->kids.count, 2);
    cr_assert_eq(as->a->kind, NN_AST_CALL);
    cr_assert_eq(f->kids.items[1]->kids.items[0]->kind, NN_AST_INDEX);
    cr_assert_eq(f->kids.items[2]->kind, NN_AST_STATE);
    NnAst *loop = f->kids.items[3];
    cr_assert_eq(loop->kind, NN_AST_FOR);
    cr_assert_str_eq(loop->name, "t");
    cr_assert_eq(loop->a->num, 0);
    cr_assert_eq(loop->b->kind, NN_AST_BINARY);
    cr_assert_eq(loop->kids.count, 1);
    cr_assert_eq(f->kids.items[4]->kind, NN_AST_RETURN);
    cr_assert_null(f->kids.items[4]->a);
}

Test(parse, locations)
{
    NnAst *p = parse_ok("\n  y = a +\n      b * c\n");
    NnAst *as = p->kids.items[0];
    cr_assert_eq(as->loc.line, 2);
    cr_assert_eq(as->loc.col, 3);
    NnAst *plus = as->a;
    cr_assert_eq(plus->loc.line, 2); // BINARY points at its operator
    cr_assert_eq(plus->loc.col, 9);
    cr_assert_eq(plus->b->loc.line, 3);
    cr_assert_eq(plus->b->loc.col, 9);
    cr_assert_eq(plus->b->b->loc.col, 11);
    cr_assert_eq(plus->b->b->loc.len, 1);
    cr_assert_eq(plus->b->b->loc.src, as->loc.src);
}

Test(parse, empty_and_blank_programs)
{
    cr_assert_eq(parse_ok("")->kids.count, 0);
    cr_assert_eq(parse_ok("\n\n  # only a comment\n;;\n")->kids.count, 0);
    NnAst *p = parse_ok("x = 1"); // no final newline
    cr_assert_eq(p->kind, NN_AST_PROGRAM);
    cr_assert_eq(p->kids.count, 1);
}

Test(parse, ctx_defaults)
{
    cr_assert_not_null(ctx.arena);
    cr_assert(strstr(ctx.stdlib_dir, "/stdlib") != NULL);
    cr_assert_str_eq(nn_ast_kind_name(NN_AST_OPTIMIZER), "optimizer");
    cr_assert_str_eq(nn_ast_op_str(NN_AOP_MATMUL), "@");
    cr_assert_str_eq(nn_ast_op_str(NN_AOP_NEG), "-");
}

Test(parse, push_grows_lists)
{
    NnAstList l = {0};
    NnAst *nodes[100];
    for (int i = 0; i < 100; i++) {
        nodes[i] = nn_ast_new(&ctx, NN_AST_NUM, (NnLoc){0});
        nodes[i]->num = i;
        nn_ast_push(&ctx, &l, nodes[i]);
    }
    cr_assert_eq(l.count, 100);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(l.items[i], nodes[i]);
}

// ---- diagnostics --------------------------------------------------------

static const char *diags_of(const char *text)
{
    parse(text);
    return nn_diags_text(&ctx.diags);
}

Test(parse, diag_missing_operand)
{
    cr_assert_str_eq(diags_of("x = f(1 + )\n"),
                     "t.nn:1:11: error: unexpected ')', expected expression\n"
                     "    1 | x = f(1 + )\n"
                     "      |           ^\n");
}

Test(parse, diag_unclosed_block)
{
    cr_assert_str_eq(diags_of("model m(x) {\n  h = x\n"),
                     "t.nn:2:8: error: unexpected end of file, expected '}'\n"
                     "    2 |   h = x\n"
                     "      |        ^\n");
}

Test(parse, diag_unterminated_string)
{
    cr_assert_str_eq(diags_of("fn f(x) {\n  s = \"abc\n  return s\n}\n"),
                     "t.nn:2:7: error: unterminated string\n"
                     "    2 |   s = \"abc\n"
                     "      |       ^~~~\n");
}

Test(parse, diag_invalid_character)
{
    cr_assert_str_eq(diags_of("x = 1 \x01 2\n"),
                     "t.nn:1:7: error: invalid character '\\x01'\n"
                     "    1 | x = 1 ? 2\n"
                     "      |       ^\n");
}

Test(parse, diag_unclosed_bracket_note)
{
    cr_assert_str_eq(diags_of("h = dense(x, 10\nreturn h\n"),
                     "t.nn:2:1: error: unexpected 'return', expected ')' or ','\n"
                     "    2 | return h\n"
                     "      | ^~~~~~\n"
                     "t.nn:1:10: note: to match this '('\n"
                     "    1 | h = dense(x, 10\n"
                     "      |          ^\n");
    cr_assert_eq(ctx.diags.nerrors, 1);
}

Test(parse, diag_misspelled_keyword)
{
    const char *t = diags_of("modle m(x) {\n  return x\n}\n");
    cr_assert(strstr(t, "t.nn:1:7: error: unexpected identifier 'm' after 'modle', which is "
                        "not a keyword"), "%s", t);
    cr_assert_eq(ctx.diags.nerrors, 1, "%s", t);
}

Test(parse, diag_expected_tokens)
{
    cr_assert_str_eq(diags_of("fn f(x y) = x\n"),
                     "t.nn:1:8: error: unexpected identifier 'y', expected ')', '=', ',' or ':'\n"
                     "    1 | fn f(x y) = x\n"
                     "      |        ^\n");
}

Test(parse, diag_chained_comparison)
{
    const char *t = diags_of("ok = a < b < c\n");
    cr_assert(strstr(t, "t.nn:1:12: error: unexpected '<': comparisons cannot be chained"), "%s", t);
}

Test(parse, diag_bad_callee_and_target)
{
    const char *t = diags_of("y = f(x)(2)\na + b = 3\nz = x |> 3\n");
    cr_assert(strstr(t, "t.nn:1:5: error: only a name can be called"), "%s", t);
    cr_assert(strstr(t, "t.nn:2:3: error: cannot assign to this expression"), "%s", t);
    cr_assert(strstr(t, "t.nn:3:10: error: the right side of '|>'"), "%s", t);
    cr_assert_eq(ctx.diags.nerrors, 3);
}

Test(parse, one_typo_one_diagnostic)
{
    // An error in a header skips its whole block; one in a statement, the line.
    parse("model m(x y) {\n  h = x\n  for t in 0..T {\n  }\n  return h\n}\n"
          "model n(x) {\n  h = x +* 2\n  for t 0..T {\n    h = h\n  }\n  return h\n}\n");
    cr_assert_eq(ctx.diags.nerrors, 3, "%s", nn_diags_text(&ctx.diags));
    cr_assert_eq(ctx.diags.items[0].loc.line, 1);
    cr_assert_eq(ctx.diags.items[1].loc.line, 8);
    cr_assert_eq(ctx.diags.items[2].loc.line, 9);
}

Test(parse, several_errors_reported_and_rest_parsed)
{
    NnAst *p = parse("fn a(x) = x + * 2\nfn b(x) = )\nfn c(x) = x\ndata d {\n  x = = 1\n"
                     "  split x -> a, b 0.5\n  y = 2\n}\ntrain m on d {\n  batch 3\n}\n");
    cr_assert_eq(ctx.diags.nerrors, 5, "%s", nn_diags_text(&ctx.diags));
    int lines[] = {1, 2, 5, 6, 10};
    for (int i = 0; i < 5; i++)
        cr_expect_eq(ctx.diags.items[i].loc.line, lines[i], "diag %d: %s", i,
                     ctx.diags.items[i].msg);
    // The good parts survive: fn c, and data d with its last assignment.
    bool saw_c = false;
    for (int i = 0; i < p->kids.count; i++)
        saw_c = saw_c || (p->kids.items[i]->name && strcmp(p->kids.items[i]->name, "c") == 0);
    cr_assert(saw_c);
}

Test(parse, error_nodes_mark_recovery)
{
    NnAst *p = parse("fn f(x) {\n  y = )\n  return x\n}\n");
    cr_assert_eq(ctx.diags.nerrors, 1);
    NnAst *f = p->kids.items[0];
    cr_assert_eq(f->kids.count, 2);
    cr_assert_eq(f->kids.items[0]->kind, NN_AST_ERROR);
    cr_assert_eq(f->kids.items[1]->kind, NN_AST_RETURN);
}

// ---- files: goldens, stdlib, examples -------------------------------------

// The repository root: the working directory under ctest, else the source dir.
static const char *root(void)
{
    FILE *f = fopen("tests/golden/parse/01_layers.nn", "r");
    if (f) {
        fclose(f);
        return ".";
    }
    return NN_SOURCE_DIR;
}

typedef void (*FileCheck)(const char *dir, const char *name);

static int each_nn(const char *sub, FileCheck check)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", root(), sub);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".nn") == 0) {
            check(dir, e->d_name);
            n++;
        }
    }
    closedir(d);
    return n;
}

static void check_golden(const char *dir, const char *name)
{
    NnCtx c;
    nn_ctx_init(&c, NULL);
    char path[4200], want_path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(want_path, sizeof want_path, "%.*s.ast", (int)strlen(path) - 3, path);
    NnSource *src = nn_source_load(c.arena, &c.diags, path);
    cr_assert_not_null(src, "cannot read %s", path);
    NnAst *p = nn_parse(&c, src);
    cr_expect_eq(c.diags.nerrors, 0, "%s:\n%s", name, nn_diags_text(&c.diags));
    char *got = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&got, &len);
    nn_ast_print(m, p);
    fclose(m);
    const char *update = getenv("NN_UPDATE_GOLDEN");
    if (update && strcmp(update, "1") == 0) {
        FILE *w = fopen(want_path, "w");
        cr_assert_not_null(w, "cannot write %s", want_path);
        fputs(got, w);
        fclose(w);
    } else {
        char *want = tu_read_file(want_path);
        cr_expect_not_null(want, "missing %s (run with NN_UPDATE_GOLDEN=1)", want_path);
        if (want)
            cr_expect_str_eq(got, want, "%s differs from its golden", name);
        free(want);
    }
    free(got);
    nn_ctx_fini(&c);
}

Test(parse, goldens)
{
    cr_assert_geq(each_nn("tests/golden/parse", check_golden), 8);
}

static void check_parses(const char *dir, const char *name)
{
    NnCtx c;
    nn_ctx_init(&c, NULL);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    NnSource *src = nn_source_load(c.arena, &c.diags, path);
    cr_assert_not_null(src);
    NnAst *p = nn_parse(&c, src);
    cr_expect_eq(c.diags.nerrors, 0, "%s:\n%s", path, nn_diags_text(&c.diags));
    cr_expect_gt(p->kids.count, 0, "%s is empty", path);
    nn_ctx_fini(&c);
}

// Every ```nn block of the language reference parses cleanly.
Test(parse, reference_examples_parse)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/docs/language.md", root());
    char *doc = tu_read_file(path);
    cr_assert_not_null(doc, "cannot read %s", path);
    int blocks = 0;
    for (char *p = doc; (p = strstr(p, "```nn\n"));) {
        p += 6;
        char *end = strstr(p, "```");
        cr_assert_not_null(end);
        *end = 0;
        NnCtx c;
        nn_ctx_init(&c, NULL);
        nn_parse(&c, nn_source_from_string(c.arena, "language.md", p));
        cr_expect_eq(c.diags.nerrors, 0, "block %d:\n%s\n%s", blocks + 1, p,
                     nn_diags_text(&c.diags));
        nn_ctx_fini(&c);
        blocks++;
        p = end + 3;
    }
    free(doc);
    cr_assert_geq(blocks, 6);
}

Test(parse, stdlib_and_examples_parse)
{
    cr_assert_gt(each_nn("stdlib", check_parses), 0);
    each_nn("examples", check_parses);
}
