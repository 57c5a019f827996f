// Data loading and preparation for training runs: IDX and CSV loaders, the
// dataset pair (x, y), splits, per-sample transforms, seeded shuffling,
// batching, image augmentation and image export. Part of libnnrt, so it uses
// libc and zlib only. Every function that can fail on the environment or on
// a bad file returns NnStatus and leaves a message naming the file (and the
// byte offset or line) in nnrt_errmsg(). All randomness comes from NnrtDataRng
// streams seeded explicitly, so a run is reproducible from its seed.
#ifndef NNRT_DATA_H
#define NNRT_DATA_H

#include "nnrt.h"

#include <stdio.h>

// ---- random numbers --------------------------------------------------------

// xoshiro256** seeded through splitmix64; (seed, stream) pairs give
// independent sequences, e.g. stream = epoch for shuffling.
typedef struct NnrtDataRng {
    uint64_t s[4];
} NnrtDataRng;

void nnrt_data_rng_seed(NnrtDataRng *r, uint64_t seed, uint64_t stream);
uint64_t nnrt_data_rng_u64(NnrtDataRng *r);
double nnrt_data_rng_uniform(NnrtDataRng *r);            // [0, 1)
double nnrt_data_rng_normal(NnrtDataRng *r);             // N(0, 1)
int64_t nnrt_data_rng_below(NnrtDataRng *r, int64_t n);  // uniform in [0, n), n > 0

// ---- file loaders ----------------------------------------------------------

// Reads an IDX file, gzipped (detected by its magic bytes) or plain. Element
// types ubyte, byte, short, int, float and double are accepted. A rank-1 file of
// an integer type (labels) becomes i32 [count]; anything else becomes f32 with
// the file's shape and raw values (images stay 0..255). *out is owned by the
// caller; it is NULL on failure.
NnStatus nnrt_idx_load(const char *path, NnTensor **out);
// Where the elements of a loaded IDX file were: element i of the file starts
// at byte header_bytes + i * elem_size (of the uncompressed stream).
typedef struct NnrtIdxInfo {
    int type;         // IDX element type code (0x08 ubyte ... 0x0E double)
    int header_bytes; // 4 + 4 * rank
    int elem_size;    // bytes per element in the file
} NnrtIdxInfo;
// nnrt_idx_load that also fills *info (may be NULL).
NnStatus nnrt_idx_load_info(const char *path, NnTensor **out, NnrtIdxInfo *info);
// The header alone: *out has the shape and dtype nnrt_idx_load gives and no
// storage (data NULL), for sizes and counts without reading the elements.
NnStatus nnrt_idx_load_header(const char *path, NnTensor **out);

// How a CSV file is read. Zero-initialized means: auto-detect a header, ','
// separated, label = last column.
typedef struct NnrtCsvOptions {
    const char *label_name; // label column by header name; NULL: use label_index
    int label_index;        // column index, negative counts from the end (-1 = last)
    bool label_index_set;   // false: label_index is taken as -1
    int header;             // 0 auto (a non-numeric field in row 1), 1 present, -1 none
    char delimiter;         // 0 means ','
} NnrtCsvOptions;

// ---- datasets ------------------------------------------------------------

// Samples along dimension 0 of x and y. y is i32 [count] class indices,
// f32 [count, k] (one-hot or regression targets), or NULL (unlabelled).
typedef struct NnrtDataset {
    NnTensor *x;         // owned; f32 [count, ...]
    NnTensor *y;         // owned or NULL
    int64_t count;       // == x->shape[0] == y->shape[0]
    int num_classes;     // classes seen in y (max label + 1, or names); 0: regression
    char **class_names;  // num_classes names for string CSV labels, else NULL
    int64_t img_h, img_w; // image geometry when known (IDX images, [N, 1, H, W]), else 0
    char *vocab;          // text sources: vocab[i] is the byte of id i (num_classes), else NULL
    // Where each label came from, for messages: y_file (owned, or NULL) and,
    // per sample, its byte offset in an IDX file or its 1-based CSV line
    // (y_at_line). Loaders set them; subsets and splits carry them along.
    char *y_file;
    int64_t *y_at;   // count entries, or NULL when unknown
    bool y_at_line;
} NnrtDataset;

void nnrt_dataset_init(NnrtDataset *ds);
void nnrt_dataset_fini(NnrtDataset *ds);

// Takes ownership of x and y (both, even on failure). Fails when their
// sample counts disagree, naming both sources (x_name, y_name may be NULL).
NnStatus nnrt_dataset_set(NnrtDataset *ds, NnTensor *x, NnTensor *y, const char *x_name,
                          const char *y_name);
// Images + labels from two IDX files; checks that their counts agree. Gray
// images [N, H, W] get a channel axis: [N, 1, H, W] (NCHW).
NnStatus nnrt_dataset_load_idx(NnrtDataset *ds, const char *images, const char *labels);
// nnrt_dataset_load_idx reading only the images file's header: x has the
// shape and no storage (data NULL), for counts and shapes (nnc build); the
// labels are read whole.
NnStatus nnrt_dataset_load_idx_shape(NnrtDataset *ds, const char *images, const char *labels);
// A CSV file: features -> f32 [rows, cols-1], label column -> i32 classes when
// every value is an integer, class names (sorted, kept in class_names) when any
// value is not a number, else f32 [rows, 1] regression targets.
NnStatus nnrt_dataset_load_csv(NnrtDataset *ds, const char *path, const NnrtCsvOptions *opt);

// How a text file is cut into windows; zero-initialized fields take defaults.
typedef struct NnrtTextOptions {
    int64_t seq;     // window length in bytes, 1 to 65536
    int64_t stride;  // bytes between window starts; 0 means 1
    double from, to; // the part of the file used, as fractions of its bytes
    bool to_set;     // false: to = 1
} NnrtTextOptions;

// A text file as next-character pairs (text.c): x i32 [count, seq] windows
// of byte ids starting every `stride` bytes, label i32 [count] the id of the
// byte after each window. The ids index ds->vocab, the distinct bytes of the
// whole file sorted (whatever part is used), and num_classes is their count.
NnStatus nnrt_dataset_load_text(NnrtDataset *ds, const char *path, const NnrtTextOptions *o);
// Bits per character of eval's labels under the byte frequencies of fit's
// labels (add-one smoothed): the unigram baseline a language model must beat.
double nnrt_text_unigram_bits(const NnrtDataset *fit, const NnrtDataset *eval);
// Checks that every i32 class label of ds is in [0, classes); the first one
// outside is an NN_ERR_FORMAT naming the label file and the byte offset or line
// of that label when known ("labels.idx: byte 17: label 200 is outside 0..9").
// classes comes from the caller (e.g. the model's output width). Float or
// absent labels pass.
NnStatus nnrt_dataset_check_labels(const NnrtDataset *ds, int classes);
// Sets where ds's labels came from (replacing any earlier origin); takes at
// (count entries, may be NULL) and copies file (NULL: labels from no file).
NnStatus nnrt_dataset_set_label_origin(NnrtDataset *ds, const char *file, int64_t *at, bool line);

// Splits src into n disjoint parts that together cover it, by fractions
// (normalized by their sum), after a permutation seeded by seed. Part i gets
// the samples between the rounded cumulative boundaries; the last part takes
// what rounding left. out[0..n-1] are initialized by this call.
NnStatus nnrt_dataset_split(const NnrtDataset *src, const double *fracs, int n, uint64_t seed,
                            NnrtDataset *out);
// A copy of the samples idx[0..n-1] of src (class names are copied too).
NnStatus nnrt_dataset_subset(const NnrtDataset *src, const int64_t *idx, int64_t n,
                             NnrtDataset *out);

// ---- per-sample transforms -------------------------------------------------

void nnrt_dataset_scale(NnrtDataset *ds, double k);   // x *= k
void nnrt_dataset_flatten(NnrtDataset *ds);           // x -> [count, features]
// y (i32 [count]) -> f32 [count, classes]; classes <= 0 uses ds->num_classes.
// A label outside [0, classes) is a data error (NN_ERR_FORMAT).
NnStatus nnrt_dataset_one_hot(NnrtDataset *ds, int classes);

// Mean and standard deviation of x, computed on one dataset (the training
// split) and then applied to any number of others.
typedef struct NnrtNorm {
    int64_t features; // 1 when global, else the per-sample feature count
    float *mean;      // features entries
    float *std;       // features entries, never 0 (a constant feature gets 1)
} NnrtNorm;

NnStatus nnrt_norm_fit(NnrtNorm *n, const NnrtDataset *train, bool per_feature);
NnStatus nnrt_norm_apply(const NnrtNorm *n, NnrtDataset *ds); // x = (x - mean) / std
void nnrt_norm_fini(NnrtNorm *n);

// ---- shuffling and batching ------------------------------------------------

// perm <- a permutation of 0..n-1 that depends only on (seed, epoch).
void nnrt_shuffle(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch);
void nnrt_identity_perm(int64_t *perm, int64_t n);
int64_t nnrt_batch_count(int64_t count, int64_t batch); // ceil(count / batch)

// Allocates batch tensors shaped like ds->x and ds->y with batch rows.
NnStatus nnrt_batch_alloc(const NnrtDataset *ds, int64_t batch, NnTensor **xb, NnTensor **yb);
// Copies samples perm[i*batch ...] into xb (and yb when both are non-NULL)
// and returns how many there were: batch, or fewer for the last batch. The
// tensors' shape[0] and numel are set to that true size; their storage
// must hold `batch` rows (as from nnrt_batch_alloc).
int64_t nnrt_batch_gather(const NnrtDataset *ds, const int64_t *perm, int64_t batch, int64_t i,
                          NnTensor *xb, NnTensor *yb);
// A batch gathered by the default thread pool's workers in the moments they
// would spin between a step's kernels (runtime/pool.c side work), one row at
// a time, instead of by a thread of its own. NULL (nothing allocated) when no
// pool with workers is running; then gather inline.
typedef struct NnrtSideGather NnrtSideGather;
NnrtSideGather *nnrt_side_gather_new(void);
void nnrt_side_gather_free(NnrtSideGather *g);
// Starts copying samples rows[0..n) of ds into xb (and yb when both are
// non-NULL), sized as by nnrt_batch_alloc; nothing else may touch them
// until nnrt_side_gather_wait. One batch at a time per gatherer.
void nnrt_side_gather_post(NnrtSideGather *g, const NnrtDataset *ds, const int64_t *rows,
                           int64_t n, NnTensor *xb, NnTensor *yb);
// Copies the rows no worker took, waits for theirs, and sets the batch's
// shapes: then xb and yb hold what nnrt_batch_gather would have put there.
void nnrt_side_gather_wait(NnrtSideGather *g);
// The threads of the pool g's rows are offered to (its caller included).
int nnrt_side_gather_threads(const NnrtSideGather *g);

// ---- augmentation (augment.c) ----------------------------------------------

// Which random transforms a batch gets; zero means off for each.
typedef struct NnrtAugment {
    double rotate_deg; // uniform angle in [-rotate_deg, rotate_deg], bilinear
    int shift_px;      // integer shift in [-shift_px, shift_px] per axis
    bool hflip;        // mirror left-right with probability 0.5
    double noise_std;  // additive gaussian noise
    float fill;        // pixels from outside the image (rotation, shift); nnrt_augment_fill
} NnrtAugment;

bool nnrt_augment_active(const NnrtAugment *a);
// The fill for pixels that come from outside an image: black, the smallest x
// of the training set. Augmentation runs on the data as the data block left
// it, so black is 0 after x / 255 but -mean/std after normalize(x); a fill
// of 0 there painted mid-gray frames on dark-background images.
float nnrt_augment_fill(const NnrtDataset *train);
// Augments n samples of f32 data in place. Each sample holds planes of h*w
// pixels (features = planes * h * w, e.g. [B, H, W] or flattened [B, H*W]);
// every plane of a sample gets the same transform. Draws from rng only, so
// the result is a function of the rng state.
NnStatus nnrt_augment_batch(const NnrtAugment *a, float *x, int64_t n, int64_t features,
                            int64_t h, int64_t w, NnrtDataRng *rng);
// The single-image transforms, src and dst distinct, h*w floats each.
void nnrt_image_hflip(const float *src, float *dst, int64_t h, int64_t w);
void nnrt_image_shift(const float *src, float *dst, int64_t h, int64_t w, int64_t dy, int64_t dx,
                      float fill);
void nnrt_image_rotate(const float *src, float *dst, int64_t h, int64_t w, double degrees,
                       float fill);

// ---- image export (image.c) ------------------------------------------------

// Writes the first n images (h*w floats each, consecutive) as a grid with
// `cols` columns and a 1-pixel black border, in 8-bit gray. Values map
// linearly from [lo, hi] to 0..255; lo == hi means the images' own min..max.
// The file is replaced atomically (runtime/savefile.h): a failed write keeps it.
NnStatus nnrt_image_write_pgm(const char *path, const float *x, int64_t n, int64_t h, int64_t w,
                              int cols, float lo, float hi);
NnStatus nnrt_image_write_png(const char *path, const float *x, int64_t n, int64_t h, int64_t w,
                              int cols, float lo, float hi);
// Writes h rows of w RGB pixels (3 bytes each) as a PNG, replaced atomically.
NnStatus nnrt_image_write_rgb_png(const char *path, const unsigned char *rgb, int64_t w, int64_t h);

#endif
