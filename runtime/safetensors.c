// safetensors checkpoints: atomic save of an NnVars table with string
// metadata, and a validating load. The loader reads the whole file, parses the
// JSON header with a small recursive-descent parser, and checks dtypes, shapes
// and data offsets (sized shape * dtype, tiling the data section exactly:
// sorted, no gap, no overlap, no trailing bytes) before allocating any tensor,
// then refuses NaN/Inf weights and out-of-range metadata of the keys this
// runtime writes. Every error names the file and a byte offset, tensor or key.
// Loading is O(n log n) in the number of tensors.
#include "checkpoint.h"
#include "fileio.h"
#include "savefile.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; add byte swapping for this target"
#endif

// A header larger than this is certainly corrupt (the reference limit is 100 MB).
#define MAX_HEADER ((uint64_t)100 << 20)
// Checkpoints are read whole; a bigger file is refused rather than tried.
#define MAX_FILE ((size_t)1 << 40)

// ---- metadata --------------------------------------------------------------

void nnrt_meta_init(NnrtMeta *m) { memset(m, 0, sizeof *m); }

void nnrt_meta_fini(NnrtMeta *m)
{
    for (int i = 0; i < m->count; i++) {
        free(m->keys[i]);
        free(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

const char *nnrt_meta_get(const NnrtMeta *m, const char *key)
{
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    return NULL;
}

NnStatus nnrt_meta_set(NnrtMeta *m, const char *key, const char *val)
{
    char *v = strdup(val);
    if (!v)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0) {
            free(m->vals[i]);
            m->vals[i] = v;
            return NN_OK;
        }
    if (m->count == m->cap) {
        int cap = m->cap ? m->cap * 2 : 8;
        char **k = realloc(m->keys, (size_t)cap * sizeof *k);
        if (k)
            m->keys = k;
        char **vv = k ? realloc(m->vals, (size_t)cap * sizeof *vv) : NULL;
        if (!vv) {
            free(v);
            return nnrt_fail(NN_ERR_NOMEM, "out of memory");
        }
        m->vals = vv;
        m->cap = cap;
    }
    m->keys[m->count] = strdup(key);
    if (!m->keys[m->count]) {
        free(v);
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    m->vals[m->count++] = v;
    return NN_OK;
}

NnStatus nnrt_meta_set_int(NnrtMeta *m, const char *key, long long val)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", val);
    return nnrt_meta_set(m, key, buf);
}

bool nnrt_meta_get_int(const NnrtMeta *m, const char *key, long long *val)
{
    const char *s = nnrt_meta_get(m, key);
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno)
        return false;
    *val = v;
    return true;
}

// ---- saving ----------------------------------------------------------------

static const char *st_dtype(NnDType dt)
{
    switch (dt) {
    case NN_DT_F32: return "F32";
    case NN_DT_F64: return "F64";
    case NN_DT_I32: return "I32";
    default: return NULL;
    }
}

// A growable string for building the header.
typedef struct Str {
    char *p;
    size_t len, cap;
    bool oom;
} Str;

static void put(Str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Str *s, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0 || s->oom)
            return;
        if (s->p && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = (s->cap + (size_t)n + 1) * 2;
        char *p = realloc(s->p, cap);
        if (!p) {
            s->oom = true;
            return;
        }
        s->p = p;
        s->cap = cap;
    }
}

static void put_json_string(Str *s, const char *str)
{
    put(s, "\"");
    for (const unsigned char *c = (const unsigned char *)str; *c; c++) {
        if (*c == '"' || *c == '\\')
            put(s, "\\%c", *c);
        else if (*c < 0x20)
            put(s, "\\u%04x", *c);
        else
            put(s, "%c", *c);
    }
    put(s, "\"");
}

static NnStatus build_header(const NnVars *vars, const NnrtMeta *meta, Str *h)
{
    put(h, "{\"__metadata__\":{");
    bool has_format = meta && nnrt_meta_get(meta, "format");
    if (!has_format)
        put(h, "\"format\":\"%s\"", NNRT_CHECKPOINT_FORMAT);
    for (int i = 0; meta && i < meta->count; i++) {
        if (i > 0 || !has_format)
            put(h, ",");
        put_json_string(h, meta->keys[i]);
        put(h, ":");
        put_json_string(h, meta->vals[i]);
    }
    put(h, "}");
    uint64_t off = 0;
    for (int i = 0; i < vars->count; i++) {
        const NnTensor *t = vars->tensors[i];
        const char *dt = st_dtype(t->dtype);
        if (!dt)
            return nnrt_fail(NN_ERR_RUNTIME, "tensor '%s' has a dtype safetensors cannot hold",
                             vars->names[i]);
        put(h, ",");
        put_json_string(h, vars->names[i]);
        put(h, ":{\"dtype\":\"%s\",\"shape\":[", dt);
        for (int d = 0; d < t->rank; d++)
            put(h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        uint64_t n = nnrt_tensor_nbytes(t);
        put(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
            (unsigned long long)(off + n));
        off += n;
    }
    put(h, "}");
    while (!h->oom && h->len % 8 != 0)
        put(h, " ");
    return h->oom ? nnrt_fail(NN_ERR_NOMEM, "out of memory building a checkpoint header")
                  : NN_OK;
}

static bool write_all(FILE *f, const void *p, size_t n)
{
    return n == 0 || fwrite(p, 1, n, f) == n;
}

NnStatus nnrt_safetensors_save(const char *path, const NnVars *vars, const NnrtMeta *meta)
{
    Str h = {0};
    NnStatus st = build_header(vars, meta, &h);
    if (st != NN_OK) {
        free(h.p);
        return st;
    }
    NnrtSaveFile out;
    if ((st = nnrt_savefile_open(&out, path)) != NN_OK) {
        free(h.p);
        return st;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    bool ok = write_all(out.f, len8, 8) && write_all(out.f, h.p, h.len);
    for (int i = 0; ok && i < vars->count; i++)
        ok = write_all(out.f, vars->tensors[i]->data, nnrt_tensor_nbytes(vars->tensors[i]));
    free(h.p);
    return nnrt_savefile_commit(&out, ok, "checkpoint");
}

// ---- loading: a JSON reader over the header -------------------------------

typedef struct Json {
    const char *path;
    const char *s; // header text
    size_t n, pos;
    size_t base;   // file offset of s[0] (8)
    bool failed;
} Json;

static bool jerr(Json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool jerr(Json *j, const char *fmt, ...)
{
    if (j->failed)
        return false;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nnrt_fail(NN_ERR_FORMAT, "%s: malformed JSON header at byte %zu: %s", j->path,
              j->base + j->pos, msg);
    j->failed = true;
    return false;
}

static void ws(Json *j)
{
    while (j->pos < j->n && strchr(" \t\r\n", j->s[j->pos]))
        j->pos++;
}

static bool peek(Json *j, char c)
{
    ws(j);
    return j->pos < j->n && j->s[j->pos] == c;
}

static bool expect(Json *j, char c)
{
    if (!peek(j, c))
        return j->pos < j->n ? jerr(j, "expected '%c', found '%c'", c, j->s[j->pos])
                             : jerr(j, "expected '%c', found the end of the header", c);
    j->pos++;
    return true;
}

// A string value, unescaped into a new allocation (\uXXXX becomes UTF-8).
static bool jstring(Json *j, char **out)
{
    *out = NULL;
    if (!expect(j, '"'))
        return false;
    // Sized by this string's raw length, not the rest of the header: that
    // made a header of many tensors quadratic. Unescaping only shrinks it.
    size_t raw = j->pos;
    while (raw < j->n && j->s[raw] != '"')
        raw += j->s[raw] == '\\' ? 2 : 1;
    char *o = malloc((raw < j->n ? raw : j->n) - j->pos + 1);
    if (!o)
        return jerr(j, "out of memory");
    size_t k = 0;
    while (j->pos < j->n && j->s[j->pos] != '"') {
        unsigned char c = (unsigned char)j->s[j->pos++];
        if (c < 0x20) {
            free(o);
            return jerr(j, "control character in a string");
        }
        if (c != '\\') {
            o[k++] = (char)c;
            continue;
        }
        if (j->pos >= j->n)
            break;
        char e = j->s[j->pos++];
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *hit = e ? strchr(from, e) : NULL;
        if (hit) {
            o[k++] = to[hit - from];
        } else if (e == 'u' && j->pos + 4 <= j->n) {
            unsigned v = 0;
            for (int i = 0; i < 4; i++) {
                char h = j->s[j->pos++];
                int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                      : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                if (d < 0) {
                    free(o);
                    return jerr(j, "bad \\u escape");
                }
                v = v * 16 + (unsigned)d;
            }
            if (v < 0x80) {
                o[k++] = (char)v;
            } else if (v < 0x800) {
                o[k++] = (char)(0xC0 | v >> 6);
                o[k++] = (char)(0x80 | (v & 0x3F));
            } else {
                o[k++] = (char)(0xE0 | v >> 12);
                o[k++] = (char)(0x80 | ((v >> 6) & 0x3F));
                o[k++] = (char)(0x80 | (v & 0x3F));
            }
        } else {
            free(o);
            return jerr(j, "bad escape '\\%c' in a string", e);
        }
    }
    if (j->pos >= j->n) {
        free(o);
        return jerr(j, "unterminated string");
    }
    j->pos++;
    o[k] = 0;
    *out = o;
    return true;
}

static bool juint(Json *j, uint64_t *v)
{
    ws(j);
    size_t start = j->pos;
    *v = 0;
    while (j->pos < j->n && j->s[j->pos] >= '0' && j->s[j->pos] <= '9') {
        uint64_t d = (uint64_t)(j->s[j->pos++] - '0');
        if (*v > (UINT64_MAX - d) / 10) {
            j->pos = start;
            return jerr(j, "integer too large");
        }
        *v = *v * 10 + d;
    }
    if (j->pos == start)
        return jerr(j, "expected a non-negative integer");
    return true;
}

// Skips any JSON value (for keys we do not use).
static bool jskip(Json *j, int depth)
{
    if (depth > 32)
        return jerr(j, "nesting too deep");
    ws(j);
    if (j->pos >= j->n)
        return jerr(j, "expected a value, found the end of the header");
    char c = j->s[j->pos];
    if (c == '"') {
        char *s;
        bool ok = jstring(j, &s);
        free(s);
        return ok;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->pos++;
        if (peek(j, close)) {
            j->pos++;
            return true;
        }
        do {
            if (c == '{') {
                char *k;
                if (!jstring(j, &k))
                    return false;
                free(k);
                if (!expect(j, ':'))
                    return false;
            }
            if (!jskip(j, depth + 1))
                return false;
        } while (peek(j, ',') && ++j->pos);
        return expect(j, close);
    }
    size_t start = j->pos;
    while (j->pos < j->n && strchr("+-.0123456789eEtruefalsn", j->s[j->pos]))
        j->pos++;
    if (j->pos == start)
        return jerr(j, "unexpected character '%c'", c);
    return true;
}

// One tensor entry of the header, before validation.
typedef struct Entry {
    char *name;
    size_t key_at; // file offset of the name, for the duplicate message
    int index;     // position in the header
    NnDType dtype;
    int rank;
    int64_t shape[NN_MAX_RANK];
    uint64_t begin, end;
    size_t at; // file offset of the entry, for messages
} Entry;

static NnDType parse_dtype(Json *j, const char *name, const char *s, size_t at, bool *ok)
{
    static const char *known[] = {"F16", "BF16", "I8", "U8", "I16", "U16", "U32", "I64", "U64",
                                  "BOOL", "F8_E4M3", "F8_E5M2"};
    *ok = true;
    if (strcmp(s, "F32") == 0)
        return NN_DT_F32;
    if (strcmp(s, "F64") == 0)
        return NN_DT_F64;
    if (strcmp(s, "I32") == 0)
        return NN_DT_I32;
    *ok = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(s, known[i]) == 0) {
            nnrt_fail(NN_ERR_FORMAT, "%s: tensor '%s' at byte %zu has dtype %s, which is not "
                      "supported (F32, F64, I32)", j->path, name, at, s);
            return NN_DT_COUNT;
        }
    nnrt_fail(NN_ERR_FORMAT, "%s: tensor '%s' at byte %zu has unknown dtype '%s'", j->path, name,
              at, s);
    return NN_DT_COUNT;
}

static bool parse_uint_array(Json *j, uint64_t *v, int max, int *count)
{
    *count = 0;
    if (!expect(j, '['))
        return false;
    if (peek(j, ']')) {
        j->pos++;
        return true;
    }
    do {
        if (*count == max)
            return jerr(j, "array longer than %d", max);
        if (!juint(j, &v[(*count)++]))
            return false;
    } while (peek(j, ',') && ++j->pos);
    return expect(j, ']');
}

static bool parse_entry(Json *j, Entry *e)
{
    e->at = j->base + j->pos;
    if (!expect(j, '{'))
        return false;
    bool have_dt = false, have_shape = false, have_off = false;
    while (!peek(j, '}')) {
        char *key;
        if (!jstring(j, &key))
            return false;
        bool ok = expect(j, ':');
        if (ok && strcmp(key, "dtype") == 0) {
            char *dt;
            ok = jstring(j, &dt);
            if (ok) {
                e->dtype = parse_dtype(j, e->name, dt, e->at, &ok);
                j->failed = !ok;
                free(dt);
            }
            have_dt = ok;
        } else if (ok && strcmp(key, "shape") == 0) {
            uint64_t v[NN_MAX_RANK + 1];
            ok = parse_uint_array(j, v, NN_MAX_RANK, &e->rank);
            for (int d = 0; ok && d < e->rank; d++) {
                if (v[d] > ((uint64_t)1 << 40))
                    ok = jerr(j, "dimension %llu too large", (unsigned long long)v[d]);
                e->shape[d] = (int64_t)v[d];
            }
            have_shape = ok;
        } else if (ok && strcmp(key, "data_offsets") == 0) {
            uint64_t v[3];
            int n = 0;
            ok = parse_uint_array(j, v, 2, &n);
            if (ok && n != 2)
                ok = jerr(j, "data_offsets needs 2 numbers");
            e->begin = v[0];
            e->end = v[1];
            have_off = ok;
        } else if (ok) {
            ok = jskip(j, 0);
        }
        free(key);
        if (!ok)
            return false;
        if (!peek(j, ','))
            break;
        j->pos++;
    }
    if (!expect(j, '}'))
        return false;
    if (!have_dt || !have_shape || !have_off)
        return jerr(j, "tensor '%s' (at byte %zu) lacks '%s'", e->name, e->at,
                    !have_dt ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return true;
}

static bool parse_metadata(Json *j, NnrtMeta *meta)
{
    if (!expect(j, '{'))
        return false;
    while (!peek(j, '}')) {
        char *k = NULL, *v = NULL;
        bool ok = jstring(j, &k) && expect(j, ':');
        if (ok && peek(j, '"'))
            ok = jstring(j, &v);
        else if (ok)
            ok = jerr(j, "metadata value of '%s' is not a string", k);
        if (ok && meta && nnrt_meta_set(meta, k, v) != NN_OK)
            ok = jerr(j, "out of memory");
        free(k);
        free(v);
        if (!ok)
            return false;
        if (!peek(j, ','))
            break;
        j->pos++;
    }
    return expect(j, '}');
}

typedef struct Entries {
    Entry *e;
    int n, cap;
} Entries;

static void entries_free(Entries *es)
{
    for (int i = 0; i < es->n; i++)
        free(es->e[i].name);
    free(es->e);
}

static bool parse_header(Json *j, Entries *es, NnrtMeta *meta)
{
    if (!expect(j, '{'))
        return false;
    while (!peek(j, '}')) {
        size_t at = j->base + j->pos;
        char *key;
        if (!jstring(j, &key))
            return false;
        if (!expect(j, ':')) {
            free(key);
            return false;
        }
        if (strcmp(key, "__metadata__") == 0) {
            free(key);
            if (!parse_metadata(j, meta))
                return false;
        } else {
            if (es->n == INT_MAX) {
                free(key);
                return jerr(j, "too many tensors");
            }
            if (es->n == es->cap) {
                int cap = es->cap ? es->cap * 2 : 16;
                Entry *ne = realloc(es->e, (size_t)cap * sizeof *ne);
                if (!ne) {
                    free(key);
                    return jerr(j, "out of memory");
                }
                es->e = ne;
                es->cap = cap;
            }
            Entry *e = &es->e[es->n];
            memset(e, 0, sizeof *e);
            e->name = key;
            e->key_at = at;
            e->index = es->n++;
            if (!parse_entry(j, e))
                return false;
        }
        if (!peek(j, ','))
            break;
        j->pos++;
    }
    if (!expect(j, '}'))
        return false;
    ws(j);
    if (j->pos < j->n)
        return jerr(j, "unexpected text after the header object");
    return true;
}

static int cmp_name(const void *a, const void *b)
{
    const Entry *x = *(Entry *const *)a, *y = *(Entry *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

// Sorting by name finds duplicates in O(n log n); a scan per tensor made a
// header of 100,000 tensors take minutes. The second occurrence is reported.
static NnStatus check_unique(const char *path, const Entries *es)
{
    Entry **order = malloc(((size_t)es->n + 1) * sizeof *order);
    if (!order)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < es->n; i++)
        order[i] = &es->e[i];
    qsort(order, (size_t)es->n, sizeof *order, cmp_name);
    NnStatus st = NN_OK;
    for (int i = 1; i < es->n && st == NN_OK; i++)
        if (strcmp(order[i]->name, order[i - 1]->name) == 0)
            st = nnrt_fail(NN_ERR_FORMAT, "%s: malformed JSON header at byte %zu: tensor '%s' "
                           "appears twice", path, order[i]->key_at, order[i]->name);
    free(order);
    return st;
}

// ---- loading: validation and tensors ---------------------------------------

static int cmp_begin(const void *a, const void *b)
{
    const Entry *x = *(Entry *const *)a, *y = *(Entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static NnStatus check_offsets(const char *path, Entries *es, uint64_t data_start,
                              uint64_t data_len)
{
    for (int i = 0; i < es->n; i++) {
        Entry *e = &es->e[i];
        size_t want;
        if (!nnrt_shape_size(e->rank, e->shape, nnrt_dtype_size(e->dtype), NULL, &want))
            return nnrt_fail(NN_ERR_FORMAT, "%s: tensor '%s' at byte %zu: %s", path, e->name,
                             e->at, nnrt_errmsg());
        if (e->end < e->begin || e->end > data_len)
            return nnrt_fail(NN_ERR_FORMAT,
                             "%s: tensor '%s' at byte %zu: data_offsets [%llu, %llu] are outside "
                             "the data section (%llu bytes from byte %llu; the file may be "
                             "truncated)", path, e->name, e->at, (unsigned long long)e->begin,
                             (unsigned long long)e->end, (unsigned long long)data_len,
                             (unsigned long long)data_start);
        if (e->end - e->begin != want)
            return nnrt_fail(NN_ERR_FORMAT,
                             "%s: tensor '%s' at byte %zu: data_offsets [%llu, %llu] span %llu "
                             "bytes but its shape and dtype need %llu", path, e->name, e->at,
                             (unsigned long long)e->begin, (unsigned long long)e->end,
                             (unsigned long long)(e->end - e->begin), (unsigned long long)want);
    }
    Entry **order = malloc(((size_t)es->n + 1) * sizeof *order);
    if (!order)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < es->n; i++)
        order[i] = &es->e[i];
    qsort(order, (size_t)es->n, sizeof *order, cmp_begin);
    // The tensors must tile the data section: a gap or trailing bytes mean the
    // header and the data disagree (a header length one byte short, say,
    // shifts every weight), so reading on would load wrong numbers.
    NnStatus st = NN_OK;
    uint64_t end = 0;
    for (int i = 0; i < es->n && st == NN_OK; i++) {
        if (order[i]->begin > end)
            st = nnrt_fail(NN_ERR_FORMAT,
                           "%s: tensor '%s' at byte %zu: its data starts at %llu but the "
                           "previous tensor ends at %llu (a gap of %llu unused bytes at byte %llu)",
                           path, order[i]->name, order[i]->at, (unsigned long long)order[i]->begin,
                           (unsigned long long)end,
                           (unsigned long long)(order[i]->begin - end),
                           (unsigned long long)(data_start + end));
        else if (i > 0 && order[i]->begin < order[i - 1]->end)
            st = nnrt_fail(NN_ERR_FORMAT,
                           "%s: tensors '%s' and '%s' overlap in the data section (bytes %llu.."
                           "%llu and %llu..%llu, data starts at byte %llu)", path,
                           order[i - 1]->name, order[i]->name,
                           (unsigned long long)order[i - 1]->begin,
                           (unsigned long long)order[i - 1]->end,
                           (unsigned long long)order[i]->begin,
                           (unsigned long long)order[i]->end, (unsigned long long)data_start);
        else
            end = order[i]->end;
    }
    if (st == NN_OK && end != data_len)
        st = nnrt_fail(NN_ERR_FORMAT,
                       "%s: %llu unexpected bytes at byte %llu after the last tensor's data (the "
                       "header length or data_offsets are wrong)", path,
                       (unsigned long long)(data_len - end),
                       (unsigned long long)(data_start + end));
    free(order);
    return st;
}

// The loop-state keys this runtime writes must hold values it can resume
// from; "epoch": "-5" would otherwise resume at epoch -4.
static NnStatus check_meta(const char *path, const NnrtMeta *meta)
{
    static const struct { const char *key; long long lo, hi; } ints[] = {
        {"epoch", 0, INT_MAX}, {"step", 0, LLONG_MAX}, {"best_epoch", 0, INT_MAX},
        {"bad_epochs", 0, INT_MAX}, {"stopped_early", 0, 1},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        const char *s = nnrt_meta_get(meta, ints[i].key);
        long long v;
        if (s && (!nnrt_meta_get_int(meta, ints[i].key, &v) || v < ints[i].lo || v > ints[i].hi))
            return nnrt_fail(NN_ERR_FORMAT, "%s: metadata '%s' is \"%s\", expected an integer "
                             "in %lld..%lld", path, ints[i].key, s, ints[i].lo, ints[i].hi);
    }
    const char *bv = nnrt_meta_get(meta, "best_value");
    if (bv) {
        char *end;
        errno = 0;
        double v = strtod(bv, &end);
        // Infinite is the value before any epoch improved on it; NaN never is.
        if (!*bv || *end || isnan(v))
            return nnrt_fail(NN_ERR_FORMAT, "%s: metadata 'best_value' is \"%s\", expected a "
                             "number", path, bv);
    }
    return NN_OK;
}

// view: tensors whose data is aligned to their element size point into
// data (unowned) and are not checked for NaN or Inf.
static NnStatus make_tensors(const char *path, const Entries *es, const unsigned char *data,
                             uint64_t data_start, bool view, NnVars *out)
{
    for (int i = 0; i < es->n; i++) {
        const Entry *e = &es->e[i];
        const unsigned char *at = data + e->begin;
        bool in_place = view && (uintptr_t)at % nnrt_dtype_size(e->dtype) == 0;
        NnTensor *t = in_place ? nnrt_tensor_view(e->dtype, e->rank, e->shape, (void *)at)
                               : nnrt_tensor_new(e->dtype, e->rank, e->shape);
        if (!t)
            return nnrt_fail(NN_ERR_NOMEM, "%s: tensor '%s': %s", path, e->name, nnrt_errmsg());
        if (!in_place)
            memcpy(t->data, at, (size_t)(e->end - e->begin));
        // A NaN or Inf weight would only show up later as a "loss nan".
        for (int64_t k = 0; !view && t->dtype != NN_DT_I32 && k < t->numel; k++) {
            double v = nnrt_tensor_get(t, k);
            if (!isfinite(v)) {
                nnrt_tensor_free(t);
                return nnrt_fail(NN_ERR_FORMAT, "%s: tensor '%s' (at byte %zu) holds %s at "
                                 "element %lld (byte %llu)", path, e->name, e->at,
                                 isnan(v) ? "NaN" : "an infinity", (long long)k,
                                 (unsigned long long)(data_start + e->begin +
                                                      (uint64_t)k * nnrt_dtype_size(e->dtype)));
            }
        }
        // Names are unique (check_unique), so append without a lookup.
        NnStatus st = nnrt_vars_append(out, e->name, t);
        if (st != NN_OK) {
            nnrt_tensor_free(t);
            return st;
        }
    }
    return NN_OK;
}

// Parses a whole checkpoint held in buf (len bytes); path names it in messages.
static NnStatus parse_buffer(const char *path, const unsigned char *buf, size_t len, bool view,
                             NnVars *out, NnrtMeta *meta)
{
    NnStatus st = NN_OK;
    uint64_t hlen = 0;
    for (int i = 0; i < 8 && len >= 8; i++)
        hlen |= (uint64_t)buf[i] << (8 * i);
    Entries es = {0};
    if (len < 8)
        st = nnrt_fail(NN_ERR_FORMAT, "%s: truncated at byte %zu (expected an 8-byte header "
                       "length)", path, len);
    else if (hlen > MAX_HEADER || hlen > len - 8)
        st = nnrt_fail(NN_ERR_FORMAT, "%s: header length %llu at byte 0 goes beyond the end of "
                       "the file (%zu bytes)", path, (unsigned long long)hlen, len);
    if (st == NN_OK) {
        Json j = {.path = path, .s = (const char *)buf + 8, .n = (size_t)hlen, .base = 8};
        if (!parse_header(&j, &es, meta))
            st = NN_ERR_FORMAT;
    }
    if (st == NN_OK)
        st = check_unique(path, &es);
    if (st == NN_OK)
        st = check_offsets(path, &es, 8 + hlen, len - 8 - hlen);
    if (st == NN_OK && meta)
        st = check_meta(path, meta);
    if (st == NN_OK)
        st = make_tensors(path, &es, buf + 8 + hlen, 8 + hlen, view, out);
    entries_free(&es);
    if (st != NN_OK) {
        nnrt_vars_fini(out);
        if (meta)
            nnrt_meta_fini(meta);
    }
    return st;
}

NnStatus nnrt_safetensors_load(const char *path, NnVars *out, NnrtMeta *meta)
{
    nnrt_vars_init(out);
    if (meta)
        nnrt_meta_init(meta);
    unsigned char *buf = NULL;
    size_t len = 0;
    NnStatus st = nnrt_file_read_all(path, "checkpoint", MAX_FILE, (char **)&buf, &len);
    if (st != NN_OK)
        return st;
    st = parse_buffer(path, buf, len, false, out, meta);
    free(buf);
    return st;
}

NnStatus nnrt_safetensors_load_mem(const char *name, const void *buf, size_t len, NnVars *out,
                                   NnrtMeta *meta)
{
    nnrt_vars_init(out);
    if (meta)
        nnrt_meta_init(meta);
    return parse_buffer(name, buf, len, false, out, meta);
}

NnStatus nnrt_safetensors_view_mem(const char *name, const void *buf, size_t len, NnVars *out)
{
    nnrt_vars_init(out);
    return parse_buffer(name, buf, len, true, out, NULL);
}

// ---- comparing against a model ---------------------------------------------

static void shape_str(const NnTensor *t, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->rank && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

NnStatus nnrt_checkpoint_check(const char *path, const NnVars *loaded, const NnVars *expected)
{
    for (int i = 0; i < expected->count; i++) {
        const char *name = expected->names[i];
        const NnTensor *want = expected->tensors[i], *got = nnrt_vars_get(loaded, name);
        if (!got)
            return nnrt_fail(NN_ERR_SHAPE, "checkpoint '%s' does not match the model: it is "
                             "missing tensor '%s'", path, name);
        if (got->dtype != want->dtype)
            return nnrt_fail(NN_ERR_SHAPE, "checkpoint '%s' does not match the model: tensor "
                             "'%s' has dtype %s, the model expects %s", path, name,
                             nnrt_dtype_name(got->dtype), nnrt_dtype_name(want->dtype));
        if (!nnrt_tensor_same_shape(got, want)) {
            char a[160], b[160];
            shape_str(got, a, sizeof a);
            shape_str(want, b, sizeof b);
            return nnrt_fail(NN_ERR_SHAPE, "checkpoint '%s' does not match the model: tensor "
                             "'%s' has shape %s, the model expects %s", path, name, a, b);
        }
    }
    return NN_OK;
}

NnStatus nnrt_checkpoint_assign(const char *path, NnVars *dst, const NnVars *src)
{
    NnStatus st = nnrt_checkpoint_check(path, src, dst);
    if (st != NN_OK)
        return st;
    for (int i = 0; i < dst->count; i++)
        memcpy(dst->tensors[i]->data, nnrt_vars_get(src, dst->names[i])->data,
               nnrt_tensor_nbytes(dst->tensors[i]));
    return NN_OK;
}
