"""Bad-input corpus, part 1: ``runtime.images`` and the Python API, on real coco-mini photos.

Every case asserts the exit code, one ``error:`` line naming the input, no
traceback, and what happens to results (none are lost, none are stale).
CLI cases run ``runtime.images.main`` in-process (the same boundary as the
``python -m`` entry point; subprocess cases live in test_bad_input_video.py
and test_disk_full.py) to keep the corpus fast on two cores.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from failcheck import assert_one_line_failure, run_in_process, strict_json

from measure.coco_eval import evaluate_keypoints
from runtime.errors import EXIT_INPUT, InputError
from runtime.images import main as images_main
from runtime.pose.pipeline import ImageError, OptionError, PosePipeline, load_pipeline
from runtime.pose.preprocess import BoxError

IMG = "000000000785.jpg"
IMG_ID = 785


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """One real photo and two good boxes from the real detections (ids from the file name)."""
    d = tmp_path_factory.mktemp("imgs")
    shutil.copy(coco_mini / IMG, d / IMG)
    return d


@pytest.fixture(scope="module")
def good_boxes(coco_mini: Path) -> list[list[float]]:
    dets = json.loads((coco_mini / "person_detections.json").read_text())
    return [d["bbox"] for d in dets if d["image_id"] == IMG_ID][:2]


def _dets(tmp_path: Path, recs: object, raw: str | None = None) -> Path:
    p = tmp_path / "dets.json"
    p.write_text(raw if raw is not None else json.dumps(recs))
    return p


def _run(
    capsys, engines: Path, images: Path, dets: Path | str, out: Path, *extra: str
) -> tuple[int, str, str]:
    return run_in_process(
        images_main,
        [
            "--engines",
            str(engines),
            "--images",
            str(images),
            "--dets",
            str(dets),
            "--out",
            str(out),
            "--policy",
            "small",
            *extra,
        ],
        capsys,
    )


# -- flags and paths: refused before any work, a previous output left as it was ----------------------------
FLAG_CASES = [
    (("--max-boxes", "0"), "--max-boxes"),
    (("--max-boxes", "many"), "--max-boxes"),
    (("--budget-ms", "nan"), "--budget-ms"),
    (("--budget-ms", "0"), "--budget-ms"),
    (("--score-thr", "-1"), "--score-thr"),
    (("--score-thr", "inf"), "--score-thr"),
    (("--policy", "fastest"), "--policy"),
]


@pytest.mark.parametrize("extra,flag", FLAG_CASES, ids=[f"{a[0]}={a[1]}" for a, _ in FLAG_CASES])
def test_bad_flag_is_one_line_and_keeps_old_output(
    cpu_artifacts, folder, good_boxes, tmp_path, capsys, extra, flag
):
    out = tmp_path / "res.json"
    out.write_text("[]\n")
    rc, _, err = _run(capsys, cpu_artifacts, folder, _dets(tmp_path, []), out, *extra)
    assert_one_line_failure(rc, err, EXIT_INPUT, flag)
    assert out.read_text() == "[]\n"


def test_bad_paths_name_the_flag(cpu_artifacts, folder, tmp_path, capsys):
    dets = _dets(tmp_path, [])
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (tmp_path / "nope", folder, dets, tmp_path / "r.json", "--engines"),
        (cpu_artifacts, a_file, dets, tmp_path / "r.json", "--images"),
        (cpu_artifacts, folder, tmp_path / "missing.json", tmp_path / "r.json", "--dets"),
        (cpu_artifacts, folder, dets, a_file, "--out"),  # a file, not a folder
        (cpu_artifacts, folder, dets, a_file / "r.json", "--out"),  # under a file
        (tmp_path, folder, dets, tmp_path / "r.json", "manifest"),
    ]  # no manifest.json
    for engines, images, d, out, name in cases:
        rc, _, err = _run(capsys, engines, images, d, out)
        assert_one_line_failure(rc, err, EXIT_INPUT, name)
        assert not (tmp_path / "r.json").exists()


# -- detection records: which record, which field ----------------------------------------------------------
def _box(good_boxes):
    return good_boxes[0]


RECORD_CASES = [
    ("not_json", None, "{not json", "not valid JSON"),
    ("not_a_list", {"image_id": IMG_ID}, None, "JSON list"),
    ("record_not_object", [[1, 2, 3, 4]], None, "record 0"),
    ("string_in_bbox", [{"image_id": IMG_ID, "bbox": ["10", 20, 30, 40]}], None, "record 0"),
    ("ragged_bbox", [{"image_id": IMG_ID, "bbox": [10, 20, 30]}], None, "3 values"),
    ("bbox_is_string", [{"image_id": IMG_ID, "bbox": "10,20,30,40"}], None, "'bbox'"),
    ("missing_bbox", [{"image_id": IMG_ID, "score": 0.9}], None, "'bbox' is missing"),
    ("missing_image_id", [{"bbox": [1, 2, 3, 4]}], None, "'image_id' is missing"),
    ("string_score", [{"image_id": IMG_ID, "bbox": [1, 2, 30, 40], "score": "high"}], None, "'score'"),
    ("null_score", [{"image_id": IMG_ID, "bbox": [1, 2, 30, 40], "score": None}], None, "'score'"),
    ("nan_score", None, '[{"image_id": 785, "bbox": [1, 2, 30, 40], "score": NaN}]', "'score'"),
    ("string_image_id", [{"image_id": "785", "bbox": [1, 2, 30, 40]}], None, "'image_id'"),
    ("unknown_image", [{"image_id": 42, "bbox": [1, 2, 30, 40]}], None, "image_id 42"),
]


@pytest.mark.parametrize("recs,raw,named", [c[1:] for c in RECORD_CASES], ids=[c[0] for c in RECORD_CASES])
def test_bad_detection_record_is_named(cpu_artifacts, folder, tmp_path, capsys, recs, raw, named):
    out = tmp_path / "res.json"
    out.write_text('[{"stale": true}]\n')
    rc, _, err = _run(capsys, cpu_artifacts, folder, _dets(tmp_path, recs, raw), out)
    line = assert_one_line_failure(rc, err, EXIT_INPUT, named, "--dets")
    assert str(tmp_path / "dets.json") in line
    assert out.read_text() == '[{"stale": true}]\n'  # refused at the edge: nothing was computed or touched


# -- nothing silently dropped --------------------------------------------------------------------------------
def test_every_box_one_record_with_drop_reasons(
    cpu_artifacts, folder, good_boxes, tmp_path, capsys, coco_mini
):
    h, w = cv2.imread(str(folder / IMG)).shape[:2]
    raw = json.dumps(
        [
            {"image_id": IMG_ID, "bbox": good_boxes[0], "score": 0.9},
            {"image_id": IMG_ID, "bbox": [None, 1, 2, 3], "score": 0.9},
            {"image_id": IMG_ID, "bbox": [10, 10, 0, 50], "score": 0.9},
            {"image_id": IMG_ID, "bbox": [w + 100, h + 100, 50, 50], "score": 0.9},
            {"image_id": IMG_ID, "bbox": good_boxes[1], "score": 0.05},
        ]
    )
    raw = raw.replace("null", "Infinity", 1)  # an inf the way Python's json writes it
    out = tmp_path / "res.json"
    rc, stdout, err = _run(
        capsys, cpu_artifacts, folder, _dets(tmp_path, None, raw), out, "--score-thr", "0.1"
    )
    assert rc == 0, err
    res = strict_json(out.read_text())
    assert [r["det_index"] for r in res] == [0, 1, 2, 3, 4]
    assert [r.get("dropped") for r in res] == [
        None,
        "nan_or_inf",
        "zero_or_negative_size",
        "outside_image",
        "below_score_threshold",
    ]
    assert len(res[0]["keypoints"]) == 51 and all("keypoints" not in r for r in res[1:])
    assert res[1]["bbox"][0] is None
    assert (
        "account: boxes in 5, posed 1, dropped 4 (below_score_threshold 1, nan_or_inf 1, outside_image 1, "
        "zero_or_negative_size 1)"
    ) in stdout
    stats = evaluate_keypoints(coco_mini / "person_keypoints.json", out)  # dropped records are skipped
    assert 0.0 <= stats["AP"] <= 1.0


def test_max_boxes_flag_caps_and_says_so(cpu_artifacts, folder, good_boxes, tmp_path, capsys):
    recs = [
        {"image_id": IMG_ID, "bbox": good_boxes[i % 2], "score": s} for i, s in enumerate((0.2, 0.9, 0.5))
    ]
    out = tmp_path / "res.json"
    rc, stdout, err = _run(capsys, cpu_artifacts, folder, _dets(tmp_path, recs), out, "--max-boxes", "2")
    assert rc == 0, err
    res = strict_json(out.read_text())
    assert [r.get("dropped") for r in res] == ["over_max_boxes", None, None]  # lowest score goes
    assert "dropped 1 (over_max_boxes 1)" in stdout


def test_empty_detections_overwrite_a_stale_file(cpu_artifacts, folder, tmp_path, capsys):
    out = tmp_path / "res.json"
    out.write_text('[{"image_id": 1, "stale": true}]')
    rc, stdout, err = _run(capsys, cpu_artifacts, folder, _dets(tmp_path, []), out)
    assert rc == 0, err
    assert strict_json(out.read_text()) == []
    assert "boxes in 0, posed 0, dropped 0" in stdout


def test_unreadable_image_keeps_its_boxes_as_dropped(cpu_artifacts, folder, good_boxes, tmp_path, capsys):
    d = tmp_path / "imgs"
    d.mkdir()
    shutil.copy(folder / IMG, d / IMG)
    (d / "000000000001.jpg").write_bytes(b"not a jpeg")
    recs = [
        {"image_id": 1, "bbox": [1, 2, 30, 40], "score": 0.5},
        {"image_id": IMG_ID, "bbox": good_boxes[0], "score": 0.9},
    ]
    out = tmp_path / "res.json"
    rc, stdout, err = _run(capsys, cpu_artifacts, d, _dets(tmp_path, recs), out)
    assert rc == 0, err
    res = strict_json(out.read_text())
    assert [(r["image_id"], r.get("dropped")) for r in res] == [(1, "image_unreadable"), (IMG_ID, None)]
    assert "image_unreadable 1" in stdout


# -- the Python API: uint8 HxWx3 BGR or a clear error with the fix ------------------------------------------
@pytest.fixture(scope="module")
def pipe(cpu_artifacts):
    with PosePipeline(cpu_artifacts, backend="ort", policy="small") as p:
        yield p


@pytest.fixture(scope="module")
def photo(coco_mini):
    return cv2.imread(str(coco_mini / IMG))


API_IMAGE_CASES = [
    ("float01", lambda im: im.astype(np.float32) / 255.0, "float32", "* 255"),
    ("uint16", lambda im: im.astype(np.uint16) * 257, "uint16", ">> 8"),
    ("gray", lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), "shape", "COLOR_GRAY2BGR"),
    ("bgra", lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2BGRA), "shape", "BGRA2BGR"),
    ("list", lambda im: im[:4, :4].tolist(), "numpy array", "HxWx3"),
    ("empty", lambda im: im[:0], "shape", "HxWx3"),
]


@pytest.mark.parametrize(
    "convert,what,fix", [c[1:] for c in API_IMAGE_CASES], ids=[c[0] for c in API_IMAGE_CASES]
)
def test_api_refuses_non_uint8_bgr_with_the_fix(pipe, photo, good_boxes, convert, what, fix):
    with pytest.raises(ImageError) as e:
        pipe(convert(photo), good_boxes)
    assert what in str(e.value) and fix in str(e.value) and isinstance(e.value, InputError)
    assert "\n" not in str(e.value)


def test_api_float_image_would_have_been_wrong(pipe, photo, good_boxes):
    """The reason for refusing: the same photo as uint8 gives keypoints in the person's box."""
    res = pipe(photo, good_boxes)
    x, y, bw, bh = good_boxes[0]
    kp = res.keypoints[0]
    assert ((kp[:, 0] > x - bw) & (kp[:, 0] < x + 2 * bw)).mean() > 0.8


def test_api_bad_boxes_and_scores(pipe, photo, good_boxes):
    with pytest.raises(BoxError, match="numbers"):
        pipe(photo, [["a", "b", "c", "d"]])
    with pytest.raises(BoxError, match="one score per box"):
        pipe(photo, good_boxes, [0.5])
    with pytest.raises(BoxError, match="scores must be numbers"):
        pipe(photo, good_boxes, ["x", "y"])
    res = pipe(photo, good_boxes, [math.nan, 0.9])  # a NaN score is a box hygiene drops, by name
    assert res.dropped == {0: "nan_or_inf"} and list(res.route)[1:] != [-1]


@pytest.mark.parametrize(
    "opts,name",
    [
        ({"max_boxes": 0}, "max_boxes"),
        ({"budget_ms": math.nan}, "budget_ms"),
        ({"score_thr": math.inf}, "score_thr"),
        ({"policy": "fast"}, "policy"),
    ],
    ids=["max_boxes0", "budget_nan", "score_inf", "policy"],
)
def test_api_options_checked_before_loading(cpu_artifacts, opts, name):
    with pytest.raises(OptionError, match=name):
        load_pipeline(cpu_artifacts, **opts)


def test_sigterm_keeps_every_finished_image(cpu_artifacts, folder, good_boxes, tmp_path):
    """A terminated run exits 143 with a valid JSON list of the images finished (linear appends)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from failcheck import REPO

    imgs = tmp_path / "many"
    imgs.mkdir()
    recs = []
    for i in range(1, 41):
        os.symlink(folder / IMG, imgs / f"{i:012d}.jpg")
        recs += [{"image_id": i, "bbox": b, "score": 0.9} for b in good_boxes]
    dets = _dets(tmp_path, recs)
    out = tmp_path / "res.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime.images",
            "--engines",
            str(cpu_artifacts),
            "--images",
            str(imgs),
            "--dets",
            str(dets),
            "--out",
            str(out),
            "--policy",
            "small",
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        t_end = time.monotonic() + 120
        while time.monotonic() < t_end and not (out.exists() and out.stat().st_size > 10):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "partial run: boxes in" in err
    got = strict_json(out.read_text())
    assert 0 < len(got) < len(recs) and len(got) % 2 == 0  # whole images only
    assert [r["image_id"] for r in got] == [i for i in range(1, len(got) // 2 + 1) for _ in range(2)]
