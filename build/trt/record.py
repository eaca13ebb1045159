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

from runtime.backends.trt import JETPACK_BY_L4T, read_l4t
from runtime.errors import EXIT_INPUT, register_expected
from runtime.manifest import save_manifest, sha256_file

from .compat import count_dla_layers


_PATTERNS = {"gpu": r"Selected Device:\s*(.+)", "sm": r"Compute Capability:\s*([\d.]+)",
             "trt_version": r"TensorRT version:\s*([\d.]+)"}


class TrtexecLogError(ValueError):
    """A trtexec log lacks a line the engine record needs (exit 2 at the CLI boundary)."""


register_expected(TrtexecLogError, EXIT_INPUT)


def parse_trtexec_log(text: str) -> dict[str, str]:
    """gpu / sm / trt_version from a trtexec log; a missing field is an error naming it."""
    found = {}
    for key, pat in _PATTERNS.items():
        m = re.search(pat, text)
        if not m:
            raise TrtexecLogError(f"trtexec log has no {pat.split(':')[0]!r} line; was the build run with this trtexec?")
        found[key] = m.group(1).strip()
    return found


def _onnx_io(path: Path) -> list[dict[str, Any]]:
    """I/O names of the built ONNX: a variant (fused decode) can differ from the fp32 net's."""
    import onnx
    g = onnx.load(str(path), load_external_data=False).graph
    init = {i.name for i in g.initializer}
    return [{"name": v.name, "mode": "input"} for v in g.input if v.name not in init] + \
        [{"name": v.name, "mode": "output"} for v in g.output]


def record_engines(root: Path) -> dict[str, Any]:
    """Update ``root/manifest.json`` from ``trt_plan`` + the trtexec logs; returns the manifest."""
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text())
    plan = manifest.get("trt_plan", {})
    l4t = read_l4t()
    for role, spec in plan.get("engines", {}).items():
        engine, logf = root / spec["engine"], root / f"{role}.trtexec.log"
        if not engine.is_file() or not logf.is_file():
            raise SystemExit(f"error: {engine.name} or {logf.name} missing in {root}; run build_plan.sh first")
        facts = parse_trtexec_log(logf.read_text(errors="replace"))
        onnx, precision, fallback = root / spec["onnx"], spec["precision"], None
        if (root / f"{role}.int8_failed").exists():  # build_plan.sh built the FP16/fp32 ONNX instead
            fallback = {"from": "int8", "to": spec["fallback_precision"], "onnx": onnx.name,
                        "reason": "trtexec failed; see " + logf.name}
            onnx, precision = root / spec["fallback_onnx"], spec["fallback_precision"]
        record = {"path": engine.name, "sha256": sha256_file(engine), "precision": precision,
                  "target": plan.get("target"),
                  **facts, "l4t": l4t, "jetpack": JETPACK_BY_L4T.get(l4t or ""),
                  "onnx": onnx.name, "onnx_sha256": sha256_file(onnx),
                  "profiles": [spec["profile"]], "dla_core": spec.get("dla_core"),
                  "workspace_mb": spec.get("workspace_mb"),
                  "builder_optimization_level": spec.get("opt_level"),
                  # build_plan.sh exports PLUGIN_LIB when it overrides the planned path
                  "plugin_library": (os.environ.get("PLUGIN_LIB") or spec.get("plugin_lib")) if spec.get("plugin_ops") else None,
                  "plugin_ops": spec.get("plugin_ops", []),
                  "built_with": "trtexec"}
        layers = root / f"{role}.layers.json"
        if (root / f"{role}.dla_failed").exists():  # build_plan.sh fell back to the GPU
            record["dla_core"], record["profiles"] = None, [spec["gpu_profile"]]
        elif record["dla_core"] is not None and layers.is_file():
            record["dla_layers"] = count_dla_layers(layers.read_text())
        prof = record["profiles"][0]
        record["static_batch"] = prof["max"] if prof["min"] == prof["max"] else None
        if fallback:
            record["fallback"] = fallback
            if precision == "fp32":   # fp32 never runs on DLA: the plan built it on the GPU
                record["dla_core"], record["profiles"] = None, [spec["gpu_profile"] or spec["profile"]]
        record["io"] = _onnx_io(onnx)
        manifest["models"][role]["engine"] = record
        (root / f"{role}.engine.json").write_text(json.dumps(record, indent=2) + "\n")
    save_manifest(root, manifest)   # atomic; engine sha256s let the runtime check them at load
    return manifest


def dla_placed(layers_json: Path) -> int:
    """Exit code for build_plan.sh: 0 layers on DLA, 1 none (rebuild on the GPU), 2 unknown."""
    try:
        n = count_dla_layers(Path(layers_json).read_text())
    except (OSError, ValueError) as e:
        print(f"note: cannot read DLA placement from {layers_json} ({e}); keeping the DLA engine", file=sys.stderr)
        return 2
    if n is None:
        print(f"note: {layers_json} has no per-layer detail; keeping the DLA engine", file=sys.stderr)
        return 2
    print(f"{Path(layers_json).name}: {n} layer(s) on DLA", file=sys.stderr)
    return 0 if n else 1


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--dla-layers":
        return dla_placed(Path(argv[1]))
    record_engines(Path(argv[0] if argv else "."))
    print("engine records written to manifest.json")
    return 0


if __name__ == "__main__":
    from runtime.errors import guarded
    sys.exit(guarded(main, prog="python3 -m build.trt.record"))
