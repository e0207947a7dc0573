#!/bin/bash
for i in 1 2 3 4 5 6; do
  for v in A1M B512; do
    if [ $((i % 2)) -eq 0 ]; then [ $v = A1M ] && v=B512 || v=A1M; fi
    /tmp/bench_$v --servers=1 --workers=1 --sizes=16M,64M --modes=pull --repeat=5 > $v.$i.txt 2>&1
  done
done
echo done > done
