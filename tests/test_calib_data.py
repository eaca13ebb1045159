"""Calibration data from a COCO folder, a folder of images or a video (HOG detector),
always cropped by runtime.pose.preprocess."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calib.data import hog_detector, load_calib, load_coco_calib
from runtime.pose.preprocess import boxes_to_center_scale, make_crops


def test_coco_default_is_the_118_detector_boxes(coco_mini):
    c = load_calib(coco_mini)
    assert len(c) == 118 and len(c.per_image) == 4 and "detections" in c.source
    assert sum(c.per_image.values()) == 118
    gt = load_calib(coco_mini, boxes="gt")
    assert 0 < len(gt) < 118


def test_crops_are_the_runtimes(coco_mini):
    import json

    c = load_coco_calib(coco_mini)
    det = json.loads((coco_mini / "person_detections.json").read_text())
    first = min(d["image_id"] for d in det)
    box = next(d["bbox"] for d in det if d["image_id"] == first)
    gt = json.loads((coco_mini / "person_keypoints.json").read_text())
    img = cv2.imread(str(coco_mini / next(i["file_name"] for i in gt["images"] if i["id"] == first)))
    ce, sc = boxes_to_center_scale(np.array([box], np.float32))
    np.testing.assert_array_equal(c.crops[0], make_crops(img, ce, sc)[0])


def test_crops_at_each_nets_size_are_the_runtimes(coco_mini):
    """sizes=(256x192, 384x288): row i is box i at both sizes, each cut as the runtime cuts it for
    a net of that size; role_crops hands a net its size and names a missing one in one line."""
    import json

    from calib.data import role_crops, subset_crops

    small, large = (256, 192), (384, 288)
    c = load_coco_calib(coco_mini, max_crops=10, sizes=(small, large))
    assert list(c.by_hw) == [small, large] and c.crops is c.by_hw[small]
    assert c.by_hw[large].shape == (10, 3, *large)
    det = json.loads((coco_mini / "person_detections.json").read_text())
    first = min(d["image_id"] for d in det)
    box = next(d["bbox"] for d in det if d["image_id"] == first)
    gt = json.loads((coco_mini / "person_keypoints.json").read_text())
    img = cv2.imread(str(coco_mini / next(i["file_name"] for i in gt["images"] if i["id"] == first)))
    ce, sc = boxes_to_center_scale(np.array([box], np.float32), input_hw=large)
    np.testing.assert_array_equal(c.by_hw[large][0], make_crops(img, ce, sc, input_hw=large)[0])
    manifest = {"models": {"large": {"inputs": [{"name": "input", "shape": ["N", 3, *large]}]}}}
    assert role_crops(c.by_hw, manifest, "large") is c.by_hw[large]
    sub = subset_crops(c.by_hw, 4)
    np.testing.assert_array_equal(sub[large][1], c.by_hw[large][3])  # the same rows at every size
    np.testing.assert_array_equal(sub[small][1], c.by_hw[small][3])
    with pytest.raises(
        ValueError, match=r"^no calibration crops at 384x288 for the large net \(have 256x192\)"
    ):
        role_crops({small: c.crops}, manifest, "large")


def test_max_crops_thins_evenly(coco_mini):
    c = load_calib(coco_mini, max_crops=10)
    assert len(c) == 10 and c.image_ids[0] != c.image_ids[-1]


def test_video_and_image_folder_through_hog(shared_data, tmp_path):
    video = shared_data / "video" / "street.mp4"
    v = load_calib(video)
    assert len(v) > 0 and "video" in v.source and v.crops.shape[1:] == (3, 256, 192)
    cap = cv2.VideoCapture(str(video))
    for i in range(2):
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(tmp_path / f"f{i}.png"), frame)
    cap.release()
    f = load_calib(tmp_path)
    assert len(f) > 0 and "images" in f.source


def test_hog_boxes_are_xywh_scores():
    img = np.zeros((480, 640, 3), np.uint8)
    out = hog_detector()(img)
    assert out.shape[1] == 5 and len(out) == 0  # nothing in a black frame


def test_bad_paths_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="COCO folder"):
        load_calib(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no images"):
        load_calib(tmp_path)
    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((300, 300, 3), np.uint8))
    with pytest.raises(ValueError, match="no person boxes"):
        load_calib(tmp_path)


def test_a_synthetic_set_without_detector_boxes_names_the_flag(tmp_path):
    """`python -m build.synth --out DIR` writes detections.json, not person_detections.json: the
    refusal names the flag that works (--calib-boxes gt), not an API argument."""
    from build.synth.coco import write_dataset

    write_dataset(tmp_path, 2, seed=0, photos=[])
    with pytest.raises(
        FileNotFoundError, match=r"pass --calib-boxes gt .*build.synth names its detections.json"
    ):
        load_calib(tmp_path)


def test_the_fixtures_calibration_split_is_a_calib_folder(tmp_path):
    """build.synth.coco.write_split: the default calibration set of configs trained on synthetic
    scenes (build.engines) reads as a COCO calibration folder, detector boxes and GT alike."""
    from build.synth.coco import write_split

    d = write_split(tmp_path / "s", "calib", 4, seed=0, photos=[], progress=False)
    dets, gt = load_calib(d), load_calib(d, "gt")
    assert len(dets) > 0 and len(gt) > 0 and dets.per_image and gt.per_image
    assert write_split(tmp_path / "s", "calib", 4, seed=0, photos=[]) == d  # complete: reused
