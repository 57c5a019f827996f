// Fusion: groups of elementwise, broadcast, reduction and matmul nodes become
// one NN_OP_FUSED node each, whose attr.body (a child graph in the same arena)
// is one of three forms (nn_fuse_form):
//   E: a DAG of FUSIBLE elementwise ops and BROADCASTs, one output;
//   R: an E DAG under one reduction, which is the output;
//   M: one host op of body INPUTs: a contraction (MATMUL, or a convolution or
//      one of its gradients) or a pooling op (EPILOGUE flag; then the output
//      keeps the host's dtype), then an E DAG over its result (bias,
//      activation, gradient mask), output of the host's shape.
// Body INPUTs, in id order, stand for the FUSED node's inputs; CONSTs are copied
// into bodies (never shared across a body boundary), a MATMUL's operands stay INPUTs.
// requires: a verified graph, ideally after dce. provides: every node of a group
// but its root had all its consumers in the group (so nothing is computed twice,
// and since values only leave a group through its root, the graph stays
// acyclic); groups of a single op are left as they are; outputs and update
// values are never absorbed (they may be roots); a group's members take at
// most NN_FUSE_MAXUSES operands in all (ir/pass.h).
#include "attr.h"
#include "pass.h"

#include <stdlib.h>
#include <string.h>

typedef struct Fuse {
    const NnGraph *g;
    int *cstart, *cons; // consumers of node i: cons[cstart[i] .. cstart[i+1])
    bool *ext;          // an output, update value or updated var: needed outside
    NnId *group;        // root of the node's group, or -1
    NnId *lo;           // for a root: its lowest member id
} Fuse;

// By flags only (ops.def): an op joins a kernel as an element-by-element
// step when it is FUSIBLE (elementwise ops and BROADCAST), or as the root when
// it is a REDUCE.
static bool is_elemwise(NnOp op)
{
    return nn_op_has(op, NN_OPF_FUSIBLE) && !nn_op_has(op, NN_OPF_SOURCE);
}

static bool is_reduce(NnOp op) { return nn_op_has(op, NN_OPF_REDUCE); }

// Ops whose result an epilogue can ride on: contractions (the backend keeps
// their tiles in registers) and pooling (whose kernel finishes a plane in
// cache, then applies the epilogue to it in place, so the dtype must stay).
static bool is_host(NnOp op)
{
    return nn_op_has(op, NN_OPF_CONTRACT) || nn_op_has(op, NN_OPF_EPILOGUE);
}

// A product with leading dims (ir/op_matmul.c) keeps its epilogue apart: the
// fused product's loop nest is two-dimensional.
static bool host_fits(const NnNode *host, const NnNode *out)
{
    return nn_shape_eq(&host->shape, &out->shape) &&
           (host->op != NN_OP_MATMUL || host->shape.rank == 2) &&
           (nn_op_has(host->op, NN_OPF_CONTRACT) || host->dtype == out->dtype);
}

static void analyze(Fuse *f, const NnGraph *g)
{
    int n = g->count;
    f->g = g;
    f->cstart = calloc((size_t)n + 2, sizeof(int));
    f->ext = calloc((size_t)n + 1, sizeof(bool));
    f->group = malloc(((size_t)n + 1) * sizeof(NnId));
    f->lo = malloc(((size_t)n + 1) * sizeof(NnId));
    NN_ASSERT(f->cstart && f->ext && f->group && f->lo);
    int edges = 0;
    for (int i = 0; i < n; i++) {
        f->group[i] = -1;
        for (int k = 0; k < g->nodes[i].nin; k++, edges++)
            f->cstart[g->nodes[i].in[k] + 1]++;
    }
    for (int i = 0; i < n; i++)
        f->cstart[i + 1] += f->cstart[i];
    f->cons = malloc(((size_t)edges + 1) * sizeof(int));
    int *fill = calloc((size_t)n + 1, sizeof(int));
    NN_ASSERT(f->cons && fill);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].nin; k++) {
            NnId x = g->nodes[i].in[k];
            f->cons[f->cstart[x] + fill[x]++] = i;
        }
    free(fill);
    for (int i = 0; i < g->noutputs; i++)
        f->ext[g->outputs[i].id] = true;
    for (int i = 0; i < g->nupdates; i++)
        f->ext[g->updates[i].var] = f->ext[g->updates[i].value] = true;
}

static void release(Fuse *f)
{
    free(f->cstart);
    free(f->cons);
    free(f->ext);
    free(f->group);
    free(f->lo);
}

// Whether producer p can join root r's group: every consumer is in the group
// and none is the group's MATMUL (whose operands must stay body INPUTs).
static bool absorbable(const Fuse *f, NnId p, NnId r)
{
    if (f->ext[p] || f->cstart[p] == f->cstart[p + 1])
        return false;
    for (int e = f->cstart[p]; e < f->cstart[p + 1]; e++) {
        int c = f->cons[e];
        if (f->group[c] != r || is_host(f->g->nodes[c].op))
            return false;
    }
    return true;
}

// Grows the group rooted at r over its producers, highest id first, so each
// candidate's consumers are all decided before it. Returns its op count.
static int grow(Fuse *f, NnId r)
{
    const NnGraph *g = f->g;
    bool reduce = is_reduce(g->nodes[r].op), has_mm = false;
    int size = 1, uses = g->nodes[r].nin;
    f->group[r] = r;
    f->lo[r] = r;
    NnId lo = r;
    for (int k = 0; k < g->nodes[r].nin; k++)
        lo = g->nodes[r].in[k] < lo ? g->nodes[r].in[k] : lo;
    for (NnId p = r - 1; p >= lo && p >= 0; p--) {
        const NnNode *n = &g->nodes[p];
        if (f->group[p] != -1 || !absorbable(f, p, r))
            continue;
        if (is_host(n->op)) {
            if (reduce || has_mm || !host_fits(n, &g->nodes[r]))
                continue;
        } else if (!is_elemwise(n->op) || n->op == NN_OP_CONST) {
            continue;
        }
        if (uses + n->nin > NN_FUSE_MAXUSES)
            continue;
        uses += n->nin;
        has_mm |= is_host(n->op);
        f->group[p] = r;
        f->lo[r] = p;
        size++;
        if (is_host(n->op))
            continue; // its operands become body INPUTs
        for (int k = 0; k < n->nin; k++)
            lo = n->in[k] < lo ? n->in[k] : lo;
    }
    return size;
}

static void form_groups(Fuse *f)
{
    for (NnId r = f->g->count - 1; r >= 0; r--) {
        NnOp op = f->g->nodes[r].op;
        if (f->group[r] != -1 || op == NN_OP_CONST || !(is_elemwise(op) || is_reduce(op)))
            continue;
        if (grow(f, r) < 2)
            f->group[r] = -1; // a lone op gains nothing from a body
    }
}

// The operand x of member m comes in through a body INPUT (rather than being a
// member, or a CONST copied into the body).
static bool through_input(const Fuse *f, NnId r, NnId m, NnId x)
{
    if (f->group[x] == r)
        return false;
    return f->g->nodes[x].op != NN_OP_CONST || is_host(f->g->nodes[m].op);
}

// Builds root r's body in rw->g's arena and adds the FUSED node. bmap and
// consts are scratch (old id -> body id of the value / of its CONST copy),
// all -1 on entry and on return.
static NnId emit_group(const Fuse *f, NnRewrite *rw, NnId r, NnId *bmap, NnId *consts)
{
    const NnGraph *g = f->g;
    NnGraph *body = nn_graph_new_child(rw->g);
    NnId *ext = NULL;
    int next = 0, cap = 0;
    // Pass 1: the external operands, in first-use order, as body INPUTs.
    for (NnId m = f->lo[r]; m <= r; m++) {
        if (f->group[m] != r)
            continue;
        for (int k = 0; k < g->nodes[m].nin; k++) {
            NnId x = g->nodes[m].in[k];
            if (!through_input(f, r, m, x) || bmap[x] >= 0)
                continue;
            if (next == cap) {
                cap = cap ? 2 * cap : 8;
                ext = realloc(ext, (size_t)cap * sizeof *ext);
                NN_ASSERT(ext);
            }
            ext[next++] = x;
            bmap[x] = nn_ir_source(body, NN_OP_INPUT, NULL, g->nodes[x].dtype, &g->nodes[x].shape,
                                   g->nodes[x].loc);
            NN_ASSERT(bmap[x] >= 0);
        }
    }
    // Pass 2: members in order, with CONST operands copied in as needed.
    for (NnId m = f->lo[r]; m <= r; m++) {
        if (f->group[m] != r)
            continue;
        const NnNode *n = &g->nodes[m];
        NnId in[3];
        NN_ASSERT(n->nin <= 3);
        for (int k = 0; k < n->nin; k++) {
            NnId x = n->in[k];
            if (through_input(f, r, m, x) || f->group[x] == r) {
                in[k] = bmap[x];
            } else {
                if (consts[x] < 0)
                    consts[x] = nn_ir_add(body, NN_OP_CONST, NULL, 0, &g->nodes[x].attr,
                                          g->nodes[x].loc);
                in[k] = consts[x];
            }
            NN_ASSERT(in[k] >= 0);
        }
        // Strings and bodies (an EXTERN's symbol, library and derivative) must
        // live in the new graph's arena: the old graph is freed after the pass.
        NnAttr a = nn_attr_copy(rw->g, n->op, &n->attr);
        bmap[m] = nn_ir_add(body, n->op, in, n->nin, &a, n->loc);
        NN_ASSERT(bmap[m] >= 0);
    }
    nn_graph_add_output(body, "out", bmap[r]);
    for (NnId m = f->lo[r]; m <= r; m++) {
        if (f->group[m] != r)
            continue;
        bmap[m] = -1;
        for (int k = 0; k < g->nodes[m].nin; k++)
            bmap[g->nodes[m].in[k]] = consts[g->nodes[m].in[k]] = -1;
    }
    NN_ASSERT(nn_fuse_form(body) != NN_FUSE_NONE);
    NnId *ins = nn_arena_alloc(rw->g->arena, ((size_t)next + 1) * sizeof(NnId));
    for (int k = 0; k < next; k++) {
        ins[k] = rw->map[ext[k]];
        NN_ASSERT(ins[k] >= 0);
    }
    free(ext);
    NnAttr fa = {0};
    fa.body = body;
    return nn_rewrite_add(rw, NN_OP_FUSED, ins, next, &fa, g->nodes[r].loc);
}

NnGraph *nn_pass_fuse(NnGraph *g)
{
    Fuse f;
    analyze(&f, g);
    form_groups(&f);
    NnRewrite rw;
    nn_rewrite_begin(&rw, g);
    NnId *bmap = malloc(((size_t)g->count + 1) * sizeof(NnId));
    NnId *consts = malloc(((size_t)g->count + 1) * sizeof(NnId));
    NN_ASSERT(bmap && consts);
    for (int i = 0; i < g->count; i++)
        bmap[i] = consts[i] = -1;
    for (NnId i = 0; i < g->count; i++) {
        if (f.group[i] < 0) {
            nn_rewrite_copy(&rw, i);
        } else if (f.group[i] == i) {
            rw.map[i] = emit_group(&f, &rw, i, bmap, consts);
            rw.changed = true;
        }
    }
    free(bmap);
    free(consts);
    release(&f);
    NnGraph *h = nn_rewrite_end(&rw);
    if (h == g)
        return g;
    // CONSTs copied into bodies may have no outside user left.
    NnGraph *clean = nn_pass_dce(h);
    if (clean != h)
        nn_graph_free(h);
    return clean;
}

// ---- forms ----

static bool inputs_only(const NnGraph *b, const NnNode *n)
{
    for (int k = 0; k < n->nin; k++)
        if (b->nodes[n->in[k]].op != NN_OP_INPUT)
            return false;
    return true;
}

NnFuseForm nn_fuse_form(const NnGraph *b)
{
    if (!b || b->noutputs != 1)
        return NN_FUSE_NONE;
    NnId out = b->outputs[0].id;
    int mm = -1, reduce = 0;
    for (NnId i = 0; i < b->count; i++) {
        const NnNode *n = &b->nodes[i];
        if (n->op == NN_OP_INPUT || n->op == NN_OP_CONST || is_elemwise(n->op))
            continue;
        if (is_host(n->op) && mm < 0 && inputs_only(b, n))
            mm = i;
        else if (is_reduce(n->op) && i == out)
            reduce++;
        else
            return NN_FUSE_NONE;
    }
    if (mm >= 0 && reduce)
        return NN_FUSE_NONE;
    if (reduce)
        return NN_FUSE_REDUCE;
    if (mm >= 0)
        return host_fits(&b->nodes[mm], &b->nodes[out]) ? NN_FUSE_MATMUL : NN_FUSE_NONE;
    return NN_FUSE_ELEMWISE;
}

// ---- multi-output kernels ----
//
// After fusion an optimizer's update is still several elementwise kernels of
// one shape that read each other or the same operands (Adam: m' and v' both
// read the gradient, w' reads m' and v'), each streaming its operands from
// memory again. One loop computing them all reads each operand once and
// stores each result once. Decided by form and shape alone: node p joins the
// group of a later lead L (itself such a kernel) when p is an elementwise
// kernel that fusion built (an E-form FUSED node) of L's shape, every
// reader of p is in the group (so nothing needs p before L's place; outputs
// and updates read it after the run), and p is read by a member or shares a
// non-scalar operand with one. Members keep their nodes and buffers, so the
// interpreter runs them one by one and the update buffers' swap is unchanged;
// the plan keeps members' operands and results alive through L's step, where
// all of them are read and written.
//
// A group may also take the product whose result its members read (an
// M-form FUSED node over a 2-D MATMUL, the weight gradient of an optimizer's
// update): the members are then computed in the product's epilogue on each
// finished tile (backend/llvm/lower.c), so the gradient tile goes from
// registers into the update and memory sees only w, m, v and their new
// values. The product joins when it has the members' shape and dtype, that
// shape has no symbolic dims (a weight's), it reads no member, and every
// reader of it is a member or comes after the lead (those read its stored
// value). A gradient summed across ranks or lanes passes a GRAD_START /
// GRAD_WAIT first, so a sharded update never meets its product here.

#define MULTI_GAP 8 // how far below its lowest member a group looks

// Only kernels that fusion built join: a graph run without fusion
// (NN_JIT_NOFUSE, FUSED bodies themselves) keeps one kernel per op.
static bool is_map(const NnNode *n)
{
    return n->op == NN_OP_FUSED && nn_fuse_form(n->attr.body) == NN_FUSE_ELEMWISE;
}

static bool shares_operand(const NnGraph *g, const NnId *lead, NnId p, NnId r)
{
    const NnNode *n = &g->nodes[p];
    for (int k = 0; k < n->nin; k++) {
        NnId x = n->in[k];
        if (g->nodes[x].shape.rank == 0 || g->nodes[x].op == NN_OP_CONST)
            continue;
        for (NnId m = p + 1; m <= r; m++) {
            if (lead[m] != r)
                continue;
            for (int j = 0; j < g->nodes[m].nin; j++)
                if (g->nodes[m].in[j] == x)
                    return true;
        }
    }
    return false;
}

// Whether node x can join group r (lead r, members marked in lead) as the
// product computing its members in its epilogue.
static bool joins_as_host(const NnGraph *g, const NnId *lead, const int *cstart,
                          const int *cons, NnId x, NnId r)
{
    const NnNode *xn = &g->nodes[x], *rn = &g->nodes[r];
    if (lead[x] != -1 || xn->op != NN_OP_FUSED || nn_fuse_form(xn->attr.body) != NN_FUSE_MATMUL ||
        nn_graph_count_op(xn->attr.body, NN_OP_MATMUL) != 1 || xn->dtype != rn->dtype ||
        !nn_shape_eq(&xn->shape, &rn->shape) || rn->shape.rank != 2)
        return false;
    for (int d = 0; d < rn->shape.rank; d++)
        if (rn->shape.dim[d] < 0)
            return false;
    for (int k = 0; k < xn->nin; k++)
        if (lead[xn->in[k]] == r)
            return false;
    for (int e = cstart[x]; e < cstart[x + 1]; e++)
        if (lead[cons[e]] != r && cons[e] < r)
            return false;
    return true;
}

void nn_fuse_multi(const NnGraph *g, NnId *lead)
{
    int n = g->count;
    int *cstart = calloc((size_t)n + 2, sizeof(int));
    NN_ASSERT(cstart);
    int edges = 0;
    for (NnId i = 0; i < n; i++) {
        lead[i] = -1;
        for (int k = 0; k < g->nodes[i].nin; k++, edges++)
            cstart[g->nodes[i].in[k] + 1]++;
    }
    for (int i = 0; i < n; i++)
        cstart[i + 1] += cstart[i];
    int *cons = malloc(((size_t)edges + 1) * sizeof(int));
    int *fill = calloc((size_t)n + 1, sizeof(int));
    NN_ASSERT(cons && fill);
    for (NnId i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].nin; k++) {
            NnId x = g->nodes[i].in[k];
            cons[cstart[x] + fill[x]++] = i;
        }
    free(fill);
    // NN_JIT_NOMULTI=1: one kernel per FUSED node, to measure what this saves.
    const char *off = getenv("NN_JIT_NOMULTI");
    for (NnId r = n - 1; r > 0 && !(off && *off && *off != '0'); r--) {
        const NnNode *rn = &g->nodes[r];
        if (lead[r] != -1 || !is_map(rn))
            continue;
        lead[r] = r;
        int size = 1;
        NnId lo = r;
        for (NnId p = r - 1; p >= 0 && p >= lo - MULTI_GAP && size < NN_FUSE_MULTI_MAX; p--) {
            const NnNode *pn = &g->nodes[p];
            if (lead[p] != -1 || !is_map(pn) || !nn_shape_eq(&pn->shape, &rn->shape))
                continue;
            bool read = false, all = true;
            for (int e = cstart[p]; e < cstart[p + 1] && all; e++) {
                all = lead[cons[e]] == r;
                read = true;
            }
            if (!all || !(read || shares_operand(g, lead, p, r)))
                continue;
            lead[p] = r;
            lo = p;
            size++;
        }
        // The product the members read, highest first (NN_JIT_NOEPI=1 keeps
        // it apart, to measure what this saves).
        const char *noepi = getenv("NN_JIT_NOEPI");
        NnId host = -1;
        for (NnId m = lo; m <= r && size < NN_FUSE_MULTI_MAX && !(noepi && *noepi && *noepi != '0');
             m++)
            for (int k = 0; lead[m] == r && k < g->nodes[m].nin; k++) {
                NnId x = g->nodes[m].in[k];
                if (x > host && joins_as_host(g, lead, cstart, cons, x, r))
                    host = x;
            }
        if (host >= 0) {
            lead[host] = r;
            size++;
        }
        if (size == 1)
            lead[r] = -1;
    }
    free(cstart);
    free(cons);
}

// ---- pooling inside the convolution's kernel ----

// The convolution (bare or hosting a FUSED body) whose kernel also computes
// pooling node `pool`: the pool reads the convolution's result and comes right
// after it, and its windows tile the rows without overlap or padding (window
// = stride, no padding, no dilation), so a band of whole windows' rows of the
// convolution's output can be pooled as soon as it is stored, while it is in
// cache. The convolution's result stays a value of its own (a training step
// reads it again for the gradients). Backends that do not fuse may ignore
// this; the memory plan keeps the convolution's operands alive through the
// pool's step, since the pool's result is written while they are read.
NnId nn_fuse_pool_host(const NnGraph *g, NnId pool)
{
    if (pool < 1 || pool >= g->count)
        return -1;
    const NnNode *p = &g->nodes[pool];
    if ((p->op != NN_OP_MAX_POOL2D && p->op != NN_OP_AVG_POOL2D) || p->in[0] != pool - 1)
        return -1;
    const NnNode *c = &g->nodes[pool - 1];
    if (c->dtype != p->dtype || (c->dtype != NN_DT_F32 && c->dtype != NN_DT_F64))
        return -1;
    if (c->op == NN_OP_FUSED) {
        const NnGraph *b = c->attr.body;
        if (nn_fuse_form(b) != NN_FUSE_MATMUL || nn_graph_count_op(b, NN_OP_CONV2D) != 1)
            return -1;
    } else if (c->op != NN_OP_CONV2D) {
        return -1;
    }
    const NnConv2d *a = &p->attr.conv;
    for (int d = 0; d < 2; d++)
        if (a->kernel[d] != a->stride[d] || a->dilation[d] > 1)
            return -1;
    for (int d = 0; d < 4; d++)
        if (a->pad[d] != 0)
            return -1;
    return pool - 1;
}
