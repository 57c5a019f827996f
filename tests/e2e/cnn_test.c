// Convolutional networks end to end through the nnc binary: IDX images reach
// the model as f32[N, 1, 28, 28], the stdlib conv/pool layers lower to the
// right geometry, a small CNN trained for seconds on a Fashion-MNIST subset
// beats a dense model with as many parameters, and its checkpoint evaluates
// to the same accuracy. Runs on the interpreter (the reference backend).
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "init.h"
#include "testutil.h"

static void to_root(void) { cr_assert_eq(chdir(NN_SOURCE_DIR), 0); }

TestSuite(cnn, .init = to_root, .timeout = 300);

#define FASHION "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

static void need_fashion(void)
{
    if (access(FASHION, R_OK) != 0)
        cr_skip_test("Fashion-MNIST is not installed (%s)", FASHION);
}

static const char *fashion_data =
    "import std\n"
    "data fashion {\n"
    "    train = idx(\"/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz\",\n"
    "                \"/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz\")\n"
    "    test  = idx(\"/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz\",\n"
    "                \"/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz\")\n"
    "    x = x / 255\n"
    "}\n";

// ~9.1k parameters: 80 + 1168 + 7850.
static const char *models =
    "model cnn(x: f32[N, 1, 28, 28]) -> f32[N, 10] {\n"
    "    h = x |> conv2d(8, 3) |> relu |> max_pool(2)\n"
    "    h = h |> conv2d(16, 3) |> relu |> max_pool(2)\n"
    "    return h |> flatten |> dense(10)\n"
    "}\n"
    // ~9.5k parameters: 9420 + 130.
    "model mlp(x: f32[N, 1, 28, 28]) -> f32[N, 10] {\n"
    "    return x |> flatten |> dense(12) |> relu |> dense(10)\n"
    "}\n";

static char *script(const char *model)
{
    char *text;
    cr_assert(asprintf(&text,
                       "%s%s"
                       "train %s on fashion {\n"
                       "    loss = cross_entropy(output, label)\n"
                       "    optimizer = adam(lr = 3e-3)\n"
                       "    batch = 32\n"
                       "    epochs = 2\n"
                       "    limit = 4000\n"
                       "    eval_limit = 1000\n"
                       "}\n",
                       fashion_data, models, model) > 0);
    char *path = tu_write_temp(".nn", text);
    free(text);
    return path;
}

// Trains `file` on the interpreter, saving to ckpt; returns the test accuracy.
static double train_accuracy(const char *file, const char *ckpt)
{
    char *log = tu_write_temp(".jsonl", ""), *out;
    int rc = tu_nnc_run(&out, "train %s --backend interp -q --metrics %s --set save=%s", file, log,
                        ckpt);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    char *text = tu_read_file(log);
    double acc = tu_jsonl_last(text, "test", "accuracy");
    cr_assert(!isnan(acc), "no test accuracy in %s", text);
    free(text);
    unlink(log);
    free(log);
    return acc;
}

// Trainable values in a checkpoint: everything but optimizer state, layer
// state and the step counter.
static int64_t weights(const char *ckpt)
{
    NnVars v;
    cr_assert_eq(nnrt_safetensors_load(ckpt, &v, NULL), NN_OK, "%s", nnrt_errmsg());
    int64_t n = 0;
    for (int i = 0; i < v.count; i++)
        if (!strchr(v.names[i], '/') && strcmp(v.names[i], "step") != 0)
            n += v.tensors[i]->numel;
    nnrt_vars_fini(&v);
    return n;
}

Test(cnn, small_cnn_beats_a_dense_model_of_the_same_size)
{
    need_fashion();
    char *cnn = script("cnn"), *mlp = script("mlp");
    char *wc = tu_write_temp(".st", ""), *wm = tu_write_temp(".st", "");
    double a_cnn = train_accuracy(cnn, wc), a_mlp = train_accuracy(mlp, wm);
    int64_t n_cnn = weights(wc), n_mlp = weights(wm);
    cr_assert(n_cnn > 8000 && n_mlp > 8000 && fabs((double)(n_cnn - n_mlp)) < 0.1 * (double)n_mlp,
              "comparable sizes: cnn %lld, mlp %lld weights", (long long)n_cnn, (long long)n_mlp);
    cr_assert(a_cnn > 0.78, "cnn test accuracy %g", a_cnn);
    cr_assert(a_cnn > a_mlp + 0.03, "cnn %g should beat the dense model %g", a_cnn, a_mlp);
    // The checkpoint evaluates to the same accuracy (on the same 1000 test images).
    char *out;
    cr_assert_eq(tu_nnc_run(&out, "eval %s --backend interp --weights %s", cnn, wc), 0, "%s", out);
    char want[64];
    snprintf(want, sizeof want, "accuracy %.4f", a_cnn);
    cr_assert(strstr(out, want), "eval should report %s:\n%s", want, out);
    cr_assert(strstr(out, "(1000 samples)"), "eval_limit applies to eval too:\n%s", out);
    free(out);
    unlink(cnn), unlink(mlp), unlink(wc), unlink(wm);
    free(cnn), free(mlp), free(wc), free(wm);
}

// IDX images keep their channel axis, and flatten keeps the batch axis.
Test(cnn, idx_images_are_nchw)
{
    need_fashion();
    char *text;
    cr_assert(asprintf(&text, "%s"
                       "model flat(x: f32[N, 784]) -> f32[N, 10] { return dense(x, 10) }\n"
                       "train flat on fashion {\n loss = cross_entropy(output, label)\n"
                       " optimizer = adam()\n}\n", fashion_data) > 0);
    char *path = tu_write_temp(".nn", text), *out;
    free(text);
    cr_assert_eq(tu_nnc_run(&out, "check %s", path), 1, "%s", out);
    cr_assert(strstr(out, "got f32[N, 1, 28, 28]"), "%s", out);
    free(out);
    unlink(path);
    free(path);
}

// The stdlib layers' geometry, as printed by the IR: "same" padding splits
// the odd pixel to the bottom/right, strided "same" halves the image,
// transposed "same" doubles it, global_avg_pool leaves [N, C].
Test(cnn, layer_geometry_in_the_ir)
{
    const char *text =
        "import std\n"
        "model m(x: f32[N, 3, 28, 28]) -> f32[N, 8] {\n"
        "    h = x |> conv2d(4, 3, stride = 2)\n"
        "    h = h |> conv_transpose2d(6, 3, stride = 2)\n"
        "    h = h |> avg_pool(2) |> conv2d(8, 3, dilation = 2, groups = 2, padding = 2)\n"
        "    return global_avg_pool(h)\n"
        "}\n";
    char *path = tu_write_temp(".nn", text), *out;
    cr_assert_eq(tu_nnc_run(&out, "ir %s --stage ir", path), 0, "%s", out);
    cr_assert(strstr(out, "param m.conv2d1.w : f32[4, 3, 3, 3]"), "%s", out);
    cr_assert(strstr(out, "stride=[2, 2] dilation=[1, 1] pad=[0, 0, 1, 1] groups=1 : "
                          "f32[N, 4, 14, 14]"), "%s", out);
    cr_assert(strstr(out, "param m.conv_transpose2d1.w : f32[4, 6, 3, 3]"), "%s", out);
    cr_assert(strstr(out, ": f32[N, 6, 28, 28]"), "transposed conv doubles:\n%s", out);
    cr_assert(strstr(out, ": f32[N, 6, 14, 14]"), "avg pool halves:\n%s", out);
    cr_assert(strstr(out, "param m.conv2d2.w : f32[8, 3, 3, 3]"), "groups split C:\n%s", out);
    cr_assert(strstr(out, "dilation=[2, 2] pad=[2, 2, 2, 2] groups=2 : f32[N, 8, 14, 14]"), "%s",
              out);
    cr_assert(strstr(out, "reduce_mean"), "%s", out);
    free(out);
    unlink(path);
    free(path);
}

// He initialization of convolution filters uses fan-in C/groups * KH * KW.
Test(cnn, he_init_uses_the_filter_fan_in)
{
    NnTensor *t = nnrt_tensor_new(NN_DT_F32, 4, (int64_t[]){64, 2, 3, 3});
    cr_assert_eq(nnrt_init_fill(t, "he_uniform", NULL, 0, 1, "w"), NN_OK);
    double bound = sqrt(6.0 / (2 * 3 * 3)), mx = 0;
    for (int64_t i = 0; i < t->numel; i++)
        mx = fmax(mx, fabs(nnrt_tensor_get(t, i)));
    cr_assert(mx <= bound && mx > 0.9 * bound, "max |w| %g, bound %g", mx, bound);
    nnrt_tensor_free(t);
}
