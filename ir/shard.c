// Cuts a training step so that the batch can be split across threads for the
// whole step (docs/threads.md): each lane (a thread) runs the per-row part on
// its own rows, the gradients are summed over lanes once, then the update runs
// once. The cut reuses the data-parallel ops of MPI training: every value the
// update part reads from the per-row part is wrapped in GRAD_START (the lane's
// value times its share of the rows, n_i / N) and GRAD_WAIT (the sum over
// lanes). The weighting is MPI's: a mean loss over n_i rows, weighted by
// n_i / N and summed, is the mean over N, and a term that does not depend on
// the rows (weight decay in the optimizer, or an L2 term's gradient) lies
// after the cut and is counted once. The runtime (runtime/step.c) then runs
// the GRAD ops itself; the kernels lowered for them (MPI calls) never run.
//
// The per-row part L: every node whose leading dim is the batch ("row
// nodes"), every node reading one without being one (the reductions over the
// rows: weight and bias gradients, the loss mean, the row count), every
// output depending on the rows, and everything these read. The rest, the
// update part, reads L only through the cut. A step is refused (NULL, why
// says which node) when a row node's value mixes rows (a reduction over the
// rows that depends on the data and feeds rows again: batch norm in training;
// matmuls or takes across the batch dim), when random draws are indexed over
// the whole batch (dropout masks), when the step has loops or is already cut
// for MPI, or when the update part uses the row count itself.
//
// nn_pass_lanes, after fusion, orders the nodes that descend from a GRAD_WAIT
// after all others, so a step's kernels are the lane part then the update part.
#include "pass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_rows(const NnNode *n, int sym)
{
    return n->shape.rank > 0 && n->shape.dim[0] == -sym - 1;
}

static bool refuse(char *why, size_t n, const NnGraph *g, NnId i, const char *what)
{
    snprintf(why, n, "node %d (%s): %s", i, nn_op_name(g->nodes[i].op), what);
    return false;
}

// Whether row node i computes each of its rows from the same row of its
// row-shaped inputs (and from values that are not per row).
static bool row_local(const NnGraph *g, NnId i, const bool *rows)
{
    const NnNode *n = &g->nodes[i];
    const NnAttr *a = &n->attr;
    unsigned f = nn_op_flags(n->op);
    if (n->op == NN_OP_DROPOUT)
        return false;
    if (f & NN_OPF_ELEMWISE)
        return true;
    switch (n->op) {
    case NN_OP_BROADCAST:
    case NN_OP_SUMTO:
    case NN_OP_REDUCE_SUM:
    case NN_OP_REDUCE_MEAN:
    case NN_OP_REDUCE_MAX:
    case NN_OP_LOGSUMEXP:
    case NN_OP_RESHAPE:
    case NN_OP_ONEHOT:
    case NN_OP_CONV2D:
    case NN_OP_CONV2D_BWD_DATA:
    case NN_OP_MAX_POOL2D:
    case NN_OP_MAX_POOL2D_BWD:
    case NN_OP_AVG_POOL2D:
    case NN_OP_AVG_POOL2D_BWD:
        // The leading dim is kept, so it is not reduced or moved; a reshape
        // keeping it keeps each row's elements together.
        return n->op != NN_OP_RESHAPE || rows[n->in[0]];
    case NN_OP_MATMUL:
        return !a->ta && rows[n->in[0]] && !rows[n->in[1]];
    case NN_OP_TAKE:
        return a->axis != 0 || !rows[n->in[0]];
    case NN_OP_GATHER:
        return !rows[n->in[0]];
    case NN_OP_ARGMAX:
    case NN_OP_SLICE:
    case NN_OP_SLICE_BWD:
    case NN_OP_CONCAT:
        return a->axis != 0;
    case NN_OP_TRANSPOSE:
        return a->perm[0] == 0;
    case NN_OP_PAD:
        return a->lo[0] == 0 && a->hi[0] == 0;
    default:
        return false;
    }
}

NnGraph *nn_pass_shard(NnGraph *g, int sym, char *why, size_t whyn)
{
    NnId cnt = g->count;
    bool *rows = calloc((size_t)cnt + 1, sizeof *rows);    // leading dim is the batch
    bool *dep = calloc((size_t)cnt + 1, sizeof *dep);      // depends on a row node
    bool *data = calloc((size_t)cnt + 1, sizeof *data);    // depends on an input
    bool *feeds = calloc((size_t)cnt + 1, sizeof *feeds);  // a row node reads it, maybe later
    bool *lane = calloc((size_t)cnt + 1, sizeof *lane);    // in the per-row part
    bool *cut = calloc((size_t)cnt + 1, sizeof *cut);      // read across the cut
    NN_ASSERT(rows && dep && data && feeds && lane && cut);
    NnGraph *out = NULL;
    bool ok = g->nupdates > 0 || refuse(why, whyn, g, 0, "the step updates nothing");
    for (NnId i = 0; ok && i < cnt; i++) {
        const NnNode *n = &g->nodes[i];
        rows[i] = is_rows(n, sym);
        dep[i] = rows[i];
        data[i] = n->op == NN_OP_INPUT;
        bool row_in = false;
        for (int k = 0; k < n->nin; k++) {
            dep[i] = dep[i] || dep[n->in[k]];
            data[i] = data[i] || data[n->in[k]];
            row_in = row_in || rows[n->in[k]];
        }
        if (n->op == NN_OP_GRAD_START || n->op == NN_OP_GRAD_WAIT)
            ok = refuse(why, whyn, g, i, "the step is already split over MPI ranks");
        else if (n->op == NN_OP_LOOP || n->op == NN_OP_LOOP_OUT || n->op == NN_OP_FUSED)
            ok = refuse(why, whyn, g, i, "loops and fused nodes are not split");
        else if (dep[i] && (nn_op_flags(n->op) & NN_OPF_RANDOM || n->op == NN_OP_DROPOUT))
            ok = refuse(why, whyn, g, i, "random draws are indexed over the whole batch");
        else if (rows[i] && row_in && !row_local(g, i, rows))
            ok = refuse(why, whyn, g, i, "mixes rows of the batch");
    }
    // A reduction over the rows that depends on the data and feeds rows again
    // (batch statistics) would see only a lane's rows.
    for (NnId i = cnt - 1; ok && i >= 0; i--) {
        const NnNode *n = &g->nodes[i];
        bool row_in = false;
        for (int k = 0; k < n->nin; k++)
            row_in = row_in || rows[n->in[k]];
        if (!rows[i] && row_in && data[i] && feeds[i])
            ok = refuse(why, whyn, g, i, "a statistic over the batch's rows feeds the rows");
        for (int k = 0; k < n->nin; k++)
            feeds[n->in[k]] = feeds[n->in[k]] || feeds[i] || rows[i];
    }
    // The per-row part: row nodes, reductions of them, outputs on the rows,
    // and everything they read.
    for (NnId i = 0; ok && i < cnt; i++) {
        const NnNode *n = &g->nodes[i];
        for (int k = 0; k < n->nin; k++)
            lane[i] = lane[i] || rows[n->in[k]];
        lane[i] = lane[i] || rows[i];
    }
    for (int k = 0; ok && k < g->noutputs; k++)
        lane[g->outputs[k].id] = lane[g->outputs[k].id] || dep[g->outputs[k].id];
    for (NnId i = cnt - 1; ok && i >= 0; i--)
        for (int k = 0; lane[i] && k < g->nodes[i].nin; k++)
            lane[g->nodes[i].in[k]] = true;
    int ncut = 0;
    for (NnId i = 0; ok && i < cnt; i++) {
        const NnNode *n = &g->nodes[i];
        for (int k = 0; !lane[i] && k < n->nin; k++) {
            NnId s = n->in[k];
            if (!lane[s] || !dep[s] || cut[s])
                continue;
            if (!data[s])
                ok = refuse(why, whyn, g, i, "the update uses the batch size");
            else if (g->nodes[s].dtype != NN_DT_F32)
                ok = refuse(why, whyn, g, s, "a gradient summed over threads must be f32");
            cut[s] = true;
            ncut++;
        }
    }
    for (int k = 0; ok && k < g->nupdates; k++)
        if (lane[g->updates[k].value] && dep[g->updates[k].value])
            ok = refuse(why, whyn, g, g->updates[k].value,
                        "an update takes a value of the rows directly");
    if (ok && ncut == 0)
        ok = refuse(why, whyn, g, 0, "nothing is summed over the rows before the update");
    if (ok) {
        NnId *own = calloc((size_t)cnt + 1, sizeof *own), *sum = calloc((size_t)cnt + 1, sizeof *sum);
        NN_ASSERT(own && sum);
        NnRewrite rw;
        nn_rewrite_begin(&rw, g);
        rw.changed = true;
        for (NnId i = 0; i < cnt; i++) {
            const NnNode *n = &g->nodes[i];
            for (int k = 0; k < n->nin; k++) // the update part reads the sums
                if (cut[n->in[k]])
                    rw.map[n->in[k]] = lane[i] ? own[n->in[k]] : sum[n->in[k]];
            NnId c = nn_rewrite_copy(&rw, i);
            if (!cut[i])
                continue;
            own[i] = c;
            NnId s = nn_rewrite_add(&rw, NN_OP_GRAD_START, &c, 1, &(NnAttr){0}, n->loc);
            sum[i] = nn_rewrite_add(&rw, NN_OP_GRAD_WAIT, &s, 1, &(NnAttr){0}, n->loc);
        }
        for (NnId i = 0; i < cnt; i++) // outputs take the lane's value; updates never a cut
            if (cut[i])
                rw.map[i] = own[i];
        out = nn_rewrite_end(&rw);
        free(own);
        free(sum);
    }
    free(rows);
    free(dep);
    free(data);
    free(feeds);
    free(lane);
    free(cut);
    return out;
}

// Whether each node descends from a GRAD_WAIT (the update part); n+1 entries.
static bool *update_part(const NnGraph *g)
{
    bool *u = calloc((size_t)g->count + 1, sizeof *u);
    NN_ASSERT(u);
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        u[i] = n->op == NN_OP_GRAD_WAIT;
        for (int k = 0; k < n->nin; k++)
            u[i] = u[i] || u[n->in[k]];
    }
    return u;
}

NnGraph *nn_pass_lanes(NnGraph *g)
{
    bool *u = update_part(g);
    NnRewrite rw;
    nn_rewrite_begin(&rw, g);
    rw.changed = true;
    for (int pass = 0; pass < 2; pass++) // the lane part never reads the update part
        for (NnId i = 0; i < g->count; i++)
            if (u[i] == (pass == 1))
                nn_rewrite_copy(&rw, i);
    free(u);
    return nn_rewrite_end(&rw);
}

NnId nn_lanes_check(const NnGraph *g, int sym, int *rule, char *why, size_t whyn)
{
    bool *u = update_part(g);
    bool *dep = calloc((size_t)g->count + 1, sizeof *dep);
    NN_ASSERT(dep);
    NnId end = g->count;
    bool ok = true;
    for (NnId i = 0; ok && i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        dep[i] = is_rows(n, sym) && !u[i];
        for (int k = 0; k < n->nin; k++)
            dep[i] = dep[i] || (dep[n->in[k]] && n->op != NN_OP_GRAD_START);
        if (u[i] && end == g->count)
            end = i;
        if (!u[i] && end < g->count)
            ok = refuse(why, whyn, g, i, "the lane part does not precede the update part");
        if (u[i] && (dep[i] || is_rows(n, sym)))
            ok = refuse(why, whyn, g, i, "the update part reads a per-row value");
    }
    for (int k = 0; ok && k < g->noutputs; k++) {
        NnId o = g->outputs[k].id;
        const NnNode *n = &g->nodes[o];
        rule[k] = u[o] || !dep[o] ? 0 : is_rows(n, sym) ? 1 : 2;
        if (rule[k] == 2 && n->dtype != NN_DT_F32 && n->dtype != NN_DT_F64)
            ok = refuse(why, whyn, g, o, "an output summed over threads must be f32 or f64");
    }
    free(u);
    free(dep);
    return ok ? end : -1;
}
