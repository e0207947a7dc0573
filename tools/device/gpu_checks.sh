#!/usr/bin/env bash
# The GPU checks of issue 4, in one call on a lent GPU machine (the device tool):
# run from the repository root with the bundle of tools/device/make_bundle.sh in
# .dev/, e.g.  run(command="bash tools/device/gpu_checks.sh", carry=[".dev"]).
# Steps, each under its own time limit, each logged; a failing step does not
# stop the others:
#   1. the CUDA kernel tests and the CUDA model test, on the GPU (none may skip);
#   2. tessera bench kernels at full size: kernels against the copy and GEMM
#      ceilings, and cuBLAS alone on one step's GEMMs of the main job;
#   3. the main job with GPU workers (tessera local --device=cuda), seeds
#      $SEEDS (default 42 43 44), with the workers' time split logged, and
#      with CUDA graphs off (TESSERA_CUDA_GRAPHS=0) for $NOGRAPH_SEEDS;
#   4. compute-sanitizer memcheck on both test binaries;
#   5. optional diagnostics of the worker's compute against cuBLAS alone:
#      ONEWORKER_SEEDS, the main job with one GPU worker (nothing time-shares
#      the GPU); NSYS=1, 1000 steps of the main job under Nsight Systems (the
#      CUDA API and kernel summaries, when nsys is installed).
# Logs go to $OUT/gpu_logs.tgz (or /tmp/gpu_checks where OUT is unset); a
# summary is printed last.
set -u
cd "$(dirname "$0")/../.."
dev=$PWD/.dev
logs=/tmp/gpu_checks
rm -rf "$logs" && mkdir -p "$logs"
export LD_LIBRARY_PATH=$dev/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PATH=/usr/local/cuda/bin:$PATH
summary=()
step() {  # step NAME LIMIT_S CMD...: runs CMD, logs it, records its rc
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name" >&2
  timeout -k 5 "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  summary+=("$(printf '%-22s rc=%-3s %4ss' "$name" "$rc" "$((SECONDS - t0))")")
  tail -n 25 "$logs/$name.log" >&2
  # Pack after every step: what ran comes back even if the call is cut short.
  if [[ -n ${OUT:-} ]]; then tar -C /tmp -czf "$OUT/gpu_logs.tgz" gpu_checks; fi
  return $rc
}

{ nvidia-smi; nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.limit --format=csv
  nvcc --version | tail -1; uname -r; ldd "$dev/bin/tessera-worker" | grep -i 'not found'
  cuobjdump --list-elf "$dev/bin/cuda_kernels_test" | head; } >"$logs/machine.log" 2>&1
cat "$logs/machine.log" >&2

step cuda_kernels_test 90 "$dev/bin/cuda_kernels_test"
step worker_cuda_test 60 "$dev/bin/worker_cuda_test"
step bench_kernels 120 "$dev/bin/tessera-bench-kernels"
# train NAME LIMIT_S ENV [FLAG...]: the main job with GPU workers, under the
# environment assignments in ENV (words, may be empty) and with extra
# `tessera local` flags; the workers' time split goes to worker_times.log.
train() {
  local name=$1 limit=$2 job_env=$3; shift 3
  # shellcheck disable=SC2086  # ENV is meant to split into assignments
  step "$name" "$limit" env $job_env "$dev/bin/tessera" local tools/jobs/fashion_mlp.yaml \
    --device=cuda --log_level=info --data="$dev/data" --out="$logs/$name" \
    --bin_dir="$dev/bin" "$@"
  grep -h -E 'compute [0-9.]+s' "$logs/$name"/logs/worker-*.log >>"$logs/worker_times.log"
}
for seed in ${SEEDS:-42 43 44}; do
  train "local_cuda_$seed" 120 "" --seed="$seed"
done
# The same job with each step's calls issued one by one (no CUDA graphs), for
# the seeds in $NOGRAPH_SEEDS (default none): the side-by-side comparison.
for seed in ${NOGRAPH_SEEDS:-}; do
  train "local_cuda_${seed}_nographs" 120 TESSERA_CUDA_GRAPHS=0 --seed="$seed"
done
for seed in ${ONEWORKER_SEEDS:-}; do
  train "local_cuda_${seed}_oneworker" 150 "" --workers=1 --seed="$seed"
done
if [[ -n ${NSYS:-} ]]; then
  nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys \
    2>/dev/null | head -1)
  step nsys_main 180 "${nsys:-nsys}" profile --trace=cuda,osrt --sample=none --stats=true \
    --force-overwrite=true -o "$logs/nsys_main" "$dev/bin/tessera" local \
    tools/jobs/fashion_mlp.yaml --device=cuda --max_steps=1000 --data="$dev/data" \
    --out="$logs/local_cuda_nsys" --bin_dir="$dev/bin"
fi
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer \
  /usr/local/cuda/compute-sanitizer/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
step memcheck_kernels 150 "${sanitizer:-compute-sanitizer}" --tool memcheck --error-exitcode 1 \
  "$dev/bin/cuda_kernels_test"
step memcheck_worker 90 "${sanitizer:-compute-sanitizer}" --tool memcheck --error-exitcode 1 \
  "$dev/bin/worker_cuda_test"

echo
echo "==================== summary"
grep -h -E '^\[  (PASSED|SKIPPED|FAILED) ' "$logs"/cuda_kernels_test.log "$logs"/worker_cuda_test.log
grep -h -E 'ERROR SUMMARY' "$logs"/memcheck_*.log
cat "$logs/bench_kernels.log" | head -60
cat "$logs/worker_times.log"
grep -h 'succeeded' "$logs"/local_cuda_*.log
printf '%s\n' "${summary[@]}"
