// Entry points of the fuzz targets. Each takes one input as bytes, runs it
// through a part of nnc that reads user input, and returns 0; a crash, hang,
// sanitizer report or abort is the finding. The libFuzzer binaries (NN_FUZZ=ON)
// call them from LLVMFuzzerTestOneInput, and tests/unit/fuzz_regress_test.c
// feeds them every saved input, so a fixed crash stays fixed.
#ifndef NN_FUZZ_H
#define NN_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int nn_fuzz_check(const uint8_t *data, size_t size);       // a .nn script, as `nnc check`
int nn_fuzz_safetensors(const uint8_t *data, size_t size); // a checkpoint file
int nn_fuzz_idx(const uint8_t *data, size_t size);         // an IDX file, plain or gzipped
int nn_fuzz_csv(const uint8_t *data, size_t size);         // a CSV data file

// The input as a file for the loaders, which take paths: a memfd, named
// /proc/self/fd/N in path (at least 64 bytes). Returns the fd (close it), or -1.
int nn_fuzz_file(const uint8_t *data, size_t size, char *path);

#endif
