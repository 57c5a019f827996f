// Table-driven handling of NnAttr (ir/attr.c): what an op's attributes are
// comes from ops.def's attrs column, how each is treated from ir/attrs.def.
#ifndef NN_ATTR_H
#define NN_ATTR_H

#include <stdio.h>

#include "graph.h"

// Hash and equality over the attributes op uses (bodies compare by identity).
uint64_t nn_attr_hash(NnOp op, const NnAttr *a);
bool nn_attr_eq(NnOp op, const NnAttr *a, const NnAttr *b);
// Prints " label=value" for every attribute n's op uses that the dump does not
// show otherwise (name, type and body are printed by nn_ir_print itself).
void nn_attr_print(FILE *out, const NnNode *n);
// The attributes op uses, strings and bodies copied into dst's arena; the rest
// zero.
NnAttr nn_attr_copy(NnGraph *dst, NnOp op, const NnAttr *a);
// False, with a message, when n sets an attribute its op does not use.
bool nn_attr_check(const NnNode *n, char *msg, size_t len);

#endif
