// Private to runtime/app: the parts of a built program's main split out of
// main.c: the data block replayed (data.c), predict's input (input.c) and
// the sample command (sample.c).
#ifndef NNRT_APP_PRIV_H
#define NNRT_APP_PRIV_H

#include "app.h"

typedef struct Splits {
    const char *names[8];
    NnrtDataset ds[8];
    int count;
} Splits;

// Runs the data block's operations of a into s (initialized here; finish
// with app_splits_fini also on failure).
NnStatus app_load_data(const NnrtApp *a, Splits *s);
void app_splits_fini(Splits *s);
NnrtDataset *app_split_get(Splits *s, const char *name);
// Keeps the first n samples of ds (n = 0 or ds NULL: all).
NnStatus app_keep_head(NnrtDataset *ds, int64_t n);

// A view of rows [i, i + n) of t.
void app_rows_view(NnTensor *v, const NnTensor *t, int64_t i, int64_t n);
// predict's INPUT as the model reads it: "-" (raw f32 model inputs on
// standard input), a .csv file or an IDX file of the data's raw samples, put
// through the data block's x transforms. NULL with nnrt_errmsg set.
NnTensor *app_read_input(const NnrtApp *a, const char *path);

// `PROG sample` (sample.c): the options, checked for range by the caller.
typedef struct AppSampleArgs {
    const char *weights, *output; // output: a .png for a generator
    bool has_seed, has_temperature, quiet;
    uint64_t seed;
    int64_t count; // lines of a text model (0: 20)
    double temperature;
} AppSampleArgs;

// Takes the value of --seed, --count or --temperature into g, with nnc's
// ranges; non-zero when it is out of range or not a number.
int app_sample_option(AppSampleArgs *g, const char *opt, const char *value);
// Draws from the program's generator or text model as `nnc sample` does;
// prog names the program in messages. Returns the exit status (0, 1, or 2
// for bad usage).
int app_cmd_sample(const NnrtApp *a, const AppSampleArgs *g, const char *prog);

#endif
