// Denormals flushed to zero while training (see fpenv.h): the mode is per
// thread, so it is set on the caller and, through one pool task, on every
// thread of the default pool.
#include "fpenv.h"

#include "pool.h"

#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>

#define FTZ_DAZ 0x8040u // MXCSR flush-to-zero (bit 15) and denormals-are-zero (bit 6)

static void set_csr(void *arg, int ith, int nth)
{
    (void)ith;
    (void)nth;
    _mm_setcsr(*(const unsigned *)arg);
}

static void set_all(unsigned csr)
{
    set_csr(&csr, 0, 1);
    NnrtPool *p = nnrt_pool_default_started();
    if (p)
        nnrt_pool_run(p, set_csr, &csr);
}

NnrtFpMode nnrt_fp_flush_denormals(void)
{
    const char *env = getenv("NN_KEEP_DENORMALS");
    NnrtFpMode m = {.csr = _mm_getcsr(), .set = false};
    if ((env && *env && *env != '0') || (m.csr & FTZ_DAZ) == FTZ_DAZ)
        return m;
    set_all(m.csr | FTZ_DAZ);
    m.set = true;
    return m;
}

void nnrt_fp_restore(NnrtFpMode m)
{
    if (m.set)
        set_all(m.csr);
}
#else
NnrtFpMode nnrt_fp_flush_denormals(void) { return (NnrtFpMode){0}; }
void nnrt_fp_restore(NnrtFpMode m) { (void)m; }
#endif
