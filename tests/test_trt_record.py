"""build.trt.record on a real plan (the orin target's router: INT8 on DLA with an fp32 fallback): the
markers build_plan.sh leaves decide the precision, ONNX and placement recorded for each engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from build.trt.record import record_engines
from build.trt.targets import BuildOptions, engine_specs, get_target
from runtime.artifacts.manifest import sha256_file
from tools.device_check.tiny_artifacts import make_artifacts

LOG = (
    "[I] Selected Device: Orin\n[I] Compute Capability: 8.7\n[I] TensorRT version: 10.3.0\n"
    "[I] GPU Compute Time: min = 3.0 ms, max = 5.0 ms, mean = 4.1 ms, median = 4.0 ms\n"
)


def _built_plan(root: Path, marker: str | None) -> dict:
    """A manifest with the orin trt_plan, engines and logs as build_plan.sh leaves them."""
    manifest = make_artifacts(root, int8_router=True)
    specs = engine_specs(root, manifest, get_target("orin"), BuildOptions())
    manifest["trt_plan"] = {"target": "orin", "engines": {s.role: s.to_dict() for s in specs}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    for s in specs:
        (root / f"{s.role}.engine").write_text(f"engine {s.role}")
        (root / f"{s.role}.trtexec.log").write_text(LOG)
    if marker:
        (root / f"router.{marker}").write_text("")
    return manifest["trt_plan"]["engines"]["router"]


@pytest.mark.parametrize("marker", [None, "int8_failed", "dla_failed"])
def test_router_record_follows_build_plan_markers(tmp_path: Path, marker: str | None) -> None:
    spec = _built_plan(tmp_path, marker)
    rec = record_engines(tmp_path)["models"]["router"]["engine"]
    assert rec == json.loads((tmp_path / "router.engine.json").read_text())
    assert (rec["gpu"], rec["sm"], rec["trt_version"]) == ("Orin", "8.7", "10.3.0")
    assert rec["sha256"] == sha256_file(tmp_path / "router.engine")
    on_dla = marker is None
    assert rec["dla_core"] == (spec["dla_core"] if on_dla else None)
    assert rec["profiles"] == [spec["profile"] if on_dla else spec["gpu_profile"]]
    # not asserted for the fp32 fallback: it keeps the DLA profile's static_batch though built on the GPU
    if marker != "int8_failed":
        assert rec["static_batch"] == (spec["profile"]["max"] if on_dla else None)
    if marker == "int8_failed":
        assert (rec["precision"], rec["onnx"]) == ("fp32", spec["fallback_onnx"])
        assert rec["fallback"] == {
            "from": "int8",
            "to": "fp32",
            "onnx": spec["onnx"],
            "reason": "trtexec failed; see router.trtexec.log",
        }
    else:
        assert (rec["precision"], rec["onnx"]) == ("int8", spec["onnx"]) and "fallback" not in rec
    assert rec["onnx_sha256"] == sha256_file(tmp_path / rec["onnx"])
    assert rec["trtexec_timing"]["ms_per_batch"] == 4.0
    assert rec["trtexec_timing"]["batch"] == rec["profiles"][0]["opt"]
    assert [io["mode"] for io in rec["io"]].count("input") == 1
