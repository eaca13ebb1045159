"""Which TensorRT headers a plugin library was built with, checked before TensorRT loads it.

Why: from TensorRT 11 ``ILogger`` and ``ILoggerFinder`` derive from
``IVersionedInterface``, so their vtables differ from 10.x. A
``libdynpose_plugins.so`` built with 11.x headers segfaults under a 10.x runtime
at its first log call, and one built with 10.x headers under 11.x loses every
log line - and TensorRT itself loads either without a word. The library
therefore exports ``dynposeTrtHeaderVersion`` (kernels/plugin/plugin_registry.cpp),
and :func:`check_plugin_abi` compares it with the running TensorRT:

- the major version must be equal (the interfaces' layout is per major);
- the headers' minor must not be newer than the runtime's (a newer minor's
  plugin may use interface versions the older runtime does not have);
  an older minor runs, as NVIDIA keeps plugin interfaces stable within a major.

Reading it needs ``ctypes`` only (no ``tensorrt`` import), so the check runs
before ``load_library`` and in tests without TensorRT. Loading the library
with ctypes first is harmless: TensorRT's own ``dlopen`` gets the same handle.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path
from typing import NamedTuple

from runtime.backends.base import BackendError

SYMBOL = "dynposeTrtHeaderVersion"
REBUILD = (
    "cmake -S . -B _build -DTENSORRT_ROOT=<include dir of TensorRT {want}> && "
    "cmake --build _build -j && ctest --test-dir _build"
)


class PluginAbiError(BackendError):
    """The plugin library was built for another TensorRT ABI (or records none)."""


class TrtVersion(NamedTuple):
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_trt_version(text: str) -> TrtVersion:
    """``10.3.0`` / ``11.4.0.106`` (pip wheels add the build number) -> (major, minor, patch)."""
    m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not m:
        raise PluginAbiError(f"cannot read a TensorRT version from {text!r}")
    return TrtVersion(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def read_header_version(path: Path | str) -> TrtVersion:
    """The TensorRT version of the headers ``path`` was compiled against."""
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise PluginAbiError(
            f"cannot load plugin library {path} ({e}); build it on this device: "
            + REBUILD.format(want="of this device")
        ) from None
    fn = getattr(lib, SYMBOL, None)
    if fn is None:
        raise PluginAbiError(
            f"plugin library {path} records no TensorRT header version (built before the "
            f"ABI record); rebuild it: " + REBUILD.format(want="of this device")
        )
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.POINTER(ctypes.c_int32)] * 3
    major, minor, patch = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()
    fn(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch))
    return TrtVersion(major.value, minor.value, patch.value)


def abi_mismatch(built: TrtVersion, running: TrtVersion) -> str | None:
    """Why a library built with ``built`` headers must not load into ``running``; None if it may."""
    if built.major != running.major:
        return (
            f"built with TensorRT {built} headers, running TensorRT {running}: the plugin interfaces "
            f"(ILogger, ILoggerFinder) differ between major versions {built.major} and {running.major}"
        )
    if built.minor > running.minor:
        return (
            f"built with TensorRT {built} headers, newer than the running TensorRT {running}: "
            "rebuild against the headers of the TensorRT you run"
        )
    return None


def check_plugin_abi(path: Path | str, trt_version: str, role: str = "plugin") -> TrtVersion:
    """Refuse ``path`` unless its header version fits the running TensorRT; returns that version."""
    running = parse_trt_version(trt_version)
    built = read_header_version(path)
    why = abi_mismatch(built, running)
    if why:
        raise PluginAbiError(
            f"{role}: plugin library {path} was {why}; rebuild it: "
            + REBUILD.format(want=f"{running.major}.{running.minor}")
        )
    return built
