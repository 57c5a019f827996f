// `nnc repl [FILE]`: a thin loop around an NnSession. On a terminal it reads
// lines through libedit (history kept in $NNC_HISTORY or ~/.nnc_history, tab
// completion of names and commands, more lines while a bracket or block is
// open); otherwise it reads standard input, prints no prompts and exits 1 if
// any command failed, so it can be scripted. Ctrl-C during training stops it
// at a batch boundary with the weights kept; at the prompt it drops the line.
#include "session.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"

#ifdef NN_WITH_LIBEDIT
#include <editline/readline.h>
#endif

static const char help[] =
    "Type a definition (fn, layer, model, loss, optimizer, data, train), an expression to\n"
    "see its value, `name = expr` to keep a value, or `train M on D with k = v, ...` to train\n"
    "from the current weights (Ctrl-C stops at the next batch, keeping the weights); lr,\n"
    "momentum, betas, weight_decay and dropout (dropoutK: the K-th dropout call) change\n"
    "with no compile.\n"
    "Data fields are paths: fashion.test.x, fashion.train.label.\n"
    "\n"
    "commands:\n"
    "  :help               this text\n"
    "  :type EXPR          the type of EXPR, without running it\n"
    "  :ir NAME [--stage S] a model at stage S: ast, ir; grad, opt, fused, llvm, asm need\n"
    "                      its train block\n"
    "  :time LINE          run LINE and report the time it took and the compiles it needed\n"
    "  :backend [B]        run expressions and training on B (jit or interp) from now on;\n"
    "                      expressions start on interp, which needs no compile\n"
    "  :save W             save weights and optimizer state to W (.safetensors)\n"
    "  :load W             load weights and optimizer state from W\n"
    "  :reset              forget weights, optimizer state and kept values\n"
    "  :quit               leave (so does end of input)\n";

static const char *const commands[] = {":help", ":type", ":ir", ":time", ":backend", ":save",
                                       ":load", ":reset", ":quit"};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void on_sigint(int sig)
{
    (void)sig;
    nn_interrupted = 1;
}

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

// A command's argument: the rest of the line, trimmed (in buf).
static const char *argument(const char *p, char *buf, size_t n)
{
    p = skip_space(p);
    snprintf(buf, n, "%s", p);
    size_t len = strlen(buf);
    while (len && (buf[len - 1] == ' ' || buf[len - 1] == '\n' || buf[len - 1] == '\t'))
        buf[--len] = 0;
    return buf;
}

static bool command(NnSession *s, const char *line, bool *quit)
{
    char word[16], arg[4096];
    size_t k = strcspn(line, " \t\n");
    snprintf(word, sizeof word, "%.*s", (int)(k < 15 ? k : 15), line);
    const char *rest = argument(line + k, arg, sizeof arg);
    // Commands that parse no text still count as lines of the session.
    if (strcmp(word, ":type") && strcmp(word, ":time"))
        nn_session_count_lines(s, 1);
    if (!strcmp(word, ":quit") || !strcmp(word, ":q")) {
        *quit = true;
        return true;
    }
    if (!strcmp(word, ":reset") || !strcmp(word, ":help")) {
        if (*rest) {
            fprintf(stderr, "%s takes no argument\n", word);
            return false;
        }
        if (word[1] == 'h') {
            fputs(help, stdout);
            return true;
        }
        nn_session_reset(s);
        printf("weights, optimizer state and values forgotten\n");
        return true;
    }
    if (!strcmp(word, ":backend"))
        return nn_session_backend(s, *rest ? rest : NULL);
    if ((!strcmp(word, ":save") || !strcmp(word, ":load")) && *rest) {
        bool ok = word[1] == 's' ? nn_session_save(s, rest) : nn_session_load_weights(s, rest);
        if (ok)
            printf("%s %s\n", word[1] == 's' ? "saved" : "loaded", rest);
        return ok;
    }
    if (!strcmp(word, ":type") && *rest) {
        char type[128];
        bool ok = nn_session_type(s, rest, type, sizeof type);
        if (ok)
            printf("%s\n", type);
        return ok;
    }
    if (!strcmp(word, ":time") && *rest) {
        int before = nn_session_compiles(s);
        double t0 = nnrt_now();
        bool ok = nn_session_run(s, rest);
        int n = nn_session_compiles(s) - before;
        printf("time: %.1f ms, %d compile%s\n", (nnrt_now() - t0) * 1000, n, n == 1 ? "" : "s");
        return ok;
    }
    if (!strcmp(word, ":ir") && *rest) {
        char name[128], stage[32] = "ir";
        int used = 0;
        if (sscanf(rest, "%127s %n", name, &used) == 1 && rest[used] &&
            sscanf(rest + used, "--stage %31s", stage) != 1 &&
            sscanf(rest + used, "--stage=%31s", stage) != 1) {
            fprintf(stderr, "usage: :ir NAME [--stage S]\n");
            return false;
        }
        return nn_session_ir(s, name, stage);
    }
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(word, commands[i])) {
            fprintf(stderr, "%s needs an argument (see :help)\n", word);
            return false;
        }
    fprintf(stderr, "unknown command '%s' (see :help)\n", word);
    return false;
}

// Runs one complete input (a line, or several while brackets were open).
static bool run_input(NnSession *s, const char *text, bool *quit)
{
    const char *p = skip_space(text);
    if (!*p || *p == '\n')
        return true;
    if (*p == ':')
        return command(s, p, quit);
    return nn_session_run(s, text);
}

#ifdef NN_WITH_LIBEDIT
static NnSession *completing;

static char *complete_next(const char *text, int state)
{
    static const char *names[1024];
    static int n, i;
    static size_t len;
    if (!state) {
        n = 0;
        i = 0;
        len = strlen(text);
        for (int k = 0; k < NCOMMANDS && text[0] == ':'; k++)
            names[n++] = commands[k];
        if (text[0] != ':')
            n = nn_session_names(completing, names, 1024);
    }
    while (i < n) {
        const char *name = names[i++];
        if (!strncmp(name, text, len))
            return strdup(name);
    }
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1;
    return rl_completion_matches(text, complete_next);
}

static int interactive(NnSession *s)
{
    const char *home = getenv("HOME");
    char hist[4096];
    const char *env = getenv("NNC_HISTORY");
    if (env && *env)
        snprintf(hist, sizeof hist, "%s", env);
    else
        snprintf(hist, sizeof hist, "%s/.nnc_history", home && *home ? home : ".");
    using_history();
    read_history(hist);
    completing = s;
    rl_readline_name = "nnc";
    rl_basic_word_break_characters = " \t\n()[]{},=+-*/@|<>!&";
    rl_attempted_completion_function = complete;
    // Names are mostly followed by '(' or '.', not a space.
    rl_completion_append_character = '\0';
    printf("nnc %s: :help for help, :quit to leave\n", NN_VERSION);
    bool quit = false;
    while (!quit) {
        nn_interrupted = 0;
        char *line = readline("nn> ");
        if (!line) {
            if (nn_interrupted) {
                printf("\n");
                continue;
            }
            printf("\n");
            break;
        }
        size_t len = strlen(line), cap = len + 2;
        char *text = malloc(cap);
        if (!text) {
            free(line);
            break;
        }
        memcpy(text, line, len + 1);
        free(line);
        bool dropped = false;
        while (nn_session_incomplete(text)) {
            char *more = readline("... ");
            if (!more) {
                dropped = true; // Ctrl-C or end of input inside a block drops it
                break;
            }
            size_t m = strlen(more);
            char *t = realloc(text, len + m + 2);
            if (!t) {
                free(more);
                dropped = true;
                break;
            }
            text = t;
            text[len++] = '\n';
            memcpy(text + len, more, m + 1);
            len += m;
            free(more);
        }
        if (!dropped) {
            if (*skip_space(text))
                add_history(text);
            write_history(hist);
            run_input(s, text, &quit);
        } else {
            printf("\n");
        }
        fflush(stdout);
        free(text);
    }
    return 0;
}
#endif

static int scripted(NnSession *s)
{
    char *line = NULL, *text = NULL;
    size_t cap = 0, len = 0;
    bool failed = false, quit = false;
    ssize_t n;
    while (!quit && (n = getline(&line, &cap, stdin)) >= 0) {
        char *t = realloc(text, len + (size_t)n + 1);
        if (!t)
            break;
        text = t;
        memcpy(text + len, line, (size_t)n + 1);
        len += (size_t)n;
        if (nn_session_incomplete(text))
            continue;
        if (len && text[len - 1] == '\n')
            text[--len] = 0;
        failed = !run_input(s, text, &quit) || failed;
        fflush(stdout);
        len = 0;
    }
    if (!quit && len && text) {
        failed = !run_input(s, text, &quit) || failed;
    }
    free(line);
    free(text);
    return failed ? 1 : 0;
}

int nn_cmd_repl(NnOptions *o)
{
    NnSession *s = nn_session_new(o, stdout, stderr);
    if (!s) {
        fprintf(stderr, "nnc: out of memory\n");
        return 1;
    }
    NnCtx *c = nn_session_ctx(s);
    c->diags.color = isatty(fileno(stderr)) && !getenv("NO_COLOR");
    int rc = 0;
    if (o->file && !nn_session_load_file(s, o->file))
        rc = 1;
    if (!rc && o->weights && !nn_session_load_weights(s, o->weights))
        rc = 1;
    if (!rc) {
        struct sigaction sa = {0};
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
#ifdef NN_WITH_LIBEDIT
        if (isatty(fileno(stdin)) && isatty(fileno(stdout)))
            rc = interactive(s);
        else
#endif
            rc = scripted(s);
    }
    nn_session_free(s);
    return rc;
}
