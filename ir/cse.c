// Common subexpression elimination by hash-consing: a node with the same op,
// type, inputs and attributes as an earlier node becomes that node.
// requires: a verified graph. provides: no two nodes compute the same value by
// the same op. COMMUTE ops compare operands as a set (add(a,b) == add(b,a)).
// INPUT nodes are positional and never merged; FUSED nodes compare by body
// identity (never equal). RAND_*/DROPOUT merge only with the same seed and the
// same step input, where they draw exactly the same numbers anyway. Attributes
// compare by the op table (ir/attr.c): every attribute the op declares counts.
#include "attr.h"
#include "pass.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

// Operands in comparison order: sorted for binary commutative ops.
static void operands(const NnNode *n, NnId out[2])
{
    out[0] = n->in[0];
    out[1] = n->in[1];
    if (out[0] > out[1]) {
        NnId t = out[0];
        out[0] = out[1];
        out[1] = t;
    }
}

static bool commutes(const NnNode *n) { return n->nin == 2 && nn_op_has(n->op, NN_OPF_COMMUTE); }

static uint64_t hash_node(const NnNode *n)
{
    uint64_t h = mix((uint64_t)n->op, (uint64_t)n->dtype);
    for (int i = 0; i < n->shape.rank; i++)
        h = mix(h, (uint64_t)n->shape.dim[i]);
    if (commutes(n)) {
        NnId o[2];
        operands(n, o);
        h = mix(mix(h, (uint64_t)o[0]), (uint64_t)o[1]);
    } else {
        for (int k = 0; k < n->nin; k++)
            h = mix(h, (uint64_t)n->in[k]);
    }
    return mix(h, nn_attr_hash(n->op, &n->attr));
}

static bool same_node(const NnNode *a, const NnNode *b)
{
    if (a->op != b->op || a->dtype != b->dtype || a->nin != b->nin ||
        !nn_shape_eq(&a->shape, &b->shape) || !nn_attr_eq(a->op, &a->attr, &b->attr))
        return false;
    if (commutes(a)) {
        NnId x[2], y[2];
        operands(a, x);
        operands(b, y);
        return x[0] == y[0] && x[1] == y[1];
    }
    for (int k = 0; k < a->nin; k++)
        if (a->in[k] != b->in[k])
            return false;
    return true;
}

static bool mergeable(const NnNode *n) { return n->op != NN_OP_INPUT && n->op != NN_OP_FUSED; }

NnGraph *nn_pass_cse(NnGraph *g)
{
    // Open addressing over new ids; the table is at least twice the node count.
    size_t cap = 16;
    while (cap < 2 * (size_t)g->count)
        cap *= 2;
    NnId *table = malloc(cap * sizeof *table);
    NN_ASSERT(table);
    for (size_t i = 0; i < cap; i++)
        table[i] = -1;
    NnRewrite rw;
    nn_rewrite_begin(&rw, g);
    for (int i = 0; i < g->count; i++) {
        NnId id = nn_rewrite_copy(&rw, i);
        const NnNode *n = &rw.g->nodes[id];
        if (!mergeable(n))
            continue;
        size_t slot = hash_node(n) & (cap - 1);
        for (; table[slot] >= 0; slot = (slot + 1) & (cap - 1))
            if (same_node(&rw.g->nodes[table[slot]], n))
                break;
        if (table[slot] < 0) {
            table[slot] = id;
            continue;
        }
        // A duplicate: it is the last node of the new graph, so drop it again.
        rw.map[i] = table[slot];
        rw.g->count--;
        rw.changed = true;
    }
    free(table);
    return nn_rewrite_end(&rw);
}
