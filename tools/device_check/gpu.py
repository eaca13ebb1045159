"""The kernels on the local GPU: nvcc build of kernels/device_api.cu + ctypes calls.

Why not cupy / pycuda: the check must run with nothing but this repo, the CUDA
toolkit and numpy, and must time the very launchers the plugin's ``enqueue``
calls (kernels/dynpose_kernels.cu), not a re-implementation.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from kernels.host_build import KERNELS_DIR, MODE

SOURCES = ("device_api.cu", "dynpose_kernels.cu", "crop_kernel.cu")


def nvidia_smi_arch() -> str | None:
    """``sm_XY`` of GPU 0 from nvidia-smi's compute_cap, None when it cannot say."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    res = subprocess.run(
        [smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True
    )
    first = res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else ""
    return f"sm_{first.replace('.', '')}" if first.replace(".", "").isdigit() else None


def arch_flag(arch: str | None = None) -> str:
    """-arch value: the caller's, else nvidia-smi's compute capability, else nvcc's ``native``."""
    return arch or nvidia_smi_arch() or "native"


def build_gpu_lib(out_dir: Path, arch: str) -> Path:
    """nvcc -shared the shim and the kernels for ``arch``; raises with nvcc's output."""
    nvcc = shutil.which("nvcc")
    if not nvcc:
        raise RuntimeError("nvcc not found on PATH; install the CUDA toolkit")
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"libdynpose_gpu_{arch}.so"
    cmd = [
        nvcc,
        f"-arch={arch}",
        "-O3",
        "-std=c++17",
        "-shared",
        "-Xcompiler",
        "-fPIC",
        *(str(KERNELS_DIR / s) for s in SOURCES),
        "-o",
        str(lib),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return lib


class GpuError(RuntimeError):
    """A CUDA call in the shim failed; the message carries cudaGetErrorString."""


class GpuKernels:
    """Same calls as kernels.host_build.HostKernels, on the GPU, each with its mean kernel time."""

    def __init__(self, lib_path: Path) -> None:
        self.lib = ctypes.CDLL(str(lib_path))
        vp, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
        fp = ctypes.POINTER(ctypes.c_float)
        self.lib.dpg_device_info.argtypes = [
            ctypes.c_char_p,
            i,
            ctypes.POINTER(i),
            ctypes.POINTER(i),
            ctypes.POINTER(ctypes.c_longlong),
        ]
        self.lib.dpg_error_string.restype = ctypes.c_char_p
        self.lib.dpg_error_string.argtypes = [i]
        self.lib.dpg_sparsemax.argtypes = [vp, i, vp, i, i, i, f, i, fp]
        self.lib.dpg_decode.argtypes = [vp, i, vp, vp, i, i, i, i, i, i, f, vp, i, fp]
        self.lib.dpg_decode_regions.argtypes = [vp, i, vp, vp, vp, vp, i, i, i, i, i, f, vp, i, vp, f, i, fp]
        self.lib.dpg_crops.argtypes = [vp, i, i, vp, i, vp, i, i, i, vp, vp, i, fp]

    def _check(self, rc: int, what: str) -> None:
        if rc < 0:
            raise ValueError(f"{what}: parameters rejected (code {rc})")
        if rc:
            raise GpuError(f"{what}: CUDA error {rc} ({self.lib.dpg_error_string(rc).decode()})")

    def device_info(self) -> dict:
        name = ctypes.create_string_buffer(256)
        ma, mi, smem = ctypes.c_int(), ctypes.c_int(), ctypes.c_longlong()
        self._check(
            self.lib.dpg_device_info(name, 256, ctypes.byref(ma), ctypes.byref(mi), ctypes.byref(smem)),
            "cudaGetDeviceProperties",
        )
        return {"gpu": name.value.decode(), "sm": f"{ma.value}.{mi.value}", "smem_optin": smem.value}

    @staticmethod
    def _input(x: np.ndarray) -> tuple[np.ndarray, int]:
        if x.dtype == np.float16:
            return np.ascontiguousarray(x).view(np.uint16), 1
        return np.ascontiguousarray(x, dtype=np.float32), 0

    def sparsemax(self, z: np.ndarray, scale: float = 1.0, iters: int = 20) -> tuple[np.ndarray, float]:
        src, in_half = self._input(z)
        out = np.empty(z.shape, np.float32)
        n = z.shape[-1]
        ms = ctypes.c_float()
        self._check(
            self.lib.dpg_sparsemax(
                src.ctypes.data, in_half, out.ctypes.data, 0, z.size // n, n, scale, iters, ctypes.byref(ms)
            ),
            "sparsemax",
        )
        return out, ms.value

    def decode(
        self,
        maps: np.ndarray,
        mode: str,
        sigmas=None,
        normalize: bool = False,
        temperature: float = 1.0,
        iters: int = 20,
    ) -> tuple[np.ndarray, np.ndarray, float]:
        n, k, h, w = maps.shape
        src, in_half = self._input(maps)
        sig = np.ascontiguousarray(np.zeros(k) if sigmas is None else sigmas, dtype=np.float32)
        kp = np.empty((n, k, 2), np.float32)
        sc = np.empty((n, k), np.float32)
        ms = ctypes.c_float()
        self._check(
            self.lib.dpg_decode(
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
                iters,
                ctypes.byref(ms),
            ),
            f"decode {mode}",
        )
        return kp, sc, ms.value

    def decode_regions(
        self,
        maps: np.ndarray,
        masses,
        sigmas,
        normalize: bool = False,
        blur_sigma: float = 0.0,
        iters: int = 20,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """Probmap decode + credible regions (HostKernels.decode_regions on the GPU), with its time."""
        n, k, h, w = maps.shape
        src, in_half = self._input(maps)
        sig = np.ascontiguousarray(sigmas, dtype=np.float32)
        qs = np.ascontiguousarray(masses, dtype=np.float32).reshape(-1)
        kp, sc = np.empty((n, k, 2), np.float32), np.empty((n, k), np.float32)
        pix, ell = np.empty((n, k, qs.size), np.float32), np.empty((n, k, qs.size, 5), np.float32)
        ms = ctypes.c_float()
        rc = self.lib.dpg_decode_regions(
            src.ctypes.data, in_half, kp.ctypes.data, sc.ctypes.data, pix.ctypes.data, ell.ctypes.data,
            n, k, h, w, int(normalize), 1.0, sig.ctypes.data, qs.size, qs.ctypes.data, blur_sigma,
            iters, ctypes.byref(ms),
        )  # fmt: skip
        self._check(rc, "decode with regions")
        return kp, sc, pix, ell, ms.value

    def crops(
        self, frame: np.ndarray, affines: np.ndarray, out_hw: tuple[int, int], mean, std, iters: int = 20
    ) -> tuple[np.ndarray, float]:
        """The crop kernel (HostKernels.crops on the GPU), fp32 out, with its launch time."""
        img = np.ascontiguousarray(frame, dtype=np.uint8)
        aff = np.ascontiguousarray(affines, dtype=np.float64).reshape(-1, 2, 3)
        out = np.empty((len(aff), 3, *out_hw), np.float32)
        m32, s32 = np.ascontiguousarray(mean, np.float32), np.ascontiguousarray(std, np.float32)
        ms = ctypes.c_float()
        rc = self.lib.dpg_crops(
            img.ctypes.data, img.shape[0], img.shape[1], aff.ctypes.data, len(aff), out.ctypes.data, 0,
            out_hw[0], out_hw[1], m32.ctypes.data, s32.ctypes.data, iters, ctypes.byref(ms),
        )  # fmt: skip
        self._check(rc, "crops")
        return out, ms.value
