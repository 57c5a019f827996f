# PyTorch's side of the GRU benchmark (bench/rnn_bench.sh): the training step
# of examples/fashion_gru.nn, nn.GRU(28, 128, batch_first=True) + Linear(128,
# 10), cross-entropy, Adam 2e-3 with clip_grad_norm_(1.0), batch 128 of 28x28
# images. Run with Debian's /usr/bin/python3, once per thread count (--threads
# T with OMP_NUM_THREADS and OPENBLAS_NUM_THREADS = T); Adam per tensor and
# with foreach=True, the faster kept. Prints samples/s as JSON.
import json
import sys
import time

import torch
from torch import nn

THREADS = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1


class Rows(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(28, 128, batch_first=True)
        self.out = nn.Linear(128, 10)

    def forward(self, x):
        _, h = self.gru(x)
        return self.out(h[0])


def run(foreach, steps=30):
    torch.manual_seed(1)
    model = Rows().train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, foreach=foreach)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(128, 28, 28)
    y = torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t0) / steps)
    return 128 / best


def main():
    torch.set_num_threads(THREADS)
    # nnc trains with denormals flushed to zero (runtime/fpenv.c): the same here.
    torch.set_flush_denormal(True)
    sps = max(run(False), run(True))
    print(json.dumps({"torch_version": torch.__version__, "threads": THREADS,
                      "gru_train_sps": sps}))


if __name__ == "__main__":
    main()
