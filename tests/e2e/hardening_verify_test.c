// Issue 7, checked end to end on the merged code: the close variants of its
// items that still failed there. A socket named as an input file (reported as
// "No such device or address"), a FIFO nobody reads as --metrics (blocked
// forever), a failed first save claiming "previous file kept", and i32 list
// literals holding fractions (1.5 became class 1). Every command runs under
// `timeout`, so a hang fails with exit 124.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "testutil.h"

static void setup(void)
{
    cr_assert_eq(chdir(NN_SOURCE_DIR), 0);
    tu_scratch_make("h7v");
}

static void teardown(void)
{
    tu_scratch_remove();
}

TestSuite(hardening_verify, .init = setup, .fini = teardown, .timeout = 120);

static char *path_of(const char *name)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", tu_dir(), name) > 0);
    return p;
}

static char *write_text(const char *name, const char *text)
{
    char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

// Runs `timeout 20 CMD` (CMD with nnc's path for %s); expects exit `want` and
// each NULL-terminated string in the output.
static void expect_run(int want, const char *args, ...)
{
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "timeout 20 %s %s", tu_nnc(), args);
    int rc = tu_run(cmd, &out);
    cr_assert_eq(rc, want, "%s: exit %d (%d expected)\n%s", args, rc, want, out);
    va_list ap;
    va_start(ap, args);
    for (const char *w; (w = va_arg(ap, const char *));)
        cr_assert(strstr(out, w), "%s: the output lacks '%s':\n%s", args, w, out);
    va_end(ap);
    cr_assert_null(strstr(out, "internal error"), "%s", out);
    free(out);
}

static const char *xor_script = "import std\n"
                                "data d {\n"
                                "    x = [[0, 0], [0, 1], [1, 0], [1, 1]]\n"
                                "    y = [[0], [1], [1], [0]]\n"
                                "}\n"
                                "model m(x: f32[N, 2]) -> f32[N, 1] {\n"
                                "    return x |> dense(4) |> tanh |> dense(1)\n"
                                "}\n"
                                "train m on d {\n"
                                "    loss = mse(output, y)\n"
                                "    optimizer = adam(lr = 0.05)\n"
                                "    batch = 4\n"
                                "    epochs = 2\n"
                                "}\n";

// ---- item 4: a socket is named as one, wherever a file is read ------------

Test(hardening_verify, socket_as_script_import_data_and_checkpoint)
{
    char *sock = path_of("s.sock"), args[1024];
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    snprintf(args, sizeof args, "check %s", sock);
    expect_run(1, args, "is a socket, not a regular file", NULL);
    char *text = NULL;
    cr_assert(asprintf(&text, "import \"%s\"\n%s", sock, xor_script) > 0);
    char *imp = write_text("imp.nn", text);
    snprintf(args, sizeof args, "check %s", imp);
    expect_run(1, args, "imp.nn:1:1: error: cannot import", "is a socket, not a regular file", NULL);
    free(text);
    cr_assert(asprintf(&text,
                       "import std\ndata d {\n    train = csv(\"%s\", label = 2)\n}\n"
                       "model m(x: f32[N, 2]) -> f32[N, 2] { return dense(x, 2) }\n"
                       "train m on d {\n    loss = cross_entropy(output, label)\n"
                       "    optimizer = adam()\n}\n",
                       sock) > 0);
    char *csv = write_text("csv.nn", text);
    snprintf(args, sizeof args, "check %s", csv);
    expect_run(1, args, "csv.nn:3:13: error:", "is a socket, not a regular file", NULL);
    char *nn = write_text("x.nn", xor_script);
    snprintf(args, sizeof args, "eval %s --weights %s", nn, sock);
    expect_run(1, args, "is a socket, not a regular file", NULL);
    snprintf(args, sizeof args, "train %s --resume %s", nn, sock);
    expect_run(1, args, "is a socket, not a regular file", NULL);
    close(fd);
    free(text), free(sock), free(imp), free(csv), free(nn);
}

// ---- items 4, 8, 10: --metrics that cannot be appended to ------------------

Test(hardening_verify, metrics_fifo_without_reader_and_directory_before_training)
{
    char *nn = write_text("x.nn", xor_script), *fifo = path_of("m.fifo"), args[1024];
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    snprintf(args, sizeof args, "train %s --metrics %s", nn, fifo);
    expect_run(1, args, "m.fifo: cannot open metrics file: it is a FIFO that nothing reads", NULL);
    snprintf(args, sizeof args, "eval %s --weights x.st --metrics=%s", nn, fifo);
    expect_run(1, args, "it is a FIFO that nothing reads", NULL);
    // Refused before the first epoch, not after it.
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "timeout 20 %s train %s --metrics %s", tu_nnc(), nn, tu_dir());
    cr_assert_eq(tu_run(cmd, &out), 1, "%s", out);
    cr_assert(strstr(out, "cannot open metrics file: Is a directory"), "%s", out);
    cr_assert_null(strstr(out, "epoch 1"), "trained before refusing:\n%s", out);
    free(out);
    // A character device is fine to append to.
    snprintf(args, sizeof args, "train %s -q --metrics /dev/null", nn);
    expect_run(0, args, NULL);
    struct stat sb;
    cr_assert_eq(stat(fifo, &sb), 0);
    cr_assert(S_ISFIFO(sb.st_mode));
    free(nn), free(fifo);
}

// ---- items 7, 9: a failed first save does not claim to keep a file ---------

Test(hardening_verify, failed_first_save_says_nothing_written)
{
    char *nn = write_text("x.nn", xor_script), cmd[1024], *out = NULL;
    // A file size limit of 0 makes every write of the checkpoint fail.
    snprintf(cmd, sizeof cmd,
             "bash -c \"trap '' XFSZ; ulimit -f 0; timeout 20 %s train %s -q --set save=%s/w.st 2>&1\" | cat",
             tu_nnc(), nn, tu_dir());
    tu_run(cmd, &out);
    cr_assert(strstr(out, "saving the checkpoint failed") && strstr(out, "(nothing written)"),
              "%s", out);
    cr_assert_null(strstr(out, "previous file kept"), "%s", out);
    free(out);
    char *w = path_of("w.st");
    cr_assert_neq(access(w, F_OK), 0, "a failed save left %s", w);
    free(nn), free(w);
}

// ---- item 13: list literals for labels hold whole numbers ------------------

Test(hardening_verify, i32_list_literal_with_fraction_is_an_error)
{
    char *nn = write_text("l.nn", "import std\n"
                                  "data d {\n"
                                  "    x = [[0, 1], [1, 0]]\n"
                                  "    label = i32([0, 1.5])\n"
                                  "}\n"
                                  "model m(x: f32[N, 2]) -> f32[N, 3] { return dense(x, 3) }\n"
                                  "train m on d {\n"
                                  "    loss = cross_entropy(output, label)\n"
                                  "    optimizer = sgd(lr = 0.1)\n"
                                  "    batch = 2\n"
                                  "    epochs = 1\n"
                                  "}\n");
    char args[1024];
    snprintf(args, sizeof args, "check %s", nn);
    expect_run(1, args, "l.nn:4:21: error: i32 data must be whole numbers", "got 1.5", NULL);
    snprintf(args, sizeof args, "train %s", nn);
    expect_run(1, args, "l.nn:4:21: error:", NULL);
    free(nn);
    nn = write_text("l2.nn", "import std\n"
                             "data d {\n"
                             "    x = [[0, 1], [1, 0]]\n"
                             "    label = i32([0, 4294967296])\n"
                             "}\n"
                             "model m(x: f32[N, 2]) -> f32[N, 3] { return dense(x, 3) }\n"
                             "train m on d {\n"
                             "    loss = cross_entropy(output, label)\n"
                             "    optimizer = sgd(lr = 0.1)\n"
                             "}\n");
    snprintf(args, sizeof args, "check %s", nn);
    expect_run(1, args, "l2.nn:4:21: error: i32 data must be whole numbers", NULL);
    free(nn);
}

// ---- docs: the example of docs/language.md §7 is what nnc prints ----------

Test(hardening_verify, language_doc_syntax_error_example_column)
{
    char *nn = write_text("model.nn", "import std\n"
                                      "model m(x: f32[N, 2]) -> f32[N, 2] {\n"
                                      "    h = dense(x + )\n"
                                      "    return h\n"
                                      "}\n");
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "cd %s && timeout 20 %s check model.nn", tu_dir(), tu_nnc());
    cr_assert_eq(tu_run(cmd, &out), 1, "%s", out);
    char *doc = tu_read_file("docs/language.md");
    cr_assert_not_null(doc);
    // The first line of the output and its caret line appear in the doc verbatim.
    char *nl = strchr(out, '\n');
    cr_assert_not_null(nl);
    char *first = strndup(out, (size_t)(nl - out));
    cr_assert(strstr(doc, first), "docs/language.md lacks '%s'", first);
    char *caret = strstr(out, "\n      |");
    caret = caret ? caret + 1 : NULL;
    cr_assert_not_null(caret, "%s", out);
    char *caret_line = strndup(caret, strcspn(caret, "\n"));
    cr_assert(strstr(doc, caret_line), "docs/language.md lacks the caret line '%s'", caret_line);
    free(first), free(caret_line), free(doc), free(out), free(nn);
}
