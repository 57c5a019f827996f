// Drawing from trained models (sample.h), for nnc and built programs alike:
// the noise a generator takes, the picture of what it makes, and a language
// model's lines. Everything here depends only on its arguments (the seed
// included), so two callers that run the same model on the same weights
// print and write the same bytes.
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"

#define SAMPLE_MAX_LINE 200 // bytes; a model that never ends a line is cut here

void nnrt_noise_fill(const NnrtNoise *nz, float *p, int64_t n, NnrtDataRng *rng)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(nz->normal ? nz->a + nz->b * nnrt_data_rng_normal(rng)
                                  : nz->a + (nz->b - nz->a) * nnrt_data_rng_uniform(rng));
}

static bool points_data(const NnrtDataset *real)
{
    return real->count && real->x->numel / real->count == 2;
}

int64_t nnrt_sample_count(const NnrtDataset *real)
{
    return points_data(real) ? NNRT_SAMPLE_POINTS : NNRT_SAMPLE_IMAGES;
}

static void report_modes(const NnrtDataset *real, const float *gen, int64_t n)
{
    NnrtModes m;
    nnrt_modes_find(&m, real->x->data, real->count < 20000 ? real->count : 20000);
    if (m.count == 0) {
        printf("modes: the real data form no clear clusters; no mode report\n");
        return;
    }
    nnrt_modes_score(&m, gen, n);
    printf("modes covered: %d of %d (a mode counts with at least 1%% of the samples within "
           "3 standard deviations)\n", m.covered, m.count);
    printf("high-quality samples: %.1f%% (within 3 standard deviations of a mode)\n",
           100 * m.high_quality);
    printf("samples per mode:");
    for (int k = 0; k < m.count; k++)
        printf(" %lld", (long long)m.hits[k]);
    printf(" (of %lld)\n", (long long)n);
}

NnStatus nnrt_sample_picture(const char *path, const NnrtDataset *real, const float *gen,
                             int64_t n, int64_t feat, const char *model, bool quiet)
{
    int64_t dfeat = real->count ? real->x->numel / real->count : 0;
    if (points_data(real) && feat == 2) {
        int64_t nreal = real->count < NNRT_SAMPLE_POINTS ? real->count : NNRT_SAMPLE_POINTS;
        NnStatus st = nnrt_plot_scatter(path, real->x->data, nreal, gen, n, NNRT_SAMPLE_PLOT);
        if (st == NN_OK && !quiet) {
            printf("wrote %lld generated points over %lld real ones to %s\n", (long long)n,
                   (long long)nreal, path);
            report_modes(real, gen, n);
        }
        return st;
    }
    if (real->img_h > 0 && real->img_w > 0 && feat % (real->img_h * real->img_w) == 0 &&
        feat == dfeat) {
        // The data's own value range, so generated images look like the data.
        float lo = INFINITY, hi = -INFINITY;
        const float *x = real->x->data;
        for (int64_t i = 0; i < real->x->numel; i++) {
            lo = fminf(lo, x[i]);
            hi = fmaxf(hi, x[i]);
        }
        int64_t planes = NNRT_SAMPLE_IMAGES * (feat / (real->img_h * real->img_w));
        NnStatus st = nnrt_image_write_png(path, gen, planes, real->img_h, real->img_w, 8, lo, hi);
        if (st == NN_OK && !quiet)
            printf("wrote a grid of %d generated images to %s\n", NNRT_SAMPLE_IMAGES, path);
        return st;
    }
    return nnrt_fail(NN_ERR_SHAPE, "cannot picture what '%s' generates: %lld values per sample, "
                     "and the data are neither 2-D points nor images of %lld values", model,
                     (long long)feat, (long long)dfeat);
}

// Draws an id below v from softmax(s / temp); temp 0 takes the largest score.
static int draw(const float *s, int v, double temp, NnrtDataRng *rng, double *p)
{
    int best = 0;
    for (int i = 1; i < v; i++)
        best = s[i] > s[best] ? i : best;
    if (temp == 0)
        return best;
    double total = 0;
    for (int i = 0; i < v; i++)
        total += p[i] = exp(((double)s[i] - s[best]) / temp);
    double u = nnrt_data_rng_uniform(rng) * total;
    for (int i = 0; i < v; i++)
        if ((u -= p[i]) < 0)
            return i;
    return best;
}

NnStatus nnrt_sample_text(const NnrtDataset *train, int64_t count, double temp, uint64_t seed,
                          NnrtScoreFn score, void *ctx, FILE *out)
{
    int64_t seq = train->x->shape[1];
    int vocab = train->num_classes;
    int32_t *w = malloc((size_t)seq * sizeof *w);
    double *prob = malloc((size_t)vocab * sizeof *prob);
    if (!w || !prob) {
        free(w);
        free(prob);
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    // Lines start after a newline; a text without one starts from id 0.
    const char *nl = memchr(train->vocab, '\n', (size_t)vocab);
    int32_t start = nl ? (int32_t)(nl - (const char *)train->vocab) : 0;
    for (int64_t t = 0; t < seq; t++)
        w[t] = start;
    NnrtDataRng rng;
    nnrt_data_rng_seed(&rng, seed, 0);
    char line[SAMPLE_MAX_LINE + 1];
    int empty = 0; // empty lines drawn in a row
    NnStatus st = NN_OK;
    for (int64_t made = 0; made < count && st == NN_OK;) {
        int len = 0;
        for (;;) {
            const float *s;
            if ((st = score(ctx, w, &s)) != NN_OK)
                break;
            int id = draw(s, vocab, temp, &rng, prob);
            memmove(w, w + 1, (size_t)(seq - 1) * sizeof *w);
            w[seq - 1] = id;
            if (train->vocab[id] == '\n' || len == SAMPLE_MAX_LINE)
                break;
            line[len++] = (char)train->vocab[id];
        }
        if (st != NN_OK)
            break;
        // A newline right after a newline would print an empty word: draw
        // on, but not forever for a model that only ends lines.
        if (len == 0 && nl && ++empty < SAMPLE_MAX_LINE)
            continue;
        empty = 0;
        fwrite(line, 1, (size_t)len, out);
        fputc('\n', out);
        made++;
    }
    free(w);
    free(prob);
    return st;
}
