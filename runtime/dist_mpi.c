// The MPI half of dist.h, the only code that calls MPI: nnrt_dist_init starts
// MPI under mpirun and hands runtime/dist.c the operations below. Gradient
// buckets are summed with MPI_Iallreduce started by GRAD_START kernels and
// completed by GRAD_WAIT kernels; both run on the thread that runs the step
// (never pool work), so MPI is initialized FUNNELED. Every wait polls with
// MPI_Test against a deadline while answering peers' liveness pings; at the
// deadline a rank pings all others, names those that do not answer and ends
// the job with MPI_Abort (when all answer, a late peer gets one more timeout).
// A watchdog thread bounds each single MPI call as well: Open MPI's
// shared-memory queues make a reader spin inside the call when the writing
// peer was stopped halfway through linking a message in, so a stopped peer
// could otherwise hang a rank where no deadline is checked. Kept apart from
// dist.c so that code using libnnrt without nnrt_dist_init (model libraries)
// never needs libmpi.
#include "dist_priv.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef NN_WITH_MPI
#include <mpi.h>

enum { TAG_PING = 7701, TAG_PONG = 7702 };

// Gradient sums in flight: acc[i] is one's buffer (GRAD_WAIT finds it by
// address), req[i] its request (MPI_REQUEST_NULL once complete). The requests
// are one array so that one MPI_Testall advances them all.
static const float **accs;
static MPI_Request *reqs;
static int npend, cap;
static double timeout_s = 60;
static int rank_, size_ = 1;
static NnrtDistStats *stats;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The clock of the statistics: wall time, or with NNC_MPI_STATS=cpu this
// thread's CPU time, which a shared machine's scheduler does not inflate (a
// rank descheduled inside MPI counts nothing; one spinning for its peer does).
static clockid_t stat_clock = CLOCK_MONOTONIC;

static double stat_now(void)
{
    struct timespec ts;
    clock_gettime(stat_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- the watchdog of single MPI calls ----
// call_since: now() when the step's thread entered the MPI call it is in, 0
// outside. GUARD(call) marks a call; the watchdog ends the process when one
// call has not returned for call_limit seconds (mpirun then ends the job: a
// rank that exits non-zero without MPI_Finalize aborts it). No single call
// of ours waits on purpose; every wait polls.
static _Atomic double call_since;
static _Atomic bool watch_stop;
static double call_limit;
static pthread_t watch_thread;
static bool watching;

static inline int guard_leave(int rc)
{
    atomic_store_explicit(&call_since, 0, memory_order_relaxed);
    return rc;
}
#define GUARD(call)                                                                          \
    (atomic_store_explicit(&call_since, now(), memory_order_relaxed), guard_leave(call))

static void *watchdog(void *arg)
{
    (void)arg;
    while (!atomic_load(&watch_stop)) {
        nanosleep(&(struct timespec){0, 100000000}, NULL);
        double t = atomic_load_explicit(&call_since, memory_order_relaxed);
        if (t <= 0 || now() - t <= call_limit)
            continue;
        char who[32] = "a peer";
        if (size_ == 2)
            snprintf(who, sizeof who, "rank %d", 1 - rank_);
        fprintf(stderr, "nnc: rank %d: error: %s stopped responding (stopped, hung or dead) in "
                "the middle of a message: an MPI call has not returned for %.0f s; ending "
                "every rank\n", rank_, who, call_limit);
        fflush(stderr);
        _exit(1);
    }
    return NULL;
}

static void watch_start(void)
{
    call_limit = timeout_s > 5 ? timeout_s : 5;
    atomic_store(&watch_stop, false);
    watching = pthread_create(&watch_thread, NULL, watchdog, NULL) == 0;
}

static void watch_end(void)
{
    if (!watching)
        return;
    atomic_store(&watch_stop, true);
    pthread_join(watch_thread, NULL);
    watching = false;
}


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

static void finalize(void)
{
    // Not watched: peers may reach MPI_Finalize much later (rank 0 saving).
    watch_end();
    MPI_Finalize();
    free(accs);
    free(reqs);
    accs = NULL;
    reqs = NULL;
    npend = cap = 0;
}

static void mpi_abort(const char *msg)
{
    fprintf(stderr, "nnc: rank %d: %s\n", rank_, msg);
    fflush(stderr);
    GUARD(MPI_Abort(MPI_COMM_WORLD, 1));
}

// Answers the liveness pings of peers that are themselves stuck waiting.
static void answer_pings(void)
{
    int flag = 1;
    while (flag) {
        MPI_Status s;
        GUARD(MPI_Iprobe(MPI_ANY_SOURCE, TAG_PING, MPI_COMM_WORLD, &flag, &s));
        if (!flag)
            break;
        int v;
        GUARD(MPI_Recv(&v, 1, MPI_INT, s.MPI_SOURCE, TAG_PING, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        GUARD(MPI_Send(&rank_, 1, MPI_INT, s.MPI_SOURCE, TAG_PONG, MPI_COMM_WORLD));
    }
}

// The deadline passed in `what`: asks every peer whether it is alive (for up
// to half the timeout, while still testing req) and fills alive[]. Returns
// the number of silent peers, or -1 if req completed meanwhile.
static int ping_peers(MPI_Request *req, bool *alive)
{
    int n = size_;
    MPI_Request *rq = calloc((size_t)2 * (size_t)n, sizeof *rq);
    int *pong = calloc((size_t)n, sizeof *pong);
    if (!rq || !pong) {
        mpi_abort("out of memory while checking for unresponsive ranks");
        return 0;
    }
    for (int p = 0; p < n; p++) {
        rq[p] = rq[n + p] = MPI_REQUEST_NULL;
        alive[p] = p == rank_;
        if (p == rank_)
            continue;
        GUARD(MPI_Isend(&rank_, 1, MPI_INT, p, TAG_PING, MPI_COMM_WORLD, &rq[p]));
        GUARD(MPI_Irecv(&pong[p], 1, MPI_INT, p, TAG_PONG, MPI_COMM_WORLD, &rq[n + p]));
    }
    double grace = timeout_s / 2 < 1 ? 1 : timeout_s / 2, t0 = now();
    int missing = n - 1, done = 0;
    while (missing > 0 && !done && now() - t0 < grace) {
        answer_pings();
        GUARD(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        missing = 0;
        for (int p = 0; p < n; p++) {
            int got = 0;
            if (!alive[p])
                GUARD(MPI_Test(&rq[n + p], &got, MPI_STATUS_IGNORE));
            alive[p] = alive[p] || got;
            missing += !alive[p];
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    // When the wait goes on, no request may outlive pong[]: an unanswered
    // ping's pong is cancelled (a late one stays queued and answers the next
    // ping), and a ping still being sent is left to complete (rank_ is static).
    for (int p = 0; p < n; p++) {
        if (rq[p] != MPI_REQUEST_NULL)
            GUARD(MPI_Request_free(&rq[p]));
        if (rq[n + p] != MPI_REQUEST_NULL) {
            GUARD(MPI_Cancel(&rq[n + p]));
            GUARD(MPI_Wait(&rq[n + p], MPI_STATUS_IGNORE));
        }
    }
    free(rq);
    free(pong);
    return done ? -1 : missing;
}

// Ends the job: `what` did not complete; alive[] says who answered.
static void unresponsive(const char *what, const bool *alive, int missing, double waited)
{
    char msg[512];
    int k = snprintf(msg, sizeof msg, "error: %s did not complete within %.0f s; ", what,
                     waited);
    if (missing == 0)
        snprintf(msg + k, sizeof msg - (size_t)k, "every rank answers, but some rank never "
                 "reached it (a rank ran a different number of steps?)");
    for (int p = 0, shown = 0; p < size_ && missing > 0 && k < (int)sizeof msg; p++) {
        if (alive[p])
            continue;
        k += snprintf(msg + k, sizeof msg - (size_t)k, "%s%d", shown++ ? ", " : "rank ", p);
        if (shown == missing)
            snprintf(msg + k, sizeof msg - (size_t)k, " stopped responding (stopped, hung or "
                     "dead); ending every rank");
    }
    mpi_abort(msg);
}

// Completes req, polling so that peers' pings are answered and a dead or
// stopped peer ends the job instead of hanging it. When every peer answers at
// the deadline, one of them may only be late (a slow first compile on a
// loaded machine): req gets one more timeout before the job ends.
static void wait_req(MPI_Request *req, const char *what)
{
    double t0 = now();
    bool extended = false;
    for (long spins = 0;; spins++) {
        int done = 0;
        GUARD(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done)
            return;
        answer_pings();
        // Spin briefly (a peer a few microseconds behind), then sleep between
        // polls, 10 us doubling to 200 us: a rank waiting for a slower or
        // descheduled peer leaves the core to it instead of burning it.
        if (spins >= 1024) {
            long ns = 10000L << (spins - 1024 < 4 ? spins - 1024 : 4);
            nanosleep(&(struct timespec){0, ns}, NULL);
        }
        if ((spins & 63) != 63 || now() - t0 <= timeout_s)
            continue;
        bool *alive = calloc((size_t)size_, sizeof *alive);
        if (!alive) {
            mpi_abort("out of memory while checking for unresponsive ranks");
            return;
        }
        int missing = ping_peers(req, alive);
        if (missing < 0 || (missing == 0 && !extended)) {
            free(alive);
            if (missing < 0)
                return;
            extended = true;
            t0 = now();
            continue;
        }
        unresponsive(what, alive, missing, extended ? 2 * timeout_s : timeout_s);
        free(alive);
    }
}

static int find(const float *acc)
{
    for (int i = 0; i < npend; i++)
        if (accs[i] == acc)
            return i;
    return -1;
}

static void grad_start(float *acc, int64_t n)
{
    double t0 = stat_now();
    if (n > 0x7fffffff)
        mpi_abort("error: a gradient of more than 2^31 values is too large for one all-reduce");
    if (npend == cap) {
        cap = cap ? 2 * cap : 64;
        const float **a = realloc(accs, (size_t)cap * sizeof *a);
        accs = a ? a : accs;
        MPI_Request *r = a ? realloc(reqs, (size_t)cap * sizeof *r) : NULL;
        reqs = r ? r : reqs;
        if (!a || !r)
            mpi_abort("error: out of memory for gradient all-reduce requests");
    }
    int i = npend++;
    accs[i] = acc;
    GUARD(MPI_Iallreduce(MPI_IN_PLACE, acc, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &reqs[i]));
    stats->buckets++;
    stats->bytes += n * (int64_t)sizeof(float);
    // NNC_MPI_OVERLAP=0 measures the all-reduce with nothing hidden.
    static int overlap = -1;
    if (overlap < 0)
        overlap = !getenv("NNC_MPI_OVERLAP") || atoi(getenv("NNC_MPI_OVERLAP")) != 0;
    if (!overlap)
        wait_req(&reqs[i], "the gradient all-reduce");
    stats->exposed_s += stat_now() - t0;
}

// Between kernels: one MPI call for every sum in flight (each MPI_Test would
// run Open MPI's progress engine once more). Complete ones stay listed, as
// MPI_REQUEST_NULL, until their GRAD_WAIT.
static void progress(void)
{
    if (npend == 0)
        return;
    double t0 = stat_now();
    int all = 0;
    GUARD(MPI_Testall(npend, reqs, &all, MPI_STATUSES_IGNORE));
    stats->exposed_s += stat_now() - t0;
}

static void grad_wait(const float *acc)
{
    double t0 = stat_now();
    int i = find(acc);
    if (i < 0) {
        mpi_abort("internal error: a gradient wait without its start");
        return;
    }
    if (reqs[i] != MPI_REQUEST_NULL)
        wait_req(&reqs[i], "the gradient all-reduce");
    npend--;
    accs[i] = accs[npend];
    reqs[i] = reqs[npend];
    stats->wait_s += stat_now() - t0;
    stats->exposed_s += stat_now() - t0;
}

static NnStatus sum(void *v, int n, MPI_Datatype t, const char *what)
{
    MPI_Request req;
    if (GUARD(MPI_Iallreduce(MPI_IN_PLACE, v, n, t, MPI_SUM, MPI_COMM_WORLD, &req)) != MPI_SUCCESS)
        return nnrt_fail(NN_ERR_RUNTIME, "MPI all-reduce of %s failed", what);
    wait_req(&req, what);
    return NN_OK;
}

static NnStatus sum_f64(double *v, int n, const char *what)
{
    return sum(v, n, MPI_DOUBLE, what);
}

static NnStatus sum_i64(int64_t *v, int n, const char *what)
{
    return sum(v, n, MPI_INT64_T, what);
}

static NnStatus check_hash(uint64_t h, const char *what)
{
    uint64_t *all = calloc((size_t)size_, sizeof *all);
    if (!all)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    MPI_Request req;
    GUARD(MPI_Iallgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD, &req));
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
    nnrt_dist_fail_together();
    return nnrt_fail(NN_ERR_RUNTIME, "rank%s %s compiled a different %s than rank 0 (hash "
                     "%016llx on rank %d, %016llx on rank 0): every rank must run the same script "
                     "with the same settings", bad > 1 ? "s" : "", list, what, h1, first, h0);
}

static const NnrtDistOps mpi_ops = {grad_start, grad_wait, progress, sum_f64, sum_i64,
                                     check_hash, mpi_abort, finalize};

bool nnrt_dist_built(void) { return true; }

NnStatus nnrt_dist_init(void)
{
    if (size_ > 1 || !launched())
        return NN_OK;
    // Open MPI's non-blocking all-reduce (coll/libnbc) takes a binomial tree
    // on few ranks: one rank receives and sums everything, then broadcasts.
    // The ring (reduce-scatter, then all-gather) splits the sum between the
    // ranks and moves each byte once: an in-place MPI_Iallreduce of the MLP's
    // 200k-float gradient over shared memory on 2 ranks took 0.12 ms with it
    // against 0.20 ms (best of 200; 0.023 against 0.042 ms at 32k floats, no
    // worse below). The user's own OMPI_MCA_ setting still wins.
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return nnrt_fail(NN_ERR_RUNTIME, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    const char *t = getenv("NNC_MPI_TIMEOUT");
    if (t) {
        char *end;
        double v = strtod(t, &end);
        if (end == t || *end || !(v > 0) || !isfinite(v))
            return nnrt_fail(NN_ERR_RUNTIME, "NNC_MPI_TIMEOUT='%s': expected a positive number of "
                             "seconds", t);
        timeout_s = v;
    }
    if (getenv("NNC_MPI_STATS") && !strcmp(getenv("NNC_MPI_STATS"), "cpu"))
        stat_clock = CLOCK_THREAD_CPUTIME_ID;
    if (size_ > 1)
        watch_start();
    // One rank under mpirun (-np 1) runs as a plain process, MPI started.
    stats = nnrt_dist_attach(size_ > 1 ? &mpi_ops : NULL, rank_, size_, finalize);
    return NN_OK;
}

#else // ---- no MPI in this build: one rank ----------------------------------

bool nnrt_dist_built(void) { return false; }
const char *nnrt_dist_library(void) { return "none"; }
NnStatus nnrt_dist_init(void) { return NN_OK; }

#endif
