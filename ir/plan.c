// Liveness-based memory planning. Takes a graph and concrete symbol values;
// produces one workspace offset per value. A value is live from the node that
// computes it through its last reader; a buffer is free again from the step
// after that, and the next value takes the smallest free block that fits
// (best fit), growing the workspace only when none does. Sources are
// external, results are pinned to the end, and free blocks are kept sorted
// by offset and merged with their neighbours, so the workspace does not fragment.
#include "plan.h"

#include "loop.h"
#include "pass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Block {
    int64_t off, size;
} Block;

typedef struct Free {
    Block *b;
    int n, cap;
} Free;

static int64_t pad(int64_t n)
{
    int64_t p = (n + NN_PLAN_ALIGN - 1) / NN_PLAN_ALIGN * NN_PLAN_ALIGN;
    return p ? p : NN_PLAN_ALIGN;
}

// Offset of the best-fitting free block for `size`, carved out; -1 if none fits.
static int64_t take(Free *f, int64_t size)
{
    int best = -1;
    for (int i = 0; i < f->n; i++)
        if (f->b[i].size >= size && (best < 0 || f->b[i].size < f->b[best].size))
            best = i;
    if (best < 0)
        return -1;
    int64_t off = f->b[best].off;
    f->b[best].off += size;
    f->b[best].size -= size;
    if (f->b[best].size == 0) {
        memmove(&f->b[best], &f->b[best + 1], (size_t)(f->n - best - 1) * sizeof(Block));
        f->n--;
    }
    return off;
}

// Returns [off, off + size) to the free list, merging with neighbours.
static void give(Free *f, int64_t off, int64_t size)
{
    int i = 0;
    while (i < f->n && f->b[i].off < off)
        i++;
    if (i > 0 && f->b[i - 1].off + f->b[i - 1].size == off) {
        f->b[i - 1].size += size;
        if (i < f->n && f->b[i - 1].off + f->b[i - 1].size == f->b[i].off) {
            f->b[i - 1].size += f->b[i].size;
            memmove(&f->b[i], &f->b[i + 1], (size_t)(f->n - i - 1) * sizeof(Block));
            f->n--;
        }
        return;
    }
    if (i < f->n && off + size == f->b[i].off) {
        f->b[i].off = off;
        f->b[i].size += size;
        return;
    }
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 16;
        f->b = realloc(f->b, (size_t)f->cap * sizeof(Block));
        NN_ASSERT(f->b);
    }
    memmove(&f->b[i + 1], &f->b[i], (size_t)(f->n - i) * sizeof(Block));
    f->b[i] = (Block){off, size};
    f->n++;
}

static void live_ranges(const NnGraph *g, const int64_t *symv, NnPlan *p, const NnPlanOptions *o)
{
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        NnPlanSlot *s = &p->slots[i];
        int64_t dims[NN_MAX_RANK], numel = 1;
        nn_shape_bind(&n->shape, symv, dims);
        for (int k = 0; k < n->shape.rank; k++)
            numel *= dims[k];
        s->nbytes = numel * (int64_t)nnrt_dtype_size(n->dtype);
        if (n->op == NN_OP_LOOP) // holds all its results (ir/loop.h)
            s->nbytes = nn_loop_bytes(n, symv);
        if (n->op == NN_OP_LOOP && o->rows && nn_loop_has_rows(n, o->rows_sym)) {
            // Its regions with the batch, per row; the rest is the backend's.
            int nreg = nn_loop_nresults(n) + n->attr.ncarry;
            int64_t *off = malloc(((size_t)nreg + 1) * sizeof *off);
            bool *rows = malloc(((size_t)nreg + 1) * sizeof *rows);
            NN_ASSERT(off && rows);
            nn_loop_layout_rows(n, symv, o->rows_sym, off, rows);
            s->nbytes = off[nreg];
            s->flags |= NN_PLAN_ROWS;
            free(off);
            free(rows);
        }
        s->offset = -1;
        s->alias = -1;
        s->first = s->last = i;
        if (n->op == NN_OP_INPUT || n->op == NN_OP_PARAM || n->op == NN_OP_STATE)
            s->flags |= NN_PLAN_EXTERNAL;
        if (n->op == NN_OP_CONST && !o->const_buffers)
            s->flags |= NN_PLAN_CONST;
        for (int k = 0; o->rows && k < n->shape.rank; k++)
            if (n->shape.dim[k] == -o->rows_sym - 1)
                s->flags |= NN_PLAN_ROWS;
        for (int k = 0; k < n->nin; k++)
            if (p->slots[n->in[k]].last < i)
                p->slots[n->in[k]].last = i;
    }
    // A pool computed in its convolution's kernel (nn_fuse_pool_host) is
    // written while the convolution's operands are read: they live through
    // the pool's step, so its result cannot take their memory.
    for (NnId i = 0; i < g->count; i++) {
        NnId c = nn_fuse_pool_host(g, i);
        for (int k = 0; c >= 0 && k < g->nodes[c].nin; k++)
            if (p->slots[g->nodes[c].in[k]].last < i)
                p->slots[g->nodes[c].in[k]].last = i;
    }
    // A multi-output kernel (nn_fuse_multi) computes every member at its
    // lead's step, reading all members' operands there: members' results and
    // operands live through that step, so nothing written there (or before
    // it, by a member's own slot) takes their memory.
    NnId *lead = malloc(((size_t)g->count + 1) * sizeof(NnId));
    NN_ASSERT(lead);
    nn_fuse_multi(g, lead);
    for (NnId i = 0; i < g->count; i++) {
        NnId l = lead[i];
        if (l < 0 || l == i)
            continue;
        if (p->slots[i].last < l)
            p->slots[i].last = l;
        for (int k = 0; k < g->nodes[i].nin; k++)
            if (p->slots[g->nodes[i].in[k]].last < l)
                p->slots[g->nodes[i].in[k]].last = l;
    }
    free(lead);
    for (int k = 0; k < g->noutputs; k++)
        p->slots[g->outputs[k].id].flags |= NN_PLAN_PINNED;
    for (int k = 0; k < g->nupdates; k++) {
        p->slots[g->updates[k].var].flags |= NN_PLAN_PINNED;
        p->slots[g->updates[k].value].flags |= NN_PLAN_PINNED;
    }
    for (NnId i = 0; i < g->count; i++)
        if (p->slots[i].flags & NN_PLAN_PINNED)
            p->slots[i].last = g->count - 1;
}

// Whether value i can be computed in its input's buffer: a gradient sum
// (GRAD_START scales its input, GRAD_WAIT completes the sum) that is the last
// reader of a workspace value of its size, neither of them a result. The
// runtime then skips the copies (runtime/dist.c, runtime/step.c).
static bool in_place(const NnGraph *g, const NnPlan *p, NnId i)
{
    const NnNode *n = &g->nodes[i];
    if ((n->op != NN_OP_GRAD_START && n->op != NN_OP_GRAD_WAIT) || n->nin != 1)
        return false;
    NnId m = n->in[0];
    const NnPlanSlot *a = &p->slots[m], *b = &p->slots[i];
    unsigned own = NN_PLAN_EXTERNAL | NN_PLAN_CONST | NN_PLAN_PINNED;
    NnOp mo = g->nodes[m].op;
    return !(a->flags & own) && !(b->flags & own) && mo != NN_OP_LOOP && mo != NN_OP_LOOP_OUT &&
           a->nbytes == b->nbytes && (a->flags & NN_PLAN_ROWS) == (b->flags & NN_PLAN_ROWS) &&
           a->last == i;
}

static void alias_in_place(const NnGraph *g, NnPlan *p)
{
    for (NnId i = 0; i < g->count; i++) {
        if (!in_place(g, p, i))
            continue;
        NnId m = g->nodes[i].in[0], r = p->slots[m].alias >= 0 ? p->slots[m].alias : m;
        p->slots[i].alias = r;
        if (p->slots[r].last < p->slots[i].last)
            p->slots[r].last = p->slots[i].last;
    }
}

NnPlan *nn_plan_build_ex(const NnGraph *g, const int64_t *symv, NnArena *arena,
                         const NnPlanOptions *opt)
{
    static const NnPlanOptions defaults = {0};
    const NnPlanOptions *o = opt ? opt : &defaults;
    NN_ASSERT(g->nsyms == 0 || symv);
    NnPlan *p = nn_arena_alloc(arena, sizeof *p);
    p->count = g->count;
    p->slots = nn_arena_alloc(arena, ((size_t)g->count + 1) * sizeof(NnPlanSlot));
    live_ranges(g, symv, p, o);
    alias_in_place(g, p);
    // dying[t]: values whose last reader is step t, freed before step t + 1.
    int *head = malloc(((size_t)g->count + 1) * sizeof(int));
    int *next = malloc(((size_t)g->count + 1) * sizeof(int));
    NN_ASSERT(head && next);
    for (int i = 0; i < g->count; i++)
        head[i] = -1;
    // Two regions, each with its free list and end: [0] fixed-size values
    // (the workspace), [1] per-row values (workspace_rows).
    Free f[2] = {{0}, {0}};
    int64_t *end[2] = {&p->workspace, &p->workspace_rows};
    for (NnId i = 0; i < g->count; i++) {
        if (i > 0)
            for (int d = head[i - 1]; d >= 0; d = next[d])
                give(&f[(p->slots[d].flags & NN_PLAN_ROWS) != 0], p->slots[d].offset,
                     pad(p->slots[d].nbytes));
        // A LOOP's directly written results (nn_loop_out_direct) are placed
        // with it: the loop's step writes them.
        for (NnId j = i; j < g->count && (j == i || g->nodes[i].op == NN_OP_LOOP); j++) {
            NnPlanSlot *s = &p->slots[j];
            if (j > i && !(nn_loop_out_direct(g, j) && g->nodes[j].in[0] == i))
                continue;
            if (s->flags & (NN_PLAN_EXTERNAL | NN_PLAN_CONST) || s->offset >= 0)
                continue;
            s->first = i;
            if (s->alias >= 0) { // placed, and freed, with its root
                s->offset = p->slots[s->alias].offset;
                continue;
            }
            int r = (s->flags & NN_PLAN_ROWS) != 0;
            int64_t size = pad(s->nbytes);
            s->offset = take(&f[r], size);
            if (s->offset < 0) {
                // Grow: extend a free block that ends the region, else append.
                if (f[r].n && f[r].b[f[r].n - 1].off + f[r].b[f[r].n - 1].size == *end[r]) {
                    s->offset = f[r].b[--f[r].n].off;
                } else {
                    s->offset = *end[r];
                }
                *end[r] = s->offset + size;
            }
            p->total += size;
            next[j] = head[s->last];
            head[s->last] = j;
        }
    }
    free(f[0].b);
    free(f[1].b);
    free(head);
    free(next);
    return p;
}

NnPlan *nn_plan_build(const NnGraph *g, const int64_t *symv, NnArena *arena)
{
    return nn_plan_build_ex(g, symv, arena, NULL);
}

bool nn_plan_check(const NnPlan *p, char *err, size_t errlen)
{
    for (int i = 0; i < p->count; i++) {
        const NnPlanSlot *a = &p->slots[i];
        if (a->offset < 0)
            continue;
        bool rows = a->flags & NN_PLAN_ROWS;
        if (a->offset % NN_PLAN_ALIGN ||
            a->offset + a->nbytes > (rows ? p->workspace_rows : p->workspace)) {
            snprintf(err, errlen, "%%%d: offset %lld misplaced", i, (long long)a->offset);
            return false;
        }
        for (int j = i + 1; j < p->count; j++) {
            const NnPlanSlot *b = &p->slots[j];
            if (b->offset < 0 || b->first > a->last || a->first > b->last ||
                rows != ((b->flags & NN_PLAN_ROWS) != 0) ||
                (a->alias >= 0 ? a->alias : i) == (b->alias >= 0 ? b->alias : j))
                continue;
            if (a->offset < b->offset + pad(b->nbytes) && b->offset < a->offset + pad(a->nbytes)) {
                snprintf(err, errlen, "%%%d and %%%d overlap while both live", i, j);
                return false;
            }
        }
    }
    return true;
}
