// MPI for data-parallel training (dist.h). Gradient buckets are summed with
// MPI_Iallreduce started by GRAD_START kernels and completed by GRAD_WAIT
// kernels; both run on the thread that runs the step (they are never pool
// work), so MPI is initialized FUNNELED. Every wait polls with MPI_Test against
// a deadline while answering peers' liveness pings; at the deadline a rank pings
// all others, names those that do not answer, and ends the job with MPI_Abort.
// Without NN_WITH_MPI, everything below the stub line is one rank.
#include "dist.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef NN_WITH_MPI
#include <mpi.h>
#endif

static int rank_, size_ = 1;
static double weight = 1.0;
static NnrtDistStats stats;
static bool shared_failure;

void nnrt_dist_fail_together(void) { shared_failure = true; }
bool nnrt_dist_failed_together(void) { return shared_failure; }

int nnrt_dist_rank(void) { return rank_; }
int nnrt_dist_size(void) { return size_; }
void nnrt_dist_set_weight(double w) { weight = w; }
void nnrt_dist_stats(NnrtDistStats *s) { *s = stats; }
void nnrt_dist_step_done(void) { stats.steps++; }

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
    fprintf(stderr, "mpi: %d ranks, %lld steps, %.0f buckets and %.0f gradient bytes per step, "
            "%.3f ms per step inside MPI for gradients (%.3f ms blocked in waits)\n", size_,
            (long long)stats.steps, (double)stats.buckets / st, (double)stats.bytes / st,
            1e3 * stats.exposed_s / st, 1e3 * stats.wait_s / st);
}

#ifdef NN_WITH_MPI

enum { TAG_PING = 7701, TAG_PONG = 7702 };

// A gradient sum in flight: acc is its buffer (GRAD_WAIT finds it by address).
typedef struct Pending {
    const float *acc;
    MPI_Request req;
    bool done;
} Pending;

static Pending *pend;
static int npend, cap;
static double timeout_s = 60;
static bool started;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool nnrt_dist_built(void) { return true; }

const char *nnrt_dist_library(void)
{
    static char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (!v[0] && MPI_Get_library_version(v, &len) == MPI_SUCCESS) {
        v[strcspn(v, ",\n")] = 0; // "Open MPI v4.1.4"
    }
    return v;
}

static bool launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return true;
    return false;
}

NnStatus nnrt_dist_init(void)
{
    if (started || !launched())
        return NN_OK;
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return nnrt_fail(NN_ERR_RUNTIME, "MPI_Init failed");
    started = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    const char *t = getenv("NNC_MPI_TIMEOUT");
    if (t && atof(t) > 0)
        timeout_s = atof(t);
    return NN_OK;
}

void nnrt_dist_finalize(void)
{
    if (!started)
        return;
    print_stats();
    MPI_Finalize();
    started = false;
    free(pend);
    pend = NULL;
    npend = cap = 0;
}

void nnrt_dist_abort(const char *msg)
{
    if (size_ < 2)
        return;
    fprintf(stderr, "nnc: rank %d: %s\n", rank_, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

// Answers the liveness pings of peers that are themselves stuck waiting.
static void answer_pings(void)
{
    int flag = 1;
    while (flag) {
        MPI_Status s;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_PING, MPI_COMM_WORLD, &flag, &s);
        if (!flag)
            break;
        int v;
        MPI_Recv(&v, 1, MPI_INT, s.MPI_SOURCE, TAG_PING, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(&rank_, 1, MPI_INT, s.MPI_SOURCE, TAG_PONG, MPI_COMM_WORLD);
    }
}

// The deadline passed in `what`: ask every peer whether it is alive, name
// those that stay silent, and end the job.
static void unresponsive(const char *what)
{
    int n = size_;
    MPI_Request *rq = calloc((size_t)2 * (size_t)n, sizeof *rq);
    int *pong = calloc((size_t)n, sizeof *pong);
    bool *alive = calloc((size_t)n, sizeof *alive);
    if (!rq || !pong || !alive) {
        nnrt_dist_abort("out of memory while checking for unresponsive ranks");
        return;
    }
    for (int p = 0; p < n; p++) {
        rq[p] = rq[n + p] = MPI_REQUEST_NULL;
        if (p == rank_)
            continue;
        MPI_Isend(&rank_, 1, MPI_INT, p, TAG_PING, MPI_COMM_WORLD, &rq[p]);
        MPI_Irecv(&pong[p], 1, MPI_INT, p, TAG_PONG, MPI_COMM_WORLD, &rq[n + p]);
    }
    double grace = timeout_s / 2 < 1 ? 1 : timeout_s / 2, t0 = now();
    int missing = n - 1;
    while (missing > 0 && now() - t0 < grace) {
        answer_pings();
        missing = 0;
        for (int p = 0; p < n; p++) {
            int done = 0;
            if (p != rank_ && !alive[p])
                MPI_Test(&rq[n + p], &done, MPI_STATUS_IGNORE);
            alive[p] = alive[p] || done || p == rank_;
            missing += !alive[p];
        }
        sched_yield();
    }
    char msg[512];
    int k = snprintf(msg, sizeof msg, "error: %s did not complete within %.0f s; ", what,
                     timeout_s);
    if (missing == 0)
        snprintf(msg + k, sizeof msg - (size_t)k, "every rank answers, but some rank never "
                 "reached it (a rank ran a different number of steps?)");
    for (int p = 0, shown = 0; p < n && missing > 0 && k < (int)sizeof msg; p++) {
        if (alive[p])
            continue;
        k += snprintf(msg + k, sizeof msg - (size_t)k, "%s%d", shown++ ? ", " : "rank ", p);
        if (shown == missing)
            snprintf(msg + k, sizeof msg - (size_t)k, " stopped responding (stopped, hung or "
                     "dead); ending every rank");
    }
    nnrt_dist_abort(msg);
}

// Completes req, polling so that peers' pings are answered and a dead or
// stopped peer ends the job instead of hanging it.
static void wait_req(MPI_Request *req, const char *what)
{
    double t0 = now();
    for (long spins = 0;; spins++) {
        int done = 0;
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        answer_pings();
        if ((spins & 255) == 255) {
            if (now() - t0 > timeout_s)
                unresponsive(what);
            sched_yield();
        }
    }
}

static Pending *find(const float *acc)
{
    for (int i = 0; i < npend; i++)
        if (pend[i].acc == acc)
            return &pend[i];
    return NULL;
}

void nnrt_dist_grad_start(const float *g, float *acc, int64_t n)
{
    double t0 = now();
    float w = (float)weight;
    for (int64_t i = 0; i < n; i++)
        acc[i] = g[i] * w;
    if (n > 0x7fffffff)
        nnrt_dist_abort("error: a gradient of more than 2^31 values is too large for one "
                        "all-reduce");
    if (npend == cap) {
        cap = cap ? 2 * cap : 64;
        Pending *p = realloc(pend, (size_t)cap * sizeof *p);
        if (!p)
            nnrt_dist_abort("error: out of memory for gradient all-reduce requests");
        pend = p;
    }
    Pending *p = &pend[npend++];
    p->acc = acc;
    p->done = false;
    MPI_Iallreduce(MPI_IN_PLACE, acc, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &p->req);
    stats.buckets++;
    stats.bytes += n * (int64_t)sizeof(float);
    // NNC_MPI_OVERLAP=0 measures the all-reduce with nothing hidden.
    static int overlap = -1;
    if (overlap < 0)
        overlap = !getenv("NNC_MPI_OVERLAP") || atoi(getenv("NNC_MPI_OVERLAP")) != 0;
    if (!overlap) {
        wait_req(&p->req, "the gradient all-reduce");
        p->done = true;
    }
    stats.exposed_s += now() - t0;
}

void nnrt_dist_progress(void)
{
    if (npend == 0)
        return;
    double t0 = now();
    for (int i = 0; i < npend; i++)
        if (!pend[i].done) {
            int done = 0;
            MPI_Test(&pend[i].req, &done, MPI_STATUS_IGNORE);
            pend[i].done = done;
        }
    stats.exposed_s += now() - t0;
}

void nnrt_dist_grad_wait(const float *acc, float *out, int64_t n)
{
    double t0 = now();
    Pending *p = find(acc);
    if (!p) {
        nnrt_dist_abort("internal error: a gradient wait without its start");
        return;
    }
    if (!p->done)
        wait_req(&p->req, "the gradient all-reduce");
    double t1 = now();
    *p = pend[--npend];
    memcpy(out, acc, (size_t)n * sizeof *out);
    stats.wait_s += t1 - t0;
    stats.exposed_s += t1 - t0;
}

static NnStatus sum(void *v, int n, MPI_Datatype t, const char *what)
{
    if (size_ < 2)
        return NN_OK;
    MPI_Request req;
    if (MPI_Iallreduce(MPI_IN_PLACE, v, n, t, MPI_SUM, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return nnrt_fail(NN_ERR_RUNTIME, "MPI all-reduce of %s failed", what);
    wait_req(&req, what);
    return NN_OK;
}

NnStatus nnrt_dist_sum_f64(double *v, int n, const char *what)
{
    return sum(v, n, MPI_DOUBLE, what);
}

NnStatus nnrt_dist_sum_i64(int64_t *v, int n, const char *what)
{
    return sum(v, n, MPI_INT64_T, what);
}

NnStatus nnrt_dist_check_hash(uint64_t h, const char *what)
{
    if (size_ < 2)
        return NN_OK;
    uint64_t *all = calloc((size_t)size_, sizeof *all);
    if (!all)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    MPI_Request req;
    MPI_Iallgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD, &req);
    wait_req(&req, "the start-up check of the compiled step");
    char list[256] = "";
    size_t k = 0;
    int bad = 0, first = 0;
    for (int p = 1; p < size_; p++)
        if (all[p] != all[0] && k < sizeof list) {
            first = bad ? first : p;
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%d", bad++ ? ", " : "", p);
        }
    unsigned long long h0 = all[0], h1 = all[first];
    free(all);
    if (!bad)
        return NN_OK;
    shared_failure = true;
    return nnrt_fail(NN_ERR_RUNTIME, "rank%s %s compiled a different %s than rank 0 (hash "
                     "%016llx on rank %d, %016llx on rank 0): every rank must run the same script "
                     "with the same settings", bad > 1 ? "s" : "", list, what, h1, first, h0);
}

#else // ---- one rank: no MPI in this build ----------------------------------

bool nnrt_dist_built(void) { return false; }
const char *nnrt_dist_library(void) { return "none"; }
NnStatus nnrt_dist_init(void) { return NN_OK; }
void nnrt_dist_finalize(void) { print_stats(); }
void nnrt_dist_abort(const char *msg) { (void)msg; }

void nnrt_dist_grad_start(const float *g, float *acc, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        acc[i] = g[i] * (float)weight;
}

void nnrt_dist_grad_wait(const float *acc, float *out, int64_t n)
{
    memcpy(out, acc, (size_t)n * sizeof *out);
}

void nnrt_dist_progress(void) {}
NnStatus nnrt_dist_sum_f64(double *v, int n, const char *what) { return NN_OK; }
NnStatus nnrt_dist_sum_i64(int64_t *v, int n, const char *what) { return NN_OK; }
NnStatus nnrt_dist_check_hash(uint64_t h, const char *what) { return NN_OK; }

#endif
