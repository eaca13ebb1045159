"""runtime/ must run on a device with only numpy, OpenCV and an inference engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_runtime_imports_neither_torch_nor_build_nor_calib():
    code = (
        "import sys, importlib, pkgutil, runtime\n"
        "for m in pkgutil.walk_packages(runtime.__path__, 'runtime.'):\n"
        "    if m.name != 'runtime.backends.trt' and not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "import runtime.backends.trt\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'build', 'calib'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
