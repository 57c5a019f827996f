// Attributes by table: printing, hashing, comparing, copying and checking a
// node's NnAttr, each driven by ops.def's attrs column and the kinds in
// ir/attrs.def. A new attribute is one row there plus its field in NnAttr; no
// pass keeps its own list, so two nodes that differ in any declared attribute
// can never be merged, and every declared attribute shows in the dump.
#include "attr.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "pass.h"

typedef enum Kind {
    STR, F64, SHAPE, DTYPE, PERM, AXES, FLAG, INT, I64, U64,
    RANKED, // int64_t per axis of the node's shape
    CONV,   // NnConv2d
    BODY,
} Kind;

static const struct {
    Kind kind;
    size_t off, size;
    const char *label;
} attrs[NN_ATI_COUNT] = {
#define NN_ATTR(tag, field, k, lab)                                                                \
    [NN_ATI_##tag] = {k, offsetof(NnAttr, field), sizeof(((NnAttr *)0)->field), lab},
#include "attrs.def"
#undef NN_ATTR
};

static const void *field(const NnAttr *a, int k) { return (const char *)a + attrs[k].off; }

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

// Shapes compare by their rank's dims only (NnShape has padding); every other
// kind but strings and bodies is a padding-free field compared bytewise.
uint64_t nn_attr_hash(NnOp op, const NnAttr *a)
{
    uint64_t h = 0;
    unsigned used = nn_op_attrs(op);
    for (int k = 0; k < NN_ATI_COUNT; k++) {
        if (!(used & (1u << k)) || attrs[k].kind == STR || attrs[k].kind == BODY)
            continue;
        if (attrs[k].kind == SHAPE) {
            h = mix(h, (uint64_t)a->shape.rank);
            for (int i = 0; i < a->shape.rank && i < NN_MAX_RANK; i++)
                h = mix(h, (uint64_t)a->shape.dim[i]);
            continue;
        }
        const unsigned char *p = field(a, k);
        for (size_t i = 0; i < attrs[k].size; i++)
            h = mix(h, p[i]);
    }
    return h;
}

bool nn_attr_eq(NnOp op, const NnAttr *a, const NnAttr *b)
{
    unsigned used = nn_op_attrs(op);
    for (int k = 0; k < NN_ATI_COUNT; k++) {
        if (!(used & (1u << k)))
            continue;
        switch (attrs[k].kind) {
        case STR: {
            const char *x = *(const char *const *)field(a, k), *y = *(const char *const *)field(b, k);
            if (x != y && (!x || !y || strcmp(x, y)))
                return false;
            break;
        }
        case SHAPE:
            if (!nn_shape_eq(&a->shape, &b->shape))
                return false;
            break;
        case BODY:
            if (a->body != b->body)
                return false;
            break;
        default:
            if (memcmp(field(a, k), field(b, k), attrs[k].size) != 0)
                return false;
        }
    }
    return true;
}

static void print_ints(FILE *out, const char *label, const int *v, int n)
{
    fprintf(out, " %s=[", label);
    for (int i = 0; i < n; i++)
        fprintf(out, "%s%d", i ? ", " : "", v[i]);
    fputc(']', out);
}

static void print_conv(FILE *out, const NnConv2d *c)
{
    print_ints(out, "kernel", c->kernel, 2);
    print_ints(out, "stride", c->stride, 2);
    print_ints(out, "dilation", c->dilation, 2);
    print_ints(out, "pad", c->pad, 4);
    fprintf(out, " groups=%d", c->groups);
    if (c->outpad[0] || c->outpad[1])
        print_ints(out, "outpad", c->outpad, 2);
}

static void print_one(FILE *out, const NnNode *n, int k)
{
    const NnAttr *a = &n->attr;
    const char *l = attrs[k].label;
    const void *p = field(a, k);
    switch (attrs[k].kind) {
    case F64:
        fprintf(out, *l ? " %s=%.9g" : "%s %.9g", l, *(const double *)p);
        break;
    case PERM: print_ints(out, l, a->perm, n->shape.rank); break;
    case AXES:
        fprintf(out, " %s=[", l);
        for (int i = 0, first = 1; i < 32; i++)
            if ((a->axes >> i) & 1) {
                fprintf(out, "%s%d", first ? "" : ", ", i);
                first = 0;
            }
        fputc(']', out);
        break;
    case FLAG:
        if (*(const bool *)p)
            fprintf(out, " %s", l);
        break;
    case INT: fprintf(out, " %s=%d", l, *(const int *)p); break;
    case I64: fprintf(out, " %s=%lld", l, (long long)*(const int64_t *)p); break;
    case U64: fprintf(out, " %s=%llu", l, (unsigned long long)*(const uint64_t *)p); break;
    case RANKED: {
        const int64_t *v = p;
        fprintf(out, " %s=[", l);
        // PAD's lo/hi have one entry per axis of its input, the same rank.
        for (int i = 0; i < n->shape.rank; i++)
            fprintf(out, "%s%lld", i ? ", " : "", (long long)v[i]);
        fputc(']', out);
        break;
    }
    case CONV: print_conv(out, &a->conv); break;
    case STR: {
        const char *s = *(const char *const *)p;
        fprintf(out, *l ? " %s=%s" : "%s %s", l, s ? s : "");
        break;
    }
    default: NN_UNREACHABLE();
    }
}

void nn_attr_print(FILE *out, const NnNode *n)
{
    unsigned used = nn_op_attrs(n->op);
    for (int k = 0; k < NN_ATI_COUNT; k++)
        if ((used & (1u << k)) && attrs[k].label)
            print_one(out, n, k);
}

NnAttr nn_attr_copy(NnGraph *dst, NnOp op, const NnAttr *a)
{
    NnAttr c = {0};
    unsigned used = nn_op_attrs(op);
    for (int k = 0; k < NN_ATI_COUNT; k++) {
        if (!(used & (1u << k)))
            continue;
        switch (attrs[k].kind) {
        case STR: {
            const char *s = *(const char *const *)field(a, k);
            *(const char **)((char *)&c + attrs[k].off) = s ? nn_arena_strdup(dst->arena, s) : NULL;
            break;
        }
        case BODY:
            if (a->body) {
                c.body = nn_graph_new_child(dst);
                nn_graph_copy_into(c.body, a->body);
            }
            break;
        default: memcpy((char *)&c + attrs[k].off, field(a, k), attrs[k].size);
        }
    }
    return c;
}

static bool is_zero(const NnAttr *a, int k)
{
    if (attrs[k].kind == SHAPE) {
        for (int i = 0; i < NN_MAX_RANK; i++)
            if (a->shape.dim[i])
                return false;
        return a->shape.rank == 0;
    }
    const unsigned char *p = field(a, k);
    for (size_t i = 0; i < attrs[k].size; i++)
        if (p[i])
            return false;
    return true;
}

bool nn_attr_check(const NnNode *n, char *msg, size_t len)
{
    unsigned used = nn_op_attrs(n->op);
    // Fields shared by several rows are in use when any of those rows is.
    for (int k = 0; k < NN_ATI_COUNT; k++) {
        if (used & (1u << k))
            continue;
        bool shared = false;
        for (int j = 0; j < NN_ATI_COUNT; j++)
            shared |= (used & (1u << j)) && attrs[j].off == attrs[k].off;
        if (shared || is_zero(&n->attr, k))
            continue;
        static const char *const names[NN_ATI_COUNT] = {
#define NN_ATTR(tag, f, kind, label) [NN_ATI_##tag] = #f,
#include "attrs.def"
#undef NN_ATTR
        };
        snprintf(msg, len, "attribute '%s' is set but %s does not use it", names[k],
                 nn_op_name(n->op));
        return false;
    }
    return true;
}
