// The REPL's value printer: a tensor as its type ("f32[2, 3]") and values,
// a vector on the type's line, larger tensors as nested rows with columns
// aligned to the widest shown element, and the middle of any dimension over
// SHOW_MAX elided with "...", so a 60000-row tensor prints in a few lines.
#include "session.h"

#include <math.h>
#include <string.h>

// Per dimension, which indices show: all when at most 10, else the first 5
// and the last 3 with "..." between.
#define SHOW_MAX 10
#define SHOW_HEAD 5
#define SHOW_TAIL 3

static bool shown(int64_t i, int64_t dim)
{
    return dim <= SHOW_MAX || i < SHOW_HEAD || i >= dim - SHOW_TAIL;
}

static void format_elem(const NnTensor *t, int64_t i, char *buf, size_t n)
{
    double v = nnrt_tensor_get(t, i);
    if (t->dtype == NN_DT_I32)
        snprintf(buf, n, "%lld", (long long)v);
    else if (isnan(v) || isinf(v))
        snprintf(buf, n, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    else
        snprintf(buf, n, "%.4g", v);
}

typedef struct Printer {
    FILE *out;
    const NnTensor *t;
    int width;
    int64_t stride[NN_MAX_RANK];
} Printer;

static void print_dim(Printer *P, int d, int64_t base, int indent)
{
    const NnTensor *t = P->t;
    int64_t dim = t->shape[d];
    fputc('[', P->out);
    for (int64_t i = 0; i < dim; i++) {
        if (!shown(i, dim)) {
            if (i == SHOW_HEAD) {
                if (d == t->rank - 1)
                    fprintf(P->out, "%*s, ", P->width, "...");
                else
                    fprintf(P->out, "...,\n%*s", indent + 1, "");
            }
            continue;
        }
        if (d == t->rank - 1) {
            char b[64];
            format_elem(t, base + i * P->stride[d], b, sizeof b);
            fprintf(P->out, "%*s", P->width, b);
        } else {
            print_dim(P, d + 1, base + i * P->stride[d], indent + 1);
        }
        if (i + 1 < dim) {
            fputc(',', P->out);
            if (d == t->rank - 1)
                fputc(' ', P->out);
            else
                fprintf(P->out, "%s%*s", d + 2 < t->rank ? "\n\n" : "\n", indent + 1, "");
        }
    }
    fputc(']', P->out);
}

// The widest shown element, so columns line up.
static int max_width(const NnTensor *t, const int64_t *stride, int d, int64_t base)
{
    int w = 0;
    for (int64_t i = 0; i < t->shape[d]; i++) {
        if (!shown(i, t->shape[d]))
            continue;
        int k;
        if (d == t->rank - 1) {
            char b[64];
            format_elem(t, base + i * stride[d], b, sizeof b);
            k = (int)strlen(b);
        } else {
            k = max_width(t, stride, d + 1, base + i * stride[d]);
        }
        w = k > w ? k : w;
    }
    return w;
}

void nn_value_print(FILE *out, const NnTensor *t)
{
    char type[96];
    NnShape sh = {.rank = t->rank};
    memcpy(sh.dim, t->shape, sizeof(int64_t) * (size_t)t->rank);
    nn_type_str(NULL, t->dtype, &sh, type, sizeof type);
    if (t->rank == 0) {
        char b[64];
        format_elem(t, 0, b, sizeof b);
        fprintf(out, "%s %s\n", type, b);
        return;
    }
    Printer P = {.out = out, .t = t};
    int64_t st = 1;
    for (int d = t->rank - 1; d >= 0; d--) {
        P.stride[d] = st;
        st *= t->shape[d];
    }
    if (t->numel == 0) {
        fprintf(out, "%s []\n", type);
        return;
    }
    P.width = max_width(t, P.stride, 0, 0);
    if (t->shape[t->rank - 1] > SHOW_MAX && P.width < 3)
        P.width = 3;
    // A vector fits after its type; anything larger starts on its own line.
    if (t->rank == 1)
        fprintf(out, "%s ", type);
    else
        fprintf(out, "%s\n", type);
    print_dim(&P, 0, 0, 0);
    fputc('\n', out);
}
