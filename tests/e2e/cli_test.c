// The nnc command line, run as a separate process: help and version, usage
// errors (exit 2 with a message that names the problem), a missing file
// (exit 1), every `ir --stage` on a real example, and `check` on every
// examples/*.nn (exit 0, silent). Runs from the repository root; $NNC names
// the binary (ctest sets it).
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static void to_root(void) { cr_assert_eq(chdir(NN_SOURCE_DIR), 0); }

TestSuite(cli, .init = to_root, .timeout = 120);

// A usage error: exit 2, the message, and the pointer to --help.
static void usage_error(const char *args, const char *msg)
{
    char *out = tu_nnc_rc(2, "%s", args);
    tu_expect_in(out, msg, args);
    tu_expect_in(out, "nnc --help", args);
    free(out);
}

Test(cli, help_lists_commands)
{
    char *out = tu_nnc_rc(0, "%s", "--help");
    const char *words[] = {"usage: nnc", "check", "ir", "train", "eval", "augment", "--stage",
                           "--set", "--seed", "--metrics", "--resume", "--weights", "--no-pass"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        tu_expect_in(out, words[i], "--help");
    free(out);
    out = tu_nnc_rc(0, "%s", "-h");
    tu_expect_in(out, "usage: nnc", "-h");
    free(out);
}

Test(cli, version)
{
    char *out = tu_nnc_rc(0, "%s", "--version");
    cr_assert(!strncmp(out, "nnc ", 4) && out[4] >= '0' && out[4] <= '9', "--version: %s", out);
    free(out);
}

Test(cli, no_arguments_is_usage)
{
    char *out = tu_nnc_rc(2, "%s", "");
    tu_expect_in(out, "usage: nnc", "(none)");
    free(out);
}

Test(cli, unknown_command_and_option)
{
    usage_error("frobnicate examples/xor.nn", "unknown command 'frobnicate'");
    usage_error("check --frobnicate examples/xor.nn", "unknown option '--frobnicate'");
    usage_error("check examples/xor.nn examples/sine.nn", "unexpected argument 'examples/sine.nn'");
    usage_error("check", "'check' needs a .nn file");
    usage_error("train examples/xor.nn --metrics", "option '--metrics' needs a value");
}

Test(cli, command_specific_requirements)
{
    usage_error("ir examples/xor.nn", "'ir' needs --stage");
    usage_error("eval examples/xor.nn", "'eval' needs --weights");
    usage_error("augment examples/xor.nn", "'augment' needs -o");
}

Test(cli, bad_option_values)
{
    usage_error("train examples/xor.nn --set epochs", "--set expects KEY=VALUE, got 'epochs'");
    usage_error("train examples/xor.nn --set =3", "--set expects KEY=VALUE");
    usage_error("train examples/xor.nn --threads 0", "--threads expects a number from 1 to 256");
    usage_error("train examples/xor.nn --threads lots", "--threads expects a number");
    usage_error("train examples/xor.nn --seed 12abc", "--seed expects a non-negative integer");
    usage_error("check examples/xor.nn --no-pass=frobnicate", "unknown pass 'frobnicate'");
    usage_error("check examples/xor.nn --dump=frobnicate", "unknown pass 'frobnicate'");
}

// strtoull takes "-1" as 2^64 - 1; the option promises a non-negative integer.
Test(cli, negative_seed_rejected)
{
    usage_error("train examples/xor.nn --seed -1", "--seed expects a non-negative integer");
}

Test(cli, seed_option_accepted)
{
    char *out = tu_nnc_rc(0, "%s", "check examples/xor.nn --seed 5");
    cr_assert_str_empty(out, "%s", out);
    free(out);
}

Test(cli, missing_file)
{
    char *out = tu_nnc_rc(1, "%s", "check x.nn");
    tu_expect_in(out, "cannot open 'x.nn': No such file or directory", "check x.nn");
    free(out);
    out = tu_nnc_rc(1, "%s", "train /nonexistent/dir/m.nn");
    tu_expect_in(out, "cannot open '/nonexistent/dir/m.nn'", "train /nonexistent/dir/m.nn");
    free(out);
}

// Exit 1 (a diagnostic, not usage) and the message.
static void diag_error(const char *args, const char *msg)
{
    char *out = tu_nnc_rc(1, "%s", args);
    tu_expect_in(out, msg, args);
    tu_expect_in(out, "error:", args);
    free(out);
}

Test(cli, bad_set_values)
{
    diag_error("train examples/xor.nn --set frob=1", "--set frob=1");
    diag_error("train examples/xor.nn --set epochs=abc", "--set epochs=abc");
    diag_error("train examples/xor.nn --set epochs=-3", "--set epochs=-3");
    diag_error("train examples/xor.nn --set lr=abc", "--set lr=abc");
}

// `batch = 0` in a script is an error; the same value from --set must be too.
Test(cli, set_zero_batch_rejected)
{
    diag_error("train examples/xor.nn -q --set batch=0", "batch");
}

// --set epochs=0 may be refused, or train nothing; it must not train an epoch.
Test(cli, set_zero_epochs_trains_nothing)
{
    char m[64];
    snprintf(m, sizeof m, "/tmp/nnc_cli_%d.jsonl", (int)getpid());
    unlink(m);
    char args[256];
    snprintf(args, sizeof args, "train examples/xor.nn -q --set epochs=0 --metrics %s", m);
    char *out = NULL;
    int rc = tu_nnc_run(&out, "%s", args);
    char *text = tu_read_file(m);
    cr_assert(rc == 1 || (rc == 0 && (!text || !strstr(text, "\"epoch\": 1,"))),
              "epochs=0: exit %d, metrics:\n%s\noutput:\n%s", rc, text ? text : "", out);
    unlink(m);
    free(text);
    free(out);
}

Test(cli, train_without_train_block)
{
    diag_error("train tests/golden/parse/01_layers.nn", "has no train block");
}

Test(cli, unknown_stage)
{
    char *out = tu_nnc_rc(2, "%s", "ir examples/xor.nn --stage frob");
    tu_expect_in(out, "unknown stage 'frob'", "--stage frob");
    free(out);
}

Test(cli, unknown_backend)
{
    char *out = NULL;
    int rc = tu_nnc_run(&out, "train examples/xor.nn --backend frob");
    cr_assert(rc == 1 || rc == 2, "exit %d:\n%s", rc, out);
    tu_expect_in(out, "backend 'frob'", "--backend frob");
    free(out);
}

// Counts lines of `out` that contain `s`.
static int count_lines(const char *out, const char *s)
{
    int n = 0;
    for (const char *l = out; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        char *line = strndup(l, len);
        n += strstr(line, s) != NULL;
        free(line);
        l = e ? e + 1 : NULL;
    }
    return n;
}

Test(cli, stage_tokens_and_ast)
{
    char *out = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage tokens");
    tu_expect_in(out, "KEYWORD import", "tokens");
    tu_expect_in(out, "IDENT std", "tokens");
    tu_expect_in(out, "IDENT dense", "tokens");
    free(out);
    out = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage ast");
    tu_expect_in(out, "(program", "ast");
    tu_expect_in(out, "(import std)", "ast");
    tu_expect_in(out, "(data xor", "ast");
    free(out);
}

Test(cli, stage_ir_names_params_by_place)
{
    char *out = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage ir");
    tu_expect_in(out, "input x : f32[N, 2]", "ir");
    tu_expect_in(out, "param net.dense1.w : f32[2, 8]", "ir");
    tu_expect_in(out, "param net.dense2.w : f32[8, 1]", "ir");
    tu_expect_in(out, "matmul(", "ir");
    // The forward graph updates nothing.
    cr_assert_eq(count_lines(out, "update "), 0, "forward graph has updates:\n%s", out);
    free(out);
}

Test(cli, stage_grad_updates_every_param_and_state)
{
    char *out = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage grad");
    const char *ups[] = {"update net.dense1.w <-", "update net.dense1.b <-",
                         "update net.dense2.w <-", "update net.dense2.b <-",
                         "update net.dense1.w/m <-", "update net.dense1.w/v <-"};
    for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++)
        cr_assert_eq(count_lines(out, ups[i]), 1, "'%s' not exactly once:\n%s", ups[i], out);
    // Four parameters, each with Adam's m and v: 12 updates, plus the step counter.
    int n = count_lines(out, "update net.");
    cr_assert_eq(n, 12, "%d parameter/state updates, expected 12", n);
    free(out);
}

Test(cli, stage_opt_and_fused_shrink_or_fuse)
{
    char *grad = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage grad");
    char *opt = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage opt");
    char *fused = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage fused");
    int ng = count_lines(grad, " = "), no = count_lines(opt, " = ");
    cr_assert_lt(no, ng, "opt (%d nodes) is not smaller than grad (%d)", no, ng);
    cr_assert_eq(count_lines(opt, "fused("), 0, "opt already fused:\n%s", opt);
    cr_assert_gt(count_lines(fused, "fused("), 0, "fused stage has no fused node:\n%s", fused);
    cr_assert_eq(count_lines(opt, "update net.dense1.w <-"), 1);
    cr_assert_eq(count_lines(fused, "update net.dense1.w <-"), 1);
    free(grad);
    free(opt);
    free(fused);
}

// --stats counts the stage's FLOPs from its nodes: the MLP step's matmuls are
// 2 * (784*256 + 256*128 + 128*10) per sample forward, as much for the weight
// gradients, and the input gradients of layers 2 and 3 (no gradient for x once
// dead code is gone): 1.007 MFLOP per sample. grad still has layer 1's.
Test(cli, stage_stats_counts_flops)
{
    char *fused = tu_nnc_rc(0, "%s", "ir bench/mlp.nn --stage fused --stats");
    tu_expect_in(fused, "fused: ", "--stats");
    tu_expect_in(fused, "at batch 128 (", "--stats");
    tu_expect_in(fused, "1.007 in matmuls and convolutions", "--stats");
    cr_assert_eq(count_lines(fused, " = "), 0, "--stats printed the graph:\n%s", fused);
    free(fused);
    char *grad = tu_nnc_rc(0, "%s", "ir bench/mlp.nn --stage grad --stats");
    tu_expect_in(grad, "1.409 in matmuls and convolutions", "grad --stats");
    free(grad);
    char *out = tu_nnc_rc(2, "%s", "ir examples/xor.nn --stage asm --stats");
    tu_expect_in(out, "--stats counts a graph", "--stats with asm");
    free(out);
}

// LLVM IR and assembly when built with LLVM; otherwise a clear refusal.
Test(cli, stage_llvm_and_asm)
{
    char *out = NULL;
    int rc = tu_nnc_run(&out, "ir examples/xor.nn --stage llvm");
    if (rc == 1 && strstr(out, "without LLVM")) {
        free(out);
        cr_skip_test("built without LLVM");
    }
    cr_assert_eq(rc, 0, "%s", out);
    tu_expect_in(out, "define ", "--stage llvm");
    free(out);
    out = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage asm");
    tu_expect_in(out, ".text", "--stage asm");
    free(out);
}

// Piped output (not a terminal) carries no colour escapes.
Test(cli, no_color_when_piped)
{
    char *out = tu_nnc_rc(1, "%s", "check tests/golden/diag/unknown_name.nn");
    cr_assert(!strchr(out, '\x1b'), "escape codes in piped output:\n%s", out);
    free(out);
}

Test(cli, no_pass_keeps_nodes)
{
    char *opt = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage opt");
    char *nofold = tu_nnc_rc(0, "%s", "ir examples/xor.nn --stage opt --no-pass=dce --no-pass=cse");
    int a = count_lines(opt, " = "), b = count_lines(nofold, " = ");
    cr_assert_gt(b, a, "--no-pass=dce,cse kept %d nodes, all passes %d", b, a);
    free(opt);
    free(nofold);
}

Test(cli, check_every_example_silently)
{
    DIR *d = opendir("examples");
    cr_assert(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".nn"))
            continue;
        if (!strcmp(e->d_name, "fashion_mlp.nn") &&
            access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0)
            continue; // dataset-fashion-mnist is not installed
        // check loads the data too (fashion_mlp: 70000 images, a few seconds).
        char args[512];
        snprintf(args, sizeof args, "check examples/%s", e->d_name);
        char *out = tu_nnc_rc(0, "%s", args);
        cr_assert_str_empty(out, "nnc %s printed:\n%s", args, out);
        free(out);
        n++;
    }
    closedir(d);
    cr_assert_geq(n, 4, "only %d examples found", n);
}

Test(cli, check_stdlib_only_file)
{
    // A file of models without a train block checks (each model lowered alone).
    char *p = tu_write_temp(".nn", "import std\n"
                                   "model m(x: f32[N, 3]) -> f32[N, 2] {\n"
                                   "    return x |> dense(2)\n"
                                   "}\n");
    char args[256];
    snprintf(args, sizeof args, "check %s", p);
    char *out = tu_nnc_rc(0, "%s", args);
    cr_assert_str_empty(out, "%s", out);
    free(out);
    snprintf(args, sizeof args, "ir %s --stage ir", p);
    out = tu_nnc_rc(0, "%s", args);
    tu_expect_in(out, "param m.dense1.w : f32[3, 2]", args);
    free(out);
    unlink(p);
    free(p);
}
