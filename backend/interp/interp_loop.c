// LOOP and LOOP_OUT in the interpreter. A LOOP node's frame holds a Frame for
// its body (made once per binding, like a FUSED body's); each step points the
// body's INPUTs at the current carries, slice t of each sequence and the
// invariants, runs the body, then copies the per-step outputs to row t of
// their stacks and the new carries into place (through a staging area, so a
// carry may take another carry's old value). The node's buffer holds every
// result at the offsets nn_loop_layout gives; LOOP_OUT copies one out.
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "loop.h"

static int64_t nbytes(const NnTensor *t) { return (int64_t)nnrt_tensor_nbytes(t); }

static void copy(void *dst, const void *src, int64_t n)
{
    if (n > 0 && dst != src)
        memmove(dst, src, (size_t)n);
}

NnStatus interp_loop(Ictx *c, const NnNode *n, NnTensor *out)
{
    Frame *parent = c->f, *body = parent->sub[n - parent->g->nodes];
    const NnGraph *bg = body->g;
    int C = n->attr.ncarry, S = n->attr.nseq, nres = bg->noutputs;
    int64_t T = n->attr.trips;
    NnId *bin = malloc(((size_t)n->nin + 1) * sizeof *bin);
    int64_t *off = malloc(((size_t)nres + (size_t)C + 1) * sizeof *off);
    if (!bin || !off) {
        free(bin);
        free(off);
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < n->nin; k++)
        bin[k] = nn_loop_body_input(bg, k);
    nn_loop_layout(n, parent->symv, off);
    char *buf = out->data;
    for (int k = 0; k < n->nin; k++) {
        const NnTensor *x = interp_in(c, n, k);
        if (k < C) {
            copy(buf + off[k], x->data, nbytes(x));
            body->vals[bin[k]].data = buf + off[k];
        } else if (k >= C + S) {
            body->vals[bin[k]].data = x->data;
        }
    }
    NnStatus st = NN_OK;
    for (int64_t i = 0; i < T && st == NN_OK; i++) {
        int64_t t = n->attr.reverse ? T - 1 - i : i;
        for (int s = 0; s < S; s++) {
            NnTensor *slot = &body->vals[bin[C + s]];
            slot->data = (char *)interp_in(c, n, C + s)->data + t * nbytes(slot);
        }
        c->f = body;
        st = nn_interp_run_frame(c);
        c->f = parent;
        for (int j = C; j < nres; j++) {
            const NnTensor *y = &body->vals[bg->outputs[j].id];
            copy(buf + off[j] + t * nbytes(y), y->data, nbytes(y));
        }
        for (int k = 0; k < C; k++) {
            const NnTensor *y = &body->vals[bg->outputs[k].id];
            copy(buf + off[nres + k], y->data, nbytes(y));
        }
        for (int k = 0; k < C; k++)
            copy(buf + off[k], buf + off[nres + k], nbytes(&body->vals[bin[k]]));
    }
    free(bin);
    free(off);
    return st;
}

NnStatus interp_loop_out(Ictx *c, const NnNode *n, NnTensor *out)
{
    const NnNode *l = &c->f->g->nodes[n->in[0]];
    int nres = nn_loop_nresults(l), C = l->attr.ncarry;
    int64_t small[64];
    int64_t *off = nres + C + 1 <= 64 ? small : malloc(((size_t)nres + (size_t)C + 1) * 8);
    if (!off)
        return nnrt_fail(NN_ERR_NOMEM, "out of memory");
    nn_loop_layout(l, c->f->symv, off);
    copy(out->data, (const char *)interp_in(c, n, 0)->data + off[n->attr.result], nbytes(out));
    if (off != small)
        free(off);
    return NN_OK;
}
