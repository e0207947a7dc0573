#!/usr/bin/env bash
# Builds and tests every Bazel target (the secondary build; CMake is primary).
# Usage: tools/bazel_test.sh [extra bazel test args...]
#   TESSERA_BAZEL_ROOT   Bazel output root (default ~/.cache/tessera-bazel)
#   TESSERA_BAZEL_JOBS   parallel jobs (default 2)
#   TESSERA_DISABLE_CUDA=1  build the CPU-only variant even where nvcc exists
#   TESSERA_BAZEL_SKIP_SLOW=1  skip tests tagged "slow" (//tests:accuracy_test, ~4 min)
# Exits non-zero if anything fails to build or any test fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v bazel >/dev/null 2>&1; then
  echo "bazel_test.sh: bazel not found (apt-get install bazel-bootstrap bazel-rules-java)" >&2
  exit 2
fi

output_root="${TESSERA_BAZEL_ROOT:-$HOME/.cache/tessera-bazel}"
jobs="${TESSERA_BAZEL_JOBS:-2}"
mkdir -p "$output_root"
extra=()
if [[ "${TESSERA_BAZEL_SKIP_SLOW:-0}" == 1 ]]; then
  extra+=(--test_tag_filters=-slow)
fi

set +e
bazel --output_user_root="$output_root" --max_idle_secs=300 \
  test //... \
  --jobs="$jobs" \
  --local_cpu_resources="$jobs" \
  --keep_going \
  --test_output=errors \
  ${extra[@]+"${extra[@]}"} "$@"
rc=$?
set -e

if [[ $rc -ne 0 ]]; then
  echo "bazel_test.sh: bazel test //... FAILED (exit $rc)" >&2
else
  echo "bazel_test.sh: bazel test //... passed"
fi
exit "$rc"
