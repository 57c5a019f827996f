// Image augmentation and export: flip twice is the identity, a shift moves a
// pixel by exactly the offset, rotation by 0 is the identity and by 90 degrees
// matches a hand-written transpose, noise has the requested statistics, and a
// batch is reproducible from the rng seed. PGM and PNG files written by
// image.c have valid headers (PNG chunk CRCs checked against zlib's crc32).
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data.h"

#define H 5
#define W 7

static void ramp(float *img, int h, int w)
{
    for (int i = 0; i < h * w; i++)
        img[i] = (float)(i + 1);
}

Test(augment, flip_twice_is_identity)
{
    float a[H * W], b[H * W], c[H * W];
    ramp(a, H, W);
    nnrt_image_hflip(a, b, H, W);
    cr_assert_float_eq(b[0], a[W - 1], 0);
    cr_assert_float_eq(b[2 * W + 1], a[2 * W + W - 2], 0);
    nnrt_image_hflip(b, c, H, W);
    cr_assert_eq(memcmp(a, c, sizeof a), 0);
}

Test(augment, shift_moves_a_pixel)
{
    float a[H * W] = {0}, b[H * W];
    a[1 * W + 2] = 5.0f;
    nnrt_image_shift(a, b, H, W, 2, -1, 0.0f);
    for (int i = 0; i < H * W; i++)
        cr_assert_float_eq(b[i], i == 3 * W + 1 ? 5.0f : 0.0f, 0, "pixel %d", i);
    // Shifted out of the frame: everything becomes the zero fill.
    nnrt_image_shift(a, b, H, W, 0, W, 0.0f);
    for (int i = 0; i < H * W; i++)
        cr_assert_float_eq(b[i], 0.0f, 0);
}

Test(augment, rotation_by_zero_is_identity_and_90_is_a_transpose)
{
    float a[H * W], b[H * W];
    ramp(a, H, W);
    nnrt_image_rotate(a, b, H, W, 0.0, 0.0f);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    // Square image, 90 degrees: independent reference by index arithmetic.
    enum { S = 6 };
    float s[S * S], r[S * S];
    ramp(s, S, S);
    nnrt_image_rotate(s, r, S, S, 90.0, 0.0f);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            // Inverse map with cos = 0, sin = 1 about the centre: (y, x) <- (S-1-x, y).
            float want = s[(S - 1 - x) * S + y];
            cr_assert_float_eq(r[y * S + x], want, 1e-4, "(%d,%d)", y, x);
        }
}

Test(augment, small_rotation_keeps_mass_of_a_centred_blob)
{
    enum { S = 15 };
    float a[S * S] = {0}, b[S * S];
    for (int y = 5; y < 10; y++)
        for (int x = 5; x < 10; x++)
            a[y * S + x] = 1.0f;
    nnrt_image_rotate(a, b, S, S, 10.0, 0.0f);
    double sa = 0, sb = 0;
    for (int i = 0; i < S * S; i++) {
        sa += a[i];
        sb += b[i];
        cr_assert(b[i] >= -1e-6 && b[i] <= 1 + 1e-6, "bilinear stays in the input range");
    }
    cr_assert_float_eq(sb, sa, 0.5, "bilinear rotation roughly preserves the blob");
    cr_assert_float_eq(b[7 * S + 7], 1.0f, 1e-5, "the centre stays put");
}

// Normalized data: black is -mean/std, not 0. A shifted or rotated image
// must get that background where pixels come from outside the frame; the
// zero fill painted mid-gray bands the test images never have.
Test(augment, fill_is_the_black_of_normalized_data)
{
    enum { N = 4 };
    NnrtDataset ds = {.count = N, .img_h = H, .img_w = W};
    int64_t shape[] = {N, 1, H, W};
    ds.x = nnrt_tensor_new(NN_DT_F32, 4, shape);
    cr_assert_not_null(ds.x);
    float *x = ds.x->data;
    // Dark-background images: a bright 2x2 patch, the rest black.
    for (int i = 0; i < N * H * W; i++)
        x[i] = 0.0f;
    for (int i = 0; i < N; i++)
        for (int y = 1; y < 3; y++)
            for (int c = 2 + i % 3; c < 4 + i % 3; c++)
                x[i * H * W + y * W + c] = 200.0f;
    NnrtNorm norm = {0};
    cr_assert_eq(nnrt_norm_fit(&norm, &ds, false), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(nnrt_norm_apply(&norm, &ds), NN_OK, "%s", nnrt_errmsg());
    float black = (0.0f - norm.mean[0]) / norm.std[0];
    nnrt_norm_fini(&norm);
    cr_assert_lt(black, -0.1f);
    float fill = nnrt_augment_fill(&ds);
    cr_assert_float_eq(fill, black, 1e-5);
    // An all-black image stays all black under shifts and rotations.
    float img[H * W], out[H * W];
    for (int i = 0; i < H * W; i++)
        img[i] = black;
    nnrt_image_shift(img, out, H, W, 2, -3, fill);
    for (int i = 0; i < H * W; i++)
        cr_assert_float_eq(out[i], black, 1e-6, "shift: pixel %d", i);
    nnrt_image_rotate(img, out, H, W, 30.0, fill);
    for (int i = 0; i < H * W; i++)
        cr_assert_float_eq(out[i], black, 1e-5, "rotation: pixel %d", i);
    // Through the batch path: every shifted pixel is one the normalized
    // images already had (black or the patch), none the old fill 0.
    NnrtAugment aug = {.shift_px = 2, .fill = fill};
    NnrtDataRng rng;
    nnrt_data_rng_seed(&rng, 11, 0);
    float bright = x[1 * W + 2];
    cr_assert_eq(nnrt_augment_batch(&aug, x, N, H * W, H, W, &rng), NN_OK, "%s", nnrt_errmsg());
    for (int i = 0; i < N * H * W; i++)
        cr_assert(x[i] == black || x[i] == bright, "pixel %d is %g (black %g)", i, x[i], black);
    nnrt_tensor_free(ds.x);
}

Test(augment, noise_statistics)
{
    enum { N = 4, F = 5000 };
    float *x = calloc(N * F, sizeof *x);
    NnrtAugment a = {.noise_std = 0.5};
    NnrtDataRng rng;
    nnrt_data_rng_seed(&rng, 9, 0);
    cr_assert_eq(nnrt_augment_batch(&a, x, N, F, 0, 0, &rng), NN_OK, "%s", nnrt_errmsg());
    double s = 0, s2 = 0;
    for (int i = 0; i < N * F; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    double mean = s / (N * F), sd = sqrt(s2 / (N * F) - mean * mean);
    cr_assert_float_eq(mean, 0.0, 0.02);
    cr_assert_float_eq(sd, 0.5, 0.02);
    free(x);
}

Test(augment, batch_is_reproducible_by_seed)
{
    enum { N = 8 };
    float x0[N * H * W], a[N * H * W], b[N * H * W], c[N * H * W];
    for (int i = 0; i < N; i++)
        ramp(x0 + i * H * W, H, W);
    memcpy(a, x0, sizeof x0);
    memcpy(b, x0, sizeof x0);
    memcpy(c, x0, sizeof x0);
    NnrtAugment aug = {.rotate_deg = 15, .shift_px = 2, .hflip = true, .noise_std = 0.1};
    NnrtDataRng r1, r2, r3;
    nnrt_data_rng_seed(&r1, 5, 1);
    nnrt_data_rng_seed(&r2, 5, 1);
    nnrt_data_rng_seed(&r3, 6, 1);
    cr_assert_eq(nnrt_augment_batch(&aug, a, N, H * W, H, W, &r1), NN_OK);
    cr_assert_eq(nnrt_augment_batch(&aug, b, N, H * W, H, W, &r2), NN_OK);
    cr_assert_eq(nnrt_augment_batch(&aug, c, N, H * W, H, W, &r3), NN_OK);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    cr_assert_neq(memcmp(a, c, sizeof a), 0);
    cr_assert_neq(memcmp(a, x0, sizeof a), 0);
}

Test(augment, multi_plane_and_bad_geometry)
{
    // Two planes per sample get the same shift.
    float x[2 * H * W] = {0};
    x[0] = 1.0f;
    x[H * W] = 2.0f;
    NnrtAugment aug = {.shift_px = 1};
    NnrtDataRng rng;
    nnrt_data_rng_seed(&rng, 3, 0);
    cr_assert_eq(nnrt_augment_batch(&aug, x, 1, 2 * H * W, H, W, &rng), NN_OK);
    int p0 = -1, p1 = -1;
    for (int i = 0; i < H * W; i++) {
        if (x[i] == 1.0f)
            p0 = i;
        if (x[H * W + i] == 2.0f)
            p1 = i;
    }
    cr_assert_eq(p0, p1, "both planes moved alike");
    cr_assert_eq(nnrt_augment_batch(&aug, x, 1, 10, H, W, &rng), NN_ERR_SHAPE);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static unsigned char buf[1 << 16];
    *n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

Test(augment, pgm_and_png_are_valid)
{
    char dir[] = "/tmp/nnrt_img_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char pgm[64], png[64];
    snprintf(pgm, sizeof pgm, "%s/g.pgm", dir);
    snprintf(png, sizeof png, "%s/g.png", dir);
    enum { N = 5 };
    float x[N * H * W];
    for (int i = 0; i < N * H * W; i++)
        x[i] = (float)(i % 256);
    // 3 columns: grid 3*(W+1)+1 = 25 wide, 2*(H+1)+1 = 13 high.
    cr_assert_eq(nnrt_image_write_pgm(pgm, x, N, H, W, 3, 0, 255), NN_OK, "%s", nnrt_errmsg());
    size_t n;
    unsigned char *p = slurp(pgm, &n);
    const char *hdr = "P5\n25 13\n255\n";
    cr_assert_eq(memcmp(p, hdr, strlen(hdr)), 0);
    cr_assert_eq(n, strlen(hdr) + 25 * 13);
    // Pixel (1,1) of the grid is image 0 pixel 0 = 0; (1,2) is pixel 1 = 1.
    cr_assert_eq(p[strlen(hdr) + 25 + 2], 1);

    cr_assert_eq(nnrt_image_write_png(png, x, N, H, W, 3, 0, 255), NN_OK, "%s", nnrt_errmsg());
    p = slurp(png, &n);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    cr_assert_eq(memcmp(p, sig, 8), 0);
    size_t at = 8;
    int chunks = 0;
    unsigned char raw[13 * 26];
    uLongf rawlen = sizeof raw;
    while (at + 12 <= n) {
        uint32_t len = be32(p + at);
        const unsigned char *type = p + at + 4;
        uint32_t crc = (uint32_t)crc32(crc32(0, Z_NULL, 0), type, 4 + len);
        cr_assert_eq(be32(p + at + 8 + len), crc, "chunk %.4s crc", type);
        if (chunks == 0) {
            cr_assert_eq(memcmp(type, "IHDR", 4), 0);
            cr_assert_eq(be32(type + 4), 25);
            cr_assert_eq(be32(type + 8), 13);
            cr_assert(type[12] == 8 && type[13] == 0, "8-bit gray");
        }
        if (memcmp(type, "IDAT", 4) == 0)
            cr_assert_eq(uncompress(raw, &rawlen, type + 4, len), Z_OK);
        chunks++;
        at += 12 + len;
    }
    cr_assert_eq(at, n);
    cr_assert_eq(chunks, 3);
    cr_assert_eq(rawlen, 13 * 26, "13 scanlines of filter byte + 25 pixels");
    cr_assert_eq(raw[26 + 1 + 2], 1, "same pixel as in the PGM");
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
