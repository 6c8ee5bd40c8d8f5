#!/usr/bin/env bash
# Builds logquant and runs every test: bash scripts/test.sh [preset]
# The preset (CMakePresets.json) defaults to `dev` (RelWithDebInfo, tests, benchmarks, examples);
# the build lands in build/<preset>. Installs the Debian packages it needs when they are missing.
# Extra environment the tests read: LOGQUANT_TEST_REQUIRE=avx2,avxvnni,avx512 makes the kernel
# tests fail (instead of skip) when this CPU lacks one of those ISAs; LOGQUANT_ISA forces one
# kernel set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh

preset="${1:-dev}"
logquant_ensure_packages cmake make g++ libgtest-dev libbenchmark-dev libeigen3-dev
jobs="$(logquant_jobs)"

echo "==> configure (preset $preset)"
cmake --preset "$preset"
echo "==> build (-j$jobs)"
cmake --build --preset "$preset" --parallel "$jobs"
echo "==> test (-j$jobs)"
status=0
ctest --preset "$preset" --parallel "$jobs" || status=$?

# ctest counts a GoogleTest skip as "Skipped" without its reason: print each with the reason the
# test gave (the line after GTEST_SKIP's "Skipped"), so nothing skips in silence.
log="build/$preset/Testing/Temporary/LastTest.log"
if [ -f "$log" ] && grep -q ': Skipped$' "$log"; then
  echo "==> skipped tests and why"
  awk '/^[0-9]+\/[0-9]+ Test: / { name = $3 }
       /: Skipped$/ { getline reason; print "  " name ": " reason }' "$log"
fi
exit "$status"
