// Data-parallel training over MPI: the only code that calls MPI (dist.c).
// Under mpirun every rank holds the whole model and trains on its slice of
// each global batch; the compiled step averages gradients through the
// nnrt_dist_grad_* calls that GRAD_START / GRAD_WAIT kernels make. Without
// mpirun, or in a build without MPI (NN_WITH_MPI unset), there is one rank and
// every call here is a cheap no-op, so a single process runs exactly as before.
// Waits never block forever: a peer that stops answering ends every rank
// through MPI_Abort with a message naming it (NNC_MPI_TIMEOUT seconds, 60).
#ifndef NNRT_DIST_H
#define NNRT_DIST_H

#include "nnrt.h"

// Starts MPI when the process runs under mpirun (Open MPI's or a PMI
// launcher's variables are set); otherwise stays at one rank. Idempotent.
NnStatus nnrt_dist_init(void);
// Ends MPI cleanly (every rank must call it); prints NNC_MPI_STATS on rank 0.
void nnrt_dist_finalize(void);
// Ends every rank now with msg on stderr (exit status 1). For a failure that
// other ranks cannot learn of through a collective (one rank's error while the
// others wait for it); a no-op with one rank.
void nnrt_dist_abort(const char *msg);

// Marks a failure every rank meets at the same point (a mismatch found by a
// collective, a diverged global loss): the ranks may then end normally.
void nnrt_dist_fail_together(void);
bool nnrt_dist_failed_together(void);

// Ranks the launcher started (OMPI_COMM_WORLD_SIZE, PMI_SIZE), read without
// starting MPI: 1 without mpirun. For programs that cannot run as ranks.
int nnrt_dist_launched_ranks(void);

bool nnrt_dist_built(void);           // MPI compiled in
const char *nnrt_dist_library(void);  // "Open MPI v4.1.4, ..." or "none"
int nnrt_dist_rank(void);             // 0..size-1
int nnrt_dist_size(void);             // 1 without mpirun

// This rank's rows [*lo, *hi) of n: contiguous, sizes differ by at most one.
void nnrt_dist_slice(int64_t n, int64_t *lo, int64_t *hi);
// This rank's share of the next step's global batch (its rows / all rows):
// gradients are weighted by it before they are summed over ranks.
void nnrt_dist_set_weight(double w);

// Called by generated code (an ABI, like nnrt.h). grad_start: acc := g * weight
// (n floats), then starts summing acc over the ranks in place; grad_wait:
// completes that sum (polling against the deadline) and copies it to out.
// progress lets pending sums advance between kernels.
void nnrt_dist_grad_start(const float *g, float *acc, int64_t n);
void nnrt_dist_grad_wait(const float *acc, float *out, int64_t n);
void nnrt_dist_progress(void);

// The sharded update (ZeRO stage 1; runtime/step.c, docs/scaling.md). Rank r
// of K owns elements [lo, hi) of a tensor of `total` elements that a kernel
// splits in blocks of `align` (nnrt_dist_range: the split a kernel run as
// thread r of K makes, so running the update kernels as (r, K) computes
// exactly the owned elements). nnrt_dist_shard_next makes the next
// grad_start a reduce-scatter: only the owned elements of its buffer receive
// the sum (the others keep this rank's own weighted gradient). After the
// update kernels, nnrt_dist_gather_start starts the all-gather of an updated
// parameter in place (each rank sends its owned elements);
// nnrt_dist_gather_wait completes them all (the step's end). Optimizer state
// stays owned in part: nnrt_dist_note_state records such a variable and
// nnrt_dist_gather_state (every rank, between steps) makes it whole again for
// checkpoints and snapshots. With one rank all of these are no-ops.
void nnrt_dist_range(int64_t total, int64_t align, int rank, int64_t *lo, int64_t *hi);
void nnrt_dist_shard_next(int64_t align);
void nnrt_dist_gather_start(float *buf, int64_t n, int64_t align);
void nnrt_dist_gather_wait(void);
void nnrt_dist_note_state(NnTensor *t, int64_t align);
NnStatus nnrt_dist_gather_state(void);
void nnrt_dist_state_reset(void); // forgets the noted variables (a new run)
// Whether steps compiled now shard their update: several ranks, and not
// turned off by NNC_MPI_SHARD=0.
bool nnrt_dist_sharding(void);

// Blocking sums over ranks, with the deadline. what names it in messages.
NnStatus nnrt_dist_sum_f64(double *v, int n, const char *what);
NnStatus nnrt_dist_sum_i64(int64_t *v, int n, const char *what);
// Start-up check that every rank compiled the same step with the same
// settings: a mismatch fails on every rank with a message naming the ranks.
NnStatus nnrt_dist_check_hash(uint64_t h, const char *what);
// The hash those checks use: FNV-1a of n bytes at p, continuing from h
// (start from NNRT_FNV_SEED). nnc and built programs must agree on it.
#define NNRT_FNV_SEED 0xcbf29ce484222325ull
uint64_t nnrt_fnv1a(uint64_t h, const void *p, size_t n);

// Accumulated per process: gradient all-reduce calls, bytes, and the time
// spent inside MPI for them (exposed: not hidden behind computation).
typedef struct NnrtDistStats {
    int64_t steps, buckets, bytes;
    int64_t in_place; // buckets summed in the gradient's own buffer (no copies)
    double exposed_s; // in grad_start, progress and grad_wait
    double wait_s;    // of which blocked in grad_wait and nnrt_dist_gather_wait
    int64_t scattered;    // buckets reduce-scattered (the sharded update)
    double sum_s;         // of exposed_s: adding the peers' parts (the arithmetic)
    int64_t gathers, gather_bytes; // parameters all-gathered after their update
    double gather_s;      // inside MPI for them (in exposed_s too)
    double gather_wait_s; // of which blocked in nnrt_dist_gather_wait (in wait_s too)
} NnrtDistStats;
void nnrt_dist_stats(NnrtDistStats *s);
void nnrt_dist_step_done(void); // counts a step (the training loop calls it)

#endif
