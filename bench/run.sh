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
    -L"$BLASDIR" -Wl,-rpath,"$BLASDIR" -lopenblas -lz -lm -lpthread

LOAD=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk "BEGIN { exit !($LOAD > 0.7) }"; then
    echo "bench: warning: load average $LOAD: other work shares the cores; figures will be noisy" >&2
fi

# Whole CNN training epochs as users wait for them: `nnc train` of the
# examples on the first L Fashion-MNIST images (the split keeps 90% for
# training), shuffling and batch assembly included, evaluation excluded (the
# epoch line's own time); the second of two epochs, so the JIT's compile (in
# the first) is not counted. The same image counts as bench/torch_cnn_bench.py.
cnn_epochs() { # round -> JSON on stdout
    if [ -n "$QUICK" ]; then set -- 6400 1280; else set -- 30000 3200; fi
    sep=
    printf '{'
    for m in lenet5:examples/lenet5.nn:$1 cnn2:examples/fashion_cnn.nn:$2; do
        name=${m%%:*}; rest=${m#*:}; file=${rest%%:*}; limit=${rest#*:}
        for t in 1 2; do
            for be in jit interp; do
                [ "$be" = interp ] && [ "$name" = cnn2 ] && continue # minutes per epoch
                echo "bench: nnc $name epoch, $be, $t thread(s)" >&2
                line=$("$BUILD/nnc" train "$ROOT/$file" --backend $be --threads $t \
                    --set epochs=2 --set limit="$limit" --set eval_limit=1 \
                    --set save="$OUT/$name.safetensors" 2>&1 >/dev/null | grep '^epoch 2/2' || true)
                sps=$(echo "$line" | awk '{ for (i = 1; i <= NF; i++) if ($i == "samples") n = $(i - 1);
                                            s = $NF; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+s$/) s = $i;
                                            sub(/s$/, "", s); if (n && s > 0) printf "%.1f", n / s }')
                [ -n "$sps" ] && printf '%s"cnn_%s_epoch_%s_t%s_sps": %s' "$sep" "$name" "$be" "$t" "$sps" && sep=', '
            done
        done
    done
    printf '}\n'
}

OUT=$BUILD/bench-out
rm -rf "$OUT"
mkdir -p "$OUT"
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
    done
    cnn_epochs "$r" >"$OUT/nnccnn$r.json"
    r=$((r + 1))
done
echo "{\"_rounds\": $ROUNDS}" >"$OUT/rounds.json"
$PY "$ROOT/bench/report.py" "$OUT"/*.json >"$OUT/results.md"
if [ -n "$WRITE" ]; then
    cp "$OUT/results.md" "$ROOT/bench/results.md"
    echo "bench: wrote bench/results.md" >&2
fi
cat "$OUT/results.md"
