"""Router training: OKD and targets by hand, the F0 shortcut, fitting, and the CLI end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from build.models import build_pose_net, build_router
from build.router import main as router_main
from build.synth import write_dataset
from build.train.infer import box_list, load_coco, router_f0, run_crops
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


def test_box_list_matches_detections_and_jitters_gt_boxes(tmp_path) -> None:
    """build.train.infer.box_list: GT boxes come first with seeded jittered copies; detections get the
    annotation row of highest IoU, or -1 where none overlaps enough."""
    data = write_dataset(tmp_path / "d", 4, seed=2, photos=[])
    coco = load_coco(data["keypoints"])
    anns = coco["annotations"]
    rows = [i for i, a in enumerate(anns) if a.get("iscrowd", 0) == 0 and a.get("num_keypoints", 1) > 0]
    jittered = box_list(coco, None, jitter=2, seed=0)
    assert [it[3] for it in jittered] == [r for r in rows for _ in range(3)]
    for k, r in enumerate(rows):
        np.testing.assert_array_equal(jittered[3 * k][1], anns[r]["bbox"])
        assert not np.array_equal(jittered[3 * k + 1][1], anns[r]["bbox"])
    same = box_list(coco, None, jitter=2, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(jittered, same))
    first = coco["images"][0]["id"]
    dets = [{"image_id": anns[r]["image_id"], "bbox": anns[r]["bbox"], "score": 0.5} for r in rows]
    dets.append({"image_id": first, "bbox": [0.0, 0.0, 2.0, 2.0], "score": 0.1})
    matched = box_list(coco, dets)
    assert sorted(m[3] for m in matched) == sorted([-1, *rows])
    assert [m[2] for m in matched if m[3] == -1] == [0.1]


def test_run_crops_does_not_depend_on_the_batch_size(tmp_path) -> None:
    """build.train.infer.run_crops: every kept box gets each net's prediction, the router score and
    F0 whatever the batch size; a box the hygiene drops gets gt_index -2 and no prediction."""
    data = write_dataset(tmp_path / "d", 3, seed=4, photos=[])
    coco = load_coco(data["keypoints"])
    items = box_list(coco, None)
    items.insert(1, (items[0][0], np.array([-50.0, -50.0, 10.0, 10.0]), 1.0, 0))  # off the image
    torch.manual_seed(0)
    nets = {"small": build_pose_net("fixture-s", "heatmap"), "large": build_pose_net("fixture-l", "probmap")}
    router = build_router(channels=(8, 8, 16, 32), hidden=32)
    a = run_crops(coco, data["images"], items, nets, router=router, keep_f0=True, batch=2)
    b = run_crops(coco, data["images"], items, nets, router=router, keep_f0=True, batch=64)
    assert a.gt_index[1] == -2 and (a.gt_index[[0, *range(2, len(items))]] >= 0).all()
    assert (a.gt_index == b.gt_index).all()
    for role in nets:
        assert not a.preds[role][1].any() and (a.preds[role][2:, :, 2] != 0).any()
        np.testing.assert_allclose(a.preds[role], b.preds[role], atol=1e-3)
    np.testing.assert_allclose(a.router, b.router, atol=1e-5)
    assert a.router[1] == 0 and (a.router[2:] != 0).all()
    np.testing.assert_array_equal(a.f0, b.f0)
