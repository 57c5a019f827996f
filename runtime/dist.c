// Rank state for data-parallel training (dist.h): which rank this is, its
// rows of a batch, its weight, the statistics, and the calls generated code
// and the training loop make. Nothing here calls MPI: until nnrt_dist_init
// (runtime/dist_mpi.c) attaches the MPI operations there is one rank and every
// call is a local no-op, so programs that never start MPI need no libmpi.
#include "dist_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank_, size_ = 1;
static double weight = 1.0;
static NnrtDistStats stats;
// Per-step time inside MPI and blocked, of the first MAX_STEPS steps, for
// medians: on a shared machine a descheduled peer inflates a few steps' waits
// by milliseconds, which the mean carries and the median does not.
enum { MAX_STEPS = 1 << 14 };
static float *step_in, *step_blocked;
static double last_in, last_blocked;
static bool shared_failure;
static const NnrtDistOps *ops; // NULL: one rank
static void (*fini)(void);
static int64_t next_align; // nnrt_dist_shard_next: the next grad_start scatters
// Optimizer state owned in part (nnrt_dist_note_state).
static struct {
    NnTensor *t;
    int64_t align;
} *states;
static int nstates, cap_states;

void nnrt_dist_fail_together(void) { shared_failure = true; }
bool nnrt_dist_failed_together(void) { return shared_failure; }

int nnrt_dist_rank(void) { return rank_; }
int nnrt_dist_size(void) { return size_; }
void nnrt_dist_set_weight(double w) { weight = w; }
void nnrt_dist_stats(NnrtDistStats *s) { *s = stats; }
void nnrt_dist_step_done(void)
{
    if (ops && !step_in) {
        step_in = calloc(MAX_STEPS, sizeof *step_in);
        step_blocked = calloc(MAX_STEPS, sizeof *step_blocked);
    }
    if (step_in && step_blocked && stats.steps < MAX_STEPS) {
        step_in[stats.steps] = (float)(stats.exposed_s - last_in);
        step_blocked[stats.steps] = (float)(stats.wait_s - last_blocked);
    }
    last_in = stats.exposed_s;
    last_blocked = stats.wait_s;
    stats.steps++;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double median(float *v, int64_t n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int nnrt_dist_launched_ranks(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]) && atoi(getenv(vars[i])) > 1)
            return atoi(getenv(vars[i]));
    return 1;
}

void nnrt_dist_slice(int64_t n, int64_t *lo, int64_t *hi)
{
    *lo = n * rank_ / size_;
    *hi = n * (rank_ + 1) / size_;
}

static void print_stats(void)
{
    if (rank_ != 0 || !getenv("NNC_MPI_STATS") || !stats.steps)
        return;
    double st = (double)stats.steps;
    fprintf(stderr, "mpi: %d ranks, %lld steps, %.0f buckets (%.0f summed in place) and %.0f "
            "gradient bytes per step, %.3f ms per step inside MPI for gradients (%.3f ms "
            "blocked in waits)", size_, (long long)stats.steps, (double)stats.buckets / st,
            (double)stats.in_place / st, (double)stats.bytes / st,
            1e3 * stats.exposed_s / st, 1e3 * stats.wait_s / st);
    int64_t n = stats.steps < MAX_STEPS ? stats.steps : MAX_STEPS;
    if (step_in && step_blocked)
        fprintf(stderr, "; median %.3f ms (%.3f ms blocked)", 1e3 * median(step_in, n),
                1e3 * median(step_blocked, n));
    // The algorithm dist_mpi.c selected before MPI_Init, or the user's.
    static const char *const algs[] = {"Open MPI's choice", "ring", "binomial", "rabenseifner",
                                       "recursive doubling"};
    const char *a = getenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm");
    if (a && a[0] >= '0' && a[0] <= '4' && !a[1])
        fprintf(stderr, "; all-reduce algorithm: %s", algs[a[0] - '0']);
    if (stats.scattered)
        fprintf(stderr, "; sharded update: %.0f buckets reduce-scattered (%.3f ms per step "
                "adding the peers' parts) and %.0f parameters (%.0f bytes) all-gathered per "
                "step, %.3f ms per step inside MPI for the gathers (%.3f ms blocked)",
                (double)stats.scattered / st, 1e3 * stats.sum_s / st,
                (double)stats.gathers / st, (double)stats.gather_bytes / st,
                1e3 * stats.gather_s / st, 1e3 * stats.gather_wait_s / st);
    fputc('\n', stderr);
}

NnrtDistStats *nnrt_dist_attach(const NnrtDistOps *o, int rank, int size, void (*f)(void))
{
    ops = o;
    fini = f;
    rank_ = o ? rank : 0;
    size_ = o ? size : 1;
    return &stats;
}

void nnrt_dist_finalize(void)
{
    print_stats();
    if (fini)
        fini();
    free(step_in);
    free(step_blocked);
    step_in = step_blocked = NULL;
    nnrt_dist_state_reset();
    ops = NULL;
    fini = NULL;
    rank_ = 0;
    size_ = 1;
}

void nnrt_dist_abort(const char *msg)
{
    if (ops)
        ops->abort(msg);
}

// The memory plan usually computes acc in g's buffer and out in acc's
// (ir/plan.c, in_place): the weighting is then in place and the wait copies
// nothing.
void nnrt_dist_grad_start(const float *g, float *acc, int64_t n)
{
    float w = (float)weight;
    int64_t align = next_align, lo = 0, hi = 0;
    next_align = 0;
    // A reduce-scatter in place leaves this rank's own elements to the sum at
    // the wait, which weights them as it adds the peers' parts: one pass over
    // them instead of two.
    if (ops && align > 0 && g == acc)
        nnrt_dist_range(n, align, rank_, &lo, &hi);
    for (int64_t i = 0; i < lo; i++)
        acc[i] = g[i] * w;
    for (int64_t i = hi; i < n; i++)
        acc[i] = g[i] * w;
    if (ops) {
        stats.in_place += g == acc;
        if (align > 0)
            ops->grad_scatter(acc, n, align, hi > lo ? w : 1.0f);
        else
            ops->grad_start(acc, n);
    }
}

bool nnrt_dist_sharding(void)
{
    static int on = -1; // read once: the steps' loop asks every step
    if (on < 0)
        on = !getenv("NNC_MPI_SHARD") || atoi(getenv("NNC_MPI_SHARD")) != 0;
    return ops && on;
}

// The split of nn_cg_split (backend/llvm/emit.c): chunks of `align` dealt
// out as evenly as whole chunks allow.
void nnrt_dist_range(int64_t total, int64_t align, int rank, int64_t *lo, int64_t *hi)
{
    int64_t chunks = (total + align - 1) / align;
    *lo = chunks * rank / size_ * align;
    *hi = chunks * (rank + 1) / size_ * align;
    *lo = *lo < total ? *lo : total;
    *hi = *hi < total ? *hi : total;
}

void nnrt_dist_shard_next(int64_t align)
{
    next_align = ops ? align : 0;
}

void nnrt_dist_gather_start(float *buf, int64_t n, int64_t align)
{
    if (ops)
        ops->gather_start(buf, n, align);
}

void nnrt_dist_gather_wait(void)
{
    if (ops)
        ops->gather_wait();
}

void nnrt_dist_note_state(NnTensor *t, int64_t align)
{
    for (int i = 0; i < nstates; i++)
        if (states[i].t == t)
            return;
    if (nstates == cap_states) {
        int c = cap_states ? 2 * cap_states : 16;
        void *p = realloc(states, (size_t)c * sizeof *states);
        if (!p) {
            nnrt_dist_abort("error: out of memory for the sharded optimizer state");
            return;
        }
        states = p;
        cap_states = c;
    }
    states[nstates].t = t;
    states[nstates++].align = align;
}

NnStatus nnrt_dist_gather_state(void)
{
    NnStatus st = NN_OK;
    for (int i = 0; ops && st == NN_OK && i < nstates; i++)
        st = ops->gather_now(states[i].t->data, states[i].t->numel, states[i].align,
                             "the optimizer state");
    return st;
}

void nnrt_dist_state_reset(void)
{
    free(states);
    states = NULL;
    nstates = cap_states = 0;
}

void nnrt_dist_grad_wait(const float *acc, float *out, int64_t n)
{
    if (ops)
        ops->grad_wait(acc);
    if (out != acc)
        memcpy(out, acc, (size_t)n * sizeof *out);
}

void nnrt_dist_progress(void)
{
    if (ops)
        ops->progress();
}

NnStatus nnrt_dist_sum_f64(double *v, int n, const char *what)
{
    return ops ? ops->sum_f64(v, n, what) : NN_OK;
}

NnStatus nnrt_dist_sum_i64(int64_t *v, int n, const char *what)
{
    return ops ? ops->sum_i64(v, n, what) : NN_OK;
}

uint64_t nnrt_fnv1a(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
    return h;
}

NnStatus nnrt_dist_check_hash(uint64_t h, const char *what)
{
    return ops ? ops->check_hash(h, what) : NN_OK;
}
