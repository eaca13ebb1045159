#!/usr/bin/env bash
# The project's one test command (README, docs/contributing.md; .ci/run calls exactly this).
# Installs what the tests need, then runs every suite in its own step: the static checks
# first (ruff, mypy, import-linter: tools/lint.sh, as make lint), fast unit tests, slow
# checks, CUDA compile + host-kernel tests, the TensorRT API harness for 10.3 and 11.x,
# and the benchmark regression gates.
# A step that finds no tests fails: nothing is skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

step() { printf '\n=== %s ===\n' "$1"; }

# The suites read real data from ../shared (not in the repository): without it, stop in one
# line (exit 2) naming what is missing and where it comes from, before anything installs.
bash tests/setup/check_test_data.sh

step "install (torch 2.13.0 CPU build + project with dev extras)"
# pip builds the CPU path's C++ (runtime/heads/rowmath.cpp); without a compiler it would quietly
# fall back to numpy and tests/test_native_rowmath.py would fail, so a clean machine gets g++.
command -v g++ >/dev/null || { apt-get update && apt-get install -y g++; }
"$PY" -m pip install --quiet torch==2.13.0 -e '.[dev]'

step "static checks (make lint): ruff lint + format, mypy --strict on runtime/, import-linter layers"
bash tools/lint.sh "$PY"

step "unit tests"
"$PY" -m pytest -m "not slow and not trt and not bench and not cuda and not live and not triton and not install and not combo and not build_matrix and not canary"

step "runtime-only install: pip install . (no extras) in a clean venv runs runtime.images/video, no torch"
"$PY" -m pytest -m install

step "slow checks (large-net exports, training steps)"
"$PY" -m pytest -m slow

step "build matrix: every config x {cpu, orin} x {fp32, int8} through the real CLI (random weights, tiny calibration)"
"$PY" -m pytest -m build_matrix

step "live sources: a real RTSP server (GStreamer) read through OpenCV/FFmpeg and PyGObject"
bash tools/setup_gst.sh
"$PY" -m pytest -m live

step "CUDA: compile every .cu, build the plugin for TensorRT 10.3 + 11.1 headers, host tests (valgrind)"
"$PY" -m pytest -m cuda
# The plugin against real TensorRT headers of both ABIs (10.3 = JetPack 6, 11.1), its
# host test under valgrind: 10.3 for Orin (sm_87), 11.1 for the x86-gpu architecture list.
command -v valgrind >/dev/null || { apt-get update && apt-get install -y valgrind; }
TRT_HEADERS="$(cd .. && pwd)/shared/third_party/tensorrt"
for v in 10.3.0:87 11.1:75\;80\;86\;87\;89\;90; do
  hv="${v%%:*}"; arch="${v#*:}"
  cmake -S . -B "_build/trt-$hv" -DCMAKE_BUILD_TYPE=Release -DDYNPOSE_REQUIRE_PLUGIN_TEST=ON \
        -DTENSORRT_ROOT="$TRT_HEADERS/$hv/include" -DCMAKE_CUDA_ARCHITECTURES="$arch"
  cmake --build "_build/trt-$hv" -j2
  ctest --test-dir "_build/trt-$hv" --output-on-failure
done

step "TensorRT API harness (real bindings 10.3.0 and 11.4.0.106)"
bash tests/setup/setup_trt_harness.sh
for v in 10 11; do DYNPOSE_TRT_HARNESS=$v "$PY" -m pytest -m trt; done

step "Triton: the bundled tritonserver on loopback (server venv .triton/venv)"
bash tools/setup_triton.sh
"$PY" -m pytest -m triton

step "combination matrix: source x output x backend x detector x cameras, pairwise (20 real runs)"
# Needs both servers' setups above (GStreamer + RTSP server, tritonserver): tests/test_combo_matrix.py.
"$PY" -m pytest -m combo

step "benchmark regression gates"
make bench PYTHON="$PY"

step "speed gates proof (pass beside a CPU hog, fail on planted regressions)"
# All four proofs: beside a CPU hog every gate passes; a planted 30 % slower decode fails
# decode_over_frozen; planted slower regions fail regions_over_frozen; a planted scheduler
# delay fails the dyn shares (tests/test_gates.py).
make bench-proof PYTHON="$PY" BENCH_ENGINES=.benchmarks/artifacts/dyn-r50-h32-cpu
