"""Checkpoint import: MMPose layout round trip and the mismatch error text."""

from __future__ import annotations

import pytest
import torch

from build.checkpoint import CheckpointMismatch, load_strict, read_state_dict
from build.models import build_pose_net, build_router


def _mmpose_ckpt(model: torch.nn.Module, path, **extra) -> None:
    torch.save(
        {"meta": {"mmpose_version": "1.3.2", "epoch": 210}, "state_dict": model.state_dict(), **extra}, path
    )


def test_state_dict_round_trips_strictly(tmp_path):
    torch.manual_seed(1)
    src = build_pose_net("res50", "probmap").eval()
    _mmpose_ckpt(src, tmp_path / "res50.pth")
    torch.manual_seed(2)
    dst = build_pose_net("res50", "probmap").eval()
    info = load_strict(dst, tmp_path / "res50.pth", "small")
    assert info["source"] == "checkpoint" and len(info["sha256"]) == 64
    x = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        for a, b in zip(src(x), dst(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_ddp_prefix_and_model_key_are_accepted(tmp_path):
    r = build_router()
    torch.save({"model": {f"module.{k}": v for k, v in r.state_dict().items()}}, tmp_path / "r.pth")
    assert set(read_state_dict(tmp_path / "r.pth")) == set(r.state_dict())


def test_mismatch_error_lists_missing_unexpected_and_shapes(tmp_path):
    sd = build_pose_net("res50").state_dict()
    sd.pop("head.final_layer.bias")
    sd["head.extra.weight"] = torch.zeros(1)
    sd["head.final_layer.weight"] = torch.zeros(16, 256, 1, 1)
    for i in range(7):
        sd.pop(f"backbone.layer3.{i % 6}.conv1.weight", None)
    torch.save({"state_dict": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatch) as e:
        load_strict(build_pose_net("res50"), tmp_path / "bad.pth", "small")
    msg = str(e.value)
    assert "missing (7): backbone.layer3.0.conv1.weight" in msg and "(+2 more)" in msg
    assert "unexpected (1): head.extra.weight" in msg
    assert "wrong shape (1): head.final_layer.weight (16, 256, 1, 1) vs model (17, 256, 1, 1)" in msg
    assert "--config" in msg


def test_missing_file_and_non_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointMismatch, match="no state_dict"):
        read_state_dict(tmp_path / "list.pth")
