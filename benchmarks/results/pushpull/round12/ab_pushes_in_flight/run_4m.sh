#!/bin/bash
# As run.sh, at 2 and 4 MiB: where keeping a push in flight starts to pay.
BENCH=${BENCH:-/tmp/bench_W}
for i in 1 2 3 4; do
  for n in 1 2; do
    echo "== in_flight=$n run $i"
    $BENCH --sizes=2M,4M --modes=push,pushpull --repeat=3 --pushes_in_flight=$n 2>&1 | grep -E "^(push|pull)"
  done
done
