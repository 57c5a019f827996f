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
#include "step.h"

#include "dist.h"
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    for (int k = 0; k < d->nupdates; k++) // an update's own buffer, not the workspace
        if (r->swap[k])
            r->bufs[d->updates[k].slot] = r->swap[k];
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
    r->cap = -1;
    if (!r->bufs || !r->outs || !r->outcopy || !r->snap || !r->swap || !r->var)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
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
    r->cvars = NULL;
    for (int k = 0; k < d->nvars; k++) {
        const NnrtStepTensor *v = &d->vars[k];
        NnTensor *t = cached ? r->var[k] : vars ? nnrt_vars_get(vars, v->name) : NULL;
        if (!t)
            return nnrt_fail(NN_ERR_SHAPE, "variable '%s' is missing", v->name);
        if (check && !same_type(v, t, n))
            return mismatch("variable", v, t, n);
        r->var[k] = t;
    }
    NnStatus st = r->cap < 0 || (batch && n != r->batch) ? place(r, n) : NN_OK;
    if (st != NN_OK)
        return st;
    if (vars) {
        r->cvars = vars;
        r->cgen = vars->gen;
    }
    for (int s = 0; s < d->nslots; s++) {
        const NnrtStepSlot *sl = &d->slots[s];
        if (sl->kind == NNRT_SLOT_INPUT)
            r->bufs[s] = inputs[sl->index]->data;
        else if (sl->kind == NNRT_SLOT_VAR)
            r->bufs[s] = r->var[sl->index]->data;
    }
    return NN_OK;
}

NnStatus nnrt_step_attach(NnrtStepRun *r, NnVars *vars, NnTensor *const *inputs)
{
    return attach(r, vars, inputs, false);
}

// The first out-of-range label or index a kernel recorded, worded as the
// interpreter words it.
NnStatus nnrt_step_check(const NnrtStepRun *r)
{
    for (int k = 0; k < r->d->nchecks; k++) {
        int64_t bad = r->err[k];
        if (bad < 0)
            continue;
        const NnrtStepCheck *c = &r->d->checks[k];
        int32_t v = ((const int32_t *)r->bufs[c->slot])[bad];
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

NnStatus nnrt_step_exec(NnrtStepRun *r, NnrtPool *pool)
{
    const NnrtStep *d = r->d;
    // Gradient sums over MPI ranks advance only inside MPI calls: one between
    // kernels, and none at all in a single process.
    bool ranks = nnrt_dist_size() > 1;
    for (int k = 0; k < d->nkernels; k++) {
        // The default pool starts on first need: a small step (batch-1
        // prediction) never waits for threads to start.
        int par = d->kernels[k].par && r->batch >= d->kernels[k].par_rows;
        if (par && !pool)
            pool = nnrt_pool_default();
        if (par)
            nnrt_pool_run(pool, d->kernels[k].fn, r->bufs);
        else
            d->kernels[k].fn(r->bufs, 0, 1);
        if (ranks)
            nnrt_dist_progress();
    }
    return nnrt_step_check(r);
}

void nnrt_step_finish(NnrtStepRun *r, NnTensor **outputs)
{
    const NnrtStep *d = r->d;
    for (int k = 0; k < d->noutputs; k++) {
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
