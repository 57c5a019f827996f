// Object emission for ahead-of-time builds (backend/aot.h): the JIT's
// lowering and O2 pipeline with an LLVM TargetMachine for the chosen target
// instead of the ORC session, writing a relocatable (PIC) object. Each call
// uses its own LLVM context, so the driver may compile steps in parallel.
#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aot.h"
#include "nn_llvm.h"
#include "pass.h"

static pthread_once_t all_once = PTHREAD_ONCE_INIT;

// Every target LLVM was built with, for cross-compilation.
static void init_all(void)
{
    LLVMInitializeAllTargetInfos();
    LLVMInitializeAllTargets();
    LLVMInitializeAllTargetMCs();
    LLVMInitializeAllAsmPrinters();
}

static bool host_is_x86(void)
{
    char *triple = LLVMGetDefaultTargetTriple();
    bool x86 = strncmp(triple, "x86_64", 6) == 0;
    LLVMDisposeMessage(triple);
    return x86;
}

bool nn_aot_target_parse(const char *spec, NnAotTarget *t)
{
    memset(t, 0, sizeof *t);
    nn_llvm_host_cpu(); // initializes the native target
    pthread_once(&all_once, init_all);
    char *host = LLVMGetDefaultTargetTriple();
    snprintf(t->triple, sizeof t->triple, "%s", host);
    LLVMDisposeMessage(host);
    if (!spec || !strcmp(spec, "native")) {
        snprintf(t->cpu, sizeof t->cpu, "%s", nn_llvm_host_cpu());
        snprintf(t->features, sizeof t->features, "%s", nn_llvm_host_features());
        t->host = true;
        return true;
    }
    if (!strcmp(spec, "x86-64") || !strcmp(spec, "x86-64-v2") || !strcmp(spec, "x86-64-v3") ||
        !strcmp(spec, "x86-64-v4")) {
        if (!host_is_x86()) {
            nnrt_fail(NN_ERR_RUNTIME, "--target %s: this machine is not x86-64; give a triple "
                      "such as x86_64-linux-gnu", spec);
            return false;
        }
        snprintf(t->cpu, sizeof t->cpu, "%s", spec);
        t->host = true;
        return true;
    }
    char *norm = LLVMNormalizeTargetTriple(spec), *err = NULL;
    LLVMTargetRef tg;
    bool ok = strchr(spec, '-') && !LLVMGetTargetFromTriple(norm, &tg, &err);
    if (!ok) {
        nnrt_fail(NN_ERR_RUNTIME, "--target '%s': %s; use native, x86-64, x86-64-v2, x86-64-v3, "
                  "x86-64-v4 or an LLVM triple such as aarch64-linux-gnu", spec,
                  err ? err : "not a target name or triple");
    } else {
        snprintf(t->triple, sizeof t->triple, "%s", norm);
        snprintf(t->cpu, sizeof t->cpu, "generic");
        char *h = LLVMGetDefaultTargetTriple(), *hn = LLVMNormalizeTargetTriple(h);
        t->host = strcmp(hn, norm) == 0;
        LLVMDisposeMessage(h);
        LLVMDisposeMessage(hn);
    }
    LLVMDisposeMessage(err);
    LLVMDisposeMessage(norm);
    return ok;
}

static bool has_fused(const NnGraph *g)
{
    for (NnId i = 0; i < g->count; i++)
        if (g->nodes[i].op == NN_OP_FUSED)
            return true;
    return false;
}

static NnStatus emit(LLVMModuleRef m, const NnAotTarget *t, const char *path)
{
    LLVMTargetRef tg;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(t->triple, &tg, &err)) {
        NnStatus st = nnrt_fail(NN_ERR_RUNTIME, "aot: %s", err);
        LLVMDisposeMessage(err);
        return st;
    }
    LLVMTargetMachineRef tm =
        LLVMCreateTargetMachine(tg, t->triple, t->cpu, t->features, NN_JIT_CODEGEN_LEVEL,
                                LLVMRelocPIC, LLVMCodeModelDefault);
    if (!tm)
        return nnrt_fail(NN_ERR_RUNTIME, "aot: cannot create a target machine for %s", t->triple);
    NnStatus st = nn_llvm_optimize(m, tm);
    if (st == NN_OK && LLVMTargetMachineEmitToFile(tm, m, (char *)path, LLVMObjectFile, &err)) {
        st = nnrt_fail(NN_ERR_IO, "aot: writing %s: %s", path, err);
        LLVMDisposeMessage(err);
    }
    LLVMDisposeTargetMachine(tm);
    return st;
}

// Rows a run-time batch stands for while compiling, at least (exec.c's RT_REF_MIN).
#define RT_REF_MIN 32

static NnStatus compile(const NnGraph *g, const int64_t *symv, int batch_sym, const char *prefix,
                        const char *name, const NnAotTarget *t, const char *obj_path,
                        NnrtStep **desc)
{
    *desc = NULL;
    NnGraph *fused = NULL;
    if (!has_fused(g))
        g = fused = nn_passes_run(nn_graph_clone(g), NULL);
    int64_t cv[NN_MAX_SYMS], pv[NN_MAX_SYMS]; // the binding compiled, and planned
    memcpy(cv, symv, sizeof cv);
    memcpy(pv, symv, sizeof pv);
    NnPlanOptions po = {.const_buffers = true};
    if (batch_sym >= 0) {
        char why[160];
        if (nn_cg_batch_sym(g, why, sizeof why) != batch_sym) {
            nn_graph_free(fused);
            return nnrt_fail(NN_ERR_RUNTIME, "aot: the batch cannot be a run-time value: %s", why);
        }
        cv[batch_sym] = symv[batch_sym] > RT_REF_MIN ? symv[batch_sym] : RT_REF_MIN;
        pv[batch_sym] = 1;
        po.rows = true;
        po.rows_sym = batch_sym;
    }
    LLVMContextRef ctx = LLVMContextCreate();
    NnCg cg;
    nn_cg_init_rt(&cg, ctx, g, cv, prefix, batch_sym);
    cg.cpu = t->cpu;
    cg.features = t->features;
    cg.vec512 = strstr(t->features, "+avx512f") || !strcmp(t->cpu, "x86-64-v4") ||
                (t->host && !strcmp(t->cpu, nn_llvm_host_cpu()) && strstr(nn_llvm_host_features(),
                                                                          "+avx512f"));
    NnStatus st = NN_OK;
    if (!nn_cg_lower_graph(&cg)) {
        st = NN_ERR_RUNTIME;
    } else {
        NnArena *arena = nn_arena_new();
        *desc = nn_llvm_step_new(&cg, nn_plan_build_ex(g, pv, arena, &po), name);
        nn_arena_free(arena);
        st = *desc ? emit(cg.mod, t, obj_path) : NN_ERR_NOMEM;
    }
    LLVMDisposeModule(cg.mod);
    nn_cg_fini(&cg);
    LLVMContextDispose(ctx);
    nn_graph_free(fused);
    if (st != NN_OK) {
        nn_llvm_step_free(*desc);
        *desc = NULL;
    }
    return st;
}

NnStatus nn_aot_compile(const NnGraph *g, const int64_t *symv, const char *prefix,
                        const char *name, const NnAotTarget *t, const char *obj_path,
                        NnrtStep **desc)
{
    return compile(g, symv, -1, prefix, name, t, obj_path, desc);
}

NnStatus nn_aot_compile_any_batch(const NnGraph *g, const int64_t *symv, int batch_sym,
                                  const char *prefix, const char *name, const NnAotTarget *t,
                                  const char *obj_path, NnrtStep **desc)
{
    return compile(g, symv, batch_sym, prefix, name, t, obj_path, desc);
}

int nn_aot_batch_sym(const NnGraph *g, char *why, size_t n)
{
    return nn_cg_batch_sym(g, why, n);
}

void nn_aot_step_free(NnrtStep *d) { nn_llvm_step_free(d); }

void nn_aot_write_c_string(FILE *f, const char *s)
{
    if (!s) {
        fputs("NULL", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 32 || ch >= 127)
            fprintf(f, "\\%03o", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

void nn_aot_step_write_c(const NnrtStep *d, const char *cname, FILE *out)
{
    nn_llvm_step_write_c(d, cname, out);
}
