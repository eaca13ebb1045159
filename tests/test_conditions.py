"""bench.conditions on this machine and on generated Jetson / dGPU file systems."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime
import pytest

from bench.conditions import (
    collect_conditions,
    cpu_model,
    format_conditions,
    gpu_model,
    jetson_clocks_on,
    machine_kind,
    nvpmodel_mode,
)

NVPMODEL_Q = "NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n"


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


@pytest.fixture
def jetson_root(tmp_path: Path) -> Path:
    """An AGX Orin's files as jetson_clocks leaves them: every CPU and the GPU pinned to max."""
    cpuinfo = "".join(
        f"processor\t: {i}\nBogoMIPS\t: 62.50\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n\n"
        for i in range(12)
    )
    _write(tmp_path, "proc/cpuinfo", cpuinfo)
    _write(tmp_path, "proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\x00")
    _write(
        tmp_path,
        "etc/nv_tegra_release",
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n",
    )
    for i in range(12):
        _write(tmp_path, f"sys/devices/system/cpu/cpu{i}/cpufreq/scaling_min_freq", "2201600\n")
        _write(tmp_path, f"sys/devices/system/cpu/cpu{i}/cpufreq/scaling_max_freq", "2201600\n")
    _write(tmp_path, "sys/class/devfreq/17000000.ga10b/min_freq", "1300500000\n")
    _write(tmp_path, "sys/class/devfreq/17000000.ga10b/max_freq", "1300500000\n")
    _write(tmp_path, "sys/class/devfreq/15380000.nvdla0/min_freq", "115200000\n")  # not the GPU: ignored
    _write(tmp_path, "sys/class/devfreq/15380000.nvdla0/max_freq", "1600000000\n")
    return tmp_path


def fake_run(outputs: dict[str, str]):
    def run(cmd):
        return outputs.get(cmd[0])

    return run


def test_this_machine_is_recorded_as_it_is():
    cond = collect_conditions(backend="ort", precision="fp32", batch=32, threads=2)
    names = [
        ln.split(":", 1)[1].strip()
        for ln in Path("/proc/cpuinfo").read_text().splitlines()
        if ln.lower().startswith("model name")
    ]
    if names:
        assert cond["cpu_model"] == names[0]
    assert cond["onnxruntime"] == onnxruntime.__version__
    assert (cond["backend"], cond["precision"], cond["batch"], cond["threads"]) == ("ort", "fp32", 32, 2)
    assert json.loads(json.dumps(cond)) == cond  # goes into pytest-benchmark's extra_info as is
    assert "- backend: ort" in format_conditions(cond)


def test_jetson_power_mode_clocks_and_models(jetson_root: Path):
    run = fake_run({"nvpmodel": NVPMODEL_Q})
    cond = collect_conditions(backend="trt", precision="int8", batch=8, root=jetson_root, run=run)
    assert cond["gpu_model"] == cond["jetson_model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert cond["cpu_model"] == "NVIDIA Jetson AGX Orin Developer Kit (12 cores)"
    assert cond["nvpmodel_mode"] == "MAXN (0)"
    assert cond["jetson_clocks"] is True
    assert cond["l4t"] == "R36.4.3"


def test_jetson_clocks_off_when_any_clock_floats(jetson_root: Path):
    _write(jetson_root, "sys/devices/system/cpu/cpu5/cpufreq/scaling_min_freq", "115200\n")
    assert jetson_clocks_on(jetson_root) is False
    _write(jetson_root, "sys/devices/system/cpu/cpu5/cpufreq/scaling_min_freq", "2201600\n")
    _write(jetson_root, "sys/class/devfreq/17000000.ga10b/min_freq", "306000000\n")
    assert jetson_clocks_on(jetson_root) is False


def test_power_mode_changes_the_machine_kind(jetson_root: Path):
    maxn = collect_conditions(root=jetson_root, run=fake_run({"nvpmodel": NVPMODEL_Q}))
    w15 = collect_conditions(root=jetson_root, run=fake_run({"nvpmodel": "NV Power Mode: 15W\n1\n"}))
    assert w15["nvpmodel_mode"] == "15W (1)"
    assert machine_kind(maxn) != machine_kind(w15)
    assert machine_kind(maxn) == machine_kind(dict(maxn, onnxruntime="other", loadavg_1m=99))


def test_dgpu_from_nvidia_smi_and_missing_tools(tmp_path: Path):
    _write(tmp_path, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n")
    run = fake_run({"nvidia-smi": "NVIDIA A100-SXM4-40GB\nNVIDIA A100-SXM4-40GB\n"})
    assert gpu_model(tmp_path, run) == "NVIDIA A100-SXM4-40GB"
    assert cpu_model(tmp_path) == "Intel(R) Xeon(R) Gold 6338"
    none = fake_run({})
    cond = collect_conditions(root=tmp_path, run=none)
    assert cond["gpu_model"] is None and cond["nvpmodel_mode"] is None and cond["jetson_clocks"] is None
    assert nvpmodel_mode(none) is None
