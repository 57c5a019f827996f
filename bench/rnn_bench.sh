#!/bin/sh
# The recurrent benchmarks: bench/rnn_bench.sh [BUILD [gru|lstm|all]]
# 1. GRU training (examples/fashion_gru.nn's step, bench/gru.nn on synthetic
#    images) in samples/s: nnc's JIT (the last epoch of `nnc train`, so the
#    compile is not counted) at its best of 1 and 2 threads against PyTorch's
#    nn.GRU at its best of 1 and 2 threads (bench/torch_gru.py,
#    OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset).
# 2. Compile time of an LSTM training step (lstm_last(64) over T steps of 16
#    features) at T = 10, 100 and 1000: `nnc train -v` reports the JIT's time
#    for the step graph. Each compile is cut off after 300 s.
# Prints a markdown table with the load average; figures on a shared machine
# are noisy.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${1:-$ROOT/build}
PARTS=${2:-all}
NNC=$BUILD/nnc
PY=/usr/bin/python3
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }

if [ "$PARTS" != lstm ]; then
NNC_SPS=0
for t in 1 2; do
    echo "bench: nnc GRU training, $t thread(s)" >&2
    "$NNC" train bench/gru.nn --threads $t >"$OUT/nnc.txt" 2>&1
    # "epoch 3/3  3840 samples  loss 2.2971  lr 0.002  985 samples/s  3.9s"
    S=$(grep '^epoch 3/3' "$OUT/nnc.txt" | sed 's/.* \([0-9.]*k*\) samples\/s.*/\1/')
    case $S in *k) S=$(awk "BEGIN { print ${S%k} * 1000 }") ;; esac
    echo "nnc t$t: $S samples/s" >&2
    NNC_SPS=$(awk "BEGIN { print ($S > $NNC_SPS) ? $S : $NNC_SPS }")
done
BEST=0
for t in 1 2; do
    echo "bench: PyTorch GRU training, $t thread(s)" >&2
    S=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
        $PY bench/torch_gru.py --threads $t | sed 's/.*"gru_train_sps": \([0-9.]*\).*/\1/')
    echo "torch t$t: $S samples/s" >&2
    BEST=$(awk "BEGIN { print ($S > $BEST) ? $S : $BEST }")
done

echo "| GRU training, batch 128 (samples/s) | nnc JIT best | PyTorch best | ratio |"
echo "|---|---|---|---|"
awk "BEGIN { printf \"| fashion_gru step | %.0f | %.0f | %.2fx |\n\", $NNC_SPS, $BEST, $NNC_SPS / $BEST }"
echo
fi
if [ "$PARTS" != gru ]; then
echo "| LSTM step compile (JIT) | ms | ratio to T = 10 |"
echo "|---|---|---|"
BASE=
for T in 10 100 1000; do
    cat >"$OUT/lstm$T.nn" <<NN
import std
data d {
    x     = uniform([256, $T, 16], -1, 1)
    label = i32(uniform([256], 0, 4))
}
model m(x: f32[N, $T, 16]) -> f32[N, 4] {
    return x |> lstm_last(64) |> dense(4)
}
train m on d {
    loss      = cross_entropy(output, label)
    optimizer = adam()
    batch     = 64
    epochs    = 1
    metrics   = [loss]
}
NN
    echo "bench: LSTM compile, T = $T" >&2
    if timeout 300 "$NNC" train "$OUT/lstm$T.nn" -v >"$OUT/c$T.txt" 2>&1; then
        MS=$(grep -m1 'jit: compiled step in' "$OUT/c$T.txt" | sed 's/.*in \([0-9]*\) ms.*/\1/')
        [ -n "$BASE" ] || BASE=$MS
        awk "BEGIN { printf \"| T = $T | %d | %.1fx |\n\", $MS, $MS / $BASE }"
    else
        echo "| T = $T | failed or over 300 s: $(tail -1 "$OUT/c$T.txt") | - |"
    fi
done
echo
fi
echo "load average during the run (1, 5, 15 min): $(load)"
