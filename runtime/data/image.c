// Image export: a grid of gray images (f32, h*w each) written as binary PGM
// (P5) or as an 8-bit grayscale PNG (RGB too, for plots) (zlib deflate for IDAT, zlib crc32 for the
// chunk checksums), so users can look at what the model sees. Values map
// linearly from [lo, hi] to 0..255 (clamped); lo == hi uses the data's range.
// The file is replaced atomically, so a failed write keeps the previous one.
#include "data.h"
#include "savefile.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct Grid {
    int64_t gw, gh;   // grid size in pixels
    unsigned char *p; // gh rows of gw bytes
} Grid;

static NnStatus make_grid(const float *x, int64_t n, int64_t h, int64_t w, int cols, float lo,
                          float hi, Grid *g)
{
    if (n <= 0 || h <= 0 || w <= 0)
        return nnrt_fail(NN_ERR_SHAPE, "image grid needs at least one non-empty image");
    if (cols <= 0 || cols > n)
        cols = (int)(n < 16 ? n : 16);
    int64_t rows = (n + cols - 1) / cols;
    g->gw = cols * (w + 1) + 1;
    g->gh = rows * (h + 1) + 1;
    g->p = calloc((size_t)(g->gw * g->gh), 1);
    if (!g->p)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory for a %lldx%lld image",
                         (long long)g->gw, (long long)g->gh);
    if (lo == hi) {
        lo = hi = x[0];
        for (int64_t i = 0; i < n * h * w; i++) {
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
    }
    float scale = hi > lo ? 255.0f / (hi - lo) : 0.0f;
    for (int64_t k = 0; k < n; k++) {
        int64_t oy = (k / cols) * (h + 1) + 1, ox = (k % cols) * (w + 1) + 1;
        for (int64_t y = 0; y < h; y++)
            for (int64_t xx = 0; xx < w; xx++) {
                float v = (x[(k * h + y) * w + xx] - lo) * scale;
                v = v < 0 ? 0 : v > 255 ? 255 : v;
                g->p[(oy + y) * g->gw + ox + xx] = (unsigned char)(v + 0.5f);
            }
    }
    return NN_OK;
}

NnStatus nnrt_image_write_pgm(const char *path, const float *x, int64_t n, int64_t h, int64_t w,
                              int cols, float lo, float hi)
{
    Grid g = {0};
    NnStatus st = make_grid(x, n, h, w, cols, lo, hi, &g);
    if (st != NN_OK)
        return st;
    NnrtSaveFile out;
    if ((st = nnrt_savefile_open(&out, path)) != NN_OK) {
        free(g.p);
        return st;
    }
    FILE *f = out.f;
    bool ok = fprintf(f, "P5\n%lld %lld\n255\n", (long long)g.gw, (long long)g.gh) > 0;
    ok = ok && fwrite(g.p, 1, (size_t)(g.gw * g.gh), f) == (size_t)(g.gw * g.gh);
    free(g.p);
    return nnrt_savefile_commit(&out, ok, "image");
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

// One PNG chunk: length, type, data, crc32(type + data).
static bool chunk(FILE *f, const char *type, const unsigned char *data, uint32_t len)
{
    unsigned char hdr[8], crc[4];
    put32(hdr, len);
    memcpy(hdr + 4, type, 4);
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, (const Bytef *)type, 4);
    if (len)
        c = crc32(c, data, len);
    put32(crc, (uint32_t)c);
    return fwrite(hdr, 1, 8, f) == 8 && (len == 0 || fwrite(data, 1, len, f) == len) &&
           fwrite(crc, 1, 4, f) == 4;
}

// Writes h rows of w pixels (1 byte each for gray, 3 for RGB) as a PNG.
static NnStatus write_png(const char *path, const unsigned char *px, int64_t w, int64_t h,
                          int channels)
{
    // Each scanline is prefixed with filter type 0 (none).
    size_t row = (size_t)(w * channels);
    size_t rawlen = (size_t)h * (row + 1);
    unsigned char *raw = malloc(rawlen);
    uLongf zlen = compressBound(rawlen);
    unsigned char *z = malloc(zlen);
    if (!raw || !z) {
        free(raw);
        free(z);
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    for (int64_t y = 0; y < h; y++) {
        raw[(size_t)y * (row + 1)] = 0;
        memcpy(raw + (size_t)y * (row + 1) + 1, px + (size_t)y * row, row);
    }
    int zr = compress2(z, &zlen, raw, rawlen, 6);
    free(raw);
    if (zr != Z_OK) {
        free(z);
        return nnrt_fail(NN_ERR_RUNTIME, "%s: zlib compress failed (%d)", path, zr);
    }
    NnrtSaveFile out;
    NnStatus st;
    if ((st = nnrt_savefile_open(&out, path)) != NN_OK) {
        free(z);
        return st;
    }
    FILE *f = out.f;
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    unsigned char ihdr[13] = {0};
    put32(ihdr, (uint32_t)w);
    put32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;                         // bit depth
    ihdr[9] = channels == 3 ? 2 : 0;     // colour type: RGB or gray; deflate, filter 0, no interlace
    bool ok = fwrite(sig, 1, 8, f) == 8 && chunk(f, "IHDR", ihdr, 13) &&
              chunk(f, "IDAT", z, (uint32_t)zlen) && chunk(f, "IEND", NULL, 0);
    free(z);
    return nnrt_savefile_commit(&out, ok, "image");
}

NnStatus nnrt_image_write_png(const char *path, const float *x, int64_t n, int64_t h, int64_t w,
                              int cols, float lo, float hi)
{
    Grid g = {0};
    NnStatus st = make_grid(x, n, h, w, cols, lo, hi, &g);
    if (st != NN_OK)
        return st;
    st = write_png(path, g.p, g.gw, g.gh, 1);
    free(g.p);
    return st;
}

NnStatus nnrt_image_write_rgb_png(const char *path, const unsigned char *rgb, int64_t w, int64_t h)
{
    return write_png(path, rgb, w, h, 3);
}
