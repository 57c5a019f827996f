// The per-epoch progress bar and its plain-text fallback. Takes sample counts
// and batch losses as they come; writes to one stream. Redraws are throttled
// to 10 per second so a fast loop spends nothing on the terminal; the final
// state of every epoch is always drawn. A bar left without its newline (open)
// is always either overwritten by the next bar or ended by
// nnrt_progress_finish, so nothing else is ever printed onto it.
#include "progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

double nnrt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void nnrt_progress_init(NnrtProgress *p, NnrtProgressMode mode, FILE *out)
{
    memset(p, 0, sizeof *p);
    p->out = out ? out : stderr;
    if (mode == NNRT_PROGRESS_AUTO)
        mode = isatty(fileno(p->out)) ? NNRT_PROGRESS_BAR : NNRT_PROGRESS_LINES;
    p->mode = mode;
    p->width = 20;
}

void nnrt_progress_begin(NnrtProgress *p, int epoch, int epochs, int64_t total)
{
    p->epoch = epoch;
    p->epochs = epochs;
    p->total = total;
    p->done = 0;
    p->loss_sum = 0;
    p->loss_n = 0;
    memset(p->stat_sum, 0, sizeof p->stat_sum);
    p->t0 = nnrt_now();
    p->last_draw = 0;
}

double nnrt_progress_mean_loss(const NnrtProgress *p)
{
    return p->loss_n ? p->loss_sum / (double)p->loss_n : 0.0;
}

void nnrt_progress_stats(NnrtProgress *p, int64_t n, const double *v)
{
    for (int i = 0; i < p->nstats && i < NNRT_MAX_STATS; i++)
        p->stat_sum[i] += v[i] * (double)n;
}

// "loss 0.412", or each named value's mean ("d.loss 0.69  g.loss 0.71").
// Then the current learning rate when the step reports one ("lr 3.00e-04").
static void fmt_losses(const NnrtProgress *p, int digits, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = 0;
    if (p->nstats == 0)
        k = (size_t)snprintf(buf, cap, "loss %.*f", digits, nnrt_progress_mean_loss(p));
    for (int i = 0; i < p->nstats && i < NNRT_MAX_STATS && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s %.*f", i ? "  " : "", p->stat_names[i],
                              digits, p->loss_n ? p->stat_sum[i] / (double)p->loss_n : 0.0);
    if (p->has_lr && k < cap)
        snprintf(buf + k, cap - k, "  lr %.3g", p->lr);
}

static void fmt_rate(double r, char *buf, size_t cap)
{
    if (r >= 1e6)
        snprintf(buf, cap, "%.1fM", r / 1e6);
    else if (r >= 1e3)
        snprintf(buf, cap, "%.1fk", r / 1e3);
    else
        snprintf(buf, cap, "%.0f", r);
}

void nnrt_progress_format(const NnrtProgress *p, double now, char *buf, size_t cap)
{
    double el = now - p->t0;
    double rate = el > 0 ? (double)p->done / el : 0;
    int filled = p->total > 0 ? (int)((double)p->width * (double)p->done / (double)p->total) : 0;
    size_t k = (size_t)snprintf(buf, cap, "epoch %d/%d ", p->epoch, p->epochs);
    for (int i = 0; i < p->width && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s", i < filled ? "\u2501" : "\u2500");
    char r[32];
    fmt_rate(rate, r, sizeof r);
    long eta = rate > 0 ? (long)((double)(p->total - p->done) / rate + 0.5) : 0;
    char losses[256];
    fmt_losses(p, 3, losses, sizeof losses);
    if (k < cap)
        snprintf(buf + k, cap - k, " %lld/%lld  %s  %s samples/s  ETA %ld:%02ld",
                 (long long)p->done, (long long)p->total, losses, r, eta / 60, eta % 60);
}

void nnrt_progress_step(NnrtProgress *p, int64_t n, double loss)
{
    p->done += n;
    p->loss_sum += loss * (double)n;
    p->loss_n += n;
    if (p->mode != NNRT_PROGRESS_BAR)
        return;
    double now = nnrt_now();
    if (now - p->last_draw < 0.1 && p->done < p->total)
        return;
    p->last_draw = now;
    char line[512];
    nnrt_progress_format(p, now, line, sizeof line);
    // \033[K clears what a longer previous line left behind.
    fprintf(p->out, "\r%s\033[K", line);
    fflush(p->out);
    p->open = true;
}

void nnrt_progress_end(NnrtProgress *p, const char *extra)
{
    if (p->mode == NNRT_PROGRESS_QUIET)
        return;
    double now = nnrt_now();
    // Many short epochs (XOR: 300 in a blink) would flood the screen: the bar
    // keeps the first and last epoch lines and at most one a second in
    // between (runs of up to 20 epochs keep every line); the others stay open
    // for the next bar to overwrite. A log (not a terminal) gets every line.
    bool keep = p->mode == NNRT_PROGRESS_LINES || p->epochs <= 20 || p->epoch <= 1 ||
                p->epoch >= p->epochs || now - p->last_line >= 1.0;
    if (keep)
        p->last_line = now;
    if (p->mode == NNRT_PROGRESS_BAR) {
        char line[512];
        nnrt_progress_format(p, now, line, sizeof line);
        fprintf(p->out, "\r%s%s%s\033[K%s", line, extra ? "  " : "", extra ? extra : "",
                keep ? "\n" : "");
        p->open = !keep;
    } else {
        double el = now - p->t0;
        char r[32];
        fmt_rate(el > 0 ? (double)p->done / el : 0, r, sizeof r);
        char losses[256];
        fmt_losses(p, 4, losses, sizeof losses);
        fprintf(p->out, "epoch %d/%d  %lld samples  %s  %s samples/s  %.1fs%s%s\n", p->epoch,
                p->epochs, (long long)p->done, losses, r, el, extra ? "  " : "",
                extra ? extra : "");
    }
    fflush(p->out);
}

void nnrt_progress_finish(NnrtProgress *p)
{
    if (p->open)
        fputc('\n', p->out);
    p->open = false;
    fflush(p->out);
}
