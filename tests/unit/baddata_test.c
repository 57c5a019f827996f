// Every bad-data case the loaders must report instead of crashing: missing
// file, truncated gzip stream, truncated IDX data, wrong magic, unsupported
// type, image/label count mismatch, and CSV column count, non-number and
// empty file. Each test checks the status and that the message names the file
// and the byte offset or line (and column) where it applies.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data.h"
#include "testutil.h"

static void setup(void)
{
    tu_scratch_make("bad");
}

static void teardown(void)
{
    tu_scratch_remove();
}

TestSuite(baddata, .init = setup, .fini = teardown);

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(p, 1, n, f);
    fclose(f);
}

static void write_gz(const char *path, const void *p, size_t n)
{
    gzFile f = gzopen(path, "wb");
    cr_assert_not_null(f);
    gzwrite(f, p, (unsigned)n);
    gzclose(f);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

#define assert_msg_has(s) \
    cr_assert(strstr(nnrt_errmsg(), (s)) != NULL, "message '%s' lacks '%s'", nnrt_errmsg(), (s))

// An IDX header for count images of 28x28 followed by `have` data bytes.
static size_t idx_images(unsigned char *buf, uint32_t count, size_t have)
{
    unsigned char hdr[16] = {0, 0, 8, 3, count >> 24, count >> 16, count >> 8, count,
                             0, 0, 0, 28, 0, 0, 0, 28};
    memcpy(buf, hdr, 16);
    for (size_t i = 0; i < have; i++)
        buf[16 + i] = (unsigned char)i;
    return 16 + have;
}

Test(baddata, missing_file)
{
    NnTensor *t = (NnTensor *)1;
    NnStatus st = nnrt_idx_load(tu_in_dir("nope.gz"), &t);
    cr_assert_eq(st, NN_ERR_IO);
    cr_assert_null(t);
    assert_msg_has("nope.gz");
    assert_msg_has("No such file");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("nope.csv"), NULL), NN_ERR_IO);
    assert_msg_has("nope.csv");
}

Test(baddata, truncated_gzip_stream)
{
    static unsigned char buf[16 + 2 * 784];
    size_t n = idx_images(buf, 2, 2 * 784);
    write_gz(tu_in_dir("full.gz"), buf, n);
    // Cut the compressed file in half: zlib must report it, not return short data.
    FILE *f = fopen(tu_in_dir("full.gz"), "rb");
    static unsigned char z[8192];
    size_t zn = fread(z, 1, sizeof z, f);
    fclose(f);
    write_bytes(tu_in_dir("cut.gz"), z, zn / 2);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("cut.gz"), &t), NN_ERR_FORMAT);
    cr_assert_null(t);
    assert_msg_has("cut.gz");
    assert_msg_has("gzip");
    assert_msg_has("byte");
}

Test(baddata, truncated_idx_data)
{
    static unsigned char buf[16 + 3 * 784];
    size_t n = idx_images(buf, 3, 1234 - 16); // header promises 3 images, holds 1218 bytes
    write_gz(tu_in_dir("short.gz"), buf, n);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("short.gz"), &t), NN_ERR_FORMAT);
    assert_msg_has("short.gz: truncated at byte 1234 (expected 2352 bytes of data)");
    // Truncated inside the header, plain file.
    write_bytes(tu_in_dir("hdr.idx"), buf, 10);
    cr_assert_eq(nnrt_idx_load(tu_in_dir("hdr.idx"), &t), NN_ERR_FORMAT);
    assert_msg_has("hdr.idx: truncated at byte 10");
}

Test(baddata, wrong_magic)
{
    unsigned char buf[16] = {0x1F, 0x8C, 8, 3};
    write_bytes(tu_in_dir("magic.idx"), buf, sizeof buf);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("magic.idx"), &t), NN_ERR_FORMAT);
    assert_msg_has("magic.idx: bad IDX magic 0x1f8c0803 at byte 0");
}

Test(baddata, unsupported_type_and_rank)
{
    unsigned char buf[8] = {0, 0, 0x07, 1, 0, 0, 0, 0};
    write_bytes(tu_in_dir("type.idx"), buf, sizeof buf);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("type.idx"), &t), NN_ERR_FORMAT);
    assert_msg_has("type.idx: unsupported IDX element type 0x07 at byte 2");
    unsigned char r0[4] = {0, 0, 0x08, 0};
    write_bytes(tu_in_dir("rank.idx"), r0, sizeof r0);
    cr_assert_eq(nnrt_idx_load(tu_in_dir("rank.idx"), &t), NN_ERR_FORMAT);
    assert_msg_has("rank.idx: unsupported IDX rank 0 at byte 3");
}

Test(baddata, trailing_bytes)
{
    unsigned char buf[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3};
    write_bytes(tu_in_dir("long.idx"), buf, sizeof buf);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("long.idx"), &t), NN_ERR_FORMAT);
    assert_msg_has("long.idx: 1 unexpected trailing bytes at byte 10");
}

Test(baddata, image_label_count_mismatch)
{
    static unsigned char buf[16 + 3 * 784];
    write_gz(tu_in_dir("img.gz"), buf, idx_images(buf, 3, 3 * 784));
    unsigned char lab[8 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 4, 5};
    write_gz(tu_in_dir("lab.gz"), lab, sizeof lab);
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_idx(&ds, tu_in_dir("img.gz"), tu_in_dir("lab.gz")), NN_ERR_FORMAT);
    assert_msg_has("img.gz has 3 samples");
    assert_msg_has("lab.gz has 2 labels");
    cr_assert_null(ds.x);
    // Images where labels belong (wrong file order) is caught too.
    cr_assert_eq(nnrt_dataset_load_idx(&ds, tu_in_dir("img.gz"), tu_in_dir("img.gz")), NN_ERR_FORMAT);
    assert_msg_has("expected a label file");
}

Test(baddata, csv_wrong_column_count)
{
    write_text(tu_in_dir("cols.csv"), "a,b,label\n1,2,0\n3,4\n5,6,1\n");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("cols.csv"), NULL), NN_ERR_FORMAT);
    assert_msg_has("cols.csv:3: expected 3 columns, found 2");
    cr_assert_null(ds.x);
}

Test(baddata, csv_not_a_number)
{
    write_text(tu_in_dir("num.csv"), "a,b,label\n1,2,0\n\n3,x4,1\n");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("num.csv"), NULL), NN_ERR_FORMAT);
    // Line 4 (the blank line still counts), column 2, named from the header.
    assert_msg_has("num.csv:4:2: 'x4' is not a number (column 'b')");
    write_text(tu_in_dir("empty_field.csv"), "1,2,0\n3,,1\n");
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("empty_field.csv"), NULL), NN_ERR_FORMAT);
    assert_msg_has("empty_field.csv:2:2: '' is not a number");
}

Test(baddata, csv_empty)
{
    write_text(tu_in_dir("empty.csv"), "");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("empty.csv"), NULL), NN_ERR_FORMAT);
    assert_msg_has("empty.csv:1: empty file");
    write_text(tu_in_dir("blank.csv"), "\n\n  \n");
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("blank.csv"), NULL), NN_ERR_FORMAT);
    assert_msg_has("blank.csv:3: empty file");
    write_text(tu_in_dir("hdr.csv"), "a,b,label\n");
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("hdr.csv"), NULL), NN_ERR_FORMAT);
    assert_msg_has("hdr.csv:2: empty file");
}

Test(baddata, csv_bad_label_column)
{
    write_text(tu_in_dir("lab.csv"), "a,b,label\n1,2,0\n");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    NnrtCsvOptions o = {.label_name = "class"};
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("lab.csv"), &o), NN_ERR_FORMAT);
    assert_msg_has("lab.csv:1: no column named 'class'");
    NnrtCsvOptions oi = {.label_index = 5, .label_index_set = true};
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("lab.csv"), &oi), NN_ERR_FORMAT);
    assert_msg_has("lab.csv:1: label column 5 is out of range");
}

Test(baddata, garbage_never_crashes)
{
    // Random bytes, gzipped and plain, through both loaders: errors, never crashes.
    unsigned char buf[512];
    uint32_t s = 12345;
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < sizeof buf; i++) {
            s = s * 1103515245u + 12345u;
            buf[i] = (unsigned char)(s >> 16);
        }
        buf[0] = 0;
        buf[1] = 0;
        buf[3] = (unsigned char)(1 + round % 4);
        write_bytes(tu_in_dir("g.idx"), buf, 16 + (size_t)round * 20);
        NnTensor *t = NULL;
        NnStatus st = nnrt_idx_load(tu_in_dir("g.idx"), &t);
        cr_assert(st == NN_OK || strstr(nnrt_errmsg(), "g.idx"));
        nnrt_tensor_free(t);
        write_bytes(tu_in_dir("g.csv"), buf, (size_t)round * 25);
        NnrtDataset ds;
        nnrt_dataset_init(&ds);
        st = nnrt_dataset_load_csv(&ds, tu_in_dir("g.csv"), NULL);
        cr_assert(st == NN_OK || strstr(nnrt_errmsg(), "g.csv"));
        nnrt_dataset_fini(&ds);
    }
}

Test(baddata, csv_non_finite_values)
{
    write_text(tu_in_dir("nan.csv"), "a,b,label\n1,2,0\n3,nan,1\n");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("nan.csv"), NULL), NN_ERR_FORMAT);
    assert_msg_has("nan.csv:3:2: 'nan' is not a number");
    write_text(tu_in_dir("inf.csv"), "a,b,label\n1,-inf,0\n");
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("inf.csv"), NULL), NN_ERR_FORMAT);
    assert_msg_has("inf.csv:2:2: '-inf' is not a number");
    cr_assert_null(ds.x);
}
