# PyTorch's side of the whole-epoch benchmark, run by bench/run.sh with
# Debian's /usr/bin/python3 and python3-torch, once per thread count
# (--threads T, with OMP_NUM_THREADS and OPENBLAS_NUM_THREADS = T set before
# torch loads; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset). The same models
# as nnc's side, trained on the real Fashion-MNIST images the way a user waits
# for an epoch: a shuffled index each epoch (torch.randperm), each batch
# gathered from the resident data set by that index (x[idx], y[idx]), then
# zero_grad, forward, backward, Adam step; evaluation excluded. No DataLoader:
# its worker processes and collation only add time on 2 cores, so this loop
# is PyTorch's best configuration here. Adam with foreach=True (on this
# machine's torch 1.13 the per-tensor Adam is several times slower; the bare
# step in torch_bench.py measures both).
#   mlp:  784-256-128-10 ReLU (bench/fashion_mlp.nn), with and without
#         dropout 0.2 after the first layer (bench/fashion_mlp_dropout.nn),
#         Adam 1e-3, cross-entropy; batch 128, and without dropout also at
#         batch 32, 64, 256, 512 and 1024;
#   gru:  nn.GRU(28, 128) over the 28 rows of 28 pixels + Linear(128, 10)
#         (examples/fashion_gru.nn), Adam 2e-3, clip_grad_norm_(1.0), batch 128.
# The timed epoch is the best of the epochs after the first (which warms up).
# Prints one flat JSON object.
import gzip
import json
import sys
import time

import numpy as np
import torch
from torch import nn

QUICK = "--quick" in sys.argv
THREADS = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
DATA = "/usr/share/datasets/fashion-mnist/train-"
BATCHES = (32, 64, 128, 256, 512, 1024)


def load(limit):
    """The first `limit` training images as f32 in [0, 1] [n, 784], and their labels."""
    with gzip.open(DATA + "images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 784)[:limit]
    with gzip.open(DATA + "labels-idx1-ubyte.gz", "rb") as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:limit]
    return torch.from_numpy(x.astype(np.float32) / 255), torch.from_numpy(y.astype(np.int64))


def mlp(dropout):
    layers = [nn.Linear(784, 256), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)]
    return nn.Sequential(*layers)


class Rows(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(28, 128, batch_first=True)
        self.out = nn.Linear(128, 10)

    def forward(self, x):
        _, h = self.gru(x)
        return self.out(h[0])


def epochs(model, lr, clip, x, y, batch, count):
    """Samples/s of the best of count - 1 whole epochs after a first one."""
    torch.manual_seed(1)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    loss_fn = nn.CrossEntropyLoss()
    params = list(model.parameters())
    g = torch.Generator().manual_seed(1)
    best = float("inf")
    for e in range(count):
        t0 = time.perf_counter()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(params, clip)
            opt.step()
        if e > 0:
            best = min(best, time.perf_counter() - t0)
    return len(x) / best


def main():
    torch.set_num_threads(THREADS)
    # nnc trains with denormals flushed to zero (runtime/fpenv.c): the same here.
    torch.set_flush_denormal(True)
    t = THREADS
    out = {"torch_version": torch.__version__}
    n = 12800 if QUICK else 54000  # nnc trains on its 90% split: 54000 images
    # The MLP's epochs take a second or less on either side: 4 timed ones after
    # the first (as bench/run.sh runs nnc's), so that a busy moment of a
    # shared machine does not decide the figure; the GRU's keep one.
    count = 2 if QUICK else 5
    x, y = load(n)
    out["torch_epoch_samples"] = n
    for batch in BATCHES:
        if QUICK and batch not in (128, 1024):
            continue
        torch.manual_seed(1)
        sps = epochs(mlp(0), 1e-3, 0, x, y, batch, count)
        out[f"torch_mlp_epoch_b{batch}_t{t}_sps"] = sps
        print(f"bench: torch MLP epoch, batch {batch}, {t} thread(s): {sps:.0f} samples/s",
              file=sys.stderr)
    torch.manual_seed(1)
    out[f"torch_mlpdrop_epoch_b128_t{t}_sps"] = epochs(mlp(0.2), 1e-3, 0, x, y, 128, count)
    ng = 640 if QUICK else 6400
    torch.manual_seed(1)
    out[f"torch_gru_epoch_t{t}_sps"] = epochs(Rows(), 2e-3, 1.0, x[:ng].reshape(-1, 28, 28),
                                              y[:ng], 128, 2)
    out["torch_gru_epoch_samples"] = ng
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
