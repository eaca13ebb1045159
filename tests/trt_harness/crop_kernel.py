"""The crop kernel's own source (kernels/dynpose_crop.cuh, built for the host) as the TensorRT
backend's crop launcher on the harness: each launch is queued on the fake CUDA stream and writes
the fake device memory only when that stream runs, so a missing frame event, a frame buffer
reused too early or a net that reads its input before the crops land gives wrong numbers."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np

from kernels.host_build import HostKernels
from tests.trt_harness import fake_cuda


def host_crop_launcher(hk: HostKernels, calls: list[tuple[int, int]]) -> Callable[..., int]:
    """A ``CropLauncher`` running ``hk``'s crop kernel; every launch appends (stream, n) to ``calls``."""
    gpu = fake_cuda.GPU

    def launch(frame, fh, fw, aff, n, out, half, h, w, mean_p, std_p, stream) -> int:  # noqa: ANN001
        mean = np.array((ctypes.c_float * 3).from_address(mean_p))  # host pointers: read at launch
        std = np.array((ctypes.c_float * 3).from_address(std_p))
        calls.append((stream, n))

        def run() -> None:
            img = gpu.locate(frame, fh * fw * 3).reshape(fh, fw, 3)
            mats = gpu.locate(aff, n * 48).view(np.float64).reshape(n, 2, 3)
            crops = hk.crops(img, mats, (h, w), mean, std, half=half)
            gpu.locate(out, crops.nbytes)[:] = crops.reshape(-1).view(np.uint8)

        gpu.enqueue(stream, "kernel", "crops", run)
        return 0

    return launch
