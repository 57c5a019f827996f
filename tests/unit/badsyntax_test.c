// Malformed input never crashes, hangs or goes unreported. Every
// tests/bad/*.nn script holds one mistake and names the first diagnostic it
// must produce in its first line ("# expect: <substring>"); each must give
// exactly that one error at a location inside the file. Generated inputs
// (empty, 1 MB lines, deep nesting, random bytes, NULs) must parse or be
// diagnosed quickly.
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ast.h"

static NnCtx ctx;

static void setup(void) { nn_ctx_init(&ctx, NULL); }
static void teardown(void) { nn_ctx_fini(&ctx); }

TestSuite(badsyntax, .init = setup, .fini = teardown);

static const char *bad_dir(void)
{
    DIR *d = opendir("tests/bad");
    if (d) {
        closedir(d);
        return "tests/bad";
    }
    return NN_SOURCE_DIR "/tests/bad";
}

// Number of lines, counting a last line without '\n'.
static int count_lines(const NnSource *s)
{
    int n = 1;
    for (size_t i = 0; i < s->len; i++)
        n += s->text[i] == '\n' && i + 1 < s->len;
    return n;
}

static int line_length(const NnSource *s, int line)
{
    size_t i = 0;
    for (int l = 1; l < line && i < s->len; i++)
        l += s->text[i] == '\n';
    size_t start = i;
    while (i < s->len && s->text[i] != '\n')
        i++;
    return (int)(i - start);
}

// A diagnostic's location must point into the source: a real line, and a
// column at most one past that line's end.
static void check_loc(const NnSource *s, const NnDiag *d, const char *name)
{
    cr_assert_eq(d->loc.src, s, "%s: diagnostic without source location: %s", name, d->msg);
    cr_assert(d->loc.line >= 1 && d->loc.line <= count_lines(s), "%s: line %d out of range",
              name, d->loc.line);
    cr_assert(d->loc.col >= 1 && d->loc.col <= line_length(s, d->loc.line) + 1,
              "%s: column %d out of range on line %d", name, d->loc.col, d->loc.line);
    cr_assert_geq(d->loc.len, 1, "%s", name);
}

static void check_script(const char *dir, const char *name)
{
    NnCtx c;
    nn_ctx_init(&c, NULL);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    NnSource *src = nn_source_load(c.arena, &c.diags, path);
    cr_assert_not_null(src, "cannot read %s", path);
    const char *tag = "# expect: ";
    cr_assert(strncmp(src->text, tag, strlen(tag)) == 0, "%s: first line must be '%s...'", name,
              tag);
    const char *from = src->text + strlen(tag);
    char *expect = nn_arena_strndup(c.arena, from, strcspn(from, "\n"));
    nn_parse(&c, src);
    cr_assert_geq(c.diags.nerrors, 1, "%s: no diagnostic", name);
    const NnDiag *d = &c.diags.items[0];
    cr_expect(d->kind == NN_DIAG_ERROR && strstr(d->msg, expect),
              "%s: expected '%s', got:\n%s", name, expect, nn_diags_text(&c.diags));
    cr_expect_eq(c.diags.nerrors, 1, "%s: one mistake should give one error, got:\n%s", name,
                 nn_diags_text(&c.diags));
    for (int i = 0; i < c.diags.count; i++)
        check_loc(src, &c.diags.items[i], name);
    nn_ctx_fini(&c);
}

Test(badsyntax, corpus)
{
    DIR *d = opendir(bad_dir());
    cr_assert_not_null(d, "no tests/bad directory");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".nn") == 0) {
            check_script(bad_dir(), e->d_name);
            n++;
        }
    }
    closedir(d);
    cr_assert_geq(n, 30, "only %d malformed scripts", n);
}

// ---- generated inputs ------------------------------------------------------

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

// Parses len bytes (NULs allowed) and checks every diagnostic's location;
// returns the number of errors. Each input must take well under a second
// even in a sanitized debug build, so nothing is quadratic.
static int parse_bytes(const char *bytes, size_t len)
{
    char *text = nn_arena_alloc(ctx.arena, len + 1);
    memcpy(text, bytes, len);
    NnSource *src = nn_source_from_string(ctx.arena, "gen.nn", "");
    src->text = text;
    src->len = len;
    int before = ctx.diags.nerrors, first = ctx.diags.count;
    double t0 = now();
    NnAst *p = nn_parse(&ctx, src);
    double dt = now() - t0;
    cr_assert_not_null(p);
    cr_assert_eq(p->kind, NN_AST_PROGRAM);
    cr_expect_lt(dt, 5.0, "parsing %zu bytes took %.2f s", len, dt);
    for (int i = first; i < ctx.diags.count; i++)
        check_loc(src, &ctx.diags.items[i], "generated");
    return ctx.diags.nerrors - before;
}

static int parse_str(const char *s) { return parse_bytes(s, strlen(s)); }

static char *repeat(const char *head, const char *unit, size_t times, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(hl + ul * times + tl + 1);
    memcpy(s, head, hl);
    for (size_t i = 0; i < times; i++)
        memcpy(s + hl + i * ul, unit, ul);
    memcpy(s + hl + ul * times, tail, tl + 1);
    return s;
}

Test(badsyntax, empty_and_whitespace)
{
    cr_assert_eq(parse_str(""), 0);
    cr_assert_eq(parse_str("\n\n\n"), 0);
    cr_assert_eq(parse_str("   \t  "), 0);
    cr_assert_eq(parse_str("# just a comment"), 0);
}

Test(badsyntax, megabyte_lines)
{
    // A valid 1 MB line: a long list.
    char *list = repeat("x = [", "12345, ", 150000, "0]\n");
    cr_assert_eq(parse_str(list), 0);
    free(list);
    // A long flat sum nests too deeply for later passes: one diagnostic.
    char *sum = repeat("x = 0", " + 1", 250000, "\n");
    cr_assert_eq(parse_str(sum), 1);
    cr_assert(strstr(ctx.diags.items[ctx.diags.count - 1].msg, "nested too deeply"));
    free(sum);
    // 1 MB identifier, string and comment.
    char *id = repeat("x = ", "a", 1 << 20, "\n");
    cr_assert_eq(parse_str(id), 0);
    free(id);
    char *str = repeat("x = \"", "s", 1 << 20, "\"\n");
    cr_assert_eq(parse_str(str), 0);
    free(str);
    char *unterminated = repeat("x = \"", "s", 1 << 20, "\ny = 1\n");
    cr_assert_eq(parse_str(unterminated), 1);
    free(unterminated);
    char *comment = repeat("# ", "c", 1 << 20, "");
    cr_assert_eq(parse_str(comment), 0);
    free(comment);
    char *garbage = repeat("x = ", "$", 1 << 20, "\n");
    cr_assert_eq(parse_str(garbage), 1);
    free(garbage);
}

Test(badsyntax, deep_nesting)
{
    char *open = repeat("x = ", "(", 100000, "1");
    cr_assert_eq(parse_str(open), 1);
    free(open);
    char *opens = repeat("x = ", "(", 100000, "");
    cr_assert_geq(parse_str(opens), 1);
    free(opens);
    char *balanced = malloc(200010);
    strcpy(balanced, "x = ");
    memset(balanced + 4, '(', 100000);
    memset(balanced + 100004, ')', 100000);
    strcpy(balanced + 200004, "\n");
    cr_assert_eq(parse_str(balanced), 1);
    free(balanced);
    char *brackets = repeat("x = ", "[", 100000, "\n");
    cr_assert_geq(parse_str(brackets), 1);
    free(brackets);
    char *braces = repeat("model m(x) ", "{", 100000, "\n");
    cr_assert_geq(parse_str(braces), 1);
    free(braces);
    char *minus = repeat("x = ", "-", 100000, "1\n");
    cr_assert_eq(parse_str(minus), 1);
    free(minus);
    char *pow = repeat("x = 2", "^2", 100000, "\n");
    cr_assert_eq(parse_str(pow), 1);
    free(pow);
    char *nots = repeat("x = ", "!", 100000, "a\n");
    cr_assert_eq(parse_str(nots), 1);
    free(nots);
    // Nesting under the limits is fine.
    char *ok = repeat("x = ", "(", 200, "1");
    char *ok2 = repeat(ok, ")", 200, "\n");
    cr_assert_eq(parse_str(ok2), 0);
    free(ok);
    free(ok2);
    // After a too-deep statement the next statements are still checked.
    char *deep = repeat("x = ", "(", 1000, "1");
    char *deep2 = repeat(deep, ")", 1000, "\ny = )\nz = 1\n");
    cr_assert_eq(parse_str(deep2), 2);
    free(deep);
    free(deep2);
}

Test(badsyntax, random_bytes)
{
    unsigned state = 12345;
    size_t len = 1 << 18;
    char *buf = malloc(len);
    for (int round = 0; round < 8; round++) {
        for (size_t i = 0; i < len; i++) {
            state = state * 1103515245u + 12345u;
            buf[i] = (char)(state >> 16);
        }
        cr_assert_geq(parse_bytes(buf, len), 1);
    }
    // Random tokens of the language: plausible but wrong programs.
    static const char *toks[] = {"model", "m", "(", ")", "{", "}", "[", "]", "=", "+",
                                 "|>",    "\n", ",", ":", "1.5", "\"s\"", "for", "in", "..",
                                 "return", "-", "^", "train", "on", "step", "->", "f32", ";"};
    size_t ntoks = sizeof toks / sizeof *toks;
    for (int round = 0; round < 200; round++) {
        size_t n = 0;
        for (int i = 0; i < 60; i++) {
            state = state * 1103515245u + 12345u;
            const char *t = toks[(state >> 16) % ntoks];
            size_t tl = strlen(t);
            memcpy(buf + n, t, tl);
            buf[n + tl] = ' ';
            n += tl + 1;
        }
        parse_bytes(buf, n); // errors or not, it must not crash
    }
    free(buf);
}

Test(badsyntax, nul_bytes)
{
    static const char nuls[] = "\0\0\0";
    cr_assert_eq(parse_bytes(nuls, 3), 1);
    static const char mixed[] = "fn f(x) = x\n\0\nfn g(x) = \"a\0\"\n";
    cr_assert_eq(parse_bytes(mixed, sizeof mixed - 1), 2);
}

Test(badsyntax, unterminated_at_end_of_file)
{
    cr_assert_eq(parse_str("x = \"abc"), 1);
    cr_assert_eq(parse_str("x = \"abc\\"), 1);
    cr_assert_eq(parse_str("x = 1 # comment without newline"), 0);
    cr_assert_eq(parse_str("model m(x) {"), 1);
    cr_assert_eq(parse_str("x = f("), 1);
    cr_assert_eq(parse_str("x = "), 1);
}

Test(badsyntax, errors_are_capped_not_crashing)
{
    // 1000 bad lines: every error is counted, storage stops at the cap.
    char *many = repeat("", "x = )\n", 1000, "");
    cr_assert_eq(parse_str(many), 1000);
    cr_assert_leq(ctx.diags.count, 50);
    free(many);
}
