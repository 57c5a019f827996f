// The nnc command line: parses arguments, runs the front end (parse, sema),
// and dispatches to check / ir / train / eval / predict / build / augment /
// sample / repl. The only place that chooses an exit status:
// 0 success, 1 a diagnostic (bad script, shape error, bad data), 2 bad usage.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"
#include "pool.h"
#include "driver.h"

static const char usage[] =
    "usage: nnc <command> [options] FILE.nn\n"
    "\n"
    "commands:\n"
    "  check FILE              parse and check names and shapes; diagnostics only\n"
    "  ir FILE --stage S       print a stage: tokens ast ir grad opt fused llvm asm\n"
    "                          (--stats: its node count and FLOPs per training step)\n"
    "  train FILE              run the file's train block\n"
    "  eval FILE --weights W   evaluate saved weights on the test split\n"
    "  predict FILE --weights W INPUT [-o OUT.csv]\n"
    "                          the model's class and scores (or outputs) for INPUT's\n"
    "                          samples: an IDX or CSV file as the data block reads them,\n"
    "                          or '-' for raw f32 model inputs on standard input\n"
    "  augment FILE -o OUT     write a grid of augmented training images (.png or .pgm)\n"
    "  repl [FILE]             interactive session (reads commands from standard input\n"
    "                          when it is not a terminal)\n"
    "  build FILE -o PROG      a standalone program: PROG train | eval | predict\n"
    "                          (--target T, --weights W to embed trained weights)\n"
    "  build FILE --lib -o libNAME\n"
    "                          a static library libNAME.a and its C header NAME.h\n"
    "  sample FILE --weights W [--count N] [--temperature T]\n"
    "                          a language model (text() data): print generated lines\n"
    "  sample FILE --weights W -o OUT.png (a generator)\n"
    "                          picture a trained generator's samples (image grid, or\n"
    "                          points over the data with the modes covered)\n"
    "                          --judge C.nn --judge-weights CW: classify the images\n"
    "                          with the trained classifier of C.nn\n"
    "\n"
    "options (a long option's value may also follow '=': --seed=5):\n"
    "  --backend jit|interp    how graphs run (default: jit when built with LLVM)\n"
    "  --set KEY=VALUE         override a train setting, optimizer argument or dropout\n"
    "                          rate (epochs, batch, seed, limit, save, patience, lr,\n"
    "                          dropout, dropout2, ...)\n"
    "  --seed N                seed for initialization, shuffling and dropout\n"
    "  --metrics FILE          append evaluations to FILE as JSON lines\n"
    "  --resume W              continue training from checkpoint W (only read; checkpoints\n"
    "                          go to the save path)\n"
    "  --weights W             checkpoint to evaluate (eval)\n"
    "  --threads N             worker threads (default: all cores)\n"
    "  --no-pass=NAME          skip an optimization pass (%s)\n"
    "  --dump=NAME             print the graph after pass NAME to stderr\n"
    "  -o FILE                 output image (augment, sample), CSV (predict), program\n"
    "                          (build)\n"
    "  --lib                   build: a static library libNAME.a and header NAME.h\n"
    "  --target T              build for: native (default), x86-64, x86-64-v2, -v3, -v4,\n"
    "                          or an LLVM triple such as aarch64-linux-gnu (objects only)\n"
    "  --count N               lines to sample (language models; default 20)\n"
    "  --temperature T         sampling temperature, 0 to 100 (default 1; 0: greedy)\n"
    "  -q, --quiet             no progress or summaries\n"
    "  -v, --verbose           report compile times and kernel counts\n"
    "  -h, --help              this help\n"
    "  --version               print the version\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "nnc: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'nnc --help'.\n");
    return 2;
}

// augment writes PNG or PGM, chosen by the extension; any other name would
// get bytes that do not match it.
static bool augment_extension_ok(const char *path)
{
    size_t len = strlen(path);
    return len > 4 && (!strcmp(path + len - 4, ".png") || !strcmp(path + len - 4, ".pgm"));
}

static bool png_extension_ok(const char *path)
{
    size_t len = strlen(path);
    return len > 4 && !strcmp(path + len - 4, ".png");
}

static bool parse_set(NnOptions *o, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv || o->nsets == 32)
        return false;
    o->sets[o->nsets].key = strndup(kv, (size_t)(eq - kv));
    o->sets[o->nsets].value = eq + 1;
    o->nsets++;
    return true;
}

// Which commands each option means something to; any other use is a usage
// error, so a mistyped command line is never silently half-ignored.
typedef struct OptionUse {
    const char *name;
    const char *cmds; // space-separated command names
} OptionUse;

static const OptionUse option_uses[] = {
    {"--backend", " ir train eval sample predict repl "},
    {"--stage", " ir "},
    {"--stats", " ir "},
    {"--metrics", " train eval "},
    {"--resume", " train "},
    {"--weights", " eval sample predict build repl "},
    {"--threads", " train eval sample predict repl "},
    {"--no-pass", " ir train eval sample predict build "},
    {"--dump", " ir train eval sample predict build "},
    {"-o", " augment sample predict build "},
    {"--lib", " build "},
    {"--target", " build "},
    {"--judge", " sample "},
    {"--judge-weights", " sample "},
    {"--count", " sample "},
    {"--temperature", " sample "},
};
#define NUSES (int)(sizeof option_uses / sizeof option_uses[0])

static int check_option_uses(const char *cmd, const int *given, int ngiven)
{
    char key[32];
    snprintf(key, sizeof key, " %s ", cmd);
    for (int i = 0; i < ngiven; i++) {
        const OptionUse *u = &option_uses[given[i]];
        if (!strstr(u->cmds, key)) {
            fprintf(stderr, "nnc: option '%s' means nothing to '%s' (it is for:%.*s)\n"
                    "Try 'nnc --help'.\n", u->name, cmd, (int)strlen(u->cmds) - 1, u->cmds);
            return 2;
        }
    }
    return 0;
}

// Returns 0 to go on, or an exit status. Every long option that takes a value
// takes it as the next argument or after '=' (--seed=5); `given` collects the
// options seen, for check_option_uses.
static int parse_args(int argc, char **argv, const char **cmd, NnOptions *o,
                      int *given, int *ngiven)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        char a[64];
        const char *eq = arg[0] == '-' && arg[1] == '-' ? strchr(arg, '=') : NULL;
        snprintf(a, sizeof a, "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
        if (eq)
            next = eq + 1;
        // VALUE takes the option's value; FLAG refuses one given with '='.
#define VALUE()                                                                                    \
    do {                                                                                           \
        if (!next)                                                                                 \
            return usage_error("option '%s' needs a value", a);                                   \
        if (!eq)                                                                                   \
            i++;                                                                                   \
    } while (0)
#define FLAG()                                                                                     \
    do {                                                                                           \
        if (eq)                                                                                    \
            return usage_error("option '%s' takes no value", a);                                  \
    } while (0)
        for (int k = 0; k < NUSES; k++)
            if (!strcmp(a, option_uses[k].name) && *ngiven < 64)
                given[(*ngiven)++] = k;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            FLAG();
            printf(usage, nn_pass_names());
            return -1;
        } else if (!strcmp(a, "--version")) {
            FLAG();
            printf("nnc %s (MPI: %s)\n", NN_VERSION,
                   nnrt_dist_built() ? nnrt_dist_library()
                                     : "not built in; training is single-process only");
            return -1;
        } else if (!strcmp(a, "--backend")) {
            VALUE();
            if (!nn_backend_find(next))
                return usage_error("unknown or unavailable backend '%s' (have: interp"
#ifdef NN_WITH_LLVM
                                   ", jit"
#endif
                                   ")", next);
            o->backend = next;
        } else if (!strcmp(a, "--stage")) {
            VALUE();
            o->stage = next;
        } else if (!strcmp(a, "--target")) {
            VALUE();
            if (!*next)
                return usage_error("--target expects native, x86-64-v2, x86-64-v3, x86-64-v4 or "
                                   "an LLVM triple%s", "");
            o->target = next;
        } else if (!strcmp(a, "--set")) {
            VALUE();
            if (!parse_set(o, next))
                return usage_error(o->nsets == 32 ? "too many --set options (at most 32), at '%s'"
                                                  : "--set expects KEY=VALUE, got '%s'", next);
        } else if (!strcmp(a, "--seed")) {
            VALUE();
            char *end;
            errno = 0;
            o->seed = strtoull(next, &end, 10);
            if (*end || !*next || next[0] == '-' || next[0] == '+' || errno == ERANGE)
                return usage_error("--seed expects a non-negative integer below 2^64, got '%s'",
                                   next);
            o->has_seed = true;
        } else if (!strcmp(a, "--metrics")) {
            VALUE();
            if (!*next)
                return usage_error("--metrics expects a file name%s", "");
            o->metrics = next;
        } else if (!strcmp(a, "--weights") || !strcmp(a, "--resume")) {
            VALUE();
            if (!*next)
                return usage_error("option '%s' expects a file name", a);
            o->weights = next;
            o->resume = !strcmp(a, "--resume");
        } else if (!strcmp(a, "--judge") || !strcmp(a, "--judge-weights")) {
            VALUE();
            if (!*next)
                return usage_error("option '%s' expects a file name", a);
            *(!strcmp(a, "--judge") ? &o->judge : &o->judge_weights) = next;
        } else if (!strcmp(arg, "-o")) {
            VALUE();
            if (!*next)
                return usage_error("-o expects a file name%s", "");
            o->output = next;
        } else if (!strcmp(a, "--count")) {
            VALUE();
            char *end;
            long long v = strtoll(next, &end, 10);
            if (*end || !*next || v < 1 || v > 1000000)
                return usage_error("--count expects a number from 1 to 1000000, got '%s'", next);
            o->count = v;
        } else if (!strcmp(a, "--temperature")) {
            VALUE();
            char *end;
            double v = strtod(next, &end);
            if (*end || !*next || !(v >= 0 && v <= 100))
                return usage_error("--temperature expects a number from 0 to 100, got '%s'",
                                   next);
            o->temperature = v;
            o->has_temperature = true;
        } else if (!strcmp(a, "--threads")) {
            VALUE();
            char *end;
            long v = strtol(next, &end, 10);
            if (*end || !*next || v < 1 || v > 256)
                return usage_error("--threads expects a number from 1 to 256, got '%s'", next);
            o->threads = (int)v;
        } else if (!strcmp(a, "--no-pass")) {
            VALUE();
            if (!nn_pass_exists(next))
                return usage_error("unknown pass '%s'", next);
            if (o->passes.ndisabled < NN_PASS_MAX_DISABLED)
                o->passes.disabled[o->passes.ndisabled++] = next;
        } else if (!strcmp(a, "--dump")) {
            VALUE();
            if (!nn_pass_exists(next))
                return usage_error("unknown pass '%s'", next);
            o->passes.dump = next;
        } else if (!strcmp(a, "--lib")) {
            FLAG();
            o->lib = true;
        } else if (!strcmp(a, "--stats")) {
            FLAG();
            o->stats = true;
        } else if (!strcmp(arg, "-q") || !strcmp(a, "--quiet")) {
            FLAG();
            o->quiet = true;
        } else if (!strcmp(arg, "-v") || !strcmp(a, "--verbose")) {
            FLAG();
            o->verbose = true;
        } else if (arg[0] == '-' && arg[1]) {
            return usage_error("unknown option '%s'", a);
        } else if (!*cmd) {
            *cmd = arg;
        } else if (!o->file) {
            o->file = arg;
        } else if (!strcmp(*cmd, "predict") && !o->input) {
            o->input = arg;
        } else {
            return usage_error("unexpected argument '%s'", arg);
        }
#undef VALUE
#undef FLAG
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = NULL;
    NnOptions o = {0};
    // Summaries (stdout) and progress (stderr) interleave in the order printed.
    setvbuf(stdout, NULL, _IOLBF, 0);
    // Under mpirun: one rank of a data-parallel run (runtime/dist.h).
    if (nnrt_dist_init() != NN_OK) {
        fprintf(stderr, "nnc: error: %s\n", nnrt_errmsg());
        return 1;
    }
    // K copies of a single-process nnc would each train alone, writing the same files.
    if (!nnrt_dist_built() && nnrt_dist_launched_ranks() > 1) {
        fprintf(stderr, "nnc: error: this nnc is built without MPI and cannot run as %d ranks "
                "(install libopenmpi-dev and rebuild)\n", nnrt_dist_launched_ranks());
        return 1;
    }
    int given[64];
    int ngiven = 0;
    NnCtx c;
    nn_ctx_init(&c, stderr);
    NnPaths paths;
    nn_driver_paths(&c, &paths);
    c.stdlib_dir = paths.stdlib;
    int rc = parse_args(argc, argv, &cmd, &o, given, &ngiven);
    if (rc) {
        rc = rc < 0 ? 0 : rc;
        goto out;
    }
    rc = 2;
    if (!cmd) {
        fprintf(stderr, usage, nn_pass_names());
        goto out;
    }
    static const char *const cmds[] = {"check",  "ir",      "train", "eval", "augment",
                                       "sample", "predict", "build", "repl"};
    bool known = false;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        known = known || !strcmp(cmd, cmds[i]);
    if (!known) {
        usage_error("unknown command '%s' (commands: check, ir, train, eval, augment, sample, "
                    "predict, build, repl)",
                    cmd);
        goto out;
    }
    if ((rc = check_option_uses(cmd, given, ngiven)))
        goto out;
    // --threads N sizes the process-wide pool too, which runs the kernels of
    // loop bodies (backend/llvm/lower_loop.c): N threads in all.
    if (o.threads > 0 && nnrt_pool_set_threads(o.threads) != NN_OK) {
        fprintf(stderr, "nnc: error: %s\n", nnrt_errmsg());
        rc = 1;
        goto out;
    }
    if (!strcmp(cmd, "repl")) {
        rc = nn_cmd_repl(&o);
        goto out;
    }
    rc = 2;
    if (!o.file) {
        usage_error("'%s' needs a .nn file", cmd);
        goto out;
    }
    if (!strcmp(cmd, "build") && !o.output) {
        usage_error(o.lib ? "'%s' needs -o libNAME (writes libNAME.a and NAME.h)"
                          : "'%s' needs -o PROGRAM", cmd);
        goto out;
    }
    if (!strcmp(cmd, "ir") && !o.stage) {
        usage_error("'ir' needs --stage (%s)", "tokens, ast, ir, grad, opt, fused, llvm, asm");
        goto out;
    }
    if ((!strcmp(cmd, "eval") || !strcmp(cmd, "sample") || !strcmp(cmd, "predict")) &&
        !o.weights) {
        usage_error("'%s' needs --weights FILE", cmd);
        goto out;
    }
    if (!strcmp(cmd, "predict") && !o.input) {
        usage_error("'%s' needs INPUT: an IDX or CSV file, or '-' for raw f32 on standard input",
                    cmd);
        goto out;
    }
    if (!strcmp(cmd, "sample") && !o.judge != !o.judge_weights) {
        usage_error("--judge and --judge-weights go together%s", "");
        goto out;
    }
    // Whether sample needs -o depends on the model (a generator's picture or
    // a language model's lines), known after sema; a wrong name is refused now.
    if (!strcmp(cmd, "sample") && o.output && !png_extension_ok(o.output)) {
        usage_error("sample writes .png images; cannot write '%s'", o.output);
        goto out;
    }
    if (!strcmp(cmd, "augment") && !augment_extension_ok(o.output ? o.output : "")) {
        usage_error(o.output ? "augment writes .png or .pgm images; cannot write '%s'"
                             : "'%s' needs -o FILE.png", o.output ? o.output : cmd);
        goto out;
    }

    c.diags.color = isatty(fileno(stderr)) && !getenv("NO_COLOR");
    rc = 1;
    NnSource *src = nn_source_load(c.arena, &c.diags, o.file);
    if (!src)
        goto out;
    if (!strcmp(cmd, "ir") && !strcmp(o.stage, "tokens")) {
        nn_lex_dump(&c, src, stdout);
        rc = c.diags.nerrors ? 1 : 0;
        goto out;
    }
    NnAst *ast = nn_parse(&c, src);
    if (c.diags.nerrors)
        goto out;
    NnProgram *prog = nn_sema(&c, ast);
    if (c.diags.nerrors || !prog)
        goto out;
    if (!strcmp(cmd, "check") || !strcmp(cmd, "ir"))
        rc = nn_cmd_ir(&c, prog, ast, &o);
    else if (!strcmp(cmd, "train"))
        rc = nn_cmd_train(&c, prog, &o, false);
    else if (!strcmp(cmd, "eval"))
        rc = nn_cmd_train(&c, prog, &o, true);
    else if (!strcmp(cmd, "augment"))
        rc = nn_cmd_augment(&c, prog, &o);
    else if (!strcmp(cmd, "predict"))
        rc = nn_cmd_predict(&c, prog, &o);
    else if (!strcmp(cmd, "build") && o.lib)
        rc = nn_cmd_build_lib(&c, prog, &o);
    else if (!strcmp(cmd, "build"))
        rc = nn_cmd_build(&c, prog, &o);
    else if (!strcmp(cmd, "sample") && nn_sample_wants_text(prog)) {
        if (o.output || o.judge) {
            usage_error("a language model prints its samples; %s is for generators",
                        o.output ? "-o" : "--judge");
            rc = 2;
            goto out;
        }
        rc = nn_cmd_sample_text(&c, prog, &o);
    } else if (!strcmp(cmd, "sample")) {
        if (!o.output) {
            usage_error("'%s' needs -o FILE.png", cmd);
            rc = 2;
            goto out;
        }
        rc = nn_cmd_sample(&c, prog, &o);
    }
    if (c.diags.nerrors)
        rc = 1;
out:
    for (int i = 0; i < o.nsets; i++)
        free((char *)o.sets[i].key);
    nn_ctx_fini(&c);
    fflush(stdout);
    // A rank that fails alone would leave the others waiting for it.
    if (rc != 0 && nnrt_dist_size() > 1 && !nnrt_dist_failed_together())
        nnrt_dist_abort("failed (see the messages above); ending every rank");
    nnrt_dist_finalize();
    return rc;
}
