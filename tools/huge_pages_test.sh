#!/bin/sh
# Checks that a data-path binary restarts itself with glibc's malloc on
# transparent huge pages when the machine has THP, and that
# TESSERA_HUGE_PAGES=0 keeps 4 KiB pages. Usage: huge_pages_test.sh BENCH_BINARY
set -eu
bench=$1
thp=/sys/kernel/mm/transparent_hugepage/enabled
if [ -r "$thp" ] && ! grep -q '\[never\]' "$thp"; then
  want="malloc: transparent huge pages"
else
  want="malloc: 4 KiB pages"
fi
out=$(env -u GLIBC_TUNABLES "$bench" --quick --sizes=4096 --modes=push --iterations=3)
echo "$out" | grep -q "^$want" || { echo "expected '$want' by default, got:"; echo "$out"; exit 1; }
out=$(env -u GLIBC_TUNABLES TESSERA_HUGE_PAGES=0 "$bench" --quick --sizes=4096 --modes=push \
  --iterations=3)
echo "$out" | grep -q "^malloc: 4 KiB pages" || {
  echo "TESSERA_HUGE_PAGES=0 still used huge pages:"; echo "$out"; exit 1; }
echo "ok: by default '$want'; with TESSERA_HUGE_PAGES=0 4 KiB pages"
