// Hostile input files against the runtime readers (issue 7): sizes that
// overflow, headers that claim more than the file holds, files that are not
// regular files (FIFO, /dev/zero, a directory), checkpoints that are almost
// right (header one byte short, gaps, trailing bytes, NaN weights, negative
// epochs), a header with 100,000 tensors, and labels that are out of range.
// Each case must end in a status and a message naming the file and where.
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "checkpoint.h"
#include "data.h"
#include "fileio.h"
#include "testutil.h"

static void setup(void)
{
    tu_scratch_make("hostile");
    // A reader that blocks on a FIFO must fail the test, not hang it.
    alarm(20);
}

static void teardown(void)
{
    tu_scratch_remove();
}

TestSuite(hostile, .init = setup, .fini = teardown, .timeout = 60);

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void assert_msg_has(const char *want)
{
    cr_assert(strstr(nnrt_errmsg(), want), "message '%s' lacks '%s'", nnrt_errmsg(), want);
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

// ---- item 1: sizes ---------------------------------------------------------

Test(hostile, tensor_sizes_that_overflow_are_errors)
{
    int64_t big[2] = {4611686018427387904LL, 784};
    cr_assert_null(nnrt_tensor_new(NN_DT_F32, 2, big));
    assert_msg_has("[4611686018427387904, 784]");
    assert_msg_has("too many elements");
    // Fits in elements, not in bytes.
    int64_t bytes[1] = {INT64_MAX / 2};
    cr_assert_null(nnrt_tensor_new(NN_DT_F64, 1, bytes));
    assert_msg_has("more than 2^63 bytes");
    int64_t neg[2] = {3, -1};
    cr_assert_null(nnrt_tensor_new(NN_DT_F32, 2, neg));
    assert_msg_has("negative dimension");
    cr_assert_null(nnrt_tensor_view(NN_DT_F32, 2, big, NULL));
    // Representable but far beyond memory: out of memory, not a crash.
    int64_t huge[1] = {(int64_t)1 << 60};
    cr_assert_null(nnrt_tensor_new(NN_DT_F32, 1, huge));
    assert_msg_has("out of memory");
    // Callers prefix the message with where the shape came from.
    cr_assert_null(nnrt_tensor_new(NN_DT_F32, 2, big));
    nnrt_fail(NN_ERR_SHAPE, "--set batch=4611686018427387904: %s", nnrt_errmsg());
    cr_assert_str_eq(nnrt_errmsg(), "--set batch=4611686018427387904: shape "
                     "[4611686018427387904, 784] has too many elements (more than 2^63)");
    size_t out;
    cr_assert_not(nnrt_size_mul(SIZE_MAX / 2, 3, &out));
    cr_assert(nnrt_size_mul(1 << 20, 1 << 20, &out) && out == (size_t)1 << 40);
}

Test(hostile, idx_dimensions_that_overflow)
{
    unsigned char b[4 + 4 * 6] = {0, 0, 0x08, 6};
    for (int i = 0; i < 6; i++)
        put32(b + 4 + 4 * i, 0xFFFFFFFFu);
    write_bytes(tu_in_dir("dims.idx"), b, sizeof b);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("dims.idx"), &t), NN_ERR_FORMAT);
    cr_assert_null(t);
    assert_msg_has("dims.idx: IDX dimensions too large at byte");
}

Test(hostile, safetensors_shape_that_overflows)
{
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,"
                    "1099511627776],\"data_offsets\":[0,0]}}";
    size_t hl = strlen(h);
    unsigned char *b = calloc(8 + hl, 1);
    b[0] = (unsigned char)hl;
    memcpy(b + 8, h, hl);
    write_bytes(tu_in_dir("big.st"), b, 8 + hl);
    free(b);
    NnVars v;
    cr_assert_eq(nnrt_safetensors_load(tu_in_dir("big.st"), &v, NULL), NN_ERR_FORMAT);
    assert_msg_has("big.st: tensor 'a'");
    assert_msg_has("too many elements");
}

// ---- item 2: claims checked against the file -------------------------------

// 35 bytes claiming 60000 images of 130x130: the error is the truncation at
// byte 35, found without first allocating 4 GB. The address-space limit makes
// the old up-front allocation fail (sanitizers need their own address space).
Test(hostile, idx_header_claiming_gigabytes)
{
    unsigned char b[35] = {0, 0, 0x08, 3};
    put32(b + 4, 60000);
    put32(b + 8, 130);
    put32(b + 12, 130);
    write_bytes(tu_in_dir("liar.idx"), b, sizeof b);
    gzFile gz = gzopen(tu_in_dir("liar.gz"), "wb");
    gzwrite(gz, b, sizeof b);
    gzclose(gz);
#ifndef __SANITIZE_ADDRESS__
    struct rlimit lim = {(rlim_t)1 << 30, (rlim_t)1 << 30};
    cr_assert_eq(setrlimit(RLIMIT_AS, &lim), 0);
#endif
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("liar.idx"), &t), NN_ERR_FORMAT);
    assert_msg_has("liar.idx: truncated at byte 35 (expected 1014000000 bytes of data)");
    cr_assert_eq(nnrt_idx_load(tu_in_dir("liar.gz"), &t), NN_ERR_FORMAT);
    assert_msg_has("liar.gz: truncated at byte 35");
}

// A gzip stream that inflates far past what the header claims stops at the
// first chunk after the data instead of being inflated to its end.
Test(hostile, gzip_trailing_data_is_capped)
{
    enum { N = 64 << 20 };
    unsigned char *b = calloc(N, 1);
    cr_assert_not_null(b);
    unsigned char h[9] = {0, 0, 0x08, 1, 0, 0, 0, 1, 7};
    memcpy(b, h, sizeof h);
    gzFile gz = gzopen(tu_in_dir("bomb.gz"), "wb9");
    cr_assert_eq(gzwrite(gz, b, N), N);
    gzclose(gz);
    free(b);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("bomb.gz"), &t), NN_ERR_FORMAT);
    assert_msg_has("bomb.gz: at least 1048576 unexpected trailing bytes at byte 9");
}

// ---- item 4: files that are not regular files --------------------------------

Test(hostile, fifo_directory_and_devices_are_refused)
{
    cr_assert_eq(mkfifo(tu_in_dir("pipe"), 0600), 0);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("pipe"), &t), NN_ERR_IO);
    assert_msg_has("pipe is a FIFO, not a regular file");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("pipe"), NULL), NN_ERR_IO);
    assert_msg_has("is a FIFO, not a regular file");
    NnVars v;
    cr_assert_eq(nnrt_safetensors_load(tu_in_dir("pipe"), &v, NULL), NN_ERR_IO);
    assert_msg_has("is a FIFO, not a regular file");

    cr_assert_eq(nnrt_dataset_load_csv(&ds, "/dev/zero", NULL), NN_ERR_IO);
    assert_msg_has("/dev/zero is a character device, not a regular file");
    cr_assert_eq(nnrt_idx_load("/dev/zero", &t), NN_ERR_IO);
    assert_msg_has("/dev/zero is a character device");

    cr_assert_eq(nnrt_safetensors_load(tu_dir(), &v, NULL), NN_ERR_IO);
    assert_msg_has("is a directory, not a regular file");
    cr_assert_eq(nnrt_idx_load(tu_dir(), &t), NN_ERR_IO);
    assert_msg_has("is a directory");
    char *buf;
    size_t len;
    cr_assert_eq(nnrt_file_read_all(tu_dir(), "script", 1 << 20, &buf, &len), NN_ERR_IO);
    assert_msg_has("is a directory");
}

Test(hostile, whole_file_reads_have_a_cap)
{
    write_bytes(tu_in_dir("nine"), "123456789", 9);
    char *buf;
    size_t len;
    cr_assert_eq(nnrt_file_read_all(tu_in_dir("nine"), "script", 8, &buf, &len), NN_ERR_FORMAT);
    assert_msg_has("larger than the 8-byte limit for a script");
    cr_assert_eq(nnrt_file_read_all(tu_in_dir("nine"), "script", 9, &buf, &len), NN_OK);
    cr_assert_eq(len, 9);
    cr_assert_str_eq(buf, "123456789");
    free(buf);
    cr_assert_eq(nnrt_file_read_all(tu_in_dir("none"), NULL, 9, &buf, &len), NN_ERR_IO);
    assert_msg_has("none: cannot open: No such file");
    // Files whose size says 0 (as in /proc) are still read, up to the cap.
    cr_assert_eq(nnrt_file_read_all("/proc/self/status", NULL, 1 << 20, &buf, &len), NN_OK);
    cr_assert(len > 0 && strstr(buf, "Name:"));
    free(buf);
}

// ---- item 5: linear time ---------------------------------------------------

Test(hostile, safetensors_with_100000_tensors_loads_fast)
{
    enum { N = 100000 };
    size_t cap = (size_t)N * 80 + 64, n = 0;
    char *h = malloc(cap);
    cr_assert_not_null(h);
    n += (size_t)sprintf(h + n, "{");
    for (int i = 0; i < N; i++)
        n += (size_t)sprintf(h + n, "%s\"t%06d\":{\"dtype\":\"F32\",\"shape\":[1],"
                             "\"data_offsets\":[%d,%d]}", i ? "," : "", i, 4 * i, 4 * i + 4);
    n += (size_t)sprintf(h + n, "}");
    while (n % 8)
        h[n++] = ' ';
    FILE *f = fopen(tu_in_dir("many.st"), "wb");
    cr_assert_not_null(f);
    for (int i = 0; i < 8; i++)
        fputc((int)((uint64_t)n >> (8 * i)) & 0xFF, f);
    fwrite(h, 1, n, f);
    float one = 1.0f;
    for (int i = 0; i < N; i++)
        fwrite(&one, 4, 1, f);
    fclose(f);
    free(h);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    NnVars v;
    cr_assert_eq(nnrt_safetensors_load(tu_in_dir("many.st"), &v, NULL), NN_OK, "%s", nnrt_errmsg());
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    cr_assert_eq(v.count, N);
    cr_assert_str_eq(v.names[N - 1], "t099999");
    cr_assert(s < 5.0, "loading %d tensors took %.2f s", N, s);
    nnrt_vars_fini(&v);
}

// The named-tensor table the loaders fill: 100,000 puts, replacements and
// lookups stay linear overall.
Test(hostile, vars_table_with_100000_names_is_fast)
{
    enum { N = 100000 };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    NnVars v;
    nnrt_vars_init(&v);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "last/w%d", i);
        cr_assert_eq(nnrt_vars_put(&v, name, nnrt_tensor_new(NN_DT_F32, 0, NULL)), NN_OK);
    }
    for (int i = 0; i < N; i += 7) {
        snprintf(name, sizeof name, "last/w%d", i);
        cr_assert_eq(nnrt_vars_put(&v, name, nnrt_tensor_new(NN_DT_I32, 0, NULL)), NN_OK);
    }
    cr_assert_eq(v.count, N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "last/w%d", i);
        cr_assert_eq(nnrt_vars_find(&v, name), i);
        cr_assert_eq(nnrt_vars_get(&v, name)->dtype, i % 7 ? NN_DT_F32 : NN_DT_I32);
    }
    cr_assert_eq(nnrt_vars_find(&v, "last/w100000"), -1);
    nnrt_vars_fini(&v);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    cr_assert(s < 5.0, "%d puts and gets took %.2f s", N, s);
}

// ---- item 12: checkpoints read strictly --------------------------------------

// Saves {a: [1, 2], b: [3]} with metadata epoch=2, then returns the bytes.
static unsigned char *saved(size_t *len)
{
    NnVars v;
    nnrt_vars_init(&v);
    NnTensor *a = nnrt_tensor_new(NN_DT_F32, 1, (int64_t[]){2});
    NnTensor *b = nnrt_tensor_new(NN_DT_F32, 1, (int64_t[]){1});
    ((float *)a->data)[0] = 1, ((float *)a->data)[1] = 2, ((float *)b->data)[0] = 3;
    nnrt_vars_put(&v, "a", a);
    nnrt_vars_put(&v, "b", b);
    NnrtMeta m;
    nnrt_meta_init(&m);
    nnrt_meta_set_int(&m, "epoch", 2);
    cr_assert_eq(nnrt_safetensors_save(tu_in_dir("good.st"), &v, &m), NN_OK);
    nnrt_vars_fini(&v);
    nnrt_meta_fini(&m);
    FILE *f = fopen(tu_in_dir("good.st"), "rb");
    static unsigned char buf[4096];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

static void expect_load_error(const unsigned char *b, size_t n, const char *want)
{
    write_bytes(tu_in_dir("bad.st"), b, n);
    NnVars v;
    NnrtMeta m;
    NnStatus st = nnrt_safetensors_load(tu_in_dir("bad.st"), &v, &m);
    cr_assert_eq(st, NN_ERR_FORMAT, "accepted (want '%s')", want);
    assert_msg_has("bad.st");
    assert_msg_has(want);
    cr_assert_eq(v.count, 0);
}

Test(hostile, checkpoint_header_length_one_short)
{
    size_t n;
    unsigned char *b = saved(&n);
    NnVars v;
    cr_assert_eq(nnrt_safetensors_load(tu_in_dir("good.st"), &v, NULL), NN_OK);
    nnrt_vars_fini(&v);
    // The header ends in padding or '}', so one byte less still parses as
    // JSON; every weight would be read one byte early.
    unsigned char c[4096];
    memcpy(c, b, n);
    c[0] = (unsigned char)(c[0] - 1);
    expect_load_error(c, n, "unexpected bytes");
}

Test(hostile, checkpoint_trailing_bytes_and_gaps)
{
    size_t n;
    unsigned char *b = saved(&n);
    unsigned char c[4096];
    memcpy(c, b, n);
    c[n] = 0;
    expect_load_error(c, n + 1, "1 unexpected bytes at byte");
    // A gap: 'b' moved 4 bytes on, the file grown to match.
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}";
    size_t hl = strlen(h);
    memset(c, 0, sizeof c);
    c[0] = (unsigned char)hl;
    memcpy(c + 8, h, hl);
    expect_load_error(c, 8 + hl + 16, "a gap of 4 unused bytes");
    // Data that does not start at 0.
    const char *h2 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    hl = strlen(h2);
    memset(c, 0, sizeof c);
    c[0] = (unsigned char)hl;
    memcpy(c + 8, h2, hl);
    expect_load_error(c, 8 + hl + 8, "tensor 'a'");
}

Test(hostile, checkpoint_nan_and_inf_weights)
{
    size_t n;
    unsigned char *b = saved(&n);
    unsigned char c[4096];
    memcpy(c, b, n);
    float nan = NAN, inf = -INFINITY;
    memcpy(c + n - 8, &nan, 4); // a[1]
    expect_load_error(c, n, "tensor 'a' (at byte");
    assert_msg_has("holds NaN at element 1");
    memcpy(c, b, n);
    memcpy(c + n - 4, &inf, 4); // b[0]
    expect_load_error(c, n, "tensor 'b'");
    assert_msg_has("an infinity at element 0");
}

// Rewrites the header of a saved checkpoint with `from` replaced by `to`.
static void with_meta(const char *from, const char *to, const char *want)
{
    size_t n;
    unsigned char *b = saved(&n);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)b[i] << (8 * i);
    char h[4096];
    memcpy(h, b + 8, hl);
    h[hl] = 0;
    char *at = strstr(h, from);
    cr_assert_not_null(at, "no '%s' in %s", from, h);
    char nh[4096];
    size_t k = (size_t)snprintf(nh, sizeof nh, "%.*s%s%s", (int)(at - h), h, to, at + strlen(from));
    while (k && nh[k - 1] == ' ')
        k--;
    while (k % 8)
        nh[k++] = ' ';
    unsigned char c[8192];
    for (int i = 0; i < 8; i++)
        c[i] = (unsigned char)((uint64_t)k >> (8 * i));
    memcpy(c + 8, nh, k);
    memcpy(c + 8 + k, b + 8 + hl, n - 8 - hl);
    expect_load_error(c, 8 + k + n - 8 - hl, want);
}

Test(hostile, checkpoint_metadata_out_of_range)
{
    with_meta("\"epoch\":\"2\"", "\"epoch\":\"-5\"", "metadata 'epoch' is \"-5\"");
    with_meta("\"epoch\":\"2\"", "\"epoch\":\"99999999999\"", "metadata 'epoch'");
    with_meta("\"epoch\":\"2\"", "\"epoch\":\"2\",\"step\":\"x\"", "metadata 'step' is \"x\"");
    with_meta("\"epoch\":\"2\"", "\"epoch\":\"2\",\"stopped_early\":\"7\"",
              "metadata 'stopped_early'");
    with_meta("\"epoch\":\"2\"", "\"epoch\":\"2\",\"best_value\":\"nan\"",
              "metadata 'best_value'");
}

// ---- item 13: labels name the file and where ---------------------------------

Test(hostile, idx_label_problems_name_file_and_byte)
{
    unsigned char img[16 + 3 * 4] = {0, 0, 0x08, 3};
    put32(img + 4, 3);
    put32(img + 8, 2);
    put32(img + 12, 2);
    write_bytes(tu_in_dir("img.idx"), img, sizeof img);
    // Signed bytes with a -1 at sample 2 (byte 10).
    unsigned char neg[8 + 3] = {0, 0, 0x09, 1, 0, 0, 0, 3, 0, 1, 0xFF};
    write_bytes(tu_in_dir("neg.idx"), neg, sizeof neg);
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_idx(&ds, tu_in_dir("img.idx"), tu_in_dir("neg.idx")), NN_ERR_FORMAT);
    assert_msg_has("neg.idx: byte 10: label -1 is negative");
    // Float labels: the message says what the file holds.
    unsigned char fl[8 + 12] = {0, 0, 0x0D, 1, 0, 0, 0, 3};
    write_bytes(tu_in_dir("float.idx"), fl, sizeof fl);
    cr_assert_eq(nnrt_dataset_load_idx(&ds, tu_in_dir("img.idx"), tu_in_dir("float.idx")), NN_ERR_FORMAT);
    assert_msg_has("float.idx: a label file must hold integers");
    assert_msg_has("holds float");
    // 200 at sample 1 (byte 9): fine to load, out of range for 10 classes.
    unsigned char big[8 + 3] = {0, 0, 0x08, 1, 0, 0, 0, 3, 0, 200, 1};
    write_bytes(tu_in_dir("big.idx"), big, sizeof big);
    cr_assert_eq(nnrt_dataset_load_idx(&ds, tu_in_dir("img.idx"), tu_in_dir("big.idx")), NN_OK);
    cr_assert_eq(nnrt_dataset_check_labels(&ds, 201), NN_OK);
    cr_assert_eq(nnrt_dataset_check_labels(&ds, 10), NN_ERR_FORMAT);
    assert_msg_has("big.idx: byte 9: label 200 is outside 0..9 (10 classes)");
    // Splits keep where each label came from.
    NnrtDataset parts[2];
    cr_assert_eq(nnrt_dataset_split(&ds, (double[]){1, 2}, 2, 7, parts), NN_OK);
    const NnrtDataset *with = parts[0].count && ((int32_t *)parts[0].y->data)[0] == 200
                                  ? &parts[0] : &parts[1];
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < parts[k].count; i++)
            if (((int32_t *)parts[k].y->data)[i] == 200)
                with = &parts[k];
    cr_assert_eq(nnrt_dataset_check_labels(with, 10), NN_ERR_FORMAT);
    assert_msg_has("big.idx: byte 9: label 200");
    nnrt_dataset_fini(&parts[0]);
    nnrt_dataset_fini(&parts[1]);
    nnrt_dataset_fini(&ds);
}

Test(hostile, csv_labels_and_quotes)
{
    FILE *f = fopen(tu_in_dir("q.csv"), "w");
    fputs("a,b,label\n1,2,0\n3,\"4,1\n", f);
    fclose(f);
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("q.csv"), NULL), NN_ERR_FORMAT);
    assert_msg_has("q.csv:3:3: unterminated quoted field");
    f = fopen(tu_in_dir("l.csv"), "w");
    fputs("a,label\n1,0\n\n2,7\n3,1\n", f);
    fclose(f);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("l.csv"), NULL), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(nnrt_dataset_check_labels(&ds, 8), NN_OK);
    cr_assert_eq(nnrt_dataset_check_labels(&ds, 3), NN_ERR_FORMAT);
    assert_msg_has("l.csv:4: label 7 is outside 0..2");
    nnrt_dataset_fini(&ds);
}
