#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan) in build-fuzz/ and runs
# each for SECONDS (default 60), one after another, nice'd.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]     targets: check safetensors idx csv
# Each run starts from the saved corpus (tests/fuzz/corpus_<target>/ and
# tests/fuzz/regress/<target>/; scripts also from examples/ and tests/), grows a
# working corpus in build-fuzz/corpus/<target>/, and writes any crashing, hanging
# or leaking input to build-fuzz/found/. Fix the bug, then add the input to
# tests/fuzz/regress/<target>/ so fuzz_regress_test replays it in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(check safetensors idx csv)
cc=${CC:-clang-14}

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DNN_FUZZ=ON -DNN_WITH_LLVM=OFF >/dev/null
nice cmake --build build-fuzz -j2 --target "${targets[@]/#/fuzz_}"

mkdir -p build-fuzz/found
status=0
for t in "${targets[@]}"; do
    work=build-fuzz/corpus/$t
    mkdir -p "$work"
    # libFuzzer exits on a corpus folder that does not exist, and a target
    # has no regress/ folder until it has found its first crash.
    seeds=()
    for d in tests/fuzz/corpus_$t tests/fuzz/regress/$t; do
        [ -d "$d" ] && seeds+=("$d")
    done
    if [ "$t" = check ]; then
        mkdir -p build-fuzz/seeds/check
        cp examples/*.nn tests/bad/*.nn tests/golden/*/*.nn build-fuzz/seeds/check/ 2>/dev/null || true
        seeds+=(build-fuzz/seeds/check)
    elif [ "$t" = csv ]; then
        seeds+=(examples/data)
    fi
    dict=()
    [ -f tests/fuzz/$t.dict ] && dict=(-dict=tests/fuzz/$t.dict)
    echo "== fuzz_$t for ${secs}s"
    # -timeout: one input running longer is a hang; -rss_limit_mb: runaway memory.
    if ! nice build-fuzz/fuzz_$t -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix=build-fuzz/found/$t- "${dict[@]}" \
        "$work" "${seeds[@]}"; then
        echo "fuzz_$t found a problem; see build-fuzz/found/$t-*"
        status=1
    fi
done
exit $status
