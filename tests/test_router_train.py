"""Router training: OKD and targets by hand, the F0 shortcut, fitting, and the CLI end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from build.models import build_pose_net, build_router
from build.router import main as router_main
from build.synth import write_dataset
from build.train.infer import router_f0
from build.train.metrics import RHO, okd, router_targets
from build.train.router_fit import fit_router, predict_f0, router_from_f0
from build.train.trainer import save_checkpoint


def test_okd_on_a_hand_made_example() -> None:
    """Two labelled keypoints (nose 3 px off, left wrist 4 px off), scale sqrt(area) = 10."""
    gt = np.zeros((1, 17, 3))
    gt[0, 0] = [10, 10, 2]
    gt[0, 9] = [20, 30, 1]
    gt[0, 5] = [50, 50, 0]  # unlabelled: ignored however wrong the prediction is
    pred = gt[..., :2].copy()
    pred[0, 0] += [3, 0]
    pred[0, 9] += [0, 4]
    pred[0, 5] += [100, 100]
    rho_nose = 100 * 1.0 / (2 * 0.026) ** 2
    rho_wrist = 100 * 2.0 / (2 * 0.062) ** 2
    expected = (0.3 * rho_nose + 0.4 * rho_wrist) / 2
    assert RHO[0] == pytest.approx(rho_nose) and RHO[9] == pytest.approx(rho_wrist)
    assert okd(pred, gt, np.array([100.0]))[0] == pytest.approx(expected)


def test_router_targets_by_hand() -> None:
    d_s = np.array([2.0, 4.0, 0.0, 1.0, 1.0])
    d_l = np.array([1.0, 4.0, 0.5, 3.0, 0.0])
    t, valid = router_targets(d_s, d_l)
    np.testing.assert_allclose(t, [0.5, 0.0, 0.0, -1.0, 1.0])  # -2 clipped to -1
    np.testing.assert_array_equal(valid, [True, True, False, True, True])  # D_s ~ 0 is skipped


def test_router_from_f0_matches_router_forward() -> None:
    torch.manual_seed(0)
    r = build_router(channels=(8, 8, 16, 32), hidden=32).eval()
    x = torch.randn(3, 3, 256, 192)
    with torch.no_grad():
        np.testing.assert_allclose(
            router_from_f0(r, router_f0(x)).numpy(), r(x)[0].reshape(-1).numpy(), rtol=1e-5, atol=1e-6
        )


def test_fit_router_learns_a_learnable_target() -> None:
    """Target = brightness of the crop's upper half: the router must rank it."""
    rng = np.random.default_rng(0)
    f0 = rng.normal(0, 0.3, (192, 1, 128, 96)).astype(np.float32)
    level = rng.uniform(-1, 1, 192).astype(np.float32)
    f0[:, :, :64] += level[:, None, None, None]
    target = (level + 1) / 2
    r = build_router(channels=(8, 8, 16, 32), hidden=32)
    info = fit_router(
        r,
        f0[:128].astype(np.float16),
        target[:128],
        epochs=6,
        batch_size=16,
        val=(f0[128:].astype(np.float16), target[128:]),
    )
    assert info["val_spearman"] > 0.8, info
    pred = predict_f0(r, f0[128:].astype(np.float16))
    assert np.corrcoef(pred, target[128:])[0, 1] > 0.8


@pytest.mark.parametrize("dets", [False, True], ids=["gt-boxes", "detections"])
def test_router_cli_end_to_end(tmp_path, dets: bool) -> None:
    """The CLI on a tiny synthetic COCO set with checkpoints of the fixture architectures; with
    detections, the boxes that hold no person join the training set (target 0)."""
    data = write_dataset(tmp_path / "d", 30 if dets else 10, seed=1, photos=[])  # a held-out image is 10 %
    torch.manual_seed(0)
    ck = {}
    for role, arch in (("small", "fixture-s"), ("large", "fixture-l")):
        head = "heatmap" if role == "small" else "probmap"
        ck[role] = save_checkpoint(build_pose_net(arch, head), tmp_path / f"{role}.pth", {"arch": arch})
    out = tmp_path / "router.pth"
    rc = router_main(
        [
            "--config",
            "fixture-dyn",
            "--small-ckpt",
            str(ck["small"]),
            "--large-ckpt",
            str(ck["large"]),
            "--data",
            str(data["keypoints"]),
            "--images",
            str(data["images"]),
            "--epochs",
            "2",
            "--jitter",
            "3",
            "--out",
            str(out),
        ]
        + (["--dets", str(data["detections"])] if dets else [])
    )
    assert rc == 0
    obj = torch.load(out, weights_only=True)
    assert obj["meta"]["n_train"] > 0 and obj["meta"]["role"] == "router"
    assert (obj["meta"]["n_empty_boxes"] > 0) == dets
    r = build_router(channels=(8, 8, 16, 32), hidden=32)
    r.load_state_dict(obj["state_dict"], strict=True)


def test_router_cli_refuses_missing_weights(tmp_path) -> None:
    data = write_dataset(tmp_path / "d", 2, seed=1, photos=[])
    with pytest.raises(SystemExit, match="small"):
        router_main(
            [
                "--config",
                "dyn-r50-h32",
                "--data",
                str(data["keypoints"]),
                "--images",
                str(data["images"]),
                "--out",
                str(tmp_path / "r.pth"),
            ]
        )
