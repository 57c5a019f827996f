// EXTERN in generated code: a direct call of the C function, per lane, at the
// address the dynamic loader gives for the declaration's library and symbol
// (no libffi and no symbol lookup at run time). The call's LLVM signature
// follows the node's dtypes, as the interpreter's libffi call does.
#include <stdint.h>
#include <stdio.h>

#include "nn_llvm.h"

LLVMValueRef nn_cg_extern_call(NnCg *cg, const NnNode *n, LLVMValueRef *a, int w)
{
    char why[512];
    void *fp = nn_extern_open(n->attr.lib, n->attr.sym, why, sizeof why);
    LLVMTypeRef rt = nn_cg_type(cg, n->dtype);
    if (!fp) {
        nnrt_fail(NN_ERR_RUNTIME, "%s", why);
        cg->failed = true;
        return LLVMGetPoison(nn_cg_vtype(cg, n->dtype, w));
    }
    LLVMTypeRef at[3];
    for (int k = 0; k < n->nin; k++) {
        LLVMTypeRef t = LLVMTypeOf(a[k]);
        at[k] = LLVMGetTypeKind(t) == LLVMVectorTypeKind ? LLVMGetElementType(t) : t;
    }
    LLVMTypeRef ft = LLVMFunctionType(rt, at, (unsigned)n->nin, 0);
    LLVMValueRef callee = LLVMConstIntToPtr(LLVMConstInt(cg->t_i64, (uint64_t)(uintptr_t)fp, 0),
                                            cg->t_ptr);
    if (w == 1)
        return LLVMBuildCall2(cg->b, ft, callee, a, (unsigned)n->nin, "");
    LLVMValueRef out = LLVMGetPoison(LLVMVectorType(rt, (unsigned)w));
    for (int i = 0; i < w; i++) {
        LLVMValueRef s[3];
        for (int k = 0; k < n->nin; k++)
            s[k] = LLVMBuildExtractElement(cg->b, a[k], nn_cg_i32(cg, i), "");
        LLVMValueRef r = LLVMBuildCall2(cg->b, ft, callee, s, (unsigned)n->nin, "");
        out = LLVMBuildInsertElement(cg->b, out, r, nn_cg_i32(cg, i), "");
    }
    return out;
}
