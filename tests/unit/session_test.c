// The session library from C, as an embedding program would use it:
// definitions added and replaced, expressions evaluated against trained
// weights, training that continues and does not compile again, checkpoints,
// failures that leave the session unchanged, and the value printer.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"
#include "session.h"

// Diagnostics are collected here, so tests can read them.
static char *diag_buf;
static size_t diag_len;
static FILE *diag_file;

static NnSession *new_session(void)
{
    NnOptions o = {0};
    o.quiet = true;
    o.threads = 1;
    diag_file = open_memstream(&diag_buf, &diag_len);
    NnSession *s = nn_session_new(&o, stdout, diag_file);
    cr_assert(s);
    return s;
}

static void end_session(NnSession *s)
{
    nn_session_free(s);
    fclose(diag_file);
    free(diag_buf);
    diag_buf = NULL;
}

static const char *diags(void)
{
    fflush(diag_file);
    return diag_buf ? diag_buf : "";
}

static double eval_at(NnSession *s, const char *expr, int64_t i)
{
    NnTensor *t = NULL;
    cr_assert(nn_session_eval(s, expr, &t), "%s failed: %s", expr, diags());
    double v = nnrt_tensor_get(t, i);
    nnrt_tensor_free(t);
    return v;
}

// One timeout for the suite (Criterion leaks a per-test timeout record).
TestSuite(session, .timeout = 300);

Test(session, numbers_and_definitions)
{
    NnSession *s = new_session();
    NnTensor *t = NULL;
    cr_assert(nn_session_eval(s, "1 + 2", &t));
    cr_expect_eq(t->dtype, NN_DT_I32);
    cr_expect_eq(t->rank, 0);
    cr_expect_eq(nnrt_tensor_get(t, 0), 3);
    nnrt_tensor_free(t);
    cr_assert(nn_session_run(s, "fn sq(a) = a * a\n"), "%s", diags());
    cr_expect_float_eq(eval_at(s, "sq(1.5)", 0), 2.25, 1e-9);
    // A redefinition replaces the old one.
    cr_assert(nn_session_run(s, "fn sq(a) = a * a * a\n"), "%s", diags());
    cr_expect_float_eq(eval_at(s, "sq(2)", 0), 8, 1e-9);
    end_session(s);
}

// Checking the program again for each definition must not see an extern's
// derivative, attached by the last check, as declared twice.
Test(session, externs_survive_later_definitions)
{
    NnSession *s = new_session();
    cr_assert(nn_session_run(s, "extern \"libm.so.6\" fn erff(x: f32) -> f32\n"), "%s", diags());
    cr_assert(nn_session_run(s, "fn h(a) = erff(a) * 2\n"), "%s", diags());
    cr_expect_float_eq(eval_at(s, "h(f32([0.5]))", 0), 2 * erff(0.5f), 1e-5);
    cr_expect_float_eq(eval_at(s, "gelu(f32([1.0]))", 0), 0.5 * (1 + erff(1 / sqrtf(2))), 1e-5);
    end_session(s);
}

Test(session, error_leaves_session_unchanged)
{
    NnSession *s = new_session();
    cr_assert(nn_session_run(s, "fn f(a) = a + 1\n"));
    // An unknown name in the new body: refused, and f stays as it was.
    cr_expect_not(nn_session_run(s, "fn f(a) = a + nope\n"));
    cr_expect(strstr(diags(), "<repl>:2:15: error: unknown name 'nope'"), "%s", diags());
    cr_expect_float_eq(eval_at(s, "f(1)", 0), 2, 1e-9);
    // A syntax error, then a good line.
    cr_expect_not(nn_session_run(s, "f(1"));
    cr_expect_float_eq(eval_at(s, "f(41)", 0), 42, 1e-9);
    end_session(s);
}

Test(session, train_continues_and_keeps_compiled_step)
{
    NnSession *s = new_session();
    cr_assert(nn_session_load_file(s, "examples/xor.nn"), "%s", diags());
    double before = eval_at(s, "mse(net(xor.train.x), xor.train.y)", 0);
    NnSetting sets[] = {{"epochs", "300", false, {0}}};
    int c0 = nn_session_compiles(s);
    cr_assert(nn_session_train(s, "net", "xor", sets, 1), "%s", diags());
    cr_expect_eq(nn_session_compiles(s), c0 + 1);
    double after = eval_at(s, "mse(net(xor.train.x), xor.train.y)", 0);
    cr_expect(after < 0.05 && after < before, "mse %g before, %g after", before, after);
    // Training again continues from these weights, and changing only the
    // epochs compiles nothing.
    NnSetting more[] = {{"epochs", "50", false, {0}}};
    cr_assert(nn_session_train(s, "net", "xor", more, 1), "%s", diags());
    cr_expect_eq(nn_session_compiles(s), c0 + 1);
    double later = eval_at(s, "mse(net(xor.train.x), xor.train.y)", 0);
    cr_expect(later <= after * 1.5, "mse %g after more training (was %g)", later, after);
    // Another learning rate is a run-time hyperparameter of the same step:
    // lr = 0 leaves the weights exactly as they were, and nothing compiles.
    double held = eval_at(s, "net(xor.train.x)", 1);
    NnSetting frozen[] = {{"epochs", "5", false, {0}}, {"lr", "0", false, {0}}};
    cr_assert(nn_session_train(s, "net", "xor", frozen, 2), "%s", diags());
    cr_expect_eq(eval_at(s, "net(xor.train.x)", 1), held);
    cr_expect_eq(nn_session_compiles(s), c0 + 1);
    // And the block's own rate is back for the next run.
    cr_assert(nn_session_train(s, "net", "xor", more, 1), "%s", diags());
    cr_expect_neq(eval_at(s, "net(xor.train.x)", 1), held);
    cr_expect_eq(nn_session_compiles(s), c0 + 1);
    // A new definition keeps the compiled step; a redefinition drops it.
    cr_assert(nn_session_run(s, "fn unrelated(a) = a + 1\n"), "%s", diags());
    cr_assert(nn_session_train(s, "net", "xor", more, 1), "%s", diags());
    cr_expect_eq(nn_session_compiles(s), c0 + 1);
    cr_assert(nn_session_run(s, "model net(x: f32[N, 2]) -> f32[N, 1] {\n"
                                "    return x |> dense(8) |> relu |> dense(1) |> sigmoid\n}\n"),
              "%s", diags());
    cr_assert(nn_session_train(s, "net", "xor", more, 1), "%s", diags());
    cr_expect_eq(nn_session_compiles(s), c0 + 2);
    cr_expect_not(nn_session_train(s, "net", "xor",
                                   (NnSetting[]){{"nosuch", "1", false, {0}}}, 1));
    cr_expect(strstr(diags(), "run-time 'nosuch'"), "%s", diags());
    cr_expect(nn_session_evaluate(s, "net", "xor"), "%s", diags());
    cr_expect_not(nn_session_train(s, "net", "nodata", NULL, 0));
    end_session(s);
}

// State one optimizer made (SGD's velocity, net.dense1.w/v) is not fed to
// another that names its state alike (Adam's second moment): switching
// optimizers starts their state afresh, weights kept.
Test(session, switching_optimizers_restarts_their_state)
{
    NnSession *s = new_session();
    cr_assert(nn_session_load_file(s, "examples/xor.nn"), "%s", diags());
    cr_assert(nn_session_run(s, "train net on xor with epochs = 30, "
                                "optimizer = sgd(lr = 0.5, momentum = 0.9)\n"), "%s", diags());
    double w = eval_at(s, "net(xor.train.x)", 1);
    NnSetting sets[] = {{"epochs", "20", false, {0}}};
    cr_expect(nn_session_train(s, "net", "xor", sets, 1), "%s", diags());
    double after = eval_at(s, "net(xor.train.x)", 1);
    cr_expect(isfinite(after) && after != w, "%g then %g", w, after);
    // A train block that cannot be prepared is not kept.
    cr_expect_not(nn_session_run(s, "train net on nodata { loss = mse(output, y); "
                                    "optimizer = adam() }\n"));
    cr_expect(nn_session_train(s, "net", "xor", sets, 1), "%s", diags());
    end_session(s);
}

Test(session, save_reset_load_round_trip)
{
    NnSession *s = new_session();
    const char *path = "/tmp/nnc_session_test.safetensors";
    cr_assert(nn_session_load_file(s, "examples/xor.nn"), "%s", diags());
    cr_expect_not(nn_session_save(s, path), "nothing to save yet");
    NnSetting sets[] = {{"epochs", "100", false, {0}}};
    cr_assert(nn_session_train(s, "net", "xor", sets, 1), "%s", diags());
    double trained = eval_at(s, "net(xor.train.x)", 1);
    cr_assert(nn_session_save(s, path), "%s", diags());
    nn_session_reset(s);
    double fresh = eval_at(s, "net(xor.train.x)", 1);
    cr_expect(fabs(fresh - trained) > 1e-4, "reset kept the weights (%g)", fresh);
    cr_assert(nn_session_load_weights(s, path), "%s", diags());
    cr_expect_float_eq(eval_at(s, "net(xor.train.x)", 1), trained, 1e-6);
    // A checkpoint of another shape is refused as a whole, naming the tensor.
    cr_assert(nn_session_run(s, "model net(x: f32[N, 2]) -> f32[N, 1] {\n"
                                "    return x |> dense(3) |> dense(1)\n}\n"), "%s", diags());
    eval_at(s, "net(xor.train.x)", 0);
    cr_expect_not(nn_session_load_weights(s, path));
    cr_expect(strstr(diags(), "net.dense1.w"), "%s", diags());
    cr_expect_not(nn_session_load_weights(s, "/nonexistent/w.safetensors"));
    remove(path);
    end_session(s);
}

Test(session, kept_values_and_types)
{
    NnSession *s = new_session();
    cr_assert(nn_session_load_file(s, "examples/xor.nn"), "%s", diags());
    cr_assert(nn_session_run(s, "v = xor.train.x * 2\n"), "%s", diags());
    cr_expect_float_eq(eval_at(s, "sum(v)", 0), 8, 1e-6);
    char type[64];
    cr_assert(nn_session_type(s, "net(v)", type, sizeof type), "%s", diags());
    cr_expect_str_eq(type, "f32[4, 1]");
    cr_expect_not(nn_session_type(s, "net(xor.test.x)", type, sizeof type));
    end_session(s);
}

// Issue 12's responsiveness bound: a small expression at the prompt, data
// already read, evaluates in under 20 ms (best of 5, so other work on a
// shared machine does not decide it).
Test(session, small_expression_is_quick)
{
    NnSession *s = new_session();
    cr_assert(nn_session_load_file(s, "examples/xor.nn"), "%s", diags());
    eval_at(s, "net(xor.train.x)", 0);
    double best = 1e9;
    for (int i = 0; i < 5; i++) {
        double t0 = nnrt_now();
        eval_at(s, "argmax(net(xor.train.x), axis = 1)", 0);
        double dt = nnrt_now() - t0;
        best = dt < best ? dt : best;
    }
    cr_expect(best < 0.020, "best of 5: %.1f ms", best * 1000);
    end_session(s);
}

static char *printed(const NnTensor *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nn_value_print(f, t);
    fclose(f);
    return buf;
}

Test(session, value_printer)
{
    int64_t four = 4, twenty = 20, two_three[2] = {2, 3};
    NnTensor *v = nnrt_tensor_new(NN_DT_I32, 1, &four);
    int32_t vals[4] = {9, 2, 1, 1};
    memcpy(v->data, vals, sizeof vals);
    char *s = printed(v);
    cr_expect_str_eq(s, "i32[4] [9, 2, 1, 1]\n");
    free(s);
    nnrt_tensor_free(v);
    NnTensor *w = nnrt_tensor_new(NN_DT_I32, 1, &twenty);
    for (int i = 0; i < 20; i++)
        nnrt_tensor_set(w, i, i);
    s = printed(w);
    cr_expect_str_eq(s, "i32[20] [  0,   1,   2,   3,   4, ...,  17,  18,  19]\n");
    free(s);
    nnrt_tensor_free(w);
    NnTensor *m = nnrt_tensor_new(NN_DT_F32, 2, two_three);
    float mv[6] = {0.5f, -12.25f, 3, 1e-5f, 100, 7};
    memcpy(m->data, mv, sizeof mv);
    s = printed(m);
    cr_expect_str_eq(s, "f32[2, 3]\n[[   0.5, -12.25,      3],\n [ 1e-05,    100,      7]]\n");
    free(s);
    nnrt_tensor_free(m);
}

Test(session, incomplete_input)
{
    cr_expect(nn_session_incomplete("model m(x) {"));
    cr_expect(nn_session_incomplete("f(1,\n 2"));
    cr_expect_not(nn_session_incomplete("f(1, 2)"));
    cr_expect_not(nn_session_incomplete("\"(\" + 1"));
    cr_expect_not(nn_session_incomplete("1 # (comment"));
    cr_expect_not(nn_session_incomplete("f(1))"));
}

// Dropout rates are run-time hyperparameters too: a block typed at the prompt
// replaces the file's, and training it again with other rates (every call's,
// or one call's) compiles nothing; rate 0 everywhere makes training
// deterministic in the dropout masks, so two runs from the same weights agree.
Test(session, dropout_rates_change_without_compiling)
{
    NnSession *s = new_session();
    cr_assert(nn_session_load_file(s, "examples/xor.nn"), "%s", diags());
    cr_assert(nn_session_run(s, "model net(x: f32[N, 2]) -> f32[N, 1] {\n"
                                "    return x |> dense(8) |> tanh |> dropout(0.5) |> dense(8) "
                                "|> tanh |> dropout(0.2) |> dense(1) |> sigmoid\n}\n"),
              "%s", diags());
    int c0 = nn_session_compiles(s);
    cr_assert(nn_session_run(s, "train net on xor {\n loss = mse(output, y)\n"
                                " optimizer = sgd(lr = 0.5)\n batch = 4\n epochs = 2\n}\n"),
              "%s", diags());
    cr_expect_eq(nn_session_compiles(s), c0 + 1);
    NnSetting all[] = {{"epochs", "3", false, {0}}, {"dropout", "0.3", false, {0}}};
    cr_assert(nn_session_train(s, "net", "xor", all, 2), "%s", diags());
    NnSetting one[] = {{"epochs", "3", false, {0}}, {"dropout2", "0", false, {0}}};
    cr_assert(nn_session_train(s, "net", "xor", one, 2), "%s", diags());
    cr_expect_eq(nn_session_compiles(s), c0 + 1, "no rate compiled the step again");
    cr_expect_not(nn_session_train(s, "net", "xor", (NnSetting[]){{"dropout", "1", false, {0}}}, 1));
    cr_expect(strstr(diags(), "dropout = 1: a dropout rate is a number in [0, 1)"), "%s",
              diags());
    cr_expect_not(nn_session_train(s, "net", "xor", (NnSetting[]){{"dropout3", "0.1", false, {0}}}, 1));
    cr_expect(strstr(diags(), "model 'net' has no dropout call number 3"), "%s", diags());
    cr_expect_eq(nn_session_compiles(s), c0 + 1);
    end_session(s);
}

// :backend jit runs expressions compiled (one compile each) with the same
// values as the interpreter.
Test(session, expressions_on_either_backend)
{
    NnSession *s = new_session();
    cr_assert(nn_session_load_file(s, "examples/xor.nn"), "%s", diags());
    double interp = eval_at(s, "net(xor.train.x)", 2);
    int c0 = nn_session_compiles(s);
    cr_expect_eq(nn_session_compiles(s), c0, "the interpreter compiles nothing");
    if (!nn_session_backend(s, "jit")) {
        cr_expect(strstr(diags(), "unknown or unavailable backend 'jit'"), "%s", diags());
        end_session(s);
        cr_skip_test("built without LLVM");
    }
    double jit = eval_at(s, "net(xor.train.x)", 2);
    cr_expect_float_eq(jit, interp, 1e-6);
    cr_expect_eq(nn_session_compiles(s), c0 + 1);
    cr_expect_not(nn_session_backend(s, "tpu"));
    cr_expect(nn_session_backend(s, "interp"));
    double back = eval_at(s, "net(xor.train.x)", 2);
    cr_expect_eq(back, interp);
    cr_expect_eq(nn_session_compiles(s), c0 + 1);
    end_session(s);
}
