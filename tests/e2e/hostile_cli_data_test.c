// Hostile files through the command line (issue 7): a FIFO, /dev/zero or a
// directory given as script, import, data, --weights or --resume; IDX headers
// that lie; checkpoints that are almost right; csv() label options that do
// not fit an int; unterminated quotes and negative or float labels. Every run
// must end (each command runs under `timeout`, so a reader that blocks fails
// the test with exit 124) with exit 1 and a message naming the file.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static void setup(void)
{
    cr_assert_eq(chdir(NN_SOURCE_DIR), 0);
    tu_scratch_make("hostile");
}

static void teardown(void)
{
    tu_scratch_remove();
}

TestSuite(hostile_cli, .init = setup, .fini = teardown, .timeout = 120);

static char *path_of(const char *name)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", tu_dir(), name) > 0);
    return p;
}

static char *write_file(const char *name, const void *bytes, size_t n)
{
    char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return p;
}

static char *write_text(const char *name, const char *text)
{
    return write_file(name, text, strlen(text));
}

static char *fifo(const char *name)
{
    char *p = path_of(name);
    cr_assert_eq(mkfifo(p, 0600), 0);
    return p;
}

// Runs `timeout 20 nnc ARGS`; expects exit `want` and each NULL-terminated string in the output.
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

// A CSV classification script over `csv` (the loader call is on line 3).
static char *csv_script(const char *name, const char *csv, const char *opts, const char *save)
{
    char *text = NULL, *save_line = NULL;
    cr_assert(asprintf(&save_line, save ? "    save = \"%s\"\n" : "%s", save ? save : "") >= 0);
    cr_assert(asprintf(&text,
                       "import std\n"
                       "data d {\n"
                       "    train = csv(\"%s\"%s)\n"
                       "}\n"
                       "model m(x: f32[N, 2]) -> f32[N, 2] {\n"
                       "    return x |> dense(2)\n"
                       "}\n"
                       "train m on d {\n"
                       "    loss = cross_entropy(output, label)\n"
                       "    optimizer = adam()\n"
                       "    epochs = 1\n"
                       "%s"
                       "}\n",
                       csv, opts, save_line) > 0);
    char *p = write_text(name, text);
    free(text);
    free(save_line);
    return p;
}

static char *good_csv(void)
{
    return write_text("good.csv", "a,b,label\n0,1,0\n1,0,1\n0.5,1,0\n1,0.2,1\n0,0.9,0\n1,0.1,1\n");
}

// A script that loads IDX images and labels (the loader call is on line 3).
static char *idx_script(const char *name, const char *img, const char *lbl)
{
    char *text = NULL;
    cr_assert(asprintf(&text,
                       "import std\n"
                       "data d {\n"
                       "    train = idx(\"%s\", \"%s\")\n"
                       "    x = flatten(x)\n"
                       "}\n"
                       "model m(x: f32[N, 4]) -> f32[N, 2] {\n"
                       "    return x |> dense(2)\n"
                       "}\n"
                       "train m on d {\n"
                       "    loss = cross_entropy(output, label)\n"
                       "    optimizer = adam()\n"
                       "}\n",
                       img, lbl) > 0);
    char *p = write_text(name, text);
    free(text);
    return p;
}

// ---- item 4: not regular files ---------------------------------------------

Test(hostile_cli, fifo_dev_zero_and_directory_as_script)
{
    char *p = fifo("script.nn"), args[512];
    snprintf(args, sizeof args, "check %s", p);
    expect_run(1, args, p, "is a FIFO, not a regular file", NULL);
    expect_run(1, "check /dev/zero", "/dev/zero is a character device, not a regular file",
               NULL);
    snprintf(args, sizeof args, "train %s", tu_dir());
    expect_run(1, args, "is a directory, not a regular file", NULL);
    free(p);
}

Test(hostile_cli, fifo_and_dev_zero_as_import)
{
    char *p = fifo("lib.nn"), args[512];
    char *nn = write_text("main.nn", "import \"lib.nn\"\nimport std\n");
    snprintf(args, sizeof args, "check %s", nn);
    expect_run(1, args, "main.nn:1:", "cannot import", "is a FIFO, not a regular file", NULL);
    char *nn2 = write_text("main2.nn", "import \"/dev/zero\"\n");
    snprintf(args, sizeof args, "check %s", nn2);
    expect_run(1, args, "main2.nn:1:", "is a character device", NULL);
    free(p), free(nn), free(nn2);
}

Test(hostile_cli, fifo_and_dev_zero_as_data)
{
    char *p = fifo("data.csv"), args[512];
    char *nn = csv_script("fifo.nn", p, "", NULL);
    snprintf(args, sizeof args, "check %s", nn);
    expect_run(1, args, "fifo.nn:3:", "data.csv is a FIFO, not a regular file", NULL);
    char *nn2 = csv_script("zero.nn", "/dev/zero", "", NULL);
    snprintf(args, sizeof args, "check %s", nn2);
    expect_run(1, args, "zero.nn:3:", "/dev/zero is a character device", NULL);
    char *img = fifo("img.idx");
    char *nn3 = idx_script("idx.nn", img, img);
    snprintf(args, sizeof args, "check %s", nn3);
    expect_run(1, args, "idx.nn:3:", "img.idx is a FIFO", NULL);
    free(p), free(nn), free(nn2), free(img), free(nn3);
}

Test(hostile_cli, directory_and_fifo_as_weights_or_resume)
{
    char *csv = good_csv(), args[1024];
    char *nn = csv_script("m.nn", csv, "", NULL);
    snprintf(args, sizeof args, "eval %s --weights %s", nn, tu_dir());
    expect_run(1, args, "is a directory, not a regular file", NULL);
    char *p = fifo("w.safetensors");
    snprintf(args, sizeof args, "eval %s --weights %s", nn, p);
    expect_run(1, args, "w.safetensors is a FIFO, not a regular file", NULL);
    snprintf(args, sizeof args, "train %s -q --resume %s", nn, p);
    expect_run(1, args, "w.safetensors is a FIFO, not a regular file", NULL);
    free(csv), free(nn), free(p);
}

// ---- item 12: checkpoints --------------------------------------------------

// Trains one epoch and returns the checkpoint's bytes (malloc'd) and length.
static unsigned char *checkpoint(char **nn, char **ck, size_t *len)
{
    char *csv = good_csv(), args[1024];
    *ck = path_of("m.safetensors");
    *nn = csv_script("m.nn", csv, "", *ck);
    snprintf(args, sizeof args, "train %s -q", *nn);
    expect_run(0, args, NULL);
    snprintf(args, sizeof args, "eval %s -q --weights %s", *nn, *ck);
    expect_run(0, args, NULL);
    FILE *f = fopen(*ck, "rb");
    cr_assert_not_null(f);
    unsigned char *b = malloc(1 << 20);
    *len = fread(b, 1, 1 << 20, f);
    fclose(f);
    free(csv);
    return b;
}

Test(hostile_cli, checkpoint_header_one_byte_short_and_trailing_bytes)
{
    char *nn, *ck, args[1024];
    size_t n;
    unsigned char *b = checkpoint(&nn, &ck, &n);
    b[0]--;
    char *bad = write_file("short.safetensors", b, n);
    snprintf(args, sizeof args, "eval %s -q --weights %s", nn, bad);
    expect_run(1, args, "short.safetensors", "unexpected bytes", NULL);
    b[0]++;
    b[n] = 0;
    char *longer = write_file("long.safetensors", b, n + 1);
    snprintf(args, sizeof args, "eval %s -q --weights %s", nn, longer);
    expect_run(1, args, "long.safetensors: 1 unexpected bytes", NULL);
    free(b), free(nn), free(ck), free(bad), free(longer);
}

Test(hostile_cli, checkpoint_nan_weight)
{
    char *nn, *ck, args[1024];
    size_t n;
    unsigned char *b = checkpoint(&nn, &ck, &n);
    uint32_t nan = 0x7FC00000u;
    memcpy(b + n - 4, &nan, 4);
    char *bad = write_file("nan.safetensors", b, n);
    snprintf(args, sizeof args, "eval %s -q --weights %s", nn, bad);
    expect_run(1, args, "nan.safetensors: tensor '", "holds NaN", NULL);
    free(b), free(nn), free(ck), free(bad);
}

Test(hostile_cli, checkpoint_negative_epoch)
{
    char *nn, *ck, args[1024];
    size_t n;
    unsigned char *b = checkpoint(&nn, &ck, &n);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)b[i] << (8 * i);
    char *h = strndup((const char *)b + 8, hl);
    char *e = strstr(h, "\"epoch\":\"1\"");
    cr_assert_not_null(e, "%s", h);
    // Same length: "1" becomes "-" then the key's value "-5" takes a pad space.
    char *nh = NULL;
    cr_assert(asprintf(&nh, "%.*s\"epoch\":\"-5\"%s", (int)(e - h), h, e + strlen("\"epoch\":\"1\""))
              > 0);
    size_t k = strlen(nh);
    while (k && nh[k - 1] == ' ')
        k--;
    unsigned char *c = malloc(n + 16);
    size_t pad = (8 - k % 8) % 8;
    for (int i = 0; i < 8; i++)
        c[i] = (unsigned char)((uint64_t)(k + pad) >> (8 * i));
    memcpy(c + 8, nh, k);
    memset(c + 8 + k, ' ', pad);
    memcpy(c + 8 + k + pad, b + 8 + hl, n - 8 - hl);
    cr_assert_eq(remove(ck), 0);
    free(write_file("m.safetensors", c, 8 + k + pad + n - 8 - hl));
    snprintf(args, sizeof args, "train %s -q --resume %s", nn, ck);
    expect_run(1, args, "m.safetensors: metadata 'epoch' is \"-5\"", NULL);
    free(b), free(c), free(h), free(nh), free(nn), free(ck);
}

// ---- items 2 and 13: data files ----------------------------------------------

Test(hostile_cli, idx_header_that_lies)
{
    unsigned char b[35] = {0, 0, 8, 3, 0, 0, 0xEA, 0x60, 0, 0, 0, 130, 0, 0, 0, 130};
    char *img = write_file("liar.idx", b, sizeof b), args[1024];
    char *nn = idx_script("liar.nn", img, img);
    // 4 GB of address space would be needed if the header were believed
    // (a sanitizer build reserves terabytes of shadow memory, so no limit there).
    snprintf(args, sizeof args, "check %s", nn);
    char cmd[1200], *out = NULL;
#ifdef __SANITIZE_ADDRESS__
    const char *limit = "";
#else
    const char *limit = "ulimit -v 2000000; ";
#endif
    snprintf(cmd, sizeof cmd, "%stimeout 20 %s %s", limit, tu_nnc(), args);
    int rc = tu_run(cmd, &out);
    cr_assert_eq(rc, 1, "exit %d\n%s", rc, out);
    cr_assert(strstr(out, "liar.idx: truncated at byte 35"), "%s", out);
    free(out), free(img), free(nn);
}

// Item 1: sizes from files are checked before they are used.
Test(hostile_cli, idx_dimensions_and_checkpoint_shapes_that_overflow)
{
    unsigned char b[4 + 4 * 6] = {0, 0, 8, 6};
    memset(b + 4, 0xFF, 4 * 6);
    char *img = write_file("dims.idx", b, sizeof b), args[1024];
    char *nn = idx_script("dims.nn", img, img);
    snprintf(args, sizeof args, "check %s", nn);
    expect_run(1, args, "dims.nn:3:", "dims.idx: IDX dimensions too large at byte", NULL);
    char *csv = good_csv();
    char *m = csv_script("m.nn", csv, "", NULL);
    const char *h = "{\"m.dense.w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,"
                    "1099511627776],\"data_offsets\":[0,0]}}";
    unsigned char c[256] = {(unsigned char)strlen(h)};
    memcpy(c + 8, h, strlen(h));
    char *w = write_file("big.safetensors", c, 8 + strlen(h));
    snprintf(args, sizeof args, "eval %s -q --weights %s", m, w);
    expect_run(1, args, "big.safetensors: tensor 'm.dense.w'", "too many elements", NULL);
    free(img), free(nn), free(csv), free(m), free(w);
}

static char *idx_pair_script(const char *name, const unsigned char *lab, size_t n)
{
    unsigned char img[16 + 4 * 4] = {0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2};
    char *ip = write_file("img.idx", img, sizeof img);
    char *lp = write_file(name, lab, n);
    char *nn = idx_script("pair.nn", ip, lp);
    free(ip), free(lp);
    return nn;
}

Test(hostile_cli, negative_and_float_labels)
{
    unsigned char neg[8 + 4] = {0, 0, 0x09, 1, 0, 0, 0, 4, 0, 1, 0xFE, 1};
    char *nn = idx_pair_script("neg.idx", neg, sizeof neg), args[1024];
    snprintf(args, sizeof args, "check %s", nn);
    expect_run(1, args, "pair.nn:3:", "neg.idx: byte 10: label -2 is negative", NULL);
    free(nn);
    unsigned char fl[8 + 16] = {0, 0, 0x0D, 1, 0, 0, 0, 4};
    nn = idx_pair_script("float.idx", fl, sizeof fl);
    snprintf(args, sizeof args, "check %s", nn);
    expect_run(1, args, "float.idx: a label file must hold integers", "holds float", NULL);
    free(nn);
}

Test(hostile_cli, csv_label_options_and_quotes)
{
    char *csv = good_csv(), args[1024];
    char *nn = csv_script("big.nn", csv, ", label = 2147483648", NULL);
    snprintf(args, sizeof args, "check %s", nn);
    expect_run(1, args, "big.nn:3:", "label = 2147483648 is not a column index", NULL);
    char *nn2 = csv_script("frac.nn", csv, ", label = 1.5", NULL);
    snprintf(args, sizeof args, "check %s", nn2);
    expect_run(1, args, "frac.nn:3:", "label = 1.5 is not a column index", NULL);
    char *q = write_text("q.csv", "a,b,label\n0,1,0\n\"1,0,1\n");
    char *nn3 = csv_script("quote.nn", q, "", NULL);
    snprintf(args, sizeof args, "check %s", nn3);
    expect_run(1, args, "quote.nn:3:", "q.csv:3:1: unterminated quoted field", NULL);
    free(csv), free(nn), free(nn2), free(q), free(nn3);
}
