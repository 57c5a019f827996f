// A small persistent thread pool. nnrt_pool_run(p, fn, arg) calls fn(arg, ith, nth)
// once for every ith in [0, nth) (the calling thread runs ith 0) and returns when
// all calls have returned. Workers spin briefly after a task, then sleep on a
// condition variable, so back-to-back dispatches cost microseconds.
// Kernels split their own work by (ith, nth); the pool only dispatches and waits.
// A run issued from inside a running task executes inline as (ith 0, nth 1).
#ifndef NNRT_POOL_H
#define NNRT_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nnrt.h"

typedef void (*NnrtTask)(void *arg, int ith, int nth);

typedef struct NnrtWorker NnrtWorker;

// Side work: items 0..n-1 of fn that the workers take one at a time while they
// spin waiting for the next task (the next batch's rows while a step's serial
// kernels run on the caller), so it needs no thread of its own competing for
// the cores. One item is short, so a worker that gets a task is back within
// one item. Caller-owned; posted with nnrt_pool_side_post, reusable after
// nnrt_pool_side_finish.
typedef struct NnrtSide {
    void (*fn)(void *arg, int64_t item);
    void *arg;
    int64_t n;
    atomic_int_fast64_t next; // the next item to claim
} NnrtSide;

typedef struct NnrtPool {
    int nthreads;         // >= 1, counting the caller
    NnrtWorker *workers;  // nthreads - 1 of them; NULL when nthreads == 1
    pthread_mutex_t mu;
    pthread_cond_t wake;  // workers sleep here between tasks
    pthread_cond_t done;  // the caller sleeps here while a task runs
    NnrtTask fn;          // the current task; written before gen is bumped
    void *arg;
    atomic_uint gen;      // bumped once per dispatch; workers run when it changes
    atomic_bool quit;     // set with a gen bump: workers exit
    // What the caller writes at every dispatch before the bump is not on gen's
    // line: each such store would take the line from a spinning worker, which
    // then fetches it again, and the bump waits for both transfers.
    char gen_pad[64];
    atomic_int pending;   // workers still running the current task
    int sleepers;         // workers waiting on `wake` (under mu)
    bool caller_waits;    // the caller waits on `done` (under mu)
    atomic_bool busy;     // a task is running: nested runs go inline
    char side_pad[64];        // workers write side_users as they spin: not on gen's line
    _Atomic(NnrtSide *) side; // posted side work; NULL: none
    atomic_int side_users;    // workers inside side work (they hold `side`)
} NnrtPool;

// nthreads 0 = the number of online CPUs. NN_ERR_RUNTIME if threads cannot start.
NnStatus nnrt_pool_init(NnrtPool *p, int nthreads);
void nnrt_pool_fini(NnrtPool *p);
void nnrt_pool_run(NnrtPool *p, NnrtTask fn, void *arg);
static inline int nnrt_pool_size(const NnrtPool *p) { return p ? p->nthreads : 1; }

// A spin barrier for the nth threads of one task, which meet at it between
// phases (step.c's few-rows runs). Zeroed before the task; each wait returns
// once all nth threads have reached it. Spinning, not sleeping: the phases
// are microseconds long and every thread of a task is running.
typedef struct NnrtBarrier {
    atomic_int count;  // threads arrived at the current wait
    atomic_uint phase; // bumped by the last one to arrive
} NnrtBarrier;
void nnrt_barrier_wait(NnrtBarrier *b, int nth);

// The CPU the calling thread runs on now, or -1 where the system does not say.
int nnrt_cpu_now(void);

// The process-wide pool, started on first use with nnrt_pool_set_threads' count
// (default 0 = all CPUs, or the NN_THREADS environment variable). Never NULL.
NnrtPool *nnrt_pool_default(void);
// Restarts the default pool with n threads (0 = all CPUs). Must not be called
// while a task runs on it.
NnStatus nnrt_pool_set_threads(int n);
// The default pool if it has started, else NULL (never starts it).
NnrtPool *nnrt_pool_default_started(void);

// Offers s's items to p's spinning workers. At most one side job per pool at
// a time; s->fn must not run pool tasks. A pool without workers takes none.
void nnrt_pool_side_post(NnrtPool *p, NnrtSide *s, void (*fn)(void *, int64_t), void *arg,
                         int64_t n);
// Withdraws s, runs on the caller every item no worker took, and returns when
// the workers' items are done too (their writes visible to the caller).
void nnrt_pool_side_finish(NnrtPool *p, NnrtSide *s);

#endif
