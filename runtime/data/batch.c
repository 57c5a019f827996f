// Seeded randomness, shuffling and batching. The generator is xoshiro256**
// seeded through splitmix64 from (seed, stream), so a permutation depends only
// on (seed, epoch) and a resumed run sees the same batches as an uninterrupted
// one. Batching copies rows of a permutation into preallocated tensors,
// inline or by the thread pool's spinning workers (side work, see pool.h).
#include "data.h"

#include "pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void nnrt_data_rng_seed(NnrtDataRng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull + 0x8CB92BA72F3D8DD7ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t nnrt_data_rng_u64(NnrtDataRng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double nnrt_data_rng_uniform(NnrtDataRng *r)
{
    return (double)(nnrt_data_rng_u64(r) >> 11) * 0x1p-53;
}

double nnrt_data_rng_normal(NnrtDataRng *r)
{
    // Box-Muller; 1 - u keeps the log argument in (0, 1].
    double u1 = 1.0 - nnrt_data_rng_uniform(r), u2 = nnrt_data_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t nnrt_data_rng_below(NnrtDataRng *r, int64_t n)
{
    // Rejection sampling removes the modulo bias.
    uint64_t un = (uint64_t)n, lim = UINT64_MAX - UINT64_MAX % un;
    uint64_t v;
    do
        v = nnrt_data_rng_u64(r);
    while (v >= lim);
    return (int64_t)(v % un);
}

void nnrt_identity_perm(int64_t *perm, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
}

void nnrt_shuffle(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch)
{
    NnrtDataRng r;
    nnrt_data_rng_seed(&r, seed, (uint64_t)epoch);
    nnrt_identity_perm(perm, n);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = nnrt_data_rng_below(&r, i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

int64_t nnrt_batch_count(int64_t count, int64_t batch) { return (count + batch - 1) / batch; }

static NnTensor *batch_like(const NnTensor *t, int64_t batch)
{
    int64_t shape[NN_MAX_RANK];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = batch;
    return nnrt_tensor_new(t->dtype, t->rank, shape);
}

NnStatus nnrt_batch_alloc(const NnrtDataset *ds, int64_t batch, NnTensor **xb, NnTensor **yb)
{
    *xb = batch_like(ds->x, batch);
    if (yb)
        *yb = ds->y ? batch_like(ds->y, batch) : NULL;
    if (!*xb || (yb && ds->y && !*yb)) {
        nnrt_tensor_free(*xb);
        *xb = NULL;
        if (yb) {
            nnrt_tensor_free(*yb);
            *yb = NULL;
        }
        return nnrt_fail(NN_ERR_NOMEM, "out of memory allocating a batch of %lld",
                         (long long)batch);
    }
    return NN_OK;
}

static void set_rows(NnTensor *t, int64_t n)
{
    t->shape[0] = n;
    t->numel = n;
    for (int d = 1; d < t->rank; d++)
        t->numel *= t->shape[d];
}

// Shuffled rows are scattered over a dataset far larger than the caches, so
// each row's copy waits on memory: the rows GATHER_AHEAD ahead are asked for
// first (at most PREFETCH_BYTES of each), so that several are in flight. A
// batch of 128 Fashion-MNIST rows (401 KB of f32) took 68 us inline without
// (on huge pages), 60 us with; gathered by the pool's workers (one row an
// item), the wait for the batch at the step's end went 33-38 -> 25-28 us.
#define GATHER_AHEAD 4
#define PREFETCH_BYTES 16384

static void prefetch_row(const NnTensor *src, size_t row, int64_t k)
{
    const char *p = (const char *)src->data + (size_t)k * row;
    size_t len = row < PREFETCH_BYTES ? row : PREFETCH_BYTES;
    for (size_t o = 0; o < len; o += 64)
        __builtin_prefetch(p + o, 0, 3);
}

static void gather(const NnTensor *src, const int64_t *rows, int64_t n, NnTensor *dst)
{
    size_t row = src->shape[0] ? nnrt_tensor_nbytes(src) / (size_t)src->shape[0] : 0;
    for (int64_t i = 0; i < n && i < GATHER_AHEAD; i++)
        prefetch_row(src, row, rows[i]);
    for (int64_t i = 0; i < n; i++) {
        if (i + GATHER_AHEAD < n)
            prefetch_row(src, row, rows[i + GATHER_AHEAD]);
        memcpy((char *)dst->data + (size_t)i * row, (const char *)src->data + (size_t)rows[i] * row,
               row);
    }
    set_rows(dst, n);
}

int64_t nnrt_batch_gather(const NnrtDataset *ds, const int64_t *perm, int64_t batch, int64_t i,
                          NnTensor *xb, NnTensor *yb)
{
    int64_t start = i * batch;
    if (start >= ds->count)
        return 0;
    int64_t n = ds->count - start < batch ? ds->count - start : batch;
    gather(ds->x, perm + start, n, xb);
    if (yb && ds->y)
        gather(ds->y, perm + start, n, yb);
    return n;
}

// A worker that takes an item is deaf to the pool until it is done, so an
// item copies at most PIECE bytes of a sample (a few microseconds).
#define PIECE 16384

struct NnrtSideGather {
    NnrtPool *pool;
    NnrtSide side;
    const NnrtDataset *ds;
    const int64_t *rows;
    int64_t n, pieces; // rows, and items per row
    NnTensor *xb, *yb;
    size_t xrow, yrow; // bytes per sample
};

NnrtSideGather *nnrt_side_gather_new(void)
{
    NnrtPool *p = nnrt_pool_default_started();
    if (!p || nnrt_pool_size(p) < 2)
        return NULL;
    NnrtSideGather *g = calloc(1, sizeof *g);
    if (g)
        g->pool = p;
    return g;
}

void nnrt_side_gather_free(NnrtSideGather *g) { free(g); }

int nnrt_side_gather_threads(const NnrtSideGather *g) { return nnrt_pool_size(g->pool); }

static size_t row_bytes(const NnTensor *t)
{
    return t->shape[0] ? nnrt_tensor_nbytes(t) / (size_t)t->shape[0] : 0;
}

// Item i: piece i % pieces of sample rows[i / pieces] into its row of the
// batch; the label with the first piece.
static void gather_piece(void *arg, int64_t i)
{
    NnrtSideGather *g = arg;
    int64_t r = i / g->pieces, k = g->rows[r];
    size_t off = (size_t)(i % g->pieces) * PIECE;
    size_t len = g->xrow - off < PIECE ? g->xrow - off : PIECE;
    if (off == 0 && r + GATHER_AHEAD < g->n) // items are taken in order: see gather()
        prefetch_row(g->ds->x, g->xrow, g->rows[r + GATHER_AHEAD]);
    memcpy((char *)g->xb->data + (size_t)r * g->xrow + off,
           (const char *)g->ds->x->data + (size_t)k * g->xrow + off, len);
    if (g->yb && off == 0)
        memcpy((char *)g->yb->data + (size_t)r * g->yrow,
               (const char *)g->ds->y->data + (size_t)k * g->yrow, g->yrow);
}

void nnrt_side_gather_post(NnrtSideGather *g, const NnrtDataset *ds, const int64_t *rows,
                           int64_t n, NnTensor *xb, NnTensor *yb)
{
    g->ds = ds;
    g->rows = rows;
    g->n = n;
    g->xb = xb;
    g->yb = yb && ds->y ? yb : NULL;
    g->xrow = row_bytes(ds->x);
    g->yrow = g->yb ? row_bytes(ds->y) : 0;
    g->pieces = g->xrow > PIECE ? (int64_t)((g->xrow + PIECE - 1) / PIECE) : 1;
    nnrt_pool_side_post(g->pool, &g->side, gather_piece, g, n * g->pieces);
}

void nnrt_side_gather_wait(NnrtSideGather *g)
{
    nnrt_pool_side_finish(g->pool, &g->side);
    set_rows(g->xb, g->n);
    if (g->yb)
        set_rows(g->yb, g->n);
}
