#!/bin/sh
# The benchmark, in one command: bench/run.sh [--quick] [--rounds N] [--write]
# Installs what only the benchmark needs (Debian's python3-torch and
# libopenblas-dev, with apt-get, if missing), builds nnc in Release in
# build-bench plus the driver bench/nnc_bench.c, runs nnc (interpreter, JIT,
# generated matmul) and PyTorch / OpenBLAS side by side in N alternating
# rounds (default 2; matmul in the first only), and prints the table. The
# tracked bench/results.md is rewritten only with --write; otherwise the table
# stays in the build folder (bench-out/results.md).
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for every process here:
# they make OpenBLAS (also the one under PyTorch) use older, slower kernels.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${NN_BENCH_BUILD:-$ROOT/build-bench}
QUICK=
ROUNDS=2
WRITE=
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=--quick; ROUNDS=1 ;;
    --rounds)
        [ $# -ge 2 ] || { echo "bench/run.sh: --rounds needs a number" >&2; exit 2; }
        ROUNDS=$2; shift ;;
    --write) WRITE=1 ;;
    *) echo "usage: bench/run.sh [--quick] [--rounds N] [--write]" >&2; exit 2 ;;
    esac
    shift
done
case $ROUNDS in
'' | *[!0-9]* | 0) echo "bench/run.sh: --rounds expects a positive integer, got '$ROUNDS'" >&2; exit 2 ;;
esac
PY=/usr/bin/python3
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BLASDIR=/usr/lib/$MULTIARCH/openblas-pthread
BLASINC=/usr/include/$MULTIARCH/openblas-pthread

need=
$PY -c 'import torch' 2>/dev/null || need="$need python3-torch"
[ -e "$BLASINC/cblas.h" ] && [ -e "$BLASDIR/libopenblas.so" ] || need="$need libopenblas-dev"
if [ -n "$need" ]; then
    echo "bench: installing$need" >&2
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need >&2
fi

echo "bench: building nnc (Release) in $BUILD" >&2
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target nncomp nnbackend nnc >/dev/null
LLVMLIB=$(llvm-config-19 --libdir)
cc -std=gnu17 -O2 -Wall -Wextra -Wpedantic -Wno-unused-parameter -DNN_WITH_LLVM=1 \
    -I"$ROOT/compiler" -I"$ROOT/ir" -I"$ROOT/runtime" -I"$ROOT/backend" -I"$BLASINC" \
    "$ROOT/bench/nnc_bench.c" "$ROOT/bench/gemm_bench.c" "$ROOT/bench/conv_bench.c" -o "$BUILD/nnc_bench" \
    -Wl,--start-group "$BUILD/libnncomp.a" "$BUILD/libnnbackend.a" "$BUILD/libnnir.a" \
    "$BUILD/libnnrt.a" -Wl,--end-group \
    -L"$LLVMLIB" -Wl,-rpath,"$LLVMLIB" -lLLVM-19 \
    -L"$BLASDIR" -Wl,-rpath,"$BLASDIR" -lopenblas -lffi -lz -lm -lpthread -ldl

LOAD=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk "BEGIN { exit !($LOAD > 0.7) }"; then
    echo "bench: warning: load average $LOAD: other work shares the cores; figures will be noisy" >&2
fi

# Whole training epochs as users wait for them: `nnc train FILE -v` on the
# real Fashion-MNIST images (the split keeps 90% for training; `limit` keeps
# its first images), shuffling and batch assembly included, evaluation
# excluded (eval_limit = 1: one sample). The figure is the epoch line's
# samples/s (the rate over the epoch's batches; the index shuffle before them
# and the evaluation after are a fraction of a percent) of the best epoch
# after the first, whose time includes the JIT's compile. -v also prints the
# step's FLOPs per sample, counted from the compiled graph (ir/flops.c).
# nnc_epoch FILE BACKEND THREADS EPOCHS KEY [--set K=V]... -> '"KEY_sps": R, "KEY_flops": F'
nnc_epoch() {
    file=$1 be=$2 t=$3 ep=$4 key=$5
    shift 5
    echo "bench: nnc $key ($be, $t thread(s))" >&2
    log=$OUT/$key.log
    "$BUILD/nnc" train "$ROOT/$file" -v --backend "$be" --threads "$t" --set epochs="$ep" \
        --set eval_limit=1 --set save="$OUT/epoch.safetensors" "$@" >"$log" 2>&1 || true
    awk -v key="$key" '
        /^step: .* MFLOP per sample/ {
            for (i = 1; i <= NF; i++) if ($i == "sample:" && $(i - 1) == "per") f = $(i - 3)
            sub(/^\(/, "", f)
            f *= 1e6 }
        /^epoch [0-9]+\/[0-9]+ / {
            split($2, e, "/")
            if (e[1] < 2) next
            for (i = 1; i <= NF; i++) if ($i == "samples/s") r = $(i - 1)
            m = 1
            if (r ~ /k$/) m = 1e3
            if (r ~ /M$/) m = 1e6
            sub(/[kM]$/, "", r)
            if (r * m > best) best = r * m }
        END {
            if (best > 0) printf "\"%s_sps\": %.1f", key, best
            if (best > 0 && f > 0) printf ", "
            if (f > 0) printf "\"%s_flops\": %.6g", key, f }' "$log"
}

# All of them, one JSON object on stdout: the MLP (batch 32 to 1024 without
# dropout, 128 with), LeNet-5 and the 2-conv model (as bench/torch_cnn_bench.py:
# same image counts), and the GRU, each on 1 and 2 threads.
epochs() {
    if [ -n "$QUICK" ]; then
        mlp_limit="--set limit=12800" ep=2 batches="128 1024" lenet=6400 cnn2=1280 gru=640
    else
        mlp_limit= ep=5 batches="32 64 128 256 512 1024" lenet=30000 cnn2=3200 gru=6400
    fi
    sep=
    printf '{'
    for t in 1 2; do
        for b in $batches; do
            got=$(nnc_epoch bench/fashion_mlp.nn jit $t $ep mlp_epoch_b${b}_t$t --set batch=$b $mlp_limit)
            [ -n "$got" ] && printf '%s%s' "$sep" "$got" && sep=', '
        done
        got=$(nnc_epoch bench/fashion_mlp_dropout.nn jit $t $ep mlpdrop_epoch_b128_t$t $mlp_limit)
        [ -n "$got" ] && printf '%s%s' "$sep" "$got" && sep=', '
        for m in lenet5:examples/lenet5.nn:$lenet cnn2:examples/fashion_cnn.nn:$cnn2; do
            name=${m%%:*}; rest=${m#*:}; file=${rest%%:*}; limit=${rest#*:}
            for be in jit interp; do
                # The 2-conv model takes minutes per epoch on the interpreter.
                [ "$be" = interp ] && { [ "$name" = cnn2 ] || [ -n "$QUICK" ]; } && continue
                got=$(nnc_epoch "$file" $be $t 2 cnn_${name}_epoch_${be}_t$t --set limit="$limit")
                [ -n "$got" ] && printf '%s%s' "$sep" "$got" && sep=', '
            done
        done
        got=$(nnc_epoch examples/fashion_gru.nn jit $t 2 gru_epoch_t$t --set limit=$gru)
        [ -n "$got" ] && printf '%s%s' "$sep" "$got" && sep=', '
    done
    printf '}\n'
}

OUT=$BUILD/bench-out
rm -rf "$OUT"
mkdir -p "$OUT"
UPTIME_START=$(uptime)
# CPU time the hypervisor gave to others while our virtual CPUs wanted to run
# (steal, the 8th field of /proc/stat's cpu line), as a share of all CPU time
# over the run: above a few per cent, the figures are noisy.
cpu_ticks() { awk '/^cpu /{t=0; for (i=2; i<=NF; i++) t+=$i; print $9, t}' /proc/stat 2>/dev/null || echo "0 0"; }
STAT_START=$(cpu_ticks)
r=1
while [ $r -le "$ROUNDS" ]; do
    # Matmul and OpenBLAS run back to back in one process: once is enough.
    WHAT=
    [ $r -eq 1 ] || WHAT=--models
    echo "bench: round $r of $ROUNDS: nnc $WHAT" >&2
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$BUILD/nnc_bench" $QUICK $WHAT "$ROOT" \
        >"$OUT/nnc$r.json"
    for t in 1 2; do
        echo "bench: round $r of $ROUNDS: PyTorch, $t thread(s)" >&2
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
            $PY "$ROOT/bench/torch_bench.py" $QUICK --threads $t >"$OUT/torch$r-t$t.json"
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
            $PY "$ROOT/bench/torch_cnn_bench.py" $QUICK --threads $t >"$OUT/torchcnn$r-t$t.json"
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
            $PY "$ROOT/bench/torch_epochs.py" $QUICK --threads $t >"$OUT/torchepoch$r-t$t.json"
    done
    # The FMA peak again just before and after the epochs: a virtual
    # machine's cores run faster or slower by tens of per cent from minute to
    # minute as its host's load changes, and the shares of peak take the
    # highest of every measurement, so a slow moment during the matmuls
    # cannot inflate them.
    "$BUILD/nnc_bench" $QUICK --peak >"$OUT/peakpre$r.json"
    epochs >"$OUT/nncepoch$r.json"
    "$BUILD/nnc_bench" $QUICK --peak >"$OUT/peakpost$r.json"
    r=$((r + 1))
done
STEAL=$(echo "$STAT_START $(cpu_ticks)" | awk '{d=$4-$2; print (d > 0 ? 100 * ($3 - $1) / d : -1)}')
echo "{\"_rounds\": $ROUNDS, \"_uptime_start\": \"$(echo $UPTIME_START)\", \"_uptime_end\": \"$(echo $(uptime))\", \"_steal_pct\": $STEAL}" \
    >"$OUT/rounds.json"
$PY "$ROOT/bench/report.py" "$OUT"/*.json >"$OUT/results.md"
if [ -n "$WRITE" ]; then
    cp "$OUT/results.md" "$ROOT/bench/results.md"
    echo "bench: wrote bench/results.md" >&2
fi
cat "$OUT/results.md"
