#!/usr/bin/env bash
# A/B of the working tree's kernels against another revision's, in one process, for kernel work
# on a noisy machine (docs/performance.md, "Comparing two kernels"):
#
#   bash scripts/ab_kernel.sh [REV] [l2|cold] [CTX] [CALLS] [ISA]
#
# REV (default HEAD) is any git revision; its include/ is compiled beside the working tree's with
# the library's namespace renamed, and decode attention calls (LogQuant 2-bit, W = 42, Llama-3-8B
# shape) alternate between the two. l2 (default): one KV head, 4096 tokens, one layer; cold: all
# 8 KV heads, 16384 tokens, rotating over the cold benchmarks' layer count (LOGQUANT_BENCH_LLC_MIB
# sizes it as in the suite). ISA (default avx512) may be NEW:BASE to give the two sides different
# kernels, e.g. `bash scripts/ab_kernel.sh HEAD l2 4096 3000 avxvnni:avx2`. Prints time quantiles
# of both and their ratios (new / base), and the largest output difference. Builds under build/ab
# with ${CXX:-g++}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh
logquant_ensure_packages g++ git

rev="${1:-HEAD}"
mode="${2:-l2}"
shift $(($# < 2 ? $# : 2))
out=build/ab
rm -rf "$out"
mkdir -p "$out/base"
git archive "$rev" include | tar -x -C "$out/base"

cxx="${CXX:-g++}"
flags=(-std=c++17 -O3 -DNDEBUG -Wall -Wextra)
"$cxx" "${flags[@]}" -Iinclude -DAB_SIDE=new -c bench/ab/ab_side.cpp -o "$out/new.o" &
new_pid=$!
"$cxx" "${flags[@]}" -I"$out/base/include" -DAB_SIDE=base -Dlogquant=logquant_ab_base \
  -Dlogquant_bench=logquant_bench_ab_base -c bench/ab/ab_side.cpp -o "$out/base.o" &
base_pid=$!
"$cxx" "${flags[@]}" -c bench/ab/ab_main.cpp -o "$out/main.o"
wait "$new_pid"
wait "$base_pid"
"$cxx" "$out/main.o" "$out/new.o" "$out/base.o" -o "$out/logquant_ab" -lpthread

echo "==> $(git rev-parse --short "$rev") (base) against the working tree (new)"
"$out/logquant_ab" "$mode" "$@"
