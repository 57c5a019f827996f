// The fuzz input as a file: the data loaders take paths, so each input is
// written to an anonymous memory file and opened by its /proc name.
#define _GNU_SOURCE // memfd_create
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

int nn_fuzz_file(const uint8_t *data, size_t size, char *path)
{
    int fd = memfd_create("nn_fuzz", 0);
    if (fd < 0)
        return -1;
    for (size_t done = 0; done < size;) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}
