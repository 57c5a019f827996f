// Graph -> LLVM module for one binding of the symbolic dims. Every node that
// computes something becomes one kernel `void k(ptr bufs, i32 ith, i32 nth)`
// (an NnrtTask) computing its own slice; "<prefix>step(ptr pool, ptr bufs)"
// runs them in graph order, small ones inline and the rest through
// nnrt_pool_run. Node i's value lives at bufs[i]; scratch slots follow.
// The op table below comes from ops.def: each op has an llvm_<name>.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_llvm.h"
#include "pass.h"

typedef bool (*LowerFn)(NnCg *, NnId);
static const LowerFn lowerers[NN_OP_COUNT] = {
#define NN_OP(tag, name, arity, flags, attrs) [NN_OP_##tag] = llvm_##name,
#include "ops.def"
#undef NN_OP
};

void nn_cg_init(NnCg *cg, LLVMContextRef ctx, const NnGraph *g, const int64_t *symv,
                const char *prefix)
{
    nn_cg_init_rt(cg, ctx, g, symv, prefix, -1);
}

void nn_cg_init_rt(NnCg *cg, LLVMContextRef ctx, const NnGraph *g, const int64_t *symv,
                   const char *prefix, int rt_sym)
{
    memset(cg, 0, sizeof *cg);
    cg->rt_sym = rt_sym;
    cg->rt_ref = rt_sym >= 0 ? symv[rt_sym] : 0;
    NN_ASSERT(rt_sym < 0 || cg->rt_ref >= 2);
    cg->batch_slot = -1;
    cg->ctx = ctx;
    cg->g = g;
    cg->symv = symv;
    cg->prefix = prefix;
    cg->cpu = nn_llvm_host_cpu();
    cg->features = nn_llvm_host_features();
    cg->vec512 = strstr(cg->features, "+avx512f") != NULL;
    cg->mod = LLVMModuleCreateWithNameInContext("nnc", ctx);
    cg->b = LLVMCreateBuilderInContext(ctx);
    cg->t_void = LLVMVoidTypeInContext(ctx);
    cg->t_i1 = LLVMInt1TypeInContext(ctx);
    cg->t_i8 = LLVMInt8TypeInContext(ctx);
    cg->t_i32 = LLVMInt32TypeInContext(ctx);
    cg->t_i64 = LLVMInt64TypeInContext(ctx);
    cg->t_f32 = LLVMFloatTypeInContext(ctx);
    cg->t_f64 = LLVMDoubleTypeInContext(ctx);
    cg->t_ptr = LLVMPointerTypeInContext(ctx, 0);
    cg->nslots = g->count;
    cg->slotcap = g->count + 16;
    cg->slot_bytes = calloc((size_t)cg->slotcap, sizeof(int64_t));
    cg->slot_owned = calloc((size_t)cg->slotcap, sizeof(bool));
    cg->slot_rows = calloc((size_t)cg->slotcap, sizeof(bool));
    NN_ASSERT(cg->slot_bytes && cg->slot_owned && cg->slot_rows);
    cg->loop_fixed = malloc(((size_t)g->count + 1) * sizeof(int));
    NN_ASSERT(cg->loop_fixed);
    for (NnId i = 0; i < g->count; i++) {
        cg->slot_bytes[i] = nn_cg_numel(cg, g, i) * (int64_t)nnrt_dtype_size(g->nodes[i].dtype);
        cg->loop_fixed[i] = -1;
    }
    cg->err_slot = nn_cg_add_scratch(cg, 0);
    if (rt_sym >= 0)
        cg->batch_slot = nn_cg_add_scratch(cg, 8);
}

void nn_cg_fini(NnCg *cg)
{
    LLVMDisposeBuilder(cg->b);
    free(cg->slot_bytes);
    free(cg->loop_fixed);
    cg->loop_fixed = NULL;
    free(cg->slot_owned);
    cg->slot_owned = NULL;
    free(cg->slot_rows);
    cg->slot_rows = NULL;
    free(cg->kernels);
    free(cg->checks);
    cg->checks = NULL;
    cg->slot_bytes = NULL;
    cg->kernels = NULL;
}

void nn_cg_shape(const NnCg *cg, const NnGraph *g, NnId id, int *rank, int64_t *dims)
{
    const NnShape *s = &g->nodes[id].shape;
    *rank = s->rank;
    nn_shape_bind(s, cg->symv, dims);
}

int64_t nn_cg_numel(const NnCg *cg, const NnGraph *g, NnId id)
{
    int r;
    int64_t d[NN_MAX_RANK], n = 1;
    nn_cg_shape(cg, g, id, &r, d);
    for (int i = 0; i < r; i++)
        n *= d[i];
    return n;
}

int nn_cg_add_scratch(NnCg *cg, int64_t nbytes)
{
    if (cg->nslots == cg->slotcap) {
        cg->slotcap *= 2;
        cg->slot_bytes = realloc(cg->slot_bytes, (size_t)cg->slotcap * sizeof(int64_t));
        cg->slot_owned = realloc(cg->slot_owned, (size_t)cg->slotcap * sizeof(bool));
        cg->slot_rows = realloc(cg->slot_rows, (size_t)cg->slotcap * sizeof(bool));
        NN_ASSERT(cg->slot_bytes && cg->slot_owned && cg->slot_rows);
    }
    cg->slot_bytes[cg->nslots] = nbytes;
    cg->slot_owned[cg->nslots] = false;
    cg->slot_rows[cg->nslots] = false;
    return cg->nslots++;
}

int nn_cg_add_scratch_rows(NnCg *cg, int64_t nbytes)
{
    int s = nn_cg_add_scratch(cg, nbytes);
    cg->slot_rows[s] = true;
    return s;
}

bool nn_cg_rt(const NnCg *cg, const NnGraph *g, NnId id)
{
    const NnShape *s = &g->nodes[id].shape;
    for (int d = 0; cg->rt_sym >= 0 && d < s->rank; d++)
        if (s->dim[d] == -cg->rt_sym - 1)
            return true;
    return false;
}

LLVMValueRef nn_cg_extent(NnCg *cg, int64_t v, bool rt)
{
    if (!rt)
        return nn_cg_i64(cg, v);
    NN_ASSERT(cg->rt_sym >= 0 && v % cg->rt_ref == 0);
    LLVMValueRef n = nn_cg_batch(cg);
    int64_t per = v / cg->rt_ref;
    return per == 1 ? n : LLVMBuildNSWMul(cg->b, n, nn_cg_i64(cg, per), "");
}

int nn_cg_add_owned(NnCg *cg, int64_t nbytes)
{
    int s = nn_cg_add_scratch(cg, nbytes);
    cg->slot_owned[s] = true;
    return s;
}

int nn_cg_add_check(NnCg *cg, int kind, int64_t bound, int64_t rows)
{
    cg->checks = realloc(cg->checks, (size_t)(cg->nerr + 1) * sizeof *cg->checks);
    NN_ASSERT(cg->checks);
    cg->checks[cg->nerr] = (NnrtStepCheck){kind, nn_cg_add_owned(cg, 4 * rows), bound};
    cg->slot_bytes[cg->err_slot] = 8 * (int64_t)(cg->nerr + 1);
    cg->checks_end = cg->nkernels + 1; // the kernel begun, or the one about to begin
    return cg->nerr++;
}

// TAKE: indices in[1] into the rows of in[0]; GATHER: ids in[1] of in[0]'s
// rows; ONEHOT: labels in[0] below depth.
int nn_cg_add_error(NnCg *cg, NnId id, int *copy)
{
    const NnNode *n = &cg->g->nodes[id];
    int k, r;
    int64_t dims[NN_MAX_RANK];
    if (n->op == NN_OP_ONEHOT) {
        k = nn_cg_add_check(cg, 1, n->attr.depth, nn_cg_numel(cg, cg->g, n->in[0]));
    } else {
        nn_cg_shape(cg, cg->g, n->in[0], &r, dims);
        k = nn_cg_add_check(cg, n->op == NN_OP_TAKE ? 0 : 2,
                            n->op == NN_OP_TAKE ? dims[1] : dims[0],
                            nn_cg_numel(cg, cg->g, n->in[1]));
    }
    *copy = cg->checks[k].slot;
    // Indices with the run-time batch: the copy has a place for every row of
    // any batch (in the workspace's per-row region).
    NnId ix = n->op == NN_OP_ONEHOT ? n->in[0] : n->in[1];
    if (nn_cg_rt(cg, cg->g, ix)) {
        cg->slot_rows[*copy] = true;
        cg->slot_bytes[*copy] /= cg->rt_ref;
    }
    return k;
}

static void add_fn_attr(NnCg *cg, LLVMValueRef fn, const char *k, const char *v)
{
    LLVMAttributeRef a =
        LLVMCreateStringAttribute(cg->ctx, k, (unsigned)strlen(k), v, (unsigned)strlen(v));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
}

static void add_enum_attr(NnCg *cg, LLVMValueRef fn, const char *k)
{
    unsigned kind = LLVMGetEnumAttributeKindForName(k, strlen(k));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

// Host tuning: explicit <16 x float> code must stay in zmm registers.
static void target_attrs(NnCg *cg, LLVMValueRef fn)
{
    add_fn_attr(cg, fn, "target-cpu", cg->cpu);
    add_fn_attr(cg, fn, "target-features", cg->features);
    if (cg->vec512) {
        add_fn_attr(cg, fn, "prefer-vector-width", "512");
        add_fn_attr(cg, fn, "min-legal-vector-width", "512");
    }
    add_enum_attr(cg, fn, "nounwind");
}

static NnCgKernel *new_kernel(NnCg *cg, const char *what, double work)
{
    if (cg->nkernels == cg->kcap) {
        cg->kcap = cg->kcap ? 2 * cg->kcap : 32;
        cg->kernels = realloc(cg->kernels, (size_t)cg->kcap * sizeof *cg->kernels);
        NN_ASSERT(cg->kernels);
    }
    NnCgKernel *k = &cg->kernels[cg->nkernels];
    snprintf(k->name, sizeof k->name, "%sk%d_%s", cg->prefix, cg->nkernels, what);
    k->work = work;
    k->direct = false;
    k->batch = false;
    k->work_fixed = 0;
    k->map_total = k->map_align = 0;
    k->few = NNRT_FEW_SERIAL;
    k->node = cg->node;
    cg->nkernels++;
    cg->batch_v = NULL;
    return k;
}

void nn_cg_kernel_begin(NnCg *cg, const char *what, double work)
{
    NnCgKernel *k = new_kernel(cg, what, work);
    cg->pool = NULL;
    LLVMTypeRef params[3] = {cg->t_ptr, cg->t_i32, cg->t_i32};
    LLVMTypeRef ft = LLVMFunctionType(cg->t_void, params, 3, 0);
    cg->fn = LLVMAddFunction(cg->mod, k->name, ft);
    target_attrs(cg, cg->fn);
    add_enum_attr(cg, cg->fn, "noinline"); // optimized once, not again inside step
    cg->bufs = LLVMGetParam(cg->fn, 0);
    cg->ith = LLVMGetParam(cg->fn, 1);
    cg->nth = LLVMGetParam(cg->fn, 2);
    cg->entry = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "entry");
    cg->body0 = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "start");
    LLVMPositionBuilderAtEnd(cg->b, cg->body0);
}

void nn_cg_direct_begin(NnCg *cg, const char *what)
{
    NnCgKernel *k = new_kernel(cg, what, 0);
    k->direct = true;
    LLVMTypeRef params[2] = {cg->t_ptr, cg->t_ptr};
    cg->fn = LLVMAddFunction(cg->mod, k->name, LLVMFunctionType(cg->t_void, params, 2, 0));
    target_attrs(cg, cg->fn);
    add_enum_attr(cg, cg->fn, "noinline");
    cg->pool = LLVMGetParam(cg->fn, 0);
    cg->bufs = LLVMGetParam(cg->fn, 1);
    cg->ith = nn_cg_i32(cg, 0);
    cg->nth = nn_cg_i32(cg, 1);
    cg->entry = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "entry");
    cg->body0 = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "start");
    LLVMPositionBuilderAtEnd(cg->b, cg->body0);
}

void nn_cg_kernel_end(NnCg *cg)
{
    LLVMBuildRetVoid(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, cg->entry);
    LLVMBuildBr(cg->b, cg->body0);
    cg->fn = NULL;
}

// Entry-block instructions go before nothing: the entry has no terminator
// until nn_cg_kernel_end, so a second builder appends there.
static LLVMBuilderRef entry_builder(NnCg *cg)
{
    LLVMBuilderRef eb = LLVMCreateBuilderInContext(cg->ctx);
    LLVMPositionBuilderAtEnd(eb, cg->entry);
    return eb;
}

LLVMValueRef nn_cg_buf(NnCg *cg, int slot)
{
    NN_ASSERT(slot >= 0 && slot < cg->nslots);
    LLVMBuilderRef eb = entry_builder(cg);
    LLVMValueRef idx = nn_cg_i64(cg, slot);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(eb, cg->t_ptr, cg->bufs, &idx, 1, "");
    LLVMValueRef v = LLVMBuildLoad2(eb, cg->t_ptr, p, "buf");
    LLVMDisposeBuilder(eb);
    return v;
}

LLVMValueRef nn_cg_batch(NnCg *cg)
{
    NN_ASSERT(cg->batch_slot >= 0);
    if (!cg->batch_v) {
        cg->kernels[cg->nkernels - 1].batch = true;
        LLVMValueRef p = nn_cg_buf(cg, cg->batch_slot);
        LLVMBuilderRef eb = entry_builder(cg);
        cg->batch_v = LLVMBuildLoad2(eb, cg->t_i64, p, "batch");
        LLVMDisposeBuilder(eb);
    }
    return cg->batch_v;
}

LLVMValueRef nn_cg_alloca(NnCg *cg, LLVMTypeRef t)
{
    LLVMBuilderRef eb = entry_builder(cg);
    LLVMValueRef v = LLVMBuildAlloca(eb, t, "acc");
    LLVMDisposeBuilder(eb);
    return v;
}

// ---- sources ----

bool llvm_input(NnCg *cg, NnId id) { return true; }
bool llvm_param(NnCg *cg, NnId id) { return true; }
bool llvm_state(NnCg *cg, NnId id) { return true; }

// Whether FUSED node n reads its input `id` from memory: a body's contraction
// (matmul, convolution) takes its operands by pointer, while the rest of a
// body inlines a CONST's value.
static bool fused_reads(const NnNode *n, NnId id)
{
    const NnGraph *b = n->attr.body;
    for (NnId c = 0; c < b->count; c++) {
        if (!nn_op_has(b->nodes[c].op, NN_OPF_CONTRACT))
            continue;
        for (int j = 0; j < b->nodes[c].nin; j++) {
            NnId bid = b->nodes[c].in[j];
            if (b->nodes[bid].op != NN_OP_INPUT)
                continue;
            int k = 0;
            for (NnId i = 0; i < bid; i++)
                k += b->nodes[i].op == NN_OP_INPUT;
            if (n->in[k] == id)
                return true;
        }
    }
    return false;
}

// Whether some consumer reads the CONST from memory (elementwise consumers
// and the elementwise parts of FUSED bodies inline the value instead).
static bool const_needed(const NnGraph *g, NnId id)
{
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i].id == id)
            return true;
    for (int i = 0; i < g->nupdates; i++)
        if (g->updates[i].value == id)
            return true;
    for (NnId i = id + 1; i < g->count; i++) {
        const NnNode *n = &g->nodes[i];
        if (n->op == NN_OP_FUSED && fused_reads(n, id))
            return true;
        bool inl =
            n->op == NN_OP_FUSED || n->op == NN_OP_BROADCAST || nn_op_has(n->op, NN_OPF_ELEMWISE);
        for (int k = 0; k < n->nin && !inl; k++)
            if (n->in[k] == id)
                return true;
    }
    return false;
}

bool llvm_const(NnCg *cg, NnId id)
{
    if (!const_needed(cg->g, id))
        return true;
    NnExpr e;
    if (!nn_expr_node(cg, &e, id))
        return false;
    e.rt = nn_cg_rt(cg, cg->g, id);
    nn_cg_kernel_begin(cg, "const", (double)nn_cg_numel(cg, cg->g, id));
    nn_expr_emit_map(cg, &e, id, cg->g->nodes[id].dtype);
    nn_cg_kernel_end(cg);
    return true;
}

// ---- FUSED: one loop nest per body form ----

// The body's host: its MATMUL, convolution or pooling op.
static NnId body_matmul(const NnGraph *b)
{
    for (NnId i = 0; i < b->count; i++)
        if (nn_op_has(b->nodes[i].op, NN_OPF_CONTRACT) || nn_op_has(b->nodes[i].op, NN_OPF_EPILOGUE))
            return i;
    return -1;
}

// Outer slot of the main-graph value standing for body INPUT `bid`.
static int body_input_slot(const NnCg *cg, NnId fused, NnId bid)
{
    const NnGraph *b = cg->g->nodes[fused].attr.body;
    int k = 0;
    for (NnId i = 0; i < bid; i++)
        k += b->nodes[i].op == NN_OP_INPUT;
    return cg->g->nodes[fused].in[k];
}

static bool fused_conv(NnCg *cg, NnId id, NnId cv)
{
    const NnGraph *b = cg->g->nodes[id].attr.body;
    const NnNode *c = &b->nodes[cv];
    NnExpr *e = malloc(sizeof *e);
    NN_ASSERT(e);
    bool ok = nn_expr_body(cg, e, id, b->outputs[0].id);
    if (ok) {
        e->hole = cv;
        ok = nn_cg_emit_conv(cg, c, body_input_slot(cg, id, c->in[0]),
                             body_input_slot(cg, id, c->in[1]), e, id);
    }
    free(e);
    return ok;
}

static bool fused_pool(NnCg *cg, NnId id, NnId pl)
{
    const NnGraph *b = cg->g->nodes[id].attr.body;
    const NnNode *n = &b->nodes[pl];
    int slots[2];
    for (int k = 0; k < n->nin; k++)
        slots[k] = body_input_slot(cg, id, n->in[k]);
    NnExpr *e = malloc(sizeof *e);
    NN_ASSERT(e);
    bool ok = nn_expr_body(cg, e, id, b->outputs[0].id);
    if (ok) {
        e->hole = pl;
        ok = nn_cg_emit_pool(cg, n, slots, e, id);
    }
    free(e);
    return ok;
}

// more: the members of a multi-output kernel computed in the product's
// epilogue (NULL: none).
static bool fused_matmul(NnCg *cg, NnId id, NnEpiMore *more)
{
    const NnGraph *b = cg->g->nodes[id].attr.body;
    NnId mm = body_matmul(b);
    const NnNode *m = &b->nodes[mm];
    if (nn_cg_is_conv(m->op))
        return fused_conv(cg, id, mm);
    if (nn_op_has(m->op, NN_OPF_EPILOGUE))
        return fused_pool(cg, id, mm);
    int ra, rb;
    int64_t da[NN_MAX_RANK], db[NN_MAX_RANK];
    int as = body_input_slot(cg, id, m->in[0]), bs = body_input_slot(cg, id, m->in[1]);
    nn_cg_shape(cg, cg->g, as, &ra, da);
    nn_cg_shape(cg, cg->g, bs, &rb, db);
    int64_t M, N, K;
    nn_matmul_dims(da, ra, db, rb, m->attr.ta, m->attr.tb, &M, &N, &K);
    NnExpr *e = malloc(sizeof *e);
    NN_ASSERT(e);
    bool ok = nn_expr_body(cg, e, id, b->outputs[0].id);
    if (ok) {
        e->hole = mm;
        int64_t dims[2] = {M, N};
        nn_expr_iter(cg, e, 2, dims);
        e->more = more;
        e->share = more ? more->share : NULL;
        bool rt_m = !m->attr.ta && nn_cg_rt(cg, cg->g, as);
        bool rt_k = (m->attr.ta && nn_cg_rt(cg, cg->g, as)) || (!m->attr.tb && nn_cg_rt(cg, cg->g, bs));
        nn_cg_emit_matmul(cg, m->dtype, as, bs, m->attr.ta, m->attr.tb, M, N, K, e, id, rt_m,
                          rt_k);
    }
    free(e);
    return ok;
}

bool llvm_fused(NnCg *cg, NnId id)
{
    const NnGraph *b = cg->g->nodes[id].attr.body;
    NnFuseForm form = nn_fuse_form(b);
    if (form == NN_FUSE_MATMUL)
        return fused_matmul(cg, id, NULL);
    NnExpr *e = malloc(sizeof *e);
    NN_ASSERT(e);
    NnId root = b->outputs[0].id;
    bool ok = false;
    if (form == NN_FUSE_ELEMWISE) {
        ok = nn_expr_body(cg, e, id, root);
        if (ok) {
            e->rt = nn_cg_rt(cg, cg->g, id);
            nn_cg_kernel_begin(cg, "fused", (double)nn_cg_numel(cg, cg->g, id));
            nn_expr_emit_map(cg, e, id, cg->g->nodes[id].dtype);
            nn_cg_kernel_end(cg);
        }
    } else if (form == NN_FUSE_REDUCE) {
        const NnNode *r = &b->nodes[root];
        ok = nn_expr_body(cg, e, id, r->in[0]);
        if (ok) {
            e->rt = nn_cg_rt(cg, b, r->in[0]);
            nn_cg_kernel_begin(cg, "fused_red", (double)nn_cg_numel(cg, b, r->in[0]));
            nn_cg_emit_reduce(cg, e, r->op, r->attr.axes, id, r->dtype);
            nn_cg_kernel_end(cg);
        }
    } else {
        nnrt_fail(NN_ERR_RUNTIME, "jit: FUSED node %d has a body of unknown form", id);
    }
    free(e);
    return ok;
}

// ---- the driver ----

static void emit_step(NnCg *cg)
{
    char name[64];
    snprintf(name, sizeof name, "%sstep", cg->prefix);
    LLVMTypeRef params[2] = {cg->t_ptr, cg->t_ptr};
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, params, 2, 0));
    target_attrs(cg, fn);
    add_fn_attr(cg, fn, NN_LLVM_LIGHT, ""); // a list of calls
    LLVMValueRef pool = LLVMGetParam(fn, 0), bufs = LLVMGetParam(fn, 1);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    LLVMTypeRef kparams[3] = {cg->t_ptr, cg->t_i32, cg->t_i32};
    LLVMTypeRef kt = LLVMFunctionType(cg->t_void, kparams, 3, 0);
    LLVMTypeRef dt = LLVMFunctionType(cg->t_void, params, 2, 0);
    for (int i = 0; i < cg->nkernels; i++) {
        LLVMValueRef k = LLVMGetNamedFunction(cg->mod, cg->kernels[i].name);
        if (cg->kernels[i].direct) {
            LLVMValueRef args[2] = {pool, bufs};
            LLVMBuildCall2(cg->b, dt, k, args, 2, "");
        } else if (cg->kernels[i].work >= NN_PAR_WORK) {
            LLVMValueRef args[3] = {pool, k, bufs};
            nn_cg_call(cg, "nnrt_pool_run", cg->t_void, args, 3);
        } else {
            LLVMValueRef args[3] = {bufs, nn_cg_i32(cg, 0), nn_cg_i32(cg, 1)};
            LLVMBuildCall2(cg->b, kt, k, args, 3, "");
        }
    }
    LLVMBuildRetVoid(cg->b);
}

// A multi-output kernel holding a product (nn_fuse_multi): the product's
// kernel with the other members ids[0..n) (ascending, the lead last) in its
// epilogue. The product's value is stored only when a node outside the
// group, an output or an update reads it.
static bool product_multi(NnCg *cg, const NnId *lead, NnId host, const NnId *ids, int n)
{
    const NnGraph *g = cg->g;
    NnEpiMore *more = calloc(1, sizeof *more);
    NnShare *share = malloc(sizeof *share);
    NN_ASSERT(more && share);
    more->share = share;
    more->host = host;
    for (NnId c = host + 1; c < g->count && !more->keep; c++)
        for (int k = 0; k < g->nodes[c].nin; k++)
            more->keep |= g->nodes[c].in[k] == host && lead[c] != lead[host];
    for (int k = 0; k < g->noutputs; k++)
        more->keep |= g->outputs[k].id == host;
    for (int k = 0; k < g->nupdates; k++)
        more->keep |= g->updates[k].value == host;
    bool ok = true;
    for (int x = 0; x < n && ok; x++) {
        const NnNode *nd = &g->nodes[ids[x]];
        NnExpr *e = malloc(sizeof *e);
        NN_ASSERT(e);
        more->e[more->n] = e;
        more->slot[more->n] = ids[x];
        more->dt[more->n++] = nd->dtype;
        ok = nn_expr_body(cg, e, ids[x], nd->attr.body->outputs[0].id);
        e->share = share;
    }
    ok = ok && fused_matmul(cg, host, more);
    for (int x = 0; x < more->n; x++)
        free(more->e[x]);
    free(share);
    free(more);
    return ok;
}

// Lowers node i, or for the lead of a multi-output kernel (nn_fuse_multi)
// its whole group; other members emit nothing at their own place.
static bool lower_node(NnCg *cg, const NnId *lead, NnId i)
{
    if (lead[i] < 0)
        return lowerers[cg->g->nodes[i].op](cg, i);
    if (lead[i] != i)
        return true;
    NnId ids[NN_FUSE_MULTI_MAX], host = -1;
    int n = 0;
    for (NnId m = 0; m <= i; m++) {
        if (lead[m] != i)
            continue;
        if (nn_fuse_form(cg->g->nodes[m].attr.body) == NN_FUSE_MATMUL)
            host = m;
        else
            ids[n++] = m;
    }
    if (host >= 0)
        return product_multi(cg, lead, host, ids, n);
    return nn_cg_emit_multi(cg, ids, n);
}

// Ops whose kernels are loop nests worth the whole O1 pipeline: products,
// convolutions, pooling and loops (register tiles, unrolled K loops, nested
// reductions).
static bool op_heavy(NnOp op)
{
    return op == NN_OP_LOOP ||
           nn_op_has(op, NN_OPF_CONTRACT | NN_OPF_EPILOGUE);
}

// Whether node i's kernels are simple loops (maps, reductions, gathers,
// copies): none of its ops, nor of a FUSED body's, is heavy.
static bool node_light(const NnGraph *g, NnId i)
{
    const NnNode *n = &g->nodes[i];
    if (op_heavy(n->op))
        return false;
    if (n->op == NN_OP_FUSED)
        for (NnId c = 0; c < n->attr.body->count; c++)
            if (op_heavy(n->attr.body->nodes[c].op))
                return false;
    return true;
}

// Marks kernels [k0, nkernels) for the short pipeline (nn_llvm_jit_add_parallel).
static void mark_light(NnCg *cg, int k0)
{
    for (int k = k0; k < cg->nkernels; k++)
        add_fn_attr(cg, LLVMGetNamedFunction(cg->mod, cg->kernels[k].name), NN_LLVM_LIGHT, "");
}

bool nn_cg_lower_graph(NnCg *cg)
{
    const NnGraph *g = cg->g;
    NnId *lead = malloc(((size_t)g->count + 1) * sizeof(NnId));
    NN_ASSERT(lead);
    nn_fuse_multi(g, lead);
    for (NnId i = 0; i < g->count; i++) {
        cg->node = i;
        int k0 = cg->nkernels;
        if (!lower_node(cg, lead, i)) {
            cg->failed = true;
            free(lead);
            return false;
        }
        // A multi-output kernel (emitted at its lead) is light when all of
        // its group is; members before the lead emit nothing.
        bool light = lead[i] < 0 ? node_light(g, i) : lead[i] == i;
        for (NnId m = 0; lead[i] == i && m <= i && light; m++)
            if (lead[m] == i)
                light = node_light(g, m);
        if (light)
            mark_light(cg, k0);
    }
    free(lead);
    emit_step(cg);
    return true;
}
