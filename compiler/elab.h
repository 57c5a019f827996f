// Internal to the lowering (lower.c, builtin.c, train.c, datalower.c): the
// elaborator's values and environments. Elaboration evaluates the AST with
// compile-time numbers folded and tensors turned into IR nodes; every fn,
// layer and loss call is inlined, so the graph holds primitive ops only.
#ifndef NN_ELAB_H
#define NN_ELAB_H

#include "lower.h"

typedef enum VKind {
    V_NONE,   // no value (a failed expression: its error is already reported)
    V_TENSOR, // id
    V_NUM,    // num; is_int with exact dim (negative = symbolic dim)
    V_BOOL,   // num 0/1
    V_STR,    // str
    V_DECL,   // decl: fn/layer/loss/model/optimizer/extern
    V_BUILTIN,// str = builtin name
    V_BOUND,  // a layer with bound arguments and its own scope (enc = dense(units: 64))
    V_LIST,   // list
} VKind;

typedef struct Val Val;
typedef struct Bound Bound;

typedef struct VList {
    Val *items;
    int count;
} VList;

struct Val {
    VKind kind;
    NnId id;
    double num;
    float fnum;  // V_NUM: num as f32 arithmetic computes it (each literal and each
                 // operation rounded to f32); what an f32 CONST made from it holds
    bool is_int;
    bool sym;    // V_NUM is a symbolic dim (dim < 0 names a graph symbol)
    int64_t dim; // V_NUM with is_int: the exact value
    const char *str;
    const NnAst *decl;
    Bound *bound;
    VList *list;
};

typedef struct Bind {
    const char *name;
    Val v;
    struct Bind *next;
} Bind;

// One scope of bindings, newest first. Past a few bindings, `slots` hashes
// names to their newest Bind, so long bodies elaborate in linear time.
typedef struct Env {
    Bind *head;
    struct Env *parent; // NULL: falls back to globals
    Bind **slots;       // NULL until nbinds > 8; then power of two >= 2 * nbinds
    int nslots, nbinds;
} Env;

typedef struct Arg {
    const char *name; // NULL for positional
    Val v;
    NnLoc loc;
    NnLoc from;       // where a model input comes from (a data field), else no src
    const char *field; // that data field's name (NULL: the formal's name)
} Arg;

struct Bound {
    const NnAst *decl;
    Arg *args;
    int nargs;
    const char *scope; // parameter path prefix
};

typedef struct Counter {
    const char *key;
    int n;
    struct Counter *next;
} Counter;

// A resolver for names not found in any scope (the train block binds data
// fields to INPUT nodes on first use).
typedef struct LoopCtx LoopCtx; // the innermost loop being unrolled (index.c)

typedef bool (*Resolver)(void *ctx, const char *name, NnLoc loc, Val *out);

typedef struct Lower {
    NnCtx *c;
    const NnProgram *prog;
    NnGraph *g;
    bool training;    // the training graph: dropout active, training() is true
    NnId step;        // step counter value for this run (scalar f32), -1 if none
    uint64_t seed;    // base for dropout/random seeds
    int nrandom;      // random ops made so far (each gets its own seed)
    int ndropout;     // dropout sites made so far; site K's rate is "hyper/dropoutK"
    const char *hprefix;   // run-time hyperparameters' name prefix: "" or "disc/"
    NnSetting *drop_sets;  // --set dropout=R / dropoutK=R: initial rates (already checked)
    int ndrop_sets;
    const char *scope;// current parameter path ("mlp.dense1")
    Counter *counters;
    int depth;        // inlining depth (guards runaway recursion)
    NnParamInit *vars;
    NnId *var_ids; // node of vars[i] in g
    int nvars, varcap;
    const char *bind_name; // target of `name = layer(...)`, consumed by the call
    Resolver resolve;
    void *resolve_ctx;
    // Where a name that resolve knows gets its value (a data field's statement),
    // for a note when that value has the wrong type for a call; may be NULL.
    NnLoc (*origin)(void *ctx, const char *name);
    const char *const *resolve_names; // what resolve knows, for "did you mean"
    int nresolve_names;
    LoopCtx *loop; // NULL outside for loops
    int64_t unrolled; // loop steps elaborated so far, all loops together
    // Layer state updates (`state` in layers): the final value of each state
    // when its layer returns; only the step graph applies them.
    NnId *upd_var, *upd_val;
    int nupd, updcap;
    // The user's call of a library layer (stdlib or imported) being inlined:
    // errors that library code raises are reported there, naming the layer.
    NnLoc user_loc;
    const char *user_call; // layer name, NULL outside library code
} Lower;

void lower_init(Lower *L, NnCtx *c, const NnProgram *p, NnGraph *g);
// A run-time hyperparameter: scalar f32 STATE "PREFIXhyper/NAME" starting at v (train.c).
NnId hyper_var(Lower *L, const char *prefix, const char *name, double v, NnLoc loc);
Val eval(Lower *L, Env *env, const NnAst *e);
Val eval_block(Lower *L, Env *env, const NnAstList *stmts, const NnAst *owner);
Val call_value(Lower *L, Val callee, Arg *args, int nargs, NnLoc loc, const char *bind_name);
Val call_decl(Lower *L, const NnAst *decl, Arg *args, int nargs, NnLoc loc, const char *scope);
// After a failed call: unless the latest diagnostic already points into the
// user's file, adds "in call to 'mse' from here" at the call site, so an error
// inside a library function leads back, frame by frame, to the user's line.
void call_note(Lower *L, const NnAst *decl, NnLoc loc);
bool eval_args(Lower *L, Env *env, const NnAstList *kids, const Val *first, Arg **out, int *n);

void env_bind(Lower *L, Env *env, const char *name, Val v);
// Assignment: rebinds `name` in env itself (not a parent) in place, or adds it.
void env_set(Lower *L, Env *env, const char *name, Val v);
// One statement of a block other than `return`; false after reporting an error.
bool exec_stmt(Lower *L, Env *env, const NnAst *s, const NnAst *owner);

// Indexing, tuples and loops (index.c).
Val eval_index(Lower *L, Env *env, const NnAst *e);
bool assign_index(Lower *L, Env *env, const NnAst *target, Val v, NnLoc loc);
bool assign_stmt(Lower *L, Env *env, const NnAst *s);
bool exec_for(Lower *L, Env *env, const NnAst *s, const NnAst *owner);
// Tensors of one shape joined along a new axis `axis` (0 <= axis <= rank).
NnId stack_ids(Lower *L, const NnId *ids, int n, int axis, NnLoc loc);
bool env_lookup(Env *env, const char *name, Val *out);

Val v_tensor(NnId id);
Val v_num(double x);
Val v_int(int64_t x);
Val v_none(void);
// A number from a double and its f32 evaluation (see Val.fnum).
Val v_real(double x, float f);
// Converts a number to a scalar CONST in dtype dt (tensor stays).
NnId as_tensor(Lower *L, Val v, NnDType dt, NnLoc loc);
NnNode *vnode(Lower *L, Val v);
const char *val_desc(Lower *L, Val v, char *buf, size_t n); // "f32[N, 10]", "number 3", ...

// A call of an `extern` C function: one EXTERN node (extern.c).
Val call_extern(Lower *L, const NnAst *d, Arg *args, int nargs, NnLoc loc);

// Builtins (builtin.c).
Val call_builtin(Lower *L, const char *name, Arg *args, int nargs, NnLoc loc);
// conv, conv_transpose, pool_max, pool_avg, pad, concat (builtin_conv.c);
// v and set hold the bound arguments in formal order.
Val conv_builtin(Lower *L, const char *name, Val *v, bool *set, NnLoc loc);
// Initializer names valid after `param x: T =`, with their argument counts.
bool init_known(const char *name, int *maxargs);

// Node creation with error reporting at loc (returns -1 after reporting).
NnId checked(Lower *L, NnId id, NnLoc loc);
// Where an error raised at loc is reported: loc itself, or the user's call
// when loc is inside library code (see Lower.user_loc).
NnLoc user_loc(Lower *L, NnLoc loc);
// Registers a PARAM/STATE initializer; returns the existing node if the name exists.
NnId make_var(Lower *L, NnOp op, const char *name, NnDType dt, const NnShape *s, const char *init,
              const double *args, int nargs, NnLoc loc);

#endif
