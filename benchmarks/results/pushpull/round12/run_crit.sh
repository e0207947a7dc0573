#!/bin/bash
# Criterion 1 twice on 8ae8ef4, then criterion 3 (2x2 beside 1x1).
B=/tmp/bench_F
$B --sizes=1M,16M,64M --modes=push,pull --repeat=3 --csv=crit1_a.csv > crit1_a.txt 2>&1
$B --sizes=1M,16M,64M --modes=push,pull --repeat=3 --csv=crit1_b.csv > crit1_b.txt 2>&1
$B --servers=2 --workers=2 --baseline=1x1 --sizes=1M,16M,64M --repeat=5 --csv=2x2_vs_1x1.csv > 2x2_vs_1x1.txt 2>&1
