// Runs a data block: loaders (idx, csv, text) make named splits, list literals and
// generators make fields, `x = f(x)` transforms every split (through a small
// graph run on the chosen backend), and `split` divides a split by fractions.
// Errors name the .nn location and, for files, the file and byte offset.
// With shapes_only (check, ir) generators and transforms are lowered for
// their shapes and never run, so checking costs no time or memory however
// large the data a script declares.
#include "driver.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// The observer `nnc build` sets while it replays a data block (NULL otherwise).
static const NnDataHook *data_hook;

void nn_driver_data_hook(const NnDataHook *h) { data_hook = h; }

void nn_splits_fini(NnSplits *s)
{
    for (int i = 0; i < s->count; i++)
        nnrt_dataset_fini(&s->ds[i]);
    s->count = 0;
    nnrt_tensor_free(s->predict_x);
    s->predict_x = NULL;
}

bool nn_splits_field(const NnSplits *s, int k, int which, NnField *f)
{
    const NnField *v = which ? &s->vy[k] : &s->vx[k];
    const NnTensor *t = which ? s->ds[k].y : s->ds[k].x;
    if (v->name) {
        *f = *v;
    } else if (t) {
        *f = (NnField){NULL, t->dtype, {.rank = t->rank}};
        memcpy(f->sample.dim, t->shape, sizeof(int64_t) * (size_t)t->rank);
    } else {
        return false;
    }
    f->name = which ? s->label : "x";
    return true;
}

// Turns a real field of split k into a virtual one of the same shape.
static void virtualize(NnSplits *s, int k, int which)
{
    NnField f;
    NnTensor **t = which ? &s->ds[k].y : &s->ds[k].x;
    if (!*t || !nn_splits_field(s, k, which, &f))
        return;
    *(which ? &s->vy[k] : &s->vx[k]) = f;
    nnrt_tensor_free(*t);
    *t = NULL;
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
        s->vx[d - s->ds].name = s->vy[d - s->ds].name = NULL;
        return d;
    }
    if (s->count == NN_MAX_SPLITS) {
        nn_error(&c->diags, loc, "too many splits (at most %d)", NN_MAX_SPLITS);
        return NULL;
    }
    s->names[s->count] = name;
    s->vx[s->count].name = s->vy[s->count].name = NULL;
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

// The path str_arg found for argument i (valid once str_arg succeeded).
static const char *path_of(NnCtx *c, const NnAst *call, int i)
{
    return str_arg(c, call, i, "a path");
}

// text("f.txt", seq = 64, stride = 1, from = 0, to = 1): seq is required;
// from and to pick a contiguous part of the file (fractions of its bytes).
static bool text_options(NnCtx *c, const NnAst *call, NnrtTextOptions *o)
{
    bool has_seq = false;
    for (int i = 1; i < call->kids.count; i++) {
        const NnAst *a = call->kids.items[i];
        const NnAst *v = a->kind == NN_AST_ARG ? a->a : NULL;
        const char *k = a->kind == NN_AST_ARG ? a->name : "";
        bool num = v && v->kind == NN_AST_NUM;
        bool whole = num && v->is_int && v->num >= 1 && v->num <= 2147483647.0;
        if (!strcmp(k, "seq") && whole && v->num <= 65536) {
            o->seq = (int64_t)v->num;
            has_seq = true;
        } else if (!strcmp(k, "stride") && whole) {
            o->stride = (int64_t)v->num;
        } else if (!strcmp(k, "from") && num && v->num >= 0 && v->num < 1) {
            o->from = v->num;
        } else if (!strcmp(k, "to") && num && v->num > 0 && v->num <= 1) {
            o->to = v->num;
            o->to_set = true;
        } else {
            nn_error(&c->diags, a->loc, "text() takes seq = 1..65536, stride = a positive "
                     "integer, from = [0, 1), to = (0, 1]");
            return false;
        }
    }
    if (!has_seq) {
        nn_error(&c->diags, call->loc, "text() needs seq = N, the window length in characters");
        return false;
    }
    if (o->to_set && o->from >= o->to) {
        nn_error(&c->diags, call->loc, "text(): from (%g) must be less than to (%g)", o->from,
                 o->to);
        return false;
    }
    return true;
}

static bool load_source(NnCtx *c, const NnAst *call, NnSplits *s, NnrtDataset *d)
{
    int k = (int)(d - s->ds);
    s->label_loc[k] = call->loc;
    const char *fn = call->a->name;
    NnStatus st;
    NnrtTextOptions to = {0};
    NnrtCsvOptions csvo = {0};
    if (strcmp(fn, "idx") == 0) {
        const char *img = str_arg(c, call, 0, "the images file");
        const char *lbl = img ? str_arg(c, call, 1, "the labels file") : NULL;
        if (!lbl)
            return false;
        bool headers = data_hook && data_hook->headers_only && s->shapes_only && !s->predict_x;
        st = headers ? nnrt_dataset_load_idx_shape(d, img, lbl)
                     : nnrt_dataset_load_idx(d, img, lbl);
        if (st == NN_OK && headers) {
            virtualize(s, k, 0);
            virtualize(s, k, 1);
        }
    } else if (strcmp(fn, "text") == 0) {
        const char *path = str_arg(c, call, 0, "the file name");
        if (!path || !text_options(c, call, &to))
            return false;
        st = nnrt_dataset_load_text(d, path, &to);
    } else {
        const char *path = str_arg(c, call, 0, "the file name");
        if (!path)
            return false;
        NnrtCsvOptions *o = &csvo;
        for (int i = 1; i < call->kids.count; i++) {
            const NnAst *a = call->kids.items[i];
            if (a->kind == NN_AST_ARG && strcmp(a->name, "label") == 0 && a->a->kind == NN_AST_STR)
                o->label_name = a->a->str;
            else if (a->kind == NN_AST_ARG && strcmp(a->name, "label") == 0 &&
                     (a->a->kind == NN_AST_NUM || a->a->kind == NN_AST_UNARY)) {
                double v = a->a->kind == NN_AST_NUM ? a->a->num : -a->a->a->num;
                // (int) of 2147483648 or 1.5 would silently pick another column.
                if (v != floor(v) || v < -1e6 || v > 1e6) {
                    nn_error(&c->diags, a->a->loc, "csv(): label = %.17g is not a column index "
                             "(a whole number, negative counts from the end)", v);
                    return false;
                }
                o->label_index = (int)v;
                o->label_index_set = true;
            } else if (a->kind == NN_AST_ARG && strcmp(a->name, "header") == 0 &&
                       a->a->kind == NN_AST_BOOL)
                o->header = a->a->num ? 1 : -1;
            else {
                nn_error(&c->diags, a->loc, "csv() takes label = \"name\" or index, header = bool");
                return false;
            }
        }
        st = nnrt_dataset_load_csv(d, path, o);
    }
    if (st != NN_OK) {
        nn_error(&c->diags, call->loc, "%s", nnrt_errmsg());
        return false;
    }
    if (data_hook && data_hook->load)
        data_hook->load(data_hook->ctx, s->names[k], fn, path_of(c, call, 0),
                        !strcmp(fn, "idx") ? path_of(c, call, 1) : NULL, &csvo, &to);
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

// Stores a field of full shape f as the target of split d (NULL: the
// `train` split, made if missing), checking its sample count against the
// split's. t holds its values, or is NULL for a virtual field; a field of a
// split that is virtual stays virtual. Takes t.
static bool set_field(NnCtx *c, NnSplits *s, NnrtDataset *d, const NnAst *st, const NnField *f,
                      NnTensor *t)
{
    const char *target = st->kids.items[0]->name;
    if (!d && !(d = nn_splits_get(s, "train")) && !(d = split_add(c, s, "train", st->loc))) {
        nnrt_tensor_free(t);
        return false;
    }
    int k = (int)(d - s->ds);
    int64_t n = f->sample.rank ? f->sample.dim[0] : 0;
    if (f->sample.rank == 0 || (d->count && n != d->count)) {
        nn_error(&c->diags, st->a->loc, "field '%s' has %lld samples, the data has %lld", target,
                 (long long)n, (long long)d->count);
        nnrt_tensor_free(t);
        return false;
    }
    if (!is_label(target) && f->dtype != NN_DT_F32 && f->dtype != NN_DT_I32) {
        nn_error(&c->diags, st->a->loc, "x must be f32 or i32 (use f32(...) or i32(...))");
        nnrt_tensor_free(t);
        return false;
    }
    int which = is_label(target);
    if (which) {
        s->label_loc[k] = st->loc;
        // Computed labels come from no file and need not line up with its any
        // more. Clearing the origin allocates nothing, so it cannot fail.
        (void)nnrt_dataset_set_label_origin(d, NULL, NULL, false);
    }
    NnTensor **slot = which ? &d->y : &d->x;
    NnField *virt = which ? &s->vy[k] : &s->vx[k];
    nnrt_tensor_free(*slot);
    *slot = NULL;
    if (t && !s->vx[k].name && !s->vy[k].name) {
        *slot = t;
        virt->name = NULL;
    } else {
        nnrt_tensor_free(t);
        *virt = *f;
        virt->name = target;
    }
    d->count = n;
    count_classes(d);
    return true;
}

static bool set_tensor(NnCtx *c, NnSplits *s, NnrtDataset *d, const NnAst *st, NnTensor *t)
{
    NnField f = {NULL, t->dtype, {.rank = t->rank}};
    memcpy(f.sample.dim, t->shape, sizeof(int64_t) * (size_t)t->rank);
    return set_field(c, s, d, st, &f, t);
}

// Refuses a data graph that holds a value larger than memory (or whose byte
// count overflows) before it runs, naming the expression, shape and size.
static bool graph_fits(NnCtx *c, const NnGraph *g)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t mem = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
    for (int i = 0; i < g->count; i++) {
        const NnNode *n = nn_node(g, i);
        uint64_t bytes = nnrt_dtype_size(n->dtype);
        bool over = false, sym = false;
        for (int k = 0; k < n->shape.rank; k++) {
            sym = sym || nn_dim_is_sym(n->shape.dim[k]);
            over = over || __builtin_mul_overflow(bytes, (uint64_t)n->shape.dim[k], &bytes);
        }
        if (!sym && (over || bytes > mem)) {
            char ty[128], sz[32] = "over 2^64";
            if (!over)
                snprintf(sz, sizeof sz, "%llu", (unsigned long long)bytes);
            nn_error(&c->diags, n->loc, "this data would be %s: %s bytes, more than this "
                     "machine's memory (%llu bytes)", nn_type_str(g, n->dtype, &n->shape, ty,
                     sizeof ty), sz, (unsigned long long)mem);
            return false;
        }
    }
    return true;
}

static bool is_predict(const NnSplits *s, int k) { return !strcmp(s->names[k], "predict"); }

// Evaluates field = expr on one split (or to create the first split). With
// shapes_only the graph is lowered for its result's shape and not run,
// except on samples to predict.
static bool transform(NnCtx *c, const NnProgram *p, const NnBackend *be, NnSplits *s,
                      NnrtDataset *d, const NnAst *st, uint64_t seed)
{
    NnField f[2];
    NnTensor *in[2];
    int nf = 0;
    for (int which = 0; d && which < 2; which++)
        if (nn_splits_field(s, (int)(d - s->ds), which, &f[nf]))
            in[nf++] = which ? d->y : d->x;
    NnGraph *g = nn_lower_expr(c, p, st->a, f, nf, seed);
    if (!g)
        return false;
    if (!graph_fits(c, g)) {
        nn_graph_free(g);
        return false;
    }
    if (data_hook && data_hook->transform)
        data_hook->transform(data_hook->ctx, st, d ? (int)(d - s->ds) : -1, g);
    if (s->shapes_only && !(d && is_predict(s, (int)(d - s->ds)))) {
        const NnNode *n = nn_node(g, g->outputs[0].id);
        NnField out = {NULL, n->dtype, n->shape};
        nn_graph_free(g);
        // The whole split turns virtual, so its fields stay the same kind.
        for (int which = 0; d && which < 2; which++)
            virtualize(s, (int)(d - s->ds), which);
        return set_field(c, s, d, st, &out, NULL);
    }
    NnTensor *t = NULL;
    bool ok = nn_driver_eval_graph(c, be, g, in, &t, st->a->loc);
    nn_graph_free(g);
    if (!ok)
        return false;
    return set_tensor(c, s, d, st, t);
}

// Part i of a split of `count` samples by fractions fr: the samples between
// rounded cumulative boundaries, as nnrt_dataset_split cuts them.
static int64_t part_count(const double *fr, int n, int i, int64_t count)
{
    double total = 0, cum = 0;
    for (int k = 0; k < n; k++)
        total += fr[k];
    int64_t start = 0, end = 0;
    for (int k = 0; k <= i; k++) {
        cum += fr[k];
        end = k == n - 1 ? count : (int64_t)llround(cum / total * (double)count);
        if (end < start)
            end = start;
        if (k < i)
            start = end;
    }
    return end - start;
}

// Divides a virtual split: the parts get the same fields with their counts.
static bool split_virtual(NnCtx *c, NnSplits *s, const NnAst *st, int ks, const double *fr, int n)
{
    NnField f[2];
    bool has[2];
    int64_t count = s->ds[ks].count;
    for (int which = 0; which < 2; which++)
        has[which] = nn_splits_field(s, ks, which, &f[which]);
    NnLoc at = s->label_loc[ks];
    for (int i = 0; i < n; i++) {
        int64_t m = part_count(fr, n, i, count);
        if (m == 0) {
            nn_error(&c->diags, st->kids.items[i]->loc, "split '%s' gets no samples (%g of %lld)",
                     st->kids.items[i]->name, fr[i], (long long)count);
            return false;
        }
    }
    for (int i = 0; i < n; i++) {
        int64_t m = part_count(fr, n, i, count);
        NnrtDataset *d = split_add(c, s, st->kids.items[i]->name, st->kids.items[i]->loc);
        if (!d)
            return false;
        int k = (int)(d - s->ds);
        for (int which = 0; which < 2; which++) {
            NnField *v = which ? &s->vy[k] : &s->vx[k];
            if (!has[which])
                continue;
            *v = f[which];
            v->sample.dim[0] = m;
        }
        d->count = m;
        s->label_loc[k] = at;
        if (nnrt_dataset_set_label_origin(d, s->ds[ks].y_file, NULL, false) != NN_OK) {
            nn_error(&c->diags, st->loc, "%s", nnrt_errmsg());
            return false;
        }
    }
    return true;
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
        if (a->kind != NN_AST_ARG || strcmp(a->name, "seed") || a->a->kind != NN_AST_NUM ||
            !a->a->is_int || a->a->num > 9007199254740992.0) {
            nn_error(&c->diags, a->loc, "split options: (seed = N), N an integer from 0 to 2^53");
            return false;
        }
        seed = (uint64_t)a->a->num;
    }
    int ks = (int)(src - s->ds);
    if (s->vx[ks].name || s->vy[ks].name)
        return split_virtual(c, s, st, ks, fr, n);
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
    NnLoc at = s->label_loc[src - s->ds];
    for (int i = 0; i < n; i++) {
        NnrtDataset *d = split_add(c, s, st->kids.items[i]->name, st->kids.items[i]->loc);
        if (!d) {
            for (int k = i; k < n; k++)
                nnrt_dataset_fini(&parts[k]);
            return false;
        }
        *d = parts[i]; // the dataset split carries the labels' file along
        s->label_loc[d - s->ds] = at;
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
    NnField fx;
    if (!train || !nn_splits_field(s, (int)(train - s->ds), 0, &fx)) {
        nn_error(&c->diags, v->loc, "normalize needs a 'train' split to compute statistics on");
        return false;
    }
    if (s->shapes_only)
        return true; // the shapes stay as they are
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

static void shape_str(const int64_t *dim, int rank, char *buf, size_t size)
{
    int len = snprintf(buf, size, "[");
    for (int i = 0; i < rank && len < (int)size; i++)
        len += snprintf(buf + len, size - (size_t)len, "%s%lld", i ? ", " : "", (long long)dim[i]);
    if (len < (int)size)
        snprintf(buf + len, size - (size_t)len, "]");
}

// The column of a row of ncols values that a csv() call reads as the label
// (label = "name" found in the header, or an index, else the last); -1: none.
static int csv_label_column(const NnAst *call, const char *header, int ncols)
{
    for (int i = 1; i < call->kids.count; i++) {
        const NnAst *a = call->kids.items[i];
        if (a->kind != NN_AST_ARG || strcmp(a->name, "label"))
            continue;
        if (a->a->kind == NN_AST_STR) {
            size_t len = strlen(a->a->str);
            int col = 0;
            for (const char *p = header; p; p = strchr(p, ','), p = p ? p + 1 : NULL, col++) {
                p += strspn(p, " \t\"");
                if (!strncmp(p, a->a->str, len) && strchr(",\" \t\r\n", p[len]))
                    return col;
            }
            return -1;
        }
        double v = a->a->kind == NN_AST_NUM ? a->a->num : -a->a->a->num;
        int k = (int)v < 0 ? ncols + (int)v : (int)v;
        return k >= 0 && k < ncols ? k : -1;
    }
    return ncols - 1;
}

// Takes s->predict_x in as split "predict" once its samples are checked
// against `like`, a split as the data's loader made it: the same values per
// sample, reshaped to its sample shape. `what` says where that shape came
// from. A row of a CSV file with one value more than a sample, for data that
// csv() loads (`call`), loses its label column: the data's own files can be
// given.
static bool take_predict(NnCtx *c, NnSplits *s, const NnrtDataset *like, const char *what,
                         NnLoc loc, const NnAst *call)
{
    NnTensor *t = s->predict_x;
    NnField fx;
    if (!like || !nn_splits_field(s, (int)(like - s->ds), 0, &fx) || fx.dtype != NN_DT_F32) {
        nn_error(&c->diags, loc, "nnc predict reads f32 samples; this data's x %s",
                 like && nn_splits_field(s, (int)(like - s->ds), 0, &fx) ? "holds integer ids"
                                                                           : "is not made here");
        return false;
    }
    const NnShape *ref = &fx.sample; // the full shape, the count first
    int64_t per = 1;
    for (int i = 1; i < ref->rank; i++)
        per *= ref->dim[i];
    int col = call && !strcmp(call->a->name, "csv") && !s->predict_flat && t->rank == 2 &&
                      t->shape[1] == per + 1
                  ? csv_label_column(call, s->predict_header, (int)t->shape[1]) : -1;
    if (s->predict_text && col != s->predict_text_col) {
        nn_error(&c->diags, loc, "%s", s->predict_text);
        return false;
    }
    if (col >= 0) {
        float *v = t->data;
        int64_t w = t->shape[1], k = 0;
        for (int64_t i = 0; i < t->numel; i++)
            if (i % w != col)
                v[k++] = v[i];
        t->shape[1] = per;
        t->numel = k;
    }
    int64_t have = s->predict_flat ? per : 1;
    for (int i = 1; !s->predict_flat && i < t->rank; i++)
        have *= t->shape[i];
    char want[96], got[96];
    shape_str(ref->dim + 1, ref->rank - 1, want, sizeof want);
    shape_str(t->shape + 1, t->rank - 1, got, sizeof got);
    if (t->numel == 0) {
        nn_error(&c->diags, loc, "'%s' holds no samples; expected samples of %s (%lld values "
                 "each), as %s", s->predict_file, want, (long long)per, what);
        return false;
    }
    if (s->predict_flat && t->numel % per) {
        nn_error(&c->diags, loc, "'%s': %lld values are not a whole number of samples: "
                 "expected samples of %s (%lld f32 values each), as %s", s->predict_file,
                 (long long)t->numel, want, (long long)per, what);
        return false;
    }
    if (have != per) {
        nn_error(&c->diags, loc, "'%s' holds %lld samples of %s (%lld values each); "
                 "expected samples of %s (%lld values each), as %s", s->predict_file,
                 (long long)(t->rank ? t->shape[0] : 0), got, (long long)have,
                 want, (long long)per, what);
        return false;
    }
    t->rank = ref->rank;
    t->shape[0] = t->numel / per;
    memcpy(t->shape + 1, ref->dim + 1, sizeof(int64_t) * (size_t)(ref->rank - 1));
    NnrtDataset *d = split_add(c, s, "predict", loc);
    if (!d)
        return false;
    s->predict_x = NULL;
    d->x = t;
    d->count = t->shape[0];
    return true;
}

bool nn_driver_load_data(NnCtx *c, const NnProgram *p, const NnAst *data, const NnBackend *be,
                         uint64_t seed, bool shapes_only, NnSplits *s)
{
    NnTensor *predict_x = s->predict_x;
    const char *predict_file = s->predict_file, *predict_header = s->predict_header;
    const char *predict_text = s->predict_text;
    int predict_text_col = s->predict_text_col;
    bool predict_flat = s->predict_flat;
    memset(s, 0, sizeof *s);
    s->predict_x = predict_x;
    s->predict_file = predict_file;
    s->predict_header = predict_header;
    s->predict_text = predict_text;
    s->predict_text_col = predict_text_col;
    s->predict_flat = predict_flat;
    s->label = "label";
    s->shapes_only = shapes_only;
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
            (!strcmp(v->a->name, "idx") || !strcmp(v->a->name, "csv") ||
             !strcmp(v->a->name, "text"))) {
            NnrtDataset *d = split_add(c, s, target, st->loc);
            if (!d || !load_source(c, v, s, d))
                return false;
            if (s->predict_x && !s->predict_flat &&
                !take_predict(c, s, d, nn_arena_printf(c->arena, "%s() reads this data",
                                                       v->a->name), st->loc, v))
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
                     "data fields are 'x' and 'label' (or 'y'); a split is 'name = idx(...)', "
                     "'name = csv(...)' or 'name = text(...)'");
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
            if (!t || !set_tensor(c, s, NULL, st, t))
                return false;
            continue;
        }
        if (s->count == 0) {
            if (!transform(c, p, be, s, NULL, st, seed))
                return false;
            continue;
        }
        // Samples to predict have no label to compute.
        for (int k = 0; k < s->count; k++)
            if (!(is_label(target) && is_predict(s, k)) &&
                !transform(c, p, be, s, &s->ds[k], st, seed + (uint64_t)k))
                return false;
    }
    if (!nn_splits_get(s, "train")) {
        nn_error(&c->diags, data->loc, "data '%s' has no 'train' split", data->name);
        return false;
    }
    // Raw f32, or data written or generated in the script: samples to
    // predict are model inputs as the train split holds them.
    if (s->predict_x && !take_predict(c, s, nn_splits_get(s, "train"), "the model takes them",
                                      data->loc, NULL))
        return false;
    // Data for a generator (a GAN's real samples) has x alone; otherwise
    // every split needs both fields.
    bool labels = false;
    for (int k = 0; k < s->count; k++) {
        NnField f;
        labels = labels || nn_splits_field(s, k, 1, &f);
    }
    for (int k = 0; k < s->count; k++) {
        NnrtDataset *d = &s->ds[k];
        NnField fx, fy;
        bool hx = nn_splits_field(s, k, 0, &fx), hy = nn_splits_field(s, k, 1, &fy);
        if (!hx || (!hy && labels && !is_predict(s, k))) {
            nn_error(&c->diags, data->loc, "split '%s' of data '%s' lacks %s", s->names[k],
                     data->name, hx ? "a label field" : "an x field");
            return false;
        }
        if (d->count == 0) {
            nn_error(&c->diags, data->loc, "split '%s' of data '%s' has no samples", s->names[k],
                     data->name);
            return false;
        }
        if (hy && fx.sample.dim[0] != fy.sample.dim[0]) {
            nn_error(&c->diags, data->loc, "split '%s': x has %lld samples but %s has %lld",
                     s->names[k], (long long)fx.sample.dim[0], s->label,
                     (long long)fy.sample.dim[0]);
            return false;
        }
    }
    return true;
}
