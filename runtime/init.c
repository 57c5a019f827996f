// Seeded parameter initialization (Glorot/He/normal/uniform/orthogonal). The
// generator is splitmix64 seeded by hashing (seed, name), so every parameter
// has its own reproducible stream.
#include "init.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Rng {
    uint64_t s;
} Rng;

static uint64_t next(Rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(Rng *r) { return (double)(next(r) >> 11) * (1.0 / 9007199254740992.0); }

static double normal(Rng *r)
{
    double u1 = uniform01(r), u2 = uniform01(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static uint64_t hash_name(uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (const char *p = name ? name : ""; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

// Modified Gram-Schmidt on the rows or columns (whichever are fewer) of a
// rows x cols matrix of normals: gives orthonormal vectors along that side.
static void orthogonalize(double *a, int64_t rows, int64_t cols)
{
    bool by_rows = rows <= cols;
    int64_t nvec = by_rows ? rows : cols, len = by_rows ? cols : rows;
#define AT(v, i) (*(by_rows ? &a[(v) * cols + (i)] : &a[(i) * cols + (v)]))
    for (int64_t v = 0; v < nvec; v++) {
        for (int64_t u = 0; u < v; u++) {
            double dot = 0;
            for (int64_t i = 0; i < len; i++)
                dot += AT(v, i) * AT(u, i);
            for (int64_t i = 0; i < len; i++)
                AT(v, i) -= dot * AT(u, i);
        }
        double norm = 0;
        for (int64_t i = 0; i < len; i++)
            norm += AT(v, i) * AT(v, i);
        norm = sqrt(norm) + 1e-12;
        for (int64_t i = 0; i < len; i++)
            AT(v, i) /= norm;
    }
#undef AT
}

NnStatus nnrt_init_fill(NnTensor *t, const char *kind, const double *args, int nargs,
                        uint64_t seed, const char *name)
{
    if (t->dtype != NN_DT_F32 && t->dtype != NN_DT_F64)
        return nnrt_fail(NN_ERR_RUNTIME, "cannot initialize %s tensor '%s'",
                         nnrt_dtype_name(t->dtype), name ? name : "?");
    Rng r = {hash_name(seed, name)};
    // Rank <= 2 is the dense layout [in, out]; rank >= 3 the convolution
    // layout [out, in/groups, kh, kw, ...], whose fan-in is in/groups * kh * kw.
    double fan_in = t->rank >= 1 ? (double)t->shape[0] : 1;
    double fan_out = t->rank >= 2 ? (double)t->shape[1] : fan_in;
    if (t->rank >= 3) {
        double field = 1;
        for (int i = 2; i < t->rank; i++)
            field *= (double)t->shape[i];
        fan_in = (double)t->shape[1] * field;
        fan_out = (double)t->shape[0] * field;
    }
    double a = nargs > 0 ? args[0] : 0, b = nargs > 1 ? args[1] : 0;
    if (strcmp(kind, "orthogonal") == 0) {
        int64_t rows = t->rank ? t->shape[0] : 1, cols = t->numel / (rows ? rows : 1);
        double *m = malloc((size_t)t->numel * sizeof *m);
        if (!m)
            return nnrt_fail(NN_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < t->numel; i++)
            m[i] = normal(&r);
        orthogonalize(m, rows, cols);
        double gain = nargs > 0 ? a : 1;
        for (int64_t i = 0; i < t->numel; i++)
            nnrt_tensor_set(t, i, gain * m[i]);
        free(m);
        return NN_OK;
    }
    for (int64_t i = 0; i < t->numel; i++) {
        double v;
        if (strcmp(kind, "zeros") == 0)
            v = 0;
        else if (strcmp(kind, "ones") == 0)
            v = 1;
        else if (strcmp(kind, "constant") == 0) // a run-time hyperparameter's first value
            v = a;
        else if (strcmp(kind, "normal") == 0)
            v = (nargs > 0 ? a : 0.01) * normal(&r);
        else if (strcmp(kind, "uniform") == 0)
            v = (nargs > 0 ? a : -0.05) + ((nargs > 1 ? b : 0.05) - (nargs > 0 ? a : -0.05)) *
                                              uniform01(&r);
        else if (strcmp(kind, "glorot_uniform") == 0) {
            double lim = sqrt(6.0 / (fan_in + fan_out));
            v = lim * (2 * uniform01(&r) - 1);
        } else if (strcmp(kind, "glorot_normal") == 0)
            v = sqrt(2.0 / (fan_in + fan_out)) * normal(&r);
        else if (strcmp(kind, "he_uniform") == 0)
            v = sqrt(6.0 / fan_in) * (2 * uniform01(&r) - 1);
        else if (strcmp(kind, "he_normal") == 0)
            v = sqrt(2.0 / fan_in) * normal(&r);
        else
            return nnrt_fail(NN_ERR_RUNTIME, "unknown initializer '%s'", kind);
        nnrt_tensor_set(t, i, v);
    }
    return NN_OK;
}
