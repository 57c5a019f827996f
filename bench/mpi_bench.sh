#!/bin/sh
# Data-parallel scaling on this machine: bench/mpi_bench.sh [--cnn] [--epochs N]
# For the MLP of bench/mlp.nn at global batch 256 (and, with --cnn, the 2-conv
# model of bench/cnn2.nn at its batch 64) it trains 1 rank x 2 threads and
# 2 ranks x 1 thread (mpirun --oversubscribe) and prints samples/s of each.
# Throughput is (samples of E2 - E1 epochs) / (time of E2 epochs - time of
# E1), so start-up and compilation cancel out. The MPI rows also report the
# gradient all-reduce time per step from NNC_MPI_STATS (time inside MPI for
# gradients), once overlapped (as trained) and once with NNC_MPI_OVERLAP=0
# (every all-reduce completed where it starts); their difference is the
# share hidden behind the rest of the step. The load average is printed with
# every row: the machine is shared, and figures taken under load are noisy.
# Uses the build in $NN_BUILD (default build/).
set -eu
cd "$(dirname "$0")/.."
NNC=${NN_BUILD:-build}/nnc
MPIRUN="mpirun --allow-run-as-root --oversubscribe"
E1=5
E2=100
CNN=
while [ $# -gt 0 ]; do
    case $1 in
    --cnn) CNN=1 ;;
    --epochs) E2=$2; E1=$(($2 / 20 + 1)); shift ;;
    *) echo "usage: bench/mpi_bench.sh [--cnn] [--epochs N]" >&2; exit 2 ;;
    esac
    shift
done
[ -x "$NNC" ] || { echo "bench/mpi_bench.sh: build nnc first ($NNC)" >&2; exit 2; }
"$NNC" --version | grep -q "MPI: Open MPI" ||
    { echo "bench/mpi_bench.sh: $NNC is built without MPI" >&2; exit 2; }

now() { date +%s.%N; }
load() { cut -d' ' -f1 /proc/loadavg; }

# seconds LAUNCH MODEL BATCH EPOCHS: wall time of one training run.
seconds() {
    t0=$(now)
    $1 "$NNC" train "$2" --quiet --set batch="$3" --set epochs="$4" $5 >/dev/null 2>"$TMP/err" ||
        { cat "$TMP/err" >&2; exit 1; }
    echo "$t0 $(now)" | awk '{ printf "%.3f", $2 - $1 }'
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# row NAME MODEL BATCH SAMPLES LAUNCH THREADS
row() {
    a=$(seconds "$5" "$2" "$3" "$E1" "--threads $6")
    b=$(seconds "$5" "$2" "$3" "$E2" "--threads $6")
    sps=$(echo "$a $b $4 $E1 $E2" | awk '{ printf "%.0f", ($5 - $4) * $3 / ($2 - $1) }')
    printf "%-8s %-22s %10s samples/s   (load %s)\n" "$1" "$7" "$sps" "$(load)"
    echo "$sps"  > "$TMP/$1.$8"
}

# mpistats MODEL BATCH OVERLAP: "per-step ms inside MPI" for gradients.
mpistats() {
    NNC_MPI_STATS=1 NNC_MPI_OVERLAP=$3 $MPIRUN -np 2 "$NNC" train "$1" --quiet --threads 1 \
        --set batch="$2" --set epochs="$E2" 2>&1 >/dev/null | sed -n 's/.*steps, \(.*\)/\1/p'
}

bench_model() { # NAME MODEL BATCH SAMPLES
    echo "== $1 ($2), global batch $3, epochs $E1..$E2, $(nproc) cores"
    row "$1" "$2" "$3" "$4" "" 2 "1 rank  x 2 threads" one
    row "$1" "$2" "$3" "$4" "$MPIRUN -np 2" 1 "2 ranks x 1 thread" two
    one=$(cat "$TMP/$1.one") two=$(cat "$TMP/$1.two")
    echo "$two $one" | awk '{ printf "         2 ranks reach %.0f%% of 1 rank x 2 threads\n", 100 * $1 / $2 }'
    echo "         overlapped:   $(mpistats "$2" "$3" 1)   (load $(load))"
    echo "         not hidden:   $(mpistats "$2" "$3" 0)   (load $(load))"
}

bench_model mlp bench/mlp.nn 256 1024
[ -z "$CNN" ] || bench_model cnn bench/cnn2.nn 64 256
