// Where the nnc driver finds its standard library, runtime library and
// headers. An installed nnc (cmake --install, layout PREFIX/bin/nnc,
// PREFIX/share/nnc/stdlib, PREFIX/lib/libnnrt.a, PREFIX/include/nnc) finds
// them relative to its own executable, so it works wherever the prefix is
// copied and whether or not the source tree still exists. An nnc run from its
// build directory has no such layout beside it and uses the source and build
// trees it was compiled from.
#include "driver.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// The installation prefix of the running nnc (its executable's directory's
// parent) when PREFIX/share/nnc/stdlib exists there, else NULL. Arena-owned.
static const char *install_prefix(NnCtx *c)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = 0; // the bin directory
    slash = strrchr(exe, '/');
    const char *prefix = slash ? nn_arena_printf(c->arena, "%.*s", (int)(slash - exe), exe) : NULL;
    if (!prefix || !is_dir(nn_arena_printf(c->arena, "%s/" NN_INSTALL_DATADIR "/stdlib", prefix)))
        return NULL;
    return prefix;
}

void nn_driver_paths(NnCtx *c, NnPaths *out)
{
    const char *prefix = install_prefix(c);
    if (prefix) {
        out->installed = true;
        out->stdlib = nn_arena_printf(c->arena, "%s/" NN_INSTALL_DATADIR "/stdlib", prefix);
        out->libdir = nn_arena_printf(c->arena, "%s/" NN_INSTALL_LIBDIR, prefix);
        out->includedir = nn_arena_printf(c->arena, "%s/" NN_INSTALL_INCLUDEDIR, prefix);
        return;
    }
    out->installed = false;
    out->stdlib = NN_SOURCE_DIR "/stdlib";
    out->libdir = NN_BINARY_DIR;
    out->includedir = NN_SOURCE_DIR "/runtime";
}
