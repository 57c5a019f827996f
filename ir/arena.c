// Chunked bump allocator. Chunks grow geometrically; a request larger than a
// chunk gets a chunk of its own. Invariant: every pointer returned stays valid
// until nn_arena_free.
#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Chunk {
    struct Chunk *next;
    size_t size, used; // bytes in data[]
    _Alignas(16) unsigned char data[];
} Chunk;

struct NnArena {
    Chunk *head;
    size_t total;
};

static void oom(void)
{
    fputs("nnc: fatal: out of memory\n", stderr);
    abort();
}

NnArena *nn_arena_new(void)
{
    NnArena *a = calloc(1, sizeof *a);
    if (!a)
        oom();
    return a;
}

void nn_arena_free(NnArena *a)
{
    if (!a)
        return;
    for (Chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(a);
}

void *nn_arena_alloc(NnArena *a, size_t nbytes)
{
    size_t need = (nbytes + 15) & ~(size_t)15;
    if (need == 0)
        need = 16;
    Chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t size = c ? c->size * 2 : 64 * 1024;
        if (size > 16u << 20)
            size = 16u << 20;
        if (size < need)
            size = need;
        c = malloc(sizeof *c + size);
        if (!c)
            oom();
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->total += need;
    memset(p, 0, need);
    return p;
}

char *nn_arena_strndup(NnArena *a, const char *s, size_t n)
{
    char *p = nn_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *nn_arena_strdup(NnArena *a, const char *s) { return nn_arena_strndup(a, s, strlen(s)); }

char *nn_arena_printf(NnArena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = nn_arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

size_t nn_arena_used(const NnArena *a) { return a->total; }
