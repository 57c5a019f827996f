// Replacing a file the user owns without ever losing it. Checkpoints and
// images are written to "<path>.tmp.<pid>", flushed and fsync'ed, then renamed
// over the target, so a failed write leaves the previous file untouched and no
// temporary behind. A target that exists but is not a regular file (a device,
// a directory, a FIFO) is refused; a symbolic link is followed, so the link
// stays and the file it names is replaced. While a temporary exists, SIGINT,
// SIGTERM and SIGHUP (when their action is the default) remove it before the
// process dies of the signal.
#ifndef NNRT_SAVEFILE_H
#define NNRT_SAVEFILE_H

#include "nnrt.h"

#include <stdio.h>

typedef struct NnrtSaveFile {
    char path[4096]; // the file replaced on commit (a symlink's target)
    char tmp[4096];  // path + ".tmp.<pid>"
    FILE *f;         // open on tmp between open and commit/abort
    int slot;        // index in the signal handler's table; -1: none
} NnrtSaveFile;

// NN_OK when path does not exist or is a regular file (or a link to one);
// otherwise NN_ERR_IO with a message that says what the path is, e.g.
// "'/dev/full' is a character device, not a regular file".
NnStatus nnrt_savefile_check(const char *path);
// Checks path, creates the temporary and registers it for signal cleanup.
// On failure nothing is left open or on disk.
NnStatus nnrt_savefile_open(NnrtSaveFile *s, const char *path);
// Makes what was written to s->f the file at s->path. ok false (the caller's
// write failed) or any flush, sync, close or rename error removes the
// temporary and fails with "<path>: saving the <what> failed: <why>
// (previous file kept)" (or "(nothing written)" where there was no file).
NnStatus nnrt_savefile_commit(NnrtSaveFile *s, bool ok, const char *what);

#endif
