// Data loading and preparation: IDX (plain and gzipped), CSV (header
// detection, label by name/index, string classes), splits, transforms,
// normalization fitted on the training split only, seeded shuffling and
// batching including the partial last batch (inline and by the pool's
// workers), text windows and their vocabulary. Files are written to a temp tu_dir().
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "pool.h"
#include "testutil.h"

static void setup(void)
{
    tu_scratch_make("data");
}

static void teardown(void)
{
    tu_scratch_remove();
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

// Writes an IDX ubyte file; gz selects gzip compression.
static void write_idx(const char *path, int rank, const uint32_t *dims, const unsigned char *data,
                      bool gz)
{
    unsigned char hdr[4 + 4 * 6] = {0, 0, 0x08, (unsigned char)rank};
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        put_be32(hdr + 4 + 4 * i, dims[i]);
        n *= dims[i];
    }
    if (gz) {
        gzFile f = gzopen(path, "wb");
        cr_assert_not_null(f);
        gzwrite(f, hdr, 4 + 4 * rank);
        gzwrite(f, data, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        cr_assert_not_null(f);
        fwrite(hdr, 1, 4 + 4 * rank, f);
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

TestSuite(data, .init = setup, .fini = teardown);

static void check_images(bool gz)
{
    unsigned char px[3 * 2 * 4];
    for (int i = 0; i < 24; i++)
        px[i] = (unsigned char)(i * 10);
    const char *p = tu_in_dir(gz ? "img.gz" : "img");
    write_idx(p, 3, (uint32_t[]){3, 2, 4}, px, gz);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(p, &t), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(t->dtype, NN_DT_F32);
    cr_assert_eq(t->rank, 3);
    cr_assert(t->shape[0] == 3 && t->shape[1] == 2 && t->shape[2] == 4);
    for (int i = 0; i < 24; i++)
        cr_assert_float_eq(((float *)t->data)[i], i * 10.0f, 0);
    nnrt_tensor_free(t);
}

Test(data, idx_plain_images) { check_images(false); }
Test(data, idx_gzip_images) { check_images(true); }

Test(data, idx_labels_are_i32)
{
    unsigned char lab[5] = {3, 0, 9, 1, 255};
    write_idx(tu_in_dir("lab.gz"), 1, (uint32_t[]){5}, lab, true);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("lab.gz"), &t), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(t->dtype, NN_DT_I32);
    cr_assert_eq(t->numel, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(((int32_t *)t->data)[i], lab[i]);
    nnrt_tensor_free(t);
}

Test(data, idx_int_and_float_types)
{
    // int32 rank 1 -> i32 (negative kept); float rank 2 -> f32.
    unsigned char f1[4 + 4 + 8] = {0, 0, 0x0C, 1, 0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFE, 0, 0, 1, 0};
    FILE *f = fopen(tu_in_dir("i.idx"), "wb");
    fwrite(f1, 1, sizeof f1, f);
    fclose(f);
    NnTensor *t = NULL;
    cr_assert_eq(nnrt_idx_load(tu_in_dir("i.idx"), &t), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(t->dtype, NN_DT_I32);
    cr_assert_eq(((int32_t *)t->data)[0], -2);
    cr_assert_eq(((int32_t *)t->data)[1], 256);
    nnrt_tensor_free(t);
    // 1.5f = 0x3FC00000, -2.0f = 0xC0000000
    unsigned char f2[4 + 8 + 8] = {0, 0, 0x0D, 2, 0, 0, 0, 1, 0, 0, 0, 2,
                                   0x3F, 0xC0, 0, 0, 0xC0, 0, 0, 0};
    f = fopen(tu_in_dir("f.idx"), "wb");
    fwrite(f2, 1, sizeof f2, f);
    fclose(f);
    cr_assert_eq(nnrt_idx_load(tu_in_dir("f.idx"), &t), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(t->dtype, NN_DT_F32);
    cr_assert_float_eq(((float *)t->data)[0], 1.5f, 0);
    cr_assert_float_eq(((float *)t->data)[1], -2.0f, 0);
    nnrt_tensor_free(t);
}

Test(data, dataset_from_idx_pair)
{
    unsigned char px[4 * 3 * 3], lab[4] = {1, 0, 2, 1};
    for (int i = 0; i < 36; i++)
        px[i] = (unsigned char)i;
    write_idx(tu_in_dir("x.gz"), 3, (uint32_t[]){4, 3, 3}, px, true);
    write_idx(tu_in_dir("y.gz"), 1, (uint32_t[]){4}, lab, true);
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_idx(&ds, tu_in_dir("x.gz"), tu_in_dir("y.gz")), NN_OK, "%s",
                 nnrt_errmsg());
    cr_assert_eq(ds.count, 4);
    cr_assert_eq(ds.num_classes, 3);
    cr_assert(ds.img_h == 3 && ds.img_w == 3);
    cr_assert(ds.x->rank == 4 && ds.x->shape[0] == 4 && ds.x->shape[1] == 1 &&
              ds.x->shape[2] == 3 && ds.x->shape[3] == 3, "images are NCHW [4, 1, 3, 3]");
    nnrt_dataset_flatten(&ds);
    nnrt_dataset_scale(&ds, 1.0 / 255);
    cr_assert(ds.x->rank == 2 && ds.x->shape[1] == 9);
    cr_assert_float_eq(((float *)ds.x->data)[35], 35.0f / 255, 1e-7);
    nnrt_dataset_fini(&ds);
}

Test(data, fashion_mnist_real_files)
{
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lab = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    if (access(img, R_OK) != 0)
        cr_skip_test("Fashion-MNIST not installed");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_idx(&ds, img, lab), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(ds.count, 10000);
    cr_assert(ds.x->rank == 4 && ds.x->shape[1] == 1 && ds.x->shape[2] == 28 &&
              ds.x->shape[3] == 28);
    cr_assert_eq(ds.num_classes, 10);
    // The first test label of Fashion-MNIST is 9 (ankle boot).
    cr_assert_eq(((int32_t *)ds.y->data)[0], 9);
    nnrt_dataset_fini(&ds);
}

Test(data, csv_with_header_label_by_name)
{
    write_text(tu_in_dir("h.csv"), "a,label,b\n1,0,2\n3.5,2,-4\n\n5,1,6e1\n");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    NnrtCsvOptions o = {.label_name = "label"};
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("h.csv"), &o), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(ds.count, 3);
    cr_assert(ds.x->rank == 2 && ds.x->shape[1] == 2);
    float want[] = {1, 2, 3.5f, -4, 5, 60};
    for (int i = 0; i < 6; i++)
        cr_assert_float_eq(((float *)ds.x->data)[i], want[i], 0);
    cr_assert_eq(ds.y->dtype, NN_DT_I32);
    int32_t *y = ds.y->data;
    cr_assert(y[0] == 0 && y[1] == 2 && y[2] == 1);
    cr_assert_eq(ds.num_classes, 3);
    nnrt_dataset_fini(&ds);
}

Test(data, csv_no_header_label_index_and_negative)
{
    write_text(tu_in_dir("n.csv"), "7,1,2\n8,3,4\n");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    NnrtCsvOptions o = {.label_index = 0, .label_index_set = true};
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("n.csv"), &o), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(ds.count, 2);
    cr_assert(((int32_t *)ds.y->data)[0] == 7 && ((int32_t *)ds.y->data)[1] == 8);
    cr_assert_float_eq(((float *)ds.x->data)[3], 4.0f, 0);
    nnrt_dataset_fini(&ds);
    // -2 = middle column; default (NULL options) = last column.
    o.label_index = -2;
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("n.csv"), &o), NN_OK, "%s", nnrt_errmsg());
    cr_assert(((int32_t *)ds.y->data)[0] == 1 && ((int32_t *)ds.y->data)[1] == 3);
    cr_assert_float_eq(((float *)ds.x->data)[1], 2.0f, 0);
    nnrt_dataset_fini(&ds);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("n.csv"), NULL), NN_OK, "%s", nnrt_errmsg());
    cr_assert(((int32_t *)ds.y->data)[0] == 2 && ((int32_t *)ds.y->data)[1] == 4);
    nnrt_dataset_fini(&ds);
}

Test(data, csv_string_classes_sorted_without_header)
{
    // The label column is text in every row, so row 1 is data, not a header.
    write_text(tu_in_dir("s.csv"), "5.1,3.5,setosa\n6.3,2.9,virginica\n5.9,3.0,versicolor\n"
                             "4.9,3.0,setosa\n");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("s.csv"), NULL), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(ds.count, 4);
    cr_assert_eq(ds.num_classes, 3);
    cr_assert_str_eq(ds.class_names[0], "setosa");
    cr_assert_str_eq(ds.class_names[1], "versicolor");
    cr_assert_str_eq(ds.class_names[2], "virginica");
    int32_t *y = ds.y->data;
    cr_assert(y[0] == 0 && y[1] == 2 && y[2] == 1 && y[3] == 0);
    nnrt_dataset_fini(&ds);
}

Test(data, csv_header_autodetected_and_regression_targets)
{
    write_text(tu_in_dir("r.csv"), "x1,x2,price\n1,2,0.5\n3,4,1.25\n");
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    cr_assert_eq(nnrt_dataset_load_csv(&ds, tu_in_dir("r.csv"), NULL), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(ds.count, 2);
    cr_assert_eq(ds.y->dtype, NN_DT_F32);
    cr_assert(ds.y->rank == 2 && ds.y->shape[1] == 1);
    cr_assert_float_eq(((float *)ds.y->data)[1], 1.25f, 0);
    cr_assert_eq(ds.num_classes, 0);
    nnrt_dataset_fini(&ds);
}

static NnrtDataset make_seq(int64_t n, int64_t f)
{
    NnrtDataset ds;
    nnrt_dataset_init(&ds);
    NnTensor *x = nnrt_tensor_new(NN_DT_F32, 2, (int64_t[]){n, f});
    NnTensor *y = nnrt_tensor_new(NN_DT_I32, 1, &n);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < f; j++)
            ((float *)x->data)[i * f + j] = (float)(i * 100 + j);
        ((int32_t *)y->data)[i] = (int32_t)(i % 3);
    }
    cr_assert_eq(nnrt_dataset_set(&ds, x, y, NULL, NULL), NN_OK);
    return ds;
}

Test(data, split_is_disjoint_covering_and_seeded)
{
    NnrtDataset ds = make_seq(101, 2), parts[3], again[3];
    double fr[3] = {0.7, 0.2, 0.1};
    cr_assert_eq(nnrt_dataset_split(&ds, fr, 3, 42, parts), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(parts[0].count + parts[1].count + parts[2].count, 101);
    cr_assert_eq(parts[0].count, 71); // round(0.7 * 101)
    cr_assert_eq(parts[1].count, 20); // round(0.9 * 101) - 71
    int seen[101] = {0};
    for (int p = 0; p < 3; p++)
        for (int64_t i = 0; i < parts[p].count; i++) {
            int id = (int)(((float *)parts[p].x->data)[i * 2] / 100);
            cr_assert_float_eq(((float *)parts[p].x->data)[i * 2 + 1], id * 100 + 1.0f, 0);
            cr_assert_eq(((int32_t *)parts[p].y->data)[i], id % 3, "label follows its sample");
            seen[id]++;
        }
    for (int i = 0; i < 101; i++)
        cr_assert_eq(seen[i], 1, "sample %d in %d parts", i, seen[i]);
    // Same seed, same split; another seed, another order.
    cr_assert_eq(nnrt_dataset_split(&ds, fr, 3, 42, again), NN_OK);
    cr_assert_eq(memcmp(parts[0].x->data, again[0].x->data, nnrt_tensor_nbytes(parts[0].x)), 0);
    for (int p = 0; p < 3; p++)
        nnrt_dataset_fini(&again[p]);
    cr_assert_eq(nnrt_dataset_split(&ds, fr, 3, 43, again), NN_OK);
    cr_assert_neq(memcmp(parts[0].x->data, again[0].x->data, nnrt_tensor_nbytes(parts[0].x)), 0);
    for (int p = 0; p < 3; p++) {
        nnrt_dataset_fini(&parts[p]);
        nnrt_dataset_fini(&again[p]);
    }
    nnrt_dataset_fini(&ds);
}

Test(data, shuffle_is_a_reproducible_permutation)
{
    enum { N = 1000 };
    int64_t a[N], b[N], c[N];
    nnrt_shuffle(a, N, 7, 3);
    nnrt_shuffle(b, N, 7, 3);
    nnrt_shuffle(c, N, 7, 4);
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "same (seed, epoch) -> same order");
    cr_assert_neq(memcmp(a, c, sizeof a), 0, "another epoch -> another order");
    int seen[N] = {0}, fixed = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(a[i] >= 0 && a[i] < N);
        seen[a[i]]++;
        fixed += a[i] == i;
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1);
    cr_assert_lt(fixed, 20, "a shuffle leaves few elements in place (expected ~1)");
}

Test(data, batching_with_partial_last_batch)
{
    NnrtDataset ds = make_seq(10, 3);
    int64_t perm[10];
    nnrt_shuffle(perm, 10, 1, 0);
    NnTensor *xb, *yb;
    cr_assert_eq(nnrt_batch_alloc(&ds, 4, &xb, &yb), NN_OK);
    cr_assert_eq(nnrt_batch_count(10, 4), 3);
    int64_t total = 0;
    for (int64_t b = 0; b < 3; b++) {
        int64_t n = nnrt_batch_gather(&ds, perm, 4, b, xb, yb);
        cr_assert_eq(n, b < 2 ? 4 : 2);
        cr_assert_eq(xb->shape[0], n);
        cr_assert_eq(xb->numel, n * 3);
        cr_assert_eq(yb->shape[0], n);
        for (int64_t i = 0; i < n; i++) {
            int64_t id = perm[b * 4 + i];
            cr_assert_float_eq(((float *)xb->data)[i * 3 + 2], id * 100 + 2.0f, 0);
            cr_assert_eq(((int32_t *)yb->data)[i], id % 3);
        }
        total += n;
    }
    cr_assert_eq(total, 10);
    cr_assert_eq(nnrt_batch_gather(&ds, perm, 4, 3, xb, yb), 0);
    nnrt_tensor_free(xb);
    nnrt_tensor_free(yb);
    nnrt_dataset_fini(&ds);
}

// A dataset past nnrt_alloc's huge-page threshold (4 MB: 2 MB-aligned,
// madvise'd) comes back zeroed where unwritten, and batches gathered from it
// (each row's copy preceded by a prefetch of the rows a few ahead) hold the
// shuffled rows, the partial last batch too.
Test(data, large_dataset_gathers_shuffled_rows)
{
    size_t big = ((size_t)5 << 20) + 3;
    unsigned char *p = nnrt_alloc(big);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % 64, 0);
    size_t nz = 0;
    for (size_t i = 0; i < big; i++)
        nz += p[i] != 0;
    cr_assert_eq(nz, 0, "nnrt_alloc's memory is zeroed");
    p[big - 1] = 1;
    nnrt_free(p);
    NnrtDataset ds = make_seq(1300, 1000); // 5.2 MB of f32
    int64_t perm[1300];
    nnrt_shuffle(perm, 1300, 3, 0);
    NnTensor *xb, *yb;
    cr_assert_eq(nnrt_batch_alloc(&ds, 128, &xb, &yb), NN_OK);
    for (int64_t b = 0; b < nnrt_batch_count(1300, 128); b++) {
        int64_t n = nnrt_batch_gather(&ds, perm, 128, b, xb, yb);
        cr_assert_eq(n, b < 10 ? 128 : 20);
        for (int64_t i = 0; i < n; i++) {
            int64_t id = perm[b * 128 + i];
            for (int64_t j = 0; j < 1000; j += 333)
                cr_assert_float_eq(((float *)xb->data)[i * 1000 + j], (float)(id * 100 + j), 0);
            cr_assert_eq(((int32_t *)yb->data)[i], id % 3);
        }
    }
    nnrt_tensor_free(xb);
    nnrt_tensor_free(yb);
    nnrt_dataset_fini(&ds);
}

static void noop_task(void *arg, int ith, int nth)
{
    (void)arg;
    (void)ith;
    (void)nth;
}

// Batches gathered by the pool's workers (side work) hold the bytes and
// shapes an inline gather gives, the partial last batch too, for rows of one
// piece (12 bytes) and of several (4100 floats: pieces of 16 KB, the last
// one short), on 2 and 3 threads, while pool tasks come and go.
Test(data, pool_gathered_batches_match_inline_gather)
{
    cr_assert_eq(nnrt_pool_set_threads(1), NN_OK);
    cr_assert_null(nnrt_side_gather_new(), "a pool without workers has none to gather");
    for (int t = 2; t <= 3; t++) {
        cr_assert_eq(nnrt_pool_set_threads(t), NN_OK);
        for (int64_t f = 3; f <= 4100; f += 4097) {
            NnrtDataset ds = make_seq(50, f);
            int64_t perm[50];
            nnrt_shuffle(perm, 50, 7, t);
            NnTensor *xa, *ya, *xb, *yb;
            cr_assert_eq(nnrt_batch_alloc(&ds, 16, &xa, &ya), NN_OK);
            cr_assert_eq(nnrt_batch_alloc(&ds, 16, &xb, &yb), NN_OK);
            NnrtSideGather *g = nnrt_side_gather_new();
            cr_assert_not_null(g);
            cr_assert_eq(nnrt_side_gather_threads(g), t);
            for (int64_t b = 0; b < nnrt_batch_count(50, 16); b++) {
                memset(xb->data, 0xff, nnrt_tensor_nbytes(xb));
                int64_t n = 50 - b * 16 < 16 ? 50 - b * 16 : 16;
                nnrt_side_gather_post(g, &ds, perm + b * 16, n, xb, yb);
                for (int k = 0; k < 20; k++)
                    nnrt_pool_run(nnrt_pool_default(), noop_task, NULL);
                nnrt_side_gather_wait(g);
                cr_assert_eq(nnrt_batch_gather(&ds, perm, 16, b, xa, ya), n);
                cr_assert_eq(xb->shape[0], n);
                cr_assert_eq(xb->numel, n * f);
                cr_assert_eq(yb->shape[0], n);
                cr_assert_eq(yb->numel, n);
                cr_assert(memcmp(xa->data, xb->data, (size_t)(n * f) * sizeof(float)) == 0,
                          "%d threads, %lld features, batch %lld: other rows", t, (long long)f,
                          (long long)b);
                cr_assert(memcmp(ya->data, yb->data, (size_t)n * sizeof(int32_t)) == 0);
            }
            nnrt_side_gather_free(g);
            nnrt_tensor_free(xa);
            nnrt_tensor_free(ya);
            nnrt_tensor_free(xb);
            nnrt_tensor_free(yb);
            nnrt_dataset_fini(&ds);
        }
    }
}

Test(data, normalize_uses_training_statistics_only)
{
    NnrtDataset tr = make_seq(4, 2), te = make_seq(2, 2);
    // train column 0: 0,100,200,300 -> mean 150, std sqrt(12500)
    NnrtNorm nm;
    cr_assert_eq(nnrt_norm_fit(&nm, &tr, true), NN_OK);
    cr_assert_float_eq(nm.mean[0], 150.0f, 1e-4);
    cr_assert_float_eq(nm.std[0], 111.80340f, 1e-3);
    cr_assert_eq(nnrt_norm_apply(&nm, &tr), NN_OK);
    cr_assert_eq(nnrt_norm_apply(&nm, &te), NN_OK);
    // test sample 1, column 0 = 100 -> (100 - 150) / 111.8 with the train stats
    cr_assert_float_eq(((float *)te.x->data)[2], (float)(-50 / 111.8033989), 1e-5);
    double s = 0, s2 = 0;
    for (int i = 0; i < 4; i++) {
        double v = ((float *)tr.x->data)[i * 2];
        s += v;
        s2 += v * v;
    }
    cr_assert_float_eq(s / 4, 0.0, 1e-6);
    cr_assert_float_eq(s2 / 4, 1.0, 1e-5);
    nnrt_norm_fini(&nm);
    // Global statistics: one mean over all values.
    NnrtDataset g = make_seq(2, 2); // values 0,1,100,101
    cr_assert_eq(nnrt_norm_fit(&nm, &g, false), NN_OK);
    cr_assert_eq(nm.features, 1);
    cr_assert_float_eq(nm.mean[0], 50.5f, 1e-4);
    nnrt_norm_fini(&nm);
    nnrt_dataset_fini(&g);
    nnrt_dataset_fini(&tr);
    nnrt_dataset_fini(&te);
}

Test(data, one_hot_labels)
{
    NnrtDataset ds = make_seq(4, 1);
    cr_assert_eq(nnrt_dataset_one_hot(&ds, 0), NN_OK, "%s", nnrt_errmsg());
    cr_assert(ds.y->rank == 2 && ds.y->shape[1] == 3);
    float *y = ds.y->data;
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++)
            cr_assert_float_eq(y[i * 3 + k], k == i % 3 ? 1.0f : 0.0f, 0);
    nnrt_dataset_fini(&ds);
}

// "abca\nb": vocabulary {'\n', 'a', 'b', 'c'} (sorted bytes) -> ids 0..3.
Test(data, text_windows_labels_and_vocabulary)
{
    const char *p = tu_in_dir("t.txt");
    write_text(p, "abca\nb");
    NnrtDataset d;
    NnrtTextOptions o = {.seq = 2};
    cr_assert_eq(nnrt_dataset_load_text(&d, p, &o), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(d.num_classes, 4);
    cr_assert_eq(memcmp(d.vocab, "\nabc", 4), 0);
    cr_assert_eq(d.x->dtype, NN_DT_I32);
    cr_assert_eq(d.count, 4); // windows ab, bc, ca, "a\n" followed by c, a, \n, b
    const int32_t wx[] = {1, 2, 2, 3, 3, 1, 1, 0}, wy[] = {3, 1, 0, 2};
    cr_assert_eq(memcmp(d.x->data, wx, sizeof wx), 0);
    cr_assert_eq(memcmp(d.y->data, wy, sizeof wy), 0);
    // Labels c, a, \n, b, once each: add-one frequencies (1 + 1) / (4 + 4)
    // = 1/4 for every byte, so 2 bits each.
    cr_assert_float_eq(nnrt_text_unigram_bits(&d, &d), 2.0, 1e-12);
    // The labels' origin is the file (no per-label offsets), as for idx and csv.
    cr_assert_str_eq(d.y_file, p);
    cr_assert_null(d.y_at);
    // Splits keep the vocabulary and the labels' origin.
    NnrtDataset parts[2];
    cr_assert_eq(nnrt_dataset_split(&d, (double[]){0.5, 0.5}, 2, 1, parts), NN_OK);
    cr_assert_eq(memcmp(parts[1].vocab, "\nabc", 4), 0);
    cr_assert_str_eq(parts[1].y_file, p);
    // Labels computed in a script come from no file.
    cr_assert_eq(nnrt_dataset_set_label_origin(&parts[1], NULL, NULL, false), NN_OK);
    cr_assert_null(parts[1].y_file);
    nnrt_dataset_fini(&parts[0]);
    nnrt_dataset_fini(&parts[1]);
    nnrt_dataset_fini(&d);
    // stride 2 and the second half: bytes 3.. = "a\nb", one window "a\n" -> b,
    // with the ids of the whole file.
    o = (NnrtTextOptions){.seq = 2, .stride = 2, .from = 0.5};
    cr_assert_eq(nnrt_dataset_load_text(&d, p, &o), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(d.count, 1);
    cr_assert_eq(((int32_t *)d.x->data)[0], 1);
    cr_assert_eq(((int32_t *)d.x->data)[1], 0);
    cr_assert_eq(((int32_t *)d.y->data)[0], 2);
    cr_assert_eq(d.num_classes, 4);
    nnrt_dataset_fini(&d);
}

Test(data, text_errors_name_the_file)
{
    const char *p = tu_in_dir("short.txt");
    write_text(p, "ab");
    NnrtDataset d;
    NnrtTextOptions o = {.seq = 2};
    cr_assert_eq(nnrt_dataset_load_text(&d, p, &o), NN_ERR_FORMAT);
    cr_assert(strstr(nnrt_errmsg(), "short.txt: 2 bytes of text"), "%s", nnrt_errmsg());
    cr_assert_null(d.x);
    o.seq = 0;
    cr_assert_eq(nnrt_dataset_load_text(&d, p, &o), NN_ERR_FORMAT);
    o = (NnrtTextOptions){.seq = 1, .from = 0.6, .to = 0.5, .to_set = true};
    cr_assert_eq(nnrt_dataset_load_text(&d, p, &o), NN_ERR_FORMAT);
    o = (NnrtTextOptions){.seq = 1};
    cr_assert_eq(nnrt_dataset_load_text(&d, tu_in_dir("absent.txt"), &o), NN_ERR_IO);
    cr_assert(strstr(nnrt_errmsg(), "absent.txt"), "%s", nnrt_errmsg());
    // Integer ids cannot be normalized.
    write_text(p, "abcabc");
    cr_assert_eq(nnrt_dataset_load_text(&d, p, &o), NN_OK);
    NnrtNorm n;
    cr_assert_neq(nnrt_norm_fit(&n, &d, false), NN_OK);
    nnrt_dataset_fini(&d);
}
