"""The CPU path's per-map maths in C++ (``rowmath.cpp``, compiled at ``pip install``), with the
numpy references in decode.py and credible.py as the fallback and the oracle.

Why: on the CPU backend the host's decode and credible regions cost as much as a small net's
crop (issue #29); numpy needs ~20 calls per step whatever the map count, and the regions' sort of
every blurred map is O(HW log HW). The C++ does each map in one loop nest that skips the zeros
sparsemax leaves and selects the regions' thresholds from a histogram.

* :func:`decode_probmaps` (behind ``decode.decode_probmaps``) is bitwise the numpy reference's
  (same float32 operations in the same order, built with ``-ffp-contract=off``);
* :func:`regions` (behind ``credible.calibrated_regions``) equals
  ``credible_regions(blur_maps(maps, sigma), masses)`` with counts within one pixel (where a
  running sum meets q within rounding) and ellipses and thresholds to ~1e-12 (float64 summed in
  another order; ties within ``credible.TIE_RTOL``).

The library is optional. Where it was not built (no C++ compiler at install) or
``DYNPOSE_NATIVE=0`` is set, those two callers run the numpy references; :func:`status` says
which is in use and why, and the pipeline logs it once.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

_HERE = Path(__file__).resolve().parent
ENV = "DYNPOSE_NATIVE"  # "0": the numpy references, even where the library is built


def open_library(path: Path, source: Path | None) -> tuple[ctypes.CDLL | None, str]:
    """The built library at ``path``, refused (None and why) when it does not load or was built
    from another ``source`` than the one beside it (an in-place build an older checkout left)."""
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        return None, f"numpy references ({path.name} did not load: {e})"
    try:
        lib.dpn_source_digest.restype = ctypes.c_char_p
        built = (lib.dpn_source_digest() or b"").decode()
    except AttributeError:  # a library older than the digest
        built = ""
    if (
        source is not None
        and source.is_file()
        and built != hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    ):
        return None, (
            f"numpy references ({path.name} was built from another {source.name}: "
            "rebuild it with pip install -e . or pip install .)"
        )
    vp, i, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
    lib.dpn_decode_probmaps.argtypes = [vp, i, i, i, i, vp, i, vp, vp, vp]
    lib.dpn_regions.argtypes = [vp, i, i, i, d, i, vp, vp, vp, vp]
    lib.dpn_decode_probmaps.restype = lib.dpn_regions.restype = ctypes.c_int
    return lib, f"native ({path.name})"


@lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get(ENV, "1").strip() == "0":
        return None, f"numpy references ({ENV}=0)"
    found = [p for s in importlib.machinery.EXTENSION_SUFFIXES if (p := _HERE / f"_rowmath{s}").is_file()]
    if not found:
        return None, (
            "numpy references (runtime/heads/_rowmath was not built: reinstall with a C++ compiler, "
            "e.g. apt install g++, then pip install .)"
        )
    return open_library(found[0], _HERE / "rowmath.cpp")


def status() -> str:
    """Which implementation the CPU decode and regions use, and why."""
    return _load()[1]


def available() -> bool:
    return _load()[0] is not None


def decode_probmaps(
    pm: np.ndarray, half: np.ndarray, radii: np.ndarray, lib: ctypes.CDLL | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ProbPose decode of [N,K,H,W] maps with the expected-OKS half taps [K,R+1] and radii
    [K] (runtime.heads.decode.oks_half_taps): coords [N,K,2] and scores [N,K], float32. ``lib``:
    another build of the library (bench/native_frozen.py's yardstick), else the installed one."""
    lib = lib or _load()[0]
    assert lib is not None, "runtime.heads.native.decode_probmaps called without the library"
    n, k, h, w = pm.shape
    src = np.ascontiguousarray(pm, dtype=np.float32)
    taps = np.ascontiguousarray(half, dtype=np.float32)
    rad = np.ascontiguousarray(radii, dtype=np.int64)
    kp = np.empty((n, k, 2), np.float32)
    sc = np.empty((n, k), np.float32)
    rc = lib.dpn_decode_probmaps(
        src.ctypes.data, n * k, k, h, w, taps.ctypes.data, taps.shape[1] - 1, rad.ctypes.data,
        kp.ctypes.data, sc.ctypes.data,
    )  # fmt: skip
    if rc:
        raise ValueError(f"native decode rejected maps {pm.shape} with taps {half.shape} (code {rc})")
    return kp, sc


def regions(
    maps: np.ndarray, masses: Sequence[float], sigma: float, lib: ctypes.CDLL | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Counts [Q,N,K], thresholds [Q,N,K] and ellipses [Q,N,K,5] of the smallest sets holding
    each mass of the [N,K,H,W] maps blurred by ``sigma`` heatmap pixels (0: as given)."""
    lib = lib or _load()[0]
    assert lib is not None, "runtime.heads.native.regions called without the library"
    n, k, h, w = maps.shape
    src = np.ascontiguousarray(maps, dtype=np.float32)
    qs = np.ascontiguousarray(masses, dtype=np.float64)
    q = qs.size
    counts = np.empty((q, n * k), np.int64)
    thr = np.empty((q, n * k))
    ell = np.empty((q, n * k, 5))
    rc = lib.dpn_regions(
        src.ctypes.data, n * k, h, w, float(sigma), q, qs.ctypes.data,
        counts.ctypes.data, thr.ctypes.data, ell.ctypes.data,
    )  # fmt: skip
    if rc:
        raise ValueError(f"native regions rejected maps {maps.shape}, {q} masses, sigma {sigma} (code {rc})")
    return counts.reshape(q, n, k), thr.reshape(q, n, k), ell.reshape(q, n, k, 5)
