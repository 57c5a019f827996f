# PyTorch's side of the CNN benchmark, run by bench/run.sh with Debian's
# /usr/bin/python3 and python3-torch (oneDNN on), OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE unset, once per thread count (--threads T; OMP_NUM_THREADS
# is set by the caller before torch loads). The same two models as
# examples/lenet5.nn and examples/fashion_cnn.nn, on the real Fashion-MNIST
# training images:
#   lenet5: conv 5x5 1->6 (pad 2) relu, maxpool 2, conv 5x5 6->16 relu,
#           maxpool 2, dense 400-120-84-10 (relu), Adam 1e-3, batch 64;
#   cnn2:   conv 5x5 1->32 same relu, maxpool 2, conv 5x5 32->64 same relu,
#           maxpool 2, dense 3136-1024 relu, dropout 0.4, dense 10, Adam 1e-3,
#           batch 64.
# Two figures per model: whole epochs over the first images (as many as nnc's
# side trains in bench/run.sh) as a
# user waits for them (shuffle, batch gather, step; no evaluation), and the
# bare step on one resident batch. channels_last is tried too and the faster
# memory format kept. Prints one flat JSON object.
import gzip
import json
import sys
import time

import numpy as np
import torch
from torch import nn

QUICK = "--quick" in sys.argv
THREADS = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
DATA = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def load_images(limit):
    with gzip.open(DATA, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, 28, 28)[:limit]
    y = np.random.default_rng(1).integers(0, 10, size=len(x))  # labels do not change the cost
    return torch.from_numpy(x.astype(np.float32) / 255), torch.from_numpy(y)


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def cnn2():
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.4), nn.Linear(1024, 10))


def make_step(model, opt, loss_fn):
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return step


def run(make, batch, x, y, fmt):
    torch.manual_seed(1)
    model = make().train().to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    step = make_step(model, opt, nn.CrossEntropyLoss())
    xb, yb = x[:batch].contiguous(memory_format=fmt), y[:batch]
    for _ in range(3):
        step(xb, yb)
    # bare step: median of reps over a calibrated count
    reps, n = (3 if QUICK else 5), 3
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            step(xb, yb)
        times.append((time.perf_counter() - t0) / n)
    times.sort()
    bare = times[len(times) // 2]
    # whole epochs: shuffled batches gathered from the resident data set
    epochs = 1 if QUICK else 2
    best = float("inf")
    g = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            step(x[idx].contiguous(memory_format=fmt), y[idx])
        best = min(best, time.perf_counter() - t0)
    return batch / bare, len(x) / best


def main():
    torch.set_num_threads(THREADS)
    # nnc trains with denormals flushed to zero (runtime/fpenv.c): the same here.
    torch.set_flush_denormal(True)
    t = THREADS
    out = {"torch_version": torch.__version__, "onednn": torch.backends.mkldnn.is_available()}
    for name, make, batch, limit in (("lenet5", lenet5, 64, 6400 if QUICK else 30000),
                                     ("cnn2", cnn2, 64, 1280 if QUICK else 3200)):
        x, y = load_images(limit)
        best = None
        for fmt in (torch.contiguous_format, torch.channels_last):
            got = run(make, batch, x, y, fmt)
            if best is None or got[1] > best[1]:
                best = got + (str(fmt).split(".")[-1],)
        out[f"torch_{name}_step_t{t}_sps"] = best[0]
        out[f"torch_{name}_epoch_t{t}_sps"] = best[1]
        out[f"torch_{name}_format_t{t}"] = best[2]
        out[f"torch_{name}_epoch_samples"] = len(x)
        print(f"bench: torch {name} t{t}: step {best[0]:.0f} samples/s, "
              f"epoch {best[1]:.0f} samples/s ({best[2]})", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
