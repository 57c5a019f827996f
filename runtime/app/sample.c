// `PROG sample` of a built program: what `nnc sample` does, on the model
// alone as `nnc build` compiled it (app.h: sample, noise), with the drawing,
// the pictures and the text loop of runtime/sample.h that nnc uses too, so
// the same weights and seed give the same image, report or lines. The data
// block is replayed for what the picture is drawn over (the real points, the
// images' value range) or for the text's vocabulary.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_priv.h"
#include "checkpoint.h"

static int fail_rt(const char *prog, const char *what)
{
    fprintf(stderr, "%s: error: %s%s%s\n", prog, what ? what : "", what ? ": " : "",
            nnrt_errmsg());
    return 1;
}

static int usage(const char *prog, const char *msg, const char *a)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, msg, a);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    return 2;
}

static bool png_name(const char *path)
{
    size_t len = strlen(path);
    return len > 4 && !strcmp(path + len - 4, ".png");
}

int app_sample_option(AppSampleArgs *g, const char *opt, const char *v)
{
    char *end;
    errno = 0;
    if (!strcmp(opt, "--seed")) {
        g->seed = strtoull(v, &end, 10);
        g->has_seed = true;
        return *end || !*v || v[0] == '-' || v[0] == '+' || errno == ERANGE;
    }
    if (!strcmp(opt, "--count")) {
        long long n = strtoll(v, &end, 10);
        g->count = n;
        return *end || !*v || n < 1 || n > 1000000;
    }
    double t = strtod(v, &end);
    g->temperature = t;
    g->has_temperature = true;
    return *end || !*v || !(t >= 0 && t <= 100);
}

// The text model on one window: a batch of one row.
typedef struct TextRun {
    NnrtStepRun *run;
    NnVars *vars;
    NnTensor *win;
} TextRun;

static NnStatus score_window(void *ctx, const int32_t *window, const float **scores)
{
    TextRun *r = ctx;
    memcpy(r->win->data, window, (size_t)r->win->numel * sizeof(int32_t));
    NnTensor *out[4] = {0};
    NnStatus st = nnrt_step_run(r->run, NULL, r->vars, &r->win, out);
    if (st == NN_OK)
        *scores = out[0]->data;
    return st;
}

// The generator on its noise: n samples, pictured.
static NnStatus generate(const NnrtApp *a, const AppSampleArgs *g, NnrtStepRun *run,
                         NnVars *vars, const NnrtDataset *real)
{
    const NnrtStep *d = a->sample->step;
    int64_t n = nnrt_sample_count(real);
    if (d->ninputs > 8 || (a->sample->rows && a->sample->rows != n))
        return nnrt_fail(NN_ERR_SHAPE, "this program's generator was built for %lld samples "
                         "at once, not %lld", (long long)a->sample->rows, (long long)n);
    NnTensor *in[8] = {0};
    NnStatus st = NN_OK;
    uint64_t seed = g->has_seed ? g->seed : a->seed;
    for (int k = 0; st == NN_OK && k < d->ninputs; k++) {
        const NnrtStepTensor *t = &d->inputs[k];
        int64_t dims[NN_MAX_RANK];
        memcpy(dims, t->dims, sizeof dims);
        dims[0] = n;
        if (!(in[k] = nnrt_tensor_new((NnDType)t->dtype, t->rank, dims))) {
            st = NN_ERR_NOMEM;
            break;
        }
        NnrtDataRng rng;
        nnrt_data_rng_seed(&rng, seed, (uint64_t)a->noise_stream[k]);
        nnrt_noise_fill(&a->noise[k], in[k]->data, in[k]->numel, &rng);
    }
    NnTensor *out[4] = {0};
    if (st == NN_OK && (st = nnrt_step_run(run, NULL, vars, in, out)) != NN_OK)
        nnrt_fail(st, "cannot run the generator: %s", nnrt_errmsg());
    if (st == NN_OK)
        st = nnrt_sample_picture(g->output, real, out[0]->data, n, out[0]->numel / n, a->program,
                                 g->quiet);
    for (int k = 0; k < 8; k++)
        nnrt_tensor_free(in[k]);
    return st;
}

int app_cmd_sample(const NnrtApp *a, const AppSampleArgs *g, const char *prog)
{
    // Usage first, as nnc checks it: the weights, then what -o must be.
    if (!g->weights && !a->weights)
        return usage(prog, "'sample' needs --weights FILE (this program has no embedded "
                     "weights)%s", "");
    if (g->output && !png_name(g->output))
        return usage(prog, "sample writes .png images; cannot write '%s'", g->output);
    if (a->sample_kind == NNRT_APP_SAMPLE_NONE) {
        fprintf(stderr, "%s: error: %s\n", prog, a->sample_why ? a->sample_why
                                                               : "nothing to sample");
        return 1;
    }
    bool text = a->sample_kind == NNRT_APP_SAMPLE_TEXT;
    if (text && g->output)
        return usage(prog, "a language model prints its samples; %s is for generators", "-o");
    if (!text && !g->output)
        return usage(prog, "'sample' needs -o FILE.png%s", "");
    NnVars vars;
    Splits s = {0};
    NnrtStepRun run;
    bool opened = false;
    NnTensor *win = NULL;
    int rc = 1;
    NnStatus st = g->weights ? nnrt_safetensors_load(g->weights, &vars, NULL)
                             : nnrt_safetensors_load_mem("the embedded weights", a->weights,
                                                         (size_t)(a->weights_end - a->weights),
                                                         &vars, NULL);
    if (st != NN_OK) {
        nnrt_vars_init(&vars);
        fail_rt(prog, NULL);
        goto done;
    }
    if (app_load_data(a, &s) != NN_OK) {
        fail_rt(prog, "data");
        goto done;
    }
    const NnrtDataset *train = app_split_get(&s, "train");
    if (!train) {
        fprintf(stderr, "%s: error: the data block makes no train split to sample against\n",
                prog);
        goto done;
    }
    if (nnrt_step_open(&run, a->sample->step) != NN_OK) {
        fail_rt(prog, NULL);
        goto done;
    }
    opened = true;
    if (!text) {
        if (generate(a, g, &run, &vars, train) != NN_OK) {
            fail_rt(prog, NULL);
            goto done;
        }
    } else {
        if (!train->vocab) {
            fprintf(stderr, "%s: error: sampling text needs a train split made by text()\n",
                    prog);
            goto done;
        }
        if (!(win = nnrt_tensor_new(NN_DT_I32, 2, (int64_t[]){1, train->x->shape[1]}))) {
            fail_rt(prog, NULL);
            goto done;
        }
        TextRun tr = {&run, &vars, win};
        if (nnrt_sample_text(train, g->count > 0 ? g->count : 20,
                             g->has_temperature ? g->temperature : 1.0,
                             g->has_seed ? g->seed : a->seed, score_window, &tr,
                             stdout) != NN_OK) {
            fail_rt(prog, "cannot run the model");
            goto done;
        }
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "%s: error: cannot write the samples: %s\n", prog, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    nnrt_tensor_free(win);
    if (opened)
        nnrt_step_close(&run);
    app_splits_fini(&s);
    nnrt_vars_fini(&vars);
    return rc;
}
