"""The conditions a throughput number was measured under.

An FPS figure means nothing without the machine, the software versions and,
on a Jetson, the power mode: the same Orin runs several times slower in a
15 W nvpmodel mode with dynamic clocks than in MAXN with ``jetson_clocks``.
:func:`collect_conditions` gathers all of that into one flat JSON-ready dict
that goes into every benchmark's ``extra_info`` and under every report table,
and :func:`machine_kind` is the part that decides whether two runs may be
compared in absolute terms (bench/gates.py).

Every probe reads files below ``root`` and runs commands through ``run`` so a
test can point them at a fake Jetson file system; a probe that finds nothing
returns None, never raises: missing hardware is a condition, not an error.

CLI: ``python -m bench.conditions [--backend ort --precision fp32 --batch 32]``
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Runner = Callable[[Sequence[str]], "str | None"]

# Fields that make two runs the same "machine kind" for absolute FPS gates.
MACHINE_KIND_KEYS = ("cpu_model", "gpu_model", "nvpmodel_mode", "jetson_clocks")


def run_command(cmd: Sequence[str], timeout: float = 5.0) -> str | None:
    """stdout of ``cmd``, or None when it is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel.lstrip("/")).read_text(errors="replace")
    except OSError:
        return None


def cpu_model(root: Path = Path("/")) -> str | None:
    """``model name`` from /proc/cpuinfo (x86); on ARM, where that line is absent,
    the SoC's device-tree model plus the core count so Orin AGX and Orin NX differ."""
    info = _read(root, "/proc/cpuinfo") or ""
    for line in info.splitlines():
        key, _, val = line.partition(":")
        if key.strip().lower() in ("model name", "cpu model", "processor name") and val.strip():
            if not val.strip().isdigit():
                return val.strip()
    cores = sum(1 for line in info.splitlines() if line.split(":")[0].strip() == "processor")
    parts = [
        line.partition(":")[2].strip()
        for line in info.splitlines()
        if line.split(":")[0].strip() in ("CPU implementer", "CPU part")
    ][:2]
    dt = jetson_model(root)
    if dt or parts:
        name = dt or "ARM " + " ".join(parts)
        return f"{name} ({cores} cores)" if cores else name
    return platform.processor() or None


def jetson_model(root: Path = Path("/")) -> str | None:
    """/proc/device-tree/model (NUL-terminated), e.g. 'NVIDIA Jetson AGX Orin Developer Kit'."""
    raw = _read(root, "/proc/device-tree/model")
    if raw is None:
        return None
    return raw.replace("\x00", "").strip() or None


def l4t_release(root: Path = Path("/")) -> str | None:
    """'R36.4.3' from /etc/nv_tegra_release ('# R36 (release), REVISION: 4.3, ...')."""
    raw = _read(root, "/etc/nv_tegra_release")
    if not raw:
        return None
    head = raw.splitlines()[0]
    major = head.split("(")[0].replace("#", "").strip()
    rev = head.split("REVISION:")[1].split(",")[0].strip() if "REVISION:" in head else ""
    return f"{major}.{rev}" if rev else major


def gpu_model(root: Path = Path("/"), run: Runner = run_command) -> str | None:
    """nvidia-smi's name on a dGPU; the Jetson module's name on a Jetson (integrated GPU)."""
    out = run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    if out and out.strip():
        return ", ".join(sorted({x.strip() for x in out.strip().splitlines()}))
    return jetson_model(root)


def nvpmodel_mode(run: Runner = run_command) -> str | None:
    """'MAXN (0)' from ``nvpmodel -q`` ('NV Power Mode: MAXN' then the mode id)."""
    out = run(["nvpmodel", "-q"])
    if not out:
        return None
    name, mode_id = None, None
    for line in out.splitlines():
        if "Power Mode" in line and ":" in line:
            name = line.split(":", 1)[1].strip()
        elif line.strip().isdigit():
            mode_id = line.strip()
    if name is None:
        return None
    return f"{name} ({mode_id})" if mode_id is not None else name


def _int_file(root: Path, rel: str) -> int | None:
    raw = _read(root, rel)
    try:
        return int(raw.strip()) if raw else None
    except ValueError:
        return None


def jetson_clocks_on(root: Path = Path("/")) -> bool | None:
    """Whether jetson_clocks pinned the clocks; None off a Jetson.

    ``jetson_clocks --show`` needs root, so read what it changes instead: it
    sets every online CPU's scaling_min_freq to its max and the GPU devfreq's
    min_freq to its max. Pinned CPU and GPU (where a GPU devfreq exists) = on.
    """
    if jetson_model(root) is None:
        return None
    cpus = sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))
    pinned = []
    for c in cpus:
        lo, hi = _int_file(c, "scaling_min_freq"), _int_file(c, "scaling_max_freq")
        if lo is not None and hi is not None:
            pinned.append(lo == hi)
    for dev in sorted((root / "sys/class/devfreq").glob("*")):
        name = (_read(dev, "name") or "") + dev.name
        if "gpu" in name.lower() or "ga10b" in name or "gv11b" in name:
            lo, hi = _int_file(dev, "min_freq"), _int_file(dev, "max_freq")
            if lo is not None and hi is not None:
                pinned.append(lo == hi)
    return all(pinned) if pinned else None


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def tensorrt_version() -> str | None:
    """The installed TensorRT Python package (wheel metadata first, then the module on
    JetPack, whose apt-installed bindings may carry no metadata)."""
    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_lean"):
        v = _version(dist)
        if v:
            return v
    if "tensorrt" in sys.modules or _find("tensorrt"):
        try:
            import tensorrt  # noqa: PLC0415 - optional, only to read its version

            return str(tensorrt.__version__)
        except Exception:  # noqa: BLE001 - stub libraries or a broken install: no usable TensorRT
            return None
    return None


def _find(mod: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def onnxruntime_info() -> tuple[str | None, list[str]]:
    if not _find("onnxruntime"):
        return None, []
    import onnxruntime as ort

    return str(ort.__version__), list(ort.get_available_providers())


def collect_conditions(
    backend: str | None = None,
    precision: str | None = None,
    batch: int | None = None,
    root: Path = Path("/"),
    run: Runner = run_command,
    **extra: Any,
) -> dict[str, Any]:
    """One flat dict of everything a benchmark number depends on (JSON-ready).

    ``backend``/``precision``/``batch`` describe the run itself; ``extra``
    (threads, config, weights ...) is stored as given.
    """
    ort_version, ort_providers = onnxruntime_info()
    jet = jetson_model(root)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    cond: dict[str, Any] = {
        "cpu_model": cpu_model(root),
        "cpu_count": os.cpu_count(),
        "gpu_model": gpu_model(root, run),
        "jetson_model": jet,
        "l4t": l4t_release(root),
        "nvpmodel_mode": nvpmodel_mode(run) if jet else None,
        "jetson_clocks": jetson_clocks_on(root),
        "tensorrt": tensorrt_version(),
        "onnxruntime": ort_version,
        "onnxruntime_providers": ort_providers,
        "numpy": _version("numpy"),
        "opencv": _version("opencv-python-headless") or _version("opencv-python"),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "backend": backend,
        "precision": precision,
        "batch": batch,
        # Other work on the machine distorts absolute numbers; keep the evidence.
        "loadavg_1m": round(load[0], 2) if load else None,
    }
    cond.update(extra)
    return cond


def machine_kind(conditions: dict[str, Any]) -> dict[str, Any]:
    """The subset that must match for absolute FPS to be comparable (see MACHINE_KIND_KEYS)."""
    return {k: conditions.get(k) for k in MACHINE_KIND_KEYS}


def format_conditions(conditions: dict[str, Any]) -> str:
    """Markdown bullet list for reports (None values left out)."""
    lines = []
    for k, v in conditions.items():
        if v is None or v == [] or v == "":
            continue
        if isinstance(v, list):
            v = ", ".join(map(str, v))
        lines.append(f"- {k}: {v}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from runtime.errors import guarded

    return guarded(_main, argv, prog="python -m bench.conditions")


def _main(argv: Sequence[str]) -> int:
    from runtime.cli.args import OneLineParser, positive_int

    ap = OneLineParser(prog="python -m bench.conditions", description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None, help="the backend the recorded run used")
    ap.add_argument(
        "--precision", default=None, help="the variant the recorded run used (fp32, int8_cpu, ...)"
    )
    ap.add_argument("--batch", type=positive_int, default=None)
    ap.add_argument("--markdown", action="store_true", help="print a bullet list instead of JSON")
    a = ap.parse_args(argv)
    cond = collect_conditions(a.backend, a.precision, a.batch)
    print(format_conditions(cond) if a.markdown else json.dumps(cond, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
