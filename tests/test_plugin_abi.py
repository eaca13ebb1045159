"""The plugin library's ABI record and the check the runtime and builder make before loading it.

Unit tests use real shared libraries compiled here (gcc stubs exporting the record);
the ``cuda`` test builds the real libdynpose_plugins.so against the TensorRT 10.3 and
11.1 headers in ../shared and reads the record of each.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kernels.plugin_build import SHARED_TRT_HEADERS, build_plugin_lib
from runtime.backends.base import BackendError
from runtime.backends.plugin_abi import (
    PluginAbiError,
    TrtVersion,
    abi_mismatch,
    check_plugin_abi,
    parse_trt_version,
    read_header_version,
)
from tests.abi_stub import write_abi_stub


def test_versions_parse_with_or_without_build_number():
    assert parse_trt_version("10.3.0") == TrtVersion(10, 3, 0)
    assert parse_trt_version("11.4.0.106") == TrtVersion(11, 4, 0)
    assert parse_trt_version("10.16") == TrtVersion(10, 16, 0)
    with pytest.raises(PluginAbiError, match="cannot read a TensorRT version"):
        parse_trt_version("")


@pytest.mark.parametrize(
    "built, running, ok",
    [
        ("10.3.0", "10.3.0", True),
        ("10.3.0", "10.16.1", True),
        ("11.1.0", "11.4.0.106", True),
        ("11.1.0", "10.3.0", False),
        ("10.3.0", "11.4.0", False),
        ("10.16.0", "10.3.0", False),
    ],
)
def test_mismatch_rule(built, running, ok):
    why = abi_mismatch(parse_trt_version(built), parse_trt_version(running))
    assert (why is None) == ok, why


def test_check_reads_a_real_library_and_refuses_with_the_rebuild_command(tmp_path: Path):
    lib = write_abi_stub(tmp_path / "lib10.so", "10.3.0")
    assert read_header_version(lib) == TrtVersion(10, 3, 0)
    assert check_plugin_abi(lib, "10.3.0") == TrtVersion(10, 3, 0)
    with pytest.raises(PluginAbiError) as e:
        check_plugin_abi(lib, "11.4.0.106", role="large")
    msg = str(e.value)
    assert msg.startswith("large: plugin library") and "major versions 10 and 11" in msg
    assert "-DTENSORRT_ROOT=<include dir of TensorRT 11.4>" in msg and "cmake --build _build" in msg
    assert isinstance(e.value, BackendError)  # the backends' one-line error class


def test_library_without_record_or_not_a_library(tmp_path: Path):
    old = write_abi_stub(tmp_path / "old.so", None)
    with pytest.raises(PluginAbiError, match="records no TensorRT header version.*rebuild it: cmake"):
        check_plugin_abi(old, "10.3.0")
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"\x7fELF")
    with pytest.raises(PluginAbiError, match="cannot load plugin library .*junk.so"):
        check_plugin_abi(junk, "10.3.0")


@pytest.mark.cuda
@pytest.mark.parametrize(
    "headers, version", [("10.3.0", TrtVersion(10, 3, 0)), ("11.1", TrtVersion(11, 1, 0))]
)
def test_real_plugin_library_records_its_headers(headers, version):
    include = SHARED_TRT_HEADERS / headers / "include"
    assert include.is_dir(), f"TensorRT {headers} headers missing at {include} (../shared/third_party)"
    lib = build_plugin_lib(include, arch="87")
    assert read_header_version(lib) == version
    same = f"{version.major}.{version.minor + 3}.0"
    assert check_plugin_abi(lib, same) == version  # same major, newer runtime minor: runs
    other = "11.4.0.106" if version.major == 10 else "10.3.0"
    with pytest.raises(PluginAbiError, match="differ between major versions"):
        check_plugin_abi(lib, other)
