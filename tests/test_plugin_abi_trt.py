"""The ABI check inside load_plugin_library, on the real TensorRT 10.3 / 11.4 bindings (harness).

Runtime and builder both load the plugin through runtime.backends.trt.load_plugin_library,
so a library built for the other major is refused there, before TensorRT's load_library
is ever called, with the rebuild command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.backends.plugin_abi import PluginAbiError, parse_trt_version
from runtime.backends.trt import load_plugin_library
from tests.abi_stub import write_abi_stub

pytestmark = pytest.mark.trt


def _loads(world) -> list:
    return [a for c, m, a, _ in world.calls if (c, m) == ("IPluginRegistry", "load_library")]


def test_other_major_refused_before_tensorrt_loads_it(trt_world, tmp_path: Path) -> None:
    running = parse_trt_version(trt_world.trt.__version__)
    other = "11.1.0" if running.major == 10 else "10.3.0"
    lib = write_abi_stub(tmp_path / "libdynpose_plugins.so", other)
    with pytest.raises(
        PluginAbiError,
        match=rf"large: .*major versions .*rebuild it: cmake .*TensorRT "
        rf"{running.major}\.{running.minor}",
    ):
        load_plugin_library(trt_world.trt, lib, "large")
    assert _loads(trt_world) == []


def test_same_major_loads(trt_world, tmp_path: Path) -> None:
    running = parse_trt_version(trt_world.trt.__version__)
    lib = write_abi_stub(tmp_path / "same.so", f"{running.major}.{running.minor}.0")
    load_plugin_library(trt_world.trt, lib, "large")
    assert _loads(trt_world) == [(str(lib),)]
