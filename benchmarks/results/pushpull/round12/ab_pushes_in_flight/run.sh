#!/bin/bash
# A/B of PsClientOptions::pushes_in_flight in one binary: 1 (A) against 2 (B),
# alternating, 1x1, push and push+pull at 1, 16 and 64 MiB.
BENCH=${BENCH:-/tmp/bench_W}
for i in 1 2 3 4 5 6; do
  for n in 1 2; do
    echo "== in_flight=$n run $i"
    $BENCH --sizes=1M,16M,64M --modes=push,pushpull --repeat=3 --pushes_in_flight=$n 2>&1 | grep -E "^(push|pull)"
  done
done
