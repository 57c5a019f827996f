// Fuzz target: a CSV file through the CSV loader, with the default options
// (header detected, label last) and with a header and the first column as label.
#include <unistd.h>

#include "data.h"
#include "fuzz.h"

int nn_fuzz_csv(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = nn_fuzz_file(data, size, path);
    if (fd < 0)
        return 0;
    NnrtCsvOptions opts[2] = {{0}, {.label_index = 0, .label_index_set = true, .header = 1}};
    for (int i = 0; i < 2; i++) {
        NnrtDataset ds;
        nnrt_dataset_init(&ds);
        nnrt_dataset_load_csv(&ds, path, &opts[i]);
        nnrt_dataset_fini(&ds);
    }
    close(fd);
    return 0;
}

#ifdef NN_FUZZ_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return nn_fuzz_csv(data, size); }
#endif
