// Runs a step descriptor (step.h): points each slot at the workspace, the
// caller's tensors or the scratch block, runs the kernels in order (large ones
// over the pool), turns a recorded bad label into a message, then hands back
// the outputs and applies the updates from pre-update values. The JIT and
// built programs both run their steps here.
//
// Updates swap instead of copying: the value of an update that a kernel
// computes gets a buffer of its own (not the shared workspace), and applying
// the update trades it with the variable's buffer. Copying them back cost a
// read and a write of every parameter and optimizer moment per step (for the
// Fashion-MNIST MLP under Adam, 2.8 MB: about 7% of a step on one core).
//
// Updates in place: where the compiler found that the kernel computing an
// update reads the variable only at the element it writes and nothing reads
// the variable afterwards (NnrtStepUpdate.in_place), the kernel writes the
// new value straight into the variable's buffer. Besides the swap, this
// halves the memory the update streams through (w, m, v instead of w, m, v
// and w', m', v': 4.8 -> 2.4 MB for the MLP's first layer under Adam, which
// then fits the two cores' L2s) and the next forward finds the new weights
// where the update left them. A step stays all or nothing: its label checks
// are read before the first kernel that writes in place (the compiler admits
// no check from that kernel on), and a failing step stops there. Not in
// place: under MPI ranks (their gathers write the update's buffer), in a
// few-rows run (one dispatch: no place to check between kernels), where the
// update part would run in the lanes, and with NN_STEP_INPLACE=0.
//
// A step cut into lanes (step.h, NnrtStepCut) splits a large enough batch
// across the pool's threads for the whole per-row part: one pool dispatch runs
// every lane's kernels on its rows (no barrier between kernels), the cut
// gradients are summed over lanes by elements, and the update part runs once
// on lane 0's memory with its kernels split over the pool as before.
#include "step.h"

#include "dist.h"
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void prof_print(NnrtStepRun *r);
static void few_free(struct NnrtFewTask *t);
enum { PROF_THREADS = 64, PROF_STEPS = 4096 }; // NN_STEP_PROFILE (below)

static bool is_source(int kind) { return kind == NNRT_SLOT_INPUT || kind == NNRT_SLOT_VAR; }

// Bytes of t with the batch (if it has one) at n.
static size_t type_bytes(const NnrtStepTensor *t, int64_t n)
{
    size_t b = nnrt_dtype_size((NnDType)t->dtype);
    for (int d = 0; d < t->rank; d++)
        b *= (size_t)(t->dims[d] == NNRT_DIM_BATCH ? n : t->dims[d]);
    return b;
}

static bool has_batch(const NnrtStep *d)
{
    for (int k = 0; k < d->ninputs; k++)
        if (d->inputs[k].rank > 0 && d->inputs[k].dims[0] == NNRT_DIM_BATCH)
            return true;
    return false;
}

// Sizes r's memory for batch n (grown, never shrunk) and points the slots and
// output headers at it.
// Whether update k's value can live in a buffer of its own that trades places
// with the variable's: a workspace value that no other update takes (two
// variables must never share a buffer) and of the variable's size.
static bool swappable(const NnrtStep *d, int k)
{
    const NnrtStepUpdate *u = &d->updates[k];
    if (d->slots[u->slot].kind != NNRT_SLOT_WORKSPACE)
        return false;
    for (int j = 0; j < d->nupdates; j++)
        if (j != k && d->updates[j].slot == u->slot)
            return false;
    return true;
}

// Which kernel writes an update in place in this run (ip_first: the first,
// -1 for none), from the descriptor and the run's conditions (above).
static void in_place_plan(NnrtStepRun *r)
{
    const NnrtStep *d = r->d;
    int first = -1;
    // A run that may take the few-rows path (exec_few: one dispatch, no
    // place to check between kernels) keeps the swap, so that a batch of 4
    // (the XOR step) still runs as one dispatch on 2 threads.
    bool few = r->batch >= 1 && r->batch <= NNRT_FEW_ROWS && !r->few_off && d->ncuts == 0 &&
               has_batch(d);
    for (int k = 0; !few && !r->ip_off && nnrt_dist_size() <= 1 && k < d->nupdates; k++) {
        int at = d->updates[k].in_place - 1;
        if (at >= 0 && r->swap[k] && (first < 0 || at < first))
            first = at;
    }
    r->ip_first = first;
}

// Points each swappable update's slot at the variable's buffer (in place) or
// at its swap buffer, writing only where it changes (see attach).
static void update_bufs(NnrtStepRun *r)
{
    const NnrtStep *d = r->d;
    int n = 0;
    for (int k = 0; k < d->nupdates; k++) {
        const NnrtStepUpdate *u = &d->updates[k];
        if (!r->swap[k])
            continue;
        void *p = r->ip_first >= 0 && u->in_place && r->var[u->var] ? r->var[u->var]->data
                                                                    : r->swap[k];
        n += p != r->swap[k];
        if (r->bufs[u->slot] != p)
            r->bufs[u->slot] = p;
    }
    if (r->in_place != n)
        r->in_place = n;
}

static NnStatus place(NnrtStepRun *r, int64_t n)
{
    const NnrtStep *d = r->d;
    if (n > r->cap) {
        int64_t ws = d->workspace + d->workspace_rows * n;
        int64_t sc = d->scratch + d->scratch_rows * n;
        nnrt_free(r->ws);
        nnrt_free(r->scratch);
        r->ws = r->scratch = NULL;
        r->cap = -1; // until every buffer is there
        if ((ws && !(r->ws = nnrt_alloc((size_t)ws))) ||
            (sc && !(r->scratch = nnrt_alloc((size_t)sc))))
            return NN_ERR_NOMEM;
        for (int k = 0; k < d->noutputs; k++) {
            const NnrtStepTensor *o = &d->outputs[k];
            if (!is_source(d->slots[o->slot].kind))
                continue;
            size_t b = type_bytes(o, n);
            nnrt_free(r->outcopy[k]);
            if (!(r->outcopy[k] = nnrt_alloc(b ? b : 1)))
                return NN_ERR_NOMEM;
        }
        r->cap = n;
    }
    r->batch = n;
    for (int s = 0; s < d->nslots; s++) {
        const NnrtStepSlot *sl = &d->slots[s];
        if (sl->kind == NNRT_SLOT_WORKSPACE)
            r->bufs[s] = r->ws + sl->offset + sl->row_offset * n;
        else if (sl->kind == NNRT_SLOT_SCRATCH)
            r->bufs[s] = r->scratch;
        else if (sl->kind == NNRT_SLOT_ERRORS)
            r->bufs[s] = r->err;
        else if (sl->kind == NNRT_SLOT_BATCH)
            r->bufs[s] = &r->batch;
    }
    update_bufs(r);
    for (int k = 0; k < d->noutputs; k++) {
        const NnrtStepTensor *o = &d->outputs[k];
        NnTensor *t = &r->outs[k];
        *t = (NnTensor){.dtype = (NnDType)o->dtype, .rank = o->rank, .numel = 1};
        for (int i = 0; i < o->rank; i++)
            t->numel *= (t->shape[i] = o->dims[i] == NNRT_DIM_BATCH ? n : o->dims[i]);
        t->data = r->outcopy[k] ? r->outcopy[k] : r->bufs[o->slot];
    }
    return NN_OK;
}

NnStatus nnrt_step_open(NnrtStepRun *r, const NnrtStep *d)
{
    memset(r, 0, sizeof *r);
    r->d = d;
    r->bufs = calloc((size_t)d->nslots + 1, sizeof(void *));
    r->outs = calloc((size_t)d->noutputs + 1, sizeof(NnTensor));
    r->outcopy = calloc((size_t)d->noutputs + 1, sizeof(void *));
    r->snap = calloc((size_t)d->nupdates + 1, sizeof(void *));
    r->swap = calloc((size_t)d->nupdates + 1, sizeof(void *));
    r->var = calloc((size_t)d->nvars + 1, sizeof(NnTensor *));
    r->role = calloc((size_t)d->nkernels + 1, sizeof(int));
    r->cap = -1;
    r->lanes = 1;
    r->ip_first = -1;
    const char *ip = getenv("NN_STEP_INPLACE"); // 0: every update into its swap buffer
    r->ip_off = ip && *ip == '0';
    if (!r->bufs || !r->outs || !r->outcopy || !r->snap || !r->swap || !r->var || !r->role)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    for (int k = 0; k < d->ncuts; k++) {
        r->role[d->cuts[k].start] = k + 1;
        r->role[d->cuts[k].wait] = -(k + 1);
    }
    const char *pf = getenv("NN_STEP_PROFILE");
    if (pf && *pf == '1' && !(r->prof = calloc(PROF_STEPS, sizeof(double))))
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    r->min_rows = nnrt_lane_rows();
    const char *few = getenv("NN_STEP_FEW"); // 0: kernel by kernel at a few rows too
    r->few_off = few && *few == '0';
    const char *shared = getenv("NN_STEP_FEW_SHARED"); // 1: no fallback to the caller alone
    r->few_shared = shared && *shared == '1';
    if (!(r->err = nnrt_alloc(8 * ((size_t)d->nchecks + 1))))
        return NN_ERR_NOMEM;
    for (int k = 0; k < d->nupdates; k++) {
        const NnrtStepUpdate *u = &d->updates[k];
        size_t n = type_bytes(&d->vars[u->var], 0);
        if (is_source(d->slots[u->slot].kind) && !(r->snap[k] = nnrt_alloc(n ? n : 1)))
            return NN_ERR_NOMEM;
        if (swappable(d, k)) {
            if (!(r->swap[k] = nnrt_alloc(n ? n : 1)))
                return NN_ERR_NOMEM;
            r->bufs[u->slot] = r->swap[k];
        }
    }
    // A step without a batch gets all its memory now; one with a batch at its first run.
    return has_batch(d) ? NN_OK : place(r, 0);
}

void nnrt_step_close(NnrtStepRun *r)
{
    if (!r->d)
        return;
    prof_print(r);
    free(r->prof);
    for (int i = 0; i < r->nlane_runs; i++)
        nnrt_step_close(&r->lane[i]);
    free(r->lane);
    free(r->lo);
    for (int k = 0; r->lout && k < r->d->noutputs; k++)
        nnrt_free(r->lout[k]);
    free(r->lout);
    free(r->role);
    few_free(r->few);
    for (int k = 0; r->outcopy && k < r->d->noutputs; k++)
        nnrt_free(r->outcopy[k]);
    for (int k = 0; r->snap && k < r->d->nupdates; k++)
        nnrt_free(r->snap[k]);
    for (int k = 0; r->swap && k < r->d->nupdates; k++)
        nnrt_free(r->swap[k]);
    nnrt_free(r->ws);
    nnrt_free(r->scratch);
    nnrt_free(r->err);
    free(r->bufs);
    free(r->outs);
    free(r->outcopy);
    free(r->snap);
    free(r->swap);
    free(r->var);
    memset(r, 0, sizeof *r);
}

const char *nnrt_tensor_type_str(const NnTensor *t, char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n, "%s", nnrt_dtype_name(t->dtype));
    for (int i = 0; i < t->rank && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "[",
                                (long long)t->shape[i]);
    if (t->rank && len < n)
        snprintf(buf + len, n - len, "]");
    return buf;
}

// Whether t has want's type with the batch (if want has one) at n.
static bool same_type(const NnrtStepTensor *want, const NnTensor *t, int64_t n)
{
    if (t->dtype != (NnDType)want->dtype || t->rank != want->rank)
        return false;
    for (int d = 0; d < t->rank; d++)
        if (t->shape[d] != (want->dims[d] == NNRT_DIM_BATCH ? n : want->dims[d]))
            return false;
    return true;
}

static NnStatus mismatch(const char *what, const NnrtStepTensor *want, const NnTensor *t,
                         int64_t n)
{
    char got[128], need[128];
    NnTensor w = {.dtype = (NnDType)want->dtype, .rank = want->rank};
    memcpy(w.shape, want->dims, sizeof w.shape);
    if (w.rank > 0 && w.shape[0] == NNRT_DIM_BATCH)
        w.shape[0] = n;
    nnrt_tensor_type_str(t, got, sizeof got);
    nnrt_tensor_type_str(&w, need, sizeof need);
    if (want->type && strcmp(want->type, need) != 0)
        return nnrt_fail(NN_ERR_SHAPE, "%s '%s' expects %s (here %s), got %s", what, want->name,
                         want->type, need, got);
    return nnrt_fail(NN_ERR_SHAPE, "%s '%s' expects %s, got %s", what, want->name, need, got);
}

// Points slots at the tensors; with check, first compares their types.
static NnStatus attach(NnrtStepRun *r, NnVars *vars, NnTensor *const *inputs, bool check)
{
    const NnrtStep *d = r->d;
    // The batch: the leading dim of the first input that has it.
    int64_t n = 0;
    bool batch = false;
    for (int k = 0; k < d->ninputs; k++) {
        if (!inputs[k])
            return nnrt_fail(NN_ERR_SHAPE, "input '%s' is missing", d->inputs[k].name);
        if (!batch && d->inputs[k].rank > 0 && d->inputs[k].dims[0] == NNRT_DIM_BATCH &&
            inputs[k]->rank > 0) {
            n = inputs[k]->shape[0];
            batch = true;
        }
    }
    for (int k = 0; k < d->ninputs; k++)
        if (check && !same_type(&d->inputs[k], inputs[k], n))
            return mismatch("input", &d->inputs[k], inputs[k], n);
    // The same table at the same stamp holds the same tensors: no name lookups.
    bool cached = vars && vars->gen && r->cvars == vars && r->cgen == vars->gen;
    if (!cached)
        r->cvars = NULL;
    for (int k = 0; k < d->nvars; k++) {
        const NnrtStepTensor *v = &d->vars[k];
        NnTensor *t = cached ? r->var[k] : vars ? nnrt_vars_get(vars, v->name) : NULL;
        if (!t) {
            r->cvars = NULL;
            return nnrt_fail(NN_ERR_SHAPE, "variable '%s' is missing", v->name);
        }
        if (check && !same_type(v, t, n)) {
            r->cvars = NULL;
            return mismatch("variable", v, t, n);
        }
        r->var[k] = t;
    }
    // After a split run the slots and output headers are lane 0's: place again.
    bool again = r->cap < 0 || (batch && n != r->batch) || r->lanes > 1;
    NnStatus st = again ? place(r, n) : NN_OK;
    if (st != NN_OK)
        return st;
    // Written only where they change: a few-rows run's worker reads this
    // memory, and a store of the same value still takes its cache line away
    // from the other core (a miss at the start of every prediction).
    if (vars && !cached) {
        r->cvars = vars;
        r->cgen = vars->gen;
    }
    if (r->in != inputs)
        r->in = inputs;
    if (r->lanes != 1)
        r->lanes = 1;
    for (int s = 0; s < d->nslots; s++) {
        const NnrtStepSlot *sl = &d->slots[s];
        void *p = sl->kind == NNRT_SLOT_INPUT ? inputs[sl->index]->data
                  : sl->kind == NNRT_SLOT_VAR ? r->var[sl->index]->data
                                              : r->bufs[s];
        if (r->bufs[s] != p)
            r->bufs[s] = p;
    }
    in_place_plan(r);
    update_bufs(r);
    return NN_OK;
}

NnStatus nnrt_step_attach(NnrtStepRun *r, NnVars *vars, NnTensor *const *inputs)
{
    return attach(r, vars, inputs, false);
}

// Positions per row of the batch in a label check's indices: 1 for take and
// onehot (one per row), a gather's ids per row when they are an input.
static int64_t per_row(const NnrtStep *d, const NnrtStepCheck *c)
{
    if (c->kind != 2)
        return 1;
    for (int k = 0; k < d->ninputs; k++)
        if (d->inputs[k].slot == c->slot && d->inputs[k].rank > 0 &&
            d->inputs[k].dims[0] == NNRT_DIM_BATCH)
            return (int64_t)(type_bytes(&d->inputs[k], 1) / 4);
    return 0;
}

// The first out-of-range label or index a kernel recorded, worded as the
// interpreter words it; rows are counted from `lo` (a lane's first row).
static NnStatus check_from(const NnrtStepRun *r, int64_t lo)
{
    for (int k = 0; k < r->d->nchecks; k++) {
        int64_t bad = r->err[k];
        if (bad < 0)
            continue;
        const NnrtStepCheck *c = &r->d->checks[k];
        int32_t v = ((const int32_t *)r->bufs[c->slot])[bad];
        bad += lo * per_row(r->d, c);
        if (c->kind == 0)
            return nnrt_fail(NN_ERR_RUNTIME, "take: index %d at row %lld is outside [0, %lld)", v,
                             (long long)bad, (long long)c->bound);
        if (c->kind == 2)
            return nnrt_fail(NN_ERR_RUNTIME, "gather: id %d at %lld is outside [0, %lld)", v,
                             (long long)bad, (long long)c->bound);
        return nnrt_fail(NN_ERR_RUNTIME, "onehot: label %d at %lld is outside [0, %lld)", v,
                         (long long)bad, (long long)c->bound);
    }
    return NN_OK;
}

NnStatus nnrt_step_check(const NnrtStepRun *r)
{
    return check_from(r, 0);
}

// ---- NN_STEP_PROFILE=1: the critical path in thread CPU time ----

// Each dispatch counts its slowest thread's CPU time, each kernel on the
// caller its own: what a step costs when every thread keeps its core, which
// time on a machine shared with other work cannot show. The fastest and the
// median step print when the run closes. Costs a clock read per kernel and
// thread, so only for measuring.

typedef struct Timed {
    NnrtTask fn;
    void *arg;
    double t[PROF_THREADS];
} Timed;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void timed_task(void *arg, int ith, int nth)
{
    Timed *t = arg;
    double c = thread_cpu();
    t->fn(t->arg, ith, nth);
    if (ith < PROF_THREADS)
        t->t[ith] = thread_cpu() - c;
}

// fn over the pool (par) or on the caller, timed when profiling.
static void dispatch(NnrtStepRun *r, NnrtPool *pool, NnrtTask fn, void *arg, bool par)
{
    r->dispatches += par;
    if (!r->prof) {
        if (par)
            nnrt_pool_run(pool, fn, arg);
        else
            fn(arg, 0, 1);
        return;
    }
    Timed t = {fn, arg, {0}};
    if (par)
        nnrt_pool_run(pool, timed_task, &t);
    else
        timed_task(&t, 0, 1);
    double m = 0;
    for (int i = 0; i < PROF_THREADS; i++)
        m = t.t[i] > m ? t.t[i] : m;
    r->crit += m;
}

static void prof_step(NnrtStepRun *r)
{
    if (r->prof && r->nprof < PROF_STEPS)
        r->prof[r->nprof++] = r->crit;
    r->crit = 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void prof_print(NnrtStepRun *r)
{
    if (!r->prof || r->nprof < 2)
        return;
    qsort(r->prof, (size_t)r->nprof, sizeof *r->prof, cmp_double);
    fprintf(stderr, "step profile: %s, %d steps: critical path %.3f ms fastest, %.3f ms median "
            "(thread CPU time)\n", r->lanes > 1 ? "batch split" : "kernels split", r->nprof,
            r->prof[0] * 1e3, r->prof[r->nprof / 2] * 1e3);
}

// ---- lanes: the batch split across threads for the whole step ----

int64_t nnrt_lane_rows(void)
{
    // Clamped, so that 2 * rows cannot overflow for a huge or garbage value.
    const char *v = getenv("NN_SPLIT_ROWS");
    long long r = v ? atoll(v) : 0;
    return r > 0 ? (r < (1LL << 40) ? r : (1LL << 40)) : NNRT_LANE_ROWS;
}

// Lane i's run: lane 0 is r itself.
static NnrtStepRun *lane_run(NnrtStepRun *r, int i) { return i ? &r->lane[i - 1] : r; }

// Lanes 1..lanes-1 opened, the row bounds and the combined outputs sized for
// n rows. Allocates only when a run needs more than any before it.
static NnStatus lanes_ready(NnrtStepRun *r, int lanes, int64_t n)
{
    const NnrtStep *d = r->d;
    if (lanes - 1 > r->nlane_runs) {
        NnrtStepRun *l = realloc(r->lane, (size_t)(lanes - 1) * sizeof *l);
        int64_t *lo = realloc(r->lo, (size_t)(lanes + 1) * sizeof *lo);
        if (l)
            r->lane = l;
        if (lo)
            r->lo = lo;
        if (!l || !lo)
            return nnrt_fail(NN_ERR_NOMEM, "out of memory");
        for (; r->nlane_runs < lanes - 1; r->nlane_runs++) {
            NnStatus st = nnrt_step_open(&r->lane[r->nlane_runs], d);
            if (st != NN_OK) {
                nnrt_step_close(&r->lane[r->nlane_runs]);
                return st;
            }
        }
    }
    if (!r->lout && !(r->lout = calloc((size_t)d->noutputs + 1, sizeof(void *))))
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    if (n > r->lcap) {
        for (int k = 0; k < d->noutputs; k++) {
            if (d->out_rule[k] == NNRT_OUT_LANE0)
                continue;
            size_t b = type_bytes(&d->outputs[k], n);
            nnrt_free(r->lout[k]);
            if (!(r->lout[k] = nnrt_alloc(b ? b : 1))) {
                r->lcap = -1;
                return NN_ERR_NOMEM;
            }
        }
        r->lcap = n;
    }
    return NN_OK;
}

// Points lane l (not lane 0) at rows [lo, lo + n) of the inputs and at the
// variables lane 0 found; its workspace holds n rows.
static NnStatus bind_lane(NnrtStepRun *r, NnrtStepRun *l, int64_t lo, int64_t n)
{
    const NnrtStep *d = r->d;
    NnStatus st = place(l, n);
    if (st != NN_OK)
        return st;
    for (int s = 0; s < d->nslots; s++) {
        const NnrtStepSlot *sl = &d->slots[s];
        if (sl->kind == NNRT_SLOT_VAR) {
            l->bufs[s] = r->bufs[s];
        } else if (sl->kind == NNRT_SLOT_INPUT) {
            const NnrtStepTensor *t = &d->inputs[sl->index];
            bool rows = t->rank > 0 && t->dims[0] == NNRT_DIM_BATCH;
            l->bufs[s] = (char *)r->in[sl->index]->data + (rows ? lo * (int64_t)type_bytes(t, 1) : 0);
        }
    }
    return NN_OK;
}

// One pool task: thread ith runs lane ith's part of the step on its rows,
// kernel after kernel with no barrier; at a cut it keeps its gradient
// weighted by its share of the rows.
static void lane_task(void *arg, int ith, int nth)
{
    (void)nth;
    NnrtStepRun *r = arg;
    if (ith >= r->lanes)
        return;
    const NnrtStep *d = r->d;
    NnrtStepRun *l = lane_run(r, ith);
    float w = (float)((double)(r->lo[ith + 1] - r->lo[ith]) / (double)r->total);
    for (int k = 0; k < d->nlane; k++) {
        int c = r->role[k];
        if (c == 0) {
            d->kernels[k].fn(l->bufs, 0, 1);
            continue;
        }
        const NnrtStepCut *cut = &d->cuts[c - 1];
        const float *g = l->bufs[cut->src];
        float *acc = l->bufs[cut->acc];
        for (int64_t j = 0; j < cut->numel; j++)
            acc[j] = g[j] * w;
    }
}

typedef struct SumTask {
    NnrtStepRun *r;
    const NnrtStepCut *cut;
} SumTask;

// A cut's sum over lanes, by elements: ith's share of dst := lane 0's acc +
// lane 1's + ..., in lane order (so a fixed thread count gives fixed bits).
static void sum_task(void *arg, int ith, int nth)
{
    const SumTask *t = arg;
    const NnrtStepCut *c = t->cut;
    int64_t per = (c->numel + nth - 1) / nth;
    per = (per + 15) / 16 * 16;
    int64_t a = per * ith < c->numel ? per * ith : c->numel;
    int64_t b = a + per < c->numel ? a + per : c->numel;
    float *dst = t->r->bufs[c->dst];
    const float *a0 = t->r->bufs[c->acc], *a1 = lane_run(t->r, 1)->bufs[c->acc];
    for (int64_t j = a; j < b; j++)
        dst[j] = a0[j] + a1[j];
    for (int i = 2; i < t->r->lanes; i++) {
        const float *ai = lane_run(t->r, i)->bufs[c->acc];
        for (int64_t j = a; j < b; j++)
            dst[j] += ai[j];
    }
}

// How many lanes a run of r's batch gets on pool: 1 = not split.
static int lanes_for(const NnrtStepRun *r, NnrtPool **pool)
{
    if (r->d->nlane <= 0 || r->min_rows <= 0 || r->batch < 2 * r->min_rows)
        return 1;
    if (!*pool)
        *pool = nnrt_pool_default();
    int64_t lanes = r->batch / r->min_rows;
    return lanes < nnrt_pool_size(*pool) ? (int)lanes : nnrt_pool_size(*pool);
}

static NnStatus exec_split(NnrtStepRun *r, NnrtPool *pool, int lanes)
{
    const NnrtStep *d = r->d;
    int64_t n = r->batch;
    NnStatus st = lanes_ready(r, lanes, n);
    if (st != NN_OK)
        return st;
    for (int i = 0; i <= lanes; i++)
        r->lo[i] = n * i / lanes;
    r->total = n;
    for (int i = 1; i < lanes && st == NN_OK; i++)
        st = bind_lane(r, lane_run(r, i), r->lo[i], r->lo[i + 1] - r->lo[i]);
    if (r->ip_first >= 0 && r->ip_first < d->nlane)
        r->ip_first = -1; // the lanes read the variables: the update into its swap buffer
    if (st != NN_OK || (st = place(r, r->lo[1])) != NN_OK) // lane 0: rows [0, lo[1])
        return st;
    r->lanes = lanes;
    dispatch(r, pool, lane_task, r, true);
    // The checks before the update part, which may write variables in place.
    for (int i = 0; i < lanes && st == NN_OK; i++)
        st = check_from(lane_run(r, i), r->lo[i]);
    if (st != NN_OK)
        return st;
    for (int k = d->nlane; k < d->nkernels; k++) {
        int c = r->role[k];
        if (c < 0) {
            SumTask t = {r, &d->cuts[-c - 1]};
            dispatch(r, pool, sum_task, &t, t.cut->numel >= 32768);
        } else { // the update part does not grow with the batch
            dispatch(r, pool, d->kernels[k].fn, r->bufs, d->kernels[k].par);
        }
    }
    prof_step(r);
    return st;
}

// An update kernel of the sharded update: this rank's share, as if it were
// thread rank*nth + ith of ranks*nth (nnrt_dist_range: the same elements).
typedef struct ShardTask {
    NnrtTask fn;
    void *bufs;
    int rank, ranks;
} ShardTask;

static void shard_task(void *arg, int ith, int nth)
{
    const ShardTask *t = arg;
    t->fn(t->bufs, t->rank * nth + ith, t->ranks * nth);
}

// Kernel k under the sharded update: starts the reduce-scatter of a SUM
// kernel's gradient, runs a RUN kernel on this rank's elements and starts
// the all-gathers that follow it. Returns whether it ran the kernel.
static bool exec_shard(NnrtStepRun *r, NnrtPool *pool, int k, int *next, bool par)
{
    const NnrtStep *d = r->d;
    bool ran = false;
    for (; *next < d->nshards && d->shards[*next].kernel == k; (*next)++) {
        const NnrtStepShard *s = &d->shards[*next];
        if (s->kind == NNRT_SHARD_SUM) {
            nnrt_dist_shard_next(s->align);
        } else if (s->kind == NNRT_SHARD_RUN) {
            ShardTask t = {d->kernels[k].fn, r->bufs, nnrt_dist_rank(), nnrt_dist_size()};
            dispatch(r, pool, shard_task, &t, par);
            ran = true;
        } else if (s->kind == NNRT_SHARD_GATHER) {
            if (!ran)
                dispatch(r, pool, d->kernels[k].fn, r->bufs, par);
            ran = true;
            nnrt_dist_gather_start(r->bufs[s->slot], s->total, s->align);
        }
    }
    return ran;
}

// ---- few rows: the whole step as one dispatch ----

// At a few rows (batch-1 prediction) a step is a handful of products, each
// reading its weights once: microseconds, of which a dispatch per kernel and
// the caller reading every weight itself would be a large part. Instead the
// kernels from the first one split to the last one split run as one pool
// task: each thread computes its fixed share of every split kernel (the same
// columns call after call, so its slice of the weights stays in its own
// core's L2), the caller alone runs the kernels between, and the threads meet
// at a spin barrier only where a split kernel meets another kernel. Kernels
// split by their own (ith, nth) as a dispatch would run them, so the results
// are those of the kernel-by-kernel run, bit for bit.

// How kernel k runs at r's batch in a few-rows run: NNRT_FEW_*.
static int few_how(const NnrtStepRun *r, int k)
{
    const NnrtStepKernel *kn = &r->d->kernels[k];
    if (kn->few != NNRT_FEW_SERIAL)
        return kn->few;
    return kn->par && r->batch >= kn->par_rows ? NNRT_FEW_SPLIT : NNRT_FEW_SERIAL;
}

// What the workers read, kept in r from run to run and written only where it
// changes, on a cache line of its own (the barrier on another): a worker
// starting a prediction then finds it in its own cache instead of taking it
// from the caller's core, one miss less before its first load of the weights.
// how[k - first] is few_how of the kernels from the first split one to the
// last at `batch`.
typedef struct NnrtFewTask {
    _Alignas(64) const NnrtStep *d;
    void **bufs;
    int64_t batch;
    int first, last; // the first and last split kernels
    signed char *how;
    _Alignas(64) NnrtBarrier bar; // written at every wait: apart from the rest
    int wcpu;                     // the CPU thread 1 ran on in the last run
    // The caller's alone (few_shared):
    _Alignas(64) unsigned calls; // few-rows runs so far
    int serial;                  // runs left on the caller alone
} NnrtFewTask;

static void few_task(void *arg, int ith, int nth)
{
    NnrtFewTask *t = arg;
    const NnrtStep *d = t->d;
    void **bufs = t->bufs;
    bool after_split = false;
    if (ith == 1)
        t->wcpu = nnrt_cpu_now(); // a store: it does not hold up the loads below
    for (int k = t->first; k <= t->last; k++) {
        int how = t->how[k - t->first];
        if (how == NNRT_FEW_NOOP)
            continue;
        bool split = how == NNRT_FEW_SPLIT;
        if (k > t->first && (split || after_split))
            nnrt_barrier_wait(&t->bar, nth);
        if (split)
            d->kernels[k].fn(bufs, ith, nth);
        else if (ith == 0)
            d->kernels[k].fn(bufs, 0, 1);
        after_split = split;
    }
}

static void few_free(NnrtFewTask *t)
{
    if (t) {
        free(t->how);
        nnrt_free(t);
    }
}

// r's few-rows task for r's batch, or NULL when no kernel splits at it (or
// out of memory: the kernel-by-kernel run then does the same work). Rewritten
// only when the batch changes.
static NnrtFewTask *few_prepare(NnrtStepRun *r)
{
    const NnrtStep *d = r->d;
    NnrtFewTask *t = r->few;
    if (t && t->batch == r->batch && t->bufs == r->bufs)
        return t->first < 0 ? NULL : t;
    if (!t) {
        if (!(t = nnrt_alloc(sizeof *t)))
            return NULL;
        memset(t, 0, sizeof *t);
        if (!(t->how = malloc((size_t)d->nkernels + 1))) {
            few_free(t);
            return NULL;
        }
        r->few = t;
    }
    t->d = d;
    t->bufs = r->bufs;
    t->batch = r->batch;
    t->first = t->last = -1;
    for (int k = 0; k < d->nkernels; k++)
        if (few_how(r, k) == NNRT_FEW_SPLIT) {
            t->first = t->first < 0 ? k : t->first;
            t->last = k;
        }
    for (int k = t->first; k >= 0 && k <= t->last; k++)
        t->how[k - t->first] = (signed char)few_how(r, k);
    return t->first < 0 ? NULL : t;
}

// When the scheduler has put the pool's first worker on the caller's core (a
// busy machine: another process holds the other core), the two threads of a
// prediction take turns on one core, each waiting for the other at the
// barrier and the end: 9-12 us a call instead of 6 on one thread alone. Every
// FEW_SAMPLE-th run compares the two threads' CPUs; on one core, the next
// FEW_SERIAL runs go on the caller alone (every kernel whole: the same bits,
// since split kernels split by columns), then the pool is tried again. The
// stretch is shorter than the pool's spin time, so the worker keeps spinning
// (yielding) meanwhile: the scheduler can move it to the other core, and the
// next try finds it there without a wake-up. (Longer stretches let it sleep,
// and the wake-up put it back on the caller's core every time.)
// NN_STEP_FEW_SHARED=1 keeps the dispatch.
enum { FEW_SAMPLE = 16, FEW_SERIAL = 64 };

static void few_shared(const NnrtStepRun *r, NnrtFewTask *t)
{
    if (r->few_shared || t->calls++ % FEW_SAMPLE != 0)
        return;
    int cpu = nnrt_cpu_now();
    if (cpu >= 0 && cpu == t->wcpu) {
        t->serial = FEW_SERIAL;
        t->calls = 0; // sample the run after the stretch
    }
}

// Runs r's step the few-rows way when it applies (a run-time batch of at
// most NNRT_FEW_ROWS, a pool of 2 or more, some kernel split, no lanes or
// MPI ranks); false when it does not, and nothing ran. A step compiled for
// one batch (no run-time batch) keeps its kernel-by-kernel run: its kernels
// were chosen for that batch, which is rarely a few rows.
static bool exec_few(NnrtStepRun *r, NnrtPool **pool, bool ranks)
{
    const NnrtStep *d = r->d;
    if (r->batch < 1 || r->batch > NNRT_FEW_ROWS || ranks || d->ncuts > 0 || r->few_off ||
        !has_batch(d) || r->ip_first >= 0)
        return false;
    NnrtFewTask *t = few_prepare(r);
    if (!t)
        return false;
    if (!*pool)
        *pool = nnrt_pool_default();
    if (nnrt_pool_size(*pool) < 2)
        return false;
    if (t->serial > 0) { // the threads share a core: the caller alone is faster
        t->serial--;
        for (int k = 0; k < d->nkernels; k++)
            if (few_how(r, k) != NNRT_FEW_NOOP)
                dispatch(r, *pool, d->kernels[k].fn, r->bufs, false);
        return true;
    }
    for (int k = t->first; k <= t->last; k++)
        r->splits += t->how[k - t->first] == NNRT_FEW_SPLIT;
    for (int k = 0; k < t->first; k++)
        if (few_how(r, k) != NNRT_FEW_NOOP)
            dispatch(r, *pool, d->kernels[k].fn, r->bufs, false);
    dispatch(r, *pool, few_task, t, true);
    few_shared(r, t);
    for (int k = t->last + 1; k < d->nkernels; k++)
        if (few_how(r, k) != NNRT_FEW_NOOP)
            dispatch(r, *pool, d->kernels[k].fn, r->bufs, false);
    return true;
}

NnStatus nnrt_step_exec(NnrtStepRun *r, NnrtPool *pool)
{
    const NnrtStep *d = r->d;
    r->dispatches = r->splits = 0;
    int lanes = lanes_for(r, &pool);
    if (lanes > 1)
        return exec_split(r, pool, lanes);
    // Gradient sums over MPI ranks advance only inside MPI calls: one between
    // kernels, and none at all in a single process.
    bool ranks = nnrt_dist_size() > 1;
    if (exec_few(r, &pool, ranks)) {
        prof_step(r);
        return nnrt_step_check(r);
    }
    bool sharded = ranks && d->nshards && nnrt_dist_sharding();
    int next = sharded ? 0 : d->nshards; // the next of d->shards
    for (int k = 0; k < d->nkernels; k++) {
        // The default pool starts on first need: a small step (batch-1
        // prediction) never waits for threads to start.
        int par = d->kernels[k].par && r->batch >= d->kernels[k].par_rows;
        if (r->role[k] != 0) { // one lane: a cut passes its value through
            const NnrtStepCut *c = &d->cuts[(r->role[k] > 0 ? r->role[k] : -r->role[k]) - 1];
            void *to = r->bufs[r->role[k] > 0 ? c->acc : c->dst];
            const void *from = r->bufs[r->role[k] > 0 ? c->src : c->acc];
            if (to != from)
                memcpy(to, from, (size_t)c->numel * sizeof(float));
            continue;
        }
        if (k == r->ip_first) { // all or nothing: no variable written in a failing step
            NnStatus st = nnrt_step_check(r);
            if (st != NN_OK)
                return st;
        }
        if (par && !pool)
            pool = nnrt_pool_default();
        bool split = par && nnrt_pool_size(pool) > 1;
        r->splits += split;
        if (next >= d->nshards || d->shards[next].kernel != k ||
            !exec_shard(r, pool, k, &next, split))
            dispatch(r, pool, d->kernels[k].fn, r->bufs, split);
        if (ranks)
            nnrt_dist_progress();
    }
    if (sharded) {
        nnrt_dist_gather_wait();
        for (int i = 0; i < d->nshards; i++)
            if (d->shards[i].kind == NNRT_SHARD_STATE)
                nnrt_dist_note_state(r->var[d->shards[i].slot], d->shards[i].align);
    }
    prof_step(r);
    return nnrt_step_check(r);
}

// A split run's outputs: rows gathered from the lanes, weighted sums, or
// lane 0's value, in headers with the whole batch.
static void finish_split(NnrtStepRun *r)
{
    const NnrtStep *d = r->d;
    for (int k = 0; k < d->noutputs; k++) {
        const NnrtStepTensor *o = &d->outputs[k];
        NnTensor *t = &r->outs[k];
        *t = (NnTensor){.dtype = (NnDType)o->dtype, .rank = o->rank, .numel = 1};
        for (int i = 0; i < o->rank; i++)
            t->numel *= (t->shape[i] = o->dims[i] == NNRT_DIM_BATCH ? r->total : o->dims[i]);
        int rule = d->out_rule[k];
        if (rule == NNRT_OUT_LANE0) {
            t->data = r->outcopy[k] ? r->outcopy[k] : r->bufs[o->slot];
            if (r->outcopy[k])
                memcpy(r->outcopy[k], r->bufs[o->slot], nnrt_tensor_nbytes(t));
            continue;
        }
        t->data = r->lout[k];
        if (rule == NNRT_OUT_ROWS) {
            size_t row = type_bytes(o, 1);
            for (int i = 0; i < r->lanes; i++)
                memcpy((char *)r->lout[k] + (size_t)r->lo[i] * row, lane_run(r, i)->bufs[o->slot],
                       (size_t)(r->lo[i + 1] - r->lo[i]) * row);
            continue;
        }
        for (int64_t j = 0; j < t->numel; j++) { // weighted: a mean over each lane's rows
            double v = 0;
            for (int i = 0; i < r->lanes; i++) {
                double w = (double)(r->lo[i + 1] - r->lo[i]) / (double)r->total;
                const void *p = lane_run(r, i)->bufs[o->slot];
                v += w * (o->dtype == NN_DT_F64 ? ((const double *)p)[j] : ((const float *)p)[j]);
            }
            if (o->dtype == NN_DT_F64)
                ((double *)t->data)[j] = v;
            else
                ((float *)t->data)[j] = (float)v;
        }
    }
}

void nnrt_step_finish(NnrtStepRun *r, NnTensor **outputs)
{
    const NnrtStep *d = r->d;
    if (r->lanes > 1)
        finish_split(r);
    for (int k = 0; k < d->noutputs && r->lanes > 1; k++)
        outputs[k] = &r->outs[k];
    for (int k = 0; k < d->noutputs && r->lanes == 1; k++) {
        if (r->outcopy[k])
            memcpy(r->outcopy[k], r->bufs[d->outputs[k].slot], nnrt_tensor_nbytes(&r->outs[k]));
        else
            r->outs[k].data = r->bufs[d->outputs[k].slot];
        outputs[k] = &r->outs[k];
    }
    // Updates read pre-update values: snapshot those that are sources, then copy.
    for (int k = 0; k < d->nupdates; k++) {
        const NnrtStepUpdate *u = &d->updates[k];
        if (r->snap[k])
            memcpy(r->snap[k], r->bufs[u->slot], type_bytes(&d->vars[u->var], 0));
    }
    for (int k = 0; k < d->nupdates; k++) {
        const NnrtStepUpdate *u = &d->updates[k];
        NnTensor *t = r->var[u->var];
        if (r->bufs[u->slot] == t->data) // written in place
            continue;
        if (r->swap[k] && t->owned && nnrt_tensor_nbytes(t) == type_bytes(&d->vars[u->var], 0)) {
            void *old = t->data;
            t->data = r->swap[k];
            r->swap[k] = r->bufs[u->slot] = old;
            continue;
        }
        void *src = r->snap[k] ? r->snap[k] : r->bufs[u->slot];
        if (src != t->data)
            memcpy(t->data, src, type_bytes(&d->vars[u->var], 0));
    }
}

NnStatus nnrt_step_run(NnrtStepRun *r, NnrtPool *pool, NnVars *vars, NnTensor *const *inputs,
                       NnTensor **outputs)
{
    for (int k = 0; k < r->d->noutputs; k++)
        outputs[k] = NULL;
    NnStatus st = attach(r, vars, inputs, true);
    if (st == NN_OK)
        st = nnrt_step_exec(r, pool);
    if (st == NN_OK)
        nnrt_step_finish(r, outputs);
    return st;
}
