"""The yardstick of the host decode and regions gates: ``bench/rowmath_frozen.cpp``, the CPU
path's C++ (runtime/heads/rowmath.cpp) as it stood when the gates were set, built here with the
flags ``setup.py`` builds the runtime's copy with (tests/test_native_rowmath.py checks they match).

Why a compiled copy and not the numpy code the gates were first set on: the runtime now decodes
in C++, and C++ over numpy moves with the CPU model (vector width, memory), so only the same C++
built the same way is "the same work" on any machine (bench/bench_decode.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from runtime.heads.native import open_library

SOURCE = Path(__file__).resolve().parent / "rowmath_frozen.cpp"
FLAGS = ("-O3", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-fno-wrapv")  # setup.py's


@lru_cache(maxsize=1)
def frozen_library() -> ctypes.CDLL:
    """Compile the frozen copy once per content (in the temp dir) and load it."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise RuntimeError("the decode benchmarks need a C++ compiler for their yardstick: install g++")
    digest = hashlib.sha256((cxx + " ".join(FLAGS)).encode() + SOURCE.read_bytes()).hexdigest()[:16]
    lib = Path(tempfile.gettempdir()) / f"dynpose-rowmath-frozen-{digest}.so"
    if not lib.is_file():
        tmp = lib.with_suffix(f".{os.getpid()}.so")
        subprocess.run([cxx, *FLAGS, "-fPIC", "-shared", str(SOURCE), "-o", str(tmp)], check=True)
        tmp.replace(lib)  # atomic: parallel sessions never load a half-written library
    loaded, why = open_library(lib, None)
    if loaded is None:
        raise RuntimeError(why)
    return loaded
