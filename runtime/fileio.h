// Reading user files safely, and sizes checked before they are used. Every
// file a user names (script, import, data, weights, checkpoint) is opened with
// nnrt_file_open: O_NONBLOCK so a FIFO cannot block the open, then fstat, and
// anything that is not a regular file (directory, FIFO, socket, device) is
// refused with a message saying what it is. Whole-file reads stop at a cap so
// a file that grows while read (or lies about its size) cannot exhaust memory.
// The checked-size helpers turn every overflow into an NnStatus, never a wrap.
#ifndef NNRT_FILEIO_H
#define NNRT_FILEIO_H

#include "nnrt.h"

#include <stdio.h>

// Opens path for reading; *fd is a blocking descriptor of a regular file and
// *size its length at open time. `what` names the role in messages ("checkpoint",
// "data file"; may be NULL). NN_ERR_IO with "PATH: cannot open WHAT: reason" or
// "PATH is a directory, not a regular file" (also FIFO, socket, devices).
// After a failure errno is what open/fstat set, or 0 for a refused file type,
// so a caller may word "cannot open" messages its own way.
NnStatus nnrt_file_open(const char *path, const char *what, int *fd, int64_t *size);
// The same, as a stdio stream (mode "r" or "rb").
NnStatus nnrt_file_fopen(const char *path, const char *what, FILE **out);
// The same, also taking a FIFO (/dev/stdin on a pipe) for input read once,
// front to back. Opened without blocking, so a FIFO with no writer reads as
// empty instead of waiting forever.
NnStatus nnrt_file_fopen_stream(const char *path, const char *what, FILE **out);
// Reads the whole file into a malloc'd buffer with a NUL after the last byte.
// A file longer than max bytes is an NN_ERR_FORMAT naming the cap. errno is
// 0 after any failure but the open's.
NnStatus nnrt_file_read_all(const char *path, const char *what, size_t max, char **buf,
                            size_t *len);

// *out = a * b, false on overflow (then *out is unspecified).
bool nnrt_size_mul(size_t a, size_t b, size_t *out);
// Element count and byte size of a shape: false when a dimension is negative or
// the product (or product * elem_size) does not fit in int64_t. The message
// (in nnrt_errmsg) names the shape, e.g. "shape [4611686018427387904, 784] has
// too many elements (more than 2^63)", so callers can prefix where it came from.
bool nnrt_shape_size(int rank, const int64_t *shape, size_t elem_size, int64_t *numel,
                     size_t *nbytes);

#endif
