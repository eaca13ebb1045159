"""Build libdynpose_plugins.so with CMake for a given TensorRT header set and architecture.

Used by the ABI tests (one library per header version: 10.3 and 11.1) and by
``tools.device_check`` (the local GPU's architecture). Builds are cached per
source content, header directory and architecture, so a test session compiles
each variant once; CMake itself is the build (no second recipe to drift).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .host_build import KERNELS_DIR

REPO = KERNELS_DIR.parent
SHARED_TRT_HEADERS = REPO.parent / "shared" / "third_party" / "tensorrt"


def _source_hash(*extra: str) -> str:
    h = hashlib.sha256("\0".join(extra).encode())
    for p in sorted(KERNELS_DIR.rglob("*")):
        if p.suffix in {".cu", ".cuh", ".h", ".cpp"} and "tests" not in p.parts:
            h.update(p.name.encode() + p.read_bytes())
    for p in (REPO / "CMakeLists.txt", REPO / "cmake" / "TensorRTVersion.cmake"):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build_plugin_lib(trt_include: Path, arch: str = "87", out_root: Path | None = None) -> Path:
    """``cmake --build --target dynpose_plugins``; returns the .so path or raises with CMake's output."""
    if not (REPO / "CMakeLists.txt").is_file():  # pip install ships the sources, not the CMake project
        raise RuntimeError(
            f"the plugin builds with the repository's CMakeLists.txt, absent at {REPO} "
            "(an installed package); run from a clone of the repository"
        )
    for tool in ("cmake", "nvcc"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} not found on PATH; install it to build libdynpose_plugins.so")
    trt_include = Path(trt_include).resolve()
    if not (trt_include / "NvInferRuntime.h").is_file():
        raise RuntimeError(f"no TensorRT headers (NvInferRuntime.h) in {trt_include}")
    key = _source_hash(str(trt_include), arch)
    build = (out_root or Path(tempfile.gettempdir())) / f"dynpose-plugin-{key}"
    lib = build / "libdynpose_plugins.so"
    if lib.is_file():
        return lib
    steps = [
        [
            "cmake",
            "-S",
            str(REPO),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DTENSORRT_ROOT={trt_include}",
            f"-DCMAKE_CUDA_ARCHITECTURES={arch}",
            "-DDYNPOSE_REQUIRE_PLUGIN_TEST=OFF",
        ],
        ["cmake", "--build", str(build), "--target", "dynpose_plugins", "-j", str(os.cpu_count() or 2)],
    ]
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    if not lib.is_file():
        raise RuntimeError(f"CMake configured {build} without libdynpose_plugins.so (headers not accepted?)")
    return lib
