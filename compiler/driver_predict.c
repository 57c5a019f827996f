// `nnc predict FILE --weights W INPUT [-o OUT]`: the trained model of FILE's
// train block applied to new samples under the JIT (or the interpreter), as
// a program from `nnc build` does it. INPUT is an IDX file of samples
// (gzipped or not) or a CSV file of feature rows (a header line is skipped),
// both as the data block's loader reads them, which then go through the data
// block's x statements exactly as the data do (driver_data.c takes them in
// as split "predict"); or `-`: raw little-endian f32 model inputs on standard
// input. Then the eval graph runs in batches. OUT (standard output when
// absent or `-`) is CSV with a header line: a classifier's class and scores,
// or the model's outputs.
#include "driver.h"

#include "fileio.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "savefile.h"

// Raw f32 from standard input: any whole number of floats; the data decide
// how many make a sample.
static bool read_stdin_f32(NnCtx *c, NnTensor **out)
{
    size_t cap = 1 << 16, len = 0, n;
    char *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len, stdin)) > 0) {
        len += n;
        char *more = len == cap ? realloc(buf, cap *= 2) : buf;
        if (!more)
            free(buf);
        buf = more;
    }
    if (!buf || ferror(stdin)) {
        nn_error(&c->diags, (NnLoc){0}, "'-' (standard input): %s",
                 buf ? strerror(errno) : "out of memory");
        free(buf);
        return false;
    }
    if (len % 4) {
        nn_error(&c->diags, (NnLoc){0}, "'-' (standard input): %zu bytes are not whole f32 "
                 "values (4 bytes each)", len);
        free(buf);
        return false;
    }
    int64_t count = (int64_t)(len / 4);
    *out = nnrt_tensor_new(NN_DT_F32, 1, &count);
    if (*out)
        memcpy((*out)->data, buf, len);
    else
        nn_error(&c->diags, (NnLoc){0}, "'-' (standard input): %s", nnrt_errmsg());
    free(buf);
    return *out != NULL;
}

// A CSV file of numbers, one sample a row; a first row holding anything that
// is not a number is a header (kept in s->predict_header). Every row must
// have as many fields as the first. Cells that are not numbers are allowed in
// one column only (a label column of names, which driver_data.c drops for
// data that csv() reads); they read as NaN, and s->predict_text says where
// the first was, for the error if that column is not dropped.
static bool read_csv(NnCtx *c, const char *path, FILE *f, NnSplits *s)
{
    size_t cap = 0;
    char *line = NULL;
    float *vals = NULL;
    int64_t nvals = 0, vcap = 0, cols = -1, rows = 0, lineno = 0;
    bool ok = true;
    s->predict_text_col = -1;
    while (ok && getline(&line, &cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[strspn(line, " \t")])
            continue;
        int64_t start = nvals, ncols = 0;
        bool header = false;
        for (char *p = line; ok && !header; p++) {
            int len = (int)strcspn(p, ",");
            char *end;
            double v = strtod(p, &end);
            end += strspn(end, " \t");
            if (end == p || end != p + len) {
                if ((header = rows == 0 && cols < 0))
                    break;
                const char *cell = nn_arena_printf(c->arena, "%s:%lld: '%.*s' is not a number",
                                                   path, (long long)lineno,
                                                   len > 40 ? 40 : len, p);
                if (s->predict_text_col < 0) {
                    s->predict_text_col = (int)ncols;
                    s->predict_text = cell;
                } else if (s->predict_text_col != ncols) {
                    nn_error(&c->diags, (NnLoc){0}, "%s", cell);
                    ok = false;
                }
                v = NAN;
            }
            if (ok && nvals == vcap) {
                vcap = vcap ? 2 * vcap : 4096;
                float *more = realloc(vals, (size_t)vcap * sizeof *vals);
                if (!more) {
                    nn_error(&c->diags, (NnLoc){0}, "%s: out of memory", path);
                    ok = false;
                }
                vals = more ? more : vals;
            }
            if (ok)
                vals[nvals++] = (float)v;
            ncols++;
            p += len;
            if (!*p)
                break;
        }
        if (!ok)
            break;
        if (header) {
            nvals = start;
            cols = 0; // a header was seen: no second one
            s->predict_header = nn_arena_printf(c->arena, "%s", line);
            continue;
        }
        if (cols > 0 && ncols != cols) {
            nn_error(&c->diags, (NnLoc){0}, "%s:%lld: %lld fields, the first row has %lld", path,
                     (long long)lineno, (long long)ncols, (long long)cols);
            ok = false;
            break;
        }
        cols = ncols;
        rows++;
    }
    free(line);
    if (ok && rows == 0) {
        nn_error(&c->diags, (NnLoc){0}, "%s: no rows of numbers", path);
        ok = false;
    }
    int64_t shape[2] = {rows, cols};
    if (ok && !(s->predict_x = nnrt_tensor_new(NN_DT_F32, 2, shape))) {
        nn_error(&c->diags, (NnLoc){0}, "%s: %s", path, nnrt_errmsg());
        ok = false;
    }
    if (ok)
        memcpy(s->predict_x->data, vals, (size_t)nvals * sizeof *vals);
    free(vals);
    return ok;
}

// Reads INPUT into s->predict_x: IDX by its magic bytes (gzip's, or two zero
// bytes then a type code), else CSV.
static bool read_input(NnCtx *c, const char *path, NnSplits *s)
{
    s->predict_file = path;
    if (!strcmp(path, "-")) {
        s->predict_file = "-";
        s->predict_flat = true;
        return read_stdin_f32(c, &s->predict_x);
    }
    // A directory or device is refused by what it is; a pipe (/dev/stdin) is
    // read once, so the bytes read to tell the format apart are put back.
    FILE *f = NULL;
    if (nnrt_file_fopen_stream(path, "input", &f) != NN_OK) {
        if (errno) // could not open it (errno is 0 for a refused file type)
            nn_error(&c->diags, (NnLoc){0}, "cannot read '%s': %s", path, strerror(errno));
        else
            nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        return false;
    }
    int m0 = fgetc(f), m1 = m0 == EOF ? EOF : fgetc(f);
    struct stat st;
    bool regular = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode);
    bool idx = (m0 == 0x1f && m1 == 0x8b) || (m0 == 0 && m1 == 0);
    if (idx && !regular) {
        nn_error(&c->diags, (NnLoc){0}, "'%s': IDX input must be a regular file (raw f32 can "
                 "come on standard input as '-')", path);
        fclose(f);
        return false;
    }
    if (idx) {
        fclose(f);
        NnTensor *t = NULL;
        if (nnrt_idx_load(path, &t) != NN_OK) {
            nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
            return false;
        }
        // A rank-1 integer file loads as i32 (labels); samples are f32.
        s->predict_x = t->dtype == NN_DT_F32 ? t : nnrt_tensor_new(NN_DT_F32, t->rank, t->shape);
        for (int64_t i = 0; s->predict_x != t && s->predict_x && i < t->numel; i++)
            nnrt_tensor_set(s->predict_x, i, nnrt_tensor_get(t, i));
        if (s->predict_x != t)
            nnrt_tensor_free(t);
        if (!s->predict_x)
            nn_error(&c->diags, (NnLoc){0}, "%s: %s", path, nnrt_errmsg());
        return s->predict_x != NULL;
    }
    if (m1 != EOF)
        ungetc(m1, f);
    bool ok = m0 == EOF || ungetc(m0, f) != EOF;
    ok = ok && read_csv(c, path, f, s);
    fclose(f);
    return ok;
}

// The model's weights and layer state from the checkpoint; optimizer state is
// not needed to predict, so a checkpoint without it is fine.
static bool load_weights(NnCtx *c, const NnTrainSpec *spec, const char *path, NnVars *vars)
{
    for (int i = 0; i < spec->nvars; i++) {
        const NnParamInit *v = &spec->vars[i];
        if (!v->trainable && !v->model_state)
            continue;
        NnTensor *t = nnrt_tensor_new(v->dtype, v->shape.rank, v->shape.dim);
        if (!t || nnrt_vars_append(vars, v->name, t) != NN_OK) {
            nn_error(&c->diags, v->loc, "cannot make '%s': %s", v->name, nnrt_errmsg());
            return false;
        }
    }
    NnVars loaded;
    bool ok = nnrt_safetensors_load(path, &loaded, NULL) == NN_OK &&
              nnrt_checkpoint_assign(path, vars, &loaded) == NN_OK;
    if (!ok)
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
    nnrt_vars_fini(&loaded);
    return ok;
}

// A CSV field: quoted when it holds a comma, quote or line break.
static void put_field(FILE *f, const char *s)
{
    if (!s[strcspn(s, ",\"\r\n")]) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

// The format of a built program's `predict` (runtime/app/main.c): a
// classifier's rows are the class then every score, under a header of
// "class" and the class names (or score0, ...); other models' rows are
// their outputs under y0, y1, ...
static void write_csv(FILE *f, const float *out, int64_t n, int64_t width, bool classify,
                      char *const *names)
{
    fputs(classify ? "class" : "", f);
    for (int64_t k = 0; k < width; k++) {
        fputs(classify || k ? "," : "", f);
        if (names)
            put_field(f, names[k]);
        else
            fprintf(f, "%s%lld", classify ? "score" : "y", (long long)k);
    }
    fputc('\n', f);
    for (int64_t i = 0; i < n; i++) {
        const float *r = out + i * width;
        if (classify) {
            int64_t best = 0;
            for (int64_t k = 1; k < width; k++)
                best = r[k] > r[best] ? k : best;
            if (names)
                put_field(f, names[best]);
            else
                fprintf(f, "%lld", (long long)best);
        }
        for (int64_t k = 0; k < width; k++)
            fprintf(f, "%s%.7g", classify || k ? "," : "", (double)r[k]);
        fputc('\n', f);
    }
}

// Runs the eval graph over x in batches of `batch` rows, with zero labels of
// the label field's shape (the loss it computes is not used). out: n * width.
static bool run_batches(NnCtx *c, const NnBackend *be, NnExec *x, NnVars *vars,
                        const NnTensor *xs, const NnField *label, int out_index, int64_t batch,
                        float *out, int64_t width)
{
    int64_t n = xs->shape[0], per = xs->numel / (n ? n : 1);
    for (int64_t at = 0; at < n; at += batch) {
        int64_t m = n - at < batch ? n - at : batch;
        int64_t xshape[NN_MAX_RANK], yshape[NN_MAX_RANK];
        memcpy(xshape, xs->shape, sizeof xshape);
        xshape[0] = m;
        yshape[0] = m;
        for (int i = 1; i < label->sample.rank; i++)
            yshape[i] = label->sample.dim[i];
        NnTensor *xv = nnrt_tensor_view(NN_DT_F32, xs->rank, xshape,
                                        (float *)xs->data + at * per);
        NnTensor *yv = nnrt_tensor_new(label->dtype, label->sample.rank, yshape);
        NnTensor *in[2] = {xv, yv}, *res[8] = {0};
        NnStatus st = xv && yv ? be->run(x, vars, in, res) : NN_ERR_NOMEM;
        nnrt_tensor_free(xv);
        nnrt_tensor_free(yv);
        if (st != NN_OK) {
            nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
            return false;
        }
        const NnTensor *o = res[out_index];
        if (o->numel != m * width) {
            nn_error(&c->diags, (NnLoc){0}, "the model gave %lld values for %lld samples, "
                     "expected %lld", (long long)o->numel, (long long)m, (long long)(m * width));
            return false;
        }
        for (int64_t i = 0; i < m * width; i++)
            out[at * width + i] = (float)nnrt_tensor_get(o, i);
    }
    return true;
}

static bool write_output(NnCtx *c, const char *path, const float *out, int64_t n, int64_t width,
                         bool classify, char *const *names)
{
    if (!path || !strcmp(path, "-")) {
        write_csv(stdout, out, n, width, classify, names);
        return fflush(stdout) == 0;
    }
    NnrtSaveFile sf;
    if (nnrt_savefile_open(&sf, path) != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        return false;
    }
    write_csv(sf.f, out, n, width, classify, names);
    if (nnrt_savefile_commit(&sf, !ferror(sf.f), "predictions") != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        return false;
    }
    return true;
}

// Whether the first train block's data has `x = normalize(...)`.
static bool uses_normalize(const NnProgram *p)
{
    const NnDecl *dd = p->ntrains ? nn_sema_find(p, p->trains[0]->name2) : NULL;
    for (int i = 0; dd && dd->ast->kind == NN_AST_DATA && i < dd->ast->kids.count; i++) {
        const NnAst *v = dd->ast->kids.items[i]->a;
        if (v && v->kind == NN_AST_CALL && v->a->kind == NN_AST_NAME &&
            !strcmp(v->a->name, "normalize"))
            return true;
    }
    return false;
}

int nn_cmd_predict(NnCtx *c, const NnProgram *p, NnOptions *o)
{
    const NnBackend *be = nn_driver_backend(o);
    if (!be)
        return 1;
    // An unwritable OUT is found before any data are read.
    if (o->output && strcmp(o->output, "-") && nnrt_savefile_check(o->output) != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        return 1;
    }
    NnTrainSpec spec = {0};
    NnSplits splits = {0};
    NnVars vars;
    nnrt_vars_init(&vars);
    NnExec *x = NULL;
    float *out = NULL;
    int rc = 1;
    // Only the samples to predict are transformed, unless normalize(x)
    // needs the training split's statistics.
    if (!read_input(c, o->input, &splits) ||
        !nn_driver_setup(c, p, o, !uses_normalize(p), &spec, &splits))
        goto done;
    if (spec.nsteps > 0) {
        nn_error(&c->diags, spec.ast->loc, "train block of '%s' has steps and no model output "
                 "to predict; `nnc sample` shows what a generator makes", spec.model);
        goto done;
    }
    NnrtDataset *ds = nn_splits_get(&splits, "predict");
    NnrtDataset *train = nn_splits_get(&splits, "train");
    NnField label;
    if (!ds || !nn_splits_field(&splits, (int)(train - splits.ds), 1, &label)) {
        nn_error(&c->diags, spec.ast->loc, "data '%s' has no label field: nothing to predict",
                 spec.data);
        goto done;
    }
    NnPassOptions po = o->passes;
    if (!po.stop)
        po.stop = strcmp(be->name, "interp") == 0 ? "opt" : "fused";
    spec.eval = nn_passes_run(spec.eval, &po);
    NnExecOptions eo = {.threads = o->threads, .verbose = o->verbose};
    if (!(x = be->prepare(spec.eval, &eo))) {
        nn_error(&c->diags, spec.ast->loc, "backend '%s' cannot prepare the graph: %s",
                 be->name, nnrt_errmsg());
        goto done;
    }
    if (!load_weights(c, &spec, o->weights, &vars))
        goto done;
    int out_index = 0;
    for (int i = 0; i < spec.eval->noutputs; i++)
        if (!strcmp(spec.eval->outputs[i].name, "output"))
            out_index = i;
    const NnNode *on = nn_node(spec.eval, spec.eval->outputs[out_index].id);
    int64_t width = 1;
    for (int i = 1; i < on->shape.rank; i++)
        width *= on->shape.dim[i];
    int64_t n = ds->count;
    if (!(out = malloc((size_t)(n * width) * sizeof *out))) {
        nn_error(&c->diags, (NnLoc){0}, "out of memory for %lld predictions", (long long)n);
        goto done;
    }
    if (!run_batches(c, be, x, &vars, ds->x, &label, out_index,
                     spec.batch > 0 ? spec.batch : 128, out, width))
        goto done;
    // Any split that has the names (a virtual split made by `split` has none).
    char *const *names = NULL;
    for (int i = 0; spec.classify && i < splits.count; i++)
        if (!names && splits.ds[i].class_names && splits.ds[i].num_classes >= width)
            names = splits.ds[i].class_names;
    if (!write_output(c, o->output, out, n, width, spec.classify, names))
        goto done;
    rc = 0;
done:
    free(out);
    if (x)
        be->free(x);
    nnrt_vars_fini(&vars);
    nn_splits_fini(&splits);
    nn_train_spec_fini(&spec);
    return rc;
}
