#!/usr/bin/env bash
# Runs the benchmark suite and writes the performance report: bash scripts/bench_report.sh
#   1. builds bench/logquant_bench in Release (build dir build/bench),
#   2. waits (up to LOGQUANT_BENCH_WAIT seconds, default 600) for the 1-minute load average to
#      drop below LOGQUANT_BENCH_MAX_LOAD (default 1.2): ratios from a busy machine mean little,
#   3. runs it with LOGQUANT_BENCH_REPS repetitions (default 5) into docs/bench/results.json,
#   4. writes docs/bench/report.md (medians, ratios against fp16 and fp32 from the same run, the
#      issue-5 targets) and docs/bench/decode_attention.png (gnuplot).
# Installs the Debian packages it needs when they are missing (as scripts/test.sh does).
# Environment: LOGQUANT_BENCH_FILTER (a --benchmark_filter regex; default: everything except the
# scalar reference's attention at 16K and 64K, which takes minutes and says nothing new),
# LOGQUANT_BENCH_MIN_TIME (seconds per repetition, default 0.1), LOGQUANT_BENCH_BUILD,
# LOGQUANT_BENCH_OUT (default docs/bench), LOGQUANT_BENCH_LLC_MIB (the cache size in MiB the cold
# data sets and the DRAM sum buffer are sized from, for guests whose sysfs shows no caches).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh

logquant_ensure_packages cmake make g++ libbenchmark-dev gnuplot-nox python3
command -v python3 >/dev/null || { echo "error: python3 is missing" >&2; exit 1; }

build="${LOGQUANT_BENCH_BUILD:-build/bench}"
out="${LOGQUANT_BENCH_OUT:-docs/bench}"
reps="${LOGQUANT_BENCH_REPS:-5}"
min_time="${LOGQUANT_BENCH_MIN_TIME:-0.1}"
filter="${LOGQUANT_BENCH_FILTER:--attend/.*/ctx:(16384|65536)/.*/isa:scalar/}"
max_load="${LOGQUANT_BENCH_MAX_LOAD:-1.2}"
wait_s="${LOGQUANT_BENCH_WAIT:-600}"

echo "==> build ($build, Release)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLOGQUANT_BUILD_BENCHMARKS=ON \
  -DLOGQUANT_BUILD_TESTS=OFF -DLOGQUANT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target logquant_bench --parallel "$(logquant_jobs)"

load1() { cut -d' ' -f1 /proc/loadavg; }
waited=0
while awk -v l="$(load1)" -v m="$max_load" 'BEGIN { exit !(l >= m) }'; do
  if [ "$waited" -ge "$wait_s" ]; then
    echo "warning: load average $(load1) is still >= $max_load after ${wait_s}s; running anyway" >&2
    break
  fi
  [ "$waited" -eq 0 ] && echo "==> waiting for the load average ($(load1)) to drop below $max_load"
  sleep 15
  waited=$((waited + 15))
done
load="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$out"
args=(--benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true
      --benchmark_min_time="$min_time" --benchmark_out="$out/results.json"
      --benchmark_out_format=json)
[ -n "$filter" ] && args+=(--benchmark_filter="$filter")
echo "==> run (load average $load): $build/bench/logquant_bench ${args[*]}"
"$build/bench/logquant_bench" "${args[@]}"

echo "==> report"
python3 scripts/bench_report.py "$out/results.json" "$out" --load "$load" \
  --command "${LOGQUANT_BENCH_LLC_MIB:+LOGQUANT_BENCH_LLC_MIB=$LOGQUANT_BENCH_LLC_MIB }bash scripts/bench_report.sh  # logquant_bench ${args[*]}"
