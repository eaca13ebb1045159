#!/usr/bin/env bash
# Dependency canary: do the newest releases of the ONNX stack still make every INT8 build?
#
# Why: pyproject.toml caps onnxruntime, onnx, onnxsim and onnxslim below their next minor
# release, because minor releases change what the build relies on (e.g. ONNX Runtime's
# quantizer began widening per-channel weight scales for int32 biases in 1.20, which later
# crashed the int8_trt flavour of dyn-r50-h32). The caps keep users' installs working; this
# canary tells the maintainers when a newer release exists and whether it breaks, so a cap is
# raised on evidence rather than left to rot.
#
# What: a throwaway venv (system site-packages for torch and the rest) with the NEWEST
# releases of the four packages, ignoring the caps; each version is printed against the index's
# newest and the cap; then the quantizer's unit tests and the int8 builds for a TensorRT target
# of every config (pytest -m canary, tests/test_build_matrix.py), run from this checkout.
#
# Schedule: weekly, outside the per-commit CI (e.g. a CI schedule or cron:
#   0 3 * * 1  cd /path/to/dynpose-trt && bash tools/deps_canary.sh > canary.log 2>&1).
# Exit 0: the newest releases pass (the log says which are beyond a cap: raise that cap).
# Exit 1: a test failed with the versions printed at the top (keep the cap, read the failure).
# Exit 2: nothing was tested (no venv, no package index, or no test selected).
# Extra arguments go to the builds' pytest, e.g. `bash tools/deps_canary.sh -k dyn-r50-h32`.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PKGS=(onnxruntime onnx onnxsim onnxslim)
VENV="$(mktemp -d "${TMPDIR:-/tmp}/dynpose-canary.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

"$PY" -m venv --system-site-packages "$VENV" 2>/dev/null \
  || { echo "deps-canary: cannot create a venv with $PY (set PYTHON=...); nothing tested" >&2; exit 2; }
"$VENV/bin/python" -m pip install --quiet --upgrade "${PKGS[@]}" \
  || { echo "deps-canary: pip could not install the newest ${PKGS[*]}; nothing tested" >&2; exit 2; }

# Each package: installed, newest on the index (an unreachable index leaves the old copy in place
# without pip failing: then nothing new would be tested), and the cap in pyproject.toml.
"$VENV/bin/python" - "${PKGS[@]}" <<'PYEOF' || exit 2
import re, subprocess, sys, tomllib
from importlib.metadata import version
from packaging.requirements import Requirement

reqs = {Requirement(r).name: Requirement(r) for r in
        tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]}
for name in sys.argv[1:]:
    r = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name], capture_output=True, text=True)
    newest = re.match(rf"{re.escape(name)} \(([^)]+)\)", r.stdout)
    if r.returncode != 0 or not newest:
        last = (r.stderr.strip().splitlines() or ["no answer"])[-1][:120]
        sys.exit(f"deps-canary: cannot read {name}'s releases from the package index ({last}); nothing tested")
    have, spec = version(name), reqs[name].specifier
    if have != newest.group(1):
        sys.exit(f"deps-canary: {name} {have} is installed but {newest.group(1)} is the newest; nothing tested")
    state = "within the pin" if spec.contains(have, prereleases=True) else "BEYOND the pin"
    print(f"deps-canary: {name} {have}, the newest release ({state} {spec})")
PYEOF

export PYTHONPATH="$PWD"   # this checkout, not whatever an editable install points at
rc=0
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_trt_qdq_axis.py tests/test_calib_quantize.py \
  -m "not slow" || rc=1
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_build_matrix.py -m canary "$@"
case $? in
  0) ;;
  5) echo "deps-canary: no build test selected (${*:-no arguments})" >&2; [ $rc -ne 0 ] || exit 2 ;;
  *) rc=1 ;;
esac
if [ $rc -ne 0 ]; then
  echo "deps-canary: FAILED with the versions above; keep the caps in pyproject.toml" >&2
else
  echo "deps-canary: the newest releases pass; a package BEYOND its pin can have its cap raised"
fi
exit $rc
