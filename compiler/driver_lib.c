// `nnc build FILE --lib -o [DIR/]libNAME [--target T]`: a static library
// libNAME.a and its header NAME.h for embedding the first train block's
// model in a C program. The training step and the evaluation graph are
// compiled ahead of time (backend/aot.h), tuned for the training batch size;
// a generated C file holds their step descriptors, the variables'
// initializers and thin NAME_* wrappers over runtime/model_api.h. Each graph
// takes its batch at run time when every op on it can (a training step then
// takes any number of samples; a prediction runs its rows in batch-sized
// chunks, the last one short), else the training step takes exactly the
// batch and runtime/model_api pads a partial prediction chunk: either way one
// compile serves any n. The system C compiler
// (`cc`) compiles that file and `ar` adds it, the kernel objects and every
// object of libnnrt to one archive: the user links libNAME.a, -lz, -lm and
// -lpthread and nothing of nnc. The data block is read for shapes only (IDX
// images files for their headers).
#include "driver.h"
#include "savefile.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef NN_WITH_LLVM
#include "aot.h"

typedef struct Lib {
    char name[64];           // C identifier: NAME of libNAME.a, NAME.h, NAME_create
    char upper[64];          // NAME in capitals, for macros
    char lib[PATH_MAX];      // DIR/libNAME.a
    char header[PATH_MAX];   // DIR/NAME.h
    char tmp[64];            // scratch directory for objects and C source
} Lib;

// -o [DIR/]libNAME[.a] (the "lib" and ".a" optional) names both files.
static bool lib_names(NnCtx *c, const char *out, Lib *L)
{
    const char *slash = strrchr(out, '/');
    const char *base = slash ? slash + 1 : out;
    int dirlen = slash ? (int)(slash - out) + 1 : 0;
    size_t len = strlen(base);
    if (len > 2 && !strcmp(base + len - 2, ".a"))
        len -= 2;
    if (len > 3 && !strncmp(base, "lib", 3))
        base += 3, len -= 3;
    bool ok = len > 0 && len < sizeof L->name && (isalpha((unsigned char)base[0]) ||
                                                  base[0] == '_');
    for (size_t i = 0; ok && i < len; i++)
        ok = isalnum((unsigned char)base[i]) || base[i] == '_';
    if (!ok) {
        nn_error(&c->diags, (NnLoc){0}, "-o %s: the library's name '%.*s' must be a C "
                 "identifier (letters, digits and '_', not starting with a digit), as in "
                 "-o libmlp", out, (int)len, base);
        return false;
    }
    snprintf(L->name, sizeof L->name, "%.*s", (int)len, base);
    for (size_t i = 0; i <= len; i++)
        L->upper[i] = (char)toupper((unsigned char)L->name[i]);
    snprintf(L->lib, sizeof L->lib, "%.*slib%s.a", dirlen, out, L->name);
    snprintf(L->header, sizeof L->header, "%.*s%s.h", dirlen, out, L->name);
    return true;
}

// Binds g's symbolic dims from its inputs (x first, then the label): dim 0
// is the batch, the others the fields' sample dims (fields hold full shapes,
// the count first).
static void bind_syms(const NnGraph *g, const NnField *f, int nf, int64_t batch, int64_t *symv)
{
    for (int k = 0; k < NN_MAX_SYMS; k++)
        symv[k] = batch;
    int in = 0;
    for (int i = 0; i < g->count && in < nf; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op != NN_OP_INPUT)
            continue;
        for (int j = 1; j < n->shape.rank && j < f[in].sample.rank; j++)
            if (nn_dim_is_sym(n->shape.dim[j]))
                symv[-(n->shape.dim[j] + 1)] = f[in].sample.dim[j];
        in++;
    }
}

static void c_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 32 || ch > 126)
            fprintf(f, "\\%03o", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static int64_t numel_of(const NnField *f)
{
    int64_t n = 1;
    for (int i = 1; i < f->sample.rank; i++)
        n *= f->sample.dim[i];
    return n;
}

// The data block's x statements, as the source writes them, for the header.
static void write_x_statements(FILE *f, const NnProgram *p, const NnTrainSpec *spec)
{
    const NnDecl *dd = nn_sema_find(p, spec->ast->name2);
    for (int i = 0; dd && i < dd->ast->kids.count; i++) {
        const NnAst *st = dd->ast->kids.items[i];
        if (st->kind != NN_AST_ASSIGN || st->kids.count != 1 ||
            st->kids.items[0]->kind != NN_AST_NAME || strcmp(st->kids.items[0]->name, "x") ||
            !st->loc.src)
            continue;
        const char *line = st->loc.src->text;
        for (int l = 1; l < st->loc.line && line; l++)
            line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL;
        if (line) {
            line += strspn(line, " \t");
            fprintf(f, "//     %.*s\n", (int)strcspn(line, "\r\n"), line);
        }
    }
}

static void write_header(FILE *f, const Lib *L, const NnProgram *p, const NnTrainSpec *spec,
                         const NnField *fx, const NnField *fy, int64_t out_size, int classes,
                         const char *file, bool any_step, const char *why)
{
    const char *n = L->name, *N = L->upper;
    bool ilabel = fy->dtype == NN_DT_I32;
    fprintf(f, "// %s.h: the C API of model '%s' (%s), built by `nnc build --lib`.\n"
            "// Link: cc prog.c lib%s.a -lz -lm -lpthread (the archive holds the compiled\n"
            "// model and the nnc runtime; nothing else of nnc is needed).\n"
            "//\n"
            "// Every function but %s_free and the name lookups returns %s_OK (0) or an\n"
            "// error status; %s_errmsg(m) then says what went wrong. No function exits\n"
            "// or aborts on bad arguments, files or data.\n"
            "//\n"
            "// Thread safety: a context may be used by one thread at a time. Distinct\n"
            "// contexts are independent (each has its own worker threads) and may be\n"
            "// used from different threads at once.\n"
            "//\n"
            "// Samples are f32 rows of %s_INPUT_SIZE values as the model takes them,\n"
            "// that is after the data block's transforms of x:\n",
            n, spec->model, file, n, n, N, n, N);
    write_x_statements(f, p, spec);
    fprintf(f, "#ifndef %s_H\n#define %s_H\n\n#include <stdint.h>\n\n"
            "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n", N, N);
    fprintf(f, "enum {\n    %s_OK = 0,\n    %s_ERR_IO = 1,      // a file is missing, unreadable "
            "or unwritable\n    %s_ERR_FORMAT = 2,  // a checkpoint file is malformed\n"
            "    %s_ERR_NOMEM = 3,\n    %s_ERR_SHAPE = 4,   // arguments or a checkpoint disagree "
            "with the model\n    %s_ERR_RUNTIME = 5  // anything else: a label out of range, "
            "a diverged loss\n};\n\n", N, N, N, N, N, N);
    fprintf(f, "// f32 values per sample of x, and of the model's output\n"
            "#define %s_INPUT_SIZE %lld\n#define %s_OUTPUT_SIZE %lld\n", N,
            (long long)numel_of(fx), N, (long long)out_size);
    fprintf(f, "// %s per sample, and samples per batch, for %s_train_step\n"
            "#define %s_LABEL_SIZE %lld\n#define %s_BATCH %lld\n",
            ilabel ? "class indices (int32_t)" : "f32 targets", n, N, (long long)numel_of(fy),
            N, (long long)spec->batch);
    fprintf(f, "// classes a classifier scores; 0 for other models\n"
            "#define %s_NUM_CLASSES %d\n\n", N, classes);
    fprintf(f, "typedef struct %s_model %s_model;\n\n", n, n);
    fprintf(f, "// A new context: freshly initialized weights (as `nnc train` starts, same\n"
            "// seed) and `threads` worker threads (0: all cores). On failure *m is NULL\n"
            "// and %s_errmsg(NULL) says why.\n"
            "int %s_create(%s_model **m, int threads);\n"
            "void %s_free(%s_model *m); // NULL is fine\n\n", n, n, n, n, n);
    fprintf(f, "// Weights (and optimizer state when present) from a safetensors checkpoint\n"
            "// such as `nnc train` saves; a missing or mismatched tensor is named in the\n"
            "// error and leaves m unchanged.\n"
            "int %s_load(%s_model *m, const char *path);\n"
            "// Every variable, optimizer state included, to a safetensors checkpoint\n"
            "// (replaced atomically) that `nnc eval --weights` and %s_load read.\n"
            "int %s_save(%s_model *m, const char *path);\n\n", n, n, n, n, n);
    fprintf(f, "// out[n * %s_OUTPUT_SIZE] = the model's outputs for x[n * %s_INPUT_SIZE],\n"
            "// any n >= 1 (no dropout; layer statistics as trained).\n"
            "int %s_predict(%s_model *m, const float *x, int64_t n, float *out);\n", N, N, n, n);
    if (any_step)
        fprintf(f, "// One optimizer step on the n samples given, any n >= 1 (%s_BATCH is the\n"
                "// training batch of `nnc train`; a step on its partial last batch is a\n"
                "// step on fewer rows; no second compile), the loss the mean over them.\n"
                "// *loss (may be NULL) gets the batch's loss before the update.\n", N);
    else
        fprintf(f, "// One optimizer step on exactly n = %s_BATCH samples (this model's step is\n"
                "// compiled for that batch size: %s); *loss (may be NULL) gets the batch's\n"
                "// loss before the update.\n", N, why);
    fprintf(f, "int %s_train_step(%s_model *m, const float *x, const %s *labels, int64_t n,\n"
            "                  float *loss);\n\n", n, n, ilabel ? "int32_t" : "float");
    fprintf(f, "// Name of class k (the data block's `classes`, or its index as text when it\n"
            "// names none); NULL when k is not a class.\n"
            "const char *%s_class_name(int k);\n"
            "// The message of m's last failure (\"\" after a success); %s_errmsg(NULL):\n"
            "// the calling thread's last failure (for %s_create).\n"
            "const char *%s_errmsg(const %s_model *m);\n\n"
            "#ifdef __cplusplus\n}\n#endif\n\n#endif\n", n, n, n, n, n);
}

// The model's description and the wrappers, after the two descriptors.
static void write_model(FILE *f, const Lib *L, const NnTrainSpec *spec, const NnField *fx,
                        const NnField *fy, int eval_output, int64_t out_size, int classes,
                        char *const *names, bool pred)
{
    const char *n = L->name;
    fprintf(f, "static const NnrtModelVar vars[] = {\n");
    for (int i = 0; i < spec->nvars; i++) {
        const NnParamInit *v = &spec->vars[i];
        fputs("    {", f);
        c_str(f, v->name);
        fputs(", ", f);
        c_str(f, v->init ? v->init : "zeros");
        fprintf(f, ", {%.17g, %.17g, %.17g, %.17g}, %d, %d, %d, {", v->args[0], v->args[1],
                v->args[2], v->args[3], v->nargs, (int)v->dtype, v->shape.rank);
        for (int k = 0; k < v->shape.rank; k++)
            fprintf(f, "%s%lld", k ? ", " : "", (long long)v->shape.dim[k]);
        fprintf(f, "}, %d},\n", v->trainable || v->model_state);
    }
    fputs("    {0}\n};\n", f);
    fprintf(f, "static const char *const class_names[] = {");
    for (int k = 0; k < classes; k++) {
        if (names)
            c_str(f, names[k]);
        else
            fprintf(f, "\"%d\"", k);
        fputs(", ", f);
    }
    fputs("0};\n", f);
    fprintf(f, "static const NnrtModelDesc desc = {\"%s\", %lld, &nnm_%s_step, &nnm_%s_eval, %d,"
            " %d, vars, %lluull, %lld, %lld, %d, %lld, %d, class_names, ", n,
            (long long)spec->batch, n, n, eval_output, spec->nvars,
            (unsigned long long)spec->seed, (long long)numel_of(fx), (long long)out_size,
            (int)fy->dtype, (long long)numel_of(fy), classes);
    if (pred)
        fprintf(f, "&nnm_%s_pred};\n\n", n);
    else
        fputs("0};\n\n", f);
    fprintf(f, "int %s_create(%s_model **m, int threads)\n{\n"
            "    return nnrt_model_create(&desc, threads, (NnrtModel **)m);\n}\n"
            "void %s_free(%s_model *m) { nnrt_model_free((NnrtModel *)m); }\n"
            "int %s_load(%s_model *m, const char *path)\n{\n"
            "    return nnrt_model_load((NnrtModel *)m, path);\n}\n"
            "int %s_save(%s_model *m, const char *path)\n{\n"
            "    return nnrt_model_save((NnrtModel *)m, path);\n}\n",
            n, n, n, n, n, n, n, n);
    fprintf(f, "int %s_predict(%s_model *m, const float *x, int64_t n, float *out)\n{\n"
            "    return nnrt_model_predict((NnrtModel *)m, x, n, out);\n}\n"
            "int %s_train_step(%s_model *m, const float *x, const %s *labels, int64_t n,\n"
            "                  float *loss)\n{\n"
            "    return nnrt_model_train_step((NnrtModel *)m, x, labels, n, loss);\n}\n",
            n, n, n, n, fy->dtype == NN_DT_I32 ? "int32_t" : "float");
    fprintf(f, "const char *%s_class_name(int k)\n{\n"
            "    return k >= 0 && k < %d ? class_names[k] : 0;\n}\n"
            "const char *%s_errmsg(const %s_model *m)\n{\n"
            "    return nnrt_model_errmsg((const NnrtModel *)m);\n}\n", n, classes, n, n);
}

// Runs argv (NULL-terminated); false with a diagnostic naming the tool.
static bool run_tool(NnCtx *c, char *const *argv, const char *what)
{
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        nn_error(&c->diags, (NnLoc){0}, "%s with '%s' failed%s", what, argv[0],
                 pid >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 127
                     ? ": it is not installed" : "");
        return false;
    }
    return true;
}

static const char *in_tmp(NnCtx *c, const Lib *L, const char *file)
{
    return nn_arena_printf(c->arena, "%s/%s", L->tmp, file);
}

static void rm_tmp(NnCtx *c, const Lib *L)
{
    static const char *const files[] = {"step.o", "eval.o", "pred.o", "model.c", "model.o", "lib.a"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(in_tmp(c, L, files[i]));
    unlink(nn_arena_printf(c->arena, "%s/%s.h", L->tmp, L->name));
    rmdir(L->tmp);
}

// Whether every variable g names is one of spec's, of the same shape.
static bool vars_known(const NnGraph *g, const NnTrainSpec *spec)
{
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op != NN_OP_PARAM && n->op != NN_OP_STATE)
            continue;
        int k = 0;
        while (k < spec->nvars && strcmp(spec->vars[k].name, n->attr.name) != 0)
            k++;
        if (k == spec->nvars || !nn_shape_eq(&spec->vars[k].shape, &n->shape))
            return false;
    }
    return true;
}

// The graph of NAME_predict: the model alone (its one f32 input, in_size
// values a sample, to "output", out_size values), fused, when its batch can
// be a run-time value and it uses only the library's variables; else NULL and
// predict runs the evaluation step, which also computes the loss on zero
// labels (about 0.5 us of a 5 us batch-1 prediction on 2 threads).
static NnGraph *predict_graph(NnCtx *c, const NnProgram *p, const NnTrainSpec *spec,
                              const NnField *fx, int64_t out_size, const NnPassOptions *po)
{
    const NnDecl *d = nn_sema_find(p, spec->model);
    const NnAst *m = d ? d->ast : NULL;
    // Checked first: nn_lower_model reports an untyped input as an error.
    if (!m || m->params.count != 1 || !m->params.items[0]->type ||
        !m->params.items[0]->type->has_dims)
        return NULL;
    NnGraph *g = nn_lower_model(c, p, m, false);
    if (!g)
        return NULL;
    g = nn_passes_run(g, po);
    NnId o = g ? nn_graph_output(g, "output") : -1;
    const NnNode *in = NULL;
    for (NnId i = 0; g && i < g->count; i++)
        if (g->nodes[i].op == NN_OP_INPUT)
            in = &g->nodes[i];
    int64_t per_in = 1, per_out = 1;
    for (int k = 1; in && k < in->shape.rank; k++)
        per_in *= in->shape.dim[k];
    for (int k = 1; o >= 0 && k < nn_node(g, o)->shape.rank; k++)
        per_out *= nn_node(g, o)->shape.dim[k];
    char why[160];
    if (!g || o < 0 || g->noutputs != 1 || g->nupdates || !in || in->dtype != NN_DT_F32 ||
        per_in != numel_of(fx) || nn_node(g, o)->dtype != NN_DT_F32 || per_out != out_size ||
        !vars_known(g, spec) || nn_aot_batch_sym(g, why, sizeof why) < 0) {
        nn_graph_free(g);
        return NULL;
    }
    return g;
}

// Compiles the step and eval graphs (and pg, the model alone, if not NULL)
// into the scratch directory and writes model.c there; false with a
// diagnostic.
static bool compile_model(NnCtx *c, const Lib *L, const NnAotTarget *t, NnTrainSpec *spec,
                          int ssym, const NnField *f, int eval_output, int64_t out_size, int classes,
                          char *const *names, const NnGraph *pg)
{
    int64_t symv[NN_MAX_SYMS];
    NnrtStep *sd = NULL, *ed = NULL, *pd = NULL;
    char pre[96], what[96];
    snprintf(pre, sizeof pre, "nnm_%s_step_", L->name);
    snprintf(what, sizeof what, "training step, batch %lld", (long long)spec->batch);
    bind_syms(spec->step, f, 2, spec->batch, symv);
    if (ssym >= 0)
        snprintf(what, sizeof what, "training step");
    bool ok = (ssym >= 0 ? nn_aot_compile_any_batch(spec->step, symv, ssym, pre, what, t,
                                                    in_tmp(c, L, "step.o"), &sd)
                         : nn_aot_compile(spec->step, symv, pre, what, t, in_tmp(c, L, "step.o"),
                                          &sd)) == NN_OK;
    snprintf(pre, sizeof pre, "nnm_%s_eval_", L->name);
    snprintf(what, sizeof what, "evaluation, batch %lld", (long long)spec->batch);
    bind_syms(spec->eval, f, 2, spec->batch, symv);
    char why[160];
    int esym = nn_aot_batch_sym(spec->eval, why, sizeof why);
    if (esym >= 0)
        snprintf(what, sizeof what, "evaluation");
    ok = ok && (esym >= 0 ? nn_aot_compile_any_batch(spec->eval, symv, esym, pre, what, t,
                                                     in_tmp(c, L, "eval.o"), &ed)
                          : nn_aot_compile(spec->eval, symv, pre, what, t,
                                           in_tmp(c, L, "eval.o"), &ed)) == NN_OK;
    if (ok && pg) {
        snprintf(pre, sizeof pre, "nnm_%s_pred_", L->name);
        bind_syms(pg, f, 1, spec->batch, symv);
        ok = nn_aot_compile_any_batch(pg, symv, nn_aot_batch_sym(pg, why, sizeof why), pre,
                                      "prediction", t, in_tmp(c, L, "pred.o"), &pd) == NN_OK;
    }
    FILE *m = ok ? fopen(in_tmp(c, L, "model.c"), "w") : NULL;
    if (!ok || !m) {
        nn_error(&c->diags, spec->ast->loc, "cannot compile the model: %s",
                 ok ? strerror(errno) : nnrt_errmsg());
        nn_aot_step_free(sd);
        nn_aot_step_free(ed);
        nn_aot_step_free(pd);
        return false;
    }
    fprintf(m, "// Generated by `nnc build --lib`: model '%s'.\n#include \"step.h\"\n"
            "#include \"model_api.h\"\n#include \"%s.h\"\n\n", spec->model, L->name);
    char cname[96];
    snprintf(cname, sizeof cname, "nnm_%s_step", L->name);
    nn_aot_step_write_c(sd, cname, m);
    snprintf(cname, sizeof cname, "nnm_%s_eval", L->name);
    nn_aot_step_write_c(ed, cname, m);
    if (pd) {
        snprintf(cname, sizeof cname, "nnm_%s_pred", L->name);
        nn_aot_step_write_c(pd, cname, m);
    }
    write_model(m, L, spec, &f[0], &f[1], eval_output, out_size, classes, names, pd != NULL);
    nn_aot_step_free(sd);
    nn_aot_step_free(ed);
    nn_aot_step_free(pd);
    if (fclose(m) != 0) {
        nn_error(&c->diags, (NnLoc){0}, "cannot write %s: %s", in_tmp(c, L, "model.c"),
                 strerror(errno));
        return false;
    }
    return true;
}

// Copies src to dst; false with a diagnostic.
static bool copy_file(NnCtx *c, const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    char buf[65536];
    size_t n;
    bool ok = in && out;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        ok = false;
    if (!ok)
        nn_error(&c->diags, (NnLoc){0}, "cannot copy '%s' to '%s': %s", src, dst,
                 strerror(errno));
    return ok;
}

// Replaces the user's file dst by src through a temporary and a rename
// (runtime/savefile.h), so a failure keeps the previous file whole.
static bool install_file(NnCtx *c, const char *src, const char *dst, const char *what)
{
    NnrtSaveFile sf;
    FILE *in = fopen(src, "rb");
    if (!in || nnrt_savefile_open(&sf, dst) != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "cannot write %s: %s", dst,
                 in ? nnrt_errmsg() : strerror(errno));
        if (in)
            fclose(in);
        return false;
    }
    char buf[65536];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, sf.f) == n;
    ok = ok && !ferror(in);
    fclose(in);
    if (nnrt_savefile_commit(&sf, ok, what) != NN_OK) {
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        return false;
    }
    return true;
}

// The outputs are checked before anything is built: each may be absent or a
// regular file (not a directory, FIFO or device), the archive must be one
// (an ar archive: "!<arch>"), and the header one this command wrote before
// (its first line says so), since -o names the library and the header's
// name is derived from it: a user's own NAME.h is never replaced.
static bool check_outputs(NnCtx *c, const Lib *L)
{
    const char *paths[2] = {L->lib, L->header};
    static const char *const marks[2] = {"!<arch>\n", "// %s.h: the C API of model '"};
    for (int i = 0; i < 2; i++) {
        if (nnrt_savefile_check(paths[i]) != NN_OK) {
            nn_error(&c->diags, (NnLoc){0}, "-o %s: %s", i ? L->header : L->lib, nnrt_errmsg());
            return false;
        }
        FILE *f = fopen(paths[i], "rb");
        if (!f)
            continue;
        char want[128], got[128] = "";
        snprintf(want, sizeof want, marks[i], L->name);
        size_t n = fread(got, 1, strlen(want), f);
        fclose(f);
        if (n != strlen(want) || memcmp(got, want, n) != 0) {
            nn_error(&c->diags, (NnLoc){0}, "%s exists and is not %s written by nnc build "
                     "--lib: not replacing it (remove it, or name the library otherwise with "
                     "-o)", paths[i], i ? "a header" : "an archive");
            return false;
        }
    }
    return true;
}

int nn_cmd_build_lib(NnCtx *c, const NnProgram *p, NnOptions *o)
{
    Lib L = {0};
    NnAotTarget target;
    if (o->weights) {
        nn_error(&c->diags, (NnLoc){0}, "--weights is for programs; a library loads its "
                 "weights at run time (NAME_load)");
        return 1;
    }
    if (!lib_names(c, o->output, &L) || !check_outputs(c, &L))
        return 1;
    if (!nn_aot_target_parse(o->target, &target)) {
        nn_error(&c->diags, (NnLoc){0}, "%s", nnrt_errmsg());
        return 1;
    }
    if (!target.host) {
        nn_error(&c->diags, (NnLoc){0}, "--lib builds for this machine (native or an x86-64 "
                 "level); --target %s needs that machine's C compiler and runtime", o->target);
        return 1;
    }
    NnTrainSpec spec = {0};
    NnSplits splits = {0};
    NnGraph *pred = NULL; // the model alone, for predict
    int rc = 1;
    bool made_tmp = false;
    // The library never reads the data: IDX images files for their headers only.
    NnDataHook hook = {.headers_only = true};
    nn_driver_data_hook(&hook);
    bool set = nn_driver_setup(c, p, o, true, &spec, &splits);
    nn_driver_data_hook(NULL);
    if (!set)
        goto done;
    if (spec.nsteps > 0) {
        nn_error(&c->diags, spec.ast->loc, "train block of '%s' has steps: a library holds one "
                 "model with one loss (a block of steps is not supported by --lib)", spec.model);
        goto done;
    }
    int k = (int)(nn_splits_get(&splits, "train") - splits.ds);
    NnField f[2];
    if (!nn_splits_field(&splits, k, 0, &f[0]) || !nn_splits_field(&splits, k, 1, &f[1]) ||
        f[0].dtype != NN_DT_F32) {
        nn_error(&c->diags, spec.ast->loc, "a library takes f32 samples with labels; data '%s' "
                 "%s", spec.data, f[0].dtype != NN_DT_F32 ? "holds integer ids" : "has no label");
        goto done;
    }
    NnPassOptions po = o->passes;
    po.stop = "fused";
    spec.step = nn_passes_run(spec.step, &po);
    spec.eval = nn_passes_run(spec.eval, &po);
    int eval_output = 0;
    for (int i = 0; i < spec.eval->noutputs; i++)
        if (!strcmp(spec.eval->outputs[i].name, "output"))
            eval_output = i;
    const NnNode *on = nn_node(spec.eval, spec.eval->outputs[eval_output].id);
    int64_t out_size = 1;
    for (int i = 1; i < on->shape.rank; i++)
        out_size *= on->shape.dim[i];
    int classes = spec.classify ? (int)out_size : 0;
    // Any split that has the names (with shapes only, a split made by `split`
    // has none).
    char *const *names = NULL;
    for (int i = 0; classes && i < splits.count; i++)
        if (!names && splits.ds[i].class_names && splits.ds[i].num_classes >= classes)
            names = splits.ds[i].class_names;
    snprintf(L.tmp, sizeof L.tmp, "/tmp/nnc_lib_XXXXXX");
    if (!mkdtemp(L.tmp)) {
        nn_error(&c->diags, (NnLoc){0}, "cannot make a scratch directory: %s", strerror(errno));
        goto done;
    }
    made_tmp = true;
    NnPaths paths;
    nn_driver_paths(c, &paths);
    // The header is written in the scratch directory, where model.c includes
    // it from (so the compiler checks it), and replaces the user's at the end.
    const char *htmp = nn_arena_printf(c->arena, "%s/%s.h", L.tmp, L.name);
    FILE *h = fopen(htmp, "w");
    if (!h) {
        nn_error(&c->diags, (NnLoc){0}, "cannot write the header: %s", strerror(errno));
        goto done;
    }
    // The training step takes its batch at run time when its ops allow.
    char swhy[160];
    int ssym = nn_aot_batch_sym(spec.step, swhy, sizeof swhy);
    write_header(h, &L, p, &spec, &f[0], &f[1], out_size, classes, o->file, ssym >= 0, swhy);
    if (fclose(h) != 0) {
        nn_error(&c->diags, (NnLoc){0}, "cannot write %s: %s", htmp, strerror(errno));
        goto done;
    }
    pred = predict_graph(c, p, &spec, &f[0], out_size, &po);
    if (!compile_model(c, &L, &target, &spec, ssym, f, eval_output, out_size, classes, names,
                       pred))
        goto done;
    char *cc[] = {"cc", "-c", "-O1", "-fPIC", (char *)nn_arena_printf(c->arena, "-I%s",
                  paths.includedir), (char *)nn_arena_printf(c->arena, "-I%s", L.tmp),
                  (char *)in_tmp(c, &L, "model.c"), "-o", (char *)in_tmp(c, &L, "model.o"),
                  NULL};
    if (!run_tool(c, cc, "compiling the model's tables"))
        goto done;
    // One archive: libnnrt's objects plus the model's.
    const char *rt = nn_arena_printf(c->arena, "%s/libnnrt.a", paths.libdir);
    char *ar[] = {"ar", "qs", (char *)in_tmp(c, &L, "lib.a"), (char *)in_tmp(c, &L, "step.o"),
                  (char *)in_tmp(c, &L, "eval.o"), (char *)in_tmp(c, &L, "model.o"),
                  pred ? (char *)in_tmp(c, &L, "pred.o") : NULL, NULL};
    if (!copy_file(c, rt, in_tmp(c, &L, "lib.a")) || !run_tool(c, ar, "archiving the library") ||
        !install_file(c, in_tmp(c, &L, "lib.a"), L.lib, "library") ||
        !install_file(c, htmp, L.header, "header"))
        goto done;
    if (!o->quiet)
        printf("wrote %s and %s (model '%s', batch %lld, input %lld values, output %lld)\n",
               L.lib, L.header, spec.model, (long long)spec.batch, (long long)numel_of(&f[0]),
               (long long)out_size);
    rc = 0;
done:
    if (made_tmp)
        rm_tmp(c, &L);
    nn_graph_free(pred);
    nn_splits_fini(&splits);
    nn_train_spec_fini(&spec);
    return rc;
}
#else
int nn_cmd_build_lib(NnCtx *c, const NnProgram *p, NnOptions *o)
{
    nn_error(&c->diags, (NnLoc){0}, "nnc was built without LLVM: it cannot build libraries");
    return 1;
}
#endif
