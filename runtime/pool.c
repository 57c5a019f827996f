// The thread pool behind every parallel kernel (see pool.h). A dispatch bumps a
// generation counter; workers that are spinning see it at once, sleeping ones are
// woken through the condition variable. Completion is a countdown of the workers
// still running; the caller spins on it briefly, then sleeps. Invariant: at most
// one task is in flight per pool (`busy`), and fn/arg never change while it runs.
// While they spin, workers also take items of posted side work (nnrt_pool_side_post).
#define _GNU_SOURCE // sched_getcpu
#include "pool.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct NnrtWorker {
    pthread_t th;
    NnrtPool *pool;
    int ith;
};

// How long a thread spins before it sleeps: long enough to catch the next
// parallel kernel of a graph (serial kernels run in between), short enough not
// to burn a shared CPU for long. Waking a sleeping thread can cost hundreds of
// microseconds on a virtual machine, so this errs on the long side.
#define SPIN_NS 1000000L

// What a spin does between two reads of the flag it waits for. Not x86's
// PAUSE: on a virtual machine a run of PAUSEs longer than the hypervisor's
// pause-loop window (KVM's default 4096 cycles, about 1.4 us here) exits to
// the host, which may run something else on that CPU, so the worker waiting
// between two batch-1 predictions (about 1 us apart) sometimes started
// microseconds late. Reading the flag without PAUSE, the 2-thread prediction's
// typical call (its 10th percentile) was 0.2-0.3 us faster and its tail
// shorter (docs/threads.md, "Batch-1 inference: the spin, the shared
// core, the library's step").
// A compiler barrier only, so the loop still re-reads memory.
static inline void cpu_relax(void)
{
#if defined(__aarch64__)
    __asm__ __volatile__("yield");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

// Spins between two sched_yield calls (the lowest bits of the spin count):
// without PAUSE a spin is a few nanoseconds, so 4096 of them are a few
// microseconds, about what 256 spins with PAUSE took.
#define SPINS_PER_YIELD 4096u
#define BARRIER_SPINS_PER_YIELD 1024u

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

// One item of the posted side work, if any is left. A worker announces itself
// in side_users before it reads `side`, and nnrt_pool_side_finish clears
// `side` before it reads side_users (both sequentially consistent), so the
// caller never reuses a job a worker still holds.
static void side_step(NnrtPool *p)
{
    if (!atomic_load_explicit(&p->side, memory_order_relaxed))
        return;
    atomic_fetch_add(&p->side_users, 1);
    NnrtSide *s = atomic_load(&p->side);
    if (s) {
        int64_t i = atomic_fetch_add(&s->next, 1);
        // The last item taken, later spins need not touch the counters. The
        // job cannot be posted again meanwhile: finish waits for us.
        NnrtSide *posted = s;
        if (i >= s->n - 1)
            atomic_compare_exchange_strong(&p->side, &posted, NULL);
        if (i < s->n)
            s->fn(s->arg, i);
    }
    atomic_fetch_sub(&p->side_users, 1);
}

// Spins while *v == old, doing p's side work meanwhile, for at most SPIN_NS;
// true if it changed.
static bool spin_while_uint(NnrtPool *p, atomic_uint *v, unsigned old)
{
    int64_t end = 0;
    for (unsigned i = 0; atomic_load(v) == old; i++) {
        side_step(p);
        cpu_relax();
        if ((i & (SPINS_PER_YIELD - 1)) == SPINS_PER_YIELD - 1) {
            sched_yield(); // let other runnable threads in when cores are shared
            int64_t t = now_ns();
            if (!end)
                end = t + SPIN_NS;
            else if (t > end)
                return false;
        }
    }
    return true;
}

// Spins while *v > 0, for at most SPIN_NS; true if it reached 0.
static bool spin_while_pos(atomic_int *v)
{
    int64_t end = 0;
    for (unsigned i = 0; atomic_load(v) > 0; i++) {
        cpu_relax();
        if ((i & (SPINS_PER_YIELD - 1)) == SPINS_PER_YIELD - 1) {
            sched_yield(); // let other runnable threads in when cores are shared
            int64_t t = now_ns();
            if (!end)
                end = t + SPIN_NS;
            else if (t > end)
                return false;
        }
    }
    return true;
}

void nnrt_pool_side_post(NnrtPool *p, NnrtSide *s, void (*fn)(void *, int64_t), void *arg,
                         int64_t n)
{
    s->fn = fn;
    s->arg = arg;
    s->n = n;
    atomic_store(&s->next, 0);
    if (p && p->workers)
        atomic_store(&p->side, s);
}

void nnrt_pool_side_finish(NnrtPool *p, NnrtSide *s)
{
    if (p && p->workers)
        atomic_store(&p->side, NULL);
    for (int64_t i; (i = atomic_fetch_add(&s->next, 1)) < s->n;)
        s->fn(s->arg, i);
    // Rarely more than one row's copy: a worker finishes the item it holds.
    if (p && p->workers)
        while (atomic_load(&p->side_users) > 0)
            cpu_relax();
}

static void *worker_main(void *vp)
{
    NnrtWorker *w = vp;
    NnrtPool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        if (!spin_while_uint(p, &p->gen, seen)) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen) {
                p->sleepers++;
                pthread_cond_wait(&p->wake, &p->mu);
                p->sleepers--;
            }
            pthread_mutex_unlock(&p->mu);
        }
        seen = atomic_load(&p->gen);
        if (atomic_load(&p->quit))
            break;
        p->fn(p->arg, w->ith, p->nthreads);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            if (p->caller_waits)
                pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

NnStatus nnrt_pool_init(NnrtPool *p, int nthreads)
{
    memset(p, 0, sizeof *p);
    p->nthreads = nthreads > 0 ? nthreads : online_cpus();
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (p->nthreads == 1)
        return NN_OK;
    p->workers = calloc((size_t)p->nthreads - 1, sizeof *p->workers);
    if (!p->workers) {
        p->nthreads = 1;
        return nnrt_fail(NN_ERR_NOMEM, "out of memory starting %d threads", nthreads);
    }
    for (int i = 0; i < p->nthreads - 1; i++) {
        p->workers[i].pool = p;
        p->workers[i].ith = i + 1;
        if (pthread_create(&p->workers[i].th, NULL, worker_main, &p->workers[i]) != 0) {
            int started = i;
            p->nthreads = started + 1; // stop exactly the workers that started
            nnrt_pool_fini(p);
            return nnrt_fail(NN_ERR_RUNTIME, "cannot start thread %d of the pool", i + 1);
        }
    }
    return NN_OK;
}

void nnrt_pool_fini(NnrtPool *p)
{
    if (p->workers) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->quit, true);
        atomic_fetch_add(&p->gen, 1);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->nthreads - 1; i++)
            pthread_join(p->workers[i].th, NULL);
        free(p->workers);
    }
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    memset(p, 0, sizeof *p);
    p->nthreads = 1;
}

void nnrt_pool_run(NnrtPool *p, NnrtTask fn, void *arg)
{
    if (!p || p->nthreads <= 1 || atomic_exchange(&p->busy, true)) {
        fn(arg, 0, 1); // serial pool, or a run nested inside a task
        return;
    }
    if (p->fn != fn || p->arg != arg) { // the same task again (a prediction) leaves them be
        p->fn = fn;
        p->arg = arg;
    }
    atomic_store(&p->pending, p->nthreads - 1);
    // The bump before the lock, so that spinning workers start without
    // waiting for it. No wake-up is lost: a worker checks gen under the lock
    // before it counts itself a sleeper and waits, and we read sleepers under
    // the lock after the bump.
    atomic_fetch_add(&p->gen, 1);
    pthread_mutex_lock(&p->mu);
    if (p->sleepers)
        pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    fn(arg, 0, p->nthreads);

    if (!spin_while_pos(&p->pending)) {
        pthread_mutex_lock(&p->mu);
        p->caller_waits = true;
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        p->caller_waits = false;
        pthread_mutex_unlock(&p->mu);
    }
    atomic_store(&p->busy, false);
}

void nnrt_barrier_wait(NnrtBarrier *b, int nth)
{
    unsigned phase = atomic_load(&b->phase);
    if (atomic_fetch_add(&b->count, 1) == nth - 1) {
        atomic_store(&b->count, 0); // before the bump: nobody arrives again until it
        atomic_fetch_add(&b->phase, 1);
        return;
    }
    // No time limit: the other threads are inside the same task, never asleep.
    for (unsigned i = 0; atomic_load(&b->phase) == phase; i++) {
        cpu_relax();
        if ((i & (BARRIER_SPINS_PER_YIELD - 1)) == BARRIER_SPINS_PER_YIELD - 1)
            sched_yield(); // let the thread we wait for in when cores are shared
    }
}

int nnrt_cpu_now(void)
{
#ifdef __linux__
    return sched_getcpu();
#else
    return -1;
#endif
}

static NnrtPool default_pool;
static int default_threads = -1; // -1: not started
static pthread_mutex_t default_mu = PTHREAD_MUTEX_INITIALIZER;

static void start_default(int n)
{
    if (nnrt_pool_init(&default_pool, n) != NN_OK)
        nnrt_pool_init(&default_pool, 1); // cannot fail: no threads to start
    default_threads = n;
}

NnrtPool *nnrt_pool_default(void)
{
    pthread_mutex_lock(&default_mu);
    if (default_threads < 0) {
        const char *env = getenv("NN_THREADS");
        int n = env ? atoi(env) : 0;
        start_default(n > 0 ? n : 0);
    }
    pthread_mutex_unlock(&default_mu);
    return &default_pool;
}

NnrtPool *nnrt_pool_default_started(void)
{
    pthread_mutex_lock(&default_mu);
    NnrtPool *p = default_threads >= 0 ? &default_pool : NULL;
    pthread_mutex_unlock(&default_mu);
    return p;
}

NnStatus nnrt_pool_set_threads(int n)
{
    NnStatus st = NN_OK;
    pthread_mutex_lock(&default_mu);
    if (n < 0)
        n = 0;
    if (default_threads != n) {
        if (default_threads >= 0)
            nnrt_pool_fini(&default_pool);
        st = nnrt_pool_init(&default_pool, n);
        if (st != NN_OK)
            nnrt_pool_init(&default_pool, 1);
        default_threads = n;
    }
    pthread_mutex_unlock(&default_mu);
    return st;
}
