"""Fixture nets, the training data path, the losses, one training step, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from build.checkpoint import load_strict
from build.models import build_pose_net
from build.models.fixture_nets import FIXTURE_ARCHS
from build.synth import make_scene
from build.train.data import SceneStream, in_window, scene_crops
from build.train.losses import gaussian_targets, heatmap_mse, oks_maps, probpose_loss
from build.train.trainer import save_checkpoint, train_step
from runtime.heads.grid import heatmap_to_image
from runtime.pose.preprocess import boxes_to_center_scale


@pytest.mark.parametrize("arch", sorted(FIXTURE_ARCHS))
@pytest.mark.parametrize("head", ["heatmap", "probmap"])
def test_fixture_nets_keep_the_contract(arch: str, head: str) -> None:
    net = build_pose_net(arch, head).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 256, 192))
    assert out[0].shape == (2, 17, 64, 48)
    if head == "probmap":
        assert [o.shape for o in out[1:]] == [(2, 17)] * 3
        assert torch.allclose(out[0].sum(dim=(2, 3)), torch.ones(2, 17), atol=1e-4)
    assert all(k.startswith(("backbone.", "head.")) for k in net.state_dict())


def test_training_targets_map_back_to_the_image_keypoints() -> None:
    """Crops come from runtime.pose.preprocess; their targets invert to the scene's keypoints."""
    scene = make_scene(np.random.default_rng(4), [])
    crops, t = scene_crops(scene)
    keep = np.flatnonzero(scene.source >= 0)
    centers, scales = boxes_to_center_scale(scene.boxes[keep])
    back = heatmap_to_image(t.xy, centers, scales)
    kp = np.stack([scene.people[i].keypoints[:, :2] for i in scene.source[keep]])
    np.testing.assert_allclose(back, kp, atol=1e-2)
    assert crops.shape == (len(keep), 3, 256, 192) and crops.dtype == np.float32
    assert (t.inside <= t.known).all() and (t.inside == (in_window(t.xy) & t.known)).all()


def test_losses_prefer_the_right_answer() -> None:
    xy = torch.tensor([[[20.0, 30.0]] * 17])
    area = torch.tensor([400.0])
    w = torch.ones(1, 17, dtype=torch.bool)
    tgt = gaussian_targets(xy)
    assert tgt[0, 0, 30, 20] == pytest.approx(1.0)
    assert heatmap_mse(tgt, xy, w) == pytest.approx(0.0, abs=1e-6)
    assert heatmap_mse(torch.zeros_like(tgt), xy, w) > 0.1
    oks = oks_maps(xy, area)
    assert oks[0, :, 30, 20].min() == pytest.approx(1.0)
    right = torch.zeros(1, 17, 64, 48)
    right[..., 30, 20] = 1.0
    wrong = torch.zeros(1, 17, 64, 48)
    wrong[..., 10, 40] = 1.0
    assert probpose_loss(right, xy, area, w) < probpose_loss(wrong, xy, area, w)
    # the Sobel term: a spread map of the same mass is smoother than a spike
    spread = tgt / tgt.sum(dim=(2, 3), keepdim=True)
    assert probpose_loss(spread, xy, area, w, alpha=1.0) < probpose_loss(right, xy, area, w, alpha=1.0)


@pytest.mark.parametrize("head,phase", [("heatmap", "mse"), ("probmap", "probpose")])
def test_one_training_step_reduces_the_loss(head: str, phase: str) -> None:
    torch.manual_seed(0)
    net = build_pose_net("fixture-s", head)
    batch = next(iter(SceneStream(seed=7, batch_size=8, photo_dir="")))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    first = train_step(net, batch, opt, phase)
    opt_eval = torch.optim.SGD(net.parameters(), lr=0.0)
    after = train_step(net, batch, opt_eval, phase)  # lr 0: measures the loss, changes nothing
    assert after < first, (first, after)


def test_checkpoint_round_trip_loads_strictly(tmp_path) -> None:
    net = build_pose_net("fixture-l", "probmap")
    path = save_checkpoint(net, tmp_path / "l.pth", {"arch": "fixture-l", "head": "probmap"})
    obj = torch.load(path, weights_only=True)
    assert set(obj) == {"state_dict", "meta"}
    fresh = build_pose_net("fixture-l", "probmap")
    info = load_strict(fresh, path, "large")
    assert info["source"] == "checkpoint"
    for k, v in net.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k])
