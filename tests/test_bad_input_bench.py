"""Bad-input corpus, part 3: bench.coco_eval, bench.ex_oks, bench.cropcoco, bench.sweep on real coco-mini GT."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from failcheck import assert_one_line_failure, run_in_process

from bench import cropcoco, sweep
from measure import coco_eval, ex_oks
from measure.coco_eval import evaluate_keypoints, load_gt, synthetic_results
from measure.gt_records import check_annotation
from runtime.errors import EXIT_INPUT
from runtime.io.records import RecordError


@pytest.fixture(scope="module")
def gt(coco_mini: Path) -> dict:
    return json.loads((coco_mini / "person_keypoints.json").read_text())


@pytest.fixture(scope="module")
def results_path(coco_mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Known-answer predictions made from the real GT with seeded noise (bench.coco_eval's helper)."""
    p = tmp_path_factory.mktemp("res") / "res.json"
    p.write_text(
        json.dumps(synthetic_results(load_gt(coco_mini / "person_keypoints.json"), noise=0.3, presence=True))
    )
    return p


def _write(tmp_path: Path, name: str, data: object, raw: str | None = None) -> Path:
    p = tmp_path / name
    p.write_text(raw if raw is not None else json.dumps(data))
    return p


def _crowdpose(gt: dict) -> dict:
    g = copy.deepcopy(gt)
    for a in g["annotations"]:
        a["keypoints"] = a["keypoints"][:42]
    return g


def _bad_gt_cases(gt: dict) -> list[tuple[str, object, str | None, str]]:
    no_kp = copy.deepcopy(gt)
    del no_kp["annotations"][3]["keypoints"]
    no_kp["annotations"][3]["iscrowd"] = 0
    nan_box = copy.deepcopy(gt)
    nan_box["annotations"][2]["bbox"][1] = None
    str_area = copy.deepcopy(gt)
    str_area["annotations"][1]["area"] = "big"
    orphan = copy.deepcopy(gt)
    orphan["annotations"][0]["image_id"] = 999999
    return [
        ("crowdpose_14", _crowdpose(gt), None, "14 keypoints"),
        ("no_annotations", {"images": []}, None, "'annotations'"),
        ("list_not_object", [], None, "COCO object"),
        ("not_json", None, "{", "not valid JSON"),
        ("no_keypoints", no_kp, None, "annotations[3]"),
        ("null_in_bbox", nan_box, None, "annotations[2]"),
        ("string_area", str_area, None, "'area'"),
        ("orphan_annotation", orphan, None, "image_id 999999"),
    ]


@pytest.mark.parametrize("cli", ["coco_eval", "ex_oks"])
@pytest.mark.parametrize(
    "case",
    range(8),
    ids=[
        "crowdpose_14",
        "no_annotations",
        "list_not_object",
        "not_json",
        "no_keypoints",
        "null_in_bbox",
        "string_area",
        "orphan",
    ],
)
def test_bad_ground_truth_is_named(gt, results_path, tmp_path, capsys, cli, case):
    _name, data, raw, named = _bad_gt_cases(gt)[case]
    g = _write(tmp_path, "gt.json", data, raw)
    main = {"coco_eval": coco_eval.main, "ex_oks": ex_oks.main}[cli]
    rc, out, err = run_in_process(main, ["--gt", str(g), "--results", str(results_path)], capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, named, "--gt")
    assert out == ""


def test_annotation_checks_complete_and_refuse_by_field():
    """measure.gt_records.check_annotation: the gaps it fills, and one refusal per field it checks."""
    base = {"id": 1, "image_id": 5, "bbox": [0, 0, 4, 3], "keypoints": [1, 1, 2] + [0] * 48}
    done = check_annotation(base, 0, "gt", {5}, 17)
    assert (done["category_id"], done["iscrowd"], done["area"], done["num_keypoints"]) == (1, 0, 12, 1)
    crowd = check_annotation({"id": 2, "image_id": 5, "bbox": [0, 0, 1, 1], "iscrowd": 1}, 0, "gt", {5}, 17)
    assert crowd["keypoints"] == [0] * 51 and crowd["num_keypoints"] == 0
    bad = [
        ({"id": None}, "'id' is missing"),
        ({"image_id": 6}, "image_id 6 is not in 'images'"),
        ({"iscrowd": 2}, "'iscrowd' must be 0 or 1"),
        ({"keypoints": [1] * 50}, "has 16.6667 keypoints"),
        ({"keypoints": [float("nan")] * 51}, "keypoints. must be a list of finite"),
        ({"bbox": None}, "'bbox' is missing"),
        ({"bbox": [0, 0, -1, 3]}, "w, h >= 0"),
        ({"area": -2}, "'area' must be a finite number"),
    ]
    for change, named in bad:
        a = {k: v for k, v in {**base, **change}.items() if v is not None}
        with pytest.raises(RecordError, match=named) as err:
            check_annotation(a, 4, "gt", {5}, 17)
        assert "annotations[4]" in str(err.value)


@pytest.mark.parametrize("cli", ["coco_eval", "ex_oks"])
def test_ground_truth_without_area_uses_the_box(gt, results_path, tmp_path, capsys, cli):
    """PoseTrack-style GT (no ``area``) is scored with area = box w*h, the same as writing it in."""
    no_area = copy.deepcopy(gt)
    box_area = copy.deepcopy(gt)
    for a, b in zip(no_area["annotations"], box_area["annotations"]):
        del a["area"]
        b["area"] = b["bbox"][2] * b["bbox"][3]
    main = {"coco_eval": coco_eval.main, "ex_oks": ex_oks.main}[cli]
    got = []
    for name, data in (("a.json", no_area), ("b.json", box_area)):
        rc, out, err = run_in_process(
            main,
            ["--gt", str(_write(tmp_path, name, data)), "--results", str(results_path), "--json"],
            capsys,
        )
        assert rc == 0, err
        got.append(json.loads(out)["AP"])
    assert got[0] == got[1] and 0.0 < got[0] <= 1.0


BAD_RESULTS = [
    ("nan_keypoint", None, None, "NaN"),
    ("not_a_list", {"a": 1}, None, "JSON list"),
    ("record_not_object", [7], None, "result #0"),
    (
        "string_keypoints",
        [{"image_id": 785, "category_id": 1, "keypoints": "x", "score": 1}],
        None,
        "result #0",
    ),
    (
        "unknown_image",
        [{"image_id": 1, "category_id": 1, "keypoints": [0] * 51, "score": 1}],
        None,
        "image_id 1",
    ),
]


@pytest.mark.parametrize("data,raw,named", [c[1:] for c in BAD_RESULTS], ids=[c[0] for c in BAD_RESULTS])
def test_bad_results_are_named(coco_mini, results_path, tmp_path, capsys, data, raw, named):
    if data is None and raw is None:  # the real results with one keypoint NaN, as Python's json writes it
        recs = json.loads(results_path.read_text())
        recs[5]["keypoints"][0] = float("nan")
        raw = json.dumps(recs)
    r = _write(tmp_path, "r.json", data, raw)
    rc, _, err = run_in_process(
        coco_eval.main, ["--gt", str(coco_mini / "person_keypoints.json"), "--results", str(r)], capsys
    )
    assert_one_line_failure(rc, err, EXIT_INPUT, named)


def test_dropped_box_records_are_skipped_not_scored(coco_mini, results_path, tmp_path):
    recs = json.loads(results_path.read_text())
    with_drops = recs + [
        {
            "image_id": 785,
            "category_id": 1,
            "bbox": [None, 1, 2, 3],
            "score": None,
            "dropped": "nan_or_inf",
            "det_index": 7,
        }
    ]
    p = _write(tmp_path, "r.json", with_drops)
    gt = coco_mini / "person_keypoints.json"
    assert evaluate_keypoints(gt, p) == evaluate_keypoints(gt, results_path)


def test_ex_oks_threshold_flag(coco_mini, results_path, capsys):
    for bad in ("2", "0", "nan", "most"):
        rc, _, err = run_in_process(
            ex_oks.main,
            [
                "--gt",
                str(coco_mini / "person_keypoints.json"),
                "--results",
                str(results_path),
                "--threshold",
                bad,
            ],
            capsys,
        )
        assert_one_line_failure(rc, err, EXIT_INPUT, "--threshold")


def test_cropcoco_bad_inputs(coco_mini, gt, tmp_path, capsys):
    rc, _, err = run_in_process(
        cropcoco.main, ["--src", str(coco_mini), "--out", str(tmp_path / "o"), "--strength", "2"], capsys
    )
    assert_one_line_failure(rc, err, EXIT_INPUT, "--strength")
    rc, _, err = run_in_process(cropcoco.main, ["--src", str(tmp_path), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, "person_keypoints.json")
    src = tmp_path / "src"
    src.mkdir()
    _write(src, "person_keypoints.json", _crowdpose(gt))
    rc, _, err = run_in_process(cropcoco.main, ["--src", str(src), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, "14 keypoints", "--src")
    assert not (tmp_path / "o" / "person_keypoints.json").exists()


def test_sweep_bad_inputs(tmp_path, capsys):
    rc, _, err = run_in_process(sweep.main, ["--data", str(tmp_path / "none")], capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, "--data")
    rc, _, err = run_in_process(sweep.main, ["--engines", str(tmp_path), "--config", "fixture-dyn"], capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, "--engines", "manifest.json")
    (tmp_path / "manifest.json").write_text("{oops")
    rc, _, err = run_in_process(sweep.main, ["--engines", str(tmp_path)], capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, "--engines", "not valid JSON")


# -- bench.video_eval: the main job's last command (issue 27) -------------------------------------


@pytest.fixture(scope="module")
def clip_gt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real clip's ground truth (build.synth.video, 1 s), the kind the main job scores."""
    from build.synth.video import main as synth_video

    d = tmp_path_factory.mktemp("clip")
    assert synth_video(["--video", str(d), "--seconds", "1", "--people", "2"]) == 0
    return d / "person_keypoints.json"


@pytest.mark.parametrize(
    "gt_text,jsonl,needle",
    [
        ("{}", '{"frame": 0, "persons": []}\n', "'images'"),
        (None, "", "no frame records"),
        (None, "garbage\n", "line 1"),
        (None, '{"frame": 0, "persons": [{"route": "small"}]}\n', "line 1 persons[0]"),
        (None, '{"frame": 0, "persons": [{"route": "large", "box": [1, 2, 3, 4]}]}\n', "'keypoints'"),
        (None, '{"frame": "zero", "persons": []}\n', "line 1"),
        (None, "[1, 2]\n", "frame record"),
    ],
    ids=[
        "gt-empty-object",
        "jsonl-empty",
        "jsonl-not-json",
        "person-no-box",
        "person-no-keypoints",
        "frame-not-int",
        "line-not-object",
    ],
)
def test_video_eval_bad_input_is_one_line(
    clip_gt: Path, tmp_path: Path, capsys, gt_text, jsonl, needle
) -> None:
    from bench.video_eval import main
    from runtime.errors import guarded

    gt = _write(tmp_path, "gt.json", None, gt_text) if gt_text is not None else clip_gt
    run = _write(tmp_path, "run.jsonl", None, jsonl)
    rc, out, err = run_in_process(lambda a: guarded(main, a), ["--gt", str(gt), "--jsonl", str(run)], capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, needle)
    assert out == ""
