# Turns the JSON of bench/nnc_bench.c and bench/torch_bench.py (one or more
# rounds of each) into the markdown table of bench/results.md: nnc's
# interpreter and JIT against PyTorch and OpenBLAS as ratios, each target
# with PASS or MISS and by how much. Across rounds each figure keeps its best
# value (highest rate, lowest time), the same rule for every column.
#   usage: report.py FILE.json... > results.md
import json
import os
import platform
import subprocess
import sys
import time

LOWER_IS_BETTER = ("_us", "_ms")


def merge(files):
    out = {}
    for path in files:
        with open(path) as f:
            d = json.load(f)
        for k, v in d.items():
            if k not in out or not isinstance(v, (int, float)):
                out[k] = v
            elif k.endswith(LOWER_IS_BETTER):
                out[k] = min(out[k], v)
            elif k.endswith(("_sps", "_gflops")):
                out[k] = max(out[k], v)
    return out


def best(d, stem, unit, lower):
    """Best of the 1- and 2-thread figures: (value, threads) or (None, None)."""
    got = [(d[f"{stem}_t{t}_{unit}"], t) for t in (1, 2) if f"{stem}_t{t}_{unit}" in d]
    if not got:
        return None, None
    return (min if lower else max)(got)


def fmt(v, digits=3):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def verdict(achieved, required, lower=False, unit="x"):
    """PASS, or MISS and by how much: achieved vs required (a ratio or a time)."""
    if achieved is None:
        return "n/a (not measured)"
    ok = achieved <= required if lower else achieved >= required
    if ok:
        return "PASS"
    if lower:
        return f"MISS by {achieved - required:.0f} {unit} ({achieved / required:.2f}x the limit)"
    short = 100 * (1 - achieved / required)
    return f"MISS by {short:.0f}% ({fmt(achieved)}{unit} of {fmt(required)}{unit})"


def ratio(a, b):
    return a / b if a is not None and b else None


def times(r):
    """A ratio as "2.5x", or n/a."""
    return fmt(r) + "x" if r is not None else "n/a"


def model_rows(d):
    rows, targets = [], []
    ji, it_ = best(d, "mlp_train_interp", "sps", False)
    jj, jt = best(d, "mlp_train_jit", "sps", False)
    tj, tt = best(d, "torch_mlp_train", "sps", False)
    rows.append(("MLP training step with dropout 0.2, batch 128 (samples/s, higher is better)",
                 f"{fmt(ji)} ({it_}T)",
                 f"{fmt(jj)} ({jt}T)", f"{fmt(tj)} ({tt}T)", fmt(ratio(jj, ji)) + "x",
                 fmt(ratio(jj, tj)) + "x"))
    targets.append(("JIT >= 10x interpreter, MLP training step", fmt(ratio(jj, ji)) + "x",
                    verdict(ratio(jj, ji), 10)))
    targets.append(("JIT >= 1.5x PyTorch samples/s, MLP training step",
                     fmt(ratio(jj, tj)) + "x", verdict(ratio(jj, tj), 1.5)))
    ni, nit = best(d, "mlpnd_train_interp", "sps", False)
    nj, njt = best(d, "mlpnd_train_jit", "sps", False)
    nt, ntt = best(d, "torch_mlpnd_train", "sps", False)
    rows.append(("MLP training step without dropout, batch 128 (samples/s)", f"{fmt(ni)} ({nit}T)",
                 f"{fmt(nj)} ({njt}T)", f"{fmt(nt)} ({ntt}T)", fmt(ratio(nj, ni)) + "x",
                 fmt(ratio(nj, nt)) + "x"))
    xi, xit = best(d, "xor_interp", "us", True)
    xj, xjt = best(d, "xor_jit", "us", True)
    xt, xtt = best(d, "torch_xor", "us", True)
    rows.append(("XOR step, batch 4 (µs/step, lower is better)", f"{fmt(xi)} ({xit}T)",
                 f"{fmt(xj)} ({xjt}T)", f"{fmt(xt)} ({xtt}T)", fmt(ratio(xi, xj)) + "x",
                 fmt(ratio(xt, xj)) + "x"))
    targets.append(("JIT per-step overhead >= 20x lower than PyTorch, XOR",
                    fmt(ratio(xt, xj)) + "x", verdict(ratio(xt, xj), 20)))
    targets.append(("XOR training step < 1 µs", f"{fmt(xj)} µs",
                    verdict(xj, 1, lower=True, unit="µs")))
    ii, iit = best(d, "infer1_interp", "us", True)
    ij, ijt = best(d, "infer1_jit", "us", True)
    it, itt = best(d, "torch_infer1", "us", True)
    rows.append(("MLP inference, batch 1 (µs, lower is better)", f"{fmt(ii)} ({iit}T)",
                 f"{fmt(ij)} ({ijt}T)", f"{fmt(it)} ({itt}T)", fmt(ratio(ii, ij)) + "x",
                 fmt(ratio(it, ij)) + "x"))
    targets.append(("JIT batch-1 latency lower than PyTorch's", fmt(ratio(it, ij)) + "x",
                    verdict(ratio(it, ij), 1.0)))
    targets.append(("batch-1 MLP inference < 3 µs", f"{fmt(ij)} µs",
                    verdict(ij, 3, lower=True, unit="µs")))
    c, wall = d.get("mlp_compile_ms"), d.get("mlp_compile_wall_ms")
    front = d.get("mlp_front_ms")
    total = c + front if c is not None and front is not None else None
    rows.append(("JIT compile of the MLP training step (ms of CPU time, source to machine code)",
                 "", f"{fmt(total)} (front end {fmt(front)} + passes and LLVM {fmt(c)}; wall "
                 f"{fmt(wall)} on this machine; {fmt(d.get('mlp_jit_kernels'))} kernels)",
                 "", "", ""))
    targets.append(("MLP training step compiled (source to machine code) in < 150 ms",
                    f"{fmt(total)} ms", verdict(total, 150, lower=True, unit="ms")))
    return rows, targets


CNNS = [("lenet5", "LeNet-5 (examples/lenet5.nn), batch 64", 2.0),
        ("cnn2", "2-conv model (examples/fashion_cnn.nn), batch 64", 1.5)]


def cnn_rows(d):
    """The CNN training steps and whole epochs: nnc JIT and interpreter vs PyTorch."""
    rows, targets = [], []
    for key, name, target in CNNS:
        for kind, label in (("step", "bare training step"), ("epoch", "whole epoch")):
            if kind == "step":
                ii, it_ = best(d, f"cnn_{key}_interp", "sps", False)
                jj, jt = best(d, f"cnn_{key}_jit", "sps", False)
            else:
                ii, it_ = best(d, f"cnn_{key}_epoch_interp", "sps", False)
                jj, jt = best(d, f"cnn_{key}_epoch_jit", "sps", False)
            tj, tt = best(d, f"torch_{key}_{kind}", "sps", False)
            n = d.get(f"torch_{key}_epoch_samples")
            what = f"{name}, {label}" + (f" (about {n} images)" if kind == "epoch" and n
                                         else "")
            rows.append((what + " (samples/s)", f"{fmt(ii)} ({it_}T)" if ii else "n/a",
                         f"{fmt(jj)} ({jt}T)", f"{fmt(tj)} ({tt}T)", times(ratio(jj, ii)),
                         fmt(ratio(jj, tj)) + "x"))
            if kind == "epoch":
                targets.append((f"{name}: JIT >= {target:g}x PyTorch's best samples/s, whole "
                                f"epochs", fmt(ratio(jj, tj)) + "x", verdict(ratio(jj, tj), target)))
    return rows, targets


def share(d, sps, flops, t):
    """Share of the measured t-thread FMA peak that sps samples/s of flops each reach."""
    peak = d.get(f"peak_t{t}_gflops")
    return sps * flops / (peak * 1e9) if sps and flops and peak and t else None


def pct(v):
    return f"{100 * v:.0f}%" if v is not None else "n/a"


def flops_of(d, key):
    return d.get(f"{key}_t1_flops") or d.get(f"{key}_t2_flops")


# Whole-epoch rows: (label, nnc key stem, PyTorch key stem, FLOPs key stem).
EPOCHS = [("MLP 784-256-128-10, no dropout, batch 128", "mlp_epoch_b128", "torch_mlp_epoch_b128"),
          ("MLP, dropout 0.2, batch 128", "mlpdrop_epoch_b128", "torch_mlpdrop_epoch_b128"),
          ("LeNet-5, batch 64", "cnn_lenet5_epoch_jit", "torch_lenet5_epoch"),
          ("2-conv model (dropout 0.4), batch 64", "cnn_cnn2_epoch_jit", "torch_cnn2_epoch"),
          ("GRU 128 over 28 rows, batch 128", "gru_epoch", "torch_gru_epoch")]


def epoch_rows(d):
    """Whole epochs of every model: nnc's JIT and PyTorch at 1 and 2 threads, ratio of
    the bests, and each side's best as a share of the FMA peak of its thread count."""
    rows, targets = [], []
    for name, nk, tk in EPOCHS:
        fl = flops_of(d, nk)
        n1, n2 = d.get(f"{nk}_t1_sps"), d.get(f"{nk}_t2_sps")
        t1, t2 = d.get(f"{tk}_t1_sps"), d.get(f"{tk}_t2_sps")
        nb, nt = best(d, nk, "sps", False)
        tb, tt = best(d, tk, "sps", False)
        rows.append((name, fmt(fl / 1e6 if fl else None), fmt(n1), fmt(n2), fmt(t1), fmt(t2),
                     fmt(ratio(nb, tb)) + "x", f"{pct(share(d, nb, fl, nt))} ({nt}T)",
                     f"{pct(share(d, tb, fl, tt))} ({tt}T)"))
        if nk == "mlp_epoch_b128":
            # The measure: the best epoch rate against the 2-core peak.
            s2 = share(d, nb, fl, 2)
            targets.append(("MLP whole epochs, batch 128, no dropout: >= 75% of the 2-core FMA "
                            "peak", pct(s2), verdict(s2, 0.75)))
            targets.append(("MLP whole epochs, batch 128, no dropout: >= 2x PyTorch's best",
                            fmt(ratio(nb, tb)) + "x", verdict(ratio(nb, tb), 2)))
        if nk == "gru_epoch":
            targets.append(("GRU whole epochs: >= 1.5x PyTorch's best", fmt(ratio(nb, tb)) + "x",
                            verdict(ratio(nb, tb), 1.5)))
    return rows, targets


BATCHES = (32, 64, 128, 256, 512, 1024)


def sweep_rows(d):
    """The MLP without dropout, whole epochs, by batch size and threads."""
    rows, targets = [], []
    for b in BATCHES:
        nk, tk = f"mlp_epoch_b{b}", f"torch_mlp_epoch_b{b}"
        if not any(f"{k}_t{t}_sps" in d for k in (nk, tk) for t in (1, 2)):
            continue
        fl = flops_of(d, nk)
        cells = [str(b)]
        for t in (1, 2):
            v = d.get(f"{nk}_t{t}_sps")
            cells += [fmt(v), pct(share(d, v, fl, t))]
        for t in (1, 2):
            cells.append(fmt(d.get(f"{tk}_t{t}_sps")))
        nb, _ = best(d, nk, "sps", False)
        tb, _ = best(d, tk, "sps", False)
        cells.append(fmt(ratio(nb, tb)) + "x")
        rows.append(cells)
        if b == 1024:
            s2 = share(d, nb, fl, 2)
            targets.append(("MLP whole epochs, batch 1024: >= 85% of the 2-core FMA peak",
                            pct(s2), verdict(s2, 0.85)))
    return rows, targets


GEMMS = [("sq256", "256 x 256 x 256"), ("sq512", "512 x 512 x 512"),
         ("sq1024", "1024 x 1024 x 1024"),
         ("fwd1", "MLP fwd x @ w1: 128 x 256 x 784"),
         ("fwd2", "MLP fwd h1 @ w2: 128 x 128 x 256"),
         ("fwd3", "MLP fwd h2 @ w3: 128 x 10 x 128"),
         ("dw1", "MLP bwd x^T @ g1: 784 x 256 x 128"),
         ("dw2", "MLP bwd h1^T @ g2: 256 x 128 x 128"),
         ("dh1", "MLP bwd g2 @ w2^T: 128 x 256 x 128"),
         ("dh2", "MLP bwd g3 @ w3^T: 128 x 128 x 10"),
         ("inf1", "batch-1 inference x @ w1: 1 x 256 x 784"),
         ("fwd1_b1024", "MLP fwd x @ w1, batch 1024: 1024 x 256 x 784"),
         ("fwd2_b1024", "MLP fwd h1 @ w2, batch 1024: 1024 x 128 x 256"),
         ("dw1_b1024", "MLP bwd x^T @ g1, batch 1024: 784 x 256 x 1024"),
         ("dw2_b1024", "MLP bwd h1^T @ g2, batch 1024: 256 x 128 x 1024"),
         ("dh1_b1024", "MLP bwd g2 @ w2^T, batch 1024: 1024 x 256 x 128")]


def gemm_rows(d):
    rows, targets = [], []
    p1, p2 = d.get("peak_t1_gflops"), d.get("peak_t2_gflops")
    for key, name in GEMMS:
        cells = [name]
        for t, peak in ((1, p1), (2, p2)):
            n = d.get(f"gemm_{key}_t{t}_nnc_gflops")
            b = d.get(f"gemm_{key}_t{t}_blas_gflops")
            pct = f"{100 * n / peak:.0f}%" if n and peak else "n/a"
            cells += [fmt(n), fmt(b), f"{fmt(ratio(n, b))}x", pct]
        rows.append(cells)
        if key == "sq1024":
            for t in (1, 2):
                r = ratio(d.get(f"gemm_{key}_t{t}_nnc_gflops"),
                          d.get(f"gemm_{key}_t{t}_blas_gflops"))
                targets.append((f"generated matmul >= 70% of OpenBLAS at 1024, {t}T",
                                f"{100 * r:.0f}%" if r else "n/a", verdict(r, 0.7)))
    return rows, targets


CONVS = [("c2l2", "2-conv model layer 2: N 64, 32->64, 14x14, 5x5 same"),
         ("c2l1", "2-conv model layer 1: N 64, 1->32, 28x28, 5x5 same"),
         ("lenet1", "LeNet-5 layer 1: N 64, 1->6, 28x28, 5x5 pad 2"),
         ("lenet2", "LeNet-5 layer 2: N 64, 6->16, 14x14, 5x5 valid")]
CONV_OPS = [("fwd", "forward"), ("bwd_data", "data grad"), ("bwd_filter", "filter grad")]


def conv_rows(d):
    rows, targets = [], []
    p1, p2 = d.get("peak_t1_gflops"), d.get("peak_t2_gflops")
    pc = d.get("peak_cpu_gflops")
    for key, name in CONVS:
        for op, opname in CONV_OPS:
            cells = [f"{name}, {opname}"]
            for t, peak in ((1, p1), (2, p2)):
                n = d.get(f"conv_{key}_{op}_t{t}_gflops")
                cells += [fmt(n), f"{100 * n / peak:.0f}%" if n and peak else "n/a"]
            c = d.get(f"conv_{key}_{op}_t1_cpu_gflops")
            cells += [fmt(c), f"{100 * c / pc:.0f}%" if c and pc else "n/a"]
            rows.append(cells)
            if key == "c2l2":
                share = c / pc if c and pc else None
                targets.append((f"convolution {opname} at the 2-conv model's layer 2 >= 50% of "
                                f"the FMA peak (1T, CPU time)",
                                f"{100 * share:.0f}%" if share else "n/a", verdict(share, 0.5)))
            if key == "c2l2":
                got = [(d.get(f"conv_{key}_{op}_t{t}_gflops"), pk) for t, pk in ((1, p1), (2, p2))]
                share = max((n / pk for n, pk in got if n and pk), default=None)
                targets.append((f"convolution {opname} at the 2-conv model's layer 2 >= 50% of "
                                f"the FMA peak (best of 1T, 2T)",
                                f"{100 * share:.0f}%" if share else "n/a", verdict(share, 0.5)))
    return rows, targets


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine():
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=False).stdout.strip()
    except OSError:
        rev = "?"
    try:
        with open("/proc/loadavg") as f:
            load = f.read().split()[1]  # 5-minute average: what the run shared the cores with
    except OSError:
        load = "?"
    return cpu, os.cpu_count(), rev, load


def main():
    d = merge(sys.argv[1:])
    cpu, ncpu, rev, load = machine()
    mrows, mt = model_rows(d)
    grows, gt = gemm_rows(d)
    crows, ct = conv_rows(d)
    nrows, nt = cnn_rows(d)
    erows, et = epoch_rows(d)
    srows, st = sweep_rows(d)
    print(f"Run {time.strftime('%Y-%m-%d %H:%M')} on {cpu}, {ncpu} cores, by `bench/run.sh`: "
          f"nnc {rev} (Release), PyTorch {d.get('torch_version', '?')}, OpenBLAS with its "
          f"`{d.get('blas_core', '?')}` kernels.\n")
    print(f"- 5-minute load average at the end: {load} (the benchmark itself is about 1.5); "
          f"above that, other work shared the cores and the figures are noisy.")
    steal = d.get("_steal_pct")
    if isinstance(steal, (int, float)) and steal >= 0:
        print(f"- CPU time stolen by the hypervisor over the run (steal in /proc/stat): "
              f"{steal:.1f}% (on a virtual machine the host's other guests share the cores; "
              f"above a few per cent the figures are noisy).")
    if d.get("_uptime_start"):
        print(f"- `uptime` at the start: {d['_uptime_start']}; at the end: "
              f"{d.get('_uptime_end', '?')}.")
    print(f"- Each figure: median of 7 timed repetitions after a warm-up (matmul: 9, alternating "
          f"with OpenBLAS), best of {d.get('_rounds', 1)} alternating rounds of nnc and PyTorch.")
    print("- nT = threads: each side at its best of 1 and 2. PyTorch also at its best of "
          "per-tensor and foreach Adam, with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (for "
          "OpenBLAS too).")
    print("- Ratios are \"times better than\": above 1, nnc's JIT wins.\n")
    p1, p2 = d.get("peak_t1_gflops"), d.get("peak_t2_gflops")
    print("### Whole training epochs (samples/s, higher is better)\n")
    print(f"Real Fashion-MNIST images ({d.get('torch_epoch_samples', '?')} for the MLP; the CNN "
          f"and GRU rows as many as their sections say), the same network on both sides. "
          f"nnc: `nnc train` (its epoch loop: shuffle, batch gather, step); PyTorch: a loop over "
          f"a shuffled index, batches gathered from the resident tensors, no DataLoader "
          f"(bench/torch_epochs.py, bench/torch_cnn_bench.py). Evaluation excluded; the best "
          f"epoch after the first. FLOPs per sample counted from nnc's compiled step graph "
          f"(`nnc ir --stage fused --stats`), the same figure for PyTorch's share. Measured FMA "
          f"peak: {fmt(p1)} GFLOP/s on 1 core, {fmt(p2)} on 2; a share is against the peak of "
          f"the thread count (T) that gave the best rate.\n")
    print(table(["model", "MFLOP/sample", "nnc 1T", "nnc 2T", "PyTorch 1T", "PyTorch 2T",
                 "nnc vs PyTorch (best vs best)", "nnc % of peak", "PyTorch % of peak"],
                erows))
    if srows:
        print("\n### MLP whole epochs by batch size (no dropout; samples/s)\n")
        print(table(["batch", "nnc 1T", "% peak 1T", "nnc 2T", "% peak 2T", "PyTorch 1T",
                     "PyTorch 2T", "nnc vs PyTorch (best vs best)"], srows))
    print("\n### Bare steps and overheads\n")
    print("One resident batch of synthetic data, the step alone (bench/nnc_bench.c against "
          "bench/torch_bench.py).\n")
    print(table(["workload", "interpreter", "JIT", "PyTorch (best threads)", "JIT vs interp",
                 "JIT vs PyTorch"], mrows))
    if any(k.startswith(("cnn_", "torch_lenet5", "torch_cnn2")) for k in d):
        print("\n### Convolutional networks\n")
        print("Same network on both sides (bench/lenet5.nn, bench/cnn2.nn and "
              "bench/torch_cnn_bench.py). Whole epochs: `nnc train` of the example on the first "
              "Fashion-MNIST images, shuffling and batching included, evaluation excluded; "
              "PyTorch the same way, at its best of contiguous and channels_last, oneDNN on.\n")
        print(table(["workload", "interpreter", "JIT", "PyTorch (best threads)", "JIT vs interp",
                     "JIT vs PyTorch"], nrows))
    print(f"\n### Generated matmul vs OpenBLAS (GFLOP/s; M x N x K)\n\nMeasured FMA peak: "
          f"{fmt(p1)} GFLOP/s on 1 core, {fmt(p2)} on 2 (the best of every measurement: 15 "
          f"short trials before and after the matmuls, and before and after each round's "
          f"epochs; a share above 100% means the core was busier during every peak "
          f"trial than during that matmul). Same thread count for both sides.\n")
    print(table(["shape", "nnc 1T", "OpenBLAS 1T", "nnc/BLAS 1T", "nnc % peak 1T", "nnc 2T",
                 "OpenBLAS 2T", "nnc/BLAS 2T", "nnc % peak 2T"], grows))
    if any(k.startswith("conv_") for k in d):
        print("\n### Generated convolution (GFLOP/s, 2 flops per multiply-add of the direct "
              "definition)\n")
        print("CPU time: the one-thread kernel's own CPU seconds (best of 20) against an FMA "
              "peak measured the same way; steadier than wall clock on a shared machine.\n")
        print(table(["layer", "nnc 1T", "% peak 1T", "nnc 2T", "% peak 2T", "nnc 1T CPU time",
                     "% peak, CPU time"], crows))
    print("\n### Targets\n")
    print(table(["target", "achieved", "status"],
                et + st + mt + nt + gt + (ct if crows else [])))


if __name__ == "__main__":
    main()
