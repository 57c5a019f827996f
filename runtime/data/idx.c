// IDX files (the MNIST family): a big-endian header 00 00 <type> <rank>, rank
// u32 dimensions, then the elements. Takes a path to a plain or gzipped file
// (zlib detects the gzip magic), produces an owned NnTensor: rank-1 integer
// data (labels) as i32, everything else as f32 with raw values. Every failure
// names the file, and the byte offset in the uncompressed stream where it applies.
// The header's claim is never trusted for memory: storage grows as data
// arrives, so a 35-byte file claiming gigabytes fails at its first missing
// byte, and a gzip stream is never inflated past what the header claims.
#include "data.h"
#include "fileio.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

// Upper bound on elements, so a corrupt header cannot overflow size arithmetic.
#define IDX_MAX_NUMEL ((int64_t)1 << 36)

static size_t idx_elem_size(int type)
{
    switch (type) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
    }
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// Converts n big-endian elements at src into t starting at element `at`.
static void convert(const unsigned char *src, int type, int64_t n, NnTensor *t, int64_t at)
{
    if (type == 0x08 && t->dtype == NN_DT_F32) {
        float *d = (float *)t->data + at;
        for (int64_t i = 0; i < n; i++)
            d[i] = src[i];
        return;
    }
    size_t es = idx_elem_size(type);
    for (int64_t i = 0; i < n; i++) {
        const unsigned char *p = src + (size_t)i * es;
        double v = 0;
        switch (type) {
        case 0x08: v = p[0]; break;
        case 0x09: v = (int8_t)p[0]; break;
        case 0x0B: v = (int16_t)(uint16_t)(p[0] << 8 | p[1]); break;
        case 0x0C: v = (int32_t)be32(p); break;
        case 0x0D: {
            uint32_t u = be32(p);
            float f;
            memcpy(&f, &u, 4);
            v = f;
            break;
        }
        case 0x0E: {
            uint64_t u = (uint64_t)be32(p) << 32 | be32(p + 4);
            memcpy(&v, &u, 8);
            break;
        }
        default: break;
        }
        nnrt_tensor_set(t, at + i, v);
    }
}

typedef struct Reader {
    const char *path;
    gzFile f;
    size_t pos; // bytes of the uncompressed stream consumed so far
} Reader;

// Reads up to n bytes; *got < n only at the end of the stream. A zlib error
// (corrupt or cut-off gzip data) is a failure naming the position.
static NnStatus rd(Reader *r, void *buf, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < (1u << 30) ? n - *got : (1u << 30);
        int k = gzread(r->f, (char *)buf + *got, (unsigned)want);
        if (k > 0) {
            *got += (size_t)k;
            r->pos += (size_t)k;
            continue;
        }
        int zerr = Z_OK;
        const char *zmsg = gzerror(r->f, &zerr);
        if (k < 0 || (zerr != Z_OK && zerr != Z_STREAM_END))
            return nnrt_fail(NN_ERR_FORMAT,
                             "%s: corrupt or truncated gzip data after byte %zu of the "
                             "uncompressed stream (zlib: %s)",
                             r->path, r->pos, zmsg ? zmsg : "unknown error");
        break;
    }
    return NN_OK;
}

// Header: magic, element type, rank and dimensions.
static NnStatus read_header(Reader *r, int *type, int *rank, int64_t *shape, int64_t *numel)
{
    unsigned char h[4 + 4 * NN_MAX_RANK];
    size_t got;
    NnStatus st = rd(r, h, 4, &got);
    if (st != NN_OK)
        return st;
    if (got < 4)
        return nnrt_fail(NN_ERR_FORMAT, "%s: truncated at byte %zu (expected a 4-byte IDX magic)",
                         r->path, got);
    if (h[0] != 0 || h[1] != 0)
        return nnrt_fail(NN_ERR_FORMAT, "%s: bad IDX magic 0x%08x at byte 0", r->path, be32(h));
    *type = h[2];
    *rank = h[3];
    if (idx_elem_size(*type) == 0)
        return nnrt_fail(NN_ERR_FORMAT, "%s: unsupported IDX element type 0x%02x at byte 2",
                         r->path, *type);
    if (*rank < 1 || *rank > NN_MAX_RANK)
        return nnrt_fail(NN_ERR_FORMAT, "%s: unsupported IDX rank %d at byte 3 (1..%d allowed)",
                         r->path, *rank, NN_MAX_RANK);
    size_t hdr = 4 + 4 * (size_t)*rank;
    if ((st = rd(r, h + 4, hdr - 4, &got)) != NN_OK)
        return st;
    if (got < hdr - 4)
        return nnrt_fail(NN_ERR_FORMAT,
                         "%s: truncated at byte %zu (expected a %zu-byte IDX header)", r->path,
                         4 + got, hdr);
    *numel = 1;
    for (int i = 0; i < *rank; i++) {
        shape[i] = be32(h + 4 + 4 * i);
        if (__builtin_mul_overflow(*numel, shape[i], numel) || *numel > IDX_MAX_NUMEL)
            return nnrt_fail(NN_ERR_FORMAT, "%s: IDX dimensions too large at byte %d", r->path,
                             4 + 4 * i);
    }
    return NN_OK;
}

// Makes room in t for at least `upto` elements: capacity doubles, capped at
// t->numel, so memory follows the data that actually arrived.
static NnStatus grow(Reader *r, NnTensor *t, int64_t *cap, int64_t upto)
{
    if (upto <= *cap)
        return NN_OK;
    int64_t ncap = *cap ? *cap : 1;
    while (ncap < upto)
        ncap = ncap > t->numel / 2 ? t->numel : ncap * 2;
    size_t es = nnrt_dtype_size(t->dtype);
    void *d = nnrt_alloc((size_t)ncap * es);
    if (!d)
        return nnrt_fail(NN_ERR_NOMEM, "%s: out of memory after %zu bytes (%s)", r->path, r->pos,
                         nnrt_errmsg());
    if (t->data)
        memcpy(d, t->data, (size_t)*cap * es);
    nnrt_free(t->data);
    t->data = d;
    *cap = ncap;
    return NN_OK;
}

// Streams the elements into t in chunks (a multiple of every element size),
// then checks that nothing follows them. t->data starts NULL.
static NnStatus read_data(Reader *r, int type, NnTensor *t)
{
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return nnrt_fail(NN_ERR_NOMEM, "%s: out of memory", r->path);
    size_t es = idx_elem_size(type), need = (size_t)t->numel * es, hdr = r->pos, done = 0;
    int64_t cap = 0;
    NnStatus st = grow(r, t, &cap, t->numel < CHUNK ? (t->numel ? t->numel : 1) : CHUNK);
    while (st == NN_OK && done < need) {
        size_t want = need - done < CHUNK ? need - done : CHUNK, got;
        st = rd(r, buf, want, &got);
        if (st == NN_OK && got < want)
            st = nnrt_fail(NN_ERR_FORMAT,
                           "%s: truncated at byte %zu (expected %zu bytes of data)", r->path,
                           r->pos, need);
        if (st == NN_OK)
            st = grow(r, t, &cap, (int64_t)((done + got) / es));
        if (st == NN_OK)
            convert(buf, type, (int64_t)(got / es), t, (int64_t)(done / es));
        done += got;
    }
    // One chunk past the data is enough to know there is more; inflating a
    // gzip stream to its end could take without bound.
    size_t extra = 0;
    if (st == NN_OK)
        st = rd(r, buf, CHUNK, &extra);
    if (st == NN_OK && extra)
        st = nnrt_fail(NN_ERR_FORMAT,
                       "%s: %s%zu unexpected trailing bytes at byte %zu (after %zu bytes of data)",
                       r->path, extra == CHUNK ? "at least " : "", extra, hdr + need, need);
    free(buf);
    return st;
}

NnStatus nnrt_idx_load(const char *path, NnTensor **out) { return nnrt_idx_load_info(path, out, NULL); }

// Opens path and reads its IDX header: r->f open (the caller closes it),
// *t a header-only tensor of the file's shape, *type its element code.
static NnStatus open_header(const char *path, Reader *r, int *type, NnTensor **t)
{
    *t = NULL;
    int fd;
    int64_t size;
    NnStatus st = nnrt_file_open(path, NULL, &fd, &size);
    if (st != NN_OK)
        return st;
    *r = (Reader){.path = path, .f = gzdopen(fd, "rb")};
    if (!r->f) {
        close(fd);
        return nnrt_fail(NN_ERR_NOMEM, "%s: cannot open: out of memory", path);
    }
    int rank = 0;
    int64_t shape[NN_MAX_RANK], numel = 0;
    st = read_header(r, type, &rank, shape, &numel);
    if (st != NN_OK)
        return st;
    bool is_int = *type != 0x0D && *type != 0x0E;
    *t = nnrt_tensor_view(rank == 1 && is_int ? NN_DT_I32 : NN_DT_F32, rank, shape, NULL);
    if (!*t)
        return nnrt_fail(NN_ERR_FORMAT, "%s: IDX dimensions at byte 4: %s", path, nnrt_errmsg());
    return NN_OK;
}

NnStatus nnrt_idx_load_header(const char *path, NnTensor **out)
{
    Reader r = {0};
    int type = 0;
    NnStatus st = open_header(path, &r, &type, out);
    if (r.f)
        gzclose(r.f);
    if (st != NN_OK) {
        nnrt_tensor_free(*out);
        *out = NULL;
    }
    return st;
}

NnStatus nnrt_idx_load_info(const char *path, NnTensor **out, NnrtIdxInfo *info)
{
    *out = NULL;
    Reader r = {0};
    int type = 0;
    NnTensor *t = NULL;
    NnStatus st = open_header(path, &r, &type, &t);
    if (st == NN_OK)
        t->owned = true; // a header only; read_data allocates as the elements arrive
    if (st == NN_OK && info) {
        info->type = type;
        info->header_bytes = 4 + 4 * t->rank;
        info->elem_size = (int)idx_elem_size(type);
    }
    if (st == NN_OK)
        st = read_data(&r, type, t);
    if (r.f)
        gzclose(r.f);
    if (st != NN_OK) {
        nnrt_tensor_free(t);
        return st;
    }
    *out = t;
    return NN_OK;
}
