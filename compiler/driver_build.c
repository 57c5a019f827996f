// `nnc build FILE -o PROG [--target T] [--weights W]`: a standalone program
// for the first train block. The data block runs once here for its shapes
// (IDX image files are read for their headers only, other files for their
// sample counts; transforms are not run) while a hook records its loads and
// field transforms; the training step (every step of a block of steps) and
// the evaluation graph are compiled ahead of time (backend/aot.h) once for
// any batch size when every op on the batch takes it at run time (an
// NnrtAppStep of 0 rows), else for every batch size the program will run:
// the batch, the last partial batches of the splits it trains or evaluates,
// and 1 (predict). With MPI built in, a data-parallel twin of the training
// step (gradients averaged over ranks) is compiled too, for mpirun. A
// generated C file holds the step descriptors and the replay of the data
// block (runtime/app/app.h); the system C compiler (`cc`) compiles it and
// links it with the kernel objects, runtime/app's main and libnnrt, all
// statically.
#include "driver.h"
#include "savefile.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aot.h"
#include "app/app.h"
#include "checkpoint.h"
#include "dist.h"
#include "init.h"
#include "metrics.h"

#ifndef NN_BINARY_DIR
#define NN_BINARY_DIR "."
#endif
#ifndef NN_APP_LDFLAGS
#define NN_APP_LDFLAGS ""
#endif

enum { MAX_JOBS = 64 };

// One graph to compile: its descriptor's C name and what it was compiled for.
typedef struct Job {
    const NnGraph *g;
    int64_t symv[NN_MAX_SYMS];
    int batch_sym; // >= 0: compiled for any value of this symbol
    bool fuse;
    char name[64], obj[PATH_MAX + 32], what[96];
    const NnAotTarget *target;
    NnrtStep *desc;
    NnStatus st;
    char err[512];
} Job;

typedef struct Xform {
    const NnAst *st;
    int k;
    NnGraph *g;
    int job;
} Xform;

typedef struct Load {
    const char *split, *kind, *path, *path2;
    NnrtCsvOptions csv;
    NnrtTextOptions text;
} Load;

typedef struct Build {
    NnCtx *c;
    Job jobs[MAX_JOBS];
    int njobs;
    Xform xf[MAX_JOBS];
    int nxf;
    Load loads[NN_MAX_SPLITS * 4];
    int nloads;
    char dir[PATH_MAX];
    char weights[PATH_MAX + 32]; // the weights embedded (--weights), model tensors only
    uint64_t seed; // the run's seed (data splits without their own)
    bool overflow;
    int dj[MAX_JOBS], nd;  // the data-parallel training steps' jobs (add_dist_steps)
    uint64_t dist_hash;    // of their graphs and the evaluation graph
} Build;

static const char *abs_path(NnCtx *c, const char *p)
{
    char buf[PATH_MAX];
    if (p && realpath(p, buf))
        return nn_arena_printf(c->arena, "%s", buf);
    return p;
}

static void hook_load(void *ctx, const char *split, const char *kind, const char *path,
                      const char *path2, const NnrtCsvOptions *csv, const NnrtTextOptions *text)
{
    Build *B = ctx;
    if (B->nloads == (int)(sizeof B->loads / sizeof B->loads[0])) {
        B->overflow = true;
        return;
    }
    Load *l = &B->loads[B->nloads++];
    *l = (Load){split, kind, abs_path(B->c, path), abs_path(B->c, path2), *csv, *text};
}

static void hook_transform(void *ctx, const NnAst *st, int k, const NnGraph *g)
{
    Build *B = ctx;
    if (B->nxf == MAX_JOBS) {
        B->overflow = true;
        return;
    }
    B->xf[B->nxf++] = (Xform){st, k, nn_graph_clone(g), -1};
}

static int add_job(Build *B, const NnGraph *g, const int64_t *symv, bool fuse, const char *what)
{
    if (B->njobs == MAX_JOBS) {
        B->overflow = true;
        return 0;
    }
    Job *j = &B->jobs[B->njobs];
    memset(j, 0, sizeof *j);
    j->g = g;
    for (int s = 0; s < NN_MAX_SYMS; s++)
        j->symv[s] = symv ? symv[s] : -1;
    j->batch_sym = -1;
    j->fuse = fuse;
    snprintf(j->name, sizeof j->name, "nnrt_step%d", B->njobs);
    snprintf(j->obj, sizeof j->obj, "%s/step%d.o", B->dir, B->njobs);
    snprintf(j->what, sizeof j->what, "%s", what);
    return B->njobs++;
}

static void *compile_job(void *arg)
{
    Job *j = arg;
    char prefix[80];
    snprintf(prefix, sizeof prefix, "%s_", j->name);
    j->st = j->batch_sym >= 0 ? nn_aot_compile_any_batch(j->g, j->symv, j->batch_sym, prefix,
                                                         j->what, j->target, j->obj, &j->desc)
                              : nn_aot_compile(j->g, j->symv, prefix, j->what, j->target, j->obj,
                                               &j->desc);
    if (j->st != NN_OK)
        snprintf(j->err, sizeof j->err, "%s", nnrt_errmsg());
    return NULL;
}

// Compiles every job, on up to 4 threads (each job has its own LLVM context).
static bool compile_all(Build *B, const NnAotTarget *t)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = ncpu < 1 ? 1 : ncpu > 4 ? 4 : (int)ncpu;
    for (int i = 0; i < B->njobs; i += nth) {
        pthread_t th[4];
        bool started[4] = {false};
        for (int k = 0; k < nth && i + k < B->njobs; k++) {
            B->jobs[i + k].target = t;
            started[k] = k > 0 && pthread_create(&th[k], NULL, compile_job, &B->jobs[i + k]) == 0;
        }
        for (int k = 0; k < nth && i + k < B->njobs; k++)
            if (!started[k])
                compile_job(&B->jobs[i + k]);
        for (int k = 1; k < nth; k++)
            if (started[k])
                pthread_join(th[k], NULL);
    }
    for (int i = 0; i < B->njobs; i++)
        if (B->jobs[i].st != NN_OK) {
            nn_error(&B->c->diags, (NnLoc){0}, "cannot compile the %s: %s", B->jobs[i].what,
                     B->jobs[i].err);
            return false;
        }
    return true;
}

// Binds the batch symbol of g from `rows` and the remaining dims of its
// inputs from the data fields (x, then the label).
static void bind_rows(const NnGraph *g, const NnField *f, int nf, int64_t rows, int64_t *symv)
{
    for (int s = 0; s < NN_MAX_SYMS; s++)
        symv[s] = -1;
    int k = 0;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op != NN_OP_INPUT)
            continue;
        for (int d = 0; d < n->shape.rank; d++) {
            int64_t want = n->shape.dim[d];
            if (want >= 0)
                continue;
            int64_t v = d == 0 ? rows : k < nf && d - 1 < f[k].sample.rank ? f[k].sample.dim[d - 1]
                                                                           : 1;
            symv[-want - 1] = v;
        }
        k++;
    }
}

// ---- the generated C file ----

static void write_dims(FILE *f, int rank, const int64_t *dims)
{
    fputc('{', f);
    for (int d = 0; d < rank; d++)
        fprintf(f, "%s%lld", d ? ", " : "", (long long)dims[d]);
    fputc('}', f);
}

// Writes the data block's statements as NnrtDataOp rows (tables first).
static bool write_data(Build *B, FILE *f, const NnAst *data, int *nops)
{
    NnCtx *c = B->c;
    int li = 0, xi = 0, n = 0;
    // Per-op tables first.
    for (int i = 0; i < data->kids.count; i++) {
        const NnAst *st = data->kids.items[i];
        if (st->kind == NN_AST_SPLIT) {
            fprintf(f, "static const char *const op%d_parts[] = {", i);
            for (int k = 0; k < st->kids.count; k++) {
                nn_aot_write_c_string(f, st->kids.items[k]->name);
                fputs(", ", f);
            }
            fprintf(f, "NULL};\nstatic const double op%d_fracs[] = {", i);
            for (int k = 0; k < st->kids.count; k++)
                fprintf(f, "%.17g, ", st->kids.items[k]->a->num);
            fputs("0};\n", f);
            continue;
        }
        const NnAst *v = st->a;
        const char *target = st->kids.items[0]->name;
        if (!strcmp(target, "classes")) {
            fprintf(f, "static const char *const op%d_names[] = {", i);
            for (int k = 0; k < v->kids.count; k++) {
                nn_aot_write_c_string(f, v->kids.items[k]->str);
                fputs(", ", f);
            }
            fputs("NULL};\n", f);
            continue;
        }
        bool lit;
        NnTensor *t = nn_lower_literal(c, v, &lit);
        if (lit && t) {
            fprintf(f, "static const %s op%d_data[] = {", t->dtype == NN_DT_I32 ? "int32_t"
                                                          : t->dtype == NN_DT_F64 ? "double"
                                                                                  : "float", i);
            for (int64_t e = 0; e < t->numel; e++)
                fprintf(f, t->dtype == NN_DT_I32 ? "%.0f, " : "%.9g, ", nnrt_tensor_get(t, e));
            fputs("0};\n", f);
            nnrt_tensor_free(t);
        }
        int m = 0;
        for (int k = 0; k < B->nxf; k++)
            if (B->xf[k].st == st) {
                if (!m)
                    fprintf(f, "static const NnrtStep *const op%d_steps[] = {", i);
                fprintf(f, "&%s, ", B->jobs[B->xf[k].job].name);
                m++;
            }
        if (m)
            fputs("NULL};\n", f);
    }
    fputs("static const NnrtDataOp data_ops[] = {\n", f);
    for (int i = 0; i < data->kids.count; i++) {
        const NnAst *st = data->kids.items[i];
        if (st->kind == NN_AST_SPLIT) {
            uint64_t seed = B->seed; // the run's, unless the split has its own (seed = N)
            for (int k = 0; k < st->params.count; k++)
                if (st->params.items[k]->kind == NN_AST_ARG)
                    seed = (uint64_t)st->params.items[k]->a->num;
            fprintf(f, "    {.kind = NNRT_DATA_SPLIT, .name = ");
            nn_aot_write_c_string(f, st->name);
            fprintf(f, ", .nparts = %d, .parts = op%d_parts, .fracs = op%d_fracs, .seed = %lluu},"
                    "\n", st->kids.count, i, i, (unsigned long long)seed);
            n++;
            continue;
        }
        const NnAst *v = st->a;
        const char *target = st->kids.items[0]->name;
        if (v->kind == NN_AST_CALL && v->a->kind == NN_AST_NAME &&
            (!strcmp(v->a->name, "idx") || !strcmp(v->a->name, "csv") ||
             !strcmp(v->a->name, "text"))) {
            if (li >= B->nloads || strcmp(B->loads[li].split, target)) {
                nn_error(&c->diags, st->loc, "internal: data loads out of step");
                return false;
            }
            const Load *l = &B->loads[li++];
            fprintf(f, "    {.kind = NNRT_DATA_%s, .name = ", !strcmp(l->kind, "idx") ? "IDX"
                                                               : !strcmp(l->kind, "csv") ? "CSV"
                                                                                         : "TEXT");
            nn_aot_write_c_string(f, target);
            fputs(", .path = ", f);
            nn_aot_write_c_string(f, l->path);
            fputs(", .path2 = ", f);
            nn_aot_write_c_string(f, l->path2);
            fputs(", .csv = {", f);
            nn_aot_write_c_string(f, l->csv.label_name);
            fprintf(f, ", %d, %d, %d, %d}, .text = {%lld, %lld, %.17g, %.17g, %d}},\n",
                    l->csv.label_index, l->csv.label_index_set, l->csv.header, l->csv.delimiter,
                    (long long)l->text.seq, (long long)l->text.stride, l->text.from, l->text.to,
                    l->text.to_set);
            n++;
            continue;
        }
        if (!strcmp(target, "classes")) {
            fprintf(f, "    {.kind = NNRT_DATA_CLASSES, .nnames = %d, .names = op%d_names},\n",
                    v->kids.count, i);
            n++;
            continue;
        }
        if (v->kind == NN_AST_CALL && v->a->kind == NN_AST_NAME &&
            !strcmp(v->a->name, "normalize")) {
            bool pf = v->kids.count > 1 && v->kids.items[1]->a->num != 0;
            fprintf(f, "    {.kind = NNRT_DATA_NORMALIZE, .name = \"x\", .per_feature = %d},\n", pf);
            n++;
            continue;
        }
        bool lit;
        NnTensor *t = nn_lower_literal(c, v, &lit);
        if (lit && t) {
            fprintf(f, "    {.kind = NNRT_DATA_LITERAL, .name = ");
            nn_aot_write_c_string(f, target);
            fprintf(f, ", .dtype = %d, .rank = %d, .dims = ", t->dtype, t->rank);
            write_dims(f, t->rank, t->shape);
            fprintf(f, ", .data = op%d_data},\n", i);
            nnrt_tensor_free(t);
            n++;
            continue;
        }
        int m = 0;
        for (int k = 0; k < B->nxf; k++)
            m += B->xf[k].st == st;
        fprintf(f, "    {.kind = NNRT_DATA_TRANSFORM, .name = ");
        nn_aot_write_c_string(f, target);
        fprintf(f, ", .nsteps = %d, .steps = op%d_steps},\n", m, i);
        (void)xi;
        n++;
    }
    fputs("    {0}\n};\n", f);
    *nops = n;
    return true;
}

// parts: the step of a block each job is for (NULL: 0 for all).
static void write_sized(FILE *f, const char *name, Build *B, const int *jobs, const int64_t *rows,
                        const int *parts, int n)
{
    fprintf(f, "static const NnrtAppStep %s[] = {\n", name);
    for (int i = 0; i < n; i++)
        fprintf(f, "    {%lld, &%s, %d},\n", (long long)rows[i], B->jobs[jobs[i]].name,
                parts ? parts[i] : 0);
    fputs("    {0}\n};\n", f);
}

// `PROG sample`: the model alone, as `nnc sample` runs it (a generator on
// its noise, or a text model on one window), compiled for the samples it
// draws at once (for any number when the batch can be a run-time value,
// tuned for that many, as the JIT tunes it), or why there is nothing to
// sample (the program says it when asked; the build goes on).
typedef struct Sample {
    int kind; // NNRT_APP_SAMPLE_*
    int job;  // -1: none
    int64_t rows; // the job's rows, 0 for any
    int n;        // generator inputs, in the step's input order
    NnrtNoise noise[8];
    int stream[8];
    const char *why;
} Sample;

// fx: x's sample shape (the build reads files for shapes only, and does
// not run the data block's transforms: train->x may have no storage, or be
// absent).
static void sample_step(Build *B, const NnProgram *p, const NnTrainSpec *spec,
                        const NnrtDataset *train, const NnField *fx, const NnPassOptions *po,
                        NnGraph **owned, int *nowned, Sample *S)
{
    NnCtx *c = B->c;
    const NnAst *model = nn_sema_find(p, spec->model)->ast;
    *S = (Sample){.kind = NNRT_APP_SAMPLE_NONE, .job = -1};
    bool text = spec->nnoise == 0 && nn_sample_wants_text(p) && train && train->vocab;
    if (spec->nnoise == 0 && !text) {
        S->why = nn_arena_printf(c->arena, "sample draws from a generator, but the train block "
                                 "of '%s' declares no noise input (noise z: f32[N, 16] = "
                                 "normal())", spec->model);
        return;
    }
    if (model->params.count > 8 || (text && model->params.count != 1)) {
        S->why = nn_arena_printf(c->arena, "'%s' takes %d inputs: a generator takes at most 8, "
                                 "a text model one (the window)", spec->model,
                                 model->params.count);
        return;
    }
    NnGraph *g = nn_lower_model(c, p, model, false);
    if (!g || *nowned == MAX_JOBS) {
        nn_graph_free(g);
        S->why = "the model could not be prepared for sampling";
        return;
    }
    g = nn_passes_run(g, po);
    owned[(*nowned)++] = g;
    const NnNode *out = nn_node(g, g->outputs[0].id);
    int64_t feat = 1;
    for (int d = 0; d < fx->sample.rank; d++)
        feat *= fx->sample.dim[d];
    // As nnrt_sample_count decides from the data the program loads.
    int64_t rows = text ? 1 : train && train->count && feat == 2 ? NNRT_SAMPLE_POINTS
                                                                 : NNRT_SAMPLE_IMAGES;
    int64_t seq = fx->sample.rank == 1 ? fx->sample.dim[0] : -1;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op != NN_OP_INPUT)
            continue;
        if (text) {
            if (n->dtype != NN_DT_I32 || n->shape.rank != 2 ||
                n->shape.dim[1] != seq || out->dtype != NN_DT_F32 ||
                out->shape.rank != 2 || out->shape.dim[1] < train->num_classes) {
                S->why = nn_arena_printf(c->arena, "to sample text, '%s' must take windows "
                                         "i32[N, %lld] of the text's byte ids and score the %d "
                                         "characters of the vocabulary", spec->model,
                                         (long long)seq, train->num_classes);
                return;
            }
            continue;
        }
        int k = -1;
        for (int j = 0; j < model->params.count && k < 0; j++)
            if (!strcmp(model->params.items[j]->name, n->attr.name))
                k = j;
        const NnAst *nz = k >= 0 ? nn_sample_noise_for(spec, model->params.items[k], k) : NULL;
        bool fits = nz && S->n < 8 && n->dtype == NN_DT_F32 &&
                    n->shape.rank == nz->type->kids.count;
        for (int d = 1; fits && d < n->shape.rank; d++)
            fits = n->shape.dim[d] == (int64_t)nz->type->kids.items[d]->num;
        if (!fits) {
            S->why = nn_arena_printf(c->arena, "generator input '%s' has no noise of its shape "
                                     "to draw from (declare noise %s: f32[N, ...] in the train "
                                     "block)", n->attr.name, n->attr.name);
            return;
        }
        S->noise[S->n] = nn_sample_noise(nz);
        S->stream[S->n++] = k;
    }
    int64_t symv[NN_MAX_SYMS];
    bind_rows(g, NULL, 0, rows, symv);
    char why[160];
    int sym = nn_aot_batch_sym(g, why, sizeof why);
    char what[96];
    snprintf(what, sizeof what, "%s for sampling", text ? "model" : "generator");
    S->job = add_job(B, g, symv, false, what);
    B->jobs[S->job].batch_sym = sym;
    S->rows = sym >= 0 ? 0 : rows;
    S->kind = text ? NNRT_APP_SAMPLE_TEXT : NNRT_APP_SAMPLE_GEN;
}

static void write_sample(FILE *f, Build *B, const Sample *S)
{
    fputs("static const NnrtNoise app_noise[] = {", f);
    for (int k = 0; k < S->n; k++)
        fprintf(f, "{%d, %.17g, %.17g}, ", S->noise[k].normal, S->noise[k].a, S->noise[k].b);
    fputs("{0}};\nstatic const int app_noise_stream[] = {", f);
    for (int k = 0; k < S->n; k++)
        fprintf(f, "%d, ", S->stream[k]);
    fputs("0};\n", f);
    if (S->job >= 0)
        write_sized(f, "app_sample", B, &S->job, &S->rows, NULL, 1);
}

// Runs argv (a NULL-terminated compiler command line); false with a diagnostic.
static bool run_cc(NnCtx *c, char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        nn_error(&c->diags, (NnLoc){0}, "linking with the system C compiler failed (%s%s): "
                 "is 'cc' installed?", argv[0],
                 pid >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " not found" : "");
        return false;
    }
    return true;
}

static void rm_tree(const Build *B)
{
    for (int i = 0; i < B->njobs; i++)
        unlink(B->jobs[i].obj);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/app.c", B->dir);
    unlink(p);
    unlink(B->weights);
    rmdir(B->dir);
}

// The sizes a split of `count` samples is evaluated in: full batches and its remainder.
static void add_size(int64_t *sizes, int *n, int64_t v)
{
    if (v <= 0)
        return;
    for (int i = 0; i < *n; i++)
        if (sizes[i] == v)
            return;
    sizes[(*n)++] = v;
}

static int64_t kept(const NnrtDataset *d, int64_t limit)
{
    return !d ? 0 : limit > 0 && limit < d->count ? limit : d->count;
}

// Checks the checkpoint at path against the model's weights and layer state
// (by name, dtype and shape) and writes just those to `out`, the file the
// program embeds (a training checkpoint also holds optimizer state).
static bool check_weights(NnCtx *c, const NnTrainSpec *s, const char *path, const char *out)
{
    NnVars want, loaded;
    nnrt_vars_init(&want);
    bool ok = true;
    for (int i = 0; ok && i < s->nvars; i++) {
        const NnParamInit *v = &s->vars[i];
        if (!v->trainable && !v->model_state)
            continue;
        NnTensor *t = nnrt_tensor_new(v->dtype, v->shape.rank, v->shape.dim);
        ok = t && nnrt_vars_put(&want, v->name, t) == NN_OK;
    }
    ok = ok && nnrt_safetensors_load(path, &loaded, NULL) == NN_OK;
    if (ok) {
        ok = nnrt_checkpoint_assign(path, &want, &loaded) == NN_OK &&
             nnrt_safetensors_save(out, &want, NULL) == NN_OK;
        nnrt_vars_fini(&loaded);
    }
    if (!ok)
        nn_error(&c->diags, (NnLoc){0}, "--weights: %s", nnrt_errmsg());
    nnrt_vars_fini(&want);
    return ok;
}

// For a schedule's `total_steps` (hyper/total_steps, or STEP/hyper/total_steps
// in a block of steps), the runs per batch of its step, which the program
// multiplies by epochs and batches per epoch as nnc train does; else 0.
static int total_steps_repeat(const NnTrainSpec *s, const NnParamInit *v)
{
    const char *h = v->hyper ? strstr(v->name, "hyper/") : NULL;
    if (!h || (h != v->name && h[-1] != '/') || strcmp(h + 6, "total_steps") != 0)
        return 0;
    for (int i = 0; i < s->nsteps; i++) {
        size_t n = strlen(s->steps[i].name);
        if (!strncmp(v->name, s->steps[i].name, n) && v->name[n] == '/')
            return s->steps[i].repeat;
    }
    return 1;
}

// The data-parallel twins of the training steps, with every gradient averaged
// over MPI ranks (runtime/dist.h), which `mpirun -np K PROG train` runs. A
// rank's slice of a batch depends on K, so they exist only where every step
// takes its batch at run time, and only in builds with MPI. dspec owns their
// graphs until the build ends.
static bool add_dist_steps(Build *B, const NnProgram *p, NnOptions *o, const NnTrainSpec *spec,
                           const NnField *f, int nf, const NnPassOptions *po, NnTrainSpec *dspec)
{
    if (!nnrt_dist_built())
        return true;
    // Ranks average f32 gradients only (nn_lower_train_dist would say so as
    // an error): such a program runs as one process.
    for (int i = 0; i < spec->nvars; i++)
        if (spec->vars[i].trainable && spec->vars[i].dtype != NN_DT_F32)
            return true;
    if (!nn_lower_train_dist(B->c, p, spec->ast, f, nf, o->sets, o->nsets, dspec))
        return false;
    int nparts = dspec->nsteps > 0 ? dspec->nsteps : 1, sym[MAX_JOBS];
    char why[160], what[96];
    uint64_t h = NNRT_FNV_SEED;
    for (int k = 0; k < nparts && k < MAX_JOBS; k++) {
        NnGraph **g = nn_train_step_graph(dspec, k);
        *g = nn_passes_run(*g, po);
        if ((sym[k] = nn_aot_batch_sym(*g, why, sizeof why)) < 0)
            return true; // compiled per batch size: the program runs as one process only
        h = nn_ir_hash(h, *g);
    }
    B->dist_hash = nn_ir_hash(h, spec->eval);
    for (int k = 0; k < nparts && B->nd < MAX_JOBS; k++) {
        int64_t symv[NN_MAX_SYMS];
        const NnGraph *g = *nn_train_step_graph(dspec, k);
        bind_rows(g, f, nf, spec->batch, symv);
        snprintf(what, sizeof what, "data-parallel %s%s%s", dspec->nsteps ? "step '" : "training "
                 "step", dspec->nsteps ? dspec->steps[k].name : "", dspec->nsteps ? "'" : "");
        B->dj[B->nd] = add_job(B, g, symv, true, what);
        B->jobs[B->dj[B->nd++]].batch_sym = sym[k];
    }
    return true;
}

static bool write_app(Build *B, FILE *f, const NnProgram *p, const NnTrainSpec *spec,
                      const NnSplits *splits, const NnOptions *o, const NnField *fx,
                      const int *tj, const int64_t *tr, const int *tp, int nt, const int *ej,
                      const int64_t *er, int ne, const int *xj, int nx, const NnShape *raw,
                      const Sample *S)
{
    NnCtx *c = B->c;
    fputs("// Generated by nnc build: the step descriptors and data block of one model.\n"
          "#include <stddef.h>\n#include <stdint.h>\n#include \"app.h\"\n", f);
    for (int i = 0; i < B->njobs; i++)
        nn_aot_step_write_c(B->jobs[i].desc, B->jobs[i].name, f);
    const NnAst *t = p->trains[0];
    const NnDecl *dd = nn_sema_find(p, t->name2);
    int nops = 0;
    if (!write_data(B, f, dd->ast, &nops))
        return false;
    fputs("static const NnrtAppVar app_vars[] = {\n", f);
    for (int i = 0; i < spec->nvars; i++) {
        const NnParamInit *v = &spec->vars[i];
        fputs("    {", f);
        nn_aot_write_c_string(f, v->name);
        fputs(", ", f);
        nn_aot_write_c_string(f, v->init);
        fprintf(f, ", {%.17g, %.17g, %.17g, %.17g}, %d, %d, %d, ", v->args[0], v->args[1],
                v->args[2], v->args[3], v->nargs, v->dtype, v->shape.rank);
        write_dims(f, v->shape.rank, v->shape.dim);
        fprintf(f, ", %d, %d, %d},\n", v->trainable || v->model_state, v->hyper,
                total_steps_repeat(spec, v));
    }
    fputs("    {0}\n};\n", f);
    write_sized(f, "app_train", B, tj, tr, tp, nt);
    int64_t any[MAX_JOBS] = {0};
    int dparts[MAX_JOBS];
    for (int i = 0; i < B->nd; i++)
        dparts[i] = i;
    write_sized(f, "app_dist_train", B, B->dj, any, dparts, B->nd);
    write_sized(f, "app_eval", B, ej, er, NULL, ne);
    int64_t ones[MAX_JOBS];
    for (int i = 0; i < nx; i++)
        ones[i] = 1;
    write_sized(f, "app_xform", B, xj, ones, NULL, nx);
    write_sample(f, B, S);
    // A block of steps: each step's name and runs per batch.
    fputs("static const NnrtAppPart app_parts[] = {\n", f);
    for (int i = 0; i < spec->nsteps; i++) {
        fputs("    {", f);
        nn_aot_write_c_string(f, spec->steps[i].name);
        fprintf(f, ", %d},\n", spec->steps[i].repeat);
    }
    fputs("    {0}\n};\n", f);
    if (o->weights) {
        // The checkpoint's bytes go in as they are, by the assembler.
        fputs("__asm__(\".section .rodata\\n.balign 64\\n.globl nnrt_weights_start\\n"
              "nnrt_weights_start:\\n.incbin ", f);
        char q[PATH_MAX + 64];
        snprintf(q, sizeof q, "\\\"%s\\\"", B->weights);
        fputs(q, f);
        fputs("\\n.globl nnrt_weights_end\\nnnrt_weights_end:\\n.previous\\n\");\n"
              "extern const unsigned char nnrt_weights_start[], nnrt_weights_end[];\n", f);
    }
    unsigned metrics = 0;
    for (int i = 0; i < spec->nmetrics; i++)
        metrics |= nnrt_metric_bit(spec->metrics[i]);
    // A block of steps has no evaluation graph, and no outputs to predict.
    NnNode *on = spec->eval ? nn_node(spec->eval, nn_graph_output(spec->eval, "output")) : NULL;
    int64_t outf = !on ? 0 : on->shape.rank >= 2 ? on->shape.dim[on->shape.rank - 1] : 1;
    NnrtAugment aug = {0};
    if (!nn_driver_augment_opts(c, spec->augment, &aug))
        return false;
    fputs("const NnrtApp nnrt_app = {\n    .program = ", f);
    nn_aot_write_c_string(f, spec->model);
    fputs(", .script = ", f);
    nn_aot_write_c_string(f, abs_path(c, o->file));
    fputs(", .target = ", f);
    nn_aot_write_c_string(f, o->target ? o->target : "native");
    fprintf(f, ",\n    .ndata = %d, .data = data_ops, .label = ", nops);
    nn_aot_write_c_string(f, splits->label);
    fprintf(f, ",\n    .nvars = %d, .vars = app_vars, .seed = %lluu, .epochs = %lld, "
            ".batch = %lld, .limit = %lld, .eval_limit = %lld,\n    .save = ", spec->nvars,
            (unsigned long long)spec->seed, (long long)spec->epochs, (long long)spec->batch,
            (long long)spec->limit, (long long)spec->eval_limit);
    nn_aot_write_c_string(f, spec->save);
    fputs(", .stop_metric = ", f);
    nn_aot_write_c_string(f, spec->stop_metric);
    fprintf(f, ", .patience = %d, .classify = %d, .metrics = %uu,\n", spec->patience,
            spec->classify, metrics);
    fprintf(f, "    .augment = {%.17g, %d, %d, %.17g}, .out_features = %lld,\n", aug.rotate_deg,
            aug.shift_px, aug.hflip, aug.noise_std, (long long)outf);
    fprintf(f, "    .x_dtype = %d, .x_rank = %d, .x_dims = ", fx->dtype, fx->sample.rank);
    write_dims(f, fx->sample.rank, fx->sample.dim);
    fprintf(f, ",\n    .ntrain = %d, .neval = %d, .nxform = %d, .train = app_train, "
            ".eval = app_eval, .xform = app_xform,\n", nt, ne, nx);
    fprintf(f, "    .nparts = %d, .parts = app_parts,\n", spec->nsteps);
    fprintf(f, "    .ndist_train = %d, .dist_train = app_dist_train, .dist_hash = %lluu,\n", B->nd,
            (unsigned long long)B->dist_hash);
    fprintf(f, "    .x_raw_rank = %d, .x_raw_dims = ", raw ? raw->rank : 0);
    write_dims(f, raw ? raw->rank : 0, raw ? raw->dim : NULL);
    fprintf(f, ",\n    .weights = %s, .weights_end = %s,\n",
            o->weights ? "nnrt_weights_start" : "NULL", o->weights ? "nnrt_weights_end" : "NULL");
    fprintf(f, "    .sample_kind = %d, .sample = %s, .noise = app_noise, "
            ".noise_stream = app_noise_stream, .sample_why = ", S->kind,
            S->job >= 0 ? "app_sample" : "NULL");
    nn_aot_write_c_string(f, S->why);
    fputs(",\n};\n", f);
    return true;
}

// Lowers the per-sample x transforms for predict: the statements that set x
// from x alone after the first load, each for one sample. *raw: one raw
// sample's shape. Returns how many (0 when some step needs more than x, so
// predict then takes model inputs only).
static int predict_xforms(Build *B, const NnProgram *p, const NnAst *data, const NnSplits *s,
                          int *xj, NnGraph **owned, int *nowned, NnShape *raw)
{
    NnCtx *c = B->c;
    NnField f = {0};
    bool have = false;
    int n = 0;
    // Normalization uses the training split's statistics, which predict does
    // not have: such a model predicts from model inputs only.
    for (int i = 0; i < data->kids.count; i++) {
        const NnAst *v = data->kids.items[i]->a;
        if (data->kids.items[i]->kind != NN_AST_SPLIT && v && v->kind == NN_AST_CALL &&
            v->a->kind == NN_AST_NAME && !strcmp(v->a->name, "normalize"))
            return 0;
    }
    for (int i = 0; i < B->nxf; i++) {
        const NnAst *st = B->xf[i].st;
        if (B->xf[i].k != 0 && B->xf[i].k != -1)
            continue;
        if (strcmp(st->kids.items[0]->name, "x") != 0)
            continue;
        const NnGraph *g = B->xf[i].g;
        int nin = 0;
        for (NnId k = 0; k < g->count; k++)
            nin += g->nodes[k].op == NN_OP_INPUT;
        if (nin == 0)
            return 0; // x made by a generator: no raw input form
        const NnNode *in0 = NULL;
        for (NnId k = 0; k < g->count && !in0; k++)
            if (g->nodes[k].op == NN_OP_INPUT)
                in0 = &g->nodes[k];
        if (!have) {
            f = (NnField){"x", in0->dtype, in0->shape};
            f.sample.dim[0] = 1;
            *raw = in0->shape;
            raw->rank--;
            memmove(raw->dim, raw->dim + 1, sizeof(int64_t) * (size_t)raw->rank);
            have = true;
        }
        // Saved diagnostics would confuse: a transform that needs the label is just not used.
        int before = c->diags.nerrors, count = c->diags.count;
        FILE *saved = c->diags.out;
        c->diags.out = NULL;
        NnGraph *one = nn_lower_expr(c, p, st->a, &f, 1, 0);
        c->diags.out = saved;
        if (!one || c->diags.nerrors != before) {
            c->diags.nerrors = before;
            c->diags.count = count;
            nn_graph_free(one);
            return 0;
        }
        owned[(*nowned)++] = one;
        xj[n++] = add_job(B, one, NULL, false, "per-sample transform of x (predict)");
        const NnNode *o = nn_node(one, one->outputs[0].id);
        f = (NnField){"x", o->dtype, o->shape};
    }
    (void)s;
    return have ? n : 0;
}

int nn_cmd_build(NnCtx *c, const NnProgram *p, NnOptions *o)
{
    NnAotTarget target;
    if (!nn_aot_target_parse(o->target, &target)) {
        fprintf(stderr, "nnc: error: %s\n", nnrt_errmsg());
        return 2;
    }
    // A directory, FIFO or device at -o is refused before anything is built
    // (the linker would fail on it, or write into it).
    if (nnrt_savefile_check(o->output) != NN_OK) {
        fprintf(stderr, "nnc: error: %s\n", nnrt_errmsg());
        return 1;
    }
    Build *B = calloc(1, sizeof *B);
    if (!B)
        return 1;
    B->c = c;
    snprintf(B->dir, sizeof B->dir, "%s/nnc-build-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
                                                                              : "/tmp");
    NnTrainSpec spec = {0}, dspec = {0};
    NnSplits splits = {0};
    NnGraph *owned[MAX_JOBS];
    int nowned = 0, rc = 1;
    double t0 = nnrt_now();
    NnDataHook hook = {B, hook_load, hook_transform, true};
    nn_driver_data_hook(&hook);
    // Shapes only: files are read for their sample counts, transforms are
    // recorded and not run (the program runs them).
    bool ok = nn_driver_setup(c, p, o, true, &spec, &splits);
    nn_driver_data_hook(NULL);
    double t_data = nnrt_now();
    if (!ok)
        goto done;
    if (B->overflow) {
        nn_error(&c->diags, spec.ast->loc, "the data block has too many statements for nnc build "
                 "(at most %d transforms)", MAX_JOBS);
        goto done;
    }
    B->seed = spec.seed;
    if (!mkdtemp(B->dir)) {
        nn_error(&c->diags, (NnLoc){0}, "cannot make a temporary directory: %s", strerror(errno));
        goto done;
    }
    snprintf(B->weights, sizeof B->weights, "%s/weights.safetensors", B->dir);
    if (o->weights && !check_weights(c, &spec, o->weights, B->weights))
        goto done;
    // Graphs as `nnc train` prepares them for the JIT.
    NnPassOptions po = o->passes;
    if (!po.stop)
        po.stop = "fused";
    // A block of steps (a GAN): every step's graph, and no evaluation.
    int nparts = spec.nsteps > 0 ? spec.nsteps : 1;
    for (int i = 0; i < nparts; i++) {
        NnGraph **g = nn_train_step_graph(&spec, i);
        *g = nn_passes_run(*g, &po);
    }
    if (spec.eval)
        spec.eval = nn_passes_run(spec.eval, &po);
    NnrtDataset *train = nn_splits_get(&splits, "train");
    NnrtDataset *val = nn_splits_get(&splits, "val"), *test = nn_splits_get(&splits, "test");
    NnField f[2];
    int nf = 0;
    int ktrain = (int)(train - splits.ds);
    for (int i = 0; i < 2; i++) {
        NnField full;
        if (!nn_splits_field(&splits, ktrain, i, &full))
            break;
        f[nf] = (NnField){full.name, full.dtype, {.rank = full.sample.rank - 1}};
        memcpy(f[nf].sample.dim, full.sample.dim + 1, sizeof(int64_t) * (size_t)f[nf].sample.rank);
        nf++;
    }
    int64_t B_ = spec.batch, sizes[4], esz[8] = {0};
    int ns = 0, ne = 0;
    add_size(sizes, &ns, B_);
    add_size(sizes, &ns, kept(train, spec.limit) % B_);
    if (spec.eval) {
        add_size(esz, &ne, B_);
        add_size(esz, &ne, 1);
        // The program evaluates the training split only where there is no test split.
        if (!test)
            add_size(esz, &ne, kept(train, spec.limit) % B_);
        add_size(esz, &ne, kept(val, spec.eval_limit) % B_);
        add_size(esz, &ne, kept(test, spec.eval_limit) % B_);
    }
    char why[160];
    // One step for every batch size (listed as 0 rows) where the batch can
    // be a run-time value, tuned for the training batch.
    int esym = spec.eval ? nn_aot_batch_sym(spec.eval, why, sizeof why) : -1;
    if (esym >= 0)
        ne = 1, esz[0] = 0;
    int tj[MAX_JOBS], tp[MAX_JOBS], ej[8], xj[MAX_JOBS], nt = 0;
    int64_t tsz[MAX_JOBS], symv[NN_MAX_SYMS];
    char what[96];
    for (int k = 0; k < nparts && nt + ns <= MAX_JOBS; k++) {
        const NnGraph *g = *nn_train_step_graph(&spec, k);
        int tsym = nn_aot_batch_sym(g, why, sizeof why);
        for (int i = 0; i < (tsym >= 0 ? 1 : ns); i++) {
            int64_t rows = tsym >= 0 ? 0 : sizes[i];
            bind_rows(g, f, nf, rows ? rows : B_, symv);
            const char *step = spec.nsteps ? spec.steps[k].name : NULL;
            if (step && rows)
                snprintf(what, sizeof what, "step '%s' for %lld rows", step, (long long)rows);
            else if (step)
                snprintf(what, sizeof what, "step '%s'", step);
            else if (rows)
                snprintf(what, sizeof what, "training step for %lld rows", (long long)rows);
            else
                snprintf(what, sizeof what, "training step");
            tsz[nt] = rows;
            tp[nt] = k;
            tj[nt] = add_job(B, g, symv, true, what);
            B->jobs[tj[nt++]].batch_sym = rows ? -1 : tsym;
        }
    }
    for (int i = 0; i < ne; i++) {
        bind_rows(spec.eval, f, nf, esz[i] ? esz[i] : B_, symv);
        if (esz[i])
            snprintf(what, sizeof what, "evaluation for %lld rows", (long long)esz[i]);
        else
            snprintf(what, sizeof what, "evaluation");
        ej[i] = add_job(B, spec.eval, symv, true, what);
        B->jobs[ej[i]].batch_sym = esz[i] ? -1 : esym;
    }
    if (!add_dist_steps(B, p, o, &spec, f, nf, &po, &dspec))
        goto done;
    for (int i = 0; i < B->nxf; i++) {
        snprintf(what, sizeof what, "data transform (line %d)", B->xf[i].st->loc.line);
        B->xf[i].job = add_job(B, B->xf[i].g, NULL, false, what);
    }
    NnShape raw = {0};
    int nx = spec.eval ? predict_xforms(B, p, nn_sema_find(p, p->trains[0]->name2)->ast, &splits,
                                        xj, owned, &nowned, &raw)
                       : 0;
    Sample S;
    sample_step(B, p, &spec, train, &f[0], &po, owned, &nowned, &S);
    if (B->overflow) {
        nn_error(&c->diags, spec.ast->loc, "too many steps to compile (at most %d)", MAX_JOBS);
        goto done;
    }
    if (!compile_all(B, &target))
        goto done;
    double t1 = nnrt_now();
    char src[PATH_MAX + 16];
    snprintf(src, sizeof src, "%s/app.c", B->dir);
    FILE *cf = fopen(src, "w");
    if (!cf) {
        nn_error(&c->diags, (NnLoc){0}, "cannot write %s: %s", src, strerror(errno));
        goto done;
    }
    ok = write_app(B, cf, p, &spec, &splits, o, &f[0], tj, tsz, tp, nt, ej, esz, ne, xj, nx,
                   nx ? &raw : NULL, &S);
    if (fclose(cf) != 0 || !ok) {
        if (ok)
            nn_error(&c->diags, (NnLoc){0}, "cannot write %s", src);
        goto done;
    }
    if (!target.host) {
        // Another machine's code cannot link with this machine's runtime:
        // the objects (OUT-0.o ...) and the tables (OUT.c) are the result.
        for (int i = 0; i <= B->njobs; i++) {
            char out[PATH_MAX + 32];
            if (i < B->njobs)
                snprintf(out, sizeof out, "%s-%d.o", o->output, i);
            else
                snprintf(out, sizeof out, "%s.c", o->output);
            if (rename(i < B->njobs ? B->jobs[i].obj : src, out) != 0) {
                nn_error(&c->diags, (NnLoc){0}, "cannot write %s: %s", out, strerror(errno));
                goto done;
            }
        }
        if (!o->quiet)
            printf("wrote %s-0.o .. %s-%d.o and %s.c for %s: compile and link them with "
                   "runtime/app/main.c and a libnnrt built for that machine\n", o->output,
                   o->output, B->njobs - 1, o->output, target.triple);
        rc = 0;
        goto done;
    }
    char *argv[MAX_JOBS + 32];
    int na = 0;
    argv[na++] = "cc";
    argv[na++] = "-O1";
    argv[na++] = "-w";
    // The runtime's headers and libraries: installed beside nnc, or the trees
    // it was built in (driver_paths.c).
    NnPaths paths;
    nn_driver_paths(c, &paths);
    argv[na++] = nn_arena_printf(c->arena, "-I%s", paths.includedir);
    argv[na++] = nn_arena_printf(c->arena, "-I%s/app", paths.includedir);
    argv[na++] = "-o";
    argv[na++] = (char *)o->output;
    argv[na++] = src;
    for (int i = 0; i < B->njobs; i++)
        argv[na++] = B->jobs[i].obj;
    argv[na++] = nn_arena_printf(c->arena, "%s/libnnrt_app.a", paths.libdir);
    argv[na++] = nn_arena_printf(c->arena, "%s/libnnrt.a", paths.libdir);
    char ldflags[] = NN_APP_LDFLAGS;
    for (char *tok = strtok(ldflags, " "); tok; tok = strtok(NULL, " "))
        argv[na++] = tok;
    argv[na++] = "-lz";
    argv[na++] = "-lm";
    argv[na++] = "-lpthread";
    argv[na] = NULL;
    if (!run_cc(c, argv))
        goto done;
    if (o->verbose) {
        fprintf(stderr, "nnc: built %s: data block %.0f ms, %d steps compiled in %.0f ms, "
                "linked in %.0f ms\n", o->output, (t_data - t0) * 1000, B->njobs,
                (t1 - t_data) * 1000, (nnrt_now() - t1) * 1000);
        for (int i = 0; i < B->njobs; i++)
            fprintf(stderr, "nnc: compiled the %s%s\n", B->jobs[i].what,
                    B->jobs[i].batch_sym >= 0 ? " for any batch size" : "");
    }
    rc = 0;
done:
    if (!getenv("NNC_KEEP_BUILD"))
        rm_tree(B);
    else
        fprintf(stderr, "nnc: build files kept in %s\n", B->dir);
    for (int i = 0; i < B->njobs; i++)
        nn_aot_step_free(B->jobs[i].desc);
    for (int i = 0; i < B->nxf; i++)
        nn_graph_free(B->xf[i].g);
    for (int i = 0; i < nowned; i++)
        nn_graph_free(owned[i]);
    nn_splits_fini(&splits);
    nn_train_spec_fini(&spec);
    nn_train_spec_fini(&dspec);
    free(B);
    return rc;
}
