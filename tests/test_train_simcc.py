"""SimCC training targets and loss (build.train.losses) against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import torch

from build.train.losses import kl_discret_loss, simcc_targets


def test_labels_are_unnormalised_gaussians_on_the_rounded_bin() -> None:
    xy = torch.tensor([[[10.3, 20.7]]])  # input px -> bins (20.6, 41.4) -> (21, 41)
    tx, ty, w = simcc_targets(xy, torch.ones(1, 1))
    assert tx.shape == (1, 1, 384) and ty.shape == (1, 1, 512)  # 192 x 2, 256 x 2
    assert w.tolist() == [[1.0]]
    assert int(tx[0, 0].argmax()) == 21 and int(ty[0, 0].argmax()) == 41
    assert float(tx[0, 0, 21]) == 1.0 and float(ty[0, 0, 41]) == 1.0  # normalize=False: peak 1
    assert math.isclose(float(tx[0, 0, 22]), math.exp(-1 / (2 * 4.9**2)), rel_tol=1e-6)
    assert math.isclose(float(tx[0, 0, 18]), math.exp(-9 / (2 * 4.9**2)), rel_tol=1e-6)
    assert math.isclose(float(ty[0, 0, 43]), math.exp(-4 / (2 * 5.66**2)), rel_tol=1e-6)


def test_keypoints_outside_the_bins_or_unlabelled_get_no_weight() -> None:
    xy = torch.tensor([[[-20.0, 50.0], [-5.0, 50.0], [200.0, 50.0], [50.0, 50.0], [50.0, 300.0]]])
    weight = torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0]])
    tx, ty, w = simcc_targets(xy, weight)
    # x -20 px: bins -40 +- 14.7 end below 0; x -5 px: -10 + 14.7 + 1 >= 0 keeps a tail inside;
    # x 200 px: 400 - 14.7 >= 384 bins; y 300 px: 600 - 17 >= 512 bins; the 4th is unlabelled
    assert w.tolist() == [[0.0, 1.0, 0.0, 0.0, 0.0]]
    assert float(tx[0, 0].abs().sum()) == 0.0 and float(ty[0, 3].abs().sum()) == 0.0
    assert math.isclose(float(tx[0, 1, 0]), math.exp(-100 / (2 * 4.9**2)), rel_tol=1e-5)


def _kl_by_hand(pred: list[float], target: list[float]) -> float:
    """KL(softmax(10 t) || softmax(10 p)) averaged over the bins, written out in numpy."""
    p = np.exp(10 * np.array(pred, np.float64))
    p /= p.sum()
    q = np.exp(10 * np.array(target, np.float64))
    q /= q.sum()
    return float(np.mean(q * (np.log(q) - np.log(p))))


def test_kl_loss_matches_the_hand_computed_value() -> None:
    px, tx = [0.0, 0.1, 0.0], [0.0, 1.0, 0.0]
    py, ty = [0.2, 0.0, 0.0, 0.1], [1.0, 0.5, 0.0, 0.0]
    got = kl_discret_loss(
        torch.tensor([[px]]),
        torch.tensor([[py]]),
        torch.tensor([[tx]]),
        torch.tensor([[ty]]),
        torch.ones(1, 1),
    )
    # e.g. the x term: q = (1, e^10, 1) / (2 + e^10), log p = (0, 1, 0) - log(2 + e)
    want = _kl_by_hand(px, tx) + _kl_by_hand(py, ty)
    assert math.isclose(float(got), want, rel_tol=1e-5)
    assert want > 0.1


def test_kl_loss_weights_keypoints_and_divides_by_their_count() -> None:
    rng = np.random.default_rng(0)
    px, py = torch.tensor(rng.normal(size=(2, 3, 8)), dtype=torch.float32), torch.randn(2, 3, 6)
    tx, ty = torch.rand(2, 3, 8), torch.rand(2, 3, 6)
    ones = torch.ones(2, 3)
    full = float(kl_discret_loss(px, py, tx, ty, ones))
    per = [
        float(
            kl_discret_loss(
                px[b : b + 1, k : k + 1],
                py[b : b + 1, k : k + 1],
                tx[b : b + 1, k : k + 1],
                ty[b : b + 1, k : k + 1],
                ones[:1, :1],
            )
        )
        for b in range(2)
        for k in range(3)
    ]
    assert math.isclose(full, sum(per) / 3, rel_tol=1e-5)  # summed over the batch, / K
    w = ones.clone()
    w[1, 2] = 0.0
    assert math.isclose(float(kl_discret_loss(px, py, tx, ty, w)), (sum(per) - per[5]) / 3, rel_tol=1e-5)
    # a prediction equal to the labels (same beta) is the optimum: zero loss
    assert abs(float(kl_discret_loss(tx, ty, tx, ty, ones))) < 1e-6


def test_a_simcc_train_step_learns_the_keypoints_of_a_batch() -> None:
    """The trainer's SimCC phase on the real RTMPose-t: labels from the batch's heatmap-grid
    keypoints (x4 to input px), KL loss, and a few steps on one batch lower it."""
    from build.models import build_pose_net
    from build.train.rtm_fixture import CLIP, LR
    from build.train.trainer import train_step

    torch.manual_seed(0)
    net = build_pose_net("rtmpose-t", "simcc")
    batch = {
        "input": torch.randn(2, 3, 256, 192),
        "xy": torch.tensor([[[10.0, 20.0]] * 17, [[30.0, 40.0]] * 17]),
        "inside": torch.ones(2, 17, dtype=torch.bool),
    }
    opt = torch.optim.AdamW(net.parameters(), lr=LR)  # the recipe's rate and clipping
    losses = [train_step(net, batch, opt, "kl", CLIP) for _ in range(8)]
    assert all(math.isfinite(v) and v > 0 for v in losses)
    assert losses[-1] < 0.5 * losses[0]  # measured 0.037 -> 0.005
    # the targets sit at the input-pixel bins of the grid keypoints: (10, 20) -> (40, 80) px -> bins (80, 160)
    tx, ty, _ = simcc_targets(batch["xy"] * 4, batch["inside"])
    assert int(tx[0, 0].argmax()) == 80 and int(ty[0, 0].argmax()) == 160


def test_the_fixture_recipe_saves_fp16_and_goes_on_from_a_checkpoint(tmp_path) -> None:
    """``python -m build.train.rtm_fixture``: a short run saves an fp16 checkpoint that loads strictly
    into rtmpose-t; ``--init`` goes on from it (a run cut short on a busy machine) and its meta keeps
    the whole history; a wrong --init file is refused in one line."""
    import torch

    from build.checkpoint import load_strict
    from build.models import build_pose_net
    from build.train.rtm_fixture import main
    from runtime.heads.registry import SIMCC

    first, second = tmp_path / "a", tmp_path / "b"
    common = ["--steps", "2", "--batch", "2", "--threads", "1"]
    assert main([*common, "--out", str(first)]) == 0
    ck = torch.load(first / "rtmpose-t.pth", weights_only=True)
    assert all(v.dtype == torch.float16 for v in ck["state_dict"].values() if v.is_floating_point())
    assert ck["meta"]["heatmap_aid"] > 0  # trained with the heatmap aid by default ...
    assert not any(k.startswith("heatmap_aid") for k in ck["state_dict"])  # ... which is not saved
    assert {"median_px", "mean_pose_px", "crops"} <= set(ck["meta"]["heldout"])  # the held-out check ran
    assert main([*common, "--seed", "1", "--init", str(first / "rtmpose-t.pth"), "--out", str(second)]) == 0
    meta = torch.load(second / "rtmpose-t.pth", weights_only=True)["meta"]
    assert meta["continued_from"]["steps"] == 2 and meta["total_steps"] == 4
    net = build_pose_net("rtmpose-t", SIMCC)
    load_strict(net, second / "rtmpose-t.pth", "large")
    moved = [
        k
        for k, v in net.state_dict().items()
        if v.is_floating_point() and not torch.equal(v.half(), ck["state_dict"][k])
    ]
    assert moved  # the second run trained the first run's weights further


def test_the_fixture_recipe_refuses_a_checkpoint_of_another_net(tmp_path) -> None:
    import torch

    from build.train.rtm_fixture import cli

    bad = tmp_path / "other.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, bad)
    assert cli(["--steps", "2", "--init", str(bad), "--out", str(tmp_path)]) == 2


def test_the_heatmap_aid_trains_the_backbone_through_the_simcc_step() -> None:
    """With a HeatmapAid attached, the SimCC step's loss includes its heatmap loss and its gradient
    reaches the backbone; without one the step is the KL loss alone."""
    from build.models import build_pose_net
    from build.train.losses import heatmap_mse
    from build.train.rtm_fixture import HeatmapAid
    from build.train.trainer import train_step

    torch.manual_seed(0)
    batch = {
        "input": torch.randn(2, 3, 256, 192),
        "xy": torch.tensor([[[10.0, 20.0]] * 17, [[30.0, 40.0]] * 17]),
        "inside": torch.ones(2, 17, dtype=torch.bool),
    }
    plain = build_pose_net("rtmpose-t", "simcc")
    aided = build_pose_net("rtmpose-t", "simcc")
    aided.load_state_dict(plain.state_dict())
    aided.heatmap_aid = HeatmapAid(384)
    aided.heatmap_aid_weight = 0.5
    with torch.no_grad():
        aided.eval()
        extra = 0.5 * float(
            heatmap_mse(aided.heatmap_aid(aided.backbone(batch["input"])), batch["xy"], batch["inside"])
        )
    zero = lambda m: torch.optim.SGD(m.parameters(), lr=0.0)  # noqa: E731 - measure, do not move
    a, b = train_step(plain, batch, zero(plain), "kl"), train_step(aided, batch, zero(aided), "kl")
    assert extra > 0 and b > a
    assert (
        aided.heatmap_aid.net[0].weight.grad is not None
        and aided.heatmap_aid.net[0].weight.grad.abs().sum() > 0
    )
