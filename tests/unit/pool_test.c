// The thread pool: every ith in [0, nth) runs exactly once per dispatch, the
// caller is ith 0, dispatches do not overlap, nested runs go inline, the
// default pool can be resized, and side work runs each item once, mostly on
// spinning workers, all done when nnrt_pool_side_finish returns.
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "pool.h"

typedef struct Count {
    atomic_int hits[64];
    atomic_int nth_seen;
    int round;
    atomic_int round_seen[64];
    pthread_t caller;
    atomic_int caller_not_zero;
} Count;

static void count_task(void *arg, int ith, int nth)
{
    Count *c = arg;
    atomic_fetch_add(&c->hits[ith], 1);
    atomic_store(&c->nth_seen, nth);
    atomic_store(&c->round_seen[ith], c->round);
    if (ith == 0 && !pthread_equal(pthread_self(), c->caller))
        atomic_store(&c->caller_not_zero, 1);
}

static void check_pool(int nthreads, int rounds)
{
    NnrtPool p;
    cr_assert_eq(nnrt_pool_init(&p, nthreads), NN_OK);
    int nth = nnrt_pool_size(&p);
    cr_assert(nth >= 1 && nth <= 64);
    Count *c = calloc(1, sizeof *c);
    c->caller = pthread_self();
    for (int r = 0; r < rounds; r++) {
        c->round = r;
        nnrt_pool_run(&p, count_task, c);
        // All workers have finished this round when run returns.
        for (int i = 0; i < nth; i++)
            cr_assert_eq(atomic_load(&c->round_seen[i]), r, "thread %d missed round %d", i, r);
    }
    for (int i = 0; i < nth; i++)
        cr_assert_eq(atomic_load(&c->hits[i]), rounds, "ith %d ran %d times", i,
                     atomic_load(&c->hits[i]));
    for (int i = nth; i < 64; i++)
        cr_assert_eq(atomic_load(&c->hits[i]), 0);
    cr_assert_eq(atomic_load(&c->nth_seen), nth);
    cr_assert_eq(atomic_load(&c->caller_not_zero), 0, "ith 0 must be the caller");
    free(c);
    nnrt_pool_fini(&p);
}

Test(pool, every_thread_once_per_dispatch)
{
    check_pool(1, 100);
    check_pool(2, 5000);
    check_pool(4, 300);  // more threads than cores: sleeping workers must wake
    check_pool(0, 500);  // all CPUs
}

// Slow, uneven tasks: a dispatch returns only after the slowest thread.
static void sum_task(void *arg, int ith, int nth)
{
    int64_t *out = arg;
    int64_t s = 0;
    for (int64_t i = ith; i < 2000000; i += nth)
        s += i % 7;
    for (volatile int spin = 0; spin < (ith + 1) * 10000; spin++)
        ;
    out[ith] = s;
}

Test(pool, waits_for_slowest)
{
    NnrtPool p;
    cr_assert_eq(nnrt_pool_init(&p, 3), NN_OK);
    for (int r = 0; r < 20; r++) {
        int64_t out[3] = {-1, -1, -1};
        nnrt_pool_run(&p, sum_task, out);
        int64_t total = out[0] + out[1] + out[2], want = 0;
        for (int64_t i = 0; i < 2000000; i++)
            want += i % 7;
        cr_assert_eq(total, want);
    }
    nnrt_pool_fini(&p);
}

typedef struct Nest {
    NnrtPool *p;
    atomic_int inner;
} Nest;

static void inner_task(void *arg, int ith, int nth)
{
    Nest *n = arg;
    cr_assert_eq(ith, 0);
    cr_assert_eq(nth, 1);
    atomic_fetch_add(&n->inner, 1);
}

static void outer_task(void *arg, int ith, int nth)
{
    Nest *n = arg;
    nnrt_pool_run(n->p, inner_task, n);
}

Test(pool, nested_run_goes_inline)
{
    NnrtPool p;
    cr_assert_eq(nnrt_pool_init(&p, 2), NN_OK);
    Nest n = {&p, 0};
    nnrt_pool_run(&p, outer_task, &n);
    cr_assert_eq(atomic_load(&n.inner), 2);
    nnrt_pool_fini(&p);
}

Test(pool, default_pool_resizes)
{
    NnrtPool *d = nnrt_pool_default();
    cr_assert_not_null(d);
    cr_assert_geq(nnrt_pool_size(d), 1);
    cr_assert_eq(nnrt_pool_set_threads(3), NN_OK);
    cr_assert_eq(nnrt_pool_size(nnrt_pool_default()), 3);
    Count *c = calloc(1, sizeof *c);
    c->caller = pthread_self();
    nnrt_pool_run(nnrt_pool_default(), count_task, c);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(atomic_load(&c->hits[i]), 1);
    free(c);
    cr_assert_eq(nnrt_pool_set_threads(1), NN_OK);
    cr_assert_eq(nnrt_pool_size(nnrt_pool_default()), 1);
    nnrt_pool_run(NULL, inner_task, &(Nest){NULL, 0}); // a NULL pool runs serially
}

typedef struct Side {
    pthread_t caller;
    atomic_int done[2000];
    atomic_int by_worker;
} Side;

// A few microseconds of work, then the item's mark.
static void side_item(void *arg, int64_t i)
{
    Side *s = arg;
    volatile double x = 0;
    for (int k = 0; k < 2000; k++)
        x += k;
    if (!pthread_equal(pthread_self(), s->caller))
        atomic_fetch_add(&s->by_worker, 1);
    atomic_fetch_add(&s->done[i], 1);
}

static void noop_task(void *arg, int ith, int nth)
{
    (void)arg;
    (void)ith;
    (void)nth;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void check_side(int nthreads, bool wait_for_workers)
{
    NnrtPool p;
    cr_assert_eq(nnrt_pool_init(&p, nthreads), NN_OK);
    Side *s = calloc(1, sizeof *s);
    s->caller = pthread_self();
    NnrtSide job;
    for (int round = 0; round < 3; round++) {
        memset(s->done, 0, sizeof s->done);
        nnrt_pool_run(&p, noop_task, NULL); // the workers spin after a task
        nnrt_pool_side_post(&p, &job, side_item, s, 2000);
        // Workers that slept (a loaded machine) are woken by the next task.
        for (double end = now_s() + 5; wait_for_workers && atomic_load(&job.next) < 2000 &&
                                       now_s() < end;)
            nnrt_pool_run(&p, noop_task, NULL);
        nnrt_pool_side_finish(&p, &job);
        for (int i = 0; i < 2000; i++)
            cr_assert_eq(atomic_load(&s->done[i]), 1, "round %d: item %d ran %d times", round,
                         i, atomic_load(&s->done[i]));
    }
    if (nthreads > 1 && wait_for_workers)
        cr_expect_gt(atomic_load(&s->by_worker), 0, "no item ran on a worker");
    if (nthreads == 1)
        cr_expect_eq(atomic_load(&s->by_worker), 0);
    free(s);
    nnrt_pool_fini(&p);
}

Test(pool, side_work_runs_each_item_once)
{
    check_side(1, false); // no workers: the caller runs everything in finish
    check_side(2, true);
    check_side(3, true);
    check_side(2, false); // finish while the workers are at it
}
