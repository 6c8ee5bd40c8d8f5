#!/usr/bin/env bash
# Builds and runs the demo, examples/toy_attention: bash scripts/demo.sh [demo arguments]
# A Release build of just that target in build/demo (no tests or benchmarks, so no GoogleTest or
# Google Benchmark needed). Installs the Debian packages it needs when they are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh

logquant_ensure_packages cmake make g++ libeigen3-dev
jobs="$(logquant_jobs)"

echo "==> configure (build/demo)"
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release \
  -DLOGQUANT_BUILD_TESTS=OFF -DLOGQUANT_BUILD_BENCHMARKS=OFF -DLOGQUANT_BUILD_EXAMPLES=ON
echo "==> build toy_attention (-j$jobs)"
cmake --build build/demo --target toy_attention --parallel "$jobs"

demo="build/demo/examples/toy_attention"
[ -x "$demo" ] || demo="$(find build/demo -type f -name toy_attention -perm -u+x | head -n 1)"
echo "==> run $demo $*"
"$demo" "$@"
