#!/usr/bin/env bash
# Server side of the Triton serving path (docs/triton.md).
#
# Makes .triton/venv (gitignored) with nvidia-pytriton, whose wheel bundles a real
# `tritonserver` binary (Triton 2.51, python backend only), plus onnxruntime for the
# CPU python-backend models. Its own venv because pytriton pins numpy<2 while the
# project uses numpy 2. Idempotent: a second run only checks. Prints two lines:
#   TRITONSERVER=<path of the binary>
#   TRITON_LD_LIBRARY_PATH=<the venv Python's LIBDIR, to put first on LD_LIBRARY_PATH>
# (the python-backend stub links libpython3.11.so.1.0; without that LIBDIR first it picks
# up another copy and model init fails with an RLock `_recursion_count` AttributeError).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${TRITON_VENV:-.triton/venv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import pytriton, onnxruntime, numpy" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet "nvidia-pytriton==0.7.0" "onnxruntime>=1.17" "numpy<2"
fi
"$VENV/bin/python" - <<'PYEOF'
import pathlib, sysconfig
import pytriton
root = pathlib.Path(pytriton.__file__).parent / "tritonserver"
binary = root / "bin" / "tritonserver"
if not binary.is_file():
    raise SystemExit(f"error: no tritonserver binary in {root} (nvidia-pytriton install): "
                     "remove .triton/venv and rerun tools/setup_triton.sh")
# The python backend looks for its stub beside libtriton_python.so; the wheel keeps one stub per
# Python version apart (pytriton copies it at run time). Place the one for this venv's Python.
import shutil, sys
ver = f"{sys.version_info.major}.{sys.version_info.minor}"
stub = root / "python_backend_stubs" / ver / "triton_python_backend_stub"
dest = root / "backends" / "python" / "triton_python_backend_stub"
if not stub.is_file():
    raise SystemExit(f"error: no python-backend stub for Python {ver} in {stub.parent.parent}: "
                     "make .triton/venv with Python 3.8-3.13 (PYTHON=python3.11 bash tools/setup_triton.sh)")
if not dest.is_file():
    shutil.copy2(stub, dest)
print(f"TRITONSERVER={binary}")
print(f"TRITON_LD_LIBRARY_PATH={sysconfig.get_config_var('LIBDIR')}")
PYEOF
