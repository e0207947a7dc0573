#!/bin/bash
# As run.sh, at 8 MiB, with the size threshold off (--overlapped_push_bytes=0).
BENCH=${BENCH:-/tmp/bench_T}
for i in 1 2 3 4; do
  for n in 1 2; do
    echo "== in_flight=$n run $i"
    $BENCH --sizes=8M --modes=push,pushpull --repeat=3 --pushes_in_flight=$n --overlapped_push_bytes=0 2>&1 | grep -E "^(push|pull)"
  done
done
