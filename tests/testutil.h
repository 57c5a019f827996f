// Helpers shared by tests: running the nnc binary and capturing its output,
// reading files, writing temp scripts. Header-only (static) so each test
// executable stays self-contained.
#ifndef NN_TESTUTIL_H
#define NN_TESTUTIL_H

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
#include <stdarg.h>
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

#endif
