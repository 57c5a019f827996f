#!/usr/bin/env bash
# Builds nnc (Release) and trains the main example, Fashion-MNIST with an MLP:
# `bash scripts/main.sh [extra nnc train options]`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target nnc
./build/nnc train examples/fashion_mlp.nn "$@"
