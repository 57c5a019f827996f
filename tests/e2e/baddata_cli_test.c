// Bad data files through the command line: a data block that points at a
// missing, truncated, mislabelled or malformed IDX/CSV file must fail with
// exit 1 and one error located in the .nn script (the loader call) whose
// message names the data file and where in it the problem is. A checkpoint
// that cannot be saved fails the run and leaves no partial file. The IDX
// fixtures are written here (raw and gzip) with a few 6x6 images.
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

static void to_root(void) { cr_assert_eq(chdir(NN_SOURCE_DIR), 0); }

TestSuite(baddata_cli, .init = to_root, .timeout = 120);

enum { NIMG = 20, SIDE = 6 };

static char *tmp_path(const char *suffix)
{
    static int counter;
    char *p = NULL;
    cr_assert(asprintf(&p, "/tmp/nnc_bd_%d_%d%s", (int)getpid(), counter++, suffix) > 0);
    unlink(p);
    return p;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

// Writes bytes to a file, gzip-compressed when `gz`.
static void write_bytes(const char *path, const unsigned char *b, size_t n, bool gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        cr_assert(f);
        cr_assert_eq(gzwrite(f, b, (unsigned)n), (int)n);
        cr_assert_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        cr_assert(f);
        cr_assert_eq(fwrite(b, 1, n, f), n);
        fclose(f);
    }
}

// An IDX image file of n SIDE x SIDE u8 images (class c draws a bright left or right half).
static char *idx_images(int n, bool gz, uint32_t magic)
{
    size_t len = 16 + (size_t)n * SIDE * SIDE;
    unsigned char *b = calloc(len, 1);
    put32(b, magic);
    put32(b + 4, (uint32_t)n);
    put32(b + 8, SIDE);
    put32(b + 12, SIDE);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < SIDE * SIDE; p++)
            b[16 + i * SIDE * SIDE + p] = (p % SIDE < SIDE / 2) == (i % 2) ? 230 : 20;
    char *path = tmp_path(gz ? "-images.gz" : "-images.idx");
    write_bytes(path, b, len, gz);
    free(b);
    return path;
}

static char *idx_labels(int n, bool gz)
{
    size_t len = 8 + (size_t)n;
    unsigned char *b = calloc(len, 1);
    put32(b, 0x00000801);
    put32(b + 4, (uint32_t)n);
    for (int i = 0; i < n; i++)
        b[8 + i] = (unsigned char)(i % 2);
    char *path = tmp_path(gz ? "-labels.gz" : "-labels.idx");
    write_bytes(path, b, len, gz);
    free(b);
    return path;
}

// A script that loads IDX images and labels (the loader call is on line 3).
static char *idx_script(const char *img, const char *lbl)
{
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
                       "    batch = 4\n"
                       "    epochs = 2\n"
                       "    augment = [random_shift(1)]\n"
                       "}\n",
                       img, lbl, SIDE * SIDE) > 0);
    char *path = tu_write_temp(".nn", text);
    free(text);
    return path;
}

// A script that loads a CSV with a "species" label column (the call is on line 3).
static char *csv_script(const char *csv)
{
    char *text = NULL;
    cr_assert(asprintf(&text,
                       "import std\n"
                       "data d {\n"
                       "    train = csv(\"%s\", label = \"species\")\n"
                       "}\n"
                       "model m(x: f32[N, 2]) -> f32[N, 2] {\n"
                       "    return x |> dense(2)\n"
                       "}\n"
                       "train m on d {\n"
                       "    loss = cross_entropy(output, label)\n"
                       "    optimizer = adam()\n"
                       "}\n",
                       csv) > 0);
    char *path = tu_write_temp(".nn", text);
    free(text);
    return path;
}

// `nnc <cmd> script`: exit 1, one error at script line 3, naming `file` and
// containing each of the NULL-terminated `want` strings.
static void expect_data_error(const char *cmd, const char *script, const char *file, ...)
{
    char *out = NULL;
    int rc = tu_nnc_run(&out, "%s %s -q", cmd, script);
    cr_assert_eq(rc, 1, "nnc %s %s: exit %d (1 expected)\n%s", cmd, script, rc, out);
    char loc[600];
    snprintf(loc, sizeof loc, "%s:3:", script);
    const char *e = strstr(out, loc);
    cr_assert(e && !strncmp(strchr(e + strlen(loc), ':'), ": error: ", 9),
              "no error located at %s:3:\n%s", script, out);
    cr_assert(strstr(e, file), "the error does not name %s:\n%s", file, out);
    va_list ap;
    va_start(ap, file);
    for (const char *w; (w = va_arg(ap, const char *));)
        cr_assert(strstr(e, w), "the error lacks '%s':\n%s", w, out);
    va_end(ap);
    int n = 0;
    for (const char *p = out; (p = strstr(p, ": error: ")); p++)
        n++;
    cr_assert_eq(n, 1, "%d errors, expected 1:\n%s", n, out);
    cr_assert(strstr(out, "  3 | ") && strchr(out, '^'), "no source line and caret:\n%s", out);
    free(out);
}

static void rm(char *p)
{
    unlink(p);
    free(p);
}

Test(baddata_cli, fixture_trains)
{
    // The fixtures themselves are good: gzip and raw both train and check.
    char *img = idx_images(NIMG, true, 0x00000803), *lbl = idx_labels(NIMG, true);
    char *nn = idx_script(img, lbl);
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train %s -q", nn);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    char *img2 = idx_images(NIMG, false, 0x00000803), *lbl2 = idx_labels(NIMG, false);
    char *nn2 = idx_script(img2, lbl2);
    rc = tu_nnc_run(&out, "check %s", nn2);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_str_empty(out);
    free(out);
    // augment on small images writes a PNG.
    char *png = tmp_path(".png");
    rc = tu_nnc_run(&out, "augment %s -o %s", nn, png);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    char *bytes = tu_read_file(png);
    cr_assert(bytes && !memcmp(bytes, "\x89PNG\r\n\x1a\n", 8), "no PNG at %s", png);
    free(bytes);
    rm(png);
    rm(img), rm(lbl), rm(nn), rm(img2), rm(lbl2), rm(nn2);
}

Test(baddata_cli, missing_idx_file)
{
    char *lbl = idx_labels(NIMG, true);
    char *img = tmp_path("-missing.gz");
    char *nn = idx_script(img, lbl);
    expect_data_error("check", nn, img, "cannot open", "No such file", NULL);
    expect_data_error("train", nn, img, "cannot open", NULL);
    rm(img), rm(lbl), rm(nn);
}

Test(baddata_cli, truncated_gzip)
{
    char *img = idx_images(NIMG, true, 0x00000803), *lbl = idx_labels(NIMG, true);
    FILE *f = fopen(img, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert(truncate(img, size / 2) == 0);
    char *nn = idx_script(img, lbl);
    expect_data_error("check", nn, img, "byte", NULL);
    // Cut inside the gzip header: still an error, not a crash.
    cr_assert(truncate(img, 5) == 0);
    expect_data_error("check", nn, img, "byte", NULL);
    rm(img), rm(lbl), rm(nn);
}

Test(baddata_cli, truncated_raw_idx)
{
    char *img = idx_images(NIMG, false, 0x00000803), *lbl = idx_labels(NIMG, false);
    cr_assert(truncate(img, 16 + 3 * SIDE * SIDE) == 0);
    char *nn = idx_script(img, lbl);
    expect_data_error("check", nn, img, "truncated at byte", NULL);
    cr_assert(truncate(img, 10) == 0);
    expect_data_error("check", nn, img, "truncated at byte", NULL);
    cr_assert(truncate(img, 0) == 0);
    expect_data_error("check", nn, img, "byte 0", NULL);
    rm(img), rm(lbl), rm(nn);
}

Test(baddata_cli, wrong_magic)
{
    char *img = idx_images(NIMG, true, 0x12340803), *lbl = idx_labels(NIMG, true);
    char *nn = idx_script(img, lbl);
    expect_data_error("check", nn, img, "magic", "byte 0", NULL);
    rm(img), rm(lbl), rm(nn);
}

Test(baddata_cli, labels_where_images_belong)
{
    // Swapped arguments: a rank-1 label file given as the images.
    char *img = idx_images(NIMG, true, 0x00000803), *lbl = idx_labels(NIMG, true);
    char *nn = idx_script(lbl, img);
    expect_data_error("check", nn, lbl, "rank", NULL);
    rm(img), rm(lbl), rm(nn);
}

Test(baddata_cli, image_label_count_mismatch)
{
    char *img = idx_images(NIMG, true, 0x00000803), *lbl = idx_labels(NIMG - 1, true);
    char *nn = idx_script(img, lbl);
    expect_data_error("check", nn, img, "20", "19", NULL);
    // Both files are named, so the user knows which pair disagrees.
    char *out = NULL;
    tu_nnc_run(&out, "check %s", nn);
    cr_assert(strstr(out, lbl), "the labels file is not named:\n%s", out);
    free(out);
    rm(img), rm(lbl), rm(nn);
}

Test(baddata_cli, empty_idx_files)
{
    // Zero images and zero labels: well-formed files, but nothing to train on.
    char *img = idx_images(0, true, 0x00000803), *lbl = idx_labels(0, true);
    char *nn = idx_script(img, lbl);
    char *out = NULL;
    int rc = tu_nnc_run(&out, "check %s", nn);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    char loc[600];
    snprintf(loc, sizeof loc, "%s:2:1: error: ", nn);
    cr_assert(strstr(out, loc) && strstr(out, "no samples"), "%s", out);
    free(out);
    rm(img), rm(lbl), rm(nn);
}

Test(baddata_cli, trailing_bytes)
{
    char *img = idx_images(NIMG, false, 0x00000803), *lbl = idx_labels(NIMG, false);
    FILE *f = fopen(lbl, "ab");
    fputs("junk", f);
    fclose(f);
    char *nn = idx_script(img, lbl);
    expect_data_error("check", nn, lbl, "trailing", "byte", NULL);
    rm(img), rm(lbl), rm(nn);
}

Test(baddata_cli, directory_as_data_file)
{
    char *dir = tmp_path("-dir");
    cr_assert_eq(mkdir(dir, 0700), 0);
    char *lbl = idx_labels(NIMG, true);
    char *nn = idx_script(dir, lbl);
    expect_data_error("check", nn, dir, NULL);
    rmdir(dir);
    free(dir);
    rm(lbl), rm(nn);
}

Test(baddata_cli, csv_wrong_column_count)
{
    char *csv = tu_write_temp(".csv", "a,b,species\n"
                                      "1,2,cat\n"
                                      "3,4,dog\n"
                                      "5,cat\n"
                                      "7,8,dog\n");
    char *nn = csv_script(csv);
    expect_data_error("check", nn, csv, ":4:", "expected 3 columns, found 2", NULL);
    rm(csv), rm(nn);
}

Test(baddata_cli, csv_not_a_number)
{
    char *csv = tu_write_temp(".csv", "a,b,species\n"
                                      "1,2,cat\n"
                                      "3,4x,dog\n"
                                      "5,6,cat\n");
    char *nn = csv_script(csv);
    expect_data_error("check", nn, csv, ":3:2:", "'4x' is not a number", "column 'b'", NULL);
    rm(csv), rm(nn);
}

Test(baddata_cli, csv_missing_label_column)
{
    char *csv = tu_write_temp(".csv", "a,b,kind\n1,2,cat\n3,4,dog\n");
    char *nn = csv_script(csv);
    expect_data_error("check", nn, csv, "species", NULL);
    rm(csv), rm(nn);
}

Test(baddata_cli, csv_empty_and_header_only)
{
    char *csv = tu_write_temp(".csv", "");
    char *nn = csv_script(csv);
    expect_data_error("check", nn, csv, "empty", NULL);
    rm(csv), rm(nn);
    csv = tu_write_temp(".csv", "a,b,species\n");
    nn = csv_script(csv);
    expect_data_error("check", nn, csv, "empty", NULL);
    rm(csv), rm(nn);
}

Test(baddata_cli, csv_good_trains)
{
    // The same script with a good file works: the failures above are the data's.
    char *csv = tu_write_temp(".csv", "a,b,species\n1,2,cat\n3,4,dog\n1.5,2.5,cat\n3.5,4.5,dog\n");
    char *nn = csv_script(csv);
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train %s -q --set epochs=2 --set batch=2", nn);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    rm(csv), rm(nn);
}

// Number of entries in a directory, not counting . and ..
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

Test(baddata_cli, save_into_missing_directory)
{
    char *dir = tmp_path("-nodir");
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train examples/xor.nn -q --set epochs=2 --set save=%s/w.safetensors",
                        dir);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    cr_assert(strstr(out, "error:") && strstr(out, dir), "the error does not name the path:\n%s",
              out);
    cr_assert(access(dir, F_OK) != 0, "%s was created", dir);
    free(out);
    free(dir);
}

Test(baddata_cli, save_onto_directory_leaves_nothing)
{
    // The checkpoint path is an existing directory: the save fails, and the
    // temporary file it wrote first is gone.
    char *dir = tmp_path("-savedir");
    cr_assert_eq(mkdir(dir, 0700), 0);
    char *inner = NULL;
    cr_assert(asprintf(&inner, "%s/ckpt", dir) > 0);
    cr_assert_eq(mkdir(inner, 0700), 0);
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train examples/xor.nn -q --set epochs=2 --set save=%s", inner);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    cr_assert(strstr(out, "error:") && strstr(out, inner), "%s", out);
    cr_assert_eq(dir_entries(dir), 1, "files left next to %s", inner);
    cr_assert_eq(dir_entries(inner), 0, "files left inside %s", inner);
    free(out);
    rmdir(inner);
    rmdir(dir);
    free(inner);
    free(dir);
}

// An unusable save path is found before any epoch is spent training.
Test(baddata_cli, unwritable_save_dir_refused_before_training)
{
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train examples/xor.nn --set save=/nonexistent_dir_nnc/w.st");
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, "cannot save checkpoints to '/nonexistent_dir_nnc/w.st': directory "
                          "'/nonexistent_dir_nnc' does not exist"), "%s", out);
    cr_assert_null(strstr(out, "epoch 1/"), "trained before failing:\n%s", out);
    free(out);
}
