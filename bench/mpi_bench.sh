#!/bin/sh
# Data-parallel scaling on this machine:
#   bench/mpi_bench.sh [--cnn | --cnn-only] [--epochs N]
# For the MLP of bench/mlp.nn at global batch 256 (and, with --cnn, the 2-conv
# model of bench/cnn2.nn at its batch 64: 4 steps an epoch, so the default
# epochs 5..100 are 380 steps) it trains 1 rank x 2 threads and
# 2 ranks x 1 thread (mpirun --oversubscribe), and 1 rank x 1 thread for the
# compute time per sample, and prints samples/s of each.
# Throughput is (samples of E2 - E1 epochs) / (time of E2 epochs - time of
# E1), so start-up and compilation cancel out; it is given per second of wall
# time and per CPU-second (user + system of all processes), the figure that
# stays meaningful when the machine is shared. The MPI rows also report the
# gradient all-reduce time per step from NNC_MPI_STATS (time inside MPI for
# gradients; NNC_MPI_STATS=cpu counts this thread's CPU time instead), once
# overlapped (as trained: Open MPI's ring, which nnc selects), once with Open
# MPI's own choice of algorithm for comparison (a binomial tree on 2 ranks)
# and once with NNC_MPI_OVERLAP=0 (every all-reduce completed where it starts); their
# difference is the share hidden behind the rest of the step, given two
# ways: by time inside MPI (starts, progress calls and waits) and by time
# blocked in waits. Under mpirun the update is sharded (each rank updates its
# half of the large parameters after a reduce-scatter, then all-gathers
# them); the "whole update" rows turn that off (NNC_MPI_SHARD=0), every rank
# then updating everything after an all-reduce, for comparison. The load
# average is printed with every row: the machine is shared, and figures taken
# under load are noisy.
# Uses the build in $NN_BUILD (default build/).
set -eu
cd "$(dirname "$0")/.."
NNC=${NN_BUILD:-build}/nnc
MPIRUN="mpirun --allow-run-as-root --oversubscribe"
E1=5
E2=100
CNN=
MLP=1
while [ $# -gt 0 ]; do
    case $1 in
    --cnn) CNN=1 ;;
    --cnn-only) CNN=1; MLP= ;;
    --epochs) E2=$2; E1=$(($2 / 20 + 1)); shift ;;
    *) echo "usage: bench/mpi_bench.sh [--cnn | --cnn-only] [--epochs N]" >&2; exit 2 ;;
    esac
    shift
done
[ -x "$NNC" ] || { echo "bench/mpi_bench.sh: build nnc first ($NNC)" >&2; exit 2; }
"$NNC" --version | grep -q "MPI: Open MPI" ||
    { echo "bench/mpi_bench.sh: $NNC is built without MPI" >&2; exit 2; }

load() { cut -d' ' -f1 /proc/loadavg; }

# measure LAUNCH MODEL BATCH EPOCHS THREADS: "wall cpu" seconds of one run
# (cpu: user + system of every process, mpirun's included).
measure() {
    /usr/bin/time -f "%e %U %S" -o "$TMP/time" $1 "$NNC" train "$2" --quiet --set batch="$3" \
        --set epochs="$4" --threads "$5" >/dev/null 2>"$TMP/err" || { cat "$TMP/err" >&2; exit 1; }
    awk '{ printf "%s %.3f", $1, $2 + $3 }' "$TMP/time"
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# row NAME MODEL BATCH SAMPLES LAUNCH THREADS LABEL KEY: samples per second of
# wall time and per CPU-second, from the difference of two run lengths.
row() {
    a=$(measure "$5" "$2" "$3" "$E1" "$6")
    b=$(measure "$5" "$2" "$3" "$E2" "$6")
    echo "$a $b $4 $E1 $E2" | awk -v label="$7" -v load="$(load)" '{
        n = ($7 - $6) * $5
        printf "%-22s %9.0f samples/s  %9.0f samples per CPU-second  (load %s)\n",
               label, n / ($3 - $1), n / ($4 - $2), load }' | tee "$TMP/$8"
}

# mpistats MODEL BATCH OVERLAP [ALGORITHM]: what NNC_MPI_STATS says per step
# (ALGORITHM: Open MPI's coll_libnbc_iallreduce_algorithm, 0 = its own choice).
mpistats() {
    env NNC_MPI_STATS=1 NNC_MPI_OVERLAP=$3 ${4:+OMPI_MCA_coll_libnbc_iallreduce_algorithm=$4} \
        $MPIRUN -np 2 "$NNC" train "$1" --quiet --threads 1 \
        --set batch="$2" --set epochs="$E2" 2>&1 >/dev/null | sed -n 's/.*steps, \(.*\)/\1/p'
}

bench_model() { # NAME MODEL BATCH SAMPLES
    echo "== $1 ($2), global batch $3, epochs $E1..$E2, $(nproc) cores"
    row "$1" "$2" "$3" "$4" "" 1 "1 rank  x 1 thread" one1
    row "$1" "$2" "$3" "$4" "" 2 "1 rank  x 2 threads" one2
    row "$1" "$2" "$3" "$4" "$MPIRUN -np 2" 1 "2 ranks x 1 thread" two1
    row "$1" "$2" "$3" "$4" "env NNC_MPI_SHARD=0 $MPIRUN -np 2" 1 "  whole update" two0
    for v in two1 two0; do
        paste "$TMP/$v" "$TMP/one2" | awk -v what="$v" '{ for (i = 1; i <= NF; i++) if ($i == "samples/s") w[++k] = $(i - 1);
            else if ($i == "CPU-second") c[++j] = $(i - 3) }
            END { printf "2 ranks x 1 thread%s reach %.0f%% of 1 rank x 2 threads (wall), %.0f%% (per CPU-second)\n",
                  what == "two0" ? ", every rank updating everything," : " (sharded update)",
                  100 * w[1] / w[2], 100 * c[1] / c[2] }'
    done
    echo "Open MPI's default algorithm: $(mpistats "$2" "$3" 1 0)  (load $(load))"
    echo "whole update (NNC_MPI_SHARD=0), all-reduce only: $(NNC_MPI_SHARD=0 mpistats "$2" "$3" 1)  (load $(load))"
    ov=$(mpistats "$2" "$3" 1)
    echo "overlapped:  $ov  (load $(load))"
    seq=$(mpistats "$2" "$3" 0)
    echo "not hidden:  $seq  (load $(load))"
    # "... X ms per step inside MPI for gradients (Y ms blocked in waits)"
    echo "$ov|$seq" | awk -F'|' '{
        split($1, a, " "); split($2, b, " ")
        for (i = 1; i <= length(a); i++) if (a[i] == "ms" && a[i + 2] == "step") { oi = a[i - 1]; break }
        for (i = 1; i <= length(a); i++) if (a[i] == "ms" && a[i + 1] == "blocked") ob = substr(a[i - 1], 2)
        for (i = 1; i <= length(b); i++) if (b[i] == "ms" && b[i + 2] == "step") { si = b[i - 1]; break }
        for (i = 1; i <= length(a); i++) if (a[i] == "median") { om = a[i + 1]; omb = substr(a[i + 3], 2) }
        for (i = 1; i <= length(b); i++) if (b[i] == "median") sm = b[i + 1]
        if (si > 0)
            printf "all-reduce hidden: %.0f%% by time inside MPI (%.3f -> %.3f ms per step), %.0f%% by time blocked (%.3f ms)\n",
                   100 * (1 - oi / si), si, oi, 100 * (1 - ob / si), ob
        # Medians over steps: a peer descheduled by other load inflates a few
        # steps by milliseconds, which the mean carries and the median does not.
        if (sm > 0)
            printf "  by the median step: %.0f%% by time inside MPI (%.3f -> %.3f ms), %.0f%% by time blocked (%.3f ms)\n",
                   100 * (1 - om / sm), sm, om, 100 * (1 - omb / sm), omb }'
}

[ -z "$MLP" ] || bench_model mlp bench/mlp.nn 256 1024
[ -z "$CNN" ] || bench_model cnn bench/cnn2.nn 64 256
