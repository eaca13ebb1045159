"""Fill manifest engine records after ``build_plan.sh`` built the engines with trtexec.

trtexec prints the device and TensorRT version in its log ("Selected Device:",
"Compute Capability:", "TensorRT version:"); with those plus /etc/nv_tegra_release
the record matches what the Python builder writes, so the runtime's machine
check works the same for both paths. Usage: ``python3 -m build.trt.record DIR``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from runtime.artifacts.manifest import save_manifest, sha256_file
from runtime.backends.trt import JETPACK_BY_L4T, read_l4t
from runtime.errors import EXIT_INPUT, InputError, register_expected

from .compat import count_dla_layers

_PATTERNS = {
    "gpu": r"Selected Device:\s*(.+)",
    "sm": r"Compute Capability:\s*([\d.]+)",
    "trt_version": r"TensorRT version:\s*([\d.]+)",
}


class TrtexecLogError(ValueError):
    """A trtexec log lacks a line the engine record needs (exit 2 at the CLI boundary)."""


register_expected(TrtexecLogError, EXIT_INPUT)


def parse_trtexec_log(text: str) -> dict[str, str]:
    """gpu / sm / trt_version from a trtexec log; a missing field is an error naming it."""
    found = {}
    for key, pat in _PATTERNS.items():
        m = re.search(pat, text)
        if not m:
            raise TrtexecLogError(
                f"trtexec log has no {pat.split(':')[0]!r} line; was the build run with this trtexec?"
            )
        found[key] = m.group(1).strip()
    return found


_GPU_TIME = re.compile(r"GPU Compute Time:.*?median = ([\d.]+) ms")
_INFER_BATCH = re.compile(r"Input inference shapes?\s*:\s*\S+?=(\d+)x")


def parse_trtexec_timing(text: str, planned_batch: int) -> dict[str, Any] | None:
    """trtexec's own timing of the engine it just built (it runs inference after the build, at the
    profile's opt shape unless ``--shapes`` says otherwise): the median "GPU Compute Time" of its
    performance summary, per crop. None when the log has no summary (``--skipInference``)."""
    m = _GPU_TIME.findall(text)
    if not m:
        return None
    b = _INFER_BATCH.search(text)
    batch = int(b.group(1)) if b else int(planned_batch)
    return {"batch": batch, "ms_per_batch": float(m[-1]), "ms_per_crop": float(m[-1]) / max(1, batch)}


def record_costs(manifest: dict[str, Any], timings: dict[str, dict[str, Any]]) -> None:
    """``routing.costs`` from trtexec's timings of router, small and large (build/costs.py layout),
    with the prediction and the warning when routing cannot pay on this device."""
    from build.costs import NET_ROLES, Costs, predict, routing_warning

    routing = manifest.get("routing") or {}
    if "large_fraction" not in routing or any(r not in timings for r in NET_ROLES):
        return
    f = float(routing["large_fraction"])
    ms = {r: timings[r]["ms_per_crop"] for r in NET_ROLES}
    c = Costs.of(ms)
    prec = "/".join(sorted({timings[r]["precision"] for r in NET_ROLES}))
    names = {r: manifest["models"][r].get("arch", r) for r in NET_ROLES}
    warning = routing_warning(c, f, prec, names)
    entry = {
        "backend": "trt",
        "precision": prec,
        "batch": {r: timings[r]["batch"] for r in NET_ROLES},
        "clock": "trtexec GPU compute time (median)",
        "ms_per_crop": ms,
        "source": "trtexec",
        "predicted_crops_per_s": {k: round(v, 2) for k, v in predict(c, f).items() if k != "dyn_ms_per_crop"},
    }
    costs = dict(routing.get("costs") or {})
    costs.update(
        {
            "measured": True,
            "backend_label": "TensorRT (trtexec)",
            "clock": entry["clock"],
            "shipped": prec,
            "entries": [e for e in costs.get("entries", []) if e.get("backend") != "trt"] + [entry],
            "routing_pays": warning is None,
            "warning": warning,
            "large_fraction": f,
            "p": routing.get("p"),
        }
    )
    routing["costs"] = costs
    pred = entry["predicted_crops_per_s"]
    print(
        f"routing costs (trtexec, {prec}): router {ms['router']:.3f}, small {ms['small']:.3f}, large "
        f"{ms['large']:.3f} ms/crop -> crops/s small {pred['small']:.0f}, large {pred['large']:.0f}, "
        f"dyn {pred['dyn']:.0f} (f = {f:.2f})"
    )
    if warning:
        print(warning, file=sys.stderr)


def _onnx_io(path: Path) -> list[dict[str, Any]]:
    """I/O names of the built ONNX: a variant (fused decode) can differ from the fp32 net's."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    init = {i.name for i in g.initializer}
    return [{"name": v.name, "mode": "input"} for v in g.input if v.name not in init] + [
        {"name": v.name, "mode": "output"} for v in g.output
    ]


def _read_plan(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and its trt_plan; refused before anything is touched when there is nothing to record
    (an empty plan would still say "written")."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(
            f"cannot read {root / 'manifest.json'} ({str(e).splitlines()[0][:120]})",
            "DIR",
            "pass the artifacts folder python -m build.engines wrote",
        ) from None
    plan = manifest.get("trt_plan") if isinstance(manifest, dict) else None
    if not isinstance(plan, dict) or not isinstance(plan.get("engines"), dict) or not plan["engines"]:
        raise InputError(
            f"{root / 'manifest.json'} has no trt_plan engines",
            "DIR",
            "pass the artifacts folder of a TensorRT target whose build_plan.sh ran",
        )
    return manifest, plan


def _int8_fallback(root: Path, role: str, spec: dict[str, Any]) -> tuple[Path, str, dict[str, Any] | None]:
    """(ONNX built, precision built, fallback note): build_plan.sh leaves ROLE.int8_failed when trtexec
    failed on the INT8 ONNX and it built the FP16/fp32 fallback instead."""
    onnx, precision = root / spec["onnx"], spec["precision"]
    if not (root / f"{role}.int8_failed").exists():
        return onnx, precision, None
    fallback = {
        "from": "int8",
        "to": spec["fallback_precision"],
        "onnx": onnx.name,
        "reason": "trtexec failed; see " + f"{role}.trtexec.log",
    }
    return root / spec["fallback_onnx"], spec["fallback_precision"], fallback


def _place(root: Path, role: str, spec: dict[str, Any], record: dict[str, Any]) -> None:
    """dla_core, profiles and static_batch as built: build_plan.sh leaves ROLE.dla_failed when it
    rebuilt on the GPU."""
    layers = root / f"{role}.layers.json"
    if (root / f"{role}.dla_failed").exists():
        record["dla_core"], record["profiles"] = None, [spec["gpu_profile"]]
    elif record["dla_core"] is not None and layers.is_file():
        record["dla_layers"] = count_dla_layers(layers.read_text())
    prof = record["profiles"][0]
    record["static_batch"] = prof["max"] if prof["min"] == prof["max"] else None


def _engine_record(
    root: Path, role: str, spec: dict[str, Any], target: Any, l4t: str | None, log_text: str
) -> dict[str, Any]:
    """One engine's manifest record, the same fields the Python builder writes."""
    facts = parse_trtexec_log(log_text)
    engine = root / spec["engine"]
    onnx, precision, fallback = _int8_fallback(root, role, spec)
    record = {
        "path": engine.name,
        "sha256": sha256_file(engine),
        "precision": precision,
        "target": target,
        **facts,
        "l4t": l4t,
        "jetpack": JETPACK_BY_L4T.get(l4t or ""),
        "onnx": onnx.name,
        "onnx_sha256": sha256_file(onnx),
        "profiles": [spec["profile"]],
        "dla_core": spec.get("dla_core"),
        "workspace_mb": spec.get("workspace_mb"),
        "builder_optimization_level": spec.get("opt_level"),
        # build_plan.sh exports PLUGIN_LIB when it overrides the planned path
        "plugin_library": (os.environ.get("PLUGIN_LIB") or spec.get("plugin_lib"))
        if spec.get("plugin_ops")
        else None,
        "plugin_ops": spec.get("plugin_ops", []),
        "built_with": "trtexec",
    }
    _place(root, role, spec, record)
    if fallback:
        record["fallback"] = fallback
        if precision == "fp32":  # fp32 never runs on DLA: the plan built it on the GPU
            record["dla_core"], record["profiles"] = None, [spec["gpu_profile"] or spec["profile"]]
    record["io"] = _onnx_io(onnx)
    timing = parse_trtexec_timing(log_text, record["profiles"][0]["opt"])
    if timing is not None:
        record["trtexec_timing"] = timing
    return record


def record_engines(root: Path) -> dict[str, Any]:
    """Update ``root/manifest.json`` from ``trt_plan`` + the trtexec logs; returns the manifest."""
    root = Path(root)
    manifest, plan = _read_plan(root)
    l4t = read_l4t()
    timings: dict[str, dict[str, Any]] = {}
    for role, spec in plan["engines"].items():
        engine, logf = root / spec["engine"], root / f"{role}.trtexec.log"
        if not engine.is_file() or not logf.is_file():
            raise SystemExit(
                f"error: {engine.name} or {logf.name} missing in {root}; run build_plan.sh first"
            )
        record = _engine_record(root, role, spec, plan.get("target"), l4t, logf.read_text(errors="replace"))
        if "trtexec_timing" in record:
            timings[role] = {**record["trtexec_timing"], "precision": record["precision"]}
        manifest["models"][role]["engine"] = record
        (root / f"{role}.engine.json").write_text(json.dumps(record, indent=2) + "\n")
    record_costs(manifest, timings)
    save_manifest(root, manifest)  # atomic; engine sha256s let the runtime check them at load
    return manifest


def dla_placed(layers_json: Path) -> int:
    """Exit code for build_plan.sh: 0 layers on DLA, 1 none (rebuild on the GPU), 2 unknown."""
    try:
        n = count_dla_layers(Path(layers_json).read_text())
    except (OSError, ValueError) as e:
        print(
            f"note: cannot read DLA placement from {layers_json} ({e}); keeping the DLA engine",
            file=sys.stderr,
        )
        return 2
    if n is None:
        print(f"note: {layers_json} has no per-layer detail; keeping the DLA engine", file=sys.stderr)
        return 2
    print(f"{Path(layers_json).name}: {n} layer(s) on DLA", file=sys.stderr)
    return 0 if n else 1


def main(argv: list[str]) -> int:
    from runtime.cli.args import OneLineParser, artifacts_dir
    from runtime.errors import InputError

    if argv[:1] == ["--dla-layers"]:  # build_plan.sh's call: exit 0 layers on DLA, 1 none, 2 unknown
        if len(argv) != 2:
            raise InputError(
                "--dla-layers takes one file",
                "--dla-layers",
                "python3 -m build.trt.record --dla-layers ROLE.layers.json",
            )
        return dla_placed(Path(argv[1]))
    p = OneLineParser(
        prog="python3 -m build.trt.record",
        description=__doc__.splitlines()[0],
        epilog="--dla-layers ROLE.layers.json: only report DLA placement (build_plan.sh): "
        "exit 0 layers on DLA, 1 none, 2 unknown",
    )
    p.add_argument(
        "dir",
        nargs="?",
        default=".",
        type=artifacts_dir,
        help="artifacts folder whose build_plan.sh ran (default: the current folder)",
    )
    record_engines(p.parse_args(argv).dir)
    print("engine records written to manifest.json")
    return 0


if __name__ == "__main__":
    from runtime.errors import guarded

    sys.exit(guarded(main, prog="python3 -m build.trt.record"))
