// Calls of `extern` C functions: binds the arguments to the declaration's
// formals (positional or named), converts numbers to scalars of the C
// argument's dtype, and emits one EXTERN node, elementwise over tensors with
// broadcasting. A declared derivative (`grad f(x) = ...`, attached to the
// declaration by sema) is elaborated into the node's attr.body, a small graph
// over stand-ins for the arguments, which the node's VJP instantiates.
#include "elab.h"

#include <string.h>

#include "pass.h" // nn_graph_new_child

static NnDType c_dtype(const NnAst *t)
{
    return !strcmp(t->name, "f64") ? NN_DT_F64 : !strcmp(t->name, "i32") ? NN_DT_I32 : NN_DT_F32;
}

static const char *c_name(NnDType dt)
{
    return dt == NN_DT_F64 ? "double" : dt == NN_DT_I32 ? "int" : "float";
}

// The derivative graph: one INPUT per argument (its shape and dtype), output
// k = d f / d argument k. NULL after reporting an error.
static NnGraph *derivative(Lower *L, const NnAst *d, const NnId *ins, int n)
{
    const NnAst *gd = d->a;
    NnGraph *outer = L->g, *body = nn_graph_new_child(outer);
    Env env = {0};
    for (int k = 0; k < n; k++) {
        const NnNode *x = nn_node(outer, ins[k]);
        NnShape s = x->shape;
        NnId in = nn_ir_source(body, NN_OP_INPUT, gd->params.items[k]->name, x->dtype, &s,
                               gd->params.items[k]->loc);
        env_bind(L, &env, gd->params.items[k]->name, v_tensor(in));
    }
    L->g = body;
    Val r = eval(L, &env, gd->a);
    bool ok = r.kind != V_NONE;
    if (ok && n > 1 && (r.kind != V_LIST || r.list->count != n)) {
        nn_error(&L->c->diags, gd->a->loc, "the derivative of '%s' (%d arguments) must be a "
                 "list of %d partial derivatives, [d/d%s, ...]", d->name, n, n,
                 gd->params.items[0]->name);
        ok = false;
    }
    for (int k = 0; ok && k < n; k++) {
        Val v = n == 1 && r.kind != V_LIST ? r : r.kind == V_LIST ? r.list->items[k] : v_none();
        NnDType dt = body->nodes[k].dtype == NN_DT_I32 ? d->type && c_dtype(d->type) != NN_DT_I32
                                                             ? c_dtype(d->type) : NN_DT_F32
                                                       : body->nodes[k].dtype;
        NnId id = v.kind == V_NUM || v.kind == V_TENSOR ? as_tensor(L, v, dt, gd->a->loc) : -1;
        if (id < 0) {
            char b[64];
            if (v.kind != V_NONE)
                nn_error(&L->c->diags, gd->a->loc, "a derivative must be a number or a tensor, "
                         "got %s", val_desc(L, v, b, sizeof b));
            ok = false;
            break;
        }
        nn_graph_add_output(body, "d", id);
    }
    L->g = outer;
    return ok ? body : NULL;
}

Val call_extern(Lower *L, const NnAst *d, Arg *args, int nargs, NnLoc loc)
{
    int nf = d->params.count;
    Val v[3];
    bool set[3] = {false, false, false};
    int pos = 0;
    NN_ASSERT(nf >= 1 && nf <= 3); // sema checked the signature
    for (int i = 0; i < nargs; i++) {
        NnLoc at = args[i].loc.src ? args[i].loc : loc;
        int k = -1;
        if (args[i].name) {
            for (int j = 0; j < nf; j++)
                if (!strcmp(d->params.items[j]->name, args[i].name))
                    k = j;
            if (k < 0) {
                nn_error(&L->c->diags, at, "extern function '%s' has no argument '%s'", d->name,
                         args[i].name);
                return v_none();
            }
        } else if ((k = pos++) >= nf) {
            nn_error(&L->c->diags, at, "extern function '%s' takes %d argument%s, got more",
                     d->name, nf, nf == 1 ? "" : "s");
            return v_none();
        }
        if (set[k]) {
            nn_error(&L->c->diags, at, "argument '%s' of '%s' is given twice",
                     d->params.items[k]->name, d->name);
            return v_none();
        }
        v[k] = args[i].v;
        set[k] = true;
    }
    NnId ins[3];
    for (int k = 0; k < nf; k++) {
        const NnAst *f = d->params.items[k];
        NnDType dt = c_dtype(f->type);
        if (!set[k]) {
            nn_error(&L->c->diags, loc, "extern function '%s' is missing argument '%s'", d->name,
                     f->name);
            return v_none();
        }
        if (v[k].kind == V_NONE)
            return v[k];
        if (v[k].kind == V_NUM) {
            ins[k] = as_tensor(L, v[k], dt, loc);
        } else if (v[k].kind == V_TENSOR && vnode(L, v[k])->dtype == dt) {
            ins[k] = v[k].id;
        } else {
            char b[64];
            nn_error(&L->c->diags, loc, "argument '%s' of extern function '%s' must be %s (a C "
                     "%s) or a tensor of them, got %s", f->name, d->name, f->type->name,
                     c_name(dt), val_desc(L, v[k], b, sizeof b));
            call_note(L, d, loc);
            return v_none();
        }
        if (ins[k] < 0)
            return v_none();
    }
    NnAttr a = {0};
    a.dtype = c_dtype(d->type);
    a.sym = d->name;
    a.lib = d->str;
    if (d->a && !(a.body = derivative(L, d, ins, nf))) {
        call_note(L, d, loc);
        return v_none();
    }
    NnId id = checked(L, nn_ir_add(L->g, NN_OP_EXTERN, ins, nf, &a, loc), loc);
    return id < 0 ? v_none() : v_tensor(id);
}
