// Random image augmentation for a batch of f32 images, in place: rotation
// (bilinear, zero fill), integer shift (zero fill), horizontal flip (p = 0.5)
// and additive gaussian noise. Parameters are drawn per sample from the given
// NnrtDataRng in a fixed order, so a batch is reproducible from the rng state.
// Transforms keep the image size; pixels that come from outside take the
// fill value (black of the data as transformed: nnrt_augment_fill).
#include "data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void nnrt_image_hflip(const float *src, float *dst, int64_t h, int64_t w)
{
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++)
            dst[y * w + x] = src[y * w + (w - 1 - x)];
}

void nnrt_image_shift(const float *src, float *dst, int64_t h, int64_t w, int64_t dy, int64_t dx,
                      float fill)
{
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            int64_t sy = y - dy, sx = x - dx;
            dst[y * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? src[sy * w + sx] : fill;
        }
}

static float pixel(const float *src, int64_t h, int64_t w, int64_t y, int64_t x, float fill)
{
    return y >= 0 && y < h && x >= 0 && x < w ? src[y * w + x] : fill;
}

void nnrt_image_rotate(const float *src, float *dst, int64_t h, int64_t w, double degrees,
                       float fill)
{
    // Inverse mapping about the image centre: each output pixel samples the
    // source at the point rotated back by the angle.
    double a = degrees * 3.14159265358979323846 / 180.0, c = cos(a), s = sin(a);
    double cy = (double)(h - 1) / 2, cx = (double)(w - 1) / 2;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            double ry = (double)y - cy, rx = (double)x - cx;
            double sy = c * ry - s * rx + cy, sx = s * ry + c * rx + cx;
            double fy = floor(sy), fx = floor(sx);
            int64_t y0 = (int64_t)fy, x0 = (int64_t)fx;
            double ty = sy - fy, tx = sx - fx;
            double v = (1 - ty) * ((1 - tx) * pixel(src, h, w, y0, x0, fill) +
                                   tx * pixel(src, h, w, y0, x0 + 1, fill)) +
                       ty * ((1 - tx) * pixel(src, h, w, y0 + 1, x0, fill) +
                             tx * pixel(src, h, w, y0 + 1, x0 + 1, fill));
            dst[y * w + x] = (float)v;
        }
}

float nnrt_augment_fill(const NnrtDataset *train)
{
    if (!train->x || train->x->dtype != NN_DT_F32 || train->x->numel == 0)
        return 0.0f;
    const float *x = train->x->data;
    float lo = x[0];
    for (int64_t i = 1; i < train->x->numel; i++)
        lo = x[i] < lo ? x[i] : lo;
    return lo;
}

bool nnrt_augment_active(const NnrtAugment *a)
{
    return a && (a->rotate_deg > 0 || a->shift_px > 0 || a->hflip || a->noise_std > 0);
}

typedef struct Draw {
    double angle;
    int64_t dy, dx;
    bool flip;
} Draw;

static Draw draw(const NnrtAugment *a, NnrtDataRng *rng)
{
    Draw d = {0};
    if (a->rotate_deg > 0)
        d.angle = (2 * nnrt_data_rng_uniform(rng) - 1) * a->rotate_deg;
    if (a->shift_px > 0) {
        d.dy = nnrt_data_rng_below(rng, 2 * a->shift_px + 1) - a->shift_px;
        d.dx = nnrt_data_rng_below(rng, 2 * a->shift_px + 1) - a->shift_px;
    }
    if (a->hflip)
        d.flip = nnrt_data_rng_u64(rng) >> 63;
    return d;
}

// Applies d to one plane in place, using tmp (h*w floats) as scratch.
static void apply(const Draw *d, float *img, float *tmp, int64_t h, int64_t w, float fill)
{
    size_t bytes = (size_t)(h * w) * sizeof(float);
    if (d->angle != 0) {
        nnrt_image_rotate(img, tmp, h, w, d->angle, fill);
        memcpy(img, tmp, bytes);
    }
    if (d->dy != 0 || d->dx != 0) {
        nnrt_image_shift(img, tmp, h, w, d->dy, d->dx, fill);
        memcpy(img, tmp, bytes);
    }
    if (d->flip) {
        nnrt_image_hflip(img, tmp, h, w);
        memcpy(img, tmp, bytes);
    }
}

NnStatus nnrt_augment_batch(const NnrtAugment *a, float *x, int64_t n, int64_t features,
                            int64_t h, int64_t w, NnrtDataRng *rng)
{
    if (!nnrt_augment_active(a))
        return NN_OK;
    bool geometric = a->rotate_deg > 0 || a->shift_px > 0 || a->hflip;
    if (geometric && (h <= 0 || w <= 0 || features % (h * w) != 0))
        return nnrt_fail(NN_ERR_SHAPE,
                         "augmentation needs images: %lld features per sample is not a "
                         "multiple of %lldx%lld",
                         (long long)features, (long long)h, (long long)w);
    float *tmp = geometric ? malloc((size_t)(h * w) * sizeof *tmp) : NULL;
    if (geometric && !tmp)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        float *sample = x + i * features;
        if (geometric) {
            Draw d = draw(a, rng);
            for (int64_t p = 0; p < features / (h * w); p++)
                apply(&d, sample + p * h * w, tmp, h, w, a->fill);
        }
        if (a->noise_std > 0)
            for (int64_t j = 0; j < features; j++)
                sample[j] += (float)(a->noise_std * nnrt_data_rng_normal(rng));
    }
    free(tmp);
    return NN_OK;
}
