#!/usr/bin/env bash
# Dependency canary: do the newest releases of the ONNX stack still build INT8 engines' inputs?
#
# Why: pyproject.toml caps onnxruntime, onnx, onnxsim and onnxslim below their next minor
# release, because their minor releases change what the build relies on (ONNX Runtime 1.32's
# quantizer started widening per-channel weight scales for an int32 bias and crashed the
# int8_trt flavour of dyn-r50-h32). The caps keep users' installs working; this canary tells
# the maintainers when a newer release exists and whether it breaks, so a cap is raised on
# evidence rather than left to rot.
#
# What: a throwaway venv (system site-packages for torch and the rest) with the NEWEST
# releases of the four packages, ignoring the caps; prints each version against its cap;
# then the int8 builds for a TensorRT target of every config (pytest -m canary,
# tests/test_build_matrix.py) and the quantizer's unit tests, run from this checkout.
#
# Schedule: weekly, outside the per-commit CI (e.g. a CI schedule or cron:
#   0 3 * * 1  cd /path/to/dynpose-trt && bash tools/deps_canary.sh > canary.log 2>&1).
# Exit 0: the newest releases pass (the log says which are beyond a cap: raise that cap).
# Exit 1: a test failed with the versions printed at the top (keep the cap, read the failure).
# Exit 2: the venv or the install could not be made (no PyPI access?): nothing was tested.
# Takes ~10-15 min on two cores (five configs, int8, Orin target). Extra arguments go to the
# builds' pytest, e.g. `bash tools/deps_canary.sh -k dyn-r50-h32` for one config.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PKGS=(onnxruntime onnx onnxsim onnxslim)
VENV="$(mktemp -d "${TMPDIR:-/tmp}/dynpose-canary.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

"$PY" -m venv --system-site-packages "$VENV" || { echo "deps-canary: cannot create a venv with $PY" >&2; exit 2; }
"$VENV/bin/python" -m pip install --quiet --upgrade "${PKGS[@]}" \
  || { echo "deps-canary: pip could not install the newest ${PKGS[*]}; nothing tested" >&2; exit 2; }

# Each package's version against the cap in pyproject.toml (packaging ships with pip).
"$VENV/bin/python" - "${PKGS[@]}" <<'EOF' || exit 2
import sys, tomllib
from importlib.metadata import version
from packaging.requirements import Requirement

reqs = {Requirement(r).name: Requirement(r) for r in
        tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]}
for name in sys.argv[1:]:
    have, spec = version(name), reqs[name].specifier
    state = "within the pin" if spec.contains(have, prereleases=True) else "BEYOND the pin"
    print(f"deps-canary: {name} {have} ({state} {spec})")
EOF

export PYTHONPATH="$PWD"   # this checkout, not whatever an editable install points at
rc=0
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_trt_qdq_axis.py tests/test_calib_quantize.py \
  -m "not slow" || rc=1
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_build_matrix.py -m canary "$@" || rc=1
if [ $rc -ne 0 ]; then
  echo "deps-canary: FAILED with the versions above; keep the caps in pyproject.toml" >&2
else
  echo "deps-canary: the newest releases pass; a package BEYOND its pin can have its cap raised"
fi
exit $rc
