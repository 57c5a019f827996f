// Metrics against hand-computed confusion matrices, including classes that
// are never predicted or never occur, outputs given as logits or one-hot
// labels, regression mse, and the exact JSON-lines format.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

Test(metrics, hand_computed_three_classes)
{
    // true:  0 0 0 1 1 2 2 2 2 2
    // pred:  0 0 1 1 2 2 2 2 0 1
    int32_t lab[] = {0, 0, 0, 1, 1, 2, 2, 2, 2, 2}, pred[] = {0, 0, 1, 1, 2, 2, 2, 2, 0, 1};
    NnrtConfusion c;
    cr_assert_eq(nnrt_confusion_init(&c, 3), NN_OK);
    cr_assert_eq(nnrt_confusion_add(&c, pred, lab, 10), NN_OK);
    int64_t want[9] = {2, 1, 0, 0, 1, 1, 1, 1, 3};
    for (int i = 0; i < 9; i++)
        cr_assert_eq(c.m[i], want[i], "cell %d", i);
    NnrtEval e = {0};
    nnrt_eval_from_confusion(&e, &c);
    cr_assert_float_eq(e.accuracy, 0.6, 1e-12);
    // class 0: p = 2/3, r = 2/3; class 1: p = 1/3, r = 1/2; class 2: p = 3/4, r = 3/5
    NnrtClassScore s1 = nnrt_confusion_class(&c, 1);
    cr_assert_float_eq(s1.precision, 1.0 / 3, 1e-12);
    cr_assert_float_eq(s1.recall, 0.5, 1e-12);
    cr_assert_float_eq(s1.f1, 0.4, 1e-12);
    cr_assert_eq(s1.support, 2);
    cr_assert_eq(s1.predicted, 3);
    double p = (2.0 / 3 + 1.0 / 3 + 0.75) / 3, r = (2.0 / 3 + 0.5 + 0.6) / 3;
    double f = (2.0 / 3 + 0.4 + 2 * 0.75 * 0.6 / 1.35) / 3;
    cr_assert_float_eq(e.precision, p, 1e-12);
    cr_assert_float_eq(e.recall, r, 1e-12);
    cr_assert_float_eq(e.f1, f, 1e-12);
    nnrt_confusion_fini(&c);
}

Test(metrics, degenerate_classes_are_zero_and_absent_ones_excluded)
{
    // 4 classes. Class 1 is never predicted (support 2), class 2 is predicted
    // but never true, class 3 appears nowhere (left out of macro averages).
    int32_t lab[] = {0, 0, 1, 1}, pred[] = {0, 2, 0, 0};
    NnrtConfusion c;
    nnrt_confusion_init(&c, 4);
    cr_assert_eq(nnrt_confusion_add(&c, pred, lab, 4), NN_OK);
    NnrtClassScore s1 = nnrt_confusion_class(&c, 1), s2 = nnrt_confusion_class(&c, 2);
    cr_assert_float_eq(s1.precision, 0.0, 0);
    cr_assert_float_eq(s1.recall, 0.0, 0);
    cr_assert_float_eq(s1.f1, 0.0, 0);
    cr_assert_float_eq(s2.recall, 0.0, 0);
    cr_assert_eq(s2.support, 0);
    NnrtEval e = {0};
    nnrt_eval_from_confusion(&e, &c);
    cr_assert_float_eq(e.accuracy, 0.25, 1e-12);
    // class 0: p = 1/3, r = 1/2, f1 = 0.4; classes 1, 2: zeros; 3 classes present.
    cr_assert_float_eq(e.precision, (1.0 / 3) / 3, 1e-12);
    cr_assert_float_eq(e.recall, 0.5 / 3, 1e-12);
    cr_assert_float_eq(e.f1, 0.4 / 3, 1e-12);
    for (double *v = &e.accuracy; v <= &e.f1; v++)
        cr_assert(isfinite(*v));
    nnrt_confusion_fini(&c);
    // An empty evaluation is all zeros, not NaN.
    nnrt_confusion_init(&c, 2);
    nnrt_eval_from_confusion(&e, &c);
    cr_assert(e.accuracy == 0 && e.precision == 0 && e.recall == 0 && e.f1 == 0);
    nnrt_confusion_fini(&c);
}

Test(metrics, out_of_range_labels_are_rejected)
{
    NnrtConfusion c;
    nnrt_confusion_init(&c, 3);
    int32_t lab[] = {0, 3}, pred[] = {0, 1};
    cr_assert_eq(nnrt_confusion_add(&c, pred, lab, 2), NN_ERR_FORMAT);
    cr_assert(strstr(nnrt_errmsg(), "label 3 of sample 1"));
    cr_assert_eq(c.total, 0, "nothing added on error");
    nnrt_confusion_fini(&c);
}

Test(metrics, outputs_argmax_with_index_and_one_hot_labels)
{
    float logits[] = {0.1f, 2.0f, -1.0f, 3.0f, 0.0f, 0.0f, 1.0f, 1.0f, 5.0f};
    int32_t lab[] = {1, 0, 0};
    NnTensor *o = nnrt_tensor_view(NN_DT_F32, 2, (int64_t[]){3, 3}, logits);
    NnTensor *y = nnrt_tensor_view(NN_DT_I32, 1, (int64_t[]){3}, lab);
    NnrtConfusion c;
    nnrt_confusion_init(&c, 3);
    cr_assert_eq(nnrt_confusion_add_outputs(&c, o, y, 3), NN_OK, "%s", nnrt_errmsg());
    cr_assert_eq(c.m[1 * 3 + 1], 1);
    cr_assert_eq(c.m[0 * 3 + 0], 1);
    cr_assert_eq(c.m[0 * 3 + 2], 1);
    float oh[] = {0, 1, 0, 1, 0, 0, 0, 0, 1};
    NnTensor *yo = nnrt_tensor_view(NN_DT_F32, 2, (int64_t[]){3, 3}, oh);
    nnrt_confusion_reset(&c);
    cr_assert_eq(nnrt_confusion_add_outputs(&c, o, yo, 2), NN_OK);
    cr_assert_eq(c.total, 2);
    cr_assert_eq(c.m[1 * 3 + 1] + c.m[0], 2);
    nnrt_confusion_fini(&c);
    nnrt_tensor_free(o);
    nnrt_tensor_free(y);
    nnrt_tensor_free(yo);
}

Test(metrics, regression_mse)
{
    float out[] = {1, 2, 3, 4}, tgt[] = {1, 0, 3, 1};
    NnTensor *o = nnrt_tensor_view(NN_DT_F32, 2, (int64_t[]){2, 2}, out);
    NnTensor *t = nnrt_tensor_view(NN_DT_F32, 2, (int64_t[]){2, 2}, tgt);
    int64_t n = 0;
    double s = nnrt_sq_err_sum(o, t, 2, &n);
    cr_assert_eq(n, 4);
    cr_assert_float_eq(s / n, (0 + 4 + 0 + 9) / 4.0, 1e-12);
    nnrt_tensor_free(o);
    nnrt_tensor_free(t);
}

Test(metrics, json_line_format)
{
    NnrtEval e = {.epoch = 3, .split = "val", .loss = 0.31, .fields = NNRT_METRIC_CLASSIFY,
                  .accuracy = 0.887, .precision = 0.889, .recall = 0.887, .f1 = 0.887};
    char buf[256];
    nnrt_eval_json(&e, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"epoch\": 3, \"split\": \"val\", \"loss\": 0.31, \"accuracy\": "
                          "0.887, \"precision\": 0.889, \"recall\": 0.887, \"f1\": 0.887}");
    NnrtEval t = {.split = "test", .loss = NAN, .fields = NNRT_METRIC_MSE, .mse = 2.5};
    nnrt_eval_json(&t, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"split\": \"test\", \"loss\": null, \"mse\": 2.5}");
    // Written to a file: one object per line.
    char path[] = "/tmp/nnrt_metrics_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    NnrtJsonl j;
    cr_assert_eq(nnrt_jsonl_open(&j, path, false), NN_OK);
    cr_assert_eq(nnrt_jsonl_write(&j, &e), NN_OK);
    cr_assert_eq(nnrt_jsonl_write(&j, &t), NN_OK);
    cr_assert_eq(nnrt_jsonl_close(&j), NN_OK);
    FILE *f = fopen(path, "r");
    char line[256];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        cr_assert_eq(line[0], '{');
        cr_assert_str_eq(line + strlen(line) - 2, "}\n");
        lines++;
    }
    fclose(f);
    remove(path);
    cr_assert_eq(lines, 2);
}

Test(metrics, lookup_and_direction)
{
    NnrtEval e = {.loss = 0.5, .accuracy = 0.75, .f1 = 0.6, .mse = 1.5};
    double v;
    cr_assert(nnrt_eval_get(&e, "acc", &v) && v == 0.75);
    cr_assert(nnrt_eval_get(&e, "loss", &v) && v == 0.5);
    cr_assert(nnrt_eval_get(&e, "f1", &v) && v == 0.6);
    cr_assert(!nnrt_eval_get(&e, "auc", &v));
    cr_assert(nnrt_metric_higher_is_better("accuracy"));
    cr_assert(!nnrt_metric_higher_is_better("loss"));
    cr_assert(!nnrt_metric_higher_is_better("mse"));
}

// `confusion` selects the matrix; it has no value to report or stop on.
Test(metrics, confusion_is_a_report_choice)
{
    cr_assert_eq(nnrt_metric_bit("confusion"), NNRT_METRIC_CONFUSION);
    cr_assert(nnrt_metrics_want_confusion(0));
    cr_assert(nnrt_metrics_want_confusion(NNRT_METRIC_ACCURACY | NNRT_METRIC_CONFUSION));
    cr_assert(!nnrt_metrics_want_confusion(NNRT_METRIC_ACCURACY | NNRT_METRIC_F1));
    NnrtEval e = {0};
    double v;
    cr_assert(!nnrt_eval_get(&e, "confusion", &v));
    cr_assert(!nnrt_metric_higher_is_better("confusion"));
}

Test(metrics, printout_has_matrix_and_names)
{
    int32_t lab[] = {0, 1, 1}, pred[] = {0, 1, 0};
    NnrtConfusion c;
    nnrt_confusion_init(&c, 2);
    nnrt_confusion_add(&c, pred, lab, 3);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    char *names[] = {"cat", "dog"};
    nnrt_confusion_print(f, &c, names);
    fclose(f);
    cr_assert(strstr(buf, "cat"));
    cr_assert(strstr(buf, "dog"));
    cr_assert(strstr(buf, "     1      1      1"), "row 1 of the matrix: %s", buf);
    free(buf);
    nnrt_confusion_fini(&c);
}
