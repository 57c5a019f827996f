// The image builtins: conv, conv_transpose, pool_max, pool_avg, pad and
// concat, lowered with the ir/op_conv.c and ir/op_layout.c builders. They take
// geometry as an int or a per-axis list (stride = 2 or [2, 1]) and padding as
// an int, a list, "valid" or "same" (TensorFlow's split: the odd pixel goes to
// the bottom/right). Shape mistakes are caught here, before the builder, so
// the message can name the stdlib layer the user called (conv2d, max_pool) and
// point at that call; see Lower.user_loc.
#include "elab.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

// An error at the user's call, prefixed with the layer called (or the builtin).
static Val fail(Lower *L, NnLoc loc, const char *builtin, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static Val fail(Lower *L, NnLoc loc, const char *builtin, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nn_error(&L->c->diags, user_loc(L, loc), "%s %s", L->user_call ? L->user_call : builtin, msg);
    return v_none();
}

// An int or a list of n ints (one per spatial axis), each >= min.
static bool ints_of(Lower *L, Val v, bool set, int dflt, int n, int min, int *out,
                    const char *what, const char *builtin, NnLoc loc)
{
    for (int i = 0; i < n; i++)
        out[i] = dflt;
    if (!set)
        return true;
    bool list = v.kind == V_LIST;
    if (list && v.list->count != n && v.list->count != 1) {
        fail(L, loc, builtin, "takes %s as one number or a list of %d", what, n);
        return false;
    }
    for (int i = 0; i < n; i++) {
        Val e = list ? v.list->items[v.list->count == 1 ? 0 : i] : v;
        if (e.kind != V_NUM || !e.is_int || e.sym || e.dim < min || e.dim > 1 << 20) {
            char d[64];
            fail(L, loc, builtin, "needs %s to be an integer >= %d, got %s", what, min,
                 val_desc(L, e, d, sizeof d));
            return false;
        }
        out[i] = (int)e.dim;
    }
    return true;
}

// Padding: "valid", "same", an int, [ph, pw] or [top, left, bottom, right].
// "same" keeps ceil(size / stride) outputs (in[] is the input H, W).
static bool padding_of(Lower *L, Val v, bool set, NnConv2d *c, const int64_t *in,
                       const char *builtin, NnLoc loc)
{
    if (!set)
        return true;
    if (v.kind == V_STR) {
        if (strcmp(v.str, "valid") == 0)
            return true;
        if (strcmp(v.str, "same") != 0) {
            fail(L, loc, builtin, "takes padding \"same\", \"valid\" or a number, not \"%s\"",
                 v.str);
            return false;
        }
        for (int a = 0; a < 2; a++) {
            int64_t s = c->stride[a], out = (in[a] + s - 1) / s;
            int64_t reach = (int64_t)c->dilation[a] * (c->kernel[a] - 1) + 1;
            int64_t total = (out - 1) * s + reach - in[a];
            total = total > 0 ? total : 0;
            c->pad[a] = (int)(total / 2);
            c->pad[a + 2] = (int)(total - total / 2);
        }
        return true;
    }
    int p[4];
    int n = v.kind == V_LIST && v.list->count == 4 ? 4 : 2;
    if (!ints_of(L, v, set, 0, n, 0, p, "padding", builtin, loc))
        return false;
    c->pad[0] = p[0], c->pad[1] = p[1];
    c->pad[2] = n == 4 ? p[2] : p[0];
    c->pad[3] = n == 4 ? p[3] : p[1];
    return true;
}

// x must be a rank-4 tensor with numeric C, H, W.
static bool image_of(Lower *L, Val v, const char *builtin, NnLoc loc)
{
    char d[96];
    if (v.kind != V_TENSOR || vnode(L, v)->shape.rank != 4) {
        fail(L, loc, builtin, "expects f32[N, C, H, W], got %s", val_desc(L, v, d, sizeof d));
        return false;
    }
    const NnShape *s = &vnode(L, v)->shape;
    if (s->dim[1] < 0 || s->dim[2] < 0 || s->dim[3] < 0) {
        fail(L, loc, builtin, "needs numeric channels, height and width, got %s",
             val_desc(L, v, d, sizeof d));
        return false;
    }
    return true;
}

// The kernel (dilated) must fit in the padded input.
static bool fits(Lower *L, Val x, const NnConv2d *c, const char *builtin, NnLoc loc)
{
    const NnShape *s = &vnode(L, x)->shape;
    for (int a = 0; a < 2; a++) {
        int64_t padded = s->dim[2 + a] + c->pad[a] + c->pad[a + 2];
        int64_t reach = (int64_t)c->dilation[a] * (c->kernel[a] - 1) + 1;
        if (reach > padded) {
            char d[96];
            fail(L, loc, builtin, "expects an input at least as large as its %lldx%lld%s "
                 "window, got %s padded to %lldx%lld",
                 (long long)c->dilation[0] * (c->kernel[0] - 1) + 1,
                 (long long)c->dilation[1] * (c->kernel[1] - 1) + 1,
                 c->dilation[0] > 1 || c->dilation[1] > 1 ? " (dilated)" : "",
                 val_desc(L, x, d, sizeof d), (long long)(s->dim[2] + c->pad[0] + c->pad[2]),
                 (long long)(s->dim[3] + c->pad[1] + c->pad[3]));
            return false;
        }
    }
    return true;
}

// conv(x, w, stride, padding, dilation, groups) and conv_transpose(..., outpad).
static Val conv(Lower *L, bool transpose, Val *v, bool *set, NnLoc loc)
{
    const char *b = transpose ? "conv_transpose" : "conv";
    char dx[96], dw[96];
    if (!image_of(L, v[0], b, loc))
        return v_none();
    if (v[1].kind != V_TENSOR || vnode(L, v[1])->shape.rank != 4)
        return fail(L, loc, b, "expects filters f32[F, C/groups, KH, KW], got %s",
                    val_desc(L, v[1], dw, sizeof dw));
    const NnShape *xs = &vnode(L, v[0])->shape, *ws = &vnode(L, v[1])->shape;
    NnConv2d c = {.kernel = {(int)ws->dim[2], (int)ws->dim[3]}};
    if (!ints_of(L, v[2], set[2], 1, 2, 1, c.stride, "stride", b, loc) ||
        !ints_of(L, v[4], set[4], 1, 2, 1, c.dilation, "dilation", b, loc) ||
        !ints_of(L, v[5], set[5], 1, 1, 1, &c.groups, "groups", b, loc) ||
        !ints_of(L, v[6], set[6], 0, 2, 0, c.outpad, "outpad", b, loc))
        return v_none();
    int64_t C = xs->dim[1], F = transpose ? ws->dim[1] * c.groups : ws->dim[0];
    if (C % c.groups != 0 || F % c.groups != 0)
        return fail(L, loc, b, "needs groups = %d to divide the input channels (%s) and "
                    "the filters (%lld)", c.groups, val_desc(L, v[0], dx, sizeof dx), (long long)F);
    int64_t want = transpose ? ws->dim[0] : ws->dim[1] * c.groups;
    if (want != C)
        return fail(L, loc, b, "expects f32[N, %lld, H, W] for filters %s%s, got %s",
                    (long long)want, val_desc(L, v[1], dw, sizeof dw),
                    c.groups > 1 ? " and groups" : "", val_desc(L, v[0], dx, sizeof dx));
    if (transpose) {
        // "same" for a transposed convolution: the output is stride times the input.
        if (set[3] && v[3].kind == V_STR && strcmp(v[3].str, "same") == 0) {
            for (int a = 0; a < 2; a++) {
                int total = c.dilation[a] * (c.kernel[a] - 1) + 1 - c.stride[a];
                if (total < 0)
                    c.outpad[a] = -total, total = 0;
                c.pad[a] = total / 2;
                c.pad[a + 2] = total - total / 2;
            }
        } else if (!padding_of(L, v[3], set[3], &c, xs->dim + 2, b, loc))
            return v_none();
        for (int a = 0; a < 2; a++)
            if (c.outpad[a] >= c.stride[a] && c.outpad[a] >= c.dilation[a])
                return fail(L, loc, b, "needs outpad smaller than the stride or the dilation");
        return v_tensor(checked(L, nn_ir_conv_transpose2d(L->g, v[0].id, v[1].id, &c, loc),
                                user_loc(L, loc)));
    }
    if (set[6])
        return fail(L, loc, b, "takes outpad only for a transposed convolution");
    if (!padding_of(L, v[3], set[3], &c, xs->dim + 2, b, loc) || !fits(L, v[0], &c, b, loc))
        return v_none();
    return v_tensor(checked(L, nn_ir_conv2d(L->g, v[0].id, v[1].id, &c, loc), user_loc(L, loc)));
}

// pool_max / pool_avg(x, window, stride = window, padding = 0).
static Val pool(Lower *L, bool max, Val *v, bool *set, NnLoc loc)
{
    const char *b = max ? "pool_max" : "pool_avg";
    if (!image_of(L, v[0], b, loc))
        return v_none();
    NnConv2d c = {.dilation = {1, 1}, .groups = 1};
    if (!ints_of(L, v[1], set[1], 2, 2, 1, c.kernel, "the window", b, loc) ||
        !ints_of(L, v[2], set[2] && !(v[2].kind == V_NUM && v[2].num == 0), 0, 2, 1, c.stride,
                 "stride", b, loc))
        return v_none();
    for (int a = 0; a < 2; a++)
        if (c.stride[a] == 0)
            c.stride[a] = c.kernel[a];
    const NnShape *xs = &vnode(L, v[0])->shape;
    if (!padding_of(L, v[3], set[3], &c, xs->dim + 2, b, loc) || !fits(L, v[0], &c, b, loc))
        return v_none();
    for (int a = 0; a < 2; a++)
        if (c.pad[a] >= c.kernel[a] || c.pad[a + 2] >= c.kernel[a])
            return fail(L, loc, b, "needs padding smaller than the window");
    NnOp op = max ? NN_OP_MAX_POOL2D : NN_OP_AVG_POOL2D;
    return v_tensor(checked(L, nn_ir_pool2d(L->g, op, v[0].id, &c, loc), user_loc(L, loc)));
}

// pad(x, lo, hi, value = 0): lo and hi list one count per axis.
static Val pad(Lower *L, Val *v, bool *set, NnLoc loc)
{
    char d[96];
    if (v[0].kind != V_TENSOR)
        return fail(L, loc, "pad", "needs a tensor, got %s", val_desc(L, v[0], d, sizeof d));
    int rank = vnode(L, v[0])->shape.rank;
    int64_t lohi[2][NN_MAX_RANK] = {{0}};
    for (int k = 0; k < 2; k++) {
        Val l = v[1 + k];
        if (l.kind != V_LIST || l.list->count != rank)
            return fail(L, loc, "pad", "needs one count per axis of %s in lo and hi",
                        val_desc(L, v[0], d, sizeof d));
        for (int i = 0; i < rank; i++) {
            Val e = l.list->items[i];
            if (e.kind != V_NUM || !e.is_int || e.sym || e.dim < 0)
                return fail(L, loc, "pad", "needs counts that are integers >= 0");
            lohi[k][i] = e.dim;
        }
    }
    double value = set[3] && v[3].kind == V_NUM ? v[3].num : 0;
    return v_tensor(checked(L, nn_ir_pad(L->g, v[0].id, lohi[0], lohi[1], value, loc),
                            user_loc(L, loc)));
}

// concat([a, b, ...], axis = 1).
static Val concat(Lower *L, Val *v, bool *set, NnLoc loc)
{
    if (v[0].kind != V_LIST || v[0].list->count < 1 || v[0].list->count > 64)
        return fail(L, loc, "concat", "takes a list of 1 to 64 tensors");
    NnId xs[64];
    int n = v[0].list->count;
    for (int i = 0; i < n; i++) {
        if (v[0].list->items[i].kind != V_TENSOR)
            return fail(L, loc, "concat", "takes a list of tensors");
        xs[i] = v[0].list->items[i].id;
    }
    int rank = nn_node(L->g, xs[0])->shape.rank;
    int64_t axis = set[1] && v[1].kind == V_NUM && v[1].is_int ? v[1].dim : 1;
    if (set[1] && (v[1].kind != V_NUM || !v[1].is_int))
        return fail(L, loc, "concat", "needs an integer axis");
    if (axis < -rank || axis >= rank)
        return fail(L, loc, "concat", "needs an axis in [-%d, %d), got %lld", rank, rank,
                    (long long)axis);
    if (axis < 0)
        axis += rank;
    return v_tensor(checked(L, nn_ir_concat(L->g, xs, n, (int)axis, loc), user_loc(L, loc)));
}

Val conv_builtin(Lower *L, const char *name, Val *v, bool *set, NnLoc loc)
{
    if (strcmp(name, "conv") == 0 || strcmp(name, "conv_transpose") == 0)
        return conv(L, name[4] == '_', v, set, loc);
    if (strcmp(name, "pool_max") == 0 || strcmp(name, "pool_avg") == 0)
        return pool(L, name[5] == 'm', v, set, loc);
    if (strcmp(name, "pad") == 0)
        return pad(L, v, set, loc);
    return concat(L, v, set, loc);
}
