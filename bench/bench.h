// Shared by the benchmark driver's files (nnc_bench.c: model steps through
// the real compiler pipeline; gemm_bench.c: generated matmul vs OpenBLAS and
// the FMA peak). Results are printed as one flat JSON object, one
// "key": number per line, which bench/report.py merges with PyTorch's.
#ifndef NN_BENCH_H
#define NN_BENCH_H

#include <stdbool.h>
#include <stdint.h>

// Monotonic seconds.
double bench_now(void);
// CPU seconds of the calling thread: what a single-threaded kernel cost, however
// many other processes share the core.
double bench_cpu_now(void);
// Median of n values (sorts v in place).
double bench_median(double *v, int n);
// Seconds per call of fn(ctx): calls once to warm up, picks a count that takes
// at least min_s, then returns the median over `reps` timed repetitions.
// A failing call (fn returns false) makes the result negative.
double bench_time(bool (*fn)(void *), void *ctx, double min_s, int reps);
// The pieces of bench_time: a warm-up call and a count of calls that takes
// min_s (negative on failure); seconds per call over n calls.
long bench_calibrate(bool (*fn)(void *), void *ctx, double min_s);
double bench_rep(bool (*fn)(void *), void *ctx, long n);
// Prints `"key": value,` (the driver closes the object).
void bench_emit(const char *key, double value);

// gemm_bench.c
void bench_gemm(void);
// Measures the FMA peak on 1 and 2 threads; prints the best seen when emit.
void bench_peak(bool emit);
// conv_bench.c: generated convolution kernels (forward, both gradients).
void bench_conv(void);

#endif
