"""Build and call the host build of the CUDA kernels' row math (no GPU, no CMake needed).

The tests compile ``kernels/host_api.cpp`` - which runs the *same* drivers as the CUDA
kernels, ``dynpose_rowmath.cuh``, on a HostBlock that plays the thread block - with the
host C++ compiler, then call it through ctypes. ``-ffp-contract=off`` keeps the compiler
from fusing multiply-adds, the arithmetic contract the device code and the numpy
reference (runtime/heads/decode.py) share.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from runtime.heads.base import PLUGIN_MODES

KERNELS_DIR = Path(__file__).resolve().parent
HOST_SOURCES = (
    "host_api.cpp",
    "host_block.h",
    "dynpose_rowmath.cuh",
    "dynpose_regions.cuh",
    "dynpose_crop.cuh",
    "simcc_rowmath.cuh",
)
CXXFLAGS = ("-O2", "-std=c++17", "-fPIC", "-shared", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror")
MODE = {m: i for i, m in enumerate(PLUGIN_MODES)}  # the kernels' enum values


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not cxx:
        raise RuntimeError("no C++ compiler found for the kernels' host build; install g++ or set CXX")
    return cxx


def build_host_lib(out_dir: Path | None = None) -> Path:
    """Compile libdynpose_host.so once per source content; returns its path."""
    cxx = _compiler()
    h = hashlib.sha256(" ".join((cxx,) + CXXFLAGS).encode())
    for name in HOST_SOURCES:
        h.update((KERNELS_DIR / name).read_bytes())
    out_dir = out_dir or Path(tempfile.gettempdir()) / f"dynpose-host-{h.hexdigest()[:16]}"
    lib = out_dir / "libdynpose_host.so"
    if lib.is_file():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f"libdynpose_host.{os.getpid()}.so"
    cmd = [cxx, *CXXFLAGS, str(KERNELS_DIR / "host_api.cpp"), "-o", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"host build failed: {' '.join(cmd)}\n{res.stderr}")
    tmp.replace(lib)  # atomic: parallel test sessions never load a half-written library
    return lib


class HostKernels:
    """numpy-in, numpy-out wrappers around the host build (the kernels' code on the CPU)."""

    def __init__(self, lib_path: Path | None = None) -> None:
        self.lib = ctypes.CDLL(str(lib_path or build_host_lib()))
        vp, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
        self.lib.dp_sparsemax.argtypes = [vp, i, vp, i, i, i, f]
        self.lib.dp_decode.argtypes = [vp, i, vp, vp, i, i, i, i, i, i, f, vp]
        self.lib.dp_simcc_decode.argtypes = [vp, vp, i, vp, vp, i, i, i, i, f]
        self.lib.dp_oks_half_taps.argtypes = [f, i, i, vp]
        self.lib.dp_half_to_float.argtypes = [vp, vp, i]
        self.lib.dp_float_to_half.argtypes = [vp, vp, i]
        self.lib.dp_half_to_float.restype = self.lib.dp_float_to_half.restype = None
        self.lib.dp_reflect.argtypes = [i, i]
        self.lib.dp_decode_regions.argtypes = [vp, i, vp, vp, vp, vp, i, i, i, i, i, i, f, vp, i, vp, f]
        self.lib.dp_crops.argtypes = [vp, i, i, vp, i, vp, i, i, i, vp, vp]

    @staticmethod
    def _input(x: np.ndarray) -> tuple[np.ndarray, int]:
        if x.dtype == np.float16:
            return np.ascontiguousarray(x).view(np.uint16), 1
        return np.ascontiguousarray(x, dtype=np.float32), 0

    def sparsemax(self, z: np.ndarray, scale: float = 1.0, out_dtype=np.float32) -> np.ndarray:
        """Sparsemax over the last axis; z float32 or float16, output float32 or float16."""
        src, in_half = self._input(z)
        out_half = int(np.dtype(out_dtype) == np.float16)
        out = np.empty(z.shape, dtype=np.uint16 if out_half else np.float32)
        n = z.shape[-1]
        rc = self.lib.dp_sparsemax(src.ctypes.data, in_half, out.ctypes.data, out_half, z.size // n, n, scale)
        if rc:
            raise ValueError(f"dp_sparsemax failed with code {rc}")
        return out.view(np.float16) if out_half else out

    def simcc_decode(
        self, simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = 2.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode SimCC rows [N,K,Wx] and [N,K,Hy] (both float32 or both float16); returns
        keypoints [N,K,2] in input pixels and scores [N,K] (float32)."""
        if simcc_x.dtype != simcc_y.dtype or simcc_x.shape[:2] != simcc_y.shape[:2]:
            raise ValueError(
                f"simcc_x {simcc_x.shape} {simcc_x.dtype} and simcc_y {simcc_y.shape} {simcc_y.dtype} "
                "must share N, K and dtype"
            )
        n, k, wx = simcc_x.shape
        hy = simcc_y.shape[2]
        sx, in_half = self._input(simcc_x)
        sy, _ = self._input(simcc_y)
        kp = np.empty((n, k, 2), np.float32)
        sc = np.empty((n, k), np.float32)
        rc = self.lib.dp_simcc_decode(
            sx.ctypes.data, sy.ctypes.data, in_half, kp.ctypes.data, sc.ctypes.data, n, k, wx, hy, split_ratio
        )
        if rc:
            raise ValueError(
                f"dp_simcc_decode rejected the parameters (code {rc}: -1 K or N, -2 row length, -3 split ratio)"
            )
        return kp, sc

    def decode(
        self, maps: np.ndarray, mode: str, sigmas=None, normalize: bool = False, temperature: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode [N,K,H,W] maps; returns keypoints [N,K,2] and scores [N,K] (float32)."""
        n, k, h, w = maps.shape
        src, in_half = self._input(maps)
        sig = np.ascontiguousarray(np.zeros(k) if sigmas is None else sigmas, dtype=np.float32)
        kp = np.empty((n, k, 2), np.float32)
        sc = np.empty((n, k), np.float32)
        rc = self.lib.dp_decode(
            src.ctypes.data,
            in_half,
            kp.ctypes.data,
            sc.ctypes.data,
            n,
            k,
            h,
            w,
            MODE[mode],
            int(normalize),
            temperature,
            sig.ctypes.data,
        )
        if rc:
            raise ValueError(
                f"dp_decode rejected the parameters (code {rc}: -1 K out of 1..32, -2 map size, -3 mode)"
            )
        return kp, sc

    def decode_regions(
        self,
        maps: np.ndarray,
        masses,
        sigmas=None,
        normalize: bool = False,
        temperature: float = 1.0,
        blur_sigma: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Probmap decode plus credible regions of [N,K,H,W] maps, as the decode plugin with
        ``masses`` computes them: keypoints [N,K,2], scores [N,K], pixel counts [N,K,Q] and
        ellipses [N,K,Q,5] (float32)."""
        n, k, h, w = maps.shape
        src, in_half = self._input(maps)
        sig = np.ascontiguousarray(np.full(k, 0.05) if sigmas is None else sigmas, dtype=np.float32)
        qs = np.ascontiguousarray(masses, dtype=np.float32).reshape(-1)
        kp = np.empty((n, k, 2), np.float32)
        sc = np.empty((n, k), np.float32)
        pix = np.empty((n, k, qs.size), np.float32)
        ell = np.empty((n, k, qs.size, 5), np.float32)
        args = (src.ctypes.data, in_half, kp.ctypes.data, sc.ctypes.data, pix.ctypes.data, ell.ctypes.data)
        rc = self.lib.dp_decode_regions(
            *args,
            n,
            k,
            h,
            w,
            MODE[PLUGIN_MODES[1]],
            int(normalize),
            temperature,
            sig.ctypes.data,
            qs.size,
            qs.ctypes.data,
            blur_sigma,
        )
        if rc:
            raise ValueError(
                f"dp_decode_regions rejected the parameters (code {rc}: -1 K, -2 map size, -4 over 4 masses, "
                "-5 a mass outside (0, 1], -6 map side over 256 with a blur, -7 bad blur sigma)"
            )
        return kp, sc, pix, ell

    def crops(
        self, frame: np.ndarray, affines: np.ndarray, out_hw: tuple[int, int], mean, std, half: bool = False
    ) -> np.ndarray:
        """The crop kernel's source: [N,3,H,W] crops of a uint8 HxWx3 BGR frame (RGB, normalised)."""
        img = np.ascontiguousarray(frame, dtype=np.uint8)
        aff = np.ascontiguousarray(affines, dtype=np.float64).reshape(-1, 2, 3)
        h, w = out_hw
        out = np.empty((len(aff), 3, h, w), np.uint16 if half else np.float32)
        mean32 = np.ascontiguousarray(mean, dtype=np.float32)
        std32 = np.ascontiguousarray(std, dtype=np.float32)
        rc = self.lib.dp_crops(
            img.ctypes.data,
            img.shape[0],
            img.shape[1],
            aff.ctypes.data,
            len(aff),
            out.ctypes.data,
            int(half),
            h,
            w,
            mean32.ctypes.data,
            std32.ctypes.data,
        )
        if rc:
            raise ValueError(
                f"dp_crops rejected the parameters (code {rc}: sizes must be >= 1, std non-zero)"
            )
        return out.view(np.float16) if half else out

    def half_taps(self, sigma: float, h: int, w: int) -> tuple[np.ndarray, int]:
        taps = np.zeros(10, np.float32)
        r = self.lib.dp_oks_half_taps(sigma, h, w, taps.ctypes.data)
        return taps, r

    def half_to_float(self, bits: np.ndarray) -> np.ndarray:
        bits = np.ascontiguousarray(bits, dtype=np.uint16)
        out = np.empty(bits.shape, np.float32)
        self.lib.dp_half_to_float(bits.ctypes.data, out.ctypes.data, bits.size)
        return out

    def float_to_half(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty(x.shape, np.uint16)
        self.lib.dp_float_to_half(x.ctypes.data, out.ctypes.data, x.size)
        return out

    def reflect(self, i: int, n: int) -> int:
        return self.lib.dp_reflect(i, n)


def compile_cu(src: Path, out_dir: Path, arch: str = "sm_87", extra: tuple[str, ...] = ()) -> Path:
    """nvcc -arch=<arch> -c one .cu file; raises with nvcc's output on failure."""
    nvcc = shutil.which("nvcc")
    if not nvcc:
        raise RuntimeError("nvcc not found on PATH; install the CUDA toolkit to compile kernels/*.cu")
    obj = out_dir / (src.stem + ".o")
    cmd = [nvcc, f"-arch={arch}", "-std=c++17", "-c", str(src), "-o", str(obj), *extra]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return obj
