// Data-parallel training under `mpirun -np 2` (runtime/dist.c): two ranks
// reach one process's weights within the stated bound, rank 0 alone writes,
// --resume works under MPI and across a change of rank count, a killed or
// stopped rank ends the run with an error naming it (never a hang: every
// mpirun runs under `timeout`), ranks with different settings are refused,
// without mpirun the compiled step has no all-reduce in it, and a program
// from `nnc build` does all of this as nnc train does. Skipped with
// a message when this build has no MPI or mpirun is missing. Under ASan the
// runs here detect leaks too, Open MPI's own suppressed (openmpi_lsan.supp).
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dist.h"
#include "testutil.h"

// Under ASan every allocation unwinds its whole stack (openmpi_lsan.supp says
// why), which makes LLVM's compile several times slower: longer limits.
#ifdef __SANITIZE_ADDRESS__
#define MPIRUN "timeout -s KILL 900 mpirun --allow-run-as-root --oversubscribe"
#define SUITE_TIMEOUT 3600
#else
#define MPIRUN "timeout -s KILL 120 mpirun --allow-run-as-root --oversubscribe"
#define SUITE_TIMEOUT 300
#endif
#define FLOWERS "train examples/flowers.nn --threads 1"
// K ranks equal one process up to the order of float sums: after 30 epochs
// of Adam on flowers every weight and moment is within this relative bound
// (measured: 2e-7).
#define BOUND 1e-5

static char dir[256];

static void setup(void)
{
    cr_assert_eq(chdir(NN_SOURCE_DIR), 0);
    snprintf(dir, sizeof dir, "/tmp/nnc_mpi_%d_XXXXXX", (int)getpid());
    cr_assert(mkdtemp(dir));
    tu_mpi_sanitizer_env();
}

static void teardown(void)
{
    char *cmd = NULL;
    if (asprintf(&cmd, "rm -rf '%s'", dir) > 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(cmd);
}

TestSuite(mpi_cli, .init = setup, .fini = teardown, .timeout = SUITE_TIMEOUT);

static void need_mpi(void)
{
    if (!nnrt_dist_built())
        cr_skip_test("this nnc is built without MPI: data-parallel tests skipped");
    if (system("command -v mpirun >/dev/null 2>&1") != 0)
        cr_skip_test("mpirun is not installed: data-parallel tests skipped");
}

// Runs `mpirun -np k nnc ARGS` (k = 0: nnc alone) and returns the exit status.
static int run_k(int k, char **out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run_k(int k, char **out, const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (k)
        snprintf(cmd, sizeof cmd, MPIRUN " -np %d %s %s", k, tu_nnc(), args);
    else
        snprintf(cmd, sizeof cmd, "%s %s", tu_nnc(), args);
    return tu_run(cmd, out);
}

static bool exists(const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

// Largest |a - b| / (1 + |b|) over every tensor of two checkpoints.
static double max_rel_diff(const char *a, const char *b)
{
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/%s", dir, a);
    snprintf(pb, sizeof pb, "%s/%s", dir, b);
    NnVars va, vb;
    cr_assert_eq(nnrt_safetensors_load(pa, &va, NULL), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(nnrt_safetensors_load(pb, &vb, NULL), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(va.count, vb.count);
    double worst = 0;
    for (int i = 0; i < va.count; i++) {
        NnTensor *x = va.tensors[i], *y = nnrt_vars_get(&vb, va.names[i]);
        cr_assert(y && y->numel == x->numel, "%s differs in shape", va.names[i]);
        for (int64_t k = 0; k < x->numel; k++) {
            double u = nnrt_tensor_get(x, k), v = nnrt_tensor_get(y, k);
            double d = fabs(u - v) / (1 + fabs(v));
            worst = d > worst || isnan(d) ? d : worst;
        }
    }
    nnrt_vars_fini(&va);
    nnrt_vars_fini(&vb);
    return worst;
}

Test(mpi_cli, version_says_whether_mpi_is_built)
{
    char *out = NULL;
    cr_assert_eq(run_k(0, &out, "--version"), 0);
    cr_assert(strstr(out, nnrt_dist_built() ? "MPI: Open MPI" : "MPI: not built in"), "%s", out);
    free(out);
}

Test(mpi_cli, two_ranks_equal_one_process)
{
    need_mpi();
    char *one = NULL, *two = NULL;
    cr_assert_eq(run_k(0, &one, FLOWERS " --set save=%s/k1.st --metrics %s/k1.jsonl", dir, dir),
                 0);
    cr_assert_eq(run_k(2, &two, FLOWERS " --set save=%s/k2.st --metrics %s/k2.jsonl", dir, dir),
                 0, "%s", two);
    double d = max_rel_diff("k1.st", "k2.st");
    cr_assert(d <= BOUND, "2 ranks differ from 1 process by %g (bound %g)", d, BOUND);
    // The report is printed once, by rank 0, with the same numbers.
    char *t1 = strstr(one, "test  loss"), *t2 = strstr(two, "test  loss");
    cr_assert(t1 && t2, "%s", two);
    cr_assert_eq(strncmp(t1, t2, 40), 0, "one: %.60s\ntwo: %.60s", t1, t2);
    cr_assert_null(strstr(t2 + 1, "test  loss"), "printed twice: %s", two);
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/k1.jsonl", dir);
    snprintf(p2, sizeof p2, "%s/k2.jsonl", dir);
    char *j1 = tu_read_file(p1), *j2 = tu_read_file(p2);
    cr_assert(j1 && j2);
    cr_assert_float_eq(tu_jsonl_last(j2, "test", "accuracy"), tu_jsonl_last(j1, "test", "accuracy"),
                       1e-9);
    cr_assert_float_eq(tu_jsonl_last(j2, "val", "loss"), tu_jsonl_last(j1, "val", "loss"), 1e-4);
    free(j1);
    free(j2);
    free(one);
    free(two);
}

// Batches of 7 rows on 3 ranks: slices of 2 and 3 rows, and a last batch of
// 5 (180 = 25 * 7 + 5), so every gradient is weighted by its rank's share.
Test(mpi_cli, uneven_slices_weigh_by_rows)
{
    need_mpi();
    char *out = NULL;
    cr_assert_eq(run_k(0, NULL, FLOWERS " --set batch=7 --set epochs=5 --set save=%s/u1.st", dir),
                 0);
    cr_assert_eq(run_k(3, &out, FLOWERS " --set batch=7 --set epochs=5 --set save=%s/u3.st", dir),
                 0, "%s", out);
    double d = max_rel_diff("u1.st", "u3.st");
    cr_assert(d <= BOUND, "3 ranks differ from 1 process by %g (bound %g)", d, BOUND);
    free(out);
}

Test(mpi_cli, only_rank_zero_writes)
{
    need_mpi();
    char *out = NULL, cmd[4096];
    // Two programs (MPMD) that differ only in where they would write.
    snprintf(cmd, sizeof cmd, MPIRUN " -np 1 %s " FLOWERS " --set epochs=2 --set save=%s/r0.st "
             "--metrics %s/r0.jsonl : -np 1 %s " FLOWERS " --set epochs=2 --set save=%s/r1.st "
             "--metrics %s/r1.jsonl", tu_nnc(), dir, dir, tu_nnc(), dir, dir);
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out);
    cr_assert(exists("r0.st") && exists("r0.jsonl"), "%s", out);
    cr_assert(!exists("r1.st") && !exists("r1.jsonl"), "rank 1 wrote a file: %s", out);
    free(out);
}

Test(mpi_cli, resume_under_mpi_and_across_rank_counts)
{
    need_mpi();
    char *out = NULL;
    cr_assert_eq(run_k(0, NULL, FLOWERS " --set epochs=8 --set save=%s/full.st", dir), 0);
    cr_assert_eq(run_k(2, &out, FLOWERS " --set epochs=3 --set save=%s/half.st", dir), 0, "%s",
                 out);
    free(out);
    cr_assert_eq(run_k(2, &out, FLOWERS " --set epochs=8 --resume %s/half.st --set save=%s/r2.st",
                       dir, dir), 0, "%s", out);
    cr_assert(strstr(out, "resumed from") && strstr(out, "3 of 8 epochs done"), "%s", out);
    free(out);
    cr_assert_eq(run_k(0, &out, FLOWERS " --set epochs=8 --resume %s/half.st --set save=%s/r1.st",
                       dir, dir), 0, "%s", out);
    free(out);
    double d2 = max_rel_diff("full.st", "r2.st"), d1 = max_rel_diff("full.st", "r1.st");
    cr_assert(d2 <= BOUND && d1 <= BOUND, "resumed runs differ by %g (2 ranks), %g (1)", d2, d1);
}

// The sharded update (ZeRO stage 1, runtime/step.c): NNC_MPI_SHARD_MIN=1
// shards every one of flowers' gradients, down to the 3-value bias that on
// 3 ranks leaves two of them no element of it. Reduce-scatter and all-gather
// move the same floats as the all-reduce and sum them in another order: the
// same bound holds.
Test(mpi_cli, sharded_update_equals_one_process)
{
    need_mpi();
    char *out = NULL;
    setenv("NNC_MPI_SHARD_MIN", "1", 1);
    setenv("NNC_MPI_STATS", "1", 1);
    cr_assert_eq(run_k(0, NULL, FLOWERS " --set save=%s/s1.st", dir), 0);
    cr_assert_eq(run_k(2, &out, FLOWERS " --set save=%s/s2.st -v", dir), 0, "%s", out);
    cr_assert(strstr(out, "jit: the update is sharded over 2 ranks"), "%s", out);
    cr_assert(strstr(out, "sharded update: 4 buckets reduce-scattered") &&
                  strstr(out, "and 4 parameters (524 bytes) all-gathered"), "%s", out);
    free(out);
    double d = max_rel_diff("s1.st", "s2.st");
    cr_assert(d <= BOUND, "sharded on 2 ranks: differs from 1 process by %g (bound %g)", d, BOUND);
    cr_assert_eq(run_k(0, NULL, FLOWERS " --set batch=7 --set epochs=5 --set save=%s/s7.st", dir),
                 0);
    cr_assert_eq(run_k(3, &out, FLOWERS " --set batch=7 --set epochs=5 --set save=%s/s73.st",
                       dir), 0, "%s", out);
    cr_assert(strstr(out, "sharded update: 4 buckets"), "%s", out);
    free(out);
    unsetenv("NNC_MPI_STATS");
    unsetenv("NNC_MPI_SHARD_MIN");
    d = max_rel_diff("s7.st", "s73.st");
    cr_assert(d <= BOUND, "sharded on 3 ranks: differs from 1 process by %g (bound %g)", d, BOUND);
}

// A checkpoint written under the sharded update holds every optimizer moment
// whole (gathered from the ranks), so it equals one process's after as many
// epochs, and resuming from it on 1, 2 or 3 ranks continues the same run.
Test(mpi_cli, sharded_checkpoint_resumes_on_any_rank_count)
{
    need_mpi();
    char *out = NULL;
    setenv("NNC_MPI_SHARD_MIN", "1", 1);
    cr_assert_eq(run_k(0, NULL, FLOWERS " --set epochs=3 --set save=%s/p3.st", dir), 0);
    cr_assert_eq(run_k(0, NULL, FLOWERS " --set epochs=8 --set save=%s/p8.st", dir), 0);
    cr_assert_eq(run_k(2, &out, FLOWERS " --set epochs=3 --set save=%s/h.st -v", dir), 0, "%s",
                 out);
    cr_assert(strstr(out, "jit: the update is sharded"), "%s", out);
    free(out);
    double d = max_rel_diff("p3.st", "h.st");
    cr_assert(d <= BOUND, "the sharded checkpoint differs from 1 process by %g", d);
    for (int k = 0; k <= 3; k += k ? 1 : 2) { // 1 process, 2 and 3 ranks
        cr_assert_eq(run_k(k, &out, FLOWERS " --set epochs=8 --resume %s/h.st --set save=%s/h%d.st",
                           dir, dir, k), 0, "%s", out);
        cr_assert(strstr(out, "3 of 8 epochs done"), "%s", out);
        free(out);
        char name[32];
        snprintf(name, sizeof name, "h%d.st", k);
        d = max_rel_diff("p8.st", name);
        cr_assert(d <= BOUND, "resumed on %d ranks: differs by %g (bound %g)", k, d, BOUND);
    }
    unsetenv("NNC_MPI_SHARD_MIN");
}

// An update that is not elementwise over a gradient's elements (clipping by
// the global norm reads every gradient whole) is not sharded: every rank runs
// all of it after the all-reduce, with the same result.
Test(mpi_cli, update_that_is_not_elementwise_is_not_sharded)
{
    need_mpi();
    char *src = tu_read_file("examples/flowers.nn"), p[512];
    cr_assert(src);
    char *csv = strstr(src, "\"data/flowers.csv\""), *at = strstr(src, "adam(lr = 0.01)");
    cr_assert(csv && at && csv < at);
    snprintf(p, sizeof p, "%s/clip.nn", dir);
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fprintf(f, "%.*s\"%s/examples/data/flowers.csv\"%.*sadam(lr = 0.01, clip = 0.5)%s",
            (int)(csv - src), src, NN_SOURCE_DIR, (int)(at - csv - 18), csv + 18, at + 15);
    fclose(f);
    free(src);
    char *out = NULL;
    setenv("NNC_MPI_SHARD_MIN", "1", 1);
    cr_assert_eq(run_k(0, NULL, "train %s/clip.nn --threads 1 --set save=%s/c1.st", dir, dir), 0);
    cr_assert_eq(run_k(2, &out, "train %s/clip.nn --threads 1 --set save=%s/c2.st -v", dir, dir),
                 0, "%s", out);
    unsetenv("NNC_MPI_SHARD_MIN");
    cr_assert(strstr(out, "jit: every rank runs the whole update (node") &&
                  strstr(out, "is not elementwise over a gradient's elements"), "%s", out);
    cr_assert_null(strstr(out, "jit: the update is sharded"), "%s", out);
    free(out);
    double d = max_rel_diff("c1.st", "c2.st");
    cr_assert(d <= BOUND, "2 ranks differ from 1 process by %g (bound %g)", d, BOUND);
}

Test(mpi_cli, different_settings_are_refused)
{
    need_mpi();
    char *out = NULL, cmd[4096];
    snprintf(cmd, sizeof cmd, MPIRUN " -np 1 %s " FLOWERS " --set save=%s/a.st : -np 1 %s "
             FLOWERS " --set epochs=3 --set save=%s/a.st", tu_nnc(), dir, tu_nnc(), dir);
    cr_assert_eq(tu_run(cmd, &out), 1, "%s", out);
    cr_assert(strstr(out, "rank 1 compiled a different train step or settings than rank 0"),
              "%s", out);
    cr_assert(!exists("a.st"), "trained anyway: %s", out);
    free(out);
}

// Sharded or not, the ranks' steps make different MPI calls: refused at
// start-up rather than left to the deadline.
Test(mpi_cli, different_sharding_is_refused)
{
    need_mpi();
    char *out = NULL, cmd[4096];
    snprintf(cmd, sizeof cmd, MPIRUN " -np 1 %s " FLOWERS " --set save=%s/a.st : -np 1 "
             "-x NNC_MPI_SHARD=0 %s " FLOWERS " --set save=%s/a.st", tu_nnc(), dir, tu_nnc(),
             dir);
    cr_assert_eq(tu_run(cmd, &out), 1, "%s", out);
    cr_assert(strstr(out, "rank 1 compiled a different train step or settings than rank 0"),
              "%s", out);
    cr_assert(!exists("a.st"), "trained anyway: %s", out);
    free(out);
}

Test(mpi_cli, bad_timeout_setting_is_refused)
{
    need_mpi();
    char *out = NULL, cmd[4096];
    snprintf(cmd, sizeof cmd, "NNC_MPI_TIMEOUT=abc " MPIRUN " -x NNC_MPI_TIMEOUT -np 2 %s "
             FLOWERS " --set save=%s/t.st", tu_nnc(), dir);
    cr_assert_eq(tu_run(cmd, &out), 1, "%s", out);
    cr_assert(strstr(out, "NNC_MPI_TIMEOUT='abc': expected a positive number of seconds"), "%s",
              out);
    cr_assert(!exists("t.st"), "trained anyway: %s", out);
    free(out);
}

// Starts a long run of prog (nnc train, or a built program) with
// NNC_MPI_TIMEOUT=timeout whose rank 1 leaves its pid in dir/pid, and returns
// once it trains: the pid of the shell running mpirun, rank 1's in *rank1.
static pid_t start_long_run(const char *prog, int timeout, long *rank1)
{
    char wrap[512], cmd[4096];
    snprintf(wrap, sizeof wrap, "%s/rank.sh", dir);
    FILE *f = fopen(wrap, "w");
    cr_assert(f);
    fprintf(f, "#!/bin/sh\n[ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && echo $$ > %s/pid\nexec \"$@\"\n",
            dir);
    fclose(f);
    chmod(wrap, 0755);
    char path[512];
    snprintf(path, sizeof path, "%s/pid", dir);
    remove(path);
    snprintf(cmd, sizeof cmd, "NNC_MPI_TIMEOUT=%d " MPIRUN " -np 2 %s %s --threads 1 --set "
             "epochs=100000 > %s/log 2>&1; echo $? > %s/rc", timeout, wrap, prog, dir, dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    *rank1 = 0;
    for (int i = 0; i < 600 && *rank1 <= 0; i++) { // until rank 1 runs (a minute at most)
        usleep(100000);
        char *s = tu_read_file(path);
        *rank1 = s ? atol(s) : 0;
        free(s);
    }
    cr_assert(*rank1 > 0, "rank 1 never started");
    // Until rank 0 reports an epoch: both compiled and training (a minute
    // more at most, several under ASan), then a little more.
    snprintf(path, sizeof path, "%s/log", dir);
    for (int i = 0; i < 6000; i++) {
        char *log = tu_read_file(path);
        bool training = log && strstr(log, "epoch ");
        free(log);
        if (training)
            break;
        usleep(100000);
    }
    sleep(1);
    return pid;
}

// Waits for the run to end: mpirun's status, and its output in *out.
static int end_long_run(pid_t pid, long rank1, char **out)
{
    int st = 0;
    waitpid(pid, &st, 0);
    kill((pid_t)rank1, SIGKILL); // in case it outlived the job (it must not)
    char path[512];
    snprintf(path, sizeof path, "%s/log", dir);
    *out = tu_read_file(path);
    snprintf(path, sizeof path, "%s/rc", dir);
    char *rc = tu_read_file(path);
    int code = rc ? atoi(rc) : -1;
    free(rc);
    return code;
}

// A long run (NNC_MPI_TIMEOUT=3) whose rank 1 gets sig once it trains:
// mpirun's status, its output and the seconds it took to end after the signal.
static int long_run_with_signal(const char *prog, int sig, char **out, double *secs)
{
    long rank1 = 0;
    pid_t pid = start_long_run(prog, 3, &rank1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kill((pid_t)rank1, sig);
    int code = end_long_run(pid, rank1, out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return code;
}

Test(mpi_cli, killed_rank_ends_the_run)
{
    need_mpi();
    char *out = NULL;
    double secs = 0;
    char prog[512];
    // -v: the MLP's two large weights are trained with the sharded update,
    // so the rank may die inside a reduce-scatter or an all-gather.
    snprintf(prog, sizeof prog, "%s train bench/mlp.nn -v", tu_nnc());
    int rc = long_run_with_signal(prog, SIGKILL, &out, &secs);
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert(secs < 60, "took %.1f s to end: %s", secs, out);
    cr_assert(strstr(out, "rank 1"), "the message does not name rank 1: %s", out);
    cr_assert(strstr(out, "jit: the update is sharded over 2 ranks"), "%s", out);
    free(out);
}

Test(mpi_cli, stopped_rank_ends_the_run)
{
    need_mpi();
    char *out = NULL;
    double secs = 0;
    char prog[512];
    snprintf(prog, sizeof prog, "%s train bench/mlp.nn", tu_nnc());
    int rc = long_run_with_signal(prog, SIGSTOP, &out, &secs);
    cr_assert_neq(rc, 0, "%s", out);
    // NNC_MPI_TIMEOUT=3, then up to 1.5 s for peers to answer, then MPI_Abort.
    cr_assert(secs < 60, "took %.1f s to end: %s", secs, out);
    cr_assert(strstr(out, "rank 1 stopped responding"), "%s", out);
    free(out);
}

// A rank that is only late, past the deadline but answering, is waited for:
// rank 1 stopped for 4.8 s under NNC_MPI_TIMEOUT=4 misses rank 0's deadline,
// then answers its ping and joins the sum while rank 0 still waits for
// answers (2 s). The run goes on; before, rank 0 ended it ("every rank
// answers, but some rank never reached it"), which a slow first step on a
// loaded machine could trigger.
Test(mpi_cli, late_rank_that_answers_is_waited_for)
{
    need_mpi();
    char prog[512];
    snprintf(prog, sizeof prog, "%s train bench/mlp.nn", tu_nnc());
    long rank1 = 0;
    pid_t pid = start_long_run(prog, 4, &rank1);
    kill((pid_t)rank1, SIGSTOP);
    usleep(4800000);
    kill((pid_t)rank1, SIGCONT);
    sleep(3);
    int st = 0;
    bool running = waitpid(pid, &st, WNOHANG) == 0;
    char path[512];
    snprintf(path, sizeof path, "%s/log", dir);
    char *log = tu_read_file(path);
    kill((pid_t)rank1, SIGKILL); // ends the job
    char *out = NULL;
    int rc = running ? end_long_run(pid, rank1, &out) : 0;
    free(out);
    cr_assert(running, "the run ended: %s", log ? log : "");
    cr_assert_null(strstr(log ? log : "", "did not complete"), "%s", log);
    cr_assert_neq(rc, 0, "a killed rank still fails the run");
    free(log);
}

// A rank stuck inside one MPI call ends the job too. Open MPI's shared-memory
// reader spins inside the call when the peer that writes to it was stopped
// halfway through linking a message in (seen once in CI as a 118 s hang of
// stopped_rank_ends_the_run); no deadline of ours runs then, so a watchdog
// thread bounds every single call (runtime/dist_mpi.c). Here a preloaded
// MPI_Testall (the standard PMPI profiling interface) never returns after
// its 3000th call on both ranks, and the watchdogs must end the run.
Test(mpi_cli, rank_stuck_inside_an_mpi_call_ends_the_run)
{
    need_mpi();
    if (system("command -v mpicc >/dev/null 2>&1") != 0)
        cr_skip_test("mpicc is not installed: the stuck-call test is skipped");
    char src[512], so[512], *out = NULL;
    snprintf(src, sizeof src, "%s/stall.c", dir);
    snprintf(so, sizeof so, "%s/stall.so", dir);
    FILE *f = fopen(src, "w");
    cr_assert(f);
    fputs("#include <mpi.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
          "int MPI_Testall(int n, MPI_Request *r, int *flag, MPI_Status *s) {\n"
          "    static long calls;\n"
          "    const char *e = getenv(\"NNC_TEST_STALL_AFTER\");\n"
          "    if (e && ++calls > atol(e))\n"
          "        for (;;) pause();\n"
          "    return PMPI_Testall(n, r, flag, s);\n"
          "}\n", f);
    fclose(f);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mpicc -shared -fPIC -o %s %s", so, src);
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out);
    free(out);
    // Under ASan the preloaded library comes before ASan's runtime, which
    // ASan refuses unless told the order is intended.
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    snprintf(cmd, sizeof cmd, "NNC_MPI_TIMEOUT=3 " MPIRUN " -np 2 -x LD_PRELOAD=%s "
             "-x NNC_TEST_STALL_AFTER=3000 %s train bench/mlp.nn --threads 1 --set "
             "epochs=100000", so, tu_nnc());
    int rc = tu_run(cmd, &out);
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert(strstr(out, "an MPI call has not returned for 5 s"),
              "not ended by the watchdog (rc %d): %s", rc, out);
    free(out);
}

Test(mpi_cli, built_program_stopped_rank_ends_the_run)
{
    need_mpi();
    char *out = NULL, prog[512];
    cr_assert_eq(run_k(0, &out, "build bench/mlp.nn -o %s/mlp", dir), 0, "%s", out);
    free(out);
    snprintf(prog, sizeof prog, "%s/mlp train", dir);
    double secs = 0;
    int rc = long_run_with_signal(prog, SIGSTOP, &out, &secs);
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert(secs < 60, "took %.1f s to end: %s", secs, out);
    cr_assert(strstr(out, "rank 1 stopped responding"), "%s", out);
    free(out);
}

// A first layer of 784x256 weights: its gradient, the last the backward pass
// computes, is summed over the ranks as one bucket, in the buffer the matmul
// wrote it to (ir/plan.c aliases GRAD_START and GRAD_WAIT to it); the sums
// must equal one process's result in the JIT and the interpreter. No
// dropout: its masks are drawn per rank.
static void write_wide(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/wide.nn", dir);
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fputs("import std\n"
          "data synth {\n"
          "    x     = uniform([384, 784], 0, 1)\n"
          "    label = i32(uniform([384], 0, 9.999))\n"
          "}\n"
          "model wide(x: f32[N, 784]) -> f32[N, 10] {\n"
          "    return x |> dense(256) |> relu |> dense(10)\n"
          "}\n"
          "train wide on synth {\n"
          "    loss      = cross_entropy(output, label)\n"
          "    optimizer = adam(lr = 1e-3)\n"
          "    batch     = 64\n"
          "    epochs    = 3\n"
          "}\n", f);
    fclose(f);
}

Test(mpi_cli, big_gradient_is_summed_in_place)
{
    need_mpi();
    write_wide();
    char *out = NULL;
    setenv("NNC_MPI_BUCKETS", "1", 1); // the old opt-in to column blocks: gone
    cr_assert_eq(run_k(2, &out, "ir %s/wide.nn --stage fused", dir), 0, "%s", out);
    unsetenv("NNC_MPI_BUCKETS");
    int starts = 0;
    for (const char *p = out; (p = strstr(p, "grad_start(")); p++)
        starts += strstr(p, ": f32[784, 256]") && strstr(p, ": f32[784, 256]") < strchr(p, '\n');
    // Rank 0's dump comes first; each rank prints the same graph.
    cr_assert_eq(starts, 2, "the first layer's gradient is one bucket per rank:\n%s", out);
    cr_assert_null(strstr(out, "concat("), "%s", out);
    free(out);
    // Every bucket is summed where its gradient was computed: no copies.
    setenv("NNC_MPI_STATS", "1", 1);
    cr_assert_eq(run_k(2, &out, "train %s/wide.nn --threads 1 --quiet", dir), 0, "%s", out);
    unsetenv("NNC_MPI_STATS");
    cr_assert(strstr(out, "4 buckets (4 summed in place)"), "%s", out);
    cr_assert(strstr(out, "all-reduce algorithm: ring"), "the ring by default:\n%s", out);
    free(out);
    // The user's own Open MPI setting wins over nnc's choice.
    setenv("NNC_MPI_STATS", "1", 1);
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "0", 1);
    cr_assert_eq(run_k(2, &out, "train %s/wide.nn --threads 1 --quiet", dir), 0, "%s", out);
    unsetenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm");
    unsetenv("NNC_MPI_STATS");
    cr_assert(strstr(out, "all-reduce algorithm: Open MPI's choice"), "%s", out);
    free(out);
    static const char *const backends[] = {"jit", "interp"};
    for (int b = 0; b < 2; b++) {
        const char *be = backends[b];
        cr_assert_eq(run_k(0, NULL, "train %s/wide.nn --threads 1 --backend %s --set "
                           "save=%s/w1%s.st", dir, be, dir, be), 0);
        cr_assert_eq(run_k(2, &out, "train %s/wide.nn --threads 1 --backend %s --set "
                           "save=%s/w2%s.st", dir, be, dir, be), 0, "%s", out);
        free(out);
        char a[64], c[64];
        snprintf(a, sizeof a, "w1%s.st", be);
        snprintf(c, sizeof c, "w2%s.st", be);
        double d = max_rel_diff(a, c);
        cr_assert(d <= BOUND, "%s: 2 ranks differ from 1 process by %g (bound %g)", be, d, BOUND);
    }
}

Test(mpi_cli, one_process_compiles_no_allreduce)
{
    need_mpi();
    char *one = NULL, *two = NULL;
    cr_assert_eq(run_k(0, &one, "ir bench/mlp.nn --stage fused"), 0);
    cr_assert_null(strstr(one, "grad_start"), "a single process got an all-reduce");
    cr_assert_eq(run_k(2, &two, "ir bench/mlp.nn --stage fused"), 0, "%s", two);
    cr_assert(strstr(two, "grad_start") && strstr(two, "grad_wait"), "%s", two);
    free(one);
    free(two);
}

// `nnc build` adds training steps with averaged gradients, so a built
// program under mpirun trains as `mpirun nnc train` does: the same printed
// report to the last digit, the same weights, rank 0 alone writing.
static void build_flowers(void)
{
    char *out = NULL;
    cr_assert_eq(run_k(0, &out, "build examples/flowers.nn -o %s/flowers", dir), 0, "%s", out);
    free(out);
}

// Runs `mpirun -np k DIR/flowers ARGS` (k = 0: the program alone).
static int run_app(int k, char **out, const char *args)
{
    char cmd[4096];
    if (k)
        snprintf(cmd, sizeof cmd, MPIRUN " -np %d %s/flowers %s", k, dir, args);
    else
        snprintf(cmd, sizeof cmd, "%s/flowers %s", dir, args);
    return tu_run(cmd, out);
}

Test(mpi_cli, built_program_trains_as_ranks)
{
    need_mpi();
    build_flowers();
    char *nnc = NULL, *app = NULL, *one = NULL, args[1024];
    cr_assert_eq(run_k(2, &nnc, FLOWERS " --set save=%s/n2.st --metrics %s/n2.jsonl", dir, dir),
                 0, "%s", nnc);
    snprintf(args, sizeof args, "train --threads 1 --set save=%s/a2.st --metrics %s/a2.jsonl", dir,
             dir);
    cr_assert_eq(run_app(2, &app, args), 0, "%s", app);
    snprintf(args, sizeof args, "train --threads 1 --set save=%s/a1.st", dir);
    cr_assert_eq(run_app(0, &one, args), 0, "%s", one);
    // The whole report line, every printed digit, once.
    char *tn = strstr(nnc, "test  loss"), *ta = strstr(app, "test  loss");
    cr_assert(tn && ta, "%s", app);
    size_t len = strcspn(tn, "\n");
    cr_assert(len > 40 && strncmp(tn, ta, len) == 0, "nnc: %.*s\napp: %.*s", (int)len, tn,
              (int)strcspn(ta, "\n"), ta);
    cr_assert_null(strstr(ta + 1, "test  loss"), "printed twice: %s", app);
    cr_assert(strstr(app, "saved") && !strstr(strstr(app, "saved") + 1, "saved"), "%s", app);
    cr_assert(max_rel_diff("n2.st", "a2.st") == 0, "the program's ranks differ from nnc's");
    double d = max_rel_diff("a1.st", "a2.st");
    cr_assert(d <= BOUND, "2 ranks differ from 1 process by %g (bound %g)", d, BOUND);
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/n2.jsonl", dir);
    snprintf(p2, sizeof p2, "%s/a2.jsonl", dir);
    char *j1 = tu_read_file(p1), *j2 = tu_read_file(p2);
    cr_assert(j1 && j2);
    cr_assert_str_eq(j1, j2);
    free(j1);
    free(j2);
    free(nnc);
    free(app);
    free(one);
}

Test(mpi_cli, built_program_ranks_write_once_resume_and_check_settings)
{
    need_mpi();
    build_flowers();
    char *out = NULL, cmd[4096];
    snprintf(cmd, sizeof cmd, MPIRUN " -np 1 %s/flowers train --threads 1 --set epochs=3 --set "
             "save=%s/r0.st --metrics %s/r0.jsonl : -np 1 %s/flowers train --threads 1 --set "
             "epochs=3 --set save=%s/r1.st --metrics %s/r1.jsonl", dir, dir, dir, dir, dir, dir);
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out);
    cr_assert(exists("r0.st") && exists("r0.jsonl"), "%s", out);
    cr_assert(!exists("r1.st") && !exists("r1.jsonl"), "rank 1 wrote a file: %s", out);
    free(out);
    char args[1024];
    snprintf(args, sizeof args, "train --threads 1 --set epochs=8 --resume %s/r0.st --set "
             "save=%s/r8.st", dir, dir);
    cr_assert_eq(run_app(2, &out, args), 0, "%s", out);
    cr_assert(strstr(out, "resumed from") && strstr(out, "3 of 8 epochs done"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "train --threads 1 --set epochs=8 --set save=%s/f8.st", dir);
    cr_assert_eq(run_app(0, &out, args), 0, "%s", out);
    free(out);
    double d = max_rel_diff("f8.st", "r8.st");
    cr_assert(d <= BOUND, "resumed under 2 ranks differs by %g", d);
    snprintf(cmd, sizeof cmd, MPIRUN " -np 1 %s/flowers train --threads 1 --set save=%s/x.st : "
             "-np 1 %s/flowers train --threads 1 --set epochs=3 --set save=%s/x.st", dir, dir, dir,
             dir);
    cr_assert_eq(tu_run(cmd, &out), 1, "%s", out);
    cr_assert(strstr(out, "rank 1 compiled a different train step or settings than rank 0"),
              "%s", out);
    cr_assert(!exists("x.st"), "trained anyway: %s", out);
    free(out);
}

// A built program's data-parallel step carries its sharded update too
// (built with every gradient sharded): as ranks it reduce-scatters and
// all-gathers, reaches one process's weights within the bound, and
// NNC_MPI_SHARD=0 at run time gives the whole update back.
Test(mpi_cli, built_program_shards_its_update)
{
    need_mpi();
    setenv("NNC_MPI_SHARD_MIN", "1", 1);
    build_flowers();
    unsetenv("NNC_MPI_SHARD_MIN");
    char *out = NULL, args[1024];
    cr_assert_eq(run_k(0, NULL, FLOWERS " --set save=%s/b1.st", dir), 0);
    setenv("NNC_MPI_STATS", "1", 1);
    snprintf(args, sizeof args, "train --threads 1 --set save=%s/b2.st", dir);
    cr_assert_eq(run_app(2, &out, args), 0, "%s", out);
    cr_assert(strstr(out, "sharded update: 4 buckets reduce-scattered"), "%s", out);
    free(out);
    setenv("NNC_MPI_SHARD", "0", 1);
    snprintf(args, sizeof args, "train --threads 1 --set save=%s/b0.st", dir);
    cr_assert_eq(run_app(2, &out, args), 0, "%s", out);
    unsetenv("NNC_MPI_SHARD");
    unsetenv("NNC_MPI_STATS");
    cr_assert(strstr(out, "4 buckets (4 summed in place)") && !strstr(out, "sharded update"),
              "%s", out);
    free(out);
    double d2 = max_rel_diff("b1.st", "b2.st"), d0 = max_rel_diff("b1.st", "b0.st");
    cr_assert(d2 <= BOUND && d0 <= BOUND, "built program on 2 ranks: differs by %g sharded, %g "
              "not (bound %g)", d2, d0, BOUND);
}
