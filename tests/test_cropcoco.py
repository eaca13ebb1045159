"""CropCOCO generator on the real coco-mini set: annotations follow the crop, cut-off keypoints are kept."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from bench.cropcoco import crop_coco, main
from measure import coco_eval as ce

SRC_JSON = "person_keypoints.json"


@pytest.fixture(scope="module")
def source(coco_mini) -> dict:
    return json.loads((coco_mini / SRC_JSON).read_text())


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_annotations_follow_the_crop(coco_mini, source, tmp_path, strength):
    out = tmp_path / "crop"
    summary = crop_coco(coco_mini, out, strength=strength, seed=0)
    new = json.loads((out / SRC_JSON).read_text())
    images = {im["id"]: im for im in new["images"]}
    assert set(images) == {im["id"] for im in source["images"]}
    new_anns = {a["id"]: a for a in new["annotations"]}
    n_cut = 0
    for im_src in source["images"]:
        im = images[im_src["id"]]
        c = im["crop"]
        x0, y0, x1, y1 = c["x0"], c["y0"], c["x1"], c["y1"]
        assert (im["width"], im["height"]) == (x1 - x0, y1 - y0)
        pix = cv2.imread(str(out / im["file_name"]))
        assert pix.shape[:2] == (im["height"], im["width"])  # image size matches the json
        orig = cv2.imread(str(coco_mini / im_src["file_name"]))[y0:y1, x0:x1]
        np.testing.assert_array_equal(pix, orig)  # the same pixels (PNG, lossless)
        for a in (a for a in source["annotations"] if a["image_id"] == im["id"]):
            bx, by, bw, bh = a["bbox"]
            if a["id"] not in new_anns:  # dropped only when wholly outside
                assert bx + bw <= x0 or bx >= x1 or by + bh <= y0 or by >= y1
                continue
            b = new_anns[a["id"]]
            assert b["area"] == a["area"] and b["num_keypoints"] == a["num_keypoints"]
            ko = np.array(a["keypoints"], dtype=float).reshape(17, 3)
            kn = np.array(b["keypoints"], dtype=float).reshape(17, 3)
            lab = ko[:, 2] > 0
            np.testing.assert_array_equal(kn[:, 2], ko[:, 2])  # labels kept, even off-image
            np.testing.assert_array_equal(kn[lab, :2], ko[lab, :2] - [x0, y0])
            np.testing.assert_array_equal(kn[~lab], 0)
            cut = lab & ((ko[:, 0] < x0) | (ko[:, 0] >= x1) | (ko[:, 1] < y0) | (ko[:, 1] >= y1))
            inside = (kn[:, 0] >= 0) & (kn[:, 0] < im["width"]) & (kn[:, 1] >= 0) & (kn[:, 1] < im["height"])
            assert not inside[cut].any()  # a cropped-out keypoint is outside
            assert inside[lab & ~cut].all()  # the others are inside
            n_cut += int(cut.sum())
            nx, ny, nw, nh = b["bbox"]
            assert nx >= 0 and ny >= 0 and nw > 0 and nh > 0
            assert nx + nw <= im["width"] + 1e-6 and ny + nh <= im["height"] + 1e-6
            assert nx == pytest.approx(max(bx, x0) - x0, abs=0.01)
            assert nx + nw == pytest.approx(min(bx + bw, x1) - x0, abs=0.02)
    assert n_cut == summary["keypoints_out_of_image"] > 0
    assert new["info"]["cropcoco"] == {
        "source": str(coco_mini / SRC_JSON),
        "strength": strength,
        "seed": 0,
        "dropped_annotations": sorted(set(a["id"] for a in source["annotations"]) - set(new_anns)),
    }


def test_cropped_set_is_valid_coco_and_detections_follow(coco_mini, tmp_path):
    out = tmp_path / "crop"
    summary = crop_coco(coco_mini, out, strength=1.0, seed=2)
    new = json.loads((out / SRC_JSON).read_text())
    gt = ce.load_gt(out / SRC_JSON)
    anns = [a for a in new["annotations"] if a["num_keypoints"] > 0]
    res = ce.to_coco_results(
        [a["image_id"] for a in anns],
        np.array([a["keypoints"] for a in anns], float).reshape(-1, 17, 3),
        np.ones(len(anns)),
    )
    assert ce.evaluate_keypoints(gt, res)["AP"] == 1.0  # off-image keypoints evaluate fine
    dets = json.loads((out / "person_detections.json").read_text())
    assert len(dets) == summary["detections"] and 0 < len(dets) <= 118
    size = {im["id"]: (im["width"], im["height"]) for im in new["images"]}
    for d in dets:
        x, y, w, h = d["bbox"]
        W, H = size[d["image_id"]]
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= W + 1e-6 and y + h <= H + 1e-6


def test_seeded_and_strength_zero_is_identity(coco_mini, source, tmp_path):
    a = crop_coco(coco_mini, tmp_path / "a", strength=0.7, seed=5)
    b = crop_coco(coco_mini, tmp_path / "b", strength=0.7, seed=5)
    crop_coco(coco_mini, tmp_path / "c", strength=0.7, seed=6)
    ja, jb, jc = (json.loads((tmp_path / n / SRC_JSON).read_text()) for n in "abc")
    assert (
        ja["images"] == jb["images"]
        and ja["annotations"] == jb["annotations"]
        and a == {**b, "json": a["json"]}
    )
    assert [im["crop"] for im in ja["images"]] != [im["crop"] for im in jc["images"]]
    crop_coco(coco_mini, tmp_path / "z", strength=0.0, seed=5)
    jz = json.loads((tmp_path / "z" / SRC_JSON).read_text())
    assert jz["annotations"] == source["annotations"]
    for im in source["images"]:
        assert (tmp_path / "z" / im["file_name"]).read_bytes() == (coco_mini / im["file_name"]).read_bytes()


def test_bad_arguments_are_named(coco_mini, tmp_path):
    with pytest.raises(ValueError, match="strength"):
        crop_coco(coco_mini, tmp_path / "o", strength=1.5)
    with pytest.raises(FileNotFoundError, match="--src"):
        crop_coco(tmp_path / "nowhere", tmp_path / "o")
    with pytest.raises(ValueError, match="--out"):
        crop_coco(coco_mini, coco_mini)
    with pytest.raises(ValueError, match="image_format"):
        crop_coco(coco_mini, tmp_path / "o", image_format="bmp")
    assert (
        main(
            [
                "--src",
                str(coco_mini),
                "--out",
                str(tmp_path / "cli"),
                "--strength",
                "0.3",
                "--seed",
                "1",
                "--format",
                "jpg",
            ]
        )
        == 0
    )
    new = json.loads((tmp_path / "cli" / SRC_JSON).read_text())
    for im in new["images"]:
        pix = cv2.imread(str(tmp_path / "cli" / im["file_name"]))
        assert im["file_name"].endswith(".jpg") and pix.shape[:2] == (im["height"], im["width"])


@pytest.mark.parametrize(
    "change,named",
    [
        (dict(width=0), "positive integer 'width'"),
        (dict(height="480"), "positive integer 'height'"),
        (dict(file_name=None), "needs 'file_name'"),
    ],
)
def test_bad_image_entry_is_named_before_writing(coco_mini, source, tmp_path, change, named):
    """An image entry without a usable size or file name is refused by index, and nothing is written."""
    src = tmp_path / "src"
    src.mkdir()
    data = dict(source, images=[dict(im) for im in source["images"]])
    data["images"][2].update(change)
    (src / SRC_JSON).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=named) as err:
        crop_coco(src, tmp_path / "o")
    assert "images[2]" in str(err.value) and not (tmp_path / "o").exists()
