// Semantic diagnostics through `nnc check`. Each tests/golden/diag/*.nn parses
// but holds semantic mistakes, marked inline with `# expect error: TEXT` on the
// line the error is reported at (`# expect error@+1: TEXT` for the next line,
// `@-1` for the previous). Every expected error must appear as
// `FILE:LINE:COL: error: ...TEXT...` followed by the source line and a caret,
// with no other errors. Notes work the same way (`# expect note: TEXT`): every
// note located in the file must be marked, and must come after its error
// (notes in other files, such as the stdlib, are not checked). The syntax corpus tests/bad/*.nn must fail cleanly
// (exit 1, an error, no crash, no hang).
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static void to_root(void) { cr_assert_eq(chdir(NN_SOURCE_DIR), 0); }

TestSuite(diag, .init = to_root, .timeout = 300);

#define MAX_FILES 128
#define MAX_EXPECT 16

// Sorted names of the *.nn files in `dir`; returns the count.
static int list_nn(const char *dir, char **names)
{
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_FILES) {
        size_t len = strlen(e->d_name);
        if (len > 3 && !strcmp(e->d_name + len - 3, ".nn"))
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
            char *t = names[k];
            names[k] = names[k - 1];
            names[k - 1] = t;
        }
    return n;
}

typedef struct Expect {
    bool note; // `# expect note`, else an error
    int line;
    char text[256];
    bool seen;
} Expect;

// Reads the `# expect error|note[@+-N]: TEXT` markers of a file.
static int read_expects(const char *path, Expect *ex)
{
    char *src = tu_read_file(path);
    cr_assert(src, "cannot read %s", path);
    int n = 0, lineno = 1;
    for (char *l = src; l && *l; lineno++) {
        char *e = strchr(l, '\n');
        if (e)
            *e = 0;
        char *m = strstr(l, "# expect error"), *note = strstr(l, "# expect note");
        if (note && (!m || note < m))
            m = note;
        if (m && n < MAX_EXPECT) {
            ex[n].note = m == note;
            m += strlen(m == note ? "# expect note" : "# expect error");
            int off = 0;
            if (*m == '@')
                off = (int)strtol(m + 1, &m, 10);
            cr_assert(*m == ':', "%s:%d: malformed expect marker", path, lineno);
            m++;
            while (*m == ' ')
                m++;
            size_t len = strlen(m);
            while (len && isspace((unsigned char)m[len - 1]))
                len--;
            ex[n].line = lineno + off;
            snprintf(ex[n].text, sizeof ex[n].text, "%.*s", (int)len, m);
            ex[n].seen = false;
            n++;
        }
        l = e ? e + 1 : NULL;
    }
    free(src);
    return n;
}

// Appends a printf-style message to the failure report.
static void fail(char **report, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(char **report, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *r = NULL;
    cr_assert(asprintf(&r, "%s%s\n", *report ? *report : "", msg) > 0);
    free(*report);
    *report = r;
}

// Splits `out` into lines in place; returns the count.
static int split_lines(char *out, char **lines, int max)
{
    int n = 0;
    for (char *l = out; l && *l && n < max;) {
        char *e = strchr(l, '\n');
        if (e)
            *e = 0;
        lines[n++] = l;
        l = e ? e + 1 : NULL;
    }
    return n;
}

// A quoted source line ("   12 | text") or caret line ("      |   ^~~").
static bool is_quote(const char *l)
{
    while (*l == ' ')
        l++;
    while (isdigit((unsigned char)*l))
        l++;
    return l[0] == ' ' && l[1] == '|';
}

// Checks one diag file; appends failures to *report.
static void check_file(const char *path, char **report)
{
    Expect ex[MAX_EXPECT];
    int nex = read_expects(path, ex), nnotes = 0;
    for (int k = 0; k < nex; k++)
        nnotes += ex[k].note;
    if (nex == nnotes) {
        fail(report, "%s: no '# expect error' markers", path);
        return;
    }
    char *out = NULL;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 30 %s check %s", tu_nnc(), path);
    int rc = tu_run(cmd, &out);
    if (rc != 1)
        fail(report, "%s: exit %d, expected 1", path, rc);
    char *copy = strdup(out);
    char *lines[512];
    int nl = split_lines(copy, lines, 512);
    size_t plen = strlen(path);
    int nerr = 0, nnote = 0;
    for (int i = 0; i < nl; i++) {
        const char *l = lines[i];
        bool is_note = strstr(l, ": note: ") && !strncmp(l, path, plen) && l[plen] == ':';
        if (is_quote(l) || (!strstr(l, "error:") && !is_note))
            continue;
        if (is_note && nerr == 0)
            fail(report, "%s: a note before any error: %s", path, l);
        *(is_note ? &nnote : &nerr) += 1;
        int line = 0, col = 0, used = 0;
        const char *form = is_note ? ":%d:%d: note: %n" : ":%d:%d: error: %n";
        if (strncmp(l, path, plen) || sscanf(l + plen, form, &line, &col, &used) < 2 || !used) {
            fail(report, "%s: error without a location in this file: %s", path, l);
            continue;
        }
        const char *msg = l + plen + used;
        bool matched = false;
        for (int k = 0; k < nex && !matched; k++)
            if (!ex[k].seen && ex[k].note == is_note && ex[k].line == line &&
                strstr(msg, ex[k].text))
                matched = ex[k].seen = true;
        if (!matched)
            fail(report, "%s: unexpected %s: %s", path, is_note ? "note" : "error", l);
        // Source line ("  12 | text") and caret line ("     |    ^~~").
        char want[32];
        snprintf(want, sizeof want, "%d | ", line);
        if (i + 2 >= nl || !strstr(lines[i + 1], want) || !strchr(lines[i + 2], '|') ||
            !strchr(lines[i + 2], '^'))
            fail(report, "%s: %s at line %d lacks its source line and caret", path,
                 is_note ? "note" : "error", line);
        else if (strchr(lines[i + 2], '^') - strchr(lines[i + 2], '|') != col + 1)
            fail(report, "%s: caret not under column %d:\n%s\n%s", path, col, lines[i + 1],
                 lines[i + 2]);
    }
    for (int k = 0; k < nex; k++)
        if (!ex[k].seen)
            fail(report, "%s:%d: expected %s containing '%s' not reported", path, ex[k].line,
                 ex[k].note ? "note" : "error", ex[k].text);
    if (nerr != nex - nnotes)
        fail(report, "%s: %d errors reported, %d expected", path, nerr, nex - nnotes);
    if (nnote != nnotes)
        fail(report, "%s: %d notes reported, %d expected", path, nnote, nnotes);
    if (*report && strstr(*report, path))
        fail(report, "--- output of nnc check %s:\n%s", path, out);
    free(copy);
    free(out);
}

Test(diag, golden_corpus)
{
    char *names[MAX_FILES];
    int n = list_nn("tests/golden/diag", names);
    cr_assert_geq(n, 20, "only %d diag scripts", n);
    char *report = NULL;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "tests/golden/diag/%s", names[i]);
        size_t before = report ? strlen(report) : 0;
        check_file(path, &report);
        bad += (report ? strlen(report) : 0) != before;
        free(names[i]);
    }
    cr_assert(!report, "%d of %d diag scripts failed:\n%s", bad, n, report);
}

// The markers themselves: the harness must see what each file claims.
Test(diag, markers_parse)
{
    char *p = tu_write_temp(".nn", "a  # expect error: one\n"
                                   "# expect error@+1: two  \n"
                                   "b\n"
                                   "c  # expect error@-2: three\n"
                                   "d  # expect note@-1: four\n");
    Expect ex[MAX_EXPECT];
    int n = read_expects(p, ex);
    cr_assert_eq(n, 4);
    cr_assert(!ex[0].note && !ex[2].note && ex[3].note);
    cr_assert_eq(ex[3].line, 4);
    cr_assert_str_eq(ex[3].text, "four");
    cr_assert_eq(ex[0].line, 1);
    cr_assert_str_eq(ex[0].text, "one");
    cr_assert_eq(ex[1].line, 3);
    cr_assert_str_eq(ex[1].text, "two");
    cr_assert_eq(ex[2].line, 2);
    cr_assert_str_eq(ex[2].text, "three");
    unlink(p);
    free(p);
}

// Every syntax-error script: exit 1, an error with this file's location, no
// crash (status below 128) and no hang (timeout 124).
Test(diag, syntax_corpus_fails_cleanly)
{
    char *names[MAX_FILES];
    int n = list_nn("tests/bad", names);
    cr_assert_geq(n, 10, "only %d scripts in tests/bad", n);
    char *report = NULL;
    for (int i = 0; i < n; i++) {
        char path[512], cmd[1024];
        snprintf(path, sizeof path, "tests/bad/%s", names[i]);
        snprintf(cmd, sizeof cmd, "timeout 20 %s check %s", tu_nnc(), path);
        char *out = NULL;
        int rc = tu_run(cmd, &out);
        char where[560];
        snprintf(where, sizeof where, "%s:", path);
        if (rc != 1)
            fail(&report, "%s: exit %d%s", path, rc,
                 rc == 124 ? " (timed out)" : rc >= 128 ? " (crashed)" : "");
        else if (!strstr(out, ": error: ") || !strstr(out, where))
            fail(&report, "%s: no located error:\n%s", path, out);
        free(out);
        free(names[i]);
    }
    cr_assert(!report, "%s", report);
}

// Counts the lines of `out` that start with `prefix`.
static int count_prefix(const char *out, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        n += !strncmp(l, prefix, len);
    return n;
}

// An error inside a library function (integer labels handed to mse) is reported
// in stdlib/losses.nn, then a note with source line and caret leads back to the
// user's line that called it.
Test(diag, library_error_notes_the_call)
{
    char *p = tu_write_temp(".nn", "import std\n"
                                   "data d {\n"
                                   "    x = [[0, 0], [0, 1], [1, 0], [1, 1]]\n"
                                   "    y = i32([0, 1, 1, 0])\n"
                                   "}\n"
                                   "model net(x: f32[N, 2]) -> f32[N, 3] {\n"
                                   "    return x |> dense(3)\n"
                                   "}\n"
                                   "train net on d {\n"
                                   "    loss = mse(output, y)\n"
                                   "    optimizer = adam()\n"
                                   "}\n");
    char *out = NULL;
    int rc = tu_nnc_run(&out, "check %s", p);
    cr_assert_eq(rc, 1, "%s", out);
    const char *err = strstr(out, "stdlib/losses.nn:");
    cr_assert(err && strstr(err, ": error: cannot subtract i32[N] from f32[N, 3]"), "%s", out);
    char want[600];
    snprintf(want, sizeof want,
             "%s:10:12: note: in call to 'mse' from here\n"
             "   10 |     loss = mse(output, y)\n"
             "      |            ^~~~~~~~~~~~~~\n", p);
    const char *note = strstr(out, want);
    cr_assert(note && note > err, "no note at the call, after the error:\n%s", out);
    cr_assert_eq(count_prefix(out, p), 1, "one note, in the user's file only:\n%s", out);
    unlink(p);
    free(p);
    free(out);
}

// The chain has one note per frame: a stdlib function called from a library
// the user imports, called from the user's file, gets a note in each.
Test(diag, call_chain_through_an_import)
{
    char *lib = tu_write_temp(".nn", "import std\n"
                                     "loss wrapped(a, b) = mse(a, b)\n");
    const char *base = strrchr(lib, '/') + 1;
    char text[1024];
    snprintf(text, sizeof text, "import \"%s\"\n"
                                "data d {\n"
                                "    x = [[0, 0], [0, 1]]\n"
                                "    y = i32([0, 1])\n"
                                "}\n"
                                "model net(x: f32[N, 2]) -> f32[N, 3] {\n"
                                "    return x |> dense(3)\n"
                                "}\n"
                                "train net on d {\n"
                                "    loss = wrapped(output, y)\n"
                                "    optimizer = sgd()\n"
                                "}\n", base);
    char *p = tu_write_temp(".nn", text);
    char *out = NULL;
    cr_assert_eq(tu_nnc_run(&out, "check %s", p), 1, "%s", out);
    char in_lib[600], in_user[600];
    snprintf(in_lib, sizeof in_lib, "%s:2:22: note: in call to 'mse' from here", lib);
    snprintf(in_user, sizeof in_user, "%s:10:12: note: in call to 'wrapped' from here", p);
    const char *a = strstr(out, in_lib), *b = strstr(out, in_user);
    cr_assert(a && b && a < b, "expected the notes in call order:\n%s", out);
    unlink(p);
    unlink(lib);
    free(p);
    free(lib);
    free(out);
}

// The optimizer's body runs per parameter, not through a call; an error in it
// still leads back to the train block's `optimizer = ...` line.
Test(diag, optimizer_error_notes_the_setting)
{
    char *p = tu_write_temp(".nn", "import std\n"
                                   "data d {\n"
                                   "    x = [[0, 0], [0, 1]]\n"
                                   "    y = [[0], [1]]\n"
                                   "}\n"
                                   "model net(x: f32[N, 2]) -> f32[N, 1] {\n"
                                   "    return x |> dense(1)\n"
                                   "}\n"
                                   "train net on d {\n"
                                   "    loss = mse(output, y)\n"
                                   "    optimizer = adam(beta1 = [1, 2])\n"
                                   "}\n");
    char *out = NULL;
    cr_assert_eq(tu_nnc_run(&out, "check %s", p), 1, "%s", out);
    const char *err = strstr(out, "stdlib/optimizers.nn:");
    char want[600];
    snprintf(want, sizeof want, "%s:11:17: note: in call to 'adam' from here\n", p);
    const char *note = strstr(out, want);
    cr_assert(err && strstr(err, ": error: ") && note && note > err, "%s", out);
    unlink(p);
    free(p);
    free(out);
}
