#!/usr/bin/env bash
# The project's one test command (README, and .ci/run calls exactly this).
# Installs what the tests need, then runs every suite in its own step:
# fast unit tests, slow checks, CUDA compile + host-kernel tests, the TensorRT
# API harness for 10.3 and 11.x, and the benchmark regression gates.
# A step that finds no tests fails: nothing is skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

step() { printf '\n=== %s ===\n' "$1"; }

step "install (torch 2.13.0 CPU build + project with dev extras)"
"$PY" -m pip install --quiet torch==2.13.0 -e '.[dev]'

step "unit tests"
"$PY" -m pytest -m "not slow and not trt and not bench and not cuda"

step "slow checks (large-net exports, training steps)"
"$PY" -m pytest -m slow

step "CUDA: compile every .cu for sm_87 and run the kernels' host build"
"$PY" -m pytest -m cuda
cmake -S . -B _build -DCMAKE_BUILD_TYPE=Release
cmake --build _build -j2
ctest --test-dir _build --output-on-failure

step "TensorRT API harness (real bindings 10.3.0 and 11.4.0.106)"
bash tools/setup_trt_harness.sh
for v in 10 11; do DYNPOSE_TRT_HARNESS=$v "$PY" -m pytest -m trt; done

step "benchmark regression gates"
make bench PYTHON="$PY"

step "speed gates proof (pass beside a CPU hog, fail on planted regressions)"
make bench-proof PYTHON="$PY" BENCH_ENGINES=.benchmarks/artifacts/dyn-r50-h32-cpu   # reuse what make bench built
