"""Box hygiene and the crop transform pair, on real images and boxes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from runtime.heads.grid import heatmap_to_image, image_to_heatmap
from runtime.pose.preprocess import BoxError, boxes_to_center_scale, crop_affines, make_crops, sanitize_boxes


def test_hygiene_drops_and_reports_each_bad_box():
    boxes = np.array(
        [
            [10, 10, 50, 100],  # fine
            [np.nan, 0, 10, 10],  # NaN
            [5, 5, 0, 20],  # zero width
            [5, 5, -3, 20],  # negative
            [900, 900, 40, 40],  # off image
            [-20, -20, 60, 80],
        ],  # partly outside -> clipped
        float,
    )
    b, kept, rep = sanitize_boxes(boxes, (480, 640))
    assert kept.tolist() == [0, 5]
    assert rep.dropped == {"nan_or_inf": 1, "zero_or_negative_size": 2, "outside_image": 1}
    np.testing.assert_allclose(b[1], [0, 0, 40, 60])


def test_score_threshold_and_cap_keep_best_in_input_order():
    boxes = np.tile([10, 10, 50, 100], (5, 1)).astype(float)
    scores = [0.9, 0.1, 0.8, 0.7, 0.95]
    _, kept, rep = sanitize_boxes(boxes, (480, 640), scores, score_thr=0.5)
    assert kept.tolist() == [0, 2, 3, 4]
    with pytest.warns(UserWarning, match="keeping 2"):
        _, kept, rep = sanitize_boxes(boxes, (480, 640), scores, max_boxes=2)
    assert kept.tolist() == [0, 4] and rep.dropped["over_max_boxes"] == 3


def test_malformed_boxes_name_the_fix():
    with pytest.raises(BoxError, match=r"\[N,4\] as x,y,w,h"):
        sanitize_boxes(np.zeros((3, 2)), (10, 10))
    with pytest.raises(BoxError, match="one score per box"):
        sanitize_boxes(np.zeros((3, 4)) + 1, (10, 10), scores=[1.0])
    b, kept, _ = sanitize_boxes([], (10, 10))
    assert b.shape == (0, 4) and kept.size == 0


def test_center_scale_has_3_to_4_aspect_and_padding():
    c, s = boxes_to_center_scale(np.array([[0, 0, 30, 100], [0, 0, 300, 100]], np.float32))
    np.testing.assert_allclose(s[:, 0] / s[:, 1], 0.75, rtol=1e-6)
    np.testing.assert_allclose(s[0], [75 * 1.25, 125], rtol=1e-6)
    np.testing.assert_allclose(c[1], [150, 50])


def test_inverse_affine_round_trips_real_gt_keypoints(coco_mini):
    gt = json.loads((coco_mini / "person_keypoints.json").read_text())
    anns = [a for a in gt["annotations"] if a["num_keypoints"] > 0]
    boxes = np.array([a["bbox"] for a in anns], np.float32)
    pts = np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)[..., :2]
    c, s = boxes_to_center_scale(boxes)
    hm = image_to_heatmap(pts, c, s)
    np.testing.assert_allclose(heatmap_to_image(hm, c, s), pts, atol=1e-3)
    # heatmap pixels map to crop pixels x4 through the same affine the crops use
    m = crop_affines(c, s)
    crop_xy = np.einsum("nij,nkj->nki", m[:, :, :2], pts) + m[:, None, :, 2]
    np.testing.assert_allclose(crop_xy / 4.0, hm, atol=1e-3)


def test_crops_show_the_box_content(coco_mini):
    img = cv2.imread(str(coco_mini / "000000000785.jpg"))
    gt = json.loads((coco_mini / "person_keypoints.json").read_text())
    box = np.array([a["bbox"] for a in gt["annotations"] if a["image_id"] == 785][:1], np.float32)
    c, s = boxes_to_center_scale(box)
    crops = make_crops(img, c, s, out=np.empty((4, 3, 256, 192), np.float32))
    assert crops.shape == (1, 3, 256, 192) and crops.dtype == np.float32
    # undo the normalisation and compare the centre pixel with the image (RGB order)
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    centre = crops[0, :, 128, 96] * std + mean
    cx, cy = c[0].round().astype(int)
    np.testing.assert_allclose(centre, img[cy, cx, ::-1].astype(float), atol=12)
    with pytest.raises(ValueError, match="cannot hold"):
        make_crops(img, np.repeat(c, 5, 0), np.repeat(s, 5, 0), out=np.empty((4, 3, 256, 192), np.float32))


def _many_boxes(img: np.ndarray, n: int) -> np.ndarray:
    """Boxes of every kind the pipeline meets: inside, across the border, tiny, wider than tall."""
    rng = np.random.default_rng(n)
    h, w = img.shape[:2]
    xy = rng.uniform([-60, -60], [w, h], size=(n, 2))
    wh = rng.uniform([4, 8], [w * 0.8, h * 0.9], size=(n, 2))
    return np.concatenate([xy, wh], axis=1).astype(np.float32)


def test_one_pass_crops_equal_the_frozen_per_crop_version_bit_for_bit(coco_mini):
    """The batched normalisation (one split, one multiply + add per channel into the buffer) is
    the same float32 arithmetic as the per-crop copy it replaced: max abs difference 0."""
    from bench.preprocess_frozen import frozen_make_crops
    from runtime.pose.preprocess import CropMaker

    img = cv2.imread(str(coco_mini / "000000000785.jpg"))
    maker = CropMaker()
    buf = np.full((16, 3, 256, 192), np.nan, np.float32)
    for n in (1, 13, 5, 16, 0):  # the scratch grows, then is reused at smaller n
        c, s = boxes_to_center_scale(_many_boxes(img, n))
        ref = frozen_make_crops(img, c, s)
        got = maker(img, c, s, out=buf)
        assert got.shape == (n, 3, 256, 192)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(make_crops(img, c, s), ref)


def test_crops_at_another_net_size_show_the_same_window(coco_mini):
    """384x288 (RTMPose-l's other size): the same window as 256x192 at 1.5x the pixels."""
    img = cv2.imread(str(coco_mini / "000000000785.jpg"))
    c, s = boxes_to_center_scale(_many_boxes(img, 3), input_hw=(384, 288))
    big = make_crops(img, c, s, input_hw=(384, 288))
    small = make_crops(img, c, s)
    assert big.shape == (3, 3, 384, 288)
    down = np.stack([cv2.resize(x.transpose(1, 2, 0), (192, 256), interpolation=cv2.INTER_AREA) for x in big])
    assert np.median(np.abs(down.transpose(0, 3, 1, 2) - small)) < 0.1
    with pytest.raises(ValueError, match="cannot hold"):
        make_crops(img, c, s, out=np.empty((3, 3, 256, 192), np.float32), input_hw=(384, 288))
    with pytest.raises(ValueError, match="BGR uint8"):
        make_crops(img.astype(np.float32), c, s)
