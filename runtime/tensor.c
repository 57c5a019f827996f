// Tensors, the status/message slot and the named-tensor table. Allocation is
// 64-byte aligned so kernels and generated code may use aligned vector loads.
#include "nnrt.h"
#include "fileio.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#include <sys/sysinfo.h>
#endif

static _Thread_local char errbuf[1024] = "no error";

const char *nnrt_errmsg(void) { return errbuf; }

NnStatus nnrt_fail(NnStatus st, const char *fmt, ...)
{
    // Formatted apart first: callers prefix the previous message with
    // nnrt_fail(st, "%s: %s", where, nnrt_errmsg()), which aliases errbuf.
    char msg[sizeof errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(errbuf, msg, sizeof errbuf);
    return st;
}

size_t nnrt_dtype_size(NnDType dt)
{
    switch (dt) {
    case NN_DT_F32: return 4;
    case NN_DT_F64: return 8;
    case NN_DT_I32: return 4;
    default: return 0;
    }
}

const char *nnrt_dtype_name(NnDType dt)
{
    switch (dt) {
    case NN_DT_F32: return "f32";
    case NN_DT_F64: return "f64";
    case NN_DT_I32: return "i32";
    default: return "?";
    }
}

// RAM + swap, or SIZE_MAX when unknown. Overcommit lets a larger request
// succeed, and zero-filling it then gets the process killed instead of
// reporting an error.
static size_t memory_size(void)
{
#ifdef __linux__
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        unsigned long long total = ((unsigned long long)si.totalram + si.totalswap) * si.mem_unit;
        return total < SIZE_MAX ? (size_t)total : SIZE_MAX;
    }
#endif
    return SIZE_MAX;
}

// Buffers of at least NN_HUGE_BYTES are aligned to NN_HUGE_PAGE and asked
// for huge pages (MADV_HUGEPAGE; Debian's kernels grant them in 'madvise'
// mode), which the kernel may or may not grant. A shuffled batch's rows are
// scattered over the whole dataset (170 MB of f32 for Fashion-MNIST): on 4 KB
// pages under KVM each row cost a TLB walk, and gathering 128 rows inline
// took 82 us against 68 us on 2 MB pages (idle machine, 2 threads).
#define NN_HUGE_PAGE ((size_t)2 << 20)
#define NN_HUGE_BYTES ((size_t)4 << 20)

void *nnrt_alloc(size_t nbytes)
{
    if (nbytes > SIZE_MAX - 63) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory allocating %zu bytes", nbytes);
        return NULL;
    }
    if (nbytes > ((size_t)1 << 30) && nbytes > memory_size()) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory allocating %zu bytes (the machine has %zu bytes "
                  "of memory)", nbytes, memory_size());
        return NULL;
    }
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    void *p;
    if (rounded >= NN_HUGE_BYTES) {
        // Large buffers (a dataset, a step's workspace) on 2 MB pages where
        // the kernel allows it (transparent huge pages in madvise mode):
        // see NN_HUGE_BYTES.
        rounded = (rounded + NN_HUGE_PAGE - 1) & ~(size_t)(NN_HUGE_PAGE - 1);
        p = aligned_alloc(NN_HUGE_PAGE, rounded);
        if (p)
            (void)madvise(p, rounded, MADV_HUGEPAGE);
    } else {
        p = aligned_alloc(64, rounded);
    }
    if (!p) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory allocating %zu bytes", nbytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

void nnrt_free(void *p) { free(p); }

static NnTensor *header(NnDType dt, int rank, const int64_t *shape)
{
    if (rank < 0 || rank > NN_MAX_RANK) {
        nnrt_fail(NN_ERR_SHAPE, "tensor rank %d exceeds the maximum %d", rank, NN_MAX_RANK);
        return NULL;
    }
    int64_t numel;
    if (!nnrt_shape_size(rank, shape, nnrt_dtype_size(dt), &numel, NULL))
        return NULL;
    NnTensor *t = calloc(1, sizeof *t);
    if (!t) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    t->dtype = dt;
    t->rank = rank;
    t->numel = numel;
    for (int i = 0; i < rank; i++)
        t->shape[i] = shape[i];
    return t;
}

NnTensor *nnrt_tensor_new(NnDType dt, int rank, const int64_t *shape)
{
    NnTensor *t = header(dt, rank, shape);
    if (!t)
        return NULL;
    t->data = nnrt_alloc(nnrt_tensor_nbytes(t));
    if (!t->data) {
        nnrt_fail(NN_ERR_NOMEM, "out of memory for a tensor of %lld elements (%zu bytes)",
                  (long long)t->numel, nnrt_tensor_nbytes(t));
        free(t);
        return NULL;
    }
    t->owned = true;
    return t;
}

NnTensor *nnrt_tensor_view(NnDType dt, int rank, const int64_t *shape, void *data)
{
    NnTensor *t = header(dt, rank, shape);
    if (t)
        t->data = data;
    return t;
}

NnTensor *nnrt_tensor_clone(const NnTensor *src)
{
    NnTensor *t = nnrt_tensor_new(src->dtype, src->rank, src->shape);
    if (t)
        memcpy(t->data, src->data, nnrt_tensor_nbytes(src));
    return t;
}

void nnrt_tensor_free(NnTensor *t)
{
    if (!t)
        return;
    if (t->owned)
        nnrt_free(t->data);
    free(t);
}

size_t nnrt_tensor_nbytes(const NnTensor *t) { return (size_t)t->numel * nnrt_dtype_size(t->dtype); }

bool nnrt_tensor_same_shape(const NnTensor *a, const NnTensor *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

double nnrt_tensor_get(const NnTensor *t, int64_t i)
{
    switch (t->dtype) {
    case NN_DT_F32: return ((const float *)t->data)[i];
    case NN_DT_F64: return ((const double *)t->data)[i];
    case NN_DT_I32: return ((const int32_t *)t->data)[i];
    default: return 0;
    }
}

void nnrt_tensor_set(NnTensor *t, int64_t i, double v)
{
    switch (t->dtype) {
    case NN_DT_F32: ((float *)t->data)[i] = (float)v; break;
    case NN_DT_F64: ((double *)t->data)[i] = v; break;
    case NN_DT_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    default: break;
    }
}

static uint64_t vars_stamp;

static void restamp(NnVars *v) { v->gen = __atomic_add_fetch(&vars_stamp, 1, __ATOMIC_RELAXED); }

void nnrt_vars_init(NnVars *v)
{
    memset(v, 0, sizeof *v);
    restamp(v);
}

void nnrt_vars_fini(NnVars *v)
{
    for (int i = 0; i < v->count; i++) {
        free(v->names[i]);
        nnrt_tensor_free(v->tensors[i]);
    }
    free(v->names);
    free(v->tensors);
    free(v->slots);
    memset(v, 0, sizeof *v);
    restamp(v);
}

// Names are found through an open-addressing index once a table is large,
// so filling or querying a checkpoint of n tensors is linear, not quadratic.
enum { VARS_HASH_MIN = 32 };

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void index_insert(NnVars *v, int i)
{
    uint32_t mask = (uint32_t)v->nslots - 1, k = name_hash(v->names[i]) & mask;
    while (v->slots[k])
        k = (k + 1) & mask;
    v->slots[k] = i + 1;
}

// Keeps the load factor at most 1/2; false only when out of memory (the
// table then works without an index).
static bool index_grow(NnVars *v)
{
    if (v->count < VARS_HASH_MIN || (v->nslots && v->count * 2 <= v->nslots))
        return true;
    int n = v->nslots ? v->nslots : 64;
    while (n < v->count * 2 && n < (1 << 30))
        n *= 2;
    int *slots = calloc((size_t)n, sizeof *slots);
    if (!slots)
        return false;
    free(v->slots);
    v->slots = slots;
    v->nslots = n;
    for (int i = 0; i < v->count; i++)
        index_insert(v, i);
    return true;
}

int nnrt_vars_find(const NnVars *v, const char *name)
{
    if (v->nslots) {
        uint32_t mask = (uint32_t)v->nslots - 1, k = name_hash(name) & mask;
        for (; v->slots[k]; k = (k + 1) & mask)
            if (strcmp(v->names[v->slots[k] - 1], name) == 0)
                return v->slots[k] - 1;
        return -1;
    }
    for (int i = 0; i < v->count; i++)
        if (strcmp(v->names[i], name) == 0)
            return i;
    return -1;
}

NnTensor *nnrt_vars_get(const NnVars *v, const char *name)
{
    int i = nnrt_vars_find(v, name);
    return i < 0 ? NULL : v->tensors[i];
}

NnStatus nnrt_vars_put(NnVars *v, const char *name, NnTensor *t)
{
    int i = nnrt_vars_find(v, name);
    if (i >= 0) {
        nnrt_tensor_free(v->tensors[i]);
        v->tensors[i] = t;
        restamp(v);
        return NN_OK;
    }
    return nnrt_vars_append(v, name, t);
}

NnStatus nnrt_vars_append(NnVars *v, const char *name, NnTensor *t)
{
    if (v->count == INT_MAX)
        return nnrt_fail(NN_ERR_NOMEM, "too many named tensors");
    restamp(v);
    if (v->count == v->cap) {
        int cap = v->cap > INT_MAX / 2 ? INT_MAX : v->cap ? v->cap * 2 : 16;
        char **names = realloc(v->names, (size_t)cap * sizeof *names);
        if (!names)
            return nnrt_fail(NN_ERR_NOMEM, "out of memory");
        v->names = names;
        NnTensor **ts = realloc(v->tensors, (size_t)cap * sizeof *ts);
        if (!ts)
            return nnrt_fail(NN_ERR_NOMEM, "out of memory");
        v->tensors = ts;
        v->cap = cap;
    }
    v->names[v->count] = strdup(name);
    if (!v->names[v->count])
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    v->tensors[v->count++] = t;
    if (v->nslots && v->count * 2 <= v->nslots) {
        index_insert(v, v->count - 1);
        return NN_OK;
    }
    if (!index_grow(v)) {
        // Without memory for a bigger index, fall back to the linear scan.
        free(v->slots);
        v->slots = NULL;
        v->nslots = 0;
    }
    return NN_OK;
}
