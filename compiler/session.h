// A session: one loaded program (its definitions, added to and replaced one
// at a time), the data sets its expressions and train blocks have read, one
// table of weights and optimizer state that every training run continues
// from, and the compiled step of the latest train block, kept so that
// training again compiles nothing. Every call returns a status and leaves its
// diagnostics on the session's NnCtx (printed as they come); none exits, and
// a failed call leaves the session as it was. `nnc train`, `nnc eval` and
// `nnc repl` are thin layers on it (Lua's lua_State and lua.c are the model).
#ifndef NN_SESSION_H
#define NN_SESSION_H

#include "driver.h"

typedef struct NnSession NnSession;

// A fresh session with nothing loaded. o gives the backend, threads, passes,
// quiet/verbose and metrics of every run (copied; o->sets are ignored, since
// each train call brings its own). Diagnostics go to diag, values to out.
// NULL when out of memory.
NnSession *nn_session_new(const NnOptions *o, FILE *out, FILE *diag);
// A session over a program the caller has parsed and checked (nnc train and
// eval): c, p and o (whose --set options and --weights the runs use) stay
// the caller's and must outlive the session.
NnSession *nn_session_open(NnCtx *c, const NnProgram *p, NnOptions *o);
void nn_session_free(NnSession *s);
NnCtx *nn_session_ctx(NnSession *s);

// Adds a .nn file's definitions (train blocks are kept, not run).
bool nn_session_load_file(NnSession *s, const char *path);
// Runs text as typed at the prompt, named "<repl>" in diagnostics with lines
// counted over the whole session: definitions are added (a redefinition
// replaces the old one and says so on out), an expression is evaluated and
// printed with its type, `name = expr` keeps a value, and a train statement
// trains from the current weights (`train m on d with k = v, ...` starts from
// the settings of the session's block for m on d).
bool nn_session_run(NnSession *s, const char *text);
// Evaluates one expression; *out gets an owned tensor (a number becomes a
// scalar f32, or i32 when whole).
bool nn_session_eval(NnSession *s, const char *expr, NnTensor **out);
// The type of an expression ("f32[4, 10]"), lowered but not run.
bool nn_session_type(NnSession *s, const char *expr, char *buf, size_t n);
// Trains the session's block `model on data` with settings overridden by sets
// (keys and values as --set takes them), from the current weights.
bool nn_session_train(NnSession *s, const char *model, const char *data, const NnSetting *sets,
                      int nsets);
// Evaluates the current weights on the block's test split (else val, train).
bool nn_session_evaluate(NnSession *s, const char *model, const char *data);
// Trains the program's train block i (nnc train), or evaluates it with the
// weights of o->weights (nnc eval). Returns an exit status.
int nn_session_run_block(NnSession *s, int i, bool eval_only);
// Checkpoints: every weight and optimizer state the session holds.
bool nn_session_save(NnSession *s, const char *path);
bool nn_session_load_weights(NnSession *s, const char *path);
// Forgets weights, optimizer state, kept values and compiled steps;
// definitions and data stay.
void nn_session_reset(NnSession *s);
// Runs expressions and training on backend `name` ("jit", "interp") from now
// on (NULL: changes nothing); prints which backends run them. Expressions use
// the interpreter until this is called, whatever --backend says.
bool nn_session_backend(NnSession *s, const char *name);
// Prints model `name` (or the train block of that model) at stage S.
bool nn_session_ir(NnSession *s, const char *name, const char *stage);

// Names for completion: definitions, data paths, kept values, builtins seen.
// Returns how many were stored in names (at most max); valid until the next call.
int nn_session_names(NnSession *s, const char **names, int max);
// Prepared step/eval graph sets and JIT-compiled expressions so far.
int nn_session_compiles(const NnSession *s);
// Counts lines the caller handled itself (REPL commands), so "<repl>:N" in
// diagnostics stays the Nth line typed.
void nn_session_count_lines(NnSession *s, int n);
// True when text leaves a bracket, brace or string open (more lines needed).
bool nn_session_incomplete(const char *text);
// Prints a tensor as "f32[2, 3]" and its values, compactly, aligned, eliding
// the middle of long dimensions.
void nn_value_print(FILE *out, const NnTensor *t);

#endif
