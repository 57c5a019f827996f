// interp_extern: a C function declared `extern`, called through libffi once
// per element with numpy broadcasting (NnrtBcast strides). The call interface
// is prepared from the node's dtypes on every run: f32 -> float, f64 ->
// double, i32 -> int. The function pointer comes from dlopen/dlsym (cached
// by the dynamic loader), so a graph needs no compile step to call C.
#include <ffi.h>
#include <stdint.h>
#include <string.h>

#include "interp.h"

static ffi_type *ffi_of(NnDType dt)
{
    switch (dt) {
    case NN_DT_F32: return &ffi_type_float;
    case NN_DT_F64: return &ffi_type_double;
    case NN_DT_I32: return &ffi_type_sint32;
    default: return NULL;
    }
}

NnStatus interp_extern(Ictx *c, const NnNode *n, NnTensor *out)
{
    (void)c;
    int nin = n->nin;
    char why[512];
    void *fn = nn_extern_open(n->attr.lib, n->attr.sym, why, sizeof why);
    if (!fn)
        return nnrt_fail(NN_ERR_RUNTIME, "%s", why);
    ffi_type *at[3], *rt = ffi_of(out->dtype);
    const NnTensor *x[3];
    int rank[3];
    const int64_t *shape[3];
    for (int k = 0; k < nin && k < 3; k++) {
        x[k] = interp_in(c, n, k);
        at[k] = ffi_of(x[k]->dtype);
        rank[k] = x[k]->rank;
        shape[k] = x[k]->shape;
        if (!at[k])
            return nnrt_fail(NN_ERR_RUNTIME, "extern '%s': unsupported argument type",
                             n->attr.sym);
    }
    ffi_cif cif;
    if (nin < 1 || nin > 3 || !rt ||
        ffi_prep_cif(&cif, FFI_DEFAULT_ABI, (unsigned)nin, rt, at) != FFI_OK)
        return nnrt_fail(NN_ERR_RUNTIME, "extern '%s': libffi cannot call this signature",
                         n->attr.sym);
    NnrtBcast b;
    if (!nnrt_bcast_init(&b, out->rank, out->shape, nin, rank, shape))
        return nnrt_fail(NN_ERR_SHAPE, "extern '%s': operands do not broadcast", n->attr.sym);
    size_t osz = nnrt_dtype_size(out->dtype);
    int64_t idx[NN_MAX_RANK] = {0};
    for (int64_t i = 0; i < b.numel; i++) {
        void *args[3];
        for (int k = 0; k < nin; k++) {
            int64_t off = 0;
            for (int d = 0; d < b.rank; d++)
                off += idx[d] * b.stride[k][d];
            args[k] = (char *)x[k]->data + off * (int64_t)nnrt_dtype_size(x[k]->dtype);
        }
        // libffi widens a returned int to ffi_arg; floats come back as they are.
        ffi_arg r[2];
        ffi_call(&cif, FFI_FN(fn), r, args);
        char *dst = (char *)out->data + (size_t)i * osz;
        if (out->dtype == NN_DT_I32)
            *(int32_t *)dst = (int32_t)r[0];
        else
            memcpy(dst, r, osz);
        for (int d = b.rank - 1; d >= 0 && ++idx[d] == b.shape[d]; d--)
            idx[d] = 0;
    }
    return NN_OK;
}
