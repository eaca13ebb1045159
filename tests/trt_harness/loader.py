"""Import the REAL TensorRT bindings of one version in this process (docs/DESIGN.md section 8).

``tests/setup/setup_trt_harness.sh`` installs ``tensorrt_bindings`` per major version
under ``.trt_harness/trtN/site`` and stub ``libnvinfer*.so.N`` under
``.trt_harness/trtN/lib``. Preloading the stubs with RTLD_GLOBAL lets the
dynamic loader satisfy the bindings' DT_NEEDED by soname, so no
LD_LIBRARY_PATH is needed. One version per process: pybind modules of two
versions cannot share one interpreter (select with DYNPOSE_TRT_HARNESS=10|11).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
VERSIONS = {"10": "10.3.0", "11": "11.4.0.106"}
SETUP = "bash tests/setup/setup_trt_harness.sh"


class HarnessMissing(RuntimeError):
    """The harness is not installed; the message says how to install it."""


def harness_dir() -> Path:
    return Path(os.environ.get("TRT_HARNESS_DIR", REPO / ".trt_harness"))


def selected_major() -> str:
    major = os.environ.get("DYNPOSE_TRT_HARNESS", "10")
    if major not in VERSIONS:
        raise HarnessMissing(f"DYNPOSE_TRT_HARNESS={major!r}: choose one of {', '.join(VERSIONS)}")
    return major


def load_real(major: str | None = None) -> ModuleType:
    """The real ``tensorrt_bindings`` module of ``major`` (10 or 11)."""
    major = major or selected_major()
    loaded = sys.modules.get("tensorrt_bindings")
    if loaded is not None:
        if loaded.__version__ != VERSIONS[major]:
            raise HarnessMissing(
                f"TensorRT {loaded.__version__} already imported in this process; "
                f"run version {major} in its own process (DYNPOSE_TRT_HARNESS={major})"
            )
        return loaded
    root = harness_dir() / f"trt{major}"
    libs = [root / "lib" / f"lib{n}.so.{major}" for n in ("nvinfer", "nvonnxparser", "nvinfer_plugin")]
    if not (root / "site" / "tensorrt_bindings").is_dir() or not all(p.is_file() for p in libs):
        raise HarnessMissing(f"TensorRT {VERSIONS[major]} harness not installed in {root}; run: {SETUP}")
    for lib in libs:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    sys.path.insert(0, str(root / "site"))
    real = importlib.import_module("tensorrt_bindings")
    if real.__version__ != VERSIONS[major]:
        raise HarnessMissing(
            f"{root} holds TensorRT {real.__version__}, expected {VERSIONS[major]}; rerun {SETUP}"
        )
    return real
