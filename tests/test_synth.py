"""The synthetic-people generator: geometry, truncation, COCO validity, reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from build.synth import load_photos, make_scene, sample_figure, write_dataset
from build.synth.render import draw_figure
from measure.coco_eval import evaluate_keypoints


@pytest.mark.parametrize("seed", range(12))
def test_keypoints_land_on_the_drawn_figure(seed: int) -> None:
    """Every keypoint (face parts included) sits on a pixel the figure painted."""
    rng = np.random.default_rng(seed)
    img = np.full((480, 400, 3), 127, np.uint8)
    fig = sample_figure(rng, (200, 260), 300)
    mask = draw_figure(img, fig, rng)
    kp = fig.keypoints
    inside = (kp[:, 0] >= 0) & (kp[:, 0] < 400) & (kp[:, 1] >= 0) & (kp[:, 1] < 480)
    assert inside.all(), "figure should fit this canvas"
    xi, yi = np.round(kp[:, 0]).astype(int), np.round(kp[:, 1]).astype(int)
    assert (mask[yi, xi] > 0).all(), np.flatnonzero(mask[yi, xi] == 0)
    # and the mask is not the whole canvas: the figure is a figure
    assert 0.02 < (mask > 0).mean() < 0.6


def test_figure_left_right_follows_facing() -> None:
    """Front-facing: the person's left shoulder is on the image right (COCO convention)."""
    for seed in range(30):
        fig = sample_figure(np.random.default_rng(seed), (200, 260), 300)
        lat = (fig.keypoints[5] - fig.keypoints[6]) @ fig.lateral
        assert (lat > 0) == fig.front
        assert fig.labelled[:3].all() == fig.front  # nose/eyes unlabelled from behind


def test_truncated_keypoints_are_outside_the_image() -> None:
    photos: list = []
    seen_out = 0
    for seed in range(40):
        scene = make_scene(np.random.default_rng(seed), photos)
        h, w = scene.image.shape[:2]
        for p in scene.people:
            x, y, v = p.keypoints.T
            outside = (x < 0) | (y < 0) | (x > w - 1) | (y > h - 1)
            np.testing.assert_array_equal(p.out_of_image, outside)
            assert (v[outside] == 0).all(), "cut-off keypoints must not be labelled"
            assert ((v > 0) <= ~outside).all()
            seen_out += int(outside.sum())
    assert seen_out > 20, "the generator should truncate some figures at the border"


def test_occluded_keypoints_are_marked_v1() -> None:
    counts = np.zeros(3, int)
    for seed in range(30):
        for p in make_scene(np.random.default_rng(seed), []).people:
            counts += np.bincount(p.keypoints[:, 2].astype(int), minlength=3)
    assert counts[1] > 0.03 * counts.sum() and counts[2] > 0.5 * counts.sum(), counts


def test_detector_boxes_have_diversity() -> None:
    kinds: dict[str, int] = {}
    for seed in range(40):
        scene = make_scene(np.random.default_rng(seed), [])
        h, w = scene.image.shape[:2]
        b = scene.boxes
        assert len(b) == len(scene.scores) == len(scene.source) == len(scene.kinds)
        assert (b[:, 2] > 0).all() and (b[:, 0] >= 0).all() and (b[:, 0] + b[:, 2] <= w + 1e-6).all()
        for k in scene.kinds:
            kinds[k] = kinds.get(k, 0) + 1
    assert set(kinds) == {"jitter", "duplicate", "bad_crop", "false_positive"}, kinds


def _overlap(scene) -> float:
    """Mean over people of the largest IoU with another person's visible box."""
    from runtime.tracking.tracker import iou_matrix

    b = np.array([p.bbox for p in scene.people if p.area > 0])
    if len(b) < 2:
        return 0.0
    iou = iou_matrix(b, b)
    np.fill_diagonal(iou, 0)
    return float(iou.max(1).mean())


def test_scene_levels_differ_where_capacity_matters() -> None:
    """Easy: people apart, nothing cut off or occluded, plain backdrop. Medium: occluded, cut, cluttered.
    Hard: an overlapping crowd."""
    stats: dict[str, list] = {"easy": [], "medium": [], "hard": []}
    for seed in range(24):
        for level in stats:
            scene = make_scene(np.random.default_rng(seed), [], level=level)
            assert scene.level == level
            occluded = sum(int((p.keypoints[:, 2] == 1).sum()) for p in scene.people)
            cut = sum(int(p.out_of_image.sum()) for p in scene.people)
            stats[level].append((len(scene.people), _overlap(scene), occluded, cut))
    easy, medium, hard = (np.array(stats[k], float) for k in ("easy", "medium", "hard"))
    assert easy[:, 0].max() <= 2 and medium[:, 0].max() <= 2 and hard[:, 0].min() >= 3
    assert easy[:, 3].sum() == 0, "easy scenes cut nobody at the border"
    assert medium[:, 3].sum() > 0 and hard[:, 3].sum() > 0
    assert hard[:, 1].mean() > 2 * max(easy[:, 1].mean(), medium[:, 1].mean()) + 0.05
    assert easy[:, 2].mean() < 0.5 < 1.0 <= medium[:, 2].mean() < hard[:, 2].mean()  # occluded keypoints
    # the default mix draws every level from the seed; a wrong name is an error naming the choices
    assert {make_scene(np.random.default_rng(s), []).level for s in range(30)} == set(stats)
    with pytest.raises(ValueError, match="easy"):
        make_scene(np.random.default_rng(0), [], level="extreme")


def test_coco_files_load_and_score_perfectly(tmp_path, coco_mini) -> None:
    paths = write_dataset(tmp_path / "s", 6, seed=3, photos=load_photos(coco_mini))
    gt = COCO(str(paths["keypoints"]))
    assert len(gt.getImgIds()) == 6 and len(gt.getAnnIds()) > 0
    for img in gt.dataset["images"]:
        assert (paths["images"] / img["file_name"]).is_file()
    dets = json.loads(paths["detections"].read_text())
    gt.loadRes([{k: d[k] for k in ("image_id", "category_id", "bbox", "score")} for d in dets])
    # ground truth as results: pycocotools must give AP 1 (the records are consistent)
    res = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt.dataset["annotations"]
        if a["num_keypoints"] > 0
    ]
    assert evaluate_keypoints(gt, res)["AP"] == pytest.approx(1.0)


def test_same_seed_same_dataset(tmp_path) -> None:
    a = write_dataset(tmp_path / "a", 3, seed=5, photos=[])
    b = write_dataset(tmp_path / "b", 3, seed=5, photos=[])
    c = write_dataset(tmp_path / "c", 3, seed=6, photos=[])
    assert a["keypoints"].read_text() == b["keypoints"].read_text()
    assert a["detections"].read_text() == b["detections"].read_text()
    assert (a["images"] / "000001.jpg").read_bytes() == (b["images"] / "000001.jpg").read_bytes()
    assert a["keypoints"].read_text() != c["keypoints"].read_text()


def test_missing_photo_dir_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="--photos ''"):
        load_photos(tmp_path / "nope")
    assert load_photos("") == []
