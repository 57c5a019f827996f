// Classifies Fashion-MNIST test images with the model library that
// `nnc build examples/fashion_mlp.nn --lib -o libmlp` writes (see README.md
// here): ./classify WEIGHTS IMAGES.gz [COUNT] prints one class name a line.
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#include "mlp.h"

int main(int argc, char **argv)
{
    int n = argc > 3 ? atoi(argv[3]) : 10;
    gzFile f = argc > 2 ? gzopen(argv[2], "rb") : NULL;
    unsigned char *px = malloc(16 + (size_t)n * 784);
    float *x = malloc((size_t)n * MLP_INPUT_SIZE * 4), *out = malloc((size_t)n * MLP_OUTPUT_SIZE * 4);
    if (n < 1 || !f || !px || !x || !out || gzread(f, px, 16 + n * 784) != 16 + n * 784)
        return fprintf(stderr, "usage: classify WEIGHTS IMAGES.gz [COUNT]\n"), 2;
    for (int i = 0; i < n * 784; i++)
        x[i] = px[16 + i] / 255.0f; // the data block's x = flatten(x) / 255
    mlp_model *m = NULL;
    if (mlp_create(&m, 0) || mlp_load(m, argv[1]) || mlp_predict(m, x, n, out))
        return fprintf(stderr, "classify: %s\n", mlp_errmsg(m)), 1;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < MLP_OUTPUT_SIZE; k++)
            best = out[i * MLP_OUTPUT_SIZE + k] > out[i * MLP_OUTPUT_SIZE + best] ? k : best;
        printf("%s\n", mlp_class_name(best));
    }
    mlp_free(m);
    return 0;
}
