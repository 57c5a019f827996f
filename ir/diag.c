// Diagnostics: collection, rendering with source line and caret, source loading.
#include "diag.h"
#include "fileio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void nn_diags_init(NnDiags *d, NnArena *arena, FILE *out)
{
    memset(d, 0, sizeof *d);
    d->arena = arena;
    d->out = out;
    d->max_errors = 50;
}

_Noreturn void nn_internal_error(const char *file, int line, const char *what)
{
    fprintf(stderr, "internal error: %s:%d: %s\n", file, line, what);
    abort();
}

void nn_diag_add(NnDiags *d, NnDiagKind kind, NnLoc loc, const char *fmt, ...)
{
    if (kind == NN_DIAG_ERROR)
        d->nerrors++;
    int limit = d->max_errors ? d->max_errors : 50;
    if (d->nerrors > limit)
        return;
    if (d->count == d->cap) {
        int cap = d->cap ? d->cap * 2 : 16;
        NnDiag *items = nn_arena_alloc(d->arena, (size_t)cap * sizeof *items);
        if (d->count)
            memcpy(items, d->items, (size_t)d->count * sizeof *items);
        d->items = items;
        d->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *msg = nn_arena_alloc(d->arena, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
    NnDiag *dg = &d->items[d->count++];
    dg->kind = kind;
    dg->loc = loc;
    dg->msg = msg;
    if (d->out) {
        nn_diag_render(d->out, dg, d->color);
        if (kind == NN_DIAG_ERROR && d->nerrors == limit)
            fprintf(d->out, "nnc: too many errors, stopping here\n");
    }
}

bool nn_diags_full(const NnDiags *d)
{
    return d->nerrors >= (d->max_errors ? d->max_errors : 50);
}

// Finds the start of line `line` (1-based) in src; NULL if past the end.
static const char *line_start(const NnSource *src, int line)
{
    const char *p = src->text, *end = src->text + src->len;
    for (int l = 1; l < line; l++) {
        p = memchr(p, '\n', (size_t)(end - p));
        if (!p)
            return NULL;
        p++;
    }
    return p;
}

void nn_diag_render(FILE *out, const NnDiag *dg, bool color)
{
    static const char *kinds[] = {"error", "warning", "note"};
    static const char *colors[] = {"\033[1;31m", "\033[1;35m", "\033[1;36m"};
    const NnLoc *l = &dg->loc;
    const char *on = color ? colors[dg->kind] : "", *off = color ? "\033[0m" : "";
    if (l->src)
        fprintf(out, "%s:%d:%d: %s%s:%s %s\n", l->src->name, l->line, l->col, on,
                kinds[dg->kind], off, dg->msg);
    else
        fprintf(out, "nnc: %s%s:%s %s\n", on, kinds[dg->kind], off, dg->msg);
    if (!l->src || l->line < 1)
        return;
    const char *s = line_start(l->src, l->line);
    if (!s)
        return;
    const char *end = l->src->text + l->src->len;
    const char *e = memchr(s, '\n', (size_t)(end - s));
    if (!e)
        e = end;
    size_t width = (size_t)(e - s);
    // Very long lines are shown as a window around the column.
    size_t from = 0;
    if (width > 200 && (size_t)l->col > 100)
        from = (size_t)l->col - 80;
    size_t shown = width - from > 200 ? 200 : width - from;
    fprintf(out, "%5d | ", l->line);
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[from + i];
        fputc(c == '\t' ? ' ' : (c < 32 || c == 127) ? '?' : c, out);
    }
    fputs("\n      | ", out);
    for (size_t i = from; i + 1 < (size_t)l->col && i < from + shown; i++)
        fputc(' ', out);
    fputs(on, out);
    fputc('^', out);
    for (int i = 1; i < l->len && i < 80; i++)
        fputc('~', out);
    fputs(off, out);
    fputc('\n', out);
}

const char *nn_diags_text(NnDiags *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return "";
    for (int i = 0; i < d->count; i++)
        nn_diag_render(f, &d->items[i], false);
    fclose(f);
    char *copy = nn_arena_strndup(d->arena, buf ? buf : "", len);
    free(buf);
    return copy;
}

NnSource *nn_source_from_string(NnArena *a, const char *name, const char *text)
{
    NnSource *s = nn_arena_alloc(a, sizeof *s);
    s->name = nn_arena_strdup(a, name);
    s->len = strlen(text);
    s->text = nn_arena_strndup(a, text, s->len);
    return s;
}

NnSource *nn_source_load(NnArena *a, NnDiags *d, const char *path)
{
    NnLoc none = {0};
    char *buf;
    size_t len;
    // A FIFO would block and /dev/zero would never end: the helper refuses
    // what is not a regular file and caps the size.
    NnStatus st = nnrt_file_read_all(path, "script", NN_SOURCE_MAX, &buf, &len);
    if (st != NN_OK) {
        if (st == NN_ERR_IO && errno)
            nn_error(d, none, "cannot open '%s': %s", path, strerror(errno));
        else
            nn_error(d, none, "%s", nnrt_errmsg());
        return NULL;
    }
    NnSource *s = nn_arena_alloc(a, sizeof *s);
    s->name = nn_arena_strdup(a, path);
    s->text = nn_arena_strndup(a, buf, len);
    s->len = len;
    free(buf);
    return s;
}
