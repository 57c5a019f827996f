// Op names, arities, flags and attribute sets, read from ops.def.
#include "op.h"

#include <string.h>

static const struct {
    const char *name;
    int arity;
    unsigned flags;
    unsigned attrs;
} table[NN_OP_COUNT] = {
#define NN_OP(tag, name, arity, flags, attrs) [NN_OP_##tag] = {#name, arity, flags, attrs},
#include "ops.def"
#undef NN_OP
};

const char *nn_op_name(NnOp op) { return op < NN_OP_COUNT ? table[op].name : "?"; }
int nn_op_arity(NnOp op) { return table[op].arity; }
unsigned nn_op_flags(NnOp op) { return table[op].flags; }
unsigned nn_op_attrs(NnOp op) { return table[op].attrs; }
bool nn_op_has(NnOp op, unsigned flag) { return (table[op].flags & flag) != 0; }

NnOp nn_op_lookup(const char *name)
{
    for (int i = 0; i < NN_OP_COUNT; i++)
        if (strcmp(table[i].name, name) == 0)
            return (NnOp)i;
    return NN_OP_COUNT;
}
