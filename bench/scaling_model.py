#!/usr/bin/env python3
"""The scaling model of docs/scaling.md: projected data-parallel throughput.

usage: bench/scaling_model.py US_PER_SAMPLE GRAD_BYTES HIDDEN_SHARE [GLOBAL_BATCH]

US_PER_SAMPLE: measured compute time of one sample's step share on one core
(forward, backward, update), GRAD_BYTES: bytes all-reduced per step,
HIDDEN_SHARE: the measured share of the all-reduce hidden behind computation
(0..1). A ring all-reduce of S bytes over K machines costs
2 (K-1)/K * S / bandwidth + 2 (K-1) * latency; only the unhidden part adds
to a step. Efficiency is the step's compute time over its whole time (1 =
linear scaling); the table gives it for the global batch kept fixed, and the
smallest per-rank batch that keeps efficiency at or above 80%, and the
throughput with 256 rows per rank (the global batch growing with K).
"""
import sys

LINKS = [("10 Gb/s Ethernet (TCP)", 10e9 / 8, 25e-6), ("100 Gb/s (RDMA)", 100e9 / 8, 3e-6)]


def allreduce_s(k, nbytes, bw, lat):
    return 0.0 if k == 1 else 2 * (k - 1) / k * nbytes / bw + 2 * (k - 1) * lat


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    t_s = float(sys.argv[1]) * 1e-6
    nbytes = float(sys.argv[2])
    hidden = float(sys.argv[3])
    gb = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    print(f"compute {t_s * 1e6:.1f} us/sample, {nbytes / 1e6:.3f} MB of gradients per step, "
          f"{100 * hidden:.0f}% of the all-reduce hidden, global batch {gb}")
    print(f"{'link':24} {'K':>3} {'allreduce ms':>12} {'per-rank b':>10} {'step ms':>8} "
          f"{'samples/s':>10} {'efficiency':>10} {'b for 80%':>9} {'at b=256/rank':>13}")
    for name, bw, lat in LINKS:
        for k in (1, 8, 64):
            ar = allreduce_s(k, nbytes, bw, lat)
            exposed = (1 - hidden) * ar
            b = gb / k
            step = b * t_s + exposed
            eff = b * t_s / step
            b80 = 4 * exposed / t_s  # b t_s >= 0.8 (b t_s + exposed)
            weak = k * 256 / (256 * t_s + exposed)  # samples/s with 256 rows per rank
            print(f"{name:24} {k:3d} {ar * 1e3:12.3f} {b:10.0f} {step * 1e3:8.3f} "
                  f"{k * b / step:10.0f} {100 * eff:9.0f}% {b80:9.0f} {weak:13.0f}")


if __name__ == "__main__":
    main()
