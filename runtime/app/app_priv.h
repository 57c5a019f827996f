// Private to runtime/app: the parts of a built program's main split out of
// main.c: the data block replayed (data.c) and predict's input (input.c).
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

#endif
