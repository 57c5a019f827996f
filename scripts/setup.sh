#!/usr/bin/env bash
# Installs every Debian 12 package nnc needs to build, test and run its main
# example, skipping those already present. Safe to run again. Needs root (or sudo).
set -euo pipefail

pkgs=(gcc make cmake pkg-config flex bison llvm-19-dev libffi-dev libcriterion-dev
      zlib1g-dev libedit-dev dataset-fashion-mnist wamerican
      openmpi-bin libopenmpi-dev) # data-parallel training (optional: found by CMake's FindMPI)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
