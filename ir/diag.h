// Source files, locations and diagnostics. Every user-facing error carries an
// NnLoc; nn_diag_render prints it as
//   file:line:col: error: message
//      12 |   h = dense(img, 128)
//         |             ^~~
// Phases add diagnostics and keep going; only main() turns them into an exit code.
#ifndef NN_DIAG_H
#define NN_DIAG_H

#include <stdbool.h>
#include <stdio.h>

#include "arena.h"

typedef struct NnSource {
    const char *name; // as the user gave it, e.g. "examples/xor.nn"
    const char *text; // whole file, NUL-terminated (embedded NULs are lexed as errors)
    size_t len;       // bytes in text, excluding the terminator
} NnSource;

typedef struct NnLoc {
    const NnSource *src; // NULL for compiler-made nodes with no source position
    int line, col;       // 1-based; col counts bytes
    int len;             // caret width in bytes, >= 1 when src is set
} NnLoc;

typedef enum NnDiagKind { NN_DIAG_ERROR, NN_DIAG_WARNING, NN_DIAG_NOTE } NnDiagKind;

typedef struct NnDiag {
    NnDiagKind kind;
    NnLoc loc;
    const char *msg;
} NnDiag;

// Collected diagnostics. Rendering happens as they are added when out != NULL,
// so a crash later cannot swallow them; tests set out = NULL and inspect items.
typedef struct NnDiags {
    NnArena *arena;
    NnDiag *items;
    int count, cap;
    int nerrors;
    int max_errors; // further errors are counted but not stored/printed; 0 = 50
    FILE *out;      // where to render, or NULL
    bool color;     // ANSI colors (only when out is a terminal)
} NnDiags;

void nn_diags_init(NnDiags *d, NnArena *arena, FILE *out);
void nn_diag_add(NnDiags *d, NnDiagKind kind, NnLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define nn_error(d, loc, ...) nn_diag_add((d), NN_DIAG_ERROR, (loc), __VA_ARGS__)
#define nn_note(d, loc, ...) nn_diag_add((d), NN_DIAG_NOTE, (loc), __VA_ARGS__)
// True once further errors would only be counted, so callers can skip costly
// hints ("did you mean") for messages nobody will see.
bool nn_diags_full(const NnDiags *d);
void nn_diag_render(FILE *out, const NnDiag *dg, bool color);
// All diagnostics rendered to one arena string (tests compare it).
const char *nn_diags_text(NnDiags *d);

// Reads a whole file into the arena. On failure returns NULL and adds an error
// (with a NULL-source location) naming the file and the reason; anything but a
// regular file of at most NN_SOURCE_MAX bytes is refused.
#define NN_SOURCE_MAX ((size_t)256 << 20)
NnSource *nn_source_load(NnArena *a, NnDiags *d, const char *path);
NnSource *nn_source_from_string(NnArena *a, const char *name, const char *text);

// Our bugs: print "internal error: file.c:123: cond" and abort.
#define NN_ASSERT(c) ((c) ? (void)0 : nn_internal_error(__FILE__, __LINE__, #c))
#define NN_UNREACHABLE() nn_internal_error(__FILE__, __LINE__, "unreachable")
_Noreturn void nn_internal_error(const char *file, int line, const char *what);

#endif
