// The floating-point environment of the threads that train. Adam's first
// moment of a weight whose gradient has been exactly zero for a while (an
// input pixel that is blank in recent batches) shrinks by beta1 each step and
// becomes a denormal after several hundred steps; every arithmetic operation
// on a denormal then takes a microcode assist, and the MLP's step on
// Fashion-MNIST slowed down by 40% from its third epoch on. Training
// therefore runs with denormals flushed to zero (x86 MXCSR FTZ and DAZ).
#ifndef NNRT_FPENV_H
#define NNRT_FPENV_H

#include <stdbool.h>

typedef struct NnrtFpMode {
    unsigned csr; // the mode to give back
    bool set;     // whether anything was changed
} NnrtFpMode;

// Flushes denormals to zero on the calling thread and on the default pool's
// threads if it has started (threads started later inherit the caller's
// mode). NN_KEEP_DENORMALS=1 (for comparisons) and non-x86 machines change
// nothing. Returns what nnrt_fp_restore needs.
NnrtFpMode nnrt_fp_flush_denormals(void);
void nnrt_fp_restore(NnrtFpMode m);

#endif
