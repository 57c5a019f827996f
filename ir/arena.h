// NnArena: bump allocation for AST, IR and interned strings. Memory lives until
// nn_arena_free releases the whole arena in one call; nothing is freed singly.
// Running out of memory is fatal here (prints "out of memory" and aborts):
// arenas hold compiler data, never user data, and are small.
#ifndef NN_ARENA_H
#define NN_ARENA_H

#include <stddef.h>

typedef struct NnArena NnArena;

NnArena *nn_arena_new(void);
void nn_arena_free(NnArena *a);
// Zero-filled, 16-byte aligned.
void *nn_arena_alloc(NnArena *a, size_t nbytes);
char *nn_arena_strdup(NnArena *a, const char *s);
char *nn_arena_strndup(NnArena *a, const char *s, size_t n);
char *nn_arena_printf(NnArena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Bytes handed out so far (tests and --verbose use it).
size_t nn_arena_used(const NnArena *a);

#endif
