// Checking scales linearly with the size of the script: 200,000 one-line fn
// definitions, or one model body with 100,000 statements, are checked in well
// under a second. The bound is on nnc's CPU time, so a loaded CI box does not
// matter, and leaves room for sanitizers; the quadratic tables this guards
// against took minutes.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "testutil.h"

TestSuite(scale, .timeout = 300);

// CPU seconds (user + system) of the children waited for so far.
static double children_cpu(void)
{
    struct rusage u;
    getrusage(RUSAGE_CHILDREN, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// Writes `head`, then `n` lines printf(fmt, i, i), then `tail`; returns the path.
static char *write_script(const char *head, int n, const char *fmt, const char *tail)
{
    char *path = tu_write_temp(".nn", head);
    cr_assert(path);
    FILE *f = fopen(path, "a");
    cr_assert(f);
    for (int i = 0; i < n; i++)
        fprintf(f, fmt, i, i);
    fputs(tail, f);
    fclose(f);
    return path;
}

static double check_seconds(const char *path, int want_rc)
{
    char *out = NULL;
    double t0 = children_cpu();
    int rc = tu_nnc_run(&out, "check %s", path);
    double dt = children_cpu() - t0;
    cr_assert_eq(rc, want_rc, "exit %d:\n%.2000s", rc, out);
    free(out);
    return dt;
}

Test(scale, many_fn_definitions)
{
    char *p = write_script("", 200000, "fn f%d(x) = x + %d\n", "");
    double dt = check_seconds(p, 0);
    cr_assert_lt(dt, 10.0, "200000 fn definitions took %.1f s", dt);
    unlink(p);
    free(p);
}

// Every name is an error: past the error limit, no "did you mean" search runs
// (each one scans every declaration, so all of them would be quadratic).
Test(scale, many_unknown_names)
{
    char *p = write_script("", 50000, "fn f%d(x) = y%d\n", "");
    double dt = check_seconds(p, 1);
    cr_assert_lt(dt, 10.0, "50000 unknown names took %.1f s", dt);
    unlink(p);
    free(p);
}

Test(scale, long_model_body)
{
    char *p = write_script("model m(x: f32[N, 4]) -> f32[N, 4] {\n", 100000,
                           "    h%d = x * %d\n", "    return x\n}\n");
    double dt = check_seconds(p, 0);
    cr_assert_lt(dt, 10.0, "a 100000-statement body took %.1f s", dt);
    unlink(p);
    free(p);
}
