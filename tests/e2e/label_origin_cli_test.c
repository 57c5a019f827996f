// Where labels come from, as a label outside the model's classes reports it:
// a text file's labels name the file (split or not), labels written in the
// script name their split and statement. The dataset's own label origin is
// the one record of it (loaders set it, splits carry it, a computed label
// field clears it).
#define _GNU_SOURCE // asprintf, strndup in testutil.h
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

TestSuite(label_origin_cli, .timeout = 120);

static char *run_bad(const char *text, int *rc)
{
    char *path = tu_write_temp(".nn", text), *out = NULL;
    cr_assert(path);
    *rc = tu_nnc_run(&out, "train -q %s", path);
    unlink(path);
    free(path);
    return out;
}

Test(label_origin_cli, text_labels_name_the_file_through_a_split)
{
    char *txt = tu_write_temp(".txt", "hello world, hello text\n");
    cr_assert(txt);
    char text[1024];
    snprintf(text, sizeof text,
             "import std\n"
             "data d {\n    train = text(\"%s\", seq = 3)\n"
             "    split train -> train 0.8, val 0.2 (seed = 1)\n}\n"
             "model m(x: i32[N, 3]) -> f32[N, 2] = x |> f32 |> dense(2)\n"
             "train m on d {\n loss = cross_entropy(output, label)\n optimizer = sgd()\n}\n",
             txt);
    int rc;
    char *out = run_bad(text, &rc);
    char want[512];
    snprintf(want, sizeof want, ":3:13: error: label 2 of sample 0 in '%s' is outside 0..1: "
             "model 'm' scores 2 classes", txt);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, want), "want %s in:\n%s", want, out);
    free(out);
    unlink(txt);
    free(txt);
}

Test(label_origin_cli, computed_labels_name_their_split_and_statement)
{
    int rc;
    char *out = run_bad("import std\n"
                        "data d {\n    x = [[0, 0], [0, 1], [1, 0], [1, 1]]\n"
                        "    label = i32([0, 1, 2, 1])\n}\n"
                        "model m(x: f32[N, 2]) -> f32[N, 2] = dense(x, 2)\n"
                        "train m on d {\n loss = cross_entropy(output, label)\n optimizer = sgd()\n}\n",
                        &rc);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, ":4:5: error: label 2 of sample 2 in split 'train' is outside 0..1: "
                          "model 'm' scores 2 classes"), "%s", out);
    free(out);
}
