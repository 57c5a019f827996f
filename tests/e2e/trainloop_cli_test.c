// What the training loop tells the user, through the command line: early
// stopping says which epoch stopped and which epoch's weights were restored
// (checked against the epochs in the --metrics log); on a pipe every epoch
// prints its line; on a terminal (a pseudo-terminal here) no line is ever
// glued onto a progress bar. Uses examples/flowers.nn with its CSV.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <errno.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static void to_root(void) { cr_assert_eq(chdir(NN_SOURCE_DIR), 0); }

TestSuite(trainloop_cli, .init = to_root, .timeout = 240);

// flowers.nn with the CSV path made absolute and `extra` added to the train block.
static char *flowers(const char *extra)
{
    char *src = tu_read_file("examples/flowers.nn");
    cr_assert(src);
    const char *at = strstr(src, "\"data/flowers.csv\""), *end = strstr(src, "    seed      = 1");
    cr_assert(at && end);
    char *text = NULL;
    cr_assert(asprintf(&text, "%.*s\"%s/examples/data/flowers.csv\"%.*s%s\n%s",
                       (int)(at - src), src, NN_SOURCE_DIR, (int)(end - at) - 18, at + 18, extra,
                       end) > 0);
    char *path = tu_write_temp(".nn", text);
    free(text);
    free(src);
    return path;
}

static char *metrics_path(void)
{
    char *p = NULL;
    static int k;
    cr_assert(asprintf(&p, "/tmp/nnc_tl_%d_%d.jsonl", (int)getpid(), k++) > 0);
    unlink(p);
    return p;
}

// Per-epoch val.accuracy from a JSON-lines log; returns the number of epochs.
static int val_accuracies(const char *log, double *acc, int cap)
{
    int n = 0;
    for (const char *p = log; (p = strstr(p, "\"split\": \"val\"")); p++) {
        const char *e = strstr(p, "\"accuracy\": ");
        cr_assert(e && n < cap);
        acc[n++] = strtod(e + 12, NULL);
    }
    return n;
}

// The epoch (1-based) whose accuracy first beat all earlier ones last.
static int best_epoch(const double *acc, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (acc[i] > acc[best])
            best = i;
    return best + 1;
}

Test(trainloop_cli, early_stop_says_which_epochs)
{
    char *nn = flowers("    stop      = early(val.accuracy, patience = 3)");
    char *m = metrics_path();
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train %s --backend interp --set epochs=60 --metrics %s", nn, m);
    cr_assert_eq(rc, 0, "%s", out);
    char *log = tu_read_file(m);
    double acc[64];
    int ran = val_accuracies(log, acc, 64);
    cr_assert(ran < 60, "this test needs a run that stops early:\n%s", out);
    int best = best_epoch(acc, ran);
    char *want = NULL;
    cr_assert(asprintf(&want, "early stop after epoch %d of 60: val.accuracy did not improve for "
                       "3 epochs (patience 3); restored the weights of epoch %d (val.accuracy "
                       "%.4f)\n", ran, best, acc[best - 1]) > 0);
    cr_assert(strstr(out, want), "expected\n%s\nin:\n%s", want, out);
    // The report comes after the last epoch and before the test evaluation.
    cr_assert(strstr(out, want) < strstr(out, "test  loss"), "%s", out);
    free(want);
    free(log);
    free(out);
    unlink(m);
    unlink(nn);
    free(m);
    free(nn);
}

// Without stopping, restoring an earlier epoch's weights is reported too.
Test(trainloop_cli, restored_best_weights_are_reported)
{
    char *nn = flowers("    stop      = early(val.accuracy, patience = 100)");
    for (int epochs = 4; epochs <= 12; epochs += 4) {
        char *m = metrics_path();
        char *out = NULL;
        int rc = tu_nnc_run(&out, "train %s --backend interp --set epochs=%d --metrics %s", nn,
                            epochs, m);
        cr_assert_eq(rc, 0, "%s", out);
        char *log = tu_read_file(m);
        double acc[16];
        cr_assert_eq(val_accuracies(log, acc, 16), epochs);
        int best = best_epoch(acc, epochs);
        if (best < epochs) {
            char *want = NULL;
            cr_assert(asprintf(&want, "early stopping: restored the weights of epoch %d, the best "
                               "val.accuracy (%.4f); epochs %d to %d did not improve on it\n",
                               best, acc[best - 1], best + 1, epochs) > 0);
            cr_assert(strstr(out, want), "expected\n%s\nin:\n%s", want, out);
            free(want);
        } else {
            cr_assert_null(strstr(out, "restored"), "%s", out);
        }
        free(log);
        free(out);
        unlink(m);
        free(m);
    }
    unlink(nn);
    free(nn);
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

Test(trainloop_cli, pipe_gets_every_epoch_line)
{
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train examples/flowers.nn --backend interp --set epochs=200");
    cr_assert_eq(rc, 0, "%s", out);
    for (int e = 1; e <= 200; e++) {
        char want[64];
        snprintf(want, sizeof want, "epoch %d/200  180 samples", e);
        cr_assert(strstr(out, want), "no line for epoch %d:\n%s", e, out);
    }
    cr_assert_eq(count(out, "\nval   loss"), 200, "%s", out);
    cr_assert_null(strchr(out, '\r'), "a pipe got carriage returns");
    free(out);
}

// Runs nnc with argv on a pseudo-terminal; returns everything it wrote there.
static char *run_on_pty(char *const argv[], int *status)
{
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    cr_assert(pid >= 0, "forkpty: %s", strerror(errno));
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    ssize_t n;
    // Linux reports EIO on the master once the child side is closed.
    while ((n = read(master, chunk, sizeof chunk)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            fwrite(chunk, 1, (size_t)n, m);
    fclose(m);
    close(master);
    cr_assert_eq(waitpid(pid, status, 0), pid);
    return buf;
}

// Every line the user sees is whole: within a line, each carriage-return
// segment (one redraw of the bar) ends where its clear-to-end-of-line is, and
// summaries start lines of their own.
Test(trainloop_cli, terminal_lines_are_whole)
{
    char *nn = flowers("");
    char *argv[] = {(char *)tu_nnc(), "train", nn, "--backend", "interp", "--set", "epochs=200",
                    NULL};
    int status;
    char *out = run_on_pty(argv, &status);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x:\n%s", status, out);
    cr_assert(strstr(out, "\033[K"), "no progress bar on a terminal:\n%s", out);
    int lines = 0, vals = 0;
    for (char *line = out; *line;) {
        char *nl = strchr(line, '\n');
        char *l = strndup(line, nl ? (size_t)(nl - line) : strlen(line));
        size_t ll = strlen(l);
        if (ll && l[ll - 1] == '\r') // the terminal's newline is \r\n
            l[--ll] = 0;
        for (char *seg = strtok(l, "\r"); seg; seg = strtok(NULL, "\r")) {
            char *k = strstr(seg, "\033[K");
            cr_assert(!k || !k[3], "text after a bar on line %d: '%s'", lines + 1, seg);
            char *v = strstr(seg, "val   loss");
            cr_assert(!v || v == seg, "a summary glued to line %d: '%s'", lines + 1, seg);
            vals += v != NULL;
        }
        free(l);
        lines++;
        line = nl ? nl + 1 : line + strlen(line);
    }
    cr_assert(strstr(out, "epoch 200/200"), "%s", out);
    cr_assert(strstr(out, "\ntest  loss"), "the test report does not start a line:\n%s", out);
    cr_assert(vals >= 2, "validation summaries missing:\n%s", out);
    free(out);
    unlink(nn);
    free(nn);
}
