// Helpers shared by tests: running the nnc binary and capturing its output,
// reading files, writing temp scripts, and (for Criterion tests) a scratch
// directory per test and commands asserted to exit with a given status.
// Header-only (static inline) so each test executable stays self-contained.
#ifndef NN_TESTUTIL_H
#define NN_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// Path of the nnc binary: $NNC (set by ctest), else build/nnc.
static inline const char *tu_nnc(void)
{
    const char *p = getenv("NNC");
    return p && *p ? p : "build/nnc";
}

// Runs `cmd` through the shell with stderr merged into stdout. Returns the
// exit status (or 128 + signal); *out gets the malloc'd output (caller frees).
static inline int tu_run(const char *cmd, char **out)
{
    size_t flen = strlen(cmd) + 8;
    char *full = malloc(flen);
    if (!full)
        return -1;
    snprintf(full, flen, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    free(full);
    if (!p)
        return -1;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 4096)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = 0;
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

// Runs nnc with printf-style arguments appended.
static inline int tu_nnc_run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int tu_nnc_run(char **out, const char *fmt, ...)
{
    char args[4096], cmd[4608];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", tu_nnc(), args);
    return tu_run(cmd, out);
}

// Writes text to a fresh file under /tmp and returns its malloc'd path.
static inline char *tu_write_temp(const char *suffix, const char *text)
{
    static int counter;
    size_t plen = strlen(suffix) + 64;
    char *path = malloc(plen);
    if (!path)
        return NULL;
    snprintf(path, plen, "/tmp/nnc_test_%d_%d%s", (int)getpid(), counter++, suffix);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(path);
        return NULL;
    }
    fputs(text, f);
    fclose(f);
    return path;
}

static inline char *tu_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = 0;
    fclose(f);
    return buf;
}

// Value of "key": NUMBER in the last line of a JSON-lines text containing
// `"split": "<split>"`; NaN when absent.
static inline double tu_jsonl_last(const char *text, const char *split, const char *key)
{
    char want[64], k[64];
    snprintf(want, sizeof want, "\"split\": \"%s\"", split);
    snprintf(k, sizeof k, "\"%s\": ", key);
    double v = 0.0 / 0.0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *l = strndup(line, len);
        const char *p;
        if (strstr(l, want) && (p = strstr(l, k)))
            v = strtod(p + strlen(k), NULL);
        free(l);
        line = end ? end + 1 : NULL;
    }
    return v;
}

// ---- for Criterion tests: a scratch directory, commands that must exit
// with a given status, whole files ----

// Flags for the C compiler building a program that links libnnrt: an
// instrumented libnnrt needs the sanitizers' runtimes.
#if defined(__SANITIZE_ADDRESS__)
#define TU_SAN_FLAGS "-fsanitize=address,undefined"
#else
#define TU_SAN_FLAGS ""
#endif

#ifdef NN_SOURCE_DIR
// For tests that start mpirun: under ASan, leaks are checked with Open MPI's
// own libraries suppressed (tests/e2e/openmpi_lsan.supp, which says why it
// needs whole stacks); the ranks inherit both settings from mpirun.
static inline void tu_mpi_sanitizer_env(void)
{
    const char *asan = getenv("ASAN_OPTIONS"), *lsan = getenv("LSAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%sfast_unwind_on_malloc=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    snprintf(opts, sizeof opts, "%s%ssuppressions=%s/tests/e2e/openmpi_lsan.supp:"
             "print_suppressions=0", lsan ? lsan : "", lsan && *lsan ? ":" : "", NN_SOURCE_DIR);
    setenv("LSAN_OPTIONS", opts, 1);
}
#endif

// The test's scratch directory (tu_scratch_make), as a path.
static inline char *tu_dir(void)
{
    static char d[256];
    return d;
}

// Makes a fresh /tmp/nnc_TAG_PID_XXXXXX as tu_dir() (a suite's .init) and
// returns it.
static inline const char *tu_scratch_make(const char *tag)
{
    snprintf(tu_dir(), 256, "/tmp/nnc_%s_%d_XXXXXX", tag, (int)getpid());
    cr_assert(mkdtemp(tu_dir()), "cannot make a scratch directory %s", tu_dir());
    return tu_dir();
}

// Removes tu_dir() and everything in it (a suite's .fini).
static inline void tu_scratch_remove(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tu_dir());
    if (tu_dir()[0] && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tu_dir());
}

// tu_dir()/name, in one of 8 static buffers used in turn.
static inline const char *tu_in_dir(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tu_dir(), name);
    return p;
}

// Writes text to tu_dir()/name (asserting it can).
static inline void tu_write_in_dir(const char *name, const char *text)
{
    const char *path = tu_in_dir(name);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0, "cannot write %s", path);
}

// A CSV file at path of n rows of 4 features (a,b,c,d) and a 3-class label
// that depends on them: rows start .. start+n-1 of a fixed sequence.
static inline void tu_write_abcd_csv(const char *path, int n, int start)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fprintf(f, "a,b,c,d,label\n");
    for (int i = start; i < start + n; i++) {
        int a = (i * 7) % 10, b = (i * 3) % 10, c = (i * 5 + 1) % 10, d = i % 10;
        fprintf(f, "%d,%d,%d,%d,%d\n", a, b, c, d, (a + b) % 3);
    }
    cr_assert_eq(fclose(f), 0, "cannot write %s", path);
}

// Runs a shell command (stderr merged), asserts its exit status is `want`
// and returns its output (the caller frees it).
static inline char *tu_sh_rc(int want, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline char *tu_sh_rc(int want, const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *cmd = n >= 0 ? malloc((size_t)n + 1) : NULL;
    cr_assert(cmd);
    vsnprintf(cmd, (size_t)n + 1, fmt, again);
    va_end(again);
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    cr_assert_eq(rc, want, "%s: exit %d, expected %d; output:\n%s", cmd, rc, want, out);
    free(cmd);
    return out;
}

// Runs nnc with the arguments, the same way.
static inline char *tu_nnc_rc(int want, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline char *tu_nnc_rc(int want, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int rc = tu_nnc_run(&out, "%s", args);
    cr_assert_eq(rc, want, "nnc %s: exit %d, expected %d; output:\n%s", args, rc, want, out);
    return out;
}

// Asserts that `out` (the output of `nnc args`) contains `what`.
static inline void tu_expect_in(const char *out, const char *what, const char *args)
{
    cr_assert(strstr(out, what), "nnc %s: output lacks '%s':\n%s", args, what, out);
}

// The whole file (asserting it opens), NUL-terminated; *len (may be NULL)
// gets its length, since a file may hold zero bytes.
static inline char *tu_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    char *buf = NULL;
    size_t cap = 0;
    FILE *m = open_memstream(&buf, &cap);
    cr_assert(m);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    if (len)
        *len = cap;
    return buf;
}

#endif
