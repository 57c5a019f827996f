// Updates written in place (runtime/step.c, "in place"): where the kernel
// computing an update reads its variable only at the element it writes and
// nothing reads the variable afterwards, the new value goes straight into the
// variable's buffer. The variables end bit for bit as with the swap buffers
// (NN_STEP_INPLACE=0) on 1 and 2 threads, kernel by kernel and with the batch
// split across threads; a step that fails on a bad label leaves every
// variable as it was; an update that reads its variable at another element,
// a variable read after its update's kernel, and a variable that is also an
// output are not written in place. `nnc train` under Adam with weight decay
// (the weight read by its gradient product's epilogue, the update in the
// same kernel) writes checkpoints byte-identical to the swap's.
#define _GNU_SOURCE // asprintf
#include "agree.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "autodiff.h"
#include "step.h" // NNRT_FEW_ROWS
#include "testutil.h"

#ifndef NN_WITH_LLVM
#define NEED_LLVM() cr_skip_test("built without LLVM")
#else
#define NEED_LLVM() (void)0
#endif

enum { IN = 72, HID = 136, OUT = 10 };

// x[N, 72] -> relu(x @ w1 + b1) @ w2 + b2, cross-entropy against labels
// (TAKE: a label check), momentum SGD on the four parameters (a moment each,
// a state): eight updates, each elementwise over its variable. Six are
// written in place: each weight's w' = w - lr (mu m + g) is computed in the
// epilogue of the product giving g, in one kernel with m' = mu m + g, and
// fusion lets w' read m itself, so m' stored in place could reach w' or not
// depending on the members' order: w1's and w2's moments keep the swap.
// With the batch split across threads the update reads the gradients' sums,
// not the products (no epilogue), and all eight are written in place.
static NnGraph *net(void)
{
    NnGraph *g = nn_graph_new();
    int64_t n = nn_sym_dim(g, "N");
    NnId x = ag_input(g, "x", NN_DT_F32, AG_SHAPE(n, IN));
    NnId labels = ag_input(g, "labels", NN_DT_I32, AG_SHAPE(n));
    const char *names[4] = {"w1", "b1", "w2", "b2"}, *mom[4] = {"w1/m", "b1/m", "w2/m", "b2/m"};
    NnShape shapes[4] = {AG_SHAPE(IN, HID), AG_SHAPE(HID), AG_SHAPE(HID, OUT), AG_SHAPE(OUT)};
    NnId w[4], m[4];
    for (int k = 0; k < 4; k++) {
        w[k] = ag_param(g, names[k], shapes[k]);
        m[k] = nn_ir_source(g, NN_OP_STATE, mom[k], NN_DT_F32, &shapes[k], ag_loc);
    }
    NnId h = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, x, w[0], false, false, ag_loc), w[1],
                          ag_loc);
    h = nn_ir_binary(g, NN_OP_MAX, h, nn_ir_const(g, 0, NN_DT_F32, ag_loc), ag_loc);
    NnId logits = nn_ir_binary(g, NN_OP_ADD, nn_ir_matmul(g, h, w[2], false, false, ag_loc),
                               w[3], ag_loc);
    NnId lse = nn_ir_reduce(g, NN_OP_LOGSUMEXP, logits, 2, false, ag_loc);
    NnId ins[2] = {logits, labels};
    NnAttr ta = {.axis = 1};
    NnId ce = nn_ir_binary(g, NN_OP_SUB, lse, nn_ir_add(g, NN_OP_TAKE, ins, 2, &ta, ag_loc),
                           ag_loc);
    NnId loss = nn_ir_reduce(g, NN_OP_REDUCE_MEAN, ce, 1, false, ag_loc);
    nn_graph_add_output(g, "loss", loss);
    NnId grads[4];
    cr_assert(nn_ad_grad(g, loss, w, 4, grads), "autodiff: %s", g->err);
    NnId lr = nn_ir_const(g, 0.05, NN_DT_F32, ag_loc), mu = nn_ir_const(g, 0.9, NN_DT_F32, ag_loc);
    for (int k = 0; k < 4; k++) {
        NnId mk = nn_ir_binary(g, NN_OP_ADD, nn_ir_binary(g, NN_OP_MUL, m[k], mu, ag_loc),
                               grads[k], ag_loc);
        nn_graph_add_update(g, m[k], mk);
        nn_graph_add_update(g, w[k], nn_ir_binary(g, NN_OP_SUB, w[k],
                                                  nn_ir_binary(g, NN_OP_MUL, mk, lr, ag_loc),
                                                  ag_loc));
    }
    return g;
}

static void net_vars(NnVars *v)
{
    nnrt_vars_init(v);
    nnrt_vars_put(v, "w1", ag_tensor(NN_DT_F32, AG_SHAPE(IN, HID), 1, -0.15, 0.15));
    nnrt_vars_put(v, "b1", ag_tensor(NN_DT_F32, AG_SHAPE(HID), 2, -0.1, 0.1));
    nnrt_vars_put(v, "w2", ag_tensor(NN_DT_F32, AG_SHAPE(HID, OUT), 3, -0.2, 0.2));
    nnrt_vars_put(v, "b2", ag_tensor(NN_DT_F32, AG_SHAPE(OUT), 4, -0.1, 0.1));
    const char *mom[4] = {"w1/m", "b1/m", "w2/m", "b2/m"};
    NnShape shapes[4] = {AG_SHAPE(IN, HID), AG_SHAPE(HID), AG_SHAPE(HID, OUT), AG_SHAPE(OUT)};
    for (int k = 0; k < 4; k++)
        nnrt_vars_put(v, mom[k], ag_tensor(NN_DT_F32, shapes[k], 0, 0, 0));
}

static NnTensor *batch_x(int step, int64_t rows)
{
    return ag_tensor(NN_DT_F32, AG_SHAPE(rows, IN), 100 + (uint64_t)step, -1, 1);
}

static NnTensor *batch_y(int step, int64_t rows)
{
    return ag_tensor(NN_DT_I32, AG_SHAPE(rows), 200 + (uint64_t)step, 0, OUT);
}

#ifdef NN_WITH_LLVM
// Trains `steps` steps on the JIT into v; *in_place: updates the last step
// wrote in place; *fixed: whether w1's buffer stayed where it was.
static void train(const NnGraph *g, NnVars *v, int threads, int64_t rows, int steps,
                  int *in_place, bool *fixed)
{
    NnExecOptions opt = {.threads = threads, .batch = rows};
    NnExec *x = nn_backend_jit.prepare(g, &opt);
    cr_assert(x, "%s", nnrt_errmsg());
    void *w1 = nnrt_vars_get(v, "w1")->data;
    *fixed = true;
    for (int s = 0; s < steps; s++) {
        NnTensor *ins[2] = {batch_x(s, rows), batch_y(s, rows)}, *out[1];
        cr_assert_eq(nn_backend_jit.run(x, v, ins, out), NN_OK, "%s", nnrt_errmsg());
        *fixed = *fixed && nnrt_vars_get(v, "w1")->data == w1;
        nnrt_tensor_free(ins[0]);
        nnrt_tensor_free(ins[1]);
    }
    *in_place = nn_llvm_in_place(x);
    nn_backend_jit.free(x);
}

static void expect_same_vars(const NnVars *a, const NnVars *b, const char *what)
{
    for (int k = 0; k < a->count; k++) {
        const NnTensor *t = nnrt_vars_get(b, a->names[k]);
        cr_assert(t, "%s: %s missing", what, a->names[k]);
        cr_expect(memcmp(t->data, a->tensors[k]->data, nnrt_tensor_nbytes(t)) == 0,
                  "%s: %s differs", what, a->names[k]);
    }
}
#endif

// In place against the swap: the same bits, on 1 and 2 threads, at a batch
// whose products split by panels (128) and one with short tiles (37), and
// with the batch split across 2 threads for the whole step (NN_SPLIT_ROWS:
// the update part runs after the lanes, in place too). A batch of at most
// NNRT_FEW_ROWS may run as one dispatch (the few-rows path, which has no
// place to check labels between kernels), so it keeps the swap; 5 rows
// write in place again.
Test(inplace, same_bits_as_the_swap)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    NnGraph *g = net();
    struct {
        int threads;
        int64_t rows;
        const char *split;
    } runs[] = {{1, 128, NULL}, {2, 128, NULL}, {2, 37, NULL},
                {2, 128, "32"}, {2, 4, NULL},  {2, 5, NULL}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        if (runs[r].split)
            setenv("NN_SPLIT_ROWS", runs[r].split, 1);
        NnVars a, b;
        net_vars(&a);
        net_vars(&b);
        int na, nb;
        bool fa, fb;
        train(g, &a, runs[r].threads, runs[r].rows, 5, &na, &fa);
        setenv("NN_STEP_INPLACE", "0", 1);
        train(g, &b, runs[r].threads, runs[r].rows, 5, &nb, &fb);
        unsetenv("NN_STEP_INPLACE");
        unsetenv("NN_SPLIT_ROWS");
        char what[96];
        snprintf(what, sizeof what, "%d thread(s), batch %lld%s", runs[r].threads,
                 (long long)runs[r].rows, runs[r].split ? ", split" : "");
        int want = runs[r].split ? 8 : runs[r].rows <= NNRT_FEW_ROWS ? 0 : 6;
        cr_expect_eq(na, want, "%s: %d of 8 updates in place, not %d", what, na, want);
        cr_expect(fa == (want > 0), "%s: w1 %s", what,
                  want ? "should stay in its buffer when updated in place"
                       : "should swap buffers in a few-rows run");
        cr_expect_eq(nb, 0, "%s: NN_STEP_INPLACE=0 wrote %d in place", what, nb);
        cr_expect(!fb, "%s: with NN_STEP_INPLACE=0 w1 should swap buffers", what);
        expect_same_vars(&a, &b, what);
        nnrt_vars_fini(&a);
        nnrt_vars_fini(&b);
    }
    nn_graph_free(g);
#endif
}

// A bad label (row 77 of 128, in the second lane when the batch is split)
// fails the step before any update is written: every variable, weights and
// moments, holds the bytes it held before the step, and the next good step
// runs as if the bad one had not been tried.
Test(inplace, failing_step_leaves_variables_unchanged)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    NnGraph *g = net();
    struct {
        int threads;
        const char *split, *profile;
    } runs[] = {{1, NULL, NULL}, {2, NULL, NULL}, {2, "32", NULL}, {2, NULL, "1"}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        if (runs[r].split)
            setenv("NN_SPLIT_ROWS", runs[r].split, 1);
        if (runs[r].profile)
            setenv("NN_JIT_PROFILE", runs[r].profile, 1);
        char what[96];
        snprintf(what, sizeof what, "%d thread(s)%s%s", runs[r].threads,
                 runs[r].split ? ", split" : "", runs[r].profile ? ", profiled" : "");
        NnVars v, ref;
        net_vars(&v);
        net_vars(&ref);
        NnExecOptions opt = {.threads = runs[r].threads, .batch = 128};
        NnExec *x = nn_backend_jit.prepare(g, &opt);
        cr_assert(x, "%s", nnrt_errmsg());
        NnTensor *out[1];
        for (int s = 0; s < 3; s++) {
            NnTensor *ins[2] = {batch_x(s, 128), batch_y(s, 128)};
            if (s == 1)
                ((int32_t *)ins[1]->data)[77] = OUT; // one past the last class
            NnStatus st = nn_backend_jit.run(x, &v, ins, out);
            if (s == 1) {
                cr_expect_eq(st, NN_ERR_RUNTIME, "%s: the bad label should fail the step", what);
                cr_expect(strstr(nnrt_errmsg(), "row 77"), "%s: %s", what, nnrt_errmsg());
                expect_same_vars(&ref, &v, what);
            } else {
                cr_assert_eq(st, NN_OK, "%s: %s", what, nnrt_errmsg());
                if (!runs[r].profile)
                    cr_expect_eq(nn_llvm_in_place(x), runs[r].split ? 8 : 6,
                                 "%s: %d of 8 updates in place", what, nn_llvm_in_place(x));
                // The reference: the same good steps, with the swap.
                setenv("NN_STEP_INPLACE", "0", 1);
                NnExec *y = nn_backend_jit.prepare(g, &opt);
                cr_assert(y, "%s", nnrt_errmsg());
                cr_assert_eq(nn_backend_jit.run(y, &ref, ins, out), NN_OK, "%s", nnrt_errmsg());
                nn_backend_jit.free(y);
                unsetenv("NN_STEP_INPLACE");
                expect_same_vars(&ref, &v, what);
            }
            nnrt_tensor_free(ins[0]);
            nnrt_tensor_free(ins[1]);
        }
        unsetenv("NN_SPLIT_ROWS");
        unsetenv("NN_JIT_PROFILE");
        nn_backend_jit.free(x);
        nnrt_vars_fini(&v);
        nnrt_vars_fini(&ref);
    }
    nn_graph_free(g);
#endif
}

// Which variables the compiler keeps out of place: a := a / 2 with a + a'
// an output (a kernel after a's update reads a); c := c / 2 with c itself an
// output (read after the step). Their buffers alternate with their swap
// buffers step by step. b := b / 2 + 1 is written in place (its buffer stays),
// and s := transpose(s) / 2 may be (the transpose, its own kernel, reads s
// before the update's kernel); e := e / 2 keeps its swap because f := e
// takes e's value from before the step: every variable and output holds
// what the interpreter computes.
Test(inplace, only_same_element_last_readers)
{
    NEED_LLVM();
#ifdef NN_WITH_LLVM
    NnGraph *g = nn_graph_new();
    NnId s = ag_param(g, "s", AG_SHAPE(48, 48)), a = ag_param(g, "a", AG_SHAPE(48, 48));
    NnId b = ag_param(g, "b", AG_SHAPE(48, 48)), c = ag_param(g, "c", AG_SHAPE(48, 48));
    NnId e = ag_param(g, "e", AG_SHAPE(48, 48)), f = ag_param(g, "f", AG_SHAPE(48, 48));
    NnId half = nn_ir_const(g, 0.5, NN_DT_F32, ag_loc);
    int perm[NN_MAX_RANK] = {1, 0};
    NnId s2 = nn_ir_binary(g, NN_OP_MUL, nn_ir_transpose(g, s, perm, ag_loc), half, ag_loc);
    NnId a2 = nn_ir_binary(g, NN_OP_MUL, a, half, ag_loc);
    NnId b2 = nn_ir_binary(g, NN_OP_ADD, nn_ir_binary(g, NN_OP_MUL, b, half, ag_loc),
                           nn_ir_const(g, 1, NN_DT_F32, ag_loc), ag_loc);
    NnId c2 = nn_ir_binary(g, NN_OP_MUL, c, half, ag_loc);
    nn_graph_add_output(g, "sum", nn_ir_binary(g, NN_OP_ADD, a, a2, ag_loc));
    nn_graph_add_output(g, "c", c);
    nn_graph_add_update(g, s, s2);
    nn_graph_add_update(g, a, a2);
    nn_graph_add_update(g, b, b2);
    nn_graph_add_update(g, c, c2);
    nn_graph_add_update(g, e, nn_ir_binary(g, NN_OP_MUL, e, half, ag_loc));
    nn_graph_add_update(g, f, e); // f takes e's value from before the step
    const char *names[6] = {"s", "a", "b", "c", "e", "f"};
    NnVars vi, vj;
    nnrt_vars_init(&vi);
    nnrt_vars_init(&vj);
    for (int k = 0; k < 6; k++) {
        nnrt_vars_put(&vi, names[k], ag_tensor(NN_DT_F32, AG_SHAPE(48, 48), 10 + k, -1, 1));
        nnrt_vars_put(&vj, names[k], ag_tensor(NN_DT_F32, AG_SHAPE(48, 48), 10 + k, -1, 1));
    }
    NnExecOptions opt = {.threads = 2};
    NnExec *xi = nn_backend_interp.prepare(g, &opt), *xj = nn_backend_jit.prepare(g, &opt);
    cr_assert(xi && xj, "%s", nnrt_errmsg());
    void *was[6];
    for (int step = 0; step < 3; step++) {
        for (int k = 0; k < 6; k++)
            was[k] = nnrt_vars_get(&vj, names[k])->data;
        NnTensor *oi[2], *oj[2];
        cr_assert_eq(nn_backend_interp.run(xi, &vi, NULL, oi), NN_OK, "%s", nnrt_errmsg());
        cr_assert_eq(nn_backend_jit.run(xj, &vj, NULL, oj), NN_OK, "%s", nnrt_errmsg());
        char why[256];
        for (int k = 0; k < 2; k++)
            cr_expect(ag_close(oj[k], oi[k], 1e-6, why, sizeof why), "step %d, output %d: %s",
                      step, k, why);
        for (int k = 0; k < 6; k++)
            cr_expect(ag_close(nnrt_vars_get(&vj, names[k]), nnrt_vars_get(&vi, names[k]), 1e-6,
                               why, sizeof why),
                      "step %d, %s: %s", step, names[k], why);
        cr_expect(nnrt_vars_get(&vj, "a")->data != was[1], "step %d: a written in place", step);
        cr_expect(nnrt_vars_get(&vj, "c")->data != was[3], "step %d: c written in place", step);
        cr_expect(nnrt_vars_get(&vj, "b")->data == was[2], "step %d: b not in place", step);
        cr_expect(nnrt_vars_get(&vj, "e")->data != was[4],
                  "step %d: e written in place, though f's update takes its old value", step);
    }
    int n = nn_llvm_in_place(xj);
    cr_expect(n >= 1 && n <= 2, "b (and perhaps s) should be written in place, not %d", n);
    nn_backend_interp.free(xi);
    nn_backend_jit.free(xj);
    nnrt_vars_fini(&vi);
    nnrt_vars_fini(&vj);
    nn_graph_free(g);
#endif
}

// The whole file at path into *n bytes (malloc'd).
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    cr_assert(b && fread(b, 1, (size_t)len, f) == (size_t)len, "cannot read %s", path);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static const char cli_mlp[] = "import std\n"
                              "data d {\n"
                              "    x     = uniform([600, 50], -1, 1)\n"
                              "    label = i32(uniform([600], 0, 2.999))\n"
                              "}\n"
                              "model net(x: f32[N, 50]) -> f32[N, 3] {\n"
                              "    h = x |> dense(40) |> relu\n"
                              "    h = h |> dense(20) |> tanh\n"
                              "    return dense(h, 3)\n"
                              "}\n"
                              "train net on d {\n"
                              "    loss      = cross_entropy(output, label)\n"
                              "    optimizer = adam(lr = 1e-2, weight_decay = 1e-3)\n"
                              "    batch     = 37\n"
                              "    epochs    = 2\n"
                              "    seed      = 3\n"
                              "}\n";

// Checkpoints of `nnc train` with updates in place and with NN_STEP_INPLACE=0,
// compared byte for byte (as `cmp` would), on 1 and 2 threads, at a batch
// with short tiles (37), 128 and 600 (the whole set: one step per epoch).
Test(inplace, cli_checkpoints_are_byte_identical, .timeout = 180)
{
    NEED_LLVM();
    char *path = tu_write_temp(".nn", cli_mlp);
    const char *batches[3] = {"37", "128", "600"};
    for (int threads = 1; threads <= 2; threads++) {
        for (int b = 0; b < 3; b++) {
            char *ck[2], *out[2];
            size_t n[2];
            char *bytes[2];
            for (int v = 0; v < 2; v++) {
                cr_assert(asprintf(&ck[v], "/tmp/nnc_inplace_%d_%d_%s_%d.safetensors",
                                   (int)getpid(), threads, batches[b], v) > 0);
                if (v)
                    setenv("NN_STEP_INPLACE", "0", 1);
                int rc = tu_nnc_run(&out[v], "train %s --backend jit --threads %d -q --set save=%s "
                                    "--set batch=%s", path, threads, ck[v], batches[b]);
                unsetenv("NN_STEP_INPLACE");
                cr_assert_eq(rc, 0, "%s", out[v]);
                bytes[v] = slurp(ck[v], &n[v]);
            }
            cr_expect(n[0] == n[1] && memcmp(bytes[0], bytes[1], n[0]) == 0,
                      "%d thread(s), batch %s: the checkpoints differ", threads, batches[b]);
            for (int v = 0; v < 2; v++) {
                unlink(ck[v]);
                free(ck[v]), free(out[v]), free(bytes[v]);
            }
        }
    }
    unlink(path);
    free(path);
}
