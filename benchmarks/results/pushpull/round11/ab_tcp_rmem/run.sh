#!/bin/bash
for i in 1 2 3; do
  for v in def small; do
    if [ $((i % 2)) -eq 0 ]; then [ $v = def ] && v=small || v=def; fi
    if [ $v = def ]; then sysctl -q -w net.ipv4.tcp_rmem="4096 131072 33554432"; else sysctl -q -w net.ipv4.tcp_rmem="4096 131072 2097152"; fi
    /tmp/bench_cur --servers=2 --workers=2 --baseline=1x1 --sizes=64M --modes=pull,pushpull --repeat=5 > $v.$i.txt 2>&1
  done
done
sysctl -q -w net.ipv4.tcp_rmem="4096 131072 33554432"
echo done > done
