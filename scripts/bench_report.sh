#!/usr/bin/env bash
# Runs the benchmark suite and writes the performance report: bash scripts/bench_report.sh
#   1. builds bench/logquant_bench in Release (build dir build/bench),
#   2. waits (up to LOGQUANT_BENCH_WAIT seconds, default 600) for the 1-minute load average to
#      drop below LOGQUANT_BENCH_MAX_LOAD (default 1.2): ratios from a busy machine mean little,
#   3. runs it with LOGQUANT_BENCH_REPS repetitions (default 5), randomly interleaved (Google
#      Benchmark's --benchmark_enable_random_interleaving: the repetitions of every benchmark are
#      spread over the whole run, so a slow spell of the shared host does not land on all of one
#      benchmark's repetitions), into $build/results.json (generated data: not committed). The
#      suite keeps one cold data set alive at a time and rebuilds it when the shuffled order comes
#      back to it (same peak memory),
#   4. writes docs/bench/report.md (medians, ratios against fp16 and fp32 from the same run, the
#      issue-5 targets) and docs/bench/decode_attention.png (gnuplot).
# Installs the Debian packages it needs when they are missing (as scripts/test.sh does).
# Environment: LOGQUANT_BENCH_FILTER (a --benchmark_filter regex; default: everything except the
# scalar reference's attention at 16K and 64K, which takes minutes and says nothing new),
# LOGQUANT_BENCH_MIN_TIME (seconds per repetition, default 0.1), LOGQUANT_BENCH_BUILD,
# LOGQUANT_BENCH_OUT (default docs/bench), LOGQUANT_BENCH_LLC_MIB (the cache size in MiB the cold
# data sets and the DRAM sum buffer are sized from, for guests whose sysfs shows no caches),
# LOGQUANT_BENCH_SET=headline (only what the README's table needs: the dense baselines and the
# library's caches on its best ISA at 1K-64K, one thread, the paired two-thread runs, the floors,
# the L2 figures, the DRAM read rate and a decode append; 15 repetitions unless LOGQUANT_BENCH_REPS
# says otherwise; about 4 minutes, where the whole suite took about 26 with 5 repetitions before
# they were interleaved).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh

logquant_ensure_packages cmake make g++ libbenchmark-dev gnuplot-nox python3
command -v python3 >/dev/null || { echo "error: python3 is missing" >&2; exit 1; }

build="${LOGQUANT_BENCH_BUILD:-build/bench}"
out="${LOGQUANT_BENCH_OUT:-docs/bench}"
set_name="${LOGQUANT_BENCH_SET:-all}"
case "$set_name" in
  all) default_reps=5 ;;
  headline) default_reps=15 ;;
  *) echo "error: LOGQUANT_BENCH_SET must be all or headline (got '$set_name')" >&2; exit 2 ;;
esac
reps="${LOGQUANT_BENCH_REPS:-$default_reps}"
min_time="${LOGQUANT_BENCH_MIN_TIME:-0.1}"
filter="${LOGQUANT_BENCH_FILTER:--attend/.*/ctx:(16384|65536)/.*/isa:scalar/}"
max_load="${LOGQUANT_BENCH_MAX_LOAD:-1.2}"
wait_s="${LOGQUANT_BENCH_WAIT:-600}"

echo "==> build ($build, Release)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLOGQUANT_BUILD_BENCHMARKS=ON \
  -DLOGQUANT_BUILD_TESTS=OFF -DLOGQUANT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target logquant_bench --parallel "$(logquant_jobs)"

if [ "$set_name" = headline ] && [ -z "${LOGQUANT_BENCH_FILTER:-}" ]; then
  # The library's best ISA here: caches are registered per ISA, best first.
  best="$("$build/bench/logquant_bench" --benchmark_list_tests \
    --benchmark_filter='^attend/shape:llama3-8b/ctx:1024/cache:logquant2-w42/' |
    sed -n 's|.*/isa:\([a-z0-9]*\)/.*|\1|p' | head -n 1)"
  caches='fp32|fp16|full-kvcache|logquant2-w42|logquant2-w48|kivi2-r128|accurate-k4v2'
  filter="^(attend/shape:llama3-8b/ctx:[0-9]+/cache:(fp32|fp16)/isa:[a-z0-9]+/threads:1/"
  filter+="|attend/shape:llama3-8b/ctx:[0-9]+/cache:($caches)/isa:$best/threads:1/"
  filter+="|attend-2t/shape:llama3-8b/ctx:[0-9]+/cache:logquant2-w42/isa:$best/"
  filter+="|attend-(floor|floor-mix|fp-part)/.*ctx:16384|dram/read/threads:[12]/|core/vpdpbusd-zmm\$"
  filter+="|attend-l2/.*cache:(fp16|fp32)/|attend-l2/.*cache:logquant2-w42/isa:$best\$"
  filter+="|append/decode/shape:llama3-8b/cache:logquant2-w42/isa:$best/)"
fi

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
args=(--benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true
      --benchmark_report_aggregates_only=true
      --benchmark_min_time="$min_time" --benchmark_out="$build/results.json"
      --benchmark_out_format=json)
[ -n "$filter" ] && args+=(--benchmark_filter="$filter")
echo "==> run (load average $load): $build/bench/logquant_bench ${args[*]}"
"$build/bench/logquant_bench" "${args[@]}"

echo "==> report"
python3 scripts/bench_report.py "$build/results.json" "$out" --load "$load" \
  --command "${LOGQUANT_BENCH_LLC_MIB:+LOGQUANT_BENCH_LLC_MIB=$LOGQUANT_BENCH_LLC_MIB }${LOGQUANT_BENCH_SET:+LOGQUANT_BENCH_SET=$LOGQUANT_BENCH_SET }bash scripts/bench_report.sh  # logquant_bench ${args[*]}"
