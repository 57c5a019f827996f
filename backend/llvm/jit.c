// The LLVM session: host target detection, the pass pipelines (O1 for
// products, convolutions, pooling and loops; a short one for the simple
// kernels lower.c marks NN_LLVM_LIGHT), one ORC LLJIT per executable, the
// parallel compile of a step's module, and the --stage llvm / asm dumps.
// Generated code calls the nnrt_ runtime through absolute symbols defined
// here (a statically linked libnnrt is not in the dynamic symbol table) and
// libc/libm through a search generator over the process. Everything created
// here is disposed here. Knobs for experiments: NN_JIT_PIPELINE and
// NN_JIT_LIGHT_PIPELINE (pass pipelines), NN_JIT_CODEGEN and
// NN_JIT_LIGHT_CODEGEN (code generator levels), NN_JIT_DEDUPE=0 (no shared
// code, dedupe.c), NN_JIT_TIMES (timings), NN_JIT_DUMP (the step's bitcode).
#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/ExecutionEngine.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Orc.h>
#include <llvm-c/OrcEE.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nn_llvm.h"
#include "dist.h"
#include "pool.h"

struct NnLlvmJit {
    LLVMOrcLLJITRef lljit;
    LLVMOrcThreadSafeContextRef tsc;
    LLVMTargetMachineRef tm; // for the pass pipeline (the JIT owns its own)
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static char *host_cpu, *host_features;
static bool init_ok;

static void init_llvm(void)
{
    init_ok = !LLVMInitializeNativeTarget() && !LLVMInitializeNativeAsmPrinter();
    host_cpu = LLVMGetHostCPUName();
    host_features = LLVMGetHostCPUFeatures();
}

const char *nn_llvm_host_cpu(void)
{
    pthread_once(&init_once, init_llvm);
    return host_cpu;
}

const char *nn_llvm_host_features(void)
{
    pthread_once(&init_once, init_llvm);
    return host_features;
}

// Converts an LLVM error into an NnStatus message (consuming the error).
static NnStatus fail_err(LLVMErrorRef err, const char *what)
{
    char *msg = LLVMGetErrorMessage(err);
    nnrt_fail(NN_ERR_RUNTIME, "jit: %s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return NN_ERR_RUNTIME;
}

// A target machine for the host with its code generator at level lv.
static LLVMTargetMachineRef host_tm_at(LLVMCodeGenOptLevel lv)
{
    pthread_once(&init_once, init_llvm);
    if (!init_ok) {
        nnrt_fail(NN_ERR_RUNTIME, "jit: the native target is not available");
        return NULL;
    }
    char *triple = LLVMGetDefaultTargetTriple(), *err = NULL;
    LLVMTargetRef t;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(triple, &t, &err)) {
        nnrt_fail(NN_ERR_RUNTIME, "jit: %s", err);
        LLVMDisposeMessage(err);
    } else {
        tm = LLVMCreateTargetMachine(t, triple, host_cpu, host_features, lv,
                                     LLVMRelocDefault, LLVMCodeModelJITDefault);
        if (!tm)
            nnrt_fail(NN_ERR_RUNTIME, "jit: cannot create a target machine for %s", triple);
    }
    LLVMDisposeMessage(triple);
    return tm;
}

// The level in environment variable var (0-3), else dflt.
static LLVMCodeGenOptLevel level_env(const char *var, LLVMCodeGenOptLevel dflt)
{
    const char *cg = getenv(var);
    return cg && *cg >= '0' && *cg <= '3' ? (LLVMCodeGenOptLevel)(*cg - '0') : dflt;
}

LLVMTargetMachineRef nn_llvm_host_tm(void)
{
    return host_tm_at(level_env("NN_JIT_CODEGEN", NN_JIT_CODEGEN_LEVEL));
}

static void set_layout(LLVMModuleRef m, LLVMTargetMachineRef tm)
{
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(m, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(m, dl);
    LLVMDisposeTargetData(dl);
}

static NnStatus run_passes(LLVMModuleRef m, LLVMTargetMachineRef tm, const char *pipe)
{
    LLVMPassBuilderOptionsRef o = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(o, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(o, 1);
    LLVMPassBuilderOptionsSetLoopUnrolling(o, 1);
    LLVMPassBuilderOptionsSetLoopInterleaving(o, 1);
    LLVMErrorRef err = LLVMRunPasses(m, pipe, tm, o);
    LLVMDisposePassBuilderOptions(o);
    return err ? fail_err(err, "optimizing") : NN_OK;
}

// Verified once, before the module is split or optimized.
static NnStatus verify(LLVMModuleRef m)
{
    char *msg = NULL;
    if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
        // Our bug, but reported as a status so a long-running program survives it.
        nnrt_fail(NN_ERR_RUNTIME, "jit: generated module is invalid: %.400s", msg);
        LLVMDisposeMessage(msg);
        return NN_ERR_RUNTIME;
    }
    LLVMDisposeMessage(msg);
    return NN_OK;
}

// The O1 pipeline, for products, convolutions, pooling and loops.
static NnStatus optimize_full(LLVMModuleRef m, LLVMTargetMachineRef tm)
{
    set_layout(m, tm);
    // O1, not O2 or O3: the kernels arrive vectorized, with their register
    // tiles spelled out, so what O2 adds over O1 (GVN, more unrolling and
    // loop passes) bought no kernel time: every kernel of the MLP, LeNet-5
    // and GRU steps ran as fast (fastest run per kernel, NN_JIT_PROFILE)
    // under O1 with the code generator at "less" as under O2 at
    // "aggressive", which cost 10% more compile time (docs/threads.md).
    // NN_JIT_PIPELINE overrides the pipeline (e.g. "default<O2>") and
    // NN_JIT_CODEGEN the code generator's level (0-3; default 1), for
    // experiments.
    const char *pipe = getenv("NN_JIT_PIPELINE");
    return run_passes(m, tm, pipe && *pipe ? pipe : "default<O1>");
}

static bool is_light(LLVMValueRef f);

// Deletes the bodies of m's functions that are (light) or are not (!light)
// marked light, leaving declarations; returns how many bodies are left.
static int keep_bodies(LLVMModuleRef m, bool light)
{
    int left = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f))
            continue;
        if (is_light(f) == light) {
            left++;
            continue;
        }
        LLVMBasicBlockRef bb;
        while ((bb = LLVMGetFirstBasicBlock(f)))
            LLVMDeleteBasicBlock(bb);
        LLVMSetLinkage(f, LLVMExternalLinkage);
    }
    return left;
}

// One module (AOT, --stage llvm/asm): its light functions are optimized in
// a copy with the short pipeline, the rest with O1, and the copy linked back.
NnStatus nn_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm)
{
    set_layout(m, tm);
    NnStatus st = verify(m);
    if (st != NN_OK)
        return st;
    nn_llvm_dedupe(m);
    int nlight = 0, nfull = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
        if (!LLVMIsDeclaration(f))
            *(is_light(f) ? &nlight : &nfull) += 1;
    if (!nlight || !nfull)
        return nlight ? nn_llvm_optimize_light(m, tm) : optimize_full(m, tm);
    LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(m);
    LLVMModuleRef light = NULL;
    if (LLVMParseBitcodeInContext2(LLVMGetModuleContext(m), bc, &light)) {
        LLVMDisposeMemoryBuffer(bc);
        return nnrt_fail(NN_ERR_RUNTIME, "jit: cannot re-read the module");
    }
    LLVMDisposeMemoryBuffer(bc);
    keep_bodies(light, true);
    keep_bodies(m, false);
    st = nn_llvm_optimize_light(light, tm);
    if (st == NN_OK)
        st = optimize_full(m, tm);
    if (st != NN_OK) {
        LLVMDisposeModule(light);
        return st;
    }
    if (LLVMLinkModules2(m, light)) // consumes light
        return nnrt_fail(NN_ERR_RUNTIME, "jit: cannot link the light kernels back");
    return NN_OK;
}

NnStatus nn_llvm_optimize_light(LLVMModuleRef m, LLVMTargetMachineRef tm)
{
    set_layout(m, tm);
    // The simple kernels (maps, reductions, gathers, copies) arrive
    // vectorized with their loops in final form: what they need is SROA for
    // their accumulators, CSE, instcombine, LICM of the addressing, rotated
    // loops, and indvars for the full unrolling of short constant loops (a
    // column reduction's accumulator set-up); O1's inliner, IPO, loop
    // idiom/deletion, unswitching and vectorizers found nothing to do there
    // and were most of the MLP step's middle end (docs/threads.md "JIT
    // compile time (session 8)").
    // NN_JIT_LIGHT_PIPELINE overrides it, for experiments.
    const char *pipe = getenv("NN_JIT_LIGHT_PIPELINE");
    return run_passes(m, tm,
                      pipe && *pipe
                          ? pipe
                          : "function(sroa,early-cse,instcombine<no-verify-fixpoint>,simplifycfg,"
                            "loop-mssa(licm,loop-rotate,licm),loop(indvars,loop-unroll-full),"
                            "instcombine<no-verify-fixpoint>,simplifycfg)");
}

// The runtime functions generated code may call, by address.
static void define_runtime(NnLlvmJit *j)
{
    struct {
        const char *name;
        uintptr_t addr;
    } syms[] = {
        {"nnrt_pool_run", (uintptr_t)nnrt_pool_run},
        {"nnrt_dist_grad_start", (uintptr_t)nnrt_dist_grad_start},
        {"nnrt_dist_grad_wait", (uintptr_t)nnrt_dist_grad_wait},
        {"nnrt_pool_default", (uintptr_t)nnrt_pool_default},
    };
    enum { NSYM = sizeof syms / sizeof syms[0] };
    LLVMOrcCSymbolMapPair pairs[NSYM];
    for (int i = 0; i < NSYM; i++) {
        pairs[i].Name = LLVMOrcLLJITMangleAndIntern(j->lljit, syms[i].name);
        pairs[i].Sym.Address = (LLVMOrcExecutorAddress)syms[i].addr;
        pairs[i].Sym.Flags.GenericFlags =
            LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
        pairs[i].Sym.Flags.TargetFlags = 0;
    }
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, NSYM);
    LLVMErrorRef err = LLVMOrcJITDylibDefine(LLVMOrcLLJITGetMainJITDylib(j->lljit), mu);
    if (err)
        LLVMConsumeError(err); // only fails on duplicate definitions
}

// NN_JIT_PERF=1: the object layer tells perf about each compiled kernel
// (LLVM's jitdump, under ~/.debug/jit or $JITDUMPDIR), so `perf record -k 1`
// then `perf inject --jit` name the kernels of loop bodies too, which
// NN_JIT_PROFILE cannot time one by one. The listener is LLVM's singleton.
static LLVMOrcObjectLayerRef perf_layer(void *ctx, LLVMOrcExecutionSessionRef es,
                                        const char *triple)
{
    (void)ctx;
    (void)triple;
    LLVMOrcObjectLayerRef l =
        LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager(es);
    LLVMJITEventListenerRef p = LLVMCreatePerfJITEventListener();
    if (p)
        LLVMOrcRTDyldObjectLinkingLayerRegisterJITEventListener(l, p);
    return l;
}

NnLlvmJit *nn_llvm_jit_new(void)
{
    LLVMTargetMachineRef jtm = nn_llvm_host_tm();
    if (!jtm)
        return NULL;
    NnLlvmJit *j = calloc(1, sizeof *j);
    if (!j || !(j->tm = nn_llvm_host_tm())) {
        LLVMDisposeTargetMachine(jtm);
        free(j);
        if (!j)
            nnrt_fail(NN_ERR_NOMEM, "jit: out of memory");
        return NULL;
    }
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
        builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
    if (getenv("NN_JIT_PERF"))
        LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator(builder, perf_layer, NULL);
    LLVMErrorRef err = LLVMOrcCreateLLJIT(&j->lljit, builder);
    if (err) {
        fail_err(err, "creating the JIT");
        LLVMDisposeTargetMachine(j->tm);
        free(j);
        return NULL;
    }
    LLVMOrcDefinitionGeneratorRef gen;
    err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        &gen, LLVMOrcLLJITGetGlobalPrefix(j->lljit), NULL, NULL);
    if (err) {
        fail_err(err, "process symbols");
        nn_llvm_jit_free(j);
        return NULL;
    }
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j->lljit), gen);
    define_runtime(j);
    j->tsc = LLVMOrcCreateNewThreadSafeContext();
    return j;
}

void nn_llvm_jit_free(NnLlvmJit *j)
{
    if (!j)
        return;
    if (j->lljit) {
        LLVMErrorRef err = LLVMOrcDisposeLLJIT(j->lljit);
        if (err)
            LLVMConsumeError(err);
    }
    if (j->tsc)
        LLVMOrcDisposeThreadSafeContext(j->tsc);
    if (j->tm)
        LLVMDisposeTargetMachine(j->tm);
    free(j);
}

LLVMContextRef nn_llvm_jit_context(NnLlvmJit *j)
{
    return LLVMOrcThreadSafeContextGetContext(j->tsc);
}
LLVMTargetMachineRef nn_llvm_jit_tm(NnLlvmJit *j) { return j->tm; }

NnStatus nn_llvm_jit_add(NnLlvmJit *j, LLVMModuleRef m, void **tracker)
{
    *tracker = NULL;
    NnStatus st = nn_llvm_optimize(m, j->tm);
    if (st != NN_OK) {
        LLVMDisposeModule(m);
        return st;
    }
    LLVMOrcResourceTrackerRef rt =
        LLVMOrcJITDylibCreateResourceTracker(LLVMOrcLLJITGetMainJITDylib(j->lljit));
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, j->tsc);
    LLVMErrorRef err = LLVMOrcLLJITAddLLVMIRModuleWithRT(j->lljit, rt, tsm);
    if (err) {
        LLVMOrcDisposeThreadSafeModule(tsm);
        LLVMOrcReleaseResourceTracker(rt);
        return fail_err(err, "adding a module");
    }
    *tracker = rt;
    return NN_OK;
}

// ---- parallel compilation: the module's functions split over threads ----

enum { MAX_THREADS = 4, MAX_PARTS = 2 * MAX_THREADS };

// Part q < nthreads holds thread q's full-pipeline functions, part
// nthreads + q its light ones (nn_llvm_optimize_light): one module each.
typedef struct Part {
    const char *bc; // the whole module as bitcode (shared, read-only)
    size_t bclen;
    const int *part_of; // per defined function, in module order: its part
    int me, nfn;        // this part, its function count
    bool light;
    LLVMMemoryBufferRef obj; // result
    char err[256];
} Part;

static double thread_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

// Parses the module into a private context, drops the bodies of other parts'
// functions (leaving declarations the JIT links across), optimizes, emits code.
static void compile_part(Part *p, LLVMTargetMachineRef tm)
{
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMMemoryBufferRef mb = LLVMCreateMemoryBufferWithMemoryRangeCopy(p->bc, p->bclen, "nnc.bc");
    LLVMModuleRef m = NULL;
    // Thread CPU time: what the part costs however busy the machine is.
    double t0 = thread_ms();
    if (LLVMParseBitcodeInContext2(ctx, mb, &m)) {
        snprintf(p->err, sizeof p->err, "jit: cannot re-read the module");
        goto done;
    }
    int k = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f))
            continue;
        if (p->part_of[k++] != p->me) {
            LLVMBasicBlockRef bb;
            while ((bb = LLVMGetFirstBasicBlock(f)))
                LLVMDeleteBasicBlock(bb);
            LLVMSetLinkage(f, LLVMExternalLinkage);
        }
    }
    char *err = NULL;
    double t1 = thread_ms();
    bool ok = (p->light ? nn_llvm_optimize_light(m, tm) : optimize_full(m, tm)) == NN_OK;
    double t2 = thread_ms();
    if (!ok) {
        snprintf(p->err, sizeof p->err, "%s", nnrt_errmsg());
    } else if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &err, &p->obj)) {
        snprintf(p->err, sizeof p->err, "jit: emitting code: %s", err);
        LLVMDisposeMessage(err);
        p->obj = NULL;
    }
    if (getenv("NN_JIT_TIMES"))
        fprintf(stderr,
                "jit: part %d (%d %s functions): read %.1f ms, optimize %.0f ms, codegen %.0f ms "
                "of CPU\n",
                p->me, p->nfn, p->light ? "light" : "full", t1 - t0, t2 - t1, thread_ms() - t2);
done:
    if (m)
        LLVMDisposeModule(m);
    LLVMDisposeMemoryBuffer(mb);
    LLVMContextDispose(ctx);
}

typedef struct Worker {
    Part *parts[2]; // its full and light parts (NULL when empty)
    char err[256];
} Worker;

// One target machine per thread, for both its parts.
static void *compile_worker(void *arg)
{
    Worker *w = arg;
    LLVMTargetMachineRef tm = nn_llvm_host_tm(), tml = tm;
    if (getenv("NN_JIT_LIGHT_CODEGEN") && w->parts[1])
        tml = host_tm_at(level_env("NN_JIT_LIGHT_CODEGEN", NN_JIT_CODEGEN_LEVEL));
    for (int i = 0; i < 2; i++) {
        LLVMTargetMachineRef t = i ? tml : tm;
        if (!w->parts[i])
            continue;
        if (t)
            compile_part(w->parts[i], t);
        else
            snprintf(w->parts[i]->err, sizeof w->parts[i]->err, "%s", nnrt_errmsg());
    }
    if (tml && tml != tm)
        LLVMDisposeTargetMachine(tml);
    if (tm)
        LLVMDisposeTargetMachine(tm);
    return NULL;
}

static bool is_light(LLVMValueRef f)
{
    return LLVMGetStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, NN_LLVM_LIGHT,
                                         (unsigned)strlen(NN_LLVM_LIGHT)) != NULL;
}

// Estimated cost of compiling f, in units of about 25 us: a fixed cost per
// function (mostly code generation's) plus its size, at half rate for a
// light one (fitted to the MLP, LeNet-5 and GRU steps, NN_JIT_TIMES).
static int64_t fn_cost(LLVMValueRef f, bool light)
{
    int64_t n = nn_llvm_fn_insts(f);
    return light ? 90 + n / 2 : 150 + n;
}

// The calling thread's own share: lowering, verifying and writing the
// module (about 5 ms on the MLP step), in the same units.
#define CALLER_COST 200

typedef struct FnCost {
    int k; // module order among the definitions
    int64_t cost;
    bool light;
} FnCost;

static int by_cost(const void *a, const void *b)
{
    const FnCost *x = a, *y = b;
    return x->cost > y->cost ? -1 : x->cost < y->cost ? 1 : x->k - y->k;
}

// Largest first, each function to the least loaded thread, in that thread's
// full or light part.
static int partition(LLVMModuleRef m, int nthreads, int *part_of, int *nfn, int cap)
{
    FnCost *fc = malloc(((size_t)cap + 1) * sizeof *fc);
    if (!fc)
        return -1;
    int n = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f))
            continue;
        if (n == cap) {
            free(fc);
            return -1;
        }
        bool light = is_light(f);
        fc[n] = (FnCost){n, fn_cost(f, light), light};
        n++;
    }
    qsort(fc, (size_t)n, sizeof *fc, by_cost);
    int64_t load[MAX_THREADS] = {CALLER_COST}; // thread 0 is the caller
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int q = 1; q < nthreads; q++)
            if (load[q] < load[best])
                best = q;
        int part = best + (fc[i].light ? nthreads : 0);
        part_of[fc[i].k] = part;
        nfn[part]++;
        load[best] += fc[i].cost;
    }
    free(fc);
    return n;
}

NnStatus nn_llvm_jit_add_parallel(NnLlvmJit *j, LLVMModuleRef m, void **tracker, int *shared)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = ncpu < 2 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (int)ncpu;
    int nfn = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
        nfn += !LLVMIsDeclaration(f);
    *tracker = NULL;
    double c0 = thread_ms();
    set_layout(m, j->tm);
    NnStatus st = verify(m);
    if (st != NN_OK) {
        LLVMDisposeModule(m);
        return st;
    }
    double cd = thread_ms();
    int nshared = nn_llvm_dedupe(m);
    cd = thread_ms() - cd;
    if (shared)
        *shared = nshared;
    int *part_of = calloc((size_t)nfn + 1, sizeof(int));
    int count[MAX_PARTS] = {0};
    if (!part_of || partition(m, nth, part_of, count, nfn) != nfn) {
        free(part_of);
        LLVMDisposeModule(m);
        return nnrt_fail(NN_ERR_NOMEM, "jit: out of memory");
    }
    LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(m);
    // NN_JIT_DUMP=PATH: the step's module before optimization, as
    // PATH.<n>.bc, for opt-19/llc-19 -time-passes (docs/threads.md).
    const char *dump = getenv("NN_JIT_DUMP");
    if (dump && *dump) {
        static int serial;
        char path[512];
        snprintf(path, sizeof path, "%s.%d.bc", dump, serial++);
        struct stat sb; // a FIFO or device would block or take the bytes
        if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
            fprintf(stderr, "jit: NN_JIT_DUMP: %s is not a regular file: not written\n", path);
        else if (LLVMWriteBitcodeToFile(m, path))
            fprintf(stderr, "jit: NN_JIT_DUMP: cannot write %s\n", path);
    }
    LLVMDisposeModule(m);
    double c1 = thread_ms();
    Part parts[MAX_PARTS];
    Worker w[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    for (int q = 0; q < 2 * nth; q++)
        parts[q] = (Part){.bc = LLVMGetBufferStart(bc),
                          .bclen = LLVMGetBufferSize(bc),
                          .part_of = part_of,
                          .me = q,
                          .nfn = count[q],
                          .light = q >= nth};
    for (int t = 0; t < nth; t++) {
        w[t] = (Worker){.parts = {count[t] ? &parts[t] : NULL,
                                  count[nth + t] ? &parts[nth + t] : NULL}};
        if (t > 0)
            started[t] = pthread_create(&th[t], NULL, compile_worker, &w[t]) == 0;
    }
    for (int t = 0; t < nth; t++)
        if (t == 0 || !started[t])
            compile_worker(&w[t]); // this thread's share, or a thread that would not start
    for (int t = 1; t < nth; t++)
        if (started[t])
            pthread_join(th[t], NULL);
    LLVMDisposeMemoryBuffer(bc);
    free(part_of);
    double c2 = thread_ms();
    LLVMOrcResourceTrackerRef rt =
        LLVMOrcJITDylibCreateResourceTracker(LLVMOrcLLJITGetMainJITDylib(j->lljit));
    for (int q = 0; q < 2 * nth; q++) {
        if (!count[q])
            continue;
        if (st == NN_OK && !parts[q].obj)
            st = nnrt_fail(NN_ERR_RUNTIME, "%s", parts[q].err);
        if (!parts[q].obj)
            continue;
        if (st != NN_OK) {
            LLVMDisposeMemoryBuffer(parts[q].obj);
            continue;
        }
        LLVMErrorRef err = LLVMOrcLLJITAddObjectFileWithRT(j->lljit, rt, parts[q].obj);
        if (err)
            st = fail_err(err, "adding an object");
    }
    if (getenv("NN_JIT_TIMES"))
        fprintf(stderr,
                "jit: calling thread: verify and write %.1f ms (%d kernels shared in %.1f ms), add "
                "objects %.1f ms of CPU\n",
                c1 - c0 - cd, nshared, cd, thread_ms() - c2);
    if (st != NN_OK) {
        nn_llvm_jit_remove(j, rt);
        return st;
    }
    *tracker = rt;
    return NN_OK;
}

void nn_llvm_jit_remove(NnLlvmJit *j, void *tracker)
{
    if (!tracker)
        return;
    LLVMOrcResourceTrackerRef rt = tracker;
    LLVMErrorRef err = LLVMOrcResourceTrackerRemove(rt);
    if (err)
        LLVMConsumeError(err);
    LLVMOrcReleaseResourceTracker(rt);
}

void *nn_llvm_jit_lookup(NnLlvmJit *j, const char *name)
{
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef err = LLVMOrcLLJITLookup(j->lljit, &addr, name);
    if (err) {
        fail_err(err, name);
        return NULL;
    }
    return (void *)(uintptr_t)addr;
}

// Lowers g for one binding into a fresh module in ctx; NULL with nnrt_errmsg set.
static LLVMModuleRef lower_module(LLVMContextRef ctx, const NnGraph *g, const int64_t *symv,
                                  const char *prefix, int *nkernels)
{
    NnCg cg;
    nn_cg_init(&cg, ctx, g, symv, prefix);
    bool ok = nn_cg_lower_graph(&cg);
    LLVMModuleRef m = cg.mod;
    if (nkernels)
        *nkernels = cg.nkernels;
    nn_cg_fini(&cg);
    if (!ok) {
        LLVMDisposeModule(m);
        return NULL;
    }
    return m;
}

bool nn_llvm_dump(const NnGraph *g, const int64_t *symv, bool asm_, FILE *out)
{
    LLVMTargetMachineRef tm = nn_llvm_host_tm();
    if (!tm)
        return false;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef m = lower_module(ctx, g, symv, "", NULL);
    bool ok = m && nn_llvm_optimize(m, tm) == NN_OK;
    if (ok && !asm_) {
        char *s = LLVMPrintModuleToString(m);
        fputs(s, out);
        LLVMDisposeMessage(s);
    } else if (ok) {
        char *err = NULL;
        LLVMMemoryBufferRef mb = NULL;
        if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMAssemblyFile, &err, &mb)) {
            nnrt_fail(NN_ERR_RUNTIME, "jit: emitting assembly: %s", err);
            LLVMDisposeMessage(err);
            ok = false;
        } else {
            fwrite(LLVMGetBufferStart(mb), 1, LLVMGetBufferSize(mb), out);
            LLVMDisposeMemoryBuffer(mb);
        }
    }
    if (m)
        LLVMDisposeModule(m);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return ok;
}
