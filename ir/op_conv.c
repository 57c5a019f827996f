// Shape rules, VJPs and builders for 2-D convolution and pooling (NCHW; the
// geometry is attr.conv, an NnConv2d). The three convolution ops are each
// other's adjoints: CONV2D's gradients are CONV2D_BWD_DATA (which is also the
// transposed convolution) and CONV2D_BWD_FILTER, and theirs are built from the
// same three, so gradients of any order stay in this family. C, H, W and the
// filter dims are numbers; only the batch N may be symbolic. Every message
// names the op and the shapes involved.
#include "op_common.h"

#include <string.h>

// Output length of one spatial axis; < 1 when the kernel does not fit.
static int64_t out_len(int64_t in, int k, int stride, int dil, int p0, int p1)
{
    int64_t span = in + p0 + p1 - (int64_t)dil * (k - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
}

// The input length whose convolution has `out` outputs with the leftover
// `outpad`: the transposed convolution's output length.
static int64_t in_len(int64_t out, int k, int stride, int dil, int p0, int p1, int outpad)
{
    return (out - 1) * stride - p0 - p1 + (int64_t)dil * (k - 1) + outpad + 1;
}

static bool is_num4(const NnShape *s, int from)
{
    for (int i = from; i < 4; i++)
        if (s->dim[i] < 0)
            return false;
    return true;
}

// x must be a float [N, C, H, W] with C, H, W numbers.
static bool check_image(NnGraph *g, const NnNode *n, int k, const char *what)
{
    const NnNode *x = &g->nodes[n->in[k]];
    char t[NN_TYPE_BUF];
    if (x->shape.rank != 4 || !nn_rule_is_float(x->dtype)) {
        nn_set_err(g, "%s expects %s[N, C, H, W], got %s", what,
                   nnrt_dtype_name(nn_rule_is_float(x->dtype) ? x->dtype : NN_DT_F32),
                   nn_rule_in_type(g, n, k, t));
        return false;
    }
    if (!is_num4(&x->shape, 1)) {
        nn_set_err(g, "%s needs numeric channels, height and width, got %s", what,
                   nn_rule_in_type(g, n, k, t));
        return false;
    }
    return true;
}

// Stride, dilation, padding, groups and kernel are in range; pooling has no
// groups and keeps its padding within half the window (so every window holds
// at least one input element).
static bool check_geom(NnGraph *g, const NnConv2d *c, bool pool, bool outpad, const char *what)
{
    for (int i = 0; i < 2; i++) {
        if (c->stride[i] < 1 || c->dilation[i] < 1 || c->kernel[i] < 1) {
            nn_set_err(g, "%s: stride, dilation and kernel must be >= 1, got stride [%d, %d], "
                          "dilation [%d, %d], kernel [%d, %d]",
                       what, c->stride[0], c->stride[1], c->dilation[0], c->dilation[1],
                       c->kernel[0], c->kernel[1]);
            return false;
        }
        if (c->outpad[i] < 0 || (!outpad && c->outpad[i]) ||
            (c->outpad[i] && c->outpad[i] >= c->stride[i])) {
            nn_set_err(g, "%s: output padding [%d, %d] must be >= 0 and below the stride", what,
                       c->outpad[0], c->outpad[1]);
            return false;
        }
    }
    for (int i = 0; i < 4; i++) {
        if (c->pad[i] < 0 || (pool && c->pad[i] > c->kernel[i % 2] / 2)) {
            nn_set_err(g, "%s: padding [%d, %d, %d, %d] must be >= 0%s", what, c->pad[0],
                       c->pad[1], c->pad[2], c->pad[3],
                       pool ? " and at most half the window" : "");
            return false;
        }
    }
    if (c->groups < 1 || (pool && c->groups != 1)) {
        nn_set_err(g, "%s: groups must be %s, got %d", what, pool ? "1" : ">= 1", c->groups);
        return false;
    }
    return true;
}

// The output dims [OH, OW] of the window geometry on an [.., .., H, W] input;
// false with a message when the (dilated) kernel exceeds the padded input.
static bool spatial(NnGraph *g, const NnConv2d *c, const NnShape *x, int64_t *oh, int64_t *ow,
                    const char *what)
{
    *oh = out_len(x->dim[2], c->kernel[0], c->stride[0], c->dilation[0], c->pad[0], c->pad[2]);
    *ow = out_len(x->dim[3], c->kernel[1], c->stride[1], c->dilation[1], c->pad[1], c->pad[3]);
    if (*oh < 1 || *ow < 1) {
        nn_set_err(g,
                   "%s: kernel %dx%d (dilation [%d, %d]) is larger than the padded input "
                   "%lldx%lld",
                   what, c->kernel[0], c->kernel[1], c->dilation[0], c->dilation[1],
                   (long long)(x->dim[2] + c->pad[0] + c->pad[2]),
                   (long long)(x->dim[3] + c->pad[1] + c->pad[3]));
        return false;
    }
    return true;
}

// Filters w = [F, C/groups, KH, KW] against an image with C channels: all
// numbers, groups divide C and F, and the kernel is the filter's.
static bool check_filter(NnGraph *g, const NnNode *n, const NnShape *w, NnDType wdt,
                         int64_t chans, const char *what)
{
    const NnConv2d *c = &n->attr.conv;
    char t[NN_TYPE_BUF];
    nn_type_str(g, wdt, w, t, sizeof t);
    if (w->rank != 4 || !is_num4(w, 0)) {
        nn_set_err(g, "%s expects filters f32[F, C/groups, KH, KW], got %s", what, t);
        return false;
    }
    if (c->groups < 1 || chans % c->groups || w->dim[0] % c->groups) {
        nn_set_err(g, "%s: groups = %d must divide both the %lld input channels and the %lld "
                      "filters of %s",
                   what, c->groups, (long long)chans, (long long)w->dim[0], t);
        return false;
    }
    if (w->dim[1] * c->groups != chans) {
        nn_set_err(g, "%s: %lld input channels do not match filters %s (%lld channels x %d groups)",
                   what, (long long)chans, t, (long long)w->dim[1], c->groups);
        return false;
    }
    if (w->dim[2] != c->kernel[0] || w->dim[3] != c->kernel[1]) {
        nn_set_err(g, "%s: kernel [%d, %d] differs from filters %s", what, c->kernel[0],
                   c->kernel[1], t);
        return false;
    }
    return true;
}

static bool same_dtype(NnGraph *g, const NnNode *n, const char *what)
{
    if (g->nodes[n->in[0]].dtype == g->nodes[n->in[1]].dtype)
        return true;
    char a[NN_TYPE_BUF], b[NN_TYPE_BUF];
    nn_set_err(g, "%s: operands differ in dtype: %s and %s", what, nn_rule_in_type(g, n, 0, a),
               nn_rule_in_type(g, n, 1, b));
    return false;
}

// dy of shape [N, F, OH, OW] must be exactly what the forward op gives.
static bool check_dy(NnGraph *g, const NnNode *n, int k, int64_t nb, int64_t f, int64_t oh,
                     int64_t ow, const char *what)
{
    const NnShape *d = &g->nodes[n->in[k]].shape;
    if (d->rank == 4 && d->dim[0] == nb && d->dim[1] == f && d->dim[2] == oh && d->dim[3] == ow)
        return true;
    char t[NN_TYPE_BUF];
    NnShape want = {4, {nb, f, oh, ow}};
    char u[NN_TYPE_BUF];
    nn_set_err(g, "%s: gradient %s should be %s", what, nn_rule_in_type(g, n, k, t),
               nn_type_str(g, g->nodes[n->in[k]].dtype, &want, u, sizeof u));
    return false;
}

static bool set_out(NnNode *n, NnDType dt, int64_t a, int64_t b, int64_t c, int64_t d)
{
    n->dtype = dt;
    n->shape = (NnShape){4, {a, b, c, d}};
    return true;
}

bool shape_conv2d(NnGraph *g, NnNode *n)
{
    const char *what = "conv2d";
    if (!check_image(g, n, 0, what) || !same_dtype(g, n, what))
        return false;
    const NnNode *x = &g->nodes[n->in[0]], *w = &g->nodes[n->in[1]];
    const NnConv2d *c = &n->attr.conv;
    int64_t oh, ow;
    if (!check_filter(g, n, &w->shape, w->dtype, x->shape.dim[1], what) ||
        !check_geom(g, c, false, false, what) || !spatial(g, c, &x->shape, &oh, &ow, what))
        return false;
    return set_out(n, x->dtype, x->shape.dim[0], w->shape.dim[0], oh, ow);
}

// (dy, w) -> attr.shape = [N, C, H, W] whose convolution by w is dy's shape,
// H being exactly (OH-1)*stride - pads + dilation*(KH-1) + outpad + 1.
bool shape_conv2d_bwd_data(NnGraph *g, NnNode *n)
{
    const char *what = "conv2d data gradient";
    const NnShape *xs = &n->attr.shape;
    char t[NN_TYPE_BUF];
    if (!check_image(g, n, 0, what) || !same_dtype(g, n, what))
        return false;
    if (xs->rank != 4 || !is_num4(xs, 1) || !nn_rule_shape_ok(g, xs)) {
        nn_set_err(g, "%s: result shape %s is not [N, C, H, W]", what,
                   nn_type_str(g, g->nodes[n->in[0]].dtype, xs, t, sizeof t));
        return false;
    }
    const NnNode *w = &g->nodes[n->in[1]];
    const NnConv2d *c = &n->attr.conv;
    int64_t oh, ow;
    if (!check_filter(g, n, &w->shape, w->dtype, xs->dim[1], what) ||
        !check_geom(g, c, false, true, what) || !spatial(g, c, xs, &oh, &ow, what) ||
        !check_dy(g, n, 0, xs->dim[0], w->shape.dim[0], oh, ow, what))
        return false;
    if (in_len(oh, c->kernel[0], c->stride[0], c->dilation[0], c->pad[0], c->pad[2],
               c->outpad[0]) != xs->dim[2] ||
        in_len(ow, c->kernel[1], c->stride[1], c->dilation[1], c->pad[1], c->pad[3],
               c->outpad[1]) != xs->dim[3]) {
        nn_set_err(g, "%s: output padding [%d, %d] does not give height and width %lldx%lld",
                   what, c->outpad[0], c->outpad[1], (long long)xs->dim[2],
                   (long long)xs->dim[3]);
        return false;
    }
    n->dtype = w->dtype;
    n->shape = *xs;
    return true;
}

// (x, dy) -> attr.shape = the filters [F, C/groups, KH, KW].
bool shape_conv2d_bwd_filter(NnGraph *g, NnNode *n)
{
    const char *what = "conv2d filter gradient";
    if (!check_image(g, n, 0, what) || !same_dtype(g, n, what))
        return false;
    const NnNode *x = &g->nodes[n->in[0]];
    const NnConv2d *c = &n->attr.conv;
    int64_t oh, ow;
    if (!check_filter(g, n, &n->attr.shape, x->dtype, x->shape.dim[1], what) ||
        !check_geom(g, c, false, false, what) || !spatial(g, c, &x->shape, &oh, &ow, what) ||
        !check_dy(g, n, 1, x->shape.dim[0], n->attr.shape.dim[0], oh, ow, what))
        return false;
    n->dtype = x->dtype;
    n->shape = n->attr.shape;
    return true;
}

static bool pool_shape(NnGraph *g, const NnNode *n, const NnShape *x, int64_t *oh, int64_t *ow,
                       const char *what)
{
    return check_geom(g, &n->attr.conv, true, false, what) &&
           spatial(g, &n->attr.conv, x, oh, ow, what);
}

static bool shape_pool(NnGraph *g, NnNode *n, const char *what)
{
    if (!check_image(g, n, 0, what))
        return false;
    const NnNode *x = &g->nodes[n->in[0]];
    int64_t oh, ow;
    if (!pool_shape(g, n, &x->shape, &oh, &ow, what))
        return false;
    return set_out(n, x->dtype, x->shape.dim[0], x->shape.dim[1], oh, ow);
}

bool shape_max_pool2d(NnGraph *g, NnNode *n) { return shape_pool(g, n, "max_pool2d"); }
bool shape_avg_pool2d(NnGraph *g, NnNode *n) { return shape_pool(g, n, "avg_pool2d"); }

// (x, dy) -> like x.
bool shape_max_pool2d_bwd(NnGraph *g, NnNode *n)
{
    const char *what = "max_pool2d gradient";
    if (!check_image(g, n, 0, what) || !same_dtype(g, n, what))
        return false;
    const NnNode *x = &g->nodes[n->in[0]];
    int64_t oh, ow;
    if (!pool_shape(g, n, &x->shape, &oh, &ow, what) ||
        !check_dy(g, n, 1, x->shape.dim[0], x->shape.dim[1], oh, ow, what))
        return false;
    n->dtype = x->dtype;
    n->shape = x->shape;
    return true;
}

// (dy) -> attr.shape, the pooled input's shape.
bool shape_avg_pool2d_bwd(NnGraph *g, NnNode *n)
{
    const char *what = "avg_pool2d gradient";
    const NnShape *xs = &n->attr.shape;
    const NnNode *dy = &g->nodes[n->in[0]];
    char t[NN_TYPE_BUF];
    if (!nn_rule_is_float(dy->dtype) || xs->rank != 4 || !is_num4(xs, 1) ||
        !nn_rule_shape_ok(g, xs)) {
        nn_set_err(g, "%s: result shape %s is not [N, C, H, W]", what,
                   nn_type_str(g, dy->dtype, xs, t, sizeof t));
        return false;
    }
    int64_t oh, ow;
    if (!pool_shape(g, n, xs, &oh, &ow, what) ||
        !check_dy(g, n, 0, xs->dim[0], xs->dim[1], oh, ow, what))
        return false;
    n->dtype = dy->dtype;
    n->shape = *xs;
    return true;
}

// ---- builders ----

// Zero dilation and groups mean 1, so a caller may leave them out.
static NnAttr conv_attr(const NnConv2d *c)
{
    NnAttr a = {0};
    a.conv = *c;
    for (int i = 0; i < 2; i++)
        if (a.conv.dilation[i] == 0)
            a.conv.dilation[i] = 1;
    if (a.conv.groups == 0)
        a.conv.groups = 1;
    return a;
}

static NnId add2(NnGraph *g, NnOp op, NnId a, NnId b, const NnAttr *attr, NnLoc loc)
{
    NnId in[2] = {a, b};
    return nn_ir_add(g, op, in, 2, attr, loc);
}

static void kernel_from(const NnGraph *g, NnId w, NnConv2d *c)
{
    const NnShape *s = &g->nodes[w].shape;
    if (s->rank == 4) {
        c->kernel[0] = (int)(s->dim[2] > 0 && s->dim[2] < (1 << 20) ? s->dim[2] : 0);
        c->kernel[1] = (int)(s->dim[3] > 0 && s->dim[3] < (1 << 20) ? s->dim[3] : 0);
    }
}

NnId nn_ir_conv2d(NnGraph *g, NnId x, NnId w, const NnConv2d *c, NnLoc loc)
{
    NnAttr a = conv_attr(c);
    if (w >= 0)
        kernel_from(g, w, &a.conv);
    a.conv.outpad[0] = a.conv.outpad[1] = 0;
    return add2(g, NN_OP_CONV2D, x, w, &a, loc);
}

// outpad is what the floor in the output length dropped, so the result has
// exactly the forward input's height and width.
NnId nn_ir_conv2d_bwd_data(NnGraph *g, NnId dy, NnId w, const NnShape *xs, const NnConv2d *c,
                           NnLoc loc)
{
    NnAttr a = conv_attr(c);
    if (w >= 0)
        kernel_from(g, w, &a.conv);
    a.shape = *xs;
    for (int i = 0; i < 2 && xs->rank == 4; i++) {
        int64_t span = xs->dim[2 + i] + a.conv.pad[i] + a.conv.pad[i + 2] -
                       (int64_t)a.conv.dilation[i] * (a.conv.kernel[i] - 1) - 1;
        a.conv.outpad[i] = span >= 0 && a.conv.stride[i] > 0 ? (int)(span % a.conv.stride[i]) : 0;
    }
    return add2(g, NN_OP_CONV2D_BWD_DATA, dy, w, &a, loc);
}

NnId nn_ir_conv2d_bwd_filter(NnGraph *g, NnId x, NnId dy, const NnShape *ws, const NnConv2d *c,
                             NnLoc loc)
{
    NnAttr a = conv_attr(c);
    a.shape = *ws;
    if (ws->rank == 4) {
        a.conv.kernel[0] = (int)ws->dim[2];
        a.conv.kernel[1] = (int)ws->dim[3];
    }
    a.conv.outpad[0] = a.conv.outpad[1] = 0;
    return add2(g, NN_OP_CONV2D_BWD_FILTER, x, dy, &a, loc);
}

// A transposed convolution is the data gradient of the convolution that maps
// its output back to its input; its messages speak of the transposed call.
NnId nn_ir_conv_transpose2d(NnGraph *g, NnId x, NnId w, const NnConv2d *c, NnLoc loc)
{
    if (x < 0 || w < 0) {
        nn_set_err(g, "operand failed");
        return -1;
    }
    const NnNode *xn = &g->nodes[x], *wn = &g->nodes[w];
    const char *what = "conv_transpose2d";
    char t[NN_TYPE_BUF], u[NN_TYPE_BUF];
    nn_type_str(g, xn->dtype, &xn->shape, t, sizeof t);
    nn_type_str(g, wn->dtype, &wn->shape, u, sizeof u);
    if (xn->shape.rank != 4 || !is_num4(&xn->shape, 1) || !nn_rule_is_float(xn->dtype)) {
        nn_set_err(g, "%s expects f32[N, C, H, W], got %s", what, t);
        return -1;
    }
    if (wn->shape.rank != 4 || !is_num4(&wn->shape, 0)) {
        nn_set_err(g, "%s expects filters f32[C_in, F/groups, KH, KW], got %s", what, u);
        return -1;
    }
    NnAttr a = conv_attr(c);
    kernel_from(g, w, &a.conv);
    int groups = a.conv.groups;
    if (groups < 1 || xn->shape.dim[1] != wn->shape.dim[0] || wn->shape.dim[0] % groups) {
        nn_set_err(g, "%s: input %s does not match filters %s with groups = %d", what, t, u,
                   groups);
        return -1;
    }
    if (!check_geom(g, &a.conv, false, true, what))
        return -1;
    NnShape s = {4, {xn->shape.dim[0], wn->shape.dim[1] * groups, 0, 0}};
    for (int i = 0; i < 2; i++) {
        s.dim[2 + i] = in_len(xn->shape.dim[2 + i], a.conv.kernel[i], a.conv.stride[i],
                              a.conv.dilation[i], a.conv.pad[i], a.conv.pad[i + 2],
                              a.conv.outpad[i]);
        if (s.dim[2 + i] < 1) {
            nn_set_err(g, "%s: padding [%d, %d, %d, %d] leaves no output for input %s", what,
                       a.conv.pad[0], a.conv.pad[1], a.conv.pad[2], a.conv.pad[3], t);
            return -1;
        }
    }
    a.shape = s;
    return add2(g, NN_OP_CONV2D_BWD_DATA, x, w, &a, loc);
}

NnId nn_ir_pool2d(NnGraph *g, NnOp op, NnId x, const NnConv2d *c, NnLoc loc)
{
    NN_ASSERT(op == NN_OP_MAX_POOL2D || op == NN_OP_AVG_POOL2D);
    NnAttr a = conv_attr(c);
    a.conv.outpad[0] = a.conv.outpad[1] = 0;
    return nn_ir_add(g, op, &x, 1, &a, loc);
}

// ---- VJPs ----

void vjp_conv2d(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnConv2d c = n->attr.conv;
    NnId x = n->in[0], w = n->in[1];
    NnShape xs = g->nodes[x].shape, ws = g->nodes[w].shape;
    NnLoc loc = n->loc;
    gin[0] = nn_ir_conv2d_bwd_data(g, gout, w, &xs, &c, loc);
    gin[1] = nn_ir_conv2d_bwd_filter(g, x, gout, &ws, &c, loc);
}

// bwd_data(dy, w) is linear in each operand; its adjoints are the forward
// convolution (for dy) and the filter gradient with the roles swapped (for w).
void vjp_conv2d_bwd_data(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnConv2d c = n->attr.conv;
    NnId dy = n->in[0], w = n->in[1];
    NnShape ws = g->nodes[w].shape;
    NnLoc loc = n->loc;
    gin[0] = nn_ir_conv2d(g, gout, w, &c, loc);
    gin[1] = nn_ir_conv2d_bwd_filter(g, gout, dy, &ws, &c, loc);
}

void vjp_conv2d_bwd_filter(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnConv2d c = n->attr.conv;
    NnId x = n->in[0];
    NnShape xs = g->nodes[x].shape;
    NnLoc loc = n->loc;
    gin[0] = nn_ir_conv2d_bwd_data(g, n->in[1], gout, &xs, &c, loc);
    gin[1] = nn_ir_conv2d(g, x, gout, &c, loc);
}

void vjp_max_pool2d(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnAttr a = {0};
    a.conv = n->attr.conv;
    gin[0] = add2(g, NN_OP_MAX_POOL2D_BWD, n->in[0], gout, &a, n->loc);
}

void vjp_max_pool2d_bwd(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    (void)gout;
    (void)gin;
    nn_rule_no_vjp(g, id);
}

void vjp_avg_pool2d(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnAttr a = {0};
    a.conv = n->attr.conv;
    a.shape = g->nodes[n->in[0]].shape;
    gin[0] = nn_ir_add(g, NN_OP_AVG_POOL2D_BWD, &gout, 1, &a, n->loc);
}

void vjp_avg_pool2d_bwd(NnGraph *g, NnId id, NnId gout, NnId *gin)
{
    const NnNode *n = &g->nodes[id];
    NnConv2d c = n->attr.conv;
    gin[0] = nn_ir_pool2d(g, NN_OP_AVG_POOL2D, gout, &c, n->loc);
}
