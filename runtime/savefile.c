// Atomic replacement of checkpoints and images: write a temporary next to the
// target, sync it, rename it over the target. The temporaries in flight are
// listed in a fixed table that a signal handler can read without locks or
// allocation, so an interrupted save removes its temporary and then dies of
// the signal as it would have. One thread saves at a time.
#include "savefile.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOTS 4

static char slot_tmp[SLOTS][4096];
static volatile sig_atomic_t slot_used[SLOTS];
static int slots_active; // how many slots are used; only changed outside the handler

static const int caught[] = {SIGINT, SIGTERM, SIGHUP};
#define NCAUGHT (int)(sizeof caught / sizeof caught[0])
static struct sigaction previous[NCAUGHT];
static bool installed[NCAUGHT];

// Only async-signal-safe calls: unlink, signal, raise.
static void on_signal(int sig)
{
    for (int i = 0; i < SLOTS; i++)
        if (slot_used[i])
            unlink(slot_tmp[i]);
    signal(sig, SIG_DFL);
    raise(sig); // delivered when the handler returns and the signal is unblocked
}

// A program with its own handler (or one that ignores the signal) keeps it.
static void install(void)
{
    for (int i = 0; i < NCAUGHT; i++) {
        struct sigaction old, sa;
        if (sigaction(caught[i], NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) ||
            old.sa_handler != SIG_DFL)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigfillset(&sa.sa_mask);
        if (sigaction(caught[i], &sa, &previous[i]) == 0)
            installed[i] = true;
    }
}

static void uninstall(void)
{
    for (int i = 0; i < NCAUGHT; i++)
        if (installed[i]) {
            sigaction(caught[i], &previous[i], NULL);
            installed[i] = false;
        }
}

static int claim(const char *tmp)
{
    for (int i = 0; i < SLOTS; i++)
        if (!slot_used[i]) {
            memcpy(slot_tmp[i], tmp, strlen(tmp) + 1);
            slot_used[i] = 1;
            if (slots_active++ == 0)
                install();
            return i;
        }
    return -1; // more saves at once than slots: this one is just not cleaned up on a signal
}

static void release(int slot)
{
    if (slot < 0)
        return;
    slot_used[slot] = 0;
    if (--slots_active == 0)
        uninstall();
}

static const char *kind_of(mode_t m)
{
    return S_ISDIR(m)  ? "a directory"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
         : S_ISFIFO(m) ? "a FIFO (named pipe)"
         : S_ISSOCK(m) ? "a socket"
                       : "something else";
}

NnStatus nnrt_savefile_check(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || S_ISREG(st.st_mode))
        return NN_OK; // absent (or a dangling link): creating it loses nothing
    return nnrt_fail(NN_ERR_IO, "'%s' is %s, not a regular file; refusing to replace it", path,
                     kind_of(st.st_mode));
}

NnStatus nnrt_savefile_open(NnrtSaveFile *s, const char *path)
{
    memset(s, 0, sizeof *s);
    s->slot = -1;
    NnStatus st = nnrt_savefile_check(path);
    if (st != NN_OK)
        return st;
    // Renaming over a symlink would replace the link; replace what it names.
    struct stat ls;
    char real[PATH_MAX];
    const char *target = path;
    if (lstat(path, &ls) == 0 && S_ISLNK(ls.st_mode) && realpath(path, real))
        target = real;
    if (snprintf(s->path, sizeof s->path, "%s", target) >= (int)sizeof s->path ||
        snprintf(s->tmp, sizeof s->tmp, "%s.tmp.%ld", target, (long)getpid()) >=
            (int)sizeof s->tmp)
        return nnrt_fail(NN_ERR_IO, "%s: path too long", path);
    s->slot = claim(s->tmp);
    s->f = fopen(s->tmp, "wb");
    if (!s->f) {
        int e = errno;
        release(s->slot);
        s->slot = -1;
        return nnrt_fail(NN_ERR_IO, "%s: cannot create '%s': %s", path, s->tmp, strerror(e));
    }
    return NN_OK;
}

NnStatus nnrt_savefile_commit(NnrtSaveFile *s, bool ok, const char *what)
{
    int e = ok ? 0 : errno;
    // The data must be on disk before the rename makes it the file.
    if (ok && (ferror(s->f) || fflush(s->f) != 0 || fsync(fileno(s->f)) != 0)) {
        ok = false;
        e = errno;
    }
    if (fclose(s->f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    s->f = NULL;
    if (ok && rename(s->tmp, s->path) != 0) {
        ok = false;
        e = errno;
    }
    if (!ok)
        unlink(s->tmp);
    release(s->slot);
    s->slot = -1;
    // Every claim must be true: with no earlier file there is none to keep.
    if (!ok)
        return nnrt_fail(NN_ERR_IO, "%s: saving the %s failed: %s%s", s->path, what,
                         strerror(e ? e : EIO),
                         access(s->path, F_OK) == 0 ? " (previous file kept)" : " (nothing written)");
    return NN_OK;
}
