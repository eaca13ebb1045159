"""Image ids of ``runtime.images`` come from the file names and never collide: numbered names keep
their number (COCO's 000000000785.jpg is 785), unnumbered ones take ids after every numbered one,
and two files on one number are refused in one line naming both (exit 2). Real files, real CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_detector import GOOD, tiny_detector

from runtime.io.records import RecordError, image_names

REPO = Path(__file__).resolve().parents[1]


def _folder(tmp: Path, coco_mini: Path, names: list[str]) -> Path:
    d = tmp / "imgs"
    d.mkdir()
    src = sorted(coco_mini.glob("*.jpg"))
    for i, n in enumerate(names):
        shutil.copy(src[i % len(src)], d / n)
    return d


def _images_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runtime.images", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_unnumbered_names_never_take_a_numbered_files_id(coco_mini, tmp_path) -> None:
    d = _folder(tmp_path, coco_mini, ["1.jpg", "a.jpg", "000000000007.png", "b.jpg", "notes.txt"])
    assert image_names(d, numbered_only=False) == {1: "1.jpg", 7: "000000000007.png", 8: "a.jpg", 9: "b.jpg"}
    assert image_names(d) == {1: "1.jpg", 7: "000000000007.png"}  # --dets: ids only from numbers


@pytest.mark.parametrize("names", [["1.jpg", "01.jpg"], ["01.jpg", "001.png", "x.jpg"]])
def test_two_files_on_one_number_are_refused_naming_both(coco_mini, tmp_path, names) -> None:
    d = _folder(tmp_path, coco_mini, names)
    with pytest.raises(RecordError) as e:
        image_names(d, numbered_only=False)
    assert "both map to image id 1" in str(e.value) and all(n in str(e.value) for n in sorted(names)[:2])


def test_gt_listing_one_file_twice_is_refused(coco_mini, tmp_path) -> None:
    d = _folder(tmp_path, coco_mini, ["a.jpg"])
    (d / "person_keypoints.json").write_text(
        json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "a.jpg"}]})
    )
    with pytest.raises(RecordError, match="listed twice"):
        image_names(d)


def test_images_cli_detector_gives_each_file_its_own_id(cpu_artifacts, coco_mini, tmp_path) -> None:
    """b.jpg sorted second used to get id 1 = 1.jpg's id: both images' people merged under one id."""
    d = _folder(tmp_path, coco_mini, ["1.jpg", "b.jpg"])
    out = tmp_path / "res"  # --out is a folder: results.json inside
    r = _images_cli(
        "--engines",
        str(cpu_artifacts),
        "--images",
        str(d),
        "--out",
        str(out),
        "--backend",
        "ort",
        "--detector",
        f"onnx:{tiny_detector(tmp_path / 'det.onnx', [GOOD])}",
    )
    assert r.returncode == 0, r.stderr
    assert sorted(rec["image_id"] for rec in json.loads((out / "results.json").read_text())) == [1, 2]


@pytest.mark.parametrize("source", ["detector", "dets"])
def test_images_cli_refuses_colliding_names(cpu_artifacts, coco_mini, tmp_path, source) -> None:
    d = _folder(tmp_path, coco_mini, ["1.jpg", "01.jpg"])
    out = tmp_path / "res"  # --out is a folder: results.json inside
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 1, "bbox": [10, 10, 50, 100], "score": 0.9}]))
    how = ["--detector", "hog"] if source == "detector" else ["--dets", str(dets)]
    r = _images_cli(
        "--engines", str(cpu_artifacts), "--images", str(d), "--out", str(out), "--backend", "ort", *how
    )
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert (
        len(err) == 1 and "01.jpg and 1.jpg both map to image id 1" in err[0] and "Traceback" not in r.stderr
    )


def test_images_beside_a_gt_that_does_not_list_them_are_named(coco_mini, tmp_path, capsys) -> None:
    from runtime.detectors.image_dets import image_ids

    d = _folder(tmp_path, coco_mini, ["000000000785.jpg", "extra.jpg"])
    (d / "person_keypoints.json").write_text(
        json.dumps({"images": [{"id": 785, "file_name": "000000000785.jpg"}]})
    )
    assert image_ids(d) == {"000000000785.jpg": 785}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 image(s) in" in err[0] and "(extra.jpg)" in err[0]


def test_json_detections_refuse_a_folder_mixing_numbered_and_unnumbered_frames(coco_mini, tmp_path) -> None:
    """Frame b.jpg (index 1) used to take the boxes of image id 1 = 1.jpg."""
    from runtime.detectors.factory import JsonDetections

    d = _folder(tmp_path, coco_mini, ["1.jpg", "b.jpg"])
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 1, "bbox": [10, 10, 50, 100], "score": 0.9}]))
    with pytest.raises(RecordError, match="b.jpg has no image id"):
        JsonDetections(dets).bind_folder(d)
    (tmp_path / "n").mkdir()
    only = _folder(tmp_path / "n", coco_mini, ["a.jpg", "b.jpg"])  # no numbers at all: frame indices
    jd = JsonDetections(dets)
    jd.bind_folder(only)
    assert jd._names == {}


def test_only_ascii_digits_number_a_file(coco_mini, tmp_path) -> None:
    """Full-width digits are digits to str.isdigit and int(): １２.jpg used to take 12.JPG's id."""
    d = _folder(tmp_path, coco_mini, ["12.JPG", "１２.jpg"])
    assert image_names(d, numbered_only=False) == {12: "12.JPG", 13: "１２.jpg"}
