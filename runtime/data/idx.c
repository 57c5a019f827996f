// IDX files (the MNIST family): a big-endian header 00 00 <type> <rank>, rank
// u32 dimensions, then the elements. Takes a path to a plain or gzipped file
// (zlib detects the gzip magic), produces an owned NnTensor: rank-1 integer
// data (labels) as i32, everything else as f32 with raw values. Every failure
// names the file, and the byte offset in the uncompressed stream where it applies.
#include "data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

// Upper bound on elements, so a corrupt header cannot overflow size arithmetic.
#define IDX_MAX_NUMEL ((int64_t)1 << 36)

typedef struct Buf {
    unsigned char *p;
    size_t len, cap;
} Buf;

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

// Reads the whole (decompressed) stream into b.
static NnStatus read_all(const char *path, Buf *b)
{
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return nnrt_fail(NN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fclose(probe);
    gzFile f = gzopen(path, "rb");
    if (!f)
        return nnrt_fail(NN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    b->cap = 1 << 16;
    b->p = malloc(b->cap);
    if (!b->p) {
        gzclose(f);
        return nnrt_fail(NN_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (b->len == b->cap) {
            unsigned char *np = realloc(b->p, b->cap * 2);
            if (!np) {
                gzclose(f);
                return nnrt_fail(NN_ERR_NOMEM, "%s: out of memory reading %zu bytes", path,
                                 b->cap * 2);
            }
            b->p = np;
            b->cap *= 2;
        }
        size_t want = b->cap - b->len;
        if (want > (1u << 30))
            want = 1u << 30;
        int got = gzread(f, b->p + b->len, (unsigned)want);
        if (got > 0) {
            b->len += (size_t)got;
            continue;
        }
        int zerr = Z_OK;
        const char *zmsg = gzerror(f, &zerr);
        if (got < 0 || (zerr != Z_OK && zerr != Z_STREAM_END)) {
            NnStatus st = nnrt_fail(NN_ERR_FORMAT,
                                    "%s: corrupt or truncated gzip data after byte %zu of the "
                                    "uncompressed stream (zlib: %s)",
                                    path, b->len, zmsg ? zmsg : "unknown error");
            gzclose(f);
            return st;
        }
        break;
    }
    gzclose(f);
    return NN_OK;
}

static void convert(const unsigned char *src, int type, NnTensor *t)
{
    for (int64_t i = 0; i < t->numel; i++) {
        const unsigned char *p = src + (size_t)i * idx_elem_size(type);
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
        nnrt_tensor_set(t, i, v);
    }
}

static NnStatus parse(const char *path, const Buf *b, NnTensor **out)
{
    if (b->len < 4)
        return nnrt_fail(NN_ERR_FORMAT, "%s: truncated at byte %zu (expected a 4-byte IDX magic)",
                         path, b->len);
    if (b->p[0] != 0 || b->p[1] != 0)
        return nnrt_fail(NN_ERR_FORMAT, "%s: bad IDX magic 0x%08x at byte 0", path, be32(b->p));
    int type = b->p[2], rank = b->p[3];
    size_t esize = idx_elem_size(type);
    if (esize == 0)
        return nnrt_fail(NN_ERR_FORMAT, "%s: unsupported IDX element type 0x%02x at byte 2", path,
                         type);
    if (rank < 1 || rank > NN_MAX_RANK)
        return nnrt_fail(NN_ERR_FORMAT, "%s: unsupported IDX rank %d at byte 3 (1..%d allowed)",
                         path, rank, NN_MAX_RANK);
    size_t hdr = 4 + 4 * (size_t)rank;
    if (b->len < hdr)
        return nnrt_fail(NN_ERR_FORMAT,
                         "%s: truncated at byte %zu (expected a %zu-byte IDX header)", path,
                         b->len, hdr);
    int64_t shape[NN_MAX_RANK], numel = 1;
    for (int i = 0; i < rank; i++) {
        shape[i] = be32(b->p + 4 + 4 * i);
        numel *= shape[i];
        if (numel > IDX_MAX_NUMEL)
            return nnrt_fail(NN_ERR_FORMAT, "%s: IDX dimensions too large at byte %d", path,
                             4 + 4 * i);
    }
    size_t need = (size_t)numel * esize;
    if (b->len - hdr < need)
        return nnrt_fail(NN_ERR_FORMAT, "%s: truncated at byte %zu (expected %zu bytes of data)",
                         path, b->len, need);
    if (b->len - hdr > need)
        return nnrt_fail(NN_ERR_FORMAT,
                         "%s: %zu unexpected trailing bytes at byte %zu (after %zu bytes of data)",
                         path, b->len - hdr - need, hdr + need, need);
    bool is_int = type != 0x0D && type != 0x0E;
    NnTensor *t = nnrt_tensor_new(rank == 1 && is_int ? NN_DT_I32 : NN_DT_F32, rank, shape);
    if (!t)
        return nnrt_fail(NN_ERR_NOMEM, "%s: out of memory for %lld elements", path,
                         (long long)numel);
    convert(b->p + hdr, type, t);
    *out = t;
    return NN_OK;
}

NnStatus nnrt_idx_load(const char *path, NnTensor **out)
{
    *out = NULL;
    Buf b = {0};
    NnStatus st = read_all(path, &b);
    if (st == NN_OK)
        st = parse(path, &b, out);
    free(b.p);
    return st;
}
