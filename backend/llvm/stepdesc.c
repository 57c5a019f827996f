// The step descriptor (runtime/step.h) of a graph lowered for one binding:
// slots from the lowering (node values, scratch, the error slot) placed by the
// memory plan, kernels by symbol name, the graph's inputs, variables, outputs,
// updates and label checks. The JIT fills in kernel addresses after linking;
// `nnc build` prints the same tables as C (nn_llvm_step_write_c) and lets the
// linker fill them in.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aot.h"
#include "common.h"
#include "nn_llvm.h"
#include "pass.h"

static char *dup_str(const char *s) { return strdup(s ? s : ""); }

static NnrtStepTensor tensor_of(const NnCg *cg, NnId id, const char *name, int slot)
{
    const NnGraph *g = cg->g;
    const NnNode *n = &g->nodes[id];
    NnrtStepTensor t = {.dtype = n->dtype, .rank = n->shape.rank, .slot = slot};
    nn_shape_bind(&n->shape, cg->symv, t.dims);
    if (nn_cg_rt(cg, g, id))
        t.dims[0] = NNRT_DIM_BATCH;
    char buf[160];
    nn_type_str(g, n->dtype, &n->shape, buf, sizeof buf);
    t.name = dup_str(name);
    t.type = dup_str(buf);
    return t;
}

static bool same_elements(const NnGraph *g, NnId id);

// Whether x is variable `name` (a parameter or state: one buffer per name).
static bool is_var(const NnNode *x, const char *name)
{
    return (x->op == NN_OP_PARAM || x->op == NN_OP_STATE) && strcmp(x->attr.name, name) == 0;
}

// Whether product node i (an M-form FUSED node) reads variable v only in its
// epilogue, at the element it computes: never as an operand of its
// contraction, and v of its output's shape.
static bool epilogue_reads(const NnGraph *g, NnId i, const NnNode *v)
{
    const NnNode *n = &g->nodes[i];
    const NnGraph *b = n->attr.body;
    if (n->op != NN_OP_FUSED || nn_fuse_form(b) != NN_FUSE_MATMUL ||
        !nn_shape_eq(&v->shape, &n->shape))
        return false;
    for (NnId c = 0; c < b->count; c++) {
        if (nn_op_has(b->nodes[c].op, NN_OPF_ELEMWISE))
            continue; // the epilogue: at the element computed
        for (int j = 0; j < b->nodes[c].nin; j++) { // the contraction (or pooling)
            NnId bid = b->nodes[c].in[j];
            int k = 0;
            for (NnId x = 0; x < bid; x++)
                k += b->nodes[x].op == NN_OP_INPUT;
            if (b->nodes[bid].op == NN_OP_INPUT && is_var(&g->nodes[n->in[k]], v->attr.name))
                return false;
        }
    }
    return true;
}

// lead: nn_fuse_multi's group leads; kof[i]: the kernel computing node i
// (a group member's is its lead's), or -1.
static void kernels_of(const NnCg *cg, NnId *lead, int *kof)
{
    const NnGraph *g = cg->g;
    nn_fuse_multi(g, lead);
    for (NnId i = 0; i < g->count; i++)
        kof[i] = -1;
    for (int k = 0; k < cg->nkernels; k++)
        kof[cg->kernels[k].node] = k;
    for (NnId i = 0; i < g->count; i++)
        if (lead[i] >= 0)
            kof[i] = kof[lead[i]];
}

// NnrtStepUpdate.in_place of update k: 1 + the kernel computing its value u
// when that kernel may compute it in the variable's own buffer, else 0. It
// may when u reads the variable only at the element it writes (elementwise,
// of the variable's shape), nothing else reads the variable in u's kernel or
// any later one, no output is the variable, no other update takes the
// variable's own value (it reads it after the step), and no kernel from u's on records
// a label check (the runtime checks before u's kernel runs, so a failing step
// still leaves every variable as it was). Readers of the variable in u's
// kernel other than u: only members of u's multi-output group that run
// before u (backend/llvm/lower.c runs them in ascending order, the product
// first) and read the variable at the element they compute, as the product's
// epilogue does for weight decay; a later member would read u's store (with
// momentum SGD fusion lets w' = w - lr (mu m + g) read m itself after m' is
// stored). kof[i]: the kernel computing node i, or -1; lead: nn_fuse_multi's.
static int in_place_kernel(const NnCg *cg, const int *kof, const NnId *lead, int k)
{
    const NnGraph *g = cg->g;
    NnId v = g->updates[k].var, u = g->updates[k].value;
    const NnNode *vn = &g->nodes[v], *un = &g->nodes[u];
    int ku = kof[u];
    if (ku < 0 || ku < cg->checks_end || un->dtype != vn->dtype ||
        !nn_shape_eq(&un->shape, &vn->shape) || is_var(un, vn->attr.name) || !same_elements(g, u))
        return 0;
    // An update taking the variable itself (f := v) reads its old value
    // after the step.
    for (int j = 0; j < g->nupdates; j++)
        if ((j != k && g->updates[j].value == u) ||
            is_var(&g->nodes[g->updates[j].value], vn->attr.name))
            return 0;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        for (int j = 0; j < n->nin; j++) {
            const NnNode *x = &g->nodes[n->in[j]];
            if (i == u || !is_var(x, vn->attr.name))
                continue;
            // An earlier member of u's group (they run in ascending order,
            // the product first) reading the same element reads it before
            // u stores it.
            if (lead[u] >= 0 && lead[i] == lead[u] && i < u &&
                (epilogue_reads(g, i, vn) ||
                 (nn_shape_eq(&n->shape, &vn->shape) && same_elements(g, i))))
                continue;
            if (kof[i] < 0 || kof[i] >= ku)
                return 0;
        }
    }
    for (int o = 0; o < g->noutputs; o++) {
        const NnNode *x = &g->nodes[g->outputs[o].id];
        if (is_var(x, vn->attr.name))
            return 0;
    }
    return ku + 1;
}

static int var_index(const NnGraph *g, const NnrtStepTensor *vars, int nvars, NnId id)
{
    for (int k = 0; k < nvars; k++)
        if (strcmp(vars[k].name, g->nodes[id].attr.name) == 0)
            return k;
    return -1;
}

NnrtStep *nn_llvm_step_new(const NnCg *cg, const NnPlan *plan, const char *name)
{
    const NnGraph *g = cg->g;
    NnrtStep *d = calloc(1, sizeof *d);
    NnrtStepSlot *slots = calloc((size_t)cg->nslots + 1, sizeof *slots);
    NnrtStepKernel *ks = calloc((size_t)cg->nkernels + 1, sizeof *ks);
    NnrtStepTensor *ins = calloc((size_t)g->count + 1, sizeof *ins);
    NnrtStepTensor *vars = calloc((size_t)g->count + 1, sizeof *vars);
    NnrtStepTensor *outs = calloc((size_t)g->noutputs + 1, sizeof *outs);
    NnrtStepUpdate *ups = calloc((size_t)g->nupdates + 1, sizeof *ups);
    NnrtStepCheck *checks = calloc((size_t)cg->nerr + 1, sizeof *checks);
    if (!d || !slots || !ks || !ins || !vars || !outs || !ups || !checks) {
        free(d), free(slots), free(ks), free(ins), free(vars), free(outs), free(ups), free(checks);
        nnrt_fail(NN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    *d = (NnrtStep){.name = dup_str(name), .nslots = cg->nslots, .slots = slots,
                    .workspace = plan->workspace, .nkernels = cg->nkernels, .kernels = ks,
                    .inputs = ins, .vars = vars, .outputs = outs, .updates = ups,
                    .checks = checks, .workspace_rows = plan->workspace_rows};
    // Per-row values first (offset per row): the plan's, then per-row memory
    // of the lowering's own (label checks' index copies); the fixed-size ones
    // after them.
    int64_t rows = plan->workspace_rows;
    for (int s = g->count; s < cg->nslots; s++)
        if (cg->slot_owned[s] && cg->slot_rows[s]) {
            slots[s] = (NnrtStepSlot){NNRT_SLOT_WORKSPACE, 0, 0, rows};
            rows += (cg->slot_bytes[s] + 63) / 64 * 64;
        }
    d->workspace_rows = rows;
    for (NnId i = 0; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op == NN_OP_INPUT) {
            slots[i] = (NnrtStepSlot){NNRT_SLOT_INPUT, d->ninputs, 0, 0};
            ins[d->ninputs] = tensor_of(cg, i, n->attr.name, i);
            d->ninputs++;
        } else if (n->op == NN_OP_PARAM || n->op == NN_OP_STATE) {
            int k = var_index(g, vars, d->nvars, i);
            if (k < 0) {
                k = d->nvars++;
                vars[k] = tensor_of(cg, i, n->attr.name, i);
            }
            slots[i] = (NnrtStepSlot){NNRT_SLOT_VAR, k, 0, 0};
        } else if (plan->slots[i].offset >= 0 && (plan->slots[i].flags & NN_PLAN_ROWS)) {
            slots[i] = (NnrtStepSlot){NNRT_SLOT_WORKSPACE, 0, 0, plan->slots[i].offset};
        } else if (plan->slots[i].offset >= 0) {
            slots[i] = (NnrtStepSlot){NNRT_SLOT_WORKSPACE, 0, plan->slots[i].offset, rows};
        }
    }
    for (int s = g->count; s < cg->nslots; s++) {
        if (cg->slot_owned[s] && cg->slot_rows[s])
            continue;
        if (cg->slot_owned[s]) { // a loop body's memory: after the plan's workspace
            slots[s] = (NnrtStepSlot){NNRT_SLOT_WORKSPACE, 0, d->workspace, rows};
            d->workspace += (cg->slot_bytes[s] + 63) / 64 * 64;
            continue;
        }
        if (s == cg->batch_slot) {
            slots[s].kind = NNRT_SLOT_BATCH;
            continue;
        }
        slots[s].kind = s == cg->err_slot ? NNRT_SLOT_ERRORS : NNRT_SLOT_SCRATCH;
        int64_t *need = cg->slot_rows[s] ? &d->scratch_rows : &d->scratch;
        if (s != cg->err_slot && cg->slot_bytes[s] > *need)
            *need = cg->slot_bytes[s];
    }
    for (int k = 0; k < cg->nkernels; k++) {
        const NnCgKernel *kn = &cg->kernels[k];
        ks[k] = (NnrtStepKernel){dup_str(kn->name), NULL, kn->work >= NN_PAR_WORK, 0, kn->few};
        if (kn->batch) {
            // work_fixed + per_row * rows: worth a dispatch from this many rows on.
            double per_row = (kn->work - kn->work_fixed) / (double)cg->rt_ref;
            double rows = kn->work_fixed >= NN_PAR_WORK ? 0
                        : per_row > 0 ? ceil((NN_PAR_WORK - kn->work_fixed) / per_row)
                                      : -1;
            ks[k].par = rows >= 0;
            ks[k].par_rows = rows > 0 ? (int64_t)rows : 0;
        }
    }
    d->noutputs = g->noutputs;
    for (int k = 0; k < g->noutputs; k++)
        outs[k] = tensor_of(cg, g->outputs[k].id, g->outputs[k].name, g->outputs[k].id);
    d->nupdates = g->nupdates;
    NnId *lead = malloc(((size_t)g->count + 1) * sizeof *lead);
    int *kof = malloc(((size_t)g->count + 1) * sizeof *kof);
    if (lead && kof) // else no update in place: the same results
        kernels_of(cg, lead, kof);
    for (int k = 0; k < g->nupdates; k++)
        ups[k] = (NnrtStepUpdate){var_index(g, vars, d->nvars, g->updates[k].var),
                                  g->updates[k].value,
                                  lead && kof ? in_place_kernel(cg, kof, lead, k) : 0};
    free(lead), free(kof);
    d->nchecks = cg->nerr;
    for (int k = 0; k < cg->nerr; k++)
        checks[k] = cg->checks[k];
    return d;
}

bool nn_llvm_step_lanes(NnrtStep *d, const NnCg *cg, char *why, size_t whyn)
{
    const NnGraph *g = cg->g;
    int *rule = calloc((size_t)g->noutputs + 1, sizeof *rule);
    NnrtStepCut *cuts = calloc((size_t)cg->nkernels + 1, sizeof *cuts);
    if (!rule || !cuts) {
        free(rule), free(cuts);
        snprintf(why, whyn, "out of memory");
        return false;
    }
    NnId end = nn_lanes_check(g, cg->rt_sym, rule, why, whyn);
    int nlane = cg->nkernels, ncuts = 0;
    for (int k = 0; end >= 0 && k < cg->nkernels; k++) {
        NnId id = cg->kernels[k].node;
        const NnNode *n = &g->nodes[id];
        if (id >= end && nlane == cg->nkernels)
            nlane = k;
        if (n->op != NN_OP_GRAD_START)
            continue;
        // Its wait: the GRAD_WAIT reading it, and that wait's kernel.
        int w = -1;
        for (int j = k + 1; j < cg->nkernels && w < 0; j++) {
            const NnNode *m = &g->nodes[cg->kernels[j].node];
            if (m->op == NN_OP_GRAD_WAIT && m->in[0] == id)
                w = j;
        }
        if (w < 0 || id >= end) {
            snprintf(why, whyn, "node %d: a cut without its sum", id);
            end = -1;
            break;
        }
        cuts[ncuts++] = (NnrtStepCut){k, w, n->in[0], id, cg->kernels[w].node,
                                      nn_cg_numel(cg, g, id)};
    }
    if (end < 0 || ncuts == 0 || nlane == 0) {
        if (end >= 0)
            snprintf(why, whyn, "no gradient crosses from the rows to the update");
        free(rule), free(cuts);
        return false;
    }
    d->nlane = nlane;
    d->ncuts = ncuts;
    d->cuts = cuts;
    d->out_rule = rule;
    return true;
}

// ---- the sharded update (nn_llvm_step_shard) ----

// Whether node id computes each element from the same element of its inputs
// of its own shape (and from single values): a run over a range of its
// elements then reads only that range of them.
static bool same_elements(const NnGraph *g, NnId id)
{
    const NnNode *n = &g->nodes[id];
    for (int k = 0; k < n->nin; k++) {
        const NnNode *x = &g->nodes[n->in[k]];
        int64_t one = 1;
        for (int d = 0; d < x->shape.rank; d++)
            one *= x->shape.dim[d];
        if (one != 1 && !nn_shape_eq(&x->shape, &n->shape))
            return false;
        if (n->op == NN_OP_BROADCAST && one != 1)
            return false;
    }
    if (n->op == NN_OP_FUSED) {
        const NnGraph *b = n->attr.body;
        if (nn_fuse_form(b) != NN_FUSE_ELEMWISE)
            return false;
        for (NnId j = 0; j < b->count; j++)
            if (!(nn_op_flags(b->nodes[j].op) & NN_OPF_SOURCE) && !same_elements(b, j))
                return false;
        return true;
    }
    return (nn_op_flags(n->op) & NN_OPF_ELEMWISE) || n->op == NN_OP_BROADCAST;
}

static int cmp_shard(const void *a, const void *b)
{
    const NnrtStepShard *x = a, *y = b;
    return x->kernel != y->kernel ? (x->kernel > y->kernel) - (x->kernel < y->kernel)
                                  : (x->kind > y->kind) - (x->kind < y->kind);
}

bool nn_llvm_step_shard(NnrtStep *d, const NnCg *cg, char *why, size_t whyn)
{
    const NnGraph *g = cg->g;
    size_t nn = (size_t)g->count + 1;
    NnId *lead = malloc(nn * sizeof *lead);
    int *kof = malloc(nn * sizeof *kof);
    int64_t *align = calloc(nn, sizeof *align); // a sharded value's split; 0: not sharded
    bool *ksh = calloc((size_t)cg->nkernels + 1, sizeof *ksh);
    NnrtStepShard *sh = calloc((size_t)(2 * cg->nkernels + g->nupdates) + 1, sizeof *sh);
    bool ok = lead && kof && align && ksh && sh;
    const char *me = getenv("NNC_MPI_SHARD_MIN");
    int64_t min = me && atoll(me) > 0 ? atoll(me) : NN_SHARD_MIN;
    if (!ok)
        snprintf(why, whyn, "out of memory");
    if (ok) {
        kernels_of(cg, lead, kof);
        for (NnId i = 0; i < g->count; i++) // the gradients: split as their readers split
            if (g->nodes[i].op == NN_OP_GRAD_WAIT && nn_cg_numel(cg, g, i) >= min)
                align[i] = -1;
    }
    // Every reader of a sharded value runs on the rank's elements only, and so
    // does every value its kernel computes: grow the set until it holds.
    for (bool grew = ok; grew && ok;) {
        grew = false;
        for (NnId i = 0; i < g->count && ok; i++) {
            const NnNode *n = &g->nodes[i];
            int k = kof[i];
            bool reads = false;
            for (int j = 0; j < n->nin; j++)
                reads = reads || align[n->in[j]] != 0;
            if (n->op == NN_OP_GRAD_WAIT || align[i] > 0 || !(reads || (k >= 0 && ksh[k])))
                continue;
            const NnCgKernel *kn = k >= 0 ? &cg->kernels[k] : NULL;
            if (!kn || kn->map_total != nn_cg_numel(cg, g, i) || kn->map_total <= 0 ||
                !same_elements(g, i)) {
                snprintf(why, whyn, "node %d (%s) is not elementwise over a gradient's elements",
                         i, nn_op_name(n->op));
                ok = false;
                break;
            }
            for (int j = 0; j < n->nin && ok; j++) {
                int64_t *a = &align[n->in[j]];
                if (*a == -1) // a gradient's first reader sets its split
                    *a = kn->map_align;
                if (*a > 0 && *a != kn->map_align) {
                    snprintf(why, whyn, "node %d (%s) splits a gradient's elements differently",
                             i, nn_op_name(n->op));
                    ok = false;
                }
            }
            align[i] = kn->map_align;
            ksh[k] = true;
            grew = true;
        }
    }
    for (NnId i = 0; ok && i < g->count; i++) // a gradient no update reads is summed whole
        if (align[i] == -1)
            align[i] = 0;
    for (int k = 0; ok && k < g->noutputs; k++)
        if (align[g->outputs[k].id]) {
            snprintf(why, whyn, "output '%s' is computed on each rank's elements only",
                     g->outputs[k].name);
            ok = false;
        }
    int n = 0;
    for (NnId i = 0; ok && i < g->count; i++)
        if (g->nodes[i].op == NN_OP_GRAD_WAIT && align[i] > 0)
            sh[n++] = (NnrtStepShard){kof[g->nodes[i].in[0]], NNRT_SHARD_SUM, -1,
                                      nn_cg_numel(cg, g, i), align[i]};
    for (int k = 0; ok && k < cg->nkernels; k++)
        if (ksh[k])
            sh[n++] = (NnrtStepShard){k, NNRT_SHARD_RUN, -1, cg->kernels[k].map_total,
                                      cg->kernels[k].map_align};
    for (int u = 0; ok && u < g->nupdates; u++) {
        NnId v = g->updates[u].value;
        NnOp vop = g->nodes[g->updates[u].var].op;
        if (!align[v])
            continue;
        if (vop == NN_OP_PARAM)
            sh[n++] = (NnrtStepShard){kof[v], NNRT_SHARD_GATHER, d->updates[u].slot,
                                      nn_cg_numel(cg, g, v), align[v]};
        else
            sh[n++] = (NnrtStepShard){cg->nkernels, NNRT_SHARD_STATE, d->updates[u].var,
                                      nn_cg_numel(cg, g, v), align[v]};
    }
    bool sums = false; // an evaluation step has none: nothing to say
    for (NnId i = 0; i < g->count; i++)
        sums = sums || g->nodes[i].op == NN_OP_GRAD_WAIT;
    if (ok && n == 0) {
        snprintf(why, whyn, "no gradient of %lld values or more", (long long)min);
        why[0] = sums ? why[0] : 0;
        ok = false;
    }
    free(lead), free(kof), free(align), free(ksh);
    if (!ok) {
        free(sh);
        return false;
    }
    qsort(sh, (size_t)n, sizeof *sh, cmp_shard);
    d->nshards = n;
    d->shards = sh;
    return true;
}

static void tensors_free(const NnrtStepTensor *t, int n)
{
    for (int k = 0; k < n; k++) {
        free((char *)t[k].name);
        free((char *)t[k].type);
    }
    free((void *)t);
}

void nn_llvm_step_free(NnrtStep *d)
{
    if (!d)
        return;
    for (int k = 0; k < d->nkernels; k++)
        free((char *)d->kernels[k].name);
    tensors_free(d->inputs, d->ninputs);
    tensors_free(d->vars, d->nvars);
    tensors_free(d->outputs, d->noutputs);
    free((void *)d->kernels);
    free((void *)d->slots);
    free((void *)d->updates);
    free((void *)d->checks);
    free((void *)d->cuts);
    free((void *)d->out_rule);
    free((void *)d->shards);
    free((char *)d->name);
    free(d);
}


static void write_tensors(FILE *f, const char *cname, const char *what, const NnrtStepTensor *t,
                          int n)
{
    fprintf(f, "static const NnrtStepTensor %s_%s[] = {\n", cname, what);
    for (int k = 0; k < n; k++) {
        fprintf(f, "    {");
        nn_aot_write_c_string(f, t[k].name);
        fprintf(f, ", %d, %d, {", t[k].dtype, t[k].rank);
        for (int d = 0; d < t[k].rank; d++)
            fprintf(f, "%s%lld", d ? ", " : "", (long long)t[k].dims[d]);
        fprintf(f, "}, %d, ", t[k].slot);
        nn_aot_write_c_string(f, t[k].type);
        fprintf(f, "},\n");
    }
    fprintf(f, "    {0}\n};\n");
}

void nn_llvm_step_write_c(const NnrtStep *d, const char *cname, FILE *f)
{
    for (int k = 0; k < d->nkernels; k++)
        fprintf(f, "void %s(void *, int, int);\n", d->kernels[k].name);
    fprintf(f, "static const NnrtStepKernel %s_kernels[] = {\n", cname);
    for (int k = 0; k < d->nkernels; k++)
        fprintf(f, "    {\"%s\", %s, %d, %lld, %d},\n", d->kernels[k].name, d->kernels[k].name,
                d->kernels[k].par, (long long)d->kernels[k].par_rows, d->kernels[k].few);
    fprintf(f, "    {0}\n};\nstatic const NnrtStepSlot %s_slots[] = {\n", cname);
    for (int s = 0; s < d->nslots; s++)
        fprintf(f, "    {%d, %d, %lld, %lld},\n", d->slots[s].kind, d->slots[s].index,
                (long long)d->slots[s].offset, (long long)d->slots[s].row_offset);
    fprintf(f, "    {0}\n};\n");
    write_tensors(f, cname, "inputs", d->inputs, d->ninputs);
    write_tensors(f, cname, "vars", d->vars, d->nvars);
    write_tensors(f, cname, "outputs", d->outputs, d->noutputs);
    fprintf(f, "static const NnrtStepUpdate %s_updates[] = {\n", cname);
    for (int k = 0; k < d->nupdates; k++)
        fprintf(f, "    {%d, %d, %d},\n", d->updates[k].var, d->updates[k].slot,
                d->updates[k].in_place);
    fprintf(f, "    {0}\n};\nstatic const NnrtStepCheck %s_checks[] = {\n", cname);
    for (int k = 0; k < d->nchecks; k++)
        fprintf(f, "    {%d, %d, %lld},\n", d->checks[k].kind, d->checks[k].slot,
                (long long)d->checks[k].bound);
    fprintf(f, "    {0}\n};\n");
    if (d->nshards) {
        fprintf(f, "static const NnrtStepShard %s_shards[] = {\n", cname);
        for (int k = 0; k < d->nshards; k++)
            fprintf(f, "    {%d, %d, %d, %lld, %lld},\n", d->shards[k].kernel, d->shards[k].kind,
                    d->shards[k].slot, (long long)d->shards[k].total,
                    (long long)d->shards[k].align);
        fprintf(f, "    {0}\n};\n");
    }
    fprintf(f, "const NnrtStep %s = {\n    ", cname);
    nn_aot_write_c_string(f, d->name);
    fprintf(f, ", %d, %s_slots, %lld, %lld, %d, %s_kernels,\n", d->nslots, cname,
            (long long)d->workspace, (long long)d->scratch, d->nkernels, cname);
    fprintf(f, "    %d, %d, %d, %d, %d,\n", d->ninputs, d->nvars, d->noutputs, d->nupdates,
            d->nchecks);
    fprintf(f, "    %s_inputs, %s_vars, %s_outputs, %s_updates, %s_checks,\n", cname, cname,
            cname, cname, cname);
    fprintf(f, "    %lld, %lld,\n", (long long)d->workspace_rows, (long long)d->scratch_rows);
    if (d->nshards) // no lanes in a step cut for ranks
        fprintf(f, "    0, 0, 0, 0, %d, %s_shards,\n", d->nshards, cname);
    fprintf(f, "};\n");
}
