// Nothing the user owns is lost, through the command line: --resume W reads W
// and saves to the save path (and a missing W is an error); a save path that
// is not a regular file is refused before training; a failed image write
// keeps the old image; --metrics appends; SIGTERM during a save leaves no
// temporary and an intact checkpoint. Every "saved X" message is checked
// against the file X. Files live in a fresh directory under /tmp per test.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static const char *dir; // the scratch directory (tu_dir())

static void setup(void)
{
    cr_assert_eq(chdir(NN_SOURCE_DIR), 0);
    dir = tu_scratch_make("save");
}

static void teardown(void) { tu_scratch_remove(); }

TestSuite(save_cli, .init = setup, .fini = teardown, .timeout = 300);

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static bool same_file_bytes(const char *a, const char *b)
{
    size_t la, lb;
    char *x = tu_slurp(a, &la), *y = tu_slurp(b, &lb);
    bool same = la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

// The checkpoint's "epoch" metadata (-1 when absent).
static int ckpt_epoch(const char *path)
{
    size_t len;
    char *b = tu_slurp(path, &len);
    const char *p = len > 8 ? memmem(b + 8, len - 8, "\"epoch\":\"", 9) : NULL;
    int e = p ? atoi(p + 9) : -1;
    free(b);
    return e;
}

// Files in dir whose name contains ".tmp.".
static int temporaries(void)
{
    DIR *d = opendir(dir);
    cr_assert(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

Test(save_cli, resume_reads_w_and_saves_to_the_save_path)
{
    const char *a = tu_in_dir("a.st"), *a0 = tu_in_dir("a0.st"), *b = tu_in_dir("b.st");
    free(tu_nnc_rc(0, "train examples/xor.nn --backend interp --set epochs=3 --set save=%s", a));
    cr_assert_eq(ckpt_epoch(a), 3);
    free(tu_nnc_rc(0, "train examples/xor.nn -q --backend interp --set epochs=3 --set save=%s",
                   a0));
    char *out = tu_nnc_rc(0, "train examples/xor.nn --backend interp --set epochs=5 --resume %s "
                          "--set save=%s", a, b);
    cr_assert(same_file_bytes(a, a0), "--resume overwrote %s", a);
    cr_assert_eq(ckpt_epoch(b), 5, "the save path did not get the resumed run");
    char *want = NULL;
    cr_assert(asprintf(&want, "saved %s\n", b) > 0);
    cr_assert(strstr(out, want), "%s", out);
    cr_assert(strstr(out, "resumed from") && strstr(out, "3 of 5 epochs done"), "%s", out);
    cr_assert_null(strstr(out, "epoch 1/5"), "a resumed run repeated epoch 1:\n%s", out);
    cr_assert(strstr(out, "epoch 4/5"), "%s", out);
    free(want);
    free(out);

    // The save setting of the train block counts too; without one nothing is saved.
    cr_assert_eq(unlink(b), 0);
    out = tu_nnc_rc(0, "train examples/xor.nn --backend interp --set epochs=5 --resume %s", a);
    cr_assert(same_file_bytes(a, a0), "--resume without a save path wrote %s", a);
    cr_assert_null(strstr(out, "saved"), "claims a save that did not happen:\n%s", out);
    free(out);

    // Resuming a finished run trains nothing and saves nothing, and says so.
    out = tu_nnc_rc(0, "train examples/xor.nn --backend interp --set epochs=3 --resume %s "
                    "--set save=%s", a, b);
    cr_assert(strstr(out, "nothing left to train"), "%s", out);
    cr_assert_null(strstr(out, "saved"), "%s", out);
    cr_assert(!exists(b), "%s written although nothing was trained", b);
    free(out);
}

Test(save_cli, resume_of_a_missing_file_is_an_error)
{
    const char *w = tu_in_dir("missing.st"), *s = tu_in_dir("s.st");
    char *out = tu_nnc_rc(1, "train examples/xor.nn --backend interp --set epochs=2 --resume %s "
                          "--set save=%s", w, s);
    cr_assert(strstr(out, "error: cannot resume from") && strstr(out, w), "%s", out);
    cr_assert_null(strstr(out, "epoch 1/"), "trained from scratch:\n%s", out);
    cr_assert(!exists(w) && !exists(s), "a file was created");
    free(out);
    // The same when W is also the save path (the old silent fresh start).
    out = tu_nnc_rc(1, "train examples/xor.nn --backend interp --set epochs=2 --resume %s "
                    "--set save=%s", w, w);
    cr_assert(!exists(w), "%s was created", w);
    free(out);
}

// epochs = 0 reports on the resumed model: the same numbers the run ended with.
Test(save_cli, epochs_zero_reports_the_resumed_model)
{
    const char *a = tu_in_dir("a.st");
    char *trained = tu_nnc_rc(0, "train examples/xor.nn --backend interp --set epochs=50 "
                              "--set save=%s", a);
    char *report = tu_nnc_rc(0, "train examples/xor.nn --backend interp --set epochs=0 --resume %s",
                          a);
    const char *line = strstr(trained, "train loss");
    cr_assert(line, "%s", trained);
    char *want = strndup(line, (size_t)(strchr(line, '\n') - line));
    cr_assert(strstr(report, want), "expected '%s' from the resumed model, got:\n%s", want,
              report);
    free(want);
    free(trained);
    free(report);
}

Test(save_cli, save_over_a_non_regular_file_is_refused_before_training)
{
    const char *fifo = tu_in_dir("fifo"), *sub = tu_in_dir("sub");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(mkdir(sub, 0700), 0);
    char *out = tu_nnc_rc(1, "train examples/xor.nn --backend interp --set epochs=2 --set save=%s",
                       fifo);
    cr_assert(strstr(out, "error: cannot save checkpoints: '") && strstr(out, fifo) &&
              strstr(out, "is a FIFO (named pipe), not a regular file"), "%s", out);
    cr_assert_null(strstr(out, "epoch 1/"), "trained before refusing:\n%s", out);
    cr_assert_null(strstr(out, "saved"), "%s", out);
    struct stat st;
    cr_assert(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO was replaced");
    free(out);
    out = tu_nnc_rc(1, "train examples/xor.nn --backend interp --set epochs=2 --set save=%s", sub);
    cr_assert(strstr(out, "is a directory, not a regular file"), "%s", out);
    cr_assert_null(strstr(out, "epoch 1/"), "trained before refusing:\n%s", out);
    free(out);
    cr_assert_eq(temporaries(), 0);
}

// A symbolic link stays a link; the file it names gets the checkpoint.
Test(save_cli, save_through_a_symlink_keeps_the_link)
{
    const char *real = tu_in_dir("real.st"), *link = tu_in_dir("link.st");
    cr_assert_eq(symlink(real, link), 0);
    free(tu_nnc_rc(0, "train examples/xor.nn -q --backend interp --set epochs=2 --set save=%s",
                real));
    free(tu_nnc_rc(0, "train examples/xor.nn -q --backend interp --set epochs=3 --set save=%s",
                link));
    struct stat st;
    cr_assert(lstat(link, &st) == 0 && S_ISLNK(st.st_mode), "the link was replaced by a file");
    cr_assert_eq(ckpt_epoch(real), 3);
    cr_assert_eq(temporaries(), 0);
}

enum { SIDE = 16, NIMG = 24 };

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void write_file(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

// IDX images of noise (so a PNG of them does not compress below a few KB),
// labels, and a script with augmentation that loads them.
static const char *image_script(void)
{
    unsigned char img[16 + NIMG * SIDE * SIDE], lbl[8 + NIMG];
    put32(img, 0x00000803);
    put32(img + 4, NIMG);
    put32(img + 8, SIDE);
    put32(img + 12, SIDE);
    uint32_t s = 12345;
    for (size_t i = 16; i < sizeof img; i++) {
        s = s * 1103515245u + 12345u;
        img[i] = (unsigned char)(s >> 16);
    }
    put32(lbl, 0x00000801);
    put32(lbl + 4, NIMG);
    for (int i = 0; i < NIMG; i++)
        lbl[8 + i] = (unsigned char)(i % 2);
    write_file(tu_in_dir("img.idx"), img, sizeof img);
    write_file(tu_in_dir("lbl.idx"), lbl, sizeof lbl);
    char *text = NULL;
    cr_assert(asprintf(&text,
                       "import std\n"
                       "data d {\n"
                       "    train = idx(\"%s\", \"%s\")\n"
                       "    x = flatten(x) / 255\n"
                       "}\n"
                       "model m(x: f32[N, %d]) -> f32[N, 2] {\n"
                       "    return x |> dense(2)\n"
                       "}\n"
                       "train m on d {\n"
                       "    loss = cross_entropy(output, label)\n"
                       "    optimizer = adam(lr = 0.05)\n"
                       "    augment = [random_shift(1)]\n"
                       "}\n",
                       tu_in_dir("img.idx"), tu_in_dir("lbl.idx"), SIDE * SIDE) > 0);
    const char *nn = tu_in_dir("img.nn");
    write_file(nn, text, strlen(text));
    free(text);
    return nn;
}

// A full disk (a 1 KiB file size limit, SIGXFSZ ignored) fails the write and
// keeps the existing image, for both formats.
Test(save_cli, failed_image_write_keeps_the_existing_file)
{
    const char *nn = image_script();
    const char *ext[] = {".png", ".pgm"};
    for (int i = 0; i < 2; i++) {
        char *keep = NULL;
        cr_assert(asprintf(&keep, "%s/keep%s", dir, ext[i]) > 0);
        write_file(keep, "precious", 8);
        char *out = NULL;
        char *cmd = NULL;
        cr_assert(asprintf(&cmd, "bash -c 'ulimit -f 1; trap \"\" XFSZ; exec %s augment %s -o %s'",
                           tu_nnc(), nn, keep) > 0);
        int rc = tu_run(cmd, &out);
        cr_assert_eq(rc, 1, "%s: exit %d:\n%s", cmd, rc, out);
        cr_assert(strstr(out, "error:") && strstr(out, keep) && strstr(out, "previous file kept"),
                  "%s", out);
        size_t len;
        char *b = tu_slurp(keep, &len);
        cr_assert(len == 8 && !memcmp(b, "precious", 8), "%s was lost or changed", keep);
        free(b);
        cr_assert_eq(temporaries(), 0, "a temporary file is left");
        // Without the limit the write replaces it.
        free(out);
        out = tu_nnc_rc(0, "augment %s -o %s", nn, keep);
        b = tu_slurp(keep, &len);
        cr_assert(len > 1024, "%s not written", keep);
        free(b);
        free(out);
        free(cmd);
        free(keep);
    }
}

Test(save_cli, augment_refuses_a_non_regular_output)
{
    const char *nn = image_script(), *fifo = tu_in_dir("out.png");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    // A reader, so that writing into the FIFO (the old behaviour) cannot block.
    int rd = open(fifo, O_RDONLY | O_NONBLOCK);
    cr_assert(rd >= 0);
    char *out = tu_nnc_rc(1, "augment %s -o %s", nn, fifo);
    close(rd);
    cr_assert(strstr(out, "is a FIFO (named pipe), not a regular file"), "%s", out);
    struct stat st;
    cr_assert(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO was replaced");
    free(out);
}

static int count_lines(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

Test(save_cli, metrics_file_is_appended_to)
{
    const char *m = tu_in_dir("log.jsonl");
    write_file(m, "{\"earlier\": 1}\n", 15);
    free(tu_nnc_rc(0, "train examples/xor.nn -q --backend interp --set epochs=2 --metrics %s", m));
    free(tu_nnc_rc(0, "train examples/xor.nn -q --backend interp --set epochs=3 --metrics %s", m));
    size_t len;
    char *text = tu_slurp(m, &len);
    cr_assert(!strncmp(text, "{\"earlier\": 1}\n", 15), "the earlier line is gone:\n%s", text);
    // Per run: one train line per epoch and the final report on the training data.
    cr_assert_eq(count_lines(text, "\"split\": \"train\""), (2 + 1) + (3 + 1), "%s", text);
    free(text);
}

// A model whose checkpoint (about 12 MB with Adam's moments) takes far
// longer to write than a step on 4 samples, so a signal mostly lands in a save.
static const char *big_script(const char *save)
{
    char *text = NULL;
    cr_assert(asprintf(&text,
                       "import std\n"
                       "data d {\n"
                       "    x = [[0, 0], [0, 1], [1, 0], [1, 1]]\n"
                       "    y = [[0], [1], [1], [0]]\n"
                       "}\n"
                       "model net(x: f32[N, 2]) -> f32[N, 1] {\n"
                       "    h = x |> dense(1024) |> tanh\n"
                       "    h = h |> dense(1024) |> tanh\n"
                       "    return h |> dense(1) |> sigmoid\n"
                       "}\n"
                       "train net on d {\n"
                       "    loss = mse(output, y)\n"
                       "    optimizer = adam(lr = 0.0001)\n"
                       "    batch = 4\n"
                       "    epochs = 100000\n"
                       "    save = \"%s\"\n"
                       "}\n",
                       save) > 0);
    const char *nn = tu_in_dir("big.nn");
    write_file(nn, text, strlen(text));
    free(text);
    return nn;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// Each round catches a save in the act: SIGTERM as soon as the temporary
// appears (or, every other round, a little later).
Test(save_cli, sigterm_during_saves_leaves_no_temporary, .timeout = 300)
{
    const char *ckpt = tu_in_dir("big.st");
    const char *nn = big_script(ckpt);
    for (int round = 0; round < 6; round++) {
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
                _exit(120);
            execl(tu_nnc(), "nnc", "train", nn, "--backend", "interp", "-q", (char *)NULL);
            _exit(121);
        }
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", ckpt, (int)pid);
        for (int i = 0; i < 1200 && !exists(ckpt); i++)
            sleep_ms(50);
        cr_assert(exists(ckpt), "no checkpoint after a minute");
        bool seen = false;
        for (int i = 0; i < 20000 && !seen; i++) {
            seen = exists(tmp);
            if (!seen)
                sleep_ms(1);
        }
        cr_assert(seen, "round %d: no save seen in progress", round);
        sleep_ms(round % 2 ? 5 * round : 0);
        cr_assert_eq(kill(pid, SIGTERM), 0);
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM,
                  "round %d: nnc did not die of SIGTERM (status %#x)", round, st);
        cr_assert_eq(temporaries(), 0, "round %d: SIGTERM left a temporary file", round);
        cr_assert(ckpt_epoch(ckpt) >= 1, "round %d: the checkpoint is damaged", round);
        free(tu_nnc_rc(0, "eval %s --backend interp -q --weights %s", nn, ckpt));
        cr_assert_eq(unlink(ckpt), 0);
    }
}
