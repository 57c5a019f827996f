// The lexer, seen through nn_lex_dump ("line:col KIND text" per token) and
// through the values the parser receives: tokens and keywords, numbers with
// exponents, strings and escapes, the newline rules, locations, and the
// diagnostics for malformed tokens.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"

static NnCtx ctx;

static void setup(void) { nn_ctx_init(&ctx, NULL); }
static void teardown(void) { nn_ctx_fini(&ctx); }

TestSuite(lex, .init = setup, .fini = teardown);

static const char *dump(const char *text)
{
    NnSource *src = nn_source_from_string(ctx.arena, "t.nn", text);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nn_lex_dump(&ctx, src, f);
    fclose(f);
    char *copy = nn_arena_strdup(ctx.arena, buf);
    free(buf);
    return copy;
}

// Only the KIND column of each line, space separated: "IDENT PUNCT NUMBER ...".
static const char *kinds(const char *text)
{
    const char *d = dump(text);
    char *out = nn_arena_alloc(ctx.arena, strlen(d) + 1);
    size_t n = 0;
    for (const char *line = d; *line;) {
        const char *sp = strchr(line, ' ') + 1;
        const char *end = sp + strcspn(sp, " \n");
        if (n)
            out[n++] = ' ';
        memcpy(out + n, sp, (size_t)(end - sp));
        n += (size_t)(end - sp);
        line = strchr(line, '\n') + 1;
    }
    out[n] = 0;
    return out;
}

// The value of `x = <expr>` after parsing.
static NnAst *value(const char *text)
{
    NnAst *p = nn_parse(&ctx, nn_source_from_string(ctx.arena, "t.nn", text));
    cr_assert_eq(ctx.diags.nerrors, 0, "%s", nn_diags_text(&ctx.diags));
    cr_assert_eq(p->kids.count, 1);
    return p->kids.items[0]->a;
}

Test(lex, tokens_and_locations)
{
    cr_assert_str_eq(dump("model m(x) {\n  h = x |> f -> a..b\n}"),
                     "1:1 KEYWORD model\n"
                     "1:7 IDENT m\n"
                     "1:8 PUNCT (\n"
                     "1:9 IDENT x\n"
                     "1:10 PUNCT )\n"
                     "1:12 PUNCT {\n"
                     "2:3 IDENT h\n"
                     "2:5 PUNCT =\n"
                     "2:7 IDENT x\n"
                     "2:9 OP |>\n"
                     "2:12 IDENT f\n"
                     "2:14 OP ->\n"
                     "2:17 IDENT a\n"
                     "2:18 OP ..\n"
                     "2:20 IDENT b\n"
                     "2:21 NEWLINE\n"
                     "3:1 PUNCT }\n"
                     "3:2 NEWLINE\n"
                     "3:2 EOF\n");
}

Test(lex, operators)
{
    cr_assert_str_eq(kinds("|| && == != <= >= < > + - * / @ ^ ! = ( ) [ ] , : . ;"),
                     "OP OP OP OP OP OP PUNCT PUNCT PUNCT PUNCT PUNCT PUNCT PUNCT PUNCT PUNCT "
                     "PUNCT PUNCT PUNCT PUNCT PUNCT PUNCT PUNCT PUNCT NEWLINE EOF");
}

Test(lex, keywords_and_type_names)
{
    const char *words = "fn layer model loss optimizer data train import extern param state "
                        "return for in on step noise split true false with";
    const char *k = kinds(words);
    int n = 0;
    for (const char *p = k; (p = strstr(p, "KEYWORD")); p++)
        n++;
    cr_assert_eq(n, 21, "%s", k);
    // Type names are ordinary identifiers; the type rule checks them.
    cr_assert_str_eq(kinds("f32 f64 i32 int bool float models _x1"),
                     "IDENT IDENT IDENT IDENT IDENT IDENT IDENT IDENT NEWLINE EOF");
}

Test(lex, numbers)
{
    cr_assert_str_eq(dump("1 2.5 1e-3 2.5e+4 7E2 0..T"),
                     "1:1 NUMBER 1\n1:3 NUMBER 2.5\n1:7 NUMBER 1e-3\n1:12 NUMBER 2.5e+4\n"
                     "1:19 NUMBER 7E2\n1:23 NUMBER 0\n1:24 OP ..\n1:26 IDENT T\n"
                     "1:27 NEWLINE\n1:27 EOF\n");
    NnAst *v = value("x = [1, 2.5, 1e-3, 2.5e+4, 7E2, 1.0]\n");
    double want[] = {1, 2.5, 0.001, 25000, 700, 1};
    bool is_int[] = {true, false, false, false, false, false};
    cr_assert_eq(v->kids.count, 6);
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(v->kids.items[i]->kind, NN_AST_NUM);
        cr_expect_eq(v->kids.items[i]->num, want[i], "item %d", i);
        cr_expect_eq(v->kids.items[i]->is_int, is_int[i], "item %d", i);
    }
}

Test(lex, strings_and_escapes)
{
    NnAst *v = value("x = \"a\\n\\t\\\\\\\"b # not a comment\"\n");
    cr_assert_eq(v->kind, NN_AST_STR);
    cr_assert_str_eq(v->str, "a\n\t\\\"b # not a comment");
    cr_assert_str_eq(value("x = \"\"\n")->str, "");
    cr_assert_str_eq(dump("\"a b\" \"\\\"\""), "1:1 STRING \"a b\"\n1:7 STRING \"\\\"\"\n"
                                               "1:11 NEWLINE\n1:11 EOF\n");
}

Test(lex, comments)
{
    cr_assert_str_eq(kinds("x # comment ( [\ny // other comment\n# only\n"),
                     "IDENT NEWLINE IDENT NEWLINE EOF");
    cr_assert_str_eq(kinds("x # at end of file, no newline"), "IDENT NEWLINE EOF");
}

Test(lex, newline_only_after_a_statement_end)
{
    // After an operator, ',' or '=' the statement goes on.
    cr_assert_str_eq(kinds("a +\nb\n"), "IDENT PUNCT IDENT NEWLINE EOF");
    cr_assert_str_eq(kinds("a =\nb,\nc\n"), "IDENT PUNCT IDENT PUNCT IDENT NEWLINE EOF");
    // Names, literals, closers, true/false and return end a line.
    cr_assert_str_eq(kinds("1\n\"s\"\n)\n]\n}\ntrue\nfalse\nreturn\nstep\n"),
                     "NUMBER NEWLINE STRING NEWLINE PUNCT NEWLINE PUNCT NEWLINE PUNCT NEWLINE "
                     "KEYWORD NEWLINE KEYWORD NEWLINE KEYWORD NEWLINE KEYWORD NEWLINE EOF");
    // Keywords that never end a statement do not.
    cr_assert_str_eq(kinds("fn\nin\n"), "KEYWORD KEYWORD EOF");
    // Blank lines and comment lines collapse into one separator.
    cr_assert_str_eq(kinds("a\n\n\n# c\n\nb"), "IDENT NEWLINE IDENT NEWLINE EOF");
}

Test(lex, brackets_suppress_newlines_braces_do_not)
{
    cr_assert_str_eq(kinds("f(a,\n  b\n)\n"), "IDENT PUNCT IDENT PUNCT IDENT PUNCT NEWLINE EOF");
    cr_assert_str_eq(kinds("[a\n]\n"), "PUNCT IDENT PUNCT NEWLINE EOF");
    cr_assert_str_eq(kinds("f((a)\n)\n"), "IDENT PUNCT PUNCT IDENT PUNCT PUNCT NEWLINE EOF");
    cr_assert_str_eq(kinds("{\na\n}\n"), "PUNCT IDENT NEWLINE PUNCT NEWLINE EOF");
    // A stray ')' does not make the depth negative.
    cr_assert_str_eq(kinds(")\na\n"), "PUNCT NEWLINE IDENT NEWLINE EOF");
}

Test(lex, pipe_at_line_start_continues)
{
    cr_assert_str_eq(kinds("x\n  |> f\n\n  # c\n  |> g\ny\n"),
                     "IDENT OP IDENT OP IDENT NEWLINE IDENT NEWLINE EOF");
}

Test(lex, semicolon_is_a_separator)
{
    cr_assert_str_eq(dump("a; b"), "1:1 IDENT a\n1:2 NEWLINE ;\n1:4 IDENT b\n1:5 NEWLINE\n"
                                   "1:5 EOF\n");
}

Test(lex, columns_count_bytes)
{
    // Tabs and UTF-8 inside strings are bytes too.
    cr_assert_str_eq(dump("\tx = \"\xc3\xa9\" y"), "1:2 IDENT x\n1:4 PUNCT =\n1:6 STRING \"\xc3\xa9\"\n"
                                                   "1:11 IDENT y\n1:12 NEWLINE\n1:12 EOF\n");
}

// "line:col:len message" of the first diagnostic the text produces.
static const char *first_error(const char *text)
{
    int before = ctx.diags.count;
    nn_parse(&ctx, nn_source_from_string(ctx.arena, "t.nn", text));
    cr_assert_gt(ctx.diags.count, before, "no diagnostic for %s", text);
    NnDiag *d = &ctx.diags.items[before];
    return nn_arena_printf(ctx.arena, "%d:%d:%d %s", d->loc.line, d->loc.col, d->loc.len, d->msg);
}

Test(lex, malformed_tokens)
{
    cr_expect_str_eq(first_error("x = \"abc\n"), "1:5:4 unterminated string");
    cr_expect_str_eq(first_error("x = \"abc\\"), "1:5:5 unterminated string");
    cr_expect_str_eq(first_error("x = 1 $ 2\n"), "1:7:1 invalid character '$'");
    cr_expect_str_eq(first_error("x = \x7f\n"), "1:5:1 invalid character '\\x7f'");
    cr_expect_str_eq(first_error("x = \"a\\qb\"\n"), "1:7:2 invalid escape '\\q' in string");
    cr_expect_str_eq(first_error("x = 1e+\n"), "1:5:3 invalid number '1e+'");
    cr_expect_str_eq(first_error("x = 12ab\n"), "1:5:4 invalid number '12ab'");
    cr_expect_str_eq(first_error("x = 1.5x\n"), "1:5:4 invalid number '1.5x'");
    cr_expect_str_eq(first_error("x = 1e999\n"), "1:5:5 number '1e999' is too large");
    cr_expect_str_eq(first_error("x = | 2\n"), "1:5:1 invalid character '|'");
}

Test(lex, nul_bytes_are_errors)
{
    static const char text[] = "x = 1\0 + 2\ny = \"a\0b\"\n";
    NnSource *src = nn_source_from_string(ctx.arena, "t.nn", "");
    src->text = text;
    src->len = sizeof text - 1;
    nn_parse(&ctx, src);
    cr_assert_eq(ctx.diags.nerrors, 2, "%s", nn_diags_text(&ctx.diags));
    cr_assert_str_eq(ctx.diags.items[0].msg, "invalid character '\\x00'");
    cr_assert_eq(ctx.diags.items[0].loc.col, 6);
    cr_assert_str_eq(ctx.diags.items[1].msg, "invalid character '\\x00' in string");
    cr_assert_eq(ctx.diags.items[1].loc.line, 2);
    cr_assert_eq(ctx.diags.items[1].loc.col, 7);
}

Test(lex, one_lexical_error_per_line)
{
    nn_parse(&ctx, nn_source_from_string(ctx.arena, "t.nn", "x = $ $ $ \x01\x02\x03\ny = ? ?\n"));
    cr_assert_eq(ctx.diags.nerrors, 2, "%s", nn_diags_text(&ctx.diags));
    cr_assert_eq(ctx.diags.items[1].loc.line, 2);
}
