#!/bin/bash
for i in 1 2 3 4; do
  for v in main NT; do
    if [ $((i % 2)) -eq 0 ]; then [ $v = main ] && v=NT || v=main; fi
    b=/tmp/bench_$v; [ $v = main ] && b=/tmp/bench_B512
    $b --servers=2 --workers=2 --baseline=1x1 --sizes=16M,64M --modes=pull,pushpull --repeat=5 > $v.$i.txt 2>&1
  done
done
echo done > done
