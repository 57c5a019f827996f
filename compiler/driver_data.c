// Runs a data block: loaders (idx, csv) make named splits, list literals and
// generators make fields, `x = f(x)` transforms every split (through a small
// graph run on the chosen backend), and `split` divides a split by fractions.
// Errors name the .nn location and, for files, the file and byte offset.
#include "driver.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void nn_splits_fini(NnSplits *s)
{
    for (int i = 0; i < s->count; i++)
        nnrt_dataset_fini(&s->ds[i]);
    s->count = 0;
}

NnrtDataset *nn_splits_get(NnSplits *s, const char *name)
{
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->names[i], name) == 0)
            return &s->ds[i];
    return NULL;
}

static NnrtDataset *split_add(NnCtx *c, NnSplits *s, const char *name, NnLoc loc)
{
    NnrtDataset *d = nn_splits_get(s, name);
    if (d) {
        nnrt_dataset_fini(d);
        nnrt_dataset_init(d);
        return d;
    }
    if (s->count == NN_MAX_SPLITS) {
        nn_error(&c->diags, loc, "too many splits (at most %d)", NN_MAX_SPLITS);
        return NULL;
    }
    s->names[s->count] = name;
    nnrt_dataset_init(&s->ds[s->count]);
    return &s->ds[s->count++];
}

static const char *str_arg(NnCtx *c, const NnAst *call, int i, const char *what)
{
    const NnAst *a = i < call->kids.count ? call->kids.items[i] : NULL;
    if (a && a->kind == NN_AST_ARG)
        a = a->a;
    if (!a || a->kind != NN_AST_STR) {
        nn_error(&c->diags, a ? a->loc : call->loc, "%s(): expected %s as a string", call->a->name,
                 what);
        return NULL;
    }
    // A relative path that does not exist from the current directory is
    // taken relative to the script, as imports are.
    const char *path = a->str, *from = a->loc.src ? a->loc.src->name : "";
    const char *slash = strrchr(from, '/');
    if (path[0] != '/' && slash && access(path, F_OK) != 0) {
        const char *rel = nn_arena_printf(c->arena, "%.*s/%s", (int)(slash - from), from, path);
        if (access(rel, F_OK) == 0)
            return rel;
    }
    return path;
}

static bool load_source(NnCtx *c, const NnAst *call, NnrtDataset *d)
{
    const char *fn = call->a->name;
    NnStatus st;
    if (strcmp(fn, "idx") == 0) {
        const char *img = str_arg(c, call, 0, "the images file");
        const char *lbl = img ? str_arg(c, call, 1, "the labels file") : NULL;
        if (!lbl)
            return false;
        st = nnrt_dataset_load_idx(d, img, lbl);
    } else {
        const char *path = str_arg(c, call, 0, "the file name");
        if (!path)
            return false;
        NnrtCsvOptions o = {0};
        for (int i = 1; i < call->kids.count; i++) {
            const NnAst *a = call->kids.items[i];
            if (a->kind == NN_AST_ARG && strcmp(a->name, "label") == 0 && a->a->kind == NN_AST_STR)
                o.label_name = a->a->str;
            else if (a->kind == NN_AST_ARG && strcmp(a->name, "label") == 0 &&
                     (a->a->kind == NN_AST_NUM || a->a->kind == NN_AST_UNARY)) {
                double v = a->a->kind == NN_AST_NUM ? a->a->num : -a->a->a->num;
                // (int) of 2147483648 or 1.5 would silently pick another column.
                if (v != floor(v) || v < -1e6 || v > 1e6) {
                    nn_error(&c->diags, a->a->loc, "csv(): label = %.17g is not a column index "
                             "(a whole number, negative counts from the end)", v);
                    return false;
                }
                o.label_index = (int)v;
                o.label_index_set = true;
            } else if (a->kind == NN_AST_ARG && strcmp(a->name, "header") == 0 &&
                       a->a->kind == NN_AST_BOOL)
                o.header = a->a->num ? 1 : -1;
            else {
                nn_error(&c->diags, a->loc, "csv() takes label = \"name\" or index, header = bool");
                return false;
            }
        }
        st = nnrt_dataset_load_csv(d, path, &o);
    }
    if (st != NN_OK) {
        nn_error(&c->diags, call->loc, "%s", nnrt_errmsg());
        return false;
    }
    return true;
}

// Classes of an i32 label field: max label + 1.
static void count_classes(NnrtDataset *d)
{
    if (!d->y || d->y->dtype != NN_DT_I32 || d->class_names)
        return;
    int32_t mx = -1;
    for (int64_t i = 0; i < d->y->numel; i++)
        mx = ((int32_t *)d->y->data)[i] > mx ? ((int32_t *)d->y->data)[i] : mx;
    d->num_classes = mx + 1;
}

static bool is_label(const char *name) { return !strcmp(name, "label") || !strcmp(name, "y"); }

// Stores t as the target field of split d (NULL: the `train` split, made if
// missing), checking its sample count against the split's. Takes t.
static bool set_field(NnCtx *c, NnSplits *s, NnrtDataset *d, const NnAst *st, NnTensor *t)
{
    const char *target = st->kids.items[0]->name;
    if (!d && !(d = nn_splits_get(s, "train")) && !(d = split_add(c, s, "train", st->loc))) {
        nnrt_tensor_free(t);
        return false;
    }
    if (t->rank == 0 || (d->count && t->shape[0] != d->count)) {
        nn_error(&c->diags, st->a->loc, "field '%s' has %lld samples, the data has %lld", target,
                 t->rank ? (long long)t->shape[0] : 0LL, (long long)d->count);
        nnrt_tensor_free(t);
        return false;
    }
    if (!is_label(target) && t->dtype != NN_DT_F32) {
        nn_error(&c->diags, st->a->loc, "x must be f32 (use f32(...))");
        nnrt_tensor_free(t);
        return false;
    }
    NnTensor **slot = is_label(target) ? &d->y : &d->x;
    if (is_label(target)) {
        // Computed labels need not line up with the file's any more; keep the file name.
        free(d->y_at);
        d->y_at = NULL;
    }
    nnrt_tensor_free(*slot);
    *slot = t;
    d->count = t->shape[0];
    count_classes(d);
    return true;
}

// Evaluates field = expr on one split (or to create the first split).
static bool transform(NnCtx *c, const NnProgram *p, const NnBackend *be, NnSplits *s,
                      NnrtDataset *d, const NnAst *st, uint64_t seed)
{
    NnField f[2];
    NnTensor *in[2];
    int nf = 0;
    if (d && d->x) {
        f[nf] = (NnField){"x", d->x->dtype, {.rank = d->x->rank}};
        memcpy(f[nf].sample.dim, d->x->shape, sizeof d->x->shape);
        in[nf++] = d->x;
    }
    if (d && d->y) {
        f[nf] = (NnField){s->label, d->y->dtype, {.rank = d->y->rank}};
        memcpy(f[nf].sample.dim, d->y->shape, sizeof d->y->shape);
        in[nf++] = d->y;
    }
    NnGraph *g = nn_lower_expr(c, p, st->a, f, nf, seed);
    if (!g)
        return false;
    NnTensor *out = NULL;
    bool ok = nn_driver_eval_graph(c, be, g, in, &out, st->a->loc);
    nn_graph_free(g);
    if (!ok)
        return false;
    return set_field(c, s, d, st, out);
}


static bool split_stmt(NnCtx *c, NnSplits *s, const NnAst *st, uint64_t seed)
{
    NnrtDataset *src = nn_splits_get(s, st->name);
    if (!src) {
        nn_error(&c->diags, st->loc, "no split named '%s' to divide", st->name);
        return false;
    }
    int n = st->kids.count;
    double fr[NN_MAX_SPLITS];
    if (n < 1 || n > NN_MAX_SPLITS) {
        nn_error(&c->diags, st->loc, "split needs 1 to %d parts", NN_MAX_SPLITS);
        return false;
    }
    for (int i = 0; i < n; i++) {
        const NnAst *a = st->kids.items[i];
        if (a->a->kind != NN_AST_NUM || a->a->num <= 0) {
            nn_error(&c->diags, a->loc, "split fractions must be positive numbers");
            return false;
        }
        fr[i] = a->a->num;
    }
    for (int i = 0; i < st->params.count; i++) {
        const NnAst *a = st->params.items[i];
        if (a->kind != NN_AST_ARG || strcmp(a->name, "seed") || a->a->kind != NN_AST_NUM) {
            nn_error(&c->diags, a->loc, "split options: (seed = N)");
            return false;
        }
        seed = (uint64_t)a->a->num;
    }
    NnrtDataset parts[NN_MAX_SPLITS];
    if (nnrt_dataset_split(src, fr, n, seed, parts) != NN_OK) {
        nn_error(&c->diags, st->loc, "%s", nnrt_errmsg());
        return false;
    }
    // An empty part would train or evaluate on nothing (NaN metrics).
    for (int i = 0; i < n; i++) {
        if (parts[i].count > 0)
            continue;
        nn_error(&c->diags, st->kids.items[i]->loc, "split '%s' gets no samples (%g of %lld)",
                 st->kids.items[i]->name, fr[i], (long long)src->count);
        for (int k = 0; k < n; k++)
            nnrt_dataset_fini(&parts[k]);
        return false;
    }
    for (int i = 0; i < n; i++) {
        NnrtDataset *d = split_add(c, s, st->kids.items[i]->name, st->kids.items[i]->loc);
        if (!d) {
            for (int k = i; k < n; k++)
                nnrt_dataset_fini(&parts[k]);
            return false;
        }
        *d = parts[i];
    }
    return true;
}

// classes = ["T-shirt", "Trouser", ...]: names for class indices in reports.
static bool class_names(NnCtx *c, NnSplits *s, const NnAst *st)
{
    const NnAst *v = st->a;
    bool ok = v->kind == NN_AST_LIST && v->kids.count > 0;
    for (int i = 0; ok && i < v->kids.count; i++)
        ok = v->kids.items[i]->kind == NN_AST_STR;
    if (!ok || s->count == 0) {
        nn_error(&c->diags, v->loc, ok ? "'classes' must come after the splits are loaded"
                                       : "'classes' expects a list of strings");
        return false;
    }
    for (int k = 0; k < s->count; k++) {
        NnrtDataset *d = &s->ds[k];
        if (d->num_classes > v->kids.count) {
            nn_error(&c->diags, v->loc, "%d class names given, but split '%s' has %d classes",
                     v->kids.count, s->names[k], d->num_classes);
            return false;
        }
        if (d->class_names)
            for (int i = 0; i < d->num_classes; i++)
                free(d->class_names[i]);
        free(d->class_names);
        d->num_classes = v->kids.count;
        d->class_names = calloc((size_t)v->kids.count, sizeof(char *));
        for (int i = 0; d->class_names && i < v->kids.count; i++)
            d->class_names[i] = strdup(v->kids.items[i]->str);
    }
    return true;
}

// x = normalize(x[, per_feature = true]): mean and std from the train split,
// applied to every split, so no statistics leak from validation or test data.
static bool normalize(NnCtx *c, NnSplits *s, const NnAst *st)
{
    const NnAst *v = st->a;
    bool per_feature = false;
    bool ok = !strcmp(st->kids.items[0]->name, "x") && v->kids.count >= 1 &&
              v->kids.items[0]->kind == NN_AST_NAME && !strcmp(v->kids.items[0]->name, "x");
    for (int i = 1; ok && i < v->kids.count; i++) {
        const NnAst *a = v->kids.items[i];
        ok = a->kind == NN_AST_ARG && !strcmp(a->name, "per_feature") && a->a->kind == NN_AST_BOOL;
        per_feature = ok && a->a->num != 0;
    }
    if (!ok) {
        nn_error(&c->diags, v->loc, "write 'x = normalize(x)' or 'x = normalize(x, per_feature = "
                 "true)'");
        return false;
    }
    NnrtDataset *train = nn_splits_get(s, "train");
    if (!train || !train->x) {
        nn_error(&c->diags, v->loc, "normalize needs a 'train' split to compute statistics on");
        return false;
    }
    NnrtNorm norm = {0};
    NnStatus rc = nnrt_norm_fit(&norm, train, per_feature);
    for (int k = 0; rc == NN_OK && k < s->count; k++)
        rc = nnrt_norm_apply(&norm, &s->ds[k]);
    nnrt_norm_fini(&norm);
    if (rc != NN_OK) {
        nn_error(&c->diags, v->loc, "%s", nnrt_errmsg());
        return false;
    }
    return true;
}

bool nn_driver_load_data(NnCtx *c, const NnProgram *p, const NnAst *data, const NnBackend *be,
                         uint64_t seed, NnSplits *s)
{
    memset(s, 0, sizeof *s);
    s->label = "label";
    for (int i = 0; i < data->kids.count; i++) {
        const NnAst *st = data->kids.items[i];
        if (st->kind == NN_AST_SPLIT) {
            if (!split_stmt(c, s, st, seed))
                return false;
            continue;
        }
        if (st->kind != NN_AST_ASSIGN || st->kids.count != 1 ||
            st->kids.items[0]->kind != NN_AST_NAME) {
            nn_error(&c->diags, st->loc, "a data block holds 'name = ...' and 'split' lines");
            return false;
        }
        const char *target = st->kids.items[0]->name;
        const NnAst *v = st->a;
        if (v->kind == NN_AST_CALL && v->a->kind == NN_AST_NAME &&
            (!strcmp(v->a->name, "idx") || !strcmp(v->a->name, "csv"))) {
            NnrtDataset *d = split_add(c, s, target, st->loc);
            if (!d || !load_source(c, v, d))
                return false;
            continue;
        }
        if (!strcmp(target, "classes")) {
            if (!class_names(c, s, st))
                return false;
            continue;
        }
        if (strcmp(target, "x") != 0 && !is_label(target)) {
            nn_error(&c->diags, st->kids.items[0]->loc,
                     "data fields are 'x' and 'label' (or 'y'); a split is 'name = idx(...)' "
                     "or 'name = csv(...)'");
            return false;
        }
        if (is_label(target))
            s->label = target;
        if (v->kind == NN_AST_CALL && v->a->kind == NN_AST_NAME &&
            !strcmp(v->a->name, "normalize")) {
            if (!normalize(c, s, st))
                return false;
            continue;
        }
        bool is_lit;
        NnTensor *t = nn_lower_literal(c, v, &is_lit);
        if (is_lit) {
            if (!t || !set_field(c, s, NULL, st, t))
                return false;
            continue;
        }
        if (s->count == 0) {
            if (!transform(c, p, be, s, NULL, st, seed))
                return false;
            continue;
        }
        for (int k = 0; k < s->count; k++)
            if (!transform(c, p, be, s, &s->ds[k], st, seed + (uint64_t)k))
                return false;
    }
    if (!nn_splits_get(s, "train")) {
        nn_error(&c->diags, data->loc, "data '%s' has no 'train' split", data->name);
        return false;
    }
    for (int k = 0; k < s->count; k++) {
        NnrtDataset *d = &s->ds[k];
        if (!d->x || !d->y) {
            nn_error(&c->diags, data->loc, "split '%s' of data '%s' lacks %s", s->names[k],
                     data->name, d->x ? "a label field" : "an x field");
            return false;
        }
        if (d->count == 0) {
            nn_error(&c->diags, data->loc, "split '%s' of data '%s' has no samples", s->names[k],
                     data->name);
            return false;
        }
        if (d->x->shape[0] != d->y->shape[0]) {
            nn_error(&c->diags, data->loc, "split '%s': x has %lld samples but %s has %lld",
                     s->names[k], (long long)d->x->shape[0], s->label, (long long)d->y->shape[0]);
            return false;
        }
    }
    return true;
}
