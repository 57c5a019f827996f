# PyTorch's side of the benchmark, run by bench/run.sh with Debian's
# /usr/bin/python3 and python3-torch, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
# unset. The same workloads as bench/nnc_bench.c: the Fashion-MNIST MLP
# training step at batch 128 (784-256-128-10, ReLU, Adam 1e-3, cross-entropy;
# with dropout 0.2 after the first layer, and without), the XOR step (2-8-1
# tanh/sigmoid, MSE, Adam, batch 4) and batch-1 inference (eval mode). PyTorch at its best: run.sh starts this
# once per thread count (--threads T, with OMP_NUM_THREADS and
# OPENBLAS_NUM_THREADS = T, which must be set before torch loads); Adam is
# tried both per tensor and with foreach=True (on this machine's torch 1.13,
# per tensor is several times slower), inference under no_grad and
# inference_mode; the best of each is kept. Prints one flat JSON object.
import json
import sys
import time

import torch
from torch import nn

QUICK = "--quick" in sys.argv
THREADS = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1


def bench(fn, min_s, reps=7):
    """Seconds per call: warm up, calibrate a count, median of reps repetitions."""
    if QUICK:
        min_s, reps = min_s / 4, min(reps, 3)
    for _ in range(3):
        fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_s:
            break
        n = max(2, int(n * 1.2 * min_s / dt) + 1) if dt > 0 else n * 2
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    times.sort()
    return times[len(times) // 2]


def mlp():
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10))


def mlp_nodrop():
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10))


def train_step(model, opt, loss_fn, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return step


def best_step(make, loss_fn, x, y, min_s):
    """(seconds per step, foreach) for the faster of the two Adam implementations."""
    got = []
    for foreach in (False, True):
        torch.manual_seed(1)
        model = make().train()
        opt = torch.optim.Adam(model.parameters(), lr=make.lr, foreach=foreach)
        got.append((bench(train_step(model, opt, loss_fn, x, y), min_s), int(foreach)))
    return min(got)


def main():
    torch.manual_seed(1)
    torch.set_num_threads(THREADS)
    # nnc trains with denormals flushed to zero (runtime/fpenv.c): the same here.
    torch.set_flush_denormal(True)
    t = THREADS
    out = {"torch_version": torch.__version__}
    mlp.lr = 1e-3
    x = torch.rand(128, 784)
    y = torch.randint(0, 10, (128,))
    s, foreach = best_step(mlp, nn.CrossEntropyLoss(), x, y, 0.3)
    out[f"torch_mlp_train_t{t}_sps"] = 128 / s
    out[f"torch_mlp_train_t{t}_foreach"] = foreach
    mlp_nodrop.lr = 1e-3
    s, foreach = best_step(mlp_nodrop, nn.CrossEntropyLoss(), x, y, 0.3)
    out[f"torch_mlpnd_train_t{t}_sps"] = 128 / s
    out[f"torch_mlpnd_train_t{t}_foreach"] = foreach

    def xor():
        return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid())
    xor.lr = 0.05
    xx = torch.tensor([[0., 0.], [0., 1.], [1., 0.], [1., 1.]])
    xy = torch.tensor([[0.], [1.], [1.], [0.]])
    s, foreach = best_step(xor, nn.MSELoss(), xx, xy, 0.1)
    out[f"torch_xor_t{t}_us"] = s * 1e6
    out[f"torch_xor_t{t}_foreach"] = foreach

    m = mlp().eval()
    x1 = torch.rand(1, 784)

    def no_grad():
        with torch.no_grad():
            m(x1)

    def inference_mode():
        with torch.inference_mode():
            m(x1)
    out[f"torch_infer1_t{t}_us"] = min(bench(no_grad, 0.1), bench(inference_mode, 0.1)) * 1e6
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
