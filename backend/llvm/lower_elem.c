// Elementwise expressions: a small DAG (one node of the main graph, or a FUSED
// body) evaluated at one point of an iteration space, w lanes at a time. Leaves
// are buffers read with broadcast strides (0 along broadcast dims), so
// BROADCAST nodes and numpy broadcasting cost nothing; CONSTs become immediates.
// nn_expr_emit_map writes such an expression over its whole space: dims that
// are contiguous for every operand merge, rows split over threads, and the
// innermost dim runs as <16 x T> vectors plus a scalar tail.
#include <stdlib.h>
#include <string.h>

#include "nn_llvm.h"
#include "pass.h"

#define NN_VW 16

static NnLeaf *add_leaf(NnExpr *e, NnId id)
{
    for (int i = 0; i < e->nleaf; i++)
        if (e->leaf[i].id == id && !e->leaf[i].index)
            return &e->leaf[i];
    NN_ASSERT(e->nleaf < NN_EXPR_MAXLEAF);
    NnLeaf *l = &e->leaf[e->nleaf++];
    memset(l, 0, sizeof *l);
    l->id = id;
    l->slot = -1;
    return l;
}

// A DROPOUT needs each element's flat index in its own shape.
static void add_index_leaf(NnCg *cg, NnExpr *e, NnId id)
{
    NN_ASSERT(e->nleaf < NN_EXPR_MAXLEAF);
    NnLeaf *l = &e->leaf[e->nleaf++];
    memset(l, 0, sizeof *l);
    l->id = id;
    l->index = true;
    l->slot = -1;
    l->dt = NN_DT_I32;
    nn_cg_shape(cg, e->g, id, &l->rank, l->dims);
}

static void expr_start(NnCg *cg, NnExpr *e, const NnGraph *g, NnId root)
{
    memset(e, 0, sizeof *e);
    e->g = g;
    e->root = root;
    e->hole = -1;
}

bool nn_expr_node(NnCg *cg, NnExpr *e, NnId id)
{
    const NnGraph *g = cg->g;
    const NnNode *n = &g->nodes[id];
    expr_start(cg, e, g, id);
    if (n->op != NN_OP_CONST) {
        for (int k = 0; k < n->nin; k++) {
            const NnNode *x = &g->nodes[n->in[k]];
            if (x->op == NN_OP_CONST)
                continue; // inlined
            NnLeaf *l = add_leaf(e, n->in[k]);
            l->slot = n->in[k];
            l->dt = x->dtype;
            nn_cg_shape(cg, g, n->in[k], &l->rank, l->dims);
        }
    }
    if (n->op == NN_OP_DROPOUT)
        add_index_leaf(cg, e, id);
    int r;
    int64_t d[NN_MAX_RANK];
    nn_cg_shape(cg, g, id, &r, d);
    nn_expr_iter(cg, e, r, d);
    e->rt = nn_cg_rt(cg, g, id);
    return true;
}

// An expression that just reads node `id` of the main graph (for reductions
// and layout kernels).
void nn_expr_read(NnCg *cg, NnExpr *e, NnId id)
{
    expr_start(cg, e, cg->g, id);
    NnLeaf *l = add_leaf(e, id);
    l->slot = id;
    l->dt = cg->g->nodes[id].dtype;
    nn_cg_shape(cg, cg->g, id, &l->rank, l->dims);
    if (cg->g->nodes[id].op == NN_OP_CONST) {
        l->is_const = true;
        l->value = cg->g->nodes[id].attr.value;
    }
    nn_expr_iter(cg, e, l->rank, l->dims);
    e->rt = nn_cg_rt(cg, cg->g, id);
}

bool nn_expr_body(NnCg *cg, NnExpr *e, NnId fused, NnId root)
{
    const NnNode *fn = &cg->g->nodes[fused];
    const NnGraph *b = fn->attr.body;
    expr_start(cg, e, b, root);
    int k = 0;
    for (NnId i = 0; i < b->count && i <= root; i++) {
        const NnNode *n = &b->nodes[i];
        if (n->op == NN_OP_INPUT) {
            NnId outer = fn->in[k++];
            const NnNode *on = &cg->g->nodes[outer];
            NnLeaf *l = add_leaf(e, i);
            l->slot = outer;
            l->dt = n->dtype;
            nn_cg_shape(cg, b, i, &l->rank, l->dims);
            if (on->op == NN_OP_CONST) {
                l->is_const = true;
                l->value = on->attr.value;
            }
        } else if (n->op == NN_OP_DROPOUT) {
            add_index_leaf(cg, e, i);
        }
    }
    int r;
    int64_t d[NN_MAX_RANK];
    nn_cg_shape(cg, b, root, &r, d);
    nn_expr_iter(cg, e, r, d);
    e->rt = nn_cg_rt(cg, b, root);
    return true;
}

void nn_expr_iter(NnCg *cg, NnExpr *e, int rank, const int64_t *dims)
{
    e->rank = rank;
    memcpy(e->dims, dims, (size_t)rank * sizeof(int64_t));
    for (int i = 0; i < e->nleaf; i++) {
        NnLeaf *l = &e->leaf[i];
        int64_t s = 1;
        for (int d = rank - 1; d >= 0; d--) {
            int ld = d - (rank - l->rank);
            if (ld < 0) {
                l->stride[d] = 0;
                continue;
            }
            l->stride[d] = l->dims[ld] == 1 ? 0 : s;
            s *= l->dims[ld];
        }
    }
}

void nn_expr_bind(NnCg *cg, NnExpr *e)
{
    for (int i = 0; i < e->nleaf; i++) {
        NnLeaf *l = &e->leaf[i];
        if (!l->index && !l->is_const)
            l->base = nn_cg_buf(cg, l->slot);
    }
    for (int x = 0; e->more && x < e->more->n; x++) {
        nn_expr_bind(cg, e->more->e[x]);
        e->more->out[x] = nn_cg_buf(cg, e->more->slot[x]);
    }
}

void nn_expr_at(NnCg *cg, NnExpr *e, LLVMValueRef *idx)
{
    for (int i = 0; i < e->nleaf; i++) {
        NnLeaf *l = &e->leaf[i];
        LLVMValueRef off = nn_cg_i64(cg, 0);
        for (int d = 0; d < e->rank; d++) {
            if (!idx[d] || l->stride[d] == 0)
                continue;
            LLVMValueRef t = l->stride[d] == 1
                                 ? idx[d]
                                 : LLVMBuildNSWMul(cg->b, idx[d], nn_cg_i64(cg, l->stride[d]), "");
            off = LLVMBuildNSWAdd(cg->b, off, t, "");
        }
        l->off = off;
    }
}

bool nn_expr_vectorizable(const NnExpr *e, int dim)
{
    for (int i = 0; i < e->nleaf; i++)
        if (e->leaf[i].stride[dim] != 0 && e->leaf[i].stride[dim] != 1)
            return false;
    return true;
}

static const NnLeaf *find_leaf(const NnExpr *e, NnId id, bool index)
{
    for (int i = 0; i < e->nleaf; i++)
        if (e->leaf[i].id == id && e->leaf[i].index == index)
            return &e->leaf[i];
    return NULL;
}

// <0, 1, .., w-1> * stride + off, as i64 lanes.
static LLVMValueRef lane_index(NnCg *cg, LLVMValueRef off, int64_t stride, int w)
{
    LLVMValueRef v = nn_cg_splat(cg, off, w);
    if (w == 1 || stride == 0)
        return v;
    LLVMValueRef lanes[64];
    for (int i = 0; i < w; i++)
        lanes[i] = nn_cg_i64(cg, i * stride);
    return LLVMBuildAdd(cg->b, v, LLVMConstVector(lanes, (unsigned)w), "");
}

static LLVMValueRef shared(const NnShare *s, int slot)
{
    for (int i = 0; s && i < s->n; i++)
        if (s->slot[i] == slot)
            return s->val[i];
    return NULL;
}

typedef struct EvalCtx {
    int w, vdim;
    LLVMValueRef mask, hole;
} EvalCtx;

static LLVMValueRef eval(NnCg *cg, NnExpr *e, NnId id, const EvalCtx *c)
{
    for (int i = 0; i < e->nmemo; i++)
        if (e->memo_id[i] == id)
            return e->memo_val[i];
    const NnNode *n = &e->g->nodes[id];
    const NnLeaf *l = id == e->hole ? NULL : find_leaf(e, id, false);
    LLVMValueRef v;
    if (id == e->hole) {
        v = c->hole;
    } else if (l && l->is_const) {
        v = nn_cg_const(cg, l->dt, l->value, c->w);
    } else if (l && (v = shared(e->share, l->slot))) {
        // computed by an earlier member of a multi-output kernel, or loaded
    } else if (l) {
        bool vec = c->w > 1 && l->stride[c->vdim] == 1;
        v = nn_cg_load(cg, l->dt, l->base, l->off, vec ? c->w : 1, vec ? c->mask : NULL);
        if (!vec)
            v = nn_cg_splat(cg, v, c->w);
        if (e->share && e->share->n < NN_SHARE_MAX) {
            e->share->slot[e->share->n] = l->slot;
            e->share->val[e->share->n++] = v;
        }
    } else if (n->op == NN_OP_CONST) {
        v = nn_cg_const(cg, n->dtype, n->attr.value, c->w);
    } else if (n->op == NN_OP_BROADCAST) {
        v = eval(cg, e, n->in[0], c);
    } else {
        NN_ASSERT(nn_op_has(n->op, NN_OPF_ELEMWISE) && n->nin <= 3);
        LLVMValueRef a[3];
        for (int k = 0; k < n->nin; k++)
            a[k] = eval(cg, e, n->in[k], c);
        LLVMValueRef idx = NULL;
        if (n->op == NN_OP_DROPOUT) {
            const NnLeaf *il = find_leaf(e, id, true);
            NN_ASSERT(il);
            idx = lane_index(cg, il->off, il->stride[c->vdim], c->w);
        }
        NnDType in_dt = e->g->nodes[n->in[n->op == NN_OP_SELECT ? 1 : 0]].dtype;
        if (n->op == NN_OP_SELECT) {
            // c != 0, with a NaN condition counting as true (as in C).
            NnDType cdt = e->g->nodes[n->in[0]].dtype;
            LLVMValueRef z = nn_cg_const(cg, cdt, 0, c->w);
            a[0] = cdt == NN_DT_I32 ? LLVMBuildICmp(cg->b, LLVMIntNE, a[0], z, "")
                                    : LLVMBuildFCmp(cg->b, LLVMRealUNE, a[0], z, "");
        }
        v = nn_cg_elem_op(cg, n, in_dt, a, c->w, idx);
    }
    if (e->nmemo < NN_EXPR_MAXMEMO) {
        e->memo_id[e->nmemo] = id;
        e->memo_val[e->nmemo++] = v;
    }
    return v;
}

LLVMValueRef nn_expr_eval(NnCg *cg, NnExpr *e, int w, int vdim, LLVMValueRef mask,
                          LLVMValueRef hole)
{
    EvalCtx c = {w, vdim, mask, hole};
    e->nmemo = 0;
    return eval(cg, e, e->root, &c);
}

// Asks for base[off]'s cache line (llvm.prefetch into L1, with write intent
// when `write`). Never faults, so off may run past the buffer (a masked
// panel's second vector): a plain GEP, not inbounds.
static void prefetch(NnCg *cg, NnDType dt, LLVMValueRef base, LLVMValueRef off, bool write)
{
    LLVMValueRef p = LLVMBuildGEP2(cg->b, nn_cg_type(cg, dt), base, &off, 1, "");
    LLVMValueRef args[4] = {p, nn_cg_i32(cg, write), nn_cg_i32(cg, 3), nn_cg_i32(cg, 1)};
    nn_cg_intrinsic(cg, "llvm.prefetch", &cg->t_ptr, 1, args, 4);
}

void nn_expr_prefetch(NnCg *cg, NnExpr *e, LLVMValueRef *idx, LLVMValueRef off)
{
    NnEpiMore *mo = e->more;
    if (!mo)
        return;
    int seen[NN_FUSE_MULTI_MAX + 1 + NN_FUSE_MULTI_MAX * NN_EXPR_MAXLEAF], n = 0;
    for (int x = 0; x < mo->n; x++) {
        prefetch(cg, mo->dt[x], mo->out[x], off, true);
        seen[n++] = mo->slot[x];
    }
    seen[n++] = mo->host; // the product's value: computed, not loaded
    for (int x = 0; x < mo->n; x++) {
        NnExpr *m = mo->e[x];
        nn_expr_at(cg, m, idx);
        for (int i = 0; i < m->nleaf; i++) {
            NnLeaf *l = &m->leaf[i];
            bool full = !l->index && !l->is_const && m->rank == 2;
            for (int d = 0; full && d < m->rank; d++)
                full = l->stride[d] != 0;
            for (int j = 0; full && j < n; j++)
                full = seen[j] != l->slot;
            if (!full)
                continue; // broadcast scalars stay in L1 anyway
            prefetch(cg, l->dt, l->base, l->off, false);
            seen[n++] = l->slot;
        }
    }
}

LLVMValueRef nn_expr_epilogue(NnCg *cg, NnExpr *e, LLVMValueRef *idx, int w, LLVMValueRef mask,
                              LLVMValueRef acc, NnDType out_dt, LLVMValueRef out, LLVMValueRef off)
{
    NnEpiMore *mo = e->more;
    if (mo)
        mo->share->n = 0;
    nn_expr_at(cg, e, idx);
    LLVMValueRef v = nn_expr_eval(cg, e, w, 1, mask, acc);
    // The members read the product's value by its slot, as they read one
    // another's (nn_cg_emit_multi), and operands loaded above once. A value
    // the table cannot hold is stored, so the members load it instead.
    NnShare *s = mo ? mo->share : NULL;
    if (!mo || mo->keep || s->n >= NN_SHARE_MAX)
        nn_cg_store(cg, out_dt, v, out, off, w, mask);
    if (!mo)
        return v;
    if (s->n < NN_SHARE_MAX) {
        s->slot[s->n] = mo->host;
        s->val[s->n++] = v;
    }
    for (int x = 0; x < mo->n; x++) {
        nn_expr_at(cg, mo->e[x], idx);
        LLVMValueRef y = nn_expr_eval(cg, mo->e[x], w, 1, mask, NULL);
        nn_cg_store(cg, mo->dt[x], y, mo->out[x], off, w, mask);
        if (s->n < NN_SHARE_MAX) {
            s->slot[s->n] = mo->slot[x];
            s->val[s->n++] = y;
        }
    }
    return v;
}

// Merges dims that every stream (every leaf of es[0..n) and the dense
// outputs) walks contiguously, and drops dims of extent 1. The expressions
// share one iteration space; ostride gets the outputs' strides.
static void coalesce(NnExpr **es, int n, int64_t *ostride)
{
    int rank = es[0]->rank;
    int64_t os[NN_MAX_RANK], s = 1, dims[NN_MAX_RANK], o[NN_MAX_RANK];
    for (int d = rank - 1; d >= 0; d--) {
        os[d] = s;
        s *= es[0]->dims[d];
    }
    // inner[k]: the innermost source dim merged into new dim k.
    int nd = 0, inner[NN_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        int64_t ext = es[0]->dims[d];
        if (ext == 1)
            continue;
        bool merge = nd > 0 && os[inner[nd - 1]] == os[d] * ext;
        for (int x = 0; merge && x < n; x++)
            for (int i = 0; merge && i < es[x]->nleaf; i++)
                merge = es[x]->leaf[i].stride[inner[nd - 1]] == es[x]->leaf[i].stride[d] * ext;
        if (merge) {
            dims[nd - 1] *= ext;
        } else {
            dims[nd++] = ext;
        }
        inner[nd - 1] = d;
        o[nd - 1] = os[d];
    }
    for (int x = 0; x < n; x++) {
        NnExpr *e = es[x];
        for (int i = 0; i < e->nleaf; i++) {
            int64_t ls[NN_MAX_RANK] = {0};
            for (int k = 0; k < nd; k++)
                ls[k] = e->leaf[i].stride[inner[k]];
            memcpy(e->leaf[i].stride, ls, (size_t)(nd ? nd : 1) * sizeof(int64_t));
        }
        e->rank = nd ? nd : 1;
        if (nd)
            memcpy(e->dims, dims, (size_t)nd * sizeof(int64_t));
        else
            e->dims[0] = 1;
    }
    if (nd == 0)
        o[0] = 1;
    memcpy(ostride, o, (size_t)(nd ? nd : 1) * sizeof(int64_t));
}

static LLVMValueRef dot_offset(NnCg *cg, LLVMValueRef *idx, const int64_t *stride, int rank)
{
    LLVMValueRef off = nn_cg_i64(cg, 0);
    for (int d = 0; d < rank; d++)
        if (idx[d] && stride[d])
            off = LLVMBuildNSWAdd(cg->b, off,
                                  LLVMBuildNSWMul(cg->b, idx[d], nn_cg_i64(cg, stride[d]), ""), "");
    return off;
}

// idx[0..n) := the multi-index of flat `r` over dims[0..n).
void nn_cg_decode(NnCg *cg, LLVMValueRef r, const int64_t *dims, int n, LLVMValueRef *idx)
{
    for (int d = n - 1; d >= 0; d--) {
        if (d == 0) {
            idx[d] = r;
            break;
        }
        LLVMValueRef ext = nn_cg_i64(cg, dims[d]);
        idx[d] = LLVMBuildURem(cg->b, r, ext, "");
        r = LLVMBuildUDiv(cg->b, r, ext, "");
    }
}

// Expressions written over one iteration space, each to its own dense output.
typedef struct Map {
    int n;
    NnExpr **e;
    LLVMValueRef out[NN_FUSE_MULTI_MAX];
    NnDType dt[NN_FUSE_MULTI_MAX];
    int slot[NN_FUSE_MULTI_MAX];
    int64_t os[NN_MAX_RANK];
    NnShare *share; // several expressions: values loaded or computed at this point
} Map;

// Stores each expression at idx (innermost dim = j) into its output, w lanes.
static void map_point(NnCg *cg, Map *m, LLVMValueRef *idx, int w, LLVMValueRef mask)
{
    int rank = m->e[0]->rank;
    LLVMValueRef off = dot_offset(cg, idx, m->os, rank);
    if (m->share)
        m->share->n = 0;
    for (int x = 0; x < m->n; x++) {
        nn_expr_at(cg, m->e[x], idx);
        LLVMValueRef v = nn_expr_eval(cg, m->e[x], w, rank - 1, mask, NULL);
        nn_cg_store(cg, m->dt[x], v, m->out[x], off, w, mask);
        if (m->share && m->share->n < NN_SHARE_MAX) {
            m->share->slot[m->share->n] = m->slot[x];
            m->share->val[m->share->n++] = v;
        }
    }
}

// Inner loop over [lo, hi) of the last dim: vectors, then a scalar tail.
static void map_inner(NnCg *cg, Map *m, LLVMValueRef *idx, LLVMValueRef lo, LLVMValueRef hi,
                      int w)
{
    int last = m->e[0]->rank - 1;
    LLVMValueRef start = lo;
    if (w > 1) {
        NnLoop l;
        nn_cg_loop_begin(cg, &l, lo, hi, w);
        idx[last] = l.iv;
        map_point(cg, m, idx, w, NULL);
        nn_cg_loop_end(cg, &l);
        start = l.iv;
    }
    NnLoop t;
    nn_cg_loop_begin(cg, &t, start, hi, 1);
    idx[last] = t.iv;
    map_point(cg, m, idx, 1, NULL);
    nn_cg_loop_end(cg, &t);
}

// The same over all of a constant last dim n: the tail is one masked vector
// (rows of 10, as in a classifier's logits, ran scalar before: the softmax
// gradient of [1024, 10] took 43 us on 2 threads). Every lane computes what
// the scalar point did (the vector exp and log are the scalar ones lane by
// lane), so the results are the same bits.
static void map_row(NnCg *cg, Map *m, LLVMValueRef *idx, int64_t n, int w)
{
    int last = m->e[0]->rank - 1;
    int64_t full = w > 1 ? n / w * w : 0;
    if (w == 1 || n == full) {
        map_inner(cg, m, idx, nn_cg_i64(cg, 0), nn_cg_i64(cg, n), w);
        return;
    }
    if (full > 0) {
        NnLoop l;
        nn_cg_loop_begin(cg, &l, nn_cg_i64(cg, 0), nn_cg_i64(cg, full), w);
        idx[last] = l.iv;
        map_point(cg, m, idx, w, NULL);
        nn_cg_loop_end(cg, &l);
    }
    idx[last] = nn_cg_i64(cg, full);
    map_point(cg, m, idx, w, nn_cg_mask(cg, w, (int)(n - full)));
}

// The loop nest of m over its (coalesced) iteration space: rows split over
// threads, the innermost dim vectorized when every expression allows it.
static void emit_maps(NnCg *cg, Map *m)
{
    coalesce(m->e, m->n, m->os);
    bool vec = true;
    NnExpr *e = m->e[0];
    int last = e->rank - 1;
    for (int x = 0; x < m->n; x++) {
        nn_expr_bind(cg, m->e[x]);
        m->out[x] = nn_cg_buf(cg, m->slot[x]);
        vec &= nn_expr_vectorizable(m->e[x], last);
    }
    int w = vec ? NN_VW : 1;
    LLVMValueRef idx[NN_MAX_RANK] = {0}, lo, hi;
    NnCgKernel *k = &cg->kernels[cg->nkernels - 1];
    k->map_total = k->map_align = 0;
    if (!e->rt) { // the split below, for the sharded update (stepdesc.c)
        k->map_total = 1;
        for (int d = 0; d < e->rank; d++)
            k->map_total *= e->dims[d];
        k->map_align = e->rank == 1 ? 64 : e->dims[last];
    }
    if (e->rank == 1) {
        nn_cg_split_v(cg, nn_cg_extent(cg, e->dims[0], e->rt), 64, &lo, &hi);
        map_inner(cg, m, idx, lo, hi, w);
        return;
    }
    int64_t rows = 1;
    for (int d = 0; d < last; d++)
        rows *= e->dims[d];
    nn_cg_split_v(cg, nn_cg_extent(cg, rows, e->rt), 1, &lo, &hi);
    NnLoop r;
    nn_cg_loop_begin(cg, &r, lo, hi, 1);
    nn_cg_decode(cg, r.iv, e->dims, last, idx);
    map_row(cg, m, idx, e->dims[last], w);
    nn_cg_loop_end(cg, &r);
}

void nn_expr_emit_map(NnCg *cg, NnExpr *e, int out_slot, NnDType out_dt)
{
    Map m = {.n = 1, .e = &e};
    m.slot[0] = out_slot;
    m.dt[0] = out_dt;
    emit_maps(cg, &m);
}

// A multi-output kernel (nn_fuse_multi): members ids[0..n) in ascending order,
// the last being the lead. A member's operand that an earlier member computed
// is taken from that member's registers, and an operand two members read is
// loaded once per point, so each stream crosses memory once.
bool nn_cg_emit_multi(NnCg *cg, const NnId *ids, int n)
{
    NN_ASSERT(n >= 2 && n <= NN_FUSE_MULTI_MAX);
    NnExpr *es[NN_FUSE_MULTI_MAX];
    NnShare *share = malloc(sizeof *share);
    NN_ASSERT(share);
    Map m = {.n = n, .e = es, .share = share};
    double work = 0;
    for (int x = 0; x < n; x++) {
        const NnNode *nd = &cg->g->nodes[ids[x]];
        es[x] = malloc(sizeof *es[x]);
        NN_ASSERT(es[x]);
        if (nd->op == NN_OP_FUSED)
            nn_expr_body(cg, es[x], ids[x], nd->attr.body->outputs[0].id);
        else
            nn_expr_node(cg, es[x], ids[x]);
        es[x]->rt = nn_cg_rt(cg, cg->g, ids[x]);
        es[x]->share = share;
        m.slot[x] = ids[x];
        m.dt[x] = nd->dtype;
        work += (double)nn_cg_numel(cg, cg->g, ids[x]);
    }
    nn_cg_kernel_begin(cg, "fused_multi", work);
    emit_maps(cg, &m);
    nn_cg_kernel_end(cg);
    for (int x = 0; x < n; x++)
        free(es[x]);
    free(share);
    return true;
}

// ---- the elementwise ops of ops.def ----

static bool map_node(NnCg *cg, NnId id)
{
    NnExpr *e = malloc(sizeof *e);
    NN_ASSERT(e);
    nn_expr_node(cg, e, id);
    nn_cg_kernel_begin(cg, nn_op_name(cg->g->nodes[id].op), (double)nn_cg_numel(cg, cg->g, id));
    nn_expr_emit_map(cg, e, id, cg->g->nodes[id].dtype);
    nn_cg_kernel_end(cg);
    free(e);
    return true;
}

bool llvm_neg(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_exp(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_log(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_sqrt(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_tanh(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_sigmoid(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_abs(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_sin(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_cos(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_cast(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_add(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_sub(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_mul(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_div(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_pow(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_max(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_min(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_gt(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_ge(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_lt(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_le(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_eq(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_ne(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_select(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_dropout(NnCg *cg, NnId id) { return map_node(cg, id); }
bool llvm_extern(NnCg *cg, NnId id) { return map_node(cg, id); }

// BROADCAST alone is a copy with broadcast strides: the same expression path.
bool llvm_broadcast(NnCg *cg, NnId id)
{
    NnExpr *e = malloc(sizeof *e);
    NN_ASSERT(e);
    const NnNode *n = &cg->g->nodes[id];
    nn_expr_read(cg, e, n->in[0]);
    int r;
    int64_t d[NN_MAX_RANK];
    nn_cg_shape(cg, cg->g, id, &r, d);
    nn_expr_iter(cg, e, r, d);
    e->rt = nn_cg_rt(cg, cg->g, id);
    nn_cg_kernel_begin(cg, "broadcast", (double)nn_cg_numel(cg, cg->g, id));
    nn_expr_emit_map(cg, e, id, n->dtype);
    nn_cg_kernel_end(cg);
    free(e);
    return true;
}
