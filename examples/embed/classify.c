// Classifies Fashion-MNIST test images with the model library that
// `nnc build examples/fashion_mlp.nn --lib -o libmlp` writes (see README.md
// here): ./classify WEIGHTS IMAGES.gz [COUNT] prints one class name a line.
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#include "mlp.h"

static unsigned char px[16 + 10000 * 784];
static float x[10000 * MLP_INPUT_SIZE], out[10000 * MLP_OUTPUT_SIZE];

int main(int argc, char **argv)
{
    int n = argc > 3 ? atoi(argv[3]) : 10, ok = 0 < n && n <= 10000 && argc > 2;
    gzFile f = ok ? gzopen(argv[2], "rb") : NULL;
    ok = f && gzread(f, px, 16 + n * 784) == 16 + n * 784;
    if (f)
        gzclose(f);
    if (!ok)
        return fprintf(stderr, "usage: classify WEIGHTS IMAGES.gz [COUNT, 1 to 10000]\n"), 2;
    for (int i = 0; i < n * 784; i++)
        x[i] = px[16 + i] / 255.0f; // the data block's x = flatten(x) / 255
    mlp_model *m = NULL;
    if (mlp_create(&m, 0) || mlp_load(m, argv[1]) || mlp_predict(m, x, n, out)) {
        fprintf(stderr, "classify: %s\n", mlp_errmsg(m));
        mlp_free(m);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < MLP_OUTPUT_SIZE; k++)
            best = out[i * MLP_OUTPUT_SIZE + k] > out[i * MLP_OUTPUT_SIZE + best] ? k : best;
        printf("%s\n", mlp_class_name(best));
    }
    mlp_free(m);
    return 0;
}
