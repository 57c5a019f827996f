// runtime/savefile.c: what exists at the target survives a failed or refused
// write, a symbolic link stays a link, and a process killed by SIGTERM or
// SIGINT while a temporary exists removes it and still dies of the signal.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "savefile.h"
#include "testutil.h"

static void setup(void)
{
    tu_scratch_make("savefile");
}

static void teardown(void)
{
    tu_scratch_remove();
}

TestSuite(savefile, .init = setup, .fini = teardown);

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

static bool has(const char *path, const char *text)
{
    char buf[256] = {0};
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return n == strlen(text) && !memcmp(buf, text, n);
}

static NnStatus save_text(const char *path, const char *text)
{
    NnrtSaveFile s;
    NnStatus st = nnrt_savefile_open(&s, path);
    if (st != NN_OK)
        return st;
    return nnrt_savefile_commit(&s, fputs(text, s.f) >= 0, "test file");
}

Test(savefile, replaces_a_regular_file)
{
    put(tu_in_dir("f"), "old");
    cr_assert_eq(save_text(tu_in_dir("f"), "new"), NN_OK, "%s", nnrt_errmsg());
    cr_assert(has(tu_in_dir("f"), "new"));
    cr_assert_eq(access(tu_in_dir("f.tmp"), F_OK), -1);
}

Test(savefile, refuses_what_is_not_a_regular_file)
{
    cr_assert_eq(nnrt_savefile_check("/dev/null"), NN_ERR_IO);
    cr_assert(strstr(nnrt_errmsg(), "'/dev/null' is a character device, not a regular file"),
              "%s", nnrt_errmsg());
    cr_assert_eq(mkfifo(tu_in_dir("fifo"), 0600), 0);
    cr_assert_eq(save_text(tu_in_dir("fifo"), "x"), NN_ERR_IO);
    cr_assert(strstr(nnrt_errmsg(), "is a FIFO"), "%s", nnrt_errmsg());
    struct stat st;
    cr_assert(stat(tu_in_dir("fifo"), &st) == 0 && S_ISFIFO(st.st_mode));
    cr_assert_eq(mkdir(tu_in_dir("d"), 0700), 0);
    cr_assert_eq(save_text(tu_in_dir("d"), "x"), NN_ERR_IO);
    cr_assert(strstr(nnrt_errmsg(), "is a directory"), "%s", nnrt_errmsg());
    cr_assert_eq(nnrt_savefile_check(tu_in_dir("absent")), NN_OK);
}

Test(savefile, follows_a_symlink)
{
    put(tu_in_dir("target"), "old");
    cr_assert_eq(symlink(tu_in_dir("target"), tu_in_dir("link")), 0);
    cr_assert_eq(save_text(tu_in_dir("link"), "new"), NN_OK, "%s", nnrt_errmsg());
    struct stat st;
    cr_assert(lstat(tu_in_dir("link"), &st) == 0 && S_ISLNK(st.st_mode), "the link was replaced");
    cr_assert(has(tu_in_dir("target"), "new"));
}

Test(savefile, failed_write_keeps_the_old_file)
{
    put(tu_in_dir("f"), "old");
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
        setrlimit(RLIMIT_FSIZE, &rl);
        NnrtSaveFile s;
        if (nnrt_savefile_open(&s, tu_in_dir("f")) != NN_OK)
            _exit(2);
        static char big[1 << 16];
        bool ok = fwrite(big, 1, sizeof big, s.f) == sizeof big;
        NnStatus st = nnrt_savefile_commit(&s, ok, "test file");
        _exit(st == NN_ERR_IO && strstr(nnrt_errmsg(), "previous file kept") ? 0 : 3);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    cr_assert(has(tu_in_dir("f"), "old"));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", tu_in_dir("f"), (int)pid);
    cr_assert_eq(access(tmp, F_OK), -1, "temporary left");
}

// A child opens a save and is killed by sig before committing.
static void killed_during_save(int sig)
{
    put(tu_in_dir("f"), "old");
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        signal(sig, SIG_DFL); // as in a program that did not touch it (the runner may have)
        NnrtSaveFile s;
        if (nnrt_savefile_open(&s, tu_in_dir("f")) != NN_OK)
            _exit(2);
        fputs("half", s.f);
        fflush(s.f);
        if (write(ready[1], "r", 1) != 1)
            _exit(3);
        pause();
        _exit(4);
    }
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", tu_in_dir("f"), (int)pid);
    cr_assert_eq(access(tmp, F_OK), 0, "no temporary while saving");
    cr_assert_eq(kill(pid, sig), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == sig, "status %#x", status);
    cr_assert_eq(access(tmp, F_OK), -1, "signal %d left the temporary", sig);
    cr_assert(has(tu_in_dir("f"), "old"));
    close(ready[0]);
    close(ready[1]);
}

Test(savefile, sigterm_removes_the_temporary) { killed_during_save(SIGTERM); }
Test(savefile, sigint_removes_the_temporary) { killed_during_save(SIGINT); }

// After a save the program's own signal dispositions are back.
Test(savefile, restores_signal_dispositions)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_IGN);
    cr_assert_eq(save_text(tu_in_dir("f"), "x"), NN_OK);
    struct sigaction sa;
    cr_assert_eq(sigaction(SIGTERM, NULL, &sa), 0);
    cr_assert(sa.sa_handler == SIG_DFL);
    cr_assert_eq(sigaction(SIGINT, NULL, &sa), 0);
    cr_assert(sa.sa_handler == SIG_IGN, "an ignored signal must stay ignored");
}
