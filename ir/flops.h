// Floating-point operations of a graph, counted from its nodes (ir/flops.c):
// what the benchmark divides by the time to get GFLOP/s and a share of the
// FMA peak, and what `nnc ir --stats` prints. The count is the work the
// graph asks for, not what a kernel happens to execute: a matmul is 2MNK, a
// convolution 2 per multiply-add of its direct definition, an elementwise op
// 1 per result element, a reduction 1 per input element; layout, indexing and
// sources are free. FUSED bodies and LOOP bodies (times their trips) count
// their own nodes.
#ifndef NN_FLOPS_H
#define NN_FLOPS_H

#include "graph.h"

typedef struct NnFlops {
    double contract; // MATMUL and the convolutions
    double elem;     // elementwise ops, dropout, pooling windows
    double reduce;   // reductions, SUMTO, scatter-add, argmax
    double total;    // their sum
    int nodes;       // nodes, FUSED and LOOP bodies included (each body once)
} NnFlops;

// Counts g with symbolic dim k bound to symv[k] (symv has an entry for every
// symbol of g); with symv NULL every symbol counts as 1 (per sample, when the
// batch N is the only one).
NnFlops nn_graph_flops(const NnGraph *g, const int64_t *symv);

#endif
