// safetensors checkpoints: exact round trips of every dtype with metadata,
// the on-disk layout (checked byte by byte), atomic saves that leave the old
// file and no temporary behind when they fail, a clear error naming file and
// byte offset for every kind of corruption, and model mismatch messages.
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "checkpoint.h"
#include "testutil.h"

static void setup(void)
{
    tu_scratch_make("ckpt");
}

static void teardown(void)
{
    tu_scratch_remove();
}

TestSuite(checkpoint, .init = setup, .fini = teardown);

#define assert_msg_has(s) \
    cr_assert(strstr(nnrt_errmsg(), (s)) != NULL, "message '%s' lacks '%s'", nnrt_errmsg(), (s))

static NnTensor *filled(NnDType dt, int rank, const int64_t *shape, double base)
{
    NnTensor *t = nnrt_tensor_new(dt, rank, shape);
    for (int64_t i = 0; i < t->numel; i++)
        nnrt_tensor_set(t, i, base + (double)i * 0.37 - 3);
    return t;
}

static void model_vars(NnVars *v, int64_t hidden)
{
    nnrt_vars_init(v);
    nnrt_vars_put(v, "mlp.dense1.w", filled(NN_DT_F32, 2, (int64_t[]){4, hidden}, 1));
    nnrt_vars_put(v, "mlp.dense1.b", filled(NN_DT_F32, 1, (int64_t[]){hidden}, 2));
    nnrt_vars_put(v, "opt.step", filled(NN_DT_I32, 0, NULL, 10));
    nnrt_vars_put(v, "stats \"q\"", filled(NN_DT_F64, 3, (int64_t[]){2, 1, 3}, 0.5));
}

static size_t file_bytes(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void put_bytes(const char *path, const unsigned char *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(buf, 1, n, f);
    fclose(f);
}

static int count_entries(void)
{
    DIR *d = opendir(tu_dir());
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

Test(checkpoint, round_trip_exact)
{
    NnVars v, back;
    model_vars(&v, 3);
    NnrtMeta meta, mback;
    nnrt_meta_init(&meta);
    nnrt_meta_set_int(&meta, "epoch", 7);
    nnrt_meta_set(&meta, "note", "quote \" and \\ and\nnewline");
    cr_assert_eq(nnrt_safetensors_save(tu_in_dir("m.safetensors"), &v, &meta), NN_OK, "%s",
                 nnrt_errmsg());
    cr_assert_eq(nnrt_safetensors_load(tu_in_dir("m.safetensors"), &back, &mback), NN_OK, "%s",
                 nnrt_errmsg());
    cr_assert_eq(back.count, v.count);
    for (int i = 0; i < v.count; i++) {
        cr_assert_str_eq(back.names[i], v.names[i], "insertion order kept");
        cr_assert_eq(back.tensors[i]->dtype, v.tensors[i]->dtype);
        cr_assert(nnrt_tensor_same_shape(back.tensors[i], v.tensors[i]));
        cr_assert_eq(memcmp(back.tensors[i]->data, v.tensors[i]->data,
                            nnrt_tensor_nbytes(v.tensors[i])), 0);
    }
    long long ep;
    cr_assert(nnrt_meta_get_int(&mback, "epoch", &ep) && ep == 7);
    cr_assert_str_eq(nnrt_meta_get(&mback, "note"), "quote \" and \\ and\nnewline");
    cr_assert_str_eq(nnrt_meta_get(&mback, "format"), NNRT_CHECKPOINT_FORMAT);
    cr_assert_eq(nnrt_checkpoint_check(tu_in_dir("m.safetensors"), &back, &v), NN_OK);
    nnrt_vars_fini(&v);
    nnrt_vars_fini(&back);
    nnrt_meta_fini(&meta);
    nnrt_meta_fini(&mback);
}

Test(checkpoint, layout_matches_the_format)
{
    NnVars v;
    nnrt_vars_init(&v);
    float w[2] = {1.0f, -2.0f};
    NnTensor *t = nnrt_tensor_new(NN_DT_F32, 1, (int64_t[]){2});
    memcpy(t->data, w, sizeof w);
    nnrt_vars_put(&v, "w", t);
    cr_assert_eq(nnrt_safetensors_save(tu_in_dir("l.st"), &v, NULL), NN_OK);
    unsigned char buf[512];
    size_t n = file_bytes(tu_in_dir("l.st"), buf, sizeof buf);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)buf[i] << (8 * i);
    cr_assert_eq(hl % 8, 0, "header padded to 8 bytes");
    cr_assert_eq(n, 8 + hl + 8);
    char hdr[512];
    memcpy(hdr, buf + 8, hl);
    hdr[hl] = 0;
    cr_assert(strstr(hdr, "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"), "%s",
              hdr);
    cr_assert(strstr(hdr, "\"__metadata__\":{\"format\":\"" NNRT_CHECKPOINT_FORMAT "\"}"));
    cr_assert_eq(memcmp(buf + 8 + hl, w, 8), 0, "raw little-endian floats");
    nnrt_vars_fini(&v);
}

Test(checkpoint, failed_save_keeps_old_file_and_no_temp)
{
    NnVars v;
    model_vars(&v, 3);
    char path[256];
    snprintf(path, sizeof path, "%s", tu_in_dir("keep.safetensors"));
    cr_assert_eq(nnrt_safetensors_save(path, &v, NULL), NN_OK);
    unsigned char before[4096], after[4096];
    size_t nb = file_bytes(path, before, sizeof before);
    // 1. Into a directory that does not exist.
    cr_assert_eq(nnrt_safetensors_save(tu_in_dir("nodir/x.safetensors"), &v, NULL), NN_ERR_IO);
    assert_msg_has("nodir/x.safetensors");
    // 2. The target is a non-empty directory: refused, nothing written.
    mkdir(tu_in_dir("isdir"), 0700);
    put_bytes(tu_in_dir("isdir/f"), (const unsigned char *)"x", 1);
    cr_assert_eq(nnrt_safetensors_save(tu_in_dir("isdir"), &v, NULL), NN_ERR_IO);
    assert_msg_has("is a directory, not a regular file");
    // 3. The disk "fills up" mid-write (file size limit): old file untouched.
    NnVars big;
    nnrt_vars_init(&big);
    nnrt_vars_put(&big, "huge", nnrt_tensor_new(NN_DT_F32, 1, (int64_t[]){1 << 16}));
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    cr_assert_eq(nnrt_safetensors_save(path, &big, NULL), NN_ERR_IO);
    assert_msg_has("keep.safetensors");
    rl.rlim_cur = RLIM_INFINITY;
    setrlimit(RLIMIT_FSIZE, &rl);
    size_t na = file_bytes(path, after, sizeof after);
    cr_assert_eq(na, nb);
    cr_assert_eq(memcmp(before, after, nb), 0, "old checkpoint intact");
    // Only keep.safetensors and isdir remain: no temporaries.
    cr_assert_eq(count_entries(), 2);
    nnrt_vars_fini(&big);
    nnrt_vars_fini(&v);
}

// Writes a file made of an 8-byte length, the header text and `data` bytes.
static void craft(const char *path, const char *header, size_t data, int64_t hl_override)
{
    unsigned char buf[2048] = {0};
    uint64_t hl = hl_override >= 0 ? (uint64_t)hl_override : strlen(header);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, header, strlen(header));
    put_bytes(path, buf, 8 + strlen(header) + data);
}

static void expect_bad(const char *header, size_t data, int64_t hl, const char *want)
{
    craft(tu_in_dir("bad.st"), header, data, hl);
    NnVars v;
    NnrtMeta m;
    NnStatus st = nnrt_safetensors_load(tu_in_dir("bad.st"), &v, &m);
    cr_assert_eq(st, NN_ERR_FORMAT, "accepted %s", header);
    assert_msg_has("bad.st: ");
    assert_msg_has(want);
    cr_assert_eq(v.count, 0);
}

#define T1 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

Test(checkpoint, every_corruption_has_a_clear_error)
{
    // Truncated before the length.
    put_bytes(tu_in_dir("bad.st"), (const unsigned char *)"\x10\0\0", 3);
    NnVars v;
    cr_assert_eq(nnrt_safetensors_load(tu_in_dir("bad.st"), &v, NULL), NN_ERR_FORMAT);
    assert_msg_has("bad.st: truncated at byte 3");
    // Header length beyond the file.
    expect_bad("{" T1 "}", 8, 5000, "header length 5000 at byte 0 goes beyond the end");
    // Malformed JSON: the offset is the position in the file (8 + index).
    expect_bad("{\"a\" {}}", 0, -1, "malformed JSON header at byte 13: expected ':'");
    expect_bad("{" T1, 8, -1, "expected '}', found the end of the header");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[0,8]}}", 8, -1,
               "expected a non-negative integer");
    expect_bad("[1]", 0, -1, "at byte 8: expected '{'");
    // Unknown and unsupported dtypes.
    expect_bad("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1,
               "tensor 'a' at byte 13 has unknown dtype 'Q7'");
    expect_bad("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, -1,
               "has dtype F16, which is not supported");
    // Offsets: out of range (truncated data), wrong size, overlapping.
    expect_bad("{" T1 "}", 5, -1, "tensor 'a' at byte 13: data_offsets [0, 8] are outside");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, -1,
               "span 8 bytes but its shape and dtype need 12");
    expect_bad("{" T1 ",\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, -1,
               "tensors 'a' and 'b' overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, -1,
               "are outside the data section");
    // Missing fields, duplicates, non-string metadata.
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, -1, "lacks 'data_offsets'");
    expect_bad("{" T1 "," T1 "}", 8, -1, "tensor 'a' appears twice");
    expect_bad("{\"__metadata__\":{\"epoch\":3}}", 0, -1, "metadata value of 'epoch' is not");
    // Missing file.
    cr_assert_eq(nnrt_safetensors_load(tu_in_dir("none.st"), &v, NULL), NN_ERR_IO);
    assert_msg_has("none.st");
}

Test(checkpoint, accepts_foreign_but_valid_files)
{
    // Metadata after tensors, spaces, unknown keys, an empty tensor, unicode escape.
    craft(tu_in_dir("ok.st"), "{ \"b\\u00e9\" : {\"shape\": [1], \"dtype\": \"I32\", \"x\": [1, {}],"
                        " \"data_offsets\": [0, 4]}, \"e\": {\"dtype\":\"F64\",\"shape\":[0],"
                        "\"data_offsets\":[4,4]}, \"__metadata__\": {\"k\": \"v\"} }   ",
          4, -1);
    NnVars v;
    NnrtMeta m;
    cr_assert_eq(nnrt_safetensors_load(tu_in_dir("ok.st"), &v, &m), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(v.count, 2);
    cr_assert_str_eq(v.names[0], "b\xc3\xa9");
    cr_assert_eq(v.tensors[1]->numel, 0);
    cr_assert_str_eq(nnrt_meta_get(&m, "k"), "v");
    nnrt_vars_fini(&v);
    nnrt_meta_fini(&m);
}

Test(checkpoint, mismatch_messages_name_the_tensor)
{
    NnVars saved, model, back;
    model_vars(&saved, 128);
    model_vars(&model, 256);
    cr_assert_eq(nnrt_safetensors_save(tu_in_dir("mlp.safetensors"), &saved, NULL), NN_OK);
    cr_assert_eq(nnrt_safetensors_load(tu_in_dir("mlp.safetensors"), &back, NULL), NN_OK);
    cr_assert_eq(nnrt_checkpoint_check("mlp.safetensors", &back, &model), NN_ERR_SHAPE);
    cr_assert_str_eq(nnrt_errmsg(), "checkpoint 'mlp.safetensors' does not match the model: "
                                    "tensor 'mlp.dense1.w' has shape [4, 128], the model "
                                    "expects [4, 256]");
    nnrt_vars_put(&model, "x", filled(NN_DT_F32, 1, (int64_t[]){1}, 0));
    cr_assert_eq(nnrt_checkpoint_check("mlp.safetensors", &back, &model), NN_ERR_SHAPE);
    nnrt_vars_fini(&model);
    model_vars(&model, 128);
    nnrt_vars_put(&model, "x", filled(NN_DT_F32, 1, (int64_t[]){1}, 0));
    cr_assert_eq(nnrt_checkpoint_check("mlp.safetensors", &back, &model), NN_ERR_SHAPE);
    cr_assert_str_eq(nnrt_errmsg(), "checkpoint 'mlp.safetensors' does not match the model: "
                                    "it is missing tensor 'x'");
    nnrt_vars_fini(&model);
    nnrt_vars_init(&model);
    nnrt_vars_put(&model, "opt.step", filled(NN_DT_F32, 0, NULL, 0));
    cr_assert_eq(nnrt_checkpoint_check("mlp.safetensors", &back, &model), NN_ERR_SHAPE);
    assert_msg_has("tensor 'opt.step' has dtype i32, the model expects f32");
    // assign copies values once shapes agree.
    nnrt_vars_fini(&model);
    model_vars(&model, 128);
    memset(model.tensors[0]->data, 0, nnrt_tensor_nbytes(model.tensors[0]));
    cr_assert_eq(nnrt_checkpoint_assign("mlp.safetensors", &model, &back), NN_OK);
    cr_assert_eq(memcmp(model.tensors[0]->data, saved.tensors[0]->data,
                        nnrt_tensor_nbytes(saved.tensors[0])), 0);
    nnrt_vars_fini(&saved);
    nnrt_vars_fini(&model);
    nnrt_vars_fini(&back);
}
