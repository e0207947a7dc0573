#!/usr/bin/env bash
# Packs what the GPU checks need into .dev/ (ignored by git) for a machine that
# has CUDA 13 and a GPU but none of Debian's libraries: the tessera binaries and
# the CUDA tests from a CMake build, every shared library they load except
# glibc, libstdc++ and CUDA's own, and the Fashion-MNIST IDX files.
# Usage: tools/device/make_bundle.sh [BUILD_DIR]   (default build)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
bins=("$build"/bin/tessera "$build"/bin/tessera-scheduler "$build"/bin/tessera-server
      "$build"/bin/tessera-worker "$build"/bin/tessera-bench-kernels
      "$build"/tests/cuda_kernels_test "$build"/tests/worker_cuda_test)
for b in "${bins[@]}"; do
  [[ -x $b ]] || { echo "make_bundle: $b is missing: build with CUDA first (make build)" >&2; exit 1; }
done
rm -rf .dev && mkdir -p .dev/bin .dev/lib .dev/data
cp "${bins[@]}" .dev/bin/ && strip .dev/bin/*
ldd "${bins[@]}" | awk '/=>/ {print $3}' | sort -u |
  grep -Ev '/usr/local/cuda|/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux)[.-]' |
  xargs -I{} cp -L {} .dev/lib/
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .dev/data/
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.dev/' >>.git/info/exclude; }
du -sh .dev
