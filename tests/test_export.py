"""Export: ONNX Runtime matches torch, the I/O contract holds, the manifest is complete."""

from __future__ import annotations

import hashlib
import json

import onnx
import pytest
import torch

from build.artifacts import ROLES, build_network, export_role
from build.configs import get_config

CONTRACT = {
    "heatmap": {"heatmaps": ["N", 17, 64, 48]},
    "probmap": {
        "probmaps": ["N", 17, 64, 48],
        "presence": ["N", 17],
        "visibility": ["N", 17],
        "oks": ["N", 17],
    },
    "score": {"score": ["N", 1]},
}
FAST = {("dyn-r50-h32", "router"), ("dyn-r50-h32", "small")}
CASES = [
    pytest.param(c, r, marks=() if (c, r) in FAST else pytest.mark.slow, id=f"{c}-{r}")
    for c in ("dyn-r50-h32", "dyn-r50-probpose")
    for r in ROLES
]


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
        if role != "router":  # --fuse-decode: the TensorRT-only variant with the decode plugin
            v = m["models"][role]["variants"]["plugin"]
            fused = onnx.load(str(cpu_artifacts / v["onnx"]))
            assert any(n.op_type == "DynPoseDecode" for n in fused.graph.node)
            assert {"keypoints", "keypoint_scores"} <= set(v["outputs"])
    r = m["routing"]
    assert 0 <= r["k1"] <= r["k2"] <= 1 and r["n_calib"] == 118
    assert m["models"]["router"]["gmacs"] < 0.03 * 5.45


# -- parity tolerance (issue 19): NaN fails, the tolerance is relative to each output's scale ---------
class _Tiny(torch.nn.Module):
    """A 1x1 conv net with one output; ``gain`` scales it, ``nan`` makes it log(-1)."""

    def __init__(self, gain: float = 1.0, nan: bool = False, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.gain, self.nan = gain, nan

    def forward(self, x):
        y = self.conv(x) * self.gain
        return (torch.log(-torch.abs(y) - 1.0) if self.nan else y,)


def _export_tiny(model, tmp_path):
    from build.export import export_onnx

    return export_onnx(model, tmp_path / "tiny.onnx", ["out"])


def test_parity_nan_output_fails_with_one_clear_line(tmp_path):
    from build.export import ParityError, parity

    model = _Tiny(nan=True)
    path = _export_tiny(model, tmp_path)
    with pytest.raises(ParityError) as e:
        parity(model, path, batches=(1,))
    line = str(e.value)
    assert "\n" not in line and "NaN" in line and "tiny.onnx" in line and "checkpoint" in line


def test_parity_tolerance_is_relative_to_the_output_scale(tmp_path):
    from build.export import PARITY_RTOL, ParityError, parity

    big = _Tiny(gain=1e6)  # float32 reassociation error ~1e-1 absolute: passes relatively
    err = parity(big, _export_tiny(big, tmp_path), batches=(1,))
    assert 0 < err["out"] < PARITY_RTOL * 1e6
    exported = _Tiny(seed=0)
    path = _export_tiny(exported, tmp_path)
    other = _Tiny(seed=1)  # another model than the one in the ONNX: must fail
    with pytest.raises(ParityError, match=r"output out differs by .*tolerance"):
        parity(other, path, batches=(1,))
    assert parity(exported, path, batches=(1, 3))["out"] <= 1e-5


def test_probpose_config_puts_the_probmap_head_on_the_large_net():
    """No MMPose checkpoint gives ResNet-50 a probability-map head: the small net keeps its heatmap
    head (real SimpleBaseline checkpoints load), ProbPose-s is the large net, heads mixed."""
    cfg = get_config("dyn-r50-probpose")
    assert (cfg.small.arch, cfg.small.head) == ("res50", "heatmap")
    assert (cfg.large.arch, cfg.large.head) == ("probpose-s", "probmap")
    assert build_network(cfg, "small").head_kind == "heatmap"
