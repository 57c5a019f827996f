// Kernels that differ only in the buffers they use are compiled once. A
// kernel `void k(ptr bufs, i32 ith, i32 nth)` reaches its buffers through
// loads of bufs[slot] in its entry block and nowhere else, so two kernels
// whose printed bodies agree once those slot numbers are blanked out compute
// the same thing on different buffers (a recurrent layer's three gates, the
// equal-shape parameters' updates, bias sums of equal size). The first of
// such a group keeps its body; each other becomes a few loads and stores
// that lay its own buffers out where the first's slots are, and a call of
// the first (a few nanoseconds per call). Same name and signature, so the
// step and its descriptor are unchanged. Measured on the MLP, LeNet-5 and
// GRU steps: docs/threads.md "JIT compile time (session 8)".
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn_llvm.h"

typedef struct Kern {
    LLVMValueRef f;
    char *text;     // the body printed, slot numbers and metadata ids blanked
    uint64_t hash;
    int nslot;      // its entry block's bufs[slot] loads, in order
    int64_t *slot;
    int order;      // among the kernels, in module order
    bool twin;      // its shape hash meets another's
} Kern;

static const char SLOT_GEP[] = "getelementptr inbounds ptr, ptr %0, i64 ";

// A wrapper's table of pointers lives on its stack: at most 32 KB.
enum { MAX_SLOT = 4095 };

// Code generation costs about 2 ms per function however small (the MLP
// step's light kernels, NN_JIT_TIMES), so a wrapper costs as much as a
// light body of a few dozen instructions: light bodies are shared from this
// size on (none of the MLP's; a GRU step's slices, bias sums and updates),
// full-pipeline ones (products, their packing) whatever their size.
enum { MIN_LIGHT_BODY = 100 };

int64_t nn_llvm_fn_insts(LLVMValueRef f)
{
    int64_t n = 0;
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i))
            n++;
    return n;
}

// The entry block's GEPs off bufs, if bufs (param 0) has no other use and
// each has one constant index; false otherwise (the kernel is left alone).
static bool slots_of(Kern *k)
{
    LLVMValueRef bufs = LLVMGetParam(k->f, 0);
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(k->f);
    int n = 0;
    for (LLVMUseRef u = LLVMGetFirstUse(bufs); u; u = LLVMGetNextUse(u))
        n++;
    k->slot = malloc(((size_t)n + 1) * sizeof *k->slot);
    if (!k->slot)
        return false;
    for (LLVMValueRef i = LLVMGetFirstInstruction(entry); i; i = LLVMGetNextInstruction(i)) {
        if (!LLVMIsAGetElementPtrInst(i) || LLVMGetOperand(i, 0) != bufs)
            continue;
        LLVMValueRef idx = LLVMGetOperand(i, 1);
        if (LLVMGetNumOperands(i) != 2 || !LLVMIsAConstantInt(idx) || k->nslot == n ||
            LLVMConstIntGetSExtValue(idx) > MAX_SLOT)
            return false;
        k->slot[k->nslot++] = LLVMConstIntGetSExtValue(idx);
    }
    return k->nslot == n; // every use is one of these
}

// The body of f printed (or def, where the module's print has it), without
// its define line, with the digits after
// SLOT_GEP and after each '!' removed (loop ids are numbered module-wide),
// followed by each loop id's operand count (unroll or not), so that equal
// text means equal code.
static char *canonical(LLVMValueRef f, const char *def)
{
    char *s = def ? NULL : LLVMPrintValueToString(f);
    const char *p = strstr(def ? def : s, "{\n"), *end = p ? strstr(p, "\n}") : NULL;
    size_t cap = (p && end ? (size_t)(end - p) : 0) + 256, o = 0;
    char *t = p && end ? malloc(cap) : NULL;
    if (!t) {
        if (s)
            LLVMDisposeMessage(s);
        return NULL;
    }
    size_t gl = sizeof SLOT_GEP - 1;
    for (p += 2; p < end;) {
        if (!strncmp(p, SLOT_GEP, gl)) {
            memcpy(t + o, p, gl);
            o += gl;
            p += gl;
            while (*p >= '0' && *p <= '9')
                p++;
        } else if (*p == '!' && p[1] >= '0' && p[1] <= '9') {
            t[o++] = *p++;
            while (*p >= '0' && *p <= '9')
                p++;
        } else {
            t[o++] = *p++;
        }
    }
    if (s)
        LLVMDisposeMessage(s);
    unsigned kind = LLVMGetMDKindIDInContext(LLVMGetTypeContext(LLVMTypeOf(f)), "llvm.loop", 9);
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb)) {
        LLVMValueRef term = LLVMGetBasicBlockTerminator(bb);
        LLVMValueRef md = term ? LLVMGetMetadata(term, kind) : NULL;
        if (!md)
            continue;
        if (o + 16 >= cap) {
            char *g = realloc(t, cap *= 2);
            if (!g) {
                free(t);
                return NULL;
            }
            t = g;
        }
        o += (size_t)snprintf(t + o, cap - o, "|%u", LLVMGetMDNodeNumOperands(md));
    }
    t[o] = 0;
    return t;
}

// Where the module's print defines f, searching from *at on (definitions
// are printed in module order), or NULL.
static const char *find_def(const char **at, LLVMValueRef f)
{
    size_t len;
    const char *name = LLVMGetValueName2(f, &len);
    for (const char *d = strstr(*at, "\ndefine "); d; d = strstr(d + 1, "\ndefine ")) {
        const char *eol = strchr(d + 1, '\n'), *a = strchr(d + 1, '@');
        if (a && eol && a < eol && !strncmp(a + 1, name, len) && a[1 + len] == '(') {
            *at = a + 1 + len;
            return *at;
        }
    }
    return NULL;
}

static int by_order(const void *a, const void *b)
{
    const Kern *const *x = a, *const *y = b;
    return (*x)->order - (*y)->order;
}

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 1099511628211ull; }

// A cheap hash of f's shape (opcodes, types, constants; not the slot
// numbers): only kernels whose hashes meet are printed and compared, since
// printing a function numbers the whole module's metadata each time.
static uint64_t shape_hash(LLVMValueRef f)
{
    uint64_t h = 1469598103934665603ull;
    LLVMValueRef bufs = LLVMGetParam(f, 0);
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb)) {
        h = mix(h, 0xbb);
        for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i)) {
            h = mix(h, (uint64_t)LLVMGetInstructionOpcode(i));
            h = mix(h, (uint64_t)(uintptr_t)LLVMTypeOf(i));
            int n = LLVMGetNumOperands(i);
            h = mix(h, (uint64_t)n);
            bool slot = LLVMIsAGetElementPtrInst(i) && LLVMGetOperand(i, 0) == bufs;
            for (int k = slot ? 2 : 0; k < n; k++) {
                LLVMValueRef v = LLVMGetOperand(i, k);
                // Constants (and callees) are unique per context: their
                // address names their value.
                h = mix(h, LLVMIsAConstant(v) ? (uint64_t)(uintptr_t)v : 1);
            }
        }
    }
    return h;
}

// Empties dup and makes it lay out its buffers where body's slots are, in a
// table as large as body's highest slot, then call body with the table.
static void make_wrapper(LLVMModuleRef m, const Kern *body, const Kern *dup)
{
    LLVMContextRef ctx = LLVMGetModuleContext(m);
    LLVMBasicBlockRef bb;
    while ((bb = LLVMGetFirstBasicBlock(dup->f)))
        LLVMDeleteBasicBlock(bb);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0), i64 = LLVMInt64TypeInContext(ctx);
    int64_t top = 0;
    for (int k = 0; k < body->nslot; k++)
        top = body->slot[k] > top ? body->slot[k] : top;
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, dup->f, "entry"));
    LLVMValueRef tab = LLVMBuildArrayAlloca(b, ptr, LLVMConstInt(i64, (unsigned long long)top + 1, 0),
                                            "slots");
    LLVMValueRef bufs = LLVMGetParam(dup->f, 0);
    for (int k = 0; k < body->nslot; k++) {
        LLVMValueRef from = LLVMConstInt(i64, (unsigned long long)dup->slot[k], 0);
        LLVMValueRef to = LLVMConstInt(i64, (unsigned long long)body->slot[k], 0);
        LLVMValueRef v = LLVMBuildLoad2(b, ptr, LLVMBuildInBoundsGEP2(b, ptr, bufs, &from, 1, ""), "");
        LLVMBuildStore(b, v, LLVMBuildInBoundsGEP2(b, ptr, tab, &to, 1, ""));
    }
    LLVMValueRef args[3] = {tab, LLVMGetParam(dup->f, 1), LLVMGetParam(dup->f, 2)};
    LLVMBuildCall2(b, LLVMGlobalGetValueType(body->f), body->f, args, 3, "");
    LLVMBuildRetVoid(b);
    LLVMDisposeBuilder(b);
    const char *light = NN_LLVM_LIGHT;
    LLVMAddAttributeAtIndex(dup->f, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(ctx, light, (unsigned)strlen(light), "", 0));
}

static int by_hash(const void *a, const void *b)
{
    const Kern *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash ? 1 : 0;
}

int nn_llvm_dedupe(LLVMModuleRef m)
{
    const char *off = getenv("NN_JIT_DEDUPE");
    if (off && !strcmp(off, "0"))
        return 0;
    int n = 0, cap = 0, shared = 0;
    Kern *ks = NULL;
    LLVMContextRef ctx = LLVMGetModuleContext(m);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0), i32 = LLVMInt32TypeInContext(ctx);
    LLVMTypeRef kt_params[3] = {ptr, i32, i32};
    LLVMTypeRef kt = LLVMFunctionType(LLVMVoidTypeInContext(ctx), kt_params, 3, 0);
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f) || LLVMGlobalGetValueType(f) != kt)
            continue;
        if (LLVMGetStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, NN_LLVM_LIGHT,
                                          (unsigned)strlen(NN_LLVM_LIGHT)) &&
            nn_llvm_fn_insts(f) < MIN_LIGHT_BODY)
            continue;
        if (n == cap) {
            Kern *g = realloc(ks, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *ks);
            if (!g)
                goto done;
            ks = g;
        }
        Kern *k = &ks[n];
        *k = (Kern){.f = f};
        if (!slots_of(k)) {
            free(k->slot);
            continue;
        }
        n++;
    }
    if (n < 2)
        goto done; // nothing to share (and ks may be NULL)
    for (int i = 0; i < n; i++) {
        ks[i].hash = shape_hash(ks[i].f);
        ks[i].order = i;
    }
    qsort(ks, (size_t)n, sizeof *ks, by_hash);
    int ntwin = 0;
    for (int i = 0; i < n; i++) {
        ks[i].twin = (i > 0 && ks[i - 1].hash == ks[i].hash) ||
                     (i + 1 < n && ks[i + 1].hash == ks[i].hash);
        ntwin += ks[i].twin;
    }
    // Printing a function numbers the whole module's metadata: for more
    // than a few, one print of the module is cheaper (a GRU step: 38 ms ->
    // 8 ms).
    Kern **tw = ntwin > 8 ? malloc((size_t)ntwin * sizeof *tw) : NULL;
    char *mod = tw ? LLVMPrintModuleToString(m) : NULL;
    if (mod) {
        int t = 0;
        for (int i = 0; i < n; i++)
            if (ks[i].twin)
                tw[t++] = &ks[i];
        qsort(tw, (size_t)t, sizeof *tw, by_order);
        const char *at = mod;
        for (int i = 0; i < t; i++)
            tw[i]->text = canonical(tw[i]->f, find_def(&at, tw[i]->f));
        LLVMDisposeMessage(mod);
    } else {
        for (int i = 0; i < n; i++)
            ks[i].text = ks[i].twin ? canonical(ks[i].f, NULL) : NULL;
    }
    free(tw);
    // Equal hashes are next to each other; within them the text decides.
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && ks[j].hash == ks[i].hash)
            j++;
        for (int a = i; a < j; a++) {
            if (!ks[a].text)
                continue; // already made a wrapper
            for (int c = a + 1; c < j; c++)
                if (ks[c].text && ks[c].nslot == ks[a].nslot && !strcmp(ks[c].text, ks[a].text)) {
                    make_wrapper(m, &ks[a], &ks[c]);
                    free(ks[c].text);
                    ks[c].text = NULL;
                    shared++;
                }
        }
        i = j;
    }
done:
    for (int i = 0; i < n; i++) {
        free(ks[i].text);
        free(ks[i].slot);
    }
    free(ks);
    return shared;
}
