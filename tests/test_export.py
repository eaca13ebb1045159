"""Export: ONNX Runtime matches torch, the I/O contract holds, the manifest is complete."""
from __future__ import annotations

import hashlib
import json

import onnx
import pytest
import torch

from build.artifacts import ROLES, build_network, export_role
from build.configs import get_config

CONTRACT = {"heatmap": {"heatmaps": ["N", 17, 64, 48]},
            "probmap": {"probmaps": ["N", 17, 64, 48], "presence": ["N", 17],
                        "visibility": ["N", 17], "oks": ["N", 17]},
            "score": {"score": ["N", 1]}}
FAST = {("dyn-r50-h32", "router"), ("dyn-r50-h32", "small")}
CASES = [pytest.param(c, r, marks=() if (c, r) in FAST else pytest.mark.slow, id=f"{c}-{r}")
         for c in ("dyn-r50-h32", "dyn-r50-probpose") for r in ROLES]


@pytest.mark.parametrize("config,role", CASES)
def test_onnx_matches_torch_at_n1_and_n7(config, role, tmp_path):
    torch.manual_seed(0)
    model = build_network(get_config(config), role).eval()
    entry = export_role(model, tmp_path, role, parity_batches=(1, 7))
    head = model.head_kind
    assert {o["name"]: o["shape"] for o in entry["outputs"]} == CONTRACT[head]
    assert entry["inputs"] == [{"name": "input", "shape": ["N", 3, 256, 192], "dtype": "float32"}]
    assert set(entry["parity_max_abs_err"]) == set(CONTRACT[head])
    assert max(entry["parity_max_abs_err"].values()) <= 1e-4, entry["parity_max_abs_err"]
    assert onnx.load(str(tmp_path / entry["onnx"])).opset_import[0].version == 17


def test_manifest_has_every_field(cpu_artifacts):
    m = json.loads((cpu_artifacts / "manifest.json").read_text())
    assert m["schema_version"] == 1 and m["target"] == "cpu" and m["config"]
    assert m["weights"] in ("random", "checkpoint", "fixture", "mixed")
    for role in ROLES:
        e = m["models"][role]
        path = cpu_artifacts / e["onnx"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e["sha256"]
        assert e["opset"] == 17 and e["gmacs"] > 0 and e["params_m"] > 0
        assert e["inputs"][0]["name"] == "input" and e["inputs"][0]["shape"][0] == "N"
        assert {o["name"] for o in e["outputs"]} == set(CONTRACT[e["head"]])
        assert max(e["parity_max_abs_err"].values()) <= 1e-4
        w = e["weights"]
        assert w["source"] in ("random", "checkpoint")
        assert (w["sha256"] is None) == (w["source"] == "random")
        if role != "router":   # --fuse-decode: the TensorRT-only variant with the decode plugin
            v = m["models"][role]["variants"]["plugin"]
            fused = onnx.load(str(cpu_artifacts / v["onnx"]))
            assert any(n.op_type == "DynPoseDecode" for n in fused.graph.node)
            assert {"keypoints", "keypoint_scores"} <= set(v["outputs"])
    r = m["routing"]
    assert 0 <= r["k1"] <= r["k2"] <= 1 and r["n_calib"] == 118
    assert m["models"]["router"]["gmacs"] < 0.03 * 5.45
