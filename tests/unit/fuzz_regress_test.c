// The fuzzing corpus as a regression test: every saved input of every fuzz
// target (tests/fuzz/corpus_<target>/ seeds, tests/fuzz/regress/<target>/
// inputs that once crashed, hung or leaked) goes through the same entry
// function the libFuzzer binary calls. Scripts also include the seed sources
// the run script uses (examples/, tests/bad/, tests/golden/*/). A failure is
// a crash, a sanitizer report (in the ASan build) or the timeout.
#define _GNU_SOURCE // asprintf
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

typedef int (*Entry)(const uint8_t *, size_t);

// Under ASan, an allocation the machine cannot satisfy returns NULL, as malloc
// does in a normal build, instead of aborting: a file that declares 40 GB of
// data must get "out of memory" from the loader (its NN_ERR_NOMEM path), which
// is what this replays. (Ignored when the build has no sanitizer; exported,
// since the build hides symbols by default and ASan looks this one up.)
__attribute__((visibility("default"))) const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static void to_root(void) { cr_assert_eq(chdir(NN_SOURCE_DIR), 0); }

TestSuite(fuzz_regress, .init = to_root, .timeout = 600);

// Feeds every regular file of dir (missing dir: none) to entry; returns the count.
static int replay_dir(const char *dir, Entry entry, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name), slen = suffix ? strlen(suffix) : 0;
        if (e->d_name[0] == '.' || (suffix && (len < slen || strcmp(e->d_name + len - slen, suffix))))
            continue;
        char *path = NULL;
        cr_assert(asprintf(&path, "%s/%s", dir, e->d_name) > 0);
        struct stat st;
        FILE *f = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? fopen(path, "rb") : NULL;
        if (f) {
            uint8_t *buf = malloc((size_t)st.st_size + 1);
            cr_assert(buf);
            size_t got = fread(buf, 1, (size_t)st.st_size, f);
            fclose(f);
            cr_log_info("%s", path);
            entry(buf, got);
            free(buf);
            n++;
        }
        free(path);
    }
    closedir(d);
    return n;
}

static int replay(const char *target, Entry entry)
{
    char corpus[256], regress[256];
    snprintf(corpus, sizeof corpus, "tests/fuzz/corpus_%s", target);
    snprintf(regress, sizeof regress, "tests/fuzz/regress/%s", target);
    return replay_dir(corpus, entry, NULL) + replay_dir(regress, entry, NULL);
}

Test(fuzz_regress, check)
{
    int n = replay("check", nn_fuzz_check);
    static const char *const seeds[] = {"examples", "tests/bad", "tests/golden/diag",
                                        "tests/golden/ir", "tests/golden/parse"};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        n += replay_dir(seeds[i], nn_fuzz_check, ".nn");
    cr_assert_geq(n, 50, "only %d scripts replayed", n);
}

Test(fuzz_regress, safetensors) { cr_assert_geq(replay("safetensors", nn_fuzz_safetensors), 3); }

Test(fuzz_regress, idx) { cr_assert_geq(replay("idx", nn_fuzz_idx), 3); }

Test(fuzz_regress, csv)
{
    int n = replay("csv", nn_fuzz_csv) + replay_dir("examples/data", nn_fuzz_csv, ".csv");
    cr_assert_geq(n, 3);
}
