"""TensorRT rules the runtime needs as well as the builder (which re-exports them from
:mod:`build.trt.compat`): engine version compatibility and TensorRT's error recorder.

They live here, not in ``build/``, because ``runtime/`` must run on a device that has
only numpy, OpenCV and an inference engine (tests/test_layering.py); the builder imports
them from here so each rule exists once.
"""

from __future__ import annotations

import re
import threading
from typing import Any

# An engine is tied to the TensorRT release that built it: "By default, TensorRT engines
# are compatible only with the version of TensorRT with which they were built" (TensorRT
# developer guide, "Version Compatibility"; the opt-in BuilderFlag.VERSION_COMPATIBLE is
# not used here). A release is MAJOR.MINOR.PATCH: trtexec prints it from its headers
# (NV_TENSORRT_MAJOR/MINOR/PATCH), pip wheels add the build number (11.4.0.106) and
# JetPack's python3-libnvinfer reports 10.3.0.30. The build number never changes the
# engine format, so releases compare on their first three parts.
RELEASE_PARTS = 3


def trt_release(version: str | None) -> tuple[int, ...] | None:
    """(major, minor, patch) of a TensorRT version string; None when it has no number.

    "10.3" reads as (10, 3, 0): a version printed without its patch is the .0 release.
    """
    if not version:
        return None
    nums = [int(x) for x in re.findall(r"\d+", str(version))[:RELEASE_PARTS]]
    if not nums:
        return None
    return tuple(nums + [0] * (RELEASE_PARTS - len(nums)))


def same_trt_release(built: str | None, running: str | None) -> bool:
    """True when an engine built by TensorRT ``built`` deserialises under ``running``."""
    a, b = trt_release(built), trt_release(running)
    return a is not None and a == b


def make_error_recorder(trt: Any) -> Any:
    """An ``IErrorRecorder`` that keeps TensorRT's own error messages for our error lines.

    Without one, a failed build or deserialisation only says "failed"; TensorRT reports
    the reason (unsupported layer, DLA constraint, out of memory) to the recorder. The
    class is made per ``tensorrt`` module because it must subclass that module's
    ``IErrorRecorder`` (a pybind trampoline); TensorRT may call it from its own threads,
    hence the lock.
    """

    class ErrorRecorder(trt.IErrorRecorder):  # type: ignore[misc]  # tensorrt is untyped
        CAPACITY = 64

        def __init__(self) -> None:
            trt.IErrorRecorder.__init__(self)
            self._errors: list[tuple[Any, str]] = []
            self._overflow = False
            self._lock = threading.Lock()

        def report_error(self, code: Any, desc: str) -> bool:
            with self._lock:
                if len(self._errors) >= self.CAPACITY:
                    self._overflow = True
                else:
                    self._errors.append((code, str(desc)))
            return False  # False: TensorRT goes on; the caller decides what a failure means

        def num_errors(self) -> int:
            return len(self._errors)

        def get_error_code(self, index: int) -> Any:
            return self._errors[index][0]

        def get_error_desc(self, index: int) -> str:
            return self._errors[index][1]

        def has_overflowed(self) -> bool:
            return self._overflow

        def clear(self) -> None:
            with self._lock:
                self._errors.clear()
                self._overflow = False

        def summary(self, limit: int = 3) -> str:
            """The last ``limit`` messages on one line ('' when TensorRT reported nothing)."""
            msgs = [" ".join(d.split()) for _, d in self._errors[-limit:]]
            return "; ".join(msgs) + (" (more errors dropped)" if self._overflow else "")

    return ErrorRecorder()
