// `nnc repl` through a pseudo-terminal, as a person types: each line of
// tests/golden/repl/NAME.in is sent (`<TAB>` stands for a tab), and the
// terminal's whole output, normalized (carriage-return redraws applied, bells
// and escape sequences dropped, timings masked), must equal NAME.out.
// NN_UPDATE_GOLDEN=1 rewrites the .out files. Also: the scripted mode (standard
// input not a terminal), persistent history, and Ctrl-C during training.
#define _XOPEN_SOURCE 600
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "testutil.h"

typedef struct Pty {
    int fd;
    pid_t pid;
    char *out; // everything read so far
    size_t len, cap;
} Pty;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void pty_start(Pty *p, const char *hist, const char *const *args)
{
    memset(p, 0, sizeof *p);
    p->fd = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert(p->fd >= 0 && grantpt(p->fd) == 0 && unlockpt(p->fd) == 0);
    const char *slave = ptsname(p->fd);
    cr_assert(slave);
    p->pid = fork();
    cr_assert(p->pid >= 0);
    if (p->pid == 0) {
        setsid();
        int s = open(slave, O_RDWR);
        if (s < 0)
            _exit(127);
        dup2(s, 0);
        dup2(s, 1);
        dup2(s, 2);
        close(s);
        close(p->fd);
        setenv("NNC_HISTORY", hist, 1);
        setenv("NO_COLOR", "1", 1);
        setenv("TERM", "dumb", 1);
        char *argv[16];
        int n = 0;
        argv[n++] = (char *)tu_nnc();
        argv[n++] = "repl";
        for (int i = 0; args[i] && n < 15; i++)
            argv[n++] = (char *)args[i];
        argv[n] = NULL;
        execv(argv[0], argv);
        _exit(127);
    }
    p->cap = 1 << 16;
    p->out = malloc(p->cap);
}

// Reads what arrives within `quiet` seconds of the last byte; false at end of output.
static bool pty_read(Pty *p, double quiet)
{
    struct pollfd pf = {.fd = p->fd, .events = POLLIN};
    if (poll(&pf, 1, (int)(quiet * 1000)) <= 0)
        return true;
    if (p->cap - p->len < 8192)
        p->out = realloc(p->out, p->cap *= 2);
    ssize_t n = read(p->fd, p->out + p->len, p->cap - p->len - 1);
    if (n <= 0)
        return false;
    p->len += (size_t)n;
    p->out[p->len] = 0;
    return true;
}

static bool ends_with_prompt(const Pty *p)
{
    return p->len >= 4 && (!memcmp(p->out + p->len - 4, "nn> ", 4) ||
                           !memcmp(p->out + p->len - 4, "... ", 4));
}

// Waits for the next prompt, then for quiet, so redraws are complete.
static void pty_wait_prompt(Pty *p, double timeout)
{
    double end = now() + timeout;
    size_t before;
    do {
        before = p->len;
        while (now() < end && !ends_with_prompt(p) && pty_read(p, 0.05))
            ;
        pty_read(p, 0.3);
    } while (p->len != before && now() < end);
}

static void pty_send(Pty *p, const char *s) { cr_assert(write(p->fd, s, strlen(s)) >= 0); }

static int pty_finish(Pty *p)
{
    double end = now() + 20;
    while (now() < end) {
        int st;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            while (pty_read(p, 0.05) && now() < end)
                ;
            close(p->fd);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (!pty_read(p, 0.1))
            usleep(10000);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    close(p->fd);
    return -1;
}

// The screen as a reader sees it: a lone CR returns to the line's start
// (libedit redraws the whole line after it), bells and escapes vanish, and
// "time: 12.3 ms" becomes "time: # ms".
static char *normalize(const char *in)
{
    size_t n = strlen(in);
    char *out = malloc(n + 1);
    size_t o = 0, line = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (ch == '\r') {
            if (in[i + 1] != '\n')
                o = line;
            continue;
        }
        if (ch == '\a')
            continue;
        if (ch == '\x1b') {
            if (in[i + 1] == '[') {
                i += 2;
                while (i < n && !(in[i] >= '@' && in[i] <= '~'))
                    i++;
            }
            continue;
        }
        out[o++] = ch;
        if (ch == '\n')
            line = o;
        if (o >= 6 && !memcmp(out + o - 6, "time: ", 6)) {
            size_t j = i + 1;
            while (j < n && ((in[j] >= '0' && in[j] <= '9') || in[j] == '.'))
                j++;
            if (j > i + 1) {
                memcpy(out + o, "#", 1);
                o++;
                i = j - 1;
            }
        }
    }
    out[o] = 0;
    return out;
}

static void compare_golden(const char *name, const char *got)
{
    char path[256];
    snprintf(path, sizeof path, "tests/golden/repl/%s.out", name);
    const char *u = getenv("NN_UPDATE_GOLDEN");
    if (u && !strcmp(u, "1")) {
        FILE *f = fopen(path, "wb");
        cr_assert(f);
        fputs(got, f);
        fclose(f);
        return;
    }
    char *want = tu_read_file(path);
    cr_assert(want, "missing golden %s (run with NN_UPDATE_GOLDEN=1)", path);
    cr_expect_str_eq(got, want, "%s differs; got:\n%s", path, got);
    free(want);
}

// Types NAME.in into a terminal session and compares the transcript.
static char *transcript(const char *name, const char *const *args, const char *hist)
{
    char path[256];
    snprintf(path, sizeof path, "tests/golden/repl/%s.in", name);
    char *in = tu_read_file(path);
    cr_assert(in, "cannot read %s", path);
    Pty p;
    pty_start(&p, hist, args);
    pty_wait_prompt(&p, 30);
    for (char *line = strtok(in, "\n"); line; line = strtok(NULL, "\n")) {
        char buf[1024];
        size_t k = 0;
        for (const char *c = line; *c && k < sizeof buf - 2; c++) {
            if (!strncmp(c, "<TAB>", 5)) {
                buf[k++] = '\t';
                c += 4;
            } else {
                buf[k++] = *c;
            }
        }
        buf[k++] = '\r';
        buf[k] = 0;
        pty_send(&p, buf);
        pty_wait_prompt(&p, 120);
    }
    int rc = pty_finish(&p);
    cr_expect_eq(rc, 0, "nnc repl exited with %d", rc);
    char *got = normalize(p.out);
    free(p.out);
    free(in);
    return got;
}

static char *temp_history(void)
{
    static char path[128];
    snprintf(path, sizeof path, "/tmp/nnc_repl_hist_%d", (int)getpid());
    unlink(path);
    return path;
}

// Values, a list over two lines, a kept value, an error followed by a
// correct line, :type, a redefinition and a new fn.
// One timeout for the suite (Criterion leaks a per-test timeout record).
TestSuite(repl, .timeout = 600);

Test(repl, basic_transcript)
{
    const char *args[] = {"--threads", "1", "examples/xor.nn", NULL};
    char *hist = temp_history();
    char *got = transcript("basic", args, hist);
    compare_golden("basic", got);
    free(got);
    // History persists, multi-line entries included.
    char *h = tu_read_file(hist);
    cr_assert(h, "no history file written");
    cr_expect(strstr(h, "argmax") && strstr(h, ":type"), "history lacks lines:\n%s", h);
    free(h);
    unlink(hist);
}

// Tab completion of a model name, a data path and a command.
Test(repl, completion_transcript)
{
    const char *args[] = {"--threads", "1", "examples/xor.nn", NULL};
    char *hist = temp_history();
    char *got = transcript("complete", args, hist);
    compare_golden("complete", got);
    cr_expect(strstr(got, "f32[4, 2]"), "completed data path not evaluated:\n%s", got);
    free(got);
    unlink(hist);
}

// Training, then :save, :reset and :load bring the trained values back; a
// second run with only epochs changed compiles nothing.
Test(repl, train_save_load_transcript)
{
    unlink("/tmp/nnc_repl_test_w.safetensors");
    const char *args[] = {"-q", "--threads", "1", "examples/xor.nn", NULL};
    char *hist = temp_history();
    char *got = transcript("train", args, hist);
    compare_golden("train", got);
    free(got);
    unlink(hist);
    unlink("/tmp/nnc_repl_test_w.safetensors");
}

// Dropout rates and optimizer numbers change with no compile; a train block
// typed at the prompt replaces the file's (and says so), so training it again
// compiles nothing; :backend moves expressions to the JIT (one compile each).
Test(repl, hyperparameters_and_backend_transcript)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    const char *args[] = {"-q", "--threads", "1", "examples/xor.nn", NULL};
    char *hist = temp_history();
    char *got = transcript("hyper", args, hist);
    compare_golden("hyper", got);
    free(got);
    unlink(hist);
}

// :ir shows every stage nnc ir does, llvm and asm included.
Test(repl, ir_stages)
{
#ifndef NN_WITH_LLVM
    cr_skip_test("built without LLVM");
#endif
    char *out, *in = tu_write_temp(".in", ":ir net --stage llvm\n:ir net --stage asm\n"
                                          ":ir net --stage bogus\n");
    cr_assert(in);
    int rc = tu_nnc_run(&out, "repl -q examples/xor.nn < %s", in);
    unlink(in);
    free(in);
    cr_expect_eq(rc, 1, "exit %d:\n%s", rc, out);
    cr_expect(strstr(out, "define ") && strstr(out, "ret void"), "no LLVM IR:\n%.2000s", out);
    cr_expect(strstr(out, ".text") || strstr(out, "ret\n") || strstr(out, "\tret"),
              "no assembly:\n%.2000s", out);
    cr_expect(strstr(out, "unknown stage 'bogus' (ast, ir, grad, opt, fused, llvm, asm)"), "%s",
              out);
    free(out);
}

// Ctrl-C stops a long run at a batch boundary: the prompt comes back long
// before the epochs would end, and the session goes on with the weights.
Test(repl, ctrl_c_during_training)
{
    const char *args[] = {"-q", "--threads", "1", "examples/xor.nn", NULL};
    char *hist = temp_history();
    Pty p;
    pty_start(&p, hist, args);
    pty_wait_prompt(&p, 30);
    size_t mark = p.len;
    pty_send(&p, "net(xor.train.x)\r");
    pty_wait_prompt(&p, 30);
    char *initial = normalize(p.out + mark);
    pty_send(&p, "train net on xor with epochs = 100000000\r");
    // Let it compile and run a while.
    double t0 = now();
    while (now() - t0 < 4)
        pty_read(&p, 0.1);
    size_t before = p.len;
    pty_send(&p, "\x03");
    pty_wait_prompt(&p, 60);
    cr_assert(ends_with_prompt(&p), "no prompt after Ctrl-C:\n%s", p.out);
    char *after = normalize(p.out + before);
    cr_expect(strstr(after, "interrupted: weights kept as of the last batch"),
              "no interruption notice:\n%s", after);
    free(after);
    // The weights trained so far are the session's now.
    before = p.len;
    pty_send(&p, "net(xor.train.x)\r");
    pty_wait_prompt(&p, 30);
    char *v = normalize(p.out + before);
    cr_expect(strstr(v, "f32[4, 1]") && strcmp(v, initial), "unexpected value:\n%s", v);
    free(v);
    free(initial);
    pty_send(&p, ":quit\r");
    cr_expect_eq(pty_finish(&p), 0);
    free(p.out);
    unlink(hist);
}

// Without a terminal, commands come from standard input: no prompts, values
// on stdout, diagnostics on stderr, exit status 1 when a line failed.
Test(repl, scripted_mode)
{
    char *out;
    int rc = tu_nnc_run(&out, "repl -q --threads 1 examples/xor.nn "
                              "< tests/golden/repl/scripted.in");
    cr_expect_eq(rc, 1, "exit %d:\n%s", rc, out);
    compare_golden("scripted", out);
    free(out);
    rc = tu_nnc_run(&out, "repl examples/xor.nn < /dev/null");
    cr_expect_eq(rc, 0);
    cr_expect_str_eq(out, "");
    free(out);
    // Usage errors exit 2; a missing file or checkpoint is a diagnostic (1).
    cr_expect_eq(tu_nnc_run(NULL, "repl a.nn b.nn < /dev/null"), 2);
    cr_expect_eq(tu_nnc_run(NULL, "repl --metrics m.jsonl examples/xor.nn < /dev/null"), 2);
    cr_expect_eq(tu_nnc_run(NULL, "repl /nonexistent.nn < /dev/null"), 1);
    cr_expect_eq(tu_nnc_run(NULL, "repl --weights /nonexistent.st examples/xor.nn < /dev/null"), 1);
    // A file that does not check is a diagnostic before any prompt.
    rc = tu_nnc_run(&out, "repl tests/bad/missing_rparen.nn < /dev/null");
    cr_expect_eq(rc, 1);
    cr_expect(strstr(out, "missing_rparen.nn:"), "%s", out);
    free(out);
}
