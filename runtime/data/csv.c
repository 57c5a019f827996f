// CSV datasets: one sample per line, one label column, the rest f32 features.
// Takes a path and NnrtCsvOptions; fills an NnrtDataset. A header row is
// detected when row 1 has a non-numeric feature field (or a non-numeric label
// above a numeric one). Blank lines are skipped; fields may be "quoted".
// Every error names file:line (and :column, 1-based) of the offending field.
#include "data.h"
#include "fileio.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Row {
    char *line;   // owned text; fields point into it
    char **f;     // nf fields
    int nf;
    int lineno;   // 1-based line in the file
} Row;

typedef struct Csv {
    const char *path;
    Row *rows;
    int nrows, cap;
} Csv;

static void csv_free(Csv *c)
{
    for (int i = 0; i < c->nrows; i++) {
        free(c->rows[i].line);
        free(c->rows[i].f);
    }
    free(c->rows);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

// Splits line in place; a quoted field may contain the delimiter and "" for ".
// A quote left open is an error: accepting it would swallow the rest of the row.
static NnStatus split_line(const char *path, Row *r, char delim)
{
    int cap = 8;
    r->f = malloc((size_t)cap * sizeof *r->f);
    if (!r->f)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    char *p = r->line;
    for (;;) {
        if (r->nf == cap) {
            if (cap > INT_MAX / 2)
                return nnrt_fail(NN_ERR_FORMAT, "%s:%d: too many columns", path, r->lineno);
            char **nf = realloc(r->f, (size_t)(cap *= 2) * sizeof *nf);
            if (!nf)
                return nnrt_fail(NN_ERR_NOMEM, "out of memory");
            r->f = nf;
        }
        while (*p == ' ' || *p == '\t')
            p++;
        char *start = p;
        if (*p == '"') {
            int col = (int)(p - r->line) + 1;
            char *w = ++p;
            start = w;
            while (*p && !(*p == '"' && p[1] != '"')) {
                if (*p == '"')
                    p++;
                *w++ = *p++;
            }
            if (*p != '"')
                return nnrt_fail(NN_ERR_FORMAT, "%s:%d:%d: unterminated quoted field (no "
                                 "closing '\"' on this line)", path, r->lineno, col);
            p++;
            while (*p && *p != delim)
                p++;
            *w = 0;
        } else {
            while (*p && *p != delim)
                p++;
        }
        char next = *p;
        *p = 0;
        r->f[r->nf++] = trim(start);
        if (next != delim)
            break;
        p++;
    }
    return NN_OK;
}

static NnStatus read_rows(Csv *c, char delim)
{
    FILE *f;
    NnStatus ost = nnrt_file_fopen(c->path, NULL, &f);
    if (ost != NN_OK)
        return ost;
    char *line = NULL;
    size_t lcap = 0;
    int lineno = 0;
    NnStatus st = NN_OK;
    while (st == NN_OK && getline(&line, &lcap, f) >= 0) {
        if (lineno == INT_MAX || c->nrows == INT_MAX / 2) {
            st = nnrt_fail(NN_ERR_FORMAT, "%s:%d: too many lines", c->path, lineno);
            break;
        }
        lineno++;
        char *t = trim(line);
        if (*t == 0)
            continue;
        if (c->nrows == c->cap) {
            int ncap = c->cap ? c->cap * 2 : 256;
            Row *nr = realloc(c->rows, (size_t)ncap * sizeof *nr);
            if (!nr) {
                st = nnrt_fail(NN_ERR_NOMEM, "%s: out of memory", c->path);
                break;
            }
            c->rows = nr;
            c->cap = ncap;
        }
        Row *r = &c->rows[c->nrows++];
        memset(r, 0, sizeof *r);
        r->lineno = lineno;
        r->line = strdup(t);
        st = r->line ? split_line(c->path, r, delim) : nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    if (st == NN_OK && ferror(f))
        st = nnrt_fail(NN_ERR_IO, "%s: read error after line %d: %s", c->path, lineno,
                       strerror(errno));
    free(line);
    fclose(f);
    if (st == NN_OK && c->nrows == 0)
        st = nnrt_fail(NN_ERR_FORMAT, "%s:%d: empty file (no data rows)", c->path,
                       lineno > 0 ? lineno : 1);
    return st;
}

static bool parse_num(const char *s, double *v)
{
    if (!*s)
        return false;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    // nan and inf parse as numbers but are no data a model can learn from.
    return *end == 0 && errno != ERANGE && isfinite(*v);
}

static bool is_num(const char *s)
{
    double v;
    return parse_num(s, &v);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Label column: i32 classes, string classes (sorted names), or f32 targets.
static NnStatus build_labels(const Csv *c, int first, int lab, NnrtDataset *ds, NnTensor **yout)
{
    int64_t n = c->nrows - first;
    bool all_num = true, all_int = true;
    for (int i = first; i < c->nrows; i++) {
        double v;
        if (!parse_num(c->rows[i].f[lab], &v))
            all_num = false;
        else if (v != floor(v) || v < 0 || v > 1e9)
            all_int = false;
    }
    if (all_num) {
        NnTensor *y = all_int ? nnrt_tensor_new(NN_DT_I32, 1, &n)
                              : nnrt_tensor_new(NN_DT_F32, 2, (int64_t[]){n, 1});
        if (!y)
            return nnrt_fail(NN_ERR_NOMEM, "out of memory");
        for (int i = first; i < c->nrows; i++)
            nnrt_tensor_set(y, i - first, strtod(c->rows[i].f[lab], NULL));
        *yout = y;
        return NN_OK;
    }
    char **names = malloc((size_t)n * sizeof *names);
    NnTensor *y = nnrt_tensor_new(NN_DT_I32, 1, &n);
    if (!names || !y) {
        free(names);
        nnrt_tensor_free(y);
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    for (int i = first; i < c->nrows; i++)
        names[i - first] = c->rows[i].f[lab];
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    int k = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || strcmp(names[i], names[k - 1]) != 0)
            names[k++] = names[i];
    for (int i = first; i < c->nrows; i++) {
        char *key = c->rows[i].f[lab];
        char **hit = bsearch(&key, names, (size_t)k, sizeof *names, cmp_str);
        ((int32_t *)y->data)[i - first] = (int32_t)(hit - names);
    }
    ds->class_names = calloc((size_t)k, sizeof(char *));
    for (int i = 0; ds->class_names && i < k; i++)
        ds->class_names[i] = strdup(names[i]);
    ds->num_classes = ds->class_names ? k : 0;
    free(names);
    *yout = y;
    return NN_OK;
}

// Resolves the label column from options and, when needed, the header.
static NnStatus label_column(const Csv *c, const NnrtCsvOptions *o, bool header, int *lab)
{
    int nc = c->rows[0].nf;
    if (o->label_name) {
        if (!header)
            return nnrt_fail(NN_ERR_FORMAT, "%s:%d: label column '%s' requested but the file "
                             "has no header row", c->path, c->rows[0].lineno, o->label_name);
        for (int j = 0; j < nc; j++)
            if (strcmp(c->rows[0].f[j], o->label_name) == 0) {
                *lab = j;
                return NN_OK;
            }
        return nnrt_fail(NN_ERR_FORMAT, "%s:%d: no column named '%s' in the header", c->path,
                         c->rows[0].lineno, o->label_name);
    }
    int idx = o->label_index_set ? o->label_index : -1;
    int j = idx < 0 ? nc + idx : idx;
    if (j < 0 || j >= nc)
        return nnrt_fail(NN_ERR_FORMAT, "%s:%d: label column %d is out of range (%d columns)",
                         c->path, c->rows[0].lineno, idx, nc);
    *lab = j;
    return NN_OK;
}

static bool detect_header(const Csv *c, const NnrtCsvOptions *o)
{
    if (o->header != 0 || o->label_name)
        return o->header > 0 || (o->header == 0 && o->label_name);
    const Row *r0 = &c->rows[0];
    int idx = o->label_index_set ? o->label_index : -1;
    int lab = idx < 0 ? r0->nf + idx : idx;
    for (int j = 0; j < r0->nf; j++)
        if (j != lab && !is_num(r0->f[j]))
            return true;
    // Only the label is non-numeric: a header if the next row's label is a number.
    if (lab >= 0 && lab < r0->nf && !is_num(r0->f[lab]) && c->nrows > 1 &&
        c->rows[1].nf > lab)
        return is_num(c->rows[1].f[lab]);
    return false;
}

static NnStatus build(const Csv *c, const NnrtCsvOptions *o, NnrtDataset *ds)
{
    bool header = detect_header(c, o);
    int lab = -1, nc = c->rows[0].nf;
    NnStatus st = label_column(c, o, header, &lab);
    if (st != NN_OK)
        return st;
    int first = header ? 1 : 0;
    if (c->nrows - first == 0)
        return nnrt_fail(NN_ERR_FORMAT, "%s:%d: empty file (a header but no data rows)",
                         c->path, c->rows[0].lineno + 1);
    for (int i = 0; i < c->nrows; i++)
        if (c->rows[i].nf != nc)
            return nnrt_fail(NN_ERR_FORMAT, "%s:%d: expected %d columns, found %d", c->path,
                             c->rows[i].lineno, nc, c->rows[i].nf);
    int64_t n = c->nrows - first;
    NnTensor *x = nnrt_tensor_new(NN_DT_F32, 2, (int64_t[]){n, nc - 1});
    if (!x)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    float *xp = x->data;
    for (int i = first; i < c->nrows; i++)
        for (int j = 0, k = 0; j < nc; j++) {
            if (j == lab)
                continue;
            double v;
            if (!parse_num(c->rows[i].f[j], &v)) {
                nnrt_tensor_free(x);
                return nnrt_fail(NN_ERR_FORMAT, "%s:%d:%d: '%s' is not a number%s%s%s", c->path,
                                 c->rows[i].lineno, j + 1, c->rows[i].f[j],
                                 header ? " (column '" : "", header ? c->rows[0].f[j] : "",
                                 header ? "')" : "");
            }
            xp[(int64_t)(i - first) * (nc - 1) + k++] = (float)v;
        }
    NnrtDataset tmp;
    nnrt_dataset_init(&tmp);
    NnTensor *y = NULL;
    st = build_labels(c, first, lab, &tmp, &y);
    if (st != NN_OK) {
        nnrt_tensor_free(x);
        return st;
    }
    st = nnrt_dataset_set(ds, x, y, c->path, c->path);
    if (st == NN_OK && tmp.class_names) {
        ds->class_names = tmp.class_names;
        ds->num_classes = tmp.num_classes;
        tmp.class_names = NULL;
    }
    int64_t *at = st == NN_OK ? malloc((size_t)n * sizeof *at) : NULL;
    for (int64_t i = 0; at && i < n; i++)
        at[i] = c->rows[first + i].lineno;
    if (st == NN_OK && (!at || nnrt_dataset_set_label_origin(ds, c->path, at, true) != NN_OK)) {
        nnrt_dataset_fini(ds);
        st = nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    nnrt_dataset_fini(&tmp);
    return st;
}

NnStatus nnrt_dataset_load_csv(NnrtDataset *ds, const char *path, const NnrtCsvOptions *opt)
{
    NnrtCsvOptions defaults = {0};
    const NnrtCsvOptions *o = opt ? opt : &defaults;
    Csv c = {.path = path};
    NnStatus st = read_rows(&c, o->delimiter ? o->delimiter : ',');
    if (st == NN_OK && c.rows[0].nf < 2)
        st = nnrt_fail(NN_ERR_FORMAT, "%s:%d: expected at least 2 columns (features and a "
                       "label), found %d", path, c.rows[0].lineno, c.rows[0].nf);
    if (st == NN_OK)
        st = build(&c, o, ds);
    csv_free(&c);
    return st;
}
