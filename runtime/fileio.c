// Opening user files without blocking and refusing what is not a regular
// file; whole-file reads with a size cap; overflow-checked size arithmetic.
// A FIFO opened O_RDONLY blocks until a writer appears, so every open is
// O_NONBLOCK first and the flag is cleared only after fstat shows a regular file.
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    return "not a plain file";
}

static NnStatus open_as(const char *path, const char *what, bool pipes, int *fd, int64_t *size)
{
    *fd = -1;
    *size = 0;
    const char *sep = what ? " " : "", *w = what ? what : "";
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f < 0) {
        int e = errno;
        // A socket cannot be opened at all (ENXIO): say what it is rather
        // than "No such device or address".
        struct stat lb;
        if (stat(path, &lb) == 0 && !S_ISREG(lb.st_mode)) {
            nnrt_fail(NN_ERR_IO, "%s is %s, not a regular file", path, kind_of(lb.st_mode));
            errno = 0;
            return NN_ERR_IO;
        }
        nnrt_fail(NN_ERR_IO, "%s: cannot open%s%s: %s", path, sep, w, strerror(e));
        errno = e;
        return NN_ERR_IO;
    }
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        nnrt_fail(NN_ERR_IO, "%s: cannot open%s%s: %s", path, sep, w, strerror(e));
        errno = e;
        return NN_ERR_IO;
    }
    if (!S_ISREG(sb.st_mode) && !(pipes && S_ISFIFO(sb.st_mode))) {
        close(f);
        nnrt_fail(NN_ERR_IO, "%s is %s, not a regular file", path, kind_of(sb.st_mode));
        errno = 0;
        return NN_ERR_IO;
    }
    int fl = fcntl(f, F_GETFL);
    if (fl >= 0)
        fcntl(f, F_SETFL, fl & ~O_NONBLOCK);
    *fd = f;
    *size = sb.st_size;
    return NN_OK;
}

NnStatus nnrt_file_open(const char *path, const char *what, int *fd, int64_t *size)
{
    return open_as(path, what, false, fd, size);
}

static NnStatus fopen_as(const char *path, const char *what, bool pipes, FILE **out)
{
    *out = NULL;
    int fd;
    int64_t size;
    NnStatus st = open_as(path, what, pipes, &fd, &size);
    if (st != NN_OK)
        return st;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return nnrt_fail(NN_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    *out = f;
    return NN_OK;
}

NnStatus nnrt_file_fopen(const char *path, const char *what, FILE **out)
{
    return fopen_as(path, what, false, out);
}

NnStatus nnrt_file_fopen_stream(const char *path, const char *what, FILE **out)
{
    return fopen_as(path, what, true, out);
}

static NnStatus read_all(const char *path, const char *what, size_t max, char **buf, size_t *len,
                         bool *opened)
{
    *buf = NULL;
    *len = 0;
    if (max > SIZE_MAX / 4)
        max = SIZE_MAX / 4;
    int fd;
    int64_t size;
    NnStatus st = nnrt_file_open(path, what, &fd, &size);
    if (st != NN_OK)
        return st;
    *opened = true;
    if ((uint64_t)size > max) {
        close(fd);
        return nnrt_fail(NN_ERR_FORMAT, "%s: %lld bytes is larger than the %zu-byte limit for a%s%s",
                         path, (long long)size, max, what ? " " : "n input", what ? what : "");
    }
    // The size is a hint only (files in /proc report 0, others grow): grow
    // as data arrives, never past max.
    size_t cap = (size_t)size + 1 < 4096 ? 4096 : (size_t)size + 1, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 == cap) {
            if (n > max) {
                free(b);
                close(fd);
                return nnrt_fail(NN_ERR_FORMAT, "%s: larger than the %zu-byte limit for a%s%s",
                                 path, max, what ? " " : "n input", what ? what : "");
            }
            size_t ncap = cap > max / 2 ? max + 2 : cap * 2;
            char *nb = realloc(b, ncap);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap = ncap;
        }
        ssize_t k = read(fd, b + n, cap - n - 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            free(b);
            close(fd);
            return nnrt_fail(NN_ERR_IO, "%s: read error after byte %zu: %s", path, n, strerror(e));
        }
        if (k == 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    if (!b)
        return nnrt_fail(NN_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    if (n > max) {
        free(b);
        return nnrt_fail(NN_ERR_FORMAT, "%s: larger than the %zu-byte limit for a%s%s", path, max,
                         what ? " " : "n input", what ? what : "");
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return NN_OK;
}

NnStatus nnrt_file_read_all(const char *path, const char *what, size_t max, char **buf,
                            size_t *len)
{
    bool opened = false;
    NnStatus st = read_all(path, what, max, buf, len, &opened);
    if (st != NN_OK && opened)
        errno = 0;
    return st;
}

bool nnrt_size_mul(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }

static void shape_text(int rank, const int64_t *shape, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < rank && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

bool nnrt_shape_size(int rank, const int64_t *shape, size_t elem_size, int64_t *numel,
                     size_t *nbytes)
{
    char text[200];
    int64_t n = 1;
    for (int d = 0; d < rank; d++) {
        if (shape[d] < 0) {
            shape_text(rank, shape, text, sizeof text);
            nnrt_fail(NN_ERR_SHAPE, "shape %s has a negative dimension", text);
            return false;
        }
        if (__builtin_mul_overflow(n, shape[d], &n)) {
            shape_text(rank, shape, text, sizeof text);
            nnrt_fail(NN_ERR_SHAPE, "shape %s has too many elements (more than 2^63)", text);
            return false;
        }
    }
    int64_t b;
    // Keep 64 bytes of headroom so rounding the allocation up cannot wrap.
    if (__builtin_mul_overflow(n, (int64_t)elem_size, &b) || b > INT64_MAX - 64) {
        shape_text(rank, shape, text, sizeof text);
        nnrt_fail(NN_ERR_SHAPE, "shape %s needs more than 2^63 bytes", text);
        return false;
    }
    if (numel)
        *numel = n;
    if (nbytes)
        *nbytes = (size_t)b;
    return true;
}
